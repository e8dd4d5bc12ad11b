//! `shoal node`: a storage node. One glommio executor per shard, each with its own bus port
//! (base port + shard index), WAL, page cache and partition replicas (engine/shard), plus an
//! admin HTTP endpoint serving `/metrics` (Prometheus text) and `/health`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use glommio::{LocalExecutorBuilder, Placement};
use shoal_bus::{Bus, BusConfig, BusTls, ConnectionId, HandshakeFailure};
use shoal_partition::ReplicaConfig;
use shoal_partition::time_to_live::SweepTarget;
use shoal_replication::{NodeId, ReplicaKind, ReplicaOptions};
use shoal_router::forward::Forwarder;
use shoal_router::metadata::{
    METADATA_PARTITION, MetadataStore, NodeAddress, TableStatus, metadata_replicas,
};
use shoal_router::partition_map::NodeDirectory;
use shoal_shard::{Shard, ShardConfig, Transport};
use shoal_store::wal::WalConfig;
use shoal_wire::messages::{ReplicationEnvelope, ResponseFrame, ShardAddress, SnapshotChunk};

use crate::node_list;

/// Shards per node at most (a sanity bound; one per core is the design).
pub const SHARDS_MAX: u16 = 256;
/// io_uring memory each shard executor registers (glommio's `io_memory`). glommio's default is
/// 10 MiB, which needs a raised RLIMIT_MEMLOCK; 2 MiB works under the common 8 MiB default for
/// a few shards and is plenty for our queue depths (kernel-notes/glommio-runtime.md).
pub const SHARD_IO_MEMORY_BYTES: usize = 2 << 20;
/// How often each shard renders its metrics for the admin endpoint.
pub const METRICS_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// Admin requests: the request head must fit here, and a client gets this long to send it.
const ADMIN_REQUEST_BYTES_MAX: usize = 8 * 1024;
const ADMIN_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// `shoal node`'s flags. Either `--config FILE` alone, or the flags (`--node-id`, `--data-dir`
/// and `--listen` are then required).
#[derive(Debug, Args, Clone)]
pub struct NodeOptions {
    /// A TOML file with every setting (kernel-notes/deployment.md documents each key); no
    /// other flag may be given with it.
    #[arg(long, conflicts_with_all = ["node_id", "data_dir", "listen", "shards", "cpus", "peers", "join", "admin", "cache_mib", "election_timeout_ms", "wal_segment_mib", "wal_segments", "checkpoint_every_slots", "verify_writes", "ttl_sweep_period_seconds", "stream_retention_seconds", "stream_shard_rollover_seconds", "quiesce", "bus_tls_cert", "bus_tls_key", "bus_tls_ca"])]
    pub config: Option<PathBuf>,
    /// This node's id (unique in the cluster, never reused).
    #[arg(long, required_unless_present = "config")]
    pub node_id: Option<u64>,
    /// Data directory; each shard uses DIR/shard-<index>.
    #[arg(long, required_unless_present = "config")]
    pub data_dir: Option<PathBuf>,
    /// Address of shard 0's bus port; shard i listens on port + i.
    #[arg(long, required_unless_present = "config")]
    pub listen: Option<SocketAddr>,
    /// Shard executors (one per core is the design; see --cpus for where they run).
    #[arg(long, default_value_t = 1)]
    pub shards: u16,
    /// The cores the shards are pinned to, shard i on the i-th: a Linux CPU list (`4-7`,
    /// `0,2,4`), `none` (unpinned), or `allowed` (the default: the CPUs of this process's
    /// affinity mask, as `taskset` or systemd's `CPUAffinity=` set it; unpinned when the mask
    /// has fewer CPUs than shards).
    #[arg(long, value_parser = validate_cpus)]
    pub cpus: Option<String>,
    /// Another node: ID=HOST:PORT (its shard 0 bus port). Repeat for each peer. This lists the
    /// nodes a cluster is created with; a node added later uses --join instead.
    #[arg(long = "peer", value_parser = parse_peer, conflicts_with = "join")]
    pub peers: Vec<(u64, SocketAddr)>,
    /// Join a running cluster through a node of it: HOST:PORT of any node's shard 0 bus port
    /// (repeat to name several; the first that answers is used). The node is added to the
    /// cluster's node list (its --node-id must be higher than every id the cluster has had),
    /// learns the other nodes from it, and the autoadmin moves replicas onto it. A joined node
    /// restarts with the same flags. --listen must then name an address the others reach.
    #[arg(long = "join")]
    pub join: Vec<SocketAddr>,
    /// Admin HTTP address serving /metrics and /health.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Page cache per shard, in MiB of 16 KiB pages.
    #[arg(long, default_value_t = DEFAULT_CACHE_MIB)]
    pub cache_mib: usize,
    /// The shortest election timeout in milliseconds; heartbeats, leases and the drift bound
    /// are derived from it (README.md of engine/shard lists the ratios).
    #[arg(long, default_value_t = DEFAULT_ELECTION_TIMEOUT_MS)]
    pub election_timeout_ms: u64,
    /// WAL segment size per shard, MiB (segments are preallocated and reused in a ring).
    #[arg(long, default_value_t = DEFAULT_WAL_SEGMENT_MIB)]
    pub wal_segment_mib: u64,
    /// WAL segments per shard.
    #[arg(long, default_value_t = DEFAULT_WAL_SEGMENTS)]
    pub wal_segments: u32,
    /// Checkpoint a partition's B-tree every this many applied log slots.
    #[arg(long, default_value_t = DEFAULT_CHECKPOINT_EVERY_SLOTS)]
    pub checkpoint_every_slots: u64,
    /// Read every durable write (WAL batch, B-tree page, meta file) back before it counts, so a
    /// write the device lost, tore or misdirected stops the node instead of being forgotten
    /// (shoal_io::storage::write_verified). `false` saves one read per write.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub verify_writes: bool,
    /// Time to Live: the least time in seconds between the starts of two sweeps of a partition
    /// for expired items (each partition leader sweeps its own; README.md, "Time to Live").
    #[arg(long, default_value_t = DEFAULT_TTL_SWEEP_PERIOD_SECONDS)]
    pub ttl_sweep_period_seconds: u64,
    /// DynamoDB Streams: how long in seconds a stream record is kept (DynamoDB's 24 hours by
    /// default; README.md, "Streams").
    #[arg(long, default_value_t = DEFAULT_STREAM_RETENTION_SECONDS)]
    pub stream_retention_seconds: u64,
    /// DynamoDB Streams: how long in seconds a shard stays open before its partition closes
    /// it and opens a child (about four hours, as DynamoDB's).
    #[arg(long, default_value_t = DEFAULT_STREAM_SHARD_ROLLOVER_SECONDS)]
    pub stream_shard_rollover_seconds: u64,
    /// Let idle replication groups quiesce (replication README, "Quiescence"): an idle
    /// partition then costs next to nothing. `false` keeps every group heartbeating, for a
    /// rolling upgrade from a build without quiescence, whose nodes cannot read a Quiesce
    /// message (net/wire FORMAT.md): turn it on again once every node runs this build.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub quiesce: bool,
    #[command(flatten)]
    pub bus_tls: crate::bus_tls::BusTlsArgs,
}

