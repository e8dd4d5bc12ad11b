//! The bus frame: round trips, corruption, truncation, limits and the streaming decoder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use proptest::collection::vec;
use proptest::prelude::*;
use shoal_wire::frame::HEADER_CHECKSUMMED_BYTES;
use shoal_wire::messages::*;
use shoal_wire::*;

fn round_trip(message: &BusMessage) -> BusMessage {
    let frame = encode_frame(message).unwrap();
    let (decoded, consumed) = decode_frame(&frame).unwrap();
    assert_eq!(consumed, frame.len());
    decoded
}

/// A header with valid checksums around an arbitrary body, to reach the checks after the
/// checksums.
fn frame_with_body(kind: MessageKind, body: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        kind,
        body_length: body.len() as u32,
        body_crc32c: crc32c::crc32c(body),
    };
    let mut frame = header.encode().to_vec();
    frame.extend_from_slice(body);
    frame
}

#[test]
fn every_sample_message_round_trips() {
    for message in common::sample_messages() {
        assert_eq!(round_trip(&message), message);
    }
}

#[test]
fn header_fields_sit_at_their_documented_offsets() {
    let message = BusMessage::Hello {
        from: ShardAddress { node: 1, shard: 2 },
    };
    let frame = encode_frame(&message).unwrap();
    assert_eq!(&frame[0..4], b"SHL1");
    assert_eq!(
        u16::from_le_bytes([frame[4], frame[5]]),
        FRAME_FORMAT_VERSION
    );
    assert_eq!(
        u16::from_le_bytes([frame[6], frame[7]]),
        MessageKind::Hello.code()
    );
    let body_length = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]) as usize;
    assert_eq!(body_length, frame.len() - FRAME_HEADER_BYTES);
    let body_crc = u32::from_le_bytes([frame[12], frame[13], frame[14], frame[15]]);
    assert_eq!(body_crc, crc32c::crc32c(&frame[FRAME_HEADER_BYTES..]));
    assert!(frame[16..28].iter().all(|byte| *byte == 0));
    let header_crc = u32::from_le_bytes([frame[28], frame[29], frame[30], frame[31]]);
    assert_eq!(
        header_crc,
        crc32c::crc32c(&frame[..HEADER_CHECKSUMMED_BYTES])
    );
}

