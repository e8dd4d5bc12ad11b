//! Conversions between the replication core's types and their wire mirrors (shoal-wire), and
//! the validated rkyv codec of the records this crate journals.

use shoal_replication::{Ballot, LogEntry, Membership, Message, NodeId, Payload, Slot};
use shoal_wire::messages::{
    BallotWire, LogEntryWire, MembershipWire, PayloadWire, PersistRecord, ReplicationMessageWire,
};

pub fn ballot_to_wire(ballot: Ballot) -> BallotWire {
    BallotWire {
        round: ballot.round,
        node: ballot.node.0,
    }
}

pub fn ballot_from_wire(ballot: &BallotWire) -> Ballot {
    Ballot {
        round: ballot.round,
        node: NodeId(ballot.node),
    }
}

pub fn membership_to_wire(membership: &Membership) -> MembershipWire {
    MembershipWire {
        full_replicas: membership.full_replicas.iter().map(|node| node.0).collect(),
        log_replicas: membership.log_replicas.iter().map(|node| node.0).collect(),
    }
}

pub fn membership_from_wire(membership: &MembershipWire) -> Membership {
    Membership::new(
        membership.full_replicas.iter().copied().map(NodeId),
        membership.log_replicas.iter().copied().map(NodeId),
    )
}

pub fn entry_to_wire(entry: &LogEntry) -> LogEntryWire {
    LogEntryWire {
        ballot: ballot_to_wire(entry.ballot),
        payload: match &entry.payload {
            Payload::Noop => PayloadWire::Noop,
            Payload::Command(bytes) => PayloadWire::Command(bytes.clone()),
            Payload::Membership(membership) => {
                PayloadWire::Membership(membership_to_wire(membership))
            }
        },
    }
}

pub fn entry_from_wire(entry: &LogEntryWire) -> LogEntry {
    LogEntry {
        ballot: ballot_from_wire(&entry.ballot),
        payload: match &entry.payload {
            PayloadWire::Noop => Payload::Noop,
            PayloadWire::Command(bytes) => Payload::Command(bytes.clone()),
            PayloadWire::Membership(membership) => {
                Payload::Membership(membership_from_wire(membership))
            }
        },
    }
}

fn entries_to_wire(entries: &[(Slot, LogEntry)]) -> Vec<(u64, LogEntryWire)> {
    entries
        .iter()
        .map(|(slot, entry)| (slot.0, entry_to_wire(entry)))
        .collect()
}

fn entries_from_wire(entries: &[(u64, LogEntryWire)]) -> Vec<(Slot, LogEntry)> {
    entries
        .iter()
        .map(|(slot, entry)| (Slot(*slot), entry_from_wire(entry)))
        .collect()
}

pub fn message_to_wire(message: &Message) -> ReplicationMessageWire {
    match message {
        Message::PreCheck { round } => ReplicationMessageWire::PreCheck { round: *round },
        Message::PreCheckReply { round, granted } => ReplicationMessageWire::PreCheckReply {
            round: *round,
            granted: *granted,
        },
        Message::Prepare { ballot, from_slot } => ReplicationMessageWire::Prepare {
            ballot: ballot_to_wire(*ballot),
            from_slot: from_slot.0,
        },
        Message::Promise {
            ballot,
            log_first_slot,
            accepted,
            lease_wait_nanos,
        } => ReplicationMessageWire::Promise {
            ballot: ballot_to_wire(*ballot),
            log_first_slot: log_first_slot.0,
            accepted: entries_to_wire(accepted),
            lease_wait_nanos: *lease_wait_nanos,
        },
        Message::Accept {
            ballot,
            round,
            first_slot,
            entries,
            commit_slot,
        } => ReplicationMessageWire::Accept {
            ballot: ballot_to_wire(*ballot),
            round: *round,
            first_slot: first_slot.0,
            entries: entries.iter().map(entry_to_wire).collect(),
            commit_slot: commit_slot.0,
        },
        Message::Accepted {
            ballot,
            round,
            match_slot,
            missing,
        } => ReplicationMessageWire::Accepted {
            ballot: ballot_to_wire(*ballot),
            round: *round,
            match_slot: match_slot.0,
            missing: *missing,
        },
        Message::Rejected { promised } => ReplicationMessageWire::Rejected {
            promised: ballot_to_wire(*promised),
        },
    }
}

pub fn message_from_wire(message: &ReplicationMessageWire) -> Message {
    match message {
        ReplicationMessageWire::PreCheck { round } => Message::PreCheck { round: *round },
        ReplicationMessageWire::PreCheckReply { round, granted } => Message::PreCheckReply {
            round: *round,
            granted: *granted,
        },
        ReplicationMessageWire::Prepare { ballot, from_slot } => Message::Prepare {
            ballot: ballot_from_wire(ballot),
            from_slot: Slot(*from_slot),
        },
        ReplicationMessageWire::Promise {
            ballot,
            log_first_slot,
            accepted,
            lease_wait_nanos,
        } => Message::Promise {
            ballot: ballot_from_wire(ballot),
            log_first_slot: Slot(*log_first_slot),
            accepted: entries_from_wire(accepted),
            lease_wait_nanos: *lease_wait_nanos,
        },
        ReplicationMessageWire::Accept {
            ballot,
            round,
            first_slot,
            entries,
            commit_slot,
        } => Message::Accept {
            ballot: ballot_from_wire(ballot),
            round: *round,
            first_slot: Slot(*first_slot),
            entries: entries.iter().map(entry_from_wire).collect(),
            commit_slot: Slot(*commit_slot),
        },
        ReplicationMessageWire::Accepted {
            ballot,
            round,
            match_slot,
            missing,
        } => Message::Accepted {
            ballot: ballot_from_wire(ballot),
            round: *round,
            match_slot: Slot(*match_slot),
            missing: *missing,
        },
        ReplicationMessageWire::Rejected { promised } => Message::Rejected {
            promised: ballot_from_wire(promised),
        },
    }
}

pub fn persist_record_entries(record: &PersistRecord) -> Vec<(Slot, LogEntry)> {
    entries_from_wire(&record.entries)
}

pub fn persist_record(
    group: u64,
    promised: Option<Ballot>,
    entries: &[(Slot, LogEntry)],
) -> PersistRecord {
    PersistRecord {
        group,
        promised: promised.map(ballot_to_wire),
        entries: entries_to_wire(entries),
        checkpoint: None,
    }
}

/// The WAL record body of a [`PersistRecord`]: its rkyv archive.
pub fn encode_record(record: &PersistRecord) -> Vec<u8> {
    match rkyv::to_bytes::<rkyv::rancor::Error>(record) {
        Ok(bytes) => bytes.to_vec(),
        // Serialising plain owned data into a growable buffer has no failure mode but memory.
        Err(error) => shoal_io::fatal!("cannot archive a WAL record: {error}"),
    }
}

/// Decodes and validates a record body read back from the WAL (after its crc32c passed).
pub fn decode_record(bytes: &[u8]) -> Option<PersistRecord> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<PersistRecord, rkyv::rancor::Error>(&aligned).ok()
}
