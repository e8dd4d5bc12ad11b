//! Global secondary indexes under simulation (`--global-index`): the propagators, client-like
//! actors that each move every base group's outbox to the index group as a router does
//! (router/server/src/router/propagate.rs: read the outbox at the base leader, plan the round
//! with `shoal_model::index::global::plan_round`, apply at the index partition's leader, then
//! trim), and the GSI checkers: every observed index state holds at most one entry per base
//! item and never an older version of an item than an earlier state showed, and once the
//! healed cluster drained every outbox the index equals the projection of the base items.

use shoal_model::index::global::{
    EntryChange, GlobalIndexChange, OutboxPosition, PositionedChange, plan_round,
};
use shoal_model::value::AttributeValue;
use shoal_wire::messages::OutboxChange;

use super::*;

/// A base group whose outbox was found empty is read again after this long (the router reads
/// at once after a write through it, and sweeps every table with GSIs every two seconds; a
/// short period keeps the index lag, and so the run's end, short).
const PROPAGATION_IDLE_NANOS: u64 = 20_000_000;
/// A propagation call (an outbox read, an apply, a trim) unanswered this long is given up and
/// the round starts over with a fresh read, as a router's round does when a call's deadline
/// passes. What the lost call did, if anything, is resent by the next round: harmless
/// (index::global invariant 3).
const PROPAGATION_CALL_TIMEOUT_NANOS: u64 = 1_000_000_000;
/// After the run, the healed cluster has at most this long to drain every base group's outbox;
/// a group whose outbox is still not drained then is a liveness violation. Several election
/// timeouts and leases, and many propagation rounds.
pub(crate) const GLOBAL_INDEX_DRAIN_NANOS_MAX: u64 = 5_000_000_000;
/// A base group counts as drained once this many outbox reads in a row found it empty at the
/// same applied slot: one empty read may race a write that is applied just after it.
const DRAINED_READS_MIN: u32 = 2;
const _: () = assert!(PROPAGATION_IDLE_NANOS * 4 < GLOBAL_INDEX_DRAIN_NANOS_MAX);
/// Propagators, each moving every base group's outbox on its own: every router propagates
/// every table's outboxes (its sweep), so in production several move one outbox at once, and
/// the index partitions' apply-once rule (index::global invariant 3) must hold under their
/// interleavings.
pub(crate) const PROPAGATORS: usize = 2;

/// Where one base group's propagation round stands.
#[derive(Clone, Debug)]
pub(crate) enum PropagationStep {
    /// Between rounds: the outbox is read again at `next_at_nanos`.
    Idle { next_at_nanos: u64 },
    /// The outbox read is (to be) sent to the base group's leader.
    Reading,
    /// The round's changes are (to be) applied at the index group's leader; then the outbox
    /// is trimmed through `through`.
    Applying {
        changes: Vec<PositionedChange>,
        through: OutboxPosition,
    },
    /// The outbox is (to be) trimmed through `through` at the base group's leader.
    Trimming { through: OutboxPosition },
}

/// One propagator's propagation of one base group's outbox (a lane).
pub(crate) struct PropagationLane {
    /// The base group whose outbox this lane moves.
    base: usize,
    pub(crate) step: PropagationStep,
    /// The call in flight: its reply token and when it was sent.
    call: Option<(u64, u64)>,
    /// When the current step's call is (re)sent.
    send_at_nanos: u64,
    /// The nodes the propagator believes lead the base group and the index group.
    base_leader_guess: NodeId,
    index_leader_guess: NodeId,
    /// The applied slot of the base replica whose outbox read last came back empty, and how
    /// many reads in a row found it empty there.
    drained: Option<(Slot, u32)>,
}

impl PropagationLane {
    pub(crate) fn new(base: usize, base_leader_guess: NodeId, index_leader_guess: NodeId) -> Self {
        Self {
            base,
            step: PropagationStep::Idle { next_at_nanos: 0 },
            call: None,
            send_at_nanos: 0,
            base_leader_guess,
            index_leader_guess,
            drained: None,
        }
    }
}

