//! Partition splits in the autoadmin (issue 19): the split-for-size policy, and the driver of
//! the shared step machine (shoal_autoadmin::split) over the bus.
//!
//! - **Policy.** At each balance check of a healthy cluster (every node answering, nothing
//!   down or draining), the active autoadmin asks every shard for its replicas' status; a
//!   table partition whose leader reports at least [`RouterConfig::split_bytes`] of items is
//!   split at the middle of its hash range. Keys are placed by a 64-bit hash, so the middle of
//!   the range divides the items evenly but for chance; one partition key's items (an item
//!   collection) share a hash and can never be divided: a child that kept
//!   [`SPLIT_INDIVISIBLE_PERCENT`] of its parent's bytes is not split for size again. A
//!   partition with a replica move, replicas pending creation or a split under way is left
//!   alone. The partitions of an ACTIVE global secondary index split like the table's (an
//!   index entry's key starts with its own hash, like an item's); those of an index being
//!   created or deleted do not. A partition whose replicas together answered
//!   with more than [`RouterConfig::split_read_units_per_second`] or
//!   [`RouterConfig::split_write_units_per_second`] over their last 10 s
//!   (`NodeRequest::Loads`), at [`RouterConfig::split_traffic_checks`] balance checks in a
//!   row, is split for traffic, at the cut that balances the key hashes its leader sampled,
//!   unless one key draws [`SPLIT_SINGLE_KEY_PERMILLE`] of them. At most
//!   [`SPLITS_STARTED_PER_PASS_MAX`] start per pass, size splits first.
//! - **Record first** (metadata invariant 8): the children's ids are reserved from the
//!   partition counter and the split is written into the table item, conditional on its
//!   revision, before any node is asked.
//! - **Drive** (shoal_autoadmin::split's steps): every request is idempotent, so a driver that
//!   dies leaves a record that the next pass of the active autoadmin resumes. A driver acts
//!   only while the record it drives still carries its id (fencing, as for moves).
//! - **Refused**: a parent whose leader refuses the split (it holds a stream's records, GSI
//!   changes not yet propagated, or prepared transactions) has its record dropped, and is not
//!   planned again for [`SPLIT_REFUSED_BACKOFF`].

use super::*;
use crate::metadata::PartitionSplitRecord;
use crate::partition_map::HashRange;
use shoal_autoadmin::split::{HostedView, PartitionSplit, Progress, SplitAction};
use shoal_wire::messages::{ReplicaLoad, ReplicaRole, SplitChildWire};

/// DynamoDB's partitions hold up to 10 GB; a partition past this size is split.
pub const SPLIT_BYTES_DEFAULT: u64 = 10 << 30;
/// New splits recorded per autoadmin pass at most: each copies its parent's data on every one
/// of its nodes, so a cluster that crossed the threshold everywhere at once splits in waves.
pub const SPLITS_STARTED_PER_PASS_MAX: usize = 4;
/// One pass drives each split for this long at most; an unfinished split resumes at the next
/// pass from its record.
const SPLIT_DRIVE_MAX: Duration = Duration::from_secs(20);
/// A step refused for now (no leader yet, a child not built yet) is asked again after this
/// long: the parent's writes pause from its freezing until its children are routed, so the
/// driver watches closely.
const SPLIT_RETRY_INTERVAL: Duration = Duration::from_millis(10);
/// Once the children are routed nothing waits on the parent's deletion: a node it waits for
/// (silent, or still building) is watched again after this long, each time with a read of the
/// table item, rather than at [`SPLIT_RETRY_INTERVAL`].
const SPLIT_DELETE_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// A partition whose split its leader refused is not planned again for this long.
pub const SPLIT_REFUSED_BACKOFF: Duration = Duration::from_secs(60);
/// A partition sustaining this many read units per second (80% of DynamoDB's per-partition
/// ceiling, 3,000) is split for traffic, unless set (`shoal router --split-read-units`).
pub const SPLIT_READ_UNITS_DEFAULT: u64 =
    shoal_admission::PARTITION_READ_UNITS_PER_SECOND_MAX * 4 / 5;
/// The same for write units (80% of 1,000), unless set (`shoal router --split-write-units`).
pub const SPLIT_WRITE_UNITS_DEFAULT: u64 =
    shoal_admission::PARTITION_WRITE_UNITS_PER_SECOND_MAX * 4 / 5;
/// Consecutive balance checks (10 s apart, each reading the replicas' last 10 s) a partition
/// must be found hot at before it is split for traffic: about half a minute of sustained
/// load, not a burst. Unless set (`RouterConfig::split_traffic_checks`).
pub const SPLIT_TRAFFIC_CHECKS_DEFAULT: u32 = 3;
/// A split for size that leaves at least this share (percent) of its parent's bytes in one
/// child moved next to nothing: the parent's items were mostly one item collection (one
/// partition key's items share a hash, and no cut divides them). That child is not split for
/// size again, where halving its range again and again would only make empty partitions.
pub const SPLIT_INDIVISIBLE_PERCENT: u64 = 95;

