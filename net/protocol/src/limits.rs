//! The protocol's limits. Clients in other languages must use the same values (FORMAT.md).

/// The frame header: u32 LE body length, u32 LE body crc32c.
pub const HEADER_BYTES: usize = 8;

/// DynamoDB's largest request (a BatchWriteItem of 25 items of 400 KB stays under it; the HTTP
/// API refuses bodies over 16 MiB).
pub const DYNAMODB_BODY_BYTES_MAX: usize = 16 << 20;

/// What the flatbuffer adds around a body: vtables, offsets, the request id, the exception
/// name and message of an error. Far more than they take; the slack keeps a 16 MiB body legal.
pub const FLATBUFFER_OVERHEAD_BYTES_MAX: usize = 64 << 10;

/// The largest frame body (a flatbuffer) either side accepts.
pub const BODY_BYTES_MAX: usize = DYNAMODB_BODY_BYTES_MAX + FLATBUFFER_OVERHEAD_BYTES_MAX;

/// The smallest flatbuffer: a root offset and a file identifier.
pub const BODY_BYTES_MIN: usize = 8;

/// The largest whole frame.
pub const FRAME_BYTES_MAX: usize = HEADER_BYTES + BODY_BYTES_MAX;

// The length field is a u32.
const _: () = assert!(BODY_BYTES_MAX < u32::MAX as usize);
const _: () = assert!(BODY_BYTES_MIN <= BODY_BYTES_MAX);

/// How many requests one connection may have in flight at the server; the server stops reading
/// a connection's requests past it until responses are written. Clients should stay below it.
pub const SERVER_REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX: usize = 256;
