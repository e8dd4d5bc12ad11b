//! Measures the cost of encoding and decoding bus frames (serialize + crc32c, and crc32c +
//! bytecheck validation + deserialize). Run with
//! `cargo run --release -p shoal-wire --example frame_cost`.

use std::hint::black_box;
use std::time::Instant;

use shoal_wire::messages::*;
use shoal_wire::{decode_frame, encode_frame};

fn heartbeat(group: u64) -> ReplicationEnvelope {
    ReplicationEnvelope {
        group,
        from: 1,
        to: 2,
        message: ReplicationMessageWire::Accept {
            ballot: BallotWire { round: 3, node: 1 },
            round: 77,
            first_slot: 1000,
            entries: Vec::new(),
            commit_slot: 999,
        },
    }
}

fn accept(entries: usize, command_bytes: usize) -> ReplicationEnvelope {
    ReplicationEnvelope {
        group: 9,
        from: 1,
        to: 2,
        message: ReplicationMessageWire::Accept {
            ballot: BallotWire { round: 3, node: 1 },
            round: 77,
            first_slot: 1000,
            entries: vec![
                LogEntryWire {
                    ballot: BallotWire { round: 3, node: 1 },
                    payload: PayloadWire::Command(vec![0x5A; command_bytes]),
                };
                entries
            ],
            commit_slot: 999,
        },
    }
}

fn measure(name: &str, message: &BusMessage) {
    let frame = encode_frame(message).expect("encode");
    let iterations = (200_000_000 / (frame.len() + 1000)).clamp(50, 1_000_000);
    let started = Instant::now();
    for _ in 0..iterations {
        black_box(encode_frame(black_box(message)).expect("encode"));
    }
    let encode_ns = started.elapsed().as_nanos() as f64 / iterations as f64;
    let started = Instant::now();
    for _ in 0..iterations {
        black_box(decode_frame(black_box(&frame)).expect("decode"));
    }
    let decode_ns = started.elapsed().as_nanos() as f64 / iterations as f64;
    println!(
        "{name:<34} {:>9} B  encode {:>10.0} ns ({:>6.0} MB/s)  decode {:>10.0} ns ({:>6.0} MB/s)",
        frame.len(),
        encode_ns,
        frame.len() as f64 / encode_ns * 1e3,
        decode_ns,
        frame.len() as f64 / decode_ns * 1e3,
    );
}

fn main() {
    measure(
        "hello",
        &BusMessage::Hello {
            from: ShardAddress { node: 1, shard: 2 },
        },
    );
    measure("1 heartbeat", &BusMessage::Replication(vec![heartbeat(1)]));
    measure(
        "64 heartbeats (64 groups)",
        &BusMessage::Replication((0..64).map(heartbeat).collect()),
    );
    measure(
        "accept 1 x 1 KiB",
        &BusMessage::Replication(vec![accept(1, 1024)]),
    );
    measure(
        "accept 64 x 4 KiB",
        &BusMessage::Replication(vec![accept(64, 4096)]),
    );
    measure(
        "accept 64 x 404 KiB (largest)",
        &BusMessage::Replication(vec![accept(64, 400 * 1024 + 4096)]),
    );
}
