//! The cluster's node list as a storage node knows it (issue 19, node join).
//!
//! A node starts from its `--peer` list (the nodes a cluster was created with) and the list it
//! saved last time ([`NODE_LIST_FILE`]); a node started with `--join` and no saved list first
//! joins ([`join_cluster`]). From then on shard 0 reads the cluster item from the metadata group
//! every [`CLUSTER_REFRESH_INTERVAL`] ([`refresh_from_metadata`]), publishes a changed list to
//! the node's other shards through a [`SharedNodeList`], and saves it; every shard applies a
//! new version within [`SHARED_LIST_CHECK_INTERVAL`] ([`follow_shared_list`]): each other node
//! becomes a peer of its bus and is watched for liveness, and the shard answers
//! `NodeRequest::ClusterNodes` with the list. One metadata read per node per interval, however
//! many shards it has.
//!
//! Saving the list is what lets a node restart while the metadata group cannot answer (a
//! majority of its nodes down): a joined node does not need its seeds again, and a founder
//! knows the nodes that joined after it was configured.
//!
//! ## The saved list, byte by byte
//! `DATA_DIR/cluster-nodes` is UTF-8 text: the line `shoal-cluster-nodes 1` (the format's
//! name and version), then one line per node in ascending id order, its id in decimal, one
//! space, and its shard 0 bus address as `SocketAddr` prints it (`127.0.0.1:7100`,
//! `[::1]:7100`); every line ends with `\n`. It is written whole to `cluster-nodes.tmp`,
//! fsynced, renamed over the old file, and the directory fsynced, so a crash leaves the old
//! list or the new one. A file that does not read is reported and ignored (the node starts
//! from its flags, as before the file existed).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use shoal_bus::{Bus, BusTls};
use shoal_router::forward::Forwarder;
use shoal_router::metadata::{CLUSTER_KEY, ClusterRecord, MetadataStore, NodeAddress};
use shoal_router::partition_map::NodeDirectory;
use shoal_shard::{Shard, Transport};
use shoal_wire::messages::{NodeAddressWire, NodeRequest, NodeResponse, ShardAddress};

/// The saved node list's file name in the data directory.
pub const NODE_LIST_FILE: &str = "cluster-nodes";
const NODE_LIST_HEADER: &str = "shoal-cluster-nodes 1";
/// A saved list larger than this is not one (512 nodes of the longest address fit easily).
const NODE_LIST_FILE_BYTES_MAX: u64 = 64 * 1024;
/// How long `shoal node --join` keeps trying its seeds and the metadata group before it gives
/// up: a whole cluster restarting may take this long to elect its metadata leader.
const JOIN_DEADLINE: Duration = Duration::from_secs(120);
/// Pause between rounds over the seeds.
const JOIN_RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// io_uring memory of the executor the join runs on (a few bus connections).
const JOIN_IO_MEMORY_BYTES: usize = 1 << 20;
/// Shard 0 reads the cluster item this often (the first time at start), so that the node sends
/// to nodes that joined, and stops watching those that left, within about this long.
pub const CLUSTER_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// One read of the cluster item may take this long.
const CLUSTER_READ_DEADLINE: Duration = Duration::from_secs(10);
/// Every shard looks for a new version of the shared list this often (a lock and a compare).
const SHARED_LIST_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The node list shared by a node's shards: shard 0 publishes, every shard follows.
#[derive(Debug, Default)]
pub struct SharedNodeList {
    version: AtomicU64,
    nodes: Mutex<Vec<NodeAddress>>,
    /// A shard met a node not on the list (`Shard::on_unknown_node`): shard 0 reads the
    /// cluster item at its next check instead of at its next period.
    refresh_wanted: AtomicBool,
    /// The nodes the metadata group is on, as the cluster item last read lists them (empty
    /// until then): every shard's metadata reads follow it.
    metadata_replicas: Mutex<Vec<u64>>,
}

impl SharedNodeList {
    pub fn new(nodes: Vec<NodeAddress>) -> SharedNodeList {
        SharedNodeList {
            version: AtomicU64::new(1),
            nodes: Mutex::new(sorted(nodes)),
            refresh_wanted: AtomicBool::new(false),
            metadata_replicas: Mutex::new(Vec::new()),
        }
    }

