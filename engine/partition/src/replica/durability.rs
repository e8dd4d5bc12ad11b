//! What makes a replica durable and lets it recover and catch up: checkpoint intents and
//! checkpoints of the tree against the shard's WAL (invariant 4), the records recovery still
//! needs, and snapshots sent to and installed from peers.

use super::*;
impl<F: Storage, D: StorageDirectory<File = F>> PartitionReplica<F, D> {
    /// Appends a checkpoint intent for the applied slot (invariant 4) and returns its WAL lsn.
    pub(super) async fn append_intent(&mut self) -> Result<WalLsn, PartitionError> {
        let record = PersistRecord {
            group: self.meta.partition,
            promised: Some(BallotWire::from(self.core.promised())),
            entries: Vec::new(),
            checkpoint: Some(CheckpointIntent {
                last_included_slot: self.applied_slot.0,
                membership: MembershipWire::from(&self.applied_membership),
            }),
        };
        Ok(self
            .wal
            .append(
                PartitionId(self.meta.partition),
                REPLICATION_RECORD_KIND,
                &encode_persist_record(&record),
            )
            .await?)
    }

    /// Checkpoints every `checkpoint_every_slots` applied slots, and also whenever this
    /// partition's records keep the shard WAL from reusing its next segment (a partition that
    /// writes rarely, like the metadata partition, would otherwise pin that segment for ever
    /// and stop every partition of the shard once the WAL fills). The second reason is rate
    /// limited: records not yet applied cannot be released by a checkpoint, only by commit.
    pub(super) async fn checkpoint_if_due(
        &mut self,
        now: MonotonicTime,
    ) -> Result<(), PartitionError> {
        // While a snapshot comes in, only WAL pressure checkpoints (the current tree, which stays
        // the newest complete generation until the install): the shard's WAL must never wait
        // for a transfer.
        let due_by_slots = (self.incoming_snapshot.is_none()
            && self.applied_slot.0 >= self.checkpoint_slot.0 + self.config.checkpoint_every_slots)
            || self.membership_applied;
        let due_by_wal = self.last_wal_pressure_checkpoint.is_none_or(|at| {
            now.as_nanos().saturating_sub(at.as_nanos()) >= WAL_PRESSURE_CHECKPOINT_INTERVAL_NANOS
        }) && self.pins_wal_segments_reused_soon();
        if !due_by_slots && !due_by_wal {
            return Ok(());
        }
        if due_by_wal {
            self.last_wal_pressure_checkpoint = Some(now);
        }
        self.checkpoint(now).await?;
        if due_by_wal && self.pins_wal_segments_reused_soon() {
            // What still pins are entries this replica accepted but has not applied (a
            // follower cut off from commits, a leader waiting for a quorum): a checkpoint
            // cannot release them, so they are written again at the WAL's head.
            self.rewrite_unapplied_entries_forward().await?;
        }
        Ok(())
    }

    /// Whether this partition's records sit in the older half of the shard's WAL ring (the
    /// segments the committer reuses next); see `Wal::pins_segments_ahead`.
    pub(super) fn pins_wal_segments_reused_soon(&self) -> bool {
        let ahead = (self.wal.config().segment_count as usize / 2).max(1);
        self.wal
            .pins_segments_ahead(PartitionId(self.meta.partition), ahead)
    }

