//! Named limits of the bus. Every queue is bounded by one of these (or by a `BusConfig` field
//! whose default is one of these), and backpressure or counted drops come from the bounds.

use std::time::Duration;

use shoal_wire::limits::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES};

/// Replication envelopes queued for one peer. Past this, `send_replication` drops the envelope
/// and counts it: replication tolerates loss (a leader resends on its next heartbeat or when a
/// follower reports `missing`), and a slow peer must never block the shard's executor.
pub const OUTBOUND_QUEUE_ENVELOPES_MAX: usize = 4096;

/// Snapshot chunks queued for one peer. Senders produce chunks only while there is room
/// (`Bus::snapshot_room`) instead of dropping them: a lost chunk restarts a whole transfer, and
/// chunks are large (up to about 4.4 MiB), so a small queue bounds memory while keeping the
/// socket busy.
pub const SNAPSHOT_QUEUE_CHUNKS_MAX: usize = 4;

/// The writer packs queued envelopes into one frame until its estimated body reaches this size,
/// so one frame per write carries many groups' messages, while a frame stays small enough that
/// a large batch does not delay small messages behind it for long.
pub const REPLICATION_FRAME_BYTES_TARGET: usize = 1024 * 1024;

/// Envelopes in one replication frame, whatever their size.
pub const REPLICATION_FRAME_ENVELOPES_MAX: usize = 4096;

/// Frames waiting in the `Inbox` for the shard. Readers wait for room (TCP backpressure to the
/// senders) rather than drop, since requests must not be lost silently.
pub const INBOX_FRAMES_MAX: usize = 1024;

/// Peer shards one bus sends to (each has a writer task and two queues). A cluster of 256
/// nodes of 16 shards stays below it.
pub const PEERS_MAX: usize = 4096;

/// Inbound connections a shard serves at once; more are accepted and closed at once (counted).
pub const INBOUND_CONNECTIONS_MAX: usize = 1024;

/// Requests of one inbound connection delivered to the shard and not yet answered. The reader
/// stops reading that connection at this bound, which also bounds its response queue.
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX: usize = 256;

/// Bytes a reader asks the socket for at once.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Default reconnect backoff bounds (the first retry waits about the minimum, each failure
/// doubles it up to the maximum; the jitter draws from a seed).
pub const RECONNECT_BACKOFF_MIN_DEFAULT: Duration = Duration::from_millis(10);
pub const RECONNECT_BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(1);

/// Default bound on one socket write (a whole batch). A peer that stops reading (frozen, or a
/// machine that died without a reset, which TCP alone notices only after many minutes) would
/// otherwise hold its connection, and so every later message to it, for that long; past this
/// the connection is dropped and re-established. The largest frame (32 MiB) takes about 0.3 s
/// at 1 Gb/s, so the default leaves ample room.
pub const WRITE_STALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// Default bound on one TCP connect attempt.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);

/// Pause after a failed `accept` (for example EMFILE), so the accept loop does not spin.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Requests one `BusClient` keeps in flight; `call` waits for room past this.
pub const CLIENT_REQUESTS_IN_FLIGHT_MAX: usize = 1024;

/// Default per-request timeout of the clients.
pub const CLIENT_REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// Responses a `BlockingClient` holds that arrived for a request other than the one being
/// waited for (pipelined `send` calls); past this, the connection is treated as broken.
pub const BLOCKING_UNCLAIMED_RESPONSES_MAX: usize = 1024;

/// The largest frame on the wire, re-stated for the bus's own memory bounds.
pub const FRAME_BYTES_MAX: usize = FRAME_HEADER_BYTES + FRAME_BODY_BYTES_MAX;

const _: () = assert!(REPLICATION_FRAME_BYTES_TARGET < FRAME_BODY_BYTES_MAX);
const _: () = assert!(READ_CHUNK_BYTES >= FRAME_HEADER_BYTES);
const _: () = assert!(REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX <= INBOX_FRAMES_MAX);
const _: () =
    assert!(RECONNECT_BACKOFF_MIN_DEFAULT.as_nanos() <= RECONNECT_BACKOFF_MAX_DEFAULT.as_nanos());
