//! One test per case of the decision tables (module docs), on hand-built segment images.

use super::*;
use crate::wal::format::{RECORD_FLAG_BATCH_END, SEGMENT_HEADER_BYTES, record_encoded_bytes};
use crate::wal::{PartitionId, RecordKind};

const SEGMENT_BYTES: u64 = 8 * BLOCK_BYTES as u64;
const GENERATION: u64 = 5;

fn header(segment_index: u32, generation: u64, first_lsn: u64) -> SegmentHeader {
    SegmentHeader {
        segment_index,
        generation,
        first_lsn: Lsn(first_lsn),
        segment_bytes: SEGMENT_BYTES,
        // Unless a test says otherwise, the newest segment needs only itself.
        log_first_generation: generation,
    }
}

fn new_image(segment_header: &SegmentHeader) -> Vec<u8> {
    let mut image = vec![0; SEGMENT_BYTES as usize];
    image[..SEGMENT_HEADER_BYTES].copy_from_slice(&segment_header.encode());
    image
}

/// Writes a batch of records with the given bodies at `offset`; returns (offsets of the
/// records, the block-aligned end of the batch).
fn put_batch(
    image: &mut [u8],
    offset: u64,
    generation: u64,
    first_lsn: u64,
    bodies: &[&[u8]],
) -> (Vec<u64>, u64) {
    let mut position = offset as usize;
    let mut offsets = Vec::new();
    for (index, body) in bodies.iter().enumerate() {
        let record = RecordHeader {
            kind: RecordKind::new(1).unwrap(),
            flags: if index + 1 == bodies.len() {
                RECORD_FLAG_BATCH_END
            } else {
                0
            },
            partition: PartitionId(7),
            lsn: Lsn(first_lsn + index as u64),
            batch_first_lsn: Lsn(first_lsn),
            generation,
            body_bytes: body.len() as u32,
            body_checksum: crc32c::crc32c(body),
        };
        offsets.push(position as u64);
        image[position..position + RECORD_HEADER_BYTES].copy_from_slice(&record.encode());
        image[position + RECORD_HEADER_BYTES..][..body.len()].copy_from_slice(body);
        position += record_encoded_bytes(body.len());
    }
    (offsets, align_up(position as u64, BLOCK_BYTES as u64))
}

fn lsns(scan: &SegmentScan) -> Vec<u64> {
    scan.records
        .iter()
        .map(|record| record.header.lsn.0)
        .collect()
}

/// Two complete batches: LSNs 1-2 in block 1, LSN 3 in block 2. Returns the image and the
/// record offsets.
fn two_batches() -> (Vec<u8>, SegmentHeader, Vec<u64>, u64) {
    let segment_header = header(0, GENERATION, 1);
    let mut image = new_image(&segment_header);
    let (mut offsets, end) = put_batch(
        &mut image,
        SEGMENT_DATA_OFFSET,
        GENERATION,
        1,
        &[b"a", b"bb"],
    );
    let (more, end) = put_batch(&mut image, end, GENERATION, 3, &[b"ccc"]);
    offsets.extend(more);
    (image, segment_header, offsets, end)
}

#[test]
fn r1_zero_tail_ends_the_log() {
    let (image, segment_header, _, end) = two_batches();
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(lsns(&scan), [1, 2, 3]);
    assert_eq!(scan.stop, ScanStop::CleanEnd);
    assert_eq!(scan.log_end_offset, end);
    assert_eq!(scan.lsn_next, Lsn(4));
    assert_eq!(
        scan.scrub_end_offset, end,
        "nothing to scrub after a clean end"
    );
    assert_eq!(
        decide(&scan, None),
        Ok(SegmentVerdict::EndOfLog { torn: false })
    );
    let body = &image[scan.records[1].body_range()];
    assert_eq!(body, b"bb");
}

