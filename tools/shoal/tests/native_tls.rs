//! TLS on the native protocol end to end: `shoal dev --tls` (three nodes and a router whose
//! HTTP and native ports both speak TLS with the self-signed certificate it makes), then
//! shoal-client's blocking client trusting that certificate (a table, an item written and read
//! back, requests pipelined on one TLS connection), a client trusting another CA (refused in
//! the handshake, not retried), a plaintext client (refused, while TLS clients go on being
//! served), the glommio client (which refuses a TLS config), and the CLI's `--ca-bundle`. One
//! cluster, under a watchdog that fails loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};
use shoal_client::{AsyncClient, Client, ClientConfig, ClientError, Operation, TlsSettings};

const WATCHDOG: Duration = Duration::from_secs(120);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(45);
/// Requests sent on one TLS connection before the first answer is read.
const PIPELINED: usize = 32;
/// Ports `shoal dev --port P` uses with three nodes of one shard (tests/native_client.rs).
const DEV_PORT_OFFSETS: [u16; 8] = [0, 1, 100, 199, 200, 299, 300, 399];

struct DevCluster {
    directory: tempfile::TempDir,
    child: Arc<Mutex<Child>>,
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
            .arg("--tls")
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
            common::watchdog(WATCHDOG, "native TLS test", move || stop(&child))
        };
        let cluster = DevCluster {
            directory,
            child,
            native: SocketAddr::from(([127, 0, 0, 1], port + 1)),
            done,
        };
        // The certificate appears before the router starts; the router listens once it has
        // bootstrapped the metadata.
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if cluster.certificate().exists()
                && let Ok(client) = Client::connect(cluster.config(&cluster.certificate()))
                && client.list_tables(&json!({})).is_ok()
            {
                break;
            }
            assert!(Instant::now() < deadline, "shoal dev --tls did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn certificate(&self) -> PathBuf {
        self.directory.path().join("data/tls/cert.pem")
    }

    /// A client of the native port trusting `ca_bundle`.
    fn config(&self, ca_bundle: &Path) -> ClientConfig {
        let mut config = ClientConfig::new(self.native);
        config.connections = 1;
        config.seed = 11;
        config.request_timeout = Duration::from_secs(10);
        config.tls = Some(TlsSettings::from_ca_bundle(ca_bundle, "127.0.0.1").unwrap());
        config
    }

    fn shoal(&self, arguments: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(arguments)
            .arg(format!("--endpoint={}", self.native))
            .env("SHOAL_LOG", "warn")
            .output()
            .unwrap()
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        stop(&self.child);
        self.done.store(true, Ordering::SeqCst);
    }
}

fn movie(title: &str) -> Json {
    json!({"title": {"S": title}})
}

#[test]
fn native_protocol_over_tls_through_shoal_dev() {
    let cluster = DevCluster::start();
    let client = Client::connect(cluster.config(&cluster.certificate())).unwrap();
    let created = client
        .create_table(&json!({
            "TableName": "films",
            "AttributeDefinitions": [{"AttributeName": "title", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "title", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        }))
        .unwrap();
    assert_eq!(created["TableDescription"]["TableStatus"], "ACTIVE");
    let mut item = movie("Amélie");
    item["year"] = json!({"N": "2001"});
    client
        .put_item(&json!({"TableName": "films", "Item": item}))
        .unwrap();
    let got = client
        .get_item(&json!({"TableName": "films", "Key": movie("Amélie"), "ConsistentRead": true}))
        .unwrap();
    assert_eq!(got["Item"], item);

    // Pipelined on one TLS connection: writes sealed while the reader thread decrypts.
    let pending: Vec<_> = (0..PIPELINED)
        .map(|index| {
            let body = json!({"TableName": "films", "Item": movie(&format!("film {index}"))});
            client.submit_on(0, Operation::PutItem, &body).unwrap()
        })
        .collect();
    for waiting in pending {
        waiting.wait().unwrap();
    }
    let counted = client
        .scan(&json!({"TableName": "films", "Select": "COUNT", "ConsistentRead": true}))
        .unwrap();
    assert_eq!(counted["Count"], json!(PIPELINED + 1));

    // A client trusting another CA refuses the router's certificate, and says so at once.
    let other = cluster.directory.path().join("other.pem");
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(&other, pair.cert.pem()).unwrap();
    let started = Instant::now();
    let error = Client::connect(cluster.config(&other))
        .err()
        .expect("an untrusted certificate must fail the handshake");
    assert!(matches!(error, ClientError::Tls(_)), "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "not retried");

    // A plaintext client gets no answer: its request fails, and TLS clients are still served.
    let mut plaintext = cluster.config(&cluster.certificate());
    plaintext.tls = None;
    plaintext.retry.attempts_max = 1;
    let refused = Client::connect(plaintext).and_then(|client| client.list_tables(&json!({})));
    assert!(refused.is_err(), "{refused:?}");
    assert!(client.list_tables(&json!({})).is_ok());

    // The glommio client does not speak TLS yet: it refuses the config rather than connect in
    // plaintext.
    let config = cluster.config(&cluster.certificate());
    let refused = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .unwrap()
        .run(async move { AsyncClient::connect(config).await.err() });
    assert!(
        matches!(refused, Some(ClientError::InvalidRequest(ref reason)) if reason.contains("TLS")),
        "{refused:?}"
    );

    // The CLI: with --ca-bundle it works, without it does not.
    let certificate = cluster.certificate().display().to_string();
    let listed = cluster.shoal(&["table", "list", "--ca-bundle", &certificate]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "films");
    let untrusted = cluster.shoal(&["table", "list", "--ca-bundle", &other.display().to_string()]);
    assert!(!untrusted.status.success());
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("TLS handshake failed"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
}
