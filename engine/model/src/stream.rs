//! DynamoDB Streams from a partition's replicated log: the stream configuration a partition
//! holds, the stream records its writes add, its shards, and the sequence numbers consumers
//! see (layouts in FORMAT.md, "Streams").
//!
//! A table's stream is the sequence of its committed item changes. Each base partition keeps
//! its own part in its tree, in the index region, written by the same log entry as the change:
//! the leader evaluating a write that changes an item adds one pending record to the write's
//! mutation batch; every replica applying the batch at slot S gives the record its position
//! (S, ordinal in the batch), exactly as GSI outbox records get theirs. So a record exists
//! exactly when its change is committed, once, with the old and new image the leader evaluated
//! against, and positions increase with the log on every replica and at every replay.
//!
//! Invariants:
//! 1. A partition records changes for a stream exactly between the log entry that put its
//!    configuration record and the one that removed or replaced it: the leader reads the
//!    configuration as the latest proposal left it, and evaluates and proposes one request at
//!    a time, so no write proposed after the configuration changed is evaluated before it.
//! 2. A stream's part in one partition is a sequence of shards (generations 0, 1, ...). A shard
//!    record is put in the log entry that opens it, its key holding that entry's slot; a shard
//!    is closed once the next generation's shard record exists, and every record of a shard
//!    sorts before its successor's. A shard record marked `ENDED` closes the last shard of a
//!    stream that was disabled or replaced and opens nothing.
//! 3. A record's sequence number is its position, `slot << 32 | ordinal`, as decimal digits:
//!    it increases with the log, so within a shard (and across a partition's shards) consumers
//!    see changes in commit order, per item too.
//! 4. Records leave only from the front of a partition's stream (oldest positions first), and
//!    the trim record names the last position removed: a reader asking for anything at or
//!    before it is told the data is trimmed, never given a silent gap. Shard records leave
//!    from the front too (a shard only once every older shard of its stream is gone), so the
//!    generations a partition holds are always consecutive.
//! 5. No key of this module is an item or GSI entry key: all live in the index region (nine
//!    0xFF bytes, see [`crate::index::INDEX_REGION_PREFIX`]), between the LSI numbers and the
//!    GSI outbox markers.

use crate::encoding::{decode_item, encode_item};
use crate::error::{Error, Result};
use crate::index::INDEX_REGION_PREFIX;
use crate::index::global::OutboxPosition;
use crate::key::KeySchema;
use crate::value::{Item, item_size_bytes};

/// A record's place in its partition's history: the log slot of the write and its ordinal
/// among the batch's records (the same shape as a GSI outbox position).
pub type RecordPosition = OutboxPosition;

/// The partition's stream configuration record: one key.
pub const CONFIG_MARKER: u8 = 0xF5;
/// A shard record inside a proposed batch, before apply gives it its slot.
pub const SHARD_PENDING_MARKER: u8 = 0xF6;
/// Shard records: one per generation of each stream, keyed by stream, generation and slot.
pub const SHARD_MARKER: u8 = 0xF7;
/// A stream record inside a proposed batch, before apply gives it its slot.
pub const RECORD_PENDING_MARKER: u8 = 0xF8;
/// Stream records, keyed by stream, generation and position.
pub const RECORD_MARKER: u8 = 0xF9;
/// Per stream, the last position trimmed away.
pub const TRIMMED_MARKER: u8 = 0xFA;
const _: () = assert!(crate::index::LOCAL_SECONDARY_INDEXES_MAX < CONFIG_MARKER as usize);
const _: () = assert!(TRIMMED_MARKER < crate::index::global::OUTBOX_PENDING_MARKER);