    /// Writes every log entry above the checkpoint, with the promise, into new WAL records, so
    /// that the older records holding them can be recycled (issue 14: a follower that accepted
    /// entries it could not commit kept them in the oldest segment until the ring was full,
    /// and then its own checkpoint intent could not be written: every partition of the shard
    /// stopped). Recovery takes each slot's entry with the highest ballot and, among equal
    /// ballots, the later record (FORMAT.md, recovery rule 1), so the copies are what it
    /// recovers, and a copy of an entry whose own `Persist` is still on its way is harmless:
    /// it is the value the core accepted, and the later record is the same entry.
    pub(super) async fn rewrite_unapplied_entries_forward(&mut self) -> Result<(), PartitionError> {
        let first = self.checkpoint_slot.next();
        let last = self.core.log_last_slot();
        let entries: Vec<(Slot, LogEntry)> = (first.0..=last.0)
            .filter_map(|slot| {
                self.core
                    .entry(Slot(slot))
                    .map(|entry| (Slot(slot), entry.clone()))
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        let records = split_persist(
            self.meta.partition,
            Some(self.core.promised()),
            entries,
            self.wal.config().record_body_bytes_max / PERSIST_RECORD_FRACTION_OF_LIMIT,
        );
        let mut rewritten = 0usize;
        for record in records {
            let slots: Vec<u64> = record.entries.iter().map(|(slot, _)| *slot).collect();
            let wal_lsn = self
                .wal
                .append(
                    PartitionId(self.meta.partition),
                    REPLICATION_RECORD_KIND,
                    &encode_persist_record(&record),
                )
                .await?;
            rewritten += slots.len();
            for slot in slots {
                self.slot_wal_lsn.insert(Slot(slot), wal_lsn);
            }
        }
        tracing::info!(
            partition = self.meta.partition,
            entries = rewritten,
            first = first.0,
            "rewrote unapplied log entries at the WAL head to let it recycle"
        );
        self.report_wal_low_water();
        Ok(())
    }

    /// Makes the tree durable up to the applied slot, lets the core truncate its log and the
    /// WAL recycle what no longer matters.
    pub async fn checkpoint(&mut self, now: MonotonicTime) -> Result<(), PartitionError> {
        let slot = self.applied_slot;
        let intent_wal_lsn = self.append_intent().await?;
        // Applies cannot interleave: this replica's events run one at a time and this one is
        // still running, so the tree's applied lsn is still `slot`.
        let checkpointed = self.engine.checkpoint_tree().await?;
        assert_eq!(
            checkpointed.0, slot.0,
            "checkpoint covers the applied slot (invariant 4)"
        );
        self.checkpoint_slot = slot;
        self.membership_applied = false;
        self.intent_wal_lsn = Some(intent_wal_lsn);
        self.slot_wal_lsn = self.slot_wal_lsn.split_off(&slot.next());
        let actions = self.core.checkpointed(now, slot);
        self.execute(now, actions).await?;
        self.report_wal_low_water();
        Ok(())
    }

    /// Tells the WAL which of this partition's records recovery still needs (module docs).
    pub(super) fn report_wal_low_water(&self) {
        let oldest_needed = self
            .slot_wal_lsn
            .values()
            .copied()
            .chain(self.intent_wal_lsn)
            .chain(self.persisted_early.values().copied())
            .min();
        let through = match oldest_needed {
            Some(lsn) => WalLsn(lsn.0.saturating_sub(1)),
            // Nothing needed yet but nothing written either; keep everything.
            None => return,
        };
        if self.intent_wal_lsn.is_some() || self.checkpoint_slot == Slot::ZERO {
            self.wal
                .checkpointed(PartitionId(self.meta.partition), through);
        }
    }

    /// The follower this replica is streaming a snapshot to, if any: the host tells the next
    /// tick how much room its transport has toward it (`Event::Tick`).
    pub fn snapshot_destination(&self) -> Option<NodeId> {
        self.outgoing_snapshot.as_ref().map(|snapshot| snapshot.to)
    }

    pub(super) fn start_outgoing_snapshot(&mut self, now: MonotonicTime, to: NodeId) {
        if let Some(running) = &self.outgoing_snapshot {
            // A transfer that is moving is never replaced: replacing it with one to another
            // follower made two followers that both needed a snapshot (back after a long
            // outage) take turns for ever, each transfer cut off before its end, and the
            // partition kept no quorum (issue 14). The core asks again after its retry
            // interval. A transfer that is not moving (its follower is down: no room) gives
            // way, or a dead follower would keep a live one waiting.
            let moving =
                now.saturating_duration_since(running.progressed_at) < SNAPSHOT_PREEMPT_STALL_MIN;
            if running.to == to {
                return;
            }
            if moving {
                self.snapshot_waiting.insert(to, now);
                return;
            }
            tracing::info!(
                partition = self.meta.partition,
                from_follower = running.to.0,
                to = to.0,
                "replacing a snapshot transfer that does not move"
            );
        }
        // Fairness: the follower the last transfer went to, asking again, gives way to one
        // that was refused meanwhile and asked lately. A follower whose acknowledgements are
        // lost (cut off one way) takes every transfer whole and asks again at once; without
        // this it kept a joiner from ever getting one, and a group of four that needed the
        // joiner stalled (simulator seed 22059).
        self.snapshot_waiting.retain(|follower, asked| {
            *follower != to && now.saturating_duration_since(*asked) < SNAPSHOT_TRANSFER_STALL_MAX
        });
        let to = match self
            .snapshot_waiting
            .iter()
            .min_by_key(|(_, asked)| **asked)
        {
            Some((waiting, _)) if self.snapshot_last_to == Some(to) => {
                let waiting = *waiting;
                self.snapshot_waiting.remove(&waiting);
                self.snapshot_waiting.insert(to, now);
                waiting
            }
            _ => to,
        };
        self.snapshot_last_to = Some(to);
        let transfer_id = self.next_transfer_id;
        self.next_transfer_id += 1;
        tracing::info!(
            partition = self.meta.partition,
            to = to.0,
            slot = self.applied_slot.0,
            "streaming a snapshot"
        );
        self.outgoing_snapshot = Some(OutgoingSnapshot {
            to,
            transfer_id,
            last_included_slot: self.applied_slot,
            membership: MembershipWire::from(&self.applied_membership),
            config_slot: self.applied_config_slot,
            applied_chain: self.applied_chain,
            next_chunk: 0,
            after: None,
            progressed_at: now,
        });
    }

    /// Produces the next chunks of the outgoing transfer, at most `room` (what the transport
    /// takes now) and `SNAPSHOT_CHUNKS_PER_TICK_MAX`; abandons a transfer that made no progress
    /// for `SNAPSHOT_TRANSFER_STALL_MAX`.
    pub(super) async fn continue_outgoing_snapshot(
        &mut self,
        now: MonotonicTime,
        room: usize,
    ) -> Result<(), PartitionError> {
        if let Some(snapshot) = &self.outgoing_snapshot
            && room == 0
            && now.saturating_duration_since(snapshot.progressed_at) >= SNAPSHOT_TRANSFER_STALL_MAX
        {
            tracing::info!(
                partition = self.meta.partition,
                to = snapshot.to.0,
                slot = snapshot.last_included_slot.0,
                chunks_sent = snapshot.next_chunk,
                "abandoning a snapshot transfer the follower does not take"
            );
            self.outgoing_snapshot = None;
            return Ok(());
        }
        for _ in 0..room.min(SNAPSHOT_CHUNKS_PER_TICK_MAX) {
            let Some(snapshot) = &self.outgoing_snapshot else {
                return Ok(());
            };
            let mut items = Vec::new();
            let mut bytes = 0usize;
            let mut after = snapshot.after.clone();
            let mut last = false;
            while items.len() < SNAPSHOT_CHUNK_ITEMS_MAX && bytes < SNAPSHOT_CHUNK_BYTES_MAX {
                let want = SNAPSHOT_CHUNK_ITEMS_MAX - items.len();
                let batch = self.engine.snapshot_chunk(after.clone(), want).await?;
                if batch.len() < want {
                    last = true;
                }
                for (key, mut value) in batch {
                    if let Some(chain) = snapshot.applied_chain
                        && key == shoal_model::index::applied_chain_key()
                    {
                        value = chain.to_le_bytes().to_vec();
                    }
                    if key == shoal_model::index::membership_config_key() {
                        value = snapshot.config_slot.0.to_le_bytes().to_vec();
                    }
                    bytes += key.len() + value.len();
                    after = Some(key.clone());
                    items.push((key, value));
                    if bytes >= SNAPSHOT_CHUNK_BYTES_MAX {
                        break;
                    }
                }
                if last {
                    break;
                }
            }
            let chunk = SnapshotChunk {
                group: self.meta.partition,
                from: self.node.0,
                to: snapshot.to.0,
                transfer_id: snapshot.transfer_id,
                last_included_slot: snapshot.last_included_slot.0,
                membership: snapshot.membership.clone(),
                chunk_index: snapshot.next_chunk,
                items,
                last,
            };
            self.outputs.push(Output::Snapshot(chunk));
            if last {
                self.outgoing_snapshot = None;
            } else if let Some(snapshot) = &mut self.outgoing_snapshot {
                snapshot.next_chunk += 1;
                snapshot.after = after;
                snapshot.progressed_at = now;
            }
        }
        Ok(())
    }

    pub(super) async fn receive_snapshot_chunk(
        &mut self,
        now: MonotonicTime,
        chunk: SnapshotChunk,
    ) -> Result<(), PartitionError> {
        if Slot(chunk.last_included_slot) <= self.applied_slot {
            return Ok(());
        }
        if chunk.chunk_index == 0 {
            if let Some(abandoned) = self.incoming_snapshot.take() {
                self.discard_tree(abandoned.tree, abandoned.generation)
                    .await?;
            }
            let generation = self.generation + 1;
            let name = tree_file_name(self.meta.partition, generation);
            // A leftover of an install that crashed before it finished.
            if self.directory.list().await?.contains(&name) {
                self.directory.remove(&name).await?;
            }
            let tree = Partition::open_named(
                self.directory.as_ref(),
                &name,
                tree_id(self.meta.partition, generation),
                PartitionId(self.meta.partition),
                self.cache.clone(),
                self.config.btree.clone(),
            )
            .await?;
            self.incoming_snapshot = Some(IncomingSnapshot {
                from: chunk.from,
                transfer_id: chunk.transfer_id,
                last_included_slot: chunk.last_included_slot,
                next_chunk: 0,
                generation,
                tree,
                progressed_at: now,
            });
        }
        let Some(incoming) = &mut self.incoming_snapshot else {
            return Ok(());
        };
        if incoming.from != chunk.from || incoming.transfer_id != chunk.transfer_id {
            // A late chunk of another transfer.
            return Ok(());
        }
        if incoming.last_included_slot != chunk.last_included_slot {
            // The same sender and transfer id for another slot: the sender restarted and began
            // a new transfer whose first chunks were lost. This one can never complete.
            return self
                .abandon_incoming_snapshot("a chunk of a later transfer with the same id")
                .await;
        }
        if incoming.next_chunk != chunk.chunk_index {
            // A chunk of this transfer was lost, so it can never complete: drop it now, so
            // that this replica checkpoints again (and lets the shard's WAL recycle) while the
            // leader starts another after its retry interval.
            return self.abandon_incoming_snapshot("a chunk was lost").await;
        }
        incoming.progressed_at = now;
        let slot = WalLsn(chunk.last_included_slot);
        incoming
            .tree
            .install_snapshot_chunk(slot, &chunk.items)
            .await?;
        incoming.next_chunk += 1;
        if !chunk.last {
            return Ok(());
        }
        let Some(incoming) = self.incoming_snapshot.take() else {
            return Ok(());
        };
        let mut tree = incoming.tree;
        // Invariant 4: the intent for the snapshot's slot is durable before the new tree is.
        let Ok(membership) = Membership::try_from(&chunk.membership) else {
            // A leader never sends an invalid membership; a transfer that carries one is
            // damaged: drop it, and the leader starts another after its retry interval.
            self.discard_tree(tree, incoming.generation).await?;
            return Ok(());
        };
        let record = PersistRecord {
            group: self.meta.partition,
            promised: Some(BallotWire::from(self.core.promised())),
            entries: Vec::new(),
            checkpoint: Some(CheckpointIntent {
                last_included_slot: chunk.last_included_slot,
                membership: chunk.membership.clone(),
            }),
        };
        let intent_wal_lsn = self
            .wal
            .append(
                PartitionId(self.meta.partition),
                REPLICATION_RECORD_KIND,
                &encode_persist_record(&record),
            )
            .await?;
        tree.apply(slot, &MutationBatch::default()).await?;
        let checkpointed = tree.checkpoint_tree().await?;
        assert_eq!(
            checkpointed, slot,
            "an installed snapshot is durable at its slot"
        );
        let old = std::mem::replace(&mut self.engine, tree);
        self.applied_membership = membership.clone();
        // Counted again from the installed tree at the next event.
        self.index_region = None;
        self.applied_chain = None;
        self.stream.forget_applied();
        self.transactions
            .forget_applied(Slot(chunk.last_included_slot));
        // The installed tree's split and range records, read now: a host that checks
        // `split()` after this event must see a split the snapshot carries.
        self.split = None;
        self.hash_range = None;
        self.load_split().await?;
        let old_generation = std::mem::replace(&mut self.generation, incoming.generation);
        self.discard_tree(old, old_generation).await?;
        let snapshot_slot = Slot(chunk.last_included_slot);
        self.applied_slot = snapshot_slot;
        self.checkpoint_slot = snapshot_slot;
        self.intent_wal_lsn = Some(intent_wal_lsn);
        self.slot_wal_lsn = self.slot_wal_lsn.split_off(&snapshot_slot.next());
        self.overlay.clear();
        tracing::info!(
            partition = self.meta.partition,
            slot = snapshot_slot.0,
            "installed a snapshot"
        );
        let config_slot = read_config_slot(&self.engine, self.meta.partition).await?;
        self.applied_config_slot = config_slot;
        let actions = self.core.snapshot_installed(
            now,
            SnapshotMeta {
                last_included_slot: snapshot_slot,
                membership,
                config_slot,
            },
        );
        self.execute(now, actions).await?;
        self.report_wal_low_water();
        Ok(())
    }

    /// An incoming transfer keeps this replica from checkpointing (`checkpoint_if_due`), and so
    /// keeps its records in the shard's WAL: one that stopped (its leader died or gave it up)
    /// would stop every partition of the shard once the ring is full (issue 14). Such a transfer
    /// is dropped; the leader starts a new one after its retry interval. WAL pressure does not
    /// drop a transfer: the pressure relief checkpoints the current tree meanwhile (dropping
    /// transfers under pressure kept a follower on a busy shard from ever finishing one).
    pub(super) async fn abandon_incoming_snapshot_if_stuck(
        &mut self,
        now: MonotonicTime,
    ) -> Result<(), PartitionError> {
        let Some(incoming) = &self.incoming_snapshot else {
            return Ok(());
        };
        if now.saturating_duration_since(incoming.progressed_at) >= SNAPSHOT_TRANSFER_STALL_MAX {
            return self
                .abandon_incoming_snapshot("no chunk came for too long")
                .await;
        }
        Ok(())
    }

    pub(super) async fn abandon_incoming_snapshot(
        &mut self,
        reason: &str,
    ) -> Result<(), PartitionError> {
        let Some(incoming) = self.incoming_snapshot.take() else {
            return Ok(());
        };
        tracing::info!(
            partition = self.meta.partition,
            from = incoming.from,
            transfer_id = incoming.transfer_id,
            chunks_installed = incoming.next_chunk,
            reason,
            "abandoning an incoming snapshot"
        );
        self.discard_tree(incoming.tree, incoming.generation).await
    }

    pub(super) async fn discard_tree(
        &self,
        tree: Partition<F>,
        generation: u32,
    ) -> Result<(), PartitionError> {
        tree.close().await?;
        self.directory
            .remove(&tree_file_name(self.meta.partition, generation))
            .await?;
        Ok(())
    }

    /// Closes the replica and removes its files: the meta file first, so that a crash part way
    /// leaves only tree files without a meta file, which [`remove_orphan_trees`] clears at the
    /// next start. The shard's WAL is told to forget the partition's records.
    pub async fn destroy(self) -> Result<(), PartitionError> {
        let partition = self.meta.partition;
        let directory = self.directory.clone();
        let wal = self.wal.clone();
        self.close().await?;
        // The host may have removed it already (engine/shard does, before it releases the
        // partition's WAL records).
        if let Err(error) = crate::meta::remove_meta_file(directory.as_ref(), partition).await {
            shoal_io::fatal!("removing the meta file of partition {partition} failed: {error}");
        }
        remove_orphan_trees(directory.as_ref()).await?;
        wal.forget_partition(PartitionId(partition));
        Ok(())
    }

    /// Closes the tree (the WAL belongs to the shard).
    pub async fn close(self) -> Result<(), PartitionError> {
        if let Some(incoming) = self.incoming_snapshot {
            incoming.tree.close().await?;
        }
        Ok(self.engine.close().await?)
    }
}
