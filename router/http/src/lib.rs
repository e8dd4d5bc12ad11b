//! DynamoDB's JSON 1.0 protocol over HTTP/1.1, served on glommio.
//!
//! The crate owns everything between the socket and an operation handler: HTTP/1.1 framing
//! (request heads parsed by `httparse`, `Content-Length` and chunked bodies, keep-alive, pipelined requests
//! answered in order), limits (head size, body size, idle and slow-client timeouts, connections),
//! gzip and deflate request bodies and gzip responses when asked, SigV4 signatures (in the
//! `Authorization` header or a presigned query string, verified against the [`Api`]'s keys
//! unless authentication is off), the `X-Amz-Target` operation, CORS, and DynamoDB's error
//! bodies, status codes and response headers (`x-amzn-RequestId`, `x-amz-crc32`). What an operation does is the
//! [`Api`]'s business (the router). See README.md.
//!
//! The parsers (framing.rs, protocol.rs, sigv4.rs) are pure functions of bytes; the sockets and
//! TLS (server.rs, tls.rs) are the default `server` feature, so that the fuzz targets (fuzz/)
//! build the parsers alone.

pub mod framing;
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
pub mod sigv4;
#[cfg(feature = "server")]
pub mod tls;

pub use protocol::{ApiError, Operation};
#[cfg(feature = "server")]
pub use server::{Api, Authentication, Caller, HttpConfig, HttpServer};
#[cfg(feature = "server")]
pub use tls::{TLS_HANDSHAKE_TIMEOUT, TlsConfigError};
