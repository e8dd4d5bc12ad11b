//! The replication WAL record body: an archived [`PersistRecord`].
//!
//! The shard's WAL frames each record with its own header and crc32c (engine FORMAT.md); these
//! helpers produce and check only the body. Recovery validates the archive even though the WAL
//! checksum passed, because a record written by a buggy or older binary must not be trusted.

use std::fmt;

use rkyv::rancor::BoxedError;
use rkyv::util::AlignedVec;

use crate::messages::{ArchivedPersistRecord, PersistRecord};

/// Why a WAL record body is not a valid `PersistRecord`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistRecordError {
    pub reason: String,
}

impl fmt::Display for PersistRecordError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "invalid persist record: {}", self.reason)
    }
}

impl std::error::Error for PersistRecordError {}

/// The archived bytes of `record`, to be written as a WAL record body.
///
/// # Panics
/// Only if rkyv cannot serialize the record, which for these plain types happens only when the
/// archive would outgrow rkyv's 32-bit relative pointers (2 GiB); the replication core's limits
/// keep one Persist far below that, so a failure is a broken invariant, not an input error.
pub fn encode_persist_record(record: &PersistRecord) -> Vec<u8> {
    match rkyv::to_bytes::<BoxedError>(record) {
        Ok(bytes) => bytes.into_vec(),
        Err(error) => panic!(
            "cannot serialize the persist record of group {}: {error}",
            record.group
        ),
    }
}

/// Validates and deserializes a WAL record body. The bytes are copied into a 16-byte-aligned
/// buffer first (a WAL read buffer gives no alignment guarantee at a record's offset), and
/// `bytes` must be exactly the body (rkyv reads the root from the end).
pub fn decode_persist_record(bytes: &[u8]) -> Result<PersistRecord, PersistRecordError> {
    let mut aligned: AlignedVec = AlignedVec::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    let archived =
        rkyv::access::<ArchivedPersistRecord, BoxedError>(&aligned).map_err(|error| {
            PersistRecordError {
                reason: error.to_string(),
            }
        })?;
    rkyv::deserialize::<PersistRecord, BoxedError>(archived).map_err(|error| PersistRecordError {
        reason: error.to_string(),
    })
}
