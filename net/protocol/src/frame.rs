//! The frame around every flatbuffer on a native client connection (FORMAT.md, "Frame"):
//!
//! ```text
//! offset 0: u32 LE  body_length   (bytes of the flatbuffer that follows)
//! offset 4: u32 LE  body_crc32c   (crc32c, Castagnoli, of those bytes)
//! offset 8: body_length bytes     (a Request or Response flatbuffer)
//! ```
//!
//! The checksum is checked before the flatbuffers verifier sees a byte: the verifier only
//! checks that offsets stay in bounds, and accepted a flipped payload byte (kernel-notes/glommio-runtime.md).
//!
//! Invariants:
//! 1. A frame's body is `BODY_BYTES_MIN..=BODY_BYTES_MAX` bytes; the header is checked before
//!    any body byte is buffered, so a hostile length never allocates more than the maximum.
//! 2. A body is handed on only after its crc32c matched.

use std::fmt;
use std::io::Read;

use crate::limits::{BODY_BYTES_MAX, BODY_BYTES_MIN, HEADER_BYTES};

/// Why bytes are not a frame. Every one of these ends the connection: after a bad frame the
/// stream can no longer be trusted to be aligned on frame boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is above `BODY_BYTES_MAX`.
    Oversize { body_length: u64 },
    /// The length field is below `BODY_BYTES_MIN` (no flatbuffer is that small).
    Undersize { body_length: u64 },
    /// The body's crc32c does not match the header.
    Checksum { expected: u32, actual: u32 },
    /// The stream ended inside a frame.
    Truncated {
        bytes_read: usize,
        bytes_expected: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversize { body_length } => write!(
                formatter,
                "frame body of {body_length} bytes is over the limit of {BODY_BYTES_MAX}"
            ),
            FrameError::Undersize { body_length } => write!(
                formatter,
                "frame body of {body_length} bytes is under the minimum of {BODY_BYTES_MIN}"
            ),
            FrameError::Checksum { expected, actual } => write!(
                formatter,
                "frame body crc32c is {actual:#010x}, the header says {expected:#010x}"
            ),
            FrameError::Truncated {
                bytes_read,
                bytes_expected,
            } => write!(
                formatter,
                "the stream ended {bytes_read} bytes into a frame of {bytes_expected}"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// The decoded header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_length: usize,
    pub body_crc32c: u32,
}

impl FrameHeader {
    /// Checks the length field (invariant 1).
    pub fn decode(header: &[u8; HEADER_BYTES]) -> Result<FrameHeader, FrameError> {
        let body_length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let body_crc32c = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let body_length_wide = u64::from(body_length);
        if body_length_wide > BODY_BYTES_MAX as u64 {
            return Err(FrameError::Oversize {
                body_length: body_length_wide,
            });
        }
        if body_length_wide < BODY_BYTES_MIN as u64 {
            return Err(FrameError::Undersize {
                body_length: body_length_wide,
            });
        }
        Ok(FrameHeader {
            // Fits: at most BODY_BYTES_MAX, checked above.
            body_length: body_length as usize,
            body_crc32c,
        })
    }

    /// Checks `body` against the header's checksum (invariant 2).
    pub fn check_body(&self, body: &[u8]) -> Result<(), FrameError> {
        let actual = crc32c::crc32c(body);
        if actual != self.body_crc32c {
            return Err(FrameError::Checksum {
                expected: self.body_crc32c,
                actual,
            });
        }
        Ok(())
    }
}

/// Appends the frame of `body` to `out`. The caller built `body` (a flatbuffer of ours), so a
/// body outside the limits is a bug in this process, not bad input.
pub fn encode_frame_into(body: &[u8], out: &mut Vec<u8>) {
    assert!(
        (BODY_BYTES_MIN..=BODY_BYTES_MAX).contains(&body.len()),
        "frame body of {} bytes outside {BODY_BYTES_MIN}..={BODY_BYTES_MAX}",
        body.len()
    );
    // Fits in u32: BODY_BYTES_MAX < 2^32 (limits.rs).
    let length = body.len() as u32;
    out.reserve(HEADER_BYTES + body.len());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// The frame of `body`.
pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    encode_frame_into(body, &mut out);
    out
}

/// Takes one complete frame from the front of `buffer`: `Ok(None)` while more bytes are
/// needed, else the checked body and the bytes the frame used. A header that breaks the limits
/// fails at once, before its body arrives.
pub fn split_frame(buffer: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(header) = buffer.first_chunk::<HEADER_BYTES>() else {
        return Ok(None);
    };
    let header = FrameHeader::decode(header)?;
    let frame_bytes = HEADER_BYTES + header.body_length;
    let Some(body) = buffer.get(HEADER_BYTES..frame_bytes) else {
        return Ok(None);
    };
    header.check_body(body)?;
    Ok(Some((body, frame_bytes)))
}

/// Why a blocking read of a frame failed.
#[derive(Debug)]
pub enum ReadFrameError {
    /// The stream ended cleanly between frames.
    Closed,
    Frame(FrameError),
    Io(std::io::Error),
}

impl fmt::Display for ReadFrameError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadFrameError::Closed => write!(formatter, "the connection was closed"),
            ReadFrameError::Frame(error) => write!(formatter, "bad frame: {error}"),
            ReadFrameError::Io(error) => write!(formatter, "{error}"),
        }
    }
}

