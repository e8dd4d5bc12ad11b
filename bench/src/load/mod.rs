//! `shoal-bench run`: the load generator. YCSB-style workloads against a pluggable target
//! (Shoal's native protocol; etcd v3 with the `etcd` feature), closed or open loop, HDR
//! histograms, errors by kind, server CPU per operation and CPU pressure.

pub mod driver;
pub mod dynamodb_http;
pub mod gsi_lag;
pub mod keys;
pub mod targets;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::{Value as Json, json};

use crate::floor::{Percentiles, machine_description, micros};
use driver::{OpKind, Plan, RecordShape, Workload};
use keys::Distribution;
use targets::Target;

/// Records a run may load at most.
pub const RECORDS_MAX: u64 = 10_000_000;
/// Operations a run phase may issue at most.
pub const OPERATIONS_MAX: u64 = 10_000_000;
/// The longest run phase.
pub const RUN_SECONDS_MAX: u64 = 3_600;
/// Concurrent clients (threads) at most.
pub const CLIENTS_MAX: usize = 1_024;
/// Fields per record at most, and bytes per field at most.
pub const FIELD_COUNT_MAX: usize = 100;
pub const FIELD_BYTES_MAX: usize = 16 * 1024;
/// The highest open-loop rate.
pub const RATE_MAX: f64 = 1_000_000.0;
/// Workers serving an open-loop run when `--clients` is left at 1.
pub const OPEN_LOOP_WORKERS_DEFAULT: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// Shoal's native protocol (shoal-client).
    Shoal,
    /// etcd v3 (gRPC; needs the `etcd` feature).
    Etcd,
    /// The DynamoDB JSON API over HTTP at `--http-endpoint`: Shoal's HTTP port, dynalite, or
    /// any DynamoDB-compatible server.
    DynamodbHttp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    Load,
    Run,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    Strong,
    Eventual,
}

/// A stream's view type (`--stream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamView {
    KeysOnly,
    NewImage,
    OldImage,
    NewAndOldImages,
}

impl StreamView {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamView::KeysOnly => "KEYS_ONLY",
            StreamView::NewImage => "NEW_IMAGE",
            StreamView::OldImage => "OLD_IMAGE",
            StreamView::NewAndOldImages => "NEW_AND_OLD_IMAGES",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunOptions {
    #[arg(long, value_enum, default_value_t = TargetKind::Shoal)]
    pub target: TargetKind,
    /// Shoal's native endpoint (`shoal dev --port P` serves it on P + 1).
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub shoal_endpoint: SocketAddr,
    /// The DynamoDB HTTP endpoint (`shoal dev --port P` serves it on P).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub http_endpoint: SocketAddr,
    /// Create the table with provisioned capacity (`targets::SHOAL_TABLE_WRITE_UNITS`), as the
    /// Shoal targets do, rather than on demand (for DynamoDB servers that do not take that
    /// much capacity). The native target always provisions.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub provisioned_table: bool,
    /// Global secondary indexes of the benchmark table (dynamodb-http target only, at most
    /// `targets::GLOBAL_INDEXES_MAX`): on field0 (KEYS_ONLY) and field1 (ALL), in a table of its
    /// own (`usertable_gsiN`). After the run, the router's GSI propagation lag is read from its
    /// /metrics.
    #[arg(long, default_value_t = 0)]
    pub global_indexes: u8,
    /// A stream on the benchmark table, of this view type (dynamodb-http target only), in a
    /// table of its own (`usertable_stream_<view>`). After the run, one consumer reads the
    /// whole stream through GetRecords and its throughput is reported.
    #[arg(long, value_enum)]
    pub stream: Option<StreamView>,
    /// etcd client endpoints, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:23790,http://127.0.0.1:23800,http://127.0.0.1:23810"
    )]
    pub etcd_endpoints: Vec<String>,
    #[arg(long, value_enum, default_value_t = Workload::A)]
    pub workload: Workload,
    /// Key distribution (default: the workload's own, zipfian; latest for D).
    #[arg(long, value_enum)]
    pub distribution: Option<Distribution>,
    /// Consistency of the reads of workloads A-F.
    #[arg(long, value_enum, default_value_t = Consistency::Strong)]
    pub read_consistency: Consistency,
    /// Records the load phase writes (keys 0..N).
    #[arg(long, default_value_t = 1_000)]
    pub record_count: u64,
    #[arg(long, default_value_t = 10)]
    pub field_count: usize,
    /// Bytes per field (10 × 100: YCSB's 1 KB record).
    #[arg(long, default_value_t = 100)]
    pub field_bytes: usize,
    #[arg(long, value_enum, default_value_t = Phase::Both)]
    pub phase: Phase,
    /// Clients of the load phase.
    #[arg(long, default_value_t = 8)]
    pub load_clients: usize,
    /// Clients (closed loop), or workers serving the arrivals (open loop; default 64 then).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Operations of the run phase.
    #[arg(long, default_value_t = 10_000)]
    pub operations: u64,
    /// The run phase stops after this many seconds even if operations remain (open loop: no
    /// request is released after it).
    #[arg(long, default_value_t = 60)]
    pub max_seconds: u64,
    /// Open loop at this many operations per second (absent: closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop at each of these rates in turn (a sweep), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<f64>,
    /// Server processes whose CPU time (utime + stime) is charged to the run.
    #[arg(long)]
    pub server_pid: Vec<u32>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the results as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The quantiles a report keeps of its latency histogram: enough points to draw the
