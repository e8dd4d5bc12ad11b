//! The WAL's on-disk format (FORMAT.md): constants, the segment header and the record header.
//!
//! Pure byte encoding and decoding, no I/O. Every integer is little-endian and fixed width. The
//! decoders never trust a length or a field before its checksum has been verified.

use shoal_io::{IO_ALIGNMENT_BYTES, SECTOR_BYTES};

use super::{Lsn, PartitionId, RecordKind};
use crate::little_endian::{read_u16, read_u32, read_u64};

/// The unit of every WAL write: a batch starts on a block boundary and is padded to one.
pub const BLOCK_BYTES: usize = IO_ALIGNMENT_BYTES;

/// The version written into every segment header and every record header.
pub const WAL_FORMAT_VERSION: u16 = 1;

/// "SHOALWSG" read as a little-endian u64: the first bytes of every initialised segment.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"SHOALWSG");
/// "SWRC" read as a little-endian u32: the first bytes of every record.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"SWRC");

/// The segment header occupies the first bytes of block 0 of a segment; the rest of block 0 is
/// zero. It fits in one sector, so a torn header write leaves the old or the new header whole.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Records start after the header block, so writing a batch never rewrites the header.
pub const SEGMENT_DATA_OFFSET: u64 = BLOCK_BYTES as u64;

pub const RECORD_HEADER_BYTES: usize = 64;
/// Every record starts at a multiple of this within its segment; the gap after a body is zero.
pub const RECORD_ALIGNMENT_BYTES: usize = 8;

/// Flag bit of a record header: this is the last record of its batch; the next batch starts at
/// the next block boundary.
pub const RECORD_FLAG_BATCH_END: u8 = 1;
const RECORD_FLAGS_KNOWN: u8 = RECORD_FLAG_BATCH_END;

/// Bytes covered by each header checksum: everything before the checksum field.
const SEGMENT_HEADER_CHECKSUMMED_BYTES: usize = 60;
const RECORD_HEADER_CHECKSUMMED_BYTES: usize = 60;

const _: () = assert!(SEGMENT_HEADER_BYTES <= SECTOR_BYTES);
const _: () = assert!(SEGMENT_HEADER_CHECKSUMMED_BYTES + 4 == SEGMENT_HEADER_BYTES);
const _: () = assert!(RECORD_HEADER_CHECKSUMMED_BYTES + 4 == RECORD_HEADER_BYTES);
const _: () = assert!(RECORD_HEADER_BYTES.is_multiple_of(RECORD_ALIGNMENT_BYTES));
const _: () = assert!(BLOCK_BYTES.is_multiple_of(RECORD_ALIGNMENT_BYTES));
const _: () = assert!(SEGMENT_DATA_OFFSET as usize >= SEGMENT_HEADER_BYTES);

/// Rounds `value` up to a multiple of `alignment` (a power of two).
pub const fn align_up(value: u64, alignment: u64) -> u64 {
    (value + alignment - 1) & !(alignment - 1)
}

/// The bytes a record with a body of `body_bytes` occupies, header and alignment gap included.
pub const fn record_encoded_bytes(body_bytes: usize) -> usize {
    align_up(
        (RECORD_HEADER_BYTES + body_bytes) as u64,
        RECORD_ALIGNMENT_BYTES as u64,
    ) as usize
}

/// The header at the start of every initialised segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment_index: u32,
    /// Taken from a counter that grows by one each time any segment of the WAL is initialised,
    /// so the segments of the live log carry consecutive generations in log order.
    pub generation: u64,
    /// The LSN of the first record written into this incarnation of the segment.
    pub first_lsn: Lsn,
    pub segment_bytes: u64,
    /// The generation of the oldest segment the log still needed when this segment was
    /// initialised. Recovery requires every generation from here to this segment's own, so a
    /// lost or damaged segment header inside the live log is detected, never skipped.
    pub log_first_generation: u64,
}

/// What a segment header slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentHeaderSlot {
    /// All zero: the segment was never initialised.
    Zero,
    /// Bytes that are not a valid header: a torn initialisation or corruption.
    Invalid(HeaderDamage),
    /// A header with a good checksum but a format version this code does not read.
    UnsupportedVersion(u16),
    Valid(SegmentHeader),
}

