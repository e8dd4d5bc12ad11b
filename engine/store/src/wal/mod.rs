//! The write-ahead log of one shard.
//!
//! One WAL per shard core multiplexes the records of every partition replica on that core. It
//! lives on the shard's executor thread: its objects are `!Send`, and concurrency is many
//! appender futures and one committer future on that one thread, coordinated through
//! `Rc<RefCell<..>>` and wakers, never locks.
//!
//! # Files
//! `segment_count` segment files of `segment_bytes` each (`wal-0000.seg`, ...), created and
//! zero-filled once when the WAL is created, then reused in ring order for ever: recycling a
//! segment rewrites its header with a new generation, it never unlinks or creates a file. The
//! byte layout is in engine/store/FORMAT.md.
//!
//! # Group commit
//! [`Wal::append`] queues a record, assigns its LSN and returns once the record is durable.
//! [`Wal::run_committer`] takes the queued records as one batch (bounded by
//! `batch_bytes_max` and `batch_records_max`), writes the batch with one block-aligned write,
//! makes it durable with one fdatasync ([`shoal_io::storage::sync_or_stop`]: a failed sync stops
//! the process, it is never retried) and then resolves every append of the batch. Appends that
//! arrive while a batch is being written form the next batch. The queue is bounded
//! (`pending_records_max`, `pending_bytes_max`): a full queue makes appenders wait.
//!
//! # The tail block: each block is written once per segment generation
//! A batch starts on a block boundary and its last block is padded with zeros. The next batch
//! starts on the next block boundary, so no block that holds a record, acknowledged or not, is
//! ever written again in the same segment generation. A torn write can only damage the batch
//! being written, which nobody was told is durable. The price is space: a batch of one small
//! record takes a whole 4 KiB block. At 5k synced batches per second that is 20 MiB/s of log,
//! which segment recycling returns; with many writers batches fill their blocks.
//!
//! # Recovery
//! [`Wal::open`] reads the segments and decides what they hold with the decision table in
//! [`recovery`]: where the log ends after a crash (torn or zero tail, stale records of a
//! recycled segment) and when damage is corruption to report instead (damage followed by later
//! durable records, LSN gaps, lost segment headers). It then zeroes the torn tail (see
//! [`recovery`], invariant 1) and syncs the active segment, so records handed to the caller are
//! durable even if they were only in the device cache when the process stopped.
//!
//! # Recycling
//! Each partition reports [`Wal::checkpointed`] once its B-tree is durable up to an LSN. A
//! segment other than the active one may be reused once, for every partition with records in
//! it, the partition's checkpoint is at or past its last record there. Segments are reused in
//! ring order when the active one is full; if the next one is still needed, the committer
//! waits for a checkpoint (and the bounded queue pushes back on appenders). A checkpoint needs
//! WAL room of its own (the layer above writes an intent first), so partitions release their
//! records while room is left: [`Wal::pins_segments_ahead`] tells one that its records sit in
//! the segments reused soon.
//!
//! # Invariants
//! 1. LSNs are assigned in queue order, without gaps, starting at 1; the committer writes
//!    records in LSN order.
//! 2. A batch lies in one segment, starts on a block boundary and is written once.
//! 3. An append resolves with its LSN only after a sync that covers its batch completed.
//! 4. Only the committer writes the log after recovery; at most one committer runs.
//! 5. The segments of the log carry consecutive generations in ring order.

pub mod error;
pub mod format;
pub mod inspect;
pub mod recovery;

mod completion;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::poll_fn;
use std::num::NonZeroU8;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use shoal_io::storage::{sync_or_stop, write_verified};
use shoal_io::{OpenMode, Storage, StorageDirectory, StorageError, StorageOperation};

use completion::Completion;
pub use error::{CorruptionKind, LogLocation, WalCorruption, WalError, WriteFailure};
use format::{
    BLOCK_BYTES, RECORD_FLAG_BATCH_END, RECORD_HEADER_BYTES, RecordHeader, RecordSlot,
    SEGMENT_DATA_OFFSET, SEGMENT_HEADER_BYTES, SegmentHeader, SegmentHeaderSlot, align_up,
    record_encoded_bytes,
};
use recovery::{
    LogSegments, SegmentScan, SegmentVerdict, decide, find_newer_generation_record,
    plan_log_segments, scan_segment,
};

/// A log sequence number: the position of a record in the shard's log. The first record has
/// LSN 1; 0 means "before any record".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// The partition replica a record belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId(pub u64);

/// What a record holds, defined by the layer above (replication). Zero is reserved so that a
/// zeroed header can never look like a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKind(NonZeroU8);

impl RecordKind {
    pub const fn new(value: u8) -> Option<Self> {
        match NonZeroU8::new(value) {
            Some(value) => Some(Self(value)),
            None => None,
        }
    }

    pub const fn get(self) -> u8 {
        self.0.get()
    }
}

