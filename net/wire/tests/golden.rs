//! Golden bytes of format version 2 (the bodies are unchanged since version 1). If one of these tests fails, the wire or WAL format
//! changed: bump `FRAME_FORMAT_VERSION` (or the WAL record kind) and update FORMAT.md, then the
//! fixtures. Never just regenerate them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use shoal_wire::messages::*;
use shoal_wire::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    let text: String = text.split_whitespace().collect();
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap())
        .collect()
}

fn hello() -> BusMessage {
    BusMessage::Hello {
        from: ShardAddress {
            node: 0x0102_0304_0506_0708,
            shard: 0x0A0B,
        },
    }
}

fn heartbeat_batch() -> BusMessage {
    BusMessage::Replication(vec![ReplicationEnvelope {
        group: 7,
        from: 1,
        to: 2,
        message: ReplicationMessageWire::Accept {
            ballot: BallotWire { round: 3, node: 1 },
            round: 9,
            first_slot: 100,
            entries: Vec::new(),
            commit_slot: 99,
        },
    }])
}

fn persist_record() -> PersistRecord {
    PersistRecord {
        group: 7,
        promised: Some(BallotWire { round: 3, node: 1 }),
        entries: vec![(
            100,
            LogEntryWire {
                ballot: BallotWire { round: 3, node: 1 },
                payload: PayloadWire::Command(b"put".to_vec()),
            },
        )],
        checkpoint: None,
    }
}

/// A Hello frame: header (magic "SHL1", version 3, kind 5, body length 96, body crc32c,
/// reserved zero, header crc32c), then the archived enum (tag 4 = Hello, padding, node, shard,
/// zero padding up to the size of the largest variant).
const HELLO_FRAME: &str = "
    53484c31 0300 0500 60000000 6bc6bac1 000000000000000000000000 8b778005
    040000000000000008070605040302010b0a0000000000000000000000000000
    0000000000000000000000000000000000000000000000000000000000000000
    0000000000000000000000000000000000000000000000000000000000000000";

const HEARTBEAT_FRAME: &str = "
    53484c31 0300 0100 b0000000 f0f5adaa 000000000000000000000000 dfab2322
    0700000000000000010000000000000002000000000000000400000000000000
    0300000000000000010000000000000009000000000000006400000000000000
    c0ffffff00000000630000000000000000000000acffffff0100000000000000
    0000000000000000000000000000000000000000000000000000000000000000
    0000000000000000000000000000000000000000000000000000000000000000
    00000000000000000000000000000000";

const PERSIST_RECORD: &str = "
    7075740000000000640000000000000003000000000000000100000000000000
    01000000dcffffff030000000000000000000000000000000700000000000000
    010000000000000003000000000000000100000000000000b0ffffff01000000
    0000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn frames_encode_to_the_golden_bytes() {
    assert_eq!(
        hex(&encode_frame(&hello()).unwrap()),
        hex(&unhex(HELLO_FRAME))
    );
    assert_eq!(
        hex(&encode_frame(&heartbeat_batch()).unwrap()),
        hex(&unhex(HEARTBEAT_FRAME))
    );
}

#[test]
fn golden_frames_decode() {
    assert_eq!(decode_frame(&unhex(HELLO_FRAME)).unwrap().0, hello());
    assert_eq!(
        decode_frame(&unhex(HEARTBEAT_FRAME)).unwrap().0,
        heartbeat_batch()
    );
}

#[test]
fn the_persist_record_encodes_to_the_golden_bytes_and_back() {
    assert_eq!(
        hex(&encode_persist_record(&persist_record())),
        hex(&unhex(PERSIST_RECORD))
    );
    assert_eq!(
        decode_persist_record(&unhex(PERSIST_RECORD)).unwrap(),
        persist_record()
    );
}

