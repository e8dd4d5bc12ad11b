//! Transactions under simulation (`--transactions`): a transfer workload over accounts spread
//! over every base group, run by coordinator actors that follow the router's protocol step by
//! step (router/server/src/router/transactions.rs) with real requests to the groups' leaders:
//! the ledger record written PENDING in the ledger group (one more group, keyed by `id` as the
//! router's ledger table is), TransactPrepare at every group concerned (the rest sent again
//! when a group locked only some), the decision (PENDING -> COMMITTED or CANCELLED,
//! conditional on the attempt's nonce), then TransactFinish while a group says there is more.
//! Coordinators crash between steps at a per-seed rate and forget their transaction; a
//! recovery actor does what `recover_transactions` does (lock listings of stale locks at every
//! group leader, each resolved through the ledger, a PENDING record cancelled first), and a
//! reader runs TransactGetItems (TransactRead at every group, then TransactConfirm), strong
//! GetItems and single-item writes that a lock must refuse. The checkers:
//!
//! - a TransactGetItems of every account that was not cancelled sees the initial total;
//! - no applied state of any replica holds a negative balance, nor does a strong read;
//! - after the run (every fault healed), coordinators start nothing new, and within
//!   `TRANSACTIONS_DRAIN_NANOS_MAX` every group's lock listing with no age limit answers none;
//!   then each account holds its initial balance plus the transfers of every ledger record
//!   that is COMMITTED (each applied exactly once, cancelled ones not at all), every decision a
//!   coordinator was told is what the ledger holds, and each account's marker is that of a
//!   write not refused and no older than the last acknowledged one (a write refused under a
//!   lock never applies; one acknowledged is never undone by a commit's older image).

use std::collections::VecDeque;

use shoal_model::encoding::decode_item;
use shoal_model::request::TransactAction;
use shoal_model::transaction::{CancellationCode, TransactionRef};

use super::*;

/// Accounts per base group; account `n` lives in group `n % groups`.
pub(crate) const ACCOUNTS_PER_GROUP: u64 = 3;
/// Every account starts with this balance, so the total is known.
pub(crate) const ACCOUNT_BALANCE_INITIAL: u64 = 100;
/// A transfer moves up to this much to each credited account: large against the balances, so
/// some debits fail their condition.
const TRANSFER_AMOUNT_MAX: u64 = 60;
/// Coordinators per seed, drawn in this range (every router coordinates transactions).
const COORDINATORS_MIN: u64 = 2;
const COORDINATORS_MAX: u64 = 3;
/// A call unanswered this long is given up with its outcome unknown, as a router's forwarded
/// call is when its answer does not come.
const TRANSACTION_CALL_TIMEOUT_NANOS: u64 = 500_000_000;
/// A call still refused (no leader, busy, not applied) this long after its first try is given
/// up, its outcome unknown: the router's request deadline.
const TRANSACTION_CALL_DEADLINE_NANOS: u64 = 2_000_000_000;
const _: () = assert!(TRANSACTION_CALL_TIMEOUT_NANOS < TRANSACTION_CALL_DEADLINE_NANOS);
/// Failed finishes of one group before a coordinator leaves its locks to recovery, and finish
/// rounds at most (the router's `FINISH_ATTEMPTS_MAX` and `FINISH_ROUNDS_MAX`).
const FINISH_ATTEMPTS_MAX: u32 = 3;
const FINISH_ROUNDS_MAX: u32 = 16;
/// A lock older than this is presumed abandoned (the router's `TRANSACTION_LOCK_STALE` is
/// 10 s; small here, so that recovery runs often and races live coordinators).
const TRANSACTION_LOCK_STALE_MS: u64 = 1_500;
/// The recovery actor lists every group's stale locks this often (the router: 10 s).
const TRANSACTION_RECOVERY_INTERVAL_NANOS: u64 = 1_000_000_000;
/// Coordinators crash between two steps at a per-seed rate up to this (per thousand steps),
/// and start again this long later, with nothing remembered.
const COORDINATOR_CRASH_PER_THOUSAND_MAX: u64 = 60;
const COORDINATOR_RESTART_NANOS: u64 = 100_000_000;
/// Coordinators wait up to this long between two transfers, the reader between two reads:
/// coordinators rest long enough that a TransactGetItems of every account often finds no lock.
const COORDINATOR_PAUSE_NANOS_MAX: u64 = 60_000_000;
const ACTOR_PAUSE_NANOS_MAX: u64 = 20_000_000;
/// The reader's mix, out of 100: TransactGetItems of every account, then of a few, then
/// strong GetItems; the rest are single-item writes a lock must refuse.
const READ_ALL_PERCENT: u64 = 40;
const READ_SOME_PERCENT: u64 = 20;
const GET_PERCENT: u64 = 25;
const _: () = assert!(READ_ALL_PERCENT + READ_SOME_PERCENT + GET_PERCENT < 100);
/// After the run, the healed cluster has this long to leave no lock anywhere; several
/// recovery intervals past the stale threshold.
pub(crate) const TRANSACTIONS_DRAIN_NANOS_MAX: u64 = 10_000_000_000;
const _: () = assert!(
    TRANSACTION_LOCK_STALE_MS * 1_000_000 + 3 * TRANSACTION_RECOVERY_INTERVAL_NANOS
        < TRANSACTIONS_DRAIN_NANOS_MAX
);
/// While draining, every group's locks are listed (no age limit) this often.
const LOCK_PROBE_INTERVAL_NANOS: u64 = 100_000_000;

/// Who makes a transaction call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Actor {
    /// Creates the accounts before anything else runs.
    Setup,
    Coordinator(usize),
    Recovery,
    Reader,
    /// After the run: lists every group's locks with no age limit.
    Probe,
}

/// How one call of an actor's step ended.
#[derive(Clone, Debug)]
pub(crate) enum CallOutcome {
    Answered(ItemResult),
    /// A DynamoDB error (a failed condition, a transaction conflict): its type name.
    Refused(String),
    /// Timed out, OutcomeUnknown, or refused past the deadline: it may or may not have been
    /// applied.
    Unknown,
}

/// One call of an actor's current step, to one group's believed leader.
pub(crate) struct Leg {
    group: usize,
    request: PreparedRequest,
    /// The attempt in flight: its reply token and when it was sent.
    call: Option<(u64, u64)>,
    send_at_nanos: u64,
    deadline_nanos: u64,
    outcome: Option<CallOutcome>,
}

/// A transfer and what the checkers need of it.
#[derive(Clone, Debug)]
pub(crate) struct Transfer {
    transaction: TransactionRef,
    /// Per group concerned, its actions in order.
    groups: Vec<(usize, Vec<TransactAction>)>,
}

/// What the checkers know of one transaction (by ledger key).
pub(crate) struct TransferRecord {
    /// Each account's balance change if it commits.
    deltas: Vec<(u64, i64)>,
    /// The decision its coordinator was told it recorded, if any.
    decided: Option<bool>,
}

/// Where one coordinator stands.
pub(crate) enum CoordinatorStep {
    Idle,
    /// The ledger record is (being) written PENDING.
    Beginning(Transfer),
    /// Prepares at every group concerned; `starts[i]` is the first action of group `i` not
    /// locked yet.
    Preparing {
        transfer: Transfer,
        starts: Vec<usize>,
        refused: bool,
    },
    /// The ledger record is (being) decided.
    Deciding {
        transfer: Transfer,
        commit: bool,
    },
    /// Finishes at every group still holding locks; failures per group, and rounds so far.
    Finishing {
        transfer: Transfer,
        commit: bool,
        failures: Vec<u32>,
        rounds: u32,
    },
    /// Crashed: starts again, remembering nothing, at this time.
    Down {
        restart_at_nanos: u64,
    },
}

