//! [`Router`]: the DynamoDB operations the front end calls, one `Router` per router core.
//!
//! Each method takes the DynamoDB request body and returns the response body or a
//! [`DynamoError`]. Control-plane operations read and write the metadata group
//! (src/metadata.rs); item operations are routed by the partition key's hash through the
//! table's cached partition map (src/partition_map.rs), admitted by `shoal-admission`, and
//! forwarded to the partition leader's shard (src/forward.rs).
//!
//! This module holds the router's state (its table cache, admission and routing); the
//! operations live in `control` (tables and tags), `items` (single items, Query, Scan) and
//! `batch` (BatchGetItem, BatchWriteItem).

mod autoadmin;
mod batch;
mod control;
mod index_updates;
mod items;
mod propagate;
mod repair;
mod splits;
mod streams;
mod transactions;

pub use autoadmin::{
    AUTOADMIN_INTERVAL, AUTOADMIN_LEASE_TAKEOVER_AFTER, AutoadminReport, NODE_DOWN_AFTER,
};
pub use repair::RepairReport;
pub use splits::{
    SPLIT_BYTES_DEFAULT, SPLIT_READ_UNITS_DEFAULT, SPLIT_TRAFFIC_CHECKS_DEFAULT,
    SPLIT_WRITE_UNITS_DEFAULT, SplitReport,
};
pub use transactions::{LEDGER_TABLE, TRANSACTION_LOCK_STALE, TRANSACTION_RECOVERY_INTERVAL};

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value as Json, json};
use shoal_admission::{
    BillingMode, CapacityUnits, Operation, ReadConsistency, TableAdmission, read_units, write_units,
};
use shoal_model::index::LocalIndex;
use shoal_model::json::value_from_json;
use shoal_model::key::{KeySchema, partition_hash, storage_key_hash};
use shoal_model::request::{
    GetRequest, ItemOperation, PreparedRequest, RangeRequest, TableIndexes, WriteKind,
    WriteRequest, prepare_for_table,
};
use shoal_model::value::item_size_bytes;
use shoal_wire::messages::{ItemResult, MembershipWire, NodeRequest, NodeResponse};

use crate::error::{DynamoError, LIMIT_EXCEEDED, RESOURCE_IN_USE};
use crate::fan_out::join_bounded;
use crate::forward::{
    CallFailure, ForwardError, Forwarder, ItemCall, REQUEST_DEADLINE, Reply, item_json,
    render_result,
};
use crate::metadata::{
    Billing, CLUSTER_KEY, ClusterRecord, GlobalIndexRecord, GlobalIndexStatus, MetadataStore,
    NodeAddress, TableRecord, TableStatus, TimeToLiveSetting, key_schema_wire, metadata_replicas,
};
use crate::metrics::RouterMetrics;
use crate::partition_map::{HashRange, NodeId, PartitionEntry, PartitionMap};
use crate::placement::{PARTITIONS_PER_TABLE_MAX, even_range, place};
use crate::validate;

/// Partitions a new table starts with, unless its provisioned throughput needs more. Four
/// partitions at DynamoDB's per-partition ceilings (1,000 WCU, 3,000 RCU) serve 4,000 writes
/// and 12,000 reads per second: what a new on-demand table admits at once (twice its assumed
/// previous peak of 2,000 WCU and 6,000 RCU). README.md says more.
pub const PARTITIONS_PER_TABLE_DEFAULT: u32 = 4;
/// How long a router core trusts its cached copy of a table's metadata before re-reading it.
/// A refresh also happens at once when a node says the map is stale.
pub const TABLE_CACHE_TTL: Duration = Duration::from_secs(5);
/// Map refreshes per request at most (each after a StaleEpoch or WrongOwner answer).
pub const ROUTE_REFRESHES_MAX: u32 = 3;
/// The first pause of a request that found its partition frozen by a split whose children the
/// metadata does not route yet (shoal_autoadmin::split, step 3); it doubles up to
/// [`SPLIT_ROUTE_WAIT_PAUSE_MAX`], within the request's deadline.
pub const SPLIT_ROUTE_WAIT_PAUSE_MIN: Duration = Duration::from_millis(5);
pub const SPLIT_ROUTE_WAIT_PAUSE_MAX: Duration = Duration::from_millis(100);
/// CreateTable and DeleteTable may take this long (they create replicas on several nodes).
pub const CONTROL_DEADLINE: Duration = Duration::from_secs(30);
/// CreateTable waits this long for replicas on nodes it cannot reach (connections refused or
/// timed out). Past it, a partition with a majority of its replicas created is served without
/// them; they stay pending (metadata invariant 4) until the repair pass creates them, so a node
/// that is down does not hold up the table.
pub const REPLICAS_ALL_WAIT: Duration = Duration::from_secs(2);
/// CreateTable waits this long at most: for a majority of every partition's replicas (nodes
/// may still be starting or restarting), and for replicas on nodes that were reached but have
/// not created them yet (a loaded node is slow, not down). Then replicas still missing are
/// left pending if each partition has a majority; if one has not, CreateTable removes what it
/// made and fails.
pub const REPLICAS_MAJORITY_WAIT: Duration = Duration::from_secs(10);
/// The pause between CreateTable's rounds of `CreatePartition` calls.
pub const REPLICA_CREATE_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// How often a router runs its repair pass ([`Router::repair_pass`]): pending replicas,
/// unfinished CreateTable and DeleteTable, and (every [`ORPHAN_SCAN_INTERVAL`]) replicas of
/// no table.
pub const REPAIR_INTERVAL: Duration = Duration::from_secs(5);
/// A CreateTable or DeleteTable whose table item has not changed for this long is taken over
/// by the repair pass ([`Router::finish_unfinished_tables`]): its router is presumed dead.
/// Longer than the longest step of a live router (CreateTable waits for replicas up to
/// [`REPLICAS_MAJORITY_WAIT`]), so a router still working is not raced in the normal case;
/// racing it is harmless anyway, since every step is idempotent and every write of the item
/// conditional (router/server README.md, "the control-plane state machine").
pub const CONTROL_STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the repair pass asks every shard which replicas it hosts, to find replicas of no
/// table ([`Router::collect_orphan_replicas`]). Each time costs one Status call per shard and
/// a strongly consistent scan of every table item, so it runs less often than the rest.
pub const ORPHAN_SCAN_INTERVAL: Duration = Duration::from_secs(60);
/// A replica of no table is deleted only when two scans at least this far apart both found it
/// so. Metadata invariant 5 makes one scan enough; the grace keeps a writer that broke it
/// (records a partition just after creating its replica) from losing that replica.
pub const ORPHAN_REPLICA_GRACE: Duration = Duration::from_secs(60);
/// BatchGetItem keys and BatchWriteItem requests per call (DynamoDB's limits).
pub const BATCH_GET_KEYS_MAX: usize = 100;
pub const BATCH_WRITE_REQUESTS_MAX: usize = 25;
/// A batch's calls to its partitions in flight at once. A BatchWriteItem's 25 requests reach
/// 16 partitions at most in one round, the 4 of a default table at once; the bound keeps one
/// BatchGetItem of 100 keys from putting 100 calls on the nodes and the router's connections
/// at the same moment, and its latency from growing past a few round trips.
pub const BATCH_PARTITIONS_IN_FLIGHT_MAX: usize = 16;
/// Tables cached per router core at most; the least recently loaded is dropped past it.
pub const CACHED_TABLES_MAX: usize = 10_000;
/// A change of a table's metadata (UpdateTable, tags) reads the item again after a concurrent
/// change this many times at most before answering as DynamoDB answers a change in progress.
pub const METADATA_WRITE_ATTEMPTS_MAX: u32 = 8;
/// ListTagsOfResource's page. DynamoDB answers every tag of a table in one page (a table has
/// at most 50), so NextToken only continues a page a client cut itself.
pub const LIST_TAGS_PAGE_TAGS_MAX: usize = validate::TAGS_PER_RESOURCE_MAX;
/// The least time between two changes of a table's Time to Live. DynamoDB documents "up to one
/// hour" and answers [`TIME_TO_LIVE_CHANGED_WITHIN_INTERVAL`] meanwhile; a probe of DynamoDB
/// (ack-api-quirks, finding DDB-TABLE-143) saw a change refused 1,811 s after the last and
/// accepted at 1,872 s. Thirty minutes is never stricter than that.
pub const TIME_TO_LIVE_CHANGE_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// UpdateTimeToLive's refusals, in DynamoDB's words (ValidationException).
pub const TIME_TO_LIVE_ALREADY_ENABLED: &str = "TimeToLive is already enabled";
pub const TIME_TO_LIVE_ALREADY_DISABLED: &str = "TimeToLive is already disabled";
pub const TIME_TO_LIVE_CHANGED_WITHIN_INTERVAL: &str =
    "Time to live has been modified multiple times within a fixed interval";
