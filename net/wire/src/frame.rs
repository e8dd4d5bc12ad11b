//! The bus frame: a fixed 32-byte header followed by one rkyv-archived [`BusMessage`].
//!
//! FORMAT.md (next to this crate's Cargo.toml) documents the layout byte by byte. Invariants:
//!
//! 1. Every integer in the header is little-endian and at a fixed offset.
//! 2. A receiver trusts nothing in a body until the header checksum, the length limit and the
//!    body checksum have passed, and it deserializes nothing rkyv's validation has not accepted.
//! 3. A declared body length above [`FRAME_BODY_BYTES_MAX`] is rejected from the header alone, so
//!    a lying peer cannot make a receiver allocate more than the limit.
//! 4. After any error a stream of frames cannot be resynchronised (there is no frame marker to
//!    search for), so a [`FrameDecoder`] stays failed and the connection must be dropped.
//! 5. [`FrameDecoder::decode`] given non-empty input consumes at least one byte (or fails), so
//!    a caller's loop over one chunk runs at most once per byte.

use std::fmt;

use rkyv::rancor::BoxedError;
use rkyv::util::AlignedVec;

use crate::limits::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES};
use crate::messages::{ArchivedBusMessage, BusMessage};

/// The first four bytes of every frame: "SHL1" (0x314C4853 as a little-endian u32).
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"SHL1");

/// The frame format version this code writes and the only one it reads. Bump it on any change
/// of the header layout or of an archived message type (FORMAT.md, "Versioning").
pub const FRAME_FORMAT_VERSION: u16 = 3;

/// Bytes of the header covered by the header checksum: everything before the checksum itself.
pub const HEADER_CHECKSUMMED_BYTES: usize = 28;

/// Byte offsets of the header fields (FORMAT.md).
const OFFSET_MAGIC: usize = 0;
const OFFSET_VERSION: usize = 4;
const OFFSET_KIND: usize = 6;
const OFFSET_BODY_LENGTH: usize = 8;
const OFFSET_BODY_CHECKSUM: usize = 12;
const OFFSET_RESERVED: usize = 16;
const RESERVED_BYTES: usize = 12;
const OFFSET_HEADER_CHECKSUM: usize = 28;

const _: () = assert!(OFFSET_RESERVED + RESERVED_BYTES == OFFSET_HEADER_CHECKSUM);
const _: () = assert!(OFFSET_HEADER_CHECKSUM == HEADER_CHECKSUMMED_BYTES);
const _: () = assert!(OFFSET_HEADER_CHECKSUM + 4 == FRAME_HEADER_BYTES);
const _: () = assert!(FRAME_HEADER_BYTES == 32);

/// A decoder that grew its body buffer past this many bytes (for one large frame) gives the
/// memory back after that frame instead of keeping it for the connection's lifetime.
pub const DECODER_RETAINED_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Which [`BusMessage`] variant a frame carries. The code travels in the header so a receiver can
/// check it against the archived body (and a tool can print frames without decoding them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MessageKind {
    Replication = 1,
    Snapshot = 2,
    Request = 3,
    Response = 4,
    Hello = 5,
}

