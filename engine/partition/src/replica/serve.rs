//! Serving client requests at the leader: routing a prepared request to its kind, writes
//! evaluated against the latest state (the overlay of proposals in flight, then the tree) and
//! proposed with their local index entries and item collection size in one log entry, and
//! strongly or eventually consistent reads of items, ranges and local indexes.

use super::*;
impl<F: Storage, D: StorageDirectory<File = F>> PartitionReplica<F, D> {
    pub(super) async fn serve(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        epoch: u64,
        unix_ms: u64,
        prepared: PreparedRequest,
    ) -> Result<(), PartitionError> {
        // A split parent serves nothing: its children do (src/replica/split.rs, step 3).
        if let Some(refusal) = self.split_refusal() {
            self.reply(reply_to, refusal);
            return Ok(());
        }
        // A write proposed after the split would be void: it waits instead (reads are served
        // from the state the split will freeze).
        let reads_only = matches!(
            prepared,
            PreparedRequest::Get(_)
                | PreparedRequest::BatchGet(_)
                | PreparedRequest::Range(_)
                | PreparedRequest::OutboxRead { .. }
                | PreparedRequest::StreamRead { .. }
                | PreparedRequest::StreamShards { .. }
                | PreparedRequest::TransactRead { .. }
                | PreparedRequest::TransactConfirm { .. }
                | PreparedRequest::TransactLocks { .. }
        );
        if self.split_in_flight() && !reads_only {
            self.reply(
                reply_to,
                NodeResponse::Error(NodeError::Busy {
                    partition: self.meta.partition,
                }),
            );
            return Ok(());
        }
        if let Some(refusal) = self.range_refusal(&prepared) {
            self.reply(reply_to, refusal);
            return Ok(());
        }
        if epoch != self.meta.epoch {
            self.reply(
                reply_to,
                NodeResponse::Error(NodeError::StaleEpoch {
                    partition: self.meta.partition,
                    current_epoch: self.meta.epoch,
                }),
            );
            return Ok(());
        }
        // Only a leader samples keys (src/traffic.rs): a follower sees eventual reads only.
        if self.core.role() == RoleKind::Leader {
            self.traffic.borrow_mut().note_request(now, &prepared);
        } else {
            self.traffic.borrow_mut().note_time(now);
        }
        let response = match prepared {
            PreparedRequest::Write(write) => {
                return self
                    .serve_writes(now, reply_to, vec![write], false, unix_ms)
                    .await;
            }
            PreparedRequest::BatchWrite(writes) => {
                return self
                    .serve_writes(now, reply_to, writes, true, unix_ms)
                    .await;
            }
            PreparedRequest::Get(get) => self.serve_gets(now, &[get], false).await?,
            PreparedRequest::BatchGet(gets) => self.serve_gets(now, &gets, true).await?,
            PreparedRequest::Range(range) => self.serve_range(now, &range).await?,
            PreparedRequest::OutboxRead { after } => self.serve_outbox_read(now, after).await?,
            PreparedRequest::OutboxTrim { through } => {
                return self.serve_outbox_trim(now, reply_to, through).await;
            }
            PreparedRequest::IndexApply { source, changes } => {
                return self.serve_index_apply(now, reply_to, source, changes).await;
            }
            PreparedRequest::IndexBackfill { index, after } => {
                return self.serve_index_backfill(now, reply_to, index, after).await;
            }
            PreparedRequest::StreamConfigure { stream, view } => {
                return self
                    .serve_stream_configure(now, reply_to, stream, view, unix_ms)
                    .await;
            }
            PreparedRequest::StreamRead {
                stream,
                generation,
                after,
                limit,
            } => {
                self.serve_stream_read(now, stream, generation, after, limit)
                    .await?
            }
            PreparedRequest::StreamShards { stream } => {
                self.serve_stream_shards(now, stream).await?
            }
            PreparedRequest::TransactPrepare {
                transaction,
                actions,
            } => {
                return self
                    .serve_transact_prepare(now, reply_to, transaction, actions, unix_ms)
                    .await;
            }
            PreparedRequest::TransactFinish {
                transaction,
                commit,
                local_indexes,
                global_indexes,
            } => {
                return self
                    .serve_transact_finish(
                        now,
                        reply_to,
                        transaction,
                        commit,
                        local_indexes,
                        global_indexes,
                        unix_ms,
                    )
                    .await;
            }
            PreparedRequest::TransactRead { gets } => self.serve_transact_read(now, &gets).await?,
            PreparedRequest::TransactConfirm {
                storage_keys,
                since,
            } => self.serve_transact_confirm(now, &storage_keys, since),
            PreparedRequest::TransactLocks { prepared_before_ms } => {
                self.serve_transact_locks(now, prepared_before_ms).await?
            }
        };
        self.reply(reply_to, response);
        Ok(())
    }

