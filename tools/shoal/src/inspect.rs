//! `shoal inspect wal|btree PATH [--dump]`: offline verification of the storage engine's files.
//!
//! Nothing here decodes bytes itself: every check is the store's own code (`shoal_store`),
//! which this module feeds and whose findings it prints. Files are read with plain `std::fs`
//! and never written. Where the store's code needs a `Storage` (whole-log recovery, the
//! B-tree), the bytes are copied into an in-memory `SimulatedDisk` and the real code runs over
//! that copy with `block_on`; no executor, no direct I/O, so the tool also runs on a copy of a
//! node's files on another machine.
//!
//! Exit status: [`EXIT_SOUND`] when the file is sound, [`EXIT_CORRUPT`] when the store's code
//! reports corruption (the message carries its location: segment and offset, page id, LSN),
//! [`EXIT_UNREADABLE`] when the file cannot be read at all.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use futures_lite::future::block_on;
use shoal_io::storage::simulated::{SimulatedDirectory, SimulatedDisk};
use shoal_io::{OpenMode, Storage, StorageDirectory};
use shoal_store::btree::page::{PAGE_BYTES, PageDamage};
use shoal_store::btree::verify::{MetaSummary, TreeReport, verify_tree};
use shoal_store::wal::format::{
    BLOCK_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, SegmentHeader, SegmentHeaderSlot,
    align_up, record_encoded_bytes,
};
use shoal_store::wal::inspect::{LogEnd, SegmentInspection, SegmentReport, inspect_segment};
use shoal_store::wal::{
    Lsn, PartitionId, SEGMENT_BYTES_MIN, SEGMENT_COUNT_MIN, Wal, WalConfig, WalError,
    parse_segment_file_name,
};

/// The file is sound (a torn WAL tail after a crash is sound: recovery ends the log there).
pub const EXIT_SOUND: u8 = 0;
/// The store's checks found corruption; the output says where.
pub const EXIT_CORRUPT: u8 = 1;
/// The file could not be read (missing, permissions, not a file of the expected kind).
pub const EXIT_UNREADABLE: u8 = 2;

/// Key bytes shown in hex per item by `--dump`; longer keys end in "..".
pub const DUMP_KEY_BYTES_SHOWN: usize = 32;

/// Whole-log recovery only replays records; these limits bound appends, which never happen
/// here, and are the smallest that `WalConfig::validate` accepts for any segment size.
const REPLAY_BATCH_BYTES_MAX: usize = BLOCK_BYTES;
const REPLAY_RECORD_BODY_BYTES_MAX: usize = BLOCK_BYTES - RECORD_HEADER_BYTES;
const REPLAY_BATCH_RECORDS_MAX: usize = 1;
const REPLAY_PENDING_RECORDS_MAX: usize = 1;
const _: () = assert!(record_encoded_bytes(REPLAY_RECORD_BODY_BYTES_MAX) <= REPLAY_BATCH_BYTES_MAX);

#[derive(Debug, Args)]
pub struct InspectOptions {
    #[command(subcommand)]
    target: InspectTarget,
}

#[derive(Debug, Subcommand)]
enum InspectTarget {
    /// A WAL segment file (wal-NNNN.seg), verified alone; or a WAL directory, recovered as a
    /// whole log (also finds LSN gaps and lost headers between segments).
    Wal {
        path: PathBuf,
        /// Print one line per record: LSN, partition, kind, body length.
        #[arg(long)]
        dump: bool,
    },
    /// A B-tree file of one partition replica: both meta slots, every page of the current
    /// checkpoint, the free list.
    Btree {
        path: PathBuf,
        /// Print every key (hex, truncated) and its value length, in key order.
        #[arg(long)]
        dump: bool,
    },
}

/// What an inspection concluded, with everything printed on the way.
struct Verdict {
    output: String,
    outcome: Outcome,
}

enum Outcome {
    Sound,
    Corrupt(String),
    Unreadable(String),
}

