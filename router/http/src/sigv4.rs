//! AWS Signature Version 4, the way DynamoDB checks it: the signature of a request signed in its
//! `Authorization` header or presigned in its query string, recomputed from the request as
//! received and compared in constant time.
//!
//! The steps, in the order a request meets them (each a pure function, so tests feed requests
//! and clocks and assert the exact error):
//! 1. [`parse`]: find the signature (the `Authorization` header, else the `X-Amz-*` query
//!    parameters) and check its shape; `MissingAuthenticationTokenException` when there is none,
//!    `IncompleteSignatureException` when it is malformed.
//! 2. [`check_scope`]: the credential's date, region and service.
//! 3. [`check_time`]: the request time within [`CLOCK_SKEW_MAX`] of ours, and a presigned
//!    request not past its `X-Amz-Expires`.
//! 4. The caller looks the access key up (`UnrecognizedClientException` if unknown).
//! 5. [`verify`]: canonical request, string to sign, signing key, HMAC, constant-time compare.
//!
//! The canonical request follows AWS's specification as botocore builds it: the path with dot
//! segments and empty segments removed, then URI-encoded (the received path is encoded once, so
//! a `%` becomes `%25`: AWS's "encode twice" for every service but S3); the query parameters
//! decoded, re-encoded with AWS's unreserved set and sorted by name, then value; the signed
//! headers lower-cased, their values trimmed with inner runs of spaces collapsed, repeated
//! headers joined with commas; and the payload's SHA-256. The payload hash is always computed
//! from the body received: an `X-Amz-Content-SHA256` header must equal it (DynamoDB has no
//! unsigned payloads), so a signed request's body cannot be swapped.
//!
//! Cryptography comes from RustCrypto (`hmac`, `sha2`); `Mac::verify_slice` compares in
//! constant time (it uses `subtle`).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::protocol::ApiError;

/// The one algorithm SigV4 names.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service in DynamoDB's credential scope.
pub const SERVICE: &str = "dynamodb";
/// The last member of every credential scope.
pub const SCOPE_TERMINATOR: &str = "aws4_request";
/// How far a request's time may be from ours, either way. DynamoDB's window is 15 minutes (its
/// messages say "- 15 min."; see the tests), where some other AWS services use 5.
pub const CLOCK_SKEW_MAX: Duration = Duration::from_secs(15 * 60);
/// The longest `X-Amz-Expires` of a presigned request: one week, as AWS allows.
pub const PRESIGNED_EXPIRES_SECONDS_MAX: u64 = 7 * 24 * 3600;
/// Signed headers per request at most (the HTTP layer admits 64 headers in all).
pub const SIGNED_HEADERS_MAX: usize = 64;
/// A signature is a hex HMAC-SHA256: 64 characters.
const SIGNATURE_HEX_LENGTH: usize = 64;

/// The message DynamoDB answers a signature that does not match, whatever the cause.
pub const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

type HmacSha256 = Hmac<Sha256>;

/// A request as the HTTP layer received it: what the signature covers.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'request> {
    pub method: &'request str,
    /// The request target as sent: the path and the query string, still percent-encoded.
    pub target: &'request str,
    pub headers: &'request [(String, String)],
    /// The body as sent (before any Content-Encoding is undone).
    pub body: &'request [u8],
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }

    fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, query)| query)
    }
}

/// Where the signature travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The `Authorization` header.
    Header,
    /// `X-Amz-*` query parameters; the request is good until `X-Amz-Expires` seconds after its
    /// date.
    Query { expires_seconds: u64 },
}

/// A well-formed signature, not verified yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub access_key_id: String,
    /// The credential scope's date, `YYYYMMDD`.
    pub scope_date: String,
    pub region: String,
    pub service: String,
    /// Lower-case header names, in the order the client listed them.
    pub signed_headers: Vec<String>,
    /// 64 hex digits.
    pub signature: String,
    /// The request time, `YYYYMMDDTHHMMSSZ`, as the string to sign carries it.
    pub timestamp: String,
    /// The request time in seconds since the unix epoch.
    pub unix_seconds: u64,
    pub placement: Placement,
}

impl Signature {
    fn credential_scope(&self) -> String {
        format!(
            "{}/{}/{}/{SCOPE_TERMINATOR}",
            self.scope_date, self.region, self.service
        )
    }
}

fn missing_token() -> ApiError {
    ApiError::new(
        "MissingAuthenticationTokenException",
        "Request is missing Authentication Token",
    )
}

