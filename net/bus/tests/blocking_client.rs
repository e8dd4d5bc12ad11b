//! The std::net `BlockingClient` against a glommio shard: calls, hand-pipelining, timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use shoal_bus::{BlockingClient, Bus, BusConfig, ClientError};
use shoal_wire::messages::*;

#[test]
fn blocking_client_round_trips_against_a_glommio_shard() {
    let _watchdog = Watchdog::start("blocking_client", WATCHDOG);
    let address = free_address();
    let stop = Arc::new(AtomicBool::new(false));
    let shard_thread = {
        let stop = stop.clone();
        spawn_executor("shard", move || async move {
            let config = BusConfig::new(shard(1), address, BTreeMap::new());
            let (bus, inbox) = Bus::start(config).unwrap();
            let bus = Rc::new(bus);
            let _server = glommio::spawn_local(serve_echo(bus.clone(), inbox, 1));
            wait_until("the test is done", || stop.load(Ordering::SeqCst)).await;
            bus.shutdown();
        })
    };
    let mut client = {
        let deadline = Instant::now() + WAIT_DEADLINE;
        loop {
            match BlockingClient::connect(address, Duration::from_secs(2)) {
                Ok(client) => break client,
                Err(error) => {
                    assert!(Instant::now() < deadline, "shard never listened: {error}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    };
    for index in 0..100 {
        let text = format!("call {index}");
        assert_eq!(client.call(item_request(&text)).unwrap(), echo_of(&text));
    }
    // Pipelining by hand: ten sends, then ten receives (in order, from a one-at-a-time server).
    let ids: Vec<u64> = (0..10)
        .map(|index| client.send(item_request(&format!("p{index}"))).unwrap())
        .collect();
    for (index, id) in ids.into_iter().enumerate() {
        let frame = client.receive().unwrap();
        assert_eq!(frame.request_id, id);
        assert_eq!(frame.response, echo_of(format!("p{index}")));
    }
    // A status request the echo server answers with Created.
    assert_eq!(
        client.call(NodeRequest::Status).unwrap(),
        NodeResponse::Created
    );

    let mut impatient = BlockingClient::connect(address, Duration::from_millis(200)).unwrap();
    let started = Instant::now();
    assert_eq!(
        impatient.call(item_request("ignore")),
        Err(ClientError::Timeout)
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    // After a timeout the stream is out of step: the client refuses further use.
    assert_eq!(
        impatient.call(item_request("x")),
        Err(ClientError::ConnectionClosed)
    );

    stop.store(true, Ordering::SeqCst);
    shard_thread.join().unwrap();
}
