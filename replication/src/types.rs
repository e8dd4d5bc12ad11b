//! The values the protocol talks about: nodes, slots, ballots, log entries, time, membership.

use std::collections::BTreeSet;

/// A storage node's identity. Every replica of a partition lives on a distinct node, so within
/// one replication group a node id names exactly one replica.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

/// A position in the replicated log. Slot 0 is "before the first entry": the first real entry
/// lives in slot 1, so `Slot(0)` is a valid commit index for an empty log.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(pub u64);

impl Slot {
    pub const ZERO: Slot = Slot(0);

    pub const fn next(self) -> Slot {
        Slot(self.0 + 1)
    }

    /// The slot before this one; `Slot(0)` stays `Slot(0)`.
    pub const fn previous(self) -> Slot {
        Slot(self.0.saturating_sub(1))
    }
}

/// A Paxos ballot. Ordered by round first and node second, so two candidates never share a
/// ballot and every ballot has exactly one node allowed to lead it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    /// The ballot every replica has promised before it has heard of any candidate.
    pub const ZERO: Ballot = Ballot {
        round: 0,
        node: NodeId(0),
    };
}

/// A persistence sequence number: the core numbers every `Persist` action it emits, and the host
/// reports durability with "persisted through lsn". Numbering writes rather than slots makes an
/// overwrite of a slot (a new ballot re-accepting it) unambiguous.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// Nanoseconds on the host's monotonic clock: the dependency-free type shared with the IO seam
/// (the core must build and be model checked without glommio or any IO crate).
pub use shoal_time::MonotonicTime;
pub(crate) use shoal_time::duration_nanos;

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Payload {
    /// Written by a new leader to close the slots it found empty and to commit an entry in its own
    /// ballot before it serves strong reads.
    Noop,
    /// An opaque command for the host's state machine (an encoded write record).
    Command(Vec<u8>),
    /// The group's next membership, unconditionally. It governs every slot after its own once
    /// it is committed. Written by builds before [`Payload::MembershipStep`]; still read from
    /// their logs.
    Membership(Membership),
    /// One membership step proposed on `base`, the membership the leader had committed then,
    /// set by the membership entry at `base_slot` (0: the group's initial membership). Once
    /// committed it takes effect, governing every slot after its own, only if the membership
    /// governing its own slot was set at `base_slot` (and is `base`); otherwise it is void, a
    /// no-op. A step accepted in a ballot that lost can be re-proposed by a later leader's
    /// phase 1 after other steps committed below it; unconditional, it would then undo them
    /// (simulator seed 23061: a stale "add" re-proposed after a removal brought the removed,
    /// deleted replica back). The base is named by its slot, not only by its value, because a
    /// membership can come back to an earlier value (add a node, then remove it): a stale step
    /// on that value must stay void. `Action::Apply` hands it over as it is: the host decides it
    /// the same way ([`Payload::membership_after`]).
    MembershipStep {
        base_slot: Slot,
        base: Membership,
        next: Membership,
    },
}

impl Payload {
    /// Bytes this payload holds in memory, for the log's memory limit.
    pub fn size_bytes(&self) -> usize {
        let members = |membership: &Membership| {
            (membership.full_replicas.len() + membership.log_replicas.len()) * 8
        };
        match self {
            Payload::Noop => 0,
            Payload::Command(bytes) => bytes.len(),
            Payload::Membership(membership) => members(membership),
            Payload::MembershipStep { base, next, .. } => 8 + members(base) + members(next),
        }
    }

    /// The membership this entry would move the group to, whether it takes effect or not: for
    /// the checks that must hold under every membership an entry could set (phase 1's quorums,
    /// one uncommitted change at a time).
    pub fn membership_next(&self) -> Option<&Membership> {
        match self {
            Payload::Membership(next) | Payload::MembershipStep { next, .. } => Some(next),
            Payload::Noop | Payload::Command(_) => None,
        }
    }

    /// The membership after this entry when `governing`, set by the membership entry at
    /// `config_slot`, governs its slot: its `next` if it is a membership entry that takes
    /// effect, `None` if it is none or is void.
    pub fn membership_after(
        &self,
        governing: &Membership,
        config_slot: Slot,
    ) -> Option<&Membership> {
        match self {
            Payload::Membership(next) => Some(next),
            Payload::MembershipStep {
                base_slot,
                base,
                next,
            } if *base_slot == config_slot && base == governing => Some(next),
            Payload::MembershipStep { .. } | Payload::Noop | Payload::Command(_) => None,
        }
    }
}

