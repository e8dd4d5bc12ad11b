//! A partition's replica set changes while it holds data, through the requests a control plane
//! sends (`JoinPartition`, then `ChangeMembership` to the leader, then `DeletePartition`), on
//! real shards and files:
//! - a one-replica group moves to another node. The joiner catches up from a snapshot (the
//!   log was truncated by checkpoints before it joined), the old replica is removed, the new
//!   one takes over leadership and serves every item, and each request's retry after the fact
//!   is answered as done (the control plane's steps are idempotent);
//! - the group moves back to the node it left, whose WAL still holds the first replica's
//!   records, and both nodes restart: the replica there recovers only its own records (the
//!   creation record), with every item and the membership it was added to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::bus::{Cluster, Harness};
use common::{TICK, WAIT_STEPS_MAX};
use shoal_io::testing::run_on_test_executor;
use shoal_model::key::{KeySchema, KeyType};
use shoal_model::request::{ItemOperation, prepare as prepare_request};
use shoal_model::request_codec::encode_request;
use shoal_partition::PartitionMeta;
use shoal_partition::meta::key_schema_to_wire;
use shoal_replication::{Membership, NodeId};
use shoal_wire::messages::{
    ItemResult, MembershipChangeWire, MembershipWire, NodeError, NodeRequest, NodeResponse,
};

const PARTITION: u64 = 9;
const EPOCH: u64 = 1;
/// More than the test configuration's `checkpoint_every_slots`, so the log is truncated and the
/// joiner needs a snapshot.
const ITEMS: u64 = 150;

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

fn change(change: MembershipChangeWire) -> NodeRequest {
    NodeRequest::ChangeMembership {
        partition: PARTITION,
        epoch: EPOCH,
        change,
    }
}

fn get(index: u64) -> NodeRequest {
    item_request(
        ItemOperation::GetItem,
        serde_json::json!({"Key": {"pk": {"S": format!("k{index}")}}, "ConsistentRead": true}),
    )
}

async fn write_items(cluster: &Cluster, node: u64, items: std::ops::Range<u64>) {
    for index in items {
        let put = item_request(
            ItemOperation::PutItem,
            serde_json::json!({"Item": {"pk": {"S": format!("k{index}")}, "n": {"N": index.to_string()}}}),
        );
        let answer = cluster.request_until_settled(node, put).await;
        assert!(matches!(answer, NodeResponse::Item { .. }), "{answer:?}");
    }
}

/// Strong reads at `node` (its replica leads) find every item, with its value.
async fn read_items(cluster: &Cluster, node: u64, items: std::ops::Range<u64>) {
    for index in items {
        let answer = cluster.request_until_settled(node, get(index)).await;
        let NodeResponse::Item {
            result: ItemResult::Get { item: Some(item) },
            ..
        } = answer
        else {
            panic!("item {index} at node {node}: {answer:?}");
        };
        let item = shoal_model::encoding::decode_item(&item).unwrap();
        assert_eq!(
            item.get("n"),
            Some(&shoal_model::AttributeValue::Number(
                shoal_model::number::Number::parse(&index.to_string()).unwrap()
            )),
            "{item:?}"
        );
    }
}

/// Moves the partition's only replica from `from` to `to` as a control plane would, checking
/// each step's answers (each step asked twice where a retry must be answered as done).
async fn move_replica(cluster: &Cluster, from: u64, to: u64) {
    join(cluster, to).await;
    add_and_catch_up(cluster, from, to).await;
    remove_and_delete(cluster, from, to).await;
}

/// An empty replica on `to` that is not a member.
async fn join(cluster: &Cluster, to: u64) {
    let join = NodeRequest::JoinPartition {
        partition: PARTITION,
        epoch: EPOCH,
        key_schema: key_schema_to_wire(&schema()),
    };
    assert_eq!(
        cluster.request(to, join.clone()).await,
        NodeResponse::Created
    );
    // Joining again is answered the same (a control plane retrying the step).
    assert_eq!(cluster.request(to, join).await, NodeResponse::Created);
    // The joiner is not a member: it does not lead, and refuses to serve.
    assert!(matches!(
        cluster.request(to, get(0)).await,
        NodeResponse::Error(NodeError::NotLeader { .. })
    ));
}

/// `to` added at `from`'s leader, then watched until it holds every slot committed when it
/// was added.
async fn add_and_catch_up(cluster: &Cluster, from: u64, to: u64) {
    let added = cluster
        .request_until_settled(from, change(MembershipChangeWire::AddFullReplica(to)))
        .await;
    let NodeResponse::Membership {
        membership,
        commit_slot,
        ..
    } = added
    else {
        panic!("adding a replica got {added:?}");
    };
    let mut both = vec![from, to];
    both.sort_unstable();
    assert_eq!(
        membership,
        MembershipWire {
            full_replicas: both,
            log_replicas: vec![]
        }
    );
    let mut caught_up = false;
    for _ in 0..WAIT_STEPS_MAX {
        let watched = cluster
            .request_until_settled(from, change(MembershipChangeWire::AddFullReplica(to)))
            .await;
        let NodeResponse::Membership { followers, .. } = watched else {
            panic!("watching the new member got {watched:?}");
        };
        if followers
            .iter()
            .any(|follower| follower.node == to && follower.match_slot >= commit_slot)
        {
            caught_up = true;
            break;
        }
        glommio::timer::sleep(TICK).await;
    }
    assert!(caught_up, "the new member never caught up");
}

