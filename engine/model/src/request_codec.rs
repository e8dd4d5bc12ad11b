//! The versioned binary encoding of a [`PreparedRequest`]: how a router hands a parsed item
//! request to a partition leader over the internal bus. FORMAT.md ("Typed item request
//! encoding, version 1") documents it byte by byte.
//!
//! Attribute values (keys, the Put item, expression constants) use the item encoding's value
//! form ([`crate::encoding`]), so a value has one binary form in storage and on the bus.
//!
//! Invariants:
//! 1. `decode_request(&encode_request(request)) == Ok(request)` for every request that
//!    [`crate::request::prepare`] produces: the decoder's limits are at least the parser's.
//! 2. The decoder never panics, never allocates more than a constant times the input's size
//!    (every count is checked against the bytes left, and room is reserved for at most
//!    [`PREALLOCATED_ELEMENTS_MAX`] elements ahead of decoding them), and
//!    never recurses deeper than [`CONDITION_DEPTH_MAX`] conditions,
//!    [`UPDATE_OPERAND_DEPTH_MAX`] update operands and the item encoding's
//!    [`NESTING_DEPTH_MAX`] values.
//! 3. The decoder refuses what the encoder never writes: unknown versions and tags, booleans
//!    other than 0 and 1, values out of canonical form, empty paths, and trailing bytes, so
//!    `encode_request(&decode_request(bytes)?) == bytes` for every accepted input. A refusal is
//!    an [`Error::Serialization`] that says what was wrong and at which byte.

use std::ops::Bound;

use crate::encoding::{
    PREALLOCATED_ELEMENTS_MAX, Reader, encode_bytes, encode_length, encode_map_body, encode_value,
};
use crate::error::{Error, Result};
use crate::expression::ast::{
    Comparator, Condition, DocumentPath, Operand, PathElement, SetValue, Update, UpdateAction,
    UpdateOperand,
};
use crate::expression::update::ReturnValues;
use crate::expression::{DOCUMENT_PATH_DEPTH_MAX, EXPRESSION_NESTING_DEPTH_MAX};
use crate::index::global::{
    EntryChange, GSI_PARTITION_KEY_ATTRIBUTES_MAX, GSI_SORT_KEY_ATTRIBUTES_MAX, GlobalIndex,
    GlobalIndexChange, OUTBOX_READ_ENTRIES_MAX, OutboxPosition, PositionedChange,
};
use crate::index::{
    GLOBAL_SECONDARY_INDEXES_MAX, LOCAL_SECONDARY_INDEXES_MAX, LocalIndex,
    PROJECTED_NON_KEY_ATTRIBUTES_MAX, Projection,
};
use crate::key::{KeyAttribute, KeyType};
use crate::request::{
    BATCH_GET_KEYS_MAX, BATCH_WRITE_REQUESTS_MAX, GetRequest, IndexRead, PreparedRequest,
    RangeRequest, TransactAction, WriteKind, WriteRequest,
};
use crate::transaction::{TRANSACT_ITEMS_MAX, TransactionRef};
use crate::value::{AttributeValue, Item, NESTING_DEPTH_MAX, TYPE_NAMES};

/// The version byte written first; a decoder refuses versions it does not know.
pub const REQUEST_FORMAT_VERSION: u8 = 2;

/// The deepest condition tree the expression parser can build, counting the root as 1. Each
/// of the parser's nesting levels (parentheses or NOT, at most
/// [`EXPRESSION_NESTING_DEPTH_MAX`], plus the top level) adds at most two conditions (an OR of
/// ANDs), and the innermost adds one leaf. The legacy parameters build at most three levels.
pub const CONDITION_DEPTH_MAX: usize = 2 * (EXPRESSION_NESTING_DEPTH_MAX + 1) + 1;
/// The deepest SET operand the parser can build, counting the outermost as 1: one
/// `if_not_exists` or `list_append` per nesting level, then a path or value.
pub const UPDATE_OPERAND_DEPTH_MAX: usize = EXPRESSION_NESTING_DEPTH_MAX + 1;

// Legacy conditions (an AND of `attribute_exists AND NOT contains`) must fit as well.
const _: () = assert!(CONDITION_DEPTH_MAX >= 4);

/// The kind of a request, after the version byte.
const REQUEST_WRITE: u8 = 0x01;
const REQUEST_GET: u8 = 0x02;
const REQUEST_RANGE: u8 = 0x03;
const REQUEST_BATCH_GET: u8 = 0x04;
const REQUEST_BATCH_WRITE: u8 = 0x05;
/// 0x01, 0x05 and 0x03 for a table with local secondary indexes: each write followed by the
/// table's indexes, the range by the index it reads. Requests of tables without indexes keep
/// their version 1 bytes, so routers and nodes of the version before indexes read them.
const REQUEST_WRITE_INDEXED: u8 = 0x06;
const REQUEST_BATCH_WRITE_INDEXED: u8 = 0x07;
const REQUEST_RANGE_INDEXED: u8 = 0x08;
/// A write (or batch) to a table with global secondary indexes: each write followed by the
/// table's local indexes (possibly none) and its global ones.
const REQUEST_WRITE_GLOBAL: u8 = 0x09;
const REQUEST_BATCH_WRITE_GLOBAL: u8 = 0x0A;
/// A range read of a GSI partition: the range followed by the index.
const REQUEST_RANGE_GLOBAL: u8 = 0x0B;
/// The GSI propagation requests (index::global).
const REQUEST_OUTBOX_READ: u8 = 0x0C;
const REQUEST_OUTBOX_TRIM: u8 = 0x0D;
const REQUEST_INDEX_APPLY: u8 = 0x0E;
const REQUEST_INDEX_BACKFILL: u8 = 0x0F;
/// Streams (crate::stream): a partition's stream configuration, a shard's records, and a
/// stream's shards.
const REQUEST_STREAM_CONFIGURE: u8 = 0x10;
const REQUEST_STREAM_READ: u8 = 0x11;
const REQUEST_STREAM_SHARDS: u8 = 0x12;
/// Transactions (crate::transaction): prepare, finish, a TransactGetItems' read and confirm,
/// and the recovery loop's lock listing.
const REQUEST_TRANSACT_PREPARE: u8 = 0x13;
const REQUEST_TRANSACT_FINISH: u8 = 0x14;
const REQUEST_TRANSACT_READ: u8 = 0x15;
const REQUEST_TRANSACT_CONFIRM: u8 = 0x16;
const REQUEST_TRANSACT_LOCKS: u8 = 0x17;

/// An index change's kind.
const CHANGE_PUT: u8 = 0x01;
const CHANGE_DELETE: u8 = 0x02;

/// A local index's key type.
const KEY_TYPE_STRING: u8 = 0x01;
const KEY_TYPE_NUMBER: u8 = 0x02;
const KEY_TYPE_BINARY: u8 = 0x03;

/// A local index's projection.
const PROJECTION_ALL: u8 = 0x01;
const PROJECTION_KEYS_ONLY: u8 = 0x02;
const PROJECTION_INCLUDE: u8 = 0x03;

/// What a write does to its item.
const WRITE_PUT: u8 = 0x01;
const WRITE_UPDATE: u8 = 0x02;
const WRITE_DELETE: u8 = 0x03;

/// ReturnValues; NONE is 0x00, the default.
const RETURN_VALUES_NONE: u8 = 0x00;
const RETURN_VALUES_ALL_OLD: u8 = 0x01;
const RETURN_VALUES_UPDATED_OLD: u8 = 0x02;
const RETURN_VALUES_ALL_NEW: u8 = 0x03;
const RETURN_VALUES_UPDATED_NEW: u8 = 0x04;

/// The two values of a boolean field.
const FALSE: u8 = 0x00;
const TRUE: u8 = 0x01;

/// The presence byte of an optional field.
const ABSENT: u8 = 0x00;
const PRESENT: u8 = 0x01;

/// A range bound.
const BOUND_UNBOUNDED: u8 = 0x00;
const BOUND_INCLUDED: u8 = 0x01;
const BOUND_EXCLUDED: u8 = 0x02;

/// One action of an update.
const ACTION_SET: u8 = 0x01;
const ACTION_REMOVE: u8 = 0x02;
const ACTION_ADD: u8 = 0x03;
const ACTION_DELETE: u8 = 0x04;

/// The right side of SET.
const SET_OPERAND: u8 = 0x01;
const SET_PLUS: u8 = 0x02;
const SET_MINUS: u8 = 0x03;

/// An operand of SET.
const UPDATE_OPERAND_PATH: u8 = 0x01;
const UPDATE_OPERAND_VALUE: u8 = 0x02;
const UPDATE_OPERAND_IF_NOT_EXISTS: u8 = 0x03;
const UPDATE_OPERAND_LIST_APPEND: u8 = 0x04;

/// A condition.
const CONDITION_COMPARISON: u8 = 0x01;
const CONDITION_BETWEEN: u8 = 0x02;
const CONDITION_IN: u8 = 0x03;
const CONDITION_AND: u8 = 0x04;
const CONDITION_OR: u8 = 0x05;
const CONDITION_NOT: u8 = 0x06;
const CONDITION_ATTRIBUTE_EXISTS: u8 = 0x07;
const CONDITION_ATTRIBUTE_NOT_EXISTS: u8 = 0x08;
const CONDITION_ATTRIBUTE_TYPE: u8 = 0x09;
const CONDITION_BEGINS_WITH: u8 = 0x0A;
const CONDITION_CONTAINS: u8 = 0x0B;

/// A comparison's operator.
const COMPARATOR_EQUAL: u8 = 0x01;
const COMPARATOR_NOT_EQUAL: u8 = 0x02;
const COMPARATOR_LESS: u8 = 0x03;
const COMPARATOR_LESS_OR_EQUAL: u8 = 0x04;
const COMPARATOR_GREATER: u8 = 0x05;
const COMPARATOR_GREATER_OR_EQUAL: u8 = 0x06;

