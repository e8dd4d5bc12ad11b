//! The partition meta file: what a replica was created with, written once when the replica is
//! created and read at every start. Layout (FORMAT.md in this crate):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `SHPM` |
//! | 4 | 2 | version, u16 LE (2; 1 is still read) |
//! | 6 | 2 | reserved, 0 |
//! | 8 | 4 | body length, u32 LE |
//! | 12 | 4 | crc32c of the body, u32 LE |
//! | 16 | n | body: rkyv archive of [`MetaRecord`] (version 1: of the bus message
//! |    |   | `NodeRequest::CreatePartition` of frame format 1, frozen in `v1`) |
//!
//! Version 2 gave the file its own record type: archived as a bus message, the file's bytes
//! changed whenever any variant of the bus's `NodeRequest` did (the layout of an rkyv enum is
//! its largest variant's), and a node upgraded across such a change could not read its own
//! meta files.
//!
//! zero-padded to a multiple of 4 KiB. The file is created with create-new, written, synced and
//! its directory synced before the replica exists; a file that fails any check stops the shard
//! (the replica's identity is unknown, so guessing would be worse than stopping).

use rkyv::{Archive, Deserialize, Serialize};
use shoal_io::{OpenMode, Storage, StorageDirectory};
use shoal_model::key::{KeyAttribute, KeySchema, KeyType};
use shoal_replication::Membership;
use shoal_wire::messages::{KeySchemaWire, KeyTypeWire, MembershipWire, NodeRequest};

const MAGIC: [u8; 4] = *b"SHPM";
/// The version written.
const VERSION: u16 = 2;
/// The first version, still read.
const VERSION_BUS_MESSAGE: u16 = 1;

/// The body of a version 2 meta file. Its own type, changed only with the file's version.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaRecord {
    pub partition: u64,
    pub epoch: u64,
    pub partition_key: KeyAttributeRecord,
    pub sort_key: Option<KeyAttributeRecord>,
    /// Sorted, distinct, and distinct from `log_replicas`.
    pub full_replicas: Vec<u64>,
    pub log_replicas: Vec<u64>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct KeyAttributeRecord {
    pub name: String,
    /// 1 S, 2 N, 3 B.
    pub key_type: u8,
}

const KEY_TYPE_STRING: u8 = 1;
const KEY_TYPE_NUMBER: u8 = 2;
const KEY_TYPE_BINARY: u8 = 3;

impl KeyAttributeRecord {
    fn of(attribute: &KeyAttribute) -> Self {
        KeyAttributeRecord {
            name: attribute.name.clone(),
            key_type: match attribute.key_type {
                KeyType::String => KEY_TYPE_STRING,
                KeyType::Number => KEY_TYPE_NUMBER,
                KeyType::Binary => KEY_TYPE_BINARY,
            },
        }
    }

    fn attribute(&self) -> Option<KeyAttribute> {
        let key_type = match self.key_type {
            KEY_TYPE_STRING => KeyType::String,
            KEY_TYPE_NUMBER => KeyType::Number,
            KEY_TYPE_BINARY => KeyType::Binary,
            _ => return None,
        };
        Some(KeyAttribute {
            name: self.name.clone(),
            key_type,
        })
    }
}

/// Version 1's body type: the bus's `NodeRequest` of frame format 1, frozen here (types,
/// field order and variants exactly as they were) so that its archives keep decoding whatever
/// the bus's messages become.
mod v1 {
    use rkyv::{Archive, Deserialize, Serialize};

