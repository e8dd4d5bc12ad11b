//! The TCP bus between shards (README.md next to this crate's Cargo.toml).
//!
//! Each shard runs one [`Bus`] on its own glommio executor, listening on its own port. Replication
//! messages to a peer shard are queued without waiting and written in batched frames by one
//! writer task per peer; frames received are delivered to the shard's [`Inbox`]; requests from
//! routers and tools are answered with [`Bus::respond`] on the connection they came on.
//! [`BusClient`] (glommio) and [`BlockingClient`] (std) are the calling side of requests.

pub mod batch;
pub mod blocking;
pub mod bus;
pub mod client;
pub mod error;
pub mod limits;
mod notify;
pub mod stats;
pub mod tls;

pub use blocking::BlockingClient;
pub use bus::{Bus, BusConfig, ConnectionId, Inbound, Inbox};
pub use client::{BusClient, BusClientConfig, ClientStats};
pub use error::{BusError, ClientError, RespondError, SendError};
pub use stats::BusStats;
pub use tls::{BUS_TLS_HANDSHAKE_TIMEOUT, BusTls, BusTlsError, HandshakeFailure};
