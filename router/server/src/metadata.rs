//! The cluster's metadata, kept as items of partition 0: a replication group like any other,
//! run by the same MultiPaxos partition code as data (the metadata replication group).
//!
//! Layout (partition key `key`, type S; README.md has the attribute list):
//! - `cluster`: the node list with bus addresses and the shards per node, the nodes the
//!   metadata group's replicas are on, and that group's replica move under way, if any.
//! - `counter#partition`: `next`, the next unused partition id (ids are never reused).
//! - `table#<name>`: one table: schema, billing mode, status, creation time, statistics, its
//!   partition list, its tags, the history of its throughput changes and its revision.
//! - `access_keys`: every access key (id, secret, role, tables) and a revision (access.rs).
//! - `autoadmin`: `paused` (BOOL), set by `shoal admin pause|resume`; absent means running
//!   (router/autoadmin.rs).
//! - `autoadmin#lease`: `holder` (N) and `revision` (N): which router's autoadmin is the active
//!   one (router/autoadmin.rs, "One active autoadmin").
//!
//! Every read is strongly consistent (`ConsistentRead: true`), served by the metadata leader
//! under its lease, so a router never acts on metadata older than the last acknowledged write.
//!
//! # Invariants of a table item
//! 1. A change is a read, a modification and a conditional replace on the status and the
//!    `revision` that were read; the writer stores `revision + 1`. Two routers changing one
//!    table never both succeed from the same read (no lost update of tags or throughput).
//! 2. Members added after the first format are optional when read: a table item written by an
//!    older router decodes with `revision` 0, no tags, no throughput history, and a
//!    pay-per-request time equal to its creation time if it is on demand (the time DynamoDB
//!    reports for a table created on demand). Writers always write them.
//! 3. Tag keys are unique (a map), at most `validate::TAGS_PER_RESOURCE_MAX`.
//! 4. `pending_replicas` lists the replicas (partition, node) of an ACTIVE table whose
//!    `CreatePartition` no node has acknowledged yet: each is in its partition's replica set,
//!    and every partition has a majority of its replicas created, so it serves without them.
//!    Requests are never routed to a pending replica ([`TableRecord::routed_partitions`]);
//!    the router's repair pass creates them once their nodes answer and removes them from the
//!    list. The member is absent when the list is empty, so a scan finds the tables that have
//!    some by `attribute_exists`.
//! 5. A replica of a data partition is created (`CreatePartition` or `JoinPartition` sent)
//!    on a node only after a table item listing that node for that partition has been
//!    written: in the partition's replicas, or as the target of its replica move (invariant
//!    7). A node leaves a partition's listing only when a move of its replica away has ended
//!    (the replica is no member of the group any more) or with the whole item. So a replica
//!    that a node hosts at some moment, which no table item lists on that node at a later
//!    moment (read strongly), belongs to a table that was deleted or whose creation was
//!    abandoned, or was moved away: nothing will ever route to it again, and the repair pass
//!    may delete it (`Router::collect_orphan_replicas`). Partition splits and index creation,
//!    when built, must list a new partition in the item before creating its replicas.
//! 6. A table's first partition id names its incarnation (ids are never reused): every
//!    conditional write of a table item also requires the incarnation read, so a router that
//!    read a table which was deleted and created again meanwhile never changes the new one.
//!    `changed_at_ms` is the writer's wall clock at each write; the repair pass uses it (and
//!    its own observation) to tell an unfinished CreateTable or DeleteTable whose router died
//!    from one still running (router/server README.md, "the control-plane state machine").
//! 7. `replica_moves` lists the replica moves under way (`shoal_autoadmin::replica_move`, driven
//!    by the router's autoadmin, router/autoadmin.rs), at most one per partition, each with an
//!    id drawn when it is recorded. A move's record is written before its target is asked to
//!    join. Once joined, before it is added to the group, the target is appended to the
//!    partition's replicas (`target_routed`), so that a leader elected among the new members
//!    is one a router can find. A target given up is removed from the group first, then
//!    replaced in the record (and unlisted) by another. The move's end drops the source from
//!    the replicas and from `pending_replicas`, and the record, in one write. The member is
//!    absent when there is no move, so a scan finds the tables that have some by
//!    `attribute_exists`.
//! 8. `partition_splits` lists the splits under way (`shoal_autoadmin::split`, driven by
//!    router/splits.rs), at most one per partition, each with an id drawn when it is recorded.
//!    A split's record names the two children (their ids drawn from the partition counter, their
//!    epoch) and the parent's replicas, and is written before `SplitPartition` is sent: the
//!    children are listed on those nodes (invariant 5) before any node builds them, and the
//!    parent stays listed there until the record is gone, after it was replaced by the
//!    children in `partitions`, or in its global index's partitions (`routed`, one write). A partition with a split under way gets
//!    no replica move, and one with a move gets no split. The member is absent when there is
//!    no split.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};
use shoal_model::key::{KeyAttribute, KeySchema, KeyType};
use shoal_model::request::{ItemOperation, PreparedRequest, prepare};
use shoal_wire::messages::{KeySchemaWire, KeyTypeWire, MembershipWire, NodeRequest, NodeResponse};

use crate::error::DynamoError;
use crate::forward::{ForwardError, Forwarder, ItemCall, render_result};
use crate::on_demand::OnDemandMaximum;
use crate::partition_map::{HashRange, NodeDirectory, NodeId, PartitionEntry};
use crate::table_settings::TableSettings;

/// The metadata group's partition id. Data partitions are numbered from 1.
pub const METADATA_PARTITION: u64 = 0;
/// The metadata group's epoch. Its replicas move (`ClusterRecord::metadata_replicas`) by
/// membership change, like a data partition's, which keeps the epoch.
pub const METADATA_EPOCH: u64 = 1;
/// The metadata group lives on this shard of its nodes.
pub const METADATA_SHARD: u16 = 0;
/// Metadata replicas: the cluster's first nodes (the lowest ids), up to this many; the
/// autoadmin moves them off nodes that die or are decommissioned.
pub const METADATA_REPLICAS_MAX: usize = 3;
/// A metadata store whose listed replicas all fail asks every node where the group is
/// (`MetadataStore::rediscover`) at most this often.
const METADATA_REDISCOVERY_INTERVAL_MIN: Duration = Duration::from_secs(1);
/// Nodes asked at once when the metadata group is looked for.
const METADATA_REDISCOVERY_IN_FLIGHT_MAX: usize = 16;
/// Nodes in a cluster at most. Each shard takes an inbound connection from the same shard of
/// every other node, and from routers and tools: half of the bus's inbound connections per
/// shard (`shoal_bus` INBOUND_CONNECTIONS_MAX, 1024) leaves the other half to those. A cluster
/// item of that many nodes stays far below DynamoDB's 400 KB item limit.
pub const NODES_MAX: usize = 512;
/// The first data partition id.
pub const FIRST_DATA_PARTITION: u64 = 1;
/// The metadata key attribute.
pub const KEY_ATTRIBUTE: &str = "key";
pub const CLUSTER_KEY: &str = "cluster";
pub const PARTITION_COUNTER_KEY: &str = "counter#partition";
pub const TABLE_KEY_PREFIX: &str = "table#";
pub const AUTOADMIN_KEY: &str = "autoadmin";
/// The autoadmin's lease (router/autoadmin.rs, "One active autoadmin"): `holder` N, the
/// holding router's id, and `revision` N, bumped by every renewal.
pub const AUTOADMIN_LEASE_KEY: &str = "autoadmin#lease";
/// The table item's member listing replicas not created yet (invariant 4).
pub const PENDING_REPLICAS_ATTRIBUTE: &str = "pending_replicas";
/// The table item's member listing replica moves under way (invariant 7).
pub const REPLICA_MOVES_ATTRIBUTE: &str = "replica_moves";
/// The table item's first partition id at creation (invariant 6), which splits do not change.
pub const INCARNATION_ATTRIBUTE: &str = "incarnation";
/// The table item's member listing partition splits under way (invariant 8).
pub const PARTITION_SPLITS_ATTRIBUTE: &str = "partition_splits";
/// The table item's attribute naming the TTL attribute, present only while TTL is enabled.
/// The table item's (and a global index map's) OnDemandThroughput maximums, in request units
/// per second; each absent when not set.
const ON_DEMAND_READ_ATTRIBUTE: &str = "on_demand_max_read";
const ON_DEMAND_WRITE_ATTRIBUTE: &str = "on_demand_max_write";
pub const TIME_TO_LIVE_ATTRIBUTE: &str = "time_to_live_attribute";
/// Pages of a metadata scan (ListTables) at most; each page is up to 1 MB of metadata.
pub const METADATA_SCAN_PAGES_MAX: usize = 1024;
/// Bootstrap waits this long at most for the metadata group to form and accept a write.
pub const BOOTSTRAP_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between bootstrap attempts at a node that did not answer yet.
const BOOTSTRAP_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// A node and the bus address of its shard 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    pub id: NodeId,
    pub address: SocketAddr,
}

/// The cluster item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterRecord {
    pub nodes: Vec<NodeAddress>,
    /// Nodes being decommissioned (`shoal admin decommission`): the autoadmin moves their
    /// replicas away, no new replica is placed on them, and once no table lists them they leave
    /// `nodes`. The member is absent when there are none (and in items written before it).
    pub draining: BTreeSet<NodeId>,
    pub shards_per_node: u16,
    pub created_at_seconds: u64,
    /// The highest node id the cluster ever had: a joining node needs a higher one, so that no
    /// id is ever reused (a decommissioned node's replicas, records and metrics keep meaning
    /// that node). Absent in items written before node join: the highest id listed then.
    pub highest_node_id: NodeId,
    /// Bumped by every write of the item, which is conditional on the revision read
    /// ([`MetadataStore::put_cluster`]): a join, a decommission and its end may race from
    /// different routers. Absent (0) in items written before it.
    pub revision: u64,
    /// The nodes the metadata group's replicas are on, a move's target included from when it
    /// has joined, before it is added (as a table's partition lists it, invariant 7), sorted. Absent in items
    /// written before the group could move: then the lowest ids, up to
    /// [`METADATA_REPLICAS_MAX`], where the group was created ([`metadata_replicas`]).
    pub metadata_replicas: Vec<NodeId>,
    /// Whether the item had `metadata_replicas` (every write since the group could move has
    /// it). When it did not, the list above is the lowest ids by assumption: a router of an
    /// older version may have rewritten the item after a move and dropped the real list. The
    /// autoadmin then writes the list only once the nodes confirm it, and until then neither
    /// moves the group nor deletes a replica of it as an orphan.
    pub metadata_replicas_recorded: bool,
    /// The metadata group's replica move under way (router/autoadmin.rs), recorded before its
    /// first step like a table partition's (invariant 7). Absent when there is none.
    pub metadata_move: Option<ReplicaMoveRecord>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Billing {
    PayPerRequest,
    Provisioned {
        read_capacity_units: u64,
        write_capacity_units: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableStatus {
    Creating,
    Active,
    Deleting,
}

impl TableStatus {
    pub fn name(self) -> &'static str {
        match self {
            TableStatus::Creating => "CREATING",
            TableStatus::Active => "ACTIVE",
            TableStatus::Deleting => "DELETING",
        }
    }

    fn parse(text: &str) -> Option<TableStatus> {
        match text {
            "CREATING" => Some(TableStatus::Creating),
            "ACTIVE" => Some(TableStatus::Active),
            "DELETING" => Some(TableStatus::Deleting),
            _ => None,
        }
    }
}

/// The unix day (UTC) of a time in unix milliseconds: DynamoDB counts throughput decreases per
/// UTC day.
pub const MILLISECONDS_PER_DAY: u64 = 86_400_000;

/// What DescribeTable reports about a table's provisioned throughput changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThroughputHistory {
    /// The last UpdateTable that raised read or write capacity (unix milliseconds).
    pub last_increase_ms: Option<u64>,
    /// The last UpdateTable that lowered read or write capacity (unix milliseconds).
    pub last_decrease_ms: Option<u64>,
    /// The UTC day (unix days) that `decreases` counts.
    pub decreases_day: u64,
    /// Decreases on `decreases_day`; one UpdateTable lowering both counts once.
    pub decreases: u64,
}

impl ThroughputHistory {
    /// NumberOfDecreasesToday at `now_ms`: the count restarts at 00:00 UTC.
    pub fn decreases_today(&self, now_ms: u64) -> u64 {
        if now_ms / MILLISECONDS_PER_DAY == self.decreases_day {
            self.decreases
        } else {
            0
        }
    }
}

