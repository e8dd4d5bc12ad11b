//! The legacy parameters translate into the same trees as expressions and evaluate alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value as Json, json};
use shoal_model::expression::evaluate::evaluate;
use shoal_model::expression::key_condition::SortKeyCondition;
use shoal_model::expression::projection::project;
use shoal_model::expression::update::apply_update;
use shoal_model::expression::{ExpressionContext, ExpressionKind};
use shoal_model::json::{item_from_json, item_to_json, value_from_json};
use shoal_model::key::{KeySchema, KeyType};
use shoal_model::legacy::{
    attribute_updates_to_update, attributes_to_get_to_projection, check_not_mixed,
    expected_to_condition, filter_to_condition, key_conditions_to_key_condition,
};

fn item() -> Json {
    json!({
        "pk": {"S": "k"}, "age": {"N": "42"}, "name": {"S": "Alice"},
        "tags": {"SS": ["red", "blue"]}, "entries": {"L": [{"S": "x"}]}
    })
}

fn expected_holds(expected: Json, operator: Option<&str>) -> bool {
    let condition = expected_to_condition(&expected, operator).unwrap().unwrap();
    evaluate(&condition, &item_from_json(&item()).unwrap())
}

#[test]
fn expected_with_value_and_exists() {
    assert!(expected_holds(json!({"age": {"Value": {"N": "42"}}}), None));
    assert!(expected_holds(
        json!({"age": {"Value": {"N": "42.0"}, "Exists": true}}),
        None
    ));
    assert!(!expected_holds(
        json!({"age": {"Value": {"N": "41"}}}),
        None
    ));
    assert!(expected_holds(json!({"absent": {"Exists": false}}), None));
    assert!(!expected_holds(json!({"age": {"Exists": false}}), None));
    assert!(expected_to_condition(&json!({}), None).unwrap().is_none());
}

#[test]
fn expected_with_comparison_operators() {
    for (expected, holds) in [
        (
            json!({"age": {"ComparisonOperator": "EQ", "AttributeValueList": [{"N": "42"}]}}),
            true,
        ),
        (
            json!({"age": {"ComparisonOperator": "NE", "AttributeValueList": [{"N": "42"}]}}),
            false,
        ),
        (
            json!({"absent": {"ComparisonOperator": "NE", "AttributeValueList": [{"N": "42"}]}}),
            true,
        ),
        (
            json!({"age": {"ComparisonOperator": "LT", "AttributeValueList": [{"N": "50"}]}}),
            true,
        ),
        (
            json!({"age": {"ComparisonOperator": "GE", "AttributeValueList": [{"N": "43"}]}}),
            false,
        ),
        (json!({"age": {"ComparisonOperator": "NOT_NULL"}}), true),
        (json!({"age": {"ComparisonOperator": "NULL"}}), false),
        (
            json!({"tags": {"ComparisonOperator": "CONTAINS", "AttributeValueList": [{"S": "red"}]}}),
            true,
        ),
        (
            json!({"tags": {"ComparisonOperator": "NOT_CONTAINS", "AttributeValueList": [{"S": "red"}]}}),
            false,
        ),
        (
            json!({"absent": {"ComparisonOperator": "NOT_CONTAINS", "AttributeValueList": [{"S": "red"}]}}),
            false,
        ),
        (
            json!({"entries": {"ComparisonOperator": "CONTAINS", "AttributeValueList": [{"S": "x"}]}}),
            true,
        ),
        (
            json!({"name": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [{"S": "Al"}]}}),
            true,
        ),
        (
            json!({"age": {"ComparisonOperator": "IN", "AttributeValueList": [{"N": "1"}, {"N": "42"}]}}),
            true,
        ),
        (
            json!({"age": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "40"}, {"N": "45"}]}}),
            true,
        ),
    ] {
        assert_eq!(expected_holds(expected.clone(), None), holds, "{expected}");
    }
}