/// Records one stream read returns at most: GetRecords' own limit.
pub const READ_RECORDS_MAX: usize = 1_000;
/// Bytes (keys and images) one stream read returns at most: GetRecords answers at most 1 MB;
/// the first record always comes, whatever its size.
pub const READ_BYTES_MAX: usize = 1024 * 1024;
/// How long records are kept: DynamoDB's 24 hours (a node setting may shorten it).
pub const RETENTION_MS_DEFAULT: u64 = 24 * 60 * 60 * 1000;
/// How long a shard stays open before the partition rolls to a new one, as DynamoDB's shards
/// do (its documentation says shards are ephemeral and last about four hours).
pub const SHARD_ROLLOVER_MS_DEFAULT: u64 = 4 * 60 * 60 * 1000;
/// Bytes of records a partition keeps at most, whatever their age: past it, the oldest are
/// trimmed (and readers told so), so a write-heavy table cannot fill the disk with its stream.
pub const PARTITION_RECORD_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;
/// Records (or shard records) one trim step removes at most: one log entry of deletes.
pub const TRIM_RECORDS_PER_STEP_MAX: usize = 2_000;
const _: () = assert!(TRIM_RECORDS_PER_STEP_MAX + 2 <= 4096);

/// What a record holds of the item (StreamViewType).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViewType {
    KeysOnly,
    NewImage,
    OldImage,
    NewAndOldImages,
}

impl ViewType {
    pub const ALL: [ViewType; 4] = [
        ViewType::KeysOnly,
        ViewType::NewImage,
        ViewType::OldImage,
        ViewType::NewAndOldImages,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ViewType::KeysOnly => "KEYS_ONLY",
            ViewType::NewImage => "NEW_IMAGE",
            ViewType::OldImage => "OLD_IMAGE",
            ViewType::NewAndOldImages => "NEW_AND_OLD_IMAGES",
        }
    }

    pub fn parse(name: &str) -> Option<ViewType> {
        ViewType::ALL.into_iter().find(|view| view.as_str() == name)
    }

    pub fn code(self) -> u8 {
        match self {
            ViewType::KeysOnly => 1,
            ViewType::NewImage => 2,
            ViewType::OldImage => 3,
            ViewType::NewAndOldImages => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<ViewType> {
        ViewType::ALL.into_iter().find(|view| view.code() == code)
    }

    fn keeps_new(self) -> bool {
        matches!(self, ViewType::NewImage | ViewType::NewAndOldImages)
    }

    fn keeps_old(self) -> bool {
        matches!(self, ViewType::OldImage | ViewType::NewAndOldImages)
    }
}

/// A partition's stream configuration: which stream its writes feed, with which view, and its
/// open shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// The stream's id: its creation time in unix milliseconds, which is also its label.
    pub stream: u64,
    pub view: ViewType,
    /// The open shard's generation.
    pub generation: u32,
    /// When the open shard was opened (the leader's wall clock, unix milliseconds).
    pub generation_opened_ms: u64,
}

const CONFIG_VALUE_BYTES: usize = 8 + 1 + 4 + 8;

impl StreamConfig {
    pub fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(CONFIG_VALUE_BYTES);
        value.extend_from_slice(&self.stream.to_be_bytes());
        value.push(self.view.code());
        value.extend_from_slice(&self.generation.to_be_bytes());
        value.extend_from_slice(&self.generation_opened_ms.to_be_bytes());
        value
    }

    pub fn decode(value: &[u8]) -> Result<StreamConfig> {
        if value.len() != CONFIG_VALUE_BYTES {
            return Err(corrupt("stream configuration record has the wrong length"));
        }
        Ok(StreamConfig {
            stream: u64_at(value, 0),
            view: ViewType::from_code(value[8])
                .ok_or_else(|| corrupt("stream configuration record has an unknown view"))?,
            generation: u32_at(value, 9),
            generation_opened_ms: u64_at(value, 13),
        })
    }
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(what.to_string())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn region_key(marker: u8, capacity: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(INDEX_REGION_PREFIX.len() + 1 + capacity);
    key.extend_from_slice(&INDEX_REGION_PREFIX);
    key.push(marker);
    key
}

/// The key of the partition's stream configuration record (a constant: every applied batch is
/// checked for it).
pub const CONFIG_KEY: [u8; 10] = {
    let mut key = [0xFF; 10];
    key[9] = CONFIG_MARKER;
    key
};
const _: () = assert!(INDEX_REGION_PREFIX.len() == 9);

