//! The messages of the bus, as plain Rust types archived with rkyv.
//!
//! Item requests travel typed: the router parses each DynamoDB request once into a prepared
//! request (shoal-model's `request` module) and sends it in the typed item request encoding
//! (shoal-model FORMAT.md); the partition leader decodes it and only evaluates. Replies carry
//! items in the binary item encoding, and each front end renders them in its own format. No
//! JSON crosses this hop.

use rkyv::{Archive, Deserialize, Serialize};

/// A node of the cluster. Node ids are assigned by the cluster's metadata and never reused.
pub type NodeIdWire = u64;

/// Where a partition replica lives: a node and one of its shards (cores).
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub struct ShardAddress {
    pub node: NodeIdWire,
    pub shard: u16,
}

/// A MultiPaxos ballot (`shoal_replication::Ballot`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct BallotWire {
    pub round: u64,
    pub node: NodeIdWire,
}

/// Replica sets (`shoal_replication::Membership`), sorted.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct MembershipWire {
    pub full_replicas: Vec<NodeIdWire>,
    pub log_replicas: Vec<NodeIdWire>,
}

/// The payload of a log entry (`shoal_replication::Payload`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum PayloadWire {
    Noop,
    Command(Vec<u8>),
    Membership(MembershipWire),
    /// `shoal_replication::Payload::MembershipStep { base, next }`, in the byte layout of
    /// FORMAT.md ("Membership steps"): a byte vector, so the archived size of every payload
    /// (and of the entries holding one) is unchanged. Added at the end (tag 3).
    MembershipStep(Vec<u8>),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LogEntryWire {
    pub ballot: BallotWire,
    pub payload: PayloadWire,
}

/// A replication message (`shoal_replication::Message`), field for field.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessageWire {
    PreCheck {
        round: u64,
    },
    PreCheckReply {
        round: u64,
        granted: bool,
    },
    Prepare {
        ballot: BallotWire,
        from_slot: u64,
    },
    Promise {
        ballot: BallotWire,
        log_first_slot: u64,
        accepted: Vec<(u64, LogEntryWire)>,
        lease_wait_nanos: u64,
    },
    Accept {
        ballot: BallotWire,
        round: u64,
        first_slot: u64,
        entries: Vec<LogEntryWire>,
        commit_slot: u64,
    },
    Accepted {
        ballot: BallotWire,
        round: u64,
        match_slot: u64,
        missing: bool,
    },
    Rejected {
        promised: BallotWire,
    },
    /// Appended in frame format version 3 (FORMAT.md, "Variants added at the end"): a
    /// heartbeat of an idle group that asks the follower to quiesce (shoal-replication
    /// `Message::Quiesce`).
    Quiesce {
        ballot: BallotWire,
        round: u64,
        first_slot: u64,
        commit_slot: u64,
    },
    /// Appended with leadership hand-over (issue 19; FORMAT.md, "Variants added at the end"):
    /// from a leader whose removal committed, to the member that is to campaign at once
    /// (shoal-replication `Message::TimeoutNow`).
    TimeoutNow {
        ballot: BallotWire,
        commit_slot: u64,
    },
    /// Appended with it: a `Prepare` whose candidate was handed over to by the leader at
    /// `lease_released` (shoal-replication `Message::Prepare` with `lease_released` set). A
    /// `Prepare` without one keeps its own variant, so a group that hands nothing over sends
    /// only what older nodes read.
    PrepareAfterHandover {
        ballot: BallotWire,
        from_slot: u64,
        lease_released: BallotWire,
    },
}

/// The group id of a node liveness ping (engine/shard `dispatch::liveness`): an envelope of
/// this group, whatever its message, only says that its sender's node is alive. Partition ids
/// are allocated from 1 upwards and never reach it.
pub const LIVENESS_GROUP: u64 = u64::MAX;