/// A hot partition one of whose keys draws at least this share (thousandths) of its sampled
/// requests is not split for traffic: the hot item (or item collection) would stay as hot in
/// one child (the DynamoDB paper, section 4.1).
pub const SPLIT_SINGLE_KEY_PERMILLE: u16 = 500;

/// A split being driven: its machine, and what fences it.
struct DrivenSplit {
    table: String,
    incarnation: Option<u64>,
    record_id: u64,
    shard: u16,
    machine: PartitionSplit,
}

impl DrivenSplit {
    /// A step failed (the metadata group out of reach, its item contended): logged, and the
    /// next pass resumes the split.
    fn unfinished(&self, error: &DynamoError) -> SplitOutcome {
        tracing::warn!(
            table = %self.table,
            partition = self.machine.parent,
            step = ?self.machine.step(),
            %error.message,
            "autoadmin: a split step failed; the next pass resumes it"
        );
        SplitOutcome::Unfinished
    }
}

/// How driving one split ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SplitOutcome {
    Finished,
    /// Out of time, or a step failed: the next pass resumes it.
    Unfinished,
    /// Its parent's leader refused it; the record is dropped.
    Refused,
    /// Its record changed under the driver (another router took it over, the table went).
    Superseded,
}

/// What the split work of one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SplitReport {
    pub started: usize,
    pub finished: usize,
    pub unfinished: usize,
    pub refused: usize,
}

/// The cut of a split of `range`: its middle, so that both children are non-empty; `None` for
/// a range of one hash.
pub fn split_point(range: HashRange) -> Option<u64> {
    (range.last > range.first).then(|| range.first + (range.last - range.first) / 2 + 1)
}

/// Whether `at_hash` cuts `range` into two non-empty children (it is the right child's first
/// hash).
fn cuts(range: HashRange, at_hash: u64) -> bool {
    at_hash > range.first && at_hash <= range.last
}

/// Why a partition is split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SplitReason {
    /// Its items reached `RouterConfig::split_bytes`: cut in the middle of its hash range.
    Size,
    /// Its traffic stayed past the thresholds: cut where its sampled requests balance.
    Traffic,
}

/// One partition's traffic: its replicas' reports (`NodeRequest::Loads`) added up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionLoad {
    pub read_milli_per_second: u64,
    pub write_milli_per_second: u64,
    /// The cut balancing the sample of the replica that answered the most units (the leader,
    /// which answers every write and strong read; only a leader samples), and its most
    /// frequent key's share.
    pub cut: Option<u64>,
    pub top_key_permille: u16,
    /// The units that replica answered per second (thousandths), and its sample's size.
    sampler: (u64, u32),
}

/// Adds up each partition's replicas' loads.
pub fn partition_loads<'a>(
    replicas: impl IntoIterator<Item = &'a ReplicaLoad>,
) -> BTreeMap<u64, PartitionLoad> {
    let mut loads: BTreeMap<u64, PartitionLoad> = BTreeMap::new();
    for replica in replicas {
        let load = loads.entry(replica.partition).or_default();
        load.read_milli_per_second = load
            .read_milli_per_second
            .saturating_add(replica.read_milli_per_second);
        load.write_milli_per_second = load
            .write_milli_per_second
            .saturating_add(replica.write_milli_per_second);
        let answered = replica
            .read_milli_per_second
            .saturating_add(replica.write_milli_per_second);
        if replica.samples > 0 && (answered, replica.samples) > load.sampler {
            load.sampler = (answered, replica.samples);
            load.cut = replica.cut;
            load.top_key_permille = replica.top_key_permille;
        }
    }
    loads
}

/// What a balance check gathered for the split policy.
#[derive(Debug, Default)]
pub(super) struct SplitInputs {
    /// Each partition's leader's item bytes.
    pub sizes: BTreeMap<u64, u64>,
    /// Each partition's traffic (empty when traffic splits are off).
    pub loads: BTreeMap<u64, PartitionLoad>,
}

impl Router {
    /// Whether the autoadmin splits anything: for size, for traffic, or both.
    pub(super) fn splits_on(&self) -> bool {
        self.config.split_bytes > 0 || self.traffic_splits_on()
    }

    fn traffic_splits_on(&self) -> bool {
        self.config.split_read_units_per_second > 0 || self.config.split_write_units_per_second > 0
    }

    /// Each partition's weight for balance (shoal_autoadmin::policy, invariant 14): its
    /// leader's item bytes as thousandths of the split threshold (of its default when splits
    /// are off: weights compare nodes, whether or not partitions split). Traffic is not
    /// weighed: a 10 s rate moves with every burst, while a move copies up to a whole
    /// partition; leader balance and splits for traffic spread the load instead.
    pub(super) fn partition_weights(&self, sizes: &BTreeMap<u64, u64>) -> BTreeMap<u64, u64> {
        let split_bytes = match self.config.split_bytes {
            0 => SPLIT_BYTES_DEFAULT,
            bytes => bytes,
        };
        sizes
            .iter()
            .map(|(partition, bytes)| {
                let share = u128::from(*bytes) * 1000 / u128::from(split_bytes);
                (*partition, u64::try_from(share).unwrap_or(u64::MAX))
            })
            .collect()
    }