/// percentile spectrum out to the maximum.
pub const SPECTRUM_QUANTILES: [f64; 13] = [
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999, 1.0,
];

fn spectrum(histogram: &hdrhistogram::Histogram<u64>) -> Vec<(f64, u64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    SPECTRUM_QUANTILES
        .iter()
        .map(|&quantile| (quantile, histogram.value_at_quantile(quantile)))
        .collect()
}

/// How a run phase is driven.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Closed { clients: usize },
    Open { workers: usize, rate: f64 },
}

/// One measured run phase.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: String,
    pub label: String,
    pub operations: u64,
    pub elapsed: Duration,
    pub latency: BTreeMap<String, Percentiles>,
    pub all: Percentiles,
    /// (quantile, latency ns) at `SPECTRUM_QUANTILES`: the latency percentile spectrum.
    pub spectrum: Vec<(f64, u64)>,
    pub errors: BTreeMap<String, u64>,
    pub reads_not_found: u64,
    /// Open loop: the generator's send lag and whether the run is valid.
    pub send_lag: Option<(Percentiles, bool)>,
    pub server_cpu_seconds: Option<f64>,
    pub pressure_before: String,
    pub pressure_after: String,
}

impl Report {
    pub fn ops_per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn cpu_us_per_op(&self) -> Option<f64> {
        self.server_cpu_seconds
            .map(|seconds| seconds * 1e6 / (self.operations.max(1) as f64))
    }

    pub fn valid(&self) -> bool {
        self.send_lag.as_ref().is_none_or(|(_, valid)| *valid)
    }

    pub fn to_json(&self) -> Json {
        json!({
            "target": self.target,
            "label": self.label,
            "operations": self.operations,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ops_per_s": self.ops_per_second(),
            "latency_ns": self.all.to_json(),
            "latency_spectrum_ns": self.spectrum.iter()
                .map(|(quantile, nanos)| json!({"quantile": quantile, "ns": nanos}))
                .collect::<Vec<_>>(),
            "latency_ns_by_operation": self.latency.iter()
                .map(|(kind, p)| (kind.clone(), p.to_json()))
                .collect::<serde_json::Map<_, _>>(),
            "errors": self.errors,
            "reads_not_found": self.reads_not_found,
            "send_lag_ns": self.send_lag.as_ref().map(|(p, _)| p.to_json()),
            "valid": self.valid(),
            "server_cpu_s": self.server_cpu_seconds,
            "server_cpu_us_per_op": self.cpu_us_per_op(),
            "cpu_pressure_before": self.pressure_before,
            "cpu_pressure_after": self.pressure_after,
        })
    }

