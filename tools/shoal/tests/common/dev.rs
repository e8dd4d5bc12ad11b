//! `shoal dev` as the process tests start it: three nodes and a router on free loopback ports
//! in a temporary directory, its output collected, under a watchdog.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use shoal_client::{Client, ClientConfig};

/// How long the tests wait for something that must happen (a start, a restart, a report):
/// generous, since they share two cores with other builds; none of them asserts a latency.
pub const EVENTUALLY: Duration = Duration::from_secs(60);
pub const NODES: u16 = 3;
/// Ports `shoal dev --port P` uses with three nodes of one shard: P, P + 1 and, per node i,
/// P + 100 i and P + 100 i + 99.
const DEV_PORT_OFFSETS: [u16; 8] = [0, 1, 100, 199, 200, 299, 300, 399];

/// The tests share two cores: one cluster at a time.
pub static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A base port whose dev layout is free now.
pub fn free_dev_port() -> u16 {
    super::free_port_layouts(1, &DEV_PORT_OFFSETS)[0]
}

pub fn alive(pid: u32) -> bool {
    // Signal 0 checks that the process exists (a zombie counts until its parent reaps it).
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// `shoal dev` with its stdout and stderr lines collected (stderr is echoed too).
pub struct Dev {
    _directory: tempfile::TempDir,
    child: Arc<Mutex<Child>>,
    pub port: u16,
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

pub fn stop(child: &Mutex<Child>) -> Option<std::process::ExitStatus> {
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
    /// Starts `shoal dev` with `extra` arguments under a watchdog of `watchdog`, and waits
    /// until its router serves.
    pub fn start(extra: &[&str], watchdog: Duration) -> Dev {
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
            super::watchdog(watchdog, "dev supervision test", move || {
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

    pub fn eventually<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
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

    pub fn client(&self) -> Option<Client> {
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
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        let started = format!("shoal dev: {name} started (pid ");
        let restarted = format!("shoal dev: {name} restarted (pid ");
        self.lines.lock().unwrap().iter().rev().find_map(|line| {
            let rest = line
                .strip_prefix(&started)
                .or_else(|| line.strip_prefix(&restarted))?;
            rest.strip_suffix(')')?.parse().ok()
        })
    }

    /// Every line `shoal dev` printed so far (for a failure's message).
    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn printed(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(needle))
    }

    /// Sends `shoal dev` SIGTERM and waits for it (killing it after 30 s): its exit status.
    pub fn terminate(&self) -> Option<std::process::ExitStatus> {
        stop(&self.child)
    }

    /// Whether `shoal dev` has exited (and how), without waiting.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().unwrap().try_wait().unwrap()
    }

    pub fn admin(&self, node: u16) -> SocketAddr {
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
pub fn healthy(admin: SocketAddr) -> bool {
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

/// One call of the DynamoDB JSON API over HTTP on `port` (`target` is the whole X-Amz-Target,
/// e.g. `DynamoDB_20120810.CreateTable`); `shoal dev` accepts any credentials, as DynamoDB
/// Local does. The answer's body, or the status line and body of an error.
pub fn http_call(
    port: u16,
    target: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let body = body.to_string();
    let mut stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .map_err(|error| format!("connect: {error}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|error| error.to_string())?;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-amz-json-1.0\r\n\
         X-Amz-Target: {target}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature={}\r\n\
         X-Amz-Date: 20260101T000000Z\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        "0".repeat(64),
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|error| format!("send: {error}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|error| format!("receive: {error}"))?;
    let (head, payload) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no body: {answer}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{target}: {answer}"));
    }
    serde_json::from_str(payload).map_err(|error| format!("{target}: {error}: {payload}"))
}

/// A native client of `dev`, connected once the cluster answers.
pub fn client_of(dev: &Dev) -> Client {
    dev.eventually("a native client connects", || dev.client())
}

/// How often a load test's write is sent before it must have had a definite answer.
pub const WRITE_ATTEMPTS_MAX: u32 = 200;
const WRITE_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Puts `item` (or deletes the item of partition key `pk` when `None`) in `table` until the
/// write has a definite answer: success, since load tests write unconditionally. A retry
/// after an unknown outcome writes the same thing, which changes nothing if the first took
/// effect. Reconnects when the connection is lost.
pub fn write_definitely(
    dev: &Dev,
    client: &mut Client,
    table: &str,
    pk: &str,
    item: Option<&serde_json::Value>,
) {
    use shoal_client::ClientError;
    for _ in 0..WRITE_ATTEMPTS_MAX {
        let outcome = match item {
            Some(item) => client.put_item(&json!({"TableName": table, "Item": item})),
            None => client.delete_item(&json!({"TableName": table, "Key": {"pk": {"S": pk}}})),
        };
        match outcome {
            Ok(_) => return,
            // Throttling, a leader election, a node down: none changes what the retry writes.
            Err(ClientError::Service { .. } | ClientError::Timeout) => {}
            Err(ClientError::Connect(_) | ClientError::ConnectionLost(_)) => {
                *client = client_of(dev);
            }
            Err(other) => panic!("write of {pk}: {other:?}"),
        }
        std::thread::sleep(WRITE_RETRY_PAUSE);
    }
    panic!("write of {pk} had no definite answer after {WRITE_ATTEMPTS_MAX} attempts");
}
