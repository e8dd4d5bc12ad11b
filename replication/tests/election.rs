//! Elections: the pre-check, phase 1, and what a new leader does first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ELECTION_MIN, Group, ms, n, options, three_full};
use shoal_replication::{
    Action, Ballot, FRESH_GROUP_ELECTION_TIMEOUT_DIVISOR, LogEntry, Lsn, Membership, Message,
    MonotonicTime, Payload, Replica, ReplicaKind, RoleKind, Slot, SnapshotMeta,
};

fn ballot(round: u64, node: u64) -> Ballot {
    Ballot {
        round,
        node: n(node),
    }
}

fn send(to: u64, message: Message) -> Action {
    Action::Send { to: n(to), message }
}

#[test]
fn a_silent_leader_leads_to_a_pre_check_then_phase_one_then_a_no_op_in_the_new_ballot() {
    let mut group = Group::new(&three_full(), &[]);
    let now = ms(1000);
    let b1 = ballot(1, 1);

    // The election timer fired: ask first, touch no ballot.
    let actions = group.get(1).tick(now);
    assert_eq!(
        actions,
        vec![
            Action::RoleChanged {
                role: RoleKind::PreCandidate,
                ballot: Ballot::ZERO,
            },
            send(2, Message::PreCheck { round: 1 }),
            send(3, Message::PreCheck { round: 1 }),
        ]
    );
    assert_eq!(group.get(1).promised(), Ballot::ZERO);

    let actions = group
        .get(2)
        .handle_message(now, n(1), Message::PreCheck { round: 1 });
    assert_eq!(
        actions,
        vec![send(
            1,
            Message::PreCheckReply {
                round: 1,
                granted: true,
            }
        )]
    );

    // One grant plus our own is a quorum of three: phase 1 starts, promise persisted first.
    let actions = group.get(1).handle_message(
        now,
        n(2),
        Message::PreCheckReply {
            round: 1,
            granted: true,
        },
    );
    assert_eq!(
        actions,
        vec![
            Action::Persist {
                lsn: Lsn(1),
                promised: Some(b1),
                entries: vec![],
            },
            Action::RoleChanged {
                role: RoleKind::Candidate,
                ballot: b1,
            },
            send(
                2,
                Message::Prepare {
                    ballot: b1,
                    from_slot: Slot(1),
                    lease_released: None,
                }
            ),
            send(
                3,
                Message::Prepare {
                    ballot: b1,
                    from_slot: Slot(1),
                    lease_released: None,
                }
            ),
        ]
    );

    // The promiser persists its promise and only then answers.
    let actions = group.get(2).handle_message(
        now,
        n(1),
        Message::Prepare {
            ballot: b1,
            from_slot: Slot(1),
            lease_released: None,
        },
    );
    assert_eq!(
        actions,
        vec![Action::Persist {
            lsn: Lsn(1),
            promised: Some(b1),
            entries: vec![],
        }]
    );
    let promise = Message::Promise {
        ballot: b1,
        log_first_slot: Slot(1),
        accepted: vec![],
        lease_wait_nanos: 0,
    };
    assert_eq!(
        group.get(2).persisted(now, Lsn(1)),
        vec![send(1, promise.clone())]
    );

    // The candidate's own promise is not durable yet, so one promise is not enough.
    assert_eq!(group.get(1).handle_message(now, n(2), promise), vec![]);
    let noop = LogEntry {
        ballot: b1,
        payload: Payload::Noop,
    };
    let accept = Message::Accept {
        ballot: b1,
        round: 1,
        first_slot: Slot(1),
        entries: vec![noop.clone()],
        commit_slot: Slot(0),
    };
    assert_eq!(
        group.get(1).persisted(now, Lsn(1)),
        vec![
            Action::Persist {
                lsn: Lsn(2),
                promised: None,
                entries: vec![(Slot(1), noop)],
            },
            Action::RoleChanged {
                role: RoleKind::Leader,
                ballot: b1,
            },
            send(2, accept.clone()),
            send(3, accept),
        ]
    );
    assert_eq!(group.get(1).leader_ballot(), Some(b1));
}

