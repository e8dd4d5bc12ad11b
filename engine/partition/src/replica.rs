//! One partition replica on its shard: the sans-IO MultiPaxos core, the shard's WAL and the
//! partition's B-tree, driven by events.
//!
//! The host (a shard's executor, a test) owns one [`PartitionReplica`] per partition replica and
//! feeds it [`Event`]s one at a time, in one task; it executes the [`Output`]s it gets back:
//! `Persist` through the shard WAL's group commit (then feeds `Event::Persisted` back), `Send`
//! and `Snapshot` through the bus, `Reply` to the request's connection. The replica awaits only
//! B-tree I/O and, rarely, a WAL append of its own (checkpoint intents, snapshot installs).
//!
//! # Log slots, WAL positions and checkpoints
//! The B-tree applies committed entries at their log slot (`Lsn(slot)` in shoal-store's terms),
//! so its checkpoint says "every slot up to C is in the tree". The WAL numbers records by its
//! own LSN. Before each tree checkpoint the replica appends a *checkpoint intent* (slot C, the
//! committed membership at C, the promised ballot) and only then checkpoints; it tells the WAL it
//! may recycle everything below the oldest record it still needs: the latest intent and, for
//! every slot above C, the record holding the entry the slot has now. Recovery
//! ([`PartitionReplica::recover`]) rebuilds the core's durable state from exactly those records,
//! by the rules of FORMAT.md: the records left need not be in slot order (an older write of a
//! low slot may be gone while an older write of a higher slot remains), so the entry of each
//! slot is chosen over all its records (highest ballot, then the later record), never by
//! replaying them in WAL order.
//!
//! # Invariants
//! 1. Applied slot == the core's commit slot after every event: `Apply` actions are executed
//!    before the event returns, so strong reads and leader evaluation see every commit.
//! 2. The leader evaluates a write against the applied state overlaid with its own proposals
//!    that are not applied yet (`overlay`), one request at a time, in the order it proposes,
//!    and only once it has committed an entry of its own ballot (`leader_ready`): before that,
//!    its log may hold recovered entries of earlier leaders that no overlay shows.
//! 3. A write is answered success only when the slot it was proposed in is applied with the
//!    very payload it proposed; any other outcome at that slot means it never took effect.
//! 4. A tree checkpoint at slot C is preceded by a durable intent record for C.
//! 5. A write refused by its condition proposes nothing, so its refusal is a read: it is
//!    answered only under the leader's lease, and when the condition was evaluated against an
//!    overlay entry, only once that entry's slot is applied with the payload proposed (else the
//!    refusal could describe a state that never existed, or one a strong read has not seen yet).
//! 6. A write takes effect only on the history it was evaluated against. Its batch carries the
//!    applied chain its leader expected before its slot (the chain record put,
//!    `chain_requirement`); every replica applies a batch whose expectation differs from its
//!    own chain as a no-op, and advances the chain either way. Without it, a leader that lost
//!    its earlier proposals to a later leader's entries (a no-op, another write) could still
//!    have a later proposal chosen, evaluated against its lost ones: simulator seed 1039 left
//!    a local index with a stale entry that way. The chain is kept in the tree (checkpointed,
//!    replayed, and sent exact at the snapshot's slot), so every replica decides alike.

mod durability;
mod global_index;
mod membership;
mod serve;
mod split;
mod stream;
mod sweep;
mod transaction;

pub use split::{SPLIT_BLOCKED, SPLIT_DIFFERS, split_is_valid};
pub use stream::StreamMaintenance;
pub use transaction::RECENT_CHANGES_MAX;

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::rc::Rc;

use shoal_io::{Storage, StorageDirectory};
use shoal_model::encoding::{decode_item, encode_item};
use shoal_model::expression::evaluate::check_condition;
use shoal_model::expression::projection::project;
use shoal_model::expression::update::{
    apply_update, creates_missing_item, returned_attributes, updated_paths,
};
use shoal_model::index::ChainedEntry;
use shoal_model::value::{
    ITEM_BYTES_MAX, item_size_bytes, read_capacity_units, write_capacity_units,
};
use shoal_model::{Error as ModelError, Item};
use shoal_replication::{
    Action, Ballot, LogEntry, Lsn as CoreLsn, Membership, Message, MonotonicTime, NodeId, Payload,
    ProposeError, RecoveredState, Replica, ReplicaOptions, RoleKind, Slot, SnapshotMeta,
};
use shoal_store::btree::{BTreeConfig, Direction, PageCache};
use shoal_store::engine::{EngineError, Mutation, MutationBatch, Partition};
use shoal_store::wal::{Lsn as WalLsn, PartitionId, RecordKind, Wal, WalError};
use shoal_wire::messages::{
    CheckpointIntent, CollectionSize, IndexWriteUnits, ItemResult, LocalIndexStatus, NodeError,
    NodeResponse, PersistRecord, ReplicaRole, ReplicaStatus, SnapshotChunk,
};

use crate::meta::PartitionMeta;
use shoal_model::request::{GetRequest, PreparedRequest, RangeRequest, WriteKind, WriteRequest};
use shoal_wire::messages::{BallotWire, MembershipWire};
use shoal_wire::persist::{decode_persist_record, encode_persist_record};

/// The WAL record kind of a replication group's [`PersistRecord`] (kind 1 is shoal-store's
/// plain mutation batch, unused by replicated partitions).
pub const REPLICATION_RECORD_KIND: RecordKind = match RecordKind::new(2) {
    Some(kind) => kind,
    None => panic!("record kind 2 is valid"),
};

/// The WAL record kind that opens a replica's records on its shard: appended, and durable, before
/// the replica's meta file is written. A partition can come back to a shard that hosted it
/// before (a replica moved away and back, issue 19); the earlier replica's records may still be
/// in the WAL, and replaying them into the new one would hand it promises and log entries it
/// never made. The replay drops every record of the partition before its newest creation
/// record (`ShardReplay::visit`). The body is the partition id, 8 bytes little-endian
/// (FORMAT.md, "WAL records of kind 3").
pub const REPLICA_CREATED_RECORD_KIND: RecordKind = match RecordKind::new(3) {
    Some(kind) => kind,
    None => panic!("record kind 3 is valid"),
};

/// The answer to a write refused by a condition evaluated against an overlay entry that was not
/// applied as proposed, or not under the lease (invariant 5): the write itself proposed nothing,
/// so it is sent as `NotApplied`.
pub const CONDITION_ON_UNAPPLIED_WRITE: &str = "the condition was evaluated against a write that \
    did not take effect as proposed, or leadership changed; this request was not applied, retry it";

/// The answer to a write whose log slot was applied with another leader's entry (invariant 3):
/// `NotApplied`.
pub const WRITE_LOST_ITS_SLOT: &str =
    "the write lost its log slot to another leader's entry and was not applied";

/// The answer to a write proposed but not applied when this replica stopped leading: another
/// leader may still commit it, so it is sent as `OutcomeUnknown`.
pub const LEADERSHIP_LOST_WITH_WRITE_IN_FLIGHT: &str =
    "leadership changed while the write was in flight; it may or may not have been applied";

/// Items per snapshot chunk: bounded so a chunk of 400 KB items stays far below the frame limit
/// only when items are small; the byte bound below decides for large ones.
pub const SNAPSHOT_CHUNK_ITEMS_MAX: usize = 256;
/// Bytes of items per snapshot chunk (the last item may cross it).
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 1024 * 1024;
/// Snapshot chunks produced per tick, so one transfer cannot monopolise the shard.
pub const SNAPSHOT_CHUNKS_PER_TICK_MAX: usize = 4;
/// A transfer that handed no chunk to the transport for this long gives way to a transfer to
/// another follower (its own follower is down or its link full); one that moves is never
/// replaced.
pub const SNAPSHOT_PREEMPT_STALL_MIN: std::time::Duration = std::time::Duration::from_secs(1);
/// A transfer whose follower took no chunk for this long is abandoned: the follower is down or
/// cut off, and when it returns it needs a snapshot of the state then, not of the state when
/// this one began. The core asks for a new transfer after its snapshot retry interval.
pub const SNAPSHOT_TRANSFER_STALL_MAX: std::time::Duration = std::time::Duration::from_secs(10);
/// Items read per B-tree scan call while serving a Query or Scan page.
const RANGE_SCAN_BATCH_ITEMS: usize = 128;

/// Tuning of a replica. The core's options, minus the seed, plus when to checkpoint.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub core: ReplicaOptions,
    /// Checkpoint the B-tree once this many slots were applied since the last checkpoint. The
    /// core keeps the un-checkpointed log in memory, bounded by its own limits, so this must
    /// stay well below `shoal_replication::limits::LOG_ENTRIES_IN_MEMORY_MAX`.
    pub checkpoint_every_slots: u64,
    /// The partition trees' limits. `value_bytes_max` must hold the binary encoding of any
    /// item DynamoDB accepts (400 KB by DynamoDB's size rules, which count less than the
    /// encoding's per-attribute lengths and tags): use [`ITEM_TREE_CONFIG`].
    pub btree: BTreeConfig,
    /// The largest item collection (the items of one partition key and their local index
    /// entries) a table with local secondary indexes may grow to:
    /// [`shoal_model::index::ITEM_COLLECTION_BYTES_MAX`], lowered by tests.
    pub item_collection_bytes_max: u64,
}

/// The tree limits a partition replica needs: values up to shoal-store's largest, since a
/// 400 KB item (by DynamoDB's count) encodes to more than 400 KiB when it has many attributes.
pub const ITEM_TREE_CONFIG: BTreeConfig = BTreeConfig {
    value_bytes_max: shoal_store::btree::VALUE_BYTES_LIMIT,
};