    #[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum KeyTypeWire {
        String,
        Number,
        Binary,
    }

    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct KeySchemaWire {
        pub partition_key: (String, KeyTypeWire),
        pub sort_key: Option<(String, KeyTypeWire)>,
    }

    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
    pub struct MembershipWire {
        pub full_replicas: Vec<u64>,
        pub log_replicas: Vec<u64>,
    }

    #[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ItemOperation {
        PutItem,
        GetItem,
        UpdateItem,
        DeleteItem,
        Query,
        Scan,
        BatchGet,
        BatchWrite,
    }

    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub enum NodeRequest {
        CreatePartition {
            partition: u64,
            epoch: u64,
            key_schema: KeySchemaWire,
            membership: MembershipWire,
        },
        Item {
            partition: u64,
            epoch: u64,
            operation: ItemOperation,
            parameters_json: String,
        },
        Status,
        DeletePartition {
            partition: u64,
            epoch: u64,
        },
    }

    impl KeyTypeWire {
        pub fn current(self) -> super::KeyTypeWire {
            match self {
                KeyTypeWire::String => super::KeyTypeWire::String,
                KeyTypeWire::Number => super::KeyTypeWire::Number,
                KeyTypeWire::Binary => super::KeyTypeWire::Binary,
            }
        }
    }
}
const HEADER_BYTES: usize = 16;
/// The meta file's size bound: a key schema and a replica set are small.
pub const META_FILE_BYTES_MAX: usize = 64 * 1024;
const BLOCK_BYTES: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMeta {
    pub partition: u64,
    pub epoch: u64,
    pub key_schema: KeySchema,
    /// The replica set the partition was created with (the log carries later changes); empty
    /// for a replica created to join an existing group (`NodeRequest::JoinPartition`).
    pub membership: Membership,
}

#[derive(Debug)]
pub enum MetaError {
    Storage(shoal_io::StorageError),
    Corrupt { file: String, reason: &'static str },
}

impl std::fmt::Display for MetaError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetaError::Storage(error) => write!(formatter, "{error}"),
            MetaError::Corrupt { file, reason } => {
                write!(formatter, "partition meta file {file} is corrupt: {reason}")
            }
        }
    }
}

impl std::error::Error for MetaError {}

impl From<shoal_io::StorageError> for MetaError {
    fn from(error: shoal_io::StorageError) -> Self {
        MetaError::Storage(error)
    }
}

/// Removes the partition's meta file if it is there and makes the removal durable: from then on
/// the shard's recovery treats whatever else of the partition is left (tree files, WAL records)
/// as a deleted partition's. The first step of deleting a replica.
pub async fn remove_meta_file<D: StorageDirectory>(
    directory: &D,
    partition: u64,
) -> Result<(), shoal_io::StorageError> {
    let name = meta_file_name(partition);
    if directory.list().await?.contains(&name) {
        directory.remove(&name).await?;
    }
    directory.sync().await
}

pub fn meta_file_name(partition: u64) -> String {
    format!("partition-{partition:016x}.meta")
}

/// The partition id of a meta file name.
pub fn parse_meta_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("partition-")?.strip_suffix(".meta")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The name of the marker that a replica of `child` was built on this shard from its split
/// parent `parent` (src/replica/split.rs). Once built, a child is never built from the parent
/// again: if it is gone later, it was deleted (moved away, its table dropped), and one built
/// again from the split slot would be a member that forgot its promises and its log. An
/// empty file; that it exists is all it says. Removed with the parent's replica.
pub fn split_child_marker_file_name(parent: u64, child: u64) -> String {
    format!("partition-{parent:016x}.split-{child:016x}")
}

/// The parent and child of a [`split_child_marker_file_name`].
pub fn parse_split_child_marker_file_name(name: &str) -> Option<(u64, u64)> {
    let (parent, child) = name.strip_prefix("partition-")?.split_once(".split-")?;
    let parse = |hex: &str| {
        (hex.len() == 16)
            .then(|| u64::from_str_radix(hex, 16).ok())
            .flatten()
    };
    Some((parse(parent)?, parse(child)?))
}

/// Durably leaves the marker of [`split_child_marker_file_name`].
pub async fn mark_split_child_built<D: StorageDirectory>(
    directory: &D,
    parent: u64,
    child: u64,
) -> Result<(), shoal_io::StorageError> {
    create_marker(directory, &split_child_marker_file_name(parent, child)).await
}

async fn create_marker<D: StorageDirectory>(
    directory: &D,
    name: &str,
) -> Result<(), shoal_io::StorageError> {
    let file = directory.open(name, OpenMode::CreateOrExisting).await?;
    shoal_io::storage::sync_or_stop(&file).await;
    file.close().await?;
    if let Err(error) = directory.sync().await {
        shoal_io::fatal!("directory sync failed after creating {name}: {error}");
    }
    Ok(())
}

