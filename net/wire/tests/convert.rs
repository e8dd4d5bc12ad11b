//! Conversions between wire mirror types and the replication core, and the WAL record body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use proptest::collection::vec;
use proptest::prelude::*;
use shoal_replication::{Ballot, LogEntry, Membership, Message, NodeId, Payload, Slot};
use shoal_wire::messages::*;
use shoal_wire::*;

#[test]
fn membership_lists_must_be_sorted_disjoint_and_small() {
    let wire = |full: &[u64], log: &[u64]| MembershipWire {
        full_replicas: full.to_vec(),
        log_replicas: log.to_vec(),
    };
    assert_eq!(
        Membership::try_from(wire(&[2, 1], &[])),
        Err(ConversionError::MembershipNotSorted)
    );
    assert_eq!(
        Membership::try_from(wire(&[1, 1], &[])),
        Err(ConversionError::MembershipNotSorted)
    );
    assert_eq!(
        Membership::try_from(wire(&[1, 2], &[2])),
        Err(ConversionError::MembershipOverlap { node: 2 })
    );
    assert_eq!(
        Membership::try_from(wire(&[1, 2, 3, 4, 5], &[6, 7, 8])),
        Err(ConversionError::TooManyMembers { count: 8 })
    );
    assert_eq!(
        Membership::try_from(wire(&[1, 3], &[2])).unwrap(),
        Membership::new([NodeId(1), NodeId(3)], [NodeId(2)])
    );
    // An invalid membership inside a message fails the whole message.
    let message = ReplicationMessageWire::Accept {
        ballot: BallotWire { round: 1, node: 1 },
        round: 1,
        first_slot: 1,
        entries: vec![LogEntryWire {
            ballot: BallotWire { round: 1, node: 1 },
            payload: PayloadWire::Membership(wire(&[3, 1], &[])),
        }],
        commit_slot: 0,
    };
    assert_eq!(
        Message::try_from(message),
        Err(ConversionError::MembershipNotSorted)
    );
}

/// FORMAT.md, "Membership steps": the bytes of a step, byte for byte, and what is refused.
#[test]
fn membership_steps_have_the_documented_bytes_and_malformed_ones_are_refused() {
    let base = Membership::new([NodeId(1), NodeId(2)], []);
    let next = Membership::new([NodeId(1), NodeId(2)], [NodeId(7)]);
    let bytes = encode_membership_step(Slot(0x0102), &base, &next);
    let mut expected = vec![2, 1, 0, 0, 0, 0, 0, 0];
    expected.extend([2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend([2, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend([7, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(bytes, expected);
    assert_eq!(
        decode_membership_step(&bytes),
        Ok((Slot(0x0102), base, next))
    );
    assert_eq!(
        decode_membership_step(&bytes[..bytes.len() - 1]),
        Err(ConversionError::MembershipStepMalformed)
    );
    assert_eq!(
        decode_membership_step(&bytes[..5]),
        Err(ConversionError::MembershipStepMalformed)
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        decode_membership_step(&trailing),
        Err(ConversionError::MembershipStepMalformed)
    );
    // Ids out of order inside a step are refused like those of a plain membership.
    let mut unsorted = vec![0u8; 8];
    unsorted.extend([2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        decode_membership_step(&unsorted),
        Err(ConversionError::MembershipNotSorted)
    );
    let too_many = [0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0];
    assert_eq!(
        decode_membership_step(&too_many),
        Err(ConversionError::TooManyMembers { count: 9 })
    );
}

#[test]
fn heartbeats_are_recognised() {
    assert!(common::heartbeat(1, 1).message.is_heartbeat());
    let accept_with_entry = Message::Accept {
        ballot: Ballot::ZERO,
        round: 1,
        first_slot: Slot(1),
        entries: vec![LogEntry {
            ballot: Ballot::ZERO,
            payload: Payload::Noop,
        }],
        commit_slot: Slot(0),
    };
    assert!(!ReplicationMessageWire::from(accept_with_entry).is_heartbeat());
    assert!(!ReplicationMessageWire::PreCheck { round: 1 }.is_heartbeat());
}

#[test]
fn garbage_persist_records_are_refused() {
    assert!(decode_persist_record(&[]).is_err());
    assert!(decode_persist_record(&[0xFF; 100]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn core_messages_survive_the_wire(message in common::core_message()) {
        let wire = ReplicationMessageWire::from(message.clone());
        prop_assert_eq!(Message::try_from(wire).unwrap(), message);
    }

    #[test]
    fn core_messages_survive_a_frame(message in common::core_message()) {
        let envelope = ReplicationEnvelope { group: 1, from: 2, to: 3, message: message.clone().into() };
        let frame = encode_frame(&BusMessage::Replication(vec![envelope])).unwrap();
        let BusMessage::Replication(mut batch) = decode_frame(&frame).unwrap().0 else {
            panic!("not a replication frame");
        };
        let envelope = batch.pop().unwrap();
        prop_assert_eq!(Message::try_from(envelope.message).unwrap(), message);
    }

    #[test]
    fn persist_records_round_trip(
        group in any::<u64>(),
        promised in proptest::option::of(common::ballot()),
        entries in vec((any::<u64>(), common::log_entry()), 0..6),
        checkpoint in proptest::option::of((any::<u64>(), common::membership())),
        misalignment in 0usize..16,
    ) {
        let entries: Vec<(Slot, LogEntry)> =
            entries.into_iter().map(|(slot, entry)| (Slot(slot), entry)).collect();
        let mut record = PersistRecord::from_persist_action(group, promised, entries.clone());
        record.checkpoint = checkpoint.map(|(slot, membership)| CheckpointIntent {
            last_included_slot: slot,
            membership: membership.into(),
        });
        let bytes = encode_persist_record(&record);
        // A WAL read buffer gives no alignment at a record's offset.
        let mut buffer = vec![0u8; misalignment];
        buffer.extend_from_slice(&bytes);
        let decoded = decode_persist_record(&buffer[misalignment..]).unwrap();
        prop_assert_eq!(&decoded, &record);
        prop_assert_eq!(decoded.to_core().unwrap(), (promised, entries));
    }

    #[test]
    fn corrupt_persist_records_never_panic(
        entries in vec((any::<u64>(), common::log_entry()), 0..3),
        position in any::<usize>(),
        xor in 1u8..=255,
    ) {
        let entries = entries.into_iter().map(|(slot, entry)| (Slot(slot), entry)).collect();
        let record = PersistRecord::from_persist_action(1, None, entries);
        let mut bytes = encode_persist_record(&record);
        let index = position % bytes.len();
        bytes[index] ^= xor;
        // Either refused, or (a flip inside a payload byte) a different valid record; the WAL
        // record's own crc32c is what detects that case.
        let _ = decode_persist_record(&bytes);
    }
}
