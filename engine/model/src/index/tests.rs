use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeBounds;

use proptest::prelude::*;

use super::*;
use crate::Number;
use crate::expression::key_condition::KeyCondition;
use crate::key::KeyType;

fn table() -> KeySchema {
    KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::String)
}

fn index(number: u8, key_type: KeyType, projection: Projection) -> LocalIndex {
    LocalIndex {
        name: format!("idx{number}"),
        number,
        sort_key: KeyAttribute {
            name: format!("lsi{number}"),
            key_type,
        },
        projection,
    }
}

fn string(text: &str) -> AttributeValue {
    AttributeValue::String(text.to_string())
}

fn item(pk: &str, sk: &str, extra: &[(&str, AttributeValue)]) -> Item {
    let mut item = Item::from([
        ("pk".to_string(), string(pk)),
        ("sk".to_string(), string(sk)),
    ]);
    for (name, value) in extra {
        item.insert(name.to_string(), value.clone());
    }
    item
}

fn storage_key(item: &Item) -> Vec<u8> {
    table().storage_key(item).unwrap()
}

#[test]
fn entry_keys_point_back_at_their_item_and_never_collide_with_items() {
    let item = item("a\0b", "s\0\u{ff}", &[]);
    let key = storage_key(&item);
    for value in [
        string("x"),
        string("\0"),
        AttributeValue::Binary(vec![0, 0, 0xFF, 0]),
        AttributeValue::Number(Number::parse("-1.5").unwrap()),
    ] {
        let entry = entry_key(3, &key, &value).unwrap();
        assert!(entry.starts_with(&INDEX_REGION_PREFIX));
        assert_eq!(entry[9], 3);
        assert_eq!(base_storage_key(&entry), Some(key.clone()));
        assert_eq!(entry_key_hash(&entry), crate::key::storage_key_hash(&key));
        // Invariant 3: item keys have byte 8 at most 0x08.
        assert!(key[8] <= 0x08 && entry[8] == 0xFF);
    }
    assert_eq!(base_storage_key(&key), None);
    assert_eq!(base_storage_key(&INDEX_REGION_PREFIX), None);
}

#[test]
fn entry_layout_is_pinned() {
    // FORMAT.md's example: index 1 of table (pk S, sk S), item pk "a" sk "z", index value
    // "b\0": region, number, the item's partition-key prefix, the escaped value, its
    // terminator, then the table sort key.
    let key = storage_key(&item("a", "z", &[]));
    let entry = entry_key(1, &key, &AttributeValue::Binary(b"b\0".to_vec())).unwrap();
    let mut expected = vec![0xFF; 9];
    expected.push(0x01);
    expected.extend_from_slice(&key[..11]);
    expected.extend_from_slice(&[b'b', 0x00, 0xFF, 0x00, 0x00, b'z']);
    assert_eq!(entry, expected);
}

#[test]
fn sparse_items_have_no_entry_and_wrong_types_are_refused() {
    let indexes = [index(0, KeyType::Number, Projection::KeysOnly)];
    let without = item("a", "1", &[("other", string("x"))]);
    let key = storage_key(&without);
    assert!(
        index_changes(&indexes, &table(), &key, None, Some(&without))
            .unwrap()
            .is_empty()
    );
    let wrong = item("a", "1", &[("lsi0", string("x"))]);
    assert_eq!(
        index_changes(&indexes, &table(), &key, None, Some(&wrong))
            .unwrap_err()
            .message(),
        "One or more parameter values were invalid: Type mismatch for Index Key lsi0 Expected: N Actual: S IndexName: idx0"
    );
    let string_index = [index(0, KeyType::String, Projection::All)];
    let empty = item("a", "1", &[("lsi0", string(""))]);
    assert!(
        index_changes(&string_index, &table(), &key, None, Some(&empty))
            .unwrap_err()
            .message()
            .contains("IndexName: idx0, IndexKey: lsi0")
    );
    // An index sort key is a sort key: DynamoDB's 1024-byte limit applies.
    let long = item("a", "1", &[("lsi0", string(&"x".repeat(1025)))]);
    assert_eq!(
        index_changes(&string_index, &table(), &key, None, Some(&long))
            .unwrap_err()
            .message(),
        crate::messages::SORT_KEY_TOO_LARGE
    );
    let longest = item("a", "1", &[("lsi0", string(&"x".repeat(1024)))]);
    assert!(index_changes(&string_index, &table(), &key, None, Some(&longest)).is_ok());
}

