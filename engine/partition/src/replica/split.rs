//! Splitting a partition at a hash (issue 19; the record and key placement are
//! `shoal_model::split`).
//!
//! 1. **One log entry.** `NodeRequest::SplitPartition` reaches the parent's leader, which
//!    proposes a batch holding only the split record (and the applied-chain requirement, like
//!    any batch). It is answered `Created` once that slot is applied with the split in effect;
//!    `NotApplied` if the slot went to another entry or the split was void. Asking again for
//!    the same split once it is applied answers `Created` at once (a control plane that lost
//!    the answer asks again).
//! 2. **Decided alike everywhere.** Applying the entry at slot S, every replica checks that its
//!    tree holds no key a split cannot divide (`shoal_model::split::blocking_ranges`); if one
//!    is there the entry is void on every replica, since every replica has the same tree at S.
//!    Otherwise it writes the record with the membership it applied at S.
//! 3. **Frozen after.** Every later entry of the parent's log applies as a no-op (its waiter is
//!    told `NotApplied`: certainly not applied, so the router sends it again, to a child once
//!    its map says so), and every request is refused with `StaleEpoch` naming the children's
//!    epoch. The leader refuses new writes with `Busy` while its split is in flight.
//! 4. **Children from the frozen tree.** Each host builds both children on its node from its
//!    replica's tree ([`PartitionReplica::create_split_child`]), in an order that a crash at
//!    any point leaves either a complete child or nothing that counts: the child's creation
//!    record, its tree (generation 0, the parent's keys of its side, checkpointed at S), a
//!    checkpoint intent for S with the membership at S, and last its meta file. A restart finds
//!    the parent still frozen and builds what is missing again; the leftover tree of an
//!    unfinished child is removed first. The children are then replicas like any other,
//!    recovered from exactly those files, so a child built now and one recovered after a crash
//!    are the same replica.

use super::*;
use shoal_model::split::{Placement, SplitChild, SplitRecord, blocking_ranges, placement};

/// The answer to a split whose entry applied as void: the partition held keys a split cannot
/// divide yet (shoal_model::split, `Placement::Blocking`).
pub const SPLIT_BLOCKED: &str = "the partition holds index changes not yet propagated, stream \
    records or prepared transactions, which a split cannot divide yet; ask again later";
/// The answer to a split of a partition already split another way.
pub const SPLIT_DIFFERS: &str = "the partition was already split differently";
/// What applying one log entry did about a split.
pub(super) enum SplitApplication {
    /// The entry holds no split.
    None,
    /// The split took effect at the entry's slot.
    Applied(SplitRecord),
    /// The entry held a split that is void: the tree held keys it cannot divide.
    Void,
}

/// The split a proposed batch holds, if it holds one.
pub(super) fn proposed_split_in(batch: &MutationBatch) -> Option<SplitRecord> {
    let key = shoal_model::split::split_key();
    batch.mutations.iter().find_map(|mutation| match mutation {
        Mutation::Put { key: put, value } if *put == key => SplitRecord::decode(value),
        _ => None,
    })
}

/// Whether `record` can split partition `parent` at `epoch`: two distinct new partitions, at a
/// later epoch, and a cut that leaves the left child some hashes. The router's record is
/// checked the same way (router/server metadata.rs); a node checks again, since a child id
/// reused or a side missing would lose that side's items for good.
pub fn split_is_valid(record: &SplitRecord, parent: u64, epoch: u64) -> Result<(), String> {
    let (left, right) = (record.left, record.right);
    if left.partition == right.partition || left.partition == parent || right.partition == parent {
        return Err(format!(
            "a split of partition {parent} needs two new partitions, not {} and {}",
            left.partition, right.partition
        ));
    }
    if left.epoch <= epoch || right.epoch <= epoch {
        return Err(format!(
            "a split of partition {parent} at epoch {epoch} needs later epochs for its children"
        ));
    }
    if record.at_hash == 0 {
        return Err("a split at hash 0 leaves its left child no hash".to_string());
    }
    Ok(())
}

/// Keys copied per scan while building a child.
const CHILD_COPY_BATCH_KEYS: usize = 256;

impl<F: Storage, D: StorageDirectory<File = F>> PartitionReplica<F, D> {
    /// The split this replica applied, with the membership its children start with; `None`
    /// before one is applied (or before the first event after the tree was opened).
    pub fn split(&self) -> Option<&SplitRecord> {
        self.split.as_ref().and_then(Option::as_ref)
    }

