//! Strategies and sample messages shared by the wire tests.
#![allow(dead_code)]

use proptest::collection::vec;
use proptest::prelude::*;
use shoal_replication::{Ballot, LogEntry, Membership, Message, NodeId, Payload, Slot};
use shoal_wire::messages::*;

pub fn ballot() -> impl Strategy<Value = Ballot> {
    (any::<u64>(), any::<u64>()).prop_map(|(round, node)| Ballot {
        round,
        node: NodeId(node),
    })
}

pub fn membership() -> impl Strategy<Value = Membership> {
    // Disjoint sets: full replicas from even ids, log replicas from odd ids.
    (vec(0u64..50, 1..4), vec(0u64..50, 0..3)).prop_map(|(full, log)| {
        Membership::new(
            full.into_iter().map(|node| NodeId(node * 2)),
            log.into_iter().map(|node| NodeId(node * 2 + 1)),
        )
    })
}

pub fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        Just(Payload::Noop),
        vec(any::<u8>(), 0..300).prop_map(Payload::Command),
        membership().prop_map(Payload::Membership),
        (any::<u64>(), membership(), membership()).prop_map(|(base_slot, base, next)| {
            Payload::MembershipStep {
                base_slot: Slot(base_slot),
                base,
                next,
            }
        }),
    ]
}

pub fn log_entry() -> impl Strategy<Value = LogEntry> {
    (ballot(), payload()).prop_map(|(ballot, payload)| LogEntry { ballot, payload })
}

pub fn core_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<u64>().prop_map(|round| Message::PreCheck { round }),
        (any::<u64>(), any::<bool>())
            .prop_map(|(round, granted)| Message::PreCheckReply { round, granted }),
        (ballot(), any::<u64>(), proptest::option::of(ballot())).prop_map(
            |(ballot, slot, lease_released)| Message::Prepare {
                ballot,
                from_slot: Slot(slot),
                lease_released,
            }
        ),
        (ballot(), any::<u64>()).prop_map(|(ballot, slot)| Message::TimeoutNow {
            ballot,
            commit_slot: Slot(slot)
        }),
        (
            ballot(),
            any::<u64>(),
            vec((any::<u64>(), log_entry()), 0..5),
            any::<u64>()
        )
            .prop_map(|(ballot, first, accepted, wait)| Message::Promise {
                ballot,
                log_first_slot: Slot(first),
                accepted: accepted
                    .into_iter()
                    .map(|(slot, entry)| (Slot(slot), entry))
                    .collect(),
                lease_wait_nanos: wait,
            }),
        (
            ballot(),
            any::<u64>(),
            any::<u64>(),
            vec(log_entry(), 0..5),
            any::<u64>()
        )
            .prop_map(|(ballot, round, first, entries, commit)| Message::Accept {
                ballot,
                round,
                first_slot: Slot(first),
                entries,
                commit_slot: Slot(commit),
            }),
        (ballot(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
            |(ballot, round, match_slot, missing)| Message::Accepted {
                ballot,
                round,
                match_slot: Slot(match_slot),
                missing,
            }
        ),
        ballot().prop_map(|promised| Message::Rejected { promised }),
        (ballot(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(ballot, round, first, commit)| Message::Quiesce {
                ballot,
                round,
                first_slot: Slot(first),
                commit_slot: Slot(commit),
            }
        ),
    ]
}

pub fn envelope() -> impl Strategy<Value = ReplicationEnvelope> {
    (any::<u64>(), any::<u64>(), any::<u64>(), core_message()).prop_map(
        |(group, from, to, message)| ReplicationEnvelope {
            group,
            from,
            to,
            message: message.into(),
        },
    )
}

pub fn heartbeat(group: u64, round: u64) -> ReplicationEnvelope {
    ReplicationEnvelope {
        group,
        from: 1,
        to: 2,
        message: ReplicationMessageWire::Accept {
            ballot: BallotWire { round: 3, node: 1 },
            round,
            first_slot: 10,
            entries: Vec::new(),
            commit_slot: 9,
        },
    }
}

