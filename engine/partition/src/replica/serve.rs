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
        prepared: PreparedRequest,
    ) -> Result<(), PartitionError> {
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
        let response = match prepared {
            PreparedRequest::Write(write) => {
                return self.serve_writes(now, reply_to, vec![write], false).await;
            }
            PreparedRequest::BatchWrite(writes) => {
                return self.serve_writes(now, reply_to, writes, true).await;
            }
            PreparedRequest::Get(get) => self.serve_gets(now, &[get], false).await?,
            PreparedRequest::BatchGet(gets) => self.serve_gets(now, &gets, true).await?,
            PreparedRequest::Range(range) => self.serve_range(now, &range).await?,
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
        let write_units = write_capacity_units(
            old_item
                .map_or(0, item_size_bytes)
                .max(new_item.as_ref().map_or(0, item_size_bytes)),
        ) + index_writes.write_units;
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
        })
    }

    pub(super) async fn serve_writes(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        writes: Vec<WriteRequest>,
        batch: bool,
    ) -> Result<(), PartitionError> {
        if self.core.role() != RoleKind::Leader {
            let hint = self.core.leader_hint();
            self.reply(reply_to, not_leader(self.meta.partition, hint));
            return Ok(());
        }
        if !self.core.leader_ready() {
            // Invariant 2 needs every slot before this leader's own proposals applied: entries
            // of earlier ballots recovered in phase 1 are in no overlay. Ready once the
            // leader's no-op commits, moments after the election.
            self.reply(
                reply_to,
                NodeResponse::Error(NodeError::Busy {
                    partition: self.meta.partition,
                }),
            );
            return Ok(());
        }
        let mut evaluated: Vec<Evaluated> = Vec::with_capacity(writes.len());
        for write in &writes {
            let (old_item, mut overlay_slot) = self.latest_item(&write.storage_key).await?;
            let mut outcome = self.evaluate_write(write, old_item.as_ref());
            if let Ok(result) = &mut outcome
                && let Some(collection_key) = crate::local_index::collection_of(write)
            {
                // The collection's size as this batch left it, else as the leader sees it.
                let before = match evaluated.iter().rev().find_map(|earlier| {
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
                    self.config.item_collection_bytes_max,
                ) {
                    Ok((mutation, collection)) => {
                        result.mutations.push(mutation);
                        result.collection = Some(collection);
                    }
                    Err(refusal) => outcome = Err(refusal),
                }
            }
            match outcome {
                Ok(result) => evaluated.push(result),
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
        let mut mutations = MutationBatch {
            mutations: evaluated
                .iter()
                .flat_map(|result| result.mutations.iter().cloned())
                .collect(),
        };
        // Evaluated against this leader's view of every slot before it (invariant 6).
        mutations.mutations.push(self.chain_requirement().await?);
        let payload = mutations.encode();
        let proposed = match self.core.propose(now, payload.clone()) {
            Ok(proposed) => proposed,
            Err(ProposeError::NotLeader { leader_hint }) => {
                self.reply(reply_to, not_leader(self.meta.partition, leader_hint));
                return Ok(());
            }
            Err(ProposeError::CommandTooLarge { .. }) => {
                self.reply(
                    reply_to,
                    dynamo_error(&ModelError::Validation(
                        shoal_model::messages::ITEM_TOO_LARGE.to_string(),
                    )),
                );
                return Ok(());
            }
            Err(
                ProposeError::LeaderNotReady
                | ProposeError::Backpressure
                | ProposeError::MembershipChangeInProgress
                | ProposeError::Membership(_),
            ) => {
                self.reply(
                    reply_to,
                    NodeResponse::Error(NodeError::Busy {
                        partition: self.meta.partition,
                    }),
                );
                return Ok(());
            }
        };
        let write_units: u64 = evaluated.iter().map(|result| result.write_units).sum();
        let result = match (&evaluated[..], batch) {
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
            _ => crate::local_index::batch_result(
                writes
                    .iter()
                    .zip(&evaluated)
                    .filter_map(|(write, result)| Some((write, result.collection.as_ref()?.1))),
                &self.meta.key_schema,
            ),
        };
        for (write, result) in writes.iter().zip(evaluated) {
            if let Some((key, bytes)) = result.collection {
                let record = (bytes > 0).then(|| shoal_model::index::collection_record(bytes));
                self.overlay.insert(key, (proposed.slot, record));
            }
            self.overlay
                .insert(write.storage_key.clone(), (proposed.slot, result.new_item));
        }
        self.waiting.insert(
            proposed.slot,
            Waiter {
                reply_to: Some(reply_to),
                payload,
                response: item_response(result, 0, write_units * 1000),
            },
        );
        self.execute(now, proposed.actions).await
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
                _ => Some(self.node),
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
                last_evaluated = Some(self.meta.key_schema.key_of(&item));
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
