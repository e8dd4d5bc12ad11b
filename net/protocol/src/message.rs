//! Requests and responses: the flatbuffers of schema/shoal.fbs (version 2), framed, to and
//! from DynamoDB JSON value trees (`serde_json::Value`, the form the router's operations and
//! the clients' API take). The conversions are in encode.rs and decode.rs; no JSON text is
//! read or written.
//!
//! Version rules (FORMAT.md, "Versions"): a request buffer with version 1's identifier `SHQ1`
//! is recognised and answered, in version 1's response format, with
//! [`UNSUPPORTED_VERSION_EXCEPTION`]; any other identifier is a bad frame.

use std::fmt;

use serde_json::Value as Json;

use crate::decode::{ConvertError, Decoder};
use crate::encode::Encoder;
use crate::frame::encode_frame_into;
use crate::generated::shoal::client::v_2 as wire;
use crate::limits::{
    BODY_BYTES_MIN, FRAME_BYTES_MAX, HEADER_BYTES, VERIFIER_APPARENT_BYTES_MAX,
    VERIFIER_TABLE_DEPTH_MAX, VERIFIER_TABLES_MAX,
};
use crate::v1;

/// The file identifier of a request buffer (bytes 4..8 of the flatbuffer).
pub const REQUEST_IDENTIFIER: &str = wire::REQUEST_IDENTIFIER;
/// The file identifier of a response buffer. Distinct from requests' so that a buffer sent the
/// wrong way (a server's answer replayed at a server) fails verification.
pub const RESPONSE_IDENTIFIER: &str = "SHS2";

/// The exception a version 1 request is answered with.
pub const UNSUPPORTED_VERSION_EXCEPTION: &str = "UnsupportedProtocolVersionException";
/// Its message.
pub const UNSUPPORTED_VERSION_1_MESSAGE: &str =
    "unsupported protocol version 1; this router speaks version 2";

/// The builder's first allocation beyond what the caller expects.
const BUILDER_SLACK_BYTES: usize = 1024;

/// The verifier's limits on a received buffer (limits.rs).
pub(crate) fn verifier_options() -> flatbuffers::VerifierOptions {
    flatbuffers::VerifierOptions {
        max_depth: VERIFIER_TABLE_DEPTH_MAX,
        max_tables: VERIFIER_TABLES_MAX,
        max_apparent_size: VERIFIER_APPARENT_BYTES_MAX,
        ignore_missing_null_terminator: false,
    }
}
/// The operations of the native protocol: the DynamoDB operations the router serves. The
/// numbers are the schema's `Operation` values and never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    CreateTable,
    DeleteTable,
    DescribeTable,
    ListTables,
    PutItem,
    GetItem,
    UpdateItem,
    DeleteItem,
    Query,
    Scan,
    BatchGetItem,
    BatchWriteItem,
}

impl Operation {
    pub const ALL: [Operation; 12] = [
        Operation::CreateTable,
        Operation::DeleteTable,
        Operation::DescribeTable,
        Operation::ListTables,
        Operation::PutItem,
        Operation::GetItem,
        Operation::UpdateItem,
        Operation::DeleteItem,
        Operation::Query,
        Operation::Scan,
        Operation::BatchGetItem,
        Operation::BatchWriteItem,
    ];

    /// The schema's value.
    pub fn wire_value(self) -> u8 {
        let value = match self {
            Operation::CreateTable => wire::Operation::CreateTable,
            Operation::DeleteTable => wire::Operation::DeleteTable,
            Operation::DescribeTable => wire::Operation::DescribeTable,
            Operation::ListTables => wire::Operation::ListTables,
            Operation::PutItem => wire::Operation::PutItem,
            Operation::GetItem => wire::Operation::GetItem,
            Operation::UpdateItem => wire::Operation::UpdateItem,
            Operation::DeleteItem => wire::Operation::DeleteItem,
            Operation::Query => wire::Operation::Query,
            Operation::Scan => wire::Operation::Scan,
            Operation::BatchGetItem => wire::Operation::BatchGetItem,
            Operation::BatchWriteItem => wire::Operation::BatchWriteItem,
        };
        value.0
    }

    /// The operation of a schema value; `None` for 0 (Invalid) and values this version does
    /// not know.
    pub fn from_wire_value(value: u8) -> Option<Operation> {
        Operation::ALL
            .into_iter()
            .find(|operation| operation.wire_value() == value)
    }

