//! `shoal router`: the stateless router tier. One executor serves the DynamoDB JSON/HTTP API
//! (router/http) and routes every operation through `shoal_router::Router` (metadata, partition
//! map, admission, forwarding to the owning shard's leader). The same executor and `Router`
//! serve the native client protocol on `--native` (native.rs). A task on it runs the repair
//! pass every `REPAIR_INTERVAL`: it creates the replicas that CreateTable left pending on nodes
//! that were down, finishes the CreateTable and DeleteTable that a router which died left
//! unfinished, and deletes replicas of no table (router/server README.md).
//!
//! Authentication is on unless `--auth none`: every HTTP request must be signed (SigV4) with
//! a key of the cluster (`shoal auth create-key`), and the key's role and tables are checked
//! before the operation runs, so a refused request costs no capacity. The keys are read from
//! the metadata every few seconds (`shoal_router::access::KeyCache`). Native connections
//! authenticate with the same keys (native.rs), and both front ends authorise through one
//! `AccessControl`.
//!
//! Bus TLS: with `--bus-tls-cert/--bus-tls-key/--bus-tls-ca` (or the `bus_tls_*` keys) every
//! connection to the nodes' buses, the key store's included, is mutual TLS with the cluster
//! CA (net/bus/src/tls.rs).
//!
//! TLS: with `--tls-cert` and `--tls-key` (or `tls_cert`/`tls_key` in the file), read and
//! checked before anything else starts, the HTTP API and the native port speak TLS only, with
//! that certificate (router/http/src/tls.rs); without them, plaintext only.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use glommio::{LocalExecutorBuilder, Placement};
use serde_json::{Value as Json, json};
use shoal_http::{Api, ApiError, Authentication, Caller, HttpConfig, HttpServer, Operation};
use shoal_router::access::{AccessControl, KeyCache, KeyStore};
use shoal_router::router::{
    AUTOADMIN_INTERVAL, AutoadminReport, NODE_DOWN_AFTER, REPAIR_INTERVAL, RepairReport,
};
use shoal_router::{DynamoError, NodeAddress, Router, RouterConfig, RouterOperation};

/// How long the router keeps trying to reach the metadata nodes at start (they may be starting
/// too, as under `shoal dev`).
pub const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(60);
const BOOTSTRAP_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// io_uring memory of the router's executor (see `shoal node`).
const ROUTER_IO_MEMORY_BYTES: usize = 2 << 20;
/// How long DescribeEndpoints tells clients to cache the endpoint (DynamoDB's value).
const ENDPOINT_CACHE_MINUTES: u64 = 1440;