pub fn config_key() -> Vec<u8> {
    CONFIG_KEY.to_vec()
}

/// The first key of a stream's records in one shard; every record key of the shard starts
/// with it.
pub fn record_prefix(stream: u64, generation: u32) -> Vec<u8> {
    let mut key = region_key(RECORD_MARKER, 8 + 4 + 12);
    key.extend_from_slice(&stream.to_be_bytes());
    key.extend_from_slice(&generation.to_be_bytes());
    key
}

/// The first key of all stream records of every stream.
pub fn records_start() -> Vec<u8> {
    region_key(RECORD_MARKER, 0)
}

/// The key after every stream record of every stream.
pub fn records_end() -> Vec<u8> {
    region_key(RECORD_MARKER + 1, 0)
}

pub fn record_key(stream: u64, generation: u32, position: RecordPosition) -> Vec<u8> {
    let mut key = record_prefix(stream, generation);
    key.extend_from_slice(&position.slot.to_be_bytes());
    key.extend_from_slice(&position.ordinal.to_be_bytes());
    key
}

/// The key range of a shard's records after `after` (from the shard's start when `None`).
pub fn record_bounds(
    stream: u64,
    generation: u32,
    after: Option<RecordPosition>,
) -> (std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>) {
    use std::ops::Bound;
    let lower = match after {
        None => Bound::Included(record_prefix(stream, generation)),
        Some(position) => Bound::Excluded(record_key(stream, generation, position)),
    };
    let last = RecordPosition {
        slot: u64::MAX,
        ordinal: u32::MAX,
    };
    (lower, Bound::Included(record_key(stream, generation, last)))
}

/// The key range of a stream's shard records.
pub fn shard_bounds(stream: u64) -> (std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>) {
    use std::ops::Bound;
    (
        Bound::Included(shard_prefix(stream)),
        Bound::Included(shard_key(stream, u32::MAX, u64::MAX)),
    )
}

/// The creation time in a record's value, without decoding its images (for the trim).
pub fn record_created_ms(value: &[u8]) -> Option<u64> {
    (value.len() >= 11).then(|| u64_at(value, 3))
}

/// A record's stream, generation and position, if `key` is a record key.
pub fn parse_record_key(key: &[u8]) -> Option<(u64, u32, RecordPosition)> {
    let rest = key
        .strip_prefix(&INDEX_REGION_PREFIX[..])?
        .strip_prefix(&[RECORD_MARKER])?;
    (rest.len() == 8 + 4 + 8 + 4).then(|| {
        (
            u64_at(rest, 0),
            u32_at(rest, 8),
            RecordPosition {
                slot: u64_at(rest, 12),
                ordinal: u32_at(rest, 20),
            },
        )
    })
}

/// The key of a record inside a proposed batch: its ordinal among the batch's records.
pub fn pending_record_key(stream: u64, generation: u32, ordinal: u32) -> Vec<u8> {
    let mut key = region_key(RECORD_PENDING_MARKER, 16);
    key.extend_from_slice(&stream.to_be_bytes());
    key.extend_from_slice(&generation.to_be_bytes());
    key.extend_from_slice(&ordinal.to_be_bytes());
    key
}

pub fn shard_prefix(stream: u64) -> Vec<u8> {
    let mut key = region_key(SHARD_MARKER, 8 + 12);
    key.extend_from_slice(&stream.to_be_bytes());
    key
}

/// The first key of every shard record of every stream.
pub fn shards_start() -> Vec<u8> {
    region_key(SHARD_MARKER, 0)
}

/// The key after every shard record of every stream.
pub fn shards_end() -> Vec<u8> {
    region_key(SHARD_MARKER + 1, 0)
}

pub fn shard_key(stream: u64, generation: u32, opened_slot: u64) -> Vec<u8> {
    let mut key = shard_prefix(stream);
    key.extend_from_slice(&generation.to_be_bytes());
    key.extend_from_slice(&opened_slot.to_be_bytes());
    key
}