#[test]
fn a_partitioned_node_cannot_disrupt_a_healthy_leader() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let leader_ballot = group.get(1).leader_ballot().unwrap();
    let heard_at = group.now;

    // Node 3 missed the heartbeats (say it was cut off) and its timer fires.
    let late = heard_at.saturating_add(std::time::Duration::from_millis(250));
    let actions = group.get(3).tick(late);
    assert_eq!(
        actions,
        vec![
            Action::RoleChanged {
                role: RoleKind::PreCandidate,
                ballot: leader_ballot,
            },
            send(1, Message::PreCheck { round: 2 }),
            send(2, Message::PreCheck { round: 2 }),
        ]
    );
    // Node 2 heard from the leader 50 ms ago and the leader is itself: both deny.
    let recent = heard_at.saturating_add(std::time::Duration::from_millis(50));
    let denied = Message::PreCheckReply {
        round: 2,
        granted: false,
    };
    assert_eq!(
        group
            .get(2)
            .handle_message(recent, n(3), Message::PreCheck { round: 2 }),
        vec![send(3, denied.clone())]
    );
    assert_eq!(
        group
            .get(1)
            .handle_message(recent, n(3), Message::PreCheck { round: 2 }),
        vec![send(3, denied.clone())]
    );
    assert_eq!(
        group.get(3).handle_message(late, n(2), denied.clone()),
        vec![]
    );
    assert_eq!(group.get(3).handle_message(late, n(1), denied), vec![]);
    // No ballot moved anywhere: the leader keeps leading.
    assert_eq!(group.get(3).promised(), leader_ballot);
    assert_eq!(group.get(2).promised(), leader_ballot);
    assert_eq!(group.get(1).leader_ballot(), Some(leader_ballot));
}

#[test]
fn phase_one_re_proposes_the_highest_ballot_value_of_every_open_slot_and_fills_gaps() {
    let mut replica =
        Replica::new(n(1), options(ReplicaKind::Full, 1), three_full(), ms(0)).unwrap();
    let now = ms(1000);
    // Having seen round 1, this replica campaigns in round 2.
    assert_eq!(
        replica.handle_message(
            now,
            n(3),
            Message::Rejected {
                promised: ballot(1, 3),
            }
        ),
        vec![]
    );
    replica.tick(now);
    replica.handle_message(
        now,
        n(2),
        Message::PreCheckReply {
            round: 2,
            granted: true,
        },
    );
    let b2 = ballot(2, 1);
    assert_eq!(replica.promised(), b2);
    let entry = |round: u64, node: u64, byte: u8| LogEntry {
        ballot: ballot(round, node),
        payload: Payload::Command(vec![byte]),
    };
    let promise = |accepted: Vec<(Slot, LogEntry)>| Message::Promise {
        ballot: b2,
        log_first_slot: Slot(1),
        accepted,
        lease_wait_nanos: 0,
    };
    assert_eq!(
        replica.handle_message(
            now,
            n(2),
            promise(vec![
                (Slot(1), entry(1, 2, b'a')),
                (Slot(3), entry(1, 2, b'c'))
            ]),
        ),
        vec![]
    );
    assert_eq!(
        replica.handle_message(now, n(3), promise(vec![(Slot(1), entry(1, 3, b'b'))])),
        vec![]
    );
    let restamped = |payload: Payload| LogEntry {
        ballot: b2,
        payload,
    };
    let log = vec![
        restamped(Payload::Command(vec![b'b'])),
        restamped(Payload::Noop),
        restamped(Payload::Command(vec![b'c'])),
        restamped(Payload::Noop),
    ];
    let accept = Message::Accept {
        ballot: b2,
        round: 1,
        first_slot: Slot(1),
        entries: log.clone(),
        commit_slot: Slot(0),
    };
    assert_eq!(
        replica.persisted(now, Lsn(1)),
        vec![
            Action::Persist {
                lsn: Lsn(2),
                promised: None,
                entries: (1..=4).map(Slot).zip(log).collect(),
            },
            Action::RoleChanged {
                role: RoleKind::Leader,
                ballot: b2,
            },
            send(2, accept.clone()),
            send(3, accept),
        ]
    );
}

