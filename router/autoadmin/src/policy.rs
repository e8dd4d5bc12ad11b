//! Which replicas the autoadmin moves, and where: pure functions of what it sees.
//!
//! Re-replication ([`plan_re_replication`]), its invariants checked by the property test below:
//! 1. A move's source is a dead replica (on a node that is down, or lost by its node: not
//!    hosted, or kept out of service as corrupt), or else a replica on a draining node (being
//!    decommissioned); its target is a node that answered the last probe, is not draining,
//!    and is listed for no replica of the partition.
//! 2. A partition gets at most one move at a time, and none while one is under way.
//! 3. A partition whose replicas are mostly down gets none: its group cannot commit the
//!    membership change (it needs a majority), and moving would only add a member to wait for.
//! 4. Targets go to the up node hosting the fewest replicas, counting the moves just planned
//!    (ties to the lowest id), so the replicas of a lost node spread over the others.
//! 5. At most `moves_max` moves are under way at once, those already under way included.
//!
//! Balance ([`plan_balance`]), its invariants checked by the second property test:
//! 6. It plans only in a healthy, quiet cluster: every node up, answering and not draining, no
//!    replica dead, and no move under way (re-replication and decommission come first, and the
//!    replica counts it reads are then exact, so a batch never overshoots; one router plans
//!    at a time, the holder of the autoadmin lease).
//! 7. Each move goes from a node to one hosting at least two replicas fewer, counting the moves
//!    planned before it: each evens the counts strictly (the sum of their squares falls), so
//!    balancing ends, and a node that joined receives replicas until it is within one of the
//!    others.
//! 8. A follower replica moves before a leader: moving a leader costs its partition a pause of
//!    writes for an election. A leader moves only when no follower can.
//! 9. At most `moves_max` moves, at most one per partition, to a node not in its group.
//!
//! Growth ([`plan_growth`]), before balance (the fourth property test):
//! 12. The same healthy, quiet cluster as 6. A group with fewer replicas than
//!     `replicas_wanted` (the replication factor), in a cluster with a node outside it that may
//!     take one, gets one more replica (an addition, from
//!     [`NO_SOURCE`](crate::replica_move::NO_SOURCE)), on the least loaded such node, counting
//!     the additions planned before it. A table created while the cluster had fewer nodes
//!     (`shoal dev --nodes 1`, or the metadata group of a cluster started with one or two)
//!     reaches three replicas as nodes join. At most `moves_max`, one per group.
//! 13. A group of one grows only when two nodes outside it can take replicas, and at most one
//!     such group per batch: once it has two members, its joiner is needed for every commit
//!     (and lease) until its snapshot is in, so its writes pause for that long, and a group
//!     left at two would stop at the loss of either node. A group named in `alone` (the
//!     metadata group, whose pause stops every control-plane operation) grows in a batch of
//!     its own.
//!
//! Weight balance ([`plan_weight_balance`]), once the replica counts are even (the fifth
//! property test): nodes should carry similar bytes, not only similar counts.
//! 14. The same healthy, quiet cluster as 6, with replica counts already even (no node two
//!     above another): each partition has a weight (the caller's: a router weighs its bytes
//!     as a share of the split threshold), and a node's weight is the sum over its replicas.
//! 15. A step acts on two nodes whose weights differ by at least the threshold
//!     ([`WEIGHT_IMBALANCE_FLOOR`], or [`WEIGHT_IMBALANCE_PERCENT`] of the mean node weight
//!     when that is more), so that moves do not chase the noise of changing sizes. It moves
//!     one heavier replica from the heavier node to the lighter (when the heavier hosts more
//!     replicas, so counts stay even), or swaps a heavier replica for a lighter one (two moves,
//!     counts unchanged). The step must narrow the two nodes' gap by at least
//!     [`WEIGHT_STEP_MIN`]: the sum of the squares of the node weights then falls by a fixed
//!     amount, so weight balance ends, and the counts stay even, so count balance (which moves
//!     the lightest replica it can) does not undo it.
//! 16. Followers before leaders, as 8; at most `moves_max` moves, at most one per partition,
//!     each to a node not in the group.
//!
//! Leader balance ([`plan_leader_balance`]), once the replicas are balanced (the third
//! property test):
//! 10. The same healthy, quiet cluster as 6, and only partitions whose leader is known.
//! 11. Each transfer goes from a node leading two or more partitions more than the node it
//!     goes to, counting the transfers planned before it, and that node holds a replica of
//!     the partition: each evens the leader counts strictly, so leader balancing ends.

use std::collections::{BTreeMap, BTreeSet};

use crate::replica_move::NodeId;

/// Replica moves under way at once at most, cluster-wide, per autoadmin: each costs a snapshot
/// transfer and a few membership changes, and the survivors serve requests meanwhile.
pub const MOVES_IN_FLIGHT_MAX: usize = 8;

/// A node as the autoadmin sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub id: NodeId,
    /// Answered within the autoadmin's down threshold.
    pub up: bool,
    /// Answered the last probe: only such a node is a target (one that just went silent is up
    /// for a while yet, and would stall the move it was given).
    pub answered: bool,
    /// Being decommissioned: its replicas move away, and it is never a target.
    pub draining: bool,
}

/// One partition's replicas, as the metadata lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    pub partition: u64,
    /// The listed replicas (a move's target included once recorded).
    pub replicas: Vec<NodeId>,
    /// The target of a move under way, if any.
    pub moving_to: Option<NodeId>,
    /// Listed replicas on up nodes that their node does not host (it lost them, or keeps
    /// them out of service after finding them corrupt): as good as on a down node.
    pub lost: Vec<NodeId>,
    /// The node whose replica leads the group, when known (balance prefers to move others).
    pub leader: Option<NodeId>,
}

/// A move [`plan_re_replication`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedMove {
    pub partition: u64,
    pub source: NodeId,
    pub target: NodeId,
    /// The source is dead (down or lost): re-replication. A draining node's live replica is a
    /// planned move instead (added first, then removed and deleted).
    pub source_dead: bool,
}

/// The nodes a move may go to (up, and answered the last probe), each with the replicas the
/// groups list on it (move targets included).
fn target_loads(nodes: &[NodeView], groups: &[GroupView]) -> BTreeMap<NodeId, usize> {
    let mut loads: BTreeMap<NodeId, usize> = nodes
        .iter()
        .filter(|view| view.up && view.answered && !view.draining)
        .map(|view| (view.id, 0))
        .collect();
    for group in groups {
        for node in group.replicas.iter().chain(group.moving_to.iter()) {
            if let Some(count) = loads.get_mut(node) {
                *count += 1;
            }
        }
    }
    loads
}

/// The nodes a move may go to, least loaded first (ties to the lowest id): where a driver
/// looks for a new target when one fails.
pub fn targets_by_load(nodes: &[NodeView], groups: &[GroupView]) -> Vec<NodeId> {
    let mut loads: Vec<(usize, NodeId)> = target_loads(nodes, groups)
        .into_iter()
        .map(|(node, count)| (count, node))
        .collect();
    loads.sort_unstable();
    loads.into_iter().map(|(_, node)| node).collect()
}

