//! The deterministic cluster simulator.
//!
//! One thread, virtual time, one seed. Three nodes each host one replica of one replication group
//! (the real `shoal_replication::Replica`); a simulated network loses, duplicates, delays and
//! reorders messages and isolates nodes (both ways or one way); nodes crash, losing every write
//! not yet made durable, and restart from their durable state; clients put values and read them
//! strongly over a handful of keys, and the history is checked for linearizability per key.
//! Fault rates are drawn per seed (swarm testing). The last fifth of a run heals every fault and
//! requires progress (liveness).
//!
//! Applied state is an in-memory map until the storage engine lands (see the issue).

pub mod linearizability;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shoal_io::SeededRng;
use shoal_replication::{
    Action, Ballot, LogEntry, Lsn, Membership, Message, MonotonicTime, NodeId, Payload,
    ProposeError, RecoveredState, Replica, ReplicaKind, ReplicaOptions, Slot, SnapshotMeta,
};

use linearizability::{Operation, OperationKind, Verdict};

const NODE_COUNT: u64 = 3;
const KEY_COUNT: u64 = 3;
const CLIENT_COUNT: usize = 4;
const STEP_NANOS: u64 = 1_000_000;
const TICK_INTERVAL_STEPS: u64 = 5;
const CHECKPOINT_INTERVAL_STEPS: u64 = 700;
/// A client gives up on a write after this long; it may or may not have happened.
const OPERATION_TIMEOUT_NANOS: u64 = 2_000_000_000;
/// Messages in flight at once; past this the network drops, like a full socket buffer.
const NETWORK_MESSAGES_MAX: usize = 20_000;
const LEASE_DURATION: Duration = Duration::from_millis(200);
const CLOCK_DRIFT_MAX: Duration = Duration::from_millis(10);
/// Clock rates differ by at most 0.5% each way: 2 ms over one lease, inside the drift bound.
const CLOCK_RATE_PPM_MAX: u64 = 5_000;
const _: () = assert!(
    (LEASE_DURATION.as_millis() as u64) * 2 * CLOCK_RATE_PPM_MAX / 1_000
        < CLOCK_DRIFT_MAX.as_micros() as u64
);

/// Independent random streams, so that adding draws to one never shifts another.
const STREAM_FAULT_RATES: u64 = 1;
const STREAM_NETWORK: u64 = 2;
const STREAM_DISK: u64 = 3;
const STREAM_WORKLOAD: u64 = 4;
const STREAM_NODES: u64 = 5;
const STREAM_FAULTS: u64 = 6;

#[derive(Clone, Debug)]
pub struct SimulationOptions {
    pub seed: u64,
    pub simulated: Duration,
    /// Test only: serve strong reads from any replica without a lease, to prove the checker can
    /// fail.
    pub broken_reads_without_lease: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub simulated_ms: u64,
    pub operations_checked: u64,
    /// Keys whose history the checker could not decide within its limits (should stay 0).
    pub keys_unchecked: u64,
    pub writes_acknowledged: u64,
    pub reads_served: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub violations: Vec<String>,
    pub trace_hash: u64,
}

#[derive(Clone, Copy, Debug)]
struct FaultRates {
    loss_per_million: u64,
    duplicate_per_million: u64,
    delay_nanos_max: u64,
    crash_per_million_steps: u64,
    isolate_per_million_steps: u64,
}

#[derive(Clone, Debug)]
enum Envelope {
    Replication(Message),
    Snapshot(SnapshotMeta, BTreeMap<u64, u64>),
}

struct InFlight {
    deliver_at_nanos: u64,
    from: NodeId,
    to: NodeId,
    envelope: Envelope,
}

type PendingWrite = (Lsn, Option<Ballot>, Vec<(Slot, LogEntry)>);

#[derive(Default)]
struct Disk {
    promised: Option<Ballot>,
    snapshot_slot: Slot,
    snapshot_membership: Membership,
    snapshot_state: BTreeMap<u64, u64>,
    entries: BTreeMap<Slot, LogEntry>,
}

struct Node {
    replica: Option<Replica>,
    clock_offset_nanos: u64,
    clock_rate_ppm: i64,
    applied: BTreeMap<u64, u64>,
    applied_slot: Slot,
    pending_writes: Vec<PendingWrite>,
    fsync_at_nanos: Option<u64>,
    disk: Disk,
    restart_at_nanos: Option<u64>,
    incarnation: u64,
}

