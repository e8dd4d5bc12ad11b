//! Shoal's native client (protocol: net/protocol/FORMAT.md).
//!
//! - [`Client`]: blocking (std::net), a pool of connections, pipelining by request id, a
//!   timeout per request; share it between threads.
//! - [`AsyncClient`]: one pipelined connection on a glommio executor (`!Send`).
//!
//! Both retry by [`RetryPolicy`] (retry.rs): throttling for every operation, unknown outcomes
//! for reads only, exponential backoff with full jitter, bounded attempts and a deadline. Both
//! take and return DynamoDB JSON (`serde_json::Value`), one method per operation.
//!
//! With `ClientConfig::credentials` (an access key; `Credentials::from_env` reads the AWS
//! SDKs' variables), each connection authenticates before its first request
//! (credentials.rs; net/protocol/FORMAT.md, "Authentication").

pub mod async_io;
mod blocking;
mod credentials;
mod error;
mod glommio_client;
pub mod limits;
mod operations;
pub mod retry;
mod tls;

pub use blocking::{Client, ClientConfig, Pending};
pub use credentials::{ACCESS_KEY_ID_VARIABLE, Credentials, SECRET_ACCESS_KEY_VARIABLE};
pub use error::{
    ClientError, INTERNAL_SERVER_ERROR, PROVISIONED_THROUGHPUT_EXCEEDED, REQUEST_LIMIT_EXCEEDED,
    SERVICE_UNAVAILABLE, THROTTLING,
};
pub use glommio_client::AsyncClient;
pub use retry::RetryPolicy;
pub use shoal_protocol::Operation;
pub use tls::TlsSettings;
