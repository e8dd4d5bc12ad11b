//! A partition splits at a hash through `NodeRequest::SplitPartition`, on three nodes' real shards
//! and files (engine/partition src/replica/split.rs):
//! - every node builds both children from its own replica's tree, each child holds exactly the
//!   parent's items on its side of the cut (and refuses the other side's keys), elects, serves
//!   them and takes writes, and the parent refuses everything with the children's epoch;
//! - asking again for the split is answered as done, and another split of the same parent is
//!   refused, as is a split of a partition holding a stream's keys (void), and one that names
//!   the parent as a child (malformed);
//! - a node that was down during the split gets the frozen parent by snapshot when it returns,
//!   builds both children from it, and their logs bring it every write made since;
//! - after a restart the children come back with their items, and a child deleted from a node
//!   is never built there again from the parent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::bus::{Cluster, Harness};
use common::{TICK, WAIT_STEPS_MAX};
use shoal_io::testing::run_on_test_executor;
use shoal_model::AttributeValue;
use shoal_model::key::{KeySchema, KeyType, partition_hash};
use shoal_model::request::{ItemOperation, prepare as prepare_request};
use shoal_model::request_codec::encode_request;
use shoal_partition::PartitionMeta;
use shoal_replication::{Membership, NodeId};
use shoal_wire::messages::{
    ItemResult, NodeError, NodeRequest, NodeResponse, ReplicaRole, SplitChildWire,
};

const PARENT: u64 = 9;
const PARENT_EPOCH: u64 = 1;
const LEFT: SplitChildWire = SplitChildWire {
    partition: 10,
    epoch: 2,
};
const RIGHT: SplitChildWire = SplitChildWire {
    partition: 11,
    epoch: 2,
};
/// The cut: the middle of the hash space.
const AT_HASH: u64 = 1 << 63;
const NODES: [u64; 3] = [1, 2, 3];
/// More than the test configuration's `checkpoint_every_slots`, so the parent has checkpointed
/// and truncated its log before it splits.
const ITEMS: u64 = 150;

fn schema() -> KeySchema {
    KeySchema::partition_only("pk", KeyType::String)
}

fn pk(index: u64) -> String {
    format!("k{index}")
}

/// The child that owns item `index`.
fn owner(index: u64) -> SplitChildWire {
    let hash = partition_hash(&AttributeValue::String(pk(index))).unwrap();
    if hash < AT_HASH { LEFT } else { RIGHT }
}

fn item_request(
    partition: u64,
    epoch: u64,
    operation: ItemOperation,
    parameters: serde_json::Value,
) -> NodeRequest {
    NodeRequest::Item {
        partition,
        epoch,
        request: encode_request(&prepare_request(operation, &parameters, &schema()).unwrap()),
    }
}

fn put(partition: u64, epoch: u64, index: u64, value: u64) -> NodeRequest {
    item_request(
        partition,
        epoch,
        ItemOperation::PutItem,
        serde_json::json!({"Item": {"pk": {"S": pk(index)}, "n": {"N": value.to_string()}}}),
    )
}

fn get(partition: u64, epoch: u64, index: u64) -> NodeRequest {
    item_request(
        partition,
        epoch,
        ItemOperation::GetItem,
        serde_json::json!({"Key": {"pk": {"S": pk(index)}}, "ConsistentRead": true}),
    )
}

fn split_request() -> NodeRequest {
    NodeRequest::SplitPartition {
        partition: PARENT,
        epoch: PARENT_EPOCH,
        at_hash: AT_HASH,
        left: LEFT,
        right: RIGHT,
    }
}

/// The node whose replica of `partition` leads with its lease, once there is one.
async fn leader(cluster: &Cluster, partition: u64) -> u64 {
    for _ in 0..WAIT_STEPS_MAX {
        for (node, (shard, _)) in &cluster.shards {
            let leads = shard.statuses().iter().any(|status| {
                status.partition == partition && status.role == ReplicaRole::LeaderWithLease
            });
            if leads {
                return *node;
            }
        }
        glommio::timer::sleep(TICK).await;
    }
    panic!("partition {partition} never elected a leader");
}

/// Sends `request` to the leader of `partition` until it is served (a leader may step down, a
/// new one may not be ready yet).
async fn at_leader(cluster: &Cluster, partition: u64, request: NodeRequest) -> NodeResponse {
    for _ in 0..WAIT_STEPS_MAX {
        let node = leader(cluster, partition).await;
        match cluster.request(node, request.clone()).await {
            NodeResponse::Error(NodeError::NotLeader { .. } | NodeError::Busy { .. }) => {
                glommio::timer::sleep(TICK).await;
            }
            other => return other,
        }
    }
    panic!("partition {partition} kept refusing {request:?}");
}

