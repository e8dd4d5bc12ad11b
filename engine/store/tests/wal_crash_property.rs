//! Property: random appends, committer progress, checkpoints and crashes (crash images of the
//! simulated disk, with every unsynced sector landing or not). After every recovery, the log is
//! exactly a contiguous run of appended records, in LSN order, with their exact contents; it
//! includes every record whose append resolved, unless the record's partition had already
//! checkpointed past it (then its segment may have been recycled).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use common::{
    OwnedRecord, YieldingDirectory, body, body_id, kind, noop_waker, open_collect, small_config,
};
use futures_lite::future::block_on;
use proptest::prelude::*;
use shoal_io::SeededRng;
use shoal_io::storage::simulated::SimulatedDisk;
use shoal_store::wal::{Lsn, PartitionId, RecoveryReport, Wal, WalConfig, WalError};

#[derive(Debug, Clone)]
enum Operation {
    Append {
        partition: u64,
        body_bytes: usize,
    },
    /// Poll the committer and every in-flight append this many rounds.
    Step(u8),
    Checkpoint {
        partition: u64,
    },
    Crash,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        // Bodies above one block make batches end before a segment's end, leaving the bytes of a
        // recycled segment's previous generation after the last batch.
        6 => (0..3u64, prop_oneof![0..600usize, 3000..7000usize])
            .prop_map(|(partition, body_bytes)| Operation::Append { partition, body_bytes }),
        6 => (1..6u8).prop_map(Operation::Step),
        4 => (0..3u64).prop_map(|partition| Operation::Checkpoint { partition }),
        1 => Just(Operation::Crash),
    ]
}

type BoxedFuture<Output> = Pin<Box<dyn Future<Output = Output>>>;
type File = <YieldingDirectory as shoal_io::StorageDirectory>::File;

struct InFlight {
    id: u64,
    partition: PartitionId,
    body: Vec<u8>,
    lsn: Option<Lsn>,
    future: BoxedFuture<Result<Lsn, WalError>>,
}

#[derive(Default)]
struct Model {
    /// Every record queued in the current history of the log, by LSN: (id, partition, body).
    appended: BTreeMap<Lsn, (u64, PartitionId, Vec<u8>)>,
    /// LSNs known durable: resolved appends, and everything a recovery returned.
    durable: BTreeMap<Lsn, PartitionId>,
    checkpoints: BTreeMap<PartitionId, Lsn>,
}

struct Harness {
    config: WalConfig,
    disk: SimulatedDisk,
    wal: Wal<File>,
    committer: BoxedFuture<Result<(), WalError>>,
    in_flight: Vec<InFlight>,
    model: Model,
    next_id: u64,
    crash_rng: SeededRng,
    crashes: u64,
}

fn start_committer(wal: &Wal<File>) -> BoxedFuture<Result<(), WalError>> {
    let wal = wal.clone();
    Box::pin(async move { wal.run_committer().await })
}

impl Harness {
    fn new(seed: u64) -> Self {
        let config = WalConfig {
            pending_records_max: 12,
            ..small_config()
        };
        let disk = SimulatedDisk::new();
        let directory = YieldingDirectory::new(disk.directory());
        let (wal, records, report) = block_on(open_collect(&directory, config.clone())).unwrap();
        assert!(report.fresh && records.is_empty());
        let committer = start_committer(&wal);
        Self {
            config,
            disk,
            wal,
            committer,
            in_flight: Vec::new(),
            model: Model::default(),
            next_id: 0,
            crash_rng: SeededRng::new(seed),
            crashes: 0,
        }
    }

    fn append(&mut self, partition: u64, body_bytes: usize) {
        let id = self.next_id;
        self.next_id += 1;
        let partition = PartitionId(partition);
        let record_body = body(id, body_bytes);
        let wal = self.wal.clone();
        let owned_body = record_body.clone();
        self.in_flight.push(InFlight {
            id,
            partition,
            body: record_body,
            lsn: None,
            future: Box::pin(async move { wal.append(partition, kind(), &owned_body).await }),
        });
    }

    fn step(&mut self, rounds: u8) {
        let waker = noop_waker();
        let mut context = Context::from_waker(&waker);
        for _ in 0..rounds {
            if let Poll::Ready(outcome) = self.committer.as_mut().poll(&mut context) {
                panic!("the committer stopped: {outcome:?}");
            }
            let mut index = 0;
            while index < self.in_flight.len() {
                let lsn_next_before = self.wal.stats().lsn_next;
                let polled = self.in_flight[index].future.as_mut().poll(&mut context);
                let lsn_next_after = self.wal.stats().lsn_next;
                let in_flight = &mut self.in_flight[index];
                if lsn_next_after != lsn_next_before {
                    assert_eq!(lsn_next_after.0, lsn_next_before.0 + 1);
                    assert!(in_flight.lsn.is_none(), "queued twice");
                    in_flight.lsn = Some(lsn_next_before);
                    self.model.appended.insert(
                        lsn_next_before,
                        (in_flight.id, in_flight.partition, in_flight.body.clone()),
                    );
                }
                match polled {
                    Poll::Pending => index += 1,
                    Poll::Ready(outcome) => {
                        let lsn = outcome.unwrap();
                        assert_eq!(Some(lsn), in_flight.lsn, "resolved with another LSN");
                        self.model.durable.insert(lsn, in_flight.partition);
                        self.in_flight.remove(index);
                    }
                }
            }
        }
    }

