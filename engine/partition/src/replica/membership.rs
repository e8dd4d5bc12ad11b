//! Changing a partition's replica set at its leader (`NodeRequest::ChangeMembership`).
//!
//! The core does the protocol (one member at a time, through the log; replication README,
//! "Membership change"). What this adds is the request's contract, which a control plane that
//! may crash and retry at any step relies on:
//! - **Idempotent.** A change the committed membership already reflects is answered at once
//!   with the membership and each follower's progress, so asking again after a lost answer, or
//!   asking only to watch a new member catch up, proposes nothing.
//! - **Answered when committed.** A proposed change is answered when its slot is applied: with
//!   the membership if the slot holds it, `NotApplied` if another entry won the slot (a new
//!   leader filled it), `OutcomeUnknown` if leadership was lost first (the entry may still
//!   commit under the next leader; asking again tells).
//! - **One at a time.** While any membership entry is uncommitted the request is refused with
//!   `Busy`, not applied; the caller asks again.

use super::*;
use shoal_replication::{MembershipChange, MembershipError};
use shoal_wire::messages::FollowerMatchWire;

/// The answer to a membership change whose slot was filled by another entry.
pub(super) const MEMBERSHIP_CHANGE_LOST_ITS_SLOT: &str =
    "the membership change lost its log slot to another leader's entry";
/// The answer to a membership change proposed by a leader that lost leadership before it was
/// applied.
pub(super) const LEADERSHIP_LOST_WITH_MEMBERSHIP_CHANGE: &str =
    "leadership was lost with the membership change in flight; ask again";

/// Whether `membership` already is what `change` would make it.
pub(super) fn reflects(membership: &Membership, change: MembershipChange) -> bool {
    match change {
        MembershipChange::AddFullReplica(node) => membership.is_full_replica(node),
        MembershipChange::AddLogReplica(node) => membership.is_log_replica(node),
        MembershipChange::Remove(node) => !membership.contains(node),
    }
}

fn refusal_message(error: MembershipError) -> String {
    match error {
        MembershipError::AlreadyMember(node) => {
            format!("node {} is already a member of another kind", node.0)
        }
        MembershipError::NotMember(node) => format!("node {} is not a member", node.0),
        MembershipError::NoFullReplicaLeft => {
            "the change would leave the group without a full replica".to_string()
        }
        MembershipError::TooManyMembers => format!(
            "a group has at most {} members",
            shoal_replication::limits::MEMBERS_MAX
        ),
    }
}

impl<F: Storage, D: StorageDirectory<File = F>> PartitionReplica<F, D> {
    /// The answer that reports the committed membership and each follower's progress.
    pub(super) fn membership_answer(&self) -> NodeResponse {
        NodeResponse::Membership {
            membership: MembershipWire::from(self.core.committed_membership()),
            commit_slot: self.core.commit_slot().0,
            followers: self
                .core
                .follower_matches()
                .into_iter()
                .map(|(node, slot)| FollowerMatchWire {
                    node: node.0,
                    match_slot: slot.0,
                })
                .collect(),
        }
    }

    /// The refusal of a request for the leader (a membership change, a transfer) that this
    /// replica cannot take: the partition is split (its children have the membership it had
    /// then, and a change here would reach neither) or being split, another epoch, or not the
    /// leader.
    pub(super) fn leader_request_refusal(&self, epoch: u64) -> Option<NodeResponse> {
        let partition = self.meta.partition;
        if let Some(refusal) = self.split_refusal() {
            return Some(refusal);
        }
        if self.split_in_flight() {
            return Some(NodeResponse::Error(NodeError::Busy { partition }));
        }
        if epoch != self.meta.epoch {
            return Some(NodeResponse::Error(NodeError::StaleEpoch {
                partition,
                current_epoch: self.meta.epoch,
            }));
        }
        (self.core.role() != RoleKind::Leader)
            .then(|| not_leader(partition, self.core.leader_hint()))
    }