/// The value of item `index` read strongly from `child`, `None` if the child does not hold it.
async fn read(cluster: &Cluster, child: SplitChildWire, index: u64) -> Option<u64> {
    let answer = at_leader(
        cluster,
        child.partition,
        get(child.partition, child.epoch, index),
    )
    .await;
    let NodeResponse::Item {
        result: ItemResult::Get { item },
        ..
    } = answer
    else {
        panic!("item {index} at partition {}: {answer:?}", child.partition);
    };
    item.map(|item| {
        let item = shoal_model::encoding::decode_item(&item).unwrap();
        let Some(AttributeValue::Number(number)) = item.get("n") else {
            panic!("{item:?}");
        };
        number.to_string().parse().unwrap()
    })
}

/// Every item is in its own child with `value(index)`, and the other child refuses it: it
/// owns the other half of the parent's hashes (its range record), so a request routed with a
/// map older than the split is sent back to be routed again, never answered "no such item".
async fn check_items(cluster: &Cluster, items: std::ops::Range<u64>, value: impl Fn(u64) -> u64) {
    for index in items {
        let home = owner(index);
        let other = if home == LEFT { RIGHT } else { LEFT };
        assert_eq!(
            read(cluster, home, index).await,
            Some(value(index)),
            "item {index} in partition {}",
            home.partition
        );
        let elsewhere = at_leader(
            cluster,
            other.partition,
            get(other.partition, other.epoch, index),
        )
        .await;
        assert_eq!(
            elsewhere,
            NodeResponse::Error(NodeError::StaleEpoch {
                partition: other.partition,
                current_epoch: other.epoch,
            }),
            "item {index} asked of partition {}",
            other.partition
        );
    }
}

/// Waits until every node of `nodes` hosts both children and their item counts agree;
/// returns the counts.
async fn children_everywhere(cluster: &Cluster, nodes: &[u64]) -> BTreeMap<u64, u64> {
    for _ in 0..WAIT_STEPS_MAX {
        let mut counts: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (shard, _) in cluster.shards.values() {
            for status in shard.statuses() {
                if status.partition == LEFT.partition || status.partition == RIGHT.partition {
                    counts
                        .entry(status.partition)
                        .or_default()
                        .push(status.item_count);
                }
            }
        }
        let complete = counts.len() == 2
            && counts.values().all(|per_node| {
                per_node.len() == nodes.len() && per_node.iter().all(|count| *count == per_node[0])
            });
        if complete {
            return counts
                .into_iter()
                .map(|(partition, per_node)| (partition, per_node[0]))
                .collect();
        }
        glommio::timer::sleep(TICK).await;
    }
    let statuses: Vec<_> = cluster
        .shards
        .iter()
        .map(|(node, (shard, _))| (*node, shard.statuses()))
        .collect();
    panic!("the children never appeared with equal items on every node: {statuses:#?}");
}

/// The parent refuses items with the children's epoch at every node of `nodes`.
async fn parent_refuses(cluster: &Cluster, nodes: &[u64]) {
    for &node in nodes {
        let answer = cluster.request(node, get(PARENT, PARENT_EPOCH, 0)).await;
        assert_eq!(
            answer,
            NodeResponse::Error(NodeError::StaleEpoch {
                partition: PARENT,
                current_epoch: LEFT.epoch,
            }),
            "the parent at node {node}"
        );
    }
}

fn create_parent() -> NodeRequest {
    PartitionMeta {
        partition: PARENT,
        epoch: PARENT_EPOCH,
        key_schema: schema(),
        membership: Membership::new(NODES.map(NodeId), []),
    }
    .to_request()
}

fn expected_counts() -> BTreeMap<u64, u64> {
    let mut counts = BTreeMap::new();
    for index in 0..ITEMS {
        *counts.entry(owner(index).partition).or_insert(0) += 1;
    }
    counts
}

