//! `shoal`: one binary for every role (see README.md in this folder).

mod admin;
mod auth;
mod bus_tls;
mod cert;
mod cli;
mod cpus;
mod dev;
mod doctor;
mod inspect;
mod native;
mod node;
mod node_list;
mod router;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc: per-thread free lists suit thread-per-core executors that allocate and free on the
// same core; no conflict with glommio (kernel-notes/glommio-runtime.md).
#[global_allocator]
static GLOBAL_ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "shoal",
    version,
    about = "Shoal: a DynamoDB-compatible database cluster"
)]
struct Command {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Check that this machine can run a Shoal storage node: kernel, io_uring, memlock,
    /// direct I/O on the data directory, fdatasync latency, cores, huge pages, clock source.
    Doctor(doctor::DoctorOptions),
    /// Verify a storage file offline (checksums and structure) and summarise it; exit status
    /// 1 on corruption, with its location.
    Inspect(inspect::InspectOptions),
    /// Run a storage node: one shard executor per core serving its partition replicas.
    Node(node::NodeOptions),
    /// Run a router: the DynamoDB JSON/HTTP API, routing to the storage nodes.
    Router(router::RouterOptions),
    /// Run a local replicated cluster (nodes and a router as child processes, each started
    /// again if it dies) until Ctrl-C.
    Dev(dev::DevOptions),
    /// Create, describe, list and delete tables (through a router's native protocol).
    #[command(subcommand)]
    Table(cli::TableCommand),
    /// Put, get, update and delete items, in DynamoDB JSON.
    #[command(subcommand)]
    Item(cli::ItemCommand),
    /// Query a table by partition key; prints the items, one DynamoDB JSON object a line.
    Query(cli::QueryOptions),
    /// Scan a table; prints the items, one DynamoDB JSON object a line.
    Scan(cli::ScanOptions),
    /// Create, list and revoke access keys (SigV4 credentials with a role), in the cluster's
    /// metadata, over the bus.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Make a cluster CA and the certificates it signs for nodes and routers (mutual TLS on
    /// the bus).
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// See the cluster: nodes, tables, under-replicated partitions (over the bus, as `auth`).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

fn main() -> ExitCode {
    // `shoal dev` blocks SIGINT and SIGTERM to take them synchronously, and a blocked mask
    // survives exec: every shoal process starts by unblocking them, so it can be stopped.
    let mut stop_signals = nix::sys::signal::SigSet::empty();
    stop_signals.add(nix::sys::signal::Signal::SIGINT);
    stop_signals.add(nix::sys::signal::Signal::SIGTERM);
    let _ = stop_signals.thread_unblock();
    install_logging();
    let command = Command::parse();
    match command.action {
        Action::Doctor(options) => doctor::run(&options),
        Action::Inspect(options) => inspect::run(&options),
        Action::Node(options) => node::run(&options),
        Action::Dev(options) => dev::run(&options),
        Action::Router(options) => router::run(&options),
        Action::Table(command) => cli::run_table(&command),
        Action::Item(command) => cli::run_item(&command),
        Action::Query(options) => cli::run_query(&options),
        Action::Scan(options) => cli::run_scan(&options),
        Action::Auth(command) => auth::run(&command),
        Action::Cert(command) => cert::run(&command),
        Action::Admin(command) => admin::run(&command),
    }
}

/// Structured logs to stderr; the level comes from SHOAL_LOG (default "info"), e.g.
/// `SHOAL_LOG=shoal_store=debug`. Coloured only when stderr is a terminal: a log written to a
/// file or a pipe carries no ANSI escape codes.
fn install_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
