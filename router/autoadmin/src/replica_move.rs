//! Moving one replica of a partition from a source node to a target node, as a step machine
//! with no I/O: it says which request to send where ([`MoveAction`]) and takes the answers
//! ([`ReplicaMove::answered`]). A router's autoadmin drives it over the bus, the simulator
//! through each simulated node's shard dispatch, so the simulator tests this very code.
//!
//! Every request is idempotent, so a step whose answer was lost, or a move resumed by another
//! driver from the step its record names, is simply asked again.
//!
//! # The steps, source alive (a planned move)
//! 1. **Join**: `JoinPartition` on the target: an empty replica with no members, which never
//!    campaigns.
//! 2. **Record the target**: the driver durably lists the target among the partition's
//!    replicas, before it can become a member: once added it may be elected, and a router must
//!    be able to find it. Until then it answers `NotLeader` like any follower that knows no
//!    leader, and only leaders serve reads.
//! 3. **Add**: `ChangeMembership(AddFullReplica(target))` at the leader, found by following
//!    `NotLeader` hints.
//! 4. **Catch up**: the same request, answered at once with each follower's durable match slot,
//!    until the target holds every slot committed when it was added.
//! 5. **Remove**: `ChangeMembership(Remove(source))` at the leader.
//! 6. **Settle**: until every remaining member reports (`Status`) an applied slot at or past the
//!    removal's commit. A replica checkpoints a membership entry before it reports it applied,
//!    so the removal is then durable everywhere; until then a member that restarts, or missed
//!    the commit, counts the source in its elections (replication README, "Membership
//!    change"). When a remaining member is gone for good the driver ends the move with the
//!    source left in place ([`ReplicaMove::leave_source_in_place`]), a non-member that the
//!    orphan scan deletes later.
//! 7. **Record done**: the driver durably drops the source from the partition's replicas.
//! 8. **Delete**: `DeletePartition` at the source: its files and WAL records.
//!
//! # The steps, source dead (re-replication)
//! Remove, then Join, Record the target, Add, Catch up, Record done. Adding first would make a
//! group of four with one member dead: every other member, the joiner included, would be
//! needed for every commit and election, and the joiner can take no part until its snapshot is
//! in (simulator seed 5127 stalled so). Removed first, the members left commit while the joiner
//! catches up. Nothing is deleted: the source is not there to ask; if its node comes back, the
//! orphan scan deletes the replica it still holds. An answer to the add that still shows the
//! source (someone added it back) sends the move back to the removal.
//!
//! # A target that fails (source dead only)
//! A target that goes down, or refuses to join (it keeps the partition out of service), is
//! given up ([`ReplicaMove::give_up_on_target`]): **Remove the target** (answered at once if
//! it never became a member), then **Retarget**: the driver picks another node, records it in
//! place of the old one, and the move goes on from Join. The group never holds a member that
//! no record lists.
//!
//! # Adding a replica (no source)
//! A group with fewer replicas than the replication factor, in a cluster that has grown
//! enough nodes, gets one more: a move from [`NO_SOURCE`] ([`ReplicaMove::addition`]), which
//! is a re-replication move whose removal has nothing to remove. Join, Record the target, Add,
//! Catch up, Record done; a failed target is given up and replaced the same way.
//!
//! # Resuming
//! A driver that takes a move over from its record starts it from its first step: every step
//! is idempotent (a join, an add or a removal already done is answered at once, a record
//! already written changes nothing, a deletion already done answers `Deleted`).

use shoal_wire::messages::{
    KeySchemaWire, MembershipChangeWire, MembershipWire, NodeError, NodeRequest, NodeResponse,
};

/// A node of the cluster (`shoal_wire::messages::NodeIdWire`'s number).
pub type NodeId = u64;

/// The source of a move that only adds a replica (module docs, "Adding a replica"): node ids
/// start at 1, and 0 means no node (`shoal node --node-id`).
pub const NO_SOURCE: NodeId = 0;

