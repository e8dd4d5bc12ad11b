//! Feeds arbitrary bytes to the typed item request decoder. Nothing may panic, and whatever
//! decodes must re-encode to the same bytes (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_model::request_codec::{decode_request, encode_request};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_request(data) {
        assert_eq!(encode_request(&request), data);
    }
});
