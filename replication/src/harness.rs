//! A deterministic in-test network of replicas with the group invariants checked after every
//! step.
//!
//! One seed drives everything: which message is delivered next (reordering), losses,
//! duplicates, isolation of nodes, crashes that drop unpersisted writes, restarts from the
//! durable state, checkpoints, proposals and membership changes. Each node's clock runs at its
//! own rate and offset within the configured drift bound, and the lease invariant (I7) is checked
//! against true time. A failing seed replays exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::message::{Action, Message, RoleKind};
use crate::replica::{InjectedFaults, RecoveredState, Replica, ReplicaKind, ReplicaOptions};
use crate::types::{
    Ballot, LogEntry, Lsn, Membership, MembershipChange, MonotonicTime, NodeId, Payload, Slot,
    SnapshotMeta,
};

/// A small deterministic generator for the harness: shoal-rng's SplitMix64 step.
#[derive(Clone, Debug)]
pub(crate) struct TestRng(u64);

impl TestRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        shoal_rng::splitmix64(&mut self.0)
    }

    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    pub(crate) fn chance_per_mille(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// A lease shorter than the minimum election timeout: the pre-check alone already keeps a new
/// leader from being elected while the old lease runs.
pub(crate) const LEASE_DURATION_SHORT: Duration = Duration::from_millis(100);
/// A lease longer than the election timeout: a new leader can be elected while the old lease
/// runs, so only the lease wait reported in promises keeps the leases apart.
pub(crate) const LEASE_DURATION_LONG: Duration = Duration::from_millis(1000);
pub(crate) const CLOCK_DRIFT_MAX: Duration = Duration::from_millis(50);
/// Clock rates differ by at most 2% each way: over one long lease (1 s) two clocks differ by at
/// most 40 ms, inside the 50 ms bound the replicas are configured with.
const CLOCK_RATE_PPM_MAX: u64 = 20_000;
const _: () = assert!(
    (LEASE_DURATION_LONG.as_nanos() as u64 / 1_000_000) * 2 * CLOCK_RATE_PPM_MAX / 1000
        < CLOCK_DRIFT_MAX.as_nanos() as u64 / 1000
);

pub(crate) fn options(kind: ReplicaKind, seed: u64, lease_duration: Duration) -> ReplicaOptions {
    ReplicaOptions {
        kind,
        election_timeout_min: Duration::from_millis(150),
        election_timeout_jitter: Duration::from_millis(150),
        heartbeat_interval: Duration::from_millis(30),
        // Below the short lease net of drift (50 ms), so idle rounds keep every lease alive.
        idle_heartbeat_interval: Duration::from_millis(45),
        quiesce: false,
        lease_duration,
        clock_drift_max: CLOCK_DRIFT_MAX,
        snapshot_retry_interval: Duration::from_millis(100),
        election_seed: seed,
    }
}

/// Fault rates for one run, in events per thousand steps (or per thousand messages).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Faults {
    pub(crate) loss_per_mille: u64,
    pub(crate) duplicate_per_mille: u64,
    pub(crate) crash_per_mille: u64,
    pub(crate) isolate_per_mille: u64,
    pub(crate) membership_change_per_mille: u64,
    pub(crate) delay_max: Duration,
    pub(crate) lease_duration: Duration,
}

impl Faults {
    pub(crate) const NONE: Faults = Faults {
        loss_per_mille: 0,
        duplicate_per_mille: 0,
        crash_per_mille: 0,
        isolate_per_mille: 0,
        membership_change_per_mille: 0,
        delay_max: Duration::from_millis(2),
        lease_duration: LEASE_DURATION_SHORT,
    };

    /// Rates drawn per seed (swarm testing): some seeds are calm, some are hostile.
    pub(crate) fn drawn(rng: &mut TestRng, membership_changes: bool) -> Faults {
        Faults {
            loss_per_mille: rng.below(300),
            duplicate_per_mille: rng.below(100),
            crash_per_mille: rng.below(8),
            isolate_per_mille: rng.below(8),
            membership_change_per_mille: if membership_changes { rng.below(20) } else { 0 },
            delay_max: Duration::from_millis(1 + rng.below(20)),
            lease_duration: if rng.below(2) == 0 {
                LEASE_DURATION_SHORT
            } else {
                LEASE_DURATION_LONG
            },
        }
    }
}

#[derive(Clone, Debug)]
enum Payloadish {
    Message(Message),
    Snapshot(SnapshotMeta),
}

#[derive(Clone, Debug)]
struct InFlight {
    deliver_after: u64,
    from: NodeId,
    to: NodeId,
    payload: Payloadish,
}

/// A `Persist` the host issued and has not made durable: lsn, promised ballot, entries.
type PendingWrite = (Lsn, Option<Ballot>, Vec<(Slot, LogEntry)>);

