//! Property tests: encodings round-trip, sort-key byte order equals DynamoDB's order, numbers
//! agree with a reference decimal implementation (bigdecimal), and no input panics the parser
//! or the decoder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeBounds;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use proptest::prelude::*;
use shoal_model::encoding::{decode_item, encode_item};
use shoal_model::expression::evaluate::evaluate;
use shoal_model::expression::key_condition::{KeyCondition, SortKeyCondition};
use shoal_model::expression::projection::project;
use shoal_model::expression::{DocumentPath, ExpressionContext, ExpressionKind};
use shoal_model::json::{item_from_json, item_to_json};
use shoal_model::key::{KeySchema, KeyType, partition_hash, sort_key_bytes};
use shoal_model::number::{
    NUMBER_ADJUSTED_EXPONENT_MAX, NUMBER_ADJUSTED_EXPONENT_MIN, NUMBER_DIGITS_MAX,
};
use shoal_model::{AttributeValue, Item, Number, messages};

/// Valid numbers across the whole range: up to 38 digits, any allowed exponent.
fn number_strategy() -> impl Strategy<Value = Number> {
    (
        any::<bool>(),
        1u128..10u128.pow(NUMBER_DIGITS_MAX),
        -170i32..130,
    )
        .prop_filter_map("in range", |(negative, coefficient, exponent)| {
            let sign = if negative { "-" } else { "" };
            Number::parse(&format!("{sign}{coefficient}e{exponent}")).ok()
        })
        .boxed()
        .prop_union(Just(Number::ZERO).boxed())
        .or((0u64..1000).prop_map(Number::from).boxed())
}

fn value_strategy() -> impl Strategy<Value = AttributeValue> {
    let leaf = prop_oneof![
        any::<String>().prop_map(AttributeValue::String),
        number_strategy().prop_map(AttributeValue::Number),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(AttributeValue::Binary),
        any::<bool>().prop_map(AttributeValue::Boolean),
        Just(AttributeValue::Null),
        prop::collection::btree_set(any::<String>(), 1..4).prop_map(AttributeValue::StringSet),
        prop::collection::btree_set(number_strategy(), 1..4).prop_map(AttributeValue::NumberSet),
        prop::collection::btree_set(prop::collection::vec(any::<u8>(), 0..8), 1..4)
            .prop_map(AttributeValue::BinarySet),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(AttributeValue::List),
            prop::collection::btree_map(any::<String>(), inner, 0..4).prop_map(AttributeValue::Map),
        ]
    })
}

fn item_strategy() -> impl Strategy<Value = Item> {
    prop::collection::btree_map("[a-z]{1,8}", value_strategy(), 0..6)
}

fn reference(number: &Number) -> BigDecimal {
    BigDecimal::from_str(&number.to_string()).unwrap()
}

/// A decimal string in the shape DynamoDB clients send.
fn number_text_strategy() -> impl Strategy<Value = String> {
    (
        "-?",
        "[0-9]{1,45}",
        prop::option::of("[0-9]{1,20}"),
        prop::option::of(-200i32..200),
    )
        .prop_map(|(sign, integer, fraction, exponent)| {
            let mut text = format!("{sign}{integer}");
            if let Some(fraction) = fraction {
                text.push('.');
                text.push_str(&fraction);
            }
            if let Some(exponent) = exponent {
                text.push_str(&format!("E{exponent}"));
            }
            text
        })
}