    pub(super) fn reply(&mut self, reply_to: u64, response: NodeResponse) {
        self.outputs.push(Output::Reply { reply_to, response });
    }

    /// The latest state of an item as the leader sees it (invariant 2), and the slot of the
    /// overlay entry it comes from, if it does.
    pub(super) async fn latest_item(
        &self,
        storage_key: &[u8],
    ) -> Result<(Option<Item>, Option<Slot>), PartitionError> {
        if let Some((slot, item)) = self.overlay.get(storage_key) {
            return Ok((item.clone(), Some(*slot)));
        }
        Ok((self.stored_item(storage_key).await?, None))
    }

    pub(super) async fn stored_item(
        &self,
        storage_key: &[u8],
    ) -> Result<Option<Item>, PartitionError> {
        match self.engine.get(storage_key).await? {
            None => Ok(None),
            Some(bytes) => decode_item(&bytes).map(Some).map_err(|error| {
                PartitionError::Corrupt(format!(
                    "partition {}: stored item does not decode: {error}",
                    self.meta.partition
                ))
            }),
        }
    }

    pub(super) fn evaluate_write(
        &self,
        write: &WriteRequest,
        old_item: Option<&Item>,
    ) -> Result<Evaluated, NodeResponse> {
        let empty = Item::new();
        if let Err(error) = check_condition(write.condition.as_ref(), old_item.unwrap_or(&empty)) {
            let item = match (write.return_old_on_condition_failure, old_item) {
                (true, Some(item)) => Some(encode_item(item)),
                _ => None,
            };
            return Err(NodeResponse::Error(NodeError::Dynamo {
                type_name: error.exception_name().to_string(),
                message: error.message().to_string(),
                item,
            }));
        }
        let (new_item, paths) = match &write.kind {
            WriteKind::Put(item) => (Some(item.clone()), Vec::new()),
            WriteKind::Delete => (None, Vec::new()),
            // Only REMOVE and DELETE actions on a missing item: nothing is written.
            WriteKind::Update(update) if old_item.is_none() && !creates_missing_item(update) => {
                (None, Vec::new())
            }
            WriteKind::Update(update) => {
                let base = old_item.cloned().unwrap_or_else(|| write.key.clone());
                let updated = apply_update(update, &base, &self.meta.key_schema)
                    .map_err(|error| dynamo_error(&error))?;
                if item_size_bytes(&updated) > ITEM_BYTES_MAX {
                    return Err(dynamo_error(&ModelError::Validation(
                        shoal_model::messages::UPDATED_ITEM_TOO_LARGE.to_string(),
                    )));
                }
                (Some(updated), updated_paths(update))
            }
        };
        let attributes =
            returned_attributes(write.return_values, old_item, new_item.as_ref(), &paths);
        let index_writes = crate::local_index::index_writes(
            write,
            &self.meta.key_schema,
            old_item,
            new_item.as_ref(),
        )
        .map_err(|error| dynamo_error(&error))?;
        let (global_changes, global_units) = shoal_model::index::global::global_changes(
            &write.global_indexes,
            &self.meta.key_schema,
            &write.storage_key,
            old_item,
            new_item.as_ref(),
        )
        .map_err(|error| dynamo_error(&error))?;
        if let Some(change) = global_changes
            .iter()
            .find(|change| change.entry_key.len() > shoal_store::btree::KEY_BYTES_MAX)
        {
            // As for a local index entry: only keys near every DynamoDB key limit at once.
            return Err(dynamo_error(&ModelError::Validation(format!(
                "One or more parameter values were invalid: the index key and the table key take {} bytes together in the entry of global secondary index number {}, more than the {} this server stores",
                change.entry_key.len(),
                change.index_number,
                shoal_store::btree::KEY_BYTES_MAX
            ))));
        }
        let write_units = write_capacity_units(
            old_item
                .map_or(0, item_size_bytes)
                .max(new_item.as_ref().map_or(0, item_size_bytes)),
        ) + index_writes.write_units
            + global_units.iter().sum::<u64>();
        let mutation = match &new_item {
            Some(item) => Mutation::Put {
                key: write.storage_key.clone(),
                value: encode_item(item),
            },
            None => Mutation::Delete {
                key: write.storage_key.clone(),
            },
        };
        let mut mutations = vec![mutation];
        mutations.extend(index_writes.mutations);
        Ok(Evaluated {
            mutations,
            new_item,
            attributes,
            write_units,
            collection: None,
            index_write_units: index_writes.units_by_index,
            global_changes,
            global_write_units: global_units,
        })
    }