const DEFAULT_CACHE_MIB: usize = 64;
const DEFAULT_ELECTION_TIMEOUT_MS: u64 = 1000;
const DEFAULT_WAL_SEGMENT_MIB: u64 = 64;
const DEFAULT_WAL_SEGMENTS: u32 = 16;
const DEFAULT_CHECKPOINT_EVERY_SLOTS: u64 = 2048;
const STREAM_RETENTION_SECONDS_MIN: u64 = 60;
const STREAM_RETENTION_SECONDS_MAX: u64 = 7 * 24 * 3600;
const STREAM_SHARD_ROLLOVER_SECONDS_MIN: u64 = 10;
const DEFAULT_STREAM_RETENTION_SECONDS: u64 = shoal_model::stream::RETENTION_MS_DEFAULT / 1000;
const DEFAULT_STREAM_SHARD_ROLLOVER_SECONDS: u64 =
    shoal_model::stream::SHARD_ROLLOVER_MS_DEFAULT / 1000;
/// An hour between sweeps: DynamoDB deletes expired items "typically within two days" (API
/// reference, UpdateTimeToLive), and a pass an hour finds them well within that at a small
/// cost (one read of the partition an hour, in bounded steps).
const DEFAULT_TTL_SWEEP_PERIOD_SECONDS: u64 = 3600;
/// The sweep period's bounds: a second (tests, `shoal dev`) to a day.
const TTL_SWEEP_PERIOD_SECONDS_MIN: u64 = 1;
const TTL_SWEEP_PERIOD_SECONDS_MAX: u64 = 86_400;
/// Each shard reads the tables' TTL settings from the metadata group once per sweep period, at
/// least this often: a change by UpdateTimeToLive reaches the sweepers within it.
pub const TTL_SETTINGS_REFRESH_INTERVAL_MAX: Duration = Duration::from_secs(60);
/// One read of the tables' settings may take this long.
const TTL_SETTINGS_READ_DEADLINE: Duration = Duration::from_secs(10);
/// A config file larger than this is not a config file.
const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// How long a starting node waits for its bus ports to be released before it gives up. A
/// process killed with SIGKILL keeps its listening sockets for a while after it has been
/// reaped: the kernel tears its io_uring instance down asynchronously, and the accept pending
/// in the ring keeps the socket listening until then (6 to 12 ms on the dev VM when idle,
/// measured by killing a node and binding its port in a loop; longer under load, where a node
/// restarted at once by the process tests exited with EADDRINUSE). A supervisor that restarts
/// the node at once must not see it fail for that. A port still held after this is a real
/// conflict, reported as such.
const BUS_PORT_RELEASE_WAIT_MAX: Duration = Duration::from_secs(10);
/// How often the port is tried meanwhile.
const BUS_PORT_RELEASE_POLL: Duration = Duration::from_millis(10);

/// A peer in a config file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSetting {
    pub id: u64,
    pub address: SocketAddr,
}

