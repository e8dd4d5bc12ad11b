//! Splitting one partition at a hash into two children, as a step machine with no I/O: it says
//! which request to send where, what to watch and what to record ([`SplitAction`]), and takes
//! the answers. A router's autoadmin drives it over the bus (router/server
//! src/router/splits.rs). What a node does with the request is engine/partition
//! src/replica/split.rs: the parent's log applies the split, the parent freezes, and every node
//! builds both children from its own replica.
//!
//! # The steps
//! 0. **Record** (before this machine exists): the driver draws two partition ids, and writes
//!    the split into the table item with the parent's replicas, so the children are listed on
//!    those nodes before any of them is built (metadata invariants 5 and 8).
//! 1. **Split**: `SplitPartition` at the parent's leader, found by following `NotLeader`
//!    hints, until it answers `Created`. `NotApplied` says the split was certainly not applied
//!    (the partition holds what a split cannot divide yet, such as a stream's records or GSI
//!    changes not yet propagated): the split is [`Progress::Refused`] and its driver drops the
//!    record.
//! 2. **Await children**: every node's shard is watched until each child leads somewhere: its
//!    group has a majority built and serves.
//! 3. **Route**: the driver replaces the parent by the two children in the table's partitions
//!    (or its global index's), in one write. Requests routed with the parent's epoch meanwhile were refused with
//!    `StaleEpoch` naming the children's epoch, and the router waited for this write.
//! 4. **Delete the parent**: once every node hosting a parent replica also hosts both
//!    children, each is asked to delete the parent. Deleting while a node still lacks its
//!    children would leave its parent replica unable to catch up (too few parent replicas
//!    left to commit), so its children would never be built there. A node that does not
//!    answer is waited for, unless the driver counts it gone (down past its threshold): its
//!    parent replica is then a replica of no table once the record is gone, which the orphan
//!    scan deletes, and a child it never built is a missing replica of a routed partition,
//!    which the autoadmin re-replicates. A node that answers without the parent (it lost its
//!    data, or deleted it already) is not waited for either.
//! 5. **Forget**: the driver drops the split record.
//!
//! # Resuming
//! A driver that takes a split over from its record starts at step 1 if the record is not
//! routed, at step 4 if it is: `SplitPartition` for a split already applied answers `Created`
//! at once, and watching and deleting are idempotent.

use std::collections::{BTreeMap, BTreeSet};

use shoal_wire::messages::{NodeError, NodeRequest, NodeResponse, SplitChildWire};

use crate::replica_move::NodeId;

/// Where a split stands (module docs, "The steps").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitStep {
    Split,
    AwaitChildren,
    Route,
    DeleteParent,
    Forget,
    Done,
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SplitAction {
    /// Send `request` to `node` (the partition's shard there) and pass the answer to
    /// [`PartitionSplit::answered`], or call [`PartitionSplit::unanswered`] if none came.
    Ask {
        node: NodeId,
        request: NodeRequest,
    },
    /// Ask each of `nodes` for its shard's replicas and pass them to
    /// [`PartitionSplit::watched`] (`None` for a node that did not answer).
    Watch {
        nodes: Vec<NodeId>,
    },
    /// Durably replace the parent by its children in the table's partitions, then call
    /// [`PartitionSplit::recorded`].
    Route,
    /// Durably drop the split's record, then call [`PartitionSplit::recorded`].
    Forget,
    Done,
}

/// What an answer did to the split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The split is at another step: act on [`PartitionSplit::action`] at once.
    Advanced,
    /// Not yet: ask again after a pause.
    AskAgain,
    /// The parent's leader refused the split, which is certainly not applied: the driver drops
    /// the record and tries again later, if its policy still wants it.
    Refused,
}

/// An answer no correct node gives to the step it was asked in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnexpectedAnswer {
    pub step: SplitStep,
    pub asked: NodeId,
    pub response: NodeResponse,
}

/// What one node's shard reported about the split's partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostedView {
    /// The partitions the shard hosts.
    pub hosted: BTreeSet<u64>,
    /// Those of them whose replica there leads.
    pub leading: BTreeSet<u64>,
}

/// One split (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSplit {
    pub parent: u64,
    pub parent_epoch: u64,
    pub at_hash: u64,
    pub left: SplitChildWire,
    pub right: SplitChildWire,
    /// The parent's replicas when the split was recorded: where its leader may be, and where
    /// the children are built.
    pub replicas: Vec<NodeId>,
    step: SplitStep,
    leader_guess: NodeId,
}

impl PartitionSplit {
    /// A split as its record says: from step 1, or from step 4 once `routed`.
    pub fn new(
        parent: u64,
        parent_epoch: u64,
        at_hash: u64,
        (left, right): (SplitChildWire, SplitChildWire),
        replicas: Vec<NodeId>,
        routed: bool,
    ) -> PartitionSplit {
        PartitionSplit {
            parent,
            parent_epoch,
            at_hash,
            left,
            right,
            leader_guess: replicas.first().copied().unwrap_or_default(),
            replicas,
            step: if routed {
                SplitStep::DeleteParent
            } else {
                SplitStep::Split
            },
        }
    }

