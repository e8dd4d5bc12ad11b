//! A connection that sends garbage or breaks the protocol is dropped; the bus keeps serving
//! everyone else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use shoal_bus::{BlockingClient, Bus, BusConfig, BusStats};
use shoal_wire::encode_frame;
use shoal_wire::messages::*;

/// Reads until the server closes the connection; panics if it stays open.
fn assert_closed_by_server(mut stream: TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffer = [0u8; 256];
    match stream.read(&mut buffer) {
        Ok(0) => {}
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("connection not closed by the server: {other:?}"),
    }
}

#[test]
fn garbage_and_protocol_violations_close_only_their_connection() {
    let _watchdog = Watchdog::start("bad_peers", WATCHDOG);
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
            let stats: BusStats = bus.stats();
            bus.shutdown();
            stats
        })
    };
    // Wait for the listener.
    let mut good = {
        let mut attempts = 0;
        loop {
            match BlockingClient::connect(address, Duration::from_secs(5)) {
                Ok(client) => break client,
                Err(error) => {
                    attempts += 1;
                    assert!(attempts < 500, "shard never listened: {error}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    };
    assert_eq!(
        good.call(item_request("before")).unwrap(),
        echo_of("before")
    );

    // Plain garbage (an HTTP request): bad magic.
    let mut garbage = TcpStream::connect(address).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: shard\r\nAccept: */*\r\n\r\n")
        .unwrap();
    assert_closed_by_server(garbage);

    // A valid frame with one body bit flipped: body checksum.
    let mut frame = encode_frame(&BusMessage::Hello { from: shard(9) })
        .unwrap()
        .to_vec();
    let last = frame.len() - 1;
    frame[last] ^= 1;
    let mut corrupt = TcpStream::connect(address).unwrap();
    corrupt.write_all(&frame).unwrap();
    assert_closed_by_server(corrupt);

    // Replication without a Hello first: a protocol violation.
    let mut rude = TcpStream::connect(address).unwrap();
    rude.write_all(&encode_frame(&BusMessage::Replication(vec![numbered(1, 9, 1, 1)])).unwrap())
        .unwrap();
    assert_closed_by_server(rude);

    // A Hello from node 9, then an envelope claiming to come from node 5: a protocol violation.
    let mut impostor = TcpStream::connect(address).unwrap();
    let mut bytes = encode_frame(&BusMessage::Hello { from: shard(9) })
        .unwrap()
        .to_vec();
    bytes.extend_from_slice(
        &encode_frame(&BusMessage::Replication(vec![numbered(1, 5, 1, 1)])).unwrap(),
    );
    impostor.write_all(&bytes).unwrap();
    assert_closed_by_server(impostor);

    // The well-behaved connection was never disturbed, and new ones are served.
    assert_eq!(good.call(item_request("after")).unwrap(), echo_of("after"));
    let mut fresh = BlockingClient::connect(address, Duration::from_secs(5)).unwrap();
    assert_eq!(fresh.call(item_request("fresh")).unwrap(), echo_of("fresh"));

    stop.store(true, Ordering::SeqCst);
    let stats = shard_thread.join().unwrap();
    assert_eq!(stats.frame_errors, 2, "{stats:?}");
    assert_eq!(stats.protocol_violations, 2, "{stats:?}");
    assert_eq!(stats.connections_accepted, 6, "{stats:?}");
    assert_eq!(stats.responses_sent, 3, "{stats:?}");
}
