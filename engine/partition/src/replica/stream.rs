//! DynamoDB Streams at a partition (shoal_model::stream): the stream configuration the
//! partition's writes follow, the records they add, the reads that serve GetRecords and
//! DescribeStream, and the leader's maintenance (shard rollover, retention and size trim).

use shoal_model::stream::{
    self as model_stream, RecordPosition, ShardRecord, StreamConfig, StreamRecord, ViewType,
    config_key, parse_record_key, parse_shard_key, pending_record_key, pending_shard_key,
    record_bounds, record_created_ms, shard_bounds, trimmed_key,
};
use shoal_wire::messages::{PositionWire, StreamRecordWire, StreamShardWire};

use super::*;

/// Shard records one shards read or maintenance step looks at: a stream keeps one per
/// rollover period of its retention (seven with DynamoDB's 24 hours and 4-hour shards), so
/// this is far more than any stream holds unless its settings are extreme.
const SHARDS_READ_MAX: usize = 1024;
// A maintenance batch: the trim's deletes, the trim records, the shard deletes and a rollover.
const _: () = assert!(
    model_stream::TRIM_RECORDS_PER_STEP_MAX + SHARDS_READ_MAX + 8
        < shoal_store::engine::BATCH_MUTATIONS_MAX
);

/// What the host tells a leader's stream maintenance: the wall clock and the node's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamMaintenance {
    pub unix_ms: u64,
    /// Records older than this are trimmed (DynamoDB keeps them 24 hours).
    pub retention_ms: u64,
    /// An open shard older than this is closed and a new one opened.
    pub shard_rollover_ms: u64,
}

/// A replica's view of its stream configuration.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// The configuration as applied; `None` until read from the tree after it is opened or
    /// replaced by a snapshot.
    applied: Option<Option<StreamConfig>>,
    /// The latest configuration this leader proposed and has not applied yet, at its slot
    /// (invariant 1: writes evaluated after it follow it).
    proposed: Option<(Slot, Option<StreamConfig>)>,
    /// The slot of the maintenance proposal in flight; no step runs while it waits.
    maintenance_in_flight: Option<Slot>,
}

impl StreamState {
    /// The tree was replaced (snapshot installed): read the configuration again.
    pub(super) fn forget_applied(&mut self) {
        self.applied = None;
        self.proposed = None;
    }

    /// Leadership is gone: proposals may not commit.
    pub(super) fn abandon_proposals(&mut self) {
        self.proposed = None;
    }

    /// Follows a batch applied at `slot`: a configuration record it writes becomes the
    /// applied one, and the proposal it carried is no longer pending.
    pub(super) fn applied(&mut self, slot: Slot, batch: &MutationBatch) -> Result<(), String> {
        let key = &model_stream::CONFIG_KEY[..];
        for mutation in &batch.mutations {
            match mutation {
                Mutation::Put { key: put, value } if put.as_slice() == key => {
                    self.applied = Some(Some(
                        StreamConfig::decode(value).map_err(|error| error.to_string())?,
                    ));
                }
                Mutation::Delete { key: deleted } | Mutation::Expire { key: deleted }
                    if deleted.as_slice() == key =>
                {
                    self.applied = Some(None);
                }
                _ => {}
            }
        }
        if self
            .proposed
            .is_some_and(|(proposed_slot, _)| proposed_slot <= slot)
        {
            self.proposed = None;
        }
        Ok(())
    }
}

fn wire(position: RecordPosition) -> PositionWire {
    PositionWire {
        slot: position.slot,
        ordinal: position.ordinal,
    }
}

impl<F: Storage, D: StorageDirectory<File = F>> PartitionReplica<F, D> {
    /// The bytes (keys and values) of the stream records this replica holds, as the index
    /// region's stats count them (for metrics; 0 before the first event counted them).
    pub fn stream_record_bytes(&self) -> u64 {
        self.index_region
            .as_ref()
            .map_or(0, |region| region.stream_record_bytes)
    }

    /// The configuration the next write follows: the latest proposal's, else the applied one.
    pub(super) async fn stream_config(&mut self) -> Result<Option<StreamConfig>, PartitionError> {
        if let Some((_, proposed)) = self.stream.proposed {
            return Ok(proposed);
        }
        if let Some(applied) = self.stream.applied {
            return Ok(applied);
        }
        let applied = match self.engine.get(&config_key()).await? {
            None => None,
            Some(value) => Some(StreamConfig::decode(&value).map_err(|error| {
                PartitionError::Corrupt(format!("partition {}: {error}", self.meta.partition))
            })?),
        };
        self.stream.applied = Some(applied);
        Ok(applied)
    }