    /// Evaluates `write` against the latest state, after the writes `earlier` of its batch
    /// (invariant 2), with its item collection's size record for a table with local indexes
    /// (refused past `collection_bytes_max`). Returns the outcome, the item before the write,
    /// and the latest overlay slot the evaluation read (a refusal waits for it, invariant 5).
    pub(super) async fn evaluate_in_batch(
        &self,
        write: &WriteRequest,
        earlier: &[Evaluated],
        collection_bytes_max: u64,
    ) -> Result<(Result<Evaluated, NodeResponse>, Option<Item>, Option<Slot>), PartitionError> {
        let (old_item, mut overlay_slot) = self.latest_item(&write.storage_key).await?;
        let mut outcome = self.evaluate_write(write, old_item.as_ref());
        if let Ok(result) = &mut outcome
            && let Some(collection_key) = crate::local_index::collection_of(write)
        {
            // The collection's size as this batch left it, else as the leader sees it.
            let before = match earlier.iter().rev().find_map(|earlier| {
                earlier
                    .collection
                    .as_ref()
                    .filter(|(key, _)| *key == collection_key)
            }) {
                Some((_, bytes)) => Some(*bytes),
                None => {
                    let (record, record_slot) = self.latest_item(&collection_key).await?;
                    overlay_slot = overlay_slot.max(record_slot);
                    record
                        .as_ref()
                        .and_then(shoal_model::index::collection_bytes)
                }
            };
            match crate::local_index::collection_change(
                write,
                &self.meta.key_schema,
                collection_key,
                before.unwrap_or(0),
                old_item.as_ref(),
                result.new_item.as_ref(),
                collection_bytes_max,
            ) {
                Ok((mutation, collection)) => {
                    result.mutations.push(mutation);
                    result.collection = Some(collection);
                }
                Err(refusal) => outcome = Err(refusal),
            }
        }
        Ok((outcome, old_item, overlay_slot))
    }

