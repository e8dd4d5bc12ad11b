//! Shoal's internal wire formats (see FORMAT.md next to this file).
//!
//! Everything a shard sends or receives over the bus is one [`messages::BusMessage`], archived
//! with rkyv behind the fixed frame header of [`frame`]. The same archived
//! [`messages::PersistRecord`] bytes are the body of a replication WAL record. Pure: no IO, no
//! async, no glommio; the bus (net/bus) moves the bytes.

pub mod convert;
pub mod frame;
pub mod limits;
pub mod messages;
pub mod persist;

pub use convert::{ConversionError, decode_membership_step, encode_membership_step};
pub use frame::{
    FRAME_FORMAT_VERSION, FRAME_MAGIC, FrameDecoder, FrameError, FrameHeader, MessageKind,
    decode_body, decode_frame, encode_frame,
};
pub use limits::{FRAME_BODY_BYTES_MAX, FRAME_BYTES_MAX, FRAME_HEADER_BYTES};
pub use messages::{BusMessage, PersistRecord, ShardAddress};
pub use persist::{PersistRecordError, decode_persist_record, encode_persist_record};
/// Re-exported so users of [`encode_frame`] need no direct rkyv dependency.
pub use rkyv::util::AlignedVec;