/// How the recovery actor resolves one lock's transaction through the ledger.
pub(crate) enum Resolution {
    /// Reading the ledger record (the read count: two at most, as the router's `resolve`).
    Reading { reads: u32 },
    /// Cancelling a PENDING record of this attempt.
    Cancelling { reads: u32 },
    /// Finishing the locks at the group they were listed at.
    Finishing {
        commit: bool,
        failures: u32,
        rounds: u32,
    },
}

pub(crate) enum RecoveryStep {
    Idle {
        next_at_nanos: u64,
    },
    /// Lock listings at every base group.
    Listing,
    /// Resolving the listed locks one transaction at a time.
    Resolving {
        current: (usize, TransactionRef, Resolution),
        queue: VecDeque<(usize, TransactionRef)>,
    },
}

pub(crate) enum ReaderStep {
    Idle {
        next_at_nanos: u64,
    },
    /// TransactRead at every group of `accounts`.
    Reading {
        accounts: Vec<u64>,
    },
    /// TransactConfirm at every group, with the balances read.
    Confirming {
        accounts: Vec<u64>,
        balances: Vec<Option<i64>>,
    },
    Getting {
        account: u64,
    },
    Marking {
        account: u64,
        marker: u64,
    },
}

/// An actor's calls of its current step and its guesses of the groups' leaders.
pub(crate) struct Calls {
    legs: Vec<Leg>,
    leader_guess: Vec<NodeId>,
}

/// A reader's single-item write to an account, and how it ended.
pub(crate) struct Marking {
    account: u64,
    marker: u64,
    /// `Some(true)` acknowledged, `Some(false)` refused, `None` unknown.
    applied: Option<bool>,
}

/// The transactions' actors and what the checkers know.
#[derive(Default)]
pub(crate) struct Transactions {
    pub(crate) rng: Option<SeededRng>,
    crash_per_thousand: u64,
    /// The recovery actor reads the fastest node's clock (a router clock ahead of every
    /// node), or the clock of the node it asks.
    recovery_fastest_clock: bool,
    accounts_created: Vec<bool>,
    setup: Option<Calls>,
    coordinators: Vec<(Calls, CoordinatorStep)>,
    recovery: Option<(Calls, RecoveryStep)>,
    reader: Option<(Calls, ReaderStep)>,
    probe: Option<Calls>,
    /// Calls by reply token: the actor and its leg.
    pub(crate) calls: BTreeMap<u64, (Actor, usize)>,
    records: BTreeMap<String, TransferRecord>,
    next_transaction: u64,
    next_marker: u64,
    markings: Vec<Marking>,
    /// While draining: per group, whether its last listing found no lock and was sent once
    /// every coordinator was done (a listing sent earlier may miss a lock a coordinator took
    /// after it and then left to recovery).
    probe_clear: Vec<bool>,
    probe_sent_when_done: bool,
    probe_next_at_nanos: u64,
    draining: bool,
}

/// The actor's calls (each actor's `Calls`).
fn calls_of(transactions: &mut Transactions, actor: Actor) -> Option<&mut Calls> {
    match actor {
        Actor::Setup => transactions.setup.as_mut(),
        Actor::Coordinator(index) => transactions
            .coordinators
            .get_mut(index)
            .map(|(calls, _)| calls),
        Actor::Recovery => transactions.recovery.as_mut().map(|(calls, _)| calls),
        Actor::Reader => transactions.reader.as_mut().map(|(calls, _)| calls),
        Actor::Probe => transactions.probe.as_mut(),
    }
}

fn account_group(account: u64, groups: usize) -> usize {
    (account % groups as u64) as usize
}

impl Simulation {
    /// Transactions on: sets up the actors (`run` calls it once the cluster exists).
    pub(crate) fn start_transactions(&mut self, mut rng: SeededRng) {
        let groups = self.groups.len();
        let base = self.base_group_count();
        let guesses = |offset: usize, simulation: &Simulation| -> Vec<NodeId> {
            (0..groups)
                .map(|group| {
                    let members = &simulation.groups[group].members;
                    members[offset % members.len()]
                })
                .collect()
        };
        let calls = |offset: usize, simulation: &Simulation| Calls {
            legs: Vec::new(),
            leader_guess: guesses(offset, simulation),
        };
        let coordinators = COORDINATORS_MIN + rng.below(COORDINATORS_MAX - COORDINATORS_MIN + 1);
        let transactions = Transactions {
            crash_per_thousand: rng.below(COORDINATOR_CRASH_PER_THOUSAND_MAX + 1),
            recovery_fastest_clock: rng.below(2) == 0,
            accounts_created: vec![false; base * ACCOUNTS_PER_GROUP as usize],
            setup: Some(calls(0, self)),
            coordinators: (0..coordinators as usize)
                .map(|index| (calls(index, self), CoordinatorStep::Idle))
                .collect(),
            recovery: Some((
                calls(1, self),
                RecoveryStep::Idle {
                    next_at_nanos: TRANSACTION_RECOVERY_INTERVAL_NANOS,
                },
            )),
            reader: Some((calls(2, self), ReaderStep::Idle { next_at_nanos: 0 })),
            probe: Some(calls(0, self)),
            probe_clear: vec![false; base],
            rng: Some(rng),
            next_marker: 1,
            ..Transactions::default()
        };
        self.transactions = transactions;
    }

    fn transaction_rng(&mut self) -> &mut SeededRng {
        self.transactions.rng.as_mut().expect("transactions are on")
    }

    fn account_count(&self) -> u64 {
        self.transactions.accounts_created.len() as u64
    }

    /// Whether the ledger group owes an acknowledgement (majority liveness): only while some
    /// actor waits on a call to it.
    pub(crate) fn ledger_call_waiting(&self) -> bool {
        let Some(ledger) = self.ledger_group else {
            return false;
        };
        let transactions = &self.transactions;
        transactions
            .coordinators
            .iter()
            .map(|(calls, _)| calls)
            .chain(transactions.recovery.as_ref().map(|(calls, _)| calls))
            .flat_map(|calls| &calls.legs)
            .any(|leg| leg.group == ledger && leg.outcome.is_none())
    }

    /// One step of every transaction actor: calls given up after their timeout, calls due sent,
    /// and each actor whose step has all its answers moved on.
    pub(crate) fn run_transactions(&mut self) {
        if !self.options.transactions {
            return;
        }
        let mut actors = vec![Actor::Setup, Actor::Recovery, Actor::Reader, Actor::Probe];
        actors.extend((0..self.transactions.coordinators.len()).map(Actor::Coordinator));
        for actor in actors {
            self.expire_legs(actor);
            self.advance(actor);
            self.send_legs(actor);
        }
    }

    /// Gives up on calls unanswered for `TRANSACTION_CALL_TIMEOUT_NANOS`, or refused past
    /// their deadline: their outcome is unknown.
    fn expire_legs(&mut self, actor: Actor) {
        let now = self.now_nanos;
        let Some(calls) = calls_of(&mut self.transactions, actor) else {
            return;
        };
        let mut expired = Vec::new();
        for leg in &mut calls.legs {
            if leg.outcome.is_some() {
                continue;
            }
            let timed_out = leg
                .call
                .is_some_and(|(_, sent_at)| now >= sent_at + TRANSACTION_CALL_TIMEOUT_NANOS);
            if timed_out || (leg.call.is_none() && now >= leg.deadline_nanos) {
                if let Some((reply_to, _)) = leg.call.take() {
                    expired.push(reply_to);
                }
                leg.outcome = Some(CallOutcome::Unknown);
            }
        }
        for reply_to in expired {
            self.transactions.calls.remove(&reply_to);
            self.report.transaction_calls_timed_out += 1;
        }
    }

