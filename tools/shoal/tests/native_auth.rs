//! Authentication on the native protocol end to end (net/protocol/FORMAT.md,
//! "Authentication"): `shoal dev --auth` (three nodes and a router that verifies keys), keys
//! made with `shoal auth create-key`, then: the blocking and glommio clients with a valid key;
//! a wrong secret, an unknown key, an expired timestamp, a handshake replayed on another
//! connection or sent without a challenge, and requests before the handshake, each refused
//! with its precise error; a read-only key that cannot write through the native port; a key
//! revoked while its connection is open; a connection that never authenticates, closed at the
//! timeout; the CLI reading the key from the AWS variables; the refusals on the router's
//! /metrics. One cluster,
//! under a watchdog that fails loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::{LocalExecutorBuilder, Placement};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};
use shoal_client::{AsyncClient, Client, ClientConfig, ClientError, Credentials};
use shoal_protocol::handshake::{Authenticate, Authenticated, Challenge, encode_hello};
use shoal_protocol::{Operation, decode_response, encode_request, read_frame};

const WATCHDOG: Duration = Duration::from_secs(180);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Ports `shoal dev --port P` uses with three nodes of one shard (tests/native_client.rs).
const DEV_PORT_OFFSETS: [u16; 8] = [0, 1, 100, 199, 200, 299, 300, 399];
/// How far back the expired handshake is signed: well past the 15-minute window.
const EXPIRED_BY: Duration = Duration::from_secs(3600);

struct DevCluster {
    _directory: tempfile::TempDir,
    child: Arc<Mutex<Child>>,
    port: u16,
    native: SocketAddr,
    done: Arc<AtomicBool>,
}

fn stop(child: &Mutex<Child>) {
    let mut child = child
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl DevCluster {
    fn start() -> DevCluster {
        let directory = tempfile::tempdir().unwrap();
        let port = common::free_port_layouts(1, &DEV_PORT_OFFSETS)[0];
        let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("dev")
            .arg("--auth")
            .arg(format!("--port={port}"))
            .arg(format!(
                "--data-dir={}",
                directory.path().join("data").display()
            ))
            .env("SHOAL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start shoal dev");
        let child = Arc::new(Mutex::new(child));
        let done = {
            let child = child.clone();
            common::watchdog(WATCHDOG, "native authentication test", move || stop(&child))
        };
        DevCluster {
            _directory: directory,
            child,
            port,
            native: SocketAddr::from(([127, 0, 0, 1], port + 1)),
            done,
        }
    }

    /// `shoal auth create-key` against this cluster's nodes (it waits for the metadata group);
    /// the key as its `export` lines give it.
    fn create_key(&self, arguments: &[&str]) -> Credentials {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
        command.args(["auth", "create-key"]).args(arguments);
        for node in 1..=3u16 {
            command.arg(format!(
                "--node={node}=127.0.0.1:{}",
                self.port + 100 * node
            ));
        }
        let output = command.env("SHOAL_LOG", "warn").output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let variable = |name: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("no {name} in {stdout}"))
                .to_string()
        };
        Credentials::new(
            variable("AWS_ACCESS_KEY_ID"),
            variable("AWS_SECRET_ACCESS_KEY"),
        )
    }

    fn config(&self, credentials: Option<Credentials>) -> ClientConfig {
        let mut config = ClientConfig::new(self.native);
        config.connections = 1;
        config.seed = 13;
        config.request_timeout = Duration::from_secs(10);
        config.credentials = credentials;
        config
    }

    /// Waits until the router serves this key on its native port.
    fn wait_until_served(&self, credentials: &Credentials) -> Client {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(client) = Client::connect(self.config(Some(credentials.clone())))
                && client.list_tables(&json!({})).is_ok()
            {
                return client;
            }
            assert!(Instant::now() < deadline, "the router did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn shoal(&self, arguments: &[&str], credentials: Option<&Credentials>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
        command
            .args(arguments)
            .arg(format!("--endpoint={}", self.native))
            .env("SHOAL_LOG", "warn")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        if let Some(credentials) = credentials {
            command
                .env("AWS_ACCESS_KEY_ID", &credentials.access_key_id)
                .env("AWS_SECRET_ACCESS_KEY", &credentials.secret_access_key);
        }
        command.output().unwrap()
    }

    /// The router's /metrics (Prometheus text), over a plain HTTP GET.
    fn router_metrics(&self) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: shoal\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        stop(&self.child);
        self.done.store(true, Ordering::SeqCst);
    }
}

/// A raw connection to the native port, speaking frames by hand: what a hostile or broken
/// client does.
struct Raw {
    stream: TcpStream,
}

impl Raw {
    fn connect(address: SocketAddr) -> Raw {
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw { stream }
    }

