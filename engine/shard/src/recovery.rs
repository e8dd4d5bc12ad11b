//! A shard's start-up recovery of its replicas, generic over storage and clock: the glommio
//! host (`runtime.rs`) and the simulator (tools/sim) both run it, once the shard's WAL is open
//! (and its committer able to run: recovery may write).
//!
//! Rules, in order:
//! 1. WAL records that passed their checksum but do not decode stop the shard: they were
//!    written by a buggy or different build, and guessing what they held could lose acknowledged
//!    writes.
//! 2. Tree files of partitions without a meta file are removed (a deletion that crashed part
//!    way), and their WAL records are released (`Wal::forget_partition`): no replica is left to
//!    release them, and held, they would stop the WAL once its ring came round to them.
//! 3. Every partition with a meta file is recovered from its newest tree and its WAL records.
//!    A partition marked unrecoverable at an earlier start (its WAL records were released since)
//!    and a replica whose durable state contradicts itself (`PartitionError::Corrupt`) are kept
//!    out of service with their files, and the other partitions are recovered: one lost replica
//!    is what its group tolerates. I/O and storage errors stop the shard: they are the node's.

use std::rc::Rc;

use shoal_io::{MonotonicTime, Storage, StorageDirectory};
use shoal_partition::meta::unrecoverable_marker_file_name;
use shoal_partition::replica::{list_partitions, remove_orphan_trees};
use shoal_partition::{
    PartitionError, PartitionMeta, PartitionReplica, ReplicaConfig, ShardReplay,
};
use shoal_replication::NodeId;
use shoal_store::btree::PageCache;
use shoal_store::wal::{PartitionId, Wal};

use crate::runtime::{RecoveryFailure, ShardError};

/// What recovery found on a shard's directory.
pub struct RecoveredShard<F: Storage, D: StorageDirectory<File = F>> {
    /// The replicas recovered, by partition id order.
    pub replicas: Vec<PartitionReplica<F, D>>,
    /// The partitions kept out of service, and why.
    pub failed: Vec<RecoveryFailure>,
    /// Tree files of deleted partitions removed (rule 2).
    pub orphan_trees_removed: usize,
}

/// What recovery needs besides the directory and the WAL.
pub struct RecoveryContext<'a, F: Storage> {
    pub node: NodeId,
    pub replica: &'a ReplicaConfig,
    pub cache: Rc<PageCache<F>>,
    /// The time of the host's clock.
    pub now: MonotonicTime,
}

/// Recovers every replica of the shard whose WAL `wal` is, with the records `replay` collected
/// while it opened. `election_seed` gives each partition's seed.
pub async fn recover_shard<F: Storage, D: StorageDirectory<File = F>>(
    directory: Rc<D>,
    wal: &Wal<F>,
    mut replay: ShardReplay,
    context: RecoveryContext<'_, F>,
    election_seed: impl Fn(u64) -> u64,
) -> Result<RecoveredShard<F, D>, ShardError> {
    if let Some((lsn, partition)) = replay.undecodable.first() {
        return Err(ShardError::UndecodableRecords {
            count: replay.undecodable.len(),
            first_lsn: lsn.0,
            first_partition: *partition,
        });
    }
    let orphan_trees_removed = remove_orphan_trees(directory.as_ref())
        .await
        .map_err(|error| ShardError::Partition(0, error))?;
    let partitions = list_partitions(directory.as_ref())
        .await
        .map_err(|error| ShardError::Partition(0, error))?;
    let names = directory.list().await.map_err(ShardError::Storage)?;
    let mut recovered = RecoveredShard {
        replicas: Vec::with_capacity(partitions.len()),
        failed: Vec::new(),
        orphan_trees_removed,
    };
    // Records of partitions with no replica here (deleted, moved away, or created and not
    // finished) are never read again: released, or their segments would never be reused once
    // the replica that wrote them is gone (the WAL holds a segment while any partition's
    // records in it are past that partition's checkpoint).
    for partition in &replay.seen {
        if partitions.binary_search(partition).is_err() {
            wal.forget_partition(PartitionId(*partition));
        }
    }
    for partition in partitions {
        let meta = PartitionMeta::read(directory.as_ref(), partition)
            .await
            .map_err(|error| ShardError::Meta(partition, error))?;
        let records = replay.partitions.remove(&partition).unwrap_or_default();
        if names.contains(&unrecoverable_marker_file_name(partition)) {
            // What is left of its records may miss any part of its log; they are never read
            // again.
            wal.forget_partition(PartitionId(partition));
            recovered.failed.push(RecoveryFailure {
                partition,
                epoch: meta.epoch,
                reason: "its replica refused to recover at an earlier start, and its WAL \
                         records were released since"
                    .to_string(),
                wal_records_released: true,
            });
            continue;
        }
        let epoch = meta.epoch;
        let replica = PartitionReplica::recover(
            meta,
            context.node,
            context.replica.clone(),
            election_seed(partition),
            directory.clone(),
            context.cache.clone(),
            wal.clone(),
            records,
            context.now,
        )
        .await;
        match replica {
            Ok(replica) => recovered.replicas.push(replica),
            Err(PartitionError::Corrupt(reason)) => recovered.failed.push(RecoveryFailure {
                partition,
                epoch,
                reason,
                wal_records_released: false,
            }),
            Err(error) => return Err(ShardError::Partition(partition, error)),
        }
    }
    Ok(recovered)
}
