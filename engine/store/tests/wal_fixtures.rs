//! Committed WAL files of format version 1 (tests/fixtures/wal-v1/CASE/wal-NNNN.seg): one
//! golden log that must recover exactly, and deliberately damaged ones that recovery must
//! reject with the right error (or, for a torn tail and a recycled segment, end correctly).
//!
//! The files are built here from the format's encoders. The test checks that the committed
//! bytes equal the built ones (so an encoding change cannot slip by: bump the version and add
//! fixtures instead) and then recovers the committed bytes. Regenerate after an intended
//! change with `SHOAL_REGENERATE_FIXTURES=1 cargo test -p shoal-store --test wal_fixtures`.
//! Files are stored without their trailing zero blocks; recovery reads missing bytes as zero.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::open_collect;
use futures_lite::future::block_on;
use shoal_io::storage::simulated::SimulatedDisk;
use shoal_io::{OpenMode, Storage, StorageDirectory};
use shoal_store::wal::format::{
    BLOCK_BYTES, RECORD_FLAG_BATCH_END, RECORD_HEADER_BYTES, RecordHeader, SEGMENT_DATA_OFFSET,
    SegmentHeader, align_up, record_encoded_bytes,
};
use shoal_store::wal::{
    CorruptionKind, Lsn, PartitionId, RecordKind, WalConfig, WalError, segment_file_name,
};

const SEGMENT_BYTES: u64 = 4 * BLOCK_BYTES as u64;

fn fixture_config() -> WalConfig {
    WalConfig {
        segment_bytes: SEGMENT_BYTES,
        segment_count: 2,
        batch_bytes_max: BLOCK_BYTES,
        batch_records_max: 8,
        pending_records_max: 8,
        pending_bytes_max: 4 * BLOCK_BYTES,
        record_body_bytes_max: 1024,
    }
}

/// A segment image under construction.
struct Segment {
    index: u32,
    bytes: Vec<u8>,
}

impl Segment {
    fn new(index: u32, generation: u64, first_lsn: u64, log_first_generation: u64) -> Self {
        let mut bytes = vec![0; SEGMENT_BYTES as usize];
        let header = SegmentHeader {
            segment_index: index,
            generation,
            first_lsn: Lsn(first_lsn),
            segment_bytes: SEGMENT_BYTES,
            log_first_generation,
        };
        bytes[..64].copy_from_slice(&header.encode());
        Self { index, bytes }
    }

    /// Writes one batch in data block `block` (counted from 0); returns record offsets.
    fn batch(
        &mut self,
        block: u64,
        generation: u64,
        first_lsn: u64,
        bodies: &[(u64, &[u8])],
    ) -> Vec<usize> {
        let mut position = (SEGMENT_DATA_OFFSET + block * BLOCK_BYTES as u64) as usize;
        let mut offsets = Vec::new();
        for (index, (partition, body)) in bodies.iter().enumerate() {
            let header = RecordHeader {
                kind: RecordKind::new(1).unwrap(),
                flags: if index + 1 == bodies.len() {
                    RECORD_FLAG_BATCH_END
                } else {
                    0
                },
                partition: PartitionId(*partition),
                lsn: Lsn(first_lsn + index as u64),
                batch_first_lsn: Lsn(first_lsn),
                generation,
                body_bytes: body.len() as u32,
                body_checksum: crc32c::crc32c(body),
            };
            offsets.push(position);
            self.bytes[position..position + RECORD_HEADER_BYTES].copy_from_slice(&header.encode());
            self.bytes[position + RECORD_HEADER_BYTES..][..body.len()].copy_from_slice(body);
            position += record_encoded_bytes(body.len());
        }
        offsets
    }

    /// The file as committed: without trailing zero blocks.
    fn file_bytes(&self) -> Vec<u8> {
        let last_used = self
            .bytes
            .iter()
            .rposition(|byte| *byte != 0)
            .map_or(0, |index| index + 1);
        let len = align_up(last_used as u64, BLOCK_BYTES as u64).max(BLOCK_BYTES as u64) as usize;
        self.bytes[..len].to_vec()
    }
}

