//! `shoal node --config` and `shoal router --config`: a valid file starts a node; unknown keys,
//! missing required keys and flags mixed with a file are refused at start with a clear message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shoal_bus::BlockingClient;
use shoal_wire::messages::{NodeRequest, NodeResponse};

fn shoal(arguments: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(arguments)
        .env("SHOAL_LOG", "warn")
        .output()
        .unwrap()
}

use common::free_port;

#[test]
fn a_node_starts_from_a_config_file() {
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = directory.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 1\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nshards = 1\ncache_mib = 4\nwal_segment_mib = 16\nwal_segments = 2\n",
            directory.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["node", "--config", config.to_str().unwrap()])
        .env("SHOAL_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(mut client) = BlockingClient::connect(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(2),
        ) && let Ok(status) = client.call(NodeRequest::Status)
        {
            break status;
        }
        assert!(Instant::now() < deadline, "the node did not come up");
        assert!(child.try_wait().unwrap().is_none(), "the node exited");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        matches!(
            status,
            NodeResponse::Status {
                node: 1,
                shard: 0,
                ..
            }
        ),
        "{status:?}"
    );
    assert!(directory.path().join("data").join("shard-0").is_dir());
}

#[test]
fn bad_config_files_are_refused_at_start() {
    let directory = tempfile::tempdir().unwrap();
    let typo = directory.path().join("typo.toml");
    std::fs::write(
        &typo,
        "node_id = 1\ndata_dir = \"/tmp/x\"\nlisten = \"127.0.0.1:1\"\nshard = 4\n",
    )
    .unwrap();
    let output = shoal(&["node", "--config", typo.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("unknown field `shard`"), "{message}");

    let missing = directory.path().join("missing.toml");
    std::fs::write(&missing, "node_id = 1\n").unwrap();
    let output = shoal(&["node", "--config", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing field `data_dir`"));

    // The TTL sweep period is bounded: a second to a day.
    for period in ["0", "86401"] {
        let out_of_range = directory.path().join("ttl.toml");
        std::fs::write(
            &out_of_range,
            format!(
                "node_id = 1\ndata_dir = \"/tmp/x\"\nlisten = \"127.0.0.1:1\"\nttl_sweep_period_seconds = {period}\n"
            ),
        )
        .unwrap();
        let output = shoal(&["node", "--config", out_of_range.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2));
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(
            message.contains("--ttl-sweep-period-seconds must be 1 to 86400"),
            "{message}"
        );
    }

    // A file and flags together.
    let output = shoal(&[
        "node",
        "--config",
        missing.to_str().unwrap(),
        "--node-id",
        "2",
    ]);
    assert_eq!(output.status.code(), Some(2));

    // A router file without nodes, and one with a bad address.
    let router = directory.path().join("router.toml");
    std::fs::write(&router, "http = \"127.0.0.1:8000\"\n").unwrap();
    let output = shoal(&["router", "--config", router.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing field `node`"));
    std::fs::write(&router, "[[node]]\nid = 1\naddress = \"nowhere\"\n").unwrap();
    let output = shoal(&["router", "--config", router.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("address"));

    // TLS files that cannot serve stop the router at start, before it looks for the nodes,
    // naming the file and the fault: from flags and from the file alike.
    let certificate = directory.path().join("router.crt");
    let key = directory.path().join("router.key");
    let other_key = directory.path().join("other.key");
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(&certificate, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(&other_key, other.signing_key.serialize_pem()).unwrap();
    let absent = directory.path().join("absent.crt");
    let cases = [
        (&absent, &key, "cannot read the TLS certificate"),
        (
            &certificate,
            &other_key,
            "does not belong to the certificate",
        ),
        (&certificate, &certificate, "holds no PEM private key"),
    ];
    for (certificate_path, key_path, expected) in cases {
        let output = shoal(&[
            "router",
            "--node",
            "1=127.0.0.1:1",
            "--tls-cert",
            certificate_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(2));
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains(expected), "{message}");
    }
    std::fs::write(
        &router,
        format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n[[node]]\nid = 1\naddress = \"127.0.0.1:1\"\n",
            certificate.display(),
            other_key.display()
        ),
    )
    .unwrap();
    let output = shoal(&["router", "--config", router.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("other.key does not belong"), "{message}");
    // Only one of the pair: clap refuses it.
    let output = shoal(&[
        "router",
        "--node",
        "1=127.0.0.1:1",
        "--tls-cert",
        certificate.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
}

/// Bus TLS files that cannot serve stop a node and a router at start (exit 2), naming the
/// file and the fault, from flags and from config files; a partial set is refused too.
#[test]
fn bad_bus_tls_files_are_refused_at_start() {
    let directory = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let certificate = directory.path().join("node.pem");
    let key = directory.path().join("node.key");
    std::fs::write(&certificate, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    let absent = directory.path().join("absent-ca.pem");
    let node_config = directory.path().join("node.toml");
    std::fs::write(
        &node_config,
        format!(
            "node_id = 1\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:1\"\nbus_tls_cert = \"{}\"\nbus_tls_key = \"{}\"\nbus_tls_ca = \"{}\"\n",
            directory.path().join("data").display(),
            certificate.display(),
            key.display(),
            absent.display()
        ),
    )
    .unwrap();
    let output = shoal(&["node", "--config", node_config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains(&format!(
            "cannot read the bus TLS CA bundle {}",
            absent.display()
        )),
        "{message}"
    );
    // The key where the CA should be: no certificate in it.
    let output = shoal(&[
        "router",
        "--node",
        "1=127.0.0.1:1",
        "--bus-tls-cert",
        certificate.to_str().unwrap(),
        "--bus-tls-key",
        key.to_str().unwrap(),
        "--bus-tls-ca",
        key.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("holds no PEM certificate"), "{message}");
    // Two of the three: clap refuses the flags; a config file says which go together.
    let output = shoal(&[
        "node",
        "--node-id=1",
        "--data-dir=/tmp/unused",
        "--listen=127.0.0.1:1",
        "--bus-tls-cert",
        certificate.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let router_config = directory.path().join("router.toml");
    std::fs::write(
        &router_config,
        format!(
            "bus_tls_cert = \"{}\"\n[[node]]\nid = 1\naddress = \"127.0.0.1:1\"\n",
            certificate.display()
        ),
    )
    .unwrap();
    let output = shoal(&["router", "--config", router_config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("go together"), "{message}");
}
