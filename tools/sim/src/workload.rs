//! The client workload: puts, compare-and-sets, strong and eventual reads, their answers and
//! the history the linearizability checker reads.

use super::*;

impl Simulation {
    pub(crate) fn on_reply(&mut self, reply_to: u64, response: NodeResponse) {
        if reply_to == SCAN_REPLY_TO {
            return;
        }
        if self.propagation_calls.contains_key(&reply_to) {
            return self.propagation_answered(reply_to, response);
        }
        if self.streams.calls.contains_key(&reply_to) {
            return self.stream_configure_answered(reply_to, response);
        }
        if self.transactions.calls.contains_key(&reply_to) {
            return self.transaction_answered(reply_to, response);
        }
        if self.moves.waits_for(reply_to) {
            return self.move_answered(response);
        }
        if self.splits.waits_for(reply_to) {
            return self.split_answered(response);
        }
        let Some(request) = self.requests.remove(&reply_to) else {
            // The client gave up on it.
            return;
        };
        let PendingRequest {
            client,
            group,
            node,
            kind,
        } = request;
        match kind {
            RequestKind::Write { operation } => {
                self.clients[client].state = ClientState::Idle {
                    next_at_nanos: self.now_nanos,
                };
                self.write_answered(client, group, node, operation, response);
            }
            RequestKind::StrongRead { key } => match response {
                NodeResponse::Item { result, .. } => {
                    let observed = match requests::parse_get_result(&result) {
                        Ok(observed) => observed,
                        Err(error) => return self.violation(format!("GetItem answer: {error}")),
                    };
                    if let Some(value) = observed {
                        self.last_seen.insert(key, value);
                    }
                    let point = self.next_effect_point();
                    self.history.push(Recorded {
                        key,
                        operation: Operation {
                            kind: OperationKind::Read { observed },
                            invoked_nanos: self.now_nanos,
                            returned_nanos: Some(self.now_nanos),
                            took_effect_at: Some(point),
                        },
                        refused: false,
                    });
                }
                NodeResponse::Error(NodeError::WrongOwner { .. })
                    if self.moved_away(group, node) =>
                {
                    // As for NotLeader below: only an idle client retries.
                    if matches!(self.clients[client].state, ClientState::Idle { .. }) {
                        self.retry_later(client, group, None);
                    }
                }
                NodeResponse::Error(NodeError::NotLeader { leader_hint, .. }) => {
                    let hint = leader_hint.map(NodeId).filter(|hint| *hint != node);
                    // A read held for the lease may be answered after its client moved on to
                    // a write: only an idle client retries.
                    if matches!(self.clients[client].state, ClientState::Idle { .. }) {
                        self.retry_later(client, group, hint);
                    }
                }
                // The group applied its split: the client routes the key again.
                NodeResponse::Error(NodeError::StaleEpoch { .. })
                    if self.splits.may_refuse_as_split(group) =>
                {
                    if matches!(self.clients[client].state, ClientState::Idle { .. }) {
                        self.retry_later(client, group, None);
                    }
                }
                other => self.violation(format!(
                    "{node:?} group {group}: unexpected answer to a strong read: {other:?}"
                )),
            },
            RequestKind::ExpiringWrite { key } => match response {
                NodeResponse::Item { .. } => {
                    self.groups[group]
                        .expiring_acknowledged
                        .insert(key, self.now_nanos);
                    self.report.expiring_writes_acknowledged += 1;
                }
                // The client has moved on (no client waits for these): only its guess of the
                // leader learns from the answer.
                NodeResponse::Error(NodeError::NotLeader {
                    leader_hint: Some(hint),
                    ..
                }) => self.clients[client].leader_guess[group] = NodeId(hint),
                _ => {}
            },
            RequestKind::EventualRead { key } => match response {
                NodeResponse::Item { result, .. } => {
                    let mut observed = match requests::parse_get_result(&result) {
                        Ok(observed) => observed,
                        Err(error) => return self.violation(format!("GetItem answer: {error}")),
                    };
                    if self.options.broken == Some(Broken::EventualReadsInventValues) {
                        // A value no write in the run writes: values count up from 1.
                        observed = observed.map(|value| value | 1 << 63);
                    }
                    self.eventual_reads.push(EventualRead {
                        group,
                        node,
                        key,
                        observed,
                    });
                }
                // Moved away between the client's choice and the read.
                NodeResponse::Error(NodeError::WrongOwner { .. })
                    if self.moved_away(group, node) => {}
                NodeResponse::Error(NodeError::StaleEpoch { .. })
                    if self.splits.may_refuse_as_split(group) => {}
                other => self.violation(format!(
                    "{node:?} group {group}: unexpected answer to an eventual read: {other:?}"
                )),
            },
        }
    }

