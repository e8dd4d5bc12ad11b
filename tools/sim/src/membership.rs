//! With `--membership true`: replica moves under the workload and every fault, driven through
//! the production requests a control plane sends (`JoinPartition`, `ChangeMembership`,
//! `DeletePartition`, routed by each node's shard dispatch).
//!
//! One move at a time, as an autoadmin loop would throttle them: a base group's replica goes
//! from a source node to a target node that hosts none of it. The source is a node stopped for
//! good by its faulty disk when there is one (re-replication), else a random member. The target
//! is up, healthy-disked (so a group never gets a second faulty replica) and outside the group.
//! The steps, each asked again until answered (every request is idempotent):
//! 1. **Join**: an empty replica on the target. From here the checkers count it as one of the
//!    group's replicas (its applied state is compared with the others').
//! 2. **Add**: `AddFullReplica(target)` at the leader, found by following `NotLeader` hints.
//! 3. **Catch up**: the same request, answered at once with each follower's progress, until
//!    the target holds every slot committed when it was added. Only then do clients read
//!    from it (a router adds it to its partition map then).
//! 4. **Remove**: `Remove(source)` at the leader.
//! 5. **Settle**: until every remaining member reports (`ReplicaStatus`, what a node's `Status`
//!    answer carries) an applied slot at or past the commit the removal's answer gave; a
//!    replica checkpoints a membership entry before it reports it applied, so the removal is
//!    then durable everywhere. Until then a member that restarts, or missed the commit, counts
//!    the old membership, the source included, in its elections (replication README,
//!    "Membership change"). A remaining member stopped for good never settles: the source's
//!    replica is then left running, a non-member.
//! 6. **Delete**: the source's replica and files (`DeletePartition`), unless the node is stopped
//!    for good; either way it stops being one of the group's replicas.
//!
//! A source stopped for good is removed first, then the target joins, is added and catches up
//! (nothing is left to delete). Adding first would make a group of four with one member dead:
//! every other member, the joiner included, would be needed for every commit and election, and
//! the joiner can take no part until its snapshot is in (seed 5127 stalled so). Removed first,
//! the two members left commit while the joiner catches up.
//!
//! No move starts in the heal phase, so that the liveness checks there measure a settled
//! cluster; one under way finishes.

use super::*;
use shoal_partition::meta::key_schema_to_wire;
use shoal_wire::messages::{MembershipChangeWire, MembershipWire};

/// The first move starts after this long, the next ones this long after the last ended.
const MOVE_INTERVAL_NANOS: u64 = 1_500_000_000;
/// A step's request that got no answer in this long is asked again (its node crashed, or the
/// answer was lost).
const MOVE_REQUEST_TIMEOUT_NANOS: u64 = 500_000_000;
/// A step refused for now (busy, not the leader, the node down) is asked again after this long.
const MOVE_RETRY_NANOS: u64 = 20_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MoveStep {
    Join,
    Add,
    CatchUp { added_at_commit: u64 },
    Remove,
    Settle { removal_commit: u64 },
    Delete,
}

#[derive(Debug)]
pub(crate) struct Move {
    pub(crate) group: usize,
    pub(crate) source: NodeId,
    pub(crate) target: NodeId,
    /// The source is stopped for good: it is removed first (module docs).
    source_dead: bool,
    pub(crate) step: MoveStep,
    /// The node the next leader request goes to.
    leader_guess: NodeId,
    /// The request in flight, by reply token, and when it is given up on.
    waiting: Option<(u64, u64)>,
    next_at_nanos: u64,
    started_nanos: u64,
}

#[derive(Default)]
pub(crate) struct Moves {
    pub(crate) current: Option<Move>,
    next_start_nanos: u64,
    rng: Option<SeededRng>,
}

impl Moves {
    pub(crate) fn new(rng: SeededRng) -> Self {
        Self {
            current: None,
            next_start_nanos: MOVE_INTERVAL_NANOS,
            rng: Some(rng),
        }
    }

