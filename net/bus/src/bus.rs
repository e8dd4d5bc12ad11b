//! The bus of one shard: outbound peer writers, the accept loop, and per-connection readers
//! and response writers, all tasks of the shard's own glommio executor.
//!
//! Invariants:
//!
//! 1. Nothing on the send path awaits the network: `send_replication` and `try_send_snapshot`
//!    only queue (or drop and count), so a slow or dead peer never stalls the shard's executor.
//!    (`send_snapshot` waits for room, for callers that own a task of their own per transfer.)
//! 2. Every queue is bounded: a peer's replication queue by `outbound_queue_envelopes_max`, its
//!    snapshot queue by `snapshot_queue_chunks_max`, the inbox by `inbox_frames_max`, and a
//!    connection's unanswered plus unwritten requests by `REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX`.
//! 3. A connection that delivers one bad frame (checksum, garbage, oversize length) or breaks
//!    the protocol (replication before `Hello`, a second `Hello`, a response sent to a shard, a
//!    request id reused while in flight) is closed; other connections are unaffected.
//! 4. Task loops run until the bus shuts down; each pass does bounded work (one socket read,
//!    one drained queue) and then awaits.
//! 5. No task uses a `Latency::Matters` queue (kernel-notes/glommio-runtime.md: lost wake-ups with cross-executor
//!    channels); everything runs in the executor's default queue.
//! 6. Replication and snapshot frames are delivered only if every envelope's `from` is the node
//!    that sent `Hello` on that connection and its `to` is this node; a frame that claims another
//!    sender or receiver (misrouting, or impersonation by a misconfigured node) is a protocol
//!    violation.
//! 7. With `BusConfig::tls` (tls.rs), no byte of an inbound connection reaches the frame
//!    decoder before its TLS handshake verified the peer's certificate against the cluster CA,
//!    and an outbound connection carries no frame before the peer's certificate was verified:
//!    a plaintext or wrongly-signed peer is refused and counted (`tls_handshakes_failed`,
//!    `tls_connect_failures`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::task::JoinHandle;
use shoal_wire::messages::{
    BusMessage, NodeError, NodeResponse, ReplicationEnvelope, ResponseFrame, ShardAddress,
    SnapshotChunk,
};
use shoal_wire::{FrameDecoder, FrameError, encode_frame};

use crate::batch::{coalesce_heartbeats, pack_frames};
use crate::error::{BusError, RespondError, SendError};
use crate::limits::*;
use crate::notify::Notify;
use crate::stats::BusStats;
use crate::tls::{BUS_TLS_HANDSHAKE_TIMEOUT, BusTls};
use shoal_io::tcp::{shutdown_now, split};
use shoal_rng::Backoff;

/// How a shard's bus is set up.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// This shard.
    pub me: ShardAddress,
    /// Where this shard listens (base port + shard index in production; port 0 picks a free
    /// port, see `Bus::local_address`).
    pub listen: SocketAddr,
    /// The other shards this one sends to. More can be added with `Bus::add_peer`.
    pub peers: BTreeMap<ShardAddress, SocketAddr>,
    pub outbound_queue_envelopes_max: usize,
    pub snapshot_queue_chunks_max: usize,
    pub inbox_frames_max: usize,
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    pub connect_timeout: Duration,
    /// A write that makes no complete progress for this long drops its connection.
    pub write_stall_timeout: Duration,
    /// Seeds the reconnect jitter (mixed with each peer's address).
    pub seed: u64,
    /// Mutual TLS with the cluster CA on every connection, both ways (tls.rs); `None`:
    /// plaintext, as the bus was before (its network must then be the cluster's own).
    pub tls: Option<BusTls>,
}

impl BusConfig {
    /// A configuration with the default limits of `crate::limits`.
    pub fn new(
        me: ShardAddress,
        listen: SocketAddr,
        peers: BTreeMap<ShardAddress, SocketAddr>,
    ) -> BusConfig {
        BusConfig {
            me,
            listen,
            peers,
            outbound_queue_envelopes_max: OUTBOUND_QUEUE_ENVELOPES_MAX,
            snapshot_queue_chunks_max: SNAPSHOT_QUEUE_CHUNKS_MAX,
            inbox_frames_max: INBOX_FRAMES_MAX,
            reconnect_backoff_min: RECONNECT_BACKOFF_MIN_DEFAULT,
            reconnect_backoff_max: RECONNECT_BACKOFF_MAX_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            write_stall_timeout: WRITE_STALL_TIMEOUT_DEFAULT,
            seed: u64::from(me.shard) ^ me.node.rotate_left(16),
            tls: None,
        }
    }

