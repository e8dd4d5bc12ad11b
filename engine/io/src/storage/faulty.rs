//! Fault injection over the simulated storage.
//!
//! Every fault has its own rate, and every decision draws from one seeded stream, so a failing
//! seed replays exactly. The kinds model what real devices and kernels do:
//!
//! | kind                | what happens                                                   | reported |
//! |---------------------|----------------------------------------------------------------|----------|
//! | `ReadError`         | the read fails with EIO                                        | error    |
//! | `WriteError`        | a prefix of the write's sectors (maybe none) lands, then EIO   | error    |
//! | `SyncError`         | fdatasync fails with EIO; nothing becomes durable              | error    |
//! | `TornWrite`         | only a proper prefix of the write's sectors lands              | success  |
//! | `LostWrite`         | nothing lands                                                  | success  |
//! | `MisdirectedWrite`  | the data lands at another aligned offset of the same file      | success  |
//! | `ReadBitFlip`       | one bit of the returned data is flipped (transient)            | success  |
//! | `WriteBitFlip`      | one bit of the stored data is flipped (at rest)                | success  |
//! | `Latency`           | the operation waits on the simulated clock first               | success  |
//!
//! The silent kinds are the ones that only checksums can catch; the log of injected faults
//! ([`FaultInjector::injected`]) lets tests prove that every one of them was detected.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::simulated::{SimulatedDirectory, SimulatedFile};
use super::{
    AlignedBuffer, IO_ALIGNMENT_BYTES, OpenMode, SECTOR_BYTES, Storage, StorageDirectory,
    StorageError, StorageOperation, StorageResult, check_alignment,
};
use crate::clock::SimulatedClock;
use crate::rng::SeededRng;

/// The probability of each fault per operation it applies to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultRates {
    pub read_error: f64,
    pub write_error: f64,
    pub sync_error: f64,
    pub torn_write: f64,
    pub lost_write: f64,
    pub misdirected_write: f64,
    pub read_bit_flip: f64,
    pub write_bit_flip: f64,
    pub latency: f64,
    /// Upper bound of an injected delay (uniform in [0, latency_max]).
    pub latency_max: Duration,
}

/// Swarm testing: the largest rate drawn per fault kind. Ten percent of operations failing is
/// far beyond any real device, which is the point: rare paths run on every seed.
pub const SWARM_FAULT_RATE_MAX: f64 = 0.10;
/// Swarm testing: the largest injected latency.
pub const SWARM_LATENCY_MAX: Duration = Duration::from_millis(20);

impl FaultRates {
    pub fn none() -> Self {
        Self::default()
    }

    /// Rates drawn per seed (swarm testing, as in TigerBeetle's VOPR): each kind is switched off
    /// with probability one half, otherwise drawn uniformly up to [`SWARM_FAULT_RATE_MAX`].
    pub fn swarm(rng: &mut SeededRng) -> Self {
        let mut draw = || {
            if rng.chance(0.5) {
                0.0
            } else {
                rng.unit_f64() * SWARM_FAULT_RATE_MAX
            }
        };
        Self {
            read_error: draw(),
            write_error: draw(),
            sync_error: draw(),
            torn_write: draw(),
            lost_write: draw(),
            misdirected_write: draw(),
            read_bit_flip: draw(),
            write_bit_flip: draw(),
            latency: draw(),
            latency_max: SWARM_LATENCY_MAX,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    ReadError,
    WriteError,
    SyncError,
    TornWrite,
    LostWrite,
    MisdirectedWrite,
    ReadBitFlip,
    WriteBitFlip,
    Latency,
}

/// One injected fault, for the test's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    pub kind: FaultKind,
    pub file: String,
    /// The offset the operation addressed.
    pub offset: u64,
    /// For misdirected writes: where the data went instead. For bit flips: the flipped byte.
    pub actual_offset: Option<u64>,
}

/// Decides which faults happen. Shared by every file of a [`FaultyDirectory`].
#[derive(Debug)]
pub struct FaultInjector {
    rates: RefCell<FaultRates>,
    rng: RefCell<SeededRng>,
    clock: Option<SimulatedClock>,
    enabled: Cell<bool>,
    injected: RefCell<Vec<InjectedFault>>,
}

impl FaultInjector {
    /// Latency faults need `clock`; without one they are not injected.
    pub fn new(rates: FaultRates, rng: SeededRng, clock: Option<SimulatedClock>) -> Rc<Self> {
        Rc::new(Self {
            rates: RefCell::new(rates),
            rng: RefCell::new(rng),
            clock,
            enabled: Cell::new(true),
            injected: RefCell::new(Vec::new()),
        })
    }

