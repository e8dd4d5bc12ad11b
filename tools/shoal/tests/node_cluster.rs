//! Three real `shoal node` processes on loopback: writes replicate; SIGKILL of the leader's
//! process gives a new leader in bounded time and loses no acknowledged write; a killed node
//! restarts and catches up, through a snapshot once the log was truncated; a leader paused
//! (SIGSTOP) for longer than its lease serves no stale strong read when it resumes.
//! Every test runs under a watchdog that kills the processes and fails loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};
use shoal_bus::BlockingClient;
use shoal_model::key::{KeySchema, KeyType};
use shoal_model::request::{ItemOperation, prepare};
use shoal_model::request_codec::encode_request;
use shoal_router::forward::render_result;
use shoal_wire::messages::{
    KeySchemaWire, KeyTypeWire, MembershipWire, NodeError, NodeRequest, NodeResponse, ReplicaRole,
};

const PARTITION: u64 = 1;
const ELECTION_TIMEOUT_MS: u64 = 400;
/// A new leader must be serving within this after the old one is killed: election timeouts
/// (at most twice the minimum), the old lease, and a few round trips.
const FAILOVER_BOUND: Duration = Duration::from_secs(10);
const WATCHDOG: Duration = Duration::from_secs(150);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

use common::free_ports;

struct NodeProcess {
    child: Option<Child>,
    bus: SocketAddr,
    admin: SocketAddr,
}

struct Cluster {
    directory: tempfile::TempDir,
    nodes: BTreeMap<u64, NodeProcess>,
    checkpoint_every_slots: u64,
    pids: Arc<Mutex<Vec<u32>>>,
    done: Arc<AtomicBool>,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// The tests run one cluster at a time: three nodes already share two cores.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

impl Cluster {
    fn start(checkpoint_every_slots: u64) -> Cluster {
        let turn = ONE_CLUSTER_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ports = free_ports(6);
        let directory = tempfile::tempdir().unwrap();
        let mut nodes = BTreeMap::new();
        for id in 1..=3u64 {
            let index = (id - 1) as usize;
            nodes.insert(
                id,
                NodeProcess {
                    child: None,
                    bus: SocketAddr::from(([127, 0, 0, 1], ports[index])),
                    admin: SocketAddr::from(([127, 0, 0, 1], ports[3 + index])),
                },
            );
        }
        let pids = Arc::new(Mutex::new(Vec::new()));
        let done = {
            let pids = pids.clone();
            common::watchdog(WATCHDOG, "node cluster test", move || {
                for pid in pids.lock().unwrap().iter() {
                    let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
                }
            })
        };
        let mut cluster = Cluster {
            directory,
            nodes,
            checkpoint_every_slots,
            pids,
            done,
            _turn: turn,
        };
        for id in 1..=3 {
            cluster.spawn(id);
        }
        cluster
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.directory.path().join(format!("node-{id}"))
    }

    fn spawn(&mut self, id: u64) {
        let peers: Vec<String> = self
            .nodes
            .iter()
            .filter(|(peer, _)| **peer != id)
            .map(|(peer, node)| format!("--peer={peer}={}", node.bus))
            .collect();
        let node = &self.nodes[&id];
        let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("node")
            .arg(format!("--node-id={id}"))
            .arg(format!("--data-dir={}", self.data_dir(id).display()))
            .arg(format!("--listen={}", node.bus))
            .arg(format!("--admin={}", node.admin))
            .arg("--shards=1")
            .arg("--cache-mib=4")
            .arg("--wal-segment-mib=16")
            .arg("--wal-segments=4")
            .arg(format!("--election-timeout-ms={ELECTION_TIMEOUT_MS}"))
            .arg(format!(
                "--checkpoint-every-slots={}",
                self.checkpoint_every_slots
            ))
            .args(peers)
            .env("SHOAL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start shoal node");
        self.pids.lock().unwrap().push(child.id());
        self.nodes.get_mut(&id).unwrap().child = Some(child);
        // Wait until it answers.
        let address = self.nodes[&id].bus;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut client) = BlockingClient::connect(address, CALL_TIMEOUT)
                && client.call(NodeRequest::Status).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "node {id} did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&mut self, id: u64, signal: Signal) {
        let child = self.nodes[&id].child.as_ref().unwrap();
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        if signal == Signal::SIGKILL {
            let mut child = self.nodes.get_mut(&id).unwrap().child.take().unwrap();
            child.wait().unwrap();
        }
    }

