//! Drives a workload against a target: closed loop (N clients, each waiting for its answer
//! before the next request) and open loop (a fixed arrival rate; latency measured from the
//! intended send time, so a slow answer cannot hide the requests it delayed).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shoal_rng::SeededRng;

use super::keys::{Distribution, KeyChooser};
use super::targets::{OpError, Target};
use crate::floor::{self, Percentiles};

/// An open-loop run is invalid when the generator's send lag p99 exceeds this
/// (bench/BENCHMARKS.md).
pub const SEND_LAG_P99_MAX: Duration = Duration::from_millis(1);
/// How often a long run prints a progress line.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// Random bytes each client cuts its field values from.
const VALUE_POOL_BYTES: usize = 64 * 1024;
/// The open-loop clock starts this long after every worker is ready.
const OPEN_LOOP_START_DELAY: Duration = Duration::from_millis(10);
/// The longest YCSB E scan (YCSB's `maxscanlength` default); lengths are uniform from 1.
pub const SCAN_LENGTH_MAX: u64 = 100;
/// Requests the open-loop dispatcher may queue ahead of the workers.
const OPEN_LOOP_QUEUE_MAX: usize = 4_096;
/// Key draws for one transfer's distinct records, at most.
const TRANSFER_DRAWS_MAX: usize = 1_000;
/// A transfer moves 1 to this many units.
const TRANSFER_AMOUNT_MAX: u64 = 100;
const ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// The operation mix of a workload (fractions summing to 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// YCSB A: 50 % reads, 50 % updates.
    A,
    /// YCSB B: 95 % reads, 5 % updates.
    B,
    /// YCSB C: reads only.
    C,
    /// YCSB D: 95 % reads of the latest records, 5 % inserts.
    D,
    /// YCSB E: 95 % short scans (1 to `SCAN_LENGTH_MAX` records), 5 % inserts.
    E,
    /// YCSB F: 50 % reads, 50 % read-modify-writes.
    F,
    /// Durable puts (whole records) only.
    PutOnly,
    /// Strongly consistent (linearizable) reads only.
    StrongReadOnly,
    /// Eventually consistent (serializable) reads only.
    EventualReadOnly,
    /// Transactions only: each moves an amount from one record to another (TransactWriteItems
    /// of 2 Updates, the debit conditional).
    Transfer2,
    /// Transactions only, each over 10 records (one debited, nine credited).
    Transfer10,
    /// Half durable puts, half 2-record transfers: the puts' latency beside transactions.
    PutWithTransfers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    Read,
    Update,
    Insert,
    ReadModifyWrite,
    Scan,
    /// A transfer transaction over `Workload::transfer_records` records.
    Transfer,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Update => "update",
            OpKind::Insert => "insert",
            OpKind::ReadModifyWrite => "read-modify-write",
            OpKind::Scan => "scan",
            OpKind::Transfer => "transfer",
        }
    }
}

impl Workload {
    /// Records per transfer transaction (2 unless the workload says otherwise).
    pub fn transfer_records(self) -> usize {
        match self {
            Workload::Transfer10 => 10,
            _ => 2,
        }
    }

    /// (read, update, insert, read-modify-write, scan) fractions; the rest are transfers.
    fn mix(self) -> [f64; 5] {
        match self {
            Workload::Transfer2 | Workload::Transfer10 => [0.0; 5],
            Workload::PutWithTransfers => [0.0, 0.5, 0.0, 0.0, 0.0],
            Workload::A => [0.5, 0.5, 0.0, 0.0, 0.0],
            Workload::B => [0.95, 0.05, 0.0, 0.0, 0.0],
            Workload::C | Workload::StrongReadOnly | Workload::EventualReadOnly => {
                [1.0, 0.0, 0.0, 0.0, 0.0]
            }
            Workload::D => [0.95, 0.0, 0.05, 0.0, 0.0],
            Workload::E => [0.0, 0.0, 0.05, 0.0, 0.95],
            Workload::F => [0.5, 0.0, 0.0, 0.5, 0.0],
            Workload::PutOnly => [0.0, 1.0, 0.0, 0.0, 0.0],
        }
    }

    /// Whether reads are strongly consistent, given the run's default.
    pub fn strong_reads(self, default_strong: bool) -> bool {
        match self {
            Workload::StrongReadOnly => true,
            Workload::EventualReadOnly => false,
            _ => default_strong,
        }
    }