/// A shard record's stream, generation and the slot of the log entry that opened it.
pub fn parse_shard_key(key: &[u8]) -> Option<(u64, u32, u64)> {
    let rest = key
        .strip_prefix(&INDEX_REGION_PREFIX[..])?
        .strip_prefix(&[SHARD_MARKER])?;
    (rest.len() == 8 + 4 + 8).then(|| (u64_at(rest, 0), u32_at(rest, 8), u64_at(rest, 12)))
}

pub fn pending_shard_key(stream: u64, generation: u32) -> Vec<u8> {
    let mut key = region_key(SHARD_PENDING_MARKER, 12);
    key.extend_from_slice(&stream.to_be_bytes());
    key.extend_from_slice(&generation.to_be_bytes());
    key
}

/// What a shard record says: when the shard was opened, and whether it is the end marker of a
/// disabled or replaced stream (invariant 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardRecord {
    pub opened_ms: u64,
    pub ended: bool,
}

const SHARD_OPEN: u8 = 0x00;
const SHARD_ENDED: u8 = 0x01;

impl ShardRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut value = self.opened_ms.to_be_bytes().to_vec();
        value.push(if self.ended { SHARD_ENDED } else { SHARD_OPEN });
        value
    }

    pub fn decode(value: &[u8]) -> Result<ShardRecord> {
        match value {
            [time @ .., kind @ (SHARD_OPEN | SHARD_ENDED)] if time.len() == 8 => Ok(ShardRecord {
                opened_ms: u64_at(time, 0),
                ended: *kind == SHARD_ENDED,
            }),
            _ => Err(corrupt("stream shard record does not decode")),
        }
    }
}

pub fn trimmed_key(stream: u64) -> Vec<u8> {
    let mut key = region_key(TRIMMED_MARKER, 8);
    key.extend_from_slice(&stream.to_be_bytes());
    key
}

pub fn encode_position(position: RecordPosition) -> Vec<u8> {
    let mut value = position.slot.to_be_bytes().to_vec();
    value.extend_from_slice(&position.ordinal.to_be_bytes());
    value
}

pub fn decode_position(value: &[u8]) -> Result<RecordPosition> {
    (value.len() == 12)
        .then(|| RecordPosition {
            slot: u64_at(value, 0),
            ordinal: u32_at(value, 8),
        })
        .ok_or_else(|| corrupt("stream trim record has the wrong length"))
}

/// The key a replica applying a batch at `slot` stores a pending record or shard record
/// under; `None` for any other key.
pub fn positioned_key(pending: &[u8], slot: u64) -> Option<Vec<u8>> {
    let rest = pending.strip_prefix(&INDEX_REGION_PREFIX[..])?;
    match rest {
        [RECORD_PENDING_MARKER, ids @ ..] if ids.len() == 16 => Some(record_key(
            u64_at(ids, 0),
            u32_at(ids, 8),
            RecordPosition {
                slot,
                ordinal: u32_at(ids, 12),
            },
        )),
        [SHARD_PENDING_MARKER, ids @ ..] if ids.len() == 12 => {
            Some(shard_key(u64_at(ids, 0), u32_at(ids, 8), slot))
        }
        _ => None,
    }
}

/// The sequence number consumers see for a position (invariant 3): at least 21 digits, as
/// DynamoDB's are (its API model bounds them to 21..=40 characters).
pub fn sequence_number(position: RecordPosition) -> String {
    let value = (u128::from(position.slot) << 32) | u128::from(position.ordinal);
    format!("{value:021}")
}

/// The position a sequence number names, or `None` if it is not one of ours.
pub fn parse_sequence_number(text: &str) -> Option<RecordPosition> {
    if text.is_empty() || text.len() > 40 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let value: u128 = text.parse().ok()?;
    Some(RecordPosition {
        slot: u64::try_from(value >> 32).ok()?,
        ordinal: (value & u128::from(u32::MAX)) as u32,
    })
}

