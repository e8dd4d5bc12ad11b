//! A whole conditional UpdateItem as the partition leader runs it: parse every expression of
//! the request through one context, reject unused placeholders, check the condition against the
//! current item, apply the update, and compute ReturnValues.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shoal_model::expression::evaluate::check_condition;
use shoal_model::expression::update::{
    ReturnValues, apply_update, returned_attributes, updated_paths,
};
use shoal_model::expression::{ExpressionContext, ExpressionKind};
use shoal_model::json::{item_from_json, item_to_json};
use shoal_model::key::{KeySchema, KeyType};
use shoal_model::value::check_item_size;
use shoal_model::{Error, Item};

struct Request {
    condition: &'static str,
    update: &'static str,
}

fn run(request: &Request, current: &Item) -> Result<(Item, Option<Item>), Error> {
    let names = json!({"#v": "version"});
    let values = json!({":expected": {"N": "1"}, ":one": {"N": "1"}, ":tag": {"SS": ["new"]}});
    let mut context = ExpressionContext::from_json(Some(&names), Some(&values))?;
    let condition = context.parse_condition(ExpressionKind::Condition, request.condition)?;
    let update = context.parse_update(request.update)?;
    context.finish()?;
    check_condition(Some(&condition), current)?;
    let schema = KeySchema::partition_only("pk", KeyType::String);
    let new_item = apply_update(&update, current, &schema)?;
    check_item_size(&new_item)?;
    let returned = returned_attributes(
        ReturnValues::UpdatedNew,
        Some(current),
        Some(&new_item),
        &updated_paths(&update),
    );
    Ok((new_item, returned))
}

#[test]
fn optimistic_locking_succeeds_once() {
    let request = Request {
        condition: "#v = :expected",
        update: "SET #v = #v + :one ADD tags :tag",
    };
    let current = item_from_json(&json!({"pk": {"S": "k"}, "version": {"N": "1"}})).unwrap();
    let (new_item, returned) = run(&request, &current).unwrap();
    assert_eq!(
        item_to_json(&new_item),
        json!({"pk": {"S": "k"}, "version": {"N": "2"}, "tags": {"SS": ["new"]}})
    );
    assert_eq!(
        item_to_json(&returned.unwrap()),
        json!({"version": {"N": "2"}, "tags": {"SS": ["new"]}})
    );
    // The same request against the new version fails its condition.
    let error = run(&request, &new_item).unwrap_err();
    assert_eq!(error, Error::ConditionalCheckFailed);
    assert_eq!(error.exception_name(), "ConditionalCheckFailedException");
    assert_eq!(error.message(), "The conditional request failed");
}

#[test]
fn a_placeholder_left_unused_fails_the_request_before_evaluation() {
    let request = Request {
        condition: "#v = :expected",
        update: "SET #v = #v + :one",
    };
    let current = Item::new();
    let error = run(&request, &current).unwrap_err();
    assert_eq!(
        error.message(),
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:tag}"
    );
}

#[test]
fn condition_on_a_missing_item_sees_no_attributes() {
    let request = Request {
        condition: "attribute_not_exists(#v) OR #v = :expected",
        update: "SET #v = :one ADD tags :tag",
    };
    let (new_item, _) = run(&request, &Item::new()).unwrap();
    assert_eq!(
        item_to_json(&new_item),
        json!({"version": {"N": "1"}, "tags": {"SS": ["new"]}})
    );
}
