//! [`Router`]: the DynamoDB operations the front end calls, one `Router` per router core.
//!
//! Each method takes the DynamoDB request body and returns the response body or a
//! [`DynamoError`]. Control-plane operations read and write the metadata group
//! (src/metadata.rs); item operations are routed by the partition key's hash through the
//! table's cached partition map (src/partition_map.rs), admitted by `shoal-admission`, and
//! forwarded to the partition leader's shard (src/forward.rs).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value as Json, json};
use shoal_admission::{
    BillingMode, CapacityUnits, Operation, ReadConsistency, TableAdmission, read_units, write_units,
};
use shoal_model::json::value_from_json;
use shoal_model::key::{KeySchema, partition_hash, storage_key_hash};
use shoal_model::request::{
    GetRequest, ItemOperation, PreparedRequest, RangeRequest, WriteKind, WriteRequest, prepare,
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
    Billing, CLUSTER_KEY, ClusterRecord, MetadataStore, NodeAddress, TableRecord, TableStatus,
    key_schema_wire, metadata_replicas,
};
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
/// How often a router runs its repair pass over the tables with pending replicas
/// ([`Router::create_pending_replicas`]).
pub const PENDING_REPLICAS_INTERVAL: Duration = Duration::from_secs(5);
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
const _: () = assert!(PARTITIONS_PER_TABLE_DEFAULT <= PARTITIONS_PER_TABLE_MAX);
const _: () = assert!(METADATA_WRITE_ATTEMPTS_MAX >= 1);
// The waits for replicas leave CreateTable the time to write the table item twice, and to
// remove what it made when it fails, within its deadline.
const _: () = assert!(REPLICAS_ALL_WAIT.as_millis() <= REPLICAS_MAJORITY_WAIT.as_millis());
const _: () = assert!(REPLICAS_MAJORITY_WAIT.as_millis() * 2 <= CONTROL_DEADLINE.as_millis());
const _: () = assert!(REPLICA_CREATE_RETRY_INTERVAL.as_millis() < REPLICAS_ALL_WAIT.as_millis());
const _: () = assert!(LIST_TAGS_PAGE_TAGS_MAX >= validate::TAGS_PER_RESOURCE_MAX);
// One batch never fills a connection's pipeline to a shard, which other requests share.
const _: () = assert!(
    BATCH_PARTITIONS_IN_FLIGHT_MAX >= 1
        && BATCH_PARTITIONS_IN_FLIGHT_MAX < shoal_bus::limits::CLIENT_REQUESTS_IN_FLIGHT_MAX
);

/// The router's settings. `nodes` must include the metadata nodes: the metadata group lives on
/// the lowest node ids of the bootstrap node list, up to three.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub nodes: Vec<NodeAddress>,
    pub region: String,
    pub account: String,
    pub partitions_per_table: u32,
    pub request_deadline: Duration,
    /// Seeds the retry jitter; give each router core its own.
    pub seed: u64,
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
        }
    }
}

