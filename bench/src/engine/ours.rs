//! Our engine as a shard runs it: one WAL with its committer task, partitions whose B-trees
//! sit behind a page cache, and concurrent writers as tasks on the one glommio executor.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::{Task, spawn_local};
use hdrhistogram::Histogram;
use shoal_io::storage::dma::{DmaDirectory, DmaStorageFile};
use shoal_store::btree::{BTreeConfig, Direction, PageCache};
use shoal_store::engine::{MUTATION_BATCH_KIND, Mutation, MutationBatch, Partition};
use shoal_store::wal::{Lsn, PartitionId, RecoveredRecord, Wal, WalConfig, WalError};

use super::{Cell, Measurement, Plan, SCAN_ITEMS, failed, item_key};
use crate::floor;

/// The partition the put cells write and the cached gets and scans read.
const CACHED_PARTITION: PartitionId = PartitionId(1);
/// A second copy of the data set behind a small cache, for the uncached gets.
const UNCACHED_PARTITION: PartitionId = PartitionId(2);
/// Pages of the small cache: 1 MiB, so that a data set of 20,000 1 KB items is about 20x it.
const UNCACHED_CACHE_PAGES: usize = 256;
/// The large cache holds the whole tree: at least one 4 KiB page per 1 KB item (leaves are at
/// least a quarter full), plus room for the inner nodes.
const CACHED_CACHE_SLACK_PAGES: usize = 1024;
/// Items per WAL record while loading (bulk load is not measured).
const LOAD_BATCH_ITEMS: u64 = 64;
/// Load batches between checkpoints, so that loading a data set larger than the WAL recycles
/// segments instead of waiting for a checkpoint forever (256 batches of 64 KiB per partition).
const LOAD_CHECKPOINT_INTERVAL_BATCHES: u64 = 256;
/// WAL segments: 8 x 32 MiB. Records are only recycled after a checkpoint; with a checkpoint
/// at most every `CHECKPOINT_INTERVAL_RECORDS_MAX` puts (at most one 4 KiB block each) the log
/// never fills.
const WAL_SEGMENT_BYTES: u64 = 32 << 20;
const WAL_SEGMENT_COUNT: u32 = 8;
/// Applied records between B-tree checkpoints during the put cells by default (the checkpoint
/// cost is part of the measured puts, as it is on a shard); `--checkpoint-every` changes it.
pub const CHECKPOINT_INTERVAL_RECORDS_DEFAULT: u64 = 2048;
/// Half the WAL's 4 KiB blocks: a put record takes at most one block, so the ring never fills
/// between checkpoints (the committer would otherwise wait for one forever).
pub const CHECKPOINT_INTERVAL_RECORDS_MAX: u64 =
    WAL_SEGMENT_BYTES * WAL_SEGMENT_COUNT as u64 / 4096 / 2;
const _: () = assert!(CHECKPOINT_INTERVAL_RECORDS_DEFAULT <= CHECKPOINT_INTERVAL_RECORDS_MAX);
/// Durable records waiting for the applier; more writers than this wait to hand theirs over.
const APPLY_QUEUE_CAPACITY: usize = 1024;

/// A durable record handed to the applier; `applied` is told once the B-tree holds it.
struct ApplyRequest {
    lsn: Lsn,
    batch: MutationBatch,
    applied: Rc<LocalSender<()>>,
}

pub struct ShoalEngine {
    wal: Wal<DmaStorageFile>,
    committer: Task<Result<(), WalError>>,
    /// `None` only while a put cell's applier owns it.
    cached: Option<Partition<DmaStorageFile>>,
    uncached: Partition<DmaStorageFile>,
    checkpoint_interval_records: u64,
}

fn single_put(key: &[u8], value: &[u8]) -> MutationBatch {
    MutationBatch {
        mutations: vec![Mutation::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        }],
    }
}

