//! With `--membership true`: replica moves under the workload and every fault, driven by the
//! production step machine (`shoal_autoadmin::ReplicaMove`, whose module docs give the steps
//! and why they are in that order) through the production requests a control plane sends
//! (`JoinPartition`, `ChangeMembership`, `DeletePartition`, routed by each node's shard
//! dispatch). A router's autoadmin drives the same machine over the bus.
//!
//! One move at a time, as an autoadmin loop would throttle them: a base group's replica goes
//! from a source node to a target node that hosts none of it. The source is a node stopped for
//! good by its faulty disk when there is one (re-replication: removed first, never deleted),
//! else a random member. The target is up, healthy-disked (so a group never gets a second
//! faulty replica) and outside the group. Every request is asked again until answered.
//!
//! What this driver adds to the machine:
//! - the joiner counts as one of the group's replicas from its join (the checkers compare its
//!   applied state with the others'), and clients read from it only once the machine says it
//!   has caught up (`ReplicaMove::target_caught_up`);
//! - a target given up (it refused to join) is replaced by another up, healthy-disked node;
//! - settling reads each remaining member's `ReplicaStatus` directly, what a node's `Status`
//!   answer carries; a remaining member stopped for good never settles, and the source's
//!   replica is then left running, a non-member;
//! - a membership answer naming a node no move added is a violation, and so is any answer the
//!   machine calls unexpected.
//!
//! No move starts in the heal phase, so that the liveness checks there measure a settled
//! cluster; one under way finishes.

use super::*;
use shoal_autoadmin::{MoveAction, MoveStep, Progress, ReplicaMove};
use shoal_partition::meta::key_schema_to_wire;
use shoal_wire::messages::MembershipWire;

/// The first move starts after this long, the next ones this long after the last ended.
const MOVE_INTERVAL_NANOS: u64 = 1_500_000_000;
/// A step's request that got no answer in this long is asked again (its node crashed, or the
/// answer was lost).
const MOVE_REQUEST_TIMEOUT_NANOS: u64 = 500_000_000;
/// A step refused for now (busy, not the leader, the node down) is asked again after this long.
const MOVE_RETRY_NANOS: u64 = 20_000_000;

#[derive(Debug)]
pub(crate) struct Move {
    pub(crate) group: usize,
    pub(crate) machine: ReplicaMove,
    /// The request in flight: its reply token, the node asked, and when it is given up on.
    waiting: Option<(u64, NodeId, u64)>,
    next_at_nanos: u64,
    started_nanos: u64,
}

impl Move {
    fn source(&self) -> NodeId {
        NodeId(self.machine.source)
    }

