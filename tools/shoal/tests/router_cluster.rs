//! The router library (shoal-router) against three real `shoal node` processes with two shards
//! each: bootstrap of the metadata group, CreateTable (four partitions over both shards), 200
//! items written and read back, Query, batches, a failed condition, Scan pages of a small Limit
//! and parallel segments finding each item exactly once, and DeleteTable; a node killed under
//! writes; a provisioned table throttling until UpdateTable raises its capacity, which a second
//! router then reads (with the table's tags) from the metadata group; CreateTable with a node
//! down (the table serves on the other two, and the repair pass creates the missing replicas
//! once the node is back, which then catch up); CreateTable without a majority of live
//! replicas (it fails, leaves nothing behind, and succeeds when retried after the nodes
//! return); batches over the ten partitions of a table on five nodes, every item served, then
//! with two nodes killed only the items of the partitions left without a majority unprocessed;
//! a router killed (by fault injection) after each step of CreateTable and DeleteTable, every
//! table then finished by another router's repair pass, its name reusable and no replica
//! left; the replicas of a table deleted while a node was down, collected when it returns.
//! The test runs under a watchdog that kills the processes and fails loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};
use shoal_bus::BlockingClient;
use shoal_router::router::ControlStep;
use shoal_router::{DynamoError, NodeAddress, Router, RouterConfig};
use shoal_wire::messages::{NodeRequest, NodeResponse};

const SHARDS: u16 = 2;
const ELECTION_TIMEOUT_MS: u64 = 400;
const WATCHDOG: Duration = Duration::from_secs(240);
const ITEMS: usize = 200;
const SCAN_LIMIT: u64 = 7;

/// `count` bases, each with `SHARDS` consecutive free ports after it (shard i listens on
/// base + i), plus `count` single admin ports.
fn free_port_blocks(count: usize) -> (Vec<u16>, Vec<u16>) {
    (
        common::free_port_blocks(count, SHARDS),
        common::free_ports(count),
    )
}

struct Cluster {
    directory: tempfile::TempDir,
    admins: Vec<u16>,
    /// Per node slot, its process while it runs.
    children: Vec<Option<Child>>,
    nodes: Vec<NodeAddress>,
    /// The slots started with `--peer` flags (the cluster's first nodes, peers of each other);
    /// the others join (`Cluster::join_node`).
    founders: usize,
    /// Every node process started, for the watchdog.
    pids: Arc<Mutex<Vec<u32>>>,
    done: Arc<AtomicBool>,
}

impl Cluster {
    /// Three nodes, all running.
    fn start() -> Cluster {
        Cluster::start_some(3, 3)
    }

    /// `founders` nodes started as a cluster (peers of each other), and `joiners` slots more,
    /// not started: each joins the running cluster when started.
    fn start_growing(founders: usize, joiners: usize) -> Cluster {
        let mut cluster = Cluster::start_some(founders + joiners, 0);
        cluster.founders = founders;
        for index in 0..founders {
            cluster.start_node(index);
        }
        cluster
    }

    /// `slots` nodes known to each other (and to routers given `nodes`), the first `running`
    /// of them started.
    fn start_some(slots: usize, running: usize) -> Cluster {
        let (bases, admins) = free_port_blocks(slots);
        let directory = tempfile::tempdir().unwrap();
        let nodes: Vec<NodeAddress> = (0..slots)
            .map(|index| NodeAddress {
                id: index as u64 + 1,
                address: SocketAddr::from(([127, 0, 0, 1], bases[index])),
            })
            .collect();
        let pids = Arc::new(Mutex::new(Vec::new()));
        let done = {
            let pids = pids.clone();
            common::watchdog(WATCHDOG, "router cluster test", move || {
                for pid in pids.lock().unwrap().iter() {
                    let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
                }
            })
        };
        let mut cluster = Cluster {
            directory,
            admins,
            children: (0..slots).map(|_| None).collect(),
            nodes,
            founders: slots,
            pids,
            done,
        };
        for index in 0..running {
            cluster.start_node(index);
        }
        cluster
    }

    /// Starts node slot `index` (again, on its data directory, after a kill) and waits until
    /// every shard of it answers. A founder is started with the other founders as peers, any
    /// other slot with `--join` through the first node.
    fn start_node(&mut self, index: usize) {
        assert!(self.children[index].is_none(), "node slot {index} runs");
        let node = self.nodes[index];
        let cluster_flags: Vec<String> = if index < self.founders {
            self.nodes[..self.founders]
                .iter()
                .filter(|peer| peer.id != node.id)
                .map(|peer| format!("--peer={}={}", peer.id, peer.address))
                .collect()
        } else {
            vec![format!("--join={}", self.nodes[0].address)]
        };
        let child = self
            .node_command(
                node,
                &self.directory.path().join(format!("node-{}", node.id)),
                self.admins[index],
            )
            .args(&cluster_flags)
            .env("SHOAL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start shoal node");
        self.pids.lock().unwrap().push(child.id());
        self.children[index] = Some(child);
        // Restarts come right after a SIGKILL of the node's previous process, whose bus ports
        // the kernel may still hold for a while (its io_uring teardown): the node waits for
        // them itself (node.rs, `BUS_PORT_RELEASE_WAIT_MAX`), so exiting here is a failure.
        let deadline = Instant::now() + Duration::from_secs(60);
        assert!(
            self.wait_until_serving(node, index, deadline),
            "node {} exited while starting",
            node.id
        );
    }

    /// `shoal node` with the settings every test node gets, for `node` with its data in
    /// `data_dir` and its admin endpoint on `admin`.
    fn node_command(&self, node: NodeAddress, data_dir: &std::path::Path, admin: u16) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
        command
            .arg("node")
            .arg(format!("--node-id={}", node.id))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen={}", node.address))
            .arg(format!("--admin=127.0.0.1:{admin}"))
            .arg(format!("--shards={SHARDS}"))
            .arg("--cache-mib=4")
            .arg("--wal-segment-mib=16")
            .arg("--wal-segments=4")
            .arg(format!("--election-timeout-ms={ELECTION_TIMEOUT_MS}"));
        command
    }

    /// Waits until every shard of `node` (slot `index`) answers a status request; false if
    /// its process exited first. A joining node first joins (seed, metadata group) and
    /// recovering nodes replay their WAL, on a machine that may be busy with other tests: the
    /// bound is generous and only a failure waits it out.
    fn wait_until_serving(&mut self, node: NodeAddress, index: usize, deadline: Instant) -> bool {
        for shard in 0..SHARDS {
            let address = SocketAddr::new(node.address.ip(), node.address.port() + shard);
            loop {
                if let Ok(mut client) = BlockingClient::connect(address, Duration::from_secs(2))
                    && client.call(NodeRequest::Status).is_ok()
                {
                    break;
                }
                let exited = self.children[index]
                    .as_mut()
                    .is_some_and(|child| child.try_wait().ok().flatten().is_some());
                if exited {
                    self.children[index] = None;
                    return false;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {} shard {shard} did not come up",
                    node.id
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        true
    }

    /// SIGKILLs node slot `index`.
    fn kill_node(&mut self, index: usize) {
        let mut child = self.children[index]
            .take()
            .expect("the node is not running");
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

/// The replicas (partition ids) on every shard of `node`.
fn replicas_on(node: &NodeAddress) -> Vec<shoal_wire::messages::ReplicaStatus> {
    let mut replicas = Vec::new();
    for shard in 0..SHARDS {
        let address = SocketAddr::new(node.address.ip(), node.address.port() + shard);
        let mut client = BlockingClient::connect(address, Duration::from_secs(2)).unwrap();
        let NodeResponse::Status {
            replicas: on_shard, ..
        } = client.call(NodeRequest::Status).unwrap()
        else {
            panic!("a status request was not answered with a status");
        };
        replicas.extend(on_shard);
    }
    replicas
}

fn key(index: usize) -> String {
    format!("user-{index:04}")
}

fn put_body(index: usize) -> Json {
    json!({
        "TableName": "people",
        "Item": {"pk": {"S": key(index)}, "n": {"N": index.to_string()}},
    })
}

/// Runs `test` on a glommio executor in this thread, as a router core would.
fn on_router_core(test: impl std::future::Future<Output = ()>) {
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("router-test")
        .io_memory(1 << 20)
        .make()
        .unwrap()
        .run(async move {
            // kernel-notes/glommio-runtime.md: the first timer sleep can be slow; take it before any deadline runs.
            glommio::timer::sleep(Duration::from_millis(20)).await;
            test.await;
        });
}

/// Scans the whole table in pages of `SCAN_LIMIT` (one segment when `segment` is given) and
/// returns the keys seen, in order, and the number of pages.
async fn scan_keys(router: &Router, segment: Option<(u64, u64)>) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut start: Option<Json> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({"TableName": "people", "Limit": SCAN_LIMIT, "ConsistentRead": true});
        if let Some((segment, total)) = segment {
            body["Segment"] = json!(segment);
            body["TotalSegments"] = json!(total);
        }
        if let Some(start) = start.take() {
            body["ExclusiveStartKey"] = start;
        }
        let page = router.scan(body).await.unwrap();
        pages += 1;
        assert!(pages <= ITEMS * 2, "the scan does not end");
        let items = page["Items"].as_array().unwrap();
        assert!(items.len() as u64 <= SCAN_LIMIT);
        assert_eq!(page["Count"].as_u64().unwrap(), items.len() as u64);
        for item in items {
            keys.push(item["pk"]["S"].as_str().unwrap().to_string());
        }
        match page.get("LastEvaluatedKey") {
            Some(next) => start = Some(next.clone()),
            None => return (keys, pages),
        }
    }
}

fn assert_error(result: Result<Json, DynamoError>, type_name: &str) -> DynamoError {
    let error = result.expect_err("expected an error");
    assert_eq!(error.type_name, type_name, "{error}");
    error
}

#[test]
fn router_creates_a_table_writes_reads_scans_and_deletes_it() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = Cluster::start();
    let nodes = cluster.nodes.clone();
    let status_nodes = cluster.nodes.clone();
    on_router_core(async move {
        let mut config = RouterConfig::new(nodes);
        config.seed = 1;
        let router = Router::new(config).unwrap();
        let bootstrapped = router.bootstrap(SHARDS).await.unwrap();
        assert_eq!(bootstrapped.nodes.len(), 3);
        assert_eq!(bootstrapped.shards_per_node, SHARDS);
        // Bootstrap is idempotent.
        router.bootstrap(SHARDS).await.unwrap();

        let create = json!({
            "TableName": "people",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        });
        let created = router.create_table(create.clone()).await.unwrap();
        let description = &created["TableDescription"];
        assert_eq!(description["TableStatus"], "ACTIVE");
        assert_eq!(
            description["TableArn"],
            "arn:aws:dynamodb:us-east-1:000000000000:table/people"
        );
        assert_error(router.create_table(create).await, "ResourceInUseException");
        let partitions = router.table_partitions("people").await.unwrap();
        assert_eq!(partitions.len(), 4);
        let shards: BTreeSet<u16> = partitions.iter().map(|p| p.shard).collect();
        assert_eq!(shards, BTreeSet::from([0, 1]), "partitions use both shards");
        for partition in &partitions {
            assert_eq!(partition.replicas.len(), 3);
        }
        // A second table gets partition ids of its own, and ListTables pages by name.
        router
            .create_table(json!({
                "TableName": "orders",
                "AttributeDefinitions": [
                    {"AttributeName": "customer", "AttributeType": "S"},
                    {"AttributeName": "number", "AttributeType": "N"}
                ],
                "KeySchema": [
                    {"AttributeName": "customer", "KeyType": "HASH"},
                    {"AttributeName": "number", "KeyType": "RANGE"}
                ],
                "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
            }))
            .await
            .unwrap();
        let orders = router.table_partitions("orders").await.unwrap();
        let people_ids: BTreeSet<u64> = partitions.iter().map(|p| p.id).collect();
        let order_ids: BTreeSet<u64> = orders.iter().map(|p| p.id).collect();
        assert_eq!(order_ids.len(), 4);
        assert!(
            people_ids.is_disjoint(&order_ids),
            "{people_ids:?} {order_ids:?}"
        );
        assert!(
            !people_ids.contains(&0) && !order_ids.contains(&0),
            "0 is metadata"
        );
        let first_page = router.list_tables(json!({"Limit": 1})).await.unwrap();
        assert_eq!(first_page["TableNames"], json!(["orders"]));
        assert_eq!(first_page["LastEvaluatedTableName"], "orders");
        let second_page = router
            .list_tables(json!({"Limit": 1, "ExclusiveStartTableName": "orders"}))
            .await
            .unwrap();
        assert_eq!(second_page["TableNames"], json!(["people"]));
        assert!(second_page.get("LastEvaluatedTableName").is_none());
        router
            .put_item(json!({
                "TableName": "orders",
                "Item": {"customer": {"S": "c1"}, "number": {"N": "1"}},
            }))
            .await
            .unwrap();
        let orders_partitions: Vec<u64> = router
            .table_partitions("orders")
            .await
            .unwrap()
            .iter()
            .map(|partition| partition.id)
            .collect();
        router
            .delete_table(json!({"TableName": "orders"}))
            .await
            .unwrap();
        // Its replicas are gone from every node's shards, and only its.
        for node in &status_nodes {
            for shard in 0..SHARDS {
                let address = SocketAddr::new(node.address.ip(), node.address.port() + shard);
                let mut client = BlockingClient::connect(address, Duration::from_secs(2)).unwrap();
                let NodeResponse::Status { replicas, .. } =
                    client.call(NodeRequest::Status).unwrap()
                else {
                    panic!("a status request was not answered with a status");
                };
                assert!(
                    replicas
                        .iter()
                        .all(|replica| !orders_partitions.contains(&replica.partition)),
                    "a replica of the deleted table is still on node {} shard {shard}",
                    node.id
                );
            }
        }

        for index in 0..ITEMS {
            router.put_item(put_body(index)).await.unwrap();
        }
        for index in 0..ITEMS {
            let got = router
                .get_item(json!({
                    "TableName": "people",
                    "Key": {"pk": {"S": key(index)}},
                    "ConsistentRead": true,
                    "ReturnConsumedCapacity": "TOTAL",
                }))
                .await
                .unwrap();
            assert_eq!(got["Item"]["n"]["N"], index.to_string(), "item {index}");
            assert_eq!(got["ConsumedCapacity"]["TableName"], "people");
            assert!(got["ConsumedCapacity"]["CapacityUnits"].as_f64().unwrap() > 0.0);
        }
        let queried = router
            .query(json!({
                "TableName": "people",
                "KeyConditionExpression": "pk = :k",
                "ExpressionAttributeValues": {":k": {"S": key(17)}},
            }))
            .await
            .unwrap();
        assert_eq!(queried["Count"], 1);
        assert_eq!(queried["Items"][0]["n"]["N"], "17");

        // A failed condition comes back as DynamoDB's error, with the old item when asked.
        let failed = assert_error(
            router
                .put_item(json!({
                    "TableName": "people",
                    "Item": {"pk": {"S": key(3)}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }))
                .await,
            "ConditionalCheckFailedException",
        );
        assert_eq!(failed.item.unwrap()["n"]["N"], "3");
        let updated = router
            .update_item(json!({
                "TableName": "people",
                "Key": {"pk": {"S": key(5)}},
                "UpdateExpression": "ADD n :one",
                "ExpressionAttributeValues": {":one": {"N": "100"}},
                "ReturnValues": "UPDATED_NEW",
            }))
            .await
            .unwrap();
        assert_eq!(updated["Attributes"]["n"]["N"], "105");

        // Batches across partitions: 20 new items written, then read back with old ones.
        let writes: Vec<Json> = (ITEMS..ITEMS + 20)
            .map(|index| json!({"PutRequest": {"Item": put_body(index)["Item"].clone()}}))
            .collect();
        let written = router
            .batch_write_item(json!({"RequestItems": {"people": writes}}))
            .await
            .unwrap();
        assert_eq!(written["UnprocessedItems"], json!({}));
        let keys: Vec<Json> = (ITEMS - 10..ITEMS + 20)
            .map(|index| json!({"pk": {"S": key(index)}}))
            .collect();
        let read = router
            .batch_get_item(
                json!({"RequestItems": {"people": {"Keys": keys, "ConsistentRead": true}}}),
            )
            .await
            .unwrap();
        assert_eq!(read["Responses"]["people"].as_array().unwrap().len(), 30);
        assert_eq!(read["UnprocessedKeys"], json!({}));
        let deletes: Vec<Json> = (ITEMS..ITEMS + 20)
            .map(|index| json!({"DeleteRequest": {"Key": {"pk": {"S": key(index)}}}}))
            .collect();
        router
            .batch_write_item(json!({"RequestItems": {"people": deletes}}))
            .await
            .unwrap();

        // A paginated scan finds each item exactly once, in pages of at most SCAN_LIMIT.
        let (scanned, pages) = scan_keys(&router, None).await;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for key in &scanned {
            *seen.entry(key.clone()).or_default() += 1;
        }
        assert_eq!(
            scanned.len(),
            ITEMS,
            "scan returned {} items",
            scanned.len()
        );
        assert!(
            seen.values().all(|count| *count == 1),
            "duplicates in the scan"
        );
        let expected: BTreeSet<String> = (0..ITEMS).map(key).collect();
        assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), expected);
        assert!(pages >= ITEMS / SCAN_LIMIT as usize, "{pages} pages");
        // Parallel scan segments partition the items too.
        let mut segmented = Vec::new();
        for segment in 0..3 {
            segmented.extend(scan_keys(&router, Some((segment, 3))).await.0);
        }
        segmented.sort();
        assert_eq!(segmented, expected.iter().cloned().collect::<Vec<_>>());

        let described = router
            .describe_table(json!({"TableName": "people"}))
            .await
            .unwrap();
        assert_eq!(described["Table"]["TableStatus"], "ACTIVE");
        assert_eq!(described["Table"]["ItemCount"], ITEMS);
        // Every item holds at least its key and a number: the size estimate cannot be below.
        assert!(
            described["Table"]["TableSizeBytes"].as_u64().unwrap() > ITEMS as u64 * 8,
            "{described}"
        );

        let deleted = router
            .delete_table(json!({"TableName": "people"}))
            .await
            .unwrap();
        assert_eq!(deleted["TableDescription"]["TableStatus"], "DELETING");
        assert_error(
            router.describe_table(json!({"TableName": "people"})).await,
            "ResourceNotFoundException",
        );
        assert_error(
            router
                .get_item(json!({"TableName": "people", "Key": {"pk": {"S": key(1)}}}))
                .await,
            "ResourceNotFoundException",
        );
        let listed = router.list_tables(json!({})).await.unwrap();
        assert_eq!(listed["TableNames"], json!([]));
    });
    drop(cluster);
}