    fn checkpoint(&mut self, partition: u64) {
        let partition = PartitionId(partition);
        let durable_max = self
            .model
            .durable
            .iter()
            .rev()
            .find(|(_, owner)| **owner == partition)
            .map(|(lsn, _)| *lsn);
        if let Some(lsn) = durable_max {
            self.wal.checkpointed(partition, lsn);
            let checkpoint = self.model.checkpoints.entry(partition).or_default();
            *checkpoint = (*checkpoint).max(lsn);
        }
    }

    fn crash(&mut self) {
        let crashed = self.disk.crash_image(&mut self.crash_rng);
        self.crashes += 1;
        self.in_flight.clear();
        self.committer = Box::pin(async { Ok(()) });
        let directory = YieldingDirectory::new(crashed.directory());
        let (wal, records, report) = block_on(open_collect(&directory, self.config.clone()))
            .unwrap_or_else(|error| {
                panic!("recovery after crash {} failed: {error}", self.crashes)
            });
        self.check_recovered(&records, &report);
        for (partition, lsn) in &self.model.checkpoints {
            wal.checkpointed(*partition, *lsn);
        }
        self.committer = start_committer(&wal);
        self.wal = wal;
        self.disk = crashed;
    }

    fn check_recovered(&mut self, records: &[OwnedRecord], report: &RecoveryReport) {
        let lsn_end = Lsn(report.lsn_next.0 - 1);
        for (index, record) in records.iter().enumerate() {
            assert_eq!(record.lsn.0, records[0].lsn.0 + index as u64, "LSN hole");
            let Some((id, partition, body)) = self.model.appended.get(&record.lsn) else {
                panic!("recovered LSN {} was never appended", record.lsn);
            };
            assert_eq!(
                body_id(&record.body),
                *id,
                "LSN {} holds another record",
                record.lsn
            );
            assert_eq!(&record.body, body, "LSN {} body differs", record.lsn);
            assert_eq!(record.partition, *partition);
        }
        if let Some(last) = records.last() {
            assert_eq!(last.lsn, lsn_end, "the log ends at its last record");
        }
        let appended_max = self
            .model
            .appended
            .keys()
            .next_back()
            .copied()
            .unwrap_or_default();
        assert!(
            lsn_end <= appended_max,
            "recovered beyond what was appended"
        );
        let first_recovered = records.first().map_or(report.lsn_next, |record| record.lsn);
        for (lsn, partition) in &self.model.durable {
            assert!(
                *lsn <= lsn_end,
                "acknowledged LSN {lsn} lost (log ends at {lsn_end})"
            );
            let checkpoint = self
                .model
                .checkpoints
                .get(partition)
                .copied()
                .unwrap_or_default();
            if *lsn > checkpoint {
                assert!(*lsn >= first_recovered, "needed LSN {lsn} was recycled");
            }
        }
        // The recovered log is the history now; unacknowledged records after it are gone.
        self.model.appended.retain(|lsn, _| *lsn <= lsn_end);
        for (lsn, (_, partition, _)) in &self.model.appended {
            self.model.durable.insert(*lsn, *partition);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn recovery_returns_a_prefix_including_every_acknowledged_record(
        operations in proptest::collection::vec(operation(), 1..150),
        seed in any::<u64>(),
    ) {
        let mut harness = Harness::new(seed);
        for operation in operations {
            match operation {
                Operation::Append { partition, body_bytes } => harness.append(partition, body_bytes),
                Operation::Step(rounds) => harness.step(rounds),
                Operation::Checkpoint { partition } => harness.checkpoint(partition),
                Operation::Crash => harness.crash(),
            }
        }
        harness.crash();
    }
}

/// The property above over long fixed runs, to make sure segment recycling, torn tails and
/// waits for checkpoints are all reached (the counters prove it, so this test can fail).
#[test]
fn long_runs_reach_recycling_and_torn_tails() {
    let mut recycled = 0;
    let mut torn = 0;
    for seed in 0..20 {
        let mut harness = Harness::new(seed);
        let mut rng = SeededRng::new(seed ^ 0x5eed);
        for _ in 0..600 {
            match rng.below(14) {
                0..=5 => harness.append(rng.below(3), rng.below(7000) as usize),
                6..=11 => harness.step(1 + rng.below(5) as u8),
                12 => harness.checkpoint(rng.below(3)),
                _ => {
                    recycled += harness.wal.stats().segments_recycled;
                    // Recovery reports torn tails; count them through a fresh crash image.
                    let crashed = harness
                        .disk
                        .crash_image(&mut SeededRng::new(rng.next_u64()));
                    let directory = YieldingDirectory::new(crashed.directory());
                    let (_, _, report) =
                        block_on(open_collect(&directory, harness.config.clone())).unwrap();
                    torn += u64::from(report.torn_tail || report.scrubbed_bytes > 0);
                    harness.crash();
                }
            }
        }
        harness.crash();
    }
    assert!(recycled > 0, "no segment was recycled");
    assert!(torn > 0, "no crash tore a batch");
}
