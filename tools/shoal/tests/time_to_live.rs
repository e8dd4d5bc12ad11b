//! Time to Live against three real `shoal node` processes (one shard each, sweeping every
//! second) and an in-process router: UpdateTimeToLive enables TTL; the nodes learn it from the
//! metadata group and the partition leaders delete the expired items within a bound of the
//! sweep period, while an item whose TTL was extended, and items that never expire, are kept;
//! after every node is killed and restarted the setting is still there and expiry goes on.
//! Runs under a watchdog that kills the processes and fails loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::{LocalExecutorBuilder, Placement};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};
use shoal_bus::BlockingClient;
use shoal_router::{NodeAddress, Router, RouterConfig};
use shoal_wire::messages::NodeRequest;

const NODES: usize = 3;
const ELECTION_TIMEOUT_MS: u64 = 400;
const SWEEP_PERIOD_SECONDS: u64 = 1;
/// An expired item is gone within this after TTL is enabled (or the nodes restart): the nodes
/// read the setting within a sweep period, the next pass starts within another, and a pass
/// over this test's few items is a handful of steps; the rest is slack for a loaded machine.
const EXPIRY_BOUND: Duration = Duration::from_secs(20);
const WATCHDOG: Duration = Duration::from_secs(180);
const ITEMS_PER_KIND: usize = 20;

struct Cluster {
    directory: tempfile::TempDir,
    admins: Vec<u16>,
    children: Vec<Option<Child>>,
    nodes: Vec<NodeAddress>,
    pids: Arc<Mutex<Vec<u32>>>,
    done: Arc<AtomicBool>,
}

impl Cluster {
    fn start() -> Cluster {
        let bases = common::free_port_blocks(NODES, 1);
        let admins = common::free_ports(NODES);
        let nodes: Vec<NodeAddress> = (0..NODES)
            .map(|index| NodeAddress {
                id: index as u64 + 1,
                address: SocketAddr::from(([127, 0, 0, 1], bases[index])),
            })
            .collect();
        let pids = Arc::new(Mutex::new(Vec::<u32>::new()));
        let done = {
            let pids = pids.clone();
            common::watchdog(WATCHDOG, "time to live test", move || {
                for pid in pids.lock().unwrap().iter() {
                    let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
                }
            })
        };
        let mut cluster = Cluster {
            directory: tempfile::tempdir().unwrap(),
            admins,
            children: (0..NODES).map(|_| None).collect(),
            nodes,
            pids,
            done,
        };
        for index in 0..NODES {
            cluster.start_node(index);
        }
        cluster
    }

    fn start_node(&mut self, index: usize) {
        let node = self.nodes[index];
        let peers: Vec<String> = self
            .nodes
            .iter()
            .filter(|peer| peer.id != node.id)
            .map(|peer| format!("--peer={}={}", peer.id, peer.address))
            .collect();
        let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("node")
            .arg(format!("--node-id={}", node.id))
            .arg(format!(
                "--data-dir={}",
                self.directory
                    .path()
                    .join(format!("node-{}", node.id))
                    .display()
            ))
            .arg(format!("--listen={}", node.address))
            .arg(format!("--admin=127.0.0.1:{}", self.admins[index]))
            .arg("--cache-mib=4")
            .arg("--wal-segment-mib=16")
            .arg("--wal-segments=4")
            .arg(format!("--election-timeout-ms={ELECTION_TIMEOUT_MS}"))
            .arg(format!("--ttl-sweep-period-seconds={SWEEP_PERIOD_SECONDS}"))
            .args(peers)
            .env("SHOAL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start shoal node");
        self.pids.lock().unwrap().push(child.id());
        self.children[index] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut client) = BlockingClient::connect(node.address, Duration::from_secs(2))
                && client.call(NodeRequest::Status).is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not come up",
                node.id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill_node(&mut self, index: usize) {
        let mut child = self.children[index].take().expect("the node runs");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.done.store(true, Ordering::SeqCst);
    }
}