    fn check(&self) -> Result<(), BusError> {
        let zero_bound = [
            (
                "outbound_queue_envelopes_max",
                self.outbound_queue_envelopes_max,
            ),
            ("snapshot_queue_chunks_max", self.snapshot_queue_chunks_max),
            ("inbox_frames_max", self.inbox_frames_max),
        ]
        .into_iter()
        .find(|(_, value)| *value == 0);
        if let Some((name, _)) = zero_bound {
            return Err(BusError::Config {
                reason: format!("{name} must be at least 1"),
            });
        }
        if self.connect_timeout.is_zero() || self.write_stall_timeout.is_zero() {
            return Err(BusError::Config {
                reason: "connect_timeout and write_stall_timeout must not be zero".into(),
            });
        }
        if self.reconnect_backoff_min > self.reconnect_backoff_max {
            return Err(BusError::Config {
                reason: "reconnect_backoff_min exceeds reconnect_backoff_max".into(),
            });
        }
        Ok(())
    }
}

/// Names one inbound connection of this bus, so a response goes back where its request came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// A frame delivered to the shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub from_connection: ConnectionId,
    /// The shard that introduced itself with `Hello` on this connection; `None` for routers,
    /// tools and clients, which send requests without one.
    pub peer: Option<ShardAddress>,
    /// Never `Hello` (consumed by the bus) and never `Response` (refused by the bus).
    pub message: BusMessage,
}

/// The shard's end of the bus: every replication batch, snapshot chunk and request received, in
/// arrival order per connection. Bounded (`BusConfig::inbox_frames_max`): while it is full,
/// readers stop reading their sockets, which pushes back on the senders.
pub struct Inbox {
    receiver: LocalReceiver<Inbound>,
}

impl Inbox {
    /// The next inbound frame; `None` once the bus is shut down and dropped.
    pub async fn recv(&self) -> Option<Inbound> {
        self.receiver.recv().await
    }
}

/// Everything queued for one peer shard.
struct Peer {
    address: ShardAddress,
    socket_address: Cell<SocketAddr>,
    replication: RefCell<VecDeque<ReplicationEnvelope>>,
    snapshots: RefCell<VecDeque<SnapshotChunk>>,
    /// Rung when something is queued: the writer waits on it.
    queued: Notify,
    /// Rung when a snapshot slot frees: `send_snapshot` waits on it.
    room: Notify,
    writer: RefCell<Option<JoinHandle<()>>>,
}

impl Peer {
    fn is_idle(&self) -> bool {
        self.replication.borrow().is_empty() && self.snapshots.borrow().is_empty()
    }
}

/// One accepted connection.
struct InboundConnection {
    /// Responses queued by `respond` and not yet taken by the writer.
    responses: RefCell<VecDeque<ResponseFrame>>,
    /// Responses the writer took and is writing.
    responses_writing: Cell<usize>,
    /// Requests delivered to the shard and not yet answered.
    in_flight: RefCell<HashSet<u64>>,
    /// Rung when a response is queued or the connection closes: the writer waits on it.
    queued: Notify,
    /// Rung when responses were written: the reader waits on it for in-flight room.
    room: Notify,
    closed: Cell<bool>,
    /// Held until the connection closes, so `shutdown_now` always names a live socket.
    stream: RefCell<Option<Rc<RefCell<TcpStream>>>>,
    reader: RefCell<Option<JoinHandle<()>>>,
    writer: RefCell<Option<JoinHandle<()>>>,
}

impl InboundConnection {
    /// Ends the connection at once (see crate::stream) and releases our hold on the socket.
    fn shut_socket(&self) {
        if let Some(stream) = self.stream.borrow_mut().take() {
            shutdown_now(&stream);
        }
    }

    /// Requests that hold a slot of `REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX` (invariant 2).
    fn outstanding(&self) -> usize {
        self.in_flight.borrow().len() + self.responses.borrow().len() + self.responses_writing.get()
    }
}

struct Shared {
    me: ShardAddress,
    local_address: SocketAddr,
    outbound_queue_envelopes_max: usize,
    snapshot_queue_chunks_max: usize,
    reconnect_backoff_min: Duration,
    reconnect_backoff_max: Duration,
    connect_timeout: Duration,
    write_stall_timeout: Duration,
    seed: u64,
    tls: Option<BusTls>,
    peers: RefCell<BTreeMap<ShardAddress, Rc<Peer>>>,
    connections: RefCell<BTreeMap<ConnectionId, Rc<InboundConnection>>>,
    next_connection_id: Cell<u64>,
    inbox: LocalSender<Inbound>,
    stats: RefCell<BusStats>,
    accept_loop: RefCell<Option<JoinHandle<()>>>,
    /// The listening socket, shared with the accept loop, until shutdown.
    listener: RefCell<Option<Listener>>,
    shut_down: Cell<bool>,
}

impl Shared {
    fn count(&self, update: impl FnOnce(&mut BusStats)) {
        update(&mut self.stats.borrow_mut());
    }
}

/// The bus of one shard. Lives on the shard's executor (it is `!Send`); share it between the
/// shard's tasks with an `Rc`. Dropping it shuts it down.
pub struct Bus {
    shared: Rc<Shared>,
}

