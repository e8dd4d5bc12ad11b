//! DynamoDB Streams at the router (router/server README.md, "Streams"): a table's stream
//! status through its life (ENABLING, ENABLED, DISABLING, DISABLED), carried to its base
//! partitions by `StreamConfigure`, and the four operations of the DynamoDB Streams API
//! (`DynamoDBStreams_20120810`), served from the partitions' records (shoal_model::stream).
//!
//! Names consumers see:
//! - stream ARN: the table's ARN, `/stream/`, the stream's label (its creation time,
//!   `2015-05-11T21:21:33.291`);
//! - shard id: `shardId-` 20 decimal digits of the partition id, `-`, 8 hex digits of the
//!   shard's generation in that partition (37 characters; SDKs expect at least 28);
//! - sequence number: the record's log position (shoal_model::stream invariant 3);
//! - shard iterator: the stream ARN, `|1|`, then 66 hex digits: partition (u64), generation
//!   (u32), whether a position follows (u8), slot (u64), ordinal (u32), issue time in unix
//!   milliseconds (u64), all big-endian. An iterator is refused 15 minutes after its issue,
//!   as DynamoDB's expire.
//!
//! Messages are DynamoDB's where a source shows them (probes of the service catalogued in
//! ack-api-quirks, Alternator's test_streams.py, which runs on DynamoDB, and the API
//! reference); router/conformance/test_streams.py cites them per case.

use std::collections::BTreeSet;

use shoal_model::stream::{
    EventName, RecordPosition, StreamRecord, ViewType, label, parse_label, parse_sequence_number,
    sequence_number,
};
use shoal_wire::messages::{PositionWire, StreamShardWire};

use super::*;
use crate::error::RESOURCE_NOT_FOUND;
use crate::metadata::{StreamStatus, TableStream};

/// How long a disabled stream stays listed and readable: DynamoDB's 24-hour retention.
pub const DISABLED_STREAM_LISTED_MS: u64 = shoal_model::stream::RETENTION_MS_DEFAULT;
/// How long a shard iterator may be used after it was issued (DynamoDB: 15 minutes).
pub const SHARD_ITERATOR_AGE_MAX_MS: u64 = 15 * 60 * 1000;
/// ListStreams' and DescribeStream's Limit range (API reference).
pub const LIST_LIMIT_MAX: u64 = 100;
/// GetRecords' Limit range (API reference).
pub const GET_RECORDS_LIMIT_MAX: u64 = shoal_model::stream::READ_RECORDS_MAX as u64;
const _: () = assert!(GET_RECORDS_LIMIT_MAX <= u32::MAX as u64);
/// The longest shard iterator the API model allows.
const SHARD_ITERATOR_BYTES_MAX: usize = 2048;
const ITERATOR_FORMAT: &str = "1";
const ITERATOR_PAYLOAD_BYTES: usize = 8 + 4 + 1 + 8 + 4 + 8;
const SHARD_ID_PREFIX: &str = "shardId-";

const TRIMMED: &str = "TrimmedDataAccessException";
const TRIMMED_MESSAGE: &str = "The data you are trying to access has been trimmed";
const EXPIRED_ITERATOR: &str = "ExpiredIteratorException";
const EXPIRED_ITERATOR_MESSAGE: &str = "The provided iterator exceeds the maximum age allowed.";
const SHARD_NOT_FOUND: &str = "Requested resource not found: Shard does not exist";
const ITERATOR_TYPES: [&str; 5] = [
    "TRIM_HORIZON",
    "LATEST",
    "AT_SEQUENCE_NUMBER",
    "AFTER_SEQUENCE_NUMBER",
    "AT_TIMESTAMP",
];
/// DescribeStream's ShardFilter types (API reference: only CHILD_SHARDS).
const SHARD_FILTER_TYPES: [&str; 1] = ["CHILD_SHARDS"];
/// Probes an AT_TIMESTAMP iterator's search makes at most: a binary search over a shard's
/// slots (u64) needs at most 65.
const TIMESTAMP_SEARCH_PROBES_MAX: u32 = 70;

/// A shard: a partition's generation of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShardName {
    pub partition: u64,
    pub generation: u32,
}

pub fn shard_id(shard: ShardName) -> String {
    format!(
        "{SHARD_ID_PREFIX}{:020}-{:08x}",
        shard.partition, shard.generation
    )
}

pub fn parse_shard_id(text: &str) -> Option<ShardName> {
    let rest = text.strip_prefix(SHARD_ID_PREFIX)?;
    let (partition, generation) = rest.split_once('-')?;
    let digits = partition.len() == 20 && partition.bytes().all(|byte| byte.is_ascii_digit());
    let hex = generation.len() == 8 && generation.bytes().all(|byte| byte.is_ascii_hexdigit());
    if !digits || !hex {
        return None;
    }
    Some(ShardName {
        partition: partition.parse().ok()?,
        generation: u32::from_str_radix(generation, 16).ok()?,
    })
}