/// A propagation call waiting for its answer.
pub(crate) struct PropagationCall {
    lane: usize,
    /// The group called: the base group (read, trim) or the index group (apply).
    group: usize,
    node: NodeId,
}

/// An outbox record as `plan_round` takes it (as the router converts it).
fn positioned(change: OutboxChange) -> PositionedChange {
    PositionedChange {
        position: OutboxPosition {
            slot: change.slot,
            ordinal: change.ordinal,
        },
        change: GlobalIndexChange {
            index_number: change.index_number,
            entry_key: change.entry_key,
            change: match change.item {
                Some(item) => EntryChange::Put(item),
                None => EntryChange::Delete,
            },
        },
    }
}

/// The GSI key (`g`) of an item, when it has a string one.
fn index_key_of(item: &shoal_model::Item) -> Option<&str> {
    match item.get(requests::GLOBAL_INDEX_KEY_ATTRIBUTE) {
        Some(AttributeValue::String(key)) => Some(key),
        _ => None,
    }
}

impl Simulation {
    /// Base groups: every group but the index group and the ledger group.
    pub(crate) fn base_group_count(&self) -> usize {
        self.groups.len()
            - usize::from(self.index_group.is_some())
            - usize::from(self.ledger_group.is_some())
    }

    /// Whether the propagator waits for the index group to apply a round: only then does the
    /// index group owe an acknowledgement (majority liveness).
    pub(crate) fn index_apply_waiting(&self) -> bool {
        self.propagation
            .iter()
            .any(|lane| matches!(lane.step, PropagationStep::Applying { .. }))
    }

    /// At the heal the propagator gives up on its calls, as clients give up on their writes:
    /// one lost into the faults would otherwise hold its round for the call timeout.
    pub(crate) fn restart_propagation_rounds(&mut self) {
        for lane in &mut self.propagation {
            if let Some((reply_to, _)) = lane.call.take() {
                self.propagation_calls.remove(&reply_to);
            }
            lane.step = PropagationStep::Idle {
                next_at_nanos: self.now_nanos,
            };
            lane.send_at_nanos = self.now_nanos;
        }
    }

    /// One step of the propagator: gives up on calls unanswered too long, and sends each base
    /// group's next call when it is due.
    pub(crate) fn run_propagator(&mut self) {
        let Some(index_group) = self.index_group else {
            return;
        };
        for lane in 0..self.propagation.len() {
            let base = self.propagation[lane].base;
            if let Some((reply_to, sent_at)) = self.propagation[lane].call
                && self.now_nanos >= sent_at + PROPAGATION_CALL_TIMEOUT_NANOS
            {
                // Which replica leads is unknown now: the round starts over with new guesses.
                self.propagation_calls.remove(&reply_to);
                let base_guess = self.propagation_member(base);
                let index_guess = self.propagation_member(index_group);
                let propagation = &mut self.propagation[lane];
                propagation.call = None;
                propagation.step = PropagationStep::Idle {
                    next_at_nanos: self.now_nanos,
                };
                propagation.base_leader_guess = base_guess;
                propagation.index_leader_guess = index_guess;
                self.report.global_index_calls_timed_out += 1;
            }
            let propagation = &mut self.propagation[lane];
            if propagation.call.is_some() || propagation.send_at_nanos > self.now_nanos {
                continue;
            }
            if let PropagationStep::Idle { next_at_nanos } = propagation.step {
                if next_at_nanos > self.now_nanos {
                    continue;
                }
                propagation.step = PropagationStep::Reading;
            }
            let (group, node, request) = match &propagation.step {
                PropagationStep::Idle { .. } => continue,
                PropagationStep::Reading => (
                    base,
                    propagation.base_leader_guess,
                    PreparedRequest::OutboxRead { after: None },
                ),
                PropagationStep::Applying { changes, .. } => (
                    index_group,
                    propagation.index_leader_guess,
                    PreparedRequest::IndexApply {
                        source: base as u64 + PARTITION_FIRST,
                        changes: changes.clone(),
                    },
                ),
                PropagationStep::Trimming { through } => (
                    base,
                    propagation.base_leader_guess,
                    PreparedRequest::OutboxTrim { through: *through },
                ),
            };
            self.propagation_call(lane, group, node, request);
        }
    }

