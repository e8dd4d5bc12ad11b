//! Signature verification against real sockets: a server with `Authentication::SigV4`, a clock
//! fixed at the time botocore signed the requests below (router/http/testdata/sigv4_vectors.py
//! made them), and an API that knows one key and counts the calls that reach it. A refused
//! request must never reach the API (so it costs no capacity and touches no table).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};
use shoal_http::{Api, ApiError, Authentication, Caller, HttpConfig, HttpServer, Operation};

const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2026-11-21T12:34:56Z, when the vectors were signed.
const SIGNED_AT_UNIX_SECONDS: u64 = 1_795_264_496;

struct Keys {
    secret: &'static str,
    calls: Arc<AtomicUsize>,
}

impl Api for Keys {
    async fn secret_key(&self, access_key_id: &str) -> Option<String> {
        (access_key_id == ACCESS_KEY_ID).then(|| self.secret.to_string())
    }

    async fn call(
        &self,
        caller: &Caller,
        operation: Operation,
        body: Json,
    ) -> Result<Json, ApiError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let Caller::Key { access_key_id } = caller else {
            panic!("an unverified caller reached the API: {caller:?}");
        };
        Ok(json!({"caller": access_key_id, "operation": operation.name(), "body": body}))
    }
}

fn signing_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(SIGNED_AT_UNIX_SECONDS)
}

fn twenty_minutes_later() -> SystemTime {
    signing_time() + Duration::from_secs(20 * 60)
}

fn twenty_minutes_earlier() -> SystemTime {
    signing_time() - Duration::from_secs(20 * 60)
}

/// A server whose API knows `secret` for AKIDEXAMPLE; returns its address and call counter.
fn start_server(secret: &'static str, clock: fn() -> SystemTime) -> (SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (sender, receiver) = mpsc::channel();
    let api_calls = calls.clone();
    std::thread::spawn(move || {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .unwrap();
        executor.run(async move {
            let mut config = HttpConfig::new("127.0.0.1:0".parse().unwrap(), "test".into(), 3);
            config.clock = clock;
            assert_eq!(config.authentication, Authentication::SigV4, "the default");
            let keys = Keys {
                secret,
                calls: api_calls,
            };
            let server = HttpServer::new(config, Rc::new(keys));
            sender.send(server.start().unwrap()).unwrap();
            loop {
                glommio::timer::sleep(Duration::from_secs(3600)).await;
            }
        });
    });
    (
        receiver.recv_timeout(Duration::from_secs(10)).unwrap(),
        calls,
    )
}

/// Sends `head` (lines without the blank line) and `body`; returns the status and JSON body.
fn send(address: SocketAddr, head: &str, body: &[u8]) -> (u16, Json) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = format!(
        "{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_length) = response.parse(&reply).unwrap() else {
        panic!("incomplete response");
    };
    let status = response.code.unwrap();
    (
        status,
        serde_json::from_slice(&reply[head_length..]).unwrap(),
    )
}

const PUT_ITEM_BODY: &str = "{\"TableName\": \"movies\", \"Item\": {\"year\": {\"N\": \"2001\"}, \"title\": {\"S\": \"Amélie\"}}}";

/// botocore's PutItem, signed for AKIDEXAMPLE at 2026-11-21T12:34:56Z.
fn put_item_head(access_key_id: &str) -> String {
    format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\nUser-Agent: Boto3/1.35.0 md/Botocore#1.35.0\r\nX-Amz-Date: 20261121T123456Z\r\nAuthorization: AWS4-HMAC-SHA256 Credential={access_key_id}/20261121/us-east-1/dynamodb/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0d6b69e229c56724d7e10dcf53477882bcb54f719c5b88655ca321d54020c4d9\r\n"
    )
}

/// botocore's presigned DescribeTable (X-Amz-Expires 300).
const PRESIGNED_HEAD: &str = "POST /?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261121%2Fus-east-1%2Fdynamodb%2Faws4_request&X-Amz-Date=20261121T123456Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host%3Bx-amz-content-sha256%3Bx-amz-target&X-Amz-Signature=b1fd484847e653d4b14ef4d223f00ce8ea9fff52daea02b232a83da8cd5f7a42 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-Amz-Target: DynamoDB_20120810.DescribeTable\r\nX-Amz-Content-SHA256: 4f414a227c041b3da54396a57c35752f89391d202ced86ccf981ae0cf2b5622f\r\n";

fn error_type(body: &Json) -> &str {
    body["__type"].as_str().unwrap().rsplit('#').next().unwrap()
}

