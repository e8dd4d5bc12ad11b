//! Conversions between the wire mirror types and the replication core's types.
//!
//! Core to wire is infallible. Wire to core is `TryFrom`: a membership on the wire is two plain
//! lists, and the core's `Membership` is two sets, so a list that is not strictly increasing, or
//! a node listed as both a full and a log replica, or more members than the core allows, is
//! refused instead of being silently repaired (a peer that sends one has a bug we want to see).

use std::fmt;

use shoal_replication::limits::MEMBERS_MAX;
use shoal_replication::{
    Ballot, LogEntry, Membership, MembershipChange, Message, NodeId, Payload, Slot,
};

use crate::messages::{
    BallotWire, LogEntryWire, MembershipChangeWire, MembershipWire, PayloadWire, PersistRecord,
    ReplicationMessageWire,
};

/// Why a wire value has no core counterpart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionError {
    /// A membership list is not strictly increasing (unsorted or with a duplicate).
    MembershipNotSorted,
    /// A node appears as both a full and a log replica.
    MembershipOverlap { node: u64 },
    /// More members than `shoal_replication::limits::MEMBERS_MAX`.
    TooManyMembers { count: usize },
    /// A membership step's bytes do not follow FORMAT.md ("Membership steps").
    MembershipStepMalformed,
}

impl fmt::Display for ConversionError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConversionError::MembershipNotSorted => {
                write!(formatter, "membership list is not strictly increasing")
            }
            ConversionError::MembershipOverlap { node } => {
                write!(formatter, "node {node} is both a full and a log replica")
            }
            ConversionError::TooManyMembers { count } => {
                write!(
                    formatter,
                    "{count} members exceed the limit of {MEMBERS_MAX}"
                )
            }
            ConversionError::MembershipStepMalformed => {
                write!(formatter, "membership step bytes are malformed")
            }
        }
    }
}

impl std::error::Error for ConversionError {}

impl From<Ballot> for BallotWire {
    fn from(ballot: Ballot) -> Self {
        BallotWire {
            round: ballot.round,
            node: ballot.node.0,
        }
    }
}

impl From<BallotWire> for Ballot {
    fn from(ballot: BallotWire) -> Self {
        Ballot {
            round: ballot.round,
            node: NodeId(ballot.node),
        }
    }
}

impl From<&Membership> for MembershipWire {
    fn from(membership: &Membership) -> Self {
        // BTreeSet iterates in increasing order, which is the wire's sorted-list rule.
        MembershipWire {
            full_replicas: membership.full_replicas.iter().map(|node| node.0).collect(),
            log_replicas: membership.log_replicas.iter().map(|node| node.0).collect(),
        }
    }
}

impl From<Membership> for MembershipWire {
    fn from(membership: Membership) -> Self {
        MembershipWire::from(&membership)
    }
}

fn strictly_increasing(nodes: &[u64]) -> bool {
    nodes.windows(2).all(|pair| pair[0] < pair[1])
}

impl From<MembershipChangeWire> for MembershipChange {
    fn from(change: MembershipChangeWire) -> Self {
        match change {
            MembershipChangeWire::AddFullReplica(node) => {
                MembershipChange::AddFullReplica(NodeId(node))
            }
            MembershipChangeWire::Remove(node) => MembershipChange::Remove(NodeId(node)),
        }
    }
}

impl TryFrom<&MembershipWire> for Membership {
    type Error = ConversionError;

    fn try_from(membership: &MembershipWire) -> Result<Self, Self::Error> {
        if !strictly_increasing(&membership.full_replicas)
            || !strictly_increasing(&membership.log_replicas)
        {
            return Err(ConversionError::MembershipNotSorted);
        }
        let count = membership.full_replicas.len() + membership.log_replicas.len();
        if count > MEMBERS_MAX {
            return Err(ConversionError::TooManyMembers { count });
        }
        if let Some(node) = membership
            .log_replicas
            .iter()
            .find(|node| membership.full_replicas.binary_search(node).is_ok())
        {
            return Err(ConversionError::MembershipOverlap { node: *node });
        }
        Ok(Membership::new(
            membership.full_replicas.iter().map(|node| NodeId(*node)),
            membership.log_replicas.iter().map(|node| NodeId(*node)),
        ))
    }
}

impl TryFrom<MembershipWire> for Membership {
    type Error = ConversionError;