    /// The key distribution YCSB specifies for it, when the run names none.
    pub fn default_distribution(self) -> Distribution {
        match self {
            Workload::D => Distribution::Latest,
            _ => Distribution::Zipfian,
        }
    }

    pub fn choose(self, rng: &mut SeededRng) -> OpKind {
        let draw = rng.unit_f64();
        let [read, update, insert, read_modify_write, scan] = self.mix();
        if draw < read {
            OpKind::Read
        } else if draw < read + update {
            OpKind::Update
        } else if draw < read + update + insert {
            OpKind::Insert
        } else if draw < read + update + insert + read_modify_write {
            OpKind::ReadModifyWrite
        } else if draw < read + update + insert + read_modify_write + scan {
            OpKind::Scan
        } else {
            OpKind::Transfer
        }
    }
}

/// The shape of the records.
#[derive(Debug, Clone, Copy)]
pub struct RecordShape {
    pub field_count: usize,
    /// Bytes per field (value bytes = field_count × field_bytes).
    pub field_bytes: usize,
}

/// YCSB's key of record `index` ("user" and 12 digits: 16 bytes).
pub fn record_key(index: u64) -> String {
    format!("user{index:012}")
}

/// One client's source of field values: slices of a random alphanumeric pool.
pub struct Values {
    pool: Vec<u8>,
}

impl Values {
    pub fn new(rng: &mut SeededRng) -> Values {
        let pool = (0..VALUE_POOL_BYTES)
            .map(|_| ALPHANUMERIC[rng.below(ALPHANUMERIC.len() as u64) as usize])
            .collect();
        Values { pool }
    }

    pub fn fields<'a>(&'a self, rng: &mut SeededRng, shape: &RecordShape) -> Vec<&'a str> {
        let bytes = shape.field_bytes.min(self.pool.len());
        (0..shape.field_count)
            .map(|_| {
                let start = rng.below((self.pool.len() - bytes + 1) as u64) as usize;
                // The pool is ASCII: every slice is UTF-8.
                std::str::from_utf8(&self.pool[start..start + bytes]).unwrap_or("")
            })
            .collect()
    }
}

/// Everything a run needs to issue operations, shared by its clients.
pub struct Plan {
    pub workload: Workload,
    pub distribution: Distribution,
    pub strong_reads: bool,
    pub shape: RecordShape,
    pub seed: u64,
    /// Records that exist (the load phase's count, grown by inserts).
    pub records: AtomicU64,
}

/// What one client measured.
pub struct ClientStats {
    pub latency: BTreeMap<OpKind, Histogram<u64>>,
    pub all: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    pub reads_not_found: u64,
}

impl ClientStats {
    pub fn new() -> std::io::Result<ClientStats> {
        Ok(ClientStats {
            latency: BTreeMap::new(),
            all: floor::histogram()?,
            errors: BTreeMap::new(),
            reads_not_found: 0,
        })
    }

    fn record(&mut self, kind: OpKind, outcome: Result<(), OpError>, latency: Duration) {
        match outcome {
            Ok(()) => {
                floor::record(&mut self.all, latency);
                if !self.latency.contains_key(&kind)
                    && let Ok(histogram) = floor::histogram()
                {
                    self.latency.insert(kind, histogram);
                }
                if let Some(histogram) = self.latency.get_mut(&kind) {
                    floor::record(histogram, latency);
                }
            }
            Err(OpError(error)) => *self.errors.entry(error).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: ClientStats) {
        let _ = self.all.add(&other.all);
        for (kind, histogram) in other.latency {
            match self.latency.get_mut(&kind) {
                Some(mine) => {
                    let _ = mine.add(&histogram);
                }
                None => {
                    self.latency.insert(kind, histogram);
                }
            }
        }
        for (error, count) in other.errors {
            *self.errors.entry(error).or_default() += count;
        }
        self.reads_not_found += other.reads_not_found;
    }
}

/// One client's state: its random streams and its key chooser.
pub struct Worker {
    rng: SeededRng,
    keys: KeyChooser,
    values: Values,
}

impl Worker {
    pub fn new(plan: &Plan, index: u64) -> Worker {
        let mut rng = SeededRng::new(plan.seed).fork(index);
        let values = Values::new(&mut rng);
        let keys = KeyChooser::new(plan.distribution, plan.records.load(Ordering::Relaxed));
        Worker { rng, keys, values }
    }