    /// The pending records of a batch's changes, numbered in the batch (`changes`: each write's
    /// old and new image); none without a stream, or for a write that left its item as it was.
    pub(super) fn stream_records<'a>(
        &self,
        config: Option<StreamConfig>,
        changes: impl IntoIterator<Item = (Option<&'a Item>, Option<&'a Item>)>,
        unix_ms: u64,
        by_time_to_live: bool,
    ) -> Vec<Mutation> {
        let Some(config) = config else {
            return Vec::new();
        };
        changes
            .into_iter()
            .filter_map(|(old, new)| {
                StreamRecord::of_change(
                    config.view,
                    &self.meta.key_schema,
                    old,
                    new,
                    unix_ms,
                    by_time_to_live,
                )
            })
            .zip(0u32..)
            .map(|(record, ordinal)| Mutation::Put {
                key: pending_record_key(config.stream, config.generation, ordinal),
                value: record.encode(),
            })
            .collect()
    }

    /// StreamConfigure: starts stream `stream` with view `view`, or ends it (`view` `None`),
    /// through the log. A stream that ended here (or whose end was recorded before it started)
    /// never starts again, and an older stream never replaces a newer one, so a late or
    /// repeated request changes nothing.
    pub(super) async fn serve_stream_configure(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        stream: u64,
        view: Option<ViewType>,
        unix_ms: u64,
    ) -> Result<(), PartitionError> {
        if let Some(refusal) = self.refuse_write() {
            self.reply(reply_to, refusal);
            return Ok(());
        }
        let done = NodeResponse::Item {
            result: ItemResult::Write { attributes: None },
            read_units_milli: 0,
            write_units_milli: 0,
        };
        let current = self.stream_config().await?;
        // The shard record that marks where a stream stopped.
        let ended = |stream: u64, generation: u32| Mutation::Put {
            key: pending_shard_key(stream, generation),
            value: ShardRecord {
                opened_ms: unix_ms,
                ended: true,
            }
            .encode(),
        };
        let mut mutations = Vec::new();
        let next = match (current, view) {
            // Ending the stream the writes feed: its last shard closes.
            (Some(current), None) if current.stream == stream => {
                mutations.push(ended(stream, current.generation + 1));
                mutations.push(Mutation::Delete { key: config_key() });
                None
            }
            // Ending a stream the writes do not feed: settled if it existed here; otherwise
            // its end is recorded, so that a start sent before it and delivered after it is
            // ignored (the generation-0 end marker lists no shard).
            (current, None) => {
                if self.stream_existed(stream).await? {
                    self.reply(reply_to, done);
                    return Ok(());
                }
                mutations.push(ended(stream, 0));
                current
            }
            (Some(current), Some(_)) if stream <= current.stream => {
                self.reply(reply_to, done);
                return Ok(());
            }
            (current, Some(view)) => {
                if self.stream_existed(stream).await? {
                    self.reply(reply_to, done);
                    return Ok(());
                }
                // A newer stream replaces the one the writes feed, which ends here.
                if let Some(current) = current {
                    mutations.push(ended(current.stream, current.generation + 1));
                }
                let config = StreamConfig {
                    stream,
                    view,
                    generation: 0,
                    generation_opened_ms: unix_ms,
                };
                mutations.push(Mutation::Put {
                    key: config_key(),
                    value: config.encode(),
                });
                mutations.push(Mutation::Put {
                    key: pending_shard_key(stream, 0),
                    value: ShardRecord {
                        opened_ms: unix_ms,
                        ended: false,
                    }
                    .encode(),
                });
                Some(config)
            }
        };
        let batch = MutationBatch { mutations };
        let Some((slot, actions)) = self.propose_batch(now, reply_to, batch, done).await? else {
            return Ok(());
        };
        self.stream.proposed = Some((slot, next));
        self.execute(now, actions).await
    }

    /// The stream keys of this replica's applied tree between `lower` and `upper`, in key
    /// order, at most `limit`: its configuration, shard, record and trim records (shoal_model::
    /// stream), whatever its role, and nothing outside their region. For checkers: the
    /// deterministic simulator compares every replica's stream with it, where the partition's
    /// own stream reads serve only at the leader.
    pub async fn applied_stream_keys(
        &self,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, PartitionError> {
        let first = config_key();
        let mut end = shoal_model::index::INDEX_REGION_PREFIX.to_vec();
        end.push(model_stream::TRIMMED_MARKER + 1);
        let found = self
            .engine
            .scan(lower, upper, Direction::Forward, limit)
            .await?;
        Ok(found
            .into_iter()
            .filter(|(key, _)| *key >= first && *key < end)
            .collect())
    }

    /// Whether `stream` has any shard record here: it was configured before.
    async fn stream_existed(&self, stream: u64) -> Result<bool, PartitionError> {
        let (lower, upper) = shard_bounds(stream);
        let found = self
            .engine
            .scan(lower, upper, Direction::Forward, 1)
            .await?;
        Ok(!found.is_empty())
    }

    fn trimmed_through(
        &self,
        value: Option<Vec<u8>>,
    ) -> Result<Option<PositionWire>, PartitionError> {
        value
            .map(|value| {
                model_stream::decode_position(&value)
                    .map(wire)
                    .map_err(|error| {
                        PartitionError::Corrupt(format!(
                            "partition {}: {error}",
                            self.meta.partition
                        ))
                    })
            })
            .transpose()
    }

    /// StreamRead: a shard's records after `after`, at most `limit` and
    /// `READ_BYTES_MAX` bytes (the first always), read at the leader under its lease so no
    /// committed record is missed.
    pub(super) async fn serve_stream_read(
        &mut self,
        now: MonotonicTime,
        stream: u64,
        generation: u32,
        after: Option<RecordPosition>,
        limit: u32,
    ) -> Result<NodeResponse, PartitionError> {
        if let Err(refusal) = self.check_read(now, true) {
            return Ok(refusal);
        }
        let (lower, upper) = record_bounds(stream, generation, after);
        let found = self
            .engine
            .scan(lower, upper, Direction::Forward, limit as usize)
            .await?;
        let mut records = Vec::with_capacity(found.len());
        let mut bytes = 0;
        for (key, value) in found {
            if !records.is_empty() && bytes + value.len() > model_stream::READ_BYTES_MAX {
                break;
            }
            let (_, _, position) = parse_record_key(&key).ok_or_else(|| {
                PartitionError::Corrupt(format!(
                    "partition {}: a stream record key does not parse",
                    self.meta.partition
                ))
            })?;
            bytes += value.len();
            records.push(StreamRecordWire {
                position: wire(position),
                record: value,
            });
        }
        let shards = self.shard_records(stream).await?;
        let shard_closed = shards
            .iter()
            .any(|(shard, _, _)| *shard == generation.wrapping_add(1) && generation != u32::MAX);
        let trimmed_through = self.trimmed_through(self.engine.get(&trimmed_key(stream)).await?)?;
        Ok(NodeResponse::Item {
            result: ItemResult::StreamRecords {
                records,
                shard_closed,
                trimmed_through,
                applied_slot: self.applied_slot.0,
            },
            read_units_milli: 0,
            write_units_milli: 0,
        })
    }

    /// A stream's shard records here, oldest first: generation, opening slot, record.
    async fn shard_records(
        &self,
        stream: u64,
    ) -> Result<Vec<(u32, u64, ShardRecord)>, PartitionError> {
        let (lower, upper) = shard_bounds(stream);
        let found = self
            .engine
            .scan(lower, upper, Direction::Forward, SHARDS_READ_MAX)
            .await?;
        found
            .into_iter()
            .map(|(key, value)| {
                let corrupt = || {
                    PartitionError::Corrupt(format!(
                        "partition {}: a stream shard record does not decode",
                        self.meta.partition
                    ))
                };
                let (_, generation, opened_slot) = parse_shard_key(&key).ok_or_else(corrupt)?;
                let record = ShardRecord::decode(&value).map_err(|_| corrupt())?;
                Ok((generation, opened_slot, record))
            })
            .collect()
    }

    /// The first or last record position of a shard, if it has any left.
    async fn shard_end(
        &self,
        stream: u64,
        generation: u32,
        direction: Direction,
    ) -> Result<Option<RecordPosition>, PartitionError> {
        let (lower, upper) = record_bounds(stream, generation, None);
        let found = self.engine.scan(lower, upper, direction, 1).await?;
        Ok(found
            .first()
            .and_then(|(key, _)| parse_record_key(key))
            .map(|(_, _, position)| position))
    }

    /// StreamShards: a stream's shards here, for DescribeStream (strongly consistent).
    pub(super) async fn serve_stream_shards(
        &mut self,
        now: MonotonicTime,
        stream: u64,
    ) -> Result<NodeResponse, PartitionError> {
        if let Err(refusal) = self.check_read(now, true) {
            return Ok(refusal);
        }
        let records = self.shard_records(stream).await?;
        let mut shards = Vec::with_capacity(records.len());
        for (at, (generation, opened_slot, record)) in records.iter().enumerate() {
            shards.push(StreamShardWire {
                generation: *generation,
                opened_slot: *opened_slot,
                opened_ms: record.opened_ms,
                ended: record.ended,
                closed: records.get(at + 1).is_some(),
                first: self
                    .shard_end(stream, *generation, Direction::Forward)
                    .await?
                    .map(wire),
                last: self
                    .shard_end(stream, *generation, Direction::Backward)
                    .await?
                    .map(wire),
            });
        }
        let trimmed_through = self.trimmed_through(self.engine.get(&trimmed_key(stream)).await?)?;
        Ok(NodeResponse::Item {
            result: ItemResult::StreamShards {
                shards,
                trimmed_through,
            },
            read_units_milli: 0,
            write_units_milli: 0,
        })
    }

    /// Whether a maintenance step could do anything here: the partition holds stream keys
    /// (records, a configuration), or a step is proposed. Unknown until the tree's index
    /// region is counted (the first event after opening), so `true` until then.
    pub fn has_stream_upkeep(&self) -> bool {
        self.index_region
            .as_ref()
            .is_none_or(|region| region.stream_keys > 0)
            || self.stream.proposed.is_some()
    }

    /// One maintenance step at a ready leader: rolls the open shard over once it is older than
    /// the rollover period, trims records past the retention (or past the partition's byte
    /// bound, oldest first) and removes shard records nothing refers to any more. Nothing at
    /// all for a partition that never had a stream.
    pub(super) async fn maintain_stream(
        &mut self,
        now: MonotonicTime,
        settings: StreamMaintenance,
    ) -> Result<(), PartitionError> {
        let stream_keys = self
            .index_region
            .as_ref()
            .map_or(0, |region| region.stream_keys);
        if stream_keys == 0 && self.stream.proposed.is_none() {
            return Ok(());
        }
        if self.core.role() != RoleKind::Leader || !self.core.leader_ready() {
            return Ok(());
        }
        if let Some(slot) = self.stream.maintenance_in_flight {
            // A lost leadership drops every waiter, so a slot no waiter holds is settled.
            if self.waiting.contains_key(&slot) {
                return Ok(());
            }
            self.stream.maintenance_in_flight = None;
        }
        let unix_ms = settings.unix_ms;
        let mut mutations = Vec::new();
        let config = self.stream_config().await?;
        let mut rolled = None;
        if let Some(config) = config
            && unix_ms
                >= config
                    .generation_opened_ms
                    .saturating_add(settings.shard_rollover_ms)
        {
            let next = StreamConfig {
                generation: config.generation + 1,
                generation_opened_ms: unix_ms,
                ..config
            };
            mutations.push(Mutation::Put {
                key: config_key(),
                value: next.encode(),
            });
            mutations.push(Mutation::Put {
                key: pending_shard_key(config.stream, next.generation),
                value: ShardRecord {
                    opened_ms: unix_ms,
                    ended: false,
                }
                .encode(),
            });
            rolled = Some(next);
        }
        self.trim_stream_records(settings, &mut mutations).await?;
        self.remove_stale_shards(settings, &mut mutations).await?;
        if mutations.is_empty() {
            return Ok(());
        }
        let batch = MutationBatch { mutations };
        let Some((slot, actions)) = self.propose_unanswered(now, batch).await? else {
            return Ok(());
        };
        if let Some(next) = rolled {
            self.stream.proposed = Some((slot, Some(next)));
        }
        self.stream.maintenance_in_flight = Some(slot);
        self.execute(now, actions).await
    }

    /// Deletes the oldest records while they are past the retention or the partition holds
    /// more record bytes than its bound (invariant 4), and records per stream the last
    /// position removed.
    async fn trim_stream_records(
        &self,
        settings: StreamMaintenance,
        mutations: &mut Vec<Mutation>,
    ) -> Result<(), PartitionError> {
        let record_bytes = self
            .index_region
            .as_ref()
            .map_or(0, |region| region.stream_record_bytes);
        let mut excess = record_bytes.saturating_sub(model_stream::PARTITION_RECORD_BYTES_MAX);
        let found = self
            .engine
            .scan(
                Bound::Included(model_stream::records_start()),
                Bound::Excluded(model_stream::records_end()),
                Direction::Forward,
                model_stream::TRIM_RECORDS_PER_STEP_MAX,
            )
            .await?;
        let mut trimmed: BTreeMap<u64, RecordPosition> = BTreeMap::new();
        for (key, value) in found {
            let corrupt = || {
                PartitionError::Corrupt(format!(
                    "partition {}: a stream record does not decode",
                    self.meta.partition
                ))
            };
            let created_ms = record_created_ms(&value).ok_or_else(corrupt)?;
            let expired = created_ms.saturating_add(settings.retention_ms) <= settings.unix_ms;
            if !expired && excess == 0 {
                // Streams and their records sort oldest first: the rest are younger.
                break;
            }
            let (stream, _, position) = parse_record_key(&key).ok_or_else(corrupt)?;
            excess = excess.saturating_sub((key.len() + value.len()) as u64);
            trimmed.insert(stream, position);
            mutations.push(Mutation::Delete { key });
        }
        for (stream, position) in trimmed {
            mutations.push(Mutation::Put {
                key: trimmed_key(stream),
                value: model_stream::encode_position(position),
            });
        }
        Ok(())
    }

    /// Removes the shard records of shards closed longer ago than the retention whose records
    /// are all gone, and, once only its end marker is left, a disabled stream's last records.
    async fn remove_stale_shards(
        &self,
        settings: StreamMaintenance,
        mutations: &mut Vec<Mutation>,
    ) -> Result<(), PartitionError> {
        let found = self
            .engine
            .scan(
                Bound::Included(model_stream::shards_start()),
                Bound::Excluded(model_stream::shards_end()),
                Direction::Forward,
                SHARDS_READ_MAX,
            )
            .await?;
        let mut shards = Vec::with_capacity(found.len());
        for (key, value) in found {
            let corrupt = || {
                PartitionError::Corrupt(format!(
                    "partition {}: a stream shard record does not decode",
                    self.meta.partition
                ))
            };
            let (stream, generation, _) = parse_shard_key(&key).ok_or_else(corrupt)?;
            let record = ShardRecord::decode(&value).map_err(|_| corrupt())?;
            shards.push((stream, generation, record, key));
        }
        let retained =
            |opened_ms: u64| opened_ms.saturating_add(settings.retention_ms) > settings.unix_ms;
        // Shards leave from the front of their stream only (invariant 4), so the generations
        // left are always consecutive: an empty shard is not removed before an older one that
        // still has records.
        let mut kept_stream = None;
        for (at, (stream, generation, record, key)) in shards.iter().enumerate() {
            if kept_stream == Some(*stream) {
                continue;
            }
            let successor = shards
                .get(at + 1)
                .filter(|(next_stream, ..)| next_stream == stream);
            let stale = match successor {
                // Closed since the successor opened; its records are older than that.
                Some((_, _, next, _)) => {
                    !retained(next.opened_ms)
                        && self
                            .shard_end(*stream, *generation, Direction::Forward)
                            .await?
                            .is_none()
                }
                // A disabled stream's end marker, the last of its shard records.
                None if record.ended => {
                    let first_of_stream = at == 0 || shards[at - 1].0 != *stream;
                    first_of_stream && !retained(record.opened_ms)
                }
                None => false,
            };
            if !stale {
                kept_stream = Some(*stream);
                continue;
            }
            mutations.push(Mutation::Delete { key: key.clone() });
            if record.ended {
                mutations.push(Mutation::Delete {
                    key: trimmed_key(*stream),
                });
            }
        }
        Ok(())
    }
}
