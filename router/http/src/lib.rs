//! DynamoDB's JSON 1.0 protocol over HTTP/1.1, served on glommio.
//!
//! The crate owns everything between the socket and an operation handler: HTTP/1.1 framing
//! (request heads parsed by `httparse`, `Content-Length` bodies, keep-alive, pipelined requests
//! answered in order), limits (head size, body size, idle and slow-client timeouts, connections),
//! gzip and deflate request bodies and gzip responses when asked, SigV4 signatures (in the
//! `Authorization` header or a presigned query string, verified against the [`Api`]'s keys
//! unless authentication is off), the `X-Amz-Target` operation, and DynamoDB's error bodies, status codes and
//! response headers (`x-amzn-RequestId`, `x-amz-crc32`). What an operation does is the
//! [`Api`]'s business (the router). See README.md.

pub mod framing;
pub mod protocol;
pub mod server;
pub mod sigv4;
pub mod tls;

pub use protocol::{ApiError, Operation};
pub use server::{Api, Authentication, Caller, HttpConfig, HttpServer};
pub use tls::{TLS_HANDSHAKE_TIMEOUT, TlsConfigError};
