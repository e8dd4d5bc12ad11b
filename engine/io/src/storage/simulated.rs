//! In-memory storage for tests and the simulator.
//!
//! Deterministic and single-threaded. Each file keeps two images: `current` (what reads see) and
//! `durable` (what survives a power loss), plus the list of writes issued since the last sync.
//! [`SimulatedDisk::crash_image`] builds the disk a power loss would leave: every durable byte,
//! and for every unsynced write, each [`SECTOR_BYTES`] sector independently either landed or not,
//! as chosen by the seed. Directory entries follow the same rule at the granularity of a name:
//! creations and removals not yet made durable by a directory sync may or may not have happened.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use super::{
    AlignedBuffer, OpenMode, SECTOR_BYTES, Storage, StorageDirectory, StorageError,
    StorageOperation, StorageResult, check_alignment, check_file_name,
};
use crate::rng::SeededRng;

/// Identifies file contents independently of the name (like an inode): a removed file's handle
/// stays usable, and a crash can resurrect a name whose removal was not made durable.
type InodeNumber = u64;

#[derive(Debug, Default)]
struct InodeState {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, in issue order: (offset, bytes).
    unsynced_writes: Vec<(u64, Vec<u8>)>,
    /// Set when `allocate` grew `current` beyond `durable` since the last sync.
    unsynced_allocation: bool,
    sync_count: u64,
}

impl InodeState {
    fn sync(&mut self) {
        // Apply the pending writes to the durable image instead of copying the whole file, so a
        // sync costs what was written, not the size of the file.
        if self.durable.len() < self.current.len() {
            self.durable.resize(self.current.len(), 0);
        }
        for (offset, bytes) in self.unsynced_writes.drain(..) {
            let start = offset as usize;
            self.durable[start..start + bytes.len()].copy_from_slice(&bytes);
        }
        self.unsynced_allocation = false;
        self.sync_count += 1;
        debug_assert_eq!(self.durable, self.current);
    }

    /// The contents a power loss leaves (contract 4).
    fn crash_image(&self, rng: &mut SeededRng, sector_lands_probability: f64) -> Vec<u8> {
        let mut image = self.durable.clone();
        if self.unsynced_allocation && rng.chance(sector_lands_probability) {
            let allocated_len = self.current.len();
            if image.len() < allocated_len {
                image.resize(allocated_len, 0);
            }
        }
        for (offset, bytes) in &self.unsynced_writes {
            for (sector_index, sector) in bytes.chunks(SECTOR_BYTES).enumerate() {
                if !rng.chance(sector_lands_probability) {
                    continue;
                }
                let start = *offset as usize + sector_index * SECTOR_BYTES;
                if image.len() < start + sector.len() {
                    image.resize(start + sector.len(), 0);
                }
                image[start..start + sector.len()].copy_from_slice(sector);
            }
        }
        image
    }
}

#[derive(Debug, Default)]
struct DiskState {
    inodes: BTreeMap<InodeNumber, Rc<RefCell<InodeState>>>,
    next_inode: InodeNumber,
    /// The namespace reads see.
    names: BTreeMap<String, InodeNumber>,
    /// The namespace as of the last directory sync.
    durable_names: BTreeMap<String, InodeNumber>,
}

/// A simulated disk holding one data directory. Clones share the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimulatedDisk {
    state: Rc<RefCell<DiskState>>,
}

/// How likely each unsynced sector (and each unsynced directory change) is to survive a crash.
/// One half makes torn results as likely as clean ones.
pub const CRASH_SECTOR_LANDS_PROBABILITY: f64 = 0.5;

impl SimulatedDisk {
    pub fn new() -> Self {
        Self::default()
    }

    /// The disk a power loss at this instant would leave, with torn unsynced writes chosen by
    /// `rng`. The new disk is independent: nothing written through old handles reaches it.
    pub fn crash_image(&self, rng: &mut SeededRng) -> SimulatedDisk {
        self.crash_image_with(rng, CRASH_SECTOR_LANDS_PROBABILITY)
    }