    pub(crate) fn write_answered(
        &mut self,
        client: usize,
        group: usize,
        node: NodeId,
        operation: usize,
        response: NodeResponse,
    ) {
        match response {
            NodeResponse::Item { .. } => {
                let recorded = &mut self.history[operation];
                recorded.operation.returned_nanos = Some(self.now_nanos);
                let key = recorded.key;
                let value = match &mut recorded.operation.kind {
                    OperationKind::CompareAndSet { succeeded, new, .. } => {
                        *succeeded = Some(true);
                        self.report.compare_and_sets_succeeded += 1;
                        *new
                    }
                    OperationKind::Write { value } => *value,
                    OperationKind::Read { .. } => return,
                };
                self.last_seen.insert(key, value);
                self.report.writes_acknowledged += 1;
                self.groups[group].acknowledged += 1;
            }
            NodeResponse::Error(NodeError::Dynamo { type_name, .. })
                if type_name == CONDITION_FAILED =>
            {
                let recorded = &mut self.history[operation];
                recorded.operation.returned_nanos = Some(self.now_nanos);
                match &mut recorded.operation.kind {
                    OperationKind::CompareAndSet { succeeded, .. } => *succeeded = Some(false),
                    _ => self.violation(format!(
                        "{node:?} group {group}: a put without a condition failed its condition"
                    )),
                }
                self.report.writes_acknowledged += 1;
            }
            NodeResponse::Error(NodeError::NotLeader { leader_hint, .. }) => {
                self.history[operation].refused = true;
                self.retry_later(client, group, leader_hint.map(NodeId));
            }
            NodeResponse::Error(NodeError::Busy { .. }) => {
                self.history[operation].refused = true;
                self.retry_later(client, group, Some(node));
            }
            // The group applied its split (or is applying it): refused unapplied, as a router
            // takes it, and routed again.
            NodeResponse::Error(NodeError::StaleEpoch { .. })
                if self.splits.may_refuse_as_split(group) =>
            {
                self.history[operation].refused = true;
                self.retry_later(client, group, None);
            }
            // The node's replica was moved away (membership changes): refused unapplied, as a
            // router takes it, and sent to another replica.
            NodeResponse::Error(NodeError::WrongOwner { .. }) if self.moved_away(group, node) => {
                self.history[operation].refused = true;
                self.retry_later(client, group, None);
            }
            // Its slot went to another leader's entry, or a refusal by its condition was
            // withdrawn: the replica says it never takes effect. Recorded as refused, so the
            // checkers hold the replica to it (its value must never be read), and sent again.
            NodeResponse::Error(NodeError::NotApplied { .. }) => {
                self.history[operation].refused = true;
                self.report.writes_not_applied += 1;
                self.retry_later(client, group, Some(node));
            }
            // Leadership moved while the write was in flight: the outcome is unknown to the
            // client, as after a timeout.
            NodeResponse::Error(NodeError::OutcomeUnknown { .. }) => {}
            other => self.violation(format!(
                "{node:?} group {group}: unexpected answer to a write: {other:?}"
            )),
        }
    }

    pub(crate) fn time_out_pending(&mut self, everything: bool) {
        for client in 0..self.clients.len() {
            if let ClientState::Writing {
                operation,
                reply_to,
            } = self.clients[client].state
            {
                let invoked = self.history[operation].operation.invoked_nanos;
                if everything || self.now_nanos >= invoked.saturating_add(OPERATION_TIMEOUT_NANOS) {
                    self.requests.remove(&reply_to);
                    self.clients[client].state = ClientState::Idle {
                        next_at_nanos: self.now_nanos,
                    };
                }
            }
        }
    }