/// One replication message of one group, between replicas on two nodes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ReplicationEnvelope {
    /// The replication group: the partition id.
    pub group: u64,
    pub from: NodeIdWire,
    pub to: NodeIdWire,
    pub message: ReplicationMessageWire,
}

/// One chunk of a B-tree snapshot streamed from a leader to a follower that fell behind its
/// truncated log. Chunks of one transfer share `transfer_id`, arrive in order over one
/// connection, and the last has `last == true`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub group: u64,
    pub from: NodeIdWire,
    pub to: NodeIdWire,
    pub transfer_id: u64,
    /// Every entry up to this slot is reflected in the snapshot.
    pub last_included_slot: u64,
    pub membership: MembershipWire,
    pub chunk_index: u32,
    /// Storage key and encoded item, in key order.
    pub items: Vec<(Vec<u8>, Vec<u8>)>,
    pub last: bool,
}

/// What a WAL record of a replication group holds: one `Persist` action of the core.
/// The archived bytes of this type are the WAL record body (record kind 2, see FORMAT.md).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PersistRecord {
    pub group: u64,
    /// The newly promised ballot, when the action carried one.
    pub promised: Option<BallotWire>,
    pub entries: Vec<(u64, LogEntryWire)>,
    /// Written before a checkpoint of the group's B-tree: the slot the checkpoint will cover and
    /// the committed membership as of that slot, so recovery can rebuild the snapshot metadata.
    pub checkpoint: Option<CheckpointIntent>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CheckpointIntent {
    pub last_included_slot: u64,
    pub membership: MembershipWire,
}

/// A key attribute's type in a key schema.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTypeWire {
    String,
    Number,
    Binary,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct KeySchemaWire {
    pub partition_key: (String, KeyTypeWire),
    pub sort_key: Option<(String, KeyTypeWire)>,
}

/// A request from a router (or an admin tool) to the shard that owns a partition replica.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum NodeRequest {
    /// Create a replica of a new partition here, with the given replica set. Idempotent: a
    /// replica that already exists with the same epoch answers `Created`.
    CreatePartition {
        partition: u64,
        epoch: u64,
        key_schema: KeySchemaWire,
        membership: MembershipWire,
    },
    Item {
        partition: u64,
        /// The partition map epoch the router routed with.
        epoch: u64,
        /// The prepared request in the typed item request encoding (see the module docs).
        request: Vec<u8>,
    },
    /// The replicas on the shard that receives it: for routers refreshing leader hints, for
    /// tests and for `shoal` admin commands.
    Status,
    /// Remove this shard's replica of a partition whose table was deleted: its files and its
    /// WAL records. Idempotent: a replica that is not there answers `Deleted`. Added after
    /// version 1's other variants, so their archived tags are unchanged.
    DeletePartition { partition: u64, epoch: u64 },
    /// Create an empty replica of an existing partition here, to be added to its group by a
    /// `ChangeMembership`. It starts with no members, so it never campaigns, and learns the
    /// group's state from the leader (a snapshot, then the log) once it is a member.
    /// Idempotent like `CreatePartition`. Added at the end (tag 4).
    JoinPartition {
        partition: u64,
        epoch: u64,
        key_schema: KeySchemaWire,
    },
    /// To the partition's leader: change its replica set by one member and answer `Membership`
    /// once the change is committed. Idempotent: a change the committed membership already
    /// reflects is answered at once, with each follower's progress, which is how a caller
    /// waits for a new replica to catch up. Added at the end (tag 5).
    ChangeMembership {
        partition: u64,
        epoch: u64,
        change: MembershipChangeWire,
    },
    /// The nodes of the cluster as this node knows them (the cluster item's list, refreshed
    /// from the metadata group): how a node started with `shoal node --join SEED` finds the
    /// metadata group through any node it can reach. Added at the end (tag 6).
    ClusterNodes,
    /// To the partition's leader: hand leadership over to the member `to` (balancing leaders
    /// across nodes). Answered with `Membership` once the hand-over has started; the leader
    /// takes no new write until `to` has its whole log, then steps down and has `to` campaign
    /// at once, or gives up after an election timeout. The caller learns who leads from
    /// `Status`. Added at the end (tag 7).
    TransferLeadership {
        partition: u64,
        epoch: u64,
        to: NodeIdWire,
    },
    /// To the partition's leader: split it at `at_hash` into `left` (keys hashing below it)
    /// and `right` (engine/partition src/replica/split.rs). Answered `Created` once the split is
    /// applied; asked again after that, answered `Created` at once. Added at the end (tag 8).
    SplitPartition {
        partition: u64,
        epoch: u64,
        at_hash: u64,
        left: SplitChildWire,
        right: SplitChildWire,
    },
    /// Every replica's recent traffic on the shard (engine/partition src/traffic.rs), for the
    /// autoadmin's split for traffic; answered `Loads`. Added at the end (tag 9).
    Loads,
}