    /// A member of `group` to try when no leader is known.
    fn propagation_member(&mut self, group: usize) -> NodeId {
        let members = &self.groups[group].members;
        members[self.propagation_rng.below(members.len() as u64) as usize]
    }

    /// Sends one propagation call as a client sends its requests (a bus frame through the
    /// node's production dispatch). The answer may come back within the send.
    fn propagation_call(
        &mut self,
        lane: usize,
        group: usize,
        node: NodeId,
        request: PreparedRequest,
    ) {
        if !self.is_up(node) {
            let guess = self.propagation_member(group);
            self.propagation_retry(lane, group, Some(guess));
            return;
        }
        let reply_to = self.take_reply_to();
        self.propagation_calls
            .insert(reply_to, PropagationCall { lane, group, node });
        self.propagation[lane].call = Some((reply_to, self.now_nanos));
        self.send_item_request(group, node, reply_to, request);
    }

    /// The current step is sent again after the clients' retry delay, to `guess` if given.
    fn propagation_retry(&mut self, lane: usize, group: usize, guess: Option<NodeId>) {
        let propagation = &mut self.propagation[lane];
        if let Some(guess) = guess {
            if Some(group) == self.index_group {
                propagation.index_leader_guess = guess;
            } else {
                propagation.base_leader_guess = guess;
            }
        }
        propagation.send_at_nanos = self.now_nanos + CLIENT_RETRY_NANOS;
    }

    /// The answer to a propagation call (`on_reply` hands it over).
    pub(crate) fn propagation_answered(&mut self, reply_to: u64, response: NodeResponse) {
        let Some(PropagationCall { lane, group, node }) = self.propagation_calls.remove(&reply_to)
        else {
            return;
        };
        if self.propagation[lane].call.map(|(token, _)| token) != Some(reply_to) {
            // An earlier attempt's answer; its round was given up.
            return;
        }
        self.propagation[lane].call = None;
        match response {
            NodeResponse::Item { result, .. } => {
                let step = self.propagation[lane].step.clone();
                match (step, result) {
                    (PropagationStep::Reading, ItemResult::Outbox { changes }) => {
                        self.outbox_read(lane, node, changes);
                    }
                    (PropagationStep::Applying { changes, through }, ItemResult::Write { .. }) => {
                        // The answering leader applied the round: the index reached at least
                        // its applied slot (the end-of-run check reads no earlier state).
                        let applied = self.applied_slot_of(node, group).unwrap_or(Slot::ZERO);
                        self.index_acknowledged_through =
                            self.index_acknowledged_through.max(applied);
                        self.report.global_index_changes_propagated += changes.len() as u64;
                        self.groups[group].acknowledged += 1;
                        self.propagation[lane].step = PropagationStep::Trimming { through };
                        self.propagation[lane].send_at_nanos = self.now_nanos;
                    }
                    (PropagationStep::Trimming { .. }, ItemResult::Write { .. }) => {
                        // More may wait: the next round reads at once.
                        self.propagation[lane].step = PropagationStep::Idle {
                            next_at_nanos: self.now_nanos,
                        };
                    }
                    (step, other) => self.violation(format!(
                        "global index: {node:?} group {group} answered {other:?} to the \
                         propagator's {step:?}"
                    )),
                }
            }
            NodeResponse::Error(NodeError::NotLeader { leader_hint, .. }) => {
                let guess = match leader_hint.map(NodeId).filter(|hint| *hint != node) {
                    Some(hint) => hint,
                    None => self.propagation_member(group),
                };
                self.propagation_retry(lane, group, Some(guess));
            }
            // The replica there was moved away (`--membership`): another member, as a router
            // does after it refreshed its map.
            NodeResponse::Error(NodeError::WrongOwner { .. }) if self.moved_away(group, node) => {
                let guess = self.propagation_member(group);
                self.propagation_retry(lane, group, Some(guess));
            }
            // A leader not ready yet, or a write whose slot went to another entry or whose
            // outcome is unknown: sent again (an apply or a trim twice changes nothing).
            NodeResponse::Error(
                NodeError::Busy { .. }
                | NodeError::NotApplied { .. }
                | NodeError::OutcomeUnknown { .. },
            ) => self.propagation_retry(lane, group, None),
            other => self.violation(format!(
                "global index: {node:?} group {group}: unexpected answer to the propagator: \
                 {other:?}"
            )),
        }
    }

