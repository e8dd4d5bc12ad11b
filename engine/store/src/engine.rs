//! The engine API of one partition replica: apply committed mutation batches at their LSN,
//! read, scan, checkpoint, recover from the B-tree checkpoint plus the shard's WAL, report
//! stats, and stream a snapshot.
//!
//! A [`Partition`] lives on its shard's core, next to the shard's [`Wal`] and [`PageCache`].
//! The replication layer appends a batch to the WAL (the record body is
//! [`MutationBatch::encode`]), and once the batch is committed calls [`Partition::apply`] with
//! the record's LSN.
//!
//! # Recovery
//! 1. Open every partition's B-tree: each comes back at its last checkpoint, LSN `C(p)`.
//! 2. Open the WAL with a [`ReplayCollector`]: it keeps the records of those partitions with
//!    LSN above `C(p)` (memory is bounded by the un-checkpointed tail of the log).
//! 3. Apply the kept records in LSN order, then report every partition's checkpoint LSN to the
//!    WAL ([`Wal::checkpointed`]) so that segments can be recycled again.
//!
//! # Snapshots
//! [`Partition::snapshot_chunk`] streams items in key order, a chunk at a time, from the
//! current state. A snapshot started at LSN `L` may see changes after `L`; a replica rebuilt
//! from it replays the WAL records after `L` on top, which converges because every mutation
//! writes or deletes a whole item (replaying one is idempotent).
//!
//! # Invariants
//! 1. `apply` takes LSNs in increasing order; a batch at or below the applied LSN is a replay
//!    of something the tree already holds and is skipped.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use shoal_io::{Storage, StorageDirectory};

use crate::btree::{
    BTree, BTreeConfig, BTreeError, BTreeStats, Direction, Item, PageCache, TreeId,
};
use crate::wal::{Lsn, PartitionId, RecordKind, RecoveredRecord, Wal};

/// The WAL record kind that carries a [`MutationBatch`].
pub const MUTATION_BATCH_KIND: RecordKind = match RecordKind::new(1) {
    Some(kind) => kind,
    None => panic!("record kind 1 is valid"),
};

/// Bounds a batch so that its record fits the WAL's record limit with room to spare.
pub const BATCH_MUTATIONS_MAX: usize = 4096;

const MUTATION_TAG_PUT: u8 = 1;
const MUTATION_TAG_DELETE: u8 = 2;
const MUTATION_TAG_EXPIRE: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// A delete made by Time to Live, not by a client: applied exactly as [`Mutation::Delete`];
    /// its own tag is kept in the committed log so that a reader of the log (a stream) can tell
    /// the service's deletes from the clients'.
    Expire {
        key: Vec<u8>,
    },
}

impl Mutation {
    /// The storage key the mutation changes.
    pub fn key(&self) -> &[u8] {
        match self {
            Mutation::Put { key, .. } | Mutation::Delete { key } | Mutation::Expire { key } => key,
        }
    }
}

/// Mutations applied atomically at one LSN.
///
/// Encoding (little-endian; engine/store FORMAT.md, "Mutation batch"): mutation count u32, then
/// per mutation: tag u8 (1 put, 2 delete, 3 delete by Time to Live), key length u16, value
/// length u32 (0 for both deletes), key bytes, value bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MutationBatch {
    pub mutations: Vec<Mutation>,
}

#[derive(Debug)]
pub enum EngineError {
    BTree(BTreeError),
    /// A WAL record of the mutation kind that does not decode.
    MalformedBatch {
        lsn: Lsn,
        partition: PartitionId,
    },
    TooManyMutations {
        count: usize,
    },
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::BTree(error) => write!(formatter, "{error}"),
            EngineError::MalformedBatch { lsn, partition } => write!(
                formatter,
                "WAL record at LSN {lsn} of partition {} is not a mutation batch",
                partition.0
            ),
            EngineError::TooManyMutations { count } => {
                write!(
                    formatter,
                    "batch of {count} mutations exceeds {BATCH_MUTATIONS_MAX}"
                )
            }
        }
    }
}

impl std::error::Error for EngineError {}

impl From<BTreeError> for EngineError {
    fn from(error: BTreeError) -> Self {
        EngineError::BTree(error)
    }
}