    /// Whether `reply_to` is the request of the move under way.
    pub(crate) fn waits_for(&self, reply_to: u64) -> bool {
        self.current
            .as_ref()
            .and_then(|current| current.waiting)
            .is_some_and(|(token, _)| token == reply_to)
    }

    /// The node clients must not read from yet: a joiner still catching up.
    pub(crate) fn catching_up(&self, group: usize) -> Option<NodeId> {
        self.current
            .as_ref()
            .filter(|current| current.group == group)
            .filter(|current| {
                matches!(
                    current.step,
                    MoveStep::Join | MoveStep::Add | MoveStep::CatchUp { .. }
                )
            })
            .map(|current| current.target)
    }
}

impl Simulation {
    pub(crate) fn run_moves(&mut self) {
        if self.moves.rng.is_none() {
            return;
        }
        if self.moves.current.is_none() {
            if self.healing || self.now_nanos < self.moves.next_start_nanos {
                return;
            }
            self.start_move();
            return;
        }
        let now_nanos = self.now_nanos;
        let Some(current) = self.moves.current.as_mut() else {
            return;
        };
        if let Some((_, give_up_at)) = current.waiting {
            if now_nanos < give_up_at {
                return;
            }
            current.waiting = None;
            current.next_at_nanos = now_nanos;
            self.fault("move: a request got no answer");
            return;
        }
        if now_nanos < current.next_at_nanos {
            return;
        }
        self.send_move_request();
    }