/// Node 1 of three, its pre-check granted by node 2 at `now`: a candidate at ballot (1, 1)
/// whose own promise is being persisted (`Lsn(1)`).
fn replica_past_its_pre_check(now: MonotonicTime) -> Replica {
    let mut replica =
        Replica::new(n(1), options(ReplicaKind::Full, 1), three_full(), ms(0)).unwrap();
    replica.tick(now);
    replica.handle_message(
        now,
        n(2),
        Message::PreCheckReply {
            round: 1,
            granted: true,
        },
    );
    replica
}

#[test]
fn a_promise_from_a_replica_that_truncated_needed_slots_does_not_count() {
    let now = ms(1000);
    let mut replica = replica_past_its_pre_check(now);
    let b1 = ballot(1, 1);
    replica.persisted(now, Lsn(1));
    // Node 2 checkpointed through slot 9; we have committed nothing, so we cannot learn slots
    // 1..=9 from it, and its promise must not complete phase 1.
    let actions = replica.handle_message(
        now,
        n(2),
        Message::Promise {
            ballot: b1,
            log_first_slot: Slot(10),
            accepted: vec![],
            lease_wait_nanos: 0,
        },
    );
    assert_eq!(actions, vec![]);
    assert_eq!(replica.role(), RoleKind::Candidate);
}

/// The other half of the rule above: the replica that refused ships its snapshot
/// (`a_candidate_behind_our_truncation_point_does_not_hold_our_election_back`), and once the
/// candidate installed it, the candidate asks everyone who has not promised again, at the same
/// ballot, from past the snapshot. Without this a group stalled for good in the simulator
/// (seed 80066): a joiner with a snapshot beyond a lagging member's commit was the only third
/// promiser that member could find in a group of four whose leader had died.
#[test]
fn a_candidate_that_installs_a_promisers_snapshot_asks_again_from_past_it_and_wins() {
    let now = ms(1000);
    let mut replica = replica_past_its_pre_check(now);
    let b1 = ballot(1, 1);
    replica.persisted(now, Lsn(1));
    let truncated = Message::Promise {
        ballot: b1,
        log_first_slot: Slot(10),
        accepted: vec![],
        lease_wait_nanos: 0,
    };
    assert_eq!(replica.handle_message(now, n(2), truncated), vec![]);

    let actions = replica.snapshot_installed(
        now,
        SnapshotMeta {
            last_included_slot: Slot(9),
            membership: three_full(),
            config_slot: Slot::ZERO,
        },
    );
    let again = Message::Prepare {
        ballot: b1,
        from_slot: Slot(10),
        lease_released: None,
    };
    assert_eq!(actions, vec![send(2, again.clone()), send(3, again)]);
    assert_eq!(replica.role(), RoleKind::Candidate);

    // Node 2's promise from past the snapshot counts: with ours, a quorum.
    let entry = LogEntry {
        ballot: ballot(0, 2),
        payload: Payload::Command(b"tail".to_vec()),
    };
    let actions = replica.handle_message(
        now,
        n(2),
        Message::Promise {
            ballot: b1,
            log_first_slot: Slot(10),
            accepted: vec![(Slot(10), entry.clone())],
            lease_wait_nanos: 0,
        },
    );
    assert_eq!(replica.role(), RoleKind::Leader, "{actions:?}");
    assert_eq!(replica.commit_slot(), Slot(9));
    // The accepted tail is re-proposed in the new ballot after the snapshot.
    assert!(
        actions.iter().any(|action| matches!(
            action,
            Action::Persist { entries, .. }
                if entries.first() == Some(&(Slot(10), LogEntry { ballot: b1, payload: entry.payload.clone() }))
        )),
        "{actions:?}"
    );
}

