//! Helpers shared by the scenario tests: options, time in milliseconds, and a tiny router that
//! moves messages between replicas and makes every write durable at once, used only to set a
//! scenario up. The step under test is always asserted action by action.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_replication::{
    Action, Membership, MonotonicTime, NodeId, Replica, ReplicaKind, ReplicaOptions,
};

pub const HEARTBEAT: Duration = Duration::from_millis(20);
pub const LEASE: Duration = Duration::from_millis(80);
pub const DRIFT: Duration = Duration::from_millis(10);
pub const ELECTION_MIN: Duration = Duration::from_millis(100);

pub fn options(kind: ReplicaKind, seed: u64) -> ReplicaOptions {
    options_with_lease(kind, seed, LEASE)
}

pub fn options_with_lease(kind: ReplicaKind, seed: u64, lease: Duration) -> ReplicaOptions {
    ReplicaOptions {
        kind,
        election_timeout_min: ELECTION_MIN,
        election_timeout_jitter: Duration::from_millis(100),
        heartbeat_interval: HEARTBEAT,
        // The scenarios step rounds one by one at HEARTBEAT; tests/idle.rs sets its own.
        idle_heartbeat_interval: HEARTBEAT,
        quiesce: false,
        lease_duration: lease,
        clock_drift_max: DRIFT,
        snapshot_retry_interval: Duration::from_millis(50),
        election_seed: seed,
    }
}

pub fn ms(milliseconds: u64) -> MonotonicTime {
    MonotonicTime::from_nanos(milliseconds * 1_000_000)
}

pub fn n(id: u64) -> NodeId {
    NodeId(id)
}

pub fn three_full() -> Membership {
    Membership::new([n(1), n(2), n(3)], [])
}

/// A group of replicas on one shared clock, for setting scenarios up.
pub struct Group {
    pub replicas: BTreeMap<NodeId, Replica>,
    pub now: MonotonicTime,
}

impl Group {
    pub fn new(membership: &Membership, log_replicas: &[u64]) -> Group {
        Group::with_lease(membership, log_replicas, LEASE)
    }

    pub fn with_lease(membership: &Membership, log_replicas: &[u64], lease: Duration) -> Group {
        let mut replicas = BTreeMap::new();
        for member in membership.members() {
            let kind = if log_replicas.contains(&member.0) {
                ReplicaKind::Log
            } else {
                ReplicaKind::Full
            };
            let options = options_with_lease(kind, member.0, lease);
            let replica = Replica::new(member, options, membership.clone(), ms(0)).unwrap();
            replicas.insert(member, replica);
        }
        Group {
            replicas,
            now: ms(0),
        }
    }

    /// A group of full replicas whose options `configure` changes from `options`.
    pub fn with_options(membership: &Membership, configure: impl Fn(&mut ReplicaOptions)) -> Group {
        let mut replicas = BTreeMap::new();
        for member in membership.members() {
            let mut options = options(ReplicaKind::Full, member.0);
            configure(&mut options);
            let replica = Replica::new(member, options, membership.clone(), ms(0)).unwrap();
            replicas.insert(member, replica);
        }
        Group {
            replicas,
            now: ms(0),
        }
    }

    pub fn get(&mut self, id: u64) -> &mut Replica {
        self.replicas.get_mut(&n(id)).unwrap()
    }

    /// Executes `actions` of `from` and everything they cause: persists complete at once and
    /// messages are delivered in order, until the group is quiet. Returns the Apply actions seen,
    /// per node.
    pub fn settle(&mut self, from: NodeId, actions: Vec<Action>) -> BTreeMap<NodeId, Vec<Action>> {
        let mut applied: BTreeMap<NodeId, Vec<Action>> = BTreeMap::new();
        let mut queue: std::collections::VecDeque<(NodeId, Action)> =
            actions.into_iter().map(|action| (from, action)).collect();
        let mut steps = 0;
        while let Some((node, action)) = queue.pop_front() {
            steps += 1;
            assert!(steps < 100_000, "the group never settles");
            let now = self.now;
            let produced = match action {
                Action::Persist { lsn, .. } => {
                    let replica = self.replicas.get_mut(&node).unwrap();
                    replica.persisted(now, lsn)
                }
                Action::Send { to, message } => match self.replicas.get_mut(&to) {
                    Some(replica) => {
                        let produced = replica.handle_message(now, node, message);
                        queue.extend(produced.into_iter().map(|action| (to, action)));
                        continue;
                    }
                    None => continue,
                },
                apply @ Action::Apply { .. } => {
                    applied.entry(node).or_default().push(apply);
                    continue;
                }
                // A snapshot of the sender's committed state (these hosts apply at once), as
                // a host would stream and install it.
                Action::SendSnapshot { to } => {
                    let Some(sender) = self.replicas.get(&node) else {
                        continue;
                    };
                    let meta = shoal_replication::SnapshotMeta {
                        last_included_slot: sender.commit_slot(),
                        membership: sender.committed_membership().clone(),
                        config_slot: sender.config_slot(),
                    };
                    match self.replicas.get_mut(&to) {
                        Some(replica) => {
                            let produced = replica.snapshot_installed(now, meta);
                            queue.extend(produced.into_iter().map(|action| (to, action)));
                            continue;
                        }
                        None => continue,
                    }
                }
                _ => continue,
            };
            queue.extend(produced.into_iter().map(|action| (node, action)));
        }
        applied
    }

    /// Makes node `id` leader: ticks it past any election timeout and settles.
    pub fn elect(&mut self, id: u64) {
        self.now = MonotonicTime::from_nanos(self.now.as_nanos() + 1_000_000_000);
        let now = self.now;
        let actions = self.get(id).tick(now);
        self.settle(n(id), actions);
    }

    /// Moves time forward and ticks every replica, settling after each.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
        let ids: Vec<NodeId> = self.replicas.keys().copied().collect();
        for id in ids {
            let now = self.now;
            let actions = self.replicas.get_mut(&id).unwrap().tick(now);
            self.settle(id, actions);
        }
    }
}