impl MessageKind {
    pub const ALL: [MessageKind; 5] = [
        MessageKind::Replication,
        MessageKind::Snapshot,
        MessageKind::Request,
        MessageKind::Response,
        MessageKind::Hello,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<MessageKind> {
        MessageKind::ALL
            .into_iter()
            .find(|kind| kind.code() == code)
    }

    pub fn of(message: &BusMessage) -> MessageKind {
        match message {
            BusMessage::Replication(_) => MessageKind::Replication,
            BusMessage::Snapshot(_) => MessageKind::Snapshot,
            BusMessage::Request(_) => MessageKind::Request,
            BusMessage::Response(_) => MessageKind::Response,
            BusMessage::Hello { .. } => MessageKind::Hello,
        }
    }

    fn of_archived(message: &ArchivedBusMessage) -> MessageKind {
        match message {
            ArchivedBusMessage::Replication(_) => MessageKind::Replication,
            ArchivedBusMessage::Snapshot(_) => MessageKind::Snapshot,
            ArchivedBusMessage::Request(_) => MessageKind::Request,
            ArchivedBusMessage::Response(_) => MessageKind::Response,
            ArchivedBusMessage::Hello { .. } => MessageKind::Hello,
        }
    }
}

/// Why a frame was refused. Every variant means the connection that carried it must be dropped
/// (invariant 4), except `BodyTooLarge` and `Serialize` returned by the encoder, which refuse one
/// message and leave the connection usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The first four bytes are not [`FRAME_MAGIC`]: the peer does not speak this protocol.
    BadMagic { found: u32 },
    /// The header checksum does not match: the header was corrupted.
    HeaderChecksum { stored: u32, computed: u32 },
    /// A well-formed header of a format version this code does not read.
    UnsupportedVersion { found: u16 },
    /// A well-formed header with a message kind this version does not define.
    UnknownKind { found: u16 },
    /// The reserved bytes are not zero (they are kept for later versions).
    ReservedNotZero,
    /// The body is larger than [`FRAME_BODY_BYTES_MAX`] (declared by a received header, or
    /// produced by the encoder).
    BodyTooLarge { length: u64, max: u64 },
    /// The body checksum does not match: the body was corrupted.
    BodyChecksum { stored: u32, computed: u32 },
    /// The body is a valid archive of a different message kind than the header says.
    KindMismatch {
        header: MessageKind,
        body: MessageKind,
    },
    /// The body passed its checksum but is not a valid archive of a `BusMessage` (a bug or a
    /// malicious sender, since corruption is caught by the checksum).
    InvalidArchive { reason: String },
    /// The input ended inside a frame (only from [`decode_frame`] on a complete buffer; the
    /// streaming decoder waits for more bytes instead).
    Truncated { needed: usize, available: usize },
    /// rkyv could not serialize the message (encoder only).
    Serialize { reason: String },
}

impl fmt::Display for FrameError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadMagic { found } => write!(formatter, "bad frame magic {found:#010x}"),
            FrameError::HeaderChecksum { stored, computed } => write!(
                formatter,
                "frame header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            FrameError::UnsupportedVersion { found } => {
                write!(formatter, "unsupported frame format version {found}")
            }
            FrameError::UnknownKind { found } => write!(formatter, "unknown message kind {found}"),
            FrameError::ReservedNotZero => write!(formatter, "reserved header bytes are not zero"),
            FrameError::BodyTooLarge { length, max } => {
                write!(
                    formatter,
                    "frame body of {length} bytes exceeds the limit of {max}"
                )
            }
            FrameError::BodyChecksum { stored, computed } => write!(
                formatter,
                "frame body checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            FrameError::KindMismatch { header, body } => write!(
                formatter,
                "header says {header:?} but the body archives a {body:?}"
            ),
            FrameError::InvalidArchive { reason } => {
                write!(formatter, "frame body is not a valid archive: {reason}")
            }
            FrameError::Truncated { needed, available } => write!(
                formatter,
                "truncated frame: {needed} bytes needed, {available} available"
            ),
            FrameError::Serialize { reason } => write!(formatter, "cannot serialize: {reason}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The decoded fields of a header that passed every header check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: MessageKind,
    pub body_length: u32,
    pub body_crc32c: u32,
}

