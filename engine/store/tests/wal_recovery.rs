//! Recovery end to end on the simulated disk: clean reopen, crashes before and during a batch,
//! torn tails (scrubbed, then the log continues), corruption reported with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use common::{
    OwnedRecord, YieldingDirectory, body, join_all, kind, noop_waker, open_collect, small_config,
};
use futures_lite::future::{block_on, zip};
use shoal_io::storage::simulated::SimulatedDisk;
use shoal_io::{SeededRng, StorageDirectory};
use shoal_store::wal::format::{BLOCK_BYTES, RECORD_HEADER_BYTES, SEGMENT_DATA_OFFSET};
use shoal_store::wal::{CorruptionKind, Lsn, PartitionId, WalError, segment_file_name};

type Append = Pin<Box<dyn Future<Output = Result<Lsn, WalError>>>>;

/// Appends `ids` one batch per id (each awaited), then shuts the WAL down.
async fn append_sequentially<D: StorageDirectory>(
    directory: &D,
    ids: std::ops::Range<u64>,
) -> Vec<Lsn> {
    let (wal, _, _) = open_collect(directory, small_config()).await.unwrap();
    let (committed, lsns) = zip(wal.run_committer(), async {
        let mut lsns = Vec::new();
        for id in ids {
            lsns.push(
                wal.append(PartitionId(id % 3), kind(), &body(id, 100))
                    .await
                    .unwrap(),
            );
        }
        wal.shutdown();
        lsns
    })
    .await;
    committed.unwrap();
    lsns
}

fn ids(records: &[OwnedRecord]) -> Vec<u64> {
    records
        .iter()
        .map(|record| common::body_id(&record.body))
        .collect()
}

#[test]
fn clean_reopen_returns_every_record() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    block_on(async {
        let lsns = append_sequentially(&directory, 0..10).await;
        assert_eq!(lsns, (1..=10).map(Lsn).collect::<Vec<_>>());
        let (_, records, report) = open_collect(&directory, small_config()).await.unwrap();
        assert_eq!(ids(&records), (0..10).collect::<Vec<_>>());
        for (record, id) in records.iter().zip(0..) {
            assert_eq!(record.body, body(id, 100));
            assert_eq!(record.partition, PartitionId(id % 3));
            assert_eq!(record.kind, 1);
        }
        assert!(!report.fresh);
        assert!(!report.torn_tail);
        assert_eq!(report.scrubbed_bytes, 0);
        assert_eq!(report.lsn_next, Lsn(11));
        // Reopening again and appending continues the LSN sequence.
        let lsns = append_sequentially(&directory, 10..12).await;
        assert_eq!(lsns, [Lsn(11), Lsn(12)]);
        let (_, records, _) = open_collect(&directory, small_config()).await.unwrap();
        assert_eq!(ids(&records), (0..12).collect::<Vec<_>>());
    });
}

#[test]
fn crash_after_sync_keeps_everything_acknowledged() {
    let disk = SimulatedDisk::new();
    block_on(append_sequentially(&disk.directory(), 0..20));
    // 20 one-block batches span all three segments (seven data blocks each).
    let crashed = disk.crash_image_dropping_unsynced();
    let (_, records, report) =
        block_on(open_collect(&crashed.directory(), small_config())).unwrap();
    assert_eq!(ids(&records), (0..20).collect::<Vec<_>>());
    assert_eq!(report.segments_in_log, 3);
}

/// Polls `future` with a no-op waker until `stop()` holds or the future finishes.
fn poll_until<Output>(
    future: Pin<&mut impl Future<Output = Output>>,
    mut stop: impl FnMut() -> bool,
) -> Option<Output> {
    let waker = noop_waker();
    let mut context = Context::from_waker(&waker);
    let mut future = future;
    for _ in 0..10_000 {
        if stop() {
            return None;
        }
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return Some(output);
        }
    }
    panic!("the future neither finished nor reached the stop condition");
}

/// Records of this body length (plus the 8-byte id and the header) are exactly one sector, so
/// sector boundaries of a batch are record boundaries.
const SECTOR_RECORD_BODY_BYTES: usize = 512 - RECORD_HEADER_BYTES - 8;