/// Where a shard iterator points: its shard, and the position after which it reads (`None`:
/// the oldest record the shard still has, TRIM_HORIZON's meaning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IteratorState {
    pub shard: ShardName,
    pub after: Option<RecordPosition>,
    pub issued_ms: u64,
}

pub fn encode_iterator(stream_arn: &str, state: IteratorState) -> String {
    let mut payload = Vec::with_capacity(ITERATOR_PAYLOAD_BYTES);
    payload.extend_from_slice(&state.shard.partition.to_be_bytes());
    payload.extend_from_slice(&state.shard.generation.to_be_bytes());
    let position = state.after.unwrap_or_default();
    payload.push(u8::from(state.after.is_some()));
    payload.extend_from_slice(&position.slot.to_be_bytes());
    payload.extend_from_slice(&position.ordinal.to_be_bytes());
    payload.extend_from_slice(&state.issued_ms.to_be_bytes());
    let hex: String = payload.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{stream_arn}|{ITERATOR_FORMAT}|{hex}")
}

/// The stream ARN and state of an iterator this module wrote; `None` for anything else.
pub fn decode_iterator(text: &str) -> Option<(&str, IteratorState)> {
    let (rest, hex) = text.rsplit_once('|')?;
    let (arn, format) = rest.rsplit_once('|')?;
    if format != ITERATOR_FORMAT || hex.len() != ITERATOR_PAYLOAD_BYTES * 2 {
        return None;
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let after = match bytes[12] {
        0 => None,
        1 => Some(RecordPosition {
            slot: u64_at(13),
            ordinal: u32_at(21),
        }),
        _ => return None,
    };
    Some((
        arn,
        IteratorState {
            shard: ShardName {
                partition: u64_at(0),
                generation: u32_at(8),
            },
            after,
            issued_ms: u64_at(25),
        },
    ))
}

/// The position just before `position` (AT_SEQUENCE_NUMBER reads after it).
fn before(position: RecordPosition) -> Option<RecordPosition> {
    match position {
        RecordPosition {
            slot: 0,
            ordinal: 0,
        } => None,
        RecordPosition { slot, ordinal: 0 } => Some(RecordPosition {
            slot: slot - 1,
            ordinal: u32::MAX,
        }),
        RecordPosition { slot, ordinal } => Some(RecordPosition {
            slot,
            ordinal: ordinal - 1,
        }),
    }
}

fn position(wire: PositionWire) -> RecordPosition {
    RecordPosition {
        slot: wire.slot,
        ordinal: wire.ordinal,
    }
}

fn required_string<'body>(
    body: &'body Json,
    member: &str,
    path: &str,
) -> Result<&'body str, DynamoError> {
    match body.get(member) {
        None | Some(Json::Null) => Err(DynamoError::missing_member(path)),
        Some(Json::String(text)) => Ok(text),
        Some(_) => Err(DynamoError::serialization(&format!(
            "Unexpected value type in payload: {member} must be a string"
        ))),
    }
}

fn optional_string<'body>(
    body: &'body Json,
    member: &str,
) -> Result<Option<&'body str>, DynamoError> {
    match body.get(member) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => Ok(Some(text)),
        Some(_) => Err(DynamoError::serialization(&format!(
            "Unexpected value type in payload: {member} must be a string"
        ))),
    }
}

/// A `Limit` member within 1..=`max`, `max` when absent.
fn limit(body: &Json, max: u64) -> Result<u64, DynamoError> {
    match body.get("Limit") {
        None | Some(Json::Null) => Ok(max),
        Some(value) => match value.as_i64() {
            Some(limit) if limit >= 1 && limit as u64 <= max => Ok(limit as u64),
            Some(limit) if limit < 1 => Err(DynamoError::validation(format!(
                "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"
            ))),
            Some(limit) => Err(DynamoError::validation(format!(
                "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value less than or equal to {max}"
            ))),
            None => Err(DynamoError::serialization(
                "Unexpected value type in payload: Limit must be an integer",
            )),
        },
    }
}

fn stream_not_found(arn: &str) -> DynamoError {
    DynamoError::new(
        RESOURCE_NOT_FOUND,
        format!("Requested resource not found: Stream: {arn} not found"),
    )
}

/// Whether a stream is still listed and readable at `now_ms`.
fn listed(stream: &TableStream, now_ms: u64) -> bool {
    stream
        .disabled_at_ms
        .is_none_or(|at| at.saturating_add(DISABLED_STREAM_LISTED_MS) > now_ms)
}

/// The table's streams that are still listed, the latest last (the others leave the item at
/// its next change).
pub(super) fn pruned_streams(streams: &[TableStream], now_ms: u64) -> Vec<TableStream> {
    let latest = streams.len().saturating_sub(1);
    streams
        .iter()
        .enumerate()
        .filter(|(at, stream)| *at == latest || listed(stream, now_ms))
        .map(|(_, stream)| stream.clone())
        .collect()
}

