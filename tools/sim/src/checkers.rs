//! The checkers: trace fingerprints, applied-state digests, acceptor memory, majority liveness,
//! linearizability of every key's history and the eventual reads.

use super::*;

/// What a replica's `Persist` body (the WAL record) holds for the acceptor-memory check. A
/// body that does not decode holds nothing the check can use; recovery reports it anyway.
pub(crate) fn acceptor_record(body: &[u8]) -> AcceptorRecord {
    let Ok(record) = decode_persist_record(body) else {
        return AcceptorRecord::default();
    };
    AcceptorRecord {
        promised: record.promised.map(Ballot::from),
        accepted: record
            .entries
            .iter()
            .map(|(slot, entry)| (Slot(*slot), Ballot::from(entry.ballot)))
            .collect(),
    }
}

/// The numbers that identify a replication message in the trace. Cheaper than hashing its
/// `Debug` text, and as telling: two runs that differ anywhere soon differ in some ballot, slot
/// or destination.
pub(crate) fn message_fingerprint(message: &Message) -> [u64; 4] {
    match message {
        Message::PreCheck { round } => [1, *round, 0, 0],
        Message::PreCheckReply { round, granted } => [2, *round, u64::from(*granted), 0],
        Message::Prepare {
            ballot,
            from_slot,
            lease_released,
        } => [
            3,
            ballot.round,
            ballot.node.0,
            from_slot.0 ^ lease_released.map_or(0, |released| released.round.rotate_left(32)),
        ],
        Message::TimeoutNow {
            ballot,
            commit_slot,
        } => [9, ballot.round, ballot.node.0, commit_slot.0],
        Message::Promise {
            ballot, accepted, ..
        } => [4, ballot.round, ballot.node.0, accepted.len() as u64],
        Message::Accept {
            ballot,
            round,
            first_slot,
            entries,
            commit_slot,
        } => [
            5,
            ballot.round ^ round.rotate_left(32),
            first_slot.0 ^ (entries.len() as u64).rotate_left(48),
            commit_slot.0,
        ],
        Message::Accepted {
            ballot,
            round,
            match_slot,
            missing,
        } => [
            6,
            ballot.round ^ round.rotate_left(32),
            match_slot.0,
            u64::from(*missing),
        ],
        Message::Rejected { promised } => [7, promised.round, promised.node.0, 0],
        Message::Quiesce {
            ballot,
            round,
            first_slot,
            commit_slot,
        } => [
            8,
            ballot.round ^ round.rotate_left(32),
            first_slot.0,
            commit_slot.0,
        ],
    }
}