/// Where a move stands (module docs, "The steps").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveStep {
    Join,
    RecordTarget,
    Add,
    CatchUp {
        added_at_commit: u64,
    },
    Remove,
    Settle {
        removal_commit: u64,
    },
    RecordDone,
    Delete,
    /// A target given up is being removed from the group.
    RemoveTarget,
    /// The target given up is out of the group: the driver picks another.
    Retarget,
    Done,
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveAction {
    /// Send `request` to `node` (the partition's shard there) and pass the answer to
    /// [`ReplicaMove::answered`], or call [`ReplicaMove::unanswered`] if none came.
    Ask {
        node: NodeId,
        request: NodeRequest,
    },
    /// Ask each of `members` for its replica's status; call [`ReplicaMove::settled`] once every
    /// one reports an applied slot at or past `removal_commit`, else ask again after a pause.
    Settle {
        members: Vec<NodeId>,
        removal_commit: u64,
    },
    /// Durably record that the target is a replica requests may be routed to, then call
    /// [`ReplicaMove::recorded`].
    RecordTarget,
    /// The target `given_up` is out of the group: pick another node (not a replica of the
    /// partition), record it in place of `given_up` (unlisting `given_up`), then call
    /// [`ReplicaMove::retarget`].
    Retarget {
        given_up: NodeId,
    },
    /// Durably record that the source is no longer a replica (and that the target is one, if
    /// [`MoveAction::RecordTarget`] did not come first), then call [`ReplicaMove::recorded`].
    RecordDone,
    Done,
}

/// What an answer did to the move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The move is at another step: act on [`ReplicaMove::action`] at once.
    Advanced,
    /// Refused for now, or the target has not caught up yet: ask again after a pause.
    AskAgain,
    /// The target refuses to join: it keeps a replica of the partition out of service (found
    /// corrupt at recovery, its files kept for inspection), so asking again never helps. A
    /// re-replication move then ends without it ([`ReplicaMove::give_up_on_target`]); a
    /// planned move waits for its driver to choose.
    TargetRefused,
}

/// An answer no correct node gives to the step it was asked in. Simulators count it a
/// violation; a router logs it and asks again later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnexpectedAnswer {
    pub step: MoveStep,
    pub asked: NodeId,
    pub response: NodeResponse,
}

/// One replica move (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaMove {
    pub partition: u64,
    pub epoch: u64,
    pub key_schema: KeySchemaWire,
    pub source: NodeId,
    pub target: NodeId,
    /// The source is gone for good: it is removed first and never deleted (module docs).
    pub source_dead: bool,
    /// The group's replicas when the move began, the source included: where a leader may be.
    members: Vec<NodeId>,
    step: MoveStep,
    /// The replica the next leader request goes to.
    leader_guess: NodeId,
}

impl ReplicaMove {
    /// A move of `partition`'s replica on `source` (one of `members`, the group's replicas)
    /// to `target` (not one of them), from its first step.
    pub fn new(
        partition: u64,
        epoch: u64,
        key_schema: KeySchemaWire,
        members: Vec<NodeId>,
        source: NodeId,
        target: NodeId,
        source_dead: bool,
    ) -> ReplicaMove {
        let leader_guess = members
            .iter()
            .copied()
            .find(|member| *member != source)
            .unwrap_or(source);
        ReplicaMove {
            partition,
            epoch,
            key_schema,
            source,
            target,
            source_dead,
            members,
            step: if source == NO_SOURCE {
                MoveStep::Join
            } else if source_dead {
                MoveStep::Remove
            } else {
                MoveStep::Join
            },
            leader_guess,
        }
    }

    /// An addition of a replica of `partition` (whose replicas are `members`) on `target`, a
    /// node outside the group, from its first step (module docs, "Adding a replica").
    pub fn addition(
        partition: u64,
        epoch: u64,
        key_schema: KeySchemaWire,
        members: Vec<NodeId>,
        target: NodeId,
    ) -> ReplicaMove {
        ReplicaMove::new(
            partition, epoch, key_schema, members, NO_SOURCE, target, true,
        )
    }

    /// Whether this move only adds a replica.
    pub fn is_addition(&self) -> bool {
        self.source == NO_SOURCE
    }