impl Bus {
    /// Binds the listening socket and starts the accept loop. Must run inside a glommio
    /// executor; every task it starts runs on that executor.
    pub fn start(config: BusConfig) -> Result<(Bus, Inbox), BusError> {
        config.check()?;
        let bind_error = |source: std::io::Error| BusError::Bind {
            address: config.listen,
            source,
        };
        let listener = bind_exclusive(config.listen).map_err(bind_error)?;
        let local_address = listener
            .socket
            .local_addr()
            .map_err(|error| bind_error(std::io::Error::other(error.to_string())))?;
        let (inbox_sender, inbox_receiver) = local_channel::new_bounded(config.inbox_frames_max);
        let shared = Rc::new(Shared {
            me: config.me,
            local_address,
            outbound_queue_envelopes_max: config.outbound_queue_envelopes_max,
            snapshot_queue_chunks_max: config.snapshot_queue_chunks_max,
            reconnect_backoff_min: config.reconnect_backoff_min,
            reconnect_backoff_max: config.reconnect_backoff_max,
            connect_timeout: config.connect_timeout,
            write_stall_timeout: config.write_stall_timeout,
            seed: config.seed,
            tls: config.tls,
            peers: RefCell::new(BTreeMap::new()),
            connections: RefCell::new(BTreeMap::new()),
            next_connection_id: Cell::new(0),
            inbox: inbox_sender,
            stats: RefCell::new(BusStats::default()),
            accept_loop: RefCell::new(None),
            listener: RefCell::new(Some(listener.clone())),
            shut_down: Cell::new(false),
        });
        let bus = Bus { shared };
        for (address, socket_address) in config.peers {
            bus.add_peer(address, socket_address)?;
        }
        let accept_loop =
            glommio::spawn_local(run_accept_loop(bus.shared.clone(), listener.socket)).detach();
        *bus.shared.accept_loop.borrow_mut() = Some(accept_loop);
        Ok((
            bus,
            Inbox {
                receiver: inbox_receiver,
            },
        ))
    }

    /// The address this bus listens on (useful when `BusConfig::listen` had port 0).
    pub fn local_address(&self) -> SocketAddr {
        self.shared.local_address
    }

    pub fn me(&self) -> ShardAddress {
        self.shared.me
    }

    /// Adds a peer, or changes where an existing one listens (its next connection uses the new
    /// address). Nothing connects until something is sent to it.
    /// Fails only when the bus already has `PEERS_MAX` peers.
    pub fn add_peer(
        &self,
        address: ShardAddress,
        socket_address: SocketAddr,
    ) -> Result<(), BusError> {
        let mut peers = self.shared.peers.borrow_mut();
        match peers.get(&address) {
            Some(peer) => peer.socket_address.set(socket_address),
            None => {
                if peers.len() >= PEERS_MAX {
                    return Err(BusError::Config {
                        reason: format!("more than {PEERS_MAX} peers"),
                    });
                }
                peers.insert(
                    address,
                    Rc::new(Peer {
                        address,
                        socket_address: Cell::new(socket_address),
                        replication: RefCell::new(VecDeque::new()),
                        snapshots: RefCell::new(VecDeque::new()),
                        queued: Notify::default(),
                        room: Notify::default(),
                        writer: RefCell::new(None),
                    }),
                );
            }
        }
        Ok(())
    }

    /// The peer, with its writer task started (connections are made lazily, by the writer).
    fn peer(&self, to: ShardAddress) -> Result<Rc<Peer>, SendError> {
        if self.shared.shut_down.get() {
            return Err(SendError::ShutDown);
        }
        let peer = self
            .shared
            .peers
            .borrow()
            .get(&to)
            .cloned()
            .ok_or(SendError::UnknownPeer(to))?;
        if peer.writer.borrow().is_none() {
            let writer =
                glommio::spawn_local(run_peer_writer(self.shared.clone(), peer.clone())).detach();
            *peer.writer.borrow_mut() = Some(writer);
        }
        Ok(peer)
    }

    /// Queues one replication message for `to` without waiting (invariant 1). When the peer's
    /// queue is full the envelope is dropped and counted (`QueueFull`): replication tolerates
    /// message loss, and a stalled peer must not stall this shard. The writer sends everything
    /// queued for a peer in as few frames as possible, coalescing superseded heartbeats.
    pub fn send_replication(
        &self,
        to: ShardAddress,
        envelope: ReplicationEnvelope,
    ) -> Result<(), SendError> {
        let peer = self.peer(to)?;
        {
            let mut queue = peer.replication.borrow_mut();
            if queue.len() >= self.shared.outbound_queue_envelopes_max {
                drop(queue);
                self.shared
                    .count(|stats| stats.envelopes_dropped_queue_full += 1);
                return Err(SendError::QueueFull);
            }
            queue.push_back(envelope);
        }
        peer.queued.notify_all();
        Ok(())
    }

    /// How many snapshot chunks `to`'s queue takes now: a sender that produces no more than
    /// this and queues them with `try_send_snapshot` never waits (invariant 1). A peer that is
    /// unreachable keeps its queued chunks, so its room stays 0 until it comes back.
    pub fn snapshot_room(&self, to: ShardAddress) -> usize {
        let Ok(peer) = self.peer(to) else {
            return 0;
        };
        self.shared
            .snapshot_queue_chunks_max
            .saturating_sub(peer.snapshots.borrow().len())
    }