    fn try_from(membership: MembershipWire) -> Result<Self, Self::Error> {
        Membership::try_from(&membership)
    }
}

/// Appends `membership` in the layout of FORMAT.md ("Membership steps"): the full replicas'
/// count and the log replicas' count (u16 little-endian each), then every id (u64
/// little-endian), full replicas first, each list ascending.
fn encode_membership(membership: &Membership, bytes: &mut Vec<u8>) {
    // A membership holds at most MEMBERS_MAX (far below u16::MAX) nodes: `try_from` refuses more.
    for count in [
        membership.full_replicas.len(),
        membership.log_replicas.len(),
    ] {
        bytes.extend_from_slice(&u16::try_from(count).unwrap_or(u16::MAX).to_le_bytes());
    }
    for node in membership
        .full_replicas
        .iter()
        .chain(membership.log_replicas.iter())
    {
        bytes.extend_from_slice(&node.0.to_le_bytes());
    }
}

/// Reads one membership of [`encode_membership`]'s layout from the front of `bytes`.
fn decode_membership(bytes: &mut &[u8]) -> Result<Membership, ConversionError> {
    let mut take = |count: usize| -> Result<&[u8], ConversionError> {
        if bytes.len() < count {
            return Err(ConversionError::MembershipStepMalformed);
        }
        let (head, rest) = bytes.split_at(count);
        *bytes = rest;
        Ok(head)
    };
    let mut count = || -> Result<usize, ConversionError> {
        let raw = take(2)?;
        Ok(usize::from(u16::from_le_bytes([raw[0], raw[1]])))
    };
    let (full, log) = (count()?, count()?);
    if full + log > MEMBERS_MAX {
        return Err(ConversionError::TooManyMembers { count: full + log });
    }
    let mut ids = |count: usize| -> Result<Vec<u64>, ConversionError> {
        (0..count)
            .map(|_| {
                let raw = take(8)?;
                let mut id = [0u8; 8];
                id.copy_from_slice(raw);
                Ok(u64::from_le_bytes(id))
            })
            .collect()
    };
    let wire = MembershipWire {
        full_replicas: ids(full)?,
        log_replicas: ids(log)?,
    };
    Membership::try_from(&wire)
}

/// A membership step's bytes (FORMAT.md, "Membership steps"): `base_slot` (u64
/// little-endian), `base`, then `next`.
pub fn encode_membership_step(base_slot: Slot, base: &Membership, next: &Membership) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(16 + (base.member_count() + next.member_count()) * 8);
    bytes.extend_from_slice(&base_slot.0.to_le_bytes());
    encode_membership(base, &mut bytes);
    encode_membership(next, &mut bytes);
    bytes
}

/// The `(base_slot, base, next)` of a membership step's bytes; anything left over is
/// malformed.
pub fn decode_membership_step(
    bytes: &[u8],
) -> Result<(Slot, Membership, Membership), ConversionError> {
    let (slot, mut rest) = bytes
        .split_first_chunk::<8>()
        .ok_or(ConversionError::MembershipStepMalformed)?;
    let base_slot = Slot(u64::from_le_bytes(*slot));
    let base = decode_membership(&mut rest)?;
    let next = decode_membership(&mut rest)?;
    if !rest.is_empty() {
        return Err(ConversionError::MembershipStepMalformed);
    }
    Ok((base_slot, base, next))
}

impl From<Payload> for PayloadWire {
    fn from(payload: Payload) -> Self {
        match payload {
            Payload::Noop => PayloadWire::Noop,
            Payload::Command(bytes) => PayloadWire::Command(bytes),
            Payload::Membership(membership) => PayloadWire::Membership(membership.into()),
            Payload::MembershipStep {
                base_slot,
                base,
                next,
            } => PayloadWire::MembershipStep(encode_membership_step(base_slot, &base, &next)),
        }
    }
}

impl TryFrom<PayloadWire> for Payload {
    type Error = ConversionError;

    fn try_from(payload: PayloadWire) -> Result<Self, Self::Error> {
        Ok(match payload {
            PayloadWire::Noop => Payload::Noop,
            PayloadWire::Command(bytes) => Payload::Command(bytes),
            PayloadWire::Membership(membership) => Payload::Membership(membership.try_into()?),
            PayloadWire::MembershipStep(bytes) => {
                let (base_slot, base, next) = decode_membership_step(&bytes)?;
                Payload::MembershipStep {
                    base_slot,
                    base,
                    next,
                }
            }
        })
    }
}

