//! The client's error: a DynamoDB error from the server, or a failure to get an answer.

use std::fmt;

use serde_json::Value as Json;

/// Exception names a client treats specially (retry.rs).
pub const PROVISIONED_THROUGHPUT_EXCEEDED: &str = "ProvisionedThroughputExceededException";
pub const THROTTLING: &str = "ThrottlingException";
pub const REQUEST_LIMIT_EXCEEDED: &str = "RequestLimitExceeded";
pub const INTERNAL_SERVER_ERROR: &str = "InternalServerError";
pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailable";

#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// DynamoDB's answer: the exception name, its message, and the old item of a failed
    /// condition when the request asked for it.
    Service {
        type_name: String,
        message: String,
        item: Option<Json>,
    },
    /// The request was never sent (no connection could be made): safe to retry.
    Connect(String),
    /// The connection ended after the request was sent: it may or may not have been applied.
    ConnectionLost(String),
    /// No response within the request timeout: it may or may not have been applied.
    Timeout,
    /// The caller's request cannot be sent (its body is not a JSON object, or too large).
    InvalidRequest(String),
    /// The server's response is not what the protocol promises.
    Protocol(String),
}

impl ClientError {
    /// The DynamoDB exception name, for a service error.
    pub fn exception_name(&self) -> Option<&str> {
        match self {
            ClientError::Service { type_name, .. } => Some(type_name),
            _ => None,
        }
    }

    /// Whether the request may have been applied although no success came back.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ClientError::ConnectionLost(_) | ClientError::Timeout => true,
            ClientError::Service { type_name, .. } => {
                type_name == INTERNAL_SERVER_ERROR || type_name == SERVICE_UNAVAILABLE
            }
            _ => false,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Service {
                type_name, message, ..
            } => write!(formatter, "{type_name}: {message}"),
            ClientError::Connect(reason) => write!(formatter, "cannot connect: {reason}"),
            ClientError::ConnectionLost(reason) => write!(
                formatter,
                "connection lost before the response (outcome unknown): {reason}"
            ),
            ClientError::Timeout => {
                write!(
                    formatter,
                    "no response within the request timeout (outcome unknown)"
                )
            }
            ClientError::InvalidRequest(reason) => write!(formatter, "invalid request: {reason}"),
            ClientError::Protocol(reason) => write!(formatter, "protocol error: {reason}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The request body as JSON text: it must be an object (DynamoDB's bodies all are).
pub(crate) fn request_text(body: &Json) -> Result<String, ClientError> {
    if !body.is_object() {
        return Err(ClientError::InvalidRequest(
            "the request body must be a JSON object".to_string(),
        ));
    }
    Ok(body.to_string())
}

/// Turns a decoded response outcome into the caller's result.
pub(crate) fn response_value(
    outcome: Result<String, shoal_protocol::ServiceError>,
) -> Result<Json, ClientError> {
    match outcome {
        Ok(body) => serde_json::from_str(&body)
            .map_err(|error| ClientError::Protocol(format!("response body is not JSON: {error}"))),
        Err(error) => {
            let item = match error.item {
                Some(text) => Some(serde_json::from_str(&text).map_err(|error| {
                    ClientError::Protocol(format!("error item is not JSON: {error}"))
                })?),
                None => None,
            };
            Err(ClientError::Service {
                type_name: error.type_name,
                message: error.message,
                item,
            })
        }
    }
}
