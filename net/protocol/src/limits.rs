//! The protocol's limits. Clients in other languages must use the same values (FORMAT.md).

/// The frame header: u32 LE body length, u32 LE body crc32c.
pub const HEADER_BYTES: usize = 8;

/// DynamoDB's largest request (a BatchWriteItem of 25 items of 400 KB stays under it; the HTTP
/// API refuses bodies over 16 MiB).
pub const DYNAMODB_BODY_BYTES_MAX: usize = 16 << 20;

/// What the flatbuffer adds around a request's data beyond the bytes of its strings and
/// binaries (the encoders' budget, below): vtables, offsets, the request id, the exception
/// name and message of an error. The slack keeps a 16 MiB request legal.
pub const FLATBUFFER_OVERHEAD_BYTES_MAX: usize = 64 << 10;

/// The largest frame body (a flatbuffer) either side accepts.
pub const BODY_BYTES_MAX: usize = DYNAMODB_BODY_BYTES_MAX + FLATBUFFER_OVERHEAD_BYTES_MAX;

/// What an encoder counts against `DYNAMODB_BODY_BYTES_MAX` for each table, vector and value
/// it writes, beside the bytes of its strings and binaries: a flatbuffer table of a few fields
/// takes at least this much, so a buffer whose count stays under the limit fits a frame.
pub const ENCODED_NODE_BYTES: usize = 16;

/// The largest request or response a decoder turns into a DynamoDB JSON value tree, counted as
/// the bytes of its strings (binaries as their base64 text) plus `ENCODED_NODE_BYTES` per
/// value: about the size of the same request in DynamoDB JSON text. Bounds what a hostile
/// buffer can make a decoder allocate, since flatbuffers lets many offsets share one object.
pub const DECODED_BYTES_MAX: usize = 2 * DYNAMODB_BODY_BYTES_MAX;

/// How deep attribute values nest (an M or L inside another counts one level) before an
/// encoder or decoder refuses them: the model's `NESTING_DEPTH_MAX` (32, DynamoDB's limit) plus
/// slack, so that requests between the two reach the router and get DynamoDB's message.
/// tools/shoal checks at compile time that it is above the model's.
pub const ATTRIBUTE_NESTING_DEPTH_MAX: usize = 64;

/// The flatbuffers verifier's limits on a received buffer. A table of nested attribute values
/// costs two tables a level (the entry and the value), plus the request's own few.
pub const VERIFIER_TABLE_DEPTH_MAX: usize = 2 * ATTRIBUTE_NESTING_DEPTH_MAX + 16;
/// Tables the verifier visits at most: one per 4 bytes (a table is at least its 4-byte vtable
/// offset).
pub const VERIFIER_TABLES_MAX: usize = BODY_BYTES_MAX / 4;
/// Bytes the verifier visits at most, counting objects reached through several offsets once
/// per offset (shared vtables make a sound buffer's count exceed its size).
pub const VERIFIER_APPARENT_BYTES_MAX: usize = 4 * BODY_BYTES_MAX;

/// The smallest flatbuffer: a root offset and a file identifier.
pub const BODY_BYTES_MIN: usize = 8;

/// The largest whole frame.
pub const FRAME_BYTES_MAX: usize = HEADER_BYTES + BODY_BYTES_MAX;

// The length field is a u32.
const _: () = assert!(BODY_BYTES_MAX < u32::MAX as usize);
const _: () = assert!(BODY_BYTES_MIN <= BODY_BYTES_MAX);
const _: () = assert!(VERIFIER_APPARENT_BYTES_MAX < u32::MAX as usize);
const _: () = assert!(DECODED_BYTES_MAX >= DYNAMODB_BODY_BYTES_MAX);

/// How many requests one connection may have in flight at the server; the server stops reading
/// a connection's requests past it until responses are written. Clients should stay below it.
pub const SERVER_REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX: usize = 256;