    pub fn step(&self) -> MoveStep {
        self.step
    }

    /// Whether the target has caught up with the group: only then may it serve reads.
    pub fn target_caught_up(&self) -> bool {
        match self.step {
            MoveStep::Join
            | MoveStep::RecordTarget
            | MoveStep::Add
            | MoveStep::CatchUp { .. }
            | MoveStep::RemoveTarget
            | MoveStep::Retarget => false,
            // A re-replication removes its source before the target even joins.
            MoveStep::Remove => !self.source_dead,
            MoveStep::Settle { .. } | MoveStep::RecordDone | MoveStep::Delete | MoveStep::Done => {
                true
            }
        }
    }

    /// The members a leader may be among: the group's replicas, the target once asked to join,
    /// the source until removed.
    fn candidates(&self) -> Vec<NodeId> {
        let mut candidates: Vec<NodeId> = self
            .members
            .iter()
            .copied()
            .filter(|member| *member != self.source || !self.source_removed())
            .collect();
        if !candidates.contains(&self.target) {
            candidates.push(self.target);
        }
        candidates
    }

    fn source_removed(&self) -> bool {
        match self.step {
            MoveStep::Join
            | MoveStep::RecordTarget
            | MoveStep::Add
            | MoveStep::CatchUp { .. }
            | MoveStep::RemoveTarget
            | MoveStep::Retarget => self.source_dead,
            MoveStep::Remove => false,
            MoveStep::Settle { .. } | MoveStep::RecordDone | MoveStep::Delete | MoveStep::Done => {
                true
            }
        }
    }

    fn membership_request(&self, change: MembershipChangeWire) -> MoveAction {
        MoveAction::Ask {
            node: self.leader_guess,
            request: NodeRequest::ChangeMembership {
                partition: self.partition,
                epoch: self.epoch,
                change,
            },
        }
    }

    /// What the driver does now.
    pub fn action(&self) -> MoveAction {
        match self.step {
            MoveStep::Join => MoveAction::Ask {
                node: self.target,
                request: NodeRequest::JoinPartition {
                    partition: self.partition,
                    epoch: self.epoch,
                    key_schema: self.key_schema.clone(),
                },
            },
            MoveStep::Add | MoveStep::CatchUp { .. } => {
                self.membership_request(MembershipChangeWire::AddFullReplica(self.target))
            }
            MoveStep::RecordTarget => MoveAction::RecordTarget,
            MoveStep::Remove => self.membership_request(MembershipChangeWire::Remove(self.source)),
            MoveStep::RemoveTarget => {
                self.membership_request(MembershipChangeWire::Remove(self.target))
            }
            MoveStep::Retarget => MoveAction::Retarget {
                given_up: self.target,
            },
            MoveStep::Settle { removal_commit } => MoveAction::Settle {
                members: self.candidates(),
                removal_commit,
            },
            MoveStep::RecordDone => MoveAction::RecordDone,
            MoveStep::Delete => MoveAction::Ask {
                node: self.source,
                request: NodeRequest::DeletePartition {
                    partition: self.partition,
                    epoch: self.epoch,
                },
            },
            MoveStep::Done => MoveAction::Done,
        }
    }

