//! The WAL over the fault-injecting storage: silent faults (bit flips, misdirected, lost and
//! torn writes) are detected by recovery and reported with their location, never served as
//! data; EIO on a write fails the appends and stops the WAL; EIO on a sync stops the process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use common::{body, body_id, kind, open_collect, small_config};
use futures_lite::future::{block_on, zip};
use shoal_io::SeededRng;
use shoal_io::storage::faulty::{FaultInjector, FaultKind, FaultRates, FaultyDirectory};
use shoal_io::storage::simulated::SimulatedDisk;
use shoal_store::wal::format::{BLOCK_BYTES, RECORD_HEADER_BYTES, SEGMENT_DATA_OFFSET};
use shoal_store::wal::{Lsn, PartitionId, WalError, segment_file_name};

/// Records of this size span six sectors, so a torn write can cut through one.
const BODY_BYTES: usize = 3000;

fn faulty(seed: u64) -> (SimulatedDisk, FaultyDirectory, Rc<FaultInjector>) {
    let disk = SimulatedDisk::new();
    let injector = FaultInjector::new(FaultRates::none(), SeededRng::new(seed), None);
    let directory = FaultyDirectory::new(disk.directory(), Rc::clone(&injector));
    (disk, directory, injector)
}

/// Appends ids `0..count` one batch each; the batch of id `faulty_id` is written with
/// `rates`, all others without faults.
fn append_with_one_faulty_batch(
    directory: &FaultyDirectory,
    injector: &FaultInjector,
    count: u64,
    faulty_id: u64,
    rates: FaultRates,
) {
    block_on(async {
        let (wal, _, _) = open_collect(directory, small_config()).await.unwrap();
        let (committed, _) = zip(wal.run_committer(), async {
            for id in 0..count {
                let record_body = body(id, BODY_BYTES);
                let mut append = Box::pin(wal.append(PartitionId(0), kind(), &record_body));
                // Queue the record, then switch the faults on for exactly its batch write.
                assert!(futures_lite::future::poll_once(&mut append).await.is_none());
                injector.set_rates(if id == faulty_id {
                    rates.clone()
                } else {
                    FaultRates::none()
                });
                append.await.unwrap();
                injector.set_rates(FaultRates::none());
            }
            wal.shutdown();
        })
        .await;
        committed.unwrap();
    });
}

/// Batch `id` (one record) sits alone in data block `id` of segment 0.
fn record_offset(id: u64) -> u64 {
    SEGMENT_DATA_OFFSET + id * BLOCK_BYTES as u64
}

#[test]
fn bit_flips_at_rest_are_detected_where_they_are() {
    let mut detected = 0;
    for seed in 0..40 {
        let (_, directory, injector) = faulty(seed);
        let rates = FaultRates {
            write_bit_flip: 1.0,
            ..FaultRates::none()
        };
        append_with_one_faulty_batch(&directory, &injector, 6, 2, rates);
        let flips: Vec<_> = injector
            .injected()
            .into_iter()
            .filter(|fault| fault.kind == FaultKind::WriteBitFlip)
            .collect();
        assert_eq!(flips.len(), 1, "seed {seed}");
        let flipped = flips[0].actual_offset.unwrap();
        let record_start = record_offset(2);
        let record_end = record_start + (RECORD_HEADER_BYTES + 8 + BODY_BYTES) as u64;
        let outcome = block_on(open_collect(&directory, small_config()));
        if (record_start..record_end).contains(&flipped) {
            let Err(WalError::Corruption(corruption)) = outcome else {
                panic!(
                    "seed {seed}: flip at {flipped} not reported: {:?}",
                    outcome.map(|(_, records, _)| records.len())
                );
            };
            assert_eq!(corruption.location.segment_index, 0);
            assert_eq!(corruption.location.offset, record_start, "seed {seed}");
            assert_eq!(corruption.location.lsn_expected, Lsn(3));
            detected += 1;
        } else {
            // The flip hit zero padding, which carries no data: every record is intact.
            let (_, records, _) = outcome.unwrap();
            let ids: Vec<u64> = records.iter().map(|record| body_id(&record.body)).collect();
            assert_eq!(ids, (0..6).collect::<Vec<_>>());
            assert!(
                records
                    .iter()
                    .all(|record| record.body == body(body_id(&record.body), BODY_BYTES))
            );
        }
    }
    assert!(detected > 0);
}

