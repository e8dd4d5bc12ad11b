//! Leader leases: when a leader may serve strong reads, and how a new leader waits out an old
//! lease it cannot see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{DRIFT, Group, HEARTBEAT, LEASE, n, three_full};
use shoal_replication::{Action, Message, StrongReadRefusal};

fn after(
    time: shoal_replication::MonotonicTime,
    milliseconds: u64,
) -> shoal_replication::MonotonicTime {
    time.saturating_add(Duration::from_millis(milliseconds))
}

#[test]
fn a_lease_starts_at_the_send_time_of_the_acknowledged_round_and_is_shortened_by_the_drift() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let elected = group.now;
    // Nobody ever supported an earlier lease, so the new leader waits for nothing: it committed
    // its no-op and holds the lease from round 1 at once.
    assert_eq!(group.get(1).can_serve_strong_read(elected), Ok(()));
    assert_eq!(
        group.get(2).can_serve_strong_read(elected),
        Err(StrongReadRefusal::NotLeader {
            leader_hint: Some(n(1)),
        })
    );
    // Round 1 was sent at `elected` and acknowledged by a quorum; nothing renews it.
    let lease_end = elected.saturating_add(LEASE - DRIFT);
    assert_eq!(
        group
            .get(1)
            .can_serve_strong_read(lease_end.saturating_sub(Duration::from_nanos(1))),
        Ok(())
    );
    assert_eq!(
        group.get(1).can_serve_strong_read(lease_end),
        Err(StrongReadRefusal::LeaseNotHeld)
    );
    // Inputs announce the changes they observe: the loss at the first input after the end (here
    // a tick that also sends heartbeat round 2, which nobody answers).
    let b1 = group.get(1).leader_ballot().unwrap();
    let heartbeat = Message::Accept {
        ballot: b1,
        round: 2,
        first_slot: shoal_replication::Slot(2),
        entries: vec![],
        commit_slot: shoal_replication::Slot(1),
    };
    assert_eq!(
        group.get(1).tick(lease_end),
        vec![
            Action::Send {
                to: n(2),
                message: heartbeat.clone(),
            },
            Action::Send {
                to: n(3),
                message: heartbeat,
            },
            Action::LeaseLost,
        ]
    );
}

#[test]
fn heartbeats_acknowledged_by_a_quorum_renew_the_lease() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let elected = group.now;
    for _ in 0..10 {
        group.advance(HEARTBEAT);
    }
    // The last round was sent at `elected + 200 ms` and acknowledged at once.
    let last_round = after(elected, 200);
    assert_eq!(group.get(1).can_serve_strong_read(last_round), Ok(()));
    let lease_end = last_round.saturating_add(LEASE - DRIFT);
    assert_eq!(
        group.get(1).can_serve_strong_read(lease_end),
        Err(StrongReadRefusal::LeaseNotHeld)
    );
}

#[test]
fn without_a_quorum_of_acknowledgements_the_lease_lapses() {
    let mut group = Group::new(&three_full(), &[]);
    group.elect(1);
    let elected = group.now;
    // The followers vanish; the leader keeps sending heartbeats nobody answers.
    group.replicas.remove(&n(2));
    group.replicas.remove(&n(3));
    let mut lost_at = None;
    for step in 1..=10u64 {
        group.now = after(elected, step * HEARTBEAT.as_millis() as u64);
        let now = group.now;
        let actions = group.get(1).tick(now);
        if actions.contains(&Action::LeaseLost) {
            lost_at.get_or_insert(now);
        }
    }
    // Acquired at the first input after `elected + drift`, lost at the first after the end.
    assert_eq!(lost_at, Some(after(elected, 80)));
    assert_eq!(
        group.get(1).can_serve_strong_read(after(elected, 69)),
        Ok(())
    );
}

