//! Phase 2: pipelined accepts, durability before acknowledgement, commit notification,
//! retransmission, catch-up by snapshot, backpressure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Group, HEARTBEAT, n, options, three_full};
use shoal_replication::limits::IN_FLIGHT_SLOTS_MAX;
use shoal_replication::{
    Action, Ballot, LogEntry, Lsn, Message, Payload, ProposeError, RecoveredState, Replica,
    ReplicaKind, Slot, SnapshotMeta,
};

fn send(to: u64, message: Message) -> Action {
    Action::Send { to: n(to), message }
}

fn command(ballot: Ballot, bytes: &[u8]) -> LogEntry {
    LogEntry {
        ballot,
        payload: Payload::Command(bytes.to_vec()),
    }
}

#[test]
fn a_write_commits_once_a_quorum_including_the_leader_has_it_durable() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let now = group.now;
    let b1 = group.get(1).leader_ballot().unwrap();
    let entry = command(b1, b"put");
    let accept = Message::Accept {
        ballot: b1,
        round: 1,
        first_slot: Slot(2),
        entries: vec![entry.clone()],
        commit_slot: Slot(1),
    };

    let proposed = group.get(1).propose(now, b"put".to_vec()).unwrap();
    assert_eq!(proposed.slot, Slot(2));
    assert_eq!(
        proposed.actions,
        vec![
            Action::Persist {
                lsn: Lsn(3),
                promised: None,
                entries: vec![(Slot(2), entry.clone())],
            },
            send(2, accept.clone()),
            send(3, accept.clone()),
        ]
    );

    // The follower writes, learns that slot 1 is committed, and holds its answer.
    let noop = LogEntry {
        ballot: b1,
        payload: Payload::Noop,
    };
    assert_eq!(
        group.get(2).handle_message(now, n(1), accept),
        vec![
            Action::Persist {
                lsn: Lsn(3),
                promised: None,
                entries: vec![(Slot(2), entry.clone())],
            },
            Action::Apply {
                entries: vec![(Slot(1), noop)],
            },
        ]
    );
    let accepted = Message::Accepted {
        ballot: b1,
        round: 1,
        match_slot: Slot(2),
        missing: false,
    };
    assert_eq!(
        group.get(2).persisted(now, Lsn(3)),
        vec![send(1, accepted.clone())]
    );

    // One follower is durable, but the leader's own copy is not: no commit yet.
    assert_eq!(group.get(1).handle_message(now, n(2), accepted), vec![]);
    assert_eq!(group.get(1).commit_slot(), Slot(1));
    assert_eq!(
        group.get(1).persisted(now, Lsn(3)),
        vec![Action::Apply {
            entries: vec![(Slot(2), entry)],
        }]
    );
    assert_eq!(group.get(1).commit_slot(), Slot(2));

    // The next heartbeat tells the followers.
    let later = now.saturating_add(HEARTBEAT);
    let heartbeat = Message::Accept {
        ballot: b1,
        round: 2,
        first_slot: Slot(3),
        entries: vec![],
        commit_slot: Slot(2),
    };
    let actions = group.get(1).tick(later);
    assert!(actions.contains(&send(2, heartbeat.clone())), "{actions:?}");
    assert!(actions.contains(&send(3, heartbeat)), "{actions:?}");
}

#[test]
fn a_lost_accept_is_resent_when_the_follower_reports_the_gap() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let now = group.now;
    let b1 = group.get(1).leader_ballot().unwrap();
    // The Accept for slot 2 is lost on the way to node 2; the one for slot 3 arrives.
    group.get(1).propose(now, b"two".to_vec()).unwrap();
    group.get(1).propose(now, b"three".to_vec()).unwrap();
    let third = Message::Accept {
        ballot: b1,
        round: 1,
        first_slot: Slot(3),
        entries: vec![command(b1, b"three")],
        commit_slot: Slot(1),
    };
    let noop = LogEntry {
        ballot: b1,
        payload: Payload::Noop,
    };
    assert_eq!(
        group.get(2).handle_message(now, n(1), third),
        vec![
            Action::Apply {
                entries: vec![(Slot(1), noop)],
            },
            send(
                1,
                Message::Accepted {
                    ballot: b1,
                    round: 1,
                    match_slot: Slot(1),
                    missing: true,
                }
            ),
        ]
    );
    let actions = group.get(1).handle_message(
        now,
        n(2),
        Message::Accepted {
            ballot: b1,
            round: 1,
            match_slot: Slot(1),
            missing: true,
        },
    );
    assert_eq!(
        actions,
        vec![send(
            2,
            Message::Accept {
                ballot: b1,
                round: 1,
                first_slot: Slot(2),
                entries: vec![command(b1, b"two"), command(b1, b"three")],
                commit_slot: Slot(1),
            }
        )]
    );
    // Another `missing` (say, a reordered batch) within the same heartbeat interval does not
    // rewind again: resends are damped to one per interval and follower.
    let actions = group.get(1).handle_message(
        now,
        n(2),
        Message::Accepted {
            ballot: b1,
            round: 1,
            match_slot: Slot(1),
            missing: true,
        },
    );
    assert_eq!(actions, vec![]);
}

