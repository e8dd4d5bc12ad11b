//! Micro-benchmark: parse + evaluate a typical condition, parse + apply a typical update, and
//! encode + decode a typical item. Prints ns/op; asserts nothing about speed.
//! Run: cargo bench -p shoal-model --bench expressions
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;
use shoal_model::encoding::{decode_item, encode_item};
use shoal_model::expression::evaluate::evaluate;
use shoal_model::expression::update::apply_update;
use shoal_model::expression::{ExpressionContext, ExpressionKind};
use shoal_model::json::item_from_json;
use shoal_model::key::{KeySchema, KeyType};

const ITERATIONS: u32 = 200_000;

fn measure(label: &str, mut operation: impl FnMut()) {
    // Warm caches and the allocator before timing.
    for _ in 0..ITERATIONS / 10 {
        operation();
    }
    let started = Instant::now();
    for _ in 0..ITERATIONS {
        operation();
    }
    let nanoseconds = started.elapsed().as_nanos() / u128::from(ITERATIONS);
    println!("{label:<48} {nanoseconds:>8} ns/op");
}

fn main() {
    let item = item_from_json(&json!({
        "pk": {"S": "user#1"}, "version": {"N": "7"}, "state": {"S": "active"},
        "tags": {"SS": ["a", "b", "c"]}, "visits": {"N": "1234"},
        "profile": {"M": {"email": {"S": "a@example.com"}, "age": {"N": "42"}}},
        "history": {"L": [{"N": "1"}, {"N": "2"}, {"N": "3"}]}
    }))
    .unwrap();
    let names = json!({"#state": "state"});
    let values = json!({
        ":version": {"N": "7"}, ":active": {"S": "active"}, ":adult": {"N": "18"},
        ":one": {"N": "1"}, ":new": {"L": [{"N": "4"}]}, ":tag": {"SS": ["d"]}
    });
    let schema = KeySchema::partition_only("pk", KeyType::String);
    let condition_text = "attribute_exists(pk) AND version = :version AND #state = :active \
                          AND profile.age >= :adult";
    let update_text = "SET visits = visits + :one, history = list_append(history, :new) \
                       ADD tags :tag";

    measure("parse + evaluate condition", || {
        let mut context = ExpressionContext::from_json(Some(&names), Some(&values)).unwrap();
        let condition = context
            .parse_condition(ExpressionKind::Condition, condition_text)
            .unwrap();
        black_box(evaluate(&condition, &item));
    });
    measure("build placeholders from JSON", || {
        black_box(ExpressionContext::from_json(Some(&names), Some(&values)).unwrap());
    });
    let prepared = ExpressionContext::from_json(Some(&names), Some(&values)).unwrap();
    measure("parse condition (placeholders built)", || {
        let mut context = prepared.clone();
        black_box(
            context
                .parse_condition(ExpressionKind::Condition, condition_text)
                .unwrap(),
        );
    });
    let mut context = prepared.clone();
    let condition = context
        .parse_condition(ExpressionKind::Condition, condition_text)
        .unwrap();
    measure("evaluate parsed condition", || {
        black_box(evaluate(black_box(&condition), &item));
    });
    measure("parse + apply update", || {
        let mut context = ExpressionContext::from_json(None, Some(&values)).unwrap();
        let update = context.parse_update(update_text).unwrap();
        black_box(apply_update(&update, &item, &schema).unwrap());
    });
    let encoded = encode_item(&item);
    measure("encode item", || {
        black_box(encode_item(black_box(&item)));
    });
    measure("decode item", || {
        black_box(decode_item(black_box(&encoded)).unwrap());
    });
    let parentheses = "(".repeat(4096);
    measure("reject 4,096 nested parentheses", || {
        let mut context = ExpressionContext::default();
        black_box(
            context
                .parse_condition(ExpressionKind::Condition, &parentheses)
                .unwrap_err(),
        );
    });
}
