//! Port selection for the tests that start `shoal` processes.
//!
//! A port taken from `bind(127.0.0.1:0)` lies in the kernel's ephemeral range, the same range
//! every outgoing connection draws its local port from. Between choosing the port and starting
//! the process on it (a node restarted after a kill, or a node started late, can be tens of
//! seconds later) an outgoing connection of the router or of another node can take it, and the
//! process then fails with "Address already in use" (CI saw exactly this). Ports below the
//! ephemeral range are never handed out automatically, so a port checked free there stays free
//! unless someone binds it on purpose.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod dev;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lowest port the tests use: above the well-known and registered ports most services
/// listen on by default.
const LOWEST_TEST_PORT: u16 = 20_000;
/// Linux's default start of the ephemeral range, used when /proc cannot be read.
const DEFAULT_EPHEMERAL_START: u16 = 32_768;
const PICK_ATTEMPTS: usize = 10_000;

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

/// A small generator, seeded by the process id and the clock, so concurrent test processes
/// (and tests within one process, through the shared counter) start at different places.
fn next_candidate(span: u16) -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0);
    let mut mixed = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    // splitmix64's finaliser
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    mixed ^= mixed >> 31;
    (mixed % u64::from(span)) as u16
}

/// Every port this test process has handed out: never handed out twice, even after the
/// process that used it has stopped and released it.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `count` blocks of `width` consecutive free ports each, all below the ephemeral range and
/// distinct from each other and from every port handed out before in this process, returned as
/// each block's first port.
pub fn free_port_blocks(count: usize, width: u16) -> Vec<u16> {
    let offsets: Vec<u16> = (0..width).collect();
    free_port_layouts(count, &offsets)
}

/// `count` bases B, each with every port B + offset free, below the ephemeral range and
/// distinct from each other and from every port handed out before in this process.
pub fn free_port_layouts(count: usize, offsets: &[u16]) -> Vec<u16> {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let top = ephemeral_start();
    let width = offsets.iter().copied().max().unwrap_or(0) + 1;
    assert!(
        top > LOWEST_TEST_PORT + width,
        "the ephemeral range starts at {top}, leaving no room for test ports"
    );
    let span = top - LOWEST_TEST_PORT - width;
    // Held until every layout is chosen (the set already keeps them apart; holding them also
    // keeps another process from binding them while we choose).
    let mut held: Vec<TcpListener> = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..PICK_ATTEMPTS {
        if bases.len() == count {
            return bases;
        }
        let base = LOWEST_TEST_PORT + next_candidate(span);
        if offsets
            .iter()
            .any(|offset| handed_out.contains(&(base + offset)))
        {
            continue;
        }
        let layout: Option<Vec<TcpListener>> = offsets
            .iter()
            .map(|offset| TcpListener::bind(("127.0.0.1", base + offset)).ok())
            .collect();
        if let Some(layout) = layout {
            held.extend(layout);
            handed_out.extend(offsets.iter().map(|offset| base + offset));
            bases.push(base);
        }
    }
    panic!("no {count} free port layouts below {top}");
}

/// `count` distinct free ports below the ephemeral range.
pub fn free_ports(count: usize) -> Vec<u16> {
    free_port_blocks(count, 1)
}

/// One free port below the ephemeral range.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// How often a watchdog looks whether its test finished.
const WATCHDOG_POLL: Duration = Duration::from_millis(100);

/// Starts a watchdog for a test of processes: unless the returned flag is set within `limit`,
/// it runs `stop_processes` (so nothing outlives the test), says that `what` hung, and aborts
/// the test binary, failing loudly instead of hanging CI.
pub fn watchdog(
    limit: Duration,
    what: &'static str,
    stop_processes: impl FnOnce() + Send + 'static,
) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let finished = done.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < limit {
            if finished.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(WATCHDOG_POLL);
        }
        stop_processes();
        eprintln!("watchdog: {what} still running after {limit:?}");
        std::process::abort();
    });
    done
}