#[test]
fn conditional_operator_combines_entries() {
    let entries = json!({
        "age": {"Value": {"N": "42"}},
        "name": {"Value": {"S": "Bob"}}
    });
    assert!(!expected_holds(entries.clone(), None));
    assert!(!expected_holds(entries.clone(), Some("AND")));
    assert!(expected_holds(entries.clone(), Some("OR")));
    let error = expected_to_condition(&entries, Some("XOR")).unwrap_err();
    assert!(error.message().contains("'XOR' at 'conditionalOperator'"));
}

#[test]
fn expected_errors() {
    for (expected, message) in [
        (
            json!({"a": {"Exists": true}}),
            "One or more parameter values were invalid: Value must be provided when Exists is true",
        ),
        (
            json!({"a": {"Exists": false, "Value": {"N": "1"}}}),
            "One or more parameter values were invalid: Value cannot be used when Exists is false",
        ),
        // dynalite's test/deleteItem.js (its README: tested against live DynamoDB, error
        // messages included).
        (
            json!({"a": {"Value": {"N": "1"}, "ComparisonOperator": "BETWEEN"}}),
            "One or more parameter values were invalid: Invalid number of argument(s) for the BETWEEN ComparisonOperator",
        ),
        (
            json!({"a": {"ComparisonOperator": "EQ"}}),
            "One or more parameter values were invalid: Value or AttributeValueList must be used with ComparisonOperator: EQ for Attribute: a",
        ),
        (
            json!({"a": {"Exists": true, "ComparisonOperator": "LT"}}),
            "One or more parameter values were invalid: Exists and ComparisonOperator cannot be used together for Attribute: a",
        ),
        (
            json!({"a": {"Exists": true, "AttributeValueList": []}}),
            "One or more parameter values were invalid: AttributeValueList can only be used with a ComparisonOperator for Attribute: a",
        ),
        (
            json!({"a": {"Value": {"S": "a"}, "AttributeValueList": []}}),
            "One or more parameter values were invalid: Value and AttributeValueList cannot be used together for Attribute: a",
        ),
        (
            json!({"a": {"ComparisonOperator": "IN", "AttributeValueList": [{"S": "b"}, {"N": "1"}]}}),
            "One or more parameter values were invalid: AttributeValues inside AttributeValueList must be of same type",
        ),
        (
            json!({"a": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"S": "b"}, {"S": "a"}]}}),
            "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound",
        ),
        (
            json!({"a": {"ComparisonOperator": "NULL", "AttributeValueList": [{"N": "1"}]}}),
            "One or more parameter values were invalid: Invalid number of argument(s) for the NULL ComparisonOperator",
        ),
        (
            json!({"a": {"ComparisonOperator": "LT", "AttributeValueList": [{"BOOL": true}]}}),
            "One or more parameter values were invalid: ComparisonOperator LT is not valid for the given AttributeValue type",
        ),
        (
            json!({"a": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [{"N": "1"}]}}),
            "One or more parameter values were invalid: ComparisonOperator BEGINS_WITH is not valid for the given AttributeValue type",
        ),
    ] {
        assert_eq!(
            expected_to_condition(&expected, None)
                .unwrap_err()
                .message(),
            message,
            "{expected}"
        );
    }
    let error =
        expected_to_condition(&json!({"a": {"ComparisonOperator": "LIKE"}}), None).unwrap_err();
    assert!(
        error
            .message()
            .starts_with("1 validation error detected: Value 'LIKE' at 'comparisonOperator'")
    );
}

#[test]
fn legacy_filters_match_the_equivalent_expression() {
    let filter = json!({
        "age": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "40"}]},
        "name": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [{"S": "A"}]}
    });
    let legacy = filter_to_condition(&filter, None).unwrap().unwrap();
    let values = json!({":forty": {"N": "40"}, ":a": {"S": "A"}});
    let mut context =
        ExpressionContext::from_json(Some(&json!({"#name": "name"})), Some(&values)).unwrap();
    let expression = context
        .parse_condition(
            ExpressionKind::Filter,
            "age > :forty AND begins_with(#name, :a)",
        )
        .unwrap();
    assert_eq!(legacy, expression);
}

