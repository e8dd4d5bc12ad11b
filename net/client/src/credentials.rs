//! Access keys, and the client's side of the authentication handshake
//! (net/protocol/FORMAT.md, "Authentication"): Hello, read the Challenge, sign it, send
//! Authenticate, read the outcome. Both clients run it on each new connection before any
//! request, with these steps; only their IO differs.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use shoal_protocol::handshake::{Authenticate, Authenticated, Challenge, HandshakeKind};

use crate::error::ClientError;

/// The environment variables the AWS SDKs read, and `shoal auth create-key` prints.
pub const ACCESS_KEY_ID_VARIABLE: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY_VARIABLE: &str = "AWS_SECRET_ACCESS_KEY";

/// An access key of the cluster (`shoal auth create-key`). The secret never leaves the
/// client: the handshake sends an HMAC made with it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for Credentials {
    // Never the secret: configurations are logged and printed in test failures.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, when both are set and not empty (as
    /// the AWS SDKs take them, so one `export` serves the HTTP API and the native port).
    pub fn from_env() -> Option<Credentials> {
        let read = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        Some(Credentials::new(
            read(ACCESS_KEY_ID_VARIABLE)?,
            read(SECRET_ACCESS_KEY_VARIABLE)?,
        ))
    }
}

fn protocol_error(step: &str, reason: impl fmt::Display) -> ClientError {
    ClientError::Protocol(format!("authentication handshake, {step}: {reason}"))
}

/// Step 2 to 3: reads the server's Challenge and returns the Authenticate frame answering it,
/// signed now.
pub(crate) fn answer_challenge(
    body: &[u8],
    credentials: &Credentials,
) -> Result<Vec<u8>, ClientError> {
    let challenge = Challenge::decode(body).map_err(|error| protocol_error("challenge", error))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let answer = Authenticate::sign(
        &challenge,
        &credentials.access_key_id,
        &credentials.secret_access_key,
        now,
    )
    // A key id the protocol cannot carry: nothing was sent with it.
    .map_err(|error| ClientError::InvalidRequest(format!("access key id: {error}")))?;
    Ok(answer.encode())
}

/// Step 4: the server's verdict. A refusal is the server's error (UnrecognizedClientException,
/// InvalidSignatureException, ...), not retried (retry.rs); the server closes the connection
/// after it.
pub(crate) fn read_outcome(body: &[u8]) -> Result<(), ClientError> {
    let outcome = Authenticated::decode(body).map_err(|error| protocol_error("outcome", error))?;
    match outcome.outcome {
        Ok(()) => Ok(()),
        Err((type_name, message)) => Err(ClientError::Service {
            type_name,
            message,
            item: None,
        }),
    }
}

/// Names what arrived instead of a handshake message (a router older than the handshake
/// closes the connection at a Hello; one that sends a response frame is not ours).
pub(crate) fn unexpected(expected: HandshakeKind) -> ClientError {
    protocol_error(
        "reply",
        format!(
            "expected the router's {expected:?}; is the endpoint a Shoal router's native port?"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::frame::split_frame;

    #[test]
    fn the_secret_is_never_printed() {
        let credentials = Credentials::new("AKSHEXAMPLE", "wJalrXUtnFEMI");
        let printed = format!("{credentials:?}");
        assert!(printed.contains("AKSHEXAMPLE"));
        assert!(!printed.contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn a_challenge_is_answered_with_a_signature_the_secret_verifies() {
        let challenge = Challenge {
            nonce: [3; 32],
            verifies: true,
        };
        let frame = challenge.encode();
        let (body, _) = split_frame(&frame).unwrap().unwrap();
        let credentials = Credentials::new("AKSHEXAMPLE", "secret");
        let answer = answer_challenge(body, &credentials).unwrap();
        let (body, _) = split_frame(&answer).unwrap().unwrap();
        let decoded = Authenticate::decode(body).unwrap();
        assert_eq!(decoded.nonce, [3; 32]);
        assert!(decoded.signature_matches("secret"));
        assert!(!decoded.signature_matches("other"));
        // A response frame where the challenge should be is a protocol error, named.
        assert!(matches!(
            answer_challenge(b"\0\0\0\0SHR2\0\0\0\0", &credentials),
            Err(ClientError::Protocol(_))
        ));
    }

    #[test]
    fn a_refusal_is_the_servers_error() {
        let refused = Authenticated {
            outcome: Err(("UnrecognizedClientException".to_string(), "no".to_string())),
        }
        .encode();
        let (body, _) = split_frame(&refused).unwrap().unwrap();
        assert_eq!(
            read_outcome(body).unwrap_err().exception_name(),
            Some("UnrecognizedClientException")
        );
        let accepted = Authenticated { outcome: Ok(()) }.encode();
        let (body, _) = split_frame(&accepted).unwrap().unwrap();
        read_outcome(body).unwrap();
    }
}