fn incomplete(message: impl Into<String>) -> ApiError {
    ApiError::new("IncompleteSignatureException", message)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidSignatureException", message)
}

/// Step 1: the request's signature and its shape. A request with neither an `Authorization`
/// header nor an `X-Amz-Algorithm` query parameter carries none.
pub fn parse(request: &SignedRequest<'_>) -> Result<Signature, ApiError> {
    if let Some(header) = request.header("authorization") {
        return parse_header(request, header);
    }
    let query = query_parameters(request.query());
    if query.iter().any(|(name, _)| name == "X-Amz-Algorithm") {
        return parse_query(&query);
    }
    Err(missing_token())
}

/// The members of an `Authorization` header, in the order DynamoDB reports their absence.
struct HeaderFields<'header> {
    credential: &'header str,
    signed_headers: &'header str,
    signature: &'header str,
}

fn header_fields(header: &str) -> Result<HeaderFields<'_>, ApiError> {
    let Some(parameters) = header
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
    else {
        return Err(incomplete(format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={header}"
        )));
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in parameters.split(',') {
        let part = part.trim();
        if let Some(value) = part.strip_prefix("Credential=") {
            credential = Some(value);
        } else if let Some(value) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(value);
        } else if let Some(value) = part.strip_prefix("Signature=") {
            signature = Some(value);
        }
    }
    match (credential, signed_headers, signature) {
        (Some(credential), Some(signed_headers), Some(signature)) => Ok(HeaderFields {
            credential,
            signed_headers,
            signature,
        }),
        _ => {
            let mut missing = Vec::new();
            if credential.is_none() {
                missing.push("Authorization header requires 'Credential' parameter.");
            }
            if signed_headers.is_none() {
                missing.push("Authorization header requires 'SignedHeaders' parameter.");
            }
            if signature.is_none() {
                missing.push("Authorization header requires 'Signature' parameter.");
            }
            Err(incomplete(format!(
                "{} Authorization={header}",
                missing.join(" ")
            )))
        }
    }
}

/// Credential = access-key/date/region/service/aws4_request.
fn credential_scope(credential: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = credential.split('/');
    let access_key_id = parts.next()?;
    let date = parts.next()?;
    let region = parts.next()?;
    let service = parts.next()?;
    let terminator = parts.next()?;
    let well_formed = parts.next().is_none()
        && !access_key_id.is_empty()
        && date.len() == 8
        && date.bytes().all(|byte| byte.is_ascii_digit())
        && !region.is_empty()
        && !service.is_empty()
        && terminator == SCOPE_TERMINATOR;
    well_formed.then_some((access_key_id, date, region, service))
}

fn signed_header_names(list: &str) -> Option<Vec<String>> {
    let names: Vec<String> = list
        .split(';')
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let well_formed = !names.is_empty()
        && names.len() <= SIGNED_HEADERS_MAX
        && names.iter().all(|name| !name.is_empty());
    well_formed.then_some(names)
}

fn well_formed_signature(signature: &str) -> bool {
    signature.len() == SIGNATURE_HEX_LENGTH
        && signature.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// `Host` must be signed: without it a signature could be replayed at another endpoint.
fn host_is_signed(names: &[String]) -> bool {
    names
        .iter()
        .any(|name| name == "host" || name == ":authority")
}

const HOST_NOT_SIGNED: &str =
    "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.";

fn parse_header(request: &SignedRequest<'_>, header: &str) -> Result<Signature, ApiError> {
    let fields = header_fields(header)?;
    let Some((access_key_id, scope_date, region, service)) = credential_scope(fields.credential)
    else {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid region. Authorization={header}"
        )));
    };
    if !well_formed_signature(fields.signature) {
        return Err(incomplete(format!(
            "Signature must be 64 hexadecimal characters. Authorization={header}"
        )));
    }
    let Some(signed_headers) = signed_header_names(fields.signed_headers) else {
        return Err(incomplete(format!(
            "Authorization header requires 'SignedHeaders' parameter. Authorization={header}"
        )));
    };
    if !host_is_signed(&signed_headers) {
        return Err(incomplete(HOST_NOT_SIGNED));
    }
    let (timestamp, unix_seconds) = request_time(request).ok_or_else(|| {
        incomplete(format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={header}"
        ))
    })?;
    Ok(Signature {
        access_key_id: access_key_id.to_string(),
        scope_date: scope_date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers,
        signature: fields.signature.to_ascii_lowercase(),
        timestamp,
        unix_seconds,
        placement: Placement::Header,
    })
}

