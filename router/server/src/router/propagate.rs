//! Global secondary index propagation (shoal_model::index::global): a router moves each base
//! partition's outbox to the index partitions, in position order, and trims what they applied.
//!
//! Why the router tier: it already holds the partition maps of tables and indexes, follows
//! leaders and retries, so a base partition's leader needs no routing of its own. The base
//! partition's outbox is the durable cursor: a change leaves it only after every index
//! partition it touches applied it, so a router that dies, a leader that changes or a node
//! that restarts loses nothing, and because index partitions apply each position once
//! (index::global invariant 3), sending a change again, from this router or another, changes
//! nothing.
//!
//! When: the router that wrote to a table with GSIs asks for its partition at once (the index
//! lags by about one round trip); every [`PROPAGATION_SWEEP_INTERVAL`] each router also looks
//! at every table with GSIs in the metadata, so the outbox of a router that died, or of TTL
//! deletes, drains too.
//!
//! /metrics: `shoal_router_gsi_propagation_lag_seconds`, the time from a write's answer at
//! this router to the end of the propagation turn that emptied its partition's outbox (so its
//! change was applied at every index partition): p50 and p99 by `histogram_quantile`; and
//! `shoal_router_gsi_changes_propagated_total`.

use std::collections::BTreeMap;
use std::time::Duration;

use glommio::sync::Semaphore;
use shoal_model::index::global::{
    EntryChange, GlobalIndexChange, OUTBOX_READ_ENTRIES_MAX, OUTBOX_TRIM_ENTRIES_MAX,
    OutboxPosition, PositionedChange, plan_round,
};
use shoal_wire::messages::OutboxChange;

use super::*;

/// How often every table with GSIs has its base partitions' outboxes looked at, besides the
/// requests of writes through this router.
pub const PROPAGATION_SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// Outbox reads one base partition gets per turn before the others get theirs.
pub const PROPAGATION_ROUNDS_PER_TURN: usize = 16;
/// Base partitions whose turns run at once (each its own log and its own round trips).
const PROPAGATION_PARTITIONS_IN_FLIGHT_MAX: usize = 32;
/// How long one propagation call (an outbox read, an apply, a trim) may take with retries.
pub const PROPAGATION_CALL_DEADLINE: Duration = Duration::from_secs(5);

/// The base partitions waiting for a propagation turn, and the signal that wakes the loop.
pub(crate) struct Propagation {
    /// Each with when a write through this router first asked for it since its last turn
    /// (`None` when only a sweep did): the start of the propagation lag /metrics reports.
    pending: RefCell<BTreeMap<(String, u64), Option<Instant>>>,
    wake: Semaphore,
    /// Changes moved to index partitions by this router core (for /metrics and tests).
    pub(crate) changes_applied: Cell<u64>,
}

impl Default for Propagation {
    fn default() -> Self {
        Propagation {
            pending: RefCell::new(BTreeMap::new()),
            wake: Semaphore::new(0),
            changes_applied: Cell::new(0),
        }
    }
}

impl Propagation {
    /// Asks for a turn of base partition `partition` of `table`, for a write acknowledged at
    /// `since` (or a sweep, `None`); the earliest write's time is kept.
    pub(crate) fn request(&self, table: &str, partition: u64, since: Option<Instant>) {
        let mut pending = self.pending.borrow_mut();
        match pending.entry((table.to_string(), partition)) {
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(since);
                self.wake.signal(1);
            }
            std::collections::btree_map::Entry::Occupied(mut entry) => {
                let earliest = match (*entry.get(), since) {
                    (Some(first), Some(next)) => Some(first.min(next)),
                    (first, next) => first.or(next),
                };
                entry.insert(earliest);
            }
        }
    }
}

impl Router {
    /// Asks for the propagation of the base partition that owns `hash`, if `table` has GSIs.
    pub(crate) fn request_propagation(&self, table: &str, hash: u64) {
        let partition = self
            .tables
            .borrow()
            .get(table)
            .filter(|state| !state.record.global_indexes.is_empty())
            .map(|state| state.map.lookup(hash).id);
        if let Some(partition) = partition {
            self.propagation
                .request(table, partition, Some(Instant::now()));
        }
    }

    /// Index changes this router core moved to index partitions since it started.
    pub fn index_changes_propagated(&self) -> u64 {
        self.propagation.changes_applied.get()
    }