/// A snapshot can show a candidate that it was removed meanwhile: it stops campaigning.
#[test]
fn a_candidate_whose_installed_snapshot_removed_it_stops_campaigning() {
    let now = ms(1000);
    let mut replica = replica_past_its_pre_check(now);
    replica.persisted(now, Lsn(1));
    assert_eq!(replica.role(), RoleKind::Candidate);
    let actions = replica.snapshot_installed(
        now,
        SnapshotMeta {
            last_included_slot: Slot(9),
            membership: Membership::new([n(2), n(3), n(4)], []),
            config_slot: Slot(7),
        },
    );
    assert_eq!(replica.role(), RoleKind::Follower, "{actions:?}");
    assert!(
        !actions.iter().any(|action| matches!(
            action,
            Action::Send {
                message: Message::Prepare { .. },
                ..
            }
        )),
        "{actions:?}"
    );
}

/// The snapshot offered to one campaign can arrive during the next pre-check. If it shows the
/// replica was removed, the pre-check ends there: a grant arriving afterwards starts no
/// campaign (the harness soak found one that did, against I6).
#[test]
fn a_pre_candidate_whose_installed_snapshot_removed_it_starts_no_campaign() {
    let mut replica =
        Replica::new(n(1), options(ReplicaKind::Full, 1), three_full(), ms(0)).unwrap();
    let now = ms(1000);
    replica.tick(now);
    assert_eq!(replica.role(), RoleKind::PreCandidate);
    replica.snapshot_installed(
        now,
        SnapshotMeta {
            last_included_slot: Slot(9),
            membership: Membership::new([n(2), n(3), n(4)], []),
            config_slot: Slot(7),
        },
    );
    assert_eq!(replica.role(), RoleKind::Follower);
    let actions = replica.handle_message(
        now,
        n(2),
        Message::PreCheckReply {
            round: 1,
            granted: true,
        },
    );
    assert_eq!(actions, vec![]);
    assert_eq!(replica.role(), RoleKind::Follower);
}

#[test]
fn a_single_replica_group_elects_itself_and_commits_on_its_own_durability() {
    let membership = Membership::new([n(1)], []);
    let mut replica = Replica::new(n(1), options(ReplicaKind::Full, 1), membership, ms(0)).unwrap();
    let now = ms(1000);
    let b1 = ballot(1, 1);
    assert_eq!(
        replica.tick(now),
        vec![
            Action::RoleChanged {
                role: RoleKind::PreCandidate,
                ballot: Ballot::ZERO,
            },
            Action::Persist {
                lsn: Lsn(1),
                promised: Some(b1),
                entries: vec![],
            },
            Action::RoleChanged {
                role: RoleKind::Candidate,
                ballot: b1,
            },
        ]
    );
    let noop = LogEntry {
        ballot: b1,
        payload: Payload::Noop,
    };
    assert_eq!(
        replica.persisted(now, Lsn(1)),
        vec![
            Action::Persist {
                lsn: Lsn(2),
                promised: None,
                entries: vec![(Slot(1), noop.clone())],
            },
            Action::RoleChanged {
                role: RoleKind::Leader,
                ballot: b1,
            },
        ]
    );
    assert_eq!(
        replica.persisted(now, Lsn(2)),
        vec![
            Action::Apply {
                entries: vec![(Slot(1), noop)],
            },
            Action::LeaseAcquired,
        ]
    );
    let proposed = replica.propose(now, b"x".to_vec()).unwrap();
    let entry = LogEntry {
        ballot: b1,
        payload: Payload::Command(b"x".to_vec()),
    };
    assert_eq!(proposed.slot, Slot(2));
    assert_eq!(
        proposed.actions,
        vec![Action::Persist {
            lsn: Lsn(3),
            promised: None,
            entries: vec![(Slot(2), entry.clone())],
        }]
    );
    assert_eq!(
        replica.persisted(now, Lsn(3)),
        vec![Action::Apply {
            entries: vec![(Slot(2), entry)],
        }]
    );
}

