//! Which failures are retried, and how long to wait: exponential backoff with full jitter.
//!
//! Rules (Operation::is_read names the reads):
//! 1. Throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`,
//!    `RequestLimitExceeded`) is retried for every operation: the router's admission control
//!    refused the request before it reached a partition, so nothing was applied.
//! 2. A request that was never sent (no connection) is retried for every operation.
//! 3. `InternalServerError`, `ServiceUnavailable`, a lost connection and a timeout leave the
//!    outcome unknown: retried for reads only. A write whose outcome is unknown is returned to
//!    the caller, who alone knows whether applying it twice is harmless.
//! 4. Every other error (validation, a failed condition, a missing table) is the answer.
//!
//! Attempts are bounded by `attempts_max` and by `deadline` from the first attempt: a backoff
//! that would end past the deadline is not taken.

use std::time::Duration;

use shoal_protocol::Operation;
use shoal_rng::{SeededRng, full_jitter_delay};

use crate::error::{
    ClientError, INTERNAL_SERVER_ERROR, PROVISIONED_THROUGHPUT_EXCEEDED, REQUEST_LIMIT_EXCEEDED,
    SERVICE_UNAVAILABLE, THROTTLING,
};

/// Attempts of one call by default, the first included (the AWS SDKs' default is 3 for most
/// services and 10 for DynamoDB, whose throttling is expected under load).
pub const ATTEMPTS_DEFAULT: u32 = 10;
/// The cap on attempts any policy may ask for.
pub const ATTEMPTS_LIMIT: u32 = 100;
/// The first backoff's upper bound; each retry doubles it (the AWS SDKs use 25 ms for DynamoDB).
pub const BACKOFF_BASE_DEFAULT: Duration = Duration::from_millis(25);
/// The largest upper bound of one backoff.
pub const BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(2);
/// How long one call may take, all attempts and backoffs together.
pub const DEADLINE_DEFAULT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts of one call, the first included; 1 means never retry. At most `ATTEMPTS_LIMIT`.
    pub attempts_max: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts_max: ATTEMPTS_DEFAULT,
            backoff_base: BACKOFF_BASE_DEFAULT,
            backoff_max: BACKOFF_MAX_DEFAULT,
            deadline: DEADLINE_DEFAULT,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 1,
            ..RetryPolicy::default()
        }
    }

    pub fn attempts(&self) -> u32 {
        self.attempts_max.clamp(1, ATTEMPTS_LIMIT)
    }

    /// The wait before retry number `retry` (0 for the first retry): uniform in
    /// `[0, min(backoff_max, backoff_base × 2^retry)]` ("full jitter", which spreads the
    /// retries of many throttled clients over the whole window instead of bunching them).
    pub fn backoff(&self, retry: u32, rng: &mut SeededRng) -> Duration {
        full_jitter_delay(self.backoff_base, self.backoff_max, retry, rng)
    }
}

/// A jitter seed distinct per process and start time, so that many clients throttled together
/// do not back off in step. Tests set their own seed for reproducible delays.
pub fn jitter_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Whether `error` from `operation` may be retried (rules 1 to 4 of the module docs).
pub fn retryable(operation: Operation, error: &ClientError) -> bool {
    match error {
        ClientError::Service { type_name, .. } => match type_name.as_str() {
            PROVISIONED_THROUGHPUT_EXCEEDED | THROTTLING | REQUEST_LIMIT_EXCEEDED => true,
            INTERNAL_SERVER_ERROR | SERVICE_UNAVAILABLE => operation.is_read(),
            _ => false,
        },
        ClientError::Connect(_) => true,
        ClientError::ConnectionLost(_) | ClientError::Timeout => operation.is_read(),
        ClientError::InvalidRequest(_) | ClientError::Protocol(_) | ClientError::Tls(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(type_name: &str) -> ClientError {
        ClientError::Service {
            type_name: type_name.to_string(),
            message: String::new(),
            item: None,
        }
    }

    #[test]
    fn throttling_is_retried_for_every_operation() {
        for operation in Operation::ALL {
            for name in [
                PROVISIONED_THROUGHPUT_EXCEEDED,
                THROTTLING,
                REQUEST_LIMIT_EXCEEDED,
            ] {
                assert!(retryable(operation, &service(name)), "{operation} {name}");
            }
            assert!(retryable(operation, &ClientError::Connect(String::new())));
        }
    }

    #[test]
    fn unknown_outcomes_are_retried_for_reads_only() {
        let unknown = [
            service(INTERNAL_SERVER_ERROR),
            service(SERVICE_UNAVAILABLE),
            ClientError::Timeout,
            ClientError::ConnectionLost(String::new()),
        ];
        for error in &unknown {
            assert!(error.outcome_unknown());
            for read in [
                Operation::GetItem,
                Operation::Query,
                Operation::Scan,
                Operation::BatchGetItem,
                Operation::DescribeTable,
                Operation::ListTables,
            ] {
                assert!(retryable(read, error), "{read} {error}");
            }
            for write in [
                Operation::PutItem,
                Operation::UpdateItem,
                Operation::DeleteItem,
                Operation::BatchWriteItem,
                Operation::CreateTable,
                Operation::DeleteTable,
            ] {
                assert!(!retryable(write, error), "{write} {error}");
            }
        }
    }

    #[test]
    fn answers_are_not_retried() {
        for name in [
            "ConditionalCheckFailedException",
            "ValidationException",
            "ResourceNotFoundException",
        ] {
            assert!(!retryable(Operation::GetItem, &service(name)));
        }
        assert!(!retryable(
            Operation::GetItem,
            &ClientError::Protocol(String::new())
        ));
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_capped_ceiling() {
        let policy = RetryPolicy {
            attempts_max: 10,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(300),
            deadline: Duration::from_secs(5),
        };
        let mut rng = SeededRng::new(3);
        for retry in 0..80 {
            let ceiling = Duration::from_millis(10)
                .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
                .min(Duration::from_millis(300));
            let ceiling = if retry >= 32 {
                Duration::from_millis(300)
            } else {
                ceiling
            };
            let mut seen_low = false;
            for _ in 0..200 {
                let delay = policy.backoff(retry, &mut rng);
                assert!(delay <= ceiling, "retry {retry}: {delay:?} > {ceiling:?}");
                seen_low |= delay < ceiling / 4;
            }
            // Full jitter: the lower quarter of the window is used too.
            assert!(seen_low, "retry {retry}");
        }
        assert_eq!(RetryPolicy::none().attempts(), 1);
        let huge = RetryPolicy {
            attempts_max: u32::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(huge.attempts(), ATTEMPTS_LIMIT);
    }
}
