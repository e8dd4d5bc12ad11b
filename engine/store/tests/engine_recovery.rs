//! Property: partition replicas on one shard, their batches journaled in the shard's WAL and
//! applied to their B-trees, random checkpoints (which let WAL segments be recycled) and random
//! crashes. After every recovery (B-tree checkpoint, then WAL replay) each partition equals its
//! model: every acknowledged batch, nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use common::noop_waker;
use futures_lite::future::block_on;
use proptest::prelude::*;
use shoal_io::SeededRng;
use shoal_io::storage::simulated::{SimulatedDisk, SimulatedFile};
use shoal_store::btree::{BTreeConfig, Direction, PageCache};
use shoal_store::engine::{
    MUTATION_BATCH_KIND, Mutation, MutationBatch, Partition, ReplayCollector,
};
use shoal_store::wal::format::BLOCK_BYTES;
use shoal_store::wal::{Lsn, PartitionId, Wal, WalConfig, WalError};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
type BoxedFuture<Output> = Pin<Box<dyn Future<Output = Output>>>;

const PARTITIONS: u64 = 2;
const CACHE_PAGES: usize = 16;
/// Polls of an append before the harness checkpoints every partition to free WAL space.
const POLLS_BEFORE_CHECKPOINTING: usize = 50;

fn wal_config() -> WalConfig {
    WalConfig {
        segment_bytes: 16 * BLOCK_BYTES as u64,
        segment_count: 3,
        batch_bytes_max: 8 * BLOCK_BYTES,
        batch_records_max: 8,
        pending_records_max: 16,
        pending_bytes_max: 32 * BLOCK_BYTES,
        record_body_bytes_max: 6 * BLOCK_BYTES,
    }
}

#[derive(Debug, Clone)]
enum Operation {
    Write {
        partition: u64,
        mutations: Vec<(u8, bool, usize)>,
    },
    Checkpoint {
        partition: u64,
    },
    Crash,
}

fn operation() -> impl Strategy<Value = Operation> {
    let mutation = (
        0..60u8,
        proptest::bool::weighted(0.25),
        prop_oneof![0..200usize, 1100..4000usize],
    );
    prop_oneof![
        8 => (0..PARTITIONS, proptest::collection::vec(mutation, 1..4))
            .prop_map(|(partition, mutations)| Operation::Write { partition, mutations }),
        2 => (0..PARTITIONS).prop_map(|partition| Operation::Checkpoint { partition }),
        1 => Just(Operation::Crash),
    ]
}

struct Shard {
    disk: SimulatedDisk,
    wal: Wal<SimulatedFile>,
    committer: BoxedFuture<Result<(), WalError>>,
    partitions: Vec<Partition<SimulatedFile>>,
    models: Vec<Model>,
    version: u64,
    rng: SeededRng,
    recoveries: u64,
    replayed: u64,
}

fn start_committer(wal: &Wal<SimulatedFile>) -> BoxedFuture<Result<(), WalError>> {
    let wal = wal.clone();
    Box::pin(async move { wal.run_committer().await })
}

/// Recovery: B-trees first, then the WAL, then the replay of what the trees lack.
fn recover(disk: &SimulatedDisk) -> (Wal<SimulatedFile>, Vec<Partition<SimulatedFile>>, u64) {
    let directory = disk.directory();
    block_on(async {
        let cache = PageCache::new(CACHE_PAGES);
        let mut partitions = Vec::new();
        for partition in 0..PARTITIONS {
            partitions.push(
                Partition::open(
                    &directory,
                    PartitionId(partition),
                    Rc::clone(&cache),
                    BTreeConfig::default(),
                )
                .await
                .unwrap(),
            );
        }
        let mut collector = ReplayCollector::new(&partitions);
        let (wal, _) = Wal::open(&directory, wal_config(), |record| collector.visit(record))
            .await
            .unwrap();
        let replayed = collector.replay(&mut partitions, &wal).await.unwrap();
        (wal, partitions, replayed)
    })
}

fn contents(partition: &Partition<SimulatedFile>) -> Model {
    block_on(partition.scan(
        Bound::Unbounded,
        Bound::Unbounded,
        Direction::Forward,
        usize::MAX,
    ))
    .unwrap()
    .into_iter()
    .collect()
}