/// The sum over the nodes of `shoal_ttl_deletes_proposed_total` in their /metrics.
fn ttl_deletes_in_metrics(admins: &[u16]) -> u64 {
    use std::io::{Read, Write};
    let mut total = 0;
    for port in admins {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", *port)) else {
            continue;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        total += response
            .lines()
            .filter(|line| line.starts_with("shoal_ttl_deletes_proposed_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

fn on_router_core(test: impl std::future::Future<Output = ()>) {
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("router-test")
        .io_memory(1 << 20)
        .make()
        .unwrap()
        .run(async move {
            glommio::timer::sleep(Duration::from_millis(20)).await;
            test.await;
        });
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Retries `call` while the cluster settles (elections after a start or a restart).
async fn until_ok<F, Fut>(what: &str, mut call: F) -> Json
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Json, shoal_router::DynamoError>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Ok(body) => return body,
            Err(error) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{what} failed for 30 s: {error}"
                );
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn put(router: &Router, pk: &str, expires: Option<u64>) {
    let mut item = json!({"pk": {"S": pk}, "payload": {"S": "data"}});
    if let Some(expires) = expires {
        item["expires"] = json!({"N": expires.to_string()});
    }
    let body = json!({"TableName": "sessions", "Item": item});
    until_ok("PutItem", || router.put_item(body.clone())).await;
}

async fn present(router: &Router, pk: &str) -> Option<Json> {
    let body = json!({
        "TableName": "sessions",
        "Key": {"pk": {"S": pk}},
        "ConsistentRead": true,
    });
    let got = until_ok("GetItem", || router.get_item(body.clone())).await;
    got.get("Item").cloned()
}

/// Waits until none of `keys` is present; returns how long that took.
async fn await_gone(router: &Router, keys: &[String]) -> Duration {
    let started = Instant::now();
    loop {
        let mut left = 0;
        for key in keys {
            if present(router, key).await.is_some() {
                left += 1;
            }
        }
        if left == 0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < EXPIRY_BOUND,
            "{left} expired items still present after {EXPIRY_BOUND:?}"
        );
        glommio::timer::sleep(Duration::from_millis(250)).await;
    }
}

#[test]
fn expired_items_go_within_a_bound_extended_ones_stay_and_the_setting_survives_restarts() {
    let mut cluster = Cluster::start();
    let nodes = cluster.nodes.clone();
    let admins = cluster.admins.clone();
    let mut config = RouterConfig::new(nodes.clone());
    config.seed = 18;
    on_router_core(async move {
        let router = Router::new(config.clone()).unwrap();
        router.bootstrap(1).await.unwrap();
        router
            .create_table(json!({
                "TableName": "sessions",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
            }))
            .await
            .unwrap();
        let now = unix_now();
        let expired: Vec<String> = (0..ITEMS_PER_KIND)
            .map(|i| format!("expired-{i}"))
            .collect();
        for key in &expired {
            put(&router, key, Some(now - 60)).await;
        }
        for i in 0..ITEMS_PER_KIND {
            put(&router, &format!("future-{i}"), Some(now + 3_600)).await;
            put(&router, &format!("forever-{i}"), None).await;
        }
        // Without TTL nothing expires: the items are there a few sweep periods later.
        glommio::timer::sleep(Duration::from_secs(3 * SWEEP_PERIOD_SECONDS)).await;
        assert!(present(&router, &expired[0]).await.is_some());

        router
            .update_time_to_live(json!({
                "TableName": "sessions",
                "TimeToLiveSpecification": {"Enabled": true, "AttributeName": "expires"},
            }))
            .await
            .unwrap();
        // An item about to expire, extended at once: kept, with its new expiry.
        let soon = unix_now() + 2;
        put(&router, "extended", Some(soon)).await;
        let update = json!({
            "TableName": "sessions",
            "Key": {"pk": {"S": "extended"}},
            "UpdateExpression": "SET expires = :later",
            "ExpressionAttributeValues": {":later": {"N": (soon + 3_600).to_string()}},
        });
        until_ok("UpdateItem", || router.update_item(update.clone())).await;
        put(&router, "control", Some(soon)).await;
        let took = await_gone(&router, &expired).await;
        eprintln!("expired items gone {took:?} after TTL was enabled");
        await_gone(&router, &["control".to_string()]).await;
        let extended = present(&router, "extended")
            .await
            .expect("extended item kept");
        assert_eq!(extended["expires"]["N"], (soon + 3_600).to_string());
        for i in 0..ITEMS_PER_KIND {
            assert!(present(&router, &format!("future-{i}")).await.is_some());
            assert!(present(&router, &format!("forever-{i}")).await.is_some());
        }
        // The leaders' metrics count the deletes (published once a second).
        let expected = ITEMS_PER_KIND as u64 + 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let counted = ttl_deletes_in_metrics(&admins);
            if counted >= expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "metrics count {counted} TTL deletes, expected {expected}"
            );
            glommio::timer::sleep(Duration::from_millis(250)).await;
        }
        drop(router);

        for index in 0..NODES {
            cluster.kill_node(index);
        }
        // The router's connections see the nodes close theirs and close in turn (on this
        // executor), so the nodes' ports are free to bind again: a connection left open here
        // would hold its node's side in FIN_WAIT2 and the port with it.
        glommio::timer::sleep(Duration::from_secs(1)).await;
        for index in 0..NODES {
            cluster.start_node(index);
        }
        let router = Router::new(config).unwrap();
        router.bootstrap(1).await.unwrap();
        let described = until_ok("DescribeTimeToLive", || {
            router.describe_time_to_live(json!({"TableName": "sessions"}))
        })
        .await;
        assert_eq!(
            described["TimeToLiveDescription"],
            json!({"TimeToLiveStatus": "ENABLED", "AttributeName": "expires"})
        );
        let late: Vec<String> = (0..ITEMS_PER_KIND).map(|i| format!("late-{i}")).collect();
        let now = unix_now();
        for key in &late {
            put(&router, key, Some(now - 1)).await;
        }
        let took = await_gone(&router, &late).await;
        eprintln!("expired items gone {took:?} after the restart");
        assert!(present(&router, "extended").await.is_some());
        assert!(present(&router, "forever-0").await.is_some());
    });
}