impl MutationBatch {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = (self.mutations.len() as u32).to_le_bytes().to_vec();
        for mutation in &self.mutations {
            let (tag, key, value): (u8, &[u8], &[u8]) = match mutation {
                Mutation::Put { key, value } => (MUTATION_TAG_PUT, key, value),
                Mutation::Delete { key } => (MUTATION_TAG_DELETE, key, &[]),
                Mutation::Expire { key } => (MUTATION_TAG_EXPIRE, key, &[]),
            };
            bytes.push(tag);
            bytes.extend_from_slice(&(key.len() as u16).to_le_bytes());
            bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
            bytes.extend_from_slice(key);
            bytes.extend_from_slice(value);
        }
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut position: usize = 0;
        let mut take = |len: usize| -> Option<&[u8]> {
            let slice = bytes.get(position..position.checked_add(len)?)?;
            position += len;
            Some(slice)
        };
        let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        if count > BATCH_MUTATIONS_MAX {
            return None;
        }
        let mut mutations = Vec::with_capacity(count);
        for _ in 0..count {
            let tag = take(1)?[0];
            let key_bytes = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
            let value_bytes = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let key = take(key_bytes)?.to_vec();
            let value = take(value_bytes)?.to_vec();
            mutations.push(match (tag, value_bytes) {
                (MUTATION_TAG_PUT, _) => Mutation::Put { key, value },
                (MUTATION_TAG_DELETE, 0) => Mutation::Delete { key },
                (MUTATION_TAG_EXPIRE, 0) => Mutation::Expire { key },
                _ => return None,
            });
        }
        (position == bytes.len()).then_some(Self { mutations })
    }
}

/// Statistics of a partition replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStats {
    pub partition: PartitionId,
    pub item_count: u64,
    /// Key plus value bytes of all items.
    pub item_bytes: u64,
    pub lsn_applied: Lsn,
    pub lsn_checkpointed: Lsn,
    pub tree: BTreeStats,
}

/// One partition replica's state on its shard.
#[derive(Debug)]
pub struct Partition<F: Storage> {
    partition: PartitionId,
    tree: BTree<F>,
    lsn_applied: Lsn,
}

/// The B-tree file name of a partition.
pub fn partition_file_name(partition: PartitionId) -> String {
    format!("partition-{:016x}.btree", partition.0)
}

impl<F: Storage> Partition<F> {
    /// Opens the partition's B-tree at its last checkpoint (recovery step 1).
    pub async fn open<D: StorageDirectory<File = F>>(
        directory: &D,
        partition: PartitionId,
        cache: Rc<PageCache<F>>,
        config: BTreeConfig,
    ) -> Result<Self, EngineError> {
        Self::open_named(
            directory,
            &partition_file_name(partition),
            partition.0,
            partition,
            cache,
            config,
        )
        .await
    }

    /// Opens (or creates) the partition's B-tree in `file_name`: for callers that keep more
    /// than one generation of a partition's tree, such as a replica installing a snapshot next
    /// to the tree it replaces. `tree` names the tree in the shared page cache and must be
    /// unique among the trees open on the shard.
    pub async fn open_named<D: StorageDirectory<File = F>>(
        directory: &D,
        file_name: &str,
        tree: TreeId,
        partition: PartitionId,
        cache: Rc<PageCache<F>>,
        config: BTreeConfig,
    ) -> Result<Self, EngineError> {
        let tree = BTree::open_in(directory, file_name, tree, cache, config).await?;
        let lsn_applied = Lsn(tree.stats().lsn_durable);
        Ok(Self {
            partition,
            tree,
            lsn_applied,
        })
    }

    pub fn id(&self) -> PartitionId {
        self.partition
    }

    /// Applies a committed batch at `lsn` (invariant 1).
    pub async fn apply(&mut self, lsn: Lsn, batch: &MutationBatch) -> Result<(), EngineError> {
        if batch.mutations.len() > BATCH_MUTATIONS_MAX {
            return Err(EngineError::TooManyMutations {
                count: batch.mutations.len(),
            });
        }
        if lsn <= self.lsn_applied {
            return Ok(());
        }
        // A batch is one unit: reject it before touching the tree if any put is out of bounds,
        // so a rejected batch changes nothing. (An I/O error part way through is different: the
        // tree's in-memory state is then unknown and the caller must recover the partition from
        // its checkpoint and the WAL.)
        for mutation in &batch.mutations {
            if let Mutation::Put { key, value } = mutation {
                self.tree.check_put(key, value)?;
            }
        }
        for mutation in &batch.mutations {
            match mutation {
                Mutation::Put { key, value } => self.tree.put(key, value, lsn.0).await?,
                Mutation::Delete { key } | Mutation::Expire { key } => {
                    self.tree.delete(key, lsn.0).await?;
                }
            }
        }
        self.tree.note_applied(lsn.0);
        self.lsn_applied = lsn;
        Ok(())
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.tree.get(key).await?)
    }

    pub async fn scan(
        &self,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Item>, EngineError> {
        Ok(self.tree.scan(lower, upper, direction, limit).await?)
    }

    /// Makes the partition durable up to its applied LSN and lets the WAL recycle what that
    /// covers. Returns the LSN.
    pub async fn checkpoint(&mut self, wal: &Wal<F>) -> Result<Lsn, EngineError> {
        let lsn = Lsn(self.tree.checkpoint().await?);
        wal.checkpointed(self.partition, lsn);
        Ok(lsn)
    }

    /// Makes the tree durable up to its applied LSN without telling a WAL: for callers whose
    /// LSNs are not the WAL's (a replicated partition applies at log slots and computes the WAL
    /// position it still needs itself). Returns the LSN the checkpoint covers.
    pub async fn checkpoint_tree(&mut self) -> Result<Lsn, EngineError> {
        Ok(Lsn(self.tree.checkpoint().await?))
    }

    pub fn stats(&self) -> PartitionStats {
        let tree = self.tree.stats();
        PartitionStats {
            partition: self.partition,
            item_count: tree.item_count,
            item_bytes: tree.item_bytes,
            lsn_applied: self.lsn_applied,
            lsn_checkpointed: Lsn(tree.lsn_durable),
            tree,
        }
    }

    /// Up to `limit` items after `after` (exclusive; `None` from the start), in key order: one
    /// chunk of a streaming snapshot. The last key of a chunk is the next call's `after`.
    pub async fn snapshot_chunk(
        &self,
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<Item>, EngineError> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .tree
            .scan(lower, Bound::Unbounded, Direction::Forward, limit)
            .await?)
    }

    /// Installs one chunk of a snapshot taken from another replica starting at `snapshot_lsn`.
    /// Afterwards the partition counts as applied up to `snapshot_lsn`; the WAL records after it
    /// are replayed on top (see "Snapshots" in the module docs).
    pub async fn install_snapshot_chunk(
        &mut self,
        snapshot_lsn: Lsn,
        items: &[Item],
    ) -> Result<(), EngineError> {
        for (key, value) in items {
            self.tree.put(key, value, snapshot_lsn.0).await?;
        }
        self.lsn_applied = self.lsn_applied.max(snapshot_lsn);
        Ok(())
    }

    pub async fn close(self) -> Result<(), EngineError> {
        Ok(self.tree.close().await?)
    }
}