/// Opens the WAL on `disk`, queues the records `ids` (one sector each, one batch) and stops
/// between the batch write and its sync.
fn leave_unsynced_batch(disk: &SimulatedDisk, ids: std::ops::Range<u64>) {
    let directory = YieldingDirectory::new(disk.directory());
    let (wal, _, _) = block_on(open_collect(&directory, small_config())).unwrap();
    let appends: Vec<Append> = ids
        .map(|id| {
            let wal = wal.clone();
            Box::pin(async move {
                wal.append(PartitionId(0), kind(), &body(id, SECTOR_RECORD_BODY_BYTES))
                    .await
            }) as Append
        })
        .collect();
    let work = zip(wal.run_committer(), join_all(appends));
    let mut work = pin!(work);
    let name = segment_file_name(0);
    let finished = poll_until(work.as_mut(), || {
        disk.contents(&name) != disk.durable_contents(&name)
    });
    assert!(
        finished.is_none(),
        "stopped between the batch write and its sync"
    );
}

/// Leaves a batch of `count` records written to segment 0 but not synced, after one durable
/// batch of ids 0..3. Returns the disk at that instant.
fn disk_with_unsynced_batch(count: u64) -> SimulatedDisk {
    let disk = SimulatedDisk::new();
    block_on(append_sequentially(
        &YieldingDirectory::new(disk.directory()),
        0..3,
    ));
    leave_unsynced_batch(&disk, 3..3 + count);
    disk
}

/// The tail scrub matters: a batch torn at the end of the log leaves records that have exactly
/// the LSNs and batch the next batch at the same place will have. Records of equal sizes put
/// them at exactly the same offsets, and records of one sector each tear only between records. Without the scrub, a second torn batch could be completed
/// by the first one's leftovers; with it, every recovery sees one batch or none.
#[test]
fn leftovers_of_a_torn_batch_never_complete_the_next_one() {
    let mut second_tears = 0;
    for first_seed in 0..24 {
        let disk = disk_with_unsynced_batch(6);
        let first = disk.crash_image(&mut SeededRng::new(first_seed));
        let (_, records, _) = block_on(open_collect(&first.directory(), small_config())).unwrap();
        if records.len() != 3 {
            continue;
        }
        // The first batch was torn; queue a batch of the same shape with other ids.
        for second_seed in 0..24 {
            let again = first.crash_image_dropping_unsynced();
            leave_unsynced_batch(&again, 100..106);
            let second = again.crash_image(&mut SeededRng::new(second_seed));
            let (_, records, _) =
                block_on(open_collect(&second.directory(), small_config())).unwrap();
            let recovered = ids(&records);
            assert!(
                recovered == [0, 1, 2] || recovered == [0, 1, 2, 100, 101, 102, 103, 104, 105],
                "seeds {first_seed}/{second_seed}: recovered {recovered:?}"
            );
            second_tears += u64::from(recovered.len() == 3);
        }
    }
    assert!(second_tears > 0);
}

#[test]
fn crash_before_the_sync_drops_the_whole_batch_or_keeps_it_whole() {
    for seed in 0..64 {
        let disk = disk_with_unsynced_batch(6);
        let crashed = disk.crash_image(&mut SeededRng::new(seed));
        let (wal, records, report) =
            block_on(open_collect(&crashed.directory(), small_config())).unwrap();
        let recovered = ids(&records);
        // Either the batch landed whole (a prefix that includes the unacknowledged batch) or
        // the log ends after the acknowledged records; never part of the batch.
        assert!(
            recovered == (0..3).collect::<Vec<_>>() || recovered == (0..9).collect::<Vec<_>>(),
            "seed {seed}: recovered {recovered:?}"
        );
        if recovered.len() == 3 {
            assert_eq!(report.lsn_next, Lsn(4));
        }
        // The log continues after a torn tail, and a second crash sees a clean log.
        let next = block_on(async {
            let (committed, lsn) = zip(wal.run_committer(), async {
                let lsn = wal
                    .append(PartitionId(1), kind(), &body(100, 10))
                    .await
                    .unwrap();
                wal.shutdown();
                lsn
            })
            .await;
            committed.unwrap();
            lsn
        });
        assert_eq!(next, Lsn(recovered.len() as u64 + 1));
        let again = crashed.crash_image(&mut SeededRng::new(seed + 1000));
        let (_, records, report) =
            block_on(open_collect(&again.directory(), small_config())).unwrap();
        let mut expected = recovered.clone();
        expected.push(100);
        assert_eq!(ids(&records), expected, "seed {seed}");
        assert!(!report.torn_tail);
    }
}

