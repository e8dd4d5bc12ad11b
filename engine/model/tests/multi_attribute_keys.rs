//! Multi-attribute GSI keys (DynamoDB developer guide, "Multi-attribute keys pattern"): a
//! partition key of up to four attributes hashed together, a sort key of up to four compared
//! one attribute after another, and key conditions on every partition attribute and a left
//! prefix of the sort attributes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Ordering;
use std::ops::Bound;

use proptest::prelude::*;
use serde_json::json;
use shoal_model::expression::ExpressionContext;
use shoal_model::expression::key_condition::{KeyCondition, SortKeyCondition, parse_key_condition};
use shoal_model::index::Projection;
use shoal_model::index::global::{
    GlobalIndex, index_partition_prefix, multi_attribute_partition_hash,
};
use shoal_model::json::value_from_json;
use shoal_model::key::{KeyAttribute, KeySchema, KeyType, storage_key_hash};
use shoal_model::value::{AttributeValue, Item};

fn attribute(name: &str, key_type: KeyType) -> KeyAttribute {
    KeyAttribute {
        name: name.to_string(),
        key_type,
    }
}

fn table() -> KeySchema {
    KeySchema::partition_only("id", KeyType::String)
}

/// The developer guide's tournament example: partition (tournament, region), sort (round,
/// bracket, seq) with a number in the middle of the sort key.
fn index() -> GlobalIndex {
    GlobalIndex {
        name: "by_match".to_string(),
        number: 0,
        partition_keys: vec![
            attribute("tournamentId", KeyType::String),
            attribute("regionId", KeyType::String),
        ],
        sort_keys: vec![
            attribute("roundName", KeyType::String),
            attribute("bracketNo", KeyType::Number),
            attribute("seqNo", KeyType::Binary),
        ],
        projection: Projection::All,
    }
}

fn s(text: &str) -> AttributeValue {
    value_from_json(&json!({ "S": text })).unwrap()
}

fn n(text: &str) -> AttributeValue {
    value_from_json(&json!({ "N": text })).unwrap()
}

fn b(bytes: &[u8]) -> AttributeValue {
    AttributeValue::Binary(bytes.to_vec())
}

#[derive(Clone, Debug)]
struct Row {
    id: String,
    tournament: String,
    region: String,
    round: String,
    bracket: i64,
    seq: Vec<u8>,
}

impl Row {
    fn item(&self) -> Item {
        Item::from([
            ("id".to_string(), s(&self.id)),
            ("tournamentId".to_string(), s(&self.tournament)),
            ("regionId".to_string(), s(&self.region)),
            ("roundName".to_string(), s(&self.round)),
            ("bracketNo".to_string(), n(&self.bracket.to_string())),
            ("seqNo".to_string(), b(&self.seq)),
        ])
    }

    fn sort_values(&self) -> [AttributeValue; 3] {
        [s(&self.round), n(&self.bracket.to_string()), b(&self.seq)]
    }
}

fn entry_key(row: &Row) -> Vec<u8> {
    let item = row.item();
    let storage_key = table().storage_key(&item).unwrap();
    index().entry_key(&storage_key, &item).unwrap()
}

