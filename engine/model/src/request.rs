//! Item requests, typed: the DynamoDB JSON parameters of one partition's share of an item
//! operation, parsed once (by the router) into a [`PreparedRequest`] that a partition leader
//! only evaluates. Every check a request needs before it reads an item happens here, with the
//! model's own parsers and one set of limits.

use std::ops::Bound;

use serde_json::Value as Json;

use crate::expression::ast::{Condition, DocumentPath, Operand, Update};
use crate::expression::key_condition::{KeyCondition, parse_key_condition};
use crate::expression::update::ReturnValues;
use crate::expression::{ExpressionContext, ExpressionKind};
use crate::index::LocalIndex;
use crate::index::global::{GlobalIndex, OutboxPosition, PositionedChange};
use crate::json::item_from_json;
use crate::key::{KeyAttribute, KeyParts, KeySchema};
use crate::transaction::TransactionRef;
use crate::{Error, Item, legacy};

/// DynamoDB's page limit for Query and Scan: data read (before any filter) per response.
pub const PAGE_BYTES_MAX: usize = 1024 * 1024;
/// BatchGetItem reads at most 100 keys per request (DynamoDB's limit).
pub const BATCH_GET_KEYS_MAX: usize = 100;
/// BatchWriteItem writes at most 25 items per request (DynamoDB's limit).
pub const BATCH_WRITE_REQUESTS_MAX: usize = 25;

type Result<T> = std::result::Result<T, Error>;

/// The item operations a partition serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemOperation {
    PutItem,
    GetItem,
    UpdateItem,
    DeleteItem,
    /// One partition key of this partition.
    Query,
    /// This partition's part of a Scan.
    Scan,
    /// This partition's keys of a BatchGetItem (`{"Keys": [...], ...}`).
    BatchGet,
    /// This partition's requests of a BatchWriteItem (`[{"PutRequest": ...}, ...]`).
    BatchWrite,
}

/// A ReturnValues value the operation does not take, e.g. ALL_NEW on PutItem.
pub const RETURN_VALUES_NOT_ALLOWED: &str = "Return values set to invalid value";
/// A Query's ExclusiveStartKey that its key condition could not have produced.
/// A Query start key whose sort key the sort key condition does not match.
pub const START_KEY_OUTSIDE_SORT_CONDITION: &str =
    "The provided starting key does not match the range key predicate";
/// A Query start key of another partition when the query has a sort key condition.
pub const START_KEY_CANNOT_RESTART: &str =
    "The query can return at most one row and cannot be restarted";
/// A Query start key of another partition.
pub const START_KEY_OUTSIDE_QUERY: &str =
    "The provided starting key is outside query boundaries based on provided conditions";

fn validation(message: impl Into<String>) -> Error {
    Error::Validation(message.into())
}

fn serialization(message: &str) -> Error {
    Error::Serialization(format!("Unexpected value type in payload: {message}"))
}

/// What a write does to its item.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteKind {
    Put(Item),
    Update(Update),
    Delete,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WriteRequest {
    /// The key attributes.
    pub key: Item,
    pub storage_key: Vec<u8>,
    pub kind: WriteKind,
    pub condition: Option<Condition>,
    pub return_values: ReturnValues,
    /// ReturnValuesOnConditionCheckFailure = ALL_OLD.
    pub return_old_on_condition_failure: bool,
    /// The table's local secondary indexes, which the leader changes in the same mutation
    /// batch as the item (empty for a table without them).
    pub local_indexes: Vec<LocalIndex>,
    /// The table's global secondary indexes: the leader puts the write's entry changes into
    /// the partition's outbox in the same batch (empty for a table without them).
    pub global_indexes: Vec<GlobalIndex>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GetRequest {
    pub key: Item,
    pub storage_key: Vec<u8>,
    pub consistent: bool,
    pub projection: Option<Vec<DocumentPath>>,
}

/// Query and Scan share their reading loop; they differ in the range they read.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeRequest {
    pub lower: Bound<Vec<u8>>,
    pub upper: Bound<Vec<u8>>,
    pub forward: bool,
    pub filter: Option<Condition>,
    pub projection: Option<Vec<DocumentPath>>,
    /// Items evaluated at most (DynamoDB's `Limit`: counted before the filter).
    pub limit: Option<usize>,
    pub consistent: bool,
    /// `Select: COUNT`: answer counts only.
    pub count_only: bool,
    /// Bytes of items read (before any filter) after which the page ends: [`PAGE_BYTES_MAX`],
    /// or what is left of it when a router fills one Scan page from several partitions.
    pub page_bytes_max: u64,
    /// A read of a local secondary index instead of the table: the bounds are entry keys.
    /// Boxed: most ranges read the table, and requests travel in every replica event.
    pub index: Option<Box<IndexRead>>,
    /// A read of a global secondary index's partition: the bounds are its entry keys. Never
    /// set together with `index`.
    pub global_index: Option<Box<GlobalIndex>>,
}

