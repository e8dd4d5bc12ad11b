//! A quiesced leader (ReplicaOptions::quiesce) answers whatever comes after its idle spell as
//! an awake one would: a strong read with the item (held for one heartbeat round while the
//! lease, which lapsed in quiescence, is renewed), a write whose condition fails with
//! ConditionalCheckFailedException once the router asks again (the first try finds no lease,
//! is answered NotLeader and wakes the leader). Before the refusal woke the leader, it got
//! NotLeader from the leader itself for as long as nothing else woke the group (a
//! real-process transactions test stalled on it).
//!
//! On real files (glommio DMA in a temporary directory), since the shard runs on them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::{Recorder, TICK, replica_config, request, shard_config};
use shoal_io::testing::run_on_test_executor;
use shoal_model::encoding::decode_item;
use shoal_model::key::{KeySchema, KeyType};
use shoal_model::request::{ItemOperation, prepare as prepare_request};
use shoal_model::request_codec::encode_request;
use shoal_partition::PartitionMeta;
use shoal_replication::{Membership, NodeId};
use shoal_shard::Shard;
use shoal_wire::messages::{ItemResult, NodeError, NodeRequest, NodeResponse, ReplicaRole};

const PARTITION: u64 = 7;
const EPOCH: u64 = 1;

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

#[test]
fn a_quiesced_leader_answers_strong_reads_and_refused_conditional_writes() {
    let temporary = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = temporary.path().to_path_buf();
    run_on_test_executor("shard-quiesced-leader", move || async move {
        let transport = Rc::new(Recorder::default());
        let shard = Shard::start(shard_config(&path), transport.clone())
            .await
            .unwrap();
        let meta = PartitionMeta {
            partition: PARTITION,
            epoch: EPOCH,
            key_schema: schema(),
            membership: Membership::new([NodeId(1)], []),
        };
        assert_eq!(
            request(&shard, &transport, 1, meta.to_request()).await,
            NodeResponse::Created
        );
        let put = item_request(
            ItemOperation::PutItem,
            serde_json::json!({"Item": {"pk": {"S": "a"}, "n": {"N": "1"}}}),
        );
        for attempt in 0.. {
            match request(&shard, &transport, 100 + attempt, put.clone()).await {
                NodeResponse::Item { .. } => break,
                // Before the group's first election.
                NodeResponse::Error(NodeError::NotLeader { .. }) if attempt < 200 => {
                    glommio::timer::sleep(TICK).await;
                }
                other => panic!("the put got {other:?}"),
            }
        }
        // Idle for several leases: the group quiesces and the lease lapses.
        let lease = replica_config().core.lease_duration;
        glommio::timer::sleep(lease * 4 + Duration::from_millis(50)).await;
        assert!(
            shard.statuses().iter().any(|status| matches!(
                status.role,
                ReplicaRole::Leader | ReplicaRole::LeaderWithLease
            )),
            "the replica still leads"
        );

        let refused = item_request(
            ItemOperation::PutItem,
            serde_json::json!({
                "Item": {"pk": {"S": "a"}, "n": {"N": "2"}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }),
        );
        // As the router does: NotLeader with the leader's own hint is asked again.
        let mut refusals = 0;
        loop {
            match request(&shard, &transport, 2000 + refusals, refused.clone()).await {
                NodeResponse::Error(NodeError::Dynamo { type_name, .. }) => {
                    assert_eq!(type_name, "ConditionalCheckFailedException");
                    break;
                }
                NodeResponse::Error(NodeError::NotLeader {
                    leader_hint: Some(1),
                    ..
                }) if refusals < 3 => {
                    refusals += 1;
                    glommio::timer::sleep(TICK).await;
                }
                other => panic!(
                    "a refused conditional write at a quiesced leader got {other:?} after \
                     {refusals} refusals"
                ),
            }
        }

        glommio::timer::sleep(lease * 4 + Duration::from_millis(50)).await;
        let strong_get = item_request(
            ItemOperation::GetItem,
            serde_json::json!({"Key": {"pk": {"S": "a"}}, "ConsistentRead": true}),
        );
        match request(&shard, &transport, 3, strong_get).await {
            NodeResponse::Item {
                result: ItemResult::Get { item: Some(item) },
                ..
            } => {
                let item = decode_item(&item).unwrap();
                assert!(item.contains_key("n"), "{item:?}");
            }
            other => panic!("a strong read at a quiesced leader got {other:?}"),
        }
    });
}