#[test]
fn every_single_bit_flip_is_detected() {
    let samples = common::sample_messages();
    // A small frame (Hello) and a larger one with every payload kind (Replication).
    for message in [&samples[0], &samples[1], &samples[3]] {
        let frame = encode_frame(message).unwrap();
        for bit in 0..frame.len() * 8 {
            let mut corrupted = frame.to_vec();
            corrupted[bit / 8] ^= 1 << (bit % 8);
            let result = decode_frame(&corrupted);
            assert!(
                result.is_err(),
                "flip of bit {bit} in a {:?} frame went undetected",
                MessageKind::of(message)
            );
            // The streaming decoder agrees.
            let mut decoder = FrameDecoder::new();
            let mut input = &corrupted[..];
            let mut frames = 0;
            let mut failed = false;
            while !input.is_empty() {
                match decoder.decode(&mut input) {
                    Ok(Some(_)) => frames += 1,
                    Ok(None) => {}
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            // A flip in the length field can make the decoder wait for more bytes instead; it
            // then never yields the corrupted frame.
            assert!(failed || frames == 0, "bit {bit}: corrupted frame yielded");
        }
    }
}

#[test]
fn header_checks_report_what_is_wrong() {
    let frame = encode_frame(&common::sample_messages()[0]).unwrap();

    let mut bad_magic = frame.to_vec();
    bad_magic[0] = b'X';
    assert!(matches!(
        decode_frame(&bad_magic),
        Err(FrameError::BadMagic { .. })
    ));

    let mut bad_body = frame.to_vec();
    let last = bad_body.len() - 1;
    bad_body[last] ^= 0x80;
    assert!(matches!(
        decode_frame(&bad_body),
        Err(FrameError::BodyChecksum { .. })
    ));

    // Well-formed headers (checksums recomputed) with a wrong version, kind or reserved byte.
    let rewrite = |edit: &dyn Fn(&mut [u8])| {
        let mut bytes = frame.to_vec();
        edit(&mut bytes);
        let crc = crc32c::crc32c(&bytes[..HEADER_CHECKSUMMED_BYTES]);
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        decode_frame(&bytes)
    };
    assert_eq!(
        rewrite(&|bytes| bytes[4..6].copy_from_slice(&1u16.to_le_bytes())).unwrap_err(),
        FrameError::UnsupportedVersion { found: 1 }
    );
    assert_eq!(
        rewrite(&|bytes| bytes[6..8].copy_from_slice(&99u16.to_le_bytes())).unwrap_err(),
        FrameError::UnknownKind { found: 99 }
    );
    assert_eq!(
        rewrite(&|bytes| bytes[20] = 1).unwrap_err(),
        FrameError::ReservedNotZero
    );
    // Header says Request, body archives a Hello.
    assert_eq!(
        rewrite(&|bytes| bytes[6..8].copy_from_slice(&MessageKind::Request.code().to_le_bytes()))
            .unwrap_err(),
        FrameError::KindMismatch {
            header: MessageKind::Request,
            body: MessageKind::Hello
        }
    );
}

#[test]
fn truncated_frames_are_reported_and_streaming_waits() {
    let frame = encode_frame(&common::sample_messages()[1]).unwrap();
    for length in 0..frame.len() {
        assert!(
            matches!(
                decode_frame(&frame[..length]),
                Err(FrameError::Truncated { .. })
            ),
            "prefix of {length} bytes"
        );
        let mut decoder = FrameDecoder::new();
        let mut input = &frame[..length];
        assert_eq!(decoder.decode(&mut input).unwrap(), None);
        assert!(input.is_empty());
    }
}

#[test]
fn oversize_length_is_rejected_from_the_header_alone() {
    let header = FrameHeader {
        kind: MessageKind::Snapshot,
        body_length: (FRAME_BODY_BYTES_MAX + 1) as u32,
        body_crc32c: 0,
    };
    let bytes = header.encode();
    assert_eq!(
        FrameHeader::decode(&bytes).unwrap_err(),
        FrameError::BodyTooLarge {
            length: FRAME_BODY_BYTES_MAX as u64 + 1,
            max: FRAME_BODY_BYTES_MAX as u64
        }
    );
    // The streaming decoder fails as soon as the 32 header bytes are in, with no body sent.
    let mut decoder = FrameDecoder::new();
    let mut input = &bytes[..];
    assert!(matches!(
        decoder.decode(&mut input),
        Err(FrameError::BodyTooLarge { .. })
    ));
    // u32::MAX as well.
    let header = FrameHeader {
        body_length: u32::MAX,
        ..header
    };
    assert!(matches!(
        FrameHeader::decode(&header.encode()),
        Err(FrameError::BodyTooLarge { .. })
    ));
}

#[test]
fn the_largest_accept_fits_and_a_larger_body_is_refused_by_the_encoder() {
    use shoal_replication::limits::{ACCEPT_BATCH_BYTES_MAX, COMMAND_BYTES_MAX};
    let entry = LogEntryWire {
        ballot: BallotWire { round: 1, node: 1 },
        payload: PayloadWire::Command(vec![7; COMMAND_BYTES_MAX]),
    };
    let largest = BusMessage::Replication(vec![ReplicationEnvelope {
        group: 1,
        from: 1,
        to: 2,
        message: ReplicationMessageWire::Accept {
            ballot: BallotWire { round: 1, node: 1 },
            round: 1,
            first_slot: 1,
            // The core fills an Accept up to ACCEPT_BATCH_BYTES_MAX and may add one more entry.
            entries: vec![entry; ACCEPT_BATCH_BYTES_MAX / COMMAND_BYTES_MAX + 1],
            commit_slot: 0,
        },
    }]);
    let frame = encode_frame(&largest).unwrap();
    assert!(frame.len() <= FRAME_BYTES_MAX);
    assert_eq!(decode_frame(&frame).unwrap().0, largest);

    let too_large = BusMessage::Snapshot(SnapshotChunk {
        group: 1,
        from: 1,
        to: 2,
        transfer_id: 1,
        last_included_slot: 1,
        membership: MembershipWire::default(),
        chunk_index: 0,
        items: vec![(Vec::new(), vec![0; FRAME_BODY_BYTES_MAX])],
        last: true,
    });
    assert!(matches!(
        encode_frame(&too_large),
        Err(FrameError::BodyTooLarge { .. })
    ));
}

#[test]
fn an_unaligned_body_is_copied_and_decoded() {
    let message = common::sample_messages()[3].clone();
    let frame = encode_frame(&message).unwrap();
    let mut shifted = vec![0u8; 1];
    shifted.extend_from_slice(&frame);
    assert_eq!(decode_frame(&shifted[1..]).unwrap().0, message);
}

#[test]
fn a_failed_decoder_stays_failed() {
    let mut decoder = FrameDecoder::new();
    let mut garbage = &[0u8; 40][..];
    let first = decoder.decode(&mut garbage).unwrap_err();
    let frame = encode_frame(&common::sample_messages()[0]).unwrap();
    let mut input = &frame[..];
    assert_eq!(decoder.decode(&mut input).unwrap_err(), first);
}

#[test]
fn a_body_that_is_not_an_archive_is_invalid_not_a_panic() {
    let frame = frame_with_body(MessageKind::Replication, &[0xFF; 64]);
    assert!(matches!(
        decode_frame(&frame),
        Err(FrameError::InvalidArchive { .. })
    ));
    let frame = frame_with_body(MessageKind::Hello, &[]);
    assert!(matches!(
        decode_frame(&frame),
        Err(FrameError::InvalidArchive { .. })
    ));
}

/// Decodes `stream` split at the given cut points.
fn decode_in_chunks(stream: &[u8], cuts: &[usize]) -> Vec<BusMessage> {
    let mut decoder = FrameDecoder::new();
    let mut messages = Vec::new();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(stream.len());
    for cut in cuts {
        decoder
            .decode_chunk(&stream[start..cut], &mut messages)
            .unwrap();
        start = cut;
    }
    assert!(decoder.is_between_frames());
    messages
}

#[test]
fn streaming_byte_by_byte() {
    let messages = common::sample_messages();
    let mut stream = Vec::new();
    for message in &messages {
        stream.extend_from_slice(&encode_frame(message).unwrap());
    }
    let cuts: Vec<usize> = (0..stream.len()).collect();
    assert_eq!(decode_in_chunks(&stream, &cuts), messages);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_replication_batches_round_trip(batch in vec(common::envelope(), 0..8)) {
        let message = BusMessage::Replication(batch);
        prop_assert_eq!(round_trip(&message), message);
    }

    #[test]
    fn streaming_in_random_chunks(
        batches in vec(vec(common::envelope(), 0..4), 1..6),
        cuts in vec(any::<usize>(), 0..20),
    ) {
        let messages: Vec<BusMessage> =
            batches.into_iter().map(BusMessage::Replication).collect();
        let mut stream = Vec::new();
        for message in &messages {
            stream.extend_from_slice(&encode_frame(message).unwrap());
        }
        prop_assert_eq!(decode_in_chunks(&stream, &cuts), messages);
    }

    /// Invariant 5: decode consumes at least one byte of non-empty input (or fails), so loops
    /// over a chunk are bounded by its length.
    #[test]
    fn every_decode_call_makes_progress(
        batch in vec(common::envelope(), 0..3),
        garbage in vec(any::<u8>(), 0..64),
        cut in 1usize..64,
    ) {
        let mut stream = encode_frame(&BusMessage::Replication(batch)).unwrap().to_vec();
        stream.extend_from_slice(&garbage);
        let mut decoder = FrameDecoder::new();
        for piece in stream.chunks(cut) {
            let mut input = piece;
            while !input.is_empty() {
                let before = input.len();
                match decoder.decode(&mut input) {
                    Ok(_) => prop_assert!(input.len() < before),
                    Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn garbage_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes);
        let mut decoder = FrameDecoder::new();
        let mut messages = Vec::new();
        let _ = decoder.decode_chunk(&bytes, &mut messages);
    }

    /// Garbage behind a header with correct checksums reaches rkyv's validation, which must
    /// refuse it without panicking (or accept it only if it really is a valid archive).
    #[test]
    fn garbage_bodies_with_valid_checksums_never_panic(
        kind in 0usize..5,
        body in vec(any::<u8>(), 0..256),
    ) {
        let frame = frame_with_body(MessageKind::ALL[kind], &body);
        if let Ok((message, _)) = decode_frame(&frame) {
            prop_assert_eq!(MessageKind::of(&message), MessageKind::ALL[kind]);
        }
    }

    /// A valid frame with one random byte replaced is detected (crc32c catches every error
    /// burst up to 32 bits).
    #[test]
    fn random_byte_corruption_is_detected(
        batch in vec(common::envelope(), 1..4),
        position in any::<usize>(),
        xor in 1u8..=255,
    ) {
        let frame = encode_frame(&BusMessage::Replication(batch)).unwrap();
        let mut corrupted = frame.to_vec();
        let index = position % corrupted.len();
        corrupted[index] ^= xor;
        prop_assert!(decode_frame(&corrupted).is_err());
    }
}