/// How a Query or Scan reads a local secondary index.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexRead {
    pub index: LocalIndex,
    /// Whether the answer (or the filter) needs attributes the index does not project: they
    /// are fetched from the base item, and each fetch is charged as a read of that item.
    pub fetch_base: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PreparedRequest {
    Write(WriteRequest),
    Get(GetRequest),
    Range(RangeRequest),
    BatchGet(Vec<GetRequest>),
    BatchWrite(Vec<WriteRequest>),
    /// A GSI propagator's read of a base partition's outbox: the records after `after`, in
    /// position order, at most [`crate::index::global::OUTBOX_READ_ENTRIES_MAX`] (strongly
    /// consistent, at the leader).
    OutboxRead {
        after: Option<OutboxPosition>,
    },
    /// Removes a base partition's outbox records up to `through`, which every index partition
    /// has applied.
    OutboxTrim {
        through: OutboxPosition,
    },
    /// Applies a base partition's GSI changes at an index partition, each once (invariant 3 of
    /// `index::global`).
    IndexApply {
        source: u64,
        changes: Vec<PositionedChange>,
    },
    /// One step of a new GSI's backfill at a base partition: the leader puts the index
    /// entries of the items after `after` (at most a step's worth) into the outbox, in one log
    /// entry ordered with the writes around it.
    IndexBackfill {
        index: GlobalIndex,
        after: Option<Vec<u8>>,
    },
    /// Starts stream `stream` at a base partition (`view`: its view type) or ends it (`view`
    /// `None`), through the partition's log (crate::stream invariant 1). Answered at once when
    /// the partition already has that state. Ending a stream the partition never started
    /// records its end all the same, so a late request to start it changes nothing.
    StreamConfigure {
        stream: u64,
        view: Option<crate::stream::ViewType>,
    },
    /// A shard's stream records after `after` (from the shard's start when `None`), at most
    /// `limit` and [`crate::stream::READ_BYTES_MAX`] bytes (strongly consistent, at the leader).
    StreamRead {
        stream: u64,
        generation: u32,
        after: Option<crate::stream::RecordPosition>,
        limit: u32,
    },
    /// A stream's shards in one partition.
    StreamShards {
        stream: u64,
    },
    /// Phase 1 of a write transaction at one partition (crate::transaction): check every
    /// action and, if all pass, lock their items through the log. Answered with the reason of
    /// each action (all `None` when prepared).
    TransactPrepare {
        transaction: TransactionRef,
        actions: Vec<TransactAction>,
    },
    /// Phase 2: commit (`commit`) or cancel the transaction's locks at this partition. The
    /// table's indexes come with it: a commit maintains them as any write does.
    TransactFinish {
        transaction: TransactionRef,
        commit: bool,
        local_indexes: Vec<LocalIndex>,
        global_indexes: Vec<GlobalIndex>,
    },
    /// A TransactGetItems' read at one partition: the items, read together at the leader, and
    /// whether any of them is locked; answered with the applied slot they were read at.
    TransactRead {
        gets: Vec<GetRequest>,
    },
    /// A TransactGetItems' second look, for reads of several partitions: whether none of these
    /// items (nor its lock) changed after slot `since`.
    TransactConfirm {
        storage_keys: Vec<Vec<u8>>,
        since: u64,
    },
    /// The locks prepared before `prepared_before_ms` (leader's clock), at most
    /// [`crate::transaction::LOCK_LISTING_MAX`]: the recovery loop's question.
    TransactLocks {
        prepared_before_ms: u64,
    },
}

/// One action of a write transaction: its write (for a ConditionCheck, a Delete whose
/// condition is the check's, never applied), evaluated like a single-item write.
#[derive(Clone, Debug, PartialEq)]
pub struct TransactAction {
    pub write: WriteRequest,
    pub check_only: bool,
}

impl PreparedRequest {
    /// The request's name in metrics: the DynamoDB operation for single items and batches;
    /// `Range` for a Query or a partition's part of a Scan, which are the same read here.
    pub fn operation_label(&self) -> &'static str {
        match self {
            PreparedRequest::Write(write) => match write.kind {
                WriteKind::Put(_) => "PutItem",
                WriteKind::Update(_) => "UpdateItem",
                WriteKind::Delete => "DeleteItem",
            },
            PreparedRequest::Get(_) => "GetItem",
            PreparedRequest::Range(_) => "Range",
            PreparedRequest::BatchGet(_) => "BatchGet",
            PreparedRequest::BatchWrite(_) => "BatchWrite",
            PreparedRequest::OutboxRead { .. } => "OutboxRead",
            PreparedRequest::OutboxTrim { .. } => "OutboxTrim",
            PreparedRequest::IndexApply { .. } => "IndexApply",
            PreparedRequest::IndexBackfill { .. } => "IndexBackfill",
            PreparedRequest::StreamConfigure { .. } => "StreamConfigure",
            PreparedRequest::StreamRead { .. } => "StreamRead",
            PreparedRequest::StreamShards { .. } => "StreamShards",
            PreparedRequest::TransactPrepare { .. } => "TransactPrepare",
            PreparedRequest::TransactFinish { .. } => "TransactFinish",
            PreparedRequest::TransactRead { .. } => "TransactRead",
            PreparedRequest::TransactConfirm { .. } => "TransactConfirm",
            PreparedRequest::TransactLocks { .. } => "TransactLocks",
        }
    }

    pub fn is_write(&self) -> bool {
        matches!(
            self,
            PreparedRequest::Write(_)
                | PreparedRequest::BatchWrite(_)
                | PreparedRequest::OutboxTrim { .. }
                | PreparedRequest::IndexApply { .. }
                | PreparedRequest::IndexBackfill { .. }
                | PreparedRequest::StreamConfigure { .. }
                | PreparedRequest::TransactPrepare { .. }
                | PreparedRequest::TransactFinish { .. }
        )
    }
}

fn object<'json>(json: &'json Json, what: &str) -> Result<&'json serde_json::Map<String, Json>> {
    json.as_object()
        .ok_or_else(|| serialization(&format!("{what} must be an object")))
}

fn string_parameter<'json>(parameters: &'json Json, name: &str) -> Result<Option<&'json str>> {
    match parameters.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => Ok(Some(text)),
        Some(_) => Err(serialization(&format!("{name} must be a string"))),
    }
}

fn bool_parameter(parameters: &Json, name: &str) -> Result<bool> {
    match parameters.get(name) {
        None | Some(Json::Null) => Ok(false),
        Some(Json::Bool(flag)) => Ok(*flag),
        Some(_) => Err(serialization(&format!("{name} must be a boolean"))),
    }
}

fn key_parameter(parameters: &Json, name: &str, key_schema: &KeySchema) -> Result<(Item, Vec<u8>)> {
    let json = parameters
        .get(name)
        .ok_or_else(|| validation(format!("1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null", lower_first(name))))?;
    let key = item_from_json(json)?;
    key_schema.validate_key(&key)?;
    let storage_key = key_schema
        .storage_key(&key)
        .ok_or_else(|| validation(crate::messages::KEY_DOES_NOT_MATCH_SCHEMA))?;
    Ok((key, storage_key))
}

fn lower_first(name: &str) -> String {
    let mut characters = name.chars();
    characters
        .next()
        .map(|first| first.to_lowercase().chain(characters).collect())
        .unwrap_or_default()
}

fn context(parameters: &Json) -> Result<ExpressionContext> {
    ExpressionContext::from_json(
        parameters.get("ExpressionAttributeNames"),
        parameters.get("ExpressionAttributeValues"),
    )
}

