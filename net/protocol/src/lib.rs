//! Shoal's native client protocol (FORMAT.md): the flatbuffers schema (schema/shoal.fbs), the
//! Rust code flatc generated from it (src/generated, checked in; scripts/generate.sh), and the
//! frame around each buffer (u32 LE length, u32 LE crc32c, buffer). Pure: no IO beyond reading
//! a frame from a blocking `std::io::Read`.

pub mod frame;
pub mod limits;
pub mod message;

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

pub use frame::{FrameError, FrameHeader, ReadFrameError, encode_frame, read_frame, split_frame};
pub use message::{
    DecodeError, EncodeError, Operation, RequestView, Response, ServiceError, decode_request,
    decode_response, encode_request, encode_request_into, encode_response,
};

/// The protocol version this crate speaks: the file identifiers "SHQ1" and "SHS1" carry it.
pub const PROTOCOL_VERSION: u32 = 1;