fn read_u16(bytes: &[u8; FRAME_HEADER_BYTES], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

fn read_u32(bytes: &[u8; FRAME_HEADER_BYTES], offset: usize) -> u32 {
    u32::from_le_bytes([
        bytes[offset],
        bytes[offset + 1],
        bytes[offset + 2],
        bytes[offset + 3],
    ])
}

impl FrameHeader {
    /// The 32 header bytes, header checksum included.
    pub fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut bytes = [0u8; FRAME_HEADER_BYTES];
        bytes[OFFSET_MAGIC..OFFSET_MAGIC + 4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        bytes[OFFSET_VERSION..OFFSET_VERSION + 2]
            .copy_from_slice(&FRAME_FORMAT_VERSION.to_le_bytes());
        bytes[OFFSET_KIND..OFFSET_KIND + 2].copy_from_slice(&self.kind.code().to_le_bytes());
        bytes[OFFSET_BODY_LENGTH..OFFSET_BODY_LENGTH + 4]
            .copy_from_slice(&self.body_length.to_le_bytes());
        bytes[OFFSET_BODY_CHECKSUM..OFFSET_BODY_CHECKSUM + 4]
            .copy_from_slice(&self.body_crc32c.to_le_bytes());
        // Bytes OFFSET_RESERVED.. stay zero.
        let header_crc32c = crc32c::crc32c(&bytes[..HEADER_CHECKSUMMED_BYTES]);
        bytes[OFFSET_HEADER_CHECKSUM..OFFSET_HEADER_CHECKSUM + 4]
            .copy_from_slice(&header_crc32c.to_le_bytes());
        bytes
    }

    /// Checks a received header, in this order: magic (is this our protocol at all), header
    /// checksum (is the header intact), then version, kind, reserved bytes and the body length
    /// limit, which are only meaningful in an intact header. Nothing is allocated.
    pub fn decode(bytes: &[u8; FRAME_HEADER_BYTES]) -> Result<FrameHeader, FrameError> {
        let magic = read_u32(bytes, OFFSET_MAGIC);
        if magic != FRAME_MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        let stored = read_u32(bytes, OFFSET_HEADER_CHECKSUM);
        let computed = crc32c::crc32c(&bytes[..HEADER_CHECKSUMMED_BYTES]);
        if stored != computed {
            return Err(FrameError::HeaderChecksum { stored, computed });
        }
        let version = read_u16(bytes, OFFSET_VERSION);
        if version != FRAME_FORMAT_VERSION {
            return Err(FrameError::UnsupportedVersion { found: version });
        }
        let kind_code = read_u16(bytes, OFFSET_KIND);
        let kind = MessageKind::from_code(kind_code)
            .ok_or(FrameError::UnknownKind { found: kind_code })?;
        if bytes[OFFSET_RESERVED..OFFSET_RESERVED + RESERVED_BYTES]
            .iter()
            .any(|byte| *byte != 0)
        {
            return Err(FrameError::ReservedNotZero);
        }
        let body_length = read_u32(bytes, OFFSET_BODY_LENGTH);
        if body_length as usize > FRAME_BODY_BYTES_MAX {
            return Err(FrameError::BodyTooLarge {
                length: u64::from(body_length),
                max: FRAME_BODY_BYTES_MAX as u64,
            });
        }
        Ok(FrameHeader {
            kind,
            body_length,
            body_crc32c: read_u32(bytes, OFFSET_BODY_CHECKSUM),
        })
    }
}

/// Serializes `message` into one frame: header and body in a single 16-byte-aligned buffer,
/// ready to write to a socket.
///
/// The body is serialized straight after 32 placeholder bytes (a multiple of rkyv's 16-byte
/// alignment, so the archive's internal alignment is the same as if it started at offset 0),
/// then the header is filled in; no copy of the body is made.
pub fn encode_frame(message: &BusMessage) -> Result<AlignedVec, FrameError> {
    let mut buffer = AlignedVec::new();
    buffer.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    let mut buffer =
        rkyv::api::high::to_bytes_in::<_, BoxedError>(message, buffer).map_err(|error| {
            FrameError::Serialize {
                reason: error.to_string(),
            }
        })?;
    let body_length = buffer.len() - FRAME_HEADER_BYTES;
    if body_length > FRAME_BODY_BYTES_MAX {
        return Err(FrameError::BodyTooLarge {
            length: body_length as u64,
            max: FRAME_BODY_BYTES_MAX as u64,
        });
    }
    let header = FrameHeader {
        kind: MessageKind::of(message),
        // Checked against FRAME_BODY_BYTES_MAX, which is below u32::MAX (limits.rs).
        body_length: body_length as u32,
        body_crc32c: crc32c::crc32c(&buffer[FRAME_HEADER_BYTES..]),
    };
    buffer[..FRAME_HEADER_BYTES].copy_from_slice(&header.encode());
    Ok(buffer)
}

/// Checks and decodes a body whose header already passed [`FrameHeader::decode`]: length, body
/// checksum, then rkyv validation, then the kind in the header against the archived variant, and
/// only then deserialization.
///
/// `body` must be 16-byte aligned for rkyv's validation (for example an `AlignedVec`); an
/// unaligned body is copied into an aligned buffer first.
pub fn decode_body(header: &FrameHeader, body: &[u8]) -> Result<BusMessage, FrameError> {
    if body.len() != header.body_length as usize {
        return Err(FrameError::Truncated {
            needed: header.body_length as usize,
            available: body.len(),
        });
    }
    let computed = crc32c::crc32c(body);
    if computed != header.body_crc32c {
        return Err(FrameError::BodyChecksum {
            stored: header.body_crc32c,
            computed,
        });
    }
    if (body.as_ptr() as usize).is_multiple_of(crate::limits::ARCHIVE_ALIGNMENT_BYTES) {
        decode_checked_body(header.kind, body)
    } else {
        let mut aligned: AlignedVec = AlignedVec::with_capacity(body.len());
        aligned.extend_from_slice(body);
        decode_checked_body(header.kind, &aligned)
    }
}

fn decode_checked_body(header_kind: MessageKind, body: &[u8]) -> Result<BusMessage, FrameError> {
    let archived = rkyv::access::<ArchivedBusMessage, BoxedError>(body).map_err(|error| {
        FrameError::InvalidArchive {
            reason: error.to_string(),
        }
    })?;
    let body_kind = MessageKind::of_archived(archived);
    if body_kind != header_kind {
        return Err(FrameError::KindMismatch {
            header: header_kind,
            body: body_kind,
        });
    }
    rkyv::deserialize::<BusMessage, BoxedError>(archived).map_err(|error| {
        FrameError::InvalidArchive {
            reason: error.to_string(),
        }
    })
}

/// Decodes the frame at the start of `bytes`, which must hold it completely. Returns the message
/// and the number of bytes the frame took.
pub fn decode_frame(bytes: &[u8]) -> Result<(BusMessage, usize), FrameError> {
    let Some(header_bytes) = bytes.first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER_BYTES,
            available: bytes.len(),
        });
    };
    let header = FrameHeader::decode(header_bytes)?;
    let frame_length = FRAME_HEADER_BYTES + header.body_length as usize;
    let Some(body) = bytes.get(FRAME_HEADER_BYTES..frame_length) else {
        return Err(FrameError::Truncated {
            needed: frame_length,
            available: bytes.len(),
        });
    };
    Ok((decode_body(&header, body)?, frame_length))
}

