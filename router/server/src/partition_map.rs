//! A table's partition map and the node directory: pure data, no I/O.
//!
//! Invariants (checked by `PartitionMap::new`, relied on by `lookup`):
//! 1. Partitions are sorted by `range.first`, contiguous, non-overlapping, and cover the whole
//!    64-bit hash space, so every hash has exactly one partition.
//! 2. Every partition has at least one replica; a leader hint, when set, names one of them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;

use shoal_model::AttributeValue;
use shoal_model::key::partition_hash;

/// A node of the cluster (`shoal_wire::messages::NodeIdWire`).
pub type NodeId = u64;

/// An inclusive range of partition hashes. Inclusive on both ends so the last partition can
/// end at `u64::MAX` without a wider type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HashRange {
    pub first: u64,
    pub last: u64,
}

impl HashRange {
    pub const ALL: HashRange = HashRange {
        first: 0,
        last: u64::MAX,
    };

    pub fn contains(&self, hash: u64) -> bool {
        self.first <= hash && hash <= self.last
    }

    pub fn overlaps(&self, other: &HashRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// One partition of a table, as the router routes to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionEntry {
    /// Cluster-wide partition id (the replication group id); never reused.
    pub id: u64,
    pub range: HashRange,
    /// Full replicas, preferred leader first.
    pub replicas: Vec<NodeId>,
    /// The shard index on every replica's node (the storage node's placement rule).
    pub shard: u16,
    /// The partition map epoch; nodes refuse requests routed with another one.
    pub epoch: u64,
    /// The node believed to lead, learned from answers; `None` until something is known.
    pub leader_hint: Option<NodeId>,
}

impl PartitionEntry {
    /// The replica to try first: the leader hint if it is a replica, else the preferred leader.
    pub fn first_target(&self) -> Option<NodeId> {
        self.leader_hint
            .filter(|hint| self.replicas.contains(hint))
            .or_else(|| self.replicas.first().copied())
    }

