//! HTTP/1.1 message bodies sent with `Transfer-Encoding: chunked` (RFC 9112 section 7.1), as a
//! sans-IO decoder: the server feeds it the bytes it reads, and it appends the body's bytes
//! until the last chunk and its trailer section have arrived.
//!
//! DynamoDB takes chunked bodies and holds them to its 16 MB request limit, answering `413` past
//! it (ScyllaDB's test/alternator/test_manual_requests.py, test_too_large_request_chunked,
//! passes against DynamoDB). Every line the decoder keeps is bounded
//! ([`CHUNK_SIZE_LINE_BYTES_MAX`], [`TRAILER_BYTES_MAX`]), and so is the body (`body_bytes_max`):
//! a peer cannot make it hold more than those, whatever it sends.
//!
//! Strictness, because a lenient framing parser behind a stricter proxy is how requests are
//! smuggled: lines end in CRLF, a chunk size is 1 to [`CHUNK_SIZE_HEX_DIGITS_MAX`] hex digits
//! (optionally followed by `;` extensions, which are ignored), and the data of each chunk must be
//! followed by CRLF.

/// A chunk-size line (size and extensions) may be this long, CRLF included.
pub const CHUNK_SIZE_LINE_BYTES_MAX: usize = 1024;
/// The trailer section after the last chunk may be this long in all (the same bound as a head).
pub const TRAILER_BYTES_MAX: usize = 16 * 1024;
/// Hex digits of a chunk size: 16 fit a u64; more is refused before any arithmetic.
pub const CHUNK_SIZE_HEX_DIGITS_MAX: usize = 16;

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkedError {
    /// Not chunked framing: the stream can no longer be read (answered `400`).
    Malformed,
    /// The chunks add up to more than the body limit (answered `413`).
    TooLarge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line into `line`.
    SizeLine,
    /// Copying this many more bytes of chunk data.
    Data {
        remaining: usize,
    },
    /// Expecting the CR, then the LF, that end a chunk's data.
    DataEndCr,
    DataEndLf,
    /// Reading trailer lines (ignored) until an empty one.
    Trailer,
    Done,
}

/// Decodes one chunked body. Feed it what arrives; it says how much it used.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk-size or trailer line read so far.
    line: Vec<u8>,
    trailer_bytes: usize,
    body_bytes_max: usize,
}

impl ChunkedDecoder {
    pub fn new(body_bytes_max: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::SizeLine,
            line: Vec::new(),
            trailer_bytes: 0,
            body_bytes_max,
        }
    }

    /// Whether the last chunk and the trailer section have been read: the body is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending data to `body`; returns how many bytes of `input` it
    /// used. It uses all of `input` unless the body ends inside it: what follows is the next
    /// request.
    pub fn feed(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        let mut position = 0;
        while position < input.len() {
            match self.state {
                State::Done => break,
                State::SizeLine => {
                    let byte = input[position];
                    position += 1;
                    self.line.push(byte);
                    if self.line.len() > CHUNK_SIZE_LINE_BYTES_MAX {
                        return Err(ChunkedError::Malformed);
                    }
                    if byte == b'\n' {
                        let size = chunk_size(&self.line)?;
                        self.line.clear();
                        if size == 0 {
                            self.state = State::Trailer;
                        } else if size > self.body_bytes_max.saturating_sub(body.len()) {
                            return Err(ChunkedError::TooLarge);
                        } else {
                            self.state = State::Data { remaining: size };
                        }
                    }
                }
                State::Data { remaining } => {
                    let available = input.len() - position;
                    let taken = remaining.min(available);
                    body.extend_from_slice(&input[position..position + taken]);
                    position += taken;
                    self.state = if taken == remaining {
                        State::DataEndCr
                    } else {
                        State::Data {
                            remaining: remaining - taken,
                        }
                    };
                }
                State::DataEndCr | State::DataEndLf => {
                    let expected = if self.state == State::DataEndCr {
                        b'\r'
                    } else {
                        b'\n'
                    };
                    if input[position] != expected {
                        return Err(ChunkedError::Malformed);
                    }
                    position += 1;
                    self.state = if self.state == State::DataEndCr {
                        State::DataEndLf
                    } else {
                        State::SizeLine
                    };
                }
                State::Trailer => {
                    let byte = input[position];
                    position += 1;
                    self.line.push(byte);
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > TRAILER_BYTES_MAX {
                        return Err(ChunkedError::Malformed);
                    }
                    if byte == b'\n' {
                        if !self.line.ends_with(b"\r\n") {
                            return Err(ChunkedError::Malformed);
                        }
                        let empty = self.line.len() == 2;
                        self.line.clear();
                        if empty {
                            self.state = State::Done;
                        }
                    }
                }
            }
        }
        Ok(position)
    }
}