/// The name of the marker a shard leaves when it gives a replica of `partition` up: the replica
/// refused to recover, and its WAL records were then released so that the shard's WAL could go
/// on (FORMAT.md). An empty file; that it exists is all it says.
pub fn unrecoverable_marker_file_name(partition: u64) -> String {
    format!("partition-{partition:016x}.unrecoverable")
}

/// Durably leaves the marker of [`unrecoverable_marker_file_name`]. It must be durable before
/// the WAL may recycle any of the partition's records: a later start would otherwise recover
/// the replica from whatever part of its records is left, which can have lost a promise or an
/// acknowledged entry without leaving a gap to show it.
pub async fn mark_unrecoverable<D: StorageDirectory>(
    directory: &D,
    partition: u64,
) -> Result<(), shoal_io::StorageError> {
    create_marker(directory, &unrecoverable_marker_file_name(partition)).await
}

pub fn key_type_to_wire(key_type: KeyType) -> KeyTypeWire {
    match key_type {
        KeyType::String => KeyTypeWire::String,
        KeyType::Number => KeyTypeWire::Number,
        KeyType::Binary => KeyTypeWire::Binary,
    }
}

pub fn key_type_from_wire(key_type: KeyTypeWire) -> KeyType {
    match key_type {
        KeyTypeWire::String => KeyType::String,
        KeyTypeWire::Number => KeyType::Number,
        KeyTypeWire::Binary => KeyType::Binary,
    }
}

pub fn key_schema_to_wire(schema: &KeySchema) -> KeySchemaWire {
    KeySchemaWire {
        partition_key: (
            schema.partition.name.clone(),
            key_type_to_wire(schema.partition.key_type),
        ),
        sort_key: schema
            .sort
            .as_ref()
            .map(|sort| (sort.name.clone(), key_type_to_wire(sort.key_type))),
    }
}

pub fn key_schema_from_wire(schema: &KeySchemaWire) -> KeySchema {
    KeySchema {
        partition: KeyAttribute {
            name: schema.partition_key.0.clone(),
            key_type: key_type_from_wire(schema.partition_key.1),
        },
        sort: schema
            .sort_key
            .as_ref()
            .map(|(name, key_type)| KeyAttribute {
                name: name.clone(),
                key_type: key_type_from_wire(*key_type),
            }),
    }
}

impl PartitionMeta {
    pub fn to_request(&self) -> NodeRequest {
        NodeRequest::CreatePartition {
            partition: self.partition,
            epoch: self.epoch,
            key_schema: key_schema_to_wire(&self.key_schema),
            membership: MembershipWire::from(&self.membership),
        }
    }

    /// The meta of a `CreatePartition` request; `None` if its membership is invalid.
    pub fn from_parts(
        partition: u64,
        epoch: u64,
        key_schema: &KeySchemaWire,
        membership: &MembershipWire,
    ) -> Option<PartitionMeta> {
        Some(PartitionMeta {
            partition,
            epoch,
            key_schema: key_schema_from_wire(key_schema),
            membership: Membership::try_from(membership).ok()?,
        })
    }

    /// The record a version 2 file holds.
    pub fn record(&self) -> MetaRecord {
        let members = MembershipWire::from(&self.membership);
        MetaRecord {
            partition: self.partition,
            epoch: self.epoch,
            partition_key: KeyAttributeRecord::of(&self.key_schema.partition),
            sort_key: self.key_schema.sort.as_ref().map(KeyAttributeRecord::of),
            full_replicas: members.full_replicas,
            log_replicas: members.log_replicas,
        }
    }

