//! Local secondary indexes at the partition: the entry mutations a write adds to its batch, and
//! Query and Scan over an index's entries.
//!
//! Entries live in the partition's own B-tree (layout in shoal-model's FORMAT.md, "Local
//! secondary index entries"), so a write and its index changes are one mutation batch, applied
//! at one log slot on every replica (atomically, in log order, replayed by recovery and carried
//! by snapshots like any key). An entry's value is empty: a read of the index finds the item
//! through the entry and projects it, so an entry can never disagree with its item.

use std::collections::BTreeMap;
use std::ops::Bound;

use shoal_io::Storage;
use shoal_model::encoding::{decode_item, encode_item};
use shoal_model::expression::evaluate::evaluate;
use shoal_model::expression::projection::project;
use shoal_model::index::global::is_outbox_key;
use shoal_model::index::{
    INDEX_REGION_PREFIX, LOCAL_SECONDARY_INDEXES_MAX, base_storage_key, collection_key,
    collection_record, collection_share, index_changes, projected_size_bytes,
};
use shoal_model::key::KeySchema;
use shoal_model::request::{IndexRead, RangeRequest, WriteRequest};
use shoal_model::value::{item_size_bytes, read_capacity_units, write_capacity_units};
use shoal_model::{Error as ModelError, Item};
use shoal_store::btree::{Direction, KEY_BYTES_MAX};
use shoal_store::engine::{Mutation, MutationBatch, Partition};
use shoal_wire::messages::{CollectionSize, ItemResult, NodeError, NodeResponse};

use crate::replica::PartitionError;

/// Entries read from the tree per scan call of an index read.
const INDEX_SCAN_BATCH_ENTRIES: usize = 128;

/// A write's index entry mutations and the write capacity they cost, in units.
pub(crate) struct IndexWrites {
    pub mutations: Vec<Mutation>,
    pub write_units: u64,
    /// The write units of each index, by index number (ConsumedCapacity INDEXES).
    pub units_by_index: Vec<u64>,
}

/// The entry mutations of `write`, which turns `old` into `new`: derived from the two images the
/// leader evaluated, so they go into the same batch as the item.
pub(crate) fn index_writes(
    write: &WriteRequest,
    key_schema: &KeySchema,
    old: Option<&Item>,
    new: Option<&Item>,
) -> Result<IndexWrites, ModelError> {
    let changes = index_changes(
        &write.local_indexes,
        key_schema,
        &write.storage_key,
        old,
        new,
    )?;
    let indexes_count = write
        .local_indexes
        .iter()
        .map(|index| usize::from(index.number) + 1)
        .max()
        .unwrap_or(0);
    let mut writes = IndexWrites {
        mutations: Vec::new(),
        write_units: 0,
        units_by_index: vec![0; indexes_count],
    };
    for change in changes {
        if let Some(key) = change.delete {
            writes.mutations.push(Mutation::Delete { key });
        }
        if let Some(key) = change.put {
            if key.len() > KEY_BYTES_MAX {
                // Only keys near every DynamoDB key limit at once get here: the entry holds the
                // partition key, the index sort key and the table sort key.
                let name = write
                    .local_indexes
                    .iter()
                    .find(|index| index.number == change.number)
                    .map_or("", |index| index.name.as_str());
                return Err(ModelError::Validation(format!(
                    "One or more parameter values were invalid: the partition key, sort key and index sort key of index {name} take {} bytes together in the index entry, more than the {KEY_BYTES_MAX} this server stores",
                    key.len()
                )));
            }
            writes.mutations.push(Mutation::Put {
                key,
                value: Vec::new(),
            });
        }
        let units = change
            .written_entry_bytes
            .iter()
            .map(|bytes| write_capacity_units(*bytes))
            .sum::<u64>();
        writes.write_units += units;
        if let Some(slot) = writes.units_by_index.get_mut(usize::from(change.number)) {
            *slot += units;
        }
    }
    Ok(writes)
}

/// The exception DynamoDB names when a write would grow an item collection past its limit.
pub const ITEM_COLLECTION_SIZE_LIMIT_EXCEEDED: &str = "ItemCollectionSizeLimitExceededException";
/// Its message.
pub const ITEM_COLLECTION_TOO_LARGE: &str = "Item collection size limit exceeded";

