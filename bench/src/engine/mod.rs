//! `shoal-bench engine`: our storage engine (the shard WAL with group commit plus a partition's
//! B-tree), fjall and redb, and the durable-write floor, measured in one process and one run on
//! one directory (bench/BENCHMARKS.md: same-run ratios, interleaved, medians).
//!
//! Cells (every system runs the same keys, drawn from one seeded stream per cell and repetition):
//! - `put-1`, `put-8`, `put-64`: durable 1 KB puts (16 B key, 1000 B value) by 1, 8 or 64
//!   concurrent writers, each overwriting a random loaded key. Ours: the WAL append resolves
//!   durable, then the record is applied to the B-tree in LSN order, as a replica does; the
//!   writers are tasks on one glommio executor (one shard). fjall: insert, then
//!   `persist(SyncData)`; redb: one write transaction committed (fsync) per put; their writers
//!   are threads.
//! - `get-cached`: random point gets on a tree that fits in the cache.
//! - `get-uncached`: random point gets on a second copy of the data behind a cache of about
//!   1 MiB (ours reads missing pages with O_DIRECT; fjall and redb read through the OS page
//!   cache, so their "uncached" is only their own cache being small).
//! - `scan-100`: forward range scans of 100 items from a random key.
//!
//! Every loop is bounded by `--operations` (per cell and repetition) and `--items` (the loaded
//! data set), each with a named maximum.

mod ours;
mod peers;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use serde_json::json;
use shoal_io::SeededRng;

use crate::floor::{self, FloorOptions, Percentiles};

/// The most operations one cell may run per repetition.
pub const OPERATIONS_MAX: usize = 10_000_000;
/// The most items the data set may hold (each about 1 KB, per system and copy).
pub const ITEMS_MAX: usize = 10_000_000;
/// The most interleaved repetitions of the whole cell list.
pub const REPEAT_MAX: usize = 100;
/// Key size of every item (a partition key plus sort key of a small table).
pub const KEY_BYTES: usize = 16;
/// Value size: key plus value make the 1 KB item of BENCHMARKS.md.
pub const VALUE_BYTES: usize = 1000;
/// Items per range scan.
pub const SCAN_ITEMS: usize = 100;
/// Concurrent writers of the durable-put cells.
pub const WRITER_COUNTS: [usize; 3] = [1, 8, 64];
/// The data set must hold at least this many items so that every scan returns a full page.
pub const ITEMS_MIN: usize = 2 * SCAN_ITEMS;
/// Registered I/O memory of the benchmark's executor. glommio's default is 10 MiB; buffers
/// beyond the registered pool come from the heap, so a small pool only avoids needing a raised
/// RLIMIT_MEMLOCK (kernel-notes/glommio-runtime.md).
const EXECUTOR_IO_MEMORY_BYTES: usize = 2 << 20;
/// statfs magic of tmpfs: a benchmark of durable writes on memory would measure nothing.
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// Seed of the key streams; fixed so that every system and every run sees the same keys.
const KEY_SEED: u64 = 0x5eed_0f5b_0a1c_e11e;

#[derive(Debug, clap::Args)]
pub struct EngineOptions {
    /// Directory on the device to measure; a fresh `engine-run-<pid>` directory is made in it
    /// and removed at the end. Default: the current directory. tmpfs is refused.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Operations per cell and repetition (also the floor's samples).
    #[arg(long, default_value_t = 10_000)]
    pub operations: usize,
    /// Items loaded into every system before the cells run (random keys are drawn from them).
    #[arg(long, default_value_t = 20_000)]
    pub items: usize,
    /// Interleaved repetitions (ours, fjall, redb per cell, then again); medians are reported.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Write every cell, ratio and the machine description as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Applied puts between B-tree checkpoints in the put cells (the checkpoint runs on the
    /// apply path, as on a shard today). Raise it above --operations to measure puts without
    /// checkpoints.
    #[arg(long, default_value_t = ours::CHECKPOINT_INTERVAL_RECORDS_DEFAULT)]
    pub checkpoint_every: u64,
    /// Whether our engine reads every durable write back before it counts
    /// (shoal_io::storage::write_verified; `shoal node --verify-writes`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub verify_writes: bool,
}

/// One measured workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    DurablePut { writers: usize },
    CachedGet,
    UncachedGet,
    Scan,
}

