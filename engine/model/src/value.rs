//! DynamoDB's attribute values and items, and their sizes by DynamoDB's rules.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::number::Number;

/// An item: attribute names to values. A BTreeMap so that iteration, encoding and output are
/// deterministic.
pub type Item = BTreeMap<String, AttributeValue>;

/// DynamoDB's largest item, 400 KB, counting names and values by [`item_size_bytes`].
pub const ITEM_BYTES_MAX: usize = 400 * 1024;

/// One read capacity unit covers a strongly consistent read of up to 4 KB.
pub const READ_CAPACITY_UNIT_BYTES: usize = 4 * 1024;
/// One write capacity unit covers a write of up to 1 KB.
pub const WRITE_CAPACITY_UNIT_BYTES: usize = 1024;
// An item always fits in a whole number of units.
const _: () = assert!(ITEM_BYTES_MAX.is_multiple_of(READ_CAPACITY_UNIT_BYTES));
const _: () = assert!(READ_CAPACITY_UNIT_BYTES.is_multiple_of(WRITE_CAPACITY_UNIT_BYTES));

/// The deepest nesting of maps and lists: a value directly in an item is at depth 1.
pub const NESTING_DEPTH_MAX: usize = 32;

/// The longest attribute name, in UTF-8 bytes. The developer guide says 64 KB; DynamoDB
/// accepts 65,535 bytes and refuses 65,536 (ScyllaDB's test_limits.py, whose tests run
/// against DynamoDB: `test_limit_attribute_length_nonkey_good` / `_bad`), in items, keys,
/// ExpressionAttributeNames and the legacy parameters alike.
pub const ATTRIBUTE_NAME_BYTES_MAX: usize = 65_535;
const _: () = assert!(ATTRIBUTE_NAME_BYTES_MAX < ITEM_BYTES_MAX);

/// Refuses an attribute name over [`ATTRIBUTE_NAME_BYTES_MAX`].
pub fn check_attribute_name_length(name: &str) -> crate::error::Result<()> {
    if name.len() > ATTRIBUTE_NAME_BYTES_MAX {
        return Err(crate::error::validation(
            crate::messages::ATTRIBUTE_NAME_TOO_LONG,
        ));
    }
    Ok(())
}

/// One attribute value. Sets are ordered sets, so they hold no duplicates and compare equal
/// regardless of the order a client sent them in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttributeValue {
    /// `S`: a UTF-8 string.
    String(String),
    /// `N`: an exact decimal.
    Number(Number),
    /// `B`: bytes.
    Binary(Vec<u8>),
    /// `BOOL`.
    Boolean(bool),
    /// `NULL`: always true in DynamoDB JSON.
    Null,
    /// `M`: a map of names to values.
    Map(BTreeMap<String, AttributeValue>),
    /// `L`: a list of values.
    List(Vec<AttributeValue>),
    /// `SS`: a non-empty set of strings.
    StringSet(BTreeSet<String>),
    /// `NS`: a non-empty set of numbers.
    NumberSet(BTreeSet<Number>),
    /// `BS`: a non-empty set of binaries.
    BinarySet(BTreeSet<Vec<u8>>),
}

/// DynamoDB's type names, as they appear in DynamoDB JSON and in `attribute_type`.
pub const TYPE_NAMES: [&str; 10] = ["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"];

/// The bytes DynamoDB charges for a list or map regardless of its contents.
const CONTAINER_OVERHEAD_BYTES: usize = 3;
/// The bytes charged per element of a list or map, on top of the element's own size.
const CONTAINER_ELEMENT_OVERHEAD_BYTES: usize = 1;

impl AttributeValue {
    /// DynamoDB's name of this value's type: "S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS"
    /// or "BS".
    pub fn type_name(&self) -> &'static str {
        match self {
            AttributeValue::String(_) => "S",
            AttributeValue::Number(_) => "N",
            AttributeValue::Binary(_) => "B",
            AttributeValue::Boolean(_) => "BOOL",
            AttributeValue::Null => "NULL",
            AttributeValue::Map(_) => "M",
            AttributeValue::List(_) => "L",
            AttributeValue::StringSet(_) => "SS",
            AttributeValue::NumberSet(_) => "NS",
            AttributeValue::BinarySet(_) => "BS",
        }
    }

    /// The size DynamoDB charges for this value (without its attribute name).
    pub fn size_bytes(&self) -> usize {
        match self {
            AttributeValue::String(text) => text.len(),
            AttributeValue::Number(number) => number.size_bytes(),
            AttributeValue::Binary(bytes) => bytes.len(),
            AttributeValue::Boolean(_) | AttributeValue::Null => 1,
            AttributeValue::Map(map) => {
                CONTAINER_OVERHEAD_BYTES
                    + map
                        .iter()
                        .map(|(name, value)| {
                            name.len() + value.size_bytes() + CONTAINER_ELEMENT_OVERHEAD_BYTES
                        })
                        .sum::<usize>()
            }
            AttributeValue::List(list) => {
                CONTAINER_OVERHEAD_BYTES
                    + list
                        .iter()
                        .map(|value| value.size_bytes() + CONTAINER_ELEMENT_OVERHEAD_BYTES)
                        .sum::<usize>()
            }
            AttributeValue::StringSet(set) => set.iter().map(String::len).sum(),
            AttributeValue::NumberSet(set) => set.iter().map(Number::size_bytes).sum(),
            AttributeValue::BinarySet(set) => set.iter().map(Vec::len).sum(),
        }
    }

    /// DynamoDB's ordering, defined only between two numbers, two strings (UTF-8 bytes) or two
    /// binaries (unsigned bytes). Any other pair is not ordered, and comparisons on it are false.
    pub fn compare(&self, other: &AttributeValue) -> Option<Ordering> {
        match (self, other) {
            (AttributeValue::Number(left), AttributeValue::Number(right)) => Some(left.cmp(right)),
            (AttributeValue::String(left), AttributeValue::String(right)) => {
                Some(left.as_bytes().cmp(right.as_bytes()))
            }
            (AttributeValue::Binary(left), AttributeValue::Binary(right)) => Some(left.cmp(right)),
            _ => None,
        }
    }

    /// The nesting depth of this value: 1 for a scalar or set, one more per enclosing container.
    pub fn depth(&self) -> usize {
        // Iterative, so that a deeply nested value cannot overflow the stack.
        let mut depth_max = 0;
        let mut pending: Vec<(&AttributeValue, usize)> = vec![(self, 1)];
        while let Some((value, depth)) = pending.pop() {
            depth_max = depth_max.max(depth);
            match value {
                AttributeValue::Map(map) => {
                    pending.extend(map.values().map(|child| (child, depth + 1)));
                }
                AttributeValue::List(list) => {
                    pending.extend(list.iter().map(|child| (child, depth + 1)));
                }
                _ => {}
            }
        }
        depth_max
    }
}

