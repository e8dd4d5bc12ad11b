//! Secondary indexes: their limits and definitions, and for local secondary indexes (LSIs) the
//! storage keys of their entries and the entry changes a write makes.
//!
//! An LSI lives in its base partition's B-tree, in a key region no item key can reach (layout
//! in FORMAT.md, "Local secondary index entries"). Its entries change in the same mutation batch
//! as the item, so the index and the items always agree at every applied log position.
//!
//! Invariants:
//! 1. An item is in an LSI exactly when it has the index's sort key attribute with the index's
//!    key type (sparse index); its one entry key is [`entry_key`] of the item's storage key and
//!    that value.
//! 2. For one index and partition key, entry keys order as (index sort value in DynamoDB's
//!    order, table sort key bytes): [`escape_sort_key`] is order-preserving and prefix-free.
//! 3. No entry key is an item storage key: item keys carry a partition-key length (at most
//!    [`crate::key::PARTITION_KEY_BYTES_MAX`]) in bytes 8-9, so byte 8 is at most 0x08, and
//!    every entry key starts with [`INDEX_REGION_PREFIX`], nine 0xFF bytes.

use std::ops::Bound;

use crate::error::{Result, validation};
use crate::expression::key_condition::{ByteRange, KeyCondition, SortKeyCondition};
use crate::key::{
    KeyAttribute, KeySchema, PARTITION_KEY_BYTES_MAX, STORAGE_KEY_PREFIX_BYTES, sort_key_bytes,
    storage_key_prefix,
};
use crate::value::{AttributeValue, Item};

pub mod global;

/// DynamoDB's per-table quota of local secondary indexes.
pub const LOCAL_SECONDARY_INDEXES_MAX: usize = 5;
/// DynamoDB's default per-table quota of global secondary indexes.
pub const GLOBAL_SECONDARY_INDEXES_MAX: usize = 20;
/// Non-key attributes projected (INCLUDE) across all of a table's indexes, counted per index.
pub const PROJECTED_NON_KEY_ATTRIBUTES_MAX: usize = 100;
/// IndexName length bounds (DynamoDB's API model).
pub const INDEX_NAME_BYTES_MIN: usize = 3;
pub const INDEX_NAME_BYTES_MAX: usize = 255;
/// The item collection size (items plus their LSI entries, per partition key) above which a
/// table with LSIs refuses writes that grow the collection: DynamoDB's 10 GB.
pub const ITEM_COLLECTION_BYTES_MAX: u64 = 10 * 1024 * 1024 * 1024;
/// Bytes DynamoDB adds to each index entry's size for its bookkeeping (capacity and sizes).
pub const INDEX_ENTRY_OVERHEAD_BYTES: usize = 100;

/// The first bytes of every LSI entry key (invariant 3).
pub const INDEX_REGION_PREFIX: [u8; 9] = [0xFF; 9];
/// Bytes of an entry key before the partition-key prefix: the region and the index number.
pub const ENTRY_KEY_HEADER_BYTES: usize = INDEX_REGION_PREFIX.len() + 1;
// Invariant 3: the length field's high byte stays below the region's 0xFF.
const _: () = assert!(PARTITION_KEY_BYTES_MAX >> 8 < 0xFF);
const _: () = assert!(LOCAL_SECONDARY_INDEXES_MAX <= u8::MAX as usize);

/// Which attributes an index holds besides the keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Projection {
    /// Every attribute.
    All,
    /// The table and index keys only.
    KeysOnly,
    /// The keys and these non-key attributes.
    Include(Vec<String>),
}

impl Projection {
    /// Whether an index with this projection holds attribute `name`, given whether `name` is a
    /// key attribute of the table or the index (keys are always projected).
    pub fn holds(&self, name: &str, is_key: bool) -> bool {
        match self {
            Projection::All => true,
            _ if is_key => true,
            Projection::KeysOnly => false,
            Projection::Include(names) => names.iter().any(|included| included == name),
        }
    }

