//! The protocol's rules as pure functions: which operation a request names, how bodies decode,
//! how errors and responses look. Signatures are sigv4.rs's.

use std::io::Read;

use serde_json::{Value as Json, json};

/// The `X-Amz-Target` prefix of DynamoDB API version 2012-08-10.
pub const TARGET_PREFIX: &str = "DynamoDB_20120810.";
/// The `X-Amz-Target` prefix of the DynamoDB Streams API (version 2012-08-10), served on the
/// same endpoint: SDKs sign it for the `dynamodb` service too.
pub const STREAMS_TARGET_PREFIX: &str = "DynamoDBStreams_20120810.";
/// The content type of requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// DynamoDB's largest request is a 16 MB BatchWriteItem; bodies past this are refused, and so
/// are compressed bodies that inflate past it.
pub const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Responses above this size are gzipped when the client accepts gzip; smaller ones are not
/// worth the CPU.
pub const COMPRESS_RESPONSE_BYTES_MIN: usize = 1024;

/// The operations of the DynamoDB API that reach the [`crate::Api`]. Any other target is
/// answered `UnknownOperationException`, as DynamoDB answers an operation it does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    CreateTable,
    DeleteTable,
    DescribeTable,
    ListTables,
    UpdateTable,
    PutItem,
    GetItem,
    UpdateItem,
    DeleteItem,
    Query,
    Scan,
    BatchGetItem,
    BatchWriteItem,
    TransactWriteItems,
    TransactGetItems,
    DescribeEndpoints,
    DescribeLimits,
    TagResource,
    UntagResource,
    ListTagsOfResource,
    UpdateTimeToLive,
    DescribeTimeToLive,
    ListStreams,
    DescribeStream,
    GetShardIterator,
    GetRecords,
}

const OPERATIONS: [(&str, Operation); 22] = [
    ("CreateTable", Operation::CreateTable),
    ("DeleteTable", Operation::DeleteTable),
    ("DescribeTable", Operation::DescribeTable),
    ("ListTables", Operation::ListTables),
    ("UpdateTable", Operation::UpdateTable),
    ("PutItem", Operation::PutItem),
    ("GetItem", Operation::GetItem),
    ("UpdateItem", Operation::UpdateItem),
    ("DeleteItem", Operation::DeleteItem),
    ("Query", Operation::Query),
    ("Scan", Operation::Scan),
    ("BatchGetItem", Operation::BatchGetItem),
    ("BatchWriteItem", Operation::BatchWriteItem),
    ("TransactWriteItems", Operation::TransactWriteItems),
    ("TransactGetItems", Operation::TransactGetItems),
    ("DescribeEndpoints", Operation::DescribeEndpoints),
    ("DescribeLimits", Operation::DescribeLimits),
    ("TagResource", Operation::TagResource),
    ("UntagResource", Operation::UntagResource),
    ("ListTagsOfResource", Operation::ListTagsOfResource),
    ("UpdateTimeToLive", Operation::UpdateTimeToLive),
    ("DescribeTimeToLive", Operation::DescribeTimeToLive),
];

/// The DynamoDB Streams operations, under their own prefix only.
const STREAMS_OPERATIONS: [(&str, Operation); 4] = [
    ("ListStreams", Operation::ListStreams),
    ("DescribeStream", Operation::DescribeStream),
    ("GetShardIterator", Operation::GetShardIterator),
    ("GetRecords", Operation::GetRecords),
];

impl Operation {
    pub fn name(self) -> &'static str {
        OPERATIONS
            .iter()
            .chain(STREAMS_OPERATIONS.iter())
            .find(|(_, operation)| *operation == self)
            .map_or("Unknown", |(name, _)| name)
    }

    /// The operation an `X-Amz-Target` header names; `None` for anything else (a Streams
    /// operation under the DynamoDB prefix included, as DynamoDB has none of that name).
    pub fn from_target(target: &str) -> Option<Operation> {
        let (table, name) = match target.strip_prefix(TARGET_PREFIX) {
            Some(name) => (&OPERATIONS[..], name),
            None => (
                &STREAMS_OPERATIONS[..],
                target.strip_prefix(STREAMS_TARGET_PREFIX)?,
            ),
        };
        table
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, operation)| *operation)
    }
}

