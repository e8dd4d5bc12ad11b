//! Named limits of the wire formats, and why each has its value.

use shoal_replication::limits::{ACCEPT_BATCH_BYTES_MAX, COMMAND_BYTES_MAX};

/// The size of the fixed frame header (FORMAT.md). A multiple of 16 so that a body written right
/// after the header in a 16-byte-aligned buffer is itself 16-byte aligned, as rkyv requires.
pub const FRAME_HEADER_BYTES: usize = 32;

/// rkyv's archive alignment (the default `AlignedVec` alignment of rkyv 0.8).
pub const ARCHIVE_ALIGNMENT_BYTES: usize = 16;

/// The largest DynamoDB item (400 KiB, counted over attribute names and values).
pub const ITEM_BYTES_MAX: usize = 400 * 1024;

/// The largest DynamoDB request or response body (BatchWriteItem requests and BatchGetItem
/// responses are capped at 16 MB by DynamoDB). One partition's share of a request or a response
/// is never larger than the whole, so a router request or a shard response fits below this.
pub const DYNAMO_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Item bytes a snapshot sender packs into one `SnapshotChunk`: it stops adding items once the
/// chunk holds this many bytes, so a chunk holds at most this plus one item.
pub const SNAPSHOT_CHUNK_ITEM_BYTES_TARGET: usize = 4 * 1024 * 1024;

/// Room for rkyv's per-object overhead (relative pointers, lengths, enum tags, padding to 16)
/// and for the fixed fields around the payloads counted above.
pub const FRAME_BODY_OVERHEAD_BYTES: usize = 1024 * 1024;

/// The largest frame body a sender may write and a receiver accepts. A receiver rejects a larger
/// declared length from the header alone, before it allocates anything for the body.
///
/// The largest Accept the replication core emits holds `ACCEPT_BATCH_BYTES_MAX` of payload plus
/// one more command of up to `COMMAND_BYTES_MAX` (both in shoal-replication's limits, the one
/// place they are defined); it must fit in one frame, with room for the per-entry fields, which
/// the assertions below check from those constants. The
/// bus batches several envelopes into one frame only up to a much smaller target (see shoal-bus),
/// so typical frames are far below the limit; the limit is what a receiver must be ready for.
pub const FRAME_BODY_BYTES_MAX: usize = 32 * 1024 * 1024;

/// A whole frame: header plus the largest body.
pub const FRAME_BYTES_MAX: usize = FRAME_HEADER_BYTES + FRAME_BODY_BYTES_MAX;

const _: () = assert!(FRAME_HEADER_BYTES.is_multiple_of(ARCHIVE_ALIGNMENT_BYTES));
const _: () = assert!(
    ACCEPT_BATCH_BYTES_MAX + COMMAND_BYTES_MAX + FRAME_BODY_OVERHEAD_BYTES <= FRAME_BODY_BYTES_MAX
);
const _: () = assert!(
    SNAPSHOT_CHUNK_ITEM_BYTES_TARGET + ITEM_BYTES_MAX + FRAME_BODY_OVERHEAD_BYTES
        <= FRAME_BODY_BYTES_MAX
);
const _: () = assert!(DYNAMO_MESSAGE_BYTES_MAX + FRAME_BODY_OVERHEAD_BYTES <= FRAME_BODY_BYTES_MAX);
// The body length travels as a u32.
const _: () = assert!(FRAME_BODY_BYTES_MAX <= u32::MAX as usize);