    fn start_move(&mut self) {
        let groups: Vec<usize> = (0..self.base_group_count()).collect();
        let rng = self.moves.rng.as_mut().expect("moves are on");
        let group = groups[rng.below(groups.len() as u64) as usize];
        let members = self.groups[group].members.clone();
        let stopped: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|node| self.nodes[node].stopped)
            .collect();
        let rng = self.moves.rng.as_mut().expect("moves are on");
        let source = if stopped.is_empty() {
            members[rng.below(members.len() as u64) as usize]
        } else {
            stopped[0]
        };
        let targets: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(id, node)| {
                !members.contains(id) && node.is_up() && !node.stopped && !node.faulty_disk
            })
            .map(|(id, _)| *id)
            .collect();
        if targets.is_empty() {
            self.moves.next_start_nanos = self.now_nanos + MOVE_INTERVAL_NANOS;
            return;
        }
        let target = targets[rng.below(targets.len() as u64) as usize];
        let leader_guess = members[0];
        let source_dead = !stopped.is_empty();
        self.moves.current = Some(Move {
            group,
            source,
            target,
            source_dead,
            step: if source_dead {
                MoveStep::Remove
            } else {
                MoveStep::Join
            },
            leader_guess,
            waiting: None,
            next_at_nanos: self.now_nanos,
            started_nanos: self.now_nanos,
        });
        self.fault("move: started");
        if !stopped.is_empty() {
            self.fault("move: started for a node stopped for good");
        }
        self.send_move_request();
    }

    /// Sends the current step's request through the node's shard dispatch.
    fn send_move_request(&mut self) {
        let Some(current) = self.moves.current.as_ref() else {
            return;
        };
        let (group, step, source, target) =
            (current.group, current.step, current.source, current.target);
        let partition = group as u64 + PARTITION_FIRST;
        let (node, request) = match step {
            MoveStep::Join => (
                target,
                NodeRequest::JoinPartition {
                    partition,
                    epoch: EPOCH,
                    key_schema: key_schema_to_wire(&partition_meta(group, &[], false).key_schema),
                },
            ),
            MoveStep::Add | MoveStep::CatchUp { .. } => (
                current.leader_guess,
                NodeRequest::ChangeMembership {
                    partition,
                    epoch: EPOCH,
                    change: MembershipChangeWire::AddFullReplica(target.0),
                },
            ),
            MoveStep::Remove => (
                current.leader_guess,
                NodeRequest::ChangeMembership {
                    partition,
                    epoch: EPOCH,
                    change: MembershipChangeWire::Remove(source.0),
                },
            ),
            MoveStep::Settle { removal_commit } => return self.settle_removal(removal_commit),
            MoveStep::Delete => {
                if self.nodes[&source].stopped {
                    // Stopped for good: nothing of it will run again.
                    return self.finish_move();
                }
                (
                    source,
                    NodeRequest::DeletePartition {
                        partition,
                        epoch: EPOCH,
                    },
                )
            }
        };
        if !self.is_up(node) {
            return self.retry_move(None);
        }
        let reply_to = self.take_reply_to();
        let give_up_at = self.now_nanos + MOVE_REQUEST_TIMEOUT_NANOS;
        if let Some(current) = self.moves.current.as_mut() {
            current.waiting = Some((reply_to, give_up_at));
        }
        let now = self.local_time(node);
        let frame = RequestFrame {
            request_id: reply_to,
            request,
        };
        let Some(runtime) = self.nodes.get_mut(&node).and_then(|n| n.runtime.as_mut()) else {
            return;
        };
        for routed in runtime
            .dispatch
            .route(reply_to, BusMessage::Request(frame), now)
        {
            match routed {
                Routed::Replica { event, .. } => self.feed(node, group, event),
                Routed::Respond { frame, .. } => self.on_reply(frame.request_id, frame.response),
                Routed::Create { meta, .. } => {
                    let response = self.join_replica(node, group, meta);
                    self.on_reply(reply_to, response);
                }
                Routed::Delete { partition, .. } => {
                    let response = self.delete_replica(node, group, partition);
                    self.on_reply(reply_to, response);
                }
                other => self.violation(format!(
                    "{node:?} group {group}: a move's request routed as {other:?}"
                )),
            }
        }
    }

    fn retry_move(&mut self, leader_hint: Option<NodeId>) {
        let Some(current) = self.moves.current.as_mut() else {
            return;
        };
        current.waiting = None;
        current.next_at_nanos = self.now_nanos + MOVE_RETRY_NANOS;
        let members = &self.groups[current.group].members;
        current.leader_guess = match leader_hint {
            Some(hint) if members.contains(&hint) => hint,
            // Round the members, so that a dead guess is not asked for ever.
            _ => {
                let position = members
                    .iter()
                    .position(|member| *member == current.leader_guess)
                    .map_or(0, |position| position + 1);
                members[position % members.len()]
            }
        };
    }

    pub(crate) fn move_answered(&mut self, response: NodeResponse) {
        let Some(current) = self.moves.current.as_mut() else {
            return;
        };
        // `SHOAL_LOG=shoal_sim=debug` shows each step's answer (with the replicas' own lines).
        tracing::debug!(
            simulated_ms = self.now_nanos / 1_000_000,
            group = current.group,
            source = current.source.0,
            target = current.target.0,
            step = ?current.step,
            asked = current.leader_guess.0,
            ?response,
            "move answered"
        );
        current.waiting = None;
        let (group, step, source, target, source_dead) = (
            current.group,
            current.step,
            current.source,
            current.target,
            current.source_dead,
        );
        match (step, response) {
            (MoveStep::Join, NodeResponse::Created) => self.next_move_step(MoveStep::Add),
            (
                MoveStep::Add | MoveStep::CatchUp { .. } | MoveStep::Remove,
                NodeResponse::Membership {
                    membership,
                    commit_slot,
                    followers,
                },
            ) => {
                if !self.membership_is_valid(group, &membership) {
                    return;
                }
                match step {
                    MoveStep::Add => {
                        self.fault("move: replica added");
                        self.next_move_step(MoveStep::CatchUp {
                            added_at_commit: commit_slot,
                        });
                    }
                    MoveStep::CatchUp { added_at_commit } => {
                        let caught_up = followers.iter().any(|follower| {
                            follower.node == target.0 && follower.match_slot >= added_at_commit
                        });
                        if caught_up && source_dead {
                            self.finish_move();
                        } else if caught_up {
                            self.next_move_step(MoveStep::Remove);
                        } else {
                            self.retry_move(Some(
                                self.moves.current.as_ref().expect("a move").leader_guess,
                            ));
                        }
                    }
                    _ => {
                        self.fault("move: replica removed");
                        if source_dead {
                            self.next_move_step(MoveStep::Join);
                        } else {
                            self.next_move_step(MoveStep::Settle {
                                removal_commit: commit_slot,
                            });
                        }
                    }
                }
            }
            (MoveStep::Delete, NodeResponse::Deleted) => self.finish_move(),
            (_, NodeResponse::Error(NodeError::NotLeader { leader_hint, .. })) => {
                self.retry_move(leader_hint.map(NodeId))
            }
            (
                _,
                NodeResponse::Error(
                    NodeError::Busy { .. }
                    | NodeError::NotApplied { .. }
                    | NodeError::OutcomeUnknown { .. }
                    | NodeError::WrongOwner { .. },
                ),
            ) => {
                let guess = self
                    .moves
                    .current
                    .as_ref()
                    .map(|current| current.leader_guess);
                self.retry_move(guess)
            }
            (step, other) => self.violation(format!(
                "move of group {group} from {source:?} to {target:?}: {step:?} was answered \
                 {other:?}"
            )),
        }
    }

    /// Whether `node` may answer `WrongOwner` for `group`: a move deleted its replica there (or
    /// never made one). Anywhere else the answer would mean a node lost a replica it hosts, a
    /// violation.
    pub(crate) fn moved_away(&self, group: usize, node: NodeId) -> bool {
        !self.groups[group].members.contains(&node)
    }

    /// A membership answer names only nodes the move knows of: the group's replicas, the
    /// target included, less the source once removed.
    fn membership_is_valid(&mut self, group: usize, membership: &MembershipWire) -> bool {
        let known = &self.groups[group].members;
        let strangers: Vec<u64> = membership
            .full_replicas
            .iter()
            .chain(&membership.log_replicas)
            .copied()
            .filter(|node| !known.contains(&NodeId(*node)))
            .collect();
        if strangers.is_empty() {
            return true;
        }
        self.violation(format!(
            "group {group}: a leader reported members {strangers:?} no move added"
        ));
        false
    }

    /// Step 5: whether every remaining member holds the removal durably; if so, on to the
    /// deletion. A member stopped for good never will: the move ends with the source's replica
    /// left in place.
    fn settle_removal(&mut self, removal_commit: u64) {
        let Some(current) = self.moves.current.as_ref() else {
            return;
        };
        let (group, source) = (current.group, current.source);
        let remaining: Vec<NodeId> = self.groups[group]
            .members
            .iter()
            .copied()
            .filter(|member| *member != source)
            .collect();
        if remaining.iter().any(|member| self.nodes[member].stopped) {
            self.fault("move: removed replica left in place");
            return self.finish_move();
        }
        let settled = remaining.iter().all(|member| {
            let now = self.local_time(*member);
            self.nodes[member]
                .runtime
                .as_ref()
                .and_then(|runtime| runtime.replicas.get(&group))
                .is_some_and(|replica| replica.status(now).applied_slot >= removal_commit)
        });
        if settled {
            self.next_move_step(MoveStep::Delete);
        } else {
            let guess = current.leader_guess;
            self.retry_move(Some(guess));
        }
    }

    fn next_move_step(&mut self, step: MoveStep) {
        let Some(current) = self.moves.current.as_mut() else {
            return;
        };
        current.step = step;
        current.next_at_nanos = self.now_nanos;
        self.send_move_request();
    }

    fn finish_move(&mut self) {
        let Some(current) = self.moves.current.take() else {
            return;
        };
        self.groups[current.group]
            .members
            .retain(|member| *member != current.source);
        self.report.moves_finished += 1;
        self.report.move_nanos_max = self
            .report
            .move_nanos_max
            .max(self.now_nanos - current.started_nanos);
        self.moves.next_start_nanos = self.now_nanos + MOVE_INTERVAL_NANOS;
    }

    /// A move's step on `id` failed the node: its outcome is unknown to the mover.
    fn move_step_failed(&mut self, id: NodeId, group: usize, failure: NodeFailure) -> NodeResponse {
        self.fail_node(id, group, failure);
        NodeResponse::Error(NodeError::OutcomeUnknown {
            message: "the node failed".to_string(),
        })
    }

    /// A `JoinPartition` routed to `id`'s shard: creates the empty replica as the production
    /// shard does (`Dispatch::begin_create`, `PartitionReplica::create`), and from here on the
    /// checkers count it as one of the group's replicas.
    fn join_replica(&mut self, id: NodeId, group: usize, meta: PartitionMeta) -> NodeResponse {
        let now = self.local_time(id);
        let seed = self.options.seed ^ id.0.rotate_left(32) ^ self.now_nanos;
        let Some(runtime) = self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut()) else {
            return NodeResponse::Error(NodeError::NotApplied {
                message: "down".to_string(),
            });
        };
        if let shoal_shard::dispatch::Decision::Answer(response) =
            runtime.dispatch.begin_create(&meta)
        {
            // Already here: a replica an earlier move removed and left in place (a member
            // stopped for good kept it from settling). It joins again with its own state.
            if response == NodeResponse::Created && !self.groups[group].members.contains(&id) {
                self.groups[group].members.push(id);
            }
            return response;
        }
        let partition = meta.partition;
        let directory = self.nodes[&id].directory();
        let runtime = self
            .nodes
            .get_mut(&id)
            .and_then(|n| n.runtime.as_mut())
            .expect("up");
        let created = drive(
            PartitionReplica::create(
                meta.clone(),
                id,
                replica_config(),
                seed,
                Rc::new(directory),
                runtime.cache.clone(),
                runtime.wal.clone(),
                now,
            ),
            &mut runtime.committer,
        );
        runtime.dispatch.end_create(partition);
        match created {
            Ok(Ok(replica)) => {
                runtime.dispatch.add_replica(partition, meta.epoch);
                runtime.replicas.insert(group, replica);
                let node = self.nodes.get_mut(&id).expect("node exists");
                node.groups.push(group);
                node.acceptor_memory
                    .insert(group, AcceptorMemory::default());
                node.observed_applied.insert(group, Slot::ZERO);
                node.fuzzy_until.remove(&group);
                if !self.groups[group].members.contains(&id) {
                    self.groups[group].members.push(id);
                }
                self.fault("move: replica joined");
                NodeResponse::Created
            }
            Ok(Err(error)) => self.move_step_failed(
                id,
                group,
                NodeFailure {
                    text: format!("joining: {error}"),
                    corruption: partition_corruption(&error),
                },
            ),
            Err(failure) => self.move_step_failed(id, group, failure),
        }
    }

    /// A `DeletePartition` routed to `id`'s shard: the replica is out of the dispatch's table
    /// already (`begin_delete`); closes it and removes its files as the production shard's
    /// replica task does on `Event::Stop`.
    fn delete_replica(&mut self, id: NodeId, group: usize, partition: u64) -> NodeResponse {
        let Some(runtime) = self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut()) else {
            return NodeResponse::Error(NodeError::OutcomeUnknown {
                message: "down".to_string(),
            });
        };
        if let shoal_shard::dispatch::Decision::Answer(response) =
            runtime.dispatch.begin_delete(partition, EPOCH)
        {
            return response;
        }
        let Some(replica) = runtime.replicas.remove(&group) else {
            return NodeResponse::Deleted;
        };
        let destroyed = drive(replica.destroy(), &mut runtime.committer);
        runtime.dispatch.end_delete(partition);
        // Its records still on their way to durability are no longer any replica's: a replica
        // of the group created here again must not be told of them.
        runtime.unsynced.retain(|(hosted, ..)| *hosted != group);
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.groups.retain(|hosted| *hosted != group);
        node.acceptor_memory.remove(&group);
        node.observed_applied.remove(&group);
        node.fuzzy_until.remove(&group);
        match destroyed {
            Ok(Ok(())) => {
                self.fault("move: replica deleted");
                NodeResponse::Deleted
            }
            Ok(Err(error)) => self.move_step_failed(
                id,
                group,
                NodeFailure {
                    text: format!("deleting: {error}"),
                    corruption: partition_corruption(&error),
                },
            ),
            Err(failure) => self.move_step_failed(id, group, failure),
        }
    }
}
