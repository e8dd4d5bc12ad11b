//! Production storage: glommio `DmaFile` (O_DIRECT, io_uring) on a real data directory.
//!
//! Objects here live on the glommio executor (core) that created them.
//!
//! Built-in workarounds for glommio 0.9 (kernel-notes/glommio-runtime.md, kernel-notes/):
//! 1. glommio decides once per executor thread and block device whether the io_uring poll ring
//!    (IOPOLL) works, by reading the first DMA file opened on that device. If that file is empty,
//!    the read trivially succeeds, IOPOLL is wrongly enabled, and every later DMA read on the
//!    executor fails with EOPNOTSUPP while writes and fdatasync keep working: a node would run
//!    happily until it needed to recover. [`DmaDirectory::open`] therefore writes a non-empty probe
//!    file with std::fs and DMA-opens it before any real file, once per executor and device.
//! 2. `DmaFile::create` opens write-only, so later reads fail with EBADF: every file here is
//!    opened read+write through `OpenOptions`.
//! 3. A start-up self-test (DMA write, fdatasync, DMA read back, compare) refuses to hand out a
//!    directory whose I/O path does not round-trip.
//!
//! Directory operations (list, remove, directory fsync) use blocking std::fs calls on the
//! executor thread. They happen at start-up and when WAL segments or B-tree files are created
//! or dropped, never on the per-request path.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

use super::{
    IO_ALIGNMENT_BYTES, OpenMode, Storage, StorageDirectory, StorageError, StorageOperation,
    StorageResult, check_alignment, check_file_name,
};

/// Name of the probe file written by workaround 1 (a reserved, dot-prefixed name).
const IOPOLL_PROBE_FILE_NAME: &str = ".shoal-iopoll-probe";
/// Name of the file used by the start-up self-test (workaround 3).
const SELF_TEST_FILE_NAME: &str = ".shoal-self-test";
/// Size of the probe and self-test writes: one aligned block.
const PROBE_BYTES: usize = IO_ALIGNMENT_BYTES;

thread_local! {
    /// Devices (st_dev) whose IOPOLL support this executor thread has probed correctly.
    static PROBED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// A data directory served with direct I/O on the current glommio executor.
#[derive(Debug, Clone)]
pub struct DmaDirectory {
    path: PathBuf,
}

fn path_error(operation: StorageOperation, path: &Path, source: io::Error) -> StorageError {
    StorageError::new(operation, path.display().to_string(), source)
}

impl DmaDirectory {
    /// Opens an existing directory for DMA I/O on this executor: probes IOPOLL correctly for
    /// its device (once per executor) and runs the self-test. Must run inside a glommio executor.
    pub async fn open(path: impl AsRef<Path>) -> StorageResult<Self> {
        let path = path.as_ref().to_path_buf();
        let metadata = std::fs::metadata(&path)
            .map_err(|error| path_error(StorageOperation::Open, &path, error))?;
        if !metadata.is_dir() {
            return Err(path_error(
                StorageOperation::Open,
                &path,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        let directory = Self { path };
        let device = metadata.dev();
        if !PROBED_DEVICES.with(|probed| probed.borrow().contains(&device)) {
            directory.probe_iopoll().await?;
            PROBED_DEVICES.with(|probed| probed.borrow_mut().insert(device));
        }
        directory.self_test().await?;
        Ok(directory)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Workaround 1: make glommio's first DMA open on this device read real bytes.
    async fn probe_iopoll(&self) -> StorageResult<()> {
        let probe_path = self.path.join(IOPOLL_PROBE_FILE_NAME);
        let fail = |error: io::Error| path_error(StorageOperation::SelfTest, &probe_path, error);
        std::fs::write(&probe_path, [0x5A_u8; PROBE_BYTES]).map_err(fail)?;
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(&probe_path)
            .await;
        let result = match opened {
            Ok(file) => {
                let read = file
                    .read_at_aligned(0, PROBE_BYTES)
                    .await
                    .map(|data| data.len());
                let closed = file.close().await;
                match (read, closed) {
                    (Ok(len), Ok(())) if len == PROBE_BYTES => Ok(()),
                    (Ok(len), Ok(())) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("probe read returned {len} of {PROBE_BYTES} bytes"),
                    )),
                    (Err(error), _) | (_, Err(error)) => Err(io::Error::from(error)),
                }
            }
            Err(error) => Err(io::Error::from(error)),
        };
        let removed = std::fs::remove_file(&probe_path);
        result.map_err(fail)?;
        removed.map_err(fail)
    }

    /// Workaround 3: refuse a directory whose DMA write, fdatasync and read back do not agree.
    async fn self_test(&self) -> StorageResult<()> {
        let test_path = self.path.join(SELF_TEST_FILE_NAME);
        let outcome = self_test_round_trip(&test_path).await;
        // Remove even after a failure, but report the first error.
        let removed = std::fs::remove_file(&test_path);
        outcome.map_err(|error| {
            path_error(
                StorageOperation::SelfTest,
                &test_path,
                io::Error::new(
                    error.kind(),
                    format!(
                        "direct I/O self-test (write, fdatasync, read back) failed: {error}; \
                         refusing to use this data directory (run `shoal doctor --data-dir {}`)",
                        self.path.display()
                    ),
                ),
            )
        })?;
        removed.map_err(|error| path_error(StorageOperation::SelfTest, &test_path, error))
    }

    fn file_path(&self, operation: StorageOperation, name: &str) -> StorageResult<PathBuf> {
        check_file_name(operation, name)?;
        Ok(self.path.join(name))
    }
}

async fn self_test_round_trip(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(path)
        .await?;
    let mut buffer = file.alloc_dma_buffer(PROBE_BYTES);
    // A pattern that depends on the process id, so stale bytes from an earlier run cannot pass.
    let salt = std::process::id().to_le_bytes();
    for (index, byte) in buffer.as_bytes_mut().iter_mut().enumerate() {
        *byte = (index as u8) ^ salt[index % salt.len()];
    }
    let expected = buffer.as_bytes().to_vec();
    let written = file.write_at(buffer, 0).await?;
    if written != PROBE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("wrote {written} bytes"),
        ));
    }
    file.fdatasync().await?;
    let read = file.read_at_aligned(0, PROBE_BYTES).await?;
    if *read != *expected {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "read back differs from write",
        ));
    }
    drop(read);
    file.close().await?;
    Ok(())
}