/// Checkpoints must come often enough that the core's in-memory log never fills.
pub const CHECKPOINT_EVERY_SLOTS_MAX: u64 =
    shoal_replication::limits::LOG_ENTRIES_IN_MEMORY_MAX as u64 / 2;

// Requests are the common event, each moved once into its replica's queue: boxing them would
// add an allocation per request to save queue memory on rarer, smaller events.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    Message {
        from: NodeId,
        message: Message,
    },
    /// Time passed: run the core's timers, checkpoint if due, continue snapshot transfers.
    Tick {
        /// How many snapshot chunks the host's transport takes now toward
        /// [`PartitionReplica::snapshot_destination`] (0 when there is none). The replica
        /// produces at most this many, so a follower that is down or slow holds back only its
        /// own transfer and never the host's task.
        snapshot_room: usize,
    },
    Request {
        /// The host's token for the reply (a connection and request id).
        reply_to: u64,
        epoch: u64,
        /// The host's wall clock (unix milliseconds) when it received the request: the
        /// creation time of the stream records a write adds.
        unix_ms: u64,
        /// The request, prepared (parsed and validated) by the router.
        request: PreparedRequest,
    },
    /// The WAL made the `Persist` output with this core lsn durable at `wal_lsn`.
    Persisted {
        core_lsn: CoreLsn,
        wal_lsn: WalLsn,
    },
    Snapshot(SnapshotChunk),
    /// Run one step of the Time to Live sweeper if this replica is the leader (src/replica/
    /// sweep.rs): `target` is the table's TTL attribute and local indexes, `now_unix_seconds` the host's wall
    /// clock, and a pass over the partition starts at most once per `pass_period`. The host
    /// sends it only for partitions of tables with TTL enabled, spaced out by its step interval.
    SweepExpired {
        target: crate::time_to_live::SweepTarget,
        now_unix_seconds: u64,
        pass_period: std::time::Duration,
    },
    /// Run one step of the stream maintenance if this replica is the leader (src/replica/
    /// stream.rs): shard rollover and trim. The host sends it to every replica it leads,
    /// about once a second; a partition without stream keys does nothing.
    StreamMaintain(StreamMaintenance),
    /// The host heard nothing from `node` for its liveness timeout: a follower quiesced under a
    /// leader there wakes and may campaign (`Replica::peer_unreachable`).
    PeerUnreachable(NodeId),
    /// The host hears from `node` again: a quiesced leader with a replica there wakes, so that
    /// replica learns of it (`Replica::peer_reachable`).
    PeerReachable(NodeId),
    /// From a control plane, to the leader: change the replica set by one member
    /// (src/replica/membership.rs).
    ChangeMembership {
        reply_to: u64,
        epoch: u64,
        change: shoal_replication::MembershipChange,
    },
    /// `NodeRequest::SplitPartition`, to the leader: split the partition (src/replica/
    /// split.rs).
    Split {
        reply_to: u64,
        epoch: u64,
        split: shoal_model::split::SplitRecord,
    },
    /// `NodeRequest::TransferLeadership`: hand leadership over to `to`.
    TransferLeadership {
        reply_to: u64,
        epoch: u64,
        to: NodeId,
    },
    /// The host is about to stop this replica (its partition is being deleted here); the
    /// replica does nothing with it. It travels in the same queue so that it comes after every
    /// event queued before it.
    Stop,
}

#[derive(Debug, PartialEq)]
pub enum Output {
    Send {
        to: NodeId,
        message: Message,
    },
    /// Append `body` to the shard WAL (kind [`REPLICATION_RECORD_KIND`]), then feed back
    /// `Event::Persisted`. Outputs of one replica must be appended in the order given. A large
    /// `Persist` of the core comes as several outputs with the same `core_lsn`, each one record
    /// to append and report.
    Persist {
        core_lsn: CoreLsn,
        body: Vec<u8>,
    },
    Reply {
        reply_to: u64,
        response: NodeResponse,
    },
    Snapshot(SnapshotChunk),
}

#[derive(Debug)]
pub enum PartitionError {
    Engine(EngineError),
    Wal(WalError),
    Storage(shoal_io::StorageError),
    /// The durable state of the partition contradicts itself.
    Corrupt(String),
}

impl std::fmt::Display for PartitionError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartitionError::Engine(error) => write!(formatter, "{error}"),
            PartitionError::Wal(error) => write!(formatter, "{error}"),
            PartitionError::Storage(error) => write!(formatter, "{error}"),
            PartitionError::Corrupt(reason) => write!(formatter, "{reason}"),
        }
    }
}

impl std::error::Error for PartitionError {}

impl From<EngineError> for PartitionError {
    fn from(error: EngineError) -> Self {
        PartitionError::Engine(error)
    }
}

impl From<WalError> for PartitionError {
    fn from(error: WalError) -> Self {
        PartitionError::Wal(error)
    }
}

impl From<shoal_io::StorageError> for PartitionError {
    fn from(error: shoal_io::StorageError) -> Self {
        PartitionError::Storage(error)
    }
}

/// A `Persist` of a whole Accept batch (up to 64 entries of up to 404 KB) is split into WAL
/// records of about this fraction of the WAL's record limit, so each record fits it with room
/// for the archive's own overhead.
const PERSIST_RECORD_FRACTION_OF_LIMIT: usize = 2;
// With the WAL's default record limit, the largest single entry fits a record of its own.
const _: () = assert!(
    shoal_store::wal::DEFAULT_RECORD_BODY_BYTES_MAX / PERSIST_RECORD_FRACTION_OF_LIMIT
        >= shoal_replication::limits::COMMAND_BYTES_MAX + PERSIST_ENTRY_OVERHEAD_BYTES
);
/// A conservative estimate of an entry's archived size beyond its payload.
const PERSIST_ENTRY_OVERHEAD_BYTES: usize = 128;

/// One `Persist` of the core on its way to the WAL, possibly as several records.
struct Persisting {
    slots: Vec<Slot>,
    records_outstanding: usize,
    wal_lsn_first: Option<WalLsn>,
}

/// Splits a `Persist` into WAL records of at most about `record_bytes_target` bytes of entries
/// each (a single larger entry gets a record of its own). The promise travels in the first
/// record; recovery reads records in WAL order, in which they were enqueued.
fn split_persist(
    group: u64,
    promised: Option<Ballot>,
    entries: Vec<(Slot, LogEntry)>,
    record_bytes_target: usize,
) -> Vec<PersistRecord> {
    let mut records = Vec::new();
    let mut promised = promised;
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0usize;
    for (slot, entry) in entries {
        let bytes = entry.payload.size_bytes() + PERSIST_ENTRY_OVERHEAD_BYTES;
        if !chunk.is_empty() && chunk_bytes + bytes > record_bytes_target {
            records.push(PersistRecord::from_persist_action(
                group,
                promised.take(),
                std::mem::take(&mut chunk),
            ));
            chunk_bytes = 0;
        }
        chunk_bytes += bytes;
        chunk.push((slot, entry));
    }
    if !chunk.is_empty() || records.is_empty() {
        records.push(PersistRecord::from_persist_action(group, promised, chunk));
    }
    records
}

/// The least time between two checkpoints a replica takes because the WAL needs the segment
/// its records are in (`checkpoint_if_due`).
const WAL_PRESSURE_CHECKPOINT_INTERVAL_NANOS: u64 = 50_000_000;

/// How long replies may wait on one slot before a replica logs the stall.
const STALL_REPORT_INTERVAL_NANOS: u64 = 1_000_000_000;
/// The longest a quiet replica goes without a tick ([`PartitionReplica::tick_due`]): the most
/// its time-driven duties (a checkpoint by slot count, noticing a lost quorum) wait beyond
/// their own timers. Idle partitions cost their host a tick every this long instead of every
/// host tick (issue 19: 1,000 idle partitions took about a quarter of a core per node).
pub const QUIET_TICK_INTERVAL_MAX: std::time::Duration = std::time::Duration::from_millis(100);
/// Reads that need the lease held at a leader while a heartbeat round renews it after
/// quiescence (`lease_waiters`); beyond this many a read is refused NotLeader at once.
const LEASE_WAITERS_MAX: usize = 256;

/// A request held until the leader's lease is back (it arrived while the group was quiesced).
struct LeaseWaiter {
    reply_to: u64,
    epoch: u64,
    unix_ms: u64,
    request: PreparedRequest,
    since: MonotonicTime,
}

/// A write the leader proposed, waiting for its slot to be applied (invariant 3).
struct Waiter {
    /// `None` for the sweeper's deletes, which no client waits for.
    reply_to: Option<u64>,
    payload: Vec<u8>,
    response: NodeResponse,
}

struct OutgoingSnapshot {
    to: NodeId,
    transfer_id: u64,
    last_included_slot: Slot,
    membership: MembershipWire,
    /// The membership record's slot at `last_included_slot`, sent in place of what the live
    /// tree holds when the stream reaches the record (as the applied chain is).
    config_slot: Slot,
    /// The applied chain at `last_included_slot`. The stream reads the live tree, which may
    /// have applied later slots by the time it reaches the chain record (the tree's last key):
    /// the record is sent with this value instead, so the follower's chain is exact at the
    /// slot it resumes from (invariant 6).
    applied_chain: Option<u64>,
    next_chunk: u32,
    /// The last key sent; `None` before the first chunk.
    after: Option<Vec<u8>>,
    /// When the transfer started or last handed a chunk to the transport.
    progressed_at: MonotonicTime,
}