/// Why header bytes were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderDamage {
    Magic,
    Checksum,
    /// Reserved bytes or unknown flags are set under a good checksum.
    ReservedBits,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut bytes = [0; SEGMENT_HEADER_BYTES];
        bytes[0..8].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        bytes[8..10].copy_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
        // 10..12 reserved, zero.
        bytes[12..16].copy_from_slice(&self.segment_index.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.generation.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.first_lsn.0.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.segment_bytes.to_le_bytes());
        bytes[40..48].copy_from_slice(&self.log_first_generation.to_le_bytes());
        // 48..60 reserved, zero.
        let checksum = crc32c::crc32c(&bytes[..SEGMENT_HEADER_CHECKSUMMED_BYTES]);
        bytes[60..64].copy_from_slice(&checksum.to_le_bytes());
        bytes
    }

    /// Decodes the first [`SEGMENT_HEADER_BYTES`] of `bytes` (which must be at least that long).
    pub fn decode(bytes: &[u8]) -> SegmentHeaderSlot {
        let bytes = &bytes[..SEGMENT_HEADER_BYTES];
        if bytes.iter().all(|byte| *byte == 0) {
            return SegmentHeaderSlot::Zero;
        }
        if read_u64(bytes, 0) != SEGMENT_MAGIC {
            return SegmentHeaderSlot::Invalid(HeaderDamage::Magic);
        }
        let checksum = crc32c::crc32c(&bytes[..SEGMENT_HEADER_CHECKSUMMED_BYTES]);
        if checksum != read_u32(bytes, 60) {
            return SegmentHeaderSlot::Invalid(HeaderDamage::Checksum);
        }
        let version = read_u16(bytes, 8);
        if version != WAL_FORMAT_VERSION {
            return SegmentHeaderSlot::UnsupportedVersion(version);
        }
        if read_u16(bytes, 10) != 0 || bytes[48..60].iter().any(|byte| *byte != 0) {
            return SegmentHeaderSlot::Invalid(HeaderDamage::ReservedBits);
        }
        SegmentHeaderSlot::Valid(SegmentHeader {
            segment_index: read_u32(bytes, 12),
            generation: read_u64(bytes, 16),
            first_lsn: Lsn(read_u64(bytes, 24)),
            segment_bytes: read_u64(bytes, 32),
            log_first_generation: read_u64(bytes, 40),
        })
    }
}

/// The fixed header in front of every record body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: RecordKind,
    pub flags: u8,
    pub partition: PartitionId,
    pub lsn: Lsn,
    /// The LSN of the first record of the batch this record was written in. Tells a record of
    /// the batch being written at a crash apart from a record of a later batch (recovery).
    pub batch_first_lsn: Lsn,
    /// The generation of the segment incarnation the record was written into.
    pub generation: u64,
    pub body_bytes: u32,
    pub body_checksum: u32,
}

/// What the bytes at a record position hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordSlot {
    /// All header bytes zero: nothing was ever written here in this segment's life.
    Zero,
    Invalid(HeaderDamage),
    UnsupportedVersion(u16),
    Valid(RecordHeader),
}

impl RecordHeader {
    pub fn is_batch_end(&self) -> bool {
        self.flags & RECORD_FLAG_BATCH_END != 0
    }