/// Fewer than two segments could not recycle: the active segment is never reused.
pub const SEGMENT_COUNT_MIN: u32 = 2;
/// Bounds the per-segment bookkeeping and recovery's header survey.
pub const SEGMENT_COUNT_MAX: u32 = 4096;
/// A header block and at least one data block.
pub const SEGMENT_BYTES_MIN: u64 = 2 * BLOCK_BYTES as u64;
/// Recovery reads a whole segment into memory; this bounds that memory.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;
/// The body length field is 32 bits; 16 MiB leaves room over the 4 MB item limit.
pub const RECORD_BODY_BYTES_LIMIT: usize = 16 << 20;
/// The largest batch any configuration may ask for (one write, one buffer).
pub const BATCH_BYTES_LIMIT: usize = 64 << 20;
pub const BATCH_RECORDS_LIMIT: usize = 1 << 16;
pub const PENDING_RECORDS_LIMIT: usize = 1 << 20;
/// Size of each zero-filling write when segments are created or tails scrubbed.
const ZERO_FILL_CHUNK_BYTES: usize = 1 << 20;
/// Size of each read when recovery loads a segment.
const RECOVERY_READ_CHUNK_BYTES: usize = 1 << 20;

const _: () = assert!(SEGMENT_BYTES_MAX.is_multiple_of(BLOCK_BYTES as u64));
const _: () = assert!(ZERO_FILL_CHUNK_BYTES.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(RECOVERY_READ_CHUNK_BYTES.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(record_encoded_bytes(RECORD_BODY_BYTES_LIMIT) <= BATCH_BYTES_LIMIT);
const _: () = assert!(RECORD_BODY_BYTES_LIMIT <= u32::MAX as usize);

/// The default item limit is 400 KB and may be raised to 4 MB; a record carries one item plus
/// its key and replication framing.
pub const DEFAULT_RECORD_BODY_BYTES_MAX: usize = (4 << 20) + (64 << 10);
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
pub const DEFAULT_SEGMENT_COUNT: u32 = 16;
pub const DEFAULT_BATCH_BYTES_MAX: usize = 8 << 20;
pub const DEFAULT_BATCH_RECORDS_MAX: usize = 4096;
pub const DEFAULT_PENDING_RECORDS_MAX: usize = 16384;
pub const DEFAULT_PENDING_BYTES_MAX: usize = 32 << 20;

const _: () =
    assert!(record_encoded_bytes(DEFAULT_RECORD_BODY_BYTES_MAX) <= DEFAULT_BATCH_BYTES_MAX);
const _: () =
    assert!(DEFAULT_BATCH_BYTES_MAX as u64 <= DEFAULT_SEGMENT_BYTES - SEGMENT_DATA_OFFSET);
const _: () = assert!(DEFAULT_PENDING_BYTES_MAX >= DEFAULT_BATCH_BYTES_MAX);

/// Sizes and limits of one WAL. [`WalConfig::validate`] checks how they relate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    pub segment_bytes: u64,
    pub segment_count: u32,
    pub batch_bytes_max: usize,
    pub batch_records_max: usize,
    pub pending_records_max: usize,
    pub pending_bytes_max: usize,
    pub record_body_bytes_max: usize,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_count: DEFAULT_SEGMENT_COUNT,
            batch_bytes_max: DEFAULT_BATCH_BYTES_MAX,
            batch_records_max: DEFAULT_BATCH_RECORDS_MAX,
            pending_records_max: DEFAULT_PENDING_RECORDS_MAX,
            pending_bytes_max: DEFAULT_PENDING_BYTES_MAX,
            record_body_bytes_max: DEFAULT_RECORD_BODY_BYTES_MAX,
        }
    }
}

impl WalConfig {
    pub fn validate(&self) -> Result<(), WalError> {
        let checks: [(bool, &'static str); 9] = [
            (
                (SEGMENT_COUNT_MIN..=SEGMENT_COUNT_MAX).contains(&self.segment_count),
                "segment_count out of range",
            ),
            (
                (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes),
                "segment_bytes out of range",
            ),
            (
                self.segment_bytes.is_multiple_of(BLOCK_BYTES as u64),
                "segment_bytes must be a multiple of the block size",
            ),
            (
                self.record_body_bytes_max <= RECORD_BODY_BYTES_LIMIT,
                "record_body_bytes_max above RECORD_BODY_BYTES_LIMIT",
            ),
            (
                self.batch_bytes_max <= BATCH_BYTES_LIMIT,
                "batch_bytes_max above BATCH_BYTES_LIMIT",
            ),
            (
                record_encoded_bytes(self.record_body_bytes_max) <= self.batch_bytes_max,
                "the largest record must fit in a batch",
            ),
            (
                align_up(self.batch_bytes_max as u64, BLOCK_BYTES as u64)
                    <= self.segment_bytes - SEGMENT_DATA_OFFSET,
                "the largest batch must fit in an empty segment",
            ),
            (
                (1..=BATCH_RECORDS_LIMIT).contains(&self.batch_records_max),
                "batch_records_max out of range",
            ),
            (
                (1..=PENDING_RECORDS_LIMIT).contains(&self.pending_records_max)
                    && self.pending_bytes_max >= record_encoded_bytes(self.record_body_bytes_max),
                "the pending queue must hold at least one largest record",
            ),
        ];
        match checks.iter().find(|(holds, _)| !holds) {
            Some((_, reason)) => Err(WalError::ConfigInvalid(reason)),
            None => Ok(()),
        }
    }
}

/// The file name of segment `index`.
pub fn segment_file_name(index: u32) -> String {
    format!("wal-{index:04}.seg")
}

/// The segment index a file name names, if it is a segment file name.
pub fn parse_segment_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".seg")?;
    if digits.len() == 4 && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// A record handed to the recovery visitor. The body borrows recovery's segment image.
#[derive(Debug, Clone, Copy)]
pub struct RecoveredRecord<'image> {
    pub lsn: Lsn,
    pub partition: PartitionId,
    pub kind: RecordKind,
    pub body: &'image [u8],
}

