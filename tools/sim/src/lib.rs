//! The deterministic cluster simulator.
//!
//! One thread, virtual time, one seed. Each seed draws a cluster of 3 or 5 nodes hosting 2 to 4
//! replication groups of 3 replicas each, placed on distinct nodes. Each node is what a storage
//! node shard is: one `SimulatedDisk`, one shard WAL (`shoal_store::wal::Wal`) with its group
//! commit, one page cache, and per hosted group a real `shoal_partition::PartitionReplica`
//! (MultiPaxos core, B-tree, DynamoDB request evaluation). A simulated network loses,
//! duplicates, delays and reorders messages, isolates nodes (both ways or one way) and clogs
//! them (holds their traffic, then releases it); nodes crash, keeping a crash image of their
//! disk (unsynced sectors may or may not land), and restart through the real recovery path.
//! Clients send real PutItem (blind and conditional) and GetItem (strong and eventual) requests
//! over a few keys per group, and the history is checked: linearizability per key for puts,
//! conditional puts and strong reads; eventual reads return only values some write that was not
//! refused wrote; replicas of a group that reached the same applied slot hold the same items.
//! Fault rates are drawn per seed (swarm testing). The last fifth of a run heals every fault and
//! requires progress in every group (liveness).
//!
//! The WAL's committer is a future; the simulator drives it itself (`drive`, a poll loop with a
//! no-op waker): the simulated disk completes every I/O at once, so a future that waits only on
//! the committer finishes within a few polls, and a node's queued records become durable when
//! the simulator polls its committer, a random group-commit delay after the first of them.

pub mod linearizability;
pub mod requests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use shoal_bus::limits::SNAPSHOT_QUEUE_CHUNKS_MAX;
use shoal_io::storage::faulty::{
    FaultInjector, FaultKind, FaultRates as StorageFaultRates, FaultyDirectory, FaultyFile,
};
use shoal_io::storage::simulated::SimulatedDisk;
use shoal_io::{SeededRng, StorageDirectory, StorageError, StorageOperation};
use shoal_model::key::{KeySchema, KeyType};
use shoal_model::request::PreparedRequest;
use shoal_model::request_codec::encode_request;
use shoal_partition::meta::MetaError;
use shoal_partition::{
    Event, Output, PartitionError, PartitionMeta, PartitionReplica, REPLICATION_RECORD_KIND,
    ReplicaConfig, ShardReplay,
};
use shoal_replication::{
    Ballot, LogEntry, Lsn as CoreLsn, Membership, Message, MonotonicTime, NodeId, Payload,
    ReplicaKind, ReplicaOptions, Slot,
};
use shoal_shard::ShardError;
use shoal_shard::dispatch::{Command as ShardCommand, Dispatch, Routed};
use shoal_shard::recovery::{RecoveryContext, recover_shard};
use shoal_store::btree::{BTreeConfig, BTreeError, PageCache};
use shoal_store::engine::{EngineError, Mutation, MutationBatch};
use shoal_store::wal::format::{SEGMENT_HEADER_BYTES, SegmentHeader, SegmentHeaderSlot};
use shoal_store::wal::{Durable, PartitionId, Wal, WalConfig, WalError, segment_file_name};
use shoal_wire::messages::{
    BusMessage, ItemResult, NodeError, NodeRequest, NodeResponse, ReplicationEnvelope,
    RequestFrame, SnapshotChunk,
};
use shoal_wire::persist::decode_persist_record;

use linearizability::{EffectPoint, Operation, OperationKind, Verdict};
use requests::{CONDITION_FAILED, Command};

/// Each seed draws one of these cluster sizes.
const NODE_COUNTS: [u64; 2] = [3, 5];
const GROUP_COUNT_MIN: u64 = 2;
const GROUP_COUNT_MAX: u64 = 4;
const REPLICAS_PER_GROUP: usize = 3;
const KEYS_PER_GROUP: u64 = 2;
const CLIENT_COUNT: usize = 3;
const _: () = assert!(REPLICAS_PER_GROUP as u64 <= NODE_COUNTS[0]);
const STEP_NANOS: u64 = 1_000_000;
const TICK_INTERVAL_STEPS: u64 = 5;
/// How often the checkers drop what can no longer be compared.
const PRUNE_INTERVAL_STEPS: u64 = 700;
/// Each replica checkpoints its B-tree after this many applied slots: small, so that WAL
/// recycling, log truncation and catching up by snapshot happen in every run.
const CHECKPOINT_EVERY_SLOTS: u64 = 32;
const _: () =
    assert!(CHECKPOINT_EVERY_SLOTS <= shoal_partition::replica::CHECKPOINT_EVERY_SLOTS_MAX);
/// A node's queued WAL records become durable at most this long after the first of them
/// (group commit).
const GROUP_COMMIT_DELAY_NANOS_MAX: u64 = 3_000_000;
/// Pages of each node's page cache.
const PAGE_CACHE_PAGES: usize = 256;
/// The partition id of group `index` is `index + PARTITION_FIRST`.
const PARTITION_FIRST: u64 = 1;
/// Every partition's epoch; the simulator never moves partitions.
const EPOCH: u64 = 1;
/// The shard index every simulated replica lives on.
const SHARD: u16 = 0;
/// The connection replication traffic arrives on: dispatch answers nothing on it.
const BUS_CONNECTION: u64 = u64::MAX;
/// Polls `drive` alternates between a future and the committer before it calls the future
/// stalled. Simulated I/O never waits, so a handful suffice; a stall means the WAL is full and
/// waits for a checkpoint that cannot come while the caller waits.
const DRIVE_POLLS_MAX: usize = 64;
/// The `reply_to` token of the scans that read a replica's applied state; client requests count
/// up from 1.
const SCAN_REPLY_TO: u64 = 0;
/// A client gives up on a write after this long; it may or may not have happened.
const OPERATION_TIMEOUT_NANOS: u64 = 2_000_000_000;
/// A client that found no leader or no live replica tries again after this long.
const CLIENT_RETRY_NANOS: u64 = 5_000_000;
/// Messages in flight or held by a clog at once; past this the network drops, like a full
/// socket buffer.
const NETWORK_MESSAGES_MAX: usize = 20_000;
const LEASE_DURATION: Duration = Duration::from_millis(200);
const CLOCK_DRIFT_MAX: Duration = Duration::from_millis(10);
/// Clock rates differ by at most 0.5% each way: 2 ms over one lease, inside the drift bound.
const CLOCK_RATE_PPM_MAX: u64 = 5_000;
const _: () = assert!(
    (LEASE_DURATION.as_millis() as u64) * 2 * CLOCK_RATE_PPM_MAX / 1_000
        < CLOCK_DRIFT_MAX.as_micros() as u64
);
/// A clog lasts at least this long, plus up to the per-seed maximum.
const CLOG_NANOS_MIN: u64 = 10_000_000;
/// Violations kept per run; past this the run stops, since the first ones explain the rest.
const VIOLATIONS_MAX: usize = 16;
/// Liveness under a minority of faults (issue 14: a partition stopped for good while it kept a
/// majority): a group whose majority of replicas is up, not isolated and not clogged for this
/// long must acknowledge a write in that time. Several election timeouts, leases and client
/// timeouts, so message loss and elections alone never reach it.
const MAJORITY_LIVENESS_WINDOW_NANOS: u64 = 10_000_000_000;
/// Workload mix per client operation, out of 100: puts, then compare-and-sets, then strong
/// reads; the rest are eventual reads.
const PUT_PERCENT: u64 = 35;
const COMPARE_AND_SET_PERCENT: u64 = 25;
const STRONG_READ_PERCENT: u64 = 25;
const _: () = assert!(PUT_PERCENT + COMPARE_AND_SET_PERCENT + STRONG_READ_PERCENT < 100);

/// Independent random streams, so that adding draws to one never shifts another.
const STREAM_FAULT_RATES: u64 = 1;
const STREAM_NETWORK: u64 = 2;
const STREAM_DISK: u64 = 3;
const STREAM_WORKLOAD: u64 = 4;
const STREAM_NODES: u64 = 5;
const STREAM_FAULTS: u64 = 6;
const STREAM_TOPOLOGY: u64 = 7;
const STREAM_STORAGE_FAULTS: u64 = 8;

/// Storage faults (see "Storage faults" in README.md). Each silent kind is switched on for a
/// seed with probability one half, at a per-operation rate drawn log-uniformly between these
/// powers of ten: at the top, a faulty disk writing a few hundred times a second meets a fault
/// within a second or two; at the bottom, it may run the whole seed and crash with latent
/// damage instead.
const STORAGE_FAULT_RATE_LOG10_MIN: f64 = -5.0;
const STORAGE_FAULT_RATE_LOG10_MAX: f64 = -2.5;
/// Bit flips at rest (latent damage, after any read back): at most this many per million steps
/// on each faulty disk, each flipping one bit of one file anywhere.
const AT_REST_FLIPS_PER_MILLION_STEPS_MAX: u64 = 2_000;
/// Storage faults hit at most this many nodes per seed (two of five), and `faulty_disks` keeps
/// them to a minority of every group: with 3 nodes every group has a replica on each, so one.
const FAULTY_DISKS_MAX: usize = 2;
/// Replicas of one group whose disks may be faulty: a minority, so a majority survives.
const FAULTY_REPLICAS_PER_GROUP_MAX: usize = (REPLICAS_PER_GROUP - 1) / 2;
/// Broken variant `WalDamageTakenForEndOfLog`: the faulty disks' nodes restart this long after
/// the variant crashes them.
const BROKEN_RESTART_NANOS: u64 = 100_000_000;
/// Broken variant `WalDamageTakenForEndOfLog`: truncations tried before the WAL opens.
const BROKEN_TRUNCATIONS_MAX: usize = 8;

pub(crate) const FNV_OFFSET_BASIS: u64 = 0xCBF2_9CE4_8422_2325;

/// Test-only broken variants, each proving that one checker can fail. None of them touches the
/// code under test: the simulator itself misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// Strong reads are sent with ConsistentRead false to any replica (served without a lease)
    /// and checked as strong; the linearizability checker must catch the stale ones.
    ReadsWithoutLease,
    /// The network turns every put in the Accepts delivered to one replica of each group into
    /// a delete; the applied-state comparison must catch the divergence.
    AcceptedWritesAlteredOnOneReplica,
    /// Eventual reads return a value no write produced; the eventual-read check must catch it.
    EventualReadsInventValues,
    /// When a faulty disk's node restarts, the simulator flips a bit at rest in the first record
    /// of its newest WAL segment, and when the WAL then reports corruption, truncates the log
    /// where the damage is (zeroes it and every newer segment) and opens it again: what a WAL
    /// recovery that takes a mid-log checksum failure for the end of the log would do. The
    /// acceptor-memory check (and, when the forgotten state mattered, linearizability) must
    /// catch the replica that forgot what it acknowledged.
    WalDamageTakenForEndOfLog,
    /// Group 0's answers to writes never reach its clients, so it acknowledges no write however
    /// healthy it is; the liveness check under a minority of faults must catch it.
    GroupZeroRepliesLost,
}

#[derive(Clone, Debug)]
pub struct SimulationOptions {
    pub seed: u64,
    pub simulated: Duration,
    /// Test only: run a deliberately broken variant.
    pub broken: Option<Broken>,
}