/// What a node's disk holds durably.
#[derive(Clone, Debug)]
struct Disk {
    promised: Ballot,
    snapshot: SnapshotMeta,
    entries: BTreeMap<Slot, LogEntry>,
}

struct Node {
    replica: Option<Replica>,
    kind: ReplicaKind,
    clock_offset_nanos: u64,
    clock_rate_ppm: i64,
    disk: Disk,
    /// Writes issued but not yet durable; a crash loses them.
    pending_writes: Vec<PendingWrite>,
    /// Highest slot whose committed value the checker compared.
    checked_through: Slot,
    restarts: u64,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Stats {
    pub(crate) committed_slots: u64,
    pub(crate) leaders_elected: u64,
    pub(crate) crashes: u64,
    pub(crate) messages_delivered: u64,
    pub(crate) snapshots_installed: u64,
    pub(crate) membership_changes_committed: u64,
    pub(crate) leadership_transfers_asked: u64,
    /// Leaders that stepped down handing over (`TimeoutNow` sent): removed, or transferring.
    pub(crate) hand_overs: u64,
}

/// Whether the entry a node wrote, `durable`, is the one `Action::Apply` handed over as
/// `applied`: the same payload, or a membership step as what it did (the membership it moved
/// to, or a no-op where it was void).
fn is_applied_as(durable: &Payload, applied: &Payload) -> bool {
    match (durable, applied) {
        (Payload::MembershipStep { next, .. }, Payload::Membership(moved_to)) => next == moved_to,
        (Payload::MembershipStep { .. }, Payload::Noop) => true,
        _ => durable == applied,
    }
}

pub(crate) struct Cluster {
    pub(crate) rng: TestRng,
    true_nanos: u64,
    nodes: BTreeMap<NodeId, Node>,
    network: Vec<InFlight>,
    faults: Faults,
    isolated: BTreeSet<NodeId>,
    initial_membership: Membership,
    /// Every membership step proposed: (the slot that set the proposer's committed membership,
    /// that membership, the next one).
    proposed_steps: BTreeSet<(Slot, Membership, Membership)>,
    /// The value chosen for each slot, as first observed committed anywhere (I1).
    chosen: BTreeMap<Slot, Payload>,
    /// Which node led each ballot (I3).
    leaders: BTreeMap<Ballot, NodeId>,
    next_command: u64,
    pub(crate) proposals_enabled: bool,
    pub(crate) stats: Stats,
    injected: InjectedFaults,
}

impl Cluster {
    /// `full` and `log` are the initial members; `spare` nodes exist but are not members.
    pub(crate) fn new(
        seed: u64,
        full: &[u64],
        log: &[u64],
        spare: &[u64],
        faults: Faults,
        injected: InjectedFaults,
    ) -> Cluster {
        let mut rng = TestRng::new(seed);
        let membership = Membership::new(
            full.iter().map(|id| NodeId(*id)),
            log.iter().map(|id| NodeId(*id)),
        );
        let mut nodes = BTreeMap::new();
        let all = full
            .iter()
            .map(|id| (*id, ReplicaKind::Full, true))
            .chain(log.iter().map(|id| (*id, ReplicaKind::Log, true)))
            .chain(spare.iter().map(|id| (*id, ReplicaKind::Full, false)));
        for (id, kind, member) in all {
            let clock_offset_nanos = rng.below(1_000_000_000);
            let clock_rate_ppm =
                rng.below(2 * CLOCK_RATE_PPM_MAX + 1) as i64 - CLOCK_RATE_PPM_MAX as i64;
            let starting_membership = if member {
                membership.clone()
            } else {
                Membership::default()
            };
            let local = MonotonicTime::from_nanos(clock_offset_nanos);
            let mut replica = Replica::new(
                NodeId(id),
                options(kind, rng.next_u64(), faults.lease_duration),
                starting_membership.clone(),
                local,
            )
            .expect("valid options");
            replica.faults = injected;
            nodes.insert(
                NodeId(id),
                Node {
                    replica: Some(replica),
                    kind,
                    clock_offset_nanos,
                    clock_rate_ppm,
                    disk: Disk {
                        promised: Ballot::ZERO,
                        snapshot: SnapshotMeta {
                            last_included_slot: Slot::ZERO,
                            membership: starting_membership,
                            config_slot: Slot::ZERO,
                        },
                        entries: BTreeMap::new(),
                    },
                    pending_writes: Vec::new(),
                    checked_through: Slot::ZERO,
                    restarts: 0,
                },
            );
        }
        Cluster {
            rng,
            true_nanos: 0,
            nodes,
            network: Vec::new(),
            faults,
            isolated: BTreeSet::new(),
            initial_membership: membership,
            proposed_steps: BTreeSet::new(),
            chosen: BTreeMap::new(),
            leaders: BTreeMap::new(),
            next_command: 0,
            proposals_enabled: true,
            stats: Stats::default(),
            injected,
        }
    }