/// INSERT, MODIFY or REMOVE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventName {
    Insert,
    Modify,
    Remove,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Insert => "INSERT",
            EventName::Modify => "MODIFY",
            EventName::Remove => "REMOVE",
        }
    }

    fn code(self) -> u8 {
        match self {
            EventName::Insert => 1,
            EventName::Modify => 2,
            EventName::Remove => 3,
        }
    }

    fn from_code(code: u8) -> Option<EventName> {
        [EventName::Insert, EventName::Modify, EventName::Remove]
            .into_iter()
            .find(|event| event.code() == code)
    }
}

/// One committed change of an item, as its stream keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRecord {
    pub event: EventName,
    /// A Time to Live deletion (the record names the service as its user identity).
    pub by_time_to_live: bool,
    pub view: ViewType,
    /// The leader's wall clock when it evaluated the write, unix milliseconds.
    pub created_ms: u64,
    pub keys: Item,
    /// Present as the view keeps it.
    pub old_image: Option<Item>,
    pub new_image: Option<Item>,
}

const FLAG_TIME_TO_LIVE: u8 = 0x01;
const IMAGE_ABSENT: u32 = u32::MAX;

impl StreamRecord {
    /// The record of a write that turns `old` into `new`, or `None` when the write left the
    /// item as it was (DynamoDB writes no record then: developer guide, "Change data capture
    /// for DynamoDB Streams").
    pub fn of_change(
        view: ViewType,
        key_schema: &KeySchema,
        old: Option<&Item>,
        new: Option<&Item>,
        created_ms: u64,
        by_time_to_live: bool,
    ) -> Option<StreamRecord> {
        let (event, either) = match (old, new) {
            (None, None) => return None,
            (Some(old), Some(new)) if old == new => return None,
            (None, Some(new)) => (EventName::Insert, new),
            (Some(_), Some(new)) => (EventName::Modify, new),
            (Some(old), None) => (EventName::Remove, old),
        };
        Some(StreamRecord {
            event,
            by_time_to_live,
            view,
            created_ms,
            keys: key_schema.key_of(either),
            old_image: old.filter(|_| view.keeps_old()).cloned(),
            new_image: new.filter(|_| view.keeps_new()).cloned(),
        })
    }

    /// DynamoDB's SizeBytes: the record's keys and images.
    pub fn size_bytes(&self) -> u64 {
        [
            Some(&self.keys),
            self.old_image.as_ref(),
            self.new_image.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|item| item_size_bytes(item) as u64)
        .sum()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut value = vec![
            self.event.code(),
            if self.by_time_to_live {
                FLAG_TIME_TO_LIVE
            } else {
                0
            },
            self.view.code(),
        ];
        value.extend_from_slice(&self.created_ms.to_be_bytes());
        for item in [
            Some(&self.keys),
            self.old_image.as_ref(),
            self.new_image.as_ref(),
        ] {
            match item {
                Some(item) => {
                    let encoded = encode_item(item);
                    value.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
                    value.extend_from_slice(&encoded);
                }
                None => value.extend_from_slice(&IMAGE_ABSENT.to_be_bytes()),
            }
        }
        value
    }

    pub fn decode(value: &[u8]) -> Result<StreamRecord> {
        let bad = || corrupt("stream record does not decode");
        if value.len() < 3 + 8 {
            return Err(bad());
        }
        let event = EventName::from_code(value[0]).ok_or_else(bad)?;
        let view = ViewType::from_code(value[2]).ok_or_else(bad)?;
        let created_ms = u64_at(value, 3);
        let mut rest = &value[11..];
        let mut images = [None, None, None];
        for image in &mut images {
            if rest.len() < 4 {
                return Err(bad());
            }
            let length = u32_at(rest, 0);
            rest = &rest[4..];
            if length != IMAGE_ABSENT {
                let length = length as usize;
                if rest.len() < length {
                    return Err(bad());
                }
                *image = Some(decode_item(&rest[..length])?);
                rest = &rest[length..];
            }
        }
        if !rest.is_empty() {
            return Err(bad());
        }
        let [keys, old_image, new_image] = images;
        Ok(StreamRecord {
            event,
            by_time_to_live: value[1] & FLAG_TIME_TO_LIVE != 0,
            view,
            created_ms,
            keys: keys.ok_or_else(bad)?,
            old_image,
            new_image,
        })
    }
}