    /// Empties the outbox of every base partition of `table` (concurrently), so that its GSIs
    /// have applied every write committed before this call: what a strongly consistent GSI
    /// read waits for. Fails when an outbox cannot be emptied before `deadline` (writes faster
    /// than propagation, or an index partition unavailable).
    pub(super) async fn drain_outboxes(
        &self,
        table: &str,
        deadline: Instant,
    ) -> Result<(), DynamoError> {
        let (_, map) = self.table(table, deadline).await?;
        let drains: Vec<_> = map
            .partitions()
            .iter()
            .map(|partition| async move {
                while Instant::now() < deadline {
                    if self.propagate_partition(table, partition.id).await? {
                        return Ok(());
                    }
                }
                Err(DynamoError::new(
                    crate::error::THROTTLING,
                    "The table's global secondary indexes did not catch up with its writes in time for a consistent read; retry it",
                ))
            })
            .collect();
        for outcome in join_bounded(drains, PROPAGATION_APPLIES_IN_FLIGHT_MAX).await {
            outcome?;
        }
        Ok(())
    }

    /// Runs propagation for the life of the executor (`shoal router` spawns it).
    pub async fn run_index_propagation(&self) {
        let mut last_sweep: Option<Instant> = None;
        loop {
            let sweep_due =
                last_sweep.is_none_or(|last| last.elapsed() >= PROPAGATION_SWEEP_INTERVAL);
            if sweep_due {
                last_sweep = Some(Instant::now());
                self.request_all_indexed_tables().await;
            }
            let turn: Vec<((String, u64), Option<Instant>)> =
                std::mem::take(&mut *self.propagation.pending.borrow_mut())
                    .into_iter()
                    .collect();
            // Base partitions are independent logs: their turns run at once.
            let turns: Vec<_> = turn
                .into_iter()
                .map(|((table, partition), since)| async move {
                    let outcome = self.propagate_partition(&table, partition).await;
                    (table, partition, since, outcome)
                })
                .collect();
            for (table, partition, since, outcome) in
                join_bounded(turns, PROPAGATION_PARTITIONS_IN_FLIGHT_MAX).await
            {
                match outcome {
                    Ok(true) => {
                        if let Some(since) = since {
                            self.metrics.index_propagated(since.elapsed());
                        }
                    }
                    // More than a turn's worth: it goes on at the next turn, after the others.
                    Ok(false) => self.propagation.request(&table, partition, since),
                    Err(error) => tracing::debug!(
                        table,
                        partition,
                        %error.message,
                        "index propagation failed; retried at the next sweep"
                    ),
                }
            }
            if !self.propagation.pending.borrow().is_empty() {
                continue;
            }
            // Woken by a request, or at the next sweep.
            let wait = glommio::timer::timeout(PROPAGATION_SWEEP_INTERVAL, async {
                self.propagation.wake.acquire(1).await
            })
            .await;
            // Signals that arrived during the turn are spent by the turn that follows.
            let _ = wait;
            while self.propagation.wake.try_acquire(1).unwrap_or(false) {}
        }
    }

    /// Requests a turn for every base partition of every ACTIVE table with GSIs.
    async fn request_all_indexed_tables(&self) {
        let deadline = Instant::now() + PROPAGATION_CALL_DEADLINE;
        let tables = match self.metadata.all_tables(&self.forwarder, deadline).await {
            Ok(tables) => tables,
            Err(error) => {
                tracing::debug!(?error, "tables not read for index propagation");
                return;
            }
        };
        for table in tables {
            if table.status != TableStatus::Active || table.global_indexes.is_empty() {
                continue;
            }
            for partition in &table.partitions {
                self.propagation.request(&table.name, partition.id, None);
            }
        }
    }

