//! The native protocol end to end: `shoal dev` (three nodes and a router) on free ports in a
//! temporary directory, then shoal-client's blocking client (table lifecycle, CRUD, a failed
//! condition, pipelined requests on one connection matched by request id), the glommio
//! client, the router's handling of bad frames and unknown operations, and the admin CLI
//! (`shoal table create`, `shoal item put/get`, `shoal scan`, exit codes).
//! One cluster for the whole file, under a watchdog that stops it and fails loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};
use shoal_client::{
    AsyncClient, Client, ClientConfig, ClientError, Credentials, Operation, RetryPolicy,
};
use shoal_protocol::generated::shoal::client::v_2 as wire;
use shoal_protocol::generated_v1::shoal::client as wire_v1;
use shoal_protocol::handshake::{Challenge, encode_hello};
use shoal_protocol::{decode_response, encode_frame, encode_request, read_frame};

const WATCHDOG: Duration = Duration::from_secs(120);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(45);
const PIPELINED: usize = 48;
/// Ports `shoal dev --port P` uses with three nodes of one shard: P, P + 1 and, per node i,
/// P + 100 i and P + 100 i + 99.
const DEV_PORT_OFFSETS: [u16; 8] = [0, 1, 100, 199, 200, 299, 300, 399];

/// A base port whose dev layout is free now.
fn free_dev_port() -> u16 {
    common::free_port_layouts(1, &DEV_PORT_OFFSETS)[0]
}

struct DevCluster {
    _directory: tempfile::TempDir,
    child: Arc<Mutex<Child>>,
    native: SocketAddr,
    done: Arc<AtomicBool>,
}

fn stop(child: &Mutex<Child>) {
    let mut child = child
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // SIGTERM: `shoal dev` stops its nodes and router, then exits.
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
        let port = free_dev_port();
        let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("dev")
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
            common::watchdog(WATCHDOG, "native client test", move || stop(&child))
        };
        let native = SocketAddr::from(([127, 0, 0, 1], port + 1));
        // The router listens on the native port once it has bootstrapped the metadata.
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(client) = Client::connect(config(native, 1))
                && client.list_tables(&json!({})).is_ok()
            {
                break;
            }
            assert!(Instant::now() < deadline, "shoal dev did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        DevCluster {
            _directory: directory,
            child,
            native,
            done,
        }
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

fn config(endpoint: SocketAddr, connections: usize) -> ClientConfig {
    let mut config = ClientConfig::new(endpoint);
    config.connections = connections;
    config.seed = 7;
    config.request_timeout = Duration::from_secs(10);
    config
}

fn service_error(result: Result<Json, ClientError>, type_name: &str) -> ClientError {
    let error = result.expect_err("expected an error");
    assert_eq!(error.exception_name(), Some(type_name), "{error}");
    error
}

fn movie(year: u32, title: &str) -> Json {
    json!({"year": {"N": year.to_string()}, "title": {"S": title}})
}

