//! The bus's error values.

use std::fmt;
use std::io;

use shoal_wire::FrameError;
use shoal_wire::messages::ShardAddress;

/// Why the bus could not start.
#[derive(Debug)]
pub enum BusError {
    /// Binding the listening socket failed.
    Bind {
        address: std::net::SocketAddr,
        source: io::Error,
    },
    /// The configuration is inconsistent (for example a zero queue bound).
    Config { reason: String },
}

impl fmt::Display for BusError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::Bind { address, source } => {
                write!(formatter, "cannot listen on {address}: {source}")
            }
            BusError::Config { reason } => write!(formatter, "invalid bus configuration: {reason}"),
        }
    }
}

impl std::error::Error for BusError {}

/// Why a message was not queued for a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The peer is not in the bus's peer table (`BusConfig::peers` or `Bus::add_peer`).
    UnknownPeer(ShardAddress),
    /// The peer's outbound queue is full: the envelope was dropped and counted.
    QueueFull,
    /// The bus was shut down.
    ShutDown,
}

impl fmt::Display for SendError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownPeer(address) => write!(formatter, "unknown peer {address:?}"),
            SendError::QueueFull => write!(formatter, "outbound queue full, message dropped"),
            SendError::ShutDown => write!(formatter, "the bus is shut down"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why a response could not be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespondError {
    /// The connection the request came on is gone; the client will time out or has already.
    ConnectionClosed,
    /// No request with this id is waiting for an answer on this connection (already answered,
    /// or never received).
    UnknownRequest { request_id: u64 },
}

impl fmt::Display for RespondError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespondError::ConnectionClosed => write!(formatter, "connection closed"),
            RespondError::UnknownRequest { request_id } => {
                write!(
                    formatter,
                    "no request {request_id} in flight on this connection"
                )
            }
        }
    }
}

impl std::error::Error for RespondError {}

/// Why a client request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    Io {
        kind: io::ErrorKind,
        message: String,
    },
    /// No response within the request timeout.
    Timeout,
    /// The connection closed (or was closed after an earlier error) before the response came.
    ConnectionClosed,
    /// The server sent a frame that does not decode; the connection is dropped.
    Frame(FrameError),
    /// The request could not be framed (for example larger than the frame body limit).
    Encode(FrameError),
    /// The server sent something other than a response.
    Protocol { message: String },
}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            kind => ClientError::Io {
                kind,
                message: error.to_string(),
            },
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io { message, .. } => write!(formatter, "I/O error: {message}"),
            ClientError::Timeout => write!(formatter, "request timed out"),
            ClientError::ConnectionClosed => write!(formatter, "connection closed"),
            ClientError::Frame(error) => write!(formatter, "bad frame from server: {error}"),
            ClientError::Encode(error) => write!(formatter, "cannot encode request: {error}"),
            ClientError::Protocol { message } => write!(formatter, "protocol error: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}
