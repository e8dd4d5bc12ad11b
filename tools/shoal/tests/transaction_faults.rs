//! Transactions with real processes and real faults (issue 17): `shoal dev` with three nodes;
//! clients run transfer transactions between accounts (TransactWriteItems over HTTP, as an
//! SDK sends them, each with its own ClientRequestToken) while the router is SIGKILLed twice
//! and a node once, and `shoal dev` restarts them. Each transfer is retried with its token
//! until it has a definite answer, as SDKs retry: COMMITTED (success) or cancelled
//! (TransactionCanceledException). A reader checks, all along, that every TransactGetItems of
//! all accounts sees the invariant total. At the end: every account's balance is the initial
//! one plus exactly the committed transfers (each applied once, none half), and no item stays
//! locked (the repair pass of the restarted router recovered what the killed one left).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::dev::{Dev, ONE_CLUSTER_AT_A_TIME, http_call};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};

const WATCHDOG: Duration = Duration::from_secs(420);
const TABLE: &str = "accounts";
const ACCOUNTS: u64 = 8;
const INITIAL_BALANCE: i64 = 1_000;
/// Transfers per client; clients run concurrently.
const TRANSFERS: u64 = 60;
const CLIENTS: u64 = 3;
/// A transfer is retried with its token for this long at most: the killed router's abandoned
/// attempts wait for their locks to become stale (10 s) and the repair pass (every 10 s).
const DEFINITE_WITHIN: Duration = Duration::from_secs(120);
const RETRY_PAUSE: Duration = Duration::from_millis(200);

fn dynamodb(port: u16, operation: &str, body: &Json) -> Result<Json, String> {
    http_call(port, &format!("DynamoDB_20120810.{operation}"), body)
}

/// The exception name in an error answer (`"__type": "...#Name"`), if there is one.
fn exception(error: &str) -> Option<&str> {
    let start = error.find("\"__type\"")?;
    let rest = &error[start..];
    let name_start = rest.find('#')? + 1;
    let name_end = rest[name_start..].find('"')? + name_start;
    Some(&rest[name_start..name_end])
}

fn account(index: u64) -> String {
    format!("account-{index}")
}

/// Transfer `number` of client `client`: its accounts and amount, fixed by its numbers so
/// that the expected balances follow from which transfers committed.
fn transfer_of(client: u64, number: u64) -> (u64, u64, i64) {
    let from = (client * 7 + number * 3) % ACCOUNTS;
    let to = (from + 1 + (number % (ACCOUNTS - 1))) % ACCOUNTS;
    let amount = 1 + ((client * 13 + number * 5) % 50) as i64;
    (from, to, amount)
}

fn transfer_request(token: &str, (from, to, amount): (u64, u64, i64)) -> Json {
    json!({
        "ClientRequestToken": token,
        "TransactItems": [
            {"Update": {
                "TableName": TABLE,
                "Key": {"pk": {"S": account(from)}},
                "UpdateExpression": "SET balance = balance - :amount",
                "ConditionExpression": "balance >= :amount",
                "ExpressionAttributeValues": {":amount": {"N": amount.to_string()}},
            }},
            {"Update": {
                "TableName": TABLE,
                "Key": {"pk": {"S": account(to)}},
                "UpdateExpression": "SET balance = balance + :amount",
                "ExpressionAttributeValues": {":amount": {"N": amount.to_string()}},
            }},
        ],
    })
}

/// Runs a transfer until it has a definite answer: `true` committed, `false` cancelled.
fn transfer_definitely(port: u16, token: &str, transfer: (u64, u64, i64)) -> bool {
    let started = Instant::now();
    loop {
        match dynamodb(
            port,
            "TransactWriteItems",
            &transfer_request(token, transfer),
        ) {
            Ok(_) => return true,
            Err(error) => match exception(&error) {
                Some("TransactionCanceledException") => return false,
                // In progress (an attempt of a killed router, until recovered), a node or the
                // router down, an unknown outcome: the same token again.
                _ => {
                    assert!(
                        started.elapsed() < DEFINITE_WITHIN,
                        "transfer {token} had no definite answer: {error}"
                    );
                    std::thread::sleep(RETRY_PAUSE);
                }
            },
        }
    }
}