/// An operand of a condition.
const OPERAND_PATH: u8 = 0x01;
const OPERAND_VALUE: u8 = 0x02;
const OPERAND_SIZE: u8 = 0x03;

/// One element of a document path.
const PATH_ATTRIBUTE: u8 = 0x01;
const PATH_INDEX: u8 = 0x02;

/// Values inside a request sit where an item's attributes sit: nesting level 1.
const VALUE_DEPTH: usize = 1;

/// Encodes a request. Lengths and counts are u32 little-endian, as in the item encoding.
pub fn encode_request(request: &PreparedRequest) -> Vec<u8> {
    let mut output = Vec::with_capacity(128);
    output.push(REQUEST_FORMAT_VERSION);
    match request {
        PreparedRequest::Write(write) if !write.global_indexes.is_empty() => {
            output.push(REQUEST_WRITE_GLOBAL);
            encode_write(write, &mut output);
            encode_local_indexes(&write.local_indexes, &mut output);
            encode_global_indexes(&write.global_indexes, &mut output);
        }
        PreparedRequest::Write(write) if write.local_indexes.is_empty() => {
            output.push(REQUEST_WRITE);
            encode_write(write, &mut output);
        }
        PreparedRequest::Write(write) => {
            output.push(REQUEST_WRITE_INDEXED);
            encode_write(write, &mut output);
            encode_local_indexes(&write.local_indexes, &mut output);
        }
        PreparedRequest::Get(get) => {
            output.push(REQUEST_GET);
            encode_get(get, &mut output);
        }
        PreparedRequest::Range(range) => match (&range.index, &range.global_index) {
            (_, Some(global)) => {
                output.push(REQUEST_RANGE_GLOBAL);
                encode_range(range, &mut output);
                encode_global_index(global, &mut output);
            }
            (None, None) => {
                output.push(REQUEST_RANGE);
                encode_range(range, &mut output);
            }
            (Some(index), None) => {
                output.push(REQUEST_RANGE_INDEXED);
                encode_range(range, &mut output);
                encode_local_index(&index.index, &mut output);
                encode_bool(index.fetch_base, &mut output);
            }
        },
        PreparedRequest::BatchGet(gets) => {
            output.push(REQUEST_BATCH_GET);
            encode_length(gets.len(), &mut output);
            for get in gets {
                encode_get(get, &mut output);
            }
        }
        PreparedRequest::BatchWrite(writes)
            if writes.iter().any(|write| !write.global_indexes.is_empty()) =>
        {
            output.push(REQUEST_BATCH_WRITE_GLOBAL);
            encode_length(writes.len(), &mut output);
            for write in writes {
                encode_write(write, &mut output);
                encode_local_indexes(&write.local_indexes, &mut output);
                encode_global_indexes(&write.global_indexes, &mut output);
            }
        }
        PreparedRequest::OutboxRead { after } => {
            output.push(REQUEST_OUTBOX_READ);
            match after {
                None => output.push(ABSENT),
                Some(position) => {
                    output.push(PRESENT);
                    encode_position(*position, &mut output);
                }
            }
        }
        PreparedRequest::OutboxTrim { through } => {
            output.push(REQUEST_OUTBOX_TRIM);
            encode_position(*through, &mut output);
        }
        PreparedRequest::IndexApply { source, changes } => {
            output.push(REQUEST_INDEX_APPLY);
            encode_u64(*source, &mut output);
            encode_length(changes.len(), &mut output);
            for positioned in changes {
                encode_position(positioned.position, &mut output);
                output.push(positioned.change.index_number);
                encode_bytes(&positioned.change.entry_key, &mut output);
                match &positioned.change.change {
                    EntryChange::Put(item) => {
                        output.push(CHANGE_PUT);
                        encode_bytes(item, &mut output);
                    }
                    EntryChange::Delete => output.push(CHANGE_DELETE),
                }
            }
        }
        PreparedRequest::IndexBackfill { index, after } => {
            output.push(REQUEST_INDEX_BACKFILL);
            encode_global_index(index, &mut output);
            match after {
                None => output.push(ABSENT),
                Some(key) => {
                    output.push(PRESENT);
                    encode_bytes(key, &mut output);
                }
            }
        }
        PreparedRequest::StreamConfigure { stream, view } => {
            output.push(REQUEST_STREAM_CONFIGURE);
            encode_u64(*stream, &mut output);
            match view {
                None => output.push(ABSENT),
                Some(view) => {
                    output.push(PRESENT);
                    output.push(view.code());
                }
            }
        }
        PreparedRequest::StreamRead {
            stream,
            generation,
            after,
            limit,
        } => {
            output.push(REQUEST_STREAM_READ);
            encode_u64(*stream, &mut output);
            output.extend_from_slice(&generation.to_le_bytes());
            match after {
                None => output.push(ABSENT),
                Some(position) => {
                    output.push(PRESENT);
                    encode_position(*position, &mut output);
                }
            }
            output.extend_from_slice(&limit.to_le_bytes());
        }
        PreparedRequest::StreamShards { stream } => {
            output.push(REQUEST_STREAM_SHARDS);
            encode_u64(*stream, &mut output);
        }
        PreparedRequest::TransactPrepare {
            transaction,
            actions,
        } => {
            output.push(REQUEST_TRANSACT_PREPARE);
            encode_transaction(transaction, &mut output);
            encode_length(actions.len(), &mut output);
            for action in actions {
                encode_bool(action.check_only, &mut output);
                encode_write(&action.write, &mut output);
                encode_local_indexes(&action.write.local_indexes, &mut output);
                encode_global_indexes(&action.write.global_indexes, &mut output);
            }
        }
        PreparedRequest::TransactFinish {
            transaction,
            commit,
            local_indexes,
            global_indexes,
        } => {
            output.push(REQUEST_TRANSACT_FINISH);
            encode_transaction(transaction, &mut output);
            encode_bool(*commit, &mut output);
            encode_local_indexes(local_indexes, &mut output);
            encode_global_indexes(global_indexes, &mut output);
        }
        PreparedRequest::TransactRead { gets } => {
            output.push(REQUEST_TRANSACT_READ);
            encode_length(gets.len(), &mut output);
            for get in gets {
                encode_get(get, &mut output);
            }
        }
        PreparedRequest::TransactConfirm {
            storage_keys,
            since,
        } => {
            output.push(REQUEST_TRANSACT_CONFIRM);
            encode_u64(*since, &mut output);
            encode_length(storage_keys.len(), &mut output);
            for key in storage_keys {
                encode_bytes(key, &mut output);
            }
        }
        PreparedRequest::TransactLocks { prepared_before_ms } => {
            output.push(REQUEST_TRANSACT_LOCKS);
            encode_u64(*prepared_before_ms, &mut output);
        }
        PreparedRequest::BatchWrite(writes) => {
            let indexed = writes.iter().any(|write| !write.local_indexes.is_empty());
            output.push(if indexed {
                REQUEST_BATCH_WRITE_INDEXED
            } else {
                REQUEST_BATCH_WRITE
            });
            encode_length(writes.len(), &mut output);
            for write in writes {
                encode_write(write, &mut output);
                if indexed {
                    encode_local_indexes(&write.local_indexes, &mut output);
                }
            }
        }
    }
    output
}

fn encode_local_indexes(indexes: &[LocalIndex], output: &mut Vec<u8>) {
    encode_length(indexes.len(), output);
    for index in indexes {
        encode_local_index(index, output);
    }
}

fn encode_local_index(index: &LocalIndex, output: &mut Vec<u8>) {
    encode_bytes(index.name.as_bytes(), output);
    output.push(index.number);
    encode_key_attribute(&index.sort_key, output);
    encode_projection_kind(&index.projection, output);
}

fn encode_global_indexes(indexes: &[GlobalIndex], output: &mut Vec<u8>) {
    encode_length(indexes.len(), output);
    for index in indexes {
        encode_global_index(index, output);
    }
}

fn encode_global_index(index: &GlobalIndex, output: &mut Vec<u8>) {
    encode_bytes(index.name.as_bytes(), output);
    output.push(index.number);
    for attributes in [&index.partition_keys, &index.sort_keys] {
        encode_length(attributes.len(), output);
        for attribute in attributes {
            encode_key_attribute(attribute, output);
        }
    }
    encode_projection_kind(&index.projection, output);
}

fn encode_position(position: OutboxPosition, output: &mut Vec<u8>) {
    encode_u64(position.slot, output);
    output.extend_from_slice(&position.ordinal.to_le_bytes());
}

fn encode_key_attribute(attribute: &KeyAttribute, output: &mut Vec<u8>) {
    encode_bytes(attribute.name.as_bytes(), output);
    output.push(match attribute.key_type {
        KeyType::String => KEY_TYPE_STRING,
        KeyType::Number => KEY_TYPE_NUMBER,
        KeyType::Binary => KEY_TYPE_BINARY,
    });
}

fn encode_projection_kind(projection: &Projection, output: &mut Vec<u8>) {
    match projection {
        Projection::All => output.push(PROJECTION_ALL),
        Projection::KeysOnly => output.push(PROJECTION_KEYS_ONLY),
        Projection::Include(names) => {
            output.push(PROJECTION_INCLUDE);
            encode_length(names.len(), output);
            for name in names {
                encode_bytes(name.as_bytes(), output);
            }
        }
    }
}

fn encode_bool(flag: bool, output: &mut Vec<u8>) {
    output.push(if flag { TRUE } else { FALSE });
}

fn encode_u64(number: u64, output: &mut Vec<u8>) {
    output.extend_from_slice(&number.to_le_bytes());
}

fn encode_transaction(transaction: &TransactionRef, output: &mut Vec<u8>) {
    encode_bytes(transaction.ledger_key.as_bytes(), output);
    encode_u64(transaction.nonce, output);
}