    /// What the split policy reads at a balance check: the leaders' sizes (from the shard
    /// reports the check gathered) and, when traffic splits are on, every replica's load.
    pub(super) async fn split_inputs(
        &self,
        cluster: &ClusterRecord,
        sizes: BTreeMap<u64, u64>,
    ) -> SplitInputs {
        let loads = if self.traffic_splits_on() {
            let calls: Vec<_> = cluster
                .nodes
                .iter()
                .flat_map(|node| (0..cluster.shards_per_node).map(move |shard| (node.id, shard)))
                .map(|(node, shard)| async move {
                    match self
                        .forwarder
                        .call_once(node, shard, NodeRequest::Loads)
                        .await
                    {
                        Ok(NodeResponse::Loads { replicas, .. }) => replicas,
                        outcome => {
                            tracing::debug!(
                                node,
                                shard,
                                ?outcome,
                                "a shard did not report its loads"
                            );
                            Vec::new()
                        }
                    }
                })
                .collect();
            let reports = join_bounded(calls, super::repair::SHARD_REPORTS_IN_FLIGHT_MAX).await;
            partition_loads(reports.iter().flatten())
        } else {
            BTreeMap::new()
        };
        SplitInputs { sizes, loads }
    }

    /// The splits under way in `tables` (resumed) and new ones for partitions past the size
    /// or traffic thresholds, as `inputs` shows them, all driven until they end or
    /// [`SPLIT_DRIVE_MAX`] passes. `inputs` is `None` when this pass did not gather them (no
    /// balance check): then only splits under way are driven.
    pub(super) async fn run_splits(
        &self,
        tables: &[&TableRecord],
        inputs: Option<&SplitInputs>,
        down: &BTreeSet<NodeId>,
    ) -> SplitReport {
        let mut report = SplitReport::default();
        let mut driven: Vec<DrivenSplit> = tables
            .iter()
            .flat_map(|table| {
                table
                    .partition_splits
                    .iter()
                    .map(|(parent, record)| driven_split(table, *parent, record))
            })
            .collect();
        if let Some(inputs) = inputs
            && self.splits_on()
        {
            let planned = self.plan_splits(tables, inputs);
            for (table, parent, at_hash, reason) in planned {
                match self.record_new_split(table, parent, at_hash).await {
                    Ok(Some(split)) => {
                        if reason == SplitReason::Size {
                            self.autoadmin_splits.size_splits.borrow_mut().insert(
                                parent,
                                SizeSplit {
                                    left: split.machine.left.partition,
                                    right: split.machine.right.partition,
                                    parent_bytes: inputs.sizes.get(&parent).copied().unwrap_or(0),
                                },
                            );
                        }
                        report.started += 1;
                        self.metrics.note_autoadmin(match reason {
                            SplitReason::Size => "split_started",
                            SplitReason::Traffic => "split_started_for_traffic",
                        });
                        tracing::info!(
                            table = %table.name,
                            partition = parent,
                            left = split.machine.left.partition,
                            right = split.machine.right.partition,
                            at_hash = split.machine.at_hash,
                            ?reason,
                            "autoadmin: splitting a partition past the size or traffic threshold"
                        );
                        driven.push(split);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(table = %table.name, partition = parent, %error.message, "autoadmin: a split was not recorded");
                    }
                }
            }
        }
        let calls: Vec<_> = driven
            .into_iter()
            .map(|split| self.drive_split(split, down))
            .collect();
        for outcome in join_bounded(calls, SPLITS_STARTED_PER_PASS_MAX).await {
            match outcome {
                SplitOutcome::Finished => {
                    report.finished += 1;
                    self.metrics.note_autoadmin("split_finished");
                }
                SplitOutcome::Unfinished => report.unfinished += 1,
                SplitOutcome::Refused => {
                    report.refused += 1;
                    self.metrics.note_autoadmin("split_refused");
                }
                SplitOutcome::Superseded => {}
            }
        }
        report
    }