    pub fn table_header() -> String {
        format!(
            "{:<10} {:<26} {:>9} {:>10} {:>9} {:>9} {:>9} {:>10} {:>7} {:>9} {:>6}",
            "target",
            "cell",
            "ops",
            "ops/s",
            "p50 us",
            "p99 us",
            "p99.9 us",
            "max us",
            "errors",
            "cpu us/op",
            "valid"
        )
    }

    pub fn table_row(&self) -> String {
        format!(
            "{:<10} {:<26} {:>9} {:>10.0} {:>9} {:>9} {:>9} {:>10} {:>7} {:>9} {:>6}",
            self.target,
            self.label,
            self.operations,
            self.ops_per_second(),
            micros(self.all.p50),
            micros(self.all.p99),
            micros(self.all.p999),
            micros(self.all.max),
            self.errors.values().sum::<u64>(),
            self.cpu_us_per_op()
                .map_or("-".to_string(), |us| format!("{us:.0}")),
            if self.valid() { "yes" } else { "NO" },
        )
    }
}

/// CPU time (utime + stime) of a process so far, in seconds.
pub fn process_cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|error| format!("/proc/{pid}/stat: {error}"))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| ticks as f64 / clock_ticks_per_second())
        .ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))
}

/// utime + stime (clock ticks) from a /proc/<pid>/stat line.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        _ => 100.0,
    }
}

fn total_cpu_seconds(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| process_cpu_seconds(pid).ok()).sum()
}

