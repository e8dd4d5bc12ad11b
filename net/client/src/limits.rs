//! The client's limits and defaults.

use std::time::Duration;

use shoal_protocol::limits::SERVER_REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX;

/// Connections a blocking client keeps to its endpoint by default.
pub const CONNECTIONS_DEFAULT: usize = 4;
/// The most connections one client may keep.
pub const CONNECTIONS_MAX: usize = 256;
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// How long one attempt waits for its response (the router's own forwarding deadline is 5 s).
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Requests one connection has in flight at most by default; a caller past it waits for room.
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_DEFAULT: usize = 128;
/// Outgoing frames queued for an async connection's writer task.
pub const WRITE_QUEUE_FRAMES_MAX: usize = 64;

// Staying under the server's bound keeps the server reading our connection.
const _: () = assert!(
    REQUESTS_IN_FLIGHT_PER_CONNECTION_DEFAULT <= SERVER_REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX
);
const _: () = assert!(CONNECTIONS_DEFAULT <= CONNECTIONS_MAX);