    fn local_time(&self, node: NodeId) -> MonotonicTime {
        let state = &self.nodes[&node];
        let skew = (self.true_nanos as i128 * state.clock_rate_ppm as i128) / 1_000_000;
        let local = state.clock_offset_nanos as i128 + self.true_nanos as i128 + skew;
        MonotonicTime::from_nanos(local as u64)
    }

    pub(crate) fn replica(&self, node: u64) -> Option<&Replica> {
        self.nodes[&NodeId(node)].replica.as_ref()
    }

    pub(crate) fn chosen(&self) -> &BTreeMap<Slot, Payload> {
        &self.chosen
    }

    pub(crate) fn heal(&mut self) {
        self.isolated.clear();
        self.faults.loss_per_mille = 0;
        self.faults.duplicate_per_mille = 0;
        self.faults.crash_per_mille = 0;
        self.faults.isolate_per_mille = 0;
        self.faults.membership_change_per_mille = 0;
        let crashed: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.replica.is_none())
            .map(|(id, _)| *id)
            .collect();
        for node in crashed {
            self.restart(node);
        }
    }

    /// Runs `steps` random steps, checking the invariants after each.
    pub(crate) fn run(&mut self, steps: u64) -> Result<(), String> {
        for _ in 0..steps {
            self.step()?;
        }
        Ok(())
    }

    pub(crate) fn step(&mut self) -> Result<(), String> {
        self.true_nanos += self.rng.below(3_000_000);
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let node = ids[self.rng.below(ids.len() as u64) as usize];
        let choice = self.rng.below(1000);
        match choice {
            0..450 => self.deliver_one()?,
            450..650 => self.tick(node)?,
            650..800 => self.fsync(node)?,
            800..880 => self.propose_anywhere()?,
            880..900 => self.checkpoint(node)?,
            _ => {
                let faults = self.faults;
                if self.rng.chance_per_mille(faults.crash_per_mille * 10)
                    && self.nodes[&node].replica.is_some()
                {
                    self.crash(node);
                } else if self.nodes[&node].replica.is_none() && self.rng.chance_per_mille(300) {
                    self.restart(node);
                } else if self.rng.chance_per_mille(faults.isolate_per_mille * 10) {
                    self.isolated.insert(node);
                } else if !self.isolated.is_empty() && self.rng.chance_per_mille(20) {
                    self.isolated.clear();
                } else if self
                    .rng
                    .chance_per_mille(faults.membership_change_per_mille * 10)
                {
                    self.change_membership()?;
                } else if faults.membership_change_per_mille > 0
                    && self
                        .rng
                        .chance_per_mille(faults.membership_change_per_mille * 2)
                {
                    // A fifth as often as membership changes: each holds proposals back for
                    // up to an election timeout, and more of them thinned out the membership
                    // changes that the harness exists to stress.
                    self.transfer_leadership()?;
                }
            }
        }
        self.check_invariants()
    }

    fn tick(&mut self, node: NodeId) -> Result<(), String> {
        let now = self.local_time(node);
        let Some(replica) = self.nodes.get_mut(&node).and_then(|n| n.replica.as_mut()) else {
            return Ok(());
        };
        let actions = replica.tick(now);
        self.execute(node, actions)
    }

    fn fsync(&mut self, node: NodeId) -> Result<(), String> {
        let now = self.local_time(node);
        let state = self.nodes.get_mut(&node).expect("node exists");
        if state.replica.is_none() || state.pending_writes.is_empty() {
            return Ok(());
        }
        let writes = std::mem::take(&mut state.pending_writes);
        let mut last = Lsn(0);
        for (lsn, promised, entries) in writes {
            if let Some(promised) = promised {
                state.disk.promised = promised;
            }
            for (slot, entry) in entries {
                if slot > state.disk.snapshot.last_included_slot {
                    state.disk.entries.insert(slot, entry);
                }
            }
            last = lsn;
        }
        let replica = state.replica.as_mut().expect("alive");
        let actions = replica.persisted(now, last);
        self.execute(node, actions)
    }