    fn target(&self) -> NodeId {
        NodeId(self.machine.target)
    }
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
            .is_some_and(|(token, ..)| token == reply_to)
    }

    /// The node clients must not read from yet: a joiner still catching up.
    pub(crate) fn catching_up(&self, group: usize) -> Option<NodeId> {
        self.current
            .as_ref()
            .filter(|current| current.group == group && !current.machine.target_caught_up())
            .map(Move::target)
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
        if let Some((_, asked, give_up_at)) = current.waiting {
            if now_nanos < give_up_at {
                return;
            }
            current.waiting = None;
            current.next_at_nanos = now_nanos;
            current.machine.unanswered(asked.0);
            self.fault("move: a request got no answer");
            return;
        }
        if now_nanos < current.next_at_nanos {
            return;
        }
        self.send_move_request();
    }

    fn start_move(&mut self) {
        // A group being split, and a split parent, get no move.
        let groups: Vec<usize> = (0..self.base_group_count())
            .filter(|group| self.groups[*group].serving && !self.splits.involves(*group))
            .collect();
        if groups.is_empty() {
            self.moves.next_start_nanos = self.now_nanos + MOVE_INTERVAL_NANOS;
            return;
        }
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
        let source_dead = !stopped.is_empty();
        let machine = ReplicaMove::new(
            group as u64 + PARTITION_FIRST,
            self.groups[group].epoch,
            key_schema_to_wire(&partition_meta(group, &[], false).key_schema),
            members.iter().map(|member| member.0).collect(),
            source.0,
            target.0,
            source_dead,
        );
        self.moves.current = Some(Move {
            group,
            machine,
            waiting: None,
            next_at_nanos: self.now_nanos,
            started_nanos: self.now_nanos,
        });
        self.fault("move: started");
        if source_dead {
            self.fault("move: started for a node stopped for good");
        }
        self.send_move_request();
    }

    /// Acts on the machine's current step: a request through the node's shard dispatch, a
    /// settle check, or a record (which the simulator keeps in its group view).
    fn send_move_request(&mut self) {
        let Some(current) = self.moves.current.as_ref() else {
            return;
        };
        let group = current.group;
        let (node, request) = match current.machine.action() {
            MoveAction::Ask { node, request } => (NodeId(node), request),
            MoveAction::Settle {
                members,
                removal_commit,
            } => return self.settle_removal(&members, removal_commit),
            MoveAction::RecordTarget => {
                self.fault("move: target recorded for routing");
                return self.move_recorded();
            }
            MoveAction::RecordDone => return self.move_recorded(),
            MoveAction::Retarget { given_up } => return self.retarget_move(NodeId(given_up)),
            MoveAction::Done => return self.finish_move(),
        };
        if matches!(request, NodeRequest::DeletePartition { .. }) && self.nodes[&node].stopped {
            // Stopped for good: nothing of it will run again.
            if let Some(current) = self.moves.current.as_mut() {
                current.machine.skip_delete();
            }
            return self.send_move_request();
        }
        if !self.is_up(node) {
            if let Some(current) = self.moves.current.as_mut() {
                current.machine.unanswered(node.0);
            }
            return self.retry_move();
        }
        let reply_to = self.take_reply_to();
        let give_up_at = self.now_nanos + MOVE_REQUEST_TIMEOUT_NANOS;
        if let Some(current) = self.moves.current.as_mut() {
            current.waiting = Some((reply_to, node, give_up_at));
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

    /// `MoveAction::Retarget`: the target given up is out of the group (its replica, if it
    /// made one, stays on its node, a non-member no longer compared); another up,
    /// healthy-disked node outside the group takes its place, or the move waits for one.
    fn retarget_move(&mut self, given_up: NodeId) {
        let Some(group) = self.moves.current.as_ref().map(|current| current.group) else {
            return;
        };
        self.groups[group]
            .members
            .retain(|member| *member != given_up);
        let members = self.groups[group].members.clone();
        let targets: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(id, node)| {
                **id != given_up
                    && !members.contains(id)
                    && node.is_up()
                    && !node.stopped
                    && !node.faulty_disk
            })
            .map(|(id, _)| *id)
            .collect();
        if targets.is_empty() {
            return self.retry_move();
        }
        let rng = self.moves.rng.as_mut().expect("moves are on");
        let target = targets[rng.below(targets.len() as u64) as usize];
        self.fault("move: target replaced");
        if let Some(current) = self.moves.current.as_mut() {
            current.machine.retarget(target.0);
        }
        self.send_move_request();
    }

    fn move_recorded(&mut self) {
        if let Some(current) = self.moves.current.as_mut() {
            current.machine.recorded();
        }
        self.send_move_request();
    }

    fn retry_move(&mut self) {
        let Some(current) = self.moves.current.as_mut() else {
            return;
        };
        current.waiting = None;
        current.next_at_nanos = self.now_nanos + MOVE_RETRY_NANOS;
    }

    pub(crate) fn move_answered(&mut self, response: NodeResponse) {
        let Some(current) = self.moves.current.as_mut() else {
            return;
        };
        let Some((_, asked, _)) = current.waiting.take() else {
            return;
        };
        let (group, step) = (current.group, current.machine.step());
        // `SHOAL_LOG=shoal_sim=debug` shows each step's answer (with the replicas' own lines).
        tracing::debug!(
            simulated_ms = self.now_nanos / 1_000_000,
            group,
            source = current.machine.source,
            target = current.machine.target,
            ?step,
            asked = asked.0,
            ?response,
            "move answered"
        );
        if let NodeResponse::Membership { membership, .. } = &response
            && !self.membership_is_valid(group, membership)
        {
            return;
        }
        let Some(current) = self.moves.current.as_mut() else {
            return;
        };
        match current.machine.answered(asked.0, response) {
            Ok(Progress::Advanced) => {
                match (step, current.machine.step()) {
                    (MoveStep::Add, _) => self.fault("move: replica added"),
                    (MoveStep::Remove, _) => self.fault("move: replica removed"),
                    _ => {}
                }
                self.send_move_request();
            }
            Ok(Progress::AskAgain) => self.retry_move(),
            Ok(Progress::TargetRefused) => {
                // As a router does: a re-replication removes the target from the group and
                // replaces it (`MoveAction::Retarget`).
                if let Some(current) = self.moves.current.as_mut() {
                    current.machine.give_up_on_target();
                }
                self.fault("move: target refused to join");
                self.retry_move();
            }
            Err(unexpected) => self.violation(format!(
                "move of group {group}: {:?} was answered {:?} by {}",
                unexpected.step, unexpected.response, unexpected.asked
            )),
        }
    }

    /// Whether `node` may answer `WrongOwner` for `group`: a move deleted its replica there (or
    /// never made one). Anywhere else the answer would mean a node lost a replica it hosts, a
    /// violation.
    pub(crate) fn moved_away(&self, group: usize, node: NodeId) -> bool {
        // A split's child is listed on the parent's members before each of them builds it:
        // only a node that has not built it yet may say it does not host it.
        !self.groups[group].members.contains(&node)
            || (self.groups[group].epoch > EPOCH && !self.nodes[&node].groups.contains(&group))
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

    /// `MoveAction::Settle`: whether every remaining member holds the removal durably; a member
    /// stopped for good never will, and the source's replica is left in place.
    fn settle_removal(&mut self, members: &[u64], removal_commit: u64) {
        if members
            .iter()
            .any(|member| self.nodes[&NodeId(*member)].stopped)
        {
            self.fault("move: removed replica left in place");
            if let Some(current) = self.moves.current.as_mut() {
                current.machine.leave_source_in_place();
            }
            return self.send_move_request();
        }
        let Some(group) = self.moves.current.as_ref().map(|current| current.group) else {
            return;
        };
        let settled = members.iter().all(|member| {
            let member = NodeId(*member);
            let now = self.local_time(member);
            self.nodes[&member]
                .runtime
                .as_ref()
                .and_then(|runtime| runtime.replicas.get(&group))
                .is_some_and(|replica| replica.status(now).applied_slot >= removal_commit)
        });
        if settled {
            if let Some(current) = self.moves.current.as_mut() {
                current.machine.settled();
            }
            self.send_move_request();
        } else {
            self.retry_move();
        }
    }

    fn finish_move(&mut self) {
        let Some(current) = self.moves.current.take() else {
            return;
        };
        let source = current.source();
        self.groups[current.group]
            .members
            .retain(|member| *member != source);
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
    pub(crate) fn delete_replica(
        &mut self,
        id: NodeId,
        group: usize,
        partition: u64,
    ) -> NodeResponse {
        let Some(runtime) = self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut()) else {
            return NodeResponse::Error(NodeError::OutcomeUnknown {
                message: "down".to_string(),
            });
        };
        if let shoal_shard::dispatch::Decision::Answer(response) = runtime
            .dispatch
            .begin_delete(partition, self.groups[group].epoch)
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