/// A table item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRecord {
    pub name: String,
    pub key_schema: KeySchema,
    /// As CreateTable gave them (only key attributes are allowed without indexes).
    pub attribute_definitions: Vec<(String, KeyType)>,
    pub billing: Billing,
    /// OnDemandThroughput's maximums of an on-demand table (on_demand.rs); none in items
    /// written before they existed (invariant 2).
    pub on_demand: OnDemandMaximum,
    pub status: TableStatus,
    pub created_at_seconds: u64,
    /// Estimates for DescribeTable, refreshed from the partitions' status.
    pub item_count: u64,
    pub size_bytes: u64,
    /// In hash order; leader hints are not stored.
    pub partitions: Vec<PartitionEntry>,
    /// TagResource's and CreateTable's tags, by key (invariant 3).
    pub tags: BTreeMap<String, String>,
    pub throughput_history: ThroughputHistory,
    /// When the table last became PAY_PER_REQUEST (its creation, if created so), in unix
    /// milliseconds: DescribeTable's LastUpdateToPayPerRequestDateTime. `None` for a table that
    /// was never on demand.
    pub pay_per_request_since_ms: Option<u64>,
    /// Incremented by every replace (invariant 1).
    pub revision: u64,
    /// Replicas (partition id, node) not created yet (invariant 4).
    pub pending_replicas: BTreeSet<(u64, NodeId)>,
    /// Replica moves under way, by partition id (invariant 7).
    pub replica_moves: BTreeMap<u64, ReplicaMoveRecord>,
    /// Partition splits under way, by parent partition id (invariant 8).
    pub partition_splits: BTreeMap<u64, PartitionSplitRecord>,
    /// The table's first partition id at its creation, its incarnation (invariant 6), kept
    /// in the item's `incarnation` since a split may replace that partition; `None` in a
    /// record not read from an item yet (then the first partition's id), and an item written
    /// before splits existed has none (then its first partition's id, which no split changed).
    pub incarnation_id: Option<u64>,
    /// When the item was last written, in unix milliseconds of the writer's wall clock
    /// (invariant 6); 0 in items written before it existed.
    pub changed_at_ms: u64,
    /// The table's local secondary indexes, fixed at creation (invariant 2: the member is
    /// absent when there are none, as in items written before indexes existed).
    pub local_indexes: Vec<shoal_model::index::LocalIndex>,
    /// Encryption, table class and deletion protection (table_settings.rs); the defaults in
    /// items written before they existed (invariant 2).
    pub settings: TableSettings,
    /// UpdateTimeToLive's setting (router/server README.md, "Time to Live").
    pub time_to_live: TimeToLiveSetting,
    /// The table's global secondary indexes, each with its own partitions (invariant 2: the
    /// member is absent when there are none). Their partitions are listed here before any of
    /// their replicas is created, as the table's are (invariant 5).
    pub global_indexes: Vec<GlobalIndexRecord>,
    /// Index numbers given to global indexes so far: a new one gets the next (numbers are never
    /// reused, so an outbox record of a deleted index never reaches a new one). Absent in
    /// items written before UpdateTable could add indexes: then one past the highest in use.
    pub global_index_numbers_used: u16,
    /// The table's streams, oldest first (invariant 2: absent when it never had one).
    pub streams: Vec<TableStream>,
}

/// A partition split under way (invariant 8; shoal_autoadmin::split).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSplitRecord {
    /// Drawn when the split is recorded: a driver acts only while the record it drives has it.
    pub id: u64,
    /// The parent's epoch and range, as the parent's entry had them when the split was
    /// recorded (the entry is gone once routed).
    pub parent_epoch: u64,
    pub range: HashRange,
    pub shard: u16,
    /// The parent's replicas: where the children are built.
    pub replicas: Vec<NodeId>,
    /// The cut: the left child takes the hashes below it, the right child the others.
    pub at_hash: u64,
    pub left: u64,
    pub right: u64,
    /// Both children's epoch.
    pub epoch: u64,
    /// The children replaced the parent in the table's partitions.
    pub routed: bool,
}

impl PartitionSplitRecord {
    /// The children's entries in the partition map (routed with the parent's replicas, on its
    /// shard).
    pub fn children(&self) -> [PartitionEntry; 2] {
        let child = |id: u64, range: HashRange| PartitionEntry {
            id,
            range,
            replicas: self.replicas.clone(),
            shard: self.shard,
            epoch: self.epoch,
            leader_hint: None,
        };
        [
            child(
                self.left,
                HashRange {
                    first: self.range.first,
                    last: self.at_hash - 1,
                },
            ),
            child(
                self.right,
                HashRange {
                    first: self.at_hash,
                    last: self.range.last,
                },
            ),
        ]
    }
}

fn partition_split_json(parent: u64, record: &PartitionSplitRecord) -> Json {
    json!({ "M": {
        "parent": number(parent),
        "id": number(record.id),
        "parent_epoch": number(record.parent_epoch),
        "first": number(record.range.first),
        "last": number(record.range.last),
        "shard": number(u64::from(record.shard)),
        "replicas": { "L": record.replicas.iter().map(|node| number(*node)).collect::<Vec<_>>() },
        "at_hash": number(record.at_hash),
        "left": number(record.left),
        "right": number(record.right),
        "epoch": number(record.epoch),
        "routed": { "BOOL": record.routed },
    }})
}

/// Invariant 8's member: absent in items without splits.
fn partition_splits_from(item: &Json) -> Result<BTreeMap<u64, PartitionSplitRecord>, DynamoError> {
    let mut splits = BTreeMap::new();
    if item.get(PARTITION_SPLITS_ATTRIBUTE).is_none() {
        return Ok(splits);
    }
    for entry in get_list(item, PARTITION_SPLITS_ATTRIBUTE)? {
        let map = get_map(entry, "partition split")?;
        let replicas = node_list(map, "replicas")?;
        let record = PartitionSplitRecord {
            id: get_number(map, "id")?,
            parent_epoch: get_number(map, "parent_epoch")?,
            range: HashRange {
                first: get_number(map, "first")?,
                last: get_number(map, "last")?,
            },
            shard: u16::try_from(get_number(map, "shard")?)
                .map_err(|_| corrupt("shard too large"))?,
            replicas,
            at_hash: get_number(map, "at_hash")?,
            left: get_number(map, "left")?,
            right: get_number(map, "right")?,
            epoch: get_number(map, "epoch")?,
            routed: map
                .get("routed")
                .and_then(|value| value.get("BOOL"))
                .and_then(Json::as_bool)
                .ok_or_else(|| corrupt("routed is not a boolean"))?,
        };
        if record.at_hash <= record.range.first || record.at_hash > record.range.last {
            return Err(corrupt("a split's cut is outside its partition's range"));
        }
        if splits.insert(get_number(map, "parent")?, record).is_some() {
            return Err(corrupt("two splits of one partition"));
        }
    }
    Ok(splits)
}

/// A replica move under way (invariant 7): the partition's replica on `source` goes to
/// `target`, on the partition's shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaMoveRecord {
    /// Drawn when the move is recorded: a driver acts only while the record it drives has it
    /// (router/autoadmin.rs, fencing).
    pub id: u64,
    pub source: NodeId,
    pub target: NodeId,
    /// The source's node was down when the move began: it is removed first and never asked to
    /// delete its replica (shoal_autoadmin::replica_move).
    pub source_dead: bool,
    /// The target has caught up and is in the partition's replicas; the source's removal
    /// comes next.
    pub target_routed: bool,
}

/// A global secondary index of a table: its definition, its partitions (placed and numbered
/// like a table's, in hash order of the index partition key) and its provisioned throughput
/// (`None` on demand).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalIndexRecord {
    pub index: shoal_model::index::global::GlobalIndex,
    pub partitions: Vec<PartitionEntry>,
    pub throughput: Option<crate::validate::Throughput>,
    /// OnDemandThroughput's maximums of an on-demand table's index (none in items written
    /// before they existed, invariant 2).
    pub on_demand: OnDemandMaximum,
    /// CREATING (UpdateTable added it; its backfill is under way), ACTIVE, or DELETING.
    pub status: GlobalIndexStatus,
    /// While CREATING: the base partitions whose backfill is done.
    pub backfilled: BTreeSet<u64>,
    /// When UpdateTable added the index (its writer's wall clock, unix milliseconds); 0 for an
    /// index created with its table.
    pub added_at_ms: u64,
}

/// Where a global secondary index is in its life (DescribeTable's IndexStatus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalIndexStatus {
    Creating,
    Active,
    Deleting,
}

impl GlobalIndexStatus {
    pub fn name(self) -> &'static str {
        match self {
            GlobalIndexStatus::Creating => "CREATING",
            GlobalIndexStatus::Active => "ACTIVE",
            GlobalIndexStatus::Deleting => "DELETING",
        }
    }

    fn parse(text: &str) -> Option<GlobalIndexStatus> {
        match text {
            "CREATING" => Some(GlobalIndexStatus::Creating),
            "ACTIVE" => Some(GlobalIndexStatus::Active),
            "DELETING" => Some(GlobalIndexStatus::Deleting),
            _ => None,
        }
    }
}

/// The table item's member present while some global index is CREATING or DELETING, so that
/// the repair pass finds the tables whose index change a router must finish.
pub const GLOBAL_INDEXES_CHANGING_ATTRIBUTE: &str = "global_indexes_changing";

/// The table item's member present while the table's latest stream is ENABLING or DISABLING,
/// so that the repair pass finds the tables whose stream change a router must finish.
pub const STREAMS_CHANGING_ATTRIBUTE: &str = "streams_changing";

/// Where a table's stream is in its life (DescribeStream's StreamStatus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamStatus {
    /// Its partitions are being told to record changes (`settled`: those that do).
    Enabling,
    Enabled,
    /// Its partitions are being told to stop (`settled`: those that did).
    Disabling,
    /// No partition records for it; its records stay readable for the retention.
    Disabled,
}

impl StreamStatus {
    pub fn name(self) -> &'static str {
        match self {
            StreamStatus::Enabling => "ENABLING",
            StreamStatus::Enabled => "ENABLED",
            StreamStatus::Disabling => "DISABLING",
            StreamStatus::Disabled => "DISABLED",
        }
    }

    fn parse(text: &str) -> Option<StreamStatus> {
        [
            StreamStatus::Enabling,
            StreamStatus::Enabled,
            StreamStatus::Disabling,
            StreamStatus::Disabled,
        ]
        .into_iter()
        .find(|status| status.name() == text)
    }

    /// ENABLING or ENABLED: the table's StreamSpecification says enabled.
    pub fn is_on(self) -> bool {
        matches!(self, StreamStatus::Enabling | StreamStatus::Enabled)
    }
}

/// One stream a table has had (router/server README.md, "Streams"): the newest is the
/// table's latest stream; older ones are disabled and listed until their records are past the
/// retention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableStream {
    /// The stream's creation time in unix milliseconds of its router's wall clock: its id in
    /// the partitions (shoal_model::stream) and its label. Each is above the table's earlier
    /// streams'.
    pub id: u64,
    pub view: shoal_model::stream::ViewType,
    pub status: StreamStatus,
    /// While ENABLING or DISABLING: the base partitions whose configuration already follows.
    pub settled: BTreeSet<u64>,
    /// When it was disabled (unix milliseconds), once it was.
    pub disabled_at_ms: Option<u64>,
}

fn streams_json(streams: &[TableStream]) -> Json {
    let list: Vec<Json> = streams
        .iter()
        .map(|stream| {
            let settled: Vec<Json> = stream.settled.iter().map(|id| number(*id)).collect();
            let mut map = json!({
                "id": number(stream.id),
                "view": string(stream.view.as_str()),
                "status": string(stream.status.name()),
                "settled": { "L": settled },
            });
            if let Some(at) = stream.disabled_at_ms {
                map["disabled_at_ms"] = number(at);
            }
            json!({ "M": map })
        })
        .collect();
    json!({ "L": list })
}

/// A list of partition ids (Numbers) in a table item.
fn partition_ids(list: &[Json]) -> Result<BTreeSet<u64>, DynamoError> {
    list.iter()
        .map(|id| {
            id.get("N")
                .and_then(Json::as_str)
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| corrupt("a partition in a list is not an id"))
        })
        .collect()
}

/// The `streams` member (invariant 2: absent in items of tables that never had a stream).
fn streams_from(item: &Json) -> Result<Vec<TableStream>, DynamoError> {
    if item.get("streams").is_none() {
        return Ok(Vec::new());
    }
    get_list(item, "streams")?
        .iter()
        .map(|entry| {
            let map = get_map(entry, "a stream")?;
            Ok(TableStream {
                id: get_number(map, "id")?,
                view: shoal_model::stream::ViewType::parse(get_string(map, "view")?)
                    .ok_or_else(|| corrupt("unknown stream view type"))?,
                status: StreamStatus::parse(get_string(map, "status")?)
                    .ok_or_else(|| corrupt("unknown stream status"))?,
                settled: partition_ids(get_list(map, "settled")?)?,
                disabled_at_ms: get_optional_number(map, "disabled_at_ms")?,
            })
        })
        .collect()
}

/// A table's Time to Live: the attribute that holds each item's expiry while TTL is enabled,
/// and when UpdateTimeToLive last changed it. Both are absent from items written before TTL
/// existed, which read as never configured (invariant 2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeToLiveSetting {
    /// `Some` while enabled: the sweepers of the table's partition leaders delete items whose
    /// attribute of this name holds an expired epoch-seconds Number.
    pub attribute: Option<String>,
    /// The last UpdateTimeToLive that changed the setting, in unix milliseconds of its router's
    /// wall clock; `None` if none ever did.
    pub changed_at_ms: Option<u64>,
}

fn string(text: &str) -> Json {
    json!({ "S": text })
}

fn number(value: u64) -> Json {
    json!({ "N": value.to_string() })
}

fn corrupt(what: &str) -> DynamoError {
    DynamoError::internal(format!("Internal server error (metadata item: {what})"))
}

fn get_string<'item>(item: &'item Json, name: &str) -> Result<&'item str, DynamoError> {
    item.get(name)
        .and_then(|value| value.get("S"))
        .and_then(Json::as_str)
        .ok_or_else(|| corrupt(&format!("{name} is not a string")))
}

