//! `shoal admin status`: what the cluster looks like now, from the metadata and from what every
//! shard of every node reports (`NodeRequest::Status`). Pure: [`ClusterStatus::compute`] takes
//! the cluster item, the table items and the shard reports; [`Router::cluster_status`]
//! (router/status.rs) gathers them.
//!
//! A partition replica is *healthy* when the shard the partition map places it on reported
//! it (its node answered, and the replica is there and recovered). A partition with fewer
//! healthy replicas than its map lists is *under-replicated*; one with no healthy majority of
//! its listed replicas cannot serve writes. A replica a shard reports that no table lists is
//! *of no table* (the repair pass deletes those after a grace period).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value as Json, json};
use shoal_wire::messages::{ReplicaRole, ReplicaStatus};

use crate::metadata::{ClusterRecord, METADATA_PARTITION, METADATA_SHARD, TableRecord};
use crate::partition_map::NodeId;

/// What one shard answered: its replicas, or nothing (unreachable, or no answer in time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardReport {
    pub node: NodeId,
    pub shard: u16,
    pub replicas: Option<Vec<ReplicaStatus>>,
}

/// One node as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: NodeId,
    pub address: String,
    pub shards: u16,
    pub shards_answered: u16,
    /// Being decommissioned (`shoal admin decommission`): its replicas are moving away.
    pub draining: bool,
    pub replicas: u64,
    pub leaders: u64,
    /// Bytes of the items its replicas hold (keys and encoded values): the size estimate
    /// behind DescribeTable's TableSizeBytes, not the files' size on disk.
    pub item_bytes: u64,
}

/// One partition (of a table, a global index or the metadata group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionStatus {
    /// The table's name; `(metadata)` for the metadata group.
    pub table: String,
    /// The global secondary index the partition belongs to, if it does.
    pub index: Option<String>,
    pub partition: u64,
    pub shard: u16,
    /// The replicas the partition map lists.
    pub replicas: Vec<NodeId>,
    /// Of those, the ones their shard reported.
    pub healthy: Vec<NodeId>,
    /// The replica that reported itself leader, if one did.
    pub leader: Option<NodeId>,
}

impl PartitionStatus {
    pub fn under_replicated(&self) -> bool {
        self.healthy.len() < self.replicas.len()
    }

    /// Whether a majority of the listed replicas is healthy (the partition can commit).
    pub fn has_majority(&self) -> bool {
        self.healthy.len() > self.replicas.len() / 2
    }
}

/// One table (with its global indexes' partitions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSummary {
    pub name: String,
    pub status: &'static str,
    pub partitions: usize,
    pub under_replicated: usize,
    /// Replicas not created yet (metadata invariant 4): a CreateTable whose nodes were down.
    pub pending_replicas: usize,
}

/// A replica a shard reported that no table lists on its node (moved away, or of a table gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StrayReplica {
    pub node: NodeId,
    pub shard: u16,
    pub partition: u64,
}

/// A replica move under way (metadata invariant 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveStatus {
    pub table: String,
    pub partition: u64,
    pub source: NodeId,
    pub target: NodeId,
    /// The target is listed for routing already.
    pub target_routed: bool,
}

/// A partition split under way (metadata invariant 8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitStatus {
    pub table: String,
    /// The global secondary index whose partition is split; `None` for the table's own.
    pub index: Option<String>,
    pub parent: u64,
    pub left: u64,
    pub right: u64,
    /// The cut: the right child's first hash.
    pub at_hash: u64,
    /// The children serve in the parent's place; what is left is the parent's deletion.
    pub routed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// An operator paused the autoadmin (`shoal admin pause`).
    pub autoadmin_paused: bool,
    /// Replica moves under way (re-replication).
    pub moves: Vec<MoveStatus>,
    /// Partition splits under way.
    pub splits: Vec<SplitStatus>,
    pub nodes: Vec<NodeStatus>,
    pub tables: Vec<TableSummary>,
    /// Every partition, metadata group first, then by table and partition id.
    pub partitions: Vec<PartitionStatus>,
    /// Replicas of no table (deleted by the repair pass after its grace period).
    pub stray_replicas: Vec<StrayReplica>,
}

const METADATA_TABLE: &str = "(metadata)";

