//! ProjectionExpression results and KeyConditionExpression validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Bound;

use serde_json::json;
use shoal_model::expression::ExpressionContext;
use shoal_model::expression::key_condition::{SortKeyCondition, parse_key_condition};
use shoal_model::expression::projection::project;
use shoal_model::json::{item_from_json, item_to_json, value_from_json};
use shoal_model::key::{KeySchema, KeyType, sort_key_bytes};

#[test]
fn projection_selects_paths_and_compacts_lists() {
    let item = item_from_json(&json!({
        "a": {"N": "1"}, "b": {"S": "x"},
        "l": {"L": [{"N": "0"}, {"M": {"x": {"N": "1"}, "y": {"N": "2"}}}, {"N": "2"}, {"N": "3"}]},
        "m": {"M": {"p": {"S": "p"}, "q": {"S": "q"}}}
    }))
    .unwrap();
    let mut context = ExpressionContext::from_json(Some(&json!({"#l": "l"})), None).unwrap();
    let paths = context
        .parse_projection("a, #l[3], l[1].y, m.q, absent, m.absent")
        .unwrap();
    assert_eq!(
        item_to_json(&project(&item, &paths)),
        json!({
            "a": {"N": "1"},
            "l": {"L": [{"M": {"y": {"N": "2"}}}, {"N": "3"}]},
            "m": {"M": {"q": {"S": "q"}}}
        })
    );
    assert!(context.finish().is_ok());
}

fn schema() -> KeySchema {
    KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number)
}

fn key_condition(expression: &str) -> Result<Option<SortKeyCondition>, String> {
    let values = json!({
        ":p": {"S": "p"}, ":one": {"N": "1"}, ":two": {"N": "2"}, ":s": {"S": "s"},
        ":empty": {"S": ""}
    });
    let names = json!({"#pk": "pk"});
    let mut context = ExpressionContext::from_json(Some(&names), Some(&values)).unwrap();
    let condition = parse_key_condition(&mut context, expression, schema().parts())
        .map_err(|error| error.message().to_string())?;
    assert_eq!(
        condition.partition_value,
        value_from_json(&json!({"S": "p"})).unwrap()
    );
    Ok(condition.sort)
}

#[test]
fn valid_key_conditions() {
    let number = |text: &str| value_from_json(&json!({"N": text})).unwrap();
    assert_eq!(key_condition("pk = :p"), Ok(None));
    assert_eq!(key_condition("#pk = :p"), Ok(None));
    assert_eq!(key_condition(":p = pk"), Ok(None));
    assert_eq!(
        key_condition("pk = :p AND sk = :one"),
        Ok(Some(SortKeyCondition::Equal(number("1"))))
    );
    assert_eq!(
        key_condition("sk < :one AND pk = :p"),
        Ok(Some(SortKeyCondition::Less(number("1"))))
    );
    assert_eq!(
        key_condition("pk = :p AND :one < sk"),
        Ok(Some(SortKeyCondition::Greater(number("1"))))
    );
    assert_eq!(
        key_condition("pk = :p AND sk BETWEEN :one AND :two"),
        Ok(Some(SortKeyCondition::Between(number("1"), number("2"))))
    );
}

#[test]
fn invalid_key_conditions() {
    for (expression, expected) in [
        ("sk = :one", "Query condition missed key schema element: pk"),
        (
            "pk = :p OR sk = :one",
            "Invalid operator used in KeyConditionExpression: OR",
        ),
        (
            "NOT pk = :p",
            "Invalid operator used in KeyConditionExpression: NOT",
        ),
        (
            "pk = :p AND sk <> :one",
            "Invalid operator used in KeyConditionExpression: <>",
        ),
        (
            "pk = :p AND sk IN (:one)",
            "Invalid operator used in KeyConditionExpression: IN",
        ),
        (
            "pk = :p AND attribute_exists(sk)",
            "Invalid operator used in KeyConditionExpression: attribute_exists",
        ),
        (
            "pk = :p AND pk = :p",
            "KeyConditionExpressions must only contain one condition per key",
        ),
        ("pk < :p", "Query key condition not supported"),
        (
            "pk = :p AND colour = :one",
            "Query condition missed key schema element: sk",
        ),
        (
            "pk = :p AND sk = :one AND colour = :one",
            "Query key condition not supported",
        ),
        (
            "sk = :one AND colour = :one",
            "Query condition missed key schema element: pk",
        ),
        (
            "pk = :empty",
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: pk",
        ),
        (
            "pk = :one",
            "One or more parameter values were invalid: Condition parameter type does not match schema type",
        ),
        (
            "pk = :p AND sk = :s",
            "One or more parameter values were invalid: Condition parameter type does not match schema type",
        ),
        (
            "pk = :p AND begins_with(sk, :s)",
            "One or more parameter values were invalid: Condition parameter type does not match schema type",
        ),
    ] {
        assert_eq!(
            key_condition(expression),
            Err(expected.to_string()),
            "{expression}"
        );
    }
}

#[test]
fn sort_key_conditions_match_and_bound_encoded_keys() {
    let text = |value: &str| value_from_json(&json!({"S": value})).unwrap();
    let begins = SortKeyCondition::BeginsWith(text("ab"));
    assert!(begins.matches(&text("abc")));
    assert!(!begins.matches(&text("b")));
    let (lower, upper) = begins.encoded_bounds();
    assert_eq!(lower, Bound::Included(b"ab".to_vec()));
    assert_eq!(upper, Bound::Excluded(b"ac".to_vec()));
    for candidate in ["a", "ab", "ab\u{10FFFF}", "abz", "ac", "b"] {
        let encoded = sort_key_bytes(&text(candidate)).unwrap();
        let in_range = (lower.as_ref(), upper.as_ref());
        let inside = match in_range {
            (Bound::Included(low), Bound::Excluded(high)) => {
                encoded.as_slice() >= low.as_slice() && encoded.as_slice() < high.as_slice()
            }
            _ => unreachable!(),
        };
        assert_eq!(inside, begins.matches(&text(candidate)), "{candidate}");
    }
    let between = SortKeyCondition::Between(text("b"), text("d"));
    assert!(
        between.matches(&text("c")) && between.matches(&text("d")) && !between.matches(&text("e"))
    );
}
