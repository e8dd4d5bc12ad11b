//! Issue 14 on the real WAL: one replica's records for slots 1 to 9 sit in a segment the WAL
//! recycles, while its record for slot 10 (ballot 1) survives in the next segment, followed by
//! slots 1 to 18 re-sent by a new leader (ballot 2). Every restart after the recycling used to
//! fail with "recovery refused: LogGap { after: Slot(0) }"; the replica must recover slots 1 to
//! 18 of ballot 2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::rc::Rc;
use std::time::Duration;

use shoal_io::storage::simulated::{SimulatedDirectory, SimulatedDisk, SimulatedFile};
use shoal_io::testing::run_on_test_executor;
use shoal_model::key::{KeySchema, KeyType};
use shoal_partition::replica::{ITEM_TREE_CONFIG, RecoveredRecords};
use shoal_partition::{
    Event, Output, PartitionMeta, PartitionReplica, REPLICATION_RECORD_KIND, ReplicaConfig,
    ShardReplay,
};
use shoal_replication::{
    Ballot, LogEntry, Membership, Message, MonotonicTime, NodeId, Payload, ReplicaKind,
    ReplicaOptions, Slot,
};
use shoal_store::btree::PageCache;
use shoal_store::wal::{PartitionId, RecordKind, Wal, WalConfig};

const PARTITION: u64 = 0;
/// Another partition of the shard that writes plain records and checkpoints each at once: it
/// moves the WAL along without pinning anything.
const FILLER_PARTITION: u64 = 99;
const FILLER_KIND: RecordKind = match RecordKind::new(1) {
    Some(kind) => kind,
    None => panic!("record kind 1 is valid"),
};
const FILLER_BODY_BYTES: usize = 3000;
/// Enough filler records to go round the small ring below more than once.
const FILLER_RECORDS_MAX: usize = 200;
const SEGMENT_COUNT: u32 = 3;
const FOLLOWER: NodeId = NodeId(3);

type Replica = PartitionReplica<SimulatedFile, SimulatedDirectory>;

fn config() -> ReplicaConfig {
    ReplicaConfig {
        core: ReplicaOptions {
            kind: ReplicaKind::Full,
            election_timeout_min: Duration::from_millis(300),
            election_timeout_jitter: Duration::from_millis(300),
            heartbeat_interval: Duration::from_millis(50),
            idle_heartbeat_interval: Duration::from_millis(150),
            quiesce: false,
            lease_duration: Duration::from_millis(200),
            clock_drift_max: Duration::from_millis(10),
            snapshot_retry_interval: Duration::from_millis(200),
            election_seed: 0,
        },
        checkpoint_every_slots: 64,
        btree: ITEM_TREE_CONFIG,
        item_collection_bytes_max: shoal_model::index::ITEM_COLLECTION_BYTES_MAX,
    }
}

/// A ring of three 64 KiB segments, so a few filler records move the log to the next one.
fn wal_config() -> WalConfig {
    WalConfig {
        segment_bytes: 64 << 10,
        segment_count: SEGMENT_COUNT,
        batch_bytes_max: 16 << 10,
        batch_records_max: 16,
        pending_records_max: 64,
        pending_bytes_max: 64 << 10,
        record_body_bytes_max: 8 << 10,
    }
}

fn meta() -> PartitionMeta {
    PartitionMeta {
        partition: PARTITION,
        epoch: 1,
        key_schema: KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number),
        membership: Membership::new([NodeId(1), NodeId(2), FOLLOWER], []),
    }
}

fn ballot(round: u64) -> Ballot {
    // Each round has its own leader, as after a failover.
    Ballot {
        round,
        node: NodeId(round),
    }
}

/// The entry a leader of `round` sends for `slot`. It is never applied (nothing commits), so
/// the payload only has to tell the ballots apart.
fn entry(round: u64, slot: u64) -> LogEntry {
    LogEntry {
        ballot: ballot(round),
        payload: Payload::Command(vec![slot as u8, round as u8]),
    }
}

async fn open_wal(disk: &SimulatedDisk) -> (Wal<SimulatedFile>, ShardReplay) {
    let mut replay = ShardReplay::default();
    let (wal, _) = Wal::open(&disk.directory(), wal_config(), |record| {
        replay.visit(record)
    })
    .await
    .unwrap();
    let committer = wal.clone();
    glommio::spawn_local(async move {
        let _ = committer.run_committer().await;
    })
    .detach();
    (wal, replay)
}

struct Node {
    disk: SimulatedDisk,
    wal: Wal<SimulatedFile>,
    replica: Replica,
}

