//! Transactions (TransactWriteItems, TransactGetItems): their limits, the per-item lock records
//! a prepared transaction leaves in its partitions, and the cancellation reasons partitions
//! answer with.
//!
//! A write transaction runs in two phases, coordinated by a router (router/server
//! `router/transactions.rs`) with a ledger record per transaction as its one commit point:
//! 1. *Prepare*: each partition leader checks its actions (conditions against the latest
//!    state, no other transaction's lock, the write evaluated) and, if all pass, writes one
//!    lock record per item through its log: the transaction, the item's key and the item as
//!    the action leaves it. The item itself is unchanged.
//! 2. *Finish*: once the ledger says COMMITTED, each leader replaces each item by its lock's
//!    image (with the index entries, outbox records and stream records any write makes) and
//!    removes the lock, in one log entry; once it says CANCELLED, it removes the locks.
//!
//! Invariants:
//! 1. An item has at most one lock, and only the transaction holding it finishes it (a finish
//!    names the transaction; locks of others are left alone).
//! 2. While an item is locked, nothing else changes it: single-item and batch writes are
//!    refused with TransactionConflictException, other transactions' prepares with a
//!    TransactionConflict reason, and the Time to Live sweeper passes it by. So the image a
//!    lock holds is still the action's outcome when the commit applies it.
//! 3. Readers see committed items only: a lock is not an item (its key is in the tree's
//!    reserved region, layout in FORMAT.md), so GetItem, Query, Scan and BatchGetItem read
//!    around it, as DynamoDB's read-committed isolation documents.
//! 4. A prepare or finish repeated (a retry, a recovery racing the coordinator) changes
//!    nothing more: a prepare finds its own locks, a finish finds none. What this rests on: a
//!    prepare is never delivered again once its transaction may have finished at that
//!    partition (the router resends a write only when it was certainly not applied, and the
//!    bus does not duplicate), since a prepare arriving after its commit would lock the item
//!    anew with an image evaluated after the commit, and recovery would commit that one too.

use crate::index::INDEX_REGION_PREFIX;
use crate::value::{AttributeValue, Item};

/// DynamoDB's limit of actions in one TransactWriteItems or TransactGetItems.
pub const TRANSACT_ITEMS_MAX: usize = 100;
/// DynamoDB's limit on a TransactWriteItems' aggregate item size.
pub const TRANSACTION_BYTES_MAX: usize = 4 * 1024 * 1024;
/// ClientRequestToken length bounds (DynamoDB's API model).
pub const CLIENT_REQUEST_TOKEN_BYTES_MIN: usize = 1;
pub const CLIENT_REQUEST_TOKEN_BYTES_MAX: usize = 36;
/// How long a ClientRequestToken is remembered after its transaction finished (DynamoDB's
/// 10 minutes).
pub const CLIENT_REQUEST_TOKEN_MEMORY_MS: u64 = 10 * 60 * 1000;
/// Locks answered by one lock listing (the recovery loop asks again for the rest).
pub const LOCK_LISTING_MAX: usize = 1000;

/// The byte after [`INDEX_REGION_PREFIX`] that starts the lock records (after the stream
/// region's 0xF5-0xFA, before the GSI outbox's 0xFB-0xFD).
pub const LOCK_MARKER: u8 = 0xF4;
const _: () = assert!(LOCK_MARKER < crate::stream::CONFIG_MARKER);

/// Attributes of a lock record (stored in the item encoding, so the leader's overlay holds
/// it like an item).
const TRANSACTION_ATTRIBUTE: &str = "txn";
const NONCE_ATTRIBUTE: &str = "nonce";
const PREPARED_AT_ATTRIBUTE: &str = "at";
const KEY_ATTRIBUTE: &str = "key";
const OPERATION_ATTRIBUTE: &str = "op";
const NEW_ITEM_ATTRIBUTE: &str = "new";

