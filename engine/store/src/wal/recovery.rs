//! WAL recovery decisions, sans-IO: segment images in, a verdict out.
//!
//! The I/O side (`wal::Wal::open`) reads the segment headers and then each segment of the log
//! whole, and asks this module what the bytes mean. Everything here is a pure function over
//! byte slices, so every case of the decision table is tested without a disk.
//!
//! # Which segments form the log
//! Every initialisation of a segment takes the next value of a WAL-wide generation counter, and
//! segments are used in ring order, so the live log is a run of ring-adjacent segments with
//! consecutive generations ending at the newest one. Each header also records
//! `log_first_generation`, the oldest generation the log needed when it was written.
//!
//! | # | Segment headers observed                                         | Decision            |
//! |---|------------------------------------------------------------------|---------------------|
//! | H1 | no valid header, and every segment is all zero                  | fresh WAL           |
//! | H2 | no valid header, but some segment holds data                    | corruption          |
//! | H3 | a valid header with an unknown format version                   | unsupported version |
//! | H4 | a valid header naming another index or segment size             | corruption          |
//! | H5 | two valid headers with the same generation                      | corruption          |
//! | H6 | walking back from the newest, generations stop being consecutive before `log_first_generation` of the newest | corruption (a live segment's header is damaged or lost) |
//! | H7 | otherwise                                                       | the log is the run from the oldest consecutive generation to the newest; other segments are free |
//! | H8 | the segment after the newest in the ring is not in the log but holds a valid record of a newer generation than the newest header | corruption (that segment was initialised, its header synced before any record, and the header is now lost or damaged) |
//!
//! A crash cannot make a header invalid: the header lies in one sector, which the media writes
//! atomically, so a crash while (re)initialising a segment leaves its old header (a lost
//! initialisation: the segment is still the oldest of the log, or free) or its new one. An
//! invalid header is therefore damage at rest; H6 reports it when the log still needs the
//! segment and ignores it otherwise. `log_first_generation` is the oldest generation that was
//! not yet recyclable when the newest header was written.
//!
//! # Where the log ends inside a segment
//! Records are read in order from the first data block. A record is accepted when its header
//! checksum holds, its generation is the segment's, its LSN is the next expected one, its
//! `batch_first_lsn` matches its batch, it lies inside the segment and its body checksum holds.
//! A batch counts only when its last record (flagged batch end) is accepted: records of a batch
//! whose end is missing were never acknowledged (the sync that acknowledges a batch follows the
//! write of all of it), so the log ends at the start of that batch, `S`, with next LSN `E`.
//!
//! At `S` the reader saw one of:
//! - *a clean end*: zero header bytes, a valid header of an older generation (the stale content
//!   of a recycled segment), or no room for another record;
//! - *damage*: anything else (a bad header checksum, a bad body checksum, a record of this
//!   generation with the wrong LSN or batch, a zero or stale header inside a batch, a batch that
//!   runs past the segment end).
//!
//! Then the rest of the segment after `S` is searched for valid record headers of this
//! generation. One whose `batch_first_lsn` is above `E` belongs to a *later batch*, which the
//! committer only writes after the batch at `S` was durable.
//!
//! | # | At `S`      | Later batch in this segment | Newer segment in the log        | Decision |
//! |---|-------------|-----------------------------|---------------------------------|----------|
//! | R1 | clean end  | no                          | none                            | end of the log |
//! | R2 | damage     | no                          | none                            | torn tail: end of the log; the tail is scrubbed before appending |
//! | R3 | either     | yes                         | any                             | corruption (damaged or missing acknowledged records, located at `S` or the damaged record) |
//! | R4 | either     | no                          | starts at LSN `E`               | segment ends, the log continues in the newer segment |
//! | R5 | clean end  | no                          | starts at another LSN           | corruption (LSN gap) |
//! | R6 | damage     | no                          | starts at another LSN           | corruption (a newer segment is only started once this one is durable) |
//!
//! R4 accepts damage at `S` because a recycled segment is not zeroed: after the last batch of
//! this generation lie the old generation's bytes, and a block boundary of the new generation
//! can fall in the middle of an old record, which reads as a bad header. That is not a loss:
//! had any durable batch of this segment been damaged, the scan would stop before it and `E`
//! would be below the newer segment's first LSN (R5, R6).
//!
//! A record header with a good checksum but an unknown format version inside the log is
//! reported as an unsupported version, never read as the end.
//!
//! # The tail scrub (R1, R2)
//! After a crash, bytes of the batch being written may have landed after `S`, valid headers of
//! this generation among them. Before anything is appended, recovery zeroes
//! `[S, scrub_end)`, which covers every such header, and syncs. This keeps invariant 1: after
//! the end of the log, no valid record header of the segment's generation exists except those
//! of the one batch being written. Without it, a later torn batch at `S` could be completed by
//! stale records that happen to sit where the new ones should be.
//!
//! # Invariants
//! 1. After the end of the log in the active segment, valid headers of its generation belong
//!    only to the batch being written (kept by the committer writing each block once per
//!    generation, and by the tail scrub).
//! 2. Records returned by a scan have consecutive LSNs starting at the segment's first LSN.
//! 3. The log end `S` is block aligned.