    fn from_record(record: &MetaRecord) -> Option<PartitionMeta> {
        let membership = MembershipWire {
            full_replicas: record.full_replicas.clone(),
            log_replicas: record.log_replicas.clone(),
        };
        Some(PartitionMeta {
            partition: record.partition,
            epoch: record.epoch,
            key_schema: KeySchema {
                partition: record.partition_key.attribute()?,
                sort: match &record.sort_key {
                    None => None,
                    Some(sort) => Some(sort.attribute()?),
                },
            },
            membership: Membership::try_from(&membership).ok()?,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let body = match rkyv::to_bytes::<rkyv::rancor::Error>(&self.record()) {
            Ok(body) => body.to_vec(),
            Err(error) => shoal_io::fatal!("cannot archive partition meta: {error}"),
        };
        let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&0u16.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes.resize(bytes.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES, 0);
        bytes
    }

    fn decode(file: &str, bytes: &[u8]) -> Result<PartitionMeta, MetaError> {
        let corrupt = |reason| MetaError::Corrupt {
            file: file.to_string(),
            reason,
        };
        let header = bytes
            .get(..HEADER_BYTES)
            .ok_or(corrupt("shorter than its header"))?;
        if header[0..4] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let version = u16::from_le_bytes([header[4], header[5]]);
        if version != VERSION && version != VERSION_BUS_MESSAGE {
            return Err(corrupt("unknown version"));
        }
        let length = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
        let checksum = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
        let body = bytes
            .get(HEADER_BYTES..HEADER_BYTES + length)
            .ok_or(corrupt("body length past the end of the file"))?;
        if crc32c::crc32c(body) != checksum {
            return Err(corrupt("body checksum mismatch"));
        }
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
        aligned.extend_from_slice(body);
        if version == VERSION {
            let record = rkyv::from_bytes::<MetaRecord, rkyv::rancor::Error>(&aligned)
                .map_err(|_| corrupt("body is not a meta record"))?;
            return PartitionMeta::from_record(&record)
                .ok_or(corrupt("invalid key type or membership"));
        }
        match rkyv::from_bytes::<v1::NodeRequest, rkyv::rancor::Error>(&aligned) {
            Ok(v1::NodeRequest::CreatePartition {
                partition,
                epoch,
                key_schema,
                membership,
            }) => {
                let key_schema = KeySchemaWire {
                    partition_key: (
                        key_schema.partition_key.0,
                        key_schema.partition_key.1.current(),
                    ),
                    sort_key: key_schema
                        .sort_key
                        .map(|(name, key_type)| (name, key_type.current())),
                };
                let membership = MembershipWire {
                    full_replicas: membership.full_replicas,
                    log_replicas: membership.log_replicas,
                };
                PartitionMeta::from_parts(partition, epoch, &key_schema, &membership)
                    .ok_or(corrupt("invalid membership"))
            }
            _ => Err(corrupt("body is not a partition creation")),
        }
    }

    /// Writes the meta file durably; fails if it exists.
    pub async fn create<D: StorageDirectory>(&self, directory: &D) -> Result<(), MetaError> {
        let name = meta_file_name(self.partition);
        let file = directory.open(&name, OpenMode::CreateNew).await?;
        let bytes = self.encode();
        let mut buffer = file.allocate_buffer(bytes.len());
        buffer.copy_from_slice(&bytes);
        // Read back: a meta file the device lost or damaged would stop the replica at its next
        // start; better to fail the creation now, while the caller can still refuse it.
        shoal_io::storage::write_verified(&file, buffer, 0).await?;
        shoal_io::storage::sync_or_stop(&file).await;
        file.close().await?;
        if let Err(error) = directory.sync().await {
            shoal_io::fatal!("directory sync failed after creating {name}: {error}");
        }
        Ok(())
    }

    pub async fn read<D: StorageDirectory>(
        directory: &D,
        partition: u64,
    ) -> Result<PartitionMeta, MetaError> {
        let name = meta_file_name(partition);
        let file = directory.open(&name, OpenMode::Existing).await?;
        let length = file.len().await? as usize;
        if length == 0 || length > META_FILE_BYTES_MAX || !length.is_multiple_of(BLOCK_BYTES) {
            return Err(MetaError::Corrupt {
                file: name,
                reason: "size is not a whole number of 4 KiB blocks up to 64 KiB",
            });
        }
        let bytes = file.read_at(0, length).await?;
        let meta = PartitionMeta::decode(&name, &bytes)?;
        file.close().await?;
        if meta.partition != partition {
            return Err(MetaError::Corrupt {
                file: name,
                reason: "names another partition",
            });
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_replication::NodeId;

    fn unhex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn padded(mut bytes: Vec<u8>) -> Vec<u8> {
        bytes.resize(BLOCK_BYTES, 0);
        bytes
    }

    /// Meta files written by builds of bus frame format 1 (copied from data directories those
    /// builds left): a data partition and the metadata partition.
    const V1_DATA_PARTITION: &str = "
        5348504d0100000060000000e9e695c0
        0100000000000000020000000000000003000000000000000000000000000000
        010000000000000001000000000000006bffffffffffffff0000000000000000
        000000000000000000000000b4ffffff03000000c4ffffff0000000000000000";
    const V1_METADATA_PARTITION: &str = "
        5348504d0100000060000000175519ae
        0100000000000000020000000000000003000000000000000000000000000000
        000000000000000001000000000000006b6579ffffffffff0000000000000000
        000000000000000000000000b4ffffff03000000c4ffffff0000000000000000";

    #[test]
    fn version_1_files_still_read() {
        let data = PartitionMeta::decode("data", &padded(unhex(V1_DATA_PARTITION))).unwrap();
        assert_eq!(
            data,
            PartitionMeta {
                partition: 1,
                epoch: 1,
                key_schema: KeySchema::partition_only("k", KeyType::String),
                membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)], []),
            }
        );
        let metadata =
            PartitionMeta::decode("metadata", &padded(unhex(V1_METADATA_PARTITION))).unwrap();
        assert_eq!(metadata.partition, 0);
        assert_eq!(
            metadata.key_schema,
            KeySchema::partition_only("key", KeyType::String)
        );
    }

    fn sample() -> PartitionMeta {
        PartitionMeta {
            partition: 7,
            epoch: 3,
            key_schema: KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number),
            membership: Membership::new([NodeId(1), NodeId(2), NodeId(4)], [NodeId(5)]),
        }
    }