/// A shard's answer `Error(Internal { message: "io" })` to request 5: tag 3 = Response, the
/// request id, tag 3 = Error, tag 6 = Internal, the two-byte string stored inline (0xff
/// marks the unused inline bytes). Pinned before `NotApplied` and `OutcomeUnknown` were added
/// after `Internal`, to show that adding variants at the end leaves every existing frame as
/// it was.
const INTERNAL_ERROR_FRAME: &str = "
    53484c31 0300 0400 60000000 ae398a41 000000000000000000000000 f4a68d7b
    03000000000000000500000000000000030000000000000006000000696fffff
    ffffffff00000000000000000000000000000000000000000000000000000000
    0000000000000000000000000000000000000000000000000000000000000000";

fn error_response(error: NodeError) -> BusMessage {
    BusMessage::Response(ResponseFrame {
        request_id: 5,
        response: NodeResponse::Error(error),
    })
}

#[test]
fn an_error_answer_has_the_golden_bytes() {
    let internal = error_response(NodeError::Internal {
        message: "io".to_string(),
    });
    assert_eq!(
        hex(&encode_frame(&internal).unwrap()),
        hex(&unhex(INTERNAL_ERROR_FRAME))
    );
    assert_eq!(
        decode_frame(&unhex(INTERNAL_ERROR_FRAME)).unwrap().0,
        internal
    );
}

/// The variants added at the end take the next tags (7 and 8) and the same frame size: the
/// same bytes as `Internal` but for the tag.
#[test]
fn the_error_kinds_added_later_take_the_next_tags() {
    let golden = unhex(INTERNAL_ERROR_FRAME);
    let body_at = FRAME_HEADER_BYTES;
    // Body offset of the NodeError tag: Response tag (8 with padding), request id (8),
    // Error tag (8 with padding).
    let error_tag_at = body_at + 24;
    assert_eq!(golden[error_tag_at], 6);
    for (error, tag) in [
        (
            NodeError::NotApplied {
                message: "io".to_string(),
            },
            7u8,
        ),
        (
            NodeError::OutcomeUnknown {
                message: "io".to_string(),
            },
            8u8,
        ),
    ] {
        let frame = encode_frame(&error_response(error.clone())).unwrap();
        assert_eq!(frame.len(), golden.len(), "{error:?}");
        assert_eq!(frame[error_tag_at], tag, "{error:?}");
        assert_eq!(
            frame[error_tag_at + 1..],
            golden[error_tag_at + 1..],
            "{error:?}"
        );
        assert_eq!(decode_frame(&frame).unwrap().0, error_response(error));
    }
}

/// `ItemResult::WriteInCollection` was added at the end: it must not grow the archived enum, so
/// every result an older writer sends keeps its bytes ("Variants added at the end").
#[test]
fn the_result_added_later_keeps_the_archived_size() {
    assert_eq!(
        std::mem::size_of::<ArchivedItemResult>(),
        ARCHIVED_ITEM_RESULT_BYTES
    );
}

/// The archived size of `ItemResult` before `WriteInCollection`, measured on that version.
const ARCHIVED_ITEM_RESULT_BYTES: usize = 56;

/// `ReplicationMessageWire::Quiesce` was added at the end (idle groups quiesce, issue 19): it
/// takes the next tag (7) and does not grow the archived enum, so a batch of one Quiesce is the
/// size of the golden heartbeat batch and every message an older writer sends keeps its bytes.
#[test]
fn the_replication_message_added_later_takes_the_next_tag_and_keeps_the_size() {
    let quiesce = BusMessage::Replication(vec![ReplicationEnvelope {
        group: 7,
        from: 1,
        to: 2,
        message: ReplicationMessageWire::Quiesce {
            ballot: BallotWire { round: 3, node: 1 },
            round: 9,
            first_slot: 100,
            commit_slot: 99,
        },
    }]);
    let frame = encode_frame(&quiesce).unwrap();
    let golden = unhex(HEARTBEAT_FRAME);
    assert_eq!(frame.len(), golden.len());
    // Body offset of the message tag: group, from and to (8 bytes each).
    let message_tag_at = FRAME_HEADER_BYTES + 24;
    assert_eq!(golden[message_tag_at], 4, "Accept");
    assert_eq!(frame[message_tag_at], 7, "Quiesce");
    assert_eq!(decode_frame(&frame).unwrap().0, quiesce);
}