    /// The membership the children of the applied split start with.
    pub fn split_membership(&self) -> Result<Membership, PartitionError> {
        let applied = self
            .split()
            .and_then(|record| record.applied.as_ref())
            .ok_or_else(|| {
                PartitionError::Corrupt(format!(
                    "partition {}: no split is applied",
                    self.meta.partition
                ))
            })?;
        // Full replicas only: a log replica applies no entry, so it never applies the split
        // and never builds a child; listed, it would be a member that never exists.
        let membership = Membership::new(applied.full_replicas.iter().copied().map(NodeId), []);
        if membership.member_count() == 0 {
            return Err(PartitionError::Corrupt(format!(
                "partition {}: its split record names no member",
                self.meta.partition
            )));
        }
        Ok(membership)
    }

    /// Reads the split record and the range record once after the tree is opened or replaced.
    pub(super) async fn load_split(&mut self) -> Result<(), PartitionError> {
        if self.hash_range.is_none() {
            let stored = self.engine.get(&shoal_model::split::range_key()).await?;
            let range = match stored {
                None => None,
                Some(bytes) => Some(shoal_model::split::decode_range(&bytes).ok_or_else(|| {
                    PartitionError::Corrupt(format!(
                        "partition {}: the range record is damaged",
                        self.meta.partition
                    ))
                })?),
            };
            self.hash_range = Some(range);
        }
        if self.split.is_some() {
            return Ok(());
        }
        let stored = self.engine.get(&shoal_model::split::split_key()).await?;
        let record = match stored {
            None => None,
            Some(bytes) => Some(
                SplitRecord::decode(&bytes)
                    .filter(|record| record.applied.is_some())
                    .ok_or_else(|| {
                        PartitionError::Corrupt(format!(
                            "partition {}: the split record is damaged",
                            self.meta.partition
                        ))
                    })?,
            ),
        };
        self.split = Some(record);
        Ok(())
    }

    /// The refusal every request gets once the partition is split: the router's map is older
    /// than the split, and the children's epoch tells it so.
    pub(super) fn split_refusal(&self) -> Option<NodeResponse> {
        let record = self.split()?;
        Some(NodeResponse::Error(NodeError::StaleEpoch {
            partition: self.meta.partition,
            current_epoch: record.left.epoch.max(record.right.epoch),
        }))
    }

    /// The refusal of a request naming a key this split child does not own: the router routed
    /// it with a map older than the split (a batch grouped before it), and must route it again.
    pub(super) fn range_refusal(&self, request: &PreparedRequest) -> Option<NodeResponse> {
        let (first, last) = self.hash_range.flatten()?;
        let mut refused = false;
        shoal_model::split::for_each_key_hash(request, |hash| {
            refused |= hash < first || hash > last;
        });
        refused.then_some(NodeResponse::Error(NodeError::StaleEpoch {
            partition: self.meta.partition,
            current_epoch: self.meta.epoch,
        }))
    }

    /// Whether a request must wait: the leader proposed a split that is not applied yet, after
    /// which any write would be void.
    pub(super) fn split_in_flight(&self) -> bool {
        self.split_proposed
            .is_some_and(|slot| self.waiting.contains_key(&slot))
    }

