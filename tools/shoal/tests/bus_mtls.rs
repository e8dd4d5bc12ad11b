//! Mutual TLS on the bus with real processes: a cluster CA and member certificates made by
//! `shoal cert`, three `shoal node`s and a `shoal router` with `--bus-tls-*` form a cluster
//! (a table created, an item written through the replicated log and read back), `shoal auth`
//! reaches the metadata group over the TLS bus, a plaintext bus client is refused, and node 3
//! restarted with a certificate of another CA is refused by its peers (each refusal on the
//! nodes' /metrics) while nodes 1 and 2 go on serving. One cluster, under a watchdog.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use shoal_bus::BlockingClient;
use shoal_client::{Client, ClientConfig, ClientError};
use shoal_wire::messages::NodeRequest;

const WATCHDOG: Duration = Duration::from_secs(240);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
/// Metrics are published once a second; a refusal shows within a few.
const METRICS_TIMEOUT: Duration = Duration::from_secs(60);
const NODES: usize = 3;

struct Cluster {
    directory: tempfile::TempDir,
    /// Bus (shard 0) and admin port of each node, then the router's HTTP and native ports.
    buses: Vec<u16>,
    admins: Vec<u16>,
    native: SocketAddr,
    nodes: Vec<Option<Child>>,
    router: Option<Child>,
    pids: Arc<Mutex<Vec<u32>>>,
    done: Arc<AtomicBool>,
}

fn shoal(arguments: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(arguments)
        .env("SHOAL_LOG", "warn")
        .output()
        .unwrap()
}

