//! Global secondary indexes (GSIs): their definitions, the entry keys of their own partitions,
//! and the durable outbox through which a base partition hands its committed index changes to
//! them (layouts in FORMAT.md, "Global secondary indexes").
//!
//! A GSI is partitioned and replicated like a table: its partitions hold one entry per indexed
//! base item, keyed by the index key and then the base item's storage key, valued by the item
//! projected to the index. The base leader turns each write into entry changes when it
//! evaluates the write (it has both images then) and puts them, in the same mutation batch as
//! the item, into the base partition's outbox; applying the batch gives each change its
//! position, (log slot, ordinal). A propagator reads the outbox in position order, applies the
//! changes at the index partitions and then trims what every index partition acknowledged.
//!
//! Invariants:
//! 1. An item is in a GSI exactly when it has every one of the index's key attributes (one or
//!    up to four for the partition key, none or up to four for the sort key) with the index's
//!    key types (sparse index); its one entry key is [`GlobalIndex::entry_key`] of those values
//!    and the item's storage key. Entries of one index partition key sort by their sort key
//!    attributes compared one after another, in DynamoDB's order for each, then by storage
//!    key.
//! 2. Outbox positions increase with the log: a batch's changes get its slot and their order in
//!    it, so reading the outbox in key order replays the base partition's index changes in the
//!    order they were committed.
//! 3. An index partition applies a change only if its position is above the position it has
//!    recorded for the change's base partition, and records the highest position applied in the
//!    same batch. Changes reach one index partition in position order (one propagator sends a
//!    base partition's changes in order; any other sends the same prefix of the same outbox),
//!    so every change is applied once, in order, however often it is sent.
//! 4. No outbox key, pending outbox key or position key is an item or entry key: all live in the
//!    index region (nine 0xFF bytes, see [`super::INDEX_REGION_PREFIX`]).

use std::ops::Bound;

use crate::encoding::{decode_item, encode_item};
use crate::error::{Result, validation};
use crate::expression::key_condition::{ByteRange, KeyCondition};
use crate::index::{INDEX_REGION_PREFIX, Projection, escape_sort_key, index_key_type_mismatch};
use crate::key::{
    KeyAttribute, KeyParts, KeySchema, STORAGE_KEY_PREFIX_BYTES, sort_key_bytes, storage_key_prefix,
};
use crate::value::{AttributeValue, Item, item_size_bytes};

/// The marker after the index region prefix of a base partition's outbox records.
pub const OUTBOX_MARKER: u8 = 0xFD;
/// The marker of an outbox record inside a proposed batch, before apply gives it its slot.
pub const OUTBOX_PENDING_MARKER: u8 = 0xFB;
/// The marker of an index partition's applied-position record of one base partition.
pub const SOURCE_POSITION_MARKER: u8 = 0xFC;
const _: () = assert!(super::LOCAL_SECONDARY_INDEXES_MAX < OUTBOX_PENDING_MARKER as usize);
const _: () = assert!(OUTBOX_PENDING_MARKER < SOURCE_POSITION_MARKER);
const _: () = assert!(SOURCE_POSITION_MARKER < OUTBOX_MARKER);
const _: () = assert!(OUTBOX_MARKER < super::COLLECTION_REGION_MARKER);

/// Outbox records a base partition may hold before its leader refuses writes that would add
/// more: the bound on how far a GSI may lag behind its table (DynamoDB throttles the base
/// table when an index cannot keep up).
pub const OUTBOX_ENTRIES_MAX: u64 = 65_536;
/// Outbox records one propagation read returns at most.
pub const OUTBOX_READ_ENTRIES_MAX: usize = 512;
/// Outbox records one trim removes at most (one log entry of deletes, within a batch's
/// mutation limit): a propagator trims before it has applied more than this since its last.
pub const OUTBOX_TRIM_ENTRIES_MAX: usize = 4_000;
const _: () = assert!(OUTBOX_READ_ENTRIES_MAX <= OUTBOX_TRIM_ENTRIES_MAX);
/// Bytes (keys and projected items) one propagation read returns at most; the last record
/// may cross it.
pub const OUTBOX_READ_BYTES_MAX: usize = 1024 * 1024;
/// The one attribute DynamoDB's error names when Select ALL_ATTRIBUTES reads a GSI that does
/// not project every attribute.
pub fn select_all_attributes_on_partial_gsi(index: &str) -> String {
    format!(
        "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported for global secondary index {index} because its projection type is not ALL"
    )
}
/// DynamoDB's refusal of ConsistentRead on a GSI.
pub const CONSISTENT_READ_ON_GSI: &str =
    "Consistent reads are not supported on global secondary indexes";