/// The numbers that identify a replica's output in the trace.
/// The size of a result's items: enough to tell answers apart in a fingerprint.
pub(crate) fn result_fingerprint(result: &ItemResult) -> u64 {
    let bytes = |items: &[Vec<u8>]| items.iter().map(|item| item.len() as u64).sum::<u64>();
    match result {
        ItemResult::Write { attributes } => attributes.as_ref().map_or(0, |item| item.len() as u64),
        ItemResult::BatchWrite => 1,
        ItemResult::Get { item } => 2 + item.as_ref().map_or(0, |item| item.len() as u64),
        ItemResult::BatchGet { items } => 3 + bytes(items),
        ItemResult::Range { items, count, .. } => 4 + bytes(items) + (count << 32),
        ItemResult::WriteInCollection {
            attributes,
            collection_bytes,
            ..
        } => 5 + attributes.as_ref().map_or(0, |item| item.len() as u64) + (collection_bytes << 8),
        ItemResult::BatchWriteInCollections { collections } => {
            6 + collections.iter().map(|size| size.bytes << 8).sum::<u64>()
        }
        ItemResult::WriteWithIndexes {
            attributes,
            index_write_units_milli,
            ..
        } => {
            9 + attributes.as_ref().map_or(0, |item| item.len() as u64)
                + ((index_write_units_milli.len() as u64) << 8)
        }
        ItemResult::BatchWriteWithIndexes {
            collections,
            global_write_units_milli,
        } => {
            10 + collections.iter().map(|size| size.bytes << 8).sum::<u64>()
                + global_write_units_milli
                    .iter()
                    .map(|index| (index.milli << 4) + u64::from(index.number))
                    .sum::<u64>()
        }
        ItemResult::Backfill { resume_after } => {
            8 + resume_after.as_ref().map_or(0, |key| key.len() as u64)
        }
        ItemResult::StreamRecords {
            records,
            applied_slot,
            ..
        } => {
            11 + records
                .iter()
                .map(|record| record.record.len() as u64 + (record.position.slot << 16))
                .sum::<u64>()
                + (applied_slot << 8)
        }
        ItemResult::StreamShards { shards, .. } => {
            12 + shards
                .iter()
                .map(|shard| u64::from(shard.generation) + (shard.opened_slot << 8))
                .sum::<u64>()
        }
        ItemResult::Outbox { changes } => {
            7 + changes
                .iter()
                .map(|change| change.entry_key.len() as u64 + (change.slot << 16))
                .sum::<u64>()
        }
        ItemResult::TransactPrepared {
            reasons, locked, ..
        } => {
            13 + reasons
                .iter()
                .map(|reason| u64::from(reason.code))
                .sum::<u64>()
                + (u64::from(*locked) << 8)
        }
        ItemResult::TransactFinished { more, collections } => {
            14 + u64::from(*more) + collections.iter().map(|size| size.bytes << 8).sum::<u64>()
        }
        ItemResult::TransactRead {
            items,
            locked,
            applied_slot,
        } => {
            15 + items
                .iter()
                .map(|item| item.as_ref().map_or(0, |item| item.len() as u64))
                .sum::<u64>()
                + (u64::from(*locked) << 4)
                + (applied_slot << 8)
        }
        ItemResult::TransactConfirmed { unchanged } => 16 + u64::from(*unchanged),
        ItemResult::TransactLocks { locks } => 17 + ((locks.len() as u64) << 8),
    }
}

pub(crate) fn output_fingerprint(output: &Output) -> [u64; 5] {
    match output {
        Output::Persist { core_lsn, body } => [1, core_lsn.0, body.len() as u64, 0, 0],
        Output::Send { to, message } => {
            let [kind, a, b, c] = message_fingerprint(message);
            [2, to.0 | kind << 32, a, b, c]
        }
        Output::Reply { reply_to, response } => {
            let kind = match response {
                NodeResponse::Item { result, .. } => 1 + (result_fingerprint(result) << 8),
                NodeResponse::Error(_) => 2,
                _ => 3,
            };
            [3, *reply_to, kind, 0, 0]
        }
        Output::Snapshot(chunk) => [
            4,
            chunk.to,
            chunk.last_included_slot,
            u64::from(chunk.chunk_index),
            chunk.items.len() as u64,
        ],
    }
}

