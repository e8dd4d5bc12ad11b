use super::*;
use crate::Number;
use crate::key::KeyType;

fn within(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    let above = match lower {
        Bound::Included(bound) => key >= bound.as_slice(),
        Bound::Excluded(bound) => key > bound.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(bound) => key <= bound.as_slice(),
        Bound::Excluded(bound) => key < bound.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

fn table() -> KeySchema {
    KeySchema::partition_only("pk", KeyType::String)
}

fn index(projection: Projection) -> GlobalIndex {
    GlobalIndex {
        name: "by_city".to_string(),
        number: 3,
        partition_keys: vec![KeyAttribute {
            name: "city".to_string(),
            key_type: KeyType::String,
        }],
        sort_keys: vec![KeyAttribute {
            name: "age".to_string(),
            key_type: KeyType::Number,
        }],
        projection,
    }
}

fn item(pk: &str, city: Option<&str>, age: Option<i64>, extra: &[(&str, &str)]) -> Item {
    let mut item = Item::new();
    item.insert("pk".to_string(), AttributeValue::String(pk.to_string()));
    if let Some(city) = city {
        item.insert("city".to_string(), AttributeValue::String(city.to_string()));
    }
    if let Some(age) = age {
        item.insert(
            "age".to_string(),
            AttributeValue::Number(Number::parse(&age.to_string()).unwrap()),
        );
    }
    for (name, value) in extra {
        item.insert(name.to_string(), AttributeValue::String(value.to_string()));
    }
    item
}

fn storage_key(item: &Item) -> Vec<u8> {
    table().storage_key(item).unwrap()
}

fn entry(index: &GlobalIndex, item: &Item) -> Option<Vec<u8>> {
    index.entry_key(&storage_key(item), item)
}

#[test]
fn entries_of_one_index_key_sort_by_the_index_sort_key_then_the_table_key() {
    let index = index(Projection::All);
    let mut keys: Vec<(Vec<u8>, &str)> = [("u1", 30), ("u2", -5), ("u3", 30), ("u4", 100)]
        .iter()
        .map(|(pk, age)| {
            let item = item(pk, Some("paris"), Some(*age), &[]);
            (entry(&index, &item).unwrap(), *pk)
        })
        .collect();
    keys.sort();
    let ages: Vec<&str> = keys.iter().map(|(_, pk)| *pk).collect();
    // -5, then the two 30s (in table key order, whatever it is), then 100.
    assert_eq!(ages[0], "u2");
    assert_eq!(ages[3], "u4");
    // Every entry of "paris" shares its storage-key prefix, so it routes by the city's hash.
    let prefix = storage_key_prefix(&AttributeValue::String("paris".to_string())).unwrap();
    assert!(keys.iter().all(|(key, _)| key.starts_with(&prefix)));
    // The condition's bounds select exactly these entries.
    let condition = KeyCondition::single(AttributeValue::String("paris".to_string()), None);
    let (lower, upper) = index.query_bounds(&condition).unwrap();
    for (key, _) in &keys {
        assert!(within(&lower, &upper, key.as_slice()));
    }
}

#[test]
fn an_item_without_the_index_key_or_with_another_type_is_not_in_the_index() {
    let index = index(Projection::KeysOnly);
    assert!(entry(&index, &item("u1", None, Some(3), &[])).is_none());
    assert!(entry(&index, &item("u1", Some("rome"), None, &[])).is_none());
    let mut wrong = item("u1", Some("rome"), Some(3), &[]);
    wrong.insert("age".to_string(), AttributeValue::String("3".to_string()));
    assert!(entry(&index, &wrong).is_none());
    assert_eq!(
        index.check_item(&wrong).unwrap_err().message(),
        "One or more parameter values were invalid: Type mismatch for Index Key age Expected: N Actual: S IndexName: by_city"
    );
    let empty = item("u1", Some(""), Some(3), &[]);
    assert!(
        index
            .check_item(&empty)
            .unwrap_err()
            .message()
            .contains("cannot contain an empty string value. IndexName: by_city, IndexKey: city")
    );
}

#[test]
fn changes_follow_the_old_and_new_image() {
    let indexes = [index(Projection::Include(vec!["nick".to_string()]))];
    let schema = table();
    let old = item(
        "u1",
        Some("paris"),
        Some(30),
        &[("nick", "a"), ("secret", "s")],
    );
    let key = storage_key(&old);
    let changes = |old: Option<&Item>, new: Option<&Item>| {
        global_changes(&indexes, &schema, &key, old, new).unwrap().0
    };
    // A new item in the index: one put of its projection.
    let put = changes(None, Some(&old));
    assert_eq!(put.len(), 1);
    let EntryChange::Put(value) = &put[0].change else {
        panic!("not a put: {put:?}");
    };
    let projected = decode_item(value).unwrap();
    assert_eq!(
        projected.keys().map(String::as_str).collect::<Vec<_>>(),
        ["age", "city", "nick", "pk"]
    );
    assert_eq!(put[0].index_number, 3);
    // A change of an attribute the index does not project changes nothing.
    let secret = item(
        "u1",
        Some("paris"),
        Some(30),
        &[("nick", "a"), ("secret", "t")],
    );
    assert!(changes(Some(&old), Some(&secret)).is_empty());
    // A change of a projected attribute rewrites the entry under the same key.
    let renamed = item("u1", Some("paris"), Some(30), &[("nick", "b")]);
    let rewrite = changes(Some(&old), Some(&renamed));
    assert_eq!(rewrite.len(), 1);
    assert_eq!(rewrite[0].entry_key, put[0].entry_key);
    // A new index key: the old entry goes, the new one comes (in that order).
    let moved = item("u1", Some("rome"), Some(30), &[("nick", "a")]);
    let moves = changes(Some(&old), Some(&moved));
    assert_eq!(moves.len(), 2);
    assert_eq!(moves[0].change, EntryChange::Delete);
    assert_eq!(moves[0].entry_key, put[0].entry_key);
    assert!(matches!(moves[1].change, EntryChange::Put(_)));
    // Leaving the index (REMOVE of the key) or a delete: only the delete.
    let left = item("u1", None, Some(30), &[]);
    assert_eq!(changes(Some(&old), Some(&left)).len(), 1);
    assert_eq!(changes(Some(&old), None)[0].change, EntryChange::Delete);
    // Never in the index: nothing.
    assert!(changes(None, Some(&left)).is_empty());
}

#[test]
fn outbox_records_decode_to_what_was_encoded_and_nothing_else() {
    let put = GlobalIndexChange {
        index_number: 7,
        entry_key: vec![1, 2, 3],
        change: EntryChange::Put(encode_item(&item("u", Some("c"), None, &[]))),
    };
    let delete = GlobalIndexChange {
        index_number: 0,
        entry_key: vec![9; 300],
        change: EntryChange::Delete,
    };
    for change in [&put, &delete] {
        assert_eq!(decode_change(&encode_change(change)).as_ref(), Some(change));
    }
    let mut bad_kind = encode_change(&put);
    bad_kind[1] = 0x03;
    assert_eq!(decode_change(&bad_kind), None);
    let mut delete_with_value = encode_change(&delete);
    delete_with_value.push(0);
    assert_eq!(decode_change(&delete_with_value), None);
    let encoded = encode_change(&put);
    for length in 0..encoded.len() {
        assert_eq!(decode_change(&encoded[..length]), None, "{length} bytes");
    }
}

#[test]
fn outbox_keys_order_by_position_and_stay_in_the_index_region() {
    let positions = [
        OutboxPosition {
            slot: 1,
            ordinal: 9,
        },
        OutboxPosition {
            slot: 2,
            ordinal: 0,
        },
        OutboxPosition {
            slot: 2,
            ordinal: 1,
        },
        OutboxPosition {
            slot: 300,
            ordinal: 0,
        },
    ];
    let keys: Vec<Vec<u8>> = positions.iter().map(|p| outbox_key(*p)).collect();
    assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
    for (key, position) in keys.iter().zip(positions) {
        assert_eq!(outbox_position(key), Some(position));
        assert!(is_outbox_key(key));
        assert!(key.starts_with(&INDEX_REGION_PREFIX));
        let (lower, upper) = outbox_range(None);
        assert!(within(&lower, &upper, key.as_slice()));
    }
    // Reading after a position starts at the next one.
    let (lower, upper) = outbox_range(Some(positions[1]));
    assert!(!within(&lower, &upper, keys[1].as_slice()));
    assert!(within(&lower, &upper, keys[2].as_slice()));
    // The neighbours in the region are not outbox keys: pending records, positions, item
    // collections and the applied chain.
    let source = source_position_key(5);
    let pending = pending_outbox_key(4);
    assert_eq!(pending_outbox_ordinal(&pending), Some(4));
    for other in [
        source,
        pending,
        crate::index::applied_chain_key(),
        crate::index::collection_key(&storage_key(&item("u", None, None, &[]))).unwrap(),
    ] {
        assert!(!is_outbox_key(&other));
        let (lower, upper) = outbox_range(None);
        assert!(!within(&lower, &upper, other.as_slice()));
    }
    assert_eq!(pending_outbox_ordinal(&keys[0]), None);
}

#[test]
fn a_position_record_reads_back() {
    let position = OutboxPosition {
        slot: u64::MAX,
        ordinal: u32::MAX,
    };
    assert_eq!(record_position(&position_record(position)), Some(position));
    assert_eq!(record_position(&Item::new()), None);
}

#[test]
fn a_round_sends_each_partition_its_changes_in_order_and_trims_after_the_last() {
    let change = |slot: u64, index_number: u8, key: u8| PositionedChange {
        position: OutboxPosition { slot, ordinal: 0 },
        change: GlobalIndexChange {
            index_number,
            entry_key: vec![key],
            change: EntryChange::Delete,
        },
    };
    let changes = vec![
        change(1, 0, 10),
        change(2, 1, 200),
        change(3, 0, 20),
        change(4, 9, 1),
    ];
    // Index 9 no longer exists; keys below 100 go to partition "a", the rest to "b".
    let plan = plan_round(changes, |change| {
        (change.index_number != 9).then(|| if change.entry_key[0] < 100 { "a" } else { "b" })
    });
    let slots = |target: &str| -> Vec<u64> {
        plan.applies[target]
            .iter()
            .map(|c| c.position.slot)
            .collect()
    };
    assert_eq!(slots("a"), [1, 3]);
    assert_eq!(slots("b"), [2]);
    assert_eq!(plan.applies.len(), 2);
    // The dropped change is trimmed too.
    assert_eq!(
        plan.trim_through,
        Some(OutboxPosition {
            slot: 4,
            ordinal: 0
        })
    );
    assert_eq!(plan_round(Vec::new(), |_| Some(())).trim_through, None);
}

#[test]
fn a_start_key_names_the_entry_after_which_a_page_goes_on() {
    let index = index(Projection::KeysOnly);
    let stored = item("u7", Some("oslo"), Some(41), &[]);
    let parameters = serde_json::json!({
        "ExclusiveStartKey": {"pk": {"S": "u7"}, "city": {"S": "oslo"}, "age": {"N": "41"}},
    });
    let (key, entry_key) = index.start_key(&parameters, &table()).unwrap().unwrap();
    assert_eq!(Some(entry_key), entry(&index, &stored));
    assert_eq!(index.evaluated_key(&table(), &stored), key);
    for wrong in [
        serde_json::json!({"pk": {"S": "u7"}, "city": {"S": "oslo"}}),
        serde_json::json!({"pk": {"S": "u7"}, "city": {"N": "1"}, "age": {"N": "41"}}),
        serde_json::json!({"city": {"S": "oslo"}, "age": {"N": "41"}}),
    ] {
        let parameters = serde_json::json!({ "ExclusiveStartKey": wrong });
        assert!(index.start_key(&parameters, &table()).is_err(), "{wrong}");
    }
}
