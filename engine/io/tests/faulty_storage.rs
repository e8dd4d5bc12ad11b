//! Each fault kind of the faulty storage, alone at rate 1, has exactly its documented effect;
//! rates are honoured; the same seed injects the same faults.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::io::ErrorKind;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::future::block_on;
use shoal_io::storage::faulty::{FaultInjector, FaultKind, FaultRates, FaultyDirectory};
use shoal_io::storage::simulated::SimulatedDisk;
use shoal_io::{
    Clock, IO_ALIGNMENT_BYTES, MonotonicTime, OpenMode, SECTOR_BYTES, SeededRng, SimulatedClock,
    Storage, StorageDirectory,
};

const BLOCK: usize = IO_ALIGNMENT_BYTES;
const OLD: u8 = 0x11;
const NEW: u8 = 0xEE;

struct Fixture {
    disk: SimulatedDisk,
    directory: FaultyDirectory,
}

/// A disk with one synced file "f" of four blocks of OLD bytes, faults switched off.
fn fixture(rates: FaultRates, clock: Option<SimulatedClock>) -> Fixture {
    let disk = SimulatedDisk::new();
    let injector = FaultInjector::new(rates, SeededRng::new(99), clock);
    injector.set_enabled(false);
    let directory = FaultyDirectory::new(disk.directory(), injector);
    block_on(async {
        let file = directory.open("f", OpenMode::CreateNew).await.unwrap();
        let mut buffer = file.allocate_buffer(4 * BLOCK);
        buffer.fill(OLD);
        file.write_at(buffer, 0).await.unwrap();
        file.sync().await.unwrap();
        directory.sync().await.unwrap();
    });
    directory.injector().set_enabled(true);
    Fixture { disk, directory }
}

fn only(set: impl FnOnce(&mut FaultRates)) -> FaultRates {
    let mut rates = FaultRates::none();
    set(&mut rates);
    rates
}

fn write_new_block(fixture: &Fixture, block: u64) -> Result<(), shoal_io::StorageError> {
    block_on(async {
        let file = open_existing(fixture).await;
        let mut buffer = file.allocate_buffer(BLOCK);
        buffer.fill(NEW);
        file.write_at(buffer, block * BLOCK as u64).await
    })
}

async fn open_existing(fixture: &Fixture) -> shoal_io::storage::faulty::FaultyFile {
    fixture
        .directory
        .open("f", OpenMode::Existing)
        .await
        .unwrap()
}

fn stored_block(fixture: &Fixture, block: usize) -> Vec<u8> {
    fixture.disk.contents("f").unwrap()[block * BLOCK..(block + 1) * BLOCK].to_vec()
}

#[test]
fn read_error_fails_the_read() {
    let fixture = fixture(only(|rates| rates.read_error = 1.0), None);
    let error = block_on(async {
        let file = open_existing(&fixture).await;
        file.read_at(0, BLOCK).await.err().unwrap()
    });
    assert_eq!(error.raw_os_error(), Some(libc::EIO));
    assert_eq!(fixture.directory.injector().count(FaultKind::ReadError), 1);
}

#[test]
fn write_error_fails_and_lands_at_most_a_prefix() {
    let fixture = fixture(only(|rates| rates.write_error = 1.0), None);
    let error = write_new_block(&fixture, 1).err().unwrap();
    assert_eq!(error.raw_os_error(), Some(libc::EIO));
    let block = stored_block(&fixture, 1);
    let landed = block.iter().take_while(|byte| **byte == NEW).count();
    assert_eq!(landed % SECTOR_BYTES, 0);
    assert!(landed < BLOCK);
    assert!(block[landed..].iter().all(|byte| *byte == OLD));
}