fn encode_write(write: &WriteRequest, output: &mut Vec<u8>) {
    encode_map_body(&write.key, output);
    encode_bytes(&write.storage_key, output);
    match &write.kind {
        WriteKind::Put(item) => {
            output.push(WRITE_PUT);
            encode_map_body(item, output);
        }
        WriteKind::Update(update) => {
            output.push(WRITE_UPDATE);
            encode_update(update, output);
        }
        WriteKind::Delete => output.push(WRITE_DELETE),
    }
    encode_optional_condition(write.condition.as_ref(), output);
    output.push(match write.return_values {
        ReturnValues::None => RETURN_VALUES_NONE,
        ReturnValues::AllOld => RETURN_VALUES_ALL_OLD,
        ReturnValues::UpdatedOld => RETURN_VALUES_UPDATED_OLD,
        ReturnValues::AllNew => RETURN_VALUES_ALL_NEW,
        ReturnValues::UpdatedNew => RETURN_VALUES_UPDATED_NEW,
    });
    encode_bool(write.return_old_on_condition_failure, output);
}

fn encode_get(get: &GetRequest, output: &mut Vec<u8>) {
    encode_map_body(&get.key, output);
    encode_bytes(&get.storage_key, output);
    encode_bool(get.consistent, output);
    encode_projection(get.projection.as_deref(), output);
}

fn encode_range(range: &RangeRequest, output: &mut Vec<u8>) {
    encode_bound(&range.lower, output);
    encode_bound(&range.upper, output);
    encode_bool(range.forward, output);
    encode_optional_condition(range.filter.as_ref(), output);
    encode_projection(range.projection.as_deref(), output);
    match range.limit {
        None => output.push(ABSENT),
        Some(limit) => {
            output.push(PRESENT);
            // usize is at most 64 bits on every target Shoal builds for.
            encode_u64(u64::try_from(limit).unwrap_or(u64::MAX), output);
        }
    }
    encode_bool(range.consistent, output);
    encode_bool(range.count_only, output);
    encode_u64(range.page_bytes_max, output);
}

fn encode_bound(bound: &Bound<Vec<u8>>, output: &mut Vec<u8>) {
    match bound {
        Bound::Unbounded => output.push(BOUND_UNBOUNDED),
        Bound::Included(bytes) => {
            output.push(BOUND_INCLUDED);
            encode_bytes(bytes, output);
        }
        Bound::Excluded(bytes) => {
            output.push(BOUND_EXCLUDED);
            encode_bytes(bytes, output);
        }
    }
}

fn encode_projection(projection: Option<&[DocumentPath]>, output: &mut Vec<u8>) {
    match projection {
        None => output.push(ABSENT),
        Some(paths) => {
            output.push(PRESENT);
            encode_length(paths.len(), output);
            for path in paths {
                encode_path(path, output);
            }
        }
    }
}

fn encode_path(path: &DocumentPath, output: &mut Vec<u8>) {
    encode_length(path.elements.len(), output);
    for element in &path.elements {
        match element {
            PathElement::Attribute(name) => {
                output.push(PATH_ATTRIBUTE);
                encode_bytes(name.as_bytes(), output);
            }
            PathElement::Index(index) => {
                output.push(PATH_INDEX);
                encode_u64(u64::try_from(*index).unwrap_or(u64::MAX), output);
            }
        }
    }
}

fn encode_update(update: &Update, output: &mut Vec<u8>) {
    encode_length(update.actions.len(), output);
    for action in &update.actions {
        match action {
            UpdateAction::Set(path, value) => {
                output.push(ACTION_SET);
                encode_path(path, output);
                match value {
                    SetValue::Operand(operand) => {
                        output.push(SET_OPERAND);
                        encode_update_operand(operand, output);
                    }
                    SetValue::Plus(left, right) => {
                        output.push(SET_PLUS);
                        encode_update_operand(left, output);
                        encode_update_operand(right, output);
                    }
                    SetValue::Minus(left, right) => {
                        output.push(SET_MINUS);
                        encode_update_operand(left, output);
                        encode_update_operand(right, output);
                    }
                }
            }
            UpdateAction::Remove(path) => {
                output.push(ACTION_REMOVE);
                encode_path(path, output);
            }
            UpdateAction::Add(path, value) => {
                output.push(ACTION_ADD);
                encode_path(path, output);
                encode_value(value, output);
            }
            UpdateAction::Delete(path, value) => {
                output.push(ACTION_DELETE);
                encode_path(path, output);
                encode_value(value, output);
            }
        }
    }
}

fn encode_update_operand(operand: &UpdateOperand, output: &mut Vec<u8>) {
    match operand {
        UpdateOperand::Path(path) => {
            output.push(UPDATE_OPERAND_PATH);
            encode_path(path, output);
        }
        UpdateOperand::Value(value) => {
            output.push(UPDATE_OPERAND_VALUE);
            encode_value(value, output);
        }
        UpdateOperand::IfNotExists(path, fallback) => {
            output.push(UPDATE_OPERAND_IF_NOT_EXISTS);
            encode_path(path, output);
            encode_update_operand(fallback, output);
        }
        UpdateOperand::ListAppend(first, second) => {
            output.push(UPDATE_OPERAND_LIST_APPEND);
            encode_update_operand(first, output);
            encode_update_operand(second, output);
        }
    }
}

fn encode_optional_condition(condition: Option<&Condition>, output: &mut Vec<u8>) {
    match condition {
        None => output.push(ABSENT),
        Some(condition) => {
            output.push(PRESENT);
            encode_condition(condition, output);
        }
    }
}

fn encode_condition(condition: &Condition, output: &mut Vec<u8>) {
    match condition {
        Condition::Comparison {
            left,
            comparator,
            right,
        } => {
            output.push(CONDITION_COMPARISON);
            encode_operand(left, output);
            output.push(match comparator {
                Comparator::Equal => COMPARATOR_EQUAL,
                Comparator::NotEqual => COMPARATOR_NOT_EQUAL,
                Comparator::Less => COMPARATOR_LESS,
                Comparator::LessOrEqual => COMPARATOR_LESS_OR_EQUAL,
                Comparator::Greater => COMPARATOR_GREATER,
                Comparator::GreaterOrEqual => COMPARATOR_GREATER_OR_EQUAL,
            });
            encode_operand(right, output);
        }
        Condition::Between {
            value,
            lower,
            upper,
        } => {
            output.push(CONDITION_BETWEEN);
            encode_operand(value, output);
            encode_operand(lower, output);
            encode_operand(upper, output);
        }
        Condition::In { value, candidates } => {
            output.push(CONDITION_IN);
            encode_operand(value, output);
            encode_length(candidates.len(), output);
            for candidate in candidates {
                encode_operand(candidate, output);
            }
        }
        Condition::And(conditions) | Condition::Or(conditions) => {
            output.push(if matches!(condition, Condition::And(_)) {
                CONDITION_AND
            } else {
                CONDITION_OR
            });
            encode_length(conditions.len(), output);
            for condition in conditions {
                encode_condition(condition, output);
            }
        }
        Condition::Not(condition) => {
            output.push(CONDITION_NOT);
            encode_condition(condition, output);
        }
        Condition::AttributeExists(path) => {
            output.push(CONDITION_ATTRIBUTE_EXISTS);
            encode_path(path, output);
        }
        Condition::AttributeNotExists(path) => {
            output.push(CONDITION_ATTRIBUTE_NOT_EXISTS);
            encode_path(path, output);
        }
        Condition::AttributeType(path, type_name) => {
            output.push(CONDITION_ATTRIBUTE_TYPE);
            encode_path(path, output);
            encode_bytes(type_name.as_bytes(), output);
        }
        Condition::BeginsWith(left, right) => {
            output.push(CONDITION_BEGINS_WITH);
            encode_operand(left, output);
            encode_operand(right, output);
        }
        Condition::Contains(left, right) => {
            output.push(CONDITION_CONTAINS);
            encode_operand(left, output);
            encode_operand(right, output);
        }
    }
}

fn encode_operand(operand: &Operand, output: &mut Vec<u8>) {
    match operand {
        Operand::Path(path) => {
            output.push(OPERAND_PATH);
            encode_path(path, output);
        }
        Operand::Value(value) => {
            output.push(OPERAND_VALUE);
            encode_value(value, output);
        }
        Operand::Size(path) => {
            output.push(OPERAND_SIZE);
            encode_path(path, output);
        }
    }
}

fn malformed(reason: &str) -> Error {
    Error::Serialization(format!("malformed item request encoding: {reason}"))
}

/// Decodes a request written by [`encode_request`]; any other input is an
/// [`Error::Serialization`] naming the problem and the byte offset where decoding stopped.
pub fn decode_request(bytes: &[u8]) -> Result<PreparedRequest> {
    let mut reader = Reader::new(bytes, malformed);
    let decoded = decode_versioned(&mut reader);
    decoded.map_err(|error| match error {
        Error::Serialization(message) => {
            Error::Serialization(format!("{message} (at byte {})", reader.position()))
        }
        other => other,
    })
}

