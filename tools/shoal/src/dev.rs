//! `shoal dev`: a replicated cluster on this machine, for development. Starts N node processes
//! and a router as children on loopback, prints the endpoints and each child's pid, and stops
//! them all on Ctrl-C or SIGTERM. Started again with the same arguments, it finds its data and
//! serves it again.
//!
//! A child that exits is reported on stderr (which one, its pid, its exit status or signal) and
//! the others keep running, so a killed node shows replication at work: its partitions go on
//! with the remaining majority. The child is started again on its data after
//! [`RESTART_DELAY_FIRST`], doubling at each death up to [`RESTART_DELAY_MAX`]; a child that
//! stayed up [`RESTART_BACKOFF_RESET_UPTIME`] starts over from the first delay. With
//! `--no-restart` it stays down (to watch the cluster without it), and `shoal dev` exits once
//! every child is gone. Ctrl-C and SIGTERM stop everything at any time, a pending restart
//! included.
//!
//! Ports, from `--port P` (the DynamoDB HTTP endpoint):
//! - P: the router's DynamoDB JSON/HTTP API;
//! - P + 1: the router's native client protocol (`shoal table|item|query|scan --endpoint`);
//! - P + 100 × i (i = 1..N): node i's bus, shard s on that + s;
//! - P + 100 × i + 99: node i's admin endpoint (/metrics, /health).
//!
//! Credentials: like DynamoDB Local, the router accepts any (`shoal router --auth none`), and
//! says how to turn checking on. With `--auth` it verifies signatures, and `shoal dev` creates
//! an admin key once the cluster answers (`shoal auth create-key`) and prints it.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

/// Nodes a dev cluster runs at most.
pub const DEV_NODES_MAX: u16 = 9;
/// Shards per dev node at most (they share this machine's cores).
pub const DEV_SHARDS_MAX: u16 = 16;
const PORT_STRIDE: u16 = 100;
/// The native protocol's port after the HTTP port (the router's default, `shoal router`).
const NATIVE_PORT_OFFSET: u16 = 1;
// The native port stays below node 1's ports.
const _: () = assert!(NATIVE_PORT_OFFSET < PORT_STRIDE);
/// How long children get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
const CHILD_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The delay before a child that exited is started again, the first time.
pub const RESTART_DELAY_FIRST: Duration = Duration::from_secs(1);
/// The delay doubles at each death in a row, up to this: a child that cannot start (a port
/// taken, a broken data directory) is retried without flooding the terminal.
pub const RESTART_DELAY_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long before it exited died for a new reason: its delay starts over.
pub const RESTART_BACKOFF_RESET_UPTIME: Duration = Duration::from_secs(60);
const _: () = assert!(RESTART_DELAY_FIRST.as_millis() > 0);
const _: () = assert!(RESTART_DELAY_FIRST.as_millis() <= RESTART_DELAY_MAX.as_millis());
// A child that crashes as soon as it starts never stays up long enough to reset its delay.
const _: () = assert!(RESTART_DELAY_MAX.as_millis() < RESTART_BACKOFF_RESET_UPTIME.as_millis());