/// The size a chunk-size line (CRLF included) announces.
fn chunk_size(line: &[u8]) -> Result<usize, ChunkedError> {
    let line = line.strip_suffix(b"\r\n").ok_or(ChunkedError::Malformed)?;
    // Extensions after `;` are ignored (RFC 9112 section 7.1.1); whitespace before it is
    // tolerated, as RFC 9112's BWS allows.
    let digits = line.split(|byte| *byte == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii_end();
    if digits.is_empty()
        || digits.len() > CHUNK_SIZE_HEX_DIGITS_MAX
        || !digits.iter().all(u8::is_ascii_hexdigit)
    {
        return Err(ChunkedError::Malformed);
    }
    let text = std::str::from_utf8(digits).map_err(|_| ChunkedError::Malformed)?;
    let size = u64::from_str_radix(text, 16).map_err(|_| ChunkedError::Malformed)?;
    // A size past usize (only on 32-bit targets) is past any body limit.
    usize::try_from(size).map_err(|_| ChunkedError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], limit: usize) -> Result<(Vec<u8>, usize), ChunkedError> {
        let mut decoder = ChunkedDecoder::new(limit);
        let mut body = Vec::new();
        let used = decoder.feed(input, &mut body)?;
        assert!(decoder.is_done(), "incomplete");
        Ok((body, used))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let input = b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let (body, used) = decode_all(input, 100).unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(&input[used..], b"NEXT", "the next request is left alone");
        let (body, _) = decode_all(b"A\r\n0123456789\r\n0\r\n\r\n", 100).unwrap();
        assert_eq!(body, b"0123456789");
    }

    #[test]
    fn decodes_the_same_one_byte_at_a_time() {
        let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let mut decoder = ChunkedDecoder::new(100);
        let mut body = Vec::new();
        for byte in input {
            assert!(!decoder.is_done());
            assert_eq!(decoder.feed(std::slice::from_ref(byte), &mut body), Ok(1));
        }
        assert!(decoder.is_done());
        assert_eq!(body, b"hello world");
    }

    #[test]
    fn refuses_bodies_past_the_limit_before_copying_them() {
        let mut decoder = ChunkedDecoder::new(10);
        let mut body = Vec::new();
        assert_eq!(
            decoder.feed(b"B\r\n", &mut body),
            Err(ChunkedError::TooLarge)
        );
        // Two chunks that are each within the limit but not together.
        let mut decoder = ChunkedDecoder::new(10);
        let mut body = Vec::new();
        assert_eq!(
            decoder.feed(b"6\r\nabcdef\r\n6\r\n", &mut body),
            Err(ChunkedError::TooLarge)
        );
        assert_eq!(body, b"abcdef");
        // A size of 17 hex digits, or one that overflows, is malformed, not a huge body.
        assert_eq!(
            decode_all(b"10000000000000000\r\n", usize::MAX),
            Err(ChunkedError::Malformed)
        );
        assert_eq!(
            decode_all(b"FFFFFFFFFFFFFFFF\r\n", 10),
            Err(ChunkedError::TooLarge)
        );
    }

    #[test]
    fn refuses_malformed_framing() {
        for input in [
            &b"\r\n"[..],
            b"x\r\n",
            b"-1\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"0\r\nbad trailer\n\r\n",
        ] {
            let mut decoder = ChunkedDecoder::new(100);
            assert_eq!(
                decoder.feed(input, &mut Vec::new()),
                Err(ChunkedError::Malformed),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // Lines are bounded: an endless size line or trailer is refused at its bound.
        let long_line = vec![b'0'; CHUNK_SIZE_LINE_BYTES_MAX + 1];
        assert_eq!(
            ChunkedDecoder::new(100).feed(&long_line, &mut Vec::new()),
            Err(ChunkedError::Malformed)
        );
        let mut endless_trailer = b"0\r\n".to_vec();
        endless_trailer.extend(vec![b'a'; TRAILER_BYTES_MAX + 1]);
        assert_eq!(
            ChunkedDecoder::new(100).feed(&endless_trailer, &mut Vec::new()),
            Err(ChunkedError::Malformed)
        );
    }
}