pub fn run(options: &InspectOptions) -> ExitCode {
    let verdict = match &options.target {
        InspectTarget::Wal { path, dump } if path.is_dir() => inspect_wal_directory(path, *dump),
        InspectTarget::Wal { path, dump } => inspect_wal_segment(path, *dump),
        InspectTarget::Btree { path, dump } => inspect_btree(path, *dump),
    };
    print!("{}", verdict.output);
    match verdict.outcome {
        Outcome::Sound => {
            println!("verdict: sound");
            ExitCode::from(EXIT_SOUND)
        }
        Outcome::Corrupt(message) => {
            println!("verdict: CORRUPT: {message}");
            ExitCode::from(EXIT_CORRUPT)
        }
        Outcome::Unreadable(message) => {
            eprintln!("shoal inspect: {message}");
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, Outcome> {
    std::fs::read(path)
        .map_err(|error| Outcome::Unreadable(format!("cannot read {}: {error}", path.display())))
}

fn wal_outcome(error: &WalError) -> Outcome {
    match error {
        WalError::Storage(_) | WalError::ConfigInvalid(_) => Outcome::Unreadable(error.to_string()),
        _ => Outcome::Corrupt(error.to_string()),
    }
}

fn describe_log_end(end: &LogEnd) -> String {
    match end {
        LogEnd::ZeroTail => "zero tail (nothing written after the last batch)".to_owned(),
        LogEnd::StaleGeneration { generation } => format!(
            "stale record of generation {generation} (recycled segment, old content follows)"
        ),
        LogEnd::SegmentEnd => "end of segment".to_owned(),
        LogEnd::TornBatch { offset, damage } => format!(
            "torn batch: {damage:?} at offset {offset} (a batch never acknowledged; recovery \
             ends the log here)"
        ),
    }
}

fn describe_lsn_range(first: Lsn, next: Lsn) -> String {
    if next.0 > first.0 {
        format!("LSN {}..={}", first.0, next.0 - 1)
    } else {
        "no LSNs".to_owned()
    }
}

fn describe_partitions(partitions: &BTreeSet<PartitionId>) -> String {
    let ids: Vec<String> = partitions.iter().map(|id| id.0.to_string()).collect();
    format!("{} ({})", partitions.len(), ids.join(", "))
}

fn describe_segment_header(header: &SegmentHeader) -> String {
    format!(
        "segment index {}, generation {}, first LSN {}, log needs generations from {}, {} bytes",
        header.segment_index,
        header.generation,
        header.first_lsn.0,
        header.log_first_generation,
        header.segment_bytes
    )
}

fn summarise_segment(output: &mut String, report: &SegmentReport, dump: bool) {
    let mut partitions = BTreeSet::new();
    for record in &report.records {
        partitions.insert(record.header.partition);
        if dump {
            let _ = writeln!(
                output,
                "record lsn {} partition {} kind {} body {} bytes at offset {}",
                record.header.lsn.0,
                record.header.partition.0,
                record.header.kind.get(),
                record.header.body_bytes,
                record.offset
            );
        }
    }
    let _ = writeln!(
        output,
        "header: {}",
        describe_segment_header(&report.header)
    );
    let _ = writeln!(
        output,
        "records: {}, {}",
        report.records.len(),
        describe_lsn_range(report.header.first_lsn, report.lsn_next)
    );
    let _ = writeln!(output, "partitions: {}", describe_partitions(&partitions));
    let _ = writeln!(
        output,
        "log ends: offset {}, next LSN {}: {}",
        report.log_end_offset,
        report.lsn_next.0,
        describe_log_end(&report.end)
    );
}

fn inspect_wal_segment(path: &Path, dump: bool) -> Verdict {
    let mut output = String::new();
    let bytes = match read_file(path) {
        Ok(bytes) => bytes,
        Err(outcome) => return Verdict { output, outcome },
    };
    let index_from_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(parse_segment_file_name);
    let _ = writeln!(
        output,
        "WAL segment {} ({} bytes on disk; the segment alone: problems between segments need \
         the WAL directory)",
        path.display(),
        bytes.len()
    );
    let outcome = match inspect_segment(&bytes, index_from_name) {
        Ok(SegmentInspection::NeverInitialised) => {
            let _ = writeln!(output, "header: none, all zero (a free segment)");
            Outcome::Sound
        }
        Ok(SegmentInspection::Initialised(report)) => {
            summarise_segment(&mut output, &report, dump);
            Outcome::Sound
        }
        Err(error) => wal_outcome(&error),
    };
    Verdict { output, outcome }
}

/// Copies `files` (name, bytes) into a fresh simulated directory. Lengths are padded with
/// zeros to the 4 KiB the `Storage` contract requires; both formats read missing bytes as zero.
fn simulated_copy(files: &[(String, Vec<u8>)]) -> Result<SimulatedDirectory, Outcome> {
    let directory = SimulatedDisk::new().directory();
    block_on(async {
        for (name, bytes) in files {
            let file = directory.open(name, OpenMode::CreateNew).await?;
            let padded_len = align_up(bytes.len() as u64, BLOCK_BYTES as u64) as usize;
            if padded_len > 0 {
                let mut buffer = file.allocate_buffer(padded_len);
                buffer[..bytes.len()].copy_from_slice(bytes);
                buffer[bytes.len()..].fill(0);
                file.write_at(buffer, 0).await?;
            }
        }
        Ok(directory)
    })
    .map_err(|error: shoal_io::StorageError| {
        Outcome::Unreadable(format!("cannot stage the files in memory: {error}"))
    })
}

/// The segment size of a WAL directory: what a valid header says, else the largest file.
fn segment_bytes_of(files: &[(String, Vec<u8>)]) -> u64 {
    let from_header = files.iter().find_map(|(_, bytes)| {
        let mut header = [0; SEGMENT_HEADER_BYTES];
        let available = bytes.len().min(SEGMENT_HEADER_BYTES);
        header[..available].copy_from_slice(&bytes[..available]);
        match SegmentHeader::decode(&header) {
            SegmentHeaderSlot::Valid(header) => Some(header.segment_bytes),
            _ => None,
        }
    });
    from_header.unwrap_or_else(|| {
        let largest = files
            .iter()
            .map(|(_, bytes)| bytes.len())
            .max()
            .unwrap_or(0);
        align_up(largest as u64, BLOCK_BYTES as u64).max(SEGMENT_BYTES_MIN)
    })
}

fn inspect_wal_directory(path: &Path, dump: bool) -> Verdict {
    let mut output = String::new();
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(error) => {
            let outcome = Outcome::Unreadable(format!("cannot list {}: {error}", path.display()));
            return Verdict { output, outcome };
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(index) = parse_segment_file_name(&name) {
            match read_file(&entry.path()) {
                Ok(bytes) => files.push((index, name, bytes)),
                Err(outcome) => return Verdict { output, outcome },
            }
        }
    }
    files.sort_by_key(|(index, _, _)| *index);
    let Some(index_max) = files.last().map(|(index, _, _)| *index) else {
        let outcome = Outcome::Unreadable(format!("no wal-NNNN.seg files in {}", path.display()));
        return Verdict { output, outcome };
    };
    let files: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .map(|(_, name, bytes)| (name, bytes))
        .collect();
    let config = WalConfig {
        segment_bytes: segment_bytes_of(&files),
        // A missing file below the highest index recovers as a zero segment, as in `Wal::open`.
        segment_count: (index_max + 1).max(SEGMENT_COUNT_MIN),
        batch_bytes_max: REPLAY_BATCH_BYTES_MAX,
        batch_records_max: REPLAY_BATCH_RECORDS_MAX,
        pending_records_max: REPLAY_PENDING_RECORDS_MAX,
        pending_bytes_max: REPLAY_BATCH_BYTES_MAX,
        record_body_bytes_max: REPLAY_RECORD_BODY_BYTES_MAX,
    };
    let _ = writeln!(
        output,
        "WAL directory {}: {} segment files of {} bytes, recovered as a whole log",
        path.display(),
        files.len(),
        config.segment_bytes
    );
    for (name, bytes) in &files {
        let mut header = [0; SEGMENT_HEADER_BYTES];
        let available = bytes.len().min(SEGMENT_HEADER_BYTES);
        header[..available].copy_from_slice(&bytes[..available]);
        let described = match SegmentHeader::decode(&header) {
            SegmentHeaderSlot::Valid(header) => describe_segment_header(&header),
            other => format!("{other:?}"),
        };
        let _ = writeln!(output, "{name}: {described}");
    }
    let directory = match simulated_copy(&files) {
        Ok(directory) => directory,
        Err(outcome) => return Verdict { output, outcome },
    };
    let mut records = 0u64;
    let mut partitions = BTreeSet::new();
    let mut dumped = String::new();
    let recovered = block_on(Wal::open(&directory, config, |record| {
        records += 1;
        partitions.insert(record.partition);
        if dump {
            let _ = writeln!(
                dumped,
                "record lsn {} partition {} kind {} body {} bytes",
                record.lsn.0,
                record.partition.0,
                record.kind.get(),
                record.body.len()
            );
        }
    }));
    let outcome = match recovered {
        Ok((_wal, report)) => {
            output.push_str(&dumped);
            if report.fresh {
                let _ = writeln!(output, "log: empty (no segment was ever initialised)");
            }
            let _ = writeln!(
                output,
                "records: {records}, {}, in {} segment(s)",
                describe_lsn_range(report.lsn_first, report.lsn_next),
                report.segments_in_log
            );
            let _ = writeln!(output, "partitions: {}", describe_partitions(&partitions));
            let _ = writeln!(
                output,
                "log ends: next LSN {}: {}",
                report.lsn_next.0,
                if report.torn_tail {
                    "torn batch (never acknowledged; recovery ends the log there and zeroes it)"
                } else {
                    "clean end (zero tail, stale recycled content or end of segment)"
                }
            );
            Outcome::Sound
        }
        Err(error) => wal_outcome(&error),
    };
    Verdict { output, outcome }
}

fn hex_key(key: &[u8]) -> String {
    let mut text: String = key
        .iter()
        .take(DUMP_KEY_BYTES_SHOWN)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    if key.len() > DUMP_KEY_BYTES_SHOWN {
        text.push_str("..");
    }
    text
}

fn describe_meta_slot(slot: &Result<MetaSummary, PageDamage>) -> String {
    match slot {
        Ok(meta) => format!(
            "valid, sequence {}, checkpoint LSN {}, root page {}, {} pages, {} items",
            meta.sequence, meta.checkpoint_lsn, meta.root, meta.page_count, meta.item_count
        ),
        Err(PageDamage::Zero) => "empty (never written)".to_owned(),
        Err(damage) => format!(
            "damaged ({damage:?}): a checkpoint torn by a crash, or damage at rest; the \
             other slot is used"
        ),
    }
}

fn summarise_tree(output: &mut String, report: &TreeReport) {
    for (slot, state) in report.meta_slots.iter().enumerate() {
        let _ = writeln!(output, "meta slot {slot}: {}", describe_meta_slot(state));
    }
    let Some(current) = report.current_slot else {
        let _ = writeln!(
            output,
            "current: none (creation never finished; opens as an empty tree)"
        );
        return;
    };
    let _ = writeln!(
        output,
        "current: slot {current}, checkpoint LSN {}",
        report.checkpoint_lsn
    );
    let _ = writeln!(
        output,
        "pages: {} ({} leaf, {} branch, {} overflow, {} free, {} free-list)",
        report.page_count,
        report.leaf_pages,
        report.branch_pages,
        report.overflow_pages,
        report.free_pages,
        report.free_list_pages
    );
    let _ = writeln!(output, "height: {}", report.height);
    let _ = writeln!(
        output,
        "items: {} ({} key and value bytes)",
        report.item_count, report.item_bytes
    );
}

fn inspect_btree(path: &Path, dump: bool) -> Verdict {
    let mut output = String::new();
    let bytes = match read_file(path) {
        Ok(bytes) => bytes,
        Err(outcome) => return Verdict { output, outcome },
    };
    let _ = writeln!(
        output,
        "B-tree file {} ({} bytes, {} pages)",
        path.display(),
        bytes.len(),
        bytes.len().div_ceil(PAGE_BYTES)
    );
    if !bytes.len().is_multiple_of(PAGE_BYTES) {
        let _ = writeln!(
            output,
            "note: the length is not a multiple of {PAGE_BYTES}; the partial page reads as \
             padded with zeros"
        );
    }
    const STAGED_NAME: &str = "inspected.btree";
    let directory = match simulated_copy(&[(STAGED_NAME.to_owned(), bytes)]) {
        Ok(directory) => directory,
        Err(outcome) => return Verdict { output, outcome },
    };
    let mut dumped = String::new();
    let verified = block_on(async {
        let file = directory.open(STAGED_NAME, OpenMode::Existing).await?;
        verify_tree(file, |key, value_bytes| {
            if dump {
                let _ = writeln!(
                    dumped,
                    "item key {} ({} bytes) value {value_bytes} bytes",
                    hex_key(key),
                    key.len()
                );
            }
        })
        .await
    });
    let outcome = match verified {
        Ok(report) => {
            output.push_str(&dumped);
            summarise_tree(&mut output, &report);
            Outcome::Sound
        }
        Err(shoal_store::btree::BTreeError::Storage(error)) => Outcome::Unreadable(format!(
            "reading the staged copy of {} failed: {error}",
            path.display()
        )),
        Err(error) => Outcome::Corrupt(error.to_string()),
    };
    Verdict { output, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_truncated_in_the_dump() {
        assert_eq!(hex_key(b"ab"), "6162");
        let long = vec![0xAB; DUMP_KEY_BYTES_SHOWN + 1];
        let shown = hex_key(&long);
        assert_eq!(shown.len(), 2 * DUMP_KEY_BYTES_SHOWN + 2);
        assert!(shown.ends_with(".."));
    }

    #[test]
    fn lsn_ranges_read_naturally() {
        assert_eq!(describe_lsn_range(Lsn(1), Lsn(4)), "LSN 1..=3");
        assert_eq!(describe_lsn_range(Lsn(7), Lsn(7)), "no LSNs");
    }

    #[test]
    fn the_segment_size_comes_from_a_valid_header_else_the_largest_file() {
        let header = SegmentHeader {
            segment_index: 1,
            generation: 2,
            first_lsn: Lsn(1),
            segment_bytes: 16 * BLOCK_BYTES as u64,
            log_first_generation: 2,
        };
        let garbage = vec![0xEE; 3 * BLOCK_BYTES];
        let with_header = vec![
            ("wal-0000.seg".to_owned(), garbage.clone()),
            ("wal-0001.seg".to_owned(), header.encode().to_vec()),
        ];
        assert_eq!(segment_bytes_of(&with_header), 16 * BLOCK_BYTES as u64);
        let without = vec![("wal-0000.seg".to_owned(), garbage)];
        assert_eq!(segment_bytes_of(&without), 3 * BLOCK_BYTES as u64);
    }
}