enum ClientState {
    Idle {
        next_at_nanos: u64,
    },
    Writing {
        operation: usize,
        node: NodeId,
        slot: Slot,
        command: Vec<u8>,
    },
}

struct Client {
    state: ClientState,
    leader_guess: NodeId,
}

struct Recorded {
    key: u64,
    operation: Operation,
    /// Another value won the slot this write was proposed in, so it can never take effect; the
    /// client was told it failed, and it is left out of the history.
    failed: bool,
}

struct Simulation {
    options: SimulationOptions,
    now_nanos: u64,
    rates: FaultRates,
    network_rng: SeededRng,
    disk_rng: SeededRng,
    workload_rng: SeededRng,
    fault_rng: SeededRng,
    nodes: BTreeMap<NodeId, Node>,
    network: Vec<InFlight>,
    /// Isolated nodes; `true` means only their outgoing messages are dropped (one way).
    isolated: BTreeMap<NodeId, bool>,
    clients: Vec<Client>,
    history: Vec<Recorded>,
    next_value: u64,
    chosen: BTreeMap<Slot, Vec<u8>>,
    healing: bool,
    report: Report,
}

fn replica_options(seed: u64) -> ReplicaOptions {
    ReplicaOptions {
        kind: ReplicaKind::Full,
        election_timeout_min: Duration::from_millis(300),
        election_timeout_jitter: Duration::from_millis(300),
        heartbeat_interval: Duration::from_millis(50),
        lease_duration: LEASE_DURATION,
        clock_drift_max: CLOCK_DRIFT_MAX,
        snapshot_retry_interval: Duration::from_millis(200),
        election_seed: seed,
    }
}