    /// DynamoDB's name of the operation (as in `X-Amz-Target: DynamoDB_20120810.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Operation::CreateTable => "CreateTable",
            Operation::DeleteTable => "DeleteTable",
            Operation::DescribeTable => "DescribeTable",
            Operation::ListTables => "ListTables",
            Operation::PutItem => "PutItem",
            Operation::GetItem => "GetItem",
            Operation::UpdateItem => "UpdateItem",
            Operation::DeleteItem => "DeleteItem",
            Operation::Query => "Query",
            Operation::Scan => "Scan",
            Operation::BatchGetItem => "BatchGetItem",
            Operation::BatchWriteItem => "BatchWriteItem",
        }
    }

    /// Whether running the operation twice has the effect of running it once: reads. A read
    /// whose outcome is unknown may be retried; a write may not (it may have been applied).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Operation::DescribeTable
                | Operation::ListTables
                | Operation::GetItem
                | Operation::Query
                | Operation::Scan
                | Operation::BatchGetItem
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Why a request or response cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// Over DynamoDB's request size limit (`DYNAMODB_BODY_BYTES_MAX`) or the frame's.
    BodyTooLarge { body_bytes: usize },
    /// A value the schema cannot carry: the member's path (`Item.year.N`) and why.
    Unrepresentable { path: String, reason: String },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BodyTooLarge { body_bytes } => write!(
                formatter,
                "body of {body_bytes} bytes or more is over the limit of {} bytes",
                crate::limits::DYNAMODB_BODY_BYTES_MAX
            ),
            EncodeError::Unrepresentable { path, reason } => {
                write!(formatter, "member {path} {reason}")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Why a checked frame body is not a request or response. Each closes the connection, except
/// `UnsupportedVersion`, which the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A sound request of an older version of the protocol: answer it with
    /// [`encode_unsupported_version_response`].
    UnsupportedVersion { version: u32, request_id: u64 },
    /// Bytes 4..8 are not the expected file identifier.
    Identifier { expected: &'static str },
    /// The flatbuffers verifier refused the buffer.
    Invalid(String),
    /// An error without its exception name.
    MissingExceptionName,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnsupportedVersion { version, .. } => {
                write!(formatter, "a request of protocol version {version}")
            }
            DecodeError::Identifier { expected } => {
                write!(formatter, "buffer is not a {expected} buffer")
            }
            DecodeError::Invalid(reason) => write!(formatter, "invalid flatbuffer: {reason}"),
            DecodeError::MissingExceptionName => write!(formatter, "error without type_name"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A decoded request, borrowing the frame body.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub request_id: u64,
    /// The schema value; `Operation::from_wire_value` names it, or says it is unknown (the
    /// server answers UnknownOperationException: the frame itself was sound).
    pub operation_value: u8,
    table: wire::Request<'a>,
}

impl RequestView<'_> {
    /// The request's members as the DynamoDB JSON body the HTTP API would have parsed. Fails
    /// only for what the verifier does not check (decode.rs); the server answers that with
    /// SerializationException.
    pub fn body(&self) -> Result<Json, ConvertError> {
        Decoder::new().request(&self.table)
    }
}

/// A DynamoDB error as the protocol carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceError {
    /// The exception name without namespace, e.g. `ConditionalCheckFailedException`.
    pub type_name: String,
    pub message: String,
    /// The old item, in DynamoDB JSON (a failed condition asked for ALL_OLD).
    pub item: Option<Json>,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.type_name, self.message)
    }
}

/// A decoded response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub request_id: u64,
    /// The DynamoDB JSON response body, or the error; `Err(ConvertError)` when the buffer is
    /// sound but its members are not (decode.rs): a fault of this request only.
    pub outcome: Result<Result<Json, ServiceError>, ConvertError>,
}

fn frame_of(data: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    // The encoders count what they write against DynamoDB's limit, and the flatbuffer's own
    // overhead is bounded by FLATBUFFER_OVERHEAD_BYTES_MAX; checked here rather than assumed.
    if HEADER_BYTES + data.len() > FRAME_BYTES_MAX {
        return Err(EncodeError::BodyTooLarge {
            body_bytes: data.len(),
        });
    }
    out.reserve(HEADER_BYTES + data.len());
    encode_frame_into(data, out);
    Ok(())
}