#[test]
fn a_follower_behind_the_truncation_point_is_caught_up_by_snapshot() {
    let mut group = Group::new(&three_full(), &[]);
    // Node 3 is away while the others commit and checkpoint.
    let mut away = group.replicas.remove(&n(3)).unwrap();
    group.elect(1);
    let now = group.now;
    for byte in 0..5u8 {
        let proposed = group.get(1).propose(now, vec![byte]).unwrap();
        group.settle(n(1), proposed.actions);
    }
    assert_eq!(group.get(1).commit_slot(), Slot(6));
    group.get(1).checkpointed(now, Slot(6));
    assert_eq!(group.get(1).log_first_slot(), Slot(7));
    let b1 = group.get(1).leader_ballot().unwrap();

    // Node 3 returns and hears a heartbeat it cannot use: it lacks everything.
    let later = now.saturating_add(HEARTBEAT);
    let actions = group.get(1).tick(later);
    let heartbeat = Message::Accept {
        ballot: b1,
        round: 2,
        first_slot: Slot(7),
        entries: vec![],
        commit_slot: Slot(6),
    };
    assert!(actions.contains(&send(3, heartbeat.clone())), "{actions:?}");
    let actions = away.handle_message(later, n(1), heartbeat);
    let behind = Message::Accepted {
        ballot: b1,
        round: 2,
        match_slot: Slot(0),
        missing: true,
    };
    assert_eq!(
        actions,
        vec![Action::Persist {
            lsn: Lsn(1),
            promised: Some(b1),
            entries: vec![],
        },]
    );
    assert_eq!(away.persisted(later, Lsn(1)), vec![send(1, behind.clone())]);
    assert_eq!(
        group.get(1).handle_message(later, n(3), behind.clone()),
        vec![Action::SendSnapshot { to: n(3) }]
    );
    // Asking again right away does not ship a second snapshot.
    assert_eq!(group.get(1).handle_message(later, n(3), behind), vec![]);

    // The host ships the checkpoint; once durable there, the follower reports its new match.
    let meta = SnapshotMeta {
        last_included_slot: Slot(6),
        membership: three_full(),
        config_slot: Slot::ZERO,
    };
    let caught_up = Message::Accepted {
        ballot: b1,
        round: 0,
        match_slot: Slot(6),
        missing: false,
    };
    assert_eq!(
        away.snapshot_installed(later, meta),
        vec![send(1, caught_up.clone())]
    );
    assert_eq!(away.commit_slot(), Slot(6));
    assert_eq!(away.log_first_slot(), Slot(7));
    assert_eq!(group.get(1).handle_message(later, n(3), caught_up), vec![]);
}

#[test]
fn proposals_beyond_the_in_flight_window_are_refused() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let now = group.now;
    // Nobody answers: the window fills.
    for index in 0..IN_FLIGHT_SLOTS_MAX {
        group
            .get(1)
            .propose(now, index.to_le_bytes().to_vec())
            .unwrap();
    }
    assert_eq!(
        group.get(1).propose(now, b"one too many".to_vec()),
        Err(ProposeError::Backpressure)
    );
    assert_eq!(
        group.get(2).propose(now, b"not the leader".to_vec()),
        Err(ProposeError::NotLeader {
            leader_hint: Some(n(1)),
        })
    );
}