/// One attempt of one transaction: its ledger record's key and the attempt's nonce (a token
/// retried after a cancellation runs again under a new nonce, so a late prepare of the first
/// attempt is told apart).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransactionRef {
    pub ledger_key: String,
    pub nonce: u64,
}

/// What a prepared action does to its item at commit.
#[derive(Clone, Debug, PartialEq)]
pub enum LockedChange {
    /// The item becomes this (a Put, or an Update's result).
    Put(Item),
    /// The item is deleted (a Delete, or an Update of a missing item that creates nothing).
    Delete,
    /// A ConditionCheck: the item stays as it is; the lock only holds it still.
    Check,
}

/// A lock record: an item held by a prepared transaction (module invariants 1 and 2).
#[derive(Clone, Debug, PartialEq)]
pub struct Lock {
    pub transaction: TransactionRef,
    /// The leader's wall clock when it prepared, unix ms: the recovery loop resolves locks
    /// older than its threshold through the ledger.
    pub prepared_at_ms: u64,
    /// The item's key attributes.
    pub key: Item,
    pub change: LockedChange,
}

/// The key of the lock record of the item at `storage_key` (FORMAT.md, "Transaction locks").
pub fn lock_key(storage_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(INDEX_REGION_PREFIX.len() + 1 + storage_key.len());
    key.extend_from_slice(&INDEX_REGION_PREFIX);
    key.push(LOCK_MARKER);
    key.extend_from_slice(storage_key);
    key
}

/// The item storage key a lock record key names; `None` for a key outside the lock region.
pub fn locked_storage_key(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(&INDEX_REGION_PREFIX[..])?
        .strip_prefix(&[LOCK_MARKER])
}

/// The region prefix followed by `marker`: a bound of the lock region.
const fn region_bound(marker: u8) -> [u8; INDEX_REGION_PREFIX.len() + 1] {
    let mut bound = [marker; INDEX_REGION_PREFIX.len() + 1];
    let mut position = 0;
    while position < INDEX_REGION_PREFIX.len() {
        bound[position] = INDEX_REGION_PREFIX[position];
        position += 1;
    }
    bound
}

const LOCK_REGION_START: [u8; INDEX_REGION_PREFIX.len() + 1] = region_bound(LOCK_MARKER);
const LOCK_REGION_END: [u8; INDEX_REGION_PREFIX.len() + 1] = region_bound(LOCK_MARKER + 1);

/// The lock region's bounds: `[start, end)`. Static, so a single-item write that looks for a
/// proposed lock allocates nothing.
pub fn lock_region() -> (&'static [u8], &'static [u8]) {
    (&LOCK_REGION_START, &LOCK_REGION_END)
}

impl Lock {
    /// The record's content, as an item.
    pub fn to_record(&self) -> Item {
        let mut record = Item::new();
        record.insert(
            TRANSACTION_ATTRIBUTE.to_string(),
            AttributeValue::String(self.transaction.ledger_key.clone()),
        );
        record.insert(
            NONCE_ATTRIBUTE.to_string(),
            AttributeValue::Number(crate::Number::from(self.transaction.nonce)),
        );
        record.insert(
            PREPARED_AT_ATTRIBUTE.to_string(),
            AttributeValue::Number(crate::Number::from(self.prepared_at_ms)),
        );
        record.insert(
            KEY_ATTRIBUTE.to_string(),
            AttributeValue::Map(self.key.clone()),
        );
        let operation = match &self.change {
            LockedChange::Put(item) => {
                record.insert(
                    NEW_ITEM_ATTRIBUTE.to_string(),
                    AttributeValue::Map(item.clone()),
                );
                "put"
            }
            LockedChange::Delete => "delete",
            LockedChange::Check => "check",
        };
        record.insert(
            OPERATION_ATTRIBUTE.to_string(),
            AttributeValue::String(operation.to_string()),
        );
        record
    }