#[test]
fn a_candidate_behind_our_truncation_point_does_not_hold_our_election_back() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let now = group.now;
    for byte in 0..3u8 {
        let proposed = group.get(1).propose(now, vec![byte]).unwrap();
        group.settle(n(1), proposed.actions);
    }
    // Node 3 learns commits from the next Accept, so it trails the leader by one slot.
    let commit = group.get(3).commit_slot();
    assert!(commit >= Slot(2), "{commit:?}");
    group.get(3).checkpointed(now, commit);
    assert_eq!(group.get(3).log_first_slot(), commit.next());
    let deadline = group.get(3).election_deadline();

    // Node 2 lags (it committed nothing) and campaigns. Node 3 truncated the slots node 2 would
    // need, so node 2 cannot count node 3's promise: it cannot win with it yet. Node 3 refuses
    // the prepare: it keeps its promise, its role and its own election deadline, or a lagging
    // candidate campaigning again at every timeout would keep the up-to-date replicas from
    // ever winning. Its next ballot still goes past that round. It ships the candidate its
    // snapshot, after which the candidate's promise requests can count it.
    let later = now.saturating_add(std::time::Duration::from_millis(50));
    let promised_before = group.get(3).promised();
    let role_before = group.get(3).role();
    let lagging = Message::Prepare {
        ballot: ballot(7, 2),
        from_slot: Slot(1),
        lease_released: None,
    };
    let actions = group.get(3).handle_message(later, n(2), lagging.clone());
    assert_eq!(
        actions,
        vec![
            Action::SendSnapshot { to: n(2) },
            Action::Send {
                to: n(2),
                message: Message::Rejected {
                    promised: promised_before
                },
            }
        ]
    );
    assert_eq!(group.get(3).promised(), promised_before);
    assert_eq!(group.get(3).role(), role_before);
    assert_eq!(group.get(3).election_deadline(), deadline);
    // Asked again within the snapshot retry interval, it ships no second snapshot; after it,
    // it does (the first may have been lost).
    let actions = group.get(3).handle_message(later, n(2), lagging.clone());
    assert!(
        !actions.contains(&Action::SendSnapshot { to: n(2) }),
        "{actions:?}"
    );
    let after_retry = later.saturating_add(std::time::Duration::from_millis(50));
    let actions = group.get(3).handle_message(after_retry, n(2), lagging);
    assert!(
        actions.contains(&Action::SendSnapshot { to: n(2) }),
        "{actions:?}"
    );

    // A candidate that can use the promise still holds the election back.
    let viable = Message::Prepare {
        ballot: ballot(8, 2),
        from_slot: commit.next(),
        lease_released: None,
    };
    group.get(3).handle_message(later, n(2), viable);
    assert!(group.get(3).election_deadline() > deadline);
}

/// A leader that hears from no quorum for `QUORUM_SILENCE_ELECTION_TIMEOUTS` election
/// timeouts (cut off, while the others may follow a newer leader it cannot hear) stops leading,
/// so its clients get NotLeader at once instead of waiting for answers that never come (found
/// by shoal-sim's liveness check under a minority of faults, seeds 229 and 302). It keeps its
/// ballot: stepping down changes no durable state.
#[test]
fn a_leader_cut_off_from_a_quorum_steps_down() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let leader_ballot = group.get(1).leader_ballot().unwrap();
    let elected_at = group.now;
    // Heartbeats go out and nothing comes back.
    let mut stepped_down_at = None;
    for step in 1..=200 {
        let now = elected_at.saturating_add(std::time::Duration::from_millis(10 * step));
        let actions = group.get(1).tick(now);
        if actions.contains(&Action::RoleChanged {
            role: RoleKind::Follower,
            ballot: leader_ballot,
        }) {
            stepped_down_at = Some(now);
            break;
        }
    }
    let stepped_down_at = stepped_down_at.expect("the cut-off leader stepped down");
    let silent_for = stepped_down_at.saturating_duration_since(elected_at);
    assert!(
        silent_for >= common::ELECTION_MIN * 3,
        "not before three election timeouts: {silent_for:?}"
    );
    assert_eq!(group.get(1).role(), RoleKind::Follower);
    assert_eq!(group.get(1).promised(), leader_ballot, "the ballot stays");
    assert!(
        matches!(
            group.get(1).propose(stepped_down_at, b"x".to_vec()),
            Err(shoal_replication::ProposeError::NotLeader { leader_hint: None })
        ),
        "a proposal now gets NotLeader"
    );
}