impl From<LogEntry> for LogEntryWire {
    fn from(entry: LogEntry) -> Self {
        LogEntryWire {
            ballot: entry.ballot.into(),
            payload: entry.payload.into(),
        }
    }
}

impl TryFrom<LogEntryWire> for LogEntry {
    type Error = ConversionError;

    fn try_from(entry: LogEntryWire) -> Result<Self, Self::Error> {
        Ok(LogEntry {
            ballot: entry.ballot.into(),
            payload: entry.payload.try_into()?,
        })
    }
}

fn slotted_entries_to_wire(entries: Vec<(Slot, LogEntry)>) -> Vec<(u64, LogEntryWire)> {
    entries
        .into_iter()
        .map(|(slot, entry)| (slot.0, entry.into()))
        .collect()
}

fn slotted_entries_from_wire(
    entries: Vec<(u64, LogEntryWire)>,
) -> Result<Vec<(Slot, LogEntry)>, ConversionError> {
    entries
        .into_iter()
        .map(|(slot, entry)| Ok((Slot(slot), entry.try_into()?)))
        .collect()
}

impl From<Message> for ReplicationMessageWire {
    fn from(message: Message) -> Self {
        match message {
            Message::PreCheck { round } => ReplicationMessageWire::PreCheck { round },
            Message::PreCheckReply { round, granted } => {
                ReplicationMessageWire::PreCheckReply { round, granted }
            }
            Message::Prepare {
                ballot,
                from_slot,
                lease_released: None,
            } => ReplicationMessageWire::Prepare {
                ballot: ballot.into(),
                from_slot: from_slot.0,
            },
            Message::Prepare {
                ballot,
                from_slot,
                lease_released: Some(released),
            } => ReplicationMessageWire::PrepareAfterHandover {
                ballot: ballot.into(),
                from_slot: from_slot.0,
                lease_released: released.into(),
            },
            Message::TimeoutNow {
                ballot,
                commit_slot,
            } => ReplicationMessageWire::TimeoutNow {
                ballot: ballot.into(),
                commit_slot: commit_slot.0,
            },
            Message::Promise {
                ballot,
                log_first_slot,
                accepted,
                lease_wait_nanos,
            } => ReplicationMessageWire::Promise {
                ballot: ballot.into(),
                log_first_slot: log_first_slot.0,
                accepted: slotted_entries_to_wire(accepted),
                lease_wait_nanos,
            },
            Message::Accept {
                ballot,
                round,
                first_slot,
                entries,
                commit_slot,
            } => ReplicationMessageWire::Accept {
                ballot: ballot.into(),
                round,
                first_slot: first_slot.0,
                entries: entries.into_iter().map(LogEntryWire::from).collect(),
                commit_slot: commit_slot.0,
            },
            Message::Accepted {
                ballot,
                round,
                match_slot,
                missing,
            } => ReplicationMessageWire::Accepted {
                ballot: ballot.into(),
                round,
                match_slot: match_slot.0,
                missing,
            },
            Message::Rejected { promised } => ReplicationMessageWire::Rejected {
                promised: promised.into(),
            },
            Message::Quiesce {
                ballot,
                round,
                first_slot,
                commit_slot,
            } => ReplicationMessageWire::Quiesce {
                ballot: ballot.into(),
                round,
                first_slot: first_slot.0,
                commit_slot: commit_slot.0,
            },
        }
    }
}

impl TryFrom<ReplicationMessageWire> for Message {
    type Error = ConversionError;