/// What [`Wal::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// No segment was initialised: a new WAL was set up.
    pub fresh: bool,
    pub records_recovered: u64,
    /// The LSN of the first recovered record (the oldest segment's first LSN).
    pub lsn_first: Lsn,
    /// The LSN the next append gets.
    pub lsn_next: Lsn,
    pub segments_in_log: u32,
    /// The log ended in damage (case R2), not cleanly (case R1).
    pub torn_tail: bool,
    /// Bytes zeroed after the end of the log (the tail scrub).
    pub scrubbed_bytes: u64,
}

/// Counters since open.
/// What the committer reports after each durable batch ([`Wal::set_observer`]).
#[derive(Debug, Clone, Copy)]
pub struct BatchObservation {
    pub records: usize,
    /// Bytes written, padded to blocks.
    pub bytes: usize,
    pub write: std::time::Duration,
    pub sync: std::time::Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalStats {
    pub records_appended: u64,
    pub batches_written: u64,
    pub batch_bytes_written: u64,
    pub syncs: u64,
    pub segments_initialised: u64,
    pub segments_recycled: u64,
    /// Times the committer found the next segment still needed and waited for a checkpoint.
    pub waits_for_checkpoint: u64,
    pub active_segment: u32,
    pub lsn_next: Lsn,
    /// The highest LSN known durable.
    pub lsn_durable: Lsn,
    pub pending_records: usize,
}

#[derive(Debug)]
struct PendingRecord {
    lsn: Lsn,
    partition: PartitionId,
    kind: RecordKind,
    body: Vec<u8>,
    completion: Completion,
}

/// What the WAL knows about one segment file.
#[derive(Debug, Clone, Default)]
struct SegmentUse {
    /// Part of the live log (its records may still be needed).
    in_log: bool,
    generation: u64,
    /// For each partition with records in this segment, its highest LSN here.
    partition_lsn_max: BTreeMap<PartitionId, Lsn>,
}

#[derive(Debug)]
struct WalState {
    segments: Vec<SegmentUse>,
    active_segment: usize,
    /// Where the next batch goes in the active segment (block aligned, invariant 2).
    write_offset: u64,
    generation_next: u64,
    lsn_next: Lsn,
    lsn_durable: Lsn,
    pending: VecDeque<PendingRecord>,
    pending_bytes: usize,
    committer_waker: Option<Waker>,
    space_wakers: Vec<Waker>,
    checkpoints: BTreeMap<PartitionId, Lsn>,
    /// Per partition forgotten ([`Wal::forget_partition`]), the next LSN at that moment: its
    /// records below it never keep a segment from recycling, including those still queued
    /// then, which the committer writes afterwards. Records from that LSN on belong to a
    /// replica created again and count as any partition's. One entry per partition forgotten
    /// since the WAL was opened.
    forgotten: BTreeMap<PartitionId, Lsn>,
    shutting_down: bool,
    committer_running: bool,
    failure: Option<WriteFailure>,
    stats: WalStats,
}

impl WalState {
    fn is_recyclable(&self, index: usize) -> bool {
        let segment = &self.segments[index];
        if !segment.in_log {
            return true;
        }
        index != self.active_segment
            && segment
                .partition_lsn_max
                .iter()
                .all(|(partition, lsn_max)| !self.needs(*partition, *lsn_max))
    }

    /// Whether recovery still needs a record of `partition` at `lsn`: it is past the
    /// partition's checkpoint (or it has none) and was not forgotten.
    fn needs(&self, partition: PartitionId, lsn: Lsn) -> bool {
        let forgotten = self
            .forgotten
            .get(&partition)
            .is_some_and(|below| lsn < *below);
        let checkpointed = self
            .checkpoints
            .get(&partition)
            .is_some_and(|checkpoint| *checkpoint >= lsn);
        !forgotten && !checkpointed
    }

    fn wake_committer(&mut self) {
        if let Some(waker) = self.committer_waker.take() {
            waker.wake();
        }
    }

    fn wake_appenders(&mut self) {
        for waker in self.space_wakers.drain(..) {
            waker.wake();
        }
    }
}

struct Shared<F> {
    config: WalConfig,
    files: Vec<F>,
    state: RefCell<WalState>,
    observer: RefCell<Option<BatchObserver>>,
}

type BatchObserver = Box<dyn Fn(BatchObservation)>;

impl<F: std::fmt::Debug> std::fmt::Debug for Shared<F> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Shared")
            .field("config", &self.config)
            .field("files", &self.files)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The durability of one queued record ([`Wal::enqueue`]): resolves to its LSN once the record
/// is durable, or to the error that failed its batch.
pub struct Durable(Completion);

impl std::future::Future for Durable {
    type Output = Result<Lsn, WalError>;

