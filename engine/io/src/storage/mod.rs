//! The storage contract: one file ([`Storage`]) and a data directory ([`StorageDirectory`]).
//!
//! Three implementations share one contract (tests/storage_contract.rs):
//! - [`dma`]: glommio `DmaFile` with O_DIRECT, for production;
//! - [`simulated`]: in memory and deterministic; keeps written-but-unsynced bytes apart from
//!   synced ones and can produce the image a power loss would leave;
//! - [`faulty`]: wraps the simulated one and injects seeded faults.
//!
//! # The contract
//! 1. Offsets and lengths of reads and writes are multiples of [`IO_ALIGNMENT_BYTES`]; anything
//!    else is rejected with `InvalidInput` by every implementation (so the simulator catches what
//!    O_DIRECT would reject in production).
//! 2. `read_at` returns exactly the requested length, except at the end of the file, where it
//!    returns what exists (possibly nothing). Bytes never written read as zero.
//! 3. A write that returned Ok is visible to every later read of the same file.
//! 4. Only `sync` makes written bytes durable. After a crash, each sector of an unsynced write is
//!    either its old or its new content ([`SECTOR_BYTES`] is the only atomic unit we assume).
//! 5. `allocate(len)` extends the file to at least `len` zero-filled bytes; it never shrinks it.
//! 6. File creation and removal are durable only after [`StorageDirectory::sync`].
//! 7. A failed `sync` is never retried: the caller stops (`fatal!`), because the kernel may have
//!    dropped the dirty data and a second sync could report success over lost bytes.

pub mod dma;
pub mod faulty;
pub mod simulated;

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

/// Offsets, lengths and buffer addresses of all file I/O are multiples of this.
/// 4 KiB even where the device reports 512-byte logical blocks: it is the NVMe page size and the
/// largest logical block size we expect on the devices we deploy on.
pub const IO_ALIGNMENT_BYTES: usize = 4096;

/// The unit that a device writes atomically. We assume only classic 512-byte sectors: a 4 KiB
/// write interrupted by power loss may leave any mix of its eight sectors old or new.
pub const SECTOR_BYTES: usize = 512;

/// Longest file name accepted in a data directory (ext4 and xfs allow 255 bytes).
pub const FILE_NAME_BYTES_MAX: usize = 255;

const _: () = assert!(IO_ALIGNMENT_BYTES.is_power_of_two());
const _: () = assert!(IO_ALIGNMENT_BYTES.is_multiple_of(SECTOR_BYTES));

/// What was being done when a storage error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageOperation {
    Open,
    Read,
    Write,
    Sync,
    Allocate,
    Length,
    Close,
    List,
    Remove,
    SyncDirectory,
    SelfTest,
    /// Reading back a write that reported success returned other bytes ([`write_verified`]):
    /// the device lost, tore, misdirected or corrupted it.
    ReadBack,
}

/// A storage failure with the file and operation it happened on.
#[derive(Debug)]
pub struct StorageError {
    pub operation: StorageOperation,
    pub file: String,
    pub source: io::Error,
}

pub type StorageResult<T> = Result<T, StorageError>;

impl StorageError {
    pub fn new(operation: StorageOperation, file: impl Into<String>, source: io::Error) -> Self {
        Self {
            operation,
            file: file.into(),
            source,
        }
    }

    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }

    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{:?} of {:?} failed: {}",
            self.operation, self.file, self.source
        )
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// How [`StorageDirectory::open`] treats an existing or missing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Fails with `AlreadyExists` if the file exists.
    CreateNew,
    /// Fails with `NotFound` if the file does not exist.
    Existing,
    CreateOrExisting,
}

/// One open file. Objects live on the core (executor) that opened them and are not `Send`.
// Used through generics on one thread, so no Send bound is wanted on the futures; a file has a
// length but "empty" is not a question its users ask.
#[allow(async_fn_in_trait, clippy::len_without_is_empty)]
pub trait Storage {
    /// A writable buffer suitable for `write_at` on this file (aligned, zero-initialised).
    type Buffer: DerefMut<Target = [u8]>;
    /// The result of a read.
    type ReadBuffer: Deref<Target = [u8]>;

    /// The file's name inside its directory.
    fn name(&self) -> &str;

    /// Required alignment of offsets, lengths and buffers (contract 1).
    fn alignment(&self) -> usize {
        IO_ALIGNMENT_BYTES
    }