#[test]
fn r1_record_of_an_older_generation_ends_the_log() {
    let (mut image, segment_header, _, end) = two_batches();
    // The recycled segment's previous life left a batch where the next one would go.
    put_batch(&mut image, end, GENERATION - 2, 9, &[b"old", b"older"]);
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(lsns(&scan), [1, 2, 3]);
    assert_eq!(scan.stop, ScanStop::CleanEnd);
    assert_eq!(
        decide(&scan, None),
        Ok(SegmentVerdict::EndOfLog { torn: false })
    );
}

#[test]
fn r1_full_segment_ends_cleanly() {
    let segment_header = header(0, GENERATION, 1);
    let mut image = new_image(&segment_header);
    let mut offset = SEGMENT_DATA_OFFSET;
    let mut lsn = 1;
    while offset < SEGMENT_BYTES {
        offset = put_batch(&mut image, offset, GENERATION, lsn, &[b"x"]).1;
        lsn += 1;
    }
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(scan.records.len() as u64, lsn - 1);
    assert_eq!(scan.stop, ScanStop::CleanEnd);
    assert_eq!(scan.log_end_offset, SEGMENT_BYTES);
}

#[test]
fn r2_torn_batch_ends_the_log_and_is_scrubbed() {
    let (mut image, segment_header, _, end) = two_batches();
    // The batch being written when the power went: its second record's body did not land.
    let (offsets, torn_end) = put_batch(&mut image, end, GENERATION, 4, &[b"dd", &[9; 600], b"ff"]);
    image[offsets[1] as usize + RECORD_HEADER_BYTES + 100] ^= 0xFF;
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(
        lsns(&scan),
        [1, 2, 3],
        "an incomplete batch is dropped whole"
    );
    assert_eq!(
        scan.stop,
        ScanStop::Damaged {
            offset: offsets[1],
            damage: RecordDamage::BodyChecksum
        }
    );
    assert_eq!(scan.log_end_offset, end);
    assert_eq!(scan.lsn_next, Lsn(4));
    assert_eq!(scan.later_batch, None);
    assert_eq!(
        scan.scrub_end_offset, torn_end,
        "the landed headers are scrubbed"
    );
    assert_eq!(
        decide(&scan, None),
        Ok(SegmentVerdict::EndOfLog { torn: true })
    );
}

#[test]
fn r2_torn_batch_whose_first_sector_did_not_land_is_a_clean_end_with_a_scrub() {
    let (mut image, segment_header, _, end) = two_batches();
    let big = vec![3; 700];
    let (offsets, torn_end) = put_batch(&mut image, end, GENERATION, 4, &[&big, b"e"]);
    // The first sector of the batch stayed zero; the later ones landed.
    image[end as usize..end as usize + 512].fill(0);
    assert!(offsets[1] >= end + 512);
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(scan.stop, ScanStop::CleanEnd);
    assert_eq!(scan.scrub_end_offset, torn_end);
    assert_eq!(
        decide(&scan, None),
        Ok(SegmentVerdict::EndOfLog { torn: false })
    );
}

#[test]
fn r2_batch_without_its_end_record_is_torn() {
    let (mut image, segment_header, _, end) = two_batches();
    let (offsets, _) = put_batch(&mut image, end, GENERATION, 4, &[b"d", b"e"]);
    // The batch-end record did not land at all.
    image[offsets[1] as usize..offsets[1] as usize + 80].fill(0);
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(
        scan.stop,
        ScanStop::Damaged {
            offset: offsets[1],
            damage: RecordDamage::ZeroInsideBatch
        }
    );
    assert_eq!(lsns(&scan), [1, 2, 3]);
    assert_eq!(
        decide(&scan, None),
        Ok(SegmentVerdict::EndOfLog { torn: true })
    );
}

#[test]
fn r2_stale_record_inside_a_batch_is_damage() {
    let (mut image, segment_header, _, end) = two_batches();
    let (offsets, _) = put_batch(&mut image, end, GENERATION, 4, &[b"d", b"e"]);
    put_batch(&mut image, offsets[1], GENERATION - 1, 5, &[b"e"]);
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(
        scan.stop,
        ScanStop::Damaged {
            offset: offsets[1],
            damage: RecordDamage::StaleInsideBatch {
                generation: GENERATION - 1
            }
        }
    );
    assert_eq!(
        decide(&scan, None),
        Ok(SegmentVerdict::EndOfLog { torn: true })
    );
}