/// Every setting of a node, as flags or a TOML file give them (the file's keys are these
/// names; kernel-notes/deployment.md documents each).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    #[serde(default = "default_shards")]
    pub shards: u16,
    /// `--cpus`: a CPU list, `none` or `allowed` (absent: `allowed`).
    #[serde(default)]
    pub cpus: Option<String>,
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerSetting>,
    /// `--join`: nodes of a running cluster to join through.
    #[serde(default)]
    pub join: Vec<SocketAddr>,
    #[serde(default)]
    pub admin: Option<SocketAddr>,
    #[serde(default = "default_cache_mib")]
    pub cache_mib: usize,
    #[serde(default = "default_election_timeout_ms")]
    pub election_timeout_ms: u64,
    #[serde(default = "default_wal_segment_mib")]
    pub wal_segment_mib: u64,
    #[serde(default = "default_wal_segments")]
    pub wal_segments: u32,
    #[serde(default = "default_checkpoint_every_slots")]
    pub checkpoint_every_slots: u64,
    #[serde(default = "default_verify_writes")]
    pub verify_writes: bool,
    #[serde(default = "default_ttl_sweep_period_seconds")]
    pub ttl_sweep_period_seconds: u64,
    #[serde(default = "default_stream_retention_seconds")]
    pub stream_retention_seconds: u64,
    #[serde(default = "default_stream_shard_rollover_seconds")]
    pub stream_shard_rollover_seconds: u64,
    #[serde(default = "default_quiesce")]
    pub quiesce: bool,
    /// Mutual TLS on the bus (bus_tls.rs): this node's certificate chain, its key, the
    /// cluster CA bundle; all three or none.
    #[serde(default)]
    pub bus_tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub bus_tls_key: Option<PathBuf>,
    #[serde(default)]
    pub bus_tls_ca: Option<PathBuf>,
}

fn default_shards() -> u16 {
    1
}
fn default_cache_mib() -> usize {
    DEFAULT_CACHE_MIB
}
fn default_election_timeout_ms() -> u64 {
    DEFAULT_ELECTION_TIMEOUT_MS
}
fn default_wal_segment_mib() -> u64 {
    DEFAULT_WAL_SEGMENT_MIB
}
fn default_wal_segments() -> u32 {
    DEFAULT_WAL_SEGMENTS
}
fn default_checkpoint_every_slots() -> u64 {
    DEFAULT_CHECKPOINT_EVERY_SLOTS
}
fn default_verify_writes() -> bool {
    true
}
fn default_ttl_sweep_period_seconds() -> u64 {
    DEFAULT_TTL_SWEEP_PERIOD_SECONDS
}
fn default_stream_retention_seconds() -> u64 {
    DEFAULT_STREAM_RETENTION_SECONDS
}
fn default_stream_shard_rollover_seconds() -> u64 {
    DEFAULT_STREAM_SHARD_ROLLOVER_SECONDS
}
fn default_quiesce() -> bool {
    true
}