    /// The answer `asked` gave to [`ReplicaMove::action`]'s request.
    pub fn answered(
        &mut self,
        asked: NodeId,
        response: NodeResponse,
    ) -> Result<Progress, UnexpectedAnswer> {
        let unexpected = |step, response| UnexpectedAnswer {
            step,
            asked,
            response,
        };
        match (self.step, response) {
            (MoveStep::Join, NodeResponse::Created) => Ok(self.advance(MoveStep::RecordTarget)),
            (MoveStep::Join, NodeResponse::Error(NodeError::NotApplied { .. })) => {
                Ok(Progress::TargetRefused)
            }
            (MoveStep::Delete, NodeResponse::Deleted) => Ok(self.advance(MoveStep::Done)),
            (
                step @ (MoveStep::Add
                | MoveStep::CatchUp { .. }
                | MoveStep::Remove
                | MoveStep::RemoveTarget),
                NodeResponse::Membership {
                    membership,
                    commit_slot,
                    followers,
                },
            ) => {
                let source_back = self.source_dead
                    && matches!(step, MoveStep::Add | MoveStep::CatchUp { .. })
                    && (membership.full_replicas.contains(&self.source)
                        || membership.log_replicas.contains(&self.source));
                if source_back {
                    // Someone added the dead source back: remove it again, then go on.
                    self.leader_guess = asked;
                    return Ok(self.advance(MoveStep::Remove));
                }
                if !self.reflects(step, &membership) {
                    let response = NodeResponse::Membership {
                        membership,
                        commit_slot,
                        followers,
                    };
                    return Err(unexpected(step, response));
                }
                // An answer comes from the leader: guess it again next time.
                self.leader_guess = asked;
                Ok(match step {
                    MoveStep::RemoveTarget => self.advance(MoveStep::Retarget),
                    MoveStep::Add => self.advance(MoveStep::CatchUp {
                        added_at_commit: commit_slot,
                    }),
                    MoveStep::CatchUp { added_at_commit } => {
                        // A target that leads holds every committed slot (phase 1 gave it them).
                        let caught_up = asked == self.target
                            || followers.iter().any(|follower| {
                                follower.node == self.target
                                    && follower.match_slot >= added_at_commit
                            });
                        if !caught_up {
                            Progress::AskAgain
                        } else if self.source_dead {
                            self.advance(MoveStep::RecordDone)
                        } else {
                            self.advance(MoveStep::Remove)
                        }
                    }
                    _ if self.source_dead => self.advance(MoveStep::Join),
                    _ => self.advance(MoveStep::Settle {
                        removal_commit: commit_slot,
                    }),
                })
            }
            (_, NodeResponse::Error(NodeError::NotLeader { leader_hint, .. })) => {
                match leader_hint {
                    Some(hint) if self.candidates().contains(&hint) && hint != asked => {
                        self.leader_guess = hint;
                    }
                    _ => self.round_leader_guess(asked),
                }
                Ok(Progress::AskAgain)
            }
            (_, NodeResponse::Error(NodeError::WrongOwner { .. })) => {
                self.round_leader_guess(asked);
                Ok(Progress::AskAgain)
            }
            (
                _,
                NodeResponse::Error(
                    NodeError::Busy { .. }
                    | NodeError::NotApplied { .. }
                    | NodeError::OutcomeUnknown { .. },
                ),
            ) => Ok(Progress::AskAgain),
            (step, response) => Err(unexpected(step, response)),
        }
    }

    /// Whether a `Membership` answer in `step` shows the change that step asked for.
    fn reflects(&self, step: MoveStep, membership: &MembershipWire) -> bool {
        let holds = |node: NodeId| {
            membership.full_replicas.contains(&node) || membership.log_replicas.contains(&node)
        };
        match step {
            MoveStep::Add | MoveStep::CatchUp { .. } => {
                membership.full_replicas.contains(&self.target)
            }
            MoveStep::Remove => !holds(self.source),
            MoveStep::RemoveTarget => !holds(self.target),
            _ => false,
        }
    }

    /// No answer came from `asked`: its node is down, or the answer was lost. A request to the
    /// leader goes to the next candidate, so a dead guess is not asked for ever.
    pub fn unanswered(&mut self, asked: NodeId) {
        self.round_leader_guess(asked);
    }

    fn round_leader_guess(&mut self, asked: NodeId) {
        if asked != self.leader_guess {
            return;
        }
        let candidates = self.candidates();
        let position = candidates
            .iter()
            .position(|member| *member == self.leader_guess)
            .map_or(0, |position| position + 1);
        self.leader_guess = candidates[position % candidates.len()];
    }

    /// Every remaining member has applied the removal ([`MoveAction::Settle`]).
    pub fn settled(&mut self) {
        if matches!(self.step, MoveStep::Settle { .. }) {
            self.step = MoveStep::RecordDone;
        }
    }

