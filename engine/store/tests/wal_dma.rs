//! The WAL on real files: glommio DMA (O_DIRECT, io_uring) in a temporary directory. Group
//! commit with concurrent appenders, a clean reopen, and a reopen after a segment switch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::pin::Pin;

use common::{body, body_id, join_all, kind, open_collect, small_config};
use futures_lite::future::zip;
use shoal_io::storage::dma::DmaDirectory;
use shoal_io::testing::run_on_test_executor;
use shoal_store::wal::{Lsn, PartitionId, WalError};

type Append = Pin<Box<dyn Future<Output = Result<Lsn, WalError>>>>;

#[test]
fn group_commit_and_recovery_on_dma_files() {
    let temporary = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = temporary.path().to_path_buf();
    let first_path = path.clone();
    run_on_test_executor("wal-dma-write", move || async move {
        let directory = DmaDirectory::open(&first_path).await.unwrap();
        let (wal, records, report) = open_collect(&directory, small_config()).await.unwrap();
        assert!(report.fresh && records.is_empty());
        let appends: Vec<Append> = (0..40)
            .map(|id| {
                let wal = wal.clone();
                Box::pin(async move {
                    wal.append(
                        PartitionId(id % 4),
                        kind(),
                        &body(id, 200 + id as usize * 10),
                    )
                    .await
                }) as Append
            })
            .collect();
        let (committed, lsns) = zip(wal.run_committer(), async {
            let lsns = join_all(appends).await;
            wal.shutdown();
            lsns
        })
        .await;
        committed.unwrap();
        let lsns: Vec<u64> = lsns.into_iter().map(|lsn| lsn.unwrap().0).collect();
        assert_eq!(lsns, (1..=40).collect::<Vec<_>>());
        let stats = wal.stats();
        assert!(stats.syncs < 40, "group commit batched nothing: {stats:?}");
        wal.close().await.unwrap();
    });
    let second_path = path.clone();
    run_on_test_executor("wal-dma-reopen", move || async move {
        let directory = DmaDirectory::open(&second_path).await.unwrap();
        let (wal, records, report) = open_collect(&directory, small_config()).await.unwrap();
        assert!(!report.fresh);
        let ids: Vec<u64> = records.iter().map(|record| body_id(&record.body)).collect();
        assert_eq!(ids, (0..40).collect::<Vec<_>>());
        for record in &records {
            let id = body_id(&record.body);
            assert_eq!(record.body, body(id, 200 + id as usize * 10));
            assert_eq!(record.partition, PartitionId(id % 4));
        }
        // Ten one-block batches (no checkpoints, so the log must not wrap around) move the log
        // to the next segment.
        let (committed, _) = zip(wal.run_committer(), async {
            for id in 40..50 {
                wal.append(PartitionId(0), kind(), &body(id, 3000))
                    .await
                    .unwrap();
            }
            wal.shutdown();
        })
        .await;
        committed.unwrap();
        assert!(wal.stats().segments_initialised > 0);
        wal.close().await.unwrap();
    });
    run_on_test_executor("wal-dma-recover", move || async move {
        let directory = DmaDirectory::open(&path).await.unwrap();
        let (wal, records, report) = open_collect(&directory, small_config()).await.unwrap();
        let ids: Vec<u64> = records.iter().map(|record| body_id(&record.body)).collect();
        assert_eq!(ids, (0..50).collect::<Vec<_>>());
        assert_eq!(report.lsn_next, Lsn(51));
        assert!(report.segments_in_log >= 2);
        wal.close().await.unwrap();
    });
}
