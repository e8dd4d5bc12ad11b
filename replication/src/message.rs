//! What replicas say to each other and what the core asks its host to do.

use crate::types::{Ballot, LogEntry, Lsn, NodeId, Slot};

/// A message between replicas of one group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Message {
    /// "Is the leader really gone?" Sent by a full replica whose election timer expired, before
    /// it touches any ballot. `round` is the round the sender would campaign in.
    PreCheck { round: u64 },
    /// The answer: granted when the replier has not heard from a leader for a whole minimum
    /// election timeout.
    PreCheckReply { round: u64, granted: bool },
    /// Phase 1a: promise not to accept lower ballots, and report every accepted entry from
    /// `from_slot` on (the candidate's commit index plus one). `lease_released`: the ballot of
    /// the leader that handed over to this candidate (`TimeoutNow`); that leader stepped down
    /// before it asked, so it serves no read under its lease any more, and a promiser whose
    /// last lease support was for that ballot reports no wait.
    Prepare {
        ballot: Ballot,
        from_slot: Slot,
        lease_released: Option<Ballot>,
    },
    /// Phase 1b. `log_first_slot` lets the candidate see that the replier truncated entries it
    /// would need. `lease_wait_nanos` is how long, on the replier's clock, an old leader's lease
    /// that the replier supported may still run.
    Promise {
        ballot: Ballot,
        log_first_slot: Slot,
        accepted: Vec<(Slot, LogEntry)>,
        lease_wait_nanos: u64,
    },
    /// Phase 2a, pipelined. `entries[i]` goes in slot `first_slot + i`. An Accept with no entries
    /// is the heartbeat. Every Accept carries the leader's commit index (commit notification) and
    /// the heartbeat round whose send time starts the lease it renews.
    Accept {
        ballot: Ballot,
        round: u64,
        first_slot: Slot,
        entries: Vec<LogEntry>,
        commit_slot: Slot,
    },
    /// A heartbeat of an idle group that also asks the follower to quiesce: a follower whose
    /// log matches the leader's through `first_slot - 1` with everything committed stops its
    /// election timer until the leader speaks again, its host reports the leader's node
    /// unreachable, or the leader's node asks for a pre-check (it restarted). Answered with
    /// `Accepted` like any Accept. Only sent when [`crate::ReplicaOptions::quiesce`] is on.
    Quiesce {
        ballot: Ballot,
        round: u64,
        first_slot: Slot,
        commit_slot: Slot,
    },
    /// Phase 2b. `match_slot`: every slot up to here holds the leader's value, durably.
    /// `missing`: the Accept started after `match_slot + 1`, so the leader should resend from
    /// there.
    Accepted {
        ballot: Ballot,
        round: u64,
        match_slot: Slot,
        missing: bool,
    },
    /// The sender has promised a higher ballot; the receiver's Prepare or Accept lost.
    Rejected { promised: Ballot },
    /// From the leader at `ballot`, which just stepped down (its own removal committed, or it
    /// transfers its leadership), to the member it hands over to: campaign now, without a
    /// pre-check and without waiting for this leader's lease, which ended when it stepped down.
    /// `commit_slot` is the leader's commit: the member obeys only if its log matches the
    /// leader's through it, and commits it first, so that its `Prepare` asks from past it (the
    /// others may have truncated below it once they applied a removal).
    TimeoutNow { ballot: Ballot, commit_slot: Slot },
}

/// What the host should do, in order.
///
/// The durability rule: a `Send` never depends on a `Persist` the host has not finished. The core
/// holds back every reply that reports persisted state (Promise, Accepted) until the host calls
/// [`crate::Replica::persisted`] with an lsn at or past the write it depends on. So the host may
/// execute `Persist` asynchronously (group commit) and every `Send` immediately.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Make these durable, then report `persisted(lsn)`. Entries are written as given; on
    /// recovery the write of a slot with the highest ballot wins, of equal ballots the later
    /// one (which is the last write whenever every write is kept; see `RecoveredState`).
    /// `promised`, when present, is the new promised ballot.
    Persist {
        lsn: Lsn,
        promised: Option<Ballot>,
        entries: Vec<(Slot, LogEntry)>,
    },
    Send {
        to: NodeId,
        message: Message,
    },
    /// Apply these committed entries to the state machine, in order (full replicas only).
    Apply {
        entries: Vec<(Slot, LogEntry)>,
    },
    /// The follower `to` needs entries this leader already truncated: ship it the latest
    /// checkpoint. Its host calls `snapshot_installed` once the snapshot is durable there.
    SendSnapshot {
        to: NodeId,
    },
    /// This replica may serve strong reads from now on, until `LeaseLost` (or until
    /// `can_serve_strong_read` says otherwise; the events only report changes seen at inputs).
    LeaseAcquired,
    LeaseLost,
    /// This replica became leader, candidate or follower of `ballot`.
    RoleChanged {
        role: RoleKind,
        ballot: Ballot,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoleKind {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}