/// Recovery step 2: the WAL visitor that keeps the records the opened partitions still need.
#[derive(Debug, Default)]
pub struct ReplayCollector {
    checkpoints: BTreeMap<PartitionId, Lsn>,
    records: Vec<(Lsn, PartitionId, Vec<u8>)>,
}

impl ReplayCollector {
    pub fn new<'partitions, F: Storage + 'partitions>(
        partitions: impl IntoIterator<Item = &'partitions Partition<F>>,
    ) -> Self {
        Self {
            checkpoints: partitions
                .into_iter()
                .map(|partition| (partition.partition, partition.lsn_applied))
                .collect(),
            records: Vec::new(),
        }
    }

    /// Pass to [`Wal::open`] as the visitor.
    pub fn visit(&mut self, record: RecoveredRecord<'_>) {
        if record.kind != MUTATION_BATCH_KIND {
            return;
        }
        if let Some(checkpoint) = self.checkpoints.get(&record.partition)
            && record.lsn > *checkpoint
        {
            self.records
                .push((record.lsn, record.partition, record.body.to_vec()));
        }
    }

    /// Recovery step 3: applies the kept records and reports the checkpoints to the WAL.
    pub async fn replay<F: Storage>(
        self,
        partitions: &mut [Partition<F>],
        wal: &Wal<F>,
    ) -> Result<u64, EngineError> {
        let mut replayed = 0;
        for (lsn, partition_id, body) in self.records {
            let batch = MutationBatch::decode(&body).ok_or(EngineError::MalformedBatch {
                lsn,
                partition: partition_id,
            })?;
            if let Some(partition) = partitions
                .iter_mut()
                .find(|partition| partition.partition == partition_id)
            {
                partition.apply(lsn, &batch).await?;
                replayed += 1;
            }
        }
        for partition in partitions.iter() {
            wal.checkpointed(partition.partition, partition.stats().lsn_checkpointed);
        }
        Ok(replayed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_reject_garbage() {
        let batch = MutationBatch {
            mutations: vec![
                Mutation::Put {
                    key: b"k1".to_vec(),
                    value: b"v1".to_vec(),
                },
                Mutation::Delete {
                    key: b"k2".to_vec(),
                },
                Mutation::Expire {
                    key: b"k3".to_vec(),
                },
            ],
        };
        let bytes = batch.encode();
        assert_eq!(MutationBatch::decode(&bytes), Some(batch));
        // The bytes FORMAT.md documents: count, then tag, key length, value length, key, value.
        let expire_at = bytes.len() - (1 + 2 + 4 + 2);
        assert_eq!(
            bytes[expire_at..],
            [3, 2, 0, 0, 0, 0, 0, b'k', b'3'],
            "an expiry is tag 3 with an empty value"
        );
        assert_eq!(bytes[..4], 3u32.to_le_bytes());
        let mut with_value = bytes.clone();
        with_value[expire_at + 3] = 1;
        with_value.push(0);
        assert_eq!(
            MutationBatch::decode(&with_value),
            None,
            "an expiry carries no value"
        );
        assert_eq!(MutationBatch::decode(&bytes[..bytes.len() - 1]), None);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(MutationBatch::decode(&trailing), None);
        let mut bad_tag = bytes;
        bad_tag[4] = 9;
        assert_eq!(MutationBatch::decode(&bad_tag), None);
    }
}