use super::Lsn;
use super::error::{CorruptionKind, LogLocation, WalCorruption, WalError};
use super::format::{
    BLOCK_BYTES, HeaderDamage, RECORD_ALIGNMENT_BYTES, RECORD_HEADER_BYTES, RECORD_MAGIC,
    RecordHeader, RecordSlot, SEGMENT_DATA_OFFSET, SegmentHeader, SegmentHeaderSlot, align_up,
};

/// Why the record at a position was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordDamage {
    Header(HeaderDamage),
    /// Zero header bytes where the batch being read continues.
    ZeroInsideBatch,
    /// A valid header of an older generation where the batch being read continues.
    StaleInsideBatch {
        generation: u64,
    },
    /// A valid header from a newer generation than the segment's.
    GenerationAhead {
        generation: u64,
    },
    /// A valid header of this generation with another LSN.
    LsnMismatch {
        lsn: Lsn,
    },
    /// A valid header of this generation whose batch is not the one expected here.
    BatchMismatch {
        batch_first_lsn: Lsn,
    },
    BodyPastSegmentEnd,
    BodyChecksum,
    /// The batch has not ended but the segment has no room for another record header.
    BatchPastSegmentEnd,
}

/// How the readable log of a segment stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStop {
    CleanEnd,
    Damaged { offset: u64, damage: RecordDamage },
}

/// A record accepted by a scan: where it is and what its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedRecord {
    pub offset: u64,
    pub header: RecordHeader,
}

impl ScannedRecord {
    /// The byte range of the body inside the segment image.
    pub fn body_range(&self) -> std::ops::Range<usize> {
        let start = self.offset as usize + RECORD_HEADER_BYTES;
        start..start + self.header.body_bytes as usize
    }
}

/// What a scan of one segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    pub segment_index: u32,
    pub generation: u64,
    /// Records of complete batches, in LSN order (invariant 2).
    pub records: Vec<ScannedRecord>,
    /// `S`: where the next batch goes (invariant 3).
    pub log_end_offset: u64,
    /// `E`: the LSN of the next record.
    pub lsn_next: Lsn,
    pub stop: ScanStop,
    /// The first record found after `S` that belongs to a later batch: (offset, LSN).
    pub later_batch: Option<(u64, Lsn)>,
    /// The tail scrub covers `[log_end_offset, scrub_end_offset)`; equal when nothing is needed.
    pub scrub_end_offset: u64,
}

/// The outcome for one segment of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentVerdict {
    /// Cases R1 and R2: the log ends in this segment at `log_end_offset`.
    EndOfLog { torn: bool },
    /// Case R4.
    ContinuesInNewerSegment,
}

