//! `shoal-bench compare --config FILE`: Shoal and a peer started side by side on loopback with
//! fresh data, the same cells run against both, interleaved (ours, peer, ours, peer, ...)
//! `repeat` times, and a markdown report of medians and same-run ratios, plus JSON and SVG
//! plots. Two peers: etcd v3 (3 members; Shoal through its native protocol) and dynalite
//! (Shoal through its DynamoDB HTTP API).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::{Args, ValueEnum};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::json;

use crate::floor::{machine_description, micros};
use crate::load::driver::{RecordShape, Workload};
use crate::load::dynamodb_http::DynamoDbHttp;
use crate::load::keys::Distribution;
use crate::load::targets::{ShoalNative, Target, retry_connect};
use crate::load::{Cell, Mode, Report, cpu_pressure, load_records, run_cell};

/// Repetitions at most.
pub const REPEAT_MAX: usize = 20;
/// Etcd members, and Shoal nodes.
const MEMBERS: usize = 3;
/// How long a stopped server gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
const STOP_POLL: Duration = Duration::from_millis(50);
/// Load clients for the records the read cells need.
const LOAD_CLIENTS: usize = 8;

/// Ports and names the two comparisons use unless the config says otherwise.
const SHOAL_PORT_DEFAULT: u16 = 18_000;
const ETCD_PORT_DEFAULT: u16 = 23_790;
const DYNALITE_PORT_DEFAULT: u16 = 4_567;
/// dynalite keeps a new table CREATING this long (its default is 500 ms; the load waits).
const DYNALITE_CREATE_TABLE_MS: u32 = 50;

#[derive(Debug, Clone, Args)]
pub struct CompareOptions {
    /// The comparison: systems, records and cells (TOML; see bench/compare/*.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Overrides the config's `report` (markdown).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Overrides the config's `json`.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Overrides the config's `plots` (a directory for the SVG plots).
    #[arg(long)]
    pub plots: Option<PathBuf>,
}

/// Who Shoal is compared with, and through which of Shoal's front doors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// Shoal's native protocol against etcd v3 (3 members): the replicated-store comparison.
    Etcd,
    /// Shoal's DynamoDB HTTP API against dynalite (npm, one in-memory process): the front-door
    /// comparison.
    Dynalite,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Etcd => "etcd",
            Peer::Dynalite => "dynalite",
        }
    }

    /// The name of Shoal's side in the reports.
    fn ours(self) -> &'static str {
        match self {
            Peer::Etcd => "shoal",
            Peer::Dynalite => "shoal-http",
        }
    }
}

/// One comparison, as read from `--config` (unknown keys are refused: a typo must not
/// silently fall back to a default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    pub peer: Peer,
    /// The `shoal` binary (a release build: target/release/shoal).
    pub shoal_bin: PathBuf,
    /// The `etcd` binary (bench/scripts/install-etcd.sh installs it).
    #[serde(default = "default_etcd_bin")]
    pub etcd_bin: PathBuf,
    /// The `dynalite` script (bench/scripts/install-dynalite.sh installs it).
    #[serde(default = "default_dynalite_bin")]
    pub dynalite_bin: PathBuf,
    /// Fresh data for both systems goes to DIR/shoal and DIR/<peer> (removed first). Use the
    /// device under test, never tmpfs.
    pub data_dir: PathBuf,
    /// `shoal dev --port` (HTTP; native protocol on +1).
    #[serde(default)]
    pub shoal_port: Option<u16>,
    /// `shoal dev --verify-writes` (default true, Shoal's default). `false` gives Shoal the
    /// same durability contract as etcd, which does not read its writes back.
    #[serde(default = "default_verify_writes")]
    pub shoal_verify_writes: bool,
    /// etcd member i serves clients on this + 10 i, peers on that + 1; dynalite's port.
    #[serde(default)]
    pub peer_port: Option<u16>,
    #[serde(default = "default_repeat")]
    pub repeat: usize,
    /// Records loaded before the cells.
    #[serde(default = "default_records")]
    pub records: u64,
    #[serde(default = "default_field_count")]
    pub field_count: usize,
    #[serde(default = "default_field_bytes")]
    pub field_bytes: usize,
    /// Every cell stops after this many seconds even if operations remain.
    #[serde(default = "default_max_seconds")]
    pub max_seconds: u64,
    #[serde(default = "default_report")]
    pub report: PathBuf,
    #[serde(default)]
    pub json: Option<PathBuf>,
    #[serde(default)]
    pub plots: Option<PathBuf>,
    #[serde(rename = "cell")]
    pub cells: Vec<CellConfig>,
}