    /// Queues one snapshot chunk for `to` without waiting; `QueueFull` (the chunk is dropped)
    /// when `snapshot_room` is 0. This is what a shard's replicas use: nothing a dead or slow
    /// follower does may stop the task that serves the partition.
    pub fn try_send_snapshot(
        &self,
        to: ShardAddress,
        chunk: SnapshotChunk,
    ) -> Result<(), SendError> {
        let peer = self.peer(to)?;
        if peer.snapshots.borrow().len() >= self.shared.snapshot_queue_chunks_max {
            self.shared.count(|stats| stats.snapshot_chunks_lost += 1);
            return Err(SendError::QueueFull);
        }
        peer.snapshots.borrow_mut().push_back(chunk);
        peer.queued.notify_all();
        Ok(())
    }

    /// Queues one snapshot chunk for `to`, waiting while the peer's snapshot queue is full
    /// (backpressure: a lost chunk costs a whole transfer). It waits as long as the peer is
    /// unreachable; callers bound the transfer with their own timeout. Chunks of one transfer
    /// go out in order on one connection; a chunk lost with a broken connection is counted in
    /// `snapshot_chunks_lost`, and the receiver sees the gap in `chunk_index`.
    pub async fn send_snapshot(
        &self,
        to: ShardAddress,
        chunk: SnapshotChunk,
    ) -> Result<(), SendError> {
        let peer = self.peer(to)?;
        // Each pass either queues the chunk or waits for the writer to take one; the writer
        // takes one per write, so the wait ends unless the peer stays unreachable.
        loop {
            if self.shared.shut_down.get() {
                return Err(SendError::ShutDown);
            }
            if peer.snapshots.borrow().len() < self.shared.snapshot_queue_chunks_max {
                peer.snapshots.borrow_mut().push_back(chunk);
                peer.queued.notify_all();
                return Ok(());
            }
            peer.room.notified().await;
        }
    }

    /// Queues the response to a request received on `connection`, without waiting. Room is
    /// guaranteed: the connection's reader admits no more requests than its response queue
    /// holds (invariant 2).
    pub fn respond(
        &self,
        connection: ConnectionId,
        response: ResponseFrame,
    ) -> Result<(), RespondError> {
        let Some(state) = self.shared.connections.borrow().get(&connection).cloned() else {
            return Err(RespondError::ConnectionClosed);
        };
        if state.closed.get() {
            return Err(RespondError::ConnectionClosed);
        }
        if !state.in_flight.borrow_mut().remove(&response.request_id) {
            return Err(RespondError::UnknownRequest {
                request_id: response.request_id,
            });
        }
        state.responses.borrow_mut().push_back(response);
        state.queued.notify_all();
        Ok(())
    }

    /// Envelopes queued for `to` and not yet taken by its writer.
    pub fn queued_envelopes(&self, to: ShardAddress) -> usize {
        self.shared
            .peers
            .borrow()
            .get(&to)
            .map_or(0, |peer| peer.replication.borrow().len())
    }

    /// Requests received on inbound connections and not yet answered and written, summed
    /// over the connections, and the most any one connection holds (a connection at
    /// `REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX` stops reading: invariant 2).
    pub fn requests_outstanding(&self) -> (usize, usize) {
        self.shared
            .connections
            .borrow()
            .values()
            .map(|connection| connection.outstanding())
            .fold((0, 0), |(sum, max), outstanding| {
                (sum + outstanding, max.max(outstanding))
            })
    }

