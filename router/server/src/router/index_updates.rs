//! UpdateTable's GlobalSecondaryIndexUpdates: online creation (with backfill), deletion and
//! throughput changes of global secondary indexes, each a resumable control-plane change of
//! the table item (router/server README.md, "Global secondary indexes").
//!
//! Creating an index:
//! 1. the table item gets the index as CREATING, its partitions listed (metadata invariant 5),
//!    under a new index number (never reused); every router routes writes with it within
//!    [`TABLE_CACHE_TTL`], so from then on each write's base leader puts its entry changes in
//!    the outbox, like those of any index;
//! 2. the index partitions' replicas are created; UpdateTable answers (IndexStatus CREATING,
//!    Backfilling true);
//! 3. once no write routed without the index can still arrive ([`BACKFILL_START_DELAY`] after
//!    step 1), the repair pass backfills each base partition: each step (`IndexBackfill`) has
//!    the partition's leader put the entries of a page of items into its outbox in one log
//!    entry, ordered with the writes around it, so a write before the step is in what it
//!    copies and a write after it changes what it made. Progress is kept in the table item;
//!    a step done twice (a router died) puts the same entries again, which changes nothing;
//! 4. when every base partition is backfilled and its outbox drained past the backfill, the
//!    index becomes ACTIVE and Query and Scan may read it.
//!
//! Deleting an index marks it DELETING (writes stop carrying it, the propagator drops its
//! changes), deletes its partitions' replicas and then removes it from the item; the repair
//! pass finishes a deletion whose router died.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::index_definitions::GlobalIndexUpdate;
use crate::router::control::{majority_created, table_in_use};

use super::*;

/// How long after an index entered the table item its backfill may start: every router has
/// reloaded the item by then ([`TABLE_CACHE_TTL`]), a write prepared with the old item has
/// reached its leader or given up ([`crate::forward::REQUEST_DEADLINE`]), and routers' wall
/// clocks (which date the item) may differ by the margin.
pub const BACKFILL_START_DELAY: Duration = Duration::from_secs(
    TABLE_CACHE_TTL.as_secs() + crate::forward::REQUEST_DEADLINE.as_secs() + CLOCK_MARGIN_SECONDS,
);
/// The wall-clock difference between routers that [`BACKFILL_START_DELAY`] tolerates.
const CLOCK_MARGIN_SECONDS: u64 = 5;
/// How long one repair pass works on one index's backfill before saving its progress and
/// giving the pass's other work a turn.
pub const BACKFILL_TIME_PER_PASS: Duration = Duration::from_secs(3);
/// How long one backfill step (one page of one base partition) may take with its retries.
const BACKFILL_STEP_DEADLINE: Duration = Duration::from_secs(10);
/// Propagation rounds the end of a backfill waits for at most per base partition before it
/// tries again at the next pass (a partition under heavy writes may need several).
const BACKFILL_DRAIN_TURNS_MAX: usize = 8;
/// DynamoDB's limit on index changes in flight per table.
const ONE_ONLINE_INDEX_CHANGE: &str = "Subscriber limit exceeded: Only 1 online index can be created or deleted simultaneously per table";
/// Index numbers are one byte in the outbox format (FORMAT.md), and never reused.
const GLOBAL_INDEX_NUMBERS_MAX: u16 = 256;

