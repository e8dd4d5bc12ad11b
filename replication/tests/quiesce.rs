//! Quiescence (ReplicaOptions::quiesce): an idle group stops heartbeating once every follower
//! acknowledged a Quiesce round; what wakes a leader (a proposal, `wake` for a strong read, a
//! pre-check, a follower's node back) and a follower (its leader's node unreachable, a
//! pre-check from its leader's node, any Accept).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{ELECTION_MIN, Group, LEASE, n, three_full};
use shoal_replication::{
    Action, Message, MonotonicTime, QUIESCED_FOLLOWER_WAKE_ELECTION_TIMEOUTS, RoleKind,
    StrongReadRefusal,
};

const IDLE: Duration = Duration::from_millis(40);

fn quiescing_group() -> Group {
    Group::with_options(&three_full(), |options| {
        options.idle_heartbeat_interval = IDLE;
        options.quiesce = true;
    })
}

/// Ticks the leader (node 1) every millisecond for `span`, delivering everything at once.
/// Returns how many messages it sent.
fn run_leader(group: &mut Group, span: Duration) -> usize {
    let mut sent = 0;
    let end = group.now.saturating_add(span);
    while group.now < end {
        group.now = group.now.saturating_add(Duration::from_millis(1));
        let now = group.now;
        let actions = group.get(1).tick(now);
        sent += actions
            .iter()
            .filter(|action| matches!(action, Action::Send { .. }))
            .count();
        group.settle(n(1), actions);
    }
    sent
}

fn quiesced_group() -> Group {
    let mut group = quiescing_group();
    group.elect(1);
    run_leader(&mut group, Duration::from_millis(300));
    for id in 1..=3 {
        assert!(group.get(id).quiesced(), "node {id} quiesced");
    }
    group
}

fn sends_to(actions: &[Action], to: u64) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send {
                to: target,
                message,
            } if *target == n(to) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_idle_group_quiesces_and_then_sends_nothing() {
    let mut group = quiesced_group();
    assert_eq!(run_leader(&mut group, Duration::from_secs(5)), 0);
    let never = MonotonicTime::from_nanos(u64::MAX);
    assert_eq!(group.get(1).next_timer_deadline(), never);
    // Followers run no election timer, only the backstop of many timeouts.
    let backstop = group.get(2).next_timer_deadline();
    let timeouts = ELECTION_MIN * QUIESCED_FOLLOWER_WAKE_ELECTION_TIMEOUTS;
    assert!(backstop < never);
    assert!(backstop <= group.now.saturating_add(timeouts));
    let before = backstop.saturating_sub(Duration::from_millis(1));
    assert!(group.get(2).tick(before).is_empty());
    assert!(group.get(2).quiesced());
    // The leader still leads; its lease lapsed with the heartbeats.
    assert_eq!(group.get(1).role(), RoleKind::Leader);
    assert_eq!(
        group.get(1).can_serve_strong_read(before),
        Err(StrongReadRefusal::LeaseNotHeld)
    );
}

#[test]
fn a_quiesced_follower_wakes_by_itself_at_its_backstop_and_the_group_quiesces_again() {
    let mut group = quiesced_group();
    let backstop = group.get(2).next_timer_deadline();
    group.get(2).tick(backstop);
    assert!(!group.get(2).quiesced());
    assert_eq!(group.get(2).role(), RoleKind::Follower);
    // Its election timer runs again: past it, it pre-checks; the quiesced leader wakes and the
    // group goes back to sleep.
    group.now = backstop.saturating_add(ELECTION_MIN * 3);
    let now = group.now;
    let actions = group.get(2).tick(now);
    assert!(
        sends_to(&actions, 1)
            .iter()
            .any(|message| matches!(message, Message::PreCheck { .. }))
    );
    // The pre-check wakes the leader, whose round (still idle: a Quiesce round) tells node 2
    // of it; delivered at once, the group quiesces again within the same exchange.
    group.settle(n(2), actions);
    run_leader(&mut group, Duration::from_millis(300));
    assert_eq!(group.get(2).leader_hint(), Some(n(1)));
    assert_eq!(group.get(1).role(), RoleKind::Leader);
    for id in 1..=3 {
        assert!(group.get(id).quiesced(), "node {id} quiesced again");
    }
}

