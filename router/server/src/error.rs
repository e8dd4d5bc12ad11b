//! The error the front end turns into a DynamoDB error response.

use std::fmt;

use serde_json::Value as Json;

/// DynamoDB's exception names used by the router.
pub const VALIDATION: &str = "ValidationException";
pub const RESOURCE_NOT_FOUND: &str = "ResourceNotFoundException";
pub const RESOURCE_IN_USE: &str = "ResourceInUseException";
pub const INTERNAL_SERVER_ERROR: &str = "InternalServerError";
pub const SERIALIZATION: &str = "SerializationException";
pub const LIMIT_EXCEEDED: &str = "LimitExceededException";
/// DynamoDB's retryable "slow down": SDKs retry it with backoff.
pub const THROTTLING: &str = "ThrottlingException";

/// An error a DynamoDB client receives: the exception name (the front end sends it as
/// `__type`), DynamoDB's message, and for a failed condition with
/// `ReturnValuesOnConditionCheckFailure: ALL_OLD` the old item as DynamoDB JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct DynamoError {
    pub type_name: String,
    pub message: String,
    pub item: Option<Json>,
    /// TransactionCanceledException's CancellationReasons (DynamoDB JSON), one per action.
    pub cancellation_reasons: Option<Json>,
}

impl DynamoError {
    pub fn new(type_name: &str, message: impl Into<String>) -> DynamoError {
        DynamoError {
            type_name: type_name.to_string(),
            message: message.into(),
            item: None,
            cancellation_reasons: None,
        }
    }

    pub fn validation(message: impl Into<String>) -> DynamoError {
        DynamoError::new(VALIDATION, message)
    }

    pub fn internal(message: impl Into<String>) -> DynamoError {
        DynamoError::new(INTERNAL_SERVER_ERROR, message)
    }

    /// DescribeTable's and DeleteTable's wording for a missing table.
    pub fn table_not_found(name: &str) -> DynamoError {
        DynamoError::new(
            RESOURCE_NOT_FOUND,
            format!("Requested resource not found: Table: {name} not found"),
        )
    }

    /// The tag operations' wording for a table ARN that names no table. "ResourcArn" is
    /// DynamoDB's own spelling (dynalite's tests, which run against DynamoDB, expect it).
    pub fn resource_arn_not_found(arn: &str) -> DynamoError {
        DynamoError::new(
            RESOURCE_NOT_FOUND,
            format!("Requested resource not found: ResourcArn: {arn} not found"),
        )
    }

    /// The item operations' wording for a missing table.
    pub fn resource_not_found() -> DynamoError {
        DynamoError::new(RESOURCE_NOT_FOUND, "Requested resource not found")
    }

    /// A member of the wrong JSON type.
    pub fn serialization(what: &str) -> DynamoError {
        DynamoError::new(
            SERIALIZATION,
            format!("Unexpected value type in payload: {what}"),
        )
    }

    /// A required member is absent (DynamoDB's generic constraint message).
    pub fn missing_member(member: &str) -> DynamoError {
        DynamoError::validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    }
}

impl From<shoal_model::Error> for DynamoError {
    fn from(error: shoal_model::Error) -> DynamoError {
        DynamoError::new(error.exception_name(), error.message())
    }
}

impl fmt::Display for DynamoError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.type_name, self.message)
    }
}

impl std::error::Error for DynamoError {}
