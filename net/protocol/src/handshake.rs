//! The authentication handshake (FORMAT.md, "Authentication"): four fixed-layout messages a
//! connection exchanges before its requests, so that the router knows which access key speaks
//! on it, without the secret ever crossing the wire.
//!
//! 1. Client: `Hello` (`SHH2`): "I will authenticate".
//! 2. Server: `Challenge` (`SHC2`): 32 random bytes chosen for this connection, and whether
//!    the server verifies keys at all.
//! 3. Client: `Authenticate` (`SHA2`): the key id, the client's clock, the challenge it
//!    answers, and HMAC-SHA256 with the secret over all three ([`string_to_sign`]).
//! 4. Server: `Authenticated` (`SHR2`): nothing (accepted), or an error name and message (the
//!    connection then closes).
//!
//! Replay: the signature covers a challenge the server drew for this connection alone, so a
//! handshake recorded on one connection proves nothing on another; the timestamp bounds how
//! long a client may sit on a challenge and catches clocks far off.
//!
//! These bodies travel in the ordinary frame (frame.rs: length, crc32c) but are not
//! flatbuffers: bytes 0..4 are zero (no flatbuffer has its root at offset 0, so no verifier
//! would accept one) and bytes 4..8 the identifier, so a reader tells them from requests and
//! responses by the same bytes it already checks. Every integer is little-endian.
//!
//! Pure functions and data, like the rest of the crate; the server's state machine lives with
//! the listener (tools/shoal/src/native.rs), the client's in shoal-client.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::frame::encode_frame;

type HmacSha256 = Hmac<Sha256>;

/// Bytes 4..8 of a client's `Hello`.
pub const HELLO_IDENTIFIER: [u8; 4] = *b"SHH2";
/// Bytes 4..8 of the server's `Challenge`.
pub const CHALLENGE_IDENTIFIER: [u8; 4] = *b"SHC2";
/// Bytes 4..8 of a client's `Authenticate`.
pub const AUTHENTICATE_IDENTIFIER: [u8; 4] = *b"SHA2";
/// Bytes 4..8 of the server's `Authenticated` (the outcome).
pub const AUTHENTICATED_IDENTIFIER: [u8; 4] = *b"SHR2";

/// The zero marker and the identifier.
pub const PREFIX_BYTES: usize = 8;
/// The random challenge: 256 bits, so that two connections never share one.
pub const NONCE_BYTES: usize = 32;
/// An HMAC-SHA256 tag.
pub const SIGNATURE_BYTES: usize = 32;
/// The longest access key id accepted (ours are 20 characters, AWS's up to 128).
pub const ACCESS_KEY_ID_BYTES_MAX: usize = 128;
/// The longest error name or message an `Authenticated` carries (each).
pub const OUTCOME_TEXT_BYTES_MAX: usize = 2048;
/// How far the client's timestamp may be from the server's clock, either way: SigV4's window
/// (router/http/src/sigv4.rs), so that a clock good enough for the HTTP API is good enough here.
pub const CLOCK_SKEW_MAX: Duration = Duration::from_secs(15 * 60);
/// The first bytes of the string to sign: names the scheme and its version, so that a tag made
/// for anything else (a SigV4 request uses derived keys and other text) never verifies here.
pub const SIGNING_LABEL: &[u8] = b"SHOAL-NATIVE-HMAC-SHA256\n";

/// `Hello` is the prefix alone.
pub const HELLO_BYTES: usize = PREFIX_BYTES;
/// Prefix, nonce, `verifies` byte, 7 zero bytes (keeps the size a multiple of 8).
pub const CHALLENGE_BYTES: usize = PREFIX_BYTES + NONCE_BYTES + 8;
/// Prefix, nonce, timestamp, signature, key id length; the key id follows.
pub const AUTHENTICATE_FIXED_BYTES: usize = PREFIX_BYTES + NONCE_BYTES + 8 + SIGNATURE_BYTES + 2;
/// Prefix and the two text lengths; the texts follow.
pub const AUTHENTICATED_FIXED_BYTES: usize = PREFIX_BYTES + 4;

