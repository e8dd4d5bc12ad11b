//! `shoal dev` keeps serving when a child dies: three nodes and a router on free loopback
//! ports in a temporary directory; a node is SIGKILLed; `shoal dev` reports it on stderr, the
//! router and the other nodes keep running and serving the table, and the node is started
//! again (a new pid whose admin endpoint answers) on its data. With `--no-restart` the node
//! stays down, the rest keep serving (CreateTable included), and `shoal dev` exits once every
//! child is gone.
//! SIGTERM stops every child, a restarted one included. Each cluster runs under a watchdog that stops it and fails loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::dev::{Dev, ONE_CLUSTER_AT_A_TIME, alive, healthy};

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};
use shoal_client::Client;

const WATCHDOG: Duration = Duration::from_secs(180);

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
    let dev = Dev::start(&[], WATCHDOG);
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
    let status = dev.terminate().expect("shoal dev did not stop on SIGTERM");
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
    let dev = Dev::start(&["--no-restart"], WATCHDOG);
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
    let status = dev.eventually("shoal dev exits on its own", || dev.exited());
    assert!(!status.success(), "{status}");
    assert!(dev.printed("shoal dev: every child has exited; stopping"));
}