#[test]
fn torn_tail_is_reported_and_scrubbed() {
    // Find a seed whose crash tears the batch (some sectors landed, not all).
    let mut torn_seen = 0;
    for seed in 0..64 {
        let disk = disk_with_unsynced_batch(6);
        let crashed = disk.crash_image(&mut SeededRng::new(seed));
        let (_, records, report) =
            block_on(open_collect(&crashed.directory(), small_config())).unwrap();
        if records.len() == 3 && report.scrubbed_bytes > 0 {
            torn_seen += 1;
            let image = crashed.contents(&segment_file_name(0)).unwrap();
            let end = (SEGMENT_DATA_OFFSET as usize) + 3 * BLOCK_BYTES;
            let scrubbed = &image[end..end + report.scrubbed_bytes as usize];
            assert!(
                scrubbed.iter().all(|byte| *byte == 0),
                "seed {seed}: tail not zeroed"
            );
        }
    }
    assert!(torn_seen > 0, "no seed tore the batch");
}

#[test]
fn corrupt_record_before_later_batches_is_reported_with_its_location() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    block_on(append_sequentially(&directory, 0..5));
    // Batch k (LSN k + 1) sits alone in data block k. Flip a body byte of LSN 3.
    let record_offset = SEGMENT_DATA_OFFSET + 2 * BLOCK_BYTES as u64;
    let flipped = disk.contents(&segment_file_name(0)).unwrap()
        [record_offset as usize + RECORD_HEADER_BYTES + 20]
        ^ 0x10;
    disk.corrupt(
        &segment_file_name(0),
        record_offset + RECORD_HEADER_BYTES as u64 + 20,
        &[flipped],
    );
    let error = block_on(open_collect(&directory, small_config())).unwrap_err();
    let WalError::Corruption(corruption) = error else {
        panic!("expected corruption, got {error:?}")
    };
    assert_eq!(corruption.location.segment_index, 0);
    assert_eq!(corruption.location.offset, record_offset);
    assert_eq!(corruption.location.lsn_expected, Lsn(3));
    assert_eq!(
        corruption.kind,
        CorruptionKind::DamagedBeforeLaterBatch {
            later_offset: record_offset + BLOCK_BYTES as u64,
            later_lsn: Lsn(4)
        }
    );
}

#[test]
fn damaged_segment_header_inside_the_log_is_reported() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    // 12 one-block batches: segment 0 holds LSNs 1-7, segment 1 holds 8-12.
    block_on(append_sequentially(&directory, 0..12));
    disk.corrupt(&segment_file_name(0), 20, &[0xAB]);
    let error = block_on(open_collect(&directory, small_config())).unwrap_err();
    let WalError::Corruption(corruption) = error else {
        panic!("expected corruption, got {error:?}")
    };
    assert_eq!(corruption.kind, CorruptionKind::SegmentHeaderDamaged);
    assert_eq!(corruption.location.segment_index, 0);
}

#[test]
fn stale_records_of_a_recycled_segment_end_the_log() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    block_on(async {
        let (wal, _, _) = open_collect(&directory, small_config()).await.unwrap();
        let (committed, _) = zip(wal.run_committer(), async {
            // Fill the three segments (7 one-block batches each), checkpointing as we go.
            for id in 0..23 {
                let lsn = wal
                    .append(PartitionId(0), kind(), &body(id, 100))
                    .await
                    .unwrap();
                wal.checkpointed(PartitionId(0), Lsn(lsn.0.saturating_sub(10)));
            }
            wal.shutdown();
        })
        .await;
        committed.unwrap();
        assert_eq!(wal.stats().segments_recycled, 1);
    });
    // Segment 0 now holds LSNs 22-23 of the new generation, then LSNs 3-7 of the old one.
    let (_, records, report) = block_on(open_collect(&directory, small_config())).unwrap();
    let lsns: Vec<u64> = records.iter().map(|record| record.lsn.0).collect();
    assert_eq!(lsns, (8..=23).collect::<Vec<_>>());
    assert!(!report.torn_tail);
    assert_eq!(report.lsn_next, Lsn(24));
}