impl Shard {
    fn new(seed: u64) -> Self {
        let disk = SimulatedDisk::new();
        let (wal, partitions, _) = recover(&disk);
        let committer = start_committer(&wal);
        Self {
            disk,
            wal,
            committer,
            partitions,
            models: vec![Model::new(); PARTITIONS as usize],
            version: 0,
            rng: SeededRng::new(seed),
            recoveries: 0,
            replayed: 0,
        }
    }

    fn checkpoint(&mut self, partition: usize) {
        block_on(self.partitions[partition].checkpoint(&self.wal)).unwrap();
    }

    fn write(&mut self, partition: u64, mutations: &[(u8, bool, usize)]) {
        let batch = MutationBatch {
            mutations: mutations
                .iter()
                .map(|(key, delete, value_bytes)| {
                    let key = format!("key-{key:03}").into_bytes();
                    if *delete {
                        // Deletes by Time to Live (tag 3) are recovered exactly as deletes.
                        if key.last().is_some_and(|byte| byte % 2 == 0) {
                            Mutation::Delete { key }
                        } else {
                            Mutation::Expire { key }
                        }
                    } else {
                        self.version += 1;
                        let value = (0..*value_bytes)
                            .map(|index| (self.version as usize + index) as u8)
                            .collect();
                        Mutation::Put { key, value }
                    }
                })
                .collect(),
        };
        let wal = self.wal.clone();
        let body = batch.encode();
        let mut append: BoxedFuture<Result<Lsn, WalError>> = Box::pin(async move {
            wal.append(PartitionId(partition), MUTATION_BATCH_KIND, &body)
                .await
        });
        let waker = noop_waker();
        let mut context = Context::from_waker(&waker);
        let mut polls = 0;
        let lsn = loop {
            assert!(
                self.committer.as_mut().poll(&mut context).is_pending(),
                "the committer stopped"
            );
            if let Poll::Ready(lsn) = append.as_mut().poll(&mut context) {
                break lsn.unwrap();
            }
            polls += 1;
            if polls % POLLS_BEFORE_CHECKPOINTING == 0 {
                // The log is full: checkpoints let its oldest segment be recycled.
                for index in 0..PARTITIONS as usize {
                    self.checkpoint(index);
                }
            }
        };
        block_on(self.partitions[partition as usize].apply(lsn, &batch)).unwrap();
        let model = &mut self.models[partition as usize];
        for mutation in batch.mutations {
            match mutation {
                Mutation::Put { key, value } => {
                    model.insert(key, value);
                }
                Mutation::Delete { key } | Mutation::Expire { key } => {
                    model.remove(&key);
                }
            }
        }
    }

    fn crash(&mut self) {
        let crashed = self.disk.crash_image(&mut self.rng);
        self.committer = Box::pin(async { Ok(()) });
        let (wal, partitions, replayed) = recover(&crashed);
        for (index, partition) in partitions.iter().enumerate() {
            assert!(
                contents(partition) == self.models[index],
                "partition {index} differs after recovery {}",
                self.recoveries
            );
            assert_eq!(
                partition.stats().item_count,
                self.models[index].len() as u64
            );
        }
        self.recoveries += 1;
        self.replayed += replayed;
        self.committer = start_committer(&wal);
        self.wal = wal;
        self.partitions = partitions;
        self.disk = crashed;
    }