impl Router {
    /// UpdateTable with GlobalSecondaryIndexUpdates (and perhaps a billing change): checks the
    /// updates against the table, then creates, deletes or changes the indexes.
    pub(super) async fn update_global_indexes(
        &self,
        request: &validate::UpdateTable,
        updates: &[GlobalIndexUpdate],
    ) -> Result<Json, DynamoError> {
        let name = request.name.as_str();
        let deadline = Instant::now() + CONTROL_DEADLINE;
        let online: Vec<&GlobalIndexUpdate> = updates
            .iter()
            .filter(|update| !matches!(update, GlobalIndexUpdate::Update { .. }))
            .collect();
        if online.len() > 1 {
            return Err(DynamoError::new(LIMIT_EXCEEDED, ONE_ONLINE_INDEX_CHANGE));
        }
        // A new index's partitions are placed and numbered before the item is written (metadata
        // invariant 5: listed before created). Ids reserved and then not used are never used.
        let mut planned: Option<GlobalIndexRecord> = None;
        if let Some(GlobalIndexUpdate::Create(index)) = online.first() {
            let record = self
                .read_table(name, deadline)
                .await?
                .ok_or_else(|| DynamoError::table_not_found(name))?;
            check_create(&record, index, request)?;
            let billing =
                validate::updated_billing(record.billing, request)?.unwrap_or(record.billing);
            let index_billing = index
                .throughput
                .map_or(billing, validate::Throughput::billing);
            let count = partitions_for(index_billing, self.config.partitions_per_table);
            let first_id = self
                .metadata
                .allocate_partition_ids(&self.forwarder, u64::from(count), deadline)
                .await
                .map_err(ForwardError::into_dynamo)?;
            let cluster = self.cluster().await?;
            let node_ids: Vec<u64> = cluster.placement_nodes();
            let partitions = place(&node_ids, cluster.shards_per_node, count, first_id)
                .map_err(|error| {
                    DynamoError::internal(format!("Internal server error (placement: {error:?})"))
                })?
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
            planned = Some(GlobalIndexRecord {
                index: shoal_model::index::global::GlobalIndex {
                    name: index.name.clone(),
                    // Set from the item read by the change below.
                    number: 0,
                    partition_keys: index.partition_keys.clone(),
                    sort_keys: index.sort_keys.clone(),
                    projection: index.projection.clone(),
                },
                partitions,
                throughput: index.throughput,
                // Checked against the table's billing when the change is applied.
                on_demand: Default::default(),
                status: GlobalIndexStatus::Creating,
                backfilled: BTreeSet::new(),
                added_at_ms: 0,
            });
        }
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
                    let now_ms = unix_millis_now();
                    let mut changed = record.clone();
                    let billing = validate::updated_billing(record.billing, request)?;
                    if let Some(billing) = billing {
                        validate::check_table_maximum(billing, region)?;
                    }
                    changed.on_demand =
                        super::control::updated_on_demand(record, request, billing, region)?;
                    if let Some(billing) = billing {
                        changed.change_billing(billing, now_ms);
                    }
                    for update in updates {
                        apply_update(&mut changed, update, planned.as_ref(), request, now_ms)?;
                    }
                    for update in updates {
                        apply_index_on_demand(&mut changed, update, region)?;
                    }
                    check_index_throughput(&changed)?;
                    Ok((changed != *record).then_some(changed))
                },
                || {
                    DynamoError::new(
                        RESOURCE_IN_USE,
                        format!(
                            "Attempt to change a resource which is still in use: Table is being updated: {name}"
                        ),
                    )
                },
            )
            .await?;
        let description = json!({ "TableDescription": self.table_description(&record) });
        match online.first() {
            Some(GlobalIndexUpdate::Create(index)) => {
                self.create_index_replicas(&record, &index.name).await?;
            }
            Some(GlobalIndexUpdate::Delete { name: index }) => {
                // The repair pass finishes it if this fails half-way.
                if let Err(error) = self.finish_index_deletion(name, index).await {
                    tracing::warn!(table = name, index, %error.message, "index deletion left to the repair pass");
                }
            }
            _ => {}
        }
        Ok(description)
    }

    /// Creates the replicas of the CREATING index `index` of `record`: like CreateTable, a
    /// majority of each partition is enough (the others stay pending for the repair pass);
    /// without it the index is deleted again and the client gets InternalServerError.
    async fn create_index_replicas(
        &self,
        record: &TableRecord,
        index: &str,
    ) -> Result<(), DynamoError> {
        let Some(global) = record.global_index(index) else {
            return Ok(());
        };
        let missing = self.create_replicas(record, &global.partitions).await;
        if let Err(problem) = majority_created(&global.partitions, &missing) {
            tracing::warn!(table = %record.name, index, %problem, "index creation abandoned");
            self.mark_index_deleting(&record.name, index).await?;
            self.finish_index_deletion(&record.name, index).await?;
            return Err(DynamoError::internal(format!(
                "Internal server error (index {index} was not created: {problem}; retry when the nodes are back)"
            )));
        }
        if missing.is_empty() {
            return Ok(());
        }
        self.change_incarnation(record, |changed| {
            changed.pending_replicas.extend(missing.keys().copied());
        })
        .await
    }

    async fn mark_index_deleting(&self, table: &str, index: &str) -> Result<(), DynamoError> {
        self.change_table(
            table,
            || DynamoError::table_not_found(table),
            |current| {
                let mut changed = current.clone();
                match changed
                    .global_indexes
                    .iter_mut()
                    .find(|record| record.index.name == index)
                {
                    Some(record) if record.status != GlobalIndexStatus::Deleting => {
                        record.status = GlobalIndexStatus::Deleting;
                        Ok(Some(changed))
                    }
                    _ => Ok(None),
                }
            },
            || table_in_use(table, "updated"),
        )
        .await?;
        Ok(())
    }

    /// Deletes the replicas of the DELETING index `index`, then removes it from the table item
    /// (and its pending replicas). Idempotent.
    pub(super) async fn finish_index_deletion(
        &self,
        table: &str,
        index: &str,
    ) -> Result<(), DynamoError> {
        let Some(record) = self.read_table(table, self.deadline()).await? else {
            return Ok(());
        };
        let Some(global) = record
            .global_index(index)
            .filter(|global| global.status == GlobalIndexStatus::Deleting)
        else {
            return Ok(());
        };
        let mut only_index = record.clone();
        only_index.partitions = Vec::new();
        only_index.global_indexes = vec![global.clone()];
        let left = self.delete_partitions(&only_index).await;
        if left > 0 {
            // Metadata invariant 5: once the index is gone from the item, the orphan scan
            // removes the replicas that did not answer now.
            tracing::warn!(
                table,
                index,
                left,
                "index replicas left for the orphan scan"
            );
        }
        let ids: BTreeSet<u64> = global.partitions.iter().map(|p| p.id).collect();
        self.change_incarnation(&record, |changed| {
            // A split of one of the index's partitions goes with it (the parent listed before
            // the split was routed, its children after). Children built on nodes but never
            // routed are then owned by no table, and the orphan scan deletes them.
            let doomed: BTreeSet<u64> = changed
                .global_indexes
                .iter()
                .filter(|record| {
                    record.index.name == index && record.status == GlobalIndexStatus::Deleting
                })
                .flat_map(|record| record.partitions.iter().map(|p| p.id))
                .chain(ids.iter().copied())
                .collect();
            changed.partition_splits.retain(|parent, split| {
                ![*parent, split.left, split.right]
                    .iter()
                    .any(|partition| doomed.contains(partition))
            });
            // Likewise a replica move: its record would list its target for a partition no
            // list holds, which no driver finds and the orphan scan never deletes.
            changed
                .replica_moves
                .retain(|partition, _| !doomed.contains(partition));
            changed.global_indexes.retain(|record| {
                record.index.name != index || record.status != GlobalIndexStatus::Deleting
            });
            changed
                .pending_replicas
                .retain(|(partition, _)| !ids.contains(partition));
        })
        .await
    }

    /// The repair pass's part for a table with an index CREATING or DELETING: finishes a
    /// deletion, or advances a backfill for at most [`BACKFILL_TIME_PER_PASS`] and makes the
    /// index ACTIVE once it is complete.
    pub(super) async fn advance_index_changes(&self, record: &TableRecord) {
        for global in &record.global_indexes {
            let index = global.index.name.as_str();
            let outcome = match global.status {
                GlobalIndexStatus::Active => Ok(()),
                GlobalIndexStatus::Deleting => {
                    self.finish_index_deletion(&record.name, index).await
                }
                GlobalIndexStatus::Creating => self.advance_backfill(record, global).await,
            };
            if let Err(error) = outcome {
                tracing::warn!(table = %record.name, index, %error.message, "index change not advanced");
            }
        }
    }

    async fn advance_backfill(
        &self,
        record: &TableRecord,
        global: &GlobalIndexRecord,
    ) -> Result<(), DynamoError> {
        let start_at = global
            .added_at_ms
            .saturating_add(BACKFILL_START_DELAY.as_millis() as u64);
        if unix_millis_now() < start_at {
            return Ok(());
        }
        let started = Instant::now();
        let mut newly_backfilled = BTreeSet::new();
        for partition in &record.partitions {
            if global.backfilled.contains(&partition.id) {
                continue;
            }
            if started.elapsed() >= BACKFILL_TIME_PER_PASS {
                break;
            }
            if self
                .backfill_partition(&record.name, partition.id, &global.index, started)
                .await?
            {
                newly_backfilled.insert(partition.id);
            }
        }
        let mut backfilled = global.backfilled.clone();
        backfilled.extend(newly_backfilled.iter().copied());
        let complete = record
            .partitions
            .iter()
            .all(|partition| backfilled.contains(&partition.id));
        if complete {
            // Every backfill step is in its outbox; the index is ACTIVE once they reached it.
            for partition in &record.partitions {
                let mut drained = false;
                for _turn in 0..BACKFILL_DRAIN_TURNS_MAX {
                    if self.propagate_partition(&record.name, partition.id).await? {
                        drained = true;
                        break;
                    }
                }
                if !drained {
                    return self
                        .note_backfilled(record, &global.index.name, newly_backfilled, false)
                        .await;
                }
            }
        }
        self.note_backfilled(record, &global.index.name, newly_backfilled, complete)
            .await
    }

    /// Runs backfill steps on base partition `partition` until it is done (`true`) or the
    /// pass's time is up (`false`: it starts over at the next pass, which changes nothing
    /// already backfilled).
    async fn backfill_partition(
        &self,
        table: &str,
        partition: u64,
        index: &shoal_model::index::global::GlobalIndex,
        started: Instant,
    ) -> Result<bool, DynamoError> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let deadline = Instant::now() + BACKFILL_STEP_DEADLINE;
            let (_, map) = self.table(table, deadline).await?;
            let Some(route) = map.get(partition).cloned() else {
                return Ok(false);
            };
            let step = PreparedRequest::IndexBackfill {
                index: index.clone(),
                after: after.clone(),
            };
            let reply = self
                .forwarder
                .forward(&route, &ItemCall::new(&step), deadline)
                .await
                .map_err(ForwardError::into_dynamo)?;
            self.note_leader(table, None, partition, Some(reply.leader));
            self.propagation.request(table, partition, None);
            let ItemResult::Backfill { resume_after } = reply.result else {
                return Err(DynamoError::internal(
                    "Internal server error (a backfill step answered with another result)",
                ));
            };
            match resume_after {
                None => return Ok(true),
                Some(key) => after = Some(key),
            }
            if started.elapsed() >= BACKFILL_TIME_PER_PASS {
                return Ok(false);
            }
        }
    }

    /// Records backfilled base partitions of a CREATING index, and makes it ACTIVE when
    /// `complete`.
    async fn note_backfilled(
        &self,
        record: &TableRecord,
        index: &str,
        backfilled: BTreeSet<u64>,
        complete: bool,
    ) -> Result<(), DynamoError> {
        if backfilled.is_empty() && !complete {
            return Ok(());
        }
        self.change_incarnation(record, |changed| {
            let Some(global) = changed
                .global_indexes
                .iter_mut()
                .find(|global| global.index.name == index)
                .filter(|global| global.status == GlobalIndexStatus::Creating)
            else {
                return;
            };
            global.backfilled.extend(backfilled.iter().copied());
            if complete {
                global.status = GlobalIndexStatus::Active;
                global.backfilled.clear();
            }
        })
        .await
    }
}

