//! ConditionExpression and FilterExpression: parsing with placeholders, then evaluation with
//! DynamoDB's semantics, one table row per grammar feature.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value as Json, json};
use shoal_model::expression::evaluate::evaluate;
use shoal_model::expression::{ExpressionContext, ExpressionKind};
use shoal_model::json::item_from_json;

fn item() -> Json {
    json!({
        "pk": {"S": "user#1"},
        "accented": {"S": "héllo"},
        "age": {"N": "42"},
        "name": {"S": "Alice"},
        "payload": {"B": "AAECAw=="},
        "active": {"BOOL": true},
        "nothing": {"NULL": true},
        "tags": {"SS": ["red", "blue"]},
        "scores": {"NS": ["1", "2.5"]},
        "entries": {"L": [{"N": "1"}, {"S": "two"}, {"M": {"deep": {"S": "x"}}}]},
        "nested": {"M": {"a": {"M": {"b": {"N": "7"}}}, "status": {"S": "ok"}}},
        "blank": {"S": ""}
    })
}

fn values() -> Json {
    json!({
        ":42": {"N": "42"}, ":forty_two_point_zero": {"N": "42.0"}, ":41": {"N": "41"}, ":43": {"N": "43"},
        ":alice": {"S": "Alice"}, ":al": {"S": "Al"}, ":lic": {"S": "lic"}, ":red": {"S": "red"},
        ":two": {"S": "two"}, ":one": {"N": "1"}, ":s42": {"S": "42"}, ":true": {"BOOL": true},
        ":bytes": {"B": "AQI="}, ":prefix": {"B": "AAE="}, ":typeS": {"S": "S"}, ":typeSS": {"S": "SS"},
        ":two_point_five": {"N": "2.5"}, ":five": {"N": "5"}, ":seven": {"N": "7"}, ":x": {"S": "x"}
    })
}

fn check(expression: &str, expected: bool) {
    let names = json!({"#s": "status", "#n": "name", "#dotted": "a.b"});
    let mut context = ExpressionContext::from_json(Some(&names), Some(&values())).unwrap();
    let condition = context
        .parse_condition(ExpressionKind::Condition, expression)
        .unwrap_or_else(|error| panic!("{expression}: {error}"));
    let item = item_from_json(&item()).unwrap();
    assert_eq!(evaluate(&condition, &item), expected, "{expression}");
}

#[test]
fn comparisons() {
    for (expression, expected) in [
        ("age = :42", true),
        ("age = :forty_two_point_zero", true),
        ("age <> :42", false),
        ("age < :43", true),
        ("age <= :42", true),
        ("age > :41", true),
        ("age >= :43", false),
        ("#n = :alice", true),
        ("#n > :al", true),
        ("payload < :bytes", true),
        ("age = :s42", false),
        ("age <> :s42", true),
        ("age < :s42", false),
        ("active = :true", true),
        ("absent = :42", false),
        ("absent <> :42", true),
        ("absent < :42", false),
        ("age = #n", false),
        ("age >= scores", false),
        (":42 = age", true),
        ("nested.a.b = :seven", true),
        ("nested.#s = :x", false),
        ("entries[0] = :one", true),
        ("entries[1] = :two", true),
        ("entries[9] = :one", false),
        ("entries[2].deep = :x", true),
        ("nested[0] = :one", false),
        ("entries.a = :one", false),
    ] {
        check(expression, expected);
    }
}

#[test]
fn between_and_in() {
    for (expression, expected) in [
        ("age BETWEEN :41 AND :43", true),
        ("age between :42 and :42", true),
        ("age BETWEEN :43 AND :43", false),
        ("#n BETWEEN :al AND :alice", true),
        ("age BETWEEN :s42 AND :s42", false),
        ("absent BETWEEN :41 AND :43", false),
        ("age IN (:41, :42)", true),
        ("age IN (:41, :43)", false),
        ("age in (:s42)", false),
        ("absent IN (:41)", false),
    ] {
        check(expression, expected);
    }
}

#[test]
fn boolean_operators_and_precedence() {
    for (expression, expected) in [
        ("age = :42 AND #n = :alice", true),
        ("age = :41 OR #n = :alice", true),
        ("NOT age = :41", true),
        ("not not age = :42", true),
        // AND binds tighter than OR: true OR (false AND false).
        ("age = :42 OR age = :41 AND age = :43", true),
        // Parentheses override it: (true OR false) AND false.
        ("(age = :42 OR age = :41) AND age = :43", false),
        // NOT binds tighter than AND: (NOT false) AND true.
        ("NOT age = :41 AND age = :42", true),
        ("NOT (age = :41 OR age = :42)", false),
        ("(age = :42)", true),
        ("((age = :42) AND (#n = :alice))", true),
    ] {
        check(expression, expected);
    }
}

#[test]
fn functions() {
    for (expression, expected) in [
        ("attribute_exists(age)", true),
        ("attribute_exists(absent)", false),
        ("attribute_exists(nested.a.b)", true),
        ("attribute_exists(entries[2].deep)", true),
        ("attribute_exists(nothing)", true),
        ("attribute_not_exists(absent)", true),
        ("attribute_not_exists(entries[3])", true),
        ("attribute_type(#n, :typeS)", true),
        ("attribute_type(tags, :typeSS)", true),
        ("attribute_type(age, :typeS)", false),
        ("begins_with(#n, :al)", true),
        ("begins_with(#n, :lic)", false),
        ("begins_with(payload, :prefix)", true),
        ("begins_with(age, :al)", false),
        ("contains(#n, :lic)", true),
        ("contains(tags, :red)", true),
        ("contains(tags, :two)", false),
        ("contains(scores, :two_point_five)", true),
        ("contains(entries, :two)", true),
        ("contains(entries, :red)", false),
        ("contains(payload, :bytes)", true),
        ("contains(age, :42)", false),
        ("NOT contains(absent, :red)", true),
        ("size(#n) = :five", true),
        // size() counts characters, not UTF-8 bytes.
        ("size(accented) = :five", true),
        ("size(tags) < :five", true),
        ("size(entries) BETWEEN :one AND :five", true),
        ("size(nested) = :one", false),
        ("size(blank) = :one", false),
        ("size(age) = :one", false),
        ("size(age) <> :one", true),
        ("size(absent) = :one", false),
    ] {
        check(expression, expected);
    }
}

#[test]
fn missing_item_is_an_empty_item() {
    let mut context = ExpressionContext::from_json(None, None).unwrap();
    let condition = context
        .parse_condition(ExpressionKind::Condition, "attribute_not_exists(pk)")
        .unwrap();
    assert!(evaluate(&condition, &Default::default()));
}

#[test]
fn placeholders_resolve_names_that_need_them() {
    check("#dotted = :one", false);
    check("nested.#s <> #s", true);
}