    /// A crash in which no unsynced write and no unsynced directory change survives.
    pub fn crash_image_dropping_unsynced(&self) -> SimulatedDisk {
        self.crash_image_with(&mut SeededRng::new(0), 0.0)
    }

    /// A crash in which every completed write survives, as if it had been synced.
    pub fn crash_image_keeping_unsynced(&self) -> SimulatedDisk {
        self.crash_image_with(&mut SeededRng::new(0), 1.0)
    }

    fn crash_image_with(&self, rng: &mut SeededRng, lands_probability: f64) -> SimulatedDisk {
        let state = self.state.borrow();
        let mut survivors: BTreeMap<String, InodeNumber> = BTreeMap::new();
        // Each name whose entry differs between the durable and the current namespace may be in
        // either state after the crash.
        let all_names: std::collections::BTreeSet<&String> = state
            .names
            .keys()
            .chain(state.durable_names.keys())
            .collect();
        for name in all_names {
            let current = state.names.get(name);
            let durable = state.durable_names.get(name);
            let chosen = if current == durable || rng.chance(lands_probability) {
                current
            } else {
                durable
            };
            if let Some(inode) = chosen {
                survivors.insert(name.clone(), *inode);
            }
        }
        let mut crashed = DiskState::default();
        for (name, inode) in survivors {
            let contents = state.inodes[&inode]
                .borrow()
                .crash_image(rng, lands_probability);
            let new_inode = crashed.next_inode;
            crashed.next_inode += 1;
            crashed.inodes.insert(
                new_inode,
                Rc::new(RefCell::new(InodeState {
                    current: contents.clone(),
                    durable: contents,
                    ..InodeState::default()
                })),
            );
            crashed.names.insert(name.clone(), new_inode);
            crashed.durable_names.insert(name, new_inode);
        }
        SimulatedDisk {
            state: Rc::new(RefCell::new(crashed)),
        }
    }

    /// The directory view of this disk.
    pub fn directory(&self) -> SimulatedDirectory {
        SimulatedDirectory { disk: self.clone() }
    }

    /// Test access: the bytes reads would see, without alignment rules.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let inode = state.names.get(name)?;
        Some(state.inodes[inode].borrow().current.clone())
    }

    /// Test access: the bytes a crash is guaranteed to keep.
    pub fn durable_contents(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let inode = state.durable_names.get(name)?;
        Some(state.inodes[inode].borrow().durable.clone())
    }

    /// Simulates an external change of the stored bytes (for corruption tests): overwrites
    /// `bytes` at `offset` in both the current and the durable image.
    pub fn corrupt(&self, name: &str, offset: u64, bytes: &[u8]) -> bool {
        let state = self.state.borrow();
        let Some(inode) = state.names.get(name) else {
            return false;
        };
        let mut inode = state.inodes[inode].borrow_mut();
        let inode = &mut *inode;
        let end = offset as usize + bytes.len();
        for image in [&mut inode.current, &mut inode.durable] {
            if image.len() < end {
                image.resize(end, 0);
            }
            image[offset as usize..end].copy_from_slice(bytes);
        }
        true
    }

    /// How many times `name` was synced (tests use it to prove group commit batches syncs).
    pub fn sync_count(&self, name: &str) -> Option<u64> {
        let state = self.state.borrow();
        let inode = state.names.get(name)?;
        Some(state.inodes[inode].borrow().sync_count)
    }
}

/// The data directory of a [`SimulatedDisk`].
#[derive(Debug, Clone)]
pub struct SimulatedDirectory {
    disk: SimulatedDisk,
}

impl SimulatedDirectory {
    pub fn disk(&self) -> &SimulatedDisk {
        &self.disk
    }
}

impl StorageDirectory for SimulatedDirectory {
    type File = SimulatedFile;