/// The table's own rules for a new index: not while another is created or deleted, a name no
/// index has, the per-table quota and the index numbers left.
fn check_create(
    record: &TableRecord,
    index: &crate::index_definitions::GlobalIndex,
    request: &validate::UpdateTable,
) -> Result<(), DynamoError> {
    let _ = request;
    if record
        .global_indexes
        .iter()
        .any(|global| global.status != GlobalIndexStatus::Active)
    {
        return Err(DynamoError::new(LIMIT_EXCEEDED, ONE_ONLINE_INDEX_CHANGE));
    }
    let taken = record
        .global_indexes
        .iter()
        .map(|global| global.index.name.as_str())
        .chain(record.local_indexes.iter().map(|local| local.name.as_str()))
        .any(|name| name == index.name);
    if taken {
        return Err(DynamoError::validation(
            "Attempting to create an index which already exists",
        ));
    }
    if record.global_indexes.len() >= shoal_model::index::GLOBAL_SECONDARY_INDEXES_MAX {
        return Err(DynamoError::new(
            LIMIT_EXCEEDED,
            format!(
                "One or more parameter values were invalid: GlobalSecondaryIndex count exceeds the per-table limit of {}",
                shoal_model::index::GLOBAL_SECONDARY_INDEXES_MAX
            ),
        ));
    }
    if record.global_index_numbers_used >= GLOBAL_INDEX_NUMBERS_MAX {
        return Err(DynamoError::new(
            LIMIT_EXCEEDED,
            format!(
                "This table has had {GLOBAL_INDEX_NUMBERS_MAX} global secondary indexes over its life, the most this server supports; create a new table to add more"
            ),
        ));
    }
    Ok(())
}