    /// Moves base partition `partition`'s outbox to the index partitions, one read's worth at
    /// a time. `Ok(true)` when the outbox was found empty, `Ok(false)` when the turn ended
    /// first.
    pub(super) async fn propagate_partition(
        &self,
        table: &str,
        partition: u64,
    ) -> Result<bool, DynamoError> {
        let deadline = Instant::now() + PROPAGATION_CALL_DEADLINE;
        let (_, map) = self.table(table, deadline).await?;
        let Some(base) = map.get(partition).cloned() else {
            // Not a partition of the table as it is now (recreated meanwhile): nothing to do.
            return Ok(true);
        };
        // Rounds read on from the last position applied; the outbox is trimmed once at the end
        // (and before a trim would grow past what one trim removes), not after every round:
        // each trim is a replicated write of the base partition.
        let mut applied_through: Option<OutboxPosition> = None;
        let mut untrimmed = 0usize;
        let mut drained = false;
        for _round in 0..PROPAGATION_ROUNDS_PER_TURN {
            let deadline = Instant::now() + PROPAGATION_CALL_DEADLINE;
            let read = PreparedRequest::OutboxRead {
                after: applied_through,
            };
            let reply = self
                .forwarder
                .forward(&base, &ItemCall::new(&read), deadline)
                .await
                .map_err(ForwardError::into_dynamo)?;
            self.note_leader(table, None, partition, Some(reply.leader));
            let ItemResult::Outbox { changes } = reply.result else {
                return Err(DynamoError::internal(
                    "Internal server error (an outbox read answered with another result)",
                ));
            };
            let Some(last) = changes.last().map(|change| OutboxPosition {
                slot: change.slot,
                ordinal: change.ordinal,
            }) else {
                drained = true;
                break;
            };
            let moved = changes.len();
            self.apply_routed(table, partition, &changes, deadline)
                .await?;
            applied_through = Some(last);
            untrimmed += moved;
            self.propagation
                .changes_applied
                .set(self.propagation.changes_applied.get() + moved as u64);
            self.metrics.index_changes_applied(moved as u64);
            if untrimmed + OUTBOX_READ_ENTRIES_MAX > OUTBOX_TRIM_ENTRIES_MAX {
                self.trim_outbox(table, &base, last).await?;
                untrimmed = 0;
            }
        }
        if let (Some(through), true) = (applied_through, untrimmed > 0) {
            self.trim_outbox(table, &base, through).await?;
        }
        Ok(drained)
    }