    fn send(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).unwrap();
    }

    fn receive(&mut self) -> Vec<u8> {
        read_frame(&mut self.stream).unwrap()
    }

    fn challenge(&mut self) -> Challenge {
        self.send(&encode_hello());
        Challenge::decode(&self.receive()).unwrap()
    }

    fn outcome(&mut self) -> Result<(), (String, String)> {
        Authenticated::decode(&self.receive()).unwrap().outcome
    }

    /// After a refusal the router closes the connection.
    fn assert_closed(&mut self) {
        let mut byte = [0u8; 1];
        let read = self.stream.read(&mut byte);
        assert!(
            matches!(read, Ok(0)) || read.is_err(),
            "the connection stayed open: {read:?}"
        );
    }

    fn list_tables(&mut self, request_id: u64) -> Result<Json, (String, String)> {
        self.send(&encode_request(request_id, Operation::ListTables, &json!({})).unwrap());
        let response = decode_response(&self.receive()).unwrap();
        assert_eq!(response.request_id, request_id);
        response
            .outcome
            .unwrap()
            .map_err(|error| (error.type_name, error.message))
    }
}

fn unix_seconds_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn service_error(error: ClientError) -> (String, String) {
    match error {
        ClientError::Service {
            type_name, message, ..
        } => (type_name, message),
        other => panic!("expected the router's error, got {other:?}"),
    }
}

fn counter(metrics: &str, sample: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in {metrics}"))
}

