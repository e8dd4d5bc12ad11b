//! Requests and responses: building and reading the flatbuffers of schema/shoal.fbs, framed.
//!
//! Bodies stay DynamoDB JSON text here; parsing them is the router's (one validation path with
//! the HTTP API, DynamoDB's exact error messages) and the client's business.

use std::fmt;

use flatbuffers::FlatBufferBuilder;

use crate::frame::encode_frame_into;
use crate::generated::shoal::client as wire;
use crate::limits::{DYNAMODB_BODY_BYTES_MAX, FRAME_BYTES_MAX, HEADER_BYTES};

/// The file identifier of a request buffer (bytes 4..8 of the flatbuffer).
pub const REQUEST_IDENTIFIER: &str = wire::REQUEST_IDENTIFIER;
/// The file identifier of a response buffer. Distinct from requests' so that a buffer sent the
/// wrong way (a server's answer replayed at a server) fails verification.
pub const RESPONSE_IDENTIFIER: &str = "SHS1";

/// What flatbuffers adds around a request or response's strings, at most; the builder's first
/// allocation.
const BUILDER_SLACK_BYTES: usize = 256;

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
    /// A body over DynamoDB's request size limit (`DYNAMODB_BODY_BYTES_MAX`).
    BodyTooLarge { body_bytes: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BodyTooLarge { body_bytes } => write!(
                formatter,
                "body of {body_bytes} bytes is over the limit of {DYNAMODB_BODY_BYTES_MAX}"
            ),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Why a checked frame body is not a valid request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Bytes 4..8 are not the expected file identifier.
    Identifier { expected: &'static str },
    /// The flatbuffers verifier refused the buffer.
    Invalid(String),
    /// A response with both a body and an error, or neither.
    Ambiguous,
    /// An error without its exception name.
    MissingExceptionName,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Identifier { expected } => {
                write!(formatter, "buffer is not a {expected} buffer")
            }
            DecodeError::Invalid(reason) => write!(formatter, "invalid flatbuffer: {reason}"),
            DecodeError::Ambiguous => {
                write!(
                    formatter,
                    "response carries both a body and an error, or neither"
                )
            }
            DecodeError::MissingExceptionName => write!(formatter, "error without type_name"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A decoded request, borrowing the frame body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestView<'a> {
    pub request_id: u64,
    /// The schema value; `Operation::from_wire_value` names it, or says it is unknown (the
    /// server answers UnknownOperationException: the frame itself was sound).
    pub operation_value: u8,
    /// DynamoDB JSON; `None` when absent (the empty request `{}`).
    pub body: Option<&'a str>,
}

/// A DynamoDB error as the protocol carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// The exception name without namespace, e.g. `ConditionalCheckFailedException`.
    pub type_name: String,
    pub message: String,
    /// DynamoDB JSON of the old item (a failed condition asked for ALL_OLD).
    pub item: Option<String>,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.type_name, self.message)
    }
}

/// A decoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub request_id: u64,
    /// The DynamoDB JSON response body, or the error.
    pub outcome: Result<String, ServiceError>,
}

fn check_body_size(body: &str) -> Result<(), EncodeError> {
    if body.len() > DYNAMODB_BODY_BYTES_MAX {
        return Err(EncodeError::BodyTooLarge {
            body_bytes: body.len(),
        });
    }
    Ok(())
}

/// Appends the frame of a request to `out`.
pub fn encode_request_into(
    request_id: u64,
    operation: Operation,
    body: &str,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    check_body_size(body)?;
    let mut builder = FlatBufferBuilder::with_capacity(body.len() + BUILDER_SLACK_BYTES);
    let body = builder.create_string(body);
    let request = wire::Request::create(
        &mut builder,
        &wire::RequestArgs {
            request_id,
            operation: wire::Operation(operation.wire_value()),
            body: Some(body),
        },
    );
    wire::finish_request_buffer(&mut builder, request);
    encode_frame_into(builder.finished_data(), out);
    Ok(())
}

/// The frame of a request.
pub fn encode_request(
    request_id: u64,
    operation: Operation,
    body: &str,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len() + BUILDER_SLACK_BYTES);
    encode_request_into(request_id, operation, body, &mut out)?;
    Ok(out)
}