/// The condition of a write: ConditionExpression, or the legacy Expected (never both).
fn write_condition(
    parameters: &Json,
    context: &mut ExpressionContext,
) -> Result<Option<Condition>> {
    let expression = string_parameter(parameters, "ConditionExpression")?;
    let expected = parameters.get("Expected");
    let conditional_operator = string_parameter(parameters, "ConditionalOperator")?;
    let mut legacy_used = Vec::new();
    if expected.is_some() {
        legacy_used.push("Expected");
    }
    if conditional_operator.is_some() {
        legacy_used.push("ConditionalOperator");
    }
    let mut expression_used = Vec::new();
    if expression.is_some() {
        expression_used.push("ConditionExpression");
    }
    legacy::check_not_mixed(&legacy_used, &expression_used)?;
    if let Some(source) = expression {
        return context
            .parse_condition(ExpressionKind::Condition, source)
            .map(Some);
    }
    match expected {
        Some(expected) => legacy::expected_to_condition(expected, conditional_operator),
        None => legacy::check_conditional_operator_has_entries(conditional_operator).map(|()| None),
    }
}

fn return_values(parameters: &Json, allowed: &[ReturnValues]) -> Result<ReturnValues> {
    let Some(text) = string_parameter(parameters, "ReturnValues")? else {
        return Ok(ReturnValues::None);
    };
    let value = ReturnValues::parse(text)?;
    if !allowed.contains(&value) {
        // A value of the enum this operation does not take (PutItem and DeleteItem take NONE
        // and ALL_OLD only): DynamoDB's own wording, not the enum constraint's.
        return Err(validation(RETURN_VALUES_NOT_ALLOWED));
    }
    Ok(value)
}

fn return_old_on_failure(parameters: &Json) -> Result<bool> {
    match string_parameter(parameters, "ReturnValuesOnConditionCheckFailure")? {
        None | Some("NONE") => Ok(false),
        Some("ALL_OLD") => Ok(true),
        Some(other) => Err(validation(format!(
            "1 validation error detected: Value '{other}' at 'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]"
        ))),
    }
}

fn projection(
    parameters: &Json,
    context: &mut ExpressionContext,
) -> Result<Option<Vec<DocumentPath>>> {
    let expression = string_parameter(parameters, "ProjectionExpression")?;
    let attributes_to_get = parameters.get("AttributesToGet");
    let legacy_used: Vec<&str> = attributes_to_get
        .map(|_| "AttributesToGet")
        .into_iter()
        .collect();
    let expression_used: Vec<&str> = expression
        .map(|_| "ProjectionExpression")
        .into_iter()
        .collect();
    legacy::check_not_mixed(&legacy_used, &expression_used)?;
    if let Some(source) = expression {
        return context.parse_projection(source).map(Some);
    }
    attributes_to_get
        .map(legacy::attributes_to_get_to_projection)
        .transpose()
}

fn filter(
    parameters: &Json,
    legacy_name: &str,
    context: &mut ExpressionContext,
) -> Result<Option<Condition>> {
    let expression = string_parameter(parameters, "FilterExpression")?;
    let legacy_filter = parameters.get(legacy_name);
    let conditional_operator = string_parameter(parameters, "ConditionalOperator")?;
    let mut legacy_used: Vec<&str> = legacy_filter.map(|_| legacy_name).into_iter().collect();
    if conditional_operator.is_some() {
        legacy_used.push("ConditionalOperator");
    }
    let expression_used: Vec<&str> = expression.map(|_| "FilterExpression").into_iter().collect();
    legacy::check_not_mixed(&legacy_used, &expression_used)?;
    if let Some(source) = expression {
        return context
            .parse_condition(ExpressionKind::Filter, source)
            .map(Some);
    }
    match legacy_filter {
        Some(json) => legacy::filter_to_condition(json, conditional_operator),
        None => legacy::check_conditional_operator_has_entries(conditional_operator).map(|()| None),
    }
}

fn limit(parameters: &Json) -> Result<Option<usize>> {
    match parameters.get("Limit") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(number)) => match number.as_u64() {
            Some(limit) if limit >= 1 => Ok(Some(usize::try_from(limit).unwrap_or(usize::MAX))),
            _ => Err(validation(format!(
                "1 validation error detected: Value '{number}' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"
            ))),
        },
        Some(_) => Err(serialization("Limit must be a number")),
    }
}

/// Query or Scan: they word their Select rules differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RangeOperation {
    Query,
    Scan,
}

/// `Select` and what it allows, before anything else of the request is read (DynamoDB checks
/// it with the request's shape): the enum; ProjectionExpression or AttributesToGet only with
/// SPECIFIC_ATTRIBUTES, which needs one of them; ALL_PROJECTED_ATTRIBUTES only with an index
/// (a projection breaks the first rule before the second). `Ok(true)` for COUNT.
fn count_only(parameters: &Json, operation: RangeOperation) -> Result<bool> {
    let select = string_parameter(parameters, "Select")?;
    if let Some(other) = select.filter(|select| {
        !matches!(
            *select,
            "ALL_ATTRIBUTES" | "SPECIFIC_ATTRIBUTES" | "ALL_PROJECTED_ATTRIBUTES" | "COUNT"
        )
    }) {
        return Err(validation(format!(
            "1 validation error detected: Value '{other}' at 'select' failed to satisfy constraint: Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]"
        )));
    }
    let attributes = if parameters
        .get("ProjectionExpression")
        .is_some_and(|value| !value.is_null())
    {
        Some("ProjectionExpression")
    } else if parameters
        .get("AttributesToGet")
        .is_some_and(|value| !value.is_null())
    {
        Some("AttributesToGet")
    } else {
        None
    };
    let indexed = parameters
        .get("IndexName")
        .is_some_and(|value| !value.is_null());
    let violation = match (select, attributes) {
        (
            Some(select @ ("ALL_ATTRIBUTES" | "ALL_PROJECTED_ATTRIBUTES" | "COUNT")),
            Some(parameter),
        ) => Some(crate::messages::select_excludes_attributes(
            parameter, select,
        )),
        (Some("SPECIFIC_ATTRIBUTES"), None) => {
            Some(crate::messages::SELECT_SPECIFIC_WITHOUT_ATTRIBUTES.to_string())
        }
        (Some("ALL_PROJECTED_ATTRIBUTES"), None) if !indexed => {
            Some(crate::messages::SELECT_ALL_PROJECTED_WITHOUT_INDEX.to_string())
        }
        _ => None,
    };
    if let Some(message) = violation {
        return Err(validation(match operation {
            RangeOperation::Query => crate::messages::query_select_violation(&message),
            RangeOperation::Scan => message,
        }));
    }
    Ok(select == Some("COUNT"))
}

/// A table's secondary indexes, as requests to it need them.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableIndexes<'a> {
    pub local: &'a [LocalIndex],
    pub global: &'a [GlobalIndex],
    /// The table opted in to strongly consistent GSI reads (beyond DynamoDB, off by default:
    /// router/server README.md, "Strongly consistent GSI reads").
    pub consistent_global_reads: bool,
}

