//! The MultiPaxos core of a Shoal replication group, written sans-IO.
//!
//! A [`Replica`] is a plain state machine: the host (a shard, the simulator, a test) feeds it
//! inputs with the current monotonic time and executes the [`Action`]s it returns, in order. The
//! core never reads a clock, a random source, a socket or a disk, and never spawns anything. The
//! protocol is described in README.md next to this file.
//!
//! # The durability rule
//! Every `Persist` action carries an [`Lsn`]. Replies that report persisted state (Promise,
//! Accepted) are held inside the core until the host reports, through [`Replica::persisted`],
//! that every write up to that lsn is durable. The host may therefore run `Persist` through an
//! asynchronous group commit and send every `Send` as soon as it sees it. A leader counts its own
//! copy of an entry towards a quorum only once it is durable, too. [`Replica::recover`] keeps,
//! for each slot, the durable entry with the highest ballot (of equal ballots, the later write),
//! whatever order the writes come in, so a host may drop writes that newer writes superseded.
//!
//! # Invariants
//! The asserts in this crate cite these numbers; the test harness checks I1, I3, I4, I6 and I7
//! across the whole group after every step.
//! - I1: at most one value is ever chosen (committed anywhere) for a slot.
//! - I2: a replica never accepts or promises a ballot lower than one it promised, and a promise or
//!   accepted entry is durable before any message that reports it leaves the replica.
//! - I3: at most one replica leads a given ballot, and a leader proposes at most one value per
//!   slot within its ballot.
//! - I4: a leader commits a slot only when a majority of the membership governing that slot has
//!   durably accepted it in the leader's ballot; so committed entries are on a quorum.
//! - I5: a follower commits only up to its match slot, the prefix of its log known to equal its
//!   current leader's log.
//! - I6: a log replica never campaigns, never leads and never applies.
//! - I7: at any instant of true time at most one replica can serve strong reads, and it has
//!   applied every write acknowledged anywhere. A leader serves them only after committing an
//!   entry of its own ballot, after every lease an older leader could hold has expired, and
//!   before `send time of a quorum-acknowledged round + lease duration - clock drift bound`; and
//!   it commits (so acknowledges) nothing before every older lease has expired, since the older
//!   leader may still serve reads that must not miss an acknowledged write.
//! - I8: membership changes one member at a time; a leader holds at most one uncommitted
//!   membership entry and appends nothing after it until it commits.
//! - I9: the log is contiguous from its first slot, and the commit slot never passes its end.

pub mod limits;
mod log;
pub mod message;
pub mod replica;
pub mod types;

#[cfg(test)]
mod harness;

pub use message::{Action, Message, RoleKind};
pub use replica::{
    FRESH_GROUP_ELECTION_TIMEOUT_DIVISOR, OptionsError, ProposeError, Proposed,
    QUIESCED_FOLLOWER_WAKE_ELECTION_TIMEOUTS, RecoveredState, RecoveryError, Replica, ReplicaKind,
    ReplicaOptions, StrongReadRefusal,
};
pub use types::{
    Ballot, LogEntry, Lsn, Membership, MembershipChange, MembershipError, MonotonicTime, NodeId,
    Payload, Slot, SnapshotMeta,
};