/// Reads a checked frame body as a request (identifier, then the flatbuffers verifier).
pub fn decode_request(buffer: &[u8]) -> Result<RequestView<'_>, DecodeError> {
    if !wire::request_buffer_has_identifier(buffer) {
        return Err(DecodeError::Identifier {
            expected: REQUEST_IDENTIFIER,
        });
    }
    let request =
        wire::root_as_request(buffer).map_err(|error| DecodeError::Invalid(error.to_string()))?;
    Ok(RequestView {
        request_id: request.request_id(),
        operation_value: request.operation().0,
        body: request.body(),
    })
}

/// The frame of a response. Fails only for a body over the size limit; the server then answers
/// with an error instead.
pub fn encode_response(
    request_id: u64,
    outcome: Result<&str, &ServiceError>,
) -> Result<Vec<u8>, EncodeError> {
    let text_bytes = match outcome {
        Ok(body) => {
            check_body_size(body)?;
            body.len()
        }
        Err(error) => {
            let item = error.item.as_deref().unwrap_or("");
            check_body_size(item)?;
            error.type_name.len() + error.message.len() + item.len()
        }
    };
    let mut builder = FlatBufferBuilder::with_capacity(text_bytes + BUILDER_SLACK_BYTES);
    let (body, error) = match outcome {
        Ok(body) => (Some(builder.create_string(body)), None),
        Err(error) => {
            let type_name = builder.create_string(&error.type_name);
            let message = builder.create_string(&error.message);
            let item = error
                .item
                .as_deref()
                .map(|item| builder.create_string(item));
            let error = wire::Error::create(
                &mut builder,
                &wire::ErrorArgs {
                    type_name: Some(type_name),
                    message: Some(message),
                    item,
                },
            );
            (None, Some(error))
        }
    };
    let response = wire::Response::create(
        &mut builder,
        &wire::ResponseArgs {
            request_id,
            body,
            error,
        },
    );
    builder.finish(response, Some(RESPONSE_IDENTIFIER));
    let data = builder.finished_data();
    // The strings are bounded above and the table overhead is small, so the frame fits;
    // checked here rather than assumed.
    if HEADER_BYTES + data.len() > FRAME_BYTES_MAX {
        return Err(EncodeError::BodyTooLarge {
            body_bytes: data.len(),
        });
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + data.len());
    encode_frame_into(data, &mut out);
    Ok(out)
}