    pub fn step(&self) -> SplitStep {
        self.step
    }

    /// What the driver does now.
    pub fn action(&self) -> SplitAction {
        match self.step {
            SplitStep::Split => SplitAction::Ask {
                node: self.leader_guess,
                request: NodeRequest::SplitPartition {
                    partition: self.parent,
                    epoch: self.parent_epoch,
                    at_hash: self.at_hash,
                    left: self.left,
                    right: self.right,
                },
            },
            SplitStep::AwaitChildren | SplitStep::DeleteParent => SplitAction::Watch {
                nodes: self.replicas.clone(),
            },
            SplitStep::Route => SplitAction::Route,
            SplitStep::Forget => SplitAction::Forget,
            SplitStep::Done => SplitAction::Done,
        }
    }

    /// The answer `asked` gave to [`SplitAction::Ask`]'s request.
    pub fn answered(
        &mut self,
        asked: NodeId,
        response: NodeResponse,
    ) -> Result<Progress, UnexpectedAnswer> {
        match (self.step, response) {
            (SplitStep::Split, NodeResponse::Created) => {
                self.step = SplitStep::AwaitChildren;
                Ok(Progress::Advanced)
            }
            (SplitStep::Split, NodeResponse::Error(NodeError::NotLeader { leader_hint, .. })) => {
                match leader_hint {
                    Some(hint) if self.replicas.contains(&hint) && hint != asked => {
                        self.leader_guess = hint;
                    }
                    _ => self.round_leader_guess(asked),
                }
                Ok(Progress::AskAgain)
            }
            (SplitStep::Split, NodeResponse::Error(NodeError::WrongOwner { .. })) => {
                self.round_leader_guess(asked);
                Ok(Progress::AskAgain)
            }
            (
                SplitStep::Split,
                NodeResponse::Error(NodeError::Busy { .. } | NodeError::OutcomeUnknown { .. }),
            ) => Ok(Progress::AskAgain),
            (SplitStep::Split, NodeResponse::Error(NodeError::NotApplied { .. })) => {
                Ok(Progress::Refused)
            }
            (step, response) => Err(UnexpectedAnswer {
                step,
                asked,
                response,
            }),
        }
    }

    /// No answer came from `asked`: the next request to the leader goes to another replica.
    pub fn unanswered(&mut self, asked: NodeId) {
        self.round_leader_guess(asked);
    }

    fn round_leader_guess(&mut self, asked: NodeId) {
        if asked != self.leader_guess || self.replicas.is_empty() {
            return;
        }
        let position = self
            .replicas
            .iter()
            .position(|replica| *replica == asked)
            .map_or(0, |position| position + 1);
        self.leader_guess = self.replicas[position % self.replicas.len()];
    }

    /// What the watched nodes reported ([`SplitAction::Watch`]; `None` for a node that did not
    /// answer), and the nodes the driver counts gone for good. In step 2, advances once each
    /// child leads somewhere. In step 4, returns the nodes to ask to delete the parent, once
    /// every node hosting it also hosts both children and no node that is not gone is silent
    /// (module docs); the driver sends each `DeletePartition` and, once all are answered
    /// `Deleted`, calls [`PartitionSplit::parent_deleted`]. An empty list with
    /// [`Progress::Advanced`] means nothing is left to delete.
    pub fn watched(
        &mut self,
        reports: &BTreeMap<NodeId, Option<HostedView>>,
        gone: &BTreeSet<NodeId>,
    ) -> (Progress, Vec<NodeId>) {
        let children = [self.left.partition, self.right.partition];
        let answered = || reports.values().flatten();
        match self.step {
            SplitStep::AwaitChildren => {
                let led = children
                    .iter()
                    .all(|child| answered().any(|view| view.leading.contains(child)));
                if led {
                    self.step = SplitStep::Route;
                    (Progress::Advanced, Vec::new())
                } else {
                    (Progress::AskAgain, Vec::new())
                }
            }
            SplitStep::DeleteParent => {
                let mut hosting_parent = Vec::new();
                for node in self.replicas.iter().filter(|node| !gone.contains(node)) {
                    match reports.get(node) {
                        Some(Some(view)) if view.hosted.contains(&self.parent) => {
                            if !children.iter().all(|child| view.hosted.contains(child)) {
                                return (Progress::AskAgain, Vec::new());
                            }
                            hosting_parent.push(*node);
                        }
                        Some(Some(_)) => {}
                        // Silent, and not gone: it may still hold a parent that must catch up.
                        Some(None) | None => return (Progress::AskAgain, Vec::new()),
                    }
                }
                if hosting_parent.is_empty() {
                    self.step = SplitStep::Forget;
                }
                (Progress::Advanced, hosting_parent)
            }
            _ => (Progress::AskAgain, Vec::new()),
        }
    }

    /// The request that deletes the parent's replica on a node (step 4).
    pub fn delete_parent_request(&self) -> NodeRequest {
        NodeRequest::DeletePartition {
            partition: self.parent,
            epoch: self.parent_epoch,
        }
    }

