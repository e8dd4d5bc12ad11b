//! UpdateExpression application and ReturnValues, with DynamoDB's evaluation errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value as Json, json};
use shoal_model::expression::ExpressionContext;
use shoal_model::expression::update::{
    ReturnValues, apply_update, creates_missing_item, returned_attributes, updated_paths,
};
use shoal_model::json::{item_from_json, item_to_json};
use shoal_model::key::{KeySchema, KeyType};
use shoal_model::{Error, Item};

fn schema() -> KeySchema {
    KeySchema::partition_only("pk", KeyType::String)
}

fn old_item() -> Json {
    json!({
        "pk": {"S": "k"},
        "visits": {"N": "10"},
        "greeting": {"S": "hello"},
        "tags": {"SS": ["a", "b"]},
        "numbers": {"NS": ["1", "2"]},
        "entries": {"L": [{"N": "0"}, {"N": "1"}, {"N": "2"}, {"N": "3"}]},
        "nested": {"M": {"middle": {"M": {"x": {"N": "1"}}}}}
    })
}

fn values() -> Json {
    json!({
        ":one": {"N": "1"}, ":five": {"N": "5"}, ":greeting": {"S": "t"}, ":c": {"SS": ["c"]},
        ":ab": {"SS": ["a", "b"]}, ":a": {"SS": ["a"]}, ":numbers": {"NS": ["2", "3"]},
        ":list": {"L": [{"S": "new"}]}, ":empty_list": {"L": []},
        ":big": {"N": "9.9999999999999999999999999999999999999E+125"},
        ":tiny": {"N": "1E-100"}
    })
}

fn run(expression: &str, item: &Json) -> Result<Item, Error> {
    let mut context = ExpressionContext::from_json(None, Some(&values())).unwrap();
    let update = context.parse_update(expression)?;
    apply_update(&update, &item_from_json(item).unwrap(), &schema())
}

fn updated(expression: &str) -> Json {
    let item = run(expression, &old_item()).unwrap_or_else(|error| panic!("{expression}: {error}"));
    item_to_json(&item)
}

#[test]
fn set_actions() {
    assert_eq!(
        updated("SET visits = visits + :five")["visits"],
        json!({"N": "15"})
    );
    assert_eq!(
        updated("SET visits = :five - visits")["visits"],
        json!({"N": "-5"})
    );
    assert_eq!(updated("SET fresh = :greeting")["fresh"], json!({"S": "t"}));
    assert_eq!(
        updated("SET fresh = if_not_exists(fresh, :one)")["fresh"],
        json!({"N": "1"})
    );
    assert_eq!(
        updated("SET visits = if_not_exists(visits, :one)")["visits"],
        json!({"N": "10"})
    );
    assert_eq!(
        updated("SET entries = list_append(entries, :list)")["entries"]["L"][4],
        json!({"S": "new"})
    );
    assert_eq!(
        updated("SET entries = list_append(:list, entries)")["entries"]["L"][0],
        json!({"S": "new"})
    );
    assert_eq!(
        updated("SET fresh = list_append(if_not_exists(fresh, :empty_list), :list)")["fresh"],
        json!({"L": [{"S": "new"}]})
    );
    assert_eq!(
        updated("SET nested.middle.y = :one")["nested"]["M"]["middle"]["M"]["y"],
        json!({"N": "1"})
    );
    assert_eq!(
        updated("SET entries[1] = :greeting")["entries"]["L"][1],
        json!({"S": "t"})
    );
    // An index past the end appends.
    assert_eq!(
        updated("SET entries[99] = :greeting")["entries"]["L"][4],
        json!({"S": "t"})
    );
    // Every right side reads the item as it was before the update: a swap works.
    let swapped = updated("SET visits = greeting, greeting = visits");
    assert_eq!(swapped["visits"], json!({"S": "hello"}));
    assert_eq!(swapped["greeting"], json!({"N": "10"}));
}