/// A member added after the first format: absent in older items (invariant 2).
fn get_optional_number(item: &Json, name: &str) -> Result<Option<u64>, DynamoError> {
    match item.get(name) {
        None => Ok(None),
        Some(_) => get_number(item, name).map(Some),
    }
}

fn get_number(item: &Json, name: &str) -> Result<u64, DynamoError> {
    item.get(name)
        .and_then(|value| value.get("N"))
        .and_then(Json::as_str)
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| corrupt(&format!("{name} is not an unsigned number")))
}

fn get_list<'item>(item: &'item Json, name: &str) -> Result<&'item Vec<Json>, DynamoError> {
    item.get(name)
        .and_then(|value| value.get("L"))
        .and_then(Json::as_array)
        .ok_or_else(|| corrupt(&format!("{name} is not a list")))
}

fn get_map<'item>(value: &'item Json, what: &str) -> Result<&'item Json, DynamoError> {
    value
        .get("M")
        .ok_or_else(|| corrupt(&format!("{what} is not a map")))
}

pub fn key_type_from_name(name: &str) -> Option<KeyType> {
    match name {
        "S" => Some(KeyType::String),
        "N" => Some(KeyType::Number),
        "B" => Some(KeyType::Binary),
        _ => None,
    }
}

fn key_attribute_json(attribute: &KeyAttribute) -> Json {
    json!({ "M": {
        "name": string(&attribute.name),
        "type": string(attribute.key_type.type_name()),
    }})
}

fn key_attribute_from(value: &Json) -> Result<KeyAttribute, DynamoError> {
    let map = get_map(value, "key attribute")?;
    Ok(KeyAttribute {
        name: get_string(map, "name")?.to_string(),
        key_type: key_type_from_name(get_string(map, "type")?)
            .ok_or_else(|| corrupt("unknown key type"))?,
    })
}

fn partition_json(partition: &PartitionEntry) -> Json {
    json!({ "M": {
        "id": number(partition.id),
        "first": number(partition.range.first),
        "last": number(partition.range.last),
        "replicas": { "L": partition.replicas.iter().map(|node| number(*node)).collect::<Vec<_>>() },
        "shard": number(u64::from(partition.shard)),
        "epoch": number(partition.epoch),
    }})
}

/// A list member of node ids (`{"L": [{"N": ...}, ...]}`).
fn node_list(map: &Json, name: &str) -> Result<Vec<NodeId>, DynamoError> {
    get_list(map, name)?
        .iter()
        .map(|node| {
            node.get("N")
                .and_then(Json::as_str)
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| corrupt("a replica is not a node id"))
        })
        .collect()
}

fn partition_from(value: &Json) -> Result<PartitionEntry, DynamoError> {
    let map = get_map(value, "partition")?;
    let replicas = node_list(map, "replicas")?;
    Ok(PartitionEntry {
        id: get_number(map, "id")?,
        range: HashRange {
            first: get_number(map, "first")?,
            last: get_number(map, "last")?,
        },
        replicas,
        shard: u16::try_from(get_number(map, "shard")?).map_err(|_| corrupt("shard too large"))?,
        epoch: get_number(map, "epoch")?,
        leader_hint: None,
    })
}

/// The `global_indexes` member (invariant 2: absent without GSIs): each index's definition
/// (index_definitions.rs), its partitions as the table's are written, and its throughput.
fn global_indexes_from(item: &Json) -> Result<Vec<GlobalIndexRecord>, DynamoError> {
    let Some(member) = item.get("global_indexes") else {
        return Ok(Vec::new());
    };
    member
        .get("L")
        .and_then(Json::as_array)
        .ok_or_else(|| corrupt("global_indexes is not a list"))?
        .iter()
        .map(|entry| {
            let map = get_map(entry, "a global index")?;
            let read = get_optional_number(map, "read_capacity_units")?;
            let write = get_optional_number(map, "write_capacity_units")?;
            let status = match map.get("status") {
                None => GlobalIndexStatus::Active,
                Some(_) => GlobalIndexStatus::parse(get_string(map, "status")?)
                    .ok_or_else(|| corrupt("unknown index status"))?,
            };
            let backfilled = match map.get("backfilled") {
                None => BTreeSet::new(),
                Some(_) => partition_ids(get_list(map, "backfilled")?)?,
            };
            Ok(GlobalIndexRecord {
                status,
                backfilled,
                added_at_ms: get_optional_number(map, "added_at_ms")?.unwrap_or(0),
                index: crate::index_definitions::global_index_from(map)?,
                partitions: get_list(map, "partitions")?
                    .iter()
                    .map(partition_from)
                    .collect::<Result<Vec<_>, DynamoError>>()?,
                throughput: match (read, write) {
                    (Some(read), Some(write)) => Some(crate::validate::Throughput {
                        read_capacity_units: read,
                        write_capacity_units: write,
                    }),
                    _ => None,
                },
                on_demand: on_demand_from(map)?,
            })
        })
        .collect()
}

/// The maximums of [`ON_DEMAND_READ_ATTRIBUTE`] and [`ON_DEMAND_WRITE_ATTRIBUTE`], each absent
/// when not set (and in every item written before they existed, invariant 2).
fn on_demand_from(map: &Json) -> Result<OnDemandMaximum, DynamoError> {
    Ok(OnDemandMaximum {
        read: get_optional_number(map, ON_DEMAND_READ_ATTRIBUTE)?,
        write: get_optional_number(map, ON_DEMAND_WRITE_ATTRIBUTE)?,
    })
}

/// Invariant 7's member: absent in items without replica moves.
fn replica_moves_from(item: &Json) -> Result<BTreeMap<u64, ReplicaMoveRecord>, DynamoError> {
    let mut moves = BTreeMap::new();
    if item.get(REPLICA_MOVES_ATTRIBUTE).is_none() {
        return Ok(moves);
    }
    for entry in get_list(item, REPLICA_MOVES_ATTRIBUTE)? {
        let map = get_map(entry, "replica move")?;
        let record = replica_move_from(map)?;
        if moves
            .insert(get_number(map, "partition")?, record)
            .is_some()
        {
            return Err(corrupt("two replica moves of one partition"));
        }
    }
    Ok(moves)
}

/// One replica move's record (a table item's `replica_moves` entry, without its `partition`;
/// the cluster item's `metadata_move`).
fn replica_move_from(map: &Json) -> Result<ReplicaMoveRecord, DynamoError> {
    let flag = |name: &str| {
        map.get(name)
            .and_then(|value| value.get("BOOL"))
            .and_then(Json::as_bool)
            .ok_or_else(|| corrupt(&format!("{name} is not a boolean")))
    };
    Ok(ReplicaMoveRecord {
        id: get_number(map, "id")?,
        source: get_number(map, "source")?,
        target: get_number(map, "target")?,
        source_dead: flag("source_dead")?,
        target_routed: flag("target_routed")?,
    })
}

/// The JSON of a replica move's record, with the partition it moves when it is a table's.
fn replica_move_json(partition: Option<u64>, record: &ReplicaMoveRecord) -> Json {
    let mut map = json!({
        "id": number(record.id),
        "source": number(record.source),
        "target": number(record.target),
        "source_dead": { "BOOL": record.source_dead },
        "target_routed": { "BOOL": record.target_routed },
    });
    if let Some(partition) = partition {
        map["partition"] = number(partition);
    }
    json!({ "M": map })
}

/// Invariant 4's member: absent in items without pending replicas (and in every item written
/// before it existed, invariant 2).
fn pending_replicas_from(item: &Json) -> Result<BTreeSet<(u64, NodeId)>, DynamoError> {
    let mut pending = BTreeSet::new();
    if item.get(PENDING_REPLICAS_ATTRIBUTE).is_none() {
        return Ok(pending);
    }
    for replica in get_list(item, PENDING_REPLICAS_ATTRIBUTE)? {
        let map = get_map(replica, "pending replica")?;
        pending.insert((get_number(map, "partition")?, get_number(map, "node")?));
    }
    Ok(pending)
}

impl TableRecord {
    pub fn item_key(name: &str) -> String {
        format!("{TABLE_KEY_PREFIX}{name}")
    }

    /// The table as a metadata item in DynamoDB JSON.
    pub fn to_item(&self) -> Json {
        let mut item = Map::new();
        item.insert(
            KEY_ATTRIBUTE.to_string(),
            string(&Self::item_key(&self.name)),
        );
        item.insert("name".to_string(), string(&self.name));
        item.insert(
            "hash_key".to_string(),
            key_attribute_json(&self.key_schema.partition),
        );
        if let Some(sort) = &self.key_schema.sort {
            item.insert("range_key".to_string(), key_attribute_json(sort));
        }
        let definitions: Vec<Json> = self
            .attribute_definitions
            .iter()
            .map(|(name, key_type)| {
                key_attribute_json(&KeyAttribute {
                    name: name.clone(),
                    key_type: *key_type,
                })
            })
            .collect();
        item.insert(
            "attribute_definitions".to_string(),
            json!({ "L": definitions }),
        );
        let (mode, read, write) = match self.billing {
            Billing::PayPerRequest => ("PAY_PER_REQUEST", 0, 0),
            Billing::Provisioned {
                read_capacity_units,
                write_capacity_units,
            } => ("PROVISIONED", read_capacity_units, write_capacity_units),
        };
        item.insert("billing_mode".to_string(), string(mode));
        item.insert("read_capacity_units".to_string(), number(read));
        item.insert("write_capacity_units".to_string(), number(write));
        item.insert("status".to_string(), string(self.status.name()));
        item.insert("created_at".to_string(), number(self.created_at_seconds));
        item.insert("item_count".to_string(), number(self.item_count));
        item.insert("size_bytes".to_string(), number(self.size_bytes));
        let partitions: Vec<Json> = self.partitions.iter().map(partition_json).collect();
        item.insert("partitions".to_string(), json!({ "L": partitions }));
        let tags: Vec<Json> = self
            .tags
            .iter()
            .map(|(key, value)| json!({ "M": { "key": string(key), "value": string(value) } }))
            .collect();
        item.insert("tags".to_string(), json!({ "L": tags }));
        let history = &self.throughput_history;
        if let Some(at) = history.last_increase_ms {
            item.insert("throughput_last_increase_ms".to_string(), number(at));
        }
        if let Some(at) = history.last_decrease_ms {
            item.insert("throughput_last_decrease_ms".to_string(), number(at));
        }
        item.insert(
            "throughput_decreases_day".to_string(),
            number(history.decreases_day),
        );
        item.insert(
            "throughput_decreases".to_string(),
            number(history.decreases),
        );
        if let Some(at) = self.pay_per_request_since_ms {
            item.insert("pay_per_request_since_ms".to_string(), number(at));
        }
        if let Some(read) = self.on_demand.read {
            item.insert(ON_DEMAND_READ_ATTRIBUTE.to_string(), number(read));
        }
        if let Some(write) = self.on_demand.write {
            item.insert(ON_DEMAND_WRITE_ATTRIBUTE.to_string(), number(write));
        }
        item.insert("revision".to_string(), number(self.revision));
        item.insert("changed_at_ms".to_string(), number(self.changed_at_ms));
        if let Some(attribute) = &self.time_to_live.attribute {
            item.insert(TIME_TO_LIVE_ATTRIBUTE.to_string(), string(attribute));
        }
        if let Some(at) = self.time_to_live.changed_at_ms {
            item.insert("time_to_live_changed_at_ms".to_string(), number(at));
        }
        if !self.local_indexes.is_empty() {
            item.insert(
                "local_indexes".to_string(),
                crate::index_definitions::local_indexes_json(&self.local_indexes),
            );
        }
        if !self.global_indexes.is_empty() {
            let list: Vec<Json> = self
                .global_indexes
                .iter()
                .map(|record| {
                    let mut map = crate::index_definitions::global_index_json(&record.index);
                    let partitions: Vec<Json> =
                        record.partitions.iter().map(partition_json).collect();
                    map["partitions"] = json!({ "L": partitions });
                    if let Some(throughput) = record.throughput {
                        map["read_capacity_units"] = number(throughput.read_capacity_units);
                        map["write_capacity_units"] = number(throughput.write_capacity_units);
                    }
                    if let Some(read) = record.on_demand.read {
                        map[ON_DEMAND_READ_ATTRIBUTE] = number(read);
                    }
                    if let Some(write) = record.on_demand.write {
                        map[ON_DEMAND_WRITE_ATTRIBUTE] = number(write);
                    }
                    map["status"] = string(record.status.name());
                    let backfilled: Vec<Json> =
                        record.backfilled.iter().map(|id| number(*id)).collect();
                    map["backfilled"] = json!({ "L": backfilled });
                    map["added_at_ms"] = number(record.added_at_ms);
                    json!({ "M": map })
                })
                .collect();
            item.insert("global_indexes".to_string(), json!({ "L": list }));
            item.insert(
                "global_index_numbers_used".to_string(),
                number(u64::from(self.global_index_numbers_used)),
            );
            if self
                .global_indexes
                .iter()
                .any(|index| index.status != GlobalIndexStatus::Active)
            {
                item.insert(
                    GLOBAL_INDEXES_CHANGING_ATTRIBUTE.to_string(),
                    json!({ "BOOL": true }),
                );
            }
        }
        if !self.streams.is_empty() {
            item.insert("streams".to_string(), streams_json(&self.streams));
            if self.streams.last().is_some_and(|stream| {
                matches!(
                    stream.status,
                    StreamStatus::Enabling | StreamStatus::Disabling
                )
            }) {
                item.insert(
                    STREAMS_CHANGING_ATTRIBUTE.to_string(),
                    json!({ "BOOL": true }),
                );
            }
        }
        // Invariant 4: absent when empty, so that a scan can filter on its existence.
        if !self.pending_replicas.is_empty() {
            let pending: Vec<Json> = self
                .pending_replicas
                .iter()
                .map(|(partition, node)| {
                    json!({ "M": { "partition": number(*partition), "node": number(*node) } })
                })
                .collect();
            item.insert(
                PENDING_REPLICAS_ATTRIBUTE.to_string(),
                json!({ "L": pending }),
            );
        }
        // Invariant 7: absent when empty, likewise.
        if !self.replica_moves.is_empty() {
            let moves: Vec<Json> = self
                .replica_moves
                .iter()
                .map(|(partition, record)| replica_move_json(Some(*partition), record))
                .collect();
            item.insert(REPLICA_MOVES_ATTRIBUTE.to_string(), json!({ "L": moves }));
        }
        if let Some(incarnation) = self.incarnation() {
            item.insert(INCARNATION_ATTRIBUTE.to_string(), number(incarnation));
        }
        // Invariant 8: absent when empty, likewise.
        if !self.partition_splits.is_empty() {
            let splits: Vec<Json> = self
                .partition_splits
                .iter()
                .map(|(parent, record)| partition_split_json(*parent, record))
                .collect();
            item.insert(
                PARTITION_SPLITS_ATTRIBUTE.to_string(),
                json!({ "L": splits }),
            );
        }
        self.settings.write_to(&mut item);
        Json::Object(item)
    }