    pub fn encode(&self) -> [u8; RECORD_HEADER_BYTES] {
        let mut bytes = [0; RECORD_HEADER_BYTES];
        bytes[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        bytes[4..6].copy_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
        bytes[6] = self.kind.get();
        bytes[7] = self.flags;
        bytes[8..16].copy_from_slice(&self.partition.0.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.lsn.0.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.batch_first_lsn.0.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.generation.to_le_bytes());
        bytes[40..44].copy_from_slice(&self.body_bytes.to_le_bytes());
        bytes[44..48].copy_from_slice(&self.body_checksum.to_le_bytes());
        // 48..60 reserved, zero.
        let checksum = crc32c::crc32c(&bytes[..RECORD_HEADER_CHECKSUMMED_BYTES]);
        bytes[60..64].copy_from_slice(&checksum.to_le_bytes());
        bytes
    }

    /// Decodes the first [`RECORD_HEADER_BYTES`] of `bytes` (which must be at least that long).
    pub fn decode(bytes: &[u8]) -> RecordSlot {
        let bytes = &bytes[..RECORD_HEADER_BYTES];
        if read_u32(bytes, 0) != RECORD_MAGIC {
            if bytes.iter().all(|byte| *byte == 0) {
                return RecordSlot::Zero;
            }
            return RecordSlot::Invalid(HeaderDamage::Magic);
        }
        let checksum = crc32c::crc32c(&bytes[..RECORD_HEADER_CHECKSUMMED_BYTES]);
        if checksum != read_u32(bytes, 60) {
            return RecordSlot::Invalid(HeaderDamage::Checksum);
        }
        let version = read_u16(bytes, 4);
        if version != WAL_FORMAT_VERSION {
            return RecordSlot::UnsupportedVersion(version);
        }
        let flags = bytes[7];
        let Some(kind) = RecordKind::new(bytes[6]) else {
            return RecordSlot::Invalid(HeaderDamage::ReservedBits);
        };
        if flags & !RECORD_FLAGS_KNOWN != 0 || bytes[48..60].iter().any(|byte| *byte != 0) {
            return RecordSlot::Invalid(HeaderDamage::ReservedBits);
        }
        RecordSlot::Valid(RecordHeader {
            kind,
            flags,
            partition: PartitionId(read_u64(bytes, 8)),
            lsn: Lsn(read_u64(bytes, 16)),
            batch_first_lsn: Lsn(read_u64(bytes, 24)),
            generation: read_u64(bytes, 32),
            body_bytes: read_u32(bytes, 40),
            body_checksum: read_u32(bytes, 44),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_record() -> RecordHeader {
        RecordHeader {
            kind: RecordKind::new(3).unwrap(),
            flags: RECORD_FLAG_BATCH_END,
            partition: PartitionId(0x0102_0304_0506_0708),
            lsn: Lsn(77),
            batch_first_lsn: Lsn(75),
            generation: 9,
            body_bytes: 5,
            body_checksum: crc32c::crc32c(b"hello"),
        }
    }

    #[test]
    fn record_header_round_trips_and_is_little_endian() {
        let header = sample_record();
        let bytes = header.encode();
        assert_eq!(&bytes[0..4], b"SWRC");
        assert_eq!(&bytes[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(RecordHeader::decode(&bytes), RecordSlot::Valid(header));
    }

    #[test]
    fn every_single_bit_flip_in_a_record_header_is_detected() {
        let bytes = sample_record().encode();
        for bit in 0..RECORD_HEADER_BYTES * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(RecordHeader::decode(&flipped), RecordSlot::Invalid(_)),
                "bit {bit} flipped unnoticed"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_in_a_segment_header_is_detected() {
        let header = SegmentHeader {
            segment_index: 2,
            generation: 5,
            first_lsn: Lsn(100),
            segment_bytes: 1 << 20,
            log_first_generation: 3,
        };
        let bytes = header.encode();
        assert_eq!(
            SegmentHeader::decode(&bytes),
            SegmentHeaderSlot::Valid(header)
        );
        for bit in 0..SEGMENT_HEADER_BYTES * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(
                    SegmentHeader::decode(&flipped),
                    SegmentHeaderSlot::Invalid(_)
                ),
                "bit {bit} flipped unnoticed"
            );
        }
    }

    #[test]
    fn zero_headers_are_recognised() {
        assert_eq!(RecordHeader::decode(&[0; 64]), RecordSlot::Zero);
        assert_eq!(SegmentHeader::decode(&[0; 64]), SegmentHeaderSlot::Zero);
    }

    #[test]
    fn encoded_sizes_are_aligned() {
        assert_eq!(record_encoded_bytes(0), 64);
        assert_eq!(record_encoded_bytes(1), 72);
        assert_eq!(record_encoded_bytes(8), 72);
        assert_eq!(record_encoded_bytes(9), 80);
    }
}