    fn call(&self, id: u64, request: NodeRequest) -> Option<NodeResponse> {
        let mut client = BlockingClient::connect(self.nodes[&id].bus, CALL_TIMEOUT).ok()?;
        client.call(request).ok()
    }

    fn create_partition(&self) {
        for id in 1..=3 {
            let response = self.call(
                id,
                NodeRequest::CreatePartition {
                    partition: PARTITION,
                    epoch: 1,
                    key_schema: KeySchemaWire {
                        partition_key: ("pk".to_string(), KeyTypeWire::String),
                        sort_key: None,
                    },
                    membership: MembershipWire {
                        full_replicas: vec![1, 2, 3],
                        log_replicas: vec![],
                    },
                },
            );
            assert_eq!(response, Some(NodeResponse::Created), "node {id}");
        }
    }

    /// The node whose replica leads and holds its lease, among `candidates`.
    fn leader(&self, candidates: &[u64], bound: Duration) -> u64 {
        let deadline = Instant::now() + bound;
        loop {
            for id in candidates {
                if let Some(NodeResponse::Status { replicas, .. }) =
                    self.call(*id, NodeRequest::Status)
                    && replicas.iter().any(|replica| {
                        replica.partition == PARTITION
                            && replica.role == ReplicaRole::LeaderWithLease
                    })
                {
                    return *id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {candidates:?} within {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn item(&self, id: u64, operation: ItemOperation, parameters: &Json) -> NodeResponse {
        self.call(
            id,
            NodeRequest::Item {
                partition: PARTITION,
                epoch: 1,
                request: encode_request(
                    &prepare(
                        operation,
                        parameters,
                        &KeySchema::partition_only("pk", KeyType::String),
                    )
                    .unwrap(),
                ),
            },
        )
        .unwrap_or(NodeResponse::Error(NodeError::OutcomeUnknown {
            message: "no answer".to_string(),
        }))
    }

    /// Writes through the leader among `candidates`, retrying while leadership settles.
    /// Returns whether the write was acknowledged.
    fn write(&self, candidates: &[u64], operation: ItemOperation, parameters: &Json) -> bool {
        for _ in 0..100 {
            let leader = self.leader(candidates, FAILOVER_BOUND);
            match self.item(leader, operation, parameters) {
                NodeResponse::Item { .. } => return true,
                NodeResponse::Error(
                    NodeError::NotLeader { .. }
                    | NodeError::Busy { .. }
                    | NodeError::NotApplied { .. },
                ) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                NodeResponse::Error(NodeError::OutcomeUnknown { .. }) => return false,
                other => panic!("write failed: {other:?}"),
            }
        }
        false
    }

    fn scan_count(&self, id: u64, consistent: bool) -> Option<u64> {
        match self.item(
            id,
            ItemOperation::Scan,
            &json!({"ConsistentRead": consistent}),
        ) {
            NodeResponse::Item { result, .. } => {
                let body = render_result(&result, false).unwrap();
                body["Count"].as_u64()
            }
            _ => None,
        }
    }

    fn await_count(&self, id: u64, expected: u64, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let count = self.scan_count(id, false);
            if count == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} holds {count:?} items, expected {expected}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.done.store(true, Ordering::SeqCst);
    }
}

fn put(key: &str, value: u64) -> Json {
    json!({"Item": {"pk": {"S": key}, "v": {"N": value.to_string()}}})
}

fn files_in(path: &Path) -> Vec<String> {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// How long a node's /metrics may take to show what it did (ten publish intervals).
const METRICS_PUBLISHED_WITHIN: Duration = Duration::from_secs(10);

#[test]
fn killing_the_leader_elects_another_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(2048);
    cluster.create_partition();
    let all = [1, 2, 3];
    let mut acknowledged = 0;
    for index in 0..40 {
        assert!(cluster.write(
            &all,
            ItemOperation::PutItem,
            &put(&format!("k{index}"), index)
        ));
        acknowledged += 1;
    }
    // Writes replicate: every replica converges.
    for id in all {
        cluster.await_count(id, acknowledged, Duration::from_secs(10));
    }
    let leader = cluster.leader(&all, FAILOVER_BOUND);
    cluster.signal(leader, Signal::SIGKILL);
    let survivors: Vec<u64> = all.into_iter().filter(|id| *id != leader).collect();
    let killed_at = Instant::now();
    let new_leader = cluster.leader(&survivors, FAILOVER_BOUND);
    let failover = killed_at.elapsed();
    eprintln!("failover took {failover:?}");
    assert_eq!(
        cluster.scan_count(new_leader, true),
        Some(acknowledged),
        "an acknowledged write was lost"
    );
    for index in 40..60 {
        assert!(cluster.write(
            &survivors,
            ItemOperation::PutItem,
            &put(&format!("k{index}"), index)
        ));
        acknowledged += 1;
    }
    // The killed node restarts, recovers and catches up from the log.
    cluster.spawn(leader);
    cluster.await_count(leader, acknowledged, Duration::from_secs(20));
    // Its metrics endpoint reports the shard. The shard publishes its text every second
    // (METRICS_PUBLISH_INTERVAL in src/node.rs), later on a loaded machine, so the requests it
    // served show up within a few seconds, not at once.
    let published_by = Instant::now() + METRICS_PUBLISHED_WITHIN;
    let metrics = loop {
        let metrics = http_get(cluster.nodes[&new_leader].admin, "/metrics");
        if metrics.contains("shoal_requests_total{node=\"") || Instant::now() >= published_by {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metrics.contains("shoal_requests_total{node=\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("shoal_wal_fdatasync_latency_us"),
        "{metrics}"
    );
}

#[test]
fn a_restarted_node_catches_up_through_a_snapshot() {
    let mut cluster = Cluster::start(16);
    cluster.create_partition();
    let all = [1, 2, 3];
    let leader = cluster.leader(&all, FAILOVER_BOUND);
    let follower = all.into_iter().find(|id| *id != leader).unwrap();
    cluster.signal(follower, Signal::SIGKILL);
    let others: Vec<u64> = all.into_iter().filter(|id| *id != follower).collect();
    let mut acknowledged = 0;
    for index in 0..150 {
        if cluster.write(
            &others,
            ItemOperation::PutItem,
            &put(&format!("s{index}"), index),
        ) {
            acknowledged += 1;
        }
    }
    assert_eq!(acknowledged, 150);
    cluster.spawn(follower);
    cluster.await_count(follower, acknowledged, Duration::from_secs(30));
    let files = files_in(&cluster.data_dir(follower).join("shard-0"));
    assert!(
        files.iter().any(|name| name.ends_with("-g00000001.btree")),
        "the follower caught up without a snapshot: {files:?}"
    );
}

#[test]
fn a_paused_leader_serves_no_stale_strong_read() {
    let mut cluster = Cluster::start(2048);
    cluster.create_partition();
    let all = [1, 2, 3];
    assert!(cluster.write(&all, ItemOperation::PutItem, &put("x", 1)));
    let old_leader = cluster.leader(&all, FAILOVER_BOUND);
    cluster.signal(old_leader, Signal::SIGSTOP);
    let others: Vec<u64> = all.into_iter().filter(|id| *id != old_leader).collect();
    let new_leader = cluster.leader(&others, FAILOVER_BOUND);
    assert!(cluster.write(&others, ItemOperation::PutItem, &put("x", 2)));
    cluster.signal(old_leader, Signal::SIGCONT);
    // Whatever the resumed leader answers to a strong read, it is never the old value.
    let get = json!({"Key": {"pk": {"S": "x"}}, "ConsistentRead": true});
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut refusals = 0;
    while Instant::now() < deadline {
        match cluster.item(old_leader, ItemOperation::GetItem, &get) {
            NodeResponse::Item { result, .. } => {
                let body = render_result(&result, false).unwrap();
                assert_eq!(
                    body["Item"]["v"],
                    json!({"N": "2"}),
                    "a stale strong read was served"
                );
            }
            NodeResponse::Error(NodeError::NotLeader { .. }) => refusals += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        refusals > 0,
        "the resumed leader never refused a strong read"
    );
    match cluster.item(new_leader, ItemOperation::GetItem, &get) {
        NodeResponse::Item { result, .. } => {
            let body = render_result(&result, false).unwrap();
            assert_eq!(body["Item"]["v"], json!({"N": "2"}));
        }
        NodeResponse::Error(NodeError::NotLeader { .. }) => {}
        other => panic!("unexpected answer {other:?}"),
    }
}

fn http_get(address: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
