//! Snapshot chunks: backpressure instead of drops, order kept, replication not starved.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use shoal_bus::{Bus, BusConfig};
use shoal_wire::messages::*;

const CHUNKS: u32 = 40;
const CHUNK_ITEM_BYTES: usize = 64 * 1024;

fn chunk(index: u32) -> SnapshotChunk {
    SnapshotChunk {
        group: 3,
        from: 1,
        to: 2,
        transfer_id: 11,
        last_included_slot: 500,
        membership: MembershipWire {
            full_replicas: vec![1, 2, 3],
            log_replicas: Vec::new(),
        },
        chunk_index: index,
        items: vec![(
            index.to_le_bytes().to_vec(),
            vec![index as u8; CHUNK_ITEM_BYTES],
        )],
        last: index + 1 == CHUNKS,
    }
}

#[test]
fn snapshot_chunks_wait_for_room_and_arrive_in_order() {
    let _watchdog = Watchdog::start("snapshot", WATCHDOG);
    spawn_executor("two-shards", move || async move {
        let (receiver, inbox) = Bus::start(BusConfig::new(
            shard(2),
            "127.0.0.1:0".parse().unwrap(),
            BTreeMap::new(),
        ))
        .unwrap();
        let mut config = BusConfig::new(
            shard(1),
            "127.0.0.1:0".parse().unwrap(),
            BTreeMap::from([(shard(2), receiver.local_address())]),
        );
        config.snapshot_queue_chunks_max = 1;
        let (sender, _sender_inbox) = Bus::start(config).unwrap();
        let sender = std::rc::Rc::new(sender);

        // The transfer runs in its own task; replication keeps flowing beside it.
        let transfer = {
            let sender = sender.clone();
            glommio::spawn_local(async move {
                for index in 0..CHUNKS {
                    sender.send_snapshot(shard(2), chunk(index)).await.unwrap();
                    // Replication between chunks: one writer pass carries both.
                    sender
                        .send_replication(shard(2), numbered(4, 1, 2, u64::from(index)))
                        .unwrap();
                }
            })
        };
        let mut chunks = Vec::new();
        let mut rounds = Vec::new();
        while chunks.len() < CHUNKS as usize || rounds.len() < CHUNKS as usize {
            let inbound = glommio::timer::timeout(WAIT_DEADLINE, async { Ok(inbox.recv().await) })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(inbound.peer, Some(shard(1)));
            match inbound.message {
                BusMessage::Snapshot(chunk) => chunks.push(chunk),
                BusMessage::Replication(batch) => rounds.extend(batch),
                other => panic!("unexpected {other:?}"),
            }
        }
        transfer.await;
        assert_eq!(chunks, (0..CHUNKS).map(chunk).collect::<Vec<_>>());
        let expected: Vec<_> = (0..u64::from(CHUNKS))
            .map(|round| numbered(4, 1, 2, round))
            .collect();
        assert_eq!(rounds, expected);
        let stats = sender.stats();
        assert_eq!(stats.snapshot_chunks_sent, u64::from(CHUNKS));
        assert_eq!(stats.snapshot_chunks_lost, 0);
        assert_eq!(receiver.stats().snapshot_chunks_received, u64::from(CHUNKS));
        sender.shutdown();
        receiver.shutdown();
    })
    .join()
    .unwrap();
}

#[test]
fn snapshot_sends_to_an_unreachable_peer_wait_instead_of_dropping() {
    let _watchdog = Watchdog::start("snapshot_unreachable", WATCHDOG);
    let nobody = free_address();
    spawn_executor("lonely-shard", move || async move {
        let mut config = BusConfig::new(
            shard(1),
            "127.0.0.1:0".parse().unwrap(),
            BTreeMap::from([(shard(2), nobody)]),
        );
        config.snapshot_queue_chunks_max = 2;
        config.reconnect_backoff_max = Duration::from_millis(20);
        let (sender, _inbox) = Bus::start(config).unwrap();
        // Two chunks fit the queue; the third waits (the peer never comes up).
        sender.send_snapshot(shard(2), chunk(0)).await.unwrap();
        sender.send_snapshot(shard(2), chunk(1)).await.unwrap();
        let third = glommio::timer::timeout(Duration::from_millis(200), async {
            Ok(sender.send_snapshot(shard(2), chunk(2)).await)
        })
        .await;
        assert!(third.is_err(), "the third chunk did not wait: {third:?}");
        let stats = sender.stats();
        assert!(stats.connect_failures >= 2, "{stats:?}");
        assert_eq!(stats.snapshot_chunks_sent + stats.snapshot_chunks_lost, 0);
        sender.shutdown();
    })
    .join()
    .unwrap();
}
