//! A DeletePartition that arrives while the same partition's CreatePartition is still running
//! (a shard dispatches requests concurrently) must not answer Deleted and let the creation
//! finish afterwards: that left replicas no router would ever delete (issue 15). Whatever the
//! interleaving, a Deleted answer means the replica is gone once both requests are answered.
//!
//! On real files (glommio DMA in a temporary directory), since the shard runs on them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use shoal_io::testing::run_on_test_executor;
use shoal_partition::ReplicaConfig;
use shoal_partition::replica::ITEM_TREE_CONFIG;
use shoal_replication::{NodeId, ReplicaKind, ReplicaOptions};
use shoal_shard::{Shard, ShardConfig, Transport};
use shoal_store::wal::WalConfig;
use shoal_wire::messages::{
    BusMessage, KeySchemaWire, KeyTypeWire, MembershipWire, NodeError, NodeRequest, NodeResponse,
    ReplicationEnvelope, RequestFrame, ResponseFrame, ShardAddress, SnapshotChunk,
};

const NODE: NodeId = NodeId(1);
const PARTITION: u64 = 6;
const EPOCH: u64 = 3;
const TICK: Duration = Duration::from_millis(10);
/// How long the test waits for an answer, in ticks.
const WAIT_STEPS_MAX: usize = 500;

fn replica_config() -> ReplicaConfig {
    ReplicaConfig {
        core: ReplicaOptions {
            kind: ReplicaKind::Full,
            election_timeout_min: Duration::from_millis(50),
            election_timeout_jitter: Duration::from_millis(50),
            heartbeat_interval: Duration::from_millis(10),
            lease_duration: Duration::from_millis(100),
            clock_drift_max: Duration::from_millis(5),
            snapshot_retry_interval: Duration::from_millis(100),
            election_seed: 0,
        },
        checkpoint_every_slots: 64,
        btree: ITEM_TREE_CONFIG,
    }
}

fn wal_config() -> WalConfig {
    WalConfig {
        segment_bytes: 64 << 10,
        segment_count: 2,
        batch_bytes_max: 16 << 10,
        batch_records_max: 16,
        pending_records_max: 64,
        pending_bytes_max: 64 << 10,
        record_body_bytes_max: 8 << 10,
    }
}

fn shard_config(directory: &Path) -> ShardConfig {
    ShardConfig {
        node: NODE,
        shard: 0,
        directory: directory.to_path_buf(),
        replica: replica_config(),
        wal: wal_config(),
        cache_pages: 64,
        tick_interval: TICK,
        seed: 17,
    }
}

/// Records what the shard answers; replication and snapshots go nowhere.
#[derive(Default)]
struct Recorder {
    responses: RefCell<Vec<ResponseFrame>>,
}

impl Transport for Recorder {
    type Connection = u64;
    fn send_replication(&self, _to: ShardAddress, _envelope: ReplicationEnvelope) {}
    fn snapshot_room(&self, _to: ShardAddress) -> usize {
        0
    }

    fn send_snapshot(&self, _to: ShardAddress, _chunk: SnapshotChunk) {}
    fn respond(&self, _connection: u64, response: ResponseFrame) {
        self.responses.borrow_mut().push(response);
    }
}

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

async fn answer(transport: &Recorder, request_id: u64) -> NodeResponse {
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
    panic!("request {request_id} was never answered");
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