/// DynamoDB's message when a write is throttled because an index cannot keep up.
pub const GSI_BACKPRESSURE: &str = "The level of configured provisioned throughput for one or more global secondary indexes of the table was exceeded. Consider increasing your provisioning level for the under-provisioned global secondary indexes with the UpdateTable API";

/// Attributes a GSI partition key may have (DynamoDB's multi-attribute keys).
pub const GSI_PARTITION_KEY_ATTRIBUTES_MAX: usize = 4;
/// Attributes a GSI sort key may have (DynamoDB's multi-attribute keys).
pub const GSI_SORT_KEY_ATTRIBUTES_MAX: usize = 4;

/// A global secondary index as a base partition leader and an index read need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalIndex {
    /// IndexName.
    pub name: String,
    /// Fixed for the index's life and never reused within its table: outbox records carry it.
    pub number: u8,
    /// The partition key's attributes in key order: one, or up to
    /// [`GSI_PARTITION_KEY_ATTRIBUTES_MAX`] for a multi-attribute key.
    pub partition_keys: Vec<KeyAttribute>,
    /// The sort key's attributes in key order: none, one, or up to
    /// [`GSI_SORT_KEY_ATTRIBUTES_MAX`] for a multi-attribute key.
    pub sort_keys: Vec<KeyAttribute>,
    pub projection: Projection,
}

/// What one write does to one GSI entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryChange {
    Delete,
    /// The entry's new value: the item projected to the index, in the binary item encoding.
    Put(Vec<u8>),
}

/// One change of a GSI's entries, as the outbox holds it and a propagator sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalIndexChange {
    pub index_number: u8,
    pub entry_key: Vec<u8>,
    pub change: EntryChange,
}

/// Where an outbox record stands in its base partition's history (invariant 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxPosition {
    pub slot: u64,
    pub ordinal: u32,
}

/// A change with its position, read from an outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionedChange {
    pub position: OutboxPosition,
    pub change: GlobalIndexChange,
}