    /// Sends every leg of `actor` that is due and has no call in flight.
    fn send_legs(&mut self, actor: Actor) {
        let now = self.now_nanos;
        let count = match calls_of(&mut self.transactions, actor) {
            Some(calls) => calls.legs.len(),
            None => return,
        };
        for index in 0..count {
            let Some(calls) = calls_of(&mut self.transactions, actor) else {
                return;
            };
            let Some(leg) = calls.legs.get(index) else {
                return;
            };
            if leg.outcome.is_some() || leg.call.is_some() || leg.send_at_nanos > now {
                continue;
            }
            let group = leg.group;
            let node = calls.leader_guess[group];
            let request = leg.request.clone();
            if !self.is_up(node) {
                let guess = self.transaction_member(group);
                if let Some(calls) = calls_of(&mut self.transactions, actor) {
                    calls.leader_guess[group] = guess;
                    calls.legs[index].send_at_nanos = now + CLIENT_RETRY_NANOS;
                }
                continue;
            }
            let reply_to = self.take_reply_to();
            self.transactions.calls.insert(reply_to, (actor, index));
            if let Some(calls) = calls_of(&mut self.transactions, actor) {
                calls.legs[index].call = Some((reply_to, now));
            }
            // The answer may come back within the send.
            self.send_item_request(group, node, reply_to, request);
        }
    }

    /// A member of `group` to try when no leader is known.
    fn transaction_member(&mut self, group: usize) -> NodeId {
        let members = self.groups[group].members.clone();
        members[self.transaction_rng().below(members.len() as u64) as usize]
    }

    /// The answer to a transaction call (`on_reply` hands it over).
    pub(crate) fn transaction_answered(&mut self, reply_to: u64, response: NodeResponse) {
        let Some((actor, index)) = self.transactions.calls.remove(&reply_to) else {
            return;
        };
        let now = self.now_nanos;
        let ledger = self.ledger_group;
        let retry_guess = match &response {
            NodeResponse::Error(NodeError::NotLeader { leader_hint, .. }) => {
                let Some(calls) = calls_of(&mut self.transactions, actor) else {
                    return;
                };
                let Some(leg) = calls.legs.get(index) else {
                    return;
                };
                let asked = calls.leader_guess[leg.group];
                let group = leg.group;
                Some((group, leader_hint.map(NodeId).filter(|hint| *hint != asked)))
            }
            // The replica there was moved away (`--membership`): another member.
            NodeResponse::Error(NodeError::WrongOwner { .. }) => {
                let Some(calls) = calls_of(&mut self.transactions, actor) else {
                    return;
                };
                let Some(leg) = calls.legs.get(index) else {
                    return;
                };
                let (group, asked) = (leg.group, calls.leader_guess[leg.group]);
                if !self.moved_away(group, asked) {
                    return self.violation(format!(
                        "transactions: group {group}: {asked:?}, which hosts a replica, \
                         answered {actor:?} WrongOwner"
                    ));
                }
                Some((group, None))
            }
            _ => None,
        };
        let retry_guess = match retry_guess {
            Some((group, None)) => Some((group, self.transaction_member(group))),
            Some((group, Some(hint))) => Some((group, hint)),
            None => None,
        };
        let Some(calls) = calls_of(&mut self.transactions, actor) else {
            return;
        };
        let Some(leg) = calls.legs.get_mut(index) else {
            return;
        };
        if leg.call.map(|(token, _)| token) != Some(reply_to) {
            // An earlier attempt's answer, given up already.
            return;
        }
        leg.call = None;
        let group = leg.group;
        let mut acknowledged_ledger = false;
        match response {
            NodeResponse::Item { result, .. } => {
                acknowledged_ledger = Some(group) == ledger;
                leg.outcome = Some(CallOutcome::Answered(result));
            }
            NodeResponse::Error(NodeError::Dynamo { type_name, .. }) => {
                leg.outcome = Some(CallOutcome::Refused(type_name));
            }
            NodeResponse::Error(NodeError::NotLeader { .. } | NodeError::WrongOwner { .. }) => {
                if let Some((group, guess)) = retry_guess {
                    calls.leader_guess[group] = guess;
                }
                leg.send_at_nanos = now + CLIENT_RETRY_NANOS;
            }
            // Refused before taking effect (not ready, or its slot went to another entry):
            // sent again, as the router's forwarder does.
            NodeResponse::Error(NodeError::Busy { .. } | NodeError::NotApplied { .. }) => {
                leg.send_at_nanos = now + CLIENT_RETRY_NANOS;
            }
            NodeResponse::Error(NodeError::OutcomeUnknown { .. }) => {
                leg.outcome = Some(CallOutcome::Unknown);
            }
            other => {
                return self.violation(format!(
                    "transactions: group {group}: unexpected answer to {actor:?}: {other:?}"
                ));
            }
        }
        if acknowledged_ledger && let Some(ledger) = ledger {
            self.groups[ledger].acknowledged += 1;
        }
        self.advance(actor);
        self.send_legs(actor);
    }

    /// Replaces `actor`'s legs by one call per `(group, request)`.
    fn set_legs(&mut self, actor: Actor, requests: Vec<(usize, PreparedRequest)>) {
        let now = self.now_nanos;
        let Some(calls) = calls_of(&mut self.transactions, actor) else {
            return;
        };
        let in_flight: Vec<u64> = calls
            .legs
            .drain(..)
            .filter_map(|leg| leg.call.map(|(reply_to, _)| reply_to))
            .collect();
        for reply_to in in_flight {
            self.transactions.calls.remove(&reply_to);
        }
        let Some(calls) = calls_of(&mut self.transactions, actor) else {
            return;
        };
        calls.legs = requests
            .into_iter()
            .map(|(group, request)| Leg {
                group,
                request,
                call: None,
                send_at_nanos: now,
                deadline_nanos: now + TRANSACTION_CALL_DEADLINE_NANOS,
                outcome: None,
            })
            .collect();
    }

    /// The outcomes of `actor`'s legs once every one has one (then the legs are cleared).
    fn take_outcomes(&mut self, actor: Actor) -> Option<Vec<(usize, CallOutcome)>> {
        let calls = calls_of(&mut self.transactions, actor)?;
        if calls.legs.is_empty() || calls.legs.iter().any(|leg| leg.outcome.is_none()) {
            return None;
        }
        Some(
            calls
                .legs
                .drain(..)
                .map(|leg| (leg.group, leg.outcome.unwrap_or(CallOutcome::Unknown)))
                .collect(),
        )
    }

    /// Moves `actor` on when its step has every answer (or starts its next operation).
    fn advance(&mut self, actor: Actor) {
        match actor {
            Actor::Setup => self.advance_setup(),
            Actor::Coordinator(index) => self.advance_coordinator(index),
            Actor::Recovery => self.advance_recovery(),
            Actor::Reader => self.advance_reader(),
            Actor::Probe => self.advance_probe(),
        }
    }

    fn accounts_ready(&self) -> bool {
        self.transactions
            .accounts_created
            .iter()
            .all(|created| *created)
    }

    /// Creates every account (PutItem if absent) until each is acknowledged or found.
    fn advance_setup(&mut self) {
        if self.accounts_ready() {
            return;
        }
        let pending = self
            .transactions
            .setup
            .as_ref()
            .is_some_and(|calls| !calls.legs.is_empty());
        let base = self.base_group_count();
        let missing: Vec<u64> = (0..self.account_count())
            .filter(|account| !self.transactions.accounts_created[*account as usize])
            .collect();
        if pending {
            let Some(outcomes) = self.take_outcomes(Actor::Setup) else {
                return;
            };
            for (account, (_, outcome)) in missing.iter().zip(outcomes) {
                // Created now, or by an earlier attempt whose answer was lost.
                let created = match outcome {
                    CallOutcome::Answered(_) => true,
                    CallOutcome::Refused(type_name) => type_name == CONDITION_FAILED,
                    CallOutcome::Unknown => false,
                };
                self.transactions.accounts_created[*account as usize] = created;
            }
            if self.accounts_ready() {
                return;
            }
        }
        let requests = (0..self.account_count())
            .filter(|account| !self.transactions.accounts_created[*account as usize])
            .map(|account| {
                (
                    account_group(account, base),
                    requests::account_create_request(account, ACCOUNT_BALANCE_INITIAL),
                )
            })
            .collect();
        self.set_legs(Actor::Setup, requests);
    }