    async fn open(&self, name: &str, mode: OpenMode) -> StorageResult<SimulatedFile> {
        check_file_name(StorageOperation::Open, name)?;
        let mut state = self.disk.state.borrow_mut();
        let existing = state.names.get(name).copied();
        let inode_number = match (existing, mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(StorageError::new(
                    StorageOperation::Open,
                    name,
                    io::Error::from(io::ErrorKind::AlreadyExists),
                ));
            }
            (None, OpenMode::Existing) => {
                return Err(StorageError::new(
                    StorageOperation::Open,
                    name,
                    io::Error::from(io::ErrorKind::NotFound),
                ));
            }
            (Some(inode), _) => inode,
            (None, _) => {
                let inode = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(inode, Rc::default());
                state.names.insert(name.to_owned(), inode);
                inode
            }
        };
        Ok(SimulatedFile {
            name: name.to_owned(),
            inode: Rc::clone(&state.inodes[&inode_number]),
        })
    }

    async fn list(&self) -> StorageResult<Vec<String>> {
        Ok(self.disk.state.borrow().names.keys().cloned().collect())
    }

    async fn remove(&self, name: &str) -> StorageResult<()> {
        check_file_name(StorageOperation::Remove, name)?;
        let mut state = self.disk.state.borrow_mut();
        match state.names.remove(name) {
            Some(_) => Ok(()),
            None => Err(StorageError::new(
                StorageOperation::Remove,
                name,
                io::Error::from(io::ErrorKind::NotFound),
            )),
        }
    }

    async fn sync(&self) -> StorageResult<()> {
        let mut state = self.disk.state.borrow_mut();
        state.durable_names = state.names.clone();
        // Inodes that no name reaches, durably or not, can go.
        let reachable: std::collections::BTreeSet<InodeNumber> =
            state.names.values().copied().collect();
        state
            .inodes
            .retain(|inode, contents| reachable.contains(inode) || Rc::strong_count(contents) > 1);
        Ok(())
    }
}

/// An open simulated file.
#[derive(Debug)]
pub struct SimulatedFile {
    name: String,
    inode: Rc<RefCell<InodeState>>,
}

impl Storage for SimulatedFile {
    type Buffer = AlignedBuffer;
    type ReadBuffer = AlignedBuffer;

    fn name(&self) -> &str {
        &self.name
    }

    fn allocate_buffer(&self, len: usize) -> AlignedBuffer {
        AlignedBuffer::zeroed(len)
    }

    async fn read_at(&self, offset: u64, len: usize) -> StorageResult<AlignedBuffer> {
        check_alignment(StorageOperation::Read, &self.name, offset, len)?;
        let inode = self.inode.borrow();
        let file_len = inode.current.len() as u64;
        let start = offset.min(file_len) as usize;
        let end = (offset.saturating_add(len as u64)).min(file_len) as usize;
        Ok(AlignedBuffer::from_slice(&inode.current[start..end]))
    }

    async fn write_at(&self, buffer: AlignedBuffer, offset: u64) -> StorageResult<()> {
        check_alignment(StorageOperation::Write, &self.name, offset, buffer.len())?;
        self.write_unchecked(&buffer, offset);
        Ok(())
    }

    async fn sync(&self) -> StorageResult<()> {
        self.inode.borrow_mut().sync();
        Ok(())
    }

    async fn allocate(&self, len: u64) -> StorageResult<()> {
        let mut inode = self.inode.borrow_mut();
        if (inode.current.len() as u64) < len {
            inode.current.resize(len as usize, 0);
            inode.unsynced_allocation = true;
        }
        Ok(())
    }

    async fn len(&self) -> StorageResult<u64> {
        Ok(self.inode.borrow().current.len() as u64)
    }

    async fn close(self) -> StorageResult<()> {
        Ok(())
    }
}

impl SimulatedFile {
    /// Writes without the alignment check; the faulty wrapper uses it for torn and misdirected
    /// writes, which are sector-sized.
    pub(crate) fn write_unchecked(&self, bytes: &[u8], offset: u64) {
        let mut inode = self.inode.borrow_mut();
        let start = offset as usize;
        let end = start + bytes.len();
        if inode.current.len() < end {
            inode.current.resize(end, 0);
        }
        inode.current[start..end].copy_from_slice(bytes);
        inode.unsynced_writes.push((offset, bytes.to_vec()));
    }
}