    /// The partition `id` (the table's or one of its global indexes'), to change.
    pub fn partition_mut(&mut self, id: u64) -> Option<&mut PartitionEntry> {
        self.partitions
            .iter_mut()
            .chain(
                self.global_indexes
                    .iter_mut()
                    .flat_map(|index| index.partitions.iter_mut()),
            )
            .find(|partition| partition.id == id)
    }

    /// Every (partition, node) this item lists a replica on (invariant 5): the partitions'
    /// replicas and the targets of their moves.
    pub fn listed_replicas(&self) -> impl Iterator<Item = (u64, NodeId)> + '_ {
        self.all_partitions()
            .flat_map(|partition| {
                partition
                    .replicas
                    .iter()
                    .map(move |node| (partition.id, *node))
            })
            .chain(
                self.replica_moves
                    .iter()
                    .map(|(partition, record)| (*partition, record.target)),
            )
            .chain(self.partition_splits.iter().flat_map(|(parent, record)| {
                [*parent, record.left, record.right]
                    .into_iter()
                    .flat_map(|partition| {
                        record.replicas.iter().map(move |node| (partition, *node))
                    })
            }))
    }

    /// The partitions as requests are routed to them: without their pending replicas
    /// (invariant 4), which do not exist on their nodes yet. A node without the replica would
    /// answer WrongOwner, which a router takes for a stale map, not for "try another replica".
    pub fn routed_partitions(&self) -> Vec<PartitionEntry> {
        self.routed(&self.partitions)
    }

    /// [`TableRecord::routed_partitions`] of a global secondary index.
    pub fn routed_index_partitions(&self, index: &GlobalIndexRecord) -> Vec<PartitionEntry> {
        self.routed(&index.partitions)
    }

    /// Every partition of the table: its own, then its global secondary indexes'. What is
    /// created, repaired and deleted with the table.
    pub fn all_partitions(&self) -> impl Iterator<Item = &PartitionEntry> {
        self.partitions.iter().chain(
            self.global_indexes
                .iter()
                .flat_map(|index| index.partitions.iter()),
        )
    }

    /// The global index named `name`, if the table has one.
    pub fn global_index(&self, name: &str) -> Option<&GlobalIndexRecord> {
        self.global_indexes
            .iter()
            .find(|record| record.index.name == name)
    }

    fn routed(&self, partitions: &[PartitionEntry]) -> Vec<PartitionEntry> {
        partitions
            .iter()
            .map(|partition| {
                let mut routed = partition.clone();
                routed
                    .replicas
                    .retain(|node| !self.pending_replicas.contains(&(partition.id, *node)));
                routed
            })
            .collect()
    }

    pub fn from_item(item: &Json) -> Result<TableRecord, DynamoError> {
        let partition = key_attribute_from(
            item.get("hash_key")
                .ok_or_else(|| corrupt("hash_key missing"))?,
        )?;
        let sort = item.get("range_key").map(key_attribute_from).transpose()?;
        let attribute_definitions = get_list(item, "attribute_definitions")?
            .iter()
            .map(|value| key_attribute_from(value).map(|a| (a.name, a.key_type)))
            .collect::<Result<Vec<_>, DynamoError>>()?;
        let billing = match get_string(item, "billing_mode")? {
            "PAY_PER_REQUEST" => Billing::PayPerRequest,
            "PROVISIONED" => Billing::Provisioned {
                read_capacity_units: get_number(item, "read_capacity_units")?,
                write_capacity_units: get_number(item, "write_capacity_units")?,
            },
            _ => return Err(corrupt("unknown billing mode")),
        };
        let created_at_seconds = get_number(item, "created_at")?;
        let mut tags = BTreeMap::new();
        if item.get("tags").is_some() {
            for tag in get_list(item, "tags")? {
                let map = get_map(tag, "tag")?;
                tags.insert(
                    get_string(map, "key")?.to_string(),
                    get_string(map, "value")?.to_string(),
                );
            }
        }
        let pay_per_request_since_ms = match get_optional_number(item, "pay_per_request_since_ms")?
        {
            // Invariant 2: an older on-demand table has been on demand since its creation.
            None if billing == Billing::PayPerRequest => {
                Some(created_at_seconds.saturating_mul(1000))
            }
            since => since,
        };
        let global_indexes = global_indexes_from(item)?;
        let partitions = get_list(item, "partitions")?
            .iter()
            .map(partition_from)
            .collect::<Result<Vec<_>, DynamoError>>()?;
        let incarnation_id = match get_optional_number(item, INCARNATION_ATTRIBUTE)? {
            Some(incarnation) => Some(incarnation),
            // Written before splits existed: no split has replaced its first partition.
            None => partitions.first().map(|partition| partition.id),
        };
        Ok(TableRecord {
            name: get_string(item, "name")?.to_string(),
            key_schema: KeySchema { partition, sort },
            attribute_definitions,
            billing,
            on_demand: on_demand_from(item)?,
            status: TableStatus::parse(get_string(item, "status")?)
                .ok_or_else(|| corrupt("unknown status"))?,
            created_at_seconds,
            item_count: get_number(item, "item_count")?,
            size_bytes: get_number(item, "size_bytes")?,
            partitions,
            tags,
            throughput_history: ThroughputHistory {
                last_increase_ms: get_optional_number(item, "throughput_last_increase_ms")?,
                last_decrease_ms: get_optional_number(item, "throughput_last_decrease_ms")?,
                decreases_day: get_optional_number(item, "throughput_decreases_day")?.unwrap_or(0),
                decreases: get_optional_number(item, "throughput_decreases")?.unwrap_or(0),
            },
            pay_per_request_since_ms,
            revision: get_optional_number(item, "revision")?.unwrap_or(0),
            pending_replicas: pending_replicas_from(item)?,
            replica_moves: replica_moves_from(item)?,
            partition_splits: partition_splits_from(item)?,
            incarnation_id,
            changed_at_ms: get_optional_number(item, "changed_at_ms")?.unwrap_or(0),
            settings: TableSettings::read_from(item)?,
            time_to_live: TimeToLiveSetting {
                attribute: match item.get(TIME_TO_LIVE_ATTRIBUTE) {
                    None => None,
                    Some(_) => Some(get_string(item, TIME_TO_LIVE_ATTRIBUTE)?.to_string()),
                },
                changed_at_ms: get_optional_number(item, "time_to_live_changed_at_ms")?,
            },
            local_indexes: crate::index_definitions::local_indexes_from(item.get("local_indexes"))?,
            global_index_numbers_used: match get_optional_number(item, "global_index_numbers_used")?
            {
                Some(used) => u16::try_from(used).map_err(|_| corrupt("too many index numbers"))?,
                None => global_indexes
                    .iter()
                    .map(|record| u16::from(record.index.number) + 1)
                    .max()
                    .unwrap_or(0),
            },
            global_indexes,
            streams: streams_from(item)?,
        })
    }

    /// The table's incarnation: its first partition id (invariant 6). Every table has at least
    /// one partition; an item without any (corrupt) has none.
    pub fn incarnation(&self) -> Option<u64> {
        self.incarnation_id
            .or_else(|| self.partitions.first().map(|partition| partition.id))
    }

    /// Sets the billing mode and throughput as UpdateTable does, keeping what DescribeTable
    /// reports about the change: the last increase and decrease (one UpdateTable lowering one
    /// capacity and raising the other is both), the decreases of the UTC day, and when the
    /// table last became on demand. A switch between modes is neither an increase nor a
    /// decrease: DynamoDB counts those between provisioned levels only.
    pub fn change_billing(&mut self, billing: Billing, now_ms: u64) {
        match (self.billing, billing) {
            (
                Billing::Provisioned {
                    read_capacity_units: read_before,
                    write_capacity_units: write_before,
                },
                Billing::Provisioned {
                    read_capacity_units: read_after,
                    write_capacity_units: write_after,
                },
            ) => {
                let history = &mut self.throughput_history;
                if read_after > read_before || write_after > write_before {
                    history.last_increase_ms = Some(now_ms);
                }
                if read_after < read_before || write_after < write_before {
                    history.last_decrease_ms = Some(now_ms);
                    let today = now_ms / MILLISECONDS_PER_DAY;
                    history.decreases = history.decreases_today(now_ms).saturating_add(1);
                    history.decreases_day = today;
                }
            }
            (Billing::Provisioned { .. }, Billing::PayPerRequest) => {
                self.pay_per_request_since_ms = Some(now_ms);
                // On demand, the indexes have no throughput of their own either.
                for index in &mut self.global_indexes {
                    index.throughput = None;
                }
            }
            (Billing::PayPerRequest, Billing::Provisioned { .. }) => {
                // Provisioned, no on-demand maximum is left, the table's or its indexes'
                // (ack-api-quirks DDB-TABLE-153).
                self.on_demand = OnDemandMaximum::default();
                for index in &mut self.global_indexes {
                    index.on_demand = OnDemandMaximum::default();
                }
            }
            (Billing::PayPerRequest, Billing::PayPerRequest) => {}
        }
        self.billing = billing;
    }
}

impl ClusterRecord {
    pub fn to_item(&self) -> Json {
        let nodes: Vec<Json> = self
            .nodes
            .iter()
            .map(|node| {
                json!({ "M": {
                    "id": number(node.id),
                    "address": string(&node.address.to_string()),
                }})
            })
            .collect();
        let mut item = json!({
            KEY_ATTRIBUTE: string(CLUSTER_KEY),
            "nodes": { "L": nodes },
            "shards_per_node": number(u64::from(self.shards_per_node)),
            "created_at": number(self.created_at_seconds),
        });
        if !self.draining.is_empty() {
            let draining: Vec<Json> = self.draining.iter().map(|node| number(*node)).collect();
            item["draining"] = json!({ "L": draining });
        }
        item["highest_node_id"] = number(self.highest_node_id);
        item["revision"] = number(self.revision);
        // Only a list that was recorded or confirmed is written: one assumed from an item
        // without it stays assumed, whatever else this write changes.
        if self.metadata_replicas_recorded {
            let metadata: Vec<Json> = self
                .metadata_replicas
                .iter()
                .map(|node| number(*node))
                .collect();
            item["metadata_replicas"] = json!({ "L": metadata });
        }
        if let Some(record) = &self.metadata_move {
            item["metadata_move"] = replica_move_json(None, record);
        }
        item
    }

    pub fn from_item(item: &Json) -> Result<ClusterRecord, DynamoError> {
        let nodes = get_list(item, "nodes")?
            .iter()
            .map(|value| {
                let map = get_map(value, "node")?;
                Ok(NodeAddress {
                    id: get_number(map, "id")?,
                    address: get_string(map, "address")?
                        .parse()
                        .map_err(|_| corrupt("a node address is not HOST:PORT"))?,
                })
            })
            .collect::<Result<Vec<_>, DynamoError>>()?;
        let draining = match item.get("draining") {
            None => BTreeSet::new(),
            Some(_) => get_list(item, "draining")?
                .iter()
                .map(|value| {
                    value
                        .get("N")
                        .and_then(Json::as_str)
                        .and_then(|text| text.parse().ok())
                        .ok_or_else(|| corrupt("a draining node is not a number"))
                })
                .collect::<Result<BTreeSet<NodeId>, DynamoError>>()?,
        };
        let highest_listed = nodes.iter().map(|node| node.id).max().unwrap_or(0);
        let highest_node_id = match item.get("highest_node_id") {
            None => highest_listed,
            Some(_) => get_number(item, "highest_node_id")?,
        };
        if highest_node_id < highest_listed {
            return Err(corrupt("a node id is above the highest node id"));
        }
        let revision = match item.get("revision") {
            None => 0,
            Some(_) => get_number(item, "revision")?,
        };
        let metadata_replicas_recorded = item.get("metadata_replicas").is_some();
        let metadata_replicas = match item.get("metadata_replicas") {
            None => metadata_replicas(&nodes),
            Some(_) => {
                let mut listed = get_list(item, "metadata_replicas")?
                    .iter()
                    .map(|value| {
                        value
                            .get("N")
                            .and_then(Json::as_str)
                            .and_then(|text| text.parse().ok())
                            .ok_or_else(|| corrupt("a metadata replica is not a number"))
                    })
                    .collect::<Result<Vec<NodeId>, DynamoError>>()?;
                listed.sort_unstable();
                listed.dedup();
                listed
            }
        };
        if metadata_replicas.is_empty() && !nodes.is_empty() {
            return Err(corrupt("the metadata group has no replicas"));
        }
        let metadata_move = match item.get("metadata_move") {
            None => None,
            Some(value) => Some(replica_move_from(get_map(value, "metadata move")?)?),
        };
        Ok(ClusterRecord {
            nodes,
            draining,
            shards_per_node: u16::try_from(get_number(item, "shards_per_node")?)
                .map_err(|_| corrupt("shards_per_node too large"))?,
            created_at_seconds: get_number(item, "created_at")?,
            highest_node_id,
            revision,
            metadata_replicas,
            metadata_replicas_recorded,
            metadata_move,
        })
    }

