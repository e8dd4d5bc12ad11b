//! DynamoDB Streams with real processes and real faults (issue 18): `shoal dev` with three
//! nodes; a table with a NEW_AND_OLD_IMAGES stream takes a write load (puts that give items a
//! new version, and deletes) while each node in turn is SIGKILLed and restarted by `shoal dev`,
//! so every partition leader dies at some point, and a consumer reads the stream through the
//! Streams API all along. Every write is retried until it has a definite answer; a retried put
//! writes the same item again, which changes nothing and so adds no record (DynamoDB writes
//! none for a write that leaves the item as it was). The consumer must then see, per item,
//! exactly the acknowledged changes, each once, in order, with exact old and new images.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::dev::{Dev, ONE_CLUSTER_AT_A_TIME, client_of, http_call, write_definitely};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};

const WATCHDOG: Duration = Duration::from_secs(420);
const TABLE: &str = "streamed";
/// Distinct items the load writes.
const ITEMS: u64 = 30;
/// Writes of the load, spread over the node kills.
const WRITES: u64 = 450;
/// How long the consumer may take to read every record after the load: generous, since the
/// test shares two cores with builds; this asserts completeness, not speed.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(120);
const POLL_PAUSE: Duration = Duration::from_millis(100);

fn streams_call(port: u16, operation: &str, body: &Json) -> Result<Json, String> {
    http_call(port, &format!("DynamoDBStreams_20120810.{operation}"), body)
}

/// What write `number` does: a put of item `number % ITEMS` carrying the write's number as its
/// version, or every seventh a delete.
fn write_of(number: u64) -> (String, Option<Json>) {
    let pk = format!("item{}", number % ITEMS);
    if number % 7 == 6 {
        return (pk, None);
    }
    let item = json!({
        "pk": {"S": pk},
        "version": {"N": number.to_string()},
        "payload": {"S": "y".repeat(48)},
    });
    (pk, Some(item))
}

/// One change as the consumer saw it: event, old version, new version (`None`: no image).
type Change = (String, Option<u64>, Option<u64>);

fn version_of(image: &Json) -> Option<u64> {
    image.get("version")?["N"].as_str()?.parse().ok()
}

/// Reads every shard of the stream from its start, following NextShardIterator, until `stop`
/// is set and a full round found nothing new; every error (a node down, a leader moving) is
/// retried with the same iterator. Returns each item's changes in the order read, and the
/// event ids and sequence numbers seen (to check none repeats).
fn consume(
    port: u16,
    arn: String,
    stop: Arc<AtomicBool>,
) -> (BTreeMap<String, Vec<Change>>, Vec<String>) {
    let mut changes: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    let mut sequence_numbers = Vec::new();
    // Shard id -> next iterator (None: a closed shard read to its end).
    let mut iterators: BTreeMap<String, Option<String>> = BTreeMap::new();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut read_any = false;
        if let Ok(described) = streams_call(port, "DescribeStream", &json!({"StreamArn": arn})) {
            for shard in described["StreamDescription"]["Shards"].as_array().unwrap() {
                let id = shard["ShardId"].as_str().unwrap().to_string();
                if iterators.contains_key(&id) {
                    continue;
                }
                let request =
                    json!({"StreamArn": arn, "ShardId": id, "ShardIteratorType": "TRIM_HORIZON"});
                if let Ok(answer) = streams_call(port, "GetShardIterator", &request) {
                    iterators.insert(
                        id,
                        Some(answer["ShardIterator"].as_str().unwrap().to_string()),
                    );
                }
            }
        }
        for iterator in iterators.values_mut() {
            let Some(current) = iterator.clone() else {
                continue;
            };
            let Ok(page) = streams_call(port, "GetRecords", &json!({"ShardIterator": current}))
            else {
                continue;
            };
            for record in page["Records"].as_array().unwrap() {
                read_any = true;
                let dynamodb = &record["dynamodb"];
                let pk = dynamodb["Keys"]["pk"]["S"].as_str().unwrap().to_string();
                // Sequence numbers are unique within a shard; event ids in the stream.
                sequence_numbers.push(format!(
                    "{} {}",
                    record["eventID"].as_str().unwrap(),
                    dynamodb["SequenceNumber"].as_str().unwrap()
                ));
                changes.entry(pk).or_default().push((
                    record["eventName"].as_str().unwrap().to_string(),
                    dynamodb.get("OldImage").and_then(version_of),
                    dynamodb.get("NewImage").and_then(version_of),
                ));
            }
            *iterator = page
                .get("NextShardIterator")
                .and_then(Json::as_str)
                .map(str::to_string);
        }
        if stopping && !read_any {
            return (changes, sequence_numbers);
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

#[test]
fn a_consumer_sees_every_acknowledged_change_once_while_nodes_are_killed() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dev = Dev::start(&[], WATCHDOG);
    let created = http_call(
        dev.port,
        "DynamoDB_20120810.CreateTable",
        &json!({
            "TableName": TABLE,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "StreamSpecification": {"StreamEnabled": true, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        }),
    )
    .unwrap();
    let arn = created["TableDescription"]["LatestStreamArn"]
        .as_str()
        .unwrap()
        .to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (port, arn, stop) = (dev.port, arn.clone(), stop.clone());
        std::thread::spawn(move || consume(port, arn, stop))
    };
    let mut client = client_of(&dev);
    // Each item's expected changes, from the acknowledged writes in order.
    let mut expected: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    let mut current: BTreeMap<String, u64> = BTreeMap::new();
    let kill_every = WRITES / (u64::from(common::dev::NODES) + 1);
    for number in 0..WRITES {
        if number > 0
            && number % kill_every == 0
            && number / kill_every <= u64::from(common::dev::NODES)
        {
            let node = number / kill_every;
            let name = format!("node {node}");
            let pid = dev
                .pid_of(&name)
                .unwrap_or_else(|| panic!("no pid of {name} in:\n{}", dev.output()));
            kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
            dev.eventually(&format!("{name} restarted"), || {
                dev.pid_of(&name).filter(|restarted| *restarted != pid)
            });
        }
        let (pk, item) = write_of(number);
        write_definitely(&dev, &mut client, TABLE, &pk, item.as_ref());
        let before = current.get(&pk).copied();
        let change = match (&item, before) {
            (Some(_), None) => Some(("INSERT".to_string(), None, Some(number))),
            (Some(_), Some(old)) => Some(("MODIFY".to_string(), Some(old), Some(number))),
            (None, Some(old)) => Some(("REMOVE".to_string(), Some(old), None)),
            // Deleting a missing item changes nothing: no record.
            (None, None) => None,
        };
        match item {
            Some(_) => current.insert(pk.clone(), number),
            None => current.remove(&pk),
        };
        if let Some(change) = change {
            expected.entry(pk).or_default().push(change);
        }
    }
    // The consumer stops once it has caught up: a round that reads nothing after the load.
    let deadline = Instant::now() + CATCH_UP_DEADLINE;
    let total: usize = expected.values().map(Vec::len).sum();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let (seen, sequence_numbers) = consumer.join().unwrap();
    assert!(Instant::now() < deadline + CATCH_UP_DEADLINE);
    let mut unique = sequence_numbers.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        sequence_numbers.len(),
        "a record was read twice"
    );
    assert_eq!(sequence_numbers.len(), total, "every change once, no other");
    for (pk, changes) in &expected {
        assert_eq!(seen.get(pk), Some(changes), "the changes of {pk}");
    }
    assert_eq!(seen.len(), expected.len());
}
