//! One replica of one replication group: the MultiPaxos state machine.
//!
//! Every input (`tick`, `handle_message`, `propose`, `persisted`, `snapshot_installed`,
//! `checkpointed`) takes the current monotonic time and returns the actions the host must carry
//! out, in order. The invariants cited as "I<n>" are listed in the crate documentation.

// The election jitter source: SplitMix64 stepped over state the replica owns, so the core reads
// no RNG and a seed replays the same timeouts forever.
use shoal_rng::splitmix64 as split_mix_64;
use std::collections::{BTreeMap, BTreeSet, VecDeque, btree_map};
use std::time::Duration;

use crate::limits::{
    ACCEPT_BATCH_BYTES_MAX, ACCEPT_BATCH_ENTRIES_MAX, COMMAND_BYTES_MAX,
    FOLLOWER_IN_FLIGHT_SLOTS_MAX, HELD_REPLIES_MAX, IN_FLIGHT_SLOTS_MAX, LEASE_ROUNDS_TRACKED_MAX,
    LOG_BYTES_IN_MEMORY_MAX, LOG_ENTRIES_IN_MEMORY_MAX,
};
use crate::log::Log;
use crate::message::{Action, Message, RoleKind};
use crate::types::{
    Ballot, LogEntry, Lsn, Membership, MembershipChange, MembershipError, MonotonicTime, NodeId,
    Payload, Slot, SnapshotMeta, duration_nanos,
};

/// Whether a replica keeps applied state and may lead, or only keeps the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplicaKind {
    Full,
    /// Accepts and persists entries and counts in quorums, but never campaigns, never leads and
    /// never applies (I6).
    Log,
}

/// Timing and seeding of one replica. All durations are on the host's monotonic clock.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReplicaOptions {
    pub kind: ReplicaKind,
    /// The shortest election timeout. A replica grants a pre-check only if it has not heard from
    /// a leader for this long.
    pub election_timeout_min: Duration,
    /// Election timeouts are drawn uniformly from `[min, min + jitter)`.
    pub election_timeout_jitter: Duration,
    pub heartbeat_interval: Duration,
    /// How often a leader with nothing to replicate heartbeats: every entry committed and
    /// every follower matching the log's end (`Replica::idle`). Heartbeats then only renew the
    /// lease and keep followers from campaigning, so an idle group may send fewer (issue 19:
    /// 1,000 idle partitions spent most of a node's idle CPU on heartbeats). Any proposal ends
    /// the idle spell: it goes out at once, and rounds return to `heartbeat_interval` until the
    /// group is idle again. Must lie in `[heartbeat_interval, election_timeout_min)` and below
    /// `lease_duration - clock_drift_max`, or an idle leader's lease would lapse between rounds.
    pub idle_heartbeat_interval: Duration,
    /// Whether an idle leader quiesces its group: it sends `Message::Quiesce` rounds until every
    /// follower acknowledged one, then sends nothing until something happens (a proposal,
    /// [`Replica::wake`] for a strong read, a pre-check, a follower's node reachable again).
    /// Quiesced followers stop their election timers; their host must then report the leader's
    /// node unreachable ([`Replica::peer_unreachable`]) for them to campaign. A quiesced
    /// leader's lease lapses; the host wakes it before a strong read. Issue 19: a node's idle
    /// partitions must cost next to nothing.
    pub quiesce: bool,
    /// How long a follower's acknowledgement supports the leader's lease, measured on the
    /// follower's clock from when it processed the Accept.
    pub lease_duration: Duration,
    /// The most that two replicas' clocks may disagree about the length of an interval no longer
    /// than `lease_duration`. Leases are shortened by this much, and a new leader waits this much
    /// longer than the old lease's supporters report.
    pub clock_drift_max: Duration,
    /// How long a leader waits before asking its host again to ship a snapshot to a follower.
    pub snapshot_retry_interval: Duration,
    /// Seeds the election timeout jitter. The core never reads a random source; each replica
    /// should get a different seed (the host draws it from its seeded RNG).
    pub election_seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionsError {
    /// Heartbeats must come well within an election timeout or followers would campaign against
    /// a healthy leader.
    HeartbeatNotBelowElectionTimeout,
    /// The idle interval must be no shorter than the busy one, shorter than an election timeout,
    /// and shorter than a lease net of drift (else an idle leader's lease lapses between rounds).
    IdleHeartbeatOutOfRange,
    /// A lease shorter than the drift bound would never be valid.
    LeaseNotLongerThanDrift,
    ZeroElectionJitter,
}

impl ReplicaOptions {
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.heartbeat_interval >= self.election_timeout_min {
            return Err(OptionsError::HeartbeatNotBelowElectionTimeout);
        }
        if self.lease_duration <= self.clock_drift_max {
            return Err(OptionsError::LeaseNotLongerThanDrift);
        }
        if self.idle_heartbeat_interval < self.heartbeat_interval
            || self.idle_heartbeat_interval >= self.election_timeout_min
            || self.idle_heartbeat_interval >= self.lease_duration - self.clock_drift_max
        {
            return Err(OptionsError::IdleHeartbeatOutOfRange);
        }
        if self.election_timeout_jitter.is_zero() {
            return Err(OptionsError::ZeroElectionJitter);
        }
        Ok(())
    }
}