    /// An outbox read came back: plans the round (every change of index 0 goes to the one
    /// index group) and goes on to apply it, or, when the outbox is empty, notes where.
    fn outbox_read(&mut self, lane: usize, node: NodeId, changes: Vec<OutboxChange>) {
        let index_group = self.index_group.expect("the propagator runs with a GSI");
        let base = self.propagation[lane].base;
        // Invariant 2 of index::global: an outbox is read in position order.
        let increasing = changes
            .windows(2)
            .all(|pair| (pair[0].slot, pair[0].ordinal) < (pair[1].slot, pair[1].ordinal));
        if !increasing {
            self.violation(format!(
                "global index: {node:?} group {base}: an outbox read out of position order"
            ));
        }
        if changes.is_empty() {
            let slot = self.applied_slot_of(node, base).unwrap_or(Slot::ZERO);
            let propagation = &mut self.propagation[lane];
            propagation.drained = Some(match propagation.drained {
                Some((at, reads)) if at == slot => (at, reads + 1),
                _ => (slot, 1),
            });
            propagation.step = PropagationStep::Idle {
                next_at_nanos: self.now_nanos + PROPAGATION_IDLE_NANOS,
            };
            return;
        }
        self.propagation[lane].drained = None;
        let mut unknown_indexes = 0;
        let plan = plan_round(changes.into_iter().map(positioned), |change| {
            if change.index_number == 0 {
                Some(index_group)
            } else {
                unknown_indexes += 1;
                None
            }
        });
        if unknown_indexes > 0 {
            self.violation(format!(
                "global index: {node:?} group {base}: {unknown_indexes} outbox changes of an \
                 index the table does not have"
            ));
        }
        let Some(through) = plan.trim_through else {
            return;
        };
        let mut applies = plan.applies.into_values().next().unwrap_or_default();
        let skipped = match self.options.broken {
            Some(Broken::PropagationSkipsAChange) => Some(true),
            Some(Broken::PropagationSkipsADelete) => Some(false),
            _ => None,
        };
        if let Some(put) = skipped
            && applies.len() > 1
            && let Some(last) = applies.iter().rposition(|positioned| {
                matches!(positioned.change.change, EntryChange::Put(_)) == put
            })
        {
            // The broken propagator: one change of the round is never sent, and the outbox is
            // trimmed past it all the same.
            applies.remove(last);
            self.fault("broken: index change skipped");
        }
        let propagation = &mut self.propagation[lane];
        propagation.step = if applies.is_empty() {
            PropagationStep::Trimming { through }
        } else {
            PropagationStep::Applying {
                changes: applies,
                through,
            }
        };
        propagation.send_at_nanos = self.now_nanos;
    }

    /// The applied slot of `node`'s replica of `group`, if the node is up.
    pub(crate) fn applied_slot_of(&self, node: NodeId, group: usize) -> Option<Slot> {
        self.nodes[&node]
            .runtime
            .as_ref()?
            .replicas
            .get(&group)
            .map(|replica| replica.applied_slot())
    }

