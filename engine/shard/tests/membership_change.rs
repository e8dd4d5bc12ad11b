//! A partition's replica set changes while it holds data, through the requests a control plane
//! sends (`JoinPartition`, then `ChangeMembership` to the leader), on real shards and files:
//! a one-replica group moves to another node. The joiner catches up from a snapshot (the log
//! was truncated by checkpoints before it joined), the old replica is removed, the new one
//! takes over leadership and serves every item, and each request's retry after the fact is
//! answered as done (the control plane's steps are idempotent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use common::{TICK, WAIT_STEPS_MAX, shard_config};
use shoal_io::testing::run_on_test_executor;
use shoal_model::key::{KeySchema, KeyType};
use shoal_model::request::{ItemOperation, prepare as prepare_request};
use shoal_model::request_codec::encode_request;
use shoal_partition::PartitionMeta;
use shoal_partition::meta::key_schema_to_wire;
use shoal_replication::{Membership, NodeId};
use shoal_shard::{Shard, Transport};
use shoal_wire::messages::{
    BusMessage, ItemResult, MembershipChangeWire, MembershipWire, NodeError, NodeRequest,
    NodeResponse, ReplicationEnvelope, RequestFrame, ResponseFrame, ShardAddress, SnapshotChunk,
};

const PARTITION: u64 = 9;
const EPOCH: u64 = 1;
/// More than the test configuration's `checkpoint_every_slots`, so the log is truncated and the
/// joiner needs a snapshot.
const ITEMS: u64 = 150;
/// The connection replication traffic and snapshots arrive on.
const BUS: u64 = u64::MAX;
const SNAPSHOT_ROOM: usize = 8;

fn schema() -> KeySchema {
    KeySchema::partition_only("pk", KeyType::String)
}

fn item_request(operation: ItemOperation, parameters: serde_json::Value) -> NodeRequest {
    NodeRequest::Item {
        partition: PARTITION,
        epoch: EPOCH,
        request: encode_request(&prepare_request(operation, &parameters, &schema()).unwrap()),
    }
}

/// One node's transport: messages to other nodes go to a shared queue that the test's pump
/// delivers; answers to requests are recorded here.
struct Loopback {
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

struct Cluster {
    shards: BTreeMap<u64, (Rc<Shard<Loopback>>, Rc<Loopback>)>,
    next_request: Cell<u64>,
}

impl Cluster {
    async fn request(&self, node: u64, request: NodeRequest) -> NodeResponse {
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
        for _ in 0..WAIT_STEPS_MAX {
            let answered = transport
                .responses
                .borrow()
                .iter()
                .position(|frame| frame.request_id == request_id);
            if let Some(index) = answered {
                return transport.responses.borrow_mut().remove(index).response;
            }
            glommio::timer::sleep(TICK).await;
        }
        panic!("request {request_id} to node {node} was never answered");
    }