impl GlobalIndex {
    /// The index's key as a query reads it.
    pub fn key_parts(&self) -> KeyParts<'_> {
        KeyParts {
            partition: &self.partition_keys,
            sort: &self.sort_keys,
        }
    }

    /// The index key attributes, partition key attributes first.
    pub fn key_attributes(&self) -> impl Iterator<Item = &KeyAttribute> {
        self.partition_keys.iter().chain(&self.sort_keys)
    }

    /// Whether an attribute is in the index's entries: the table's and the index's keys always.
    pub fn projects(&self, table: &KeySchema, name: &str) -> bool {
        self.projection.holds(name, self.is_key(table, name))
    }

    /// The entry of `item`: its projected attributes.
    pub fn project(&self, table: &KeySchema, item: &Item) -> Item {
        self.projection.apply(item, |name| self.is_key(table, name))
    }

    /// Whether `name` is a key attribute of the table or of the index.
    fn is_key(&self, table: &KeySchema, name: &str) -> bool {
        table.is_key_attribute(name) || self.key_attributes().any(|key| key.name == name)
    }

    /// Whether `item` is in the index (invariant 1).
    pub fn holds(&self, item: &Item) -> bool {
        self.key_attributes().all(|key| {
            item.get(&key.name)
                .is_some_and(|value| key.key_type.matches(value))
        })
    }

    /// The entry key of the item at `storage_key` (layout in FORMAT.md), when the item is in
    /// the index. `None` for an item outside it or a malformed storage key.
    pub fn entry_key(&self, storage_key: &[u8], item: &Item) -> Option<Vec<u8>> {
        if !self.holds(item) {
            return None;
        }
        let partition_values = self
            .partition_keys
            .iter()
            .map(|key| item.get(&key.name))
            .collect::<Option<Vec<_>>>()?;
        let mut key = index_partition_prefix(&partition_values)?;
        for sort in &self.sort_keys {
            escape_sort_key(&sort_key_bytes(item.get(&sort.name)?)?, &mut key);
        }
        key.extend_from_slice(storage_key);
        Some(key)
    }

    /// Refuses an item whose index key attribute has another type than the index's, or is an
    /// empty string or binary, or too long: DynamoDB's checks and messages.
    pub fn check_item(&self, item: &Item) -> Result<()> {
        for (position, key) in self.key_attributes().enumerate() {
            let in_partition_key = position < self.partition_keys.len();
            let Some(value) = item.get(&key.name) else {
                continue;
            };
            if !key.key_type.matches(value) {
                return Err(validation(index_key_type_mismatch(key, value, &self.name)));
            }
            let (length, kind) = match value {
                AttributeValue::String(text) => (text.len(), "string"),
                AttributeValue::Binary(bytes) => (bytes.len(), "binary"),
                _ => (1, ""),
            };
            if length == 0 {
                return Err(validation(format!(
                    "One or more parameter values are not valid. A value specified for a secondary index key is not supported. The AttributeValue for a key attribute cannot contain an empty {kind} value. IndexName: {}, IndexKey: {}",
                    self.name, key.name
                )));
            }
            let limit = if in_partition_key {
                crate::key::PARTITION_KEY_BYTES_MAX
            } else {
                crate::key::SORT_KEY_BYTES_MAX
            };
            if length > limit {
                return Err(validation(if in_partition_key {
                    crate::messages::PARTITION_KEY_TOO_LARGE
                } else {
                    crate::messages::SORT_KEY_TOO_LARGE
                }));
            }
        }
        Ok(())
    }

    /// The entry-key range that holds exactly what `condition` (on the index key) selects:
    /// the partition prefix, the escaped values of the sort key attributes the condition
    /// fixes, then the range of the next one's escaped values. `None` if the condition's values
    /// are not the index's key (the parser never gives such a condition).
    pub fn query_bounds(&self, condition: &KeyCondition) -> Option<ByteRange> {
        let partition_values: Vec<&AttributeValue> = condition.partition_values().collect();
        if partition_values.len() != self.partition_keys.len()
            || condition.sort_equal_prefix.len() + usize::from(condition.sort.is_some())
                > self.sort_keys.len()
        {
            return None;
        }
        let mut prefix = index_partition_prefix(&partition_values)?;
        for value in &condition.sort_equal_prefix {
            escape_sort_key(&sort_key_bytes(value)?, &mut prefix);
        }
        Some(super::escaped_sort_bounds(prefix, condition.sort.as_ref()))
    }

    /// A GSI read's ExclusiveStartKey: exactly the table's and the index's key attributes
    /// (DynamoDB's LastEvaluatedKey for an index), and the entry key after which to go on.
    pub fn start_key(
        &self,
        parameters: &serde_json::Value,
        table: &KeySchema,
    ) -> Result<Option<(Item, Vec<u8>)>> {
        let Some(json) = parameters
            .get("ExclusiveStartKey")
            .filter(|json| !json.is_null())
        else {
            return Ok(None);
        };
        let invalid = || {
            validation(
                "The provided starting key is invalid: The provided key element does not match the schema",
            )
        };
        let key = crate::json::item_from_json(json)?;
        let mut table_key = key.clone();
        for attribute in self.key_attributes() {
            let value = key.get(&attribute.name).ok_or_else(invalid)?;
            if !attribute.key_type.matches(value) {
                return Err(invalid());
            }
            if !table.is_key_attribute(&attribute.name) {
                table_key.remove(&attribute.name);
            }
        }
        if table.validate_key(&table_key).is_err() {
            return Err(invalid());
        }
        let storage_key = table.storage_key(&table_key).ok_or_else(invalid)?;
        let entry = self.entry_key(&storage_key, &key).ok_or_else(invalid)?;
        Ok(Some((key, entry)))
    }

    /// LastEvaluatedKey of an entry's projected item: the table's and the index's keys.
    pub fn evaluated_key(&self, table: &KeySchema, projected: &Item) -> Item {
        let mut key = table.key_of(projected);
        for attribute in self.key_attributes() {
            if let Some(value) = projected.get(&attribute.name) {
                key.insert(attribute.name.clone(), value.clone());
            }
        }
        key
    }
}

