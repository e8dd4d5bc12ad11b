//! TLS on the HTTP API against real sockets: a server with a self-signed certificate (rcgen)
//! and SigV4 verification on, a blocking rustls client that trusts that certificate, and
//! clients that get it wrong (plaintext HTTP, garbage, silence, a client trusting another CA).
//! None of them may crash or stall the server, and each is counted on /metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};
use shoal_http::tls::{crypto_provider, server_config};
use shoal_http::{Api, ApiError, Caller, HttpConfig, HttpServer, Operation, TlsConfigError};

const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2026-11-21T12:34:56Z, when botocore signed the request below (tests/sigv4.rs).
const SIGNED_AT_UNIX_SECONDS: u64 = 1_795_264_496;
/// Short, so the test of a silent client takes a moment; the server's default is 10 s.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(400);

/// Scrapes of /metrics before the test gives up waiting for the counts.
const METRICS_SCRAPES_MAX: usize = 40;

const PUT_ITEM_BODY: &str = "{\"TableName\": \"movies\", \"Item\": {\"year\": {\"N\": \"2001\"}, \"title\": {\"S\": \"Amélie\"}}}";
/// botocore's PutItem, signed for AKIDEXAMPLE at 2026-11-21T12:34:56Z (router/http/testdata).
const PUT_ITEM_HEAD: &str = "POST / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\nUser-Agent: Boto3/1.35.0 md/Botocore#1.35.0\r\nX-Amz-Date: 20261121T123456Z\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261121/us-east-1/dynamodb/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0d6b69e229c56724d7e10dcf53477882bcb54f719c5b88655ca321d54020c4d9\r\n";

struct Keys;

impl Api for Keys {
    async fn secret_key(&self, access_key_id: &str) -> Option<String> {
        (access_key_id == ACCESS_KEY_ID).then(|| SECRET.to_string())
    }

    async fn call(
        &self,
        caller: &Caller,
        operation: Operation,
        body: Json,
    ) -> Result<Json, ApiError> {
        let Caller::Key { access_key_id } = caller else {
            panic!("an unverified caller reached the API: {caller:?}");
        };
        Ok(json!({"caller": access_key_id, "operation": operation.name(), "body": body}))
    }
}

fn signing_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(SIGNED_AT_UNIX_SECONDS)
}

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM into `directory`.
fn self_signed(directory: &Path, name: &str) -> (PathBuf, PathBuf) {
    let pair =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let certificate = directory.join(format!("{name}.crt"));
    let key = directory.join(format!("{name}.key"));
    std::fs::write(&certificate, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    (certificate, key)
}

/// A TLS server with SigV4 on; it lives until the test process ends.
fn start_server(certificate: &Path, key: &Path) -> SocketAddr {
    let tls = server_config(certificate, key).unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .unwrap();
        executor.run(async move {
            let mut config = HttpConfig::new("127.0.0.1:0".parse().unwrap(), "test".into(), 5);
            config.clock = signing_time;
            config.tls = Some(tls);
            config.tls_handshake_timeout = HANDSHAKE_TIMEOUT;
            let server = HttpServer::new(config, Rc::new(Keys));
            sender.send(server.start().unwrap()).unwrap();
            loop {
                glommio::timer::sleep(Duration::from_secs(3600)).await;
            }
        });
    });
    receiver.recv_timeout(Duration::from_secs(10)).unwrap()
}

/// A client configuration that trusts exactly the certificates of `ca_path`.
fn client_config(ca_path: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in shoal_http::tls::read_certificates(ca_path, "CA bundle").unwrap() {
        roots.add(certificate).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends `request` over TLS to 127.0.0.1 (the name the certificate must carry) and reads the
/// whole reply (the request asks to close). The handshake's error, if it fails.
fn tls_exchange(
    address: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(config, name.to_owned()).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, connect(address));
    stream.write_all(request)?;
    stream.flush()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    Ok(reply)
}

fn parse_reply(reply: &[u8]) -> (u16, Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_length) = response.parse(reply).unwrap() else {
        panic!("incomplete response: {}", String::from_utf8_lossy(reply));
    };
    (response.code.unwrap(), reply[head_length..].to_vec())
}

fn signed_put_item() -> Vec<u8> {
    let mut bytes = format!(
        "{PUT_ITEM_HEAD}Content-Length: {}\r\nConnection: close\r\n\r\n",
        PUT_ITEM_BODY.len()
    )
    .into_bytes();
    bytes.extend_from_slice(PUT_ITEM_BODY.as_bytes());
    bytes
}