fn decode_versioned(reader: &mut Reader<'_>) -> Result<PreparedRequest> {
    let version = reader.byte()?;
    if version != REQUEST_FORMAT_VERSION {
        return Err(reader.fail(&format!("unknown request format version {version}")));
    }
    let request = match reader.byte()? {
        REQUEST_WRITE => PreparedRequest::Write(decode_write(reader)?),
        REQUEST_WRITE_INDEXED => {
            let mut write = decode_write(reader)?;
            write.local_indexes = decode_local_indexes(reader)?;
            if write.local_indexes.is_empty() {
                return Err(reader.fail("an indexed write without indexes"));
            }
            PreparedRequest::Write(write)
        }
        REQUEST_GET => PreparedRequest::Get(decode_get(reader)?),
        REQUEST_RANGE => PreparedRequest::Range(decode_range(reader)?),
        REQUEST_WRITE_GLOBAL => {
            let mut write = decode_write(reader)?;
            write.local_indexes = decode_local_indexes(reader)?;
            write.global_indexes = decode_global_indexes(reader)?;
            if write.global_indexes.is_empty() {
                return Err(reader.fail("a write with global indexes without any"));
            }
            PreparedRequest::Write(write)
        }
        REQUEST_BATCH_WRITE_GLOBAL => {
            let count = bounded_count(reader, BATCH_WRITE_REQUESTS_MAX, "BatchWrite requests")?;
            let mut writes = Vec::with_capacity(count);
            for _ in 0..count {
                let mut write = decode_write(reader)?;
                write.local_indexes = decode_local_indexes(reader)?;
                write.global_indexes = decode_global_indexes(reader)?;
                writes.push(write);
            }
            if writes.iter().all(|write| write.global_indexes.is_empty()) {
                return Err(reader.fail("a batch write with global indexes without any"));
            }
            PreparedRequest::BatchWrite(writes)
        }
        REQUEST_RANGE_GLOBAL => {
            let mut range = decode_range(reader)?;
            range.global_index = Some(Box::new(decode_global_index(reader)?));
            PreparedRequest::Range(range)
        }
        REQUEST_OUTBOX_READ => PreparedRequest::OutboxRead {
            after: if decode_present(reader)? {
                Some(decode_position(reader)?)
            } else {
                None
            },
        },
        REQUEST_OUTBOX_TRIM => PreparedRequest::OutboxTrim {
            through: decode_position(reader)?,
        },
        REQUEST_INDEX_APPLY => {
            let source = decode_u64(reader)?;
            let count = bounded_count(reader, OUTBOX_READ_ENTRIES_MAX, "index changes")?;
            let mut changes = Vec::with_capacity(count);
            for _ in 0..count {
                let position = decode_position(reader)?;
                let index_number = reader.byte()?;
                let entry_key = reader.byte_string()?.to_vec();
                let change = match reader.byte()? {
                    CHANGE_PUT => {
                        let item = reader.byte_string()?;
                        if crate::encoding::decode_item(item).is_err() {
                            return Err(reader.fail("an index entry that is not an item"));
                        }
                        EntryChange::Put(item.to_vec())
                    }
                    CHANGE_DELETE => EntryChange::Delete,
                    other => return Err(reader.fail(&format!("unknown change kind {other:#04x}"))),
                };
                changes.push(PositionedChange {
                    position,
                    change: GlobalIndexChange {
                        index_number,
                        entry_key,
                        change,
                    },
                });
            }
            PreparedRequest::IndexApply { source, changes }
        }
        REQUEST_INDEX_BACKFILL => PreparedRequest::IndexBackfill {
            index: decode_global_index(reader)?,
            after: if decode_present(reader)? {
                Some(reader.byte_string()?.to_vec())
            } else {
                None
            },
        },
        REQUEST_STREAM_CONFIGURE => PreparedRequest::StreamConfigure {
            stream: decode_u64(reader)?,
            view: if decode_present(reader)? {
                let code = reader.byte()?;
                Some(
                    crate::stream::ViewType::from_code(code)
                        .ok_or_else(|| reader.fail(&format!("unknown stream view {code:#04x}")))?,
                )
            } else {
                None
            },
        },
        REQUEST_STREAM_READ => {
            let stream = decode_u64(reader)?;
            let generation = decode_u32(reader)?;
            let after = if decode_present(reader)? {
                Some(decode_position(reader)?)
            } else {
                None
            };
            let limit = decode_u32(reader)?;
            if limit as usize > crate::stream::READ_RECORDS_MAX {
                return Err(reader.fail("a stream read over the record limit"));
            }
            PreparedRequest::StreamRead {
                stream,
                generation,
                after,
                limit,
            }
        }
        REQUEST_STREAM_SHARDS => PreparedRequest::StreamShards {
            stream: decode_u64(reader)?,
        },
        REQUEST_TRANSACT_PREPARE => {
            let transaction = decode_transaction(reader)?;
            let count = bounded_count(reader, TRANSACT_ITEMS_MAX, "transaction actions")?;
            let mut actions = Vec::with_capacity(count);
            for _ in 0..count {
                let check_only = decode_bool(reader)?;
                let mut write = decode_write(reader)?;
                write.local_indexes = decode_local_indexes(reader)?;
                write.global_indexes = decode_global_indexes(reader)?;
                actions.push(TransactAction { write, check_only });
            }
            PreparedRequest::TransactPrepare {
                transaction,
                actions,
            }
        }
        REQUEST_TRANSACT_FINISH => PreparedRequest::TransactFinish {
            transaction: decode_transaction(reader)?,
            commit: decode_bool(reader)?,
            local_indexes: decode_local_indexes(reader)?,
            global_indexes: decode_global_indexes(reader)?,
        },
        REQUEST_TRANSACT_READ => {
            let count = bounded_count(reader, TRANSACT_ITEMS_MAX, "transaction gets")?;
            let mut gets = Vec::with_capacity(count);
            for _ in 0..count {
                gets.push(decode_get(reader)?);
            }
            PreparedRequest::TransactRead { gets }
        }
        REQUEST_TRANSACT_CONFIRM => {
            let since = decode_u64(reader)?;
            let count = bounded_count(reader, TRANSACT_ITEMS_MAX, "transaction keys")?;
            let mut storage_keys = Vec::with_capacity(count);
            for _ in 0..count {
                storage_keys.push(reader.byte_string()?.to_vec());
            }
            PreparedRequest::TransactConfirm {
                storage_keys,
                since,
            }
        }
        REQUEST_TRANSACT_LOCKS => PreparedRequest::TransactLocks {
            prepared_before_ms: decode_u64(reader)?,
        },
        REQUEST_RANGE_INDEXED => {
            let mut range = decode_range(reader)?;
            let index = decode_local_index(reader)?;
            range.index = Some(Box::new(IndexRead {
                index,
                fetch_base: decode_bool(reader)?,
            }));
            PreparedRequest::Range(range)
        }
        REQUEST_BATCH_GET => {
            let count = bounded_count(reader, BATCH_GET_KEYS_MAX, "BatchGet keys")?;
            let mut gets = Vec::with_capacity(count);
            for _ in 0..count {
                gets.push(decode_get(reader)?);
            }
            PreparedRequest::BatchGet(gets)
        }
        kind @ (REQUEST_BATCH_WRITE | REQUEST_BATCH_WRITE_INDEXED) => {
            let indexed = kind == REQUEST_BATCH_WRITE_INDEXED;
            let count = bounded_count(reader, BATCH_WRITE_REQUESTS_MAX, "BatchWrite requests")?;
            let mut writes = Vec::with_capacity(count);
            for _ in 0..count {
                let mut write = decode_write(reader)?;
                if indexed {
                    write.local_indexes = decode_local_indexes(reader)?;
                }
                writes.push(write);
            }
            if indexed && writes.iter().all(|write| write.local_indexes.is_empty()) {
                return Err(reader.fail("an indexed batch write without indexes"));
            }
            PreparedRequest::BatchWrite(writes)
        }
        other => return Err(reader.fail(&format!("unknown request kind {other:#04x}"))),
    };
    if reader.remaining() != 0 {
        return Err(reader.fail("trailing bytes after the request"));
    }
    Ok(request)
}

/// A count checked against the bytes left and against `maximum`, so that a vector built with
/// this capacity stays small whatever the count field says.
fn bounded_count(reader: &mut Reader<'_>, maximum: usize, what: &str) -> Result<usize> {
    let count = reader.count()?;
    if count > maximum {
        return Err(reader.fail(&format!("{count} {what}, more than {maximum}")));
    }
    Ok(count)
}

fn decode_bool(reader: &mut Reader<'_>) -> Result<bool> {
    match reader.byte()? {
        FALSE => Ok(false),
        TRUE => Ok(true),
        other => Err(reader.fail(&format!("invalid boolean byte {other:#04x}"))),
    }
}

/// Reads an optional field's presence byte.
fn decode_present(reader: &mut Reader<'_>) -> Result<bool> {
    match reader.byte()? {
        ABSENT => Ok(false),
        PRESENT => Ok(true),
        other => Err(reader.fail(&format!("invalid presence byte {other:#04x}"))),
    }
}

fn decode_u64(reader: &mut Reader<'_>) -> Result<u64> {
    let mut field = [0u8; 8];
    field.copy_from_slice(reader.take(8)?);
    Ok(u64::from_le_bytes(field))
}

fn decode_u32(reader: &mut Reader<'_>) -> Result<u32> {
    let mut field = [0u8; 4];
    field.copy_from_slice(reader.take(4)?);
    Ok(u32::from_le_bytes(field))
}

fn decode_usize(reader: &mut Reader<'_>, what: &str) -> Result<usize> {
    let number = decode_u64(reader)?;
    usize::try_from(number).map_err(|_| reader.fail(&format!("{what} {number} exceeds usize")))
}

fn decode_item(reader: &mut Reader<'_>) -> Result<Item> {
    reader.map_body(VALUE_DEPTH - 1)
}

fn decode_value(reader: &mut Reader<'_>) -> Result<AttributeValue> {
    reader.value(VALUE_DEPTH)
}

fn decode_transaction(reader: &mut Reader<'_>) -> Result<TransactionRef> {
    let ledger_key = decode_name(reader, "transaction ledger key")?;
    let nonce = decode_u64(reader)?;
    Ok(TransactionRef { ledger_key, nonce })
}

