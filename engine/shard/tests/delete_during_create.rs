//! A DeletePartition that arrives while the same partition's CreatePartition is still running
//! (a shard dispatches requests concurrently) must not answer Deleted and let the creation
//! finish afterwards: that left replicas no router would ever delete (issue 15). Whatever the
//! interleaving, a Deleted answer means the replica is gone once both requests are answered.
//!
//! On real files (glommio DMA in a temporary directory), since the shard runs on them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::rc::Rc;

use shoal_io::testing::run_on_test_executor;
use shoal_shard::Shard;
use shoal_wire::messages::{
    BusMessage, KeySchemaWire, KeyTypeWire, MembershipWire, NodeError, NodeRequest, NodeResponse,
    RequestFrame,
};

use common::{NODE, Recorder, answer, shard_config};

const PARTITION: u64 = 6;
const EPOCH: u64 = 3;

fn frame(request_id: u64, request: NodeRequest) -> BusMessage {
    BusMessage::Request(RequestFrame {
        request_id,
        request,
    })
}

fn create() -> NodeRequest {
    NodeRequest::CreatePartition {
        partition: PARTITION,
        epoch: EPOCH,
        key_schema: KeySchemaWire {
            partition_key: ("pk".to_string(), KeyTypeWire::String),
            sort_key: None,
        },
        membership: MembershipWire {
            full_replicas: vec![NODE.0],
            log_replicas: Vec::new(),
        },
    }
}

fn delete() -> NodeRequest {
    NodeRequest::DeletePartition {
        partition: PARTITION,
        epoch: EPOCH,
    }
}

fn hosts_partition(shard: &Shard<Recorder>) -> bool {
    shard
        .statuses()
        .iter()
        .any(|status| status.partition == PARTITION)
}

#[test]
fn a_delete_during_the_creation_of_its_partition_never_answers_deleted_for_a_replica_left() {
    let temporary = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = temporary.path().to_path_buf();
    run_on_test_executor("shard-delete-during-create", move || async move {
        let transport = Rc::new(Recorder::default());
        let shard = Shard::start(shard_config(&path), transport.clone())
            .await
            .unwrap();
        // The creation runs in its own task, as the node dispatches every message; the
        // deletion is dispatched once that task has started (and waits on its files).
        let creating = {
            let shard = shard.clone();
            glommio::spawn_local(async move { shard.dispatch(0, frame(1, create())).await })
        };
        glommio::executor().yield_now().await;
        shard.dispatch(0, frame(2, delete())).await;
        let deleted = answer(&transport, 2).await;
        creating.await;
        assert_eq!(answer(&transport, 1).await, NodeResponse::Created);
        match deleted {
            NodeResponse::Deleted => assert!(!hosts_partition(&shard), "a Deleted replica stays"),
            NodeResponse::Error(NodeError::Busy { partition }) => {
                assert_eq!(partition, PARTITION);
                assert!(hosts_partition(&shard), "Busy applied nothing");
            }
            other => panic!("unexpected answer to the deletion: {other:?}"),
        }
        // Asked again once the creation is done, the deletion removes it.
        shard.dispatch(0, frame(3, delete())).await;
        assert_eq!(answer(&transport, 3).await, NodeResponse::Deleted);
        assert!(!hosts_partition(&shard));
    });
}
