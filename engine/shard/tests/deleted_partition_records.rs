//! A deleted partition's WAL records never keep the shard's WAL from recycling, whether the
//! shard restarts after the deletion or not. Before, a restart brought its records back into the
//! WAL's bookkeeping with no replica left to release them: once the ring came round to their
//! segment, every write of the shard waited for good (found by the simulator's replica moves,
//! which delete the replica a move leaves behind).
//!
//! On real files (glommio DMA in a temporary directory), since the shard runs on them. The test
//! configuration's WAL is two 64 KiB segments, so a few hundred writes wrap it several times.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::rc::Rc;

use common::{NODE, Recorder, TICK, request, shard_config};
use shoal_io::testing::run_on_test_executor;
use shoal_model::key::{KeySchema, KeyType};
use shoal_model::request::{ItemOperation, prepare as prepare_request};
use shoal_model::request_codec::encode_request;
use shoal_partition::PartitionMeta;
use shoal_replication::Membership;
use shoal_shard::Shard;
use shoal_wire::messages::{NodeError, NodeRequest, NodeResponse};

const DELETED: u64 = 11;
const KEPT: u64 = 12;
const EPOCH: u64 = 1;
/// Enough writes of `VALUE_BYTES` to wrap the test WAL (2 x 64 KiB) several times.
const WRITES: u64 = 600;
const VALUE_BYTES: usize = 400;

fn schema() -> KeySchema {
    KeySchema::partition_only("pk", KeyType::String)
}

fn create(partition: u64) -> NodeRequest {
    PartitionMeta {
        partition,
        epoch: EPOCH,
        key_schema: schema(),
        membership: Membership::new([NODE], []),
    }
    .to_request()
}

/// Writes `count` items to `partition`, asking again while the group elects its leader.
async fn write(shard: &Rc<Shard<Recorder>>, transport: &Recorder, partition: u64, count: u64) {
    let value = "v".repeat(VALUE_BYTES);
    for index in 0..count {
        let parameters =
            serde_json::json!({"Item": {"pk": {"S": format!("k{index}")}, "v": {"S": value}}});
        let put = NodeRequest::Item {
            partition,
            epoch: EPOCH,
            request: encode_request(
                &prepare_request(ItemOperation::PutItem, &parameters, &schema()).unwrap(),
            ),
        };
        for attempt in 0.. {
            let request_id = partition << 32 | index << 8 | attempt;
            match request(shard, transport, request_id, put.clone()).await {
                NodeResponse::Item { .. } => break,
                NodeResponse::Error(NodeError::NotLeader { .. } | NodeError::Busy { .. })
                    if attempt < 200 =>
                {
                    glommio::timer::sleep(TICK).await;
                }
                other => panic!("write {index} to partition {partition}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_deleted_partitions_records_do_not_stop_the_wal_after_a_restart() {
    let temporary = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = temporary.path().to_path_buf();
    let first = path.clone();
    run_on_test_executor("shard-deleted-records-before", move || async move {
        let transport = Rc::new(Recorder::default());
        let shard = Shard::start(shard_config(&first), transport.clone())
            .await
            .unwrap();
        assert_eq!(
            request(&shard, &transport, 1, create(DELETED)).await,
            NodeResponse::Created
        );
        write(&shard, &transport, DELETED, 40).await;
        let delete = NodeRequest::DeletePartition {
            partition: DELETED,
            epoch: EPOCH,
        };
        assert_eq!(
            request(&shard, &transport, 2, delete).await,
            NodeResponse::Deleted
        );
    });
    // The shard starts again on the same files: the deleted partition's records are in the WAL.
    run_on_test_executor("shard-deleted-records-after", move || async move {
        let transport = Rc::new(Recorder::default());
        let shard = Shard::start(shard_config(&path), transport.clone())
            .await
            .unwrap();
        assert_eq!(
            request(&shard, &transport, 3, create(KEPT)).await,
            NodeResponse::Created
        );
        // Every write is answered: the WAL recycles the segments the deleted records are in.
        write(&shard, &transport, KEPT, WRITES).await;
    });
}