pub fn cpu_pressure() -> String {
    std::fs::read_to_string("/proc/pressure/cpu")
        .map(|text| text.lines().next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// What a run phase does.
#[derive(Debug, Clone)]
pub struct Cell {
    pub label: String,
    pub workload: Workload,
    pub distribution: Distribution,
    pub strong_reads: bool,
    pub shape: RecordShape,
    /// Records that exist before the phase.
    pub records: u64,
    pub mode: Mode,
    pub operations: u64,
    pub max_duration: Duration,
    pub seed: u64,
}

/// Runs one phase of `cell` against `target`, charging `server_pids`' CPU to it.
pub fn run_cell(target: &dyn Target, cell: &Cell, server_pids: &[u32]) -> Result<Report, String> {
    let plan = Plan {
        workload: cell.workload,
        distribution: cell.distribution,
        strong_reads: cell.strong_reads,
        shape: cell.shape,
        seed: cell.seed,
        records: AtomicU64::new(cell.records.max(1)),
    };
    let pressure_before = cpu_pressure();
    let cpu_before = total_cpu_seconds(server_pids);
    let (stats, lag, elapsed) = match cell.mode {
        Mode::Closed { clients } => {
            let (stats, elapsed) =
                driver::closed_loop(&plan, target, clients, cell.operations, cell.max_duration)
                    .map_err(|error| error.to_string())?;
            (stats, None, elapsed)
        }
        Mode::Open { workers, rate } => {
            let (stats, lag, elapsed) = driver::open_loop(
                &plan,
                target,
                workers,
                rate,
                cell.operations,
                cell.max_duration,
            )
            .map_err(|error| error.to_string())?;
            (stats, Some((lag.percentiles(), lag.valid())), elapsed)
        }
    };
    let cpu_after = total_cpu_seconds(server_pids);
    Ok(Report {
        target: target.name().to_string(),
        label: cell.label.clone(),
        operations: stats.all.len(),
        elapsed,
        latency: stats
            .latency
            .iter()
            .map(|(kind, histogram)| {
                (
                    kind.name().to_string(),
                    Percentiles::from_histogram(histogram),
                )
            })
            .collect(),
        all: Percentiles::from_histogram(&stats.all),
        spectrum: spectrum(&stats.all),
        errors: stats.errors.clone(),
        reads_not_found: stats.reads_not_found,
        send_lag: lag,
        server_cpu_seconds: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| after - before),
        pressure_before,
        pressure_after: cpu_pressure(),
    })
}

/// The load phase: inserts records `0..count`.
pub fn load_records(
    target: &dyn Target,
    shape: RecordShape,
    count: u64,
    clients: usize,
    seed: u64,
) -> Result<Report, String> {
    let plan = Plan {
        workload: Workload::PutOnly,
        distribution: Distribution::Uniform,
        strong_reads: true,
        shape,
        seed,
        records: AtomicU64::new(0),
    };
    let pressure_before = cpu_pressure();
    let started = std::time::Instant::now();
    let stats = driver::load(&plan, target, count, clients).map_err(|error| error.to_string())?;
    Ok(Report {
        target: target.name().to_string(),
        label: format!("load {count} records"),
        operations: stats.all.len(),
        elapsed: started.elapsed(),
        latency: BTreeMap::from([(
            OpKind::Insert.name().to_string(),
            Percentiles::from_histogram(&stats.all),
        )]),
        all: Percentiles::from_histogram(&stats.all),
        spectrum: spectrum(&stats.all),
        errors: stats.errors,
        reads_not_found: 0,
        send_lag: None,
        server_cpu_seconds: None,
        pressure_before,
        pressure_after: cpu_pressure(),
    })
}

pub fn connect(options: &RunOptions, connections: usize) -> Result<Box<dyn Target>, String> {
    match options.target {
        // A cluster that was just started may not listen yet.
        TargetKind::Shoal => Ok(Box::new(targets::retry_connect(|| {
            targets::ShoalNative::connect(options.shoal_endpoint, connections)
        })?)),
        TargetKind::DynamodbHttp => Ok(Box::new(targets::retry_connect(|| {
            dynamodb_http::DynamoDbHttp::connect_indexed(
                "dynamodb-http",
                options.http_endpoint,
                options.provisioned_table,
                options.global_indexes,
                options.stream.map(StreamView::as_str),
            )
        })?)),
        #[cfg(feature = "etcd")]
        TargetKind::Etcd => Ok(Box::new(targets::Etcd::connect(&options.etcd_endpoints)?)),
        #[cfg(not(feature = "etcd"))]
        TargetKind::Etcd => {
            Err("the etcd target needs shoal-bench built with `--features etcd`".to_string())
        }
    }
}

fn check(options: &RunOptions) -> Result<(), String> {
    if options.global_indexes > targets::GLOBAL_INDEXES_MAX {
        return Err(format!(
            "--global-indexes is at most {}",
            targets::GLOBAL_INDEXES_MAX
        ));
    }
    if options.global_indexes > 0 && options.target != TargetKind::DynamodbHttp {
        return Err(
            "--global-indexes needs --target dynamodb-http (the native protocol's CreateTable has no indexes)"
                .to_string(),
        );
    }
    if options.stream.is_some() && options.target != TargetKind::DynamodbHttp {
        return Err(
            "--stream needs --target dynamodb-http (the Streams API is HTTP only)".to_string(),
        );
    }
    if options.record_count > RECORDS_MAX {
        return Err(format!("--record-count is at most {RECORDS_MAX}"));
    }
    if options.operations == 0 || options.operations > OPERATIONS_MAX {
        return Err(format!("--operations must be 1 to {OPERATIONS_MAX}"));
    }
    if options.max_seconds == 0 || options.max_seconds > RUN_SECONDS_MAX {
        return Err(format!("--max-seconds must be 1 to {RUN_SECONDS_MAX}"));
    }
    if options.clients == 0 || options.clients > CLIENTS_MAX {
        return Err(format!("--clients must be 1 to {CLIENTS_MAX}"));
    }
    if options.load_clients == 0 || options.load_clients > CLIENTS_MAX {
        return Err(format!("--load-clients must be 1 to {CLIENTS_MAX}"));
    }
    if options.field_count == 0 || options.field_count > FIELD_COUNT_MAX {
        return Err(format!("--field-count must be 1 to {FIELD_COUNT_MAX}"));
    }
    if options.field_bytes == 0 || options.field_bytes > FIELD_BYTES_MAX {
        return Err(format!("--field-bytes must be 1 to {FIELD_BYTES_MAX}"));
    }
    for rate in options.rate.iter().chain(&options.sweep) {
        if !(*rate > 0.0 && *rate <= RATE_MAX) {
            return Err(format!("rates must be above 0 and at most {RATE_MAX}"));
        }
    }
    Ok(())
}

pub fn run(options: &RunOptions) -> Result<(), String> {
    check(options)?;
    let shape = RecordShape {
        field_count: options.field_count,
        field_bytes: options.field_bytes,
    };
    let open_rates: Vec<f64> = options.rate.iter().chain(&options.sweep).copied().collect();
    let workers = if options.clients == 1 && !open_rates.is_empty() {
        OPEN_LOOP_WORKERS_DEFAULT
    } else {
        options.clients
    };
    let target = connect(options, workers.max(options.load_clients))?;
    target.prepare()?;
    let mut reports = Vec::new();
    if options.phase != Phase::Run {
        let report = load_records(
            target.as_ref(),
            shape,
            options.record_count,
            options.load_clients,
            options.seed,
        )?;
        eprintln!(
            "{}: loaded {} records in {:.1} s ({} errors)",
            report.target,
            report.operations,
            report.elapsed.as_secs_f64(),
            report.errors.values().sum::<u64>()
        );
        reports.push(report);
    }
    if options.phase != Phase::Load {
        let workload_name = options
            .workload
            .to_possible_value()
            .map(|value| value.get_name().to_string())
            .unwrap_or_default();
        let modes: Vec<Mode> = if open_rates.is_empty() {
            vec![Mode::Closed {
                clients: options.clients,
            }]
        } else {
            open_rates
                .iter()
                .map(|&rate| Mode::Open { workers, rate })
                .collect()
        };
        for mode in modes {
            let label = match mode {
                Mode::Closed { clients } => format!("{workload_name} closed x{clients}"),
                Mode::Open { rate, .. } => format!("{workload_name} open {rate:.0}/s"),
            };
            let cell = Cell {
                label,
                workload: options.workload,
                distribution: options
                    .distribution
                    .unwrap_or(options.workload.default_distribution()),
                strong_reads: options
                    .workload
                    .strong_reads(options.read_consistency == Consistency::Strong),
                shape,
                records: options.record_count,
                mode,
                operations: options.operations,
                max_duration: Duration::from_secs(options.max_seconds),
                seed: options.seed,
            };
            reports.push(run_cell(target.as_ref(), &cell, &options.server_pid)?);
        }
    }
    println!("{}", Report::table_header());
    for report in &reports {
        println!("{}", report.table_row());
        for (error, count) in &report.errors {
            println!("    error {error}: {count}");
        }
        if let Some((lag, valid)) = &report.send_lag {
            println!(
                "    send lag p50 {} us, p99 {} us, max {} us: {}",
                micros(lag.p50),
                micros(lag.p99),
                micros(lag.max),
                if *valid {
                    "valid"
                } else {
                    "INVALID (lag p99 > 1 ms)"
                }
            );
        }
    }
    let propagation_lag = if options.global_indexes > 0 {
        let lag = gsi_lag::scrape(options.http_endpoint)?;
        println!("{}", lag.table_row());
        Some(lag)
    } else {
        None
    };
    let stream_read = match options.stream {
        Some(view) => {
            let target = dynamodb_http::DynamoDbHttp::connect_indexed(
                "dynamodb-http",
                options.http_endpoint,
                options.provisioned_table,
                options.global_indexes,
                Some(view.as_str()),
            )?;
            let report = target.read_stream()?;
            println!("{}", report.table_row());
            Some(report)
        }
        None => None,
    };
    if let Some(path) = &options.json {
        let document = json!({
            "machine": machine_description(),
            "options": format!("{options:?}"),
            "reports": reports.iter().map(Report::to_json).collect::<Vec<_>>(),
            "gsi_propagation_lag": propagation_lag.as_ref().map(gsi_lag::Lag::to_json),
            "stream_read": stream_read.as_ref().map(dynamodb_http::StreamReadReport::to_json),
        });
        let text = serde_json::to_string_pretty(&document).map_err(|error| error.to_string())?;
        std::fs::write(path, text).map_err(|error| format!("{}: {error}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_come_from_utime_and_stime() {
        let stat = "1234 (shoal (node) 1) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 \
                    9 0 100 1000 10 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        let own = process_cpu_seconds(std::process::id()).unwrap();
        assert!(own >= 0.0);
    }
}