impl Router {
    pub(super) fn stream_arn(&self, table: &str, stream: u64) -> String {
        format!("{}/stream/{}", self.table_arn(table), label(stream))
    }

    /// The table and stream id an ARN names. Not an ARN of a stream at all: ValidationException
    /// (DynamoDB's answer, Alternator's test_streams.py); a stream ARN of another region or
    /// account: not found here.
    fn parse_stream_arn(&self, arn: &str) -> Result<(String, u64), DynamoError> {
        let invalid = || DynamoError::validation(format!("Invalid StreamArn: {arn}"));
        let rest = arn.strip_prefix("arn:aws:dynamodb:").ok_or_else(invalid)?;
        let mut fields = rest.splitn(3, ':');
        let (region, account, resource) = (
            fields.next().ok_or_else(invalid)?,
            fields.next().ok_or_else(invalid)?,
            fields.next().ok_or_else(invalid)?,
        );
        let resource = resource.strip_prefix("table/").ok_or_else(invalid)?;
        let (table, stream_label) = resource.split_once("/stream/").ok_or_else(invalid)?;
        if table.is_empty() {
            return Err(invalid());
        }
        let stream = parse_label(stream_label).ok_or_else(invalid)?;
        if region != self.config.region || account != self.config.account {
            return Err(stream_not_found(arn));
        }
        Ok((table.to_string(), stream))
    }

    /// The table record and stream an ARN names, if the table has it still listed.
    async fn stream_of(
        &self,
        arn: &str,
        deadline: Instant,
    ) -> Result<(TableRecord, TableStream), DynamoError> {
        let (table, id) = self.parse_stream_arn(arn)?;
        let record = self
            .read_table(&table, deadline)
            .await?
            .filter(|record| record.status != TableStatus::Deleting)
            .ok_or_else(|| stream_not_found(arn))?;
        let now_ms = unix_millis_now();
        let stream = record
            .streams
            .iter()
            .find(|stream| stream.id == id && listed(stream, now_ms))
            .cloned()
            .ok_or_else(|| stream_not_found(arn))?;
        Ok((record, stream))
    }

    /// DescribeTable's stream members: StreamSpecification while the latest stream is on,
    /// and the latest stream's ARN and label whenever the table has had one (DynamoDB keeps
    /// them after a disable, ack-api-quirks DDB-TABLE-050).
    pub(super) fn describe_stream_into(&self, record: &TableRecord, description: &mut Json) {
        let Some(latest) = record.streams.last() else {
            return;
        };
        if latest.status.is_on() {
            description["StreamSpecification"] = json!({
                "StreamEnabled": true,
                "StreamViewType": latest.view.as_str(),
            });
        }
        description["LatestStreamArn"] = json!(self.stream_arn(&record.name, latest.id));
        description["LatestStreamLabel"] = json!(label(latest.id));
    }

    /// Brings the table's base partitions to its latest stream's status (ENABLING: recording
    /// for it; DISABLING: recording nothing), then records the status reached. Idempotent and
    /// resumable: the partitions already settled are skipped, and a partition ignores a
    /// configuration it already follows (or one of a stream that ended there). Run by
    /// UpdateTable and by the repair pass for a table whose router stopped midway.
    pub(super) async fn advance_stream(&self, record: &TableRecord) -> Result<(), DynamoError> {
        let Some(latest) = record.streams.last().cloned() else {
            return Ok(());
        };
        let view = match latest.status {
            StreamStatus::Enabling => Some(latest.view),
            StreamStatus::Disabling => None,
            StreamStatus::Enabled | StreamStatus::Disabled => return Ok(()),
        };
        let deadline = Instant::now() + CONTROL_DEADLINE;
        let newly = self
            .configure_partitions(record, latest.id, view, &latest.settled, deadline)
            .await;
        let partitions: BTreeSet<u64> = record.partitions.iter().map(|entry| entry.id).collect();
        self.change_incarnation(record, |changed| {
            let Some(stream) = changed
                .streams
                .last_mut()
                .filter(|stream| stream.id == latest.id && stream.status == latest.status)
            else {
                return;
            };
            stream.settled.extend(newly.iter().copied());
            if stream.settled.is_superset(&partitions) {
                stream.settled.clear();
                stream.status = match latest.status {
                    StreamStatus::Enabling => StreamStatus::Enabled,
                    _ => {
                        stream.disabled_at_ms = Some(unix_millis_now());
                        StreamStatus::Disabled
                    }
                };
            }
            changed.streams = pruned_streams(&changed.streams, unix_millis_now());
        })
        .await
    }