    fn poll(self: std::pin::Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        std::pin::Pin::new(&mut self.get_mut().0).poll(context)
    }
}

/// A handle to the shard's WAL. Clones share it; all of them live on the shard's thread.
#[derive(Debug)]
pub struct Wal<F: Storage> {
    shared: Rc<Shared<F>>,
}

impl<F: Storage> Clone for Wal<F> {
    fn clone(&self) -> Self {
        Self {
            shared: Rc::clone(&self.shared),
        }
    }
}

/// What the committer does next.
enum CommitStep {
    Stop,
    InitialiseSegment { index: usize, header: SegmentHeader },
    WriteBatch(Batch),
}

struct Batch {
    segment_index: usize,
    offset: u64,
    generation: u64,
    records: Vec<PendingRecord>,
    encoded_bytes: usize,
}

async fn write_zeros<F: Storage>(file: &F, offset: u64, len: u64) -> Result<(), WalError> {
    let mut written = 0;
    while written < len {
        let chunk = (len - written).min(ZERO_FILL_CHUNK_BYTES as u64) as usize;
        let buffer = file.allocate_buffer(chunk);
        write_verified(file, buffer, offset + written).await?;
        written += chunk as u64;
    }
    Ok(())
}

/// Case R2 (a torn tail) is decided on one read, and acting on it scrubs the tail. Reads the
/// segment from the log end `S` again and requires the same bytes: a read that flipped a bit in
/// the last durable batch would otherwise pass for a torn write, and the scrub would then
/// destroy a batch that was acknowledged. Bytes before `S` need no second read: every record
/// there passed its checksums.
async fn confirm_torn_tail<F: Storage>(
    file: &F,
    image: &[u8],
    scan: &SegmentScan,
) -> Result<(), WalError> {
    let segment_bytes = image.len() as u64;
    let mut offset = scan.log_end_offset;
    while offset < segment_bytes {
        let chunk = (segment_bytes - offset).min(RECOVERY_READ_CHUNK_BYTES as u64) as usize;
        let data = file.read_at(offset, chunk).await?;
        let start = offset as usize;
        // A short file reads as if padded with zeros (`read_segment`).
        let mut again = vec![0; chunk];
        again[..data.len()].copy_from_slice(&data);
        if let Some(position) = again
            .iter()
            .zip(&image[start..start + chunk])
            .position(|(again, first)| again != first)
        {
            let differs_at = offset + position as u64;
            return Err(WalCorruption {
                location: LogLocation {
                    segment_index: scan.segment_index,
                    offset: scan.log_end_offset,
                    generation: scan.generation,
                    lsn_expected: scan.lsn_next,
                },
                kind: CorruptionKind::TailReadsDisagree { differs_at },
                observed: format!("{:?}", scan.stop),
            }
            .into());
        }
        offset += chunk as u64;
    }
    Ok(())
}

/// Reads a whole segment; bytes past the end of a short file read as zero.
async fn read_segment<F: Storage>(file: &F, segment_bytes: u64) -> Result<Vec<u8>, WalError> {
    let mut image = vec![0; segment_bytes as usize];
    let mut offset = 0;
    while offset < segment_bytes {
        let chunk = (segment_bytes - offset).min(RECOVERY_READ_CHUNK_BYTES as u64) as usize;
        let data = file.read_at(offset, chunk).await?;
        let start = offset as usize;
        image[start..start + data.len()].copy_from_slice(&data);
        if data.len() < chunk {
            break;
        }
        offset += chunk as u64;
    }
    Ok(image)
}

impl<F: Storage> Wal<F> {
    /// Opens (creating if needed) the WAL in `directory`, recovers it and hands every record
    /// of the log, in LSN order, to `visit`. On an error, whatever was visited must be
    /// discarded. The committer is not running yet: spawn [`Wal::run_committer`].
    pub async fn open<D, Visit>(
        directory: &D,
        config: WalConfig,
        mut visit: Visit,
    ) -> Result<(Self, RecoveryReport), WalError>
    where
        D: StorageDirectory<File = F>,
        Visit: FnMut(RecoveredRecord<'_>),
    {
        config.validate()?;
        let names = directory.list().await?;
        if names
            .iter()
            .filter_map(|name| parse_segment_file_name(name))
            .any(|index| index >= config.segment_count)
        {
            return Err(WalError::ConfigInvalid(
                "a segment file beyond segment_count exists; shrinking a WAL is not supported",
            ));
        }
        let mut files = Vec::with_capacity(config.segment_count as usize);
        let mut created_any = false;
        for index in 0..config.segment_count {
            let name = segment_file_name(index);
            let file = if names.contains(&name) {
                directory.open(&name, OpenMode::Existing).await?
            } else {
                created_any = true;
                directory.open(&name, OpenMode::CreateNew).await?
            };
            // Zero-fill rather than only reserve, so that later direct writes overwrite
            // written blocks and fdatasync has no extent metadata to flush.
            let len = align_up(file.len().await?, BLOCK_BYTES as u64);
            if len < config.segment_bytes {
                write_zeros(&file, len, config.segment_bytes - len).await?;
                sync_or_stop(&file).await;
            }
            files.push(file);
        }
        if created_any && let Err(error) = directory.sync().await {
            shoal_io::fatal!("directory sync failed while creating WAL segments: {error}");
        }

        let mut slots = Vec::with_capacity(files.len());
        for file in &files {
            let block = file.read_at(0, BLOCK_BYTES).await?;
            let mut header_bytes = [0; SEGMENT_HEADER_BYTES];
            let available = block.len().min(SEGMENT_HEADER_BYTES);
            header_bytes[..available].copy_from_slice(&block[..available]);
            slots.push(SegmentHeader::decode(&header_bytes));
        }
        let mut segments = vec![SegmentUse::default(); files.len()];
        for (segment, slot) in segments.iter_mut().zip(&slots) {
            if let SegmentHeaderSlot::Valid(header) = slot {
                segment.generation = header.generation;
            }
        }
        let mut report = RecoveryReport::default();
        let (active_segment, write_offset, generation_next, lsn_next) =
            match plan_log_segments(&slots, config.segment_bytes)? {
                LogSegments::NoValidHeader => {
                    // H1 or H2.
                    for (index, file) in files.iter().enumerate() {
                        let image = read_segment(file, config.segment_bytes).await?;
                        if let Some(offset) = image.iter().position(|byte| *byte != 0) {
                            return Err(WalCorruption {
                                location: LogLocation {
                                    segment_index: index as u32,
                                    offset: offset as u64,
                                    generation: 0,
                                    lsn_expected: Lsn(0),
                                },
                                kind: CorruptionKind::NoValidSegmentHeader,
                                observed: format!("{:?}", slots[index]),
                            }
                            .into());
                        }
                    }
                    let header = SegmentHeader {
                        segment_index: 0,
                        generation: 1,
                        first_lsn: Lsn(1),
                        segment_bytes: config.segment_bytes,
                        log_first_generation: 1,
                    };
                    write_segment_header(&files[0], &header).await?;
                    sync_or_stop(&files[0]).await;
                    segments[0] = SegmentUse {
                        in_log: true,
                        generation: 1,
                        partition_lsn_max: BTreeMap::new(),
                    };
                    report.fresh = true;
                    report.lsn_first = Lsn(1);
                    report.segments_in_log = 1;
                    (0, SEGMENT_DATA_OFFSET, 2, Lsn(1))
                }
                LogSegments::Chain(chain) => {
                    // H8: the segment the log would move to next must not hold newer records.
                    let newest = chain[chain.len() - 1];
                    let next = (newest.segment_index as usize + 1) % files.len();
                    if chain
                        .iter()
                        .all(|header| header.segment_index as usize != next)
                    {
                        let image = read_segment(&files[next], config.segment_bytes).await?;
                        if let Some((record_offset, record_generation)) =
                            find_newer_generation_record(&image, newest.generation)
                        {
                            return Err(WalCorruption {
                                location: LogLocation {
                                    segment_index: next as u32,
                                    offset: 0,
                                    generation: record_generation,
                                    lsn_expected: Lsn(0),
                                },
                                kind: CorruptionKind::NewerSegmentHeaderLost {
                                    record_offset,
                                    record_generation,
                                },
                                observed: format!("{:?}", slots[next]),
                            }
                            .into());
                        }
                    }
                    report.lsn_first = chain[0].first_lsn;
                    report.segments_in_log = chain.len() as u32;
                    let mut end = None;
                    for (position, header) in chain.iter().enumerate() {
                        let index = header.segment_index as usize;
                        let image = read_segment(&files[index], config.segment_bytes).await?;
                        let scan = scan_segment(&image, header)?;
                        let newer = chain
                            .get(position + 1)
                            .map(|newer| (newer.segment_index, newer.first_lsn));
                        let verdict = decide(&scan, newer)?;
                        let segment = &mut segments[index];
                        segment.in_log = true;
                        for record in &scan.records {
                            let lsn_max = segment
                                .partition_lsn_max
                                .entry(record.header.partition)
                                .or_default();
                            *lsn_max = (*lsn_max).max(record.header.lsn);
                            visit(RecoveredRecord {
                                lsn: record.header.lsn,
                                partition: record.header.partition,
                                kind: record.header.kind,
                                body: &image[record.body_range()],
                            });
                        }
                        report.records_recovered += scan.records.len() as u64;
                        if let SegmentVerdict::EndOfLog { torn } = verdict {
                            assert_eq!(
                                position + 1,
                                chain.len(),
                                "the log ends only in its newest segment"
                            );
                            if torn {
                                confirm_torn_tail(&files[index], &image, &scan).await?;
                            }
                            report.torn_tail = torn;
                            let scrub_bytes = scan.scrub_end_offset - scan.log_end_offset;
                            if scrub_bytes > 0 {
                                write_zeros(&files[index], scan.log_end_offset, scrub_bytes)
                                    .await?;
                                report.scrubbed_bytes = scrub_bytes;
                            }
                            end = Some((index, scan.log_end_offset, scan.lsn_next));
                        }
                    }
                    let Some((index, log_end_offset, lsn_next)) = end else {
                        unreachable!("decide returns EndOfLog for the newest segment")
                    };
                    // Make what recovery read durable: after a process crash (not a power
                    // loss) the last batch may still sit in the device's volatile cache.
                    sync_or_stop(&files[index]).await;
                    let generation_newest = chain[chain.len() - 1].generation;
                    (index, log_end_offset, generation_newest + 1, lsn_next)
                }
            };
        report.lsn_next = lsn_next;
        let state = WalState {
            segments,
            active_segment,
            write_offset,
            generation_next,
            lsn_next,
            lsn_durable: Lsn(lsn_next.0 - 1),
            pending: VecDeque::new(),
            pending_bytes: 0,
            committer_waker: None,
            space_wakers: Vec::new(),
            checkpoints: BTreeMap::new(),
            forgotten: BTreeMap::new(),
            shutting_down: false,
            committer_running: false,
            failure: None,
            stats: WalStats::default(),
        };
        let wal = Self {
            shared: Rc::new(Shared {
                config,
                files,
                state: RefCell::new(state),
                observer: RefCell::new(None),
            }),
        };
        Ok((wal, report))
    }

    pub fn config(&self) -> &WalConfig {
        &self.shared.config
    }

    /// Appends a record and returns its LSN once it is durable (invariant 3). Waits while the
    /// pending queue is full. Dropping the future after the record was queued does not withdraw
    /// the record: it is written with its batch all the same.
    pub async fn append(
        &self,
        partition: PartitionId,
        kind: RecordKind,
        body: &[u8],
    ) -> Result<Lsn, WalError> {
        self.enqueue(partition, kind, body).await?.await
    }

    /// The first half of [`Wal::append`]: waits for room in the pending queue and queues the
    /// record, then returns the future of its durability. Records are written in the order in
    /// which their `enqueue` calls returned, so a caller that must keep its records in order
    /// (a replica whose later write of a slot replaces an earlier one) enqueues them one after
    /// another and awaits their durability concurrently, keeping group commit.
    pub async fn enqueue(
        &self,
        partition: PartitionId,
        kind: RecordKind,
        body: &[u8],
    ) -> Result<Durable, WalError> {
        let config = &self.shared.config;
        if body.len() > config.record_body_bytes_max {
            return Err(WalError::RecordTooLarge {
                body_bytes: body.len(),
                body_bytes_max: config.record_body_bytes_max,
            });
        }
        let encoded_bytes = record_encoded_bytes(body.len());
        let mut body = body.to_vec();
        let completion = poll_fn(|context: &mut Context<'_>| {
            let mut state = self.shared.state.borrow_mut();
            if let Some(failure) = &state.failure {
                return Poll::Ready(Err(WalError::WriteFailed(failure.clone())));
            }
            if state.shutting_down {
                return Poll::Ready(Err(WalError::ShutDown));
            }
            let has_room = state.pending.is_empty()
                || (state.pending.len() < config.pending_records_max
                    && state.pending_bytes + encoded_bytes <= config.pending_bytes_max);
            if !has_room {
                state.space_wakers.push(context.waker().clone());
                return Poll::Pending;
            }
            let lsn = state.lsn_next;
            state.lsn_next = Lsn(lsn.0 + 1);
            let completion = Completion::new();
            state.pending.push_back(PendingRecord {
                lsn,
                partition,
                kind,
                body: std::mem::take(&mut body),
                completion: completion.clone(),
            });
            state.pending_bytes += encoded_bytes;
            state.stats.records_appended += 1;
            state.wake_committer();
            Poll::Ready(Ok(completion))
        })
        .await?;
        Ok(Durable(completion))
    }