    /// The log entry of evaluated writes: their items' and local index entries' mutations,
    /// their GSI changes as pending outbox records (positioned when applied), and their stream
    /// records under the stream configuration `stream`.
    pub(super) fn write_batch(
        &self,
        evaluated: &[Evaluated],
        stream: Option<shoal_model::stream::StreamConfig>,
        stream_changes: &[(Option<Item>, Option<Item>)],
        unix_ms: u64,
    ) -> MutationBatch {
        let mut mutations = MutationBatch {
            mutations: evaluated
                .iter()
                .flat_map(|result| result.mutations.iter().cloned())
                .collect(),
        };
        let global_changes = evaluated.iter().flat_map(|result| &result.global_changes);
        // The outbox records get their positions when the batch is applied (its slot).
        for (ordinal, change) in (0u32..).zip(global_changes) {
            mutations.mutations.push(Mutation::Put {
                key: shoal_model::index::global::pending_outbox_key(ordinal),
                value: shoal_model::index::global::encode_change(change),
            });
        }
        mutations.mutations.extend(
            self.stream_records(
                stream,
                stream_changes
                    .iter()
                    .map(|(old, new)| (old.as_ref(), new.as_ref())),
                unix_ms,
                false,
            ),
        );
        mutations
    }

    pub(super) async fn serve_writes(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        writes: Vec<WriteRequest>,
        batch: bool,
        unix_ms: u64,
    ) -> Result<(), PartitionError> {
        // Invariant 2 needs every slot before this leader's own proposals applied: entries of
        // earlier ballots recovered in phase 1 are in no overlay. Ready once the leader's
        // no-op commits, moments after the election.
        if let Some(refusal) = self.refuse_write() {
            self.reply(reply_to, refusal);
            return Ok(());
        }
        // Stream invariant 1: the configuration as the latest proposal left it.
        let stream = self.stream_config().await?;
        let mut stream_changes: Vec<(Option<Item>, Option<Item>)> = Vec::new();
        let mut evaluated: Vec<Evaluated> = Vec::with_capacity(writes.len());
        let locks_possible = self.locks_possible();
        for write in &writes {
            // Transaction invariant 2: an item a prepared transaction holds stays as it is.
            if locks_possible && self.latest_lock(&write.storage_key).await?.is_some() {
                self.reply(reply_to, super::transaction::transaction_conflict());
                return Ok(());
            }
            let (outcome, old_item, overlay_slot) = self
                .evaluate_in_batch(write, &evaluated, self.config.item_collection_bytes_max)
                .await?;
            match outcome {
                Ok(result) => {
                    if stream.is_some() {
                        stream_changes.push((old_item, result.new_item.clone()));
                    }
                    evaluated.push(result);
                }
                // Invariant 5: the refusal waits for the overlay entry it saw.
                Err(response) => match overlay_slot {
                    Some(slot) => {
                        self.deferred
                            .entry(slot)
                            .or_default()
                            .push((reply_to, response));
                        return Ok(());
                    }
                    None => {
                        let response = match self.check_read(now, true) {
                            Ok(()) => response,
                            Err(refusal) => refusal,
                        };
                        self.reply(reply_to, response);
                        return Ok(());
                    }
                },
            }
        }
        // Nothing may be proposed that a replica could fail to apply: a committed entry that
        // does not fit the tree would stop every replica that applies it, again at every
        // restart. So the leader checks the tree's own limits first.
        let value_bytes_max = self.config.btree.value_bytes_max;
        if evaluated
            .iter()
            .flat_map(|result| &result.mutations)
            .any(|mutation| {
                matches!(mutation, Mutation::Put { key, value }
                if value.len() > value_bytes_max || key.len() > shoal_store::btree::KEY_BYTES_MAX)
            })
        {
            self.reply(
                reply_to,
                dynamo_error(&ModelError::Validation(
                    shoal_model::messages::ITEM_TOO_LARGE.to_string(),
                )),
            );
            return Ok(());
        }
        let global_changes = evaluated.iter().flat_map(|result| &result.global_changes);
        let outbox_additions = global_changes.clone().count() as u64;
        if outbox_additions > 0
            && self.outbox_entries() + outbox_additions
                > shoal_model::index::global::OUTBOX_ENTRIES_MAX
        {
            // The table's GSIs are this far behind: DynamoDB throttles the table's writes
            // until they catch up, which bounds the outbox (and the index lag).
            self.reply(
                reply_to,
                NodeResponse::Error(NodeError::Dynamo {
                    type_name: "ProvisionedThroughputExceededException".to_string(),
                    message: shoal_model::index::global::GSI_BACKPRESSURE.to_string(),
                    item: None,
                }),
            );
            return Ok(());
        }
        let mutations = self.write_batch(&evaluated, stream, &stream_changes, unix_ms);
        let write_units: u64 = evaluated.iter().map(|result| result.write_units).sum();
        let result = match (&evaluated[..], batch) {
            ([single], false) if !writes[0].global_indexes.is_empty() => {
                // What a table with GSIs reports per index (ConsumedCapacity INDEXES).
                let local = single
                    .index_write_units
                    .iter()
                    .enumerate()
                    .filter(|(_, units)| **units > 0)
                    .map(|(number, units)| IndexWriteUnits {
                        global: false,
                        number: u8::try_from(number).unwrap_or(u8::MAX),
                        milli: units * 1000,
                    });
                let global = writes[0]
                    .global_indexes
                    .iter()
                    .zip(&single.global_write_units)
                    .filter(|(_, units)| **units > 0)
                    .map(|(index, units)| IndexWriteUnits {
                        global: true,
                        number: index.number,
                        milli: units * 1000,
                    });
                ItemResult::WriteWithIndexes {
                    attributes: single.attributes.as_ref().map(encode_item),
                    collection: single.collection.as_ref().map(|(_, bytes)| {
                        Box::new(CollectionSize {
                            key: encode_item(&crate::local_index::collection_key_item(
                                &writes[0],
                                &self.meta.key_schema,
                            )),
                            bytes: *bytes,
                        })
                    }),
                    index_write_units_milli: local.chain(global).collect(),
                }
            }
            (
                [
                    Evaluated {
                        collection: Some((_, collection_bytes)),
                        attributes,
                        index_write_units,
                        ..
                    },
                ],
                false,
            ) => ItemResult::WriteInCollection {
                attributes: attributes.as_ref().map(encode_item),
                collection_key: encode_item(&crate::local_index::collection_key_item(
                    &writes[0],
                    &self.meta.key_schema,
                )),
                collection_bytes: *collection_bytes,
                index_write_units_milli: index_write_units
                    .iter()
                    .map(|units| units * 1000)
                    .collect(),
            },
            ([single], false) => ItemResult::Write {
                attributes: single.attributes.as_ref().map(encode_item),
            },
            _ => {
                let result = crate::local_index::batch_result(
                    writes
                        .iter()
                        .zip(&evaluated)
                        .filter_map(|(write, result)| Some((write, result.collection.as_ref()?.1))),
                    &self.meta.key_schema,
                );
                if writes.iter().all(|write| write.global_indexes.is_empty()) {
                    result
                } else {
                    let collections = match result {
                        ItemResult::BatchWriteInCollections { collections } => collections,
                        _ => Vec::new(),
                    };
                    // One batch writes one table: every write carries the same GSIs.
                    let mut by_index: Vec<IndexWriteUnits> = writes[0]
                        .global_indexes
                        .iter()
                        .map(|index| IndexWriteUnits {
                            global: true,
                            number: index.number,
                            milli: 0,
                        })
                        .collect();
                    for result in &evaluated {
                        for (index, units) in by_index.iter_mut().zip(&result.global_write_units) {
                            index.milli += units * 1000;
                        }
                    }
                    ItemResult::BatchWriteWithIndexes {
                        collections,
                        global_write_units_milli: by_index
                            .into_iter()
                            .filter(|index| index.milli > 0)
                            .collect(),
                    }
                }
            }
        };
        let response = item_response(result, 0, write_units * 1000);
        let Some((slot, actions)) = self
            .propose_batch(now, reply_to, mutations, response)
            .await?
        else {
            return Ok(());
        };
        for (write, result) in writes.iter().zip(evaluated) {
            if let Some((key, bytes)) = result.collection {
                let record = (bytes > 0).then(|| shoal_model::index::collection_record(bytes));
                self.overlay.insert(key, (slot, record));
            }
            self.overlay
                .insert(write.storage_key.clone(), (slot, result.new_item));
        }
        self.execute(now, actions).await
    }