    /// Adds the node `id`, whose shard 0 listens on `address` and which runs `shards` shards,
    /// to the node list (`shoal node --join`). Returns whether the list changed: a node already
    /// listed with the same address is admitted again as it is. Refused (a
    /// ValidationException saying why):
    /// - a shard count other than the cluster's: a partition's replicas sit on the same shard
    ///   index on every node (placement invariant 3);
    /// - an id listed at another address, or ports that overlap another node's (shard `i`
    ///   listens on the port + `i`): two processes would answer for one shard;
    /// - an id at or below [`ClusterRecord::highest_node_id`] that is not listed: ids are never
    ///   reused, so a node that left (or whose join was refused) cannot come back under its
    ///   old id;
    /// - a node list already at [`NODES_MAX`].
    pub fn admit(
        &mut self,
        id: NodeId,
        address: SocketAddr,
        shards: u16,
    ) -> Result<bool, DynamoError> {
        if shards != self.shards_per_node {
            return Err(DynamoError::validation(format!(
                "this node runs {shards} shard(s) and the cluster's nodes run {}; start it with \
                 --shards {}",
                self.shards_per_node, self.shards_per_node
            )));
        }
        if let Some(listed) = self.nodes.iter().find(|node| node.id == id) {
            if listed.address == address {
                return Ok(false);
            }
            return Err(DynamoError::validation(format!(
                "node {id} is already in the cluster at {}; a new node needs a new id",
                listed.address
            )));
        }
        let ports = |base: SocketAddr| {
            u32::from(base.port())..u32::from(base.port()) + u32::from(self.shards_per_node)
        };
        if let Some(listed) = self.nodes.iter().find(|node| {
            node.address.ip() == address.ip() && {
                let (taken, wanted) = (ports(node.address), ports(address));
                taken.start < wanted.end && wanted.start < taken.end
            }
        }) {
            return Err(DynamoError::validation(format!(
                "node {} listens on {} (and the {} port(s) after it, one per shard): {address} \
                 overlaps them",
                listed.id,
                listed.address,
                self.shards_per_node - 1
            )));
        }
        if id <= self.highest_node_id {
            return Err(DynamoError::validation(format!(
                "node id {id} is not new: node ids are never reused, and this cluster has had \
                 ids up to {}; start the node with --node-id {} or higher",
                self.highest_node_id,
                self.highest_node_id + 1
            )));
        }
        if self.nodes.len() >= NODES_MAX {
            return Err(DynamoError::validation(format!(
                "the cluster has {NODES_MAX} nodes, the most it may have"
            )));
        }
        if !self.metadata_replicas_recorded && self.nodes.len() < METADATA_REPLICAS_MAX {
            // The metadata group's nodes are only assumed (the lowest ids, from the node
            // list): a node joining would be assumed to hold one of its replicas.
            return Err(DynamoError::validation(format!(
                "the cluster has {} node(s) and its metadata group's nodes are not recorded \
                 yet (an older router wrote the cluster item); retry once a router of this \
                 version has run its autoadmin",
                self.nodes.len()
            )));
        }
        self.nodes.push(NodeAddress { id, address });
        self.highest_node_id = id;
        Ok(true)
    }

    pub fn directory(&self) -> NodeDirectory {
        NodeDirectory::new(self.nodes.iter().map(|node| (node.id, node.address)))
    }

    /// The nodes new replicas may be placed on: every node but those draining.
    pub fn placement_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .map(|node| node.id)
            .filter(|node| !self.draining.contains(node))
            .collect()
    }
}

/// The metadata replicas for a node list: the lowest ids, up to [`METADATA_REPLICAS_MAX`].
pub fn metadata_replicas(nodes: &[NodeAddress]) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = nodes.iter().map(|node| node.id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(METADATA_REPLICAS_MAX);
    ids
}

/// The wire form of a key schema, for CreatePartition.
/// The metadata partition's key: one string attribute, [`KEY_ATTRIBUTE`].
pub(crate) fn metadata_key_schema() -> KeySchema {
    KeySchema::partition_only(KEY_ATTRIBUTE, KeyType::String)
}

pub fn key_schema_wire(schema: &KeySchema) -> KeySchemaWire {
    let wire_type = |key_type: KeyType| match key_type {
        KeyType::String => KeyTypeWire::String,
        KeyType::Number => KeyTypeWire::Number,
        KeyType::Binary => KeyTypeWire::Binary,
    };
    KeySchemaWire {
        partition_key: (
            schema.partition.name.clone(),
            wire_type(schema.partition.key_type),
        ),
        sort_key: schema
            .sort
            .as_ref()
            .map(|sort| (sort.name.clone(), wire_type(sort.key_type))),
    }
}

/// The condition of a table replace (invariant 1) or removal: the status, revision and
/// incarnation read (invariant 6). An item written before revisions existed has none, which
/// reads as revision 0 (invariant 2).
fn replace_condition(expected_revision: u64) -> &'static str {
    if expected_revision == 0 {
        "#status = :expected AND (attribute_not_exists(#revision) OR #revision = :revision) AND (#incarnation = :incarnation OR (attribute_not_exists(#incarnation) AND #partitions[0].#id = :incarnation))"
    } else {
        "#status = :expected AND #revision = :revision AND (#incarnation = :incarnation OR (attribute_not_exists(#incarnation) AND #partitions[0].#id = :incarnation))"
    }
}

/// The names and values [`replace_condition`] refers to.
fn replace_condition_members(
    expected_status: TableStatus,
    expected_revision: u64,
    incarnation: u64,
) -> (Json, Json) {
    (
        json!({
            "#status": "status",
            "#revision": "revision",
            "#partitions": "partitions",
            "#id": "id",
            "#incarnation": INCARNATION_ATTRIBUTE,
        }),
        json!({
            ":expected": string(expected_status.name()),
            ":revision": number(expected_revision),
            ":incarnation": number(incarnation),
        }),
    )
}

/// The wall clock in unix milliseconds, as `changed_at_ms` records it.
fn unix_millis_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Reads and writes the metadata items through the metadata group's leader.
///
/// Where the group is: a router or node starts from the lowest node ids (where the group was
/// created) and follows the cluster item's `metadata_replicas` once it reads it
/// ([`MetadataStore::set_replicas`]). One that started after the group moved off all of those
/// nodes (or missed the move) finds every listed replica gone, and asks every node it knows
/// which of them host the group ([`MetadataStore::rediscover`]).
pub struct MetadataStore {
    route: RefCell<PartitionEntry>,
    rediscovered_at: std::cell::Cell<Option<Instant>>,
}

fn key_json(key: &str) -> Json {
    json!({ KEY_ATTRIBUTE: string(key) })
}

impl MetadataStore {
    /// The metadata group on `replicas` (see [`metadata_replicas`]).
    pub fn new(replicas: Vec<NodeId>) -> MetadataStore {
        MetadataStore {
            route: RefCell::new(PartitionEntry {
                id: METADATA_PARTITION,
                range: HashRange::ALL,
                replicas,
                shard: METADATA_SHARD,
                epoch: METADATA_EPOCH,
                leader_hint: None,
            }),
            rediscovered_at: std::cell::Cell::new(None),
        }
    }

    pub fn replicas(&self) -> Vec<NodeId> {
        self.route.borrow().replicas.clone()
    }

    /// Routes to `replicas` from now on (the cluster item's `metadata_replicas`, read
    /// strongly). An empty list changes nothing.
    pub fn set_replicas(&self, replicas: &[NodeId]) {
        if replicas.is_empty() {
            return;
        }
        let mut route = self.route.borrow_mut();
        if route.replicas != replicas {
            route.replicas = replicas.to_vec();
            if route
                .leader_hint
                .is_some_and(|leader| !replicas.contains(&leader))
            {
                route.leader_hint = None;
            }
        }
    }

    /// Asks the metadata shard of every node in `forwarder`'s directory whether it hosts the
    /// metadata group, and routes to those that do, the one that says it leads first. At most
    /// once per [`METADATA_REDISCOVERY_INTERVAL_MIN`]; returns whether it found a replica set
    /// other than the one it routed to.
    pub async fn rediscover(&self, forwarder: &Forwarder) -> bool {
        if self
            .rediscovered_at
            .get()
            .is_some_and(|last| last.elapsed() < METADATA_REDISCOVERY_INTERVAL_MIN)
        {
            return false;
        }
        self.rediscovered_at.set(Some(Instant::now()));
        let (hosting, leader) = self.find_group(forwarder).await;
        if hosting.is_empty() {
            return false;
        }
        let changed = self.replicas() != hosting;
        self.set_replicas(&hosting);
        if leader.is_some() {
            self.route.borrow_mut().leader_hint = leader;
        }
        if changed {
            tracing::info!(replicas = ?hosting, "found the metadata group on other nodes");
        }
        changed
    }

    /// The nodes that host a replica of the metadata group, sorted, and the one among them that
    /// says it leads, by asking every node `forwarder` knows, and every node they know.
    pub async fn find_group(&self, forwarder: &Forwarder) -> (Vec<NodeId>, Option<NodeId>) {
        // First the nodes the known nodes know (`ClusterNodes`): the group may have moved onto
        // nodes that joined after this store's list was made.
        let known: Vec<NodeId> = forwarder
            .directory()
            .nodes()
            .map(|(node, _)| node)
            .collect();
        let asks: Vec<_> = known
            .iter()
            .map(|node| forwarder.call_once(*node, METADATA_SHARD, NodeRequest::ClusterNodes))
            .collect();
        let mut directory = forwarder.directory();
        for answer in crate::fan_out::join_bounded(asks, METADATA_REDISCOVERY_IN_FLIGHT_MAX).await {
            if let Ok(NodeResponse::ClusterNodes { nodes }) = answer {
                for node in nodes {
                    if let Ok(address) = node.address.parse() {
                        directory.insert(node.node, address);
                    }
                }
            }
        }
        forwarder.set_directory(directory);
        let nodes: Vec<NodeId> = forwarder
            .directory()
            .nodes()
            .map(|(node, _)| node)
            .collect();
        let asks: Vec<_> = nodes
            .iter()
            .map(|node| async move {
                let answer = forwarder
                    .call_once(*node, METADATA_SHARD, NodeRequest::Status)
                    .await;
                (*node, answer)
            })
            .collect();
        let mut hosting = Vec::new();
        let mut leader = None;
        for (node, answer) in
            crate::fan_out::join_bounded(asks, METADATA_REDISCOVERY_IN_FLIGHT_MAX).await
        {
            let Ok(NodeResponse::Status { replicas, .. }) = answer else {
                continue;
            };
            if let Some(replica) = replicas
                .iter()
                .find(|replica| replica.partition == METADATA_PARTITION)
            {
                hosting.push(node);
                if replica.leader_hint == Some(node) {
                    leader = Some(node);
                }
            }
        }
        hosting.sort_unstable();
        (hosting, leader)
    }

    async fn request(
        &self,
        forwarder: &Forwarder,
        operation: ItemOperation,
        parameters: Json,
        deadline: Instant,
    ) -> Result<Json, ForwardError> {
        let prepared = prepare(operation, &parameters, &metadata_key_schema())
            .map_err(|error| ForwardError::Dynamo(DynamoError::from(error)))?;
        let count_only = matches!(&prepared, PreparedRequest::Range(range) if range.count_only);
        let call = ItemCall::new(&prepared);
        let route = self.route.borrow().clone();
        // The listed replicas get half the time: if the group moved, what is left goes to
        // the replicas the nodes name.
        let now = Instant::now();
        let listed_deadline = now + deadline.saturating_duration_since(now) / 2;
        let reply = match forwarder.forward(&route, &call, listed_deadline).await {
            // Every listed replica answered that it does not host the group, or none answered
            // as its leader in time: the group may have moved. The forwarder would have tried
            // the request again on any replica in both cases (a write whose outcome is unknown
            // ends in OutcomeUnknown, never sent again).
            Err(ForwardError::StaleRoute { .. } | ForwardError::Unavailable { .. })
                if Instant::now() < deadline =>
            {
                self.rediscover(forwarder).await;
                let route = self.route.borrow().clone();
                forwarder.forward(&route, &call, deadline).await?
            }
            outcome => outcome?,
        };
        self.route.borrow_mut().leader_hint = Some(reply.leader);
        render_result(&reply.result, count_only).map_err(ForwardError::Dynamo)
    }