/// Where a [`FrameDecoder`] is inside the current frame.
#[derive(Debug)]
enum DecoderState {
    /// Collecting the header; this many of its bytes have arrived.
    Header { filled: usize },
    /// The header passed its checks; collecting the body.
    Body { header: FrameHeader },
    /// An error ended the stream (invariant 4).
    Failed(FrameError),
}

/// A streaming decoder: feed it the byte chunks a socket returns, in order and of any size, and
/// it yields each complete frame's message.
///
/// Memory: it holds at most one frame (the header plus a body of at most
/// [`FRAME_BODY_BYTES_MAX`]), and it grows the body buffer only as body bytes arrive, so a header
/// that declares a large body costs nothing until the bytes are really sent.
#[derive(Debug)]
pub struct FrameDecoder {
    state: DecoderState,
    header_bytes: [u8; FRAME_HEADER_BYTES],
    body: AlignedVec,
    frames_decoded: u64,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self {
            state: DecoderState::Header { filled: 0 },
            header_bytes: [0u8; FRAME_HEADER_BYTES],
            body: AlignedVec::new(),
            frames_decoded: 0,
        }
    }

    /// Consumes bytes from the front of `input` up to the end of at most one frame and returns
    /// that frame's message once it is complete. Call it again while `input` is not empty: a
    /// chunk may hold several frames. `Ok(None)` means every byte of `input` was consumed and the
    /// current frame needs more.
    ///
    /// Given non-empty input it consumes at least one byte (invariant 5). After an error the
    /// decoder stays failed and returns the same error on every call.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<BusMessage>, FrameError> {
        // Each pass either consumes bytes or returns, and a frame has two parts, so two passes
        // per frame at most; the bound makes the loop's termination explicit.
        for _ in 0..2 {
            match &self.state {
                DecoderState::Failed(error) => return Err(error.clone()),
                DecoderState::Header { filled } => {
                    let filled = *filled;
                    let taken = (FRAME_HEADER_BYTES - filled).min(input.len());
                    self.header_bytes[filled..filled + taken].copy_from_slice(&input[..taken]);
                    *input = &input[taken..];
                    if filled + taken < FRAME_HEADER_BYTES {
                        self.state = DecoderState::Header {
                            filled: filled + taken,
                        };
                        return Ok(None);
                    }
                    match FrameHeader::decode(&self.header_bytes) {
                        Ok(header) => {
                            self.body.clear();
                            self.state = DecoderState::Body { header };
                        }
                        Err(error) => return Err(self.fail(error)),
                    }
                }
                DecoderState::Body { header } => {
                    let header = *header;
                    let missing = header.body_length as usize - self.body.len();
                    let taken = missing.min(input.len());
                    self.body.extend_from_slice(&input[..taken]);
                    *input = &input[taken..];
                    if taken < missing {
                        return Ok(None);
                    }
                    let result = decode_body(&header, &self.body);
                    self.state = DecoderState::Header { filled: 0 };
                    if self.body.capacity() > DECODER_RETAINED_BODY_BYTES_MAX {
                        self.body = AlignedVec::new();
                    } else {
                        self.body.clear();
                    }
                    return match result {
                        Ok(message) => {
                            self.frames_decoded += 1;
                            Ok(Some(message))
                        }
                        Err(error) => Err(self.fail(error)),
                    };
                }
            }
        }
        Ok(None)
    }

    /// Feeds a whole chunk and appends every frame it completes to `messages`.
    pub fn decode_chunk(
        &mut self,
        chunk: &[u8],
        messages: &mut Vec<BusMessage>,
    ) -> Result<(), FrameError> {
        let mut input = chunk;
        // Invariant 5: each call consumes at least one byte of non-empty input, so a chunk
        // needs at most `chunk.len()` calls.
        for _ in 0..chunk.len() {
            if input.is_empty() {
                break;
            }
            if let Some(message) = self.decode(&mut input)? {
                messages.push(message);
            }
        }
        debug_assert!(input.is_empty(), "invariant 5: decode made no progress");
        Ok(())
    }

    /// Whether the decoder sits exactly between frames (no partial frame buffered).
    pub fn is_between_frames(&self) -> bool {
        matches!(self.state, DecoderState::Header { filled: 0 })
    }

    pub fn frames_decoded(&self) -> u64 {
        self.frames_decoded
    }

    fn fail(&mut self, error: FrameError) -> FrameError {
        self.state = DecoderState::Failed(error.clone());
        self.body = AlignedVec::new();
        error
    }
}