    /// Proposes `batch`, evaluated against this leader's view of every slot before it (the
    /// chain requirement is appended, invariant 6), and answers `response` once its slot is
    /// applied with it. On a refusal to propose, answers the refusal and returns `None`; else
    /// the slot and the core's actions, which the caller executes after putting what it
    /// evaluated into the overlay (executing may apply the slot at once).
    pub(super) async fn propose_batch(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        mut batch: MutationBatch,
        response: NodeResponse,
    ) -> Result<Option<(Slot, Vec<Action>)>, PartitionError> {
        batch.mutations.push(self.chain_requirement().await?);
        let payload = batch.encode();
        let refusal = match self.core.propose(now, payload.clone()) {
            Ok(proposed) => {
                self.waiting.insert(
                    proposed.slot,
                    Waiter {
                        reply_to: Some(reply_to),
                        payload,
                        response,
                    },
                );
                return Ok(Some((proposed.slot, proposed.actions)));
            }
            Err(ProposeError::NotLeader { leader_hint }) => {
                not_leader(self.meta.partition, leader_hint)
            }
            Err(ProposeError::CommandTooLarge { .. }) => dynamo_error(&ModelError::Validation(
                shoal_model::messages::ITEM_TOO_LARGE.to_string(),
            )),
            Err(
                ProposeError::LeaderNotReady
                | ProposeError::Backpressure
                | ProposeError::MembershipChangeInProgress
                | ProposeError::Membership(_),
            ) => NodeResponse::Error(NodeError::Busy {
                partition: self.meta.partition,
            }),
        };
        self.reply(reply_to, refusal);
        Ok(None)
    }