/// A child of a split: its new partition id and the map epoch it is routed with.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitChildWire {
    pub partition: u64,
    pub epoch: u64,
}

/// A node and the bus address of its shard 0 (shard `i` listens on that port + `i`), in the
/// answer to `NodeRequest::ClusterNodes`. The address is text (`HOST:PORT`, as `SocketAddr`
/// prints it) so that the layout does not depend on the address family.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeAddressWire {
    pub node: NodeIdWire,
    pub address: String,
}

/// One step of a membership change (`shoal_replication::MembershipChange`). Storage nodes host
/// full replicas only, so adding a log replica does not travel (yet).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChangeWire {
    AddFullReplica(NodeIdWire),
    Remove(NodeIdWire),
}

/// How far the leader knows a follower's log to be durable: every slot up to `match_slot`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerMatchWire {
    pub node: NodeIdWire,
    pub match_slot: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    /// Chosen by the sender, unique among its requests in flight on one connection; the
    /// response carries it back (pipelining).
    pub request_id: u64,
    pub request: NodeRequest,
}

/// The role of a replica as reported in a status.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaRole {
    Follower,
    Candidate,
    Leader,
    /// Leader holding its lease: serves strong reads.
    LeaderWithLease,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub partition: u64,
    pub epoch: u64,
    pub role: ReplicaRole,
    pub leader_hint: Option<NodeIdWire>,
    pub commit_slot: u64,
    pub applied_slot: u64,
    pub item_count: u64,
    /// Bytes of the replica's stored items (keys and encoded values): the size estimate behind
    /// DescribeTable's TableSizeBytes.
    pub item_bytes: u64,
    /// The entries of each local secondary index the replica holds any of: DescribeTable's
    /// ItemCount and IndexSizeBytes of the index.
    pub local_indexes: Vec<LocalIndexStatus>,
}

/// One local secondary index's entries in one replica.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LocalIndexStatus {
    /// The index's number (its position in CreateTable's LocalSecondaryIndexes).
    pub number: u8,
    pub entry_count: u64,
    /// Keys and encoded values of the entries.
    pub entry_bytes: u64,
}