/// The value of item `index` as `node`'s replica of its child has it, read eventually
/// consistent there, once that replica has applied what its leader committed.
async fn read_at(cluster: &Cluster, node: u64, index: u64) -> Option<u64> {
    let child = owner(index);
    let committed = leader_commit(cluster, child.partition).await;
    for _ in 0..WAIT_STEPS_MAX {
        let (shard, _) = &cluster.shards[&node];
        let applied = shard
            .statuses()
            .iter()
            .find(|status| status.partition == child.partition)
            .map_or(0, |status| status.applied_slot);
        if applied >= committed {
            break;
        }
        glommio::timer::sleep(TICK).await;
    }
    let eventual = item_request(
        child.partition,
        child.epoch,
        ItemOperation::GetItem,
        serde_json::json!({"Key": {"pk": {"S": pk(index)}}}),
    );
    let answer = cluster.request(node, eventual).await;
    let NodeResponse::Item {
        result: ItemResult::Get { item },
        ..
    } = answer
    else {
        panic!("item {index} at node {node}: {answer:?}");
    };
    item.map(|item| {
        let item = shoal_model::encoding::decode_item(&item).unwrap();
        let Some(AttributeValue::Number(number)) = item.get("n") else {
            panic!("{item:?}");
        };
        number.to_string().parse().unwrap()
    })
}

/// The commit slot of `partition`'s leader.
async fn leader_commit(cluster: &Cluster, partition: u64) -> u64 {
    let node = leader(cluster, partition).await;
    let (shard, _) = &cluster.shards[&node];
    shard
        .statuses()
        .iter()
        .find(|status| status.partition == partition)
        .map_or(0, |status| status.commit_slot)
}

#[test]
fn a_partition_splits_into_children_that_hold_its_items_on_every_replica() {
    let temporary = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = temporary.path().to_path_buf();
    let (first, second, third) = (base.clone(), base.clone(), base.clone());
    let expected = expected_counts();
    assert!(
        expected.len() == 2 && expected.values().all(|count| *count > ITEMS / 4),
        "the items fall on both sides of the cut: {expected:?}"
    );
    let expected_second = expected.clone();
    run_on_test_executor("shard-split-parent", move || async move {
        let harness = Harness::start_nodes(&first, &NODES).await;
        let cluster = harness.cluster.clone();
        for node in NODES {
            assert_eq!(
                cluster.request(node, create_parent()).await,
                NodeResponse::Created
            );
        }
        harness.stop().await;
    });
    // Node 3 is down from here until the split is done: nodes 1 and 2 are a majority of the
    // parent, and of each child.
    let up = [1, 2];
    run_on_test_executor("shard-split", move || async move {
        let harness = Harness::start_nodes(&base, &up).await;
        let cluster = harness.cluster.clone();
        for index in 0..ITEMS {
            let answer = at_leader(&cluster, PARENT, put(PARENT, PARENT_EPOCH, index, index)).await;
            assert!(matches!(answer, NodeResponse::Item { .. }), "{answer:?}");
        }
        // A split naming the parent as a child is refused before anything is proposed.
        let malformed = NodeRequest::SplitPartition {
            partition: PARENT,
            epoch: PARENT_EPOCH,
            at_hash: AT_HASH,
            left: SplitChildWire {
                partition: PARENT,
                epoch: 2,
            },
            right: RIGHT,
        };
        assert!(
            matches!(
                at_leader(&cluster, PARENT, malformed).await,
                NodeResponse::Error(NodeError::Malformed { .. })
            ),
            "a split that reuses the parent's id"
        );
        assert_eq!(
            at_leader(&cluster, PARENT, split_request()).await,
            NodeResponse::Created
        );
        // Asked again (a control plane that lost the answer): done.
        assert_eq!(
            at_leader(&cluster, PARENT, split_request()).await,
            NodeResponse::Created
        );
        // Another split of the same parent is refused, never applied.
        let other = NodeRequest::SplitPartition {
            partition: PARENT,
            epoch: PARENT_EPOCH,
            at_hash: AT_HASH / 2,
            left: LEFT,
            right: RIGHT,
        };
        assert!(
            matches!(
                at_leader(&cluster, PARENT, other).await,
                NodeResponse::Error(NodeError::NotApplied { .. })
            ),
            "a second split"
        );
        assert_eq!(children_everywhere(&cluster, &up).await, expected);
        // Every replica up applied it, so every one answers so.
        for node in up {
            assert_eq!(
                cluster.request(node, split_request()).await,
                NodeResponse::Created,
                "asked again at node {node}"
            );
        }
        parent_refuses(&cluster, &up).await;
        check_items(&cluster, 0..ITEMS, |index| index).await;
        // The children take writes, each on its own side.
        write_children(&cluster, |index| index + 1000).await;
        check_items(&cluster, 0..ITEMS, |index| index + 1000).await;
        harness.stop().await;
    });
    // Node 3 returns: its parent replica is far behind a truncated log, so it gets the frozen
    // parent by snapshot, builds both children from it, and their logs bring it the writes
    // made since the split.
    run_on_test_executor("shard-split-lagging-node", move || async move {
        let harness = Harness::start_nodes(&second, &NODES).await;
        let cluster = harness.cluster.clone();
        for (node, (shard, _)) in &cluster.shards {
            assert!(shard.recovery_failures().is_empty(), "node {node}");
        }
        assert_eq!(children_everywhere(&cluster, &NODES).await, expected_second);
        parent_refuses(&cluster, &NODES).await;
        assert!(
            harness
                .snapshot_chunks
                .borrow()
                .get(&3)
                .copied()
                .unwrap_or(0)
                > 0,
            "node 3 caught up without a snapshot: the test no longer covers one"
        );
        for index in 0..ITEMS {
            assert_eq!(
                read_at(&cluster, 3, index).await,
                Some(index + 1000),
                "item {index} at node 3"
            );
        }
        // Node 3's right child is deleted (as a move away would end).
        let delete = NodeRequest::DeletePartition {
            partition: RIGHT.partition,
            epoch: RIGHT.epoch,
        };
        assert_eq!(cluster.request(3, delete).await, NodeResponse::Deleted);
        harness.stop().await;
    });
    // After a restart node 3 does not build it again from the parent: a replica built anew
    // from the split's slot would be a member that forgot what it promised and accepted.
    run_on_test_executor("shard-split-restarted", move || async move {
        let harness = Harness::start_nodes(&third, &NODES).await;
        let cluster = harness.cluster.clone();
        for (node, (shard, _)) in &cluster.shards {
            assert!(shard.recovery_failures().is_empty(), "node {node}");
        }
        parent_refuses(&cluster, &NODES).await;
        check_items(&cluster, 0..ITEMS, |index| index + 1000).await;
        // The parent's replica at node 3 has long applied its split (it serves nothing).
        let (shard_3, _) = &cluster.shards[&3];
        for _ in 0..20 {
            glommio::timer::sleep(TICK).await;
        }
        let hosted: Vec<u64> = shard_3
            .statuses()
            .iter()
            .map(|status| status.partition)
            .collect();
        assert!(
            hosted.contains(&LEFT.partition) && !hosted.contains(&RIGHT.partition),
            "node 3 hosts {hosted:?}"
        );
        harness.stop().await;
    });
}

