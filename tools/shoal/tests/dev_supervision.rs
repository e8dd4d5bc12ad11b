//! `shoal dev` keeps serving when a child dies: three nodes and a router on free loopback
//! ports in a temporary directory; a node is SIGKILLed; `shoal dev` reports it on stderr, the
//! router and the other nodes keep running and serving the table, and the node is started
//! again (a new pid whose admin endpoint answers) on its data. With `--no-restart` the node
//! stays down, the rest keep serving (CreateTable included), and `shoal dev` exits once every
//! child is gone.
//! SIGTERM stops every child, a restarted one included. Each cluster runs under a watchdog that stops it and fails loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};
use shoal_client::{Client, ClientConfig};

const WATCHDOG: Duration = Duration::from_secs(180);
/// How long the tests wait for something that must happen (a start, a restart, a report):
/// generous, since they share two cores with other builds; none of them asserts a latency.
const EVENTUALLY: Duration = Duration::from_secs(60);
const NODES: u16 = 3;
/// Ports `shoal dev --port P` uses with three nodes of one shard: P, P + 1 and, per node i,
/// P + 100 i and P + 100 i + 99.
const DEV_PORT_OFFSETS: [u16; 8] = [0, 1, 100, 199, 200, 299, 300, 399];

/// The tests share two cores: one cluster at a time.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A base port whose dev layout is free now.
fn free_dev_port() -> u16 {
    common::free_port_layouts(1, &DEV_PORT_OFFSETS)[0]
}

fn alive(pid: u32) -> bool {
    // Signal 0 checks that the process exists (a zombie counts until its parent reaps it).
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// `shoal dev` with its stdout and stderr lines collected (stderr is echoed too).
struct Dev {
    _directory: tempfile::TempDir,
    child: Arc<Mutex<Child>>,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicBool>,
}

fn collect(stream: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>, echo: bool) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if echo {
                eprintln!("{line}");
            }
            lines.lock().unwrap().push(line);
        }
    });
}

fn stop(child: &Mutex<Child>) -> Option<std::process::ExitStatus> {
    let mut child = child
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Dev {
    fn start(extra: &[&str]) -> Dev {
        let directory = tempfile::tempdir().unwrap();
        let port = free_dev_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("dev")
            .arg(format!("--nodes={NODES}"))
            .arg(format!("--port={port}"))
            .arg(format!(
                "--data-dir={}",
                directory.path().join("data").display()
            ))
            .args(extra)
            .env("SHOAL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start shoal dev");
        let lines = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), lines.clone(), false);
        collect(child.stderr.take().unwrap(), lines.clone(), true);
        let child = Arc::new(Mutex::new(child));
        let done = {
            let child = child.clone();
            common::watchdog(WATCHDOG, "dev supervision test", move || {
                stop(&child);
            })
        };
        let dev = Dev {
            _directory: directory,
            child,
            port,
            lines,
            done,
        };
        // The router serves once it has bootstrapped the metadata group on the nodes.
        dev.eventually("the router serves", || dev.client().map(drop));
        dev
    }

    fn eventually<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            if let Some(found) = check() {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "not seen within {EVENTUALLY:?}: {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn client(&self) -> Option<Client> {
        let mut config = ClientConfig::new(SocketAddr::from(([127, 0, 0, 1], self.port + 1)));
        config.connections = 1;
        config.seed = 11;
        config.request_timeout = Duration::from_secs(10);
        let client = Client::connect(config).ok()?;
        client.list_tables(&json!({})).ok()?;
        Some(client)
    }

    /// The pid in the last line that `shoal dev` printed about `name` starting: "node 2
    /// started (pid N)" or "node 2 restarted (pid N)".
    fn pid_of(&self, name: &str) -> Option<u32> {
        let started = format!("shoal dev: {name} started (pid ");
        let restarted = format!("shoal dev: {name} restarted (pid ");
        self.lines.lock().unwrap().iter().rev().find_map(|line| {
            let rest = line
                .strip_prefix(&started)
                .or_else(|| line.strip_prefix(&restarted))?;
            rest.strip_suffix(')')?.parse().ok()
        })
    }

    fn printed(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(needle))
    }

    fn admin(&self, node: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port + 100 * node + 99))
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        stop(&self.child);
        self.done.store(true, Ordering::SeqCst);
    }
}

/// Whether the node's admin endpoint answers /health with "ok".
fn healthy(admin: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&admin, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n")
}

