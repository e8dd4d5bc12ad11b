//! `shoal auth create-key | list-keys | revoke-key`: the cluster's access keys
//! (shoal_router::access), changed in the metadata group directly over the bus, as a router
//! does. Whoever can reach the nodes' bus ports can run these (the bus is the cluster's
//! trusted network: kernel-notes/deployment.md says to firewall it); there is no key to present
//! first, so the first key of a cluster can be made.
//!
//! `create-key` prints the key as two `export` lines on stdout (so
//! `eval "$(shoal auth create-key)"` sets the AWS SDKs' variables) and the rest on stderr. The
//! secret is printed this once; the cluster keeps it (SigV4 verification needs it) but
//! `list-keys` never shows it.
//!
//! Exit status: 0 on success; 1 when the cluster refuses or cannot be reached within
//! [`COMMAND_DEADLINE`]; 2 on bad input.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use glommio::{LocalExecutorBuilder, Placement};
use shoal_router::access::{AccessKey, KeyStore, Role, check_tables};
use shoal_router::{DynamoError, NodeAddress};

/// One command may take this long, retries included: `shoal dev --auth` runs `create-key`
/// while the cluster is still electing its metadata leader.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(60);
const RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// io_uring memory of the command's executor (it holds a few bus connections).
const IO_MEMORY_BYTES: usize = 1 << 20;
const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Create an access key and print it (the secret only this once).
    CreateKey(CreateKey),
    /// Print every key: id, role, tables, creation time (never the secret).
    ListKeys(ClusterArgs),
    /// Delete a key; routers refuse it within a few seconds.
    RevokeKey(RevokeKey),
}

/// Where the cluster's metadata group is.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// A router's TOML config (`shoal router --config`): its node list is used.
    #[arg(long, conflicts_with = "nodes")]
    pub config: Option<PathBuf>,
    /// A storage node: ID=HOST:PORT (its shard 0 bus port), as `shoal router --node` takes it;
    /// repeat for each. Default: the nodes of `shoal dev` with its default --port.
    #[arg(long = "node", value_parser = crate::node::parse_peer)]
    pub nodes: Vec<(u64, SocketAddr)>,
    /// When the cluster's buses require mutual TLS: a certificate of the cluster CA (a
    /// router's will do), its key and the CA; with --config, its bus_tls_* keys are used.
    #[command(flatten)]
    pub bus_tls: crate::bus_tls::BusTlsArgs,
}

