//! Feeds arbitrary bodies through the path a request body takes after its head: chunked
//! framing (in pieces of arbitrary sizes, as reads deliver them), `Content-Encoding` decoding
//! (gzip, deflate, identity, unknown), then JSON parsing. Nothing may panic, and the limits
//! hold: no decoded body is longer than BODY_BYTES_MAX, and the chunked decoder never uses
//! more bytes than it was given.
//!
//! The first byte picks the encoding and the framing, the second the size of the pieces the
//! chunked decoder is fed; the rest is the body as sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_http::framing::ChunkedDecoder;
use shoal_http::protocol::{BODY_BYTES_MAX, decode_body, parse_body};

const ENCODINGS: [Option<&str>; 5] = [None, Some("gzip"), Some("deflate"), Some("identity"), Some("br")];

fuzz_target!(|data: &[u8]| {
    let [selector, piece, rest @ ..] = data else {
        return;
    };
    let encoding = ENCODINGS[usize::from(selector % 5)];
    let body = if selector & 0x80 != 0 {
        // Chunked: fed in pieces, as reads deliver them.
        let piece_bytes = usize::from(*piece).max(1);
        let mut decoder = ChunkedDecoder::new(BODY_BYTES_MAX);
        let mut decoded = Vec::new();
        let mut position = 0;
        while position < rest.len() && !decoder.is_done() {
            let end = (position + piece_bytes).min(rest.len());
            match decoder.feed(&rest[position..end], &mut decoded) {
                Ok(used) => {
                    assert!(used <= end - position);
                    assert!(used == end - position || decoder.is_done());
                    position += used;
                }
                Err(_) => return,
            }
            assert!(decoded.len() <= BODY_BYTES_MAX);
        }
        if !decoder.is_done() {
            return;
        }
        decoded
    } else {
        rest.to_vec()
    };
    if let Ok(inflated) = decode_body(encoding, body) {
        assert!(encoding.is_none() || encoding == Some("identity") || inflated.len() <= BODY_BYTES_MAX);
        let _ = parse_body(&inflated);
    }
});
