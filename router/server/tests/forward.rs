//! The forwarding rules against scripted shards: three fake nodes, each a real `shoal_bus::Bus`
//! on loopback answering requests as a script says, on the same executor as the `Forwarder`.
//! Runs under a watchdog that aborts the test process if it hangs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use shoal_bus::{Bus, BusConfig, Inbox};
use shoal_router::forward::{CALL_TIMEOUT, Effect, ForwardError, Forwarder, ItemCall};
use shoal_router::partition_map::{HashRange, NodeDirectory, PartitionEntry};
use shoal_wire::messages::{
    BusMessage, ItemResult, NodeError, NodeResponse, ResponseFrame, ShardAddress,
};

const WATCHDOG: Duration = Duration::from_secs(60);
const PARTITION: u64 = 9;

/// How a fake node answers: (node, how many requests it had before this one) → response.
type Script = Rc<dyn Fn(u64, usize) -> NodeResponse>;
/// The response that a fake node never sends: it swallows the request.
fn silence() -> NodeResponse {
    NodeResponse::Error(NodeError::Malformed {
        message: "swallowed by the fake node".to_string(),
    })
}

struct FakeCluster {
    buses: Vec<Rc<Bus>>,
    requests: Rc<RefCell<BTreeMap<u64, usize>>>,
    forwarder: Forwarder,
}

impl FakeCluster {
    fn start(script: Script) -> FakeCluster {
        let requests = Rc::new(RefCell::new(BTreeMap::new()));
        let mut buses = Vec::new();
        let mut directory = NodeDirectory::default();
        for node in 1..=3u64 {
            let config = BusConfig::new(
                ShardAddress { node, shard: 0 },
                SocketAddr::from(([127, 0, 0, 1], 0)),
                BTreeMap::new(),
            );
            let (bus, inbox) = Bus::start(config).unwrap();
            let bus = Rc::new(bus);
            directory.insert(node, bus.local_address());
            glommio::spawn_local(serve(
                node,
                bus.clone(),
                inbox,
                script.clone(),
                requests.clone(),
            ))
            .detach();
            buses.push(bus);
        }
        FakeCluster {
            buses,
            requests,
            forwarder: Forwarder::new(directory, 3),
        }
    }

    fn requests_at(&self, node: u64) -> usize {
        self.requests.borrow().get(&node).copied().unwrap_or(0)
    }

    fn total_requests(&self) -> usize {
        self.requests.borrow().values().sum()
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for bus in &self.buses {
            bus.shutdown();
        }
    }
}

async fn serve(
    node: u64,
    bus: Rc<Bus>,
    inbox: Inbox,
    script: Script,
    requests: Rc<RefCell<BTreeMap<u64, usize>>>,
) {
    while let Some(inbound) = inbox.recv().await {
        if let BusMessage::Request(frame) = inbound.message {
            let seen = {
                let mut requests = requests.borrow_mut();
                let count = requests.entry(node).or_insert(0);
                *count += 1;
                *count - 1
            };
            let response = script(node, seen);
            if response == silence() {
                continue;
            }
            let _ = bus.respond(
                inbound.from_connection,
                ResponseFrame {
                    request_id: frame.request_id,
                    response,
                },
            );
        }
    }
}

fn route() -> PartitionEntry {
    PartitionEntry {
        id: PARTITION,
        range: HashRange::ALL,
        replicas: vec![1, 2, 3],
        shard: 0,
        epoch: 1,
        leader_hint: None,
    }
}

/// The fake nodes never look inside a request: only its effect matters to the forwarder.
fn write() -> ItemCall {
    ItemCall {
        effect: Effect::Write,
        encoded: Vec::new(),
    }
}

fn read() -> ItemCall {
    ItemCall {
        effect: Effect::Read,
        encoded: Vec::new(),
    }
}

fn item() -> NodeResponse {
    NodeResponse::Item {
        result: ItemResult::Write { attributes: None },
        read_units_milli: 0,
        write_units_milli: 1000,
    }
}

