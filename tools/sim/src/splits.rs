//! With `--splits true`: partition splits under the workload and every fault, driven by the
//! production step machine (`shoal_autoadmin::split`, whose module docs give the steps) through
//! the production requests a router's autoadmin sends (`SplitPartition`, `Status` as replica
//! status, `DeletePartition`, routed by each node's shard dispatch), with the children built
//! by the production code (`PartitionReplica::split_children_to_build` and
//! `create_split_child`, called by the simulated host as the shard's replica task calls them).
//!
//! One split at a time: a serving group that was never split and holds keys of at least two
//! partition hashes is cut below the highest, so that the right child takes that key and the
//! left child the others (and may be split in turn). What this driver adds:
//! - the children are groups of their own from the split's record on (the checkers compare
//!   their replicas' applied state like any group's), and clients route the parent's keys to
//!   them only from the Route step on, as a router does once the children are in the map;
//! - a parent that answers `StaleEpoch` (it applied the split) has its requests refused
//!   unapplied, as a router takes them; once routed away, the parent is retired: no liveness
//!   is owed by it;
//! - any answer the machine calls unexpected is a violation.
//!
//! Only with neither a GSI, streams, transactions nor Time to Live: each puts keys in the
//! groups' trees that a split refuses, or that the checkers expect in the group they were
//! written to. No split starts in the heal phase; one under way finishes.

use super::*;
use shoal_autoadmin::split::{HostedView, PartitionSplit, Progress, SplitAction};
use shoal_wire::messages::SplitChildWire;

/// The first split starts after this long, the next ones this long after the last ended.
const SPLIT_INTERVAL_NANOS: u64 = 1_200_000_000;
/// A step's request that got no answer in this long is asked again.
const SPLIT_REQUEST_TIMEOUT_NANOS: u64 = 500_000_000;
/// A step refused for now is asked again after this long.
const SPLIT_RETRY_NANOS: u64 = 10_000_000;

pub(crate) struct Split {
    parent: usize,
    left: usize,
    right: usize,
    machine: PartitionSplit,
    /// The request in flight: its reply token, the node asked, and when it is given up on.
    waiting: Option<(u64, NodeId, u64)>,
    next_at_nanos: u64,
    started_nanos: u64,
    /// When the parent's first replica applied the split (its writes pause from there until
    /// the Route step), for the report.
    frozen_nanos: Option<u64>,
}

#[derive(Default)]
pub(crate) struct Splits {
    current: Option<Split>,
    next_start_nanos: u64,
    rng: Option<SeededRng>,
    /// Groups split so far (each at most once; a child may be split in turn once routed).
    split: BTreeSet<usize>,
}

impl Splits {
    pub(crate) fn new(rng: SeededRng) -> Self {
        Self {
            current: None,
            next_start_nanos: SPLIT_INTERVAL_NANOS,
            rng: Some(rng),
            split: BTreeSet::new(),
        }
    }

    pub(crate) fn waits_for(&self, reply_to: u64) -> bool {
        self.current
            .as_ref()
            .and_then(|current| current.waiting)
            .is_some_and(|(token, ..)| token == reply_to)
    }

    /// Whether `group` is part of the split under way (its parent or a child).
    pub(crate) fn involves(&self, group: usize) -> bool {
        self.current
            .as_ref()
            .is_some_and(|current| [current.parent, current.left, current.right].contains(&group))
    }

    /// Whether `group`'s replicas may refuse requests as split (`StaleEpoch`): the parent of
    /// the split under way, or any parent split before.
    pub(crate) fn may_refuse_as_split(&self, group: usize) -> bool {
        self.split.contains(&group)
    }
}

/// The partition hash of simulated key `key` (requests.rs: the item `pk = "k<key>"`).
fn key_hash(key: u64) -> u64 {
    shoal_model::key::partition_hash(&shoal_model::AttributeValue::String(format!("k{key}")))
        .expect("a string key has a hash")
}

impl Simulation {
    /// The group clients send `key`'s requests to.
    pub(crate) fn group_of_key(&self, key: u64) -> usize {
        self.key_groups
            .get(&key)
            .copied()
            .unwrap_or((key % self.base_keys_groups) as usize)
    }

    pub(crate) fn run_splits(&mut self) {
        if self.splits.rng.is_none() {
            return;
        }
        if self.splits.current.is_none() {
            if self.healing || self.now_nanos < self.splits.next_start_nanos {
                return;
            }
            self.start_split();
            return;
        }
        let now_nanos = self.now_nanos;
        let Some(current) = self.splits.current.as_mut() else {
            return;
        };
        if let Some((_, asked, give_up_at)) = current.waiting {
            if now_nanos < give_up_at {
                return;
            }
            current.waiting = None;
            current.next_at_nanos = now_nanos;
            current.machine.unanswered(asked.0);
            self.fault("split: a request got no answer");
            return;
        }
        if now_nanos < current.next_at_nanos {
            return;
        }
        self.send_split_request();
    }

