//! Real processes under real faults (issue 14): three `shoal node` processes and a `shoal
//! router` process on loopback, a concurrent workload of strongly consistent reads, puts and
//! conditional updates on a few keys through the native protocol, and a nemesis that, in turn,
//! SIGKILLs and restarts a random node, SIGKILLs the node leading the most partitions, pauses a
//! node with SIGSTOP for several seconds, keeps one node down across many checkpoints (so its
//! peers stream it snapshots when it returns, and try to while it is down), and kills nodes
//! again and again while their small WAL rings wrap.
//!
//! Checked afterwards:
//! - every node restarted every time (a node that refuses to restart fails the test);
//! - every acknowledged insert is readable once the cluster is whole again (no lost write);
//! - each register key's history is linearizable (`shoal_sim::linearizability`, a Porcupine-style
//!   search where an operation whose outcome is unknown may or may not have happened);
//! - the longest time any register key went without a definite answer stays under
//!   `STALL_BOUND`:
//!   every fault here leaves each partition a majority, so nothing should stop it for longer than
//!   a failover (issue 14: a leader streaming a snapshot to a dead follower stopped its partition
//!   for good).
//!
//! The checker is shown able to fail by the hand-made histories at the end of the file.
//! Thresholds are small on purpose: a partition checkpoints every `CHECKPOINT_EVERY_SLOTS`
//! slots and each shard's WAL ring is a few MiB, so checkpoints, snapshot transfers and WAL
//! recycling all happen many times in a run of about two minutes. The figures are printed at
//! the end (`cargo test -p shoal --test process_faults -- --nocapture`). A watchdog kills every
//! process and fails loudly if the run hangs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};
use shoal_bus::BlockingClient;
use shoal_client::{Client, ClientConfig, ClientError, Operation, RetryPolicy};
use shoal_rng::SeededRng;
use shoal_sim::linearizability::{Operation as HistoryOperation, OperationKind, Verdict, check};
use shoal_wire::messages::{NodeRequest, NodeResponse, ReplicaRole};

const NODES: usize = 3;
const ELECTION_TIMEOUT_MS: u64 = 400;
/// Small, so that a node down for a few seconds misses several checkpoints of its peers.
const CHECKPOINT_EVERY_SLOTS: u64 = 64;
/// The smallest WAL ring a node accepts (a segment must hold the largest batch, 8 MiB, after
/// its header), so the ring wraps often.
const WAL_SEGMENT_MIB: u64 = 9;
const WAL_SEGMENTS: u32 = 2;
/// Many keys, so that each key's history has quiet moments even while requests wait out a
/// failover: the checker splits histories there, and a stretch without one longer than
/// `shoal_sim::linearizability::SEGMENT_OPERATIONS_MAX` operations is undecidable.
const REGISTER_KEYS: u64 = 24;
const WORKERS: u64 = 6;
/// One request attempt; the router's own deadline is longer, so this is what a worker sees as
/// "no answer" (outcome unknown).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// Every `INSERT_EVERY`-th operation of a worker writes a new key that must survive.
const INSERT_EVERY: u64 = 4;
/// The longest a register key may go without a definite answer: a failover (election timeout, the
/// old lease running out, the router learning the new leader) plus the requests that time out
/// while it happens (the router's 2 s call timeout toward a killed or paused leader, the
/// worker's own 4 s). A partition that stops for good exceeds it by the length of a phase.
/// Measured on the 2-core VM: 5.2 to 10.8 s in five runs; the target of a few seconds
/// is not met yet (the closing note of issue 14 says where the time goes).
const STALL_BOUND: Duration = Duration::from_secs(15);
/// How long a restarted node may take to serve again (a debug build recovering two WAL
/// segments and its trees on a loaded two-core machine).
const RESTART_DEADLINE: Duration = Duration::from_secs(60);
/// How long the final reads may retry while the healed cluster settles.
const FINAL_READ_DEADLINE: Duration = Duration::from_secs(60);
/// How long one node stays down in the long-outage phase, and how long the repeated kills go
/// on. CI's defaults keep the whole test near three minutes; longer soaks set
/// `SHOAL_FAULT_OUTAGE_SECONDS` and `SHOAL_FAULT_KILL_LOOP_SECONDS` (the watchdog grows with
/// them).
const LONG_OUTAGE_DEFAULT: Duration = Duration::from_secs(30);
const KILL_LOOP_DEFAULT: Duration = Duration::from_secs(30);
/// The watchdog's allowance beyond the two configurable phases.
const WATCHDOG_BASE: Duration = Duration::from_secs(540);

