//! Blocking probes of the machine's I/O path, for `shoal doctor` and the benchmarks' physical
//! floor. Not for the data path: these use plain syscalls on the calling thread.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::storage::{AlignedBuffer, IO_ALIGNMENT_BYTES};

/// Name of the scratch file the probes create (dot-prefixed: reserved, never a data file).
pub const PROBE_FILE_NAME: &str = ".shoal-probe";

/// Direct-I/O alignment requirements the kernel reports for a file (statx STATX_DIOALIGN,
/// Linux 6.1+). `None` when the kernel or filesystem does not report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectIoAlignment {
    pub memory_bytes: u32,
    pub offset_bytes: u32,
}

/// A scratch file opened with O_DIRECT in a directory, removed on drop.
#[derive(Debug)]
pub struct DirectProbeFile {
    file: File,
    path: PathBuf,
}

impl DirectProbeFile {
    /// Creates the probe file with O_DIRECT. Fails as the data path would: EINVAL if the
    /// filesystem has no direct I/O (tmpfs), EROFS/EACCES if the directory is not writable.
    pub fn create(directory: &Path) -> io::Result<Self> {
        let path = directory.join(PROBE_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)?;
        Ok(Self { file, path })
    }

    pub fn alignment(&self) -> io::Result<Option<DirectIoAlignment>> {
        // SAFETY: statx only writes into `statx_buffer`; an empty path with AT_EMPTY_PATH
        // refers to the open descriptor.
        let mut statx_buffer: libc::statx = unsafe { std::mem::zeroed() };
        let result = unsafe {
            libc::statx(
                self.file.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                libc::STATX_DIOALIGN,
                &mut statx_buffer,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        if statx_buffer.stx_mask & libc::STATX_DIOALIGN == 0
            || statx_buffer.stx_dio_offset_align == 0
        {
            return Ok(None);
        }
        Ok(Some(DirectIoAlignment {
            memory_bytes: statx_buffer.stx_dio_mem_align,
            offset_bytes: statx_buffer.stx_dio_offset_align,
        }))
    }

    /// `samples` rounds of one 4 KiB O_DIRECT write at offset 0 followed by fdatasync: the
    /// cheapest durable write this device can do, which is the floor every durable-put figure
    /// is compared with. Returns the duration of each round.
    pub fn write_sync_latencies(&self, samples: usize) -> io::Result<Vec<Duration>> {
        let mut buffer = AlignedBuffer::zeroed(IO_ALIGNMENT_BYTES);
        let mut latencies = Vec::with_capacity(samples);
        for round in 0..samples {
            // Change the bytes every round so no layer can skip an identical write.
            buffer.fill(round as u8 | 1);
            let started = Instant::now();
            self.file.write_all_at(&buffer, 0)?;
            self.file.sync_data()?;
            latencies.push(started.elapsed());
        }
        Ok(latencies)
    }

    /// Writes one block, syncs and reads it back through O_DIRECT.
    pub fn round_trip(&self) -> io::Result<()> {
        let mut written = AlignedBuffer::zeroed(IO_ALIGNMENT_BYTES);
        for (index, byte) in written.iter_mut().enumerate() {
            *byte = (index % 251) as u8;
        }
        self.file.write_all_at(&written, 0)?;
        self.file.sync_data()?;
        let mut read = AlignedBuffer::zeroed(IO_ALIGNMENT_BYTES);
        self.file.read_exact_at(&mut read, 0)?;
        if *read != *written {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "read back differs from write",
            ));
        }
        Ok(())
    }
}

impl Drop for DirectProbeFile {
    fn drop(&mut self) {
        // Best effort: a leftover dot-file is ignored by every data directory listing.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The value at `quantile` (0..=1) of `durations`, by nearest rank. `None` if empty.
pub fn quantile(durations: &[Duration], quantile: f64) -> Option<Duration> {
    if durations.is_empty() {
        return None;
    }
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    let rank = ((quantile.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).max(1);
    Some(sorted[rank.min(sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_by_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(quantile(&values, 0.5), Some(Duration::from_micros(50)));
        assert_eq!(quantile(&values, 0.99), Some(Duration::from_micros(99)));
        assert_eq!(quantile(&values, 1.0), Some(Duration::from_micros(100)));
        assert_eq!(quantile(&values, 0.0), Some(Duration::from_micros(1)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