/// The size DynamoDB charges for an item: each attribute's name length plus its value's size.
pub fn item_size_bytes(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value.size_bytes())
        .sum()
}

/// Read capacity units for a strongly consistent read of an item of `item_bytes` (an
/// eventually consistent read costs half). A read of a missing or empty item still costs one.
pub fn read_capacity_units(item_bytes: usize) -> u64 {
    item_bytes.div_ceil(READ_CAPACITY_UNIT_BYTES).max(1) as u64
}

/// Write capacity units for writing an item of `item_bytes` (DynamoDB charges the larger of the
/// old and new item). A write always costs at least one.
pub fn write_capacity_units(item_bytes: usize) -> u64 {
    item_bytes.div_ceil(WRITE_CAPACITY_UNIT_BYTES).max(1) as u64
}

/// Rejects an item to be written (PutItem) above [`ITEM_BYTES_MAX`], with DynamoDB's message.
pub fn check_item_size(item: &Item) -> crate::Result<()> {
    if item_size_bytes(item) > ITEM_BYTES_MAX {
        return Err(crate::error::validation(crate::messages::ITEM_TOO_LARGE));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> AttributeValue {
        AttributeValue::Number(Number::parse(text).unwrap())
    }

    #[test]
    fn sizes_follow_dynamodb_rules() {
        assert_eq!(AttributeValue::String("héllo".into()).size_bytes(), 6);
        assert_eq!(number("12345").size_bytes(), 4);
        assert_eq!(number("1234").size_bytes(), 3);
        assert_eq!(number("1000000").size_bytes(), 2);
        assert_eq!(AttributeValue::Binary(vec![1, 2, 3]).size_bytes(), 3);
        assert_eq!(AttributeValue::Null.size_bytes(), 1);
        assert_eq!(AttributeValue::Boolean(true).size_bytes(), 1);
        assert_eq!(AttributeValue::Map(BTreeMap::new()).size_bytes(), 3);
        assert_eq!(AttributeValue::List(vec![]).size_bytes(), 3);
        let map = AttributeValue::Map(BTreeMap::from([("ab".to_string(), AttributeValue::Null)]));
        assert_eq!(map.size_bytes(), 3 + 2 + 1 + 1);
        let set = AttributeValue::StringSet(BTreeSet::from(["ab".to_string(), "c".to_string()]));
        assert_eq!(set.size_bytes(), 3);
        let item = Item::from([("name".to_string(), AttributeValue::String("value".into()))]);
        assert_eq!(item_size_bytes(&item), 9);
    }

    #[test]
    fn comparisons_are_defined_within_scalar_types_only() {
        assert_eq!(number("2").compare(&number("10")), Some(Ordering::Less));
        let a = AttributeValue::String("a".into());
        let b = AttributeValue::String("b".into());
        assert_eq!(a.compare(&b), Some(Ordering::Less));
        assert_eq!(
            AttributeValue::Binary(vec![0x80]).compare(&AttributeValue::Binary(vec![0x7f])),
            Some(Ordering::Greater)
        );
        assert_eq!(a.compare(&number("1")), None);
        assert_eq!(
            AttributeValue::Boolean(false).compare(&AttributeValue::Boolean(true)),
            None
        );
    }

    #[test]
    fn capacity_units_round_up() {
        assert_eq!(read_capacity_units(0), 1);
        assert_eq!(read_capacity_units(4096), 1);
        assert_eq!(read_capacity_units(4097), 2);
        assert_eq!(write_capacity_units(0), 1);
        assert_eq!(write_capacity_units(1024), 1);
        assert_eq!(write_capacity_units(1025), 2);
        assert_eq!(write_capacity_units(ITEM_BYTES_MAX), 400);
    }

    #[test]
    fn item_size_limit_is_inclusive() {
        let name = "n".to_string();
        let fill = |length: usize| {
            Item::from([(name.clone(), AttributeValue::String("x".repeat(length)))])
        };
        assert!(check_item_size(&fill(ITEM_BYTES_MAX - 1)).is_ok());
        let error = check_item_size(&fill(ITEM_BYTES_MAX)).unwrap_err();
        assert_eq!(error.message(), crate::messages::ITEM_TOO_LARGE);
    }

    #[test]
    fn depth_counts_nesting() {
        let mut value = AttributeValue::Null;
        assert_eq!(value.depth(), 1);
        for _ in 0..5 {
            value = AttributeValue::List(vec![value]);
        }
        assert_eq!(value.depth(), 6);
    }
}
