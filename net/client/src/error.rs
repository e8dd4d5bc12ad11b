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
    /// The caller's request cannot be sent: its body is not a JSON object, has a member the
    /// protocol cannot carry (the message names it, e.g. `member Item must be an object`), or
    /// is too large. Nothing was sent.
    InvalidRequest(String),
    /// The server's response is not what the protocol promises.
    Protocol(String),
    /// The TLS handshake failed: the router's certificate is not trusted (or not valid for the
    /// name), or client and router share no protocol version. Nothing was sent; retrying does
    /// not help.
    Tls(String),
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
            ClientError::Tls(reason) => write!(formatter, "TLS handshake failed: {reason}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// What a reader thread or task hands to the request it answers: the server's outcome, or a
/// failure to get one.
pub(crate) type Outcome = Result<Result<Json, shoal_protocol::ServiceError>, ClientError>;

/// A decoded response's outcome as the caller's: a response whose members do not convert is a
/// protocol error of that request only (the connection stays).
pub(crate) fn outcome_of(response: shoal_protocol::Response) -> Outcome {
    response
        .outcome
        .map_err(|error| ClientError::Protocol(format!("response members: {error}")))
}

/// Turns an outcome into the caller's result.
pub(crate) fn response_value(outcome: Outcome) -> Result<Json, ClientError> {
    match outcome? {
        Ok(body) => Ok(body),
        Err(error) => Err(ClientError::Service {
            type_name: error.type_name,
            message: error.message,
            item: error.item,
        }),
    }
}