#[test]
fn a_stale_leader_steps_down_when_rejected_by_a_higher_ballot() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let now = group.now;
    let higher = Ballot {
        round: 7,
        node: n(3),
    };
    assert_eq!(
        group
            .get(1)
            .handle_message(now, n(2), Message::Rejected { promised: higher }),
        vec![
            Action::RoleChanged {
                role: shoal_replication::RoleKind::Follower,
                ballot: group.get(1).promised(),
            },
            Action::LeaseLost,
        ]
    );
    assert_eq!(group.get(1).leader_ballot(), None);
    assert!(matches!(
        group.get(1).propose(now, vec![1]),
        Err(ProposeError::NotLeader { .. })
    ));
}

#[test]
fn a_follower_that_restarted_is_resent_the_entries_it_no_longer_knows_match() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let now = group.now;
    for byte in 0..3u8 {
        let proposed = group.get(1).propose(now, vec![byte]).unwrap();
        group.settle(n(1), proposed.actions);
    }
    assert_eq!(group.get(1).commit_slot(), Slot(4));
    let b1 = group.get(1).leader_ballot().unwrap();

    // Node 2 restarts with slots 1-4 durable but no checkpoint: it recovers with commit index 0
    // and, until a leader proves otherwise, no slot known to match (I5). The leader still
    // records node 2 as matching through slot 4.
    let entries: Vec<(Slot, LogEntry)> = (1..=4)
        .map(|slot| (Slot(slot), group.get(2).entry(Slot(slot)).unwrap().clone()))
        .collect();
    let recovered = RecoveredState {
        promised: b1,
        snapshot: SnapshotMeta {
            last_included_slot: Slot(0),
            membership: three_full(),
            config_slot: Slot::ZERO,
        },
        entries,
    };
    let restarted = Replica::recover(n(2), options(ReplicaKind::Full, 2), recovered, now).unwrap();
    group.replicas.insert(n(2), restarted);

    // The next heartbeat starts after slot 4, so node 2 reports the gap from slot 1.
    let later = now.saturating_add(HEARTBEAT);
    let heartbeat = group
        .get(1)
        .tick(later)
        .into_iter()
        .find_map(|action| match action {
            Action::Send { to, message } if to == n(2) => Some(message),
            _ => None,
        })
        .unwrap();
    let reply = group
        .get(2)
        .handle_message(later, n(1), heartbeat)
        .into_iter()
        .find_map(|action| match action {
            Action::Send { to, message } if to == n(1) => Some(message),
            _ => None,
        })
        .unwrap();
    assert!(
        matches!(
            reply,
            Message::Accepted {
                match_slot: Slot(0),
                missing: true,
                ..
            }
        ),
        "{reply:?}"
    );
    // The leader must resend from what node 2 reports, not from its own stale record of node
    // 2's match: resending from slot 5 would be refused as missing forever, and with two such
    // followers the group could never commit again while its leader kept its lease.
    let actions = group.get(1).handle_message(later, n(2), reply);
    let resent = actions.iter().any(|action| {
        matches!(
            action,
            Action::Send {
                to,
                message: Message::Accept {
                    first_slot: Slot(1),
                    entries,
                    ..
                },
            } if *to == n(2) && entries.len() == 4
        )
    });
    assert!(resent, "{actions:?}");
}

#[test]
fn a_leader_whose_own_disk_lags_gets_backpressure_not_an_assertion() {
    // Found by shoal-bench (32 put clients): two followers commit entries the leader's own
    // disk has not made durable yet, so the uncommitted window stays small while the leader's
    // undurable writes pile up. They are bounded by backpressure.
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let now = group.now;
    let mut refused = false;
    for index in 0..(IN_FLIGHT_SLOTS_MAX + 16) {
        match group.get(1).propose(now, vec![index as u8]) {
            Ok(proposed) => {
                // Everything but the leader's own persist happens: followers persist and ack.
                let without_own_persist: Vec<Action> = proposed
                    .actions
                    .into_iter()
                    .filter(|action| !matches!(action, Action::Persist { .. }))
                    .collect();
                group.settle(n(1), without_own_persist);
            }
            Err(ProposeError::Backpressure) => {
                refused = true;
                break;
            }
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert!(
        refused,
        "the leader never pushed back while its disk lagged"
    );
}