    /// Partition `partition` is durable in its B-tree up to `lsn`: its records up to there are
    /// no longer needed for recovery. Checkpoints only move forward.
    pub fn checkpointed(&self, partition: PartitionId, lsn: Lsn) {
        let mut state = self.shared.state.borrow_mut();
        let checkpoint = state.checkpoints.entry(partition).or_default();
        *checkpoint = (*checkpoint).max(lsn);
        state.wake_committer();
    }

    /// The partition left this shard (moved or dropped): none of its records are needed, those
    /// still queued included. A replica of it created here again later appends records from a
    /// later LSN, which count as usual.
    pub fn forget_partition(&self, partition: PartitionId) {
        let mut state = self.shared.state.borrow_mut();
        state.checkpoints.remove(&partition);
        let next = state.lsn_next;
        state.forgotten.insert(partition, next);
        for segment in &mut state.segments {
            segment.partition_lsn_max.remove(&partition);
        }
        state.wake_committer();
    }

    /// Stops the committer once the queued records are written; later appends fail.
    pub fn shutdown(&self) {
        let mut state = self.shared.state.borrow_mut();
        state.shutting_down = true;
        state.wake_committer();
        state.wake_appenders();
    }

    /// Calls `observer` after every durable batch, for metrics (batch sizes, write and
    /// fdatasync latency). Wall-clock durations are measured here only to be reported.
    pub fn set_observer(&self, observer: impl Fn(BatchObservation) + 'static) {
        *self.shared.observer.borrow_mut() = Some(Box::new(observer));
    }