#[test]
fn remove_actions() {
    let result = updated("REMOVE greeting, nested.middle.x, absent");
    assert!(result.get("greeting").is_none());
    assert_eq!(result["nested"]["M"]["middle"], json!({"M": {}}));
    // Indexes refer to the list before the update.
    let result = updated("REMOVE entries[1], entries[3]");
    assert_eq!(result["entries"], json!({"L": [{"N": "0"}, {"N": "2"}]}));
    assert_eq!(
        updated("REMOVE entries[10]")["entries"]["L"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn add_and_delete_actions() {
    assert_eq!(updated("ADD visits :five")["visits"], json!({"N": "15"}));
    assert_eq!(updated("ADD fresh :five")["fresh"], json!({"N": "5"}));
    assert_eq!(
        updated("ADD tags :c")["tags"],
        json!({"SS": ["a", "b", "c"]})
    );
    assert_eq!(
        updated("ADD numbers :numbers")["numbers"],
        json!({"NS": ["1", "2", "3"]})
    );
    assert_eq!(updated("DELETE tags :a")["tags"], json!({"SS": ["b"]}));
    // Deleting every member removes the attribute, as a set may not be empty.
    assert!(updated("DELETE tags :ab").get("tags").is_none());
    assert!(updated("DELETE absent :ab").get("absent").is_none());
    let combined =
        updated("SET greeting = :greeting REMOVE entries ADD visits :one DELETE tags :a");
    assert_eq!(combined["visits"], json!({"N": "11"}));
    assert!(combined.get("entries").is_none());
}

#[test]
fn evaluation_errors() {
    for (expression, expected) in [
        (
            "SET visits = greeting + :one",
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: +, operand type: S",
        ),
        (
            "SET visits = :one - greeting",
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: -, operand type: S",
        ),
        (
            "SET entries = list_append(entries, visits)",
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, operand type: N",
        ),
        (
            "SET greeting = list_append(greeting, :list)",
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, operand type: S",
        ),
        (
            "ADD greeting :five",
            "An operand in the update expression has an incorrect data type",
        ),
        (
            "ADD tags :numbers",
            "An operand in the update expression has an incorrect data type",
        ),
        (
            "DELETE numbers :a",
            "An operand in the update expression has an incorrect data type",
        ),
        (
            "SET visits = absent + :one",
            "The provided expression refers to an attribute that does not exist in the item",
        ),
        (
            "SET absent.x = :one",
            "The document path provided in the update expression is invalid for update",
        ),
        (
            "SET greeting.x = :one",
            "The document path provided in the update expression is invalid for update",
        ),
        (
            "SET nested[0] = :one",
            "The document path provided in the update expression is invalid for update",
        ),
        (
            "SET pk = :greeting",
            "One or more parameter values were invalid: Cannot update attribute pk. This attribute is part of the key",
        ),
        (
            "SET visits = :big + :big",
            "Number overflow. Attempting to store a number with magnitude larger than supported range",
        ),
        (
            "SET visits = :big + :tiny",
            "Number overflow. Attempting to store a number with more than 38 significant digits",
        ),
    ] {
        let error = run(expression, &old_item()).unwrap_err();
        assert_eq!(error.exception_name(), "ValidationException");
        assert_eq!(error.message(), expected, "{expression}");
    }
}

#[test]
fn section_keywords_ignore_case_and_sections_come_in_any_order() {
    let result = updated("remove greeting add visits :one Set fresh = :greeting dElEtE tags :a");
    assert!(result.get("greeting").is_none());
    assert_eq!(result["visits"], json!({"N": "11"}));
    assert_eq!(result["fresh"], json!({"S": "t"}));
    assert_eq!(result["tags"], json!({"SS": ["b"]}));
    // White space is free between tokens, including inside paths.
    let spaced = updated("SET  nested . middle . y=:one ,entries [ 0 ]=:greeting");
    assert_eq!(spaced["nested"]["M"]["middle"]["M"]["y"], json!({"N": "1"}));
    assert_eq!(spaced["entries"]["L"][0], json!({"S": "t"}));
}

#[test]
fn updates_to_a_missing_item_start_from_nothing() {
    let item = run("SET a = :one ADD b :five", &json!({})).unwrap();
    assert_eq!(
        item_to_json(&item),
        json!({"a": {"N": "1"}, "b": {"N": "5"}})
    );
}

#[test]
fn the_updated_item_is_limited_to_400_kb() {
    let half = "x".repeat(210 * 1024);
    let item = json!({"pk": {"S": "k"}, "a": {"S": half}});
    let values = json!({":half": {"S": half}});
    let mut context = ExpressionContext::from_json(None, Some(&values)).unwrap();
    let update = context.parse_update("SET b = :half").unwrap();
    let error = apply_update(&update, &item_from_json(&item).unwrap(), &schema()).unwrap_err();
    assert_eq!(
        error.message(),
        "Item size to update has exceeded the maximum allowed size"
    );
}

#[test]
fn copies_of_a_large_attribute_are_refused_before_they_are_built() {
    let large = "x".repeat(150 * 1024);
    let item = json!({"pk": {"S": "k"}, "a": {"S": large}});
    let mut context = ExpressionContext::default();
    let update = context.parse_update("SET b = a, c = a, d = a").unwrap();
    let error = apply_update(&update, &item_from_json(&item).unwrap(), &schema()).unwrap_err();
    assert_eq!(
        error.message(),
        "Item size to update has exceeded the maximum allowed size"
    );
}

#[test]
fn return_values() {
    let mut context = ExpressionContext::from_json(None, Some(&values())).unwrap();
    let update = context
        .parse_update("SET visits = visits + :one, nested.middle.y = :one REMOVE greeting")
        .unwrap();
    let old = item_from_json(&old_item()).unwrap();
    let new = apply_update(&update, &old, &schema()).unwrap();
    let paths = updated_paths(&update);
    let returned = |kind: &str| {
        returned_attributes(
            ReturnValues::parse(kind).unwrap(),
            Some(&old),
            Some(&new),
            &paths,
        )
        .map(|item| item_to_json(&item))
    };
    assert_eq!(returned("NONE"), None);
    assert_eq!(returned("ALL_OLD"), Some(old_item()));
    assert_eq!(returned("ALL_NEW"), Some(item_to_json(&new)));
    assert_eq!(
        returned("UPDATED_OLD"),
        Some(json!({"visits": {"N": "10"}, "greeting": {"S": "hello"}}))
    );
    assert_eq!(
        returned("UPDATED_NEW"),
        Some(json!({"visits": {"N": "11"}, "nested": {"M": {"middle": {"M": {"y": {"N": "1"}}}}}}))
    );
    // A new item has no old attributes to return.
    assert_eq!(
        returned_attributes(ReturnValues::AllOld, None, Some(&new), &paths),
        None
    );
    assert!(
        ReturnValues::parse("EVERYTHING")
            .unwrap_err()
            .message()
            .contains("'EVERYTHING'")
    );
}

/// DynamoDB creates a missing item for SET and ADD (and for an update with no action), never
/// for one made only of REMOVE and DELETE (ScyllaDB's alternator/test/test_item.py,
/// test_update_item_non_existent, run against AWS with `--aws`).
#[test]
fn only_set_and_add_create_a_missing_item() {
    let creates = |expression: &str| {
        let mut context = ExpressionContext::from_json(None, Some(&values())).unwrap();
        creates_missing_item(&context.parse_update(expression).unwrap())
    };
    assert!(creates("SET greeting = :greeting"));
    assert!(creates("ADD visits :one"));
    assert!(creates("REMOVE greeting SET visits = :one"));
    assert!(creates("DELETE tags :a ADD numbers :numbers"));
    assert!(!creates("REMOVE greeting"));
    assert!(!creates("DELETE tags :a"));
    assert!(!creates("REMOVE greeting, entries[0] DELETE tags :a"));
    assert!(creates_missing_item(&Default::default()));
}