#[derive(Debug, Args, Clone)]
pub struct DevOptions {
    /// Where the nodes keep their data (node-<i>/ each).
    #[arg(long, default_value = "./shoal-data")]
    pub data_dir: PathBuf,
    /// Storage node processes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Shards (executors) per node.
    #[arg(long, default_value_t = 1)]
    pub shards_per_node: u16,
    /// The DynamoDB HTTP port P. The others follow from it: the native protocol on P + 1
    /// (`shoal table|item|query|scan --endpoint`), node i's bus on P + 100 × i (shard s on
    /// that + s) and its admin endpoint (/metrics, /health) on P + 100 × i + 99.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Passed to every node: read durable writes back before they count (`shoal node
    /// --verify-writes`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub verify_writes: bool,
    /// Leave a child that exited down instead of starting it again (the rest keep running;
    /// `shoal dev` exits when every child is gone).
    #[arg(long)]
    pub no_restart: bool,
    /// Verify SigV4 signatures (as `shoal router` does by default) and create an admin key,
    /// printed once the cluster answers. Without it any credentials are accepted.
    #[arg(long)]
    pub auth: bool,
    /// Serve the DynamoDB API over HTTPS only, with a self-signed certificate for 127.0.0.1
    /// and localhost kept in <data-dir>/tls/ (made on the first run, reused after), and print
    /// how to trust it.
    #[arg(long)]
    pub tls: bool,
    /// Passed to every node: seconds between Time to Live sweeps of a partition (`shoal node
    /// --ttl-sweep-period-seconds`); short here, so that expiry can be watched.
    #[arg(long, default_value_t = DEV_TTL_SWEEP_PERIOD_SECONDS)]
    pub ttl_sweep_period_seconds: u64,
    /// Passed to the router: seconds a node may answer nothing before its replicas are moved
    /// to the other nodes (`shoal router --node-down-after`); short here, so that the cluster
    /// can be watched healing (with `--nodes 4` or more: a replica needs a node to go to).
    #[arg(long, default_value_t = DEV_NODE_DOWN_AFTER_SECONDS, value_parser = clap::value_parser!(u64).range(crate::router::NODE_DOWN_AFTER_MIN_SECONDS..))]
    pub node_down_after: u64,
    /// Passed to the router: bytes of items at which a table partition is split in two
    /// (`shoal router --split-bytes`); set it low to watch a table split as it grows.
    #[arg(long, default_value_t = shoal_router::router::SPLIT_BYTES_DEFAULT)]
    pub split_bytes: u64,
    /// Passed to the router: read units per second at which a table partition is split for
    /// traffic (`shoal router --split-read-units`).
    #[arg(long, default_value_t = shoal_router::router::SPLIT_READ_UNITS_DEFAULT)]
    pub split_read_units: u64,
    /// Passed to the router: the same for write units (`shoal router --split-write-units`);
    /// set it low to watch a busy partition split.
    #[arg(long, default_value_t = shoal_router::router::SPLIT_WRITE_UNITS_DEFAULT)]
    pub split_write_units: u64,
}

/// `shoal dev`'s threshold for a node down: longer than the supervisor takes to restart a
/// node that died (so a crash is not taken for a loss), shorter than a production router's.
pub const DEV_NODE_DOWN_AFTER_SECONDS: u64 = 15;

/// `shoal dev`'s Time to Live sweep period: expired items go within seconds, where a
/// production node (an hour by default) takes its time.
pub const DEV_TTL_SWEEP_PERIOD_SECONDS: u64 = 5;

impl DevOptions {
    /// `shoal dev` with no flags.
    pub fn defaults() -> DevOptions {
        DevOptions {
            data_dir: PathBuf::from("./shoal-data"),
            nodes: 3,
            shards_per_node: 1,
            port: 8000,
            verify_writes: true,
            no_restart: false,
            auth: false,
            tls: false,
            ttl_sweep_period_seconds: DEV_TTL_SWEEP_PERIOD_SECONDS,
            node_down_after: DEV_NODE_DOWN_AFTER_SECONDS,
            split_bytes: shoal_router::router::SPLIT_BYTES_DEFAULT,
            split_read_units: shoal_router::router::SPLIT_READ_UNITS_DEFAULT,
            split_write_units: shoal_router::router::SPLIT_WRITE_UNITS_DEFAULT,
        }
    }
}

/// The nodes' bus addresses of `shoal dev` with no flags: where `shoal auth` looks when given
/// no nodes.
pub fn default_node_buses() -> Result<Vec<(u64, SocketAddr)>, String> {
    Ok(layout(&DevOptions::defaults())?
        .nodes
        .iter()
        .map(|(id, bus, _, _)| (*id, *bus))
        .collect())
}

pub struct DevLayout {
    pub http: SocketAddr,
    pub native: SocketAddr,
    /// Per node: id, bus base address, admin address, data directory.
    pub nodes: Vec<(u64, SocketAddr, SocketAddr, PathBuf)>,
}