/// A new group has never had a leader to wait for: its replicas pre-check after a tenth of the
/// election timeout (a new table's first request waited 1 to 2 s for its leaders, issue 21),
/// and once they have a leader they wait the full timeout again before suspecting it.
#[test]
fn a_new_group_elects_its_first_leader_within_a_fraction_of_the_election_timeout() {
    let mut group = Group::new(&three_full(), &[]);
    let jitter_max = std::time::Duration::from_millis(100);
    let fresh_deadline_max =
        ms(0).saturating_add((ELECTION_MIN + jitter_max) / FRESH_GROUP_ELECTION_TIMEOUT_DIVISOR);
    for id in 1..=3 {
        let deadline = group.get(id).election_deadline();
        assert!(deadline <= fresh_deadline_max, "{deadline:?}");
    }
    // Ticking at the short deadline elects a leader: nothing else had to happen first.
    let mut elected = false;
    for _ in 0..10 {
        group.advance((ELECTION_MIN + jitter_max) / FRESH_GROUP_ELECTION_TIMEOUT_DIVISOR);
        if (1..=3).any(|id| group.get(id).role() == RoleKind::Leader) {
            elected = true;
            break;
        }
    }
    assert!(elected, "no leader within ten short timeouts");
    // The followers now wait a full timeout for the leader they heard.
    let now = group.now;
    for id in 1..=3 {
        if group.get(id).role() == RoleKind::Follower {
            assert!(group.get(id).election_deadline() >= now.saturating_add(ELECTION_MIN / 2));
        }
    }
}

/// A candidate asked to promise by a candidate that has committed more than it has rejects the
/// lower ballot and stands down for an election timeout, so that its own rounds stop climbing
/// past the other's (a lagging candidate that could never win kept the up-to-date one out for
/// good in the simulator's replica moves). One asked by a candidate no further ahead than it
/// keeps campaigning.
#[test]
fn a_candidate_stands_down_for_a_candidate_that_committed_more() {
    for (from_slot, stands_down) in [(Slot(40), true), (Slot(1), false)] {
        let mut replica =
            Replica::new(n(3), options(ReplicaKind::Full, 3), three_full(), ms(0)).unwrap();
        let far = ms(60_000);
        let round = replica
            .tick(far)
            .iter()
            .find_map(|action| match action {
                Action::Send {
                    message: Message::PreCheck { round },
                    ..
                } => Some(*round),
                _ => None,
            })
            .expect("the timer ran out: a pre-check");
        replica.handle_message(
            far,
            n(1),
            Message::PreCheckReply {
                round,
                granted: true,
            },
        );
        assert_eq!(replica.role(), RoleKind::Candidate);
        let own = replica.promised();
        let lower = Ballot {
            round: own.round - 1,
            node: n(2),
        };
        let actions = replica.handle_message(
            far,
            n(2),
            Message::Prepare {
                ballot: lower,
                from_slot,
                lease_released: None,
            },
        );
        assert!(actions.contains(&Action::Send {
            to: n(2),
            message: Message::Rejected { promised: own },
        }));
        let expected = if stands_down {
            RoleKind::Follower
        } else {
            RoleKind::Candidate
        };
        assert_eq!(replica.role(), expected, "from slot {from_slot:?}");
        // Standing down changes no promise.
        assert_eq!(replica.promised(), own);
    }
}