    /// Performs one operation of the workload; `Ok(false)` for a read that found nothing.
    fn operate(&mut self, plan: &Plan, target: &dyn Target, kind: OpKind) -> Result<bool, OpError> {
        let records = plan.records.load(Ordering::Acquire);
        match kind {
            OpKind::Insert => {
                let index = plan.records.fetch_add(1, Ordering::AcqRel);
                let fields = self.values.fields(&mut self.rng, &plan.shape);
                target.put(&record_key(index), &fields).map(|()| true)
            }
            OpKind::Read => {
                let key = record_key(self.keys.next(&mut self.rng, records));
                target.get(&key, plan.strong_reads)
            }
            OpKind::Update => {
                let key = record_key(self.keys.next(&mut self.rng, records));
                let fields = self.values.fields(&mut self.rng, &plan.shape);
                target.put(&key, &fields).map(|()| true)
            }
            OpKind::ReadModifyWrite => {
                let key = record_key(self.keys.next(&mut self.rng, records));
                let found = target.get(&key, plan.strong_reads)?;
                let fields = self.values.fields(&mut self.rng, &plan.shape);
                target.put(&key, &fields).map(|()| found)
            }
            OpKind::Scan => {
                let key = record_key(self.keys.next(&mut self.rng, records));
                let length = 1 + self.rng.below(SCAN_LENGTH_MAX);
                target
                    .scan(&key, length as usize)
                    .map(|returned| returned > 0)
            }
            OpKind::Transfer => {
                // Distinct records (a transaction may not name one twice); the draws are
                // bounded, and a run has far more records than a transfer touches.
                let mut keys: Vec<String> = Vec::with_capacity(plan.workload.transfer_records());
                for _draw in 0..TRANSFER_DRAWS_MAX {
                    if keys.len() == plan.workload.transfer_records() {
                        break;
                    }
                    let key = record_key(self.keys.next(&mut self.rng, records));
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
                let amount = 1 + self.rng.below(TRANSFER_AMOUNT_MAX);
                target.transfer(&keys, amount).map(|()| true)
            }
        }
    }

    /// Performs one operation and records it; returns when it was sent.
    pub fn step(
        &mut self,
        plan: &Plan,
        target: &dyn Target,
        stats: &mut ClientStats,
        kind: OpKind,
        latency_from: Option<Instant>,
    ) -> Instant {
        let sent = Instant::now();
        let outcome = self.operate(plan, target, kind);
        let latency = latency_from.unwrap_or(sent).elapsed();
        if outcome == Ok(false) {
            stats.reads_not_found += 1;
        }
        stats.record(kind, outcome.map(|_| ()), latency);
        sent
    }
}

/// The load phase: inserts records `0..count` with `clients` clients (closed loop).
pub fn load(
    plan: &Plan,
    target: &dyn Target,
    count: u64,
    clients: usize,
) -> std::io::Result<ClientStats> {
    let next = AtomicU64::new(0);
    let stats = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients.max(1))
            .map(|index| {
                let next = &next;
                scope.spawn(move || -> std::io::Result<ClientStats> {
                    let mut worker = Worker::new(plan, u64::MAX - index as u64);
                    let mut stats = ClientStats::new()?;
                    loop {
                        let record = next.fetch_add(1, Ordering::Relaxed);
                        if record >= count {
                            return Ok(stats);
                        }
                        let fields = worker.values.fields(&mut worker.rng, &plan.shape);
                        let started = Instant::now();
                        let outcome = target.put(&record_key(record), &fields);
                        stats.record(OpKind::Insert, outcome, started.elapsed());
                    }
                })
            })
            .collect();
        join_all(handles)
    })?;
    plan.records.fetch_max(count, Ordering::AcqRel);
    Ok(stats)
}

fn join_all(
    handles: Vec<std::thread::ScopedJoinHandle<'_, std::io::Result<ClientStats>>>,
) -> std::io::Result<ClientStats> {
    let mut total = ClientStats::new()?;
    for handle in handles {
        let stats = handle
            .join()
            .map_err(|_| std::io::Error::other("a client thread panicked"))??;
        total.merge(stats);
    }
    Ok(total)
}