pub fn layout(options: &DevOptions) -> Result<DevLayout, String> {
    if options.nodes == 0 || options.nodes > DEV_NODES_MAX {
        return Err(format!("--nodes must be 1 to {DEV_NODES_MAX}"));
    }
    if options.shards_per_node == 0 || options.shards_per_node > DEV_SHARDS_MAX {
        return Err(format!("--shards-per-node must be 1 to {DEV_SHARDS_MAX}"));
    }
    let top = u32::from(options.port) + u32::from(PORT_STRIDE) * u32::from(options.nodes) + 99;
    if top > u32::from(u16::MAX) || options.port < 1024 {
        return Err(format!(
            "--port {} leaves no room for {} nodes (ports up to {top} are used; use 1024-{})",
            options.port,
            options.nodes,
            u16::MAX - PORT_STRIDE * options.nodes - 99
        ));
    }
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let nodes = (1..=options.nodes)
        .map(|index| {
            let base = options.port + PORT_STRIDE * index;
            (
                u64::from(index),
                loopback(base),
                loopback(base + PORT_STRIDE - 1),
                options.data_dir.join(format!("node-{index}")),
            )
        })
        .collect();
    Ok(DevLayout {
        http: loopback(options.port),
        native: loopback(options.port + NATIVE_PORT_OFFSET),
        nodes,
    })
}

fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// How a child ended, in words: "exited with status 1", "was killed by SIGKILL".
fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    if let Some(number) = status.signal() {
        let name = Signal::try_from(number)
            .map_or_else(|_| format!("signal {number}"), |signal| signal.to_string());
        let core = if status.core_dumped() {
            " (core dumped)"
        } else {
            ""
        };
        return format!("was killed by {name}{core}");
    }
    format!("ended ({status})")
}

/// The restart delays of one child: [`RESTART_DELAY_FIRST`], doubling at each death up to
/// [`RESTART_DELAY_MAX`], and the first again after an uptime of
/// [`RESTART_BACKOFF_RESET_UPTIME`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RestartBackoff {
    next: Duration,
}

impl RestartBackoff {
    fn new() -> RestartBackoff {
        RestartBackoff {
            next: RESTART_DELAY_FIRST,
        }
    }

    /// The delay before starting again a child that died after running for `uptime`.
    fn after_death(&mut self, uptime: Duration) -> Duration {
        if uptime >= RESTART_BACKOFF_RESET_UPTIME {
            self.next = RESTART_DELAY_FIRST;
        }
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(RESTART_DELAY_MAX);
        delay
    }
}

/// Where one child of `shoal dev` is in its life.
enum ChildState {
    Running {
        child: Child,
        started: Instant,
    },
    /// It exited; it is started again at this time.
    RestartAt(Instant),
    /// It exited and stays down (`--no-restart`).
    Down,
}

/// One child of `shoal dev`: how to start it, and its state.
struct Supervised {
    name: String,
    command: Command,
    state: ChildState,
    backoff: RestartBackoff,
}

impl Supervised {
    /// Starts the child for the first time; an error here is a setup problem (the binary is
    /// gone), so the caller stops the cluster instead of retrying.
    fn spawn(name: String, mut command: Command) -> Result<Supervised, String> {
        let child = command
            .spawn()
            .map_err(|error| format!("cannot start {name}: {error}"))?;
        println!("shoal dev: {name} started (pid {})", child.id());
        Ok(Supervised {
            name,
            command,
            state: ChildState::Running {
                child,
                started: Instant::now(),
            },
            backoff: RestartBackoff::new(),
        })
    }