// Lengths are u16 fields; every message fits a frame (BODY_BYTES_MIN is 8).
const _: () = assert!(ACCESS_KEY_ID_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(OUTCOME_TEXT_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(HELLO_BYTES >= crate::limits::BODY_BYTES_MIN);
const _: () = assert!(
    AUTHENTICATED_FIXED_BYTES + 2 * OUTCOME_TEXT_BYTES_MAX <= crate::limits::BODY_BYTES_MAX
);

/// The kind of a frame body, by bytes 0..8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeKind {
    Hello,
    Challenge,
    Authenticate,
    Authenticated,
}

/// Whether `body` is a handshake message, and which (bytes 0..4 zero, 4..8 an identifier
/// above). Anything else is left to the flatbuffers decoders.
pub fn handshake_kind(body: &[u8]) -> Option<HandshakeKind> {
    if body.len() < PREFIX_BYTES || body[0..4] != [0; 4] {
        return None;
    }
    let identifier: [u8; 4] = [body[4], body[5], body[6], body[7]];
    match identifier {
        HELLO_IDENTIFIER => Some(HandshakeKind::Hello),
        CHALLENGE_IDENTIFIER => Some(HandshakeKind::Challenge),
        AUTHENTICATE_IDENTIFIER => Some(HandshakeKind::Authenticate),
        AUTHENTICATED_IDENTIFIER => Some(HandshakeKind::Authenticated),
        _ => None,
    }
}

/// Why a handshake body cannot be read. The server answers it as IncompleteSignatureException
/// and closes; a client treats it as a protocol error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not the message expected here.
    Kind { expected: HandshakeKind },
    /// A length that does not add up, a zero padding byte that is not, text that is not UTF-8.
    Malformed(String),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Kind { expected } => {
                write!(formatter, "not a handshake {expected:?} message")
            }
            HandshakeError::Malformed(reason) => write!(formatter, "{reason}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

fn prefix(identifier: [u8; 4], capacity: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(capacity);
    body.extend_from_slice(&[0; 4]);
    body.extend_from_slice(&identifier);
    body
}

fn expect(
    body: &[u8],
    kind: HandshakeKind,
    length_ok: impl Fn(usize) -> bool,
) -> Result<(), HandshakeError> {
    if handshake_kind(body) != Some(kind) {
        return Err(HandshakeError::Kind { expected: kind });
    }
    if !length_ok(body.len()) {
        return Err(HandshakeError::Malformed(format!(
            "a {kind:?} message of {} bytes",
            body.len()
        )));
    }
    Ok(())
}

fn u16_at(body: &[u8], offset: usize) -> usize {
    usize::from(u16::from_le_bytes([body[offset], body[offset + 1]]))
}

/// The frame of a client's `Hello`.
pub fn encode_hello() -> Vec<u8> {
    encode_frame(&prefix(HELLO_IDENTIFIER, HELLO_BYTES))
}

/// Checks a `Hello` body (exactly the prefix).
pub fn decode_hello(body: &[u8]) -> Result<(), HandshakeError> {
    expect(body, HandshakeKind::Hello, |length| length == HELLO_BYTES)
}

/// The server's challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Random bytes the server drew for this connection.
    pub nonce: [u8; NONCE_BYTES],
    /// `false` when the server accepts any credentials (`--auth none`): the client may still
    /// answer, and the server then checks only the message's shape.
    pub verifies: bool,
}

impl Challenge {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = prefix(CHALLENGE_IDENTIFIER, CHALLENGE_BYTES);
        body.extend_from_slice(&self.nonce);
        body.push(u8::from(self.verifies));
        body.extend_from_slice(&[0; 7]);
        debug_assert_eq!(body.len(), CHALLENGE_BYTES);
        encode_frame(&body)
    }

    pub fn decode(body: &[u8]) -> Result<Challenge, HandshakeError> {
        expect(body, HandshakeKind::Challenge, |length| {
            length == CHALLENGE_BYTES
        })?;
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&body[PREFIX_BYTES..PREFIX_BYTES + NONCE_BYTES]);
        let flags = &body[PREFIX_BYTES + NONCE_BYTES..];
        let verifies = match flags[0] {
            0 => false,
            1 => true,
            other => {
                return Err(HandshakeError::Malformed(format!(
                    "verifies is {other}, not 0 or 1"
                )));
            }
        };
        if flags[1..] != [0; 7] {
            return Err(HandshakeError::Malformed(
                "the challenge's padding is not zero".to_string(),
            ));
        }
        Ok(Challenge { nonce, verifies })
    }
}