fn blocking_client_lifecycle_crud_conditions_pipelining(cluster: &DevCluster) {
    let client = Client::connect(config(cluster.native, 2)).unwrap();
    let created = client
        .create_table(&json!({
            "TableName": "movies",
            "AttributeDefinitions": [
                {"AttributeName": "year", "AttributeType": "N"},
                {"AttributeName": "title", "AttributeType": "S"}
            ],
            "KeySchema": [
                {"AttributeName": "year", "KeyType": "HASH"},
                {"AttributeName": "title", "KeyType": "RANGE"}
            ],
            "BillingMode": "PAY_PER_REQUEST",
        }))
        .unwrap();
    assert_eq!(created["TableDescription"]["TableStatus"], "ACTIVE");
    service_error(
        client.create_table(&json!({
            "TableName": "movies",
            "AttributeDefinitions": [{"AttributeName": "year", "AttributeType": "N"}],
            "KeySchema": [{"AttributeName": "year", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        })),
        "ResourceInUseException",
    );
    let described = client
        .describe_table(&json!({"TableName": "movies"}))
        .unwrap();
    assert_eq!(described["Table"]["TableName"], "movies");
    let listed = client.list_tables(&json!({})).unwrap();
    assert!(
        listed["TableNames"]
            .as_array()
            .unwrap()
            .contains(&json!("movies"))
    );

    // CRUD.
    let mut item = movie(2001, "A Space Odyssey");
    item["rating"] = json!({"N": "8"});
    client
        .put_item(&json!({"TableName": "movies", "Item": item}))
        .unwrap();
    let key = movie(2001, "A Space Odyssey");
    let got = client
        .get_item(&json!({"TableName": "movies", "Key": key, "ConsistentRead": true}))
        .unwrap();
    assert_eq!(got["Item"], item);
    let updated = client
        .update_item(&json!({
            "TableName": "movies",
            "Key": key,
            "UpdateExpression": "ADD rating :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
            "ReturnValues": "UPDATED_NEW",
        }))
        .unwrap();
    assert_eq!(updated["Attributes"]["rating"]["N"], "9");

    // A failed condition comes back as DynamoDB's exception, with the old item when asked.
    let failed = service_error(
        client.put_item(&json!({
            "TableName": "movies",
            "Item": key,
            "ConditionExpression": "attribute_not_exists(#y)",
            "ExpressionAttributeNames": {"#y": "year"},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        })),
        "ConditionalCheckFailedException",
    );
    let ClientError::Service { message, item, .. } = failed else {
        unreachable!()
    };
    assert_eq!(message, "The conditional request failed");
    assert_eq!(item.unwrap()["rating"]["N"], "9");
    // A validation error keeps DynamoDB's wording.
    service_error(
        client.get_item(&json!({"TableName": "movies", "Key": {"year": {"N": "2001"}}})),
        "ValidationException",
    );
    // Bad input is refused before it is sent, naming the member the protocol cannot carry.
    assert!(matches!(
        client.put_item(&json!(["not", "an", "object"])),
        Err(ClientError::InvalidRequest(_))
    ));
    let refused = client.put_item(&json!({"TableName": "movies", "Item": 5}));
    let Err(ClientError::InvalidRequest(reason)) = refused else {
        panic!("expected InvalidRequest, got {refused:?}");
    };
    assert_eq!(reason, "member Item must be an object");
    // What the protocol can carry reaches the router, which answers DynamoDB's error.
    service_error(
        client.put_item(&json!({"TableName": "movies", "Item": {"year": {"N": "x"}}})),
        "ValidationException",
    );

    client
        .delete_item(&json!({"TableName": "movies", "Key": key}))
        .unwrap();
    let gone = client
        .get_item(&json!({"TableName": "movies", "Key": key, "ConsistentRead": true}))
        .unwrap();
    assert!(gone.get("Item").is_none(), "{gone}");

    // Pipelining: many requests on one connection before any response is read; each response
    // is matched to its request by id (the gets return their own item).
    let puts: Vec<_> = (0..PIPELINED)
        .map(|index| {
            let mut item = movie(1990 + (index % 3) as u32, &format!("title-{index:03}"));
            item["index"] = json!({"N": index.to_string()});
            client
                .submit_on(
                    0,
                    Operation::PutItem,
                    &json!({"TableName": "movies", "Item": item}),
                )
                .unwrap()
        })
        .collect();
    let mut ids: Vec<u64> = puts.iter().map(|pending| pending.request_id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        PIPELINED,
        "request ids are unique on a connection"
    );
    for pending in puts {
        pending.wait().unwrap();
    }
    let gets: Vec<_> = (0..PIPELINED)
        .map(|index| {
            let key = movie(1990 + (index % 3) as u32, &format!("title-{index:03}"));
            client
                .submit_on(
                    0,
                    Operation::GetItem,
                    &json!({"TableName": "movies", "Key": key, "ConsistentRead": true}),
                )
                .unwrap()
        })
        .collect();
    for (index, pending) in gets.into_iter().enumerate() {
        let got = pending.wait().unwrap();
        assert_eq!(
            got["Item"]["index"]["N"],
            index.to_string(),
            "response {index}"
        );
    }
    // Query: one partition key, in sort-key order.
    let queried = client
        .query(&json!({
            "TableName": "movies",
            "KeyConditionExpression": "#y = :y",
            "ExpressionAttributeNames": {"#y": "year"},
            "ExpressionAttributeValues": {":y": {"N": "1991"}},
            "ConsistentRead": true,
        }))
        .unwrap();
    let titles: Vec<&str> = queried["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["title"]["S"].as_str().unwrap())
        .collect();
    assert_eq!(titles.len(), PIPELINED / 3);
    assert!(
        titles.windows(2).all(|pair| pair[0] < pair[1]),
        "{titles:?}"
    );
}

fn bad_frames_close_the_connection_and_unknown_operations_are_answered(cluster: &DevCluster) {
    let read_timeout = Some(Duration::from_secs(10));
    // A frame whose checksum does not match its body: the router closes without answering.
    let mut frame = encode_request(1, Operation::ListTables, &json!({})).unwrap();
    let last = frame.len() - 1;
    frame[last] ^= 0x01;
    let mut stream = TcpStream::connect(cluster.native).unwrap();
    stream.set_read_timeout(read_timeout).unwrap();
    stream.write_all(&frame).unwrap();
    let mut buffer = [0u8; 64];
    assert_eq!(stream.read(&mut buffer).unwrap(), 0, "connection closed");

    // A length over the limit closes the connection before any body is sent.
    let mut stream = TcpStream::connect(cluster.native).unwrap();
    stream.set_read_timeout(read_timeout).unwrap();
    stream.write_all(&u32::MAX.to_le_bytes()).unwrap();
    stream.write_all(&0u32.to_le_bytes()).unwrap();
    assert_eq!(stream.read(&mut buffer).unwrap(), 0, "connection closed");

    // A sound frame with an operation this server does not know is answered, and the
    // connection stays usable.
    let mut builder = flatbuffers::FlatBufferBuilder::new();
    let request = wire::Request::create(
        &mut builder,
        &wire::RequestArgs {
            request_id: 41,
            operation: wire::Operation(200),
            ..Default::default()
        },
    );
    wire::finish_request_buffer(&mut builder, request);
    let unknown_operation = encode_frame(builder.finished_data());
    // A version 1 request (DynamoDB JSON text inside) is answered with the version error, in
    // version 1's response format, so a version 1 client shows it.
    let mut builder = flatbuffers::FlatBufferBuilder::new();
    let body = builder.create_string("{}");
    let request = wire_v1::Request::create(
        &mut builder,
        &wire_v1::RequestArgs {
            request_id: 42,
            operation: wire_v1::Operation::ListTables,
            body: Some(body),
        },
    );
    wire_v1::finish_request_buffer(&mut builder, request);
    let version_1 = encode_frame(builder.finished_data());
    // A sound buffer whose members do not convert (an attribute type this version does not
    // know) is answered with SerializationException.
    let mut builder = flatbuffers::FlatBufferBuilder::new();
    let table_name = builder.create_string("movies");
    let name = builder.create_string("year");
    let value = wire::AttributeValue::create(
        &mut builder,
        &wire::AttributeValueArgs {
            type_: wire::AttributeType(99),
            ..Default::default()
        },
    );
    let attribute = wire::Attribute::create(
        &mut builder,
        &wire::AttributeArgs {
            name: Some(name),
            value: Some(value),
        },
    );
    let key = builder.create_vector(&[attribute]);
    let request = wire::Request::create(
        &mut builder,
        &wire::RequestArgs {
            request_id: 43,
            operation: wire::Operation::GetItem,
            table_name: Some(table_name),
            key: Some(key),
            ..Default::default()
        },
    );
    wire::finish_request_buffer(&mut builder, request);
    let unknown_type = encode_frame(builder.finished_data());

    let mut stream = TcpStream::connect(cluster.native).unwrap();
    stream.set_read_timeout(read_timeout).unwrap();
    for frame in [&unknown_operation, &version_1, &unknown_type] {
        stream.write_all(frame).unwrap();
    }
    let mut answers = Vec::new();
    let mut version_1_answer = None;
    for _ in 0..3 {
        let body = read_frame(&mut stream).unwrap();
        if &body[4..8] == b"SHS1" {
            version_1_answer = Some(body);
        } else {
            answers.push(decode_response(&body).unwrap());
        }
    }
    answers.sort_by_key(|response| response.request_id);
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].request_id, 41);
    let error = answers[0].outcome.clone().unwrap().unwrap_err();
    assert_eq!(error.type_name, "UnknownOperationException");
    assert_eq!(answers[1].request_id, 43);
    let error = answers[1].outcome.clone().unwrap().unwrap_err();
    assert_eq!(error.type_name, "SerializationException");
    assert!(
        error.message.contains("unknown AttributeValue type 99"),
        "{error}"
    );
    let version_1_answer = version_1_answer.expect("the version 1 request is answered");
    let response = flatbuffers::root::<wire_v1::Response>(&version_1_answer).unwrap();
    assert_eq!(response.request_id(), 42);
    let error = response.error().unwrap();
    assert_eq!(
        error.type_name(),
        Some(shoal_protocol::UNSUPPORTED_VERSION_EXCEPTION)
    );
    assert_eq!(
        error.message(),
        Some("unsupported protocol version 1; this router speaks version 2")
    );
    // The connection is still open and speaks version 2.
    stream
        .write_all(&encode_request(44, Operation::ListTables, &json!({})).unwrap())
        .unwrap();
    let listed = decode_response(&read_frame(&mut stream).unwrap()).unwrap();
    assert_eq!(listed.request_id, 44);
    assert!(listed.outcome.unwrap().unwrap()["TableNames"].is_array());
}

fn glommio_client_round_trips(cluster: &DevCluster) {
    let native = cluster.native;
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("native-client-test")
        .io_memory(1 << 20)
        .make()
        .unwrap()
        .run(async move {
            // kernel-notes/glommio-runtime.md: the first timer sleep can be slow; take it before any timeout runs.
            glommio::timer::sleep(Duration::from_millis(20)).await;
            let client = AsyncClient::connect(config(native, 1)).await.unwrap();
            let item = movie(1968, "async");
            client
                .put_item(&json!({"TableName": "movies", "Item": item}))
                .await
                .unwrap();
            // Concurrent calls share the one connection.
            let (first, second) = futures_lite::future::zip(
                client
                    .get_item(&json!({"TableName": "movies", "Key": item, "ConsistentRead": true})),
                client.describe_table(&json!({"TableName": "movies"})),
            )
            .await;
            assert_eq!(first.unwrap()["Item"], item);
            assert_eq!(second.unwrap()["Table"]["TableName"], "movies");
            let missing = client
                .get_item(&json!({"TableName": "nope", "Key": item}))
                .await;
            assert_eq!(
                missing.unwrap_err().exception_name(),
                Some("ResourceNotFoundException")
            );
        });
}

fn cli_creates_puts_gets_scans_and_fails_clearly(cluster: &DevCluster) {
    let created = cluster.shoal(&[
        "table",
        "create",
        "--name",
        "films",
        "--partition-key",
        "year:N",
        "--sort-key",
        "title:S",
    ]);
    assert!(created.status.success(), "{created:?}");
    let description: Json = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(description["TableStatus"], "ACTIVE");
    for (year, title) in [(2001, "x"), (2002, "y"), (2003, "z")] {
        let item = movie(year, title).to_string();
        let put = cluster.shoal(&["item", "put", "--table", "films", "--item", &item]);
        assert!(put.status.success(), "{put:?}");
    }
    let key = movie(2001, "x").to_string();
    let got = cluster.shoal(&[
        "item",
        "get",
        "--table",
        "films",
        "--key",
        &key,
        "--consistent",
    ]);
    assert!(got.status.success(), "{got:?}");
    let item: Json = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(item, movie(2001, "x"));
    let scanned = cluster.shoal(&["scan", "--table", "films", "--consistent"]);
    assert!(scanned.status.success(), "{scanned:?}");
    let mut titles: Vec<String> = String::from_utf8(scanned.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let item: Json = serde_json::from_str(line).unwrap();
            item["title"]["S"].as_str().unwrap().to_string()
        })
        .collect();
    titles.sort();
    assert_eq!(titles, ["x", "y", "z"]);
    let listed = cluster.shoal(&["table", "list"]);
    assert!(
        String::from_utf8(listed.stdout)
            .unwrap()
            .lines()
            .any(|line| line == "films")
    );

    // Bad input: exit status 2 and a message naming the flag.
    let bad = cluster.shoal(&["item", "put", "--table", "films", "--item", "{not json"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(
        String::from_utf8(bad.stderr)
            .unwrap()
            .contains("--item is not valid JSON")
    );
    let bad_key = cluster.shoal(&["table", "create", "--name", "t", "--partition-key", "id:Q"]);
    assert_eq!(bad_key.status.code(), Some(2), "{bad_key:?}");
    let missing = cluster.shoal(&["item", "get", "--table", "films"]);
    assert_eq!(
        missing.status.code(),
        Some(2),
        "a missing --key is a usage error"
    );
    // A server error: exit status 1, `ExceptionName: message`.
    let absent = cluster.shoal(&["item", "get", "--table", "absent", "--key", &key]);
    assert_eq!(absent.status.code(), Some(1), "{absent:?}");
    assert!(
        String::from_utf8(absent.stderr)
            .unwrap()
            .starts_with("ResourceNotFoundException: "),
    );
    let deleted = cluster.shoal(&["table", "delete", "--name", "films"]);
    assert!(deleted.status.success(), "{deleted:?}");
}

fn tables_are_deleted(cluster: &DevCluster) {
    let mut config = config(cluster.native, 1);
    config.retry = RetryPolicy::none();
    let client = Client::connect(config).unwrap();
    client
        .delete_table(&json!({"TableName": "movies"}))
        .unwrap();
    service_error(
        client.describe_table(&json!({"TableName": "movies"})),
        "ResourceNotFoundException",
    );
}

/// `shoal dev` runs its router with `--auth none`: requests need no handshake (every test
/// above), and a client that authenticates anyway is accepted whatever its key, as DynamoDB
/// Local accepts any credentials; the challenge says that nothing is verified.
fn any_credentials_are_accepted_under_auth_none(cluster: &DevCluster) {
    let mut config = config(cluster.native, 1);
    config.credentials = Some(Credentials::new("anyone", "anything"));
    let client = Client::connect(config).unwrap();
    client.list_tables(&json!({})).unwrap();
    let mut stream = TcpStream::connect(cluster.native).unwrap();
    stream.write_all(&encode_hello()).unwrap();
    let challenge = Challenge::decode(&read_frame(&mut stream).unwrap()).unwrap();
    assert!(!challenge.verifies);
}

#[test]
fn native_protocol_through_shoal_dev() {
    let cluster = DevCluster::start();
    blocking_client_lifecycle_crud_conditions_pipelining(&cluster);
    bad_frames_close_the_connection_and_unknown_operations_are_answered(&cluster);
    glommio_client_round_trips(&cluster);
    cli_creates_puts_gets_scans_and_fails_clearly(&cluster);
    any_credentials_are_accepted_under_auth_none(&cluster);
    tables_are_deleted(&cluster);
    drop(cluster);
}
