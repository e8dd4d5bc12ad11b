//! The IO seam of a Shoal storage node.
//!
//! Everything that touches a disk or reads a clock goes through this crate, so that the same
//! WAL, B-tree and replica code runs in production (glommio DMA files, the kernel's monotonic
//! clock) and in the deterministic simulator (in-memory storage that can crash and lie, virtual
//! time, seeded randomness). See README.md for which core each object lives on.

pub mod clock;
pub mod fatal;
pub mod probe;
/// The seeded random source lives in the dependency-free `shoal-rng`; re-exported here.
pub use shoal_rng as rng;
pub mod storage;
pub mod tcp;
pub mod testing;

pub use clock::{Clock, MonotonicTime, SimulatedClock, SystemClock};
pub use rng::SeededRng;
pub use storage::{
    AlignedBuffer, IO_ALIGNMENT_BYTES, OpenMode, SECTOR_BYTES, Storage, StorageDirectory,
    StorageError, StorageOperation, StorageResult,
};