fn succeed(arguments: &[String]) {
    let output = shoal(arguments);
    assert!(output.status.success(), "{arguments:?}: {output:?}");
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

impl Cluster {
    fn start() -> Cluster {
        let directory = tempfile::tempdir().unwrap();
        let ports = common::free_ports(2 * NODES + 2);
        let pids = Arc::new(Mutex::new(Vec::new()));
        let done = {
            let pids = pids.clone();
            common::watchdog(WATCHDOG, "bus mutual TLS test", move || {
                for pid in pids.lock().unwrap().iter() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(*pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            })
        };
        let mut cluster = Cluster {
            buses: ports[..NODES].to_vec(),
            admins: ports[NODES..2 * NODES].to_vec(),
            native: SocketAddr::from(([127, 0, 0, 1], ports[2 * NODES + 1])),
            nodes: (0..NODES).map(|_| None).collect(),
            router: None,
            directory,
            pids,
            done,
        };
        // The cluster CA and every member's certificate, by the CLI an operator would use;
        // another CA for the impostor.
        for authority in ["ca", "other"] {
            succeed(&[
                "cert".into(),
                "ca".into(),
                format!("--dir={}", path_text(&cluster.path(authority))),
            ]);
        }
        for (authority, name) in [
            ("ca", "node-1"),
            ("ca", "node-2"),
            ("ca", "node-3"),
            ("ca", "router"),
            ("other", "impostor"),
        ] {
            succeed(&[
                "cert".into(),
                "issue".into(),
                format!("--ca-dir={}", path_text(&cluster.path(authority))),
                format!("--name={name}"),
                "--ip=127.0.0.1".into(),
            ]);
        }
        for index in 0..NODES {
            cluster.start_node(index, &format!("node-{}", index + 1), "ca");
        }
        cluster.start_router(ports[2 * NODES]);
        cluster
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    /// `--bus-tls-*` for member `name` of `authority`'s directory, trusting the cluster CA.
    fn tls_flags(&self, authority: &str, name: &str) -> Vec<String> {
        let directory = self.path(authority);
        vec![
            format!(
                "--bus-tls-cert={}",
                path_text(&directory.join(format!("{name}.pem")))
            ),
            format!(
                "--bus-tls-key={}",
                path_text(&directory.join(format!("{name}.key")))
            ),
            format!(
                "--bus-tls-ca={}",
                path_text(&self.path("ca").join("ca.pem"))
            ),
        ]
    }

    fn node_flags(&self) -> Vec<String> {
        (0..NODES)
            .map(|index| format!("--node={}=127.0.0.1:{}", index + 1, self.buses[index]))
            .collect()
    }

    fn spawn(&self, arguments: Vec<String>) -> Child {
        let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(arguments)
            .env("SHOAL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.pids.lock().unwrap().push(child.id());
        child
    }

    fn start_node(&mut self, index: usize, certificate: &str, authority: &str) {
        let id = index + 1;
        let mut arguments = vec![
            "node".to_string(),
            format!("--node-id={id}"),
            format!(
                "--data-dir={}",
                path_text(&self.path(&format!("node-{id}")))
            ),
            format!("--listen=127.0.0.1:{}", self.buses[index]),
            format!("--admin=127.0.0.1:{}", self.admins[index]),
            "--cache-mib=4".into(),
            "--wal-segment-mib=16".into(),
            "--wal-segments=4".into(),
        ];
        for peer in (0..NODES).filter(|peer| *peer != index) {
            arguments.push(format!(
                "--peer={}=127.0.0.1:{}",
                peer + 1,
                self.buses[peer]
            ));
        }
        arguments.extend(self.tls_flags(authority, certificate));
        self.nodes[index] = Some(self.spawn(arguments));
    }

    fn start_router(&mut self, http: u16) {
        let mut arguments = vec![
            "router".to_string(),
            format!("--http=127.0.0.1:{http}"),
            format!("--native={}", self.native),
            "--auth=none".into(),
        ];
        arguments.extend(self.node_flags());
        arguments.extend(self.tls_flags("ca", "router"));
        self.router = Some(self.spawn(arguments));
    }

    fn kill_node(&mut self, index: usize) {
        let mut child = self.nodes[index].take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn client(&self) -> Result<Client, ClientError> {
        let mut config = ClientConfig::new(self.native);
        config.connections = 1;
        config.seed = 17;
        config.request_timeout = Duration::from_secs(10);
        Client::connect(config)
    }

    /// Node `index`'s /metrics.
    fn metrics(&self, index: usize) -> String {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.admins[index])) else {
            return String::new();
        };
        let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: shoal\r\n\r\n");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    }

    /// The value of `sample` on node `index`'s /metrics (0 while it is not there yet).
    fn counter(&self, index: usize, sample: &str) -> u64 {
        self.metrics(index)
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0)
    }

    fn wait_for(&self, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + METRICS_TIMEOUT;
        while !condition() {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().chain([&mut self.router]).flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.done.store(true, Ordering::SeqCst);
    }
}

fn labels(node: usize, reason: &str) -> String {
    format!(
        "shoal_bus_tls_handshakes_failed_total{{node=\"{node}\",shard=\"0\",reason=\"{reason}\"}} "
    )
}

#[test]
fn a_cluster_forms_over_mutual_tls_and_refuses_strangers() {
    let mut cluster = Cluster::start();

    // The router bootstraps the metadata group over the TLS bus, and serves.
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let client = loop {
        if let Ok(client) = cluster.client()
            && client.list_tables(&json!({})).is_ok()
        {
            break client;
        }
        assert!(Instant::now() < deadline, "the cluster did not form");
        std::thread::sleep(Duration::from_millis(200));
    };
    client
        .create_table(&json!({
            "TableName": "films",
            "AttributeDefinitions": [{"AttributeName": "title", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "title", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        }))
        .unwrap();
    let item = json!({"title": {"S": "Amélie"}});
    client
        .put_item(&json!({"TableName": "films", "Item": item}))
        .unwrap();
    let got = client
        .get_item(&json!({"TableName": "films", "Key": item, "ConsistentRead": true}))
        .unwrap();
    assert_eq!(got["Item"], item);
    cluster.wait_for("node 1 reports its bus as TLS", || {
        cluster.counter(0, "shoal_bus_tls{node=\"1\",shard=\"0\"} ") == 1
    });

    // shoal auth reaches the metadata group with a member certificate.
    let mut arguments = vec!["auth".to_string(), "create-key".into()];
    arguments.extend(cluster.node_flags());
    arguments.extend(cluster.tls_flags("ca", "router"));
    succeed(&arguments);

    // A plaintext bus client gets no answer, and is counted as not TLS.
    let address = SocketAddr::from(([127, 0, 0, 1], cluster.buses[0]));
    let plaintext = BlockingClient::connect(address, Duration::from_secs(5))
        .and_then(|mut client| client.call(NodeRequest::Status));
    assert!(plaintext.is_err(), "{plaintext:?}");
    cluster.wait_for("the plaintext client counted", || {
        cluster.counter(0, &labels(1, "not_tls")) >= 1
    });

    // Node 3 comes back with a certificate of another CA: its peers refuse it both ways (its
    // connections fail their handshake at nodes 1 and 2; theirs to it find a certificate the
    // cluster CA did not sign), and nodes 1 and 2 go on serving.
    cluster.kill_node(2);
    // A killed glommio process's io_uring is torn down after it exits, and its requests can
    // hold the listening socket open a moment longer: wait until the port is free again.
    cluster.wait_for("node 3's bus port to be released", || {
        std::net::TcpListener::bind(("127.0.0.1", cluster.buses[2])).is_ok()
    });
    cluster.start_node(2, "impostor", "other");
    cluster.wait_for("node 3's handshakes refused by node 1", || {
        cluster.counter(0, &labels(1, "failed")) >= 1
    });
    cluster.wait_for("connections to node 3 refused", || {
        (0..2).any(|index| {
            let sample = format!(
                "shoal_bus_tls_connect_failures_total{{node=\"{}\",shard=\"0\"}} ",
                index + 1
            );
            cluster.counter(index, &sample) >= 1
        })
    });
    let second = json!({"title": {"S": "Heat"}});
    client
        .put_item(&json!({"TableName": "films", "Item": second}))
        .unwrap();
    let got = client
        .get_item(&json!({"TableName": "films", "Key": second, "ConsistentRead": true}))
        .unwrap();
    assert_eq!(got["Item"], second);
}
