//! The repair pass (`shoal router` runs [`Router::repair_pass`] every [`REPAIR_INTERVAL`]): it
//! finishes what routers started and did not finish, from the metadata alone, so any router
//! can run it and several may at once.
//!
//! 1. Pending replicas (metadata invariant 4): created once their nodes answer.
//! 2. Unfinished CreateTable and DeleteTable: a table CREATING or DELETING whose item has not
//!    changed for [`RouterConfig::control_step_timeout`] is taken over and driven to ACTIVE or
//!    gone (README.md, "the control-plane state machine").
//! 3. Replicas of no table (metadata invariant 5), every
//!    [`RouterConfig::orphan_scan_interval`]: deleted once two scans at least
//!    [`RouterConfig::orphan_replica_grace`] apart found them so.

use super::control::{Creation, table_in_use};
use super::*;
use crate::cluster_status::{ClusterStatus, ShardReport};
use std::collections::BTreeSet;

/// `Status` calls the router has in flight at once while it gathers every shard's report (the
/// orphan scan, `shoal admin status`, the autoadmin's leader count): each answer lists a
/// shard's replicas, so this bounds the answers held at once.
pub(super) const SHARD_REPORTS_IN_FLIGHT_MAX: usize = 16;

/// One replica as a shard reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct HostedReplica {
    pub node: NodeId,
    pub shard: u16,
    pub partition: u64,
    pub epoch: u64,
}

/// A table the pass saw unfinished: the item's incarnation and revision, and when this
/// router first saw that revision.
#[derive(Clone, Copy, Debug)]
struct StepSeen {
    incarnation: Option<u64>,
    revision: u64,
    since: Instant,
}

/// What the repair pass remembers between passes. Bounded by what one pass sees: each pass
/// keeps only the tables and replicas it found again.
#[derive(Debug, Default)]
pub(super) struct RepairMemory {
    unfinished: RefCell<HashMap<String, StepSeen>>,
    orphans: RefCell<BTreeMap<HostedReplica, Instant>>,
    /// Listed replicas their answering node does not host, and since when (autoadmin.rs).
    missing: RefCell<BTreeMap<HostedReplica, Instant>>,
    orphan_scan_last: Cell<Option<Instant>>,
    transaction_recovery_last: Cell<Option<Instant>>,
    /// Partitions (table, a hash they own) where requests met a transaction's lock lately, and
    /// when first (transactions.rs, `suspect_lock`).
    pub(super) lock_suspects: RefCell<BTreeMap<(String, u64), Instant>>,
}

/// What one repair pass did and left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Replicas still pending creation (their nodes did not answer).
    pub pending_replicas: usize,
    /// Tables still CREATING or DELETING after the pass (not stale yet, or their finishing
    /// failed and is tried again at the next pass).
    pub unfinished_tables: usize,
    /// Tables this pass drove to ACTIVE or gone.
    pub tables_finished: usize,
    /// Replicas of no table this pass deleted.
    pub orphan_replicas_deleted: usize,
    /// Abandoned transactions this pass finished at some partition (transactions.rs).
    pub transactions_recovered: usize,
}

/// Whether an unfinished table's current step is stale, so its router is presumed dead: the
/// item has not changed for `timeout` by the writer's wall clock (so a router that restarts
/// takes over at once a table its predecessor left long ago), or by this router's own
/// observation of the same revision (which a writer's clock running ahead cannot delay).
fn step_stale(
    changed_at_ms: u64,
    wall_now_ms: u64,
    seen_since: Instant,
    now: Instant,
    timeout: Duration,
) -> bool {
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    wall_now_ms.saturating_sub(changed_at_ms) >= timeout_ms
        || now.saturating_duration_since(seen_since) >= timeout
}

