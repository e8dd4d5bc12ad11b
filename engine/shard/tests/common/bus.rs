//! Several nodes' shards on one executor, joined by a bus the test pumps: for tests of what
//! replicas do together (membership changes, splits).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::rc::Rc;

use shoal_replication::NodeId;
use shoal_shard::{Shard, Transport};
use shoal_wire::messages::{
    BusMessage, NodeError, NodeRequest, NodeResponse, ReplicationEnvelope, RequestFrame,
    ResponseFrame, ShardAddress, SnapshotChunk,
};

use super::{TICK, WAIT_STEPS_MAX, shard_config};

/// The connection replication traffic and snapshots arrive on.
pub const BUS: u64 = u64::MAX;
const SNAPSHOT_ROOM: usize = 8;

/// One node's transport: messages to other nodes go to a shared queue that the test's pump
/// delivers; answers to requests are recorded here.
pub struct Loopback {
    outbox: Rc<RefCell<VecDeque<(u64, BusMessage)>>>,
    responses: RefCell<Vec<ResponseFrame>>,
}

impl Transport for Loopback {
    type Connection = u64;
    fn send_replication(&self, to: ShardAddress, envelope: ReplicationEnvelope) {
        self.outbox
            .borrow_mut()
            .push_back((to.node, BusMessage::Replication(vec![envelope])));
    }
    fn snapshot_room(&self, _to: ShardAddress) -> usize {
        SNAPSHOT_ROOM
    }
    fn send_snapshot(&self, to: ShardAddress, chunk: SnapshotChunk) {
        self.outbox
            .borrow_mut()
            .push_back((to.node, BusMessage::Snapshot(chunk)));
    }
    fn respond(&self, connection: u64, response: ResponseFrame) {
        // Nothing answers on the bus connection; only the test's requests are recorded.
        if connection != BUS {
            self.responses.borrow_mut().push(response);
        }
    }
}

pub struct Cluster {
    pub shards: BTreeMap<u64, (Rc<Shard<Loopback>>, Rc<Loopback>)>,
    pub next_request: Cell<u64>,
}

impl Cluster {
    pub async fn request(&self, node: u64, request: NodeRequest) -> NodeResponse {
        let request_id = self.next_request.get();
        self.next_request.set(request_id + 1);
        let (shard, transport) = &self.shards[&node];
        shard
            .dispatch(
                0,
                BusMessage::Request(RequestFrame {
                    request_id,
                    request,
                }),
            )
            .await;
        super::recorded_answer(&transport.responses, request_id)
            .await
            .unwrap_or_else(|| panic!("request {request_id} to node {node} was never answered"))
    }

    /// Asks `node` until it answers something other than a refusal to retry (not the
    /// leader yet, busy), as a control plane does.
    pub async fn request_until_settled(&self, node: u64, request: NodeRequest) -> NodeResponse {
        for _ in 0..WAIT_STEPS_MAX {
            match self.request(node, request.clone()).await {
                NodeResponse::Error(
                    NodeError::NotLeader { .. }
                    | NodeError::Busy { .. }
                    | NodeError::NotApplied { .. },
                ) => glommio::timer::sleep(TICK).await,
                other => return other,
            }
        }
        panic!("node {node} kept refusing {request:?}");
    }
}

/// Some nodes' shards (one each) on one executor, joined by a pump that delivers their messages,
/// and a count of the snapshot chunks each received.
pub struct Harness {
    pub cluster: Rc<Cluster>,
    stop: Rc<Cell<bool>>,
    pump: glommio::Task<()>,
    pub snapshot_chunks: Rc<RefCell<BTreeMap<u64, u64>>>,
}

impl Harness {
    /// Nodes 1 and 2.
    pub async fn start(base: &Path) -> Harness {
        Harness::start_nodes(base, &[1, 2]).await
    }

    /// The nodes `nodes`, each with its files under `base/node-N`.
    pub async fn start_nodes(base: &Path, nodes: &[u64]) -> Harness {
        let outbox = Rc::new(RefCell::new(VecDeque::new()));
        let mut shards = BTreeMap::new();
        for &node in nodes {
            let directory = base.join(format!("node-{node}"));
            std::fs::create_dir_all(&directory).unwrap();
            let mut config = shard_config(&directory);
            config.node = NodeId(node);
            config.peers = nodes
                .iter()
                .copied()
                .filter(|peer| *peer != node)
                .map(NodeId)
                .collect();
            let transport = Rc::new(Loopback {
                outbox: outbox.clone(),
                responses: RefCell::new(Vec::new()),
            });
            let shard = Shard::start(config, transport.clone()).await.unwrap();
            shards.insert(node, (shard, transport));
        }
        let cluster = Rc::new(Cluster {
            shards,
            next_request: Cell::new(1),
        });
        // The bus: delivers every queued message, until the test ends.
        let stop = Rc::new(Cell::new(false));
        let snapshot_chunks = Rc::new(RefCell::new(BTreeMap::new()));
        let pump = glommio::spawn_local({
            let (cluster, outbox, stop) = (cluster.clone(), outbox.clone(), stop.clone());
            let chunks = snapshot_chunks.clone();
            async move {
                while !stop.get() {
                    let batch: Vec<_> = outbox.borrow_mut().drain(..).collect();
                    for (node, message) in batch {
                        if matches!(message, BusMessage::Snapshot(_)) {
                            *chunks.borrow_mut().entry(node).or_insert(0) += 1;
                        }
                        if let Some((shard, _)) = cluster.shards.get(&node) {
                            shard.dispatch(BUS, message).await;
                        }
                    }
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        });
        Harness {
            cluster,
            stop,
            pump,
            snapshot_chunks,
        }
    }

    pub async fn stop(self) {
        self.stop.set(true);
        self.pump.await;
    }
}