    /// Notices a death or a restart that is due. `restart` is false under `--no-restart`.
    fn poll(&mut self, now: Instant, restart: bool) {
        match &mut self.state {
            ChildState::Running { child, started } => {
                let uptime = now.saturating_duration_since(*started);
                let pid = child.id();
                let how = match child.try_wait() {
                    Ok(None) => return,
                    Ok(Some(status)) => describe_exit(status),
                    Err(error) => {
                        // It cannot be watched any more: make sure it is gone before another
                        // one takes its ports.
                        let _ = child.kill();
                        let _ = child.wait();
                        format!("could not be watched ({error}) and was killed")
                    }
                };
                self.died(&format!("(pid {pid}) {how}"), uptime, now, restart);
            }
            ChildState::RestartAt(at) if now >= *at => match self.command.spawn() {
                Ok(child) => {
                    println!("shoal dev: {} restarted (pid {})", self.name, child.id());
                    self.state = ChildState::Running {
                        child,
                        started: now,
                    };
                }
                Err(error) => {
                    self.died(
                        &format!("could not be started ({error})"),
                        Duration::ZERO,
                        now,
                        restart,
                    );
                }
            },
            ChildState::RestartAt(_) | ChildState::Down => {}
        }
    }

    fn died(&mut self, how: &str, uptime: Duration, now: Instant, restart: bool) {
        let name = &self.name;
        if restart {
            let delay = self.backoff.after_death(uptime);
            eprintln!("shoal dev: {name} {how}; starting it again in {delay:?}");
            self.state = ChildState::RestartAt(now + delay);
        } else {
            eprintln!("shoal dev: {name} {how}; leaving it down (--no-restart)");
            self.state = ChildState::Down;
        }
    }
}