/// The index an IndexName names.
#[derive(Clone, Copy, Debug)]
enum NamedIndex<'a> {
    Local(&'a LocalIndex),
    Global(&'a GlobalIndex),
}

/// The index an IndexName names; one the table does not have is refused rather than read
/// from the table itself.
fn named_index<'a>(parameters: &Json, indexes: TableIndexes<'a>) -> Result<Option<NamedIndex<'a>>> {
    let Some(name) = string_parameter(parameters, "IndexName")? else {
        return Ok(None);
    };
    if let Some(index) = indexes.local.iter().find(|index| index.name == name) {
        return Ok(Some(NamedIndex::Local(index)));
    }
    indexes
        .global
        .iter()
        .find(|index| index.name == name)
        .map(|index| Some(NamedIndex::Global(index)))
        .ok_or_else(|| validation(crate::messages::index_not_found(name)))
}

/// What DynamoDB refuses of a read of a GSI before anything is read: ConsistentRead, and Select
/// ALL_ATTRIBUTES when the index does not project every attribute (a GSI has no base item to
/// fetch them from).
fn check_global_read(
    parameters: &Json,
    index: &GlobalIndex,
    consistent_allowed: bool,
) -> Result<()> {
    if bool_parameter(parameters, "ConsistentRead")? && !consistent_allowed {
        return Err(validation(crate::index::global::CONSISTENT_READ_ON_GSI));
    }
    if index.projection != crate::index::Projection::All
        && parameters.get("Select").and_then(Json::as_str) == Some("ALL_ATTRIBUTES")
    {
        return Err(validation(
            crate::index::global::select_all_attributes_on_partial_gsi(&index.name),
        ));
    }
    Ok(())
}

/// Whether a read of `index` must fetch the base item: Select ALL_ATTRIBUTES on an index that
/// does not project everything, or a projection or filter naming an attribute the index does
/// not project (DynamoDB fetches those from the table for an LSI).
fn fetches_base(
    parameters: &Json,
    index: &LocalIndex,
    key_schema: &KeySchema,
    projection: Option<&[DocumentPath]>,
    filter: Option<&Condition>,
) -> bool {
    if index.projection == crate::index::Projection::All {
        return false;
    }
    if parameters.get("Select").and_then(Json::as_str) == Some("ALL_ATTRIBUTES") {
        return true;
    }
    let projected = |path: &DocumentPath| index.projects(key_schema, path.top_level_name());
    let mut names = Vec::new();
    if let Some(condition) = filter {
        condition_paths(condition, &mut names);
    }
    projection.is_some_and(|paths| !paths.iter().all(projected)) || !names.iter().all(projected)
}

/// Every document path a condition reads.
fn condition_paths(condition: &Condition, output: &mut Vec<DocumentPath>) {
    let operand = |operand: &Operand, output: &mut Vec<DocumentPath>| {
        if let Operand::Path(path) | Operand::Size(path) = operand {
            output.push(path.clone());
        }
    };
    match condition {
        Condition::Comparison { left, right, .. }
        | Condition::BeginsWith(left, right)
        | Condition::Contains(left, right) => {
            operand(left, output);
            operand(right, output);
        }
        Condition::Between {
            value,
            lower,
            upper,
        } => {
            for each in [value, lower, upper] {
                operand(each, output);
            }
        }
        Condition::In { value, candidates } => {
            operand(value, output);
            for candidate in candidates {
                operand(candidate, output);
            }
        }
        Condition::And(conditions) | Condition::Or(conditions) => {
            for condition in conditions {
                condition_paths(condition, output);
            }
        }
        Condition::Not(condition) => condition_paths(condition, output),
        Condition::AttributeExists(path)
        | Condition::AttributeNotExists(path)
        | Condition::AttributeType(path, _) => output.push(path.clone()),
    }
}

/// An index read's ExclusiveStartKey: the table's key attributes and the index sort key,
/// exactly (DynamoDB's LastEvaluatedKey for an index), and the entry key after which to go on.
fn index_start_key(
    parameters: &Json,
    key_schema: &KeySchema,
    index: &LocalIndex,
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
    let mut key = item_from_json(json)?;
    let sort_value = key.remove(&index.sort_key.name).ok_or_else(invalid)?;
    if !index.sort_key.key_type.matches(&sort_value) || key_schema.validate_key(&key).is_err() {
        return Err(invalid());
    }
    let storage_key = key_schema.storage_key(&key).ok_or_else(invalid)?;
    let entry =
        crate::index::entry_key(index.number, &storage_key, &sort_value).ok_or_else(invalid)?;
    key.insert(index.sort_key.name.clone(), sort_value);
    Ok(Some((key, entry)))
}

fn exclusive_start(parameters: &Json, key_schema: &KeySchema) -> Result<Option<Vec<u8>>> {
    Ok(exclusive_start_key(parameters, key_schema)?.map(|(_, storage_key)| storage_key))
}

/// ExclusiveStartKey, validated against the key schema: the key and its storage key.
fn exclusive_start_key(
    parameters: &Json,
    key_schema: &KeySchema,
) -> Result<Option<(Item, Vec<u8>)>> {
    match parameters.get("ExclusiveStartKey") {
        None | Some(Json::Null) => Ok(None),
        Some(json) => {
            let key = item_from_json(json)?;
            let storage_key = match key_schema.validate_key(&key) {
                Ok(()) => key_schema.storage_key(&key),
                Err(_) => None,
            };
            let Some(storage_key) = storage_key else {
                return Err(validation(
                    "The provided starting key is invalid: The provided key element does not match the schema",
                ));
            };
            Ok(Some((key, storage_key)))
        }
    }
}