const _: () = assert!(PARTITIONS_PER_TABLE_DEFAULT <= PARTITIONS_PER_TABLE_MAX);
const _: () = assert!(METADATA_WRITE_ATTEMPTS_MAX >= 1);
// The waits for replicas leave CreateTable the time to write the table item twice, and to
// remove what it made when it fails, within its deadline.
const _: () = assert!(REPLICAS_ALL_WAIT.as_millis() <= REPLICAS_MAJORITY_WAIT.as_millis());
const _: () = assert!(REPLICAS_MAJORITY_WAIT.as_millis() * 2 <= CONTROL_DEADLINE.as_millis());
const _: () = assert!(REPLICA_CREATE_RETRY_INTERVAL.as_millis() < REPLICAS_ALL_WAIT.as_millis());
const _: () = assert!(LIST_TAGS_PAGE_TAGS_MAX >= validate::TAGS_PER_RESOURCE_MAX);
// A live CreateTable's wait for replicas ends before the repair pass takes its table over.
const _: () = assert!(CONTROL_STEP_TIMEOUT.as_millis() > REPLICAS_MAJORITY_WAIT.as_millis());
const _: () = assert!(REPAIR_INTERVAL.as_millis() <= CONTROL_STEP_TIMEOUT.as_millis());
const _: () = assert!(REPAIR_INTERVAL.as_millis() <= ORPHAN_SCAN_INTERVAL.as_millis());
// One batch never fills a connection's pipeline to a shard, which other requests share.
const _: () = assert!(
    BATCH_PARTITIONS_IN_FLIGHT_MAX >= 1
        && BATCH_PARTITIONS_IN_FLIGHT_MAX < shoal_bus::limits::CLIENT_REQUESTS_IN_FLIGHT_MAX
);

/// The router's settings. The metadata group is created on the lowest node ids of the
/// bootstrap node list, up to three; it may move since (`ClusterRecord::metadata_replicas`),
/// and a router whose `nodes` name none of its replicas finds it through any live node
/// (`MetadataStore::rediscover`).
#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub nodes: Vec<NodeAddress>,
    pub region: String,
    pub account: String,
    pub partitions_per_table: u32,
    pub request_deadline: Duration,
    /// Seeds the retry jitter; give each router core its own.
    pub seed: u64,
    /// [`CONTROL_STEP_TIMEOUT`] unless a test shortens it.
    pub control_step_timeout: Duration,
    /// [`ORPHAN_SCAN_INTERVAL`] unless a test shortens it.
    pub orphan_scan_interval: Duration,
    /// [`ORPHAN_REPLICA_GRACE`] unless a test shortens it.
    pub orphan_replica_grace: Duration,
    /// [`NODE_DOWN_AFTER`] unless set (`shoal router --node-down-after`).
    pub node_down_after: Duration,
    /// Whether the autoadmin evens out the replicas per node (balance: a node that joined or
    /// came back empty receives replicas); on unless set (`shoal router --balance false`).
    pub balance: bool,
    /// A table partition whose items reach this many bytes is split (splits.rs);
    /// [`SPLIT_BYTES_DEFAULT`] unless set (`shoal router --split-bytes`), 0 never splits for size.
    pub split_bytes: u64,
    /// A table partition whose replicas answered with this many read units per second, over
    /// [`RouterConfig::split_traffic_checks`] balance checks in a row, is split where its
    /// traffic balances (splits.rs); [`SPLIT_READ_UNITS_DEFAULT`] unless set (`shoal router
    /// --split-read-units`), 0 never splits for reads.
    pub split_read_units_per_second: u64,
    /// The same for write units: [`SPLIT_WRITE_UNITS_DEFAULT`] unless set (`shoal router
    /// --split-write-units`), 0 never splits for writes.
    pub split_write_units_per_second: u64,
    /// [`SPLIT_TRAFFIC_CHECKS_DEFAULT`] unless a test lowers it.
    pub split_traffic_checks: u32,
    /// [`AUTOADMIN_LEASE_TAKEOVER_AFTER`] unless a test shortens it: how long the autoadmin
    /// lease must go unrenewed before another router takes it (autoadmin.rs).
    pub autoadmin_takeover_after: Duration,
    /// Fault injection for tests: the step after which CreateTable, DeleteTable or
    /// TransactWriteItems stops for good, as if the router's process died there. `None` in
    /// production.
    pub crash_at: Option<ControlStep>,
    /// [`TRANSACTION_LOCK_STALE`] unless a test shortens it.
    pub transaction_lock_stale: Duration,
    /// Mutual TLS on the bus with the cluster CA (net/bus/src/tls.rs); `None`: plaintext.
    pub bus_tls: Option<shoal_bus::BusTls>,
}

