//! Golden bytes of format version 1. If one of these tests fails, the wire or WAL format
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

/// A Hello frame: header (magic "SHL1", version 1, kind 5, body length 88, body crc32c,
/// reserved zero, header crc32c), then the archived enum (tag 4 = Hello, padding, node, shard,
/// zero padding up to the size of the largest variant).
const HELLO_FRAME: &str = "
    53484c31 0100 0500 58000000 0f5461e6 000000000000000000000000 dbe15730
    040000000000000008070605040302010b0a0000000000000000000000000000
    0000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000";

const HEARTBEAT_FRAME: &str = "
    53484c31 0100 0100 a8000000 5ee70939 000000000000000000000000 66dcbd2f
    0700000000000000010000000000000002000000000000000400000000000000
    0300000000000000010000000000000009000000000000006400000000000000
    c0ffffff00000000630000000000000000000000acffffff0100000000000000
    0000000000000000000000000000000000000000000000000000000000000000
    0000000000000000000000000000000000000000000000000000000000000000
    0000000000000000";

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