fn within(bounds: &(Bound<Vec<u8>>, Bound<Vec<u8>>), key: &[u8]) -> bool {
    let above = match &bounds.0 {
        Bound::Included(bound) => key >= bound.as_slice(),
        Bound::Excluded(bound) => key > bound.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match &bounds.1 {
        Bound::Included(bound) => key <= bound.as_slice(),
        Bound::Excluded(bound) => key < bound.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

/// Small alphabets, including a value that is a prefix of another and bytes 0x00 and 0xFF, so
/// that the escaping of one attribute's bytes decides the order against the next attribute.
fn row_strategy() -> impl Strategy<Value = Row> {
    (
        "[a-c]{1,3}",
        prop::sample::select(vec!["t1", "t2"]),
        prop::sample::select(vec!["eu", "us"]),
        prop::sample::select(vec!["a", "a\u{0}", "ab", "b", "\u{7f}"]),
        -3i64..3,
        prop::collection::vec(prop::sample::select(vec![0u8, 1, 0xFF]), 1..3),
    )
        .prop_map(|(id, tournament, region, round, bracket, seq)| Row {
            id,
            tournament: tournament.to_string(),
            region: region.to_string(),
            round: round.to_string(),
            bracket,
            seq,
        })
}

fn sort_condition_strategy() -> impl Strategy<Value = (usize, u8, AttributeValue, AttributeValue)> {
    (
        0usize..=3,
        0u8..7,
        prop::sample::select(vec!["a", "a\u{0}", "ab", "b", ""]),
        -3i64..3,
    )
        .prop_map(|(prefix, operator, text, number)| {
            (prefix, operator, s(text), n(&number.to_string()))
        })
}

fn condition_on(operator: u8, value: AttributeValue, upper: AttributeValue) -> SortKeyCondition {
    match operator {
        0 => SortKeyCondition::Equal(value),
        1 => SortKeyCondition::Less(value),
        2 => SortKeyCondition::LessOrEqual(value),
        3 => SortKeyCondition::Greater(value),
        4 => SortKeyCondition::GreaterOrEqual(value),
        5 => SortKeyCondition::Between(value, upper),
        _ => SortKeyCondition::BeginsWith(value),
    }
}

proptest! {
    /// Entries of one index partition key sort by their sort attributes compared one after
    /// another (each in DynamoDB's order), then by the base item's storage key: what a Query
    /// returns.
    #[test]
    fn entries_sort_attribute_by_attribute(rows in prop::collection::vec(row_strategy(), 2..12)) {
        for left in &rows {
            for right in &rows {
                if (&left.tournament, &left.region) != (&right.tournament, &right.region) {
                    continue;
                }
                let by_values = left
                    .sort_values()
                    .iter()
                    .zip(right.sort_values().iter())
                    .map(|(l, r)| l.compare(r).unwrap())
                    .find(|order| *order != Ordering::Equal)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| {
                        let storage_key = |row: &Row| table().storage_key(&row.item()).unwrap();
                        storage_key(left).cmp(&storage_key(right))
                    });
                prop_assert_eq!(entry_key(left).cmp(&entry_key(right)), by_values);
            }
        }
    }

    /// A key condition's bounds select exactly the entries it matches: the partition attributes
    /// equal, the leading sort attributes equal, the next one satisfying its condition.
    #[test]
    fn bounds_select_exactly_what_the_condition_matches(
        rows in prop::collection::vec(row_strategy(), 1..16),
        (fixed, operator, text, number) in sort_condition_strategy(),
        pick in 0usize..16,
    ) {
        let anchor = &rows[pick % rows.len()];
        let anchor_values = anchor.sort_values();
        // Fix the first `fixed` sort attributes to the anchor's values; constrain the next one.
        let mut condition = KeyCondition {
            partition_value: s(&anchor.tournament),
            other_partition_values: vec![s(&anchor.region)],
            sort_equal_prefix: Vec::new(),
            sort: None,
        };
        if fixed > 0 {
            condition.sort_equal_prefix = anchor_values[..fixed - 1].to_vec();
            let next = &anchor_values[fixed - 1];
            let (value, upper) = match next {
                AttributeValue::String(_) => (text.clone(), s("b")),
                AttributeValue::Number(_) => (number.clone(), n("2")),
                _ => (next.clone(), next.clone()),
            };
            let operator = if matches!(next, AttributeValue::Number(_)) && operator == 6 { 0 } else { operator };
            condition.sort = Some(condition_on(operator, value, upper));
        }
        let bounds = index().query_bounds(&condition).unwrap();
        for row in &rows {
            let values = row.sort_values();
            let expected = row.tournament == anchor.tournament
                && row.region == anchor.region
                && condition.sort_equal_prefix.iter().zip(&values).all(|(want, have)| want == have)
                && condition.sort.as_ref().is_none_or(|sort| {
                    sort.matches(&values[condition.sort_equal_prefix.len()])
                });
            prop_assert_eq!(within(&bounds, &entry_key(row)), expected, "{:?} {:?}", row, condition);
        }
    }
}

#[test]
fn the_partition_attributes_hash_together_and_route_the_entry() {
    let row = Row {
        id: "m1".to_string(),
        tournament: "WINTER2024".to_string(),
        region: "NA-EAST".to_string(),
        round: "SEMIFINALS".to_string(),
        bracket: 1,
        seq: vec![1],
    };
    let hash = multi_attribute_partition_hash(&[&s("WINTER2024"), &s("NA-EAST")]).unwrap();
    // Pinned (FORMAT.md): xxh3-64 over 'S' len "WINTER2024" 'S' len "NA-EAST".
    let mut input = vec![b'S', 0, 10];
    input.extend_from_slice(b"WINTER2024");
    input.extend_from_slice(&[b'S', 0, 7]);
    input.extend_from_slice(b"NA-EAST");
    assert_eq!(hash, xxhash_rust::xxh3::xxh3_64(&input));
    assert_eq!(storage_key_hash(&entry_key(&row)), Some(hash));
    // The values' boundary is part of the hash and of the prefix: ("ab", "c") is not
    // ("a", "bc").
    let split =
        |first: &str, second: &str| index_partition_prefix(&[&s(first), &s(second)]).unwrap();
    assert_ne!(split("ab", "c"), split("a", "bc"));
    assert_ne!(
        multi_attribute_partition_hash(&[&s("ab"), &s("c")]),
        multi_attribute_partition_hash(&[&s("a"), &s("bc")])
    );
    // A key of one attribute keeps the item storage key's prefix.
    assert_eq!(
        index_partition_prefix(&[&s("x")]),
        shoal_model::key::storage_key_prefix(&s("x"))
    );
}

#[test]
fn an_item_is_indexed_only_with_every_key_attribute() {
    let full = Row {
        id: "m1".to_string(),
        tournament: "t".to_string(),
        region: "eu".to_string(),
        round: "r".to_string(),
        bracket: 1,
        seq: vec![1],
    }
    .item();
    let storage_key = table().storage_key(&full).unwrap();
    assert!(index().entry_key(&storage_key, &full).is_some());
    for missing in [
        "tournamentId",
        "regionId",
        "roundName",
        "bracketNo",
        "seqNo",
    ] {
        let mut item = full.clone();
        item.remove(missing);
        assert_eq!(index().entry_key(&storage_key, &item), None, "{missing}");
        assert!(index().check_item(&item).is_ok(), "{missing}");
    }
    let mut wrong_type = full.clone();
    wrong_type.insert("bracketNo".to_string(), s("one"));
    assert_eq!(index().entry_key(&storage_key, &wrong_type), None);
    assert_eq!(
        index().check_item(&wrong_type).unwrap_err().message(),
        "One or more parameter values were invalid: Type mismatch for Index Key bracketNo Expected: N Actual: S IndexName: by_match"
    );
}

fn parse(expression: &str) -> Result<KeyCondition, String> {
    let values = json!({
        ":t": {"S": "t"}, ":r": {"S": "eu"}, ":round": {"S": "SEMI"}, ":one": {"N": "1"},
        ":two": {"N": "2"}, ":seq": {"B": "AQ=="}, ":x": {"S": "x"}
    });
    let mut context = ExpressionContext::from_json(None, Some(&values)).unwrap();
    let index = index();
    parse_key_condition(&mut context, expression, index.key_parts())
        .map_err(|error| error.message().to_string())
}

#[test]
fn key_conditions_take_every_partition_attribute_and_a_left_prefix_of_the_sort_key() {
    let condition = parse("tournamentId = :t AND regionId = :r").unwrap();
    assert_eq!(condition.partition_value, s("t"));
    assert_eq!(condition.other_partition_values, vec![s("eu")]);
    assert!(condition.sort_equal_prefix.is_empty() && condition.sort.is_none());

    let condition =
        parse("regionId = :r AND roundName = :round AND tournamentId = :t AND bracketNo BETWEEN :one AND :two")
            .unwrap();
    assert_eq!(condition.sort_equal_prefix, vec![s("SEMI")]);
    assert_eq!(
        condition.sort,
        Some(SortKeyCondition::Between(n("1"), n("2")))
    );

    let condition =
        parse("tournamentId = :t AND regionId = :r AND roundName = :round AND bracketNo = :one AND seqNo = :seq")
            .unwrap();
    assert_eq!(condition.sort_equal_prefix, vec![s("SEMI"), n("1")]);
    assert_eq!(condition.sort, Some(SortKeyCondition::Equal(b(&[1]))));

    let condition =
        parse("tournamentId = :t AND regionId = :r AND begins_with(roundName, :x)").unwrap();
    assert_eq!(condition.sort, Some(SortKeyCondition::BeginsWith(s("x"))));
}

#[test]
fn key_conditions_refuse_a_missing_attribute_a_gap_and_a_range_before_the_last() {
    assert_eq!(
        parse("tournamentId = :t").unwrap_err(),
        "Query condition missed key schema element: regionId"
    );
    assert_eq!(
        parse("regionId = :r AND roundName = :round").unwrap_err(),
        "Query condition missed key schema element: tournamentId"
    );
    assert_eq!(
        parse("tournamentId = :t AND regionId = :r AND bracketNo = :one").unwrap_err(),
        "Query condition missed key schema element: roundName"
    );
    assert_eq!(
        parse("tournamentId = :t AND regionId = :r AND roundName = :round AND seqNo = :seq")
            .unwrap_err(),
        "Query condition missed key schema element: bracketNo"
    );
    assert_eq!(
        parse("tournamentId = :t AND regionId = :r AND roundName > :round AND bracketNo = :one")
            .unwrap_err(),
        "Query key condition not supported"
    );
    assert_eq!(
        parse("tournamentId = :t AND regionId > :r").unwrap_err(),
        "Query key condition not supported"
    );
    assert_eq!(
        parse("tournamentId = :t AND regionId = :r AND roundName = :one").unwrap_err(),
        "One or more parameter values were invalid: Condition parameter type does not match schema type"
    );
    assert_eq!(
        parse("tournamentId = :t AND regionId = :r AND roundName = :round AND roundName = :x")
            .unwrap_err(),
        "KeyConditionExpressions must only contain one condition per key"
    );
}
