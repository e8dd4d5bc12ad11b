//! Mutual TLS on the bus (src/tls.rs): two shards with certificates of one cluster CA
//! exchange replication both ways and answer a `BusClient` holding a certificate of the same
//! CA; a plaintext client, a plaintext peer shard, a client whose certificate another CA
//! signed, and a client that trusts only another CA are all refused, and each refusal is
//! counted by reason in the shard's stats. Files that cannot make a configuration are named in
//! the error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use shoal_bus::{Bus, BusClient, BusClientConfig, BusConfig, BusTls, HandshakeFailure};
use shoal_wire::messages::*;

/// A CA, and certificate files it signs, in a directory of the test.
struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    directory: PathBuf,
}

impl Authority {
    fn new(directory: &Path, name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} cluster CA"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let directory = directory.join(name);
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::write(directory.join("ca.pem"), issuer.pem()).unwrap();
        Authority { issuer, directory }
    }

    fn ca(&self) -> PathBuf {
        self.directory.join("ca.pem")
    }

    /// A certificate for 127.0.0.1 (server and client use), and its key: the two paths.
    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let certificate_path = self.directory.join(format!("{name}.pem"));
        let key_path = self.directory.join(format!("{name}.key"));
        std::fs::write(&certificate_path, certificate.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (certificate_path, key_path)
    }

    /// The bus TLS of a member `name`, trusting `trusted`'s CA.
    fn member(&self, name: &str, trusted: &Authority) -> BusTls {
        let (certificate, key) = self.issue(name);
        BusTls::from_files(&certificate, &key, &trusted.ca()).unwrap()
    }
}

fn client_config(tls: Option<BusTls>) -> BusClientConfig {
    BusClientConfig {
        tls,
        ..BusClientConfig::default()
    }
}

#[test]
fn shards_with_one_cluster_ca_talk_and_everyone_else_is_refused() {
    let _watchdog = Watchdog::start("mutual_tls", WATCHDOG);
    let directory = tempfile::tempdir().unwrap();
    let cluster = Authority::new(directory.path(), "cluster");
    let other = Authority::new(directory.path(), "other");
    let first_tls = cluster.member("node-1", &cluster);
    let second_tls = cluster.member("node-2", &cluster);
    let router_tls = cluster.member("router", &cluster);
    // Presents a certificate of another CA (but trusts the cluster's shards).
    let stranger_tls = other.member("stranger", &cluster);
    // Trusts only the other CA: must refuse the cluster's shards.
    let outsider_tls = other.member("outsider", &other);
    let (first_address, second_address, plain_address) =
        (free_address(), free_address(), free_address());

    spawn_executor("mutual-tls", move || async move {
        let mut first_config = BusConfig::new(
            shard(1),
            first_address,
            BTreeMap::from([(shard(2), second_address)]),
        );
        first_config.tls = Some(first_tls);
        let mut second_config = BusConfig::new(
            shard(2),
            second_address,
            BTreeMap::from([(shard(1), first_address)]),
        );
        second_config.tls = Some(second_tls);
        let (first, first_inbox) = Bus::start(first_config).unwrap();
        let (second, second_inbox) = Bus::start(second_config).unwrap();

        // Replication both ways, each delivered from the shard that said Hello.
        first
            .send_replication(shard(2), numbered(1, 1, 2, 1))
            .unwrap();
        second
            .send_replication(shard(1), numbered(1, 2, 1, 1))
            .unwrap();
        for (inbox, from) in [(&second_inbox, 1), (&first_inbox, 2)] {
            let inbound = glommio::timer::timeout(WAIT_DEADLINE, async { Ok(inbox.recv().await) })
                .await
                .expect("no replication over TLS")
                .expect("inbox closed");
            assert_eq!(inbound.peer, Some(shard(from)));
            assert!(matches!(inbound.message, BusMessage::Replication(_)));
        }
        assert_eq!(first.stats().tls_connect_failures, 0);

        // A client with a certificate of the cluster CA is served.
        let second = Rc::new(second);
        glommio::spawn_local(serve_echo(second.clone(), second_inbox, 1)).detach();
        let router = BusClient::connect(second_address, client_config(Some(router_tls)))
            .await
            .unwrap();
        assert_eq!(
            router.call(item_request("over TLS")).await.unwrap(),
            echo_of("over TLS")
        );

        let failed =
            |reason: HandshakeFailure| second.stats().tls_handshakes_failed[reason.index()];

        // A plaintext client: its bytes never reach the decoder; counted as not TLS.
        let plaintext = BusClient::connect(second_address, client_config(None))
            .await
            .unwrap();
        assert!(plaintext.call(item_request("plain")).await.is_err());
        wait_until("the plaintext client is counted", || {
            failed(HandshakeFailure::NotTls) == 1
        })
        .await;

        // A client whose certificate another CA signed: refused in the handshake.
        let refused =
            match BusClient::connect(second_address, client_config(Some(stranger_tls))).await {
                // TLS 1.3: the client finishes before the server checks its certificate, and
                // learns of the refusal on its first read.
                Ok(stranger) => stranger.call(item_request("stranger")).await.is_err(),
                Err(_) => true,
            };
        assert!(refused);
        wait_until("the stranger's handshake is counted", || {
            failed(HandshakeFailure::Failed) == 1
        })
        .await;

        // A client that trusts another CA refuses the cluster's shard before sending anything.
        let error = BusClient::connect(second_address, client_config(Some(outsider_tls)))
            .await
            .err()
            .expect("an untrusted shard must fail the handshake");
        assert!(error.to_string().contains("TLS handshake with"), "{error}");

        // A plaintext peer shard sends replication: refused, nothing delivered, counted.
        let plain_config = BusConfig::new(
            shard(3),
            plain_address,
            BTreeMap::from([(shard(2), second_address)]),
        );
        let (plain, _plain_inbox) = Bus::start(plain_config).unwrap();
        plain
            .send_replication(shard(2), numbered(1, 3, 2, 1))
            .unwrap();
        wait_until("the plaintext peer is counted", || {
            failed(HandshakeFailure::NotTls) == 2
        })
        .await;
        assert_eq!(second.stats().envelopes_received, 1, "only the member's");

        // The member client is still served.
        assert_eq!(
            router.call(item_request("still")).await.unwrap(),
            echo_of("still")
        );
        plain.shutdown();
        first.shutdown();
        second.shutdown();
    })
    .join()
    .unwrap();
}

#[test]
fn unusable_files_are_named_in_the_error() {
    let directory = tempfile::tempdir().unwrap();
    let cluster = Authority::new(directory.path(), "cluster");
    let (certificate, key) = cluster.issue("node");
    let (_, other_key) = cluster.issue("other");
    let missing = directory.path().join("missing.pem");
    let error = BusTls::from_files(&missing, &key, &cluster.ca()).unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "cannot read the bus TLS certificate {}",
            missing.display()
        )),
        "{error}"
    );
    let error = BusTls::from_files(&certificate, &other_key, &cluster.ca()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("does not belong to the certificate"),
        "{error}"
    );
    let error = BusTls::from_files(&certificate, &key, &key).unwrap_err();
    assert!(
        error.to_string().contains("CA bundle") && error.to_string().contains("no PEM certificate"),
        "{error}"
    );
    let error = BusTls::from_files(&certificate, &certificate, &cluster.ca()).unwrap_err();
    assert!(error.to_string().contains("no PEM private key"), "{error}");
    BusTls::from_files(&certificate, &key, &cluster.ca()).unwrap();
}