/// A client's answer to a challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticate {
    /// The challenge this answers, as the client received it.
    pub nonce: [u8; NONCE_BYTES],
    /// The client's clock when it signed, unix seconds.
    pub unix_seconds: u64,
    /// HMAC-SHA256 of [`string_to_sign`] with the secret access key.
    pub signature: [u8; SIGNATURE_BYTES],
    /// 1 to [`ACCESS_KEY_ID_BYTES_MAX`] bytes of printable ASCII.
    pub access_key_id: String,
}

/// What the signature covers: [`SIGNING_LABEL`], the nonce, the timestamp (u64 LE), and the
/// key id's bytes (last, so nothing needs its length).
pub fn string_to_sign(
    nonce: &[u8; NONCE_BYTES],
    unix_seconds: u64,
    access_key_id: &str,
) -> Vec<u8> {
    let mut text = Vec::with_capacity(SIGNING_LABEL.len() + NONCE_BYTES + 8 + access_key_id.len());
    text.extend_from_slice(SIGNING_LABEL);
    text.extend_from_slice(nonce);
    text.extend_from_slice(&unix_seconds.to_le_bytes());
    text.extend_from_slice(access_key_id.as_bytes());
    text
}

fn mac_of(secret_access_key: &str) -> HmacSha256 {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    HmacSha256::new_from_slice(secret_access_key.as_bytes()).unwrap_or_else(|_| unreachable!())
}

fn check_access_key_id(access_key_id: &str) -> Result<(), HandshakeError> {
    if access_key_id.is_empty() || access_key_id.len() > ACCESS_KEY_ID_BYTES_MAX {
        return Err(HandshakeError::Malformed(format!(
            "the access key id is {} bytes long, not 1 to {ACCESS_KEY_ID_BYTES_MAX}",
            access_key_id.len()
        )));
    }
    if !access_key_id.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(HandshakeError::Malformed(
            "the access key id is not printable ASCII".to_string(),
        ));
    }
    Ok(())
}

impl Authenticate {
    /// The client's answer to `challenge`, signed with the secret now (`unix_seconds`).
    pub fn sign(
        challenge: &Challenge,
        access_key_id: &str,
        secret_access_key: &str,
        unix_seconds: u64,
    ) -> Result<Authenticate, HandshakeError> {
        check_access_key_id(access_key_id)?;
        let mut mac = mac_of(secret_access_key);
        mac.update(&string_to_sign(
            &challenge.nonce,
            unix_seconds,
            access_key_id,
        ));
        Ok(Authenticate {
            nonce: challenge.nonce,
            unix_seconds,
            signature: mac.finalize().into_bytes().into(),
            access_key_id: access_key_id.to_string(),
        })
    }

    /// Whether the signature is the one `secret_access_key` makes, compared in constant time
    /// (`Mac::verify_slice`, as sigv4.rs does).
    pub fn signature_matches(&self, secret_access_key: &str) -> bool {
        let mut mac = mac_of(secret_access_key);
        mac.update(&string_to_sign(
            &self.nonce,
            self.unix_seconds,
            &self.access_key_id,
        ));
        mac.verify_slice(&self.signature).is_ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = prefix(
            AUTHENTICATE_IDENTIFIER,
            AUTHENTICATE_FIXED_BYTES + self.access_key_id.len(),
        );
        body.extend_from_slice(&self.nonce);
        body.extend_from_slice(&self.unix_seconds.to_le_bytes());
        body.extend_from_slice(&self.signature);
        // check_access_key_id bounded it by ACCESS_KEY_ID_BYTES_MAX, which fits a u16.
        body.extend_from_slice(&(self.access_key_id.len() as u16).to_le_bytes());
        body.extend_from_slice(self.access_key_id.as_bytes());
        encode_frame(&body)
    }

