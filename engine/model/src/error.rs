//! The one error type of the item model and expression engine.
//!
//! Every variant names the DynamoDB exception a client sees, and carries DynamoDB's message text.
//! The texts themselves live in [`crate::messages`], so that wording is reviewed in one place.

use std::fmt;

/// An error a DynamoDB client would receive, with DynamoDB's exception name and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// `ValidationException`: the request is malformed or violates a limit or a rule.
    Validation(String),
    /// `ConditionalCheckFailedException`: a ConditionExpression or Expected evaluated to false.
    ConditionalCheckFailed,
    /// `SerializationException`: the request body does not have DynamoDB JSON's shape.
    Serialization(String),
    /// `InternalServerError`: stored bytes failed to decode. Never caused by a client request;
    /// the message says what was wrong for the operator, not for the client.
    Corrupt(String),
}

impl Error {
    /// DynamoDB's exception name, as sent in the `__type` field of an error response.
    pub fn exception_name(&self) -> &'static str {
        match self {
            Error::Validation(_) => "ValidationException",
            Error::ConditionalCheckFailed => "ConditionalCheckFailedException",
            Error::Serialization(_) => "SerializationException",
            Error::Corrupt(_) => "InternalServerError",
        }
    }

    /// DynamoDB's message text.
    pub fn message(&self) -> &str {
        match self {
            Error::Validation(message)
            | Error::Serialization(message)
            | Error::Corrupt(message) => message,
            Error::ConditionalCheckFailed => crate::messages::CONDITIONAL_CHECK_FAILED,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.exception_name(), self.message())
    }
}

impl std::error::Error for Error {}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for a `ValidationException` with the given message.
pub(crate) fn validation(message: impl Into<String>) -> Error {
    Error::Validation(message.into())
}