/// Re-seals a record header after a field was changed, so only the field is "wrong".
fn reseal_record_header(bytes: &mut [u8], offset: usize) {
    let checksum = crc32c::crc32c(&bytes[offset..offset + 60]);
    bytes[offset + 60..offset + 64].copy_from_slice(&checksum.to_le_bytes());
}

type Outcome = Result<(Vec<common::OwnedRecord>, shoal_store::wal::RecoveryReport), WalError>;

struct Fixture {
    name: &'static str,
    what: &'static str,
    segments: Vec<Segment>,
    check: fn(Outcome),
}

fn corruption(outcome: Outcome) -> Box<shoal_store::wal::WalCorruption> {
    match outcome {
        Err(WalError::Corruption(corruption)) => corruption,
        Err(other) => panic!("expected corruption, got {other}"),
        Ok((records, _)) => panic!("expected corruption, recovered {} records", records.len()),
    }
}

fn fixtures() -> Vec<Fixture> {
    let mut list = Vec::new();

    let mut golden = Segment::new(0, 1, 1, 1);
    golden.batch(0, 1, 1, &[(7, b"alpha"), (8, b"beta")]);
    golden.batch(1, 1, 3, &[(7, b"gamma")]);
    list.push(Fixture {
        name: "golden-three-records",
        what: "two batches, three records of two partitions",
        segments: vec![golden],
        check: |outcome| {
            let (records, report) = outcome.unwrap();
            let got: Vec<(u64, u64, &[u8])> = records
                .iter()
                .map(|record| (record.lsn.0, record.partition.0, record.body.as_slice()))
                .collect();
            assert_eq!(
                got,
                [
                    (1, 7, b"alpha".as_slice()),
                    (2, 8, b"beta"),
                    (3, 7, b"gamma")
                ]
            );
            assert_eq!(report.lsn_next, Lsn(4));
            assert!(!report.torn_tail);
        },
    });

    let mut recycled = Segment::new(0, 3, 20, 3);
    recycled.batch(0, 3, 20, &[(1, b"new life")]);
    recycled.batch(1, 1, 2, &[(1, b"stale from generation 1")]);
    list.push(Fixture {
        name: "recycled-stale-tail",
        what: "a recycled segment: a record of generation 3, then stale records of generation 1",
        segments: vec![recycled],
        check: |outcome| {
            let (records, report) = outcome.unwrap();
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].body, b"new life");
            assert_eq!(report.lsn_next, Lsn(21));
            assert!(!report.torn_tail);
        },
    });

    let mut torn = Segment::new(0, 1, 1, 1);
    torn.batch(0, 1, 1, &[(1, b"durable")]);
    let offsets = torn.batch(1, 1, 2, &[(1, b"first of a torn batch"), (1, b"second")]);
    torn.bytes[offsets[1]..offsets[1] + 64].fill(0);
    list.push(Fixture {
        name: "torn-tail",
        what: "the last batch lost its batch-end record: the log ends before that batch",
        segments: vec![torn],
        check: |outcome| {
            let (records, report) = outcome.unwrap();
            assert_eq!(records.len(), 1);
            assert!(report.torn_tail);
            assert_eq!(report.lsn_next, Lsn(2));
        },
    });

    let mut flipped_body = Segment::new(0, 1, 1, 1);
    let offsets = flipped_body.batch(0, 1, 1, &[(1, b"will be flipped")]);
    flipped_body.batch(1, 1, 2, &[(1, b"later batch")]);
    flipped_body.bytes[offsets[0] + RECORD_HEADER_BYTES + 3] ^= 0x20;
    list.push(Fixture {
        name: "corrupt-record-body",
        what: "a body bit flip in the first batch, followed by a later batch",
        segments: vec![flipped_body],
        check: |outcome| {
            let corruption = corruption(outcome);
            assert_eq!(corruption.location.segment_index, 0);
            assert_eq!(corruption.location.offset, SEGMENT_DATA_OFFSET);
            assert_eq!(corruption.location.lsn_expected, Lsn(1));
            assert_eq!(
                corruption.kind,
                CorruptionKind::DamagedBeforeLaterBatch {
                    later_offset: SEGMENT_DATA_OFFSET + BLOCK_BYTES as u64,
                    later_lsn: Lsn(2)
                }
            );
        },
    });

    let mut flipped_header = Segment::new(0, 1, 1, 1);
    let offsets = flipped_header.batch(0, 1, 1, &[(1, b"one"), (1, b"two")]);
    flipped_header.batch(1, 1, 3, &[(1, b"three")]);
    flipped_header.bytes[offsets[1] + 17] ^= 0x01;
    list.push(Fixture {
        name: "corrupt-record-header",
        what: "a header bit flip in the second record of the first batch, then a later batch",
        segments: vec![flipped_header],
        check: |outcome| {
            let corruption = corruption(outcome);
            assert_eq!(corruption.location.offset, SEGMENT_DATA_OFFSET + 72);
            assert_eq!(corruption.location.lsn_expected, Lsn(1));
            assert!(matches!(
                corruption.kind,
                CorruptionKind::DamagedBeforeLaterBatch {
                    later_lsn: Lsn(3),
                    ..
                }
            ));
        },
    });

    let mut before_gap = Segment::new(0, 1, 1, 1);
    before_gap.batch(0, 1, 1, &[(1, b"lsn 1")]);
    let mut after_gap = Segment::new(1, 2, 5, 1);
    after_gap.batch(0, 2, 5, &[(1, b"lsn 5")]);
    list.push(Fixture {
        name: "lsn-gap",
        what: "segment 0 ends at LSN 1 but segment 1 starts at LSN 5",
        segments: vec![before_gap, after_gap],
        check: |outcome| {
            let corruption = corruption(outcome);
            assert_eq!(corruption.location.segment_index, 0);
            assert_eq!(corruption.location.lsn_expected, Lsn(2));
            assert_eq!(
                corruption.kind,
                CorruptionKind::LsnGap {
                    newer_segment_index: 1,
                    newer_first_lsn: Lsn(5)
                }
            );
        },
    });

    let mut lost_header = Segment::new(0, 1, 1, 1);
    lost_header.batch(0, 1, 1, &[(1, b"needed")]);
    lost_header.bytes[..64].fill(0xEE);
    let mut newest = Segment::new(1, 2, 2, 1);
    newest.batch(0, 2, 2, &[(1, b"newest")]);
    list.push(Fixture {
        name: "damaged-segment-header",
        what: "segment 0's header is garbage while segment 1 says the log needs generation 1",
        segments: vec![lost_header, newest],
        check: |outcome| {
            let corruption = corruption(outcome);
            assert_eq!(corruption.kind, CorruptionKind::SegmentHeaderDamaged);
            assert_eq!(corruption.location.segment_index, 0);
        },
    });

    let mut older = Segment::new(0, 1, 1, 1);
    older.batch(0, 1, 1, &[(1, b"lsn 1")]);
    let mut headerless = Segment::new(1, 2, 2, 1);
    headerless.batch(0, 2, 2, &[(1, b"acknowledged in generation 2")]);
    headerless.bytes[..64].fill(0);
    list.push(Fixture {
        name: "lost-newest-segment-header",
        what: "segment 1 holds records of generation 2 but its header is gone",
        segments: vec![older, headerless],
        check: |outcome| {
            let corruption = corruption(outcome);
            assert_eq!(corruption.location.segment_index, 1);
            assert_eq!(
                corruption.kind,
                CorruptionKind::NewerSegmentHeaderLost {
                    record_offset: SEGMENT_DATA_OFFSET,
                    record_generation: 2
                }
            );
        },
    });

    let mut no_header = Segment::new(0, 1, 1, 1);
    no_header.batch(0, 1, 1, &[(1, b"orphan")]);
    no_header.bytes[..64].fill(0);
    list.push(Fixture {
        name: "data-without-header",
        what: "records but no valid segment header anywhere",
        segments: vec![no_header],
        check: |outcome| {
            let corruption = corruption(outcome);
            assert_eq!(corruption.kind, CorruptionKind::NoValidSegmentHeader);
            assert_eq!(corruption.location.offset, SEGMENT_DATA_OFFSET);
        },
    });

    let mut wrong_index = Segment::new(1, 1, 1, 1);
    wrong_index.index = 0;
    list.push(Fixture {
        name: "segment-header-wrong-index",
        what: "file wal-0000.seg holds the header of segment 1",
        segments: vec![wrong_index],
        check: |outcome| {
            let corruption = corruption(outcome);
            assert!(matches!(
                corruption.kind,
                CorruptionKind::SegmentHeaderMismatch {
                    segment_index: 1,
                    ..
                }
            ));
        },
    });

    let mut segment_version = Segment::new(0, 1, 1, 1);
    segment_version.bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    let checksum = crc32c::crc32c(&segment_version.bytes[..60]);
    segment_version.bytes[60..64].copy_from_slice(&checksum.to_le_bytes());
    list.push(Fixture {
        name: "segment-format-version-2",
        what: "a segment header of format version 2 with a good checksum",
        segments: vec![segment_version],
        check: |outcome| {
            assert!(matches!(
                outcome,
                Err(WalError::UnsupportedFormatVersion {
                    segment_index: 0,
                    offset: 0,
                    version: 2
                })
            ));
        },
    });

    let mut record_version = Segment::new(0, 1, 1, 1);
    let offsets = record_version.batch(0, 1, 1, &[(1, b"from the future")]);
    record_version.bytes[offsets[0] + 4..offsets[0] + 6].copy_from_slice(&2u16.to_le_bytes());
    reseal_record_header(&mut record_version.bytes, offsets[0]);
    list.push(Fixture {
        name: "record-format-version-2",
        what: "a record header of format version 2 with a good checksum",
        segments: vec![record_version],
        check: |outcome| {
            assert!(matches!(
                outcome,
                Err(WalError::UnsupportedFormatVersion { segment_index: 0, offset, version: 2 })
                    if offset == SEGMENT_DATA_OFFSET
            ));
        },
    });

    list
}