/// Prints a progress line every `PROGRESS_INTERVAL` until `done` is set.
fn progress(label: &str, completed: &AtomicU64, done: &AtomicBool, started: Instant) {
    let mut next = started + PROGRESS_INTERVAL;
    let mut last = 0;
    while !done.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() >= next {
            let now = completed.load(Ordering::Relaxed);
            eprintln!(
                "  {label}: {:>5.0} s, {now} operations, {:.0} ops/s",
                started.elapsed().as_secs_f64(),
                (now - last) as f64 / PROGRESS_INTERVAL.as_secs_f64()
            );
            last = now;
            next += PROGRESS_INTERVAL;
        }
    }
}

/// Closed loop: `clients` clients, each issuing its next operation when the last one answered,
/// until `operations` operations were issued or `duration` passed.
pub fn closed_loop(
    plan: &Plan,
    target: &dyn Target,
    clients: usize,
    operations: u64,
    duration: Duration,
) -> std::io::Result<(ClientStats, Duration)> {
    let issued = AtomicU64::new(0);
    let completed = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let deadline = started + duration;
    let stats = std::thread::scope(|scope| {
        let (issued, completed, done) = (&issued, &completed, &done);
        scope.spawn(move || progress("closed loop", completed, done, started));
        let handles: Vec<_> = (0..clients.max(1))
            .map(|index| {
                scope.spawn(move || -> std::io::Result<ClientStats> {
                    let mut worker = Worker::new(plan, index as u64);
                    let mut stats = ClientStats::new()?;
                    while issued.fetch_add(1, Ordering::Relaxed) < operations
                        && Instant::now() < deadline
                    {
                        let kind = plan.workload.choose(&mut worker.rng);
                        worker.step(plan, target, &mut stats, kind, None);
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(stats)
                })
            })
            .collect();
        let stats = join_all(handles);
        done.store(true, Ordering::Release);
        stats
    })?;
    Ok((stats, started.elapsed()))
}

/// The generator's own send lag in an open-loop run: how late each request left compared with
/// its intended send time.
pub struct LagAccount {
    histogram: Histogram<u64>,
}

impl LagAccount {
    pub fn new() -> std::io::Result<LagAccount> {
        Ok(LagAccount {
            histogram: floor::histogram()?,
        })
    }

    /// `sent` before `intended` (an early send) counts as no lag.
    pub fn record(&mut self, intended: Instant, sent: Instant) {
        floor::record(
            &mut self.histogram,
            sent.saturating_duration_since(intended),
        );
    }

    pub fn merge(&mut self, other: &LagAccount) {
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn percentiles(&self) -> Percentiles {
        Percentiles::from_histogram(&self.histogram)
    }

    /// A run is valid when its lag p99 is at most `SEND_LAG_P99_MAX` (and it sent anything).
    pub fn valid(&self) -> bool {
        !self.histogram.is_empty()
            && self.histogram.value_at_quantile(0.99)
                <= u64::try_from(SEND_LAG_P99_MAX.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The intended send time of request `index` at `rate` requests per second.
pub fn intended_send_time(start: Instant, rate: f64, index: u64) -> Instant {
    start + Duration::from_secs_f64(index as f64 / rate)
}

/// Open loop: `operations` requests at `rate` per second, served by `workers` clients (the
/// most that may be in flight). Latency runs from each request's intended send time. No
/// request is released after `duration` (the run then ends when those in flight answer).
pub fn open_loop(
    plan: &Plan,
    target: &dyn Target,
    workers: usize,
    rate: f64,
    operations: u64,
    duration: Duration,
) -> std::io::Result<(ClientStats, LagAccount, Duration)> {
    let (sender, receiver) = sync_channel::<Instant>(OPEN_LOOP_QUEUE_MAX);
    let receiver = Mutex::new(receiver);
    let completed = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let workers = workers.max(1);
    // Every worker has its state before the clock starts.
    let ready = Barrier::new(workers + 1);
    let result = std::thread::scope(|scope| {
        let (receiver, completed, done, ready) = (&receiver, &completed, &done, &ready);
        let handles: Vec<_> = (0..workers)
            .map(|index| {
                scope.spawn(move || -> std::io::Result<(ClientStats, LagAccount)> {
                    let mut worker = Worker::new(plan, index as u64);
                    let stats = ClientStats::new();
                    let lag = LagAccount::new();
                    ready.wait();
                    let (mut stats, mut lag) = (stats?, lag?);
                    while let Some(intended) = next_request(receiver) {
                        let kind = plan.workload.choose(&mut worker.rng);
                        let sent = worker.step(plan, target, &mut stats, kind, Some(intended));
                        lag.record(intended, sent);
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((stats, lag))
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now() + OPEN_LOOP_START_DELAY;
        scope.spawn(move || progress("open loop", completed, done, start));
        for index in 0..operations {
            let intended = intended_send_time(start, rate, index);
            if intended > start + duration {
                break;
            }
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            if sender.send(intended).is_err() {
                break;
            }
        }
        drop(sender);
        let joined = (|| {
            let mut total = ClientStats::new()?;
            let mut lag = LagAccount::new()?;
            for handle in handles {
                let (stats, worker_lag) = handle
                    .join()
                    .map_err(|_| std::io::Error::other("a client thread panicked"))??;
                total.merge(stats);
                lag.merge(&worker_lag);
            }
            Ok::<_, std::io::Error>((total, lag))
        })();
        done.store(true, Ordering::Release);
        joined.map(|(stats, lag)| (stats, lag, start.elapsed()))
    })?;
    Ok(result)
}

fn next_request(receiver: &Mutex<Receiver<Instant>>) -> Option<Instant> {
    receiver
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .recv()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_measured_from_the_intended_send_time() {
        let mut lag = LagAccount::new().unwrap();
        let start = Instant::now();
        for index in 0..1_000u64 {
            let intended = intended_send_time(start, 1_000.0, index);
            // 98 % leave 10 us late, 2 % leave 5 ms late.
            let late = if index % 50 == 0 {
                Duration::from_millis(5)
            } else {
                Duration::from_micros(10)
            };
            lag.record(intended, intended + late);
        }
        let percentiles = lag.percentiles();
        assert_eq!(percentiles.samples, 1_000);
        assert!(
            (9_990..=10_010).contains(&percentiles.p50),
            "{percentiles:?}"
        );
        assert!(percentiles.p99 >= 4_990_000, "{percentiles:?}");
        assert!(!lag.valid(), "p99 of 5 ms is over the 1 ms limit");
    }

    #[test]
    fn a_run_with_small_lag_is_valid_and_early_sends_count_as_no_lag() {
        let mut lag = LagAccount::new().unwrap();
        let start = Instant::now() + Duration::from_secs(1);
        for index in 0..1_000u64 {
            let intended = intended_send_time(start, 10_000.0, index);
            if index % 2 == 0 {
                lag.record(intended, intended + Duration::from_micros(900));
            } else {
                lag.record(intended, start);
            }
        }
        assert!(lag.valid());
        assert!(lag.percentiles().p99 <= 1_000_000);
        assert!(
            !LagAccount::new().unwrap().valid(),
            "an empty run is not valid"
        );
    }

    #[test]
    fn intended_times_follow_the_rate() {
        let start = Instant::now();
        assert_eq!(intended_send_time(start, 1_000.0, 0), start);
        assert_eq!(
            intended_send_time(start, 1_000.0, 1_500) - start,
            Duration::from_millis(1_500)
        );
    }

    #[test]
    fn mixes_match_ycsb() {
        let mut rng = SeededRng::new(5);
        let mut counts = BTreeMap::new();
        for _ in 0..100_000 {
            *counts.entry(Workload::B.choose(&mut rng)).or_insert(0u32) += 1;
        }
        let reads = counts[&OpKind::Read];
        assert!((94_000..96_000).contains(&reads), "{counts:?}");
        assert!(!counts.contains_key(&OpKind::Insert));
        assert!((0..1_000).all(|_| Workload::PutOnly.choose(&mut rng) == OpKind::Update));
        assert!((0..1_000).all(|_| Workload::C.choose(&mut rng) == OpKind::Read));
        assert!((0..1_000).all(|_| Workload::Transfer10.choose(&mut rng) == OpKind::Transfer));
        let transfers = (0..10_000)
            .filter(|_| Workload::PutWithTransfers.choose(&mut rng) == OpKind::Transfer)
            .count();
        assert!((4_500..5_500).contains(&transfers), "{transfers}");
        assert_eq!(Workload::Transfer10.transfer_records(), 10);
        let mut e = BTreeMap::new();
        for _ in 0..100_000 {
            *e.entry(Workload::E.choose(&mut rng)).or_insert(0u32) += 1;
        }
        assert!((94_000..96_000).contains(&e[&OpKind::Scan]), "{e:?}");
        assert_eq!(e[&OpKind::Scan] + e[&OpKind::Insert], 100_000, "{e:?}");
        assert_eq!(record_key(42), "user000000000042");
        assert_eq!(record_key(42).len(), 16);
    }
}