/// The request time from `X-Amz-Date` (ISO 8601 basic), else `Date` (RFC 7231).
fn request_time(request: &SignedRequest<'_>) -> Option<(String, u64)> {
    if let Some(text) = request.header("x-amz-date") {
        let text = text.trim();
        return parse_timestamp(text).map(|seconds| (text.to_string(), seconds));
    }
    let date = httpdate::parse_http_date(request.header("date")?.trim()).ok()?;
    let seconds = date.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some((format_timestamp(seconds), seconds))
}

fn parse_query(query: &[(String, String)]) -> Result<Signature, ApiError> {
    let find = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let required = |name: &str| {
        find(name).ok_or_else(|| {
            incomplete(format!(
                "AWS query-string parameters must include '{name}'. Re-examine the query-string parameters."
            ))
        })
    };
    let algorithm = required("X-Amz-Algorithm")?;
    let credential = required("X-Amz-Credential")?;
    let signed_headers = required("X-Amz-SignedHeaders")?;
    let signature = required("X-Amz-Signature")?;
    let date = required("X-Amz-Date")?;
    let expires = required("X-Amz-Expires")?;
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'"
        )));
    }
    let Some((access_key_id, scope_date, region, service)) = credential_scope(credential) else {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid region. X-Amz-Credential={credential}"
        )));
    };
    if !well_formed_signature(signature) {
        return Err(incomplete(
            "Signature must be 64 hexadecimal characters. Re-examine the query-string parameters.",
        ));
    }
    let Some(signed_headers) = signed_header_names(signed_headers) else {
        return Err(incomplete(
            "AWS query-string parameters must include 'X-Amz-SignedHeaders'. Re-examine the query-string parameters.",
        ));
    };
    if !host_is_signed(&signed_headers) {
        return Err(incomplete(HOST_NOT_SIGNED));
    }
    let Some(unix_seconds) = parse_timestamp(date) else {
        return Err(incomplete(format!(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\": {date}"
        )));
    };
    let expires_seconds = match expires.parse::<u64>() {
        Ok(seconds) if seconds <= PRESIGNED_EXPIRES_SECONDS_MAX => seconds,
        _ => {
            return Err(incomplete(format!(
                "X-Amz-Expires must be a number of seconds from 0 to {PRESIGNED_EXPIRES_SECONDS_MAX}: {expires}"
            )));
        }
    };
    Ok(Signature {
        access_key_id: access_key_id.to_string(),
        scope_date: scope_date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
        timestamp: date.to_string(),
        unix_seconds,
        placement: Placement::Query { expires_seconds },
    })
}

/// Step 2: the credential is scoped to DynamoDB in `region`, on the request's own date.
pub fn check_scope(signature: &Signature, region: &str) -> Result<(), ApiError> {
    let request_date = signature.timestamp.get(..8).unwrap_or_default();
    if signature.scope_date != request_date {
        return Err(invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{request_date}', from '{}'.",
            signature.scope_date, signature.timestamp
        )));
    }
    if signature.service != SERVICE {
        return Err(invalid(format!(
            "Credential should be scoped to correct service: '{SERVICE}'."
        )));
    }
    if signature.region != region {
        return Err(invalid(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            signature.region
        )));
    }
    Ok(())
}

/// Step 3: the request time within [`CLOCK_SKEW_MAX`] of `now`, either way, and a presigned
/// request not past its expiry. DynamoDB's texts name the request time, the bound it crossed,
/// and how the bound was computed.
pub fn check_time(signature: &Signature, now: SystemTime) -> Result<(), ApiError> {
    let now_seconds = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let skew_seconds = CLOCK_SKEW_MAX.as_secs();
    let skew_minutes = skew_seconds / 60;
    let earliest = now_seconds.saturating_sub(skew_seconds);
    let latest = now_seconds.saturating_add(skew_seconds);
    if signature.unix_seconds < earliest {
        return Err(invalid(format!(
            "Signature expired: {} is now earlier than {} ({} - {skew_minutes} min.)",
            signature.timestamp,
            format_timestamp(earliest),
            format_timestamp(now_seconds)
        )));
    }
    if signature.unix_seconds > latest {
        return Err(invalid(format!(
            "Signature not yet current: {} is still later than {} ({} + {skew_minutes} min.)",
            signature.timestamp,
            format_timestamp(latest),
            format_timestamp(now_seconds)
        )));
    }
    if let Placement::Query { expires_seconds } = signature.placement {
        let expiry = signature.unix_seconds.saturating_add(expires_seconds);
        if now_seconds > expiry {
            return Err(invalid(format!(
                "Signature expired: {} is now earlier than {} ({} - {expires_seconds} sec.)",
                signature.timestamp,
                format_timestamp(now_seconds.saturating_sub(expires_seconds)),
                format_timestamp(now_seconds)
            )));
        }
    }
    Ok(())
}