#[test]
fn attribute_updates() {
    let updates = json!({
        "name": {"Value": {"S": "Bob"}},
        "age": {"Action": "ADD", "Value": {"N": "-2"}},
        "tags": {"Action": "DELETE", "Value": {"SS": ["red"]}},
        "entries": {"Action": "DELETE"},
        "fresh": {"Action": "PUT", "Value": {"BOOL": false}}
    });
    let update = attribute_updates_to_update(&updates).unwrap();
    let schema = KeySchema::partition_only("pk", KeyType::String);
    let new_item = apply_update(&update, &item_from_json(&item()).unwrap(), &schema).unwrap();
    assert_eq!(
        item_to_json(&new_item),
        json!({
            "pk": {"S": "k"}, "age": {"N": "40"}, "name": {"S": "Bob"},
            "tags": {"SS": ["blue"]}, "fresh": {"BOOL": false}
        })
    );
    for (updates, message) in [
        (
            json!({"a": {"Action": "PUT"}}),
            "One or more parameter values were invalid: Only DELETE action is allowed when no attribute value is specified",
        ),
        (
            json!({"a": {"Action": "ADD", "Value": {"S": "x"}}}),
            "One or more parameter values were invalid: Action ADD is not supported for the type S",
        ),
        (
            json!({"a": {"Action": "DELETE", "Value": {"N": "1"}}}),
            "One or more parameter values were invalid: DELETE action with value is not supported for the type N",
        ),
    ] {
        assert_eq!(
            attribute_updates_to_update(&updates).unwrap_err().message(),
            message
        );
    }
    let error = apply_update(
        &attribute_updates_to_update(&json!({"pk": {"Value": {"S": "other"}}})).unwrap(),
        &item_from_json(&item()).unwrap(),
        &schema,
    )
    .unwrap_err();
    assert!(error.message().contains("Cannot update attribute pk"));
}

#[test]
fn key_conditions() {
    let schema = KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number);
    let conditions = json!({
        "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "k"}]},
        "sk": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "1"}, {"N": "9"}]}
    });
    let condition = key_conditions_to_key_condition(&conditions, schema.parts()).unwrap();
    assert_eq!(
        condition.partition_value,
        value_from_json(&json!({"S": "k"})).unwrap()
    );
    assert_eq!(
        condition.sort,
        Some(SortKeyCondition::Between(
            value_from_json(&json!({"N": "1"})).unwrap(),
            value_from_json(&json!({"N": "9"})).unwrap()
        ))
    );
    let not_indexable =
        json!({"pk": {"ComparisonOperator": "NE", "AttributeValueList": [{"S": "k"}]}});
    assert_eq!(
        key_conditions_to_key_condition(&not_indexable, schema.parts())
            .unwrap_err()
            .message(),
        "Attempted conditional constraint is not an indexable operation"
    );
    let missing = json!({"sk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"N": "1"}]}});
    assert_eq!(
        key_conditions_to_key_condition(&missing, schema.parts())
            .unwrap_err()
            .message(),
        "Query condition missed key schema element: pk"
    );
}

#[test]
fn attributes_to_get() {
    let paths = attributes_to_get_to_projection(&json!(["age", "name", "absent"])).unwrap();
    let projected = project(&item_from_json(&item()).unwrap(), &paths);
    assert_eq!(
        item_to_json(&projected),
        json!({"age": {"N": "42"}, "name": {"S": "Alice"}})
    );
    assert_eq!(
        attributes_to_get_to_projection(&json!(["a", "a"]))
            .unwrap_err()
            .message(),
        "One or more parameter values were invalid: Duplicate value in attribute name: a"
    );
    assert!(attributes_to_get_to_projection(&json!([])).is_err());
}

#[test]
fn mixing_legacy_and_expression_parameters_is_rejected() {
    assert!(check_not_mixed(&["Expected"], &[]).is_ok());
    assert_eq!(
        check_not_mixed(&["Expected"], &["ConditionExpression"])
            .unwrap_err()
            .message(),
        "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {Expected} Expression parameters: {ConditionExpression}"
    );
}
