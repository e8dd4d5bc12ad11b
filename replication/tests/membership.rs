//! Membership change through the log, one member at a time, and log replicas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Group, HEARTBEAT, ms, n, options, three_full};
use shoal_replication::{
    Action, Ballot, LogEntry, Lsn, Membership, MembershipChange, MembershipError, Message, Payload,
    ProposeError, Replica, ReplicaKind, RoleKind, Slot,
};

fn spare(group: &mut Group, id: u64, kind: ReplicaKind) {
    let replica = Replica::new(n(id), options(kind, id), Membership::default(), ms(0)).unwrap();
    group.replicas.insert(n(id), replica);
}

#[test]
fn adding_a_full_replica_goes_through_the_log_and_blocks_other_proposals_until_committed() {
    let mut group = Group::new(&three_full(), &[]);
    spare(&mut group, 4, ReplicaKind::Full);
    group.elect(1);
    let now = group.now;
    let b1 = group.get(1).leader_ballot().unwrap();
    let four = Membership::new([n(1), n(2), n(3), n(4)], []);
    // A step on the membership the leader committed: it takes effect only on that one.
    let entry = LogEntry {
        ballot: b1,
        payload: Payload::MembershipStep {
            base_slot: Slot::ZERO,
            base: three_full(),
            next: four.clone(),
        },
    };
    let accept = Message::Accept {
        ballot: b1,
        round: 1,
        first_slot: Slot(2),
        entries: vec![entry.clone()],
        commit_slot: Slot(1),
    };
    let proposed = group
        .get(1)
        .propose_membership_change(now, MembershipChange::AddFullReplica(n(4)))
        .unwrap();
    assert_eq!(proposed.slot, Slot(2));
    assert_eq!(
        proposed.actions,
        vec![
            Action::Persist {
                lsn: Lsn(3),
                promised: None,
                entries: vec![(Slot(2), entry)],
            },
            Action::Send {
                to: n(2),
                message: accept.clone(),
            },
            Action::Send {
                to: n(3),
                message: accept,
            },
            // The newcomer is blank: it starts from a snapshot, never from entries whose
            // membership steps it could not evaluate.
            Action::SendSnapshot { to: n(4) },
        ]
    );
    assert_eq!(
        group.get(1).propose(now, b"later".to_vec()),
        Err(ProposeError::MembershipChangeInProgress)
    );
    assert_eq!(
        group
            .get(1)
            .propose_membership_change(now, MembershipChange::AddFullReplica(n(5))),
        Err(ProposeError::MembershipChangeInProgress)
    );
    assert_eq!(group.get(1).latest_membership(), four);
    assert_eq!(group.get(1).committed_membership(), &three_full());

    group.settle(n(1), proposed.actions);
    assert_eq!(group.get(1).committed_membership(), &four);
    // The newcomer caught up from the leader's snapshot and log, and learns the commit with the
    // heartbeat.
    group.advance(HEARTBEAT);
    assert_eq!(group.get(4).commit_slot(), Slot(2));
    assert_eq!(group.get(4).committed_membership(), &four);
    let now = group.now;
    let proposed = group.get(1).propose(now, b"later".to_vec()).unwrap();
    assert_eq!(proposed.slot, Slot(3));
}

/// Pre-checks are granted whoever asks, when no leader is heard from: a joiner that has none of
/// the group's log yet, or a member that missed an add, cannot tell a new member from a removed
/// one, and once the group needs its grant (a group of four with one member dead needs every
/// other one), denying stalls it for good.
#[test]
fn a_replica_grants_pre_checks_to_nodes_outside_the_membership_it_knows() {
    let mut joiner = Replica::new(
        n(4),
        options(ReplicaKind::Full, 4),
        Membership::default(),
        ms(0),
    )
    .unwrap();
    let far = ms(60_000);
    assert_eq!(
        joiner.handle_message(far, n(2), Message::PreCheck { round: 7 }),
        vec![Action::Send {
            to: n(2),
            message: Message::PreCheckReply {
                round: 7,
                granted: true
            },
        }]
    );
    let mut behind =
        Replica::new(n(1), options(ReplicaKind::Full, 1), three_full(), ms(0)).unwrap();
    assert_eq!(
        behind.handle_message(far, n(9), Message::PreCheck { round: 7 }),
        vec![Action::Send {
            to: n(9),
            message: Message::PreCheckReply {
                round: 7,
                granted: true
            },
        }]
    );
}