    /// Every node [`PartitionSplit::watched`] named answered the deletion `Deleted`.
    pub fn parent_deleted(&mut self) {
        if self.step == SplitStep::DeleteParent {
            self.step = SplitStep::Forget;
        }
    }

    /// The driver recorded what [`SplitAction::Route`] or [`SplitAction::Forget`] asked for.
    pub fn recorded(&mut self) {
        self.step = match self.step {
            SplitStep::Route => SplitStep::DeleteParent,
            SplitStep::Forget => SplitStep::Done,
            other => other,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEFT: SplitChildWire = SplitChildWire {
        partition: 20,
        epoch: 2,
    };
    const RIGHT: SplitChildWire = SplitChildWire {
        partition: 21,
        epoch: 2,
    };

    fn split(routed: bool) -> PartitionSplit {
        PartitionSplit::new(7, 1, 1 << 63, (LEFT, RIGHT), vec![1, 2, 3], routed)
    }

    fn view(hosted: &[u64], leading: &[u64]) -> Option<HostedView> {
        Some(HostedView {
            hosted: hosted.iter().copied().collect(),
            leading: leading.iter().copied().collect(),
        })
    }

    fn asked(split: &PartitionSplit) -> NodeId {
        match split.action() {
            SplitAction::Ask { node, .. } => node,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_split_follows_its_leader_then_waits_routes_deletes_and_forgets() {
        let none = BTreeSet::new();
        let mut split = split(false);
        assert_eq!(asked(&split), 1);
        let not_leader = NodeResponse::Error(NodeError::NotLeader {
            partition: 7,
            leader_hint: Some(3),
        });
        assert_eq!(split.answered(1, not_leader), Ok(Progress::AskAgain));
        assert_eq!(asked(&split), 3);
        assert_eq!(
            split.answered(3, NodeResponse::Created),
            Ok(Progress::Advanced)
        );
        assert_eq!(
            split.action(),
            SplitAction::Watch {
                nodes: vec![1, 2, 3]
            }
        );
        // One child leads, the other not yet.
        let mut reports = BTreeMap::from([
            (1, view(&[7, 20, 21], &[20])),
            (2, view(&[7, 20], &[])),
            (3, None),
        ]);
        assert_eq!(split.watched(&reports, &none), (Progress::AskAgain, vec![]));
        reports.insert(2, view(&[7, 20, 21], &[21]));
        assert_eq!(split.watched(&reports, &none), (Progress::Advanced, vec![]));
        assert_eq!(split.action(), SplitAction::Route);
        split.recorded();
        assert_eq!(split.step(), SplitStep::DeleteParent);
        // Node 3 is silent: nothing is deleted while it may still hold a parent to catch up.
        assert_eq!(split.watched(&reports, &none), (Progress::AskAgain, vec![]));
        // It answers, without its children yet: still nothing.
        reports.insert(3, view(&[7], &[]));
        assert_eq!(split.watched(&reports, &none), (Progress::AskAgain, vec![]));
        reports.insert(3, view(&[7, 20, 21], &[]));
        assert_eq!(
            split.watched(&reports, &none),
            (Progress::Advanced, vec![1, 2, 3])
        );
        assert_eq!(
            split.delete_parent_request(),
            NodeRequest::DeletePartition {
                partition: 7,
                epoch: 1
            }
        );
        split.parent_deleted();
        assert_eq!(split.action(), SplitAction::Forget);
        split.recorded();
        assert_eq!(split.action(), SplitAction::Done);
    }

    #[test]
    fn a_resumed_routed_split_deletes_what_is_left_skipping_gone_and_emptied_nodes() {
        let mut split = split(true);
        let reports = BTreeMap::from([
            (1, view(&[20, 21], &[20, 21])),
            (2, view(&[7, 20, 21], &[])),
            (3, None),
        ]);
        // Node 3 is silent: waited for, until the driver counts it gone.
        assert_eq!(
            split.watched(&reports, &BTreeSet::new()),
            (Progress::AskAgain, vec![])
        );
        let gone = BTreeSet::from([3]);
        assert_eq!(
            split.watched(&reports, &gone),
            (Progress::Advanced, vec![2])
        );
        // Node 2 answers having lost its data (no parent, no child): not waited for.
        let emptied = BTreeMap::from([
            (1, view(&[20, 21], &[])),
            (2, view(&[], &[])),
            (3, view(&[20, 21], &[])),
        ]);
        assert_eq!(
            split.watched(&emptied, &BTreeSet::new()),
            (Progress::Advanced, vec![])
        );
        assert_eq!(split.action(), SplitAction::Forget);
    }

    #[test]
    fn a_refusal_drops_the_split_and_other_answers_are_unexpected() {
        let mut split = split(false);
        let refused = NodeResponse::Error(NodeError::NotApplied {
            message: "blocked".to_string(),
        });
        assert_eq!(split.answered(1, refused), Ok(Progress::Refused));
        let busy = NodeResponse::Error(NodeError::Busy { partition: 7 });
        assert_eq!(split.answered(1, busy), Ok(Progress::AskAgain));
        split.unanswered(1);
        assert_eq!(asked(&split), 2);
        assert!(split.answered(2, NodeResponse::Deleted).is_err());
    }
}