/// The result of an item request. Every item (and key) is in the binary item encoding
/// (shoal-model FORMAT.md).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ItemResult {
    /// PutItem, UpdateItem, DeleteItem: the attributes their ReturnValues asked for, if any.
    Write { attributes: Option<Vec<u8>> },
    /// A partition's share of a BatchWriteItem: all of it was written.
    BatchWrite,
    /// GetItem: the item (projected), if it exists.
    Get { item: Option<Vec<u8>> },
    /// A partition's share of a BatchGetItem: the items that exist (projected).
    BatchGet { items: Vec<Vec<u8>> },
    /// A Query or a partition's part of a Scan. `items` is empty for `Select: COUNT`; `count`
    /// is the number that passed the filter, `scanned_count` the number evaluated and
    /// `scanned_bytes` their size (what counts toward the page limit). `last_evaluated_key` is
    /// set when the page ended before the range did.
    Range {
        items: Vec<Vec<u8>>,
        count: u64,
        scanned_count: u64,
        scanned_bytes: u64,
        last_evaluated_key: Option<Vec<u8>>,
    },
    /// A single-item write to a table with local secondary indexes: `Write`, plus the size of
    /// the item collection it wrote to (its partition key, `collection_key`, in the binary item
    /// encoding) after the write, for ItemCollectionMetrics. Added at the end (FORMAT.md,
    /// "Variants added at the end").
    WriteInCollection {
        attributes: Option<Vec<u8>>,
        collection_key: Vec<u8>,
        collection_bytes: u64,
        /// The write units (thousandths) each local index's entries cost, by index number;
        /// the rest of the answer's `write_units_milli` is the table's (ConsumedCapacity
        /// INDEXES).
        index_write_units_milli: Vec<u64>,
    },
    /// A partition's share of a BatchWriteItem to a table with local secondary indexes:
    /// `BatchWrite`, plus each item collection it wrote to, with its size after the batch.
    /// Added at the end.
    BatchWriteInCollections { collections: Vec<CollectionSize> },
    /// A base partition's outbox records (GSI changes) in position order, for a propagator.
    /// Added at the end.
    Outbox { changes: Vec<OutboxChange> },
    /// A single-item write to a table with global secondary indexes: `Write`, plus what
    /// ItemCollectionMetrics and ConsumedCapacity INDEXES need: the item collection's size
    /// after the write (tables with local indexes) and the write units (thousandths) each
    /// index's changes cost; the rest of the answer's `write_units_milli` is the table's.
    /// Added at the end.
    WriteWithIndexes {
        attributes: Option<Vec<u8>>,
        collection: Option<Box<CollectionSize>>,
        index_write_units_milli: Vec<IndexWriteUnits>,
    },
    /// A partition's share of a BatchWriteItem to a table with global secondary indexes:
    /// `BatchWriteInCollections` (empty without local indexes), plus the write units
    /// (thousandths) its GSI changes cost, by index (each `global`): admission charges them to
    /// each index's own capacity, never to the table's. Added at the end; its units became
    /// per index with frame format version 3.
    BatchWriteWithIndexes {
        collections: Vec<CollectionSize>,
        global_write_units_milli: Vec<IndexWriteUnits>,
    },
    /// One step of a GSI backfill was applied: the next step starts after `resume_after` (the
    /// last item key the step read), or the partition is done when it is `None`. Added at the
    /// end.
    Backfill { resume_after: Option<Vec<u8>> },
    /// A shard's stream records in position order (shoal-model `stream`), for GetRecords.
    /// `shard_closed`: the partition opened the shard's successor (or ended the stream), so
    /// after the last of these records the shard has no more. `trimmed_through`: the last
    /// position the partition removed from this stream, so a reader that asked for earlier
    /// data knows it is gone. `applied_slot`: the leader's applied slot, where a LATEST
    /// iterator starts. Added at the end.
    StreamRecords {
        records: Vec<StreamRecordWire>,
        shard_closed: bool,
        trimmed_through: Option<PositionWire>,
        applied_slot: u64,
    },
    /// A stream's shards in one partition, oldest first. Added at the end.
    StreamShards {
        shards: Vec<StreamShardWire>,
        trimmed_through: Option<PositionWire>,
    },
    /// A transaction prepare's outcome at one partition: one reason per action, in the order
    /// sent; all `None` (code 0) when its locks are written. Added at the end.
    /// `index_write_units_milli`: what the actions' index entries cost, by index (the rest of
    /// the answer's `write_units_milli` is the table's), for ConsumedCapacity INDEXES.
    /// `locked`: the actions before it are locked; those after it were not looked at (their
    /// lock records would not fit one log entry), and the coordinator sends them again.
    TransactPrepared {
        reasons: Vec<CancellationReasonWire>,
        index_write_units_milli: Vec<IndexWriteUnits>,
        locked: u32,
    },
    /// A transaction's locks at this partition are committed or cancelled (or were already);
    /// `more`: some are left for the next finish (one log entry holds about
    /// 1 MiB of commits). `collections`: for a table with local secondary indexes, each item
    /// collection this finish wrote to, with its size after it (ItemCollectionMetrics).
    /// Added at the end.
    TransactFinished {
        more: bool,
        collections: Vec<CollectionSize>,
    },
    /// A TransactGetItems' items at one partition, in the order asked, each `None` when
    /// missing; `locked`: whether a prepared transaction holds any of them; `applied_slot`:
    /// the slot they were read at (a TransactConfirm's `since`). Added at the end.
    TransactRead {
        items: Vec<Option<Vec<u8>>>,
        locked: bool,
        applied_slot: u64,
    },
    /// Whether none of the items asked about changed since the slot given; `false` also when
    /// the leader cannot tell (it does not remember that far back). Added at the end.
    TransactConfirmed { unchanged: bool },
    /// Locks older than asked, for the recovery loop. Added at the end.
    TransactLocks { locks: Vec<LockWire> },
}