/// Applies one update to `changed` (the item read, being changed), re-checking what the read
/// may have changed since the request was checked.
fn apply_update(
    changed: &mut TableRecord,
    update: &GlobalIndexUpdate,
    planned: Option<&GlobalIndexRecord>,
    request: &validate::UpdateTable,
    now_ms: u64,
) -> Result<(), DynamoError> {
    match update {
        GlobalIndexUpdate::Create(index) => {
            check_create(changed, index, request)?;
            let Some(planned) = planned else {
                return Err(DynamoError::internal(
                    "Internal server error (an index created without its partitions)",
                ));
            };
            let mut created = planned.clone();
            created.index.number = u8::try_from(changed.global_index_numbers_used)
                .map_err(|_| DynamoError::internal("Internal server error (index numbers)"))?;
            created.added_at_ms = now_ms;
            changed.global_index_numbers_used += 1;
            changed.global_indexes.push(created);
        }
        GlobalIndexUpdate::Delete { name } => {
            if changed
                .local_indexes
                .iter()
                .any(|local| local.name == *name)
            {
                return Err(DynamoError::validation(format!(
                    "Cannot delete an index that is not a GlobalSecondaryIndex: {name}"
                )));
            }
            if changed
                .global_indexes
                .iter()
                .any(|global| global.status != GlobalIndexStatus::Active)
            {
                return Err(DynamoError::new(LIMIT_EXCEEDED, ONE_ONLINE_INDEX_CHANGE));
            }
            let global = changed
                .global_indexes
                .iter_mut()
                .find(|global| global.index.name == *name)
                .ok_or_else(|| index_not_found(&changed.name, name))?;
            global.status = GlobalIndexStatus::Deleting;
        }
        GlobalIndexUpdate::Update {
            name, throughput, ..
        } => {
            if changed
                .local_indexes
                .iter()
                .any(|local| local.name == *name)
            {
                return Err(DynamoError::validation(format!(
                    "Cannot update an index that is not a GlobalSecondaryIndex: {name}"
                )));
            }
            let table_name = changed.name.clone();
            let global = changed
                .global_indexes
                .iter_mut()
                .find(|global| global.index.name == *name)
                .filter(|global| global.status != GlobalIndexStatus::Deleting)
                .ok_or_else(|| index_not_found(&table_name, name))?;
            global.throughput = *throughput;
        }
    }
    Ok(())
}