    /// Turns injection on or off (a simulator heals storage in its liveness phase).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.set(enabled);
    }

    pub fn set_rates(&self, rates: FaultRates) {
        *self.rates.borrow_mut() = rates;
    }

    /// Every fault injected so far, in order.
    pub fn injected(&self) -> Vec<InjectedFault> {
        self.injected.borrow().clone()
    }

    pub fn count(&self, kind: FaultKind) -> usize {
        self.injected
            .borrow()
            .iter()
            .filter(|fault| fault.kind == kind)
            .count()
    }

    fn roll(&self, rate: impl Fn(&FaultRates) -> f64) -> bool {
        self.enabled.get() && self.rng.borrow_mut().chance(rate(&self.rates.borrow()))
    }

    fn below(&self, bound: u64) -> u64 {
        self.rng.borrow_mut().below(bound)
    }

    fn record(&self, kind: FaultKind, file: &str, offset: u64, actual_offset: Option<u64>) {
        self.injected.borrow_mut().push(InjectedFault {
            kind,
            file: file.to_owned(),
            offset,
            actual_offset,
        });
    }

    async fn maybe_delay(&self, file: &str, offset: u64) {
        let Some(clock) = &self.clock else { return };
        if !self.roll(|rates| rates.latency) {
            return;
        }
        let max_nanos = u64::try_from(self.rates.borrow().latency_max.as_nanos()).unwrap_or(0);
        let delay = Duration::from_nanos(self.below(max_nanos.saturating_add(1)));
        self.record(FaultKind::Latency, file, offset, None);
        clock.sleep(delay).await;
    }

    fn io_error(operation: StorageOperation, file: &str) -> StorageError {
        StorageError::new(operation, file, io::Error::from_raw_os_error(libc::EIO))
    }
}

/// A data directory whose files misbehave at the injector's rates.
#[derive(Debug, Clone)]
pub struct FaultyDirectory {
    inner: SimulatedDirectory,
    injector: Rc<FaultInjector>,
}

impl FaultyDirectory {
    pub fn new(inner: SimulatedDirectory, injector: Rc<FaultInjector>) -> Self {
        Self { inner, injector }
    }

    pub fn injector(&self) -> &Rc<FaultInjector> {
        &self.injector
    }

    pub fn inner(&self) -> &SimulatedDirectory {
        &self.inner
    }
}

impl StorageDirectory for FaultyDirectory {
    type File = FaultyFile;

    async fn open(&self, name: &str, mode: OpenMode) -> StorageResult<FaultyFile> {
        let inner = self.inner.open(name, mode).await?;
        Ok(FaultyFile {
            inner,
            injector: Rc::clone(&self.injector),
        })
    }

    async fn list(&self) -> StorageResult<Vec<String>> {
        self.inner.list().await
    }

    async fn remove(&self, name: &str) -> StorageResult<()> {
        self.inner.remove(name).await
    }

    async fn sync(&self) -> StorageResult<()> {
        if self.injector.roll(|rates| rates.sync_error) {
            self.injector.record(FaultKind::SyncError, ".", 0, None);
            return Err(FaultInjector::io_error(
                StorageOperation::SyncDirectory,
                ".",
            ));
        }
        self.inner.sync().await
    }
}

/// A file of a [`FaultyDirectory`].
#[derive(Debug)]
pub struct FaultyFile {
    inner: SimulatedFile,
    injector: Rc<FaultInjector>,
}