    fn propose_anywhere(&mut self) -> Result<(), String> {
        if !self.proposals_enabled {
            return Ok(());
        }
        let leaders: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.replica
                    .as_ref()
                    .is_some_and(|r| r.role() == RoleKind::Leader)
            })
            .map(|(id, _)| *id)
            .collect();
        for node in leaders {
            let now = self.local_time(node);
            self.next_command += 1;
            let command = self.next_command.to_le_bytes().to_vec();
            let replica = self
                .nodes
                .get_mut(&node)
                .and_then(|n| n.replica.as_mut())
                .expect("alive");
            if let Ok(proposed) = replica.propose(now, command) {
                self.execute(node, proposed.actions)?;
            }
        }
        Ok(())
    }

    /// A live replica that believes it leads, if any.
    fn a_leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|(_, n)| {
                n.replica
                    .as_ref()
                    .is_some_and(|r| r.role() == RoleKind::Leader)
            })
            .map(|(id, _)| *id)
    }

    /// A leader asked to hand over to another full member (leader balance): the hand-over,
    /// its lease released, runs under every fault like the rest.
    fn transfer_leadership(&mut self) -> Result<(), String> {
        let Some(leader) = self.a_leader() else {
            return Ok(());
        };
        let now = self.local_time(leader);
        let replica = self.nodes[&leader].replica.as_ref().expect("alive");
        let others: Vec<NodeId> = replica
            .committed_membership()
            .full_replicas
            .iter()
            .copied()
            .filter(|node| *node != leader)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let to = others[self.rng.below(others.len() as u64) as usize];
        let replica = self
            .nodes
            .get_mut(&leader)
            .and_then(|n| n.replica.as_mut())
            .expect("alive");
        if let Ok(actions) = replica.transfer_leadership(now, to) {
            self.stats.leadership_transfers_asked += 1;
            self.execute(leader, actions)?;
        }
        Ok(())
    }

    fn change_membership(&mut self) -> Result<(), String> {
        let Some(leader) = self.a_leader() else {
            return Ok(());
        };
        let now = self.local_time(leader);
        let replica = self.nodes[&leader].replica.as_ref().expect("alive");
        let membership = replica.committed_membership().clone();
        let config_slot = replica.config_slot();
        let non_members: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(id, n)| !membership.contains(**id) && n.kind == ReplicaKind::Full)
            .map(|(id, _)| *id)
            .collect();
        let members: Vec<NodeId> = membership.full_replicas.iter().copied().collect();
        // Keep between three and five members: add when small, remove when large, else either.
        let add = match membership.member_count() {
            0..=3 => true,
            5.. => false,
            _ => self.rng.below(2) == 0,
        };
        let change = if add && !non_members.is_empty() {
            MembershipChange::AddFullReplica(
                non_members[self.rng.below(non_members.len() as u64) as usize],
            )
        } else {
            MembershipChange::Remove(members[self.rng.below(members.len() as u64) as usize])
        };
        if let Ok(next) = membership.apply(change) {
            self.proposed_steps
                .insert((config_slot, membership.clone(), next));
        }
        let replica = self
            .nodes
            .get_mut(&leader)
            .and_then(|n| n.replica.as_mut())
            .expect("alive");
        if let Ok(proposed) = replica.propose_membership_change(now, change) {
            self.execute(leader, proposed.actions)?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, node: NodeId) -> Result<(), String> {
        let now = self.local_time(node);
        let state = self.nodes.get_mut(&node).expect("node exists");
        let Some(replica) = state.replica.as_mut() else {
            return Ok(());
        };
        // The snapshot records the committed membership, which is exact at the commit index.
        let through = replica.commit_slot();
        if through <= state.disk.snapshot.last_included_slot {
            return Ok(());
        }
        state.disk.snapshot = SnapshotMeta {
            last_included_slot: through,
            membership: replica.committed_membership().clone(),
            config_slot: replica.config_slot(),
        };
        state.disk.entries = state.disk.entries.split_off(&through.next());
        let actions = replica.checkpointed(now, through);
        self.execute(node, actions)
    }

    fn crash(&mut self, node: NodeId) {
        let state = self.nodes.get_mut(&node).expect("node exists");
        state.replica = None;
        state.pending_writes.clear();
        self.stats.crashes += 1;
    }

    fn restart(&mut self, node: NodeId) {
        let now = self.local_time(node);
        let state = self.nodes.get_mut(&node).expect("node exists");
        if state.replica.is_some() {
            return;
        }
        state.restarts += 1;
        let recovered = RecoveredState {
            promised: state.disk.promised,
            snapshot: state.disk.snapshot.clone(),
            entries: state
                .disk
                .entries
                .iter()
                .map(|(s, e)| (*s, e.clone()))
                .collect(),
        };
        let seed = node.0.wrapping_mul(31).wrapping_add(state.restarts);
        let mut replica = Replica::recover(
            node,
            options(state.kind, seed, self.faults.lease_duration),
            recovered,
            now,
        )
        .expect("recovers");
        replica.faults = self.injected;
        state.checked_through = state
            .checked_through
            .min(state.disk.snapshot.last_included_slot);
        state.replica = Some(replica);
    }

    fn deliver_one(&mut self) -> Result<(), String> {
        let ready: Vec<usize> = self
            .network
            .iter()
            .enumerate()
            .filter(|(_, m)| m.deliver_after <= self.true_nanos)
            .map(|(i, _)| i)
            .collect();
        if ready.is_empty() {
            return Ok(());
        }
        let index = ready[self.rng.below(ready.len() as u64) as usize];
        let message = self.network.swap_remove(index);
        if self.isolated.contains(&message.from) || self.isolated.contains(&message.to) {
            return Ok(());
        }
        let to = message.to;
        let now = self.local_time(to);
        let state = self.nodes.get_mut(&to).expect("node exists");
        let Some(replica) = state.replica.as_mut() else {
            return Ok(());
        };
        self.stats.messages_delivered += 1;
        let actions = match message.payload {
            Payloadish::Message(body) => replica.handle_message(now, message.from, body),
            Payloadish::Snapshot(meta) => {
                if meta.last_included_slot <= state.disk.snapshot.last_included_slot {
                    return Ok(());
                }
                // The host installs the snapshot durably before telling the core.
                state.disk.entries = state
                    .disk
                    .entries
                    .split_off(&meta.last_included_slot.next());
                state.disk.snapshot = meta.clone();
                state.checked_through = state.checked_through.max(meta.last_included_slot);
                self.stats.snapshots_installed += 1;
                replica.snapshot_installed(now, meta)
            }
        };
        self.execute(to, actions)
    }

    fn send(&mut self, from: NodeId, to: NodeId, payload: Payloadish) {
        if self.rng.chance_per_mille(self.faults.loss_per_mille) {
            return;
        }
        let copies = if self.rng.chance_per_mille(self.faults.duplicate_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.below(self.faults.delay_max.as_nanos() as u64);
            self.network.push(InFlight {
                deliver_after: self.true_nanos + delay,
                from,
                to,
                payload: payload.clone(),
            });
        }
    }

    fn execute(&mut self, node: NodeId, actions: Vec<Action>) -> Result<(), String> {
        for action in actions {
            match action {
                Action::Persist {
                    lsn,
                    promised,
                    entries,
                } => {
                    let state = self.nodes.get_mut(&node).expect("node exists");
                    state.pending_writes.push((lsn, promised, entries));
                }
                Action::Send { to, message } => {
                    if matches!(message, Message::TimeoutNow { .. }) {
                        self.stats.hand_overs += 1;
                    }
                    if self.nodes.contains_key(&to) {
                        self.send(node, to, Payloadish::Message(message));
                    }
                }
                Action::Apply { entries } => {
                    if self.nodes[&node].kind == ReplicaKind::Log {
                        return Err(format!("I6: log replica {node:?} applied entries"));
                    }
                    for (slot, entry) in entries {
                        self.observe_committed(node, slot, &entry.payload)?;
                    }
                }
                Action::SendSnapshot { to } => {
                    let meta = self.nodes[&node].disk.snapshot.clone();
                    self.send(node, to, Payloadish::Snapshot(meta));
                }
                Action::RoleChanged { role, ballot } => {
                    if role == RoleKind::Leader {
                        self.stats.leaders_elected += 1;
                        if self
                            .leaders
                            .insert(ballot, node)
                            .is_some_and(|other| other != node)
                        {
                            return Err(format!("I3: two leaders of {ballot:?}"));
                        }
                    }
                }
                Action::LeaseAcquired | Action::LeaseLost => {}
            }
        }
        Ok(())
    }

    /// Records a committed value and checks I1 (one value per slot) and I4 (on a quorum). A
    /// membership step read from a log is recorded as what it did, as `Action::Apply` hands
    /// it over (every slot below was observed first: commits are prefixes).
    fn observe_committed(
        &mut self,
        node: NodeId,
        slot: Slot,
        payload: &Payload,
    ) -> Result<(), String> {
        let as_applied;
        let payload = if let Payload::MembershipStep { .. } = payload {
            let (governing, config_slot) = self.governing_config(slot);
            as_applied = match payload.membership_after(&governing, config_slot) {
                Some(next) => Payload::Membership(next.clone()),
                None => Payload::Noop,
            };
            &as_applied
        } else {
            payload
        };
        match self.chosen.get(&slot) {
            Some(existing) if existing != payload => Err(format!(
                "I1: slot {slot:?} committed as {existing:?} and as {payload:?} on {node:?}"
            )),
            Some(_) => Ok(()),
            None => {
                self.chosen.insert(slot, payload.clone());
                self.stats.committed_slots += 1;
                if let Payload::Membership(next) = payload {
                    self.stats.membership_changes_committed += 1;
                    // A step takes effect only on the membership it was proposed on: a stale
                    // step re-proposed after others committed must be void, not undo them.
                    let (governing, config_slot) = self.governing_config(slot);
                    if !self.proposed_steps.contains(&(
                        config_slot,
                        governing.clone(),
                        next.clone(),
                    )) {
                        return Err(format!(
                            "membership: slot {slot:?} moved {governing:?} to {next:?}, a step no \
                             leader proposed on that membership"
                        ));
                    }
                }
                self.check_on_quorum(slot, payload)
            }
        }
    }

    fn governing_membership(&self, slot: Slot) -> Membership {
        self.governing_config(slot).0
    }

    /// The membership governing `slot` by the chosen values below it, and the slot of the
    /// entry that set it (0: the initial membership).
    fn governing_config(&self, slot: Slot) -> (Membership, Slot) {
        let mut membership = self.initial_membership.clone();
        let mut config_slot = Slot::ZERO;
        for (chosen_slot, payload) in self.chosen.range(..slot) {
            if let Payload::Membership(next) = payload {
                membership = next.clone();
                config_slot = *chosen_slot;
            }
        }
        (membership, config_slot)
    }

    fn check_on_quorum(&self, slot: Slot, payload: &Payload) -> Result<(), String> {
        let membership = self.governing_membership(slot);
        let holders = membership
            .members()
            .filter(|member| {
                let disk = &self.nodes[member].disk;
                disk.snapshot.last_included_slot >= slot
                    || disk
                        .entries
                        .get(&slot)
                        .is_some_and(|entry| is_applied_as(&entry.payload, payload))
            })
            .count();
        if holders < membership.quorum_size() {
            return Err(format!(
                "I4: slot {slot:?} committed but durable on only {holders} of {:?}",
                membership
            ));
        }
        Ok(())
    }

    fn check_invariants(&mut self) -> Result<(), String> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let mut serving = Vec::new();
        for node in ids {
            let now = self.local_time(node);
            let state = &self.nodes[&node];
            let Some(replica) = state.replica.as_ref() else {
                continue;
            };
            if state.kind == ReplicaKind::Log
                && matches!(replica.role(), RoleKind::Leader | RoleKind::Candidate)
            {
                return Err(format!("I6: log replica {node:?} is {:?}", replica.role()));
            }
            if let Some(ballot) = replica.leader_ballot()
                && ballot.node != node
            {
                return Err(format!("I3: {node:?} leads {ballot:?}"));
            }
            if replica.can_serve_strong_read(now).is_ok() {
                serving.push(node);
            }
            // I1 and I4 for log replicas and for committed entries not yet seen in an Apply.
            let from = state.checked_through.next().max(replica.log_first_slot());
            let through = replica.commit_slot();
            let committed = (
                replica.committed_membership().clone(),
                replica.config_slot(),
            );
            let mut slot = from;
            let mut observed = Vec::new();
            while slot <= through {
                if let Some(entry) = replica.entry(slot) {
                    observed.push((slot, entry.payload.clone()));
                }
                slot = slot.next();
            }
            for (slot, payload) in observed {
                self.observe_committed(node, slot, &payload)?;
            }
            // Every replica decides each membership step as the chosen values do (a blank
            // joiner, which has been given nothing yet, knows no membership).
            let expected = self.governing_config(through.next());
            let blank = through == Slot::ZERO && committed.0.member_count() == 0;
            if !blank && committed != expected {
                return Err(format!(
                    "membership: {node:?} committed through {through:?} holds {committed:?}, the \
                     chosen values say {expected:?}"
                ));
            }
            self.nodes
                .get_mut(&node)
                .expect("node exists")
                .checked_through = through;
        }
        if serving.len() > 1 {
            return Err(format!(
                "I7: {serving:?} can all serve strong reads at true time {}ns",
                self.true_nanos
            ));
        }
        // I7 also means a strong read sees every acknowledged write: the replica that may serve
        // one has applied every slot committed anywhere so far.
        if let (Some(reader), Some((highest, _))) = (serving.first(), self.chosen.last_key_value())
        {
            let applied = self.nodes[reader]
                .replica
                .as_ref()
                .map_or(Slot::ZERO, Replica::commit_slot);
            if applied < *highest {
                return Err(format!(
                    "I7: {reader:?} may serve strong reads with slots through {applied:?} while \
                     slot {highest:?} was already committed"
                ));
            }
        }
        Ok(())
    }

    /// The highest commit index any live replica reached.
    pub(crate) fn max_commit(&self) -> Slot {
        self.nodes
            .values()
            .filter_map(|n| n.replica.as_ref().map(Replica::commit_slot))
            .max()
            .unwrap_or(Slot::ZERO)
    }
}