    /// The partitions to split now (module docs, "Policy"): those past the size threshold,
    /// largest first, cut in the middle; then those hot for long enough, hottest first, cut
    /// where their traffic balances. Each with its cut and why.
    fn plan_splits<'a>(
        &self,
        tables: &[&'a TableRecord],
        inputs: &SplitInputs,
    ) -> Vec<(&'a TableRecord, u64, u64, SplitReason)> {
        let now = Instant::now();
        self.autoadmin_splits
            .refused
            .borrow_mut()
            .retain(|_, since| now.duration_since(*since) < SPLIT_REFUSED_BACKOFF);
        let refused = self.autoadmin_splits.refused.borrow();
        let refused = &*refused;
        let eligible: Vec<(&'a TableRecord, &'a PartitionEntry)> = tables
            .iter()
            .filter(|table| table.status == TableStatus::Active)
            .flat_map(|table| {
                splittable_partitions(table)
                    .filter(move |partition| {
                        !(table.replica_moves.contains_key(&partition.id)
                            || in_a_split(table, partition.id)
                            || table
                                .pending_replicas
                                .iter()
                                .any(|(pending, _)| *pending == partition.id)
                            || refused.contains_key(&partition.id))
                    })
                    .map(move |partition| (*table, partition))
            })
            .collect();
        let mut planned: Vec<(&'a TableRecord, u64, u64, SplitReason)> = Vec::new();
        self.note_indivisible_children(tables, &inputs.sizes);
        let indivisible = self.autoadmin_splits.indivisible.borrow();
        let watched = self.autoadmin_splits.size_splits.borrow();
        if self.config.split_bytes > 0 {
            let mut by_size: Vec<(u64, &'a TableRecord, &'a PartitionEntry, u64)> = eligible
                .iter()
                .filter_map(|(table, partition)| {
                    let bytes = *inputs.sizes.get(&partition.id)?;
                    // Marked, or a child of a size split not judged yet (its sizes may show it
                    // kept nearly all of the bytes).
                    if indivisible.contains(&partition.id)
                        || watched
                            .values()
                            .any(|split| [split.left, split.right].contains(&partition.id))
                    {
                        return None;
                    }
                    let at_hash = split_point(partition.range)?;
                    (bytes >= self.config.split_bytes)
                        .then_some((bytes, *table, *partition, at_hash))
                })
                .collect();
            by_size.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.id.cmp(&b.2.id)));
            planned.extend(by_size.into_iter().map(|(_, table, partition, at_hash)| {
                (table, partition.id, at_hash, SplitReason::Size)
            }));
        }
        let by_traffic = self.plan_traffic_splits(&eligible, &inputs.loads);
        // A partition past the size threshold is split for that, in the middle, once.
        let by_traffic: Vec<_> = by_traffic
            .into_iter()
            .filter(|(_, partition, _, _)| {
                !planned.iter().any(|(_, sized, _, _)| sized == partition)
            })
            .collect();
        planned.extend(by_traffic);
        planned.truncate(SPLITS_STARTED_PER_PASS_MAX);
        planned
    }

    /// Judges the size splits this router started whose children are both routed and both
    /// report a size now: a child holding [`SPLIT_INDIVISIBLE_PERCENT`] of its parent's bytes
    /// is remembered as not to be split for size (its items are mostly one item collection).
    /// A split is watched for as long as its record or a child is in a table (a refused or
    /// abandoned one leaves neither); marks of partitions no table routes are forgotten.
    fn note_indivisible_children(&self, tables: &[&TableRecord], sizes: &BTreeMap<u64, u64>) {
        let routed = |partition: u64| {
            tables
                .iter()
                .any(|table| table.all_partitions().any(|entry| entry.id == partition))
        };
        let recorded = |parent: u64| {
            tables
                .iter()
                .any(|table| table.partition_splits.contains_key(&parent))
        };
        let mut watched = self.autoadmin_splits.size_splits.borrow_mut();
        let mut indivisible = self.autoadmin_splits.indivisible.borrow_mut();
        watched.retain(|parent, split| {
            let judged = routed(split.left) && routed(split.right);
            let (Some(left), Some(right), true) =
                (sizes.get(&split.left), sizes.get(&split.right), judged)
            else {
                return recorded(*parent) || routed(split.left) || routed(split.right);
            };
            if let Some(heavy) = heavy_child(split, *left, *right) {
                tracing::info!(
                    partition = *parent,
                    child = heavy,
                    parent_bytes = split.parent_bytes,
                    "autoadmin: a size split moved next to nothing (one item collection holds \
                     the partition's items); that child is not split for size again"
                );
                self.metrics.note_autoadmin("split_indivisible");
                indivisible.insert(heavy);
            }
            false
        });
        indivisible.retain(|partition| routed(*partition));
    }

    /// The partitions found hot at [`RouterConfig::split_traffic_checks`] balance checks in a
    /// row (this one included), hottest first, with the cut their traffic balances at. A
    /// partition whose traffic is mostly one key's is not split (it is logged and counted).
    /// "In a row" counts the checks that gathered loads: one that found the partition cool,
    /// not eligible (a move, a refused split's backoff) or without a report starts it again;
    /// a pass that gathers nothing (moves under way) neither counts nor resets it.
    fn plan_traffic_splits<'a>(
        &self,
        eligible: &[(&'a TableRecord, &'a PartitionEntry)],
        loads: &BTreeMap<u64, PartitionLoad>,
    ) -> Vec<(&'a TableRecord, u64, u64, SplitReason)> {
        let read_limit = self.config.split_read_units_per_second.saturating_mul(1000);
        let write_limit = self
            .config
            .split_write_units_per_second
            .saturating_mul(1000);
        let mut hot_checks = self.autoadmin_splits.hot_checks.borrow_mut();
        let previous = std::mem::take(&mut *hot_checks);
        let mut hot: Vec<(u64, &'a TableRecord, u64, u64)> = Vec::new();
        for (table, partition) in eligible {
            let Some(load) = loads.get(&partition.id) else {
                continue;
            };
            let over_reads = read_limit > 0 && load.read_milli_per_second >= read_limit;
            let over_writes = write_limit > 0 && load.write_milli_per_second >= write_limit;
            if !over_reads && !over_writes {
                continue;
            }
            let checks = previous.get(&partition.id).copied().unwrap_or(0) + 1;
            hot_checks.insert(partition.id, checks);
            if checks < self.config.split_traffic_checks {
                continue;
            }
            if load.top_key_permille >= SPLIT_SINGLE_KEY_PERMILLE {
                if checks == self.config.split_traffic_checks {
                    self.metrics.note_autoadmin("split_skipped_single_hot_key");
                    tracing::info!(
                        table = %table.name,
                        partition = partition.id,
                        share_permille = load.top_key_permille,
                        "autoadmin: a hot partition is not split: most of its traffic is to one key"
                    );
                }
                continue;
            }
            let Some(at_hash) = load.cut.filter(|cut| cuts(partition.range, *cut)) else {
                continue;
            };
            // Reads and writes each as thousandths of their threshold, so the hottest goes
            // first (a threshold of 0 is off and counts nothing).
            let share =
                |rate: u64, limit: u64| rate.saturating_mul(1000).checked_div(limit).unwrap_or(0);
            let heat = share(load.read_milli_per_second, read_limit)
                .max(share(load.write_milli_per_second, write_limit));
            hot.push((heat, *table, partition.id, at_hash));
        }
        hot.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)));
        hot.into_iter()
            .map(|(_, table, partition, at_hash)| (table, partition, at_hash, SplitReason::Traffic))
            .collect()
    }

    /// Reserves two partition ids and writes the split of `parent` into `table`'s item, if
    /// the item still allows it (module docs, "Policy"). Returns the split to drive, or `None`
    /// when it was not recorded.
    async fn record_new_split(
        &self,
        table: &TableRecord,
        parent: u64,
        at_hash: u64,
    ) -> Result<Option<DrivenSplit>, DynamoError> {
        let deadline = Instant::now() + CONTROL_DEADLINE;
        let first_child = self
            .metadata
            .allocate_partition_ids(&self.forwarder, 2, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        let incarnation = table.incarnation();
        let id = super::autoadmin::new_record_id();
        let written = Cell::new(None);
        let current = self
            .change_table(
                &table.name,
                || DynamoError::table_not_found(&table.name),
                |current| {
                    written.set(None);
                    if current.status != TableStatus::Active
                        || current.incarnation() != incarnation
                        || current.replica_moves.contains_key(&parent)
                        || in_a_split(current, parent)
                        || current
                            .pending_replicas
                            .iter()
                            .any(|(pending, _)| *pending == parent)
                    {
                        return Ok(None);
                    }
                    let Some(entry) =
                        splittable_partitions(current).find(|entry| entry.id == parent)
                    else {
                        return Ok(None);
                    };
                    if !cuts(entry.range, at_hash) {
                        return Ok(None);
                    }
                    let record = PartitionSplitRecord {
                        id,
                        parent_epoch: entry.epoch,
                        range: entry.range,
                        shard: entry.shard,
                        replicas: entry.replicas.clone(),
                        at_hash,
                        left: first_child,
                        right: first_child + 1,
                        epoch: entry.epoch + 1,
                        routed: false,
                    };
                    let mut changed = current.clone();
                    changed.partition_splits.insert(parent, record.clone());
                    written.set(Some(record));
                    Ok(Some(changed))
                },
                || control::table_in_use(&table.name, "updated"),
            )
            .await?;
        let Some(record) = written.take() else {
            return Ok(None);
        };
        Ok(Some(driven_split(&current, parent, &record)))
    }

    /// Whether `split`'s record is still in its table, with its id (read strongly now), and
    /// the record as it is.
    async fn split_record_if_ours(
        &self,
        split: &DrivenSplit,
    ) -> Result<Option<PartitionSplitRecord>, DynamoError> {
        let deadline = Instant::now() + CONTROL_DEADLINE;
        Ok(self
            .read_table(&split.table, deadline)
            .await?
            .filter(|table| {
                table.status == TableStatus::Active && table.incarnation() == split.incarnation
            })
            .and_then(|table| table.partition_splits.get(&split.machine.parent).cloned())
            .filter(|record| record.id == split.record_id))
    }

    /// Changes `split`'s record by `edit` (on a copy of the table), if it is still the one
    /// this driver drives. `Ok(false)` when it is not.
    async fn change_split_record(
        &self,
        split: &DrivenSplit,
        edit: impl Fn(&mut TableRecord, &PartitionSplitRecord),
    ) -> Result<bool, DynamoError> {
        let ours = Cell::new(false);
        let parent = split.machine.parent;
        let changed = self
            .change_table(
                &split.table,
                || DynamoError::table_not_found(&split.table),
                |current| {
                    let record = current
                        .partition_splits
                        .get(&parent)
                        .filter(|record| record.id == split.record_id)
                        .filter(|_| {
                            current.status == TableStatus::Active
                                && current.incarnation() == split.incarnation
                        })
                        .cloned();
                    ours.set(record.is_some());
                    let Some(record) = record else {
                        return Ok(None);
                    };
                    let mut changed = current.clone();
                    edit(&mut changed, &record);
                    Ok((changed != *current).then_some(changed))
                },
                || control::table_in_use(&split.table, "updated"),
            )
            .await;
        match changed {
            Ok(_) => Ok(ours.get()),
            Err(error) if error.type_name == crate::error::RESOURCE_NOT_FOUND => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// What each of `nodes`' shard `shard` hosts and leads of the split's partitions.
    async fn watch_split(
        &self,
        split: &DrivenSplit,
        nodes: &[NodeId],
    ) -> BTreeMap<NodeId, Option<HostedView>> {
        let wanted = [
            split.machine.parent,
            split.machine.left.partition,
            split.machine.right.partition,
        ];
        let calls: Vec<_> = nodes
            .iter()
            .map(|node| async move {
                let view = match self
                    .forwarder
                    .call_once(*node, split.shard, NodeRequest::Status)
                    .await
                {
                    Ok(NodeResponse::Status { replicas, .. }) => {
                        let mut view = HostedView::default();
                        for replica in replicas
                            .iter()
                            .filter(|replica| wanted.contains(&replica.partition))
                        {
                            view.hosted.insert(replica.partition);
                            if matches!(
                                replica.role,
                                ReplicaRole::Leader | ReplicaRole::LeaderWithLease
                            ) {
                                view.leading.insert(replica.partition);
                            }
                        }
                        Some(view)
                    }
                    _ => None,
                };
                (*node, view)
            })
            .collect();
        join_bounded(calls, SPLIT_WATCH_IN_FLIGHT_MAX)
            .await
            .into_iter()
            .collect()
    }

    /// Drives one split for up to [`SPLIT_DRIVE_MAX`] (module docs). `down`: the nodes the
    /// autoadmin counts down, which the parent's deletion does not wait for.
    async fn drive_split(&self, mut split: DrivenSplit, down: &BTreeSet<NodeId>) -> SplitOutcome {
        let started = Instant::now();
        let mut fenced_at = None;
        while started.elapsed() < SPLIT_DRIVE_MAX {
            // A long drive keeps the autoadmin lease; one that lost it leaves the split to the
            // holder, so that two drivers never act on one record at once.
            if !matches!(self.keep_autoadmin_lease().await, Ok(true)) {
                return SplitOutcome::Unfinished;
            }
            let action = split.machine.action();
            // Fencing: before asking a node to act, the record must still be this driver's
            // (re-read when the step changed or a second passed).
            let step = split.machine.step();
            let fence_due = fenced_at
                .is_none_or(|(at, when): (_, Instant)| at != step || when.elapsed() >= FENCE);
            if matches!(action, SplitAction::Ask { .. }) && fence_due {
                match self.split_record_if_ours(&split).await {
                    Ok(Some(_)) => fenced_at = Some((step, Instant::now())),
                    Ok(None) => return SplitOutcome::Superseded,
                    Err(error) => return split.unfinished(&error),
                }
            }
            match action {
                SplitAction::Ask { node, request } => {
                    match self.forwarder.call_once(node, split.shard, request).await {
                        Ok(response) => match split.machine.answered(node, response) {
                            Ok(Progress::Advanced) => {}
                            Ok(Progress::AskAgain) => {
                                glommio::timer::sleep(SPLIT_RETRY_INTERVAL).await;
                            }
                            Ok(Progress::Refused) => {
                                self.autoadmin_splits
                                    .refused
                                    .borrow_mut()
                                    .insert(split.machine.parent, Instant::now());
                                tracing::info!(table = %split.table, partition = split.machine.parent, "autoadmin: the partition's leader refused the split (stream records, GSI changes not yet propagated, or prepared transactions); it is dropped for now");
                                return match self
                                    .change_split_record(&split, |table, _| {
                                        table.partition_splits.remove(&split.machine.parent);
                                    })
                                    .await
                                {
                                    Ok(true) => SplitOutcome::Refused,
                                    Ok(false) => SplitOutcome::Superseded,
                                    Err(error) => split.unfinished(&error),
                                };
                            }
                            Err(unexpected) => {
                                tracing::warn!(table = %split.table, ?unexpected, "autoadmin: a split step got an unexpected answer; the next pass asks again");
                                return SplitOutcome::Unfinished;
                            }
                        },
                        Err(_) => {
                            split.machine.unanswered(node);
                            glommio::timer::sleep(SPLIT_RETRY_INTERVAL).await;
                        }
                    }
                }
                SplitAction::Watch { nodes } => {
                    let reports = self.watch_split(&split, &nodes).await;
                    // Not waited for: nodes down, and nodes a routed child is no longer listed
                    // on (re-replication moved it away; they will never host it again).
                    let mut gone = down.clone();
                    if split.machine.step() == shoal_autoadmin::split::SplitStep::DeleteParent {
                        match self
                            .read_table(&split.table, Instant::now() + CONTROL_DEADLINE)
                            .await
                        {
                            Ok(Some(table)) => {
                                let children = [split.machine.left, split.machine.right];
                                for node in &split.machine.replicas {
                                    let listed_on_both = children.iter().all(|child| {
                                        table.all_partitions().any(|entry| {
                                            entry.id == child.partition
                                                && entry.replicas.contains(node)
                                        })
                                    });
                                    if !listed_on_both {
                                        gone.insert(*node);
                                    }
                                }
                            }
                            Ok(None) => return SplitOutcome::Superseded,
                            Err(error) => return split.unfinished(&error),
                        }
                    }
                    let (progress, to_delete) = split.machine.watched(&reports, &gone);
                    if !to_delete.is_empty() {
                        match self.split_record_if_ours(&split).await {
                            Ok(Some(_)) => {}
                            Ok(None) => return SplitOutcome::Superseded,
                            Err(error) => return split.unfinished(&error),
                        }
                        let request = split.machine.delete_parent_request();
                        let mut all_deleted = true;
                        for node in to_delete {
                            let answer = self
                                .forwarder
                                .call_once(node, split.shard, request.clone())
                                .await;
                            all_deleted &= matches!(answer, Ok(NodeResponse::Deleted));
                        }
                        if all_deleted {
                            split.machine.parent_deleted();
                        } else {
                            glommio::timer::sleep(SPLIT_RETRY_INTERVAL).await;
                        }
                    } else if progress == Progress::AskAgain {
                        let pause = if split.machine.step()
                            == shoal_autoadmin::split::SplitStep::DeleteParent
                        {
                            SPLIT_DELETE_RETRY_INTERVAL
                        } else {
                            SPLIT_RETRY_INTERVAL
                        };
                        glommio::timer::sleep(pause).await;
                    }
                }
                SplitAction::Route => {
                    let parent = split.machine.parent;
                    let routed = self
                        .change_split_record(&split, |table, record| {
                            route_children(table, parent, record);
                        })
                        .await;
                    match routed {
                        Ok(true) => {
                            tracing::info!(table = %split.table, partition = parent, "autoadmin: a split's children are routed");
                            split.machine.recorded();
                        }
                        Ok(false) => return SplitOutcome::Superseded,
                        Err(error) => return split.unfinished(&error),
                    }
                }
                SplitAction::Forget => {
                    let parent = split.machine.parent;
                    match self
                        .change_split_record(&split, |table, _| {
                            table.partition_splits.remove(&parent);
                        })
                        .await
                    {
                        Ok(true) => split.machine.recorded(),
                        Ok(false) => return SplitOutcome::Superseded,
                        Err(error) => return split.unfinished(&error),
                    }
                }
                SplitAction::Done => {
                    tracing::info!(table = %split.table, partition = split.machine.parent, "autoadmin: a split finished");
                    return SplitOutcome::Finished;
                }
            }
        }
        tracing::info!(
            table = %split.table,
            partition = split.machine.parent,
            step = ?split.machine.step(),
            "autoadmin: a split is still under way; the next pass resumes it"
        );
        SplitOutcome::Unfinished
    }
}

/// `Status` calls in flight at once while a split watches its nodes.
const SPLIT_WATCH_IN_FLIGHT_MAX: usize = 8;
/// A driver re-reads its record before asking a node at least this often within one step.
const FENCE: Duration = Duration::from_secs(1);

/// What the autoadmin remembers about splits between passes.
#[derive(Debug, Default)]
pub(super) struct SplitMemory {
    /// Partitions whose leader refused a split lately, and when.
    refused: RefCell<BTreeMap<u64, Instant>>,
    /// Partitions found hot at the last balance check, and at how many checks in a row.
    hot_checks: RefCell<BTreeMap<u64, u32>>,
    /// Size splits this router started, by parent, until both children report their sizes.
    size_splits: RefCell<BTreeMap<u64, SizeSplit>>,
    /// Children that a size split could not divide: not split for size again.
    indivisible: RefCell<BTreeSet<u64>>,
}

/// A size split being watched for [`SPLIT_INDIVISIBLE_PERCENT`].
#[derive(Debug)]
struct SizeSplit {
    left: u64,
    right: u64,
    /// The parent's item bytes when the split was planned.
    parent_bytes: u64,
}

/// The child of `split` still holding [`SPLIT_INDIVISIBLE_PERCENT`] of its parent's bytes,
/// if one does.
fn heavy_child(split: &SizeSplit, left_bytes: u64, right_bytes: u64) -> Option<u64> {
    let (heavy, bytes) = if left_bytes >= right_bytes {
        (split.left, left_bytes)
    } else {
        (split.right, right_bytes)
    };
    let parent = split
        .parent_bytes
        .max(left_bytes.saturating_add(right_bytes));
    (parent > 0
        && u128::from(bytes) * 100 >= u128::from(parent) * u128::from(SPLIT_INDIVISIBLE_PERCENT))
    .then_some(heavy)
}

/// Whether `partition` is the parent of a split under way in `table`, or a child of one whose
/// parent is not forgotten yet (a child split before then would leave the parent's deletion
/// waiting for a child that no longer exists).
fn in_a_split(table: &TableRecord, partition: u64) -> bool {
    table
        .partition_splits
        .iter()
        .any(|(parent, record)| [*parent, record.left, record.right].contains(&partition))
}

/// The split of `parent` as its record in `table` says, to drive.
fn driven_split(table: &TableRecord, parent: u64, record: &PartitionSplitRecord) -> DrivenSplit {
    DrivenSplit {
        table: table.name.clone(),
        incarnation: table.incarnation(),
        record_id: record.id,
        shard: record.shard,
        machine: PartitionSplit::new(
            parent,
            record.parent_epoch,
            record.at_hash,
            (
                SplitChildWire {
                    partition: record.left,
                    epoch: record.epoch,
                },
                SplitChildWire {
                    partition: record.right,
                    epoch: record.epoch,
                },
            ),
            record.replicas.clone(),
            record.routed,
        ),
    }
}

/// The partitions the split policy considers: the table's, and those of its ACTIVE global
/// secondary indexes (one being created is still filled by its backfill, one being deleted is
/// going away).
fn splittable_partitions(table: &TableRecord) -> impl Iterator<Item = &PartitionEntry> {
    table.partitions.iter().chain(
        table
            .global_indexes
            .iter()
            .filter(|index| index.status == GlobalIndexStatus::Active)
            .flat_map(|index| index.partitions.iter()),
    )
}

/// Step 3's edit: the parent's entry replaced by its two children, in hash order, in
/// whichever list holds it (the table's partitions or one of its global secondary indexes'),
/// and the record marked routed. No list changes when the parent is in none any more (a record
/// already routed).
fn route_children(table: &mut TableRecord, parent: u64, record: &PartitionSplitRecord) {
    let lists = std::iter::once(&mut table.partitions).chain(
        table
            .global_indexes
            .iter_mut()
            .map(|index| &mut index.partitions),
    );
    for list in lists {
        if let Some(position) = list.iter().position(|entry| entry.id == parent) {
            let [left, right] = record.children();
            list.splice(position..=position, [left, right]);
            break;
        }
    }
    if let Some(stored) = table.partition_splits.get_mut(&parent) {
        stored.routed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(partition: u64, write_milli: u64, samples: u32, cut: u64) -> ReplicaLoad {
        ReplicaLoad {
            partition,
            epoch: 1,
            read_milli_per_second: 1_000,
            write_milli_per_second: write_milli,
            samples,
            cut: Some(cut),
            top_key_permille: 10,
        }
    }

    #[test]
    fn a_child_keeping_nearly_all_of_its_parents_bytes_is_the_heavy_one() {
        let split = SizeSplit {
            left: 5,
            right: 6,
            parent_bytes: 1_000,
        };
        assert_eq!(heavy_child(&split, 960, 10), Some(5));
        assert_eq!(heavy_child(&split, 0, 950), Some(6));
        assert_eq!(heavy_child(&split, 600, 400), None);
        // Grown since: measured against what the children hold together.
        assert_eq!(heavy_child(&split, 1_500, 100), None);
        let empty = SizeSplit {
            parent_bytes: 0,
            ..split
        };
        assert_eq!(heavy_child(&empty, 0, 0), None);
    }

    #[test]
    fn a_partitions_load_adds_its_replicas_up_and_takes_the_fullest_samples_cut() {
        // The leader (writes, strong reads), a former leader whose sample is as full, and a
        // follower that sampled nothing: the leader's cut wins.
        let reports = [
            load(7, 0, 512, 90),
            load(7, 900_000, 512, 40),
            load(7, 0, 0, 0),
        ];
        let loads = partition_loads(&reports);
        assert_eq!(
            loads[&7],
            PartitionLoad {
                read_milli_per_second: 3_000,
                write_milli_per_second: 900_000,
                cut: Some(40),
                top_key_permille: 10,
                sampler: (901_000, 512),
            }
        );
        assert!(cuts(
            HashRange {
                first: 10,
                last: 50
            },
            40
        ));
        assert!(!cuts(
            HashRange {
                first: 40,
                last: 50
            },
            40
        ));
        assert!(!cuts(
            HashRange {
                first: 10,
                last: 30
            },
            40
        ));
    }

    #[test]
    fn the_cut_is_the_middle_and_both_children_keep_a_hash() {
        assert_eq!(split_point(HashRange::ALL), Some(1 << 63));
        assert_eq!(
            split_point(HashRange {
                first: 10,
                last: 11
            }),
            Some(11)
        );
        assert_eq!(split_point(HashRange { first: 7, last: 7 }), None);
        let record = PartitionSplitRecord {
            id: 1,
            parent_epoch: 1,
            range: HashRange {
                first: 10,
                last: 11,
            },
            shard: 0,
            replicas: vec![1, 2, 3],
            at_hash: 11,
            left: 5,
            right: 6,
            epoch: 2,
            routed: false,
        };
        let [left, right] = record.children();
        assert_eq!(
            (left.range, right.range),
            (
                HashRange {
                    first: 10,
                    last: 10
                },
                HashRange {
                    first: 11,
                    last: 11
                }
            )
        );
    }
}