struct IncomingSnapshot<F: Storage> {
    from: u64,
    transfer_id: u64,
    /// The slot the transfer's first chunk named: every chunk of one transfer names it. A
    /// sender that restarted numbers its transfers from the start again, so a chunk with this
    /// sender and id but another slot is of a later transfer (simulator seed 8010 with
    /// `--global-index true --time-to-live true`: its chunks were installed into the earlier
    /// transfer's tree, which then claimed a slot it did not hold).
    last_included_slot: u64,
    next_chunk: u32,
    generation: u32,
    tree: Partition<F>,
    /// When the transfer started or last installed a chunk.
    progressed_at: MonotonicTime,
}

/// The name of generation `generation` of a partition's B-tree file. A replica installing a
/// snapshot writes the next generation beside the current one and removes the old one only
/// once the new one is durable.
pub fn tree_file_name(partition: u64, generation: u32) -> String {
    format!("partition-{partition:016x}-g{generation:08x}.btree")
}

/// Parses [`tree_file_name`].
pub fn parse_tree_file_name(name: &str) -> Option<(u64, u32)> {
    let rest = name.strip_prefix("partition-")?.strip_suffix(".btree")?;
    let (partition, generation) = rest.split_once("-g")?;
    if partition.len() != 16 || generation.len() != 8 {
        return None;
    }
    Some((
        u64::from_str_radix(partition, 16).ok()?,
        u32::from_str_radix(generation, 16).ok()?,
    ))
}

/// The page-cache id of a tree generation: unique per shard while partition ids stay below
/// 2^48 (metadata assigns them densely from 1).
fn tree_id(partition: u64, generation: u32) -> u64 {
    (partition << 16) | u64::from(generation & 0xFFFF)
}

pub struct PartitionReplica<F: Storage, D: StorageDirectory<File = F>> {
    meta: PartitionMeta,
    node: NodeId,
    config: ReplicaConfig,
    core: Replica,
    engine: Partition<F>,
    generation: u32,
    directory: Rc<D>,
    cache: Rc<PageCache<F>>,
    wal: Wal<F>,
    /// The keys of the local-index region of the tree (entries and item-collection records),
    /// which the tree counts as items: counted at the first event after the tree is opened,
    /// kept up to date by `apply`, left out of the status's item count and bytes.
    index_region: Option<crate::local_index::RegionStats>,
    /// The applied chain at `applied_slot` (shoal_model::index::chain_step): read from the
    /// tree's chain record when first needed after the tree is opened or replaced, then
    /// advanced by every applied slot.
    applied_chain: Option<u64>,
    /// Slots of each `Persist` output not yet reported durable, by core lsn.
    persisting: BTreeMap<u64, Persisting>,
    /// Core lsns reported durable out of order, waiting for the ones before them.
    persisted_early: BTreeMap<u64, WalLsn>,
    durable_core_lsn: u64,
    /// For each slot above the checkpoint, the WAL record holding the entry the core has for
    /// it (for a `Persist` split into several records, the first of them, which is no later):
    /// the newest durable write of the slot, or after recovery the record of the entry recovery
    /// kept. Both name the same write, since the core only overwrites a slot with an equal or
    /// higher ballot.
    slot_wal_lsn: BTreeMap<Slot, WalLsn>,
    intent_wal_lsn: Option<WalLsn>,
    checkpoint_slot: Slot,
    applied_slot: Slot,
    overlay: BTreeMap<Vec<u8>, (Slot, Option<Item>)>,
    waiting: BTreeMap<Slot, Waiter>,
    /// Membership changes proposed by this leader, by slot (src/replica/membership.rs).
    membership_waiters: BTreeMap<Slot, membership::MembershipWaiter>,
    /// Refusals evaluated against the overlay entry at a slot, answered once it is applied
    /// (invariant 5): reply token and response.
    deferred: BTreeMap<Slot, Vec<(u64, NodeResponse)>>,
    /// A membership entry that keeps this replica a member was applied since the last
    /// checkpoint: the next tick checkpoints, so that the committed membership is durable at
    /// once and a restart does not bring back the one before (a candidate would need a
    /// majority of that one, and a control plane may have deleted a replica it counts;
    /// replication README, "Membership change").
    membership_applied: bool,
    /// When the last checkpoint the WAL asked for (not the slot schedule) ran.
    last_wal_pressure_checkpoint: Option<MonotonicTime>,
    /// The oldest slot replies wait on, and since when (for `report_stalled_replies`).
    stall_since: Option<(Slot, MonotonicTime)>,
    /// The membership governing the slot after `applied_slot`: what a checkpoint intent and an
    /// outgoing snapshot at `applied_slot` must carry. The core's committed membership belongs
    /// to its commit slot, which may be ahead; a replica started from a snapshot with a later
    /// membership than its slot would judge the membership steps it then applies differently
    /// from the others (`Payload::MembershipStep`).
    applied_membership: Membership,
    /// The slot of the membership entry that set `applied_membership` (0: the initial one),
    /// kept in the tree as the membership record (engine/model FORMAT.md).
    applied_config_slot: Slot,
    outgoing_snapshot: Option<OutgoingSnapshot>,
    /// Followers whose transfer was refused while another moved, and when they last asked;
    /// and the follower the last transfer went to (durability.rs, fairness).
    snapshot_waiting: BTreeMap<NodeId, MonotonicTime>,
    snapshot_last_to: Option<NodeId>,
    incoming_snapshot: Option<IncomingSnapshot<F>>,
    next_transfer_id: u64,
    outputs: Vec<Output>,
    /// When the last tick came: a quiet replica's next one is due at most
    /// [`QUIET_TICK_INTERVAL_MAX`] later.
    last_tick: MonotonicTime,
    /// Requests held while a woken leader renews its lease (`hold_for_lease`).
    lease_waiters: Vec<LeaseWaiter>,
    /// Set by `check_read` when it refused for want of a lease at a quiesced leader: `handle`
    /// then wakes the core, so that the client's next try finds the lease renewed.
    lease_wanted: std::cell::Cell<bool>,
    /// The Time to Live sweeper's progress (src/replica/sweep.rs).
    sweep: sweep::SweepState,
    /// The stream configuration writes follow (src/replica/stream.rs).
    stream: stream::StreamState,
    /// What this replica served lately, for the autoadmin's split for traffic; shared with
    /// the host, which reports it without waiting for the replica's task.
    traffic: Rc<std::cell::RefCell<crate::traffic::TrafficTracker>>,
    /// The chain through the last entry of this leader's log when it last proposed, and the
    /// ballot it led under, so that each proposal hashes only the entries after it (issue 15:
    /// without it every proposal re-hashed every entry in flight). Valid while the ballot is
    /// the same: under one ballot a leader's log after its applied slot only grows by its own
    /// proposals.
    chain_tip: Option<(Ballot, Slot, u64)>,
    /// Applied locks and recent changes (src/replica/transaction.rs).
    transactions: transaction::TransactionState,
    /// The split record of the tree (src/replica/split.rs): `None` until read after the tree
    /// is opened or replaced, then the record, if a split was applied.
    split: Option<Option<shoal_model::split::SplitRecord>>,
    /// The slot of the split this leader proposed, while it may be in flight.
    split_proposed: Option<Slot>,
    /// The hashes this replica's partition owns, from the tree's range record (a split child):
    /// `None` until read with the split record, then `None` inside for a partition never split.
    hash_range: Option<Option<(u64, u64)>>,
}

/// What recovery found for one partition in the shard's WAL.
#[derive(Default)]
pub struct RecoveredRecords {
    /// In WAL order.
    records: Vec<(WalLsn, PersistRecord)>,
}

impl RecoveredRecords {
    /// The records found, in WAL order (for inspection and tests).
    pub fn records(&self) -> &[(WalLsn, PersistRecord)] {
        &self.records
    }
}

/// What a partition's durable records say, decided by the recovery rules of FORMAT.md.
struct DurableState {
    promised: Ballot,
    /// The committed membership at the tree's checkpoint; `None` when the intent for a
    /// checkpoint above slot 0 is missing.
    snapshot_membership: Option<Membership>,
    intent_wal_lsn: Option<WalLsn>,
    /// For each slot above the checkpoint, the entry recovery keeps and the record that holds
    /// it: the record the WAL must keep for the slot until a newer write of it is durable.
    kept: BTreeMap<Slot, (WalLsn, LogEntry)>,
}

/// The core rebuilt from a partition's records, with the WAL positions its low water needs.
struct RecoveredCore {
    core: Replica,
    /// The record holding each slot's kept entry.
    slot_wal_lsn: BTreeMap<Slot, WalLsn>,
    /// The intent of the tree's checkpoint.
    intent_wal_lsn: Option<WalLsn>,
}

/// The membership record of `engine`'s tree (engine/model FORMAT.md): slot 0 when absent.
pub(crate) async fn read_config_slot<F: Storage>(
    engine: &Partition<F>,
    partition: u64,
) -> Result<Slot, PartitionError> {
    match engine
        .get(&shoal_model::index::membership_config_key())
        .await?
    {
        None => Ok(Slot::ZERO),
        Some(bytes) => {
            let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                PartitionError::Corrupt(format!(
                    "partition {partition}: the membership record holds {} bytes, not 8",
                    bytes.len()
                ))
            })?;
            Ok(Slot(u64::from_le_bytes(bytes)))
        }
    }
}

