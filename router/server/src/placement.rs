//! Placement of a new table's partitions: pure arithmetic, no I/O.
//!
//! Invariants (checked by the property tests at the bottom):
//! 1. The partitions' hash ranges are contiguous, do not overlap, and cover `0..=u64::MAX`;
//!    partition `i` of `n` covers `[i * 2^64 / n, (i + 1) * 2^64 / n)`, the split that
//!    `shoal_model::request::segment_bounds` uses for scan segments.
//! 2. A partition's replicas are distinct nodes, `min(REPLICATION_FACTOR, nodes)` of them.
//! 3. Every replica of a partition uses the same shard index (the storage node's placement
//!    rule: a replica sends replication traffic to `(peer node, own shard)`).
//! 4. Replicas per node differ by at most one across the cluster, partitions per shard index
//!    differ by at most one (round-robin spreading), and so do preferred leaders per node (the
//!    property test checks the last; the first two follow from the construction).

use std::collections::BTreeMap;

use crate::partition_map::{HashRange, NodeId};

/// Replicas per partition when the cluster has enough nodes (the architecture's default).
pub const REPLICATION_FACTOR: usize = 3;
/// The most partitions one table may be created with.
pub const PARTITIONS_PER_TABLE_MAX: u32 = 1024;

/// Why a placement cannot be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlacementError {
    NoNodes,
    NoShards,
    NoPartitions,
    TooManyPartitions,
    DuplicateNode(NodeId),
}

/// Where one new partition goes. `replicas[0]` is the preferred leader: the replica routers try
/// first until a node tells them otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedPartition {
    /// The partition's position in the table, in hash order (not its cluster-wide id).
    pub ordinal: u32,
    pub range: HashRange,
    pub replicas: Vec<NodeId>,
    pub shard: u16,
}

/// The hash range of partition `index` of `count` (invariant 1). `count` must be at least 1
/// and `index < count`.
pub fn even_range(index: u32, count: u32) -> HashRange {
    let span = u128::from(u64::MAX) + 1;
    let count = u128::from(count.max(1));
    let first = span * u128::from(index) / count;
    let end = span * (u128::from(index) + 1) / count;
    // `first < end <= 2^64`, so both fit in u64 after the subtraction.
    HashRange {
        first: u64::try_from(first).unwrap_or(u64::MAX),
        last: u64::try_from(end - 1).unwrap_or(u64::MAX),
    }
}