    /// Whether a coordinator crashes now, between two steps (never while draining).
    fn coordinator_crashes(&mut self) -> bool {
        let rate = self.transactions.crash_per_thousand;
        !self.transactions.draining && self.transaction_rng().below(1000) < rate
    }

    fn coordinator_step(&mut self, index: usize) -> CoordinatorStep {
        std::mem::replace(
            &mut self.transactions.coordinators[index].1,
            CoordinatorStep::Idle,
        )
    }

    fn set_coordinator_step(&mut self, index: usize, step: CoordinatorStep) {
        self.transactions.coordinators[index].1 = step;
    }

    /// One coordinator: the router's `transact_write_items` and `run_transaction`, step by step.
    fn advance_coordinator(&mut self, index: usize) {
        let actor = Actor::Coordinator(index);
        let step = self.coordinator_step(index);
        let pending = !self.transactions.coordinators[index].0.legs.is_empty();
        let outcomes = if pending {
            match self.take_outcomes(actor) {
                Some(outcomes) => Some(outcomes),
                None => return self.set_coordinator_step(index, step),
            }
        } else {
            None
        };
        // Between two steps (every answer in): the coordinator may crash, forgetting it all.
        if outcomes.is_some() && self.coordinator_crashes() {
            self.fault("transactions: coordinator crash");
            self.set_legs(actor, Vec::new());
            return self.set_coordinator_step(
                index,
                CoordinatorStep::Down {
                    restart_at_nanos: self.now_nanos + COORDINATOR_RESTART_NANOS,
                },
            );
        }
        let next = match (step, outcomes) {
            (CoordinatorStep::Down { restart_at_nanos }, _) => {
                if restart_at_nanos > self.now_nanos {
                    CoordinatorStep::Down { restart_at_nanos }
                } else {
                    CoordinatorStep::Idle
                }
            }
            (CoordinatorStep::Idle, _) => self.begin_transfer(index),
            (CoordinatorStep::Beginning(transfer), Some(outcomes)) => {
                match &outcomes[0].1 {
                    CallOutcome::Answered(_) => {
                        let starts = vec![0; transfer.groups.len()];
                        self.send_prepares(actor, &transfer, &starts);
                        CoordinatorStep::Preparing {
                            transfer,
                            starts,
                            refused: false,
                        }
                    }
                    // The router gives up: no lock was taken (a record whose write is unknown
                    // stays PENDING with no lock; it expires in production).
                    _ => {
                        self.report.transactions_abandoned += 1;
                        self.idle_later(index)
                    }
                }
            }
            (
                CoordinatorStep::Preparing {
                    transfer,
                    mut starts,
                    mut refused,
                },
                Some(outcomes),
            ) => {
                let mut unknown = false;
                let mut again = false;
                let mut next_starts = starts.clone();
                // The legs went to the groups not fully locked, in order.
                let positions: Vec<usize> = (0..starts.len())
                    .filter(|position| starts[*position] != usize::MAX)
                    .collect();
                for (leg, (_, outcome)) in outcomes.iter().enumerate() {
                    let Some(&position) = positions.get(leg) else {
                        continue;
                    };
                    let actions = transfer.groups[position].1.len() - starts[position];
                    match outcome {
                        CallOutcome::Answered(ItemResult::TransactPrepared {
                            reasons,
                            locked,
                            ..
                        }) => {
                            let locked = *locked as usize;
                            if reasons.len() != actions || locked == 0 {
                                self.violation(format!(
                                    "transactions: a prepare of {actions} actions answered \
                                     {} reasons, {locked} locked",
                                    reasons.len()
                                ));
                                unknown = true;
                                continue;
                            }
                            if reasons
                                .iter()
                                .any(|reason| reason.code != CancellationCode::None.code())
                            {
                                refused = true;
                                continue;
                            }
                            if locked < actions {
                                // The rest in another prepare (`locked` counts from the start).
                                next_starts[position] = starts[position] + locked;
                                again = true;
                            } else {
                                next_starts[position] = usize::MAX;
                            }
                        }
                        // The broken variant's listing in place of a prepare: taken as locked.
                        CallOutcome::Answered(ItemResult::TransactLocks { .. })
                            if self.options.broken == Some(Broken::CommitWithoutPrepare) =>
                        {
                            next_starts[position] = usize::MAX;
                        }
                        CallOutcome::Answered(other) => {
                            self.violation(format!("transactions: a prepare answered {other:?}"));
                            unknown = true;
                        }
                        CallOutcome::Refused(_) | CallOutcome::Unknown => unknown = true,
                    }
                }
                starts = next_starts;
                if again && !refused && !unknown {
                    self.send_prepares(actor, &transfer, &starts);
                    CoordinatorStep::Preparing {
                        transfer,
                        starts,
                        refused,
                    }
                } else {
                    // The router's step 4: any refusal or unknown outcome cancels.
                    let commit = !refused && !unknown;
                    self.send_decision(actor, &transfer, commit);
                    CoordinatorStep::Deciding { transfer, commit }
                }
            }
            (CoordinatorStep::Deciding { transfer, commit }, Some(outcomes)) => {
                match &outcomes[0].1 {
                    CallOutcome::Answered(_) => {
                        if let Some(record) = self
                            .transactions
                            .records
                            .get_mut(&transfer.transaction.ledger_key)
                        {
                            record.decided = Some(commit);
                        }
                        if commit {
                            self.report.transactions_committed += 1;
                        } else {
                            self.report.transactions_cancelled += 1;
                        }
                        self.send_finishes(actor, &transfer, commit, None);
                        CoordinatorStep::Finishing {
                            failures: vec![0; transfer.groups.len()],
                            transfer,
                            commit,
                            rounds: 1,
                        }
                    }
                    // The recovery loop cancelled it first (only it cancels another's record).
                    CallOutcome::Refused(type_name) if type_name == CONDITION_FAILED => {
                        if let Some(record) = self
                            .transactions
                            .records
                            .get_mut(&transfer.transaction.ledger_key)
                        {
                            record.decided = Some(false);
                        }
                        self.report.transactions_cancelled += 1;
                        self.send_finishes(actor, &transfer, false, None);
                        CoordinatorStep::Finishing {
                            failures: vec![0; transfer.groups.len()],
                            transfer,
                            commit: false,
                            rounds: 1,
                        }
                    }
                    // Unknown whether it was recorded: the locks are left to recovery.
                    _ => {
                        self.report.transactions_abandoned += 1;
                        self.idle_later(index)
                    }
                }
            }
            (
                CoordinatorStep::Finishing {
                    transfer,
                    commit,
                    mut failures,
                    rounds,
                },
                Some(outcomes),
            ) => {
                let mut remaining = Vec::new();
                for ((group, outcome), position) in outcomes
                    .into_iter()
                    .zip(self.finishing_positions(&transfer, &failures))
                {
                    match outcome {
                        CallOutcome::Answered(ItemResult::TransactFinished {
                            more: false, ..
                        }) => {
                            failures[position] = u32::MAX;
                        }
                        CallOutcome::Answered(ItemResult::TransactFinished {
                            more: true, ..
                        }) => {
                            remaining.push(group);
                        }
                        _ => {
                            failures[position] += 1;
                            if failures[position] < FINISH_ATTEMPTS_MAX {
                                remaining.push(group);
                            }
                        }
                    }
                }
                if remaining.is_empty() || rounds >= FINISH_ROUNDS_MAX {
                    self.idle_later(index)
                } else {
                    self.send_finishes(actor, &transfer, commit, Some(&failures));
                    CoordinatorStep::Finishing {
                        transfer,
                        commit,
                        failures,
                        rounds: rounds + 1,
                    }
                }
            }
            (step, None) => step,
        };
        self.set_coordinator_step(index, next);
    }

