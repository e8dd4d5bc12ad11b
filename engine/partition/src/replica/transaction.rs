//! Transactions at a partition leader (shoal-model `transaction` has the protocol and its
//! invariants): prepares that lock items through the log, finishes that commit or cancel
//! them, the two reads of a TransactGetItems, and the lock listing of the recovery loop.
//!
//! The leader keeps the applied locks in memory (`TransactionState::locks`, read from the
//! tree's lock region when first needed after the tree is opened or replaced, then kept by
//! `apply`), so a single-item write checks for a lock without reading the tree; locks
//! proposed and not applied yet are in the overlay like items.
//!
//! A TransactGetItems over several partitions reads each (one event each, so one instant per
//! partition) and then asks each whether any of its items, or its lock, changed since: the
//! leader remembers the slot of the latest change of recently changed keys
//! (`RecentChanges`), and answers "changed" when it cannot tell. If none changed, every item
//! had the value read at the instant between the two rounds, and none was locked then (a lock
//! taken or released is a change), so no transaction was half applied among them.

use std::collections::{HashMap, VecDeque};

use shoal_model::request::TransactAction;
use shoal_model::transaction::{
    CancellationCode, LOCK_LISTING_MAX, Lock, LockedChange, TRANSACTION_CONFLICT_MESSAGE,
    TRANSACTION_CONFLICT_REASON, TransactionRef, lock_key, lock_region, locked_storage_key,
};
use shoal_wire::messages::{CancellationReasonWire, LockWire};

use super::*;

/// Keys whose latest change a replica remembers for TransactGetItems' second round. Past
/// it, the oldest are forgotten and a confirm about a slot before them answers "changed" (the
/// TransactGetItems is cancelled with TransactionConflict and retried by the client); its two
/// rounds are milliseconds apart, so only a partition taking more writes than this in that
/// time cancels them.
pub const RECENT_CHANGES_MAX: usize = 65_536;
/// Bytes of one commit entry, roughly, past which a finish leaves the rest of its locks to
/// the next entries: a transaction of 4 MB in one partition commits in several, each well
/// within the log's command limit (each item's commit is still atomic; readers other than
/// TransactGetItems may see some of a partition's items committed before others, as
/// DynamoDB's read-committed isolation allows).
pub const FINISH_ENTRY_BYTES_MAX: usize = 1024 * 1024;
/// Bytes of lock records one prepare writes, past which it locks only the actions before
/// and says so (`locked`); the coordinator sends the rest again. Lock records hold the items
/// as the actions leave them, which only the leader knows (an Update's result).
pub const PREPARE_ENTRY_BYTES_MAX: usize = 1024 * 1024;

/// Bytes of one commit log entry past which a prepare refuses the action (ValidationError):
/// its commit (item, index entries, outbox records, stream images) must fit one command, with
/// room for the entry's bookkeeping (chain record, lock removal, stream record headers).
pub const COMMIT_ENTRY_BYTES_MAX: usize = shoal_replication::limits::COMMAND_BYTES_MAX - 64 * 1024;

/// The bytes a write's commit adds to a log entry, roughly: its mutations, its outbox records
/// and, with a stream, both images.
fn commit_bytes(result: &Evaluated, old_item: Option<&Item>, streamed: bool) -> usize {
    result
        .mutations
        .iter()
        .map(|mutation| match mutation {
            Mutation::Put { key, value } => key.len() + value.len(),
            other => other.key().len(),
        })
        .sum::<usize>()
        + result
            .global_changes
            .iter()
            .map(|change| change.entry_key.len() + change_bytes(change))
            .sum::<usize>()
        + if streamed {
            old_item.map_or(0, item_size_bytes)
                + result.new_item.as_ref().map_or(0, item_size_bytes)
        } else {
            0
        }
}

fn change_bytes(change: &shoal_model::index::global::GlobalIndexChange) -> usize {
    match &change.change {
        shoal_model::index::global::EntryChange::Put(item) => item.len(),
        shoal_model::index::global::EntryChange::Delete => 0,
    }
}

/// The answer to a write whose item a prepared transaction holds (transaction invariant 2).
pub(super) fn transaction_conflict() -> NodeResponse {
    NodeResponse::Error(NodeError::Dynamo {
        type_name: "TransactionConflictException".to_string(),
        message: TRANSACTION_CONFLICT_MESSAGE.to_string(),
        item: None,
    })
}