#[test]
fn a_leader_changes_membership_only_after_committing_in_its_own_ballot() {
    let membership = Membership::new([n(1)], []);
    let mut replica = Replica::new(n(1), options(ReplicaKind::Full, 1), membership, ms(0)).unwrap();
    let now = ms(1000);
    replica.tick(now);
    replica.persisted(now, Lsn(1));
    assert_eq!(replica.role(), RoleKind::Leader);
    assert_eq!(
        replica.propose_membership_change(now, MembershipChange::AddFullReplica(n(2))),
        Err(ProposeError::LeaderNotReady)
    );
    replica.persisted(now, Lsn(2));
    assert_eq!(
        replica.propose_membership_change(now, MembershipChange::Remove(n(1))),
        Err(ProposeError::Membership(MembershipError::NoFullReplicaLeft))
    );
    assert_eq!(
        replica.propose_membership_change(now, MembershipChange::AddFullReplica(n(1))),
        Err(ProposeError::Membership(MembershipError::AlreadyMember(n(
            1
        ))))
    );
    assert!(
        replica
            .propose_membership_change(now, MembershipChange::AddFullReplica(n(2)))
            .is_ok()
    );
}

#[test]
fn a_removed_leader_tells_the_commit_steps_down_and_the_rest_elect_a_leader_among_themselves() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let now = group.now;
    let proposed = group
        .get(1)
        .propose_membership_change(now, MembershipChange::Remove(n(1)))
        .unwrap();
    group.settle(n(1), proposed.actions);
    let two_three = Membership::new([n(2), n(3)], []);
    assert_eq!(group.get(1).committed_membership(), &two_three);
    assert_eq!(group.get(1).role(), RoleKind::Follower);
    // Its last round told the others the removal is committed: they need no majority of the
    // old membership (node 1 included) to elect a leader among themselves.
    for remaining in [2, 3] {
        assert_eq!(group.get(remaining).committed_membership(), &two_three);
    }
    // It handed over: a member whose log held the removal when it committed got TimeoutNow
    // and was elected at once, with no election timeout; and since the old leader released
    // its lease, the new one commits without waiting for it: at the same instant.
    let successor = group
        .get(1)
        .leader_hint()
        .expect("the removed leader names its successor");
    assert!([n(2), n(3)].contains(&successor));
    assert_eq!(group.get(successor.0).role(), RoleKind::Leader);
    let now = group.now;
    let proposed = group
        .get(successor.0)
        .propose(now, b"after".to_vec())
        .unwrap();
    let slot = proposed.slot;
    group.settle(successor, proposed.actions);
    assert_eq!(group.now, now);
    assert_eq!(group.get(successor.0).commit_slot(), slot);
    assert_eq!(group.get(successor.0).committed_membership(), &two_three);
    // The removed node never campaigns again.
    let far = ms(60_000);
    assert_eq!(group.get(1).tick(far), vec![]);
}

/// A TimeoutNow is obeyed only from the leader the replica follows, at the ballot it promised,
/// within an election timeout of hearing from it, and with a log matching the leader's
/// through the commit it names: a stale, forged, late or premature one starts no election.
#[test]
fn timeout_now_from_anyone_but_the_current_leader_is_ignored() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let now = group.now;
    let ballot = group.get(2).promised();
    assert_eq!(ballot.node, n(1));
    // From node 3, which does not lead; and from node 1 at an older ballot.
    let older = Ballot {
        round: ballot.round - 1,
        node: n(1),
    };
    for (from, stale) in [(n(3), ballot), (n(1), older)] {
        let actions = group.get(2).handle_message(
            now,
            from,
            Message::TimeoutNow {
                ballot: stale,
                commit_slot: Slot::ZERO,
            },
        );
        assert_eq!(actions, vec![]);
        assert_eq!(group.get(2).role(), RoleKind::Follower);
        assert_eq!(group.get(2).promised(), ballot);
    }
    // From the leader, but naming a commit past node 2's log.
    let beyond = Slot(group.get(2).log_last_slot().0 + 5);
    let actions = group.get(2).handle_message(
        now,
        n(1),
        Message::TimeoutNow {
            ballot,
            commit_slot: beyond,
        },
    );
    assert_eq!(actions, vec![]);
    assert_eq!(group.get(2).promised(), ballot);
    // From the leader, but after an election timeout without hearing from it.
    let late = ms(now.as_nanos() / 1_000_000 + 10_000);
    let actions = group.get(2).handle_message(
        late,
        n(1),
        Message::TimeoutNow {
            ballot,
            commit_slot: Slot::ZERO,
        },
    );
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
    assert_eq!(group.get(2).promised(), ballot);
}