    /// Proposes `batch`, which no client waits for (the leader's own work: TTL deletes, stream
    /// maintenance), evaluated against this leader's view of every slot before it (invariant
    /// 6). The waiter settles the refusals deferred on the slot (invariant 5) like any
    /// proposal's. `None` when the core refuses to propose now (backpressure, a membership
    /// change, a lost leadership): the caller tries again at its next step. Otherwise the slot
    /// and the actions to execute, after the caller noted what it proposed.
    pub(super) async fn propose_unanswered(
        &mut self,
        now: MonotonicTime,
        mut batch: MutationBatch,
    ) -> Result<Option<(Slot, Vec<Action>)>, PartitionError> {
        batch.mutations.push(self.chain_requirement().await?);
        let payload = batch.encode();
        let Ok(proposed) = self.core.propose(now, payload.clone()) else {
            return Ok(None);
        };
        self.waiting.insert(
            proposed.slot,
            Waiter {
                reply_to: None,
                payload,
                response: NodeResponse::Item {
                    result: ItemResult::BatchWrite,
                    read_units_milli: 0,
                    write_units_milli: 0,
                },
            },
        );
        Ok(Some((proposed.slot, proposed.actions)))
    }

    /// Whether a read may be served here now; the refusal to send otherwise.
    pub(super) fn check_read(
        &self,
        now: MonotonicTime,
        consistent: bool,
    ) -> Result<(), NodeResponse> {
        if !consistent {
            return Ok(());
        }
        self.core.can_serve_strong_read(now).map_err(|refusal| {
            let hint = match refusal {
                shoal_replication::StrongReadRefusal::NotLeader { leader_hint } => leader_hint,
                shoal_replication::StrongReadRefusal::LeaseNotHeld => {
                    // A quiesced leader's lease lapsed: `handle` wakes it after this event.
                    self.lease_wanted.set(true);
                    Some(self.node)
                }
            };
            not_leader(self.meta.partition, hint)
        })
    }