/// The size record key of the item collection a write changes, for a table with local indexes
/// (DynamoDB keeps item collections only for those).
pub(crate) fn collection_of(write: &WriteRequest) -> Option<Vec<u8>> {
    if write.local_indexes.is_empty() {
        return None;
    }
    collection_key(&write.storage_key)
}

/// ItemCollectionMetrics' ItemCollectionKey: the partition key attribute of the write.
pub(crate) fn collection_key_item(write: &WriteRequest, key_schema: &KeySchema) -> Item {
    write
        .key
        .iter()
        .filter(|(name, _)| **name == key_schema.partition.name)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// A batch write's answer: `BatchWrite`, or for a table with local indexes the final size of
/// each collection it wrote to (the last write of a collection carries its size after all).
pub(crate) fn batch_result<'a>(
    writes: impl Iterator<Item = (&'a WriteRequest, u64)>,
    key_schema: &KeySchema,
) -> ItemResult {
    let mut sizes: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for (write, bytes) in writes {
        sizes.insert(encode_item(&collection_key_item(write, key_schema)), bytes);
    }
    if sizes.is_empty() {
        return ItemResult::BatchWrite;
    }
    ItemResult::BatchWriteInCollections {
        collections: sizes
            .into_iter()
            .map(|(key, bytes)| CollectionSize { key, bytes })
            .collect(),
    }
}

/// The collection's new size after a write that turns `old` into `new`, and the mutation of
/// its size record; a write that would grow the collection past `bytes_max` is refused (one
/// that shrinks it, or keeps it, is not, so a collection over the limit can always be cut).
pub(crate) fn collection_change(
    write: &WriteRequest,
    key_schema: &KeySchema,
    record_key: Vec<u8>,
    before: u64,
    old: Option<&Item>,
    new: Option<&Item>,
    bytes_max: u64,
) -> Result<(Mutation, (Vec<u8>, u64)), NodeResponse> {
    let share = |item: Option<&Item>| {
        item.map_or(0, |item| {
            collection_share(&write.local_indexes, key_schema, item)
        })
    };
    let after = before.saturating_sub(share(old)).saturating_add(share(new));
    if after > bytes_max && after > before {
        return Err(NodeResponse::Error(NodeError::Dynamo {
            type_name: ITEM_COLLECTION_SIZE_LIMIT_EXCEEDED.to_string(),
            message: ITEM_COLLECTION_TOO_LARGE.to_string(),
            item: None,
        }));
    }
    let mutation = if after == 0 {
        Mutation::Delete {
            key: record_key.clone(),
        }
    } else {
        Mutation::Put {
            key: record_key.clone(),
            value: encode_item(&collection_record(after)),
        }
    };
    Ok((mutation, (record_key, after)))
}

/// Entries read per scan call while counting the index region.
const REGION_COUNT_BATCH_KEYS: usize = 512;

/// The keys of the tree's local-index region (engine/model FORMAT.md): how many and their key
/// plus value bytes, as the tree counts its items.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RegionStats {
    pub count: u64,
    pub bytes: u64,
    /// Of those, the GSI outbox records (shoal_model::index::global): what the leader's
    /// backpressure bounds.
    pub outbox_entries: u64,
    /// Of those, the keys of DynamoDB Streams (shoal_model::stream: records, shards, the
    /// configuration and trim records): none means the partition has no stream work.
    pub stream_keys: u64,
    /// The key plus value bytes of the stream records alone: what the trim bounds.
    pub stream_record_bytes: u64,
    /// Of those, the entries of each local secondary index (by index number) and their key
    /// plus value bytes: DescribeTable's ItemCount and IndexSizeBytes of the index.
    pub local_entries: [u64; LOCAL_SECONDARY_INDEXES_MAX],
    pub local_entry_bytes: [u64; LOCAL_SECONDARY_INDEXES_MAX],
}

/// The number of the local index whose entry `key` is, if it is one (engine/model FORMAT.md:
/// an LSI entry key is the region prefix, then the index number, 0-4).
fn local_index_number(key: &[u8]) -> Option<usize> {
    match key.strip_prefix(&INDEX_REGION_PREFIX[..]) {
        Some([number, ..]) if usize::from(*number) < LOCAL_SECONDARY_INDEXES_MAX => {
            Some(usize::from(*number))
        }
        _ => None,
    }
}