/// Reads a TOML config file into `T`, with the file named in every error.
pub fn read_config<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T, String> {
    let size = std::fs::metadata(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?
        .len();
    if size > CONFIG_FILE_BYTES_MAX {
        return Err(format!(
            "{} is larger than {CONFIG_FILE_BYTES_MAX} bytes",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    toml::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
}

impl NodeOptions {
    /// The settings from the config file, or from the flags.
    pub fn settings(&self) -> Result<NodeSettings, String> {
        if let Some(path) = &self.config {
            return read_config(path);
        }
        let missing = |name: &str| format!("--{name} is required without --config");
        Ok(NodeSettings {
            node_id: self.node_id.ok_or_else(|| missing("node-id"))?,
            data_dir: self.data_dir.clone().ok_or_else(|| missing("data-dir"))?,
            listen: self.listen.ok_or_else(|| missing("listen"))?,
            shards: self.shards,
            cpus: self.cpus.clone(),
            peers: self
                .peers
                .iter()
                .map(|(id, address)| PeerSetting {
                    id: *id,
                    address: *address,
                })
                .collect(),
            join: self.join.clone(),
            admin: self.admin,
            cache_mib: self.cache_mib,
            election_timeout_ms: self.election_timeout_ms,
            wal_segment_mib: self.wal_segment_mib,
            wal_segments: self.wal_segments,
            checkpoint_every_slots: self.checkpoint_every_slots,
            verify_writes: self.verify_writes,
            ttl_sweep_period_seconds: self.ttl_sweep_period_seconds,
            stream_retention_seconds: self.stream_retention_seconds,
            stream_shard_rollover_seconds: self.stream_shard_rollover_seconds,
            quiesce: self.quiesce,
            bus_tls_cert: self.bus_tls.bus_tls_cert.clone(),
            bus_tls_key: self.bus_tls.bus_tls_key.clone(),
            bus_tls_ca: self.bus_tls.bus_tls_ca.clone(),
        })
    }
}

pub fn parse_peer(text: &str) -> Result<(u64, SocketAddr), String> {
    let (id, address) = text
        .split_once('=')
        .ok_or_else(|| format!("expected ID=HOST:PORT, got {text:?}"))?;
    let id = id
        .parse()
        .map_err(|_| format!("peer id {id:?} is not a number"))?;
    let address = address
        .parse()
        .map_err(|_| format!("peer address {address:?} is not HOST:PORT"))?;
    Ok((id, address))
}

pub(crate) fn shard_address(base: SocketAddr, shard: u16) -> Option<SocketAddr> {
    let port = base.port().checked_add(shard)?;
    Some(SocketAddr::new(base.ip(), port))
}

/// How many heartbeat rounds an idle group sends per election timeout (a busy one sends ten).
/// Four keeps the lease (80% of the timeout, less a tenth for drift: 72%) renewed by the
/// second round after any one is lost, and a follower hears three rounds before it may
/// campaign.
const IDLE_HEARTBEATS_PER_ELECTION_TIMEOUT: u32 = 4;

/// The replica timing for an election timeout: heartbeats at a tenth of it (a quarter when the
/// group is idle), a lease of 80% (it must end before followers would elect someone else), a
/// drift bound of a tenth of the lease (far above real CLOCK_MONOTONIC rate differences, which
/// are parts per million). `quiesce`: whether idle groups quiesce (`shoal node --quiesce`).
pub fn replica_options(election_timeout: Duration, quiesce: bool) -> ReplicaOptions {
    let lease = election_timeout * 4 / 5;
    ReplicaOptions {
        kind: ReplicaKind::Full,
        election_timeout_min: election_timeout,
        election_timeout_jitter: election_timeout,
        heartbeat_interval: election_timeout / 10,
        idle_heartbeat_interval: election_timeout / IDLE_HEARTBEATS_PER_ELECTION_TIMEOUT,
        quiesce,
        lease_duration: lease,
        clock_drift_max: lease / 10,
        snapshot_retry_interval: election_timeout * 2,
        election_seed: 0,
    }
}

/// The bus, as the shard runtime sees it.
struct BusTransport {
    bus: Rc<Bus>,
}

impl Transport for BusTransport {
    type Connection = ConnectionId;

    fn send_replication(&self, to: ShardAddress, envelope: ReplicationEnvelope) {
        // A full queue or an unknown peer drops the message; replication tolerates loss.
        let _ = self.bus.send_replication(to, envelope);
    }

    fn snapshot_room(&self, to: ShardAddress) -> usize {
        self.bus.snapshot_room(to)
    }

    fn send_snapshot(&self, to: ShardAddress, chunk: SnapshotChunk) {
        // Within the room asked for just before, this cannot fail; if it does, the chunk is
        // counted as lost and the transfer restarts.
        let _ = self.bus.try_send_snapshot(to, chunk);
    }

    fn respond(&self, connection: ConnectionId, response: ResponseFrame) {
        // The connection may have closed; its client gave up on the answer.
        let _ = self.bus.respond(connection, response);
    }
}

const BUS_METRICS_HEADERS: &str = "\
# HELP shoal_bus_requests_received_total Client requests read from inbound bus connections.
# TYPE shoal_bus_requests_received_total counter
# HELP shoal_bus_responses_sent_total Responses written to inbound bus connections.
# TYPE shoal_bus_responses_sent_total counter
# HELP shoal_bus_requests_outstanding Requests received and not yet answered, all connections.
# TYPE shoal_bus_requests_outstanding gauge
# HELP shoal_bus_connection_requests_outstanding_max The most any one connection holds; at the per-connection bound it stops reading.
# TYPE shoal_bus_connection_requests_outstanding_max gauge
# HELP shoal_shard_pending_replies Item requests handed to a partition's replica and not answered yet.
# TYPE shoal_shard_pending_replies gauge
# HELP shoal_bus_envelopes_dropped_total Replication envelopes dropped, by reason.
# TYPE shoal_bus_envelopes_dropped_total counter
# HELP shoal_bus_write_timeouts_total Writes that stalled past the write timeout (each dropped its connection).
# TYPE shoal_bus_write_timeouts_total counter
# HELP shoal_bus_tls 1 if the bus requires mutual TLS with the cluster CA, 0 if it is plaintext.
# TYPE shoal_bus_tls gauge
# HELP shoal_bus_tls_handshakes_failed_total Inbound bus connections refused in the TLS handshake, by reason (failed: no client certificate, or not the cluster CA's).
# TYPE shoal_bus_tls_handshakes_failed_total counter
# HELP shoal_bus_tls_connect_failures_total Outbound bus connections whose TLS handshake failed (the peer's certificate not the cluster CA's or not for its address, or a peer without TLS).
# TYPE shoal_bus_tls_connect_failures_total counter
";

/// The bus's counters and the shard's unanswered requests, in Prometheus text.
fn bus_metrics(
    node: u64,
    shard: u16,
    bus: &Bus,
    tls: bool,
    pending_replies: &BTreeMap<u64, usize>,
) -> String {
    let stats = bus.stats();
    let (outstanding, outstanding_max) = bus.requests_outstanding();
    let labels = format!("node=\"{node}\",shard=\"{shard}\"");
    let mut text = format!(
        "shoal_bus_requests_received_total{{{labels}}} {}\n\
         shoal_bus_responses_sent_total{{{labels}}} {}\n\
         shoal_bus_requests_outstanding{{{labels}}} {outstanding}\n\
         shoal_bus_connection_requests_outstanding_max{{{labels}}} {outstanding_max}\n\
         shoal_bus_write_timeouts_total{{{labels}}} {}\n",
        stats.requests_received, stats.responses_sent, stats.write_timeouts,
    );
    for (partition, count) in pending_replies {
        text.push_str(&format!(
            "shoal_shard_pending_replies{{{labels},partition=\"{partition}\"}} {count}\n"
        ));
    }
    text.push_str(&format!(
        "shoal_bus_tls{{{labels}}} {}\nshoal_bus_tls_connect_failures_total{{{labels}}} {}\n",
        u8::from(tls),
        stats.tls_connect_failures
    ));
    for (failure, reason) in HandshakeFailure::ALL {
        text.push_str(&format!(
            "shoal_bus_tls_handshakes_failed_total{{{labels},reason=\"{reason}\"}} {}\n",
            stats.tls_handshakes_failed[failure.index()]
        ));
    }
    for (reason, count) in [
        ("queue_full", stats.envelopes_dropped_queue_full),
        ("unreachable", stats.envelopes_dropped_unreachable),
        ("oversize", stats.envelopes_dropped_oversize),
    ] {
        text.push_str(&format!(
            "shoal_bus_envelopes_dropped_total{{{labels},reason=\"{reason}\"}} {count}\n"
        ));
    }
    text
}

/// `--cpus`'s value parser: the text is kept, checked here.
fn validate_cpus(text: &str) -> Result<String, String> {
    crate::cpus::parse_cpu_choice(text).map(|_| text.to_string())
}

/// Where each shard's executor runs (crate::cpus).
fn shard_placements(options: &NodeSettings) -> Result<Vec<Placement>, String> {
    let choice = match &options.cpus {
        Some(text) => {
            crate::cpus::parse_cpu_choice(text).map_err(|error| format!("cpus: {error}"))?
        }
        None => crate::cpus::CpuChoice::Allowed,
    };
    crate::cpus::shard_placements(&choice, options.shards, &crate::cpus::allowed_cpus())
}

fn validate(options: &NodeSettings) -> Result<(), String> {
    if options.shards == 0 || options.shards > SHARDS_MAX {
        return Err(format!("--shards must be 1 to {SHARDS_MAX}"));
    }
    shard_placements(options)?;
    if options.node_id == 0 {
        return Err("--node-id must be at least 1 (0 means no node)".to_string());
    }
    if shard_address(options.listen, options.shards - 1).is_none() {
        return Err("--listen port + shards runs past port 65535".to_string());
    }
    if options.peers.iter().any(|peer| peer.id == options.node_id) {
        return Err("a --peer has this node's own id".to_string());
    }
    if !options.join.is_empty() {
        if !options.peers.is_empty() {
            return Err(
                "--join and --peer exclude each other: a joining node learns its \
                        peers from the cluster"
                    .to_string(),
            );
        }
        if options.listen.ip().is_unspecified() || options.listen.port() == 0 {
            return Err(format!(
                "--listen {} cannot be given to the cluster as this node's address: with --join \
                 it must name an address and port the other nodes reach",
                options.listen
            ));
        }
    }
    if !(100..=60_000).contains(&options.election_timeout_ms) {
        return Err("--election-timeout-ms must be 100 to 60000".to_string());
    }
    if !(1..=shoal_partition::replica::CHECKPOINT_EVERY_SLOTS_MAX)
        .contains(&options.checkpoint_every_slots)
    {
        return Err(format!(
            "--checkpoint-every-slots must be 1 to {}",
            shoal_partition::replica::CHECKPOINT_EVERY_SLOTS_MAX
        ));
    }
    let wal = WalConfig {
        segment_bytes: options.wal_segment_mib << 20,
        segment_count: options.wal_segments,
        ..WalConfig::default()
    };
    if let Err(error) = wal.validate() {
        return Err(format!(
            "--wal-segment-mib / --wal-segments: {error} (a segment must hold the largest \
             batch, {} MiB)",
            WalConfig::default().batch_bytes_max >> 20
        ));
    }
    if options.cache_mib == 0 {
        return Err("--cache-mib must be at least 1".to_string());
    }
    if !(TTL_SWEEP_PERIOD_SECONDS_MIN..=TTL_SWEEP_PERIOD_SECONDS_MAX)
        .contains(&options.ttl_sweep_period_seconds)
    {
        return Err(format!(
            "--ttl-sweep-period-seconds must be {TTL_SWEEP_PERIOD_SECONDS_MIN} to \
             {TTL_SWEEP_PERIOD_SECONDS_MAX}"
        ));
    }
    // Records live at least a minute (a consumer must have time to read them) and at most
    // DynamoDB's 24 hours' multiple of a week; a shard lasts at least ten seconds.
    if !(STREAM_RETENTION_SECONDS_MIN..=STREAM_RETENTION_SECONDS_MAX)
        .contains(&options.stream_retention_seconds)
    {
        return Err(format!(
            "--stream-retention-seconds must be {STREAM_RETENTION_SECONDS_MIN} to \
             {STREAM_RETENTION_SECONDS_MAX}"
        ));
    }
    if !(STREAM_SHARD_ROLLOVER_SECONDS_MIN..=STREAM_RETENTION_SECONDS_MAX)
        .contains(&options.stream_shard_rollover_seconds)
    {
        return Err(format!(
            "--stream-shard-rollover-seconds must be {STREAM_SHARD_ROLLOVER_SECONDS_MIN} to \
             {STREAM_RETENTION_SECONDS_MAX}"
        ));
    }
    Ok(())
}

pub fn run(flags: &NodeOptions) -> ExitCode {
    let options = match flags.settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("shoal node: {error}");
            return ExitCode::from(2);
        }
    };
    let options = &options;
    if let Err(error) = validate(options) {
        eprintln!("shoal node: {error}");
        return ExitCode::from(2);
    }
    // Read once, before any shard starts: a bad file stops the node here, named.
    let bus_tls = match crate::bus_tls::load(
        options.bus_tls_cert.as_deref(),
        options.bus_tls_key.as_deref(),
        options.bus_tls_ca.as_deref(),
    ) {
        Ok(bus_tls) => bus_tls,
        Err(error) => {
            eprintln!("shoal node: {error}");
            return ExitCode::from(2);
        }
    };
    shoal_io::storage::set_write_verification(options.verify_writes);
    if !options.verify_writes {
        tracing::warn!("durable writes are not read back (--verify-writes false)");
    }
    if let Err(error) = std::fs::create_dir_all(&options.data_dir) {
        eprintln!(
            "shoal node: cannot create {}: {error}",
            options.data_dir.display()
        );
        return ExitCode::FAILURE;
    }
    if let Err(error) =
        wait_for_bus_ports(options.listen, options.shards, BUS_PORT_RELEASE_WAIT_MAX)
    {
        eprintln!("shoal node: {error}");
        return ExitCode::FAILURE;
    }
    let node_list = match starting_node_list(options, bus_tls.clone()) {
        Ok(nodes) => nodes,
        Err(error) => {
            eprintln!("shoal node: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shared_list = Arc::new(node_list::SharedNodeList::new(node_list.clone()));
    let mut with_peers = options.clone();
    with_peers.peers = node_list
        .iter()
        .filter(|node| node.id != options.node_id)
        .map(|node| PeerSetting {
            id: node.id,
            address: node.address,
        })
        .collect();
    let options = &with_peers;
    let published: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(vec![String::new(); usize::from(options.shards)]));
    if let Some(admin) = options.admin {
        match TcpListener::bind(admin) {
            Ok(listener) => {
                let published = published.clone();
                std::thread::Builder::new()
                    .name("shoal-admin".to_string())
                    .spawn(move || serve_admin(listener, &published))
                    .map_err(|error| {
                        eprintln!("shoal node: cannot start the admin thread: {error}")
                    })
                    .ok();
            }
            Err(error) => {
                eprintln!("shoal node: cannot listen on --admin {admin}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let placements = match shard_placements(options) {
        Ok(placements) => placements,
        Err(error) => {
            eprintln!("shoal node: {error}");
            return ExitCode::from(2);
        }
    };
    let (failures_sender, failures) = std::sync::mpsc::channel::<String>();
    let mut threads = Vec::new();
    for shard in 0..options.shards {
        let options = options.clone();
        let published = published.clone();
        let failures_sender = failures_sender.clone();
        let bus_tls = bus_tls.clone();
        let shared_list = shared_list.clone();
        let placement = placements[usize::from(shard)].clone();
        let thread = std::thread::Builder::new()
            .name(format!("shard-{shard}"))
            .spawn(move || {
                let executor = LocalExecutorBuilder::new(placement)
                    .name(&format!("shard-{shard}"))
                    .io_memory(SHARD_IO_MEMORY_BYTES)
                    .make();
                let executor = match executor {
                    Ok(executor) => executor,
                    Err(error) => {
                        let _ = failures_sender
                            .send(format!("shard {shard}: cannot start its executor: {error}"));
                        return;
                    }
                };
                let outcome =
                    executor.run(run_shard(options, shard, published, bus_tls, shared_list));
                if let Err(error) = outcome {
                    let _ = failures_sender.send(format!("shard {shard}: {error}"));
                }
            });
        match thread {
            Ok(thread) => threads.push(thread),
            Err(error) => {
                eprintln!("shoal node: cannot spawn shard {shard}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    drop(failures_sender);
    // A shard runs until the process ends; the first failure to start stops the node.
    if let Ok(failure) = failures.recv() {
        eprintln!("shoal node: {failure}");
        return ExitCode::FAILURE;
    }
    for thread in threads {
        let _ = thread.join();
    }
    ExitCode::SUCCESS
}

/// Waits until every shard's bus port can be bound (`BUS_PORT_RELEASE_WAIT_MAX`), so that a
/// node restarted right after a SIGKILL starts, and a node about to join knows it can listen:
/// one admitted to the cluster that then could not would stay listed (its id spent) as a node
/// that never answers. Binds with SO_REUSEADDR, as the bus does, so connections of the previous
/// process left in TIME_WAIT do not count as a conflict.
fn wait_for_bus_ports(listen: SocketAddr, shards: u16, wait_max: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + wait_max;
    let mut told = false;
    for shard in 0..shards {
        let address = shard_address(listen, shard).ok_or("port out of range")?;
        loop {
            match TcpListener::bind(address) {
                Ok(_) => break,
                Err(error)
                    if error.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    if !told {
                        tracing::info!(
                            %address,
                            "bus port still in use (a previous process may still be closing \
                             it); waiting for it"
                        );
                        told = true;
                    }
                    std::thread::sleep(BUS_PORT_RELEASE_POLL);
                }
                Err(error) => {
                    return Err(format!(
                        "cannot listen on {address} (shard {shard}): {error}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The node list this node starts from (node_list.rs): the saved list merged with the
/// flags' peers; or, for a node started with `--join` and nothing saved, the list it gets by
/// joining, saved before any shard starts (`run` saw first that the bus ports are free).
fn starting_node_list(
    options: &NodeSettings,
    bus_tls: Option<BusTls>,
) -> Result<Vec<NodeAddress>, String> {
    let saved = node_list::load_node_list(&options.data_dir);
    if options.join.is_empty() || saved.is_some() {
        let mut flags: Vec<NodeAddress> = options
            .peers
            .iter()
            .map(|peer| NodeAddress {
                id: peer.id,
                address: peer.address,
            })
            .collect();
        flags.push(NodeAddress {
            id: options.node_id,
            address: options.listen,
        });
        return Ok(node_list::starting_list(flags, saved));
    }
    let nodes = node_list::join_cluster(
        options.node_id,
        options.listen,
        options.shards,
        options.join.clone(),
        bus_tls,
    )?;
    node_list::save_node_list(&options.data_dir, &nodes).map_err(|error| {
        format!(
            "joined, but the node list was not saved in {}: {error}",
            options.data_dir.display()
        )
    })?;
    Ok(nodes)
}

async fn run_shard(
    options: NodeSettings,
    shard: u16,
    published: Arc<Mutex<Vec<String>>>,
    bus_tls: Option<BusTls>,
    shared_list: Arc<node_list::SharedNodeList>,
) -> Result<(), String> {
    let node = options.node_id;
    let listen = shard_address(options.listen, shard).ok_or("port out of range")?;
    let peers: BTreeMap<ShardAddress, SocketAddr> = options
        .peers
        .iter()
        .filter_map(|peer| {
            Some((
                ShardAddress {
                    node: peer.id,
                    shard,
                },
                shard_address(peer.address, shard)?,
            ))
        })
        .collect();
    let mut bus_config = BusConfig::new(ShardAddress { node, shard }, listen, peers);
    bus_config.tls = bus_tls.clone();
    let (bus, inbox) = Bus::start(bus_config)
        .map_err(|error| format!("cannot start the bus on {listen}: {error}"))?;
    let election_timeout = Duration::from_millis(options.election_timeout_ms);
    let config = ShardConfig {
        node: NodeId(node),
        shard,
        directory: options.data_dir.join(format!("shard-{shard}")),
        replica: ReplicaConfig {
            core: replica_options(election_timeout, options.quiesce),
            checkpoint_every_slots: options.checkpoint_every_slots,
            btree: shoal_partition::replica::ITEM_TREE_CONFIG,
            item_collection_bytes_max: shoal_model::index::ITEM_COLLECTION_BYTES_MAX,
        },
        wal: WalConfig {
            segment_bytes: options.wal_segment_mib << 20,
            segment_count: options.wal_segments,
            ..WalConfig::default()
        },
        cache_pages: options.cache_mib * 1024 * 1024 / shoal_store::btree::page::PAGE_BYTES,
        tick_interval: Duration::from_millis(10),
        seed: node.rotate_left(32) ^ u64::from(shard),
        time_to_live_sweep_period: Duration::from_secs(options.ttl_sweep_period_seconds),
        stream_retention: Duration::from_secs(options.stream_retention_seconds),
        stream_shard_rollover: Duration::from_secs(options.stream_shard_rollover_seconds),
        peers: options.peers.iter().map(|peer| NodeId(peer.id)).collect(),
    };
    // kernel-notes/glommio-runtime.md: the first timer on an executor can be late; take that hit before leases.
    glommio::timer::sleep(Duration::from_millis(1)).await;
    let bus = Rc::new(bus);
    let shard_runtime = Shard::start(config, Rc::new(BusTransport { bus: bus.clone() }))
        .await
        .map_err(|error| error.to_string())?;
    tracing::info!(node, shard, %listen, "shard serving");
    {
        let shard_runtime = shard_runtime.clone();
        let bus = bus.clone();
        let tls = bus_tls.is_some();
        glommio::spawn_local(async move {
            loop {
                let mut text = shard_runtime.render_metrics();
                text.push_str(&bus_metrics(
                    node,
                    shard,
                    &bus,
                    tls,
                    &shard_runtime.pending_replies(),
                ));
                if let Ok(mut slots) = published.lock()
                    && let Some(slot) = slots.get_mut(usize::from(shard))
                {
                    *slot = text;
                }
                glommio::timer::sleep(METRICS_PUBLISH_INTERVAL).await;
            }
        })
        .detach();
    }
    {
        let nodes = shared_list.nodes();
        node_list::apply_node_list(&shard_runtime, &bus, &nodes);
        {
            let shared_list = shared_list.clone();
            shard_runtime.on_unknown_node(move |added| {
                tracing::info!(
                    node = added.0,
                    "a membership change adds a node not on the node list; reading it again"
                );
                shared_list.want_refresh();
            });
        }
        glommio::spawn_local(node_list::follow_shared_list(
            shard_runtime.clone(),
            bus.clone(),
            shared_list.clone(),
        ))
        .detach();
        // The metadata group was created on the lowest node ids of the cluster
        // (`metadata_replicas`) and may have moved since: the cluster item lists where it is
        // (followed once read), and a store that finds none of its listed replicas asks the
        // nodes (`MetadataStore::rediscover`).
        let directory = NodeDirectory::new(nodes.iter().map(|node| (node.id, node.address)));
        let forwarder = Rc::new(
            Forwarder::new(directory, node ^ u64::from(shard)).with_bus_tls(bus_tls.clone()),
        );
        let metadata = Rc::new(MetadataStore::new(metadata_replicas(&nodes)));
        if shard == 0 {
            glommio::spawn_local(node_list::refresh_from_metadata(
                forwarder.clone(),
                metadata.clone(),
                shared_list.clone(),
                options.data_dir.clone(),
            ))
            .detach();
        }
        let interval = Duration::from_secs(options.ttl_sweep_period_seconds)
            .min(TTL_SETTINGS_REFRESH_INTERVAL_MAX);
        glommio::spawn_local(refresh_time_to_live(
            shard_runtime.clone(),
            forwarder,
            metadata,
            shared_list,
            interval,
        ))
        .detach();
    }
    while let Some(inbound) = inbox.recv().await {
        let shard_runtime = shard_runtime.clone();
        // Each message is dispatched in its own task: creating a partition or waiting for room
        // in a replica's queue must not hold up the messages behind it.
        glommio::spawn_local(async move {
            shard_runtime
                .dispatch(inbound.from_connection, inbound.message)
                .await;
        })
        .detach();
    }
    Ok(())
}

/// Keeps the shard's Time to Live settings current: every `interval`, reads every table item
/// from the metadata group (a strongly consistent scan at its leader, as a router does) and
/// gives the shard the TTL attribute of each of its partitions whose table has TTL enabled.
/// The reads follow the metadata group where shard 0 last read it to be
/// (`node_list::follow_metadata_group`). A read that fails keeps the settings it had: the sweep
/// goes on as last known, and the next read corrects it. A shard with no data partition reads
/// nothing.
async fn refresh_time_to_live<T: Transport + 'static>(
    shard: Rc<Shard<T>>,
    forwarder: Rc<Forwarder>,
    metadata: Rc<MetadataStore>,
    shared_list: Arc<node_list::SharedNodeList>,
    interval: Duration,
) {
    let node = shard.node().0;
    loop {
        glommio::timer::sleep(interval).await;
        node_list::follow_metadata_group(&shared_list, &forwarder, &metadata);
        let hosted: std::collections::BTreeSet<u64> = shard
            .statuses()
            .iter()
            .map(|status| status.partition)
            .filter(|partition| *partition != METADATA_PARTITION)
            .collect();
        if hosted.is_empty() {
            if !shard.time_to_live().is_empty() {
                shard.set_time_to_live(BTreeMap::new());
            }
            continue;
        }
        let deadline = std::time::Instant::now() + TTL_SETTINGS_READ_DEADLINE;
        let tables = match metadata
            .tables_with_time_to_live(&forwarder, deadline)
            .await
        {
            Ok(tables) => tables,
            Err(error) => {
                tracing::debug!(node, shard = shard.index(), ?error, "TTL settings not read");
                continue;
            }
        };
        let mut attributes = BTreeMap::new();
        for table in tables {
            let Some(attribute) = table.time_to_live.attribute else {
                continue;
            };
            let target = SweepTarget {
                attribute,
                local_indexes: table.local_indexes,
                global_indexes: table
                    .global_indexes
                    .into_iter()
                    .map(|record| record.index)
                    .collect(),
            };
            if table.status != TableStatus::Active {
                continue;
            }
            for partition in table.partitions {
                if hosted.contains(&partition.id) {
                    attributes.insert(partition.id, target.clone());
                }
            }
        }
        if attributes != shard.time_to_live() {
            tracing::info!(
                node,
                shard = shard.index(),
                partitions = attributes.len(),
                "TTL settings changed"
            );
            shard.set_time_to_live(attributes);
        }
    }
}

fn serve_admin(listener: TcpListener, published: &Mutex<Vec<String>>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if let Err(error) = answer_admin(stream, published) {
            tracing::debug!(%error, "admin request failed");
        }
    }
}

fn answer_admin(stream: TcpStream, published: &Mutex<Vec<String>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(ADMIN_READ_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?).take(ADMIN_REQUEST_BYTES_MAX as u64);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers, so the client sees its request consumed.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (status, content_type, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => {
            let headers = format!("{}{BUS_METRICS_HEADERS}", shoal_shard::metrics::HEADERS);
            let body = match published.lock() {
                Ok(slots) => {
                    let chunks: Vec<&str> = slots.iter().map(String::as_str).collect();
                    shoal_shard::metrics::exposition(&headers, &chunks)
                }
                Err(_) => shoal_shard::metrics::exposition(&headers, &[]),
            };
            ("200 OK", "text/plain; version=0.0.4", body)
        }
        (Some("GET"), Some("/health")) => ("200 OK", "text/plain", "ok\n".to_string()),
        (Some(_), Some(_)) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => ("400 Bad Request", "text/plain", "bad request\n".to_string()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> NodeSettings {
        toml::from_str(&format!(
            "node_id = 1\ndata_dir = \"/tmp/x\"\nlisten = \"127.0.0.1:7100\"\n{extra}"
        ))
        .unwrap()
    }

    /// Quiescence is on unless the setting turns it off (a rolling upgrade from a build
    /// without it), and the replicas' options follow the setting.
    #[test]
    fn quiescence_is_on_by_default_and_the_setting_turns_it_off() {
        let timeout = Duration::from_millis(DEFAULT_ELECTION_TIMEOUT_MS);
        let default = settings("");
        assert!(default.quiesce);
        assert!(replica_options(timeout, default.quiesce).quiesce);
        let off = settings("quiesce = false\n");
        assert!(!off.quiesce);
        assert!(!replica_options(timeout, off.quiesce).quiesce);
        assert!(replica_options(timeout, off.quiesce).validate().is_ok());
    }

    /// The config file's `cpus` key is checked like the flag: a bad list or a CPU outside
    /// the process's mask stops the node before anything starts, with the reason.
    #[test]
    fn the_cpus_setting_is_validated_before_the_node_starts() {
        assert!(validate(&settings("")).is_ok());
        assert!(validate(&settings("cpus = \"none\"\n")).is_ok());
        let backwards = validate(&settings("cpus = \"3-1\"\n")).unwrap_err();
        assert!(
            backwards.contains("cpus: CPU range 3-1 runs backwards"),
            "{backwards}"
        );
        let outside = validate(&settings("cpus = \"8191\"\n")).unwrap_err();
        assert!(outside.contains("may not use"), "{outside}");
        let first = crate::cpus::allowed_cpus().unwrap()[0];
        let placements = shard_placements(&settings(&format!("cpus = \"{first}\"\n"))).unwrap();
        assert_eq!(placements, vec![Placement::Fixed(first)]);
    }

    /// A bus port still held when the node starts (its previous process, killed, not yet
    /// gone) is waited for; one held past the wait is reported, naming the address.
    #[test]
    fn a_starting_node_waits_for_a_bus_port_to_be_released_and_reports_one_that_stays_held() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = held.local_addr().unwrap();
        let error = wait_for_bus_ports(address, 1, Duration::from_millis(100)).unwrap_err();
        assert!(error.contains(&address.to_string()), "{error}");
        assert!(error.contains("shard 0"), "{error}");

        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        assert_eq!(
            wait_for_bus_ports(address, 1, Duration::from_secs(10)),
            Ok(())
        );
        releaser.join().unwrap();
    }
}