/// `from` removed by its own leadership, then its replica deleted.
async fn remove_and_delete(cluster: &Cluster, from: u64, to: u64) {
    let removed = cluster
        .request_until_settled(from, change(MembershipChangeWire::Remove(from)))
        .await;
    // The old leader answers once the removal is applied, from the membership it committed (it
    // steps down right after, so it reports no follower).
    match removed {
        NodeResponse::Membership {
            membership,
            followers,
            ..
        } => {
            assert_eq!(membership.full_replicas, vec![to]);
            assert!(followers.is_empty(), "{followers:?}");
        }
        other => panic!("removing the old replica got {other:?}"),
    }
    // The removal is done: asked again, the new leader says so.
    let again = cluster
        .request_until_settled(to, change(MembershipChangeWire::Remove(from)))
        .await;
    assert!(
        matches!(&again, NodeResponse::Membership { membership, .. } if membership.full_replicas == vec![to]),
        "{again:?}"
    );
    let delete = NodeRequest::DeletePartition {
        partition: PARTITION,
        epoch: EPOCH,
    };
    assert_eq!(cluster.request(from, delete).await, NodeResponse::Deleted);
}

fn create_on_node_1() -> NodeRequest {
    PartitionMeta {
        partition: PARTITION,
        epoch: EPOCH,
        key_schema: schema(),
        membership: Membership::new([NodeId(1)], []),
    }
    .to_request()
}

#[test]
fn a_partition_moves_to_another_node_with_its_data() {
    let temporary = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = temporary.path().to_path_buf();
    run_on_test_executor("shard-membership-change", move || async move {
        let harness = Harness::start(&base).await;
        let cluster = harness.cluster.clone();
        assert_eq!(
            cluster.request(1, create_on_node_1()).await,
            NodeResponse::Created
        );
        write_items(&cluster, 1, 0..ITEMS).await;
        move_replica(&cluster, 1, 2).await;
        assert!(
            harness
                .snapshot_chunks
                .borrow()
                .get(&2)
                .copied()
                .unwrap_or(0)
                > 0,
            "the joiner caught up without a snapshot: the test no longer covers one"
        );
        // The new replica leads alone, serves every item written before it joined, and takes
        // writes.
        read_items(&cluster, 2, 0..ITEMS).await;
        write_items(&cluster, 2, ITEMS..ITEMS + 10).await;
        harness.stop().await;
    });
}

#[test]
fn a_partition_moved_away_and_back_recovers_only_its_own_records() {
    let temporary = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = temporary.path().to_path_buf();
    let (second, third) = (base.clone(), base.clone());
    run_on_test_executor("shard-move-and-back", move || async move {
        let harness = Harness::start(&base).await;
        let cluster = harness.cluster.clone();
        assert_eq!(
            cluster.request(1, create_on_node_1()).await,
            NodeResponse::Created
        );
        write_items(&cluster, 1, 0..ITEMS).await;
        move_replica(&cluster, 1, 2).await;
        write_items(&cluster, 2, ITEMS..2 * ITEMS).await;
        // Back towards node 1, whose WAL still holds the first replica's records: an empty
        // replica joins there, and the nodes stop before it is added.
        join(&cluster, 1).await;
        harness.stop().await;
    });
    // Node 1 recovers the joiner from its own records only (there are none but its creation):
    // the first replica's promises and entries would make it a member with a log it never had.
    run_on_test_executor("shard-move-and-back-restarted", move || async move {
        let harness = Harness::start(&second).await;
        let cluster = harness.cluster.clone();
        let (shard_1, _) = &cluster.shards[&1];
        assert!(shard_1.recovery_failures().is_empty());
        let joiner = shard_1
            .statuses()
            .into_iter()
            .find(|status| status.partition == PARTITION)
            .expect("the joiner is recovered");
        assert_eq!(
            (joiner.commit_slot, joiner.applied_slot),
            (0, 0),
            "{joiner:?}"
        );
        add_and_catch_up(&cluster, 2, 1).await;
        remove_and_delete(&cluster, 2, 1).await;
        write_items(&cluster, 1, 2 * ITEMS..2 * ITEMS + 10).await;
        read_items(&cluster, 1, 0..2 * ITEMS + 10).await;
        harness.stop().await;
    });
    // And once more: node 1 leads alone with every item; node 2 hosts nothing.
    run_on_test_executor("shard-move-and-back-restarted-again", move || async move {
        let harness = Harness::start(&third).await;
        let cluster = harness.cluster.clone();
        let (shard_2, _) = &cluster.shards[&2];
        assert!(
            shard_2
                .statuses()
                .iter()
                .all(|status| status.partition != PARTITION),
            "node 2 still hosts the partition it was removed from"
        );
        read_items(&cluster, 1, 0..2 * ITEMS + 10).await;
        let membership = cluster
            .request_until_settled(1, change(MembershipChangeWire::AddFullReplica(1)))
            .await;
        assert!(
            matches!(&membership, NodeResponse::Membership { membership, .. } if membership.full_replicas == vec![1]),
            "{membership:?}"
        );
        harness.stop().await;
    });
}