    /// A zeroed buffer of `len` bytes; `len` should be a multiple of `alignment()`.
    fn allocate_buffer(&self, len: usize) -> Self::Buffer;

    async fn read_at(&self, offset: u64, len: usize) -> StorageResult<Self::ReadBuffer>;

    /// Writes the whole buffer at `offset`. A short write is an error.
    async fn write_at(&self, buffer: Self::Buffer, offset: u64) -> StorageResult<()>;

    /// fdatasync: makes every completed write durable (contract 4, 7).
    async fn sync(&self) -> StorageResult<()>;

    /// Extends the file to at least `len` zero-filled bytes (contract 5).
    async fn allocate(&self, len: u64) -> StorageResult<()>;

    async fn len(&self) -> StorageResult<u64>;

    async fn close(self) -> StorageResult<()>;
}

/// A data directory: a flat namespace of files.
#[allow(async_fn_in_trait)]
pub trait StorageDirectory {
    type File: Storage;

    async fn open(&self, name: &str, mode: OpenMode) -> StorageResult<Self::File>;

    /// The names of the files in the directory, sorted.
    async fn list(&self) -> StorageResult<Vec<String>>;

    async fn remove(&self, name: &str) -> StorageResult<()>;

    /// Makes earlier creations and removals durable (contract 6).
    async fn sync(&self) -> StorageResult<()>;
}

/// Checks contract 1 for one I/O request.
pub(crate) fn check_alignment(
    operation: StorageOperation,
    file: &str,
    offset: u64,
    len: usize,
) -> StorageResult<()> {
    let alignment = IO_ALIGNMENT_BYTES as u64;
    if !offset.is_multiple_of(alignment) || !(len as u64).is_multiple_of(alignment) {
        return Err(StorageError::new(
            operation,
            file,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "offset {offset} and length {len} must be multiples of {IO_ALIGNMENT_BYTES}"
                ),
            ),
        ));
    }
    Ok(())
}

/// File names are plain: ASCII letters, digits, '.', '-', '_', not starting with '.'; at most
/// [`FILE_NAME_BYTES_MAX`] bytes. Keeps paths out of names, the same on every implementation.
/// Names starting with '.' are reserved for the storage layer's own probe files.
pub(crate) fn check_file_name(operation: StorageOperation, name: &str) -> StorageResult<()> {
    let plain = name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte));
    if name.is_empty() || name.len() > FILE_NAME_BYTES_MAX || !plain || name.starts_with('.') {
        return Err(StorageError::new(
            operation,
            name,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "file names are 1-255 bytes of ASCII letters, digits, '.', '-' and '_', not starting with '.'",
            ),
        ));
    }
    Ok(())
}

/// A zeroed heap buffer aligned to [`IO_ALIGNMENT_BYTES`]: the simulated storage's buffer type,
/// aligned like glommio's so that code reading archives in place (rkyv needs 16-byte alignment)
/// behaves the same in the simulator and in production.
pub struct AlignedBuffer {
    pointer: NonNull<u8>,
    len: usize,
}

impl AlignedBuffer {
    pub fn zeroed(len: usize) -> Self {
        if len == 0 {
            // A dangling, aligned pointer is valid for zero-length slices.
            let pointer =
                NonNull::new(IO_ALIGNMENT_BYTES as *mut u8).unwrap_or(NonNull::dangling());
            return Self { pointer, len };
        }
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(pointer) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        Self { pointer, len }
    }

    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut buffer = Self::zeroed(bytes.len());
        buffer.copy_from_slice(bytes);
        buffer
    }

    fn layout(len: usize) -> Layout {
        match Layout::from_size_align(len, IO_ALIGNMENT_BYTES) {
            Ok(layout) => layout,
            Err(_) => crate::fatal!("buffer of {len} bytes exceeds the address space"),
        }
    }
}

impl Deref for AlignedBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `pointer` is valid for `len` initialised bytes (zeroed at allocation) and
        // uniquely owned by this buffer.
        unsafe { std::slice::from_raw_parts(self.pointer.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: allocated in `zeroed` with exactly this layout.
            unsafe { dealloc(self.pointer.as_ptr(), Self::layout(self.len)) }
        }
    }
}