#[test]
fn a_log_replica_is_added_counts_in_quorums_and_never_applies_or_campaigns() {
    let mut group = Group::new(&Membership::new([n(1), n(2)], [n(3)]), &[3]);
    // Node 2 is down: node 1 and the log replica are a quorum of three.
    group.replicas.remove(&n(2));
    group.elect(1);
    assert_eq!(group.get(1).role(), RoleKind::Leader);
    let now = group.now;
    let proposed = group.get(1).propose(now, b"x".to_vec()).unwrap();
    let applied = group.settle(n(1), proposed.actions);
    assert_eq!(group.get(1).commit_slot(), Slot(2));
    assert!(applied.contains_key(&n(1)));
    group.advance(HEARTBEAT);
    assert_eq!(group.get(3).commit_slot(), Slot(2));
    assert_eq!(group.get(3).tick(ms(60_000)), vec![]);
    assert_eq!(group.get(3).role(), RoleKind::Follower);

    // Adding a second log replica.
    spare(&mut group, 4, ReplicaKind::Log);
    let now = group.now;
    let proposed = group
        .get(1)
        .propose_membership_change(now, MembershipChange::AddLogReplica(n(4)))
        .unwrap();
    let applied = group.settle(n(1), proposed.actions);
    group.advance(HEARTBEAT);
    let expected = Membership::new([n(1), n(2)], [n(3), n(4)]);
    assert_eq!(group.get(1).committed_membership(), &expected);
    assert_eq!(group.get(4).committed_membership(), &expected);
    assert!(!applied.contains_key(&n(3)) && !applied.contains_key(&n(4)));
    assert_eq!(group.get(4).tick(ms(60_000)), vec![]);
}

/// A host evaluating requests against applied state (shoal-partition) waits for this: until
/// the leader's own no-op commits, its log may hold recovered entries no host has applied.
#[test]
fn a_leader_is_ready_only_after_committing_in_its_own_ballot() {
    let membership = Membership::new([n(1)], []);
    let mut replica = Replica::new(n(1), options(ReplicaKind::Full, 1), membership, ms(0)).unwrap();
    assert!(!replica.leader_ready(), "a follower is never ready");
    let now = ms(1000);
    replica.tick(now);
    replica.persisted(now, Lsn(1));
    assert_eq!(replica.role(), RoleKind::Leader);
    assert!(!replica.leader_ready(), "its no-op is not committed yet");
    replica.persisted(now, Lsn(2));
    assert!(replica.leader_ready());
}