/// `shoal router`'s flags: `--config FILE` alone, or the flags (`--node` at least once).
#[derive(Debug, Args, Clone)]
pub struct RouterOptions {
    /// A TOML file with every setting (kernel-notes/deployment.md documents each key); no
    /// other flag may be given with it.
    #[arg(long, conflicts_with_all = ["http", "native", "nodes", "shards_per_node", "region", "account", "auth", "tls_cert", "tls_key", "bus_tls_cert", "bus_tls_key", "bus_tls_ca", "node_down_after", "balance", "split_bytes", "split_read_units", "split_write_units"])]
    pub config: Option<std::path::PathBuf>,
    /// Address of the DynamoDB JSON/HTTP API.
    #[arg(long, default_value = DEFAULT_HTTP)]
    pub http: SocketAddr,
    /// Address of the native client protocol (net/protocol/FORMAT.md); default: the HTTP
    /// address with port + 1.
    #[arg(long)]
    pub native: Option<SocketAddr>,
    /// A storage node: ID=HOST:PORT (its shard 0 bus port). Repeat for each node; the metadata
    /// group is created on the three lowest ids, and found wherever it moved through any
    /// live node listed.
    #[arg(long = "node", value_parser = crate::node::parse_peer, required_unless_present = "config")]
    pub nodes: Vec<(u64, SocketAddr)>,
    /// Shards per node (every node runs the same number).
    #[arg(long, default_value_t = 1)]
    pub shards_per_node: u16,
    /// The region in table ARNs.
    #[arg(long, default_value = DEFAULT_REGION)]
    pub region: String,
    /// The account in table ARNs.
    #[arg(long, default_value = DEFAULT_ACCOUNT)]
    pub account: String,
    /// `sigv4`: every request must be signed with a key of the cluster (`shoal auth
    /// create-key`). `none`: any credentials are accepted, as DynamoDB Local does; only for a
    /// machine nobody else can reach (logged as a warning, and on /metrics).
    #[arg(long, value_enum, default_value_t = AuthMode::Sigv4)]
    pub auth: AuthMode,
    /// A PEM certificate chain (the server's certificate first): the DynamoDB API then speaks
    /// HTTPS only. Needs --tls-key. Without both, the API speaks plain HTTP.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert's first certificate.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub bus_tls: crate::bus_tls::BusTlsArgs,
    /// Seconds a node may answer nothing before the autoadmin moves its replicas to other
    /// nodes (re-replication). At least two autoadmin probe periods (4 s), so that one lost
    /// probe never counts as a dead node.
    #[arg(long, default_value_t = NODE_DOWN_AFTER.as_secs(), value_parser = clap::value_parser!(u64).range(NODE_DOWN_AFTER_MIN_SECONDS..))]
    pub node_down_after: u64,
    /// Whether the autoadmin moves replicas so that every node hosts about as many (a node
    /// that joined receives its share). `false` leaves placement to CreateTable,
    /// re-replication and decommissions.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub balance: bool,
    /// Bytes of items at which the autoadmin splits a table partition in two (at the middle
    /// of its hash range). 0 never splits for size. DynamoDB's partitions hold 10 GB.
    #[arg(long, default_value_t = shoal_router::router::SPLIT_BYTES_DEFAULT)]
    pub split_bytes: u64,
    /// Read units per second at which the autoadmin splits a table partition in two, where
    /// its requests balance, once sustained for about half a minute (80% of DynamoDB's
    /// per-partition ceiling of 3,000 by default). 0 never splits for reads.
    #[arg(long, default_value_t = shoal_router::router::SPLIT_READ_UNITS_DEFAULT)]
    pub split_read_units: u64,
    /// The same for write units (80% of the ceiling of 1,000 by default). 0 never splits for
    /// writes.
    #[arg(long, default_value_t = shoal_router::router::SPLIT_WRITE_UNITS_DEFAULT)]
    pub split_write_units: u64,
}

/// The least `--node-down-after`: two autoadmin probe periods.
pub const NODE_DOWN_AFTER_MIN_SECONDS: u64 = 2 * AUTOADMIN_INTERVAL.as_secs();
const _: () = assert!(NODE_DOWN_AFTER_MIN_SECONDS >= 1);

/// How the router authenticates requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Sigv4,
    None,
}

const DEFAULT_HTTP: &str = "127.0.0.1:8000";
const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_ACCOUNT: &str = "000000000000";

/// Every setting of a router, as flags or a TOML file give them.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSettings {
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    /// The native protocol's address; default: the HTTP port + 1.
    #[serde(default)]
    pub native: Option<SocketAddr>,
    #[serde(rename = "node")]
    pub nodes: Vec<crate::node::PeerSetting>,
    #[serde(default = "default_shards_per_node")]
    pub shards_per_node: u16,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_account")]
    pub account: String,
    /// `"sigv4"` (the default) or `"none"`, as `--auth`.
    #[serde(default = "default_auth")]
    pub auth: AuthMode,
    /// As `--tls-cert`: a PEM certificate chain; with `tls_key`, the API speaks HTTPS only.
    #[serde(default)]
    pub tls_cert: Option<std::path::PathBuf>,
    /// As `--tls-key`.
    #[serde(default)]
    pub tls_key: Option<std::path::PathBuf>,
    /// Mutual TLS on the bus (bus_tls.rs): the router's certificate chain, its key, the
    /// cluster CA bundle; all three when the nodes' buses require it.
    #[serde(default)]
    pub bus_tls_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub bus_tls_key: Option<std::path::PathBuf>,
    #[serde(default)]
    pub bus_tls_ca: Option<std::path::PathBuf>,
    /// As `--node-down-after`, in seconds.
    #[serde(default = "default_node_down_after")]
    pub node_down_after_seconds: u64,
    /// As `--balance`.
    #[serde(default = "default_balance")]
    pub balance: bool,
    /// As `--split-bytes`.
    #[serde(default = "default_split_bytes")]
    pub split_bytes: u64,
    /// As `--split-read-units`.
    #[serde(default = "default_split_read_units")]
    pub split_read_units: u64,
    /// As `--split-write-units`.
    #[serde(default = "default_split_write_units")]
    pub split_write_units: u64,
}

