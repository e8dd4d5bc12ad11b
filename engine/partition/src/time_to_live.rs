//! Time to Live: which items have expired, and the limits of the leader's sweeper.
//!
//! DynamoDB's rules (API reference, UpdateTimeToLive; developer guide, "Time to Live"): an item
//! has expired when its TTL attribute is a top-level Number of epoch seconds less than the
//! current time. Any other type, a missing attribute, or a time more than five years in the
//! past is ignored: the item is never deleted by TTL. Expired items stay readable until the
//! sweeper deletes them.
//!
//! The sweeper (the replica's `sweep_expired`, engine/partition README.md, "Time to Live") runs
//! at the partition leader only. Each step reads at most [`SWEEP_ITEMS_PER_STEP`] items in key
//! order from where the last step stopped, and proposes the deletes of the expired ones, at
//! most [`SWEEP_DELETES_PER_STEP`], as one log entry of `Mutation::Expire`. The leader decides
//! each delete against the latest state of the item, its own proposals in flight included
//! (replica invariant 2): an update that extended the TTL and was proposed first keeps the
//! item; one proposed after the delete is ordered after it in the log. Only one sweep entry is
//! in flight at a time, and the host spaces steps out, so foreground writes are never queued
//! behind a burst of deletes.

use shoal_model::Item;
use shoal_model::index::LocalIndex;
use shoal_model::number::Number;
use shoal_model::value::AttributeValue;

/// What a partition's sweeper needs of its table: the TTL attribute, and the table's
/// secondary indexes (local ones here), whose entries (and item collection size) a TTL delete removes in the
/// same log entry as the item, as any delete does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepTarget {
    pub attribute: String,
    pub local_indexes: Vec<LocalIndex>,
    /// The table's global secondary indexes: a TTL delete puts its entry deletes into the
    /// partition's outbox, as any delete does.
    pub global_indexes: Vec<shoal_model::index::global::GlobalIndex>,
}

/// Items one sweep step reads at most: one B-tree scan call, like a page of a Scan.
pub const SWEEP_ITEMS_PER_STEP: usize = 256;
/// Deletes one sweep step proposes at most, in one log entry.
pub const SWEEP_DELETES_PER_STEP: usize = 64;
/// DynamoDB leaves alone an item whose expiry lies more than five years in the past (the
/// developer guide: such a value is taken for a mistake, not an expiry). Five years of 365
/// days.
pub const EXPIRY_AGE_MAX_SECONDS: u64 = 5 * 365 * 86_400;
const _: () = assert!(SWEEP_DELETES_PER_STEP <= SWEEP_ITEMS_PER_STEP);
const _: () = assert!(SWEEP_DELETES_PER_STEP <= shoal_store::engine::BATCH_MUTATIONS_MAX);

/// Whether `item` has expired at `now_unix_seconds` under the TTL attribute `attribute`.
pub fn expired(item: &Item, attribute: &str, now_unix_seconds: u64) -> bool {
    let Some(AttributeValue::Number(expiry)) = item.get(attribute) else {
        return false;
    };
    let now = Number::from(now_unix_seconds);
    let oldest = Number::from(now_unix_seconds.saturating_sub(EXPIRY_AGE_MAX_SECONDS));
    *expiry < now && *expiry >= oldest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(expiry: Option<AttributeValue>) -> Item {
        let mut item = Item::new();
        item.insert("pk".to_string(), AttributeValue::String("a".to_string()));
        if let Some(expiry) = expiry {
            item.insert("expires".to_string(), expiry);
        }
        item
    }

    fn number(text: &str) -> Option<AttributeValue> {
        Some(AttributeValue::Number(Number::parse(text).unwrap()))
    }

    #[test]
    fn only_past_epoch_second_numbers_within_five_years_expire() {
        let now = 1_800_000_000;
        assert!(expired(&item(number("1799999999")), "expires", now));
        assert!(expired(&item(number("1799999999.999")), "expires", now));
        // Less than the current time, as the API reference says: the current second is not.
        assert!(!expired(&item(number("1800000000")), "expires", now));
        assert!(!expired(&item(number("1800000000.5")), "expires", now));
        assert!(!expired(&item(number("1900000000")), "expires", now));
        // Five years back is the oldest expiry still honoured; older is ignored.
        let oldest = (now - EXPIRY_AGE_MAX_SECONDS).to_string();
        assert!(expired(&item(number(&oldest)), "expires", now));
        let older = (now - EXPIRY_AGE_MAX_SECONDS - 1).to_string();
        assert!(!expired(&item(number(&older)), "expires", now));
        assert!(!expired(&item(number("0")), "expires", now));
        assert!(!expired(&item(number("-5")), "expires", now));
        // Milliseconds by mistake lie in the future: never deleted.
        assert!(!expired(&item(number("1799999999000")), "expires", now));
        // Other types, a missing attribute, another attribute's name.
        let text = Some(AttributeValue::String("1".to_string()));
        assert!(!expired(&item(text), "expires", now));
        assert!(!expired(&item(None), "expires", now));
        assert!(!expired(&item(number("1")), "other", now));
        let nested = Some(AttributeValue::List(vec![AttributeValue::Number(
            Number::parse("1").unwrap(),
        )]));
        assert!(!expired(&item(nested), "expires", now));
        // Early in the epoch the five-year floor does not underflow.
        assert!(expired(&item(number("0")), "expires", 10));
    }
}