/// Scans the image of one segment of the log (`image.len()` is the segment size).
pub fn scan_segment(image: &[u8], header: &SegmentHeader) -> Result<SegmentScan, WalError> {
    let generation = header.generation;
    let segment_bytes = image.len() as u64;
    let mut position = SEGMENT_DATA_OFFSET;
    let mut lsn_expected = header.first_lsn;
    let mut records = Vec::new();
    // Records of the batch being read, accepted only once its end is seen.
    let mut batch: Vec<ScannedRecord> = Vec::new();
    let mut batch_start = position;
    let stop = loop {
        let in_batch = !batch.is_empty();
        if position + RECORD_HEADER_BYTES as u64 > segment_bytes {
            break if in_batch {
                ScanStop::Damaged {
                    offset: position,
                    damage: RecordDamage::BatchPastSegmentEnd,
                }
            } else {
                ScanStop::CleanEnd
            };
        }
        let at = position as usize;
        let damage = match RecordHeader::decode(&image[at..]) {
            RecordSlot::Zero if in_batch => RecordDamage::ZeroInsideBatch,
            RecordSlot::Zero => break ScanStop::CleanEnd,
            RecordSlot::Invalid(damage) => RecordDamage::Header(damage),
            RecordSlot::UnsupportedVersion(version) => {
                return Err(WalError::UnsupportedFormatVersion {
                    segment_index: header.segment_index,
                    offset: position,
                    version,
                });
            }
            RecordSlot::Valid(record) => {
                let batch_first_expected =
                    batch.first().map_or(lsn_expected, |first| first.header.lsn);
                let body_end =
                    position + (RECORD_HEADER_BYTES as u64) + u64::from(record.body_bytes);
                if record.generation < generation && !in_batch {
                    break ScanStop::CleanEnd;
                } else if record.generation < generation {
                    RecordDamage::StaleInsideBatch {
                        generation: record.generation,
                    }
                } else if record.generation > generation {
                    RecordDamage::GenerationAhead {
                        generation: record.generation,
                    }
                } else if record.lsn != lsn_expected {
                    RecordDamage::LsnMismatch { lsn: record.lsn }
                } else if record.batch_first_lsn != batch_first_expected {
                    RecordDamage::BatchMismatch {
                        batch_first_lsn: record.batch_first_lsn,
                    }
                } else if body_end > segment_bytes {
                    RecordDamage::BodyPastSegmentEnd
                } else if crc32c::crc32c(&image[at + RECORD_HEADER_BYTES..body_end as usize])
                    != record.body_checksum
                {
                    RecordDamage::BodyChecksum
                } else {
                    batch.push(ScannedRecord {
                        offset: position,
                        header: record,
                    });
                    lsn_expected = Lsn(lsn_expected.0 + 1);
                    position = align_up(body_end, RECORD_ALIGNMENT_BYTES as u64);
                    if record.is_batch_end() {
                        records.append(&mut batch);
                        position = align_up(position, BLOCK_BYTES as u64);
                        batch_start = position;
                    }
                    continue;
                }
            }
        };
        break ScanStop::Damaged {
            offset: position,
            damage,
        };
    };
    let lsn_next = batch.first().map_or(lsn_expected, |first| first.header.lsn);
    let log_end_offset = batch_start;
    assert!(
        log_end_offset.is_multiple_of(BLOCK_BYTES as u64),
        "invariant 3: log end {log_end_offset} is not block aligned"
    );
    let (later_batch, scrub_end_offset) =
        search_after_end(image, generation, log_end_offset, lsn_next);
    Ok(SegmentScan {
        segment_index: header.segment_index,
        generation,
        records,
        log_end_offset,
        lsn_next,
        stop,
        later_batch,
        scrub_end_offset,
    })
}

/// Searches `[log_end, segment end)` for valid record headers of `generation`: returns the
/// first one of a later batch (its `batch_first_lsn` above `lsn_next`) and the end of the block
/// range the tail scrub must zero.
fn search_after_end(
    image: &[u8],
    generation: u64,
    log_end: u64,
    lsn_next: Lsn,
) -> (Option<(u64, Lsn)>, u64) {
    let mut later_batch = None;
    let mut scrub_end = log_end;
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut position = log_end as usize;
    // Every record starts at a multiple of the record alignment from a block boundary.
    while position + RECORD_HEADER_BYTES <= image.len() {
        if image[position..position + 4] == magic
            && let RecordSlot::Valid(record) = RecordHeader::decode(&image[position..])
            && record.generation == generation
        {
            if record.batch_first_lsn > lsn_next && later_batch.is_none() {
                later_batch = Some((position as u64, record.lsn));
            }
            let header_end = (position + RECORD_HEADER_BYTES) as u64;
            scrub_end = scrub_end.max(align_up(header_end, BLOCK_BYTES as u64));
        }
        position += RECORD_ALIGNMENT_BYTES;
    }
    (later_batch, scrub_end)
}

/// Case H8: the first valid record header in `image` (a segment outside the log) whose
/// generation is newer than `generation_newest`, as (offset, generation).
pub fn find_newer_generation_record(image: &[u8], generation_newest: u64) -> Option<(u64, u64)> {
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut position = SEGMENT_DATA_OFFSET as usize;
    while position + RECORD_HEADER_BYTES <= image.len() {
        if image[position..position + 4] == magic
            && let RecordSlot::Valid(record) = RecordHeader::decode(&image[position..])
            && record.generation > generation_newest
        {
            return Some((position as u64, record.generation));
        }
        position += RECORD_ALIGNMENT_BYTES;
    }
    None
}

