//! `shoal dev`: a replicated cluster on this machine, for development. Starts N node processes
//! and a router as children on loopback, prints the endpoints, and stops them all on Ctrl-C or
//! SIGTERM. Started again with the same arguments, it finds its data and serves it again.
//!
//! Ports, from `--port P` (the DynamoDB HTTP endpoint):
//! - P: the router's DynamoDB JSON/HTTP API;
//! - P + 1: the router's native client protocol (`shoal table|item|query|scan --endpoint`);
//! - P + 100 × i (i = 1..N): node i's bus, shard s on that + s;
//! - P + 100 × i + 99: node i's admin endpoint (/metrics, /health).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
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
    /// The DynamoDB HTTP port; the other ports follow from it (see `shoal dev --help`).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Passed to every node: read durable writes back before they count (`shoal node
    /// --verify-writes`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub verify_writes: bool,
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

fn stop_all(children: &mut [(String, Child)]) {
    for (_, child) in children.iter() {
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    for (name, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    eprintln!("shoal dev: {name} did not stop in {STOP_GRACE:?}; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
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
    let mut children: Vec<(String, Child)> = Vec::new();
    for (id, bus, admin, directory) in &layout.nodes {
        let mut command = Command::new(&executable);
        command
            .process_group(0)
            .arg("node")
            .arg(format!("--node-id={id}"))
            .arg(format!("--data-dir={}", directory.display()))
            .arg(format!("--listen={bus}"))
            .arg(format!("--admin={admin}"))
            .arg(format!("--shards={}", options.shards_per_node))
            .arg(format!("--verify-writes={}", options.verify_writes))
            // A development machine's disk: small WAL rings.
            .arg("--wal-segment-mib=16")
            .arg("--wal-segments=4");
        for (peer, peer_bus, _, _) in &layout.nodes {
            if peer != id {
                command.arg(format!("--peer={peer}={peer_bus}"));
            }
        }
        match command.spawn() {
            Ok(child) => children.push((format!("node {id}"), child)),
            Err(error) => {
                eprintln!("shoal dev: cannot start node {id}: {error}");
                stop_all(&mut children);
                return ExitCode::FAILURE;
            }
        }
    }
    let mut router = Command::new(&executable);
    router
        .process_group(0)
        .arg("router")
        .arg(format!("--http={}", layout.http))
        .arg(format!("--native={}", layout.native))
        .arg(format!("--shards-per-node={}", options.shards_per_node));
    for (id, bus, _, _) in &layout.nodes {
        router.arg(format!("--node={id}={bus}"));
    }
    match router.spawn() {
        Ok(child) => children.push(("router".to_string(), child)),
        Err(error) => {
            eprintln!("shoal dev: cannot start the router: {error}");
            stop_all(&mut children);
            return ExitCode::FAILURE;
        }
    }
    println!(
        "shoal dev: {} nodes, {} shard(s) each, data in {}",
        options.nodes,
        options.shards_per_node,
        options.data_dir.display()
    );
    println!(
        "  DynamoDB API: http://{}  (aws dynamodb --endpoint-url http://{} ...)",
        layout.http, layout.http
    );
    println!(
        "  native protocol: {}  (shoal table list --endpoint {})",
        layout.native, layout.native
    );
    for (id, bus, admin, _) in &layout.nodes {
        println!("  node {id}: bus {bus}, metrics http://{admin}/metrics");
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
    // Wait for a signal, or for a child to die (then the cluster is not what was promised).
    let outcome = loop {
        if let Some((name, status)) = children.iter_mut().find_map(|(name, child)| {
            child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| (name.clone(), status))
        }) {
            eprintln!("shoal dev: {name} exited ({status}); stopping the cluster");
            break ExitCode::FAILURE;
        }
        if let Ok(signal) = signal_receiver.try_recv() {
            println!("shoal dev: {signal:?}: stopping the cluster");
            break ExitCode::SUCCESS;
        }
        std::thread::sleep(CHILD_POLL_INTERVAL);
    };
    stop_all(&mut children);
    outcome
}
