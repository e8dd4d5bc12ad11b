//! The control plane: CreateTable, DescribeTable, ListTables, DeleteTable, UpdateTable,
//! DescribeLimits and the tag operations, over the metadata group.

use super::*;
use crate::on_demand;
use crate::table_settings::{DELETION_PROTECTED, TableSettings};

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

/// What the partitions of a table (or of one of its GSIs) report they hold.
#[derive(Debug, Default)]
struct LiveCounts {
    items: u64,
    bytes: u64,
    /// Entry count and bytes by local index number.
    local_indexes: BTreeMap<u8, (u64, u64)>,
}

impl Router {
    /// A table's ARN, as DescribeTable reports it and the tag operations take it.
    pub(super) fn table_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:dynamodb:{}:{}:table/{name}",
            self.config.region, self.config.account
        )
    }

    /// DescribeTable's LocalSecondaryIndexes, in creation order, with each index's entry count
    /// and bytes where `counts` has them, by index number (else 0: DynamoDB's own figures lag
    /// by hours, and a new index reports 0).
    fn local_indexes_json(&self, record: &TableRecord, counts: &BTreeMap<u8, (u64, u64)>) -> Json {
        let table_arn = self.table_arn(&record.name);
        let indexes: Vec<Json> = record
            .local_indexes
            .iter()
            .map(|index| {
                let mut projection = json!({ "ProjectionType": index.projection.type_name() });
                if let shoal_model::index::Projection::Include(names) = &index.projection {
                    projection["NonKeyAttributes"] = json!(names);
                }
                json!({
                    "IndexName": index.name,
                    "KeySchema": [
                        { "AttributeName": record.key_schema.partition.name, "KeyType": "HASH" },
                        { "AttributeName": index.sort_key.name, "KeyType": "RANGE" },
                    ],
                    "Projection": projection,
                    "IndexSizeBytes": counts.get(&index.number).map_or(0, |(_, bytes)| *bytes),
                    "ItemCount": counts.get(&index.number).map_or(0, |(items, _)| *items),
                    "IndexArn": format!("{table_arn}/index/{}", index.name),
                })
            })
            .collect();
        Json::Array(indexes)
    }

    /// DescribeTable's GlobalSecondaryIndexes, in creation order, with each index's entry
    /// count and bytes where `counts` has them (else 0, as DynamoDB reports a new index).
    fn global_indexes_json(
        &self,
        record: &TableRecord,
        counts: &HashMap<String, (u64, u64)>,
    ) -> Json {
        let table_arn = self.table_arn(&record.name);
        let indexes: Vec<Json> =
            record
                .global_indexes
                .iter()
                .map(|global| {
                    let index = &global.index;
                    let mut projection = json!({ "ProjectionType": index.projection.type_name() });
                    if let shoal_model::index::Projection::Include(names) = &index.projection {
                        projection["NonKeyAttributes"] = json!(names);
                    }
                    // Every partition key attribute, then every sort key attribute, in key order:
                    // how DynamoDB lists a multi-attribute key.
                    let key_schema: Vec<Json> =
                        index
                            .partition_keys
                            .iter()
                            .map(|key| json!({ "AttributeName": key.name, "KeyType": "HASH" }))
                            .chain(index.sort_keys.iter().map(
                                |key| json!({ "AttributeName": key.name, "KeyType": "RANGE" }),
                            ))
                            .collect();
                    let (read, write) = global.throughput.map_or((0, 0), |throughput| {
                        (
                            throughput.read_capacity_units,
                            throughput.write_capacity_units,
                        )
                    });
                    let (items, bytes) = counts.get(&index.name).copied().unwrap_or((0, 0));
                    // A table CREATING or DELETING carries its indexes along.
                    let status = match record.status {
                        TableStatus::Active => global.status.name(),
                        other => other.name(),
                    };
                    let mut description = json!({
                        "IndexName": index.name,
                        "KeySchema": key_schema,
                        "Projection": projection,
                        "IndexStatus": status,
                        "ProvisionedThroughput": {
                            "NumberOfDecreasesToday": 0,
                            "ReadCapacityUnits": read,
                            "WriteCapacityUnits": write,
                        },
                        "IndexSizeBytes": bytes,
                        "ItemCount": items,
                        "IndexArn": format!("{table_arn}/index/{}", index.name),
                    });
                    if global.status == GlobalIndexStatus::Creating {
                        description["Backfilling"] = json!(true);
                    }
                    if global.throughput.is_none() {
                        description["OnDemandThroughput"] = global.on_demand.index_json();
                    }
                    description
                })
                .collect();
        Json::Array(indexes)
    }

    pub(super) fn table_description(&self, record: &TableRecord) -> Json {
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
        let first_partition = record.incarnation().unwrap_or(0);
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
        });
        record.settings.describe_into(&mut description, date_json);
        self.describe_stream_into(record, &mut description);
        if !record.local_indexes.is_empty() {
            description["LocalSecondaryIndexes"] =
                self.local_indexes_json(record, &BTreeMap::new());
        }
        if !record.global_indexes.is_empty() {
            description["GlobalSecondaryIndexes"] =
                self.global_indexes_json(record, &HashMap::new());
        }
        // DynamoDB reports the summary for a table that is or ever was on demand, and none for
        // a table that was always provisioned.
        if record.billing == Billing::PayPerRequest || record.pay_per_request_since_ms.is_some() {
            let mut summary = json!({ "BillingMode": mode });
            if let Some(since) = record.pay_per_request_since_ms {
                summary["LastUpdateToPayPerRequestDateTime"] = date_json(since);
            }
            description["BillingModeSummary"] = summary;
        }
        if let Some(maximum) = record.on_demand.table_json() {
            description["OnDemandThroughput"] = maximum;
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
        self.create_validated_table(request, None).await
    }

    /// CreateTable of a checked request; `time_to_live`: the table starts with Time to Live
    /// on this attribute (the transaction ledger's records expire so).
    pub(super) async fn create_validated_table(
        &self,
        request: validate::CreateTable,
        time_to_live: Option<String>,
    ) -> Result<Json, DynamoError> {
        validate::check_table_maximum(request.billing, &self.config.region)?;
        request
            .on_demand
            .check_quota(on_demand::Owner::Table, &self.config.region)?;
        // The indexes' maximums were checked against the billing by validate::create_table.
        let mut index_on_demand = Vec::with_capacity(request.global_indexes.len());
        for index in &request.global_indexes {
            let owner = on_demand::Owner::Index(&index.name);
            let maximum = match index.on_demand {
                Some(asked) => asked.for_create(request.billing, owner)?,
                None => on_demand::OnDemandMaximum::default(),
            };
            maximum.check_quota(owner, &self.config.region)?;
            index_on_demand.push(maximum);
        }
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
        // Each GSI is partitioned like a table of its own throughput (or the table's mode).
        let index_partition_counts: Vec<u32> = request
            .global_indexes
            .iter()
            .map(|index| {
                let billing = index
                    .throughput
                    .map_or(request.billing, validate::Throughput::billing);
                partitions_for(billing, self.config.partitions_per_table)
            })
            .collect();
        let ids_needed = u64::from(partition_count)
            + index_partition_counts
                .iter()
                .map(|count| u64::from(*count))
                .sum::<u64>();
        let first_id = self
            .metadata
            .allocate_partition_ids(&self.forwarder, ids_needed, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        self.step_done(ControlStep::CreateIdsReserved).await;
        let node_ids: Vec<u64> = cluster.placement_nodes();
        let place_partitions = |count: u32, first_id: u64| {
            let planned =
                place(&node_ids, cluster.shards_per_node, count, first_id).map_err(|error| {
                    DynamoError::internal(format!("Internal server error (placement: {error:?})"))
                })?;
            Ok::<_, DynamoError>(
                planned
                    .into_iter()
                    .map(|plan| PartitionEntry {
                        id: first_id + u64::from(plan.ordinal),
                        range: plan.range,
                        replicas: plan.replicas,
                        shard: plan.shard,
                        epoch: 1,
                        leader_hint: None,
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let partitions = place_partitions(partition_count, first_id)?;
        let mut next_id = first_id + u64::from(partition_count);
        let mut global_indexes = Vec::with_capacity(request.global_indexes.len());
        for (((number, index), count), on_demand) in (0u8..)
            .zip(request.global_indexes)
            .zip(index_partition_counts)
            .zip(index_on_demand)
        {
            global_indexes.push(GlobalIndexRecord {
                index: shoal_model::index::global::GlobalIndex {
                    name: index.name,
                    number,
                    partition_keys: index.partition_keys,
                    sort_keys: index.sort_keys,
                    projection: index.projection,
                },
                partitions: place_partitions(count, next_id)?,
                throughput: index.throughput,
                on_demand,
                status: GlobalIndexStatus::Active,
                backfilled: Default::default(),
                added_at_ms: 0,
            });
            next_id += u64::from(count);
        }
        let created_at_seconds = unix_seconds_now();
        let mut record = TableRecord {
            name: request.name.clone(),
            key_schema: request.key_schema,
            attribute_definitions: request.attribute_definitions,
            billing: request.billing,
            on_demand: request.on_demand,
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
            replica_moves: Default::default(),
            partition_splits: Default::default(),
            incarnation_id: None,
            changed_at_ms: 0,
            settings: TableSettings::created(
                &request.settings,
                &self.config.region,
                &self.config.account,
            ),
            time_to_live: TimeToLiveSetting {
                attribute: time_to_live,
                changed_at_ms: None,
            },
            local_indexes: request.local_indexes,
            global_index_numbers_used: u16::try_from(global_indexes.len()).unwrap_or(u16::MAX),
            global_indexes,
            // ENABLING until the partitions record for it; the table is ACTIVE only then
            // (finish_creation), so no write of the new table escapes its stream.
            streams: request
                .stream
                .map(|view| crate::metadata::TableStream {
                    id: unix_millis_now(),
                    view,
                    status: crate::metadata::StreamStatus::Enabling,
                    settled: Default::default(),
                    disabled_at_ms: None,
                })
                .into_iter()
                .collect(),
        };
        // Step 1: the CREATING item, with the partition list, before any replica exists
        // (metadata invariant 5). Ids reserved above and never written here are simply never
        // used: no replica of them can exist.
        let created = self
            .metadata
            .put_new_table(&self.forwarder, &mut record, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        if !created {
            return Err(DynamoError::new(
                RESOURCE_IN_USE,
                format!("Table already exists: {}", request.name),
            ));
        }
        self.step_done(ControlStep::CreateItemWritten).await;
        match self.finish_creation(record, deadline).await? {
            Creation::Active(record) | Creation::Creating(record) => {
                Ok(json!({ "TableDescription": self.table_description(&record) }))
            }
            Creation::Abandoned { name, problem } => Err(DynamoError::internal(format!(
                "Internal server error (table {name} was not created: {problem}; retry when the nodes are back)"
            ))),
        }
    }

    /// CreateTable from its CREATING item on (steps 2 and 3 of the state machine, README.md):
    /// creates the replicas, then marks the table ACTIVE with the replicas still missing
    /// pending; or, without a majority of some partition's replicas, abandons it: marks it
    /// DELETING and finishes that deletion, so the name is free again. Run by CreateTable and
    /// by the repair pass for a table whose router died (every step is idempotent: creating
    /// a replica that exists answers Created, and the item's writes are conditional on the
    /// revision read, so of two routers finishing one table exactly one write wins and the
    /// other reads the outcome).
    pub(super) async fn finish_creation(
        &self,
        mut record: TableRecord,
        deadline: Instant,
    ) -> Result<Creation, DynamoError> {
        debug_assert_eq!(record.status, TableStatus::Creating);
        let read = (record.status, record.revision);
        let partitions: Vec<PartitionEntry> = record.all_partitions().cloned().collect();
        let missing = self.create_replicas(&record, &partitions).await;
        if let Err(problem) = majority_created(record.all_partitions(), &missing) {
            tracing::warn!(table = %record.name, %problem, "CreateTable abandoned");
            record.status = TableStatus::Deleting;
            let marked = self
                .metadata
                .replace_table(&self.forwarder, &mut record, read, deadline)
                .await
                .map_err(ForwardError::into_dynamo)?;
            if marked {
                self.finish_deletion(&record, deadline).await?;
                return Ok(Creation::Abandoned {
                    name: record.name,
                    problem,
                });
            }
            return self.creation_outcome(&record, problem, deadline).await;
        }
        self.step_done(ControlStep::CreateReplicasCreated).await;
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
        if let Some(stream) = record
            .streams
            .last_mut()
            .filter(|stream| stream.status == crate::metadata::StreamStatus::Enabling)
        {
            // The stream must record every write of the table: its partitions follow it before
            // the table is ACTIVE. Not all reached now: the table stays CREATING and the repair
            // pass finishes it.
            let (id, view) = (stream.id, Some(stream.view));
            let configured = self
                .configure_partitions(&record, id, view, &Default::default(), deadline)
                .await;
            if configured.len() < record.partitions.len() {
                return Ok(Creation::Creating(Box::new(record)));
            }
            let stream = record.streams.last_mut().expect("checked above");
            stream.status = crate::metadata::StreamStatus::Enabled;
        }
        record.status = TableStatus::Active;
        let activated = self
            .metadata
            .replace_table(&self.forwarder, &mut record, read, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        if activated {
            self.cache_record(record.clone())?;
            return Ok(Creation::Active(Box::new(record)));
        }
        self.creation_outcome(
            &record,
            "its table item changed meanwhile".to_string(),
            deadline,
        )
        .await
    }

    /// What became of a creation whose last write lost to another router's (the repair pass
    /// finishing it too): ACTIVE if that router activated the same incarnation, abandoned
    /// otherwise (deleted or being deleted, by that router).
    async fn creation_outcome(
        &self,
        record: &TableRecord,
        problem: String,
        deadline: Instant,
    ) -> Result<Creation, DynamoError> {
        let current = self.read_table(&record.name, deadline).await?;
        match current {
            Some(current)
                if current.status == TableStatus::Active
                    && current.incarnation() == record.incarnation() =>
            {
                Ok(Creation::Active(Box::new(current)))
            }
            _ => Ok(Creation::Abandoned {
                name: record.name.clone(),
                problem,
            }),
        }
    }

    /// Asks every replica of every partition to create itself (idempotent), in rounds, until
    /// all are created; or [`REPLICAS_ALL_WAIT`] passed with a majority of every partition
    /// created and only unreachable nodes missing; or [`REPLICAS_MAJORITY_WAIT`] passed.
    /// Returns the replicas not created, each with the last reason.
    pub(super) async fn create_replicas(
        &self,
        record: &TableRecord,
        partitions: &[PartitionEntry],
    ) -> BTreeMap<(u64, NodeId), Missing> {
        let started = Instant::now();
        let mut missing: BTreeMap<(u64, NodeId), Missing> = partitions
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
            let majority = majority_created(partitions, &missing).is_ok();
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
    pub(super) async fn create_replicas_once(
        &self,
        record: &TableRecord,
        replicas: &[(u64, NodeId)],
    ) -> Vec<((u64, NodeId), Result<(), Missing>)> {
        let key_schema = key_schema_wire(&record.key_schema);
        let mut silent: BTreeMap<(NodeId, u16), Missing> = BTreeMap::new();
        let mut outcomes = Vec::with_capacity(replicas.len());
        for &(partition_id, node) in replicas {
            let Some(partition) = record.all_partitions().find(|p| p.id == partition_id) else {
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
                Ok(NodeResponse::Created) => {
                    self.step_done(ControlStep::CreateFirstReplicaCreated).await;
                    Ok(())
                }
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

    /// DescribeTable. Item counts come live from the partitions' status (each replica counts
    /// its items), falling back to the stored estimate for a partition that does not answer.
    pub async fn describe_table(&self, body: Json) -> Result<Json, DynamoError> {
        let name = validate::table_name(&body)?;
        let deadline = self.deadline();
        let mut record = self
            .read_table(name, deadline)
            .await?
            .ok_or_else(|| DynamoError::table_not_found(name))?;
        let mut local_counts = None;
        if record.status == TableStatus::Active
            && let Some(counts) = self
                .live_item_count(&record.name, None, record.routed_partitions())
                .await
        {
            record.item_count = counts.items;
            record.size_bytes = counts.bytes;
            local_counts = Some(counts.local_indexes);
        }
        let mut description = self.table_description(&record);
        if let Some(counts) = &local_counts
            && !record.local_indexes.is_empty()
        {
            description["LocalSecondaryIndexes"] = self.local_indexes_json(&record, counts);
        }
        if record.status == TableStatus::Active && !record.global_indexes.is_empty() {
            let mut counts = HashMap::new();
            for index in &record.global_indexes {
                let partitions = record.routed_index_partitions(index);
                if let Some(count) = self
                    .live_item_count(&record.name, Some(&index.index.name), partitions)
                    .await
                {
                    counts.insert(index.index.name.clone(), (count.items, count.bytes));
                }
            }
            description["GlobalSecondaryIndexes"] = self.global_indexes_json(&record, &counts);
        }
        Ok(json!({ "Table": description }))
    }

    /// The sums of the item counts and item bytes of `partitions` (of `table`, or of its global
    /// index `index`: entries), and of their local indexes' entries, one Status call per (node,
    /// shard) asked; `None` if any partition went unanswered.
    async fn live_item_count(
        &self,
        table: &str,
        index: Option<&str>,
        partitions: Vec<PartitionEntry>,
    ) -> Option<LiveCounts> {
        let hints: HashMap<u64, Option<u64>> = self
            .tables
            .borrow()
            .get(table)
            .and_then(|state| match index {
                None => Some(&state.map),
                Some(index) => state.index_maps.get(index),
            })
            .map(|map| {
                map.partitions()
                    .iter()
                    .map(|p| (p.id, p.leader_hint))
                    .collect()
            })
            .unwrap_or_default();
        let mut by_shard: BTreeMap<(u64, u16), Vec<u64>> = BTreeMap::new();
        for partition in &partitions {
            let mut entry = partition.clone();
            entry.leader_hint = hints.get(&partition.id).copied().flatten();
            let node = entry.first_target()?;
            by_shard
                .entry((node, partition.shard))
                .or_default()
                .push(partition.id);
        }
        let mut counts = LiveCounts::default();
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
                counts.items = counts.items.saturating_add(status.item_count);
                counts.bytes = counts.bytes.saturating_add(status.item_bytes);
                for local in &status.local_indexes {
                    let (items, bytes) = counts.local_indexes.entry(local.number).or_default();
                    *items = items.saturating_add(local.entry_count);
                    *bytes = bytes.saturating_add(local.entry_bytes);
                }
            }
        }
        Some(counts)
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
            // The transaction ledger is the cluster's own, not a client's table.
            .filter(|name| name != super::LEDGER_TABLE)
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

    /// DeleteTable: marks the table DELETING (step 1 of the deletion, README.md), then
    /// finishes the deletion ([`Router::finish_deletion`]): deletes its replicas and removes
    /// its item, which frees its name. A table being created is refused, as DynamoDB refuses
    /// it. Once the table is DELETING the call answers with its description whatever the
    /// later steps met: the repair pass finishes a deletion left part way, and replicas on
    /// nodes that did not answer are collected when they return.
    pub async fn delete_table(&self, body: Json) -> Result<Json, DynamoError> {
        let name = validate::table_name(&body)?;
        let deadline = Instant::now() + CONTROL_DEADLINE;
        let mut record = self
            .read_table(name, deadline)
            .await?
            .ok_or_else(|| DynamoError::table_not_found(name))?;
        match record.status {
            TableStatus::Active => {}
            // DeleteTable racing CreateTable left replicas that the creator went on creating
            // after the deletion had removed the others (issue 15); DynamoDB refuses it too.
            TableStatus::Creating => return Err(table_in_use(name, "created")),
            TableStatus::Deleting => return Err(table_in_use(name, "deleted")),
        }
        // The protection is read with the revision the DELETING write is conditional on, so
        // an UpdateTable turning it on meanwhile makes that write fail: never deleted while on.
        if record.settings.deletion_protection {
            return Err(DynamoError::validation(DELETION_PROTECTED));
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
        self.step_done(ControlStep::DeleteMarked).await;
        if let Err(error) = self.finish_deletion(&record, deadline).await {
            tracing::warn!(
                table = name,
                %error.message,
                "DeleteTable left its table DELETING; the repair pass finishes it"
            );
        }
        Ok(json!({ "TableDescription": self.table_description(&record) }))
    }

    /// A deletion from its DELETING item on (steps 2 and 3, README.md): asks every replica to
    /// delete itself, then removes the item if it is still the one read. Run by DeleteTable,
    /// by a CreateTable that abandons its table, and by the repair pass for a table whose
    /// router died. Idempotent: a node without the replica answers Deleted, and the item's
    /// removal is conditional on the DELETING revision and incarnation read, so it removes
    /// this table's item or nothing (never a table created again under the name). A replica
    /// whose node does not answer is left: nothing routes to it once the item is gone, and
    /// the orphan collection deletes it when the node is back (metadata invariant 5), so a
    /// node that is down never holds a name.
    pub(super) async fn finish_deletion(
        &self,
        record: &TableRecord,
        deadline: Instant,
    ) -> Result<(), DynamoError> {
        debug_assert_eq!(record.status, TableStatus::Deleting);
        self.delete_partitions(record).await;
        self.step_done(ControlStep::DeleteReplicasDeleted).await;
        let removed = self
            .metadata
            .remove_table(&self.forwarder, record, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        if !removed {
            tracing::debug!(table = %record.name, "its item was removed by another router");
        }
        Ok(())
    }

    /// Asks every replica of the table's partitions to remove itself, and returns how many did
    /// not answer Deleted. Those stay on their nodes until the orphan collection finds them
    /// (metadata invariant 5); the deletion goes on.
    pub(super) async fn delete_partitions(&self, record: &TableRecord) -> usize {
        let mut left = 0;
        for partition in record.all_partitions() {
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
                    Ok(NodeResponse::Deleted) => {
                        self.step_done(ControlStep::DeleteFirstReplicaDeleted).await;
                    }
                    outcome => {
                        left += 1;
                        tracing::warn!(
                            partition = partition.id,
                            node = *node,
                            ?outcome,
                            "a replica of a deleted table was not removed yet"
                        );
                    }
                }
            }
        }
        left
    }

    /// A change of a table's item (metadata invariant 1): `change` maps the record read to the
    /// record to store, or to `None` when nothing changes. After a concurrent change it reads
    /// again, [`METADATA_WRITE_ATTEMPTS_MAX`] times at most, then answers `conflict`. The new
    /// record is routed with on this core at once; other cores and routers load it within
    /// [`TABLE_CACHE_TTL`].
    pub(super) async fn change_table(
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

    /// [`Router::change_table`] for a control-plane step of `record`'s incarnation: `edit`
    /// changes a copy of the table as it is now. Nothing is written when the table was
    /// recreated meanwhile (another incarnation under the same name) or the edit changed
    /// nothing.
    pub(super) async fn change_incarnation(
        &self,
        record: &TableRecord,
        mut edit: impl FnMut(&mut TableRecord),
    ) -> Result<(), DynamoError> {
        let incarnation = record.incarnation();
        self.change_table(
            &record.name,
            || DynamoError::table_not_found(&record.name),
            |current| {
                if current.incarnation() != incarnation {
                    return Ok(None);
                }
                let mut changed = current.clone();
                edit(&mut changed);
                Ok((changed != *current).then_some(changed))
            },
            || table_in_use(&record.name, "updated"),
        )
        .await?;
        Ok(())
    }

    /// UpdateTable: BillingMode and ProvisionedThroughput, or one table setting (encryption,
    /// table class, deletion protection; table_settings.rs). The change is one metadata write, so
    /// the table stays ACTIVE and the answer describes it changed (DynamoDB answers UPDATING
    /// with the old values and applies them later; DynamoDB Local answers as here). Admission on
    /// this core uses the new capacity at once, other routers within [`TABLE_CACHE_TTL`].
    /// Partitions are not split for a higher throughput yet: each still admits DynamoDB's
    /// per-partition ceilings.
    pub async fn update_table(&self, body: Json) -> Result<Json, DynamoError> {
        let request = validate::update_table(&body)?;
        if let Some(updates) = &request.global_index_updates {
            return self.update_global_indexes(&request, updates).await;
        }
        let name = request.name.as_str();
        let region = self.config.region.as_str();
        let account = self.config.account.as_str();
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
                    let now_ms = unix_millis_now();
                    let stream_change = match &request.settings.stream {
                        None => None,
                        Some(specification) => {
                            let latest = record.streams.last();
                            if specification.enabled
                                && latest.is_some_and(|stream| {
                                    stream.status == crate::metadata::StreamStatus::Disabling
                                })
                            {
                                return Err(DynamoError::new(
                                    RESOURCE_IN_USE,
                                    format!(
                                        "Attempt to change a resource which is still in use: the stream of table {name} is being disabled"
                                    ),
                                ));
                            }
                            let on = latest.is_some_and(|stream| stream.status.is_on());
                            Some(crate::table_settings::check_update_stream(
                                specification,
                                name,
                                on,
                            )?)
                        }
                    };
                    let settings = record.settings.updated(
                        &request.settings,
                        region,
                        account,
                        now_ms,
                    )?;
                    let billing = validate::updated_billing(record.billing, &request)?;
                    if let Some(billing) = billing {
                        validate::check_table_maximum(billing, region)?;
                    }
                    let on_demand = updated_on_demand(record, &request, billing, region)?;
                    if billing.is_none()
                        && settings.is_none()
                        && stream_change.is_none()
                        && on_demand == record.on_demand
                    {
                        return Ok(None);
                    }
                    let mut changed = record.clone();
                    match stream_change {
                        None => {}
                        // A new stream, ENABLING until its partitions record for it; its id is
                        // above every earlier stream's (a partition never goes back to one).
                        Some(Some(view)) => {
                            let id = changed
                                .streams
                                .last()
                                .map_or(now_ms, |latest| now_ms.max(latest.id + 1));
                            changed.streams.push(crate::metadata::TableStream {
                                id,
                                view,
                                status: crate::metadata::StreamStatus::Enabling,
                                settled: Default::default(),
                                disabled_at_ms: None,
                            });
                        }
                        Some(None) => {
                            let latest = changed.streams.last_mut().expect("a stream is on");
                            latest.status = crate::metadata::StreamStatus::Disabling;
                            latest.settled.clear();
                        }
                    }
                    changed.streams = super::streams::pruned_streams(&changed.streams, now_ms);
                    changed.on_demand = on_demand;
                    if let Some(billing) = billing {
                        changed.change_billing(billing, now_ms);
                        // Provisioned again, every index needs throughput of its own
                        // (GlobalSecondaryIndexUpdates' Update gives it).
                        super::index_updates::check_index_throughput(&changed)?;
                    }
                    if let Some(settings) = settings {
                        changed.settings = settings;
                    }
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
        if request.settings.stream.is_some() {
            // The partitions follow the change now; whatever does not answer, the repair
            // pass finishes.
            if let Err(error) = self.advance_stream(&record).await {
                tracing::warn!(table = %record.name, %error.message, "stream change left to the repair pass");
            }
        }
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

    /// UpdateTimeToLive: enables TTL on an attribute or disables it, one metadata write. The
    /// setting is ENABLED or DISABLED at once, as DynamoDB reports it (a probe of DynamoDB
    /// never saw ENABLING or DISABLING at 1 s polling); the partition leaders' sweepers learn
    /// it from the table item within their refresh interval (engine/shard README.md, "Time to
    /// Live"). DynamoDB checks the request against the setting before its interval between
    /// changes, so "already enabled" answers even within the interval.
    pub async fn update_time_to_live(&self, body: Json) -> Result<Json, DynamoError> {
        let name = validate::table_name(&body)?;
        let specification = validate::time_to_live_specification(&body)?;
        let now_ms = unix_millis_now();
        self.change_table(
            name,
            || DynamoError::table_not_found(name),
            |record| {
                match record.status {
                    TableStatus::Active => {}
                    TableStatus::Creating => return Err(table_in_use(name, "created")),
                    TableStatus::Deleting => return Err(table_in_use(name, "deleted")),
                }
                let attribute = time_to_live_change(
                    &record.time_to_live,
                    &specification,
                    now_ms,
                    TIME_TO_LIVE_CHANGE_INTERVAL,
                )?;
                let mut changed = record.clone();
                changed.time_to_live = TimeToLiveSetting {
                    attribute,
                    changed_at_ms: Some(now_ms),
                };
                Ok(Some(changed))
            },
            || DynamoError::validation(TIME_TO_LIVE_CHANGED_WITHIN_INTERVAL),
        )
        .await?;
        Ok(json!({
            "TimeToLiveSpecification": {
                "Enabled": specification.enabled,
                "AttributeName": specification.attribute_name,
            }
        }))
    }

    /// DescribeTimeToLive: ENABLED with the attribute, or DISABLED without one (DynamoDB does
    /// not tell a table that never had TTL from one that had it disabled).
    pub async fn describe_time_to_live(&self, body: Json) -> Result<Json, DynamoError> {
        let name = validate::table_name(&body)?;
        let record = self
            .read_table(name, self.deadline())
            .await?
            .ok_or_else(|| DynamoError::table_not_found(name))?;
        if record.status != TableStatus::Active {
            return Err(DynamoError::validation(format!(
                "Cannot describe time to live while table is in {} state",
                record.status.name()
            )));
        }
        Ok(json!({ "TimeToLiveDescription": time_to_live_description(&record.time_to_live) }))
    }
}

/// How a creation ended ([`Router::finish_creation`]).
#[derive(Debug)]
pub(super) enum Creation {
    /// The table is ACTIVE: this record (boxed: a record is several hundred bytes, the other
    /// variant a few dozen).
    Active(Box<TableRecord>),
    /// Still CREATING: its replicas exist, but not every partition follows its stream yet
    /// (the repair pass finishes it).
    Creating(Box<TableRecord>),
    /// Not created (a partition without a majority of its replicas): the table was deleted,
    /// or is being deleted by the router that won the race.
    Abandoned { name: String, problem: String },
}

/// Why CreateTable has not created a replica yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Missing {
    problem: String,
    /// The node was reached (it answered, or took the request and did not answer in time): it
    /// is up, perhaps slow, and worth waiting for longer than a node that cannot be reached.
    node_reached: bool,
}

/// Whether every one of `partitions` has a majority of its replicas created, given the
/// replicas (partition id, node) `missing`; if not, which partition lacks one and why.
pub(super) fn majority_created<'a>(
    partitions: impl IntoIterator<Item = &'a PartitionEntry>,
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

/// DescribeTimeToLive's TimeToLiveDescription of a setting.
pub(super) fn time_to_live_description(setting: &TimeToLiveSetting) -> Json {
    match &setting.attribute {
        Some(attribute) => json!({ "TimeToLiveStatus": "ENABLED", "AttributeName": attribute }),
        None => json!({ "TimeToLiveStatus": "DISABLED" }),
    }
}

/// The attribute UpdateTimeToLive leaves enabled (`None`: disabled), or DynamoDB's refusal.
/// The request is checked against the current setting first, then against the interval since
/// the last change (DynamoDB answers in this order).
pub(super) fn time_to_live_change(
    current: &TimeToLiveSetting,
    request: &validate::TimeToLiveSpecification,
    now_ms: u64,
    interval: Duration,
) -> Result<Option<String>, DynamoError> {
    match (&current.attribute, request.enabled) {
        (Some(attribute), true) if *attribute == request.attribute_name => {
            return Err(DynamoError::validation(TIME_TO_LIVE_ALREADY_ENABLED));
        }
        (Some(attribute), _) if *attribute != request.attribute_name => {
            return Err(DynamoError::validation(format!(
                "TimeToLive is active on a different AttributeName: current value of AttributeName is {attribute}"
            )));
        }
        (None, false) => return Err(DynamoError::validation(TIME_TO_LIVE_ALREADY_DISABLED)),
        _ => {}
    }
    let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    if let Some(changed_at_ms) = current.changed_at_ms
        && now_ms < changed_at_ms.saturating_add(interval_ms)
    {
        return Err(DynamoError::validation(
            TIME_TO_LIVE_CHANGED_WITHIN_INTERVAL,
        ));
    }
    Ok(request.enabled.then(|| request.attribute_name.clone()))
}

/// A change refused while CreateTable or DeleteTable runs.
pub(super) fn table_in_use(name: &str, becoming: &str) -> DynamoError {
    DynamoError::new(
        RESOURCE_IN_USE,
        format!(
            "Attempt to change a resource which is still in use: Table is being {becoming}: {name}"
        ),
    )
}

/// The table's OnDemandThroughput maximums after `request`: its members merged over the
/// table's (on the billing the request leaves), checked against the quotas.
pub(super) fn updated_on_demand(
    record: &TableRecord,
    request: &validate::UpdateTable,
    billing: Option<Billing>,
    region: &str,
) -> Result<on_demand::OnDemandMaximum, DynamoError> {
    let Some(asked) = request.on_demand else {
        return Ok(record.on_demand);
    };
    let maximum = asked.merged(
        record.on_demand,
        billing.unwrap_or(record.billing),
        on_demand::Owner::Table,
    )?;
    maximum.check_quota(on_demand::Owner::Table, region)?;
    Ok(maximum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specification(enabled: bool, attribute_name: &str) -> validate::TimeToLiveSpecification {
        validate::TimeToLiveSpecification {
            enabled,
            attribute_name: attribute_name.to_string(),
        }
    }

    #[test]
    fn time_to_live_changes_follow_dynamodb() {
        let interval = Duration::from_secs(60);
        let never = TimeToLiveSetting::default();
        assert_eq!(
            time_to_live_change(&never, &specification(true, "ttl"), 5, interval).unwrap(),
            Some("ttl".to_string())
        );
        assert_eq!(
            time_to_live_change(&never, &specification(false, "ttl"), 5, interval)
                .unwrap_err()
                .message,
            TIME_TO_LIVE_ALREADY_DISABLED
        );
        let enabled = TimeToLiveSetting {
            attribute: Some("ttl".to_string()),
            changed_at_ms: Some(1_000),
        };
        // The setting is checked before the interval: within it, "already enabled" answers.
        assert_eq!(
            time_to_live_change(&enabled, &specification(true, "ttl"), 1_001, interval)
                .unwrap_err()
                .message,
            TIME_TO_LIVE_ALREADY_ENABLED
        );
        assert_eq!(
            time_to_live_change(&enabled, &specification(true, "other"), 999_999, interval)
                .unwrap_err()
                .message,
            "TimeToLive is active on a different AttributeName: current value of AttributeName is ttl"
        );
        assert_eq!(
            time_to_live_change(&enabled, &specification(false, "other"), 999_999, interval)
                .unwrap_err()
                .message,
            "TimeToLive is active on a different AttributeName: current value of AttributeName is ttl"
        );
        assert_eq!(
            time_to_live_change(&enabled, &specification(false, "ttl"), 60_999, interval)
                .unwrap_err()
                .message,
            TIME_TO_LIVE_CHANGED_WITHIN_INTERVAL
        );
        assert_eq!(
            time_to_live_change(&enabled, &specification(false, "ttl"), 61_000, interval).unwrap(),
            None
        );
        let disabled = TimeToLiveSetting {
            attribute: None,
            changed_at_ms: Some(61_000),
        };
        assert_eq!(
            time_to_live_change(&disabled, &specification(true, "new"), 61_001, interval)
                .unwrap_err()
                .message,
            TIME_TO_LIVE_CHANGED_WITHIN_INTERVAL
        );
        assert_eq!(
            time_to_live_change(&disabled, &specification(true, "new"), 121_000, interval).unwrap(),
            Some("new".to_string())
        );
        assert_eq!(
            time_to_live_description(&disabled),
            json!({"TimeToLiveStatus": "DISABLED"})
        );
        assert_eq!(
            time_to_live_description(&enabled),
            json!({"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"})
        );
    }

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
}