/// Appends the frame of a request to `out`. `body` is DynamoDB's request body for `operation`
/// (DynamoDB JSON, as the HTTP API takes it).
pub fn encode_request_into(
    request_id: u64,
    operation: Operation,
    body: &Json,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut encoder = Encoder::with_capacity(BUILDER_SLACK_BYTES);
    let request = encoder.request(request_id, operation, body)?;
    wire::finish_request_buffer(&mut encoder.builder, request);
    frame_of(encoder.builder.finished_data(), out)
}

/// The frame of a request.
pub fn encode_request(
    request_id: u64,
    operation: Operation,
    body: &Json,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_request_into(request_id, operation, body, &mut out)?;
    Ok(out)
}

/// Reads a checked frame body as a request (identifier, then the flatbuffers verifier). The
/// members are converted by [`RequestView::body`].
pub fn decode_request(buffer: &[u8]) -> Result<RequestView<'_>, DecodeError> {
    // flatbuffers' identifier check asserts the length; the frame guarantees it, this does too.
    if buffer.len() < BODY_BYTES_MIN {
        return Err(DecodeError::Identifier {
            expected: REQUEST_IDENTIFIER,
        });
    }
    if !wire::request_buffer_has_identifier(buffer) {
        if let Some(request_id) = v1::request_id(buffer) {
            return Err(DecodeError::UnsupportedVersion {
                version: 1,
                request_id,
            });
        }
        return Err(DecodeError::Identifier {
            expected: REQUEST_IDENTIFIER,
        });
    }
    let table = wire::root_as_request_with_opts(&verifier_options(), buffer)
        .map_err(|error| DecodeError::Invalid(error.to_string()))?;
    Ok(RequestView {
        request_id: table.request_id(),
        operation_value: table.operation().0,
        table,
    })
}

/// The answer to [`DecodeError::UnsupportedVersion`]: a response in that version's format, so
/// that its client reads it as an error ([`UNSUPPORTED_VERSION_EXCEPTION`]).
pub fn encode_unsupported_version_response(version: u32, request_id: u64) -> Vec<u8> {
    debug_assert_eq!(version, 1, "only version 1 precedes this one");
    let mut out = Vec::new();
    encode_frame_into(
        &v1::error_response(
            request_id,
            UNSUPPORTED_VERSION_EXCEPTION,
            UNSUPPORTED_VERSION_1_MESSAGE,
        ),
        &mut out,
    );
    out
}

/// The frame of a response: the router's DynamoDB JSON body, or its error. Fails for a body
/// over the size limit or with a member the schema does not carry; the server then answers
/// with an error instead.
pub fn encode_response(
    request_id: u64,
    outcome: Result<&Json, &ServiceError>,
) -> Result<Vec<u8>, EncodeError> {
    let mut encoder = Encoder::with_capacity(BUILDER_SLACK_BYTES);
    let mut args = wire::ResponseArgs {
        request_id,
        ..Default::default()
    };
    match outcome {
        Ok(body) => encoder.response_body(&mut args, body)?,
        Err(error) => {
            args.error =
                Some(encoder.error(&error.type_name, &error.message, error.item.as_ref())?);
        }
    }
    let response = wire::Response::create(&mut encoder.builder, &args);
    encoder.builder.finish(response, Some(RESPONSE_IDENTIFIER));
    let mut out = Vec::new();
    frame_of(encoder.builder.finished_data(), &mut out)?;
    Ok(out)
}