/// Leader balance: a leader asked to hand over to a member takes no new proposal (NotLeader,
/// the member as the hint) until the member has its whole log, then steps down; the member
/// campaigns at once and, the old lease released, commits at the same instant. A transfer to
/// a member that never catches up is given up after an election timeout.
#[test]
fn a_leader_hands_over_to_a_member_that_caught_up_and_gives_up_on_one_that_does_not() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let now = group.now;
    let proposed = group.get(1).propose(now, b"before".to_vec()).unwrap();
    group.settle(n(1), proposed.actions);
    let actions = group.get(1).transfer_leadership(now, n(2)).unwrap();
    group.settle(n(1), actions);
    assert_eq!(group.get(2).role(), RoleKind::Leader);
    assert_eq!(group.get(1).role(), RoleKind::Follower);
    assert_eq!(group.get(1).leader_hint(), Some(n(2)));
    let proposed = group.get(2).propose(now, b"after".to_vec()).unwrap();
    let slot = proposed.slot;
    group.settle(n(2), proposed.actions);
    assert_eq!(group.now, now);
    assert_eq!(group.get(2).commit_slot(), slot);
    assert_eq!(
        group.get(1).transfer_leadership(now, n(3)),
        Err(ProposeError::NotLeader {
            leader_hint: Some(n(2))
        })
    );

    // Node 3 is cut off and misses an entry: the transfer waits, refusing proposals, then is
    // given up.
    let three = group.replicas.remove(&n(3)).unwrap();
    let proposed = group.get(2).propose(now, b"missed".to_vec()).unwrap();
    group.settle(n(2), proposed.actions);
    let actions = group.get(2).transfer_leadership(now, n(3)).unwrap();
    group.settle(n(2), actions);
    assert_eq!(group.get(2).role(), RoleKind::Leader);
    assert_eq!(
        group.get(2).propose(now, b"held".to_vec()).map(|_| ()),
        Err(ProposeError::NotLeader {
            leader_hint: Some(n(3))
        })
    );
    // Past an election timeout, in heartbeat steps (node 1 keeps hearing from node 2).
    for _ in 0..60 {
        group.advance(HEARTBEAT);
    }
    group.replicas.insert(n(3), three);
    assert_eq!(group.get(2).role(), RoleKind::Leader);
    let now = group.now;
    assert!(group.get(2).propose(now, b"on".to_vec()).is_ok());
    // Not a member, or itself: refused.
    assert!(group.get(2).transfer_leadership(now, n(9)).is_err());
    assert!(group.get(2).transfer_leadership(now, n(2)).is_err());
}

/// A replica removed while it was cut off does not know it: on its return it campaigns on the
/// membership it last knew. Its `Prepare` asks from before the entry that removed it, and the
/// members refuse it without raising their promise: the leader keeps leading. (With a second
/// removed replica granting its pre-checks, it used to take the group's leader away at every
/// election timeout until the orphan scan deleted it.) A node that the membership lists again
/// by a later entry asks from past it, and is heard as any candidate.
#[test]
fn a_removed_replica_that_missed_its_removal_cannot_take_the_leadership_away() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let now = group.now;
    let proposed = group
        .get(1)
        .propose_membership_change(now, MembershipChange::Remove(n(3)))
        .unwrap();
    let removal = proposed.slot;
    group.settle(n(1), proposed.actions);
    // A heartbeat tells node 2 the removal is committed.
    group.advance(HEARTBEAT);
    for member in [1, 2] {
        assert_eq!(group.get(member).config_slot(), removal);
    }
    let leading = group.get(1).leader_ballot().unwrap();
    let promised = group.get(2).promised();
    // Node 3 as it was before the removal: committed through the slot before it.
    let stale = Message::Prepare {
        ballot: Ballot {
            round: leading.round + 10,
            node: n(3),
        },
        from_slot: removal,
        lease_released: None,
    };
    let now = group.now;
    let refused = group.get(1).handle_message(now, n(3), stale.clone());
    assert_eq!(
        refused,
        vec![Action::Send {
            to: n(3),
            message: Message::Rejected { promised: leading },
        }]
    );
    assert_eq!(group.get(1).role(), RoleKind::Leader);
    assert_eq!(group.get(1).leader_ballot(), Some(leading));
    let refused = group.get(2).handle_message(now, n(3), stale);
    assert!(
        matches!(
            refused.as_slice(),
            [Action::Send {
                message: Message::Rejected { .. },
                ..
            }]
        ),
        "{refused:?}"
    );
    assert_eq!(group.get(2).promised(), promised);
    // A candidate that committed past the entry (as a member added again would have) is not
    // refused for being unlisted: its higher ballot ends the leader's.
    let current = Message::Prepare {
        ballot: Ballot {
            round: leading.round + 10,
            node: n(3),
        },
        from_slot: removal.next(),
        lease_released: None,
    };
    group.get(1).handle_message(now, n(3), current);
    assert_eq!(group.get(1).role(), RoleKind::Follower);
    assert!(group.get(1).promised() > leading);
}