#[test]
fn changes_follow_the_index_key_and_projected_attributes() {
    let indexes = [index(
        0,
        KeyType::String,
        Projection::Include(vec!["shown".to_string()]),
    )];
    let old = item("a", "1", &[("lsi0", string("x")), ("shown", string("1"))]);
    let key = storage_key(&old);
    let old_entry = entry_key(0, &key, &string("x")).unwrap();
    // A change to an unprojected attribute writes nothing to the index.
    let hidden = item(
        "a",
        "1",
        &[
            ("lsi0", string("x")),
            ("shown", string("1")),
            ("hidden", string("h")),
        ],
    );
    assert!(
        index_changes(&indexes, &table(), &key, Some(&old), Some(&hidden))
            .unwrap()
            .is_empty()
    );
    // A projected attribute rewrites the entry in place: one entry write, no key change.
    let shown = item("a", "1", &[("lsi0", string("x")), ("shown", string("2"))]);
    let changes = index_changes(&indexes, &table(), &key, Some(&old), Some(&shown)).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!((&changes[0].delete, &changes[0].put), (&None, &None));
    assert_eq!(changes[0].written_entry_bytes.len(), 1);
    // A new index key: the old entry goes, the new one comes; two entry writes.
    let moved = item("a", "1", &[("lsi0", string("y"))]);
    let changes = index_changes(&indexes, &table(), &key, Some(&old), Some(&moved)).unwrap();
    assert_eq!(changes[0].delete, Some(old_entry.clone()));
    assert_eq!(changes[0].put, entry_key(0, &key, &string("y")));
    assert_eq!(changes[0].written_entry_bytes.len(), 2);
    // A delete removes the entry.
    let changes = index_changes(&indexes, &table(), &key, Some(&old), None).unwrap();
    assert_eq!(changes[0].delete, Some(old_entry));
    assert_eq!(changes[0].put, None);
}

#[test]
fn projections_keep_the_keys() {
    let keys_only = index(0, KeyType::String, Projection::KeysOnly);
    let full = item("a", "1", &[("lsi0", string("x")), ("other", string("o"))]);
    let projected = keys_only.project(&table(), &full);
    assert_eq!(
        projected.keys().cloned().collect::<Vec<_>>(),
        vec!["lsi0", "pk", "sk"]
    );
    assert_eq!(
        index(0, KeyType::String, Projection::All).project(&table(), &full),
        full
    );
}

fn sort_condition_strategy() -> impl Strategy<Value = Option<SortKeyCondition>> {
    let value = || "[a-c\0]{0,3}".prop_map(|text| string(&text));
    prop_oneof![
        Just(None),
        value().prop_map(|v| Some(SortKeyCondition::Equal(v))),
        value().prop_map(|v| Some(SortKeyCondition::Less(v))),
        value().prop_map(|v| Some(SortKeyCondition::LessOrEqual(v))),
        value().prop_map(|v| Some(SortKeyCondition::Greater(v))),
        value().prop_map(|v| Some(SortKeyCondition::GreaterOrEqual(v))),
        (value(), value()).prop_map(|(a, b)| Some(SortKeyCondition::Between(a, b))),
        "[a-c\0]{1,2}".prop_map(|p| Some(SortKeyCondition::BeginsWith(string(&p)))),
    ]
}

/// One write of the model test: the item (pk, sk) gets this index value (or none), or goes.
#[derive(Clone, Debug)]
enum Operation {
    Put {
        pk: u8,
        sk: u8,
        value: Option<String>,
        wrong_type: bool,
    },
    Delete {
        pk: u8,
        sk: u8,
    },
}