/// Step 5: recomputes the signature with `secret_key` and compares it in constant time.
pub fn verify(
    signature: &Signature,
    request: &SignedRequest<'_>,
    secret_key: &str,
) -> Result<(), ApiError> {
    let Some(canonical) = canonical_request(signature, request) else {
        return Err(invalid(SIGNATURE_MISMATCH));
    };
    let mut mac = signing_mac(signature, secret_key);
    mac.update(string_to_sign(signature, &canonical).as_bytes());
    // parse() checked 64 hex digits; a decoding failure is a mismatch all the same.
    let given = hex::decode(&signature.signature).unwrap_or_default();
    mac.verify_slice(&given)
        .map_err(|_| invalid(SIGNATURE_MISMATCH))
}

/// The hex signature of `request` under `secret_key`: what a client computes (tests sign with
/// it; the server only verifies).
pub fn sign(
    signature: &Signature,
    request: &SignedRequest<'_>,
    secret_key: &str,
) -> Option<String> {
    let canonical = canonical_request(signature, request)?;
    let mut mac = signing_mac(signature, secret_key);
    mac.update(string_to_sign(signature, &canonical).as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The signing key (kSigning = HMAC chain over date, region, service, "aws4_request"), ready to
/// MAC the string to sign.
fn signing_mac(signature: &Signature, secret_key: &str) -> HmacSha256 {
    let date_key = hmac(
        format!("AWS4{secret_key}").as_bytes(),
        signature.scope_date.as_bytes(),
    );
    let region_key = hmac(&date_key, signature.region.as_bytes());
    let service_key = hmac(&region_key, signature.service.as_bytes());
    let signing_key = hmac(&service_key, SCOPE_TERMINATOR.as_bytes());
    HmacSha256::new_from_slice(&signing_key).unwrap_or_else(|_| unreachable!())
}

/// The string to sign: algorithm, request time, credential scope, hash of the canonical request.
pub fn string_to_sign(signature: &Signature, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        signature.timestamp,
        signature.credential_scope(),
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The canonical request, or `None` when it cannot match any signature: a signed header the
/// request lacks, or an `X-Amz-Content-SHA256` that is not the body's hash.
pub fn canonical_request(signature: &Signature, request: &SignedRequest<'_>) -> Option<String> {
    let payload_hash = hex::encode(Sha256::digest(request.body));
    if let Some(declared) = request.header("x-amz-content-sha256")
        && !declared.trim().eq_ignore_ascii_case(&payload_hash)
    {
        return None;
    }
    let mut canonical = String::new();
    canonical.push_str(request.method);
    canonical.push('\n');
    canonical.push_str(&canonical_uri(request.path()));
    canonical.push('\n');
    let exclude_signature = matches!(signature.placement, Placement::Query { .. });
    canonical.push_str(&canonical_query(request.query(), exclude_signature));
    canonical.push('\n');
    for name in &signature.signed_headers {
        let values: Vec<String> = request
            .headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| trim_all(value))
            .collect();
        if values.is_empty() {
            return None;
        }
        let _ = writeln!(canonical, "{name}:{}", values.join(","));
    }
    canonical.push('\n');
    canonical.push_str(&signature.signed_headers.join(";"));
    canonical.push('\n');
    canonical.push_str(&payload_hash);
    Some(canonical)
}

/// Trimall: no leading or trailing whitespace, inner runs of whitespace as one space.
fn trim_all(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The path with empty and `.` segments removed and `..` applied (as botocore normalises it),
/// then URI-encoded with `/` kept.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut normalized = String::new();
    if path.starts_with('/') {
        normalized.push('/');
    }
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    uri_encode(normalized.as_bytes(), true)
}

/// The query parameters, decoded, without the `X-Amz-Signature` of a presigned request,
/// re-encoded and sorted by name, then value.
pub fn canonical_query(query: &str, exclude_signature: bool) -> String {
    let mut pairs: Vec<(String, String)> = query_parameters(query)
        .into_iter()
        .filter(|(name, _)| !(exclude_signature && name == "X-Amz-Signature"))
        .map(|(name, value)| {
            (
                uri_encode(name.as_bytes(), false),
                uri_encode(value.as_bytes(), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The query string's parameters, percent-decoded, in order. A parameter without `=` has an
/// empty value; `+` is kept as a plus (AWS clients encode a space as `%20`).
fn query_parameters(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex_pair = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[index], hex_pair) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// AWS's URI encoding: every byte but the unreserved characters (and `/` when `keep_slash`)
/// as `%XX` with upper-case hex.
fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut encoded = String::with_capacity(bytes.len());
    for &byte in bytes {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && byte == b'/') {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

// ---- Times ------------------------------------------------------------------------------------

const SECONDS_PER_DAY: u64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYYMMDDTHHMMSSZ` (ISO 8601 basic, UTC) as unix seconds; `None` unless exactly that shape
/// with a real date and time, at or after 1970.
pub fn parse_timestamp(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[9..15].iter().all(u8::is_ascii_digit);
    if !well_formed {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * SECONDS_PER_DAY as i64 + hour * 3600 + minute * 60 + second;
    u64::try_from(seconds).ok()
}

/// Unix seconds as `YYYYMMDDTHHMMSSZ`.
pub fn format_timestamp(unix_seconds: u64) -> String {
    let days = i64::try_from(unix_seconds / SECONDS_PER_DAY).unwrap_or(i64::MAX / 2);
    let (year, month, day) = civil_from_days(days);
    let of_day = unix_seconds % SECONDS_PER_DAY;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The secret of AWS's published SigV4 test suite and of our botocore vectors.
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn at(timestamp: &str) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(parse_timestamp(timestamp).unwrap())
    }

    /// Parses, checks the time at the request's own time, and verifies with `secret`.
    fn check(request: &SignedRequest<'_>, secret: &str) -> Result<Signature, ApiError> {
        let signature = parse(request)?;
        check_time(
            &signature,
            UNIX_EPOCH + Duration::from_secs(signature.unix_seconds),
        )?;
        verify(&signature, request, secret)?;
        Ok(signature)
    }

    // AWS's SigV4 test suite (aws-sig-v4-test-suite), "get-vanilla" and
    // "get-vanilla-query-order-key-case": the published signatures, which botocore reproduces.
    #[test]
    fn aws_published_vectors_verify() {
        for (target, expected) in [
            (
                "/",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "/?Param2=value2&Param1=value1",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
        ] {
            let authorization = format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={expected}"
            );
            let headers = headers(&[
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
                ("Authorization", &authorization),
            ]);
            let request = SignedRequest {
                method: "GET",
                target,
                headers: &headers,
                body: b"",
            };
            let signature = check(&request, SECRET).unwrap();
            assert_eq!(sign(&signature, &request, SECRET).unwrap(), expected);
            assert_eq!(signature.access_key_id, "AKIDEXAMPLE");
            // The service is "service": DynamoDB's scope check refuses it.
            assert_eq!(
                check_scope(&signature, "us-east-1")
                    .unwrap_err()
                    .message
                    .unwrap(),
                "Credential should be scoped to correct service: 'dynamodb'."
            );
        }
    }

    /// A PutItem exactly as boto3 sends it, signed by botocore 1.35's SigV4Auth at
    /// 2026-11-21T12:34:56Z (the script that made it is in the commit message of this test).
    fn botocore_put_item() -> (Vec<(String, String)>, &'static [u8]) {
        let body = "{\"TableName\": \"movies\", \"Item\": {\"year\": {\"N\": \"2001\"}, \"title\": {\"S\": \"Amélie\"}}}".as_bytes();
        let headers = headers(&[
            ("Host", "127.0.0.1:8000"),
            ("Content-Type", "application/x-amz-json-1.0"),
            ("X-Amz-Target", "DynamoDB_20120810.PutItem"),
            ("User-Agent", "Boto3/1.35.0 md/Botocore#1.35.0"),
            ("X-Amz-Date", "20261121T123456Z"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261121/us-east-1/dynamodb/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0d6b69e229c56724d7e10dcf53477882bcb54f719c5b88655ca321d54020c4d9",
            ),
            ("Content-Length", "84"),
        ]);
        (headers, body)
    }

    #[test]
    fn botocore_signatures_verify() {
        let (headers, body) = botocore_put_item();
        let request = SignedRequest {
            method: "POST",
            target: "/",
            headers: &headers,
            body,
        };
        let signature = check(&request, SECRET).unwrap();
        check_scope(&signature, "us-east-1").unwrap();
        assert_eq!(
            signature.signed_headers,
            ["content-type", "host", "x-amz-date", "x-amz-target"]
        );

        // A path with an encoded space, dot and empty segments, and a query with a repeated
        // name, an encoded slash and an empty value; a signed header with runs of spaces.
        let headers = headers_for_encoded_request();
        let request = SignedRequest {
            method: "POST",
            target: "/a%20b/./c//d/?b=2&a=x%2Fy&a=1&empty=",
            headers: &headers,
            body: b"{}",
        };
        let signature = check(&request, SECRET).unwrap();
        check_scope(&signature, "eu-west-1").unwrap();
        let canonical = canonical_request(&signature, &request).unwrap();
        assert!(canonical.starts_with("POST\n/a%2520b/c/d/\na=1&a=x%2Fy&b=2&empty=\n"));
        assert!(canonical.contains("\nx-custom:spaced out value\n"));
    }

    fn headers_for_encoded_request() -> Vec<(String, String)> {
        headers(&[
            ("Host", "localhost:8000"),
            ("X-Amz-Target", "DynamoDB_20120810.ListTables"),
            ("X-Custom", "  spaced   out  value "),
            ("X-Amz-Date", "20261121T123456Z"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261121/eu-west-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target;x-custom, Signature=cfe0c2d74a565aa751c30aa74e2560837cb0c598d561af08ed3b048e760e02d5",
            ),
        ])
    }

    /// Presigned by botocore's SigV4QueryAuth (expires 300 s) with the body's hash declared in
    /// X-Amz-Content-SHA256.
    const PRESIGNED_TARGET: &str = "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261121%2Fus-east-1%2Fdynamodb%2Faws4_request&X-Amz-Date=20261121T123456Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host%3Bx-amz-content-sha256%3Bx-amz-target&X-Amz-Signature=b1fd484847e653d4b14ef4d223f00ce8ea9fff52daea02b232a83da8cd5f7a42";

    fn presigned_headers() -> Vec<(String, String)> {
        headers(&[
            ("Host", "127.0.0.1:8000"),
            ("X-Amz-Target", "DynamoDB_20120810.DescribeTable"),
            (
                "X-Amz-Content-SHA256",
                "4f414a227c041b3da54396a57c35752f89391d202ced86ccf981ae0cf2b5622f",
            ),
        ])
    }

    #[test]
    fn botocore_presigned_requests_verify_until_they_expire() {
        let headers = presigned_headers();
        let request = SignedRequest {
            method: "POST",
            target: PRESIGNED_TARGET,
            headers: &headers,
            body: br#"{"TableName": "movies"}"#,
        };
        let signature = check(&request, SECRET).unwrap();
        assert_eq!(
            signature.placement,
            Placement::Query {
                expires_seconds: 300
            }
        );
        check_scope(&signature, "us-east-1").unwrap();
        check_time(&signature, at("20261121T123956Z")).unwrap();
        assert_eq!(
            check_time(&signature, at("20261121T123957Z"))
                .unwrap_err()
                .message
                .unwrap(),
            "Signature expired: 20261121T123456Z is now earlier than 20261121T123457Z (20261121T123957Z - 300 sec.)"
        );
        // Another body: the declared hash no longer matches, and without the header the
        // signature does not.
        let swapped = SignedRequest {
            body: br#"{"TableName": "other!"}"#,
            ..request
        };
        assert_eq!(
            verify(&signature, &swapped, SECRET).unwrap_err().type_name,
            "InvalidSignatureException"
        );
    }

    #[test]
    fn any_change_to_a_signed_request_is_a_mismatch() {
        let (headers, body) = botocore_put_item();
        let request = SignedRequest {
            method: "POST",
            target: "/",
            headers: &headers,
            body,
        };
        let signature = parse(&request).unwrap();
        let mismatch = |request: &SignedRequest<'_>, secret: &str| {
            let error = verify(&signature, request, secret).unwrap_err();
            assert_eq!(error.type_name, "InvalidSignatureException");
            assert_eq!(error.message.unwrap(), SIGNATURE_MISMATCH);
        };
        mismatch(&request, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEz");
        mismatch(
            &SignedRequest {
                body: b"{}",
                ..request
            },
            SECRET,
        );
        mismatch(
            &SignedRequest {
                target: "/x",
                ..request
            },
            SECRET,
        );
        mismatch(
            &SignedRequest {
                method: "PUT",
                ..request
            },
            SECRET,
        );
        let mut retargeted = headers.clone();
        retargeted[2].1 = "DynamoDB_20120810.DeleteTable".to_string();
        mismatch(
            &SignedRequest {
                headers: &retargeted,
                ..request
            },
            SECRET,
        );
        // A signed header that is missing.
        let without_type: Vec<_> = headers
            .iter()
            .filter(|(name, _)| name != "Content-Type")
            .cloned()
            .collect();
        mismatch(
            &SignedRequest {
                headers: &without_type,
                ..request
            },
            SECRET,
        );
        // An unsigned header may change.
        let mut agent = headers.clone();
        agent[3].1 = "curl".to_string();
        verify(
            &signature,
            &SignedRequest {
                headers: &agent,
                ..request
            },
            SECRET,
        )
        .unwrap();
    }

    // DynamoDB's window is 15 minutes either way, and its messages give the request time, the
    // bound and how the bound was made: "Signature expired: 20140218T073406Z is now earlier
    // than 20140218T141758Z (20140218T143258Z - 15 min.)" (a DynamoDB error quoted in
    // sebdah/dynamic-dynamodb issue 118; aws/aws-sdk-js issue 254 has another). "Signature not
    // yet current: ... is still later than ... (... + 15 min.)" is the same check's other side.
    #[test]
    fn requests_outside_fifteen_minutes_are_refused_with_dynamodb_texts() {
        let (headers, body) = botocore_put_item();
        let request = SignedRequest {
            method: "POST",
            target: "/",
            headers: &headers,
            body,
        };
        let signature = parse(&request).unwrap();
        check_time(&signature, at("20261121T124956Z")).unwrap();
        check_time(&signature, at("20261121T121956Z")).unwrap();
        let expired = check_time(&signature, at("20261121T124957Z")).unwrap_err();
        assert_eq!(expired.type_name, "InvalidSignatureException");
        assert_eq!(
            expired.message.unwrap(),
            "Signature expired: 20261121T123456Z is now earlier than 20261121T123457Z (20261121T124957Z - 15 min.)"
        );
        let future = check_time(&signature, at("20261121T121955Z")).unwrap_err();
        assert_eq!(future.type_name, "InvalidSignatureException");
        assert_eq!(
            future.message.unwrap(),
            "Signature not yet current: 20261121T123456Z is still later than 20261121T123455Z (20261121T121955Z + 15 min.)"
        );
    }

    #[test]
    fn scopes_must_name_the_request_date_dynamodb_and_the_region() {
        let (headers, body) = botocore_put_item();
        let request = SignedRequest {
            method: "POST",
            target: "/",
            headers: &headers,
            body,
        };
        let signature = parse(&request).unwrap();
        let error = check_scope(&signature, "eu-west-1").unwrap_err();
        assert_eq!(error.type_name, "InvalidSignatureException");
        assert_eq!(
            error.message.unwrap(),
            "Credential should be scoped to a valid region, not 'us-east-1'."
        );
        let mut other_day = signature.clone();
        other_day.scope_date = "20261120".to_string();
        assert_eq!(
            check_scope(&other_day, "us-east-1")
                .unwrap_err()
                .message
                .unwrap(),
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20261120' != '20261121', from '20261121T123456Z'."
        );
    }

    #[test]
    fn malformed_signatures_are_incomplete() {
        let good = "AWS4-HMAC-SHA256 Credential=AKID/20261121/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let parse_with = |authorization: Option<&str>, date: Option<&str>| {
            let mut pairs = vec![("Host".to_string(), "h".to_string())];
            if let Some(authorization) = authorization {
                pairs.push(("Authorization".to_string(), authorization.to_string()));
            }
            if let Some(date) = date {
                pairs.push(("X-Amz-Date".to_string(), date.to_string()));
            }
            parse(&SignedRequest {
                method: "POST",
                target: "/",
                headers: &pairs,
                body: b"",
            })
        };
        let date = Some("20261121T000000Z");
        assert!(parse_with(Some(good), date).is_ok());
        let missing = parse_with(None, date).unwrap_err();
        assert_eq!(missing.type_name, "MissingAuthenticationTokenException");
        assert_eq!(
            missing.message.unwrap(),
            "Request is missing Authentication Token"
        );
        let incomplete = |authorization: &str, date: Option<&str>, needle: &str| {
            let error = parse_with(Some(authorization), date).unwrap_err();
            assert_eq!(
                error.type_name, "IncompleteSignatureException",
                "{authorization}"
            );
            assert!(
                error.message.as_deref().unwrap().contains(needle),
                "{error:?}"
            );
        };
        incomplete(
            good,
            None,
            "requires existence of either a 'X-Amz-Date' or a 'Date' header",
        );
        incomplete(good, Some("2026-11-21"), "'X-Amz-Date' or a 'Date'");
        incomplete("Basic dXNlcjpwYXNz", date, "Authorization=Basic");
        incomplete(
            "AWS4-HMAC-SHA256 Credential=AKID/20261121/us-east-1/dynamodb/aws4_request, SignedHeaders=host",
            date,
            "requires 'Signature' parameter",
        );
        incomplete(
            &good.replace("20261121/us-east-1/dynamodb/aws4_request", "x"),
            date,
            "valid region",
        );
        incomplete(
            &good.replace("0123456789abcdef0123", "zz"),
            date,
            "64 hexadecimal",
        );
        incomplete(
            &good.replace("host;x-amz-date", "x-amz-date"),
            date,
            "'Host' or ':authority'",
        );
        // The Date header stands in for X-Amz-Date.
        let mut pairs = headers(&[("Host", "h"), ("Date", "Sat, 21 Nov 2026 12:34:56 GMT")]);
        pairs.push(("Authorization".to_string(), good.to_string()));
        let signature = parse(&SignedRequest {
            method: "POST",
            target: "/",
            headers: &pairs,
            body: b"",
        })
        .unwrap();
        assert_eq!(signature.timestamp, "20261121T123456Z");
        // A presigned request missing a parameter names it.
        let error = parse(&SignedRequest {
            method: "POST",
            target: "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261121T123456Z",
            headers: &headers(&[("Host", "h")]),
            body: b"",
        })
        .unwrap_err();
        assert_eq!(error.type_name, "IncompleteSignatureException");
        assert_eq!(
            error.message.unwrap(),
            "AWS query-string parameters must include 'X-Amz-Credential'. Re-examine the query-string parameters."
        );
    }

    #[test]
    fn timestamps_convert_both_ways() {
        assert_eq!(parse_timestamp("19700101T000000Z"), Some(0));
        assert_eq!(parse_timestamp("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_timestamp("20240229T000000Z"), Some(1_709_164_800));
        assert_eq!(parse_timestamp("20230229T000000Z"), None);
        assert_eq!(parse_timestamp("20231301T000000Z"), None);
        assert_eq!(parse_timestamp("20230101T240000Z"), None);
        assert_eq!(parse_timestamp("20230101 000000Z"), None);
        assert_eq!(parse_timestamp("+0230101T000000Z"), None);
        assert_eq!(format_timestamp(1_440_938_160), "20150830T123600Z");
        assert_eq!(format_timestamp(1_709_164_800), "20240229T000000Z");
    }
}

#[cfg(test)]
mod pathological_inputs {
    use proptest::prelude::*;

    use super::*;

    fn header_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            // Near misses of a real header: its pieces, shuffled and cut.
            proptest::collection::vec(
                prop_oneof![
                    Just("AWS4-HMAC-SHA256 ".to_string()),
                    Just("Credential=".to_string()),
                    Just("AKID/20261121/us-east-1/dynamodb/aws4_request".to_string()),
                    Just("SignedHeaders=".to_string()),
                    Just("host;x-amz-date".to_string()),
                    Just("Signature=".to_string()),
                    Just(
                        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                            .to_string()
                    ),
                    Just(", ".to_string()),
                    Just(";".to_string()),
                    Just("/".to_string()),
                    "[ -~]{0,8}",
                ],
                0..12,
            )
            .prop_map(|parts| parts.concat()),
        ]
    }

    proptest! {
        // The SigV4 parser and verifier take any header, query string and date without a
        // panic: an error value or a signature.
        #[test]
        fn the_sigv4_parser_never_panics(
            authorization in header_text(),
            date in prop_oneof![any::<String>(), "[0-9]{8}T[0-9]{6}Z"],
            target in prop_oneof![any::<String>(), "/\\?(X-Amz-[A-Za-z]{0,12}=[%0-9A-Za-z]{0,10}&){0,7}"],
            use_header in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut headers = vec![
                ("Host".to_string(), "h".to_string()),
                ("X-Amz-Date".to_string(), date),
            ];
            if use_header {
                headers.push(("Authorization".to_string(), authorization));
            }
            let request = SignedRequest { method: "POST", target: &target, headers: &headers, body: &body };
            if let Ok(signature) = parse(&request) {
                let _ = check_scope(&signature, "us-east-1");
                let _ = check_time(&signature, SystemTime::now());
                let _ = verify(&signature, &request, "secret");
            }
            let _ = canonical_query(&target, true);
            let _ = canonical_uri(&target);
        }

        #[test]
        fn timestamps_round_trip(seconds in 0u64..253_402_300_799) {
            prop_assert_eq!(parse_timestamp(&format_timestamp(seconds)), Some(seconds));
        }
    }
}