#[test]
fn r3_corrupt_record_followed_by_a_later_batch_is_corruption_with_its_location() {
    let (mut image, segment_header, offsets, _) = two_batches();
    // A bit flip at rest in the first batch; the second batch is intact.
    image[offsets[1] as usize + 20] ^= 0x04;
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(lsns(&scan), Vec::<u64>::new());
    let corruption = decide(&scan, None).unwrap_err();
    assert_eq!(
        corruption.location,
        LogLocation {
            segment_index: 0,
            offset: offsets[1],
            generation: GENERATION,
            lsn_expected: Lsn(1),
        }
    );
    assert_eq!(
        corruption.kind,
        CorruptionKind::DamagedBeforeLaterBatch {
            later_offset: offsets[2],
            later_lsn: Lsn(3)
        }
    );
}

#[test]
fn r3_lost_write_followed_by_a_later_batch_is_corruption() {
    let (mut image, segment_header, offsets, _) = two_batches();
    // The first batch never reached the media but its sync "succeeded".
    image[offsets[0] as usize..offsets[2] as usize].fill(0);
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(scan.stop, ScanStop::CleanEnd);
    let corruption = decide(&scan, None).unwrap_err();
    assert_eq!(corruption.location.offset, SEGMENT_DATA_OFFSET);
    assert!(matches!(
        corruption.kind,
        CorruptionKind::DamagedBeforeLaterBatch {
            later_lsn: Lsn(3),
            ..
        }
    ));
}

#[test]
fn r3_misdirected_block_is_corruption() {
    let (mut image, segment_header, offsets, end) = two_batches();
    // The block of the second batch landed over the first batch's block.
    let second_block = image[offsets[2] as usize..end as usize].to_vec();
    image[SEGMENT_DATA_OFFSET as usize..offsets[2] as usize].copy_from_slice(&second_block);
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(
        scan.stop,
        ScanStop::Damaged {
            offset: SEGMENT_DATA_OFFSET,
            damage: RecordDamage::LsnMismatch { lsn: Lsn(3) }
        }
    );
    assert!(decide(&scan, None).is_err());
}

#[test]
fn r4_clean_end_continues_in_the_newer_segment() {
    let (image, segment_header, _, _) = two_batches();
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(
        decide(&scan, Some((1, Lsn(4)))),
        Ok(SegmentVerdict::ContinuesInNewerSegment)
    );
}

#[test]
fn r5_lsn_gap_before_the_newer_segment_is_corruption() {
    let (image, segment_header, _, end) = two_batches();
    let scan = scan_segment(&image, &segment_header).unwrap();
    let corruption = decide(&scan, Some((1, Lsn(6)))).unwrap_err();
    assert_eq!(corruption.location.offset, end);
    assert_eq!(
        corruption.kind,
        CorruptionKind::LsnGap {
            newer_segment_index: 1,
            newer_first_lsn: Lsn(6)
        }
    );
}

#[test]
fn r6_damage_before_a_newer_segment_is_corruption() {
    let (mut image, segment_header, _, end) = two_batches();
    let (offsets, _) = put_batch(&mut image, end, GENERATION, 4, &[b"d", b"e"]);
    // The body byte of the batch's last record: LSNs 4 and 5 are damaged, yet the newer
    // segment starts after them, at 6.
    image[offsets[1] as usize + RECORD_HEADER_BYTES] ^= 1;
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(scan.lsn_next, Lsn(4));
    let corruption = decide(&scan, Some((1, Lsn(6)))).unwrap_err();
    assert_eq!(corruption.location.offset, offsets[1]);
    assert_eq!(
        corruption.kind,
        CorruptionKind::DamagedBeforeNewerSegment {
            newer_segment_index: 1
        }
    );
}