    /// Inbound connections open now.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.borrow().len()
    }

    pub fn stats(&self) -> BusStats {
        *self.shared.stats.borrow()
    }

    /// Stops every task of this bus. Queued messages are discarded; waiting `send_snapshot`
    /// calls return `ShutDown`; inbound connections are shut down at once. The listening socket
    /// and outbound sockets close when the executor next runs the cancelled tasks (at its next
    /// scheduling point); use [`Bus::close`] to wait for that. Idempotent.
    pub fn shutdown(&self) {
        drop(self.cancel_tasks());
    }

    /// Shuts down like [`Bus::shutdown`] and returns once every task has stopped and every
    /// socket is closed, so the listening port can be bound again at once.
    pub async fn close(&self) {
        for task in self.cancel_tasks() {
            // A cancelled task resolves once its future (and the sockets it owns) is dropped.
            let _ = task.await;
        }
    }

    /// Cancels every task (the first call only) and returns their handles.
    fn cancel_tasks(&self) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        if self.shared.shut_down.replace(true) {
            return tasks;
        }
        if let Some(listener) = self.shared.listener.borrow_mut().take() {
            listener.shut_down();
        }
        tasks.extend(self.shared.accept_loop.borrow_mut().take());
        let peers: Vec<Rc<Peer>> = self.shared.peers.borrow().values().cloned().collect();
        for peer in peers {
            tasks.extend(peer.writer.borrow_mut().take());
            peer.replication.borrow_mut().clear();
            peer.snapshots.borrow_mut().clear();
            peer.room.notify_all();
        }
        let connections = std::mem::take(&mut *self.shared.connections.borrow_mut());
        for connection in connections.into_values() {
            connection.closed.set(true);
            connection.shut_socket();
            tasks.extend(connection.reader.borrow_mut().take());
            tasks.extend(connection.writer.borrow_mut().take());
        }
        for task in &tasks {
            task.cancel();
        }
        tasks
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The listening socket and its descriptor (glommio's listener does not expose it).
#[derive(Clone)]
struct Listener {
    socket: Rc<TcpListener>,
    descriptor: RawFd,
}

impl Listener {
    /// Takes the socket out of the listening state now. Cancelling the accept loop is not
    /// enough: its io_uring accept keeps the socket listening until the kernel has processed
    /// the cancellation, and meanwhile a restarted bus cannot bind the port (seen in
    /// tests/reconnect.rs). A shut-down socket no longer conflicts with a new SO_REUSEADDR bind.
    fn shut_down(&self) {
        // SAFETY: `descriptor` belongs to `socket`, which `self` keeps alive for the whole call,
        // so it names our listening socket and not a reused descriptor. shutdown(2) takes no
        // pointers; its result needs no handling (the goal is a socket that stops listening).
        unsafe {
            libc::shutdown(self.descriptor, libc::SHUT_RDWR);
        }
    }
}

/// Binds a listening socket that no other socket can share.
///
/// glommio's `TcpListener::bind` sets SO_REUSEPORT, so a second shard (or a second process)
/// misconfigured with the same port would bind successfully and the kernel would split incoming
/// connections between the two: requests would reach a shard that does not own their partition.
/// std's bind sets SO_REUSEADDR (a restarted shard can rebind past TIME_WAIT) but not
/// SO_REUSEPORT, so a duplicate fails loudly with EADDRINUSE instead.
fn bind_exclusive(address: SocketAddr) -> std::io::Result<Listener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let descriptor = listener.into_raw_fd();
    // SAFETY: `descriptor` is a bound, listening TCP socket that `into_raw_fd` released to us;
    // glommio's listener takes ownership and closes it when dropped. No other handle exists.
    let socket = unsafe { TcpListener::from_raw_fd(descriptor) };
    Ok(Listener {
        socket: Rc::new(socket),
        descriptor,
    })
}

/// Why a write failed.
enum WriteFailure {
    Io,
    Stalled,
}

/// Writes all of `bytes`, or fails when the socket fails or the write takes longer than the
/// write stall timeout (counted). Either way the caller drops the connection: a partial frame
/// may have been written.
async fn write_within(
    shared: &Shared,
    writer: &mut (impl futures_lite::AsyncWrite + Unpin),
    bytes: &[u8],
) -> Result<(), WriteFailure> {
    // Flushed: a TLS stream holds sealed records until then (a plain socket has nothing to
    // flush).
    let write = async {
        writer.write_all(bytes).await?;
        writer.flush().await
    };
    let write = async { write.await.map_err(|_| WriteFailure::Io) };
    let stall = async {
        glommio::timer::sleep(shared.write_stall_timeout).await;
        Err(WriteFailure::Stalled)
    };
    let result = futures_lite::future::or(write, stall).await;
    if let Err(WriteFailure::Stalled) = result {
        shared.count(|stats| stats.write_timeouts += 1);
    }
    result
}

/// An outbound connection: written to only (the peer never answers on it).
type PeerStream = Box<dyn AsyncWrite + Unpin>;

/// Connects to a peer (through the TLS handshake when the bus has TLS: invariant 7) and
/// introduces this shard with `Hello`.
async fn connect_to_peer(shared: &Shared, peer: &Peer) -> Option<PeerStream> {
    let address = peer.socket_address.get();
    let stream = TcpStream::connect_timeout(address, shared.connect_timeout)
        .await
        .ok()?;
    // Replication frames are small and latency-bound; do not let Nagle hold them back.
    stream.set_nodelay(true).ok()?;
    let mut stream: PeerStream = match &shared.tls {
        None => Box::new(stream),
        Some(tls) => {
            match crate::tls::connect(&tls.connector(), address, stream, BUS_TLS_HANDSHAKE_TIMEOUT)
                .await
            {
                Ok(secured) => Box::new(secured),
                Err(_) => {
                    shared.count(|stats| stats.tls_connect_failures += 1);
                    return None;
                }
            }
        }
    };
    let hello = encode_frame(&BusMessage::Hello { from: shared.me }).ok()?;
    write_within(shared, &mut stream, &hello).await.ok()?;
    shared.count(|stats| {
        stats.frames_sent += 1;
        stats.bytes_sent += hello.len() as u64;
    });
    Some(stream)
}

/// What one pass of a peer writer put into its write buffer.
#[derive(Default)]
struct WriteBatch {
    bytes: Vec<u8>,
    frames: u64,
    envelopes: u64,
    snapshot_chunks: u64,
}

/// Appends the frame of `message` to the batch; an error (the message exceeds the frame body
/// limit) leaves the batch unchanged.
fn append_frame(batch: &mut WriteBatch, message: &BusMessage) -> Result<(), FrameError> {
    let frame = encode_frame(message)?;
    batch.bytes.extend_from_slice(&frame);
    batch.frames += 1;
    Ok(())
}