    /// The answer to a proposal the core refused.
    fn proposal_refusal(&self, error: ProposeError) -> NodeResponse {
        let partition = self.meta.partition;
        match error {
            ProposeError::NotLeader { leader_hint } => not_leader(partition, leader_hint),
            ProposeError::LeaderNotReady
            | ProposeError::Backpressure
            | ProposeError::MembershipChangeInProgress => {
                NodeResponse::Error(NodeError::Busy { partition })
            }
            ProposeError::Membership(error) => NodeResponse::Error(NodeError::NotApplied {
                message: format!("partition {partition}: {}", refusal_message(error)),
            }),
            ProposeError::CommandTooLarge { .. } => {
                unreachable!("neither a membership entry nor a transfer is a command")
            }
        }
    }

    /// `NodeRequest::TransferLeadership`: starts handing leadership over to `to`
    /// (`Replica::transfer_leadership`) and answers with the membership at once; the caller
    /// learns that `to` leads from its `Status`. Asking again while a transfer to the same node
    /// is under way changes nothing.
    pub(super) async fn transfer_leadership(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        epoch: u64,
        to: NodeId,
    ) -> Result<(), PartitionError> {
        if let Some(refusal) = self.leader_request_refusal(epoch) {
            self.reply(reply_to, refusal);
            return Ok(());
        }
        if self.core.transfer_target() == Some(to) {
            let answer = self.membership_answer();
            self.reply(reply_to, answer);
            return Ok(());
        }
        match self.core.transfer_leadership(now, to) {
            Ok(actions) => {
                let answer = self.membership_answer();
                self.reply(reply_to, answer);
                self.execute(now, actions).await
            }
            Err(error) => {
                let refusal = self.proposal_refusal(error);
                self.reply(reply_to, refusal);
                Ok(())
            }
        }
    }

    pub(super) async fn change_membership(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        epoch: u64,
        change: MembershipChange,
    ) -> Result<(), PartitionError> {
        let partition = self.meta.partition;
        if let Some(refusal) = self.leader_request_refusal(epoch) {
            self.reply(reply_to, refusal);
            return Ok(());
        }
        if self.core.membership_change_in_progress() {
            self.reply(reply_to, NodeResponse::Error(NodeError::Busy { partition }));
            return Ok(());
        }
        if reflects(self.core.committed_membership(), change) {
            let answer = self.membership_answer();
            self.reply(reply_to, answer);
            return Ok(());
        }
        match self.core.propose_membership_change(now, change) {
            Ok(proposed) => {
                let next = self.core.latest_membership();
                self.membership_waiters
                    .insert(proposed.slot, MembershipWaiter { reply_to, next });
                self.execute(now, proposed.actions).await
            }
            Err(error) => {
                let refusal = self.proposal_refusal(error);
                self.reply(reply_to, refusal);
                Ok(())
            }
        }
    }

    /// `slot` was applied, moving the group to `took_effect` (none: no membership entry, or a
    /// void step): answers the membership change that waits on it.
    pub(super) fn settle_membership_waiter(
        &mut self,
        slot: Slot,
        took_effect: Option<&Membership>,
    ) {
        let Some(waiter) = self.membership_waiters.remove(&slot) else {
            return;
        };
        let response = match took_effect {
            Some(membership) if *membership == waiter.next => self.membership_answer(),
            _ => NodeResponse::Error(NodeError::NotApplied {
                message: MEMBERSHIP_CHANGE_LOST_ITS_SLOT.to_string(),
            }),
        };
        self.reply(waiter.reply_to, response);
    }

    /// Leadership is gone: the changes in flight may or may not commit under the next leader.
    pub(super) fn abandon_membership_changes(&mut self) {
        for (_, waiter) in std::mem::take(&mut self.membership_waiters) {
            self.reply(
                waiter.reply_to,
                NodeResponse::Error(NodeError::OutcomeUnknown {
                    message: LEADERSHIP_LOST_WITH_MEMBERSHIP_CHANGE.to_string(),
                }),
            );
        }
    }
}

/// A membership change proposed at a slot, and the membership it makes.
#[derive(Debug)]
pub(super) struct MembershipWaiter {
    pub(super) reply_to: u64,
    pub(super) next: Membership,
}