/// What DynamoDB's rules say about an exact value: Ok, or which error.
fn expected_outcome(value: &BigDecimal) -> Result<(), &'static str> {
    let normalized = value.normalized();
    if normalized == 0 {
        return Ok(());
    }
    let (integer, scale) = normalized.as_bigint_and_exponent();
    let digits = integer.to_string().trim_start_matches('-').len() as i64;
    let adjusted = digits - 1 - scale;
    if adjusted > i64::from(NUMBER_ADJUSTED_EXPONENT_MAX) {
        return Err(messages::NUMBER_OVERFLOW);
    }
    if adjusted < i64::from(NUMBER_ADJUSTED_EXPONENT_MIN) {
        return Err(messages::NUMBER_UNDERFLOW);
    }
    if digits > i64::from(NUMBER_DIGITS_MAX) {
        return Err(messages::NUMBER_TOO_MANY_DIGITS);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn item_encoding_round_trips(item in item_strategy()) {
        let bytes = encode_item(&item);
        prop_assert_eq!(decode_item(&bytes).unwrap(), item.clone());
        // Canonical: re-encoding gives the same bytes.
        prop_assert_eq!(encode_item(&decode_item(&bytes).unwrap()), bytes);
    }

    #[test]
    fn dynamodb_json_round_trips(item in item_strategy()) {
        prop_assert_eq!(item_from_json(&item_to_json(&item)).unwrap(), item);
    }

    #[test]
    fn number_parsing_matches_the_reference(text in number_text_strategy()) {
        let exact = BigDecimal::from_str(&text).unwrap();
        match (Number::parse(&text), expected_outcome(&exact)) {
            (Ok(number), Ok(())) => {
                prop_assert_eq!(reference(&number), exact.clone());
                // Normalised: any spelling of the value gives the same fields and encoding.
                let respelled = Number::parse(&exact.normalized().to_scientific_notation()).unwrap();
                prop_assert_eq!(respelled, number);
                prop_assert_eq!(respelled.sort_key_bytes(), number.sort_key_bytes());
            }
            (Err(error), Err(expected)) => prop_assert_eq!(error.message(), expected),
            (outcome, expected) => prop_assert!(false, "{text}: {outcome:?} vs {expected:?}"),
        }
    }

    #[test]
    fn number_arithmetic_matches_the_reference(left in number_strategy(), right in number_strategy()) {
        for (outcome, exact) in [
            (left.add(&right), reference(&left) + reference(&right)),
            (left.subtract(&right), reference(&left) - reference(&right)),
        ] {
            match (outcome, expected_outcome(&exact)) {
                (Ok(number), Ok(())) => prop_assert_eq!(reference(&number), exact),
                (Err(error), Err(expected)) => {
                    let expected = if expected == messages::NUMBER_TOO_MANY_DIGITS {
                        messages::NUMBER_ARITHMETIC_PRECISION
                    } else {
                        expected
                    };
                    prop_assert_eq!(error.message(), expected);
                }
                (outcome, expected) => prop_assert!(false, "{outcome:?} vs {expected:?}"),
            }
        }
    }

    #[test]
    fn number_order_matches_the_reference(left in number_strategy(), right in number_strategy()) {
        let expected = reference(&left).cmp(&reference(&right));
        prop_assert_eq!(left.cmp(&right), expected);
        prop_assert_eq!(left.sort_key_bytes().cmp(&right.sort_key_bytes()), expected);
        prop_assert_eq!(left == right, partition_hash(&AttributeValue::Number(left)) == partition_hash(&AttributeValue::Number(right)));
    }

    #[test]
    fn string_and_binary_sort_keys_preserve_order(
        left in any::<String>(), right in any::<String>(),
        left_bytes in prop::collection::vec(any::<u8>(), 0..8),
        right_bytes in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        for (left, right) in [
            (AttributeValue::String(left), AttributeValue::String(right)),
            (AttributeValue::Binary(left_bytes), AttributeValue::Binary(right_bytes)),
        ] {
            let expected: Ordering = left.compare(&right).unwrap();
            prop_assert_eq!(sort_key_bytes(&left).unwrap().cmp(&sort_key_bytes(&right).unwrap()), expected);
        }
    }

    #[test]
    fn projecting_every_attribute_returns_the_item(item in item_strategy()) {
        let paths: Vec<DocumentPath> = item.keys().map(|name| DocumentPath::attribute(name)).collect();
        prop_assert_eq!(project(&item, &paths), item.clone());
        // Projecting a subset keeps exactly those attributes, unchanged.
        let half = &paths[..paths.len() / 2];
        let projected = project(&item, half);
        prop_assert_eq!(projected.len(), half.len());
        for (name, value) in &projected {
            prop_assert_eq!(Some(value), item.get(name));
        }
    }

    #[test]
    fn storage_bounds_select_exactly_the_matching_items(
        partition in "[a-c]{1,3}",
        other_partition in "[a-c]{1,3}",
        sort_number in number_strategy(),
        first in number_strategy(),
        second in number_strategy(),
        sort_text in "[a-c]{0,4}",
        prefix in "[a-c]{0,3}",
        kind in 0usize..7,
    ) {
        let (lower, upper) = if first <= second { (first, second) } else { (second, first) };
        let number = |value: Number| AttributeValue::Number(value);
        let text = |value: &str| AttributeValue::String(value.to_string());
        let (sort_value, sort_condition) = match kind {
            0 => (number(sort_number), SortKeyCondition::Equal(number(first))),
            1 => (number(sort_number), SortKeyCondition::Less(number(first))),
            2 => (number(sort_number), SortKeyCondition::LessOrEqual(number(first))),
            3 => (number(sort_number), SortKeyCondition::Greater(number(first))),
            4 => (number(sort_number), SortKeyCondition::GreaterOrEqual(number(first))),
            5 => (number(sort_number), SortKeyCondition::Between(number(lower), number(upper))),
            _ => (text(&sort_text), SortKeyCondition::BeginsWith(text(&prefix))),
        };
        let sort_type = if kind < 6 { KeyType::Number } else { KeyType::String };
        let schema = KeySchema::with_sort("pk", KeyType::String, "sk", sort_type);
        let condition = KeyCondition::single(text(&partition), Some(sort_condition.clone()));
        let bounds = condition.storage_bounds().unwrap();
        for candidate_partition in [&partition, &other_partition] {
            let key = Item::from([
                ("pk".to_string(), text(candidate_partition)),
                ("sk".to_string(), sort_value.clone()),
            ]);
            let storage_key = schema.storage_key(&key).unwrap();
            let expected = candidate_partition == &partition && sort_condition.matches(&sort_value);
            prop_assert_eq!(bounds.contains(&storage_key), expected);
        }
    }

    #[test]
    fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_item(&bytes);
    }

    #[test]
    fn decoder_never_panics_on_mutated_items(item in item_strategy(), position in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = encode_item(&item);
        if !bytes.is_empty() {
            let position = position % bytes.len();
            bytes[position] = byte;
        }
        if let Ok(decoded) = decode_item(&bytes) {
            // Whatever decodes is canonical.
            prop_assert_eq!(encode_item(&decoded), bytes);
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(text in any::<String>()) {
        parse_everything(&text);
    }

    #[test]
    fn parser_never_panics_on_token_soup(tokens in prop::collection::vec(token_strategy(), 0..40)) {
        parse_everything(&tokens.join(" "));
    }
}

fn token_strategy() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a",
        "b",
        "#n",
        ":v",
        ":l",
        ":s",
        "(",
        ")",
        "[",
        "]",
        "[0]",
        ".",
        ",",
        "=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "+",
        "-",
        "AND",
        "OR",
        "NOT",
        "BETWEEN",
        "IN",
        "SET",
        "REMOVE",
        "ADD",
        "DELETE",
        "size",
        "contains",
        "begins_with",
        "attribute_exists",
        "attribute_not_exists",
        "attribute_type",
        "if_not_exists",
        "list_append",
        "status",
        "0",
        "99999999999999999999999",
    ])
}

fn parse_everything(text: &str) {
    let names = BTreeMap::from([("#n".to_string(), "n".to_string())]);
    let values = BTreeMap::from([
        (":v".to_string(), AttributeValue::Number(Number::from(1))),
        (":l".to_string(), AttributeValue::List(vec![])),
        (
            ":s".to_string(),
            AttributeValue::StringSet(BTreeSet::from(["x".to_string()])),
        ),
    ]);
    let item = Item::from([(
        "a".to_string(),
        AttributeValue::List(vec![AttributeValue::Null]),
    )]);
    let mut context = ExpressionContext::new(Some(names), Some(values)).unwrap();
    if let Ok(condition) = context.parse_condition(ExpressionKind::Condition, text) {
        let _ = evaluate(&condition, &item);
    }
    if let Ok(update) = context.parse_update(text) {
        let schema =
            shoal_model::key::KeySchema::partition_only("pk", shoal_model::key::KeyType::String);
        let _ = shoal_model::expression::update::apply_update(&update, &item, &schema);
    }
    let _ = context.parse_projection(text);
    let _ = context.finish();
}