    /// Whether the tree holds a key a split cannot divide.
    async fn split_blocked(&self) -> Result<bool, PartitionError> {
        for (lower, upper) in blocking_ranges() {
            let found = self
                .engine
                .scan(
                    Bound::Included(lower),
                    Bound::Excluded(upper),
                    Direction::Forward,
                    1,
                )
                .await?;
            if !found.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `NodeRequest::SplitPartition` at this replica (step 1 of the module docs).
    pub(super) async fn propose_split(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        epoch: u64,
        record: SplitRecord,
    ) -> Result<(), PartitionError> {
        if let Some(applied) = self.split() {
            let answer = if applied.same_split(&record) {
                NodeResponse::Created
            } else {
                NodeResponse::Error(NodeError::NotApplied {
                    message: format!("partition {}: {SPLIT_DIFFERS}", self.meta.partition),
                })
            };
            self.reply(reply_to, answer);
            return Ok(());
        }
        let (first, last) = self.hash_range.flatten().unwrap_or((0, u64::MAX));
        let cut_outside = record.at_hash <= first || record.at_hash > last;
        let valid = split_is_valid(&record, self.meta.partition, self.meta.epoch).and_then(|()| {
            if cut_outside {
                Err(format!(
                    "a split of partition {} must cut inside its hashes {first}..={last}, not at {}",
                    self.meta.partition, record.at_hash
                ))
            } else {
                Ok(())
            }
        });
        if let Err(problem) = valid {
            self.reply(
                reply_to,
                NodeResponse::Error(NodeError::Malformed { message: problem }),
            );
            return Ok(());
        }
        if let Some(refusal) = self.leader_request_refusal(epoch) {
            self.reply(reply_to, refusal);
            return Ok(());
        }
        // While a membership change is uncommitted the split waits: its children must start
        // with the membership every replica applied at its slot, and no change may follow
        // the split's proposal (`leader_request_refusal` refuses them meanwhile).
        if self.split_in_flight()
            || !self.core.leader_ready()
            || self.core.membership_change_in_progress()
        {
            self.reply(
                reply_to,
                NodeResponse::Error(NodeError::Busy {
                    partition: self.meta.partition,
                }),
            );
            return Ok(());
        }
        // Checked at apply too (step 2); refusing here saves a log entry that would be void.
        if self.split_blocked().await? {
            self.reply(
                reply_to,
                NodeResponse::Error(NodeError::NotApplied {
                    message: format!("partition {}: {SPLIT_BLOCKED}", self.meta.partition),
                }),
            );
            return Ok(());
        }
        let record = SplitRecord {
            applied: None,
            ..record
        };
        let batch = MutationBatch {
            mutations: vec![Mutation::Put {
                key: shoal_model::split::split_key(),
                value: record.encode(),
            }],
        };
        if let Some((slot, actions)) = self
            .propose_batch(now, reply_to, batch, NodeResponse::Created)
            .await?
        {
            self.split_proposed = Some(slot);
            self.execute(now, actions).await?;
        }
        Ok(())
    }

    /// Step 2 at apply: a split record in `batch` is made the applied record, with this slot
    /// and the membership at it, or the batch is emptied if the split is void.
    pub(super) async fn take_split(
        &mut self,
        slot: Slot,
        batch: &mut MutationBatch,
    ) -> Result<SplitApplication, PartitionError> {
        let split_key = shoal_model::split::split_key();
        let Some(position) = batch
            .mutations
            .iter()
            .position(|mutation| mutation.key() == split_key.as_slice())
        else {
            return Ok(SplitApplication::None);
        };
        let proposed = match &batch.mutations[position] {
            Mutation::Put { value, .. } => SplitRecord::decode(value),
            _ => None,
        };
        let Some(proposed) = proposed.filter(|record| record.applied.is_none()) else {
            return Err(PartitionError::Corrupt(format!(
                "partition {}: a committed split record is damaged",
                self.meta.partition
            )));
        };
        if self.split_blocked().await? {
            batch.mutations.clear();
            return Ok(SplitApplication::Void);
        }
        let applied = shoal_model::split::SplitApplied {
            slot: slot.0,
            full_replicas: self
                .applied_membership
                .full_replicas
                .iter()
                .map(|node| node.0)
                .collect(),
            log_replicas: self
                .applied_membership
                .log_replicas
                .iter()
                .map(|node| node.0)
                .collect(),
        };
        let applied = SplitRecord {
            applied: Some(applied),
            ..proposed
        };
        batch.mutations[position] = Mutation::Put {
            key: split_key,
            value: applied.encode(),
        };
        Ok(SplitApplication::Applied(applied))
    }

    /// The children of the applied split the host should build now: each not built here
    /// before. `hosted` says whether the shard hosts a partition now; a hosted child gets its
    /// marker if a crash came between its meta file and its marker, so that once it is
    /// deleted it is never built again (meta.rs, `split_child_marker_file_name`).
    pub async fn split_children_to_build(
        &self,
        hosted: impl Fn(u64) -> bool,
    ) -> Result<Vec<SplitChild>, PartitionError> {
        let Some(record) = self.split() else {
            return Ok(Vec::new());
        };
        let names = self.directory.list().await?;
        let mut to_build = Vec::new();
        for child in [record.left, record.right] {
            let marker =
                crate::meta::split_child_marker_file_name(self.meta.partition, child.partition);
            let marked = names.contains(&marker);
            if hosted(child.partition) {
                if !marked {
                    crate::meta::mark_split_child_built(
                        self.directory.as_ref(),
                        self.meta.partition,
                        child.partition,
                    )
                    .await?;
                }
            } else if !marked {
                to_build.push(child);
            }
        }
        Ok(to_build)
    }

    /// Builds this node's replica of `child` from this replica's frozen tree (step 4 of the
    /// module docs) and returns it, recovered from what was written. The host calls it for each
    /// child it does not host yet, once [`PartitionReplica::split`] names them.
    pub async fn create_split_child(
        &self,
        child: SplitChild,
        election_seed: u64,
        now: MonotonicTime,
    ) -> Result<Self, PartitionError> {
        let Some(record) = self.split().cloned() else {
            return Err(PartitionError::Corrupt(format!(
                "partition {}: asked to build a child before a split was applied",
                self.meta.partition
            )));
        };
        let side = if child == record.left {
            Placement::Left
        } else if child == record.right {
            Placement::Right
        } else {
            return Err(PartitionError::Corrupt(format!(
                "partition {}: partition {} is not a child of its split",
                self.meta.partition, child.partition
            )));
        };
        let membership = self.split_membership()?;
        let applied = record.applied.clone().unwrap_or_default();
        // The slot the parent applied its split at: its tree is frozen there (every later
        // entry was a no-op), and the children continue the numbering from it.
        let split_slot = Slot(applied.slot);
        let partition = PartitionId(child.partition);
        let name = tree_file_name(child.partition, 0);
        // A leftover of a build that crashed before its meta file: nothing refers to it.
        if self.directory.list().await?.contains(&name) {
            self.directory.remove(&name).await?;
        }
        let created_at = self
            .wal
            .append(
                partition,
                REPLICA_CREATED_RECORD_KIND,
                &child.partition.to_le_bytes(),
            )
            .await?;
        self.wal.checkpointed(partition, created_at);
        let mut tree = Partition::open_named(
            self.directory.as_ref(),
            &name,
            tree_id(child.partition, 0),
            partition,
            self.cache.clone(),
            self.config.btree.clone(),
        )
        .await?;
        let mut after = None;
        loop {
            let chunk = self
                .engine
                .snapshot_chunk(after.clone(), CHILD_COPY_BATCH_KEYS)
                .await?;
            let complete = chunk.len() < CHILD_COPY_BATCH_KEYS;
            after = chunk.last().map(|(key, _)| key.clone()).or(after);
            let mut kept = Vec::with_capacity(chunk.len());
            for (key, value) in chunk {
                match placement(&key, record.at_hash) {
                    Some(Placement::Both) => kept.push((key, value)),
                    Some(placed) if placed == side => kept.push((key, value)),
                    Some(Placement::Left | Placement::Right | Placement::Neither) => {}
                    Some(Placement::Blocking) | None => {
                        tree.close().await?;
                        return Err(PartitionError::Corrupt(format!(
                            "partition {}: its split tree holds a key no child can take: \
                             {key:02x?}",
                            self.meta.partition
                        )));
                    }
                }
            }
            tree.install_snapshot_chunk(WalLsn(split_slot.0), &kept)
                .await?;
            if complete {
                break;
            }
        }
        // The child's own range, which it enforces on every request (`range_refusal`).
        let parent_range = self.hash_range.flatten().unwrap_or((0, u64::MAX));
        let range = shoal_model::split::child_range(parent_range, record.at_hash, side);
        tree.install_snapshot_chunk(
            WalLsn(split_slot.0),
            &[(
                shoal_model::split::range_key(),
                shoal_model::split::encode_range(range),
            )],
        )
        .await?;
        tree.apply(WalLsn(split_slot.0), &MutationBatch::default())
            .await?;
        let checkpointed = tree.checkpoint_tree().await?;
        tree.close().await?;
        if checkpointed != WalLsn(split_slot.0) {
            return Err(PartitionError::Corrupt(format!(
                "partition {}: a child tree checkpointed at {} instead of the split slot {}",
                child.partition, checkpointed.0, split_slot.0
            )));
        }
        let intent = PersistRecord {
            group: child.partition,
            promised: None,
            entries: Vec::new(),
            checkpoint: Some(CheckpointIntent {
                last_included_slot: split_slot.0,
                membership: MembershipWire::from(&membership),
            }),
        };
        let intent_at = self
            .wal
            .append(
                partition,
                REPLICATION_RECORD_KIND,
                &encode_persist_record(&intent),
            )
            .await?;
        let meta = PartitionMeta {
            partition: child.partition,
            epoch: child.epoch,
            key_schema: self.meta.key_schema.clone(),
            membership,
        };
        meta.create(self.directory.as_ref())
            .await
            .map_err(|error| PartitionError::Corrupt(error.to_string()))?;
        crate::meta::mark_split_child_built(
            self.directory.as_ref(),
            self.meta.partition,
            child.partition,
        )
        .await?;
        tracing::info!(
            parent = self.meta.partition,
            child = child.partition,
            slot = split_slot.0,
            "built a child of a split"
        );
        Self::recover(
            meta,
            self.node,
            self.config.clone(),
            election_seed,
            self.directory.clone(),
            self.cache.clone(),
            self.wal.clone(),
            RecoveredRecords {
                records: vec![(intent_at, intent)],
            },
            now,
        )
        .await
    }
}