/// Sends SIGTERM to every running child and waits for them, killing those still running after
/// [`STOP_GRACE`]. A pending restart is simply dropped.
fn stop_all(children: &mut [Supervised]) {
    for supervised in children.iter() {
        if let ChildState::Running { child, .. } = &supervised.state {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for supervised in children.iter_mut() {
        let ChildState::Running { child, .. } = &mut supervised.state else {
            continue;
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    eprintln!(
                        "shoal dev: {} did not stop in {STOP_GRACE:?}; killing it",
                        supervised.name
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        supervised.state = ChildState::Down;
    }
}

fn node_command(
    executable: &std::path::Path,
    options: &DevOptions,
    layout: &DevLayout,
    node: &(u64, SocketAddr, SocketAddr, PathBuf),
) -> Command {
    let (id, bus, admin, directory) = node;
    let mut command = Command::new(executable);
    command
        .process_group(0)
        .arg("node")
        .arg(format!("--node-id={id}"))
        .arg(format!("--data-dir={}", directory.display()))
        .arg(format!("--listen={bus}"))
        .arg(format!("--admin={admin}"))
        .arg(format!("--shards={}", options.shards_per_node))
        .arg(format!("--cpus={}", node_cpus(options, layout, *id)))
        .arg(format!("--verify-writes={}", options.verify_writes))
        .arg(format!(
            "--ttl-sweep-period-seconds={}",
            options.ttl_sweep_period_seconds
        ))
        // A development machine's disk: small WAL rings.
        .arg("--wal-segment-mib=16")
        .arg("--wal-segments=4");
    for (peer, peer_bus, _, _) in &layout.nodes {
        if peer != id {
            command.arg(format!("--peer={peer}={peer_bus}"));
        }
    }
    command
}

/// The cores node `id` pins its shards to. The nodes of `shoal dev` share one machine: each
/// gets CPUs of its own from this process's affinity mask when there are enough for every
/// shard of every node, and otherwise none are pinned. Left to its default, every node would
/// pin its shard 0 to the mask's first CPU, and a partition's three replicas would share one
/// core (crate::cpus).
fn node_cpus(options: &DevOptions, layout: &DevLayout, id: u64) -> String {
    let allowed = crate::cpus::allowed_cpus().unwrap_or_default();
    let shards = usize::from(options.shards_per_node);
    let position = layout.nodes.iter().position(|(node, ..)| *node == id);
    match position {
        Some(index) if layout.nodes.len() * shards <= allowed.len() => {
            crate::cpus::format_cpu_list(&allowed[index * shards..(index + 1) * shards])
        }
        _ => "none".to_string(),
    }
}

/// The directory under `--data-dir` that holds `shoal dev --tls`'s certificate and key.
pub const DEV_TLS_DIRECTORY: &str = "tls";
/// The names the self-signed certificate is valid for: where `shoal dev` listens.
const DEV_TLS_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// `shoal dev --tls`'s certificate and key: `<data-dir>/tls/{cert,key}.pem`.
pub fn dev_tls_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let directory = data_dir.join(DEV_TLS_DIRECTORY);
    (directory.join("cert.pem"), directory.join("key.pem"))
}

/// Makes the self-signed pair of `shoal dev --tls` unless the data directory already holds a
/// usable one (so clients told to trust it keep working across restarts). Returns the paths
/// and whether the pair is new.
pub fn ensure_dev_certificate(data_dir: &Path) -> Result<(PathBuf, PathBuf, bool), String> {
    let (certificate, key) = dev_tls_paths(data_dir);
    if certificate.exists() && key.exists() {
        return match shoal_http::tls::server_config(&certificate, &key) {
            Ok(_) => Ok((certificate, key, false)),
            Err(error) => Err(format!(
                "{error} (delete {} to have shoal dev --tls make a new pair)",
                certificate.parent().unwrap_or(data_dir).display()
            )),
        };
    }
    let mut params = rcgen::CertificateParams::new(
        DEV_TLS_NAMES
            .iter()
            .map(|name| name.to_string())
            .collect::<Vec<_>>(),
    )
    .map_err(|error| format!("cannot describe the dev certificate: {error}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "shoal dev (self-signed)");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let signing_key = rcgen::KeyPair::generate()
        .map_err(|error| format!("cannot generate the dev TLS key: {error}"))?;
    let generated = params
        .self_signed(&signing_key)
        .map_err(|error| format!("cannot sign the dev certificate: {error}"))?;
    let directory = data_dir.join(DEV_TLS_DIRECTORY);
    std::fs::create_dir_all(&directory)
        .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
    // The key is written readable by its owner only, before any byte of it is in the file.
    let mut key_file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&key)
        .map_err(|error| format!("cannot create {}: {error}", key.display()))?;
    key_file
        .write_all(signing_key.serialize_pem().as_bytes())
        .and_then(|()| key_file.sync_all())
        .map_err(|error| format!("cannot write {}: {error}", key.display()))?;
    std::fs::write(&certificate, generated.pem())
        .map_err(|error| format!("cannot write {}: {error}", certificate.display()))?;
    Ok((certificate, key, true))
}

fn router_command(
    executable: &std::path::Path,
    options: &DevOptions,
    layout: &DevLayout,
) -> Command {
    let mut command = Command::new(executable);
    command
        .process_group(0)
        .arg("router")
        .arg(format!("--http={}", layout.http))
        .arg(format!("--native={}", layout.native))
        .arg(format!("--shards-per-node={}", options.shards_per_node))
        .arg(format!("--node-down-after={}", options.node_down_after))
        .arg(format!("--split-bytes={}", options.split_bytes))
        .arg(format!("--split-read-units={}", options.split_read_units))
        .arg(format!("--split-write-units={}", options.split_write_units));
    if !options.auth {
        command.arg("--auth=none");
    }
    if options.tls {
        let (certificate, key) = dev_tls_paths(&options.data_dir);
        command
            .arg(format!("--tls-cert={}", certificate.display()))
            .arg(format!("--tls-key={}", key.display()));
    }
    for (id, bus, _, _) in &layout.nodes {
        command.arg(format!("--node={id}={bus}"));
    }
    command
}

/// `shoal auth create-key --role admin` against this cluster, on a thread of its own (it waits
/// for the metadata group to answer, while the supervision loop goes on): prints the key.
fn create_admin_key(executable: &std::path::Path, layout: &DevLayout, options: &DevOptions) {
    let mut command = Command::new(executable);
    command.arg("auth").arg("create-key").arg("--role=admin");
    for (id, bus, _, _) in &layout.nodes {
        command.arg(format!("--node={id}={bus}"));
    }
    let http = format!("{}://{}", scheme(options.tls), layout.http);
    let native = layout.native;
    let spawned = std::thread::Builder::new()
        .name("shoal-dev-key".to_string())
        .spawn(move || match command.output() {
            Ok(output) if output.status.success() => {
                println!(
                    "shoal dev: signatures are verified (--auth); an admin key for {http} and the native port {native} (shoal table|item|query|scan read it from these variables):"
                );
                print!("{}", String::from_utf8_lossy(&output.stdout));
                println!(
                    "  (more keys: shoal auth create-key --role read-only --tables T; shoal auth --help)"
                );
            }
            Ok(output) => eprintln!(
                "shoal dev: could not create an access key: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(error) => eprintln!("shoal dev: could not run shoal auth create-key: {error}"),
        });
    if let Err(error) = spawned {
        eprintln!("shoal dev: cannot start the key thread: {error}");
    }
}

pub fn run(options: &DevOptions) -> ExitCode {
    let layout = match layout(options) {
        Ok(layout) => layout,
        Err(error) => {
            eprintln!("shoal dev: {error}");
            return ExitCode::from(2);
        }
    };
    let executable = match std::env::current_exe() {
        Ok(path) => path,
        Err(error) => {
            eprintln!("shoal dev: cannot find the shoal binary: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Ctrl-C and SIGTERM are taken synchronously (sigwait), not by a handler. Children inherit
    // the blocked mask across exec; `shoal` unblocks both at start (main.rs). Children run in
    // their own process group, so a terminal's Ctrl-C reaches only this process, which then
    // stops them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    if let Err(error) = signals.thread_block() {
        eprintln!("shoal dev: cannot block signals: {error}");
        return ExitCode::FAILURE;
    }
    // Before any child starts: a router without its certificate would only restart in a loop.
    let dev_certificate = if options.tls {
        match ensure_dev_certificate(&options.data_dir) {
            Ok((certificate, _, fresh)) => Some((certificate, fresh)),
            Err(error) => {
                eprintln!("shoal dev: --tls: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let mut commands: Vec<(String, Command)> = layout
        .nodes
        .iter()
        .map(|node| {
            (
                format!("node {}", node.0),
                node_command(&executable, options, &layout, node),
            )
        })
        .collect();
    commands.push((
        "router".to_string(),
        router_command(&executable, options, &layout),
    ));
    let mut children: Vec<Supervised> = Vec::with_capacity(commands.len());
    for (name, command) in commands {
        match Supervised::spawn(name, command) {
            Ok(supervised) => children.push(supervised),
            Err(error) => {
                eprintln!("shoal dev: {error}");
                stop_all(&mut children);
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "shoal dev: {} nodes, {} shard(s) each, data in {}",
        options.nodes,
        options.shards_per_node,
        options.data_dir.display()
    );
    let api = format!("{}://{}", scheme(options.tls), layout.http);
    println!("  DynamoDB API: {api}  (aws dynamodb --endpoint-url {api} ...)");
    if let Some((certificate, fresh)) = &dev_certificate {
        let made = if *fresh {
            "made now"
        } else {
            "kept from an earlier run"
        };
        println!(
            "  TLS only, self-signed certificate for 127.0.0.1 and localhost ({made}): {}",
            certificate.display()
        );
        println!(
            "    trust it: AWS_CA_BUNDLE={} aws dynamodb --endpoint-url {api} list-tables",
            certificate.display()
        );
        println!(
            "    boto3: boto3.client(\"dynamodb\", endpoint_url=\"{api}\", verify=\"{}\")  (or AWS_CA_BUNDLE)",
            certificate.display()
        );
        println!(
            "    curl --cacert {} {api}/   (delete {} for a new pair)",
            certificate.display(),
            certificate.parent().unwrap_or(&options.data_dir).display()
        );
    }
    match &dev_certificate {
        None => println!(
            "  native protocol: {}  (shoal table list --endpoint {})",
            layout.native, layout.native
        ),
        Some((certificate, _)) => println!(
            "  native protocol: {} over TLS  (shoal table list --endpoint {} --ca-bundle {})",
            layout.native,
            layout.native,
            certificate.display()
        ),
    }
    for (id, bus, admin, _) in &layout.nodes {
        println!("  node {id}: bus {bus}, metrics http://{admin}/metrics");
    }
    if options.no_restart {
        println!("  a child that exits stays down (--no-restart).");
    } else {
        println!("  a child that exits is started again (--no-restart leaves it down).");
    }
    if options.auth {
        println!(
            "  signatures are verified, and native connections authenticate; an admin key follows once the cluster answers."
        );
        create_admin_key(&executable, &layout, options);
    } else {
        println!(
            "  any credentials are accepted (like DynamoDB Local); `shoal dev --auth` verifies signatures and prints a key."
        );
    }
    println!("  Ctrl-C stops the cluster; run the same command again to restart it on its data.");
    // One thread takes the blocked signals synchronously (sigwait) and reports them.
    let (signal_sender, signal_receiver) = std::sync::mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("shoal-dev-signals".to_string())
        .spawn(move || {
            if let Ok(signal) = signals.wait() {
                let _ = signal_sender.send(signal);
            }
        });
    if let Err(error) = waiter {
        eprintln!("shoal dev: cannot start the signal thread: {error}");
        stop_all(&mut children);
        return ExitCode::FAILURE;
    }
    // Until a signal: report deaths and start children again when their delay is over. The
    // signal is checked on every turn, so a pending restart never delays the stop.
    let outcome = loop {
        if let Ok(signal) = signal_receiver.try_recv() {
            println!("shoal dev: {signal:?}: stopping the cluster");
            break ExitCode::SUCCESS;
        }
        let now = Instant::now();
        for child in &mut children {
            child.poll(now, !options.no_restart);
        }
        if children
            .iter()
            .all(|child| matches!(child.state, ChildState::Down))
        {
            eprintln!("shoal dev: every child has exited; stopping");
            break ExitCode::FAILURE;
        }
        std::thread::sleep(CHILD_POLL_INTERVAL);
    };
    stop_all(&mut children);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_certificate_is_made_once_and_kept_while_usable() {
        let directory = tempfile::tempdir().unwrap();
        let (certificate, key, fresh) = ensure_dev_certificate(directory.path()).unwrap();
        assert!(fresh);
        assert_eq!(certificate, directory.path().join("tls/cert.pem"));
        let mode = std::fs::metadata(&key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let pem = std::fs::read(&certificate).unwrap();
        // The router accepts the pair.
        shoal_http::tls::server_config(&certificate, &key).unwrap();
        let (_, _, fresh) = ensure_dev_certificate(directory.path()).unwrap();
        assert!(!fresh);
        assert_eq!(
            std::fs::read(&certificate).unwrap(),
            pem,
            "kept, not remade"
        );
        // A pair that no longer serves is reported, not silently replaced.
        std::fs::write(&key, "garbage\n").unwrap();
        let error = ensure_dev_certificate(directory.path()).unwrap_err();
        assert!(error.contains("holds no PEM private key"), "{error}");
        assert!(
            error.contains("to have shoal dev --tls make a new pair"),
            "{error}"
        );
    }

    #[test]
    fn restart_delays_double_to_their_cap_and_start_over_after_a_long_uptime() {
        let mut backoff = RestartBackoff::new();
        let short = Duration::from_millis(10);
        let mut delays = Vec::new();
        for _ in 0..8 {
            delays.push(backoff.after_death(short).as_secs());
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(
            backoff.after_death(RESTART_BACKOFF_RESET_UPTIME),
            RESTART_DELAY_FIRST
        );
        assert_eq!(backoff.after_death(short), RESTART_DELAY_FIRST * 2);
    }

    #[test]
    fn exits_are_described_by_status_or_signal() {
        // A raw wait status: the exit code in bits 8-15, or the signal in bits 0-6.
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(9)),
            "was killed by SIGKILL"
        );
    }
}