#[test]
fn r4_stale_bytes_of_an_older_generation_after_the_last_batch_end_the_segment() {
    let (mut image, segment_header, _, end) = two_batches();
    // The recycled segment's previous life had a long record here: the new generation's next
    // block boundary falls in its body, which reads as a bad header.
    image[end as usize..end as usize + BLOCK_BYTES].fill(0xAB);
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert!(matches!(scan.stop, ScanStop::Damaged { .. }));
    assert_eq!(
        decide(&scan, Some((1, Lsn(4)))),
        Ok(SegmentVerdict::ContinuesInNewerSegment)
    );
    // The same bytes in front of a newer segment that starts later are a loss.
    assert!(decide(&scan, Some((1, Lsn(5)))).is_err());
}

#[test]
fn unknown_record_format_version_is_reported_not_taken_as_the_end() {
    let (mut image, segment_header, offsets, _) = two_batches();
    let at = offsets[2] as usize;
    image[at + 4..at + 6].copy_from_slice(&2u16.to_le_bytes());
    let checksum = crc32c::crc32c(&image[at..at + 60]);
    image[at + 60..at + 64].copy_from_slice(&checksum.to_le_bytes());
    let error = scan_segment(&image, &segment_header).unwrap_err();
    assert!(matches!(
        error,
        WalError::UnsupportedFormatVersion { segment_index: 0, offset, version: 2 } if offset == offsets[2]
    ));
}

#[test]
fn record_running_past_the_segment_end_is_damage() {
    let segment_header = header(0, GENERATION, 1);
    let mut image = new_image(&segment_header);
    let mut offset = SEGMENT_DATA_OFFSET;
    let mut lsn = 1;
    while offset < SEGMENT_BYTES - BLOCK_BYTES as u64 {
        offset = put_batch(&mut image, offset, GENERATION, lsn, &[b"x"]).1;
        lsn += 1;
    }
    // The last block holds a header whose body would run 1000 bytes past the segment end.
    let body = vec![1u8; BLOCK_BYTES + 1000 - RECORD_HEADER_BYTES];
    let mut scratch = vec![0; 3 * BLOCK_BYTES];
    put_batch(&mut scratch, 0, GENERATION, lsn, &[&body]);
    image[offset as usize..].copy_from_slice(&scratch[..BLOCK_BYTES]);
    let scan = scan_segment(&image, &segment_header).unwrap();
    assert_eq!(scan.records.len() as u64, lsn - 1);
    assert_eq!(
        scan.stop,
        ScanStop::Damaged {
            offset,
            damage: RecordDamage::BodyPastSegmentEnd
        }
    );
    assert_eq!(
        decide(&scan, None),
        Ok(SegmentVerdict::EndOfLog { torn: true })
    );
}

fn slots(headers: &[Option<SegmentHeader>]) -> Vec<SegmentHeaderSlot> {
    headers
        .iter()
        .map(|header| match header {
            Some(header) => SegmentHeaderSlot::Valid(*header),
            None => SegmentHeaderSlot::Zero,
        })
        .collect()
}

fn chain_indexes(plan: LogSegments) -> Vec<u32> {
    match plan {
        LogSegments::Chain(chain) => chain.iter().map(|header| header.segment_index).collect(),
        LogSegments::NoValidHeader => panic!("expected a chain"),
    }
}

#[test]
fn h1_no_valid_header() {
    let plan = plan_log_segments(&slots(&[None, None, None]), SEGMENT_BYTES).unwrap();
    assert_eq!(plan, LogSegments::NoValidHeader);
}

#[test]
fn h3_unknown_segment_format_version() {
    let mut slots = slots(&[Some(header(0, 1, 1)), None]);
    slots[1] = SegmentHeaderSlot::UnsupportedVersion(9);
    let error = plan_log_segments(&slots, SEGMENT_BYTES).unwrap_err();
    assert!(matches!(
        error,
        WalError::UnsupportedFormatVersion {
            segment_index: 1,
            offset: 0,
            version: 9
        }
    ));
}

