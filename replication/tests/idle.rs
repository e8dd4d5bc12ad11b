//! Idle groups heartbeat less (ReplicaOptions::idle_heartbeat_interval): a leader with every
//! entry committed, every follower caught up and told the commit sends rounds at the idle
//! interval; a proposal brings the busy interval back at once; the lease never lapses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{DRIFT, ELECTION_MIN, Group, HEARTBEAT, LEASE, n, options, three_full};
use shoal_replication::{Action, Message, MonotonicTime, OptionsError, ReplicaKind};

/// Three rounds per idle interval would be a busy group; this is three busy intervals, and
/// below the lease net of drift (70 ms).
const IDLE: Duration = Duration::from_millis(60);

fn idle_group() -> Group {
    Group::with_options(&three_full(), |options| {
        options.idle_heartbeat_interval = IDLE;
    })
}

/// Ticks the leader (node 1) every millisecond for `span`, delivering everything at once, and
/// returns when each heartbeat round went out (an Accept without entries to node 2).
fn heartbeat_times(group: &mut Group, span: Duration) -> Vec<MonotonicTime> {
    let mut times = Vec::new();
    let end = group.now.saturating_add(span);
    while group.now < end {
        group.now = group.now.saturating_add(Duration::from_millis(1));
        let now = group.now;
        let actions = group.get(1).tick(now);
        let heartbeat = actions.iter().any(|action| {
            matches!(action, Action::Send { to, message: Message::Accept { entries, .. } }
                if *to == n(2) && entries.is_empty())
        });
        if heartbeat {
            times.push(now);
        }
        group.settle(n(1), actions);
    }
    times
}

fn gaps(times: &[MonotonicTime]) -> Vec<Duration> {
    times
        .windows(2)
        .map(|pair| Duration::from_nanos(pair[1].as_nanos() - pair[0].as_nanos()))
        .collect()
}

#[test]
fn an_idle_leader_heartbeats_at_the_idle_interval_and_keeps_its_lease() {
    let mut group = idle_group();
    group.elect(1);
    let now = group.now;
    let proposed = group.get(1).propose(now, b"x".to_vec()).unwrap();
    group.settle(n(1), proposed.actions);
    assert!(
        !group.get(1).idle(),
        "the followers were not told the commit yet"
    );
    let times = heartbeat_times(&mut group, Duration::from_millis(400));
    assert!(group.get(1).idle());
    // The first round tells the followers the commit; from then on the group is idle.
    let gaps = gaps(&times);
    assert!(gaps.len() >= 5, "rounds: {times:?}");
    assert!(
        gaps[1..].iter().all(|gap| *gap == IDLE),
        "idle rounds come every {IDLE:?}: {gaps:?}"
    );
    // Every idle round renews the lease before it ends.
    let lease_net = LEASE - DRIFT;
    assert!(IDLE < lease_net);
    for at in times.iter().skip(1) {
        assert_eq!(group.get(1).can_serve_strong_read(*at), Ok(()));
        let just_before = at.saturating_sub(Duration::from_nanos(1));
        assert_eq!(group.get(1).can_serve_strong_read(just_before), Ok(()));
    }
    // Followers keep hearing from the leader well within their election timeout.
    assert!(IDLE < ELECTION_MIN);
    assert_eq!(group.get(2).leader_hint(), Some(n(1)));
    assert_eq!(group.get(3).leader_hint(), Some(n(1)));
}

#[test]
fn a_proposal_ends_the_idle_spell_at_once() {
    let mut group = idle_group();
    group.elect(1);
    heartbeat_times(&mut group, Duration::from_millis(300));
    assert!(group.get(1).idle());
    // A proposal whose Accept is lost: the next round, which makes the followers ask for it,
    // comes a busy interval later, not at the idle deadline.
    let proposed_at = group.now;
    let proposed = group.get(1).propose(proposed_at, b"lost".to_vec()).unwrap();
    let kept: Vec<Action> = proposed
        .actions
        .into_iter()
        .filter(|action| !matches!(action, Action::Send { .. }))
        .collect();
    group.settle(n(1), kept);
    assert!(!group.get(1).idle());
    let times = heartbeat_times(&mut group, HEARTBEAT);
    assert_eq!(
        times,
        vec![proposed_at.saturating_add(HEARTBEAT)],
        "the round after a proposal comes at the busy interval"
    );
    // That round recovered the lost entry: every follower holds it and the group is idle again
    // once the commit went out.
    assert_eq!(group.get(2).log_last_slot(), group.get(1).log_last_slot());
    heartbeat_times(&mut group, HEARTBEAT * 2);
    assert!(group.get(1).idle());
}

#[test]
fn the_idle_interval_is_validated() {
    let valid = options(ReplicaKind::Full, 1);
    let below_busy = {
        let mut options = valid.clone();
        options.idle_heartbeat_interval = HEARTBEAT - Duration::from_millis(1);
        options
    };
    let outlives_lease = {
        let mut options = valid.clone();
        options.idle_heartbeat_interval = LEASE - DRIFT;
        options
    };
    let reaches_election = {
        let mut options = valid.clone();
        options.lease_duration = ELECTION_MIN * 2;
        options.idle_heartbeat_interval = ELECTION_MIN;
        options
    };
    assert_eq!(valid.validate(), Ok(()));
    for options in [below_busy, outlives_lease, reaches_election] {
        assert_eq!(
            options.validate(),
            Err(OptionsError::IdleHeartbeatOutOfRange)
        );
    }
}