impl fmt::Debug for AlignedBuffer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "AlignedBuffer({} bytes)", self.len)
    }
}

/// Whether [`write_verified`] reads its writes back. One switch for the whole process, like a
/// mount option: it is a policy of the machine's storage, set once at start-up, not a
/// property of one file. On unless switched off.
static WRITE_VERIFICATION: AtomicBool = AtomicBool::new(true);

/// Switches the read-back of [`write_verified`] on or off for the whole process.
pub fn set_write_verification(enabled: bool) {
    WRITE_VERIFICATION.store(enabled, Ordering::Relaxed);
}

/// Writes `buffer` at `offset`, then reads the range back and compares it with what was
/// written: TigerBeetle's paired assertion, on the write path of every durable structure (WAL
/// batches and segment headers, B-tree pages and metas, partition meta files).
///
/// Why: a write the device reports as done may have been lost, torn or sent to another offset,
/// or its bytes may be stored flipped. Checksums catch that only when the bytes are read,
/// often at the next recovery, and when the damaged write is the last one of a log, recovery
/// cannot tell it from a crash before the write (FORMAT.md of shoal-store): the replica would
/// silently forget a promise or an accepted value it acknowledged. Reading back before the
/// write is acknowledged turns every fault the device shows at write time into an error
/// ([`StorageOperation::ReadBack`]), which the layers above treat as corruption and stop on.
/// What it cannot see: damage after the read back (bit rot at rest), and a device that answers
/// the read from a cache holding the right bytes while the media holds others; checksums on
/// every read remain the defence there.
///
/// Cost: one read of the same length per write, before the caller acknowledges anything. A
/// process may switch it off ([`set_write_verification`]) and accept the risk above for that
/// read; `shoal node --verify-writes false` does, and `shoal-bench engine` measures both.
pub async fn write_verified<F: Storage>(
    file: &F,
    buffer: F::Buffer,
    offset: u64,
) -> StorageResult<()> {
    if !WRITE_VERIFICATION.load(Ordering::Relaxed) {
        return file.write_at(buffer, offset).await;
    }
    let expected = buffer.to_vec();
    file.write_at(buffer, offset).await?;
    let read = file.read_at(offset, expected.len()).await?;
    if read[..] != expected[..] {
        let differs_at = read
            .iter()
            .zip(&expected)
            .position(|(read, expected)| read != expected)
            .unwrap_or(read.len().min(expected.len()));
        return Err(StorageError::new(
            StorageOperation::ReadBack,
            file.name(),
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} bytes written at offset {offset} read back as {} bytes differing from \
                     byte {differs_at} on",
                    expected.len(),
                    read.len()
                ),
            ),
        ));
    }
    Ok(())
}

/// fdatasync that never returns a failure: on error the process stops (contract 7).
///
/// Every caller that makes data durable (WAL group commit, B-tree checkpoint) goes through
/// this, so there is exactly one place where the "never retry a failed fsync" rule lives.
pub async fn sync_or_stop<F: Storage>(file: &F) {
    if let Err(error) = file.sync().await {
        crate::fatal!(
            "fdatasync failed; durability of {} is unknown: {error}",
            file.name()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffer_is_aligned_and_zeroed() {
        for len in [0, 1, 4096, 3 * 4096 + 7] {
            let buffer = AlignedBuffer::zeroed(len);
            assert_eq!(buffer.len(), len);
            assert_eq!(buffer.as_ptr() as usize % IO_ALIGNMENT_BYTES, 0);
            assert!(buffer.iter().all(|byte| *byte == 0));
        }
    }

    #[test]
    fn file_names_are_plain() {
        for good in ["wal-00000001.log", "a", "B_tree.7"] {
            assert!(
                check_file_name(StorageOperation::Open, good).is_ok(),
                "{good}"
            );
        }
        let long = "x".repeat(FILE_NAME_BYTES_MAX + 1);
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../etc",
            "spa ce",
            "nul\0",
            long.as_str(),
        ] {
            assert!(
                check_file_name(StorageOperation::Open, bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn alignment_is_enforced() {
        assert!(check_alignment(StorageOperation::Read, "f", 4096, 8192).is_ok());
        assert!(check_alignment(StorageOperation::Read, "f", 1, 4096).is_err());
        assert!(check_alignment(StorageOperation::Read, "f", 0, 100).is_err());
    }
}