/// Takes everything queued for the peer: all replication envelopes (coalesced and packed into
/// frames) and at most one snapshot chunk, so replication is never stuck behind a transfer.
fn take_write_batch(shared: &Shared, peer: &Peer) -> WriteBatch {
    let mut batch = WriteBatch::default();
    let queued: Vec<ReplicationEnvelope> = peer.replication.borrow_mut().drain(..).collect();
    let (envelopes, coalesced) = coalesce_heartbeats(queued);
    shared.count(|stats| stats.heartbeats_coalesced += coalesced as u64);
    for frame_envelopes in pack_frames(
        envelopes,
        REPLICATION_FRAME_BYTES_TARGET,
        REPLICATION_FRAME_ENVELOPES_MAX,
    ) {
        let count = frame_envelopes.len() as u64;
        let message = BusMessage::Replication(frame_envelopes);
        match append_frame(&mut batch, &message) {
            Ok(()) => batch.envelopes += count,
            Err(_) => {
                // The estimate let an oversize frame through: send the envelopes one per frame,
                // and drop (and count) any that alone exceeds the limit.
                let BusMessage::Replication(frame_envelopes) = message else {
                    continue;
                };
                for envelope in frame_envelopes {
                    match append_frame(&mut batch, &BusMessage::Replication(vec![envelope])) {
                        Ok(()) => batch.envelopes += 1,
                        Err(_) => shared.count(|stats| stats.envelopes_dropped_oversize += 1),
                    }
                }
            }
        }
    }
    let chunk = peer.snapshots.borrow_mut().pop_front();
    if let Some(chunk) = chunk {
        peer.room.notify_all();
        match append_frame(&mut batch, &BusMessage::Snapshot(chunk)) {
            Ok(()) => batch.snapshot_chunks += 1,
            Err(_) => shared.count(|stats| stats.snapshot_chunks_lost += 1),
        }
    }
    batch
}

/// The writer of one peer: connects lazily, reconnects with backoff, and writes everything
/// queued in one `write_all` per pass.
async fn run_peer_writer(shared: Rc<Shared>, peer: Rc<Peer>) {
    let peer_seed = shoal_rng::splitmix64(
        &mut (shared.seed ^ peer.address.node.rotate_left(16) ^ u64::from(peer.address.shard)),
    );
    let mut backoff = Backoff::new(
        shared.reconnect_backoff_min,
        shared.reconnect_backoff_max,
        peer_seed,
    );
    let mut stream: Option<PeerStream> = None;
    // Invariant 4: runs until shutdown cancels it; each pass connects once or writes once.
    while !shared.shut_down.get() {
        if peer.is_idle() {
            peer.queued.notified().await;
            continue;
        }
        if stream.is_none() {
            stream = connect_to_peer(&shared, &peer).await;
            if stream.is_some() {
                backoff.reset();
                shared.count(|stats| stats.connects += 1);
            } else {
                // Replication messages queued for an unreachable peer are stale by the time it
                // returns, and the core resends what matters; drop them so the peer gets only
                // fresh messages. Snapshot chunks stay queued (their sender is waiting).
                let dropped = peer.replication.borrow_mut().drain(..).count() as u64;
                shared.count(|stats| {
                    stats.connect_failures += 1;
                    stats.envelopes_dropped_unreachable += dropped;
                });
                glommio::timer::sleep(backoff.next_delay()).await;
                continue;
            }
        }
        let batch = take_write_batch(&shared, &peer);
        if batch.bytes.is_empty() {
            continue;
        }
        let Some(connection) = stream.as_mut() else {
            continue;
        };
        match write_within(&shared, connection, &batch.bytes).await {
            Ok(()) => shared.count(|stats| {
                stats.frames_sent += batch.frames;
                stats.bytes_sent += batch.bytes.len() as u64;
                stats.envelopes_sent += batch.envelopes;
                stats.snapshot_chunks_sent += batch.snapshot_chunks;
            }),
            Err(_) => {
                stream = None;
                shared.count(|stats| {
                    stats.connections_lost += 1;
                    stats.envelopes_dropped_unreachable += batch.envelopes;
                    stats.snapshot_chunks_lost += batch.snapshot_chunks;
                });
            }
        }
    }
}

async fn run_accept_loop(shared: Rc<Shared>, listener: Rc<TcpListener>) {
    // Invariant 4: runs until shutdown cancels it; each pass accepts one connection.
    while !shared.shut_down.get() {
        match listener.accept().await {
            Ok(stream) => {
                if shared.connections.borrow().len() >= INBOUND_CONNECTIONS_MAX {
                    shared.count(|stats| stats.connections_refused += 1);
                    drop(stream);
                    continue;
                }
                start_connection(&shared, stream);
            }
            // For example EMFILE: pause rather than spin; the listener stays open.
            Err(_) => glommio::timer::sleep(ACCEPT_ERROR_PAUSE).await,
        }
    }
}