/// The start of every entry key of one index partition key (FORMAT.md, "Global secondary
/// indexes"): for a key of one attribute, exactly an item storage key's prefix (hash, length,
/// value bytes); for a multi-attribute key, the hash of all its values
/// ([`multi_attribute_partition_hash`]), then the length of the rest, then each value's bytes
/// after its own u16 length. `None` for a value that is not a key type.
pub fn index_partition_prefix(values: &[&AttributeValue]) -> Option<Vec<u8>> {
    if let [value] = values {
        return storage_key_prefix(value);
    }
    let hash = multi_attribute_partition_hash(values)?;
    let mut body = Vec::new();
    for value in values {
        let bytes = sort_key_bytes(value)?;
        body.extend_from_slice(&u16::try_from(bytes.len()).ok()?.to_be_bytes());
        body.extend_from_slice(&bytes);
    }
    let mut key = Vec::with_capacity(STORAGE_KEY_PREFIX_BYTES + body.len());
    key.extend_from_slice(&hash.to_be_bytes());
    key.extend_from_slice(&u16::try_from(body.len()).ok()?.to_be_bytes());
    key.extend_from_slice(&body);
    Some(key)
}

// Four maximal partition key values and their lengths fit the prefix's u16 length, whose high
// byte stays far below 0xFF, so no entry key reaches the index region.
const _: () =
    assert!(GSI_PARTITION_KEY_ATTRIBUTES_MAX * (2 + crate::key::PARTITION_KEY_BYTES_MAX) < 0xFF00);

/// The partition hash of a multi-attribute GSI partition key: xxh3-64 (seed 0) over, for each
/// value in key order, its type tag (as [`crate::key::partition_hash`] has it), its sort-key
/// bytes' length (u16 big-endian) and those bytes. Written in FORMAT.md; it can never change.
pub fn multi_attribute_partition_hash(values: &[&AttributeValue]) -> Option<u64> {
    let mut input = Vec::new();
    for value in values {
        let tag = match value {
            AttributeValue::String(_) => crate::key::HASH_TAG_STRING,
            AttributeValue::Number(_) => crate::key::HASH_TAG_NUMBER,
            AttributeValue::Binary(_) => crate::key::HASH_TAG_BINARY,
            _ => return None,
        };
        let bytes = sort_key_bytes(value)?;
        input.push(tag);
        input.extend_from_slice(&u16::try_from(bytes.len()).ok()?.to_be_bytes());
        input.extend_from_slice(&bytes);
    }
    Some(xxhash_rust::xxh3::xxh3_64(&input))
}

/// The GSI changes of a write that turns `old` into `new` at `storage_key`, and the write
/// capacity units each index's changes cost (by position in `indexes`). Refuses a new image
/// whose index key is invalid, as DynamoDB does.
pub fn global_changes(
    indexes: &[GlobalIndex],
    table: &KeySchema,
    storage_key: &[u8],
    old: Option<&Item>,
    new: Option<&Item>,
) -> Result<(Vec<GlobalIndexChange>, Vec<u64>)> {
    let mut changes = Vec::new();
    let mut units = vec![0; indexes.len()];
    for (position, index) in indexes.iter().enumerate() {
        if let Some(item) = new {
            index.check_item(item)?;
        }
        let old_entry = old.and_then(|item| index.entry_key(storage_key, item));
        let new_entry = new.and_then(|item| index.entry_key(storage_key, item));
        let old_projected = old
            .filter(|_| old_entry.is_some())
            .map(|item| index.project(table, item));
        let new_projected = new
            .filter(|_| new_entry.is_some())
            .map(|item| index.project(table, item));
        let unchanged = old_entry == new_entry && old_projected == new_projected;
        if unchanged {
            continue;
        }
        if let Some(key) = &old_entry
            && old_entry != new_entry
        {
            units[position] += crate::value::write_capacity_units(item_size_bytes(
                old_projected.as_ref().unwrap_or(&Item::new()),
            ));
            changes.push(GlobalIndexChange {
                index_number: index.number,
                entry_key: key.clone(),
                change: EntryChange::Delete,
            });
        }
        if let (Some(key), Some(projected)) = (new_entry, new_projected) {
            units[position] += crate::value::write_capacity_units(item_size_bytes(&projected));
            changes.push(GlobalIndexChange {
                index_number: index.number,
                entry_key: key,
                change: EntryChange::Put(encode_item(&projected)),
            });
        }
    }
    Ok((changes, units))
}