fn not_leader(hint: Option<u64>) -> NodeResponse {
    NodeResponse::Error(NodeError::NotLeader {
        partition: PARTITION,
        leader_hint: hint,
    })
}

fn run(test: impl std::future::Future<Output = ()>) {
    let done = Arc::new(AtomicBool::new(false));
    {
        let done = done.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < WATCHDOG {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("watchdog: forwarding test still running after {WATCHDOG:?}");
            std::process::abort();
        });
    }
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .unwrap()
        .run(async move {
            // kernel-notes/glommio-runtime.md: take the slow first timer sleep before any deadline runs.
            glommio::timer::sleep(Duration::from_millis(20)).await;
            test.await;
        });
    done.store(true, Ordering::SeqCst);
}

fn deadline_in(duration: Duration) -> Instant {
    Instant::now() + duration
}

#[test]
fn not_leader_follows_the_hint() {
    run(async {
        let cluster = FakeCluster::start(Rc::new(|node, _| match node {
            3 => item(),
            _ => not_leader(Some(3)),
        }));
        let reply = cluster
            .forwarder
            .forward(&route(), &write(), deadline_in(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(reply.leader, 3);
        assert_eq!(reply.write_units_milli, 1000);
        assert_eq!(cluster.requests_at(1), 1);
        assert_eq!(cluster.requests_at(2), 0, "the hint skips node 2");
        assert_eq!(cluster.requests_at(3), 1);
    });
}

#[test]
fn busy_backs_off_and_retries_the_same_leader() {
    run(async {
        let cluster = FakeCluster::start(Rc::new(|_, seen| {
            if seen < 2 {
                NodeResponse::Error(NodeError::Busy {
                    partition: PARTITION,
                })
            } else {
                item()
            }
        }));
        let started = Instant::now();
        let reply = cluster
            .forwarder
            .forward(&route(), &write(), deadline_in(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(reply.leader, 1);
        assert_eq!(cluster.requests_at(1), 3);
        // Two backoffs of at least half of 10 ms and 20 ms.
        assert!(started.elapsed() >= Duration::from_millis(15));
    });
}

/// `Internal` comes from nodes of an earlier build, which sent it for any failure.
#[test]
fn an_internal_error_of_an_earlier_node_is_an_unknown_outcome() {
    run(async {
        let cluster = FakeCluster::start(Rc::new(|node, _| match node {
            1 => NodeResponse::Error(NodeError::Internal {
                message: "fdatasync failed".to_string(),
            }),
            _ => item(),
        }));
        let deadline = deadline_in(Duration::from_secs(5));
        let error = cluster
            .forwarder
            .forward(&route(), &write(), deadline)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ForwardError::OutcomeUnknown { .. }),
            "{error:?}"
        );
        assert_eq!(error.into_dynamo().type_name, "InternalServerError");
        assert_eq!(cluster.total_requests(), 1);
        let reply = cluster
            .forwarder
            .forward(&route(), &read(), deadline)
            .await
            .unwrap();
        assert_eq!(reply.leader, 2);
    });
}

#[test]
fn a_write_refused_as_not_applied_is_sent_again_until_it_is_served() {
    run(async {
        // Node 1 refuses twice (its proposal lost its slot; a condition saw a write that did
        // not last), then serves.
        let cluster = FakeCluster::start(Rc::new(|node, seen| match (node, seen) {
            (1, 0 | 1) => NodeResponse::Error(NodeError::NotApplied {
                message: "the write lost its log slot".to_string(),
            }),
            _ => item(),
        }));
        let reply = cluster
            .forwarder
            .forward(&route(), &write(), deadline_in(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(reply.leader, 1);
        assert_eq!(cluster.requests_at(1), 3, "the same replica, asked again");
        assert_eq!(cluster.total_requests(), 3);
    });
}

#[test]
fn a_replica_that_lost_its_leadership_redirects_the_retried_write() {
    run(async {
        // Node 1 refuses as not applied, then says node 3 leads now, which serves.
        let cluster = FakeCluster::start(Rc::new(|node, seen| match (node, seen) {
            (1, 0) => NodeResponse::Error(NodeError::NotApplied {
                message: "leadership changed".to_string(),
            }),
            (1, _) => not_leader(Some(3)),
            _ => item(),
        }));
        let reply = cluster
            .forwarder
            .forward(&route(), &write(), deadline_in(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(reply.leader, 3);
        assert_eq!(cluster.requests_at(1), 2);
        assert_eq!(cluster.requests_at(2), 0);
        assert_eq!(cluster.requests_at(3), 1);
    });
}

#[test]
fn refusals_until_the_deadline_end_as_unavailable_with_nothing_served() {
    run(async {
        let cluster = FakeCluster::start(Rc::new(|_, _| {
            NodeResponse::Error(NodeError::NotApplied {
                message: "the condition was evaluated against a write that did not take effect"
                    .to_string(),
            })
        }));
        let error = cluster
            .forwarder
            .forward(&route(), &write(), deadline_in(Duration::from_millis(300)))
            .await
            .unwrap_err();
        match &error {
            ForwardError::Unavailable {
                message,
                replica_may_have_served,
            } => {
                assert!(message.contains("did not take effect"), "{message}");
                assert!(!replica_may_have_served);
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(!error.may_have_consumed());
        assert!(cluster.requests_at(1) >= 2, "retried");
    });
}

#[test]
fn a_write_whose_outcome_is_unknown_is_never_retried() {
    run(async {
        let cluster = FakeCluster::start(Rc::new(|node, _| match node {
            1 => NodeResponse::Error(NodeError::OutcomeUnknown {
                message: "leadership changed while the write was in flight".to_string(),
            }),
            _ => item(),
        }));
        let deadline = deadline_in(Duration::from_secs(5));
        let error = cluster
            .forwarder
            .forward(&route(), &write(), deadline)
            .await
            .unwrap_err();
        assert!(error.may_have_consumed());
        let error = error.into_dynamo();
        assert_eq!(error.type_name, "InternalServerError");
        assert_eq!(
            error.message,
            "Internal server error (the write may or may not have been applied: leadership \
             changed while the write was in flight)"
        );
        assert_eq!(cluster.total_requests(), 1);
        // A read is repeated at the next replica.
        let reply = cluster
            .forwarder
            .forward(&route(), &read(), deadline)
            .await
            .unwrap();
        assert_eq!(reply.leader, 2);
    });
}

#[test]
fn stale_epochs_and_wrong_owners_ask_for_a_map_refresh() {
    run(async {
        let cluster = FakeCluster::start(Rc::new(|node, _| match node {
            1 => NodeResponse::Error(NodeError::StaleEpoch {
                partition: PARTITION,
                current_epoch: 2,
            }),
            _ => NodeResponse::Error(NodeError::WrongOwner {
                partition: PARTITION,
            }),
        }));
        let deadline = deadline_in(Duration::from_secs(5));
        let error = cluster
            .forwarder
            .forward(&route(), &write(), deadline)
            .await
            .unwrap_err();
        // The node knows a later epoch than the route's: the map will change (a split).
        assert_eq!(
            error,
            ForwardError::StaleRoute {
                partition: PARTITION,
                newer_epoch: true,
            }
        );
        let mut elsewhere = route();
        elsewhere.leader_hint = Some(2);
        let error = cluster
            .forwarder
            .forward(&elsewhere, &read(), deadline)
            .await
            .unwrap_err();
        assert_eq!(
            error,
            ForwardError::StaleRoute {
                partition: PARTITION,
                newer_epoch: false,
            }
        );
        assert_eq!(cluster.total_requests(), 2);
    });
}

/// A split child refuses a key outside its range with its own epoch, the route's: the map is
/// not stale, so the forwarder neither refreshes nor retries; nothing was applied, a batch
/// returns such keys unprocessed and a transaction groups them again.
#[test]
fn a_key_outside_a_split_childs_range_is_refused_without_a_refresh() {
    run(async {
        let cluster = FakeCluster::start(Rc::new(|_, _| {
            NodeResponse::Error(NodeError::StaleEpoch {
                partition: PARTITION,
                current_epoch: 1,
            })
        }));
        let deadline = deadline_in(Duration::from_secs(5));
        let error = cluster
            .forwarder
            .forward(&route(), &write(), deadline)
            .await
            .unwrap_err();
        assert!(
            matches!(
                &error,
                ForwardError::KeysElsewhere {
                    partition: PARTITION
                }
            ),
            "{error:?}"
        );
        assert!(!error.may_have_consumed());
        assert_eq!(cluster.total_requests(), 1);
        // What a batch's settling sees: an internal error, so the keys come back unprocessed.
        assert_eq!(error.into_dynamo().type_name, "InternalServerError");
    });
}

#[test]
fn dynamodb_errors_pass_through_with_the_old_item() {
    run(async {
        let cluster = FakeCluster::start(Rc::new(|_, _| {
            NodeResponse::Error(NodeError::Dynamo {
                type_name: "ConditionalCheckFailedException".to_string(),
                message: "The conditional request failed".to_string(),
                item: Some(shoal_model::encoding::encode_item(
                    &shoal_model::json::item_from_json(&serde_json::json!({"pk": {"S": "a"}}))
                        .unwrap(),
                )),
            })
        }));
        let error = cluster
            .forwarder
            .forward(&route(), &write(), deadline_in(Duration::from_secs(5)))
            .await
            .unwrap_err()
            .into_dynamo();
        assert_eq!(error.type_name, "ConditionalCheckFailedException");
        assert_eq!(error.item, Some(serde_json::json!({"pk": {"S": "a"}})));
        assert_eq!(cluster.total_requests(), 1);
    });
}

#[test]
fn no_leader_ends_at_the_deadline_with_backoff_between_rounds() {
    run(async {
        let cluster = FakeCluster::start(Rc::new(|_, _| not_leader(None)));
        let bound = Duration::from_millis(400);
        let started = Instant::now();
        let error = cluster
            .forwarder
            .forward(&route(), &write(), deadline_in(bound))
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(error, ForwardError::Unavailable { .. }),
            "{error:?}"
        );
        assert!(elapsed >= bound, "gave up after {elapsed:?}");
        assert!(elapsed < bound + CALL_TIMEOUT, "overran: {elapsed:?}");
        // Every replica was asked, and the backoff kept it far below the attempt cap.
        for node in 1..=3 {
            assert!(cluster.requests_at(node) >= 1);
        }
        assert!(
            cluster.total_requests() < 40,
            "{}",
            cluster.total_requests()
        );
    });
}

#[test]
fn an_unreachable_replica_is_skipped_even_for_writes() {
    run(async {
        let cluster = FakeCluster::start(Rc::new(|_, _| item()));
        // Node 1 moves to a port where nothing listens: the write never left the router.
        let mut directory = cluster.forwarder.directory();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nowhere = closed.local_addr().unwrap();
        drop(closed);
        directory.insert(1, nowhere);
        cluster.forwarder.set_directory(directory);
        let reply = cluster
            .forwarder
            .forward(&route(), &write(), deadline_in(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(reply.leader, 2);
        assert_eq!(cluster.requests_at(1), 0);
    });
}

#[test]
fn a_write_sent_and_never_answered_is_not_retried() {
    run(async {
        let cluster = FakeCluster::start(Rc::new(|node, _| match node {
            1 => silence(),
            _ => item(),
        }));
        let started = Instant::now();
        let error = cluster
            .forwarder
            .forward(&route(), &write(), deadline_in(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ForwardError::OutcomeUnknown { .. }),
            "{error:?}"
        );
        assert!(started.elapsed() >= CALL_TIMEOUT);
        assert_eq!(cluster.total_requests(), 1, "the write went to node 1 only");
        // A read in the same situation moves on to the next replica.
        let reply = cluster
            .forwarder
            .forward(&route(), &read(), deadline_in(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(reply.leader, 2);
    });
}