    pub fn decode(body: &[u8]) -> Result<Authenticate, HandshakeError> {
        expect(body, HandshakeKind::Authenticate, |length| {
            length > AUTHENTICATE_FIXED_BYTES
        })?;
        let mut offset = PREFIX_BYTES;
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&body[offset..offset + NONCE_BYTES]);
        offset += NONCE_BYTES;
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&body[offset..offset + 8]);
        offset += 8;
        let mut signature = [0u8; SIGNATURE_BYTES];
        signature.copy_from_slice(&body[offset..offset + SIGNATURE_BYTES]);
        offset += SIGNATURE_BYTES;
        let length = u16_at(body, offset);
        offset += 2;
        if body.len() - offset != length {
            return Err(HandshakeError::Malformed(format!(
                "access_key_id_length says {length} bytes, the message holds {}",
                body.len() - offset
            )));
        }
        let access_key_id = std::str::from_utf8(&body[offset..])
            .map_err(|_| {
                HandshakeError::Malformed("the access key id is not printable ASCII".to_string())
            })?
            .to_string();
        check_access_key_id(&access_key_id)?;
        Ok(Authenticate {
            nonce,
            unix_seconds: u64::from_le_bytes(timestamp),
            signature,
            access_key_id,
        })
    }
}

/// Where a timestamp lies against the server's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockCheck {
    Current,
    /// Older than `now - CLOCK_SKEW_MAX` (this bound, in unix seconds).
    Expired {
        earliest: u64,
    },
    /// Newer than `now + CLOCK_SKEW_MAX`.
    NotYetCurrent {
        latest: u64,
    },
}

/// Checks `unix_seconds` against the server's `now_seconds`, [`CLOCK_SKEW_MAX`] either way.
pub fn check_clock(unix_seconds: u64, now_seconds: u64) -> ClockCheck {
    let skew = CLOCK_SKEW_MAX.as_secs();
    let earliest = now_seconds.saturating_sub(skew);
    let latest = now_seconds.saturating_add(skew);
    if unix_seconds < earliest {
        ClockCheck::Expired { earliest }
    } else if unix_seconds > latest {
        ClockCheck::NotYetCurrent { latest }
    } else {
        ClockCheck::Current
    }
}

/// The server's answer to `Authenticate`: `Ok` (the connection is now the key's), or the
/// error, after which the server closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub outcome: Result<(), (String, String)>,
}