    /// The attributes of `item` an index with this projection holds (`is_key` as above).
    pub fn apply(&self, item: &Item, is_key: impl Fn(&str) -> bool) -> Item {
        match self {
            Projection::All => item.clone(),
            _ => item
                .iter()
                .filter(|(name, _)| self.holds(name, is_key(name)))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        }
    }

    /// DynamoDB's ProjectionType.
    pub fn type_name(&self) -> &'static str {
        match self {
            Projection::All => "ALL",
            Projection::KeysOnly => "KEYS_ONLY",
            Projection::Include(_) => "INCLUDE",
        }
    }
}

/// A local secondary index as its partition needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalIndex {
    /// IndexName, for the messages a partition gives.
    pub name: String,
    /// The index's position in the table's LocalSecondaryIndexes at CreateTable, fixed for the
    /// table's life: entry keys carry it.
    pub number: u8,
    /// The index's sort key (its partition key is the table's).
    pub sort_key: KeyAttribute,
    pub projection: Projection,
}

impl LocalIndex {
    /// The index's key schema: the table's partition key and the index sort key.
    pub fn key_schema(&self, table: &KeySchema) -> KeySchema {
        KeySchema {
            partition: table.partition.clone(),
            sort: Some(self.sort_key.clone()),
        }
    }

    /// Whether an attribute is in the index's entries.
    pub fn projects(&self, table: &KeySchema, name: &str) -> bool {
        self.projection.holds(
            name,
            table.is_key_attribute(name) || name == self.sort_key.name,
        )
    }

    /// The index entry of `item`: its projected attributes (what a read of the index returns
    /// without fetching the base item).
    pub fn project(&self, table: &KeySchema, item: &Item) -> Item {
        self.projection.apply(item, |name| {
            table.is_key_attribute(name) || name == self.sort_key.name
        })
    }

    /// The index sort value of `item`, when the item is in the index (invariant 1).
    pub fn sort_value<'item>(&self, item: &'item Item) -> Option<&'item AttributeValue> {
        item.get(&self.sort_key.name)
            .filter(|value| self.sort_key.key_type.matches(value))
    }
}

/// The message DynamoDB gives a write whose item has an index key attribute of another type.
pub fn index_key_type_mismatch(
    attribute: &KeyAttribute,
    actual: &AttributeValue,
    index_name: &str,
) -> String {
    format!(
        "One or more parameter values were invalid: Type mismatch for Index Key {} Expected: {} Actual: {} IndexName: {index_name}",
        attribute.name,
        attribute.key_type.type_name(),
        actual.type_name()
    )
}

/// The order-preserving, prefix-free form of a sort key's bytes inside an entry key: each 0x00
/// byte becomes 0x00 0xFF, and 0x00 0x00 ends it (invariant 2).
pub fn escape_sort_key(bytes: &[u8], output: &mut Vec<u8>) {
    for byte in bytes {
        output.push(*byte);
        if *byte == 0x00 {
            output.push(0xFF);
        }
    }
    output.extend_from_slice(&[0x00, 0x00]);
}

/// The escaped form's bytes for `bytes` without its terminator: a begins_with bound.
fn escape_without_terminator(bytes: &[u8], output: &mut Vec<u8>) {
    escape_sort_key(bytes, output);
    output.truncate(output.len() - 2);
}

/// The partition-key prefix of an item storage key and the table sort key bytes after it.
fn split_storage_key(storage_key: &[u8]) -> Option<(&[u8], &[u8])> {
    let length = u16::from_be_bytes(storage_key.get(8..10)?.try_into().ok()?);
    let prefix_bytes = STORAGE_KEY_PREFIX_BYTES + usize::from(length);
    if storage_key.len() < prefix_bytes {
        return None;
    }
    Some(storage_key.split_at(prefix_bytes))
}