    #[test]
    fn version_2_round_trips_and_is_pinned() {
        let bytes = sample().encode();
        assert_eq!(bytes.len(), BLOCK_BYTES);
        assert_eq!(&bytes[4..6], &2u16.to_le_bytes());
        assert_eq!(PartitionMeta::decode("sample", &bytes).unwrap(), sample());
        let length = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!(
            hex(&bytes[..HEADER_BYTES + length]),
            V2_SAMPLE.split_whitespace().collect::<String>()
        );
    }

    /// `sample()` as version 2: header, then the archived record: the node ids of the two
    /// replica vectors (1, 2, 4; 5), then the root: partition, epoch, the key attributes (names
    /// this short are stored inline) with their key types, and each vector's relative pointer
    /// and length.
    const V2_SAMPLE: &str = "
        5348504d0200000060000000ab1df129
        0100000000000000020000000000000004000000000000000500000000000000
        07000000000000000300000000000000706bffffffffffff0100000001000000
        736bffffffffffff02000000b4ffffff03000000c4ffffff0100000000000000";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn damaged_or_unknown_files_are_refused() {
        let good = sample().encode();
        let mut version = good.clone();
        version[4..6].copy_from_slice(&3u16.to_le_bytes());
        assert!(PartitionMeta::decode("v3", &version).is_err());
        let mut flipped = good.clone();
        flipped[HEADER_BYTES + 3] ^= 1;
        assert!(PartitionMeta::decode("flipped", &flipped).is_err());
        // A record with a key type no version defines.
        let mut record = sample().record();
        record.partition_key.key_type = 9;
        let body = rkyv::to_bytes::<rkyv::rancor::Error>(&record).unwrap();
        let mut bytes = good[..HEADER_BYTES].to_vec();
        bytes[8..12].copy_from_slice(&(body.len() as u32).to_le_bytes());
        bytes[12..16].copy_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        assert!(PartitionMeta::decode("key type", &padded(bytes)).is_err());
    }
}