/// `ReplicationMessageWire::TimeoutNow` and `PrepareAfterHandover` were added at the end
/// (leadership hand-over, issue 19): tags 8 and 9, the archived enum no larger, and a Prepare
/// without a released lease still encoded as the old variant, byte for byte.
#[test]
fn the_hand_over_messages_added_later_take_the_next_tags() {
    use shoal_replication::{Ballot, Message, NodeId, Slot};
    let envelope = |message: Message| {
        BusMessage::Replication(vec![ReplicationEnvelope {
            group: 9,
            from: 1,
            to: 2,
            message: message.into(),
        }])
    };
    let ballot = Ballot {
        round: 7,
        node: NodeId(1),
    };
    let message_tag_at = FRAME_HEADER_BYTES + 24;
    for (message, tag) in [
        (
            Message::TimeoutNow {
                ballot,
                commit_slot: Slot(5),
            },
            8u8,
        ),
        (
            Message::Prepare {
                ballot,
                from_slot: Slot(5),
                lease_released: Some(ballot),
            },
            9,
        ),
        (
            Message::Prepare {
                ballot,
                from_slot: Slot(5),
                lease_released: None,
            },
            2,
        ),
    ] {
        let frame = encode_frame(&envelope(message.clone())).unwrap();
        assert_eq!(
            frame.len(),
            unhex(HEARTBEAT_FRAME).len(),
            "the archived size"
        );
        assert_eq!(frame[message_tag_at], tag, "{message:?}");
        let BusMessage::Replication(envelopes) = decode_frame(&frame).unwrap().0 else {
            panic!("not a replication frame");
        };
        assert_eq!(
            Message::try_from(envelopes[0].message.clone()).unwrap(),
            message
        );
    }
}

/// `NodeRequest::JoinPartition` and `ChangeMembership` and `NodeResponse::Membership` were added
/// at the end (replica set changes, issue 19): they take the next tags and do not grow the
/// archived enums, so every request and answer an older writer sends keeps its bytes.
#[test]
fn the_membership_requests_added_later_take_the_next_tags_and_keep_the_sizes() {
    use shoal_wire::messages::{
        ArchivedNodeRequest, ArchivedNodeResponse, FollowerMatchWire, KeySchemaWire, KeyTypeWire,
        MembershipChangeWire, MembershipWire, NodeRequest,
    };
    assert_eq!(
        std::mem::size_of::<ArchivedNodeRequest>(),
        ARCHIVED_NODE_REQUEST_BYTES
    );
    assert_eq!(
        std::mem::size_of::<ArchivedNodeResponse>(),
        ARCHIVED_NODE_RESPONSE_BYTES
    );
    for (request, tag) in [
        (
            NodeRequest::JoinPartition {
                partition: 9,
                epoch: 1,
                key_schema: KeySchemaWire {
                    partition_key: ("pk".to_string(), KeyTypeWire::String),
                    sort_key: None,
                },
            },
            4u8,
        ),
        (
            NodeRequest::ChangeMembership {
                partition: 9,
                epoch: 1,
                change: MembershipChangeWire::Remove(3),
            },
            5u8,
        ),
    ] {
        assert_request_tag(request, tag);
    }
    let answer = BusMessage::Response(ResponseFrame {
        request_id: 1,
        response: NodeResponse::Membership {
            membership: MembershipWire {
                full_replicas: vec![2, 3, 4],
                log_replicas: vec![],
            },
            commit_slot: 77,
            followers: vec![FollowerMatchWire {
                node: 4,
                match_slot: 70,
            }],
        },
    });
    let frame = encode_frame(&answer).unwrap();
    assert_eq!(frame[inner_tag_at(&frame)], 5, "Membership");
    assert_eq!(decode_frame(&frame).unwrap().0, answer);
}