    /// The replica after `node` in the replica list, wrapping around.
    pub fn next_replica(&self, node: NodeId) -> Option<NodeId> {
        let position = self.replicas.iter().position(|replica| *replica == node);
        match position {
            Some(index) => self
                .replicas
                .get((index + 1) % self.replicas.len())
                .copied(),
            None => self.replicas.first().copied(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapError {
    Empty,
    /// Partitions do not start at hash 0, leave a gap, overlap or stop before `u64::MAX`.
    NotContiguous {
        partition: u64,
    },
    NoReplicas {
        partition: u64,
    },
}

/// The partitions of one table, in hash order (invariant 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMap {
    partitions: Vec<PartitionEntry>,
}

impl PartitionMap {
    pub fn new(mut partitions: Vec<PartitionEntry>) -> Result<PartitionMap, MapError> {
        partitions.sort_by_key(|partition| partition.range.first);
        let mut expected_first: u128 = 0;
        for partition in &partitions {
            if u128::from(partition.range.first) != expected_first
                || partition.range.last < partition.range.first
            {
                return Err(MapError::NotContiguous {
                    partition: partition.id,
                });
            }
            if partition.replicas.is_empty() {
                return Err(MapError::NoReplicas {
                    partition: partition.id,
                });
            }
            expected_first = u128::from(partition.range.last) + 1;
        }
        match partitions.last() {
            None => Err(MapError::Empty),
            Some(last) if last.range.last != u64::MAX => {
                Err(MapError::NotContiguous { partition: last.id })
            }
            Some(_) => Ok(PartitionMap { partitions }),
        }
    }

    pub fn partitions(&self) -> &[PartitionEntry] {
        &self.partitions
    }

    /// The index of the partition owning `hash` (invariant 1: always exactly one).
    pub fn index_of(&self, hash: u64) -> usize {
        // The first partition whose range starts after `hash`, minus one.
        let after = self
            .partitions
            .partition_point(|partition| partition.range.first <= hash);
        after.saturating_sub(1)
    }

    pub fn lookup(&self, hash: u64) -> &PartitionEntry {
        &self.partitions[self.index_of(hash)]
    }

    /// The partition owning a partition key value; `None` for a value that is not a key type.
    pub fn lookup_key(&self, partition_key: &AttributeValue) -> Option<&PartitionEntry> {
        partition_hash(partition_key).map(|hash| self.lookup(hash))
    }

    /// The indexes of the partitions overlapping `range`, in hash order.
    pub fn overlapping(&self, range: HashRange) -> Range<usize> {
        let start = self.index_of(range.first);
        let end = self.index_of(range.last) + 1;
        start..end
    }

    pub fn get(&self, partition: u64) -> Option<&PartitionEntry> {
        self.partitions.iter().find(|entry| entry.id == partition)
    }

    /// Records who leads `partition`, from a NotLeader hint or a successful answer. A hint
    /// naming a node outside the replica set is ignored (invariant 2): it comes from a replica
    /// that knows a newer membership, and the map refresh will bring that in.
    pub fn note_leader(&mut self, partition: u64, leader: Option<NodeId>) {
        if let Some(entry) = self
            .partitions
            .iter_mut()
            .find(|entry| entry.id == partition)
        {
            entry.leader_hint = leader.filter(|node| entry.replicas.contains(node));
        }
    }
}

/// Where each node's shard 0 listens on the bus; shard `i` listens on base port + `i`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeDirectory {
    nodes: BTreeMap<NodeId, SocketAddr>,
}

impl NodeDirectory {
    pub fn new(nodes: impl IntoIterator<Item = (NodeId, SocketAddr)>) -> NodeDirectory {
        NodeDirectory {
            nodes: nodes.into_iter().collect(),
        }
    }

    pub fn insert(&mut self, node: NodeId, base: SocketAddr) {
        self.nodes.insert(node, base);
    }

    pub fn base_address(&self, node: NodeId) -> Option<SocketAddr> {
        self.nodes.get(&node).copied()
    }

    /// The bus address of `(node, shard)`; `None` for an unknown node or a port past 65535.
    pub fn shard_address(&self, node: NodeId, shard: u16) -> Option<SocketAddr> {
        let base = self.nodes.get(&node)?;
        let port = base.port().checked_add(shard)?;
        Some(SocketAddr::new(base.ip(), port))
    }

    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, SocketAddr)> + '_ {
        self.nodes.iter().map(|(node, address)| (*node, *address))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{even_range, place};
    use proptest::prelude::*;

    fn map_of(count: u32) -> PartitionMap {
        let planned = place(&[1, 2, 3], 2, count, 0).unwrap();
        PartitionMap::new(
            planned
                .into_iter()
                .map(|p| PartitionEntry {
                    id: 100 + u64::from(p.ordinal),
                    range: p.range,
                    replicas: p.replicas,
                    shard: p.shard,
                    epoch: 1,
                    leader_hint: None,
                })
                .collect(),
        )
        .unwrap()
    }

    fn entry(id: u64, first: u64, last: u64) -> PartitionEntry {
        PartitionEntry {
            id,
            range: HashRange { first, last },
            replicas: vec![1],
            shard: 0,
            epoch: 1,
            leader_hint: None,
        }
    }

    #[test]
    fn refuses_gaps_overlaps_and_short_maps() {
        assert_eq!(PartitionMap::new(vec![]), Err(MapError::Empty));
        assert_eq!(
            PartitionMap::new(vec![entry(1, 0, 10), entry(2, 12, u64::MAX)]),
            Err(MapError::NotContiguous { partition: 2 })
        );
        assert_eq!(
            PartitionMap::new(vec![entry(1, 0, 10), entry(2, 10, u64::MAX)]),
            Err(MapError::NotContiguous { partition: 2 })
        );
        assert_eq!(
            PartitionMap::new(vec![entry(1, 0, 10)]),
            Err(MapError::NotContiguous { partition: 1 })
        );
        let mut bare = entry(1, 0, u64::MAX);
        bare.replicas.clear();
        assert_eq!(
            PartitionMap::new(vec![bare]),
            Err(MapError::NoReplicas { partition: 1 })
        );
        // Given out of order, sorted.
        let map = PartitionMap::new(vec![entry(2, 11, u64::MAX), entry(1, 0, 10)]).unwrap();
        assert_eq!(map.partitions()[0].id, 1);
    }

    #[test]
    fn lookup_by_key_uses_the_model_hash() {
        let map = map_of(4);
        let value = AttributeValue::String("user-42".to_string());
        let hash = partition_hash(&value).unwrap();
        let found = map.lookup_key(&value).unwrap();
        assert!(found.range.contains(hash));
        assert_eq!(found.id, 100 + hash / (1u64 << 62));
        assert!(map.lookup_key(&AttributeValue::Boolean(true)).is_none());
    }

    #[test]
    fn leader_hints_follow_answers_and_stay_inside_the_replica_set() {
        let mut map = map_of(4);
        let id = map.partitions()[1].id;
        let preferred = map.partitions()[1].replicas[0];
        assert_eq!(map.get(id).unwrap().first_target(), Some(preferred));
        let other = map.partitions()[1].replicas[2];
        map.note_leader(id, Some(other));
        assert_eq!(map.get(id).unwrap().first_target(), Some(other));
        map.note_leader(id, Some(99));
        assert_eq!(map.get(id).unwrap().leader_hint, None);
        assert_eq!(map.get(id).unwrap().first_target(), Some(preferred));
        let entry = map.get(id).unwrap();
        assert_eq!(
            entry.next_replica(entry.replicas[2]),
            Some(entry.replicas[0])
        );
    }

    #[test]
    fn shard_addresses_are_base_port_plus_shard() {
        let directory = NodeDirectory::new([(1, "127.0.0.1:7000".parse().unwrap())]);
        assert_eq!(
            directory.shard_address(1, 3),
            Some("127.0.0.1:7003".parse().unwrap())
        );
        assert_eq!(directory.shard_address(2, 0), None);
        let high = NodeDirectory::new([(1, "127.0.0.1:65535".parse().unwrap())]);
        assert_eq!(high.shard_address(1, 1), None);
    }

    #[test]
    fn overlapping_picks_the_partitions_of_a_segment() {
        let map = map_of(4);
        // Segment 1 of 2 is the upper half: partitions 2 and 3.
        assert_eq!(map.overlapping(even_range(1, 2)), 2..4);
        assert_eq!(map.overlapping(HashRange::ALL), 0..4);
        // Segment 2 of 8 lies inside partition 1.
        assert_eq!(map.overlapping(even_range(2, 8)), 1..2);
    }

    proptest! {
        #[test]
        fn every_hash_has_exactly_one_partition(count in 1u32..64, hash in any::<u64>()) {
            let map = map_of(count);
            let owners: Vec<u64> = map
                .partitions()
                .iter()
                .filter(|p| p.range.contains(hash))
                .map(|p| p.id)
                .collect();
            prop_assert_eq!(owners.len(), 1);
            prop_assert_eq!(map.lookup(hash).id, owners[0]);
        }
    }
}
