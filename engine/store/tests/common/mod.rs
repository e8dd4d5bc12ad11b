//! Helpers shared by the WAL scenario tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use shoal_io::storage::simulated::{SimulatedDirectory, SimulatedFile};
use shoal_io::{AlignedBuffer, OpenMode, Storage, StorageDirectory, StorageResult};
use shoal_store::wal::format::BLOCK_BYTES;
use shoal_store::wal::{Lsn, PartitionId, RecordKind, RecoveryReport, Wal, WalConfig, WalError};

/// A WAL small enough that tests fill, switch and recycle segments often.
pub fn small_config() -> WalConfig {
    WalConfig {
        segment_bytes: 8 * BLOCK_BYTES as u64,
        segment_count: 3,
        batch_bytes_max: 4 * BLOCK_BYTES,
        batch_records_max: 8,
        pending_records_max: 32,
        pending_bytes_max: 16 * BLOCK_BYTES,
        record_body_bytes_max: 2 * BLOCK_BYTES,
    }
}

pub fn kind() -> RecordKind {
    RecordKind::new(1).unwrap()
}

/// A record as recovery handed it over, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub lsn: Lsn,
    pub partition: PartitionId,
    pub kind: u8,
    pub body: Vec<u8>,
}

/// Opens the WAL and collects the recovered records.
pub async fn open_collect<D: StorageDirectory>(
    directory: &D,
    config: WalConfig,
) -> Result<(Wal<D::File>, Vec<OwnedRecord>, RecoveryReport), WalError> {
    let mut records = Vec::new();
    let (wal, report) = Wal::open(directory, config, |record| {
        records.push(OwnedRecord {
            lsn: record.lsn,
            partition: record.partition,
            kind: record.kind.get(),
            body: record.body.to_vec(),
        })
    })
    .await?;
    Ok((wal, records, report))
}

/// A body that says who wrote it: an id, then `len` bytes derived from the id.
pub fn body(id: u64, len: usize) -> Vec<u8> {
    let mut body = id.to_le_bytes().to_vec();
    body.extend((0..len).map(|index| (id as u8).wrapping_mul(13).wrapping_add(index as u8)));
    body
}

pub fn body_id(body: &[u8]) -> u64 {
    u64::from_le_bytes(body[..8].try_into().unwrap())
}

/// Polls a set of futures concurrently on the current task until all finish.
pub struct JoinAll<Output> {
    futures: Vec<Option<Pin<Box<dyn Future<Output = Output>>>>>,
    results: Vec<Option<Output>>,
}

pub fn join_all<Output>(futures: Vec<Pin<Box<dyn Future<Output = Output>>>>) -> JoinAll<Output> {
    let count = futures.len();
    JoinAll {
        futures: futures.into_iter().map(Some).collect(),
        results: (0..count).map(|_| None).collect(),
    }
}

// The futures are boxed and pinned on the heap; nothing in the struct itself is pinned.
impl<Output> Unpin for JoinAll<Output> {}

impl<Output> Future for JoinAll<Output> {
    type Output = Vec<Output>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Vec<Output>> {
        let this = self.get_mut();
        for (slot, result) in this.futures.iter_mut().zip(this.results.iter_mut()) {
            if let Some(future) = slot
                && let Poll::Ready(output) = future.as_mut().poll(context)
            {
                *result = Some(output);
                *slot = None;
            }
        }
        if this.futures.iter().all(Option::is_none) {
            Poll::Ready(
                this.results
                    .iter_mut()
                    .map(|result| result.take().unwrap())
                    .collect(),
            )
        } else {
            Poll::Pending
        }
    }
}

/// Returns Pending once, then Ready: lets a test interleave other futures (and crash) between
/// any two storage operations.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            context.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Simulated storage whose writes and syncs each take one extra poll, so that a test driving
/// the futures by hand can crash between a batch write and its sync.
#[derive(Debug, Clone)]
pub struct YieldingDirectory {
    pub inner: SimulatedDirectory,
}

impl YieldingDirectory {
    pub fn new(inner: SimulatedDirectory) -> Self {
        Self { inner }
    }
}

#[derive(Debug)]
pub struct YieldingFile {
    inner: SimulatedFile,
}

impl StorageDirectory for YieldingDirectory {
    type File = YieldingFile;

    async fn open(&self, name: &str, mode: OpenMode) -> StorageResult<YieldingFile> {
        Ok(YieldingFile {
            inner: self.inner.open(name, mode).await?,
        })
    }

    async fn list(&self) -> StorageResult<Vec<String>> {
        self.inner.list().await
    }

    async fn remove(&self, name: &str) -> StorageResult<()> {
        self.inner.remove(name).await
    }

    async fn sync(&self) -> StorageResult<()> {
        self.inner.sync().await
    }
}

impl Storage for YieldingFile {
    type Buffer = AlignedBuffer;
    type ReadBuffer = AlignedBuffer;

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn allocate_buffer(&self, len: usize) -> AlignedBuffer {
        self.inner.allocate_buffer(len)
    }

    async fn read_at(&self, offset: u64, len: usize) -> StorageResult<AlignedBuffer> {
        self.inner.read_at(offset, len).await
    }

    async fn write_at(&self, buffer: AlignedBuffer, offset: u64) -> StorageResult<()> {
        YieldOnce(false).await;
        self.inner.write_at(buffer, offset).await
    }

    async fn sync(&self) -> StorageResult<()> {
        YieldOnce(false).await;
        self.inner.sync().await
    }

    async fn allocate(&self, len: u64) -> StorageResult<()> {
        self.inner.allocate(len).await
    }

    async fn len(&self) -> StorageResult<u64> {
        self.inner.len().await
    }

    async fn close(self) -> StorageResult<()> {
        self.inner.close().await
    }
}

/// A waker that does nothing: tests that drive futures by hand poll everything every round.
pub fn noop_waker() -> Waker {
    Waker::noop().clone()
}
