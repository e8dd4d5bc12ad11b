//! Feeds arbitrary requests to SigV4's parser and checks: the `Authorization` header and the
//! presigned query string, then every later step a parsed signature meets (scope, time,
//! canonical request, verification). Nothing may panic, and a signature the parser accepts is
//! well formed (what later steps rely on).
//!
//! The input is text: the first line is the request target (path and query), each following
//! line up to an empty one is a header (`name: value`), and the rest is the body.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use shoal_http::sigv4::{self, SignedRequest};

/// The clock of the checks: 2026-11-21T00:00:00Z, the seeds' date.
const NOW_UNIX_SECONDS: u64 = 1_795_219_200;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let target = lines.next().unwrap_or("/");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let request = SignedRequest {
        method: "POST",
        target,
        headers: &headers,
        body: body.as_bytes(),
    };
    let Ok(signature) = sigv4::parse(&request) else {
        return;
    };
    assert!(!signature.access_key_id.is_empty());
    assert_eq!(signature.scope_date.len(), 8);
    assert_eq!(signature.signature.len(), 64);
    assert!(signature.signed_headers.iter().any(|name| name == "host"));
    let _ = sigv4::check_scope(&signature, "us-east-1");
    let _ = sigv4::check_time(&signature, UNIX_EPOCH + Duration::from_secs(NOW_UNIX_SECONDS));
    let _ = sigv4::canonical_request(&signature, &request);
    let _ = sigv4::verify(&signature, &request, "secret");
});