fn recover_core(
    meta: &PartitionMeta,
    node: NodeId,
    options: ReplicaOptions,
    records: &[(WalLsn, PersistRecord)],
    (checkpoint_slot, config_slot): (Slot, Slot),
    now: MonotonicTime,
) -> Result<RecoveredCore, PartitionError> {
    let partition = meta.partition;
    let DurableState {
        promised,
        snapshot_membership,
        intent_wal_lsn,
        kept,
    } = read_durable_state(partition, records, checkpoint_slot, &meta.membership)?;
    let Some(membership) = snapshot_membership else {
        return Err(PartitionError::Corrupt(format!(
            "partition {partition}: the tree is checkpointed at slot {} but the WAL holds no \
             checkpoint intent for that slot",
            checkpoint_slot.0
        )));
    };
    let slot_wal_lsn: BTreeMap<Slot, WalLsn> = kept
        .iter()
        .map(|(slot, (wal_lsn, _))| (*slot, *wal_lsn))
        .collect();
    let entries = kept
        .into_iter()
        .map(|(slot, (_, entry))| (slot, entry))
        .collect();
    let core = Replica::recover(
        node,
        options,
        RecoveredState {
            promised,
            snapshot: SnapshotMeta {
                last_included_slot: checkpoint_slot,
                membership,
                config_slot,
            },
            entries,
        },
        now,
    )
    .map_err(|error| {
        PartitionError::Corrupt(format!(
            "partition {partition}: recovery refused: {error:?}"
        ))
    })?;
    Ok(RecoveredCore {
        core,
        slot_wal_lsn,
        intent_wal_lsn,
    })
}

/// Applies recovery rules 1 to 3 of FORMAT.md to a partition's records (in WAL order). The
/// entry of a slot is chosen over all of its records, not replayed in WAL order: recycling
/// (rule 4) can leave a record of a high slot before the only remaining records of lower ones,
/// and the core checks that the kept slots are contiguous.
fn read_durable_state(
    partition: u64,
    records: &[(WalLsn, PersistRecord)],
    checkpoint_slot: Slot,
    meta_membership: &Membership,
) -> Result<DurableState, PartitionError> {
    let mut promised = Ballot::ZERO;
    let mut snapshot_membership = (checkpoint_slot == Slot::ZERO).then(|| meta_membership.clone());
    let mut intent_wal_lsn = None;
    let mut kept: BTreeMap<Slot, (WalLsn, LogEntry)> = BTreeMap::new();
    for (wal_lsn, record) in records {
        if let Some(ballot) = &record.promised {
            promised = promised.max(Ballot::from(*ballot));
        }
        if let Some(intent) = &record.checkpoint
            && Slot(intent.last_included_slot) == checkpoint_slot
        {
            snapshot_membership =
                Some(Membership::try_from(&intent.membership).map_err(|error| {
                    PartitionError::Corrupt(format!(
                        "partition {partition}: checkpoint intent membership: {error}"
                    ))
                })?);
            intent_wal_lsn = Some(*wal_lsn);
        }
        let (_, record_entries) = record.to_core().map_err(|error| {
            PartitionError::Corrupt(format!(
                "partition {partition}: WAL record at {wal_lsn:?}: {error}"
            ))
        })?;
        for (slot, entry) in record_entries {
            if slot <= checkpoint_slot {
                continue;
            }
            let replaces = kept
                .get(&slot)
                .is_none_or(|(_, current)| entry.replaces_at_recovery(current));
            if replaces {
                kept.insert(slot, (*wal_lsn, entry));
            }
        }
    }
    Ok(DurableState {
        promised,
        snapshot_membership,
        intent_wal_lsn,
        kept,
    })
}

/// Recovery step 2 for a shard: the WAL visitor that keeps every replication record, grouped by
/// partition. Records of partitions that no longer exist are dropped.
#[derive(Default)]
pub struct ShardReplay {
    pub partitions: BTreeMap<u64, RecoveredRecords>,
    /// Every partition with a record of any kind in the WAL: the host releases the records of
    /// those that have no replica here (deleted, or moved away) so that they never keep the
    /// WAL from recycling.
    pub seen: std::collections::BTreeSet<u64>,
    /// Replication records whose body failed to decode although their checksum passed.
    pub undecodable: Vec<(WalLsn, u64)>,
}

impl ShardReplay {
    pub fn visit(&mut self, record: shoal_store::wal::RecoveredRecord<'_>) {
        self.seen.insert(record.partition.0);
        if record.kind == REPLICA_CREATED_RECORD_KIND {
            // What came before belongs to an earlier replica of the partition on this shard.
            self.partitions.remove(&record.partition.0);
            self.undecodable
                .retain(|(_, partition)| *partition != record.partition.0);
            return;
        }
        if record.kind != REPLICATION_RECORD_KIND {
            return;
        }
        match decode_persist_record(record.body) {
            Ok(decoded) if decoded.group == record.partition.0 => self
                .partitions
                .entry(decoded.group)
                .or_default()
                .records
                .push((record.lsn, decoded)),
            _ => self.undecodable.push((record.lsn, record.partition.0)),
        }
    }
}

fn not_leader(partition: u64, leader_hint: Option<NodeId>) -> NodeResponse {
    NodeResponse::Error(NodeError::NotLeader {
        partition,
        leader_hint: leader_hint.map(|node| node.0),
    })
}

fn dynamo_error(error: &ModelError) -> NodeResponse {
    NodeResponse::Error(NodeError::Dynamo {
        type_name: error.exception_name().to_string(),
        message: error.message().to_string(),
        item: None,
    })
}

fn item_response(
    result: ItemResult,
    read_units_milli: u64,
    write_units_milli: u64,
) -> NodeResponse {
    NodeResponse::Item {
        result,
        read_units_milli,
        write_units_milli,
    }
}

fn read_units_milli(bytes: usize, consistent: bool) -> u64 {
    let milli = read_capacity_units(bytes) * 1000;
    if consistent { milli } else { milli / 2 }
}

/// What a leader decided for one write: the mutation to propose and the answer to give once it
/// is applied.
struct Evaluated {
    /// The item's mutation first, then its local index entries' (one batch, one slot).
    mutations: Vec<Mutation>,
    new_item: Option<Item>,
    attributes: Option<Item>,
    write_units: u64,
    /// For a table with local indexes: the item collection's size record key and its new
    /// size (the record is in the batch and goes in the overlay like an item).
    collection: Option<(Vec<u8>, u64)>,
    /// The write units of each local index's entries, by index number.
    index_write_units: Vec<u64>,
    /// The write's GSI entry changes, for the partition's outbox.
    global_changes: Vec<shoal_model::index::global::GlobalIndexChange>,
    /// The write units of each global index's changes, by position in the write's list.
    global_write_units: Vec<u64>,
}