    /// Asks `node` until it answers something other than a refusal to retry (not the
    /// leader yet, busy), as a control plane does.
    async fn request_until_settled(&self, node: u64, request: NodeRequest) -> NodeResponse {
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

fn change(change: MembershipChangeWire) -> NodeRequest {
    NodeRequest::ChangeMembership {
        partition: PARTITION,
        epoch: EPOCH,
        change,
    }
}

#[test]
fn a_partition_moves_to_another_node_with_its_data() {
    let temporary = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = temporary.path().to_path_buf();
    run_on_test_executor("shard-membership-change", move || async move {
        let outbox = Rc::new(RefCell::new(VecDeque::new()));
        let mut shards = BTreeMap::new();
        for node in [1u64, 2] {
            let directory = base.join(format!("node-{node}"));
            std::fs::create_dir_all(&directory).unwrap();
            let mut config = shard_config(&directory);
            config.node = NodeId(node);
            config.peers = [1u64, 2]
                .into_iter()
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
        let snapshot_chunks_to_joiner = Rc::new(Cell::new(0u64));
        let pump = glommio::spawn_local({
            let (cluster, outbox, stop) = (cluster.clone(), outbox.clone(), stop.clone());
            let chunks = snapshot_chunks_to_joiner.clone();
            async move {
                while !stop.get() {
                    let batch: Vec<_> = outbox.borrow_mut().drain(..).collect();
                    for (node, message) in batch {
                        if node == 2 && matches!(message, BusMessage::Snapshot(_)) {
                            chunks.set(chunks.get() + 1);
                        }
                        if let Some((shard, _)) = cluster.shards.get(&node) {
                            shard.dispatch(BUS, message).await;
                        }
                    }
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        });

        let meta = PartitionMeta {
            partition: PARTITION,
            epoch: EPOCH,
            key_schema: schema(),
            membership: Membership::new([NodeId(1)], []),
        };
        assert_eq!(
            cluster.request(1, meta.to_request()).await,
            NodeResponse::Created
        );
        for index in 0..ITEMS {
            let put = item_request(
                ItemOperation::PutItem,
                serde_json::json!({"Item": {"pk": {"S": format!("k{index}")}, "n": {"N": index.to_string()}}}),
            );
            let answer = cluster.request_until_settled(1, put).await;
            assert!(matches!(answer, NodeResponse::Item { .. }), "{answer:?}");
        }

        let join = NodeRequest::JoinPartition {
            partition: PARTITION,
            epoch: EPOCH,
            key_schema: key_schema_to_wire(&schema()),
        };
        assert_eq!(
            cluster.request(2, join.clone()).await,
            NodeResponse::Created
        );
        // Joining again is answered the same (a control plane retrying the step).
        assert_eq!(cluster.request(2, join).await, NodeResponse::Created);
        // The joiner is not a member: it does not lead, and refuses to serve.
        let get = |index: u64, consistent: bool| {
            item_request(
                ItemOperation::GetItem,
                serde_json::json!({"Key": {"pk": {"S": format!("k{index}")}}, "ConsistentRead": consistent}),
            )
        };
        assert!(matches!(
            cluster.request(2, get(0, true)).await,
            NodeResponse::Error(NodeError::NotLeader { .. })
        ));

        let added = cluster
            .request_until_settled(1, change(MembershipChangeWire::AddFullReplica(2)))
            .await;
        let NodeResponse::Membership {
            membership,
            commit_slot,
            ..
        } = added
        else {
            panic!("adding a replica got {added:?}");
        };
        assert_eq!(
            membership,
            MembershipWire {
                full_replicas: vec![1, 2],
                log_replicas: vec![]
            }
        );
        // Asked again, the leader reports progress until the new member has every slot
        // committed when it was added.
        let mut caught_up = false;
        for _ in 0..WAIT_STEPS_MAX {
            let watched = cluster
                .request_until_settled(1, change(MembershipChangeWire::AddFullReplica(2)))
                .await;
            let NodeResponse::Membership { followers, .. } = watched else {
                panic!("watching the new member got {watched:?}");
            };
            if followers
                .iter()
                .any(|follower| follower.node == 2 && follower.match_slot >= commit_slot)
            {
                caught_up = true;
                break;
            }
            glommio::timer::sleep(TICK).await;
        }
        assert!(caught_up, "the new member never caught up");
        assert!(
            snapshot_chunks_to_joiner.get() > 0,
            "the joiner caught up without a snapshot: the test no longer covers one"
        );

        let removed = cluster
            .request_until_settled(1, change(MembershipChangeWire::Remove(1)))
            .await;
        // The old leader answers once the removal is applied, from the membership it committed
        // (it steps down right after, so it reports no follower).
        match removed {
            NodeResponse::Membership {
                membership,
                followers,
                ..
            } => {
                assert_eq!(membership.full_replicas, vec![2]);
                assert!(followers.is_empty(), "{followers:?}");
            }
            other => panic!("removing the old replica got {other:?}"),
        }
        // The new replica leads alone and serves every item written before it joined.
        for index in 0..ITEMS {
            let answer = cluster.request_until_settled(2, get(index, true)).await;
            let NodeResponse::Item {
                result: ItemResult::Get { item: Some(item) },
                ..
            } = answer
            else {
                panic!("item {index} at the new replica: {answer:?}");
            };
            let item = shoal_model::encoding::decode_item(&item).unwrap();
            assert!(item.contains_key("n"), "{item:?}");
        }
        // The removal is done: asked again, the new leader says so.
        let again = cluster
            .request_until_settled(2, change(MembershipChangeWire::Remove(1)))
            .await;
        assert!(
            matches!(&again, NodeResponse::Membership { membership, .. } if membership.full_replicas == vec![2]),
            "{again:?}"
        );
        // It takes writes alone, and the old node's replica can be deleted.
        let put = item_request(
            ItemOperation::PutItem,
            serde_json::json!({"Item": {"pk": {"S": "after"}}}),
        );
        assert!(matches!(
            cluster.request_until_settled(2, put).await,
            NodeResponse::Item { .. }
        ));
        assert_eq!(
            cluster
                .request(
                    1,
                    NodeRequest::DeletePartition {
                        partition: PARTITION,
                        epoch: EPOCH
                    }
                )
                .await,
            NodeResponse::Deleted
        );
        stop.set(true);
        pump.await;
    });
}