fn region_key(marker: u8, capacity: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(INDEX_REGION_PREFIX.len() + 1 + capacity);
    key.extend_from_slice(&INDEX_REGION_PREFIX);
    key.push(marker);
    key
}

/// The key of the `ordinal`-th outbox record of a batch being proposed (its slot is not known
/// yet): apply rewrites it to [`outbox_key`].
pub fn pending_outbox_key(ordinal: u32) -> Vec<u8> {
    let mut key = region_key(OUTBOX_PENDING_MARKER, 4);
    key.extend_from_slice(&ordinal.to_be_bytes());
    key
}

/// The ordinal of a pending outbox key; `None` for any other key.
pub fn pending_outbox_ordinal(key: &[u8]) -> Option<u32> {
    let rest = key
        .strip_prefix(&INDEX_REGION_PREFIX[..])?
        .strip_prefix(&[OUTBOX_PENDING_MARKER])?;
    Some(u32::from_be_bytes(rest.try_into().ok()?))
}

/// The key of the outbox record at `position`.
pub fn outbox_key(position: OutboxPosition) -> Vec<u8> {
    let mut key = region_key(OUTBOX_MARKER, 12);
    key.extend_from_slice(&position.slot.to_be_bytes());
    key.extend_from_slice(&position.ordinal.to_be_bytes());
    key
}

/// The position of an outbox key; `None` for any other key.
pub fn outbox_position(key: &[u8]) -> Option<OutboxPosition> {
    let rest = key
        .strip_prefix(&INDEX_REGION_PREFIX[..])?
        .strip_prefix(&[OUTBOX_MARKER])?;
    if rest.len() != 12 {
        return None;
    }
    Some(OutboxPosition {
        slot: u64::from_be_bytes(rest[..8].try_into().ok()?),
        ordinal: u32::from_be_bytes(rest[8..].try_into().ok()?),
    })
}

/// The outbox's key range: every record after `after` (all of them for `None`).
pub fn outbox_range(after: Option<OutboxPosition>) -> ByteRange {
    let lower = match after {
        Some(position) => Bound::Excluded(outbox_key(position)),
        None => Bound::Included(region_key(OUTBOX_MARKER, 0)),
    };
    (lower, Bound::Excluded(region_key(OUTBOX_MARKER + 1, 0)))
}

/// Whether `key` is an outbox record's key.
pub fn is_outbox_key(key: &[u8]) -> bool {
    outbox_position(key).is_some()
}

const CHANGE_PUT: u8 = 0x01;
const CHANGE_DELETE: u8 = 0x02;

/// An outbox record's value (FORMAT.md): the index number, the kind, the entry key with its
/// length and, for a put, the projected item's encoding.
pub fn encode_change(change: &GlobalIndexChange) -> Vec<u8> {
    let item = match &change.change {
        EntryChange::Put(item) => item.as_slice(),
        EntryChange::Delete => &[],
    };
    let mut value = Vec::with_capacity(4 + change.entry_key.len() + item.len());
    value.push(change.index_number);
    value.push(match change.change {
        EntryChange::Put(_) => CHANGE_PUT,
        EntryChange::Delete => CHANGE_DELETE,
    });
    // Entry keys are bounded by the tree's key limit, far below u16::MAX.
    let length = u16::try_from(change.entry_key.len()).unwrap_or(u16::MAX);
    value.extend_from_slice(&length.to_be_bytes());
    value.extend_from_slice(&change.entry_key);
    value.extend_from_slice(item);
    value
}