impl ClusterStatus {
    pub fn compute(
        cluster: &ClusterRecord,
        tables: &[TableRecord],
        reports: &[ShardReport],
        autoadmin_paused: bool,
    ) -> ClusterStatus {
        // What each (node, shard) reported, by partition.
        let mut reported: BTreeMap<(NodeId, u16), BTreeMap<u64, &ReplicaStatus>> = BTreeMap::new();
        for report in reports {
            if let Some(replicas) = &report.replicas {
                reported.insert(
                    (report.node, report.shard),
                    replicas
                        .iter()
                        .map(|replica| (replica.partition, replica))
                        .collect(),
                );
            }
        }
        let nodes = cluster
            .nodes
            .iter()
            .map(|node| {
                let mut status = NodeStatus {
                    id: node.id,
                    address: node.address.to_string(),
                    shards: cluster.shards_per_node,
                    shards_answered: 0,
                    draining: cluster.draining.contains(&node.id),
                    replicas: 0,
                    leaders: 0,
                    item_bytes: 0,
                };
                for ((id, _), replicas) in &reported {
                    if *id != node.id {
                        continue;
                    }
                    status.shards_answered += 1;
                    for replica in replicas.values() {
                        status.replicas += 1;
                        status.item_bytes += replica.item_bytes;
                        if leads(replica) {
                            status.leaders += 1;
                        }
                    }
                }
                status
            })
            .collect();

        let partition_status = |table: &str,
                                index: Option<String>,
                                partition: u64,
                                shard: u16,
                                replicas: &[NodeId]| {
            let hosted = |node: &NodeId| {
                reported
                    .get(&(*node, shard))
                    .and_then(|replicas| replicas.get(&partition))
            };
            PartitionStatus {
                table: table.to_string(),
                index,
                partition,
                shard,
                replicas: replicas.to_vec(),
                healthy: replicas
                    .iter()
                    .copied()
                    .filter(|node| hosted(node).is_some())
                    .collect(),
                leader: replicas
                    .iter()
                    .copied()
                    .find(|node| hosted(node).is_some_and(|replica| leads(replica))),
            }
        };
        let mut partitions = vec![partition_status(
            METADATA_TABLE,
            None,
            METADATA_PARTITION,
            METADATA_SHARD,
            &cluster.metadata_replicas,
        )];
        let mut summaries = Vec::with_capacity(tables.len());
        let mut listed: BTreeSet<(u64, NodeId)> = cluster
            .metadata_replicas
            .iter()
            .copied()
            .chain(cluster.metadata_move.map(|record| record.target))
            .map(|node| (METADATA_PARTITION, node))
            .collect();
        let mut moves: Vec<MoveStatus> = cluster
            .metadata_move
            .iter()
            .map(|record| MoveStatus {
                table: METADATA_TABLE.to_string(),
                partition: METADATA_PARTITION,
                source: record.source,
                target: record.target,
                target_routed: record.target_routed,
            })
            .collect();
        let mut splits: Vec<SplitStatus> = Vec::new();
        for table in tables {
            let first = partitions.len();
            splits.extend(table.partition_splits.iter().map(|(parent, record)| {
                SplitStatus {
                    table: table.name.clone(),
                    // The parent is listed until routed, the children after.
                    index: table
                        .global_indexes
                        .iter()
                        .find(|index| {
                            index.partitions.iter().any(|entry| {
                                [*parent, record.left, record.right].contains(&entry.id)
                            })
                        })
                        .map(|index| index.index.name.clone()),
                    parent: *parent,
                    left: record.left,
                    right: record.right,
                    at_hash: record.at_hash,
                    routed: record.routed,
                }
            }));
            let indexed = table.partitions.iter().map(|entry| (None, entry)).chain(
                table.global_indexes.iter().flat_map(|index| {
                    index
                        .partitions
                        .iter()
                        .map(|entry| (Some(index.index.name.clone()), entry))
                }),
            );
            listed.extend(table.listed_replicas());
            moves.extend(
                table
                    .replica_moves
                    .iter()
                    .map(|(partition, record)| MoveStatus {
                        table: table.name.clone(),
                        partition: *partition,
                        source: record.source,
                        target: record.target,
                        target_routed: record.target_routed,
                    }),
            );
            for (index, entry) in indexed {
                // A pending replica (not created yet) is listed in the map but not routed to:
                // it is missing all the same.
                partitions.push(partition_status(
                    &table.name,
                    index,
                    entry.id,
                    entry.shard,
                    &entry.replicas,
                ));
            }
            let own = &partitions[first..];
            summaries.push(TableSummary {
                name: table.name.clone(),
                status: table.status.name(),
                partitions: own.len(),
                under_replicated: own
                    .iter()
                    .filter(|partition| partition.under_replicated())
                    .count(),
                pending_replicas: table.pending_replicas.len(),
            });
        }
        let stray_replicas = reported
            .iter()
            .flat_map(|((node, shard), replicas)| {
                replicas
                    .keys()
                    .filter(|partition| !listed.contains(&(**partition, *node)))
                    .map(|partition| StrayReplica {
                        node: *node,
                        shard: *shard,
                        partition: *partition,
                    })
            })
            .collect();
        ClusterStatus {
            autoadmin_paused,
            moves,
            splits,
            nodes,
            tables: summaries,
            partitions,
            stray_replicas,
        }
    }

