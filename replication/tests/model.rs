//! An exhaustive stateright model of the MultiPaxos protocol the core implements.
//!
//! Driving the real `Replica` through stateright was tried first: every interleaving of
//! pre-checks, persists, heartbeats and deliveries multiplies the state space (over 500,000
//! states at depth 14, before a second election can even happen), far past the one-minute
//! budget of a debug test. So this model is the protocol in the abstract, at the level where
//! "one value per slot" is decided, with the core's design choices kept:
//! - ballots are (round, node), and a replica promises and accepts only at or above its promise;
//! - phase 1 covers every open slot at once, and the new leader re-proposes, per slot, the value
//!   with the highest accepted ballot among a quorum of promises, filling the slots below the
//!   highest reported one with no-ops;
//! - phase 2 is pipelined: a leader proposes into several slots without waiting, and a slot
//!   commits when a quorum accepted it in the leader's ballot.
//!
//! The network keeps every message it was given and may deliver each any number of times, in any
//! order, or never: duplication, reordering and loss. Competing candidates, leader changes in
//! the middle of phase 2 and re-proposal after a change are all explored. The pre-check, leases
//! and membership are not modelled here: the first only affects liveness, and the harness in
//! `src/harness.rs` checks the other two on the real core.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use stateright::{Checker, Model, Property};

const NODE_COUNT: u8 = 3;
const SLOT_COUNT: usize = 2;
/// The highest round any candidate may use.
const ROUND_MAX: u8 = 1;
/// Nodes that may campaign; the others only promise and accept. Two candidates are enough for
/// duelling leaders and for a leader change in the middle of phase 2.
const CAMPAIGNER_COUNT: u8 = 2;
/// Client values proposed over the whole run (value 0 is the no-op).
const CLIENT_VALUES_MAX: u8 = 2;
const NOOP: u8 = 0;