#[test]
fn sync_error_fails_and_makes_nothing_durable() {
    let fixture = fixture(FaultRates::none(), None);
    write_new_block(&fixture, 0).unwrap();
    fixture
        .directory
        .injector()
        .set_rates(only(|rates| rates.sync_error = 1.0));
    let error = block_on(async {
        let file = open_existing(&fixture).await;
        file.sync().await.err().unwrap()
    });
    assert_eq!(error.raw_os_error(), Some(libc::EIO));
    let durable = fixture.disk.durable_contents("f").unwrap();
    assert!(durable[..BLOCK].iter().all(|byte| *byte == OLD));
}

#[test]
fn torn_write_reports_success_and_lands_a_proper_prefix() {
    let fixture = fixture(only(|rates| rates.torn_write = 1.0), None);
    write_new_block(&fixture, 2).unwrap();
    let block = stored_block(&fixture, 2);
    let landed = block.iter().take_while(|byte| **byte == NEW).count();
    assert!((SECTOR_BYTES..BLOCK).contains(&landed), "landed {landed}");
    assert_eq!(landed % SECTOR_BYTES, 0);
    assert!(block[landed..].iter().all(|byte| *byte == OLD));
}

#[test]
fn lost_write_reports_success_and_lands_nothing() {
    let fixture = fixture(only(|rates| rates.lost_write = 1.0), None);
    write_new_block(&fixture, 2).unwrap();
    assert!(stored_block(&fixture, 2).iter().all(|byte| *byte == OLD));
    assert_eq!(fixture.directory.injector().count(FaultKind::LostWrite), 1);
}

#[test]
fn misdirected_write_lands_elsewhere() {
    let fixture = fixture(only(|rates| rates.misdirected_write = 1.0), None);
    write_new_block(&fixture, 1).unwrap();
    assert!(stored_block(&fixture, 1).iter().all(|byte| *byte == OLD));
    let fault = &fixture.directory.injector().injected()[0];
    assert_eq!(fault.kind, FaultKind::MisdirectedWrite);
    let target = fault.actual_offset.unwrap() as usize;
    assert_ne!(target, BLOCK);
    assert_eq!(target % BLOCK, 0);
    let contents = fixture.disk.contents("f").unwrap();
    assert!(
        contents[target..target + BLOCK]
            .iter()
            .all(|byte| *byte == NEW)
    );
}

fn differing_bits(left: &[u8], right: &[u8]) -> u32 {
    left.iter()
        .zip(right)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum()
}

#[test]
fn write_bit_flip_stores_exactly_one_flipped_bit() {
    let fixture = fixture(only(|rates| rates.write_bit_flip = 1.0), None);
    write_new_block(&fixture, 3).unwrap();
    assert_eq!(differing_bits(&stored_block(&fixture, 3), &[NEW; BLOCK]), 1);
}

#[test]
fn read_bit_flip_is_transient() {
    let fixture = fixture(only(|rates| rates.read_bit_flip = 1.0), None);
    let read = block_on(async {
        let file = open_existing(&fixture).await;
        file.read_at(0, BLOCK).await.unwrap().to_vec()
    });
    assert_eq!(differing_bits(&read, &[OLD; BLOCK]), 1);
    assert!(stored_block(&fixture, 0).iter().all(|byte| *byte == OLD));
}

#[test]
fn latency_waits_on_the_simulated_clock() {
    let clock = SimulatedClock::new(MonotonicTime::ZERO);
    let rates = only(|rates| {
        rates.latency = 1.0;
        rates.latency_max = Duration::from_millis(5);
    });
    let fixture = fixture(rates, Some(clock.clone()));
    let file = block_on(open_existing(&fixture));
    let mut read = pin!(file.read_at(0, BLOCK));
    let mut context = Context::from_waker(Waker::noop());
    let mut advanced = Duration::ZERO;
    let result = loop {
        if let Poll::Ready(result) = read.as_mut().poll(&mut context) {
            break result;
        }
        let before = clock.now();
        assert!(
            clock.advance_to_next_timer(),
            "a pending read must be waiting on a timer"
        );
        advanced += clock.now().saturating_duration_since(before);
    };
    assert_eq!(result.unwrap().len(), BLOCK);
    assert!(advanced <= Duration::from_millis(5));
    assert_eq!(fixture.directory.injector().count(FaultKind::Latency), 1);
}

