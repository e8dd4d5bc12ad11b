//! Group commit: concurrent appends share batches and syncs, LSNs follow queue order, the
//! bounded queue pushes back, shutdown drains, and a full log waits for a checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::pin::Pin;

use common::{body, join_all, kind, open_collect, small_config};
use futures_lite::future::{block_on, zip};
use shoal_io::storage::simulated::SimulatedDisk;
use shoal_store::wal::{Lsn, PartitionId, WalConfig, WalError, segment_file_name};

type Append = Pin<Box<dyn Future<Output = Result<Lsn, WalError>>>>;

#[test]
fn concurrent_appends_share_syncs() {
    const APPENDS: u64 = 64;
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    let config = WalConfig {
        batch_records_max: 16,
        pending_records_max: 128,
        ..small_config()
    };
    block_on(async {
        let (wal, records, report) = open_collect(&directory, config).await.unwrap();
        assert!(report.fresh);
        assert!(records.is_empty());
        let syncs_before = disk.sync_count(&segment_file_name(0)).unwrap();
        let appends: Vec<Append> = (0..APPENDS)
            .map(|id| {
                let wal = wal.clone();
                Box::pin(
                    async move { wal.append(PartitionId(id % 4), kind(), &body(id, 40)).await },
                ) as Append
            })
            .collect();
        let (committed, lsns) = zip(wal.run_committer(), async {
            let lsns = join_all(appends).await;
            wal.shutdown();
            lsns
        })
        .await;
        committed.unwrap();
        // Every append got its own LSN, in the order the appends were queued.
        let lsns: Vec<u64> = lsns.into_iter().map(|lsn| lsn.unwrap().0).collect();
        assert_eq!(lsns, (1..=APPENDS).collect::<Vec<_>>());
        let syncs = disk.sync_count(&segment_file_name(0)).unwrap() - syncs_before;
        let stats = wal.stats();
        assert_eq!(stats.syncs, syncs);
        assert_eq!(stats.batches_written, syncs);
        // All 64 appends were queued before the committer ran, so they fill whole batches.
        assert_eq!(syncs, APPENDS / 16, "group commit must batch");
        assert_eq!(stats.lsn_durable, Lsn(APPENDS));
    });
}

#[test]
fn batches_respect_the_byte_limit() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    let config = WalConfig {
        batch_records_max: 64,
        pending_records_max: 64,
        pending_bytes_max: 64 * 1024,
        ..small_config()
    };
    let batch_bytes_max = config.batch_bytes_max;
    block_on(async {
        let (wal, _, _) = open_collect(&directory, config).await.unwrap();
        // 24 records of ~1 KiB: about 24 KiB, so at least two batches of at most 16 KiB.
        let appends: Vec<Append> = (0..24)
            .map(|id| {
                let wal = wal.clone();
                Box::pin(async move { wal.append(PartitionId(1), kind(), &body(id, 1000)).await })
                    as Append
            })
            .collect();
        let (committed, lsns) = zip(wal.run_committer(), async {
            let lsns = join_all(appends).await;
            wal.shutdown();
            lsns
        })
        .await;
        committed.unwrap();
        assert!(lsns.iter().all(Result::is_ok));
        let stats = wal.stats();
        assert!(stats.batches_written >= 2);
        assert!(stats.batch_bytes_written <= stats.batches_written * batch_bytes_max as u64);
    });
}

#[test]
fn full_queue_pushes_back_on_appenders() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    let config = WalConfig {
        pending_records_max: 4,
        batch_records_max: 4,
        ..small_config()
    };
    block_on(async {
        let (wal, _, _) = open_collect(&directory, config).await.unwrap();
        let appends: Vec<Append> = (0..10)
            .map(|id| {
                let wal = wal.clone();
                Box::pin(async move { wal.append(PartitionId(1), kind(), &body(id, 8)).await })
                    as Append
            })
            .collect();
        // Without a committer, only `pending_records_max` appends can be queued.
        let mut all = join_all(appends);
        let polled = futures_lite::future::poll_once(&mut all).await;
        assert!(polled.is_none());
        assert_eq!(wal.stats().pending_records, 4);
        assert_eq!(wal.stats().lsn_next, Lsn(5));
        let (committed, lsns) = zip(wal.run_committer(), async {
            let lsns = all.await;
            wal.shutdown();
            lsns
        })
        .await;
        committed.unwrap();
        assert!(lsns.iter().all(Result::is_ok));
        assert_eq!(wal.stats().lsn_durable, Lsn(10));
    });
}

#[test]
fn oversized_records_and_appends_after_shutdown_are_refused() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    block_on(async {
        let (wal, _, _) = open_collect(&directory, small_config()).await.unwrap();
        let too_big = vec![0; small_config().record_body_bytes_max + 1];
        assert!(matches!(
            wal.append(PartitionId(1), kind(), &too_big).await,
            Err(WalError::RecordTooLarge { .. })
        ));
        wal.shutdown();
        assert!(matches!(
            wal.append(PartitionId(1), kind(), b"late").await,
            Err(WalError::ShutDown)
        ));
        wal.run_committer().await.unwrap();
    });
}