    /// Sends `StreamConfigure` (start `stream` with `view`, or end it) to each base partition
    /// of `record` not in `settled`; returns those that answered. A partition that does not
    /// answer now is left for a later pass.
    pub(super) async fn configure_partitions(
        &self,
        record: &TableRecord,
        stream: u64,
        view: Option<ViewType>,
        settled: &BTreeSet<u64>,
        deadline: Instant,
    ) -> BTreeSet<u64> {
        let call = ItemCall::new(&PreparedRequest::StreamConfigure { stream, view });
        let pending: Vec<&PartitionEntry> = record
            .partitions
            .iter()
            .filter(|entry| !settled.contains(&entry.id))
            .collect();
        let calls = pending
            .iter()
            .map(|entry| self.forwarder.forward(entry, &call, deadline))
            .collect();
        let answers = join_bounded(calls, BATCH_PARTITIONS_IN_FLIGHT_MAX).await;
        let mut configured = BTreeSet::new();
        for (entry, answer) in pending.into_iter().zip(answers) {
            match answer {
                Ok(reply) => {
                    self.note_leader(&record.name, None, entry.id, Some(reply.leader));
                    configured.insert(entry.id);
                }
                Err(error) => {
                    let error = error.into_dynamo();
                    tracing::warn!(
                        table = %record.name,
                        partition = entry.id,
                        %error.message,
                        "stream configuration not delivered; the repair pass retries"
                    );
                }
            }
        }
        configured
    }