fn prepare_write(
    parameters: &Json,
    operation: ItemOperation,
    key_schema: &KeySchema,
) -> Result<WriteRequest> {
    let mut context = context(parameters)?;
    let (key, storage_key, kind, allowed) = match operation {
        ItemOperation::PutItem => {
            let json = parameters.get("Item").ok_or_else(|| {
                validation("1 validation error detected: Value null at 'item' failed to satisfy constraint: Member must not be null")
            })?;
            let item = item_from_json(json)?;
            key_schema.validate_item(&item)?;
            crate::value::check_item_size(&item)?;
            let key = key_schema.key_of(&item);
            let storage_key = key_schema
                .storage_key(&key)
                .ok_or_else(|| validation(crate::messages::KEY_DOES_NOT_MATCH_SCHEMA))?;
            (
                key,
                storage_key,
                WriteKind::Put(item),
                &[ReturnValues::None, ReturnValues::AllOld][..],
            )
        }
        ItemOperation::DeleteItem => {
            let (key, storage_key) = key_parameter(parameters, "Key", key_schema)?;
            (
                key,
                storage_key,
                WriteKind::Delete,
                &[ReturnValues::None, ReturnValues::AllOld][..],
            )
        }
        _ => {
            let (key, storage_key) = key_parameter(parameters, "Key", key_schema)?;
            let expression = string_parameter(parameters, "UpdateExpression")?;
            let attribute_updates = parameters.get("AttributeUpdates");
            let legacy_used: Vec<&str> = attribute_updates
                .map(|_| "AttributeUpdates")
                .into_iter()
                .collect();
            let expression_used: Vec<&str> =
                expression.map(|_| "UpdateExpression").into_iter().collect();
            legacy::check_not_mixed(&legacy_used, &expression_used)?;
            let update = match (expression, attribute_updates) {
                (Some(source), _) => context.parse_update(source)?,
                (None, Some(json)) => legacy::attribute_updates_to_update(json)?,
                (None, None) => Update {
                    actions: Vec::new(),
                },
            };
            (
                key,
                storage_key,
                WriteKind::Update(update),
                &[
                    ReturnValues::None,
                    ReturnValues::AllOld,
                    ReturnValues::UpdatedOld,
                    ReturnValues::AllNew,
                    ReturnValues::UpdatedNew,
                ][..],
            )
        }
    };
    let condition = write_condition(parameters, &mut context)?;
    let return_values = return_values(parameters, allowed)?;
    let return_old_on_condition_failure = return_old_on_failure(parameters)?;
    context.finish()?;
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

fn prepare_get(parameters: &Json, key_schema: &KeySchema) -> Result<GetRequest> {
    let mut context = context(parameters)?;
    let (key, storage_key) = key_parameter(parameters, "Key", key_schema)?;
    let projection = projection(parameters, &mut context)?;
    let consistent = bool_parameter(parameters, "ConsistentRead")?;
    context.finish()?;
    Ok(GetRequest {
        key,
        storage_key,
        consistent,
        projection,
    })
}

fn prepare_query(
    parameters: &Json,
    table_key_schema: &KeySchema,
    indexes: TableIndexes<'_>,
) -> Result<RangeRequest> {
    let count_only = count_only(parameters, RangeOperation::Query)?;
    let named = named_index(parameters, indexes)?;
    let (index, global) = match named {
        Some(NamedIndex::Local(index)) => (Some(index), None),
        Some(NamedIndex::Global(index)) => {
            check_global_read(parameters, index, indexes.consistent_global_reads)?;
            (None, Some(index))
        }
        None => (None, None),
    };
    // An index Query's key condition, filter rule and start key are on the index's key.
    let local_key_schema = match named {
        Some(NamedIndex::Local(index)) => Some(index.key_schema(table_key_schema)),
        _ => None,
    };
    let key_parts = match named {
        Some(NamedIndex::Global(index)) => index.key_parts(),
        _ => local_key_schema
            .as_ref()
            .unwrap_or(table_key_schema)
            .parts(),
    };
    let mut context = context(parameters)?;
    let expression = string_parameter(parameters, "KeyConditionExpression")?;
    let key_conditions = parameters.get("KeyConditions");
    let legacy_used: Vec<&str> = key_conditions
        .map(|_| "KeyConditions")
        .into_iter()
        .collect();
    let expression_used: Vec<&str> = expression
        .map(|_| "KeyConditionExpression")
        .into_iter()
        .collect();
    legacy::check_not_mixed(&legacy_used, &expression_used)?;
    let key_condition: KeyCondition = match (expression, key_conditions) {
        (Some(source), _) => parse_key_condition(&mut context, source, key_parts)?,
        (None, Some(json)) => legacy::key_conditions_to_key_condition(json, key_parts)?,
        (None, None) => {
            return Err(validation(
                "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.",
            ));
        }
    };
    let filter = filter(parameters, "QueryFilter", &mut context)?;
    if let Some(condition) = &filter
        && let Some(name) =
            key_attribute_in(condition, &filter_refused_keys(key_parts, &key_condition))
    {
        // DynamoDB refuses a Query filter on the key: the key condition is where it belongs.
        let parameter = if parameters.get("QueryFilter").is_some() {
            "QueryFilter"
        } else {
            "Filter Expression"
        };
        return Err(validation(format!(
            "{parameter} can only contain non-primary key attributes: Primary key attribute: {name}"
        )));
    }
    let projection = projection(parameters, &mut context)?;
    context.finish()?;
    let bounds = match named {
        Some(NamedIndex::Local(index)) => crate::index::query_bounds(index.number, &key_condition),
        Some(NamedIndex::Global(index)) => index.query_bounds(&key_condition),
        None => key_condition.storage_bounds(),
    };
    let (mut lower, mut upper) =
        bounds.ok_or_else(|| validation(crate::messages::KEY_DOES_NOT_MATCH_SCHEMA))?;
    let forward = match parameters.get("ScanIndexForward") {
        None | Some(Json::Null) => true,
        Some(Json::Bool(flag)) => *flag,
        Some(_) => return Err(serialization("ScanIndexForward must be a boolean")),
    };
    let start = match named {
        Some(NamedIndex::Local(index)) => index_start_key(parameters, table_key_schema, index)?,
        Some(NamedIndex::Global(index)) => index.start_key(parameters, table_key_schema)?,
        None => exclusive_start_key(parameters, table_key_schema)?,
    };
    if let Some((start_key, start)) = start {
        // A start key the key condition excludes (another partition key, a sort key out of
        // range) is refused, as DynamoDB refuses it, rather than read from.
        key_condition.check_start_key(&start_key, key_parts)?;
        let above_lower = match &lower {
            Bound::Included(bound) | Bound::Excluded(bound) => start >= *bound,
            Bound::Unbounded => true,
        };
        let below_upper = match &upper {
            Bound::Included(bound) | Bound::Excluded(bound) => start <= *bound,
            Bound::Unbounded => true,
        };
        if !above_lower || !below_upper {
            return Err(validation(START_KEY_OUTSIDE_QUERY));
        }
        if forward {
            lower = Bound::Excluded(start);
        } else {
            upper = Bound::Excluded(start);
        }
    }
    let index = index.map(|index| {
        Box::new(IndexRead {
            fetch_base: !count_only
                && fetches_base(
                    parameters,
                    index,
                    table_key_schema,
                    projection.as_deref(),
                    filter.as_ref(),
                ),
            index: index.clone(),
        })
    });
    Ok(RangeRequest {
        lower,
        upper,
        forward,
        filter,
        projection,
        limit: limit(parameters)?,
        consistent: bool_parameter(parameters, "ConsistentRead")?,
        count_only,
        page_bytes_max: PAGE_BYTES_MAX as u64,
        index,
        global_index: global.map(|index| Box::new(index.clone())),
    })
}

/// The key attributes a Query filter may not read: the key's, or for a multi-attribute sort
/// key (a GSI's) the partition key and the sort key attributes the key condition constrains.
/// Whether DynamoDB lets a filter read the sort key attributes a multi-attribute key condition
/// leaves out is not published; Shoal lets it, so as never to be stricter than DynamoDB.
fn filter_refused_keys<'a>(key: KeyParts<'a>, condition: &KeyCondition) -> Vec<&'a KeyAttribute> {
    if key.sort.len() <= 1 {
        return key.partition.iter().chain(key.sort).collect();
    }
    key.partition
        .iter()
        .chain(condition.constrained_sort_attributes(key))
        .collect()
}