fn clipped(text: &str) -> &str {
    if text.len() <= OUTCOME_TEXT_BYTES_MAX {
        return text;
    }
    let mut end = OUTCOME_TEXT_BYTES_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Authenticated {
    /// The frame; names and messages past [`OUTCOME_TEXT_BYTES_MAX`] are cut at a character
    /// boundary (ours are far shorter).
    pub fn encode(&self) -> Vec<u8> {
        let (type_name, message) = match &self.outcome {
            Ok(()) => ("", ""),
            Err((type_name, message)) => (clipped(type_name), clipped(message)),
        };
        let mut body = prefix(
            AUTHENTICATED_IDENTIFIER,
            AUTHENTICATED_FIXED_BYTES + type_name.len() + message.len(),
        );
        // clipped() bounded both by OUTCOME_TEXT_BYTES_MAX, which fits a u16.
        body.extend_from_slice(&(type_name.len() as u16).to_le_bytes());
        body.extend_from_slice(&(message.len() as u16).to_le_bytes());
        body.extend_from_slice(type_name.as_bytes());
        body.extend_from_slice(message.as_bytes());
        encode_frame(&body)
    }

    pub fn decode(body: &[u8]) -> Result<Authenticated, HandshakeError> {
        expect(body, HandshakeKind::Authenticated, |length| {
            length >= AUTHENTICATED_FIXED_BYTES
        })?;
        let type_length = u16_at(body, PREFIX_BYTES);
        let message_length = u16_at(body, PREFIX_BYTES + 2);
        if body.len() != AUTHENTICATED_FIXED_BYTES + type_length + message_length {
            return Err(HandshakeError::Malformed(format!(
                "lengths {type_length} + {message_length} do not add up to the message's {} bytes",
                body.len()
            )));
        }
        if type_length == 0 {
            if message_length != 0 {
                return Err(HandshakeError::Malformed(
                    "a message without an error name".to_string(),
                ));
            }
            return Ok(Authenticated { outcome: Ok(()) });
        }
        let text = |range: std::ops::Range<usize>| {
            std::str::from_utf8(&body[range])
                .map(str::to_string)
                .map_err(|_| HandshakeError::Malformed("an outcome text is not UTF-8".to_string()))
        };
        let start = AUTHENTICATED_FIXED_BYTES;
        let type_name = text(start..start + type_length)?;
        let message = text(start + type_length..body.len())?;
        Ok(Authenticated {
            outcome: Err((type_name, message)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::split_frame;

    fn body_of(frame: &[u8]) -> Vec<u8> {
        let (body, used) = split_frame(frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        body.to_vec()
    }

    const CHALLENGE: Challenge = Challenge {
        nonce: [7; NONCE_BYTES],
        verifies: true,
    };

    #[test]
    fn messages_round_trip_and_are_told_apart_from_flatbuffers() {
        // FORMAT.md's golden frame.
        assert_eq!(
            encode_hello(),
            [
                8, 0, 0, 0, 0x8f, 0x57, 0x27, 0xe0, 0, 0, 0, 0, b'S', b'H', b'H', b'2'
            ]
        );
        let hello = body_of(&encode_hello());
        assert_eq!(hello, b"\0\0\0\0SHH2");
        decode_hello(&hello).unwrap();
        let challenge = body_of(&CHALLENGE.encode());
        assert_eq!(challenge.len(), CHALLENGE_BYTES);
        assert_eq!(Challenge::decode(&challenge).unwrap(), CHALLENGE);
        let answer =
            Authenticate::sign(&CHALLENGE, "AKSHEXAMPLE", "secret", 1_800_000_000).unwrap();
        let encoded = body_of(&answer.encode());
        assert_eq!(
            encoded.len(),
            AUTHENTICATE_FIXED_BYTES + "AKSHEXAMPLE".len()
        );
        assert_eq!(Authenticate::decode(&encoded).unwrap(), answer);
        for outcome in [
            Ok(()),
            Err(("UnrecognizedClientException".to_string(), "no".to_string())),
        ] {
            let result = Authenticated { outcome };
            assert_eq!(
                Authenticated::decode(&body_of(&result.encode())).unwrap(),
                result
            );
        }
        // A request buffer's bytes 0..4 are its root offset, never zero.
        let request =
            crate::encode_request(1, crate::Operation::ListTables, &serde_json::json!({})).unwrap();
        assert_eq!(handshake_kind(&body_of(&request)), None);
        assert_eq!(handshake_kind(b"\0\0\0\0SHX2"), None);
        assert_eq!(
            Challenge::decode(&hello),
            Err(HandshakeError::Kind {
                expected: HandshakeKind::Challenge
            })
        );
    }

    // The layout FORMAT.md documents, byte by byte.
    #[test]
    fn the_authenticate_layout_is_the_documented_one() {
        let answer = Authenticate {
            nonce: [0xab; NONCE_BYTES],
            unix_seconds: 0x0102_0304_0506_0708,
            signature: [0xcd; SIGNATURE_BYTES],
            access_key_id: "AK".to_string(),
        };
        let body = body_of(&answer.encode());
        assert_eq!(&body[0..8], b"\0\0\0\0SHA2");
        assert_eq!(&body[8..40], &[0xab; 32]);
        assert_eq!(&body[40..48], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&body[48..80], &[0xcd; 32]);
        assert_eq!(&body[80..82], &[2, 0]);
        assert_eq!(&body[82..], b"AK");
        let challenge = body_of(
            &Challenge {
                nonce: [1; 32],
                verifies: false,
            }
            .encode(),
        );
        assert_eq!(&challenge[40..48], &[0; 8]);
    }

    // The tag pinned here was computed outside Rust (Python's hmac module over the documented
    // bytes), so a change of the string to sign or of the key's use fails this test.
    #[test]
    fn the_signature_covers_the_documented_string() {
        let text = string_to_sign(&[7; NONCE_BYTES], 1_800_000_000, "AKSHEXAMPLE");
        let mut expected = b"SHOAL-NATIVE-HMAC-SHA256\n".to_vec();
        expected.extend_from_slice(&[7; 32]);
        expected.extend_from_slice(&1_800_000_000u64.to_le_bytes());
        expected.extend_from_slice(b"AKSHEXAMPLE");
        assert_eq!(text, expected);
        let answer =
            Authenticate::sign(&CHALLENGE, "AKSHEXAMPLE", "secret", 1_800_000_000).unwrap();
        let hex: String = answer
            .signature
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(
            hex,
            "7bc0c610c0cb10fd578a5756083f321e7193f34b7b0c8d41a7be47d69be2b106"
        );
    }

    #[test]
    fn only_the_right_secret_nonce_time_and_key_verify() {
        let answer =
            Authenticate::sign(&CHALLENGE, "AKSHEXAMPLE", "secret", 1_800_000_000).unwrap();
        assert!(answer.signature_matches("secret"));
        assert!(!answer.signature_matches("secreT"));
        assert!(!answer.signature_matches(""));
        let mut other_nonce = answer.clone();
        other_nonce.nonce[31] ^= 1;
        assert!(!other_nonce.signature_matches("secret"));
        let mut other_time = answer.clone();
        other_time.unix_seconds += 1;
        assert!(!other_time.signature_matches("secret"));
        let mut other_key = answer.clone();
        other_key.access_key_id = "AKSHEXAMPLF".to_string();
        assert!(!other_key.signature_matches("secret"));
        let mut flipped = answer;
        flipped.signature[0] ^= 0x80;
        assert!(!flipped.signature_matches("secret"));
    }

    #[test]
    fn malformed_messages_are_refused_with_their_reason() {
        let good = body_of(
            &Authenticate::sign(&CHALLENGE, "AKSHEXAMPLE", "secret", 1)
                .unwrap()
                .encode(),
        );
        // Every truncation, and one byte too many.
        for length in 0..good.len() {
            assert!(Authenticate::decode(&good[..length]).is_err(), "{length}");
        }
        let mut long = good.clone();
        long.push(b'X');
        assert!(matches!(
            Authenticate::decode(&long),
            Err(HandshakeError::Malformed(reason)) if reason.contains("says 11 bytes, the message holds 12")
        ));
        let mut control = good.clone();
        let last = control.len() - 1;
        control[last] = b'\n';
        assert!(Authenticate::decode(&control).is_err());
        assert!(Authenticate::sign(&CHALLENGE, "", "secret", 1).is_err());
        assert!(Authenticate::sign(&CHALLENGE, &"A".repeat(129), "secret", 1).is_err());
        let mut challenge = body_of(&CHALLENGE.encode());
        challenge[40] = 2;
        assert!(Challenge::decode(&challenge).is_err());
        challenge[40] = 1;
        challenge[47] = 1;
        assert!(Challenge::decode(&challenge).is_err());
        assert!(decode_hello(b"\0\0\0\0SHH2\0").is_err());
        let mut outcome = body_of(
            &Authenticated {
                outcome: Err(("E".to_string(), "m".to_string())),
            }
            .encode(),
        );
        outcome.pop();
        assert!(Authenticated::decode(&outcome).is_err());
    }

    #[test]
    fn the_clock_window_is_fifteen_minutes_either_way() {
        let now = 1_800_000_000;
        assert_eq!(check_clock(now, now), ClockCheck::Current);
        assert_eq!(check_clock(now - 900, now), ClockCheck::Current);
        assert_eq!(check_clock(now + 900, now), ClockCheck::Current);
        assert_eq!(
            check_clock(now - 901, now),
            ClockCheck::Expired {
                earliest: now - 900
            }
        );
        assert_eq!(
            check_clock(now + 901, now),
            ClockCheck::NotYetCurrent { latest: now + 900 }
        );
        assert_eq!(check_clock(0, 10), ClockCheck::Current);
    }

    #[test]
    fn long_outcome_texts_are_cut_at_a_character_boundary() {
        let message = "é".repeat(OUTCOME_TEXT_BYTES_MAX);
        let result = Authenticated {
            outcome: Err(("E".to_string(), message)),
        };
        let decoded = Authenticated::decode(&body_of(&result.encode())).unwrap();
        let (_, cut) = decoded.outcome.unwrap_err();
        assert_eq!(cut.len(), OUTCOME_TEXT_BYTES_MAX);
    }
}