/// The start of index `number`'s key region.
pub fn index_region_start(number: u8) -> Vec<u8> {
    let mut key = INDEX_REGION_PREFIX.to_vec();
    key.push(number);
    key
}

/// The end (exclusive) of index `number`'s key region.
pub fn index_region_end(number: u8) -> Vec<u8> {
    match number.checked_add(1) {
        Some(next) => index_region_start(next),
        None => {
            let mut key = INDEX_REGION_PREFIX.to_vec();
            key.push(0xFF);
            key.push(0xFF);
            key
        }
    }
}

/// The entry key of the item stored at `storage_key` in index `number` with index sort value
/// `sort_value` (layout in FORMAT.md). `None` for a malformed storage key or a non-key value.
pub fn entry_key(number: u8, storage_key: &[u8], sort_value: &AttributeValue) -> Option<Vec<u8>> {
    let (prefix, table_sort) = split_storage_key(storage_key)?;
    let sort_bytes = sort_key_bytes(sort_value)?;
    let mut key = Vec::with_capacity(
        ENTRY_KEY_HEADER_BYTES + prefix.len() + 2 * sort_bytes.len() + 2 + table_sort.len(),
    );
    key.extend_from_slice(&INDEX_REGION_PREFIX);
    key.push(number);
    key.extend_from_slice(prefix);
    escape_sort_key(&sort_bytes, &mut key);
    key.extend_from_slice(table_sort);
    Some(key)
}

/// The item storage key an entry key points at: its partition-key prefix followed by the table
/// sort key bytes after the escaped index sort key. `None` for bytes that are not an entry key.
pub fn base_storage_key(entry_key: &[u8]) -> Option<Vec<u8>> {
    let rest = entry_key.strip_prefix(&INDEX_REGION_PREFIX[..])?.get(1..)?;
    let (prefix, after_prefix) = split_storage_key(rest)?;
    let mut position = 0;
    loop {
        match (after_prefix.get(position)?, after_prefix.get(position + 1)) {
            (0x00, Some(0x00)) => break,
            (0x00, Some(0xFF)) => position += 2,
            (0x00, _) => return None,
            _ => position += 1,
        }
    }
    let mut key = prefix.to_vec();
    key.extend_from_slice(&after_prefix[position + 2..]);
    Some(key)
}

/// The partition hash an entry key carries, for routing an index Scan's start key.
pub fn entry_key_hash(entry_key: &[u8]) -> Option<u64> {
    let rest = entry_key.strip_prefix(&INDEX_REGION_PREFIX[..])?.get(1..)?;
    crate::key::storage_key_hash(rest)
}

/// The entry-key range of index `number` that holds exactly what `condition` selects (its sort
/// condition is on the index sort key). `None` if the partition value is not a key type.
pub fn query_bounds(number: u8, condition: &KeyCondition) -> Option<ByteRange> {
    escaped_query_bounds(index_region_start(number), condition)
}

/// The range of keys `header ‖ prefix(partition value) ‖ escaped sort value ‖ rest` that
/// `condition` selects: the layout of LSI entries (after their region and number) and of GSI
/// entries (with an empty header).
pub(crate) fn escaped_query_bounds(header: Vec<u8>, condition: &KeyCondition) -> Option<ByteRange> {
    let mut prefix = header;
    prefix.extend_from_slice(&storage_key_prefix(&condition.partition_value)?);
    Some(escaped_sort_bounds(prefix, condition.sort.as_ref()))
}