/// The moves that replace dead replicas and drain decommissioned nodes (module docs,
/// invariants 1-5).
pub fn plan_re_replication(
    nodes: &[NodeView],
    groups: &[GroupView],
    moves_max: usize,
) -> Vec<PlannedMove> {
    let up = |node: NodeId| nodes.iter().any(|view| view.id == node && view.up);
    let alive = |group: &GroupView, node: NodeId| up(node) && !group.lost.contains(&node);
    let mut hosted = target_loads(nodes, groups);
    let under_way = groups
        .iter()
        .filter(|group| group.moving_to.is_some())
        .count();
    let mut budget = moves_max.saturating_sub(under_way);
    let mut planned = Vec::new();
    for group in groups {
        if budget == 0 {
            break;
        }
        if group.moving_to.is_some() {
            continue;
        }
        let draining = |node: NodeId| nodes.iter().any(|view| view.id == node && view.draining);
        let Some(source) = group
            .replicas
            .iter()
            .copied()
            .find(|node| !alive(group, *node))
            .or_else(|| group.replicas.iter().copied().find(|node| draining(*node)))
        else {
            continue;
        };
        let up_replicas = group
            .replicas
            .iter()
            .filter(|node| alive(group, **node))
            .count();
        if up_replicas <= group.replicas.len() / 2 {
            continue;
        }
        let target = hosted
            .iter()
            .filter(|(node, _)| !group.replicas.contains(node))
            .min_by_key(|(node, count)| (**count, **node))
            .map(|(node, _)| *node);
        let Some(target) = target else {
            continue;
        };
        if let Some(count) = hosted.get_mut(&target) {
            *count += 1;
        }
        planned.push(PlannedMove {
            partition: group.partition,
            source,
            target,
            source_dead: !alive(group, source),
        });
        budget -= 1;
    }
    planned
}

/// Leadership transfers one balance check asks for at most: each pauses its partition's
/// writes for a hand-over (a round trip and a log flush on the new leader).
pub const LEADER_TRANSFERS_MAX: usize = 4;

/// A leadership transfer [`plan_leader_balance`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedTransfer {
    pub partition: u64,
    pub from: NodeId,
    pub to: NodeId,
}

/// The transfers that even out how many partitions each node leads (module docs, invariants
/// 10-11).
pub fn plan_leader_balance(
    nodes: &[NodeView],
    groups: &[GroupView],
    transfers_max: usize,
) -> Vec<PlannedTransfer> {
    if !healthy_and_quiet(nodes, groups) {
        return Vec::new();
    }
    let mut leads: BTreeMap<NodeId, usize> = nodes.iter().map(|view| (view.id, 0)).collect();
    for group in groups {
        if let Some(count) = group.leader.and_then(|leader| leads.get_mut(&leader)) {
            *count += 1;
        }
    }
    let mut planned: Vec<PlannedTransfer> = Vec::new();
    while planned.len() < transfers_max {
        let mut givers: Vec<(usize, NodeId)> =
            leads.iter().map(|(node, count)| (*count, *node)).collect();
        givers.sort_unstable_by(|a, b| b.cmp(a));
        let mut takers = givers.clone();
        takers.sort_unstable();
        let next = givers.iter().find_map(|(given, from)| {
            takers
                .iter()
                .take_while(|(taken, _)| *given >= *taken + 2)
                .find_map(|(_, to)| {
                    groups
                        .iter()
                        .filter(|group| {
                            group.leader == Some(*from)
                                && group.replicas.contains(to)
                                && !planned.iter().any(|done| done.partition == group.partition)
                        })
                        .min_by_key(|group| group.partition)
                        .map(|group| PlannedTransfer {
                            partition: group.partition,
                            from: *from,
                            to: *to,
                        })
                })
        });
        let Some(next) = next else {
            break;
        };
        if let Some(count) = leads.get_mut(&next.from) {
            *count -= 1;
        }
        if let Some(count) = leads.get_mut(&next.to) {
            *count += 1;
        }
        planned.push(next);
    }
    planned
}

/// A node pair whose weights differ by less than this (thousandths of one partition's worth:
/// half a partition at the split threshold) is balanced enough: closer than that, a move's
/// snapshot costs more than it evens.
pub const WEIGHT_IMBALANCE_FLOOR: u64 = 500;
/// ... and by less than this share (percent) of the mean node weight, in a cluster whose nodes
/// carry many partitions' worth each.
pub const WEIGHT_IMBALANCE_PERCENT: u64 = 20;
/// A step narrows its pair's gap by at least this much (half the floor): a fixed amount, so
/// that nodes carrying hundreds of partitions each, whose gap threshold is a share of a large
/// mean, are still evened by moves of single partitions.
pub const WEIGHT_STEP_MIN: u64 = WEIGHT_IMBALANCE_FLOOR / 2;

/// The moves that even out the nodes' weights once their replica counts are even (module
/// docs, invariants 14-16). `weights`: each partition's weight (a partition missing has
/// none).
pub fn plan_weight_balance(
    nodes: &[NodeView],
    groups: &[GroupView],
    weights: &BTreeMap<u64, u64>,
    moves_max: usize,
) -> Vec<PlannedMove> {
    weight_steps(nodes, groups, weights, moves_max)
        .into_iter()
        .flatten()
        .collect()
}

/// [`plan_weight_balance`] step by step: each step is one move, or the two moves of a swap.
fn weight_steps(
    nodes: &[NodeView],
    groups: &[GroupView],
    weights: &BTreeMap<u64, u64>,
    moves_max: usize,
) -> Vec<Vec<PlannedMove>> {
    if !healthy_and_quiet(nodes, groups) || imbalanced(nodes, groups) {
        return Vec::new();
    }
    let mut counts = target_loads(nodes, groups);
    let weight_of = |partition: u64| weights.get(&partition).copied().unwrap_or(0);
    let mut node_weights: BTreeMap<NodeId, u64> = counts.keys().map(|node| (*node, 0)).collect();
    for group in groups {
        for node in &group.replicas {
            if let Some(weight) = node_weights.get_mut(node) {
                *weight = weight.saturating_add(weight_of(group.partition));
            }
        }
    }
    let mut steps: Vec<Vec<PlannedMove>> = Vec::new();
    let mut planned = 0;
    let mut moving: BTreeSet<u64> = BTreeSet::new();
    while planned < moves_max {
        let Some(step) = [false, true].into_iter().find_map(|leaders_too| {
            weight_step(
                &node_weights,
                &counts,
                groups,
                &weight_of,
                &moving,
                leaders_too,
                moves_max - planned,
            )
        }) else {
            break;
        };
        for moved in &step {
            let weight = weight_of(moved.partition);
            if let Some(source) = node_weights.get_mut(&moved.source) {
                *source = source.saturating_sub(weight);
            }
            if let Some(target) = node_weights.get_mut(&moved.target) {
                *target = target.saturating_add(weight);
            }
            if let Some(count) = counts.get_mut(&moved.source) {
                *count -= 1;
            }
            if let Some(count) = counts.get_mut(&moved.target) {
                *count += 1;
            }
            moving.insert(moved.partition);
        }
        planned += step.len();
        steps.push(step);
    }
    steps
}