impl Node {
    /// Feeds an Accept of `round`'s leader and makes every record it causes durable.
    async fn accept(&mut self, round: u64, first_slot: u64, last_slot: u64) {
        let message = Message::Accept {
            ballot: ballot(round),
            round: 1,
            first_slot: Slot(first_slot),
            entries: (first_slot..=last_slot)
                .map(|slot| entry(round, slot))
                .collect(),
            commit_slot: Slot::ZERO,
        };
        let mut events = vec![Event::Message {
            from: ballot(round).node,
            message,
        }];
        while let Some(event) = events.pop() {
            let outputs = self
                .replica
                .handle(MonotonicTime::ZERO, event)
                .await
                .unwrap();
            for output in outputs {
                if let Output::Persist { core_lsn, body } = output {
                    let wal_lsn = self
                        .wal
                        .append(PartitionId(PARTITION), REPLICATION_RECORD_KIND, &body)
                        .await
                        .unwrap();
                    events.push(Event::Persisted { core_lsn, wal_lsn });
                }
            }
        }
    }

    /// Appends filler records until the WAL writes into segment `index`.
    async fn fill_until_active_segment(&self, index: u32) {
        for _ in 0..FILLER_RECORDS_MAX {
            if self.wal.stats().active_segment == index {
                return;
            }
            let lsn = self
                .wal
                .append(
                    PartitionId(FILLER_PARTITION),
                    FILLER_KIND,
                    &[7; FILLER_BODY_BYTES],
                )
                .await
                .unwrap();
            self.wal.checkpointed(PartitionId(FILLER_PARTITION), lsn);
        }
        panic!(
            "the WAL never reached segment {index}: {:?}",
            self.wal.stats()
        );
    }

    /// Kills the node (unsynced bytes are lost) and restarts the replica from its disk. Also
    /// returns the slots and rounds of the replica's records that the WAL kept, in WAL order.
    async fn crash_and_recover(self) -> (Result<Node, String>, Vec<Vec<(u64, u64)>>) {
        self.wal.shutdown();
        let disk = self.disk.crash_image_dropping_unsynced();
        drop(self.replica);
        let (wal, mut replay) = open_wal(&disk).await;
        let records = replay
            .partitions
            .remove(&PARTITION)
            .unwrap_or_else(RecoveredRecords::default);
        let seen = records
            .records()
            .iter()
            .map(|(_, record)| {
                let (_, entries) = record.to_core().unwrap();
                entries
                    .iter()
                    .map(|(slot, entry)| (slot.0, entry.ballot.round))
                    .collect()
            })
            .filter(|entries: &Vec<(u64, u64)>| !entries.is_empty())
            .collect();
        let meta = PartitionMeta::read(&disk.directory(), PARTITION)
            .await
            .unwrap();
        let replica = Replica::recover(
            meta,
            FOLLOWER,
            config(),
            11,
            Rc::new(disk.directory()),
            PageCache::new(64),
            wal.clone(),
            records,
            MonotonicTime::ZERO,
        )
        .await
        .map_err(|error| error.to_string());
        (replica.map(|replica| Node { disk, wal, replica }), seen)
    }
}

fn run(round: u64, first_slot: u64, last_slot: u64) -> Vec<(u64, u64)> {
    (first_slot..=last_slot).map(|slot| (slot, round)).collect()
}

#[test]
fn a_replica_recovers_after_the_wal_recycled_the_first_writes_of_resent_slots() {
    run_on_test_executor("recovery-after-recycling", || async {
        let disk = SimulatedDisk::new();
        let (wal, _) = open_wal(&disk).await;
        let replica = Replica::create(
            meta(),
            FOLLOWER,
            config(),
            7,
            Rc::new(disk.directory()),
            PageCache::new(64),
            wal.clone(),
            MonotonicTime::ZERO,
        )
        .await
        .unwrap();
        let mut node = Node { disk, wal, replica };

        // Segment 0: slots 1 to 9 of ballot 1. Segment 1: slot 10 of ballot 1 alone, then a new
        // leader's ballot 2 re-sends slots 1 to 18 (a follower's match restarts at its commit
        // slot, 0, for a new leader).
        node.accept(1, 1, 9).await;
        node.fill_until_active_segment(1).await;
        node.accept(1, 10, 10).await;
        node.accept(2, 1, 18).await;

        // A restart with every record present recovers as before, and tells the WAL that only
        // the ballot-2 record is needed: slot 10's newest write is in it too.
        let (restarted, seen) = node.crash_and_recover().await;
        let node = restarted.unwrap();
        assert_eq!(seen, vec![run(1, 1, 9), run(1, 10, 10), run(2, 1, 18)]);

        // Round the ring: segment 0 is reused, the record of slot 10 stays in segment 1.
        node.fill_until_active_segment(2).await;
        node.fill_until_active_segment(0).await;
        assert!(
            node.wal.stats().segments_recycled >= 1,
            "{:?}",
            node.wal.stats()
        );

        let (restarted, seen) = node.crash_and_recover().await;
        assert_eq!(
            seen,
            vec![run(1, 10, 10), run(2, 1, 18)],
            "the WAL kept exactly the records of issue 14"
        );
        let node = restarted.expect("the replica recovers what the WAL kept");
        let core = node.replica.core();
        assert_eq!(core.log_first_slot(), Slot(1));
        assert_eq!(core.log_last_slot(), Slot(18));
        for slot in 1..=18 {
            assert_eq!(core.entry(Slot(slot)), Some(&entry(2, slot)), "slot {slot}");
        }
        assert_eq!(core.promised(), ballot(2));
    });
}