fn seconds_from_environment(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .map_or(default, Duration::from_secs)
}

/// One node process and what it needs to start again on the same data.
struct NodeProcess {
    id: u64,
    bus: SocketAddr,
    admin: SocketAddr,
    child: Option<Child>,
    paused: bool,
}

struct Cluster {
    directory: tempfile::TempDir,
    nodes: Vec<NodeProcess>,
    router: Child,
    native: SocketAddr,
    pids: Arc<Mutex<BTreeSet<u32>>>,
}

use common::free_port;

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Cluster {
    fn start(pids: Arc<Mutex<BTreeSet<u32>>>) -> Cluster {
        let directory = tempfile::tempdir().unwrap();
        let nodes = (1..=NODES as u64)
            .map(|id| NodeProcess {
                id,
                bus: loopback(free_port()),
                admin: loopback(free_port()),
                child: None,
                paused: false,
            })
            .collect();
        let native = loopback(free_port());
        let mut router = Command::new(env!("CARGO_BIN_EXE_shoal"));
        router
            .arg("router")
            .arg(format!("--http=127.0.0.1:{}", free_port()))
            .arg(format!("--native={native}"))
            // The subject here is process faults, not keys: the native port takes requests
            // without a handshake only under --auth none (tests/native_auth.rs covers keys).
            .arg("--auth=none")
            .env("SHOAL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut cluster = Cluster {
            directory,
            nodes,
            // Replaced below once the nodes run; a placeholder child keeps the type simple.
            router: Command::new("true").spawn().unwrap(),
            native,
            pids,
        };
        for index in 0..NODES {
            cluster.start_node(index);
        }
        for node in &cluster.nodes {
            router.arg(format!("--node={}={}", node.id, node.bus));
        }
        let _ = cluster.router.wait();
        cluster.router = router.spawn().expect("cannot start shoal router");
        cluster.pids.lock().unwrap().insert(cluster.router.id());
        for index in 0..NODES {
            cluster.wait_serving(index);
        }
        let deadline = Instant::now() + RESTART_DEADLINE;
        while std::net::TcpStream::connect(cluster.native).is_err() {
            assert!(
                Instant::now() < deadline,
                "the router does not listen on {}",
                cluster.native
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn start_node(&mut self, index: usize) {
        let data_dir = self
            .directory
            .path()
            .join(format!("node-{}", self.nodes[index].id));
        let node = &self.nodes[index];
        let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
        command
            .arg("node")
            .arg(format!("--node-id={}", node.id))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen={}", node.bus))
            .arg(format!("--admin={}", node.admin))
            .arg("--cache-mib=4")
            .arg(format!("--wal-segment-mib={WAL_SEGMENT_MIB}"))
            .arg(format!("--wal-segments={WAL_SEGMENTS}"))
            .arg(format!("--checkpoint-every-slots={CHECKPOINT_EVERY_SLOTS}"))
            .arg(format!("--election-timeout-ms={ELECTION_TIMEOUT_MS}"))
            .env(
                "SHOAL_LOG",
                std::env::var("SHOAL_FAULT_NODE_LOG").unwrap_or_else(|_| "warn".to_string()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for peer in &self.nodes {
            if peer.id != node.id {
                command.arg(format!("--peer={}={}", peer.id, peer.bus));
            }
        }
        let child = command.spawn().expect("cannot start shoal node");
        eprintln!(
            "node {} (pid {}): bus {}, metrics http://{}/metrics",
            node.id,
            child.id(),
            node.bus,
            node.admin
        );
        self.pids.lock().unwrap().insert(child.id());
        self.nodes[index].child = Some(child);
    }

    /// Waits until the node's shard answers a Status request; a node that exits instead (it
    /// refused to recover its data) fails the test.
    fn wait_serving(&mut self, index: usize) {
        let deadline = Instant::now() + RESTART_DEADLINE;
        loop {
            let node = &mut self.nodes[index];
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "node {} exited instead of serving ({status}); see its log above",
                    node.id
                );
            }
            if status_of(node.bus).is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} does not serve {RESTART_DEADLINE:?} after starting",
                node.id
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill_node(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        if let Some(mut child) = node.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            self.pids.lock().unwrap().remove(&child.id());
        }
        node.paused = false;
    }

    fn restart_node(&mut self, index: usize) {
        self.start_node(index);
        self.wait_serving(index);
    }

    fn signal_node(&mut self, index: usize, signal: Signal) {
        let node = &mut self.nodes[index];
        if let Some(child) = &node.child {
            kill(Pid::from_raw(child.id() as i32), signal).unwrap();
            node.paused = signal == Signal::SIGSTOP;
        }
    }

    /// The node that leads the most table partitions (metadata group excluded), by their own
    /// status reports.
    fn busiest_leader(&self) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (index, node) in self.nodes.iter().enumerate() {
            if node.child.is_none() || node.paused {
                continue;
            }
            let Some(replicas) = status_of(node.bus) else {
                continue;
            };
            let led = replicas
                .iter()
                .filter(|(partition, role)| {
                    *partition != 0
                        && matches!(role, ReplicaRole::Leader | ReplicaRole::LeaderWithLease)
                })
                .count();
            if best.is_none_or(|(_, most)| led > most) {
                best = Some((index, led));
            }
        }
        best.map(|(index, _)| index)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = self.router.kill();
        let _ = self.router.wait();
    }
}

/// Every node's replicas as they report them, for a failure message.
fn describe_nodes(cluster: &Cluster) -> String {
    let mut lines = Vec::new();
    for node in &cluster.nodes {
        let described = BlockingClient::connect(node.bus, Duration::from_secs(1))
            .ok()
            .and_then(|mut client| client.call(NodeRequest::Status).ok())
            .map_or_else(
                || "no answer".to_string(),
                |response| format!("{response:?}"),
            );
        lines.push(format!("node {}: {described}", node.id));
    }
    lines.join("\n")
}

/// The (partition, role) of every replica on a node's shard 0, or None if it does not answer.
fn status_of(bus: SocketAddr) -> Option<Vec<(u64, ReplicaRole)>> {
    let mut client = BlockingClient::connect(bus, Duration::from_secs(1)).ok()?;
    match client.call(NodeRequest::Status).ok()? {
        NodeResponse::Status { replicas, .. } => Some(
            replicas
                .into_iter()
                .map(|replica| (replica.partition, replica.role))
                .collect(),
        ),
        _ => None,
    }
}

// ----- The workload --------------------------------------------------------------------------

const TABLE: &str = "faults";

fn register_key(key: u64) -> Json {
    json!({"k": {"S": format!("register-{key}")}})
}

/// The register value an item holds (None when there is no item).
fn register_value(item: Option<&Json>) -> Option<u64> {
    item.and_then(|item| item["v"]["N"].as_str())
        .map(|text| text.parse().expect("register values are integers"))
}

/// What one call told the client.
enum Answer {
    Success(Json),
    /// DynamoDB refused it; nothing was applied.
    Refused(ClientError),
    /// It may or may not have been applied.
    Unknown,
}

fn call(client: &Client, operation: Operation, body: &Json) -> Answer {
    match client.call(operation, body) {
        Ok(response) => Answer::Success(response),
        Err(error) if error.outcome_unknown() => Answer::Unknown,
        Err(error) => Answer::Refused(error),
    }
}

/// Turns one register operation's answer into a history entry (None: it tells nothing).
/// A refused conditional update returns the item it was refused against (ALL_OLD), so it is a
/// read of that value; that makes a write nobody else saw visible to the checker.
fn history_entry(
    request: &RegisterRequest,
    answer: &Answer,
    invoked_nanos: u64,
    returned_nanos: u64,
) -> Option<HistoryOperation> {
    let (kind, returned) = match (request, answer) {
        (RegisterRequest::Put { value }, Answer::Success(_)) => {
            (OperationKind::Write { value: *value }, Some(returned_nanos))
        }
        (RegisterRequest::Put { value }, Answer::Unknown) => {
            (OperationKind::Write { value: *value }, None)
        }
        (RegisterRequest::Read, Answer::Success(response)) => (
            OperationKind::Read {
                observed: register_value(response.get("Item")),
            },
            Some(returned_nanos),
        ),
        (RegisterRequest::CompareAndSet { expected, new }, Answer::Success(_)) => (
            OperationKind::CompareAndSet {
                expected: *expected,
                new: *new,
                succeeded: Some(true),
            },
            Some(returned_nanos),
        ),
        (
            RegisterRequest::CompareAndSet { .. },
            Answer::Refused(ClientError::Service {
                type_name, item, ..
            }),
        ) if type_name == "ConditionalCheckFailedException" => (
            OperationKind::Read {
                observed: register_value(item.as_ref()),
            },
            Some(returned_nanos),
        ),
        (RegisterRequest::CompareAndSet { expected, new }, Answer::Unknown) => (
            OperationKind::CompareAndSet {
                expected: *expected,
                new: *new,
                succeeded: None,
            },
            None,
        ),
        _ => return None,
    };
    Some(HistoryOperation {
        kind,
        invoked_nanos,
        returned_nanos: returned,
        took_effect_at: None,
    })
}

enum RegisterRequest {
    Put { value: u64 },
    Read,
    CompareAndSet { expected: Option<u64>, new: u64 },
}

impl RegisterRequest {
    fn to_call(&self, key: u64) -> (Operation, Json) {
        let mut item = register_key(key);
        match self {
            RegisterRequest::Put { value } => {
                item["v"] = json!({"N": value.to_string()});
                (
                    Operation::PutItem,
                    json!({"TableName": TABLE, "Item": item}),
                )
            }
            RegisterRequest::Read => (
                Operation::GetItem,
                json!({"TableName": TABLE, "Key": item, "ConsistentRead": true}),
            ),
            RegisterRequest::CompareAndSet { expected, new } => {
                let mut body = json!({
                    "TableName": TABLE,
                    "Key": item,
                    "UpdateExpression": "SET v = :new",
                    "ExpressionAttributeValues": {":new": {"N": new.to_string()}},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                });
                match expected {
                    Some(expected) => {
                        body["ConditionExpression"] = json!("v = :expected");
                        body["ExpressionAttributeValues"][":expected"] =
                            json!({"N": expected.to_string()});
                    }
                    None => body["ConditionExpression"] = json!("attribute_not_exists(k)"),
                }
                (Operation::UpdateItem, body)
            }
        }
    }
}

#[derive(Default)]
struct Recorded {
    histories: BTreeMap<u64, Vec<HistoryOperation>>,
    /// Inserted keys that were acknowledged, with the value written.
    inserts_acknowledged: Vec<(String, u64)>,
    operations: u64,
    unknown_outcomes: u64,
    refused: BTreeMap<String, u64>,
    /// When each register key last got a definite answer, from any worker. Keys live on
    /// different partitions, and every worker keeps touching every key, so the longest gap on
    /// one key is how long its partition stopped (a worker's own gaps would hide it: a worker
    /// that times out on one partition goes on to the others).
    last_definite: BTreeMap<u64, Instant>,
    longest_stall: Duration,
    longest_stall_key: u64,
}

impl Recorded {
    fn note_definite(&mut self, key: u64) {
        let now = Instant::now();
        if let Some(previous) = self.last_definite.insert(key, now) {
            self.note_gap(key, now - previous);
        }
    }

    fn note_gap(&mut self, key: u64, gap: Duration) {
        if gap > self.longest_stall {
            self.longest_stall = gap;
            self.longest_stall_key = key;
        }
    }

    /// A key that stopped answering for good has an open gap at the end of the run.
    fn close_gaps(&mut self) {
        let open: Vec<(u64, Duration)> = self
            .last_definite
            .iter()
            .map(|(key, at)| (*key, at.elapsed()))
            .collect();
        for (key, gap) in open {
            self.note_gap(key, gap);
        }
    }
}

fn client_for(native: SocketAddr, seed: u64) -> Client {
    let mut config = ClientConfig::new(native);
    config.connections = 1;
    config.request_timeout = REQUEST_TIMEOUT;
    // Each attempt is recorded on its own: a retried write could otherwise take effect twice
    // in the history under one invocation.
    config.retry = RetryPolicy::none();
    config.seed = seed;
    Client::connect(config).expect("the router's native port accepts connections")
}

fn run_worker(
    worker: u64,
    native: SocketAddr,
    origin: Instant,
    stop: Arc<AtomicBool>,
    recorded: Arc<Mutex<Recorded>>,
) {
    let client = client_for(native, worker);
    let mut rng = SeededRng::new(0x5107_0000 + worker);
    let mut last_seen: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    let mut counter = 0u64;
    while !stop.load(Ordering::SeqCst) {
        counter += 1;
        // Values are unique across workers, so a read names the write it saw.
        let fresh = worker * 1_000_000_000 + counter;
        if counter.is_multiple_of(INSERT_EVERY) {
            let key = format!("insert-{worker}-{counter}");
            let body = json!({"TableName": TABLE,
                "Item": {"k": {"S": key.clone()}, "v": {"N": fresh.to_string()}}});
            let answer = call(&client, Operation::PutItem, &body);
            let mut recorded = recorded.lock().unwrap();
            recorded.operations += 1;
            match answer {
                Answer::Success(_) => recorded.inserts_acknowledged.push((key, fresh)),
                Answer::Unknown => recorded.unknown_outcomes += 1,
                Answer::Refused(error) => note_refused(&mut recorded, &error),
            }
            continue;
        }
        let key = rng.below(REGISTER_KEYS);
        let request = match rng.below(5) {
            0 | 1 => RegisterRequest::Put { value: fresh },
            2 | 3 => RegisterRequest::Read,
            _ => RegisterRequest::CompareAndSet {
                expected: last_seen.get(&key).copied().flatten(),
                new: fresh,
            },
        };
        let (operation, body) = request.to_call(key);
        let invoked = origin.elapsed().as_nanos() as u64;
        let answer = call(&client, operation, &body);
        let returned = origin.elapsed().as_nanos() as u64;
        let entry = history_entry(&request, &answer, invoked, returned);
        if let Some(HistoryOperation {
            kind: OperationKind::Read { observed },
            ..
        }) = &entry
        {
            last_seen.insert(key, *observed);
        }
        let mut recorded = recorded.lock().unwrap();
        recorded.operations += 1;
        match &answer {
            Answer::Unknown => recorded.unknown_outcomes += 1,
            Answer::Refused(error) => {
                let conditional = error.exception_name() == Some("ConditionalCheckFailedException");
                if conditional {
                    recorded.note_definite(key);
                } else {
                    note_refused(&mut recorded, error);
                }
            }
            Answer::Success(_) => recorded.note_definite(key),
        }
        if let Some(entry) = entry {
            recorded.histories.entry(key).or_default().push(entry);
        }
    }
}

fn note_refused(recorded: &mut Recorded, error: &ClientError) {
    let name = error
        .exception_name()
        .map_or_else(|| format!("{error}"), str::to_string);
    *recorded.refused.entry(name).or_default() += 1;
}

/// The inserts that were acknowledged but are missing or hold another value.
fn lost_writes(
    acknowledged: &[(String, u64)],
    found: &BTreeMap<String, Option<u64>>,
) -> Vec<String> {
    acknowledged
        .iter()
        .filter(|(key, value)| found.get(key).copied().flatten() != Some(*value))
        .map(|(key, _)| key.clone())
        .collect()
}

/// Calls until a definite answer comes (the healed cluster may still be electing).
fn call_until_definite(client: &Client, operation: Operation, body: &Json) -> Result<Json, String> {
    let deadline = Instant::now() + FINAL_READ_DEADLINE;
    loop {
        match client.call(operation, body) {
            Ok(response) => return Ok(response),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!(
                    "no answer to {operation:?} {body} in {FINAL_READ_DEADLINE:?}: {error}"
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn create_table(native: SocketAddr) {
    let client = client_for(native, 99);
    call_until_definite(
        &client,
        Operation::CreateTable,
        &json!({
            "TableName": TABLE,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
        }),
    )
    .expect("CreateTable answers");
}

/// Items written before the faults start, so that every partition's snapshot spans many
/// chunks (`shoal_partition::replica::SNAPSHOT_CHUNK_ITEMS_MAX` items each) and a transfer to
/// a dead follower cannot fit in the bus's snapshot queue.
const PRELOAD_ITEMS: u64 = 8_000;
/// DynamoDB's BatchWriteItem limit.
const BATCH_WRITE_ITEMS_MAX: u64 = 25;

fn preload(native: SocketAddr) -> Vec<(String, u64)> {
    let client = client_for(native, 98);
    let mut written = Vec::new();
    for first in (0..PRELOAD_ITEMS).step_by(BATCH_WRITE_ITEMS_MAX as usize) {
        let batch: Vec<(String, u64)> = (first..first + BATCH_WRITE_ITEMS_MAX)
            .map(|index| (format!("preload-{index}"), index))
            .collect();
        let mut requests: Vec<Json> = batch
            .iter()
            .map(|(key, value)| {
                json!({"PutRequest": {"Item": {"k": {"S": key}, "v": {"N": value.to_string()},
                    "padding": {"S": "p".repeat(100)}}}})
            })
            .collect();
        // Unprocessed items are sent again until none are left.
        while !requests.is_empty() {
            let response = call_until_definite(
                &client,
                Operation::BatchWriteItem,
                &json!({"RequestItems": {TABLE: requests}}),
            )
            .expect("BatchWriteItem answers");
            requests = response["UnprocessedItems"][TABLE]
                .as_array()
                .cloned()
                .unwrap_or_default();
        }
        written.extend(batch);
    }
    written
}

// ----- The nemesis ---------------------------------------------------------------------------

#[derive(Default)]
struct Faults {
    kills: u64,
    leader_kills: u64,
    pauses: u64,
    restarts: u64,
    long_outage: Duration,
}

struct Phases {
    long_outage: Duration,
    kill_loop: Duration,
}

fn run_nemesis(cluster: &mut Cluster, rng: &mut SeededRng, faults: &mut Faults, phases: &Phases) {
    let sleep = std::thread::sleep;
    sleep(Duration::from_secs(3));
    // SIGKILL and restart of a random node.
    for _ in 0..3 {
        let victim = rng.below(NODES as u64) as usize;
        eprintln!("nemesis: kill node {}", cluster.nodes[victim].id);
        cluster.kill_node(victim);
        faults.kills += 1;
        sleep(Duration::from_secs(2));
        cluster.restart_node(victim);
        faults.restarts += 1;
        sleep(Duration::from_secs(3));
    }
    // SIGKILL of the node that leads the most partitions.
    for _ in 0..2 {
        let victim = cluster
            .busiest_leader()
            .expect("some node leads partitions");
        eprintln!("nemesis: kill leader node {}", cluster.nodes[victim].id);
        cluster.kill_node(victim);
        faults.leader_kills += 1;
        sleep(Duration::from_secs(3));
        cluster.restart_node(victim);
        faults.restarts += 1;
        sleep(Duration::from_secs(3));
    }
    // SIGSTOP for several seconds: first the busiest leader, then a random node.
    for round in 0..2 {
        let victim = if round == 0 {
            cluster
                .busiest_leader()
                .expect("some node leads partitions")
        } else {
            rng.below(NODES as u64) as usize
        };
        eprintln!("nemesis: pause node {}", cluster.nodes[victim].id);
        cluster.signal_node(victim, Signal::SIGSTOP);
        faults.pauses += 1;
        sleep(Duration::from_secs(5));
        cluster.signal_node(victim, Signal::SIGCONT);
        sleep(Duration::from_secs(3));
    }
    // One node down across many checkpoints of its peers.
    let victim = rng.below(NODES as u64) as usize;
    eprintln!("nemesis: node {} down for long", cluster.nodes[victim].id);
    let down = Instant::now();
    cluster.kill_node(victim);
    faults.kills += 1;
    sleep(phases.long_outage);
    cluster.restart_node(victim);
    faults.long_outage = down.elapsed();
    faults.restarts += 1;
    sleep(Duration::from_secs(5));
    // Kills again and again while the WAL rings wrap.
    let started = Instant::now();
    while started.elapsed() < phases.kill_loop {
        let victim = rng.below(NODES as u64) as usize;
        cluster.kill_node(victim);
        faults.kills += 1;
        sleep(Duration::from_millis(1500));
        cluster.restart_node(victim);
        faults.restarts += 1;
        sleep(Duration::from_millis(1500));
    }
    sleep(Duration::from_secs(3));
}

fn start_watchdog(pids: Arc<Mutex<BTreeSet<u32>>>, done: Arc<AtomicBool>, limit: Duration) {
    std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < limit {
            if done.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for pid in pids.lock().unwrap().iter() {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        eprintln!("watchdog: the process fault test still runs after {limit:?}");
        std::process::abort();
    });
}

fn write_history(path: &Path, key: u64, history: &[HistoryOperation]) {
    let lines: Vec<String> = history
        .iter()
        .map(|operation| format!("{operation:?}"))
        .collect();
    std::fs::write(path.join(format!("history-{key}.txt")), lines.join("\n")).unwrap();
}

#[test]
fn a_majority_keeps_serving_and_nothing_is_lost_under_process_faults() {
    let pids = Arc::new(Mutex::new(BTreeSet::new()));
    let done = Arc::new(AtomicBool::new(false));
    let phases = Phases {
        long_outage: seconds_from_environment("SHOAL_FAULT_OUTAGE_SECONDS", LONG_OUTAGE_DEFAULT),
        kill_loop: seconds_from_environment("SHOAL_FAULT_KILL_LOOP_SECONDS", KILL_LOOP_DEFAULT),
    };
    start_watchdog(
        pids.clone(),
        done.clone(),
        WATCHDOG_BASE + phases.long_outage + phases.kill_loop,
    );
    let seed = std::env::var("SHOAL_FAULT_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(shoal_client::retry::jitter_seed);
    eprintln!("process faults: seed {seed} (SHOAL_FAULT_SEED={seed} replays the nemesis order)");
    let mut rng = SeededRng::new(seed);
    let mut cluster = Cluster::start(pids);
    create_table(cluster.native);
    let preloaded = preload(cluster.native);

    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (stop, recorded, native) = (stop.clone(), recorded.clone(), cluster.native);
            std::thread::spawn(move || run_worker(worker, native, origin, stop, recorded))
        })
        .collect();
    let mut faults = Faults::default();
    run_nemesis(&mut cluster, &mut rng, &mut faults, &phases);
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().unwrap();
    }
    let run_time = origin.elapsed();
    recorded.lock().unwrap().close_gaps();

    // The cluster is whole again: a final strong read of every register joins its history, and
    // every acknowledged insert must be there.
    let client = client_for(cluster.native, 100);
    let mut recorded = Arc::try_unwrap(recorded)
        .ok()
        .expect("workers are done")
        .into_inner()
        .unwrap();
    recorded.inserts_acknowledged.extend(preloaded);
    for key in 0..REGISTER_KEYS {
        let invoked = origin.elapsed().as_nanos() as u64;
        let request = RegisterRequest::Read;
        let (operation, body) = request.to_call(key);
        let response = call_until_definite(&client, operation, &body)
            .unwrap_or_else(|error| panic!("after healing: {error}\n{}", describe_nodes(&cluster)));
        let returned = origin.elapsed().as_nanos() as u64;
        let entry = history_entry(&request, &Answer::Success(response), invoked, returned)
            .expect("a successful read is history");
        recorded.histories.entry(key).or_default().push(entry);
    }
    let mut found = BTreeMap::new();
    for (key, _) in &recorded.inserts_acknowledged {
        let body = json!({"TableName": TABLE, "Key": {"k": {"S": key}}, "ConsistentRead": true});
        let response = call_until_definite(&client, Operation::GetItem, &body)
            .unwrap_or_else(|error| panic!("after healing: {error}\n{}", describe_nodes(&cluster)));
        found.insert(key.clone(), register_value(response.get("Item")));
    }
    let lost = lost_writes(&recorded.inserts_acknowledged, &found);
    let mut violations = Vec::new();
    let mut undecided = Vec::new();
    for (key, history) in &recorded.histories {
        match check(history) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable => {
                write_history(cluster.directory.path(), *key, history);
                violations.push(format!("register-{key}"));
            }
            // The search gave up (a stretch of history with no quiet moment was too long):
            // that key proves nothing either way, and is reported.
            Verdict::Unknown => undecided.push(*key),
        }
    }
    done.store(true, Ordering::SeqCst);
    eprintln!(
        "process faults: {:.0} s, {} operations ({} inserts acknowledged with the preload, {} outcomes unknown, \
         refused {:?}); faults: {} kills ({} of the busiest leader), {} pauses, {} restarts, one \
         node down for {:.0} s; {} lost writes, {} linearizability violations ({} of {} keys \
         undecided); longest stall {:.2} s (register-{})",
        run_time.as_secs_f64(),
        recorded.operations,
        recorded.inserts_acknowledged.len(),
        recorded.unknown_outcomes,
        recorded.refused,
        faults.kills + faults.leader_kills,
        faults.leader_kills,
        faults.pauses,
        faults.restarts,
        faults.long_outage.as_secs_f64(),
        lost.len(),
        violations.len(),
        undecided.len(),
        recorded.histories.len(),
        recorded.longest_stall.as_secs_f64(),
        recorded.longest_stall_key,
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(
        undecided.len() * 2 < recorded.histories.len(),
        "the checker decided too few keys to mean anything: {undecided:?} undecided"
    );
    if !violations.is_empty() {
        // Keep the histories for the person who reads the failure.
        let kept = cluster.directory.path().to_path_buf();
        std::mem::forget(std::mem::replace(
            &mut cluster.directory,
            tempfile::tempdir().unwrap(),
        ));
        panic!(
            "not linearizable: {violations:?} (histories in {})",
            kept.display()
        );
    }
    assert!(
        recorded.longest_stall < STALL_BOUND,
        "register-{} went {:?} without a definite answer (bound {STALL_BOUND:?}): its partition \
         stopped while it kept a majority",
        recorded.longest_stall_key,
        recorded.longest_stall
    );
    assert!(
        recorded.refused.is_empty(),
        "requests refused for reasons other than their condition: {:?}",
        recorded.refused
    );
}

// ----- The checks can fail -------------------------------------------------------------------

/// A read that returns a value overwritten before it started is not linearizable, and the
/// history the workload records says so.
#[test]
fn the_checker_catches_a_stale_read() {
    let put = |value| RegisterRequest::Put { value };
    let ok = Answer::Success(json!({}));
    let history = vec![
        history_entry(&put(1), &ok, 0, 10).unwrap(),
        history_entry(&put(2), &ok, 20, 30).unwrap(),
        history_entry(
            &RegisterRequest::Read,
            &Answer::Success(json!({"Item": {"k": {"S": "register-0"}, "v": {"N": "1"}}})),
            40,
            50,
        )
        .unwrap(),
    ];
    assert_eq!(check(&history), Verdict::NotLinearizable);
}

/// A refused conditional update that saw a value no write produced at that time is caught
/// too: the refusal is recorded as a read of the item it returned.
#[test]
fn the_checker_catches_a_refusal_against_a_state_that_never_was() {
    let ok = Answer::Success(json!({}));
    let refused = |value: u64| {
        Answer::Refused(ClientError::Service {
            type_name: "ConditionalCheckFailedException".to_string(),
            message: "The conditional request failed".to_string(),
            item: Some(json!({"k": {"S": "register-0"}, "v": {"N": value.to_string()}})),
        })
    };
    let cas = RegisterRequest::CompareAndSet {
        expected: Some(1),
        new: 3,
    };
    let history = vec![
        history_entry(&RegisterRequest::Put { value: 1 }, &ok, 0, 10).unwrap(),
        history_entry(&cas, &refused(7), 20, 30).unwrap(),
    ];
    assert_eq!(check(&history), Verdict::NotLinearizable);
    // The same refusal reporting the value really there is fine.
    let history = vec![
        history_entry(&RegisterRequest::Put { value: 1 }, &ok, 0, 10).unwrap(),
        history_entry(&RegisterRequest::Put { value: 2 }, &ok, 12, 15).unwrap(),
        history_entry(&cas, &refused(2), 20, 30).unwrap(),
    ];
    assert_eq!(check(&history), Verdict::Linearizable);
}

/// A write whose outcome is unknown may or may not have happened, both ways.
#[test]
fn an_unknown_outcome_may_or_may_not_have_happened() {
    let ok = Answer::Success(json!({}));
    let read = |value: u64| {
        Answer::Success(json!({"Item": {"k": {"S": "register-0"}, "v": {"N": value.to_string()}}}))
    };
    for observed in [1, 2] {
        let history = vec![
            history_entry(&RegisterRequest::Put { value: 1 }, &ok, 0, 10).unwrap(),
            history_entry(&RegisterRequest::Put { value: 2 }, &Answer::Unknown, 20, 0).unwrap(),
            history_entry(&RegisterRequest::Read, &read(observed), 40, 50).unwrap(),
        ];
        assert_eq!(
            check(&history),
            Verdict::Linearizable,
            "observed {observed}"
        );
    }
}

#[test]
fn a_lost_acknowledged_write_is_reported() {
    let acknowledged = vec![
        ("a".to_string(), 1),
        ("b".to_string(), 2),
        ("c".to_string(), 3),
    ];
    let found = BTreeMap::from([
        ("a".to_string(), Some(1)),
        ("b".to_string(), None),
        ("c".to_string(), Some(4)),
    ]);
    assert_eq!(lost_writes(&acknowledged, &found), vec!["b", "c"]);
}