/// Why one action of a transaction could not be prepared (shoal-model
/// `transaction::CancellationCode`, by its code byte), with DynamoDB's message (empty for
/// `None`) and, for a failed condition with ALL_OLD, the item as it was.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CancellationReasonWire {
    pub code: u8,
    pub message: String,
    pub item: Option<Vec<u8>>,
}

/// A lock as the recovery loop sees it: its transaction and when it was prepared.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LockWire {
    pub ledger_key: String,
    pub nonce: u64,
    pub prepared_at_ms: u64,
}

/// A log position: slot and ordinal (shoal-model `stream::RecordPosition`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionWire {
    pub slot: u64,
    pub ordinal: u32,
}

/// One stream record: its position and its bytes (shoal-model `StreamRecord::encode`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StreamRecordWire {
    pub position: PositionWire,
    pub record: Vec<u8>,
}

/// One shard of a stream in one partition: its generation, the slot of the log entry that
/// opened it, when, and its first and last records (absent when it has none left). `closed`:
/// its successor exists. An `ended` shard record only marks where a disabled stream stopped and
/// is not a shard consumers see.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StreamShardWire {
    pub generation: u32,
    pub opened_slot: u64,
    pub opened_ms: u64,
    pub ended: bool,
    pub closed: bool,
    pub first: Option<PositionWire>,
    pub last: Option<PositionWire>,
}

/// One outbox record (shoal-model `index::global`): its position (log slot and ordinal), the
/// GSI it changes, the entry key, and the entry's new value (the projected item in the binary
/// item encoding) or `None` for a delete.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OutboxChange {
    pub slot: u64,
    pub ordinal: u32,
    pub index_number: u8,
    pub entry_key: Vec<u8>,
    pub item: Option<Vec<u8>>,
}

/// The write units (thousandths) one secondary index's changes of a write cost: the index is
/// named by its number among the table's local (`global` false) or global indexes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct IndexWriteUnits {
    pub global: bool,
    pub number: u8,
    pub milli: u64,
}

/// An item collection and its size: its partition key (binary item encoding) and bytes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CollectionSize {
    pub key: Vec<u8>,
    pub bytes: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum NodeResponse {
    Created,
    /// What an item request produced, plus the capacity it consumed, in thousandths of a unit.
    Item {
        result: ItemResult,
        read_units_milli: u64,
        write_units_milli: u64,
    },
    Status {
        node: NodeIdWire,
        shard: u16,
        replicas: Vec<ReplicaStatus>,
    },
    Error(NodeError),
    /// The answer to `DeletePartition`.
    Deleted,
    /// The answer to `ChangeMembership`: the leader's committed membership, its commit slot,
    /// and how far each follower's log is durable. Added at the end (tag 5).
    Membership {
        membership: MembershipWire,
        commit_slot: u64,
        followers: Vec<FollowerMatchWire>,
    },
    /// The answer to `ClusterNodes`: every node the answering node knows, itself included.
    /// Added at the end (tag 6).
    ClusterNodes {
        nodes: Vec<NodeAddressWire>,
    },
    /// The answer to `Loads`: one entry per replica on the shard. Added at the end (tag 7).
    Loads {
        node: NodeIdWire,
        shard: u16,
        replicas: Vec<ReplicaLoad>,
    },
}