    /// A coordinator between transactions: idle for a short random pause (as `Down` until
    /// then, which a crash cannot shorten).
    fn idle_later(&mut self, _index: usize) -> CoordinatorStep {
        let pause = self.transaction_rng().below(COORDINATOR_PAUSE_NANOS_MAX);
        CoordinatorStep::Down {
            restart_at_nanos: self.now_nanos + pause,
        }
    }

    /// Sends the prepares of every group of `transfer` not fully locked yet (the broken
    /// variant `CommitWithoutPrepare` leaves the last group out of coordinator 0's).
    fn send_prepares(&mut self, actor: Actor, transfer: &Transfer, starts: &[usize]) {
        let skip_last = actor == Actor::Coordinator(0)
            && self.options.broken == Some(Broken::CommitWithoutPrepare)
            && transfer.groups.len() > 1;
        let mut requests = Vec::new();
        for (position, (group, actions)) in transfer.groups.iter().enumerate() {
            let start = starts[position];
            if start == usize::MAX {
                continue;
            }
            let request = PreparedRequest::TransactPrepare {
                transaction: transfer.transaction.clone(),
                actions: actions[start..].to_vec(),
            };
            if skip_last && position + 1 == transfer.groups.len() {
                self.fault("broken: prepare skipped");
                // A listing asked instead, so the step still has one answer per group.
                requests.push((
                    *group,
                    PreparedRequest::TransactLocks {
                        prepared_before_ms: 0,
                    },
                ));
                continue;
            }
            requests.push((*group, request));
        }
        self.set_legs(actor, requests);
    }

    fn send_decision(&mut self, actor: Actor, transfer: &Transfer, commit: bool) {
        let Some(ledger) = self.ledger_group else {
            return;
        };
        let state = if commit {
            requests::LEDGER_COMMITTED
        } else {
            requests::LEDGER_CANCELLED
        };
        let request = requests::ledger_decide_request(
            &transfer.transaction.ledger_key,
            transfer.transaction.nonce,
            state,
        );
        self.set_legs(actor, vec![(ledger, request)]);
    }

    /// The group positions still finishing (failures below the limit and not done), in order.
    fn finishing_positions(&self, transfer: &Transfer, failures: &[u32]) -> Vec<usize> {
        (0..transfer.groups.len())
            .filter(|position| failures[*position] < FINISH_ATTEMPTS_MAX)
            .collect()
    }

    /// Sends the finish to every group of `transfer` still finishing (all on the first round).
    fn send_finishes(
        &mut self,
        actor: Actor,
        transfer: &Transfer,
        commit: bool,
        failures: Option<&[u32]>,
    ) {
        let all = vec![0; transfer.groups.len()];
        let failures = failures.unwrap_or(&all);
        let requests = self
            .finishing_positions(transfer, failures)
            .into_iter()
            .map(|position| {
                (
                    transfer.groups[position].0,
                    finish_request(&transfer.transaction, commit),
                )
            })
            .collect();
        self.set_legs(actor, requests);
    }

    /// A new transfer: two or three distinct accounts, the first debited (under the condition
    /// that it holds enough) for the amount it credits each other, and sometimes a
    /// ConditionCheck of another account. Its ledger record is written first.
    fn begin_transfer(&mut self, index: usize) -> CoordinatorStep {
        if self.transactions.draining || self.clients_stopped || !self.accounts_ready() {
            return CoordinatorStep::Idle;
        }
        let base = self.base_group_count();
        let count = self.account_count();
        let rng = self.transaction_rng();
        let involved = 2 + rng.below(2) as usize;
        let with_check = rng.below(4) == 0;
        let mut accounts: Vec<u64> = Vec::new();
        while accounts.len() < involved + usize::from(with_check) && (accounts.len() as u64) < count
        {
            let account = rng.below(count);
            if !accounts.contains(&account) {
                accounts.push(account);
            }
        }
        let amount = 1 + rng.below(TRANSFER_AMOUNT_MAX);
        let least = rng.below(2 * ACCOUNT_BALANCE_INITIAL);
        let nonce = rng.next_u64();
        let credits = (involved - 1) as u64;
        let mut deltas = Vec::new();
        let mut by_group: BTreeMap<usize, Vec<TransactAction>> = BTreeMap::new();
        for (position, account) in accounts.iter().enumerate() {
            let action = if position == 0 {
                deltas.push((*account, -((amount * credits) as i64)));
                requests::account_debit_action(*account, amount * credits)
            } else if position < involved {
                deltas.push((*account, amount as i64));
                requests::account_credit_action(*account, amount)
            } else {
                requests::account_check_action(*account, least)
            };
            by_group
                .entry(account_group(*account, base))
                .or_default()
                .push(action);
        }
        let ledger_key = format!("x#{}", self.transactions.next_transaction);
        self.transactions.next_transaction += 1;
        let transfer = Transfer {
            transaction: TransactionRef {
                ledger_key: ledger_key.clone(),
                nonce,
            },
            groups: by_group.into_iter().collect(),
        };
        self.transactions.records.insert(
            ledger_key.clone(),
            TransferRecord {
                deltas,
                decided: None,
            },
        );
        self.report.transactions_started += 1;
        let Some(ledger) = self.ledger_group else {
            return CoordinatorStep::Idle;
        };
        self.set_legs(
            Actor::Coordinator(index),
            vec![(ledger, requests::ledger_begin_request(&ledger_key, nonce))],
        );
        CoordinatorStep::Beginning(transfer)
    }

    /// The wall clock the recovery actor compares lock ages with, unix ms.
    fn recovery_clock_ms(&self, asked: NodeId) -> u64 {
        if self.transactions.recovery_fastest_clock || self.transactions.draining {
            self.nodes
                .keys()
                .map(|node| self.unix_ms(*node))
                .max()
                .unwrap_or(0)
        } else {
            self.unix_ms(asked)
        }
    }

    /// The recovery actor: the router's `recover_transactions` and `resolve`.
    fn advance_recovery(&mut self) {
        let Some((_, step)) = self.transactions.recovery.as_mut() else {
            return;
        };
        let step = std::mem::replace(step, RecoveryStep::Idle { next_at_nanos: 0 });
        let next = match step {
            RecoveryStep::Idle { next_at_nanos } => {
                if next_at_nanos > self.now_nanos || !self.accounts_ready() {
                    RecoveryStep::Idle { next_at_nanos }
                } else {
                    let base = self.base_group_count();
                    let guesses = self
                        .transactions
                        .recovery
                        .as_ref()
                        .map(|(calls, _)| calls.leader_guess.clone())
                        .unwrap_or_default();
                    let requests = (0..base)
                        .map(|group| {
                            let now_ms = self.recovery_clock_ms(guesses[group]);
                            (
                                group,
                                PreparedRequest::TransactLocks {
                                    prepared_before_ms: now_ms
                                        .saturating_sub(TRANSACTION_LOCK_STALE_MS),
                                },
                            )
                        })
                        .collect();
                    self.set_legs(Actor::Recovery, requests);
                    RecoveryStep::Listing
                }
            }
            RecoveryStep::Listing => match self.take_outcomes(Actor::Recovery) {
                None => RecoveryStep::Listing,
                Some(outcomes) => {
                    let mut queue = VecDeque::new();
                    for (group, outcome) in outcomes {
                        if let CallOutcome::Answered(ItemResult::TransactLocks { locks }) = outcome
                        {
                            for lock in locks {
                                queue.push_back((
                                    group,
                                    TransactionRef {
                                        ledger_key: lock.ledger_key,
                                        nonce: lock.nonce,
                                    },
                                ));
                            }
                        }
                    }
                    self.next_resolution(queue)
                }
            },
            RecoveryStep::Resolving { current, queue } => {
                match self.take_outcomes(Actor::Recovery) {
                    None => RecoveryStep::Resolving { current, queue },
                    Some(outcomes) => self.resolve_step(current, queue, outcomes[0].1.clone()),
                }
            }
        };
        if let Some((_, step)) = self.transactions.recovery.as_mut() {
            *step = next;
        }
    }