/// The signed request is served over TLS, and the port then refuses plaintext HTTP with an
/// answer that says why, garbage and silence with a closed connection, and a client that does
/// not trust the certificate fails its handshake: after each, TLS clients are still served.
#[test]
fn a_tls_port_serves_signed_requests_and_refuses_everything_else_cleanly() {
    let directory = tempfile::tempdir().unwrap();
    let (certificate, key) = self_signed(directory.path(), "server");
    let address = start_server(&certificate, &key);
    let trusting = client_config(&certificate);

    let reply = tls_exchange(address, trusting.clone(), &signed_put_item()).unwrap();
    let (status, body) = parse_reply(&reply);
    let body: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caller"], json!(ACCESS_KEY_ID));
    assert_eq!(body["operation"], json!("PutItem"));
    assert_eq!(body["body"]["TableName"], json!("movies"));

    // Plaintext HTTP on the TLS port: a 400 that says to use https, then the connection closes.
    let mut plain = connect(address);
    plain.write_all(&signed_put_item()).unwrap();
    let mut reply = Vec::new();
    plain.read_to_end(&mut reply).unwrap();
    let (status, body) = parse_reply(&reply);
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("TLS only"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // Bytes that are neither TLS nor HTTP: closed without an answer.
    let mut garbage = connect(address);
    garbage.write_all(&[0u8, 1, 2, 3, 0xff]).unwrap();
    let mut reply = Vec::new();
    let _ = garbage.read_to_end(&mut reply);
    assert!(reply.is_empty(), "{reply:?}");

    // A TLS record header followed by a malformed handshake: the handshake fails, the server
    // closes the connection.
    let mut broken = connect(address);
    broken
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00])
        .unwrap();
    let mut reply = Vec::new();
    let _ = broken.read_to_end(&mut reply);
    assert!(
        !reply.starts_with(b"HTTP"),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    // A client that connects and says nothing is dropped after the handshake timeout, not held.
    let mut silent = connect(address);
    let started = Instant::now();
    let mut reply = Vec::new();
    let _ = silent.read_to_end(&mut reply);
    assert!(reply.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= HANDSHAKE_TIMEOUT / 2 && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );

    // A client that connects and closes at once (a TCP health check) is counted apart.
    drop(connect(address));

    // A client that trusts another CA refuses our certificate: the error is the client's.
    let (other_certificate, _) = self_signed(directory.path(), "other");
    let error = tls_exchange(
        address,
        client_config(&other_certificate),
        &signed_put_item(),
    )
    .expect_err("a client trusting another CA must refuse the handshake");
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );

    // The server is still serving, and /metrics counted each failure. The last failure may
    // still be in flight on the server when the first scrape arrives: scrape a bounded number
    // of times.
    let expected: Vec<String> = [
        ("not_tls", 2),
        ("timed_out", 1),
        ("closed", 1),
        ("failed", 2),
    ]
    .iter()
    .map(|(reason, count)| {
        format!("shoal_http_tls_handshakes_failed_total{{reason=\"{reason}\"}} {count}")
    })
    .collect();
    let mut metrics = String::new();
    for _ in 0..METRICS_SCRAPES_MAX {
        let reply = tls_exchange(
            address,
            trusting.clone(),
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let (status, body) = parse_reply(&reply);
        assert_eq!(status, 200);
        metrics = String::from_utf8(body).unwrap();
        if expected.iter().all(|line| metrics.contains(line.as_str())) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("expected {expected:?} in:\n{metrics}");
}

#[test]
fn start_up_errors_name_the_file_and_the_fault() {
    let directory = tempfile::tempdir().unwrap();
    let (certificate, key) = self_signed(directory.path(), "server");
    let (_, other_key) = self_signed(directory.path(), "other");
    let missing = directory.path().join("missing.pem");
    let empty = directory.path().join("empty.pem");
    std::fs::write(&empty, "not a PEM file\n").unwrap();

    let error = server_config(&missing, &key).unwrap_err();
    assert!(
        matches!(
            error,
            TlsConfigError::Unreadable {
                what: "certificate",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("missing.pem"), "{error}");
    let error = server_config(&certificate, &missing).unwrap_err();
    assert!(
        matches!(
            error,
            TlsConfigError::Unreadable {
                what: "private key",
                ..
            }
        ),
        "{error}"
    );

    let error = server_config(&empty, &key).unwrap_err();
    assert!(
        matches!(error, TlsConfigError::NoCertificate { .. }),
        "{error}"
    );
    // The certificate given as the key: no private key in it.
    let error = server_config(&certificate, &certificate).unwrap_err();
    assert!(
        matches!(error, TlsConfigError::NoPrivateKey { .. }),
        "{error}"
    );

    let error = server_config(&certificate, &other_key).unwrap_err();
    assert!(
        matches!(error, TlsConfigError::KeyMismatch { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("does not belong to the certificate"),
        "{error}"
    );

    assert!(server_config(&certificate, &key).is_ok());
}