impl Cell {
    fn all() -> Vec<Cell> {
        let mut cells: Vec<Cell> = WRITER_COUNTS
            .iter()
            .map(|&writers| Cell::DurablePut { writers })
            .collect();
        cells.extend([Cell::CachedGet, Cell::UncachedGet, Cell::Scan]);
        cells
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::DurablePut { writers } => write!(formatter, "put-{writers}"),
            Cell::CachedGet => formatter.write_str("get-cached"),
            Cell::UncachedGet => formatter.write_str("get-uncached"),
            Cell::Scan => write!(formatter, "scan-{SCAN_ITEMS}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Shoal,
    Fjall,
    Redb,
}

impl System {
    const ALL: [System; 3] = [System::Shoal, System::Fjall, System::Redb];
    const PEERS: [System; 2] = [System::Fjall, System::Redb];

    fn name(self) -> &'static str {
        match self {
            System::Shoal => "shoal",
            System::Fjall => "fjall",
            System::Redb => "redb",
        }
    }
}

/// What every system runs for one cell: how many operations, the data set and the key stream.
#[derive(Debug, Clone)]
pub struct Plan {
    pub operations: usize,
    pub items: u64,
    keys: SeededRng,
}

impl Plan {
    /// The key stream of one writer (or of the single reader).
    pub fn keys_of(&self, worker: usize) -> SeededRng {
        self.keys.fork(worker as u64)
    }

    /// How many of the plan's operations worker `worker` of `workers` runs.
    pub fn share_of(&self, worker: usize, workers: usize) -> usize {
        self.operations / workers + usize::from(worker < self.operations % workers)
    }

    /// A random loaded key.
    pub fn random_item(&self, keys: &mut SeededRng) -> u64 {
        keys.below(self.items)
    }