impl<F: Storage, D: StorageDirectory<File = F>> PartitionReplica<F, D> {
    /// Creates a brand-new replica: writes the meta file, an empty tree, and starts the core.
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        meta: PartitionMeta,
        node: NodeId,
        config: ReplicaConfig,
        election_seed: u64,
        directory: Rc<D>,
        cache: Rc<PageCache<F>>,
        wal: Wal<F>,
        now: MonotonicTime,
    ) -> Result<Self, PartitionError> {
        // The creation record is durable before the meta file exists (its doc). Recovery never
        // needs it once it is durable: only what comes after it is this replica's, and the
        // ring recycles older segments first, so the WAL may reuse its segment at will.
        let partition = PartitionId(meta.partition);
        let created_at = wal
            .append(
                partition,
                REPLICA_CREATED_RECORD_KIND,
                &meta.partition.to_le_bytes(),
            )
            .await?;
        wal.checkpointed(partition, created_at);
        meta.create(directory.as_ref())
            .await
            .map_err(|error| PartitionError::Corrupt(error.to_string()))?;
        let engine = Partition::open_named(
            directory.as_ref(),
            &tree_file_name(meta.partition, 0),
            tree_id(meta.partition, 0),
            PartitionId(meta.partition),
            cache.clone(),
            config.btree.clone(),
        )
        .await?;
        let mut options = config.core.clone();
        options.election_seed = election_seed;
        let core = Replica::new(node, options, meta.membership.clone(), now)
            .map_err(|error| PartitionError::Corrupt(format!("bad replica options: {error:?}")))?;
        Ok(Self::assemble(
            meta, node, config, core, engine, 0, directory, cache, wal,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        meta: PartitionMeta,
        node: NodeId,
        config: ReplicaConfig,
        core: Replica,
        engine: Partition<F>,
        generation: u32,
        directory: Rc<D>,
        cache: Rc<PageCache<F>>,
        wal: Wal<F>,
    ) -> Self {
        let checkpoint_slot = Slot(engine.stats().lsn_checkpointed.0);
        // Created or recovered, the core has committed exactly through the checkpoint.
        let applied_membership = core.committed_membership().clone();
        let applied_config_slot = core.config_slot();
        Self {
            applied_membership,
            applied_config_slot,
            meta,
            node,
            config,
            core,
            engine,
            generation,
            directory,
            cache,
            wal,
            index_region: None,
            applied_chain: None,
            persisting: BTreeMap::new(),
            persisted_early: BTreeMap::new(),
            durable_core_lsn: 0,
            slot_wal_lsn: BTreeMap::new(),
            intent_wal_lsn: None,
            checkpoint_slot,
            applied_slot: checkpoint_slot,
            overlay: BTreeMap::new(),
            waiting: BTreeMap::new(),
            membership_waiters: BTreeMap::new(),
            deferred: BTreeMap::new(),
            stall_since: None,
            membership_applied: false,
            last_wal_pressure_checkpoint: None,
            outgoing_snapshot: None,
            snapshot_waiting: BTreeMap::new(),
            snapshot_last_to: None,
            last_tick: MonotonicTime::ZERO,
            lease_waiters: Vec::new(),
            lease_wanted: std::cell::Cell::new(false),
            incoming_snapshot: None,
            next_transfer_id: 1,
            outputs: Vec::new(),
            sweep: Default::default(),
            stream: Default::default(),
            traffic: Default::default(),
            chain_tip: None,
            transactions: transaction::TransactionState::new(checkpoint_slot),
            split: None,
            split_proposed: None,
            hash_range: None,
        }
    }

    /// Restarts a replica from its meta file, its newest complete tree generation and its WAL
    /// records (recovery step 3; the caller opened the WAL with a [`ShardReplay`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn recover(
        meta: PartitionMeta,
        node: NodeId,
        config: ReplicaConfig,
        election_seed: u64,
        directory: Rc<D>,
        cache: Rc<PageCache<F>>,
        wal: Wal<F>,
        records: RecoveredRecords,
        now: MonotonicTime,
    ) -> Result<Self, PartitionError> {
        let partition = meta.partition;
        let no_records = records.records.is_empty();
        let (engine, generation) =
            open_newest_tree(directory.as_ref(), &cache, partition, config.btree.clone()).await?;
        let checkpoint_slot = Slot(engine.stats().lsn_checkpointed.0);
        let mut options = config.core.clone();
        options.election_seed = election_seed;
        let config_slot = match read_config_slot(&engine, partition).await {
            Ok(slot) => slot,
            Err(error) => {
                engine.close().await?;
                return Err(error);
            }
        };
        let recovered = recover_core(
            &meta,
            node,
            options,
            &records.records,
            (checkpoint_slot, config_slot),
            now,
        );
        let RecoveredCore {
            core,
            slot_wal_lsn,
            intent_wal_lsn,
        } = match recovered {
            Ok(recovered) => recovered,
            Err(error) => {
                // The host may serve on without this replica (engine/shard does): leave no
                // open file behind.
                engine.close().await?;
                return Err(error);
            }
        };
        let mut replica = Self::assemble(
            meta, node, config, core, engine, generation, directory, cache, wal,
        );
        replica.slot_wal_lsn = slot_wal_lsn;
        replica.intent_wal_lsn = intent_wal_lsn;
        if no_records {
            // None of the partition's records in the WAL is this replica's: they came before
            // its creation record (an earlier replica of the partition here), or there are
            // none. Nothing is in flight yet, so everything durable can go; kept, they would
            // hold their segments until this replica first wrote and checkpointed, which a
            // joiner that is never added may never do (the simulator's moves stopped a node's
            // WAL this way).
            let durable = replica.wal.stats().lsn_durable;
            replica.wal.checkpointed(PartitionId(partition), durable);
        } else {
            replica.report_wal_low_water();
        }
        Ok(replica)
    }

    pub fn partition(&self) -> u64 {
        self.meta.partition
    }

    pub fn meta(&self) -> &PartitionMeta {
        &self.meta
    }

    pub fn applied_slot(&self) -> Slot {
        self.applied_slot
    }

    /// The MultiPaxos core, read only: hosts and checkers inspect its promise and log (the
    /// simulator checks that a restarted replica still holds what it acknowledged durable).
    pub fn core(&self) -> &Replica {
        &self.core
    }

    pub fn role(&self) -> RoleKind {
        self.core.role()
    }

    pub fn status(&self, now: MonotonicTime) -> ReplicaStatus {
        let role = match self.core.role() {
            RoleKind::Leader if self.core.can_serve_strong_read(now).is_ok() => {
                ReplicaRole::LeaderWithLease
            }
            RoleKind::Leader => ReplicaRole::Leader,
            RoleKind::Candidate | RoleKind::PreCandidate => ReplicaRole::Candidate,
            RoleKind::Follower => ReplicaRole::Follower,
        };
        let leader_hint = if self.core.role() == RoleKind::Leader {
            Some(self.node)
        } else {
            self.core.leader_hint()
        };
        ReplicaStatus {
            partition: self.meta.partition,
            epoch: self.meta.epoch,
            role,
            leader_hint: leader_hint.map(|node| node.0),
            commit_slot: self.core.commit_slot().0,
            applied_slot: self.applied_slot.0,
            item_count: self
                .engine
                .stats()
                .item_count
                .saturating_sub(self.index_region.as_ref().map_or(0, |region| region.count)),
            item_bytes: self
                .engine
                .stats()
                .item_bytes
                .saturating_sub(self.index_region.as_ref().map_or(0, |region| region.bytes)),
            local_indexes: self
                .index_region
                .as_ref()
                .map(|region| {
                    (0u8..)
                        .zip(region.local_entries.iter().zip(&region.local_entry_bytes))
                        .filter(|(_, (count, _))| **count > 0)
                        .map(|(number, (count, bytes))| LocalIndexStatus {
                            number,
                            entry_count: *count,
                            entry_bytes: *bytes,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// When this replica next needs an [`Event::Tick`]: a host may skip the ticks before it
    /// (the shard's ticker and the simulator do). A replica with work under way is due at every
    /// tick: a role in an election, entries proposed and not yet committed or applied, replies
    /// waiting, records not yet durable, a snapshot going out or coming in, or WAL segments it
    /// pins that the WAL reuses soon (a checkpoint frees them). A quiet one is due at its core's
    /// next timer (a leader's heartbeat, a follower's election timeout), and at least every
    /// [`QUIET_TICK_INTERVAL_MAX`].
    pub fn tick_due(&self) -> MonotonicTime {
        let quiet = matches!(self.core.role(), RoleKind::Leader | RoleKind::Follower)
            && self.core.log_last_slot() == self.core.commit_slot()
            && self.applied_slot == self.core.commit_slot()
            && self.waiting.is_empty()
            && self.membership_waiters.is_empty()
            && !self.membership_applied
            && self.deferred.is_empty()
            && self.persisting.is_empty()
            && self.outgoing_snapshot.is_none()
            && self.incoming_snapshot.is_none()
            && self.outputs.is_empty()
            && self.lease_waiters.is_empty()
            && !self.pins_wal_segments_reused_soon();
        if !quiet {
            return MonotonicTime::ZERO;
        }
        if self.core.quiesced() {
            // A quiesced replica, being quiet, has no duty that time alone brings due, and no
            // timer but a follower's backstop: what wakes it comes as an event (a message, a
            // request, a peer's node unreachable or back).
            return self.core.next_timer_deadline();
        }
        self.core
            .next_timer_deadline()
            .min(self.last_tick.saturating_add(QUIET_TICK_INTERVAL_MAX))
    }

    /// Whether requests wait for this leader's lease to be renewed (it was quiesced when they
    /// came): their answers come at a later event.
    pub fn holds_requests_for_lease(&self) -> bool {
        !self.lease_waiters.is_empty()
    }

    /// Whether `request` must wait for the lease at a quiesced leader: every read that needs
    /// it (strong reads, and the internal reads that are always strong). Writes are not held:
    /// their proposal wakes the leader and commits in the same round trip; one refused by its
    /// condition, which needs the lease and proposes nothing, wakes the leader through
    /// `check_read` and is answered NotLeader once (the router asks again).
    fn needs_lease(request: &PreparedRequest) -> bool {
        match request {
            PreparedRequest::Write(_) | PreparedRequest::BatchWrite(_) => false,
            PreparedRequest::Get(get) => get.consistent,
            PreparedRequest::BatchGet(gets) => gets.iter().any(|get| get.consistent),
            PreparedRequest::Range(range) => range.consistent,
            _ => true,
        }
    }

    /// A request that needs the lease, at a quiesced leader: wakes it (a heartbeat round goes
    /// out now) and holds the request until a quorum answered, so the first request after an
    /// idle spell costs one round trip more instead of a NotLeader and the router's retry.
    /// Returns the request back when it is not held.
    async fn hold_for_lease(
        &mut self,
        now: MonotonicTime,
        waiter: LeaseWaiter,
    ) -> Result<Option<LeaseWaiter>, PartitionError> {
        let woken_leader = self.core.role() == RoleKind::Leader
            && (self.core.quiesced() || !self.lease_waiters.is_empty());
        // A lease still running serves at once (it outlives quiescence by up to a lease).
        if !woken_leader
            || self.core.can_serve_strong_read(now).is_ok()
            || !Self::needs_lease(&waiter.request)
            || self.lease_waiters.len() >= LEASE_WAITERS_MAX
        {
            return Ok(Some(waiter));
        }
        let actions = self.core.wake(now);
        self.execute(now, actions).await?;
        self.lease_waiters.push(waiter);
        Ok(None)
    }

    /// Serves the held requests once the lease is back, or once waiting is pointless: this
    /// replica leads no more, or a minimum election timeout passed (each then gets the answer
    /// it would get now, NotLeader with a hint or the read itself).
    async fn serve_lease_waiters(&mut self, now: MonotonicTime) -> Result<(), PartitionError> {
        let Some(oldest) = self.lease_waiters.first().map(|waiter| waiter.since) else {
            return Ok(());
        };
        let waited_enough = now >= oldest.saturating_add(self.config.core.election_timeout_min);
        let ready = self.core.can_serve_strong_read(now).is_ok()
            || self.core.role() != RoleKind::Leader
            || waited_enough;
        if !ready {
            return Ok(());
        }
        for waiter in std::mem::take(&mut self.lease_waiters) {
            self.serve_waiter(now, waiter).await?;
        }
        Ok(())
    }

    async fn serve_waiter(
        &mut self,
        now: MonotonicTime,
        waiter: LeaseWaiter,
    ) -> Result<(), PartitionError> {
        self.serve(
            now,
            waiter.reply_to,
            waiter.epoch,
            waiter.unix_ms,
            waiter.request,
        )
        .await
    }

    /// Handles one event; returns what the host must do, in order.
    pub async fn handle(
        &mut self,
        now: MonotonicTime,
        event: Event,
    ) -> Result<Vec<Output>, PartitionError> {
        if self.index_region.is_none() {
            self.index_region = Some(crate::local_index::RegionStats::count(&self.engine).await?);
        }
        // Loaded before anything can start a snapshot, which captures it.
        self.applied_chain().await?;
        self.load_split().await?;
        match event {
            Event::Message { from, message } => {
                let actions = self.core.handle_message(now, from, message);
                self.execute(now, actions).await?;
            }
            Event::Tick { snapshot_room } => {
                self.last_tick = now;
                // The room is the host's for the destination before this tick; a transfer that
                // starts during it waits for the next tick's room.
                let destination = self.snapshot_destination();
                let actions = self.core.tick(now);
                self.execute(now, actions).await?;
                self.report_stalled_replies(now);
                self.abandon_incoming_snapshot_if_stuck(now).await?;
                self.checkpoint_if_due(now).await?;
                let room = if self.snapshot_destination() == destination {
                    snapshot_room
                } else {
                    0
                };
                self.continue_outgoing_snapshot(now, room).await?;
            }
            Event::Request {
                reply_to,
                epoch,
                unix_ms,
                request,
            } => {
                let waiter = LeaseWaiter {
                    reply_to,
                    epoch,
                    unix_ms,
                    request,
                    since: now,
                };
                if let Some(waiter) = self.hold_for_lease(now, waiter).await? {
                    self.serve_waiter(now, waiter).await?;
                }
            }
            Event::ChangeMembership {
                reply_to,
                epoch,
                change,
            } => self.change_membership(now, reply_to, epoch, change).await?,
            Event::TransferLeadership {
                reply_to,
                epoch,
                to,
            } => self.transfer_leadership(now, reply_to, epoch, to).await?,
            Event::Split {
                reply_to,
                epoch,
                split,
            } => self.propose_split(now, reply_to, epoch, split).await?,
            Event::PeerUnreachable(node) => {
                let actions = self.core.peer_unreachable(now, node);
                self.execute(now, actions).await?;
            }
            Event::PeerReachable(node) => {
                let actions = self.core.peer_reachable(now, node);
                self.execute(now, actions).await?;
            }
            // A split parent proposes nothing of its own: its entries would be void.
            Event::StreamMaintain(_) | Event::SweepExpired { .. } if self.split().is_some() => {}
            Event::StreamMaintain(settings) => self.maintain_stream(now, settings).await?,
            Event::Persisted { core_lsn, wal_lsn } => {
                // A core lsn is durable once every record it was split into is.
                let Some(persisting) = self.persisting.get_mut(&core_lsn.0) else {
                    return Ok(self.take_outputs());
                };
                persisting.records_outstanding -= 1;
                persisting.wal_lsn_first = Some(
                    persisting
                        .wal_lsn_first
                        .map_or(wal_lsn, |first| first.min(wal_lsn)),
                );
                if persisting.records_outstanding == 0 {
                    self.persisted_early.insert(core_lsn.0, wal_lsn);
                }
                let mut advanced = false;
                while self
                    .persisted_early
                    .remove(&(self.durable_core_lsn + 1))
                    .is_some()
                {
                    self.durable_core_lsn += 1;
                    if let Some(done) = self.persisting.remove(&self.durable_core_lsn) {
                        // The first record's position is a safe low-water mark for them all.
                        let wal_lsn = done.wal_lsn_first.unwrap_or(wal_lsn);
                        for slot in done.slots {
                            self.slot_wal_lsn.insert(slot, wal_lsn);
                        }
                    }
                    advanced = true;
                }
                if advanced {
                    let actions = self.core.persisted(now, CoreLsn(self.durable_core_lsn));
                    self.execute(now, actions).await?;
                }
            }
            Event::Snapshot(chunk) => self.receive_snapshot_chunk(now, chunk).await?,
            Event::SweepExpired {
                target,
                now_unix_seconds,
                pass_period,
            } => {
                let step = self
                    .sweep_expired(now, target, now_unix_seconds, pass_period)
                    .await?;
                step.log(self.meta.partition);
            }
            Event::Stop => {}
        }
        if self.lease_wanted.replace(false) && self.core.quiesced() {
            let actions = self.core.wake(now);
            self.execute(now, actions).await?;
        }
        self.serve_lease_waiters(now).await?;
        // A membership entry applied by this event is checkpointed before the event's outputs
        // (the answer to a ChangeMembership among them) go out, and before the host reads the
        // status that shows it applied: a control plane that sees every remaining member
        // applied a removal may then delete the removed replica, and a member that restarts
        // recovers the membership of its checkpoint (replication README, "Membership
        // change"). A snapshot being received meanwhile does not matter: the checkpoint is of
        // the current tree, as one under WAL pressure is.
        if self.membership_applied {
            self.checkpoint(now).await?;
        }
        Ok(self.take_outputs())
    }

    /// The outputs of an event, the units of the answers among them counted as traffic.
    fn take_outputs(&mut self) -> Vec<Output> {
        for output in &self.outputs {
            if let Output::Reply {
                response:
                    NodeResponse::Item {
                        read_units_milli,
                        write_units_milli,
                        ..
                    },
                ..
            } = output
            {
                self.traffic
                    .borrow_mut()
                    .charge(*read_units_milli, *write_units_milli);
            }
        }
        std::mem::take(&mut self.outputs)
    }

    /// This replica's traffic tracker (src/traffic.rs): the host reads its load for the
    /// autoadmin whenever asked, between the replica's events.
    pub fn traffic(&self) -> Rc<std::cell::RefCell<crate::traffic::TrafficTracker>> {
        self.traffic.clone()
    }

    async fn execute(
        &mut self,
        now: MonotonicTime,
        actions: Vec<Action>,
    ) -> Result<(), PartitionError> {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Persist {
                    lsn,
                    promised,
                    entries,
                } => {
                    let slots = entries.iter().map(|(slot, _)| *slot).collect();
                    let records = split_persist(
                        self.meta.partition,
                        promised,
                        entries,
                        self.wal.config().record_body_bytes_max / PERSIST_RECORD_FRACTION_OF_LIMIT,
                    );
                    self.persisting.insert(
                        lsn.0,
                        Persisting {
                            slots,
                            records_outstanding: records.len(),
                            wal_lsn_first: None,
                        },
                    );
                    for record in records {
                        self.outputs.push(Output::Persist {
                            core_lsn: lsn,
                            body: encode_persist_record(&record),
                        });
                    }
                }
                Action::Send { to, message } => self.outputs.push(Output::Send { to, message }),
                Action::Apply { entries } => self.apply(now, entries).await?,
                Action::SendSnapshot { to } => self.start_outgoing_snapshot(now, to),
                Action::LeaseAcquired | Action::LeaseLost => {}
                Action::RoleChanged { role, ballot } => {
                    tracing::info!(
                        partition = self.meta.partition,
                        node = self.node.0,
                        ?role,
                        round = ballot.round,
                        ballot_node = ballot.node.0,
                        commit = self.core.commit_slot().0,
                        "replica role changed"
                    );
                    if role != RoleKind::Leader {
                        self.abandon_proposals();
                    }
                }
            }
        }
        Ok(())
    }

    /// Diagnostics: a reply that waits on a slot already applied can never be sent (a bug), and
    /// one that waits long past the commit slot means replication stalled. Logged at most once
    /// per `STALL_REPORT_INTERVAL_NANOS`.
    fn report_stalled_replies(&mut self, now: MonotonicTime) {
        let oldest_waiting = self.waiting.keys().next().copied();
        let oldest_deferred = self.deferred.keys().next().copied();
        let Some(oldest) = oldest_waiting.into_iter().chain(oldest_deferred).min() else {
            self.stall_since = None;
            return;
        };
        let since = *self.stall_since.get_or_insert((oldest, now));
        if since.0 != oldest {
            self.stall_since = Some((oldest, now));
            return;
        }
        if now.as_nanos().saturating_sub(since.1.as_nanos()) < STALL_REPORT_INTERVAL_NANOS {
            return;
        }
        self.stall_since = Some((oldest, now));
        tracing::warn!(
            partition = self.meta.partition,
            role = ?self.core.role(),
            oldest_waiting = ?oldest_waiting,
            oldest_deferred = ?oldest_deferred,
            waiting = self.waiting.len(),
            deferred = self.deferred.len(),
            applied = self.applied_slot.0,
            commit = self.core.commit_slot().0,
            log_last = self.core.log_last_slot().0,
            durable_core_lsn = self.durable_core_lsn,
            persisting = self.persisting.len(),
            persisted_early = self.persisted_early.len(),
            "replies have waited on the same slot for a second"
        );
    }

    /// Leadership is gone: proposals not applied yet may or may not commit later under another
    /// leader (a new leader re-proposes what a quorum accepted). Their clients get an error
    /// that says so; the overlay is dropped because it no longer predicts the log.
    fn abandon_proposals(&mut self) {
        self.abandon_membership_changes();
        self.overlay.clear();
        self.chain_tip = None;
        self.stream.abandon_proposals();
        // Invariant 5: these writes were refused by their conditions and proposed nothing, so
        // withdrawing the refusal leaves them certainly not applied.
        for (_, answers) in std::mem::take(&mut self.deferred) {
            for (reply_to, _) in answers {
                self.outputs.push(Output::Reply {
                    reply_to,
                    response: NodeResponse::Error(NodeError::NotApplied {
                        message: CONDITION_ON_UNAPPLIED_WRITE.to_string(),
                    }),
                });
            }
        }
        for (_, waiter) in std::mem::take(&mut self.waiting) {
            let Some(reply_to) = waiter.reply_to else {
                continue;
            };
            self.outputs.push(Output::Reply {
                reply_to,
                response: NodeResponse::Error(NodeError::OutcomeUnknown {
                    message: LEADERSHIP_LOST_WITH_WRITE_IN_FLIGHT.to_string(),
                }),
            });
        }
    }

    /// The applied chain at `applied_slot`, read from the tree's chain record the first time
    /// (0 for a tree that has none: a new partition, or one written before the chain existed).
    async fn applied_chain(&mut self) -> Result<u64, PartitionError> {
        if let Some(chain) = self.applied_chain {
            return Ok(chain);
        }
        let stored = self
            .engine
            .get(&shoal_model::index::applied_chain_key())
            .await?;
        let chain = match stored {
            None => 0,
            Some(bytes) => u64::from_le_bytes(bytes.as_slice().try_into().map_err(|_| {
                PartitionError::Corrupt(format!(
                    "partition {}: the applied-chain record holds {} bytes, not 8",
                    self.meta.partition,
                    bytes.len()
                ))
            })?),
        };
        self.applied_chain = Some(chain);
        Ok(chain)
    }

    /// The chain a write proposed now expects before it: the applied chain advanced over every
    /// entry of the log after the applied slot, as this leader sees them (invariant 6). It is
    /// added to the write's batch as a put of the chain record, which `apply` checks and
    /// replaces with the chain after the write.
    pub(super) async fn chain_requirement(&mut self) -> Result<Mutation, PartitionError> {
        let ballot = self.core.leader_ballot();
        let (mut chain, mut slot) = match self.chain_tip {
            // The tip is usable while it is at or after the applied slot (entries before it may
            // be gone from the log) and within the log.
            Some((tip_ballot, tip_slot, tip_chain))
                if Some(tip_ballot) == ballot
                    && tip_slot >= self.applied_slot
                    && tip_slot <= self.core.log_last_slot() =>
            {
                (tip_chain, tip_slot.next())
            }
            _ => (self.applied_chain().await?, self.applied_slot.next()),
        };
        while slot <= self.core.log_last_slot() {
            let chained = match self.core.entry(slot).map(|entry| &entry.payload) {
                Some(Payload::Command(bytes)) => ChainedEntry::Command(bytes),
                Some(Payload::Noop) => ChainedEntry::Noop,
                // A step counts the same whether it takes effect or is void.
                Some(Payload::Membership(_) | Payload::MembershipStep { .. }) => {
                    ChainedEntry::Membership
                }
                None => {
                    return Err(PartitionError::Corrupt(format!(
                        "partition {}: the log holds no entry at slot {} after the applied slot",
                        self.meta.partition, slot.0
                    )));
                }
            };
            chain = shoal_model::index::chain_step(chain, slot.0, chained);
            slot = slot.next();
        }
        self.chain_tip = ballot.map(|ballot| (ballot, self.core.log_last_slot(), chain));
        Ok(Mutation::Put {
            key: shoal_model::index::applied_chain_key(),
            value: chain.to_le_bytes().to_vec(),
        })
    }

    async fn apply(
        &mut self,
        now: MonotonicTime,
        entries: Vec<(Slot, LogEntry)>,
    ) -> Result<(), PartitionError> {
        for (slot, entry) in entries {
            if slot <= self.applied_slot {
                continue;
            }
            // A snapshot installed by this event replaced the tree and its record.
            self.load_split().await?;
            let (mut batch, chained) = match &entry.payload {
                Payload::Command(bytes) => (
                    MutationBatch::decode(bytes).ok_or_else(|| {
                        PartitionError::Corrupt(format!(
                            "partition {}: committed slot {} is not a mutation batch",
                            self.meta.partition, slot.0
                        ))
                    })?,
                    ChainedEntry::Command(bytes),
                ),
                Payload::Noop => (MutationBatch::default(), ChainedEntry::Noop),
                Payload::Membership(_) | Payload::MembershipStep { .. } => {
                    (MutationBatch::default(), ChainedEntry::Membership)
                }
            };
            // Invariant 6: a write evaluated against another history than the one committed
            // before it (its leader's proposals before it lost to a later leader's) is applied
            // as a no-op, on every replica alike.
            let chain_before = self.applied_chain().await?;
            let chain_after = shoal_model::index::chain_step(chain_before, slot.0, chained);
            let chain_key = shoal_model::index::applied_chain_key();
            let required = batch
                .mutations
                .iter()
                .rposition(|mutation| mutation.key() == chain_key.as_slice())
                .map(|position| batch.mutations.remove(position));
            let mut voided = required.is_some_and(|mutation| {
                !matches!(mutation, Mutation::Put { value, .. }
                    if value.as_slice() == chain_before.to_le_bytes().as_slice())
            });
            // A split parent is frozen at its split's slot (src/replica/split.rs, step 3). A
            // second proposal of the split it applied (a new leader asked again before it had
            // applied the first) is answered as that split's.
            let repeated_split = self.split().and_then(|applied| {
                split::proposed_split_in(&batch).map(|proposed| proposed.same_split(applied))
            });
            voided |= self.split().is_some();
            let split = if voided {
                split::SplitApplication::None
            } else {
                self.take_split(slot, &mut batch).await?
            };
            voided |= matches!(split, split::SplitApplication::Void);
            let written_keys: Vec<Vec<u8>> = if voided {
                tracing::debug!(
                    partition = self.meta.partition,
                    slot = slot.0,
                    "a write evaluated against another history is applied as a no-op"
                );
                std::mem::take(&mut batch.mutations)
                    .into_iter()
                    .map(|mutation| mutation.key().to_vec())
                    .collect()
            } else {
                Vec::new()
            };
            // Outbox records take their position from the slot (index::global invariant 2),
            // the same on every replica and at every replay.
            // So do stream records and shard records (stream invariants 2 and 3).
            for mutation in &mut batch.mutations {
                let Mutation::Put { key, .. } = mutation else {
                    continue;
                };
                if let Some(ordinal) = shoal_model::index::global::pending_outbox_ordinal(key) {
                    *key = shoal_model::index::global::outbox_key(
                        shoal_model::index::global::OutboxPosition {
                            slot: slot.0,
                            ordinal,
                        },
                    );
                } else if let Some(positioned) = shoal_model::stream::positioned_key(key, slot.0) {
                    *key = positioned;
                }
            }
            batch.mutations.push(Mutation::Put {
                key: chain_key,
                value: chain_after.to_le_bytes().to_vec(),
            });
            // A membership step takes effect only on the membership it was proposed on, decided
            // here as the core decides it (`Payload::membership_after`), from the membership
            // applied before it; the tree records which entry set it (the membership record).
            let took_effect = entry
                .payload
                .membership_after(&self.applied_membership, self.applied_config_slot)
                .cloned();
            if took_effect.is_some() {
                batch.mutations.push(Mutation::Put {
                    key: shoal_model::index::membership_config_key(),
                    value: slot.0.to_le_bytes().to_vec(),
                });
            }
            if let Some(region) = &mut self.index_region {
                region.before_apply(&self.engine, &batch).await?;
            }
            self.engine.apply(WalLsn(slot.0), &batch).await?;
            self.stream.applied(slot, &batch).map_err(|error| {
                PartitionError::Corrupt(format!(
                    "partition {}: slot {}: {error}",
                    self.meta.partition, slot.0
                ))
            })?;
            self.transactions.applied(slot, &batch).map_err(|error| {
                PartitionError::Corrupt(format!(
                    "partition {}: slot {}: {error}",
                    self.meta.partition, slot.0
                ))
            })?;
            self.applied_slot = slot;
            self.applied_chain = Some(chain_after);
            if let split::SplitApplication::Applied(record) = &split {
                tracing::info!(
                    partition = self.meta.partition,
                    slot = slot.0,
                    left = record.left.partition,
                    right = record.right.partition,
                    "applied a split: this replica is frozen and its node builds the children"
                );
                self.split = Some(Some(record.clone()));
            }
            let keys = batch
                .mutations
                .iter()
                .map(Mutation::key)
                .chain(written_keys.iter().map(Vec::as_slice));
            for key in keys {
                if self
                    .overlay
                    .get(key)
                    .is_some_and(|(overlay_slot, _)| *overlay_slot <= slot)
                {
                    self.overlay.remove(key);
                }
            }
            // A replica the entry removes keeps its log instead: until every remaining member
            // has learned that the removal committed, a candidate among them that is behind
            // may need this replica's accepted entries in its phase 1, and a promiser that
            // truncated past the candidate's commit cannot count for it (found by the
            // simulator: the removed replica checkpointed at once, the leader that committed
            // the removal was cut off, and the two members left could not elect).
            if let Some(next) = &took_effect {
                self.membership_applied = next.contains(self.node);
                self.applied_membership = next.clone();
                self.applied_config_slot = slot;
            }
            self.settle_membership_waiter(slot, took_effect.as_ref());
            let mut proposal_took_effect = false;
            if let Some(waiter) = self.waiting.remove(&slot) {
                let taken_effect = !voided
                    && matches!(&entry.payload, Payload::Command(bytes) if *bytes == waiter.payload);
                proposal_took_effect = taken_effect;
                // Invariant 3: a proposal lives at its one slot (a new leader re-proposes an
                // accepted entry at the slot it was accepted in), so another payload there
                // means this write never takes effect.
                let response = if taken_effect {
                    waiter.response
                } else if repeated_split == Some(true) {
                    NodeResponse::Created
                } else if repeated_split == Some(false) {
                    NodeResponse::Error(NodeError::NotApplied {
                        message: format!("partition {}: {SPLIT_DIFFERS}", self.meta.partition),
                    })
                } else if matches!(split, split::SplitApplication::Void) {
                    NodeResponse::Error(NodeError::NotApplied {
                        message: format!("partition {}: {SPLIT_BLOCKED}", self.meta.partition),
                    })
                } else {
                    NodeResponse::Error(NodeError::NotApplied {
                        message: WRITE_LOST_ITS_SLOT.to_string(),
                    })
                };
                if let Some(reply_to) = waiter.reply_to {
                    self.outputs.push(Output::Reply { reply_to, response });
                }
            }
            if let Some(answers) = self.deferred.remove(&slot) {
                // Invariant 5: the state the condition saw is now applied, and under the lease
                // no other leader can have moved past it.
                let stands = proposal_took_effect && self.core.can_serve_strong_read(now).is_ok();
                for (reply_to, response) in answers {
                    // The refused write proposed nothing (invariant 5): withdrawn, it is
                    // certainly not applied.
                    let response = if stands {
                        response
                    } else {
                        NodeResponse::Error(NodeError::NotApplied {
                            message: CONDITION_ON_UNAPPLIED_WRITE.to_string(),
                        })
                    };
                    self.outputs.push(Output::Reply { reply_to, response });
                }
            }
        }
        Ok(())
    }
}

/// Opens the newest complete generation of a partition's tree and removes the others: an older
/// one is left over from a snapshot install that finished; a newer one that was never
/// checkpointed is left over from an install that crashed before it finished.
async fn open_newest_tree<F: Storage, D: StorageDirectory<File = F>>(
    directory: &D,
    cache: &Rc<PageCache<F>>,
    partition: u64,
    config: BTreeConfig,
) -> Result<(Partition<F>, u32), PartitionError> {
    let mut generations: Vec<u32> = directory
        .list()
        .await?
        .iter()
        .filter_map(|name| parse_tree_file_name(name))
        .filter(|(owner, _)| *owner == partition)
        .map(|(_, generation)| generation)
        .collect();
    generations.sort_unstable();
    let mut chosen: Option<(Partition<F>, u32)> = None;
    while let Some(generation) = generations.pop() {
        let tree = Partition::open_named(
            directory,
            &tree_file_name(partition, generation),
            tree_id(partition, generation),
            PartitionId(partition),
            cache.clone(),
            config.clone(),
        )
        .await?;
        let complete = tree.stats().lsn_checkpointed.0 > 0 || generation == 0;
        if chosen.is_none() && (complete || generations.is_empty()) {
            chosen = Some((tree, generation));
        } else {
            tree.close().await?;
            directory
                .remove(&tree_file_name(partition, generation))
                .await?;
        }
    }
    match chosen {
        Some(chosen) => Ok(chosen),
        None => {
            let tree = Partition::open_named(
                directory,
                &tree_file_name(partition, 0),
                tree_id(partition, 0),
                PartitionId(partition),
                cache.clone(),
                config,
            )
            .await?;
            Ok((tree, 0))
        }
    }
}

/// Removes tree files of partitions that have no meta file (left by a deletion or a split
/// child's build that crashed part way), and split children's markers of parents that have no
/// meta file (the parent was deleted). Returns how many it removed.
pub async fn remove_orphan_trees<D: StorageDirectory>(
    directory: &D,
) -> Result<usize, PartitionError> {
    let names = directory.list().await?;
    let with_meta: std::collections::BTreeSet<u64> = names
        .iter()
        .filter_map(|name| crate::meta::parse_meta_file_name(name))
        .collect();
    let mut removed = 0;
    for name in &names {
        // A tree without a meta file; a split child's marker whose parent is gone.
        let orphan = parse_tree_file_name(name)
            .map(|(partition, _)| partition)
            .or_else(|| {
                crate::meta::parse_split_child_marker_file_name(name).map(|(parent, _)| parent)
            })
            .is_some_and(|partition| !with_meta.contains(&partition));
        if orphan {
            directory.remove(name).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The partitions whose meta files are in `directory`.
pub async fn list_partitions<D: StorageDirectory>(
    directory: &D,
) -> Result<Vec<u64>, PartitionError> {
    let mut partitions: Vec<u64> = directory
        .list()
        .await?
        .iter()
        .filter_map(|name| crate::meta::parse_meta_file_name(name))
        .collect();
    partitions.sort_unstable();
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTITION: u64 = 3;

    fn ballot(round: u64) -> Ballot {
        Ballot {
            round,
            node: NodeId(1),
        }
    }

    fn record(
        promised: Option<u64>,
        round: u64,
        slots: std::ops::RangeInclusive<u64>,
    ) -> PersistRecord {
        let entries = slots
            .map(|slot| {
                let entry = LogEntry {
                    ballot: ballot(round),
                    payload: Payload::Command(vec![slot as u8, round as u8]),
                };
                (Slot(slot), entry)
            })
            .collect();
        PersistRecord::from_persist_action(PARTITION, promised.map(ballot), entries)
    }

    /// A replica moved away and back to a shard starts from its creation record: the earlier
    /// replica's records, still in the WAL, are not replayed into it (issue 19).
    #[test]
    fn the_replay_starts_a_partition_at_its_newest_creation_record() {
        let body = |record: &PersistRecord| encode_persist_record(record);
        let earlier = body(&record(Some(5), 5, 1..=3));
        let later = body(&record(Some(2), 2, 1..=1));
        let created = PARTITION.to_le_bytes();
        let other = encode_persist_record(&PersistRecord::from_persist_action(
            PARTITION + 1,
            Some(ballot(1)),
            Vec::new(),
        ));
        let records: [(u64, u64, RecordKind, &[u8]); 5] = [
            (1, PARTITION, REPLICATION_RECORD_KIND, &earlier),
            (2, PARTITION + 1, REPLICATION_RECORD_KIND, &other),
            (3, PARTITION, REPLICA_CREATED_RECORD_KIND, &created),
            (4, PARTITION, REPLICATION_RECORD_KIND, &later),
            (
                5,
                PARTITION + 1,
                REPLICA_CREATED_RECORD_KIND,
                &(PARTITION + 1).to_le_bytes(),
            ),
        ];
        let mut replay = ShardReplay::default();
        for (lsn, partition, kind, body) in records {
            replay.visit(shoal_store::wal::RecoveredRecord {
                lsn: WalLsn(lsn),
                partition: PartitionId(partition),
                kind,
                body,
            });
        }
        let kept: Vec<u64> = replay.partitions[&PARTITION]
            .records()
            .iter()
            .map(|(lsn, _)| lsn.0)
            .collect();
        assert_eq!(kept, vec![4]);
        // Created again after its only record: nothing of it is replayed.
        assert!(!replay.partitions.contains_key(&(PARTITION + 1)));
    }

    fn membership() -> Membership {
        Membership::new([NodeId(1), NodeId(2), NodeId(3)], [])
    }

    fn kept_records(state: &DurableState) -> BTreeMap<u64, (u64, u64)> {
        state
            .kept
            .iter()
            .map(|(slot, (wal_lsn, entry))| (slot.0, (wal_lsn.0, entry.ballot.round)))
            .collect()
    }

    /// Issue 14's records: slot 10 of ballot 1 alone, then the promise of ballot 2 and slots 1
    /// to 18 re-sent in ballot 2 (the first writes of slots 1 to 9 recycled). Every slot keeps
    /// the ballot-2 record, so the WAL keeps that one.
    #[test]
    fn every_slot_points_at_the_record_of_the_entry_kept() {
        let records = vec![
            (WalLsn(40), record(None, 1, 10..=10)),
            (
                WalLsn(41),
                PersistRecord::from_persist_action(PARTITION, Some(ballot(2)), Vec::new()),
            ),
            (WalLsn(42), record(None, 2, 1..=18)),
        ];
        let state = read_durable_state(PARTITION, &records, Slot::ZERO, &membership()).unwrap();
        assert_eq!(state.promised, ballot(2));
        assert_eq!(state.snapshot_membership, Some(membership()));
        let expected: BTreeMap<u64, (u64, u64)> = (1..=18).map(|slot| (slot, (42, 2))).collect();
        assert_eq!(kept_records(&state), expected);
    }

    /// Write order decides only between equal ballots. A later record of a lower ballot (which a
    /// live replica never writes) neither replaces the entry nor becomes the record the WAL
    /// keeps for the slot: pointing there would let the WAL recycle the record that holds the
    /// entry recovery kept.
    #[test]
    fn a_later_record_of_a_lower_ballot_does_not_take_the_slot() {
        let same_ballot_again = PersistRecord::from_persist_action(
            PARTITION,
            None,
            vec![(
                Slot(2),
                LogEntry {
                    ballot: ballot(2),
                    payload: Payload::Noop,
                },
            )],
        );
        let records = vec![
            (WalLsn(7), record(Some(2), 2, 1..=2)),
            (WalLsn(8), record(None, 1, 1..=1)),
            (WalLsn(9), same_ballot_again),
        ];
        let state = read_durable_state(PARTITION, &records, Slot::ZERO, &membership()).unwrap();
        assert_eq!(
            kept_records(&state),
            BTreeMap::from([(1, (7, 2)), (2, (9, 2))])
        );
        assert_eq!(state.kept[&Slot(2)].1.payload, Payload::Noop);
    }

    #[test]
    fn slots_at_or_below_the_checkpoint_are_not_kept_and_its_intent_is_found() {
        let intent = PersistRecord {
            group: PARTITION,
            promised: Some(BallotWire::from(ballot(1))),
            entries: Vec::new(),
            checkpoint: Some(CheckpointIntent {
                last_included_slot: 4,
                membership: MembershipWire::from(&membership()),
            }),
        };
        let records = vec![(WalLsn(1), record(Some(1), 1, 1..=6)), (WalLsn(2), intent)];
        let state = read_durable_state(PARTITION, &records, Slot(4), &membership()).unwrap();
        assert_eq!(state.intent_wal_lsn, Some(WalLsn(2)));
        assert_eq!(state.snapshot_membership, Some(membership()));
        assert_eq!(
            kept_records(&state),
            BTreeMap::from([(5, (1, 1)), (6, (1, 1))])
        );
    }
}
