//! Offline verification of one WAL segment file (`shoal inspect wal`), sans-IO.
//!
//! A thin layer over recovery: the header is decoded with [`SegmentHeader::decode`], the
//! records are read with [`scan_segment`] and judged with [`decide`], exactly as
//! [`super::Wal::open`] does for the newest segment of a log. What this adds is the words for
//! an operator: why the log stops where it does. One segment alone cannot show the problems
//! between segments (an LSN gap, a lost header of a newer segment); those need the whole log
//! directory and `Wal::open`.

use super::error::{CorruptionKind, LogLocation, WalCorruption, WalError};
use super::format::{
    BLOCK_BYTES, RECORD_HEADER_BYTES, RecordHeader, RecordSlot, SEGMENT_HEADER_BYTES,
    SegmentHeader, SegmentHeaderSlot,
};
use super::recovery::{RecordDamage, ScanStop, ScannedRecord, decide, scan_segment};
use super::{Lsn, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};

/// Why the records of a segment stop where they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEnd {
    /// Zero bytes follow the last complete batch: nothing was written there yet.
    ZeroTail,
    /// A record of an older generation follows: the stale content of a recycled segment.
    StaleGeneration { generation: u64 },
    /// No room for another record header.
    SegmentEnd,
    /// A batch that never completed (a crash while it was written), or, in a segment that a
    /// newer one follows, the old bytes of a recycled segment cut at a block boundary.
    TornBatch { offset: u64, damage: RecordDamage },
}

/// What a sound, initialised segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    pub header: SegmentHeader,
    /// Records of complete batches, in LSN order.
    pub records: Vec<ScannedRecord>,
    /// Where the next batch would go.
    pub log_end_offset: u64,
    /// The LSN of the next record.
    pub lsn_next: Lsn,
    pub end: LogEnd,
}

/// What one segment file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentInspection {
    /// All zero: created but never initialised (a free segment).
    NeverInitialised,
    Initialised(SegmentReport),
}

/// Verifies the bytes of one segment file: its header, then every record's checksums and
/// structure, judged as the newest segment of a log would be (cases R1 to R3 of recovery).
/// `index_from_name` is the index the file's name claims, checked against the header (H4).
/// Bytes past the end of a short file read as zero, as in recovery.
pub fn inspect_segment(
    file_bytes: &[u8],
    index_from_name: Option<u32>,
) -> Result<SegmentInspection, WalError> {
    let mut header_bytes = [0; SEGMENT_HEADER_BYTES];
    let available = file_bytes.len().min(SEGMENT_HEADER_BYTES);
    header_bytes[..available].copy_from_slice(&file_bytes[..available]);
    let unreadable_header = |kind: CorruptionKind, offset: u64, observed: String| {
        WalError::from(WalCorruption {
            location: LogLocation {
                segment_index: index_from_name.unwrap_or(0),
                offset,
                generation: 0,
                lsn_expected: Lsn(0),
            },
            kind,
            observed,
        })
    };
    let header = match SegmentHeader::decode(&header_bytes) {
        SegmentHeaderSlot::Valid(header) => header,
        SegmentHeaderSlot::UnsupportedVersion(version) => {
            return Err(WalError::UnsupportedFormatVersion {
                segment_index: index_from_name.unwrap_or(0),
                offset: 0,
                version,
            });
        }
        // H1 and H2 for a single segment: zero is a free segment unless it holds data.
        SegmentHeaderSlot::Zero => {
            return match file_bytes.iter().position(|byte| *byte != 0) {
                None => Ok(SegmentInspection::NeverInitialised),
                Some(offset) => Err(unreadable_header(
                    CorruptionKind::NoValidSegmentHeader,
                    offset as u64,
                    "a zero segment header in front of data".to_owned(),
                )),
            };
        }
        slot @ SegmentHeaderSlot::Invalid(_) => {
            return Err(unreadable_header(
                CorruptionKind::SegmentHeaderDamaged,
                0,
                format!("{slot:?}"),
            ));
        }
    };
    // H4, and the bounds recovery relies on before it allocates a segment image.
    let index_matches = index_from_name.is_none_or(|index| index == header.segment_index);
    let size_sound = (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&header.segment_bytes)
        && header.segment_bytes.is_multiple_of(BLOCK_BYTES as u64)
        && file_bytes.len() as u64 <= header.segment_bytes;
    if !index_matches || !size_sound {
        return Err(WalCorruption {
            location: LogLocation {
                segment_index: index_from_name.unwrap_or(header.segment_index),
                offset: 0,
                generation: header.generation,
                lsn_expected: Lsn(0),
            },
            kind: CorruptionKind::SegmentHeaderMismatch {
                segment_index: header.segment_index,
                segment_bytes: header.segment_bytes,
            },
            observed: format!("{header:?} in a file of {} bytes", file_bytes.len()),
        }
        .into());
    }
    let mut image = vec![0; header.segment_bytes as usize];
    image[..file_bytes.len()].copy_from_slice(file_bytes);
    let scan = scan_segment(&image, &header)?;
    // As the newest segment: nothing after it can excuse damage, a later batch proves it.
    decide(&scan, None)?;
    let end = match scan.stop {
        ScanStop::Damaged { offset, damage } => LogEnd::TornBatch { offset, damage },
        ScanStop::CleanEnd => clean_end_reason(&image, scan.log_end_offset),
    };
    Ok(SegmentInspection::Initialised(SegmentReport {
        header,
        records: scan.records,
        log_end_offset: scan.log_end_offset,
        lsn_next: scan.lsn_next,
        end,
    }))
}

