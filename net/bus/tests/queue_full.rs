//! A full outbound queue drops (and counts) instead of blocking; queued heartbeats coalesce.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use shoal_bus::{Bus, BusConfig, SendError};
use shoal_wire::messages::*;

const QUEUE_MAX: usize = 8;
const SENT: usize = 1000;

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let _watchdog = Watchdog::start("queue_full", WATCHDOG);
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
        config.outbound_queue_envelopes_max = QUEUE_MAX;
        let (sender, _sender_inbox) = Bus::start(config).unwrap();

        // No await in between: the writer cannot drain, so the queue fills and stays full.
        let started = Instant::now();
        let mut dropped = 0;
        for round in 0..SENT as u64 {
            match sender.send_replication(shard(2), numbered(round, 1, 2, round)) {
                Ok(()) => {}
                Err(SendError::QueueFull) => dropped += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(dropped, SENT - QUEUE_MAX);
        assert_eq!(sender.queued_envelopes(shard(2)), QUEUE_MAX);
        assert_eq!(
            sender.stats().envelopes_dropped_queue_full,
            (SENT - QUEUE_MAX) as u64
        );
        assert_eq!(
            sender.send_replication(shard(3), numbered(1, 1, 3, 1)),
            Err(SendError::UnknownPeer(shard(3)))
        );

        // The queued ones (the first QUEUE_MAX) are delivered.
        let mut received = Vec::new();
        while received.len() < QUEUE_MAX {
            let inbound = glommio::timer::timeout(WAIT_DEADLINE, async { Ok(inbox.recv().await) })
                .await
                .unwrap()
                .unwrap();
            let BusMessage::Replication(batch) = inbound.message else {
                panic!("not replication");
            };
            received.extend(batch);
        }
        let expected: Vec<_> = (0..QUEUE_MAX as u64)
            .map(|round| numbered(round, 1, 2, round))
            .collect();
        assert_eq!(received, expected);

        // Heartbeats of one group queued together: only the newest is sent, and it keeps its
        // place after the Accept queued between them.
        for round in 0..5 {
            sender
                .send_replication(shard(2), heartbeat(7, round))
                .unwrap();
        }
        sender
            .send_replication(shard(2), numbered(8, 1, 2, 99))
            .unwrap();
        sender.send_replication(shard(2), heartbeat(7, 5)).unwrap();
        let inbound = glommio::timer::timeout(WAIT_DEADLINE, async { Ok(inbox.recv().await) })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            inbound.message,
            BusMessage::Replication(vec![numbered(8, 1, 2, 99), heartbeat(7, 5)])
        );
        assert_eq!(sender.stats().heartbeats_coalesced, 5);
        sender.shutdown();
        receiver.shutdown();
    })
    .join()
    .unwrap();
}