/// One cell: a workload in one mode, run against both systems `repeat` times.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellConfig {
    /// Defaults to "<workload> closed x<clients>" or "<workload> open <rate>/s".
    #[serde(default)]
    pub label: Option<String>,
    /// put-only, strong-read-only, eventual-read-only, a, b, c, d, e, f.
    pub workload: String,
    /// Closed loop: clients; open loop: workers (default 64).
    #[serde(default)]
    pub clients: Option<usize>,
    /// Open loop at this rate (operations per second).
    #[serde(default)]
    pub rate: Option<f64>,
    pub operations: u64,
    /// uniform (default), zipfian, latest.
    #[serde(default)]
    pub distribution: Option<String>,
    /// Reads of workloads A-F: strong (default) or eventual.
    #[serde(default)]
    pub read_consistency: Option<String>,
}

fn default_etcd_bin() -> PathBuf {
    PathBuf::from("etcd")
}
fn default_dynalite_bin() -> PathBuf {
    PathBuf::from("bench/peers/node_modules/.bin/dynalite")
}
fn default_verify_writes() -> bool {
    true
}
fn default_repeat() -> usize {
    3
}
fn default_records() -> u64 {
    1_000
}
fn default_field_count() -> usize {
    10
}
fn default_field_bytes() -> usize {
    100
}
fn default_max_seconds() -> u64 {
    120
}
fn default_report() -> PathBuf {
    PathBuf::from("compare.md")
}

impl CompareConfig {
    pub fn read(options: &CompareOptions) -> Result<CompareConfig, String> {
        let text = std::fs::read_to_string(&options.config)
            .map_err(|error| format!("{}: {error}", options.config.display()))?;
        let mut config: CompareConfig = toml::from_str(&text)
            .map_err(|error| format!("{}: {error}", options.config.display()))?;
        if let Some(report) = &options.report {
            config.report = report.clone();
        }
        if options.json.is_some() {
            config.json = options.json.clone();
        }
        if options.plots.is_some() {
            config.plots = options.plots.clone();
        }
        Ok(config)
    }

    fn shoal_port(&self) -> u16 {
        self.shoal_port.unwrap_or(SHOAL_PORT_DEFAULT)
    }