fn decode_write(reader: &mut Reader<'_>) -> Result<WriteRequest> {
    let key = decode_item(reader)?;
    let storage_key = reader.byte_string()?.to_vec();
    let kind = match reader.byte()? {
        WRITE_PUT => WriteKind::Put(decode_item(reader)?),
        WRITE_UPDATE => WriteKind::Update(decode_update(reader)?),
        WRITE_DELETE => WriteKind::Delete,
        other => return Err(reader.fail(&format!("unknown write kind {other:#04x}"))),
    };
    let condition = decode_optional_condition(reader)?;
    let return_values = match reader.byte()? {
        RETURN_VALUES_NONE => ReturnValues::None,
        RETURN_VALUES_ALL_OLD => ReturnValues::AllOld,
        RETURN_VALUES_UPDATED_OLD => ReturnValues::UpdatedOld,
        RETURN_VALUES_ALL_NEW => ReturnValues::AllNew,
        RETURN_VALUES_UPDATED_NEW => ReturnValues::UpdatedNew,
        other => return Err(reader.fail(&format!("unknown ReturnValues {other:#04x}"))),
    };
    let return_old_on_condition_failure = decode_bool(reader)?;
    Ok(WriteRequest {
        key,
        storage_key,
        kind,
        condition,
        return_values,
        return_old_on_condition_failure,
        local_indexes: Vec::new(),
        global_indexes: Vec::new(),
    })
}

fn decode_name(reader: &mut Reader<'_>, what: &str) -> Result<String> {
    let bytes = reader.byte_string()?;
    match std::str::from_utf8(bytes) {
        Ok(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(reader.fail(&format!("{what} is empty or not UTF-8"))),
    }
}

fn decode_local_indexes(reader: &mut Reader<'_>) -> Result<Vec<LocalIndex>> {
    let count = bounded_count(reader, LOCAL_SECONDARY_INDEXES_MAX, "local indexes")?;
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        indexes.push(decode_local_index(reader)?);
    }
    Ok(indexes)
}

fn decode_local_index(reader: &mut Reader<'_>) -> Result<LocalIndex> {
    let name = decode_name(reader, "an index name")?;
    let number = reader.byte()?;
    let sort_key = decode_key_attribute(reader)?;
    let projection = decode_projection_kind(reader)?;
    Ok(LocalIndex {
        name,
        number,
        sort_key,
        projection,
    })
}

fn decode_global_indexes(reader: &mut Reader<'_>) -> Result<Vec<GlobalIndex>> {
    let count = bounded_count(reader, GLOBAL_SECONDARY_INDEXES_MAX, "global indexes")?;
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        indexes.push(decode_global_index(reader)?);
    }
    Ok(indexes)
}

fn decode_global_index(reader: &mut Reader<'_>) -> Result<GlobalIndex> {
    let name = decode_name(reader, "an index name")?;
    let number = reader.byte()?;
    let partition_keys = decode_key_attributes(
        reader,
        1,
        GSI_PARTITION_KEY_ATTRIBUTES_MAX,
        "partition key attributes",
    )?;
    let sort_keys = decode_key_attributes(
        reader,
        0,
        GSI_SORT_KEY_ATTRIBUTES_MAX,
        "sort key attributes",
    )?;
    let projection = decode_projection_kind(reader)?;
    Ok(GlobalIndex {
        name,
        number,
        partition_keys,
        sort_keys,
        projection,
    })
}

fn decode_key_attributes(
    reader: &mut Reader<'_>,
    minimum: usize,
    maximum: usize,
    what: &str,
) -> Result<Vec<KeyAttribute>> {
    let count = bounded_count(reader, maximum, what)?;
    if count < minimum {
        return Err(reader.fail(&format!("{count} {what}, fewer than {minimum}")));
    }
    (0..count).map(|_| decode_key_attribute(reader)).collect()
}

fn decode_position(reader: &mut Reader<'_>) -> Result<OutboxPosition> {
    let slot = decode_u64(reader)?;
    let mut ordinal = [0u8; 4];
    ordinal.copy_from_slice(reader.take(4)?);
    Ok(OutboxPosition {
        slot,
        ordinal: u32::from_le_bytes(ordinal),
    })
}

fn decode_key_attribute(reader: &mut Reader<'_>) -> Result<KeyAttribute> {
    let name = decode_name(reader, "an index key name")?;
    let key_type = match reader.byte()? {
        KEY_TYPE_STRING => KeyType::String,
        KEY_TYPE_NUMBER => KeyType::Number,
        KEY_TYPE_BINARY => KeyType::Binary,
        other => return Err(reader.fail(&format!("unknown key type {other:#04x}"))),
    };
    Ok(KeyAttribute { name, key_type })
}

fn decode_projection_kind(reader: &mut Reader<'_>) -> Result<Projection> {
    Ok(match reader.byte()? {
        PROJECTION_ALL => Projection::All,
        PROJECTION_KEYS_ONLY => Projection::KeysOnly,
        PROJECTION_INCLUDE => {
            let count = bounded_count(
                reader,
                PROJECTED_NON_KEY_ATTRIBUTES_MAX,
                "projected attributes",
            )?;
            let mut names = Vec::with_capacity(count);
            for _ in 0..count {
                names.push(decode_name(reader, "a projected attribute")?);
            }
            Projection::Include(names)
        }
        other => return Err(reader.fail(&format!("unknown projection {other:#04x}"))),
    })
}

fn decode_get(reader: &mut Reader<'_>) -> Result<GetRequest> {
    let key = decode_item(reader)?;
    let storage_key = reader.byte_string()?.to_vec();
    let consistent = decode_bool(reader)?;
    let projection = decode_projection(reader)?;
    Ok(GetRequest {
        key,
        storage_key,
        consistent,
        projection,
    })
}

fn decode_range(reader: &mut Reader<'_>) -> Result<RangeRequest> {
    let lower = decode_bound(reader)?;
    let upper = decode_bound(reader)?;
    let forward = decode_bool(reader)?;
    let filter = decode_optional_condition(reader)?;
    let projection = decode_projection(reader)?;
    let limit = if decode_present(reader)? {
        Some(decode_usize(reader, "limit")?)
    } else {
        None
    };
    let consistent = decode_bool(reader)?;
    let count_only = decode_bool(reader)?;
    let page_bytes_max = decode_u64(reader)?;
    Ok(RangeRequest {
        lower,
        upper,
        forward,
        filter,
        projection,
        limit,
        consistent,
        count_only,
        page_bytes_max,
        index: None,
        global_index: None,
    })
}

fn decode_bound(reader: &mut Reader<'_>) -> Result<Bound<Vec<u8>>> {
    Ok(match reader.byte()? {
        BOUND_UNBOUNDED => Bound::Unbounded,
        BOUND_INCLUDED => Bound::Included(reader.byte_string()?.to_vec()),
        BOUND_EXCLUDED => Bound::Excluded(reader.byte_string()?.to_vec()),
        other => return Err(reader.fail(&format!("unknown bound {other:#04x}"))),
    })
}

fn decode_projection(reader: &mut Reader<'_>) -> Result<Option<Vec<DocumentPath>>> {
    if !decode_present(reader)? {
        return Ok(None);
    }
    let count = reader.count()?;
    let mut paths = Vec::with_capacity(count.min(PREALLOCATED_ELEMENTS_MAX));
    for _ in 0..count {
        paths.push(decode_path(reader)?);
    }
    Ok(Some(paths))
}

fn decode_path(reader: &mut Reader<'_>) -> Result<DocumentPath> {
    let count = reader.count()?;
    if count == 0 {
        return Err(reader.fail("empty document path"));
    }
    if count > DOCUMENT_PATH_DEPTH_MAX {
        return Err(reader.fail(&format!(
            "document path of {count} elements, more than {DOCUMENT_PATH_DEPTH_MAX}"
        )));
    }
    let mut elements = Vec::with_capacity(count);
    for _ in 0..count {
        let element = match reader.byte()? {
            PATH_ATTRIBUTE => PathElement::Attribute(reader.text()?),
            PATH_INDEX if !elements.is_empty() => {
                PathElement::Index(decode_usize(reader, "list index")?)
            }
            PATH_INDEX => return Err(reader.fail("document path starts with a list index")),
            other => return Err(reader.fail(&format!("unknown path element {other:#04x}"))),
        };
        elements.push(element);
    }
    Ok(DocumentPath { elements })
}

fn decode_update(reader: &mut Reader<'_>) -> Result<Update> {
    let count = reader.count()?;
    let mut actions = Vec::with_capacity(count.min(PREALLOCATED_ELEMENTS_MAX));
    for _ in 0..count {
        let tag = reader.byte()?;
        let path = decode_path(reader)?;
        let action = match tag {
            ACTION_SET => {
                let value = match reader.byte()? {
                    SET_OPERAND => SetValue::Operand(decode_update_operand(reader, 1)?),
                    SET_PLUS => SetValue::Plus(
                        decode_update_operand(reader, 1)?,
                        decode_update_operand(reader, 1)?,
                    ),
                    SET_MINUS => SetValue::Minus(
                        decode_update_operand(reader, 1)?,
                        decode_update_operand(reader, 1)?,
                    ),
                    other => return Err(reader.fail(&format!("unknown SET value {other:#04x}"))),
                };
                UpdateAction::Set(path, value)
            }
            ACTION_REMOVE => UpdateAction::Remove(path),
            ACTION_ADD => UpdateAction::Add(path, decode_value(reader)?),
            ACTION_DELETE => UpdateAction::Delete(path, decode_value(reader)?),
            other => return Err(reader.fail(&format!("unknown update action {other:#04x}"))),
        };
        actions.push(action);
    }
    Ok(Update { actions })
}

/// One SET operand at nesting level `depth` (1 for the outermost).
fn decode_update_operand(reader: &mut Reader<'_>, depth: usize) -> Result<UpdateOperand> {
    if depth > UPDATE_OPERAND_DEPTH_MAX {
        return Err(reader.fail(&format!(
            "update operands nested deeper than {UPDATE_OPERAND_DEPTH_MAX}"
        )));
    }
    Ok(match reader.byte()? {
        UPDATE_OPERAND_PATH => UpdateOperand::Path(decode_path(reader)?),
        UPDATE_OPERAND_VALUE => UpdateOperand::Value(decode_value(reader)?),
        UPDATE_OPERAND_IF_NOT_EXISTS => {
            let path = decode_path(reader)?;
            let fallback = decode_update_operand(reader, depth + 1)?;
            UpdateOperand::IfNotExists(path, Box::new(fallback))
        }
        UPDATE_OPERAND_LIST_APPEND => {
            let first = decode_update_operand(reader, depth + 1)?;
            let second = decode_update_operand(reader, depth + 1)?;
            UpdateOperand::ListAppend(Box::new(first), Box::new(second))
        }
        other => return Err(reader.fail(&format!("unknown update operand {other:#04x}"))),
    })
}