#[test]
fn misdirected_writes_are_detected() {
    for seed in 0..40 {
        let (_, directory, injector) = faulty(seed);
        let rates = FaultRates {
            misdirected_write: 1.0,
            ..FaultRates::none()
        };
        append_with_one_faulty_batch(&directory, &injector, 6, 2, rates);
        let misdirected = injector.injected();
        assert_eq!(misdirected.len(), 1);
        let landed_at = misdirected[0].actual_offset.unwrap();
        let error = block_on(open_collect(&directory, small_config()))
            .err()
            .unwrap_or_else(|| {
                panic!("seed {seed}: batch of LSN 3 misdirected to {landed_at} went unnoticed")
            });
        match error {
            WalError::Corruption(corruption) => {
                // Either the hole where the batch belongs, or the block it overwrote.
                let at = corruption.location.offset;
                assert!(
                    at == record_offset(2) || at == landed_at || landed_at == 0,
                    "seed {seed}: reported at {at}, batch belonged at {}, landed at {landed_at}",
                    record_offset(2)
                );
            }
            other => panic!("seed {seed}: unexpected {other}"),
        }
    }
}

#[test]
fn lost_acknowledged_writes_are_detected_when_later_batches_follow() {
    for seed in 0..10 {
        let (_, directory, injector) = faulty(seed);
        let rates = FaultRates {
            lost_write: 1.0,
            ..FaultRates::none()
        };
        append_with_one_faulty_batch(&directory, &injector, 6, 2, rates);
        let error = block_on(open_collect(&directory, small_config())).err();
        let Some(WalError::Corruption(corruption)) = error else {
            panic!("a lost write of an acknowledged batch went unnoticed (seed {seed})");
        };
        assert_eq!(corruption.location.offset, record_offset(2));
        assert_eq!(corruption.location.lsn_expected, Lsn(3));
    }
}

#[test]
fn torn_acknowledged_writes_are_detected_when_later_batches_follow() {
    let mut detected = 0;
    for seed in 0..40 {
        let (_, directory, injector) = faulty(seed);
        let rates = FaultRates {
            torn_write: 1.0,
            ..FaultRates::none()
        };
        append_with_one_faulty_batch(&directory, &injector, 6, 2, rates);
        match block_on(open_collect(&directory, small_config())) {
            Err(WalError::Corruption(corruption)) => {
                assert_eq!(corruption.location.offset, record_offset(2));
                assert_eq!(corruption.location.lsn_expected, Lsn(3));
                detected += 1;
            }
            // The sectors that did not land held only the zero padding after the record.
            Ok((_, records, _)) => {
                assert_eq!(records.len(), 6, "seed {seed}");
                assert!(
                    records
                        .iter()
                        .all(|record| record.body == body(body_id(&record.body), BODY_BYTES))
                );
            }
            Err(other) => panic!("seed {seed}: {other}"),
        }
    }
    assert!(detected > 0);
}

#[test]
fn write_error_fails_the_batch_and_every_later_append() {
    let (_, directory, injector) = faulty(7);
    block_on(async {
        let (wal, _, _) = open_collect(&directory, small_config()).await.unwrap();
        let (committed, outcomes) = zip(wal.run_committer(), async {
            let first = wal.append(PartitionId(0), kind(), b"durable").await;
            injector.set_rates(FaultRates {
                write_error: 1.0,
                ..FaultRates::none()
            });
            let failed = wal.append(PartitionId(0), kind(), b"lost").await;
            injector.set_rates(FaultRates::none());
            let after = wal.append(PartitionId(0), kind(), b"refused").await;
            (first, failed, after)
        })
        .await;
        let (first, failed, after) = outcomes;
        assert_eq!(first.unwrap(), Lsn(1));
        let Err(WalError::WriteFailed(failure)) = failed else {
            panic!("expected a write failure, got {failed:?}")
        };
        assert_eq!(failure.segment_index, 0);
        assert_eq!(failure.offset, record_offset(1));
        assert!(matches!(after, Err(WalError::WriteFailed(_))));
        assert!(matches!(committed, Err(WalError::WriteFailed(_))));
    });
    // After the restart the acknowledged record is there. The failed one's fate is unknown,
    // like a timeout's: the sectors that landed before the error may hold all of it.
    let (_, records, _) = block_on(open_collect(&directory, small_config())).unwrap();
    let bodies: Vec<&[u8]> = records
        .iter()
        .map(|record| record.body.as_slice())
        .collect();
    assert!(
        bodies == [b"durable".as_slice()] || bodies == [b"durable".as_slice(), b"lost".as_slice()],
        "{bodies:?}"
    );
}