/// One message of every `BusMessage` variant (and every request and response variant).
pub fn sample_messages() -> Vec<BusMessage> {
    let membership = MembershipWire {
        full_replicas: vec![1, 2, 3],
        log_replicas: vec![7],
    };
    let mut messages = vec![
        BusMessage::Hello {
            from: ShardAddress { node: 9, shard: 3 },
        },
        BusMessage::Replication(vec![
            heartbeat(5, 1),
            ReplicationEnvelope {
                group: 6,
                from: 2,
                to: 1,
                message: ReplicationMessageWire::Accept {
                    ballot: BallotWire { round: 4, node: 2 },
                    round: 17,
                    first_slot: 100,
                    entries: vec![
                        LogEntryWire {
                            ballot: BallotWire { round: 4, node: 2 },
                            payload: PayloadWire::Command(b"put item".to_vec()),
                        },
                        LogEntryWire {
                            ballot: BallotWire { round: 4, node: 2 },
                            payload: PayloadWire::Membership(membership.clone()),
                        },
                        LogEntryWire {
                            ballot: BallotWire { round: 4, node: 2 },
                            payload: PayloadWire::Noop,
                        },
                    ],
                    commit_slot: 99,
                },
            },
        ]),
        BusMessage::Replication(Vec::new()),
        BusMessage::Snapshot(SnapshotChunk {
            group: 6,
            from: 2,
            to: 3,
            transfer_id: 77,
            last_included_slot: 1234,
            membership: membership.clone(),
            chunk_index: 4,
            items: vec![
                (b"key-1".to_vec(), vec![0xAB; 1000]),
                (b"key-2".to_vec(), vec![]),
            ],
            last: true,
        }),
        BusMessage::Request(RequestFrame {
            request_id: 1,
            request: NodeRequest::CreatePartition {
                partition: 6,
                epoch: 2,
                key_schema: KeySchemaWire {
                    partition_key: ("pk".into(), KeyTypeWire::String),
                    sort_key: Some(("sk".into(), KeyTypeWire::Number)),
                },
                membership: membership.clone(),
            },
        }),
        BusMessage::Request(RequestFrame {
            request_id: 3,
            request: NodeRequest::Status,
        }),
        BusMessage::Response(ResponseFrame {
            request_id: 1,
            response: NodeResponse::Created,
        }),
        BusMessage::Response(ResponseFrame {
            request_id: 4,
            response: NodeResponse::Status {
                node: 1,
                shard: 0,
                replicas: vec![ReplicaStatus {
                    partition: 6,
                    epoch: 2,
                    role: ReplicaRole::LeaderWithLease,
                    leader_hint: Some(1),
                    commit_slot: 10,
                    applied_slot: 9,
                    item_count: 1000,
                    item_bytes: 123_456,
                    local_indexes: vec![LocalIndexStatus {
                        number: 1,
                        entry_count: 600,
                        entry_bytes: 45_678,
                    }],
                }],
            },
        }),
    ];
    // The request bytes are opaque here (the typed item request encoding is shoal-model's).
    for (index, request) in [Vec::new(), vec![1, 2, 3], vec![0xFF; 300]]
        .into_iter()
        .enumerate()
    {
        messages.push(BusMessage::Request(RequestFrame {
            request_id: 100 + index as u64,
            request: NodeRequest::Item {
                partition: 6,
                epoch: 2,
                request,
            },
        }));
    }
    let errors = [
        NodeError::WrongOwner { partition: 1 },
        NodeError::NotLeader {
            partition: 1,
            leader_hint: Some(2),
        },
        NodeError::StaleEpoch {
            partition: 1,
            current_epoch: 3,
        },
        NodeError::Dynamo {
            type_name: "ConditionalCheckFailedException".into(),
            message: "The conditional request failed".into(),
            item: Some(vec![1, 0, 0, 0, 0]),
        },
        NodeError::Busy { partition: 1 },
        NodeError::Malformed {
            message: "bad".into(),
        },
        NodeError::Internal {
            message: "io".into(),
        },
        NodeError::NotApplied {
            message: "lost its slot".into(),
        },
        NodeError::OutcomeUnknown {
            message: "leadership changed".into(),
        },
    ];
    for (index, error) in errors.into_iter().enumerate() {
        messages.push(BusMessage::Response(ResponseFrame {
            request_id: 200 + index as u64,
            response: NodeResponse::Error(error),
        }));
    }
    let results = [
        ItemResult::Write { attributes: None },
        ItemResult::Write {
            attributes: Some(vec![1, 0, 0, 0, 0]),
        },
        ItemResult::BatchWrite,
        ItemResult::Get { item: None },
        ItemResult::Get {
            item: Some(vec![1, 0, 0, 0, 0]),
        },
        ItemResult::BatchGet {
            items: vec![vec![1, 0, 0, 0, 0], vec![1, 1, 0, 0, 0]],
        },
        ItemResult::Range {
            items: vec![vec![1, 0, 0, 0, 0]],
            count: 1,
            scanned_count: 3,
            scanned_bytes: 120,
            last_evaluated_key: Some(vec![1, 0, 0, 0, 0]),
        },
        ItemResult::WriteInCollection {
            attributes: Some(vec![1, 0, 0, 0, 0]),
            collection_key: vec![1, 1, 0, 0, 0],
            collection_bytes: 10 << 30,
            index_write_units_milli: vec![1000, 0, 2000],
        },
        ItemResult::BatchWriteInCollections {
            collections: vec![CollectionSize {
                key: vec![1, 1, 0, 0, 0],
                bytes: 4096,
            }],
        },
    ];
    for (index, result) in results.into_iter().enumerate() {
        messages.push(BusMessage::Response(ResponseFrame {
            request_id: 300 + index as u64,
            response: NodeResponse::Item {
                result,
                read_units_milli: 500,
                write_units_milli: 0,
            },
        }));
    }
    messages
}