/// The gap between two nodes' weights a step acts on (invariant 15): the floor, or a share of
/// the mean node weight.
fn weight_threshold(node_weights: &BTreeMap<NodeId, u64>) -> u64 {
    let total = node_weights
        .values()
        .fold(0u64, |sum, weight| sum.saturating_add(*weight));
    let mean = total.checked_div(node_weights.len() as u64).unwrap_or(0);
    WEIGHT_IMBALANCE_FLOOR.max(mean / 100 * WEIGHT_IMBALANCE_PERCENT)
}

/// How much moving `moved` of weight from a node to one `gap` lighter narrows their gap.
fn narrowing(gap: u64, moved: u64) -> u64 {
    gap.saturating_sub(gap.abs_diff(moved.saturating_mul(2)))
}

/// The next weight balance step (one move, or a swap of two), for the heaviest giver that has
/// one with a lighter node: the candidate narrowing the pair's gap most, by at least
/// [`WEIGHT_STEP_MIN`] (ties: the lowest partitions). Leaders' replicas only if `leaders_too`;
/// at most `room` moves.
fn weight_step(
    node_weights: &BTreeMap<NodeId, u64>,
    counts: &BTreeMap<NodeId, usize>,
    groups: &[GroupView],
    weight_of: &dyn Fn(u64) -> u64,
    moving: &BTreeSet<u64>,
    leaders_too: bool,
    room: usize,
) -> Option<Vec<PlannedMove>> {
    let threshold = weight_threshold(node_weights);
    let mut givers: Vec<(u64, NodeId)> = node_weights
        .iter()
        .map(|(node, weight)| (*weight, *node))
        .collect();
    givers.sort_unstable_by_key(|(weight, node)| (std::cmp::Reverse(*weight), *node));
    let mut takers = givers.clone();
    takers.sort_unstable();
    // What `node` may give to `other`: its replicas of groups `other` is not in, with their
    // weights, lightest first (ties: lowest partition).
    let movable = |node: NodeId, other: NodeId| -> Vec<(u64, u64)> {
        let mut movable: Vec<(u64, u64)> = groups
            .iter()
            .filter(|group| {
                !moving.contains(&group.partition)
                    && group.replicas.contains(&node)
                    && !group.replicas.contains(&other)
                    && (leaders_too || group.leader != Some(node))
            })
            .map(|group| (weight_of(group.partition), group.partition))
            .collect();
        movable.sort_unstable();
        movable
    };
    for (heavy_weight, heavy) in &givers {
        for (light_weight, light) in &takers {
            let Some(gap) = heavy_weight.checked_sub(*light_weight) else {
                break;
            };
            if gap < threshold {
                break;
            }
            let given = movable(*heavy, *light);
            // The best candidate so far: (narrowing, partition out, partition back).
            let mut best: Option<(u64, u64, Option<u64>)> = None;
            let mut consider = |narrowed: u64, out: u64, back: Option<u64>| {
                let better = best.is_none_or(|(most, best_out, best_back)| {
                    (narrowed, std::cmp::Reverse((out, back)))
                        > (most, std::cmp::Reverse((best_out, best_back)))
                });
                if narrowed >= WEIGHT_STEP_MIN && better {
                    best = Some((narrowed, out, back));
                }
            };
            // A single move keeps the counts even only if the heavy node hosts more.
            if counts[heavy] > counts[light] && even_after(counts, *heavy, *light) {
                for (weight, partition) in &given {
                    consider(narrowing(gap, *weight), *partition, None);
                }
            }
            if room >= 2 {
                let taken = movable(*light, *heavy);
                // For each replica out, the best one back weighs nearest `out - gap / 2`:
                // the two around that point in the sorted list.
                for (out_weight, out) in &given {
                    let ideal = out_weight.saturating_sub(gap / 2);
                    let at = taken.partition_point(|(weight, _)| *weight < ideal);
                    for (back_weight, back) in
                        taken[at.saturating_sub(1)..(at + 1).min(taken.len())].iter()
                    {
                        if back_weight < out_weight {
                            consider(narrowing(gap, out_weight - back_weight), *out, Some(*back));
                        }
                    }
                }
            }
            if let Some((_, out, back)) = best {
                let mut step = vec![PlannedMove {
                    partition: out,
                    source: *heavy,
                    target: *light,
                    source_dead: false,
                }];
                step.extend(back.map(|back| PlannedMove {
                    partition: back,
                    source: *light,
                    target: *heavy,
                    source_dead: false,
                }));
                return Some(step);
            }
        }
    }
    None
}

/// Whether moving one replica from `from` to `to` leaves no node two replicas above another.
fn even_after(counts: &BTreeMap<NodeId, usize>, from: NodeId, to: NodeId) -> bool {
    let after = |node: &NodeId, count: usize| {
        if *node == from {
            count - 1
        } else if *node == to {
            count + 1
        } else {
            count
        }
    };
    let counts_after: Vec<usize> = counts
        .iter()
        .map(|(node, count)| after(node, *count))
        .collect();
    match (counts_after.iter().max(), counts_after.iter().min()) {
        (Some(most), Some(least)) => *most < *least + 2,
        _ => true,
    }
}

/// Every node up, answering and not draining; no move under way, no replica lost, and every
/// replica on a node the autoadmin sees (module docs, invariant 6).
fn healthy_and_quiet(nodes: &[NodeView], groups: &[GroupView]) -> bool {
    let known = |node: &NodeId| nodes.iter().any(|view| view.id == *node);
    nodes
        .iter()
        .all(|view| view.up && view.answered && !view.draining)
        && groups.iter().all(|group| {
            group.moving_to.is_none() && group.lost.is_empty() && group.replicas.iter().all(known)
        })
}

/// The additions that bring groups with fewer than `replicas_wanted` replicas up to it, as
/// far as the nodes allow (module docs, invariant 12).
pub fn plan_growth(
    nodes: &[NodeView],
    groups: &[GroupView],
    replicas_wanted: usize,
    alone: &[u64],
    moves_max: usize,
) -> Vec<PlannedMove> {
    if !healthy_and_quiet(nodes, groups) || moves_max == 0 {
        return Vec::new();
    }
    let mut loads = target_loads(nodes, groups);
    let outside = |group: &GroupView, loads: &BTreeMap<NodeId, usize>| {
        loads
            .keys()
            .filter(|node| !group.replicas.contains(node))
            .count()
    };
    let may_grow = |group: &GroupView, loads: &BTreeMap<NodeId, usize>| {
        group.replicas.len() < replicas_wanted
            && match group.replicas.len() {
                1 => outside(group, loads) >= 2,
                _ => outside(group, loads) >= 1,
            }
    };
    let addition = |group: &GroupView, loads: &mut BTreeMap<NodeId, usize>| {
        let target = loads
            .iter()
            .filter(|(node, _)| !group.replicas.contains(node))
            .min_by_key(|(node, load)| (**load, **node))
            .map(|(node, _)| *node)?;
        if let Some(load) = loads.get_mut(&target) {
            *load += 1;
        }
        Some(PlannedMove {
            partition: group.partition,
            source: crate::replica_move::NO_SOURCE,
            target,
            source_dead: true,
        })
    };
    if let Some(group) = groups
        .iter()
        .find(|group| alone.contains(&group.partition) && may_grow(group, &loads))
    {
        return addition(group, &mut loads).into_iter().collect();
    }
    let mut planned = Vec::new();
    let mut pausing = false;
    for group in groups {
        if planned.len() >= moves_max {
            break;
        }
        if !may_grow(group, &loads) || (group.replicas.len() == 1 && pausing) {
            continue;
        }
        pausing |= group.replicas.len() == 1;
        planned.extend(addition(group, &mut loads));
    }
    planned
}