/// An index's OnDemandThroughput from a Create or an Update, once the request's billing change
/// is applied: a new index's maximums (each at least 1), or an index's merged over its own (-1
/// removes one); refused on a PROVISIONED table, with DynamoDB's texts (on_demand.rs).
fn apply_index_on_demand(
    changed: &mut TableRecord,
    update: &GlobalIndexUpdate,
    region: &str,
) -> Result<(), DynamoError> {
    let billing = changed.billing;
    let (name, asked, create) = match update {
        GlobalIndexUpdate::Create(index) => (&index.name, index.on_demand, true),
        GlobalIndexUpdate::Update {
            name, on_demand, ..
        } => (name, *on_demand, false),
        GlobalIndexUpdate::Delete { .. } => return Ok(()),
    };
    let Some(asked) = asked else {
        return Ok(());
    };
    let Some(global) = changed
        .global_indexes
        .iter_mut()
        .find(|global| global.index.name == *name && global.status != GlobalIndexStatus::Deleting)
    else {
        return Ok(());
    };
    let owner = crate::on_demand::Owner::Index(name);
    global.on_demand = if create {
        asked.for_create(billing, owner)?
    } else {
        asked.merged(global.on_demand, billing, owner)?
    };
    global.on_demand.check_quota(owner, region)
}

/// The answer to an Update or Delete of an index the table does not have. The exception
/// follows DynamoDB's API reference (ResourceNotFoundException for a nonexistent index); no
/// public recording of the service's exact text was found, so the text follows its
/// table-not-found message.
fn index_not_found(table: &str, index: &str) -> DynamoError {
    DynamoError::new(
        crate::error::RESOURCE_NOT_FOUND,
        format!("Requested resource not found: Table: {table} Index: {index}"),
    )
}

/// A provisioned table's indexes each have throughput, an on-demand table's none, once the
/// request's billing change and index updates are applied (DynamoDB's rules and messages).
pub(super) fn check_index_throughput(record: &TableRecord) -> Result<(), DynamoError> {
    for global in &record.global_indexes {
        if global.status == GlobalIndexStatus::Deleting {
            continue;
        }
        match (record.billing, global.throughput) {
            (Billing::PayPerRequest, Some(_)) => {
                return Err(DynamoError::validation(format!(
                    "One or more parameter values were invalid: ProvisionedThroughput should not be specified for index: {} when BillingMode is PAY_PER_REQUEST",
                    global.index.name
                )));
            }
            (Billing::Provisioned { .. }, None) => {
                return Err(DynamoError::validation(format!(
                    "One or more parameter values were invalid: ProvisionedThroughput is not specified for index: {}",
                    global.index.name
                )));
            }
            _ => {}
        }
    }
    Ok(())
}