    /// Whether `partition` has records, past its checkpoint, in the segment the committer
    /// reuses next (the one after the active segment in ring order). Such a partition must
    /// checkpoint soon whatever its own checkpoint schedule says: a partition that writes
    /// rarely would otherwise keep that segment for ever, and once the active segment fills
    /// the whole shard's WAL would wait for a checkpoint that never comes.
    pub fn pins_next_segment(&self, partition: PartitionId) -> bool {
        self.pins_segments_ahead(partition, 1)
    }

    /// Whether `partition` has records, past its checkpoint, in any of the `ahead` segments
    /// the committer reuses next (ring order after the active one). A partition that acts on
    /// this while half the ring is still free has half a ring of writes to release them in,
    /// and its own release needs WAL room (a checkpoint intent, records written forward), which
    /// a full ring no longer has.
    pub fn pins_segments_ahead(&self, partition: PartitionId, ahead: usize) -> bool {
        let state = self.shared.state.borrow();
        let count = state.segments.len();
        (1..=ahead.min(count.saturating_sub(1))).any(|distance| {
            let segment = &state.segments[(state.active_segment + distance) % count];
            segment.in_log
                && segment
                    .partition_lsn_max
                    .get(&partition)
                    .is_some_and(|lsn_max| state.needs(partition, *lsn_max))
        })
    }

    pub fn stats(&self) -> WalStats {
        let state = self.shared.state.borrow();
        WalStats {
            active_segment: state.active_segment as u32,
            lsn_next: state.lsn_next,
            lsn_durable: state.lsn_durable,
            pending_records: state.pending.len(),
            ..state.stats.clone()
        }
    }