#[test]
fn native_connections_authenticate_with_the_clusters_keys() {
    let cluster = DevCluster::start();
    let admin = cluster.create_key(&["--role=admin"]);
    let client = cluster.wait_until_served(&admin);
    // Opened now and never authenticated: the router closes it after its timeout (checked at
    // the end, so the wait overlaps the rest of the test).
    let mut idle = Raw::connect(cluster.native);

    // A valid key works: the control plane and items through the native port.
    let created = client
        .create_table(&json!({
            "TableName": "films",
            "AttributeDefinitions": [{"AttributeName": "title", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "title", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        }))
        .unwrap();
    assert_eq!(created["TableDescription"]["TableStatus"], "ACTIVE");
    let item = json!({"title": {"S": "Amélie"}, "year": {"N": "2001"}});
    client
        .put_item(&json!({"TableName": "films", "Item": item}))
        .unwrap();
    let key = json!({"title": {"S": "Amélie"}});
    let got = client
        .get_item(&json!({"TableName": "films", "Key": key, "ConsistentRead": true}))
        .unwrap();
    assert_eq!(got["Item"], item);

    // No key: every request is answered MissingAuthenticationTokenException, and the client
    // does not retry it.
    let anonymous = Client::connect(cluster.config(None)).unwrap();
    let (type_name, message) = service_error(anonymous.list_tables(&json!({})).unwrap_err());
    assert_eq!(type_name, "MissingAuthenticationTokenException");
    assert!(
        message.starts_with("This connection is not authenticated"),
        "{message}"
    );
    // Closed now: only `idle` is left to time out.
    drop(anonymous);

    // A wrong secret: DynamoDB's signature mismatch, at connect.
    let wrong_secret = Credentials::new(admin.access_key_id.clone(), "not the secret");
    let (type_name, message) = service_error(
        Client::connect(cluster.config(Some(wrong_secret)))
            .err()
            .unwrap(),
    );
    assert_eq!(type_name, "InvalidSignatureException");
    assert!(
        message.starts_with("The request signature we calculated does not match"),
        "{message}"
    );

    // An unknown key.
    let unknown = Credentials::new("AKSHUNKNOWNUNKNOWN00", admin.secret_access_key.clone());
    let (type_name, message) = service_error(
        Client::connect(cluster.config(Some(unknown)))
            .err()
            .unwrap(),
    );
    assert_eq!(type_name, "UnrecognizedClientException");
    assert_eq!(
        message,
        "The security token included in the request is invalid."
    );

    // An expired timestamp, with SigV4's text; the connection is closed after it.
    let mut raw = Raw::connect(cluster.native);
    let challenge = raw.challenge();
    let signed_at = unix_seconds_now() - EXPIRED_BY.as_secs();
    let answer = Authenticate::sign(
        &challenge,
        &admin.access_key_id,
        &admin.secret_access_key,
        signed_at,
    )
    .unwrap();
    raw.send(&answer.encode());
    let (type_name, message) = raw.outcome().unwrap_err();
    assert_eq!(type_name, "InvalidSignatureException");
    assert!(message.starts_with("Signature expired: "), "{message}");
    assert!(message.ends_with(" - 15 min.)"), "{message}");
    raw.assert_closed();

    // A request before the handshake is refused and the connection stays; the same connection
    // then authenticates and is served.
    let mut first = Raw::connect(cluster.native);
    let (type_name, _) = first.list_tables(7).unwrap_err();
    assert_eq!(type_name, "MissingAuthenticationTokenException");
    let challenge = first.challenge();
    assert!(challenge.verifies);
    let recorded = Authenticate::sign(
        &challenge,
        &admin.access_key_id,
        &admin.secret_access_key,
        unix_seconds_now(),
    )
    .unwrap()
    .encode();
    first.send(&recorded);
    first.outcome().unwrap();
    let tables = first.list_tables(8).unwrap();
    assert_eq!(tables["TableNames"], json!(["films"]));

    // That handshake replayed on another connection (after its own Hello) is refused: it
    // answers the first connection's challenge.
    let mut replay = Raw::connect(cluster.native);
    let other = replay.challenge();
    assert_ne!(other.nonce, challenge.nonce);
    replay.send(&recorded);
    let (type_name, message) = replay.outcome().unwrap_err();
    assert_eq!(type_name, "InvalidSignatureException");
    assert!(message.contains("replayed"), "{message}");
    replay.assert_closed();
    // And without a Hello, there is no challenge to answer.
    let mut unasked = Raw::connect(cluster.native);
    unasked.send(&recorded);
    let (type_name, message) = unasked.outcome().unwrap_err();
    assert_eq!(type_name, "InvalidSignatureException");
    assert!(message.starts_with("No challenge was sent"), "{message}");
    unasked.assert_closed();

    // A read-only key reads and cannot write, with IAM's message; a key limited to other
    // tables cannot even read this one.
    let reader = cluster.create_key(&["--role=read-only"]);
    let read_only = cluster.wait_until_served(&reader);
    let got = read_only
        .get_item(&json!({"TableName": "films", "Key": key, "ConsistentRead": true}))
        .unwrap();
    assert_eq!(got["Item"], item);
    let denied = read_only
        .put_item(&json!({"TableName": "films", "Item": {"title": {"S": "Heat"}}}))
        .unwrap_err();
    let (type_name, message) = service_error(denied);
    assert_eq!(type_name, "AccessDeniedException");
    assert!(
        message.contains(&format!(
            "user/{} is not authorized to perform: dynamodb:PutItem on resource: arn:aws:dynamodb:us-east-1:000000000000:table/films",
            reader.access_key_id
        )),
        "{message}"
    );
    let limited = cluster.create_key(&["--role=read-write", "--tables=books"]);
    let limited_client = Client::connect(cluster.config(Some(limited))).unwrap();
    let (type_name, _) = service_error(
        limited_client
            .get_item(&json!({"TableName": "films", "Key": key}))
            .unwrap_err(),
    );
    assert_eq!(type_name, "AccessDeniedException");
    // Nothing was written by the refused request.
    let scanned = client
        .scan(&json!({"TableName": "films", "Select": "COUNT", "ConsistentRead": true}))
        .unwrap();
    assert_eq!(scanned["Count"], 1);

    // The glommio client authenticates the same way.
    let config = cluster.config(Some(admin.clone()));
    let listed = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .unwrap()
        .run(async move {
            let client = AsyncClient::connect(config).await?;
            client.list_tables(&json!({})).await
        })
        .unwrap();
    assert_eq!(listed["TableNames"], json!(["films"]));

    // The CLI takes the key from the AWS variables, and says what is missing without them.
    let output = cluster.shoal(&["table", "list"], Some(&admin));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "films");
    let output = cluster.shoal(&["table", "list"], None);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("MissingAuthenticationTokenException")
            && stderr.contains("AWS_ACCESS_KEY_ID"),
        "{stderr}"
    );

    // A revoked key stops working on a connection that authenticated before: routers read
    // the keys again within seconds, and each request is authorised on the keys read last.
    let revoked = cluster.create_key(&["--role=read-only"]);
    let doomed = cluster.wait_until_served(&revoked);
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command.args(["auth", "revoke-key", &revoked.access_key_id]);
    for node in 1..=3u16 {
        command.arg(format!(
            "--node={node}=127.0.0.1:{}",
            cluster.port + 100 * node
        ));
    }
    let output = command.env("SHOAL_LOG", "warn").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match doomed.list_tables(&json!({})) {
            Ok(_) => {
                assert!(Instant::now() < deadline, "the revoked key still works");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => {
                let (type_name, _) = service_error(error);
                assert_eq!(type_name, "UnrecognizedClientException");
                break;
            }
        }
    }

    // The connection that never authenticated was closed at the router's timeout.
    idle.assert_closed();

    // Every refusal above is counted on the router's /metrics.
    let metrics = cluster.router_metrics();
    assert_eq!(counter(&metrics, "shoal_native_keys_verified "), 1);
    for exception in [
        "MissingAuthenticationTokenException",
        "InvalidSignatureException",
        "UnrecognizedClientException",
    ] {
        let sample =
            format!("shoal_native_authentication_refused_total{{exception=\"{exception}\"}} ");
        assert!(counter(&metrics, &sample) >= 1, "{exception}: {metrics}");
    }
    assert!(counter(&metrics, "shoal_native_authenticated_total ") >= 4);
    assert!(counter(&metrics, "shoal_native_authentication_timeouts_total ") >= 1);
}