    fn try_from(message: ReplicationMessageWire) -> Result<Self, Self::Error> {
        Ok(match message {
            ReplicationMessageWire::PreCheck { round } => Message::PreCheck { round },
            ReplicationMessageWire::PreCheckReply { round, granted } => {
                Message::PreCheckReply { round, granted }
            }
            ReplicationMessageWire::Prepare { ballot, from_slot } => Message::Prepare {
                ballot: ballot.into(),
                from_slot: Slot(from_slot),
                lease_released: None,
            },
            ReplicationMessageWire::PrepareAfterHandover {
                ballot,
                from_slot,
                lease_released,
            } => Message::Prepare {
                ballot: ballot.into(),
                from_slot: Slot(from_slot),
                lease_released: Some(lease_released.into()),
            },
            ReplicationMessageWire::TimeoutNow {
                ballot,
                commit_slot,
            } => Message::TimeoutNow {
                ballot: ballot.into(),
                commit_slot: Slot(commit_slot),
            },
            ReplicationMessageWire::Promise {
                ballot,
                log_first_slot,
                accepted,
                lease_wait_nanos,
            } => Message::Promise {
                ballot: ballot.into(),
                log_first_slot: Slot(log_first_slot),
                accepted: slotted_entries_from_wire(accepted)?,
                lease_wait_nanos,
            },
            ReplicationMessageWire::Accept {
                ballot,
                round,
                first_slot,
                entries,
                commit_slot,
            } => Message::Accept {
                ballot: ballot.into(),
                round,
                first_slot: Slot(first_slot),
                entries: entries
                    .into_iter()
                    .map(LogEntry::try_from)
                    .collect::<Result<_, _>>()?,
                commit_slot: Slot(commit_slot),
            },
            ReplicationMessageWire::Accepted {
                ballot,
                round,
                match_slot,
                missing,
            } => Message::Accepted {
                ballot: ballot.into(),
                round,
                match_slot: Slot(match_slot),
                missing,
            },
            ReplicationMessageWire::Rejected { promised } => Message::Rejected {
                promised: promised.into(),
            },
            ReplicationMessageWire::Quiesce {
                ballot,
                round,
                first_slot,
                commit_slot,
            } => Message::Quiesce {
                ballot: ballot.into(),
                round,
                first_slot: Slot(first_slot),
                commit_slot: Slot(commit_slot),
            },
        })
    }
}

impl ReplicationMessageWire {
    /// An Accept with no entries, or a Quiesce: the leader's heartbeat. A newer heartbeat of
    /// the same group between the same replicas supersedes an older one (it carries a later
    /// round and a commit index at least as high, and says whether the leader still asks to
    /// quiesce), which lets the bus coalesce queued heartbeats.
    pub fn is_heartbeat(&self) -> bool {
        matches!(self, ReplicationMessageWire::Accept { entries, .. } if entries.is_empty())
            || matches!(self, ReplicationMessageWire::Quiesce { .. })
    }

    /// A cheap upper estimate of this message's archived size in bytes, for batching decisions
    /// (the exact size is known only after serializing).
    pub fn encoded_bytes_estimate(&self) -> usize {
        // Fixed fields, enum tag and padding of one message; per entry: ballot, slot, payload
        // tag and vector header, rounded up generously.
        const MESSAGE_FIXED_BYTES: usize = 96;
        const ENTRY_FIXED_BYTES: usize = 64;
        let entry_bytes = |entry: &LogEntryWire| {
            ENTRY_FIXED_BYTES
                + match &entry.payload {
                    PayloadWire::Noop => 0,
                    PayloadWire::Command(bytes) => bytes.len(),
                    PayloadWire::Membership(membership) => {
                        (membership.full_replicas.len() + membership.log_replicas.len()) * 8
                    }
                    PayloadWire::MembershipStep(bytes) => bytes.len(),
                }
        };
        MESSAGE_FIXED_BYTES
            + match self {
                ReplicationMessageWire::Promise { accepted, .. } => {
                    accepted.iter().map(|(_, entry)| entry_bytes(entry)).sum()
                }
                ReplicationMessageWire::Accept { entries, .. } => {
                    entries.iter().map(entry_bytes).sum()
                }
                _ => 0,
            }
    }
}

impl PersistRecord {
    /// The record of one `Action::Persist` of group `group` (without a checkpoint intent).
    pub fn from_persist_action(
        group: u64,
        promised: Option<Ballot>,
        entries: Vec<(Slot, LogEntry)>,
    ) -> PersistRecord {
        PersistRecord {
            group,
            promised: promised.map(BallotWire::from),
            entries: slotted_entries_to_wire(entries),
            checkpoint: None,
        }
    }

    /// The promised ballot and the entries, as the core's types (for WAL recovery).
    #[allow(clippy::type_complexity)]
    pub fn to_core(&self) -> Result<(Option<Ballot>, Vec<(Slot, LogEntry)>), ConversionError> {
        Ok((
            self.promised.map(Ballot::from),
            slotted_entries_from_wire(self.entries.clone())?,
        ))
    }
}