    /// Starts resolving the next listed lock, or ends the pass.
    fn next_resolution(&mut self, mut queue: VecDeque<(usize, TransactionRef)>) -> RecoveryStep {
        let Some((group, transaction)) = queue.pop_front() else {
            return RecoveryStep::Idle {
                next_at_nanos: self.now_nanos + TRANSACTION_RECOVERY_INTERVAL_NANOS,
            };
        };
        self.recovery_read(&transaction);
        RecoveryStep::Resolving {
            current: (group, transaction, Resolution::Reading { reads: 1 }),
            queue,
        }
    }

    fn recovery_read(&mut self, transaction: &TransactionRef) {
        if let Some(ledger) = self.ledger_group {
            let request = requests::ledger_read_request(&transaction.ledger_key);
            self.set_legs(Actor::Recovery, vec![(ledger, request)]);
        }
    }

    fn recovery_finish(
        &mut self,
        group: usize,
        transaction: TransactionRef,
        commit: bool,
        failures: u32,
        rounds: u32,
        queue: VecDeque<(usize, TransactionRef)>,
    ) -> RecoveryStep {
        self.set_legs(
            Actor::Recovery,
            vec![(group, finish_request(&transaction, commit))],
        );
        RecoveryStep::Resolving {
            current: (
                group,
                transaction,
                Resolution::Finishing {
                    commit,
                    failures,
                    rounds,
                },
            ),
            queue,
        }
    }

    /// One answer of a resolution: the ledger read, the cancellation, or a finish.
    fn resolve_step(
        &mut self,
        (group, transaction, resolution): (usize, TransactionRef, Resolution),
        queue: VecDeque<(usize, TransactionRef)>,
        outcome: CallOutcome,
    ) -> RecoveryStep {
        let end_of_pass = |simulation: &Simulation| RecoveryStep::Idle {
            next_at_nanos: simulation.now_nanos + TRANSACTION_RECOVERY_INTERVAL_NANOS,
        };
        match (resolution, outcome) {
            (Resolution::Reading { reads }, CallOutcome::Answered(ItemResult::Get { item })) => {
                let record = match item.as_deref().map(decode_item) {
                    None => None,
                    Some(Ok(item)) => match requests::parse_ledger_record(&item) {
                        Ok(record) => Some(record),
                        Err(error) => {
                            self.violation(format!("transactions: {error}"));
                            return end_of_pass(self);
                        }
                    },
                    Some(Err(error)) => {
                        self.violation(format!("transactions: a ledger read: {error:?}"));
                        return end_of_pass(self);
                    }
                };
                let commit = match record {
                    Some((_, state, nonce)) if nonce == transaction.nonce => {
                        if state == requests::LEDGER_PENDING {
                            if let Some(ledger) = self.ledger_group {
                                let request = requests::ledger_decide_request(
                                    &transaction.ledger_key,
                                    transaction.nonce,
                                    requests::LEDGER_CANCELLED,
                                );
                                self.set_legs(Actor::Recovery, vec![(ledger, request)]);
                            }
                            return RecoveryStep::Resolving {
                                current: (group, transaction, Resolution::Cancelling { reads }),
                                queue,
                            };
                        }
                        state == requests::LEDGER_COMMITTED
                    }
                    // No record of this attempt: cancelled.
                    _ => false,
                };
                self.report.transactions_recovered += 1;
                self.recovery_finish(group, transaction, commit, 0, 1, queue)
            }
            (Resolution::Cancelling { .. }, CallOutcome::Answered(_)) => {
                self.report.transactions_recovered += 1;
                self.recovery_finish(group, transaction, false, 0, 1, queue)
            }
            (Resolution::Cancelling { reads }, CallOutcome::Refused(type_name))
                if type_name == CONDITION_FAILED =>
            {
                if reads < 2 {
                    self.recovery_read(&transaction);
                    RecoveryStep::Resolving {
                        current: (group, transaction, Resolution::Reading { reads: reads + 1 }),
                        queue,
                    }
                } else {
                    self.report.transactions_recovered += 1;
                    self.recovery_finish(group, transaction, false, 0, 1, queue)
                }
            }
            (
                Resolution::Finishing {
                    commit,
                    failures,
                    rounds,
                },
                outcome,
            ) => {
                let (more, failures) = match outcome {
                    CallOutcome::Answered(ItemResult::TransactFinished { more, .. }) => {
                        (more, failures)
                    }
                    _ => (true, failures + 1),
                };
                if more && failures < FINISH_ATTEMPTS_MAX && rounds < FINISH_ROUNDS_MAX {
                    self.recovery_finish(group, transaction, commit, failures, rounds + 1, queue)
                } else {
                    self.next_resolution(queue)
                }
            }
            // A ledger call failed: the router's pass ends with the error.
            _ => end_of_pass(self),
        }
    }

    /// The reader: TransactGetItems (all accounts, or a few), strong GetItems, and writes a
    /// lock must refuse.
    fn advance_reader(&mut self) {
        let Some((_, step)) = self.transactions.reader.as_mut() else {
            return;
        };
        let step = std::mem::replace(step, ReaderStep::Idle { next_at_nanos: 0 });
        let pause = |simulation: &mut Simulation| ReaderStep::Idle {
            next_at_nanos: simulation.now_nanos
                + simulation.transaction_rng().below(ACTOR_PAUSE_NANOS_MAX),
        };
        let next = match step {
            ReaderStep::Idle { next_at_nanos } => {
                if next_at_nanos > self.now_nanos
                    || !self.accounts_ready()
                    || self.clients_stopped
                    || self.transactions.draining
                {
                    ReaderStep::Idle { next_at_nanos }
                } else {
                    self.start_read()
                }
            }
            ReaderStep::Reading { accounts } => match self.take_outcomes(Actor::Reader) {
                None => ReaderStep::Reading { accounts },
                Some(outcomes) => self.transact_read_answered(accounts, outcomes),
            },
            ReaderStep::Confirming { accounts, balances } => {
                match self.take_outcomes(Actor::Reader) {
                    None => ReaderStep::Confirming { accounts, balances },
                    Some(outcomes) => {
                        let unchanged = outcomes.iter().all(|(_, outcome)| {
                            matches!(
                                outcome,
                                CallOutcome::Answered(ItemResult::TransactConfirmed {
                                    unchanged: true
                                })
                            )
                        });
                        if unchanged {
                            self.consistent_read(&accounts, &balances);
                        } else {
                            self.report.transact_reads_cancelled += 1;
                        }
                        pause(self)
                    }
                }
            }
            ReaderStep::Getting { account } => match self.take_outcomes(Actor::Reader) {
                None => ReaderStep::Getting { account },
                Some(outcomes) => {
                    if let CallOutcome::Answered(ItemResult::Get { item }) = &outcomes[0].1 {
                        self.report.account_reads_checked += 1;
                        let parsed = item
                            .as_deref()
                            .map(|bytes| decode_item(bytes).map_err(|error| format!("{error:?}")))
                            .transpose()
                            .and_then(|item| {
                                item.as_ref().map(requests::parse_account).transpose()
                            });
                        match parsed {
                            Ok(Some((_, balance, _))) if balance < 0 => self.violation(format!(
                                "transactions: a strong read of account a{account} shows balance \
                                 {balance}"
                            )),
                            Ok(Some(_)) => {}
                            Ok(None) => self.violation(format!(
                                "transactions: a strong read found no account a{account}"
                            )),
                            Err(error) => self.violation(format!("transactions: {error}")),
                        }
                    }
                    pause(self)
                }
            },
            ReaderStep::Marking { account, marker } => match self.take_outcomes(Actor::Reader) {
                None => ReaderStep::Marking { account, marker },
                Some(outcomes) => {
                    let applied = match &outcomes[0].1 {
                        CallOutcome::Answered(_) => Some(true),
                        CallOutcome::Refused(type_name)
                            if type_name == "TransactionConflictException" =>
                        {
                            self.report.conflicting_writes_refused += 1;
                            Some(false)
                        }
                        CallOutcome::Refused(other) => {
                            self.violation(format!(
                                "transactions: a write to account a{account} answered {other}"
                            ));
                            Some(false)
                        }
                        CallOutcome::Unknown => None,
                    };
                    self.transactions.markings.push(Marking {
                        account,
                        marker,
                        applied,
                    });
                    pause(self)
                }
            },
        };
        if let Some((_, step)) = self.transactions.reader.as_mut() {
            *step = next;
        }
    }

