//! Requests from a `BusClient` to a shard's bus, pipelined, answered out of order, and timed out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use shoal_bus::{Bus, BusClient, BusClientConfig, BusConfig, ClientError};

const REQUESTS: usize = 500;
/// The responder answers in reverse batches of this many, so at least this many requests must
/// be in flight at once for any of them to complete.
const HELD: usize = 50;

#[test]
fn pipelined_requests_are_matched_to_out_of_order_responses() {
    let _watchdog = Watchdog::start("request_response", WATCHDOG);
    let shard_address = free_address();
    // The shard on one executor, the client on another.
    let shard_thread = spawn_executor("shard", move || async move {
        let config = BusConfig::new(shard(1), shard_address, BTreeMap::new());
        let (bus, inbox) = Bus::start(config).unwrap();
        let bus = Rc::new(bus);
        let server = glommio::spawn_local(serve_echo(bus.clone(), inbox, HELD));
        wait_until("the client finished", || {
            bus.connection_count() == 0 && bus.stats().responses_sent as usize >= REQUESTS
        })
        .await;
        let stats = bus.stats();
        bus.shutdown();
        drop(server);
        stats
    });
    let client_thread = spawn_executor("client", move || async move {
        // The shard's thread may not listen yet.
        let deadline = std::time::Instant::now() + WAIT_DEADLINE;
        let client = loop {
            match BusClient::connect(shard_address, BusClientConfig::default()).await {
                Ok(client) => break Rc::new(client),
                Err(error) => {
                    assert!(std::time::Instant::now() < deadline, "connect: {error}");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        let calls: Vec<_> = (0..REQUESTS)
            .map(|index| {
                let client = client.clone();
                glommio::spawn_local(async move {
                    let text = format!("request {index}");
                    (client.call(item_request(&text)).await, text)
                })
            })
            .collect();
        let mut most_in_flight = 0;
        for call in calls {
            most_in_flight = most_in_flight.max(client.in_flight());
            let (response, text) = call.await;
            assert_eq!(response.unwrap(), echo_of(&text));
        }
        assert!(most_in_flight >= HELD, "only {most_in_flight} in flight");
        let stats = client.stats();
        assert_eq!(stats.responses_received as usize, REQUESTS);
        assert_eq!(stats.timeouts, 0);
        // Closing the connection lets the shard see it go.
        drop(client);
    });
    client_thread.join().unwrap();
    let shard_stats = shard_thread.join().unwrap();
    assert_eq!(shard_stats.requests_received as usize, REQUESTS);
    assert_eq!(shard_stats.responses_sent as usize, REQUESTS);
    assert_eq!(shard_stats.connections_accepted, 1);
}

#[test]
fn an_unanswered_request_times_out_and_the_connection_keeps_working() {
    let _watchdog = Watchdog::start("request_timeout", WATCHDOG);
    spawn_executor("shard-and-client", move || async move {
        let config = BusConfig::new(shard(1), "127.0.0.1:0".parse().unwrap(), BTreeMap::new());
        let (bus, inbox) = Bus::start(config).unwrap();
        let bus = Rc::new(bus);
        let address = bus.local_address();
        let _server = glommio::spawn_local(serve_echo(bus.clone(), inbox, 1));
        let client = BusClient::connect(
            address,
            BusClientConfig {
                request_timeout: Duration::from_millis(200),
                ..BusClientConfig::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            client.call(item_request("ignore")).await,
            Err(ClientError::Timeout)
        );
        assert_eq!(client.in_flight(), 0);
        assert_eq!(
            client.call(item_request("after")).await,
            Ok(echo_of("after"))
        );
        assert_eq!(client.stats().timeouts, 1);
        bus.shutdown();
        // The shard closed the connection: the client fails fast instead of timing out.
        let closed = client.call(item_request("closed")).await;
        assert!(
            matches!(
                closed,
                Err(ClientError::ConnectionClosed | ClientError::Io { .. })
            ),
            "{closed:?}"
        );
    })
    .join()
    .unwrap();
}