    /// A remaining member is gone for good and will never settle: the move ends with the
    /// source's replica left in place, a non-member (module docs, step 6).
    pub fn leave_source_in_place(&mut self) {
        if matches!(self.step, MoveStep::Settle { .. }) {
            self.source_dead = true;
            self.step = MoveStep::RecordDone;
        }
    }

    /// The driver recorded what [`MoveAction::RecordTarget`] or [`MoveAction::RecordDone`]
    /// asked for.
    pub fn recorded(&mut self) {
        match self.step {
            MoveStep::RecordTarget => self.step = MoveStep::Add,
            MoveStep::RecordDone if self.source_dead => self.step = MoveStep::Done,
            MoveStep::RecordDone => self.step = MoveStep::Delete,
            _ => {}
        }
    }

    /// The target's node went down, or it refused to join, during a re-replication move
    /// (source dead) after the source was removed: the target is removed from the group and
    /// replaced (module docs, "A target that fails"). Before the source's removal, and in a
    /// planned move, it changes nothing: the source must leave first, and a planned move can
    /// simply wait for its target.
    pub fn give_up_on_target(&mut self) {
        if self.source_dead
            && matches!(
                self.step,
                MoveStep::Join | MoveStep::RecordTarget | MoveStep::Add | MoveStep::CatchUp { .. }
            )
        {
            self.step = MoveStep::RemoveTarget;
        }
    }

    /// The driver recorded `target` in place of the target given up ([`MoveAction::Retarget`]):
    /// the move goes on from its join there.
    pub fn retarget(&mut self, target: NodeId) {
        if self.step == MoveStep::Retarget {
            self.target = target;
            self.step = MoveStep::Join;
        }
    }

    /// The source cannot be asked to delete its replica (its node is gone for good): the move
    /// ends without it.
    pub fn skip_delete(&mut self) {
        if self.step == MoveStep::Delete {
            self.step = MoveStep::Done;
        }
    }