fn encode(key: u64, value: u64) -> Vec<u8> {
    let mut bytes = key.to_le_bytes().to_vec();
    bytes.extend_from_slice(&value.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Option<(u64, u64)> {
    let key = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let value = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((key, value))
}

/// FNV-1a: a trace hash that stays the same across Rust versions, unlike `DefaultHasher`.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Runs one seed.
pub fn run(options: SimulationOptions) -> Report {
    let root = SeededRng::new(options.seed);
    let mut rate_rng = root.fork(STREAM_FAULT_RATES);
    let rates = FaultRates {
        loss_per_million: rate_rng.below(200_000),
        duplicate_per_million: rate_rng.below(100_000),
        delay_nanos_max: 1_000_000 + rate_rng.below(20_000_000),
        crash_per_million_steps: rate_rng.below(400),
        isolate_per_million_steps: rate_rng.below(400),
    };
    let mut node_rng = root.fork(STREAM_NODES);
    let membership = Membership::new((1..=NODE_COUNT).map(NodeId), []);
    let mut nodes = BTreeMap::new();
    for id in (1..=NODE_COUNT).map(NodeId) {
        let clock_offset_nanos = node_rng.below(1_000_000_000_000);
        let clock_rate_ppm =
            node_rng.below(2 * CLOCK_RATE_PPM_MAX + 1) as i64 - CLOCK_RATE_PPM_MAX as i64;
        let replica = Replica::new(
            id,
            replica_options(node_rng.next_u64()),
            membership.clone(),
            MonotonicTime::from_nanos(clock_offset_nanos),
        )
        .ok();
        nodes.insert(
            id,
            Node {
                replica,
                clock_offset_nanos,
                clock_rate_ppm,
                applied: BTreeMap::new(),
                applied_slot: Slot::ZERO,
                pending_writes: Vec::new(),
                fsync_at_nanos: None,
                disk: Disk {
                    snapshot_membership: membership.clone(),
                    ..Disk::default()
                },
                restart_at_nanos: None,
                incarnation: 0,
            },
        );
    }
    let mut simulation = Simulation {
        now_nanos: 0,
        rates,
        network_rng: root.fork(STREAM_NETWORK),
        disk_rng: root.fork(STREAM_DISK),
        workload_rng: root.fork(STREAM_WORKLOAD),
        fault_rng: root.fork(STREAM_FAULTS),
        nodes,
        network: Vec::new(),
        isolated: BTreeMap::new(),
        clients: (0..CLIENT_COUNT)
            .map(|index| Client {
                state: ClientState::Idle { next_at_nanos: 0 },
                leader_guess: NodeId(1 + index as u64 % NODE_COUNT),
            })
            .collect(),
        history: Vec::new(),
        next_value: 1,
        chosen: BTreeMap::new(),
        healing: false,
        report: Report {
            seed: options.seed,
            trace_hash: 0xCBF2_9CE4_8422_2325,
            ..Report::default()
        },
        options,
    };
    simulation.run();
    simulation.report
}

impl Simulation {
    fn local_time(&self, node: NodeId) -> MonotonicTime {
        let state = &self.nodes[&node];
        let skew = (i128::from(self.now_nanos) * i128::from(state.clock_rate_ppm)) / 1_000_000;
        let local = i128::from(state.clock_offset_nanos) + i128::from(self.now_nanos) + skew;
        MonotonicTime::from_nanos(u64::try_from(local).unwrap_or(0))
    }

    fn fault(&mut self, kind: &'static str) {
        *self.report.faults.entry(kind).or_default() += 1;
    }

    fn trace(&mut self, node: NodeId, event: &str) {
        let mut hash = fnv1a(self.report.trace_hash, &self.now_nanos.to_le_bytes());
        hash = fnv1a(hash, &node.0.to_le_bytes());
        self.report.trace_hash = fnv1a(hash, event.as_bytes());
    }

    fn violation(&mut self, text: String) {
        if self.report.violations.len() < 16 {
            self.report.violations.push(text);
        }
    }

    fn run(&mut self) {
        let total_steps = u64::try_from(self.options.simulated.as_nanos() / u128::from(STEP_NANOS))
            .unwrap_or(u64::MAX);
        let heal_from_step = total_steps - total_steps / 5;
        let mut acknowledged_before_heal = 0;
        for step in 0..total_steps {
            if step == heal_from_step {
                self.heal();
                acknowledged_before_heal = self.report.writes_acknowledged;
            }
            self.now_nanos += STEP_NANOS;
            self.deliver_due();
            self.fsync_due();
            if step % TICK_INTERVAL_STEPS == 0 {
                self.tick_all();
            }
            if step % CHECKPOINT_INTERVAL_STEPS == 0 {
                self.checkpoint_all();
            }
            if !self.healing {
                self.inject_faults();
            }
            self.restart_due();
            self.run_clients();
            if self.report.violations.len() >= 16 {
                break;
            }
        }
        self.time_out_pending(true);
        if self.report.writes_acknowledged == acknowledged_before_heal && total_steps >= 5_000 {
            self.violation("liveness: no write was acknowledged after every fault healed".into());
        }
        self.check_history();
        self.report.simulated_ms = self.now_nanos / 1_000_000;
    }

    fn heal(&mut self) {
        self.healing = true;
        self.isolated.clear();
        for node in self.nodes.values_mut() {
            if node.replica.is_none() {
                node.restart_at_nanos = Some(0);
            }
        }
        self.restart_due();
    }

    fn inject_faults(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let node = ids[self.fault_rng.below(ids.len() as u64) as usize];
        if self.fault_rng.below(1_000_000) < self.rates.crash_per_million_steps
            && self.nodes[&node].replica.is_some()
        {
            let downtime = 50_000_000 + self.fault_rng.below(2_000_000_000);
            let state = self.nodes.get_mut(&node).expect("node exists");
            state.replica = None;
            state.pending_writes.clear();
            state.fsync_at_nanos = None;
            state.restart_at_nanos = Some(self.now_nanos + downtime);
            self.fault("crash");
            self.trace(node, "crash");
        }
        if self.fault_rng.below(1_000_000) < self.rates.isolate_per_million_steps {
            if self.isolated.is_empty() {
                let one_way = self.fault_rng.below(2) == 0;
                self.isolated.insert(node, one_way);
                self.fault(if one_way {
                    "isolate one way"
                } else {
                    "isolate"
                });
            } else {
                self.isolated.clear();
            }
        }
    }

    fn restart_due(&mut self) {
        let due: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.restart_at_nanos.is_some_and(|at| at <= self.now_nanos))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let now = self.local_time(id);
            let state = self.nodes.get_mut(&id).expect("node exists");
            state.restart_at_nanos = None;
            state.incarnation += 1;
            let recovered = RecoveredState {
                promised: state.disk.promised.unwrap_or(Ballot::ZERO),
                snapshot: SnapshotMeta {
                    last_included_slot: state.disk.snapshot_slot,
                    membership: state.disk.snapshot_membership.clone(),
                },
                entries: state
                    .disk
                    .entries
                    .iter()
                    .map(|(slot, entry)| (*slot, entry.clone()))
                    .collect(),
            };
            let seed = id.0.wrapping_mul(0x9E37).wrapping_add(state.incarnation);
            match Replica::recover(id, replica_options(seed), recovered, now) {
                Ok(replica) => {
                    state.replica = Some(replica);
                    state.applied = state.disk.snapshot_state.clone();
                    state.applied_slot = state.disk.snapshot_slot;
                    self.trace(id, "restart");
                }
                Err(error) => self.violation(format!("{id:?} cannot recover: {error:?}")),
            }
        }
    }

    fn tick_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let now = self.local_time(id);
            if let Some(replica) = self.nodes.get_mut(&id).and_then(|n| n.replica.as_mut()) {
                let actions = replica.tick(now);
                self.execute(id, actions);
            }
        }
    }

    fn checkpoint_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let now = self.local_time(id);
            let state = self.nodes.get_mut(&id).expect("node exists");
            let Some(replica) = state.replica.as_mut() else {
                continue;
            };
            let through = replica.commit_slot();
            if through <= state.disk.snapshot_slot || state.applied_slot != through {
                continue;
            }
            state.disk.snapshot_slot = through;
            state.disk.snapshot_membership = replica.committed_membership().clone();
            state.disk.snapshot_state = state.applied.clone();
            state.disk.entries = state.disk.entries.split_off(&through.next());
            let actions = replica.checkpointed(now, through);
            self.execute(id, actions);
        }
    }

    fn fsync_due(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let now = self.local_time(id);
            let state = self.nodes.get_mut(&id).expect("node exists");
            if state.fsync_at_nanos.is_none_or(|at| at > self.now_nanos) {
                continue;
            }
            state.fsync_at_nanos = None;
            let mut last = None;
            for (lsn, promised, entries) in std::mem::take(&mut state.pending_writes) {
                if promised.is_some() {
                    state.disk.promised = promised;
                }
                for (slot, entry) in entries {
                    if slot > state.disk.snapshot_slot {
                        state.disk.entries.insert(slot, entry);
                    }
                }
                last = Some(lsn);
            }
            if let (Some(lsn), Some(replica)) = (last, state.replica.as_mut()) {
                let actions = replica.persisted(now, lsn);
                self.execute(id, actions);
            }
        }
    }

    fn deliver_due(&mut self) {
        let mut due = Vec::new();
        let mut index = 0;
        while index < self.network.len() {
            if self.network[index].deliver_at_nanos <= self.now_nanos {
                due.push(self.network.swap_remove(index));
            } else {
                index += 1;
            }
        }
        // Reordering: deliver what is due in a random order.
        while !due.is_empty() {
            let pick = self.network_rng.below(due.len() as u64) as usize;
            let message = due.swap_remove(pick);
            self.deliver(message);
        }
    }

    fn deliver(&mut self, message: InFlight) {
        let blocked_from = self.isolated.contains_key(&message.from);
        let blocked_to = self
            .isolated
            .get(&message.to)
            .is_some_and(|one_way| !one_way);
        if blocked_from || blocked_to {
            return;
        }
        let to = message.to;
        let now = self.local_time(to);
        let state = self.nodes.get_mut(&to).expect("node exists");
        let Some(replica) = state.replica.as_mut() else {
            return;
        };
        let actions = match message.envelope {
            Envelope::Replication(body) => replica.handle_message(now, message.from, body),
            Envelope::Snapshot(meta, applied) => {
                if meta.last_included_slot <= state.disk.snapshot_slot
                    || meta.last_included_slot <= replica.commit_slot()
                {
                    return;
                }
                // The host installs the snapshot durably, then tells the core.
                state.disk.snapshot_slot = meta.last_included_slot;
                state.disk.snapshot_membership = meta.membership.clone();
                state.disk.snapshot_state = applied.clone();
                state.disk.entries = state
                    .disk
                    .entries
                    .split_off(&meta.last_included_slot.next());
                state.applied = applied;
                state.applied_slot = meta.last_included_slot;
                self.report
                    .faults
                    .entry("snapshot installed")
                    .and_modify(|count| *count += 1)
                    .or_insert(1);
                replica.snapshot_installed(now, meta)
            }
        };
        self.execute(to, actions);
    }

    fn send(&mut self, from: NodeId, to: NodeId, envelope: Envelope) {
        if self.network.len() >= NETWORK_MESSAGES_MAX {
            return;
        }
        if !self.healing && self.network_rng.below(1_000_000) < self.rates.loss_per_million {
            self.fault("message lost");
            return;
        }
        let copies = if !self.healing
            && self.network_rng.below(1_000_000) < self.rates.duplicate_per_million
        {
            self.fault("message duplicated");
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.network_rng.below(self.rates.delay_nanos_max);
            self.network.push(InFlight {
                deliver_at_nanos: self.now_nanos + delay,
                from,
                to,
                envelope: envelope.clone(),
            });
        }
    }

    fn execute(&mut self, node: NodeId, actions: Vec<Action>) {
        for action in actions {
            let text = format!("{action:?}");
            self.trace(node, &text);
            match action {
                Action::Persist {
                    lsn,
                    promised,
                    entries,
                } => {
                    let delay = self.disk_rng.below(3_000_000);
                    let state = self.nodes.get_mut(&node).expect("node exists");
                    state.pending_writes.push((lsn, promised, entries));
                    state.fsync_at_nanos.get_or_insert(self.now_nanos + delay);
                }
                Action::Send { to, message } => self.send(node, to, Envelope::Replication(message)),
                Action::SendSnapshot { to } => {
                    let disk = &self.nodes[&node].disk;
                    let meta = SnapshotMeta {
                        last_included_slot: disk.snapshot_slot,
                        membership: disk.snapshot_membership.clone(),
                    };
                    let state = disk.snapshot_state.clone();
                    self.send(node, to, Envelope::Snapshot(meta, state));
                }
                Action::Apply { entries } => {
                    for (slot, entry) in entries {
                        self.apply(node, slot, entry);
                    }
                }
                Action::LeaseAcquired | Action::LeaseLost | Action::RoleChanged { .. } => {}
            }
        }
    }

    fn apply(&mut self, node: NodeId, slot: Slot, entry: LogEntry) {
        let expected = self.nodes[&node].applied_slot.next();
        if slot != expected {
            self.violation(format!(
                "{node:?} applied {slot:?} but expected {expected:?}"
            ));
            return;
        }
        let bytes = match &entry.payload {
            Payload::Command(bytes) => bytes.clone(),
            Payload::Noop | Payload::Membership(_) => Vec::new(),
        };
        let state = self.nodes.get_mut(&node).expect("node exists");
        state.applied_slot = slot;
        if let Some((key, value)) = decode(&bytes) {
            state.applied.insert(key, value);
        }
        match self.chosen.get(&slot) {
            Some(existing) if *existing != bytes => {
                self.violation(format!("{node:?} applied a different value at {slot:?}"));
            }
            Some(_) => {}
            None => {
                self.chosen.insert(slot, bytes.clone());
            }
        }
        // Acknowledge the client whose write this node proposed at this slot.
        for client in 0..self.clients.len() {
            if let ClientState::Writing {
                operation,
                node: proposer,
                slot: proposed_slot,
                command,
            } = &self.clients[client].state
                && *proposer == node
                && *proposed_slot == slot
            {
                let operation = *operation;
                if *command == bytes {
                    self.history[operation].operation.returned_nanos = Some(self.now_nanos);
                    self.report.writes_acknowledged += 1;
                } else {
                    self.history[operation].failed = true;
                }
                self.clients[client].state = ClientState::Idle {
                    next_at_nanos: self.now_nanos,
                };
            }
        }
    }

    fn time_out_pending(&mut self, everything: bool) {
        for client in 0..self.clients.len() {
            if let ClientState::Writing { operation, .. } = self.clients[client].state {
                let invoked = self.history[operation].operation.invoked_nanos;
                if everything || self.now_nanos >= invoked.saturating_add(OPERATION_TIMEOUT_NANOS) {
                    self.clients[client].state = ClientState::Idle {
                        next_at_nanos: self.now_nanos,
                    };
                }
            }
        }
    }

    fn run_clients(&mut self) {
        self.time_out_pending(false);
        for client in 0..self.clients.len() {
            let ClientState::Idle { next_at_nanos } = self.clients[client].state else {
                continue;
            };
            if next_at_nanos > self.now_nanos {
                continue;
            }
            let key = self.workload_rng.below(KEY_COUNT);
            let write = self.workload_rng.below(10) < 6;
            // The broken variant reads from any replica, as an eventually consistent read would,
            // but calls it strong.
            let node = if self.options.broken_reads_without_lease && !write {
                NodeId(1 + self.workload_rng.below(NODE_COUNT))
            } else {
                self.clients[client].leader_guess
            };
            let retry_at = self.now_nanos + 5_000_000;
            let now = self.local_time(node);
            let Some(replica) = self.nodes.get_mut(&node).and_then(|n| n.replica.as_mut()) else {
                self.clients[client].leader_guess = NodeId(1 + self.workload_rng.below(NODE_COUNT));
                self.clients[client].state = ClientState::Idle {
                    next_at_nanos: retry_at,
                };
                continue;
            };
            if write {
                let value = self.next_value;
                self.next_value += 1;
                let command = encode(key, value);
                match replica.propose(now, command.clone()) {
                    Ok(proposed) => {
                        self.history.push(Recorded {
                            key,
                            operation: Operation {
                                kind: OperationKind::Write { value },
                                invoked_nanos: self.now_nanos,
                                returned_nanos: None,
                            },
                            failed: false,
                        });
                        self.clients[client].state = ClientState::Writing {
                            operation: self.history.len() - 1,
                            node,
                            slot: proposed.slot,
                            command,
                        };
                        self.execute(node, proposed.actions);
                    }
                    Err(error) => {
                        let hint = match error {
                            ProposeError::NotLeader { leader_hint } => leader_hint,
                            _ => Some(node),
                        };
                        self.clients[client].leader_guess =
                            hint.unwrap_or_else(|| NodeId(1 + self.workload_rng.below(NODE_COUNT)));
                        self.clients[client].state = ClientState::Idle {
                            next_at_nanos: retry_at,
                        };
                    }
                }
            } else {
                let allowed = self.options.broken_reads_without_lease
                    || replica.can_serve_strong_read(now).is_ok();
                if allowed {
                    let observed = self.nodes[&node].applied.get(&key).copied();
                    self.history.push(Recorded {
                        key,
                        operation: Operation {
                            kind: OperationKind::Read { observed },
                            invoked_nanos: self.now_nanos,
                            returned_nanos: Some(self.now_nanos),
                        },
                        failed: false,
                    });
                    self.report.reads_served += 1;
                    self.clients[client].state = ClientState::Idle {
                        next_at_nanos: self.now_nanos + 1_000_000,
                    };
                } else {
                    let hint = replica.leader_hint().filter(|hint| *hint != node);
                    self.clients[client].leader_guess =
                        hint.unwrap_or_else(|| NodeId(1 + self.workload_rng.below(NODE_COUNT)));
                    self.clients[client].state = ClientState::Idle {
                        next_at_nanos: retry_at,
                    };
                }
            }
        }
    }

    fn check_history(&mut self) {
        let keys: BTreeSet<u64> = self.history.iter().map(|recorded| recorded.key).collect();
        for key in keys {
            let operations: Vec<Operation> = self
                .history
                .iter()
                .filter(|recorded| recorded.key == key && !recorded.failed)
                .map(|recorded| recorded.operation.clone())
                .collect();
            self.report.operations_checked += operations.len() as u64;
            match linearizability::check(&operations) {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable => {
                    self.violation(format!("key {key}: history is not linearizable"));
                }
                Verdict::Unknown => self.report.keys_unchecked += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(seed: u64, seconds: u64) -> SimulationOptions {
        SimulationOptions {
            seed,
            simulated: Duration::from_secs(seconds),
            broken_reads_without_lease: false,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_trace_hash() {
        let first = run(options(11, 10));
        let second = run(options(11, 10));
        assert_eq!(first.trace_hash, second.trace_hash);
        assert_ne!(first.trace_hash, run(options(12, 10)).trace_hash);
    }

    #[test]
    fn a_smoke_of_seeds_finds_no_violation_and_does_real_work() {
        let mut operations = 0;
        for seed in 0..5 {
            let report = run(options(seed, 10));
            assert!(
                report.violations.is_empty(),
                "seed {seed}: {:?}",
                report.violations
            );
            operations += report.operations_checked;
        }
        assert!(operations > 500, "only {operations} operations checked");
    }

    #[test]
    fn reads_without_a_lease_are_caught_within_a_few_seeds() {
        let caught = (0..10).any(|seed| {
            let report = run(SimulationOptions {
                broken_reads_without_lease: true,
                ..options(seed, 10)
            });
            report
                .violations
                .iter()
                .any(|violation| violation.contains("not linearizable"))
        });
        assert!(caught, "the checker must catch stale reads");
    }
}