fn reason(code: CancellationCode, message: &str, item: Option<Vec<u8>>) -> CancellationReasonWire {
    CancellationReasonWire {
        code: code.code(),
        message: message.to_string(),
        item,
    }
}

fn passed() -> CancellationReasonWire {
    reason(CancellationCode::None, "", None)
}

/// The slots of recent changes to items and their locks, by item storage key.
/// Keys are remembered by a 64-bit hash, so the memory is bounded whatever the key sizes (16
/// bytes an entry twice, about 2 MiB at the bound); two keys sharing a hash only make a
/// confirm answer "changed" more often, which is safe.
#[derive(Debug)]
pub(super) struct RecentChanges {
    /// Changes at slots above this are all remembered.
    floor: u64,
    latest: HashMap<u64, u64>,
    order: VecDeque<(u64, u64)>,
}

fn key_hash(storage_key: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    storage_key.hash(&mut hasher);
    hasher.finish()
}

impl RecentChanges {
    pub(super) fn new(floor: Slot) -> RecentChanges {
        RecentChanges {
            floor: floor.0,
            latest: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn record(&mut self, slot: u64, storage_key: &[u8]) {
        let key = key_hash(storage_key);
        self.latest.insert(key, slot);
        self.order.push_back((slot, key));
        while self.order.len() > RECENT_CHANGES_MAX {
            let Some((forgotten, key)) = self.order.pop_front() else {
                break;
            };
            if self.latest.get(&key) == Some(&forgotten) {
                self.latest.remove(&key);
            }
            self.floor = self.floor.max(forgotten);
        }
    }

    /// Whether none of `keys` changed after `since`; `false` when that is not known.
    fn unchanged_since(&self, keys: &[Vec<u8>], since: u64) -> bool {
        since >= self.floor
            && keys.iter().all(|key| {
                self.latest
                    .get(&key_hash(key))
                    .is_none_or(|slot| *slot <= since)
            })
    }
}

/// A replica's transaction bookkeeping.
#[derive(Debug)]
pub(super) struct TransactionState {
    /// The applied locks by item storage key; `None` until read from the tree.
    locks: Option<BTreeMap<Vec<u8>, Lock>>,
    recent: RecentChanges,
}

impl TransactionState {
    pub(super) fn new(applied: Slot) -> TransactionState {
        TransactionState {
            locks: None,
            recent: RecentChanges::new(applied),
        }
    }

    /// The tree was replaced at `applied` (a snapshot install): locks are read again, and
    /// nothing before it is known to be unchanged.
    pub(super) fn forget_applied(&mut self, applied: Slot) {
        *self = TransactionState::new(applied);
    }

    /// Keeps the locks and recent changes as an applied batch leaves them.
    pub(super) fn applied(&mut self, slot: Slot, batch: &MutationBatch) -> Result<(), String> {
        for mutation in &batch.mutations {
            let key = mutation.key();
            if let Some(storage_key) = locked_storage_key(key) {
                self.recent.record(slot.0, storage_key);
                let Some(locks) = &mut self.locks else {
                    continue;
                };
                match mutation {
                    Mutation::Put { value, .. } => {
                        let lock = decode_lock(value)?;
                        locks.insert(storage_key.to_vec(), lock);
                    }
                    _ => {
                        locks.remove(storage_key);
                    }
                }
            } else if !key.starts_with(&shoal_model::index::INDEX_REGION_PREFIX) {
                self.recent.record(slot.0, key);
            }
        }
        Ok(())
    }
}

fn decode_lock(value: &[u8]) -> Result<Lock, String> {
    decode_item(value)
        .ok()
        .as_ref()
        .and_then(Lock::from_record)
        .ok_or_else(|| "a lock record that does not decode".to_string())
}

impl<F: Storage, D: StorageDirectory<File = F>> PartitionReplica<F, D> {
    /// The applied locks, read from the tree's lock region the first time after it was
    /// opened or replaced.
    async fn applied_locks(&mut self) -> Result<&BTreeMap<Vec<u8>, Lock>, PartitionError> {
        if self.transactions.locks.is_none() {
            let (start, end) = lock_region();
            let mut locks = BTreeMap::new();
            let mut lower = Bound::Included(start.to_vec());
            // Each pass moves past the keys it read; the region is finite, so the loop ends.
            loop {
                let batch = self
                    .engine
                    .scan(
                        lower.clone(),
                        Bound::Excluded(end.to_vec()),
                        Direction::Forward,
                        RANGE_SCAN_BATCH_ITEMS,
                    )
                    .await?;
                let exhausted = batch.len() < RANGE_SCAN_BATCH_ITEMS;
                for (key, value) in batch {
                    let lock = decode_lock(&value).map_err(|error| {
                        PartitionError::Corrupt(format!(
                            "partition {}: {error}",
                            self.meta.partition
                        ))
                    })?;
                    if let Some(storage_key) = locked_storage_key(&key) {
                        locks.insert(storage_key.to_vec(), lock);
                    }
                    lower = Bound::Excluded(key);
                }
                if exhausted {
                    break;
                }
            }
            self.transactions.locks = Some(locks);
        }
        Ok(self.transactions.locks.get_or_insert_default())
    }

    /// Whether any item may be locked: some lock applied, or one proposed (the overlay holds
    /// a key of the lock region). `true` while the applied locks are not read yet.
    pub(super) fn locks_possible(&self) -> bool {
        let applied = self
            .transactions
            .locks
            .as_ref()
            .is_none_or(|locks| !locks.is_empty());
        applied || self.proposed_locks().next().is_some()
    }

    /// The overlay's entries in the lock region: locks proposed (or their removals) and not
    /// applied yet.
    fn proposed_locks(&self) -> impl Iterator<Item = (&Vec<u8>, &(Slot, Option<Item>))> {
        let (start, end) = lock_region();
        self.overlay
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
    }

    /// The lock on the item at `storage_key` as the leader sees it: its own proposals in
    /// flight first (invariant 2), then the applied locks.
    pub(super) async fn latest_lock(
        &mut self,
        storage_key: &[u8],
    ) -> Result<Option<Lock>, PartitionError> {
        if let Some((_, record)) = self.overlay.get(&lock_key(storage_key)) {
            return match record {
                None => Ok(None),
                Some(record) => Lock::from_record(record).map(Some).ok_or_else(|| {
                    PartitionError::Corrupt(format!(
                        "partition {}: a proposed lock that is not one",
                        self.meta.partition
                    ))
                }),
            };
        }
        Ok(self.applied_locks().await?.get(storage_key).cloned())
    }

    /// Phase 1: every action checked against the latest state; if all pass, one log entry
    /// writes their locks (transaction invariants 1, 2 and 4).
    pub(super) async fn serve_transact_prepare(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        transaction: TransactionRef,
        actions: Vec<TransactAction>,
        unix_ms: u64,
    ) -> Result<(), PartitionError> {
        if let Some(refusal) = self.refuse_write() {
            self.reply(reply_to, refusal);
            return Ok(());
        }
        let mut reasons = Vec::with_capacity(actions.len());
        let mut new_locks: Vec<(Vec<u8>, Item)> = Vec::new();
        let mut latest_overlay_slot: Option<Slot> = None;
        let mut write_milli = 0u64;
        let mut index_milli: BTreeMap<(bool, u8), u64> = BTreeMap::new();
        let mut evaluated: Vec<Evaluated> = Vec::new();
        let mut lock_bytes = 0usize;
        let mut locked = actions.len();
        for (position, action) in actions.iter().enumerate() {
            let write = &action.write;
            match self.latest_lock(&write.storage_key).await? {
                Some(lock) if lock.transaction == transaction => {
                    // A repeated prepare (invariant 4): already held; answered once applied.
                    let (_, slot) = self.latest_item(&lock_key(&write.storage_key)).await?;
                    latest_overlay_slot = latest_overlay_slot.max(slot);
                    reasons.push(passed());
                    continue;
                }
                Some(_) => {
                    reasons.push(reason(
                        CancellationCode::TransactionConflict,
                        TRANSACTION_CONFLICT_REASON,
                        None,
                    ));
                    continue;
                }
                None => {}
            }
            let (outcome, old_item, overlay_slot) = self
                .evaluate_in_batch(write, &evaluated, self.config.item_collection_bytes_max)
                .await?;
            latest_overlay_slot = latest_overlay_slot.max(overlay_slot);
            let result = match outcome {
                Ok(result) => result,
                Err(NodeResponse::Error(NodeError::Dynamo {
                    type_name,
                    message,
                    item,
                })) => {
                    reasons.push(reason(
                        CancellationCode::of_exception(&type_name),
                        &message,
                        item,
                    ));
                    continue;
                }
                Err(other) => {
                    // Not a verdict on the action (never produced by an evaluation today):
                    // answered as it is.
                    self.reply(reply_to, other);
                    return Ok(());
                }
            };
            if !action.check_only {
                // The commit must fit one log entry, or it could never be applied.
                let stream = self.stream_config().await?;
                if commit_bytes(&result, old_item.as_ref(), stream.is_some())
                    > COMMIT_ENTRY_BYTES_MAX
                {
                    reasons.push(reason(
                        CancellationCode::ValidationError,
                        shoal_model::messages::ITEM_TOO_LARGE,
                        None,
                    ));
                    continue;
                }
                // The table's GSIs are far behind: throttled, as its single writes are.
                let additions = result.global_changes.len() as u64;
                if additions > 0
                    && self.outbox_entries() + additions
                        > shoal_model::index::global::OUTBOX_ENTRIES_MAX
                {
                    reasons.push(reason(
                        CancellationCode::ProvisionedThroughputExceeded,
                        shoal_model::index::global::GSI_BACKPRESSURE,
                        None,
                    ));
                    continue;
                }
            }
            let change = if action.check_only {
                LockedChange::Check
            } else {
                match (&old_item, &result.new_item) {
                    (_, Some(new)) => LockedChange::Put(new.clone()),
                    (Some(_), None) => LockedChange::Delete,
                    (None, None) => LockedChange::Check,
                }
            };
            let record = Lock {
                transaction: transaction.clone(),
                prepared_at_ms: unix_ms,
                key: write.key.clone(),
                change,
            }
            .to_record();
            if encode_item(&record).len() > self.config.btree.value_bytes_max {
                reasons.push(reason(
                    CancellationCode::ValidationError,
                    shoal_model::messages::ITEM_TOO_LARGE,
                    None,
                ));
                continue;
            }
            let record_bytes = write.storage_key.len() + encode_item(&record).len();
            if !new_locks.is_empty() && lock_bytes + record_bytes > PREPARE_ENTRY_BYTES_MAX {
                // The rest in the coordinator's next prepare (`locked` says where it starts).
                locked = position;
                break;
            }
            lock_bytes += record_bytes;
            // Transactional writes cost twice their units (prepare and commit), index
            // changes once; a ConditionCheck changes no index.
            let index_units: u64 = result.index_write_units.iter().sum::<u64>()
                + result.global_write_units.iter().sum::<u64>();
            write_milli += 2 * result.write_units.saturating_sub(index_units) * 1000;
            if !action.check_only {
                write_milli += index_units * 1000;
                for (number, units) in (0u8..).zip(&result.index_write_units) {
                    *index_milli.entry((false, number)).or_default() += units * 1000;
                }
                for (index, units) in write.global_indexes.iter().zip(&result.global_write_units) {
                    *index_milli.entry((true, index.number)).or_default() += units * 1000;
                }
            }
            new_locks.push((lock_key(&write.storage_key), record));
            if !action.check_only {
                evaluated.push(result);
            }
            reasons.push(passed());
        }
        let index_write_units_milli: Vec<IndexWriteUnits> = index_milli
            .into_iter()
            .filter(|(_, milli)| *milli > 0)
            .map(|((global, number), milli)| IndexWriteUnits {
                global,
                number,
                milli,
            })
            .collect();
        // Actions after `locked` were not looked at: answered `None` for now.
        reasons.resize(actions.len(), passed());
        let locked = u32::try_from(locked).unwrap_or(u32::MAX);
        let prepared = |reasons| ItemResult::TransactPrepared {
            reasons,
            index_write_units_milli: index_write_units_milli.clone(),
            locked,
        };
        let refused = reasons
            .iter()
            .any(|reason| reason.code != CancellationCode::None.code());
        if refused || new_locks.is_empty() {
            // Nothing to propose: the answer describes the state evaluated, so it waits for
            // the overlay entry it read, or needs the lease (invariant 5).
            let response = item_response(prepared(reasons), 0, write_milli);
            match latest_overlay_slot {
                Some(slot) => self
                    .deferred
                    .entry(slot)
                    .or_default()
                    .push((reply_to, response)),
                None => {
                    let response = match self.check_read(now, true) {
                        Ok(()) => response,
                        Err(refusal) => refusal,
                    };
                    self.reply(reply_to, response);
                }
            }
            return Ok(());
        }
        let batch = MutationBatch {
            mutations: new_locks
                .iter()
                .map(|(key, record)| Mutation::Put {
                    key: key.clone(),
                    value: encode_item(record),
                })
                .collect(),
        };
        let response = item_response(prepared(reasons), 0, write_milli);
        let Some((slot, proposed)) = self.propose_batch(now, reply_to, batch, response).await?
        else {
            return Ok(());
        };
        for (key, record) in new_locks {
            self.overlay.insert(key, (slot, Some(record)));
        }
        self.execute(now, proposed).await
    }

    /// The transaction's locks here, as the leader sees them (proposals in flight included),
    /// by item storage key.
    async fn locks_of(
        &mut self,
        transaction: &TransactionRef,
    ) -> Result<Vec<(Vec<u8>, Lock)>, PartitionError> {
        let mut keys: Vec<Vec<u8>> = self
            .applied_locks()
            .await?
            .iter()
            .filter(|(_, lock)| lock.transaction == *transaction)
            .map(|(key, _)| key.clone())
            .collect();
        keys.extend(
            self.proposed_locks()
                .filter_map(|(key, _)| locked_storage_key(key).map(<[u8]>::to_vec)),
        );
        keys.sort_unstable();
        keys.dedup();
        let mut held = Vec::new();
        for key in keys {
            if let Some(lock) = self.latest_lock(&key).await?
                && lock.transaction == *transaction
            {
                held.push((key, lock));
            }
        }
        Ok(held)
    }

    /// Phase 2: the transaction's locks here committed (each item replaced by its image, with
    /// the index, outbox and stream records of any write) or cancelled, and removed, in one
    /// log entry. A finish that finds no lock of the transaction is done already.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn serve_transact_finish(
        &mut self,
        now: MonotonicTime,
        reply_to: u64,
        transaction: TransactionRef,
        commit: bool,
        local_indexes: Vec<shoal_model::index::LocalIndex>,
        global_indexes: Vec<shoal_model::index::global::GlobalIndex>,
        unix_ms: u64,
    ) -> Result<(), PartitionError> {
        if let Some(refusal) = self.refuse_write() {
            self.reply(reply_to, refusal);
            return Ok(());
        }
        let held = self.locks_of(&transaction).await?;
        if held.is_empty() {
            // Done already; but a lock removal still in flight (this transaction's, from an
            // earlier finish) must apply before "finished" is true for readers.
            let pending = self
                .proposed_locks()
                .filter(|(_, (_, record))| record.is_none())
                .map(|(_, (slot, _))| *slot)
                .max();
            let finished = item_response(
                ItemResult::TransactFinished {
                    more: false,
                    collections: Vec::new(),
                },
                0,
                0,
            );
            match pending {
                Some(slot) => self
                    .deferred
                    .entry(slot)
                    .or_default()
                    .push((reply_to, finished)),
                None => {
                    let response = match self.check_read(now, true) {
                        Ok(()) => finished,
                        Err(refusal) => refusal,
                    };
                    self.reply(reply_to, response);
                }
            }
            return Ok(());
        }
        let stream = if commit {
            self.stream_config().await?
        } else {
            None
        };
        let mut evaluated: Vec<Evaluated> = Vec::new();
        let mut stream_changes: Vec<(Option<Item>, Option<Item>)> = Vec::new();
        let mut written: Vec<Vec<u8>> = Vec::new();
        let mut finishing: Vec<Vec<u8>> = Vec::new();
        let mut collection_writes: Vec<Option<WriteRequest>> = Vec::new();
        let mut entry_bytes = 0usize;
        let mut more = false;
        for (storage_key, lock) in &held {
            let kind = match (&lock.change, commit) {
                (LockedChange::Put(item), true) => WriteKind::Put(item.clone()),
                (LockedChange::Delete, true) => WriteKind::Delete,
                _ => {
                    finishing.push(storage_key.clone());
                    continue;
                }
            };
            let write = WriteRequest {
                key: lock.key.clone(),
                storage_key: storage_key.clone(),
                kind,
                condition: None,
                return_values: shoal_model::expression::update::ReturnValues::None,
                return_old_on_condition_failure: false,
                local_indexes: local_indexes.clone(),
                global_indexes: global_indexes.clone(),
            };
            // A committed transaction cannot be refused: the collection limit was checked at
            // prepare, and nothing changed the item since (invariant 2). What can differ from
            // the prepare is the table's global indexes (one added since, whose key this item
            // has with another type): such an index skips the item, as its backfill would.
            let (mut outcome, mut old_item, _) =
                self.evaluate_in_batch(&write, &evaluated, u64::MAX).await?;
            if outcome.is_err() && !write.global_indexes.is_empty() {
                let mut narrowed = write.clone();
                narrowed.global_indexes.retain(|index| {
                    shoal_model::index::global::global_changes(
                        std::slice::from_ref(index),
                        &self.meta.key_schema,
                        &write.storage_key,
                        old_item.as_ref(),
                        match &write.kind {
                            WriteKind::Put(item) => Some(item),
                            _ => None,
                        },
                    )
                    .is_ok()
                });
                (outcome, old_item, _) = self
                    .evaluate_in_batch(&narrowed, &evaluated, u64::MAX)
                    .await?;
            }
            let result = match outcome {
                Ok(result) => result,
                Err(refusal) => {
                    // Never a reason to stop the replica: the lock stays, and the finish is
                    // answered with the refusal (the coordinator and recovery try again).
                    tracing::error!(
                        partition = self.meta.partition,
                        ?refusal,
                        "a prepared write cannot be committed"
                    );
                    self.reply(reply_to, refusal);
                    return Ok(());
                }
            };
            let bytes = commit_bytes(&result, old_item.as_ref(), stream.is_some());
            if !written.is_empty() && entry_bytes + bytes > FINISH_ENTRY_BYTES_MAX {
                // The rest in the next entries (the coordinator asks again while `more`).
                more = true;
                break;
            }
            entry_bytes += bytes;
            if stream.is_some() {
                stream_changes.push((old_item, result.new_item.clone()));
            }
            written.push(storage_key.clone());
            finishing.push(storage_key.clone());
            collection_writes.push(result.collection.is_some().then_some(write));
            evaluated.push(result);
        }
        let mut batch = self.write_batch(&evaluated, stream, &stream_changes, unix_ms);
        batch
            .mutations
            .extend(finishing.iter().map(|storage_key| Mutation::Delete {
                key: lock_key(storage_key),
            }));
        // Each item collection written, with its size after this entry (the last write to
        // it in the batch has the final size).
        let mut collections: Vec<CollectionSize> = Vec::new();
        for (write, result) in collection_writes.iter().zip(&evaluated) {
            let (Some(write), Some((_, bytes))) = (write, &result.collection) else {
                continue;
            };
            let key = encode_item(&crate::local_index::collection_key_item(
                write,
                &self.meta.key_schema,
            ));
            match collections.iter_mut().find(|size| size.key == key) {
                Some(size) => size.bytes = *bytes,
                None => collections.push(CollectionSize { key, bytes: *bytes }),
            }
        }
        let finished = item_response(ItemResult::TransactFinished { more, collections }, 0, 0);
        let Some((slot, proposed)) = self.propose_batch(now, reply_to, batch, finished).await?
        else {
            return Ok(());
        };
        for (storage_key, result) in written.into_iter().zip(evaluated) {
            if let Some((key, bytes)) = result.collection {
                let record = (bytes > 0).then(|| shoal_model::index::collection_record(bytes));
                self.overlay.insert(key, (slot, record));
            }
            self.overlay.insert(storage_key, (slot, result.new_item));
        }
        for storage_key in finishing {
            self.overlay.insert(lock_key(&storage_key), (slot, None));
        }
        self.execute(now, proposed).await
    }

    /// A TransactGetItems' read here: the items as applied (committed values only), whether a
    /// transaction holds any of them, and the slot read at. Transactional reads cost twice a
    /// strongly consistent read, a missing item too.
    pub(super) async fn serve_transact_read(
        &mut self,
        now: MonotonicTime,
        gets: &[GetRequest],
    ) -> Result<NodeResponse, PartitionError> {
        if let Err(refusal) = self.check_read(now, true) {
            return Ok(refusal);
        }
        let mut items = Vec::with_capacity(gets.len());
        let mut read_milli = 0;
        let mut locked = false;
        for get in gets {
            locked |= self.applied_locks().await?.contains_key(&get.storage_key);
            let item = self.stored_item(&get.storage_key).await?;
            read_milli += 2 * read_units_milli(item.as_ref().map_or(0, item_size_bytes), true);
            items.push(item.map(|item| {
                encode_item(&match &get.projection {
                    Some(paths) => project(&item, paths),
                    None => item,
                })
            }));
        }
        Ok(item_response(
            ItemResult::TransactRead {
                items,
                locked,
                applied_slot: self.applied_slot.0,
            },
            read_milli,
            0,
        ))
    }

    /// A TransactGetItems' second look: whether none of `keys` nor their locks changed after
    /// `since` (see the module's comment).
    pub(super) fn serve_transact_confirm(
        &self,
        now: MonotonicTime,
        keys: &[Vec<u8>],
        since: u64,
    ) -> NodeResponse {
        if let Err(refusal) = self.check_read(now, true) {
            return refusal;
        }
        let unchanged = self.transactions.recent.unchanged_since(keys, since);
        item_response(ItemResult::TransactConfirmed { unchanged }, 0, 0)
    }

    /// The transactions holding locks here prepared before `prepared_before_ms`, one entry
    /// per transaction, at most [`LOCK_LISTING_MAX`].
    pub(super) async fn serve_transact_locks(
        &mut self,
        now: MonotonicTime,
        prepared_before_ms: u64,
    ) -> Result<NodeResponse, PartitionError> {
        if let Err(refusal) = self.check_read(now, true) {
            return Ok(refusal);
        }
        let mut seen: BTreeMap<(String, u64), u64> = BTreeMap::new();
        for lock in self.applied_locks().await?.values() {
            if lock.prepared_at_ms >= prepared_before_ms {
                continue;
            }
            let entry = (lock.transaction.ledger_key.clone(), lock.transaction.nonce);
            if seen.len() == LOCK_LISTING_MAX && !seen.contains_key(&entry) {
                break;
            }
            let oldest = seen.entry(entry).or_insert(lock.prepared_at_ms);
            *oldest = (*oldest).min(lock.prepared_at_ms);
        }
        let locks = seen
            .into_iter()
            .map(|((ledger_key, nonce), prepared_at_ms)| LockWire {
                ledger_key,
                nonce,
                prepared_at_ms,
            })
            .collect();
        Ok(item_response(ItemResult::TransactLocks { locks }, 0, 0))
    }

    /// The number of locks applied here (status and tests); `None` until read.
    pub fn applied_lock_count(&self) -> Option<usize> {
        self.transactions.locks.as_ref().map(BTreeMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_changes_answer_changed_when_they_cannot_tell() {
        let mut recent = RecentChanges::new(Slot(10));
        assert!(recent.unchanged_since(&[b"a".to_vec()], 10));
        assert!(
            !recent.unchanged_since(&[b"a".to_vec()], 9),
            "before the floor"
        );
        recent.record(11, b"a");
        assert!(!recent.unchanged_since(&[b"a".to_vec()], 10));
        assert!(recent.unchanged_since(&[b"a".to_vec()], 11));
        assert!(recent.unchanged_since(&[b"b".to_vec()], 10));
        for slot in 12..12 + RECENT_CHANGES_MAX as u64 {
            recent.record(slot, &slot.to_le_bytes());
        }
        // The change to "a" at 11 is forgotten: a question from before it cannot be answered.
        assert!(!recent.unchanged_since(&[b"a".to_vec()], 10));
        assert!(recent.unchanged_since(&[b"a".to_vec()], 11));
        assert_eq!(recent.order.len(), RECENT_CHANGES_MAX);
    }
}
