//! The HTTP layer against real sockets: an executor thread serves an API that echoes what it
//! was called with, and plain std clients send well-formed and malformed requests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use serde_json::{Value as Json, json};
use shoal_http::protocol::BODY_BYTES_MAX;
use shoal_http::{Api, ApiError, Authentication, Caller, HttpConfig, HttpServer, Operation};

const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKID/20261121/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-target, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Echoes the operation and body; `{"fail": name}` answers that error. Signatures are not
/// verified here (tests/sigv4.rs verifies them). Counts the calls that reach it.
struct Echo {
    calls: Arc<AtomicUsize>,
}

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
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(name) = body.get("fail").and_then(Json::as_str) {
            return Err(ApiError::new(name, "asked to fail"));
        }
        Ok(json!({"operation": operation.name(), "body": body}))
    }
}

/// Starts a server on its own executor thread; it lives until the test process ends.
fn start_server() -> SocketAddr {
    start_counting_server().0
}

/// [`start_server`], with the count of calls that reached its [`Api`].
fn start_counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let api_calls = calls.clone();
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
            let server = HttpServer::new(config, Rc::new(Echo { calls: api_calls }));
            sender.send(server.start().unwrap()).unwrap();
            // Serve until the process ends.
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
    // A body past 16 MB is refused from its Content-Length, before it is read: 413 with an
    // empty body, as DynamoDB answers (see server.rs).
    let reply = roundtrip(
        address,
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\nAuthorization: {AUTHORIZATION}\r\nContent-Length: 99999999\r\nOrigin: http://app.example\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(reply.status, 413);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    // A head past 16 KiB, in a header or in the request line: 400, as DynamoDB answers.
    let reply = roundtrip(
        address,
        format!("POST / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000)).as_bytes(),
    );
    assert_eq!(reply.status, 400);
    let reply = roundtrip(
        address,
        format!("POST /{} HTTP/1.1\r\nHost: x\r\n\r\n", "x".repeat(17_000)).as_bytes(),
    );
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body, b"request head too large\n");
    // Garbage.
    let reply = roundtrip(address, b"\x00\x01\x02 nonsense\r\n\r\n");
    assert_eq!(reply.status, 400);
    // Framing that cannot be trusted: both lengths, an unknown transfer coding, bad chunks.
    let reply = roundtrip(
        address,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(reply.status, 400);
    let reply = roundtrip(
        address,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    );
    assert_eq!(reply.status, 501);
    let reply = roundtrip(
        address,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    assert_eq!(reply.status, 400);
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

/// The chunked form of `body`, in chunks of `chunk_bytes`.
fn chunked(body: &[u8], chunk_bytes: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for chunk in body.chunks(chunk_bytes) {
        bytes.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
        bytes.extend_from_slice(chunk);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    bytes
}

fn chunked_request(target: &str, body: &[u8], chunk_bytes: usize) -> Vec<u8> {
    let mut bytes = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: {target}\r\nX-Amz-Date: 20261121T000000Z\r\nAuthorization: {AUTHORIZATION}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    bytes.extend(chunked(body, chunk_bytes));
    bytes
}

#[test]
fn chunked_bodies_are_read_and_held_to_the_limit() {
    let address = start_server();
    // DynamoDB takes chunked bodies; so does the server, pipelined requests after them too.
    let mut stream = connect(address);
    let mut bytes = chunked_request(
        "DynamoDB_20120810.PutItem",
        br#"{"TableName":"chunked"}"#,
        5,
    );
    bytes.extend(request_bytes(
        "DynamoDB_20120810.GetItem",
        br#"{"n":2}"#,
        "",
    ));
    stream.write_all(&bytes).unwrap();
    let mut pending = Vec::new();
    let first = read_reply(&mut stream, &mut pending);
    assert_eq!(first.status, 200);
    assert_eq!(
        first.json(),
        json!({"operation": "PutItem", "body": {"TableName": "chunked"}})
    );
    assert_eq!(
        read_reply(&mut stream, &mut pending).json()["operation"],
        json!("GetItem")
    );
    // Past 16 MB in chunks: 413, and the client that keeps sending still reads it, since the
    // server reads the rest of the body before closing.
    let mut stream = connect(address);
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let body = vec![b' '; BODY_BYTES_MAX + 1024 * 1024];
            // The server may close once it has read enough; an error here is fine.
            let _ = stream.write_all(&chunked_request(
                "DynamoDB_20120810.PutItem",
                &body,
                1 << 20,
            ));
        })
    };
    let reply = read_reply(&mut stream, &mut Vec::new());
    assert_eq!(reply.status, 413);
    writer.join().unwrap();
}

#[test]
fn an_oversized_content_length_body_is_drained_so_its_413_is_read() {
    let address = start_server();
    let mut stream = connect(address);
    let body = vec![b' '; BODY_BYTES_MAX + 7];
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            stream
                .write_all(&request_bytes("DynamoDB_20120810.PutItem", &body, ""))
                .is_ok()
        })
    };
    let reply = read_reply(&mut stream, &mut Vec::new());
    assert_eq!(reply.status, 413);
    assert!(
        writer.join().unwrap(),
        "the whole body was taken, not reset mid-way"
    );
}

const CORS_EXPOSED: &str = "x-amzn-RequestId,x-amzn-ErrorType,x-amzn-ErrorMessage,Date";