/// The tests share two cores: one cluster at a time.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn create_people(router_body: &str) -> Json {
    let mut body = json!({
        "TableName": "people",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
    });
    if router_body == "provisioned" {
        body["BillingMode"] = json!("PROVISIONED");
        body["ProvisionedThroughput"] = json!({"ReadCapacityUnits": 1, "WriteCapacityUnits": 1});
    }
    body
}

/// Writes `index` until it is acknowledged; returns how long that took.
async fn put_until_acknowledged(router: &Router, index: usize) -> Duration {
    let started = Instant::now();
    loop {
        match router.put_item(put_body(index)).await {
            Ok(_) => return started.elapsed(),
            Err(error) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "item {index} was not acknowledged within 30 s: {error}"
                );
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[test]
fn killing_a_node_keeps_the_table_serving_without_losing_acknowledged_writes() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut cluster = Cluster::start();
    let nodes = cluster.nodes.clone();
    let victim = cluster.children[2].take().unwrap();
    let victim = std::cell::RefCell::new(Some(victim));
    on_router_core(async move {
        let mut config = RouterConfig::new(nodes);
        config.seed = 2;
        let router = Router::new(config).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        router
            .create_table(create_people("on-demand"))
            .await
            .unwrap();
        for index in 0..100 {
            put_until_acknowledged(&router, index).await;
        }
        // Node 3 holds a replica of every partition (3 nodes, 3 replicas) and of the metadata.
        let mut child = victim.borrow_mut().take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let mut longest_pause = Duration::ZERO;
        for index in 100..200 {
            longest_pause = longest_pause.max(put_until_acknowledged(&router, index).await);
        }
        eprintln!("longest write pause after the kill: {longest_pause:?}");
        // Elections take at most two election timeouts, plus the old leases and retries.
        assert!(
            longest_pause < Duration::from_secs(10),
            "the table stopped serving for {longest_pause:?}"
        );
        assert_acknowledged_readable(&router, 0..200).await;
    });
}

#[test]
fn a_small_provisioned_table_throttles_applies_nothing_it_rejected_until_update_table_raises_it() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = Cluster::start();
    let nodes = cluster.nodes.clone();
    let status_nodes = cluster.nodes.clone();
    on_router_core(async move {
        let mut config = RouterConfig::new(nodes);
        config.seed = 3;
        let router = Router::new(config).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        router
            .create_table(create_people("provisioned"))
            .await
            .unwrap();
        let mut acknowledged = 0u64;
        let mut throttled = 0u64;
        // 1 WCU with 300 s of burst credit: 400 back-to-back writes must meet throttling.
        for index in 0..400 {
            let mut body = put_body(index);
            body["ReturnConsumedCapacity"] = json!("TOTAL");
            match router.put_item(body).await {
                Ok(response) => {
                    acknowledged += 1;
                    // A write of an item under 1 KB costs exactly one write unit.
                    assert_eq!(response["ConsumedCapacity"]["CapacityUnits"], json!(1.0));
                }
                Err(error) => {
                    assert_eq!(
                        error.type_name, "ProvisionedThroughputExceededException",
                        "{error}"
                    );
                    assert!(error.message.contains("provisioned throughput"), "{error}");
                    throttled += 1;
                }
            }
        }
        assert!(throttled > 0, "1 WCU admitted 400 back-to-back writes");
        assert!(acknowledged > 0, "nothing was admitted");
        // Count what the replicas hold, bypassing admission: only acknowledged writes applied.
        let partitions = router.table_partitions("people").await.unwrap();
        let mut stored = 0u64;
        for partition in &partitions {
            let mut counted = None;
            for node in &status_nodes {
                let address =
                    SocketAddr::new(node.address.ip(), node.address.port() + partition.shard);
                let mut client = BlockingClient::connect(address, Duration::from_secs(2)).unwrap();
                if let NodeResponse::Status { replicas, .. } =
                    client.call(NodeRequest::Status).unwrap()
                    && let Some(replica) = replicas
                        .iter()
                        .find(|replica| replica.partition == partition.id)
                {
                    counted = Some(counted.unwrap_or(0u64).max(replica.item_count));
                }
            }
            stored += counted.unwrap();
        }
        assert_eq!(
            stored, acknowledged,
            "a rejected write was applied, or an acknowledged one lost"
        );

        // UpdateTable lifts the limit on this router at once: the same burst is admitted.
        let updated = router
            .update_table(json!({
                "TableName": "people",
                "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1000},
            }))
            .await
            .unwrap();
        let throughput = &updated["TableDescription"]["ProvisionedThroughput"];
        assert_eq!(throughput["WriteCapacityUnits"], 1000);
        assert!(
            throughput["LastIncreaseDateTime"].is_number(),
            "{throughput}"
        );
        // Debt from the throttled burst carries over; at 1,000 WCU it is repaid within ms.
        glommio::timer::sleep(Duration::from_millis(200)).await;
        for index in 100..160 {
            router.put_item(put_body(index)).await.unwrap();
        }
        let arn = "arn:aws:dynamodb:us-east-1:000000000000:table/people";
        router
            .tag_resource(json!({"ResourceArn": arn, "Tags": [{"Key": "team", "Value": "shoal"}]}))
            .await
            .unwrap();

        // Another router (a restarted one, or another core) reads both from the metadata group.
        let mut other_config = RouterConfig::new(status_nodes.clone());
        other_config.seed = 4;
        let other = Router::new(other_config).unwrap();
        other.load_cluster().await.unwrap();
        let described = other
            .describe_table(json!({"TableName": "people"}))
            .await
            .unwrap();
        assert_eq!(
            described["Table"]["ProvisionedThroughput"]["WriteCapacityUnits"],
            1000
        );
        assert_eq!(
            other
                .list_tags_of_resource(json!({"ResourceArn": arn}))
                .await
                .unwrap(),
            json!({"Tags": [{"Key": "team", "Value": "shoal"}]})
        );
        // Its admission starts from the table's new capacity too.
        for index in 160..200 {
            other.put_item(put_body(index)).await.unwrap();
        }
    });
}

/// Calls the repair pass until no replica is pending; panics after a bound.
async fn repair_until_nothing_pending(router: &Router) {
    let started = Instant::now();
    loop {
        match router.create_pending_replicas().await {
            Ok(0) => return,
            outcome => assert!(
                started.elapsed() < Duration::from_secs(60),
                "replicas still pending after a minute: {outcome:?}"
            ),
        }
        glommio::timer::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_table_created_with_a_node_down_serves_and_its_replicas_there_are_created_when_it_returns() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = std::cell::RefCell::new(Cluster::start());
    let nodes = cluster.borrow().nodes.clone();
    let down = nodes[2];
    on_router_core(async {
        let mut config = RouterConfig::new(nodes.clone());
        config.seed = 5;
        let router = Router::new(config).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        // Node 3 holds a replica of every partition (3 nodes, 3 replicas) and of the metadata.
        cluster.borrow_mut().kill_node(2);

        let created = router
            .create_table(create_people("on-demand"))
            .await
            .expect("CreateTable with one node of three down");
        assert_eq!(created["TableDescription"]["TableStatus"], "ACTIVE");
        let described = router
            .describe_table(json!({"TableName": "people"}))
            .await
            .unwrap();
        assert_eq!(described["Table"]["TableStatus"], "ACTIVE");
        // Requests are routed to the two replicas that exist.
        let partitions = router.table_partitions("people").await.unwrap();
        assert_eq!(partitions.len(), 4);
        for partition in &partitions {
            assert_eq!(partition.replicas.len(), 2, "{partition:?}");
            assert!(!partition.replicas.contains(&down.id), "{partition:?}");
        }
        for index in 0..ITEMS {
            put_until_acknowledged(&router, index).await;
        }
        for index in 0..ITEMS {
            let got = router
                .get_item(json!({
                    "TableName": "people",
                    "Key": {"pk": {"S": key(index)}},
                    "ConsistentRead": true,
                }))
                .await
                .unwrap();
            assert_eq!(got["Item"]["n"]["N"], index.to_string(), "item {index}");
        }
        // While node 3 is down, its four replicas stay pending.
        assert_eq!(router.create_pending_replicas().await.unwrap(), 4);

        // Node 3 returns: the repair pass creates its replicas, which then catch up.
        cluster.borrow_mut().start_node(2);
        repair_until_nothing_pending(&router).await;
        let partitions = router.table_partitions("people").await.unwrap();
        for partition in &partitions {
            assert_eq!(partition.replicas.len(), 3, "{partition:?}");
        }
        let ids: BTreeSet<u64> = partitions.iter().map(|partition| partition.id).collect();
        let started = Instant::now();
        loop {
            let on_node_3: Vec<_> = replicas_on(&down)
                .into_iter()
                .filter(|replica| ids.contains(&replica.partition))
                .collect();
            let items: u64 = on_node_3.iter().map(|replica| replica.item_count).sum();
            if on_node_3.len() == ids.len() && items == ITEMS as u64 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "node 3 holds {} replicas with {items} items, not {} with {ITEMS}",
                on_node_3.len(),
                ids.len()
            );
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
        // The table goes on serving with all three.
        for index in ITEMS..ITEMS + 20 {
            put_until_acknowledged(&router, index).await;
        }
    });
}

#[test]
fn a_table_without_a_majority_of_live_replicas_is_not_created_and_a_retry_succeeds() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Five nodes, 4 and 5 down: the metadata group (nodes 1-3) serves, but some partitions of
    // a new table are placed with two of their three replicas on nodes 4 and 5.
    let cluster = std::cell::RefCell::new(Cluster::start_some(5, 3));
    let nodes = cluster.borrow().nodes.clone();
    on_router_core(async {
        let mut config = RouterConfig::new(nodes.clone());
        config.seed = 6;
        let router = Router::new(config).unwrap();
        router.bootstrap(SHARDS).await.unwrap();

        let failed = assert_error(
            router.create_table(create_people("on-demand")).await,
            "InternalServerError",
        );
        assert!(failed.message.contains("was not created"), "{failed}");
        assert!(failed.message.contains("majority"), "{failed}");
        // Nothing is left behind: no table item, no replica of a data partition.
        assert_error(
            router.describe_table(json!({"TableName": "people"})).await,
            "ResourceNotFoundException",
        );
        let listed = router.list_tables(json!({})).await.unwrap();
        assert_eq!(listed["TableNames"], json!([]));
        for node in &nodes[..3] {
            let partitions: Vec<u64> = replicas_on(node)
                .iter()
                .map(|replica| replica.partition)
                .collect();
            assert_eq!(partitions, vec![0], "node {} keeps {partitions:?}", node.id);
        }

        // The nodes return; the client's retry creates the table.
        cluster.borrow_mut().start_node(3);
        cluster.borrow_mut().start_node(4);
        let created = router
            .create_table(create_people("on-demand"))
            .await
            .expect("the retried CreateTable");
        assert_eq!(created["TableDescription"]["TableStatus"], "ACTIVE");
        assert_eq!(router.create_pending_replicas().await.unwrap(), 0);
        for index in 0..20 {
            put_until_acknowledged(&router, index).await;
        }
        for index in 0..20 {
            let got = router
                .get_item(json!({
                    "TableName": "people",
                    "Key": {"pk": {"S": key(index)}},
                    "ConsistentRead": true,
                }))
                .await
                .unwrap();
            assert_eq!(got["Item"]["n"]["N"], index.to_string(), "item {index}");
        }
    });
}