/// An error answered to the client: DynamoDB's exception name and message.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub type_name: String,
    pub message: Option<String>,
    /// More members of the error body: `Item` for ConditionalCheckFailedException with
    /// ReturnValuesOnConditionCheckFailure, `ThrottlingReasons` for throttling errors.
    pub fields: Vec<(String, Json)>,
}

impl ApiError {
    pub fn new(type_name: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            type_name: type_name.to_string(),
            message: Some(message.into()),
            fields: Vec::new(),
        }
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new("ValidationException", message)
    }

    pub fn serialization(message: impl Into<String>) -> ApiError {
        ApiError::new("SerializationException", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new("InternalServerError", message)
    }

    /// DynamoDB's answer to a target it does not know: the exception alone, with no message
    /// (so none naming the operation). dynalite's test/connection.js, recorded against
    /// DynamoDB, asserts the body is exactly
    /// `{"__type":"com.amazon.coral.service#UnknownOperationException"}` (its x-amz-crc32,
    /// 1368724161, is that body's) for a missing target, `whatever`, and
    /// `DynamoDB_20120810.ListTable`.
    pub fn unknown_operation() -> ApiError {
        ApiError {
            type_name: "UnknownOperationException".to_string(),
            message: None,
            fields: Vec::new(),
        }
    }

    /// The HTTP status DynamoDB answers this error with.
    pub fn status(&self) -> u16 {
        match self.type_name.as_str() {
            "InternalServerError" => 500,
            "ServiceUnavailable" => 503,
            _ => 400,
        }
    }

    /// The `__type` namespace of this error, as DynamoDB writes it: the coral service errors
    /// (framing, authentication, validation) differ from DynamoDB's own.
    fn namespace(&self) -> &'static str {
        match self.type_name.as_str() {
            "ValidationException" => "com.amazon.coral.validate",
            "SerializationException"
            | "UnknownOperationException"
            | "MissingAuthenticationTokenException"
            | "IncompleteSignatureException"
            | "InvalidSignatureException"
            | "AccessDeniedException"
            | "UnrecognizedClientException" => "com.amazon.coral.service",
            _ => "com.amazonaws.dynamodb.v20120810",
        }
    }

    pub fn body(&self) -> Json {
        let mut body = serde_json::Map::new();
        body.insert(
            "__type".to_string(),
            json!(format!("{}#{}", self.namespace(), self.type_name)),
        );
        if let Some(message) = &self.message {
            body.insert("message".to_string(), json!(message));
        }
        for (key, value) in &self.fields {
            body.insert(key.clone(), value.clone());
        }
        Json::Object(body)
    }
}

/// Why a request body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyDecodeError {
    /// A `Content-Encoding` other than gzip, deflate or identity.
    UnsupportedEncoding(String),
    /// Not a complete, valid stream of its encoding: garbage, truncated, empty, or followed by
    /// bytes that are not another gzip member.
    Corrupt,
    /// It inflates past [`BODY_BYTES_MAX`].
    TooLarge,
}

impl BodyDecodeError {
    /// DynamoDB's answer to an undecodable body: an `InternalServerError` (status 500), for an
    /// unknown `Content-Encoding` and for a body that is not valid gzip alike. ScyllaDB's
    /// test/alternator/test_compressed_request.py, run against DynamoDB, records it:
    /// test_garbage_content_encoding, test_broken_gzip_content,
    /// test_gzip_request_with_missing_character and test_gzip_request_empty all expect 500
    /// ("DynamoDB returns an InternalServerError"). The message texts are ours: those tests do
    /// not record DynamoDB's. [`BodyDecodeError::TooLarge`] is not an `ApiError`: it is
    /// answered `413` like any body past the limit (see server.rs).
    pub fn api_error(&self) -> Option<ApiError> {
        match self {
            BodyDecodeError::UnsupportedEncoding(encoding) => Some(ApiError::internal(format!(
                "Unsupported Content-Encoding: {encoding}"
            ))),
            BodyDecodeError::Corrupt => Some(ApiError::internal(
                "The request body could not be decompressed",
            )),
            BodyDecodeError::TooLarge => None,
        }
    }
}