/// The first of `keys` a condition reads (at the top level of any of its paths), if any.
fn key_attribute_in<'a>(condition: &Condition, keys: &[&'a KeyAttribute]) -> Option<&'a str> {
    let key_name = |path: &DocumentPath| {
        let name = path.top_level_name();
        keys.iter()
            .find(|key| key.name == name)
            .map(|key| key.name.as_str())
    };
    let in_operand = |operand: &Operand| match operand {
        Operand::Path(path) | Operand::Size(path) => key_name(path),
        Operand::Value(_) => None,
    };
    match condition {
        Condition::Comparison { left, right, .. } => in_operand(left).or_else(|| in_operand(right)),
        Condition::Between {
            value,
            lower,
            upper,
        } => in_operand(value)
            .or_else(|| in_operand(lower))
            .or_else(|| in_operand(upper)),
        Condition::In { value, candidates } => {
            in_operand(value).or_else(|| candidates.iter().find_map(in_operand))
        }
        Condition::And(conditions) | Condition::Or(conditions) => conditions
            .iter()
            .find_map(|condition| key_attribute_in(condition, keys)),
        Condition::Not(condition) => key_attribute_in(condition, keys),
        Condition::AttributeExists(path)
        | Condition::AttributeNotExists(path)
        | Condition::AttributeType(path, _) => key_name(path),
        Condition::BeginsWith(left, right) | Condition::Contains(left, right) => {
            in_operand(left).or_else(|| in_operand(right))
        }
    }
}

/// The storage-key bounds of parallel-scan segment `segment` of `total`: an even split of the
/// 64-bit hash space, which storage keys start with (big-endian).
pub fn segment_bounds(segment: u64, total: u64) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let span = u128::from(u64::MAX) + 1;
    let start = (span * u128::from(segment) / u128::from(total)) as u64;
    let end = span * u128::from(segment + 1) / u128::from(total);
    let lower = if segment == 0 {
        Bound::Unbounded
    } else {
        Bound::Included(start.to_be_bytes().to_vec())
    };
    let upper = if end >= span {
        Bound::Unbounded
    } else {
        Bound::Excluded((end as u64).to_be_bytes().to_vec())
    };
    (lower, upper)
}

fn prepare_scan(
    parameters: &Json,
    key_schema: &KeySchema,
    indexes: TableIndexes<'_>,
) -> Result<RangeRequest> {
    let count_only = count_only(parameters, RangeOperation::Scan)?;
    let named = named_index(parameters, indexes)?;
    let (index, global) = match named {
        Some(NamedIndex::Local(index)) => (Some(index), None),
        Some(NamedIndex::Global(index)) => {
            check_global_read(parameters, index, indexes.consistent_global_reads)?;
            (None, Some(index))
        }
        None => (None, None),
    };
    let mut context = context(parameters)?;
    let filter = filter(parameters, "ScanFilter", &mut context)?;
    let projection = projection(parameters, &mut context)?;
    context.finish()?;
    let segment = parameters.get("Segment").and_then(Json::as_u64);
    let total = parameters.get("TotalSegments").and_then(Json::as_u64);
    let (mut lower, mut upper) =
        match crate::messages::scan_segment(segment, total).map_err(validation)? {
            None => (Bound::Unbounded, Bound::Unbounded),
            Some((segment, total)) => segment_bounds(segment, total),
        };
    if let Some(index) = index {
        (lower, upper) = crate::index::scan_bounds(index.number, &lower, &upper);
        if let Some((_, start)) = index_start_key(parameters, key_schema, index)? {
            lower = Bound::Excluded(start);
        }
    } else if let Some(global) = global {
        (lower, upper) = crate::index::global::scan_bounds(lower, upper);
        if let Some((_, start)) = global.start_key(parameters, key_schema)? {
            lower = Bound::Excluded(start);
        }
    } else if let Some(start) = exclusive_start(parameters, key_schema)? {
        lower = Bound::Excluded(start);
    }
    let index = index.map(|index| {
        Box::new(IndexRead {
            fetch_base: !count_only
                && fetches_base(
                    parameters,
                    index,
                    key_schema,
                    projection.as_deref(),
                    filter.as_ref(),
                ),
            index: index.clone(),
        })
    });
    Ok(RangeRequest {
        lower,
        upper,
        forward: true,
        filter,
        projection,
        limit: limit(parameters)?,
        consistent: bool_parameter(parameters, "ConsistentRead")?,
        count_only,
        page_bytes_max: PAGE_BYTES_MAX as u64,
        index,
        global_index: global.map(|index| Box::new(index.clone())),
    })
}