/// A table as one router core routes to it.
struct TableState {
    record: TableRecord,
    map: PartitionMap,
    admission: TableAdmission,
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

/// A time in unix milliseconds as DynamoDB's JSON dates are: seconds, with the fraction when
/// there is one (so a date set from a whole second equals CreationDateTime exactly).
fn date_json(unix_ms: u64) -> Json {
    if unix_ms.is_multiple_of(1000) {
        json!(unix_ms / 1000)
    } else {
        // Exact to the millisecond: unix milliseconds stay below 2^53 until the year 287396.
        json!(unix_ms as f64 / 1000.0)
    }
}

/// ListTagsOfResource's page: the tags after `after` in key order, at most `page_tags_max`,
/// and the NextToken (the page's last key) when more follow.
fn tags_page(
    tags: &BTreeMap<String, String>,
    after: Option<&str>,
    page_tags_max: usize,
) -> (Vec<Json>, Option<String>) {
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut following = tags.range::<str, _>((lower, Bound::Unbounded));
    let page: Vec<Json> = following
        .by_ref()
        .take(page_tags_max)
        .map(|(key, value)| json!({ "Key": key, "Value": value }))
        .collect();
    let next = match following.next() {
        Some(_) => page
            .last()
            .and_then(|tag| tag["Key"].as_str())
            .map(str::to_string),
        None => None,
    };
    (page, next)
}

fn admission_mode(billing: Billing) -> BillingMode {
    match billing {
        Billing::PayPerRequest => BillingMode::PayPerRequest {
            read_units_per_second_max: None,
            write_units_per_second_max: None,
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

/// The partition hash a Query reads: its key condition names one partition key, so both of its
/// storage-key bounds start with that key's hash.
fn query_hash(range: &RangeRequest) -> Result<u64, DynamoError> {
    match &range.lower {
        Bound::Included(key) | Bound::Excluded(key) => storage_key_hash(key),
        Bound::Unbounded => None,
    }
    .ok_or_else(|| DynamoError::validation(shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA))
}

/// The hash range of a Scan's segment (all of it without Segment/TotalSegments), with the
/// partition's own checks of the pair so the router never routes a request it will refuse;
/// and the segment's numbers, for messages.
fn scan_segment(body: &Json) -> Result<(HashRange, Option<(u64, u64)>), DynamoError> {
    let segment = body.get("Segment").and_then(Json::as_u64);
    let total = body.get("TotalSegments").and_then(Json::as_u64);
    match shoal_model::messages::scan_segment(segment, total).map_err(DynamoError::validation)? {
        None => Ok((HashRange::ALL, None)),
        Some((segment, total)) => {
            // `total` <= TOTAL_SEGMENTS_MAX fits u32.
            let index = u32::try_from(segment).unwrap_or(0);
            let count = u32::try_from(total).unwrap_or(1);
            Ok((even_range(index, count), Some((segment, total))))
        }
    }
}

/// The hash a Scan page starts at: its ExclusiveStartKey's (which the prepared range starts
/// after), or the segment's first. A start key of another segment is refused with DynamoDB's
/// message (verified on the real service by ScyllaDB's Alternator tests,
/// scylladb/scylladb#9270).
fn scan_start_hash(
    body: &Json,
    range: &RangeRequest,
    segment: HashRange,
    segment_numbers: Option<(u64, u64)>,
) -> Result<u64, DynamoError> {
    if body.get("ExclusiveStartKey").is_none_or(Json::is_null) {
        return Ok(segment.first);
    }
    let hash = match &range.lower {
        Bound::Excluded(key) => storage_key_hash(key),
        _ => None,
    }
    .ok_or_else(|| {
        DynamoError::validation(
            "The provided starting key is invalid: The provided key element does not match the schema",
        )
    })?;
    if !segment.contains(hash) {
        let (segment, total) = segment_numbers.unwrap_or((0, 1));
        return Err(DynamoError::validation(format!(
            "The provided starting key is invalid: Invalid ExclusiveStartKey. Please use ExclusiveStartKey with correct Segment. TotalSegments: {total} Segment: {segment}"
        )));
    }
    Ok(hash)
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
            forwarder: Forwarder::new(directory, config.seed),
            metadata: MetadataStore::new(metadata_replicas(&config.nodes)),
            cluster: RefCell::new(None),
            tables: RefCell::new(HashMap::new()),
            started: Instant::now(),
            config,
        })
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
    pub async fn bootstrap(&self, shards_per_node: u16) -> Result<ClusterRecord, DynamoError> {
        if shards_per_node == 0 {
            return Err(DynamoError::validation(
                "shards_per_node must be at least 1",
            ));
        }
        self.metadata.create_group(&self.forwarder).await?;
        let cluster = ClusterRecord {
            nodes: self.config.nodes.clone(),
            shards_per_node,
            created_at_seconds: unix_seconds_now(),
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
        let map = PartitionMap::new(record.routed_partitions()).map_err(|error| {
            DynamoError::internal(format!(
                "Internal server error (table {name} has an invalid partition map: {error:?})"
            ))
        })?;
        let now = self.admission_now();
        let mut tables = self.tables.borrow_mut();
        match tables.get_mut(&name) {
            Some(state) => {
                if state.record.billing != record.billing {
                    state
                        .admission
                        .set_mode(admission_mode(record.billing), now);
                }
                state.record = record;
                state.map = map;
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
                tables.insert(
                    name,
                    TableState {
                        admission: TableAdmission::new(admission_mode(record.billing), now),
                        record,
                        map,
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

    fn admit(
        &self,
        table: &str,
        operation: Operation,
        partition: u64,
        estimate: CapacityUnits,
    ) -> Result<Option<shoal_admission::Admission>, DynamoError> {
        let now = self.admission_now();
        let mut tables = self.tables.borrow_mut();
        let Some(state) = tables.get_mut(table) else {
            return Ok(None);
        };
        state
            .admission
            .admit(operation, partition, estimate, now)
            .map(Some)
            .map_err(|throttled| DynamoError::new(throttled.exception_name, throttled.message))
    }

    fn settle(
        &self,
        table: &str,
        admission: Option<shoal_admission::Admission>,
        consumed_milli: u64,
    ) {
        let Some(admission) = admission else { return };
        let now = self.admission_now();
        if let Some(state) = self.tables.borrow_mut().get_mut(table) {
            state
                .admission
                .settle(admission, CapacityUnits::from_milli(consumed_milli), now);
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
        let mut refreshes = 0;
        loop {
            let (_, map) = self.table(table, deadline).await?;
            let route: PartitionEntry = map.lookup(hash).clone();
            let admission = self.admit(table, estimate.0, route.id, estimate.1)?;
            let outcome = self.forwarder.forward(&route, call, deadline).await;
            match outcome {
                Ok(reply) => {
                    self.settle(table, admission, units_of(&reply, estimate.0));
                    if let Some(state) = self.tables.borrow_mut().get_mut(table) {
                        state.map.note_leader(route.id, Some(reply.leader));
                    }
                    return Ok(reply);
                }
                Err(ForwardError::StaleRoute { .. }) if refreshes < ROUTE_REFRESHES_MAX => {
                    // Refused before doing anything: nothing was consumed.
                    self.settle(table, admission, 0);
                    refreshes += 1;
                    self.refresh_table(table, deadline).await?;
                }
                Err(error) => {
                    if matches!(error, ForwardError::OutcomeUnknown { .. }) {
                        // The leader we asked went silent or lost its leadership with the write
                        // in flight (killed, paused, cut off). Keeping it as the hint sent every
                        // later write to the same silent node for a call timeout each, for as
                        // long as it stayed silent (seconds of stall after the majority had
                        // elected a new leader, issue 14). The next request asks another
                        // replica, which names the leader if it is not one.
                        if let Some(state) = self.tables.borrow_mut().get_mut(table) {
                            let next = route
                                .first_target()
                                .and_then(|asked| route.next_replica(asked));
                            state.map.note_leader(route.id, next);
                        }
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
                    self.settle(table, admission, charged);
                    return Err(error.into_dynamo());
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

    // ---- Control plane --------------------------------------------------------------------

    /// A table's ARN, as DescribeTable reports it and the tag operations take it.
    fn table_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:dynamodb:{}:{}:table/{name}",
            self.config.region, self.config.account
        )
    }

    fn table_description(&self, record: &TableRecord) -> Json {
        let mut definitions: Vec<Json> = record
            .attribute_definitions
            .iter()
            .map(|(name, key_type)| {
                json!({ "AttributeName": name, "AttributeType": key_type.type_name() })
            })
            .collect();
        definitions.sort_by(|a, b| {
            a["AttributeName"]
                .as_str()
                .cmp(&b["AttributeName"].as_str())
        });
        let mut key_schema = vec![json!({
            "AttributeName": record.key_schema.partition.name,
            "KeyType": "HASH",
        })];
        if let Some(sort) = &record.key_schema.sort {
            key_schema.push(json!({ "AttributeName": sort.name, "KeyType": "RANGE" }));
        }
        let (mode, read, write) = match record.billing {
            Billing::PayPerRequest => ("PAY_PER_REQUEST", 0, 0),
            Billing::Provisioned {
                read_capacity_units,
                write_capacity_units,
            } => ("PROVISIONED", read_capacity_units, write_capacity_units),
        };
        let history = &record.throughput_history;
        let mut throughput = json!({
            "NumberOfDecreasesToday": history.decreases_today(unix_millis_now()),
            "ReadCapacityUnits": read,
            "WriteCapacityUnits": write,
        });
        if let Some(at) = history.last_increase_ms {
            throughput["LastIncreaseDateTime"] = date_json(at);
        }
        if let Some(at) = history.last_decrease_ms {
            throughput["LastDecreaseDateTime"] = date_json(at);
        }
        let first_partition = record.partitions.first().map_or(0, |p| p.id);
        let mut description = json!({
            "TableName": record.name,
            "TableStatus": record.status.name(),
            "AttributeDefinitions": definitions,
            "KeySchema": key_schema,
            "CreationDateTime": record.created_at_seconds,
            "ProvisionedThroughput": throughput,
            "TableSizeBytes": record.size_bytes,
            "ItemCount": record.item_count,
            "TableArn": self.table_arn(&record.name),
            // Stable for the table's life: derived from its first partition id, never reused.
            "TableId": format!("00000000-0000-4000-8000-{first_partition:012x}"),
            "DeletionProtectionEnabled": false,
        });
        // DynamoDB reports the summary for a table that is or ever was on demand, and none for
        // a table that was always provisioned.
        if record.billing == Billing::PayPerRequest || record.pay_per_request_since_ms.is_some() {
            let mut summary = json!({ "BillingMode": mode });
            if let Some(since) = record.pay_per_request_since_ms {
                summary["LastUpdateToPayPerRequestDateTime"] = date_json(since);
            }
            description["BillingModeSummary"] = summary;
        }
        description
    }

    /// CreateTable. Creates the partitions' replicas before answering, so the table is
    /// ACTIVE when this returns (DynamoDB answers CREATING and finishes later; clients that
    /// wait for ACTIVE see it at once).
    ///
    /// A node that is down does not stop it: once every partition has a majority of its
    /// replicas created (all MultiPaxos needs to choose values and elect leaders) and
    /// [`REPLICAS_ALL_WAIT`] has passed, the table becomes ACTIVE with the other replicas
    /// pending (metadata invariant 4). They keep their place in the replica sets, so the
    /// table keeps the replication factor it was placed with: the repair pass
    /// ([`Router::create_pending_replicas`]) creates them when their nodes answer, and they
    /// catch up from their peers' logs or snapshots. Placing on the live nodes only would
    /// instead leave the table with fewer replicas for good (nothing moves replicas yet), and
    /// a three-node cluster with a node down would place every partition on two nodes that
    /// must both stay up.
    ///
    /// Without a majority after [`REPLICAS_MAJORITY_WAIT`], the replicas it made are deleted,
    /// then the table item, and the client gets InternalServerError: the cluster cannot serve
    /// the table now, a retry may succeed once nodes return, and every SDK retries that error
    /// by itself (LimitExceededException would tell the client it runs too many control-plane
    /// operations, which is not the case). The name is free again for that retry.
    pub async fn create_table(&self, body: Json) -> Result<Json, DynamoError> {
        let request = validate::create_table(&body)?;
        validate::check_table_maximum(request.billing, &self.config.region)?;
        let deadline = Instant::now() + CONTROL_DEADLINE;
        let cluster = self.cluster().await?;
        let partition_count = partitions_for(request.billing, self.config.partitions_per_table);
        // Refuse a duplicate before spending partition ids (the conditional put below is what
        // makes names unique; this only saves ids in the common case).
        if self.read_table(&request.name, deadline).await?.is_some() {
            return Err(DynamoError::new(
                RESOURCE_IN_USE,
                format!("Table already exists: {}", request.name),
            ));
        }
        let first_id = self
            .metadata
            .allocate_partition_ids(&self.forwarder, u64::from(partition_count), deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        let node_ids: Vec<u64> = cluster.nodes.iter().map(|node| node.id).collect();
        let planned = place(
            &node_ids,
            cluster.shards_per_node,
            partition_count,
            first_id,
        )
        .map_err(|error| {
            DynamoError::internal(format!("Internal server error (placement: {error:?})"))
        })?;
        let partitions: Vec<PartitionEntry> = planned
            .into_iter()
            .map(|plan| PartitionEntry {
                id: first_id + u64::from(plan.ordinal),
                range: plan.range,
                replicas: plan.replicas,
                shard: plan.shard,
                epoch: 1,
                leader_hint: None,
            })
            .collect();
        let created_at_seconds = unix_seconds_now();
        let mut record = TableRecord {
            name: request.name.clone(),
            key_schema: request.key_schema,
            attribute_definitions: request.attribute_definitions,
            billing: request.billing,
            status: TableStatus::Creating,
            created_at_seconds,
            item_count: 0,
            size_bytes: 0,
            partitions,
            tags: request.tags,
            throughput_history: Default::default(),
            // DynamoDB dates a table created on demand from its creation.
            pay_per_request_since_ms: (request.billing == Billing::PayPerRequest)
                .then(|| created_at_seconds.saturating_mul(1000)),
            revision: 0,
            pending_replicas: Default::default(),
        };
        let created = self
            .metadata
            .put_new(&self.forwarder, record.to_item(), deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        if !created {
            return Err(DynamoError::new(
                RESOURCE_IN_USE,
                format!("Table already exists: {}", request.name),
            ));
        }
        let missing = self.create_replicas(&record).await;
        if let Err(problem) = majority_created(&record.partitions, &missing) {
            self.abandon_creation(&record, deadline).await;
            return Err(DynamoError::internal(format!(
                "Internal server error (table {} was not created: {problem}; retry when the nodes are back)",
                record.name
            )));
        }
        for ((partition, node), why) in &missing {
            tracing::warn!(
                table = %record.name,
                partition,
                node,
                problem = %why.problem,
                "replica left pending: its node did not answer"
            );
        }
        record.pending_replicas = missing.into_keys().collect();
        record.status = TableStatus::Active;
        let activated = self
            .metadata
            .replace_table(
                &self.forwarder,
                &mut record,
                (TableStatus::Creating, 0),
                deadline,
            )
            .await
            .map_err(ForwardError::into_dynamo)?;
        if !activated {
            return Err(DynamoError::new(
                RESOURCE_IN_USE,
                format!(
                    "Attempt to change a resource which is still in use: Table {} changed while it was being created",
                    record.name
                ),
            ));
        }
        Ok(json!({ "TableDescription": self.table_description(&record) }))
    }

    /// Asks every replica of every partition to create itself (idempotent), in rounds, until
    /// all are created; or [`REPLICAS_ALL_WAIT`] passed with a majority of every partition
    /// created and only unreachable nodes missing; or [`REPLICAS_MAJORITY_WAIT`] passed.
    /// Returns the replicas not created, each with the last reason.
    async fn create_replicas(&self, record: &TableRecord) -> BTreeMap<(u64, NodeId), Missing> {
        let started = Instant::now();
        let mut missing: BTreeMap<(u64, NodeId), Missing> = record
            .partitions
            .iter()
            .flat_map(|partition| {
                partition.replicas.iter().map(|node| {
                    let not_asked = Missing {
                        problem: "not asked yet".to_string(),
                        node_reached: false,
                    };
                    ((partition.id, *node), not_asked)
                })
            })
            .collect();
        loop {
            let asked: Vec<(u64, NodeId)> = missing.keys().copied().collect();
            let created = self.create_replicas_once(record, &asked).await;
            for (replica, outcome) in created {
                match outcome {
                    Ok(()) => {
                        missing.remove(&replica);
                    }
                    Err(problem) => {
                        missing.insert(replica, problem);
                    }
                }
            }
            let waited = started.elapsed();
            let majority = majority_created(&record.partitions, &missing).is_ok();
            let only_unreachable = missing.values().all(|missing| !missing.node_reached);
            if missing.is_empty()
                || (majority && only_unreachable && waited >= REPLICAS_ALL_WAIT)
                || waited >= REPLICAS_MAJORITY_WAIT
            {
                return missing;
            }
            glommio::timer::sleep(REPLICA_CREATE_RETRY_INTERVAL).await;
        }
    }

    /// One `CreatePartition` call to each of `replicas` (partition id, node) of `record`. A
    /// shard that did not answer is not called again in the same round: a node that is down
    /// costs one connection timeout per round, not one per partition.
    async fn create_replicas_once(
        &self,
        record: &TableRecord,
        replicas: &[(u64, NodeId)],
    ) -> Vec<((u64, NodeId), Result<(), Missing>)> {
        let key_schema = key_schema_wire(&record.key_schema);
        let mut silent: BTreeMap<(NodeId, u16), Missing> = BTreeMap::new();
        let mut outcomes = Vec::with_capacity(replicas.len());
        for &(partition_id, node) in replicas {
            let Some(partition) = record.partitions.iter().find(|p| p.id == partition_id) else {
                let problem = format!("partition {partition_id} is not in the table");
                outcomes.push((
                    (partition_id, node),
                    Err(Missing {
                        problem,
                        node_reached: false,
                    }),
                ));
                continue;
            };
            if let Some(missing) = silent.get(&(node, partition.shard)) {
                outcomes.push(((partition_id, node), Err(missing.clone())));
                continue;
            }
            let mut membership = partition.replicas.clone();
            membership.sort_unstable();
            let request = NodeRequest::CreatePartition {
                partition: partition.id,
                epoch: partition.epoch,
                key_schema: key_schema.clone(),
                membership: MembershipWire {
                    full_replicas: membership,
                    log_replicas: Vec::new(),
                },
            };
            let outcome = match self
                .forwarder
                .call_once(node, partition.shard, request)
                .await
            {
                Ok(NodeResponse::Created) => Ok(()),
                Ok(other) => Err(Missing {
                    problem: format!("node {node} answered {other:?}"),
                    node_reached: true,
                }),
                Err(failure) => {
                    let missing = Missing {
                        node_reached: matches!(failure, CallFailure::Lost(_)),
                        problem: failure.to_string(),
                    };
                    silent.insert((node, partition.shard), missing.clone());
                    Err(missing)
                }
            };
            outcomes.push(((partition_id, node), outcome));
        }
        outcomes
    }

    /// Removes what a failed CreateTable made: the replicas first (DeletePartition is
    /// idempotent and answers a node without the replica too), while the item still lists
    /// them, then the CREATING item, so the name is free again. A step that fails is logged;
    /// a table item left CREATING is removed by DeleteTable.
    async fn abandon_creation(&self, record: &TableRecord, deadline: Instant) {
        self.delete_partitions(record).await;
        if let Err(error) = self
            .metadata
            .delete(
                &self.forwarder,
                &TableRecord::item_key(&record.name),
                deadline,
            )
            .await
        {
            tracing::warn!(
                table = %record.name,
                ?error,
                "a failed CreateTable could not remove its CREATING table item"
            );
        }
    }

    /// The repair pass: creates the pending replicas (metadata invariant 4) of every ACTIVE
    /// table whose nodes answer now, and removes them from the table item. Returns how many
    /// replicas are still pending. `shoal router` runs it every [`PENDING_REPLICAS_INTERVAL`];
    /// it is safe to run from several routers at once (creation is idempotent, the item change
    /// is conditional).
    ///
    /// A pending replica never existed, so creating it empty is safe: it has promised and
    /// accepted nothing, and it learns the chosen values from its peers like a follower that
    /// fell behind. A replica whose creation was acknowledged is never in the list, so a node
    /// that lost its data never gets an empty replica in place of one that voted.
    pub async fn create_pending_replicas(&self) -> Result<usize, DynamoError> {
        let records = self
            .metadata
            .tables_with_pending_replicas(&self.forwarder, self.deadline())
            .await
            .map_err(ForwardError::into_dynamo)?;
        let mut still_pending = 0usize;
        for record in records {
            // A CREATING table's creator decides its replicas; a DELETING one is going away.
            if record.status != TableStatus::Active {
                still_pending += record.pending_replicas.len();
                continue;
            }
            let asked: Vec<(u64, NodeId)> = record.pending_replicas.iter().copied().collect();
            let created: Vec<(u64, NodeId)> = self
                .create_replicas_once(&record, &asked)
                .await
                .into_iter()
                .filter_map(|(replica, outcome)| outcome.is_ok().then_some(replica))
                .collect();
            if created.is_empty() {
                still_pending += record.pending_replicas.len();
                continue;
            }
            still_pending += self.note_replicas_created(&record, &created).await?;
        }
        Ok(still_pending)
    }

    /// Removes `created` from the pending replicas of the table `record` was read from, and
    /// returns how many stay pending. If that table is gone, going or replaced by another of
    /// the same name meanwhile, the replicas just created belong to nothing: they are deleted.
    async fn note_replicas_created(
        &self,
        record: &TableRecord,
        created: &[(u64, NodeId)],
    ) -> Result<usize, DynamoError> {
        let name = record.name.as_str();
        // Partition ids are never reused: the first one names this table, not a later one of
        // the same name.
        let incarnation = record.partitions.first().map(|partition| partition.id);
        let orphaned = std::cell::Cell::new(false);
        let changed = self
            .change_table(
                name,
                || DynamoError::table_not_found(name),
                |current| {
                    let same = current.status == TableStatus::Active
                        && current.partitions.first().map(|partition| partition.id) == incarnation;
                    orphaned.set(!same);
                    if !same {
                        return Ok(None);
                    }
                    let mut changed = current.clone();
                    for replica in created {
                        changed.pending_replicas.remove(replica);
                    }
                    Ok((changed.pending_replicas != current.pending_replicas).then_some(changed))
                },
                || table_in_use(name, "updated"),
            )
            .await;
        let remaining = match changed {
            Ok(current) if !orphaned.get() => return Ok(current.pending_replicas.len()),
            Ok(_) => 0,
            Err(error) if error.type_name == crate::error::RESOURCE_NOT_FOUND => {
                orphaned.set(true);
                0
            }
            Err(error) => return Err(error),
        };
        if orphaned.get() {
            let mut leftover = record.clone();
            for partition in &mut leftover.partitions {
                partition
                    .replicas
                    .retain(|node| created.contains(&(partition.id, *node)));
            }
            self.delete_partitions(&leftover).await;
        }
        Ok(remaining)
    }

    /// DescribeTable. Item counts come live from the partitions' status (each replica counts
    /// its items), falling back to the stored estimate for a partition that does not answer.
    pub async fn describe_table(&self, body: Json) -> Result<Json, DynamoError> {
        let name = validate::table_name(&body)?;
        let deadline = self.deadline();
        let mut record = self
            .read_table(name, deadline)
            .await?
            .ok_or_else(|| DynamoError::table_not_found(name))?;
        if record.status == TableStatus::Active
            && let Some((items, bytes)) = self.live_item_count(&record).await
        {
            record.item_count = items;
            record.size_bytes = bytes;
        }
        Ok(json!({ "Table": self.table_description(&record) }))
    }

    /// The sums of the partitions' item counts and item bytes, one Status call per (node,
    /// shard) asked; `None` if any partition went unanswered.
    async fn live_item_count(&self, record: &TableRecord) -> Option<(u64, u64)> {
        let hints: HashMap<u64, Option<u64>> = self
            .tables
            .borrow()
            .get(&record.name)
            .map(|state| {
                state
                    .map
                    .partitions()
                    .iter()
                    .map(|p| (p.id, p.leader_hint))
                    .collect()
            })
            .unwrap_or_default();
        let mut by_shard: BTreeMap<(u64, u16), Vec<u64>> = BTreeMap::new();
        for partition in &record.routed_partitions() {
            let mut entry = partition.clone();
            entry.leader_hint = hints.get(&partition.id).copied().flatten();
            let node = entry.first_target()?;
            by_shard
                .entry((node, partition.shard))
                .or_default()
                .push(partition.id);
        }
        let mut total = 0u64;
        let mut bytes = 0u64;
        for ((node, shard), partitions) in by_shard {
            let Ok(NodeResponse::Status { replicas, .. }) = self
                .forwarder
                .call_once(node, shard, NodeRequest::Status)
                .await
            else {
                return None;
            };
            for partition in partitions {
                let status = replicas.iter().find(|r| r.partition == partition)?;
                total = total.saturating_add(status.item_count);
                bytes = bytes.saturating_add(status.item_bytes);
            }
        }
        Some((total, bytes))
    }

    /// ListTables: names in order, `Limit` (1 to 100) per page from `ExclusiveStartTableName`.
    pub async fn list_tables(&self, body: Json) -> Result<Json, DynamoError> {
        let limit = match body.get("Limit") {
            None | Some(Json::Null) => validate::LIST_TABLES_LIMIT_MAX,
            Some(value) => match value.as_u64() {
                Some(limit) if (1..=validate::LIST_TABLES_LIMIT_MAX).contains(&limit) => limit,
                _ => {
                    return Err(DynamoError::validation(format!(
                        "1 validation error detected: Value '{value}' at 'limit' failed to satisfy constraint: Member must have value less than or equal to {} and greater than or equal to 1",
                        validate::LIST_TABLES_LIMIT_MAX
                    )));
                }
            },
        };
        let start = body
            .get("ExclusiveStartTableName")
            .and_then(Json::as_str)
            .map(str::to_string);
        if let Some(start) = &start {
            validate::check_table_name(start)?;
        }
        let mut names = self
            .metadata
            .table_names(&self.forwarder, self.deadline())
            .await
            .map_err(ForwardError::into_dynamo)?;
        names.sort_unstable();
        let after: Vec<String> = names
            .into_iter()
            .filter(|name| start.as_ref().is_none_or(|start| name > start))
            .collect();
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let page: Vec<String> = after.iter().take(limit).cloned().collect();
        let mut response = json!({ "TableNames": page });
        if after.len() > limit
            && let Some(last) = page.last()
        {
            response["LastEvaluatedTableName"] = json!(last);
        }
        Ok(response)
    }

    /// DeleteTable: marks the table DELETING, then removes its item. Its partitions' replicas
    /// stay on the nodes (README.md: the bus has no request to drop a replica yet); their ids
    /// are never reused, so a new table of the same name starts empty.
    pub async fn delete_table(&self, body: Json) -> Result<Json, DynamoError> {
        let name = validate::table_name(&body)?;
        let deadline = Instant::now() + CONTROL_DEADLINE;
        let mut record = self
            .read_table(name, deadline)
            .await?
            .ok_or_else(|| DynamoError::table_not_found(name))?;
        if record.status == TableStatus::Deleting {
            return Err(DynamoError::new(
                RESOURCE_IN_USE,
                format!(
                    "Attempt to change a resource which is still in use: Table is being deleted: {name}"
                ),
            ));
        }
        let read = (record.status, record.revision);
        record.status = TableStatus::Deleting;
        let marked = self
            .metadata
            .replace_table(&self.forwarder, &mut record, read, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        if !marked {
            return Err(DynamoError::new(
                RESOURCE_IN_USE,
                format!(
                    "Attempt to change a resource which is still in use: Table {name} changed meanwhile"
                ),
            ));
        }
        self.tables.borrow_mut().remove(name);
        // The replicas go first, while the record still lists them: a router that fails part
        // way leaves the table DELETING, and a repeated DeleteTable is refused as in use, but
        // the replicas it removed stay removed (DeletePartition is idempotent).
        self.delete_partitions(&record).await;
        self.metadata
            .delete(&self.forwarder, &TableRecord::item_key(name), deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        Ok(json!({ "TableDescription": self.table_description(&record) }))
    }

    /// Asks every replica of the table's partitions to remove itself. A node that does not
    /// answer keeps its replica (it can no longer be reached through metadata, and its files
    /// stay until an operator or a later repair removes them); the deletion goes on.
    async fn delete_partitions(&self, record: &TableRecord) {
        for partition in &record.partitions {
            for node in &partition.replicas {
                let request = NodeRequest::DeletePartition {
                    partition: partition.id,
                    epoch: partition.epoch,
                };
                match self
                    .forwarder
                    .call_once(*node, partition.shard, request)
                    .await
                {
                    Ok(NodeResponse::Deleted) => {}
                    outcome => tracing::warn!(
                        partition = partition.id,
                        node = *node,
                        ?outcome,
                        "a replica of a deleted table was not removed"
                    ),
                }
            }
        }
    }

    /// A change of a table's item (metadata invariant 1): `change` maps the record read to the
    /// record to store, or to `None` when nothing changes. After a concurrent change it reads
    /// again, [`METADATA_WRITE_ATTEMPTS_MAX`] times at most, then answers `conflict`. The new
    /// record is routed with on this core at once; other cores and routers load it within
    /// [`TABLE_CACHE_TTL`].
    async fn change_table(
        &self,
        name: &str,
        missing: impl Fn() -> DynamoError,
        mut change: impl FnMut(&TableRecord) -> Result<Option<TableRecord>, DynamoError>,
        conflict: impl Fn() -> DynamoError,
    ) -> Result<TableRecord, DynamoError> {
        let deadline = Instant::now() + CONTROL_DEADLINE;
        for _attempt in 0..METADATA_WRITE_ATTEMPTS_MAX {
            let record = self
                .read_table(name, deadline)
                .await?
                .ok_or_else(&missing)?;
            let Some(mut changed) = change(&record)? else {
                return Ok(record);
            };
            let replaced = self
                .metadata
                .replace_table(
                    &self.forwarder,
                    &mut changed,
                    (record.status, record.revision),
                    deadline,
                )
                .await
                .map_err(ForwardError::into_dynamo)?;
            if replaced {
                if changed.status == TableStatus::Active {
                    self.cache_record(changed.clone())?;
                }
                return Ok(changed);
            }
        }
        Err(conflict())
    }

    /// UpdateTable: BillingMode and ProvisionedThroughput. The change is one metadata write, so
    /// the table stays ACTIVE and the answer describes it changed (DynamoDB answers UPDATING
    /// with the old values and applies them later; DynamoDB Local answers as here). Admission on
    /// this core uses the new capacity at once, other routers within [`TABLE_CACHE_TTL`].
    /// Partitions are not split for a higher throughput yet: each still admits DynamoDB's
    /// per-partition ceilings.
    pub async fn update_table(&self, body: Json) -> Result<Json, DynamoError> {
        let request = validate::update_table(&body)?;
        let name = request.name.as_str();
        let region = self.config.region.as_str();
        let record = self
            .change_table(
                name,
                || DynamoError::table_not_found(name),
                |record| {
                    match record.status {
                        TableStatus::Active => {}
                        TableStatus::Creating => return Err(table_in_use(name, "created")),
                        TableStatus::Deleting => return Err(table_in_use(name, "deleted")),
                    }
                    let Some(billing) = validate::updated_billing(record.billing, &request)?
                    else {
                        return Ok(None);
                    };
                    validate::check_table_maximum(billing, region)?;
                    let mut changed = record.clone();
                    changed.change_billing(billing, unix_millis_now());
                    Ok(Some(changed))
                },
                || {
                    DynamoError::new(
                        RESOURCE_IN_USE,
                        format!(
                            "Attempt to change a resource which is still in use: Table IOPS are currently being updated. Table: {name}"
                        ),
                    )
                },
            )
            .await?;
        Ok(json!({ "TableDescription": self.table_description(&record) }))
    }

    /// DescribeLimits: DynamoDB's default quotas, the ones CreateTable and UpdateTable apply
    /// per table (validate.rs).
    pub fn describe_limits(&self, _body: Json) -> Result<Json, DynamoError> {
        Ok(json!({
            "AccountMaxReadCapacityUnits": validate::ACCOUNT_READ_CAPACITY_UNITS_MAX,
            "AccountMaxWriteCapacityUnits": validate::ACCOUNT_WRITE_CAPACITY_UNITS_MAX,
            "TableMaxReadCapacityUnits": validate::TABLE_READ_CAPACITY_UNITS_MAX,
            "TableMaxWriteCapacityUnits": validate::TABLE_WRITE_CAPACITY_UNITS_MAX,
        }))
    }

    /// A tag operation's table: its ARN and name, checked against this router's region and
    /// account (the ARNs DescribeTable reports).
    fn tagged_table<'body>(
        &self,
        body: &'body Json,
    ) -> Result<(&'body str, &'body str), DynamoError> {
        validate::table_of_arn(body, &self.config.region, &self.config.account)
    }

    /// Changes a table's tags with `change`, refused past the tag limit. A table that is not
    /// ACTIVE is not found, as DynamoDB's tag operations answer for a table being created.
    async fn change_tags(
        &self,
        arn: &str,
        name: &str,
        change: impl Fn(&mut BTreeMap<String, String>),
    ) -> Result<(), DynamoError> {
        self.change_table(
            name,
            || DynamoError::resource_arn_not_found(arn),
            |record| {
                if record.status != TableStatus::Active {
                    return Err(DynamoError::resource_arn_not_found(arn));
                }
                let mut changed = record.clone();
                change(&mut changed.tags);
                validate::check_tag_count(changed.tags.len())?;
                Ok((changed.tags != record.tags).then_some(changed))
            },
            || {
                DynamoError::new(
                    LIMIT_EXCEEDED,
                    format!("Subscriber limit exceeded: Table tags are being updated: {name}"),
                )
            },
        )
        .await
        .map(|_| ())
    }

    /// TagResource: adds tags, replacing the value of a key the table has; at most 50 in all.
    /// The request is checked whole before the table is read (one bad tag applies none).
    pub async fn tag_resource(&self, body: Json) -> Result<Json, DynamoError> {
        let (arn, name) = self.tagged_table(&body)?;
        let tags = validate::tag_resource_tags(&body)?;
        self.change_tags(arn, name, |table_tags| {
            table_tags.extend(tags.iter().map(|(key, value)| (key.clone(), value.clone())));
        })
        .await?;
        Ok(json!({}))
    }

    /// UntagResource: removes tags by key; a key the table does not have is not an error.
    pub async fn untag_resource(&self, body: Json) -> Result<Json, DynamoError> {
        let (arn, name) = self.tagged_table(&body)?;
        let keys = validate::tag_keys(&body)?;
        self.change_tags(arn, name, |table_tags| {
            for key in &keys {
                table_tags.remove(key);
            }
        })
        .await?;
        Ok(json!({}))
    }

    /// ListTagsOfResource: the table's tags in key order, in one page (see
    /// [`LIST_TAGS_PAGE_TAGS_MAX`]); NextToken, if given, continues after that key.
    pub async fn list_tags_of_resource(&self, body: Json) -> Result<Json, DynamoError> {
        let (arn, name) = self.tagged_table(&body)?;
        let after = validate::next_token(&body)?;
        let record = self
            .read_table(name, self.deadline())
            .await?
            .filter(|record| record.status == TableStatus::Active)
            .ok_or_else(|| DynamoError::resource_arn_not_found(arn))?;
        let (page, next) = tags_page(&record.tags, after, LIST_TAGS_PAGE_TAGS_MAX);
        let mut response = json!({ "Tags": page });
        if let Some(next) = next {
            response["NextToken"] = json!(next);
        }
        Ok(response)
    }

    // ---- Item operations ------------------------------------------------------------------
    //
    // Each operation parses its request once, here, into a prepared request (every check it
    // needs before reading an item happens in `prepare`, before admission), and sends that to
    // the partitions, which only evaluate it. Their typed answers are rendered as DynamoDB JSON
    // here too.

    async fn single_item(&self, body: Json, operation: ItemOperation) -> Result<Json, DynamoError> {
        let name = validate::table_name(&body)?.to_string();
        let report = capacity_report(&body)?;
        let deadline = self.deadline();
        let (key_schema, _) = self.table(&name, deadline).await?;
        let (key_member, is_item) = match operation {
            ItemOperation::PutItem => ("Item", true),
            _ => ("Key", false),
        };
        let key = body
            .get(key_member)
            .filter(|key| !key.is_null())
            .ok_or_else(|| DynamoError::missing_member(&key_member.to_ascii_lowercase()))?;
        // The partition key's own checks first, with their messages; then everything else.
        let hash = key_hash(&key_schema, key, is_item)?;
        let prepared = prepare(operation, &body, &key_schema)?;
        let estimate = match &prepared {
            PreparedRequest::Write(write) => {
                (Operation::Write, write_units(write_estimate_bytes(write)))
            }
            _ => (Operation::Read, read_units(1, consistency(&body))),
        };
        let reply = self
            .route(&name, hash, &ItemCall::new(&prepared), estimate, deadline)
            .await?;
        let mut response = render_result(&reply.result, false)?;
        if report != CapacityReport::None {
            response["ConsumedCapacity"] =
                consumed_capacity_json(&name, units_of(&reply, estimate.0), report);
        }
        Ok(response)
    }

    pub async fn put_item(&self, body: Json) -> Result<Json, DynamoError> {
        self.single_item(body, ItemOperation::PutItem).await
    }

    pub async fn get_item(&self, body: Json) -> Result<Json, DynamoError> {
        self.single_item(body, ItemOperation::GetItem).await
    }

    pub async fn update_item(&self, body: Json) -> Result<Json, DynamoError> {
        self.single_item(body, ItemOperation::UpdateItem).await
    }

    pub async fn delete_item(&self, body: Json) -> Result<Json, DynamoError> {
        self.single_item(body, ItemOperation::DeleteItem).await
    }

    /// Query: one partition key, so one partition; its page and LastEvaluatedKey pass through.
    pub async fn query(&self, body: Json) -> Result<Json, DynamoError> {
        let name = validate::table_name(&body)?.to_string();
        let report = capacity_report(&body)?;
        let deadline = self.deadline();
        let (key_schema, _) = self.table(&name, deadline).await?;
        let prepared = prepare(ItemOperation::Query, &body, &key_schema)?;
        let PreparedRequest::Range(range) = &prepared else {
            return Err(DynamoError::internal(
                "Internal server error (a Query prepared as something else)",
            ));
        };
        let hash = query_hash(range)?;
        let count_only = range.count_only;
        let estimate = (Operation::Read, read_units(1, consistency(&body)));
        let reply = self
            .route(&name, hash, &ItemCall::new(&prepared), estimate, deadline)
            .await?;
        let mut response = render_result(&reply.result, count_only)?;
        if report != CapacityReport::None {
            response["ConsumedCapacity"] =
                consumed_capacity_json(&name, reply.read_units_milli, report);
        }
        Ok(response)
    }

    /// Scan: one page fills across partitions, as DynamoDB's does. It walks the partitions
    /// overlapping the segment in hash order from where the page starts, each asked for what
    /// is left of the page (Limit, and the 1 MB of data read). The page ends where a partition
    /// stops inside its range (its LastEvaluatedKey, the key of the last item evaluated, is the
    /// page's) or at the end of the segment.
    pub async fn scan(&self, body: Json) -> Result<Json, DynamoError> {
        let name = validate::table_name(&body)?.to_string();
        let report = capacity_report(&body)?;
        let deadline = self.deadline();
        let (key_schema, map) = self.table(&name, deadline).await?;
        let (segment, segment_numbers) = scan_segment(&body)?;
        let prepared = prepare(ItemOperation::Scan, &body, &key_schema)?;
        let PreparedRequest::Range(range) = prepared else {
            return Err(DynamoError::internal(
                "Internal server error (a Scan prepared as something else)",
            ));
        };
        let mut resume_hash = scan_start_hash(&body, &range, segment, segment_numbers)?;
        let mut items: Vec<Json> = Vec::new();
        let mut count = 0u64;
        let mut scanned = 0u64;
        let mut scanned_bytes = 0u64;
        let mut consumed_milli = 0u64;
        let mut last_evaluated: Option<Json> = None;
        // Each step moves to a later partition, so the walk ends within the partition count.
        for _step in 0..map.partitions().len() {
            let partition = &map.partitions()[map.index_of(resume_hash)];
            let mut part = range.clone();
            part.limit = range
                .limit
                .map(|limit| limit.saturating_sub(usize::try_from(scanned).unwrap_or(limit)));
            part.page_bytes_max = range.page_bytes_max.saturating_sub(scanned_bytes);
            let reply = self
                .route(
                    &name,
                    resume_hash,
                    &ItemCall::new(&PreparedRequest::Range(part)),
                    (Operation::Read, read_units(1, consistency(&body))),
                    deadline,
                )
                .await?;
            consumed_milli = consumed_milli.saturating_add(reply.read_units_milli);
            let ItemResult::Range {
                items: page,
                count: page_count,
                scanned_count,
                scanned_bytes: page_bytes,
                last_evaluated_key,
            } = reply.result
            else {
                return Err(DynamoError::internal(
                    "Internal server error (a partition answered a Scan with another result)",
                ));
            };
            count += page_count;
            scanned += scanned_count;
            scanned_bytes = scanned_bytes.saturating_add(page_bytes);
            for item in &page {
                items.push(item_json(item)?);
            }
            if let Some(key) = last_evaluated_key {
                last_evaluated = Some(item_json(&key)?);
                break;
            }
            match partition
                .range
                .last
                .checked_add(1)
                .filter(|first| *first <= segment.last)
            {
                None => break,
                Some(first) => resume_hash = first,
            }
        }
        let mut response = json!({ "Count": count, "ScannedCount": scanned });
        if !range.count_only {
            response["Items"] = Json::Array(items);
        }
        if let Some(key) = last_evaluated {
            response["LastEvaluatedKey"] = key;
        }
        if report != CapacityReport::None {
            response["ConsumedCapacity"] = consumed_capacity_json(&name, consumed_milli, report);
        }
        Ok(response)
    }

    /// BatchGetItem: keys grouped per partition, one BatchGet per group, the groups sent
    /// concurrently ([`BATCH_PARTITIONS_IN_FLIGHT_MAX`] at a time); the keys of a group that
    /// could not be read come back in UnprocessedKeys.
    pub async fn batch_get_item(&self, body: Json) -> Result<Json, DynamoError> {
        let report = capacity_report(&body)?;
        let request_items = body
            .get("RequestItems")
            .and_then(Json::as_object)
            .ok_or_else(|| DynamoError::missing_member("requestItems"))?;
        let total: usize = request_items
            .values()
            .map(|table| {
                table
                    .get("Keys")
                    .and_then(Json::as_array)
                    .map_or(0, Vec::len)
            })
            .sum();
        if total > BATCH_GET_KEYS_MAX {
            return Err(DynamoError::validation(
                "Too many items requested for the BatchGetItem call",
            ));
        }
        let deadline = self.deadline();
        // Every table and key is checked before anything is read, as DynamoDB checks the whole
        // request first.
        let mut tables: Vec<(&String, &Json)> = Vec::with_capacity(request_items.len());
        let mut groups = Vec::new();
        let mut calls = Vec::new();
        for (name, table_request) in request_items {
            validate::check_table_name(name)?;
            let keys = table_request
                .get("Keys")
                .and_then(Json::as_array)
                .filter(|keys| !keys.is_empty())
                .ok_or_else(|| {
                    DynamoError::validation(format!(
                        "1 validation error detected: Value at 'requestItems.{name}.member.keys' failed to satisfy constraint: Member must have length greater than or equal to 1"
                    ))
                })?;
            let (key_schema, map) = self.table(name, deadline).await?;
            for key in keys {
                key_hash(&key_schema, key, false)?;
            }
            let PreparedRequest::BatchGet(gets) =
                prepare(ItemOperation::BatchGet, table_request, &key_schema)?
            else {
                return Err(DynamoError::internal(
                    "Internal server error (a BatchGetItem prepared as something else)",
                ));
            };
            let per_key = read_units(1, consistency(table_request));
            let mut by_partition: BTreeMap<usize, (u64, Vec<Json>, Vec<GetRequest>)> =
                BTreeMap::new();
            for (key, get) in keys.iter().zip(gets) {
                let hash = storage_key_hash(&get.storage_key).ok_or_else(|| {
                    DynamoError::validation(shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA)
                })?;
                let group = by_partition
                    .entry(map.index_of(hash))
                    .or_insert_with(|| (hash, Vec::new(), Vec::new()));
                group.1.push(key.clone());
                group.2.push(get);
            }
            for (hash, members, gets) in by_partition.into_values() {
                let keys = u64::try_from(gets.len()).unwrap_or(u64::MAX);
                let estimate = CapacityUnits::from_milli(per_key.as_milli().saturating_mul(keys));
                calls.push((ItemCall::new(&PreparedRequest::BatchGet(gets)), estimate));
                groups.push(BatchGroup {
                    table: tables.len(),
                    hash,
                    members,
                });
            }
            tables.push((name, table_request));
        }
        let results = join_bounded(
            groups
                .iter()
                .zip(&calls)
                .map(|(group, (call, estimate))| {
                    let (name, _) = tables[group.table];
                    self.route(
                        name,
                        group.hash,
                        call,
                        (Operation::Read, *estimate),
                        deadline,
                    )
                })
                .collect(),
            BATCH_PARTITIONS_IN_FLIGHT_MAX,
        )
        .await;
        let outcomes = settle_batch(tables.len(), groups, results, Operation::Read)?;
        let mut responses = Map::new();
        let mut unprocessed = Map::new();
        let mut capacity = Vec::new();
        for ((name, table_request), outcome) in tables.into_iter().zip(outcomes) {
            responses.insert(name.clone(), Json::Array(outcome.items));
            if !outcome.unprocessed.is_empty() {
                let mut request = table_request.as_object().cloned().unwrap_or_default();
                request.insert("Keys".to_string(), Json::Array(outcome.unprocessed));
                unprocessed.insert(name.clone(), Json::Object(request));
            }
            if report != CapacityReport::None {
                capacity.push(consumed_capacity_json(name, outcome.units_milli, report));
            }
        }
        let mut response = json!({ "Responses": responses, "UnprocessedKeys": unprocessed });
        if report != CapacityReport::None {
            response["ConsumedCapacity"] = Json::Array(capacity);
        }
        Ok(response)
    }

    /// BatchWriteItem: requests grouped per partition, one BatchWrite per group, the groups
    /// sent concurrently ([`BATCH_PARTITIONS_IN_FLIGHT_MAX`] at a time); a group that failed,
    /// or whose outcome is unknown, comes back in UnprocessedItems (puts and deletes without
    /// conditions are safe to apply twice).
    pub async fn batch_write_item(&self, body: Json) -> Result<Json, DynamoError> {
        let report = capacity_report(&body)?;
        let request_items = body
            .get("RequestItems")
            .and_then(Json::as_object)
            .ok_or_else(|| DynamoError::missing_member("requestItems"))?;
        let total: usize = request_items
            .values()
            .map(|requests| requests.as_array().map_or(0, Vec::len))
            .sum();
        if total > BATCH_WRITE_REQUESTS_MAX {
            return Err(DynamoError::validation(format!(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to {BATCH_WRITE_REQUESTS_MAX}, Member must have length greater than or equal to 1]"
            )));
        }
        let deadline = self.deadline();
        // Every request of every table is checked before anything is written: DynamoDB
        // refuses an invalid batch as a whole, and a group written before a later group failed
        // its checks could not be taken back.
        let mut tables: Vec<&String> = Vec::with_capacity(request_items.len());
        let mut groups = Vec::new();
        let mut calls = Vec::new();
        for (name, requests) in request_items {
            validate::check_table_name(name)?;
            let requests = requests.as_array().filter(|r| !r.is_empty()).ok_or_else(|| {
                DynamoError::validation(format!(
                    "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to {BATCH_WRITE_REQUESTS_MAX}, Member must have length greater than or equal to 1]"
                ))
            })?;
            let (key_schema, map) = self.table(name, deadline).await?;
            // The partition key's own checks first, with their messages, as for single items.
            for request in requests {
                let (key, is_item) = match (request.get("PutRequest"), request.get("DeleteRequest"))
                {
                    (Some(put), None) => (put.get("Item"), true),
                    (None, Some(delete)) => (delete.get("Key"), false),
                    _ => {
                        return Err(DynamoError::validation(
                            "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
                        ));
                    }
                };
                let key = key.ok_or_else(|| {
                    DynamoError::validation(shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA)
                })?;
                key_hash(&key_schema, key, is_item)?;
            }
            let list = Json::Array(requests.clone());
            let PreparedRequest::BatchWrite(writes) =
                prepare(ItemOperation::BatchWrite, &list, &key_schema)?
            else {
                return Err(DynamoError::internal(
                    "Internal server error (a BatchWriteItem prepared as something else)",
                ));
            };
            let mut by_partition: BTreeMap<usize, (u64, Vec<Json>, Vec<WriteRequest>)> =
                BTreeMap::new();
            for (request, write) in requests.iter().zip(writes) {
                let hash = storage_key_hash(&write.storage_key).ok_or_else(|| {
                    DynamoError::validation(shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA)
                })?;
                let group = by_partition
                    .entry(map.index_of(hash))
                    .or_insert_with(|| (hash, Vec::new(), Vec::new()));
                group.1.push(request.clone());
                group.2.push(write);
            }
            for (hash, members, writes) in by_partition.into_values() {
                let bytes = writes
                    .iter()
                    .map(write_estimate_bytes)
                    .fold(0u64, u64::saturating_add);
                calls.push((
                    ItemCall::new(&PreparedRequest::BatchWrite(writes)),
                    write_units(bytes),
                ));
                groups.push(BatchGroup {
                    table: tables.len(),
                    hash,
                    members,
                });
            }
            tables.push(name);
        }
        let results = join_bounded(
            groups
                .iter()
                .zip(&calls)
                .map(|(group, (call, estimate))| {
                    self.route(
                        tables[group.table],
                        group.hash,
                        call,
                        (Operation::Write, *estimate),
                        deadline,
                    )
                })
                .collect(),
            BATCH_PARTITIONS_IN_FLIGHT_MAX,
        )
        .await;
        let outcomes = settle_batch(tables.len(), groups, results, Operation::Write)?;
        let mut unprocessed = Map::new();
        let mut capacity = Vec::new();
        for (name, outcome) in tables.into_iter().zip(outcomes) {
            if !outcome.unprocessed.is_empty() {
                unprocessed.insert(name.clone(), Json::Array(outcome.unprocessed));
            }
            if report != CapacityReport::None {
                capacity.push(consumed_capacity_json(name, outcome.units_milli, report));
            }
        }
        let mut response = json!({ "UnprocessedItems": unprocessed });
        if report != CapacityReport::None {
            response["ConsumedCapacity"] = Json::Array(capacity);
        }
        Ok(response)
    }
}

/// One partition's share of a batch: its table (the index in the batch's table order), a hash
/// that routes to the partition, and the keys or write requests for it, in request order.
#[derive(Clone, Debug, PartialEq)]
struct BatchGroup {
    table: usize,
    hash: u64,
    members: Vec<Json>,
}

/// What one table of a batch came to.
#[derive(Clone, Debug, Default, PartialEq)]
struct TableOutcome {
    /// The items its partitions returned (BatchGetItem), group after group.
    items: Vec<Json>,
    /// The keys or requests of its groups that failed for capacity or availability.
    unprocessed: Vec<Json>,
    /// The capacity its served groups consumed, in thousandths of a unit.
    units_milli: u64,
}

/// Folds the answers of a batch's groups (in the order of `groups`, which the answers follow)
/// into one outcome per table, by DynamoDB's rules, and with the answer a walk of the groups one
/// after another gave before they were sent concurrently: a group refused for capacity or
/// availability goes back as unprocessed; any other error fails the whole call, the first such
/// error in group order (the groups after it were sent too, where the walk stopped: the request
/// checks run before anything is sent, so such an error is rare, and a batch is not atomic
/// either way); and when no group was served and some were throttled, the call fails with the
/// last throttling error, as DynamoDB answers a batch of which nothing could be processed for
/// lack of throughput with ProvisionedThroughputExceededException.
fn settle_batch(
    table_count: usize,
    groups: Vec<BatchGroup>,
    results: Vec<Result<Reply, DynamoError>>,
    operation: Operation,
) -> Result<Vec<TableOutcome>, DynamoError> {
    let mut outcomes = vec![TableOutcome::default(); table_count];
    let mut processed_any = false;
    let mut throttled: Option<DynamoError> = None;
    for (group, result) in groups.into_iter().zip(results) {
        let Some(outcome) = outcomes.get_mut(group.table) else {
            continue;
        };
        match result {
            Ok(reply) => {
                processed_any = true;
                outcome.units_milli = outcome
                    .units_milli
                    .saturating_add(units_of(&reply, operation));
                if let ItemResult::BatchGet { items } = &reply.result {
                    for item in items {
                        outcome.items.push(item_json(item)?);
                    }
                }
            }
            Err(error) if is_retryable_for_batch(&error) => {
                if is_throttle(&error) {
                    throttled = Some(error);
                }
                outcome.unprocessed.extend(group.members);
            }
            Err(error) => return Err(error),
        }
    }
    if !processed_any && let Some(error) = throttled {
        return Err(error);
    }
    Ok(outcomes)
}

/// Why CreateTable has not created a replica yet.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Missing {
    problem: String,
    /// The node was reached (it answered, or took the request and did not answer in time): it
    /// is up, perhaps slow, and worth waiting for longer than a node that cannot be reached.
    node_reached: bool,
}

/// Whether every one of `partitions` has a majority of its replicas created, given the
/// replicas (partition id, node) `missing`; if not, which partition lacks one and why.
fn majority_created(
    partitions: &[PartitionEntry],
    missing: &BTreeMap<(u64, NodeId), Missing>,
) -> Result<(), String> {
    for partition in partitions {
        let absent: Vec<(NodeId, &str)> = partition
            .replicas
            .iter()
            .filter_map(|node| {
                missing
                    .get(&(partition.id, *node))
                    .map(|missing| (*node, missing.problem.as_str()))
            })
            .collect();
        let created = partition.replicas.len() - absent.len();
        if created < partition.replicas.len() / 2 + 1 {
            let reasons: Vec<String> = absent
                .iter()
                .map(|(node, problem)| format!("node {node}: {problem}"))
                .collect();
            return Err(format!(
                "a majority of the {} replicas of partition {} could not be created ({})",
                partition.replicas.len(),
                partition.id,
                reasons.join("; ")
            ));
        }
    }
    Ok(())
}

/// A change refused while CreateTable or DeleteTable runs.
fn table_in_use(name: &str, becoming: &str) -> DynamoError {
    DynamoError::new(
        RESOURCE_IN_USE,
        format!(
            "Attempt to change a resource which is still in use: Table is being {becoming}: {name}"
        ),
    )
}

fn is_throttle(error: &DynamoError) -> bool {
    error.type_name == "ProvisionedThroughputExceededException"
        || error.type_name == "ThrottlingException"
}

/// Batch groups that failed for reasons of capacity or availability go back to the client as
/// unprocessed; request errors (validation) fail the whole call, as in DynamoDB.
fn is_retryable_for_batch(error: &DynamoError) -> bool {
    is_throttle(error) || error.type_name == crate::error::INTERNAL_SERVER_ERROR
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::AttributeValue;
    use shoal_model::key::KeyType;

    #[test]
    fn provisioned_throughput_adds_partitions() {
        assert_eq!(partitions_for(Billing::PayPerRequest, 4), 4);
        let big = Billing::Provisioned {
            read_capacity_units: 10,
            write_capacity_units: 9_500,
        };
        assert_eq!(partitions_for(big, 4), 10);
        let reads = Billing::Provisioned {
            read_capacity_units: 30_001,
            write_capacity_units: 1,
        };
        assert_eq!(partitions_for(reads, 4), 11);
    }

    #[test]
    fn keys_hash_by_their_partition_key_only() {
        let schema = KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number);
        let a = key_hash(&schema, &json!({"pk": {"S": "a"}, "sk": {"N": "1"}}), false).unwrap();
        let b = key_hash(&schema, &json!({"pk": {"S": "a"}, "sk": {"N": "2"}}), false).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            partition_hash(&AttributeValue::String("a".to_string())).unwrap()
        );
        let missing = key_hash(&schema, &json!({"x": {"S": "a"}}), true).unwrap_err();
        assert_eq!(missing.type_name, "ValidationException");
        assert_eq!(
            key_hash(&schema, &json!({"pk": {"N": "1"}}), false)
                .unwrap_err()
                .message,
            "The provided key element does not match the schema"
        );
    }

    #[test]
    fn query_routes_by_the_key_condition() {
        let schema = KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number);
        let hash_of = |body: &Json| {
            let Ok(PreparedRequest::Range(range)) = prepare(ItemOperation::Query, body, &schema)
            else {
                panic!("not a query: {body}");
            };
            query_hash(&range).unwrap()
        };
        let user = partition_hash(&AttributeValue::String("user".to_string())).unwrap();
        for forward in [true, false] {
            let body = json!({
                "KeyConditionExpression": "#p = :v AND sk > :s",
                "ExpressionAttributeNames": {"#p": "pk"},
                "ExpressionAttributeValues": {":v": {"S": "user"}, ":s": {"N": "3"}},
                "ScanIndexForward": forward,
                "ExclusiveStartKey": {"pk": {"S": "user"}, "sk": {"N": "9"}},
            });
            assert_eq!(hash_of(&body), user);
        }
        let legacy = json!({"KeyConditions": {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "u2"}]}}});
        assert_eq!(
            hash_of(&legacy),
            partition_hash(&AttributeValue::String("u2".to_string())).unwrap()
        );
    }

    #[test]
    fn scan_segments_and_start_keys() {
        assert_eq!(scan_segment(&json!({})).unwrap(), (HashRange::ALL, None));
        assert_eq!(
            scan_segment(&json!({"Segment": 1, "TotalSegments": 4})).unwrap(),
            (even_range(1, 4), Some((1, 4)))
        );
        assert!(scan_segment(&json!({"Segment": 4, "TotalSegments": 4})).is_err());
        assert!(scan_segment(&json!({"Segment": 0})).is_err());
        let schema = KeySchema::partition_only("pk", KeyType::String);
        let start = |body: &Json| {
            let Ok(PreparedRequest::Range(range)) = prepare(ItemOperation::Scan, body, &schema)
            else {
                panic!("not a scan: {body}");
            };
            let (segment, numbers) = scan_segment(body).unwrap();
            scan_start_hash(body, &range, segment, numbers)
        };
        let k = partition_hash(&AttributeValue::String("k".to_string())).unwrap();
        assert_eq!(start(&json!({})).unwrap(), 0);
        assert_eq!(
            start(&json!({"ExclusiveStartKey": {"pk": {"S": "k"}}})).unwrap(),
            k
        );
        // A start key of another segment is refused, as DynamoDB refuses it.
        let total = 4u64;
        let own = u64::try_from((u128::from(k) * u128::from(total)) >> 64).unwrap();
        let other = (own + 1) % total;
        assert_eq!(
            start(&json!({"ExclusiveStartKey": {"pk": {"S": "k"}}, "Segment": own, "TotalSegments": total}))
                .unwrap(),
            k
        );
        assert_eq!(
            start(&json!({"ExclusiveStartKey": {"pk": {"S": "k"}}, "Segment": other, "TotalSegments": total}))
                .unwrap_err()
                .message,
            format!("The provided starting key is invalid: Invalid ExclusiveStartKey. Please use ExclusiveStartKey with correct Segment. TotalSegments: {total} Segment: {other}")
        );
    }

    #[test]
    fn tag_pages_continue_after_their_last_key() {
        let tags: BTreeMap<String, String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|key| (key.to_string(), format!("value of {key}")))
            .collect();
        let keys = |page: &[Json]| -> Vec<String> {
            page.iter()
                .map(|tag| tag["Key"].as_str().unwrap().to_string())
                .collect()
        };
        let (page, next) = tags_page(&tags, None, 2);
        assert_eq!(keys(&page), ["a", "b"]);
        assert_eq!(page[0], json!({"Key": "a", "Value": "value of a"}));
        assert_eq!(next.as_deref(), Some("b"));
        let (page, next) = tags_page(&tags, next.as_deref(), 2);
        assert_eq!(keys(&page), ["c", "d"]);
        let (page, next) = tags_page(&tags, next.as_deref(), 2);
        assert_eq!(keys(&page), ["e"]);
        assert_eq!(next, None);
        // A page that ends exactly at the last tag has no NextToken; a token between keys or
        // past the end continues from there.
        assert_eq!(tags_page(&tags, None, 5).1, None);
        assert_eq!(keys(&tags_page(&tags, Some("bb"), 5).0), ["c", "d", "e"]);
        assert!(tags_page(&tags, Some("z"), 5).0.is_empty());
        assert!(
            tags_page(&BTreeMap::new(), None, LIST_TAGS_PAGE_TAGS_MAX)
                .0
                .is_empty()
        );
    }

    #[test]
    fn a_partition_needs_a_majority_of_its_replicas_created() {
        let partition = |id: u64, replicas: Vec<NodeId>| PartitionEntry {
            id,
            range: HashRange::ALL,
            replicas,
            shard: 0,
            epoch: 1,
            leader_hint: None,
        };
        let partitions = [partition(1, vec![1, 2, 3]), partition(2, vec![4, 5, 1])];
        let down = |replicas: &[(u64, NodeId)]| -> BTreeMap<(u64, NodeId), Missing> {
            replicas
                .iter()
                .map(|replica| {
                    let missing = Missing {
                        problem: "connection refused".to_string(),
                        node_reached: false,
                    };
                    (*replica, missing)
                })
                .collect()
        };
        assert_eq!(majority_created(&partitions, &down(&[])), Ok(()));
        // One replica of three missing in each partition: two of three is a majority.
        assert_eq!(
            majority_created(&partitions, &down(&[(1, 3), (2, 4)])),
            Ok(())
        );
        let problem = majority_created(&partitions, &down(&[(1, 3), (2, 4), (2, 5)])).unwrap_err();
        assert_eq!(
            problem,
            "a majority of the 3 replicas of partition 2 could not be created (node 4: connection refused; node 5: connection refused)"
        );
        // One replica is its own majority; two need both.
        assert_eq!(
            majority_created(&[partition(3, vec![7])], &down(&[])),
            Ok(())
        );
        assert!(majority_created(&[partition(3, vec![7, 8])], &down(&[(3, 8)])).is_err());
    }

    #[test]
    fn dates_are_seconds_with_their_fraction() {
        assert_eq!(date_json(1_700_000_000_000), json!(1_700_000_000u64));
        assert_eq!(date_json(1_700_000_000_250), json!(1_700_000_000.25));
    }

    fn group(table: usize, keys: &[&str]) -> BatchGroup {
        BatchGroup {
            table,
            hash: 0,
            members: keys.iter().map(|key| json!({"pk": {"S": key}})).collect(),
        }
    }

    fn served(keys: &[&str], read_units_milli: u64) -> Result<Reply, DynamoError> {
        let items = keys
            .iter()
            .map(|key| {
                let item = json!({"pk": {"S": key}, "v": {"N": "1"}});
                shoal_model::encoding::encode_item(
                    &shoal_model::json::item_from_json(&item).unwrap(),
                )
            })
            .collect();
        Ok(Reply {
            result: ItemResult::BatchGet { items },
            read_units_milli,
            write_units_milli: 0,
            leader: 1,
        })
    }

    fn unavailable() -> Result<Reply, DynamoError> {
        Err(DynamoError::internal(
            "Internal server error (partition 3: no leader)",
        ))
    }

    fn throttled(message: &str) -> Result<Reply, DynamoError> {
        Err(DynamoError::new(
            "ProvisionedThroughputExceededException",
            message,
        ))
    }

    fn keys_of(members: &[Json]) -> Vec<&str> {
        members
            .iter()
            .map(|member| member["pk"]["S"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_batch_over_many_partitions_returns_every_item_in_group_order() {
        // Two tables: table 0 over three partitions, table 1 over two.
        let groups = vec![
            group(0, &["a", "b"]),
            group(0, &["c"]),
            group(0, &["d", "e"]),
            group(1, &["x"]),
            group(1, &["y", "z"]),
        ];
        let results = vec![
            served(&["a", "b"], 1_000),
            served(&["c"], 500),
            served(&["d", "e"], 1_000),
            served(&["x"], 500),
            served(&["y", "z"], 1_000),
        ];
        let outcomes = settle_batch(2, groups, results, Operation::Read).unwrap();
        assert_eq!(keys_of(&outcomes[0].items), ["a", "b", "c", "d", "e"]);
        assert_eq!(keys_of(&outcomes[1].items), ["x", "y", "z"]);
        assert!(
            outcomes
                .iter()
                .all(|outcome| outcome.unprocessed.is_empty())
        );
        assert_eq!(outcomes[0].units_milli, 2_500);
        assert_eq!(outcomes[1].units_milli, 1_500);
    }

    #[test]
    fn an_unavailable_partition_leaves_only_its_own_keys_unprocessed() {
        let groups = vec![
            group(0, &["a", "b"]),
            group(0, &["c", "d"]),
            group(0, &["e"]),
            group(1, &["x"]),
        ];
        let results = vec![
            served(&["a", "b"], 1_000),
            unavailable(),
            served(&["e"], 500),
            throttled("table 1 is over its capacity"),
        ];
        let outcomes = settle_batch(2, groups, results, Operation::Read).unwrap();
        assert_eq!(keys_of(&outcomes[0].items), ["a", "b", "e"]);
        assert_eq!(keys_of(&outcomes[0].unprocessed), ["c", "d"]);
        // Capacity counts the groups served only.
        assert_eq!(outcomes[0].units_milli, 1_500);
        assert!(outcomes[1].items.is_empty());
        assert_eq!(keys_of(&outcomes[1].unprocessed), ["x"]);
        assert_eq!(outcomes[1].units_milli, 0);
    }

    #[test]
    fn a_batch_of_which_nothing_was_served_for_throughput_fails_with_the_last_throttle() {
        let groups = vec![group(0, &["a"]), group(0, &["b"]), group(1, &["x"])];
        let results = vec![throttled("first"), unavailable(), throttled("last")];
        let error = settle_batch(2, groups, results, Operation::Read).unwrap_err();
        assert_eq!(error.type_name, "ProvisionedThroughputExceededException");
        assert_eq!(error.message, "last");
        // Unavailable only: everything comes back unprocessed, and the call succeeds.
        let groups = vec![group(0, &["a"]), group(0, &["b"])];
        let outcomes = settle_batch(
            1,
            groups,
            vec![unavailable(), unavailable()],
            Operation::Read,
        )
        .unwrap();
        assert_eq!(keys_of(&outcomes[0].unprocessed), ["a", "b"]);
    }

    #[test]
    fn a_request_error_fails_the_batch_and_the_first_in_group_order_wins() {
        let groups = vec![
            group(0, &["a"]),
            group(0, &["b"]),
            group(0, &["c"]),
            group(1, &["x"]),
        ];
        let results = vec![
            throttled("capacity"),
            served(&["b"], 500),
            Err(DynamoError::validation("first")),
            Err(DynamoError::new(crate::error::RESOURCE_NOT_FOUND, "second")),
        ];
        let error = settle_batch(2, groups, results, Operation::Read).unwrap_err();
        assert_eq!(error, DynamoError::validation("first"));
    }

    #[test]
    fn a_batch_write_sums_write_units_and_returns_its_unprocessed_requests() {
        let put = |key: &str| json!({"PutRequest": {"Item": {"pk": {"S": key}}}});
        let groups = vec![
            BatchGroup {
                table: 0,
                hash: 1,
                members: vec![put("a"), put("b")],
            },
            BatchGroup {
                table: 0,
                hash: 2,
                members: vec![put("c")],
            },
        ];
        let written = Reply {
            result: ItemResult::BatchWrite,
            read_units_milli: 0,
            write_units_milli: 2_000,
            leader: 2,
        };
        let outcomes = settle_batch(
            1,
            groups,
            vec![Ok(written), unavailable()],
            Operation::Write,
        )
        .unwrap();
        assert!(outcomes[0].items.is_empty());
        assert_eq!(outcomes[0].unprocessed, vec![put("c")]);
        assert_eq!(outcomes[0].units_milli, 2_000);
    }

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
