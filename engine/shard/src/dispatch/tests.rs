use shoal_model::key::{KeySchema, KeyType};
use shoal_model::request::{ItemOperation, prepare};
use shoal_model::request_codec::encode_request;
use shoal_replication::{Membership, Message};
use shoal_wire::messages::{BallotWire, LogEntryWire, MembershipWire, PayloadWire};

use super::*;

const NODE: NodeId = NodeId(2);
const SHARD: u16 = 3;
const PARTITION: u64 = 7;
const EPOCH: u64 = 4;
/// The connection a test request comes on.
const CONNECTION: u32 = 99;

fn at(nanos: u64) -> MonotonicTime {
    MonotonicTime::from_nanos(nanos)
}

fn dispatch() -> Dispatch<u32> {
    let mut dispatch = Dispatch::with_request_limit(NODE, SHARD, 2);
    dispatch.add_replica(PARTITION, EPOCH);
    dispatch
}

fn put_bytes() -> Vec<u8> {
    let schema = KeySchema::partition_only("pk", KeyType::String);
    let put = serde_json::json!({"Item": {"pk": {"S": "a"}}});
    encode_request(&prepare(ItemOperation::PutItem, &put, &schema).unwrap())
}

fn item(partition: u64, epoch: u64, request: Vec<u8>) -> BusMessage {
    BusMessage::Request(RequestFrame {
        request_id: 41,
        request: NodeRequest::Item {
            partition,
            epoch,
            request,
        },
    })
}

/// The one answer a refused request gets.
fn refusal(routed: Vec<Routed<u32>>) -> NodeResponse {
    match <[Routed<u32>; 1]>::try_from(routed) {
        Ok(
            [
                Routed::Respond {
                    connection: CONNECTION,
                    frame:
                        ResponseFrame {
                            request_id: 41,
                            response,
                        },
                },
            ],
        ) => response,
        other => panic!("expected one answer, got {other:?}"),
    }
}

#[test]
fn item_requests_are_refused_by_owner_epoch_decoding_and_load() {
    let mut dispatch = dispatch();
    dispatch.add_out_of_service(9, 1);
    let now = at(10);
    assert_eq!(
        refusal(dispatch.route(CONNECTION, item(8, EPOCH, put_bytes()), now)),
        NodeResponse::Error(NodeError::WrongOwner { partition: 8 })
    );
    // Out of service: still this shard's, so not WrongOwner (the map is right).
    assert_eq!(
        refusal(dispatch.route(CONNECTION, item(9, 1, put_bytes()), now)),
        NodeResponse::Error(NodeError::NotLeader {
            partition: 9,
            leader_hint: None
        })
    );
    assert_eq!(
        refusal(dispatch.route(CONNECTION, item(PARTITION, EPOCH - 1, put_bytes()), now)),
        NodeResponse::Error(NodeError::StaleEpoch {
            partition: PARTITION,
            current_epoch: EPOCH
        })
    );
    assert!(matches!(
        refusal(dispatch.route(CONNECTION, item(PARTITION, EPOCH, vec![0xFF, 1]), now)),
        NodeResponse::Error(NodeError::Malformed { .. })
    ));
    // Two fit (the test limit), the third is refused as busy.
    for _ in 0..2 {
        let routed = dispatch.route(CONNECTION, item(PARTITION, EPOCH, put_bytes()), now);
        assert!(matches!(
            routed.as_slice(),
            [Routed::Replica {
                partition: PARTITION,
                event: Event::Request { epoch: EPOCH, .. },
                delivery: Delivery::RefuseWhenFull { .. },
            }]
        ));
    }
    assert_eq!(
        refusal(dispatch.route(CONNECTION, item(PARTITION, EPOCH, put_bytes()), now)),
        NodeResponse::Error(NodeError::Busy {
            partition: PARTITION
        })
    );
    assert_eq!(dispatch.pending_replies(), BTreeMap::from([(PARTITION, 2)]));
}