/// The last operations of the shortest prefix (in invocation order) that is already not
/// linearizable: where a failing seed's story ends, for whoever replays it.
pub(crate) fn failing_window(operations: &[Operation]) -> Vec<Operation> {
    let mut sorted = operations.to_vec();
    sorted.sort_by_key(|operation| operation.invoked_nanos);
    // Bisection, assuming that a prefix longer than a failing one fails too: nearly always
    // so (a later operation rarely repairs an earlier contradiction), and this is a diagnostic.
    let (mut low, mut high) = (1, sorted.len());
    while low < high {
        let middle = (low + high) / 2;
        if linearizability::check(&sorted[..middle]) == Verdict::NotLinearizable {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    sorted.truncate(low);
    sorted.split_off(low.saturating_sub(FAILING_WINDOW_OPERATIONS))
}

impl Simulation {
    pub(crate) fn trace(&mut self, node: NodeId, group: usize, words: &[u64]) {
        // FNV's step a word at a time rather than a byte at a time: the trace runs on every
        // output, and it only needs to differ when runs differ, not to be FNV-1a.
        let mix = |hash: u64, word: u64| (hash ^ word).wrapping_mul(0x0000_0100_0000_01B3);
        let mut hash = mix(self.report.trace_hash, self.now_nanos);
        hash = mix(hash, node.0);
        hash = mix(hash, group as u64);
        for word in words {
            hash = mix(hash, *word);
        }
        self.report.trace_hash = hash;
    }

    pub(crate) fn violation(&mut self, text: String) {
        tracing::warn!(
            simulated_ms = self.now_nanos / 1_000_000,
            "violation: {text}"
        );
        if self.report.violations.len() < VIOLATIONS_MAX {
            self.report.violations.push(text);
        }
    }

    pub(crate) fn check_majority_liveness(&mut self) {
        for group in 0..self.groups.len() {
            // The index group owes an acknowledgement only while the propagator waits on it.
            if Some(group) == self.index_group && !self.index_apply_waiting() {
                self.groups[group].healthy_majority_since = None;
                continue;
            }
            // The ledger group likewise, only while a transaction actor waits on it.
            if Some(group) == self.ledger_group && !self.ledger_call_waiting() {
                self.groups[group].healthy_majority_since = None;
                continue;
            }
            // A split's children owe writes once clients are routed to them; the parent, and
            // a group being split (its writes pause until the children are routed), do not.
            if !self.groups[group].serving || self.splits.involves(group) {
                self.groups[group].healthy_majority_since = None;
                continue;
            }
            let members = &self.groups[group].members;
            let healthy = members
                .iter()
                .filter(|node| self.is_healthy(**node))
                .count();
            let majority = healthy > members.len() / 2;
            let acknowledged = self.groups[group].acknowledged;
            let since = match self.groups[group].healthy_majority_since {
                Some((since, mark)) if majority && mark == acknowledged => since,
                _ if majority => {
                    self.groups[group].healthy_majority_since =
                        Some((self.now_nanos, acknowledged));
                    continue;
                }
                _ => {
                    self.groups[group].healthy_majority_since = None;
                    continue;
                }
            };
            if self.now_nanos - since >= MAJORITY_LIVENESS_WINDOW_NANOS {
                let replicas = self.describe_group(group);
                self.violation(format!(
                    "liveness: group {group} kept a healthy majority for {} s and acknowledged \
                     no write (at {} ms): {replicas}",
                    MAJORITY_LIVENESS_WINDOW_NANOS / 1_000_000_000,
                    self.now_nanos / 1_000_000
                ));
                self.groups[group].healthy_majority_since = Some((self.now_nanos, acknowledged));
            }
        }
    }

    /// A group has a healthy leader within `LEADERLESS_WINDOW_NANOS` of time in which a
    /// majority of it was healthy (quiesced groups included: nothing else notices a quiesced
    /// group's dead leader until a client writes to it). Time in which no majority is healthy
    /// (a clog, crashes) neither counts nor starts the count over, so that clogs coming and
    /// going cannot hide a group that never elects.
    pub(crate) fn check_leadership(&mut self, elapsed_nanos: u64) {
        for group in 0..self.groups.len() {
            // A split parent whose children are routed is deleted: no leader is owed.
            if self.groups[group].retired {
                continue;
            }
            let members = &self.groups[group].members;
            let healthy: Vec<NodeId> = members
                .iter()
                .copied()
                .filter(|node| self.is_healthy(*node))
                .collect();
            let majority = healthy.len() > members.len() / 2;
            let led = healthy.iter().any(|node| {
                self.nodes[node]
                    .runtime
                    .as_ref()
                    .and_then(|runtime| runtime.replicas.get(&group))
                    .is_some_and(|replica| {
                        replica.core().role() == shoal_replication::RoleKind::Leader
                    })
            });
            if led {
                self.groups[group].leaderless_nanos = 0;
                continue;
            }
            if !majority {
                continue;
            }
            self.groups[group].leaderless_nanos += elapsed_nanos;
            if self.groups[group].leaderless_nanos >= LEADERLESS_WINDOW_NANOS {
                let replicas = self.describe_group(group);
                self.violation(format!(
                    "liveness: group {group} had no healthy leader through {} s of a healthy \
                     majority (at {} ms): {replicas}",
                    LEADERLESS_WINDOW_NANOS / 1_000_000_000,
                    self.now_nanos / 1_000_000
                ));
                self.groups[group].leaderless_nanos = 0;
            }
        }
    }

    pub(crate) fn describe_group(&self, group: usize) -> String {
        let now = MonotonicTime::from_nanos(self.now_nanos);
        self.nodes
            .iter()
            .map(|(id, node)| {
                let Some(runtime) = &node.runtime else {
                    return format!(
                        "{id:?} down{}",
                        if node.stopped { " (stopped)" } else { "" }
                    );
                };
                match runtime.replicas.get(&group) {
                    Some(replica) => {
                        let status = replica.status(now);
                        let faults = match (self.isolated.get(id), self.clogged) {
                            (Some(true), _) => " (isolated one way)",
                            (Some(false), _) => " (isolated)",
                            (None, Some((clogged, _))) if clogged == *id => " (clogged)",
                            _ => "",
                        };
                        let members = |membership: &Membership| {
                            membership.members().map(|node| node.0).collect::<Vec<_>>()
                        };
                        format!(
                            "{id:?}{faults} {:?}{} promised {:?} leader hint {:?} members {:?} \
                             (latest {:?}) log {}..={} commit {} applied {} unsynced {} \
                             commit_at {:?}",
                            status.role,
                            if replica.core().quiesced() {
                                " (quiesced)"
                            } else {
                                ""
                            },
                            replica.core().promised(),
                            replica.core().leader_hint(),
                            members(replica.core().committed_membership()),
                            members(&replica.core().latest_membership()),
                            replica.core().log_first_slot().0,
                            replica.core().log_last_slot().0,
                            status.commit_slot,
                            status.applied_slot,
                            runtime.unsynced.len(),
                            runtime.commit_at_nanos
                        )
                    }
                    None => format!("{id:?} no replica"),
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A restarted replica must hold every promise and accepted entry its durable records held
    /// (entries below its log's first slot are in its checkpointed tree). Storage faults that
    /// the engine did not detect, or a recovery that drops records, show up here first.
    pub(crate) fn check_acceptor_memory(&mut self, id: NodeId) {
        let mut forgotten = Vec::new();
        let node = self.nodes.get_mut(&id).expect("node exists");
        let Some(runtime) = node.runtime.as_ref() else {
            return;
        };
        for (group, replica) in &runtime.replicas {
            let core = replica.core();
            let Some(memory) = node.acceptor_memory.get_mut(group) else {
                continue;
            };
            memory.accepted = memory.accepted.split_off(&core.log_first_slot());
            if core.promised() < memory.promised {
                forgotten.push(format!(
                    "{id:?} group {group}: restarted with promise {:?} below the durable {:?}",
                    core.promised(),
                    memory.promised
                ));
            }
            for (slot, ballot) in &memory.accepted {
                let held = core.entry(*slot).map(|entry| entry.ballot);
                if held.is_none_or(|held| held < *ballot) {
                    forgotten.push(format!(
                        "{id:?} group {group}: restarted without the entry it durably accepted \
                         at {slot:?} in {ballot:?} (holds {held:?})"
                    ));
                    break;
                }
            }
        }
        for text in forgotten {
            self.violation(format!("acceptor forgot: {text}"));
        }
    }

    /// Checks that a replica's local index at `slot` holds exactly its items: one entry per
    /// item, with the item's value (the index is maintained in each write's own batch, so no
    /// crash, recovery, snapshot or lost message may ever leave them apart).
    pub(crate) fn check_local_index(
        &mut self,
        id: NodeId,
        group: usize,
        slot: Slot,
        items: Option<&ItemResult>,
        index: Option<&ItemResult>,
    ) {
        let (Some(items), Some(index)) = (items, index) else {
            return self.violation(format!(
                "{id:?} group {group}: a scan of the items or of the index got no answer"
            ));
        };
        // An account's marker is not in its entry (keys only): compared without it.
        let without_markers = |mut state: requests::ScannedState| {
            state.markers.clear();
            state
        };
        match (
            requests::parse_scan_result(items).map(without_markers),
            requests::parse_scan_result(index),
        ) {
            // Equal maps and as many entries as keys: no key has a second, stale entry.
            (Ok(items), Ok(entries))
                if items == entries
                    && matches!(index, ItemResult::Range { items: listed, .. } if listed.len() == entries.len()) =>
                {}
            (Ok(items), Ok(entries)) => self.violation(format!(
                "{id:?} group {group} at {slot:?}: the local index holds {entries:?}, the items are {items:?}"
            )),
            (Err(error), _) | (_, Err(error)) => {
                self.violation(format!("{id:?} group {group}: scan answer: {error}"))
            }
        }
    }

    /// Checks the applied state a replica reached (the result of a Scan at `slot`): its digest
    /// against another replica's at the same slot, and every value in it marks its write as
    /// applied by now.
    pub(crate) fn observe_applied(
        &mut self,
        id: NodeId,
        group: usize,
        slot: Slot,
        scan: Option<ItemResult>,
    ) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.observed_applied.insert(group, slot);
        }
        let state = match scan.as_ref().map(requests::parse_scan_result) {
            Some(Ok(state)) => state,
            Some(Err(error)) => {
                return self.violation(format!("{id:?} group {group}: scan answer: {error}"));
            }
            None => {
                return self.violation(format!("{id:?} group {group}: a scan got no items"));
            }
        };
        self.trace(id, group, &[9, slot.0, state.registers.len() as u64]);
        if !state.accounts.is_empty() {
            self.check_account_balances(id, group, slot, &state.accounts);
        }
        let latest = &mut self.groups[group].latest_expiring;
        if latest
            .as_ref()
            .is_none_or(|(latest_slot, _)| *latest_slot < slot)
        {
            *latest = Some((slot, state.expiring.clone()));
        }
        for value in state.registers.values() {
            if let Some(&operation) = self.operation_by_value.get(value)
                && self.history[operation].operation.took_effect_at.is_none()
            {
                let point = self.next_effect_point();
                self.history[operation].operation.took_effect_at = Some(point);
            }
        }
        let fuzzy = self.nodes[&id]
            .fuzzy_until
            .get(&group)
            .is_some_and(|until| slot < *until);
        if !fuzzy {
            self.record_digest(group, id, slot, requests::digest(&state));
        }
    }

    /// Compares the digest of `node`'s applied state at `slot` with the one another replica of
    /// the group had there.
    pub(crate) fn record_digest(&mut self, group: usize, node: NodeId, slot: Slot, digest: u64) {
        match self.groups[group].digests.get(&slot).copied() {
            Some((first, first_node)) if first != digest => self.violation(format!(
                "group {group}: applied states differ at {slot:?}: {first_node:?} has digest \
                 {first:016x}, {node:?} has {digest:016x}"
            )),
            Some(_) => self.report.applied_states_compared += 1,
            None => {
                self.groups[group].digests.insert(slot, (digest, node));
            }
        }
    }

    /// Keeps the checkers' memory bounded: digests of slots every live replica of the group has
    /// passed can no longer be compared with a live replica's (a restarted one may reach them
    /// again, and is then compared with later replicas instead).
    pub(crate) fn prune_checker_state(&mut self) {
        for group in 0..self.groups.len() {
            let live_floor = self.groups[group]
                .members
                .iter()
                .filter(|node| self.is_up(**node))
                .filter_map(|node| self.nodes[node].observed_applied.get(&group).copied())
                .min();
            if let Some(floor) = live_floor {
                let state = &mut self.groups[group];
                state.digests = state.digests.split_off(&floor);
            }
        }
        // Accepted entries below a live replica's log are in its checkpointed tree.
        for node in self.nodes.values_mut() {
            let Some(runtime) = node.runtime.as_ref() else {
                continue;
            };
            for (group, replica) in &runtime.replicas {
                if let Some(memory) = node.acceptor_memory.get_mut(group) {
                    memory.accepted = memory.accepted.split_off(&replica.core().log_first_slot());
                }
            }
        }
    }

    pub(crate) fn check_history(&mut self) {
        let keys: BTreeSet<u64> = self.history.iter().map(|recorded| recorded.key).collect();
        for key in keys {
            let operations: Vec<Operation> = self
                .history
                .iter()
                .filter(|recorded| recorded.key == key && !recorded.refused)
                .map(|recorded| recorded.operation.clone())
                .collect();
            for operation in &operations {
                let count = match operation.kind {
                    OperationKind::Write { .. } => &mut self.report.puts_checked,
                    OperationKind::CompareAndSet { .. } => {
                        &mut self.report.compare_and_sets_checked
                    }
                    OperationKind::Read { .. } => &mut self.report.strong_reads_checked,
                };
                *count += 1;
            }
            self.report.operations_checked += operations.len() as u64;
            match linearizability::check(&operations) {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable => {
                    let window = failing_window(&operations);
                    self.violation(format!(
                        "key {key}: history is not linearizable; the shortest failing prefix \
                         (by invocation) ends with {window:?}"
                    ));
                }
                Verdict::Unknown => self.report.keys_unchecked += 1,
            }
        }
    }

    /// An eventual read may be stale, but the value it returns must have been written to that
    /// key by a write the system did not refuse (not a compare-and-set whose condition was
    /// false, not a write a replica turned away before proposing it).
    /// Time to Live: every expired item acknowledged before `healed_at_nanos` is gone from the
    /// highest applied state seen in its group. The healed phase gives the sweepers many pass
    /// periods with a majority up and connected.
    pub(crate) fn check_expired_items_deleted(&mut self, healed_at_nanos: u64) {
        for group in 0..self.groups.len() {
            let Some((slot, present)) = self.groups[group].latest_expiring.clone() else {
                continue;
            };
            let due: Vec<u64> = self.groups[group]
                .expiring_acknowledged
                .iter()
                .filter(|(_, acknowledged_at)| **acknowledged_at < healed_at_nanos)
                .map(|(key, _)| *key)
                .collect();
            self.report.expired_deletes_checked += due.len() as u64;
            let left: Vec<u64> = due
                .into_iter()
                .filter(|key| present.contains(key))
                .collect();
            if !left.is_empty() {
                self.violation(format!(
                    "time to live: group {group}: {} expired items acknowledged before the faults \
                     healed are still applied at {slot:?} (x{} first)",
                    left.len(),
                    left[0]
                ));
            }
        }
    }

    pub(crate) fn check_eventual_reads(&mut self) {
        let mut violations = Vec::new();
        for read in &self.eventual_reads {
            let Some(value) = read.observed else {
                continue;
            };
            let written = self
                .operation_by_value
                .get(&value)
                .map(|operation| &self.history[*operation])
                .is_some_and(|recorded| {
                    recorded.key == read.key
                        && !recorded.refused
                        && !matches!(
                            recorded.operation.kind,
                            OperationKind::CompareAndSet {
                                succeeded: Some(false),
                                ..
                            }
                        )
                });
            if !written {
                violations.push(format!(
                    "key {}: eventual read from {:?} returned {value}, which no write to it \
                     in group {} produced",
                    read.key, read.node, read.group
                ));
            }
        }
        self.report.eventual_reads_checked = self.eventual_reads.len() as u64;
        self.report.operations_checked += self.eventual_reads.len() as u64;
        for violation in violations {
            self.violation(violation);
        }
    }
}