    fn start_split(&mut self) {
        self.splits.next_start_nanos = self.now_nanos + SPLIT_INTERVAL_NANOS;
        let moving = self.moves.current.as_ref().map(|current| current.group);
        // Any group serving keys: a base group, or a child of an earlier split once routed
        // (so children are split again, and their range records are inherited).
        let candidates: Vec<(usize, u64)> = (0..self.groups.len())
            .filter(|group| {
                self.groups[*group].serving
                    && !self.groups[*group].retired
                    && !self.splits.split.contains(group)
                    && Some(*group) != moving
            })
            .filter_map(|group| {
                let mut hashes: Vec<u64> = (0..self.base_keys_groups * self.keys_per_group)
                    .filter(|key| self.group_of_key(*key) == group)
                    .map(key_hash)
                    .collect();
                hashes.sort_unstable();
                hashes.dedup();
                // Cut at the highest hash: the key with it goes right, the others left.
                (hashes.len() >= 2).then(|| (group, *hashes.last().expect("two hashes")))
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let rng = self.splits.rng.as_mut().expect("splits are on");
        let (parent, at_hash) = candidates[rng.below(candidates.len() as u64) as usize];
        let members = self.groups[parent].members.clone();
        let epoch = self.groups[parent].epoch + 1;
        // The record: the children are groups (listed on the parent's members) before any
        // node is asked to build them (metadata invariants 5 and 8).
        let (left, right) = (self.groups.len(), self.groups.len() + 1);
        for _ in 0..2 {
            self.groups.push(Group {
                members: members.clone(),
                digests: BTreeMap::new(),
                acknowledged: 0,
                healthy_majority_since: None,
                leaderless_nanos: 0,
                expiring_acknowledged: BTreeMap::new(),
                latest_expiring: None,
                epoch,
                serving: false,
                retired: false,
            });
        }
        for client in &mut self.clients {
            let guess = client.leader_guess[parent];
            client.leader_guess.push(guess);
            client.leader_guess.push(guess);
        }
        let child = |group: usize| SplitChildWire {
            partition: group as u64 + PARTITION_FIRST,
            epoch,
        };
        let machine = PartitionSplit::new(
            parent as u64 + PARTITION_FIRST,
            self.groups[parent].epoch,
            at_hash,
            (child(left), child(right)),
            members.iter().map(|member| member.0).collect(),
            false,
        );
        if parent as u64 >= self.base_keys_groups {
            self.fault("split: a child split again");
        }
        self.splits.split.insert(parent);
        self.splits.current = Some(Split {
            parent,
            left,
            right,
            machine,
            waiting: None,
            next_at_nanos: self.now_nanos,
            started_nanos: self.now_nanos,
            frozen_nanos: None,
        });
        self.fault("split: started");
        self.send_split_request();
    }

    fn retry_split(&mut self) {
        if let Some(current) = self.splits.current.as_mut() {
            current.waiting = None;
            current.next_at_nanos = self.now_nanos + SPLIT_RETRY_NANOS;
        }
    }

    /// Acts on the machine's current step.
    fn send_split_request(&mut self) {
        let Some(current) = self.splits.current.as_ref() else {
            return;
        };
        match current.machine.action() {
            SplitAction::Ask { node, request } => self.ask_for_split(NodeId(node), request),
            SplitAction::Watch { nodes } => self.watch_split(&nodes),
            SplitAction::Route => {
                self.route_split();
                if let Some(current) = self.splits.current.as_mut() {
                    current.machine.recorded();
                }
                self.send_split_request();
            }
            SplitAction::Forget => {
                if let Some(current) = self.splits.current.as_mut() {
                    current.machine.recorded();
                }
                self.send_split_request();
            }
            SplitAction::Done => {
                let Some(current) = self.splits.current.take() else {
                    return;
                };
                self.report.splits_finished += 1;
                self.report.split_nanos_max = self
                    .report
                    .split_nanos_max
                    .max(self.now_nanos - current.started_nanos);
                self.splits.next_start_nanos = self.now_nanos + SPLIT_INTERVAL_NANOS;
            }
        }
    }

    /// `SplitPartition` through `node`'s shard dispatch, as the bus delivers it.
    fn ask_for_split(&mut self, node: NodeId, request: NodeRequest) {
        let Some(parent) = self.splits.current.as_ref().map(|current| current.parent) else {
            return;
        };
        if !self.is_up(node) {
            if let Some(current) = self.splits.current.as_mut() {
                current.machine.unanswered(node.0);
            }
            return self.retry_split();
        }
        let reply_to = self.take_reply_to();
        let give_up_at = self.now_nanos + SPLIT_REQUEST_TIMEOUT_NANOS;
        if let Some(current) = self.splits.current.as_mut() {
            current.waiting = Some((reply_to, node, give_up_at));
        }
        self.route_request(node, parent, reply_to, request);
    }

    /// A request to `group`'s replica through `node`'s shard dispatch, as the bus delivers it
    /// (an item request, or a split's); its answer comes to `on_reply`, perhaps before this
    /// returns.
    pub(crate) fn route_request(
        &mut self,
        node: NodeId,
        group: usize,
        reply_to: u64,
        request: NodeRequest,
    ) {
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
                Routed::Delete { partition, .. } => {
                    let response = self.delete_replica(node, group, partition);
                    self.on_reply(reply_to, response);
                }
                other => self.violation(format!(
                    "{node:?} group {group}: a request routed as {other:?}"
                )),
            }
        }
    }

