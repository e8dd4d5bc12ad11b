//! Test support: executors on their own threads with a watchdog, free ports, a responder.
#![allow(dead_code)]

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use shoal_bus::{Bus, Inbox};
use shoal_wire::messages::*;

/// Registered I/O memory per test executor (kernel-notes/glommio-runtime.md: 1 MiB starts five times faster than the
/// 10 MiB default).
pub const TEST_EXECUTOR_IO_MEMORY_BYTES: usize = 1 << 20;

/// How long any one scenario may take before the watchdog aborts the whole test process.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// Deadline for a condition a scenario waits for (well inside the watchdog).
pub const WAIT_DEADLINE: Duration = Duration::from_secs(20);

/// Aborts the process, loudly, if it is not dropped within `limit`. kernel-notes/glommio-runtime.md: multi-executor
/// glommio code has shown rare hangs, and a hung test must fail CI rather than stall it.
pub struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    pub fn start(name: &'static str, limit: Duration) -> Watchdog {
        let (disarm, disarmed) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
                eprintln!("WATCHDOG: test {name} still running after {limit:?}; aborting");
                std::process::abort();
            }
        });
        Watchdog {
            disarm: Some(disarm),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(disarm) = self.disarm.take() {
            let _ = disarm.send(());
        }
    }
}

/// Runs `make_future()` on a fresh glommio executor on its own thread.
pub fn spawn_executor<MakeFuture, Work, Output>(
    name: &str,
    make_future: MakeFuture,
) -> std::thread::JoinHandle<Output>
where
    MakeFuture: FnOnce() -> Work + Send + 'static,
    Work: Future<Output = Output> + 'static,
    Output: Send + 'static,
{
    let name = name.to_owned();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let executor = LocalExecutorBuilder::new(Placement::Unbound)
                .name(&name)
                .io_memory(TEST_EXECUTOR_IO_MEMORY_BYTES)
                .make()
                .expect("cannot start a glommio executor");
            executor.run(async move {
                // kernel-notes/glommio-runtime.md: the first timer of an executor can fire 10-100 ms late when other
                // threads existed before it started; take that hit before anything is timed.
                glommio::timer::sleep(Duration::from_millis(5)).await;
                make_future().await
            })
        })
        .expect("cannot spawn an executor thread")
}

/// Ports `free_address` draws from: below Linux's default ephemeral range (32768-60999), so a
/// port chosen here and left unbound for a while (a peer that is "down at first") cannot be
/// taken meanwhile by some connection's ephemeral local port (the likely cause of one failure
/// of tests/reconnect.rs when three test binaries ran at once with ports from `127.0.0.1:0`).
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback address with a port that was free a moment ago.
pub fn free_address() -> SocketAddr {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let mut state = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
        ^ DRAWS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for _ in 0..1000 {
        let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
        let port = TEST_PORTS.start + (shoal_rng::splitmix64(&mut state) % span) as u16;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpListener::bind(address).is_ok() {
            return address;
        }
    }
    panic!("no free port in {TEST_PORTS:?}");
}

pub fn shard(node: u64) -> ShardAddress {
    ShardAddress { node, shard: 0 }
}

/// A non-heartbeat replication envelope that carries `round` so receivers can tell them apart.
pub fn numbered(group: u64, from: u64, to: u64, round: u64) -> ReplicationEnvelope {
    ReplicationEnvelope {
        group,
        from,
        to,
        message: ReplicationMessageWire::PreCheck { round },
    }
}

pub fn heartbeat(group: u64, round: u64) -> ReplicationEnvelope {
    ReplicationEnvelope {
        group,
        from: 1,
        to: 2,
        message: ReplicationMessageWire::Accept {
            ballot: BallotWire { round: 1, node: 1 },
            round,
            first_slot: 1,
            entries: Vec::new(),
            commit_slot: 0,
        },
    }
}

/// An item request whose (opaque, here) request bytes are `text`.
pub fn item_request(text: &str) -> NodeRequest {
    NodeRequest::Item {
        partition: 1,
        epoch: 1,
        request: text.as_bytes().to_vec(),
    }
}

/// What `serve_echo` answers to an item request with bytes `request`: a GetItem result whose
/// item bytes are "echo " and the request's.
pub fn echo_of(request: impl AsRef<[u8]>) -> NodeResponse {
    NodeResponse::Item {
        result: ItemResult::Get {
            item: Some([b"echo ".as_slice(), request.as_ref()].concat()),
        },
        read_units_milli: 500,
        write_units_milli: 0,
    }
}

/// A shard stand-in: answers every item request with its echo, except requests whose text is
/// "ignore" (for timeout tests). Holds up to `hold` requests and answers them in reverse order,
/// so responses come back out of order (pipelining must match them by id).
pub async fn serve_echo(bus: Rc<Bus>, inbox: Inbox, hold: usize) {
    let mut held: Vec<(shoal_bus::ConnectionId, RequestFrame)> = Vec::new();
    while let Some(inbound) = inbox.recv().await {
        let BusMessage::Request(request) = inbound.message else {
            continue;
        };
        if matches!(&request.request, NodeRequest::Item { request, .. } if request == b"ignore") {
            continue;
        }
        held.push((inbound.from_connection, request));
        if held.len() < hold {
            continue;
        }
        for (connection, request) in held.drain(..).rev() {
            let response = match &request.request {
                NodeRequest::Item { request, .. } => echo_of(request),
                _ => NodeResponse::Created,
            };
            let _ = bus.respond(
                connection,
                ResponseFrame {
                    request_id: request.request_id,
                    response,
                },
            );
        }
    }
}

/// Waits (without blocking the executor) until `condition` holds, or panics at the deadline.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}