#[test]
fn second_committer_is_refused() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    block_on(async {
        let (wal, _, _) = open_collect(&directory, small_config()).await.unwrap();
        let (first, second) = zip(wal.run_committer(), async {
            let second = wal.run_committer().await;
            wal.shutdown();
            second
        })
        .await;
        first.unwrap();
        assert!(matches!(second, Err(WalError::StillInUse)));
    });
}

#[test]
fn full_log_waits_for_a_checkpoint_then_recycles() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    let config = small_config();
    // Records of about 5 KiB take two blocks each (one per batch): three fit in the seven data blocks of a segment.
    block_on(async {
        let (wal, _, _) = open_collect(&directory, config.clone()).await.unwrap();
        let committer = wal.run_committer();
        let workload = async {
            let mut lsns = Vec::new();
            // Fill all three segments: each holds 3 records of two blocks.
            for id in 0..9 {
                lsns.push(
                    wal.append(PartitionId(id % 2), kind(), &body(id, 5000))
                        .await
                        .unwrap(),
                );
            }
            assert_eq!(wal.stats().segments_recycled, 0);
            // The next append needs segment 0 again, which partitions 0 and 1 still need.
            let blocked_body = body(9, 5000);
            let mut blocked = Box::pin(wal.append(PartitionId(0), kind(), &blocked_body));
            assert!(
                futures_lite::future::poll_once(&mut blocked)
                    .await
                    .is_none()
            );
            // Give the committer a chance to look at the full log.
            futures_lite::future::yield_now().await;
            assert!(
                futures_lite::future::poll_once(&mut blocked)
                    .await
                    .is_none()
            );
            assert!(wal.stats().waits_for_checkpoint > 0);
            // Partition 0 alone is not enough: segment 0 also holds records of partition 1.
            wal.checkpointed(PartitionId(0), lsns[8]);
            futures_lite::future::yield_now().await;
            assert!(
                futures_lite::future::poll_once(&mut blocked)
                    .await
                    .is_none()
            );
            wal.checkpointed(PartitionId(1), lsns[7]);
            let lsn = blocked.await.unwrap();
            assert_eq!(lsn, Lsn(10));
            assert_eq!(wal.stats().segments_recycled, 1);
            assert_eq!(wal.stats().active_segment, 0);
            wal.shutdown();
            lsns
        };
        let (committed, _) = zip(committer, workload).await;
        committed.unwrap();
    });
    // Recovery sees the recycled segment as the newest and replays from segment 1.
    block_on(async {
        let (_, records, report) = open_collect(&directory, config).await.unwrap();
        let lsns: Vec<u64> = records.iter().map(|record| record.lsn.0).collect();
        assert_eq!(lsns, (4..=10).collect::<Vec<_>>());
        assert_eq!(report.segments_in_log, 3);
        assert_eq!(report.lsn_next, Lsn(11));
    });
}

/// Records of a partition still queued when the WAL forgets it (its replica was deleted while
/// its appends were in flight) never keep their segment from recycling; a record of the
/// partition appended after the forget (a replica created again) counts as usual.
#[test]
fn a_forgotten_partitions_queued_records_do_not_hold_the_log() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    let config = small_config();
    block_on(async {
        let (wal, _, _) = open_collect(&directory, config).await.unwrap();
        let committer = wal.run_committer();
        let workload = async {
            // Queued, not yet written, when the partition is forgotten.
            let mut queued = Vec::new();
            for id in 0..3 {
                queued.push(
                    wal.enqueue(PartitionId(7), kind(), &body(id, 5000))
                        .await
                        .unwrap(),
                );
            }
            wal.forget_partition(PartitionId(7));
            for durable in queued {
                durable.await.unwrap();
            }
            // Wrap the three-segment ring twice with another partition that checkpoints as it
            // goes: a queued record holding its segment would block this for good.
            for id in 0..18 {
                let lsn = wal
                    .append(PartitionId(8), kind(), &body(100 + id, 5000))
                    .await
                    .unwrap();
                wal.checkpointed(PartitionId(8), lsn);
            }
            assert!(wal.stats().segments_recycled >= 4);
            // Created again: its new record holds the log until it is checkpointed.
            let again = wal
                .append(PartitionId(7), kind(), &body(200, 5000))
                .await
                .unwrap();
            // Once the committer has moved past its segment, that segment is held for it.
            let mut pinned = false;
            for id in 0..6 {
                pinned = wal.pins_segments_ahead(PartitionId(7), 2);
                if pinned {
                    break;
                }
                let lsn = wal
                    .append(PartitionId(8), kind(), &body(300 + id, 5000))
                    .await
                    .unwrap();
                wal.checkpointed(PartitionId(8), lsn);
            }
            assert!(
                pinned,
                "a record written after the forget holds its segment"
            );
            wal.checkpointed(PartitionId(7), again);
            assert!(!wal.pins_segments_ahead(PartitionId(7), 2));
            wal.shutdown();
        };
        let (committed, ()) = zip(committer, workload).await;
        committed.unwrap();
    });
}
