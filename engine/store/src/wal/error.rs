//! Errors of the WAL layer.

use std::fmt;

use shoal_io::StorageError;

use super::Lsn;

/// Where in the log a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLocation {
    pub segment_index: u32,
    /// Byte offset inside the segment file.
    pub offset: u64,
    /// The generation of the segment incarnation being read (0 when the header was unreadable).
    pub generation: u64,
    /// The LSN the log expected at this location.
    pub lsn_expected: Lsn,
}

impl fmt::Display for LogLocation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "segment {} offset {} (generation {}, expecting LSN {})",
            self.segment_index, self.offset, self.generation, self.lsn_expected.0
        )
    }
}

/// The ways recovery finds a log to be damaged beyond a crash (see the decision table in the
/// module docs of `wal::recovery`). None of these is ever repaired by truncation: the shard
/// refuses to start and the replica must be repaired from its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorruptionKind {
    /// A damaged record, or the end of the records, followed by a record of a later batch in
    /// the same segment: acknowledged records are damaged or missing.
    DamagedBeforeLaterBatch { later_offset: u64, later_lsn: Lsn },
    /// Damage in a segment that a newer segment of the log follows. Newer segments are only
    /// started after every batch of the older one was durable, so this is not a torn tail.
    DamagedBeforeNewerSegment { newer_segment_index: u32 },
    /// The next segment of the log does not start where the previous one ended.
    LsnGap {
        newer_segment_index: u32,
        newer_first_lsn: Lsn,
    },
    /// A segment header between two segments of the log is unreadable.
    SegmentHeaderDamaged,
    /// A segment header names another segment index or another segment size.
    SegmentHeaderMismatch {
        segment_index: u32,
        segment_bytes: u64,
    },
    /// Two segments carry the same generation.
    DuplicateGeneration { other_segment_index: u32 },
    /// No segment has a valid header, yet segments hold data.
    NoValidSegmentHeader,
    /// The segment after the newest one holds records of a newer generation than any valid
    /// header: its own header was lost or damaged after records were acknowledged in it.
    NewerSegmentHeaderLost {
        record_offset: u64,
        record_generation: u64,
    },
    /// The log seemed to end in a torn batch, but reading the tail again returned other bytes
    /// from `differs_at` on: a read fault, not a torn write. Truncating and scrubbing on the
    /// strength of such a read could destroy an acknowledged batch, so recovery stops instead.
    TailReadsDisagree { differs_at: u64 },
}

/// Detected corruption, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalCorruption {
    pub location: LogLocation,
    pub kind: CorruptionKind,
    /// What was seen at the location, in words (for operators).
    pub observed: String,
}

impl fmt::Display for WalCorruption {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "WAL corruption at {}: {:?}; observed: {}",
            self.location, self.kind, self.observed
        )
    }
}

/// A batch write that failed; every append of the batch and every later append reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    pub segment_index: u32,
    pub offset: u64,
    pub message: String,
    /// The write reported success but read back other bytes: the device damaged it, which is
    /// corruption detected, not an I/O error.
    pub read_back_mismatch: bool,
}

#[derive(Debug)]
pub enum WalError {
    Storage(StorageError),
    Corruption(Box<WalCorruption>),
    /// A header with a good checksum written by a format version this code cannot read.
    UnsupportedFormatVersion {
        segment_index: u32,
        offset: u64,
        version: u16,
    },
    ConfigInvalid(&'static str),
    /// An append larger than the configured record limit.
    RecordTooLarge {
        body_bytes: usize,
        body_bytes_max: usize,
    },
    /// A write of the log failed. The WAL accepts no more appends: the data on disk after the
    /// failed write is unknown, and the shard must restart and recover.
    WriteFailed(WriteFailure),
    /// The WAL was shut down before the record was queued.
    ShutDown,
    /// `close` was called while other handles or the committer were still alive.
    StillInUse,
}

impl fmt::Display for WalError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Storage(error) => write!(formatter, "WAL storage error: {error}"),
            WalError::Corruption(corruption) => write!(formatter, "{corruption}"),
            WalError::UnsupportedFormatVersion {
                segment_index,
                offset,
                version,
            } => write!(
                formatter,
                "WAL segment {segment_index} offset {offset}: unsupported format version {version}"
            ),
            WalError::ConfigInvalid(reason) => write!(formatter, "invalid WAL config: {reason}"),
            WalError::RecordTooLarge {
                body_bytes,
                body_bytes_max,
            } => write!(
                formatter,
                "record body of {body_bytes} bytes exceeds the limit of {body_bytes_max}"
            ),
            WalError::WriteFailed(failure) => write!(
                formatter,
                "WAL write at segment {} offset {} failed: {}",
                failure.segment_index, failure.offset, failure.message
            ),
            WalError::ShutDown => write!(formatter, "the WAL is shut down"),
            WalError::StillInUse => write!(formatter, "the WAL is still in use"),
        }
    }
}

impl std::error::Error for WalError {}

impl From<StorageError> for WalError {
    fn from(error: StorageError) -> Self {
        WalError::Storage(error)
    }
}

impl From<WalCorruption> for WalError {
    fn from(corruption: WalCorruption) -> Self {
        WalError::Corruption(Box::new(corruption))
    }
}