impl std::error::Error for ReadFrameError {}

/// Reads `buffer.len()` bytes, telling a clean end before the first byte apart from an end
/// inside. Returns the bytes read.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Reads one frame from a blocking stream and returns its checked body.
pub fn read_frame(reader: &mut impl Read) -> Result<Vec<u8>, ReadFrameError> {
    let mut header = [0u8; HEADER_BYTES];
    let read = read_full(reader, &mut header).map_err(ReadFrameError::Io)?;
    if read == 0 {
        return Err(ReadFrameError::Closed);
    }
    if read < HEADER_BYTES {
        return Err(ReadFrameError::Frame(FrameError::Truncated {
            bytes_read: read,
            bytes_expected: HEADER_BYTES,
        }));
    }
    let header = FrameHeader::decode(&header).map_err(ReadFrameError::Frame)?;
    let mut body = vec![0u8; header.body_length];
    let read = read_full(reader, &mut body).map_err(ReadFrameError::Io)?;
    if read < header.body_length {
        return Err(ReadFrameError::Frame(FrameError::Truncated {
            bytes_read: HEADER_BYTES + read,
            bytes_expected: HEADER_BYTES + header.body_length,
        }));
    }
    header.check_body(&body).map_err(ReadFrameError::Frame)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(length: usize) -> Vec<u8> {
        (0..length).map(|index| (index * 7 + 3) as u8).collect()
    }

    #[test]
    fn a_frame_round_trips_and_its_header_is_little_endian() {
        let payload = body(300);
        let frame = encode_frame(&payload);
        assert_eq!(&frame[0..4], &[0x2c, 0x01, 0x00, 0x00], "300 as u32 LE");
        assert_eq!(&frame[4..8], &crc32c::crc32c(&payload).to_le_bytes());
        let (decoded, used) = split_frame(&frame).unwrap().unwrap();
        assert_eq!(decoded, &payload[..]);
        assert_eq!(used, frame.len());
        assert_eq!(read_frame(&mut &frame[..]).unwrap(), payload);
    }

    #[test]
    fn the_crc32c_is_castagnoli() {
        // The check value of CRC-32C: crc32c("123456789") = 0xE3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let frame = encode_frame(&body(40));
        for bit in 0..frame.len() * 8 {
            let mut flipped = frame.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            // A flip in the length field may make the frame look incomplete (more bytes
            // needed) or break a limit; anywhere else the checksum must catch it.
            match split_frame(&flipped) {
                Ok(None) => assert!(bit < 32, "bit {bit}: frame treated as incomplete"),
                Ok(Some(_)) => panic!("bit {bit}: flipped frame accepted"),
                Err(_) => {}
            }
            assert!(read_frame(&mut &flipped[..]).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn truncated_frames_need_more_bytes_or_fail_at_end_of_stream() {
        let frame = encode_frame(&body(64));
        for length in 1..frame.len() {
            assert_eq!(split_frame(&frame[..length]), Ok(None), "prefix {length}");
            match read_frame(&mut &frame[..length]) {
                Err(ReadFrameError::Frame(FrameError::Truncated { bytes_read, .. })) => {
                    assert_eq!(bytes_read, length)
                }
                other => panic!("prefix {length}: {other:?}"),
            }
        }
        assert!(matches!(
            read_frame(&mut &frame[..0]),
            Err(ReadFrameError::Closed)
        ));
    }

    #[test]
    fn oversize_and_undersize_lengths_fail_before_the_body_arrives() {
        let mut header = Vec::new();
        header.extend_from_slice(&(BODY_BYTES_MAX as u32 + 1).to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            split_frame(&header),
            Err(FrameError::Oversize {
                body_length: BODY_BYTES_MAX as u64 + 1
            })
        );
        assert!(matches!(
            read_frame(&mut &header[..]),
            Err(ReadFrameError::Frame(FrameError::Oversize { .. }))
        ));
        header[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            split_frame(&header),
            Err(FrameError::Oversize { .. })
        ));
        header[0..4].copy_from_slice(&(BODY_BYTES_MIN as u32 - 1).to_le_bytes());
        assert!(matches!(
            split_frame(&header),
            Err(FrameError::Undersize { .. })
        ));
        // The largest body allowed is accepted.
        let largest = vec![0u8; BODY_BYTES_MAX];
        let frame = encode_frame(&largest);
        assert_eq!(split_frame(&frame).unwrap().unwrap().1, frame.len());
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn encoding_an_oversize_body_is_a_bug() {
        encode_frame(&vec![0u8; BODY_BYTES_MAX + 1]);
    }

    mod property {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            /// Any sequence of frames, fed in any chunking, decodes back to the same bodies;
            /// any one corrupted byte in the stream is rejected or leaves a frame incomplete.
            #[test]
            fn random_frames_round_trip_and_corruption_is_caught(
                bodies in proptest::collection::vec(
                    proptest::collection::vec(any::<u8>(), BODY_BYTES_MIN..600), 1..8),
                corrupt_at in any::<prop::sample::Index>(),
                corrupt_with in 1u8..=255,
            ) {
                let mut stream = Vec::new();
                for body in &bodies {
                    encode_frame_into(body, &mut stream);
                }
                let mut offset = 0;
                let mut decoded = Vec::new();
                while let Some((body, used)) = split_frame(&stream[offset..]).unwrap() {
                    decoded.push(body.to_vec());
                    offset += used;
                }
                prop_assert_eq!(offset, stream.len());
                prop_assert_eq!(&decoded, &bodies);

                let position = corrupt_at.index(stream.len());
                let mut corrupted = stream.clone();
                corrupted[position] ^= corrupt_with;
                let mut offset = 0;
                let mut intact = 0;
                let outcome = loop {
                    match split_frame(&corrupted[offset..]) {
                        Ok(Some((body, used))) => {
                            prop_assert_eq!(body, &bodies[intact][..], "a corrupted body passed");
                            intact += 1;
                            offset += used;
                        }
                        other => break other.map(|found| found.map(|(_, used)| used)),
                    }
                };
                // The frames before the corrupted one decode; the corrupted one never does.
                prop_assert!(offset <= position);
                prop_assert!(outcome.is_err() || outcome == Ok(None));
            }
        }
    }
}