fn decode_optional_condition(reader: &mut Reader<'_>) -> Result<Option<Condition>> {
    if decode_present(reader)? {
        decode_condition(reader, 1).map(Some)
    } else {
        Ok(None)
    }
}

/// One condition at nesting level `depth` (1 for the root).
fn decode_condition(reader: &mut Reader<'_>, depth: usize) -> Result<Condition> {
    if depth > CONDITION_DEPTH_MAX {
        return Err(reader.fail(&format!(
            "conditions nested deeper than {CONDITION_DEPTH_MAX}"
        )));
    }
    Ok(match reader.byte()? {
        CONDITION_COMPARISON => {
            let left = decode_operand(reader)?;
            let comparator = match reader.byte()? {
                COMPARATOR_EQUAL => Comparator::Equal,
                COMPARATOR_NOT_EQUAL => Comparator::NotEqual,
                COMPARATOR_LESS => Comparator::Less,
                COMPARATOR_LESS_OR_EQUAL => Comparator::LessOrEqual,
                COMPARATOR_GREATER => Comparator::Greater,
                COMPARATOR_GREATER_OR_EQUAL => Comparator::GreaterOrEqual,
                other => return Err(reader.fail(&format!("unknown comparator {other:#04x}"))),
            };
            let right = decode_operand(reader)?;
            Condition::Comparison {
                left,
                comparator,
                right,
            }
        }
        CONDITION_BETWEEN => Condition::Between {
            value: decode_operand(reader)?,
            lower: decode_operand(reader)?,
            upper: decode_operand(reader)?,
        },
        CONDITION_IN => {
            let value = decode_operand(reader)?;
            // The legacy IN takes any number of values, so only the bytes left bound the count.
            let count = reader.count()?;
            let mut candidates = Vec::with_capacity(count.min(PREALLOCATED_ELEMENTS_MAX));
            for _ in 0..count {
                candidates.push(decode_operand(reader)?);
            }
            Condition::In { value, candidates }
        }
        tag @ (CONDITION_AND | CONDITION_OR) => {
            let count = reader.count()?;
            let mut conditions = Vec::with_capacity(count.min(PREALLOCATED_ELEMENTS_MAX));
            for _ in 0..count {
                conditions.push(decode_condition(reader, depth + 1)?);
            }
            if tag == CONDITION_AND {
                Condition::And(conditions)
            } else {
                Condition::Or(conditions)
            }
        }
        CONDITION_NOT => Condition::Not(Box::new(decode_condition(reader, depth + 1)?)),
        CONDITION_ATTRIBUTE_EXISTS => Condition::AttributeExists(decode_path(reader)?),
        CONDITION_ATTRIBUTE_NOT_EXISTS => Condition::AttributeNotExists(decode_path(reader)?),
        CONDITION_ATTRIBUTE_TYPE => {
            let path = decode_path(reader)?;
            let type_name = reader.text()?;
            if !TYPE_NAMES.contains(&type_name.as_str()) {
                return Err(reader.fail(&format!("unknown attribute type {type_name:?}")));
            }
            Condition::AttributeType(path, type_name)
        }
        CONDITION_BEGINS_WITH => {
            Condition::BeginsWith(decode_operand(reader)?, decode_operand(reader)?)
        }
        CONDITION_CONTAINS => Condition::Contains(decode_operand(reader)?, decode_operand(reader)?),
        other => return Err(reader.fail(&format!("unknown condition {other:#04x}"))),
    })
}

fn decode_operand(reader: &mut Reader<'_>) -> Result<Operand> {
    Ok(match reader.byte()? {
        OPERAND_PATH => Operand::Path(decode_path(reader)?),
        OPERAND_VALUE => Operand::Value(decode_value(reader)?),
        OPERAND_SIZE => Operand::Size(decode_path(reader)?),
        other => return Err(reader.fail(&format!("unknown operand {other:#04x}"))),
    })
}