    /// The metadata group's nodes by the cluster item last read; empty before the first read.
    pub fn metadata_replicas(&self) -> Vec<u64> {
        self.metadata_replicas
            .lock()
            .map(|replicas| replicas.clone())
            .unwrap_or_default()
    }

    fn publish_metadata_replicas(&self, replicas: &[u64]) {
        if let Ok(mut current) = self.metadata_replicas.lock() {
            replicas.clone_into(&mut current);
        }
    }

    /// Asks shard 0 to read the cluster item soon (within [`SHARED_LIST_CHECK_INTERVAL`]).
    pub fn want_refresh(&self) {
        self.refresh_wanted.store(true, Ordering::Release);
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn nodes(&self) -> Vec<NodeAddress> {
        self.nodes
            .lock()
            .map(|nodes| nodes.clone())
            .unwrap_or_default()
    }

    /// Replaces the list if `nodes` differs; returns whether it did.
    fn publish(&self, nodes: Vec<NodeAddress>) -> bool {
        let nodes = sorted(nodes);
        let Ok(mut current) = self.nodes.lock() else {
            return false;
        };
        if *current == nodes {
            return false;
        }
        *current = nodes;
        self.version.fetch_add(1, Ordering::AcqRel);
        true
    }
}

fn sorted(mut nodes: Vec<NodeAddress>) -> Vec<NodeAddress> {
    nodes.sort_by_key(|node| node.id);
    nodes.dedup_by_key(|node| node.id);
    nodes
}

/// The node list to start from: the saved one's nodes, then the flags' nodes it lacks (a saved
/// list is newer than the flags, which name the nodes a cluster was created with).
pub fn starting_list(flags: Vec<NodeAddress>, saved: Option<Vec<NodeAddress>>) -> Vec<NodeAddress> {
    let mut nodes = saved.unwrap_or_default();
    for node in flags {
        if !nodes.iter().any(|known| known.id == node.id) {
            nodes.push(node);
        }
    }
    sorted(nodes)
}

/// The text of a saved list (module docs).
pub fn encode_node_list(nodes: &[NodeAddress]) -> String {
    let mut text = format!("{NODE_LIST_HEADER}\n");
    for node in sorted(nodes.to_vec()) {
        text.push_str(&format!("{} {}\n", node.id, node.address));
    }
    text
}

/// Reads a saved list's text; `Err` says what is wrong with it.
pub fn decode_node_list(text: &str) -> Result<Vec<NodeAddress>, String> {
    let mut lines = text.split_terminator('\n');
    if lines.next() != Some(NODE_LIST_HEADER) {
        return Err(format!("the first line is not {NODE_LIST_HEADER:?}"));
    }
    let mut nodes = Vec::new();
    for line in lines {
        let (id, address) = line
            .split_once(' ')
            .ok_or_else(|| format!("line {line:?} is not `ID ADDRESS`"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| format!("node id {id:?} is not a number"))?;
        let address: SocketAddr = address
            .parse()
            .map_err(|_| format!("address {address:?} is not HOST:PORT"))?;
        if nodes.last().is_some_and(|last: &NodeAddress| last.id >= id) {
            return Err(format!("node {id} is out of order"));
        }
        nodes.push(NodeAddress { id, address });
    }
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line does not end".to_string());
    }
    Ok(nodes)
}

/// The list saved in `data_dir`, if there is one that reads; one that does not is reported.
pub fn load_node_list(data_dir: &Path) -> Option<Vec<NodeAddress>> {
    let path = data_dir.join(NODE_LIST_FILE);
    let size = std::fs::metadata(&path).ok()?.len();
    let text = if size > NODE_LIST_FILE_BYTES_MAX {
        Err(format!("larger than {NODE_LIST_FILE_BYTES_MAX} bytes"))
    } else {
        std::fs::read_to_string(&path).map_err(|error| error.to_string())
    };
    match text.and_then(|text| decode_node_list(&text)) {
        Ok(nodes) => Some(nodes),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "the saved node list does not read; starting from the flags");
            None
        }
    }
}