fn create_table(client: &Client, name: &str) {
    let created = client
        .create_table(&json!({
            "TableName": name,
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        }))
        .unwrap();
    assert_eq!(created["TableDescription"]["TableStatus"], "ACTIVE");
}

/// Writes and reads back `key` through the router, retrying while the partitions elect new
/// leaders after a node died.
fn write_and_read(dev: &Dev, key: &str) -> Json {
    dev.eventually(&format!("item {key} written and read back"), || {
        let client = dev.client()?;
        client
            .put_item(&json!({
                "TableName": "survivors",
                "Item": {"pk": {"S": key}, "value": {"S": format!("value of {key}")}},
            }))
            .ok()?;
        let got = client
            .get_item(&json!({
                "TableName": "survivors",
                "Key": {"pk": {"S": key}},
                "ConsistentRead": true,
            }))
            .ok()?;
        Some(got["Item"].clone())
    })
}

#[test]
fn a_killed_node_is_reported_and_started_again_while_the_rest_keep_serving() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dev = Dev::start(&[]);
    let client = dev.client().unwrap();
    create_table(&client, "survivors");
    write_and_read(&dev, "before");
    let others: Vec<u32> = ["node 1", "node 3", "router"]
        .iter()
        .map(|name| dev.pid_of(name).unwrap())
        .collect();
    let victim = dev.pid_of("node 2").unwrap();
    assert!(healthy(dev.admin(2)));

    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    dev.eventually("the death reported with its signal", || {
        dev.printed(&format!(
            "shoal dev: node 2 (pid {victim}) was killed by SIGKILL; starting it again in 1s"
        ))
        .then_some(())
    });
    // The cluster still serves, old data and new writes, from the same router and nodes.
    let before = write_and_read(&dev, "before");
    assert_eq!(before["value"]["S"], "value of before");
    write_and_read(&dev, "after the kill");
    for pid in &others {
        assert!(alive(*pid), "pid {pid} was stopped with the killed node");
    }

    // The node comes back as a new process on its data, and answers its health check.
    let restarted = dev.eventually("node 2 started again", || {
        dev.pid_of("node 2").filter(|pid| *pid != victim)
    });
    dev.eventually("node 2's admin endpoint answers", || {
        healthy(dev.admin(2)).then_some(())
    });
    assert_eq!(
        ["node 1", "node 3", "router"].map(|name| dev.pid_of(name).unwrap()),
        others.as_slice(),
        "only the killed child was started again"
    );
    write_and_read(&dev, "after the restart");

    // SIGTERM stops everything, the restarted node included, and `shoal dev` exits cleanly.
    let status = stop(&dev.child).expect("shoal dev did not stop on SIGTERM");
    assert!(status.success(), "{status}");
    for pid in others.iter().chain([&restarted]) {
        assert!(!alive(*pid), "pid {pid} survived the stop");
    }
}

#[test]
fn with_no_restart_a_killed_node_stays_down_and_the_rest_keep_serving() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dev = Dev::start(&["--no-restart"]);
    let client = dev.client().unwrap();
    create_table(&client, "survivors");
    write_and_read(&dev, "before");
    let victim = dev.pid_of("node 3").unwrap();

    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    dev.eventually("the death reported", || {
        dev.printed(&format!(
            "shoal dev: node 3 (pid {victim}) was killed by SIGKILL; leaving it down (--no-restart)"
        ))
        .then_some(())
    });
    write_and_read(&dev, "after the kill");
    // A table created while node 3 is down is created on the other two (issue 14).
    create_table(&dev.client().unwrap(), "created-without-node-3");
    // Serving went on without node 3, which was never started again.
    assert!(!healthy(dev.admin(3)));
    assert_eq!(dev.pid_of("node 3"), Some(victim));
    assert!(!dev.printed("node 3 restarted"));

    // Once every child is gone, `shoal dev` has nothing left to run and exits, failing.
    for name in ["node 1", "node 2", "router"] {
        kill(
            Pid::from_raw(dev.pid_of(name).unwrap() as i32),
            Signal::SIGKILL,
        )
        .unwrap();
    }
    let status = dev.eventually("shoal dev exits on its own", || {
        dev.child.lock().unwrap().try_wait().unwrap()
    });
    assert!(!status.success(), "{status}");
    assert!(dev.printed("shoal dev: every child has exited; stopping"));
}