    /// Starts the reader's next operation.
    fn start_read(&mut self) -> ReaderStep {
        let base = self.base_group_count();
        let count = self.account_count();
        let rng = self.transaction_rng();
        let kind = rng.below(100);
        if kind < READ_ALL_PERCENT + READ_SOME_PERCENT {
            let accounts: Vec<u64> = if kind < READ_ALL_PERCENT {
                (0..count).collect()
            } else {
                let mut some: Vec<u64> = (0..count).filter(|_| rng.below(2) == 0).collect();
                if some.is_empty() {
                    some.push(rng.below(count));
                }
                some
            };
            let mut by_group: BTreeMap<usize, Vec<shoal_model::request::GetRequest>> =
                BTreeMap::new();
            for account in &accounts {
                by_group
                    .entry(account_group(*account, base))
                    .or_default()
                    .push(requests::account_get(*account));
            }
            let requests = by_group
                .into_iter()
                .map(|(group, gets)| (group, PreparedRequest::TransactRead { gets }))
                .collect();
            self.set_legs(Actor::Reader, requests);
            return ReaderStep::Reading { accounts };
        }
        let account = rng.below(count);
        let group = account_group(account, base);
        if kind < READ_ALL_PERCENT + READ_SOME_PERCENT + GET_PERCENT {
            let get = requests::account_get(account);
            self.set_legs(Actor::Reader, vec![(group, PreparedRequest::Get(get))]);
            return ReaderStep::Getting { account };
        }
        let marker = self.transactions.next_marker;
        self.transactions.next_marker += 1;
        self.set_legs(
            Actor::Reader,
            vec![(group, requests::account_mark_request(account, marker))],
        );
        ReaderStep::Marking { account, marker }
    }

    /// The TransactRead answers of every group: cancelled if any item is locked or a read
    /// failed; else confirmed at every group (several) or consistent at once (one).
    fn transact_read_answered(
        &mut self,
        accounts: Vec<u64>,
        outcomes: Vec<(usize, CallOutcome)>,
    ) -> ReaderStep {
        let base = self.base_group_count();
        let mut balances: Vec<Option<i64>> = vec![None; accounts.len()];
        let mut confirms = Vec::new();
        for (group, outcome) in outcomes {
            let CallOutcome::Answered(ItemResult::TransactRead {
                items,
                locked,
                applied_slot,
            }) = outcome
            else {
                self.report.transact_reads_cancelled += 1;
                return self.reader_pause();
            };
            if locked {
                self.report.transact_reads_cancelled += 1;
                return self.reader_pause();
            }
            let members: Vec<usize> = (0..accounts.len())
                .filter(|position| account_group(accounts[*position], base) == group)
                .collect();
            if items.len() != members.len() {
                self.violation(format!(
                    "transactions: a TransactRead of {} items answered {}",
                    members.len(),
                    items.len()
                ));
                return self.reader_pause();
            }
            for (position, bytes) in members.iter().zip(items) {
                let Some(bytes) = bytes else {
                    self.violation(format!(
                        "transactions: a TransactRead found no account a{}",
                        accounts[*position]
                    ));
                    return self.reader_pause();
                };
                match decode_item(&bytes)
                    .map_err(|error| format!("{error:?}"))
                    .and_then(|item| requests::parse_account(&item))
                {
                    Ok((_, balance, _)) => balances[*position] = Some(balance),
                    Err(error) => {
                        self.violation(format!("transactions: {error}"));
                        return self.reader_pause();
                    }
                }
            }
            let storage_keys = members
                .iter()
                .map(|position| requests::account_get(accounts[*position]).storage_key)
                .collect();
            confirms.push((
                group,
                PreparedRequest::TransactConfirm {
                    storage_keys,
                    since: applied_slot,
                },
            ));
        }
        if confirms.len() > 1 {
            self.set_legs(Actor::Reader, confirms);
            return ReaderStep::Confirming { accounts, balances };
        }
        self.consistent_read(&accounts, &balances);
        self.reader_pause()
    }

    fn reader_pause(&mut self) -> ReaderStep {
        let pause = self.transaction_rng().below(ACTOR_PAUSE_NANOS_MAX);
        ReaderStep::Idle {
            next_at_nanos: self.now_nanos + pause,
        }
    }

    /// A TransactGetItems that was not cancelled: no balance negative, and a read of every
    /// account sees the initial total.
    fn consistent_read(&mut self, accounts: &[u64], balances: &[Option<i64>]) {
        self.report.transact_reads_consistent += 1;
        let balances: Vec<i64> = balances
            .iter()
            .map(|balance| balance.unwrap_or(0))
            .collect();
        if let Some((position, balance)) = balances
            .iter()
            .enumerate()
            .find(|(_, balance)| **balance < 0)
        {
            self.violation(format!(
                "transactions: a TransactGetItems shows account a{} with balance {balance}",
                accounts[position]
            ));
        }
        if accounts.len() as u64 == self.account_count() {
            let total: i64 = balances.iter().sum();
            let expected = (self.account_count() * ACCOUNT_BALANCE_INITIAL) as i64;
            if total != expected {
                self.violation(format!(
                    "transactions: a TransactGetItems of every account (not cancelled) at {} ms \
                     sees a total of {total}, not {expected}: {balances:?}",
                    self.now_nanos / 1_000_000
                ));
            }
        }
    }

    /// Checks an applied state of a base replica: no account's balance is negative.
    pub(crate) fn check_account_balances(
        &mut self,
        id: NodeId,
        group: usize,
        slot: Slot,
        accounts: &BTreeMap<u64, i64>,
    ) {
        if let Some((account, balance)) = accounts.iter().find(|(_, balance)| **balance < 0) {
            self.violation(format!(
                "transactions: {id:?} group {group} at {slot:?} holds account a{account} with \
                 balance {balance}"
            ));
        }
    }