/// Saves `nodes` in `data_dir`, atomically (module docs).
pub fn save_node_list(data_dir: &Path, nodes: &[NodeAddress]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary: PathBuf = data_dir.join(format!("{NODE_LIST_FILE}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(encode_node_list(nodes).as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, data_dir.join(NODE_LIST_FILE))?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// `--join`: asks the seeds, in turn, for the node list (`NodeRequest::ClusterNodes`), then
/// adds this node to the cluster item through the metadata group (`Router::join_node`, whose
/// rules refuse a reused id, a taken address or another shard count) and returns the node
/// list, this node included. Runs on an executor of its own before the shards start. A
/// refusal is final; anything else (no seed answering, the metadata group electing) is tried
/// again until [`JOIN_DEADLINE`].
pub fn join_cluster(
    id: u64,
    listen: SocketAddr,
    shards: u16,
    seeds: Vec<SocketAddr>,
    bus_tls: Option<BusTls>,
) -> Result<Vec<NodeAddress>, String> {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("shoal-join")
        .io_memory(JOIN_IO_MEMORY_BYTES)
        .make()
        .map_err(|error| format!("cannot start an executor to join: {error}"))?;
    executor.run(async move {
        let deadline = Instant::now() + JOIN_DEADLINE;
        let forwarder = Forwarder::new(NodeDirectory::new(std::iter::empty()), id)
            .with_bus_tls(bus_tls.clone());
        let mut last_failure = String::from("no seed was asked");
        loop {
            for seed in &seeds {
                let nodes = match forwarder
                    .call_address(*seed, NodeRequest::ClusterNodes)
                    .await
                {
                    Ok(NodeResponse::ClusterNodes { nodes }) if !nodes.is_empty() => nodes,
                    outcome => {
                        last_failure = format!("seed {seed} gave no node list: {outcome:?}");
                        tracing::debug!(%seed, ?outcome, "a seed gave no node list");
                        continue;
                    }
                };
                let nodes: Vec<NodeAddress> = nodes
                    .iter()
                    .filter_map(|node| {
                        Some(NodeAddress {
                            id: node.node,
                            address: node.address.parse().ok()?,
                        })
                    })
                    .collect();
                let mut config = shoal_router::RouterConfig::new(nodes);
                config.bus_tls = bus_tls.clone();
                let router = shoal_router::Router::new(config)
                    .map_err(|error| format!("{}: {}", error.type_name, error.message))?;
                match router.join_node(id, listen, shards).await {
                    Ok(cluster) => {
                        tracing::info!(node = id, %listen, nodes = cluster.nodes.len(), "joined the cluster");
                        return Ok(cluster.nodes);
                    }
                    Err(error) if error.type_name.ends_with("ValidationException") => {
                        return Err(format!("the cluster refused this node: {}", error.message));
                    }
                    Err(error) => {
                        last_failure = format!("through seed {seed}: {}", error.message);
                        tracing::debug!(%seed, %error.message, "the join did not go through yet");
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "could not join through {seeds:?} within {} s; last: {last_failure}",
                    JOIN_DEADLINE.as_secs()
                ));
            }
            glommio::timer::sleep(JOIN_RETRY_INTERVAL).await;
        }
    })
}

/// Gives the shard the node list: each other node becomes a peer of its bus (at its port +
/// this shard's index) before the shard watches it and answers `ClusterNodes` with the list.
pub fn apply_node_list<T: Transport + 'static>(
    shard_runtime: &Shard<T>,
    bus: &Bus,
    nodes: &[NodeAddress],
) {
    let (me, shard) = (shard_runtime.node().0, shard_runtime.index());
    for node in nodes.iter().filter(|node| node.id != me) {
        let Some(address) = crate::node::shard_address(node.address, shard) else {
            continue;
        };
        if let Err(error) = bus.add_peer(
            ShardAddress {
                node: node.id,
                shard,
            },
            address,
        ) {
            tracing::warn!(node = node.id, %error, "a node of the cluster is not a bus peer");
        }
    }
    shard_runtime.set_cluster_nodes(
        nodes
            .iter()
            .map(|node| NodeAddressWire {
                node: node.id,
                address: node.address.to_string(),
            })
            .collect(),
    );
}

/// Every shard: applies each new version of the shared list ([`SHARED_LIST_CHECK_INTERVAL`]).
pub async fn follow_shared_list<T: Transport + 'static>(
    shard_runtime: Rc<Shard<T>>,
    bus: Rc<Bus>,
    shared: std::sync::Arc<SharedNodeList>,
) {
    let mut applied = 0;
    loop {
        let version = shared.version();
        if version != applied {
            apply_node_list(&shard_runtime, &bus, &shared.nodes());
            applied = version;
        }
        glommio::timer::sleep(SHARED_LIST_CHECK_INTERVAL).await;
    }
}

/// Shard 0: reads the cluster item at start, every [`CLUSTER_REFRESH_INTERVAL`], and within
/// [`SHARED_LIST_CHECK_INTERVAL`] of a shard asking ([`SharedNodeList::want_refresh`]), and
/// publishes and saves a changed list. A read that fails keeps the list it had.
pub async fn refresh_from_metadata(
    forwarder: Rc<Forwarder>,
    metadata: Rc<MetadataStore>,
    shared: std::sync::Arc<SharedNodeList>,
    data_dir: PathBuf,
) {
    let mut unknown_node_met = false;
    // The highest node id of the last strong read: a stale read adds only ids above it.
    let mut highest_read = 0;
    loop {
        if unknown_node_met {
            // A membership change named a node this node does not know: learn its address
            // from the applied state first, which needs no lease (see below).
            learn_nodes_from_applied_state(&forwarder, &metadata, &shared, &data_dir, highest_read)
                .await;
        }
        let deadline = Instant::now() + CLUSTER_READ_DEADLINE;
        match metadata.get(&forwarder, CLUSTER_KEY, deadline).await {
            Ok(Some(item)) => match ClusterRecord::from_item(&item) {
                Ok(cluster) => {
                    highest_read = highest_read.max(cluster.highest_node_id);
                    // The metadata group may have moved (to a node that joined after this one
                    // started, too): this shard's reads follow it at once, the others' at
                    // their next read (`follow_metadata_group`).
                    forwarder.set_directory(cluster.directory());
                    metadata.set_replicas(&cluster.metadata_replicas);
                    shared.publish_metadata_replicas(&cluster.metadata_replicas);
                    if shared.publish(cluster.nodes) {
                        let nodes = shared.nodes();
                        tracing::info!(?nodes, "the cluster's node list changed");
                        if let Err(error) = save_node_list(&data_dir, &nodes) {
                            tracing::warn!(%error, "the node list was not saved");
                        }
                    }
                }
                Err(error) => tracing::warn!(%error.message, "the cluster item does not read"),
            },
            outcome => {
                tracing::debug!(?outcome, "the cluster item was not read");
                learn_nodes_from_applied_state(
                    &forwarder,
                    &metadata,
                    &shared,
                    &data_dir,
                    highest_read,
                )
                .await;
            }
        }
        let next = Instant::now() + CLUSTER_REFRESH_INTERVAL;
        unknown_node_met = false;
        while Instant::now() < next {
            if shared.refresh_wanted.swap(false, Ordering::AcqRel) {
                unknown_node_met = true;
                break;
            }
            glommio::timer::sleep(SHARED_LIST_CHECK_INTERVAL).await;
        }
    }
}

/// Before the strong read when a membership change named an unknown node, and when the strong
/// read failed: the nodes an eventually consistent read lists that this node does not know yet
/// are added, never removed (the read may be stale), and only those with an id above
/// `highest_read`, the highest of the last strong read: ids are never reused, so a stale read
/// cannot bring back a node that was decommissioned and left. Without
/// this a metadata group growing from one replica stalled for good: the add made the joined
/// node needed for every commit and every lease, the leader's node could learn the joined
/// node's address only from the cluster item, and a strong read of it needed that lease. The
/// leader's own replica has the item applied, with the joined node in it.
async fn learn_nodes_from_applied_state(
    forwarder: &Forwarder,
    metadata: &MetadataStore,
    shared: &SharedNodeList,
    data_dir: &Path,
    highest_read: u64,
) {
    let deadline = Instant::now() + CLUSTER_READ_DEADLINE;
    let Ok(Some(item)) = metadata
        .get_eventual(forwarder, CLUSTER_KEY, deadline)
        .await
    else {
        return;
    };
    let Ok(cluster) = ClusterRecord::from_item(&item) else {
        return;
    };
    let known = shared.nodes();
    let new: Vec<NodeAddress> = cluster
        .nodes
        .into_iter()
        .filter(|node| node.id > highest_read && !known.iter().any(|known| known.id == node.id))
        .collect();
    if new.is_empty() {
        return;
    }
    let mut nodes = known;
    nodes.extend(new);
    forwarder.set_directory(NodeDirectory::new(
        nodes.iter().map(|node| (node.id, node.address)),
    ));
    if shared.publish(nodes) {
        let nodes = shared.nodes();
        tracing::info!(?nodes, "nodes learned from the metadata's applied state");
        if let Err(error) = save_node_list(data_dir, &nodes) {
            tracing::warn!(%error, "the node list was not saved");
        }
    }
}

/// Points a shard's metadata reads at the nodes and the metadata group shard 0 last read
/// (`refresh_from_metadata`); before its first read, they keep the starting list's.
pub fn follow_metadata_group(
    shared: &SharedNodeList,
    forwarder: &Forwarder,
    metadata: &MetadataStore,
) {
    let nodes = shared.nodes();
    forwarder.set_directory(NodeDirectory::new(
        nodes.iter().map(|node| (node.id, node.address)),
    ));
    metadata.set_replicas(&shared.metadata_replicas());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, address: &str) -> NodeAddress {
        NodeAddress {
            id,
            address: address.parse().unwrap(),
        }
    }

    #[test]
    fn the_saved_list_round_trips_and_refuses_what_it_is_not() {
        let nodes = vec![node(3, "[::1]:7300"), node(1, "127.0.0.1:7100")];
        let text = encode_node_list(&nodes);
        assert_eq!(
            text,
            "shoal-cluster-nodes 1\n1 127.0.0.1:7100\n3 [::1]:7300\n"
        );
        assert_eq!(decode_node_list(&text).unwrap(), sorted(nodes.clone()));
        for bad in [
            "",
            "shoal-cluster-nodes 2\n",
            "shoal-cluster-nodes 1\n1 127.0.0.1:7100",
            "shoal-cluster-nodes 1\n1127.0.0.1:7100\n",
            "shoal-cluster-nodes 1\nx 127.0.0.1:7100\n",
            "shoal-cluster-nodes 1\n1 localhost\n",
            "shoal-cluster-nodes 1\n2 127.0.0.1:1\n1 127.0.0.1:2\n",
        ] {
            assert!(decode_node_list(bad).is_err(), "{bad:?}");
        }
        let directory = tempfile::tempdir().unwrap();
        assert_eq!(load_node_list(directory.path()), None);
        save_node_list(directory.path(), &nodes).unwrap();
        assert_eq!(load_node_list(directory.path()), Some(sorted(nodes)));
        std::fs::write(directory.path().join(NODE_LIST_FILE), "garbage").unwrap();
        assert_eq!(load_node_list(directory.path()), None, "reported, not used");
    }

    #[test]
    fn the_saved_list_wins_over_the_flags_and_both_are_merged() {
        let flags = vec![node(2, "127.0.0.1:7200"), node(3, "127.0.0.1:7300")];
        let saved = vec![node(2, "127.0.0.1:9200"), node(6, "127.0.0.1:7600")];
        assert_eq!(
            starting_list(flags.clone(), Some(saved)),
            vec![
                node(2, "127.0.0.1:9200"),
                node(3, "127.0.0.1:7300"),
                node(6, "127.0.0.1:7600")
            ]
        );
        assert_eq!(starting_list(flags.clone(), None), flags);
        let shared = SharedNodeList::new(flags.clone());
        assert!(
            !shared.publish(flags.iter().rev().copied().collect()),
            "the same list"
        );
        let version = shared.version();
        assert!(shared.publish(vec![node(2, "127.0.0.1:7200")]));
        assert_eq!(shared.version(), version + 1);
    }
}