    pub fn under_replicated(&self) -> impl Iterator<Item = &PartitionStatus> {
        self.partitions
            .iter()
            .filter(|partition| partition.under_replicated())
    }

    pub fn to_json(&self) -> Json {
        let partition_json = |partition: &PartitionStatus| {
            json!({
                "table": partition.table,
                "index": partition.index,
                "partition": partition.partition,
                "shard": partition.shard,
                "replicas": partition.replicas,
                "healthy": partition.healthy,
                "leader": partition.leader,
                "majority": partition.has_majority(),
            })
        };
        json!({
            "autoadmin": if self.autoadmin_paused { "paused" } else { "running" },
            "moves": self.moves.iter().map(|moving| json!({
                "table": moving.table,
                "partition": moving.partition,
                "source": moving.source,
                "target": moving.target,
                "target_routed": moving.target_routed,
            })).collect::<Vec<_>>(),
            "splits": self.splits.iter().map(|split| json!({
                "table": split.table,
                "index": split.index,
                "partition": split.parent,
                "left": split.left,
                "right": split.right,
                "at_hash": split.at_hash,
                "routed": split.routed,
            })).collect::<Vec<_>>(),
            "nodes": self.nodes.iter().map(|node| json!({
                "id": node.id,
                "address": node.address,
                "shards": node.shards,
                "shards_answered": node.shards_answered,
                "draining": node.draining,
                "replicas": node.replicas,
                "leaders": node.leaders,
                "item_bytes": node.item_bytes,
            })).collect::<Vec<_>>(),
            "tables": self.tables.iter().map(|table| json!({
                "name": table.name,
                "status": table.status,
                "partitions": table.partitions,
                "under_replicated": table.under_replicated,
                "pending_replicas": table.pending_replicas,
            })).collect::<Vec<_>>(),
            "partitions": self.partitions.iter().map(partition_json).collect::<Vec<_>>(),
            "under_replicated": self.under_replicated().map(partition_json).collect::<Vec<_>>(),
            "stray_replicas": self.stray_replicas.iter().map(|replica| json!({
                "node": replica.node,
                "shard": replica.shard,
                "partition": replica.partition,
            })).collect::<Vec<_>>(),
        })
    }

