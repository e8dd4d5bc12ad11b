//! Two shards on two executors exchange replication batches both ways.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use shoal_bus::{Bus, BusConfig, BusStats};
use shoal_wire::messages::*;

const ENVELOPES_EACH_WAY: u64 = 2000;

fn run_shard(
    me: u64,
    other: u64,
    listen: std::net::SocketAddr,
    other_address: std::net::SocketAddr,
    listening: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<(Vec<ReplicationEnvelope>, BusStats)> {
    spawn_executor(&format!("shard-{me}"), move || async move {
        let config = BusConfig::new(
            shard(me),
            listen,
            BTreeMap::from([(shard(other), other_address)]),
        );
        let (bus, inbox) = Bus::start(config).unwrap();
        // Messages for a peer that cannot be reached are dropped (replication resends), so
        // start sending only once both shards listen.
        listening.fetch_add(1, Ordering::SeqCst);
        wait_until("both shards listen", || {
            listening.load(Ordering::SeqCst) == 2
        })
        .await;
        // Sent in bursts so the writer batches many envelopes (and several groups) per frame.
        for round in 0..ENVELOPES_EACH_WAY {
            bus.send_replication(shard(other), numbered(round % 7, me, other, round))
                .unwrap();
            if round % 100 == 99 {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        }
        let mut received = Vec::new();
        while (received.len() as u64) < ENVELOPES_EACH_WAY {
            let inbound = glommio::timer::timeout(WAIT_DEADLINE, async { Ok(inbox.recv().await) })
                .await
                .expect("timed out waiting for replication")
                .expect("inbox closed");
            assert_eq!(inbound.peer, Some(shard(other)));
            match inbound.message {
                BusMessage::Replication(batch) => received.extend(batch),
                other => panic!("unexpected {other:?}"),
            }
        }
        wait_until("everything was written", || {
            bus.stats().envelopes_sent == ENVELOPES_EACH_WAY
        })
        .await;
        // Neither side shuts down before both have received everything.
        finished.fetch_add(1, Ordering::SeqCst);
        wait_until("the other shard finished", || {
            finished.load(Ordering::SeqCst) == 2
        })
        .await;
        let stats = bus.stats();
        bus.shutdown();
        (received, stats)
    })
}

#[test]
fn two_executors_exchange_replication_batches_both_ways() {
    let _watchdog = Watchdog::start("exchange", WATCHDOG);
    let (address_1, address_2) = (free_address(), free_address());
    let listening = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let shard_1 = run_shard(
        1,
        2,
        address_1,
        address_2,
        listening.clone(),
        finished.clone(),
    );
    let shard_2 = run_shard(2, 1, address_2, address_1, listening, finished);
    for (handle, me, other) in [(shard_1, 1, 2), (shard_2, 2, 1)] {
        let (received, stats) = handle.join().unwrap();
        // Everything arrives, once, in the order it was sent (one connection per direction).
        let expected: Vec<_> = (0..ENVELOPES_EACH_WAY)
            .map(|round| numbered(round % 7, other, me, round))
            .collect();
        assert_eq!(received, expected, "shard {me}");
        assert_eq!(stats.envelopes_received, ENVELOPES_EACH_WAY);
        assert_eq!(stats.envelopes_dropped_queue_full, 0);
        assert_eq!(stats.connects, 1);
        // Batching: far fewer frames than envelopes (the Hello is one frame).
        assert!(
            stats.frames_sent < ENVELOPES_EACH_WAY / 10,
            "shard {me} sent {} frames for {ENVELOPES_EACH_WAY} envelopes",
            stats.frames_sent
        );
        assert_eq!(stats.frame_errors + stats.protocol_violations, 0);
    }
}