fn start_connection(shared: &Rc<Shared>, stream: TcpStream) {
    // Responses are latency-bound, like replication frames.
    let _ = stream.set_nodelay(true);
    let id = ConnectionId(shared.next_connection_id.get());
    shared.next_connection_id.set(id.0 + 1);
    let connection = Rc::new(InboundConnection {
        responses: RefCell::new(VecDeque::new()),
        responses_writing: Cell::new(0),
        in_flight: RefCell::new(HashSet::new()),
        queued: Notify::default(),
        room: Notify::default(),
        closed: Cell::new(false),
        stream: RefCell::new(None),
        reader: RefCell::new(None),
        writer: RefCell::new(None),
    });
    shared
        .connections
        .borrow_mut()
        .insert(id, connection.clone());
    shared.count(|stats| stats.connections_accepted += 1);
    if let Some(tls) = &shared.tls {
        // The handshake runs in the reader task, which starts the writer once it is done.
        let reader = glommio::spawn_local(run_tls_connection(
            shared.clone(),
            id,
            connection.clone(),
            tls.clone(),
            stream,
        ))
        .detach();
        *connection.reader.borrow_mut() = Some(reader);
        return;
    }
    let (read_half, write_half, whole) = split(stream);
    *connection.stream.borrow_mut() = Some(whole);
    let reader = glommio::spawn_local(run_connection_reader(
        shared.clone(),
        id,
        connection.clone(),
        read_half,
    ))
    .detach();
    let writer = glommio::spawn_local(run_connection_writer(
        shared.clone(),
        id,
        connection.clone(),
        write_half,
    ))
    .detach();
    *connection.reader.borrow_mut() = Some(reader);
    *connection.writer.borrow_mut() = Some(writer);
}

/// An inbound connection of a bus with TLS (invariant 7): screened (a plaintext first byte is
/// refused), taken through the handshake that verifies the peer's certificate against the
/// cluster CA, then served like a plaintext one over the TLS stream. A refusal is counted by
/// reason and closes the connection.
async fn run_tls_connection(
    shared: Rc<Shared>,
    id: ConnectionId,
    connection: Rc<InboundConnection>,
    tls: BusTls,
    stream: TcpStream,
) {
    let deadline = std::time::Instant::now() + BUS_TLS_HANDSHAKE_TIMEOUT;
    let screened = crate::tls::screen(&stream, BUS_TLS_HANDSHAKE_TIMEOUT).await;
    // The TLS stream runs over one handle of the shared socket; the third handle is kept for
    // `shut_socket`, which must reach the socket under the TLS layer.
    let (handle, _, whole) = split(stream);
    *connection.stream.borrow_mut() = Some(whole);
    let secured = match screened {
        Ok(()) => {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            crate::tls::accept(&tls.acceptor(), handle, remaining).await
        }
        Err(failure) => Err(failure),
    };
    let secured = match secured {
        Ok(secured) => secured,
        Err(failure) => {
            shared.count(|stats| stats.tls_handshakes_failed[failure.index()] += 1);
            close_connection(&shared, id, &connection, true);
            return;
        }
    };
    let (read_half, write_half) = futures_lite::io::split(secured);
    let writer = glommio::spawn_local(run_connection_writer(
        shared.clone(),
        id,
        connection.clone(),
        write_half,
    ))
    .detach();
    *connection.writer.borrow_mut() = Some(writer);
    run_connection_reader(shared, id, connection, read_half).await;
}

/// Marks a connection closed, removes it, and stops its other task (`from_reader` says which
/// task is calling; a task never cancels itself, it returns).
fn close_connection(
    shared: &Shared,
    id: ConnectionId,
    connection: &InboundConnection,
    from_reader: bool,
) {
    connection.closed.set(true);
    connection.shut_socket();
    shared.connections.borrow_mut().remove(&id);
    let other = if from_reader {
        connection.writer.borrow_mut().take()
    } else {
        connection.reader.borrow_mut().take()
    };
    if let Some(task) = other {
        task.cancel();
    }
    connection.queued.notify_all();
    connection.room.notify_all();
}

/// Why a reader stopped.
enum ReaderEnd {
    Closed,
    FrameError,
    ProtocolViolation,
    InboxClosed,
}

async fn run_connection_reader(
    shared: Rc<Shared>,
    id: ConnectionId,
    connection: Rc<InboundConnection>,
    read_half: impl AsyncRead + Unpin,
) {
    let end = read_connection(&shared, id, &connection, read_half).await;
    match end {
        ReaderEnd::FrameError => shared.count(|stats| stats.frame_errors += 1),
        ReaderEnd::ProtocolViolation => shared.count(|stats| stats.protocol_violations += 1),
        ReaderEnd::Closed | ReaderEnd::InboxClosed => {}
    }
    close_connection(&shared, id, &connection, true);
}