#[test]
fn a_request_signed_with_the_keys_secret_reaches_the_api_as_that_key() {
    let (address, calls) = start_server(SECRET, signing_time);
    let (status, body) = send(
        address,
        &put_item_head(ACCESS_KEY_ID),
        PUT_ITEM_BODY.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caller"], json!(ACCESS_KEY_ID));
    assert_eq!(body["operation"], json!("PutItem"));
    assert_eq!(body["body"]["TableName"], json!("movies"));
    let (status, body) = send(address, PRESIGNED_HEAD, br#"{"TableName": "movies"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["operation"], json!("DescribeTable"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn refused_requests_never_reach_the_api() {
    let (address, calls) = start_server(SECRET, signing_time);
    let refused = |head: &str, body: &[u8], expected_type: &str, expected_message: &str| {
        let (status, reply) = send(address, head, body);
        assert_eq!(status, 400, "{reply}");
        assert_eq!(error_type(&reply), expected_type, "{reply}");
        assert_eq!(reply["message"], json!(expected_message));
    };
    // The message DynamoDB gives an unknown access key (DynamoDB's answer quoted in
    // jcabi/jcabi-dynamo issue 101 and yegor256/s3auth issue 237, status 400).
    refused(
        &put_item_head("AKIDUNKNOWN"),
        PUT_ITEM_BODY.as_bytes(),
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    );
    // The body was changed after signing.
    refused(
        &put_item_head(ACCESS_KEY_ID),
        PUT_ITEM_BODY.replace("2001", "2002").as_bytes(),
        "InvalidSignatureException",
        shoal_http::sigv4::SIGNATURE_MISMATCH,
    );
    // The operation was changed after signing.
    refused(
        &put_item_head(ACCESS_KEY_ID).replace("PutItem", "DeleteTable"),
        PUT_ITEM_BODY.as_bytes(),
        "InvalidSignatureException",
        shoal_http::sigv4::SIGNATURE_MISMATCH,
    );
    refused(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n",
        b"{}",
        "MissingAuthenticationTokenException",
        "Request is missing Authentication Token",
    );
    // A presigned request whose signature was edited.
    refused(
        &PRESIGNED_HEAD.replace("X-Amz-Signature=b1fd", "X-Amz-Signature=b1fe"),
        br#"{"TableName": "movies"}"#,
        "InvalidSignatureException",
        shoal_http::sigv4::SIGNATURE_MISMATCH,
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // /metrics counts them, and says signatures are verified.
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut metrics = String::new();
    stream.read_to_string(&mut metrics).unwrap();
    assert!(
        metrics.contains("\nshoal_http_signatures_verified 1\n"),
        "{metrics}"
    );
    for (exception, count) in [
        ("InvalidSignatureException", 3),
        ("UnrecognizedClientException", 1),
        ("MissingAuthenticationTokenException", 1),
        ("IncompleteSignatureException", 0),
    ] {
        let line = format!(
            "shoal_http_authentication_refused_total{{exception=\"{exception}\"}} {count}\n"
        );
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

#[test]
fn a_wrong_secret_is_an_invalid_signature() {
    let (address, calls) = start_server("another secret", signing_time);
    let (status, body) = send(
        address,
        &put_item_head(ACCESS_KEY_ID),
        PUT_ITEM_BODY.as_bytes(),
    );
    assert_eq!(status, 400);
    assert_eq!(error_type(&body), "InvalidSignatureException");
    assert_eq!(
        body["message"],
        json!(shoal_http::sigv4::SIGNATURE_MISMATCH)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn signatures_older_or_newer_than_fifteen_minutes_are_refused() {
    let (address, calls) = start_server(SECRET, twenty_minutes_later);
    let (status, body) = send(
        address,
        &put_item_head(ACCESS_KEY_ID),
        PUT_ITEM_BODY.as_bytes(),
    );
    assert_eq!(status, 400);
    assert_eq!(error_type(&body), "InvalidSignatureException");
    assert_eq!(
        body["message"],
        json!(
            "Signature expired: 20261121T123456Z is now earlier than 20261121T123956Z (20261121T125456Z - 15 min.)"
        )
    );
    // The presigned request expired after 300 s anyway.
    let (_, body) = send(address, PRESIGNED_HEAD, br#"{"TableName": "movies"}"#);
    assert_eq!(error_type(&body), "InvalidSignatureException");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let (address, calls) = start_server(SECRET, twenty_minutes_earlier);
    let (status, body) = send(
        address,
        &put_item_head(ACCESS_KEY_ID),
        PUT_ITEM_BODY.as_bytes(),
    );
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        json!(
            "Signature not yet current: 20261121T123456Z is still later than 20261121T122956Z (20261121T121456Z + 15 min.)"
        )
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