impl Storage for FaultyFile {
    type Buffer = AlignedBuffer;
    type ReadBuffer = AlignedBuffer;

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn allocate_buffer(&self, len: usize) -> AlignedBuffer {
        AlignedBuffer::zeroed(len)
    }

    async fn read_at(&self, offset: u64, len: usize) -> StorageResult<AlignedBuffer> {
        check_alignment(StorageOperation::Read, self.name(), offset, len)?;
        let injector = &self.injector;
        injector.maybe_delay(self.name(), offset).await;
        if injector.roll(|rates| rates.read_error) {
            injector.record(FaultKind::ReadError, self.name(), offset, None);
            return Err(FaultInjector::io_error(StorageOperation::Read, self.name()));
        }
        let mut data = self.inner.read_at(offset, len).await?;
        if !data.is_empty() && injector.roll(|rates| rates.read_bit_flip) {
            let bit = injector.below(data.len() as u64 * 8);
            data[(bit / 8) as usize] ^= 1 << (bit % 8);
            injector.record(
                FaultKind::ReadBitFlip,
                self.name(),
                offset,
                Some(offset + bit / 8),
            );
        }
        Ok(data)
    }

    async fn write_at(&self, mut buffer: AlignedBuffer, offset: u64) -> StorageResult<()> {
        check_alignment(StorageOperation::Write, self.name(), offset, buffer.len())?;
        let injector = &self.injector;
        let name = self.name().to_owned();
        injector.maybe_delay(&name, offset).await;
        let sector_count = (buffer.len() / SECTOR_BYTES) as u64;
        if buffer.is_empty() {
            return Ok(());
        }
        if injector.roll(|rates| rates.write_error) {
            let landed = injector.below(sector_count) as usize * SECTOR_BYTES;
            self.inner.write_unchecked(&buffer[..landed], offset);
            injector.record(FaultKind::WriteError, &name, offset, None);
            return Err(FaultInjector::io_error(StorageOperation::Write, &name));
        }
        if injector.roll(|rates| rates.lost_write) {
            injector.record(FaultKind::LostWrite, &name, offset, None);
            return Ok(());
        }
        if injector.roll(|rates| rates.torn_write) {
            // A proper, non-empty prefix: 1..sector_count sectors.
            let landed = (1 + injector.below(sector_count - 1)) as usize * SECTOR_BYTES;
            self.inner.write_unchecked(&buffer[..landed], offset);
            injector.record(FaultKind::TornWrite, &name, offset, None);
            return Ok(());
        }
        if injector.roll(|rates| rates.misdirected_write) {
            let file_len = self.inner.len().await?.max(offset + buffer.len() as u64);
            let slots = (file_len / IO_ALIGNMENT_BYTES as u64).max(2);
            let mut target = injector.below(slots) * IO_ALIGNMENT_BYTES as u64;
            if target == offset {
                target = (target + IO_ALIGNMENT_BYTES as u64) % (slots * IO_ALIGNMENT_BYTES as u64);
            }
            self.inner.write_unchecked(&buffer, target);
            injector.record(FaultKind::MisdirectedWrite, &name, offset, Some(target));
            return Ok(());
        }
        if injector.roll(|rates| rates.write_bit_flip) {
            let bit = injector.below(buffer.len() as u64 * 8);
            buffer[(bit / 8) as usize] ^= 1 << (bit % 8);
            injector.record(
                FaultKind::WriteBitFlip,
                &name,
                offset,
                Some(offset + bit / 8),
            );
        }
        self.inner.write_unchecked(&buffer, offset);
        Ok(())
    }

    async fn sync(&self) -> StorageResult<()> {
        let injector = &self.injector;
        injector.maybe_delay(self.name(), 0).await;
        if injector.roll(|rates| rates.sync_error) {
            injector.record(FaultKind::SyncError, self.name(), 0, None);
            return Err(FaultInjector::io_error(StorageOperation::Sync, self.name()));
        }
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