/// Inflates a request body sent with `Content-Encoding` gzip or deflate, refusing one that
/// inflates past [`BODY_BYTES_MAX`] without inflating more than one byte past it.
///
/// gzip is read as a series of members (RFC 1952 section 2.2): two gzip streams concatenated
/// are one body, as DynamoDB takes them (test_gzip_request_two_gzips in ScyllaDB's
/// test_compressed_request.py, which passes against DynamoDB). Bytes after the last member that
/// are not another member are refused: DynamoDB ignores such junk, which that file records as a
/// DynamoDB bug (test_gzip_request_with_extra_junk, marked `dynamodb_bug`); a body the client
/// did not mean must not be half-applied. `deflate` is beyond DynamoDB (which takes gzip only)
/// and is read as zlib (RFC 9110 section 8.4.1.2), else as raw deflate, which some clients send.
pub fn decode_body(encoding: Option<&str>, body: Vec<u8>) -> Result<Vec<u8>, BodyDecodeError> {
    let encoding = encoding.map(|value| value.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(body),
        // An empty body is no stream at all (test_gzip_request_empty: DynamoDB answers 500).
        Some("gzip" | "deflate") if body.is_empty() => Err(BodyDecodeError::Corrupt),
        Some("gzip") => {
            let mut inflated = Vec::new();
            let limit = BODY_BYTES_MAX as u64 + 1;
            let outcome = flate2::bufread::MultiGzDecoder::new(&body[..])
                .take(limit)
                .read_to_end(&mut inflated);
            if inflated.len() > BODY_BYTES_MAX {
                return Err(BodyDecodeError::TooLarge);
            }
            // A truncated member fails its length and CRC-32 trailer check, junk after a
            // member fails the next member's header check: both are errors here.
            outcome.map_err(|_| BodyDecodeError::Corrupt)?;
            Ok(inflated)
        }
        Some("deflate") => inflate_whole(&body, true).or_else(|error| match error {
            BodyDecodeError::Corrupt => inflate_whole(&body, false),
            other => Err(other),
        }),
        Some(other) => Err(BodyDecodeError::UnsupportedEncoding(other.to_string())),
    }
}

/// Bytes the inflater is given room for per step, at least.
const INFLATE_STEP_BYTES: usize = 64 * 1024;

/// Inflates one zlib (`zlib_header`) or raw deflate stream that must make up all of `body`:
/// a stream that stops before its final block, or is followed by more bytes, is
/// [`BodyDecodeError::Corrupt`]. flate2's low-level `Decompress` reports the end of the
/// stream (`Status::StreamEnd`), which its `Read` adapters do not distinguish from a
/// truncated one. The output never grows past [`BODY_BYTES_MAX`] + 1 bytes.
fn inflate_whole(body: &[u8], zlib_header: bool) -> Result<Vec<u8>, BodyDecodeError> {
    let mut decompress = flate2::Decompress::new(zlib_header);
    let capacity_max = BODY_BYTES_MAX + 1;
    let mut inflated: Vec<u8> = Vec::new();
    loop {
        if inflated.len() > BODY_BYTES_MAX {
            return Err(BodyDecodeError::TooLarge);
        }
        if inflated.capacity() - inflated.len() < INFLATE_STEP_BYTES {
            // Doubling keeps the copies linear; the cap keeps a bomb from allocating more.
            let wanted = (inflated.capacity() * 2)
                .max(INFLATE_STEP_BYTES)
                .min(capacity_max);
            inflated.reserve_exact(wanted.saturating_sub(inflated.len()).max(1));
        }
        let consumed = usize::try_from(decompress.total_in()).unwrap_or(usize::MAX);
        let Some(input) = body.get(consumed..) else {
            return Err(BodyDecodeError::Corrupt);
        };
        let produced_before = inflated.len();
        let status = decompress
            .decompress_vec(input, &mut inflated, flate2::FlushDecompress::None)
            .map_err(|_| BodyDecodeError::Corrupt)?;
        let consumed_after = usize::try_from(decompress.total_in()).unwrap_or(usize::MAX);
        match status {
            flate2::Status::StreamEnd if consumed_after == body.len() => {
                if inflated.len() > BODY_BYTES_MAX {
                    return Err(BodyDecodeError::TooLarge);
                }
                return Ok(inflated);
            }
            // Bytes after the end of the stream.
            flate2::Status::StreamEnd => return Err(BodyDecodeError::Corrupt),
            flate2::Status::Ok | flate2::Status::BufError => {
                // No progress with input left and room to write: the stream is truncated.
                let stalled = consumed_after == consumed && inflated.len() == produced_before;
                if stalled && inflated.len() <= BODY_BYTES_MAX {
                    return Err(BodyDecodeError::Corrupt);
                }
            }
        }
    }
}