fn fixture_directory(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wal-v1")
        .join(name)
}

#[test]
fn fixtures_are_current_and_recover_as_documented() {
    let regenerate = std::env::var_os("SHOAL_REGENERATE_FIXTURES").is_some();
    let fixtures = fixtures();
    for fixture in &fixtures {
        let directory = fixture_directory(fixture.name);
        if regenerate {
            std::fs::create_dir_all(&directory).unwrap();
            std::fs::write(directory.join("README"), format!("{}\n", fixture.what)).unwrap();
            for segment in &fixture.segments {
                std::fs::write(
                    directory.join(segment_file_name(segment.index)),
                    segment.file_bytes(),
                )
                .unwrap();
            }
        }
        let disk = SimulatedDisk::new();
        let simulated = disk.directory();
        for segment in &fixture.segments {
            let name = segment_file_name(segment.index);
            let committed = std::fs::read(directory.join(&name))
                .unwrap_or_else(|error| panic!("fixture {}/{name}: {error}", fixture.name));
            let built = segment.file_bytes();
            let first_difference = committed
                .iter()
                .zip(&built)
                .position(|(left, right)| left != right);
            assert!(
                committed.len() == built.len() && first_difference.is_none(),
                "fixture {}/{name} differs from the format: {} bytes committed, {} built, \
                 first difference at {first_difference:?}",
                fixture.name,
                committed.len(),
                built.len()
            );
            block_on(async {
                let file = simulated.open(&name, OpenMode::CreateNew).await.unwrap();
                let mut buffer = file.allocate_buffer(committed.len());
                buffer.copy_from_slice(&committed);
                file.write_at(buffer, 0).await.unwrap();
                file.sync().await.unwrap();
            });
        }
        let outcome = block_on(open_collect(&simulated, fixture_config()))
            .map(|(_, records, report)| (records, report));
        (fixture.check)(outcome);
    }
    // Every committed fixture is one of the cases above.
    let committed: Vec<String> = std::fs::read_dir(fixture_directory(""))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(committed.len(), fixtures.len(), "{committed:?}");
}
