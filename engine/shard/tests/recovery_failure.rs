//! A partition replica that refuses to recover does not take its shard down: the shard starts,
//! serves its other partitions, answers requests for the broken one with an error at once,
//! reports it in the metrics, keeps its files, and releases its WAL records (after a durable
//! marker) only when the WAL needs their segment. A later start keeps the marked replica out of
//! service without reading what is left of its records.
//!
//! On real files (glommio DMA in a temporary directory), since the shard runs on them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use common::{
    NODE, Recorder, TICK, WAIT_STEPS_MAX, replica_config, request, shard_config, wal_config,
};
use shoal_io::storage::dma::DmaDirectory;
use shoal_io::testing::run_on_test_executor;
use shoal_io::{Clock, SystemClock};
use shoal_model::key::{KeySchema, KeyType};
use shoal_model::request::{ItemOperation, prepare as prepare_request};
use shoal_model::request_codec::encode_request;
use shoal_partition::meta::{meta_file_name, unrecoverable_marker_file_name};
use shoal_partition::{PartitionMeta, PartitionReplica, REPLICATION_RECORD_KIND};
use shoal_replication::{Ballot, LogEntry, Membership, NodeId, Payload, Slot};
use shoal_shard::Shard;
use shoal_shard::metrics::HEADERS;
use shoal_store::btree::PageCache;
use shoal_store::wal::{PartitionId, RecordKind, Wal};
use shoal_wire::messages::{NodeError, NodeRequest, NodeResponse, ReplicaRole};
use shoal_wire::persist::encode_persist_record;

/// Its only WAL record holds slot 2 and nothing holds slot 1: a hole, so recovery refuses it.
const BROKEN: u64 = 5;
/// A one-member group that recovers and leads.
const HEALTHY: u64 = 6;
const EPOCH: u64 = 3;
/// Another partition's plain records, which move the WAL to its next segment.
const FILLER_PARTITION: u64 = 99;
const FILLER_KIND: RecordKind = match RecordKind::new(1) {
    Some(kind) => kind,
    None => panic!("record kind 1 is valid"),
};
const FILLER_BODY_BYTES: usize = 3000;
const FILLER_RECORDS_MAX: usize = 100;

fn meta(partition: u64, members: &[u64]) -> PartitionMeta {
    PartitionMeta {
        partition,
        epoch: EPOCH,
        key_schema: KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number),
        membership: Membership::new(members.iter().map(|node| NodeId(*node)), []),
    }
}

/// The shard's directory before the start under test: both partitions created, the broken
/// one's log with a hole, and the WAL moved on to its second segment.
async fn prepare(path: &Path) {
    let directory = Rc::new(DmaDirectory::open(path).await.unwrap());
    let (wal, _) = Wal::open(directory.as_ref(), wal_config(), |_| {})
        .await
        .unwrap();
    let committer = wal.clone();
    glommio::spawn_local(async move { committer.run_committer().await.unwrap() }).detach();
    for (partition, members) in [(BROKEN, &[1, 2, 3][..]), (HEALTHY, &[1][..])] {
        let replica = PartitionReplica::create(
            meta(partition, members),
            NODE,
            replica_config(),
            partition,
            directory.clone(),
            PageCache::new(16),
            wal.clone(),
            SystemClock.now(),
        )
        .await
        .unwrap();
        replica.close().await.unwrap();
    }
    let ballot = Ballot {
        round: 1,
        node: NodeId(2),
    };
    let hole = shoal_wire::messages::PersistRecord::from_persist_action(
        BROKEN,
        Some(ballot),
        vec![(
            Slot(2),
            LogEntry {
                ballot,
                payload: Payload::Noop,
            },
        )],
    );
    wal.append(
        PartitionId(BROKEN),
        REPLICATION_RECORD_KIND,
        &encode_persist_record(&hole),
    )
    .await
    .unwrap();
    for _ in 0..FILLER_RECORDS_MAX {
        if wal.stats().active_segment == 1 {
            break;
        }
        wal.append(
            PartitionId(FILLER_PARTITION),
            FILLER_KIND,
            &[7; FILLER_BODY_BYTES],
        )
        .await
        .unwrap();
    }
    assert_eq!(wal.stats().active_segment, 1, "{:?}", wal.stats());
    wal.shutdown();
}