fn default_split_read_units() -> u64 {
    shoal_router::router::SPLIT_READ_UNITS_DEFAULT
}

fn default_split_write_units() -> u64 {
    shoal_router::router::SPLIT_WRITE_UNITS_DEFAULT
}

fn default_split_bytes() -> u64 {
    shoal_router::router::SPLIT_BYTES_DEFAULT
}

fn default_balance() -> bool {
    true
}

fn default_node_down_after() -> u64 {
    NODE_DOWN_AFTER.as_secs()
}

fn default_auth() -> AuthMode {
    AuthMode::Sigv4
}

fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}
fn default_shards_per_node() -> u16 {
    1
}
fn default_region() -> String {
    DEFAULT_REGION.to_string()
}
fn default_account() -> String {
    DEFAULT_ACCOUNT.to_string()
}

impl RouterOptions {
    pub fn settings(&self) -> Result<RouterSettings, String> {
        if let Some(path) = &self.config {
            return crate::node::read_config(path);
        }
        Ok(RouterSettings {
            http: self.http,
            native: self.native,
            nodes: self
                .nodes
                .iter()
                .map(|(id, address)| crate::node::PeerSetting {
                    id: *id,
                    address: *address,
                })
                .collect(),
            shards_per_node: self.shards_per_node,
            region: self.region.clone(),
            account: self.account.clone(),
            auth: self.auth,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            bus_tls_cert: self.bus_tls.bus_tls_cert.clone(),
            bus_tls_key: self.bus_tls.bus_tls_key.clone(),
            bus_tls_ca: self.bus_tls.bus_tls_ca.clone(),
            node_down_after_seconds: self.node_down_after,
            balance: self.balance,
            split_bytes: self.split_bytes,
            split_read_units: self.split_read_units,
            split_write_units: self.split_write_units,
        })
    }
}

impl RouterSettings {
    /// The bus's mutual TLS, read and checked now, when the three files are given.
    pub fn bus_tls(&self) -> Result<Option<shoal_bus::BusTls>, String> {
        crate::bus_tls::load(
            self.bus_tls_cert.as_deref(),
            self.bus_tls_key.as_deref(),
            self.bus_tls_ca.as_deref(),
        )
    }

    /// The TLS configuration of the API port, when a certificate and key are given: read and
    /// checked here, so a missing file or a mismatched pair stops the router at start, with
    /// the file named.
    pub fn tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(certificate), Some(key)) => shoal_http::tls::server_config(certificate, key)
                .map(Some)
                .map_err(|error| error.to_string()),
            (Some(_), None) => Err("tls_cert is set but tls_key is not: give both".to_string()),
            (None, Some(_)) => Err("tls_key is set but tls_cert is not: give both".to_string()),
        }
    }
}

/// The router behind the HTTP API.
struct RoutedApi {
    router: Rc<Router>,
    endpoint: String,
    /// The access checks, when signatures are verified (shared with the native listener).
    access: Option<Rc<AccessControl>>,
    /// The native listener's counters, served on the same /metrics.
    native_metrics: Rc<crate::native::NativeMetrics>,
}

impl RoutedApi {
    /// The caller's key may run this operation on the tables it names (checked before the
    /// router sees the request: a refused request costs no capacity).
    async fn authorize(
        &self,
        caller: &Caller,
        operation: Operation,
        body: &Json,
    ) -> Result<(), ApiError> {
        let (Caller::Key { access_key_id }, Some(access)) = (caller, &self.access) else {
            return Ok(());
        };
        access
            .authorize(access_key_id, operation.name(), body)
            .await
            .map_err(api_error)
    }
}

fn api_error(error: DynamoError) -> ApiError {
    let mut api = ApiError::new(&error.type_name, error.message);
    if let Some(item) = error.item {
        api.fields.push(("Item".to_string(), item));
    }
    if let Some(reasons) = error.cancellation_reasons {
        api.fields
            .push(("CancellationReasons".to_string(), reasons));
    }
    api
}

impl Api for RoutedApi {
    fn metrics(&self) -> String {
        let mut text = self.router.render_metrics();
        text.push_str(&self.native_metrics.render());
        text
    }

    async fn secret_key(&self, access_key_id: &str) -> Option<String> {
        self.access.as_ref()?.secret(access_key_id).await
    }

