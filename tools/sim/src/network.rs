//! The simulated network: messages between nodes as the bus carries them, with loss,
//! duplication, delay, reordering, isolation and clogging, and the per-link snapshot queues.

use super::*;

/// The broken variant's alteration of an Accept: every put becomes a delete of its key.
pub(crate) fn alter_accept(message: Message) -> Message {
    let Message::Accept {
        ballot,
        round,
        first_slot,
        entries,
        commit_slot,
    } = message
    else {
        return message;
    };
    let entries = entries
        .into_iter()
        .map(|entry| match entry.payload {
            Payload::Command(bytes) => {
                let payload = match MutationBatch::decode(&bytes) {
                    Some(batch) => MutationBatch {
                        mutations: batch
                            .mutations
                            .into_iter()
                            .map(|mutation| Mutation::Delete {
                                key: mutation.key().to_vec(),
                            })
                            .collect(),
                    }
                    .encode(),
                    None => bytes,
                };
                LogEntry {
                    ballot: entry.ballot,
                    payload: Payload::Command(payload),
                }
            }
            _ => entry,
        })
        .collect();
    Message::Accept {
        ballot,
        round,
        first_slot,
        entries,
        commit_slot,
    }
}

impl Simulation {
    /// Ends a clog whose time is up and releases what it held, each message after a fresh
    /// network delay, so the backlog arrives in a burst and in a new order.
    pub(crate) fn unclog_due(&mut self) {
        if self.clogged.is_none_or(|(_, until)| until > self.now_nanos) {
            return;
        }
        self.clogged = None;
        for message in std::mem::take(&mut self.clog_held) {
            let delay = self.network_rng.below(self.rates.delay_nanos_max);
            self.enqueue(self.now_nanos + delay, message);
        }
    }

    /// Each link whose follower is reachable puts one queued chunk on the network per step (the
    /// bus's writer takes one chunk per write). A sender that went down lost its queues with
    /// its process.
    pub(crate) fn send_queued_snapshot_chunks(&mut self) {
        let links: Vec<(NodeId, NodeId)> = self.snapshot_queues.keys().copied().collect();
        for (from, to) in links {
            if !self.is_up(from) {
                self.snapshot_queues.remove(&(from, to));
                continue;
            }
            let reachable = self.is_up(to)
                && !self.isolated.contains_key(&from)
                && self.isolated.get(&to).is_none_or(|one_way| *one_way);
            if !reachable {
                continue;
            }
            let Some(queue) = self.snapshot_queues.get_mut(&(from, to)) else {
                continue;
            };
            let Some(message) = queue.pop_front() else {
                continue;
            };
            if queue.is_empty() {
                self.snapshot_queues.remove(&(from, to));
            }
            let InFlight {
                group, envelope, ..
            } = message;
            self.send(group, from, to, envelope);
        }
    }

    pub(crate) fn enqueue(&mut self, deliver_at_nanos: u64, message: InFlight) {
        self.network_sequence += 1;
        self.network
            .insert((deliver_at_nanos, self.network_sequence), message);
    }

    pub(crate) fn deliver_due(&mut self) {
        let mut due = Vec::new();
        // Bounded by the network's size limit.
        while let Some(entry) = self.network.first_entry() {
            if entry.key().0 > self.now_nanos {
                break;
            }
            due.push(entry.remove());
        }
        // Reordering: deliver what is due in a random order.
        while !due.is_empty() {
            let pick = self.network_rng.below(due.len() as u64) as usize;
            let message = due.swap_remove(pick);
            let clogged = self
                .clogged
                .is_some_and(|(node, _)| node == message.from || node == message.to);
            if clogged {
                self.fault("message held by clog");
                self.clog_held.push(message);
            } else {
                self.deliver(message);
            }
        }
    }

    pub(crate) fn deliver(&mut self, message: InFlight) {
        let blocked_from = self.isolated.contains_key(&message.from);
        let blocked_to = self
            .isolated
            .get(&message.to)
            .is_some_and(|one_way| !one_way);
        if blocked_from || blocked_to || !self.is_up(message.to) {
            return;
        }
        let (to, group) = (message.to, message.group);
        let bus_message = match message.envelope {
            Envelope::Replication(envelope) => BusMessage::Replication(vec![envelope]),
            Envelope::Snapshot(chunk, horizon) => {
                self.delivering_snapshot_horizon = horizon;
                BusMessage::Snapshot(chunk)
            }
        };
        let now = self.local_time(to);
        let Some(runtime) = self.nodes.get_mut(&to).and_then(|n| n.runtime.as_mut()) else {
            return;
        };
        for routed in runtime.dispatch.route(BUS_CONNECTION, bus_message, now) {
            match routed {
                Routed::Replica {
                    event: Event::Message { from, message },
                    ..
                } => {
                    let altered = self.options.broken
                        == Some(Broken::AcceptedWritesAlteredOnOneReplica)
                        && self.groups[group].members[0] == to;
                    let message = if altered {
                        alter_accept(message)
                    } else {
                        message
                    };
                    self.feed(to, group, Event::Message { from, message });
                }
                routed @ Routed::Replica { .. } => self.feed_routed(to, routed),
                Routed::Undecodable => self.violation(format!(
                    "{to:?} group {group}: a replication message that does not convert"
                )),
                other => self.violation(format!(
                    "{to:?} group {group}: replica traffic routed as {other:?}"
                )),
            }
        }
    }

    pub(crate) fn send(&mut self, group: usize, from: NodeId, to: NodeId, envelope: Envelope) {
        if self.network.len() + self.clog_held.len() >= NETWORK_MESSAGES_MAX {
            return;
        }
        if !self.healing && self.network_rng.below(1_000_000) < self.rates.loss_per_million {
            self.fault("message lost");
            return;
        }
        if !self.healing && self.network_rng.below(1_000_000) < self.rates.duplicate_per_million {
            self.fault("message duplicated");
            let delay = self.network_rng.below(self.rates.delay_nanos_max);
            let copy = InFlight {
                group,
                from,
                to,
                envelope: envelope.clone(),
            };
            self.enqueue(self.now_nanos + delay, copy);
        }
        let delay = self.network_rng.below(self.rates.delay_nanos_max);
        let mut deliver_at = self.now_nanos + delay;
        // A transfer's chunks travel one connection, as the bus's per-peer writer sends them:
        // a later chunk never overtakes an earlier one (the receiver takes a gap for a lost
        // chunk and drops the transfer). Each arrives at least a step after the one before, so
        // that `deliver_due` never shuffles two of them.
        if let Envelope::Snapshot(chunk, _) = &envelope {
            let last = self.snapshot_link_delivery.entry((from, to)).or_default();
            if chunk.chunk_index > 0 {
                deliver_at = deliver_at.max(*last + STEP_NANOS);
            }
            *last = deliver_at;
        }
        let message = InFlight {
            group,
            from,
            to,
            envelope,
        };
        self.enqueue(deliver_at, message);
    }

    /// The room on the link from `id` to the follower its replica of `group` is streaming to.
    pub(crate) fn snapshot_room(&self, id: NodeId, group: usize) -> usize {
        let destination = self.nodes[&id]
            .runtime
            .as_ref()
            .and_then(|runtime| runtime.replicas.get(&group))
            .and_then(|replica| replica.snapshot_destination());
        destination.map_or(0, |to| {
            SNAPSHOT_QUEUE_CHUNKS_MAX
                - self
                    .snapshot_queues
                    .get(&(id, to))
                    .map_or(0, VecDeque::len)
                    .min(SNAPSHOT_QUEUE_CHUNKS_MAX)
        })
    }
}