/// Parses a request body: a JSON object, or DynamoDB's SerializationException.
pub fn parse_body(body: &[u8]) -> Result<Json, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Json>(body) {
        Ok(value @ Json::Object(_)) => Ok(value),
        Ok(_) => Err(ApiError::serialization(
            "Start of structure or map found where not expected",
        )),
        Err(_) => Err(ApiError::serialization(
            "The request body is not valid JSON",
        )),
    }
}

/// The gzip of a response body.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 2),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

/// Whether an `Accept-Encoding` header accepts gzip (with a non-zero quality).
pub fn accepts_gzip(header: Option<&str>) -> bool {
    header.is_some_and(|value| {
        value.split(',').any(|coding| {
            let mut parts = coding.trim().split(';');
            parts
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("gzip"))
                && parts.all(|parameter| parameter.trim() != "q=0")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_operations() {
        assert_eq!(
            Operation::from_target("DynamoDB_20120810.PutItem"),
            Some(Operation::PutItem)
        );
        assert_eq!(Operation::from_target("DynamoDB_20120810.Nope"), None);
        assert_eq!(
            Operation::from_target("DynamoDBStreams_20120810.GetRecords"),
            Some(Operation::GetRecords)
        );
        assert_eq!(Operation::from_target("DynamoDB_20120810.GetRecords"), None);
        assert_eq!(
            Operation::from_target("DynamoDBStreams_20120810.PutItem"),
            None
        );
        assert_eq!(Operation::GetShardIterator.name(), "GetShardIterator");
        assert_eq!(Operation::from_target("PutItem"), None);
        assert_eq!(Operation::from_target("DynamoDB_20111205.PutItem"), None);
        assert_eq!(Operation::PutItem.name(), "PutItem");
    }

    #[test]
    fn errors_use_dynamodb_namespaces_and_statuses() {
        let validation = ApiError::validation("bad");
        assert_eq!(
            validation.body(),
            json!({"__type": "com.amazon.coral.validate#ValidationException", "message": "bad"})
        );
        assert_eq!(validation.status(), 400);
        let missing = ApiError::new("ResourceNotFoundException", "Requested resource not found");
        assert_eq!(
            missing.body()["__type"],
            json!("com.amazonaws.dynamodb.v20120810#ResourceNotFoundException")
        );
        assert_eq!(ApiError::internal("x").status(), 500);
        assert_eq!(
            ApiError::unknown_operation().body(),
            json!({"__type": "com.amazon.coral.service#UnknownOperationException"})
        );
        // Byte for byte DynamoDB's body: dynalite recorded its x-amz-crc32 as 1368724161.
        let bytes = ApiError::unknown_operation().body().to_string();
        assert_eq!(crc32fast::hash(bytes.as_bytes()), 1_368_724_161);
    }

    fn zlib(body: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut encoder, body).unwrap();
        encoder.finish().unwrap()
    }

    fn raw_deflate(body: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut encoder, body).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn compressed_bodies_inflate_within_the_limit() {
        let body = br#"{"TableName": "t"}"#.to_vec();
        assert_eq!(decode_body(Some("gzip"), gzip(&body)).unwrap(), body);
        assert_eq!(decode_body(Some(" GZIP "), gzip(&body)).unwrap(), body);
        assert_eq!(decode_body(Some("deflate"), zlib(&body)).unwrap(), body);
        assert_eq!(
            decode_body(Some("deflate"), raw_deflate(&body)).unwrap(),
            body
        );
        assert_eq!(decode_body(Some("identity"), body.clone()).unwrap(), body);
        assert_eq!(decode_body(None, body.clone()).unwrap(), body);
        // A bomb: 17 MB of zeros compress to a few KB and must be refused, not inflated.
        let zeros = vec![0u8; BODY_BYTES_MAX + 1024];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 100_000);
        assert_eq!(
            decode_body(Some("gzip"), bomb),
            Err(BodyDecodeError::TooLarge)
        );
        assert_eq!(
            decode_body(Some("deflate"), zlib(&zeros)),
            Err(BodyDecodeError::TooLarge)
        );
        // Exactly at the limit is fine.
        let full = vec![b' '; BODY_BYTES_MAX];
        assert_eq!(
            decode_body(Some("deflate"), zlib(&full)).unwrap().len(),
            BODY_BYTES_MAX
        );
        assert_eq!(
            decode_body(Some("gzip"), gzip(&full)).unwrap().len(),
            BODY_BYTES_MAX
        );
    }

    // The cases of ScyllaDB's test/alternator/test_compressed_request.py, which records what
    // DynamoDB answers each (see BodyDecodeError::api_error).
    #[test]
    fn concatenated_gzip_members_are_one_body() {
        // test_gzip_request_two_gzips: DynamoDB accepts it.
        let body = br#"{"TableName": "t", "Item": {}}"#;
        let mut doubled = gzip(&body[..10]);
        doubled.extend(gzip(&body[10..]));
        assert_eq!(decode_body(Some("gzip"), doubled).unwrap(), body);
    }

    #[test]
    fn broken_compressed_bodies_are_internal_server_errors() {
        let body = br#"{"TableName": "t"}"#;
        let truncated_gzip = {
            let mut bytes = gzip(body);
            bytes.pop();
            bytes
        };
        let truncated_zlib = {
            let mut bytes = zlib(body);
            bytes.truncate(bytes.len() - 5);
            bytes
        };
        let truncated_raw = {
            let mut bytes = raw_deflate(body);
            bytes.truncate(bytes.len() / 2);
            bytes
        };
        let junk_after_gzip = {
            let mut bytes = gzip(body);
            bytes.extend_from_slice(b"junk");
            bytes
        };
        let junk_after_zlib = {
            let mut bytes = zlib(body);
            bytes.extend_from_slice(b"junk");
            bytes
        };
        let cases: [(&str, Vec<u8>); 9] = [
            // test_broken_gzip_content: an uncompressed body sent as gzip.
            ("gzip", body.to_vec()),
            ("gzip", b"\x1f\x8b not gzip at all".to_vec()),
            // test_gzip_request_with_missing_character.
            ("gzip", truncated_gzip),
            // test_gzip_request_empty.
            ("gzip", Vec::new()),
            // test_gzip_request_with_extra_junk (DynamoDB's bug: it ignores the junk).
            ("gzip", junk_after_gzip),
            ("deflate", truncated_zlib),
            ("deflate", truncated_raw),
            ("deflate", Vec::new()),
            ("deflate", junk_after_zlib),
        ];
        for (encoding, bytes) in cases {
            let error = decode_body(Some(encoding), bytes.clone()).unwrap_err();
            assert_eq!(error, BodyDecodeError::Corrupt, "{encoding} {bytes:?}");
            let api_error = error.api_error().unwrap();
            assert_eq!(api_error.type_name, "InternalServerError");
            assert_eq!(api_error.status(), 500);
        }
        // test_garbage_content_encoding.
        let error = decode_body(Some("garbage"), body.to_vec()).unwrap_err();
        assert_eq!(
            error,
            BodyDecodeError::UnsupportedEncoding("garbage".into())
        );
        let api_error = error.api_error().unwrap();
        assert_eq!(api_error.status(), 500);
        assert_eq!(
            api_error.message.as_deref(),
            Some("Unsupported Content-Encoding: garbage")
        );
        assert_eq!(
            decode_body(Some("br"), body.to_vec()),
            Err(BodyDecodeError::UnsupportedEncoding("br".into()))
        );
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert_eq!(parse_body(b"").unwrap(), json!({}));
        assert_eq!(
            parse_body(b"[1]").unwrap_err().type_name,
            "SerializationException"
        );
        assert_eq!(
            parse_body(b"{").unwrap_err().type_name,
            "SerializationException"
        );
        assert!(accepts_gzip(Some("gzip, deflate")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
    }
}

#[cfg(test)]
mod pathological_inputs {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        // Random bytes, as body and as a compressed body of every encoding: an error value or a
        // JSON object, never a panic.
        #[test]
        fn request_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse_body(&bytes);
            for encoding in ["gzip", "deflate", "identity", "br"] {
                if let Ok(inflated) = decode_body(Some(encoding), bytes.clone()) {
                    let _ = parse_body(&inflated);
                }
            }
        }
    }

    #[test]
    fn deeply_nested_json_is_refused_not_overflowing_the_stack() {
        // serde_json stops at 128 levels; a body nested 100,000 deep must be an error value.
        let body = "[".repeat(100_000);
        assert_eq!(
            parse_body(body.as_bytes()).unwrap_err().type_name,
            "SerializationException"
        );
        let object = "{\"a\":".repeat(100_000);
        assert_eq!(
            parse_body(object.as_bytes()).unwrap_err().type_name,
            "SerializationException"
        );
    }
}
