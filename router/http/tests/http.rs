//! The HTTP layer against real sockets: an executor thread serves an API that echoes what it
//! was called with, and plain std clients send well-formed and malformed requests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value as Json, json};
use shoal_http::{Api, ApiError, Authentication, Caller, HttpConfig, HttpServer, Operation};

const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKID/20261121/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-target, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Echoes the operation and body; `{"fail": name}` answers that error. Signatures are not
/// verified here (tests/sigv4.rs verifies them).
struct Echo;

impl Api for Echo {
    async fn secret_key(&self, _access_key_id: &str) -> Option<String> {
        None
    }

    async fn call(
        &self,
        caller: &Caller,
        operation: Operation,
        body: Json,
    ) -> Result<Json, ApiError> {
        assert_eq!(caller, &Caller::Anyone);
        if let Some(name) = body.get("fail").and_then(Json::as_str) {
            return Err(ApiError::new(name, "asked to fail"));
        }
        Ok(json!({"operation": operation.name(), "body": body}))
    }
}

/// Starts a server on its own executor thread; it lives until the test process ends.
fn start_server() -> SocketAddr {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .unwrap();
        executor.run(async move {
            let mut config = HttpConfig::new("127.0.0.1:0".parse().unwrap(), "test:8000".into(), 7);
            config.request_read_timeout = Duration::from_millis(500);
            config.idle_timeout = Duration::from_secs(2);
            config.authentication = Authentication::Off;
            let server = HttpServer::new(config, Rc::new(Echo));
            sender.send(server.start().unwrap()).unwrap();
            // Serve until the process ends.
            loop {
                glommio::timer::sleep(Duration::from_secs(3600)).await;
            }
        });
    });
    receiver.recv_timeout(Duration::from_secs(10)).unwrap()
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Reads one response (Content-Length framed) from the stream.
fn read_reply(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Reply {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = response.parse(pending) {
            let status = response.code.unwrap();
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|header| {
                    (
                        header.name.to_string(),
                        String::from_utf8_lossy(header.value).into_owned(),
                    )
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
                .map(|(_, value)| value.parse().unwrap())
                .unwrap();
            while pending.len() < head + length {
                let mut chunk = [0u8; 4096];
                let read = stream.read(&mut chunk).unwrap();
                assert!(read > 0, "connection closed mid-response");
                pending.extend_from_slice(&chunk[..read]);
            }
            let body = pending[head..head + length].to_vec();
            pending.drain(..head + length);
            return Reply {
                status,
                headers,
                body,
            };
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "connection closed before a response");
        pending.extend_from_slice(&chunk[..read]);
    }
}

fn request_bytes(target: &str, body: &[u8], extra: &str) -> Vec<u8> {
    let mut bytes = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: {target}\r\nX-Amz-Date: 20261121T000000Z\r\nAuthorization: {AUTHORIZATION}\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn roundtrip(address: SocketAddr, bytes: &[u8]) -> Reply {
    let mut stream = connect(address);
    stream.write_all(bytes).unwrap();
    read_reply(&mut stream, &mut Vec::new())
}

#[test]
fn operations_reach_the_api_with_dynamodb_headers() {
    let address = start_server();
    let reply = roundtrip(
        address,
        &request_bytes("DynamoDB_20120810.PutItem", br#"{"TableName":"t"}"#, ""),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"operation": "PutItem", "body": {"TableName": "t"}})
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/x-amz-json-1.0")
    );
    assert_eq!(
        reply.header("x-amz-crc32"),
        Some(crc32fast::hash(&reply.body).to_string().as_str())
    );
    let request_id = reply.header("x-amzn-requestid").unwrap();
    assert_eq!(request_id.len(), 52);
}

#[test]
fn errors_carry_dynamodb_types_and_statuses() {
    let address = start_server();
    let unknown = roundtrip(
        address,
        &request_bytes("DynamoDB_20120810.Frobnicate", b"{}", ""),
    );
    assert_eq!(unknown.status, 400);
    assert_eq!(
        unknown.json()["__type"],
        json!("com.amazon.coral.service#UnknownOperationException")
    );
    let bad_json = roundtrip(
        address,
        &request_bytes("DynamoDB_20120810.GetItem", b"{not json", ""),
    );
    assert_eq!(
        bad_json.json()["__type"],
        json!("com.amazon.coral.service#SerializationException")
    );
    let failing = roundtrip(
        address,
        &request_bytes(
            "DynamoDB_20120810.GetItem",
            br#"{"fail":"InternalServerError"}"#,
            "",
        ),
    );
    assert_eq!(failing.status, 500);
    let missing_auth = roundtrip(
        address,
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert_eq!(missing_auth.status, 400);
    assert_eq!(
        missing_auth.json()["__type"],
        json!("com.amazon.coral.service#MissingAuthenticationTokenException")
    );
}

#[test]
fn health_check_answers_get_slash() {
    let address = start_server();
    let reply = roundtrip(address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"healthy: test:8000");
    // With authentication off, /metrics says so (an operator must be able to see it).
    let metrics = roundtrip(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains("\nshoal_http_signatures_verified 0\n"),
        "{text}"
    );
}

#[test]
fn keep_alive_answers_pipelined_requests_in_order() {
    let address = start_server();
    let mut stream = connect(address);
    let mut bytes = request_bytes("DynamoDB_20120810.GetItem", br#"{"n":1}"#, "");
    bytes.extend(request_bytes("DynamoDB_20120810.Query", br#"{"n":2}"#, ""));
    stream.write_all(&bytes).unwrap();
    let mut pending = Vec::new();
    let first = read_reply(&mut stream, &mut pending);
    let second = read_reply(&mut stream, &mut pending);
    assert_eq!(first.json()["operation"], json!("GetItem"));
    assert_eq!(second.json()["operation"], json!("Query"));
    // And the connection still serves.
    stream
        .write_all(&request_bytes("DynamoDB_20120810.Scan", b"{}", ""))
        .unwrap();
    assert_eq!(
        read_reply(&mut stream, &mut pending).json()["operation"],
        json!("Scan")
    );
}

#[test]
fn compressed_requests_and_responses() {
    let address = start_server();
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4000));
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body.as_bytes()).unwrap();
    let compressed = encoder.finish().unwrap();
    let reply = roundtrip(
        address,
        &request_bytes(
            "DynamoDB_20120810.PutItem",
            &compressed,
            "Content-Encoding: gzip\r\nAccept-Encoding: gzip\r\n",
        ),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    assert_eq!(
        reply.header("x-amz-crc32"),
        Some(crc32fast::hash(&reply.body).to_string().as_str()),
        "the checksum covers the bytes sent"
    );
    let mut inflated = String::new();
    flate2::read::GzDecoder::new(&reply.body[..])
        .read_to_string(&mut inflated)
        .unwrap();
    let json: Json = serde_json::from_str(&inflated).unwrap();
    assert_eq!(json["body"]["pad"].as_str().unwrap().len(), 4000);
}

#[test]
fn limits_are_enforced() {
    let address = start_server();
    // A body past 16 MB is refused from its Content-Length, before it is read.
    let reply = roundtrip(
        address,
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\nAuthorization: {AUTHORIZATION}\r\nContent-Length: 99999999\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["__type"],
        json!("com.amazon.coral.validate#ValidationException")
    );
    // A head past 16 KiB.
    let reply = roundtrip(
        address,
        format!("POST / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000)).as_bytes(),
    );
    assert_eq!(reply.status, 431);
    // Garbage.
    let reply = roundtrip(address, b"\x00\x01\x02 nonsense\r\n\r\n");
    assert_eq!(reply.status, 400);
    // Chunked bodies.
    let reply = roundtrip(
        address,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(reply.status, 411);
    // A slow client: half a request, then silence past the read timeout.
    let mut stream = connect(address);
    stream.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let reply = read_reply(&mut stream, &mut Vec::new());
    assert_eq!(reply.status, 408);
    let mut rest = Vec::new();
    assert_eq!(
        stream.read_to_end(&mut rest).unwrap(),
        0,
        "the connection is closed"
    );
}