/// A stream's label, which DynamoDB derives from its creation time ("2015-05-11T21:21:33.291",
/// UTC, milliseconds), and which names the stream in its ARN.
pub fn label(stream: u64) -> String {
    let (seconds, millis) = (stream / 1000, stream % 1000);
    let (days, day_seconds) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}",
        day_seconds / 3600,
        day_seconds / 60 % 60,
        day_seconds % 60
    )
}

/// The stream id a label names, if it is a label this module writes.
pub fn parse_label(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let shape = bytes.len() == 23
        && bytes.iter().enumerate().all(|(at, byte)| match at {
            4 | 7 => *byte == b'-',
            10 => *byte == b'T',
            13 | 16 => *byte == b':',
            19 => *byte == b'.',
            _ => byte.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text[range].parse::<u64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second, millis) = (
        number(11..13)?,
        number(14..16)?,
        number(17..19)?,
        number(20..23)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 59 || year < 1970 {
        return None;
    }
    let days = days_from_civil(year as i64, month as u32, day as u32);
    let stream = ((days as u64 * 86_400 + hour * 3600 + minute * 60 + second) * 1000) + millis;
    (label(stream) == text).then_some(stream)
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's civil-from-days algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * month_index + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{KeyAttribute, KeyType};
    use crate::value::AttributeValue;

    fn schema() -> KeySchema {
        KeySchema {
            partition: KeyAttribute {
                name: "pk".to_string(),
                key_type: KeyType::String,
            },
            sort: None,
        }
    }

    fn item(pk: &str, value: &str) -> Item {
        Item::from([
            ("pk".to_string(), AttributeValue::String(pk.to_string())),
            ("v".to_string(), AttributeValue::String(value.to_string())),
        ])
    }

    #[test]
    fn records_follow_the_view_and_skip_unchanged_items() {
        let (old, new) = (item("a", "1"), item("a", "2"));
        let record = |view, old: Option<&Item>, new: Option<&Item>| {
            StreamRecord::of_change(view, &schema(), old, new, 5, false)
        };
        assert_eq!(record(ViewType::NewImage, Some(&old), Some(&old)), None);
        assert_eq!(record(ViewType::NewImage, None, None), None);
        let insert = record(ViewType::NewAndOldImages, None, Some(&new)).unwrap();
        assert_eq!(insert.event, EventName::Insert);
        assert_eq!(
            (insert.old_image, insert.new_image),
            (None, Some(new.clone()))
        );
        let modify = record(ViewType::OldImage, Some(&old), Some(&new)).unwrap();
        assert_eq!(modify.event, EventName::Modify);
        assert_eq!(
            (modify.old_image, modify.new_image),
            (Some(old.clone()), None)
        );
        let remove = record(ViewType::KeysOnly, Some(&old), None).unwrap();
        assert_eq!(remove.event, EventName::Remove);
        assert_eq!(remove.keys.len(), 1);
        assert_eq!((remove.old_image, remove.new_image), (None, None));
    }

    #[test]
    fn records_round_trip() {
        let mut record = StreamRecord::of_change(
            ViewType::NewAndOldImages,
            &schema(),
            Some(&item("a", "1")),
            Some(&item("a", "2")),
            1_733_000_000_123,
            true,
        )
        .unwrap();
        assert_eq!(StreamRecord::decode(&record.encode()).unwrap(), record);
        record.old_image = None;
        let encoded = record.encode();
        assert_eq!(StreamRecord::decode(&encoded).unwrap(), record);
        assert!(StreamRecord::decode(&encoded[..encoded.len() - 1]).is_err());
        let mut longer = encoded.clone();
        longer.push(0);
        assert!(StreamRecord::decode(&longer).is_err());
    }

    #[test]
    fn pending_keys_take_the_slot_and_sort_in_position_order() {
        let pending = pending_record_key(7, 2, 3);
        let key = positioned_key(&pending, 99).unwrap();
        assert_eq!(
            parse_record_key(&key),
            Some((
                7,
                2,
                RecordPosition {
                    slot: 99,
                    ordinal: 3
                }
            ))
        );
        assert!(
            record_key(
                7,
                2,
                RecordPosition {
                    slot: 99,
                    ordinal: 3
                }
            ) < record_key(
                7,
                2,
                RecordPosition {
                    slot: 100,
                    ordinal: 0
                }
            )
        );
        assert!(
            record_key(
                7,
                2,
                RecordPosition {
                    slot: 500,
                    ordinal: 0
                }
            ) < record_key(
                7,
                3,
                RecordPosition {
                    slot: 1,
                    ordinal: 0
                }
            )
        );
        let shard = positioned_key(&pending_shard_key(7, 4), 42).unwrap();
        assert_eq!(parse_shard_key(&shard), Some((7, 4, 42)));
        assert_eq!(positioned_key(&config_key(), 1), None);
        assert!(
            records_start() <= record_prefix(0, 0)
                && record_prefix(u64::MAX, u32::MAX) < records_end()
        );
        // Invariant 5: every key is in the region, after any item key.
        assert!(config_key() > vec![0xFF; 8]);
    }

    #[test]
    fn sequence_numbers_increase_with_positions_and_parse_back() {
        let positions = [
            RecordPosition {
                slot: 0,
                ordinal: 0,
            },
            RecordPosition {
                slot: 1,
                ordinal: u32::MAX,
            },
            RecordPosition {
                slot: 2,
                ordinal: 0,
            },
            RecordPosition {
                slot: u64::MAX,
                ordinal: u32::MAX,
            },
        ];
        for pair in positions.windows(2) {
            let (a, b) = (sequence_number(pair[0]), sequence_number(pair[1]));
            assert!(a.len() >= 21 && a.len() <= 40 && b.len() <= 40);
            let as_number = |text: &str| text.parse::<u128>().unwrap();
            assert!(as_number(&a) < as_number(&b));
        }
        for position in positions {
            assert_eq!(
                parse_sequence_number(&sequence_number(position)),
                Some(position)
            );
        }
        assert_eq!(parse_sequence_number("12a"), None);
        assert_eq!(parse_sequence_number(""), None);
        assert_eq!(parse_sequence_number(&"9".repeat(40)), None);
    }

    #[test]
    fn labels_are_utc_with_milliseconds_and_parse_back() {
        assert_eq!(label(0), "1970-01-01T00:00:00.000");
        assert_eq!(label(1_431_379_293_291), "2015-05-11T21:21:33.291");
        assert_eq!(label(951_782_400_000), "2000-02-29T00:00:00.000");
        for stream in [0, 1_431_379_293_291, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse_label(&label(stream)), Some(stream));
        }
        assert_eq!(parse_label("2015-02-30T00:00:00.000"), None);
        assert_eq!(parse_label("2015-05-11 21:21:33.291"), None);
    }

    #[test]
    fn configuration_and_shard_records_round_trip() {
        let config = StreamConfig {
            stream: 1_733_000_000_000,
            view: ViewType::OldImage,
            generation: 3,
            generation_opened_ms: 1_733_000_100_000,
        };
        assert_eq!(StreamConfig::decode(&config.encode()).unwrap(), config);
        let shard = ShardRecord {
            opened_ms: 12,
            ended: true,
        };
        assert_eq!(ShardRecord::decode(&shard.encode()).unwrap(), shard);
        let position = RecordPosition {
            slot: 9,
            ordinal: 1,
        };
        assert_eq!(
            decode_position(&encode_position(position)).unwrap(),
            position
        );
    }
}