fn balances_of(response: &Json) -> Vec<i64> {
    response["Responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|response| {
            response["Item"]["balance"]["N"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

fn read_all_request() -> Json {
    json!({"TransactItems": (0..ACCOUNTS)
        .map(|index| json!({"Get": {"TableName": TABLE, "Key": {"pk": {"S": account(index)}}}}))
        .collect::<Vec<_>>()})
}

#[test]
fn transfers_stay_whole_while_the_coordinating_router_and_a_node_are_killed() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dev = Dev::start(&[], WATCHDOG);
    let port = dev.port;
    dynamodb(
        port,
        "CreateTable",
        &json!({
            "TableName": TABLE,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        }),
    )
    .unwrap();
    for index in 0..ACCOUNTS {
        dev.eventually("an account is created", || {
            dynamodb(
                port,
                "PutItem",
                &json!({"TableName": TABLE, "Item": {
                    "pk": {"S": account(index)}, "balance": {"N": INITIAL_BALANCE.to_string()}}}),
            )
            .ok()
        });
    }
    let total = INITIAL_BALANCE * ACCOUNTS as i64;
    let stop = Arc::new(AtomicBool::new(false));
    let consistent_reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, consistent_reads) = (stop.clone(), consistent_reads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                // Conflicts, a router or node down: a read that is not answered proves nothing.
                if let Ok(response) = dynamodb(port, "TransactGetItems", &read_all_request()) {
                    let balances = balances_of(&response);
                    assert_eq!(
                        balances.iter().sum::<i64>(),
                        total,
                        "a TransactGetItems saw part of a transfer: {balances:?}"
                    );
                    consistent_reads.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let done = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut committed = Vec::new();
                for number in 0..TRANSFERS {
                    let token = format!("c{client}-t{number}");
                    let transfer = transfer_of(client, number);
                    if transfer_definitely(port, &token, transfer) {
                        committed.push(transfer);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                committed
            })
        })
        .collect();
    // The faults, spread over the load: the router, a node, the router again.
    let all = CLIENTS * TRANSFERS;
    for (at, name) in [
        (all / 4, "router"),
        (all / 2, "node 2"),
        (3 * all / 4, "router"),
    ] {
        dev.eventually(&format!("{at} transfers done"), || {
            (done.load(Ordering::SeqCst) >= at).then_some(())
        });
        let pid = dev
            .pid_of(name)
            .unwrap_or_else(|| panic!("no pid of {name} in:\n{}", dev.output()));
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        eprintln!("killed {name} (pid {pid}) after {at} transfers");
        dev.eventually(&format!("{name} restarted"), || {
            dev.pid_of(name).filter(|restarted| *restarted != pid)
        });
    }
    let mut expected = vec![INITIAL_BALANCE; ACCOUNTS as usize];
    let mut committed_count = 0;
    for client in clients {
        for (from, to, amount) in client.join().unwrap() {
            expected[from as usize] -= amount;
            expected[to as usize] += amount;
            committed_count += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    assert!(committed_count > 0, "no transfer committed");
    eprintln!(
        "{committed_count} of {all} transfers committed; {} consistent reads of every account",
        consistent_reads.load(Ordering::SeqCst)
    );
    // No item stays locked: each account takes a single-item write once the recovery has
    // finished what the killed router left (TransactionConflictException until then).
    for index in 0..ACCOUNTS {
        dev.eventually("the account is free of locks", || {
            dynamodb(
                port,
                "UpdateItem",
                &json!({"TableName": TABLE, "Key": {"pk": {"S": account(index)}},
                        "UpdateExpression": "SET checked = :yes",
                        "ExpressionAttributeValues": {":yes": {"BOOL": true}}}),
            )
            .ok()
        });
    }
    let response = dev.eventually("a consistent read of every account", || {
        dynamodb(port, "TransactGetItems", &read_all_request()).ok()
    });
    assert_eq!(
        balances_of(&response),
        expected,
        "every committed transfer applied once, no other"
    );
}