#[test]
fn rates_are_honoured_and_seeds_replay() {
    let run = |seed: u64| {
        let disk = SimulatedDisk::new();
        let injector = FaultInjector::new(
            only(|rates| rates.lost_write = 0.1),
            SeededRng::new(seed),
            None,
        );
        let directory = FaultyDirectory::new(disk.directory(), injector.clone());
        block_on(async {
            let file = directory.open("f", OpenMode::CreateNew).await.unwrap();
            for block in 0..2_000u64 {
                let buffer = file.allocate_buffer(BLOCK);
                file.write_at(buffer, (block % 16) * BLOCK as u64)
                    .await
                    .unwrap();
            }
        });
        injector.injected()
    };
    let first = run(5);
    // 2,000 draws at p = 0.1: mean 200, standard deviation about 13.
    assert!(
        (140..=260).contains(&first.len()),
        "{} lost writes",
        first.len()
    );
    assert_eq!(run(5), first);
    assert_ne!(run(6), first);
}

#[test]
fn swarm_rates_are_bounded_and_seeded() {
    let mut rng = SeededRng::new(3);
    let rates = FaultRates::swarm(&mut rng);
    for rate in [
        rates.read_error,
        rates.write_error,
        rates.torn_write,
        rates.lost_write,
    ] {
        assert!((0.0..=shoal_io::storage::faulty::SWARM_FAULT_RATE_MAX).contains(&rate));
    }
    assert_eq!(FaultRates::swarm(&mut SeededRng::new(3)), rates);
}

#[test]
fn misaligned_requests_are_rejected_before_any_fault() {
    let fixture = fixture(only(|rates| rates.lost_write = 1.0), None);
    let error = block_on(async {
        let file = open_existing(&fixture).await;
        let buffer = file.allocate_buffer(100);
        file.write_at(buffer, 0).await.err().unwrap()
    });
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(fixture.directory.injector().injected().is_empty());
}

#[test]
fn a_failed_sync_stops_instead_of_returning() {
    shoal_io::fatal::test_hook::turn_stops_into_panics();
    let fixture = fixture(only(|rates| rates.sync_error = 1.0), None);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(async {
            let file = open_existing(&fixture).await;
            shoal_io::storage::sync_or_stop(&file).await;
        })
    }));
    let payload = outcome.expect_err("sync_or_stop returned after a failed sync");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.starts_with("fatal: fdatasync failed"), "{message}");
}

/// `write_verified` turns every fault a device shows at write time into a `ReadBack` error,
/// and passes a write that landed intact.
#[test]
fn write_verified_reports_every_silent_write_fault_and_passes_a_clean_write() {
    use shoal_io::StorageOperation;
    use shoal_io::storage::write_verified;
    let silent_kinds: [fn(&mut FaultRates); 4] = [
        |rates| rates.lost_write = 1.0,
        |rates| rates.torn_write = 1.0,
        |rates| rates.misdirected_write = 1.0,
        |rates| rates.write_bit_flip = 1.0,
    ];
    for set in silent_kinds {
        let fixture = fixture(only(set), None);
        let outcome = block_on(async {
            let file = open_existing(&fixture).await;
            let mut buffer = file.allocate_buffer(2 * BLOCK);
            buffer.fill(NEW);
            write_verified(&file, buffer, BLOCK as u64).await
        });
        let error = outcome.expect_err("the read back must differ");
        assert_eq!(error.operation, StorageOperation::ReadBack, "{error}");
        assert_eq!(error.kind(), ErrorKind::InvalidData);
    }
    let fixture = fixture(FaultRates::none(), None);
    block_on(async {
        let file = open_existing(&fixture).await;
        let mut buffer = file.allocate_buffer(BLOCK);
        buffer.fill(NEW);
        write_verified(&file, buffer, 0).await.unwrap();
    });
    assert_eq!(fixture.disk.contents("f").unwrap()[..BLOCK], [NEW; BLOCK]);
}