/// The partition (its id) of item `index` of "people".
fn partition_of(partitions: &[shoal_router::partition_map::PartitionEntry], index: usize) -> u64 {
    let hash =
        shoal_model::key::partition_hash(&shoal_model::AttributeValue::String(key(index))).unwrap();
    partitions
        .iter()
        .find(|partition| partition.range.first <= hash && hash <= partition.range.last)
        .unwrap()
        .id
}

/// The keys (`pk` values) of a batch's items, keys or write requests (none for a member that
/// is absent).
fn pks(members: &Json) -> BTreeSet<String> {
    members
        .as_array()
        .into_iter()
        .flatten()
        .map(|member| {
            let item = member.get("PutRequest").map_or(member, |put| &put["Item"]);
            item["pk"]["S"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Batches fan out to every partition they touch. A table of ten partitions (its provisioned
/// writes need them) over five nodes: with every node up, batches write and read back items of
/// all ten. With nodes 4 and 5 killed, the partitions with two of their three replicas there
/// have no majority: their items come back unprocessed, and only theirs, while the other
/// partitions serve theirs in the same batch.
#[test]
fn batches_span_every_partition_and_a_partition_without_a_majority_leaves_only_its_items() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    const ITEMS_READ: usize = 100;
    const ROUNDS_MAX: usize = 5;
    let cluster = std::cell::RefCell::new(Cluster::start_some(5, 5));
    let nodes = cluster.borrow().nodes.clone();
    on_router_core(async {
        let mut config = RouterConfig::new(nodes.clone());
        config.seed = 7;
        let router = Router::new(config).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        let mut create = create_people("on-demand");
        create["BillingMode"] = json!("PROVISIONED");
        create["ProvisionedThroughput"] =
            json!({"ReadCapacityUnits": 1000, "WriteCapacityUnits": 9500});
        router.create_table(create).await.unwrap();
        let partitions = router.table_partitions("people").await.unwrap();
        assert_eq!(partitions.len(), 10);

        // Every node up: 100 items, written 25 at a time, a client resending what comes back
        // unprocessed while the new partitions elect their leaders.
        for first in (0..ITEMS_READ).step_by(BATCH_WRITES) {
            let mut requests: Json = (first..first + BATCH_WRITES)
                .map(|index| json!({"PutRequest": {"Item": put_body(index)["Item"].clone()}}))
                .collect();
            for round in 0.. {
                assert!(round < ROUNDS_MAX, "items {first}.. never all written");
                let written = router
                    .batch_write_item(json!({"RequestItems": {"people": requests}}))
                    .await
                    .unwrap();
                match written["UnprocessedItems"].get("people") {
                    None => break,
                    Some(unprocessed) => requests = unprocessed.clone(),
                }
            }
        }
        let touched: BTreeSet<u64> = (0..ITEMS_READ)
            .map(|index| partition_of(&partitions, index))
            .collect();
        assert_eq!(
            touched.len(),
            partitions.len(),
            "the items span every partition"
        );
        let keys: Vec<Json> = (0..ITEMS_READ)
            .map(|index| json!({"pk": {"S": key(index)}}))
            .collect();
        let read = router
            .batch_get_item(json!({
                "RequestItems": {"people": {"Keys": keys.clone(), "ConsistentRead": true}},
                "ReturnConsumedCapacity": "TOTAL",
            }))
            .await
            .unwrap();
        assert_eq!(read["UnprocessedKeys"], json!({}));
        let expected: BTreeSet<String> = (0..ITEMS_READ).map(key).collect();
        assert_eq!(pks(&read["Responses"]["people"]), expected);
        // One strong read unit per item under 4 KB, summed over the ten partitions.
        assert_eq!(
            read["ConsumedCapacity"],
            json!([{"TableName": "people", "CapacityUnits": ITEMS_READ as f64}])
        );

        // Nodes 4 and 5 down: a partition with two replicas there has no majority.
        cluster.borrow_mut().kill_node(3);
        cluster.borrow_mut().kill_node(4);
        let lost: BTreeSet<u64> = partitions
            .iter()
            .filter(|partition| {
                let down = partition
                    .replicas
                    .iter()
                    .filter(|node| **node == 4 || **node == 5)
                    .count();
                down * 2 > partition.replicas.len()
            })
            .map(|partition| partition.id)
            .collect();
        assert!(
            !lost.is_empty() && lost.len() < partitions.len(),
            "placement left {lost:?} without a majority"
        );

        // Writes: a partition that lost a replica elects again, and a request sent on a
        // connection to a killed node may have an unknown outcome, so the client resends what
        // comes back until only the items of the partitions without a majority are left.
        let new_items = ITEMS_READ..ITEMS_READ + BATCH_WRITES;
        let on_lost: BTreeSet<String> = new_items
            .clone()
            .filter(|index| lost.contains(&partition_of(&partitions, *index)))
            .map(key)
            .collect();
        assert!(
            !on_lost.is_empty() && on_lost.len() < BATCH_WRITES,
            "the batch spans served and unserved partitions"
        );
        let mut requests: Json = new_items
            .clone()
            .map(|index| json!({"PutRequest": {"Item": put_body(index)["Item"].clone()}}))
            .collect();
        for round in 0.. {
            assert!(round < ROUNDS_MAX, "unprocessed: {requests}");
            let written = router
                .batch_write_item(json!({"RequestItems": {"people": requests}}))
                .await
                .unwrap();
            requests = written["UnprocessedItems"]["people"].clone();
            let unprocessed = pks(&requests);
            assert!(
                unprocessed.is_superset(&on_lost),
                "an item of a partition without a majority was written: {unprocessed:?}"
            );
            if unprocessed == on_lost {
                break;
            }
        }

        // Reads: the items of the partitions without a majority come back in UnprocessedKeys
        // (with the request's other members), every other item in Responses.
        let read = router
            .batch_get_item(json!({
                "RequestItems": {"people": {"Keys": keys, "ConsistentRead": true}},
            }))
            .await
            .unwrap();
        let unreadable: BTreeSet<String> = (0..ITEMS_READ)
            .filter(|index| lost.contains(&partition_of(&partitions, *index)))
            .map(key)
            .collect();
        let unprocessed = &read["UnprocessedKeys"]["people"];
        assert_eq!(unprocessed["ConsistentRead"], json!(true));
        assert_eq!(pks(&unprocessed["Keys"]), unreadable);
        assert_eq!(
            pks(&read["Responses"]["people"]),
            expected.difference(&unreadable).cloned().collect()
        );
    });
}

/// BatchWriteItem's limit of requests per call.
const BATCH_WRITES: usize = 25;

/// A table named `name` of one string key `pk`, on demand.
fn create_named(name: &str) -> Json {
    let mut body = create_people("on-demand");
    body["TableName"] = json!(name);
    body
}

/// A router whose repair pass takes over an unfinished table after 300 ms of no change, scans
/// for replicas of no table at every pass and deletes them after a 300 ms grace: the
/// production intervals shortened, so the resume paths run within the test.
fn repairing_config(nodes: &[NodeAddress], seed: u64) -> RouterConfig {
    let mut config = RouterConfig::new(nodes.to_vec());
    config.seed = seed;
    config.control_step_timeout = Duration::from_millis(300);
    config.orphan_scan_interval = Duration::ZERO;
    config.orphan_replica_grace = Duration::from_millis(300);
    config
}

/// Runs CreateTable (or DeleteTable) with `body` on a router of its own that stops for good
/// after `step`, as if its process were killed there, then drops the operation and the router.
async fn kill_router_after(nodes: &[NodeAddress], step: ControlStep, body: Json, delete: bool) {
    kill_router_during(nodes, step, 12, move |router| async move {
        if delete {
            router.delete_table(body).await
        } else {
            router.create_table(body).await
        }
    })
    .await;
}

/// Runs `operation` on a router of its own (seeded `seed`) that stops for good after `step`,
/// as if its process were killed there, then drops the operation and the router.
async fn kill_router_during<F>(
    nodes: &[NodeAddress],
    step: ControlStep,
    seed: u64,
    operation: impl FnOnce(std::rc::Rc<Router>) -> F,
) where
    F: std::future::Future<Output = Result<Json, DynamoError>> + 'static,
{
    let mut config = RouterConfig::new(nodes.to_vec());
    config.seed = seed;
    config.crash_at = Some(step);
    let router = std::rc::Rc::new(Router::new(config).unwrap());
    router.load_cluster().await.unwrap();
    let operation = glommio::spawn_local(operation(router.clone()));
    let started = Instant::now();
    while !router.crashed() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the router never reached {step:?}"
        );
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        operation.cancel().await.is_none(),
        "the operation went on past {step:?}"
    );
}

/// Runs `repairer`'s pass over unfinished tables until `name` is ACTIVE (its status) or gone
/// (`None`); panics after a bound.
async fn finish_table(repairer: &Router, name: &str) -> Option<String> {
    let started = Instant::now();
    loop {
        let unfinished = repairer.finish_unfinished_tables().await;
        match repairer.describe_table(json!({"TableName": name})).await {
            Ok(described) if described["Table"]["TableStatus"] == "ACTIVE" => {
                eprintln!("{name}: ACTIVE after {:?} of repair", started.elapsed());
                return Some("ACTIVE".to_string());
            }
            Err(error) if error.type_name == "ResourceNotFoundException" => {
                eprintln!("{name}: gone after {:?} of repair", started.elapsed());
                return None;
            }
            outcome => assert!(
                started.elapsed() < Duration::from_secs(60),
                "{name} is still unfinished after a minute: {outcome:?} ({unfinished:?})"
            ),
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

/// The partition ids on every shard of every node in `nodes`.
fn hosted_partitions(nodes: &[NodeAddress]) -> BTreeMap<u64, Vec<u64>> {
    nodes
        .iter()
        .map(|node| {
            let mut partitions: Vec<u64> = replicas_on(node)
                .iter()
                .map(|replica| replica.partition)
                .collect();
            partitions.sort_unstable();
            (node.id, partitions)
        })
        .collect()
}

/// Issue 15: a router that dies part way through CreateTable or DeleteTable must not strand
/// the table. For each step of both, a router is stopped for good right after it; while the
/// table is unfinished it shows CREATING or DELETING and keeps its name, as in DynamoDB (and a
/// DeleteTable of a table being created is refused, as DynamoDB refuses it); another router's
/// repair pass then drives it to ACTIVE (or gone, when it stopped before writing anything) or,
/// for a deletion, gone. The name is then reusable by a new, empty table, and at the end, with
/// every table deleted, no node hosts any replica but the metadata group's: the state machine
/// itself removed them (the orphan collection is not run here).
#[test]
fn a_router_killed_at_any_step_of_create_or_delete_table_leaves_the_table_active_or_gone() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = Cluster::start();
    let nodes = cluster.nodes.clone();
    on_router_core(async move {
        let repairer = Router::new(repairing_config(&nodes, 11)).unwrap();
        repairer.bootstrap(SHARDS).await.unwrap();
        for (index, step) in ControlStep::ALL.into_iter().enumerate() {
            let name = format!("crash-{index}");
            let key = json!({"pk": {"S": "before"}});
            let deleting = matches!(
                step,
                ControlStep::DeleteMarked
                    | ControlStep::DeleteFirstReplicaDeleted
                    | ControlStep::DeleteReplicasDeleted
            );
            if deleting {
                repairer.create_table(create_named(&name)).await.unwrap();
                repairer
                    .put_item(json!({"TableName": name, "Item": key}))
                    .await
                    .unwrap();
            }
            let body = if deleting {
                json!({"TableName": name})
            } else {
                create_named(&name)
            };
            kill_router_after(&nodes, step, body, deleting).await;
            // While it is unfinished: DynamoDB's statuses, and the name stays taken.
            let described = repairer.describe_table(json!({"TableName": name})).await;
            match step {
                ControlStep::CreateIdsReserved => {
                    assert_error(described, "ResourceNotFoundException");
                }
                _ if !deleting => {
                    assert_eq!(described.unwrap()["Table"]["TableStatus"], "CREATING");
                    let refused = assert_error(
                        repairer.delete_table(json!({"TableName": name})).await,
                        "ResourceInUseException",
                    );
                    assert_eq!(
                        refused.message,
                        format!(
                            "Attempt to change a resource which is still in use: Table is being created: {name}"
                        )
                    );
                }
                _ => {
                    assert_eq!(described.unwrap()["Table"]["TableStatus"], "DELETING");
                    assert_error(
                        repairer.delete_table(json!({"TableName": name})).await,
                        "ResourceInUseException",
                    );
                    assert_error(
                        repairer.create_table(create_named(&name)).await,
                        "ResourceInUseException",
                    );
                }
            }
            let listed = repairer.list_tables(json!({})).await.unwrap();
            let is_listed = listed["TableNames"]
                .as_array()
                .unwrap()
                .contains(&json!(name));
            assert_eq!(
                is_listed,
                step != ControlStep::CreateIdsReserved,
                "{listed}"
            );

            // Another router finishes it.
            let ended = finish_table(&repairer, &name).await;
            match step {
                ControlStep::CreateIdsReserved => assert_eq!(ended, None, "{step:?}"),
                _ if !deleting => {
                    assert_eq!(ended.as_deref(), Some("ACTIVE"), "{step:?}");
                    // Every replica exists: the table serves, then is deleted as usual.
                    for partition in repairer.table_partitions(&name).await.unwrap() {
                        assert_eq!(partition.replicas.len(), 3, "{step:?} {partition:?}");
                    }
                    repairer
                        .put_item(json!({"TableName": name, "Item": key}))
                        .await
                        .unwrap();
                    repairer
                        .delete_table(json!({"TableName": name}))
                        .await
                        .unwrap();
                }
                _ => assert_eq!(ended, None, "{step:?}"),
            }
            // The name is reusable, by a new and empty table.
            repairer.create_table(create_named(&name)).await.unwrap();
            let got = repairer
                .get_item(json!({"TableName": name, "Key": key, "ConsistentRead": true}))
                .await
                .unwrap();
            assert!(got.get("Item").is_none(), "{step:?}: {got}");
            repairer
                .delete_table(json!({"TableName": name}))
                .await
                .unwrap();
        }
        let listed = repairer.list_tables(json!({})).await.unwrap();
        assert_eq!(listed["TableNames"], json!([]));
        for (node, partitions) in hosted_partitions(&nodes) {
            assert_eq!(partitions, vec![0], "node {node} keeps {partitions:?}");
        }
    });
}

/// A leak of issue 15: DeleteTable asks each replica once to delete itself, and a node that
/// is down keeps its replicas; before the orphan collection they stayed for good (the node
/// recovers them from its disk when it restarts). Here the table is deleted with node 3 down,
/// its name is reused at once (the new table's replicas on node 3 left pending), node 3
/// returns with the old replicas, and the repair pass deletes them, after their grace, and
/// only them: the new table's replicas are created and serve.
#[test]
fn replicas_of_a_table_deleted_while_their_node_was_down_are_collected_when_it_returns() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = std::cell::RefCell::new(Cluster::start());
    let nodes = cluster.borrow().nodes.clone();
    let down = nodes[2];
    on_router_core(async {
        let router = Router::new(repairing_config(&nodes, 13)).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        router
            .create_table(create_people("on-demand"))
            .await
            .unwrap();
        let old: BTreeSet<u64> = router
            .table_partitions("people")
            .await
            .unwrap()
            .iter()
            .map(|partition| partition.id)
            .collect();
        for index in 0..20 {
            put_until_acknowledged(&router, index).await;
        }

        cluster.borrow_mut().kill_node(2);
        router
            .delete_table(json!({"TableName": "people"}))
            .await
            .unwrap();
        assert_error(
            router.describe_table(json!({"TableName": "people"})).await,
            "ResourceNotFoundException",
        );
        router
            .create_table(create_people("on-demand"))
            .await
            .unwrap();
        let new: BTreeSet<u64> = router
            .table_partitions("people")
            .await
            .unwrap()
            .iter()
            .map(|partition| partition.id)
            .collect();
        assert!(old.is_disjoint(&new));
        for index in 100..120 {
            put_until_acknowledged(&router, index).await;
        }

        // Node 3 returns with the deleted table's replicas: the leak.
        cluster.borrow_mut().start_node(2);
        let on_down = |partitions: &BTreeSet<u64>| -> BTreeSet<u64> {
            replicas_on(&down)
                .iter()
                .map(|replica| replica.partition)
                .filter(|partition| partitions.contains(partition))
                .collect()
        };
        assert_eq!(on_down(&old), old, "node 3 recovered the old replicas");
        // The first scan only notes them (grace); later ones delete them.
        assert_eq!(router.collect_orphan_replicas().await.unwrap(), 0);
        assert_eq!(on_down(&old), old);
        let started = Instant::now();
        let mut deleted = 0;
        loop {
            let report = router.repair_pass().await.unwrap();
            deleted += report.orphan_replicas_deleted;
            if report.pending_replicas == 0 && on_down(&old).is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "after a minute: {report:?}, node 3 keeps {:?}",
                on_down(&old)
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(deleted, old.len());
        // Only the old replicas went: every node hosts the metadata group and the new table.
        let mut expected = vec![0];
        expected.extend(new.iter().copied());
        for (node, partitions) in hosted_partitions(&nodes) {
            assert_eq!(partitions, expected, "node {node}");
        }
        for index in (0..20).chain(100..120) {
            let got = router
                .get_item(json!({
                    "TableName": "people",
                    "Key": {"pk": {"S": key(index)}},
                    "ConsistentRead": true,
                }))
                .await
                .unwrap();
            let expected = if index < 100 {
                Json::Null
            } else {
                json!(index.to_string())
            };
            assert_eq!(got["Item"]["n"]["N"], expected, "item {index}");
        }
    });
}

/// The balances of accounts `from` and `to` of "people" (strongly consistent reads).
async fn balances(router: &Router, accounts: [usize; 2]) -> [i64; 2] {
    let mut found = [0; 2];
    for (slot, account) in found.iter_mut().zip(accounts) {
        let got = router
            .get_item(json!({
                "TableName": "people",
                "Key": {"pk": {"S": key(account)}},
                "ConsistentRead": true,
            }))
            .await
            .unwrap();
        *slot = got["Item"]["n"]["N"].as_str().unwrap().parse().unwrap();
    }
    found
}

/// A transfer of 10 from account `from` to account `to` (on other partitions), guarded by the
/// debited balance, under ClientRequestToken `token`.
fn transfer(token: &str, [from, to]: [usize; 2]) -> Json {
    let update = |account: usize, expression: &str| {
        json!({"Update": {
            "TableName": "people",
            "Key": {"pk": {"S": key(account)}},
            "UpdateExpression": expression,
            "ConditionExpression": "n >= :ten",
            "ExpressionAttributeValues": {":ten": {"N": "10"}},
        }})
    };
    json!({
        "ClientRequestToken": token,
        "TransactItems": [update(from, "SET n = n - :ten"), update(to, "SET n = n + :ten")],
    })
}

/// Issue 17: a coordinator killed between the phases of a transaction leaves it to the
/// recovery step of any router's repair pass. Killed after the ledger record or after the
/// prepares, the transaction is cancelled (its locks released, nothing applied); killed after
/// the decision to commit, it is committed. Meanwhile a single-item write to a locked item is
/// refused with TransactionConflictException; the total of the two balances never changes;
/// a retry of the same token after recovery returns the outcome without applying it twice.
#[test]
fn a_coordinator_killed_between_the_phases_of_a_transaction_leaves_it_whole() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = Cluster::start();
    let nodes = cluster.nodes.clone();
    on_router_core(async move {
        let mut config = repairing_config(&nodes, 14);
        config.transaction_lock_stale = Duration::from_millis(300);
        let recoverer = Router::new(config).unwrap();
        recoverer.bootstrap(SHARDS).await.unwrap();
        recoverer
            .create_table(create_people("on-demand"))
            .await
            .unwrap();
        let partitions = recoverer.table_partitions("people").await.unwrap();
        // Two accounts on different partitions, so the transaction has two participants.
        let from = 0;
        let to = (1..ITEMS)
            .find(|index| partition_of(&partitions, *index) != partition_of(&partitions, from))
            .unwrap();
        let accounts = [from, to];
        for account in accounts {
            recoverer
                .put_item(json!({"TableName": "people", "Item": {
                    "pk": {"S": key(account)}, "n": {"N": "100"}}}))
                .await
                .unwrap();
        }
        let mut expected = [100i64, 100];
        for (attempt, step) in ControlStep::TRANSACTION.into_iter().enumerate() {
            let token = format!("transfer-{attempt}");
            let body = transfer(&token, accounts);
            kill_router_during(&nodes, step, 13, move |router| async move {
                router.transact_write_items(body).await
            })
            .await;
            let locked = step != ControlStep::TransactionLedgerWritten;
            if locked {
                // Transaction invariant 2: the locked item stays as it is.
                assert_error(
                    recoverer
                        .put_item(json!({"TableName": "people", "Item": {
                            "pk": {"S": key(from)}, "n": {"N": "0"}}}))
                        .await,
                    "TransactionConflictException",
                );
                // Readers see the committed values only.
                assert_eq!(balances(&recoverer, accounts).await, expected);
            }
            // The recovery step finishes it once its locks are stale: its targeted run, which
            // looks only where a request met a lock (the debited account's partition, above and
            // below), finishes every partition the ledger record lists (the credited one too).
            let started = Instant::now();
            loop {
                recoverer.recover_transactions(false).await.unwrap();
                let free = recoverer
                    .update_item(json!({
                        "TableName": "people",
                        "Key": {"pk": {"S": key(from)}},
                        "UpdateExpression": "SET touched = :t",
                        "ExpressionAttributeValues": {":t": {"N": attempt.to_string()}},
                    }))
                    .await;
                match free {
                    Ok(_) => break,
                    Err(error) => {
                        assert_eq!(error.type_name, "TransactionConflictException", "{error}");
                        assert!(
                            started.elapsed() < Duration::from_secs(30),
                            "{step:?}: the locks were never recovered"
                        );
                        glommio::timer::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            eprintln!("{step:?}: recovered after {:?}", started.elapsed());
            if step == ControlStep::TransactionDecided {
                expected = [expected[0] - 10, expected[1] + 10];
            }
            let seen = balances(&recoverer, accounts).await;
            assert_eq!(seen, expected, "{step:?}");
            assert_eq!(seen[0] + seen[1], 200);
            // The same token again: a committed transaction is answered without applying it
            // twice; a cancelled one runs again as a new attempt. An attempt abandoned before
            // it locked anything is "in progress" until it is stale, then recovered inline (as
            // SDKs retry TransactionInProgressException).
            let started = Instant::now();
            loop {
                match recoverer
                    .transact_write_items(transfer(&token, accounts))
                    .await
                {
                    Ok(_) => break,
                    Err(error) => {
                        assert_eq!(error.type_name, "TransactionInProgressException", "{error}");
                        assert_eq!(step, ControlStep::TransactionLedgerWritten);
                        assert!(started.elapsed() < Duration::from_secs(30));
                        glommio::timer::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            if step != ControlStep::TransactionDecided {
                expected = [expected[0] - 10, expected[1] + 10];
            }
            assert_eq!(
                balances(&recoverer, accounts).await,
                expected,
                "{step:?} replayed"
            );
        }
        // A consistent read of both sees the total.
        let both = recoverer
            .transact_get_items(json!({"TransactItems": accounts.map(|account| json!({
                "Get": {"TableName": "people", "Key": {"pk": {"S": key(account)}}}}))}))
            .await
            .unwrap();
        let total: i64 = both["Responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|response| {
                response["Item"]["n"]["N"]
                    .as_str()
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(total, 200);
    });
}

/// The partitions of "people" that list a replica on `node`; at least one, or the test that
/// asks would prove nothing.
async fn partitions_listing(router: &Router, node: u64) -> Vec<u64> {
    let partitions = router.table_partitions("people").await.unwrap();
    let listing: Vec<u64> = partitions
        .iter()
        .filter(|partition| partition.replicas.contains(&node))
        .map(|partition| partition.id)
        .collect();
    assert!(
        !listing.is_empty(),
        "node {node} holds no replica: {partitions:?}"
    );
    listing
}

/// Waits until every partition of "people" lists three replicas, none on `gone`, each hosted
/// by its node and applied up to the highest commit any of them reports; then reads back items
/// `0..written`, strongly.
async fn wait_until_whole(router: &Router, nodes: &[NodeAddress], gone: u64, written: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partitions = router.table_partitions("people").await.unwrap();
        let hosted: BTreeMap<u64, Vec<shoal_wire::messages::ReplicaStatus>> = nodes
            .iter()
            .filter(|node| node.id != gone)
            .map(|node| (node.id, replicas_on(node)))
            .collect();
        let whole = partitions.iter().all(|partition| {
            let statuses: Vec<&shoal_wire::messages::ReplicaStatus> = partition
                .replicas
                .iter()
                .filter_map(|node| hosted.get(node))
                .filter_map(|on_node| {
                    on_node
                        .iter()
                        .find(|replica| replica.partition == partition.id)
                })
                .collect();
            let commit = statuses
                .iter()
                .map(|status| status.commit_slot)
                .max()
                .unwrap_or(0);
            partition.replicas.len() == 3
                && statuses.len() == 3
                && statuses.iter().all(|status| status.applied_slot >= commit)
        });
        if whole {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not whole within a minute: {partitions:?}"
        );
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
    assert_acknowledged_readable(router, 0..written).await;
}

/// Reads back items `indexes` of "people" strongly: each must hold what its put wrote.
async fn assert_acknowledged_readable(router: &Router, indexes: std::ops::Range<usize>) {
    for index in indexes {
        let got = router
            .get_item(json!({
                "TableName": "people",
                "Key": {"pk": {"S": key(index)}},
                "ConsistentRead": true,
            }))
            .await
            .unwrap();
        assert_eq!(
            got["Item"]["n"]["N"],
            index.to_string(),
            "acknowledged item {index} was lost"
        );
    }
}

/// Issue 19, re-replication: five nodes, a table of four partitions (three replicas each),
/// writes acknowledged; one node is killed for good. The router's autoadmin (its threshold
/// shortened to one second) finds it down and moves each of its replicas to another node: the
/// replica is removed from its group, a new one joins elsewhere and catches up. Writes go on
/// between the passes. At the end every partition lists three replicas on live nodes, each
/// hosted there and caught up, and every acknowledged write is read back. Then the killed node
/// returns: the replicas it kept are members of nothing, and the orphan scan deletes them.
/// Before all that, the autoadmin paused (`shoal admin pause`) moves nothing. Last, another
/// node's disk is replaced (killed, its data directory removed, started empty): it answers,
/// but without the replicas the table lists on it, so after the orphan grace they are lost,
/// and rebuilt elsewhere the same way.
#[test]
fn a_node_killed_for_good_or_emptied_has_its_replicas_rebuilt_on_the_others() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = std::cell::RefCell::new(Cluster::start_some(5, 5));
    let nodes = cluster.borrow().nodes.clone();
    // Nodes 5 and 4: not the metadata group's (the three lowest ids), whose moves
    // `the_metadata_group_moves_off_a_dead_node_and_survives_a_second_loss` counts.
    let lost = nodes[4];
    let emptied = nodes[3];
    on_router_core(async {
        let mut config = repairing_config(&nodes, 19);
        config.node_down_after = Duration::from_secs(1);
        // Re-replication alone: with balance on, node 5 returning empty would receive replicas
        // again (the join test checks that), and those moves would mix with the ones counted.
        config.balance = false;
        let router = Router::new(config).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        router
            .create_table(create_people("on-demand"))
            .await
            .unwrap();
        let moved = partitions_listing(&router, lost.id).await;
        let report = router.autoadmin_pass().await.unwrap();
        assert_eq!(report, Default::default(), "a whole cluster needs nothing");
        for index in 0..50 {
            put_until_acknowledged(&router, index).await;
        }

        // Paused by an operator, the autoadmin moves nothing, however long a node is down.
        router.set_autoadmin_paused(true).await.unwrap();
        cluster.borrow_mut().kill_node(4);
        glommio::timer::sleep(Duration::from_millis(1500)).await;
        let report = router.autoadmin_pass().await.unwrap();
        assert!(report.paused && report.moves_started == 0, "{report:?}");
        let status = router.cluster_status().await.unwrap();
        assert!(status.autoadmin_paused && status.moves.is_empty());
        router.set_autoadmin_paused(false).await.unwrap();
        let killed = Instant::now();
        let mut written = 50;
        let mut started = 0;
        let mut finished = 0;
        loop {
            let report = router.autoadmin_pass().await.unwrap();
            started += report.moves_started;
            finished += report.moves_finished;
            for _ in 0..10 {
                put_until_acknowledged(&router, written).await;
                written += 1;
            }
            let partitions = router.table_partitions("people").await.unwrap();
            let listed_on_lost = partitions
                .iter()
                .any(|partition| partition.replicas.contains(&lost.id));
            if !listed_on_lost && report.moves_unfinished == 0 && !report.nodes_down.is_empty() {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(120),
                "not healed after two minutes: {report:?}, partitions {partitions:?}"
            );
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "{} replicas rebuilt {:?} after the kill ({started} moves started, {finished} finished)",
            moved.len(),
            killed.elapsed()
        );
        assert_eq!(
            started,
            moved.len(),
            "one move per replica of the lost node"
        );
        assert_eq!(finished, moved.len());
        wait_until_whole(&router, &nodes, lost.id, written).await;

        // Node 5 returns with its old replicas, members of nothing: the orphan scan removes
        // them (after its grace), and the autoadmin sees the node up.
        cluster.borrow_mut().start_node(4);
        let on_node = |node: &NodeAddress, partitions: &[u64]| -> Vec<u64> {
            replicas_on(node)
                .iter()
                .map(|replica| replica.partition)
                .filter(|partition| partitions.contains(partition))
                .collect()
        };
        assert!(
            !on_node(&lost, &moved).is_empty(),
            "node 5 recovered its replicas"
        );
        let returned = Instant::now();
        loop {
            router.repair_pass().await.unwrap();
            if on_node(&lost, &moved).is_empty() {
                break;
            }
            assert!(
                returned.elapsed() < Duration::from_secs(60),
                "node 5 keeps {:?}",
                on_node(&lost, &moved)
            );
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
        let report = router.autoadmin_pass().await.unwrap();
        assert!(report.nodes_down.is_empty(), "{report:?}");
        assert_eq!(report.moves_started, 0);

        // Node 4's disk is replaced: it comes back empty, under the same id.
        let on_emptied = partitions_listing(&router, emptied.id).await;
        cluster.borrow_mut().kill_node(3);
        let data = cluster
            .borrow()
            .directory
            .path()
            .join(format!("node-{}", emptied.id));
        std::fs::remove_dir_all(&data).unwrap();
        cluster.borrow_mut().start_node(3);
        assert!(on_node(&emptied, &on_emptied).is_empty());
        let replaced = Instant::now();
        let mut started = 0;
        loop {
            router.repair_pass().await.unwrap();
            let report = router.autoadmin_pass().await.unwrap();
            started += report.moves_started;
            put_until_acknowledged(&router, written).await;
            written += 1;
            let partitions = router.table_partitions("people").await.unwrap();
            if report.moves_unfinished == 0
                && partitions
                    .iter()
                    .all(|partition| !partition.replicas.contains(&emptied.id))
            {
                break;
            }
            assert!(
                replaced.elapsed() < Duration::from_secs(60),
                "node 4's lost replicas not rebuilt: {report:?}, {partitions:?}"
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(started, on_emptied.len(), "one move per lost replica");
        wait_until_whole(&router, &nodes, 0, written).await;
    });
}

/// Issue 19, one active autoadmin: two routers run the autoadmin pass on one cluster. The
/// first to pass takes the autoadmin lease and acts; the other stands by, pass after pass,
/// even with a node down, so the dead node's replicas get one move each, not two. When the
/// holder stops (its router gone, as if killed), the other takes the lease over once it has
/// gone unrenewed for the takeover time (shortened to a second here) and heals the cluster.
#[test]
fn only_the_router_holding_the_autoadmin_lease_acts_and_another_takes_over_when_it_stops() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut cluster = Cluster::start_some(5, 5);
    let nodes = cluster.nodes.clone();
    on_router_core(async {
        let config = |seed| {
            let mut config = repairing_config(&nodes, seed);
            config.node_down_after = Duration::from_secs(1);
            config.autoadmin_takeover_after = Duration::from_secs(1);
            config.balance = false;
            config
        };
        let first = Router::new(config(41)).unwrap();
        let second = Router::new(config(43)).unwrap();
        first.bootstrap(SHARDS).await.unwrap();
        first
            .create_table(create_people("on-demand"))
            .await
            .unwrap();
        let report = first.autoadmin_pass().await.unwrap();
        assert!(!report.standby, "{report:?}");
        for index in 0..20 {
            put_until_acknowledged(&first, index).await;
        }
        let lost = nodes[4];
        let moved = partitions_listing(&first, lost.id).await;
        cluster.kill_node(4);
        glommio::timer::sleep(Duration::from_millis(1500)).await;
        // Both pass for a while, the holder renewing within the takeover time: only it acts.
        let mut started = 0;
        for _ in 0..4 {
            let standing_by = second.autoadmin_pass().await.unwrap();
            assert!(standing_by.standby, "{standing_by:?}");
            assert_eq!(standing_by.moves_started, 0);
            let acting = first.autoadmin_pass().await.unwrap();
            assert!(!acting.standby, "{acting:?}");
            started += acting.moves_started;
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            started,
            moved.len(),
            "one move per replica of the lost node"
        );

        // The holder stops. The other takes over once the lease has gone unrenewed for the
        // takeover time, and heals the next loss.
        drop(first);
        let stopped = Instant::now();
        let taken_over = loop {
            let report = second.autoadmin_pass().await.unwrap();
            if !report.standby {
                break stopped.elapsed();
            }
            assert!(
                stopped.elapsed() < Duration::from_secs(30),
                "no takeover within 30 s"
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
        };
        // Counted from the last revision the standby saw, which the holder wrote up to a
        // renewal period before it stopped: the standby acts within the takeover time of that.
        eprintln!("the autoadmin lease was taken over {taken_over:?} after its holder stopped");
        let next = nodes[3];
        let listing_next = partitions_listing(&second, next.id).await;
        cluster.kill_node(3);
        let killed = Instant::now();
        let mut started = 0;
        loop {
            let report = second.autoadmin_pass().await.unwrap();
            assert!(!report.standby, "{report:?}");
            started += report.moves_started;
            let partitions = second.table_partitions("people").await.unwrap();
            if report.moves_unfinished == 0
                && partitions
                    .iter()
                    .all(|partition| !partition.replicas.contains(&next.id))
            {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "not healed: {report:?}, {partitions:?}"
            );
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            started,
            listing_next.len(),
            "one move per replica of node 4"
        );
        wait_until_whole(&second, &nodes[..4], next.id, 20).await;
    });
}

/// Issue 19, the metadata group heals: five nodes; node 1, one of the three the metadata group
/// was created on, is killed for good while a table is written. The autoadmin moves the
/// group's replica off node 1 like any partition's (recorded in the cluster item), along with
/// the table's. Node 1 then returns, and the orphan scan deletes its stale replica of the group
/// (and only that one). Then a second node of the group is killed: with two of its three replicas
/// alive the group still has a majority, so metadata is still written and read, and every
/// acknowledged write is read back. Before this, the group was fixed on the three lowest ids, and
/// these two losses stopped every control-plane operation of the cluster for good. Last, a
/// router started afresh whose node list names no live replica of the group finds it by
/// asking the nodes, and its bootstrap creates no replica of the group anywhere.
#[test]
fn the_metadata_group_moves_off_a_dead_node_and_survives_a_second_loss() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut cluster = Cluster::start_some(5, 5);
    let nodes = cluster.nodes.clone();
    on_router_core(async {
        let mut config = repairing_config(&nodes, 29);
        config.node_down_after = Duration::from_secs(1);
        config.balance = false;
        let router = Router::new(config.clone()).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        router
            .create_table(create_people("on-demand"))
            .await
            .unwrap();
        for index in 0..30 {
            put_until_acknowledged(&router, index).await;
        }
        assert_eq!(
            router.load_cluster().await.unwrap().metadata_replicas,
            vec![1, 2, 3]
        );
        cluster.kill_node(0);
        let killed = Instant::now();
        let mut written = 30;
        let group = loop {
            let report = router.autoadmin_pass().await.unwrap();
            for _ in 0..5 {
                put_until_acknowledged(&router, written).await;
                written += 1;
            }
            let current = router.load_cluster().await.unwrap();
            let tables_off = router
                .table_partitions("people")
                .await
                .unwrap()
                .iter()
                .all(|partition| !partition.replicas.contains(&1));
            if !current.metadata_replicas.contains(&1)
                && current.metadata_move.is_none()
                && tables_off
                && report.moves_unfinished == 0
            {
                break current.metadata_replicas;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(120),
                "not healed after two minutes: {report:?}, cluster {current:?}"
            );
            glommio::timer::sleep(Duration::from_millis(200)).await;
        };
        eprintln!(
            "metadata group on {group:?} {:?} after node 1 was killed",
            killed.elapsed()
        );
        assert_eq!(group.len(), 3, "{group:?}");
        for node in &group {
            let address = nodes.iter().find(|known| known.id == *node).unwrap();
            assert!(
                replicas_on(address)
                    .iter()
                    .any(|replica| replica.partition == 0),
                "node {node} is listed for the metadata group and does not host it"
            );
        }
        let status = router.cluster_status().await.unwrap();
        assert!(status.moves.is_empty(), "{:?}", status.moves);
        wait_until_whole(&router, &nodes, 1, written).await;

        // Node 1 returns with its replica of the group, a member of nothing now: the orphan
        // scan deletes it (after its grace), and no replica of the group that is listed.
        cluster.start_node(0);
        let returned = Instant::now();
        loop {
            router.repair_pass().await.unwrap();
            let kept = replicas_on(&nodes[0])
                .iter()
                .any(|replica| replica.partition == 0);
            if !kept {
                break;
            }
            assert!(
                returned.elapsed() < Duration::from_secs(60),
                "node 1 keeps its replica of the metadata group"
            );
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
        for node in &group {
            let address = nodes.iter().find(|known| known.id == *node).unwrap();
            assert!(
                replicas_on(address)
                    .iter()
                    .any(|replica| replica.partition == 0),
                "the orphan scan deleted node {node}'s listed replica of the metadata group"
            );
        }

        // A second loss in the group: still a majority of it, so metadata writes (here the
        // autoadmin's switch) and strong reads go on.
        let second = group[0];
        cluster.kill_node(usize::try_from(second - 1).unwrap());
        // The first write may meet the killed leader's connection closing under it (its
        // outcome then unknown, an error): the switch is idempotent, so it is asked again, as
        // an operator would, until the group's new leader answers.
        let lost_at = Instant::now();
        while let Err(error) = router.set_autoadmin_paused(true).await {
            assert!(
                lost_at.elapsed() < Duration::from_secs(30),
                "no metadata write within 30 s of the second loss: {error}"
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        assert!(router.cluster_status().await.unwrap().autoadmin_paused);
        router.set_autoadmin_paused(false).await.unwrap();
        assert_acknowledged_readable(&router, 0..written).await;

        // A router started afresh with a node list of node 1 (back, but no replica of the
        // group any more), the second node killed, and the one live node outside the group
        // (its metadata store starts on these three: none of them serves the group) finds the
        // group by asking those nodes for the nodes they know, and those where it is.
        let outside = nodes
            .iter()
            .find(|node| node.id != 1 && node.id != second && !group.contains(&node.id))
            .copied()
            .unwrap();
        let known: Vec<NodeAddress> = nodes
            .iter()
            .filter(|node| node.id == 1 || node.id == second)
            .copied()
            .chain([outside])
            .collect();
        // It starts as `shoal router` does, through `bootstrap`, which must load the cluster
        // and create nothing: replicas of the group created on its node list's lowest ids
        // would be a second, empty metadata group.
        let fresh = Router::new(repairing_config(&known, 31)).unwrap();
        let found = fresh.bootstrap(SHARDS).await.unwrap();
        assert_eq!(found.metadata_replicas, group);
        for node in [nodes[0], outside] {
            assert!(
                !replicas_on(&node)
                    .iter()
                    .any(|replica| replica.partition == 0),
                "bootstrap created a metadata replica on node {}",
                node.id
            );
        }
        assert_acknowledged_readable(&fresh, 0..written).await;
    });
}

/// Issue 19, decommission: five nodes, a table written; node 1, which also holds a replica of
/// the metadata group, is decommissioned while writes go on. The autoadmin moves each of its
/// replicas, the metadata group's included, with planned moves (the new replica joins, is
/// listed, added and caught up before the old one is removed, settled and deleted; a leader
/// among them hands over), and node 1 leaves the node list once neither a table nor the
/// metadata group lists it. Every partition and the metadata group end with three replicas on
/// the other nodes, node 1 (still running) hosts none of them, and every acknowledged write is
/// read back.
#[test]
fn a_decommissioned_node_is_drained_by_planned_moves_and_leaves_the_node_list() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = Cluster::start_some(5, 5);
    let nodes = cluster.nodes.clone();
    let drained = nodes[0];
    on_router_core(async {
        let router = Router::new(repairing_config(&nodes, 23)).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        router
            .create_table(create_people("on-demand"))
            .await
            .unwrap();
        let held = partitions_listing(&router, drained.id).await;
        for index in 0..50 {
            put_until_acknowledged(&router, index).await;
        }
        router.decommission_node(drained.id).await.unwrap();
        let started = Instant::now();
        let mut written = 50;
        let mut moved = 0;
        loop {
            let report = router.autoadmin_pass().await.unwrap();
            moved += report.moves_finished;
            for _ in 0..5 {
                put_until_acknowledged(&router, written).await;
                written += 1;
            }
            let listed = router
                .load_cluster()
                .await
                .unwrap()
                .nodes
                .iter()
                .any(|node| node.id == drained.id);
            if !listed {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "node 1 still listed after two minutes: {report:?}"
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "{} replicas and the metadata group's drained from node 1 in {:?}",
            held.len(),
            started.elapsed()
        );
        assert_eq!(
            moved,
            held.len() + 1,
            "one planned move per replica, the metadata group's included"
        );
        let metadata = router.load_cluster().await.unwrap().metadata_replicas;
        assert!(
            metadata.len() == 3 && !metadata.contains(&drained.id),
            "{metadata:?}"
        );
        let on_drained: Vec<u64> = replicas_on(&drained)
            .iter()
            .map(|replica| replica.partition)
            .filter(|partition| held.contains(partition) || *partition == 0)
            .collect();
        assert!(on_drained.is_empty(), "node 1 keeps {on_drained:?}");
        wait_until_whole(&router, &nodes, drained.id, written).await;
    });
}

/// Issue 19, growth: a cluster started with one node (its metadata group and a table's
/// partitions on one replica each) is joined by two more nodes. With balance off, the
/// autoadmin still adds the missing replicas (growth: join, record, add, catch up, nothing
/// removed), until every partition and the metadata group have a replica on each of the three
/// nodes; every acknowledged write reads back. Then node 1, where it all began, is killed for
/// good: with two of three replicas left, every group still serves and metadata is still
/// written (before growth, that loss stopped the whole cluster).
#[test]
fn a_cluster_started_on_one_node_grows_its_groups_to_three_replicas_as_nodes_join() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut cluster = Cluster::start_growing(1, 2);
    let nodes = cluster.nodes.clone();
    on_router_core(async {
        let mut config = repairing_config(&nodes[..1], 47);
        config.balance = false;
        let router = Router::new(config).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        router
            .create_table(create_people("on-demand"))
            .await
            .unwrap();
        for index in 0..30 {
            put_until_acknowledged(&router, index).await;
        }
        let partitions = router.table_partitions("people").await.unwrap();
        assert!(
            partitions
                .iter()
                .all(|partition| partition.replicas == vec![1])
        );
        cluster.start_node(1);
        cluster.start_node(2);
        let joined = Instant::now();
        let mut written = 30;
        let mut added = 0;
        loop {
            let report = router.autoadmin_pass().await.unwrap();
            added += report.replicas_added;
            assert_eq!(report.balance_moves, 0, "{report:?}");
            for _ in 0..5 {
                put_until_acknowledged(&router, written).await;
                written += 1;
            }
            let current = router.load_cluster().await.unwrap();
            let partitions = router.table_partitions("people").await.unwrap();
            let whole = |replicas: &[u64]| {
                let mut sorted = replicas.to_vec();
                sorted.sort_unstable();
                sorted == vec![1, 2, 3]
            };
            if current.nodes.len() == 3
                && report.moves_unfinished == 0
                && whole(&current.metadata_replicas)
                && partitions
                    .iter()
                    .all(|partition| whole(&partition.replicas))
            {
                break;
            }
            assert!(
                joined.elapsed() < Duration::from_secs(120),
                "not grown after two minutes: {report:?}, {current:?}, {partitions:?}"
            );
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
        let groups = router.table_partitions("people").await.unwrap().len() + 1;
        eprintln!(
            "{added} replicas added to {groups} groups in {:?}",
            joined.elapsed()
        );
        assert_eq!(
            added,
            2 * groups,
            "two additions per group, the metadata group's included"
        );
        wait_until_whole(&router, &nodes, 0, written).await;

        cluster.kill_node(0);
        let killed = Instant::now();
        while let Err(error) = router.set_autoadmin_paused(false).await {
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "no metadata write within 30 s of node 1's loss: {error}"
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        for index in written..written + 10 {
            put_until_acknowledged(&router, index).await;
        }
        assert_acknowledged_readable(&router, 0..written + 10).await;
    });
}

/// Issue 19, node join and balance: three nodes (peers of each other) hold a table of four
/// partitions, written. A fourth node starts with `--join` through node 1: it is added to the
/// cluster item, the other nodes learn its address from it, and the autoadmin's balance moves
/// replicas onto it (planned moves, followers first) until every node hosts three, then hands
/// leaderships over until each node leads one partition. Every partition ends with three
/// caught-up replicas and every acknowledged write reads back. With
/// the metadata group's majority down, the joined node still restarts (from its saved node
/// list, its seed down too), and the founders restarted with their static peers know it from
/// theirs; a table created afterwards is placed on it too. A node started with an id the
/// cluster has, at another address, is refused and exits.
#[test]
fn a_node_that_joins_receives_replicas_by_balance_and_a_taken_id_is_refused() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = std::cell::RefCell::new(Cluster::start_growing(3, 1));
    let nodes = cluster.borrow().nodes.clone();
    let (founders, joiner) = (nodes[..3].to_vec(), nodes[3]);
    on_router_core(async {
        // The router is configured with the founders only, as one deployed before the join.
        let router = Router::new(repairing_config(&founders, 29)).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        router
            .create_table(create_people("on-demand"))
            .await
            .unwrap();
        for index in 0..50 {
            put_until_acknowledged(&router, index).await;
        }
        let report = router.autoadmin_pass().await.unwrap();
        assert_eq!(
            report.moves_started, 0,
            "three nodes are balanced: {report:?}"
        );

        cluster.borrow_mut().start_node(3);
        let listed = router.load_cluster().await.unwrap();
        assert!(
            listed.nodes.contains(&joiner),
            "the joined node is listed: {listed:?}"
        );
        assert_eq!(listed.highest_node_id, joiner.id);
        let joined = Instant::now();
        let mut written = 50;
        let mut balance_moves = 0;
        loop {
            let report = router.autoadmin_pass().await.unwrap();
            balance_moves += report.balance_moves;
            for _ in 0..5 {
                put_until_acknowledged(&router, written).await;
                written += 1;
            }
            let partitions = router.table_partitions("people").await.unwrap();
            let per_node = |node: u64| {
                partitions
                    .iter()
                    .filter(|partition| partition.replicas.contains(&node))
                    .count()
            };
            if report.moves_unfinished == 0 && nodes.iter().all(|node| per_node(node.id) == 3) {
                break;
            }
            assert!(
                joined.elapsed() < Duration::from_secs(120),
                "not balanced after two minutes: {report:?}, {partitions:?}"
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "node 4 received {balance_moves} replicas in {:?}",
            joined.elapsed()
        );
        assert_eq!(balance_moves, 3, "12 replicas on 4 nodes: 3 move to node 4");
        wait_until_whole(&router, &nodes, 0, written).await;

        // Leader balance: the four partitions end led by four different nodes.
        let leading = || -> BTreeMap<u64, usize> {
            nodes
                .iter()
                .map(|node| {
                    let led = replicas_on(node)
                        .iter()
                        .filter(|replica| {
                            replica.partition != shoal_router::metadata::METADATA_PARTITION
                                && matches!(
                                    replica.role,
                                    shoal_wire::messages::ReplicaRole::Leader
                                        | shoal_wire::messages::ReplicaRole::LeaderWithLease
                                )
                        })
                        .count();
                    (node.id, led)
                })
                .collect()
        };
        let started = Instant::now();
        let mut transfers = 0;
        loop {
            let report = router.autoadmin_pass().await.unwrap();
            transfers += report.leader_transfers;
            put_until_acknowledged(&router, written).await;
            written += 1;
            let led = leading();
            if led.values().all(|count| *count == 1) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "leaders not balanced: {led:?}"
            );
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "leaders balanced in {:?} ({transfers} transfers)",
            started.elapsed()
        );
        let on_joiner = partitions_listing(&router, joiner.id).await;
        let hosted: Vec<u64> = replicas_on(&joiner)
            .iter()
            .map(|replica| replica.partition)
            .collect();
        assert!(
            on_joiner.iter().all(|partition| hosted.contains(partition)),
            "node 4 hosts {hosted:?}, listed for {on_joiner:?}"
        );

        // Every node saved the node list: with nodes 1 and 3 down, the metadata group has no
        // majority, and the joined node still restarts (with the same flags; its seed is
        // down); the founders restart with their static peers and know node 4 from the list.
        for slot in [3, 0, 2] {
            cluster.borrow_mut().kill_node(slot);
        }
        cluster.borrow_mut().start_node(3);
        cluster.borrow_mut().start_node(0);
        cluster.borrow_mut().start_node(2);
        for _ in 0..20 {
            put_until_acknowledged(&router, written).await;
            written += 1;
        }
        wait_until_whole(&router, &nodes, 0, written).await;
        assert_eq!(router.load_cluster().await.unwrap().nodes.len(), 4);

        // New tables are placed on the joined node as well.
        router.create_table(create_named("later")).await.unwrap();
        let later = router.table_partitions("later").await.unwrap();
        assert!(
            later
                .iter()
                .any(|partition| partition.replicas.contains(&joiner.id)),
            "{later:?}"
        );
    });

    // Node 3's id at another address: refused, and the process exits saying why.
    let (bases, admins) = free_port_blocks(1);
    let taken = NodeAddress {
        id: 3,
        address: SocketAddr::from(([127, 0, 0, 1], bases[0])),
    };
    let data_dir = tempfile::tempdir().unwrap();
    let output = cluster
        .borrow()
        .node_command(taken, data_dir.path(), admins[0])
        .arg(format!("--join={}", nodes[1].address))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("already in the cluster at"), "{stderr}");
}

/// The split threshold of the split test: small, so that a few hundred items cross it.
const SPLIT_TEST_BYTES: u64 = 64 << 10;
/// Items written before the autoadmin looks: about 75 per partition of 1 KB each, past the
/// threshold in each of the table's four partitions.
const SPLIT_TEST_ITEMS: usize = 300;
/// Items the writer adds while the splits run.
const SPLIT_TEST_WRITES_DURING: usize = 100;

/// The value of one series of a router's /metrics page (`name{labels}` as written there);
/// 0 when the page does not have it.
fn metric(router: &Router, series: &str) -> u64 {
    router
        .render_metrics()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

/// A router's count of requests refused for naming keys their partition does not own since a
/// split.
fn keys_elsewhere_refusals(router: &Router) -> u64 {
    metric(
        router,
        "shoal_router_forward_retries_total{kind=\"keys_elsewhere\"}",
    )
}

/// The partitions of `people` as `router` reads them from the metadata now (refreshing its
/// cache): (id, first hash, last hash).
async fn people_partitions(router: &Router) -> Vec<(u64, u64, u64)> {
    router
        .table_partitions("people")
        .await
        .unwrap()
        .iter()
        .map(|partition| (partition.id, partition.range.first, partition.range.last))
        .collect()
}

/// Watches the split test's table until a split is routed that `stale_routers` have not
/// seen, then runs a TransactGetItems and a TransactWriteItems through them on the items of
/// that parent (written before the splits). Each router groups the items as one prepare or
/// read for the parent; the child it is sent to refuses the keys it did not get, the router
/// groups them again, and both succeed (they failed with an InternalServerError before).
/// Returns whether it ran them; it gives up when `watching` goes false.
async fn transactions_grouped_before_a_split(
    router: std::rc::Rc<Router>,
    stale_routers: Vec<Router>,
    watching: std::rc::Rc<std::cell::Cell<bool>>,
) -> bool {
    // The stale routers' maps, read again each second: within the cache's lifetime (5 s), so
    // a split the main router sees routed since the last read is one they do not know of.
    let mut stale_maps: Vec<Vec<(u64, u64, u64)>> = Vec::new();
    let mut stale_read_at = Instant::now();
    let parent = loop {
        if !watching.get() {
            return false;
        }
        if stale_maps.is_empty() || stale_read_at.elapsed() >= Duration::from_secs(1) {
            stale_maps.clear();
            for stale in &stale_routers {
                stale_maps.push(people_partitions(stale).await);
            }
            stale_read_at = Instant::now();
        }
        let now = people_partitions(&router).await;
        let unseen = stale_maps[0].iter().find(|parent| {
            !now.iter().any(|(id, _, _)| *id == parent.0)
                && stale_maps.iter().all(|map| map.contains(parent))
        });
        if let Some(parent) = unseen {
            break *parent;
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    };
    let (_, first, last) = parent;
    let keys: Vec<usize> = (0..SPLIT_TEST_ITEMS)
        .filter(|index| {
            let value = shoal_model::AttributeValue::String(key(*index));
            let hash = shoal_model::key::partition_hash(&value).unwrap();
            (first..=last).contains(&hash)
        })
        .take(shoal_model::transaction::TRANSACT_ITEMS_MAX)
        .collect();
    assert!(keys.len() > 1, "parent {parent:?} holds {keys:?}");
    let gets: Vec<Json> = keys
        .iter()
        .map(|index| json!({"Get": {"TableName": "people", "Key": {"pk": {"S": key(*index)}}}}))
        .collect();
    let got = stale_routers[0]
        .transact_get_items(json!({ "TransactItems": gets }))
        .await
        .unwrap();
    for (position, index) in keys.iter().enumerate() {
        assert_eq!(
            got["Responses"][position]["Item"]["pk"]["S"],
            key(*index),
            "TransactGetItems answer {position}"
        );
    }
    let updates: Vec<Json> = keys
        .iter()
        .map(|index| {
            json!({"Update": {
                "TableName": "people",
                "Key": {"pk": {"S": key(*index)}},
                "UpdateExpression": "SET in_transaction = :yes",
                "ExpressionAttributeValues": {":yes": {"BOOL": true}},
            }})
        })
        .collect();
    stale_routers[1]
        .transact_write_items(json!({ "TransactItems": updates }))
        .await
        .unwrap();
    for index in &keys {
        let found = router
            .get_item(json!({
                "TableName": "people",
                "Key": {"pk": {"S": key(*index)}},
                "ConsistentRead": true,
            }))
            .await
            .unwrap();
        assert_eq!(
            found["Item"]["in_transaction"],
            json!({"BOOL": true}),
            "item {index} after the transaction"
        );
    }
    for (which, stale) in stale_routers.iter().enumerate() {
        assert!(
            keys_elsewhere_refusals(stale) > 0,
            "stale router {which}: no child of partition {parent:?} refused the keys it lost"
        );
    }
    eprintln!(
        "a TransactGetItems and a TransactWriteItems of {} items grouped for split partition \
         {} succeeded",
        keys.len(),
        parent.0
    );
    true
}

/// A partition past the size threshold whose bytes are one item collection (one partition
/// key, many sort keys) is split once: the child holding the collection keeps nearly all of
/// the bytes, and is not split again (halving its hash range again and again would only make
/// empty partitions); every item is still found.
#[test]
fn an_item_collection_past_the_size_threshold_is_split_once_not_again_and_again() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = Cluster::start();
    let nodes = cluster.nodes.clone();
    on_router_core(async {
        let mut config = repairing_config(&nodes, 27);
        config.balance = false;
        config.split_bytes = SPLIT_TEST_BYTES;
        config.split_read_units_per_second = 0;
        config.split_write_units_per_second = 0;
        let router = Router::new(config).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        router
            .create_table(json!({
                "TableName": "orders",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "BillingMode": "PAY_PER_REQUEST",
            }))
            .await
            .unwrap();
        // 100 items of 1 KB in one collection: about 100 KiB, past the 64 KiB threshold.
        let collection_items = 100;
        for index in 0..collection_items {
            router
                .put_item(json!({
                    "TableName": "orders",
                    "Item": {
                        "pk": {"S": "customer-1"},
                        "sk": {"S": format!("order-{index:04}")},
                        "pad": {"S": "p".repeat(1000)},
                    },
                }))
                .await
                .unwrap();
        }
        let started = Instant::now();
        let (mut splits_started, mut splits_finished) = (0, 0);
        // Until the split ends, then two passes more (three counting the one that finished
        // it): the next is a balance check (one follows every finished split at once), which
        // found the heavy child past the threshold and, before this change, split it again.
        let mut passes_after = 0;
        while passes_after < 3 {
            let report = router.autoadmin_pass().await.unwrap();
            assert_eq!(report.splits.refused, 0, "{report:?}");
            splits_started += report.splits.started;
            splits_finished += report.splits.finished;
            if splits_finished > 0 && report.splits.unfinished == 0 {
                passes_after += 1;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the split did not end within a minute: {report:?}"
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!((splits_started, splits_finished), (1, 1));
        let marked = metric(
            &router,
            "shoal_router_autoadmin_events_total{kind=\"split_indivisible\"}",
        );
        assert_eq!(marked, 1);
        let found = router
            .query(json!({
                "TableName": "orders",
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": "customer-1"}},
                "ConsistentRead": true,
                "Select": "COUNT",
            }))
            .await
            .unwrap();
        assert_eq!(found["Count"], collection_items);
    });
}

/// The partition hash of the split tests' key `index`.
fn key_hash_of(index: usize) -> u64 {
    shoal_model::key::partition_hash(&shoal_model::AttributeValue::String(key(index))).unwrap()
}

/// The indexes of the first `count` keys whose hash is in `first..=last`.
fn keys_hashing_within(first: u64, last: u64, count: usize) -> Vec<usize> {
    (0..)
        .filter(|index| (first..=last).contains(&key_hash_of(*index)))
        .take(count)
        .collect()
}

/// Writes the traffic split test sends to each of its two busy partitions: within the
/// replicas' 10 s window, 40 write units per second, twice the test's threshold.
const TRAFFIC_TEST_WRITES: usize = 400;

/// Split for traffic (issue 19; the DynamoDB paper, section 4.1): with the write threshold
/// set low, a partition whose writes go to the lower quarter of its hash range is split where
/// its traffic balances, not in the middle (which would leave all of it on one side); a
/// partition as busy but with all of its writes to one item is not split, since the item
/// would be as hot in either child; every item is still found afterwards.
#[test]
fn a_busy_partition_splits_where_its_traffic_balances_and_a_hot_item_alone_does_not() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = Cluster::start();
    let nodes = cluster.nodes.clone();
    on_router_core(async {
        let mut config = repairing_config(&nodes, 26);
        config.balance = false;
        config.split_bytes = 0;
        config.split_read_units_per_second = 0;
        config.split_write_units_per_second = 20;
        config.split_traffic_checks = 1;
        let router = Router::new(config).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        router
            .create_table(create_people("on-demand"))
            .await
            .unwrap();
        let partitions = router.table_partitions("people").await.unwrap();
        let (busy, hot_item) = (&partitions[0], &partitions[1]);
        let quarter = (busy.range.last - busy.range.first) / 4;
        let busy_keys = keys_hashing_within(busy.range.first, busy.range.first + quarter, 100);
        let hot_key = keys_hashing_within(hot_item.range.first, hot_item.range.last, 1)[0];
        let write_round = |round: usize| {
            let router = &router;
            let index = busy_keys[round % busy_keys.len()];
            async move {
                router.put_item(put_body(index)).await.unwrap();
                router.put_item(put_body(hot_key)).await.unwrap();
            }
        };
        for round in 0..TRAFFIC_TEST_WRITES {
            write_round(round).await;
        }
        let started = Instant::now();
        let (mut splits_started, mut splits_finished) = (0, 0);
        let mut round = TRAFFIC_TEST_WRITES;
        loop {
            let report = router.autoadmin_pass().await.unwrap();
            assert_eq!(report.splits.refused, 0, "{report:?}");
            splits_started += report.splits.started;
            splits_finished += report.splits.finished;
            if splits_started == 0 {
                // A balance check that gathered no loads (the next is 10 s later) must still
                // find the partitions busy over the replicas' last 10 s.
                for _ in 0..TRAFFIC_TEST_WRITES / 20 {
                    write_round(round).await;
                    round += 1;
                }
            }
            if splits_finished > 0 && report.splits.started == 0 && report.splits.unfinished == 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the busy partition was not split within a minute: {report:?}"
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        let after = router.table_partitions("people").await.unwrap();
        assert_eq!(
            splits_finished, 1,
            "only the busy partition splits: {after:?}"
        );
        assert!(after.iter().any(|partition| partition.id == hot_item.id));
        assert!(!after.iter().any(|partition| partition.id == busy.id));
        let right = after
            .iter()
            .find(|partition| partition.range.last == busy.range.last)
            .unwrap();
        let cut = right.range.first;
        // The cut is inside the quarter the writes went to, and leaves each side a good part
        // of the keys written.
        assert!(
            cut > busy.range.first && cut <= busy.range.first + quarter,
            "cut {cut:#x}"
        );
        let left_keys = busy_keys
            .iter()
            .filter(|index| key_hash_of(**index) < cut)
            .count();
        assert!(
            (25..=75).contains(&left_keys),
            "{left_keys} of {} keys left of the cut",
            busy_keys.len()
        );
        let skipped = metric(
            &router,
            "shoal_router_autoadmin_events_total{kind=\"split_skipped_single_hot_key\"}",
        );
        assert!(skipped >= 1, "the hot item's partition was not found hot");
        for index in busy_keys.iter().chain([&hot_key]) {
            let found = router
                .get_item(json!({
                    "TableName": "people",
                    "Key": {"pk": {"S": key(*index)}},
                    "ConsistentRead": true,
                }))
                .await
                .unwrap();
            assert_eq!(found["Item"]["pk"]["S"], key(*index));
        }
        let (scanned, _) = scan_keys(&router, None).await;
        assert_eq!(scanned.len(), busy_keys.len() + 1);
    });
}

fn padded_put(index: usize) -> Json {
    json!({
        "TableName": "people",
        "Item": {
            "pk": {"S": key(index)},
            "n": {"N": index.to_string()},
            "pad": {"S": "p".repeat(1000)},
        },
    })
}

/// Issue 19, split for size: a table whose four partitions each pass the split threshold (set
/// to 64 KiB) is split by the autoadmin while a writer keeps writing: each partition's leader
/// applies the split, every node builds both children from its replica, the router routes the
/// children and the parents' replicas are deleted. Every write is acknowledged (the router
/// waits out a parent's frozen window instead of failing the request), and afterwards every
/// item is found by GetItem, Query and Scan (whole, and in parallel segments), exactly once,
/// and no node hosts a parent any more. The longest write during the splits is printed: the
/// write pause a split costs.
#[test]
fn a_table_past_the_split_threshold_splits_and_every_item_is_still_found() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = Cluster::start();
    let nodes = cluster.nodes.clone();
    on_router_core(async {
        let mut config = repairing_config(&nodes, 23);
        config.balance = false;
        config.split_bytes = SPLIT_TEST_BYTES;
        let router = std::rc::Rc::new(Router::new(config).unwrap());
        router.bootstrap(SHARDS).await.unwrap();
        router
            .create_table(create_people("on-demand"))
            .await
            .unwrap();
        let parents: Vec<u64> = router
            .table_partitions("people")
            .await
            .unwrap()
            .iter()
            .map(|partition| partition.id)
            .collect();
        for index in 0..SPLIT_TEST_ITEMS {
            router.put_item(padded_put(index)).await.unwrap();
        }
        let writer = glommio::spawn_local({
            let router = router.clone();
            async move {
                let mut longest = Duration::ZERO;
                for index in SPLIT_TEST_ITEMS..SPLIT_TEST_ITEMS + SPLIT_TEST_WRITES_DURING {
                    let started = Instant::now();
                    if let Err(error) = router.put_item(padded_put(index)).await {
                        panic!("a write during the splits failed: {error}");
                    }
                    longest = longest.max(started.elapsed());
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                }
                longest
            }
        });
        // The transactions' ledger table is created now, not while the watcher's transactions
        // wait on it during the splits (a ConditionCheck writes nothing).
        router
            .transact_write_items(json!({"TransactItems": [{"ConditionCheck": {
                "TableName": "people",
                "Key": {"pk": {"S": key(0)}},
                "ConditionExpression": "attribute_exists(pk)",
            }}]}))
            .await
            .unwrap();
        // Two more routers that hear of a split only when a node refuses them: a watcher runs
        // transactions through them with the map from before the first split it sees routed.
        let mut stale_routers = Vec::new();
        for seed in [24, 25] {
            let other = Router::new(repairing_config(&nodes, seed)).unwrap();
            other.load_cluster().await.unwrap();
            stale_routers.push(other);
        }
        let watching = std::rc::Rc::new(std::cell::Cell::new(true));
        let mut watcher = Some(glommio::spawn_local(transactions_grouped_before_a_split(
            router.clone(),
            stale_routers,
            watching.clone(),
        )));
        let started = Instant::now();
        let (mut splits_started, mut splits_finished) = (0, 0);
        loop {
            let report = router.autoadmin_pass().await.unwrap();
            // The next pass may split the children the watcher's transaction writes to (a split
            // meeting its locks is refused): it finishes first.
            if let Some(watcher) = watcher.take() {
                watching.set(false);
                assert!(
                    watcher.await,
                    "every split of the first pass was routed between two looks of the watcher"
                );
            }
            splits_started += report.splits.started;
            splits_finished += report.splits.finished;
            assert_eq!(report.splits.refused, 0, "{report:?}");
            let settled = report.splits.started == 0 && report.splits.unfinished == 0;
            if splits_finished >= parents.len() && splits_finished == splits_started && settled {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the splits did not end within two minutes: {splits_started} started, \
                 {splits_finished} finished, {report:?}"
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        let longest_write = writer.await;
        let partitions = router.table_partitions("people").await.unwrap();
        eprintln!(
            "{splits_finished} splits in {:?}: {} partitions; the longest write during them took \
             {longest_write:?}",
            started.elapsed(),
            partitions.len()
        );
        assert!(
            partitions
                .iter()
                .all(|partition| !parents.contains(&partition.id)),
            "every parent was split: {partitions:?}"
        );
        let written = SPLIT_TEST_ITEMS + SPLIT_TEST_WRITES_DURING;
        assert_acknowledged_readable(&router, 0..written).await;
        for index in (0..written).step_by(37) {
            let found = router
                .query(json!({
                    "TableName": "people",
                    "KeyConditionExpression": "pk = :pk",
                    "ExpressionAttributeValues": {":pk": {"S": key(index)}},
                    "ConsistentRead": true,
                }))
                .await
                .unwrap();
            assert_eq!(found["Count"], 1, "Query for item {index}: {found}");
        }
        let every: BTreeSet<String> = (0..written).map(key).collect();
        let (scanned, _) = scan_keys(&router, None).await;
        assert_eq!(scanned.len(), written, "the scan saw each item once");
        assert_eq!(scanned.iter().cloned().collect::<BTreeSet<_>>(), every);
        let mut segmented = Vec::new();
        for segment in 0..3 {
            segmented.extend(scan_keys(&router, Some((segment, 3))).await.0);
        }
        assert_eq!(segmented.len(), written, "the segments saw each item once");
        assert_eq!(segmented.into_iter().collect::<BTreeSet<_>>(), every);
        for (node, hosted) in hosted_partitions(&nodes) {
            assert!(
                hosted.iter().all(|partition| !parents.contains(partition)),
                "node {node} still hosts a parent: {hosted:?}"
            );
        }
    });
}

/// The GSI split test's index: items are spread over [`GSI_SPLIT_TEST_CUSTOMERS`] index
/// partition keys, so its entries spread over the index's hash range as items do over the
/// table's.
const GSI_SPLIT_TEST_INDEX: &str = "by_customer";
const GSI_SPLIT_TEST_CUSTOMERS: usize = 60;

fn customer_of(index: usize) -> String {
    format!("customer-{:03}", index % GSI_SPLIT_TEST_CUSTOMERS)
}

/// The `pk` of every item the GSI split test's index returns for `body`, page after page of
/// a Query (`query`) or a Scan.
async fn index_pages(router: &Router, mut body: Json, query: bool) -> Vec<String> {
    body["TableName"] = json!("orders");
    body["IndexName"] = json!(GSI_SPLIT_TEST_INDEX);
    let mut found = Vec::new();
    loop {
        let page = if query {
            router.query(body.clone()).await
        } else {
            router.scan(body.clone()).await
        }
        .unwrap();
        for item in page["Items"].as_array().unwrap() {
            found.push(item["pk"]["S"].as_str().unwrap().to_string());
        }
        match page.get("LastEvaluatedKey") {
            Some(next) => body["ExclusiveStartKey"] = next.clone(),
            None => return found,
        }
    }
}

/// The items of one customer, as the GSI split test's index must list them (by `pk`).
async fn customer_items(router: &Router, customer: &str) -> BTreeSet<String> {
    let body = json!({
        "KeyConditionExpression": "customer = :c",
        "ExpressionAttributeValues": {":c": {"S": customer}},
        "Limit": 5,
    });
    index_pages(router, body, true).await.into_iter().collect()
}

/// Issue 19, splits of global secondary index partitions: an index's partitions hold its
/// entries, placed by the hash of the index's partition key as a table's items are by theirs,
/// so an index partition past the split threshold splits like a table partition. With the
/// threshold at 64 KiB and every item projected (about 75 KiB of entries per index partition),
/// the autoadmin splits every one of the index's partitions while a writer goes on; the
/// propagation of the writes meets the frozen parents and the children (it groups again with
/// a refreshed map). Afterwards the index lists every item under its customer exactly once, by
/// Query and by a paged Scan, and no node hosts an index parent.
#[test]
fn a_global_index_past_the_split_threshold_splits_and_lists_every_item() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = Cluster::start();
    let nodes = cluster.nodes.clone();
    on_router_core(async {
        let mut config = repairing_config(&nodes, 28);
        config.balance = false;
        config.split_bytes = SPLIT_TEST_BYTES;
        config.split_read_units_per_second = 0;
        config.split_write_units_per_second = 0;
        let router = std::rc::Rc::new(Router::new(config).unwrap());
        router.bootstrap(SHARDS).await.unwrap();
        router
            .create_table(json!({
                "TableName": "orders",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "customer", "AttributeType": "S"},
                ],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "GlobalSecondaryIndexes": [{
                    "IndexName": GSI_SPLIT_TEST_INDEX,
                    "KeySchema": [
                        {"AttributeName": "customer", "KeyType": "HASH"},
                        {"AttributeName": "pk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }],
                "BillingMode": "PAY_PER_REQUEST",
            }))
            .await
            .unwrap();
        glommio::spawn_local({
            let router = router.clone();
            async move { router.run_index_propagation().await }
        })
        .detach();
        let index_parents: Vec<u64> = router
            .index_partitions("orders", GSI_SPLIT_TEST_INDEX)
            .await
            .unwrap()
            .iter()
            .map(|partition| partition.id)
            .collect();
        let order = |index: usize| {
            json!({
                "TableName": "orders",
                "Item": {
                    "pk": {"S": key(index)},
                    "customer": {"S": customer_of(index)},
                    "pad": {"S": "p".repeat(1000)},
                },
            })
        };
        for index in 0..SPLIT_TEST_ITEMS {
            router.put_item(order(index)).await.unwrap();
        }
        let writer = glommio::spawn_local({
            let router = router.clone();
            async move {
                for index in SPLIT_TEST_ITEMS..SPLIT_TEST_ITEMS + SPLIT_TEST_WRITES_DURING {
                    if let Err(error) = router.put_item(order(index)).await {
                        panic!("a write during the index splits failed: {error}");
                    }
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        let started = Instant::now();
        loop {
            let report = router.autoadmin_pass().await.unwrap();
            let partitions = router
                .index_partitions("orders", GSI_SPLIT_TEST_INDEX)
                .await
                .unwrap();
            let all_split = partitions
                .iter()
                .all(|partition| !index_parents.contains(&partition.id));
            if all_split && report.splits.started == 0 && report.splits.unfinished == 0 {
                eprintln!(
                    "the index's {} partitions became {} in {:?}",
                    index_parents.len(),
                    partitions.len(),
                    started.elapsed()
                );
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the index partitions were not all split within two minutes: {partitions:?}, \
                 {report:?}"
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        writer.await;
        let written = SPLIT_TEST_ITEMS + SPLIT_TEST_WRITES_DURING;
        let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for index in 0..written {
            expected
                .entry(customer_of(index))
                .or_default()
                .insert(key(index));
        }
        // The index is eventually consistent: propagation catches up within seconds.
        let converging = Instant::now();
        for (customer, items) in &expected {
            loop {
                let found = customer_items(&router, customer).await;
                if found == *items {
                    break;
                }
                assert!(
                    converging.elapsed() < Duration::from_secs(60),
                    "the index lists {found:?} for {customer}, not {items:?}"
                );
                glommio::timer::sleep(Duration::from_millis(200)).await;
            }
        }
        let scanned = index_pages(&router, json!({"Limit": SCAN_LIMIT}), false).await;
        assert_eq!(scanned.len(), written, "the index scan saw each entry once");
        assert_eq!(
            scanned.into_iter().collect::<BTreeSet<_>>(),
            (0..written).map(key).collect::<BTreeSet<_>>()
        );
        for (node, hosted) in hosted_partitions(&nodes) {
            assert!(
                hosted
                    .iter()
                    .all(|partition| !index_parents.contains(partition)),
                "node {node} still hosts an index parent: {hosted:?}"
            );
        }
    });
}

/// The weight balance test's split threshold: its big partitions (about 150 KiB) weigh about
/// 600 thousandths each, past the balance floor of 500, and stay whole.
const WEIGHT_TEST_SPLIT_BYTES: u64 = 256 << 10;
/// Items of 1 KB written into each of the two big partitions.
const WEIGHT_TEST_ITEMS: usize = 150;

/// The weight balance test's two tables.
const WEIGHT_TEST_TABLES: [&str; 2] = ["people", "others"];

/// Every partition of the weight balance test's tables, with its table's name.
async fn weight_test_partitions(
    router: &Router,
) -> Vec<(&'static str, shoal_router::partition_map::PartitionEntry)> {
    let mut listed = Vec::new();
    for table in WEIGHT_TEST_TABLES {
        for partition in router.table_partitions(table).await.unwrap() {
            listed.push((table, partition));
        }
    }
    listed
}

/// How many of `partitions`' replicas each node holds.
fn replicas_per_node(
    partitions: &[(&str, shoal_router::partition_map::PartitionEntry)],
) -> BTreeMap<u64, usize> {
    let mut per_node: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, partition) in partitions {
        for node in &partition.replicas {
            *per_node.entry(*node).or_default() += 1;
        }
    }
    per_node
}

/// Issue 19, balance by storage: four nodes, two tables of four partitions each, replica
/// counts even. Two partitions with the same three replicas are filled (about 150 KiB each),
/// so the fourth node carries none of the bytes. The autoadmin swaps one of the big replicas
/// onto that node for a light one of its own (two moves, the counts still even), and then
/// leaves things be: the two nodes that carry both big replicas cannot give one without
/// becoming the light ones, so no further move narrows any gap, and none is made at the
/// balance checks that follow. Every item is still read back.
#[test]
fn nodes_carrying_more_bytes_swap_a_big_replica_for_a_small_one_and_then_stay() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = Cluster::start_some(4, 4);
    let nodes = cluster.nodes.clone();
    on_router_core(async {
        let mut config = repairing_config(&nodes, 30);
        config.split_bytes = WEIGHT_TEST_SPLIT_BYTES;
        config.split_read_units_per_second = 0;
        config.split_write_units_per_second = 0;
        let router = Router::new(config).unwrap();
        router.bootstrap(SHARDS).await.unwrap();
        for table in WEIGHT_TEST_TABLES {
            router.create_table(create_named(table)).await.unwrap();
        }
        let partitions = weight_test_partitions(&router).await;
        let per_node = replicas_per_node(&partitions);
        assert!(
            per_node.values().all(|count| *count == 6),
            "the counts start even: {per_node:?}"
        );
        // Two partitions with the same replicas; the node outside them is the light one.
        let sorted = |replicas: &[u64]| {
            let mut replicas = replicas.to_vec();
            replicas.sort_unstable();
            replicas
        };
        let (first, second) = partitions
            .iter()
            .enumerate()
            .find_map(|(index, (_, a))| {
                partitions[index + 1..]
                    .iter()
                    .find(|(_, b)| sorted(&a.replicas) == sorted(&b.replicas))
                    .map(|b| (partitions[index].clone(), b.clone()))
            })
            .expect("two of eight partitions on four nodes share their replicas");
        let light = nodes
            .iter()
            .map(|node| node.id)
            .find(|node| !first.1.replicas.contains(node))
            .unwrap();
        let mut written: Vec<(&str, usize)> = Vec::new();
        for (table, partition) in [&first, &second] {
            for index in keys_hashing_within(
                partition.range.first,
                partition.range.last,
                WEIGHT_TEST_ITEMS,
            ) {
                let mut put = padded_put(index);
                put["TableName"] = json!(table);
                router.put_item(put).await.unwrap();
                written.push((table, index));
            }
        }
        let big = [first.1.id, second.1.id];
        let weighed = "shoal_router_autoadmin_events_total{kind=\"weight_balance_planned\"}";
        let started = Instant::now();
        let mut moves = 0;
        loop {
            let report = router.autoadmin_pass().await.unwrap();
            moves += report.balance_moves;
            let now = weight_test_partitions(&router).await;
            let light_took_one = now.iter().any(|(_, partition)| {
                big.contains(&partition.id) && partition.replicas.contains(&light)
            });
            if metric(&router, weighed) >= 1 && report.moves_unfinished == 0 && light_took_one {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no big replica reached node {light} within two minutes: {report:?}, {now:?}"
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(moves, 2, "one swap: a big replica out, a small one back");
        // Two balance checks more (10 s apart): nothing moves.
        let settled = Instant::now();
        while settled.elapsed() < Duration::from_secs(22) {
            let report = router.autoadmin_pass().await.unwrap();
            assert_eq!(
                report.moves_started, 0,
                "balanced by weight, it stays: {report:?}"
            );
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(metric(&router, weighed), 1);
        let partitions = weight_test_partitions(&router).await;
        let per_node = replicas_per_node(&partitions);
        assert!(per_node.values().all(|count| *count == 6), "{per_node:?}");
        // Six big replicas on four nodes: each node carries one or two.
        for node in &nodes {
            let carried = partitions
                .iter()
                .filter(|(_, partition)| {
                    big.contains(&partition.id) && partition.replicas.contains(&node.id)
                })
                .count();
            assert!(
                (1..=2).contains(&carried),
                "node {} carries {carried}",
                node.id
            );
        }
        for (table, index) in written {
            let found = router
                .get_item(json!({
                    "TableName": table,
                    "Key": {"pk": {"S": key(index)}},
                    "ConsistentRead": true,
                }))
                .await
                .unwrap();
            assert_eq!(found["Item"]["n"]["N"], index.to_string());
        }
    });
}