/// The steps of CreateTable and DeleteTable (README.md, "the control-plane state machine"),
/// named for fault injection: with [`RouterConfig::crash_at`] set to one, the operation stops
/// for good right after it (the future never completes and does nothing more), as a router
/// killed there would. Tests then check that another router finishes the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlStep {
    /// CreateTable reserved its partition ids; no table item yet.
    CreateIdsReserved,
    /// CreateTable wrote the CREATING item with its partition list; no replica asked yet.
    CreateItemWritten,
    /// CreateTable's first replica was created; the others not asked yet.
    CreateFirstReplicaCreated,
    /// CreateTable asked every replica; the item is still CREATING.
    CreateReplicasCreated,
    /// DeleteTable marked the item DELETING; no replica deleted yet.
    DeleteMarked,
    /// DeleteTable deleted its first replica; the others not asked yet.
    DeleteFirstReplicaDeleted,
    /// DeleteTable asked every replica; the item is still there.
    DeleteReplicasDeleted,
    /// TransactWriteItems wrote its PENDING ledger record; nothing prepared.
    TransactionLedgerWritten,
    /// TransactWriteItems prepared every partition (its items are locked); not decided.
    TransactionPrepared,
    /// TransactWriteItems recorded its decision; no partition finished.
    TransactionDecided,
}

impl ControlStep {
    /// TransactWriteItems' steps, in its order.
    pub const TRANSACTION: [ControlStep; 3] = [
        ControlStep::TransactionLedgerWritten,
        ControlStep::TransactionPrepared,
        ControlStep::TransactionDecided,
    ];

    /// Every step of the table operations, in the order CreateTable then DeleteTable take them.
    pub const ALL: [ControlStep; 7] = [
        ControlStep::CreateIdsReserved,
        ControlStep::CreateItemWritten,
        ControlStep::CreateFirstReplicaCreated,
        ControlStep::CreateReplicasCreated,
        ControlStep::DeleteMarked,
        ControlStep::DeleteFirstReplicaDeleted,
        ControlStep::DeleteReplicasDeleted,
    ];
}

impl RouterConfig {
    pub fn new(nodes: Vec<NodeAddress>) -> RouterConfig {
        RouterConfig {
            nodes,
            region: "us-east-1".to_string(),
            account: "000000000000".to_string(),
            partitions_per_table: PARTITIONS_PER_TABLE_DEFAULT,
            request_deadline: REQUEST_DEADLINE,
            seed: 0,
            control_step_timeout: CONTROL_STEP_TIMEOUT,
            orphan_scan_interval: ORPHAN_SCAN_INTERVAL,
            orphan_replica_grace: ORPHAN_REPLICA_GRACE,
            node_down_after: NODE_DOWN_AFTER,
            balance: true,
            split_bytes: SPLIT_BYTES_DEFAULT,
            split_read_units_per_second: SPLIT_READ_UNITS_DEFAULT,
            split_write_units_per_second: SPLIT_WRITE_UNITS_DEFAULT,
            split_traffic_checks: SPLIT_TRAFFIC_CHECKS_DEFAULT,
            autoadmin_takeover_after: AUTOADMIN_LEASE_TAKEOVER_AFTER,
            crash_at: None,
            transaction_lock_stale: TRANSACTION_LOCK_STALE,
            bus_tls: None,
        }
    }
}

/// A table's secondary index definitions, as its requests carry them.
#[derive(Clone, Debug, Default)]
pub(crate) struct IndexDefinitions {
    pub local: Vec<LocalIndex>,
    pub global: Vec<shoal_model::index::global::GlobalIndex>,
    /// The global indexes still backfilling: not readable yet.
    pub creating: Vec<String>,
    /// The table's [`CONSISTENT_GSI_READS_TAG`] is "true".
    pub consistent_global_reads: bool,
}

/// The tag that opts a table in to strongly consistent reads of its global secondary indexes
/// (beyond DynamoDB, which refuses them): a Query or Scan of a GSI with ConsistentRead true
/// first waits until every base partition's outbox is empty, so the index has applied every
/// write committed before the read began, then reads the index partitions' leaders under their
/// leases. A tag, because every SDK can set one and DynamoDB's own API has no member for it.
pub const CONSISTENT_GSI_READS_TAG: &str = "shoal:consistent-gsi-reads";

impl IndexDefinitions {
    /// DynamoDB's refusal of a Query or Scan of an index that is still backfilling.
    pub fn check_readable(&self, range: &RangeRequest) -> Result<(), DynamoError> {
        match &range.global_index {
            Some(index) if self.creating.contains(&index.name) => {
                Err(DynamoError::validation(format!(
                    "Cannot read from backfilling global secondary index: {}",
                    index.name
                )))
            }
            _ => Ok(()),
        }
    }

    pub fn as_table_indexes(&self) -> TableIndexes<'_> {
        TableIndexes {
            local: &self.local,
            global: &self.global,
            consistent_global_reads: self.consistent_global_reads,
        }
    }
}

impl TableState {
    /// The buckets a request is admitted against: the table's, or its GSI `index`'s (`None`
    /// when that index is no longer maintained).
    fn buckets(&mut self, index: Option<&str>) -> Option<&mut TableAdmission> {
        let Some(name) = index else {
            return Some(&mut self.admission);
        };
        let number = self
            .record
            .global_indexes
            .iter()
            .find(|global| global.index.name == name)?
            .index
            .number;
        self.index_admission.get_mut(&number)
    }
}

/// A table as one router core routes to it.
struct TableState {
    record: TableRecord,
    map: PartitionMap,
    /// Each global secondary index's partition map, by index name.
    index_maps: HashMap<String, PartitionMap>,
    admission: TableAdmission,
    /// Each global secondary index's own capacity, by index number (never reused within a
    /// table, so an index deleted and created again under its name starts afresh): CREATING
    /// and ACTIVE indexes, the ones table writes maintain.
    index_admission: HashMap<u8, TableAdmission>,
    loaded_at: Instant,
}

