//! A peer that stops reading: the writer gives up on the stalled connection after the write
//! timeout instead of holding it (and every later message) forever, and the executor keeps
//! running meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use shoal_bus::{Bus, BusConfig};
use shoal_wire::messages::*;

const ENVELOPES: u64 = 48;
const COMMAND_BYTES: usize = 1024 * 1024;

fn large_accept(round: u64) -> ReplicationEnvelope {
    ReplicationEnvelope {
        group: round,
        from: 1,
        to: 2,
        message: ReplicationMessageWire::Accept {
            ballot: BallotWire { round: 1, node: 1 },
            round,
            first_slot: 1,
            entries: vec![LogEntryWire {
                ballot: BallotWire { round: 1, node: 1 },
                payload: PayloadWire::Command(vec![0x42; COMMAND_BYTES]),
            }],
            commit_slot: 0,
        },
    }
}

#[test]
fn a_peer_that_stops_reading_loses_its_connection_after_the_write_timeout() {
    let _watchdog = Watchdog::start("stall", WATCHDOG);
    // Listens (so connects succeed and data is buffered by the kernel) but never accepts or
    // reads: once the socket buffers are full, writes stall.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_address = silent.local_addr().unwrap();
    spawn_executor("stalled-writer", move || async move {
        let mut config = BusConfig::new(
            shard(1),
            "127.0.0.1:0".parse().unwrap(),
            BTreeMap::from([(shard(2), silent_address)]),
        );
        config.write_stall_timeout = Duration::from_millis(200);
        let (bus, _inbox) = Bus::start(config).unwrap();
        let ticks = Rc::new(Cell::new(0u64));
        let ticker = {
            let ticks = ticks.clone();
            glommio::spawn_local(async move {
                loop {
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                    ticks.set(ticks.get() + 1);
                }
            })
        };
        for round in 0..ENVELOPES {
            bus.send_replication(shard(2), large_accept(round)).unwrap();
        }
        let ticks_before_stall = ticks.get();
        wait_until("the stalled write timed out", || {
            bus.stats().write_timeouts >= 1
        })
        .await;
        let stats = bus.stats();
        assert!(stats.connections_lost >= 1, "{stats:?}");
        assert!(stats.envelopes_dropped_unreachable >= 1, "{stats:?}");
        assert!(stats.envelopes_sent < ENVELOPES, "{stats:?}");
        // The executor was not blocked by the stalled write: the ticker ran during it. (Counting
        // ticks against the stall's length would be a timing assertion, which fails on a loaded
        // machine without telling anything about the bus.)
        assert!(
            ticks.get() > ticks_before_stall,
            "the ticker never ran while the write stalled"
        );
        drop(ticker);
        bus.close().await;
    })
    .join()
    .unwrap();
    drop(silent);
}