/// Decodes an outbox record's value; `None` for bytes [`encode_change`] never writes.
pub fn decode_change(value: &[u8]) -> Option<GlobalIndexChange> {
    let (&index_number, rest) = value.split_first()?;
    let (&kind, rest) = rest.split_first()?;
    let length = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let entry_key = rest.get(2..2 + length)?.to_vec();
    let item = &rest[2 + length..];
    let change = match kind {
        CHANGE_PUT if decode_item(item).is_ok() => EntryChange::Put(item.to_vec()),
        CHANGE_DELETE if item.is_empty() => EntryChange::Delete,
        _ => return None,
    };
    Some(GlobalIndexChange {
        index_number,
        entry_key,
        change,
    })
}

/// The key of an index partition's record of the last position applied from `source`.
pub fn source_position_key(source: u64) -> Vec<u8> {
    let mut key = region_key(SOURCE_POSITION_MARKER, 8);
    key.extend_from_slice(&source.to_be_bytes());
    key
}

const POSITION_SLOT_ATTRIBUTE: &str = "slot";
const POSITION_ORDINAL_ATTRIBUTE: &str = "ordinal";

/// The position record's content, item-encoded so a leader reads it, proposals included, as it
/// reads an item.
pub fn position_record(position: OutboxPosition) -> Item {
    Item::from([
        (
            POSITION_SLOT_ATTRIBUTE.to_string(),
            AttributeValue::Number(crate::Number::from(position.slot)),
        ),
        (
            POSITION_ORDINAL_ATTRIBUTE.to_string(),
            AttributeValue::Number(crate::Number::from(u64::from(position.ordinal))),
        ),
    ])
}

/// The position a record holds; `None` for a record that is not one.
pub fn record_position(record: &Item) -> Option<OutboxPosition> {
    let number = |name: &str| match record.get(name) {
        Some(AttributeValue::Number(number)) => number.to_string().parse::<u64>().ok(),
        _ => None,
    };
    Some(OutboxPosition {
        slot: number(POSITION_SLOT_ATTRIBUTE)?,
        ordinal: u32::try_from(number(POSITION_ORDINAL_ATTRIBUTE)?).ok()?,
    })
}

/// The entry-key range of a Scan of a GSI partition over the hash range [`lower`, `upper`):
/// entry keys start with the index partition key's hash, as storage keys do, so the bounds are
/// the same bytes, kept below the index region.
pub fn scan_bounds(lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> ByteRange {
    let region = INDEX_REGION_PREFIX.to_vec();
    let upper = match upper {
        Bound::Unbounded => Bound::Excluded(region),
        other => other,
    };
    (lower, upper)
}

/// What one propagation round of a base partition does with the outbox records it read: the
/// changes each index partition applies (keyed by what `route` names it, in position order)
/// and the position through which the outbox is trimmed once all of them applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundPlan<K> {
    pub applies: std::collections::BTreeMap<K, Vec<PositionedChange>>,
    pub trim_through: Option<OutboxPosition>,
}

/// Plans a propagation round over `changes` (an outbox read, in position order): `route` names
/// the index partition of a change (by its index number and its entry key's hash), or `None`
/// for a change of an index that no longer exists, which is dropped. The router and the
/// simulator both propagate with this.
pub fn plan_round<K: Ord>(
    changes: impl IntoIterator<Item = PositionedChange>,
    mut route: impl FnMut(&GlobalIndexChange) -> Option<K>,
) -> RoundPlan<K> {
    let mut plan = RoundPlan {
        applies: std::collections::BTreeMap::new(),
        trim_through: None,
    };
    for positioned in changes {
        plan.trim_through = Some(positioned.position);
        if let Some(target) = route(&positioned.change) {
            plan.applies.entry(target).or_default().push(positioned);
        }
    }
    plan
}

#[cfg(test)]
mod tests;