/// The router of one core. `!Send`: it holds bus connections of its executor.
pub struct Router {
    config: RouterConfig,
    forwarder: Forwarder,
    metadata: MetadataStore,
    cluster: RefCell<Option<ClusterRecord>>,
    tables: RefCell<HashMap<String, TableState>>,
    started: Instant,
    /// What the repair pass remembers between passes (repair.rs).
    repair: repair::RepairMemory,
    /// What the autoadmin remembers between passes (autoadmin.rs).
    autoadmin: autoadmin::AutoadminMemory,
    /// What the autoadmin remembers of splits between passes (splits.rs).
    autoadmin_splits: splits::SplitMemory,
    /// Set when an operation stopped at [`RouterConfig::crash_at`].
    crashed: Cell<bool>,
    /// Requests, errors, latency, throttles (metrics.rs).
    metrics: RouterMetrics,
    /// Global secondary index propagation (propagate.rs).
    propagation: propagate::Propagation,
}

fn unix_seconds_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn unix_millis_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// A GSI's capacity: its own ProvisionedThroughput in a provisioned table, on-demand like its
/// table otherwise, up to its own OnDemandThroughput maximums.
fn index_admission_mode(billing: Billing, index: &GlobalIndexRecord) -> BillingMode {
    match (billing, index.throughput) {
        (Billing::Provisioned { .. }, Some(throughput)) => BillingMode::Provisioned {
            read_units_per_second: throughput.read_capacity_units,
            write_units_per_second: throughput.write_capacity_units,
        },
        _ => admission_mode(billing, index.on_demand),
    }
}

/// A table's capacity: its provisioned throughput, or on demand up to its OnDemandThroughput
/// maximums.
fn admission_mode(billing: Billing, maximum: crate::on_demand::OnDemandMaximum) -> BillingMode {
    match billing {
        Billing::PayPerRequest => BillingMode::PayPerRequest {
            read_units_per_second_max: maximum.read,
            write_units_per_second_max: maximum.write,
        },
        Billing::Provisioned {
            read_capacity_units,
            write_capacity_units,
        } => BillingMode::Provisioned {
            read_units_per_second: read_capacity_units,
            write_units_per_second: write_capacity_units,
        },
    }
}