#[test]
fn unknown_format_version_in_a_segment_header_is_refused() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    block_on(append_sequentially(&directory, 0..2));
    let name = segment_file_name(0);
    let mut header = disk.contents(&name).unwrap()[..64].to_vec();
    header[8..10].copy_from_slice(&7u16.to_le_bytes());
    let checksum = crc32c::crc32c(&header[..60]);
    header[60..64].copy_from_slice(&checksum.to_le_bytes());
    disk.corrupt(&name, 0, &header);
    let error = block_on(open_collect(&directory, small_config())).unwrap_err();
    assert!(matches!(
        error,
        WalError::UnsupportedFormatVersion {
            segment_index: 0,
            offset: 0,
            version: 7
        }
    ));
}

#[test]
fn config_mismatch_with_the_files_is_refused() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    block_on(append_sequentially(&directory, 0..2));
    let bigger = shoal_store::wal::WalConfig {
        segment_bytes: 16 * BLOCK_BYTES as u64,
        ..small_config()
    };
    let error = block_on(open_collect(&directory, bigger)).unwrap_err();
    assert!(
        matches!(error, WalError::Corruption(corruption) if matches!(corruption.kind, CorruptionKind::SegmentHeaderMismatch { .. }))
    );
    let fewer = shoal_store::wal::WalConfig {
        segment_count: 2,
        ..small_config()
    };
    assert!(matches!(
        block_on(open_collect(&directory, fewer)),
        Err(WalError::ConfigInvalid(_))
    ));
}

#[test]
fn lost_header_of_the_newest_segment_is_reported() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    // 10 one-block batches: segment 0 holds LSNs 1-7, segment 1 (the newest) holds 8-10.
    block_on(append_sequentially(&directory, 0..10));
    // Segment 1's header vanishes (a lost or misdirected write, or rot): without H8 the log
    // would silently end at LSN 7.
    disk.corrupt(&segment_file_name(1), 0, &[0; 64]);
    let error = block_on(open_collect(&directory, small_config())).unwrap_err();
    let WalError::Corruption(corruption) = error else {
        panic!("expected corruption, got {error:?}")
    };
    assert_eq!(corruption.location.segment_index, 1);
    assert_eq!(
        corruption.kind,
        CorruptionKind::NewerSegmentHeaderLost {
            record_offset: SEGMENT_DATA_OFFSET,
            record_generation: 2
        }
    );
}

/// Recycled segments keep the bytes of their previous generation. Once a recycled segment is
/// full and the log moves on, the bytes after its last batch are old records cut at arbitrary
/// places. Reopening must read them as the end of the segment (R4), not as damage.
#[test]
fn stale_bytes_after_the_last_batch_of_a_recycled_segment_are_not_corruption() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    let mut rng = SeededRng::new(3);
    let mut reopened = 0;
    let mut next_id = 0;
    let mut last_lsn = Lsn(0);
    for _ in 0..40 {
        let (wal, records, _) = block_on(open_collect(&directory, small_config())).unwrap();
        if let Some(last) = records.last() {
            assert_eq!(last.lsn, last_lsn);
            assert_eq!(common::body_id(&last.body), next_id - 1);
        }
        reopened += 1;
        // Checkpoints live in the B-trees; after a restart they are reported again.
        wal.checkpointed(PartitionId(0), Lsn(last_lsn.0.saturating_sub(2)));
        block_on(async {
            let (committed, _) = zip(wal.run_committer(), async {
                for _ in 0..12 {
                    let len = rng.below(7000) as usize;
                    last_lsn = wal
                        .append(PartitionId(0), kind(), &body(next_id, len))
                        .await
                        .unwrap();
                    next_id += 1;
                    // Keep only the last few records needed, so segments recycle quickly.
                    wal.checkpointed(PartitionId(0), Lsn(last_lsn.0.saturating_sub(2)));
                }
                wal.shutdown();
            })
            .await;
            committed.unwrap();
        });
    }
    assert_eq!(reopened, 40);
}