/// `NodeRequest::ClusterNodes` and its answer (node join, issue 19), then
/// `NodeRequest::TransferLeadership` (leader balance), `NodeRequest::SplitPartition` (splits)
/// and `NodeRequest::Loads` with its answer (split for traffic), were added at the end: the
/// next tags, and the archived enums keep their sizes.
#[test]
fn the_cluster_nodes_request_added_later_takes_the_next_tag_and_keeps_the_sizes() {
    use shoal_wire::messages::{
        ArchivedNodeRequest, ArchivedNodeResponse, NodeAddressWire, NodeRequest,
    };
    assert_eq!(
        std::mem::size_of::<ArchivedNodeRequest>(),
        ARCHIVED_NODE_REQUEST_BYTES
    );
    assert_eq!(
        std::mem::size_of::<ArchivedNodeResponse>(),
        ARCHIVED_NODE_RESPONSE_BYTES
    );
    for (request, tag) in [
        (NodeRequest::ClusterNodes, 6u8),
        (
            NodeRequest::TransferLeadership {
                partition: 9,
                epoch: 1,
                to: 4,
            },
            7,
        ),
        (
            NodeRequest::SplitPartition {
                partition: 9,
                epoch: 1,
                at_hash: 1 << 63,
                left: shoal_wire::messages::SplitChildWire {
                    partition: 10,
                    epoch: 2,
                },
                right: shoal_wire::messages::SplitChildWire {
                    partition: 11,
                    epoch: 2,
                },
            },
            8,
        ),
        (NodeRequest::Loads, 9),
    ] {
        assert_request_tag(request, tag);
    }
    let loads = BusMessage::Response(ResponseFrame {
        request_id: 2,
        response: NodeResponse::Loads {
            node: 3,
            shard: 1,
            replicas: vec![shoal_wire::messages::ReplicaLoad {
                partition: 9,
                epoch: 2,
                read_milli_per_second: 2_500_000,
                write_milli_per_second: 900_000,
                samples: 512,
                cut: Some(1 << 62),
                top_key_permille: 40,
            }],
        },
    });
    let frame = encode_frame(&loads).unwrap();
    assert_eq!(frame[inner_tag_at(&frame)], 7, "Loads");
    assert_eq!(decode_frame(&frame).unwrap().0, loads);
    let answer = BusMessage::Response(ResponseFrame {
        request_id: 1,
        response: NodeResponse::ClusterNodes {
            nodes: vec![
                NodeAddressWire {
                    node: 1,
                    address: "127.0.0.1:7000".to_string(),
                },
                NodeAddressWire {
                    node: 6,
                    address: "[::1]:7100".to_string(),
                },
            ],
        },
    });
    let frame = encode_frame(&answer).unwrap();
    assert_eq!(frame[inner_tag_at(&frame)], 6, "ClusterNodes");
    assert_eq!(decode_frame(&frame).unwrap().0, answer);
}

/// The archived sizes of `NodeRequest` and `NodeResponse` before the membership requests,
/// measured on that version.
const ARCHIVED_NODE_REQUEST_BYTES: usize = 72;
const ARCHIVED_NODE_RESPONSE_BYTES: usize = 80;

/// Where the `NodeRequest` or `NodeResponse` tag of a request or response frame sits: rkyv puts
/// the root object last, after what it points to, and the inner tag follows the BusMessage tag
/// (8 bytes with padding) and the request id (8).
fn inner_tag_at(frame: &[u8]) -> usize {
    frame.len() - std::mem::size_of::<ArchivedBusMessage>() + 16
}

/// A request frame round-trips and its `NodeRequest` takes tag `tag`.
fn assert_request_tag(request: shoal_wire::messages::NodeRequest, tag: u8) {
    use shoal_wire::messages::RequestFrame;
    let message = BusMessage::Request(RequestFrame {
        request_id: 1,
        request,
    });
    let frame = encode_frame(&message).unwrap();
    assert_eq!(frame[inner_tag_at(&frame)], tag, "{message:?}");
    assert_eq!(decode_frame(&frame).unwrap().0, message);
}