    /// Reads an index replica's applied state at `slot` (a Scan of the GSI) for the checkers:
    /// its digest against the other index replicas' at that slot, at most one entry per base
    /// item, and no entry older than one an earlier state showed (a state at a slot at or
    /// after the one where a newer version was seen must not hold an older one).
    pub(crate) fn observe_index(
        &mut self,
        id: NodeId,
        group: usize,
        slot: Slot,
        scan: Option<ItemResult>,
    ) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.observed_applied.insert(group, slot);
        }
        let Some(scan) = scan else {
            return self.violation(format!("{id:?} group {group}: an index scan got no answer"));
        };
        let entries = match requests::parse_items(&scan) {
            Ok(entries) => entries,
            Err(error) => {
                return self.violation(format!("{id:?} group {group}: index scan: {error}"));
            }
        };
        self.trace(id, group, &[10, slot.0, entries.len() as u64]);
        // A replica still fuzzy from an installed snapshot may hold later writes next to
        // earlier ones until it replays its way past the snapshot's horizon.
        let fuzzy = self.nodes[&id]
            .fuzzy_until
            .get(&group)
            .is_some_and(|until| slot < *until);
        if fuzzy {
            return;
        }
        let ItemResult::Range { items, .. } = &scan else {
            return;
        };
        let digest = items.iter().fold(FNV_OFFSET_BASIS, |hash, item| {
            fnv1a(fnv1a(hash, &(item.len() as u64).to_le_bytes()), item)
        });
        self.record_digest(group, id, slot, digest);
        self.report.global_index_states_observed += 1;
        let mut seen = BTreeSet::new();
        for entry in &entries {
            let (key, version) = match requests::key_and_version(entry) {
                Ok(found) => found,
                Err(error) => {
                    return self.violation(format!(
                        "global index: {id:?} at {slot:?}: an entry without its base key or \
                         version: {error}"
                    ));
                }
            };
            if !seen.insert(key.clone()) {
                self.violation(format!(
                    "global index: {id:?} at {slot:?} holds two entries of base item {key}"
                ));
            }
            match self.index_versions.get_mut(&key) {
                Some((newest, seen_at)) if version < *newest && slot >= *seen_at => {
                    let (newest, seen_at) = (*newest, *seen_at);
                    self.violation(format!(
                        "global index: {id:?} at {slot:?} shows version {version} of base item \
                         {key}, after version {newest} was seen at {seen_at:?}"
                    ));
                }
                Some((newest, seen_at)) if version == *newest => {
                    *seen_at = (*seen_at).min(slot);
                }
                Some((newest, _)) if version < *newest => {}
                _ => {
                    self.index_versions.insert(key, (version, slot));
                }
            }
        }
    }

    /// Answers `request` at `id`'s replica of `group` directly, as the applied-state scans
    /// do: `None` when the node is down or the read failed (reported as such).
    pub(crate) fn read_directly(
        &mut self,
        id: NodeId,
        group: usize,
        request: PreparedRequest,
    ) -> Option<ItemResult> {
        let now = self.local_time(id);
        let runtime = self.nodes.get_mut(&id)?.runtime.as_mut()?;
        let replica = runtime.replicas.get_mut(&group)?;
        let event = Event::Request {
            unix_ms: 0,
            reply_to: SCAN_REPLY_TO,
            epoch: EPOCH,
            request,
        };
        match drive(replica.handle(now, event), &mut runtime.committer) {
            Ok(Ok(outputs)) => {
                let result = outputs.into_iter().find_map(|output| match output {
                    Output::Reply {
                        response: NodeResponse::Item { result, .. },
                        ..
                    } => Some(result),
                    _ => None,
                });
                if result.is_none() {
                    self.violation(format!(
                        "{id:?} group {group}: a read of the applied state got no items"
                    ));
                }
                result
            }
            Ok(Err(error)) => {
                let corruption = partition_corruption(&error);
                self.fail_node(
                    id,
                    group,
                    NodeFailure {
                        text: format!("a read of the applied state failed: {error}"),
                        corruption,
                    },
                );
                None
            }
            Err(failure) => {
                self.fail_node(id, group, failure);
                None
            }
        }
    }

    /// The replica of `group` at the group's highest applied slot, if it is up (a down
    /// replica's last slot counts: a slot it applied is committed, and the live ones reach it).
    pub(crate) fn highest_replica(&self, group: usize) -> Option<(NodeId, Slot)> {
        let highest = self.groups[group]
            .members
            .iter()
            .filter_map(|node| {
                self.applied_slot_of(*node, group)
                    .or_else(|| self.nodes[node].observed_applied.get(&group).copied())
            })
            .max()?;
        let node = self.groups[group]
            .members
            .iter()
            .find(|node| self.applied_slot_of(**node, group) == Some(highest))?;
        let fuzzy = self.nodes[node]
            .fuzzy_until
            .get(&group)
            .is_some_and(|until| highest < *until);
        (!fuzzy).then_some((*node, highest))
    }

    /// After the run, once the faults healed: whether every base group's outbox is drained at
    /// the group's latest applied state and the index group holds every round acknowledged.
    /// Then, and only then, compares the index with the base items (`check_global_index`).
    pub(crate) fn global_index_settled(&mut self) -> bool {
        let Some(index_group) = self.index_group else {
            return true;
        };
        // Every lane (each propagator's view of each base group) must have found it drained.
        let mut bases = BTreeMap::new();
        for lane in 0..self.propagation.len() {
            let base = self.propagation[lane].base;
            let Some((drained_at, reads)) = self.propagation[lane].drained else {
                return false;
            };
            match self.highest_replica(base) {
                Some((node, highest)) if highest == drained_at && reads >= DRAINED_READS_MIN => {
                    bases.insert(base, node);
                }
                _ => return false,
            }
        }
        let bases: Vec<(usize, NodeId)> = bases.into_iter().collect();
        let Some((index_node, index_slot)) = self.highest_replica(index_group) else {
            return false;
        };
        if index_slot < self.index_acknowledged_through {
            return false;
        }
        self.check_global_index(&bases, index_node, index_slot);
        true
    }

    /// What did not settle in the time allowed after the run: base groups whose outbox was not
    /// found drained at their latest applied state, or else the index group, which lacks a
    /// round it acknowledged (or has no live replica at its highest slot).
    pub(crate) fn report_undrained_outboxes(&mut self) {
        let seconds = GLOBAL_INDEX_DRAIN_NANOS_MAX / 1_000_000_000;
        let mut undrained = 0;
        for lane in 0..self.propagation.len() {
            let base = self.propagation[lane].base;
            let drained = self.propagation[lane].drained;
            let highest = self.highest_replica(base);
            if let (Some((at, reads)), Some((_, slot))) = (drained, highest)
                && at == slot
                && reads >= DRAINED_READS_MIN
            {
                continue;
            }
            undrained += 1;
            let step = format!("{:?}", self.propagation[lane].step);
            let replicas = self.describe_group(base);
            self.violation(format!(
                "global index: liveness: group {base}'s outbox is not drained {seconds} s after \
                 the run ended with every fault healed (last empty read at {drained:?}, highest \
                 replica {highest:?}, propagator {step}; {replicas})"
            ));
        }
        if undrained == 0
            && let Some(index_group) = self.index_group
        {
            let highest = self.highest_replica(index_group);
            let through = self.index_acknowledged_through;
            let replicas = self.describe_group(index_group);
            self.violation(format!(
                "global index: liveness: every outbox drained, but {seconds} s after the run the \
                 index group's highest live replica is {highest:?}, short of the acknowledged \
                 {through:?} ({replicas})"
            ));
        }
    }

    /// The index at `index_node` (at `index_slot`) must hold exactly the projection of every
    /// base item read at `bases`: no missing entry, no extra one, no stale one, each under its
    /// GSI key (a Query per GSI key reads exactly the entries whose entry keys lie under it,
    /// and a Scan finds no entry outside those).
    fn check_global_index(
        &mut self,
        bases: &[(usize, NodeId)],
        index_node: NodeId,
        index_slot: Slot,
    ) {
        let Some(index_group) = self.index_group else {
            return;
        };
        let index = &requests::global_indexes()[0];
        let table = requests::key_schema();
        let mut expected = BTreeMap::new();
        for (base, node) in bases {
            let Some(result) = self.read_directly(*node, *base, requests::scan_request()) else {
                return;
            };
            let items = match requests::parse_items(&result) {
                Ok(items) => items,
                Err(error) => return self.violation(format!("{node:?} group {base}: {error}")),
            };
            for item in items.iter().filter(|item| index.holds(item)) {
                let Some(key) = index_key_of(item) else {
                    continue;
                };
                let base_key = match requests::key_and_version(item) {
                    Ok((base_key, _)) => base_key,
                    Err(error) => {
                        return self.violation(format!("global index: base item: {error}"));
                    }
                };
                expected.insert((key.to_string(), base_key), index.project(&table, item));
            }
        }
        let mut actual = BTreeMap::new();
        for key in requests::global_index_keys() {
            let request = requests::global_index_query_request(&key);
            let Some(result) = self.read_directly(index_node, index_group, request) else {
                return;
            };
            let entries = match requests::parse_items(&result) {
                Ok(entries) => entries,
                Err(error) => return self.violation(format!("global index: query: {error}")),
            };
            for entry in entries {
                if index_key_of(&entry) != Some(key.as_str()) {
                    self.violation(format!(
                        "global index: {index_node:?} holds an entry under GSI key {key} whose \
                         item says otherwise: {entry:?}"
                    ));
                }
                let base_key = match requests::key_and_version(&entry) {
                    Ok((base_key, _)) => base_key,
                    Err(error) => return self.violation(format!("global index: entry: {error}")),
                };
                if actual
                    .insert((key.clone(), base_key.clone()), entry)
                    .is_some()
                {
                    self.violation(format!(
                        "global index: {index_node:?} holds two entries of {base_key} under {key}"
                    ));
                }
            }
        }
        let Some(scanned) = self.read_directly(
            index_node,
            index_group,
            requests::global_index_scan_request(),
        ) else {
            return;
        };
        let scanned = requests::parse_items(&scanned).map_or(0, |entries| entries.len());
        if scanned != actual.len() {
            self.violation(format!(
                "global index: {index_node:?} holds {scanned} entries, {} of them under the GSI \
                 keys the workload writes",
                actual.len()
            ));
        }
        self.report.global_index_entries_checked += expected.len() as u64;
        let missing: Vec<_> = expected
            .keys()
            .filter(|key| !actual.contains_key(*key))
            .collect();
        let extra: Vec<_> = actual
            .keys()
            .filter(|key| !expected.contains_key(*key))
            .collect();
        let stale: Vec<_> = expected
            .iter()
            .filter_map(|(key, item)| {
                let entry = actual.get(key)?;
                (entry != item).then_some((key, item, entry))
            })
            .collect();
        if !missing.is_empty() || !extra.is_empty() || !stale.is_empty() {
            self.violation(format!(
                "global index: with every outbox drained after the heal, the index at \
                 {index_node:?} ({index_slot:?}) is not the projection of the base items: \
                 {} missing (first {:?}), {} extra (first {:?}), {} stale (first {:?})",
                missing.len(),
                missing.first(),
                extra.len(),
                extra.first(),
                stale.len(),
                stale.first()
            ));
        }
    }
}