    async fn call(
        &self,
        caller: &Caller,
        operation: Operation,
        body: Json,
    ) -> Result<Json, ApiError> {
        self.authorize(caller, operation, &body).await?;
        let router = &self.router;
        let outcome = match RouterOperation::from_name(operation.name()) {
            Some(operation) => router.dispatch(operation, body).await,
            // The one endpoint is this router; clients that discover endpoints use it.
            None if operation == Operation::DescribeEndpoints => Ok(json!({
                "Endpoints": [{"Address": self.endpoint, "CachePeriodInMinutes": ENDPOINT_CACHE_MINUTES}]
            })),
            None => Err(DynamoError::internal(format!(
                "Internal server error (operation {} has no handler)",
                operation.name()
            ))),
        };
        outcome.map_err(api_error)
    }
}

pub fn run(flags: &RouterOptions) -> ExitCode {
    let options = match flags.settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("shoal router: {error}");
            return ExitCode::from(2);
        }
    };
    if options.nodes.is_empty() {
        eprintln!("shoal router: at least one node is needed");
        return ExitCode::from(2);
    }
    if options.shards_per_node == 0 || options.shards_per_node > crate::node::SHARDS_MAX {
        eprintln!(
            "shoal router: --shards-per-node must be 1 to {}",
            crate::node::SHARDS_MAX
        );
        return ExitCode::from(2);
    }
    let tls = match options.tls() {
        Ok(tls) => tls,
        Err(error) => {
            eprintln!("shoal router: {error}");
            return ExitCode::from(2);
        }
    };
    let bus_tls = match options.bus_tls() {
        Ok(bus_tls) => bus_tls,
        Err(error) => {
            eprintln!("shoal router: {error}");
            return ExitCode::from(2);
        }
    };
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("router-0")
        .io_memory(ROUTER_IO_MEMORY_BYTES)
        .make();
    let executor = match executor {
        Ok(executor) => executor,
        Err(error) => {
            eprintln!("shoal router: cannot start its executor: {error}");
            return ExitCode::FAILURE;
        }
    };
    match executor.run(serve(options, tls, bus_tls)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shoal router: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs [`Router::repair_pass`] every `REPAIR_INTERVAL` for the life of the executor: pending
/// replicas, CreateTable and DeleteTable left unfinished by a router that died, replicas of no
/// table. A failed pass (metadata unreachable) is logged and tried again at the next.
fn spawn_repair_pass(router: Rc<Router>) {
    glommio::spawn_local(async move {
        // Logged when it changes, not at every pass while a node stays down.
        let mut before = RepairReport::default();
        loop {
            glommio::timer::sleep(REPAIR_INTERVAL).await;
            match router.repair_pass().await {
                Ok(report) => {
                    if report.pending_replicas != before.pending_replicas {
                        tracing::info!(
                            pending = report.pending_replicas,
                            "replicas pending creation on nodes that were down"
                        );
                    }
                    if report.unfinished_tables != before.unfinished_tables
                        || report.tables_finished > 0
                        || report.orphan_replicas_deleted > 0
                    {
                        tracing::info!(
                            unfinished = report.unfinished_tables,
                            finished = report.tables_finished,
                            orphans_deleted = report.orphan_replicas_deleted,
                            "control-plane repair"
                        );
                    }
                    before = report;
                }
                Err(error) => {
                    tracing::warn!(%error.message, "the repair pass failed");
                }
            }
        }
    })
    .detach();
}

/// Runs [`Router::autoadmin_pass`] every `AUTOADMIN_INTERVAL` for the life of the executor
/// (shoal_router's router/autoadmin.rs): nodes probed, replicas of a node down for
/// `--node-down-after` moved to the others. Its own task, so a pass driving moves never holds
/// up the repair pass. A failed pass is logged and tried again at the next.
fn spawn_autoadmin(router: Rc<Router>) {
    glommio::spawn_local(async move {
        // Logged when it changes, not at every pass while a node stays down.
        let mut before = AutoadminReport::default();
        loop {
            glommio::timer::sleep(AUTOADMIN_INTERVAL).await;
            match router.autoadmin_pass().await {
                Ok(report) => {
                    if report.paused != before.paused {
                        tracing::warn!(
                            paused = report.paused,
                            "autoadmin: paused by an operator (shoal admin pause|resume)"
                        );
                    }
                    if report.standby != before.standby {
                        tracing::info!(
                            standby = report.standby,
                            "autoadmin: another router's autoadmin is the active one"
                        );
                    }
                    if report.nodes_down != before.nodes_down {
                        tracing::warn!(nodes = ?report.nodes_down, "autoadmin: nodes down");
                    }
                    if report.moves_started > 0
                        || report.moves_finished > 0
                        || report.moves_unfinished != before.moves_unfinished
                    {
                        tracing::info!(
                            started = report.moves_started,
                            finished = report.moves_finished,
                            under_way = report.moves_unfinished,
                            "autoadmin: replica moves"
                        );
                    }
                    before = report;
                }
                Err(error) => tracing::warn!(%error.message, "the autoadmin pass failed"),
            }
        }
    })
    .detach();
}

/// `--native`, or the HTTP port + 1 on the HTTP address: the native protocol authenticates
/// its connections with the same keys as the HTTP API (net/protocol/FORMAT.md,
/// "Authentication"), so it may listen where the API does.
fn native_address(options: &RouterSettings) -> Result<SocketAddr, String> {
    if let Some(native) = options.native {
        return Ok(native);
    }
    let port = options.http.port().checked_add(1).ok_or_else(|| {
        format!(
            "--http port {} leaves no port for the native protocol; pass --native",
            options.http.port()
        )
    })?;
    Ok(SocketAddr::new(options.http.ip(), port))
}

async fn serve(
    options: RouterSettings,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    bus_tls: Option<shoal_bus::BusTls>,
) -> Result<(), String> {
    let nodes = options
        .nodes
        .iter()
        .map(|node| NodeAddress {
            id: node.id,
            address: node.address,
        })
        .collect();
    let mut config = RouterConfig::new(nodes);
    config.region = options.region.clone();
    config.account = options.account.clone();
    config.bus_tls = bus_tls.clone();
    if options.node_down_after_seconds < NODE_DOWN_AFTER_MIN_SECONDS {
        return Err(format!(
            "node_down_after_seconds must be at least {NODE_DOWN_AFTER_MIN_SECONDS}"
        ));
    }
    config.node_down_after = Duration::from_secs(options.node_down_after_seconds);
    config.balance = options.balance;
    config.split_bytes = options.split_bytes;
    config.split_read_units_per_second = options.split_read_units;
    config.split_write_units_per_second = options.split_write_units;
    let native = native_address(&options)?;
    let router = Rc::new(Router::new(config).map_err(|error| error.message)?);
    // kernel-notes/glommio-runtime.md: take the first-timer delay before anything times out.
    glommio::timer::sleep(Duration::from_millis(1)).await;
    let started = Instant::now();
    loop {
        match router.bootstrap(options.shards_per_node).await {
            Ok(_) => break,
            Err(error) if started.elapsed() < BOOTSTRAP_TIMEOUT => {
                tracing::debug!(%error.message, "metadata not reachable yet");
                glommio::timer::sleep(BOOTSTRAP_RETRY_INTERVAL).await;
            }
            Err(error) => {
                return Err(format!(
                    "cannot bootstrap or load the cluster metadata within {BOOTSTRAP_TIMEOUT:?}: {}",
                    error.message
                ));
            }
        }
    }
    spawn_repair_pass(router.clone());
    spawn_autoadmin(router.clone());
    let propagating = router.clone();
    glommio::spawn_local(async move { propagating.run_index_propagation().await }).detach();
    let endpoint = options.http.to_string();
    let mut http_config =
        HttpConfig::new(options.http, endpoint.clone(), options.http.port().into());
    http_config.region = options.region.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    http_config.tls = tls.clone();
    let access = match options.auth {
        AuthMode::Sigv4 => {
            let nodes: Vec<NodeAddress> = options
                .nodes
                .iter()
                .map(|node| NodeAddress {
                    id: node.id,
                    address: node.address,
                })
                .collect();
            let store = KeyStore::new(&nodes, options.http.port().into(), bus_tls.clone())
                .map_err(|error| error.message)?;
            let cache = Rc::new(KeyCache::new(store));
            match cache.refresh().await {
                Ok(0) => tracing::warn!(
                    "no access keys exist yet: every request is refused until `shoal auth create-key` makes one"
                ),
                Ok(count) => tracing::info!(count, "access keys loaded"),
                Err(error) => tracing::warn!(%error.message, "cannot read the access keys yet"),
            }
            cache.start_refreshing();
            Some(Rc::new(AccessControl::new(
                cache,
                options.region.clone(),
                options.account.clone(),
            )))
        }
        AuthMode::None => {
            tracing::warn!(
                "--auth none: signatures are NOT verified, and native connections need no key; anyone who can reach {} or {native} can read, change and delete every table",
                options.http
            );
            http_config.authentication = Authentication::Off;
            None
        }
    };
    let native_metrics = Rc::new(crate::native::NativeMetrics::new(access.is_some()));
    let server = HttpServer::new(
        http_config,
        Rc::new(RoutedApi {
            router: router.clone(),
            endpoint,
            access: access.clone(),
            native_metrics: native_metrics.clone(),
        }),
    );
    let address = server
        .start()
        .map_err(|error| format!("cannot listen on --http {}: {error}", options.http))?;
    tracing::info!(%address, scheme, "router serving the DynamoDB API");
    println!("shoal router: DynamoDB API on {scheme}://{address}");
    let native_tls = tls.is_some();
    let listener = crate::native::NativeListener {
        router,
        tls,
        access,
        metrics: native_metrics,
    };
    let native = crate::native::start(native, listener)
        .map_err(|error| format!("cannot listen on --native {native}: {error}"))?;
    tracing::info!(address = %native, "router serving the native protocol");
    if native_tls {
        println!("shoal router: native protocol on {native} (TLS)");
    } else {
        println!("shoal router: native protocol on {native}");
    }
    // Serve until the process is stopped.
    loop {
        glommio::timer::sleep(Duration::from_secs(3600)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> RouterSettings {
        toml::from_str(toml_text).unwrap()
    }

    const NODES: &str = "[[node]]\nid = 1\naddress = \"10.0.0.1:7100\"\n";

    /// Every operation either front end accepts reaches the router's one dispatch table, but
    /// DescribeEndpoints, which the HTTP front end answers itself.
    #[test]
    fn every_front_end_operation_has_a_handler() {
        let http = shoal_router::RouterOperation::ALL
            .into_iter()
            .map(|operation| operation.name())
            .chain(["DescribeEndpoints"]);
        for name in http {
            let streams = [
                "ListStreams",
                "DescribeStream",
                "GetShardIterator",
                "GetRecords",
            ];
            let prefix = if streams.contains(&name) {
                "DynamoDBStreams_20120810"
            } else {
                "DynamoDB_20120810"
            };
            let target = format!("{prefix}.{name}");
            let operation = Operation::from_target(&target).expect("the HTTP API knows it");
            assert!(
                RouterOperation::from_name(operation.name()).is_some()
                    || operation == Operation::DescribeEndpoints,
                "{name}"
            );
        }
        for operation in shoal_protocol::Operation::ALL {
            assert!(
                RouterOperation::from_name(operation.name()).is_some(),
                "{operation}"
            );
        }
    }

    #[test]
    fn signatures_are_verified_unless_the_config_says_none() {
        let default = settings(&format!("http = \"10.0.1.5:8000\"\n{NODES}"));
        assert_eq!(default.auth, AuthMode::Sigv4);
        let none = settings(&format!("auth = \"none\"\n{NODES}"));
        assert_eq!(none.auth, AuthMode::None);
        assert!(toml::from_str::<RouterSettings>(&format!("auth = \"maybe\"\n{NODES}")).is_err());
    }

    #[test]
    fn tls_needs_both_the_certificate_and_the_key() {
        let plain = settings(NODES);
        assert!(plain.tls().unwrap().is_none());
        let only_certificate = settings(&format!("tls_cert = \"/x.crt\"\n{NODES}"));
        let error = only_certificate.tls().unwrap_err();
        assert!(error.contains("tls_key is not"), "{error}");
        let missing = settings(&format!(
            "tls_cert = \"/nonexistent/x.crt\"\ntls_key = \"/nonexistent/x.key\"\n{NODES}"
        ));
        let error = missing.tls().unwrap_err();
        assert!(
            error.contains("cannot read the TLS certificate /nonexistent/x.crt"),
            "{error}"
        );
    }

    #[test]
    fn the_native_port_defaults_to_the_http_address_port_plus_one() {
        let mut options = settings(&format!("http = \"10.0.1.5:8000\"\n{NODES}"));
        for auth in [AuthMode::Sigv4, AuthMode::None] {
            options.auth = auth;
            assert_eq!(
                native_address(&options).unwrap(),
                "10.0.1.5:8001".parse::<SocketAddr>().unwrap()
            );
        }
        options.native = Some("10.0.1.5:9000".parse().unwrap());
        assert_eq!(
            native_address(&options).unwrap(),
            "10.0.1.5:9000".parse::<SocketAddr>().unwrap()
        );
    }
}