#[test]
fn sync_error_stops_the_process() {
    shoal_io::fatal::test_hook::turn_stops_into_panics();
    let (disk, directory, injector) = faulty(3);
    let (wal, _, _) = block_on(open_collect(&directory, small_config())).unwrap();
    let syncs_before = disk.sync_count(&segment_file_name(0)).unwrap();
    injector.set_rates(FaultRates {
        sync_error: 1.0,
        ..FaultRates::none()
    });
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        block_on(zip(wal.run_committer(), async {
            wal.append(PartitionId(0), kind(), b"never acknowledged")
                .await
        }))
    }));
    let payload = outcome.expect_err("a failed fdatasync must stop the shard");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.starts_with("fatal: fdatasync failed"), "{message}");
    assert_eq!(
        injector.count(FaultKind::SyncError),
        1,
        "the sync is never retried"
    );
    assert_eq!(
        disk.sync_count(&segment_file_name(0)).unwrap(),
        syncs_before
    );
}

/// Swarm: fault rates drawn per seed. Whatever happens, recovery never returns a record that
/// differs from what was appended at its LSN, and without silent faults it returns every
/// acknowledged record.
#[test]
fn swarm_never_serves_damaged_records() {
    let mut corruption_reports = 0;
    let mut clean_recoveries = 0;
    for seed in 0..150 {
        let (disk, directory, injector) = faulty(seed);
        let mut rng = SeededRng::new(seed);
        let mut rates = FaultRates::swarm(&mut rng);
        // A failed sync stops the process (tested above); reads are faulted at recovery below.
        rates.sync_error = 0.0;
        rates.read_error = 0.0;
        rates.read_bit_flip = 0.0;
        let (wal, _, _) = block_on(open_collect(&directory, small_config())).unwrap();
        injector.set_rates(rates);
        let mut appended: BTreeMap<Lsn, Vec<u8>> = BTreeMap::new();
        let mut acknowledged = Vec::new();
        // The committer ends with the write failure, if one was injected; appends report it too.
        let _committed = block_on(zip(wal.run_committer(), async {
            for id in 0..18 {
                let record_body = body(id, rng.below(2000) as usize);
                match wal.append(PartitionId(id % 2), kind(), &record_body).await {
                    Ok(lsn) => {
                        appended.insert(lsn, record_body);
                        acknowledged.push(lsn);
                    }
                    // The failed record's fate is unknown: it may be in the log after a restart.
                    Err(WalError::WriteFailed(_)) => {
                        appended.insert(Lsn(acknowledged.len() as u64 + 1), record_body);
                        break;
                    }
                    Err(other) => panic!("seed {seed}: {other}"),
                }
            }
            wal.shutdown();
        }));
        injector.set_enabled(false);
        let silent = [
            FaultKind::TornWrite,
            FaultKind::LostWrite,
            FaultKind::MisdirectedWrite,
            FaultKind::WriteBitFlip,
        ]
        .iter()
        .any(|kind| injector.count(*kind) > 0);
        let crashed = disk.crash_image(&mut rng);
        match block_on(open_collect(&crashed.directory(), small_config())) {
            Ok((_, records, _)) => {
                clean_recoveries += 1;
                for record in &records {
                    let Some(expected) = appended.get(&record.lsn) else {
                        panic!("seed {seed}: LSN {} was never appended", record.lsn);
                    };
                    assert_eq!(&record.body, expected, "seed {seed}: LSN {}", record.lsn);
                }
                if !silent {
                    let lsns: Vec<Lsn> = records.iter().map(|record| record.lsn).collect();
                    assert_eq!(lsns[..acknowledged.len()], acknowledged, "seed {seed}");
                    assert!(lsns.len() <= acknowledged.len() + 1);
                }
            }
            Err(WalError::Corruption(_)) => {
                assert!(
                    silent,
                    "seed {seed}: corruption reported without a silent fault"
                );
                corruption_reports += 1;
            }
            Err(other) => panic!("seed {seed}: {other}"),
        }
    }
    assert!(corruption_reports > 0 && clean_recoveries > 0);
}