    pub(super) async fn serve_gets(
        &mut self,
        now: MonotonicTime,
        gets: &[GetRequest],
        batch: bool,
    ) -> Result<NodeResponse, PartitionError> {
        let consistent = gets.iter().any(|get| get.consistent);
        if let Err(refusal) = self.check_read(now, consistent) {
            return Ok(refusal);
        }
        let mut items = Vec::new();
        let mut read_milli = 0;
        for get in gets {
            let item = self.stored_item(&get.storage_key).await?;
            read_milli +=
                read_units_milli(item.as_ref().map_or(0, item_size_bytes), get.consistent);
            if let Some(item) = item {
                let item = match &get.projection {
                    Some(paths) => project(&item, paths),
                    None => item,
                };
                items.push(encode_item(&item));
            }
        }
        let result = if batch {
            ItemResult::BatchGet { items }
        } else {
            ItemResult::Get { item: items.pop() }
        };
        Ok(item_response(result, read_milli, 0))
    }

    pub(super) async fn serve_range(
        &mut self,
        now: MonotonicTime,
        range: &RangeRequest,
    ) -> Result<NodeResponse, PartitionError> {
        if let Err(refusal) = self.check_read(now, range.consistent) {
            return Ok(refusal);
        }
        if let Some(read) = &range.index {
            let (result, read_milli) = crate::local_index::read_index_range(
                &self.engine,
                self.meta.partition,
                &self.meta.key_schema,
                range,
                read,
            )
            .await?;
            return Ok(item_response(result, read_milli, 0));
        }
        let direction = if range.forward {
            Direction::Forward
        } else {
            Direction::Backward
        };
        let mut lower = range.lower.clone();
        // Local index entries share the tree; a table read never reaches their region.
        let mut upper = crate::local_index::items_only(range.upper.clone());
        let mut items = Vec::new();
        let mut count = 0u64;
        let mut scanned_count = 0usize;
        let mut scanned_bytes = 0usize;
        let mut last_evaluated: Option<Item> = None;
        let mut stopped_early = false;
        'pages: loop {
            let batch = self
                .engine
                .scan(
                    lower.clone(),
                    upper.clone(),
                    direction,
                    RANGE_SCAN_BATCH_ITEMS,
                )
                .await?;
            let exhausted = batch.len() < RANGE_SCAN_BATCH_ITEMS;
            for (key, value) in batch {
                let item = decode_item(&value).map_err(|error| {
                    PartitionError::Corrupt(format!(
                        "partition {}: stored item does not decode: {error}",
                        self.meta.partition
                    ))
                })?;
                scanned_count += 1;
                scanned_bytes += item_size_bytes(&item);
                last_evaluated = Some(match &range.global_index {
                    // A GSI partition's entries are projected items: the next page starts
                    // after the index key and the table key.
                    Some(index) => index.evaluated_key(&self.meta.key_schema, &item),
                    None => self.meta.key_schema.key_of(&item),
                });
                let passes = range.filter.as_ref().is_none_or(|filter| {
                    shoal_model::expression::evaluate::evaluate(filter, &item)
                });
                if passes {
                    count += 1;
                    if !range.count_only {
                        items.push(match &range.projection {
                            Some(paths) => encode_item(&project(&item, paths)),
                            // Unprojected, the stored bytes are the answer's encoding already.
                            None => value,
                        });
                    }
                }
                if direction == Direction::Forward {
                    lower = Bound::Excluded(key);
                } else {
                    upper = Bound::Excluded(key);
                }
                if range.limit.is_some_and(|limit| scanned_count >= limit)
                    || scanned_bytes as u64 >= range.page_bytes_max
                {
                    stopped_early = true;
                    break 'pages;
                }
            }
            if exhausted {
                break;
            }
        }
        let result = ItemResult::Range {
            items,
            count,
            scanned_count: scanned_count as u64,
            scanned_bytes: scanned_bytes as u64,
            last_evaluated_key: last_evaluated
                .filter(|_| stopped_early)
                .map(|key| encode_item(&key)),
        };
        Ok(item_response(
            result,
            read_units_milli(scanned_bytes, range.consistent),
            0,
        ))
    }
}