fn prepare_batch_get(parameters: &Json, key_schema: &KeySchema) -> Result<Vec<GetRequest>> {
    let keys = parameters
        .get("Keys")
        .and_then(Json::as_array)
        .ok_or_else(|| serialization("Keys must be a list"))?;
    if keys.len() > BATCH_GET_KEYS_MAX {
        return Err(validation(
            "Too many items requested for the BatchGetItem call",
        ));
    }
    let mut context = context(parameters)?;
    let projection = projection(parameters, &mut context)?;
    context.finish()?;
    let consistent = bool_parameter(parameters, "ConsistentRead")?;
    // Equal keys have equal storage keys (1 and 1.0 included) and the same partition, so every
    // duplicate of a request reaches the same partition's check.
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    keys.iter()
        .map(|json| {
            let key = item_from_json(json)?;
            key_schema.validate_key(&key)?;
            let storage_key = key_schema
                .storage_key(&key)
                .ok_or_else(|| validation(crate::messages::KEY_DOES_NOT_MATCH_SCHEMA))?;
            if !seen.insert(storage_key.clone()) {
                return Err(validation("Provided list of item keys contains duplicates"));
            }
            Ok(GetRequest {
                key,
                storage_key,
                consistent,
                projection: projection.clone(),
            })
        })
        .collect()
}