    /// A lock from its record; `None` for a record that is not one (the caller reports it as
    /// corruption).
    pub fn from_record(record: &Item) -> Option<Lock> {
        let number = |name: &str| match record.get(name) {
            Some(AttributeValue::Number(number)) => number.to_string().parse::<u64>().ok(),
            _ => None,
        };
        let ledger_key = match record.get(TRANSACTION_ATTRIBUTE) {
            Some(AttributeValue::String(key)) => key.clone(),
            _ => return None,
        };
        let key = match record.get(KEY_ATTRIBUTE) {
            Some(AttributeValue::Map(key)) => key.clone(),
            _ => return None,
        };
        let change = match (
            record.get(OPERATION_ATTRIBUTE),
            record.get(NEW_ITEM_ATTRIBUTE),
        ) {
            (Some(AttributeValue::String(operation)), Some(AttributeValue::Map(item)))
                if operation == "put" =>
            {
                LockedChange::Put(item.clone())
            }
            (Some(AttributeValue::String(operation)), None) if operation == "delete" => {
                LockedChange::Delete
            }
            (Some(AttributeValue::String(operation)), None) if operation == "check" => {
                LockedChange::Check
            }
            _ => return None,
        };
        Some(Lock {
            transaction: TransactionRef {
                ledger_key,
                nonce: number(NONCE_ATTRIBUTE)?,
            },
            prepared_at_ms: number(PREPARED_AT_ATTRIBUTE)?,
            key,
            change,
        })
    }
}

/// Why a transaction's action could not be prepared: DynamoDB's CancellationReason codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancellationCode {
    /// The action passed (DynamoDB sends the literal string "None").
    None,
    ConditionalCheckFailed,
    ItemCollectionSizeLimitExceeded,
    TransactionConflict,
    ProvisionedThroughputExceeded,
    ThrottlingError,
    ValidationError,
}

/// DynamoDB's message of a TransactionConflict reason (its API reference).
pub const TRANSACTION_CONFLICT_REASON: &str = "Transaction is ongoing for the item.";
/// The message of a single-item write refused because a transaction holds its item
/// (TransactionConflictException; users quote it from the service).
pub const TRANSACTION_CONFLICT_MESSAGE: &str = "Transaction is ongoing for the item";

impl CancellationCode {
    pub const ALL: [CancellationCode; 7] = [
        CancellationCode::None,
        CancellationCode::ConditionalCheckFailed,
        CancellationCode::ItemCollectionSizeLimitExceeded,
        CancellationCode::TransactionConflict,
        CancellationCode::ProvisionedThroughputExceeded,
        CancellationCode::ThrottlingError,
        CancellationCode::ValidationError,
    ];

    /// DynamoDB's name of the code.
    pub fn name(self) -> &'static str {
        match self {
            CancellationCode::None => "None",
            CancellationCode::ConditionalCheckFailed => "ConditionalCheckFailed",
            CancellationCode::ItemCollectionSizeLimitExceeded => "ItemCollectionSizeLimitExceeded",
            CancellationCode::TransactionConflict => "TransactionConflict",
            CancellationCode::ProvisionedThroughputExceeded => "ProvisionedThroughputExceeded",
            CancellationCode::ThrottlingError => "ThrottlingError",
            CancellationCode::ValidationError => "ValidationError",
        }
    }

    /// The code's byte on the wire (net/wire).
    pub fn code(self) -> u8 {
        match self {
            CancellationCode::None => 0,
            CancellationCode::ConditionalCheckFailed => 1,
            CancellationCode::ItemCollectionSizeLimitExceeded => 2,
            CancellationCode::TransactionConflict => 3,
            CancellationCode::ProvisionedThroughputExceeded => 4,
            CancellationCode::ThrottlingError => 5,
            CancellationCode::ValidationError => 6,
        }
    }

    pub fn from_code(code: u8) -> Option<CancellationCode> {
        CancellationCode::ALL
            .into_iter()
            .find(|candidate| candidate.code() == code)
    }

    /// The reason code of a single-item exception a prepare met for one action.
    pub fn of_exception(exception: &str) -> CancellationCode {
        match exception {
            "ConditionalCheckFailedException" => CancellationCode::ConditionalCheckFailed,
            "ItemCollectionSizeLimitExceededException" => {
                CancellationCode::ItemCollectionSizeLimitExceeded
            }
            "TransactionConflictException" => CancellationCode::TransactionConflict,
            "ProvisionedThroughputExceededException" => {
                CancellationCode::ProvisionedThroughputExceeded
            }
            "ThrottlingException" => CancellationCode::ThrottlingError,
            _ => CancellationCode::ValidationError,
        }
    }
}

