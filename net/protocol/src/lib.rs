//! Shoal's native client protocol, version 2 (FORMAT.md): the flatbuffers schema
//! (schema/shoal.fbs), the Rust code flatc generated from it (src/generated, checked in;
//! scripts/generate.sh), the frame around each buffer (u32 LE length, u32 LE crc32c, buffer),
//! and the conversions between the schema's typed tables and DynamoDB JSON value trees
//! (`serde_json::Value`), in memory. Pure: no IO beyond reading a frame from a blocking
//! `std::io::Read`.

mod decode;
mod encode;
pub mod frame;
pub mod handshake;
pub mod limits;
pub mod message;
pub mod v1;

/// The code flatc 25.12.19 generated from schema/shoal.fbs. Never edited by hand.
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::host_endian_bytes,
    unsafe_op_in_unsafe_fn,
    non_camel_case_types,
    unused_imports,
    deprecated
)]
#[rustfmt::skip]
pub mod generated {
    include!("generated/shoal_generated.rs");
}

/// The code flatc 25.12.19 generated from schema/shoal_v1.fbs (version 1, frozen). Never
/// edited by hand.
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::host_endian_bytes,
    unsafe_op_in_unsafe_fn,
    non_camel_case_types,
    unused_imports,
    dead_code,
    deprecated
)]
#[rustfmt::skip]
pub mod generated_v1 {
    include!("generated/shoal_v1_generated.rs");
}

pub use decode::ConvertError;
pub use frame::{FrameError, FrameHeader, ReadFrameError, encode_frame, read_frame, split_frame};
pub use message::{
    DecodeError, EncodeError, Operation, RequestView, Response, ServiceError,
    UNSUPPORTED_VERSION_1_MESSAGE, UNSUPPORTED_VERSION_EXCEPTION, decode_request, decode_response,
    encode_request, encode_request_into, encode_response, encode_unsupported_version_response,
};

/// The protocol version this crate speaks: the file identifiers "SHQ2" and "SHS2" carry it.
pub const PROTOCOL_VERSION: u32 = 2;
