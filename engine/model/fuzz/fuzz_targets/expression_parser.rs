//! Feeds arbitrary text to every expression parser, then evaluates and applies whatever parses.
//! Nothing may panic; every rejection must be a ValidationException.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use shoal_model::expression::evaluate::evaluate;
use shoal_model::expression::key_condition::parse_key_condition;
use shoal_model::expression::update::apply_update;
use shoal_model::expression::{ExpressionContext, ExpressionKind};
use shoal_model::key::{KeySchema, KeyType};
use shoal_model::{AttributeValue, Item, Number};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let names = BTreeMap::from([("#n".to_string(), "n".to_string())]);
    let values = BTreeMap::from([
        (":v".to_string(), AttributeValue::Number(Number::from(1))),
        (":l".to_string(), AttributeValue::List(vec![])),
        (
            ":s".to_string(),
            AttributeValue::StringSet(BTreeSet::from(["x".to_string()])),
        ),
    ]);
    let Ok(mut context) = ExpressionContext::new(Some(names), Some(values)) else {
        return;
    };
    let item = Item::from([(
        "a".to_string(),
        AttributeValue::List(vec![AttributeValue::Null]),
    )]);
    let schema = KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number);
    let check =
        |error: shoal_model::Error| assert_eq!(error.exception_name(), "ValidationException");
    match context.parse_condition(ExpressionKind::Condition, text) {
        Ok(condition) => {
            let _ = evaluate(&condition, &item);
        }
        Err(error) => check(error),
    }
    match context.parse_update(text) {
        Ok(update) => {
            let _ = apply_update(&update, &item, &schema);
        }
        Err(error) => check(error),
    }
    if let Err(error) = context.parse_projection(text) {
        check(error);
    }
    if let Err(error) = parse_key_condition(&mut context, text, schema.parts()) {
        check(error);
    }
});