/// The replicas in `hosted` that belong to no table (metadata invariant 5): below the
/// partition counter `next_partition` (an id at or above it was never reserved, so this
/// cluster's metadata did not make it: it is left alone), and not listed on their node by any
/// table item, whatever its status: neither a replica of its partition there nor a move's
/// target. A replica moved away is one of these. A replica of the metadata group (partition 0)
/// is one when `metadata_listed` (the cluster item's `metadata_replicas` and its move's
/// target, read after `hosted` was gathered) does not name its node: the group moved away
/// from a node that was down meanwhile.
fn orphan_replicas(
    hosted: &[HostedReplica],
    tables: &[TableRecord],
    next_partition: u64,
    metadata_listed: &BTreeSet<NodeId>,
) -> BTreeSet<HostedReplica> {
    let listed: BTreeSet<(u64, NodeId)> = tables
        .iter()
        .flat_map(TableRecord::listed_replicas)
        .collect();
    hosted
        .iter()
        .filter(|replica| {
            if replica.partition == crate::metadata::METADATA_PARTITION {
                return !metadata_listed.is_empty() && !metadata_listed.contains(&replica.node);
            }
            replica.partition >= crate::metadata::FIRST_DATA_PARTITION
                && replica.partition < next_partition
                && !listed.contains(&(replica.partition, replica.node))
        })
        .copied()
        .collect()
}

/// The replicas that ACTIVE tables (not pending creation, metadata invariant 4) and the
/// metadata group (`metadata_replicas`, the cluster item's) list on a node whose shard answered
/// `reports` without them: lost with the node's data, or kept out of service because they were
/// found corrupt at recovery. A table being created or deleted is left out: its replicas are
/// on their way in or out.
fn missing_replicas(
    reports: &[ShardReport],
    tables: &[TableRecord],
    metadata_replicas: &[NodeId],
) -> BTreeSet<HostedReplica> {
    let answered: BTreeSet<(NodeId, u16)> = reports
        .iter()
        .filter(|report| report.replicas.is_some())
        .map(|report| (report.node, report.shard))
        .collect();
    let hosted: BTreeSet<(u64, NodeId)> = reports
        .iter()
        .flat_map(|report| {
            report
                .replicas
                .iter()
                .flatten()
                .map(move |replica| (replica.partition, report.node))
        })
        .collect();
    let metadata = metadata_replicas.iter().map(|node| HostedReplica {
        node: *node,
        shard: crate::metadata::METADATA_SHARD,
        partition: crate::metadata::METADATA_PARTITION,
        epoch: crate::metadata::METADATA_EPOCH,
    });
    // A split's child is not missing on a node that still hosts the split's parent: the node
    // builds it once its parent replica has applied the split (it may be catching up).
    let building: BTreeSet<(u64, NodeId)> = tables
        .iter()
        .flat_map(|table| table.partition_splits.iter())
        .flat_map(|(parent, record)| {
            record
                .replicas
                .iter()
                .filter(|node| hosted.contains(&(*parent, **node)))
                .flat_map(|node| [(record.left, *node), (record.right, *node)])
                .collect::<Vec<_>>()
        })
        .collect();
    tables
        .iter()
        .filter(|table| table.status == TableStatus::Active)
        .flat_map(|table| {
            table.all_partitions().flat_map(move |partition| {
                partition
                    .replicas
                    .iter()
                    .filter(move |node| !table.pending_replicas.contains(&(partition.id, **node)))
                    .map(move |node| HostedReplica {
                        node: *node,
                        shard: partition.shard,
                        partition: partition.id,
                        epoch: partition.epoch,
                    })
            })
        })
        .chain(metadata)
        .filter(|replica| {
            answered.contains(&(replica.node, replica.shard))
                && !hosted.contains(&(replica.partition, replica.node))
                && !building.contains(&(replica.partition, replica.node))
        })
        .collect()
}

/// Records this scan's `orphans` in `seen` (forgetting those no longer orphaned or no longer
/// reported) and returns those first seen at least `grace` ago.
fn orphans_due(
    seen: &mut BTreeMap<HostedReplica, Instant>,
    orphans: &BTreeSet<HostedReplica>,
    now: Instant,
    grace: Duration,
) -> Vec<HostedReplica> {
    seen.retain(|replica, _| orphans.contains(replica));
    for replica in orphans {
        seen.entry(*replica).or_insert(now);
    }
    seen.iter()
        .filter(|(_, since)| now.saturating_duration_since(**since) >= grace)
        .map(|(replica, _)| *replica)
        .collect()
}