    /// Removes `base`'s outbox records through `through`, which every index partition applied.
    async fn trim_outbox(
        &self,
        table: &str,
        base: &PartitionEntry,
        through: OutboxPosition,
    ) -> Result<(), DynamoError> {
        let deadline = Instant::now() + PROPAGATION_CALL_DEADLINE;
        let trim = PreparedRequest::OutboxTrim { through };
        let reply = self
            .forwarder
            .forward(base, &ItemCall::new(&trim), deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        self.note_leader(table, None, base.id, Some(reply.leader));
        Ok(())
    }

    /// [`Router::apply_at_index_partitions`], with the changes an index partition refused
    /// because the cached map is behind it (it was split) grouped again with a refreshed map
    /// and sent again; the changes the others applied are not sent again. The children of a
    /// split partition start from its per-source positions and it applied none of the changes
    /// it refused, so each child still gets its changes in position order. A split that froze
    /// a partition whose children are not routed yet is waited out, as a request's route
    /// waits, for at most [`PROPAGATION_SPLIT_WAIT_MAX`]: the other base partitions' turns
    /// wait for this one, and a failed turn is tried again at the next request or sweep.
    async fn apply_routed(
        &self,
        table: &str,
        source: u64,
        changes: &[OutboxChange],
        deadline: Instant,
    ) -> Result<(), DynamoError> {
        let incarnation = |router: &Router| {
            router
                .tables
                .borrow()
                .get(table)
                .map(|state| state.record.incarnation())
        };
        let started = incarnation(self);
        let waited_until = deadline.min(Instant::now() + PROPAGATION_SPLIT_WAIT_MAX);
        let mut pause = SPLIT_ROUTE_WAIT_PAUSE_MIN;
        let mut remaining: Vec<PositionedChange> =
            changes.iter().cloned().map(positioned).collect();
        loop {
            let Some((stale, refused)) = self
                .apply_at_index_partitions(table, source, remaining, deadline)
                .await?
            else {
                return Ok(());
            };
            if Instant::now() + pause >= waited_until {
                return Err(stale.into_dynamo());
            }
            glommio::timer::sleep(pause).await;
            pause = (pause * 2).min(SPLIT_ROUTE_WAIT_PAUSE_MAX);
            self.refresh_table(table, deadline).await?;
            // A table deleted and created again under the same name numbers its indexes
            // afresh: these changes are not its own.
            if incarnation(self) != started {
                return Err(DynamoError::internal(
                    "Internal server error (the table was replaced during index propagation)",
                ));
            }
            remaining = refused;
        }
    }

    /// Sends each index partition the changes of `source` that touch it, in position order,
    /// and waits until every one has applied them. A change of an index the table no longer
    /// has is dropped. `Ok(Some((refusal, refused)))` when index partitions refused their
    /// changes because the map they were grouped with is behind them (nothing was applied
    /// there): `refused` are those changes, in position order.
    async fn apply_at_index_partitions(
        &self,
        table: &str,
        source: u64,
        changes: Vec<PositionedChange>,
        deadline: Instant,
    ) -> Result<Option<(ForwardError, Vec<PositionedChange>)>, DynamoError> {
        // The table's indexes as this core knows them. Not knowing the table at all (evicted
        // from the cache since the turn began) must not read as "no indexes": every change
        // would be dropped and trimmed. The turn fails instead and is tried again.
        let indexes: BTreeMap<u8, String> = self
            .tables
            .borrow()
            .get(table)
            .map(|state| {
                state
                    .record
                    .global_indexes
                    .iter()
                    // A DELETING index's changes are dropped: its partitions are going away.
                    .filter(|record| record.status != GlobalIndexStatus::Deleting)
                    .map(|record| (record.index.number, record.index.name.clone()))
                    .collect()
            })
            .ok_or_else(|| {
                DynamoError::internal(
                    "Internal server error (the table left the cache during index propagation)",
                )
            })?;
        // Index partitions are looked up by name and entry-key hash; the map is the cached
        // one (no await inside the routing function).
        let mut routes: BTreeMap<(String, u64), PartitionEntry> = BTreeMap::new();
        let mut maps: BTreeMap<String, PartitionMap> = BTreeMap::new();
        for name in indexes.values() {
            maps.insert(
                name.clone(),
                self.route_map(table, Some(name), deadline).await?,
            );
        }
        let plan = plan_round(changes, |change| {
            let name = indexes.get(&change.index_number)?;
            let route = maps.get(name)?.lookup(storage_key_hash(&change.entry_key)?);
            routes.insert((name.clone(), route.id), route.clone());
            Some((name.clone(), route.id))
        });
        let by_partition = plan.applies.into_iter().filter_map(|(target, changes)| {
            routes
                .get(&target)
                .map(|route| (target, (route.clone(), changes)))
        });
        let calls: Vec<_> = by_partition
            .into_iter()
            .map(|((index, _), (route, changes))| async move {
                let apply = PreparedRequest::IndexApply { source, changes };
                let outcome = self
                    .forwarder
                    .forward(&route, &ItemCall::new(&apply), deadline)
                    .await;
                match outcome {
                    Ok(reply) => {
                        self.note_leader(table, Some(&index), route.id, Some(reply.leader));
                        Ok(())
                    }
                    // Refused for a stale map: these changes are grouped again (a rare path,
                    // so they are copied only here).
                    Err(
                        refusal @ (ForwardError::StaleRoute { .. }
                        | ForwardError::KeysElsewhere { .. }),
                    ) => match &apply {
                        PreparedRequest::IndexApply { changes, .. } => {
                            Err((refusal, changes.clone()))
                        }
                        _ => Err((refusal, Vec::new())),
                    },
                    Err(error) => Err((error, Vec::new())),
                }
            })
            .collect();
        // Each index partition is its own log, so their applies run at once.
        let mut stale = None;
        let mut refused: Vec<PositionedChange> = Vec::new();
        for outcome in join_bounded(calls, PROPAGATION_APPLIES_IN_FLIGHT_MAX).await {
            match outcome {
                Ok(()) => {}
                Err((
                    refusal
                    @ (ForwardError::StaleRoute { .. } | ForwardError::KeysElsewhere { .. }),
                    changes,
                )) => {
                    stale = Some(refusal);
                    refused.extend(changes);
                }
                Err((error, _)) => return Err(error.into_dynamo()),
            }
        }
        refused.sort_by_key(|change| change.position);
        Ok(stale.map(|refusal| (refusal, refused)))
    }
}

/// Index partitions one base partition's changes are applied at concurrently.
const PROPAGATION_APPLIES_IN_FLIGHT_MAX: usize = 16;
/// How long a propagation turn waits for an index partition's split to be routed (its parent
/// frozen) before it fails and is tried again later: the other base partitions' turns wait
/// for it.
const PROPAGATION_SPLIT_WAIT_MAX: Duration = Duration::from_secs(1);

/// An outbox record as the model's propagation plan takes it.
fn positioned(change: OutboxChange) -> PositionedChange {
    PositionedChange {
        position: OutboxPosition {
            slot: change.slot,
            ordinal: change.ordinal,
        },
        change: GlobalIndexChange {
            index_number: change.index_number,
            entry_key: change.entry_key,
            change: match change.item {
                Some(item) => EntryChange::Put(item),
                None => EntryChange::Delete,
            },
        },
    }
}
