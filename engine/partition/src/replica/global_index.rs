//! Global secondary index propagation at a partition leader (shoal_model::index::global): a
//! base partition serves its outbox to a propagator and trims what the index partitions
//! applied; an index partition applies a base partition's changes, each exactly once; and a
//! new index is backfilled through the same outbox.

use shoal_model::index::global::{
    EntryChange, GlobalIndex, GlobalIndexChange, OUTBOX_ENTRIES_MAX, OUTBOX_READ_BYTES_MAX,
    OUTBOX_READ_ENTRIES_MAX, OUTBOX_TRIM_ENTRIES_MAX, OutboxPosition, PositionedChange,
    decode_change, encode_change, outbox_key, outbox_position, outbox_range, pending_outbox_key,
    position_record, record_position, source_position_key,
};
use shoal_wire::messages::OutboxChange;

use super::*;

// A trim's deletes and the chain record are one batch.
const _: () = assert!(OUTBOX_TRIM_ENTRIES_MAX < shoal_store::engine::BATCH_MUTATIONS_MAX);

/// Items one backfill step reads: one B-tree scan call, and one log entry of at most this many
/// outbox records (well inside a batch's mutation limit).
pub const BACKFILL_ITEMS_PER_STEP: usize = 256;
const _: () = assert!(BACKFILL_ITEMS_PER_STEP < shoal_store::engine::BATCH_MUTATIONS_MAX);

impl<F: Storage, D: StorageDirectory<File = F>> PartitionReplica<F, D> {
    /// The outbox records this replica's tree holds (counted with the index region).
    pub(super) fn outbox_entries(&self) -> u64 {
        self.index_region
            .as_ref()
            .map_or(0, |region| region.outbox_entries)
    }

    /// The outbox records after `after`, in position order: a strong read, so a propagator
    /// never misses a record committed before it asked (records appear in slot order, and the
    /// leader under its lease has applied every committed slot).
    pub(super) async fn serve_outbox_read(
        &mut self,
        now: MonotonicTime,
        after: Option<OutboxPosition>,
    ) -> Result<NodeResponse, PartitionError> {
        if let Err(refusal) = self.check_read(now, true) {
            return Ok(refusal);
        }
        let (lower, upper) = outbox_range(after);
        let records = self
            .engine
            .scan(lower, upper, Direction::Forward, OUTBOX_READ_ENTRIES_MAX)
            .await?;
        let mut changes = Vec::with_capacity(records.len());
        let mut bytes = 0;
        for (key, value) in records {
            let corrupt = || {
                PartitionError::Corrupt(format!(
                    "partition {}: an outbox record does not decode",
                    self.meta.partition
                ))
            };
            let position = outbox_position(&key).ok_or_else(corrupt)?;
            let change = decode_change(&value).ok_or_else(corrupt)?;
            bytes += key.len() + value.len();
            changes.push(OutboxChange {
                slot: position.slot,
                ordinal: position.ordinal,
                index_number: change.index_number,
                entry_key: change.entry_key,
                item: match change.change {
                    EntryChange::Put(item) => Some(item),
                    EntryChange::Delete => None,
                },
            });
            if bytes >= OUTBOX_READ_BYTES_MAX {
                break;
            }
        }
        Ok(NodeResponse::Item {
            result: ItemResult::Outbox { changes },
            read_units_milli: 0,
            write_units_milli: 0,
        })
    }

    /// Removes the outbox records up to `through` (at most `OUTBOX_TRIM_ENTRIES_MAX` per call:
    /// a propagator trims before it has applied more). Answers once the deletes are applied; with nothing to
    /// remove, at once (a record another propagator trimmed is gone either way).
    pub(super) async fn serve_outbox_trim(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        through: OutboxPosition,
    ) -> Result<(), PartitionError> {
        if let Some(refusal) = self.refuse_write() {
            self.reply(reply_to, refusal);
            return Ok(());
        }
        let (lower, _) = outbox_range(None);
        let upper = Bound::Included(outbox_key(through));
        let records = self
            .engine
            .scan(lower, upper, Direction::Forward, OUTBOX_TRIM_ENTRIES_MAX)
            .await?;
        let done = NodeResponse::Item {
            result: ItemResult::Write { attributes: None },
            read_units_milli: 0,
            write_units_milli: 0,
        };
        if records.is_empty() {
            self.reply(reply_to, done);
            return Ok(());
        }
        let batch = MutationBatch {
            mutations: records
                .into_iter()
                .map(|(key, _)| Mutation::Delete { key })
                .collect(),
        };
        let Some((_, actions)) = self.propose_batch(now, reply_to, batch, done).await? else {
            return Ok(());
        };
        self.execute(now, actions).await
    }