impl ShoalEngine {
    /// Creates the WAL and both partitions in `path` and loads `items` items into each.
    pub async fn open(
        path: &Path,
        items: u64,
        value: &[u8],
        checkpoint_interval_records: u64,
    ) -> io::Result<Self> {
        std::fs::create_dir(path)?;
        let directory = DmaDirectory::open(path)
            .await
            .map_err(failed("open the shoal directory"))?;
        let config = WalConfig {
            segment_bytes: WAL_SEGMENT_BYTES,
            segment_count: WAL_SEGMENT_COUNT,
            ..WalConfig::default()
        };
        let (wal, _) = Wal::open(&directory, config, |_: RecoveredRecord<'_>| {})
            .await
            .map_err(failed("open the WAL"))?;
        let committer_wal = wal.clone();
        let committer = spawn_local(async move { committer_wal.run_committer().await });
        let cached_pages = usize::try_from(items).unwrap_or(usize::MAX) + CACHED_CACHE_SLACK_PAGES;
        let mut cached = Partition::open(
            &directory,
            CACHED_PARTITION,
            PageCache::new(cached_pages),
            BTreeConfig::default(),
        )
        .await
        .map_err(failed("open the cached partition"))?;
        let mut uncached = Partition::open(
            &directory,
            UNCACHED_PARTITION,
            PageCache::new(UNCACHED_CACHE_PAGES),
            BTreeConfig::default(),
        )
        .await
        .map_err(failed("open the uncached partition"))?;
        let mut first = 0;
        while first < items {
            let batch = MutationBatch {
                mutations: (first..items.min(first + LOAD_BATCH_ITEMS))
                    .map(|index| Mutation::Put {
                        key: item_key(index).to_vec(),
                        value: value.to_vec(),
                    })
                    .collect(),
            };
            let body = batch.encode();
            for partition in [&mut cached, &mut uncached] {
                let lsn = wal
                    .append(partition.id(), MUTATION_BATCH_KIND, &body)
                    .await
                    .map_err(failed("load: WAL append"))?;
                partition
                    .apply(lsn, &batch)
                    .await
                    .map_err(failed("load: apply"))?;
            }
            first += LOAD_BATCH_ITEMS;
            let batches_loaded = first / LOAD_BATCH_ITEMS;
            if first >= items || batches_loaded.is_multiple_of(LOAD_CHECKPOINT_INTERVAL_BATCHES) {
                for partition in [&mut cached, &mut uncached] {
                    partition
                        .checkpoint(&wal)
                        .await
                        .map_err(failed("load: checkpoint"))?;
                }
            }
        }
        Ok(Self {
            wal,
            committer,
            cached: Some(cached),
            uncached,
            checkpoint_interval_records,
        })
    }

    pub async fn run(&mut self, cell: Cell, plan: &Plan, value: &[u8]) -> io::Result<Measurement> {
        match cell {
            Cell::DurablePut { writers } => self.durable_puts(writers, plan, value).await,
            Cell::CachedGet => gets(self.cached()?, plan).await,
            Cell::UncachedGet => gets(&self.uncached, plan).await,
            Cell::Scan => scans(self.cached()?, plan).await,
        }
    }

    fn cached(&self) -> io::Result<&Partition<DmaStorageFile>> {
        self.cached
            .as_ref()
            .ok_or_else(|| io::Error::other("the cached partition was lost by a failed put cell"))
    }

    /// `writers` tasks put concurrently; each put is timed from encoding to applied.
    async fn durable_puts(
        &mut self,
        writers: usize,
        plan: &Plan,
        value: &[u8],
    ) -> io::Result<Measurement> {
        let partition = self.cached.take().ok_or_else(|| {
            io::Error::other("the cached partition was lost by a failed put cell")
        })?;
        // No append is in flight between cells, so the next LSN is the first this cell writes.
        let first_lsn = self.wal.stats().lsn_next;
        let (request_sender, request_receiver) = local_channel::new_bounded(APPLY_QUEUE_CAPACITY);
        let applier = spawn_local(apply_in_lsn_order(
            partition,
            self.wal.clone(),
            request_receiver,
            first_lsn,
            self.checkpoint_interval_records,
        ));
        let request_sender = Rc::new(request_sender);
        let started = Instant::now();
        let tasks: Vec<Task<io::Result<Histogram<u64>>>> = (0..writers)
            .map(|writer| {
                spawn_local(write_puts(
                    self.wal.clone(),
                    Rc::clone(&request_sender),
                    plan.clone(),
                    plan.share_of(writer, writers),
                    writer,
                    value.to_vec(),
                ))
            })
            .collect();
        let mut latency = floor::histogram()?;
        let mut first_error = None;
        for task in tasks {
            match task.await {
                Ok(histogram) => latency
                    .add(&histogram)
                    .map_err(failed("merge histograms"))?,
                Err(error) => first_error = first_error.or(Some(error)),
            }
        }
        let elapsed = started.elapsed();
        // The last sender closes the channel and ends the applier, which hands the tree back.
        drop(request_sender);
        self.cached = Some(applier.await?);
        if let Some(error) = first_error {
            return Err(error);
        }
        Ok(Measurement {
            operations: latency.len(),
            elapsed,
            latency,
        })
    }

    pub async fn close(self) -> io::Result<()> {
        self.wal.shutdown();
        self.committer.await.map_err(failed("WAL committer"))?;
        if let Some(cached) = self.cached {
            cached
                .close()
                .await
                .map_err(failed("close the cached partition"))?;
        }
        self.uncached
            .close()
            .await
            .map_err(failed("close the uncached partition"))?;
        self.wal.close().await.map_err(failed("close the WAL"))
    }
}

/// One writer: `count` durable puts of random loaded keys, each waiting until applied.
async fn write_puts(
    wal: Wal<DmaStorageFile>,
    requests: Rc<LocalSender<ApplyRequest>>,
    plan: Plan,
    count: usize,
    writer: usize,
    value: Vec<u8>,
) -> io::Result<Histogram<u64>> {
    let mut keys = plan.keys_of(writer);
    let mut latency = floor::histogram()?;
    let (applied_sender, applied_receiver) = local_channel::new_bounded(1);
    let applied_sender = Rc::new(applied_sender);
    for _ in 0..count {
        let key = item_key(plan.random_item(&mut keys));
        let started = Instant::now();
        let batch = single_put(&key, &value);
        let lsn = wal
            .append(CACHED_PARTITION, MUTATION_BATCH_KIND, &batch.encode())
            .await
            .map_err(failed("put: WAL append"))?;
        requests
            .send(ApplyRequest {
                lsn,
                batch,
                applied: Rc::clone(&applied_sender),
            })
            .await
            .map_err(|_| io::Error::other("put: the applier stopped"))?;
        applied_receiver
            .recv()
            .await
            .ok_or_else(|| io::Error::other("put: the applier stopped before applying"))?;
        floor::record(&mut latency, started.elapsed());
    }
    Ok(latency)
}

/// Applies durable records in LSN order, as a replica must (writers learn of durability in any
/// order within a batch), checkpointing every `checkpoint_interval_records` so the WAL recycles.
async fn apply_in_lsn_order(
    mut partition: Partition<DmaStorageFile>,
    wal: Wal<DmaStorageFile>,
    requests: LocalReceiver<ApplyRequest>,
    first_lsn: Lsn,
    checkpoint_interval_records: u64,
) -> io::Result<Partition<DmaStorageFile>> {
    let mut next_lsn = first_lsn;
    let mut waiting: BTreeMap<Lsn, ApplyRequest> = BTreeMap::new();
    let mut applied_since_checkpoint = 0;
    while let Some(request) = requests.recv().await {
        waiting.insert(request.lsn, request);
        while let Some(request) = waiting.remove(&next_lsn) {
            partition
                .apply(request.lsn, &request.batch)
                .await
                .map_err(failed("put: apply"))?;
            // The writer waits on this channel alone; if it is gone its result is moot.
            let _ = request.applied.try_send(());
            next_lsn = Lsn(next_lsn.0 + 1);
            applied_since_checkpoint += 1;
            if applied_since_checkpoint >= checkpoint_interval_records {
                partition
                    .checkpoint(&wal)
                    .await
                    .map_err(failed("put: checkpoint"))?;
                applied_since_checkpoint = 0;
            }
        }
    }
    if !waiting.is_empty() {
        return Err(io::Error::other(format!(
            "put: {} durable records never became contiguous from LSN {}",
            waiting.len(),
            next_lsn.0
        )));
    }
    Ok(partition)
}

async fn gets(partition: &Partition<DmaStorageFile>, plan: &Plan) -> io::Result<Measurement> {
    let mut keys = plan.keys_of(0);
    let mut latency = floor::histogram()?;
    let started = Instant::now();
    for _ in 0..plan.operations {
        let key = item_key(plan.random_item(&mut keys));
        let operation_started = Instant::now();
        let found = partition.get(&key).await.map_err(failed("get"))?;
        floor::record(&mut latency, operation_started.elapsed());
        if found.is_none() {
            return Err(io::Error::other("get: a loaded key is missing"));
        }
    }
    Ok(Measurement {
        operations: latency.len(),
        elapsed: started.elapsed(),
        latency,
    })
}

async fn scans(partition: &Partition<DmaStorageFile>, plan: &Plan) -> io::Result<Measurement> {
    let mut keys = plan.keys_of(0);
    let mut latency = floor::histogram()?;
    let started = Instant::now();
    for _ in 0..plan.operations {
        let lower = item_key(plan.random_scan_start(&mut keys)).to_vec();
        let operation_started = Instant::now();
        let items = partition
            .scan(
                Bound::Included(lower),
                Bound::Unbounded,
                Direction::Forward,
                SCAN_ITEMS,
            )
            .await
            .map_err(failed("scan"))?;
        floor::record(&mut latency, operation_started.elapsed());
        if items.len() != SCAN_ITEMS {
            return Err(io::Error::other(format!(
                "scan: {} items instead of {SCAN_ITEMS}",
                items.len()
            )));
        }
    }
    Ok(Measurement {
        operations: latency.len(),
        elapsed: started.elapsed(),
        latency,
    })
}
