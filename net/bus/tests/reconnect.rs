//! A peer that is down at first: the bus retries with backoff, never blocks, and delivers once
//! the peer is up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use shoal_bus::{Bus, BusConfig};
use shoal_wire::messages::*;

const ROUNDS: u64 = 20;

#[test]
fn a_peer_that_comes_up_later_receives_messages_sent_after() {
    let _watchdog = Watchdog::start("reconnect", WATCHDOG);
    let (address_1, address_2) = (free_address(), free_address());
    let peer_up = Arc::new(AtomicBool::new(false));
    let all_received = Arc::new(AtomicBool::new(false));

    let sender = {
        let (peer_up, all_received) = (peer_up.clone(), all_received.clone());
        spawn_executor("sender", move || async move {
            let mut config =
                BusConfig::new(shard(1), address_1, BTreeMap::from([(shard(2), address_2)]));
            config.reconnect_backoff_min = Duration::from_millis(5);
            config.reconnect_backoff_max = Duration::from_millis(40);
            let (bus, _inbox) = Bus::start(config).unwrap();
            // The peer is down: sends never block, and the writer keeps retrying.
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(300) {
                bus.send_replication(shard(2), numbered(1, 1, 2, 0))
                    .unwrap();
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            let down = bus.stats();
            assert!(down.connect_failures >= 3, "{down:?}");
            assert_eq!(down.connects, 0);
            // Backoff: far fewer attempts than a retry every 5 ms would make.
            assert!(down.connect_failures < 60, "{down:?}");
            assert!(down.envelopes_dropped_unreachable > 0);
            wait_until("the peer is up", || peer_up.load(Ordering::SeqCst)).await;
            // Replication resends until acknowledged; so does this test (a connect attempt
            // that failed just before the peer came up drops what was queued meanwhile).
            while !all_received.load(Ordering::SeqCst) {
                for round in 1..=ROUNDS {
                    bus.send_replication(shard(2), numbered(1, 1, 2, round))
                        .unwrap();
                }
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            let up = bus.stats();
            assert_eq!(up.connects, 1, "{up:?}");
            bus.shutdown();
        })
    };

    // Bring the peer up after the sender has failed for a while.
    std::thread::sleep(Duration::from_millis(400));
    let receiver = spawn_executor("receiver", move || async move {
        let config = BusConfig::new(shard(2), address_2, BTreeMap::new());
        let (bus, inbox) = Bus::start(config).unwrap();
        peer_up.store(true, Ordering::SeqCst);
        let mut rounds = BTreeSet::new();
        while (rounds.len() as u64) < ROUNDS {
            let inbound = glommio::timer::timeout(WAIT_DEADLINE, async { Ok(inbox.recv().await) })
                .await
                .expect("nothing received after the peer came up")
                .unwrap();
            assert_eq!(inbound.peer, Some(shard(1)));
            let BusMessage::Replication(batch) = inbound.message else {
                panic!("not replication");
            };
            for envelope in batch {
                if let ReplicationMessageWire::PreCheck { round } = envelope.message
                    && round > 0
                {
                    rounds.insert(round);
                }
            }
        }
        all_received.store(true, Ordering::SeqCst);
        bus.shutdown();
    });
    receiver.join().unwrap();
    sender.join().unwrap();
}

#[test]
fn a_restarted_peer_gets_a_new_connection() {
    let _watchdog = Watchdog::start("restart", WATCHDOG);
    spawn_executor("restart", move || async move {
        let (receiver, inbox) = Bus::start(BusConfig::new(
            shard(2),
            "127.0.0.1:0".parse().unwrap(),
            BTreeMap::new(),
        ))
        .unwrap();
        let address = receiver.local_address();
        let mut config = BusConfig::new(
            shard(1),
            "127.0.0.1:0".parse().unwrap(),
            BTreeMap::from([(shard(2), address)]),
        );
        config.reconnect_backoff_min = Duration::from_millis(5);
        config.reconnect_backoff_max = Duration::from_millis(40);
        let (sender, _inbox) = Bus::start(config).unwrap();

        sender
            .send_replication(shard(2), numbered(1, 1, 2, 1))
            .unwrap();
        let first = glommio::timer::timeout(WAIT_DEADLINE, async { Ok(inbox.recv().await) })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            first.message,
            BusMessage::Replication(vec![numbered(1, 1, 2, 1)])
        );

        // The peer restarts on the same port.
        receiver.close().await;
        drop(receiver);
        drop(inbox);
        let (restarted, inbox) =
            Bus::start(BusConfig::new(shard(2), address, BTreeMap::new())).unwrap();

        // Keep sending (as replication would) until the restarted peer hears from us.
        let mut round = 2;
        let delivered = loop {
            sender
                .send_replication(shard(2), numbered(1, 1, 2, round))
                .unwrap();
            round += 1;
            let received = glommio::timer::timeout(Duration::from_millis(20), async {
                Ok(inbox.recv().await)
            })
            .await;
            if let Ok(Some(inbound)) = received {
                break inbound;
            }
            assert!(round < 1000, "the restarted peer never heard from us");
        };
        assert_eq!(delivered.peer, Some(shard(1)));
        let stats = sender.stats();
        assert_eq!(stats.connects, 2, "{stats:?}");
        assert!(stats.connections_lost >= 1, "{stats:?}");
        sender.shutdown();
        restarted.shutdown();
    })
    .join()
    .unwrap();
}