/// Balance moves under way at once at most: each is a planned move (the target added and
/// caught up before the source is removed), paced so that the snapshots they send leave the
/// foreground traffic room.
pub const BALANCE_MOVES_IN_FLIGHT_MAX: usize = 4;

/// Whether the replica counts of the nodes that may receive replicas differ by two or more
/// (what [`plan_balance`] evens out); cheap, so the autoadmin asks it before it asks the
/// nodes who leads.
pub fn imbalanced(nodes: &[NodeView], groups: &[GroupView]) -> bool {
    let loads = target_loads(nodes, groups);
    match (loads.values().max(), loads.values().min()) {
        (Some(most), Some(least)) => *most >= *least + 2,
        _ => false,
    }
}

/// The moves that even out the replicas each node hosts (module docs, invariants 6-9). Among
/// the replicas a node could give, the lightest by `weights` goes (ties: the lowest
/// partition): moving it costs the smallest snapshot, and a heavy replica that weight balance
/// just placed is not sent back.
pub fn plan_balance(
    nodes: &[NodeView],
    groups: &[GroupView],
    weights: &BTreeMap<u64, u64>,
    moves_max: usize,
) -> Vec<PlannedMove> {
    if !healthy_and_quiet(nodes, groups) {
        return Vec::new();
    }
    let mut loads = target_loads(nodes, groups);
    let mut planned: Vec<PlannedMove> = Vec::new();
    let mut moving: BTreeSet<u64> = BTreeSet::new();
    while planned.len() < moves_max {
        let Some(next) = [false, true]
            .into_iter()
            .find_map(|leaders_too| balance_move(&loads, groups, weights, &moving, leaders_too))
        else {
            break;
        };
        if let Some(count) = loads.get_mut(&next.source) {
            *count -= 1;
        }
        if let Some(count) = loads.get_mut(&next.target) {
            *count += 1;
        }
        moving.insert(next.partition);
        planned.push(next);
    }
    planned
}

