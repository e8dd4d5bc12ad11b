//! Restarting a replica from its durable state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ms, n, options, three_full};
use shoal_replication::{
    Action, Ballot, LogEntry, Message, Payload, RecoveredState, RecoveryError, Replica,
    ReplicaKind, Slot, SnapshotMeta,
};

fn entry(round: u64, byte: u8) -> LogEntry {
    LogEntry {
        ballot: Ballot { round, node: n(1) },
        payload: Payload::Command(vec![byte]),
    }
}

fn state(entries: Vec<(Slot, LogEntry)>) -> RecoveredState {
    RecoveredState {
        promised: Ballot {
            round: 5,
            node: n(2),
        },
        snapshot: SnapshotMeta {
            last_included_slot: Slot(3),
            membership: three_full(),
        },
        entries,
    }
}

#[test]
fn recovery_keeps_the_promise_and_the_last_write_of_each_slot_after_the_snapshot() {
    let recovered = state(vec![
        (Slot(2), entry(1, 2)),
        (Slot(4), entry(1, 4)),
        (Slot(5), entry(1, 5)),
        (Slot(4), entry(3, 44)),
    ]);
    let mut replica =
        Replica::recover(n(3), options(ReplicaKind::Full, 3), recovered, ms(100)).unwrap();
    assert_eq!(replica.commit_slot(), Slot(3));
    assert_eq!(replica.log_first_slot(), Slot(4));
    assert_eq!(replica.log_last_slot(), Slot(5));
    assert_eq!(replica.entry(Slot(4)), Some(&entry(3, 44)));
    // A lower ballot than the recovered promise is refused.
    let actions = replica.handle_message(
        ms(100),
        n(1),
        Message::Prepare {
            ballot: Ballot {
                round: 4,
                node: n(1),
            },
            from_slot: Slot(4),
        },
    );
    assert_eq!(
        actions,
        vec![Action::Send {
            to: n(1),
            message: Message::Rejected {
                promised: Ballot {
                    round: 5,
                    node: n(2),
                },
            },
        }]
    );
}

#[test]
fn a_gap_in_the_durable_log_is_refused() {
    let recovered = state(vec![(Slot(4), entry(1, 4)), (Slot(6), entry(1, 6))]);
    assert_eq!(
        Replica::recover(n(3), options(ReplicaKind::Full, 3), recovered, ms(0)).err(),
        Some(RecoveryError::LogGap { after: Slot(4) })
    );
}