/// Writes every item again at its child, with `value(index)`.
async fn write_children(cluster: &Cluster, value: impl Fn(u64) -> u64) {
    for index in 0..ITEMS {
        let child = owner(index);
        let answer = at_leader(
            cluster,
            child.partition,
            put(child.partition, child.epoch, index, value(index)),
        )
        .await;
        assert!(matches!(answer, NodeResponse::Item { .. }), "{answer:?}");
    }
}

/// A partition holding a stream's keys cannot be split yet: the split is refused as not
/// applied, and the partition goes on serving.
#[test]
fn a_split_of_a_partition_with_a_stream_is_refused() {
    let temporary = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = temporary.path().to_path_buf();
    run_on_test_executor("shard-split-refused", move || async move {
        let harness = Harness::start_nodes(&base, &NODES).await;
        let cluster = harness.cluster.clone();
        for node in NODES {
            assert_eq!(
                cluster.request(node, create_parent()).await,
                NodeResponse::Created
            );
        }
        let configure = NodeRequest::Item {
            partition: PARENT,
            epoch: PARENT_EPOCH,
            request: encode_request(&shoal_model::request::PreparedRequest::StreamConfigure {
                stream: 1,
                view: Some(shoal_model::stream::ViewType::NewImage),
            }),
        };
        let answer = at_leader(&cluster, PARENT, configure).await;
        assert!(matches!(answer, NodeResponse::Item { .. }), "{answer:?}");
        let answer = at_leader(&cluster, PARENT, put(PARENT, PARENT_EPOCH, 1, 1)).await;
        assert!(matches!(answer, NodeResponse::Item { .. }), "{answer:?}");
        let refused = at_leader(&cluster, PARENT, split_request()).await;
        assert!(
            matches!(&refused, NodeResponse::Error(NodeError::NotApplied { message }) if message.contains("stream")),
            "{refused:?}"
        );
        let answer = at_leader(&cluster, PARENT, get(PARENT, PARENT_EPOCH, 1)).await;
        assert!(
            matches!(
                answer,
                NodeResponse::Item {
                    result: ItemResult::Get { item: Some(_) },
                    ..
                }
            ),
            "{answer:?}"
        );
        for (shard, _) in cluster.shards.values() {
            assert!(
                shard
                    .statuses()
                    .iter()
                    .all(|status| status.partition == PARENT),
                "no child was built"
            );
        }
        harness.stop().await;
    });
}