/// One accepted log entry: the value and the ballot under which this replica accepted it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogEntry {
    pub ballot: Ballot,
    pub payload: Payload,
}

impl LogEntry {
    /// Whether this durable write of a slot takes the place of `earlier`, a write of the same
    /// slot that came before it, when a replica rebuilds its log from its durable writes: the
    /// higher accepted ballot wins, and of two writes in the same ballot the later one.
    ///
    /// A live replica only ever overwrites a slot with an equal or higher ballot (I2), so this
    /// is what write order gives when every write is still there. It stays true when the host
    /// has dropped older writes that a newer write of the same slot superseded: the writes
    /// that remain may then hold a slot above slots whose only remaining writes come later
    /// (README, "The durability rule"), and only a rule that does not need the writes in
    /// order recovers that log.
    pub fn replaces_at_recovery(&self, earlier: &LogEntry) -> bool {
        self.ballot >= earlier.ballot
    }
}

/// The members of a replication group. Full replicas hold applied state and may lead; log
/// replicas only accept and persist entries. Both count in every quorum.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Membership {
    pub full_replicas: BTreeSet<NodeId>,
    pub log_replicas: BTreeSet<NodeId>,
}

/// One step of a membership change. Changes move one member at a time so that any majority of
/// the old membership intersects any majority of the new one (README, "Membership change").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MembershipChange {
    AddFullReplica(NodeId),
    AddLogReplica(NodeId),
    Remove(NodeId),
}

impl Membership {
    pub fn new(
        full_replicas: impl IntoIterator<Item = NodeId>,
        log_replicas: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        Self {
            full_replicas: full_replicas.into_iter().collect(),
            log_replicas: log_replicas.into_iter().collect(),
        }
    }

    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.full_replicas
            .iter()
            .chain(self.log_replicas.iter())
            .copied()
    }

    pub fn member_count(&self) -> usize {
        self.full_replicas.len() + self.log_replicas.len()
    }

    pub fn contains(&self, node: NodeId) -> bool {
        self.full_replicas.contains(&node) || self.log_replicas.contains(&node)
    }

    pub fn is_full_replica(&self, node: NodeId) -> bool {
        self.full_replicas.contains(&node)
    }

    pub fn is_log_replica(&self, node: NodeId) -> bool {
        self.log_replicas.contains(&node)
    }

    /// The smallest number of members that forms a majority.
    pub fn quorum_size(&self) -> usize {
        self.member_count() / 2 + 1
    }

    /// Whether the members for which `agrees` holds form a majority.
    pub fn is_quorum(&self, agrees: impl Fn(NodeId) -> bool) -> bool {
        self.members().filter(|node| agrees(*node)).count() >= self.quorum_size()
    }

    /// The membership after `change`, or why the change is not a single-member step.
    pub fn apply(&self, change: MembershipChange) -> Result<Membership, MembershipError> {
        let mut next = self.clone();
        match change {
            MembershipChange::AddFullReplica(node) => {
                if self.contains(node) {
                    return Err(MembershipError::AlreadyMember(node));
                }
                next.full_replicas.insert(node);
            }
            MembershipChange::AddLogReplica(node) => {
                if self.contains(node) {
                    return Err(MembershipError::AlreadyMember(node));
                }
                next.log_replicas.insert(node);
            }
            MembershipChange::Remove(node) => {
                if !self.contains(node) {
                    return Err(MembershipError::NotMember(node));
                }
                next.full_replicas.remove(&node);
                next.log_replicas.remove(&node);
                if next.full_replicas.is_empty() {
                    return Err(MembershipError::NoFullReplicaLeft);
                }
            }
        }
        if next.member_count() > crate::limits::MEMBERS_MAX {
            return Err(MembershipError::TooManyMembers);
        }
        Ok(next)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipError {
    AlreadyMember(NodeId),
    NotMember(NodeId),
    NoFullReplicaLeft,
    TooManyMembers,
}

/// What a snapshot (a checkpoint of the host's applied state) covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    /// Every entry up to and including this slot is reflected in the snapshot.
    pub last_included_slot: Slot,
    /// The committed membership as of `last_included_slot`.
    pub membership: Membership,
    /// The slot of the membership entry that set `membership` (0: the group's initial one):
    /// what a [`Payload::MembershipStep`] names as its base.
    pub config_slot: Slot,
}