/// Partitions for a new table: the default, or more if its provisioned throughput exceeds what
/// that many partitions can serve at DynamoDB's per-partition ceilings.
pub fn partitions_for(billing: Billing, default: u32) -> u32 {
    let needed = match billing {
        Billing::PayPerRequest => 0,
        Billing::Provisioned {
            read_capacity_units,
            write_capacity_units,
        } => read_capacity_units
            .div_ceil(shoal_admission::PARTITION_READ_UNITS_PER_SECOND_MAX)
            .max(
                write_capacity_units
                    .div_ceil(shoal_admission::PARTITION_WRITE_UNITS_PER_SECOND_MAX),
            ),
    };
    let needed = u32::try_from(needed).unwrap_or(PARTITIONS_PER_TABLE_MAX);
    default.max(needed).clamp(1, PARTITIONS_PER_TABLE_MAX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CapacityReport {
    None,
    Total,
    Indexes,
}

fn capacity_report(body: &Json) -> Result<CapacityReport, DynamoError> {
    match body.get("ReturnConsumedCapacity") {
        None | Some(Json::Null) => Ok(CapacityReport::None),
        Some(Json::String(text)) => match text.as_str() {
            "NONE" => Ok(CapacityReport::None),
            "TOTAL" => Ok(CapacityReport::Total),
            "INDEXES" => Ok(CapacityReport::Indexes),
            other => Err(DynamoError::validation(format!(
                "1 validation error detected: Value '{other}' at 'returnConsumedCapacity' failed to satisfy constraint: Member must satisfy enum value set: [INDEXES, TOTAL, NONE]"
            ))),
        },
        Some(_) => Err(DynamoError::new(
            crate::error::SERIALIZATION,
            "Unexpected value type in payload: ReturnConsumedCapacity must be a string",
        )),
    }
}

fn consumed_capacity_json(table: &str, units_milli: u64, report: CapacityReport) -> Json {
    let units = CapacityUnits::from_milli(units_milli).as_f64();
    let mut consumed = json!({ "TableName": table, "CapacityUnits": units });
    if report == CapacityReport::Indexes {
        consumed["Table"] = json!({ "CapacityUnits": units });
    }
    consumed
}

fn consistency(body: &Json) -> ReadConsistency {
    if body.get("ConsistentRead").and_then(Json::as_bool) == Some(true) {
        ReadConsistency::Strong
    } else {
        ReadConsistency::Eventual
    }
}

/// The partition key's hash of a key or item, with DynamoDB's messages when it is missing.
fn key_hash(key_schema: &KeySchema, key: &Json, is_item: bool) -> Result<u64, DynamoError> {
    let name = &key_schema.partition.name;
    // An Item or Key that is not a JSON object is a malformed request (SerializationException),
    // not a key missing from a well-formed one.
    if !key.is_object() {
        return Err(DynamoError::serialization(if is_item {
            "an item must be an object"
        } else {
            "a key must be an object"
        }));
    }
    let Some(json) = key.get(name) else {
        return Err(DynamoError::validation(if is_item {
            shoal_model::messages::key_missing_in_item(name)
        } else {
            shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA.to_string()
        }));
    };
    let value = value_from_json(json)?;
    if !key_schema.partition.key_type.matches(&value) {
        return Err(DynamoError::validation(if is_item {
            shoal_model::messages::key_type_mismatch(
                name,
                key_schema.partition.key_type.type_name(),
                value.type_name(),
            )
        } else {
            shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA.to_string()
        }));
    }
    partition_hash(&value)
        .ok_or_else(|| DynamoError::validation(shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA))
}

/// The write capacity a write is admitted with before the leader knows its real size: the
/// size of what it sends (the item of a put, the key otherwise).
fn write_estimate_bytes(write: &WriteRequest) -> u64 {
    let bytes = match &write.kind {
        WriteKind::Put(item) => item_size_bytes(item),
        WriteKind::Update(_) | WriteKind::Delete => item_size_bytes(&write.key),
    };
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

fn units_of(reply: &Reply, operation: Operation) -> u64 {
    match operation {
        Operation::Read => reply.read_units_milli,
        Operation::Write => reply.write_units_milli,
    }
}

/// The GSIs a table's writes maintain (CREATING and ACTIVE): the ones with capacity to check
/// and charge.
fn written_indexes(record: &TableRecord) -> impl Iterator<Item = &GlobalIndexRecord> {
    record
        .global_indexes
        .iter()
        .filter(|index| index.status != GlobalIndexStatus::Deleting)
}

/// The buckets of the GSIs `record`'s writes maintain, by index number: those in `previous`
/// kept (re-limited if the index's mode changed), new ones created.
fn index_admissions(
    record: &TableRecord,
    mut previous: HashMap<u8, TableAdmission>,
    now: Duration,
) -> HashMap<u8, TableAdmission> {
    written_indexes(record)
        .map(|index| {
            let mode = index_admission_mode(record.billing, index);
            let admission = match previous.remove(&index.index.number) {
                Some(mut admission) => {
                    if admission.mode() != mode {
                        admission.set_mode(mode, now);
                    }
                    admission
                }
                None => TableAdmission::for_index(mode, now),
            };
            (index.index.number, admission)
        })
        .collect()
}

/// The write units (thousandths) a write's answer says each GSI's changes cost, by index
/// number.
fn global_write_units(result: &ItemResult) -> Vec<(u8, u64)> {
    let units = match result {
        ItemResult::WriteWithIndexes {
            index_write_units_milli,
            ..
        }
        | ItemResult::TransactPrepared {
            index_write_units_milli,
            ..
        } => index_write_units_milli,
        ItemResult::BatchWriteWithIndexes {
            global_write_units_milli,
            ..
        } => global_write_units_milli,
        _ => return Vec::new(),
    };
    units
        .iter()
        .filter(|index| index.global && index.milli > 0)
        .map(|index| (index.number, index.milli))
        .collect()
}

/// What admission settles a request at: its units, less those of its global secondary index
/// changes, which DynamoDB charges to each index's own capacity, never to the table's (charging
/// the table would throttle a table with two GSIs at a third of its capacity):
/// [`Router::charge_index_writes`] charges them to the indexes.
fn table_units_of(reply: &Reply, operation: Operation) -> u64 {
    let units = units_of(reply, operation);
    match (&reply.result, operation) {
        (
            ItemResult::BatchWriteWithIndexes {
                global_write_units_milli,
                ..
            },
            Operation::Write,
        ) => units.saturating_sub(
            global_write_units_milli
                .iter()
                .map(|index| index.milli)
                .sum(),
        ),
        (
            ItemResult::WriteWithIndexes {
                index_write_units_milli,
                ..
            },
            Operation::Write,
        ) => units.saturating_sub(
            index_write_units_milli
                .iter()
                .filter(|index| index.global)
                .map(|index| index.milli)
                .sum(),
        ),
        _ => units,
    }
}

impl Router {
    /// A router with no connections yet; call [`Router::bootstrap`] once for a new cluster, or
    /// [`Router::load_cluster`] to join an existing one, before anything else.
    pub fn new(config: RouterConfig) -> Result<Router, DynamoError> {
        if config.nodes.is_empty() {
            return Err(DynamoError::validation("a router needs at least one node"));
        }
        let directory = crate::partition_map::NodeDirectory::new(
            config.nodes.iter().map(|node| (node.id, node.address)),
        );
        Ok(Router {
            forwarder: Forwarder::new(directory, config.seed).with_bus_tls(config.bus_tls.clone()),
            metadata: MetadataStore::new(metadata_replicas(&config.nodes)),
            cluster: RefCell::new(None),
            tables: RefCell::new(HashMap::new()),
            started: Instant::now(),
            repair: repair::RepairMemory::default(),
            autoadmin: autoadmin::AutoadminMemory::default(),
            autoadmin_splits: splits::SplitMemory::default(),
            crashed: Cell::new(false),
            metrics: RouterMetrics::default(),
            propagation: Default::default(),
            config,
        })
    }

    /// Marks the end of a control-plane step. Under fault injection ([`RouterConfig::crash_at`])
    /// the operation stops here for good, as if the router died.
    async fn step_done(&self, step: ControlStep) {
        if self.config.crash_at == Some(step) {
            self.crashed.set(true);
            tracing::warn!(?step, "injected crash: this operation stops here for good");
            std::future::pending::<()>().await;
        }
    }

    /// This core's metrics in the Prometheus text format (metrics.rs).
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&self.forwarder.retries())
    }

    /// Records an answered request for /metrics (the one dispatch table calls it).
    pub(crate) fn record_request(
        &self,
        operation: &'static str,
        latency: Duration,
        error: Option<&str>,
    ) {
        self.metrics.request_served(operation, latency, error);
    }

    /// Whether an operation stopped at the injected crash step ([`RouterConfig::crash_at`]).
    pub fn crashed(&self) -> bool {
        self.crashed.get()
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.config.request_deadline
    }

    fn admission_now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Creates the metadata group on its nodes and writes the cluster item (the configured
    /// nodes, `shards_per_node`), unless a cluster item exists, which is then kept. Safe to
    /// repeat and to run from several routers.
    ///
    /// The group is created only where it was never formed: its first nodes are the lowest
    /// configured ids, but it may have moved since (the autoadmin), and creating replicas on
    /// those nodes again would make a second, empty group there, with a catalog of its own.
    /// So a group that answers (the cluster item read, present or not) is only completed on
    /// its first nodes when it has no cluster item yet (a bootstrap that stopped between the
    /// two; no move happens before the item exists). One that does not answer is created only
    /// if fewer than a majority of its first nodes host a replica, no other node does, and no
    /// node knows of a node this router was not configured with (one that joined): otherwise
    /// it exists and is electing, or has moved, and the caller asks again later.
    pub async fn bootstrap(&self, shards_per_node: u16) -> Result<ClusterRecord, DynamoError> {
        if shards_per_node == 0 {
            return Err(DynamoError::validation(
                "shards_per_node must be at least 1",
            ));
        }
        let first = metadata_replicas(&self.config.nodes);
        match self
            .metadata
            .get(&self.forwarder, CLUSTER_KEY, self.deadline())
            .await
        {
            Ok(Some(_)) => return self.load_cluster().await,
            Ok(None) => {}
            Err(unreachable) => {
                let (hosting, _) = self.metadata.find_group(&self.forwarder).await;
                // The nodes know of nodes this router was not configured with: nodes joined,
                // so the cluster was bootstrapped, wherever its group is now.
                let configured: BTreeSet<NodeId> =
                    self.config.nodes.iter().map(|node| node.id).collect();
                let joined = self
                    .forwarder
                    .directory()
                    .nodes()
                    .any(|(node, _)| !configured.contains(&node));
                let formed = joined
                    || hosting.len() * 2 > first.len()
                    || hosting.iter().any(|node| !first.contains(node));
                if formed {
                    self.metadata.set_replicas(&hosting);
                    return Err(DynamoError::internal(format!(
                        "Internal server error (the metadata group on nodes {hosting:?} does \
                         not answer yet: {})",
                        unreachable.into_dynamo().message
                    )));
                }
            }
        }
        // The group's first nodes, whatever a rediscovery above found of it so far.
        self.metadata.set_replicas(&first);
        self.metadata.create_group(&self.forwarder).await?;
        let cluster = ClusterRecord {
            nodes: self.config.nodes.clone(),
            draining: Default::default(),
            shards_per_node,
            created_at_seconds: unix_seconds_now(),
            highest_node_id: self
                .config
                .nodes
                .iter()
                .map(|node| node.id)
                .max()
                .unwrap_or(0),
            revision: 0,
            metadata_replicas: self.metadata.replicas(),
            metadata_replicas_recorded: true,
            metadata_move: None,
        };
        let deadline = Instant::now() + crate::metadata::BOOTSTRAP_DEADLINE;
        // A fresh group elects its first leader within a few election timeouts; until then
        // every replica answers NotLeader, so keep trying until the bootstrap deadline.
        loop {
            match self
                .metadata
                .put_new(
                    &self.forwarder,
                    cluster.to_item(),
                    self.deadline().min(deadline),
                )
                .await
            {
                Ok(_) => break,
                Err(ForwardError::Unavailable { .. }) if Instant::now() < deadline => {}
                Err(error) => return Err(error.into_dynamo()),
            }
        }
        self.load_cluster().await
    }

    /// Reads the cluster item and routes with its node list from now on.
    pub async fn load_cluster(&self) -> Result<ClusterRecord, DynamoError> {
        let item = self
            .metadata
            .get(&self.forwarder, CLUSTER_KEY, self.deadline())
            .await
            .map_err(ForwardError::into_dynamo)?
            .ok_or_else(|| {
                DynamoError::internal("Internal server error (the cluster is not bootstrapped)")
            })?;
        let cluster = ClusterRecord::from_item(&item)?;
        self.forwarder.set_directory(cluster.directory());
        self.metadata.set_replicas(&cluster.metadata_replicas);
        *self.cluster.borrow_mut() = Some(cluster.clone());
        Ok(cluster)
    }

    async fn cluster(&self) -> Result<ClusterRecord, DynamoError> {
        let cached = self.cluster.borrow().clone();
        match cached {
            Some(cluster) => Ok(cluster),
            None => self.load_cluster().await,
        }
    }

    async fn read_table(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<TableRecord>, DynamoError> {
        let item = self
            .metadata
            .get(&self.forwarder, &TableRecord::item_key(name), deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        item.map(|item| TableRecord::from_item(&item)).transpose()
    }

    /// Re-reads a table's metadata into the cache (keeping its admission state).
    async fn refresh_table(&self, name: &str, deadline: Instant) -> Result<(), DynamoError> {
        let record = self.read_table(name, deadline).await?;
        let Some(record) = record.filter(|record| record.status == TableStatus::Active) else {
            self.tables.borrow_mut().remove(name);
            return Err(DynamoError::resource_not_found());
        };
        self.cache_record(record)
    }

    /// Routes with `record` from now on: its partition map, and its billing mode for admission
    /// (a changed mode re-limits the table's buckets at once).
    fn cache_record(&self, record: TableRecord) -> Result<(), DynamoError> {
        let name = record.name.clone();
        let invalid = |error| {
            DynamoError::internal(format!(
                "Internal server error (table {name} has an invalid partition map: {error:?})"
            ))
        };
        let map = PartitionMap::new(record.routed_partitions()).map_err(invalid)?;
        let index_maps = record
            .global_indexes
            .iter()
            .filter(|index| index.status != GlobalIndexStatus::Deleting)
            .map(|index| {
                PartitionMap::new(record.routed_index_partitions(index))
                    .map(|map| (index.index.name.clone(), map))
                    .map_err(invalid)
            })
            .collect::<Result<HashMap<_, _>, _>>()?;
        let now = self.admission_now();
        let mut tables = self.tables.borrow_mut();
        match tables.get_mut(&name) {
            Some(state) => {
                let mode = admission_mode(record.billing, record.on_demand);
                if state.admission.mode() != mode {
                    state.admission.set_mode(mode, now);
                }
                let previous = std::mem::take(&mut state.index_admission);
                state.index_admission = index_admissions(&record, previous, now);
                state.record = record;
                state.map = map;
                state.index_maps = index_maps;
                state.loaded_at = Instant::now();
            }
            None => {
                if tables.len() >= CACHED_TABLES_MAX
                    && let Some(oldest) = tables
                        .iter()
                        .min_by_key(|(_, state)| state.loaded_at)
                        .map(|(name, _)| name.clone())
                {
                    tables.remove(&oldest);
                }
                let index_admission = index_admissions(&record, HashMap::new(), now);
                tables.insert(
                    name,
                    TableState {
                        admission: TableAdmission::new(
                            admission_mode(record.billing, record.on_demand),
                            now,
                        ),
                        index_admission,
                        record,
                        map,
                        index_maps,
                        loaded_at: Instant::now(),
                    },
                );
            }
        }
        Ok(())
    }

    /// The table's key schema and partition map, from the cache while it is fresh.
    async fn table(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<(KeySchema, PartitionMap), DynamoError> {
        let fresh = self
            .tables
            .borrow()
            .get(name)
            .filter(|state| state.loaded_at.elapsed() < TABLE_CACHE_TTL)
            .map(|state| (state.record.key_schema.clone(), state.map.clone()));
        if let Some(found) = fresh {
            return Ok(found);
        }
        self.refresh_table(name, deadline).await?;
        self.tables
            .borrow()
            .get(name)
            .map(|state| (state.record.key_schema.clone(), state.map.clone()))
            .ok_or_else(DynamoError::resource_not_found)
    }

    /// [`Router::table`] with the table's secondary indexes, which every write carries (its
    /// leader maintains local entries and fills the outbox of global ones) and Query and Scan
    /// may read.
    async fn table_with_indexes(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<(KeySchema, IndexDefinitions, PartitionMap), DynamoError> {
        let (key_schema, map) = self.table(name, deadline).await?;
        // No await since `table` filled the cache: the indexes are the same record's.
        let indexes = self
            .tables
            .borrow()
            .get(name)
            .map(|state| IndexDefinitions {
                local: state.record.local_indexes.clone(),
                // Writes carry a CREATING index too (its entries accrue while it backfills);
                // a DELETING one no longer.
                global: state
                    .record
                    .global_indexes
                    .iter()
                    .filter(|record| record.status != GlobalIndexStatus::Deleting)
                    .map(|record| record.index.clone())
                    .collect(),
                creating: state
                    .record
                    .global_indexes
                    .iter()
                    .filter(|record| record.status == GlobalIndexStatus::Creating)
                    .map(|record| record.index.name.clone())
                    .collect(),
                consistent_global_reads: state
                    .record
                    .tags
                    .get(CONSISTENT_GSI_READS_TAG)
                    .is_some_and(|value| value == "true"),
            })
            .unwrap_or_default();
        Ok((key_schema, indexes, map))
    }

    /// The partition map requests to `table` (or to its global index `index`) route with.
    async fn route_map(
        &self,
        table: &str,
        index: Option<&str>,
        deadline: Instant,
    ) -> Result<PartitionMap, DynamoError> {
        let (_, map) = self.table(table, deadline).await?;
        let Some(index) = index else {
            return Ok(map);
        };
        self.tables
            .borrow()
            .get(table)
            .and_then(|state| state.index_maps.get(index).cloned())
            .ok_or_else(|| DynamoError::validation(shoal_model::messages::index_not_found(index)))
    }

    /// Remembers which replica of `partition` (of `table`, or of its global index `index`)
    /// leads, for the next request.
    fn note_leader(
        &self,
        table: &str,
        index: Option<&str>,
        partition: u64,
        leader: Option<NodeId>,
    ) {
        let mut tables = self.tables.borrow_mut();
        let Some(state) = tables.get_mut(table) else {
            return;
        };
        let map = match index {
            None => Some(&mut state.map),
            Some(index) => state.index_maps.get_mut(index),
        };
        if let Some(map) = map {
            map.note_leader(partition, leader);
        }
    }

    /// Admits a request against the buckets of `table`, or of its GSI `index` when named (a
    /// read of the index, on the index's partition `partition`).
    fn admit(
        &self,
        table: &str,
        index: Option<&str>,
        operation: Operation,
        partition: u64,
        estimate: CapacityUnits,
    ) -> Result<Option<shoal_admission::Admission>, DynamoError> {
        let now = self.admission_now();
        let mut tables = self.tables.borrow_mut();
        let Some(state) = tables.get_mut(table) else {
            return Ok(None);
        };
        let Some(admission) = state.buckets(index) else {
            // An index no longer maintained (DELETING since the read was routed): it has no
            // capacity left to charge, and the table's is not its to take.
            return Ok(None);
        };
        admission
            .admit(operation, partition, estimate, now)
            .map(Some)
            .map_err(|throttled| self.throttled(operation, &throttled))
    }

    /// A refusal of admission as the client sees it, counted on /metrics by its reason.
    fn throttled(
        &self,
        operation: Operation,
        throttled: &shoal_admission::Throttled,
    ) -> DynamoError {
        let direction = match operation {
            Operation::Read => "read",
            Operation::Write => "write",
        };
        self.metrics.throttled(
            direction,
            throttled.reason.unwrap_or(throttled.exception_name),
        );
        DynamoError::new(throttled.exception_name, throttled.message)
    }

    /// Settles an admission of [`Router::admit`] (with the same `index`).
    fn settle(
        &self,
        table: &str,
        index: Option<&str>,
        admission: Option<shoal_admission::Admission>,
        consumed_milli: u64,
    ) {
        let Some(admission) = admission else { return };
        let now = self.admission_now();
        if let Some(buckets) = self
            .tables
            .borrow_mut()
            .get_mut(table)
            .and_then(|state| state.buckets(index))
        {
            buckets.settle(admission, CapacityUnits::from_milli(consumed_milli), now);
        }
    }

    /// A table write maintains every GSI: refused, having consumed nothing, while one of them
    /// has no write capacity left (DynamoDB throttles the base table then).
    fn check_index_writes(&self, table: &str) -> Result<(), DynamoError> {
        let now = self.admission_now();
        let mut tables = self.tables.borrow_mut();
        let Some(state) = tables.get_mut(table) else {
            return Ok(());
        };
        for admission in state.index_admission.values_mut() {
            admission
                .check(Operation::Write, now)
                .map_err(|throttled| self.throttled(Operation::Write, &throttled))?;
        }
        Ok(())
    }

    /// Charges each GSI of `table` its share of a write's units (the leader's answer names
    /// them by index number).
    fn charge_index_writes(&self, table: &str, reply: &Reply) {
        self.charge_index_units(table, global_write_units(&reply.result));
    }

    /// Charges each GSI of `table` the units (thousandths) given by index number.
    pub(super) fn charge_index_units(&self, table: &str, units: Vec<(u8, u64)>) {
        if units.is_empty() {
            return;
        }
        let now = self.admission_now();
        let mut tables = self.tables.borrow_mut();
        let Some(state) = tables.get_mut(table) else {
            return;
        };
        for (number, milli) in units {
            if let Some(admission) = state.index_admission.get_mut(&number) {
                admission.charge(Operation::Write, CapacityUnits::from_milli(milli), now);
            }
        }
    }

    /// Routes one request to the partition owning `hash`, refreshing the map when a node says
    /// it is stale, admitting it against the table's and the partition's buckets first.
    async fn route(
        &self,
        table: &str,
        hash: u64,
        call: &ItemCall,
        estimate: (Operation, CapacityUnits),
        deadline: Instant,
    ) -> Result<Reply, DynamoError> {
        self.route_in(table, None, hash, call, estimate, deadline)
            .await
    }

    /// [`Router::route`] to the partitions of `table`'s global index `index` when it is named
    /// (admitted against the table's buckets).
    async fn route_in(
        &self,
        table: &str,
        index: Option<&str>,
        hash: u64,
        call: &ItemCall,
        estimate: (Operation, CapacityUnits),
        deadline: Instant,
    ) -> Result<Reply, DynamoError> {
        self.route_admitted(table, index, hash, call, Some(estimate), deadline)
            .await
    }

    /// [`Router::route`] without admission: for the steps of work admitted already (a
    /// transaction's commit, its ledger records, its recovery), which must not be refused
    /// half way for want of capacity the transaction's own prepare used.
    async fn route_unadmitted(
        &self,
        table: &str,
        hash: u64,
        call: &ItemCall,
        deadline: Instant,
    ) -> Result<Reply, DynamoError> {
        self.route_admitted(table, None, hash, call, None, deadline)
            .await
    }

    async fn route_admitted(
        &self,
        table: &str,
        index: Option<&str>,
        hash: u64,
        call: &ItemCall,
        estimate: Option<(Operation, CapacityUnits)>,
        deadline: Instant,
    ) -> Result<Reply, DynamoError> {
        self.route_forward(table, index, hash, call, estimate, deadline)
            .await
            .map_err(ForwardError::into_dynamo)
    }

    /// [`Router::route_admitted`], failing with the forwarder's error: for callers that act on
    /// its kind (a transaction groups keys again on [`ForwardError::KeysElsewhere`]). Errors of
    /// the router's own (metadata, admission) come back as [`ForwardError::Refused`].
    async fn route_forward(
        &self,
        table: &str,
        index: Option<&str>,
        hash: u64,
        call: &ItemCall,
        estimate: Option<(Operation, CapacityUnits)>,
        deadline: Instant,
    ) -> Result<Reply, ForwardError> {
        let mut refreshes = 0;
        let mut split_pause = SPLIT_ROUTE_WAIT_PAUSE_MIN;
        loop {
            let map = self
                .route_map(table, index, deadline)
                .await
                .map_err(ForwardError::Refused)?;
            let route: PartitionEntry = map.lookup(hash).clone();
            let admission = match estimate {
                Some((operation, units)) => {
                    if operation == Operation::Write && index.is_none() {
                        self.check_index_writes(table)
                            .map_err(ForwardError::Refused)?;
                    }
                    self.admit(table, index, operation, route.id, units)
                        .map_err(ForwardError::Refused)?
                }
                None => None,
            };
            let outcome = self.forwarder.forward(&route, call, deadline).await;
            match outcome {
                Ok(reply) => {
                    if let Some((operation, _)) = estimate {
                        self.settle(table, index, admission, table_units_of(&reply, operation));
                        self.charge_index_writes(table, &reply);
                    }
                    self.note_leader(table, index, route.id, Some(reply.leader));
                    return Ok(reply);
                }
                Err(ForwardError::StaleRoute { newer_epoch, .. })
                    if refreshes < ROUTE_REFRESHES_MAX =>
                {
                    // Refused before doing anything: nothing was consumed.
                    self.settle(table, index, admission, 0);
                    self.refresh_table(table, deadline)
                        .await
                        .map_err(ForwardError::Refused)?;
                    let refreshed = self
                        .route_map(table, index, deadline)
                        .await
                        .map_err(ForwardError::Refused)?;
                    let unchanged = {
                        let now_routed = refreshed.lookup(hash);
                        now_routed.id == route.id && now_routed.epoch == route.epoch
                    };
                    if newer_epoch && unchanged {
                        // The node is ahead of the metadata: a split froze the partition and
                        // its children are about to be routed. Wait for that write rather
                        // than fail, as long as the deadline allows.
                        if Instant::now() + split_pause >= deadline {
                            return Err(ForwardError::Unavailable {
                                message: format!(
                                    "partition {} is being split; its children were not routed \
                                     before the request's deadline",
                                    route.id
                                ),
                                replica_may_have_served: false,
                            });
                        }
                        glommio::timer::sleep(split_pause).await;
                        split_pause = (split_pause * 2).min(SPLIT_ROUTE_WAIT_PAUSE_MAX);
                    } else {
                        refreshes += 1;
                    }
                }
                Err(error) => {
                    if matches!(error, ForwardError::OutcomeUnknown { .. }) {
                        // The leader we asked went silent or lost its leadership with the write
                        // in flight (killed, paused, cut off). Keeping it as the hint sent every
                        // later write to the same silent node for a call timeout each, for as
                        // long as it stayed silent (seconds of stall after the majority had
                        // elected a new leader, issue 14). The next request asks another
                        // replica, which names the leader if it is not one.
                        let next = route
                            .first_target()
                            .and_then(|asked| route.next_replica(asked));
                        self.note_leader(table, index, route.id, next);
                    }
                    // DynamoDB charges nothing for a request it refused. When a replica may
                    // have done the work (a failed condition still reads the item; a write
                    // whose outcome is unknown) the estimate stays charged; when none can have
                    // (every attempt refused as not leader, busy or not applied, or never sent)
                    // it is refunded.
                    let charged = match &admission {
                        Some(admission) if error.may_have_consumed() => {
                            admission.charged.as_milli()
                        }
                        _ => 0,
                    };
                    self.settle(table, index, admission, charged);
                    return Err(error);
                }
            }
        }
    }

    /// The partitions a table is routed to now (from metadata, leader hints as this core knows
    /// them): for admin tools and tests.
    pub async fn table_partitions(&self, name: &str) -> Result<Vec<PartitionEntry>, DynamoError> {
        self.refresh_table(name, self.deadline()).await?;
        self.tables
            .borrow()
            .get(name)
            .map(|state| state.map.partitions().to_vec())
            .ok_or_else(DynamoError::resource_not_found)
    }

    /// [`Router::table_partitions`] of the table's global secondary index `index`.
    pub async fn index_partitions(
        &self,
        table: &str,
        index: &str,
    ) -> Result<Vec<PartitionEntry>, DynamoError> {
        self.refresh_table(table, self.deadline()).await?;
        self.tables
            .borrow()
            .get(table)
            .and_then(|state| state.index_maps.get(index))
            .map(|map| map.partitions().to_vec())
            .ok_or_else(DynamoError::resource_not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumed_capacity_has_dynamodb_shape() {
        assert_eq!(
            consumed_capacity_json("t", 1500, CapacityReport::Total),
            json!({"TableName": "t", "CapacityUnits": 1.5})
        );
        assert_eq!(
            consumed_capacity_json("t", 500, CapacityReport::Indexes)["Table"],
            json!({"CapacityUnits": 0.5})
        );
        assert!(capacity_report(&json!({"ReturnConsumedCapacity": "ALL"})).is_err());
    }
}