    /// A random scan start that leaves `SCAN_ITEMS` items after it.
    pub fn random_scan_start(&self, keys: &mut SeededRng) -> u64 {
        keys.below(self.items - SCAN_ITEMS as u64 + 1)
    }
}

/// The key of item `index`: a fixed prefix and the index big-endian, so key order is index order.
pub fn item_key(index: u64) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    key[..8].copy_from_slice(b"shoal-bn");
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The value every put writes: random bytes, so that fjall's LZ4 compression gains nothing.
pub fn item_value() -> Vec<u8> {
    let mut value = vec![0u8; VALUE_BYTES];
    SeededRng::new(KEY_SEED).fill_bytes(&mut value);
    value
}

/// One run of one cell on one system.
#[derive(Debug)]
pub struct Measurement {
    pub operations: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl Measurement {
    fn operations_per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Times `operation` once into `latency`.
pub fn timed<T>(
    latency: &mut Histogram<u64>,
    operation: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let started = Instant::now();
    let result = operation()?;
    floor::record(latency, started.elapsed());
    Ok(result)
}

/// Wraps an error of a system under test with what was being done.
pub fn failed<E: fmt::Display>(context: &'static str) -> impl Fn(E) -> io::Error {
    move |error| io::Error::other(format!("{context}: {error}"))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn validate(options: &EngineOptions) -> io::Result<()> {
    if options.operations == 0 || options.operations > OPERATIONS_MAX {
        return Err(invalid(format!(
            "--operations must be between 1 and {OPERATIONS_MAX}"
        )));
    }
    if options.items < ITEMS_MIN || options.items > ITEMS_MAX {
        return Err(invalid(format!(
            "--items must be between {ITEMS_MIN} and {ITEMS_MAX}"
        )));
    }
    if options.checkpoint_every == 0
        || options.checkpoint_every > ours::CHECKPOINT_INTERVAL_RECORDS_MAX
    {
        return Err(invalid(format!(
            "--checkpoint-every must be between 1 and {}",
            ours::CHECKPOINT_INTERVAL_RECORDS_MAX
        )));
    }
    if options.repeat == 0 || options.repeat > REPEAT_MAX {
        return Err(invalid(format!(
            "--repeat must be between 1 and {REPEAT_MAX}"
        )));
    }
    Ok(())
}

fn filesystem_type(path: &Path) -> io::Result<i64> {
    let statistics = nix::sys::statfs::statfs(path).map_err(io::Error::from)?;
    Ok(statistics.filesystem_type().0)
}

fn cpu_pressure() -> String {
    std::fs::read_to_string("/proc/pressure/cpu")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// One cell's runs on one system, in repetition order.
struct CellRuns {
    cell: Cell,
    system: System,
    runs: Vec<serde_json::Value>,
    operations_per_second: Vec<f64>,
    p50: Vec<u64>,
    p99: Vec<u64>,
}

fn median_f64(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

fn median_u64(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

pub fn run(options: &EngineOptions) -> io::Result<()> {
    validate(options)?;
    shoal_io::storage::set_write_verification(options.verify_writes);
    let parent = match &options.data_dir {
        Some(path) => path.clone(),
        None => std::env::current_dir()?,
    };
    let filesystem = filesystem_type(&parent)?;
    if filesystem == TMPFS_MAGIC {
        return Err(invalid(format!(
            "{} is on tmpfs: durable writes there measure memory, not a disk",
            parent.display()
        )));
    }
    let directory = parent.join(format!("engine-run-{}", std::process::id()));
    std::fs::create_dir(&directory)?;
    let outcome = run_in(options, &directory, filesystem);
    let removed = std::fs::remove_dir_all(&directory);
    outcome?;
    removed
}

fn run_in(options: &EngineOptions, directory: &Path, filesystem: i64) -> io::Result<()> {
    let pressure_at_start = cpu_pressure();
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("shoal-bench-engine")
        .io_memory(EXECUTOR_IO_MEMORY_BYTES)
        .make()
        .map_err(failed("cannot start a glommio executor"))?;
    let report = executor.run(measure(options, directory))?;
    let report = json!({
        "machine": floor::machine_description(),
        "cpu_pressure_at_start": pressure_at_start,
        "filesystem_type": format!("{filesystem:#x}"),
        "data_dir": directory.display().to_string(),
        "options": {
            "operations": options.operations, "items": options.items,
            "repeat": options.repeat, "key_bytes": KEY_BYTES, "value_bytes": VALUE_BYTES,
            "verify_writes": options.verify_writes,
        },
        "floor": report.floor,
        "cells": report.cells,
        "ratios": report.ratios,
    });
    if let Some(path) = &options.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&report).map_err(io::Error::other)?,
        )?;
    }
    Ok(())
}

struct Report {
    floor: serde_json::Value,
    cells: Vec<serde_json::Value>,
    ratios: serde_json::Value,
}

async fn measure(options: &EngineOptions, directory: &Path) -> io::Result<Report> {
    let items = options.items as u64;
    let value = item_value();
    let mut shoal = ours::ShoalEngine::open(
        &directory.join("shoal"),
        items,
        &value,
        options.checkpoint_every,
    )
    .await?;
    let fjall = peers::FjallPeer::open(&directory.join("fjall"), items, &value)?;
    let redb = peers::RedbPeer::open(&directory.join("redb"), items, &value)?;
    let floor_options = FloorOptions {
        data_dir: directory.to_path_buf(),
        samples: options.operations,
        json: None,
    };
    let mut floor_runs = Vec::new();
    let mut results: Vec<CellRuns> = Vec::new();
    for repetition in 0..options.repeat {
        floor_runs.push(floor::durable_write_floor(&floor_options)?);
        for (cell_index, cell) in Cell::all().into_iter().enumerate() {
            let plan = Plan {
                operations: options.operations,
                items,
                keys: SeededRng::new(KEY_SEED)
                    .fork(((repetition as u64) << 16) | cell_index as u64),
            };
            for system in System::ALL {
                let pressure_before = cpu_pressure();
                let measurement = match system {
                    System::Shoal => shoal.run(cell, &plan, &value).await?,
                    System::Fjall => fjall.run(cell, &plan, &value)?,
                    System::Redb => redb.run(cell, &plan, &value)?,
                };
                let pressure_after = cpu_pressure();
                let percentiles = Percentiles::from_histogram(&measurement.latency);
                let position = match results
                    .iter()
                    .position(|runs| runs.cell == cell && runs.system == system)
                {
                    Some(position) => position,
                    None => {
                        results.push(CellRuns {
                            cell,
                            system,
                            runs: Vec::new(),
                            operations_per_second: Vec::new(),
                            p50: Vec::new(),
                            p99: Vec::new(),
                        });
                        results.len() - 1
                    }
                };
                let runs = &mut results[position];
                runs.operations_per_second
                    .push(measurement.operations_per_second());
                runs.p50.push(percentiles.p50);
                runs.p99.push(percentiles.p99);
                runs.runs.push(json!({
                    "repetition": repetition,
                    "operations": measurement.operations,
                    "elapsed_ns": u64::try_from(measurement.elapsed.as_nanos()).unwrap_or(u64::MAX),
                    "operations_per_second": measurement.operations_per_second(),
                    "latency": percentiles.to_json(),
                    "cpu_pressure_before": pressure_before,
                    "cpu_pressure_after": pressure_after,
                }));
            }
        }
    }
    shoal.close().await?;
    drop(fjall);
    drop(redb);

    let floor_p50 = median_u64(&floor_runs.iter().map(|run| run.p50).collect::<Vec<_>>());
    let floor_p99 = median_u64(&floor_runs.iter().map(|run| run.p99).collect::<Vec<_>>());
    let floor_samples = floor_runs.first().map_or(0, |run| run.samples);
    let median_of = |cell: Cell, system: System| {
        results
            .iter()
            .find(|runs| runs.cell == cell && runs.system == system)
    };
    print_table(floor_p50, floor_p99, &results);

    let put_single = median_of(Cell::DurablePut { writers: 1 }, System::Shoal);
    let put_p50_over_floor = put_single
        .map(|runs| median_u64(&runs.p50) as f64 / floor_p50.max(1) as f64)
        .unwrap_or(0.0);
    let mut peer_ratios = Vec::new();
    for cell in Cell::all() {
        let Some(ours) = median_of(cell, System::Shoal) else {
            continue;
        };
        for peer in System::PEERS {
            if let Some(theirs) = median_of(cell, peer) {
                peer_ratios.push(json!({
                    "cell": cell.to_string(),
                    "peer": peer.name(),
                    "ours_over_peer_operations_per_second":
                        median_f64(&ours.operations_per_second)
                            / median_f64(&theirs.operations_per_second).max(f64::MIN_POSITIVE),
                }));
            }
        }
    }
    println!("durable put p50 / floor p50: {put_p50_over_floor:.2}");
    let cells = results
        .iter()
        .map(|runs| {
            json!({
                "cell": runs.cell.to_string(),
                "system": runs.system.name(),
                "median": {
                    "operations_per_second": median_f64(&runs.operations_per_second),
                    "p50_ns": median_u64(&runs.p50),
                    "p99_ns": median_u64(&runs.p99),
                },
                "runs": runs.runs,
            })
        })
        .collect();
    Ok(Report {
        floor: json!({
            "what": "4 KiB O_DIRECT write + fdatasync",
            "samples_per_run": floor_samples,
            "median": { "p50_ns": floor_p50, "p99_ns": floor_p99 },
            "runs": floor_runs.iter().map(Percentiles::to_json).collect::<Vec<_>>(),
        }),
        cells,
        ratios: json!({
            "durable_put_1_p50_over_floor_p50": put_p50_over_floor,
            "ours_over_peers": peer_ratios,
        }),
    })
}

fn print_table(floor_p50: u64, floor_p99: u64, results: &[CellRuns]) {
    println!(
        "{:<14} {:<7} {:>12} {:>10} {:>10}",
        "cell", "system", "ops/s", "p50 us", "p99 us"
    );
    println!(
        "{:<14} {:<7} {:>12} {:>10} {:>10}",
        "floor-4k-sync",
        "disk",
        "-",
        floor::micros(floor_p50),
        floor::micros(floor_p99)
    );
    for runs in results {
        println!(
            "{:<14} {:<7} {:>12.0} {:>10} {:>10}",
            runs.cell.to_string(),
            runs.system.name(),
            median_f64(&runs.operations_per_second),
            floor::micros(median_u64(&runs.p50)),
            floor::micros(median_u64(&runs.p99)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_split_exactly_between_workers() {
        let plan = Plan {
            operations: 103,
            items: 1_000,
            keys: SeededRng::new(1),
        };
        for workers in WRITER_COUNTS {
            let total: usize = (0..workers)
                .map(|worker| plan.share_of(worker, workers))
                .sum();
            assert_eq!(total, 103);
        }
    }

    #[test]
    fn keys_sort_in_index_order() {
        assert!(item_key(255) < item_key(256));
        assert_eq!(item_key(7).len(), KEY_BYTES);
    }
}