    fn peer_port(&self) -> u16 {
        self.peer_port.unwrap_or(match self.peer {
            Peer::Etcd => ETCD_PORT_DEFAULT,
            Peer::Dynalite => DYNALITE_PORT_DEFAULT,
        })
    }
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

fn start_etcd(config: &CompareConfig, servers: &mut Servers) -> Result<Vec<String>, String> {
    let directory = config.data_dir.join("etcd");
    fresh_dir(&directory)?;
    let client_port = |member: usize| u32::from(config.peer_port()) + 10 * member as u32;
    let cluster: Vec<String> = (0..MEMBERS)
        .map(|member| format!("m{member}=http://127.0.0.1:{}", client_port(member) + 1))
        .collect();
    let cluster = cluster.join(",");
    let mut endpoints = Vec::new();
    for member in 0..MEMBERS {
        let client = format!("http://127.0.0.1:{}", client_port(member));
        let peer = format!("http://127.0.0.1:{}", client_port(member) + 1);
        let child = Command::new(&config.etcd_bin)
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
            .map_err(|error| format!("{}: {error}", config.etcd_bin.display()))?;
        servers.children.push((format!("etcd m{member}"), child));
        endpoints.push(client);
    }
    Ok(endpoints)
}

/// dynalite keeps its tables in memory (no `--path`): it is the reference for what a DynamoDB
/// front door costs, not for durability, and the report says so.
fn start_dynalite(config: &CompareConfig, servers: &mut Servers) -> Result<u32, String> {
    let directory = config.data_dir.join("dynalite");
    fresh_dir(&directory)?;
    let child = Command::new(&config.dynalite_bin)
        .arg("--port")
        .arg(config.peer_port().to_string())
        .arg("--createTableMs")
        .arg(DYNALITE_CREATE_TABLE_MS.to_string())
        .stdout(log_file(&directory.join("dynalite.log"))?)
        .stderr(log_file(&directory.join("dynalite.err"))?)
        .spawn()
        .map_err(|error| {
            format!(
                "{}: {error} (bench/scripts/install-dynalite.sh installs it)",
                config.dynalite_bin.display()
            )
        })?;
    let pid = child.id();
    servers.children.push(("dynalite".to_string(), child));
    Ok(pid)
}

fn start_shoal(config: &CompareConfig, servers: &mut Servers) -> Result<u32, String> {
    let directory = config.data_dir.join("shoal");
    fresh_dir(&directory)?;
    let child = Command::new(&config.shoal_bin)
        .arg("dev")
        .arg(format!("--data-dir={}", directory.display()))
        .arg(format!("--nodes={MEMBERS}"))
        .arg(format!("--port={}", config.shoal_port()))
        .arg(format!("--verify-writes={}", config.shoal_verify_writes))
        .stdout(log_file(&config.data_dir.join("shoal-dev.log"))?)
        .stderr(log_file(&config.data_dir.join("shoal-dev.err"))?)
        .spawn()
        .map_err(|error| format!("{}: {error}", config.shoal_bin.display()))?;
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

/// The median (the mean of the middle two for an even count; NaN when empty).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
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

/// The cells of `config`, checked against the generator's bounds.
pub fn cells(config: &CompareConfig) -> Result<Vec<Cell>, String> {
    if config.repeat == 0 || config.repeat > REPEAT_MAX {
        return Err(format!("repeat must be 1 to {REPEAT_MAX}"));
    }
    if config.records > crate::load::RECORDS_MAX {
        return Err(format!("records is at most {}", crate::load::RECORDS_MAX));
    }
    if config.max_seconds == 0 || config.max_seconds > crate::load::RUN_SECONDS_MAX {
        return Err(format!(
            "max_seconds must be 1 to {}",
            crate::load::RUN_SECONDS_MAX
        ));
    }
    if config.field_count == 0 || config.field_count > crate::load::FIELD_COUNT_MAX {
        return Err(format!(
            "field_count must be 1 to {}",
            crate::load::FIELD_COUNT_MAX
        ));
    }
    if config.field_bytes == 0 || config.field_bytes > crate::load::FIELD_BYTES_MAX {
        return Err(format!(
            "field_bytes must be 1 to {}",
            crate::load::FIELD_BYTES_MAX
        ));
    }
    if config.cells.is_empty() {
        return Err("the config has no [[cell]]".to_string());
    }
    let shape = RecordShape {
        field_count: config.field_count,
        field_bytes: config.field_bytes,
    };
    let mut cells = Vec::new();
    for (index, cell) in config.cells.iter().enumerate() {
        let context = |message: String| format!("cell {}: {message}", index + 1);
        let workload = Workload::from_str(&cell.workload, true)
            .map_err(|_| context(format!("unknown workload {:?}", cell.workload)))?;
        let distribution = match &cell.distribution {
            Some(name) => Distribution::from_str(name, true)
                .map_err(|_| context(format!("unknown distribution {name:?}")))?,
            None => Distribution::Uniform,
        };
        let strong = match cell.read_consistency.as_deref() {
            None | Some("strong") => true,
            Some("eventual") => false,
            Some(other) => return Err(context(format!("unknown read_consistency {other:?}"))),
        };
        if cell.operations == 0 || cell.operations > crate::load::OPERATIONS_MAX {
            return Err(context(format!(
                "operations must be 1 to {}",
                crate::load::OPERATIONS_MAX
            )));
        }
        let clients = cell.clients.unwrap_or(match cell.rate {
            Some(_) => crate::load::OPEN_LOOP_WORKERS_DEFAULT,
            None => 1,
        });
        if clients == 0 || clients > crate::load::CLIENTS_MAX {
            return Err(context(format!(
                "clients must be 1 to {}",
                crate::load::CLIENTS_MAX
            )));
        }
        let mode = match cell.rate {
            Some(rate) if rate > 0.0 && rate <= crate::load::RATE_MAX => Mode::Open {
                workers: clients,
                rate,
            },
            Some(_) => {
                return Err(context(format!(
                    "rate must be above 0 and at most {}",
                    crate::load::RATE_MAX
                )));
            }
            None => Mode::Closed { clients },
        };
        let label = cell.label.clone().unwrap_or_else(|| match mode {
            Mode::Closed { clients } => format!("{} closed x{clients}", cell.workload),
            Mode::Open { rate, .. } => format!("{} open {rate:.0}/s", cell.workload),
        });
        cells.push(Cell {
            label,
            workload,
            distribution,
            strong_reads: workload.strong_reads(strong),
            shape,
            records: config.records,
            mode,
            operations: cell.operations,
            max_duration: Duration::from_secs(config.max_seconds),
            seed: 1 + index as u64,
        });
    }
    Ok(cells)
}

/// The connections Shoal's client pool needs: one per concurrent client or worker.
fn connections_needed(cells: &[Cell]) -> usize {
    cells
        .iter()
        .map(|cell| match cell.mode {
            Mode::Closed { clients } => clients,
            Mode::Open { workers, .. } => workers,
        })
        .chain([LOAD_CLIENTS])
        .max()
        .unwrap_or(LOAD_CLIENTS)
}

/// Both systems, started fresh and ready for the cells.
struct Systems {
    servers: Servers,
    ours: Box<dyn Target>,
    ours_pids: Vec<u32>,
    peer: Box<dyn Target>,
    peer_pids: Vec<u32>,
}

fn start_systems(config: &CompareConfig, cells: &[Cell]) -> Result<Systems, String> {
    let mut servers = Servers {
        children: Vec::new(),
    };
    let connections = connections_needed(cells);
    let (peer, peer_pids): (Box<dyn Target>, Vec<u32>) = match config.peer {
        Peer::Etcd => {
            let endpoints = start_etcd(config, &mut servers)?;
            let pids = servers
                .children
                .iter()
                .map(|(_, child)| child.id())
                .collect();
            (connect_etcd(&endpoints)?, pids)
        }
        Peer::Dynalite => {
            let pid = start_dynalite(config, &mut servers)?;
            let address = SocketAddr::from(([127, 0, 0, 1], config.peer_port()));
            let target = retry_connect(|| DynamoDbHttp::connect("dynalite", address, false))?;
            (Box::new(target), vec![pid])
        }
    };
    let dev_pid = start_shoal(config, &mut servers)?;
    let ours: Box<dyn Target> = match config.peer {
        Peer::Etcd => {
            let native = SocketAddr::from(([127, 0, 0, 1], config.shoal_port() + 1));
            Box::new(retry_connect(|| ShoalNative::connect(native, connections))?)
        }
        Peer::Dynalite => {
            let http = SocketAddr::from(([127, 0, 0, 1], config.shoal_port()));
            Box::new(retry_connect(|| {
                DynamoDbHttp::connect("shoal-http", http, true)
            })?)
        }
    };
    ours.prepare()?;
    peer.prepare()?;
    // A server that could not start (a port in use) may leave another process answering.
    if let Some(name) = servers.exited() {
        return Err(format!(
            "{name} exited while starting (logs in {})",
            config.data_dir.display()
        ));
    }
    // After `prepare`: `shoal dev` has started its nodes and router by then.
    let ours_pids = children_of(dev_pid);
    Ok(Systems {
        servers,
        ours,
        ours_pids,
        peer,
        peer_pids,
    })
}

#[cfg(feature = "etcd")]
fn connect_etcd(endpoints: &[String]) -> Result<Box<dyn Target>, String> {
    Ok(Box::new(retry_connect(|| {
        crate::load::targets::Etcd::connect(endpoints)
    })?))
}

#[cfg(not(feature = "etcd"))]
fn connect_etcd(_endpoints: &[String]) -> Result<Box<dyn Target>, String> {
    Err("comparing with etcd needs shoal-bench built with `--features etcd`".to_string())
}

pub fn run(options: &CompareOptions) -> Result<(), String> {
    let config = CompareConfig::read(options)?;
    let cells = cells(&config)?;
    fresh_dir(&config.data_dir)?;
    let mut systems = start_systems(&config, &cells)?;
    eprintln!(
        "compare: {} server pids {:?}, {} pids {:?}",
        config.peer.ours(),
        systems.ours_pids,
        config.peer.name(),
        systems.peer_pids
    );
    let shape = RecordShape {
        field_count: config.field_count,
        field_bytes: config.field_bytes,
    };
    for target in [&systems.ours, &systems.peer] {
        let loaded = load_records(target.as_ref(), shape, config.records, LOAD_CLIENTS, 7)?;
        eprintln!(
            "compare: {} loaded {} records ({} errors)",
            loaded.target,
            loaded.operations,
            loaded.errors.values().sum::<u64>()
        );
    }
    let mut reports: Vec<(usize, usize, Report)> = Vec::new();
    println!("{}", Report::table_header());
    for repetition in 0..config.repeat {
        for (index, cell) in cells.iter().enumerate() {
            for (target, pids) in [
                (&systems.ours, &systems.ours_pids),
                (&systems.peer, &systems.peer_pids),
            ] {
                // A server that died makes every later cell meaningless: stop here.
                if let Some(name) = systems.servers.exited() {
                    return Err(format!(
                        "{name} exited during the comparison (logs in {})",
                        config.data_dir.display()
                    ));
                }
                let report = run_cell(target.as_ref(), cell, pids)?;
                println!("{}  [rep {}]", report.table_row(), repetition + 1);
                reports.push((repetition, index, report));
            }
        }
    }
    let (ours_pids, peer_pids) = (systems.ours_pids.clone(), systems.peer_pids.clone());
    drop(systems);
    let markdown = render(&config, &cells, &reports, &ours_pids, &peer_pids);
    std::fs::write(&config.report, &markdown)
        .map_err(|error| format!("{}: {error}", config.report.display()))?;
    println!("\n{markdown}");
    if let Some(directory) = &config.plots {
        for path in crate::plot::comparison_plots(directory, &cells, &reports)? {
            eprintln!("compare: wrote {}", path.display());
        }
    }
    if let Some(path) = &config.json {
        let document = json!({
            "machine": machine_description(),
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "config": format!("{config:?}"),
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
    config: &CompareConfig,
    cells: &[Cell],
    reports: &[(usize, usize, Report)],
    ours_pids: &[u32],
    peer_pids: &[u32],
) -> String {
    let (ours, peer) = (config.peer.ours(), config.peer.name());
    let machine = machine_description();
    let mut out = String::new();
    out.push_str(&match config.peer {
        Peer::Etcd => "# shoal-bench compare: Shoal (3 nodes, native protocol) vs etcd (3 \
                       members), one run\n\n"
            .to_string(),
        Peer::Dynalite => "# shoal-bench compare: Shoal's DynamoDB HTTP API (3 nodes, \
                           replicated, durable) vs dynalite (one process, in memory), one run\n\n"
            .to_string(),
    });
    out.push_str(&format!(
        "Command: `{}`\n\nMachine: kernel {}, {} cores; CPU pressure at the end: `{}`\n\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        machine["kernel"].as_str().unwrap_or("?"),
        machine["cores"],
        cpu_pressure(),
    ));
    out.push_str(&format!(
        "Records: {} of {} x {} B; {} repetitions interleaved ({ours}, {peer} per cell); \
         medians. Server CPU from /proc/<pid>/stat of {ours} {:?} and {peer} {:?}. Shoal's \
         write read-back (verify_writes): {}.\n\n",
        config.records,
        config.field_count,
        config.field_bytes,
        config.repeat,
        ours_pids,
        peer_pids,
        if config.shoal_verify_writes {
            "on"
        } else {
            "off"
        }
    ));
    out.push_str(
        "| cell | system | ops/s | p50 us | p99 us | server CPU us/op | pressure avg10 % | errors | invalid runs |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut ratios = Vec::new();
    for (index, cell) in cells.iter().enumerate() {
        let mut summaries = BTreeMap::new();
        for system in [ours, peer] {
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
        if let (Some(ours), Some(peer)) = (summaries.get(ours), summaries.get(peer)) {
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
    out.push_str(&format!(
        "\nRatios (medians of this run; > 1 means {ours} is better, except CPU where < 1 is):\n\n\
         | cell | ops/s {ours}/{peer} | p50 {peer}/{ours} | p99 {peer}/{ours} | CPU per op {ours}/{peer} |\n\
         |---|---:|---:|---:|---:|\n",
    ));
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
        for (error, count) in &report.errors {
            out.push_str(&format!("    error {error}: {count}\n"));
        }
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

    fn parse(text: &str) -> Result<Vec<Cell>, String> {
        let config: CompareConfig = toml::from_str(text).map_err(|error| error.to_string())?;
        cells(&config)
    }

    #[test]
    fn the_shipped_configs_are_valid() {
        for name in [
            "etcd.toml",
            "etcd-equal-durability.toml",
            "dynalite.toml",
            "smoke-dynalite.toml",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("compare")
                .join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            let cells = parse(&text).unwrap_or_else(|error| panic!("{name}: {error}"));
            assert!(!cells.is_empty(), "{name}");
        }
    }

    #[test]
    fn configs_are_checked() {
        let base = "peer = \"etcd\"\nshoal_bin = \"s\"\ndata_dir = \"/d\"\n";
        let cells = parse(&format!(
            "{base}[[cell]]\nworkload = \"put-only\"\nrate = 500.0\noperations = 10\n\
             [[cell]]\nworkload = \"e\"\nclients = 4\noperations = 10\n\
             read_consistency = \"eventual\"\ndistribution = \"zipfian\"\n"
        ))
        .unwrap();
        assert_eq!(cells[0].label, "put-only open 500/s");
        assert!(matches!(cells[0].mode, Mode::Open { workers: 64, .. }));
        assert_eq!(cells[1].label, "e closed x4");
        assert!(!cells[1].strong_reads);
        assert_eq!(cells[1].distribution, Distribution::Zipfian);
        // A typo is an error, not a default.
        let typo = parse(&format!(
            "{base}[[cell]]\nworkload = \"a\"\noperation = 10\n"
        ));
        assert!(typo.unwrap_err().contains("operation"));
        let unknown = parse(&format!(
            "{base}[[cell]]\nworkload = \"z\"\noperations = 10\n"
        ));
        assert!(unknown.unwrap_err().contains("unknown workload"));
        let zero = parse(&format!(
            "{base}[[cell]]\nworkload = \"a\"\noperations = 0\n"
        ));
        assert!(zero.unwrap_err().contains("operations must be"));
        let no_cells = parse(&format!("{base}cell = []\n"));
        assert!(no_cells.unwrap_err().contains("no [[cell]]"));
        assert!(
            parse("peer = \"mysql\"\nshoal_bin = \"s\"\ndata_dir = \"/d\"\ncell = []").is_err()
        );
    }
}