    /// Creates the metadata group's replica on each of its nodes (idempotent: a replica that
    /// exists with the same epoch answers `Created`), retrying nodes still starting up.
    pub async fn create_group(&self, forwarder: &Forwarder) -> Result<(), DynamoError> {
        let deadline = Instant::now() + BOOTSTRAP_DEADLINE;
        let replicas = self.replicas();
        let mut membership = replicas.clone();
        membership.sort_unstable();
        for node in replicas {
            loop {
                let request = NodeRequest::CreatePartition {
                    partition: METADATA_PARTITION,
                    epoch: METADATA_EPOCH,
                    key_schema: KeySchemaWire {
                        partition_key: (KEY_ATTRIBUTE.to_string(), KeyTypeWire::String),
                        sort_key: None,
                    },
                    membership: MembershipWire {
                        full_replicas: membership.clone(),
                        log_replicas: Vec::new(),
                    },
                };
                let problem = match forwarder.call_once(node, METADATA_SHARD, request).await {
                    Ok(NodeResponse::Created) => break,
                    Ok(other) => format!("node {node} answered {other:?}"),
                    Err(problem) => problem.to_string(),
                };
                if Instant::now() >= deadline {
                    return Err(DynamoError::internal(format!(
                        "Internal server error (cannot create the metadata group: {problem})"
                    )));
                }
                glommio::timer::sleep(BOOTSTRAP_RETRY_INTERVAL).await;
            }
        }
        Ok(())
    }

    /// A strongly consistent read of one metadata item.
    pub async fn get(
        &self,
        forwarder: &Forwarder,
        key: &str,
        deadline: Instant,
    ) -> Result<Option<Json>, ForwardError> {
        self.get_item(forwarder, key, true, deadline).await
    }

    /// An eventually consistent read of one metadata item: served by whichever replica is
    /// asked from what it has applied, without the leader's lease. Only for what may be stale
    /// (`node_list::learn_nodes_from_applied_state`).
    pub async fn get_eventual(
        &self,
        forwarder: &Forwarder,
        key: &str,
        deadline: Instant,
    ) -> Result<Option<Json>, ForwardError> {
        self.get_item(forwarder, key, false, deadline).await
    }

    async fn get_item(
        &self,
        forwarder: &Forwarder,
        key: &str,
        consistent: bool,
        deadline: Instant,
    ) -> Result<Option<Json>, ForwardError> {
        let body = self
            .request(
                forwarder,
                ItemOperation::GetItem,
                json!({ "Key": key_json(key), "ConsistentRead": consistent }),
                deadline,
            )
            .await?;
        Ok(body.get("Item").cloned())
    }

    /// Replaces the cluster item (a node joining, a decommission starting or ending) if it is
    /// still at `cluster.revision`, writing the next revision; `Ok(false)` if another writer
    /// changed it since it was read (the caller reads it again and redoes its change).
    pub async fn put_cluster(
        &self,
        forwarder: &Forwarder,
        cluster: &ClusterRecord,
        deadline: Instant,
    ) -> Result<bool, ForwardError> {
        let mut next = cluster.clone();
        next.revision = cluster.revision + 1;
        let parameters = if cluster.revision == 0 {
            // The bootstrap writes revision 0; items from before revisions have none.
            json!({
                "Item": next.to_item(),
                "ConditionExpression": "attribute_not_exists(#revision) OR #revision = :revision",
                "ExpressionAttributeNames": { "#revision": "revision" },
                "ExpressionAttributeValues": { ":revision": number(0) },
            })
        } else {
            json!({
                "Item": next.to_item(),
                "ConditionExpression": "#revision = :revision",
                "ExpressionAttributeNames": { "#revision": "revision" },
                "ExpressionAttributeValues": { ":revision": number(cluster.revision) },
            })
        };
        self.conditional(forwarder, ItemOperation::PutItem, parameters, deadline)
            .await
    }

    /// Whether an operator paused the autoadmin (`shoal admin pause`).
    pub async fn autoadmin_paused(
        &self,
        forwarder: &Forwarder,
        deadline: Instant,
    ) -> Result<bool, ForwardError> {
        let item = self.get(forwarder, AUTOADMIN_KEY, deadline).await?;
        Ok(item
            .as_ref()
            .and_then(|item| item.get("paused"))
            .and_then(|value| value.get("BOOL"))
            .and_then(Json::as_bool)
            .unwrap_or(false))
    }

    /// Pauses or resumes the autoadmin (the last writer wins: an operator's switch).
    pub async fn set_autoadmin_paused(
        &self,
        forwarder: &Forwarder,
        paused: bool,
        deadline: Instant,
    ) -> Result<(), ForwardError> {
        let item = json!({
            KEY_ATTRIBUTE: string(AUTOADMIN_KEY),
            "paused": { "BOOL": paused },
            "changed_at_ms": number(unix_millis_now()),
        });
        self.request(
            forwarder,
            ItemOperation::PutItem,
            json!({ "Item": item }),
            deadline,
        )
        .await?;
        Ok(())
    }

    /// The autoadmin lease's holder and revision, if any router ever took it.
    pub async fn autoadmin_lease(
        &self,
        forwarder: &Forwarder,
        deadline: Instant,
    ) -> Result<Option<(u64, u64)>, ForwardError> {
        let Some(item) = self.get(forwarder, AUTOADMIN_LEASE_KEY, deadline).await? else {
            return Ok(None);
        };
        let read = || -> Result<(u64, u64), DynamoError> {
            Ok((get_number(&item, "holder")?, get_number(&item, "revision")?))
        };
        read().map(Some).map_err(ForwardError::Dynamo)
    }

    /// Writes the autoadmin lease as held by `holder` at `revision + 1`, if it is still at
    /// `revision` (or absent, for `None`); `Ok(false)` if another writer changed it first.
    pub async fn put_autoadmin_lease(
        &self,
        forwarder: &Forwarder,
        holder: u64,
        revision: Option<u64>,
        deadline: Instant,
    ) -> Result<bool, ForwardError> {
        let item = json!({
            KEY_ATTRIBUTE: string(AUTOADMIN_LEASE_KEY),
            "holder": number(holder),
            "revision": number(revision.map_or(1, |revision| revision + 1)),
        });
        self.put_if_revision(forwarder, item, revision, deadline)
            .await
    }

    /// Writes `item` unless an item with its key exists; `Ok(false)` if one does.
    pub async fn put_new(
        &self,
        forwarder: &Forwarder,
        item: Json,
        deadline: Instant,
    ) -> Result<bool, ForwardError> {
        let parameters = json!({
            "Item": item,
            "ConditionExpression": "attribute_not_exists(#key)",
            "ExpressionAttributeNames": { "#key": KEY_ATTRIBUTE },
        });
        self.conditional(forwarder, ItemOperation::PutItem, parameters, deadline)
            .await
    }

    /// Writes a new table item (CreateTable's first step) unless one of its name exists;
    /// `Ok(false)` if one does. Stamps `changed_at_ms`.
    pub async fn put_new_table(
        &self,
        forwarder: &Forwarder,
        record: &mut TableRecord,
        deadline: Instant,
    ) -> Result<bool, ForwardError> {
        record.changed_at_ms = unix_millis_now();
        self.put_new(forwarder, record.to_item(), deadline).await
    }

    /// Replaces a table item if its status, revision and incarnation are still those read
    /// (`read`, and `record`'s first partition), storing `record` with the next revision and
    /// `changed_at_ms` now; `Ok(false)` if not (another router changed or deleted the table
    /// meanwhile: invariants 1 and 6).
    pub async fn replace_table(
        &self,
        forwarder: &Forwarder,
        record: &mut TableRecord,
        read: (TableStatus, u64),
        deadline: Instant,
    ) -> Result<bool, ForwardError> {
        let (expected_status, expected_revision) = read;
        let Some(incarnation) = record.incarnation() else {
            return Err(ForwardError::Dynamo(corrupt("a table without partitions")));
        };
        record.revision = expected_revision.saturating_add(1);
        record.changed_at_ms = unix_millis_now();
        let (names, values) =
            replace_condition_members(expected_status, expected_revision, incarnation);
        let parameters = json!({
            "Item": record.to_item(),
            "ConditionExpression": replace_condition(expected_revision),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        });
        self.conditional(forwarder, ItemOperation::PutItem, parameters, deadline)
            .await
    }

    /// Removes a table item if its status, revision and incarnation are still those of
    /// `record` (DeleteTable's last step); `Ok(false)` if not: it is gone already (another
    /// router finished the deletion), or the item is another incarnation's.
    pub async fn remove_table(
        &self,
        forwarder: &Forwarder,
        record: &TableRecord,
        deadline: Instant,
    ) -> Result<bool, ForwardError> {
        let Some(incarnation) = record.incarnation() else {
            return Err(ForwardError::Dynamo(corrupt("a table without partitions")));
        };
        let (names, values) =
            replace_condition_members(record.status, record.revision, incarnation);
        let parameters = json!({
            "Key": key_json(&TableRecord::item_key(&record.name)),
            "ConditionExpression": replace_condition(record.revision),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        });
        self.conditional(forwarder, ItemOperation::DeleteItem, parameters, deadline)
            .await
    }