impl Router {
    /// One repair pass: pending replicas, unfinished tables, and (every
    /// [`RouterConfig::orphan_scan_interval`]) replicas of no table. Safe from several routers
    /// at once: creations and deletions of replicas are idempotent, and every write of a
    /// table item is conditional on what was read.
    pub async fn repair_pass(&self) -> Result<RepairReport, DynamoError> {
        let records = self
            .metadata
            .tables_needing_repair(&self.forwarder, Instant::now() + CONTROL_DEADLINE)
            .await
            .map_err(ForwardError::into_dynamo)?;
        let (active, unfinished): (Vec<TableRecord>, Vec<TableRecord>) = records
            .into_iter()
            .partition(|record| record.status == TableStatus::Active);
        let mut report = RepairReport::default();
        // Global index changes (index_updates.rs) of ACTIVE tables, advanced after the rest.
        let changing_indexes: Vec<TableRecord> = active
            .iter()
            .filter(|record| {
                record
                    .global_indexes
                    .iter()
                    .any(|index| index.status != crate::metadata::GlobalIndexStatus::Active)
            })
            .cloned()
            .collect();
        // Stream changes (streams.rs) of ACTIVE tables, likewise.
        let changing_streams: Vec<TableRecord> = active
            .iter()
            .filter(|record| {
                record.streams.last().is_some_and(|stream| {
                    matches!(
                        stream.status,
                        crate::metadata::StreamStatus::Enabling
                            | crate::metadata::StreamStatus::Disabling
                    )
                })
            })
            .cloned()
            .collect();
        // One part failing (a table item changed meanwhile, a node slow) does not hold up the
        // others: each is tried again at the next pass.
        let pending_total: usize = active
            .iter()
            .map(|record| record.pending_replicas.len())
            .sum();
        report.pending_replicas = match self.create_pending_replicas_of(active).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error.message, "creating pending replicas failed");
                pending_total
            }
        };
        (report.unfinished_tables, report.tables_finished) =
            self.finish_unfinished_of(unfinished).await;
        for record in &changing_indexes {
            self.advance_index_changes(record).await;
        }
        for record in &changing_streams {
            if let Err(error) = self.advance_stream(record).await {
                tracing::warn!(table = %record.name, %error.message, "stream change not advanced");
            }
        }
        let scan_due = self
            .repair
            .orphan_scan_last
            .get()
            .is_none_or(|last| last.elapsed() >= self.config.orphan_scan_interval);
        if scan_due {
            self.repair.orphan_scan_last.set(Some(Instant::now()));
            report.orphan_replicas_deleted = self.collect_orphan_replicas().await?;
        }
        let recovery_due = self
            .repair
            .transaction_recovery_last
            .get()
            .is_none_or(|last| last.elapsed() >= super::TRANSACTION_RECOVERY_INTERVAL);
        if recovery_due {
            self.repair
                .transaction_recovery_last
                .set(Some(Instant::now()));
        }
        report.transactions_recovered = self.recover_transactions(recovery_due).await?;
        Ok(report)
    }

    /// The repair pass's first part alone: creates the pending replicas (metadata invariant
    /// 4) of every ACTIVE table whose nodes answer now, and removes them from the table item.
    /// Returns how many replicas are still pending.
    ///
    /// A pending replica never existed, so creating it empty is safe: it has promised and
    /// accepted nothing, and it learns the chosen values from its peers like a follower that
    /// fell behind. A replica whose creation was acknowledged is never in the list, so a node
    /// that lost its data never gets an empty replica in place of one that voted.
    pub async fn create_pending_replicas(&self) -> Result<usize, DynamoError> {
        let records = self
            .metadata
            .tables_needing_repair(&self.forwarder, self.deadline())
            .await
            .map_err(ForwardError::into_dynamo)?;
        let active = records
            .into_iter()
            .filter(|record| record.status == TableStatus::Active)
            .collect();
        self.create_pending_replicas_of(active).await
    }

    async fn create_pending_replicas_of(
        &self,
        records: Vec<TableRecord>,
    ) -> Result<usize, DynamoError> {
        let mut still_pending = 0usize;
        for record in records {
            // A CREATING table's creator decides its replicas; a DELETING one is going away.
            if record.status != TableStatus::Active || record.pending_replicas.is_empty() {
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
        let incarnation = record.incarnation();
        let orphaned = Cell::new(false);
        let changed = self
            .change_table(
                name,
                || DynamoError::table_not_found(name),
                |current| {
                    let same = current.status == TableStatus::Active
                        && current.incarnation() == incarnation;
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
            let index_partitions = leftover
                .global_indexes
                .iter_mut()
                .flat_map(|index| index.partitions.iter_mut());
            for partition in leftover.partitions.iter_mut().chain(index_partitions) {
                partition
                    .replicas
                    .retain(|node| created.contains(&(partition.id, *node)));
            }
            self.delete_partitions(&leftover).await;
        }
        Ok(remaining)
    }

    /// The repair pass's second part alone: takes over every CREATING or DELETING table whose
    /// step is stale and drives it to ACTIVE or gone. Returns how many tables stay
    /// unfinished.
    pub async fn finish_unfinished_tables(&self) -> Result<usize, DynamoError> {
        let records = self
            .metadata
            .tables_needing_repair(&self.forwarder, Instant::now() + CONTROL_DEADLINE)
            .await
            .map_err(ForwardError::into_dynamo)?;
        let unfinished = records
            .into_iter()
            .filter(|record| record.status != TableStatus::Active)
            .collect();
        Ok(self.finish_unfinished_of(unfinished).await.0)
    }

    /// Takes over the stale ones of `records` (CREATING or DELETING); returns how many stay
    /// unfinished and how many were finished. A failure is logged and tried again at the next
    /// pass.
    async fn finish_unfinished_of(&self, records: Vec<TableRecord>) -> (usize, usize) {
        let now = Instant::now();
        let wall_now_ms = unix_millis_now();
        let mut stale = Vec::new();
        let mut waiting = 0;
        {
            let mut memory = self.repair.unfinished.borrow_mut();
            let mut seen_now = HashMap::with_capacity(records.len());
            for record in records {
                let since = match memory.get(&record.name) {
                    Some(seen)
                        if seen.incarnation == record.incarnation()
                            && seen.revision == record.revision =>
                    {
                        seen.since
                    }
                    _ => now,
                };
                seen_now.insert(
                    record.name.clone(),
                    StepSeen {
                        incarnation: record.incarnation(),
                        revision: record.revision,
                        since,
                    },
                );
                if step_stale(
                    record.changed_at_ms,
                    wall_now_ms,
                    since,
                    now,
                    self.config.control_step_timeout,
                ) {
                    stale.push(record);
                } else {
                    waiting += 1;
                }
            }
            *memory = seen_now;
        }
        let mut finished = 0;
        for record in stale {
            let name = record.name.clone();
            let status = record.status;
            tracing::info!(table = %name, status = status.name(), "taking over an unfinished table");
            let deadline = Instant::now() + CONTROL_DEADLINE;
            let outcome =
                match status {
                    TableStatus::Creating => self.finish_creation(record, deadline).await.map(
                        |creation| match creation {
                            Creation::Active(_) => "ACTIVE",
                            Creation::Creating(_) => "still CREATING (its stream is not set up)",
                            Creation::Abandoned { .. } => "gone (not created)",
                        },
                    ),
                    TableStatus::Deleting => self
                        .finish_deletion(&record, deadline)
                        .await
                        .map(|()| "gone"),
                    TableStatus::Active => Ok("ACTIVE"),
                };
            match outcome {
                Ok(became) => {
                    finished += 1;
                    tracing::info!(table = %name, became, "an unfinished table was finished");
                }
                Err(error) => {
                    waiting += 1;
                    tracing::warn!(table = %name, %error.message, "an unfinished table is still unfinished");
                }
            }
        }
        (waiting, finished)
    }

    /// The repair pass's third part alone: asks every shard of every node which replicas it
    /// hosts, then reads the partition counter and every table item (strongly, after the
    /// answers: metadata invariant 5), and deletes the replicas of no table that the previous
    /// scans found so for [`RouterConfig::orphan_replica_grace`] already. A shard that does
    /// not answer is skipped until it does. Returns how many replicas were deleted. It also
    /// hands the autoadmin the listed replicas that answering nodes have not hosted for that
    /// grace (lost), to rebuild elsewhere.
    pub async fn collect_orphan_replicas(&self) -> Result<usize, DynamoError> {
        let cluster = self.cluster().await?;
        let reports = self.shard_reports(&cluster).await;
        // Read strongly after the reports, like the table items below (metadata invariant 5):
        // the metadata group lists a move's target before the target hosts anything.
        let current = self.load_cluster().await?;
        // Empty (no replica of the group is an orphan) while the list is only assumed.
        let metadata_listed: BTreeSet<NodeId> = current
            .metadata_replicas
            .iter()
            .copied()
            .chain(current.metadata_move.map(|record| record.target))
            .filter(|_| current.metadata_replicas_recorded)
            .collect();
        let hosted: Vec<HostedReplica> = reports
            .iter()
            .flat_map(|report| {
                let (node, shard) = (report.node, report.shard);
                report
                    .replicas
                    .iter()
                    .flatten()
                    .map(move |replica| HostedReplica {
                        node,
                        shard,
                        partition: replica.partition,
                        epoch: replica.epoch,
                    })
            })
            .collect();
        let deadline = Instant::now() + CONTROL_DEADLINE;
        let next_partition = self
            .metadata
            .next_partition_id(&self.forwarder, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        let tables = self
            .metadata
            .all_tables(&self.forwarder, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        // Listed replicas their node does not host, for the autoadmin once missing for the same
        // grace as orphans (a node recovering its replicas answers only once it has them).
        let lost = orphans_due(
            &mut self.repair.missing.borrow_mut(),
            &missing_replicas(
                &reports,
                &tables,
                if current.metadata_replicas_recorded {
                    &current.metadata_replicas
                } else {
                    &[]
                },
            ),
            Instant::now(),
            self.config.orphan_replica_grace,
        );
        self.note_lost_replicas(lost.iter().map(|replica| (replica.partition, replica.node)));
        let orphans = orphan_replicas(&hosted, &tables, next_partition, &metadata_listed);
        let due = orphans_due(
            &mut self.repair.orphans.borrow_mut(),
            &orphans,
            Instant::now(),
            self.config.orphan_replica_grace,
        );
        // Read the items once more just before deleting: a replica moved away may have been
        // chosen as a move's target since the read above (the autoadmin never picks a node
        // that hosts the partition, so this closes the window to the time between this read
        // and the deletion's arrival).
        let due = if due.is_empty() {
            due
        } else {
            let again = self.load_cluster().await?;
            let listed: BTreeSet<(u64, NodeId)> = self
                .metadata
                .all_tables(&self.forwarder, Instant::now() + CONTROL_DEADLINE)
                .await
                .map_err(ForwardError::into_dynamo)?
                .iter()
                .flat_map(TableRecord::listed_replicas)
                .chain(
                    again
                        .metadata_replicas
                        .iter()
                        .copied()
                        .chain(again.metadata_move.map(|record| record.target))
                        .map(|node| (crate::metadata::METADATA_PARTITION, node)),
                )
                .collect();
            due.into_iter()
                .filter(|replica| !listed.contains(&(replica.partition, replica.node)))
                .collect()
        };
        let mut deleted = 0;
        for replica in due {
            let request = NodeRequest::DeletePartition {
                partition: replica.partition,
                epoch: replica.epoch,
            };
            match self
                .forwarder
                .call_once(replica.node, replica.shard, request)
                .await
            {
                Ok(NodeResponse::Deleted) => {
                    deleted += 1;
                    self.repair.orphans.borrow_mut().remove(&replica);
                    tracing::info!(
                        node = replica.node,
                        shard = replica.shard,
                        partition = replica.partition,
                        "deleted a replica of no table"
                    );
                }
                outcome => tracing::warn!(
                    node = replica.node,
                    partition = replica.partition,
                    ?outcome,
                    "a replica of no table was not deleted; the next scan tries again"
                ),
            }
        }
        Ok(deleted)
    }
}

impl Router {
    /// What every shard of every node reports hosting (`NodeRequest::Status`), asked
    /// concurrently (a slow shard costs its call's timeout once, not once per shard after
    /// it); a shard that does not answer is reported with no replicas.
    pub(super) async fn shard_reports(&self, cluster: &ClusterRecord) -> Vec<ShardReport> {
        let calls: Vec<_> = cluster
            .nodes
            .iter()
            .flat_map(|node| (0..cluster.shards_per_node).map(move |shard| (node.id, shard)))
            .map(|(node, shard)| async move {
                let replicas = match self
                    .forwarder
                    .call_once(node, shard, NodeRequest::Status)
                    .await
                {
                    Ok(NodeResponse::Status { replicas, .. }) => Some(replicas),
                    outcome => {
                        tracing::debug!(
                            node,
                            shard,
                            ?outcome,
                            "a shard did not report its replicas"
                        );
                        None
                    }
                };
                ShardReport {
                    node,
                    shard,
                    replicas,
                }
            })
            .collect();
        join_bounded(calls, SHARD_REPORTS_IN_FLIGHT_MAX).await
    }

    /// `shoal admin status`: the cluster item and every table item, read strongly, then what
    /// every shard reports hosting (crate::cluster_status). The metadata comes first, so that a
    /// metadata group still electing fails the call before any shard is asked (a caller retries
    /// it); a replica of a table created between the two reads shows as one of no table.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, DynamoError> {
        let cluster = self.load_cluster().await?;
        let deadline = Instant::now() + CONTROL_DEADLINE;
        let tables = self
            .metadata
            .all_tables(&self.forwarder, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        let paused = self
            .metadata
            .autoadmin_paused(&self.forwarder, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        let reports = self.shard_reports(&cluster).await;
        Ok(ClusterStatus::compute(&cluster, &tables, &reports, paused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Billing;
    use shoal_model::key::KeyType;

    fn table(name: &str, partitions: &[u64]) -> TableRecord {
        TableRecord {
            name: name.to_string(),
            key_schema: KeySchema::partition_only("pk", KeyType::String),
            attribute_definitions: vec![("pk".to_string(), KeyType::String)],
            billing: Billing::PayPerRequest,
            on_demand: Default::default(),
            status: TableStatus::Active,
            created_at_seconds: 0,
            item_count: 0,
            size_bytes: 0,
            partitions: partitions
                .iter()
                .map(|id| PartitionEntry {
                    id: *id,
                    range: HashRange::ALL,
                    replicas: vec![1, 2, 3],
                    shard: 0,
                    epoch: 1,
                    leader_hint: None,
                })
                .collect(),
            tags: BTreeMap::new(),
            throughput_history: Default::default(),
            pay_per_request_since_ms: None,
            revision: 0,
            pending_replicas: Default::default(),
            replica_moves: Default::default(),
            partition_splits: Default::default(),
            incarnation_id: None,
            changed_at_ms: 0,
            settings: Default::default(),
            time_to_live: Default::default(),
            local_indexes: Vec::new(),
            global_indexes: Vec::new(),
            global_index_numbers_used: 0,
            streams: Vec::new(),
        }
    }

    fn hosted(node: NodeId, partition: u64) -> HostedReplica {
        HostedReplica {
            node,
            shard: 0,
            partition,
            epoch: 1,
        }
    }

    #[test]
    fn only_replicas_no_table_lists_on_their_node_below_the_counter_are_orphans() {
        let mut creating = table("new", &[7, 8]);
        creating.status = TableStatus::Creating;
        let mut deleting = table("old", &[3]);
        deleting.status = TableStatus::Deleting;
        let mut live = table("live", &[1, 2]);
        live.replica_moves.insert(
            2,
            crate::metadata::ReplicaMoveRecord {
                id: 1,
                source: 1,
                target: 4,
                source_dead: false,
                target_routed: false,
            },
        );
        let tables = [live, creating, deleting];
        let on_nodes = [
            hosted(1, 0),  // the metadata group
            hosted(1, 1),  // a live table's
            hosted(2, 3),  // a table being deleted: its deletion removes it
            hosted(2, 4),  // of no table: orphaned
            hosted(3, 4),  // the same partition on another node
            hosted(3, 7),  // a table being created
            hosted(3, 9),  // of no table: orphaned
            hosted(3, 10), // at the counter: never reserved here, left alone
            hosted(3, 12), // past the counter
            hosted(4, 1),  // a live table's partition on a node it does not list: moved away
            hosted(4, 2),  // the target of a move under way
        ];
        let metadata_listed = BTreeSet::from([1, 2, 3]);
        let orphans = orphan_replicas(&on_nodes, &tables, 10, &metadata_listed);
        assert_eq!(
            orphans,
            BTreeSet::from([hosted(2, 4), hosted(3, 4), hosted(3, 9), hosted(4, 1)])
        );
        // Without a counter item, nothing was ever reserved: no data replica is an orphan.
        assert!(
            orphan_replicas(
                &on_nodes,
                &tables,
                crate::metadata::FIRST_DATA_PARTITION,
                &metadata_listed
            )
            .is_empty()
        );
        // The metadata group moved from node 1 to node 4 while node 1 was down: node 1's
        // replica of it is an orphan, node 4's (listed, or the move's target) is not. With
        // nothing listed (never the case once read), none is.
        let metadata_replicas = [hosted(1, 0), hosted(4, 0)];
        assert_eq!(
            orphan_replicas(&metadata_replicas, &[], 10, &BTreeSet::from([2, 3, 4])),
            BTreeSet::from([hosted(1, 0)])
        );
        assert!(
            orphan_replicas(&metadata_replicas, &[], 10, &BTreeSet::from([1, 2, 3, 4])).is_empty()
        );
        assert!(orphan_replicas(&metadata_replicas, &[], 10, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn listed_replicas_an_answering_shard_does_not_host_are_missing() {
        let status = |partition| shoal_wire::messages::ReplicaStatus {
            partition,
            epoch: 1,
            role: shoal_wire::messages::ReplicaRole::Follower,
            leader_hint: None,
            commit_slot: 0,
            applied_slot: 0,
            item_count: 0,
            item_bytes: 0,
            local_indexes: Vec::new(),
        };
        let report = |node, replicas: Option<Vec<u64>>| ShardReport {
            node,
            shard: 0,
            replicas: replicas.map(|ids| ids.into_iter().map(status).collect()),
        };
        let mut live = table("live", &[1, 2]);
        live.pending_replicas.insert((2, 2));
        let mut creating = table("new", &[7]);
        creating.status = TableStatus::Creating;
        let reports = [
            report(1, Some(vec![0, 1, 2])),
            // Node 2 lost partition 1; partition 2 is pending there (not created yet).
            report(2, Some(vec![])),
            // Node 3 did not answer: nothing is known of it.
            report(3, None),
        ];
        let missing = missing_replicas(&reports, &[live.clone(), creating.clone()], &[]);
        assert_eq!(missing, BTreeSet::from([hosted(2, 1)]));
        // The metadata group on nodes 1, 2 and 3: node 2 answered without its replica.
        let missing = missing_replicas(&reports, &[live, creating], &[1, 2, 3]);
        assert_eq!(missing, BTreeSet::from([hosted(2, 1), hosted(2, 0)]));
    }

    #[test]
    fn an_orphan_is_due_only_after_its_grace_in_consecutive_scans() {
        let grace = Duration::from_secs(60);
        let start = Instant::now();
        let mut seen = BTreeMap::new();
        let both = BTreeSet::from([hosted(1, 4), hosted(2, 5)]);
        assert!(orphans_due(&mut seen, &both, start, grace).is_empty());
        let later = start + Duration::from_secs(30);
        assert!(orphans_due(&mut seen, &both, later, grace).is_empty());
        // Partition 5 is listed again (or its node did not answer): it is forgotten, and its
        // grace starts over when it is an orphan again.
        let one = BTreeSet::from([hosted(1, 4)]);
        let due = orphans_due(&mut seen, &one, start + grace, grace);
        assert_eq!(due, vec![hosted(1, 4)]);
        let due = orphans_due(&mut seen, &both, start + grace * 2, grace);
        assert_eq!(due, vec![hosted(1, 4)], "partition 5 restarted its grace");
        let due = orphans_due(&mut seen, &both, start + grace * 3, grace);
        assert_eq!(due, vec![hosted(1, 4), hosted(2, 5)]);
        assert!(orphans_due(&mut seen, &BTreeSet::new(), start + grace * 4, grace).is_empty());
        assert!(seen.is_empty(), "bounded by what the last scan found");
    }

    #[test]
    fn a_step_is_stale_by_the_writers_clock_or_by_our_own_observation() {
        let timeout = Duration::from_secs(15);
        let now = Instant::now();
        let wall_ms = 1_700_000_000_000;
        // Written 20 s ago by the writer's clock: stale at first sight (a restarted router
        // takes over at once).
        assert!(step_stale(wall_ms - 20_000, wall_ms, now, now, timeout));
        // Written 5 s ago, first seen now: not stale.
        assert!(!step_stale(wall_ms - 5_000, wall_ms, now, now, timeout));
        // A writer whose clock runs ahead of ours: stale once we have seen the same revision
        // for the timeout ourselves.
        let ahead = wall_ms + 3_600_000;
        assert!(!step_stale(ahead, wall_ms, now, now, timeout));
        assert!(step_stale(ahead, wall_ms, now, now + timeout, timeout));
    }
}