/// Whether `key` is a stream key (any), and whether it is a stream record.
fn stream_key_kind(key: &[u8]) -> (bool, bool) {
    match key.strip_prefix(&INDEX_REGION_PREFIX[..]) {
        Some([marker, ..]) => (
            (shoal_model::stream::CONFIG_MARKER..=shoal_model::stream::TRIMMED_MARKER)
                .contains(marker),
            *marker == shoal_model::stream::RECORD_MARKER,
        ),
        _ => (false, false),
    }
}

impl RegionStats {
    /// Counts the region of a tree (empty, and one scan call, for a table without indexes).
    pub(crate) async fn count<F: Storage>(engine: &Partition<F>) -> Result<Self, PartitionError> {
        let mut stats = RegionStats::default();
        let mut lower = Bound::Included(INDEX_REGION_PREFIX.to_vec());
        // Each pass moves past the keys it read; the region is finite, so the loop ends.
        loop {
            let batch = engine
                .scan(
                    lower.clone(),
                    Bound::Unbounded,
                    Direction::Forward,
                    REGION_COUNT_BATCH_KEYS,
                )
                .await?;
            let exhausted = batch.len() < REGION_COUNT_BATCH_KEYS;
            for (key, value) in batch {
                stats.count += 1;
                stats.bytes += (key.len() + value.len()) as u64;
                if is_outbox_key(&key) {
                    stats.outbox_entries += 1;
                }
                let (stream_key, stream_record) = stream_key_kind(&key);
                stats.stream_keys += u64::from(stream_key);
                if stream_record {
                    stats.stream_record_bytes += (key.len() + value.len()) as u64;
                }
                if let Some(number) = local_index_number(&key) {
                    stats.local_entries[number] += 1;
                    stats.local_entry_bytes[number] += (key.len() + value.len()) as u64;
                }
                lower = Bound::Excluded(key);
            }
            if exhausted {
                return Ok(stats);
            }
        }
    }

    /// Accounts for the region's keys a batch is about to change, in batch order (a batch may
    /// put one collection record twice), against the tree as it is before the batch.
    pub(crate) async fn before_apply<F: Storage>(
        &mut self,
        engine: &Partition<F>,
        batch: &MutationBatch,
    ) -> Result<(), PartitionError> {
        let mut in_batch: BTreeMap<&[u8], Option<usize>> = BTreeMap::new();
        for mutation in &batch.mutations {
            let (key, after) = match mutation {
                Mutation::Put { key, value } => (key, Some(value.len())),
                Mutation::Delete { key } | Mutation::Expire { key } => (key, None),
            };
            if !key.starts_with(&INDEX_REGION_PREFIX) {
                continue;
            }
            let before = match in_batch.get(key.as_slice()) {
                Some(state) => *state,
                None => engine.get(key).await?.map(|value| value.len()),
            };
            let outbox = u64::from(is_outbox_key(key));
            let (stream_key, stream_record) = stream_key_kind(key);
            let record_bytes = |value_bytes: usize| {
                if stream_record {
                    (key.len() + value_bytes) as u64
                } else {
                    0
                }
            };
            let local = local_index_number(key);
            if let Some(value_bytes) = before {
                if let Some(number) = local {
                    self.local_entries[number] = self.local_entries[number].saturating_sub(1);
                    self.local_entry_bytes[number] = self.local_entry_bytes[number]
                        .saturating_sub((key.len() + value_bytes) as u64);
                }
                self.count = self.count.saturating_sub(1);
                self.bytes = self.bytes.saturating_sub((key.len() + value_bytes) as u64);
                self.outbox_entries = self.outbox_entries.saturating_sub(outbox);
                self.stream_keys = self.stream_keys.saturating_sub(u64::from(stream_key));
                self.stream_record_bytes = self
                    .stream_record_bytes
                    .saturating_sub(record_bytes(value_bytes));
            }
            if let Some(value_bytes) = after {
                if let Some(number) = local {
                    self.local_entries[number] += 1;
                    self.local_entry_bytes[number] += (key.len() + value_bytes) as u64;
                }
                self.count += 1;
                self.bytes += (key.len() + value_bytes) as u64;
                self.outbox_entries += outbox;
                self.stream_keys += u64::from(stream_key);
                self.stream_record_bytes += record_bytes(value_bytes);
            }
            in_batch.insert(key, after);
        }
        Ok(())
    }
}