/// (round, node), ordered by round first.
type Ballot = (u8, u8);
type Accepted = [Option<(Ballot, u8)>; SLOT_COUNT];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Envelope {
    Prepare {
        to: u8,
        ballot: Ballot,
    },
    Promise {
        from: u8,
        ballot: Ballot,
        accepted: Accepted,
    },
    Accept {
        to: u8,
        ballot: Ballot,
        slot: usize,
        value: u8,
    },
    Accepted {
        from: u8,
        ballot: Ballot,
        slot: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Leadership {
    ballot: Ballot,
    promises: BTreeMap<u8, Accepted>,
    /// None while in phase 1.
    proposals: Option<[Option<u8>; SLOT_COUNT]>,
    accepted_by: [BTreeSet<u8>; SLOT_COUNT],
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node {
    promised: Ballot,
    accepted: Accepted,
    leadership: Option<Leadership>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    nodes: Vec<Node>,
    network: BTreeSet<Envelope>,
    /// Ghost: every (slot, value) some leader committed.
    committed: BTreeSet<(usize, u8)>,
    client_values_proposed: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Step {
    Campaign(u8),
    Propose(u8),
    Deliver(Envelope),
}

/// `ignore_promised_values` is a deliberately broken leader that proposes fresh values instead
/// of re-proposing what phase 1 found: the checker must catch it.
struct Paxos {
    ignore_promised_values: bool,
}

fn majority(count: usize) -> bool {
    count > usize::from(NODE_COUNT) / 2
}

impl Paxos {
    fn accept(&self, state: &mut State, node: u8, ballot: Ballot, slot: usize, value: u8) {
        let replica = &mut state.nodes[usize::from(node)];
        if ballot < replica.promised {
            return;
        }
        replica.promised = ballot;
        if replica
            .leadership
            .as_ref()
            .is_some_and(|lead| lead.ballot < ballot)
        {
            replica.leadership = None;
        }
        replica.accepted[slot] = Some((ballot, value));
        self.on_accepted(state, node, ballot, slot);
    }

    fn on_accepted(&self, state: &mut State, from: u8, ballot: Ballot, slot: usize) {
        if from == ballot.1 {
            // The leader's own acceptance is local.
            self.record_accepted(state, from, ballot, slot);
        } else {
            state
                .network
                .insert(Envelope::Accepted { from, ballot, slot });
        }
    }

    fn record_accepted(&self, state: &mut State, from: u8, ballot: Ballot, slot: usize) {
        let leader = &mut state.nodes[usize::from(ballot.1)];
        let Some(lead) = leader.leadership.as_mut() else {
            return;
        };
        if lead.ballot != ballot {
            return;
        }
        lead.accepted_by[slot].insert(from);
        if majority(lead.accepted_by[slot].len())
            && let Some(value) = lead.proposals.and_then(|proposals| proposals[slot])
        {
            state.committed.insert((slot, value));
        }
    }

    /// Sends an Accept for `slot` to everyone, the leader included.
    fn propose_in_slot(
        &self,
        state: &mut State,
        leader: u8,
        ballot: Ballot,
        slot: usize,
        value: u8,
    ) {
        for to in 0..NODE_COUNT {
            if to != leader {
                state.network.insert(Envelope::Accept {
                    to,
                    ballot,
                    slot,
                    value,
                });
            }
        }
        self.accept(state, leader, ballot, slot, value);
    }

    fn finish_phase_one(&self, state: &mut State, leader: u8) {
        let lead = state.nodes[usize::from(leader)]
            .leadership
            .as_mut()
            .expect("leading");
        let ballot = lead.ballot;
        let mut proposals = [None; SLOT_COUNT];
        for (slot, proposal) in proposals.iter_mut().enumerate() {
            let highest = lead
                .promises
                .values()
                .filter_map(|accepted| accepted[slot])
                .max_by_key(|(accepted_ballot, _)| *accepted_ballot);
            *proposal = match highest {
                Some(_) if self.ignore_promised_values => None,
                Some((_, value)) => Some(value),
                None => None,
            };
        }
        // Slots below the highest one found are closed with no-ops, as the core does.
        if let Some(highest_found) = proposals.iter().rposition(Option::is_some) {
            for proposal in proposals.iter_mut().take(highest_found) {
                proposal.get_or_insert(NOOP);
            }
        }
        lead.proposals = Some(proposals);
        for (slot, proposal) in proposals.iter().enumerate() {
            if let Some(value) = proposal {
                self.propose_in_slot(state, leader, ballot, slot, *value);
            }
        }
    }
}

impl Model for Paxos {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        let node = Node {
            promised: (0, 0),
            accepted: [None; SLOT_COUNT],
            leadership: None,
        };
        vec![State {
            nodes: vec![node; usize::from(NODE_COUNT)],
            network: BTreeSet::new(),
            committed: BTreeSet::new(),
            client_values_proposed: 0,
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Step>) {
        for node in 0..NODE_COUNT {
            let replica = &state.nodes[usize::from(node)];
            if node < CAMPAIGNER_COUNT && replica.promised.0 < ROUND_MAX {
                actions.push(Step::Campaign(node));
            }
            let open_slot = replica
                .leadership
                .as_ref()
                .and_then(|lead| lead.proposals)
                .is_some_and(|proposals| proposals.iter().any(Option::is_none));
            if open_slot && state.client_values_proposed < CLIENT_VALUES_MAX {
                actions.push(Step::Propose(node));
            }
        }
        for envelope in &state.network {
            actions.push(Step::Deliver(envelope.clone()));
        }
    }

    fn next_state(&self, last: &State, step: Step) -> Option<State> {
        let mut state = last.clone();
        match step {
            Step::Campaign(node) => {
                let replica = &mut state.nodes[usize::from(node)];
                let ballot = (replica.promised.0 + 1, node);
                replica.promised = ballot;
                replica.leadership = Some(Leadership {
                    ballot,
                    promises: BTreeMap::from([(node, replica.accepted)]),
                    proposals: None,
                    accepted_by: Default::default(),
                });
                for to in 0..NODE_COUNT {
                    if to != node {
                        state.network.insert(Envelope::Prepare { to, ballot });
                    }
                }
            }
            Step::Propose(node) => {
                let lead = state.nodes[usize::from(node)].leadership.as_mut()?;
                let ballot = lead.ballot;
                let proposals = lead.proposals.as_mut()?;
                let slot = proposals.iter().position(Option::is_none)?;
                state.client_values_proposed += 1;
                let value = state.client_values_proposed;
                proposals[slot] = Some(value);
                self.propose_in_slot(&mut state, node, ballot, slot, value);
            }
            Step::Deliver(Envelope::Prepare { to, ballot }) => {
                let replica = &mut state.nodes[usize::from(to)];
                if ballot < replica.promised {
                    return None;
                }
                replica.promised = ballot;
                if replica
                    .leadership
                    .as_ref()
                    .is_some_and(|lead| lead.ballot < ballot)
                {
                    replica.leadership = None;
                }
                let accepted = replica.accepted;
                state.network.insert(Envelope::Promise {
                    from: to,
                    ballot,
                    accepted,
                });
            }
            Step::Deliver(Envelope::Promise {
                from,
                ballot,
                accepted,
            }) => {
                let leader = ballot.1;
                let lead = state.nodes[usize::from(leader)].leadership.as_mut()?;
                if lead.ballot != ballot || lead.proposals.is_some() {
                    return None;
                }
                lead.promises.insert(from, accepted);
                if majority(lead.promises.len()) {
                    self.finish_phase_one(&mut state, leader);
                }
            }
            Step::Deliver(Envelope::Accept {
                to,
                ballot,
                slot,
                value,
            }) => self.accept(&mut state, to, ballot, slot, value),
            Step::Deliver(Envelope::Accepted { from, ballot, slot }) => {
                self.record_accepted(&mut state, from, ballot, slot);
            }
        }
        (state != *last).then_some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("one value per slot", |_, state: &State| {
                (0..SLOT_COUNT).all(|slot| {
                    state
                        .committed
                        .iter()
                        .filter(|(committed_slot, _)| *committed_slot == slot)
                        .count()
                        <= 1
                })
            }),
            Property::always(
                "a replica never accepts below its promise",
                |_, state: &State| {
                    state.nodes.iter().all(|node| {
                        node.accepted
                            .iter()
                            .flatten()
                            .all(|(ballot, _)| *ballot <= node.promised)
                    })
                },
            ),
            // Reachability: a client value is committed in the second slot while the higher of
            // the two ballots leads, so re-proposal after a leader change is really explored.
            Property::sometimes(
                "a later leader commits a client value",
                |_, state: &State| {
                    state
                        .committed
                        .iter()
                        .any(|(slot, value)| *slot == 1 && *value != NOOP)
                        && state.nodes.iter().any(|node| {
                            node.leadership.as_ref().is_some_and(|lead| {
                                lead.ballot == (1, 1)
                                    && lead.proposals.is_some()
                                    && lead.promises.keys().any(|promiser| *promiser == 0)
                            })
                        })
                },
            ),
        ]
    }
}

#[test]
fn the_protocol_never_chooses_two_values_for_a_slot_exhaustively() {
    let started = std::time::Instant::now();
    let checker = Paxos {
        ignore_promised_values: false,
    }
    .checker()
    .spawn_bfs()
    .join();
    println!(
        "stateright: {} unique states in {:?}",
        checker.unique_state_count(),
        started.elapsed()
    );
    checker.assert_properties();
}

#[test]
fn the_model_checker_catches_a_leader_that_ignores_phase_one() {
    let checker = Paxos {
        ignore_promised_values: true,
    }
    .checker()
    .spawn_bfs()
    .join();
    let counterexample = checker.discovery("one value per slot");
    assert!(counterexample.is_some(), "the broken leader must be caught");
}