impl SimulationOptions {
    pub fn new(seed: u64, simulated: Duration) -> Self {
        Self {
            seed,
            simulated,
            broken: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub simulated_ms: u64,
    pub node_count: u64,
    pub group_count: u64,
    /// Every operation the checkers looked at: the four kinds below.
    pub operations_checked: u64,
    pub puts_checked: u64,
    pub compare_and_sets_checked: u64,
    pub strong_reads_checked: u64,
    pub eventual_reads_checked: u64,
    /// Keys whose history the checker could not decide within its limits (should stay 0).
    pub keys_unchecked: u64,
    /// Puts and compare-and-sets whose client got an answer.
    pub writes_acknowledged: u64,
    pub compare_and_sets_succeeded: u64,
    /// Writes a replica answered `NotApplied`: held to it by the checkers, then sent again.
    pub writes_not_applied: u64,
    /// Times a replica reached a slot another replica of its group had applied, and the two
    /// states' digests were compared.
    pub applied_states_compared: u64,
    /// WAL segments the nodes' WALs recycled (summed over every incarnation).
    pub wal_segments_recycled: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub violations: Vec<String>,
    pub trace_hash: u64,
}

/// The storage fault rates of one seed, for its faulty disks.
#[derive(Clone, Debug)]
struct StorageFaults {
    rates: StorageFaultRates,
    at_rest_flips_per_million_steps: u64,
}

#[derive(Clone, Copy, Debug)]
struct FaultRates {
    loss_per_million: u64,
    duplicate_per_million: u64,
    delay_nanos_max: u64,
    crash_per_million_steps: u64,
    isolate_per_million_steps: u64,
    clog_per_million_steps: u64,
    clog_nanos_max: u64,
}

#[derive(Clone, Debug)]
enum Envelope {
    /// A replication message as the bus carries it (the shard's dispatch converts it back).
    Replication(ReplicationEnvelope),
    /// A snapshot chunk and the sender's applied slot when it produced it: the leader streams
    /// its live tree, so the chunks may hold writes of slots up to there (a fuzzy snapshot that
    /// replaying those slots makes exact).
    Snapshot(SnapshotChunk, Slot),
}

/// A message between the replicas of one group on two nodes.
struct InFlight {
    group: usize,
    from: NodeId,
    to: NodeId,
    envelope: Envelope,
}

type SimulatedReplica = PartitionReplica<FaultyFile, FaultyDirectory>;
type Committer = Pin<Box<dyn Future<Output = Result<(), WalError>>>>;

/// What a running node holds in memory; dropped whole by a crash.
struct Runtime {
    /// The production shard's dispatch rules (engine/shard): every client request and every
    /// message between replicas goes through them, and every replica output comes back
    /// through them. A connection is the simulator's reply token.
    dispatch: Dispatch<u64>,
    wal: Wal<FaultyFile>,
    committer: Committer,
    /// Replicas by group index.
    replicas: BTreeMap<usize, SimulatedReplica>,
    /// Records queued in the WAL and not yet reported durable: group, core lsn, durability,
    /// and what the record holds for the acceptor-memory check.
    unsynced: Vec<(usize, CoreLsn, Durable, AcceptorRecord)>,
    /// When the simulator next polls the committer (the group commit's fsync).
    commit_at_nanos: Option<u64>,
}

/// What one WAL record of a replica holds that the replica must never forget once it is
/// durable: a promised ballot and accepted entries (slot, ballot).
#[derive(Clone, Debug, Default)]
struct AcceptorRecord {
    promised: Option<Ballot>,
    accepted: Vec<(Slot, Ballot)>,
}

/// Per replica, everything its durable records held: the highest promise, and per slot the
/// highest ballot accepted. A restarted replica must hold at least this (the acceptor-memory
/// check): a Paxos acceptor that forgets a promise or an accepted value can let another value
/// be chosen.
#[derive(Clone, Debug)]
struct AcceptorMemory {
    promised: Ballot,
    accepted: BTreeMap<Slot, Ballot>,
}

impl Default for AcceptorMemory {
    fn default() -> Self {
        Self {
            promised: Ballot::ZERO,
            accepted: BTreeMap::new(),
        }
    }
}

/// Why a node failed, and whether its storage reported corruption (a checksum, a structural
/// check or a read back failed): on a faulty disk that is the expected fail-stop, elsewhere a
/// violation.
struct NodeFailure {
    text: String,
    corruption: bool,
}

impl NodeFailure {
    fn other(text: String) -> Self {
        Self {
            text,
            corruption: false,
        }
    }
}

fn storage_corruption(error: &StorageError) -> bool {
    error.operation == StorageOperation::ReadBack
}

fn wal_corruption(error: &WalError) -> bool {
    match error {
        WalError::Corruption(_) => true,
        WalError::WriteFailed(failure) => failure.read_back_mismatch,
        WalError::Storage(error) => storage_corruption(error),
        _ => false,
    }
}

fn partition_corruption(error: &PartitionError) -> bool {
    match error {
        PartitionError::Wal(error) => wal_corruption(error),
        PartitionError::Storage(error) => storage_corruption(error),
        PartitionError::Engine(EngineError::BTree(error)) => match error {
            BTreeError::Corruption { .. } | BTreeError::NoValidMeta => true,
            BTreeError::Storage(error) => storage_corruption(error),
            _ => false,
        },
        PartitionError::Corrupt(_) => true,
        PartitionError::Engine(_) => false,
    }
}

fn meta_corruption(error: &MetaError) -> bool {
    match error {
        MetaError::Corrupt { .. } => true,
        MetaError::Storage(error) => storage_corruption(error),
    }
}

struct Node {
    clock_offset_nanos: u64,
    clock_rate_ppm: i64,
    disk: SimulatedDisk,
    /// Decides this node's storage faults, over every incarnation; switched off for healthy
    /// disks and in the heal phase.
    injector: Rc<FaultInjector>,
    /// One of the seed's faulty disks (at most a minority of every group).
    faulty_disk: bool,
    /// Its storage reported corruption: stopped for good, as `fatal!` stops a process.
    stopped: bool,
    /// Per hosted group, what its durable records held (the acceptor-memory check).
    acceptor_memory: BTreeMap<usize, AcceptorMemory>,
    /// The groups this node hosts a replica of.
    groups: Vec<usize>,
    /// None while the node is down.
    runtime: Option<Runtime>,
    /// The applied slot last seen per hosted group (kept while down, for pruning).
    observed_applied: BTreeMap<usize, Slot>,
    /// Per group, the slot below which the replica's state may be fuzzy after installing a
    /// snapshot: it holds writes of later slots until it has replayed them, so it is compared
    /// with other replicas' only from there on.
    fuzzy_until: BTreeMap<usize, Slot>,
    restart_at_nanos: Option<u64>,
    incarnation: u64,
}

impl Node {
    fn is_up(&self) -> bool {
        self.runtime.is_some()
    }

    fn directory(&self) -> FaultyDirectory {
        FaultyDirectory::new(self.disk.directory(), Rc::clone(&self.injector))
    }
}

/// One replication group and what the checkers know about it.
struct Group {
    members: Vec<NodeId>,
    /// Digest of the applied items at a slot and the first replica seen there.
    digests: BTreeMap<Slot, (u64, NodeId)>,
    acknowledged: u64,
    /// Since when a majority of the members has been healthy with no write acknowledged, and
    /// the acknowledged count then (`MAJORITY_LIVENESS_WINDOW_NANOS`).
    healthy_majority_since: Option<(u64, u64)>,
}

#[derive(Clone, Copy)]
enum RequestKind {
    Write { operation: usize },
    StrongRead { key: u64 },
    EventualRead { key: u64 },
}

/// A client request waiting for its `Output::Reply`.
struct PendingRequest {
    client: usize,
    group: usize,
    node: NodeId,
    kind: RequestKind,
}

enum ClientState {
    Idle { next_at_nanos: u64 },
    Writing { operation: usize, reply_to: u64 },
}

struct Client {
    state: ClientState,
    /// Per group, the node this client believes leads it.
    leader_guess: Vec<NodeId>,
}

struct Recorded {
    key: u64,
    operation: Operation,
    /// The replica refused the write before proposing it (not the leader, busy, condition
    /// false) or said it was not applied, so it never takes effect; a refused put is left out of the history, a
    /// compare-and-set whose condition was false stays in it as a failed one.
    refused: bool,
}

struct EventualRead {
    group: usize,
    node: NodeId,
    key: u64,
    observed: Option<u64>,
}

struct Simulation {
    options: SimulationOptions,
    now_nanos: u64,
    rates: FaultRates,
    network_rng: SeededRng,
    disk_rng: SeededRng,
    workload_rng: SeededRng,
    fault_rng: SeededRng,
    storage_rng: SeededRng,
    storage_faults: StorageFaults,
    nodes: BTreeMap<NodeId, Node>,
    groups: Vec<Group>,
    /// Messages by (delivery time, sequence number): delivery scans only what is due.
    network: BTreeMap<(u64, u64), InFlight>,
    network_sequence: u64,
    /// Isolated nodes; `true` means only their outgoing messages are dropped (one way).
    isolated: BTreeMap<NodeId, bool>,
    /// The one clogged node and when it unclogs.
    clogged: Option<(NodeId, u64)>,
    /// Messages to or from the clogged node that came due while it was clogged.
    clog_held: Vec<InFlight>,
    /// Snapshot chunks waiting to go out, per link (sender, follower), bounded as the bus bounds
    /// its per-peer queue (`SNAPSHOT_QUEUE_CHUNKS_MAX`). A link sends a chunk only while the
    /// follower is up and reachable, as the bus's writer connects only then, so a follower that
    /// is down leaves its sender no room (the situation of issue 14); replicas produce chunks
    /// only within the room their tick reports.
    snapshot_queues: BTreeMap<(NodeId, NodeId), VecDeque<InFlight>>,
    clients: Vec<Client>,
    requests: BTreeMap<u64, PendingRequest>,
    next_reply_to: u64,
    history: Vec<Recorded>,
    /// The history entry of each write, by the value it writes.
    operation_by_value: BTreeMap<u64, usize>,
    /// Per key, the value clients last learned (the compare-and-sets' usual expectation).
    last_seen: BTreeMap<u64, u64>,
    eventual_reads: Vec<EventualRead>,
    /// Orders the checked events (first applies, strong reads) within one instant.
    event_sequence: u64,
    next_value: u64,
    /// The fuzziness horizon of the snapshot chunk being delivered.
    delivering_snapshot_horizon: Slot,
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

fn replica_config() -> ReplicaConfig {
    ReplicaConfig {
        core: replica_options(0),
        checkpoint_every_slots: CHECKPOINT_EVERY_SLOTS,
        btree: BTreeConfig::default(),
    }
}

/// Small segments, so that every run recycles them many times (every batch takes at least a
/// 4 KiB block), yet 4 MiB in all: room for several seconds of the node's records while one of
/// its groups cannot commit (and so cannot checkpoint and release its old records). The
/// simulated disk compares a whole file on every sync in debug builds, so the segment size is
/// also most of the debug build's cost per fsync. A record holds at most one core `Persist`:
/// up to the in-flight slots of small items, far below the body limit.
fn wal_config() -> WalConfig {
    WalConfig {
        segment_bytes: 128 * 1024,
        segment_count: 32,
        batch_bytes_max: 120 * 1024,
        batch_records_max: 256,
        pending_records_max: 1024,
        pending_bytes_max: 1 << 20,
        record_body_bytes_max: 100 * 1024,
    }
}

/// The storage fault rates of a seed (swarm): each silent kind on with probability one half.
fn storage_faults(rng: &mut SeededRng) -> StorageFaults {
    let mut draw = || {
        if rng.chance(0.5) {
            0.0
        } else {
            let exponent = STORAGE_FAULT_RATE_LOG10_MIN
                + rng.unit_f64() * (STORAGE_FAULT_RATE_LOG10_MAX - STORAGE_FAULT_RATE_LOG10_MIN);
            10f64.powf(exponent)
        }
    };
    let rates = StorageFaultRates {
        torn_write: draw(),
        lost_write: draw(),
        misdirected_write: draw(),
        write_bit_flip: draw(),
        read_bit_flip: draw(),
        // Not storage corruption: EIO is a reported failure (tested in shoal-store), and a
        // failed fdatasync stops the process through `fatal!`, which the simulator cannot
        // survive in-process.
        ..StorageFaultRates::none()
    };
    let at_rest_flips_per_million_steps = if rng.chance(0.5) {
        0
    } else {
        rng.below(AT_REST_FLIPS_PER_MILLION_STEPS_MAX + 1)
    };
    StorageFaults {
        rates,
        at_rest_flips_per_million_steps,
    }
}

/// The seed's faulty disks: nodes in a random order, each taken while every group it hosts
/// keeps at most a minority of faulty replicas, up to `FAULTY_DISKS_MAX`.
fn faulty_disks(rng: &mut SeededRng, node_count: u64, groups: &[Group]) -> BTreeSet<NodeId> {
    let mut order: Vec<NodeId> = (1..=node_count).map(NodeId).collect();
    for index in (1..order.len()).rev() {
        let other = rng.below(index as u64 + 1) as usize;
        order.swap(index, other);
    }
    let wanted = 1 + rng.below(FAULTY_DISKS_MAX as u64) as usize;
    let mut chosen = BTreeSet::new();
    for node in order {
        if chosen.len() == wanted {
            break;
        }
        let fits = groups.iter().all(|group| {
            let faulty = group
                .members
                .iter()
                .filter(|member| chosen.contains(*member) || **member == node)
                .count();
            faulty <= FAULTY_REPLICAS_PER_GROUP_MAX
        });
        if fits {
            chosen.insert(node);
        }
    }
    chosen
}

/// What a replica's `Persist` body (the WAL record) holds for the acceptor-memory check. A
/// body that does not decode holds nothing the check can use; recovery reports it anyway.
fn acceptor_record(body: &[u8]) -> AcceptorRecord {
    let Ok(record) = decode_persist_record(body) else {
        return AcceptorRecord::default();
    };
    AcceptorRecord {
        promised: record.promised.map(Ballot::from),
        accepted: record
            .entries
            .iter()
            .map(|(slot, entry)| (Slot(*slot), Ballot::from(entry.ballot)))
            .collect(),
    }
}

fn partition_meta(group: usize, members: &[NodeId]) -> PartitionMeta {
    PartitionMeta {
        partition: group as u64 + PARTITION_FIRST,
        epoch: EPOCH,
        key_schema: KeySchema::partition_only("pk", KeyType::String),
        membership: Membership::new(members.iter().copied(), []),
    }
}

fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// The simulator's executor: polls `future`, and the node's WAL committer whenever the future
/// waits (it can wait only on the committer: simulated I/O completes at once).
fn drive<T>(future: impl Future<Output = T>, committer: &mut Committer) -> Result<T, NodeFailure> {
    let mut future = std::pin::pin!(future);
    for _ in 0..DRIVE_POLLS_MAX {
        if let Poll::Ready(output) = poll_once(future.as_mut()) {
            return Ok(output);
        }
        if let Poll::Ready(outcome) = poll_once(committer.as_mut()) {
            return Err(NodeFailure {
                text: format!("the WAL committer stopped: {outcome:?}"),
                corruption: outcome.as_ref().is_err_and(wal_corruption),
            });
        }
    }
    Err(NodeFailure::other(format!(
        "a future still waits after {DRIVE_POLLS_MAX} polls of the WAL committer"
    )))
}

/// Polls a future that needs no committer (opening a WAL) to completion.
fn complete<T>(future: impl Future<Output = T>) -> Result<T, String> {
    let mut future = std::pin::pin!(future);
    for _ in 0..DRIVE_POLLS_MAX {
        if let Poll::Ready(output) = poll_once(future.as_mut()) {
            return Ok(output);
        }
    }
    Err(format!(
        "a future still waits after {DRIVE_POLLS_MAX} polls"
    ))
}

/// FNV-1a: a trace hash that stays the same across Rust versions, unlike `DefaultHasher`.
pub(crate) fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// The numbers that identify a replication message in the trace. Cheaper than hashing its
/// `Debug` text, and as telling: two runs that differ anywhere soon differ in some ballot, slot
/// or destination.
fn message_fingerprint(message: &Message) -> [u64; 4] {
    match message {
        Message::PreCheck { round } => [1, *round, 0, 0],
        Message::PreCheckReply { round, granted } => [2, *round, u64::from(*granted), 0],
        Message::Prepare { ballot, from_slot } => [3, ballot.round, ballot.node.0, from_slot.0],
        Message::Promise {
            ballot, accepted, ..
        } => [4, ballot.round, ballot.node.0, accepted.len() as u64],
        Message::Accept {
            ballot,
            round,
            first_slot,
            entries,
            commit_slot,
        } => [
            5,
            ballot.round ^ round.rotate_left(32),
            first_slot.0 ^ (entries.len() as u64).rotate_left(48),
            commit_slot.0,
        ],
        Message::Accepted {
            ballot,
            round,
            match_slot,
            missing,
        } => [
            6,
            ballot.round ^ round.rotate_left(32),
            match_slot.0,
            u64::from(*missing),
        ],
        Message::Rejected { promised } => [7, promised.round, promised.node.0, 0],
    }
}

/// The numbers that identify a replica's output in the trace.
/// The size of a result's items: enough to tell answers apart in a fingerprint.
fn result_fingerprint(result: &ItemResult) -> u64 {
    let bytes = |items: &[Vec<u8>]| items.iter().map(|item| item.len() as u64).sum::<u64>();
    match result {
        ItemResult::Write { attributes } => attributes.as_ref().map_or(0, |item| item.len() as u64),
        ItemResult::BatchWrite => 1,
        ItemResult::Get { item } => 2 + item.as_ref().map_or(0, |item| item.len() as u64),
        ItemResult::BatchGet { items } => 3 + bytes(items),
        ItemResult::Range { items, count, .. } => 4 + bytes(items) + (count << 32),
    }
}

fn output_fingerprint(output: &Output) -> [u64; 5] {
    match output {
        Output::Persist { core_lsn, body } => [1, core_lsn.0, body.len() as u64, 0, 0],
        Output::Send { to, message } => {
            let [kind, a, b, c] = message_fingerprint(message);
            [2, to.0 | kind << 32, a, b, c]
        }
        Output::Reply { reply_to, response } => {
            let kind = match response {
                NodeResponse::Item { result, .. } => 1 + (result_fingerprint(result) << 8),
                NodeResponse::Error(_) => 2,
                _ => 3,
            };
            [3, *reply_to, kind, 0, 0]
        }
        Output::Snapshot(chunk) => [
            4,
            chunk.to,
            chunk.last_included_slot,
            u64::from(chunk.chunk_index),
            chunk.items.len() as u64,
        ],
    }
}

/// The broken variant's alteration of an Accept: every put becomes a delete of its key.
fn alter_accept(message: Message) -> Message {
    let Message::Accept {
        ballot,
        round,
        first_slot,
        entries,
        commit_slot,
    } = message
    else {
        return message;
    };
    let entries = entries
        .into_iter()
        .map(|entry| match entry.payload {
            Payload::Command(bytes) => {
                let payload = match MutationBatch::decode(&bytes) {
                    Some(batch) => MutationBatch {
                        mutations: batch
                            .mutations
                            .into_iter()
                            .map(|mutation| match mutation {
                                Mutation::Put { key, .. } | Mutation::Delete { key } => {
                                    Mutation::Delete { key }
                                }
                            })
                            .collect(),
                    }
                    .encode(),
                    None => bytes,
                };
                LogEntry {
                    ballot: entry.ballot,
                    payload: Payload::Command(payload),
                }
            }
            _ => entry,
        })
        .collect();
    Message::Accept {
        ballot,
        round,
        first_slot,
        entries,
        commit_slot,
    }
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
        clog_per_million_steps: rate_rng.below(1_000),
        clog_nanos_max: 1 + rate_rng.below(1_500_000_000),
    };

    // The topology: node count, group count, and each group's replicas on distinct nodes. With
    // more nodes than replicas, groups start at different nodes, so they sit on different node
    // subsets and a node's crash hits some groups and not others.
    let mut topology_rng = root.fork(STREAM_TOPOLOGY);
    let node_count = NODE_COUNTS[topology_rng.below(NODE_COUNTS.len() as u64) as usize];
    let group_count = GROUP_COUNT_MIN + topology_rng.below(GROUP_COUNT_MAX - GROUP_COUNT_MIN + 1);
    let first_node = topology_rng.below(node_count);
    let groups: Vec<Group> = (0..group_count)
        .map(|group| Group {
            members: (0..REPLICAS_PER_GROUP as u64)
                .map(|replica| NodeId(1 + (first_node + group + replica) % node_count))
                .collect(),
            digests: BTreeMap::new(),
            acknowledged: 0,
            healthy_majority_since: None,
        })
        .collect();

    let mut storage_rng = root.fork(STREAM_STORAGE_FAULTS);
    let storage = storage_faults(&mut storage_rng);
    let faulty = faulty_disks(&mut storage_rng, node_count, &groups);
    let mut node_rng = root.fork(STREAM_NODES);
    let mut nodes = BTreeMap::new();
    for id in (1..=node_count).map(NodeId) {
        let clock_offset_nanos = node_rng.below(1_000_000_000_000);
        let clock_rate_ppm =
            node_rng.below(2 * CLOCK_RATE_PPM_MAX + 1) as i64 - CLOCK_RATE_PPM_MAX as i64;
        let hosted: Vec<usize> = (0..groups.len())
            .filter(|group| groups[*group].members.contains(&id))
            .collect();
        let injector = FaultInjector::new(storage.rates.clone(), storage_rng.fork(id.0), None);
        // Switched on once the cluster was created (`run`): faults during creation would
        // only stop the node before it did anything.
        injector.set_enabled(false);
        nodes.insert(
            id,
            Node {
                clock_offset_nanos,
                clock_rate_ppm,
                disk: SimulatedDisk::new(),
                injector,
                faulty_disk: faulty.contains(&id),
                stopped: false,
                acceptor_memory: hosted
                    .iter()
                    .map(|group| (*group, AcceptorMemory::default()))
                    .collect(),
                observed_applied: hosted.iter().map(|group| (*group, Slot::ZERO)).collect(),
                groups: hosted,
                fuzzy_until: BTreeMap::new(),
                runtime: None,
                restart_at_nanos: None,
                incarnation: 0,
            },
        );
    }
    let clients = (0..CLIENT_COUNT)
        .map(|index| Client {
            state: ClientState::Idle { next_at_nanos: 0 },
            leader_guess: groups
                .iter()
                .map(|group| group.members[index % REPLICAS_PER_GROUP])
                .collect(),
        })
        .collect();
    let mut simulation = Simulation {
        now_nanos: 0,
        rates,
        network_rng: root.fork(STREAM_NETWORK),
        disk_rng: root.fork(STREAM_DISK),
        workload_rng: root.fork(STREAM_WORKLOAD),
        fault_rng: root.fork(STREAM_FAULTS),
        storage_rng,
        storage_faults: storage,
        nodes,
        groups,
        network: BTreeMap::new(),
        network_sequence: 0,
        isolated: BTreeMap::new(),
        clogged: None,
        clog_held: Vec::new(),
        snapshot_queues: BTreeMap::new(),
        clients,
        requests: BTreeMap::new(),
        next_reply_to: SCAN_REPLY_TO + 1,
        history: Vec::new(),
        operation_by_value: BTreeMap::new(),
        last_seen: BTreeMap::new(),
        eventual_reads: Vec::new(),
        event_sequence: 0,
        next_value: 1,
        delivering_snapshot_horizon: Slot::ZERO,
        healing: false,
        report: Report {
            seed: options.seed,
            node_count,
            group_count,
            trace_hash: FNV_OFFSET_BASIS,
            ..Report::default()
        },
        options,
    };
    let ids: Vec<NodeId> = simulation.nodes.keys().copied().collect();
    for id in ids {
        let seed = node_rng.next_u64();
        simulation.start(id, true, seed);
    }
    for node in simulation.nodes.values() {
        node.injector.set_enabled(node.faulty_disk);
    }
    simulation.run();
    simulation.report
}

/// A node whose replica failed (an error the simulator cannot explain, a violation already)
/// restarts after this long, as a supervisor would restart the process.
const FAILED_NODE_RESTART_NANOS: u64 = 1_000_000_000;

/// Opens a node's WAL and page cache on `directory` and creates (`fresh`) or recovers each of
/// its replicas: the storage node's start, step by step.
fn start_runtime(
    directory: &FaultyDirectory,
    id: NodeId,
    metas: &[(usize, PartitionMeta)],
    fresh: bool,
    seed: u64,
    now: MonotonicTime,
) -> Result<Runtime, NodeFailure> {
    let mut replay = ShardReplay::default();
    let (wal, _) = complete(Wal::open(directory, wal_config(), |record| {
        replay.visit(record)
    }))
    .map_err(NodeFailure::other)?
    .map_err(|error| NodeFailure {
        text: format!("{id:?}: the WAL does not open: {error}"),
        corruption: wal_corruption(&error),
    })?;
    let committer_wal = wal.clone();
    let mut committer: Committer = Box::pin(async move { committer_wal.run_committer().await });
    let cache = PageCache::new(PAGE_CACHE_PAGES);
    let election_seed = |partition: u64| seed ^ partition.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut replicas = BTreeMap::new();
    if fresh {
        for (group, meta) in metas {
            let replica = drive(
                PartitionReplica::create(
                    meta.clone(),
                    id,
                    replica_config(),
                    election_seed(meta.partition),
                    Rc::new(directory.clone()),
                    cache.clone(),
                    wal.clone(),
                    now,
                ),
                &mut committer,
            )?
            .map_err(|error| NodeFailure {
                text: format!("{id:?} group {group}: the replica is not created: {error}"),
                corruption: partition_corruption(&error),
            })?;
            replicas.insert(*group, replica);
        }
    } else {
        // The production shard's start-up recovery (engine/shard/src/recovery.rs).
        let replica = replica_config();
        let recovered = drive(
            recover_shard(
                Rc::new(directory.clone()),
                &wal,
                replay,
                RecoveryContext {
                    node: id,
                    replica: &replica,
                    cache: cache.clone(),
                    now,
                },
                election_seed,
            ),
            &mut committer,
        )?
        .map_err(|error| NodeFailure {
            corruption: shard_corruption(&error),
            text: format!("{id:?}: the shard does not recover: {error}"),
        })?;
        // Production keeps a replica that refused to recover out of service and serves the
        // others; here that only happens on a faulty disk (or it is a violation), and the node
        // is stopped as a whole, as the checkers expect of a node whose storage lied.
        if let Some(failure) = recovered.failed.first() {
            return Err(NodeFailure {
                text: format!(
                    "{id:?}: partition {} refused to recover: {}",
                    failure.partition, failure.reason
                ),
                corruption: true,
            });
        }
        for replica in recovered.replicas {
            let partition = replica.partition();
            let Some((group, _)) = metas.iter().find(|(_, meta)| meta.partition == partition)
            else {
                return Err(NodeFailure::other(format!(
                    "{id:?}: recovered partition {partition}, which it does not host"
                )));
            };
            replicas.insert(*group, replica);
        }
        if replicas.len() != metas.len() {
            return Err(NodeFailure::other(format!(
                "{id:?}: recovered {} of its {} replicas",
                replicas.len(),
                metas.len()
            )));
        }
    }
    let mut dispatch = Dispatch::new(id, SHARD);
    for meta in replicas.values().map(|replica| replica.meta()) {
        dispatch.add_replica(meta.partition, meta.epoch);
    }
    Ok(Runtime {
        dispatch,
        wal,
        committer,
        replicas,
        unsynced: Vec::new(),
        commit_at_nanos: None,
    })
}

/// Whether a shard's recovery failed on corruption its storage reported or its records show.
fn shard_corruption(error: &ShardError) -> bool {
    match error {
        ShardError::Storage(error) => storage_corruption(error),
        ShardError::Wal(error) => wal_corruption(error),
        ShardError::Partition(_, error) => partition_corruption(error),
        ShardError::Meta(_, error) => meta_corruption(error),
        ShardError::UndecodableRecords { .. } => false,
    }
}

/// The broken variant's damage, so that every restart of a faulty disk's node exercises it:
/// one bit at rest in the first record header of the newest WAL segment (in the log, and
/// followed by later batches unless the segment has just one).
fn damage_newest_segment(disk: &SimulatedDisk) {
    let newest = (0..wal_config().segment_count)
        .filter_map(|index| {
            let contents = disk.contents(&segment_file_name(index))?;
            let header: [u8; SEGMENT_HEADER_BYTES] =
                contents.get(..SEGMENT_HEADER_BYTES)?.try_into().ok()?;
            match SegmentHeader::decode(&header) {
                SegmentHeaderSlot::Valid(header) => Some((header.generation, index, contents)),
                _ => None,
            }
        })
        .max_by_key(|(generation, _, _)| *generation);
    let Some((_, index, contents)) = newest else {
        return;
    };
    // The LSN field of the first record header of the segment's first batch.
    let offset = shoal_store::wal::format::SEGMENT_DATA_OFFSET as usize + 16;
    if let Some(byte) = contents.get(offset) {
        disk.corrupt(&segment_file_name(index), offset as u64, &[byte ^ 0x01]);
    }
}

/// The broken variant `WalDamageTakenForEndOfLog`: opens the WAL as a recovery that takes
/// damage for the end of the log would, by zeroing the log from the damaged block on (the
/// rest of that segment and every segment of a newer generation) until it opens. Returns
/// whether it truncated anything.
fn truncate_at_wal_damage(disk: &SimulatedDisk, directory: &FaultyDirectory) -> bool {
    let block = shoal_store::wal::format::BLOCK_BYTES as u64;
    let mut truncated = false;
    for _ in 0..BROKEN_TRUNCATIONS_MAX {
        let opened = complete(Wal::open(directory, wal_config(), |_| {}));
        let Ok(Err(WalError::Corruption(corruption))) = opened else {
            return truncated;
        };
        let location = corruption.location;
        let generation_of = |index: u32| {
            let contents = disk.contents(&segment_file_name(index))?;
            let header: [u8; SEGMENT_HEADER_BYTES] =
                contents.get(..SEGMENT_HEADER_BYTES)?.try_into().ok()?;
            match SegmentHeader::decode(&header) {
                SegmentHeaderSlot::Valid(header) => Some(header.generation),
                _ => None,
            }
        };
        for index in 0..wal_config().segment_count {
            let name = segment_file_name(index);
            let Some(contents) = disk.contents(&name) else {
                continue;
            };
            let from = if index == location.segment_index {
                location.offset - location.offset % block
            } else if generation_of(index).is_some_and(|generation| {
                location.generation > 0 && generation > location.generation
            }) {
                0
            } else {
                continue;
            };
            let zeros = vec![0; contents.len().saturating_sub(from as usize)];
            disk.corrupt(&name, from, &zeros);
            truncated = true;
        }
    }
    truncated
}

/// Operations shown from the end of a non-linearizable history's shortest failing prefix.
const FAILING_WINDOW_OPERATIONS: usize = 8;

/// The last operations of the shortest prefix (in invocation order) that is already not
/// linearizable: where a failing seed's story ends, for whoever replays it.
fn failing_window(operations: &[Operation]) -> Vec<Operation> {
    let mut sorted = operations.to_vec();
    sorted.sort_by_key(|operation| operation.invoked_nanos);
    // Bisection, assuming that a prefix longer than a failing one fails too: nearly always
    // so (a later operation rarely repairs an earlier contradiction), and this is a diagnostic.
    let (mut low, mut high) = (1, sorted.len());
    while low < high {
        let middle = (low + high) / 2;
        if linearizability::check(&sorted[..middle]) == Verdict::NotLinearizable {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    sorted.truncate(low);
    sorted.split_off(low.saturating_sub(FAILING_WINDOW_OPERATIONS))
}

impl Simulation {
    fn local_time(&self, node: NodeId) -> MonotonicTime {
        let state = &self.nodes[&node];
        let skew = (i128::from(self.now_nanos) * i128::from(state.clock_rate_ppm)) / 1_000_000;
        let local = i128::from(state.clock_offset_nanos) + i128::from(self.now_nanos) + skew;
        MonotonicTime::from_nanos(u64::try_from(local).unwrap_or(0))
    }

    fn is_up(&self, node: NodeId) -> bool {
        self.nodes[&node].is_up()
    }

    fn random_member(&mut self, group: usize) -> NodeId {
        let members = &self.groups[group].members;
        members[self.workload_rng.below(members.len() as u64) as usize]
    }

    fn fault(&mut self, kind: &'static str) {
        *self.report.faults.entry(kind).or_default() += 1;
    }

    fn trace(&mut self, node: NodeId, group: usize, words: &[u64]) {
        // FNV's step a word at a time rather than a byte at a time: the trace runs on every
        // output, and it only needs to differ when runs differ, not to be FNV-1a.
        let mix = |hash: u64, word: u64| (hash ^ word).wrapping_mul(0x0000_0100_0000_01B3);
        let mut hash = mix(self.report.trace_hash, self.now_nanos);
        hash = mix(hash, node.0);
        hash = mix(hash, group as u64);
        for word in words {
            hash = mix(hash, *word);
        }
        self.report.trace_hash = hash;
    }

    fn violation(&mut self, text: String) {
        if self.report.violations.len() < VIOLATIONS_MAX {
            self.report.violations.push(text);
        }
    }

    fn run(&mut self) {
        let total_steps = u64::try_from(self.options.simulated.as_nanos() / u128::from(STEP_NANOS))
            .unwrap_or(u64::MAX);
        let heal_from_step = total_steps - total_steps / 5;
        let mut acknowledged_before_heal = Vec::new();
        for step in 0..total_steps {
            if step == total_steps / 3
                && self.options.broken == Some(Broken::WalDamageTakenForEndOfLog)
            {
                self.crash_faulty_disks();
            }
            if step == heal_from_step {
                self.heal();
                // Writes sent into the faults may have lost their request or answer; a client
                // waits OPERATION_TIMEOUT_NANOS for them, longer than a short run's heal phase.
                // Give up on them now (they stay in the history as possibly applied), so that
                // the liveness check below measures the healed cluster, not the client timeout.
                self.time_out_pending(true);
                acknowledged_before_heal = self.groups.iter().map(|g| g.acknowledged).collect();
            }
            self.now_nanos += STEP_NANOS;
            self.unclog_due();
            self.send_queued_snapshot_chunks();
            self.deliver_due();
            self.fsync_due();
            if step % TICK_INTERVAL_STEPS == 0 {
                self.tick_all();
            }
            if step % PRUNE_INTERVAL_STEPS == 0 {
                self.prune_checker_state();
            }
            if !self.healing {
                self.inject_faults();
            }
            self.restart_due();
            self.run_clients();
            self.check_majority_liveness();
            if self.report.violations.len() >= VIOLATIONS_MAX {
                break;
            }
        }
        self.time_out_pending(true);
        if total_steps >= 5_000 {
            for (group, before) in acknowledged_before_heal.into_iter().enumerate() {
                if self.groups[group].acknowledged == before {
                    let replicas = self.describe_group(group);
                    self.violation(format!(
                        "liveness: group {group} acknowledged no write after every fault healed \
                         ({replicas})"
                    ));
                }
            }
        }
        for node in self.nodes.values() {
            if let Some(runtime) = &node.runtime {
                self.report.wal_segments_recycled += runtime.wal.stats().segments_recycled;
            }
        }
        let storage_kinds = [
            (FaultKind::TornWrite, "storage: torn write"),
            (FaultKind::LostWrite, "storage: lost write"),
            (FaultKind::MisdirectedWrite, "storage: misdirected write"),
            (FaultKind::WriteBitFlip, "storage: bit flip on write"),
            (FaultKind::ReadBitFlip, "storage: bit flip on read"),
        ];
        let faulty_disks = self.nodes.values().filter(|node| node.faulty_disk).count();
        *self
            .report
            .faults
            .entry("storage: faulty disks")
            .or_default() += faulty_disks as u64;
        for (kind, name) in storage_kinds {
            let count: usize = self
                .nodes
                .values()
                .map(|node| node.injector.count(kind))
                .sum();
            if count > 0 {
                *self.report.faults.entry(name).or_default() += count as u64;
            }
        }
        self.check_history();
        self.check_eventual_reads();
        self.report.simulated_ms = self.now_nanos / 1_000_000;
    }

    /// Each node's replica of `group` as a liveness violation reports it: down, or its role,
    /// commit slot, applied slot and WAL queue.
    /// A replica that is up, and neither isolated nor clogged: one the faults leave alone.
    fn is_healthy(&self, node: NodeId) -> bool {
        self.is_up(node)
            && !self.isolated.contains_key(&node)
            && self.clogged.is_none_or(|(clogged, _)| clogged != node)
    }

    fn check_majority_liveness(&mut self) {
        for group in 0..self.groups.len() {
            let members = &self.groups[group].members;
            let healthy = members
                .iter()
                .filter(|node| self.is_healthy(**node))
                .count();
            let majority = healthy > members.len() / 2;
            let acknowledged = self.groups[group].acknowledged;
            let since = match self.groups[group].healthy_majority_since {
                Some((since, mark)) if majority && mark == acknowledged => since,
                _ if majority => {
                    self.groups[group].healthy_majority_since =
                        Some((self.now_nanos, acknowledged));
                    continue;
                }
                _ => {
                    self.groups[group].healthy_majority_since = None;
                    continue;
                }
            };
            if self.now_nanos - since >= MAJORITY_LIVENESS_WINDOW_NANOS {
                let replicas = self.describe_group(group);
                self.violation(format!(
                    "liveness: group {group} kept a healthy majority for {} s and acknowledged \
                     no write (at {} ms): {replicas}",
                    MAJORITY_LIVENESS_WINDOW_NANOS / 1_000_000_000,
                    self.now_nanos / 1_000_000
                ));
                self.groups[group].healthy_majority_since = Some((self.now_nanos, acknowledged));
            }
        }
    }

    fn describe_group(&self, group: usize) -> String {
        let now = MonotonicTime::from_nanos(self.now_nanos);
        self.nodes
            .iter()
            .map(|(id, node)| {
                let Some(runtime) = &node.runtime else {
                    return format!(
                        "{id:?} down{}",
                        if node.stopped { " (stopped)" } else { "" }
                    );
                };
                match runtime.replicas.get(&group) {
                    Some(replica) => {
                        let status = replica.status(now);
                        let faults = match (self.isolated.get(id), self.clogged) {
                            (Some(true), _) => " (isolated one way)",
                            (Some(false), _) => " (isolated)",
                            (None, Some((clogged, _))) if clogged == *id => " (clogged)",
                            _ => "",
                        };
                        format!(
                            "{id:?}{faults} {:?} promised {:?} leader hint {:?} commit {} \
                             applied {} unsynced {} commit_at {:?}",
                            status.role,
                            replica.core().promised(),
                            replica.core().leader_hint(),
                            status.commit_slot,
                            status.applied_slot,
                            runtime.unsynced.len(),
                            runtime.commit_at_nanos
                        )
                    }
                    None => format!("{id:?} no replica"),
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn heal(&mut self) {
        self.healing = true;
        self.isolated.clear();
        if let Some((_, until)) = self.clogged.as_mut() {
            *until = self.now_nanos;
        }
        self.unclog_due();
        for node in self.nodes.values_mut() {
            // Storage heals too; what it already damaged stays on the disk.
            node.injector.set_enabled(false);
            if !node.is_up() && !node.stopped {
                node.restart_at_nanos = Some(0);
            }
        }
        self.restart_due();
    }

    /// Starts node `id` from its disk: fresh at the beginning of the run, else through recovery.
    fn start(&mut self, id: NodeId, fresh: bool, seed: u64) {
        let now = self.local_time(id);
        let metas: Vec<(usize, PartitionMeta)> = self.nodes[&id]
            .groups
            .iter()
            .map(|group| (*group, partition_meta(*group, &self.groups[*group].members)))
            .collect();
        let broken = self.options.broken == Some(Broken::WalDamageTakenForEndOfLog);
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.incarnation += 1;
        let directory = node.directory();
        if broken && !fresh && node.faulty_disk {
            damage_newest_segment(&node.disk);
            if truncate_at_wal_damage(&node.disk, &directory) {
                self.fault("broken: WAL truncated at damage");
            }
        }
        let node = self.nodes.get_mut(&id).expect("node exists");
        match start_runtime(&directory, id, &metas, fresh, seed, now) {
            Ok(runtime) => {
                for (group, replica) in &runtime.replicas {
                    node.observed_applied.insert(*group, replica.applied_slot());
                }
                node.runtime = Some(runtime);
                if !fresh {
                    self.check_acceptor_memory(id);
                }
            }
            Err(failure) => self.stop_or_violation(id, usize::MAX, failure),
        }
        self.trace(id, usize::MAX, &[3, u64::from(fresh)]);
    }

    /// A restarted replica must hold every promise and accepted entry its durable records held
    /// (entries below its log's first slot are in its checkpointed tree). Storage faults that
    /// the engine did not detect, or a recovery that drops records, show up here first.
    fn check_acceptor_memory(&mut self, id: NodeId) {
        let mut forgotten = Vec::new();
        let node = self.nodes.get_mut(&id).expect("node exists");
        let Some(runtime) = node.runtime.as_ref() else {
            return;
        };
        for (group, replica) in &runtime.replicas {
            let core = replica.core();
            let Some(memory) = node.acceptor_memory.get_mut(group) else {
                continue;
            };
            memory.accepted = memory.accepted.split_off(&core.log_first_slot());
            if core.promised() < memory.promised {
                forgotten.push(format!(
                    "{id:?} group {group}: restarted with promise {:?} below the durable {:?}",
                    core.promised(),
                    memory.promised
                ));
            }
            for (slot, ballot) in &memory.accepted {
                let held = core.entry(*slot).map(|entry| entry.ballot);
                if held.is_none_or(|held| held < *ballot) {
                    forgotten.push(format!(
                        "{id:?} group {group}: restarted without the entry it durably accepted \
                         at {slot:?} in {ballot:?} (holds {held:?})"
                    ));
                    break;
                }
            }
        }
        for text in forgotten {
            self.violation(format!("acceptor forgot: {text}"));
        }
    }

    /// A node failed. Corruption its storage reported on a faulty disk is the expected
    /// fail-stop: the node stops for good, as `fatal!` would stop the process, and is counted.
    /// Anything else (and corruption on a healthy disk) is a violation; the node then restarts
    /// a second later, as a supervisor would.
    fn stop_or_violation(&mut self, id: NodeId, group: usize, failure: NodeFailure) {
        let faulty_disk = self.nodes[&id].faulty_disk;
        if failure.corruption && faulty_disk {
            if self.nodes[&id].stopped {
                return;
            }
            self.crash(id);
            let node = self.nodes.get_mut(&id).expect("node exists");
            node.stopped = true;
            node.restart_at_nanos = None;
            self.fault("node stopped: corruption detected");
            self.trace(id, group, &[4]);
            return;
        }
        let disk = if faulty_disk { "faulty" } else { "healthy" };
        self.violation(format!(
            "{id:?} group {group} ({disk} disk): {}",
            failure.text
        ));
        self.crash(id);
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.restart_at_nanos = Some(self.now_nanos + FAILED_NODE_RESTART_NANOS);
    }

    /// A power loss: every replica of the node and its WAL are gone from memory, and the disk
    /// is what the loss leaves (unsynced sectors may or may not have landed).
    fn crash(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        if let Some(runtime) = node.runtime.take() {
            self.report.wal_segments_recycled += runtime.wal.stats().segments_recycled;
        }
        node.disk = node.disk.crash_image(&mut self.disk_rng);
        self.trace(id, usize::MAX, &[1]);
    }

    /// A replica or its WAL failed in a way only a bug explains, or its storage reported
    /// corruption (`stop_or_violation` tells the two apart).
    fn fail_node(&mut self, id: NodeId, group: usize, failure: NodeFailure) {
        self.stop_or_violation(id, group, failure);
    }

    /// Latent damage: one bit of one file of a faulty disk flips, in both the bytes reads see
    /// and the durable image, whether the node is up or down. Only checksums can find it.
    fn flip_bits_at_rest(&mut self) {
        let rate = self.storage_faults.at_rest_flips_per_million_steps;
        let faulty: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.faulty_disk)
            .map(|(id, _)| *id)
            .collect();
        for id in faulty {
            if self.storage_rng.below(1_000_000) >= rate {
                continue;
            }
            let disk = self.nodes[&id].disk.clone();
            let Ok(Ok(names)) = complete(disk.directory().list()) else {
                continue;
            };
            if names.is_empty() {
                continue;
            }
            let name = &names[self.storage_rng.below(names.len() as u64) as usize];
            let Some(contents) = disk.contents(name).filter(|bytes| !bytes.is_empty()) else {
                continue;
            };
            let offset = self.storage_rng.below(contents.len() as u64);
            let bit = self.storage_rng.below(8);
            disk.corrupt(name, offset, &[contents[offset as usize] ^ (1 << bit)]);
            self.fault("storage: bit flip at rest");
            self.trace(id, usize::MAX, &[5, offset, bit]);
        }
    }

    /// The broken variant `WalDamageTakenForEndOfLog` crashes every running faulty disk's node
    /// once, so that its recovery runs in every seed.
    fn crash_faulty_disks(&mut self) {
        let faulty: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.faulty_disk && node.is_up())
            .map(|(id, _)| *id)
            .collect();
        for id in faulty {
            self.crash(id);
            let node = self.nodes.get_mut(&id).expect("node exists");
            node.restart_at_nanos = Some(self.now_nanos + BROKEN_RESTART_NANOS);
        }
    }

    fn inject_faults(&mut self) {
        self.flip_bits_at_rest();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let node = ids[self.fault_rng.below(ids.len() as u64) as usize];
        if self.fault_rng.below(1_000_000) < self.rates.crash_per_million_steps && self.is_up(node)
        {
            let downtime = 50_000_000 + self.fault_rng.below(2_000_000_000);
            self.crash(node);
            let state = self.nodes.get_mut(&node).expect("node exists");
            state.restart_at_nanos = Some(self.now_nanos + downtime);
            self.fault("crash");
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
        // Clogs come one at a time (FoundationDB's swizzle-clogging clogs nodes in turn).
        if self.clogged.is_none()
            && self.fault_rng.below(1_000_000) < self.rates.clog_per_million_steps
        {
            let duration = CLOG_NANOS_MIN + self.fault_rng.below(self.rates.clog_nanos_max);
            self.clogged = Some((node, self.now_nanos + duration));
            self.fault("clog");
            self.trace(node, usize::MAX, &[2]);
        }
    }

    /// Ends a clog whose time is up and releases what it held, each message after a fresh
    /// network delay, so the backlog arrives in a burst and in a new order.
    fn unclog_due(&mut self) {
        if self.clogged.is_none_or(|(_, until)| until > self.now_nanos) {
            return;
        }
        self.clogged = None;
        for message in std::mem::take(&mut self.clog_held) {
            let delay = self.network_rng.below(self.rates.delay_nanos_max);
            self.enqueue(self.now_nanos + delay, message);
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
            let node = self.nodes.get_mut(&id).expect("node exists");
            node.restart_at_nanos = None;
            let seed =
                id.0.wrapping_mul(0x9E37)
                    .wrapping_add(node.incarnation.rotate_left(20))
                    .wrapping_add(self.options.seed.rotate_left(40));
            self.start(id, false, seed);
        }
    }

    fn tick_all(&mut self) {
        let replicas: Vec<(NodeId, usize)> = self
            .nodes
            .iter()
            .flat_map(|(id, node)| node.groups.iter().map(move |group| (*id, *group)))
            .collect();
        for (id, group) in replicas {
            let snapshot_room = self.snapshot_room(id, group);
            self.feed(id, group, Event::Tick { snapshot_room });
        }
    }

    /// The room on the link from `id` to the follower its replica of `group` is streaming to.
    fn snapshot_room(&self, id: NodeId, group: usize) -> usize {
        let destination = self.nodes[&id]
            .runtime
            .as_ref()
            .and_then(|runtime| runtime.replicas.get(&group))
            .and_then(|replica| replica.snapshot_destination());
        destination.map_or(0, |to| {
            SNAPSHOT_QUEUE_CHUNKS_MAX
                - self
                    .snapshot_queues
                    .get(&(id, to))
                    .map_or(0, VecDeque::len)
                    .min(SNAPSHOT_QUEUE_CHUNKS_MAX)
        })
    }

    /// Each link whose follower is reachable puts one queued chunk on the network per step (the
    /// bus's writer takes one chunk per write). A sender that went down lost its queues with
    /// its process.
    fn send_queued_snapshot_chunks(&mut self) {
        let links: Vec<(NodeId, NodeId)> = self.snapshot_queues.keys().copied().collect();
        for (from, to) in links {
            if !self.is_up(from) {
                self.snapshot_queues.remove(&(from, to));
                continue;
            }
            let reachable = self.is_up(to)
                && !self.isolated.contains_key(&from)
                && self.isolated.get(&to).is_none_or(|one_way| *one_way);
            if !reachable {
                continue;
            }
            let Some(queue) = self.snapshot_queues.get_mut(&(from, to)) else {
                continue;
            };
            let Some(message) = queue.pop_front() else {
                continue;
            };
            if queue.is_empty() {
                self.snapshot_queues.remove(&(from, to));
            }
            let InFlight {
                group, envelope, ..
            } = message;
            self.send(group, from, to, envelope);
        }
    }

    /// Keeps the checkers' memory bounded: digests of slots every live replica of the group has
    /// passed can no longer be compared with a live replica's (a restarted one may reach them
    /// again, and is then compared with later replicas instead).
    fn prune_checker_state(&mut self) {
        for group in 0..self.groups.len() {
            let live_floor = self.groups[group]
                .members
                .iter()
                .filter(|node| self.is_up(**node))
                .filter_map(|node| self.nodes[node].observed_applied.get(&group).copied())
                .min();
            if let Some(floor) = live_floor {
                let state = &mut self.groups[group];
                state.digests = state.digests.split_off(&floor);
            }
        }
        // Accepted entries below a live replica's log are in its checkpointed tree.
        for node in self.nodes.values_mut() {
            let Some(runtime) = node.runtime.as_ref() else {
                continue;
            };
            for (group, replica) in &runtime.replicas {
                if let Some(memory) = node.acceptor_memory.get_mut(group) {
                    memory.accepted = memory.accepted.split_off(&replica.core().log_first_slot());
                }
            }
        }
    }

    /// The group commit's fsync: polls the committer of each node whose commit is due (it
    /// writes and syncs every queued record), then reports what became durable.
    fn fsync_due(&mut self) {
        let due: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| {
                node.runtime
                    .as_ref()
                    .and_then(|runtime| runtime.commit_at_nanos)
                    .is_some_and(|at| at <= self.now_nanos)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let retry_at = self.now_nanos + 1 + self.disk_rng.below(GROUP_COMMIT_DELAY_NANOS_MAX);
            let Some(runtime) = self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut()) else {
                continue;
            };
            runtime.commit_at_nanos = None;
            if let Poll::Ready(outcome) = poll_once(runtime.committer.as_mut()) {
                let corruption = outcome.as_ref().is_err_and(wal_corruption);
                self.fail_node(
                    id,
                    usize::MAX,
                    NodeFailure {
                        text: format!("the WAL committer stopped: {outcome:?}"),
                        corruption,
                    },
                );
                continue;
            }
            let mut durable = Vec::new();
            let mut failure = None;
            let mut waiting = Vec::new();
            for (group, core_lsn, mut future, record) in std::mem::take(&mut runtime.unsynced) {
                match poll_once(Pin::new(&mut future)) {
                    Poll::Ready(Ok(wal_lsn)) => durable.push((group, core_lsn, wal_lsn, record)),
                    Poll::Ready(Err(error)) => failure = Some((group, error)),
                    Poll::Pending => waiting.push((group, core_lsn, future, record)),
                }
            }
            let wal_full = !waiting.is_empty();
            if wal_full {
                // The WAL waits for a checkpoint to recycle a segment; try again later.
                runtime.commit_at_nanos = Some(retry_at);
            }
            runtime.unsynced = waiting;
            if wal_full {
                self.fault("WAL full, waiting for a checkpoint");
            }
            // What became durable stays on the disk even if a later record failed.
            if let Some(node) = self.nodes.get_mut(&id) {
                for (group, _, _, record) in &durable {
                    let memory = node.acceptor_memory.entry(*group).or_default();
                    if let Some(promised) = record.promised {
                        memory.promised = memory.promised.max(promised);
                    }
                    for (slot, ballot) in &record.accepted {
                        let held = memory.accepted.entry(*slot).or_insert(*ballot);
                        *held = (*held).max(*ballot);
                    }
                }
            }
            if let Some((group, error)) = failure {
                let corruption = wal_corruption(&error);
                self.fail_node(
                    id,
                    group,
                    NodeFailure {
                        text: format!("a WAL append failed: {error}"),
                        corruption,
                    },
                );
                continue;
            }
            for (group, core_lsn, wal_lsn, _) in durable {
                self.feed(id, group, Event::Persisted { core_lsn, wal_lsn });
            }
        }
    }

    fn enqueue(&mut self, deliver_at_nanos: u64, message: InFlight) {
        self.network_sequence += 1;
        self.network
            .insert((deliver_at_nanos, self.network_sequence), message);
    }

    fn deliver_due(&mut self) {
        let mut due = Vec::new();
        // Bounded by the network's size limit.
        while let Some(entry) = self.network.first_entry() {
            if entry.key().0 > self.now_nanos {
                break;
            }
            due.push(entry.remove());
        }
        // Reordering: deliver what is due in a random order.
        while !due.is_empty() {
            let pick = self.network_rng.below(due.len() as u64) as usize;
            let message = due.swap_remove(pick);
            let clogged = self
                .clogged
                .is_some_and(|(node, _)| node == message.from || node == message.to);
            if clogged {
                self.fault("message held by clog");
                self.clog_held.push(message);
            } else {
                self.deliver(message);
            }
        }
    }

    fn deliver(&mut self, message: InFlight) {
        let blocked_from = self.isolated.contains_key(&message.from);
        let blocked_to = self
            .isolated
            .get(&message.to)
            .is_some_and(|one_way| !one_way);
        if blocked_from || blocked_to || !self.is_up(message.to) {
            return;
        }
        let (to, group) = (message.to, message.group);
        let bus_message = match message.envelope {
            Envelope::Replication(envelope) => BusMessage::Replication(vec![envelope]),
            Envelope::Snapshot(chunk, horizon) => {
                self.delivering_snapshot_horizon = horizon;
                BusMessage::Snapshot(chunk)
            }
        };
        let now = self.local_time(to);
        let Some(runtime) = self.nodes.get_mut(&to).and_then(|n| n.runtime.as_mut()) else {
            return;
        };
        for routed in runtime.dispatch.route(BUS_CONNECTION, bus_message, now) {
            match routed {
                Routed::Replica {
                    event: Event::Message { from, message },
                    ..
                } => {
                    let altered = self.options.broken
                        == Some(Broken::AcceptedWritesAlteredOnOneReplica)
                        && self.groups[group].members[0] == to;
                    let message = if altered {
                        alter_accept(message)
                    } else {
                        message
                    };
                    self.feed(to, group, Event::Message { from, message });
                }
                Routed::Replica { event, .. } => self.feed(to, group, event),
                Routed::Undecodable => self.violation(format!(
                    "{to:?} group {group}: a replication message that does not convert"
                )),
                other => self.violation(format!(
                    "{to:?} group {group}: replica traffic routed as {other:?}"
                )),
            }
        }
    }

    fn send(&mut self, group: usize, from: NodeId, to: NodeId, envelope: Envelope) {
        if self.network.len() + self.clog_held.len() >= NETWORK_MESSAGES_MAX {
            return;
        }
        if !self.healing && self.network_rng.below(1_000_000) < self.rates.loss_per_million {
            self.fault("message lost");
            return;
        }
        if !self.healing && self.network_rng.below(1_000_000) < self.rates.duplicate_per_million {
            self.fault("message duplicated");
            let delay = self.network_rng.below(self.rates.delay_nanos_max);
            let copy = InFlight {
                group,
                from,
                to,
                envelope: envelope.clone(),
            };
            self.enqueue(self.now_nanos + delay, copy);
        }
        let delay = self.network_rng.below(self.rates.delay_nanos_max);
        let message = InFlight {
            group,
            from,
            to,
            envelope,
        };
        self.enqueue(self.now_nanos + delay, message);
    }

    /// Hands one event to one replica and carries out what it returns. When the event moved the
    /// replica's applied slot, its applied state is read back (a Scan at that replica) for the
    /// checkers.
    fn feed(&mut self, id: NodeId, group: usize, event: Event) {
        let now = self.local_time(id);
        let last_snapshot_chunk = matches!(&event, Event::Snapshot(chunk) if chunk.last);
        let Some(runtime) = self
            .nodes
            .get_mut(&id)
            .and_then(|node| node.runtime.as_mut())
        else {
            return;
        };
        let Some(replica) = runtime.replicas.get_mut(&group) else {
            return;
        };
        let before = replica.applied_slot();
        let handled = drive(replica.handle(now, event), &mut runtime.committer);
        let after = replica.applied_slot();
        let scanned = (after != before).then(|| {
            let scan = Event::Request {
                reply_to: SCAN_REPLY_TO,
                epoch: EPOCH,
                request: requests::scan_request(),
            };
            drive(replica.handle(now, scan), &mut runtime.committer)
        });
        let outputs = match handled {
            Ok(Ok(outputs)) => outputs,
            Ok(Err(error)) => {
                let corruption = partition_corruption(&error);
                return self.fail_node(
                    id,
                    group,
                    NodeFailure {
                        text: format!("replica error: {error}"),
                        corruption,
                    },
                );
            }
            Err(failure) => return self.fail_node(id, group, failure),
        };
        if let Some(scanned) = scanned {
            if last_snapshot_chunk && after > before {
                self.fault("snapshot installed");
                let horizon = self.delivering_snapshot_horizon;
                if let Some(node) = self.nodes.get_mut(&id) {
                    node.fuzzy_until.insert(group, horizon);
                }
            }
            let body = match scanned {
                Ok(Ok(scan_outputs)) => scan_outputs.into_iter().find_map(|output| match output {
                    Output::Reply {
                        response: NodeResponse::Item { result, .. },
                        ..
                    } => Some(result),
                    _ => None,
                }),
                Ok(Err(error)) => {
                    let corruption = partition_corruption(&error);
                    return self.fail_node(
                        id,
                        group,
                        NodeFailure {
                            text: format!("a scan failed: {error}"),
                            corruption,
                        },
                    );
                }
                Err(failure) => return self.fail_node(id, group, failure),
            };
            self.observe_applied(id, group, after, body);
        }
        let partition = group as u64 + PARTITION_FIRST;
        for output in outputs {
            self.trace(id, group, &output_fingerprint(&output));
            let Some(runtime) = self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut()) else {
                return;
            };
            let Some(command) = runtime.dispatch.on_output(partition, output, now) else {
                continue;
            };
            match command {
                ShardCommand::Persist { core_lsn, body, .. } => {
                    let partition = PartitionId(group as u64 + PARTITION_FIRST);
                    let commit_at =
                        self.now_nanos + 1 + self.disk_rng.below(GROUP_COMMIT_DELAY_NANOS_MAX);
                    let Some(runtime) = self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut())
                    else {
                        return;
                    };
                    let queued = drive(
                        runtime
                            .wal
                            .enqueue(partition, REPLICATION_RECORD_KIND, &body),
                        &mut runtime.committer,
                    );
                    match queued {
                        Ok(Ok(durable)) => {
                            // Decoding every record costs a fifth of a debug run: only faulty
                            // disks, whose recovery the check is about, are tracked.
                            let record = if self.nodes[&id].faulty_disk {
                                acceptor_record(&body)
                            } else {
                                AcceptorRecord::default()
                            };
                            let Some(runtime) =
                                self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut())
                            else {
                                return;
                            };
                            runtime.unsynced.push((group, core_lsn, durable, record));
                            runtime.commit_at_nanos.get_or_insert(commit_at);
                        }
                        Ok(Err(error)) => {
                            let corruption = wal_corruption(&error);
                            return self.fail_node(
                                id,
                                group,
                                NodeFailure {
                                    text: format!("WAL enqueue: {error}"),
                                    corruption,
                                },
                            );
                        }
                        Err(failure) => return self.fail_node(id, group, failure),
                    }
                }
                ShardCommand::Replicate { to, envelope } => {
                    self.send(group, id, NodeId(to.node), Envelope::Replication(envelope));
                }
                ShardCommand::Snapshot { chunk, .. } => {
                    // A sender that is itself still fuzzy passes its own horizon on.
                    let sender_fuzzy_until = self.nodes[&id]
                        .fuzzy_until
                        .get(&group)
                        .copied()
                        .unwrap_or(Slot::ZERO);
                    let to = NodeId(chunk.to);
                    let horizon = after.max(sender_fuzzy_until);
                    let queue = self.snapshot_queues.entry((id, to)).or_default();
                    if queue.len() < SNAPSHOT_QUEUE_CHUNKS_MAX {
                        queue.push_back(InFlight {
                            group,
                            from: id,
                            to,
                            envelope: Envelope::Snapshot(chunk, horizon),
                        });
                    } else {
                        // The host asked for room first; a replica that overfills a queue
                        // ignored it, and the production bus would drop the chunk too.
                        self.violation(format!(
                            "{id:?} group {group}: a snapshot chunk beyond the room its tick \
                             reported"
                        ));
                    }
                }
                ShardCommand::Respond { frame, .. }
                    if group == 0
                        && self.options.broken == Some(Broken::GroupZeroRepliesLost)
                        && self.requests.get(&frame.request_id).is_some_and(|pending| {
                            matches!(pending.kind, RequestKind::Write { .. })
                        }) => {}
                ShardCommand::Respond { frame, .. } => {
                    self.on_reply(frame.request_id, frame.response)
                }
            }
        }
    }

    /// Checks the applied state a replica reached (the result of a Scan at `slot`): its digest
    /// against another replica's at the same slot, and every value in it marks its write as
    /// applied by now.
    fn observe_applied(&mut self, id: NodeId, group: usize, slot: Slot, scan: Option<ItemResult>) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.observed_applied.insert(group, slot);
        }
        let state = match scan.as_ref().map(requests::parse_scan_result) {
            Some(Ok(state)) => state,
            Some(Err(error)) => {
                return self.violation(format!("{id:?} group {group}: scan answer: {error}"));
            }
            None => {
                return self.violation(format!("{id:?} group {group}: a scan got no items"));
            }
        };
        self.trace(id, group, &[9, slot.0, state.len() as u64]);
        for value in state.values() {
            if let Some(&operation) = self.operation_by_value.get(value)
                && self.history[operation].operation.took_effect_at.is_none()
            {
                let point = self.next_effect_point();
                self.history[operation].operation.took_effect_at = Some(point);
            }
        }
        let fuzzy = self.nodes[&id]
            .fuzzy_until
            .get(&group)
            .is_some_and(|until| slot < *until);
        if !fuzzy {
            self.record_digest(group, id, slot, requests::digest(&state));
        }
    }

    /// Compares the digest of `node`'s applied state at `slot` with the one another replica of
    /// the group had there.
    fn record_digest(&mut self, group: usize, node: NodeId, slot: Slot, digest: u64) {
        match self.groups[group].digests.get(&slot).copied() {
            Some((first, first_node)) if first != digest => self.violation(format!(
                "group {group}: applied states differ at {slot:?}: {first_node:?} has digest \
                 {first:016x}, {node:?} has {digest:016x}"
            )),
            Some(_) => self.report.applied_states_compared += 1,
            None => {
                self.groups[group].digests.insert(slot, (digest, node));
            }
        }
    }

    fn on_reply(&mut self, reply_to: u64, response: NodeResponse) {
        if reply_to == SCAN_REPLY_TO {
            return;
        }
        let Some(request) = self.requests.remove(&reply_to) else {
            // The client gave up on it.
            return;
        };
        let PendingRequest {
            client,
            group,
            node,
            kind,
        } = request;
        match kind {
            RequestKind::Write { operation } => {
                self.clients[client].state = ClientState::Idle {
                    next_at_nanos: self.now_nanos,
                };
                self.write_answered(client, group, node, operation, response);
            }
            RequestKind::StrongRead { key } => match response {
                NodeResponse::Item { result, .. } => {
                    let observed = match requests::parse_get_result(&result) {
                        Ok(observed) => observed,
                        Err(error) => return self.violation(format!("GetItem answer: {error}")),
                    };
                    if let Some(value) = observed {
                        self.last_seen.insert(key, value);
                    }
                    let point = self.next_effect_point();
                    self.history.push(Recorded {
                        key,
                        operation: Operation {
                            kind: OperationKind::Read { observed },
                            invoked_nanos: self.now_nanos,
                            returned_nanos: Some(self.now_nanos),
                            took_effect_at: Some(point),
                        },
                        refused: false,
                    });
                }
                NodeResponse::Error(NodeError::NotLeader { leader_hint, .. }) => {
                    let hint = leader_hint.map(NodeId).filter(|hint| *hint != node);
                    self.retry_later(client, group, hint);
                }
                other => self.violation(format!(
                    "{node:?} group {group}: unexpected answer to a strong read: {other:?}"
                )),
            },
            RequestKind::EventualRead { key } => match response {
                NodeResponse::Item { result, .. } => {
                    let mut observed = match requests::parse_get_result(&result) {
                        Ok(observed) => observed,
                        Err(error) => return self.violation(format!("GetItem answer: {error}")),
                    };
                    if self.options.broken == Some(Broken::EventualReadsInventValues) {
                        // A value no write in the run writes: values count up from 1.
                        observed = observed.map(|value| value | 1 << 63);
                    }
                    self.eventual_reads.push(EventualRead {
                        group,
                        node,
                        key,
                        observed,
                    });
                }
                other => self.violation(format!(
                    "{node:?} group {group}: unexpected answer to an eventual read: {other:?}"
                )),
            },
        }
    }

    fn write_answered(
        &mut self,
        client: usize,
        group: usize,
        node: NodeId,
        operation: usize,
        response: NodeResponse,
    ) {
        match response {
            NodeResponse::Item { .. } => {
                let recorded = &mut self.history[operation];
                recorded.operation.returned_nanos = Some(self.now_nanos);
                let key = recorded.key;
                let value = match &mut recorded.operation.kind {
                    OperationKind::CompareAndSet { succeeded, new, .. } => {
                        *succeeded = Some(true);
                        self.report.compare_and_sets_succeeded += 1;
                        *new
                    }
                    OperationKind::Write { value } => *value,
                    OperationKind::Read { .. } => return,
                };
                self.last_seen.insert(key, value);
                self.report.writes_acknowledged += 1;
                self.groups[group].acknowledged += 1;
            }
            NodeResponse::Error(NodeError::Dynamo { type_name, .. })
                if type_name == CONDITION_FAILED =>
            {
                let recorded = &mut self.history[operation];
                recorded.operation.returned_nanos = Some(self.now_nanos);
                match &mut recorded.operation.kind {
                    OperationKind::CompareAndSet { succeeded, .. } => *succeeded = Some(false),
                    _ => self.violation(format!(
                        "{node:?} group {group}: a put without a condition failed its condition"
                    )),
                }
                self.report.writes_acknowledged += 1;
            }
            NodeResponse::Error(NodeError::NotLeader { leader_hint, .. }) => {
                self.history[operation].refused = true;
                self.retry_later(client, group, leader_hint.map(NodeId));
            }
            NodeResponse::Error(NodeError::Busy { .. }) => {
                self.history[operation].refused = true;
                self.retry_later(client, group, Some(node));
            }
            // Its slot went to another leader's entry, or a refusal by its condition was
            // withdrawn: the replica says it never takes effect. Recorded as refused, so the
            // checkers hold the replica to it (its value must never be read), and sent again.
            NodeResponse::Error(NodeError::NotApplied { .. }) => {
                self.history[operation].refused = true;
                self.report.writes_not_applied += 1;
                self.retry_later(client, group, Some(node));
            }
            // Leadership moved while the write was in flight: the outcome is unknown to the
            // client, as after a timeout.
            NodeResponse::Error(NodeError::OutcomeUnknown { .. }) => {}
            other => self.violation(format!(
                "{node:?} group {group}: unexpected answer to a write: {other:?}"
            )),
        }
    }

    fn time_out_pending(&mut self, everything: bool) {
        for client in 0..self.clients.len() {
            if let ClientState::Writing {
                operation,
                reply_to,
            } = self.clients[client].state
            {
                let invoked = self.history[operation].operation.invoked_nanos;
                if everything || self.now_nanos >= invoked.saturating_add(OPERATION_TIMEOUT_NANOS) {
                    self.requests.remove(&reply_to);
                    self.clients[client].state = ClientState::Idle {
                        next_at_nanos: self.now_nanos,
                    };
                }
            }
        }
    }

    fn run_clients(&mut self) {
        self.time_out_pending(false);
        let key_count = self.groups.len() as u64 * KEYS_PER_GROUP;
        for client in 0..self.clients.len() {
            let ClientState::Idle { next_at_nanos } = self.clients[client].state else {
                continue;
            };
            if next_at_nanos > self.now_nanos {
                continue;
            }
            let key = self.workload_rng.below(key_count);
            let group = (key % self.groups.len() as u64) as usize;
            let kind = self.workload_rng.below(100);
            if kind < PUT_PERCENT {
                let value = self.take_value();
                self.write(client, group, Command::Put { key, value });
            } else if kind < PUT_PERCENT + COMPARE_AND_SET_PERCENT {
                // Usually expect what clients last learned, so that some succeed under
                // contention; sometimes expect the key to be unwritten or a stale value.
                let expected = match self.workload_rng.below(8) {
                    0 => None,
                    1 => Some(self.workload_rng.below(self.next_value)),
                    _ => self.last_seen.get(&key).copied(),
                };
                let new = self.take_value();
                self.write(client, group, Command::CompareAndSet { key, expected, new });
            } else if kind < PUT_PERCENT + COMPARE_AND_SET_PERCENT + STRONG_READ_PERCENT {
                self.strong_read(client, group, key);
            } else {
                self.eventual_read(client, group, key);
            }
        }
    }

    fn next_effect_point(&mut self) -> EffectPoint {
        self.event_sequence += 1;
        EffectPoint {
            nanos: self.now_nanos,
            sequence: self.event_sequence,
        }
    }

    fn take_value(&mut self) -> u64 {
        let value = self.next_value;
        self.next_value += 1;
        value
    }

    fn take_reply_to(&mut self) -> u64 {
        let reply_to = self.next_reply_to;
        self.next_reply_to += 1;
        reply_to
    }

    fn retry_later(&mut self, client: usize, group: usize, hint: Option<NodeId>) {
        let guess = match hint {
            Some(node) => node,
            None => self.random_member(group),
        };
        self.clients[client].leader_guess[group] = guess;
        self.clients[client].state = ClientState::Idle {
            next_at_nanos: self.now_nanos + CLIENT_RETRY_NANOS,
        };
    }

    /// Sends a request to a replica; its answer comes back through `on_reply`.
    fn request(
        &mut self,
        client: usize,
        group: usize,
        node: NodeId,
        kind: RequestKind,
        request: PreparedRequest,
    ) -> u64 {
        let reply_to = self.take_reply_to();
        self.requests.insert(
            reply_to,
            PendingRequest {
                client,
                group,
                node,
                kind,
            },
        );
        if let RequestKind::Write { operation } = kind {
            self.clients[client].state = ClientState::Writing {
                operation,
                reply_to,
            };
        } else {
            self.clients[client].state = ClientState::Idle {
                next_at_nanos: self.now_nanos + STEP_NANOS,
            };
        }
        // Through the bus's request path: encoded as the router sends it, routed and decoded by
        // the shard's dispatch.
        let frame = RequestFrame {
            request_id: reply_to,
            request: NodeRequest::Item {
                partition: group as u64 + PARTITION_FIRST,
                epoch: EPOCH,
                request: encode_request(&request),
            },
        };
        let now = self.local_time(node);
        let Some(runtime) = self.nodes.get_mut(&node).and_then(|n| n.runtime.as_mut()) else {
            return reply_to;
        };
        for routed in runtime
            .dispatch
            .route(reply_to, BusMessage::Request(frame), now)
        {
            match routed {
                Routed::Replica { event, .. } => self.feed(node, group, event),
                Routed::Respond { frame, .. } => self.on_reply(frame.request_id, frame.response),
                other => self.violation(format!(
                    "{node:?} group {group}: an item request routed as {other:?}"
                )),
            }
        }
        reply_to
    }

    fn write(&mut self, client: usize, group: usize, command: Command) {
        let node = self.clients[client].leader_guess[group];
        if !self.is_up(node) {
            self.retry_later(client, group, None);
            return;
        }
        let kind = match command {
            Command::Put { value, .. } => OperationKind::Write { value },
            Command::CompareAndSet { expected, new, .. } => OperationKind::CompareAndSet {
                expected,
                new,
                succeeded: None,
            },
        };
        self.history.push(Recorded {
            key: command.key(),
            operation: Operation {
                kind,
                invoked_nanos: self.now_nanos,
                returned_nanos: None,
                took_effect_at: None,
            },
            refused: false,
        });
        let operation = self.history.len() - 1;
        self.operation_by_value
            .insert(command.written_value(), operation);
        self.request(
            client,
            group,
            node,
            RequestKind::Write { operation },
            command.request(),
        );
    }

    fn strong_read(&mut self, client: usize, group: usize, key: u64) {
        let broken = self.options.broken == Some(Broken::ReadsWithoutLease);
        // The broken variant reads from any replica without asking for consistency, as an
        // eventually consistent read would, but checks the answer as strong.
        let node = if broken {
            self.random_member(group)
        } else {
            self.clients[client].leader_guess[group]
        };
        self.read(
            client,
            group,
            node,
            RequestKind::StrongRead { key },
            requests::get_request(key, !broken),
        );
    }

    /// Reads any live replica's applied state, with no lease and no leader: the value may be
    /// stale, but it must be one a write that was not refused wrote.
    fn eventual_read(&mut self, client: usize, group: usize, key: u64) {
        let node = self.random_member(group);
        self.read(
            client,
            group,
            node,
            RequestKind::EventualRead { key },
            requests::get_request(key, false),
        );
    }

    /// Sends a GetItem to `node`, which answers a read at once (inside `request`).
    fn read(
        &mut self,
        client: usize,
        group: usize,
        node: NodeId,
        kind: RequestKind,
        request: PreparedRequest,
    ) {
        if !self.is_up(node) {
            self.retry_later(client, group, None);
            return;
        }
        let reply_to = self.request(client, group, node, kind, request);
        // Unless the read stopped its node (corruption found on a faulty disk while reading:
        // counted as such, or a violation of its own), its answer came back already.
        if self.requests.remove(&reply_to).is_some() && self.is_up(node) {
            self.violation(format!("{node:?} group {group}: a read was not answered"));
        }
    }

    fn check_history(&mut self) {
        let keys: BTreeSet<u64> = self.history.iter().map(|recorded| recorded.key).collect();
        for key in keys {
            let operations: Vec<Operation> = self
                .history
                .iter()
                .filter(|recorded| recorded.key == key && !recorded.refused)
                .map(|recorded| recorded.operation.clone())
                .collect();
            for operation in &operations {
                let count = match operation.kind {
                    OperationKind::Write { .. } => &mut self.report.puts_checked,
                    OperationKind::CompareAndSet { .. } => {
                        &mut self.report.compare_and_sets_checked
                    }
                    OperationKind::Read { .. } => &mut self.report.strong_reads_checked,
                };
                *count += 1;
            }
            self.report.operations_checked += operations.len() as u64;
            match linearizability::check(&operations) {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable => {
                    let window = failing_window(&operations);
                    self.violation(format!(
                        "key {key}: history is not linearizable; the shortest failing prefix \
                         (by invocation) ends with {window:?}"
                    ));
                }
                Verdict::Unknown => self.report.keys_unchecked += 1,
            }
        }
    }

    /// An eventual read may be stale, but the value it returns must have been written to that
    /// key by a write the system did not refuse (not a compare-and-set whose condition was
    /// false, not a write a replica turned away before proposing it).
    fn check_eventual_reads(&mut self) {
        let mut violations = Vec::new();
        for read in &self.eventual_reads {
            let Some(value) = read.observed else {
                continue;
            };
            let written = self
                .operation_by_value
                .get(&value)
                .map(|operation| &self.history[*operation])
                .is_some_and(|recorded| {
                    recorded.key == read.key
                        && !recorded.refused
                        && !matches!(
                            recorded.operation.kind,
                            OperationKind::CompareAndSet {
                                succeeded: Some(false),
                                ..
                            }
                        )
                });
            if !written {
                violations.push(format!(
                    "key {}: eventual read from {:?} returned {value}, which no write to it \
                     in group {} produced",
                    read.key, read.node, read.group
                ));
            }
        }
        self.report.eventual_reads_checked = self.eventual_reads.len() as u64;
        self.report.operations_checked += self.eventual_reads.len() as u64;
        for violation in violations {
            self.violation(violation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(seed: u64, seconds: u64) -> SimulationOptions {
        SimulationOptions::new(seed, Duration::from_secs(seconds))
    }

    /// Seeds within which `WalDamageTakenForEndOfLog` must be caught (the variant crashes the
    /// faulty disks' nodes a third into the run; one that storage faults stopped earlier, or
    /// whose newest segment holds one batch, escapes).
    const BROKEN_WAL_SEEDS: u64 = 10;

    fn caught_within(broken: Broken, seeds: u64, needle: &str) -> bool {
        (0..seeds).any(|seed| {
            let report = run(SimulationOptions {
                broken: Some(broken),
                ..options(seed, 10)
            });
            report
                .violations
                .iter()
                .any(|violation| violation.contains(needle))
        })
    }

    #[test]
    fn the_same_seed_gives_the_same_trace_hash() {
        let first = run(options(11, 10));
        let second = run(options(11, 10));
        assert_eq!(first.trace_hash, second.trace_hash);
        assert_eq!(first.operations_checked, second.operations_checked);
        assert_eq!(first.faults, second.faults);
        assert_ne!(first.trace_hash, run(options(12, 10)).trace_hash);
    }

    /// Issue 14: at one simulated minute these seeds stopped a whole node. Seed 144's node 5
    /// had a replica whose accepted but unapplied entries pinned the oldest WAL segment until
    /// the ring was full, and then its own checkpoint intent could not be written ("a future
    /// still waits after 64 polls of the WAL committer"); seed 83 failed the same way before
    /// snapshot chunks were paced by the bus's queue bound. Replay:
    /// `cargo run --release -p shoal-sim -- --seed 144 --seeds 1 --minutes 1`.
    #[test]
    fn seeds_83_and_144_keep_their_wal_rings_recycling_for_a_simulated_minute() {
        for seed in [83, 144] {
            let report = run(options(seed, 60));
            assert!(
                report.violations.is_empty(),
                "seed {seed}: {:?}",
                report.violations
            );
            assert!(report.wal_segments_recycled > 0, "seed {seed}: {report:?}");
        }
    }

    #[test]
    fn a_smoke_of_seeds_finds_no_violation_and_does_real_work() {
        let mut total = Report::default();
        let mut topologies = BTreeSet::new();
        for seed in 0..6 {
            let report = run(options(seed, 10));
            assert!(
                report.violations.is_empty(),
                "seed {seed}: {:?}",
                report.violations
            );
            assert_eq!(report.keys_unchecked, 0, "seed {seed}");
            topologies.insert((report.node_count, report.group_count));
            total.puts_checked += report.puts_checked;
            total.compare_and_sets_checked += report.compare_and_sets_checked;
            total.compare_and_sets_succeeded += report.compare_and_sets_succeeded;
            total.writes_not_applied += report.writes_not_applied;
            total.strong_reads_checked += report.strong_reads_checked;
            total.eventual_reads_checked += report.eventual_reads_checked;
            total.applied_states_compared += report.applied_states_compared;
            for (kind, count) in &report.faults {
                *total.faults.entry(kind).or_default() += count;
            }
        }
        assert!(total.puts_checked > 100, "{total:?}");
        assert!(total.compare_and_sets_checked > 100, "{total:?}");
        assert!(total.compare_and_sets_succeeded > 10, "{total:?}");
        assert!(total.strong_reads_checked > 100, "{total:?}");
        assert!(total.eventual_reads_checked > 100, "{total:?}");
        assert!(total.applied_states_compared > 100, "{total:?}");
        assert!(
            total.faults.get("crash").is_some_and(|count| *count > 0),
            "{total:?}"
        );
        assert!(topologies.len() > 1, "seeds must vary the topology");
        let storage_faults: u64 = total
            .faults
            .iter()
            .filter(|(kind, _)| kind.starts_with("storage: ") && **kind != "storage: faulty disks")
            .map(|(_, count)| count)
            .sum();
        assert!(storage_faults > 0, "{total:?}");
    }

    /// Faulty disks are a minority of every group's replicas, one with 3 nodes, at most two
    /// with 5, and the seed varies which.
    #[test]
    fn faulty_disks_are_a_minority_of_every_group() {
        let mut chosen_sets = BTreeSet::new();
        for seed in 0..200 {
            let mut rng = SeededRng::new(seed);
            let node_count = NODE_COUNTS[(seed % 2) as usize];
            let group_count = GROUP_COUNT_MIN + seed % (GROUP_COUNT_MAX - GROUP_COUNT_MIN + 1);
            let first_node = seed % node_count;
            let groups: Vec<Group> = (0..group_count)
                .map(|group| Group {
                    members: (0..REPLICAS_PER_GROUP as u64)
                        .map(|replica| NodeId(1 + (first_node + group + replica) % node_count))
                        .collect(),
                    digests: BTreeMap::new(),
                    acknowledged: 0,
                    healthy_majority_since: None,
                })
                .collect();
            let faulty = faulty_disks(&mut rng, node_count, &groups);
            assert!(
                !faulty.is_empty() && faulty.len() <= FAULTY_DISKS_MAX,
                "seed {seed}"
            );
            if node_count == 3 {
                assert_eq!(faulty.len(), 1, "seed {seed}");
            }
            for group in &groups {
                let count = group.members.iter().filter(|m| faulty.contains(*m)).count();
                assert!(
                    count <= FAULTY_REPLICAS_PER_GROUP_MAX,
                    "seed {seed}: {faulty:?}"
                );
            }
            chosen_sets.insert(faulty);
        }
        assert!(chosen_sets.len() > 5);
    }

    /// Seed 0 (12 s) once failed every key: the leader refused a conditional put against a
    /// put it had proposed but not applied, and a strong read right after returned the value
    /// the condition had expected (fixed in shoal-partition: such refusals wait for the slot
    /// they saw, invariant 5; named test there too).
    #[test]
    fn seed_0_a_refusal_against_an_unapplied_write_waits_for_it() {
        let report = run(options(0, 12));
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert!(report.compare_and_sets_checked > 100, "{report:?}");
    }

    /// Seed 53 (12 s; and 10 of the first 300 seeds of a one-minute soak) once broke
    /// linearizability: a new leader evaluated a compare-and-set against its applied state
    /// while its log still held an earlier leader's write, recovered in phase 1 and not yet
    /// committed, so the condition saw a value the log had already replaced (fixed in
    /// shoal-partition: writes wait for `leader_ready`).
    #[test]
    fn seed_53_a_new_leader_evaluates_conditions_only_once_ready() {
        let report = run(options(53, 12));
        assert!(report.violations.is_empty(), "{:?}", report.violations);
    }

    /// Seed 100 (42 s) was a false alarm of the applied-state check: a replica still fuzzy
    /// from an installed snapshot streamed one on, and the receiver was compared before it had
    /// replayed past the first sender's horizon (fixed in the simulator: horizons propagate).
    #[test]
    fn seed_100_a_snapshot_from_a_fuzzy_sender_is_compared_only_past_its_horizon() {
        let report = run(options(100, 42));
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert!(
            report
                .faults
                .get("snapshot installed")
                .is_some_and(|count| *count > 10),
            "{report:?}"
        );
    }

    #[test]
    fn reads_without_a_lease_are_caught_within_a_few_seeds() {
        assert!(
            caught_within(Broken::ReadsWithoutLease, 10, "not linearizable"),
            "the linearizability checker must catch stale strong reads"
        );
    }

    #[test]
    fn writes_altered_on_one_replica_are_caught_by_the_applied_state_comparison() {
        assert!(
            caught_within(
                Broken::AcceptedWritesAlteredOnOneReplica,
                5,
                "applied states differ"
            ),
            "the applied-state comparison must catch diverging replicas"
        );
    }

    /// The checkers catch a WAL recovery that takes mid-log damage for the end of the log: the
    /// faulty disk's replica comes back without promises or entries it acknowledged.
    #[test]
    fn wal_damage_taken_for_the_end_of_the_log_is_caught() {
        assert!(
            caught_within(
                Broken::WalDamageTakenForEndOfLog,
                BROKEN_WAL_SEEDS,
                "acceptor forgot"
            ),
            "the acceptor-memory check must catch a replica that lost acknowledged records"
        );
    }

    /// A group that keeps a healthy majority and acknowledges nothing is caught while the
    /// faults are still on, not only after the heal.
    #[test]
    fn a_healthy_majority_that_acknowledges_nothing_is_caught() {
        let report = run(SimulationOptions {
            broken: Some(Broken::GroupZeroRepliesLost),
            ..options(1, 40)
        });
        assert!(
            report
                .violations
                .iter()
                .any(|violation| violation.starts_with("liveness: group 0 kept a healthy majority")),
            "{:?}",
            report.violations
        );
    }

    #[test]
    fn an_eventual_read_of_a_value_never_written_is_caught() {
        assert!(
            caught_within(Broken::EventualReadsInventValues, 3, "no write to it"),
            "the eventual-read check must catch invented values"
        );
    }
}
