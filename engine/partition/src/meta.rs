//! The partition meta file: what a replica was created with, written once when the replica is
//! created and read at every start. Layout (FORMAT.md in this crate):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `SHPM` |
//! | 4 | 2 | version, u16 LE (1) |
//! | 6 | 2 | reserved, 0 |
//! | 8 | 4 | body length, u32 LE |
//! | 12 | 4 | crc32c of the body, u32 LE |
//! | 16 | n | body: rkyv archive of `NodeRequest::CreatePartition` |
//!
//! zero-padded to a multiple of 4 KiB. The file is created with create-new, written, synced and
//! its directory synced before the replica exists; a file that fails any check stops the shard
//! (the replica's identity is unknown, so guessing would be worse than stopping).

use shoal_io::{OpenMode, Storage, StorageDirectory};
use shoal_model::key::{KeyAttribute, KeySchema, KeyType};
use shoal_replication::Membership;
use shoal_wire::messages::{KeySchemaWire, KeyTypeWire, MembershipWire, NodeRequest};

const MAGIC: [u8; 4] = *b"SHPM";
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 16;
/// The meta file's size bound: a key schema and a replica set are small.
pub const META_FILE_BYTES_MAX: usize = 64 * 1024;
const BLOCK_BYTES: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMeta {
    pub partition: u64,
    pub epoch: u64,
    pub key_schema: KeySchema,
    /// The replica set the partition was created with (the log carries later changes).
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
    let name = unrecoverable_marker_file_name(partition);
    let file = directory.open(&name, OpenMode::CreateOrExisting).await?;
    shoal_io::storage::sync_or_stop(&file).await;
    file.close().await?;
    if let Err(error) = directory.sync().await {
        shoal_io::fatal!("directory sync failed after creating {name}: {error}");
    }
    Ok(())
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

    fn encode(&self) -> Vec<u8> {
        let body = match rkyv::to_bytes::<rkyv::rancor::Error>(&self.to_request()) {
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
        if u16::from_le_bytes([header[4], header[5]]) != VERSION {
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
        match rkyv::from_bytes::<NodeRequest, rkyv::rancor::Error>(&aligned) {
            Ok(NodeRequest::CreatePartition {
                partition,
                epoch,
                key_schema,
                membership,
            }) => PartitionMeta::from_parts(partition, epoch, &key_schema, &membership)
                .ok_or(corrupt("invalid membership")),
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