    fn advance(&mut self, step: MoveStep) -> Progress {
        self.step = step;
        Progress::Advanced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_wire::messages::{FollowerMatchWire, KeyTypeWire};

    fn schema() -> KeySchemaWire {
        KeySchemaWire {
            partition_key: ("pk".to_string(), KeyTypeWire::String),
            sort_key: None,
        }
    }

    fn answer(full: &[u64], commit_slot: u64, followers: &[(u64, u64)]) -> NodeResponse {
        NodeResponse::Membership {
            membership: MembershipWire {
                full_replicas: full.to_vec(),
                log_replicas: Vec::new(),
            },
            commit_slot,
            followers: followers
                .iter()
                .map(|(node, match_slot)| FollowerMatchWire {
                    node: *node,
                    match_slot: *match_slot,
                })
                .collect(),
        }
    }

    fn asked(action: &MoveAction) -> NodeId {
        match action {
            MoveAction::Ask { node, .. } => *node,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn asks_change(action: &MoveAction, expected: MembershipChangeWire) -> bool {
        matches!(
            action,
            MoveAction::Ask { request: NodeRequest::ChangeMembership { change, .. }, .. }
                if *change == expected
        )
    }

    /// A move past its join and the target's record, at the add.
    fn at_add(source: NodeId, target: NodeId, source_dead: bool) -> ReplicaMove {
        let mut moving =
            ReplicaMove::new(7, 1, schema(), vec![1, 2, 3], source, target, source_dead);
        if source_dead {
            let remaining: Vec<u64> = [1, 2, 3]
                .into_iter()
                .filter(|node| *node != source)
                .collect();
            let removed = moving.answered(remaining[0], answer(&remaining, 5, &[]));
            assert_eq!(removed, Ok(Progress::Advanced));
        }
        assert_eq!(
            moving.answered(target, NodeResponse::Created),
            Ok(Progress::Advanced)
        );
        assert_eq!(moving.action(), MoveAction::RecordTarget);
        moving.recorded();
        moving
    }

    #[test]
    fn a_planned_move_takes_every_step_in_order() {
        let mut moving = ReplicaMove::new(7, 1, schema(), vec![1, 2, 3], 1, 4, false);
        assert!(matches!(
            moving.action(),
            MoveAction::Ask {
                node: 4,
                request: NodeRequest::JoinPartition { partition: 7, .. }
            }
        ));
        assert_eq!(
            moving.answered(4, NodeResponse::Created),
            Ok(Progress::Advanced)
        );
        // The target is listed for routing before it can be elected.
        assert_eq!(moving.action(), MoveAction::RecordTarget);
        assert!(!moving.target_caught_up());
        moving.recorded();
        // The first leader guess is a member other than the source.
        assert_eq!(asked(&moving.action()), 2);
        assert!(asks_change(
            &moving.action(),
            MembershipChangeWire::AddFullReplica(4)
        ));
        assert_eq!(
            moving.answered(2, answer(&[1, 2, 3, 4], 40, &[(1, 40), (3, 40), (4, 0)])),
            Ok(Progress::Advanced)
        );
        assert_eq!(
            moving.step(),
            MoveStep::CatchUp {
                added_at_commit: 40
            }
        );
        assert!(!moving.target_caught_up());
        assert_eq!(
            moving.answered(2, answer(&[1, 2, 3, 4], 44, &[(4, 39)])),
            Ok(Progress::AskAgain)
        );
        assert_eq!(
            moving.answered(2, answer(&[1, 2, 3, 4], 45, &[(4, 40)])),
            Ok(Progress::Advanced)
        );
        assert!(moving.target_caught_up());
        assert!(asks_change(
            &moving.action(),
            MembershipChangeWire::Remove(1)
        ));
        assert_eq!(asked(&moving.action()), 2);
        assert_eq!(
            moving.answered(2, answer(&[2, 3, 4], 50, &[])),
            Ok(Progress::Advanced)
        );
        assert_eq!(
            moving.action(),
            MoveAction::Settle {
                members: vec![2, 3, 4],
                removal_commit: 50
            }
        );
        moving.settled();
        assert_eq!(moving.action(), MoveAction::RecordDone);
        moving.recorded();
        assert!(matches!(
            moving.action(),
            MoveAction::Ask {
                node: 1,
                request: NodeRequest::DeletePartition { partition: 7, .. }
            }
        ));
        assert_eq!(
            moving.answered(1, NodeResponse::Deleted),
            Ok(Progress::Advanced)
        );
        assert_eq!(moving.action(), MoveAction::Done);
    }

    #[test]
    fn a_dead_source_is_removed_first_and_never_deleted() {
        let mut moving = ReplicaMove::new(7, 1, schema(), vec![1, 2, 3], 3, 5, true);
        assert_eq!(asked(&moving.action()), 1);
        assert!(asks_change(
            &moving.action(),
            MembershipChangeWire::Remove(3)
        ));
        assert_eq!(
            moving.answered(1, answer(&[1, 2], 9, &[])),
            Ok(Progress::Advanced)
        );
        assert!(matches!(moving.action(), MoveAction::Ask { node: 5, .. }));
        assert_eq!(
            moving.answered(5, NodeResponse::Created),
            Ok(Progress::Advanced)
        );
        moving.recorded();
        assert_eq!(
            moving.answered(1, answer(&[1, 2, 5], 10, &[(2, 10)])),
            Ok(Progress::Advanced)
        );
        // The target was elected: as leader it holds every committed slot.
        assert_eq!(
            moving.answered(5, answer(&[1, 2, 5], 12, &[(1, 12), (2, 12)])),
            Ok(Progress::Advanced)
        );
        assert_eq!(moving.action(), MoveAction::RecordDone);
        moving.recorded();
        assert_eq!(moving.action(), MoveAction::Done);
    }

    /// An addition (no source): join, record, add, catch up, record done; nothing is removed
    /// or deleted, and a target that fails is given up and replaced like a re-replication's.
    #[test]
    fn an_addition_joins_adds_and_catches_up_a_new_replica_and_removes_nothing() {
        let mut moving = ReplicaMove::addition(7, 1, schema(), vec![1, 2], 3);
        assert!(moving.is_addition());
        assert!(matches!(
            moving.action(),
            MoveAction::Ask {
                node: 3,
                request: NodeRequest::JoinPartition { partition: 7, .. }
            }
        ));
        assert_eq!(
            moving.answered(3, NodeResponse::Created),
            Ok(Progress::Advanced)
        );
        assert_eq!(moving.action(), MoveAction::RecordTarget);
        moving.recorded();
        assert!(asks_change(
            &moving.action(),
            MembershipChangeWire::AddFullReplica(3)
        ));
        assert_eq!(asked(&moving.action()), 1);
        assert_eq!(
            moving.answered(1, answer(&[1, 2, 3], 20, &[(2, 20), (3, 0)])),
            Ok(Progress::Advanced)
        );
        assert_eq!(
            moving.answered(1, answer(&[1, 2, 3], 21, &[(3, 20)])),
            Ok(Progress::Advanced)
        );
        assert!(moving.target_caught_up());
        assert_eq!(moving.action(), MoveAction::RecordDone);
        moving.recorded();
        assert_eq!(moving.action(), MoveAction::Done);

        // Resumed from its record, it starts at the join, not at a removal.
        let resumed = ReplicaMove::new(7, 1, schema(), vec![1, 2, 3], NO_SOURCE, 3, true);
        assert_eq!(resumed.step(), MoveStep::Join);

        let mut failing = ReplicaMove::addition(7, 1, schema(), vec![1, 2], 3);
        assert_eq!(
            failing.answered(3, NodeResponse::Created),
            Ok(Progress::Advanced)
        );
        failing.recorded();
        failing.give_up_on_target();
        assert!(asks_change(
            &failing.action(),
            MembershipChangeWire::Remove(3)
        ));
        assert_eq!(
            failing.answered(1, answer(&[1, 2], 22, &[])),
            Ok(Progress::Advanced)
        );
        assert_eq!(failing.action(), MoveAction::Retarget { given_up: 3 });
    }

    #[test]
    fn a_dead_source_added_back_is_removed_again() {
        let mut moving = at_add(3, 5, true);
        assert_eq!(
            moving.answered(1, answer(&[1, 2, 3, 5], 10, &[])),
            Ok(Progress::Advanced)
        );
        assert!(asks_change(
            &moving.action(),
            MembershipChangeWire::Remove(3)
        ));
    }

    #[test]
    fn a_failed_target_is_removed_and_replaced_only_after_the_source_is_removed() {
        let mut moving = ReplicaMove::new(7, 1, schema(), vec![1, 2, 3], 3, 5, true);
        moving.give_up_on_target();
        assert_eq!(
            moving.step(),
            MoveStep::Remove,
            "the source must leave first"
        );
        moving.answered(1, answer(&[1, 2], 9, &[])).unwrap();
        let refused = NodeResponse::Error(NodeError::NotApplied {
            message: "out of service".to_string(),
        });
        assert_eq!(moving.answered(5, refused), Ok(Progress::TargetRefused));
        moving.give_up_on_target();
        assert!(asks_change(
            &moving.action(),
            MembershipChangeWire::Remove(5)
        ));
        // Never a member: the leader answers at once.
        assert_eq!(
            moving.answered(1, answer(&[1, 2], 9, &[])),
            Ok(Progress::Advanced)
        );
        assert_eq!(moving.action(), MoveAction::Retarget { given_up: 5 });
        assert!(!moving.target_caught_up());
        moving.retarget(6);
        assert!(matches!(
            moving.action(),
            MoveAction::Ask {
                node: 6,
                request: NodeRequest::JoinPartition { .. }
            }
        ));
        // A target that became a member before it failed is removed the same way.
        let mut added = at_add(3, 5, true);
        added.answered(1, answer(&[1, 2, 5], 11, &[])).unwrap();
        added.give_up_on_target();
        assert!(asks_change(
            &added.action(),
            MembershipChangeWire::Remove(5)
        ));
        // A planned move never gives up this way.
        let mut planned = ReplicaMove::new(7, 1, schema(), vec![1, 2, 3], 3, 5, false);
        planned.give_up_on_target();
        assert_eq!(planned.step(), MoveStep::Join);
    }

    #[test]
    fn leader_hints_are_followed_only_to_candidates_and_silence_rounds_the_guess() {
        let mut moving = at_add(1, 4, false);
        let not_leader = |hint: Option<u64>| {
            NodeResponse::Error(NodeError::NotLeader {
                partition: 7,
                leader_hint: hint,
            })
        };
        assert_eq!(
            moving.answered(2, not_leader(Some(3))),
            Ok(Progress::AskAgain)
        );
        assert_eq!(asked(&moving.action()), 3);
        // A hint naming a stranger is not followed: the next candidate is asked.
        assert_eq!(
            moving.answered(3, not_leader(Some(99))),
            Ok(Progress::AskAgain)
        );
        assert_eq!(asked(&moving.action()), 4);
        moving.unanswered(4);
        assert_eq!(asked(&moving.action()), 1);
        // Silence from a node that is no longer the guess changes nothing.
        moving.unanswered(3);
        assert_eq!(asked(&moving.action()), 1);
        assert_eq!(
            moving.answered(1, NodeResponse::Error(NodeError::Busy { partition: 7 })),
            Ok(Progress::AskAgain)
        );
        assert_eq!(asked(&moving.action()), 1);
    }

    #[test]
    fn answers_that_do_not_show_the_change_are_unexpected() {
        let mut moving = at_add(1, 4, false);
        // An add answered with a membership lacking the target.
        let wrong = moving.answered(2, answer(&[1, 2, 3], 5, &[]));
        assert!(matches!(
            wrong,
            Err(UnexpectedAnswer {
                step: MoveStep::Add,
                asked: 2,
                ..
            })
        ));
        assert_eq!(
            moving.step(),
            MoveStep::Add,
            "an unexpected answer changes nothing"
        );
        // A join answered Deleted.
        let mut joining = ReplicaMove::new(7, 1, schema(), vec![1, 2, 3], 1, 4, false);
        assert!(joining.answered(4, NodeResponse::Deleted).is_err());
    }

    #[test]
    fn a_move_taken_over_from_its_record_finishes_with_every_step_answered_at_once() {
        // The first driver got as far as deleting the source; a second starts from the join.
        let mut moving = ReplicaMove::new(7, 1, schema(), vec![2, 3, 4], 1, 4, false);
        assert_eq!(
            moving.answered(4, NodeResponse::Created),
            Ok(Progress::Advanced)
        );
        moving.recorded();
        assert_eq!(
            moving.answered(2, answer(&[2, 3, 4], 60, &[(4, 60)])),
            Ok(Progress::Advanced)
        );
        assert_eq!(
            moving.answered(2, answer(&[2, 3, 4], 60, &[(4, 60)])),
            Ok(Progress::Advanced)
        );
        assert_eq!(
            moving.answered(2, answer(&[2, 3, 4], 60, &[])),
            Ok(Progress::Advanced)
        );
        moving.settled();
        moving.recorded();
        assert_eq!(
            moving.answered(1, NodeResponse::Deleted),
            Ok(Progress::Advanced)
        );
        assert_eq!(moving.action(), MoveAction::Done);
    }

    #[test]
    fn a_stuck_settle_leaves_the_source_in_place() {
        let mut moving = at_add(1, 4, false);
        moving
            .answered(2, answer(&[1, 2, 3, 4], 8, &[(4, 8)]))
            .unwrap();
        moving
            .answered(2, answer(&[1, 2, 3, 4], 8, &[(4, 8)]))
            .unwrap();
        moving.answered(2, answer(&[2, 3, 4], 9, &[])).unwrap();
        moving.leave_source_in_place();
        assert_eq!(moving.action(), MoveAction::RecordDone);
        moving.recorded();
        assert_eq!(
            moving.action(),
            MoveAction::Done,
            "no deletion of a source left in place"
        );
    }
}