/// Runs one seed of the randomized safety test and returns the first violation, if any.
pub(crate) fn run_seed(
    seed: u64,
    steps: u64,
    membership_changes: bool,
    injected: InjectedFaults,
) -> Result<Stats, String> {
    let mut rng = TestRng::new(seed.wrapping_mul(7919));
    let faults = Faults::drawn(&mut rng, membership_changes);
    let spare: &[u64] = if membership_changes { &[4, 5] } else { &[] };
    let mut cluster = Cluster::new(seed, &[1, 2, 3], &[], spare, faults, injected);
    cluster
        .run(steps)
        .map_err(|violation| format!("seed {seed}: {violation} (faults {faults:?})"))?;
    Ok(cluster.stats.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAFETY_SEEDS: u64 = 40;
    const STEPS_PER_SEED: u64 = 6_000;

    #[test]
    fn without_faults_a_leader_is_elected_and_every_proposal_commits_everywhere() {
        let mut cluster = Cluster::new(
            7,
            &[1, 2, 3],
            &[],
            &[],
            Faults::NONE,
            InjectedFaults::default(),
        );
        cluster.run(3_000).unwrap();
        assert!(cluster.stats.leaders_elected >= 1);
        // Stop proposing and let the pipeline drain: every replica must then hold every chosen
        // slot, with no gaps.
        cluster.proposals_enabled = false;
        cluster.run(2_000).unwrap();
        let commit = cluster.max_commit();
        assert!(commit > Slot(20), "commit {commit:?}");
        for id in [1, 2, 3] {
            assert_eq!(
                cluster.replica(id).unwrap().commit_slot(),
                commit,
                "replica {id}"
            );
        }
        assert_eq!(cluster.chosen().len() as u64, commit.0);
    }

    #[test]
    fn randomized_faults_never_break_the_invariants() {
        let mut total = Stats::default();
        for seed in 0..SAFETY_SEEDS {
            let stats = run_seed(seed, STEPS_PER_SEED, false, InjectedFaults::default()).unwrap();
            total.committed_slots += stats.committed_slots;
            total.leaders_elected += stats.leaders_elected;
            total.crashes += stats.crashes;
            total.snapshots_installed += stats.snapshots_installed;
        }
        // The runs must actually exercise the protocol, or passing would mean nothing.
        assert!(total.committed_slots > SAFETY_SEEDS * 50, "{total:?}");
        assert!(total.leaders_elected > SAFETY_SEEDS, "{total:?}");
        assert!(
            total.crashes > 0 && total.snapshots_installed > 0,
            "{total:?}"
        );
    }

    #[test]
    fn randomized_membership_changes_never_break_the_invariants() {
        let mut total = Stats::default();
        for seed in 0..SAFETY_SEEDS {
            let stats =
                run_seed(1000 + seed, STEPS_PER_SEED, true, InjectedFaults::default()).unwrap();
            total.membership_changes_committed += stats.membership_changes_committed;
            total.committed_slots += stats.committed_slots;
            total.hand_overs += stats.hand_overs;
        }
        assert!(total.membership_changes_committed > 10, "{total:?}");
        // Hand-overs happen (a removed leader's, a transfer's), so the lease release they
        // carry is checked (I7) and not only written.
        assert!(total.hand_overs > 10, "{total:?}");
    }

    /// Liveness: faults for a while, then heal; the group must commit again within a bound.
    fn assert_progress_after_healing(joiners: &[u64], membership_changes: bool) {
        for seed in 0..10 {
            let mut rng = TestRng::new(seed);
            let faults = Faults::drawn(&mut rng, membership_changes);
            let mut cluster = Cluster::new(
                seed,
                &[1, 2, 3],
                &[],
                joiners,
                faults,
                InjectedFaults::default(),
            );
            cluster.run(3_000).unwrap();
            cluster.heal();
            let before = cluster.max_commit();
            cluster.run(4_000).unwrap();
            assert!(
                cluster.max_commit() > before,
                "seed {seed}: no progress after healing from {before:?}"
            );
        }
    }

    #[test]
    fn after_healing_the_group_elects_a_leader_and_commits_again() {
        assert_progress_after_healing(&[], false);
    }

    #[test]
    fn after_healing_a_group_that_changed_membership_commits_again() {
        assert_progress_after_healing(&[4, 5], true);
    }

    #[test]
    fn a_log_replica_counts_in_quorums_but_never_leads() {
        for seed in 0..10 {
            let mut rng = TestRng::new(seed);
            let faults = Faults::drawn(&mut rng, false);
            let mut cluster =
                Cluster::new(seed, &[1, 2], &[3], &[], faults, InjectedFaults::default());
            cluster.run(STEPS_PER_SEED).unwrap();
            assert!(cluster.stats.committed_slots > 0, "seed {seed}");
        }
    }

    #[test]
    fn the_checker_catches_commits_without_a_quorum_within_a_few_seeds() {
        let broken = InjectedFaults {
            commit_without_quorum: true,
            ignore_old_leases: false,
            unconditional_membership_steps: false,
            hand_over_keeps_leading: false,
        };
        let caught = (0..5).find_map(|seed| run_seed(seed, STEPS_PER_SEED, false, broken).err());
        let violation = caught.expect("the broken variant must be caught");
        assert!(
            violation.contains("I4") || violation.contains("I1"),
            "{violation}"
        );
    }

    /// Found by the simulator (seed 23061): a step accepted in a ballot that lost, re-proposed by
    /// a later leader after another step committed below it, undid that one. Unconditional
    /// steps are caught: as a membership no leader proposed, or as a commit on too few members.
    #[test]
    fn the_checker_catches_membership_steps_that_ignore_their_base_within_a_few_seeds() {
        let broken = InjectedFaults {
            commit_without_quorum: false,
            ignore_old_leases: false,
            unconditional_membership_steps: true,
            hand_over_keeps_leading: false,
        };
        let caught =
            (2000..3000).find_map(|seed| run_seed(seed, STEPS_PER_SEED, true, broken).err());
        let violation = caught.expect("the broken variant must be caught");
        // The first seed that shows it moves whenever the harness's random choices change
        // (2686 once, 2135 when transfers joined): a range, searched until one is caught.
        assert!(
            ["membership", "I4", "I1"]
                .iter()
                .any(|kind| violation.contains(kind)),
            "{violation}"
        );
    }

    #[test]
    fn the_checker_catches_a_new_leader_that_ignores_old_leases_within_a_few_seeds() {
        let broken = InjectedFaults {
            commit_without_quorum: false,
            ignore_old_leases: true,
            unconditional_membership_steps: false,
            hand_over_keeps_leading: false,
        };
        // The broken variant shows only when a lease hand-over meets a read at the wrong
        // moment: about one seed in twenty-five, first at seed 41 since followers that restart
        // are resent entries from the match they report.
        let caught = (0..50).find_map(|seed| run_seed(seed, STEPS_PER_SEED, false, broken).err());
        let violation = caught.expect("the broken variant must be caught");
        assert!(violation.contains("I7"), "{violation}");
    }

    /// Leadership hand-over: a removed leader tells its successor to campaign with its lease
    /// released, which is safe only because it stops serving first. One that goes on leading
    /// is caught: two replicas able to serve strong reads at once (I7).
    #[test]
    fn the_checker_catches_a_removed_leader_that_keeps_leading_after_handing_over() {
        let broken = InjectedFaults {
            commit_without_quorum: false,
            ignore_old_leases: false,
            unconditional_membership_steps: false,
            hand_over_keeps_leading: true,
        };
        let caught = (0..50).find_map(|seed| run_seed(seed, STEPS_PER_SEED, true, broken).err());
        let violation = caught.expect("the broken variant must be caught");
        assert!(violation.contains("I7"), "{violation}");
    }

    /// The long soak: `SHOAL_SOAK_SEEDS=2000 cargo test -p shoal-replication --release --lib
    /// soak -- --ignored --nocapture`.
    #[test]
    #[ignore = "long soak; run explicitly"]
    fn soak() {
        let seeds: u64 = std::env::var("SHOAL_SOAK_SEEDS")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(1000);
        let mut total = Stats::default();
        for seed in 0..seeds {
            for membership_changes in [false, true] {
                let stats = run_seed(
                    seed + if membership_changes { 1 << 32 } else { 0 },
                    STEPS_PER_SEED,
                    membership_changes,
                    InjectedFaults::default(),
                )
                .unwrap();
                total.committed_slots += stats.committed_slots;
                total.leaders_elected += stats.leaders_elected;
                total.crashes += stats.crashes;
                total.snapshots_installed += stats.snapshots_installed;
                total.membership_changes_committed += stats.membership_changes_committed;
                total.leadership_transfers_asked += stats.leadership_transfers_asked;
                total.hand_overs += stats.hand_overs;
                total.messages_delivered += stats.messages_delivered;
            }
        }
        println!("soak: {seeds} seeds x 2 configurations x {STEPS_PER_SEED} steps: {total:?}");
    }

    #[test]
    fn the_same_seed_replays_the_same_run() {
        let first = run_seed(3, 2_000, true, InjectedFaults::default()).unwrap();
        let second = run_seed(3, 2_000, true, InjectedFaults::default()).unwrap();
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
    }
}