async fn read_connection(
    shared: &Shared,
    id: ConnectionId,
    connection: &InboundConnection,
    mut read_half: impl AsyncRead + Unpin,
) -> ReaderEnd {
    let mut decoder = FrameDecoder::new();
    let mut buffer = vec![0u8; READ_CHUNK_BYTES];
    let mut hello: Option<ShardAddress> = None;
    // Invariant 4: one socket read per pass, until the connection ends.
    while !connection.closed.get() {
        let read = match read_half.read(&mut buffer).await {
            Ok(0) | Err(_) => return ReaderEnd::Closed,
            Ok(read) => read,
        };
        shared.count(|stats| stats.bytes_received += read as u64);
        let mut input = &buffer[..read];
        // Each decode call consumes at least one byte (shoal-wire frame invariant 5).
        for _ in 0..read {
            if input.is_empty() {
                break;
            }
            let message = match decoder.decode(&mut input) {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_) => return ReaderEnd::FrameError,
            };
            shared.count(|stats| stats.frames_received += 1);
            if let Some(end) = deliver(shared, id, connection, &mut hello, message).await {
                return end;
            }
        }
    }
    ReaderEnd::Closed
}

/// Hands one received message to the shard, or says why the connection must end.
async fn deliver(
    shared: &Shared,
    id: ConnectionId,
    connection: &InboundConnection,
    hello: &mut Option<ShardAddress>,
    message: BusMessage,
) -> Option<ReaderEnd> {
    match &message {
        BusMessage::Hello { from } => {
            if hello.is_some() {
                return Some(ReaderEnd::ProtocolViolation);
            }
            *hello = Some(*from);
            return None;
        }
        BusMessage::Replication(envelopes) => {
            let Some(sender) = hello else {
                return Some(ReaderEnd::ProtocolViolation);
            };
            // Invariant 6: every envelope names the node that introduced itself as its sender
            // and this node as its receiver.
            if envelopes
                .iter()
                .any(|envelope| envelope.from != sender.node || envelope.to != shared.me.node)
            {
                return Some(ReaderEnd::ProtocolViolation);
            }
            shared.count(|stats| stats.envelopes_received += envelopes.len() as u64);
        }
        BusMessage::Snapshot(chunk) => {
            let Some(sender) = hello else {
                return Some(ReaderEnd::ProtocolViolation);
            };
            // Invariant 6, for snapshot chunks.
            if chunk.from != sender.node || chunk.to != shared.me.node {
                return Some(ReaderEnd::ProtocolViolation);
            }
            shared.count(|stats| stats.snapshot_chunks_received += 1);
        }
        BusMessage::Request(request) => {
            // Invariant 2: wait (not reading the socket meanwhile) until the shard has answered
            // and the writer has written enough earlier requests.
            while connection.outstanding() >= REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX {
                if connection.closed.get() {
                    return Some(ReaderEnd::Closed);
                }
                connection.room.notified().await;
            }
            if !connection.in_flight.borrow_mut().insert(request.request_id) {
                return Some(ReaderEnd::ProtocolViolation);
            }
            shared.count(|stats| stats.requests_received += 1);
        }
        BusMessage::Response(_) => return Some(ReaderEnd::ProtocolViolation),
    }
    let inbound = Inbound {
        from_connection: id,
        peer: *hello,
        message,
    };
    match shared.inbox.send(inbound).await {
        Ok(()) => None,
        Err(_) => Some(ReaderEnd::InboxClosed),
    }
}

async fn run_connection_writer(
    shared: Rc<Shared>,
    id: ConnectionId,
    connection: Rc<InboundConnection>,
    mut write_half: impl AsyncWrite + Unpin,
) {
    // Invariant 4: one drained response queue per pass, until the connection closes.
    while !connection.closed.get() {
        if connection.responses.borrow().is_empty() {
            connection.queued.notified().await;
            continue;
        }
        let responses: Vec<ResponseFrame> = connection.responses.borrow_mut().drain(..).collect();
        connection.responses_writing.set(responses.len());
        let mut bytes = Vec::new();
        let mut frames = 0u64;
        for response in responses {
            let request_id = response.request_id;
            let frame = match encode_frame(&BusMessage::Response(response)) {
                Ok(frame) => frame,
                Err(error) => {
                    // The client still gets an answer instead of a timeout. The request was
                    // served (a write applied), but this answer cannot say how.
                    shared.count(|stats| stats.responses_oversize += 1);
                    let replacement = BusMessage::Response(ResponseFrame {
                        request_id,
                        response: NodeResponse::Error(NodeError::OutcomeUnknown {
                            message: format!("response not sent: {error}"),
                        }),
                    });
                    match encode_frame(&replacement) {
                        Ok(frame) => frame,
                        Err(_) => continue,
                    }
                }
            };
            bytes.extend_from_slice(&frame);
            frames += 1;
        }
        let written = write_within(&shared, &mut write_half, &bytes).await;
        connection.responses_writing.set(0);
        connection.room.notify_all();
        match written {
            Ok(()) => shared.count(|stats| {
                stats.frames_sent += frames;
                stats.responses_sent += frames;
                stats.bytes_sent += bytes.len() as u64;
            }),
            Err(_) => {
                close_connection(&shared, id, &connection, false);
                return;
            }
        }
    }
}