/// Reads a checked frame body as a response.
pub fn decode_response(buffer: &[u8]) -> Result<Response, DecodeError> {
    if !flatbuffers::buffer_has_identifier(buffer, RESPONSE_IDENTIFIER, false) {
        return Err(DecodeError::Identifier {
            expected: RESPONSE_IDENTIFIER,
        });
    }
    let response = flatbuffers::root::<wire::Response>(buffer)
        .map_err(|error| DecodeError::Invalid(error.to_string()))?;
    let outcome = match (response.body(), response.error()) {
        (Some(body), None) => Ok(body.to_string()),
        (None, Some(error)) => {
            let type_name = error
                .type_name()
                .filter(|name| !name.is_empty())
                .ok_or(DecodeError::MissingExceptionName)?;
            Err(ServiceError {
                type_name: type_name.to_string(),
                message: error.message().unwrap_or("").to_string(),
                item: error.item().map(str::to_string),
            })
        }
        _ => return Err(DecodeError::Ambiguous),
    };
    Ok(Response {
        request_id: response.request_id(),
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::split_frame;

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
    fn a_request_round_trips() {
        let body = r#"{"TableName":"movies","Key":{"year":{"N":"2001"}}}"#;
        let frame = encode_request(u64::MAX - 3, Operation::GetItem, body).unwrap();
        let request = decode_request(body_of(&frame)).unwrap();
        assert_eq!(request.request_id, u64::MAX - 3);
        assert_eq!(
            Operation::from_wire_value(request.operation_value),
            Some(Operation::GetItem)
        );
        assert_eq!(request.body, Some(body));
        assert_eq!(&body_of(&frame)[4..8], b"SHQ1");
    }

    #[test]
    fn responses_round_trip_with_bodies_and_errors() {
        let frame = encode_response(7, Ok(r#"{"Item":{}}"#)).unwrap();
        assert_eq!(
            decode_response(body_of(&frame)).unwrap(),
            Response {
                request_id: 7,
                outcome: Ok(r#"{"Item":{}}"#.to_string())
            }
        );
        let error = ServiceError {
            type_name: "ConditionalCheckFailedException".to_string(),
            message: "The conditional request failed".to_string(),
            item: Some(r#"{"k":{"S":"v"}}"#.to_string()),
        };
        let frame = encode_response(8, Err(&error)).unwrap();
        let decoded = decode_response(body_of(&frame)).unwrap();
        assert_eq!(decoded.request_id, 8);
        assert_eq!(decoded.outcome, Err(error));
    }

    #[test]
    fn requests_and_responses_are_not_confused() {
        let request = encode_request(1, Operation::Scan, "{}").unwrap();
        let response = encode_response(1, Ok("{}")).unwrap();
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
    fn a_response_with_neither_body_nor_error_is_refused() {
        let mut builder = FlatBufferBuilder::new();
        let response = wire::Response::create(
            &mut builder,
            &wire::ResponseArgs {
                request_id: 3,
                body: None,
                error: None,
            },
        );
        builder.finish(response, Some(RESPONSE_IDENTIFIER));
        assert_eq!(
            decode_response(builder.finished_data()),
            Err(DecodeError::Ambiguous)
        );
    }

    #[test]
    fn garbage_with_the_right_identifier_is_refused_by_the_verifier() {
        // A root offset pointing far past the end.
        let mut buffer = vec![0xF0, 0xFF, 0xFF, 0x0F];
        buffer.extend_from_slice(b"SHQ1");
        buffer.extend_from_slice(&[0u8; 8]);
        assert!(matches!(
            decode_request(&buffer),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn oversize_bodies_are_refused_when_encoding() {
        let body = "x".repeat(DYNAMODB_BODY_BYTES_MAX + 1);
        assert!(matches!(
            encode_request(1, Operation::PutItem, &body),
            Err(EncodeError::BodyTooLarge { .. })
        ));
        assert!(matches!(
            encode_response(1, Ok(&body)),
            Err(EncodeError::BodyTooLarge { .. })
        ));
        // The largest body DynamoDB allows fits in a frame.
        let body = "x".repeat(DYNAMODB_BODY_BYTES_MAX);
        let frame = encode_request(1, Operation::BatchWriteItem, &body).unwrap();
        assert_eq!(
            decode_request(body_of(&frame)).unwrap().body,
            Some(&body[..])
        );
    }
}
/// Golden bytes of format version 1, annotated in FORMAT.md. Other encoders may lay a buffer
/// out differently (any layout the flatbuffers verifier accepts is valid); this pins ours.
#[cfg(test)]
mod golden {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_get_item_request_frame() {
        let frame = encode_request(1, Operation::GetItem, "{}").unwrap();
        assert_eq!(
            hex(&frame),
            "30 00 00 00 e1 86 fc 1c \
             14 00 00 00 53 48 51 31 00 00 0a 00 14 00 0c 00 07 00 08 00 \
             0a 00 00 00 00 00 00 06 0c 00 00 00 01 00 00 00 00 00 00 00 \
             02 00 00 00 7b 7d 00 00"
        );
    }

    #[test]
    fn a_success_response_frame() {
        let frame = encode_response(1, Ok("{}")).unwrap();
        assert_eq!(
            hex(&frame),
            "28 00 00 00 11 2f d1 f9 \
             10 00 00 00 53 48 53 31 08 00 10 00 08 00 04 00 \
             08 00 00 00 0c 00 00 00 01 00 00 00 00 00 00 00 \
             02 00 00 00 7b 7d 00 00"
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
            "50 00 00 00 07 56 6f 1c \
             18 00 00 00 53 48 53 31 00 00 00 00 00 00 0a 00 14 00 08 00 00 00 04 00 \
             0a 00 00 00 18 00 00 00 02 00 00 00 00 00 00 00 00 00 00 00 \
             08 00 0c 00 04 00 08 00 08 00 00 00 10 00 00 00 04 00 00 00 \
             01 00 00 00 6d 00 00 00 01 00 00 00 45 00 00 00"
        );
    }
}
