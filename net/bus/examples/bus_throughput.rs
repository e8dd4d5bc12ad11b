//! Loopback figures for the bus: replication envelopes per second between two executors, and
//! pipelined request round trips per second with their latency. Run with
//! `cargo run --release -p shoal-bus --example bus_throughput`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use shoal_bus::{Bus, BusClient, BusClientConfig, BusConfig};
use shoal_wire::messages::*;

const ENVELOPES: u64 = 500_000;
/// Envelopes queued between yields of the sending task (one writer pass takes them all).
const SEND_BURST: u64 = 256;
const CALLS: usize = 100_000;
const CALLS_IN_FLIGHT: usize = 64;
const IO_MEMORY_BYTES: usize = 1 << 20;

fn executor<Output: Send + 'static, Work: std::future::Future<Output = Output> + 'static>(
    name: &'static str,
    make: impl FnOnce() -> Work + Send + 'static,
) -> std::thread::JoinHandle<Output> {
    std::thread::spawn(move || {
        LocalExecutorBuilder::new(Placement::Unbound)
            .name(name)
            .io_memory(IO_MEMORY_BYTES)
            .make()
            .expect("executor")
            .run(async move {
                glommio::timer::sleep(Duration::from_millis(5)).await;
                make().await
            })
    })
}

fn accepted(round: u64) -> ReplicationEnvelope {
    ReplicationEnvelope {
        group: round % 1000,
        from: 1,
        to: 2,
        message: ReplicationMessageWire::Accepted {
            ballot: BallotWire { round: 1, node: 1 },
            round,
            match_slot: round,
            missing: false,
        },
    }
}

fn replication(receiver_address: SocketAddr) {
    let (ready_sender, ready) = mpsc::channel();
    let receiver = executor("receiver", move || async move {
        let (bus, inbox) = Bus::start(BusConfig::new(
            ShardAddress { node: 2, shard: 0 },
            receiver_address,
            BTreeMap::new(),
        ))
        .expect("bus");
        ready_sender.send(()).expect("ready");
        let mut received = 0u64;
        let mut started = None;
        while received < ENVELOPES {
            let inbound = inbox.recv().await.expect("inbox");
            started.get_or_insert_with(Instant::now);
            if let BusMessage::Replication(batch) = inbound.message {
                received += batch.len() as u64;
            }
        }
        let elapsed = started.map(|start| start.elapsed()).unwrap_or_default();
        let stats = bus.stats();
        bus.close().await;
        (elapsed, stats)
    });
    ready.recv().expect("receiver ready");
    let sender = executor("sender", move || async move {
        let to = ShardAddress { node: 2, shard: 0 };
        let (bus, _inbox) = Bus::start(BusConfig::new(
            ShardAddress { node: 1, shard: 0 },
            "127.0.0.1:0".parse().expect("address"),
            BTreeMap::from([(to, receiver_address)]),
        ))
        .expect("bus");
        let mut dropped = 0u64;
        for round in 0..ENVELOPES {
            if bus.send_replication(to, accepted(round)).is_err() {
                dropped += 1;
            }
            if round % SEND_BURST == SEND_BURST - 1 {
                glommio::yield_if_needed().await;
                // Stay below the queue bound so the figure is for delivered envelopes.
                while bus.queued_envelopes(to) > 2048 {
                    glommio::timer::sleep(Duration::from_micros(50)).await;
                }
            }
        }
        while bus.stats().envelopes_sent + dropped < ENVELOPES {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        let stats = bus.stats();
        bus.close().await;
        (dropped, stats)
    });
    let (dropped, sender_stats) = sender.join().expect("sender");
    assert_eq!(dropped, 0, "the sender dropped envelopes");
    let (elapsed, receiver_stats) = receiver.join().expect("receiver");
    println!(
        "replication: {ENVELOPES} envelopes in {:.0} ms = {:.0} envelopes/s, {} frames \
         ({:.0} envelopes/frame), {:.1} MB/s",
        elapsed.as_secs_f64() * 1e3,
        ENVELOPES as f64 / elapsed.as_secs_f64(),
        receiver_stats.frames_received,
        ENVELOPES as f64 / receiver_stats.frames_received as f64,
        receiver_stats.bytes_received as f64 / elapsed.as_secs_f64() / 1e6,
    );
    let _ = sender_stats;
}

fn requests(server_address: SocketAddr) {
    let (ready_sender, ready) = mpsc::channel();
    let (stop_sender, stop) = mpsc::channel::<()>();
    let server = executor("server", move || async move {
        let (bus, inbox) = Bus::start(BusConfig::new(
            ShardAddress { node: 1, shard: 0 },
            server_address,
            BTreeMap::new(),
        ))
        .expect("bus");
        ready_sender.send(()).expect("ready");
        let bus = Rc::new(bus);
        loop {
            let next = glommio::timer::timeout(Duration::from_millis(100), async {
                Ok(inbox.recv().await)
            })
            .await;
            match next {
                Ok(Some(inbound)) => {
                    if let BusMessage::Request(request) = inbound.message {
                        let _ = bus.respond(
                            inbound.from_connection,
                            ResponseFrame {
                                request_id: request.request_id,
                                response: NodeResponse::Created,
                            },
                        );
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    if stop.try_recv().is_ok() {
                        break;
                    }
                }
            }
        }
        bus.close().await;
    });
    ready.recv().expect("server ready");
    let client = executor("client", move || async move {
        let client = Rc::new(
            BusClient::connect(server_address, BusClientConfig::default())
                .await
                .expect("connect"),
        );
        let started = Instant::now();
        let workers: Vec<_> = (0..CALLS_IN_FLIGHT)
            .map(|_| {
                let client = client.clone();
                glommio::spawn_local(async move {
                    let mut latencies_ns = Vec::with_capacity(CALLS / CALLS_IN_FLIGHT);
                    for _ in 0..CALLS / CALLS_IN_FLIGHT {
                        let sent = Instant::now();
                        client.call(NodeRequest::Status).await.expect("call");
                        latencies_ns.push(sent.elapsed().as_nanos() as u64);
                    }
                    latencies_ns
                })
            })
            .collect();
        let mut latencies_ns = Vec::new();
        for worker in workers {
            latencies_ns.extend(worker.await);
        }
        (started.elapsed(), latencies_ns)
    });
    let (elapsed, mut latencies_ns) = client.join().expect("client");
    stop_sender.send(()).expect("stop");
    server.join().expect("server");
    latencies_ns.sort_unstable();
    let percentile = |fraction: f64| {
        latencies_ns[((latencies_ns.len() - 1) as f64 * fraction) as usize] as f64 / 1e3
    };
    println!(
        "requests: {} calls, {CALLS_IN_FLIGHT} in flight, {:.0} calls/s, latency p50 {:.0} us, \
         p99 {:.0} us, max {:.0} us",
        latencies_ns.len(),
        latencies_ns.len() as f64 / elapsed.as_secs_f64(),
        percentile(0.5),
        percentile(0.99),
        percentile(1.0),
    );
}

fn main() {
    replication("127.0.0.1:27101".parse().expect("address"));
    requests("127.0.0.1:27102".parse().expect("address"));
}