#[test]
fn a_reply_answers_its_request_once_with_its_latency() {
    let mut dispatch = dispatch();
    let routed = dispatch.route(CONNECTION, item(PARTITION, EPOCH, put_bytes()), at(1_000));
    let [
        Routed::Replica {
            delivery: Delivery::RefuseWhenFull { reply_to },
            ..
        },
    ] = routed.as_slice()
    else {
        panic!("not routed to the replica: {routed:?}");
    };
    let reply = |response| Output::Reply {
        reply_to: *reply_to,
        response,
    };
    match dispatch.on_output(PARTITION, reply(NodeResponse::Created), at(4_000)) {
        Some(Command::Respond {
            connection: CONNECTION,
            frame:
                ResponseFrame {
                    request_id: 41,
                    response: NodeResponse::Created,
                },
            served:
                Served {
                    operation: "PutItem",
                    latency_nanos: 3_000,
                    error_kind: None,
                },
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        dispatch
            .on_output(PARTITION, reply(NodeResponse::Created), at(5_000))
            .is_none(),
        "a second reply to the same request is dropped"
    );
    assert!(dispatch.pending_replies().is_empty());
}

#[test]
fn a_full_replica_queue_refuses_the_request_as_busy() {
    let mut dispatch = dispatch();
    let routed = dispatch.route(CONNECTION, item(PARTITION, EPOCH, put_bytes()), at(0));
    let [
        Routed::Replica {
            delivery: Delivery::RefuseWhenFull { reply_to },
            ..
        },
    ] = routed.as_slice()
    else {
        panic!("not routed: {routed:?}");
    };
    match dispatch.refuse_busy(*reply_to, at(1)) {
        Some(Command::Respond {
            frame:
                ResponseFrame {
                    response: NodeResponse::Error(NodeError::Busy { partition }),
                    ..
                },
            served:
                Served {
                    error_kind: Some("Busy"),
                    ..
                },
            ..
        }) => assert_eq!(partition, PARTITION),
        other => panic!("unexpected {other:?}"),
    }
}

fn envelope(to: u64, group: u64, message: ReplicationMessageWire) -> ReplicationEnvelope {
    ReplicationEnvelope {
        group,
        from: 1,
        to,
        message,
    }
}

#[test]
fn replication_reaches_only_this_nodes_replicas_and_bad_messages_are_counted() {
    let mut dispatch = dispatch();
    let unsorted = ReplicationMessageWire::Accept {
        ballot: BallotWire { round: 1, node: 1 },
        round: 1,
        first_slot: 1,
        entries: vec![LogEntryWire {
            ballot: BallotWire { round: 1, node: 1 },
            payload: PayloadWire::Membership(MembershipWire {
                full_replicas: vec![3, 1],
                log_replicas: vec![],
            }),
        }],
        commit_slot: 0,
    };
    let routed = dispatch.route(
        CONNECTION,
        BusMessage::Replication(vec![
            envelope(
                NODE.0,
                PARTITION,
                ReplicationMessageWire::PreCheck { round: 5 },
            ),
            envelope(
                NODE.0 + 1,
                PARTITION,
                ReplicationMessageWire::PreCheck { round: 6 },
            ),
            envelope(
                NODE.0,
                PARTITION + 1,
                ReplicationMessageWire::PreCheck { round: 7 },
            ),
            envelope(NODE.0, PARTITION, unsorted),
        ]),
        at(0),
    );
    assert!(
        matches!(
            routed.as_slice(),
            [
                Routed::Replica {
                    partition: PARTITION,
                    event: Event::Message {
                        from: NodeId(1),
                        message: Message::PreCheck { round: 5 },
                    },
                    delivery: Delivery::DropWhenFull,
                },
                Routed::Undecodable,
            ]
        ),
        "{routed:?}"
    );
}

#[test]
fn outputs_become_bus_sends_to_the_same_shard_of_the_peer() {
    let mut dispatch = dispatch();
    match dispatch.on_output(
        PARTITION,
        Output::Send {
            to: NodeId(5),
            message: Message::PreCheck { round: 2 },
        },
        at(0),
    ) {
        Some(Command::Replicate { to, envelope }) => {
            assert_eq!(
                to,
                ShardAddress {
                    node: 5,
                    shard: SHARD
                }
            );
            assert_eq!(
                envelope,
                ReplicationEnvelope {
                    group: PARTITION,
                    from: NODE.0,
                    to: 5,
                    message: ReplicationMessageWire::PreCheck { round: 2 },
                }
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let chunk = SnapshotChunk {
        group: PARTITION,
        from: NODE.0,
        to: 6,
        transfer_id: 1,
        last_included_slot: 3,
        membership: MembershipWire::default(),
        chunk_index: 0,
        items: Vec::new(),
        last: true,
    };
    assert!(matches!(
        dispatch.on_output(PARTITION, Output::Snapshot(chunk), at(0)),
        Some(Command::Snapshot {
            to: ShardAddress {
                node: 6,
                shard: SHARD
            },
            ..
        })
    ));
    assert!(matches!(
        dispatch.on_output(
            PARTITION,
            Output::Persist {
                core_lsn: CoreLsn(3),
                body: vec![1]
            },
            at(0)
        ),
        Some(Command::Persist {
            partition: PARTITION,
            core_lsn: CoreLsn(3),
            ..
        })
    ));
}

fn meta(partition: u64, epoch: u64, members: &[u64]) -> PartitionMeta {
    PartitionMeta {
        partition,
        epoch,
        key_schema: KeySchema::partition_only("pk", KeyType::String),
        membership: Membership::new(members.iter().map(|node| NodeId(*node)), []),
    }
}

#[test]
fn creation_is_idempotent_refuses_stale_epochs_and_foreign_replica_sets() {
    let mut dispatch = dispatch();
    dispatch.add_out_of_service(9, 1);
    assert_eq!(
        dispatch.begin_create(&meta(PARTITION, EPOCH, &[1, 2, 3])),
        Decision::Answer(NodeResponse::Created)
    );
    assert_eq!(
        dispatch.begin_create(&meta(PARTITION, EPOCH + 1, &[1, 2, 3])),
        Decision::Answer(NodeResponse::Error(NodeError::StaleEpoch {
            partition: PARTITION,
            current_epoch: EPOCH
        }))
    );
    assert!(matches!(
        dispatch.begin_create(&meta(9, 1, &[1, 2, 3])),
        Decision::Answer(NodeResponse::Error(NodeError::NotApplied { .. }))
    ));
    assert!(matches!(
        dispatch.begin_create(&meta(10, 1, &[1, 3, 4])),
        Decision::Answer(NodeResponse::Error(NodeError::Malformed { .. }))
    ));
    // A second CreatePartition while the first runs waits for nothing.
    assert_eq!(
        dispatch.begin_create(&meta(10, 1, &[1, 2, 3])),
        Decision::Proceed
    );
    assert_eq!(
        dispatch.begin_create(&meta(10, 1, &[1, 2, 3])),
        Decision::Answer(NodeResponse::Error(NodeError::Busy { partition: 10 }))
    );
    dispatch.end_create(10);
    dispatch.add_replica(10, 1);
    assert_eq!(dispatch.epoch_of(10), Some(1));
    assert_eq!(
        dispatch.begin_create(&meta(10, 1, &[1, 2, 3])),
        Decision::Answer(NodeResponse::Created)
    );
    // A failed creation leaves nothing routed, and may be tried again.
    assert_eq!(dispatch.begin_create(&meta(11, 1, &[2])), Decision::Proceed);
    dispatch.end_create(11);
    assert_eq!(dispatch.epoch_of(11), None);
    assert_eq!(dispatch.begin_create(&meta(11, 1, &[2])), Decision::Proceed);
}

#[test]
fn deletion_is_idempotent_and_unroutes_the_replica_first() {
    let mut dispatch = dispatch();
    dispatch.add_out_of_service(9, 1);
    assert!(matches!(
        dispatch.begin_delete(9, 1),
        Decision::Answer(NodeResponse::Error(NodeError::NotApplied { .. }))
    ));
    assert_eq!(
        dispatch.begin_delete(8, 1),
        Decision::Answer(NodeResponse::Deleted)
    );
    assert_eq!(
        dispatch.begin_delete(PARTITION, EPOCH - 1),
        Decision::Answer(NodeResponse::Error(NodeError::StaleEpoch {
            partition: PARTITION,
            current_epoch: EPOCH
        }))
    );
    assert_eq!(dispatch.begin_delete(PARTITION, EPOCH), Decision::Proceed);
    assert_eq!(
        refusal(dispatch.route(CONNECTION, item(PARTITION, EPOCH, put_bytes()), at(0))),
        NodeResponse::Error(NodeError::WrongOwner {
            partition: PARTITION
        })
    );
    // While the deletion runs, asking again is answered Busy (not done yet), and so is a
    // creation of the same partition (it would share the files the deletion removes); once it
    // is done, Deleted, and a creation proceeds.
    assert_eq!(
        dispatch.begin_delete(PARTITION, EPOCH),
        Decision::Answer(NodeResponse::Error(NodeError::Busy {
            partition: PARTITION
        }))
    );
    assert_eq!(
        dispatch.begin_create(&meta(PARTITION, EPOCH, &[2])),
        Decision::Answer(NodeResponse::Error(NodeError::Busy {
            partition: PARTITION
        }))
    );
    dispatch.end_delete(PARTITION);
    assert_eq!(
        dispatch.begin_delete(PARTITION, EPOCH),
        Decision::Answer(NodeResponse::Deleted)
    );
    assert_eq!(
        dispatch.begin_create(&meta(PARTITION, EPOCH, &[2])),
        Decision::Proceed
    );
    dispatch.end_create(PARTITION);
    // A deletion while the creation still runs is refused as busy: answered Deleted, it would
    // let the creation finish afterwards and leave a replica nobody deletes.
    assert_eq!(dispatch.begin_create(&meta(12, 1, &[2])), Decision::Proceed);
    assert_eq!(
        dispatch.begin_delete(12, 1),
        Decision::Answer(NodeResponse::Error(NodeError::Busy { partition: 12 }))
    );
    dispatch.end_create(12);
    dispatch.add_replica(12, 1);
    assert_eq!(dispatch.begin_delete(12, 1), Decision::Proceed);
}

/// Node join: `ClusterNodes` is the host's to answer (it holds the list), and `set_peers`
/// watches a node that joined and forgets one that left, so pings go to exactly the others.
#[test]
fn cluster_nodes_is_answered_by_the_host_and_set_peers_follows_the_node_list() {
    let mut dispatch = dispatch();
    let request = BusMessage::Request(RequestFrame {
        request_id: 41,
        request: NodeRequest::ClusterNodes,
    });
    let routed = dispatch.route(CONNECTION, request, at(0));
    assert!(
        matches!(
            routed.as_slice(),
            [Routed::ClusterNodes {
                connection: CONNECTION,
                request_id: 41
            }]
        ),
        "{routed:?}"
    );
    let config = liveness::LivenessConfig {
        ping_interval: std::time::Duration::from_millis(100),
        unreachable_after: std::time::Duration::from_millis(350),
    };
    dispatch.enable_liveness(config, 5, [NodeId(1), NodeId(3)], at(0));
    let pinged = |dispatch: &mut Dispatch<u32>, now| -> Vec<u64> {
        let (commands, _) = dispatch.liveness_due(now);
        commands
            .iter()
            .filter_map(|command| match command {
                Command::Replicate { to, .. } => Some(to.node),
                _ => None,
            })
            .collect()
    };
    assert_eq!(pinged(&mut dispatch, at(0)), vec![1, 3]);
    // Node 4 joined, node 3 left; the node itself is never watched.
    let peers: BTreeSet<NodeId> = [NodeId(1), NodeId(4)].into_iter().collect();
    dispatch.set_peers(&peers, at(50_000_000));
    assert_eq!(pinged(&mut dispatch, at(200_000_000)), vec![1, 4]);
    assert_eq!(dispatch.peer_reachable(NodeId(4)), Some(true));
    assert_eq!(dispatch.peer_reachable(NodeId(3)), None);
}