#[derive(Debug, Args)]
pub struct CreateKey {
    /// admin (tables and items), read-write (items), or read-only.
    #[arg(long, default_value = "read-write", value_parser = parse_role)]
    pub role: Role,
    /// Limit the key to these tables (comma-separated); default: every table.
    #[arg(long, value_delimiter = ',')]
    pub tables: Option<Vec<String>>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct RevokeKey {
    /// The access key id.
    pub id: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|role| role.name()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

impl ClusterArgs {
    /// The bus's mutual TLS: `--config`'s keys, or the flags.
    pub(crate) fn bus_tls(&self) -> Result<Option<shoal_bus::BusTls>, String> {
        if let Some(path) = &self.config {
            let settings: crate::router::RouterSettings = crate::node::read_config(path)?;
            if self.bus_tls.bus_tls_cert.is_some() {
                return Err("give the bus TLS files in --config or as flags, not both".to_string());
            }
            return settings.bus_tls();
        }
        self.bus_tls.load()
    }

    pub(crate) fn nodes(&self) -> Result<Vec<NodeAddress>, String> {
        let pairs: Vec<(u64, SocketAddr)> = if let Some(path) = &self.config {
            let settings: crate::router::RouterSettings = crate::node::read_config(path)?;
            settings
                .nodes
                .iter()
                .map(|node| (node.id, node.address))
                .collect()
        } else if self.nodes.is_empty() {
            crate::dev::default_node_buses()?
        } else {
            self.nodes.clone()
        };
        Ok(pairs
            .into_iter()
            .map(|(id, address)| NodeAddress { id, address })
            .collect())
    }
}

/// Whether an error may pass by itself (the metadata group starting, a leader change) or is the
/// answer (a bad request, a limit).
fn worth_retrying(error: &DynamoError) -> bool {
    !matches!(
        error.type_name.as_str(),
        "ValidationException" | "LimitExceededException"
    )
}

/// Runs `action` against the key store on a glommio executor, retrying until
/// [`COMMAND_DEADLINE`].
fn with_store<Outcome: 'static>(
    cluster: &ClusterArgs,
    action: impl AsyncFn(&KeyStore) -> Result<Outcome, DynamoError> + 'static,
) -> Result<Outcome, ExitCode> {
    let nodes = cluster.nodes().map_err(|error| {
        eprintln!("shoal auth: {error}");
        ExitCode::from(EXIT_BAD_INPUT)
    })?;
    let bus_tls = cluster.bus_tls().map_err(|error| {
        eprintln!("shoal auth: {error}");
        ExitCode::from(EXIT_BAD_INPUT)
    })?;
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("shoal-auth")
        .io_memory(IO_MEMORY_BYTES)
        .make()
        .map_err(|error| {
            eprintln!("shoal auth: cannot start an executor: {error}");
            ExitCode::FAILURE
        })?;
    let outcome = executor.run(async move {
        let store = KeyStore::new(&nodes, u64::from(std::process::id()), bus_tls)?;
        let deadline = Instant::now() + COMMAND_DEADLINE;
        loop {
            match action(&store).await {
                Ok(outcome) => return Ok(outcome),
                Err(error) if worth_retrying(&error) && Instant::now() < deadline => {
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

fn tables_text(key: &AccessKey) -> String {
    match &key.tables {
        None => "*".to_string(),
        Some(tables) => tables.iter().cloned().collect::<Vec<_>>().join(","),
    }
}

pub fn run(command: &AuthCommand) -> ExitCode {
    match command {
        AuthCommand::CreateKey(options) => create_key(options),
        AuthCommand::ListKeys(cluster) => list_keys(cluster),
        AuthCommand::RevokeKey(options) => revoke_key(options),
    }
}

fn create_key(options: &CreateKey) -> ExitCode {
    let tables: Option<BTreeSet<String>> = options
        .tables
        .as_ref()
        .map(|names| names.iter().map(|name| name.trim().to_string()).collect());
    if let Some(tables) = &tables
        && let Err(error) = check_tables(tables)
    {
        eprintln!("shoal auth: --tables: {}", error.message);
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let role = options.role;
    let key = match with_store(&options.cluster, async move |store: &KeyStore| {
        store.create(role, tables.clone()).await
    }) {
        Ok(key) => key,
        Err(code) => return code,
    };
    println!("export AWS_ACCESS_KEY_ID={}", key.id);
    println!("export AWS_SECRET_ACCESS_KEY={}", key.secret);
    eprintln!(
        "shoal auth: created {} (role {}, tables {}). The secret is shown only now: the cluster keeps it to verify signatures but never prints it again.",
        key.id,
        key.role.name(),
        tables_text(&key)
    );
    ExitCode::SUCCESS
}

fn list_keys(cluster: &ClusterArgs) -> ExitCode {
    let keys = match with_store(cluster, async |store: &KeyStore| store.load().await) {
        Ok(keys) => keys,
        Err(code) => return code,
    };
    println!(
        "{:<22} {:<11} {:<12} TABLES",
        "ACCESS KEY ID", "ROLE", "CREATED"
    );
    for key in keys.keys.values() {
        println!(
            "{:<22} {:<11} {:<12} {}",
            key.id,
            key.role.name(),
            key.created_at_seconds,
            tables_text(key)
        );
    }
    ExitCode::SUCCESS
}

fn revoke_key(options: &RevokeKey) -> ExitCode {
    let id = options.id.clone();
    match with_store(&options.cluster, async move |store: &KeyStore| {
        store.revoke(&id).await
    }) {
        Ok(true) => {
            println!("revoked {}", options.id);
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("shoal auth: no access key {}", options.id);
            ExitCode::FAILURE
        }
        Err(code) => code,
    }
}