/// Places `partition_count` partitions over `nodes` with `shards_per_node` shards each.
///
/// `rotation` shifts the round-robin starting points (the router passes the first partition id
/// of the table), so that many small tables do not all put their first partition's preferred
/// leader on the lowest node and shard.
pub fn place(
    nodes: &[NodeId],
    shards_per_node: u16,
    partition_count: u32,
    rotation: u64,
) -> Result<Vec<PlannedPartition>, PlacementError> {
    if nodes.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    if shards_per_node == 0 {
        return Err(PlacementError::NoShards);
    }
    if partition_count == 0 {
        return Err(PlacementError::NoPartitions);
    }
    if partition_count > PARTITIONS_PER_TABLE_MAX {
        return Err(PlacementError::TooManyPartitions);
    }
    let mut sorted: Vec<NodeId> = nodes.to_vec();
    sorted.sort_unstable();
    for pair in sorted.windows(2) {
        if pair[0] == pair[1] {
            return Err(PlacementError::DuplicateNode(pair[0]));
        }
    }
    let node_count = sorted.len();
    let replication = REPLICATION_FACTOR.min(node_count);
    // Preferred-leader counts per node, to choose each partition's least-loaded leader.
    let mut leaders_per_node: BTreeMap<NodeId, u64> =
        sorted.iter().map(|node| (*node, 0)).collect();
    let node_rotation = usize::try_from(rotation % node_count as u64).unwrap_or(0);
    let shard_rotation = rotation % u64::from(shards_per_node);
    let mut planned = Vec::with_capacity(partition_count as usize);
    for ordinal in 0..partition_count {
        // Invariant 4: the replicas take the next `replication` slots of one round-robin walk
        // over the nodes, so every node has been dealt the same number of replicas, give or
        // take one, and a partition's slots are distinct nodes (`replication <= node_count`).
        // The preferred leader is the partition's replica leading the fewest so far.
        let first_slot = node_rotation + ordinal as usize * replication;
        let mut replicas: Vec<NodeId> = (0..replication)
            .map(|offset| sorted[(first_slot + offset) % node_count])
            .collect();
        let leader_position = (0..replication)
            .min_by_key(|position| (leaders_per_node[&replicas[*position]], *position))
            .unwrap_or(0);
        replicas.swap(0, leader_position);
        *leaders_per_node.entry(replicas[0]).or_default() += 1;
        let shard = (shard_rotation + u64::from(ordinal)) % u64::from(shards_per_node);
        planned.push(PlannedPartition {
            ordinal,
            range: even_range(ordinal, partition_count),
            replicas,
            shard: u16::try_from(shard).unwrap_or(0),
        });
    }
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spread(counts: impl Iterator<Item = u64>) -> u64 {
        let counts: Vec<u64> = counts.collect();
        let max = counts.iter().copied().max().unwrap_or(0);
        let min = counts.iter().copied().min().unwrap_or(0);
        max - min
    }

    #[test]
    fn four_partitions_on_three_nodes() {
        let planned = place(&[1, 2, 3], 1, 4, 0).unwrap();
        assert_eq!(planned.len(), 4);
        assert_eq!(planned[0].range.first, 0);
        assert_eq!(planned[0].range.last, (1u64 << 62) - 1);
        assert_eq!(planned[1].range.first, 1u64 << 62);
        assert_eq!(planned[3].range.last, u64::MAX);
        // Every partition on all three nodes; preferred leaders rotate.
        let leaders: Vec<NodeId> = planned.iter().map(|p| p.replicas[0]).collect();
        assert_eq!(&leaders[..3], &[1, 2, 3]);
        for partition in &planned {
            let mut replicas = partition.replicas.clone();
            replicas.sort_unstable();
            assert_eq!(replicas, vec![1, 2, 3]);
        }
    }

    #[test]
    fn fewer_nodes_than_the_replication_factor() {
        let planned = place(&[7], 2, 3, 0).unwrap();
        assert!(planned.iter().all(|p| p.replicas == vec![7]));
        assert_eq!(
            planned.iter().map(|p| p.shard).collect::<Vec<_>>(),
            vec![0, 1, 0]
        );
    }

    #[test]
    fn rejects_what_cannot_be_placed() {
        assert_eq!(place(&[], 1, 1, 0), Err(PlacementError::NoNodes));
        assert_eq!(place(&[1], 0, 1, 0), Err(PlacementError::NoShards));
        assert_eq!(place(&[1], 1, 0, 0), Err(PlacementError::NoPartitions));
        assert_eq!(
            place(&[1, 1], 1, 1, 0),
            Err(PlacementError::DuplicateNode(1))
        );
        assert_eq!(
            place(&[1], 1, PARTITIONS_PER_TABLE_MAX + 1, 0),
            Err(PlacementError::TooManyPartitions)
        );
    }

    #[test]
    fn even_range_matches_the_node_side_segment_split() {
        for count in [1u32, 2, 3, 4, 7, 1000] {
            for index in 0..count {
                let range = even_range(index, count);
                let (lower, upper) = shoal_partition_segment_bounds(index.into(), count.into());
                assert_eq!(lower, range.first);
                assert_eq!(upper, u128::from(range.last) + 1);
            }
        }
    }

    /// The formula of `shoal_model::request::segment_bounds`, restated on numbers (the
    /// router must not depend on the replica runtime).
    fn shoal_partition_segment_bounds(segment: u64, total: u64) -> (u64, u128) {
        let span = u128::from(u64::MAX) + 1;
        let start = (span * u128::from(segment) / u128::from(total)) as u64;
        let end = span * u128::from(segment + 1) / u128::from(total);
        (start, end)
    }

    proptest! {
        #[test]
        fn placements_keep_their_invariants(
            node_count in 1usize..12,
            shards in 1u16..9,
            partitions in 1u32..200,
            rotation in any::<u64>(),
        ) {
            let nodes: Vec<NodeId> = (0..node_count as u64).map(|i| 10 + i * 3).collect();
            let planned = place(&nodes, shards, partitions, rotation).unwrap();
            prop_assert_eq!(planned.len(), partitions as usize);
            // Invariant 1.
            prop_assert_eq!(planned[0].range.first, 0);
            prop_assert_eq!(planned[planned.len() - 1].range.last, u64::MAX);
            for pair in planned.windows(2) {
                prop_assert!(pair[0].range.first <= pair[0].range.last);
                prop_assert_eq!(u128::from(pair[0].range.last) + 1, u128::from(pair[1].range.first));
            }
            // Invariants 2 and 3.
            let replication = REPLICATION_FACTOR.min(node_count);
            let mut per_node: BTreeMap<NodeId, u64> = nodes.iter().map(|n| (*n, 0)).collect();
            let mut per_shard: BTreeMap<u16, u64> = (0..shards).map(|s| (s, 0)).collect();
            let mut leaders: BTreeMap<NodeId, u64> = nodes.iter().map(|n| (*n, 0)).collect();
            for partition in &planned {
                prop_assert_eq!(partition.replicas.len(), replication);
                let mut distinct = partition.replicas.clone();
                distinct.sort_unstable();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), replication);
                prop_assert!(partition.shard < shards);
                for node in &partition.replicas {
                    *per_node.get_mut(node).unwrap() += 1;
                }
                *per_shard.get_mut(&partition.shard).unwrap() += 1;
                *leaders.get_mut(&partition.replicas[0]).unwrap() += 1;
            }
            // Invariant 4.
            prop_assert!(spread(per_node.values().copied()) <= 1, "{:?}", per_node);
            prop_assert!(spread(per_shard.values().copied()) <= 1, "{:?}", per_shard);
            prop_assert!(spread(leaders.values().copied()) <= 1, "{:?}", leaders);
        }
    }
}