fn put(partition: u64) -> NodeRequest {
    NodeRequest::Item {
        partition,
        epoch: EPOCH,
        request: encode_request(
            &prepare_request(
                ItemOperation::PutItem,
                &serde_json::json!({"Item": {"pk": {"S": "a"}, "sk": {"N": "1"}}}),
                &KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number),
            )
            .unwrap(),
        ),
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..WAIT_STEPS_MAX {
        if done() {
            return;
        }
        glommio::timer::sleep(TICK).await;
    }
    panic!("waited in vain until {what}");
}

#[test]
fn a_replica_that_refuses_to_recover_is_kept_out_of_service_and_the_shard_serves_on() {
    let temporary = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path: PathBuf = temporary.path().to_path_buf();
    let prepare_path = path.clone();
    run_on_test_executor("shard-recovery-prepare", move || async move {
        prepare(&prepare_path).await;
    });

    let serve_path = path.clone();
    run_on_test_executor("shard-recovery-serve", move || async move {
        let transport = Rc::new(Recorder::default());
        let shard = Shard::start(shard_config(&serve_path), transport.clone())
            .await
            .expect("one broken partition does not stop the shard");

        // Nothing has ticked yet: the records are still kept for another try.
        let failures = shard.recovery_failures();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].partition, BROKEN);
        assert_eq!(failures[0].epoch, EPOCH);
        assert!(
            failures[0].reason.contains("LogGap"),
            "{}",
            failures[0].reason
        );
        assert!(!failures[0].wal_records_released);
        let served: Vec<u64> = shard
            .statuses()
            .iter()
            .map(|status| status.partition)
            .collect();
        assert_eq!(served, vec![HEALTHY]);
        let metrics = shard.render_metrics();
        assert!(
            metrics.contains(
                "shoal_partition_recovery_failed{node=\"1\",shard=\"0\",partition=\"5\"} 1"
            ),
            "{metrics}"
        );
        assert!(HEADERS.contains("# HELP shoal_partition_recovery_failed "));
        assert!(HEADERS.contains("# TYPE shoal_partition_recovery_failed gauge"));

        // Requests for it are answered at once; the router moves on to another replica.
        assert_eq!(
            request(&shard, &transport, 1, put(BROKEN)).await,
            NodeResponse::Error(NodeError::NotLeader {
                partition: BROKEN,
                leader_hint: None,
            })
        );
        assert_eq!(
            request(&shard, &transport, 2, put(42)).await,
            NodeResponse::Error(NodeError::WrongOwner { partition: 42 })
        );
        for (request_id, control) in [
            (
                3,
                NodeRequest::DeletePartition {
                    partition: BROKEN,
                    epoch: EPOCH,
                },
            ),
            (4, meta(BROKEN, &[1, 2, 3]).to_request()),
        ] {
            match request(&shard, &transport, request_id, control).await {
                // Refused before anything was done: its files stay as they are.
                NodeResponse::Error(NodeError::NotApplied { message }) => {
                    assert!(message.contains("refused to recover"), "{message}");
                }
                other => panic!("a control request for the broken partition got {other:?}"),
            }
        }
        assert!(serve_path.join(meta_file_name(BROKEN)).exists());

        // The other partition is served.
        wait_until("the healthy partition leads with a lease", || {
            shard
                .statuses()
                .iter()
                .any(|status| status.role == ReplicaRole::LeaderWithLease)
        })
        .await;
        match request(&shard, &transport, 5, put(HEALTHY)).await {
            NodeResponse::Item { .. } => {}
            other => panic!("the healthy partition answered {other:?}"),
        }

        // The broken partition's record is in the segment the WAL reuses next: the shard marks
        // the replica unrecoverable and lets the WAL go on.
        wait_until("the broken partition's records are released", || {
            shard.recovery_failures()[0].wal_records_released
        })
        .await;
        assert!(
            serve_path
                .join(unrecoverable_marker_file_name(BROKEN))
                .exists()
        );
        assert!(serve_path.join(meta_file_name(BROKEN)).exists());
    });

    let restart_path = path.clone();
    run_on_test_executor("shard-recovery-restart", move || async move {
        let transport = Rc::new(Recorder::default());
        let shard = Shard::start(shard_config(&restart_path), transport.clone())
            .await
            .unwrap();
        let failures = shard.recovery_failures();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].partition, BROKEN);
        assert!(failures[0].wal_records_released);
        assert!(
            failures[0].reason.contains("earlier start"),
            "{}",
            failures[0].reason
        );
        let served: Vec<u64> = shard
            .statuses()
            .iter()
            .map(|status| status.partition)
            .collect();
        assert_eq!(served, vec![HEALTHY]);
    });
}