    /// Closes the segment files. Every other handle must be gone and the committer stopped.
    pub async fn close(self) -> Result<(), WalError> {
        let shared = Rc::try_unwrap(self.shared).map_err(|_| WalError::StillInUse)?;
        if shared.state.borrow().committer_running {
            return Err(WalError::StillInUse);
        }
        for file in shared.files {
            file.close().await?;
        }
        Ok(())
    }

    /// The committer: writes batches until [`Wal::shutdown`] (after draining the queue) or
    /// until a write fails. Exactly one runs per WAL (invariant 4).
    pub async fn run_committer(&self) -> Result<(), WalError> {
        {
            let mut state = self.shared.state.borrow_mut();
            if state.committer_running {
                return Err(WalError::StillInUse);
            }
            state.committer_running = true;
        }
        let outcome = self.commit_loop().await;
        self.shared.state.borrow_mut().committer_running = false;
        outcome
    }

    async fn commit_loop(&self) -> Result<(), WalError> {
        loop {
            match poll_fn(|context: &mut Context<'_>| self.poll_commit_step(context)).await {
                CommitStep::Stop => {
                    let state = self.shared.state.borrow();
                    return match &state.failure {
                        Some(failure) => Err(WalError::WriteFailed(failure.clone())),
                        None => Ok(()),
                    };
                }
                CommitStep::InitialiseSegment { index, header } => {
                    let file = &self.shared.files[index];
                    if let Err(error) = write_segment_header(file, &header).await {
                        self.fail(index, 0, &error, Vec::new());
                        continue;
                    }
                    sync_or_stop(file).await;
                    let mut state = self.shared.state.borrow_mut();
                    let recycled = state.segments[index].in_log;
                    state.segments[index] = SegmentUse {
                        in_log: true,
                        generation: header.generation,
                        partition_lsn_max: BTreeMap::new(),
                    };
                    state.active_segment = index;
                    state.write_offset = SEGMENT_DATA_OFFSET;
                    state.generation_next = header.generation + 1;
                    state.stats.segments_initialised += 1;
                    state.stats.segments_recycled += u64::from(recycled);
                    state.stats.syncs += 1;
                }
                CommitStep::WriteBatch(batch) => self.write_batch(batch).await,
            }
        }
    }

    fn poll_commit_step(&self, context: &mut Context<'_>) -> Poll<CommitStep> {
        let config = &self.shared.config;
        let mut state = self.shared.state.borrow_mut();
        if state.failure.is_some() {
            return Poll::Ready(CommitStep::Stop);
        }
        let Some(first) = state.pending.front() else {
            if state.shutting_down {
                return Poll::Ready(CommitStep::Stop);
            }
            state.committer_waker = Some(context.waker().clone());
            return Poll::Pending;
        };
        let first_lsn = first.lsn;
        let room = config.segment_bytes - state.write_offset;
        if record_encoded_bytes(first.body.len()) as u64 > room {
            let count = state.segments.len();
            let next = (state.active_segment + 1) % count;
            if !state.is_recyclable(next) {
                if state.shutting_down {
                    // Nobody will checkpoint any more: fail what is queued instead of waiting.
                    let records: Vec<PendingRecord> = state.pending.drain(..).collect();
                    state.pending_bytes = 0;
                    drop(state);
                    for record in records {
                        record.completion.complete(Err(WalError::ShutDown));
                    }
                    return Poll::Ready(CommitStep::Stop);
                }
                state.stats.waits_for_checkpoint += 1;
                state.committer_waker = Some(context.waker().clone());
                return Poll::Pending;
            }
            let generation = state.generation_next;
            // The oldest generation still needed once `next` is reused (invariant 5, H6).
            let log_first_generation = (0..count)
                .filter(|index| *index != next && state.segments[*index].in_log)
                .filter(|index| !state.is_recyclable(*index))
                .map(|index| state.segments[index].generation)
                .min()
                .unwrap_or(generation);
            let header = SegmentHeader {
                segment_index: next as u32,
                generation,
                first_lsn,
                segment_bytes: config.segment_bytes,
                log_first_generation,
            };
            return Poll::Ready(CommitStep::InitialiseSegment {
                index: next,
                header,
            });
        }
        let mut encoded_bytes = 0;
        let mut record_count = 0;
        for record in &state.pending {
            let bytes = record_encoded_bytes(record.body.len());
            let fits = encoded_bytes + bytes <= config.batch_bytes_max
                && (encoded_bytes + bytes) as u64 <= room
                && record_count < config.batch_records_max;
            if !fits {
                break;
            }
            encoded_bytes += bytes;
            record_count += 1;
        }
        assert!(
            record_count > 0,
            "the first queued record fits (config validation)"
        );
        let records: Vec<PendingRecord> = state.pending.drain(..record_count).collect();
        state.pending_bytes -= encoded_bytes;
        state.wake_appenders();
        let segment_index = state.active_segment;
        Poll::Ready(CommitStep::WriteBatch(Batch {
            segment_index,
            offset: state.write_offset,
            generation: state.segments[segment_index].generation,
            records,
            encoded_bytes,
        }))
    }