/// Which of the clean ends of `scan_segment` was seen at `log_end_offset`.
fn clean_end_reason(image: &[u8], log_end_offset: u64) -> LogEnd {
    let at = log_end_offset as usize;
    if at + RECORD_HEADER_BYTES > image.len() {
        return LogEnd::SegmentEnd;
    }
    match RecordHeader::decode(&image[at..]) {
        RecordSlot::Valid(record) => LogEnd::StaleGeneration {
            generation: record.generation,
        },
        // The scan calls nothing else a clean end inside the segment.
        _ => LogEnd::ZeroTail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::format::{RECORD_FLAG_BATCH_END, SEGMENT_DATA_OFFSET, record_encoded_bytes};
    use crate::wal::{PartitionId, RecordKind};

    const SEGMENT_BYTES: u64 = 4 * BLOCK_BYTES as u64;

    fn segment(generation: u64) -> Vec<u8> {
        let mut bytes = vec![0; SEGMENT_BYTES as usize];
        let header = SegmentHeader {
            segment_index: 3,
            generation,
            first_lsn: Lsn(10),
            segment_bytes: SEGMENT_BYTES,
            log_first_generation: generation,
        };
        bytes[..SEGMENT_HEADER_BYTES].copy_from_slice(&header.encode());
        bytes
    }

    /// Writes a batch of one record per body into data block `block`; returns their offsets.
    fn write_batch(
        bytes: &mut [u8],
        block: u64,
        generation: u64,
        first_lsn: u64,
        bodies: &[&[u8]],
    ) -> Vec<usize> {
        let mut position = (SEGMENT_DATA_OFFSET + block * BLOCK_BYTES as u64) as usize;
        let mut offsets = Vec::new();
        for (index, body) in bodies.iter().enumerate() {
            let header = RecordHeader {
                kind: RecordKind::new(2).unwrap(),
                flags: if index + 1 == bodies.len() {
                    RECORD_FLAG_BATCH_END
                } else {
                    0
                },
                partition: PartitionId(index as u64 + 1),
                lsn: Lsn(first_lsn + index as u64),
                batch_first_lsn: Lsn(first_lsn),
                generation,
                body_bytes: body.len() as u32,
                body_checksum: crc32c::crc32c(body),
            };
            bytes[position..position + RECORD_HEADER_BYTES].copy_from_slice(&header.encode());
            bytes[position + RECORD_HEADER_BYTES..][..body.len()].copy_from_slice(body);
            offsets.push(position);
            position += record_encoded_bytes(body.len());
        }
        offsets
    }

    fn report(inspection: Result<SegmentInspection, WalError>) -> SegmentReport {
        match inspection.unwrap() {
            SegmentInspection::Initialised(report) => report,
            SegmentInspection::NeverInitialised => panic!("expected an initialised segment"),
        }
    }

    #[test]
    fn a_sound_segment_is_summarised_with_why_it_ends() {
        let mut bytes = segment(2);
        write_batch(&mut bytes, 0, 2, 10, &[b"one", b"two"]);
        write_batch(&mut bytes, 1, 2, 12, &[b"three"]);
        let zero_tail = report(inspect_segment(&bytes, Some(3)));
        assert_eq!(zero_tail.records.len(), 3);
        assert_eq!(zero_tail.lsn_next, Lsn(13));
        assert_eq!(zero_tail.end, LogEnd::ZeroTail);
        assert_eq!(
            zero_tail.log_end_offset,
            SEGMENT_DATA_OFFSET + 2 * BLOCK_BYTES as u64
        );

        write_batch(&mut bytes, 2, 1, 3, &[b"stale"]);
        let stale = report(inspect_segment(&bytes, Some(3)));
        assert_eq!(stale.end, LogEnd::StaleGeneration { generation: 1 });

        write_batch(&mut bytes, 2, 2, 13, &[b"fills the segment"]);
        let full = report(inspect_segment(&bytes, Some(3)));
        assert_eq!(full.records.len(), 4);
        assert_eq!(full.end, LogEnd::SegmentEnd);
    }

    #[test]
    fn a_torn_last_batch_ends_the_log_but_damage_before_a_later_batch_is_corruption() {
        let mut bytes = segment(2);
        write_batch(&mut bytes, 0, 2, 10, &[b"durable"]);
        let torn = write_batch(&mut bytes, 1, 2, 11, &[b"first", b"lost end"]);
        bytes[torn[1]..torn[1] + RECORD_HEADER_BYTES].fill(0);
        let report = report(inspect_segment(&bytes, None));
        assert_eq!(report.records.len(), 1);
        assert!(matches!(
            report.end,
            LogEnd::TornBatch {
                damage: RecordDamage::ZeroInsideBatch,
                ..
            }
        ));

        write_batch(&mut bytes, 2, 2, 13, &[b"later batch"]);
        match inspect_segment(&bytes, None) {
            Err(WalError::Corruption(corruption)) => {
                // Located at the damaged record, not at the start of its batch.
                assert_eq!(corruption.location.offset, torn[1] as u64);
                assert_eq!(corruption.location.lsn_expected, Lsn(11));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn headers_are_checked_against_the_file() {
        assert_eq!(
            inspect_segment(&[0; BLOCK_BYTES], Some(0)).unwrap(),
            SegmentInspection::NeverInitialised
        );
        let mut bytes = segment(2);
        assert!(matches!(
            inspect_segment(&bytes, Some(4)),
            Err(WalError::Corruption(corruption))
                if matches!(corruption.kind, CorruptionKind::SegmentHeaderMismatch { .. })
        ));
        bytes[20] ^= 1;
        assert!(matches!(
            inspect_segment(&bytes, Some(3)),
            Err(WalError::Corruption(corruption))
                if corruption.kind == CorruptionKind::SegmentHeaderDamaged
        ));
        bytes[..SEGMENT_HEADER_BYTES].fill(0);
        write_batch(&mut bytes, 0, 2, 10, &[b"orphan"]);
        assert!(matches!(
            inspect_segment(&bytes, Some(3)),
            Err(WalError::Corruption(corruption))
                if corruption.kind == CorruptionKind::NoValidSegmentHeader
                    && corruption.location.offset == SEGMENT_DATA_OFFSET
        ));
    }
}
