//! `shoal admin status` against `shoal dev`: with every node up it lists the three nodes, the
//! table and its partitions, every partition with all its replicas (exit 0); with one node
//! stopped (SIGSTOP: its process is there, its shards do not answer) it reports that node
//! unreachable and every partition with a replica there as under-replicated, with the leader
//! of each among the others (exit 3); once the node runs again, the report is whole again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::dev::{Dev, NODES, ONE_CLUSTER_AT_A_TIME};

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};

const WATCHDOG: Duration = Duration::from_secs(240);

/// `shoal admin status --json` against the dev cluster: its exit code and report.
fn status(dev: &Dev) -> (i32, Json) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command.args(["admin", "status", "--json"]);
    for node in 1..=NODES {
        command.arg(format!("--node={node}=127.0.0.1:{}", dev.port + 100 * node));
    }
    let output = command.env("SHOAL_LOG", "warn").output().unwrap();
    let code = output.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 3, "{output:?}");
    (code, serde_json::from_slice(&output.stdout).unwrap())
}

fn node(report: &Json, id: u64) -> &Json {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["id"] == id)
        .unwrap()
}

#[test]
fn admin_status_reports_nodes_tables_and_under_replicated_partitions() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dev = Dev::start(&["--shards-per-node=2"], WATCHDOG);
    let client = dev.client().unwrap();
    client
        .create_table(&json!({
            "TableName": "watched",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        }))
        .unwrap();

    let (code, report) = status(&dev);
    assert_eq!(code, 0, "{report}");
    for id in 1..=u64::from(NODES) {
        assert_eq!(node(&report, id)["shards_answered"], 2, "{report}");
    }
    let tables = report["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1, "{report}");
    assert_eq!(tables[0]["name"], "watched");
    assert_eq!(tables[0]["status"], "ACTIVE");
    let partitions = tables[0]["partitions"].as_u64().unwrap();
    assert!(partitions >= 1, "{report}");
    // The metadata group and the table's partitions, each on three nodes, all healthy.
    let listed = report["partitions"].as_array().unwrap();
    assert_eq!(listed.len() as u64, partitions + 1, "{report}");
    for partition in listed {
        assert_eq!(partition["replicas"].as_array().unwrap().len(), 3);
        assert_eq!(partition["healthy"], partition["replicas"], "{report}");
    }
    assert!(report["under_replicated"].as_array().unwrap().is_empty());
    let replicas: u64 = (1..=u64::from(NODES))
        .map(|id| node(&report, id)["replicas"].as_u64().unwrap())
        .sum();
    assert_eq!(replicas, 3 * (partitions + 1), "{report}");

    let stopped = dev.pid_of("node 2").expect("node 2's pid");
    kill(Pid::from_raw(stopped as i32), Signal::SIGSTOP).unwrap();
    // Once node 2 is seen unreachable, and (on a loaded machine a healthy shard may miss the
    // call's timeout too) both others answered.
    let report = dev.eventually("a report with only node 2 unreachable", || {
        let (code, report) = status(&dev);
        let only_node_2 = node(&report, 2)["shards_answered"] == 0
            && node(&report, 1)["shards_answered"] == 2
            && node(&report, 3)["shards_answered"] == 2;
        (code == 3 && only_node_2).then_some(report)
    });
    let under = report["under_replicated"].as_array().unwrap();
    assert_eq!(under.len() as u64, partitions + 1, "{report}");
    for partition in under {
        let healthy = partition["healthy"].as_array().unwrap();
        assert_eq!(healthy.len(), 2, "{report}");
        assert!(!healthy.contains(&json!(2)), "{report}");
        assert_eq!(partition["majority"], true);
    }
    // The partitions elect leaders among the two nodes left (a leader is only ever one of the
    // healthy replicas that reported).
    dev.eventually("a leader for every partition on the nodes left", || {
        let (_, report) = status(&dev);
        report["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|partition| partition["leader"].is_u64())
            .then_some(())
    });

    kill(Pid::from_raw(stopped as i32), Signal::SIGCONT).unwrap();
    dev.eventually("a whole report again", || {
        let (code, report) = status(&dev);
        (code == 0).then_some(report)
    });
}