    /// Applies the changes of base partition `source` whose positions are above the one this
    /// index partition recorded for it, and records the highest (index::global invariant 3).
    /// Always proposes, even with nothing new: the answer then says that the recorded position
    /// (perhaps a proposal still in flight) is applied, so the propagator may trim.
    pub(super) async fn serve_index_apply(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        source: u64,
        changes: Vec<PositionedChange>,
    ) -> Result<(), PartitionError> {
        if let Some(refusal) = self.refuse_write() {
            self.reply(reply_to, refusal);
            return Ok(());
        }
        let position_key = source_position_key(source);
        let (record, _) = self.latest_item(&position_key).await?;
        let applied = match &record {
            None => None,
            Some(record) => Some(record_position(record).ok_or_else(|| {
                PartitionError::Corrupt(format!(
                    "partition {}: the applied position of partition {source} does not decode",
                    self.meta.partition
                ))
            })?),
        };
        let mut mutations = Vec::new();
        let mut highest = applied;
        for positioned in changes {
            if highest.is_some_and(|highest| positioned.position <= highest) {
                continue;
            }
            highest = Some(positioned.position);
            let change = positioned.change;
            mutations.push(match change.change {
                EntryChange::Put(value) => Mutation::Put {
                    key: change.entry_key,
                    value,
                },
                EntryChange::Delete => Mutation::Delete {
                    key: change.entry_key,
                },
            });
        }
        let advanced = highest.filter(|highest| Some(*highest) != applied);
        let write_units: u64 = mutations
            .iter()
            .map(|mutation| match mutation {
                Mutation::Put { value, .. } => write_capacity_units(value.len()),
                _ => 1,
            })
            .sum();
        if let Some(position) = advanced {
            mutations.push(Mutation::Put {
                key: position_key.clone(),
                value: encode_item(&position_record(position)),
            });
        }
        if mutations
            .iter()
            .any(|mutation| mutation.key().len() > shoal_store::btree::KEY_BYTES_MAX)
        {
            // The base leader refuses writes whose entries would be this long; a change that
            // has one is not from it.
            self.reply(
                reply_to,
                NodeResponse::Error(NodeError::Internal {
                    message: "an index change whose entry key exceeds the tree's key limit"
                        .to_string(),
                }),
            );
            return Ok(());
        }
        let response = NodeResponse::Item {
            result: ItemResult::Write { attributes: None },
            read_units_milli: 0,
            write_units_milli: write_units * 1000,
        };
        let batch = MutationBatch { mutations };
        let Some((slot, actions)) = self.propose_batch(now, reply_to, batch, response).await?
        else {
            return Ok(());
        };
        if let Some(position) = advanced {
            self.overlay
                .insert(position_key, (slot, Some(position_record(position))));
        }
        self.execute(now, actions).await
    }

    /// One step of a new GSI's backfill: the entries of the next items after `after` go into
    /// the outbox in one log entry, each from the item's latest state (proposals in flight
    /// included), so the step is ordered with every write: a write before it is in the state
    /// it copies, a write after it changes the entries it made. Items without the index key,
    /// with another type, or whose entry could not be stored are skipped, as DynamoDB's
    /// backfill skips them (they could not have been written with the index in place).
    pub(super) async fn serve_index_backfill(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        index: GlobalIndex,
        after: Option<Vec<u8>>,
    ) -> Result<(), PartitionError> {
        if let Some(refusal) = self.refuse_write() {
            self.reply(reply_to, refusal);
            return Ok(());
        }
        if self.outbox_entries() + BACKFILL_ITEMS_PER_STEP as u64 > OUTBOX_ENTRIES_MAX {
            // The indexes are behind; the step is asked again later.
            self.reply(
                reply_to,
                NodeResponse::Error(NodeError::Busy {
                    partition: self.meta.partition,
                }),
            );
            return Ok(());
        }
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let items = self
            .engine
            .scan(
                lower,
                crate::local_index::items_only(Bound::Unbounded),
                Direction::Forward,
                BACKFILL_ITEMS_PER_STEP,
            )
            .await?;
        let resume_after = (items.len() == BACKFILL_ITEMS_PER_STEP)
            .then(|| items.last().map(|(key, _)| key.clone()))
            .flatten();
        let mut mutations = Vec::new();
        let mut ordinal = 0u32;
        for (key, _) in &items {
            let (latest, _) = self.latest_item(key).await?;
            let Some(item) = latest else {
                continue;
            };
            let Some(entry_key) = index
                .entry_key(key, &item)
                .filter(|entry_key| entry_key.len() <= shoal_store::btree::KEY_BYTES_MAX)
            else {
                continue;
            };
            if index.check_item(&item).is_err() {
                continue;
            }
            let projected = index.project(&self.meta.key_schema, &item);
            mutations.push(Mutation::Put {
                key: pending_outbox_key(ordinal),
                value: encode_change(&GlobalIndexChange {
                    index_number: index.number,
                    entry_key,
                    change: EntryChange::Put(encode_item(&projected)),
                }),
            });
            ordinal += 1;
        }
        let response = NodeResponse::Item {
            result: ItemResult::Backfill { resume_after },
            read_units_milli: 0,
            write_units_milli: 0,
        };
        let batch = MutationBatch { mutations };
        let Some((_, actions)) = self.propose_batch(now, reply_to, batch, response).await? else {
            return Ok(());
        };
        self.execute(now, actions).await
    }

    /// Why a write cannot be proposed here now, if it cannot: not the leader, or a leader whose
    /// log may still hold earlier leaders' entries that no overlay shows (invariant 2).
    pub(super) fn refuse_write(&self) -> Option<NodeResponse> {
        if self.core.role() != RoleKind::Leader {
            return Some(not_leader(self.meta.partition, self.core.leader_hint()));
        }
        if !self.core.leader_ready() {
            return Some(NodeResponse::Error(NodeError::Busy {
                partition: self.meta.partition,
            }));
        }
        None
    }
}
