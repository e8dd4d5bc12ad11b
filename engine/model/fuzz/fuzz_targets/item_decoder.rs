//! Feeds arbitrary bytes to the item decoder. Nothing may panic, and whatever decodes must
//! re-encode to the same bytes (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_model::encoding::{decode_item, encode_item};

fuzz_target!(|data: &[u8]| {
    if let Ok(item) = decode_item(data) {
        assert_eq!(encode_item(&item), data);
    }
});