    fn apply(&mut self, operation: &Operation) {
        match operation {
            Operation::Write {
                partition,
                mutations,
            } => self.write(*partition, mutations),
            Operation::Checkpoint { partition } => self.checkpoint(*partition as usize),
            Operation::Crash => self.crash(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn recovery_equals_every_acknowledged_batch(
        operations in proptest::collection::vec(operation(), 1..120),
        seed in any::<u64>(),
    ) {
        let mut shard = Shard::new(seed);
        for operation in &operations {
            shard.apply(operation);
        }
        shard.crash();
    }
}

/// A long run proves the interesting paths happen: WAL segments recycled after checkpoints,
/// and records replayed on top of checkpoints.
#[test]
fn long_run_recycles_segments_and_replays_records() {
    let mut shard = Shard::new(11);
    let mut rng = SeededRng::new(12);
    let mut recycled = 0;
    for step in 0..1500 {
        let partition = rng.below(PARTITIONS);
        let mutations: Vec<(u8, bool, usize)> = (0..1 + rng.below(3))
            .map(|_| {
                (
                    rng.below(60) as u8,
                    rng.chance(0.2),
                    rng.below(2500) as usize,
                )
            })
            .collect();
        shard.apply(&Operation::Write {
            partition,
            mutations,
        });
        if rng.chance(0.05) {
            shard.apply(&Operation::Checkpoint {
                partition: rng.below(PARTITIONS),
            });
        }
        if step % 300 == 299 {
            recycled += shard.wal.stats().segments_recycled;
            shard.apply(&Operation::Crash);
        }
    }
    assert!(recycled > 0, "no WAL segment was recycled");
    assert!(shard.replayed > 0, "no record was replayed");
}

/// A replica rebuilt from a streamed snapshot (taken while writes continue) plus the WAL
/// records after the snapshot's LSN equals the source.
#[test]
fn snapshot_and_wal_tail_rebuild_a_replica() {
    let mut shard = Shard::new(21);
    let mut rng = SeededRng::new(22);
    let mut random_write = |shard: &mut Shard| {
        let mutations: Vec<(u8, bool, usize)> = (0..1 + rng.below(3))
            .map(|_| {
                (
                    rng.below(60) as u8,
                    rng.chance(0.2),
                    rng.below(1500) as usize,
                )
            })
            .collect();
        shard.apply(&Operation::Write {
            partition: 0,
            mutations,
        });
    };
    for _ in 0..40 {
        random_write(&mut shard);
    }
    let snapshot_lsn = shard.partitions[0].stats().lsn_applied;
    let target_disk = SimulatedDisk::new();
    let cache = PageCache::new(CACHE_PAGES);
    let mut target = block_on(Partition::open(
        &target_disk.directory(),
        PartitionId(0),
        cache,
        BTreeConfig::default(),
    ))
    .unwrap();
    let mut after = None;
    loop {
        let chunk = block_on(shard.partitions[0].snapshot_chunk(after.clone(), 7)).unwrap();
        let Some((last_key, _)) = chunk.last() else {
            break;
        };
        after = Some(last_key.clone());
        block_on(target.install_snapshot_chunk(snapshot_lsn, &chunk)).unwrap();
        // Writes go on while the snapshot streams.
        random_write(&mut shard);
    }
    // The WAL tail after the snapshot's LSN, read from the source shard's log.
    let source = shard.disk.crash_image_dropping_unsynced();
    let mut partitions = vec![target];
    let mut collector = ReplayCollector::new(&partitions);
    let (wal, _) = block_on(Wal::open(&source.directory(), wal_config(), |record| {
        collector.visit(record)
    }))
    .unwrap();
    let replayed = block_on(collector.replay(&mut partitions, &wal)).unwrap();
    assert!(replayed > 0);
    assert!(
        contents(&partitions[0]) == shard.models[0],
        "the rebuilt replica differs"
    );
    assert!(contents(&partitions[0]) == contents(&shard.partitions[0]));
}

/// A batch is applied as one unit: one oversized put rejects it before anything is applied.
#[test]
fn a_batch_with_one_oversized_put_changes_nothing() {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    block_on(async {
        let mut partition = Partition::open(
            &directory,
            PartitionId(0),
            PageCache::new(CACHE_PAGES),
            BTreeConfig::default(),
        )
        .await
        .unwrap();
        let oversized_key = vec![7u8; shoal_store::btree::KEY_BYTES_MAX + 1];
        let batch = MutationBatch {
            mutations: vec![
                Mutation::Put {
                    key: b"fits".to_vec(),
                    value: b"value".to_vec(),
                },
                Mutation::Put {
                    key: oversized_key,
                    value: b"value".to_vec(),
                },
            ],
        };
        let error = partition.apply(Lsn(1), &batch).await.unwrap_err();
        assert!(error.to_string().contains("exceeds"), "{error}");
        assert_eq!(partition.get(b"fits").await.unwrap(), None);
        // The rejected LSN was not consumed: a valid batch at the same LSN applies.
        let valid = MutationBatch {
            mutations: vec![Mutation::Put {
                key: b"fits".to_vec(),
                value: b"value".to_vec(),
            }],
        };
        partition.apply(Lsn(1), &valid).await.unwrap();
        assert_eq!(
            partition.get(b"fits").await.unwrap(),
            Some(b"value".to_vec())
        );
    });
}
