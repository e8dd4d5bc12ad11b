//! The protocol's rules as pure functions: which operation a request names, how bodies decode,
//! how errors and responses look. Signatures are sigv4.rs's.

use std::io::Read;

use serde_json::{Value as Json, json};

/// The `X-Amz-Target` prefix of DynamoDB API version 2012-08-10.
pub const TARGET_PREFIX: &str = "DynamoDB_20120810.";
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
    DescribeEndpoints,
    DescribeLimits,
    TagResource,
    UntagResource,
    ListTagsOfResource,
    UpdateTimeToLive,
    DescribeTimeToLive,
}

const OPERATIONS: [(&str, Operation); 20] = [
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
    ("DescribeEndpoints", Operation::DescribeEndpoints),
    ("DescribeLimits", Operation::DescribeLimits),
    ("TagResource", Operation::TagResource),
    ("UntagResource", Operation::UntagResource),
    ("ListTagsOfResource", Operation::ListTagsOfResource),
    ("UpdateTimeToLive", Operation::UpdateTimeToLive),
    ("DescribeTimeToLive", Operation::DescribeTimeToLive),
];

impl Operation {
    pub fn name(self) -> &'static str {
        OPERATIONS
            .iter()
            .find(|(_, operation)| *operation == self)
            .map_or("Unknown", |(name, _)| name)
    }

    /// The operation an `X-Amz-Target` header names; `None` for anything else.
    pub fn from_target(target: &str) -> Option<Operation> {
        let name = target.strip_prefix(TARGET_PREFIX)?;
        OPERATIONS
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

/// Inflates a request body sent with `Content-Encoding` gzip or deflate, refusing one that
/// inflates past [`BODY_BYTES_MAX`].
pub fn decode_body(encoding: Option<&str>, body: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    let encoding = encoding.map(|value| value.trim().to_ascii_lowercase());
    let mut inflated = Vec::new();
    let limit = BODY_BYTES_MAX as u64 + 1;
    let outcome = match encoding.as_deref() {
        None | Some("") | Some("identity") => return Ok(body),
        Some("gzip") => flate2::read::GzDecoder::new(&body[..])
            .take(limit)
            .read_to_end(&mut inflated),
        Some("deflate") => {
            // HTTP's "deflate" is the zlib format, but some clients send raw deflate.
            let zlib = flate2::read::ZlibDecoder::new(&body[..])
                .take(limit)
                .read_to_end(&mut inflated);
            if zlib.is_err() {
                inflated.clear();
                flate2::read::DeflateDecoder::new(&body[..])
                    .take(limit)
                    .read_to_end(&mut inflated)
            } else {
                zlib
            }
        }
        Some(other) => {
            return Err(ApiError::serialization(format!(
                "Unsupported Content-Encoding: {other}"
            )));
        }
    };
    if outcome.is_err() {
        return Err(ApiError::serialization(
            "The request body could not be decompressed",
        ));
    }
    if inflated.len() > BODY_BYTES_MAX {
        return Err(ApiError::validation(format!(
            "Request size exceeded {BODY_BYTES_MAX} bytes"
        )));
    }
    Ok(inflated)
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
    }

    #[test]
    fn compressed_bodies_inflate_within_the_limit() {
        let body = br#"{"TableName": "t"}"#.to_vec();
        assert_eq!(decode_body(Some("gzip"), gzip(&body)).unwrap(), body);
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut zlib, &body).unwrap();
        assert_eq!(
            decode_body(Some("deflate"), zlib.finish().unwrap()).unwrap(),
            body
        );
        assert_eq!(
            decode_body(Some("gzip"), b"not gzip".to_vec())
                .unwrap_err()
                .type_name,
            "SerializationException"
        );
        // A bomb: 17 MB of zeros compress to a few KB and must be refused, not inflated.
        let bomb = gzip(&vec![0u8; BODY_BYTES_MAX + 1024]);
        assert!(bomb.len() < 100_000);
        assert_eq!(
            decode_body(Some("gzip"), bomb).unwrap_err().type_name,
            "ValidationException"
        );
        assert_eq!(
            decode_body(Some("br"), body).unwrap_err().type_name,
            "SerializationException"
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