/// One replica's traffic over the last seconds, as it measured it (engine/partition
/// src/traffic.rs): the units it answered with, and a cut balancing the keys it was asked
/// for.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLoad {
    pub partition: u64,
    pub epoch: u64,
    /// Read units (thousandths) this replica answered with per second, over the window.
    pub read_milli_per_second: u64,
    /// Write units (thousandths) this replica answered with per second, over the window.
    pub write_milli_per_second: u64,
    /// Key hashes in its sample of recent requests.
    pub samples: u32,
    /// The first hash of the right side of the cut that gives each side half of the sampled
    /// keys; `None` when no cut leaves both sides some.
    pub cut: Option<u64>,
    /// The most frequent sampled hash's share of the sample, in thousandths: a single hot
    /// item (or item collection) is not helped by a split.
    pub top_key_permille: u16,
}

/// Why a shard did not serve a request. The routing errors carry hints so a router can retry at
/// the right place instead of being forwarded blindly.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum NodeError {
    /// No replica of this partition lives on this shard.
    WrongOwner { partition: u64 },
    /// This replica is not the leader (or not yet able to serve: no lease, no committed entry
    /// of its own ballot). `leader_hint` is the node it believes leads.
    NotLeader {
        partition: u64,
        leader_hint: Option<NodeIdWire>,
    },
    /// The router's epoch differs from the replica's.
    StaleEpoch { partition: u64, current_epoch: u64 },
    /// A DynamoDB error: exception name (for example `ConditionalCheckFailedException`) and
    /// message, plus, for a failed condition with ReturnValuesOnConditionCheckFailure, the
    /// item in the binary item encoding.
    Dynamo {
        type_name: String,
        message: String,
        item: Option<Vec<u8>>,
    },
    /// The replica is overloaded (its in-flight proposals are at their limit); retry later.
    Busy { partition: u64 },
    /// The request frame or its parameters could not be decoded.
    Malformed { message: String },
    /// Written by nodes of earlier builds for any failure, whether or not the request could
    /// have taken effect; nodes no longer send it. Readers treat it as `OutcomeUnknown`, the
    /// reading that is safe for both.
    Internal { message: String },
    /// The request was certainly not applied and never will be: it was refused before it was
    /// proposed, or its proposal can no longer take effect (its log slot holds another entry;
    /// a refusal by a condition that described a state that did not last). Sending it again,
    /// to this replica or another, is safe. Added after version 1's other variants, so their
    /// archived tags are unchanged (FORMAT.md, "Variants added at the end").
    NotApplied { message: String },
    /// The request may or may not have taken effect, now or later: a write that was proposed
    /// and then lost its leader, a control request still running, an answer that could not be
    /// sent. A write must not be sent again blindly (an `ADD` would apply twice). Added with
    /// `NotApplied`.
    OutcomeUnknown { message: String },
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ResponseFrame {
    pub request_id: u64,
    pub response: NodeResponse,
}

/// Everything the bus carries. One frame holds one `BusMessage`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    /// Several replication messages between the same pair of shards, batched into one frame.
    Replication(Vec<ReplicationEnvelope>),
    Snapshot(SnapshotChunk),
    Request(RequestFrame),
    Response(ResponseFrame),
    /// The first frame on every connection: who is calling. Shards answer requests on any
    /// connection; replication frames are accepted only after a `Hello` from a node.
    Hello {
        from: ShardAddress,
    },
}
