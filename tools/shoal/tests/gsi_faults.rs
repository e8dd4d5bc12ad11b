//! Global secondary indexes with real processes and real faults (issue 16): `shoal dev` with
//! three nodes; a table with a GSI takes a write load (puts that move items between index
//! keys, and deletes) while each node in turn is SIGKILLed and restarted by `shoal dev`, so
//! every base partition leader and every index partition leader dies at some point. Every write
//! is retried until it has a definite answer, so the table's final state is known exactly;
//! afterwards the index must converge to exactly the projection of that state: no entry
//! missing, none extra, none stale.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::dev::{Dev, ONE_CLUSTER_AT_A_TIME, client_of, write_definitely};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};
use shoal_client::{Client, ClientError};

const WATCHDOG: Duration = Duration::from_secs(420);
const TABLE: &str = "indexed";
const INDEX: &str = "by_group";
/// Distinct items the load writes; each write gives its item one of `GROUPS` index keys, or
/// none (it leaves the sparse index).
const ITEMS: u64 = 40;
const GROUPS: u64 = 4;
/// Writes of the load, spread over the node kills.
const WRITES: u64 = 600;
/// How long the index may take to converge after the load: generous, since the test shares two
/// cores with builds; this asserts convergence, not its speed.
const CONVERGENCE_DEADLINE: Duration = Duration::from_secs(120);

/// The table is created over the DynamoDB HTTP API: the native protocol's CreateTable has no
/// index members.
fn http_call(port: u16, operation: &str, body: &Json) -> Json {
    common::dev::http_call(port, &format!("DynamoDB_20120810.{operation}"), body).unwrap()
}

fn create_table(port: u16) {
    let created = http_call(
        port,
        "CreateTable",
        &json!({
            "TableName": TABLE,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "group", "AttributeType": "S"},
                {"AttributeName": "seq", "AttributeType": "N"},
            ],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [{
                "IndexName": INDEX,
                "KeySchema": [
                    {"AttributeName": "group", "KeyType": "HASH"},
                    {"AttributeName": "seq", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["version"]},
            }],
        }),
    );
    assert_eq!(created["TableDescription"]["TableStatus"], "ACTIVE");
}

/// What write `number` does: a put of item `number % ITEMS` into a group (or out of the index,
/// every fifth), or every seventh a delete. The item records the write's number in `version`
/// (projected) and `seq` (the index sort key), so a stale entry shows.
fn write_of(number: u64) -> (String, Option<Json>) {
    let pk = format!("item{}", number % ITEMS);
    if number % 7 == 6 {
        return (pk, None);
    }
    let mut item = json!({
        "pk": {"S": pk},
        "version": {"N": number.to_string()},
        "seq": {"N": number.to_string()},
        "payload": {"S": "x".repeat(64)},
    });
    if number % 5 != 4 {
        item["group"] = json!({"S": format!("g{}", (number * 3) % GROUPS)});
    }
    (pk, Some(item))
}

/// The index's entries of every group: (group, seq, pk, version), each page followed.
fn index_entries(client: &Client) -> Result<Vec<(String, u64, String, u64)>, ClientError> {
    let number =
        |item: &Json, name: &str| -> u64 { item[name]["N"].as_str().unwrap().parse().unwrap() };
    let mut entries = Vec::new();
    for group in 0..GROUPS {
        let group = format!("g{group}");
        let mut request = json!({
            "TableName": TABLE,
            "IndexName": INDEX,
            "KeyConditionExpression": "#g = :g",
            "ExpressionAttributeNames": {"#g": "group"},
            "ExpressionAttributeValues": {":g": {"S": group}},
        });
        loop {
            let page = client.query(&request)?;
            for item in page["Items"].as_array().unwrap() {
                assert!(
                    item.get("payload").is_none(),
                    "an unprojected attribute: {item}"
                );
                entries.push((
                    group.clone(),
                    number(item, "seq"),
                    item["pk"]["S"].as_str().unwrap().to_string(),
                    number(item, "version"),
                ));
            }
            match page.get("LastEvaluatedKey") {
                Some(key) if !key.is_null() => request["ExclusiveStartKey"] = key.clone(),
                _ => break,
            }
        }
    }
    entries.sort();
    Ok(entries)
}

#[test]
fn a_gsi_converges_to_its_table_after_every_leader_was_killed_during_writes() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dev = Dev::start(&[], WATCHDOG);
    create_table(dev.port);
    let mut client = client_of(&dev);
    // The final state of every item, as the last definite write left it.
    let mut table: BTreeMap<String, Option<Json>> = BTreeMap::new();
    let kill_every = WRITES / (u64::from(common::dev::NODES) + 1);
    for number in 0..WRITES {
        if number > 0 && number % kill_every == 0 {
            // Node 1, 2, 3 in turn; `shoal dev` restarts each on its data.
            let node = number / kill_every;
            let name = format!("node {node}");
            let pid = dev.pid_of(&name).expect("a node's pid");
            kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
            dev.eventually(&format!("{name} restarted"), || {
                dev.pid_of(&name).filter(|restarted| *restarted != pid)
            });
        }
        let (pk, item) = write_of(number);
        write_definitely(&dev, &mut client, TABLE, &pk, item.as_ref());
        table.insert(pk, item);
    }
    let number =
        |item: &Json, name: &str| -> u64 { item[name]["N"].as_str().unwrap().parse().unwrap() };
    let mut expected: Vec<(String, u64, String, u64)> = table
        .iter()
        .filter_map(|(pk, item)| {
            let item = item.as_ref()?;
            let group = item.get("group")?["S"].as_str()?.to_string();
            Some((
                group,
                number(item, "seq"),
                pk.clone(),
                number(item, "version"),
            ))
        })
        .collect();
    expected.sort();
    let deadline = Instant::now() + CONVERGENCE_DEADLINE;
    let mut last_seen = Vec::new();
    loop {
        match index_entries(&client) {
            Ok(entries) if entries == expected => break,
            Ok(entries) => last_seen = entries,
            Err(ClientError::Connect(_) | ClientError::ConnectionLost(_)) => {
                client = client_of(&dev);
            }
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "the index did not converge within {CONVERGENCE_DEADLINE:?}:\n expected {expected:?}\n last seen {last_seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // DescribeTable counts the index's entries from its partitions.
    let described = http_call(dev.port, "DescribeTable", &json!({"TableName": TABLE}));
    let index = &described["Table"]["GlobalSecondaryIndexes"][0];
    assert_eq!(index["IndexName"], INDEX);
    assert_eq!(index["ItemCount"], json!(expected.len()));
}