#[test]
fn a_new_leader_waits_out_the_lease_its_promisers_supported() {
    // A lease longer than the election timeout, so a new leader can be elected while the old
    // lease still runs, and only the promise's lease wait keeps the two apart.
    let lease = Duration::from_millis(300);
    let mut group = Group::with_lease(&three_full(), &[], lease);
    group.elect(1);
    group.advance(HEARTBEAT);
    let last_support = group.now;
    let old_lease_end = last_support.saturating_add(lease - DRIFT);
    assert_eq!(group.get(1).can_serve_strong_read(last_support), Ok(()));

    // The old leader is cut off. Node 2's timer fires 250 ms later; node 3 grants the pre-check.
    let mut old_leader = group.replicas.remove(&n(1)).unwrap();
    group.now = after(last_support, 250);
    let now = group.now;
    let actions = group.get(2).tick(now);
    group.settle(n(2), actions);
    let new_ballot = group.get(2).leader_ballot().expect("node 2 leads");
    assert!(new_ballot > old_leader.leader_ballot().unwrap());

    // Node 3 supported the old lease until `last_support + 300 ms` on its clock; node 2 adds the
    // drift bound: no strong read before `last_support + 310 ms`, after the old lease's end.
    let wait_end = last_support.saturating_add(lease + DRIFT);
    assert!(wait_end > old_lease_end);
    let just_before = wait_end.saturating_sub(Duration::from_nanos(1));
    assert_eq!(
        group.get(2).can_serve_strong_read(just_before),
        Err(StrongReadRefusal::LeaseNotHeld)
    );
    // Nor does it acknowledge writes before then: the old leader may still serve reads, which
    // must not miss an acknowledged write. Its no-op (slot 2) is accepted but not committed.
    group.get(2).tick(just_before);
    assert_eq!(group.get(2).commit_slot(), shoal_replication::Slot(1));
    let actions = group.get(2).tick(wait_end);
    assert!(
        actions.contains(&Action::LeaseAcquired),
        "commits and takes the lease at the first tick after the wait: {actions:?}"
    );
    assert_eq!(group.get(2).commit_slot(), shoal_replication::Slot(2));
    assert_eq!(group.get(2).can_serve_strong_read(wait_end), Ok(()));
    // Meanwhile the old leader's lease held until its own end and no longer.
    assert_eq!(
        old_leader.can_serve_strong_read(old_lease_end.saturating_sub(Duration::from_nanos(1))),
        Ok(())
    );
    assert_eq!(
        old_leader.can_serve_strong_read(old_lease_end),
        Err(StrongReadRefusal::LeaseNotHeld)
    );
    // When it hears of the new ballot it steps down for good.
    let actions = old_leader.handle_message(
        now,
        n(3),
        Message::Rejected {
            promised: new_ballot,
        },
    );
    assert!(old_leader.leader_ballot().is_none(), "{actions:?}");
}

#[test]
fn a_restarted_replica_protects_leases_it_may_have_supported_before_the_crash() {
    let lease = Duration::from_millis(300);
    let mut group = Group::with_lease(&three_full(), &[], lease);
    group.elect(1);
    let b1 = group.get(1).leader_ballot().unwrap();
    let restart_at = after(group.now, 500);
    let recovered = shoal_replication::RecoveredState {
        promised: b1,
        snapshot: shoal_replication::SnapshotMeta {
            last_included_slot: shoal_replication::Slot(0),
            membership: three_full(),
            config_slot: shoal_replication::Slot::ZERO,
        },
        entries: vec![],
    };
    let mut replica = shoal_replication::Replica::recover(
        n(3),
        common::options_with_lease(shoal_replication::ReplicaKind::Full, 3, lease),
        recovered,
        restart_at,
    )
    .unwrap();
    let ballot = shoal_replication::Ballot {
        round: 2,
        node: n(2),
    };
    let actions = replica.handle_message(
        restart_at,
        n(2),
        Message::Prepare {
            ballot,
            from_slot: shoal_replication::Slot(1),
            lease_released: None,
        },
    );
    let promise = Message::Promise {
        ballot,
        log_first_slot: shoal_replication::Slot(1),
        accepted: vec![],
        lease_wait_nanos: lease.as_nanos() as u64,
    };
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(
        replica.persisted(restart_at, shoal_replication::Lsn(1)),
        vec![Action::Send {
            to: n(2),
            message: promise,
        }]
    );
}