    pub(crate) fn run_clients(&mut self) {
        self.time_out_pending(false);
        // With streams, clients write only once every base group has its stream, so every
        // item's records start with its first write.
        if self.clients_stopped || !self.streams_configured() || self.in_quiet_spell() {
            return;
        }
        let base_groups = self.base_group_count() as u64;
        let key_count = self.base_keys_groups * self.keys_per_group;
        for client in 0..self.clients.len() {
            let ClientState::Idle { next_at_nanos } = self.clients[client].state else {
                continue;
            };
            if next_at_nanos > self.now_nanos {
                continue;
            }
            if self.options.time_to_live && self.ttl_rng.below(100) < EXPIRING_WRITE_PERCENT {
                let group = self.ttl_rng.below(base_groups) as usize;
                self.expiring_write(client, group);
                continue;
            }
            let key = self.workload_rng.below(key_count);
            let group = self.group_of_key(key);
            let kind = self.workload_rng.below(100);
            if kind < PUT_PERCENT {
                let value = self.take_value();
                self.write(client, group, Command::Put { key, value });
            } else if kind < PUT_PERCENT + COMPARE_AND_SET_PERCENT {
                // Usually expect what clients last learned, so that some succeed under
                // contention; sometimes expect the key to be unwritten or a stale value.
                let expected = match self.workload_rng.below(8) {
                    0 => None,
                    1 => Some(self.workload_rng.below(self.next_value)),
                    _ => self.last_seen.get(&key).copied(),
                };
                let new = self.take_value();
                self.write(client, group, Command::CompareAndSet { key, expected, new });
            } else if kind < PUT_PERCENT + COMPARE_AND_SET_PERCENT + STRONG_READ_PERCENT {
                self.strong_read(client, group, key);
            } else {
                self.eventual_read(client, group, key);
            }
        }
    }

    /// Whether the clients pause now (`QUIET_SPELL_NANOS_MIN`): draws the next spell once the
    /// current one is over. Never while healing, so the heal phase measures progress.
    fn in_quiet_spell(&mut self) -> bool {
        if self.healing {
            return false;
        }
        let now = self.now_nanos;
        let Some(rng) = self.quiet_spells.as_mut() else {
            return false;
        };
        let (start, end) = self.quiet_spell;
        if now >= end {
            let length =
                QUIET_SPELL_NANOS_MIN + rng.below(QUIET_SPELL_NANOS_MAX - QUIET_SPELL_NANOS_MIN);
            let gap = length + rng.below(length);
            self.quiet_spell = (now + gap, now + gap + length);
            self.quiesced_leader_isolation_at =
                (rng.below(3) == 0).then_some(now + gap + QUIESCED_LEADER_ISOLATION_DELAY_NANOS);
            return false;
        }
        now >= start
    }

    pub(crate) fn next_effect_point(&mut self) -> EffectPoint {
        self.event_sequence += 1;
        EffectPoint {
            nanos: self.now_nanos,
            sequence: self.event_sequence,
        }
    }

    pub(crate) fn take_value(&mut self) -> u64 {
        let value = self.next_value;
        self.next_value += 1;
        value
    }

    pub(crate) fn take_reply_to(&mut self) -> u64 {
        let reply_to = self.next_reply_to;
        self.next_reply_to += 1;
        reply_to
    }

    pub(crate) fn retry_later(&mut self, client: usize, group: usize, hint: Option<NodeId>) {
        let guess = match hint {
            Some(node) => node,
            None => self.random_member(group),
        };
        self.clients[client].leader_guess[group] = guess;
        self.clients[client].state = ClientState::Idle {
            next_at_nanos: self.now_nanos + CLIENT_RETRY_NANOS,
        };
    }

    /// Sends a request to a replica; its answer comes back through `on_reply`.
    pub(crate) fn request(
        &mut self,
        client: usize,
        group: usize,
        node: NodeId,
        kind: RequestKind,
        request: PreparedRequest,
    ) -> u64 {
        let reply_to = self.take_reply_to();
        self.requests.insert(
            reply_to,
            PendingRequest {
                client,
                group,
                node,
                kind,
            },
        );
        if let RequestKind::Write { operation } = kind {
            self.clients[client].state = ClientState::Writing {
                operation,
                reply_to,
            };
        } else {
            self.clients[client].state = ClientState::Idle {
                next_at_nanos: self.now_nanos + STEP_NANOS,
            };
        }
        self.send_item_request(group, node, reply_to, request);
        reply_to
    }

    /// Sends `request` to `node`'s replica of `group` through the bus's request path: encoded
    /// as the router sends it, routed and decoded by the shard's dispatch. Its answer comes
    /// back through `on_reply`, perhaps before this returns (a read, a refusal).
    pub(crate) fn send_item_request(
        &mut self,
        group: usize,
        node: NodeId,
        reply_to: u64,
        request: PreparedRequest,
    ) {
        let request = NodeRequest::Item {
            partition: group as u64 + PARTITION_FIRST,
            epoch: self.groups[group].epoch,
            request: encode_request(&request),
        };
        self.route_request(node, group, reply_to, request);
    }