    /// A stream's shards in one partition, as the partition's leader lists them.
    async fn partition_shards(
        &self,
        table: &str,
        entry: &PartitionEntry,
        stream: u64,
        deadline: Instant,
    ) -> Result<(Vec<StreamShardWire>, Option<PositionWire>), DynamoError> {
        let call = ItemCall::new(&PreparedRequest::StreamShards { stream });
        let reply = self
            .forwarder
            .forward(entry, &call, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        self.note_leader(table, None, entry.id, Some(reply.leader));
        match reply.result {
            ItemResult::StreamShards {
                shards,
                trimmed_through,
            } => Ok((shards, trimmed_through)),
            _ => Err(DynamoError::internal(
                "Internal server error (a stream shards read answered with another result)",
            )),
        }
    }

    /// ListStreams: the listed streams of every table (or of `TableName`), by table name and
    /// then age.
    pub async fn list_streams(&self, body: Json) -> Result<Json, DynamoError> {
        let limit = limit(&body, LIST_LIMIT_MAX)? as usize;
        let table = optional_string(&body, "TableName")?;
        if let Some(table) = table {
            validate::check_table_name(table)?;
        }
        let start = match optional_string(&body, "ExclusiveStartStreamArn")? {
            Some(arn) => Some(self.parse_stream_arn(arn).map_err(|error| {
                if error.type_name == RESOURCE_NOT_FOUND {
                    DynamoError::validation(format!("Invalid StreamArn: {arn}"))
                } else {
                    error
                }
            })?),
            None => None,
        };
        let deadline = self.deadline();
        let records = match table {
            Some(name) => self.read_table(name, deadline).await?.into_iter().collect(),
            None => self
                .metadata
                .tables_with_streams(&self.forwarder, deadline)
                .await
                .map_err(ForwardError::into_dynamo)?,
        };
        let now_ms = unix_millis_now();
        let mut streams: Vec<(String, u64)> = records
            .iter()
            .filter(|record| record.status != TableStatus::Deleting)
            .flat_map(|record| {
                record
                    .streams
                    .iter()
                    .filter(|stream| listed(stream, now_ms))
                    .map(|stream| (record.name.clone(), stream.id))
            })
            .filter(|named| start.as_ref().is_none_or(|start| named > start))
            .collect();
        streams.sort();
        let more = streams.len() > limit;
        streams.truncate(limit);
        let listed: Vec<Json> = streams
            .iter()
            .map(|(table, id)| {
                json!({
                    "StreamArn": self.stream_arn(table, *id),
                    "TableName": table,
                    "StreamLabel": label(*id),
                })
            })
            .collect();
        let mut response = json!({ "Streams": listed });
        if more && let Some((table, id)) = streams.last() {
            response["LastEvaluatedStreamArn"] = json!(self.stream_arn(table, *id));
        }
        Ok(response)
    }

    /// DescribeStream: the stream's status and its shards in every base partition, parents
    /// before children.
    pub async fn describe_stream(&self, body: Json) -> Result<Json, DynamoError> {
        let arn = required_string(&body, "StreamArn", "streamArn")?;
        let limit = limit(&body, LIST_LIMIT_MAX)? as usize;
        let start = optional_string(&body, "ExclusiveStartShardId")?;
        let children_of = shard_filter(&body)?;
        let deadline = self.deadline();
        let (record, stream) = self.stream_of(arn, deadline).await?;
        let mut shards = Vec::new();
        for entry in &record.partitions {
            let (listed, _) = self
                .partition_shards(&record.name, entry, stream.id, deadline)
                .await?;
            for shard in listed.into_iter().filter(|shard| !shard.ended) {
                let name = ShardName {
                    partition: entry.id,
                    generation: shard.generation,
                };
                let start_position = shard.first.map_or(
                    RecordPosition {
                        slot: shard.opened_slot,
                        ordinal: 0,
                    },
                    position,
                );
                let mut range =
                    json!({ "StartingSequenceNumber": sequence_number(start_position) });
                if shard.closed {
                    let end = shard.last.map_or(start_position, position);
                    range["EndingSequenceNumber"] = json!(sequence_number(end));
                }
                let mut described = json!({
                    "ShardId": shard_id(name),
                    "SequenceNumberRange": range,
                });
                if shard.generation > 0 {
                    described["ParentShardId"] = json!(shard_id(ShardName {
                        generation: shard.generation - 1,
                        ..name
                    }));
                }
                shards.push((name, described));
            }
        }
        shards.sort_by_key(|(name, _)| *name);
        if let Some(parent) = children_of {
            // CHILD_SHARDS: the shards whose parent is the one named (API reference).
            shards.retain(|(_, described)| described["ParentShardId"] == json!(parent));
        }
        // After a shard id the stream does not have: nothing (Alternator's test_streams.py,
        // test_describe_stream_with_nonexistent_last_shard, on DynamoDB).
        let after: Vec<(ShardName, Json)> = match start {
            None => shards,
            Some(start) => match parse_shard_id(start) {
                Some(start) if shards.iter().any(|(name, _)| *name == start) => shards
                    .into_iter()
                    .filter(|(name, _)| *name > start)
                    .collect(),
                _ => Vec::new(),
            },
        };
        let more = after.len() > limit;
        let page: Vec<(ShardName, Json)> = after.into_iter().take(limit).collect();
        let mut description = json!({
            "StreamArn": arn,
            "StreamLabel": label(stream.id),
            "StreamStatus": stream.status.name(),
            "StreamViewType": stream.view.as_str(),
            "CreationRequestDateTime": stream.id as f64 / 1000.0,
            "TableName": record.name,
            "KeySchema": key_schema_json(&record.key_schema),
            "Shards": page.iter().map(|(_, shard)| shard.clone()).collect::<Vec<_>>(),
        });
        if more && let Some((last, _)) = page.last() {
            description["LastEvaluatedShardId"] = json!(shard_id(*last));
        }
        Ok(json!({ "StreamDescription": description }))
    }

    /// The partition entry of a shard of `record`, or DynamoDB's answer for a shard it does
    /// not have.
    fn shard_partition(
        record: &TableRecord,
        shard: Option<ShardName>,
    ) -> Result<(ShardName, PartitionEntry), DynamoError> {
        let shard = shard.ok_or_else(|| DynamoError::new(RESOURCE_NOT_FOUND, SHARD_NOT_FOUND))?;
        let entry = record
            .partitions
            .iter()
            .find(|entry| entry.id == shard.partition)
            .cloned()
            .ok_or_else(|| DynamoError::new(RESOURCE_NOT_FOUND, SHARD_NOT_FOUND))?;
        Ok((shard, entry))
    }

    /// A shard's records (`read`: a `StreamRead`), at its partition's leader.
    async fn read_shard(
        &self,
        table: &str,
        entry: &PartitionEntry,
        read: PreparedRequest,
        deadline: Instant,
    ) -> Result<ItemResult, DynamoError> {
        let reply = self
            .forwarder
            .forward(entry, &ItemCall::new(&read), deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        self.note_leader(table, None, entry.id, Some(reply.leader));
        Ok(reply.result)
    }

    /// GetShardIterator.
    pub async fn get_shard_iterator(&self, body: Json) -> Result<Json, DynamoError> {
        let arn = required_string(&body, "StreamArn", "streamArn")?;
        let shard_text = required_string(&body, "ShardId", "shardId")?;
        let kind = required_string(&body, "ShardIteratorType", "shardIteratorType")?;
        if !ITERATOR_TYPES.contains(&kind) {
            return Err(DynamoError::validation(format!(
                "1 validation error detected: Value '{kind}' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                ITERATOR_TYPES.join(", ")
            )));
        }
        let sequence = optional_string(&body, "SequenceNumber")?;
        let timestamp_ms = match (kind, body.get("Timestamp")) {
            ("AT_TIMESTAMP", None | Some(Json::Null)) => {
                return Err(DynamoError::validation(
                    "Must specify Timestamp when ShardIteratorType is AT_TIMESTAMP",
                ));
            }
            ("AT_TIMESTAMP", Some(value)) => {
                let seconds = value.as_f64().filter(|seconds| *seconds >= 0.0).ok_or_else(|| {
                    DynamoError::serialization(
                        "Unexpected value type in payload: Timestamp must be a number of epoch seconds",
                    )
                })?;
                let ms = (seconds * 1000.0) as u64;
                // API reference: "If the timestamp is in the future, the request returns a
                // ValidationException."
                if ms > unix_millis_now() {
                    return Err(DynamoError::validation(format!(
                        "Timestamp {seconds} is in the future"
                    )));
                }
                Some(ms)
            }
            (_, None | Some(Json::Null)) => None,
            (_, Some(_)) => {
                return Err(DynamoError::validation(format!(
                    "Timestamp must not be specified when ShardIteratorType is {kind}"
                )));
            }
        };
        if kind == "AT_TIMESTAMP" && sequence.is_some() {
            return Err(DynamoError::validation(
                "SequenceNumber must not be specified when ShardIteratorType is AT_TIMESTAMP",
            ));
        }
        let positioned = matches!(kind, "AT_SEQUENCE_NUMBER" | "AFTER_SEQUENCE_NUMBER");
        let at = match (positioned, sequence) {
            (true, None) => {
                return Err(DynamoError::validation(format!(
                    "Must specify SequenceNumber when ShardIteratorType is {kind}"
                )));
            }
            (false, Some(_)) if kind != "AT_TIMESTAMP" => {
                return Err(DynamoError::validation(format!(
                    "SequenceNumber must not be specified when ShardIteratorType is {kind}"
                )));
            }
            (true, Some(text)) => Some(parse_sequence_number(text).ok_or_else(|| {
                DynamoError::validation(format!("Invalid SequenceNumber: {text}"))
            })?),
            (false, _) => None,
        };
        let deadline = self.deadline();
        let (record, stream) = self.stream_of(arn, deadline).await?;
        let (shard, entry) = Self::shard_partition(&record, parse_shard_id(shard_text))?;
        let (shards, trimmed) = self
            .partition_shards(&record.name, &entry, stream.id, deadline)
            .await?;
        if !shards
            .iter()
            .any(|listed| listed.generation == shard.generation && !listed.ended)
        {
            return Err(DynamoError::new(RESOURCE_NOT_FOUND, SHARD_NOT_FOUND));
        }
        let trimmed = trimmed.map(position);
        let after = match (kind, at) {
            ("TRIM_HORIZON", _) => None,
            ("AT_TIMESTAMP", _) => {
                let listed = shards
                    .iter()
                    .find(|listed| listed.generation == shard.generation)
                    .expect("checked above");
                self.position_at_time(
                    &record.name,
                    &entry,
                    stream.id,
                    listed,
                    timestamp_ms.expect("checked above"),
                    deadline,
                )
                .await?
            }
            ("LATEST", _) => {
                let read = PreparedRequest::StreamRead {
                    stream: stream.id,
                    generation: shard.generation,
                    after: None,
                    limit: 0,
                };
                let result = self
                    .read_shard(&record.name, &entry, read, deadline)
                    .await?;
                let ItemResult::StreamRecords { applied_slot, .. } = result else {
                    return Err(DynamoError::internal(
                        "Internal server error (a stream read answered with another result)",
                    ));
                };
                // Every record committed so far is at or below the leader's applied slot.
                Some(RecordPosition {
                    slot: applied_slot,
                    ordinal: u32::MAX,
                })
            }
            (_, Some(at)) => {
                // The first record the iterator would read must not be trimmed away.
                let first_wanted = if kind == "AT_SEQUENCE_NUMBER" {
                    at
                } else {
                    RecordPosition {
                        ordinal: at.ordinal.wrapping_add(1),
                        slot: if at.ordinal == u32::MAX {
                            at.slot + 1
                        } else {
                            at.slot
                        },
                    }
                };
                if trimmed.is_some_and(|trimmed| trimmed >= first_wanted) {
                    return Err(DynamoError::new(TRIMMED, TRIMMED_MESSAGE));
                }
                if kind == "AT_SEQUENCE_NUMBER" {
                    before(at).or(Some(RecordPosition::default()))
                } else {
                    Some(at)
                }
            }
            _ => None,
        };
        let state = IteratorState {
            shard,
            after,
            issued_ms: unix_millis_now(),
        };
        Ok(json!({ "ShardIterator": encode_iterator(arn, state) }))
    }

    /// Where an AT_TIMESTAMP iterator starts: after every record of `shard` created before
    /// `at_ms`, found by a binary search over the shard's slots (records are created in slot
    /// order, by the leaders' clocks, so their times increase with their positions up to a
    /// leader change's clock difference: DynamoDB calls the time approximate too). `None`, the
    /// shard's oldest record, when `at_ms` is before it (API reference: an older timestamp
    /// reads from TRIM_HORIZON).
    async fn position_at_time(
        &self,
        table: &str,
        entry: &PartitionEntry,
        stream: u64,
        shard: &StreamShardWire,
        at_ms: u64,
        deadline: Instant,
    ) -> Result<Option<RecordPosition>, DynamoError> {
        let (Some(first), Some(last)) = (shard.first, shard.last) else {
            return Ok(None);
        };
        // The smallest slot boundary `b` in [first, last + 1] such that the first record at or
        // after slot `b` was created at or after `at_ms` (or there is none).
        let (mut low, mut high) = (first.slot, last.slot.saturating_add(1));
        for _ in 0..TIMESTAMP_SEARCH_PROBES_MAX {
            if low >= high {
                break;
            }
            let middle = low + (high - low) / 2;
            let read = PreparedRequest::StreamRead {
                stream,
                generation: shard.generation,
                after: middle.checked_sub(1).map(|slot| RecordPosition {
                    slot,
                    ordinal: u32::MAX,
                }),
                limit: 1,
            };
            let ItemResult::StreamRecords { records, .. } =
                self.read_shard(table, entry, read, deadline).await?
            else {
                return Err(DynamoError::internal(
                    "Internal server error (a stream read answered with another result)",
                ));
            };
            let created = records
                .first()
                .and_then(|record| shoal_model::stream::record_created_ms(&record.record));
            match created {
                Some(created) if created < at_ms => low = middle + 1,
                _ => high = middle,
            }
        }
        Ok((low > first.slot).then(|| RecordPosition {
            slot: low - 1,
            ordinal: u32::MAX,
        }))
    }

    /// GetRecords.
    pub async fn get_records(&self, body: Json) -> Result<Json, DynamoError> {
        let text = required_string(&body, "ShardIterator", "shardIterator")?;
        let limit = limit(&body, GET_RECORDS_LIMIT_MAX)? as u32;
        if text.is_empty() || text.len() > SHARD_ITERATOR_BYTES_MAX {
            return Err(DynamoError::validation(format!(
                "1 validation error detected: Value at 'shardIterator' failed to satisfy constraint: Member must have length less than or equal to {SHARD_ITERATOR_BYTES_MAX} and greater than or equal to 1"
            )));
        }
        let invalid = || DynamoError::validation("Invalid ShardIterator");
        let (arn, state) = decode_iterator(text).ok_or_else(invalid)?;
        let now_ms = unix_millis_now();
        if now_ms.saturating_sub(state.issued_ms) > SHARD_ITERATOR_AGE_MAX_MS {
            return Err(DynamoError::new(EXPIRED_ITERATOR, EXPIRED_ITERATOR_MESSAGE));
        }
        let deadline = self.deadline();
        let (record, stream) = match self.stream_of(arn, deadline).await {
            Err(error) if error.type_name == crate::error::VALIDATION => return Err(invalid()),
            other => other?,
        };
        let (shard, entry) = Self::shard_partition(&record, Some(state.shard))?;
        let read = PreparedRequest::StreamRead {
            stream: stream.id,
            generation: shard.generation,
            after: state.after,
            limit,
        };
        let result = self
            .read_shard(&record.name, &entry, read, deadline)
            .await?;
        let ItemResult::StreamRecords {
            records,
            shard_closed,
            trimmed_through,
            ..
        } = result
        else {
            return Err(DynamoError::internal(
                "Internal server error (a stream read answered with another result)",
            ));
        };
        // Invariant 4 of shoal_model::stream: a positioned reader never skips trimmed data.
        if let (Some(after), Some(trimmed)) = (state.after, trimmed_through.map(position))
            && trimmed > after
        {
            return Err(DynamoError::new(TRIMMED, TRIMMED_MESSAGE));
        }
        let mut rendered = Vec::with_capacity(records.len());
        for wire in &records {
            let record_position = position(wire.position);
            let decoded = StreamRecord::decode(&wire.record).map_err(|error| {
                DynamoError::internal(format!(
                    "Internal server error (a stream record does not decode: {error})"
                ))
            })?;
            rendered.push(self.record_json(shard.partition, record_position, &decoded));
        }
        let mut response = json!({ "Records": rendered });
        // A closed shard read to its end has no next iterator; an open one always has.
        if !(shard_closed && records.is_empty()) {
            let after = records
                .last()
                .map(|last| position(last.position))
                .or(state.after);
            let next = IteratorState {
                shard,
                after,
                issued_ms: now_ms,
            };
            response["NextShardIterator"] = json!(encode_iterator(arn, next));
        }
        Ok(response)
    }

    /// One record as GetRecords answers it (API reference, "Record" and "StreamRecord").
    fn record_json(&self, partition: u64, at: RecordPosition, record: &StreamRecord) -> Json {
        let image = |item: &shoal_model::Item| shoal_model::json::item_to_json(item);
        let mut dynamodb = json!({
            // Whole seconds, rounded down, as DynamoDB reports them.
            "ApproximateCreationDateTime": record.created_ms / 1000,
            "Keys": image(&record.keys),
            "SequenceNumber": sequence_number(at),
            "SizeBytes": record.size_bytes(),
            "StreamViewType": record.view.as_str(),
        });
        if let Some(old) = &record.old_image {
            dynamodb["OldImage"] = image(old);
        }
        if let Some(new) = &record.new_image {
            dynamodb["NewImage"] = image(new);
        }
        let mut rendered = json!({
            // Unique per record: its partition and position (ordinals stay below 2^16, one
            // batch's mutations; slots below 2^48).
            "eventID": format!("{partition:016x}{:012x}{:04x}", at.slot, at.ordinal & 0xFFFF),
            "eventName": record.event.as_str(),
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self.config.region,
            "dynamodb": dynamodb,
        });
        if record.by_time_to_live && record.event == EventName::Remove {
            // The API model's Identity shape (PrincipalId, Type), which SDKs parse.
            rendered["userIdentity"] = json!({
                "PrincipalId": "dynamodb.amazonaws.com",
                "Type": "Service",
            });
        }
        rendered
    }
}

/// DescribeStream's ShardFilter: the parent shard whose children are asked for, if any.
fn shard_filter(body: &Json) -> Result<Option<String>, DynamoError> {
    let filter = match body.get("ShardFilter") {
        None | Some(Json::Null) => return Ok(None),
        Some(filter @ Json::Object(_)) => filter,
        Some(_) => {
            return Err(DynamoError::serialization(
                "Unexpected value type in payload: ShardFilter must be a structure",
            ));
        }
    };
    if let Some(kind) = optional_string(filter, "Type")?
        && !SHARD_FILTER_TYPES.contains(&kind)
    {
        return Err(DynamoError::validation(format!(
            "1 validation error detected: Value '{kind}' at 'shardFilter.type' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            SHARD_FILTER_TYPES.join(", ")
        )));
    }
    let parent = optional_string(filter, "ShardId")?.ok_or_else(|| {
        DynamoError::validation("ShardFilter of type CHILD_SHARDS must name a ShardId")
    })?;
    Ok(Some(parent.to_string()))
}

fn key_schema_json(schema: &shoal_model::key::KeySchema) -> Json {
    let mut elements = vec![json!({ "AttributeName": schema.partition.name, "KeyType": "HASH" })];
    if let Some(sort) = &schema.sort {
        elements.push(json!({ "AttributeName": sort.name, "KeyType": "RANGE" }));
    }
    Json::Array(elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_name_their_partition_and_generation() {
        let shard = ShardName {
            partition: 42,
            generation: 3,
        };
        let id = shard_id(shard);
        assert_eq!(id, "shardId-00000000000000000042-00000003");
        assert!(id.len() >= 28);
        assert_eq!(parse_shard_id(&id), Some(shard));
        let largest = ShardName {
            partition: u64::MAX,
            generation: u32::MAX,
        };
        assert_eq!(parse_shard_id(&shard_id(largest)), Some(largest));
        for bad in [
            "shardId-42-3",
            "shard-00000000000000000042-00000003",
            "",
            "shardId-0000000000000000004x-00000003",
        ] {
            assert_eq!(parse_shard_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn iterators_round_trip_and_refuse_other_text() {
        let arn = "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2015-05-11T21:21:33.291";
        for after in [
            None,
            Some(RecordPosition {
                slot: 9,
                ordinal: 2,
            }),
        ] {
            let state = IteratorState {
                shard: ShardName {
                    partition: 7,
                    generation: 1,
                },
                after,
                issued_ms: 1_700_000_000_000,
            };
            let text = encode_iterator(arn, state);
            assert!(text.len() <= SHARD_ITERATOR_BYTES_MAX);
            assert_eq!(decode_iterator(&text), Some((arn, state)));
            let mut damaged = text.clone();
            damaged.pop();
            assert_eq!(decode_iterator(&damaged), None);
        }
        assert_eq!(decode_iterator("garbage"), None);
        assert_eq!(decode_iterator(&format!("{arn}|2|00")), None);
    }

    #[test]
    fn the_position_before_steps_back_across_slots() {
        assert_eq!(
            before(RecordPosition {
                slot: 0,
                ordinal: 0
            }),
            None
        );
        assert_eq!(
            before(RecordPosition {
                slot: 5,
                ordinal: 0
            }),
            Some(RecordPosition {
                slot: 4,
                ordinal: u32::MAX
            })
        );
        assert_eq!(
            before(RecordPosition {
                slot: 5,
                ordinal: 3
            }),
            Some(RecordPosition {
                slot: 5,
                ordinal: 2
            })
        );
    }

    #[test]
    fn disabled_streams_leave_the_list_after_the_retention() {
        let stream = |id: u64, disabled_at_ms: Option<u64>| TableStream {
            id,
            view: ViewType::KeysOnly,
            status: if disabled_at_ms.is_some() {
                StreamStatus::Disabled
            } else {
                StreamStatus::Enabled
            },
            settled: BTreeSet::new(),
            disabled_at_ms,
        };
        let now = 10 * DISABLED_STREAM_LISTED_MS;
        let streams = [
            stream(1, Some(now - DISABLED_STREAM_LISTED_MS - 1)),
            stream(2, Some(now - 1)),
            stream(3, Some(now - DISABLED_STREAM_LISTED_MS)),
        ];
        let kept: Vec<u64> = pruned_streams(&streams, now)
            .iter()
            .map(|stream| stream.id)
            .collect();
        // The latest always stays: DescribeTable names it.
        assert_eq!(kept, [2, 3]);
    }
}