/// The range of keys `prefix ‖ escaped sort value ‖ rest` whose sort value `sort` selects
/// (all of them for `None`).
pub(crate) fn escaped_sort_bounds(prefix: Vec<u8>, sort: Option<&SortKeyCondition>) -> ByteRange {
    let with = |value: &AttributeValue, terminator: Option<u8>| -> Vec<u8> {
        let mut key = prefix.clone();
        let bytes = sort_key_bytes(value).unwrap_or_default();
        match terminator {
            // Every entry of this value starts with the escaped value and 0x00 0x00; the
            // first key after all of them ends 0x00 0x01.
            Some(last) => {
                escape_without_terminator(&bytes, &mut key);
                key.extend_from_slice(&[0x00, last]);
            }
            None => escape_without_terminator(&bytes, &mut key),
        }
        key
    };
    let first_of = |value: &AttributeValue| with(value, Some(0x00));
    let after = |value: &AttributeValue| with(value, Some(0x01));
    let start = Bound::Included(prefix.clone());
    let end = || successor(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
    match sort {
        None => (start, end()),
        Some(SortKeyCondition::Equal(value)) => (
            Bound::Included(first_of(value)),
            Bound::Excluded(after(value)),
        ),
        Some(SortKeyCondition::Less(value)) => (start, Bound::Excluded(first_of(value))),
        Some(SortKeyCondition::LessOrEqual(value)) => (start, Bound::Excluded(after(value))),
        Some(SortKeyCondition::Greater(value)) => (Bound::Included(after(value)), end()),
        Some(SortKeyCondition::GreaterOrEqual(value)) => (Bound::Included(first_of(value)), end()),
        Some(SortKeyCondition::Between(lower, upper)) => (
            Bound::Included(first_of(lower)),
            Bound::Excluded(after(upper)),
        ),
        Some(SortKeyCondition::BeginsWith(value)) => {
            let begin = with(value, None);
            let upper = successor(&begin).map_or_else(end, Bound::Excluded);
            (Bound::Included(begin), upper)
        }
    }
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
pub(crate) fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

/// The entry-key range of a Scan of index `number` over the hash range [`lower`, `upper`) of
/// item storage keys (as [`crate::request::segment_bounds`] gives them).
pub fn scan_bounds(number: u8, lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> ByteRange {
    let within = |bytes: &[u8]| {
        let mut key = index_region_start(number);
        key.extend_from_slice(bytes);
        key
    };
    let lower = match lower {
        Bound::Unbounded => Bound::Included(index_region_start(number)),
        Bound::Included(bytes) => Bound::Included(within(bytes)),
        Bound::Excluded(bytes) => Bound::Excluded(within(bytes)),
    };
    let upper = match upper {
        Bound::Unbounded => Bound::Excluded(index_region_end(number)),
        Bound::Included(bytes) => Bound::Included(within(bytes)),
        Bound::Excluded(bytes) => Bound::Excluded(within(bytes)),
    };
    (lower, upper)
}

/// The byte after [`INDEX_REGION_PREFIX`] that starts the item-collection size records, after
/// every index number's region.
pub const COLLECTION_REGION_MARKER: u8 = 0xFE;
const _: () = assert!(LOCAL_SECONDARY_INDEXES_MAX < COLLECTION_REGION_MARKER as usize);
/// The byte after [`INDEX_REGION_PREFIX`] of the applied-chain record: the one key after every
/// collection record (engine/model FORMAT.md, "The applied chain").
pub const APPLIED_CHAIN_MARKER: u8 = 0xFF;
const _: () = assert!(COLLECTION_REGION_MARKER < APPLIED_CHAIN_MARKER);

/// The byte after [`INDEX_REGION_PREFIX`] of the membership record: the slot of the membership
/// entry that set the replica's applied membership (engine/model FORMAT.md, "The membership
/// record"), below the transaction locks' region.
pub const MEMBERSHIP_CONFIG_MARKER: u8 = 0xF3;
const _: () = assert!((LOCAL_SECONDARY_INDEXES_MAX as u8) < MEMBERSHIP_CONFIG_MARKER);
const _: () = assert!(MEMBERSHIP_CONFIG_MARKER < crate::transaction::LOCK_MARKER);

/// The key of the membership record (its value: the slot, u64 little-endian). Absent means
/// slot 0: the group's initial membership.
pub fn membership_config_key() -> Vec<u8> {
    let mut key = INDEX_REGION_PREFIX.to_vec();
    key.push(MEMBERSHIP_CONFIG_MARKER);
    key
}

/// The key of the applied-chain record, the last key of the tree's index region.
pub fn applied_chain_key() -> Vec<u8> {
    let mut key = INDEX_REGION_PREFIX.to_vec();
    key.push(APPLIED_CHAIN_MARKER);
    key
}

/// What a log slot holds, as the applied chain counts it.
#[derive(Clone, Copy, Debug)]
pub enum ChainedEntry<'a> {
    /// A command: its bytes, exactly as committed.
    Command(&'a [u8]),
    Noop,
    Membership,
}

/// The applied chain after `entry` at `slot`, from the chain `previous` before it: xxh3-64
/// (seed 0) of `previous` (u64 LE), `slot` (u64 LE), a kind byte (`C` command, `N` no-op, `M`
/// membership) and, for a command, its bytes. Two replicas that applied the same entries
/// hold the same chain; a leader that evaluated a write against another history expects
/// another chain, and the write is applied as a no-op (FORMAT.md, "The applied chain").
pub fn chain_step(previous: u64, slot: u64, entry: ChainedEntry<'_>) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&previous.to_le_bytes());
    hasher.update(&slot.to_le_bytes());
    match entry {
        ChainedEntry::Command(bytes) => {
            hasher.update(b"C");
            hasher.update(bytes);
        }
        ChainedEntry::Noop => hasher.update(b"N"),
        ChainedEntry::Membership => hasher.update(b"M"),
    }
    hasher.digest()
}

/// The one attribute of an item-collection size record: the collection's bytes (N).
pub const COLLECTION_BYTES_ATTRIBUTE: &str = "bytes";

/// The key of the size record of the item collection (the items of one partition key, with
/// their index entries) that the item at `storage_key` belongs to (FORMAT.md).
pub fn collection_key(storage_key: &[u8]) -> Option<Vec<u8>> {
    let (prefix, _) = split_storage_key(storage_key)?;
    let mut key = INDEX_REGION_PREFIX.to_vec();
    key.push(COLLECTION_REGION_MARKER);
    key.extend_from_slice(prefix);
    Some(key)
}

/// The size record's content: an item holding the collection's bytes, stored in the item
/// encoding so the leader reads it like an item (its overlay included).
pub fn collection_record(bytes: u64) -> Item {
    Item::from([(
        COLLECTION_BYTES_ATTRIBUTE.to_string(),
        AttributeValue::Number(crate::Number::from(bytes)),
    )])
}

/// The bytes a size record holds; `None` for a record that is not one.
pub fn collection_bytes(record: &Item) -> Option<u64> {
    match record.get(COLLECTION_BYTES_ATTRIBUTE) {
        Some(AttributeValue::Number(number)) => number.to_string().parse().ok(),
        _ => None,
    }
}

/// What `item` adds to its item collection: its own size and its entries' in every index that
/// holds it, each with DynamoDB's per-entry overhead.
pub fn collection_share(indexes: &[LocalIndex], table: &KeySchema, item: &Item) -> u64 {
    let entries: usize = indexes
        .iter()
        .filter(|index| index.sort_value(item).is_some())
        .map(|index| entry_size_bytes(index, table, item))
        .sum();
    (crate::value::item_size_bytes(item) + entries) as u64
}

/// DynamoDB's SizeEstimateRangeGB for a collection of `bytes`: the whole gigabytes below it
/// and the next one, a range that always holds the size.
pub fn size_estimate_range_gb(bytes: u64) -> [f64; 2] {
    let lower = (bytes >> 30) as f64;
    [lower, lower + 1.0]
}

/// What one write does to one index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexChange {
    pub number: u8,
    /// The entry removed (the old image's, when the new one has another or none).
    pub delete: Option<Vec<u8>>,
    /// The entry written (the new image's, when the old one had another or none).
    pub put: Option<Vec<u8>>,
    /// Bytes of index entries written, for write capacity: each entry written or rewritten
    /// (a projected attribute changed) counts with its projected size; a delete counts with
    /// the old entry's size.
    pub written_entry_bytes: Vec<usize>,
}

/// The size of an item's index entry as capacity counts it (reads and writes of the index):
/// the projected attributes, keys included.
pub fn projected_size_bytes(index: &LocalIndex, table: &KeySchema, item: &Item) -> usize {
    crate::value::item_size_bytes(&index.project(table, item))
}

/// The size an index entry adds to storage and to its item collection: the projected item
/// plus DynamoDB's per-entry overhead.
pub fn entry_size_bytes(index: &LocalIndex, table: &KeySchema, item: &Item) -> usize {
    projected_size_bytes(index, table, item) + INDEX_ENTRY_OVERHEAD_BYTES
}

/// The changes to `indexes` of a write that turns `old` into `new` at `storage_key`, derived
/// from the two images (invariant 1). Refuses a new image whose index key attribute has
/// another type or is an empty string, as DynamoDB does.
pub fn index_changes(
    indexes: &[LocalIndex],
    table: &KeySchema,
    storage_key: &[u8],
    old: Option<&Item>,
    new: Option<&Item>,
) -> Result<Vec<IndexChange>> {
    let mut changes = Vec::new();
    for index in indexes {
        if let Some(item) = new
            && let Some(value) = item.get(&index.sort_key.name)
            && !index.sort_key.key_type.matches(value)
        {
            return Err(validation(index_key_type_mismatch(
                &index.sort_key,
                value,
                &index.name,
            )));
        }
        let entry = |item: Option<&Item>| -> Result<Option<Vec<u8>>> {
            let Some(value) = item.and_then(|item| index.sort_value(item)) else {
                return Ok(None);
            };
            let (length, kind) = match value {
                AttributeValue::String(text) => (text.len(), "string"),
                AttributeValue::Binary(bytes) => (bytes.len(), "binary"),
                _ => (1, ""),
            };
            if length == 0 {
                return Err(validation(format!(
                    "One or more parameter values are not valid. A value specified for a secondary index key is not supported. The AttributeValue for a key attribute cannot contain an empty {kind} value. IndexName: {}, IndexKey: {}",
                    index.name, index.sort_key.name
                )));
            }
            if length > crate::key::SORT_KEY_BYTES_MAX {
                return Err(validation(crate::messages::SORT_KEY_TOO_LARGE));
            }
            entry_key(index.number, storage_key, value)
                .map(Some)
                .ok_or_else(|| validation(crate::messages::KEY_DOES_NOT_MATCH_SCHEMA))
        };
        let old_entry = entry(old)?;
        let new_entry = entry(new)?;
        let mut change = IndexChange {
            number: index.number,
            delete: None,
            put: None,
            written_entry_bytes: Vec::new(),
        };
        if old_entry != new_entry {
            if let (Some(key), Some(item)) = (&old_entry, old) {
                change.delete = Some(key.clone());
                change
                    .written_entry_bytes
                    .push(projected_size_bytes(index, table, item));
            }
            if let (Some(key), Some(item)) = (&new_entry, new) {
                change.put = Some(key.clone());
                change
                    .written_entry_bytes
                    .push(projected_size_bytes(index, table, item));
            }
        } else if let (Some(_), Some(old_item), Some(new_item)) = (&new_entry, old, new)
            && index.project(table, old_item) != index.project(table, new_item)
        {
            // Same entry key, but what the entry holds changed: DynamoDB rewrites the entry.
            change
                .written_entry_bytes
                .push(projected_size_bytes(index, table, new_item));
        }
        if !change.written_entry_bytes.is_empty() {
            changes.push(change);
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests;
