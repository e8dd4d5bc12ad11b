//! Listening: a port is never shared between two buses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use shoal_bus::{Bus, BusConfig, BusError};

#[test]
fn a_second_bus_on_the_same_port_fails_to_start() {
    let _watchdog = Watchdog::start("listen", WATCHDOG);
    spawn_executor("two-buses", move || async move {
        let (first, _inbox) = Bus::start(BusConfig::new(
            shard(1),
            "127.0.0.1:0".parse().unwrap(),
            BTreeMap::new(),
        ))
        .unwrap();
        let taken = first.local_address();
        // glommio's own bind would succeed here (SO_REUSEPORT) and split connections.
        let second = Bus::start(BusConfig::new(shard(2), taken, BTreeMap::new()));
        match second {
            Err(BusError::Bind { address, source }) => {
                assert_eq!(address, taken);
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("two buses listen on {taken}"),
        }
        // Neither may another glommio listener share it.
        assert!(glommio::net::TcpListener::bind(taken).is_err());
        // Once the first bus is gone, the port can be bound again at once.
        first.close().await;
        drop(first);
        let (again, _inbox) = Bus::start(BusConfig::new(shard(1), taken, BTreeMap::new())).unwrap();
        assert_eq!(again.local_address(), taken);
    })
    .join()
    .unwrap();
}

#[test]
fn a_bad_configuration_is_refused() {
    let _watchdog = Watchdog::start("config", WATCHDOG);
    spawn_executor("config", move || async move {
        let mut config = BusConfig::new(shard(1), "127.0.0.1:0".parse().unwrap(), BTreeMap::new());
        config.outbound_queue_envelopes_max = 0;
        assert!(matches!(Bus::start(config), Err(BusError::Config { .. })));
    })
    .join()
    .unwrap();
}
