//! The Time to Live sweeper of a partition leader (src/time_to_live.rs has the rules): one step
//! per `Event::SweepExpired`, in key order, passes at most once per pass period.

use std::ops::Bound;
use std::time::Duration;

use shoal_model::encoding::decode_item;
use shoal_replication::{MonotonicTime, RoleKind, Slot};
use shoal_store::btree::Direction;
use shoal_store::engine::{Mutation, MutationBatch};

use super::{PartitionError, PartitionReplica};
use crate::time_to_live::{SWEEP_DELETES_PER_STEP, SWEEP_ITEMS_PER_STEP, SweepTarget, expired};
use shoal_io::{Storage, StorageDirectory};
use shoal_model::Item;
use shoal_model::index::LocalIndex;
use std::collections::BTreeMap;

/// Where a replica's sweeper stands. Kept across leadership changes: a leader that loses and
/// regains leadership resumes its pass where it stopped.
#[derive(Debug, Default)]
pub(super) struct SweepState {
    /// The TTL attribute the current pass looks at; a pass restarts when it changes.
    attribute: String,
    /// The last key the current pass read; `None` at the start of a pass.
    cursor: Option<Vec<u8>>,
    /// Whether a pass is under way; between passes the sweeper waits for `next_pass_at`.
    in_pass: bool,
    pass_started_at: MonotonicTime,
    next_pass_at: MonotonicTime,
    /// The slot of the sweep's last proposal; no step runs while it waits to be applied.
    in_flight: Option<Slot>,
    /// Deletes the sweeper proposed since the replica started (some may not take effect, if
    /// leadership moves first), for metrics and tests.
    deletes_proposed: u64,
}

/// What one step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct SweepStep {
    items_read: usize,
    deletes_proposed: usize,
    /// The step read the partition's last key: the pass is over.
    pass_finished: bool,
}

impl SweepStep {
    /// A step that proposed deletes or ended a pass is worth a debug line.
    pub(super) fn log(&self, partition: u64) {
        if self.deletes_proposed > 0 || self.pass_finished {
            tracing::debug!(
                partition,
                items_read = self.items_read,
                deletes_proposed = self.deletes_proposed,
                pass_finished = self.pass_finished,
                "time to live sweep step"
            );
        }
    }
}

impl<F: Storage, D: StorageDirectory<File = F>> PartitionReplica<F, D> {
    /// Deletes proposed by this replica's sweeper since it started.
    pub fn expired_deletes_proposed(&self) -> u64 {
        self.sweep.deletes_proposed
    }