#[test]
fn a_follower_that_misses_the_quiesce_round_keeps_the_leader_heartbeating() {
    let mut group = quiescing_group();
    group.elect(1);
    // Node 3 hears nothing: the leader never sees it acknowledge a Quiesce round.
    let mut quiesced_ever = false;
    for _ in 0..300 {
        group.now = group.now.saturating_add(Duration::from_millis(1));
        let now = group.now;
        let actions: Vec<Action> = group
            .get(1)
            .tick(now)
            .into_iter()
            .filter(|action| !matches!(action, Action::Send { to, .. } if *to == n(3)))
            .collect();
        group.settle(n(1), actions);
        quiesced_ever |= group.get(1).quiesced();
    }
    assert!(
        !quiesced_ever,
        "a leader quiesces only once every follower did"
    );
    assert!(!group.get(3).quiesced());
}

#[test]
fn a_strong_read_wakes_the_leader_and_one_round_renews_its_lease() {
    let mut group = quiesced_group();
    group.now = group.now.saturating_add(LEASE * 2);
    let now = group.now;
    assert_eq!(
        group.get(1).can_serve_strong_read(now),
        Err(StrongReadRefusal::LeaseNotHeld)
    );
    let actions = group.get(1).wake(now);
    assert!(!group.get(1).quiesced());
    assert_eq!(
        sends_to(&actions, 2).len(),
        1,
        "a heartbeat round goes out at once"
    );
    group.settle(n(1), actions);
    assert_eq!(group.get(1).can_serve_strong_read(now), Ok(()));
    // The followers were woken by the Accept and, the group being idle, quiesce again.
    run_leader(&mut group, Duration::from_millis(300));
    assert!(group.get(1).quiesced() && group.get(2).quiesced());
}

#[test]
fn a_proposal_wakes_the_leader_and_commits() {
    let mut group = quiesced_group();
    let now = group.now;
    let proposed = group.get(1).propose(now, b"x".to_vec()).unwrap();
    assert!(!group.get(1).quiesced());
    group.settle(n(1), proposed.actions);
    assert_eq!(group.get(1).commit_slot(), proposed.slot);
    assert!(!group.get(2).quiesced(), "an Accept wakes a follower");
}

#[test]
fn a_follower_told_its_leaders_node_is_unreachable_campaigns() {
    let mut group = quiesced_group();
    let now = group.now;
    // Unreachable: another node changes nothing.
    assert!(group.get(2).peer_unreachable(now, n(3)).is_empty());
    assert!(group.get(2).quiesced());
    group.get(2).peer_unreachable(now, n(1));
    assert!(!group.get(2).quiesced());
    // Its election timer runs again: past it, a pre-check goes out.
    let later = now.saturating_add(Duration::from_secs(1));
    let actions = group.get(2).tick(later);
    assert!(
        sends_to(&actions, 3)
            .iter()
            .any(|message| matches!(message, Message::PreCheck { .. }))
    );
}

#[test]
fn pre_checks_wake_a_quiesced_leader_and_only_the_leaders_node_wakes_a_follower() {
    let mut group = quiesced_group();
    let now = group.now.saturating_add(Duration::from_secs(1));
    // A third replica's pre-check: the quiesced follower answers as one that heard its leader
    // just now, and stays quiesced.
    let answer = group
        .get(3)
        .handle_message(now, n(2), Message::PreCheck { round: 5 });
    assert_eq!(
        sends_to(&answer, 2),
        vec![Message::PreCheckReply {
            round: 5,
            granted: false
        }]
    );
    assert!(group.get(3).quiesced());
    // The leader refuses it too, and wakes so that the campaigner hears from it (a heartbeat
    // round: still idle, so it asks to quiesce again).
    let answer = group
        .get(1)
        .handle_message(now, n(2), Message::PreCheck { round: 5 });
    assert!(!group.get(1).quiesced());
    let to_campaigner = sends_to(&answer, 2);
    assert!(to_campaigner.contains(&Message::PreCheckReply {
        round: 5,
        granted: false
    }));
    assert!(
        to_campaigner
            .iter()
            .any(|message| matches!(message, Message::Quiesce { .. }))
    );
    // A pre-check from the leader's own node: it restarted and leads no more.
    let mut group = quiesced_group();
    let now = group.now.saturating_add(Duration::from_secs(1));
    let answer = group
        .get(3)
        .handle_message(now, n(1), Message::PreCheck { round: 7 });
    assert!(!group.get(3).quiesced());
    assert_eq!(
        sends_to(&answer, 1),
        vec![Message::PreCheckReply {
            round: 7,
            granted: true
        }]
    );
}

#[test]
fn a_followers_node_back_wakes_the_leader() {
    let mut group = quiesced_group();
    let now = group.now;
    // A node that hosts no follower of the group changes nothing.
    assert!(group.get(1).peer_reachable(now, n(9)).is_empty());
    assert!(group.get(1).quiesced());
    let actions = group.get(1).peer_reachable(now, n(3));
    assert!(!group.get(1).quiesced());
    assert_eq!(sends_to(&actions, 3).len(), 1);
}