/// Reads a checked frame body as a response.
pub fn decode_response(buffer: &[u8]) -> Result<Response, DecodeError> {
    if buffer.len() < BODY_BYTES_MIN
        || !flatbuffers::buffer_has_identifier(buffer, RESPONSE_IDENTIFIER, false)
    {
        return Err(DecodeError::Identifier {
            expected: RESPONSE_IDENTIFIER,
        });
    }
    let response = flatbuffers::root_with_opts::<wire::Response>(&verifier_options(), buffer)
        .map_err(|error| DecodeError::Invalid(error.to_string()))?;
    let mut decoder = Decoder::new();
    let outcome = match response.error() {
        None => decoder.response_body(&response).map(Ok),
        Some(error) => {
            let type_name = error
                .type_name()
                .filter(|name| !name.is_empty())
                .ok_or(DecodeError::MissingExceptionName)?;
            decoder.error_item(&error).map(|item| {
                Err(ServiceError {
                    type_name: type_name.to_string(),
                    message: error.message().unwrap_or("").to_string(),
                    item,
                })
            })
        }
    };
    Ok(Response {
        request_id: response.request_id(),
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::frame::split_frame;
    use crate::limits::DYNAMODB_BODY_BYTES_MAX;

    fn body_of(frame: &[u8]) -> &[u8] {
        split_frame(frame).unwrap().unwrap().0
    }

    #[test]
    fn operations_keep_their_schema_values() {
        let values: Vec<u8> = Operation::ALL.iter().map(|op| op.wire_value()).collect();
        assert_eq!(values, (1..=12).collect::<Vec<u8>>());
        for operation in Operation::ALL {
            assert_eq!(
                Operation::from_wire_value(operation.wire_value()),
                Some(operation)
            );
            // The generated enum names the value the same way.
            assert_eq!(
                wire::Operation(operation.wire_value()).variant_name(),
                Some(operation.name())
            );
        }
        assert_eq!(Operation::from_wire_value(0), None);
        assert_eq!(Operation::from_wire_value(13), None);
    }

    #[test]
    fn a_request_carries_its_id_operation_and_identifier() {
        let body = json!({"TableName": "movies", "Key": {"year": {"N": "2001"}}});
        let frame = encode_request(u64::MAX - 3, Operation::GetItem, &body).unwrap();
        let request = decode_request(body_of(&frame)).unwrap();
        assert_eq!(request.request_id, u64::MAX - 3);
        assert_eq!(
            Operation::from_wire_value(request.operation_value),
            Some(Operation::GetItem)
        );
        assert_eq!(request.body().unwrap(), body);
        assert_eq!(&body_of(&frame)[4..8], b"SHQ2");
    }

    #[test]
    fn requests_and_responses_are_not_confused() {
        let request = encode_request(1, Operation::Scan, &json!({})).unwrap();
        let response = encode_response(1, Ok(&json!({}))).unwrap();
        assert!(matches!(
            decode_response(body_of(&request)),
            Err(DecodeError::Identifier { .. })
        ));
        assert!(matches!(
            decode_request(body_of(&response)),
            Err(DecodeError::Identifier { .. })
        ));
    }

    #[test]
    fn garbage_with_the_right_identifier_is_refused_by_the_verifier() {
        // A root offset pointing far past the end.
        let mut buffer = vec![0xF0, 0xFF, 0xFF, 0x0F];
        buffer.extend_from_slice(b"SHQ2");
        buffer.extend_from_slice(&[0u8; 8]);
        assert!(matches!(
            decode_request(&buffer),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn an_error_without_its_name_is_refused() {
        let error = ServiceError {
            type_name: String::new(),
            message: "m".to_string(),
            item: None,
        };
        let frame = encode_response(3, Err(&error)).unwrap();
        assert_eq!(
            decode_response(body_of(&frame)),
            Err(DecodeError::MissingExceptionName)
        );
    }

    #[test]
    fn a_version_1_request_is_answered_in_version_1_with_the_version_error() {
        use crate::generated_v1::shoal::client as wire_v1;
        let mut builder = flatbuffers::FlatBufferBuilder::new();
        let body = builder.create_string("{}");
        let request = wire_v1::Request::create(
            &mut builder,
            &wire_v1::RequestArgs {
                request_id: 77,
                operation: wire_v1::Operation::ListTables,
                body: Some(body),
            },
        );
        wire_v1::finish_request_buffer(&mut builder, request);
        let Err(DecodeError::UnsupportedVersion {
            version,
            request_id,
        }) = decode_request(builder.finished_data())
        else {
            panic!("a version 1 request is recognised");
        };
        assert_eq!((version, request_id), (1, 77));
        let frame = encode_unsupported_version_response(version, request_id);
        let answer = body_of(&frame);
        assert_eq!(&answer[4..8], b"SHS1");
        // What a version 1 client reads.
        let response = flatbuffers::root::<wire_v1::Response>(answer).unwrap();
        assert_eq!(response.request_id(), 77);
        assert_eq!(response.body(), None);
        let error = response.error().unwrap();
        assert_eq!(
            error.type_name(),
            Some("UnsupportedProtocolVersionException")
        );
        assert_eq!(
            error.message(),
            Some("unsupported protocol version 1; this router speaks version 2")
        );
        // A version 1 buffer the verifier refuses is a bad frame, as before.
        let mut broken = vec![0xF0, 0xFF, 0xFF, 0x0F];
        broken.extend_from_slice(b"SHQ1");
        broken.extend_from_slice(&[0u8; 8]);
        assert!(matches!(
            decode_request(&broken),
            Err(DecodeError::Identifier { .. })
        ));
    }

    #[test]
    fn oversize_requests_are_refused_when_encoding() {
        let text = "x".repeat(DYNAMODB_BODY_BYTES_MAX + 1);
        let error = encode_request(
            1,
            Operation::PutItem,
            &json!({"TableName": "t", "Item": {"a": {"S": text}}}),
        )
        .unwrap_err();
        assert!(matches!(error, EncodeError::BodyTooLarge { .. }), "{error}");
        assert!(matches!(
            encode_response(1, Ok(&json!({"Item": {"a": {"S": text}}}))),
            Err(EncodeError::BodyTooLarge { .. })
        ));
        // A request near DynamoDB's limit fits in a frame.
        let text = "x".repeat(DYNAMODB_BODY_BYTES_MAX - 1024);
        let body = json!({"TableName": "t", "Item": {"a": {"S": text}}});
        let frame = encode_request(1, Operation::BatchWriteItem, &body).unwrap();
        assert_eq!(
            decode_request(body_of(&frame)).unwrap().body().unwrap(),
            body
        );
    }
}

/// Golden bytes of format version 2, annotated in FORMAT.md. Other encoders may lay a buffer
/// out differently (any layout the flatbuffers verifier accepts is valid); this pins ours.
#[cfg(test)]
mod golden {
    use serde_json::json;

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_list_tables_request_frame() {
        let frame = encode_request(1, Operation::ListTables, &json!({})).unwrap();
        assert_eq!(
            hex(&frame),
            "20 00 00 00 13 49 37 d5 \
             10 00 00 00 53 48 51 32 08 00 10 00 08 00 07 00 \
             08 00 00 00 00 00 00 04 01 00 00 00 00 00 00 00"
        );
    }

    #[test]
    fn a_get_item_request_frame() {
        let body = json!({"TableName": "t", "Key": {"k": {"S": "v"}}});
        let frame = encode_request(2, Operation::GetItem, &body).unwrap();
        assert_eq!(
            hex(&frame),
            "78 00 00 00 32 21 91 54 \
             18 00 00 00 53 48 51 32 00 00 0e 00 18 00 10 00 07 00 08 00 00 00 0c 00 \
             0e 00 00 00 00 00 00 06 10 00 00 00 14 00 00 00 02 00 00 00 00 00 00 00 \
             01 00 00 00 74 00 00 00 \
             01 00 00 00 0c 00 00 00 \
             08 00 0c 00 04 00 08 00 08 00 00 00 24 00 00 00 0c 00 00 00 \
             08 00 0c 00 07 00 08 00 08 00 00 00 00 00 00 01 04 00 00 00 \
             01 00 00 00 76 00 00 00 01 00 00 00 6b 00 00 00"
        );
    }

    #[test]
    fn a_success_response_frame() {
        let frame = encode_response(1, Ok(&json!({}))).unwrap();
        assert_eq!(
            hex(&frame),
            "20 00 00 00 b2 81 55 31 \
             14 00 00 00 53 48 53 32 00 00 00 00 00 00 06 00 0c 00 04 00 \
             06 00 00 00 01 00 00 00 00 00 00 00"
        );
    }

    #[test]
    fn an_error_response_frame() {
        let error = ServiceError {
            type_name: "E".to_string(),
            message: "m".to_string(),
            item: None,
        };
        let frame = encode_response(2, Err(&error)).unwrap();
        assert_eq!(
            hex(&frame),
            "48 00 00 00 5e 39 69 36 \
             10 00 00 00 53 48 53 32 08 00 14 00 08 00 04 00 \
             08 00 00 00 18 00 00 00 02 00 00 00 00 00 00 00 00 00 00 00 \
             08 00 0c 00 04 00 08 00 08 00 00 00 10 00 00 00 04 00 00 00 \
             01 00 00 00 6d 00 00 00 01 00 00 00 45 00 00 00"
        );
    }

    #[test]
    fn the_version_error_in_version_1() {
        let frame = encode_unsupported_version_response(1, 3);
        let expected_start = "a8 00 00 00 a3 34 49 98 18 00 00 00 53 48 53 31";
        assert!(hex(&frame).starts_with(expected_start), "{}", hex(&frame));
        assert_eq!(frame.len(), 176);
    }
}