/// The next balance move for `loads`: from the most loaded node that has a replica it can move
/// to a node hosting two fewer, the least loaded such node taking it (ties: the higher id
/// gives, the lower receives, the lowest partition moves). Leaders' replicas only if
/// `leaders_too`.
///
/// Among equally loaded givers, the one with the fewest follower replicas left to give goes
/// first: another giver taking its last one (one move per partition in a batch) would leave it
/// only a leader's replica to give. (Seen on `shoal dev`: a node leading three of four
/// partitions had one follower replica, and the node that gave first took that partition.)
fn balance_move(
    loads: &BTreeMap<NodeId, usize>,
    groups: &[GroupView],
    weights: &BTreeMap<u64, u64>,
    moving: &BTreeSet<u64>,
    leaders_too: bool,
) -> Option<PlannedMove> {
    let follower_replicas = |node: NodeId| {
        groups
            .iter()
            .filter(|group| {
                !moving.contains(&group.partition)
                    && group.replicas.contains(&node)
                    && group.leader != Some(node)
            })
            .count()
    };
    let mut givers: Vec<(usize, NodeId)> =
        loads.iter().map(|(node, load)| (*load, *node)).collect();
    givers.sort_unstable_by_key(|(load, node)| {
        (
            std::cmp::Reverse(*load),
            follower_replicas(*node),
            std::cmp::Reverse(*node),
        )
    });
    let mut takers = givers.clone();
    takers.sort_unstable_by_key(|(load, node)| (*load, *node));
    for (source_load, source) in &givers {
        for (target_load, target) in &takers {
            if *source_load < *target_load + 2 {
                break;
            }
            let group = groups
                .iter()
                .filter(|group| {
                    !moving.contains(&group.partition)
                        && group.replicas.contains(source)
                        && !group.replicas.contains(target)
                        && (leaders_too || group.leader != Some(*source))
                })
                .min_by_key(|group| {
                    (
                        weights.get(&group.partition).copied().unwrap_or(0),
                        group.partition,
                    )
                });
            if let Some(group) = group {
                return Some(PlannedMove {
                    partition: group.partition,
                    source: *source,
                    target: *target,
                    source_dead: false,
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nodes(up: &[bool]) -> Vec<NodeView> {
        up.iter()
            .enumerate()
            .map(|(index, up)| NodeView {
                id: index as NodeId + 1,
                up: *up,
                answered: *up,
                draining: false,
            })
            .collect()
    }

    fn group(partition: u64, replicas: &[NodeId]) -> GroupView {
        GroupView {
            partition,
            replicas: replicas.to_vec(),
            moving_to: None,
            lost: Vec::new(),
            leader: None,
        }
    }

    #[test]
    fn a_lost_nodes_replicas_spread_over_the_least_loaded_nodes() {
        // Five nodes, node 5 down; four partitions each with a replica on it.
        let groups = [
            group(1, &[1, 2, 5]),
            group(2, &[2, 3, 5]),
            group(3, &[3, 4, 5]),
            group(4, &[1, 4, 5]),
        ];
        let planned = plan_re_replication(&nodes(&[true, true, true, true, false]), &groups, 8);
        let targets: Vec<(u64, NodeId)> = planned
            .iter()
            .map(|moving| (moving.partition, moving.target))
            .collect();
        // Nodes 1-4 host two replicas each; each new one goes to the least loaded outside the
        // group, lowest id first.
        assert_eq!(targets, vec![(1, 3), (2, 1), (3, 2), (4, 2)]);
        assert!(
            planned
                .iter()
                .all(|moving| moving.source == 5 && moving.source_dead)
        );
    }

    #[test]
    fn nothing_moves_without_a_majority_up_or_while_a_move_is_under_way() {
        let mut under_way = group(2, &[1, 2, 3]);
        under_way.moving_to = Some(4);
        let groups = [group(1, &[1, 2, 3]), under_way];
        // Nodes 2 and 3 down: partition 1 has one replica of three up; partition 2 is moving.
        let planned = plan_re_replication(&nodes(&[true, false, false, true]), &groups, 8);
        assert!(planned.is_empty());
    }

    #[test]
    fn a_replica_its_node_lost_is_moved_though_the_node_is_up() {
        let mut lost = group(1, &[1, 2, 3]);
        lost.lost = vec![2];
        let mut too_many = group(2, &[1, 2, 3]);
        too_many.lost = vec![1, 3];
        let planned = plan_re_replication(&nodes(&[true, true, true, true]), &[lost, too_many], 8);
        assert_eq!(
            planned,
            vec![PlannedMove {
                partition: 1,
                source: 2,
                target: 4,
                source_dead: true
            }]
        );
    }

    #[test]
    fn moves_under_way_count_against_the_budget() {
        let mut under_way = group(9, &[1, 2, 3]);
        under_way.moving_to = Some(4);
        let groups = [under_way, group(1, &[1, 2, 5]), group(2, &[1, 3, 5])];
        let planned = plan_re_replication(&nodes(&[true, true, true, true, false]), &groups, 2);
        assert_eq!(planned.len(), 1);
    }

    #[test]
    fn a_node_silent_since_the_last_probe_is_no_target() {
        let mut views = nodes(&[true, true, true, true, false]);
        views[3].answered = false;
        let planned = plan_re_replication(&views, &[group(1, &[1, 2, 5])], 8);
        assert_eq!(planned[0].target, 3);
        assert_eq!(
            targets_by_load(&views, &[group(1, &[1, 2, 5])]),
            vec![3, 1, 2]
        );
    }

    #[test]
    fn a_draining_node_is_emptied_by_planned_moves_after_dead_replicas() {
        let mut views = nodes(&[true, true, true, true, true]);
        views[4].draining = true;
        let mut dead = group(2, &[1, 2, 5]);
        dead.lost = vec![2];
        let groups = [group(1, &[1, 2, 5]), dead];
        let planned = plan_re_replication(&views, &groups, 8);
        // The dead replica goes first in its group; the draining one is a planned move; no
        // target is the draining node.
        assert_eq!(
            planned,
            vec![
                PlannedMove {
                    partition: 1,
                    source: 5,
                    target: 3,
                    source_dead: false
                },
                PlannedMove {
                    partition: 2,
                    source: 2,
                    target: 4,
                    source_dead: true
                },
            ]
        );
    }

    proptest! {
        #[test]
        fn planned_moves_keep_the_invariants(
            up in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 1..8),
            picks in proptest::collection::vec((0usize..8, 0usize..8, 0usize..8, any::<bool>(), 0usize..9), 0..40),
            moves_max in 0usize..10,
        ) {
            let views: Vec<NodeView> = up
                .iter()
                .enumerate()
                .map(|(index, (up, answered, draining))| NodeView {
                    id: index as NodeId + 1,
                    up: *up,
                    answered: *up && *answered,
                    draining: *draining,
                })
                .collect();
            let count = views.len();
            let groups: Vec<GroupView> = picks
                .iter()
                .enumerate()
                .map(|(index, (a, b, c, moving, lost))| {
                    let mut replicas: Vec<NodeId> =
                        [a, b, c].iter().map(|pick| (**pick % count) as NodeId + 1).collect();
                    replicas.sort_unstable();
                    replicas.dedup();
                    let outside = (1..=count as NodeId).find(|node| !replicas.contains(node));
                    GroupView {
                        partition: index as u64,
                        moving_to: if *moving { outside } else { None },
                        lost: replicas.iter().copied().filter(|node| *node == *lost as NodeId).collect(),
                        leader: None,
                        replicas,
                    }
                })
                .collect();
            let is_up = |node: NodeId| views.iter().any(|view| view.id == node && view.up);
            let alive = |group: &GroupView, node: NodeId| is_up(node) && !group.lost.contains(&node);
            let planned = plan_re_replication(&views, &groups, moves_max);
            let under_way = groups.iter().filter(|group| group.moving_to.is_some()).count();
            prop_assert!(planned.len() + under_way <= moves_max.max(under_way));
            let mut seen = std::collections::BTreeSet::new();
            for moving in &planned {
                let group = &groups[moving.partition as usize];
                prop_assert!(seen.insert(moving.partition), "one move per partition");
                prop_assert!(group.moving_to.is_none());
                let draining = |node: NodeId| views.iter().any(|view| view.id == node && view.draining);
                let any_dead = group.replicas.iter().any(|node| !alive(group, *node));
                prop_assert!(group.replicas.contains(&moving.source));
                if any_dead {
                    prop_assert!(!alive(group, moving.source) && moving.source_dead);
                } else {
                    prop_assert!(draining(moving.source) && !moving.source_dead);
                }
                prop_assert!(!draining(moving.target));
                prop_assert!(is_up(moving.target) && !group.replicas.contains(&moving.target));
                prop_assert!(views.iter().any(|view| view.id == moving.target && view.answered));
                let up_replicas = group.replicas.iter().filter(|node| alive(group, **node)).count();
                prop_assert!(up_replicas * 2 > group.replicas.len());
            }
        }
    }

    /// Groups of up to three replicas picked from `node_count` nodes, with a leader among
    /// them (or none, when the pick is past them), none moving or lost.
    fn healthy_groups(node_count: usize, picks: &[(usize, usize, usize, usize)]) -> Vec<GroupView> {
        picks
            .iter()
            .enumerate()
            .map(|(index, (a, b, c, leader))| {
                let mut replicas: Vec<NodeId> = [a, b, c]
                    .iter()
                    .map(|pick| (**pick % node_count) as NodeId + 1)
                    .collect();
                replicas.sort_unstable();
                replicas.dedup();
                GroupView {
                    partition: index as u64,
                    leader: replicas.get(*leader).copied(),
                    replicas,
                    moving_to: None,
                    lost: Vec::new(),
                }
            })
            .collect()
    }

    /// Three nodes hosting 6 partitions each and a fourth that joined empty: replicas move
    /// onto it, followers first, until it is within one of the others.
    fn joined_cluster(leaders: &[(u64, NodeId)]) -> Vec<GroupView> {
        (1..=6)
            .map(|partition| {
                let mut group = group(partition, &[1, 2, 3]);
                group.leader = leaders
                    .iter()
                    .find(|(led, _)| *led == partition)
                    .map(|(_, node)| *node);
                group
            })
            .collect()
    }

    #[test]
    fn a_node_that_joined_receives_replicas_followers_first() {
        let views = nodes(&[true, true, true, true]);
        // Node 3 leads every partition: it gives only when no other node can.
        let groups = joined_cluster(&[(1, 3), (2, 3), (3, 3), (4, 3), (5, 3), (6, 3)]);
        assert!(imbalanced(&views, &groups));
        let planned = plan_balance(&views, &groups, &BTreeMap::new(), 8);
        // 18 replicas on 4 nodes: nodes 1 and 2 give two each, then node 3 must give one,
        // though it leads (at 6 it would be two above the others), and node 4 ends with 5.
        let sources: Vec<NodeId> = planned.iter().map(|moving| moving.source).collect();
        assert_eq!(sources, vec![2, 1, 2, 1, 3], "{planned:?}");
        assert!(
            planned
                .iter()
                .all(|moving| moving.target == 4 && !moving.source_dead)
        );
        let partitions: BTreeSet<u64> = planned.iter().map(|moving| moving.partition).collect();
        assert_eq!(partitions.len(), 5, "one move per partition");
        // The budget caps a batch.
        assert_eq!(plan_balance(&views, &groups, &BTreeMap::new(), 2).len(), 2);
        // A balanced cluster plans nothing.
        let even = [
            group(1, &[1, 2, 3]),
            group(2, &[2, 3, 4]),
            group(3, &[1, 3, 4]),
        ];
        assert!(!imbalanced(&views, &even));
        assert!(plan_balance(&views, &even, &BTreeMap::new(), 8).is_empty());
    }

    /// The case seen on `shoal dev`: node 1 leads partitions 2-4, node 2 leads 1; node 1's only
    /// follower replica is partition 1's, so node 1 gives first and no leader moves.
    #[test]
    fn a_giver_with_few_follower_replicas_gives_first() {
        let views = nodes(&[true, true, true, true]);
        let mut groups: Vec<GroupView> = (1..=4)
            .map(|partition| group(partition, &[1, 2, 3]))
            .collect();
        groups[0].leader = Some(2);
        for group in &mut groups[1..] {
            group.leader = Some(1);
        }
        let planned = plan_balance(&views, &groups, &BTreeMap::new(), 8);
        let moves: Vec<(u64, NodeId)> = planned
            .iter()
            .map(|moving| (moving.partition, moving.source))
            .collect();
        assert_eq!(moves, vec![(1, 1), (2, 3), (3, 2)]);
    }

    /// A table created on one node, then two nodes joined: each partition (and the metadata
    /// group, one more group) gets an addition per pass until it has three replicas, on the
    /// least loaded nodes; a group already whole gets none, and a busy cluster none at all.
    #[test]
    fn groups_created_on_fewer_nodes_grow_to_the_replication_factor() {
        let views = nodes(&[true, true, true]);
        let mut groups: Vec<GroupView> = (0..4).map(|partition| group(partition, &[1])).collect();
        // Partition 0 stands for the metadata group: it grows in a batch of its own.
        let planned = plan_growth(&views, &groups, 3, &[0], 8);
        let targets: Vec<(u64, NodeId)> = planned
            .iter()
            .map(|moving| (moving.partition, moving.target))
            .collect();
        assert_eq!(targets, vec![(0, 2)]);
        assert!(
            planned
                .iter()
                .all(|moving| moving.source == crate::replica_move::NO_SOURCE
                    && moving.source_dead)
        );
        // Then one group of one at a time (its writes pause until its joiner caught up),
        // groups of two together.
        groups[0].replicas = vec![1, 2];
        let planned = plan_growth(&views, &groups, 3, &[0], 8);
        let targets: Vec<(u64, NodeId)> = planned
            .iter()
            .map(|moving| (moving.partition, moving.target))
            .collect();
        assert_eq!(targets, vec![(0, 3)]);
        groups[0].replicas = vec![1, 2, 3];
        assert_eq!(plan_growth(&views, &groups, 3, &[0], 8).len(), 1);
        for group in &mut groups[1..] {
            group.replicas = vec![1, 3];
        }
        let planned = plan_growth(&views, &groups, 3, &[0], 8);
        assert_eq!(planned.len(), 3);
        assert!(planned.iter().all(|moving| moving.target == 2));
        assert_eq!(
            plan_growth(&views, &groups, 3, &[0], 2).len(),
            2,
            "the budget"
        );
        let whole = [group(0, &[1, 2, 3])];
        assert!(plan_growth(&views, &whole, 3, &[], 8).is_empty());
        // Two nodes: a group of one stays one (at two, it would stop at either's loss); a
        // group of two grows once a third node can take a replica.
        let two_nodes = nodes(&[true, true]);
        assert!(plan_growth(&two_nodes, &[group(0, &[1])], 3, &[], 8).is_empty());
        assert!(plan_growth(&two_nodes, &[group(0, &[1, 2])], 3, &[], 8).is_empty());
        assert_eq!(
            plan_growth(&views, &[group(0, &[1, 2])], 3, &[], 8).len(),
            1
        );
        let mut busy: Vec<GroupView> = (0..4).map(|partition| group(partition, &[1])).collect();
        busy[0].moving_to = Some(2);
        assert!(plan_growth(&views, &busy, 3, &[], 8).is_empty());
    }

    proptest! {
        #[test]
        fn growth_adds_one_replica_per_short_group_on_the_least_loaded_node(
            node_count in 1usize..7,
            picks in proptest::collection::vec((0usize..7, 0usize..7, 0usize..7, 0usize..8), 0..40),
            shrink in proptest::collection::vec(0usize..3, 0..40),
            moves_max in 0usize..10,
        ) {
            let views = nodes(&vec![true; node_count]);
            let mut groups = healthy_groups(node_count, &picks);
            for (group, drop) in groups.iter_mut().zip(&shrink) {
                let keep = group.replicas.len().saturating_sub(*drop).max(1);
                group.replicas.truncate(keep);
            }
            let planned = plan_growth(&views, &groups, 3, &[], moves_max);
            prop_assert!(planned.len() <= moves_max);
            let mut loads = target_loads(&views, &groups);
            let mut seen = BTreeSet::new();
            let mut ones = 0;
            for moving in &planned {
                let group = &groups[moving.partition as usize];
                prop_assert!(seen.insert(moving.partition), "one addition per group");
                prop_assert!(group.replicas.len() < 3);
                prop_assert!(!group.replicas.contains(&moving.target));
                prop_assert_eq!(moving.source, crate::replica_move::NO_SOURCE);
                let outside = views.iter().filter(|view| !group.replicas.contains(&view.id)).count();
                if group.replicas.len() == 1 {
                    ones += 1;
                    prop_assert!(outside >= 2, "a group of one grows only toward three");
                }
                let least = loads
                    .iter()
                    .filter(|(node, _)| !group.replicas.contains(node))
                    .map(|(_, load)| *load)
                    .min();
                prop_assert_eq!(Some(loads[&moving.target]), least);
                *loads.get_mut(&moving.target).unwrap() += 1;
            }
            prop_assert!(ones <= 1, "one group of one per batch");
            // Every short group of two that could grow did, budget allowing.
            if planned.len() < moves_max {
                for group in groups.iter().filter(|group| group.replicas.len() == 2) {
                    let could = views.iter().any(|view| !group.replicas.contains(&view.id));
                    prop_assert_eq!(could, seen.contains(&group.partition), "{:?}", group);
                }
            }
            // A group named alone grows in a batch of its own.
            if let Some(first) = groups.first() {
                let planned = plan_growth(&views, &groups, 3, &[first.partition], moves_max);
                if planned.iter().any(|moving| moving.partition == first.partition) {
                    prop_assert_eq!(planned.len(), 1);
                }
            }
        }
    }

    #[test]
    fn balance_waits_for_a_healthy_quiet_cluster() {
        let groups = joined_cluster(&[]);
        let mut views = nodes(&[true, true, true, true]);
        views[1].answered = false;
        assert!(
            plan_balance(&views, &groups, &BTreeMap::new(), 8).is_empty(),
            "a node silent"
        );
        let mut views = nodes(&[true, true, true, true]);
        views[0].draining = true;
        assert!(
            plan_balance(&views, &groups, &BTreeMap::new(), 8).is_empty(),
            "a node draining"
        );
        let views = nodes(&[true, true, true, true]);
        let mut busy = groups.clone();
        busy[0].moving_to = Some(4);
        assert!(
            plan_balance(&views, &busy, &BTreeMap::new(), 8).is_empty(),
            "a move under way"
        );
        let mut lost = groups.clone();
        lost[2].lost = vec![2];
        assert!(
            plan_balance(&views, &lost, &BTreeMap::new(), 8).is_empty(),
            "a replica lost"
        );
    }

    proptest! {
        #[test]
        fn balance_moves_even_the_counts_and_prefer_followers(
            node_count in 2usize..7,
            picks in proptest::collection::vec((0usize..7, 0usize..7, 0usize..7, 0usize..8), 0..40),
            moves_max in 0usize..10,
        ) {
            let views = nodes(&vec![true; node_count]);
            let groups = healthy_groups(node_count, &picks);
            let planned = plan_balance(&views, &groups, &BTreeMap::new(), moves_max);
            prop_assert!(planned.len() <= moves_max);
            let mut loads = target_loads(&views, &groups);
            let squares = |loads: &BTreeMap<NodeId, usize>| loads.values().map(|n| n * n).sum::<usize>();
            let mut seen = BTreeSet::new();
            for moving in &planned {
                let group = &groups[moving.partition as usize];
                prop_assert!(!seen.contains(&moving.partition), "one move per partition");
                prop_assert!(group.replicas.contains(&moving.source));
                prop_assert!(!group.replicas.contains(&moving.target));
                prop_assert!(!moving.source_dead);
                prop_assert!(loads[&moving.source] >= loads[&moving.target] + 2);
                if group.leader == Some(moving.source) {
                    // A leader's replica moves only when no follower's could even the counts.
                    for other in groups.iter().filter(|other| !seen.contains(&other.partition)) {
                        for source in other.replicas.iter().filter(|node| other.leader != Some(**node)) {
                            for (target, load) in &loads {
                                prop_assert!(
                                    other.replicas.contains(target) || loads[source] < load + 2,
                                    "{other:?} could move a follower {source} -> {target}"
                                );
                            }
                        }
                    }
                }
                seen.insert(moving.partition);
                let before = squares(&loads);
                *loads.get_mut(&moving.source).unwrap() -= 1;
                *loads.get_mut(&moving.target).unwrap() += 1;
                prop_assert!(squares(&loads) < before);
            }
            // With room left in the budget, what remains cannot be evened by any one move.
            if planned.len() < moves_max {
                let moved: BTreeSet<u64> = planned.iter().map(|moving| moving.partition).collect();
                for group in groups.iter().filter(|group| !moved.contains(&group.partition)) {
                    for source in &group.replicas {
                        for (target, load) in &loads {
                            if !group.replicas.contains(target) {
                                prop_assert!(loads[source] < load + 2, "{group:?} could move {source} -> {target}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Node 1 leads all four partitions, nodes 2-4 none: leadership goes to the least leading
    /// member of each, until no node leads two more than another.
    #[test]
    fn leaders_are_spread_over_the_members() {
        let views = nodes(&[true, true, true, true]);
        let mut groups = vec![
            group(1, &[1, 2, 3]),
            group(2, &[1, 3, 4]),
            group(3, &[1, 2, 4]),
            group(4, &[1, 2, 3]),
        ];
        for group in &mut groups {
            group.leader = Some(1);
        }
        let planned = plan_leader_balance(&views, &groups, 8);
        assert_eq!(
            planned,
            vec![
                PlannedTransfer {
                    partition: 1,
                    from: 1,
                    to: 2
                },
                PlannedTransfer {
                    partition: 2,
                    from: 1,
                    to: 3
                },
                PlannedTransfer {
                    partition: 3,
                    from: 1,
                    to: 4
                },
            ],
            "then every node leads one"
        );
        let mut unknown = groups.clone();
        unknown[0].moving_to = Some(4);
        assert!(
            plan_leader_balance(&views, &unknown, 8).is_empty(),
            "a move under way"
        );
    }

    proptest! {
        #[test]
        fn leader_transfers_even_the_leader_counts(
            node_count in 2usize..7,
            picks in proptest::collection::vec((0usize..7, 0usize..7, 0usize..7, 0usize..4), 0..40),
            transfers_max in 0usize..10,
        ) {
            let views = nodes(&vec![true; node_count]);
            let groups = healthy_groups(node_count, &picks);
            let planned = plan_leader_balance(&views, &groups, transfers_max);
            prop_assert!(planned.len() <= transfers_max);
            let mut leads: BTreeMap<NodeId, usize> = views.iter().map(|view| (view.id, 0)).collect();
            for group in &groups {
                if let Some(leader) = group.leader {
                    *leads.get_mut(&leader).unwrap() += 1;
                }
            }
            let mut seen = BTreeSet::new();
            for transfer in &planned {
                let group = &groups[transfer.partition as usize];
                prop_assert!(seen.insert(transfer.partition), "one transfer per partition");
                prop_assert_eq!(group.leader, Some(transfer.from));
                prop_assert!(group.replicas.contains(&transfer.to) && transfer.to != transfer.from);
                prop_assert!(leads[&transfer.from] >= leads[&transfer.to] + 2);
                *leads.get_mut(&transfer.from).unwrap() -= 1;
                *leads.get_mut(&transfer.to).unwrap() += 1;
            }
            // With room left, no transfer of a partition not yet planned could even the counts.
            if planned.len() < transfers_max {
                for group in groups.iter().filter(|group| !seen.contains(&group.partition)) {
                    let Some(leader) = group.leader else { continue };
                    for member in group.replicas.iter().filter(|member| **member != leader) {
                        prop_assert!(leads[&leader] < leads[member] + 2, "{group:?} {leads:?}");
                    }
                }
            }
        }
    }

    /// Groups whose replicas are three consecutive nodes of `node_count`, round and round:
    /// every node hosts as many as the others (counts even), as weight balance needs.
    fn even_groups(node_count: usize, rounds: usize, leaders: &[usize]) -> Vec<GroupView> {
        (0..node_count * rounds)
            .map(|index| {
                let mut replicas: Vec<NodeId> = (0..3)
                    .map(|offset| ((index + offset) % node_count) as NodeId + 1)
                    .collect();
                replicas.sort_unstable();
                GroupView {
                    partition: index as u64,
                    leader: leaders
                        .get(index)
                        .and_then(|pick| replicas.get(*pick % 4))
                        .copied(),
                    replicas,
                    moving_to: None,
                    lost: Vec::new(),
                }
            })
            .collect()
    }

    fn node_weights(
        views: &[NodeView],
        groups: &[GroupView],
        weights: &BTreeMap<u64, u64>,
    ) -> BTreeMap<NodeId, u64> {
        let mut sums: BTreeMap<NodeId, u64> = views.iter().map(|view| (view.id, 0)).collect();
        for group in groups {
            for node in &group.replicas {
                *sums.get_mut(node).unwrap() += weights.get(&group.partition).copied().unwrap_or(0);
            }
        }
        sums
    }

    /// Four nodes, eight partitions on three nodes each (six per node); partitions 0 and 4 are
    /// big and both on nodes 1-3, so node 4 weighs nothing. Counts are even, so a big replica
    /// is swapped for a light one rather than moved alone; node 1 leads partition 0, so its
    /// follower replica of partition 4 goes. Six big replicas on four nodes are then as even
    /// as they can be (two nodes with two, two with one), and nothing more moves.
    #[test]
    fn a_heavy_replica_is_swapped_for_a_light_one_when_the_counts_are_even() {
        let views = nodes(&[true, true, true, true]);
        let mut groups = even_groups(4, 2, &[]);
        assert_eq!(groups[0].replicas, vec![1, 2, 3]);
        assert_eq!(groups[4].replicas, vec![1, 2, 3]);
        assert_eq!(groups[1].replicas, vec![2, 3, 4]);
        groups[0].leader = Some(1);
        let weights = BTreeMap::from([(0, 1_000), (4, 1_000)]);
        let planned = plan_weight_balance(&views, &groups, &weights, 4);
        assert_eq!(
            planned,
            vec![
                PlannedMove {
                    partition: 4,
                    source: 1,
                    target: 4,
                    source_dead: false
                },
                PlannedMove {
                    partition: 1,
                    source: 4,
                    target: 1,
                    source_dead: false
                },
            ],
            "{:?}",
            node_weights(&views, &groups, &weights)
        );
        // Nodes 200 apart at most: under the floor, nothing moves.
        let light = BTreeMap::from([(0, 200), (4, 200)]);
        assert!(plan_weight_balance(&views, &groups, &light, 4).is_empty());
        // Room for one move only: a swap does not fit, and a single move would leave the
        // counts uneven.
        assert!(plan_weight_balance(&views, &groups, &weights, 1).is_empty());
        // Counts uneven: count balance goes first.
        let uneven = joined_cluster(&[]);
        assert!(plan_weight_balance(&views, &uneven, &weights, 4).is_empty());
    }

    /// Whether some single move (keeping the counts even) or swap between two nodes whose
    /// weights differ by the threshold narrows their gap by [`WEIGHT_STEP_MIN`], moving
    /// followers' replicas only unless `leaders_too`: by brute force, for the property test.
    fn a_step_exists(
        groups: &[GroupView],
        weights: &BTreeMap<u64, u64>,
        counts: &BTreeMap<NodeId, usize>,
        node_weights: &BTreeMap<NodeId, u64>,
        moving: &BTreeSet<u64>,
        leaders_too: bool,
        room: usize,
    ) -> bool {
        let threshold = weight_threshold(node_weights);
        let weight = |group: &GroupView| weights.get(&group.partition).copied().unwrap_or(0);
        let may_give = |group: &GroupView, from: NodeId, to: NodeId| {
            !moving.contains(&group.partition)
                && group.replicas.contains(&from)
                && !group.replicas.contains(&to)
                && (leaders_too || group.leader != Some(from))
        };
        for (heavy, heavy_weight) in node_weights {
            for (light, light_weight) in node_weights {
                let Some(gap) = heavy_weight.checked_sub(*light_weight) else {
                    continue;
                };
                if gap < threshold || heavy == light {
                    continue;
                }
                for out in groups.iter().filter(|g| may_give(g, *heavy, *light)) {
                    if counts[heavy] > counts[light]
                        && even_after(counts, *heavy, *light)
                        && narrowing(gap, weight(out)) >= WEIGHT_STEP_MIN
                    {
                        return true;
                    }
                    if room < 2 {
                        continue;
                    }
                    for back in groups.iter().filter(|g| may_give(g, *light, *heavy)) {
                        if weight(out) > weight(back)
                            && narrowing(gap, weight(out) - weight(back)) >= WEIGHT_STEP_MIN
                        {
                            return true;
                        }
                    }
                }
            }
        }
        false
    }

    proptest! {
        #[test]
        fn weight_balance_narrows_gaps_keeps_counts_even_and_ends(
            node_count in 4usize..8,
            rounds in 1usize..4,
            extra in proptest::collection::vec((0usize..8, 0usize..8, 0usize..8), 0..3),
            weights in proptest::collection::vec(0u64..3_000, 40),
            leaders in proptest::collection::vec(0usize..4, 40),
            moves_max in 0usize..7,
        ) {
            let views = nodes(&vec![true; node_count]);
            // Even counts, then up to two groups more: some nodes then host one more.
            let mut groups = even_groups(node_count, rounds, &leaders);
            for (a, b, c) in &extra {
                let mut replicas: Vec<NodeId> = [a, b, c].iter().map(|pick| (**pick % node_count) as NodeId + 1).collect();
                replicas.sort_unstable();
                replicas.dedup();
                groups.push(GroupView { partition: groups.len() as u64, leader: replicas.first().copied(), replicas, moving_to: None, lost: Vec::new() });
            }
            let weights: BTreeMap<u64, u64> = weights.iter().enumerate().map(|(index, weight)| (index as u64, *weight)).collect();
            let steps = weight_steps(&views, &groups, &weights, moves_max);
            prop_assert_eq!(
                steps.iter().flatten().copied().collect::<Vec<_>>(),
                plan_weight_balance(&views, &groups, &weights, moves_max)
            );
            if imbalanced(&views, &groups) {
                prop_assert!(steps.is_empty(), "counts first");
                return Ok(());
            }
            prop_assert!(steps.iter().map(Vec::len).sum::<usize>() <= moves_max);
            let mut counts = target_loads(&views, &groups);
            let mut sums = node_weights(&views, &groups, &weights);
            let weight = |partition: u64| weights.get(&partition).copied().unwrap_or(0);
            let squares = |sums: &BTreeMap<NodeId, u64>| sums.values().map(|w| u128::from(*w) * u128::from(*w)).sum::<u128>();
            let mut moving = BTreeSet::new();
            let mut planned = 0;
            for step in &steps {
                let first = step[0];
                let (heavy, light) = (first.source, first.target);
                let gap = sums[&heavy].checked_sub(sums[&light]);
                prop_assert!(gap.is_some_and(|gap| gap >= weight_threshold(&sums)), "{step:?} acts on a pair apart by the threshold");
                let moved_weight = match step.as_slice() {
                    [single] => {
                        prop_assert!(counts[&heavy] > counts[&light]);
                        weight(single.partition)
                    }
                    [out, back] => {
                        prop_assert_eq!((back.source, back.target), (light, heavy), "a swap");
                        weight(out.partition) - weight(back.partition)
                    }
                    _ => { prop_assert!(false, "a step is one move or two"); 0 }
                };
                prop_assert!(narrowing(gap.unwrap(), moved_weight) >= WEIGHT_STEP_MIN);
                let leads = step.iter().any(|moved| groups[moved.partition as usize].leader == Some(moved.source));
                if leads {
                    prop_assert!(
                        !a_step_exists(&groups, &weights, &counts, &sums, &moving, false, moves_max - planned),
                        "{step:?} moves a leader's replica though a follower's would do"
                    );
                }
                let before = squares(&sums);
                for moved in step {
                    let group = &groups[moved.partition as usize];
                    prop_assert!(moving.insert(moved.partition), "one move per partition");
                    prop_assert!(group.replicas.contains(&moved.source));
                    prop_assert!(!group.replicas.contains(&moved.target));
                    prop_assert!(!moved.source_dead);
                    *sums.get_mut(&moved.source).unwrap() -= weight(moved.partition);
                    *sums.get_mut(&moved.target).unwrap() += weight(moved.partition);
                    *counts.get_mut(&moved.source).unwrap() -= 1;
                    *counts.get_mut(&moved.target).unwrap() += 1;
                }
                prop_assert!(squares(&sums) < before, "the sum of squared weights falls");
                prop_assert!(counts.values().max().unwrap() < &(counts.values().min().unwrap() + 2), "counts stay even");
                planned += step.len();
            }
            // With room for a swap left, no step is left.
            if moves_max - planned >= 2 {
                prop_assert!(!a_step_exists(&groups, &weights, &counts, &sums, &moving, true, moves_max - planned));
            }
        }
    }
}