// The value nesting limit the decoder inherits from the item encoding is the one a path can
// reach, so no constant in a request can be deeper than an item may hold.
const _: () = assert!(NESTING_DEPTH_MAX == DOCUMENT_PATH_DEPTH_MAX);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Number;
    use crate::key::{KeySchema, KeyType};
    use crate::request::{ItemOperation, PAGE_BYTES_MAX, prepare};

    fn schema() -> KeySchema {
        KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number)
    }

    fn string(text: &str) -> AttributeValue {
        AttributeValue::String(text.to_string())
    }

    fn number(value: u64) -> AttributeValue {
        AttributeValue::Number(Number::from(value))
    }

    fn round_trip(request: &PreparedRequest) {
        let bytes = encode_request(request);
        assert_eq!(decode_request(&bytes).as_ref(), Ok(request));
        // Canonical: the decoded request encodes to the same bytes.
        assert_eq!(encode_request(&decode_request(&bytes).unwrap()), bytes);
    }

    fn prepared(operation: ItemOperation, parameters: serde_json::Value) -> PreparedRequest {
        match prepare(operation, &parameters, &schema()) {
            Ok(request) => request,
            Err(error) => panic!("{operation:?} refused: {error}"),
        }
    }

    fn error_message(bytes: &[u8]) -> String {
        match decode_request(bytes) {
            Err(Error::Serialization(message)) => message,
            other => panic!("expected a SerializationException, got {other:?}"),
        }
    }

    /// The deepest condition nesting in `condition`, the root counting 1.
    fn condition_depth(condition: &Condition) -> usize {
        match condition {
            Condition::And(conditions) | Condition::Or(conditions) => {
                1 + conditions.iter().map(condition_depth).max().unwrap_or(0)
            }
            Condition::Not(condition) => 1 + condition_depth(condition),
            _ => 1,
        }
    }

    fn update_operand_depth(operand: &UpdateOperand) -> usize {
        match operand {
            UpdateOperand::Path(_) | UpdateOperand::Value(_) => 1,
            UpdateOperand::IfNotExists(_, fallback) => 1 + update_operand_depth(fallback),
            UpdateOperand::ListAppend(first, second) => {
                1 + update_operand_depth(first).max(update_operand_depth(second))
            }
        }
    }

    #[test]
    fn golden_encoding_of_a_conditional_put() {
        // Pinned bytes: FORMAT.md's example. Changing them changes the bus protocol, which needs
        // a new REQUEST_FORMAT_VERSION.
        let request = PreparedRequest::Write(WriteRequest {
            key: Item::from([("pk".to_string(), string("a"))]),
            storage_key: vec![0xAB, 0xCD],
            kind: WriteKind::Put(Item::from([
                ("n".to_string(), number(1)),
                ("pk".to_string(), string("a")),
            ])),
            condition: Some(Condition::Or(vec![
                Condition::AttributeNotExists(DocumentPath::attribute("pk")),
                Condition::Comparison {
                    left: Operand::Path(DocumentPath::attribute("n")),
                    comparator: Comparator::Less,
                    right: Operand::Value(number(5)),
                },
            ])),
            return_values: ReturnValues::AllOld,
            return_old_on_condition_failure: true,
            local_indexes: Vec::new(),
            global_indexes: Vec::new(),
        });
        let expected: Vec<u8> = vec![
            0x02, // version
            0x01, // Write
            0x01, 0x00, 0x00, 0x00, // key: one attribute
            0x02, 0x00, 0x00, 0x00, b'p', b'k', // name "pk"
            0x01, 0x01, 0x00, 0x00, 0x00, b'a', // S "a"
            0x02, 0x00, 0x00, 0x00, 0xAB, 0xCD, // storage key, 2 bytes
            0x01, // Put
            0x02, 0x00, 0x00, 0x00, // item: two attributes
            0x01, 0x00, 0x00, 0x00, b'n', // name "n"
            0x02, 0x01, 0x00, 0x00,
            0x01, // N 1: 1 coefficient byte, exponent 0, coefficient 1
            0x02, 0x00, 0x00, 0x00, b'p', b'k', // name "pk"
            0x01, 0x01, 0x00, 0x00, 0x00, b'a', // S "a"
            0x01, // condition present
            0x05, 0x02, 0x00, 0x00, 0x00, // OR of two
            0x08, // attribute_not_exists
            0x01, 0x00, 0x00, 0x00, // path of one element
            0x01, 0x02, 0x00, 0x00, 0x00, b'p', b'k', // attribute "pk"
            0x01, // comparison
            0x01, 0x01, 0x00, 0x00, 0x00, // path operand of one element
            0x01, 0x01, 0x00, 0x00, 0x00, b'n', // attribute "n"
            0x03, // <
            0x02, 0x02, 0x01, 0x00, 0x00, 0x05, // value operand: N 5
            0x01, // ReturnValues ALL_OLD
            0x01, // ReturnValuesOnConditionCheckFailure ALL_OLD
        ];
        assert_eq!(encode_request(&request), expected);
        assert_eq!(decode_request(&expected), Ok(request));
    }

    #[test]
    fn put_with_a_condition_expression_round_trips() {
        round_trip(&prepared(
            ItemOperation::PutItem,
            json!({
                "Item": {
                    "pk": {"S": "user#1"}, "sk": {"N": "-12.50"},
                    "title": {"S": "hello"}, "blob": {"B": "AAEC"},
                    "doc": {"M": {"list": {"L": [{"NULL": true}, {"BOOL": false}, {"SS": ["x", "y"]}]}}},
                    "numbers": {"NS": ["3", "1", "2E5"]}, "bytes": {"BS": ["AA==", "AQ=="]},
                },
                "ConditionExpression": "attribute_not_exists(pk) OR (#count < :max AND begins_with(title, :prefix))",
                "ExpressionAttributeNames": {"#count": "count"},
                "ExpressionAttributeValues": {":max": {"N": "10"}, ":prefix": {"S": "he"}},
                "ReturnValues": "ALL_OLD",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }),
        ));
    }

    #[test]
    fn update_with_every_action_round_trips() {
        let request = prepared(
            ItemOperation::UpdateItem,
            json!({
                "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
                "UpdateExpression": "SET amount = if_not_exists(amount, :zero) + :one, \
                    history = list_append(if_not_exists(history, :empty), :more), \
                    doc.nested[2] = :value, score = score - :one \
                    REMOVE stale, gone[0] ADD visits :one, tags :tags DELETE labels :labels",
                "ConditionExpression": "attribute_exists(pk) AND size(history) <= :ten \
                    AND NOT contains(tags, :tag) AND kind IN (:k1, :k2) \
                    AND score BETWEEN :low AND :high AND attribute_type(doc, :map) \
                    AND (visits > :one OR visits = :zero)",
                "ExpressionAttributeValues": {
                    ":zero": {"N": "0"}, ":one": {"N": "1"}, ":ten": {"N": "10"},
                    ":empty": {"L": []}, ":more": {"L": [{"S": "x"}, {"M": {"k": {"N": "2"}}}]},
                    ":value": {"M": {"deep": {"L": [{"N": "1.5"}]}}},
                    ":tags": {"SS": ["new", "hot"]}, ":labels": {"NS": ["7"]},
                    ":tag": {"S": "banned"}, ":k1": {"S": "a"}, ":k2": {"S": "b"},
                    ":low": {"N": "-5"}, ":high": {"N": "5"}, ":map": {"S": "M"},
                },
                "ReturnValues": "UPDATED_NEW",
            }),
        );
        let PreparedRequest::Write(WriteRequest {
            kind: WriteKind::Update(update),
            ..
        }) = &request
        else {
            panic!("not an update: {request:?}");
        };
        assert_eq!(update.actions.len(), 9);
        round_trip(&request);
    }

    #[test]
    fn legacy_writes_round_trip() {
        round_trip(&prepared(
            ItemOperation::DeleteItem,
            json!({
                "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
                "Expected": {
                    "tags": {"ComparisonOperator": "NOT_CONTAINS", "AttributeValueList": [{"S": "x"}]},
                    "phase": {"Value": {"S": "open"}},
                    "gone": {"Exists": false},
                },
                "ConditionalOperator": "OR",
            }),
        ));
        round_trip(&prepared(
            ItemOperation::UpdateItem,
            json!({
                "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
                "AttributeUpdates": {
                    "a": {"Action": "PUT", "Value": {"S": "x"}},
                    "b": {"Action": "DELETE"},
                    "c": {"Action": "ADD", "Value": {"N": "3"}},
                },
                "ReturnValues": "ALL_NEW",
            }),
        ));
    }

    #[test]
    fn query_round_trips() {
        let request = prepared(
            ItemOperation::Query,
            json!({
                "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
                "FilterExpression": "attribute_exists(x.y[1]) OR z <> :z",
                "ProjectionExpression": "title, doc.nested, history[3]",
                "ExpressionAttributeValues": {
                    ":p": {"S": "user#1"}, ":a": {"N": "1"}, ":b": {"N": "9"}, ":z": {"BOOL": true},
                },
                "ScanIndexForward": false,
                "Limit": 10,
                "ConsistentRead": true,
                "ExclusiveStartKey": {"pk": {"S": "user#1"}, "sk": {"N": "5"}},
            }),
        );
        let PreparedRequest::Range(range) = &request else {
            panic!("not a range: {request:?}");
        };
        assert!(matches!(range.lower, Bound::Included(_)));
        assert!(matches!(range.upper, Bound::Excluded(_)));
        assert_eq!(range.limit, Some(10));
        assert!(!range.forward);
        round_trip(&request);
    }

    #[test]
    fn scans_round_trip() {
        let request = prepared(
            ItemOperation::Scan,
            json!({
                "Segment": 1,
                "TotalSegments": 4,
                "ExclusiveStartKey": {"pk": {"S": "user#1"}, "sk": {"N": "5"}},
                "Select": "COUNT",
                "FilterExpression": "size(title) > :n AND NOT (#s = :s)",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":n": {"N": "3"}, ":s": {"S": "closed"}},
            }),
        );
        let PreparedRequest::Range(range) = &request else {
            panic!("not a range: {request:?}");
        };
        assert!(range.count_only);
        assert!(matches!(range.lower, Bound::Excluded(_)));
        assert!(matches!(range.upper, Bound::Excluded(_)));
        assert_eq!(range.page_bytes_max, PAGE_BYTES_MAX as u64);
        round_trip(&request);
        // A legacy IN may list more values than an expression's IN may; the decoder takes them.
        let values: Vec<serde_json::Value> =
            (0..250).map(|n| json!({"N": n.to_string()})).collect();
        let request = prepared(
            ItemOperation::Scan,
            json!({
                "ScanFilter": {"n": {"ComparisonOperator": "IN", "AttributeValueList": values}},
                "AttributesToGet": ["n", "pk"],
                "Limit": 3,
            }),
        );
        round_trip(&request);
        // A range with a page budget left over from other partitions keeps it.
        let PreparedRequest::Range(mut range) = request else {
            panic!("not a range");
        };
        range.page_bytes_max = 12_345;
        round_trip(&PreparedRequest::Range(range));
    }

    #[test]
    fn gets_and_batches_round_trip() {
        round_trip(&prepared(
            ItemOperation::GetItem,
            json!({
                "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
                "ProjectionExpression": "#t, doc.nested[0]",
                "ExpressionAttributeNames": {"#t": "title"},
                "ConsistentRead": true,
            }),
        ));
        let batch_get = prepared(
            ItemOperation::BatchGet,
            json!({
                "Keys": [
                    {"pk": {"S": "a"}, "sk": {"N": "1"}},
                    {"pk": {"S": "b"}, "sk": {"N": "2"}},
                    {"pk": {"S": "c"}, "sk": {"N": "3"}},
                ],
                "ProjectionExpression": "title",
                "ConsistentRead": true,
            }),
        );
        assert!(matches!(&batch_get, PreparedRequest::BatchGet(gets) if gets.len() == 3));
        round_trip(&batch_get);
        let batch_write = prepared(
            ItemOperation::BatchWrite,
            json!([
                {"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"L": [{"N": "1"}]}}}},
                {"DeleteRequest": {"Key": {"pk": {"S": "b"}, "sk": {"N": "2"}}}},
            ]),
        );
        assert!(matches!(&batch_write, PreparedRequest::BatchWrite(writes) if writes.len() == 2));
        round_trip(&batch_write);
        round_trip(&PreparedRequest::BatchGet(Vec::new()));
        round_trip(&PreparedRequest::BatchWrite(Vec::new()));
    }

    /// The deepest filter the parser accepts: an OR of ANDs at every nesting level.
    fn nested_filter(levels: usize) -> String {
        let mut expression = "p = :v OR q = :v AND r = :v".to_string();
        for _ in 0..levels {
            expression = format!("p = :v OR q = :v AND ({expression})");
        }
        expression
    }

    #[test]
    fn stream_requests_round_trip_and_reads_are_bounded() {
        use crate::stream::{READ_RECORDS_MAX, RecordPosition, ViewType};
        round_trip(&PreparedRequest::StreamConfigure {
            stream: 1_733_000_000_000,
            view: None,
        });
        round_trip(&PreparedRequest::StreamConfigure {
            stream: 1_733_000_000_000,
            view: Some(ViewType::NewAndOldImages),
        });
        round_trip(&PreparedRequest::StreamShards { stream: 7 });
        let PreparedRequest::Write(write) = prepared(
            ItemOperation::UpdateItem,
            json!({
                "Key": {"pk": {"S": "user#1"}, "sk": {"N": "5"}},
                "UpdateExpression": "SET balance = balance - :n",
                "ConditionExpression": "balance >= :n",
                "ExpressionAttributeValues": {":n": {"N": "3"}},
            }),
        ) else {
            panic!("an UpdateItem prepared as something else");
        };
        let transaction = TransactionRef {
            ledger_key: "t#token".to_string(),
            nonce: 42,
        };
        round_trip(&PreparedRequest::TransactPrepare {
            transaction: transaction.clone(),
            actions: vec![
                TransactAction {
                    write: write.clone(),
                    check_only: false,
                },
                TransactAction {
                    write: write.clone(),
                    check_only: true,
                },
            ],
        });
        round_trip(&PreparedRequest::TransactFinish {
            transaction,
            commit: true,
            local_indexes: Vec::new(),
            global_indexes: Vec::new(),
        });
        round_trip(&PreparedRequest::TransactConfirm {
            storage_keys: vec![write.storage_key.clone(), vec![1, 2]],
            since: 77,
        });
        round_trip(&PreparedRequest::TransactLocks {
            prepared_before_ms: 1_765_000_000_000,
        });
        let PreparedRequest::Get(get) = prepared(
            ItemOperation::GetItem,
            json!({"Key": {"pk": {"S": "user#1"}, "sk": {"N": "5"}}, "ConsistentRead": true}),
        ) else {
            panic!("a GetItem prepared as something else");
        };
        round_trip(&PreparedRequest::TransactRead { gets: vec![get] });
        let read = |after, limit| PreparedRequest::StreamRead {
            stream: 7,
            generation: 2,
            after,
            limit,
        };
        round_trip(&read(None, 1));
        round_trip(&read(
            Some(RecordPosition {
                slot: 9,
                ordinal: 3,
            }),
            READ_RECORDS_MAX as u32,
        ));
        let over = encode_request(&read(None, READ_RECORDS_MAX as u32 + 1));
        assert!(error_message(&over).contains("record limit"));
        let mut unknown_view = encode_request(&PreparedRequest::StreamConfigure {
            stream: 1,
            view: Some(ViewType::KeysOnly),
        });
        *unknown_view.last_mut().unwrap() = 9;
        assert!(error_message(&unknown_view).contains("unknown stream view"));
    }

    #[test]
    fn the_deepest_conditions_the_parser_builds_round_trip() {
        let scan = |levels: usize| {
            let parameters = json!({
                "FilterExpression": nested_filter(levels),
                "ExpressionAttributeValues": {":v": {"N": "1"}},
            });
            prepare(ItemOperation::Scan, &parameters, &schema())
        };
        let request = scan(EXPRESSION_NESTING_DEPTH_MAX).unwrap();
        let PreparedRequest::Range(range) = &request else {
            panic!("not a range");
        };
        assert_eq!(
            condition_depth(range.filter.as_ref().unwrap()),
            CONDITION_DEPTH_MAX
        );
        round_trip(&request);
        // One more level is the parser's refusal, so CONDITION_DEPTH_MAX is exactly its limit.
        assert!(scan(EXPRESSION_NESTING_DEPTH_MAX + 1).is_err());
    }

    #[test]
    fn the_deepest_update_operands_the_parser_builds_round_trip() {
        let update = |levels: usize| {
            let expression = format!(
                "SET x = {}:v{}",
                "if_not_exists(y, ".repeat(levels),
                ")".repeat(levels)
            );
            let parameters = json!({
                "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
                "UpdateExpression": expression,
                "ExpressionAttributeValues": {":v": {"N": "1"}},
            });
            prepare(ItemOperation::UpdateItem, &parameters, &schema())
        };
        let request = update(EXPRESSION_NESTING_DEPTH_MAX).unwrap();
        let PreparedRequest::Write(WriteRequest {
            kind: WriteKind::Update(Update { actions }),
            ..
        }) = &request
        else {
            panic!("not an update");
        };
        let [UpdateAction::Set(_, SetValue::Operand(operand))] = actions.as_slice() else {
            panic!("not one SET: {actions:?}");
        };
        assert_eq!(update_operand_depth(operand), UPDATE_OPERAND_DEPTH_MAX);
        round_trip(&request);
        assert!(update(EXPRESSION_NESTING_DEPTH_MAX + 1).is_err());
    }

    fn scan_with_filter(filter: Condition) -> PreparedRequest {
        PreparedRequest::Range(RangeRequest {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            forward: true,
            filter: Some(filter),
            projection: None,
            limit: None,
            consistent: false,
            count_only: false,
            page_bytes_max: PAGE_BYTES_MAX as u64,
            index: None,
            global_index: None,
        })
    }

    #[test]
    fn trees_deeper_than_the_limits_are_refused() {
        let nots = |depth: usize| {
            let mut condition = Condition::AttributeExists(DocumentPath::attribute("a"));
            for _ in 1..depth {
                condition = Condition::Not(Box::new(condition));
            }
            scan_with_filter(condition)
        };
        round_trip(&nots(CONDITION_DEPTH_MAX));
        let message = error_message(&encode_request(&nots(CONDITION_DEPTH_MAX + 1)));
        assert!(
            message.contains("conditions nested deeper than 67"),
            "{message}"
        );

        let appends = |depth: usize| {
            let mut operand = UpdateOperand::Value(AttributeValue::List(Vec::new()));
            for _ in 1..depth {
                operand = UpdateOperand::ListAppend(
                    Box::new(operand),
                    Box::new(UpdateOperand::Path(DocumentPath::attribute("l"))),
                );
            }
            PreparedRequest::Write(WriteRequest {
                key: Item::new(),
                storage_key: Vec::new(),
                kind: WriteKind::Update(Update {
                    actions: vec![UpdateAction::Set(
                        DocumentPath::attribute("l"),
                        SetValue::Operand(operand),
                    )],
                }),
                condition: None,
                return_values: ReturnValues::None,
                return_old_on_condition_failure: false,
                local_indexes: Vec::new(),
                global_indexes: Vec::new(),
            })
        };
        round_trip(&appends(UPDATE_OPERAND_DEPTH_MAX));
        let message = error_message(&encode_request(&appends(UPDATE_OPERAND_DEPTH_MAX + 1)));
        assert!(
            message.contains("update operands nested deeper"),
            "{message}"
        );

        // Ten thousand nested NOTs fail at the limit instead of overflowing the stack.
        let mut bytes = vec![REQUEST_FORMAT_VERSION, REQUEST_RANGE, BOUND_UNBOUNDED];
        bytes.extend_from_slice(&[BOUND_UNBOUNDED, TRUE, PRESENT]);
        bytes.extend(std::iter::repeat_n(CONDITION_NOT, 10_000));
        assert!(error_message(&bytes).contains("nested deeper"));
    }

    #[test]
    fn paths_outside_the_model_are_refused() {
        let path_of = |elements: Vec<PathElement>| {
            scan_with_filter(Condition::AttributeExists(DocumentPath { elements }))
        };
        let deepest: Vec<PathElement> = std::iter::once(PathElement::Attribute("a".to_string()))
            .chain((1..DOCUMENT_PATH_DEPTH_MAX).map(PathElement::Index))
            .collect();
        round_trip(&path_of(deepest.clone()));
        let mut deeper = deepest;
        deeper.push(PathElement::Index(0));
        assert!(error_message(&encode_request(&path_of(deeper))).contains("more than 32"));
        assert!(error_message(&encode_request(&path_of(Vec::new()))).contains("empty"));
        let index_first = path_of(vec![PathElement::Index(0)]);
        assert!(error_message(&encode_request(&index_first)).contains("starts with a list index"));
        let wrong_type = scan_with_filter(Condition::AttributeType(
            DocumentPath::attribute("a"),
            "X".to_string(),
        ));
        assert!(error_message(&encode_request(&wrong_type)).contains("unknown attribute type"));
    }

    #[test]
    fn versions_tags_and_trailing_bytes_are_checked() {
        let request = PreparedRequest::Get(GetRequest {
            key: Item::from([("pk".to_string(), string("a"))]),
            storage_key: vec![1, 2, 3],
            consistent: true,
            projection: Some(vec![DocumentPath::attribute("x")]),
        });
        let bytes = encode_request(&request);
        round_trip(&request);
        // Version 1 (before multi-attribute GSI keys) is refused like any other.
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 1;
        assert_eq!(
            error_message(&wrong_version),
            "malformed item request encoding: unknown request format version 1 (at byte 1)"
        );
        let mut unknown_kind = bytes.clone();
        unknown_kind[1] = 0x7F;
        assert_eq!(
            error_message(&unknown_kind),
            "malformed item request encoding: unknown request kind 0x7f (at byte 2)"
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(error_message(&trailing).contains("trailing bytes"));
        for length in 0..bytes.len() {
            assert!(error_message(&bytes[..length]).contains("malformed item request encoding"));
        }
        // The consistent flag follows the key and the 3-byte storage key.
        let consistent_at = 2 + 4 + (4 + 2) + (1 + 4 + 1) + (4 + 3);
        assert_eq!(bytes[consistent_at], TRUE);
        let mut bad_boolean = bytes;
        bad_boolean[consistent_at] = 2;
        assert!(error_message(&bad_boolean).contains("invalid boolean byte 0x02"));
    }

    #[test]
    fn hostile_counts_do_not_allocate() {
        // Counts larger than the bytes left, or than a batch may hold, fail before any vector
        // is built from them.
        let huge = [0xFF, 0xFF, 0xFF, 0xFF];
        let mut batch = vec![REQUEST_FORMAT_VERSION, REQUEST_BATCH_GET];
        batch.extend_from_slice(&huge);
        assert!(error_message(&batch).contains("count exceeds the remaining bytes"));
        let mut too_many = vec![REQUEST_FORMAT_VERSION, REQUEST_BATCH_WRITE, 26, 0, 0, 0];
        too_many.extend(std::iter::repeat_n(0, 26));
        assert!(error_message(&too_many).contains("26 BatchWrite requests, more than 25"));
        // ANDs nested to the limit, each claiming every byte left as its count, reserve only a
        // bounded number of elements each (PREALLOCATED_ELEMENTS_MAX).
        let mut bytes = vec![REQUEST_FORMAT_VERSION, REQUEST_RANGE, BOUND_UNBOUNDED];
        bytes.extend_from_slice(&[BOUND_UNBOUNDED, TRUE, PRESENT]);
        let levels = CONDITION_DEPTH_MAX - 1;
        let padding = 1 << 16;
        for level in 0..levels {
            let left = (levels - level - 1) * 5 + padding;
            bytes.push(CONDITION_AND);
            bytes.extend_from_slice(&u32::try_from(left).unwrap().to_le_bytes());
        }
        bytes.extend(std::iter::repeat_n(0xEE, padding));
        assert!(error_message(&bytes).contains("unknown condition 0xee"));
    }

    #[test]
    fn values_reuse_the_item_encoding_checks() {
        // A set member out of order, inside an ADD operand: refused as the item decoder refuses
        // it, but as a malformed request rather than corrupt storage.
        let request = PreparedRequest::Write(WriteRequest {
            key: Item::new(),
            storage_key: Vec::new(),
            kind: WriteKind::Update(Update {
                actions: vec![UpdateAction::Add(
                    DocumentPath::attribute("s"),
                    AttributeValue::StringSet(["a".to_string(), "b".to_string()].into()),
                )],
            }),
            condition: None,
            return_values: ReturnValues::None,
            return_old_on_condition_failure: false,
            local_indexes: Vec::new(),
            global_indexes: Vec::new(),
        });
        let mut bytes = encode_request(&request);
        let a = bytes.iter().position(|&byte| byte == b'a').unwrap();
        bytes[a] = b'c';
        assert!(error_message(&bytes).contains("set members out of order"));
    }
}
