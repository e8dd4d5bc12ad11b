//! `shoal admin decommission NODE`: drains a node (router/autoadmin.rs).
//!
//! `shoal admin pause|resume`: stops and restarts the autoadmin (router/autoadmin.rs) of every
//! router, through the metadata item `autoadmin`.
//!
//! `shoal admin status [--json]`: the cluster as it is now (shoal_router::cluster_status):
//! every node with the shards that answered, its replicas, leaders and item bytes; every table
//! with its partitions, the under-replicated ones and the replicas not created yet; then each
//! under-replicated partition with its listed and healthy replicas and its leader, and the
//! replicas of no table. It reads the metadata group and asks every shard over the bus, as a
//! router does, so it runs where the buses can be reached (`shoal auth`'s rule; the same
//! `--config`, `--node` and bus TLS flags).
//!
//! Exit status: 0 when every partition has all its replicas; 3 when some are under-replicated
//! or a node did not answer (the report says which), so scripts and health checks can act on
//! it; 1 when the metadata cannot be read (attempts start until [`COMMAND_DEADLINE`]; the last
//! one may take the metadata read's own deadline, 30 s, more); 2 on bad input. Each shard that
//! does not answer adds the bus call's timeout (a few seconds) once the metadata is read.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use glommio::{LocalExecutorBuilder, Placement};
use shoal_router::{DynamoError, Router, RouterConfig};

use crate::auth::{COMMAND_DEADLINE, ClusterArgs};

const RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// io_uring memory of the command's executor (it holds one bus connection per shard asked).
const IO_MEMORY_BYTES: usize = 1 << 20;
const EXIT_BAD_INPUT: u8 = 2;
/// The cluster answered, and something needs attention.
const EXIT_DEGRADED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Print nodes, tables, under-replicated partitions and replicas of no table.
    Status(StatusOptions),
    /// Stop the autoadmin (re-replication) of every router at its next pass; moves under way
    /// stay recorded and go on after `resume`.
    Pause(SwitchOptions),
    /// Restart the autoadmin after `pause`.
    Resume(SwitchOptions),
    /// Drain a node: the autoadmin moves every replica it holds to the other nodes, places
    /// nothing new on it, and drops it from the node list once no table lists it (watch
    /// `shoal admin status`). Then stop its process.
    Decommission(DecommissionOptions),
}

#[derive(Debug, Args)]
pub struct DecommissionOptions {
    /// The node's id.
    pub node: u64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct SwitchOptions {
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct StatusOptions {
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(command: &AdminCommand) -> ExitCode {
    match command {
        AdminCommand::Status(options) => status(options),
        AdminCommand::Pause(options) => switch(&options.cluster, true),
        AdminCommand::Resume(options) => switch(&options.cluster, false),
        AdminCommand::Decommission(options) => decommission(options),
    }
}

fn decommission(options: &DecommissionOptions) -> ExitCode {
    let node = options.node;
    match with_router(&options.cluster, move |router| async move {
        router.decommission_node(node).await
    }) {
        Ok(()) => {
            println!(
                "node {node} is draining: its replicas move to the other nodes, and it leaves the \
                 node list once none is left (shoal admin status shows it)"
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Runs `call` with a router of the cluster `cluster` names, on an executor of its own,
/// retrying while the metadata group elects its leader, until [`COMMAND_DEADLINE`].
fn with_router<T: 'static, F: std::future::Future<Output = Result<T, DynamoError>>>(
    cluster: &ClusterArgs,
    call: impl Fn(std::rc::Rc<Router>) -> F + 'static,
) -> Result<T, ExitCode> {
    let (nodes, bus_tls) = match (cluster.nodes(), cluster.bus_tls()) {
        (Ok(nodes), Ok(bus_tls)) => (nodes, bus_tls),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("shoal admin: {error}");
            return Err(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let executor = match LocalExecutorBuilder::new(Placement::Unbound)
        .name("shoal-admin")
        .io_memory(IO_MEMORY_BYTES)
        .make()
    {
        Ok(executor) => executor,
        Err(error) => {
            eprintln!("shoal admin: cannot start an executor: {error}");
            return Err(ExitCode::FAILURE);
        }
    };
    let outcome = executor.run(async move {
        let mut config = RouterConfig::new(nodes);
        config.bus_tls = bus_tls;
        let router = std::rc::Rc::new(Router::new(config)?);
        let deadline = Instant::now() + COMMAND_DEADLINE;
        loop {
            match call(router.clone()).await {
                Ok(answer) => return Ok::<T, DynamoError>(answer),
                // The metadata group may be electing its leader; a refusal is final.
                Err(error)
                    if Instant::now() < deadline
                        && !error.type_name.ends_with("ValidationException") =>
                {
                    tracing::debug!(%error.message, "the metadata group did not answer yet");
                    glommio::timer::sleep(RETRY_INTERVAL).await;
                }
                Err(error) => return Err(error),
            }
        }
    });
    outcome.map_err(|error| {
        eprintln!("{}: {}", error.type_name, error.message);
        ExitCode::FAILURE
    })
}

fn switch(cluster: &ClusterArgs, paused: bool) -> ExitCode {
    match with_router(cluster, move |router| async move {
        router.set_autoadmin_paused(paused).await
    }) {
        Ok(()) => {
            println!(
                "autoadmin {}",
                if paused {
                    "paused: no replica moves until `shoal admin resume`"
                } else {
                    "resumed"
                }
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn status(options: &StatusOptions) -> ExitCode {
    let status = match with_router(&options.cluster, |router| async move {
        router.cluster_status().await
    }) {
        Ok(status) => status,
        Err(code) => return code,
    };
    if options.json {
        println!("{}", status.to_json());
    } else {
        print!("{}", status.render());
    }
    let degraded = status.under_replicated().next().is_some()
        || status
            .nodes
            .iter()
            .any(|node| node.shards_answered < node.shards);
    if degraded {
        ExitCode::from(EXIT_DEGRADED)
    } else {
        ExitCode::SUCCESS
    }
}