impl StorageDirectory for DmaDirectory {
    type File = DmaStorageFile;

    async fn open(&self, name: &str, mode: OpenMode) -> StorageResult<DmaStorageFile> {
        let path = self.file_path(StorageOperation::Open, name)?;
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::CreateNew => options.create_new(true),
            OpenMode::Existing => &mut options,
            OpenMode::CreateOrExisting => options.create(true),
        };
        let file = options.dma_open(&path).await.map_err(|error| {
            StorageError::new(StorageOperation::Open, name, io::Error::from(error))
        })?;
        Ok(DmaStorageFile {
            file,
            name: name.to_owned(),
        })
    }

    async fn list(&self) -> StorageResult<Vec<String>> {
        let fail = |error| path_error(StorageOperation::List, &self.path, error);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.path).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let is_file = entry.file_type().map_err(fail)?.is_file();
            if is_file && check_file_name(StorageOperation::List, &name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn remove(&self, name: &str) -> StorageResult<()> {
        let path = self.file_path(StorageOperation::Remove, name)?;
        std::fs::remove_file(path)
            .map_err(|error| StorageError::new(StorageOperation::Remove, name, error))
    }

    async fn sync(&self) -> StorageResult<()> {
        std::fs::File::open(&self.path)
            .and_then(|directory| directory.sync_all())
            .map_err(|error| path_error(StorageOperation::SyncDirectory, &self.path, error))
    }
}

/// A writable DMA buffer from glommio's registered memory.
#[derive(Debug)]
pub struct DmaWriteBuffer(DmaBuffer);

impl Deref for DmaWriteBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl DerefMut for DmaWriteBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
}

/// An open DMA file.
#[derive(Debug)]
pub struct DmaStorageFile {
    file: DmaFile,
    name: String,
}

impl DmaStorageFile {
    fn error(&self, operation: StorageOperation, error: impl Into<io::Error>) -> StorageError {
        StorageError::new(operation, self.name.clone(), error.into())
    }
}

impl Storage for DmaStorageFile {
    type Buffer = DmaWriteBuffer;
    type ReadBuffer = ReadResult;

    fn name(&self) -> &str {
        &self.name
    }

    fn allocate_buffer(&self, len: usize) -> DmaWriteBuffer {
        let mut buffer = self.file.alloc_dma_buffer(len);
        // glommio does not zero its buffers; our contract does, so stale heap bytes can never
        // reach the disk through a partly filled page.
        buffer.as_bytes_mut().fill(0);
        DmaWriteBuffer(buffer)
    }

    async fn read_at(&self, offset: u64, len: usize) -> StorageResult<ReadResult> {
        check_alignment(StorageOperation::Read, &self.name, offset, len)?;
        self.file
            .read_at_aligned(offset, len)
            .await
            .map_err(|error| self.error(StorageOperation::Read, error))
    }

    async fn write_at(&self, buffer: DmaWriteBuffer, offset: u64) -> StorageResult<()> {
        let len = buffer.len();
        check_alignment(StorageOperation::Write, &self.name, offset, len)?;
        let written = self
            .file
            .write_at(buffer.0, offset)
            .await
            .map_err(|error| self.error(StorageOperation::Write, error))?;
        if written != len {
            return Err(self.error(
                StorageOperation::Write,
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write: {written} of {len}"),
                ),
            ));
        }
        Ok(())
    }

    async fn sync(&self) -> StorageResult<()> {
        self.file
            .fdatasync()
            .await
            .map_err(|error| self.error(StorageOperation::Sync, error))
    }

    async fn allocate(&self, len: u64) -> StorageResult<()> {
        let current = self.len().await?;
        if len <= current {
            return Ok(());
        }
        // fallocate(mode 0): reserves blocks so later writes do not allocate (which would turn
        // asynchronous direct writes into synchronous ones) and reads of the range return zeros.
        self.file
            .pre_allocate(len, false)
            .await
            .map_err(|error| self.error(StorageOperation::Allocate, error))
    }

    async fn len(&self) -> StorageResult<u64> {
        self.file
            .file_size()
            .await
            .map_err(|error| self.error(StorageOperation::Length, error))
    }

    async fn close(self) -> StorageResult<()> {
        let name = self.name;
        self.file
            .close()
            .await
            .map_err(|error| StorageError::new(StorageOperation::Close, name, error.into()))
    }
}