    pub(crate) fn split_answered(&mut self, response: NodeResponse) {
        let Some(current) = self.splits.current.as_mut() else {
            return;
        };
        let Some((_, asked, _)) = current.waiting.take() else {
            return;
        };
        let parent = current.parent;
        tracing::debug!(
            simulated_ms = self.now_nanos / 1_000_000,
            parent,
            step = ?current.machine.step(),
            asked = asked.0,
            ?response,
            "split answered"
        );
        match current.machine.answered(asked.0, response) {
            Ok(Progress::Advanced) => {
                self.fault("split: applied");
                self.send_split_request();
            }
            Ok(Progress::AskAgain) => self.retry_split(),
            Ok(Progress::Refused) => self.violation(format!(
                "split of group {parent}: refused, though its tree holds nothing a split cannot \
                 divide"
            )),
            Err(unexpected) => self.violation(format!(
                "split of group {parent}: {:?} was answered {:?} by {}",
                unexpected.step, unexpected.response, unexpected.asked
            )),
        }
    }

    /// `SplitAction::Watch`: what each node hosts and leads of the split's groups, as its
    /// shard's `Status` would say; then the parent's deletions the machine asks for.
    fn watch_split(&mut self, nodes: &[u64]) {
        let Some((parent, left, right)) = self
            .splits
            .current
            .as_ref()
            .map(|current| (current.parent, current.left, current.right))
        else {
            return;
        };
        let mut reports = BTreeMap::new();
        for node in nodes {
            let id = NodeId(*node);
            let now = self.local_time(id);
            let view = self.nodes[&id].runtime.as_ref().map(|runtime| {
                let mut view = HostedView::default();
                for group in [parent, left, right] {
                    if let Some(replica) = runtime.replicas.get(&group) {
                        let partition = group as u64 + PARTITION_FIRST;
                        view.hosted.insert(partition);
                        if matches!(
                            replica.status(now).role,
                            shoal_wire::messages::ReplicaRole::Leader
                                | shoal_wire::messages::ReplicaRole::LeaderWithLease
                        ) {
                            view.leading.insert(partition);
                        }
                    }
                }
                view
            });
            reports.insert(*node, view);
        }
        // Nodes stopped for good (their disk lied) never come back: not waited for.
        let gone: BTreeSet<u64> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.stopped)
            .map(|(id, _)| id.0)
            .collect();
        let Some(current) = self.splits.current.as_mut() else {
            return;
        };
        let (progress, to_delete) = current.machine.watched(&reports, &gone);
        if to_delete.is_empty() {
            if progress == Progress::Advanced {
                return self.send_split_request();
            }
            return self.retry_split();
        }
        let request = current.machine.delete_parent_request();
        let mut deleted = 0;
        for node in &to_delete {
            let reply_to = self.take_reply_to();
            let before = self.nodes[&NodeId(*node)]
                .runtime
                .as_ref()
                .is_some_and(|runtime| runtime.replicas.contains_key(&parent));
            self.route_request(NodeId(*node), parent, reply_to, request.clone());
            let after = self.nodes[&NodeId(*node)]
                .runtime
                .as_ref()
                .is_some_and(|runtime| runtime.replicas.contains_key(&parent));
            if before && !after {
                deleted += 1;
            }
        }
        if deleted == to_delete.len() {
            self.fault("split: parent deleted");
            if let Some(current) = self.splits.current.as_mut() {
                current.machine.parent_deleted();
            }
            self.send_split_request();
        } else {
            self.retry_split();
        }
    }

    /// `SplitAction::Route`: the parent's keys go to the children from now on; the parent
    /// owes no liveness any more.
    fn route_split(&mut self) {
        let Some((parent, left, right, at_hash)) = self.splits.current.as_ref().map(|current| {
            (
                current.parent,
                current.left,
                current.right,
                current.machine.at_hash,
            )
        }) else {
            return;
        };
        let swapped = self.options.broken == Some(Broken::SplitRoutesKeysToTheWrongChild);
        for key in 0..self.base_keys_groups * self.keys_per_group {
            if self.group_of_key(key) != parent {
                continue;
            }
            let below = key_hash(key) < at_hash;
            let child = if below != swapped { left } else { right };
            self.key_groups.insert(key, child);
        }
        self.groups[parent].serving = false;
        self.groups[parent].retired = true;
        self.groups[parent].healthy_majority_since = None;
        for child in [left, right] {
            self.groups[child].serving = true;
        }
        if let Some(current) = self.splits.current.as_ref() {
            let paused = self
                .now_nanos
                .saturating_sub(current.frozen_nanos.unwrap_or(self.now_nanos));
            self.report.split_write_pause_nanos_max =
                self.report.split_write_pause_nanos_max.max(paused);
        }
        self.fault("split: children routed");
    }

    /// The simulated host's part (engine/shard `build_split_children`): once `group`'s replica
    /// on `id` shows its split applied, builds there the children it never built, through the
    /// production calls, and runs them.
    pub(crate) fn build_split_children(&mut self, id: NodeId, group: usize) {
        let now = self.local_time(id);
        let seed = self.options.seed ^ id.0.rotate_left(32) ^ self.now_nanos;
        let Some(runtime) = self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut()) else {
            return;
        };
        let Some(replica) = runtime.replicas.get(&group) else {
            return;
        };
        if replica.split().is_none() || !runtime.split_checked.insert(group) {
            return;
        }
        if let Some(current) = self.splits.current.as_mut()
            && current.parent == group
            && current.frozen_nanos.is_none()
        {
            current.frozen_nanos = Some(self.now_nanos);
        }
        let runtime = self
            .nodes
            .get_mut(&id)
            .and_then(|n| n.runtime.as_mut())
            .expect("up");
        let Some(replica) = runtime.replicas.get_mut(&group) else {
            return;
        };
        let dispatch = &runtime.dispatch;
        let children = drive(
            replica.split_children_to_build(|partition| dispatch.epoch_of(partition).is_some()),
            &mut runtime.committer,
        );
        let children = match replica_outcome(children, "split children") {
            Ok(children) => children,
            Err(failure) => return self.fail_node(id, group, failure),
        };
        if children.is_empty() {
            return;
        }
        let membership = match replica.split_membership() {
            Ok(membership) => membership,
            Err(error) => {
                return self.violation(format!("{id:?} group {group}: {error}"));
            }
        };
        let checkpointed = drive(replica.checkpoint(now), &mut runtime.committer);
        if let Err(failure) = replica_outcome(checkpointed, "checkpoint before a split") {
            return self.fail_node(id, group, failure);
        }
        for child in children {
            let Some(child_group) = child
                .partition
                .checked_sub(PARTITION_FIRST)
                .map(|group| group as usize)
                .filter(|child_group| *child_group < self.groups.len())
            else {
                return self.violation(format!(
                    "{id:?} group {group}: a split names partition {}, which no record lists",
                    child.partition
                ));
            };
            let runtime = self
                .nodes
                .get_mut(&id)
                .and_then(|n| n.runtime.as_mut())
                .expect("up");
            let meta = PartitionMeta {
                partition: child.partition,
                epoch: child.epoch,
                key_schema: runtime.replicas[&group].meta().key_schema.clone(),
                membership: membership.clone(),
            };
            if let shoal_shard::dispatch::Decision::Answer(_) = runtime.dispatch.begin_create(&meta)
            {
                continue;
            }
            let built = drive(
                runtime.replicas[&group].create_split_child(child, seed ^ child.partition, now),
                &mut runtime.committer,
            );
            runtime.dispatch.end_create(child.partition);
            match replica_outcome(built, "building a split child") {
                Ok(replica) => {
                    runtime.dispatch.add_replica(child.partition, child.epoch);
                    let applied = replica.applied_slot();
                    runtime.replicas.insert(child_group, replica);
                    let node = self.nodes.get_mut(&id).expect("node exists");
                    node.groups.push(child_group);
                    node.acceptor_memory
                        .insert(child_group, AcceptorMemory::default());
                    node.observed_applied.insert(child_group, applied);
                    node.fuzzy_until.remove(&child_group);
                    self.fault("split: child built");
                }
                Err(failure) => return self.fail_node(id, group, failure),
            }
        }
    }
}