    /// A conditional write: `Ok(false)` when its condition failed.
    async fn conditional(
        &self,
        forwarder: &Forwarder,
        operation: ItemOperation,
        parameters: Json,
        deadline: Instant,
    ) -> Result<bool, ForwardError> {
        match self
            .request(forwarder, operation, parameters, deadline)
            .await
        {
            Ok(_) => Ok(true),
            Err(ForwardError::Dynamo(error))
                if error.type_name == "ConditionalCheckFailedException" =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Writes `item` if the item with its key has `revision` = `expected_revision` (or, for
    /// `None`, does not exist); `Ok(false)` if another writer got there first. The items kept
    /// whole with a revision (access.rs) change by this read-modify-write.
    pub async fn put_if_revision(
        &self,
        forwarder: &Forwarder,
        item: Json,
        expected_revision: Option<u64>,
        deadline: Instant,
    ) -> Result<bool, ForwardError> {
        let parameters = match expected_revision {
            None => json!({
                "Item": item,
                "ConditionExpression": "attribute_not_exists(#key)",
                "ExpressionAttributeNames": { "#key": KEY_ATTRIBUTE },
            }),
            Some(revision) => json!({
                "Item": item,
                "ConditionExpression": "#revision = :revision",
                "ExpressionAttributeNames": { "#revision": "revision" },
                "ExpressionAttributeValues": { ":revision": number(revision) },
            }),
        };
        self.conditional(forwarder, ItemOperation::PutItem, parameters, deadline)
            .await
    }

    /// The next unused partition id: every id below it was reserved by some CreateTable (and
    /// is listed by a table item, or was never used, or belonged to a table now gone).
    pub async fn next_partition_id(
        &self,
        forwarder: &Forwarder,
        deadline: Instant,
    ) -> Result<u64, ForwardError> {
        match self.get(forwarder, PARTITION_COUNTER_KEY, deadline).await? {
            None => Ok(FIRST_DATA_PARTITION),
            Some(item) => get_number(&item, "next").map_err(ForwardError::Dynamo),
        }
    }

    /// Reserves `count` consecutive partition ids and returns the first. The leader applies
    /// the update atomically in log order, so two routers never receive overlapping ids;
    /// ids of a reservation whose table creation fails are simply never used.
    pub async fn allocate_partition_ids(
        &self,
        forwarder: &Forwarder,
        count: u64,
        deadline: Instant,
    ) -> Result<u64, ForwardError> {
        let parameters = json!({
            "Key": key_json(PARTITION_COUNTER_KEY),
            "UpdateExpression": "SET #next = if_not_exists(#next, :first) + :count",
            "ExpressionAttributeNames": { "#next": "next" },
            "ExpressionAttributeValues": {
                ":first": number(FIRST_DATA_PARTITION),
                ":count": number(count),
            },
            "ReturnValues": "UPDATED_OLD",
        });
        let body = self
            .request(forwarder, ItemOperation::UpdateItem, parameters, deadline)
            .await?;
        match body.get("Attributes") {
            None => Ok(FIRST_DATA_PARTITION),
            Some(attributes) => get_number(attributes, "next").map_err(ForwardError::Dynamo),
        }
    }

    /// The table items the repair pass works on, unsorted: those that list pending replicas
    /// (invariant 4) or replica moves (invariant 7), those with a global index or a stream changing, and those not ACTIVE
    /// (CreateTable or DeleteTable unfinished, or still running). The leader reads every metadata item to find them (a filtered scan): the
    /// repair pass's cost.
    pub async fn tables_needing_repair(
        &self,
        forwarder: &Forwarder,
        deadline: Instant,
    ) -> Result<Vec<TableRecord>, ForwardError> {
        let parameters = json!({
            "ConsistentRead": true,
            "FilterExpression": "begins_with(#key, :prefix) AND (attribute_exists(#pending) OR attribute_exists(#moves) OR attribute_exists(#splits) OR attribute_exists(#changing) OR attribute_exists(#streams) OR #status <> :active)",
            "ExpressionAttributeNames": {
                "#key": KEY_ATTRIBUTE,
                "#pending": PENDING_REPLICAS_ATTRIBUTE,
                "#moves": REPLICA_MOVES_ATTRIBUTE,
                "#splits": PARTITION_SPLITS_ATTRIBUTE,
                "#changing": GLOBAL_INDEXES_CHANGING_ATTRIBUTE,
                "#streams": STREAMS_CHANGING_ATTRIBUTE,
                "#status": "status",
            },
            "ExpressionAttributeValues": {
                ":prefix": string(TABLE_KEY_PREFIX),
                ":active": string(TableStatus::Active.name()),
            },
        });
        self.scan_tables(forwarder, parameters, deadline).await
    }

    /// Every table item, whatever its status, unsorted (strongly consistent scan).
    /// The tables whose Time to Live is enabled (the member is present only then): what every
    /// node's shards read each sweep period. Filtered at the metadata leader, so an idle cluster
    /// of tables without TTL costs the nodes one small answer per period, not every table item
    /// decoded (issue 19: at `shoal dev`'s 5-second period, reading them all took most of an
    /// idle node's CPU).
    pub async fn tables_with_time_to_live(
        &self,
        forwarder: &Forwarder,
        deadline: Instant,
    ) -> Result<Vec<TableRecord>, ForwardError> {
        let parameters = json!({
            "ConsistentRead": true,
            "FilterExpression": "begins_with(#key, :prefix) AND attribute_exists(#ttl)",
            "ExpressionAttributeNames": { "#key": KEY_ATTRIBUTE, "#ttl": TIME_TO_LIVE_ATTRIBUTE },
            "ExpressionAttributeValues": { ":prefix": string(TABLE_KEY_PREFIX) },
        });
        self.scan_tables(forwarder, parameters, deadline).await
    }

    pub async fn all_tables(
        &self,
        forwarder: &Forwarder,
        deadline: Instant,
    ) -> Result<Vec<TableRecord>, ForwardError> {
        let parameters = json!({
            "ConsistentRead": true,
            "FilterExpression": "begins_with(#key, :prefix)",
            "ExpressionAttributeNames": { "#key": KEY_ATTRIBUTE },
            "ExpressionAttributeValues": { ":prefix": string(TABLE_KEY_PREFIX) },
        });
        self.scan_tables(forwarder, parameters, deadline).await
    }

    /// The tables that have or had a stream (ListStreams).
    pub async fn tables_with_streams(
        &self,
        forwarder: &Forwarder,
        deadline: Instant,
    ) -> Result<Vec<TableRecord>, ForwardError> {
        let parameters = json!({
            "ConsistentRead": true,
            "FilterExpression": "begins_with(#key, :prefix) AND attribute_exists(#streams)",
            "ExpressionAttributeNames": { "#key": KEY_ATTRIBUTE, "#streams": "streams" },
            "ExpressionAttributeValues": { ":prefix": string(TABLE_KEY_PREFIX) },
        });
        self.scan_tables(forwarder, parameters, deadline).await
    }

    /// The table items a scan with `parameters` returns; one that does not decode fails it.
    async fn scan_tables(
        &self,
        forwarder: &Forwarder,
        parameters: Json,
        deadline: Instant,
    ) -> Result<Vec<TableRecord>, ForwardError> {
        self.scan_all(forwarder, parameters, deadline)
            .await?
            .iter()
            .map(|item| TableRecord::from_item(item).map_err(ForwardError::Dynamo))
            .collect()
    }

    /// The names of every table item, unsorted (strongly consistent scan of partition 0).
    pub async fn table_names(
        &self,
        forwarder: &Forwarder,
        deadline: Instant,
    ) -> Result<Vec<String>, ForwardError> {
        let parameters = json!({
            "ConsistentRead": true,
            "FilterExpression": "begins_with(#key, :prefix)",
            "ProjectionExpression": "#key",
            "ExpressionAttributeNames": { "#key": KEY_ATTRIBUTE },
            "ExpressionAttributeValues": { ":prefix": string(TABLE_KEY_PREFIX) },
        });
        Ok(self
            .scan_all(forwarder, parameters, deadline)
            .await?
            .iter()
            .filter_map(|item| {
                item.get(KEY_ATTRIBUTE)
                    .and_then(|value| value.get("S"))
                    .and_then(Json::as_str)
                    .and_then(|key| key.strip_prefix(TABLE_KEY_PREFIX))
                    .map(str::to_string)
            })
            .collect())
    }

    /// Every item a Scan of partition 0 with `parameters` returns, page after page, at most
    /// `METADATA_SCAN_PAGES_MAX` pages.
    async fn scan_all(
        &self,
        forwarder: &Forwarder,
        parameters: Json,
        deadline: Instant,
    ) -> Result<Vec<Json>, ForwardError> {
        let mut items = Vec::new();
        let mut start: Option<Json> = None;
        for _page in 0..METADATA_SCAN_PAGES_MAX {
            let mut page_parameters = parameters.clone();
            if let Some(start) = start.take() {
                page_parameters["ExclusiveStartKey"] = start;
            }
            let body = self
                .request(forwarder, ItemOperation::Scan, page_parameters, deadline)
                .await?;
            if let Some(page) = body.get("Items").and_then(Json::as_array) {
                items.extend(page.iter().cloned());
            }
            match body.get("LastEvaluatedKey") {
                Some(key) => start = Some(key.clone()),
                None => return Ok(items),
            }
        }
        Err(ForwardError::Unavailable {
            message: format!("metadata scan longer than {METADATA_SCAN_PAGES_MAX} pages"),
            // Every page was served.
            replica_may_have_served: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TableRecord {
        TableRecord {
            name: "orders".to_string(),
            key_schema: KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number),
            attribute_definitions: vec![
                ("pk".to_string(), KeyType::String),
                ("sk".to_string(), KeyType::Number),
            ],
            billing: Billing::Provisioned {
                read_capacity_units: 5,
                write_capacity_units: 7,
            },
            // Round-trips although a provisioned table never has one: the codec is separate.
            on_demand: OnDemandMaximum {
                read: Some(700),
                write: None,
            },
            status: TableStatus::Creating,
            created_at_seconds: 1_700_000_000,
            item_count: 3,
            size_bytes: 99,
            partitions: vec![PartitionEntry {
                id: 12,
                range: HashRange::ALL,
                replicas: vec![3, 1, 2],
                shard: 1,
                epoch: 1,
                leader_hint: None,
            }],
            tags: BTreeMap::from([
                ("team".to_string(), "shoal".to_string()),
                ("empty".to_string(), String::new()),
            ]),
            throughput_history: ThroughputHistory {
                last_increase_ms: Some(1_700_000_100_000),
                last_decrease_ms: None,
                decreases_day: 19_675,
                decreases: 2,
            },
            pay_per_request_since_ms: Some(1_699_000_000_500),
            revision: 7,
            pending_replicas: BTreeSet::from([(12, 3)]),
            replica_moves: BTreeMap::from([(
                11,
                ReplicaMoveRecord {
                    id: 77,
                    source: 3,
                    target: 4,
                    source_dead: true,
                    target_routed: false,
                },
            )]),
            partition_splits: BTreeMap::from([(
                12,
                PartitionSplitRecord {
                    id: 78,
                    parent_epoch: 1,
                    range: HashRange {
                        first: 1 << 62,
                        last: (1 << 63) - 1,
                    },
                    shard: 0,
                    replicas: vec![1, 2, 3],
                    at_hash: 3 << 61,
                    left: 20,
                    right: 21,
                    epoch: 2,
                    routed: true,
                },
            )]),
            incarnation_id: Some(12),
            changed_at_ms: 1_700_000_200_000,
            settings: TableSettings {
                encryption: crate::table_settings::Encryption::Kms {
                    key_arn: "arn:aws:kms:us-east-1:000000000000:key/k".to_string(),
                },
                table_class: Some(crate::table_settings::TableClassSetting {
                    class: crate::validate::TableClass::StandardInfrequentAccess,
                    updated_ms: Some(1_700_000_300_000),
                }),
                deletion_protection: true,
            },
            streams: vec![
                TableStream {
                    id: 1_700_000_000_000,
                    view: shoal_model::stream::ViewType::OldImage,
                    status: StreamStatus::Disabled,
                    settled: BTreeSet::new(),
                    disabled_at_ms: Some(1_700_000_500_000),
                },
                TableStream {
                    id: 1_700_000_600_000,
                    view: shoal_model::stream::ViewType::NewAndOldImages,
                    status: StreamStatus::Enabling,
                    settled: BTreeSet::from([12]),
                    disabled_at_ms: None,
                },
            ],
            time_to_live: TimeToLiveSetting {
                attribute: Some("expires_at".to_string()),
                changed_at_ms: Some(1_700_000_300_000),
            },
            global_indexes: vec![
                GlobalIndexRecord {
                    index: shoal_model::index::global::GlobalIndex {
                        name: "by_customer".to_string(),
                        number: 0,
                        partition_keys: vec![KeyAttribute {
                            name: "customer".to_string(),
                            key_type: KeyType::String,
                        }],
                        sort_keys: vec![KeyAttribute {
                            name: "total".to_string(),
                            key_type: KeyType::Number,
                        }],
                        projection: shoal_model::index::Projection::Include(vec![
                            "status".to_string(),
                        ]),
                    },
                    partitions: vec![PartitionEntry {
                        id: 20,
                        range: HashRange::ALL,
                        replicas: vec![1, 2, 3],
                        shard: 1,
                        epoch: 1,
                        leader_hint: None,
                    }],
                    throughput: Some(crate::validate::Throughput {
                        read_capacity_units: 3,
                        write_capacity_units: 4,
                    }),
                    on_demand: OnDemandMaximum::default(),
                    status: GlobalIndexStatus::Creating,
                    backfilled: BTreeSet::from([4, 9]),
                    added_at_ms: 1_700_000_400_000,
                },
                GlobalIndexRecord {
                    index: shoal_model::index::global::GlobalIndex {
                        name: "by_status".to_string(),
                        number: 1,
                        // A multi-attribute key: more_hash and more_sort round-trip.
                        partition_keys: vec![
                            KeyAttribute {
                                name: "status".to_string(),
                                key_type: KeyType::String,
                            },
                            KeyAttribute {
                                name: "region".to_string(),
                                key_type: KeyType::Binary,
                            },
                        ],
                        sort_keys: vec![
                            KeyAttribute {
                                name: "placed".to_string(),
                                key_type: KeyType::Number,
                            },
                            KeyAttribute {
                                name: "line".to_string(),
                                key_type: KeyType::String,
                            },
                            KeyAttribute {
                                name: "sku".to_string(),
                                key_type: KeyType::String,
                            },
                        ],
                        projection: shoal_model::index::Projection::KeysOnly,
                    },
                    partitions: Vec::new(),
                    throughput: None,
                    on_demand: OnDemandMaximum {
                        read: None,
                        write: Some(40),
                    },
                    status: GlobalIndexStatus::Active,
                    backfilled: BTreeSet::new(),
                    added_at_ms: 0,
                },
            ],
            global_index_numbers_used: 3,
            local_indexes: vec![
                shoal_model::index::LocalIndex {
                    name: "by_date".to_string(),
                    number: 0,
                    sort_key: KeyAttribute {
                        name: "date".to_string(),
                        key_type: KeyType::String,
                    },
                    projection: shoal_model::index::Projection::Include(vec!["total".to_string()]),
                },
                shoal_model::index::LocalIndex {
                    name: "by_total".to_string(),
                    number: 1,
                    sort_key: KeyAttribute {
                        name: "total".to_string(),
                        key_type: KeyType::Number,
                    },
                    projection: shoal_model::index::Projection::KeysOnly,
                },
            ],
        }
    }

    /// The members a table item of the first format had: every member written since is
    /// optional when read (invariant 2).
    const FIRST_FORMAT_MEMBERS: [&str; 13] = [
        "key",
        "name",
        "hash_key",
        "range_key",
        "attribute_definitions",
        "billing_mode",
        "read_capacity_units",
        "write_capacity_units",
        "status",
        "created_at",
        "item_count",
        "size_bytes",
        "partitions",
    ];

    fn first_format(item: &Json) -> Json {
        let mut old = item.as_object().unwrap().clone();
        old.retain(|member, _| FIRST_FORMAT_MEMBERS.contains(&member.as_str()));
        Json::Object(old)
    }

    #[test]
    fn table_items_round_trip_and_parse_as_dynamodb_items() {
        let record = record();
        let item = record.to_item();
        assert_eq!(TableRecord::from_item(&item).unwrap(), record);
        // The item is valid DynamoDB JSON for the model (it is stored by a partition).
        shoal_model::json::item_from_json(&item).unwrap();
        assert_eq!(item["key"]["S"], "table#orders");
        let mut broken = item.clone();
        broken["status"] = json!({"S": "SLEEPING"});
        assert!(TableRecord::from_item(&broken).is_err());
    }

    #[test]
    fn table_items_of_the_first_format_still_decode() {
        let provisioned = record();
        let decoded = TableRecord::from_item(&first_format(&provisioned.to_item())).unwrap();
        assert_eq!(decoded.revision, 0);
        assert!(decoded.tags.is_empty());
        assert_eq!(decoded.throughput_history, ThroughputHistory::default());
        assert_eq!(decoded.pay_per_request_since_ms, None);
        assert!(decoded.pending_replicas.is_empty());
        assert_eq!(decoded.changed_at_ms, 0);
        assert_eq!(decoded.settings, TableSettings::default());
        assert_eq!(decoded.time_to_live, TimeToLiveSetting::default());
        assert_eq!(decoded.partitions, provisioned.partitions);
        // An on-demand table of the first format has been on demand since its creation.
        let mut on_demand = record();
        on_demand.billing = Billing::PayPerRequest;
        let decoded = TableRecord::from_item(&first_format(&on_demand.to_item())).unwrap();
        assert_eq!(decoded.pay_per_request_since_ms, Some(1_700_000_000_000));
        // A corrupt optional member is still refused, not defaulted.
        let mut broken = provisioned.to_item();
        broken["revision"] = json!({"S": "7"});
        assert!(TableRecord::from_item(&broken).is_err());
        let mut broken = provisioned.to_item();
        broken["tags"] = json!({"L": [{"M": {"key": {"S": "k"}}}]});
        assert!(TableRecord::from_item(&broken).is_err());
        let mut broken = provisioned.to_item();
        broken["deletion_protection"] = json!({"S": "yes"});
        assert!(TableRecord::from_item(&broken).is_err());
        let mut broken = provisioned.to_item();
        broken[TIME_TO_LIVE_ATTRIBUTE] = json!({"N": "7"});
        assert!(TableRecord::from_item(&broken).is_err());
    }

    #[test]
    fn pending_replicas_are_absent_when_none_and_never_routed_to() {
        let mut table = record();
        let item = table.to_item();
        assert_eq!(
            item[PENDING_REPLICAS_ATTRIBUTE],
            json!({"L": [{"M": {"partition": {"N": "12"}, "node": {"N": "3"}}}]})
        );
        let routed = table.routed_partitions();
        assert_eq!(routed[0].replicas, vec![1, 2]);
        assert_eq!(
            table.partitions[0].replicas,
            vec![3, 1, 2],
            "kept in the record"
        );
        table.pending_replicas.clear();
        let item = table.to_item();
        assert!(item.get(PENDING_REPLICAS_ATTRIBUTE).is_none());
        assert_eq!(TableRecord::from_item(&item).unwrap(), table);
        assert_eq!(table.routed_partitions(), table.partitions);
        let mut broken = record().to_item();
        broken[PENDING_REPLICAS_ATTRIBUTE] = json!({"L": [{"M": {"node": {"N": "3"}}}]});
        assert!(TableRecord::from_item(&broken).is_err());
    }

    #[test]
    fn the_incarnation_outlives_a_split_of_the_first_partition() {
        let table = record();
        let mut item = table.to_item();
        assert_eq!(item[INCARNATION_ATTRIBUTE], number(12));
        let mut split = table.clone();
        split.partitions[0].id = 40;
        let read = TableRecord::from_item(&split.to_item()).unwrap();
        assert_eq!(read.incarnation(), Some(12));
        // An item written before splits existed has no member: its first partition names it.
        item.as_object_mut().unwrap().remove(INCARNATION_ATTRIBUTE);
        assert_eq!(
            TableRecord::from_item(&item).unwrap().incarnation(),
            Some(12)
        );
    }

    #[test]
    fn replaces_are_conditional_on_the_revision_and_incarnation_read() {
        assert_eq!(
            replace_condition(0),
            "#status = :expected AND (attribute_not_exists(#revision) OR #revision = :revision) AND (#incarnation = :incarnation OR (attribute_not_exists(#incarnation) AND #partitions[0].#id = :incarnation))"
        );
        assert_eq!(
            replace_condition(3),
            "#status = :expected AND #revision = :revision AND (#incarnation = :incarnation OR (attribute_not_exists(#incarnation) AND #partitions[0].#id = :incarnation))"
        );
        assert_eq!(record().incarnation(), Some(12));
        let (names, values) = replace_condition_members(TableStatus::Deleting, 3, 12);
        assert_eq!(names["#partitions"], "partitions");
        assert_eq!(values[":expected"], json!({"S": "DELETING"}));
        assert_eq!(values[":incarnation"], json!({"N": "12"}));
    }

    /// The condition is evaluated by the partition's own expression code against the item as
    /// stored: it holds for the item read, and fails for another revision, status or
    /// incarnation.
    #[test]
    fn the_replace_condition_holds_only_for_the_item_read() {
        use shoal_model::expression::{ExpressionContext, ExpressionKind, evaluate::evaluate};
        let table = record();
        let item = shoal_model::json::item_from_json(&table.to_item()).unwrap();
        let holds = |status: TableStatus, revision: u64, incarnation: u64| -> bool {
            let (names, values) = replace_condition_members(status, revision, incarnation);
            let mut context = ExpressionContext::from_json(Some(&names), Some(&values)).unwrap();
            let condition = context
                .parse_condition(ExpressionKind::Condition, replace_condition(revision))
                .unwrap();
            context.finish().unwrap();
            evaluate(&condition, &item)
        };
        assert!(holds(TableStatus::Creating, 7, 12));
        assert!(!holds(TableStatus::Active, 7, 12));
        assert!(!holds(TableStatus::Creating, 6, 12));
        assert!(!holds(TableStatus::Creating, 7, 13));
    }

    #[test]
    fn billing_changes_keep_dynamodb_throughput_history() {
        let day = 19_700 * MILLISECONDS_PER_DAY;
        let provisioned = |read, write| Billing::Provisioned {
            read_capacity_units: read,
            write_capacity_units: write,
        };
        let mut table = record();
        table.billing = provisioned(5, 5);
        table.throughput_history = ThroughputHistory::default();
        table.pay_per_request_since_ms = None;
        table.change_billing(provisioned(10, 5), day + 1);
        assert_eq!(table.throughput_history.last_increase_ms, Some(day + 1));
        assert_eq!(table.throughput_history.last_decrease_ms, None);
        assert_eq!(table.throughput_history.decreases_today(day + 1), 0);
        // Lowering both capacities is one decrease; raising one and lowering the other is
        // both an increase and a decrease.
        table.change_billing(provisioned(1, 1), day + 2);
        table.change_billing(provisioned(2, 1), day + 3);
        table.change_billing(provisioned(1, 2), day + 4);
        let history = table.throughput_history;
        assert_eq!(history.last_increase_ms, Some(day + 4));
        assert_eq!(history.last_decrease_ms, Some(day + 4));
        assert_eq!(history.decreases_today(day + 4), 2);
        // The count restarts at 00:00 UTC.
        assert_eq!(history.decreases_today(day + MILLISECONDS_PER_DAY), 0);
        table.change_billing(provisioned(1, 1), day + MILLISECONDS_PER_DAY + 5);
        assert_eq!(
            table
                .throughput_history
                .decreases_today(day + MILLISECONDS_PER_DAY + 5),
            1
        );
        // A switch between modes moves neither; a switch to on demand is dated.
        table.change_billing(Billing::PayPerRequest, day + MILLISECONDS_PER_DAY + 6);
        assert_eq!(table.billing, Billing::PayPerRequest);
        assert_eq!(
            table.pay_per_request_since_ms,
            Some(day + MILLISECONDS_PER_DAY + 6)
        );
        let before = table.throughput_history;
        table.change_billing(provisioned(9, 9), day + MILLISECONDS_PER_DAY + 7);
        assert_eq!(table.throughput_history, before);
        assert_eq!(
            table.pay_per_request_since_ms,
            Some(day + MILLISECONDS_PER_DAY + 6)
        );
    }

    /// `shoal node --join`'s rules (ClusterRecord::admit): a new id above every id the cluster
    /// had, on an address no node listens on; a listed node re-joining is admitted unchanged.
    #[test]
    fn a_node_joins_with_a_new_id_and_a_free_address_only() {
        let address = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
        let mut cluster = ClusterRecord {
            nodes: (1..=3)
                .map(|id| NodeAddress {
                    id,
                    address: address(7000 + id as u16 * 10),
                })
                .collect(),
            draining: BTreeSet::new(),
            shards_per_node: 2,
            created_at_seconds: 0,
            // Node 4 was decommissioned.
            highest_node_id: 4,
            revision: 9,
            metadata_replicas: vec![1, 2, 3],
            metadata_replicas_recorded: true,
            metadata_move: None,
        };
        let refused = |cluster: &mut ClusterRecord, id: NodeId, port: u16, shards: u16| {
            let before = cluster.clone();
            let error = cluster.admit(id, address(port), shards).unwrap_err();
            assert_eq!(*cluster, before, "a refusal changes nothing");
            assert_eq!(error.type_name, DynamoError::validation("").type_name);
            error.message
        };
        assert!(refused(&mut cluster, 6, 7060, 1).contains("start it with --shards 2"));
        assert!(refused(&mut cluster, 4, 7040, 2).contains("--node-id 5 or higher"));
        assert!(
            refused(&mut cluster, 2, 7050, 2).contains("already in the cluster at 127.0.0.1:7020")
        );
        // Node 2's shards listen on 7020 and 7021.
        assert!(refused(&mut cluster, 6, 7021, 2).contains("node 2 listens on 127.0.0.1:7020"));
        assert!(refused(&mut cluster, 6, 7019, 2).contains("overlaps"));
        assert_eq!(
            cluster.admit(2, address(7020), 2),
            Ok(false),
            "a listed node re-joins"
        );
        assert_eq!(
            cluster.admit(6, address(7022), 2),
            Ok(true),
            "the ports after node 2's"
        );
        assert_eq!(cluster.highest_node_id, 6);
        assert_eq!(cluster.nodes.last().unwrap().id, 6);
        assert!(refused(&mut cluster, 5, 7050, 2).contains("--node-id 7 or higher"));
        assert_eq!(cluster.admit(6, address(7022), 2), Ok(false));
        // The metadata group stays on the lowest ids.
        assert_eq!(metadata_replicas(&cluster.nodes), vec![1, 2, 3]);
        // A cluster of one node grows too (its groups gain replicas as nodes join).
        let mut small = cluster.clone();
        small.nodes.truncate(1);
        assert_eq!(small.admit(9, address(7090), 2), Ok(true));
    }

    #[test]
    fn cluster_items_round_trip() {
        let cluster = ClusterRecord {
            nodes: vec![
                NodeAddress {
                    id: 2,
                    address: "127.0.0.1:7100".parse().unwrap(),
                },
                NodeAddress {
                    id: 1,
                    address: "[::1]:7000".parse().unwrap(),
                },
            ],
            draining: BTreeSet::new(),
            shards_per_node: 4,
            created_at_seconds: 5,
            highest_node_id: 7,
            revision: 3,
            metadata_replicas: vec![1, 2],
            metadata_replicas_recorded: true,
            metadata_move: None,
        };
        let item = cluster.to_item();
        shoal_model::json::item_from_json(&item).unwrap();
        assert_eq!(ClusterRecord::from_item(&item).unwrap(), cluster);
        assert!(item.get("draining").is_none(), "absent when none drains");
        // An item from before node join: no highest id (the highest listed), no revision.
        let mut legacy = item.clone();
        legacy.as_object_mut().unwrap().remove("highest_node_id");
        legacy.as_object_mut().unwrap().remove("revision");
        let read = ClusterRecord::from_item(&legacy).unwrap();
        assert_eq!((read.highest_node_id, read.revision), (2, 0));
        // An item from before the metadata group could move: on the lowest ids.
        let mut legacy = item.clone();
        legacy.as_object_mut().unwrap().remove("metadata_replicas");
        let read = ClusterRecord::from_item(&legacy).unwrap();
        assert_eq!(read.metadata_replicas, vec![1, 2]);
        assert!(!read.metadata_replicas_recorded);
        // Written again unconfirmed (a join through a newer router), it stays assumed.
        assert!(read.to_item().get("metadata_replicas").is_none());
        // A move of the metadata group under way round-trips; an empty group is corrupt.
        let mut moving = cluster.clone();
        moving.metadata_replicas = vec![1, 2, 9];
        moving.metadata_move = Some(ReplicaMoveRecord {
            id: 77,
            source: 2,
            target: 9,
            source_dead: true,
            target_routed: true,
        });
        let item = moving.to_item();
        shoal_model::json::item_from_json(&item).unwrap();
        assert_eq!(ClusterRecord::from_item(&item).unwrap(), moving);
        let mut empty = item.clone();
        empty["metadata_replicas"] = json!({ "L": [] });
        assert!(ClusterRecord::from_item(&empty).is_err());
        let mut corrupt = item.clone();
        corrupt["highest_node_id"] = number(1);
        assert!(
            ClusterRecord::from_item(&corrupt).is_err(),
            "a listed id above the highest"
        );
        let mut draining = cluster.clone();
        draining.draining.insert(2);
        let item = draining.to_item();
        shoal_model::json::item_from_json(&item).unwrap();
        assert_eq!(ClusterRecord::from_item(&item).unwrap(), draining);
        assert_eq!(draining.placement_nodes(), vec![1]);
        assert_eq!(
            cluster.directory().shard_address(2, 3),
            Some("127.0.0.1:7103".parse().unwrap())
        );
    }

    #[test]
    fn metadata_lives_on_the_three_lowest_nodes() {
        let nodes: Vec<NodeAddress> = [5u64, 3, 9, 1]
            .iter()
            .map(|id| NodeAddress {
                id: *id,
                address: "127.0.0.1:1".parse().unwrap(),
            })
            .collect();
        assert_eq!(metadata_replicas(&nodes), vec![1, 3, 5]);
        assert_eq!(metadata_replicas(&nodes[..2]), vec![3, 5]);
    }
}