    pub(crate) fn write(&mut self, client: usize, group: usize, command: Command) {
        let node = self.clients[client].leader_guess[group];
        if !self.is_up(node) {
            self.retry_later(client, group, None);
            return;
        }
        let kind = match command {
            Command::Put { value, .. } => OperationKind::Write { value },
            Command::CompareAndSet { expected, new, .. } => OperationKind::CompareAndSet {
                expected,
                new,
                succeeded: None,
            },
        };
        self.history.push(Recorded {
            key: command.key(),
            operation: Operation {
                kind,
                invoked_nanos: self.now_nanos,
                returned_nanos: None,
                took_effect_at: None,
            },
            refused: false,
        });
        let operation = self.history.len() - 1;
        self.operation_by_value
            .insert(command.written_value(), operation);
        let request = if self.options.global_index {
            command.indexed_request()
        } else {
            command.request()
        };
        self.request(
            client,
            group,
            node,
            RequestKind::Write { operation },
            request,
        );
    }

    /// Writes a new expired item to `group` (Time to Live on). Its answer only records it as
    /// acknowledged, for the end-of-run check that the sweeper deleted it.
    pub(crate) fn expiring_write(&mut self, client: usize, group: usize) {
        let node = self.clients[client].leader_guess[group];
        if !self.is_up(node) {
            self.retry_later(client, group, None);
            return;
        }
        let key = self.next_expiring_key;
        self.next_expiring_key += 1;
        self.request(
            client,
            group,
            node,
            RequestKind::ExpiringWrite { key },
            requests::expiring_put_request(key, self.options.global_index),
        );
    }

    pub(crate) fn strong_read(&mut self, client: usize, group: usize, key: u64) {
        let broken = self.options.broken == Some(Broken::ReadsWithoutLease);
        // The broken variant reads from any replica without asking for consistency, as an
        // eventually consistent read would, but checks the answer as strong.
        let node = if broken {
            self.random_member(group)
        } else {
            self.clients[client].leader_guess[group]
        };
        self.read(
            client,
            group,
            node,
            RequestKind::StrongRead { key },
            requests::get_request(key, !broken),
        );
    }

    /// Reads any live replica's applied state, with no lease and no leader: the value may be
    /// stale, but it must be one a write that was not refused wrote.
    pub(crate) fn eventual_read(&mut self, client: usize, group: usize, key: u64) {
        let node = self.random_member(group);
        self.read(
            client,
            group,
            node,
            RequestKind::EventualRead { key },
            requests::get_request(key, false),
        );
    }

    /// Sends a GetItem to `node`, which answers a read at once (inside `request`).
    pub(crate) fn read(
        &mut self,
        client: usize,
        group: usize,
        node: NodeId,
        kind: RequestKind,
        request: PreparedRequest,
    ) {
        if !self.is_up(node) {
            self.retry_later(client, group, None);
            return;
        }
        let reply_to = self.request(client, group, node, kind, request);
        // Its answer came back already, unless the read stopped its node (corruption found on
        // a faulty disk while reading: counted as such, or a violation of its own) or a
        // quiesced leader holds a strong read until a heartbeat round renews its lease (the
        // answer comes later through `on_reply`; the client goes on meanwhile).
        if self.requests.contains_key(&reply_to) {
            let held_for_lease = matches!(kind, RequestKind::StrongRead { .. })
                && self.is_up(node)
                && self.nodes[&node]
                    .runtime
                    .as_ref()
                    .and_then(|runtime| runtime.replicas.get(&group))
                    .is_some_and(|replica| replica.holds_requests_for_lease());
            if held_for_lease {
                self.fault("strong read held for the lease");
            } else {
                self.requests.remove(&reply_to);
                if self.is_up(node) {
                    self.violation(format!("{node:?} group {group}: a read was not answered"));
                }
            }
        }
    }

    /// A replica clients may send to: any of the group's, less a move's joiner still catching
    /// up (a router routes to it only once it has caught up).
    pub(crate) fn random_member(&mut self, group: usize) -> NodeId {
        let catching_up = self.moves.catching_up(group);
        let members: Vec<NodeId> = self.groups[group]
            .members
            .iter()
            .copied()
            .filter(|member| Some(*member) != catching_up)
            .collect();
        members[self.workload_rng.below(members.len() as u64) as usize]
    }
}