/// What a replica recovers from its durable state after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredState {
    /// The highest ballot promised in any durable write. Recovery raises it to the highest
    /// ballot of `entries`: accepting an entry promises its ballot, and a host may have dropped
    /// the write that carried the promise once newer writes held every slot it needs.
    pub promised: Ballot,
    /// The checkpoint the host's applied state (or, for a log replica, its truncation point)
    /// reflects.
    pub snapshot: SnapshotMeta,
    /// The durable writes of entries, in the order they were persisted. They may hold one slot
    /// several times and need not be in slot order: recovery keeps, for each slot after the
    /// snapshot, the entry with the highest ballot, and of equal ballots the later one
    /// ([`LogEntry::replaces_at_recovery`]); entries at or before the snapshot are ignored. Only
    /// the kept entries must be contiguous from the slot after the snapshot on.
    pub entries: Vec<(Slot, LogEntry)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryError {
    /// The kept entries (one per slot, see [`RecoveredState::entries`]) skip a slot after
    /// `after`. The core only ever persists contiguous runs, and a host may drop a write only
    /// once a newer write of the same slot is durable, so this is a lost write, and the
    /// replica must be rebuilt from a snapshot instead.
    LogGap {
        after: Slot,
    },
    Options(OptionsError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader {
        leader_hint: Option<NodeId>,
    },
    /// The leader has not yet committed an entry of its own ballot.
    LeaderNotReady,
    /// Too many uncommitted entries, or the log needs a checkpoint before it can grow.
    Backpressure,
    /// A membership change is not committed yet; nothing goes after it until it is (I8).
    MembershipChangeInProgress,
    CommandTooLarge {
        size_bytes: usize,
    },
    Membership(MembershipError),
}

/// A proposal the leader put in its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposed {
    pub slot: Slot,
    pub actions: Vec<Action>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrongReadRefusal {
    /// Ask the hinted node instead (if any).
    NotLeader { leader_hint: Option<NodeId> },
    /// This replica leads but may not serve strong reads yet or any more: its lease lapsed, an
    /// old leader's lease may still run, or it has not committed an entry of its own ballot.
    LeaseNotHeld,
}

/// How many minimum election timeouts a leader may go without answers from a quorum before it
/// steps down. More than one: answers wait for the followers' durable writes, and a new leader's
/// first answers come only after phase 2 reaches them through lossy links.
const QUORUM_SILENCE_ELECTION_TIMEOUTS: u32 = 3;

/// The timer of a quiesced leader: never (it sends no heartbeat); only an input wakes it.
const NEVER: MonotonicTime = MonotonicTime::from_nanos(u64::MAX);

/// A quiesced follower wakes on its own after this many minimum election timeouts and runs its
/// election timer again: a backstop for a leader gone without its node going silent (a node
/// that restarted with that replica out of service, a leader that removed itself from the
/// group and stepped down with followers quiesced). If the leader is there, the follower's
/// pre-check wakes it and the group quiesces again: a few messages per group per backstop.
pub const QUIESCED_FOLLOWER_WAKE_ELECTION_TIMEOUTS: u32 = 30;

/// A replica that has never promised a ballot nor heard from a leader (a new group's, before
/// its first election) waits this many times less than its election timeout (minimum and
/// jitter alike) before a pre-check, and again after each pre-check that found no quorum.
/// There is no leader to wait for, so the full timeout (1 to 2 s with `shoal node`'s
/// default) only delayed a new table's first request: DynamoDB serves a table as soon as it
/// is ACTIVE. The pre-check stays, so a replica added to a running group cannot disrupt it,
/// and the first promise or leader contact restores the full timeout, so replicas cannot
/// keep racing each other on the short one. Only timing changes; safety never depends on it.
pub const FRESH_GROUP_ELECTION_TIMEOUT_DIVISOR: u32 = 10;
const _: () = assert!(FRESH_GROUP_ELECTION_TIMEOUT_DIVISOR >= 1);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FollowerProgress {
    /// Every slot up to here is durably the leader's value on the follower.
    match_slot: Slot,
    /// The next slot to send.
    next_slot: Slot,
    acked_round: u64,
    /// When an answer from this follower to our ballot last arrived (on our clock): the leader
    /// steps down when fewer than a quorum answered within an election timeout (`tick`).
    heard_at: Option<MonotonicTime>,
    /// The commit slot our last message to this follower carried: a group is idle only once
    /// every follower was told the last commit (`Replica::idle`).
    commit_sent: Slot,
    snapshot_sent_at: Option<MonotonicTime>,
    /// When a `missing` reply last made us resend from the follower's match slot. Resending at
    /// most once per heartbeat interval keeps reordered batches (each answered `missing`) from
    /// multiplying into a retransmission storm.
    rewound_at: Option<MonotonicTime>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LeaderState {
    ballot: Ballot,
    /// The no-op this leader appended after phase 1. Committing it commits everything before it.
    first_slot_of_ballot: Slot,
    progress: BTreeMap<NodeId, FollowerProgress>,
    /// The leader's own entries are durable through here.
    own_durable_slot: Slot,
    /// Persist lsns issued while leading, with the last slot each wrote.
    durable_marks: VecDeque<(Lsn, Slot)>,
    round: u64,
    round_send_times: VecDeque<(u64, MonotonicTime)>,
    lease_until: Option<MonotonicTime>,
    strong_reads_not_before: MonotonicTime,
    heartbeat_deadline: MonotonicTime,
    /// When this leadership began or last woke from quiescence: the quorum check in `tick`
    /// waits an election timeout from here before it may step down.
    elected_at: MonotonicTime,
    /// The first round of the current idle spell that asked followers to quiesce: once every
    /// follower acknowledged it (or a later one) matching our log's end, the leader quiesces.
    quiesce_from_round: Option<u64>,
    /// A leadership transfer under way ([`Replica::transfer_leadership`]).
    transfer: Option<Transfer>,
}

/// A leadership transfer under way at a leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Transfer {
    to: NodeId,
    /// When to give up and lead on.
    give_up_at: MonotonicTime,
    /// The match slot `to` reported in its last answer since the transfer began (not the
    /// highest ever recorded: a member that restarted since reports less, and handing over to
    /// it would only end in an ordinary election).
    reported_match: Option<Slot>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CandidateState {
    ballot: Ballot,
    own_promise_lsn: Lsn,
    /// Accepted entries reported by each promiser that still holds every slot we need.
    promises: BTreeMap<NodeId, Vec<(Slot, LogEntry)>>,
    /// Everyone a Prepare went to. Phase 1 may reveal a membership entry with members we did not
    /// know; they are asked too, because we need a quorum of that membership as well.
    asked: BTreeSet<NodeId>,
    strong_reads_not_before: MonotonicTime,
    /// The ballot of the leader that handed over to this candidate, whose lease it asks the
    /// promisers not to wait for (`Message::Prepare::lease_released`).
    lease_released: Option<Ballot>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Role {
    Follower,
    PreCandidate {
        round: u64,
        grants: BTreeSet<NodeId>,
    },
    Candidate(CandidateState),
    Leader(Box<LeaderState>),
}

impl Role {
    fn kind(&self) -> RoleKind {
        match self {
            Role::Follower => RoleKind::Follower,
            Role::PreCandidate { .. } => RoleKind::PreCandidate,
            Role::Candidate(_) => RoleKind::Candidate,
            Role::Leader(_) => RoleKind::Leader,
        }
    }
}

/// Faults a test can switch on to prove that the invariant checkers notice a broken protocol.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct InjectedFaults {
    /// The leader commits as soon as its own copy is durable, without a quorum (breaks I4).
    pub(crate) commit_without_quorum: bool,
    /// A new leader serves strong reads without waiting out old leases (breaks I7).
    pub(crate) ignore_old_leases: bool,
    /// Membership steps take effect whatever membership governs their slot (a stale step
    /// re-proposed in phase 1 then undoes the steps committed below it).
    pub(crate) unconditional_membership_steps: bool,
    /// A removed leader hands over (`TimeoutNow`, its lease released) but goes on leading, a
    /// higher ballot's rejections notwithstanding, so it serves reads under the lease its
    /// successor was told was released until that lease lapses.
    pub(crate) hand_over_keeps_leading: bool,
}

/// One replica of one replication group. Equality and hashing cover the whole state, so a model
/// checker can deduplicate states of the real core.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica {
    id: NodeId,
    options: ReplicaOptions,
    promised: Ballot,
    highest_round_seen: u64,
    log: Log,
    commit_slot: Slot,
    committed_membership: Membership,
    /// The slot of the membership entry that set `committed_membership` (0: the initial one),
    /// the base a [`Payload::MembershipStep`] names.
    config_slot: Slot,
    role: Role,
    /// The ballot whose leader this replica's log is being matched against, and how far it
    /// matches (I5).
    following: Option<Ballot>,
    match_slot: Slot,
    leader_hint: Option<NodeId>,
    last_leader_contact: Option<MonotonicTime>,
    /// When this replica last supported a leader's lease (acknowledged an Accept, or sent a
    /// heartbeat round as leader), and that leader's ballot (`None` after a restart, when the
    /// moment is assumed and the ballot unknown).
    last_lease_support: Option<MonotonicTime>,
    last_lease_support_ballot: Option<Ballot>,
    election_deadline: MonotonicTime,
    /// The random part of the election timeout, redrawn at every election attempt rather than
    /// at every heartbeat, so that replicas stay desynchronised after a failed election while a
    /// follower's state does not change with every heartbeat it receives.
    election_jitter_nanos: u64,
    random_state: u64,
    next_lsn: u64,
    durable_lsn: Lsn,
    held_replies: VecDeque<(Lsn, NodeId, Message)>,
    lease_announced: bool,
    /// Quiesced (`ReplicaOptions::quiesce`): a leader sends no heartbeats and a follower runs no
    /// election timer. Never durable: a restarted replica starts awake.
    quiesced: bool,
    /// When a follower quiesced (its backstop, `QUIESCED_FOLLOWER_WAKE_ELECTION_TIMEOUTS`).
    quiesced_at: MonotonicTime,
    /// Candidates this replica last shipped its snapshot to, and when (`on_prepare`): asked
    /// again within `snapshot_retry_interval`, it does not start another.
    snapshots_offered: BTreeMap<NodeId, MonotonicTime>,
    actions: Vec<Action>,
    #[cfg(test)]
    pub(crate) faults: InjectedFaults,
}

impl Replica {
    /// A replica of a new group whose log starts empty with `membership`.
    pub fn new(
        id: NodeId,
        options: ReplicaOptions,
        membership: Membership,
        now: MonotonicTime,
    ) -> Result<Self, OptionsError> {
        options.validate()?;
        let random_state = options.election_seed;
        let mut replica = Self {
            id,
            options,
            promised: Ballot::ZERO,
            highest_round_seen: 0,
            log: Log::starting_at(Slot(1)),
            commit_slot: Slot::ZERO,
            committed_membership: membership,
            config_slot: Slot::ZERO,
            role: Role::Follower,
            following: None,
            match_slot: Slot::ZERO,
            leader_hint: None,
            last_leader_contact: None,
            last_lease_support: None,
            last_lease_support_ballot: None,
            election_deadline: now,
            election_jitter_nanos: 0,
            random_state,
            next_lsn: 1,
            durable_lsn: Lsn(0),
            held_replies: VecDeque::new(),
            lease_announced: false,
            quiesced: false,
            quiesced_at: MonotonicTime::ZERO,
            snapshots_offered: BTreeMap::new(),
            actions: Vec::new(),
            #[cfg(test)]
            faults: InjectedFaults::default(),
        };
        replica.draw_election_jitter();
        replica.reset_election_deadline(now);
        Ok(replica)
    }

    /// A replica restarting from its durable state. Lsns restart at 1 in every incarnation.
    ///
    /// The entry of each slot is decided over all of its durable writes first, and contiguity
    /// is checked on the result: a host that dropped superseded writes can hand over a write of
    /// a high slot before the only remaining writes of the slots below it (issue 14: slot 10
    /// of ballot 1, then slots 1 to 18 re-sent in ballot 2, the first writes of 1 to 9 gone).
    pub fn recover(
        id: NodeId,
        options: ReplicaOptions,
        state: RecoveredState,
        now: MonotonicTime,
    ) -> Result<Self, RecoveryError> {
        let snapshot_slot = state.snapshot.last_included_slot;
        let mut replica = Self::new(id, options, state.snapshot.membership, now)
            .map_err(RecoveryError::Options)?;
        replica.config_slot = state.snapshot.config_slot;
        // I2: every entry was accepted under a ballot this replica had promised, so the
        // promise is at least the highest of them, whichever writes are left.
        let promised = state
            .entries
            .iter()
            .map(|(_, entry)| entry.ballot)
            .fold(state.promised, Ballot::max);
        let mut kept: BTreeMap<Slot, LogEntry> = BTreeMap::new();
        for (slot, entry) in state.entries {
            if slot <= snapshot_slot {
                continue;
            }
            match kept.entry(slot) {
                btree_map::Entry::Vacant(vacant) => {
                    vacant.insert(entry);
                }
                btree_map::Entry::Occupied(mut occupied) => {
                    if entry.replaces_at_recovery(occupied.get()) {
                        occupied.insert(entry);
                    }
                }
            }
        }
        replica.promised = promised;
        replica.highest_round_seen = promised.round;
        replica.log = Log::starting_at(snapshot_slot.next());
        replica.commit_slot = snapshot_slot;
        replica.match_slot = snapshot_slot;
        for (slot, entry) in kept {
            // I9: the kept entries must continue the log without a hole.
            if slot != replica.log.last_slot().next() {
                return Err(RecoveryError::LogGap {
                    after: replica.log.last_slot(),
                });
            }
            replica.log.put(slot, entry);
        }
        // A crash forgets when this replica last acknowledged a leader. It cannot have been
        // later than now, so treating now as that moment keeps every old lease protected.
        replica.last_lease_support = Some(now);
        Ok(replica)
    }

    // ----- Accessors -------------------------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn kind(&self) -> ReplicaKind {
        self.options.kind
    }

    pub fn role(&self) -> RoleKind {
        self.role.kind()
    }

    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The ballot this replica leads, if it leads.
    pub fn leader_ballot(&self) -> Option<Ballot> {
        match &self.role {
            Role::Leader(leader) => Some(leader.ballot),
            _ => None,
        }
    }

    pub fn leader_hint(&self) -> Option<NodeId> {
        self.leader_hint
    }

    pub fn commit_slot(&self) -> Slot {
        self.commit_slot
    }

    pub fn log_first_slot(&self) -> Slot {
        self.log.first_slot()
    }

    pub fn log_last_slot(&self) -> Slot {
        self.log.last_slot()
    }

    pub fn entry(&self, slot: Slot) -> Option<&LogEntry> {
        self.log.get(slot)
    }

    pub fn committed_membership(&self) -> &Membership {
        &self.committed_membership
    }

    /// The slot of the membership entry that set the committed membership (0: the group's
    /// initial one): what a checkpoint or snapshot of the committed state records with it.
    pub fn config_slot(&self) -> Slot {
        self.config_slot
    }

    /// How far each follower's log is durably this leader's, as its acknowledgements said
    /// (`match_slot`); empty unless leading. A caller that added a member waits on this for
    /// the new member to catch up before it removes another.
    pub fn follower_matches(&self) -> Vec<(NodeId, Slot)> {
        match &self.role {
            Role::Leader(leader) => leader
                .progress
                .iter()
                .map(|(node, progress)| (*node, progress.match_slot))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether a membership entry is in the log and not committed: no other change may be
    /// proposed until it is (I8).
    pub fn membership_change_in_progress(&self) -> bool {
        self.latest_membership() != self.committed_membership || self.uncommitted_membership_entry()
    }

    /// The membership after every membership entry in the log, committed or not.
    pub fn latest_membership(&self) -> Membership {
        let mut membership = &self.committed_membership;
        let mut config_slot = self.config_slot;
        for (slot, entry) in self.log.iter(self.commit_slot.next(), self.log.last_slot()) {
            if let Some(next) = self.membership_after(&entry.payload, membership, config_slot) {
                membership = next;
                config_slot = slot;
            }
        }
        membership.clone()
    }

    pub fn election_deadline(&self) -> MonotonicTime {
        self.election_deadline
    }

    /// When [`Replica::tick`] next has a timer to act on: a leader's next heartbeat round, any
    /// other role's election timeout. A tick before it only checks what other inputs also
    /// check or what time alone cannot change much sooner: a leader's quorum (it steps down at
    /// most a heartbeat interval later) and commits held back by an old lease (which a host
    /// ticks for anyway while it has entries to commit).
    pub fn next_timer_deadline(&self) -> MonotonicTime {
        if self.quiesced {
            return match &self.role {
                Role::Leader(_) => NEVER,
                _ => self.quiesced_follower_wakes_at(),
            };
        }
        match &self.role {
            Role::Leader(leader) => leader.heartbeat_deadline,
            Role::Follower | Role::PreCandidate { .. } | Role::Candidate(_) => {
                self.election_deadline
            }
        }
    }

    // ----- Inputs ----------------------------------------------------------------------------

    /// Time passed: send heartbeats, start a pre-check when the leader went quiet, notice leases
    /// that lapsed.
    pub fn tick(&mut self, now: MonotonicTime) -> Vec<Action> {
        if self.quiesced {
            // Nothing is due but a follower's backstop: no heartbeat, no election timeout, and
            // the quorum check would only see the silence quiescence asked for.
            if !matches!(self.role, Role::Leader(_)) && now >= self.quiesced_follower_wakes_at() {
                self.wake_follower(now);
            }
            return self.finish(now);
        }
        match &self.role {
            Role::Leader(_) => {
                if !self.hears_from_a_quorum(now) {
                    // Cut off from a quorum (the rest may already follow a newer leader that
                    // this one cannot hear): it can commit nothing, so it stops leading. Its
                    // requests then get NotLeader at once instead of waiting until their
                    // clients time out, and clients look for the leader elsewhere (the
                    // simulator found clients held for good by such a leader). Stepping down
                    // changes no ballot and no durable state, so it is always safe.
                    self.leader_hint = None;
                    self.set_role(Role::Follower);
                    self.reset_election_deadline(now);
                    return self.finish(now);
                }
                let Role::Leader(leader) = &self.role else {
                    return self.finish(now);
                };
                if now >= leader.heartbeat_deadline {
                    self.start_heartbeat_round(now);
                }
                // Commits held back while an old lease ran go through at the first tick after.
                self.advance_commit(now);
                self.try_transfer(now);
            }
            Role::Follower | Role::PreCandidate { .. } | Role::Candidate(_) => {
                if now >= self.election_deadline && self.may_campaign() {
                    self.start_pre_check(now);
                }
            }
        }
        self.finish(now)
    }

    pub fn handle_message(
        &mut self,
        now: MonotonicTime,
        from: NodeId,
        message: Message,
    ) -> Vec<Action> {
        match message {
            Message::PreCheck { round } => self.on_pre_check(now, from, round),
            Message::PreCheckReply { round, granted } => {
                self.on_pre_check_reply(now, from, round, granted)
            }
            Message::Prepare {
                ballot,
                from_slot,
                lease_released,
            } => self.on_prepare(now, from, ballot, from_slot, lease_released),
            Message::TimeoutNow {
                ballot,
                commit_slot,
            } => self.on_timeout_now(now, from, ballot, commit_slot),
            Message::Promise {
                ballot,
                log_first_slot,
                accepted,
                lease_wait_nanos,
            } => self.on_promise(
                now,
                from,
                ballot,
                log_first_slot,
                accepted,
                lease_wait_nanos,
            ),
            Message::Accept {
                ballot,
                round,
                first_slot,
                entries,
                commit_slot,
            } => self.on_accept(now, from, ballot, round, first_slot, entries, commit_slot),
            Message::Accepted {
                ballot,
                round,
                match_slot,
                missing,
            } => self.on_accepted(now, from, ballot, round, match_slot, missing),
            Message::Quiesce {
                ballot,
                round,
                first_slot,
                commit_slot,
            } => self.on_quiesce(now, from, ballot, round, first_slot, commit_slot),
            Message::Rejected { promised } => self.on_rejected(now, promised),
        }
        self.finish(now)
    }

    /// Proposes a command. Only the leader accepts proposals.
    pub fn propose(
        &mut self,
        now: MonotonicTime,
        command: Vec<u8>,
    ) -> Result<Proposed, ProposeError> {
        if command.len() > COMMAND_BYTES_MAX {
            return Err(ProposeError::CommandTooLarge {
                size_bytes: command.len(),
            });
        }
        self.check_can_append(command.len())?;
        let slot = self.append_as_leader(now, Payload::Command(command));
        Ok(Proposed {
            slot,
            actions: self.finish(now),
        })
    }

    /// Hands leadership over to the full member `to` (balancing leaders across nodes). The
    /// leader stops taking proposals, and once `to` has every entry of its log durable and all
    /// of it is committed, it steps down and tells `to` to campaign at once with its lease
    /// released, as a removed leader does (`Message::TimeoutNow`). If that has not happened
    /// within a minimum election timeout (`to` slow or gone), the leader gives up and leads
    /// on. Refused unless this replica leads, is ready, no membership change is under way and
    /// `to` is another full member of the committed and latest memberships.
    pub fn transfer_leadership(
        &mut self,
        now: MonotonicTime,
        to: NodeId,
    ) -> Result<Vec<Action>, ProposeError> {
        let Role::Leader(leader) = &self.role else {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader_hint,
            });
        };
        if self.commit_slot < leader.first_slot_of_ballot {
            return Err(ProposeError::LeaderNotReady);
        }
        if self.membership_change_in_progress() {
            return Err(ProposeError::MembershipChangeInProgress);
        }
        let member = self.committed_membership.is_full_replica(to)
            && self.latest_membership().is_full_replica(to);
        if to == self.id || !member {
            return Err(ProposeError::Membership(MembershipError::NotMember(to)));
        }
        // A member not heard from lately, or far behind, would hold the writes up for the
        // whole wait and then not take over: refused, the caller asks again later.
        let last = self.log.last_slot();
        let ready = leader.progress.get(&to).is_some_and(|progress| {
            progress
                .heard_at
                .is_some_and(|heard| now < heard.saturating_add(self.options.election_timeout_min))
                && progress.match_slot.0.saturating_add(IN_FLIGHT_SLOTS_MAX) >= last.0
        });
        if !ready && leader.transfer.is_none_or(|transfer| transfer.to != to) {
            return Err(ProposeError::Backpressure);
        }
        if leader.transfer.is_none_or(|transfer| transfer.to != to) {
            let give_up_at = now.saturating_add(self.options.election_timeout_min);
            if let Role::Leader(leader) = &mut self.role {
                leader.transfer = Some(Transfer {
                    to,
                    give_up_at,
                    reported_match: None,
                });
            }
        }
        self.wake_leader(now);
        // A heartbeat, so that `to` reports where its log stands now.
        self.send_to_follower(now, to, true);
        self.try_transfer(now);
        Ok(self.finish(now))
    }

    /// The leadership transfer under way, if any: its target.
    pub fn transfer_target(&self) -> Option<NodeId> {
        match &self.role {
            Role::Leader(leader) => leader.transfer.map(|transfer| transfer.to),
            _ => None,
        }
    }

    /// Completes a transfer whose target caught up, or gives it up after its time.
    fn try_transfer(&mut self, now: MonotonicTime) {
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let Some(transfer) = leader.transfer else {
            return;
        };
        if now >= transfer.give_up_at {
            leader.transfer = None;
            return;
        }
        let last = self.log.last_slot();
        let caught_up = transfer
            .reported_match
            .is_some_and(|reported| reported >= last);
        let to = transfer.to;
        if caught_up && self.commit_slot >= last {
            self.hand_over(now, Some(to), last);
            self.reset_election_deadline(now);
        }
    }

    /// Steps down and tells `successor` to campaign at once, this leader's lease released:
    /// one last round tells everyone the commit (`through`), and this replica stops serving
    /// before `TimeoutNow` leaves, so no read under its lease can miss the successor's writes.
    fn hand_over(&mut self, now: MonotonicTime, successor: Option<NodeId>, through: Slot) {
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let ballot = leader.ballot;
        self.send_to_followers(now, true);
        #[cfg(test)]
        let step_down = !self.faults.hand_over_keeps_leading;
        #[cfg(not(test))]
        let step_down = true;
        if step_down {
            self.leader_hint = successor;
            self.set_role(Role::Follower);
        }
        if let Some(successor) = successor {
            self.send(
                successor,
                Message::TimeoutNow {
                    ballot,
                    commit_slot: through,
                },
            );
        }
    }

    /// Proposes one membership step. It governs the slots after its own once committed; until
    /// then the leader accepts no other proposal (I8).
    pub fn propose_membership_change(
        &mut self,
        now: MonotonicTime,
        change: MembershipChange,
    ) -> Result<Proposed, ProposeError> {
        self.check_can_append(0)?;
        let Role::Leader(leader) = &self.role else {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader_hint,
            });
        };
        // A leader that has not committed in its own ballot may still hold an uncommitted
        // membership entry from an earlier ballot that phase 1 did not reveal as chosen; changing
        // membership on top of it could step two members away (the single-server change bug
        // found in Raft). Committing our own no-op first settles every earlier entry.
        if self.commit_slot < leader.first_slot_of_ballot {
            return Err(ProposeError::LeaderNotReady);
        }
        let next = self
            .committed_membership
            .apply(change)
            .map_err(ProposeError::Membership)?;
        let slot = self.append_as_leader(
            now,
            Payload::MembershipStep {
                base_slot: self.config_slot,
                base: self.committed_membership.clone(),
                next: next.clone(),
            },
        );
        if let Role::Leader(leader) = &mut self.role {
            for member in next.members() {
                if member != self.id && !leader.progress.contains_key(&member) {
                    leader.progress.insert(
                        member,
                        FollowerProgress {
                            match_slot: Slot::ZERO,
                            // A new member starts blank: a snapshot first (`on_accept`).
                            next_slot: Slot::ZERO,
                            acked_round: 0,
                            heard_at: None,
                            commit_sent: Slot::ZERO,
                            snapshot_sent_at: None,
                            rewound_at: None,
                        },
                    );
                }
            }
        }
        self.send_to_followers(now, false);
        Ok(Proposed {
            slot,
            actions: self.finish(now),
        })
    }

    /// The host made every `Persist` up to and including `lsn` durable.
    pub fn persisted(&mut self, now: MonotonicTime, lsn: Lsn) -> Vec<Action> {
        assert!(
            lsn.0 < self.next_lsn,
            "persisted({lsn:?}) reports a write that was never issued"
        );
        if lsn > self.durable_lsn {
            self.durable_lsn = lsn;
        }
        // I2: replies that report persisted state leave only now that it is durable.
        while let Some((needed, _, _)) = self.held_replies.front() {
            if *needed > self.durable_lsn {
                break;
            }
            if let Some((_, to, message)) = self.held_replies.pop_front() {
                self.actions.push(Action::Send { to, message });
            }
        }
        match &mut self.role {
            Role::Leader(leader) => {
                while let Some((mark_lsn, slot)) = leader.durable_marks.front().copied() {
                    if mark_lsn > self.durable_lsn {
                        break;
                    }
                    leader.durable_marks.pop_front();
                    leader.own_durable_slot = leader.own_durable_slot.max(slot);
                }
                self.advance_commit(now);
                self.update_lease();
                self.try_transfer(now);
            }
            Role::Candidate(_) => self.try_become_leader(now),
            Role::Follower | Role::PreCandidate { .. } => {}
        }
        self.finish(now)
    }

    /// The host durably installed a snapshot (a full replica's applied state, or just the new
    /// truncation point for a log replica).
    pub fn snapshot_installed(&mut self, now: MonotonicTime, meta: SnapshotMeta) -> Vec<Action> {
        let slot = meta.last_included_slot;
        if slot > self.commit_slot {
            self.log.truncate_prefix(slot);
            self.commit_slot = slot;
            self.committed_membership = meta.membership;
            self.config_slot = meta.config_slot;
            // The snapshot holds only chosen values, which every leader's log shares (I1).
            self.match_slot = self.match_slot.max(slot);
            match self.role {
                Role::Candidate(_) => self.resume_campaign_after_snapshot(now),
                // A snapshot offered to our last campaign can arrive during the next pre-check,
                // and can show that we were removed (I6).
                Role::PreCandidate { .. } if !self.may_campaign() => self.stop_campaigning(now),
                _ => {}
            }
            // A candidate that won with other promises before the snapshot it was offered
            // arrived leads now, and answers nobody for it.
            if let Some(ballot) = self.following.filter(|ballot| ballot.node != self.id) {
                self.reply_after_durable(
                    ballot.node,
                    Message::Accepted {
                        ballot,
                        round: 0,
                        match_slot: self.match_slot,
                        missing: false,
                    },
                );
            }
        }
        self.finish(now)
    }

    /// The host checkpointed its applied state through `through`: entries up to there may go.
    pub fn checkpointed(&mut self, now: MonotonicTime, through: Slot) -> Vec<Action> {
        assert!(
            through <= self.commit_slot,
            "checkpoint at {through:?} past the commit index {:?}",
            self.commit_slot
        );
        self.log.truncate_prefix(through);
        self.finish(now)
    }

    /// Whether this replica may serve a strongly consistent read from its applied state now.
    ///
    /// The host must have applied every `Apply` action it received before it serves the read.
    /// Whether this replica leads and has committed an entry of its own ballot. Until then its
    /// log may hold entries of earlier ballots, recovered in phase 1, that are neither committed
    /// nor its own: a host that evaluates requests against its applied state (conditions,
    /// updates) must wait for this, or it evaluates against a state that misses them.
    /// Whether this replica is quiesced (`ReplicaOptions::quiesce`).
    pub fn quiesced(&self) -> bool {
        self.quiesced
    }

    /// Wakes a quiesced leader: a heartbeat round goes out now, and its lease returns once a
    /// quorum answers it. The host calls it before a strong read finds no lease. Does nothing
    /// otherwise.
    pub fn wake(&mut self, now: MonotonicTime) -> Vec<Action> {
        if self.quiesced && matches!(self.role, Role::Leader(_)) {
            self.wake_leader(now);
            self.start_heartbeat_round(now);
        }
        self.finish(now)
    }

    /// The host lost touch with `node` (nothing heard from it for its liveness timeout). A
    /// follower quiesced under a leader on that node wakes and runs its election timer again,
    /// so the group elects another leader if that one is gone.
    pub fn peer_unreachable(&mut self, now: MonotonicTime, node: NodeId) -> Vec<Action> {
        if self.quiesced && !matches!(self.role, Role::Leader(_)) && self.leader_hint == Some(node)
        {
            self.wake_follower(now);
        }
        self.finish(now)
    }

    /// The host hears from `node` again after it was unreachable (it restarted, or a partition
    /// healed). A quiesced leader with a replica there wakes, so that replica learns of it
    /// before its election timer runs out.
    pub fn peer_reachable(&mut self, now: MonotonicTime, node: NodeId) -> Vec<Action> {
        let follower_there =
            matches!(&self.role, Role::Leader(leader) if leader.progress.contains_key(&node));
        if self.quiesced && follower_there {
            self.wake_leader(now);
            self.start_heartbeat_round(now);
        }
        self.finish(now)
    }

    fn wake_leader(&mut self, now: MonotonicTime) {
        let busy_deadline = now.saturating_add(self.options.heartbeat_interval);
        let was_quiesced = std::mem::replace(&mut self.quiesced, false);
        if let Role::Leader(leader) = &mut self.role {
            leader.quiesce_from_round = None;
            if was_quiesced {
                // The followers were silent because we asked them to be: the quorum check
                // starts over from now.
                leader.elected_at = now;
            }
            leader.heartbeat_deadline = leader.heartbeat_deadline.min(busy_deadline);
        }
    }

    fn quiesced_follower_wakes_at(&self) -> MonotonicTime {
        self.quiesced_at.saturating_add(
            self.options
                .election_timeout_min
                .saturating_mul(QUIESCED_FOLLOWER_WAKE_ELECTION_TIMEOUTS),
        )
    }

    fn wake_follower(&mut self, now: MonotonicTime) {
        if std::mem::replace(&mut self.quiesced, false) {
            self.reset_election_deadline(now);
        }
    }

    pub fn leader_ready(&self) -> bool {
        matches!(&self.role, Role::Leader(leader) if self.commit_slot >= leader.first_slot_of_ballot)
    }

    pub fn can_serve_strong_read(&self, now: MonotonicTime) -> Result<(), StrongReadRefusal> {
        let Role::Leader(leader) = &self.role else {
            return Err(StrongReadRefusal::NotLeader {
                leader_hint: self.leader_hint,
            });
        };
        let serving = self.commit_slot >= leader.first_slot_of_ballot
            && now >= leader.strong_reads_not_before
            && leader.lease_until.is_some_and(|until| now < until);
        if serving {
            Ok(())
        } else {
            Err(StrongReadRefusal::LeaseNotHeld)
        }
    }

    // ----- Election --------------------------------------------------------------------------

    fn may_campaign(&self) -> bool {
        // I6: a log replica never campaigns, whatever the membership says.
        self.options.kind == ReplicaKind::Full
            && self.latest_membership().is_full_replica(self.id)
            && self.committed_membership.is_full_replica(self.id)
    }

    fn start_pre_check(&mut self, now: MonotonicTime) {
        let round = self.highest_round_seen.max(self.promised.round) + 1;
        self.set_role(Role::PreCandidate {
            round,
            grants: BTreeSet::from([self.id]),
        });
        self.draw_election_jitter();
        self.reset_election_deadline(now);
        for member in self.peers() {
            self.send(member, Message::PreCheck { round });
        }
        self.check_pre_check_quorum(now);
    }

    fn on_pre_check(&mut self, now: MonotonicTime, from: NodeId, round: u64) {
        if self.quiesced {
            match &self.role {
                // Someone's timer ran out: they have not heard from us. Heartbeats tell them.
                Role::Leader(_) => {
                    self.wake_leader(now);
                    self.start_heartbeat_round(now);
                }
                // Our leader's node asks: it restarted and leads no more.
                _ if self.leader_hint == Some(from) => self.wake_follower(now),
                _ => {}
            }
        }
        // A quiesced follower's leader was alive at its last word and its node is still
        // reachable (or the host would have woken it): as good as heard from just now.
        let heard_recently = self.quiesced
            || self.last_leader_contact.is_some_and(|contact| {
                now < contact.saturating_add(self.options.election_timeout_min)
            });
        // Whether the asker is a member does not matter: a replica that is behind (or one
        // created to join, which knows no membership yet) cannot tell a member added since
        // from a removed node, and denying would let it block elections once the group needs
        // its grant (the simulator found both: a joiner, then a member that missed an add,
        // each stalled a group with one member dead). A removed replica that knows it was
        // removed never campaigns; one that does not only asks when no leader is heard from,
        // and the control plane deletes it. The pre-check only spares the group needless
        // elections; safety rests on phase 1.
        let granted = !matches!(self.role, Role::Leader(_)) && !heard_recently;
        self.send(from, Message::PreCheckReply { round, granted });
    }

    fn on_pre_check_reply(&mut self, now: MonotonicTime, from: NodeId, round: u64, granted: bool) {
        if let Role::PreCandidate {
            round: current,
            grants,
        } = &mut self.role
            && *current == round
            && granted
        {
            grants.insert(from);
            self.check_pre_check_quorum(now);
        }
    }

    fn check_pre_check_quorum(&mut self, now: MonotonicTime) {
        let Role::PreCandidate { grants, .. } = &self.role else {
            return;
        };
        let latest = self.latest_membership();
        if self
            .committed_membership
            .is_quorum(|node| grants.contains(&node))
            && latest.is_quorum(|node| grants.contains(&node))
        {
            self.start_election(now);
        }
    }

    /// `TimeoutNow` from the leader this replica follows: it stepped down after its own removal
    /// committed and hands over. Campaign at once, skipping the pre-check (the leader is gone
    /// by its own word) and telling the promisers that its lease was released. Obeyed only
    /// from that leader at the ballot promised, within an election timeout of hearing from it
    /// (a late one would depose whoever the others elected meanwhile), and only with a log
    /// that matches the leader's through its commit: the member commits that first (I5), so
    /// its `Prepare` asks from past the removal, where the others' logs still begin once
    /// they truncated after applying it. Otherwise the members elect the usual way.
    fn on_timeout_now(
        &mut self,
        now: MonotonicTime,
        from: NodeId,
        ballot: Ballot,
        commit_slot: Slot,
    ) {
        let recent = self
            .last_leader_contact
            .is_some_and(|contact| now < contact.saturating_add(self.options.election_timeout_min));
        let follows_it = ballot == self.promised
            && ballot.node == from
            && self.following == Some(ballot)
            && matches!(self.role, Role::Follower)
            && (recent || self.quiesced);
        if !follows_it || !self.may_campaign() || self.match_slot < commit_slot {
            return;
        }
        self.commit_through(now, commit_slot);
        if !self.may_campaign() {
            return;
        }
        self.wake_follower(now);
        self.start_election_after(now, Some(ballot));
    }

    fn start_election(&mut self, now: MonotonicTime) {
        self.start_election_after(now, None);
    }

    /// Phase 1 at a new ballot. `lease_released`: the ballot of a leader that handed over to
    /// this replica (`TimeoutNow`), whose lease no promiser need wait for.
    fn start_election_after(&mut self, now: MonotonicTime, lease_released: Option<Ballot>) {
        assert!(self.may_campaign(), "I6: only full members campaign");
        let ballot = Ballot {
            round: self.highest_round_seen.max(self.promised.round) + 1,
            node: self.id,
        };
        self.highest_round_seen = ballot.round;
        self.promised = ballot;
        self.following = None;
        self.leader_hint = None;
        let own_promise_lsn = self.persist(Some(ballot), Vec::new());
        // Our own support for an old leader protects its lease like anyone else's, unless that
        // leader released it.
        let strong_reads_not_before = self
            .lease_support_left(now, lease_released)
            .map_or(now, |left| now.saturating_add(left));
        let peers = self.peers();
        self.set_role(Role::Candidate(CandidateState {
            ballot,
            own_promise_lsn,
            promises: BTreeMap::new(),
            asked: peers.iter().copied().collect(),
            strong_reads_not_before,
            lease_released,
        }));
        self.reset_election_deadline(now);
        let from_slot = self.commit_slot.next();
        for member in peers {
            self.send(
                member,
                Message::Prepare {
                    ballot,
                    from_slot,
                    lease_released,
                },
            );
        }
        self.try_become_leader(now);
    }

    /// How much of the lease this replica last supported may still run, on its clock: `None`
    /// when none may (it supported none, that one ended, or its leader released it:
    /// `released` is its ballot).
    fn lease_support_left(&self, now: MonotonicTime, released: Option<Ballot>) -> Option<Duration> {
        let support = self.last_lease_support?;
        if released.is_some() && released == self.last_lease_support_ballot {
            return None;
        }
        let left = support
            .saturating_add(self.options.lease_duration)
            .saturating_duration_since(now);
        (left > Duration::ZERO).then_some(left)
    }

    fn on_prepare(
        &mut self,
        now: MonotonicTime,
        from: NodeId,
        ballot: Ballot,
        from_slot: Slot,
        lease_released: Option<Ballot>,
    ) {
        // A node our committed membership does not list, asking from no later than the entry
        // that set that membership, has not learned that entry: it was removed while cut off
        // or down, and campaigns on the membership it last knew (a member added since would
        // have committed the entry that added it, so it asks from past it). It can never win:
        // phase 1 would show it the membership without it. But promising it would end our
        // leader's ballot, and with a second such replica to grant its pre-checks it campaigns
        // at every timeout until the orphan scan deletes it: the group kept losing its leader
        // for that long. Refusing a prepare is always safe; it wakes nothing here, and no
        // snapshot is offered to a replica about to be deleted.
        if !self.committed_membership.contains(from) && from_slot <= self.config_slot {
            self.send(
                from,
                Message::Rejected {
                    promised: self.promised,
                },
            );
            return;
        }
        self.highest_round_seen = self.highest_round_seen.max(ballot.round);
        // An election is under way: whatever this replica is, it must time out again if it
        // does not end in a leader it hears from.
        if self.quiesced {
            if matches!(self.role, Role::Leader(_)) {
                self.wake_leader(now);
            } else {
                self.wake_follower(now);
            }
        }
        // A candidate that lacks slots we hold only in our snapshot can never learn what was
        // chosen there from our promise (`on_promise`). We give it that snapshot: once
        // installed, its next Prepare asks from past it and our promise counts. Without this a
        // group could stall for good: a joiner given a snapshot beyond a lagging member's
        // commit, in a group of four whose old leader died, was the only third promiser that
        // member could find, and refused it at every ballot (simulator seeds 80066, 90026).
        // Everything in a snapshot is chosen (I1), so any replica's is as good as the leader's.
        if from_slot < self.log.first_slot() {
            self.offer_snapshot(now, from);
        }
        if ballot < self.promised {
            self.send(
                from,
                Message::Rejected {
                    promised: self.promised,
                },
            );
            // A candidate that has committed slots we have not asks us: we stand down for an
            // election timeout instead of campaigning again at once. Our rejection tells it our
            // round and its next ballot goes past it, unless we raised ours again meanwhile: a
            // lagging candidate that could never win (the replicas that could promise it had
            // truncated past its commit) kept doing that at every timeout, and the up-to-date
            // one never got past it (the simulator's replica moves, seed 1105).
            if from_slot > self.commit_slot.next()
                && matches!(self.role, Role::Candidate(_) | Role::PreCandidate { .. })
            {
                self.leader_hint = None;
                self.set_role(Role::Follower);
                self.reset_election_deadline(now);
            }
            return;
        }
        // A candidate that lacks slots we truncated cannot count our promise (see
        // `on_promise`), so it cannot win with it until our snapshot (offered above) is
        // installed. Promising anyway would only cost us: the
        // higher ballot would end our own campaign (or our leadership), and a lagging replica
        // that campaigns again at every timeout would keep the up-to-date ones from ever
        // winning (a dueling-candidates livelock the simulator found: seed 354, one replica
        // stopped, the lagging one campaigning for ever against the up-to-date one). Refusing
        // a prepare is always safe; our own next ballot goes past its round
        // (`highest_round_seen`), and once we lead we send it a snapshot.
        if from_slot < self.log.first_slot() {
            self.send(
                from,
                Message::Rejected {
                    promised: self.promised,
                },
            );
            return;
        }
        if ballot > self.promised {
            // I2: the promise is persisted before the Promise that reports it is sent.
            self.promised = ballot;
            self.persist(Some(ballot), Vec::new());
            self.following = None;
            self.leader_hint = None;
            self.set_role(Role::Follower);
        }
        self.reset_election_deadline(now);
        let lease_wait_nanos = self
            .lease_support_left(now, lease_released)
            .map_or(0, duration_nanos);
        let accepted = self
            .log
            .range(from_slot.max(self.commit_slot.next()), self.log.last_slot());
        // Committed entries at or after `from_slot` are chosen values the candidate lacks; they
        // are reported too so that a lagging candidate learns them.
        let mut reported = self.log.range(from_slot, self.commit_slot);
        reported.extend(accepted);
        self.reply_after_durable(
            from,
            Message::Promise {
                ballot,
                log_first_slot: self.log.first_slot(),
                accepted: reported,
                lease_wait_nanos,
            },
        );
    }

    /// Asks the host to stream our applied state to `to`, a candidate behind our log's first
    /// slot, at most once per `snapshot_retry_interval` per candidate. A log replica holds no
    /// applied state to ship.
    fn offer_snapshot(&mut self, now: MonotonicTime, to: NodeId) {
        if self.options.kind != ReplicaKind::Full {
            return;
        }
        let retry = self.options.snapshot_retry_interval;
        self.snapshots_offered
            .retain(|_, offered| now < offered.saturating_add(retry));
        if self.snapshots_offered.contains_key(&to) {
            return;
        }
        self.snapshots_offered.insert(to, now);
        self.actions.push(Action::SendSnapshot { to });
    }

    /// A candidate installed a snapshot (offered by a promiser that had truncated the slots it
    /// asked for, `on_prepare`). The promises already gathered stay valid: they reported every
    /// slot from the old `from_slot` on, which covers the new one. Whoever has not promised is
    /// asked again at the same ballot from past the snapshot, so that the replica that shipped
    /// it can now promise. A snapshot can also show that the candidate is no longer a member;
    /// then it stops campaigning.
    fn resume_campaign_after_snapshot(&mut self, now: MonotonicTime) {
        if !self.may_campaign() {
            self.stop_campaigning(now);
            return;
        }
        let Role::Candidate(candidate) = &self.role else {
            return;
        };
        let from_slot = self.commit_slot.next();
        let (ballot, lease_released) = (candidate.ballot, candidate.lease_released);
        // The snapshot's membership may name members never asked: asked now too.
        let newly_known: Vec<NodeId> = self
            .committed_membership
            .members()
            .filter(|node| *node != self.id && !candidate.asked.contains(node))
            .collect();
        let unanswered: Vec<NodeId> = candidate
            .asked
            .iter()
            .filter(|node| !candidate.promises.contains_key(node))
            .copied()
            .chain(newly_known.iter().copied())
            .collect();
        if let Role::Candidate(candidate) = &mut self.role {
            candidate.asked.extend(newly_known);
        }
        for node in unanswered {
            self.send(
                node,
                Message::Prepare {
                    ballot,
                    from_slot,
                    lease_released,
                },
            );
        }
        self.try_become_leader(now);
    }

    fn stop_campaigning(&mut self, now: MonotonicTime) {
        self.leader_hint = None;
        self.set_role(Role::Follower);
        self.reset_election_deadline(now);
    }

    fn on_promise(
        &mut self,
        now: MonotonicTime,
        from: NodeId,
        ballot: Ballot,
        log_first_slot: Slot,
        accepted: Vec<(Slot, LogEntry)>,
        lease_wait_nanos: u64,
    ) {
        let commit_slot = self.commit_slot;
        let drift = self.options.clock_drift_max;
        let Role::Candidate(candidate) = &mut self.role else {
            return;
        };
        if candidate.ballot != ballot {
            return;
        }
        // A promiser that truncated slots we have not committed cannot tell us what was chosen
        // there, so its promise does not count towards our quorum.
        if log_first_slot > commit_slot.next() {
            return;
        }
        candidate.promises.insert(from, accepted);
        // A zero wait means the promiser's own clock already saw every lease it supported end,
        // which is a fact about true time; only a remaining wait must be converted to our clock,
        // which costs the drift bound.
        if lease_wait_nanos > 0 {
            let wait_until = now
                .saturating_add(Duration::from_nanos(lease_wait_nanos))
                .saturating_add(drift);
            candidate.strong_reads_not_before = candidate.strong_reads_not_before.max(wait_until);
        }
        self.try_become_leader(now);
    }

    /// Phase 1 is complete when promises (ours included, once durable) form a quorum of the
    /// committed membership and of every membership entry the promised logs contain.
    fn try_become_leader(&mut self, now: MonotonicTime) {
        let Role::Candidate(candidate) = &self.role else {
            return;
        };
        if candidate.own_promise_lsn > self.durable_lsn {
            return;
        }
        let mut merged: BTreeMap<Slot, LogEntry> = BTreeMap::new();
        let own = self
            .log
            .range(self.commit_slot.next(), self.log.last_slot());
        for (slot, entry) in own.iter().chain(
            candidate
                .promises
                .values()
                .flat_map(|entries| entries.iter()),
        ) {
            if *slot <= self.commit_slot {
                continue;
            }
            let replace = merged
                .get(slot)
                .is_none_or(|current| entry.ballot > current.ballot);
            if replace {
                merged.insert(*slot, entry.clone());
            }
        }
        let promised_by = |node: NodeId| node == self.id || candidate.promises.contains_key(&node);
        let mut unasked = Vec::new();
        let mut complete = self.committed_membership.is_quorum(promised_by);
        for entry in merged.values() {
            // Every membership an entry could set, whether it will take effect or not.
            if let Some(membership) = entry.payload.membership_next() {
                unasked.extend(
                    membership
                        .members()
                        .filter(|node| *node != self.id && !candidate.asked.contains(node)),
                );
                complete &= membership.is_quorum(promised_by);
            }
        }
        let (ballot, lease_released) = (candidate.ballot, candidate.lease_released);
        let from_slot = self.commit_slot.next();
        for node in unasked {
            if let Role::Candidate(candidate) = &mut self.role
                && candidate.asked.insert(node)
            {
                self.actions.push(Action::Send {
                    to: node,
                    message: Message::Prepare {
                        ballot,
                        from_slot,
                        lease_released,
                    },
                });
            }
        }
        let Role::Candidate(candidate) = &self.role else {
            return;
        };
        if !complete {
            return;
        }
        let strong_reads_not_before = candidate.strong_reads_not_before;
        self.become_leader(now, ballot, merged, strong_reads_not_before);
    }

    fn become_leader(
        &mut self,
        now: MonotonicTime,
        ballot: Ballot,
        merged: BTreeMap<Slot, LogEntry>,
        strong_reads_not_before: MonotonicTime,
    ) {
        let last_found = merged
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.commit_slot)
            .max(self.commit_slot);
        // Re-propose the highest-ballot value of every open slot in our own ballot, and close
        // the slots nobody reported with no-ops (I3: one value per slot in this ballot).
        let mut slot = self.commit_slot.next();
        while slot <= last_found {
            let payload = merged
                .get(&slot)
                .map_or(Payload::Noop, |entry| entry.payload.clone());
            self.log.put(slot, LogEntry { ballot, payload });
            slot = slot.next();
        }
        let first_slot_of_ballot = last_found.next();
        self.log.put(
            first_slot_of_ballot,
            LogEntry {
                ballot,
                payload: Payload::Noop,
            },
        );
        let written = self
            .log
            .range(self.commit_slot.next(), first_slot_of_ballot);
        let lsn = self.persist(None, written);
        let mut progress = BTreeMap::new();
        let latest = self.latest_membership();
        for member in self.committed_membership.members().chain(latest.members()) {
            if member != self.id {
                progress.insert(
                    member,
                    FollowerProgress {
                        match_slot: Slot::ZERO,
                        next_slot: self.commit_slot.next(),
                        acked_round: 0,
                        heard_at: None,
                        commit_sent: Slot::ZERO,
                        snapshot_sent_at: None,
                        rewound_at: None,
                    },
                );
            }
        }
        #[cfg(test)]
        let strong_reads_not_before = if self.faults.ignore_old_leases {
            now
        } else {
            strong_reads_not_before
        };
        self.set_role(Role::Leader(Box::new(LeaderState {
            ballot,
            first_slot_of_ballot,
            progress,
            own_durable_slot: self.commit_slot,
            durable_marks: VecDeque::from([(lsn, first_slot_of_ballot)]),
            round: 0,
            round_send_times: VecDeque::new(),
            lease_until: None,
            strong_reads_not_before,
            heartbeat_deadline: now,
            elected_at: now,
            quiesce_from_round: None,
            transfer: None,
        })));
        self.following = Some(ballot);
        self.leader_hint = Some(self.id);
        self.start_heartbeat_round(now);
    }

    // ----- Phase 2 ---------------------------------------------------------------------------

    fn check_can_append(&self, payload_bytes: usize) -> Result<(), ProposeError> {
        let Role::Leader(leader) = &self.role else {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader_hint,
            });
        };
        // A leader handing over appends nothing more, so that its successor can catch up to
        // the end of its log; the request goes to the successor, leader in a moment.
        if let Some(transfer) = leader.transfer {
            return Err(ProposeError::NotLeader {
                leader_hint: Some(transfer.to),
            });
        }
        // The leader's own writes not yet durable are bounded too: two followers can commit
        // entries the leader's disk has not made durable yet, so the uncommitted window below
        // does not bound them (found by shoal-bench with 32 put clients).
        if leader.durable_marks.len() as u64 >= IN_FLIGHT_SLOTS_MAX {
            return Err(ProposeError::Backpressure);
        }
        if self.membership_change_in_progress() {
            return Err(ProposeError::MembershipChangeInProgress);
        }
        let uncommitted = self.log.last_slot().0 - self.commit_slot.0;
        if uncommitted >= IN_FLIGHT_SLOTS_MAX
            || self.log.entry_count() >= LOG_ENTRIES_IN_MEMORY_MAX
            || self.log.payload_bytes() + payload_bytes > LOG_BYTES_IN_MEMORY_MAX
        {
            return Err(ProposeError::Backpressure);
        }
        Ok(())
    }

    fn uncommitted_membership_entry(&self) -> bool {
        self.log
            .iter(self.commit_slot.next(), self.log.last_slot())
            .any(|(_, entry)| entry.payload.membership_next().is_some())
    }

    fn append_as_leader(&mut self, now: MonotonicTime, payload: Payload) -> Slot {
        let Role::Leader(leader) = &self.role else {
            unreachable!("append_as_leader is called after check_can_append");
        };
        let ballot = leader.ballot;
        let slot = self.log.last_slot().next();
        let entry = LogEntry { ballot, payload };
        self.log.put(slot, entry.clone());
        let lsn = self.persist(None, vec![(slot, entry)]);
        // An idle spell (and any quiescence) ends here: the next round (which retransmits what
        // a follower lost) comes at the busy interval, not at the idle deadline set before.
        self.wake_leader(now);
        if let Role::Leader(leader) = &mut self.role {
            leader.durable_marks.push_back((lsn, slot));
            assert!(
                leader.durable_marks.len() as u64 <= IN_FLIGHT_SLOTS_MAX + 1,
                "durable marks are bounded by the in-flight window"
            );
        }
        self.send_to_followers(now, false);
        slot
    }

    /// A leader with nothing to replicate: every entry of its log committed (a membership
    /// change under way is an entry not yet committed), every follower's log matching it
    /// through the end and told the last commit. Its heartbeats then go out every
    /// `idle_heartbeat_interval`.
    pub fn idle(&self) -> bool {
        let Role::Leader(leader) = &self.role else {
            return false;
        };
        let last_slot = self.log.last_slot();
        self.commit_slot == last_slot
            && leader.progress.values().all(|progress| {
                progress.match_slot == last_slot && progress.commit_sent == self.commit_slot
            })
    }

    fn start_heartbeat_round(&mut self, now: MonotonicTime) {
        let idle = self.idle();
        let interval = if idle {
            self.options.idle_heartbeat_interval
        } else {
            self.options.heartbeat_interval
        };
        let quiesce = idle && self.options.quiesce;
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        leader.round += 1;
        if !quiesce {
            leader.quiesce_from_round = None;
        } else if leader.quiesce_from_round.is_none() {
            leader.quiesce_from_round = Some(leader.round);
        }
        leader.round_send_times.push_back((leader.round, now));
        if leader.round_send_times.len() > LEASE_ROUNDS_TRACKED_MAX {
            leader.round_send_times.pop_front();
        }
        leader.heartbeat_deadline = now.saturating_add(interval);
        let ballot = leader.ballot;
        self.last_lease_support = Some(now);
        self.last_lease_support_ballot = Some(ballot);
        self.last_leader_contact = Some(now);
        self.send_to_followers(now, true);
        self.update_lease();
        if quiesce
            && let Role::Leader(leader) = &mut self.role
            && leader.progress.is_empty()
        {
            // A group of one: no follower has to acknowledge anything.
            self.quiesced = true;
            leader.heartbeat_deadline = NEVER;
        }
    }

    fn send_to_followers(&mut self, now: MonotonicTime, heartbeat: bool) {
        let followers: Vec<NodeId> = match &self.role {
            Role::Leader(leader) => leader.progress.keys().copied().collect(),
            _ => return,
        };
        for follower in followers {
            self.send_to_follower(now, follower, heartbeat);
        }
    }

    /// Sends `follower` the entries it lacks, within its in-flight window, or a snapshot request
    /// to the host when it lacks entries we truncated. With `heartbeat`, something is always sent:
    /// an empty Accept starting at the next unsent slot. A follower that lost an earlier Accept
    /// answers it with `missing`, which is how lost messages are retransmitted.
    fn send_to_follower(&mut self, now: MonotonicTime, follower: NodeId, heartbeat: bool) {
        let commit_slot = self.commit_slot;
        let last_slot = self.log.last_slot();
        let first_slot = self.log.first_slot();
        let retry = self.options.snapshot_retry_interval;
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let ballot = leader.ballot;
        let round = leader.round;
        let quiescing = leader.quiesce_from_round.is_some();
        let Some(progress) = leader.progress.get_mut(&follower) else {
            return;
        };
        let mut messages = Vec::new();
        let mut snapshot = false;
        if progress.next_slot < first_slot {
            let due = progress
                .snapshot_sent_at
                .is_none_or(|sent| now >= sent.saturating_add(retry));
            if due {
                progress.snapshot_sent_at = Some(now);
                snapshot = true;
            }
        } else {
            while progress.next_slot <= last_slot
                && progress.next_slot.0 <= progress.match_slot.0 + FOLLOWER_IN_FLIGHT_SLOTS_MAX
            {
                let batch_end = Slot(
                    last_slot
                        .0
                        .min(progress.next_slot.0 + ACCEPT_BATCH_ENTRIES_MAX as u64 - 1)
                        .min(progress.match_slot.0 + FOLLOWER_IN_FLIGHT_SLOTS_MAX),
                );
                // Bound the message by bytes too, so it fits one bus frame: at least one entry,
                // then as many as stay within ACCEPT_BATCH_BYTES_MAX. Only those are copied.
                let mut batch_bytes = 0usize;
                let entries: Vec<LogEntry> = self
                    .log
                    .iter(progress.next_slot, batch_end)
                    .enumerate()
                    .take_while(|(index, (_, entry))| {
                        batch_bytes += entry.payload.size_bytes();
                        *index == 0 || batch_bytes <= ACCEPT_BATCH_BYTES_MAX
                    })
                    .map(|(_, (_, entry))| entry.clone())
                    .collect();
                let batch_end = Slot(progress.next_slot.0 + entries.len() as u64 - 1);
                messages.push(Message::Accept {
                    ballot,
                    round,
                    first_slot: progress.next_slot,
                    entries,
                    commit_slot,
                });
                progress.next_slot = batch_end.next();
            }
        }
        if messages.is_empty() && heartbeat {
            messages.push(if quiescing {
                Message::Quiesce {
                    ballot,
                    round,
                    first_slot: progress.next_slot,
                    commit_slot,
                }
            } else {
                Message::Accept {
                    ballot,
                    round,
                    first_slot: progress.next_slot,
                    entries: Vec::new(),
                    commit_slot,
                }
            });
        }
        if !messages.is_empty() {
            progress.commit_sent = commit_slot;
        }
        let entries_sent = messages.iter().any(
            |message| matches!(message, Message::Accept { entries, .. } if !entries.is_empty()),
        );
        if entries_sent || snapshot {
            // The follower takes these as plain Accepts: its answer to this round says nothing
            // about quiescing, so the spell starts over at the next round.
            if let Role::Leader(leader) = &mut self.role {
                leader.quiesce_from_round = None;
            }
        }
        if snapshot {
            self.actions.push(Action::SendSnapshot { to: follower });
        }
        for message in messages {
            self.send(follower, message);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_accept(
        &mut self,
        now: MonotonicTime,
        from: NodeId,
        ballot: Ballot,
        round: u64,
        first_slot: Slot,
        entries: Vec<LogEntry>,
        leader_commit_slot: Slot,
    ) {
        self.highest_round_seen = self.highest_round_seen.max(ballot.round);
        if ballot < self.promised || from != ballot.node {
            self.send(
                from,
                Message::Rejected {
                    promised: self.promised,
                },
            );
            return;
        }
        if let Role::Leader(leader) = &self.role {
            assert!(
                leader.ballot != ballot,
                "I3: two leaders of ballot {ballot:?}"
            );
        }
        let mut promised_now = None;
        if ballot > self.promised {
            self.promised = ballot;
            promised_now = Some(ballot);
        }
        if self.following != Some(ballot) {
            // A new leader: only the committed prefix is known to match its log.
            self.following = Some(ballot);
            self.match_slot = self.commit_slot;
        }
        self.set_role(Role::Follower);
        self.leader_hint = Some(ballot.node);
        self.last_leader_contact = Some(now);
        self.quiesced = false;
        self.reset_election_deadline(now);

        // A blank replica (joined, never given any state) cannot tell which membership steps
        // take effect (`Payload::MembershipStep` depends on the membership before it): it
        // takes no entries until a snapshot gives it a membership, and says so as missing. Its
        // leader sends one first (it starts a new member at slot 0, below any log); a later
        // leader resends from slot 1, a snapshot too once a checkpoint has truncated its log,
        // which the host does as soon as it applies a membership step.
        let missing = first_slot > self.match_slot.next() || self.is_blank();
        let mut written = Vec::new();
        if !missing {
            let mut slot = first_slot;
            for entry in entries {
                // Slots up to `match_slot` already hold this leader's value; slots before the
                // log's first slot are in a snapshot and chosen.
                if slot > self.match_slot && slot >= self.log.first_slot() {
                    let entry = LogEntry {
                        ballot,
                        payload: entry.payload,
                    };
                    self.log.put(slot, entry.clone());
                    written.push((slot, entry));
                    self.match_slot = slot;
                }
                slot = slot.next();
            }
        }
        if promised_now.is_some() || !written.is_empty() {
            self.persist(promised_now, written);
        }
        // I5: commit only what is known to be the leader's value.
        let commit_to = leader_commit_slot.min(self.match_slot);
        self.commit_through(now, commit_to);
        self.last_lease_support = Some(now);
        self.last_lease_support_ballot = Some(ballot);
        self.reply_after_durable(
            from,
            Message::Accepted {
                ballot,
                round,
                match_slot: self.match_slot,
                missing,
            },
        );
    }

    /// The membership after `payload` when `governing`, set at `config_slot`, governs its slot
    /// (`Payload::membership_after`; the tests' broken variant ignores the step's base).
    fn membership_after<'a>(
        &self,
        payload: &'a Payload,
        governing: &'a Membership,
        config_slot: Slot,
    ) -> Option<&'a Membership> {
        #[cfg(test)]
        if self.faults.unconditional_membership_steps {
            return payload.membership_next();
        }
        payload.membership_after(governing, config_slot)
    }

    /// Whether this replica was created empty to join a group (no members known) and has been
    /// given no state yet: no snapshot, no commit, no entry.
    fn is_blank(&self) -> bool {
        self.committed_membership.member_count() == 0
            && self.commit_slot == Slot::ZERO
            && self.log.last_slot() == Slot::ZERO
    }

    fn on_accepted(
        &mut self,
        now: MonotonicTime,
        from: NodeId,
        ballot: Ballot,
        round: u64,
        match_slot: Slot,
        missing: bool,
    ) {
        let last_slot = self.log.last_slot();
        let heartbeat_interval = self.options.heartbeat_interval;
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if leader.ballot != ballot {
            return;
        }
        let Some(progress) = leader.progress.get_mut(&from) else {
            return;
        };
        assert!(
            match_slot <= last_slot,
            "I5: follower {from:?} matches past our log end"
        );
        progress.acked_round = progress.acked_round.max(round);
        progress.heard_at = Some(now);
        if let Some(transfer) = leader
            .transfer
            .as_mut()
            .filter(|transfer| transfer.to == from)
        {
            transfer.reported_match = Some(match_slot);
        }
        progress.match_slot = progress.match_slot.max(match_slot);
        let may_rewind = progress
            .rewound_at
            .is_none_or(|at| now >= at.saturating_add(heartbeat_interval));
        if missing && progress.next_slot == Slot::ZERO && match_slot == Slot::ZERO {
            // A member this leader added, still waiting for its first snapshot: it refuses
            // entries until then (`on_accept`), so resending them cannot help.
        } else if missing && may_rewind {
            // Resend from the match slot the follower reports, which may be below our record of
            // it: a follower that restarted knows only its snapshot to match (I5) until we
            // resend, although the entries we recorded are still durable there (so the record
            // still counts towards quorums). Resending from our record would be refused as
            // missing forever.
            progress.next_slot = match_slot.next();
            progress.rewound_at = Some(now);
        } else {
            progress.next_slot = progress.next_slot.max(progress.match_slot.next());
        }
        self.send_to_follower(now, from, false);
        self.advance_commit(now);
        self.update_lease();
        self.try_transfer(now);
        if !matches!(self.role, Role::Leader(_)) {
            return;
        }
        self.quiesce_when_every_follower_did(now, missing || match_slot < last_slot);
    }

    /// After an answer: a quiesced leader wakes when the follower reports itself `behind` (it
    /// restarted, or lost entries); a quiescing one quiesces once every follower acknowledged a
    /// Quiesce round matching our log's end (each of them then quiesced too).
    fn quiesce_when_every_follower_did(&mut self, now: MonotonicTime, behind: bool) {
        let last_slot = self.log.last_slot();
        let idle = self.idle();
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if self.quiesced {
            if behind {
                self.wake_leader(now);
                self.start_heartbeat_round(now);
            }
            return;
        }
        let Some(from_round) = leader.quiesce_from_round else {
            return;
        };
        let every_follower_quiesced = leader
            .progress
            .values()
            .all(|progress| progress.acked_round >= from_round && progress.match_slot == last_slot);
        if idle && every_follower_quiesced {
            self.quiesced = true;
            leader.heartbeat_deadline = NEVER;
        }
    }

    /// A Quiesce round: a heartbeat (an Accept with no entries), then the follower quiesces if
    /// it holds the leader's whole log, all of it committed.
    fn on_quiesce(
        &mut self,
        now: MonotonicTime,
        from: NodeId,
        ballot: Ballot,
        round: u64,
        first_slot: Slot,
        leader_commit_slot: Slot,
    ) {
        self.on_accept(
            now,
            from,
            ballot,
            round,
            first_slot,
            Vec::new(),
            leader_commit_slot,
        );
        let following_it = self.following == Some(ballot) && self.promised == ballot;
        let holds_all = self.match_slot.next() == first_slot
            && self.commit_slot == leader_commit_slot
            && self.commit_slot == self.match_slot;
        if following_it && holds_all && matches!(self.role, Role::Follower) {
            self.quiesced = true;
            self.quiesced_at = now;
        }
    }

    fn on_rejected(&mut self, _now: MonotonicTime, promised: Ballot) {
        self.highest_round_seen = self.highest_round_seen.max(promised.round);
        let own_ballot = match &self.role {
            Role::Leader(leader) => Some(leader.ballot),
            Role::Candidate(candidate) => Some(candidate.ballot),
            Role::Follower | Role::PreCandidate { .. } => None,
        };
        #[cfg(test)]
        if self.faults.hand_over_keeps_leading
            && matches!(self.role, Role::Leader(_))
            && !self.committed_membership.contains(self.id)
        {
            return;
        }
        if own_ballot.is_some_and(|own| promised > own) {
            self.leader_hint = None;
            self.set_role(Role::Follower);
        }
    }

    /// Commits every slot that a quorum of its governing membership durably accepted in our
    /// ballot (I4). A slot is governed by the committed membership folded with the membership
    /// entries before it.
    fn advance_commit(&mut self, now: MonotonicTime) {
        let Role::Leader(leader) = &self.role else {
            return;
        };
        // I7: while an old leader's lease may still run, it may serve strong reads from state
        // without our writes, so we must not acknowledge any: commit (and so Apply, which is
        // what acknowledges) waits until every old lease has ended.
        if now < leader.strong_reads_not_before {
            return;
        }
        let mut membership = self.committed_membership.clone();
        let mut config_slot = self.config_slot;
        let mut slot = self.commit_slot.next();
        let mut commit_to = self.commit_slot;
        while slot <= self.log.last_slot() {
            let accepted_by = |node: NodeId| {
                if node == self.id {
                    leader.own_durable_slot >= slot
                } else {
                    leader
                        .progress
                        .get(&node)
                        .is_some_and(|progress| progress.match_slot >= slot)
                }
            };
            #[cfg(test)]
            let chosen = if self.faults.commit_without_quorum {
                leader.own_durable_slot >= slot
            } else {
                membership.is_quorum(accepted_by)
            };
            #[cfg(not(test))]
            let chosen = membership.is_quorum(accepted_by);
            if !chosen {
                break;
            }
            if let Some(next) = self
                .log
                .get(slot)
                .and_then(|entry| self.membership_after(&entry.payload, &membership, config_slot))
            {
                membership = next.clone();
                config_slot = slot;
            }
            commit_to = slot;
            slot = slot.next();
        }
        self.commit_through(now, commit_to);
    }

    fn commit_through(&mut self, now: MonotonicTime, through: Slot) {
        if through <= self.commit_slot {
            return;
        }
        assert!(
            through <= self.log.last_slot(),
            "I9: commit {through:?} past the log end {:?}",
            self.log.last_slot()
        );
        let newly = self.log.range(self.commit_slot.next(), through);
        for (slot, entry) in &newly {
            // A void step (`Payload::MembershipStep` on another base) changes nothing. The host
            // decides each step the same way, from the membership it applied before it.
            if let Some(next) =
                self.membership_after(&entry.payload, &self.committed_membership, self.config_slot)
            {
                self.committed_membership = next.clone();
                self.config_slot = *slot;
            }
        }
        self.commit_slot = through;
        if self.options.kind == ReplicaKind::Full {
            self.actions.push(Action::Apply { entries: newly });
        }
        // A leader removed from the group (or left without a full replica's role) hands over:
        // it tells the remaining members the commit once more and stops, and they elect a
        // leader among themselves. Without that last round they learned of the removal's
        // commit only from their next leader, and until then a candidate needed a majority of
        // the membership before it, the removed replica included: with that replica deleted
        // and one more member down, the group could not elect (found by the simulator's
        // replica moves).
        //
        // It also hands its leadership over: the member with the most of its log durable (the
        // removal's slot at least) gets `TimeoutNow` and campaigns at once, telling the others
        // that this leader's lease is released. This leader stops serving reads here, before
        // it sends, so no read under its lease can miss the next leader's writes. Without it
        // the group waited an election timeout and then the lease (1.5 to 1.8 s of paused
        // writes on `shoal dev`, bench/results/2026-12-07-dev-vm-heal.md).
        if let Role::Leader(leader) = &self.role
            && !self.committed_membership.is_full_replica(self.id)
        {
            // Every member eligible holds the log through the removal (nothing goes after a
            // membership entry until it commits, I8), so prefer the one heard from last: one
            // gone silent would only waste the hand-over.
            let successor = self
                .committed_membership
                .members()
                .filter(|node| *node != self.id && self.committed_membership.is_full_replica(*node))
                .filter_map(|node| {
                    let progress = leader.progress.get(&node)?;
                    (progress.match_slot >= through).then_some((
                        progress.heard_at,
                        progress.match_slot,
                        node,
                    ))
                })
                .max()
                .map(|(_, _, node)| node);
            self.hand_over(now, successor, through);
        }
        let latest = self.latest_membership();
        if let Role::Leader(leader) = &mut self.role {
            let committed = &self.committed_membership;
            leader
                .progress
                .retain(|node, _| committed.contains(*node) || latest.contains(*node));
        }
    }

    /// Extends the lease to the send time of the newest heartbeat round that a quorum of every
    /// membership in play acknowledged, plus the lease duration, minus the drift bound (I7).
    /// Whether a quorum of both the committed and the latest membership (this leader counting
    /// itself) answered within the last `QUORUM_SILENCE_ELECTION_TIMEOUTS` election timeouts;
    /// always true during the first such window of a leadership.
    fn hears_from_a_quorum(&self, now: MonotonicTime) -> bool {
        let Role::Leader(leader) = &self.role else {
            return true;
        };
        let window = self
            .options
            .election_timeout_min
            .saturating_mul(QUORUM_SILENCE_ELECTION_TIMEOUTS);
        if now < leader.elected_at.saturating_add(window) {
            return true;
        }
        let recent = |node: NodeId| {
            node == self.id
                || leader
                    .progress
                    .get(&node)
                    .and_then(|progress| progress.heard_at)
                    .is_some_and(|heard| now < heard.saturating_add(window))
        };
        self.committed_membership.is_quorum(recent) && self.latest_membership().is_quorum(recent)
    }

    fn update_lease(&mut self) {
        let latest = self.latest_membership();
        let lease = self
            .options
            .lease_duration
            .saturating_sub(self.options.clock_drift_max);
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let quorum_round = |membership: &Membership| -> u64 {
            let mut rounds: Vec<u64> = membership
                .members()
                .map(|node| {
                    if node == self.id {
                        leader.round
                    } else {
                        leader
                            .progress
                            .get(&node)
                            .map_or(0, |progress| progress.acked_round)
                    }
                })
                .collect();
            rounds.sort_unstable_by(|a, b| b.cmp(a));
            rounds
                .get(membership.quorum_size() - 1)
                .copied()
                .unwrap_or(0)
        };
        let round = quorum_round(&self.committed_membership).min(quorum_round(&latest));
        if round == 0 {
            return;
        }
        if let Some((_, sent)) = leader.round_send_times.iter().find(|(r, _)| *r == round) {
            let until = sent.saturating_add(lease);
            leader.lease_until = Some(leader.lease_until.map_or(until, |old| old.max(until)));
        }
    }

    // ----- Plumbing --------------------------------------------------------------------------

    fn peers(&self) -> Vec<NodeId> {
        let latest = self.latest_membership();
        let mut peers: BTreeSet<NodeId> = self.committed_membership.members().collect();
        peers.extend(latest.members());
        peers.remove(&self.id);
        peers.into_iter().collect()
    }

    fn set_role(&mut self, role: Role) {
        let old = self.role.kind();
        self.role = role;
        let new = self.role.kind();
        if old != new {
            // Quiescence belongs to one role: a leader stepping down or a follower starting a
            // pre-check is awake (callers reset the timers they need).
            self.quiesced = false;
        }
        if old != new || new == RoleKind::Candidate || new == RoleKind::Leader {
            self.actions.push(Action::RoleChanged {
                role: new,
                ballot: self.promised,
            });
        }
    }

    fn draw_election_jitter(&mut self) {
        let jitter_nanos_max = duration_nanos(self.options.election_timeout_jitter).max(1);
        self.election_jitter_nanos = split_mix_64(&mut self.random_state) % jitter_nanos_max;
    }

    /// Whether this replica has never promised a ballot nor heard from a leader: its group may
    /// never have had one ([`FRESH_GROUP_ELECTION_TIMEOUT_DIVISOR`]).
    fn never_led(&self) -> bool {
        self.promised == Ballot::ZERO && self.last_leader_contact.is_none()
    }

    fn reset_election_deadline(&mut self, now: MonotonicTime) {
        let (minimum, jitter_nanos) = if self.never_led() {
            (
                self.options.election_timeout_min / FRESH_GROUP_ELECTION_TIMEOUT_DIVISOR,
                self.election_jitter_nanos / u64::from(FRESH_GROUP_ELECTION_TIMEOUT_DIVISOR),
            )
        } else {
            (
                self.options.election_timeout_min,
                self.election_jitter_nanos,
            )
        };
        self.election_deadline = now
            .saturating_add(minimum)
            .saturating_add(Duration::from_nanos(jitter_nanos));
    }

    fn persist(&mut self, promised: Option<Ballot>, entries: Vec<(Slot, LogEntry)>) -> Lsn {
        let lsn = Lsn(self.next_lsn);
        self.next_lsn += 1;
        self.actions.push(Action::Persist {
            lsn,
            promised,
            entries,
        });
        lsn
    }

    fn send(&mut self, to: NodeId, message: Message) {
        self.actions.push(Action::Send { to, message });
    }

    /// Sends `message` once every write issued so far is durable (I2). Waiting for the newest
    /// write rather than the exact one a reply depends on is simpler and only ever later.
    fn reply_after_durable(&mut self, to: NodeId, message: Message) {
        let needed = Lsn(self.next_lsn - 1);
        if needed <= self.durable_lsn {
            self.send(to, message);
            return;
        }
        self.held_replies.push_back((needed, to, message));
        if self.held_replies.len() > HELD_REPLIES_MAX {
            // Dropping the oldest held reply is message loss, which the protocol tolerates.
            self.held_replies.pop_front();
        }
    }

    /// Announces lease changes seen at this input and hands the actions over.
    fn finish(&mut self, now: MonotonicTime) -> Vec<Action> {
        let serving = self.can_serve_strong_read(now).is_ok();
        if serving != self.lease_announced {
            self.lease_announced = serving;
            self.actions.push(if serving {
                Action::LeaseAcquired
            } else {
                Action::LeaseLost
            });
        }
        std::mem::take(&mut self.actions)
    }
}