    /// The readable report: nodes, tables, then what needs attention.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<6} {:<22} {:>7} {:>9} {:>8} {:>12}\n",
            "NODE", "ADDRESS", "SHARDS", "REPLICAS", "LEADERS", "ITEM BYTES"
        ));
        for node in &self.nodes {
            let unreachable = match (node.shards_answered == 0, node.draining) {
                (true, true) => "  unreachable, draining",
                (true, false) => "  unreachable",
                (false, true) => "  draining",
                (false, false) => "",
            };
            out.push_str(&format!(
                "{:<6} {:<22} {:>7} {:>9} {:>8} {:>12}{unreachable}\n",
                node.id,
                node.address,
                format!("{}/{}", node.shards_answered, node.shards),
                node.replicas,
                node.leaders,
                node.item_bytes
            ));
        }
        out.push('\n');
        out.push_str(&format!(
            "{:<32} {:<9} {:>10} {:>17} {:>8}\n",
            "TABLE", "STATUS", "PARTITIONS", "UNDER-REPLICATED", "PENDING"
        ));
        for table in &self.tables {
            out.push_str(&format!(
                "{:<32} {:<9} {:>10} {:>17} {:>8}\n",
                table.name,
                table.status,
                table.partitions,
                table.under_replicated,
                table.pending_replicas
            ));
        }
        let under: Vec<&PartitionStatus> = self.under_replicated().collect();
        out.push('\n');
        if under.is_empty() {
            out.push_str("Every partition has all its replicas.\n");
        } else {
            out.push_str(&format!(
                "{} under-replicated partition(s):\n{:<32} {:>10} {:<14} {:<14} {}\n",
                under.len(),
                "TABLE",
                "PARTITION",
                "REPLICAS",
                "HEALTHY",
                "LEADER"
            ));
            for partition in under {
                let table = match &partition.index {
                    Some(index) => format!("{} / {index}", partition.table),
                    None => partition.table.clone(),
                };
                let list = |nodes: &[NodeId]| {
                    nodes
                        .iter()
                        .map(|node| node.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let leader = match partition.leader {
                    Some(node) => node.to_string(),
                    None if partition.has_majority() => "none yet".to_string(),
                    None => "none (no majority)".to_string(),
                };
                out.push_str(&format!(
                    "{:<32} {:>10} {:<14} {:<14} {leader}\n",
                    table,
                    partition.partition,
                    list(&partition.replicas),
                    list(&partition.healthy)
                ));
            }
        }
        out.push_str(if self.autoadmin_paused {
            "\nAutoadmin: PAUSED (shoal admin resume restarts it).\n"
        } else {
            "\nAutoadmin: running.\n"
        });
        if !self.moves.is_empty() {
            out.push_str(&format!(
                "{} replica move(s) under way:\n",
                self.moves.len()
            ));
            for moving in &self.moves {
                let source = if moving.source == shoal_autoadmin::replica_move::NO_SOURCE {
                    "a new replica".to_string()
                } else {
                    format!("node {}", moving.source)
                };
                out.push_str(&format!(
                    "  {} partition {}: {} -> node {}{}\n",
                    moving.table,
                    moving.partition,
                    source,
                    moving.target,
                    if moving.target_routed {
                        " (target serving)"
                    } else {
                        ""
                    }
                ));
            }
        }
        if !self.splits.is_empty() {
            out.push_str(&format!(
                "{} partition split(s) under way:\n",
                self.splits.len()
            ));
            for split in &self.splits {
                out.push_str(&format!(
                    "  {}{} partition {} -> {} and {} at hash {:#018x}{}\n",
                    split.table,
                    split
                        .index
                        .as_ref()
                        .map(|index| format!(" index {index}"))
                        .unwrap_or_default(),
                    split.parent,
                    split.left,
                    split.right,
                    split.at_hash,
                    if split.routed {
                        " (children serving, parent being deleted)"
                    } else {
                        ""
                    }
                ));
            }
        }
        if !self.stray_replicas.is_empty() {
            out.push_str(&format!(
                "{} replica(s) of no table (the repair pass deletes them):\n",
                self.stray_replicas.len()
            ));
            for replica in &self.stray_replicas {
                out.push_str(&format!(
                    "  node {} shard {} partition {}\n",
                    replica.node, replica.shard, replica.partition
                ));
            }
        }
        out
    }
}

