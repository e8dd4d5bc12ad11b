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
            config_slot: Slot::ZERO,
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
            lease_released: None,
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

/// Entries of slots `first..=last` as a leader of round `round` sends them: the payload names
/// the slot and the round, so a test can tell which write recovery kept.
fn run(round: u64, first: u64, last: u64) -> Vec<(Slot, LogEntry)> {
    (first..=last)
        .map(|slot| {
            let entry = LogEntry {
                ballot: Ballot { round, node: n(1) },
                payload: Payload::Command(vec![slot as u8, round as u8]),
            };
            (Slot(slot), entry)
        })
        .collect()
}

/// Issue 14, the durable log one node refused at every restart: partition 0 never
/// checkpointed; its writes of slots 1 to 9 in ballot 1 sat in a recycled WAL segment; the live
/// log began with the write of slot 10 alone (ballot 1), followed by slots 1 to 18 that a new
/// leader (ballot 2) re-sent after a restart. The host had recycled correctly (each slot's
/// newest write survived), but replaying in write order refused slot 10 as a gap after slot 0.
fn issue_14_durable_writes() -> Vec<(Slot, LogEntry)> {
    let mut writes = run(1, 10, 10);
    writes.extend(run(2, 1, 18));
    writes
}

fn from_scratch(promised: Ballot, entries: Vec<(Slot, LogEntry)>) -> RecoveredState {
    RecoveredState {
        promised,
        snapshot: SnapshotMeta {
            last_included_slot: Slot::ZERO,
            membership: three_full(),
            config_slot: Slot::ZERO,
        },
        entries,
    }
}

#[test]
fn a_slot_written_before_the_resent_slots_below_it_is_recovered() {
    let recovered = from_scratch(
        Ballot {
            round: 2,
            node: n(1),
        },
        issue_14_durable_writes(),
    );
    let replica = Replica::recover(n(3), options(ReplicaKind::Full, 3), recovered, ms(0)).unwrap();
    assert_eq!(replica.commit_slot(), Slot::ZERO);
    assert_eq!(replica.log_first_slot(), Slot(1));
    assert_eq!(replica.log_last_slot(), Slot(18));
    for (slot, entry) in run(2, 1, 18) {
        assert_eq!(replica.entry(slot), Some(&entry), "slot {slot:?}");
    }
}

#[test]
fn the_highest_ballot_of_a_slot_is_kept_whatever_the_write_order() {
    // Slot 2's ballot-3 write comes before its ballot-2 write, and slot 1 has two writes in
    // ballot 2 (the later one kept).
    let mut entries = run(3, 2, 2);
    entries.extend(run(2, 1, 3));
    let mut later_in_ballot_2 = run(2, 1, 1);
    later_in_ballot_2[0].1.payload = Payload::Command(vec![99]);
    entries.extend(later_in_ballot_2.clone());
    let replica = Replica::recover(
        n(3),
        options(ReplicaKind::Full, 3),
        from_scratch(Ballot::ZERO, entries),
        ms(0),
    )
    .unwrap();
    assert_eq!(replica.entry(Slot(1)), Some(&later_in_ballot_2[0].1));
    assert_eq!(replica.entry(Slot(2)), Some(&run(3, 2, 2)[0].1));
    assert_eq!(replica.entry(Slot(3)), Some(&run(2, 3, 3)[0].1));
}

#[test]
fn a_hole_left_after_merging_every_write_is_still_refused() {
    // Slot 10 again first, but the re-sent run stops at 8: slot 9 has no write at all.
    let mut entries = run(1, 10, 10);
    entries.extend(run(2, 1, 8));
    assert_eq!(
        Replica::recover(
            n(3),
            options(ReplicaKind::Full, 3),
            from_scratch(Ballot::ZERO, entries),
            ms(0)
        )
        .err(),
        Some(RecoveryError::LogGap { after: Slot(8) })
    );
}

#[test]
fn a_recycled_promise_is_recovered_from_the_ballots_of_the_entries() {
    // The write that promised ballot 2 was recycled with slots 1 to 9 of ballot 1; the
    // writes left carry no promise above ballot 1.
    let recovered = from_scratch(
        Ballot {
            round: 1,
            node: n(1),
        },
        issue_14_durable_writes(),
    );
    let mut replica =
        Replica::recover(n(3), options(ReplicaKind::Full, 3), recovered, ms(0)).unwrap();
    assert_eq!(
        replica.promised(),
        Ballot {
            round: 2,
            node: n(1)
        }
    );
    // The old leader of ballot 1 cannot overwrite what ballot 2 wrote.
    let actions = replica.handle_message(
        ms(0),
        n(1),
        Message::Accept {
            ballot: Ballot {
                round: 1,
                node: n(1),
            },
            round: 1,
            first_slot: Slot(1),
            entries: vec![run(1, 1, 1)[0].1.clone()],
            commit_slot: Slot::ZERO,
        },
    );
    assert_eq!(
        actions,
        vec![Action::Send {
            to: n(1),
            message: Message::Rejected {
                promised: Ballot {
                    round: 2,
                    node: n(1)
                },
            },
        }]
    );
    assert_eq!(replica.entry(Slot(1)), Some(&run(2, 1, 1)[0].1));
}
