//! What the shard's integration tests share: their configuration (small WAL segments, fast
//! elections), a transport that records the shard's answers, and the request helpers.
#![allow(dead_code)]

pub mod bus;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use shoal_partition::ReplicaConfig;
use shoal_partition::replica::ITEM_TREE_CONFIG;
use shoal_replication::{NodeId, ReplicaKind, ReplicaOptions};
use shoal_shard::{Shard, ShardConfig, Transport};
use shoal_store::wal::WalConfig;
use shoal_wire::messages::{
    BusMessage, NodeRequest, NodeResponse, ReplicationEnvelope, RequestFrame, ResponseFrame,
    ShardAddress, SnapshotChunk,
};

pub const NODE: NodeId = NodeId(1);
pub const TICK: Duration = Duration::from_millis(10);

pub fn replica_config() -> ReplicaConfig {
    ReplicaConfig {
        core: ReplicaOptions {
            kind: ReplicaKind::Full,
            election_timeout_min: Duration::from_millis(50),
            election_timeout_jitter: Duration::from_millis(50),
            heartbeat_interval: Duration::from_millis(10),
            idle_heartbeat_interval: Duration::from_millis(30),
            quiesce: true,
            lease_duration: Duration::from_millis(100),
            clock_drift_max: Duration::from_millis(5),
            snapshot_retry_interval: Duration::from_millis(100),
            election_seed: 0,
        },
        checkpoint_every_slots: 64,
        btree: ITEM_TREE_CONFIG,
        item_collection_bytes_max: shoal_model::index::ITEM_COLLECTION_BYTES_MAX,
    }
}

pub fn wal_config() -> WalConfig {
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

pub fn shard_config(directory: &Path) -> ShardConfig {
    ShardConfig {
        node: NODE,
        shard: 0,
        directory: directory.to_path_buf(),
        replica: replica_config(),
        wal: wal_config(),
        cache_pages: 64,
        tick_interval: TICK,
        seed: 17,
        time_to_live_sweep_period: Duration::from_secs(1),
        stream_retention: Duration::from_secs(24 * 3600),
        stream_shard_rollover: Duration::from_secs(4 * 3600),
        peers: Vec::new(),
    }
}

/// Records what the shard answers; replication and snapshots go nowhere.
#[derive(Default)]
pub struct Recorder {
    pub responses: RefCell<Vec<ResponseFrame>>,
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

/// How many ticks a test waits for something the shard does on its own (an answer, an
/// election).
pub const WAIT_STEPS_MAX: usize = 500;

/// Waits for the shard's answer to `request_id` and takes it from the recorder.
pub async fn answer(transport: &Recorder, request_id: u64) -> NodeResponse {
    recorded_answer(&transport.responses, request_id)
        .await
        .unwrap_or_else(|| panic!("request {request_id} was never answered"))
}

/// Waits for the answer to `request_id` among `responses` (what a test transport records)
/// and takes it; `None` if none came within [`WAIT_STEPS_MAX`] ticks.
pub async fn recorded_answer(
    responses: &RefCell<Vec<ResponseFrame>>,
    request_id: u64,
) -> Option<NodeResponse> {
    for _ in 0..WAIT_STEPS_MAX {
        let answered = responses
            .borrow()
            .iter()
            .position(|frame| frame.request_id == request_id);
        if let Some(index) = answered {
            return Some(responses.borrow_mut().remove(index).response);
        }
        glommio::timer::sleep(TICK).await;
    }
    None
}

/// Hands `request` to the shard as the bus would and waits for its answer.
pub async fn request(
    shard: &Rc<Shard<Recorder>>,
    transport: &Recorder,
    request_id: u64,
    request: NodeRequest,
) -> NodeResponse {
    shard
        .dispatch(
            0,
            BusMessage::Request(RequestFrame {
                request_id,
                request,
            }),
        )
        .await;
    answer(transport, request_id).await
}
