//! `shoal-bench compare`: Shoal (`shoal dev`, 3 nodes) and etcd (3 members) started side by
//! side on loopback with fresh data, the same cells run against both, interleaved (ours, peer,
//! ours, peer, ...) `--repeat` times, and a markdown report of medians and same-run ratios.

// Without the `etcd` feature only the argument checks and the report code compile (and are
// tested); the runner that uses them needs etcd-client.
#![cfg_attr(not(feature = "etcd"), allow(dead_code))]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
#[cfg(feature = "etcd")]
use serde_json::json;

use crate::floor::{machine_description, micros};
use crate::load::driver::{RecordShape, Workload};
use crate::load::keys::Distribution;
#[cfg(feature = "etcd")]
use crate::load::targets::Target;
use crate::load::{Cell, Mode, Report, cpu_pressure};
#[cfg(feature = "etcd")]
use crate::load::{load_records, run_cell};

/// Repetitions at most.
pub const REPEAT_MAX: usize = 20;
/// Etcd members, and Shoal nodes.
const MEMBERS: usize = 3;
/// How long a stopped server gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
const STOP_POLL: Duration = Duration::from_millis(50);
/// Load clients for the records the read cells need.
const LOAD_CLIENTS: usize = 8;

#[derive(Debug, Clone, Args)]
pub struct CompareOptions {
    /// The `shoal` binary (a release build: target/release/shoal).
    #[arg(long)]
    pub shoal_bin: PathBuf,
    /// The `etcd` binary (bench/scripts/install-etcd.sh installs it).
    #[arg(long, default_value = "etcd")]
    pub etcd_bin: PathBuf,
    /// Fresh data for both clusters goes to DIR/shoal and DIR/etcd (removed first). Use the
    /// device under test, never tmpfs.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// `shoal dev --port` (HTTP; native protocol on +1).
    #[arg(long, default_value_t = 18_000)]
    pub shoal_port: u16,
    /// etcd member i serves clients on this + 10 (i - 1), peers on that + 1.
    #[arg(long, default_value_t = 23_790)]
    pub etcd_port: u16,
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Puts of the 1-client cell.
    #[arg(long, default_value_t = 2_000)]
    pub put_operations: u64,
    /// Clients of the closed-loop peak cells (one cell per count), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,32")]
    pub peak_clients: Vec<usize>,
    /// Puts of the peak cell.
    #[arg(long, default_value_t = 20_000)]
    pub peak_operations: u64,
    /// Rate of the open-loop put cell (0: no such cell).
    #[arg(long, default_value_t = 1_000.0)]
    pub open_rate: f64,
    #[arg(long, default_value_t = 5_000)]
    pub open_operations: u64,
    /// Strong reads of the 1-client read cell (0: no such cell).
    #[arg(long, default_value_t = 2_000)]
    pub read_operations: u64,
    /// Records loaded before the cells (keys the puts and reads choose from, uniformly).
    #[arg(long, default_value_t = 1_000)]
    pub records: u64,
    #[arg(long, default_value_t = 10)]
    pub field_count: usize,
    #[arg(long, default_value_t = 100)]
    pub field_bytes: usize,
    /// Every cell stops after this many seconds even if operations remain.
    #[arg(long, default_value_t = 120)]
    pub max_seconds: u64,
    /// The markdown report.
    #[arg(long, default_value = "compare.md")]
    pub report: PathBuf,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Child processes stopped (SIGTERM, then SIGKILL after `STOP_GRACE`) when dropped.
struct Servers {
    children: Vec<(String, Child)>,
}

impl Servers {
    /// The first server that is no longer running.
    fn exited(&mut self) -> Option<String> {
        self.children
            .iter_mut()
            .find_map(|(name, child)| (!matches!(child.try_wait(), Ok(None))).then(|| name.clone()))
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, child) in &self.children {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
        for (name, child) in &mut self.children {
            let deadline = std::time::Instant::now() + STOP_GRACE;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if std::time::Instant::now() >= deadline => {
                        eprintln!("compare: {name} did not stop; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(STOP_POLL),
                }
            }
        }
    }
}

fn fresh_dir(path: &Path) -> Result<(), String> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|error| format!("{}: {error}", path.display()))?;
    }
    std::fs::create_dir_all(path).map_err(|error| format!("{}: {error}", path.display()))
}

fn log_file(path: &Path) -> Result<Stdio, String> {
    std::fs::File::create(path)
        .map(Stdio::from)
        .map_err(|error| format!("{}: {error}", path.display()))
}