fn prepare_batch_write(parameters: &Json, key_schema: &KeySchema) -> Result<Vec<WriteRequest>> {
    let requests = parameters
        .as_array()
        .ok_or_else(|| serialization("a BatchWriteItem part must be a list of write requests"))?;
    if requests.len() > BATCH_WRITE_REQUESTS_MAX {
        return Err(validation(format!(
            "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to {BATCH_WRITE_REQUESTS_MAX}, Member must have length greater than or equal to 1]"
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut writes = Vec::with_capacity(requests.len());
    for request in requests {
        let request = object(request, "WriteRequest")?;
        let write = match (request.get("PutRequest"), request.get("DeleteRequest")) {
            (Some(put), None) => prepare_write(put, ItemOperation::PutItem, key_schema)?,
            (None, Some(delete)) => prepare_write(delete, ItemOperation::DeleteItem, key_schema)?,
            _ => {
                return Err(validation(
                    "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
                ));
            }
        };
        if !seen.insert(write.storage_key.clone()) {
            return Err(validation("Provided list of item keys contains duplicates"));
        }
        writes.push(write);
    }
    Ok(writes)
}

/// Parses the parameters of `operation` for a table with `key_schema` and no secondary index.
pub fn prepare(
    operation: ItemOperation,
    parameters: &Json,
    key_schema: &KeySchema,
) -> Result<PreparedRequest> {
    prepare_indexed(operation, parameters, key_schema, &[])
}

/// Parses the parameters of `operation` for a table with `key_schema` and these local secondary
/// indexes (and no global one).
pub fn prepare_indexed(
    operation: ItemOperation,
    parameters: &Json,
    key_schema: &KeySchema,
    local_indexes: &[LocalIndex],
) -> Result<PreparedRequest> {
    prepare_for_table(
        operation,
        parameters,
        key_schema,
        TableIndexes {
            local: local_indexes,
            global: &[],
            consistent_global_reads: false,
        },
    )
}

/// Parses the parameters of `operation` for a table with `key_schema` and these secondary
/// indexes: writes carry them (their leader maintains local entries and fills the outbox of
/// global ones), and Query and Scan may name one in IndexName.
pub fn prepare_for_table(
    operation: ItemOperation,
    parameters: &Json,
    key_schema: &KeySchema,
    indexes: TableIndexes<'_>,
) -> Result<PreparedRequest> {
    let mut prepared = prepare_unindexed(operation, parameters, key_schema, indexes)?;
    let writes: &mut [WriteRequest] = match &mut prepared {
        PreparedRequest::Write(write) => std::slice::from_mut(write),
        PreparedRequest::BatchWrite(writes) => writes,
        _ => &mut [],
    };
    for write in writes {
        // A Put's index keys are input, checked before anything is read as DynamoDB checks
        // them (an update's are checked by the leader once it has the new image).
        if let WriteKind::Put(item) = &write.kind {
            crate::index::index_changes(
                indexes.local,
                key_schema,
                &write.storage_key,
                None,
                Some(item),
            )?;
            for index in indexes.global {
                index.check_item(item)?;
            }
        }
        write.local_indexes = indexes.local.to_vec();
        write.global_indexes = indexes.global.to_vec();
    }
    Ok(prepared)
}

fn prepare_unindexed(
    operation: ItemOperation,
    parameters: &Json,
    key_schema: &KeySchema,
    indexes: TableIndexes<'_>,
) -> Result<PreparedRequest> {
    if operation != ItemOperation::BatchWrite {
        object(parameters, "the request")?;
        legacy::check_request_not_mixed(parameters)?;
    }
    Ok(match operation {
        ItemOperation::PutItem | ItemOperation::UpdateItem | ItemOperation::DeleteItem => {
            PreparedRequest::Write(prepare_write(parameters, operation, key_schema)?)
        }
        ItemOperation::GetItem => PreparedRequest::Get(prepare_get(parameters, key_schema)?),
        ItemOperation::Query => {
            PreparedRequest::Range(prepare_query(parameters, key_schema, indexes)?)
        }
        ItemOperation::Scan => {
            PreparedRequest::Range(prepare_scan(parameters, key_schema, indexes)?)
        }
        ItemOperation::BatchGet => {
            PreparedRequest::BatchGet(prepare_batch_get(parameters, key_schema)?)
        }
        ItemOperation::BatchWrite => {
            PreparedRequest::BatchWrite(prepare_batch_write(parameters, key_schema)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyType;

    fn schema() -> KeySchema {
        KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number)
    }

    fn query_error(parameters: serde_json::Value) -> String {
        match prepare(ItemOperation::Query, &parameters, &schema()) {
            Err(error) => error.message().to_string(),
            Ok(_) => panic!("query accepted: {parameters}"),
        }
    }

    #[test]
    fn query_filters_may_not_read_key_attributes() {
        let message = query_error(serde_json::json!({
            "KeyConditionExpression": "pk = :p",
            "FilterExpression": "a = :v OR size(sk) > :v",
            "ExpressionAttributeValues": {":p": {"S": "x"}, ":v": {"N": "1"}},
        }));
        assert_eq!(
            message,
            "Filter Expression can only contain non-primary key attributes: Primary key attribute: sk"
        );
        let message = query_error(serde_json::json!({
            "KeyConditions": {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "x"}]}},
            "QueryFilter": {"pk": {"ComparisonOperator": "NOT_NULL"}},
        }));
        assert_eq!(
            message,
            "QueryFilter can only contain non-primary key attributes: Primary key attribute: pk"
        );
        // A filter on other attributes is fine, and a Scan may filter on the key.
        let fine = serde_json::json!({
            "KeyConditionExpression": "pk = :p",
            "FilterExpression": "a.sk = :v",
            "ExpressionAttributeValues": {":p": {"S": "x"}, ":v": {"N": "1"}},
        });
        assert!(prepare(ItemOperation::Query, &fine, &schema()).is_ok());
        let scan = serde_json::json!({
            "FilterExpression": "sk > :v",
            "ExpressionAttributeValues": {":v": {"N": "1"}},
        });
        assert!(prepare(ItemOperation::Scan, &scan, &schema()).is_ok());
    }

    #[test]
    fn return_values_an_operation_does_not_take() {
        let put = serde_json::json!({"Item": {"pk": {"S": "a"}, "sk": {"N": "1"}}, "ReturnValues": "ALL_NEW"});
        match prepare(ItemOperation::PutItem, &put, &schema()) {
            Err(error) => assert_eq!(error.message(), RETURN_VALUES_NOT_ALLOWED),
            Ok(_) => panic!("ALL_NEW accepted on PutItem"),
        }
        let unknown = serde_json::json!({"Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}, "ReturnValues": "SOME"});
        match prepare(ItemOperation::DeleteItem, &unknown, &schema()) {
            Err(error) => assert!(
                error
                    .message()
                    .contains("at 'returnValues' failed to satisfy constraint")
            ),
            Ok(_) => panic!("SOME accepted"),
        }
    }

    #[test]
    fn query_start_keys_outside_the_key_condition_are_refused() {
        let query = |start: serde_json::Value| {
            serde_json::json!({
                "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
                "ExpressionAttributeValues": {":p": {"S": "x"}, ":a": {"N": "1"}, ":b": {"N": "5"}},
                "ExclusiveStartKey": start,
            })
        };
        for (outside, message) in [
            (
                serde_json::json!({"pk": {"S": "y"}, "sk": {"N": "2"}}),
                START_KEY_CANNOT_RESTART,
            ),
            (
                serde_json::json!({"pk": {"S": "x"}, "sk": {"N": "6"}}),
                START_KEY_OUTSIDE_SORT_CONDITION,
            ),
            (
                serde_json::json!({"pk": {"S": "y"}, "sk": {"N": "0"}}),
                START_KEY_OUTSIDE_SORT_CONDITION,
            ),
        ] {
            match prepare(ItemOperation::Query, &query(outside.clone()), &schema()) {
                Err(error) => assert_eq!(error.message(), message),
                Ok(_) => panic!("start key {outside} accepted"),
            }
        }
        let without_sort_condition = serde_json::json!({
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "x"}},
            "ExclusiveStartKey": {"pk": {"S": "y"}, "sk": {"N": "2"}},
        });
        assert_eq!(query_error(without_sort_condition), START_KEY_OUTSIDE_QUERY);
        for inside in [1, 3, 5] {
            let start = serde_json::json!({"pk": {"S": "x"}, "sk": {"N": inside.to_string()}});
            assert!(prepare(ItemOperation::Query, &query(start), &schema()).is_ok());
        }
    }

    fn scan_error(parameters: serde_json::Value) -> String {
        match prepare(ItemOperation::Scan, &parameters, &schema()) {
            Err(error) => error.message().to_string(),
            Ok(_) => panic!("scan accepted: {parameters}"),
        }
    }

    #[test]
    fn select_rules_with_query_and_scan_wording() {
        let query = |extra: serde_json::Value| {
            let mut parameters = serde_json::json!({
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": {"S": "x"}},
            });
            for (member, value) in extra.as_object().unwrap() {
                parameters[member] = value.clone();
            }
            parameters
        };
        for (select, choice) in [
            ("ALL_ATTRIBUTES", "ALL_ATTRIBUTES"),
            ("ALL_PROJECTED_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES"),
            ("COUNT", "only the Count"),
        ] {
            assert_eq!(
                query_error(query(
                    serde_json::json!({"Select": select, "ProjectionExpression": "a"})
                )),
                format!(
                    "1 validation error detected: Cannot specify the ProjectionExpression when choosing to get {choice}"
                )
            );
            assert_eq!(
                scan_error(serde_json::json!({"Select": select, "AttributesToGet": ["a"]})),
                format!("Cannot specify the AttributesToGet when choosing to get {choice}")
            );
        }
        assert_eq!(
            query_error(query(serde_json::json!({"Select": "SPECIFIC_ATTRIBUTES"}))),
            "1 validation error detected: Must specify the AttributesToGet or ProjectionExpression when choosing to get SPECIFIC_ATTRIBUTES"
        );
        assert_eq!(
            scan_error(serde_json::json!({"Select": "ALL_PROJECTED_ATTRIBUTES"})),
            "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName"
        );
        assert_eq!(
            scan_error(serde_json::json!({"IndexName": "by-a"})),
            "The table does not have the specified index: by-a"
        );
        // What remains allowed: SPECIFIC_ATTRIBUTES with a projection, COUNT or ALL_ATTRIBUTES
        // without one, and no Select at all.
        for allowed in [
            serde_json::json!({"Select": "SPECIFIC_ATTRIBUTES", "ProjectionExpression": "a"}),
            serde_json::json!({"Select": "SPECIFIC_ATTRIBUTES", "AttributesToGet": ["a"]}),
            serde_json::json!({"Select": "ALL_ATTRIBUTES"}),
            serde_json::json!({"ProjectionExpression": "a"}),
        ] {
            // (A query's key condition here is an expression, which AttributesToGet may not
            // join: that combination is only checked on Scan.)
            if allowed.get("AttributesToGet").is_none() {
                assert!(prepare(ItemOperation::Query, &query(allowed.clone()), &schema()).is_ok());
            }
            assert!(prepare(ItemOperation::Scan, &allowed, &schema()).is_ok());
        }
        match prepare(
            ItemOperation::Scan,
            &serde_json::json!({"Select": "COUNT"}),
            &schema(),
        ) {
            Ok(PreparedRequest::Range(request)) => assert!(request.count_only),
            _ => panic!("Select COUNT was not a count"),
        }
    }

    #[test]
    fn batch_get_refuses_duplicate_keys() {
        let keys = serde_json::json!({"Keys": [
            {"pk": {"S": "a"}, "sk": {"N": "1"}},
            {"pk": {"S": "a"}, "sk": {"N": "1.0"}},
        ]});
        match prepare(ItemOperation::BatchGet, &keys, &schema()) {
            Err(error) => assert_eq!(
                error.message(),
                "Provided list of item keys contains duplicates"
            ),
            Ok(_) => panic!("duplicate keys accepted"),
        }
    }
}