/// The decision table (cases R1 to R6) for one segment of the log. `newer` is the next
/// segment of the log, if any: its index and first LSN.
pub fn decide(
    scan: &SegmentScan,
    newer: Option<(u32, Lsn)>,
) -> Result<SegmentVerdict, WalCorruption> {
    let damaged_at = match scan.stop {
        ScanStop::CleanEnd => None,
        ScanStop::Damaged { offset, damage } => Some((offset, damage)),
    };
    let location = LogLocation {
        segment_index: scan.segment_index,
        offset: damaged_at.map_or(scan.log_end_offset, |(offset, _)| offset),
        generation: scan.generation,
        lsn_expected: scan.lsn_next,
    };
    let observed = match damaged_at {
        Some((_, damage)) => format!("{damage:?}"),
        None => "the end of the records".to_owned(),
    };
    // R3.
    if let Some((later_offset, later_lsn)) = scan.later_batch {
        return Err(WalCorruption {
            location,
            kind: CorruptionKind::DamagedBeforeLaterBatch {
                later_offset,
                later_lsn,
            },
            observed,
        });
    }
    match (damaged_at, newer) {
        // R1, R2.
        (damaged, None) => Ok(SegmentVerdict::EndOfLog {
            torn: damaged.is_some(),
        }),
        // R4.
        (_, Some((_, newer_first_lsn))) if newer_first_lsn == scan.lsn_next => {
            Ok(SegmentVerdict::ContinuesInNewerSegment)
        }
        // R6.
        (Some(_), Some((newer_segment_index, _))) => Err(WalCorruption {
            location,
            kind: CorruptionKind::DamagedBeforeNewerSegment {
                newer_segment_index,
            },
            observed,
        }),
        // R5.
        (None, Some((newer_segment_index, newer_first_lsn))) => Err(WalCorruption {
            location,
            kind: CorruptionKind::LsnGap {
                newer_segment_index,
                newer_first_lsn,
            },
            observed,
        }),
    }
}

/// The segments of the log, decided from the headers alone (cases H1 to H7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSegments {
    /// No valid header: fresh if every segment is zero (H1), else corruption (H2). The caller
    /// decides, because it needs the segment contents.
    NoValidHeader,
    /// Segment indexes of the log, oldest first, with their headers (H7).
    Chain(Vec<SegmentHeader>),
}

/// Decides which segments form the log from their header slots (index = segment index).
pub fn plan_log_segments(
    slots: &[SegmentHeaderSlot],
    segment_bytes: u64,
) -> Result<LogSegments, WalError> {
    let segment_count = slots.len();
    let location = |segment_index: usize, generation: u64| LogLocation {
        segment_index: segment_index as u32,
        offset: 0,
        generation,
        lsn_expected: Lsn(0),
    };
    let mut headers: Vec<Option<SegmentHeader>> = Vec::with_capacity(segment_count);
    for (index, slot) in slots.iter().enumerate() {
        headers.push(match slot {
            // H3.
            SegmentHeaderSlot::UnsupportedVersion(version) => {
                return Err(WalError::UnsupportedFormatVersion {
                    segment_index: index as u32,
                    offset: 0,
                    version: *version,
                });
            }
            SegmentHeaderSlot::Valid(header) => {
                // H4.
                if header.segment_index as usize != index || header.segment_bytes != segment_bytes {
                    return Err(WalCorruption {
                        location: location(index, header.generation),
                        kind: CorruptionKind::SegmentHeaderMismatch {
                            segment_index: header.segment_index,
                            segment_bytes: header.segment_bytes,
                        },
                        observed: format!("{header:?}"),
                    }
                    .into());
                }
                Some(*header)
            }
            SegmentHeaderSlot::Zero | SegmentHeaderSlot::Invalid(_) => None,
        });
    }
    let Some(newest) = (0..segment_count)
        .filter_map(|index| headers[index].map(|header| (header.generation, index)))
        .max()
        .map(|(_, index)| index)
    else {
        return Ok(LogSegments::NoValidHeader);
    };
    // H5.
    for (index, header) in headers.iter().enumerate() {
        for (other, other_header) in headers.iter().enumerate().skip(index + 1) {
            if let (Some(header), Some(other_header)) = (header, other_header)
                && header.generation == other_header.generation
            {
                return Err(WalCorruption {
                    location: location(index, header.generation),
                    kind: CorruptionKind::DuplicateGeneration {
                        other_segment_index: other as u32,
                    },
                    observed: format!("generation {}", header.generation),
                }
                .into());
            }
        }
    }
    let newest_header =
        headers[newest].unwrap_or_else(|| unreachable!("chosen among valid headers"));
    let mut chain = vec![newest_header];
    let mut index = newest;
    for _ in 1..segment_count {
        let older = (index + segment_count - 1) % segment_count;
        let generation_wanted = chain[chain.len() - 1].generation - 1;
        match headers[older] {
            Some(header) if header.generation == generation_wanted && generation_wanted > 0 => {
                chain.push(header);
                index = older;
            }
            _ => break,
        }
    }
    chain.reverse();
    let oldest = chain[0];
    // H6.
    if oldest.generation > newest_header.log_first_generation {
        let missing_index = (index + segment_count - 1) % segment_count;
        return Err(WalCorruption {
            location: location(missing_index, oldest.generation - 1),
            kind: CorruptionKind::SegmentHeaderDamaged,
            observed: format!(
                "{:?}, but the newest segment needs generations from {}",
                slots[missing_index], newest_header.log_first_generation
            ),
        }
        .into());
    }
    Ok(LogSegments::Chain(chain))
}

#[cfg(test)]
mod tests;