fn leads(replica: &ReplicaStatus) -> bool {
    matches!(
        replica.role,
        ReplicaRole::Leader | ReplicaRole::LeaderWithLease
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Billing, NodeAddress, TableStatus};
    use crate::partition_map::{HashRange, PartitionEntry};
    use shoal_model::key::{KeySchema, KeyType};

    fn cluster() -> ClusterRecord {
        ClusterRecord {
            nodes: (1..=3)
                .map(|id| NodeAddress {
                    id,
                    address: format!("127.0.0.1:{}", 9000 + id).parse().unwrap(),
                })
                .collect(),
            draining: Default::default(),
            shards_per_node: 1,
            created_at_seconds: 0,
            highest_node_id: 3,
            revision: 0,
            metadata_replicas: vec![1, 2, 3],
            metadata_replicas_recorded: true,
            metadata_move: None,
        }
    }

    fn table() -> TableRecord {
        let entry = |id: u64, first: u64, last: u64, replicas: Vec<NodeId>| PartitionEntry {
            id,
            range: HashRange { first, last },
            replicas,
            shard: 0,
            epoch: 1,
            leader_hint: None,
        };
        TableRecord {
            name: "orders".to_string(),
            key_schema: KeySchema::partition_only("pk", KeyType::String),
            attribute_definitions: vec![("pk".to_string(), KeyType::String)],
            billing: Billing::PayPerRequest,
            on_demand: Default::default(),
            status: TableStatus::Active,
            created_at_seconds: 0,
            item_count: 0,
            size_bytes: 0,
            partitions: vec![
                entry(5, 0, u64::MAX / 2, vec![1, 2, 3]),
                entry(6, u64::MAX / 2 + 1, u64::MAX, vec![2, 3, 1]),
            ],
            tags: BTreeMap::new(),
            throughput_history: Default::default(),
            pay_per_request_since_ms: None,
            revision: 0,
            pending_replicas: Default::default(),
            replica_moves: Default::default(),
            partition_splits: Default::default(),
            incarnation_id: None,
            changed_at_ms: 0,
            settings: Default::default(),
            time_to_live: Default::default(),
            local_indexes: Vec::new(),
            global_indexes: Vec::new(),
            global_index_numbers_used: 0,
            streams: Vec::new(),
        }
    }

    fn replica(partition: u64, role: ReplicaRole) -> ReplicaStatus {
        ReplicaStatus {
            partition,
            epoch: 1,
            role,
            leader_hint: None,
            commit_slot: 9,
            applied_slot: 9,
            item_count: 1,
            item_bytes: 100,
            local_indexes: Vec::new(),
        }
    }

    fn report(node: NodeId, replicas: Option<Vec<ReplicaStatus>>) -> ShardReport {
        ShardReport {
            node,
            shard: 0,
            replicas,
        }
    }

    #[test]
    fn a_node_that_does_not_answer_leaves_its_partitions_under_replicated() {
        let reports = [
            report(
                1,
                Some(vec![
                    replica(0, ReplicaRole::LeaderWithLease),
                    replica(5, ReplicaRole::Leader),
                    replica(6, ReplicaRole::Follower),
                    // Listed by no table.
                    replica(44, ReplicaRole::Follower),
                ]),
            ),
            report(
                2,
                Some(vec![
                    replica(0, ReplicaRole::Follower),
                    replica(5, ReplicaRole::Follower),
                    replica(6, ReplicaRole::Leader),
                ]),
            ),
            report(3, None),
        ];
        let status = ClusterStatus::compute(&cluster(), &[table()], &reports, false);
        assert_eq!(status.nodes[0].replicas, 4);
        assert_eq!(status.nodes[0].leaders, 2);
        assert_eq!(status.nodes[0].item_bytes, 400);
        assert_eq!(status.nodes[2].shards_answered, 0);
        let under: Vec<u64> = status.under_replicated().map(|p| p.partition).collect();
        assert_eq!(under, vec![0, 5, 6]);
        let six = &status.partitions[2];
        assert_eq!(six.healthy, vec![2, 1]);
        assert_eq!(six.leader, Some(2));
        assert!(six.has_majority());
        assert_eq!(status.tables[0].partitions, 2);
        assert_eq!(status.tables[0].under_replicated, 2);
        assert_eq!(
            status.stray_replicas,
            vec![StrayReplica {
                node: 1,
                shard: 0,
                partition: 44
            }]
        );
        let text = status.render();
        assert!(text.contains("unreachable"), "{text}");
        assert!(text.contains("3 under-replicated partition(s)"), "{text}");
        assert!(text.contains("1 replica(s) of no table"), "{text}");
        assert!(!text.contains("split"), "{text}");
        let json = status.to_json();
        assert_eq!(json["under_replicated"].as_array().unwrap().len(), 3);
        assert_eq!(json["nodes"][2]["shards_answered"], 0);
    }

    #[test]
    fn a_replica_on_another_shard_than_the_map_says_is_not_healthy() {
        let mut moved = report(
            1,
            Some(vec![
                replica(0, ReplicaRole::Leader),
                replica(5, ReplicaRole::Leader),
            ]),
        );
        moved.shard = 0;
        let elsewhere = ShardReport {
            node: 2,
            shard: 1,
            replicas: Some(vec![replica(5, ReplicaRole::Follower)]),
        };
        let mut two_shards = cluster();
        two_shards.shards_per_node = 2;
        let status = ClusterStatus::compute(&two_shards, &[table()], &[moved, elsewhere], false);
        let five = status
            .partitions
            .iter()
            .find(|partition| partition.partition == 5)
            .unwrap();
        assert_eq!(five.healthy, vec![1]);
        assert_eq!(five.leader, Some(1));
        assert!(!five.has_majority());
        // Node 2's shard 1 holds a replica of partition 5, which the map places on shard 0: not
        // healthy, and not of no table either (its partition is listed).
        assert!(status.stray_replicas.is_empty());
    }

    #[test]
    fn a_split_under_way_is_shown_with_its_children_and_cut() {
        let mut splitting = table();
        let parent = splitting.partitions[1].clone();
        splitting.partition_splits.insert(
            parent.id,
            crate::metadata::PartitionSplitRecord {
                id: 77,
                parent_epoch: parent.epoch,
                range: parent.range,
                shard: parent.shard,
                replicas: parent.replicas.clone(),
                at_hash: 0xc000_0000_0000_0000,
                left: 9,
                right: 10,
                epoch: parent.epoch + 1,
                routed: false,
            },
        );
        let status = ClusterStatus::compute(&cluster(), &[splitting], &[], false);
        assert_eq!(
            status.splits,
            vec![SplitStatus {
                table: "orders".to_string(),
                index: None,
                parent: 6,
                left: 9,
                right: 10,
                at_hash: 0xc000_0000_0000_0000,
                routed: false,
            }]
        );
        let text = status.render();
        assert!(
            text.contains("1 partition split(s) under way:\n  orders partition 6 -> 9 and 10 at hash 0xc000000000000000\n"),
            "{text}"
        );
        let json = status.to_json();
        assert_eq!(json["splits"][0]["partition"], 6);
        assert_eq!(json["splits"][0]["routed"], false);
        assert_eq!(json["splits"][0]["index"], Json::Null);
    }

    /// A split of a global secondary index's partition names the index, before its children
    /// are routed (the parent is listed) and after (the children are).
    #[test]
    fn a_split_of_an_index_partition_names_the_index() {
        let mut indexed = table();
        let parent = PartitionEntry {
            id: 20,
            range: HashRange::ALL,
            replicas: vec![1, 2, 3],
            shard: 0,
            epoch: 1,
            leader_hint: None,
        };
        indexed
            .global_indexes
            .push(crate::metadata::GlobalIndexRecord {
                index: shoal_model::index::global::GlobalIndex {
                    name: "by_customer".to_string(),
                    number: 0,
                    partition_keys: vec![shoal_model::key::KeyAttribute {
                        name: "customer".to_string(),
                        key_type: KeyType::String,
                    }],
                    sort_keys: Vec::new(),
                    projection: shoal_model::index::Projection::KeysOnly,
                },
                partitions: vec![parent.clone()],
                throughput: None,
                on_demand: Default::default(),
                status: crate::metadata::GlobalIndexStatus::Active,
                backfilled: BTreeSet::new(),
                added_at_ms: 0,
            });
        let record = crate::metadata::PartitionSplitRecord {
            id: 78,
            parent_epoch: 1,
            range: HashRange::ALL,
            shard: 0,
            replicas: parent.replicas.clone(),
            at_hash: 1 << 63,
            left: 21,
            right: 22,
            epoch: 2,
            routed: false,
        };
        indexed.partition_splits.insert(20, record.clone());
        let status = ClusterStatus::compute(&cluster(), &[indexed.clone()], &[], false);
        assert_eq!(status.splits[0].index.as_deref(), Some("by_customer"));
        assert!(
            status
                .render()
                .contains("orders index by_customer partition 20 -> 21 and 22"),
            "{}",
            status.render()
        );
        assert_eq!(status.to_json()["splits"][0]["index"], "by_customer");
        // Routed: the index lists the children, not the parent.
        indexed.global_indexes[0].partitions = record.children().to_vec();
        indexed.partition_splits.insert(
            20,
            crate::metadata::PartitionSplitRecord {
                routed: true,
                ..record
            },
        );
        let status = ClusterStatus::compute(&cluster(), &[indexed], &[], false);
        assert_eq!(status.splits[0].index.as_deref(), Some("by_customer"));
    }
}