/// The upper bound of a table (not index) read: item keys only, never the index region.
pub(crate) fn items_only(upper: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    let region = INDEX_REGION_PREFIX.to_vec();
    match upper {
        Bound::Unbounded => Bound::Excluded(region),
        Bound::Included(key) | Bound::Excluded(key) if key >= region => Bound::Excluded(region),
        other => other,
    }
}

fn read_units_milli(units: u64, consistent: bool) -> u64 {
    if consistent {
        units * 1000
    } else {
        units * 500
    }
}

/// A Query or Scan page over an index's entries: each entry leads to its item, which is
/// projected to the index (or, when the request needs more, read whole from the base: an LSI
/// fetch, charged as a read of the item). The answer's LastEvaluatedKey is the table key plus
/// the index sort key, as DynamoDB gives it for an index.
pub(crate) async fn read_index_range<F: Storage>(
    engine: &Partition<F>,
    partition: u64,
    key_schema: &KeySchema,
    range: &RangeRequest,
    read: &IndexRead,
) -> Result<(ItemResult, u64), PartitionError> {
    let index = &read.index;
    let direction = if range.forward {
        Direction::Forward
    } else {
        Direction::Backward
    };
    let corrupt = |what: &str| {
        PartitionError::Corrupt(format!(
            "partition {partition}: index {} entry {what}",
            index.name
        ))
    };
    let mut lower = range.lower.clone();
    let mut upper = range.upper.clone();
    let mut items = Vec::new();
    let mut count = 0u64;
    let mut scanned_count = 0usize;
    let mut entry_bytes = 0usize;
    let mut fetch_units = 0u64;
    let mut last_evaluated: Option<Item> = None;
    let mut stopped_early = false;
    'pages: loop {
        let batch = engine
            .scan(
                lower.clone(),
                upper.clone(),
                direction,
                INDEX_SCAN_BATCH_ENTRIES,
            )
            .await?;
        let exhausted = batch.len() < INDEX_SCAN_BATCH_ENTRIES;
        for (entry, _) in batch {
            let storage_key =
                base_storage_key(&entry).ok_or_else(|| corrupt("is not an entry key"))?;
            let bytes = engine
                .get(&storage_key)
                .await?
                .ok_or_else(|| corrupt("points at no item"))?;
            let item = decode_item(&bytes).map_err(|error| {
                PartitionError::Corrupt(format!(
                    "partition {partition}: stored item does not decode: {error}"
                ))
            })?;
            if index.sort_value(&item).is_none() {
                return Err(corrupt("points at an item without the index key"));
            }
            scanned_count += 1;
            entry_bytes += projected_size_bytes(index, key_schema, &item);
            let mut key = key_schema.key_of(&item);
            if let Some(value) = item.get(&index.sort_key.name) {
                key.insert(index.sort_key.name.clone(), value.clone());
            }
            last_evaluated = Some(key);
            let visible = if read.fetch_base {
                fetch_units += read_capacity_units(item_size_bytes(&item));
                item
            } else {
                index.project(key_schema, &item)
            };
            let passes = range
                .filter
                .as_ref()
                .is_none_or(|filter| evaluate(filter, &visible));
            if passes {
                count += 1;
                if !range.count_only {
                    items.push(encode_item(&match &range.projection {
                        Some(paths) => project(&visible, paths),
                        None => visible,
                    }));
                }
            }
            if direction == Direction::Forward {
                lower = Bound::Excluded(entry);
            } else {
                upper = Bound::Excluded(entry);
            }
            if range.limit.is_some_and(|limit| scanned_count >= limit)
                || entry_bytes as u64 >= range.page_bytes_max
            {
                stopped_early = true;
                break 'pages;
            }
        }
        if exhausted {
            break;
        }
    }
    let read_milli = read_units_milli(
        read_capacity_units(entry_bytes) + fetch_units,
        range.consistent,
    );
    let result = ItemResult::Range {
        items,
        count,
        scanned_count: scanned_count as u64,
        scanned_bytes: entry_bytes as u64,
        last_evaluated_key: last_evaluated
            .filter(|_| stopped_early)
            .map(|key| encode_item(&key)),
    };
    Ok((result, read_milli))
}