    /// One sweeper step (src/time_to_live.rs): nothing unless this replica is a ready leader,
    /// its previous sweep proposal is applied, and a pass is under way or due.
    pub(super) async fn sweep_expired(
        &mut self,
        now: MonotonicTime,
        target: SweepTarget,
        now_unix_seconds: u64,
        pass_period: Duration,
    ) -> Result<SweepStep, PartitionError> {
        let SweepTarget {
            attribute,
            local_indexes,
            global_indexes,
        } = target;
        if self.core.role() != RoleKind::Leader || !self.core.leader_ready() {
            return Ok(SweepStep::default());
        }
        if !global_indexes.is_empty()
            && self.outbox_entries() >= shoal_model::index::global::OUTBOX_ENTRIES_MAX
        {
            // The GSIs are behind: the deletes wait, as the table's writes do.
            return Ok(SweepStep::default());
        }
        if self.sweep.attribute != attribute {
            self.sweep = SweepState {
                attribute,
                deletes_proposed: self.sweep.deletes_proposed,
                next_pass_at: now,
                ..SweepState::default()
            };
        }
        if let Some(slot) = self.sweep.in_flight {
            // A lost leadership drops every waiter, so a slot no waiter holds is settled.
            if self.waiting.contains_key(&slot) {
                return Ok(SweepStep::default());
            }
            self.sweep.in_flight = None;
        }
        if !self.sweep.in_pass {
            if now < self.sweep.next_pass_at {
                return Ok(SweepStep::default());
            }
            self.sweep.in_pass = true;
            self.sweep.pass_started_at = now;
            self.sweep.cursor = None;
        }
        let lower = match &self.sweep.cursor {
            Some(key) => Bound::Excluded(key.clone()),
            None => Bound::Unbounded,
        };
        // Items only: the local-index region after them holds entries and collection records,
        // which are not items and expire with theirs.
        let batch = self
            .engine
            .scan(
                lower,
                crate::local_index::items_only(Bound::Unbounded),
                Direction::Forward,
                SWEEP_ITEMS_PER_STEP,
            )
            .await?;
        let mut step = SweepStep {
            items_read: 0,
            deletes_proposed: 0,
            pass_finished: batch.len() < SWEEP_ITEMS_PER_STEP,
        };
        let mut cursor = self.sweep.cursor.clone();
        let stream = self.stream_config().await?;
        let mut expired_items = Vec::new();
        let mut expired_keys = Vec::new();
        let mut mutations = Vec::new();
        // Item collections (tables with local indexes) as this step's deletes leave them.
        let mut collections: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        // GSI changes of this step's deletes, numbered in the batch (index::global).
        let mut outbox_ordinal = 0u32;
        for (key, value) in batch {
            if expired_keys.len() == SWEEP_DELETES_PER_STEP {
                // The rest of the page waits for the next step.
                step.pass_finished = false;
                break;
            }
            step.items_read += 1;
            let stored = decode_item(&value).map_err(|error| {
                PartitionError::Corrupt(format!(
                    "partition {}: stored item does not decode: {error}",
                    self.meta.partition
                ))
            })?;
            // Transaction invariant 2: a locked item waits for the next pass.
            let locked = self.locks_possible() && self.latest_lock(&key).await?.is_some();
            let attribute = self.sweep.attribute.as_str();
            if !locked && expired(&stored, attribute, now_unix_seconds) {
                // Invariant 2: the delete is decided on the latest state, proposals in flight
                // included. A write proposed since (one extending the TTL, say) wins.
                let (latest, _) = self.latest_item(&key).await?;
                if let Some(item) = latest.filter(|item| expired(item, attribute, now_unix_seconds))
                {
                    mutations.push(Mutation::Expire { key: key.clone() });
                    let (changes, _) = shoal_model::index::global::global_changes(
                        &global_indexes,
                        &self.meta.key_schema,
                        &key,
                        Some(&item),
                        None,
                    )
                    .map_err(|error| {
                        PartitionError::Corrupt(format!(
                            "partition {}: a stored item's index changes cannot be derived: {error}",
                            self.meta.partition
                        ))
                    })?;
                    for change in changes {
                        mutations.push(Mutation::Put {
                            key: shoal_model::index::global::pending_outbox_key(outbox_ordinal),
                            value: shoal_model::index::global::encode_change(&change),
                        });
                        outbox_ordinal += 1;
                    }
                    self.expire_index_entries(
                        &local_indexes,
                        &key,
                        &item,
                        &mut collections,
                        &mut mutations,
                    )
                    .await?;
                    expired_keys.push(key.clone());
                    if stream.is_some() {
                        expired_items.push(item);
                    }
                }
            }
            cursor = Some(key);
        }
        if !expired_keys.is_empty() {
            // Stream records name the service as the deleter (issue 18, "Time to Live").
            mutations.extend(self.stream_records(
                stream,
                expired_items.iter().map(|item| (Some(item), None)),
                now_unix_seconds.saturating_mul(1000),
                true,
            ));
            let batch = MutationBatch { mutations };
            let Some((slot, actions)) = self.propose_unanswered(now, batch).await? else {
                // The same keys are read again at the next step, from the unchanged cursor.
                return Ok(SweepStep::default());
            };
            for key in &expired_keys {
                self.overlay.insert(key.clone(), (slot, None));
            }
            for (key, bytes) in collections {
                let record = (bytes > 0).then(|| shoal_model::index::collection_record(bytes));
                self.overlay.insert(key, (slot, record));
            }
            self.sweep.in_flight = Some(slot);
            step.deletes_proposed = expired_keys.len();
            self.sweep.deletes_proposed += expired_keys.len() as u64;
            self.execute(now, actions).await?;
        }
        self.sweep.cursor = cursor;
        if step.pass_finished {
            self.sweep.in_pass = false;
            self.sweep.cursor = None;
            self.sweep.next_pass_at = self.sweep.pass_started_at.saturating_add(pass_period);
        }
        Ok(step)
    }

    /// The mutations that go with the TTL delete of `item` (at `key`) on a table with local
    /// indexes, exactly as a DeleteItem's would: its index entries' deletes and its item
    /// collection's new size (`collections` carries the sizes this step already changed).
    async fn expire_index_entries(
        &self,
        local_indexes: &[LocalIndex],
        key: &[u8],
        item: &Item,
        collections: &mut BTreeMap<Vec<u8>, u64>,
        mutations: &mut Vec<Mutation>,
    ) -> Result<(), PartitionError> {
        if local_indexes.is_empty() {
            return Ok(());
        }
        let key_schema = &self.meta.key_schema;
        let changes =
            shoal_model::index::index_changes(local_indexes, key_schema, key, Some(item), None)
                .map_err(|error| {
                    PartitionError::Corrupt(format!(
                        "partition {}: a stored item's index entries cannot be derived: {error}",
                        self.meta.partition
                    ))
                })?;
        mutations.extend(
            changes
                .into_iter()
                .filter_map(|change| change.delete)
                .map(|key| Mutation::Delete { key }),
        );
        let Some(record_key) = shoal_model::index::collection_key(key) else {
            return Ok(());
        };
        let before = match collections.get(&record_key) {
            Some(bytes) => *bytes,
            None => {
                let (record, _) = self.latest_item(&record_key).await?;
                record
                    .as_ref()
                    .and_then(shoal_model::index::collection_bytes)
                    .unwrap_or(0)
            }
        };
        let after = before.saturating_sub(shoal_model::index::collection_share(
            local_indexes,
            key_schema,
            item,
        ));
        mutations.push(if after == 0 {
            Mutation::Delete {
                key: record_key.clone(),
            }
        } else {
            Mutation::Put {
                key: record_key.clone(),
                value: shoal_model::encoding::encode_item(&shoal_model::index::collection_record(
                    after,
                )),
            }
        });
        collections.insert(record_key, after);
        Ok(())
    }
}