#[test]
fn cors_preflight_is_answered_without_a_signature_or_an_api_call() {
    let (address, calls) = start_counting_server();
    // What a browser sends before a cross-origin DynamoDB call: no Authorization, any path.
    for path in ["/", "/any/path?x=1"] {
        let reply = roundtrip(
            address,
            format!(
                "OPTIONS {path} HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-amz-target,authorization,x-amz-date,amz-sdk-invocation-id\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(reply.status, 200);
        assert!(reply.body.is_empty());
        assert_eq!(reply.header("content-length"), Some("0"));
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        assert_eq!(reply.header("access-control-allow-methods"), Some("POST"));
        assert_eq!(
            reply.header("access-control-allow-headers"),
            Some("content-type,x-amz-target,authorization,x-amz-date,amz-sdk-invocation-id")
        );
        assert_eq!(
            reply.header("access-control-expose-headers"),
            Some(CORS_EXPOSED)
        );
        assert_eq!(reply.header("access-control-max-age"), Some("172800"));
        assert_eq!(reply.header("x-amzn-requestid").unwrap().len(), 52);
        assert_eq!(reply.header("x-amz-crc32"), None);
    }
    // Nothing requested, nothing echoed.
    let reply = roundtrip(
        address,
        b"OPTIONS / HTTP/1.1\r\nHost: x\r\nOrigin: null\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-methods"), None);
    assert_eq!(reply.header("access-control-allow-headers"), None);
    assert_eq!(reply.header("access-control-max-age"), Some("172800"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a preflight never reaches the Api"
    );
    // OPTIONS without an Origin is no preflight: no CORS headers.
    let reply = roundtrip(address, b"OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("access-control-allow-origin"), None);
}

#[test]
fn cross_origin_requests_get_allow_origin_and_expose_headers() {
    let address = start_server();
    let origin = "Origin: https://app.example\r\n";
    let ok = roundtrip(
        address,
        &request_bytes("DynamoDB_20120810.GetItem", br#"{"n":1}"#, origin),
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        ok.header("access-control-expose-headers"),
        Some(CORS_EXPOSED)
    );
    // Only a preflight carries the max age and the allowed methods and headers.
    assert_eq!(ok.header("access-control-max-age"), None);
    assert_eq!(ok.header("access-control-allow-methods"), None);
    // Errors too, authentication errors included: the request is still checked as always.
    let unknown = roundtrip(
        address,
        &request_bytes("DynamoDB_20120810.Frobnicate", b"{}", origin),
    );
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.header("access-control-allow-origin"), Some("*"));
    let unsigned = roundtrip(
        address,
        format!("POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n{origin}Content-Length: 2\r\n\r\n{{}}").as_bytes(),
    );
    assert_eq!(
        unsigned.json()["__type"],
        json!("com.amazon.coral.service#MissingAuthenticationTokenException")
    );
    assert_eq!(unsigned.header("access-control-allow-origin"), Some("*"));
    let health = roundtrip(
        address,
        format!("GET / HTTP/1.1\r\nHost: x\r\n{origin}\r\n").as_bytes(),
    );
    assert_eq!(health.header("access-control-allow-origin"), Some("*"));
    // Without an Origin, none of it.
    let plain = roundtrip(
        address,
        &request_bytes("DynamoDB_20120810.GetItem", b"{}", ""),
    );
    assert_eq!(plain.header("access-control-allow-origin"), None);
    assert_eq!(plain.header("access-control-expose-headers"), None);
}

fn gzip_bytes(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn compressed_bodies_are_refused_as_dynamodb_refuses_them() {
    let (address, calls) = start_counting_server();
    let body = br#"{"TableName":"t"}"#;
    // Two gzip members make one body (DynamoDB accepts it).
    let mut doubled = gzip_bytes(&body[..5]);
    doubled.extend(gzip_bytes(&body[5..]));
    let reply = roundtrip(
        address,
        &request_bytes(
            "DynamoDB_20120810.PutItem",
            &doubled,
            "Content-Encoding: gzip\r\n",
        ),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body"], json!({"TableName": "t"}));
    let calls_before = calls.load(Ordering::SeqCst);
    // Garbage, truncated, empty, junk after the end, an unknown coding: InternalServerError.
    let mut truncated = gzip_bytes(body);
    truncated.pop();
    let mut junk = gzip_bytes(body);
    junk.extend_from_slice(b"junk");
    for (encoding, bytes) in [
        ("gzip", body.to_vec()),
        ("gzip", truncated),
        ("gzip", Vec::new()),
        ("gzip", junk),
        ("deflate", b"garbage".to_vec()),
        ("garbage", body.to_vec()),
    ] {
        let reply = roundtrip(
            address,
            &request_bytes(
                "DynamoDB_20120810.PutItem",
                &bytes,
                &format!("Content-Encoding: {encoding}\r\n"),
            ),
        );
        assert_eq!(reply.status, 500, "{encoding} {bytes:?}");
        assert_eq!(
            reply.json()["__type"],
            json!("com.amazonaws.dynamodb.v20120810#InternalServerError")
        );
    }
    // A gzip bomb: refused for its inflated size, 413 like any body past the limit.
    let bomb = gzip_bytes(&vec![b' '; BODY_BYTES_MAX + 1]);
    let reply = roundtrip(
        address,
        &request_bytes(
            "DynamoDB_20120810.PutItem",
            &bomb,
            "Content-Encoding: gzip\r\n",
        ),
    );
    assert_eq!(reply.status, 413);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        calls_before,
        "none reached the Api"
    );
}