fn start_etcd(options: &CompareOptions, servers: &mut Servers) -> Result<Vec<String>, String> {
    let directory = options.data_dir.join("etcd");
    fresh_dir(&directory)?;
    let client_port = |member: usize| u32::from(options.etcd_port) + 10 * member as u32;
    let cluster: Vec<String> = (0..MEMBERS)
        .map(|member| format!("m{member}=http://127.0.0.1:{}", client_port(member) + 1))
        .collect();
    let cluster = cluster.join(",");
    let mut endpoints = Vec::new();
    for member in 0..MEMBERS {
        let client = format!("http://127.0.0.1:{}", client_port(member));
        let peer = format!("http://127.0.0.1:{}", client_port(member) + 1);
        let child = Command::new(&options.etcd_bin)
            .arg(format!("--name=m{member}"))
            .arg(format!(
                "--data-dir={}",
                directory.join(format!("m{member}")).display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={cluster}"))
            .arg(format!(
                "--initial-cluster-token=shoal-bench-{}",
                std::process::id()
            ))
            .arg("--initial-cluster-state=new")
            .stdout(Stdio::null())
            .stderr(log_file(&directory.join(format!("m{member}.log")))?)
            .spawn()
            .map_err(|error| format!("{}: {error}", options.etcd_bin.display()))?;
        servers.children.push((format!("etcd m{member}"), child));
        endpoints.push(client);
    }
    Ok(endpoints)
}

fn start_shoal(options: &CompareOptions, servers: &mut Servers) -> Result<u32, String> {
    let directory = options.data_dir.join("shoal");
    fresh_dir(&directory)?;
    let child = Command::new(&options.shoal_bin)
        .arg("dev")
        .arg(format!("--data-dir={}", directory.display()))
        .arg(format!("--nodes={MEMBERS}"))
        .arg(format!("--port={}", options.shoal_port))
        .stdout(log_file(&options.data_dir.join("shoal-dev.log"))?)
        .stderr(log_file(&options.data_dir.join("shoal-dev.err"))?)
        .spawn()
        .map_err(|error| format!("{}: {error}", options.shoal_bin.display()))?;
    let pid = child.id();
    servers.children.push(("shoal dev".to_string(), child));
    Ok(pid)
}

/// The processes whose parent is `parent` (`shoal dev`'s nodes and router).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// "some avg10" of a /proc/pressure/cpu line.
fn pressure_avg10(line: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("avg10="))?
        .parse()
        .ok()
}

struct CellSummary {
    ops_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_op: Option<f64>,
    pressure_avg10: f64,
    invalid_runs: usize,
    errors: u64,
}

fn summarize(reports: &[&Report]) -> CellSummary {
    let cpu: Vec<f64> = reports.iter().filter_map(|r| r.cpu_us_per_op()).collect();
    CellSummary {
        ops_per_s: median(reports.iter().map(|r| r.ops_per_second()).collect()),
        p50_us: median(reports.iter().map(|r| r.all.p50 as f64 / 1e3).collect()),
        p99_us: median(reports.iter().map(|r| r.all.p99 as f64 / 1e3).collect()),
        cpu_us_per_op: (!cpu.is_empty()).then(|| median(cpu)),
        pressure_avg10: median(
            reports
                .iter()
                .filter_map(|r| pressure_avg10(&r.pressure_after))
                .collect(),
        ),
        invalid_runs: reports.iter().filter(|r| !r.valid()).count(),
        errors: reports.iter().map(|r| r.errors.values().sum::<u64>()).sum(),
    }
}

fn check(options: &CompareOptions) -> Result<(), String> {
    if options.repeat == 0 || options.repeat > REPEAT_MAX {
        return Err(format!("--repeat must be 1 to {REPEAT_MAX}"));
    }
    let operations = [
        options.put_operations,
        options.peak_operations,
        options.open_operations,
        options.read_operations,
    ];
    if operations
        .iter()
        .any(|&count| count > crate::load::OPERATIONS_MAX)
        || options.records > crate::load::RECORDS_MAX
    {
        return Err("operation and record counts are bounded (see shoal-bench run)".to_string());
    }
    if options.peak_clients.is_empty()
        || options
            .peak_clients
            .iter()
            .any(|&clients| clients == 0 || clients > crate::load::CLIENTS_MAX)
    {
        return Err(format!(
            "--peak-clients must be 1 to {}",
            crate::load::CLIENTS_MAX
        ));
    }
    if options.max_seconds == 0 || options.max_seconds > crate::load::RUN_SECONDS_MAX {
        return Err("--max-seconds is bounded".to_string());
    }
    if !(0.0..=crate::load::RATE_MAX).contains(&options.open_rate) {
        return Err("--open-rate is bounded".to_string());
    }
    Ok(())
}

fn cells(options: &CompareOptions) -> Vec<Cell> {
    let shape = RecordShape {
        field_count: options.field_count,
        field_bytes: options.field_bytes,
    };
    let cell = |label: String, workload: Workload, mode: Mode, operations: u64| Cell {
        label,
        workload,
        distribution: Distribution::Uniform,
        strong_reads: true,
        shape,
        records: options.records,
        mode,
        operations,
        max_duration: Duration::from_secs(options.max_seconds),
        seed: 1,
    };
    let mut cells = vec![cell(
        "put closed x1".to_string(),
        Workload::PutOnly,
        Mode::Closed { clients: 1 },
        options.put_operations,
    )];
    for &clients in &options.peak_clients {
        cells.push(cell(
            format!("put closed x{clients}"),
            Workload::PutOnly,
            Mode::Closed { clients },
            options.peak_operations,
        ));
    }
    if options.open_rate > 0.0 && options.open_operations > 0 {
        cells.push(cell(
            format!("put open {:.0}/s", options.open_rate),
            Workload::PutOnly,
            Mode::Open {
                workers: crate::load::OPEN_LOOP_WORKERS_DEFAULT,
                rate: options.open_rate,
            },
            options.open_operations,
        ));
    }
    if options.read_operations > 0 {
        cells.push(cell(
            "strong read closed x1".to_string(),
            Workload::StrongReadOnly,
            Mode::Closed { clients: 1 },
            options.read_operations,
        ));
    }
    cells
}

#[cfg(not(feature = "etcd"))]
pub fn run(_options: &CompareOptions) -> Result<(), String> {
    Err("compare needs shoal-bench built with `--features etcd`".to_string())
}

#[cfg(feature = "etcd")]
pub fn run(options: &CompareOptions) -> Result<(), String> {
    check(options)?;
    fresh_dir(&options.data_dir.join("shoal"))?;
    let mut servers = Servers {
        children: Vec::new(),
    };
    let endpoints = start_etcd(options, &mut servers)?;
    let etcd_pids: Vec<u32> = servers
        .children
        .iter()
        .map(|(_, child)| child.id())
        .collect();
    let dev_pid = start_shoal(options, &mut servers)?;
    let native = std::net::SocketAddr::from(([127, 0, 0, 1], options.shoal_port + 1));
    let connections = options
        .peak_clients
        .iter()
        .copied()
        .chain([LOAD_CLIENTS, crate::load::OPEN_LOOP_WORKERS_DEFAULT])
        .max()
        .unwrap_or(LOAD_CLIENTS);
    let shoal: Box<dyn Target> = Box::new(crate::load::targets::retry_connect(|| {
        crate::load::targets::ShoalNative::connect(native, connections)
    })?);
    let etcd: Box<dyn Target> = Box::new(crate::load::targets::retry_connect(|| {
        crate::load::targets::Etcd::connect(&endpoints)
    })?);
    shoal.prepare()?;
    etcd.prepare()?;
    let shoal_pids = children_of(dev_pid);
    eprintln!("compare: shoal server pids {shoal_pids:?}, etcd pids {etcd_pids:?}");
    let shape = RecordShape {
        field_count: options.field_count,
        field_bytes: options.field_bytes,
    };
    for target in [&shoal, &etcd] {
        let loaded = load_records(target.as_ref(), shape, options.records, LOAD_CLIENTS, 7)?;
        eprintln!(
            "compare: {} loaded {} records",
            loaded.target, loaded.operations
        );
    }
    let cells = cells(options);
    let mut reports: Vec<(usize, usize, Report)> = Vec::new();
    println!("{}", Report::table_header());
    for repetition in 0..options.repeat {
        for (index, cell) in cells.iter().enumerate() {
            for (target, pids) in [(&shoal, &shoal_pids), (&etcd, &etcd_pids)] {
                // A server that died makes every later cell meaningless: stop here.
                if let Some(name) = servers.exited() {
                    return Err(format!(
                        "{name} exited during the comparison (logs in {})",
                        options.data_dir.display()
                    ));
                }
                let report = run_cell(target.as_ref(), cell, pids)?;
                println!("{}  [rep {}]", report.table_row(), repetition + 1);
                reports.push((repetition, index, report));
            }
        }
    }
    drop(servers);
    let markdown = render(options, &cells, &reports, &shoal_pids, &etcd_pids);
    std::fs::write(&options.report, &markdown)
        .map_err(|error| format!("{}: {error}", options.report.display()))?;
    println!("\n{markdown}");
    if let Some(path) = &options.json {
        let document = json!({
            "machine": machine_description(),
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "runs": reports.iter().map(|(repetition, _, report)| {
                let mut value = report.to_json();
                value["repetition"] = json!(repetition + 1);
                value
            }).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&document).map_err(|error| error.to_string())?;
        std::fs::write(path, text).map_err(|error| format!("{}: {error}", path.display()))?;
    }
    Ok(())
}

fn render(
    options: &CompareOptions,
    cells: &[Cell],
    reports: &[(usize, usize, Report)],
    shoal_pids: &[u32],
    etcd_pids: &[u32],
) -> String {
    let machine = machine_description();
    let mut out = String::new();
    out.push_str("# shoal-bench compare: Shoal (3 nodes) vs etcd (3 members), one run\n\n");
    out.push_str(&format!(
        "Command: `{}`\n\nMachine: kernel {}, {} cores; CPU pressure at the end: `{}`\n\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        machine["kernel"].as_str().unwrap_or("?"),
        machine["cores"],
        cpu_pressure(),
    ));
    out.push_str(&format!(
        "Records: {} of {} x {} B; keys uniform; {} repetitions interleaved (shoal, etcd per \
         cell); medians. Server CPU from /proc/<pid>/stat of Shoal's nodes and router {:?} and \
         the etcd members {:?}.\n\n",
        options.records,
        options.field_count,
        options.field_bytes,
        options.repeat,
        shoal_pids,
        etcd_pids
    ));
    out.push_str(
        "| cell | system | ops/s | p50 us | p99 us | server CPU us/op | pressure avg10 % | errors | invalid runs |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut ratios = Vec::new();
    for (index, cell) in cells.iter().enumerate() {
        let mut summaries = BTreeMap::new();
        for system in ["shoal", "etcd"] {
            let runs: Vec<&Report> = reports
                .iter()
                .filter(|(_, cell_index, report)| *cell_index == index && report.target == system)
                .map(|(_, _, report)| report)
                .collect();
            let summary = summarize(&runs);
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.1} | {:.1} | {} | {:.1} | {} | {} |\n",
                cell.label,
                system,
                summary.ops_per_s,
                summary.p50_us,
                summary.p99_us,
                summary
                    .cpu_us_per_op
                    .map_or("-".to_string(), |us| format!("{us:.0}")),
                summary.pressure_avg10,
                summary.errors,
                summary.invalid_runs,
            ));
            summaries.insert(system, summary);
        }
        if let (Some(ours), Some(peer)) = (summaries.get("shoal"), summaries.get("etcd")) {
            ratios.push(format!(
                "| {} | {:.2} | {:.2} | {:.2} | {} |",
                cell.label,
                ours.ops_per_s / peer.ops_per_s,
                peer.p50_us / ours.p50_us,
                peer.p99_us / ours.p99_us,
                match (ours.cpu_us_per_op, peer.cpu_us_per_op) {
                    (Some(a), Some(b)) => format!("{:.2}", a / b),
                    _ => "-".to_string(),
                }
            ));
        }
    }
    out.push_str(
        "\nRatios (medians of this run; > 1 means Shoal is better, except CPU where < 1 is):\n\n\
         | cell | ops/s shoal/etcd | p50 etcd/shoal | p99 etcd/shoal | CPU per op shoal/etcd |\n\
         |---|---:|---:|---:|---:|\n",
    );
    out.push_str(&ratios.join("\n"));
    out.push_str("\n\nEvery run:\n\n```\n");
    out.push_str(&Report::table_header());
    out.push('\n');
    for (repetition, _, report) in reports {
        out.push_str(&format!(
            "{}  rep {} lag-p99 {}\n",
            report.table_row(),
            repetition + 1,
            report
                .send_lag
                .as_ref()
                .map_or("-".to_string(), |(lag, _)| format!(
                    "{} us",
                    micros(lag.p99)
                ))
        ));
    }
    out.push_str("```\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_pressure() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(
            pressure_avg10("some avg10=12.50 avg60=3.00 avg300=1.00 total=5"),
            Some(12.5)
        );
    }
}