fn operation_strategy() -> impl Strategy<Value = Operation> {
    prop_oneof![
        3 => (0u8..3, 0u8..4, proptest::option::of("[a-c\0]{0,3}"), proptest::bool::weighted(0.1))
            .prop_map(|(pk, sk, value, wrong_type)| Operation::Put { pk, sk, value, wrong_type }),
        1 => (0u8..3, 0u8..4).prop_map(|(pk, sk)| Operation::Delete { pk, sk }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Invariant 2: entry order within a partition key is (index value, table sort key), and
    /// a Query's bounds hold exactly the entries whose value its condition matches.
    #[test]
    fn entry_order_and_query_bounds_match_dynamodb_order(
        entries in proptest::collection::vec(("[a-c\0]{0,4}", "[a-c\0]{1,3}"), 1..12),
        condition in sort_condition_strategy(),
    ) {
        let mut by_key = BTreeMap::new();
        for (value, sk) in &entries {
            let key = storage_key(&item("p", sk, &[]));
            if value.is_empty() { continue; }
            by_key.insert(entry_key(0, &key, &string(value)).unwrap(), (value.clone(), sk.clone()));
        }
        let in_key_order: Vec<_> = by_key.values().cloned().collect();
        let mut sorted = in_key_order.clone();
        sorted.sort();
        prop_assert_eq!(&in_key_order, &sorted);
        let condition = KeyCondition::single(string("p"), condition);
        let bounds = query_bounds(0, &condition).unwrap();
        let selected: BTreeSet<_> = by_key.keys().filter(|key| bounds.contains(*key)).cloned().collect();
        for (key, (value, _)) in &by_key {
            let expected = condition.sort.as_ref().is_none_or(|sort| sort.matches(&string(value)));
            prop_assert_eq!(selected.contains(key), expected, "value {:?}", value);
        }
        // Another partition key's entries are outside.
        let other = entry_key(0, &storage_key(&item("q", "a", &[])), &string("a")).unwrap();
        let (lower, upper) = query_bounds(0, &condition).unwrap();
        prop_assert!(!(lower, upper).contains(&other));
    }

    /// Invariant 1: after any sequence of writes, applying each write's index changes to an
    /// index store leaves exactly one entry per item that has the index value.
    #[test]
    fn index_entries_always_match_the_items(
        operations in proptest::collection::vec(operation_strategy(), 1..40),
    ) {
        let indexes = [
            index(0, KeyType::String, Projection::KeysOnly),
            index(1, KeyType::String, Projection::Include(vec!["lsi0".to_string()])),
        ];
        let mut items: BTreeMap<Vec<u8>, Item> = BTreeMap::new();
        let mut entries: BTreeSet<Vec<u8>> = BTreeSet::new();
        for operation in operations {
            let (key, new) = match operation {
                Operation::Put { pk, sk, value, wrong_type } => {
                    let mut new = item(&pk.to_string(), &sk.to_string(), &[]);
                    if let Some(value) = value.filter(|value| !value.is_empty()) {
                        new.insert("lsi0".to_string(), if wrong_type {
                            AttributeValue::Number(Number::parse("1").unwrap())
                        } else {
                            string(&value)
                        });
                        new.insert("lsi1".to_string(), string(&format!("{value}{sk}")));
                    }
                    (storage_key(&new), Some(new))
                }
                Operation::Delete { pk, sk } => (storage_key(&item(&pk.to_string(), &sk.to_string(), &[])), None),
            };
            let old = items.get(&key).cloned();
            match index_changes(&indexes, &table(), &key, old.as_ref(), new.as_ref()) {
                Err(_) => {
                    // A refused write changes nothing.
                    prop_assert!(new.as_ref().is_some_and(|new| matches!(new.get("lsi0"), Some(AttributeValue::Number(_)))));
                    continue;
                }
                Ok(changes) => {
                    for change in changes {
                        if let Some(delete) = change.delete {
                            prop_assert!(entries.remove(&delete));
                        }
                        if let Some(put) = change.put {
                            prop_assert!(entries.insert(put));
                        }
                    }
                }
            }
            match new {
                Some(new) => { items.insert(key, new); }
                None => { items.remove(&key); }
            }
            let expected: BTreeSet<Vec<u8>> = items
                .iter()
                .flat_map(|(key, item)| {
                    indexes.iter().filter_map(move |index| {
                        index.sort_value(item).and_then(|value| entry_key(index.number, key, value))
                    })
                })
                .collect();
            prop_assert_eq!(&entries, &expected);
            for entry in &entries {
                prop_assert!(items.contains_key(&base_storage_key(entry).unwrap()));
            }
        }
    }
}

mod prepared_reads {
    use serde_json::json;

    use super::*;
    use crate::request::{ItemOperation, PreparedRequest, RangeRequest, prepare_indexed};

    fn indexes() -> Vec<LocalIndex> {
        vec![
            index(0, KeyType::String, Projection::KeysOnly),
            index(1, KeyType::String, Projection::All),
        ]
    }

    fn range(operation: ItemOperation, body: serde_json::Value) -> crate::Result<RangeRequest> {
        match prepare_indexed(operation, &body, &table(), &indexes())? {
            PreparedRequest::Range(range) => Ok(range),
            other => panic!("not a range: {other:?}"),
        }
    }

    fn query(index_name: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut body = json!({"IndexName": index_name, "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "a"}}});
        for (name, value) in extra.as_object().unwrap() {
            body[name] = value.clone();
        }
        body
    }

    #[test]
    fn index_queries_read_the_index_region_and_fetch_only_when_needed() {
        let read = range(ItemOperation::Query, query("idx0", json!({}))).unwrap();
        let Bound::Included(lower) = &read.lower else {
            panic!("{:?}", read.lower);
        };
        assert!(lower.starts_with(&index_region_start(0)));
        let fetch = |index_name: &str, extra| {
            range(ItemOperation::Query, query(index_name, extra))
                .unwrap()
                .index
                .unwrap()
                .fetch_base
        };
        assert!(!fetch("idx0", json!({})));
        assert!(!fetch(
            "idx0",
            json!({"Select": "ALL_PROJECTED_ATTRIBUTES"})
        ));
        assert!(fetch("idx0", json!({"Select": "ALL_ATTRIBUTES"})));
        assert!(fetch("idx0", json!({"ProjectionExpression": "colour"})));
        assert!(!fetch("idx0", json!({"ProjectionExpression": "lsi0, sk"})));
        assert!(fetch(
            "idx0",
            json!({"FilterExpression": "attribute_exists(colour)"})
        ));
        // An index that projects everything never fetches.
        assert!(!fetch("idx1", json!({"Select": "ALL_ATTRIBUTES"})));
        let scan = range(ItemOperation::Scan, json!({"IndexName": "idx1"})).unwrap();
        assert_eq!(scan.lower, Bound::Included(index_region_start(1)));
        assert_eq!(scan.upper, Bound::Excluded(index_region_end(1)));
    }

    #[test]
    fn index_start_keys_need_the_table_key_and_the_index_key() {
        let start = json!({"pk": {"S": "a"}, "sk": {"S": "1"}, "lsi0": {"S": "m"}});
        let read = range(
            ItemOperation::Query,
            query("idx0", json!({"ExclusiveStartKey": start})),
        )
        .unwrap();
        let storage_key = storage_key(&item("a", "1", &[]));
        assert_eq!(
            read.lower,
            Bound::Excluded(entry_key(0, &storage_key, &string("m")).unwrap())
        );
        let without_index_key = json!({"pk": {"S": "a"}, "sk": {"S": "1"}});
        assert_eq!(
            range(
                ItemOperation::Query,
                query("idx0", json!({"ExclusiveStartKey": without_index_key}))
            )
            .unwrap_err()
            .message(),
            "The provided starting key is invalid: The provided key element does not match the schema"
        );
        assert_eq!(
            range(ItemOperation::Query, query("nope", json!({})))
                .unwrap_err()
                .message(),
            "The table does not have the specified index: nope"
        );
    }
}