    /// Checks a ledger replica's applied state (a Scan at `slot`): its digest against the
    /// other ledger replicas' at that slot.
    pub(crate) fn observe_ledger(
        &mut self,
        id: NodeId,
        group: usize,
        slot: Slot,
        scan: Option<ItemResult>,
    ) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.observed_applied.insert(group, slot);
        }
        let Some(ItemResult::Range { items, .. }) = &scan else {
            return self.violation(format!("{id:?} group {group}: a ledger scan got no items"));
        };
        self.trace(id, group, &[11, slot.0, items.len() as u64]);
        let fuzzy = self.nodes[&id]
            .fuzzy_until
            .get(&group)
            .is_some_and(|until| slot < *until);
        if fuzzy {
            return;
        }
        let digest = items.iter().fold(FNV_OFFSET_BASIS, |hash, item| {
            fnv1a(fnv1a(hash, &(item.len() as u64).to_le_bytes()), item)
        });
        self.record_digest(group, id, slot, digest);
    }

    /// The drain probe: while draining, lists every base group's locks with no age limit.
    fn advance_probe(&mut self) {
        if !self.transactions.draining {
            return;
        }
        if let Some(outcomes) = self.take_outcomes(Actor::Probe) {
            for (group, outcome) in outcomes {
                let clear = matches!(
                    outcome,
                    CallOutcome::Answered(ItemResult::TransactLocks { ref locks }) if locks.is_empty()
                );
                self.transactions.probe_clear[group] =
                    clear && self.transactions.probe_sent_when_done;
            }
            self.transactions.probe_next_at_nanos = self.now_nanos + LOCK_PROBE_INTERVAL_NANOS;
        }
        let idle = self
            .transactions
            .probe
            .as_ref()
            .is_some_and(|calls| calls.legs.is_empty());
        if idle && self.now_nanos >= self.transactions.probe_next_at_nanos {
            let requests = (0..self.base_group_count())
                .map(|group| {
                    (
                        group,
                        PreparedRequest::TransactLocks {
                            prepared_before_ms: u64::MAX,
                        },
                    )
                })
                .collect();
            self.transactions.probe_sent_when_done = self.coordinators_done();
            self.set_legs(Actor::Probe, requests);
        }
    }

    /// Whether every coordinator is done (idle, or down with nothing in flight).
    fn coordinators_done(&self) -> bool {
        self.transactions.coordinators.iter().all(|(calls, step)| {
            calls.legs.is_empty()
                && matches!(step, CoordinatorStep::Idle | CoordinatorStep::Down { .. })
        })
    }

    /// Transactions on, after the run (every fault healed): coordinators start nothing new and
    /// finish what they run, recovery goes on, and within `TRANSACTIONS_DRAIN_NANOS_MAX` every
    /// group's listing with no age limit must answer no lock; then the accounts are checked
    /// against the ledger (`check_transfers`).
    pub(crate) fn drain_transactions(&mut self, first_step: u64) {
        self.clients_stopped = true;
        self.transactions.draining = true;
        let drain_steps = TRANSACTIONS_DRAIN_NANOS_MAX / STEP_NANOS;
        for step in first_step..first_step + drain_steps {
            self.step(step);
            let clear = self.transactions.probe_clear.iter().all(|clear| *clear);
            if clear && self.coordinators_done() {
                return self.check_transfers();
            }
        }
        let uncleared: Vec<usize> = (0..self.transactions.probe_clear.len())
            .filter(|group| !self.transactions.probe_clear[*group])
            .collect();
        let descriptions: Vec<String> = uncleared
            .iter()
            .map(|group| format!("group {group}: {}", self.describe_group(*group)))
            .collect();
        self.violation(format!(
            "transactions: liveness: {} s after the run ended with every fault healed, groups \
             {uncleared:?} still hold locks or did not answer a lock listing (coordinators done: \
             {}; {})",
            TRANSACTIONS_DRAIN_NANOS_MAX / 1_000_000_000,
            self.coordinators_done(),
            descriptions.join("; ")
        ));
    }

    /// With no lock left anywhere: every account holds its initial balance plus the transfers
    /// of the COMMITTED ledger records, each decision a coordinator was told is the ledger's,
    /// and the markers are those of writes not refused, never older than one acknowledged.
    fn check_transfers(&mut self) {
        let Some(ledger) = self.ledger_group else {
            return;
        };
        let Some((ledger_node, _)) = self.highest_replica(ledger) else {
            return self.violation(
                "transactions: no live ledger replica at its highest slot after the drain"
                    .to_string(),
            );
        };
        let Some(scan) = self.read_directly(ledger_node, ledger, requests::ledger_scan_request())
        else {
            return;
        };
        let records = match requests::parse_items(&scan) {
            Ok(items) => items,
            Err(error) => return self.violation(format!("transactions: ledger scan: {error}")),
        };
        let mut states: BTreeMap<String, String> = BTreeMap::new();
        for item in &records {
            match requests::parse_ledger_record(item) {
                Ok((key, state, _)) => {
                    states.insert(key, state);
                }
                Err(error) => return self.violation(format!("transactions: {error}")),
            }
        }
        let mut expected: BTreeMap<u64, i64> = (0..self.account_count())
            .map(|account| (account, ACCOUNT_BALANCE_INITIAL as i64))
            .collect();
        let mut mismatched = Vec::new();
        for (key, record) in &self.transactions.records {
            let state = states.get(key).map(String::as_str);
            if state == Some(requests::LEDGER_COMMITTED) {
                for (account, delta) in &record.deltas {
                    *expected.entry(*account).or_default() += delta;
                }
            }
            if state == Some(requests::LEDGER_PENDING) {
                self.report.ledger_records_pending += 1;
            }
            if let Some(decided) = record.decided {
                let recorded = if decided {
                    requests::LEDGER_COMMITTED
                } else {
                    requests::LEDGER_CANCELLED
                };
                if state != Some(recorded) {
                    mismatched.push(format!("{key}: told {recorded}, ledger {state:?}"));
                }
            }
        }
        if !mismatched.is_empty() {
            self.violation(format!(
                "transactions: {} decisions acknowledged to coordinators are not the ledger's \
                 (first {})",
                mismatched.len(),
                mismatched[0]
            ));
        }
        let mut actual = BTreeMap::new();
        let mut markers = BTreeMap::new();
        for group in 0..self.base_group_count() {
            let Some((node, _)) = self.highest_replica(group) else {
                return self.violation(format!(
                    "transactions: no live replica of group {group} at its highest slot after \
                     the drain"
                ));
            };
            let Some(scan) = self.read_directly(node, group, requests::scan_request()) else {
                return;
            };
            match requests::parse_scan_result(&scan) {
                Ok(state) => {
                    actual.extend(state.accounts);
                    markers.extend(state.markers);
                }
                Err(error) => return self.violation(format!("transactions: {error}")),
            }
        }
        self.report.accounts_checked += actual.len() as u64;
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(account, balance)| actual.get(account) != Some(balance))
            .map(|(account, balance)| {
                format!(
                    "a{account} holds {:?}, the committed transfers leave {balance}",
                    actual.get(account)
                )
            })
            .collect();
        if !wrong.is_empty() {
            let committed = states
                .values()
                .filter(|state| *state == requests::LEDGER_COMMITTED)
                .count();
            self.violation(format!(
                "transactions: after the drain, {} accounts are not their initial balance plus \
                 the {committed} committed transfers: {}",
                wrong.len(),
                wrong.join(", ")
            ));
        }
        for account in 0..self.account_count() {
            let marker = markers.get(&account).copied().unwrap_or(0);
            let ours: Vec<&Marking> = self
                .transactions
                .markings
                .iter()
                .filter(|marking| marking.account == account)
                .collect();
            let newest_acknowledged = ours
                .iter()
                .filter(|marking| marking.applied == Some(true))
                .map(|marking| marking.marker)
                .max()
                .unwrap_or(0);
            let written = marker == 0
                || ours
                    .iter()
                    .any(|marking| marking.marker == marker && marking.applied != Some(false));
            if !written {
                self.violation(format!(
                    "transactions: account a{account} holds marker {marker}, written by a write \
                     that was refused"
                ));
            } else if marker < newest_acknowledged {
                self.violation(format!(
                    "transactions: account a{account} holds marker {marker}, older than the \
                     acknowledged {newest_acknowledged} (a commit applied an image older than \
                     an acknowledged write)"
                ));
            }
        }
    }
}

/// The finish of `transaction` with the simulated table's local index (the router sends the
/// table's indexes with it).
fn finish_request(transaction: &TransactionRef, commit: bool) -> PreparedRequest {
    PreparedRequest::TransactFinish {
        transaction: transaction.clone(),
        commit,
        local_indexes: requests::local_indexes(),
        global_indexes: Vec::new(),
    }
}
