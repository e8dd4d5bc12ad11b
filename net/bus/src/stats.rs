//! Counters of one bus, for the metrics endpoint and for tests.

/// A snapshot of a bus's counters since it started. Plain `u64`s: everything lives on one
/// executor, so no atomics are needed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BusStats {
    /// Frames and bytes written to and read from sockets, all connections together.
    pub frames_sent: u64,
    pub frames_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Replication envelopes written to peers, and received from them.
    pub envelopes_sent: u64,
    pub envelopes_received: u64,
    /// Envelopes dropped because the peer's outbound queue was full.
    pub envelopes_dropped_queue_full: u64,
    /// Envelopes dropped because the peer could not be reached (queued when a connect failed,
    /// or lost with a connection that broke while writing them).
    pub envelopes_dropped_unreachable: u64,
    /// Envelopes dropped because one alone exceeds the frame body limit.
    pub envelopes_dropped_oversize: u64,
    /// Heartbeats dropped because a newer one of the same group was queued behind them.
    pub heartbeats_coalesced: u64,
    pub snapshot_chunks_sent: u64,
    /// Snapshot chunks lost with a broken connection or refused as oversize.
    pub snapshot_chunks_lost: u64,
    pub snapshot_chunks_received: u64,
    pub requests_received: u64,
    pub responses_sent: u64,
    /// Responses replaced by an `OutcomeUnknown` error because they exceeded the frame body limit.
    pub responses_oversize: u64,
    /// Outbound connections established, attempts that failed, and established connections
    /// that broke (every later successful connect is a reconnect).
    pub connects: u64,
    pub connect_failures: u64,
    pub connections_lost: u64,
    /// Writes (outbound batches or inbound responses) that stalled past the write timeout; each
    /// also dropped its connection.
    pub write_timeouts: u64,
    /// Inbound connections accepted, refused at `INBOUND_CONNECTIONS_MAX`, and closed because
    /// of a frame error (bad checksum, garbage) or a protocol violation (for example
    /// replication before `Hello`).
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub frame_errors: u64,
    pub protocol_violations: u64,
    /// With bus TLS: inbound connections refused in the TLS handshake, by reason in
    /// `tls::HandshakeFailure::ALL` order (not TLS, timed out, closed, failed: a client
    /// certificate missing or not the cluster CA's), and outbound connections whose handshake
    /// failed (the peer's certificate not the cluster CA's, or not for its address; a peer
    /// without TLS).
    pub tls_handshakes_failed: [u64; 4],
    pub tls_connect_failures: u64,
}