    async fn write_batch(&self, batch: Batch) {
        let file = &self.shared.files[batch.segment_index];
        let padded_bytes = align_up(batch.encoded_bytes as u64, BLOCK_BYTES as u64) as usize;
        let mut buffer = file.allocate_buffer(padded_bytes);
        encode_batch(&mut buffer, &batch.records, batch.generation);
        verify_encoded_batch(&buffer, &batch.records, batch.generation);
        let started = std::time::Instant::now();
        // Read back before anything is acknowledged: a batch the device silently lost, tore,
        // misdirected or flipped would otherwise be acknowledged, and if it is the last one
        // before a crash, recovery takes its loss for a torn tail (FORMAT.md, known limit).
        if let Err(error) = write_verified(file, buffer, batch.offset).await {
            self.fail(batch.segment_index, batch.offset, &error, batch.records);
            return;
        }
        let written = std::time::Instant::now();
        sync_or_stop(file).await;
        let observation = BatchObservation {
            records: batch.records.len(),
            bytes: padded_bytes,
            write: written.duration_since(started),
            sync: written.elapsed(),
        };
        if let Some(observer) = self.shared.observer.borrow().as_ref() {
            observer(observation);
        }
        {
            let mut state = self.shared.state.borrow_mut();
            assert_eq!(
                state.write_offset, batch.offset,
                "invariant 2: only the committer moves the write offset"
            );
            state.write_offset += padded_bytes as u64;
            let segment = &mut state.segments[batch.segment_index];
            for record in &batch.records {
                let lsn_max = segment
                    .partition_lsn_max
                    .entry(record.partition)
                    .or_default();
                *lsn_max = (*lsn_max).max(record.lsn);
            }
            assert_eq!(
                state.lsn_durable.0 + 1,
                batch.records[0].lsn.0,
                "invariant 1: batches are durable in LSN order"
            );
            state.lsn_durable = batch.records[batch.records.len() - 1].lsn;
            state.stats.batches_written += 1;
            state.stats.batch_bytes_written += padded_bytes as u64;
            state.stats.syncs += 1;
        }
        for record in batch.records {
            record.completion.complete(Ok(record.lsn));
        }
    }

    /// A write failed: nothing after it can be trusted to be where the log says, so the WAL
    /// refuses further work and fails every waiting append.
    fn fail(
        &self,
        segment_index: usize,
        offset: u64,
        error: &StorageError,
        batch: Vec<PendingRecord>,
    ) {
        let failure = WriteFailure {
            segment_index: segment_index as u32,
            offset,
            message: error.to_string(),
            read_back_mismatch: error.operation == StorageOperation::ReadBack,
        };
        tracing::error!(target: "shoal::wal", segment_index, offset, %error, "WAL write failed");
        let queued: Vec<PendingRecord> = {
            let mut state = self.shared.state.borrow_mut();
            state.failure = Some(failure.clone());
            state.pending_bytes = 0;
            state.wake_appenders();
            state.pending.drain(..).collect()
        };
        for record in batch.into_iter().chain(queued) {
            record
                .completion
                .complete(Err(WalError::WriteFailed(failure.clone())));
        }
    }
}

async fn write_segment_header<F: Storage>(
    file: &F,
    header: &SegmentHeader,
) -> Result<(), StorageError> {
    let mut buffer = file.allocate_buffer(BLOCK_BYTES);
    buffer[..SEGMENT_HEADER_BYTES].copy_from_slice(&header.encode());
    write_verified(file, buffer, 0).await?;
    Ok(())
}

/// The paired assertion of `encode_batch`: the bytes about to be written decode, with the
/// recovery decoder, to exactly the batch's records. A bug in the encoder stops the shard here
/// instead of being found by the next recovery.
fn verify_encoded_batch(buffer: &[u8], records: &[PendingRecord], generation: u64) {
    let mut position = 0;
    for (index, record) in records.iter().enumerate() {
        let RecordSlot::Valid(header) = RecordHeader::decode(&buffer[position..]) else {
            shoal_io::fatal!("encoded WAL record {} does not decode", record.lsn)
        };
        let body = &buffer[position + RECORD_HEADER_BYTES..][..record.body.len()];
        let batch_end = index + 1 == records.len();
        if header.lsn != record.lsn
            || header.generation != generation
            || header.batch_first_lsn != records[0].lsn
            || header.is_batch_end() != batch_end
            || header.body_bytes as usize != record.body.len()
            || crc32c::crc32c(body) != header.body_checksum
        {
            shoal_io::fatal!("encoded WAL record {} decodes to {header:?}", record.lsn);
        }
        position += record_encoded_bytes(record.body.len());
    }
}

/// Lays out a batch: records back to back at record alignment, the last one flagged as the
/// batch end, zeros up to the block boundary (the buffer comes zeroed).
fn encode_batch(buffer: &mut [u8], records: &[PendingRecord], generation: u64) {
    let batch_first_lsn = records[0].lsn;
    let mut position = 0;
    for (index, record) in records.iter().enumerate() {
        let header = RecordHeader {
            kind: record.kind,
            flags: if index + 1 == records.len() {
                RECORD_FLAG_BATCH_END
            } else {
                0
            },
            partition: record.partition,
            lsn: record.lsn,
            batch_first_lsn,
            generation,
            body_bytes: record.body.len() as u32,
            body_checksum: crc32c::crc32c(&record.body),
        };
        buffer[position..position + RECORD_HEADER_BYTES].copy_from_slice(&header.encode());
        let body_start = position + RECORD_HEADER_BYTES;
        buffer[body_start..body_start + record.body.len()].copy_from_slice(&record.body);
        position += record_encoded_bytes(record.body.len());
    }
}