#[test]
fn h4_header_of_another_index_or_size() {
    let error =
        plan_log_segments(&slots(&[Some(header(1, 1, 1)), None]), SEGMENT_BYTES).unwrap_err();
    assert!(
        matches!(error, WalError::Corruption(corruption) if matches!(corruption.kind, CorruptionKind::SegmentHeaderMismatch { segment_index: 1, .. }))
    );
    let error =
        plan_log_segments(&slots(&[Some(header(0, 1, 1)), None]), SEGMENT_BYTES * 2).unwrap_err();
    assert!(matches!(error, WalError::Corruption(_)));
}

#[test]
fn h5_duplicate_generations() {
    let error = plan_log_segments(
        &slots(&[Some(header(0, 3, 1)), Some(header(1, 3, 9))]),
        SEGMENT_BYTES,
    )
    .unwrap_err();
    assert!(
        matches!(error, WalError::Corruption(corruption) if matches!(corruption.kind, CorruptionKind::DuplicateGeneration { other_segment_index: 1 }))
    );
}

#[test]
fn h6_damaged_header_of_a_needed_segment_is_corruption() {
    // Ring of four: segments 1, 2, 3 hold generations 4, 5, 6; the newest needs 4 onwards.
    let newest = SegmentHeader {
        log_first_generation: 4,
        ..header(3, 6, 30)
    };
    let mut slots = slots(&[
        None,
        Some(header(1, 4, 10)),
        Some(header(2, 5, 20)),
        Some(newest),
    ]);
    slots[1] = SegmentHeaderSlot::Invalid(HeaderDamage::Checksum);
    let error = plan_log_segments(&slots, SEGMENT_BYTES).unwrap_err();
    let WalError::Corruption(corruption) = error else {
        panic!("expected corruption, got {error:?}")
    };
    assert_eq!(corruption.kind, CorruptionKind::SegmentHeaderDamaged);
    assert_eq!(corruption.location.segment_index, 1);
}

#[test]
fn h7_damaged_header_of_a_segment_no_longer_needed_is_free() {
    let newest = SegmentHeader {
        log_first_generation: 5,
        ..header(3, 6, 30)
    };
    let mut slots = slots(&[
        None,
        Some(header(1, 4, 10)),
        Some(header(2, 5, 20)),
        Some(newest),
    ]);
    slots[1] = SegmentHeaderSlot::Invalid(HeaderDamage::Magic);
    let plan = plan_log_segments(&slots, SEGMENT_BYTES).unwrap();
    assert_eq!(chain_indexes(plan), [2, 3]);
}

#[test]
fn h7_log_wraps_around_the_ring() {
    // Segments 2, 3 then 0, 1 were initialised in that order; 1 is the newest.
    let plan = plan_log_segments(
        &slots(&[
            Some(header(0, 7, 70)),
            Some(header(1, 8, 80)),
            Some(header(2, 5, 50)),
            Some(header(3, 6, 60)),
        ]),
        SEGMENT_BYTES,
    )
    .unwrap();
    assert_eq!(chain_indexes(plan), [2, 3, 0, 1]);
}

#[test]
fn h7_lost_reinitialisation_keeps_the_old_segment_in_the_log() {
    // Segment 2 (generation 3) is stale and not adjacent in generation: it is free.
    let plan = plan_log_segments(
        &slots(&[
            Some(header(0, 7, 70)),
            Some(header(1, 8, 80)),
            Some(header(2, 3, 50)),
            None,
        ]),
        SEGMENT_BYTES,
    )
    .unwrap();
    assert_eq!(chain_indexes(plan), [0, 1]);
}

#[test]
fn h8_records_newer_than_the_newest_header_are_found() {
    let segment_header = header(1, 9, 50);
    let mut image = new_image(&segment_header);
    // The header was lost: block 0 is zero, but the records of generation 9 are there.
    image[..SEGMENT_HEADER_BYTES].fill(0);
    put_batch(&mut image, SEGMENT_DATA_OFFSET, 9, 50, &[b"acknowledged"]);
    assert_eq!(
        find_newer_generation_record(&image, 8),
        Some((SEGMENT_DATA_OFFSET, 9))
    );
    // Stale records of older generations are not evidence.
    assert_eq!(find_newer_generation_record(&image, 9), None);
}
