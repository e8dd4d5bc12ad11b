//! A connection's requests in flight are bounded: the reader stops reading at
//! `REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX` unanswered requests, so `respond` never waits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use shoal_bus::limits::REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX;
use shoal_bus::{BlockingClient, Bus, BusConfig, ConnectionId, RespondError};
use shoal_wire::messages::*;

const EXTRA: usize = 44;
const SENT: usize = REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX + EXTRA;

async fn next_request(inbox: &shoal_bus::Inbox) -> Option<(ConnectionId, RequestFrame)> {
    let inbound =
        glommio::timer::timeout(Duration::from_millis(300), async { Ok(inbox.recv().await) })
            .await
            .ok()??;
    match inbound.message {
        BusMessage::Request(request) => Some((inbound.from_connection, request)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unanswered_requests_stop_the_reader_at_the_bound() {
    let _watchdog = Watchdog::start("in_flight", WATCHDOG);
    let address = free_address();
    let (ready_sender, ready) = std::sync::mpsc::channel();
    let shard_thread = spawn_executor("shard", move || async move {
        let (bus, inbox) = Bus::start(BusConfig::new(shard(1), address, BTreeMap::new())).unwrap();
        ready_sender.send(()).unwrap();
        // Without answering, exactly the bound arrives; the rest waits in the socket.
        let mut held = Vec::new();
        let deadline = std::time::Instant::now() + WAIT_DEADLINE;
        while held.len() < REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} arrived",
                held.len()
            );
            held.extend(next_request(&inbox).await);
        }
        assert!(
            next_request(&inbox).await.is_none(),
            "a request beyond the bound was delivered"
        );
        let (connection, first) = held[0].clone();
        assert_eq!(
            bus.respond(
                connection,
                ResponseFrame {
                    request_id: 999_999,
                    response: NodeResponse::Created
                }
            ),
            Err(RespondError::UnknownRequest {
                request_id: 999_999
            })
        );
        // Answering frees room: the others arrive, and every respond succeeds at once.
        for (connection, request) in held.drain(..) {
            bus.respond(
                connection,
                ResponseFrame {
                    request_id: request.request_id,
                    response: NodeResponse::Created,
                },
            )
            .unwrap();
        }
        // Answering the same request twice is refused.
        assert_eq!(
            bus.respond(
                connection,
                ResponseFrame {
                    request_id: first.request_id,
                    response: NodeResponse::Created
                }
            ),
            Err(RespondError::UnknownRequest {
                request_id: first.request_id
            })
        );
        let mut rest = 0;
        while rest < EXTRA {
            let (connection, request) = next_request(&inbox).await.expect("the rest arrives");
            bus.respond(
                connection,
                ResponseFrame {
                    request_id: request.request_id,
                    response: NodeResponse::Created,
                },
            )
            .unwrap();
            rest += 1;
        }
        // Once the client is gone, responding to its connection is refused.
        wait_until("the client disconnected", || bus.connection_count() == 0).await;
        assert_eq!(
            bus.respond(
                connection,
                ResponseFrame {
                    request_id: 1,
                    response: NodeResponse::Created
                }
            ),
            Err(RespondError::ConnectionClosed)
        );
        bus.close().await;
    });
    ready.recv().unwrap();
    let mut client = BlockingClient::connect(address, Duration::from_secs(10)).unwrap();
    let ids: Vec<u64> = (0..SENT)
        .map(|_| client.send(NodeRequest::Status).unwrap())
        .collect();
    for id in ids {
        let response = client.receive().unwrap();
        assert_eq!(response.request_id, id);
        assert_eq!(response.response, NodeResponse::Created);
    }
    drop(client);
    shard_thread.join().unwrap();
}