/// TransactionCanceledException's message: one code per action, in action order (verified
/// on the service: localstack's snapshot `test_transaction_write_canceled`).
pub fn cancellation_message(codes: impl IntoIterator<Item = CancellationCode>) -> String {
    let names: Vec<&str> = codes.into_iter().map(CancellationCode::name).collect();
    format!(
        "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Item {
        Item::from([("pk".to_string(), AttributeValue::String("a".to_string()))])
    }

    #[test]
    fn lock_records_round_trip_for_every_change() {
        let mut item = key();
        item.insert(
            "balance".to_string(),
            AttributeValue::Number(crate::Number::from(7u64)),
        );
        for change in [
            LockedChange::Put(item),
            LockedChange::Delete,
            LockedChange::Check,
        ] {
            let lock = Lock {
                transaction: TransactionRef {
                    ledger_key: "t#abc".to_string(),
                    nonce: u64::MAX,
                },
                prepared_at_ms: 1_765_000_000_000,
                key: key(),
                change,
            };
            let bytes = crate::encoding::encode_item(&lock.to_record());
            let decoded = crate::encoding::decode_item(&bytes).unwrap();
            assert_eq!(Lock::from_record(&decoded), Some(lock));
        }
    }

    #[test]
    fn a_record_that_is_not_a_lock_is_refused() {
        assert_eq!(Lock::from_record(&key()), None);
        let mut record = Lock {
            transaction: TransactionRef {
                ledger_key: "x".to_string(),
                nonce: 1,
            },
            prepared_at_ms: 1,
            key: key(),
            change: LockedChange::Delete,
        }
        .to_record();
        record.insert(
            OPERATION_ATTRIBUTE.to_string(),
            AttributeValue::String("put".to_string()),
        );
        assert_eq!(Lock::from_record(&record), None, "a put without its image");
    }

    #[test]
    fn lock_keys_stay_in_their_region_and_name_their_item() {
        let storage_key = vec![0, 1, 2, 3, 4, 5, 6, 7, 0, 1, b'a'];
        let lock = lock_key(&storage_key);
        let (start, end) = lock_region();
        assert!(lock.as_slice() >= start && lock.as_slice() < end);
        assert_eq!(locked_storage_key(&lock), Some(&storage_key[..]));
        assert_eq!(locked_storage_key(&storage_key), None);
        // The region is in the reserved region no item key reaches (index invariant 3).
        assert!(lock.starts_with(&INDEX_REGION_PREFIX));
    }

    #[test]
    fn codes_round_trip_and_the_message_lists_them_in_order() {
        for code in CancellationCode::ALL {
            assert_eq!(CancellationCode::from_code(code.code()), Some(code));
        }
        assert_eq!(
            cancellation_message([
                CancellationCode::None,
                CancellationCode::ConditionalCheckFailed
            ]),
            "Transaction cancelled, please refer cancellation reasons for specific reasons [None, ConditionalCheckFailed]"
        );
        assert_eq!(
            CancellationCode::of_exception("ConditionalCheckFailedException"),
            CancellationCode::ConditionalCheckFailed
        );
        assert_eq!(
            CancellationCode::of_exception("ValidationException"),
            CancellationCode::ValidationError
        );
    }
}
