//! Every expression error, with DynamoDB's exception name and message text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use serde_json::json;
use shoal_model::expression::{
    EXPRESSION_BYTES_MAX, ExpressionContext, ExpressionKind, IN_OPERANDS_MAX, OPERATORS_MAX,
};

fn context() -> ExpressionContext {
    let names = json!({"#a": "a", "#b": "b"});
    let values = json!({
        ":n": {"N": "1"}, ":big": {"N": "5"}, ":s": {"S": "x"}, ":type": {"S": "STRING"},
        ":ss": {"SS": ["x"]}, ":l": {"L": []}, ":bool": {"BOOL": true},
        ":null": {"NULL": true}
    });
    ExpressionContext::from_json(Some(&names), Some(&values)).unwrap()
}

fn condition_error(expression: &str) -> String {
    let error = context()
        .parse_condition(ExpressionKind::Condition, expression)
        .unwrap_err();
    assert_eq!(error.exception_name(), "ValidationException");
    error.message().to_string()
}

fn update_error(expression: &str) -> String {
    let error = context().parse_update(expression).unwrap_err();
    assert_eq!(error.exception_name(), "ValidationException");
    error.message().to_string()
}

#[test]
fn condition_errors() {
    for (expression, expected) in [
        (
            "",
            "Invalid ConditionExpression: The expression can not be empty;",
        ),
        (
            "   ",
            "Invalid ConditionExpression: The expression can not be empty;",
        ),
        (
            "status = :n",
            "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: status",
        ),
        (
            "a.Name = :n",
            "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: Name",
        ),
        (
            "#missing = :n",
            "Invalid ConditionExpression: An expression attribute name used in the document path is not defined; attribute name: #missing",
        ),
        (
            "a = :missing",
            "Invalid ConditionExpression: An expression attribute value used in expression is not defined; attribute value: :missing",
        ),
        (
            "a = ",
            "Invalid ConditionExpression: Syntax error; token: \"<EOF>\", near: \"= \"",
        ),
        (
            "a = = :n",
            "Invalid ConditionExpression: Syntax error; token: \"=\", near: \"= = :n\"",
        ),
        (
            "a :n",
            "Invalid ConditionExpression: Syntax error; token: \":n\", near: \"a :n\"",
        ),
        (
            "a = :n $",
            "Invalid ConditionExpression: Syntax error; token: \"$\", near: \":n $\"",
        ),
        (
            "(a = :n",
            "Invalid ConditionExpression: Syntax error; token: \"<EOF>\", near: \":n\"",
        ),
        (
            "a = :n)",
            "Invalid ConditionExpression: Syntax error; token: \")\", near: \":n)\"",
        ),
        (
            "a[x] = :n",
            "Invalid ConditionExpression: Syntax error; token: \"x\", near: \"[x]\"",
        ),
        (
            "a[99999999999999999999999] = :n",
            "Invalid ConditionExpression: Syntax error; token: \"99999999999999999999999\", near: \"[99999999999999999999999]\"",
        ),
        (
            "foo(a)",
            "Invalid ConditionExpression: Invalid function name; function: foo",
        ),
        (
            "attribute_exists(a, b)",
            "Invalid ConditionExpression: Incorrect number of operands for operator or function; operator or function: attribute_exists, number of operands: 2",
        ),
        (
            "begins_with(a)",
            "Invalid ConditionExpression: Incorrect number of operands for operator or function; operator or function: begins_with, number of operands: 1",
        ),
        (
            "attribute_exists(:n)",
            "Invalid ConditionExpression: Operator or function requires a document path; operator or function: attribute_exists",
        ),
        (
            "begins_with(a, :n)",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N",
        ),
        (
            "attribute_type(a, :type)",
            "Invalid ConditionExpression: Invalid attribute type name found; type: STRING, valid types: {B,NULL,SS,BOOL,L,BS,N,NS,S,M}",
        ),
        (
            "size(a)",
            "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: size",
        ),
        (
            "a = if_not_exists(a, :n)",
            "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: if_not_exists",
        ),
        (
            "a BETWEEN :big AND :n",
            "Invalid ConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {N:5}, upper bound operand: AttributeValue: {N:1}",
        ),
        // What DynamoDB checks before reading the item, with its messages: dynalite's
        // test/scan.js and test/deleteItem.js (a suite run against DynamoDB itself) and
        // ScyllaDB's test/alternator/test_condition_expression.py (run with --aws).
        (
            "a < :bool",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: <, operand type: BOOL",
        ),
        (
            ":l >= a",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: >=, operand type: L",
        ),
        (
            "a BETWEEN :ss AND :ss",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: BETWEEN, operand type: SS",
        ),
        (
            "a BETWEEN :n AND :s",
            "Invalid ConditionExpression: The BETWEEN operator requires same data type for lower and upper bounds; lower bound operand: AttributeValue: {N:1}, upper bound operand: AttributeValue: {S:x}",
        ),
        (
            "a = a",
            "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this operator or function; operator: =, first operand: [a]",
        ),
        (
            "b = :n AND #a.b[1] <> a.b[1]",
            "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this operator or function; operator: <>, first operand: [a, b, [1]]",
        ),
        (
            "contains(a.b, a.#b)",
            "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this operator or function; operator: contains, first operand: [a, b]",
        ),
        (
            "attribute_type(a, a)",
            "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this operator or function; operator: attribute_type, first operand: [a]",
        ),
        (
            "attribute_type(a, size(b))",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: attribute_type, operand type: N",
        ),
        (
            "begins_with(a, size(b))",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N",
        ),
        (
            "size(size(a)) > :n",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: size, operand type: N",
        ),
        (
            "size(:n) > a",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: size, operand type: N",
        ),
        (
            "size(:bool) > a",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: size, operand type: BOOL",
        ),
        (
            "attribute_not_exists(size(:s))",
            "Invalid ConditionExpression: Operator or function requires a document path; operator or function: attribute_not_exists",
        ),
        (
            "attribute_not_exists(a) = :n",
            "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: attribute_not_exists",
        ),
        (
            "begins_with(a, :s) > a",
            "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: begins_with",
        ),
        (
            "size(a).b > :n",
            "Invalid ConditionExpression: Syntax error; token: \".\", near: \").b\"",
        ),
        (
            "a > between",
            "Invalid ConditionExpression: Syntax error; token: \"between\", near: \"> between\"",
        ),
        // Whole-expression checks (reserved words) come before per-condition ones.
        (
            ":missing < abort",
            "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: abort",
        ),
    ] {
        assert_eq!(condition_error(expression), expected, "{expression:?}");
    }
}

/// Operands DynamoDB accepts although its documentation names only paths: a constant in
/// size() and attribute_type() (ScyllaDB's test_condition_expression.py, run with --aws, and
/// dynalite's test/scan.js).
#[test]
fn constants_in_size_and_attribute_type() {
    let item = shoal_model::json::item_from_json(&json!({"a": {"S": "xyz"}})).unwrap();
    let values =
        json!({":s": {"S": "abc"}, ":three": {"N": "3"}, ":tS": {"S": "S"}, ":tN": {"S": "N"}});
    for (expression, expected) in [
        ("size(:s) = :three", true),
        ("size(a) = size(:s)", true),
        ("attribute_type(:s, :tS)", true),
        ("attribute_type(:three, :tS)", false),
        ("attribute_type(:three, :tN)", true),
    ] {
        let mut context = ExpressionContext::from_json(None, Some(&values)).unwrap();
        let condition = context
            .parse_condition(ExpressionKind::Condition, expression)
            .unwrap_or_else(|error| panic!("{expression}: {error}"));
        assert_eq!(
            shoal_model::expression::evaluate::evaluate(&condition, &item),
            expected,
            "{expression}"
        );
    }
}

#[test]
fn expression_limits() {
    let long = format!("a = :n{}", " ".repeat(EXPRESSION_BYTES_MAX));
    assert_eq!(
        condition_error(&long),
        format!(
            "Invalid ConditionExpression: Expression size has exceeded the maximum allowed size; expression size: {}",
            long.len()
        )
    );
    let in_list = vec![":n"; IN_OPERANDS_MAX + 1].join(", ");
    assert_eq!(
        condition_error(&format!("a IN ({in_list})")),
        "Invalid ConditionExpression: The IN operator is provided with too many operands; number of operands: 101"
    );
    let in_list = vec![":n"; IN_OPERANDS_MAX].join(",");
    assert!(
        context()
            .parse_condition(ExpressionKind::Condition, &format!("a IN ({in_list})"))
            .is_ok()
    );
    let many = vec!["a = :n"; OPERATORS_MAX / 2 + 1].join(" OR ");
    assert_eq!(
        condition_error(&many),
        "Invalid ConditionExpression: The expression contains too many operators; operator count: 301"
    );
    let deep_path = format!("a{} = :n", ".a".repeat(32));
    assert_eq!(
        condition_error(&deep_path),
        "Invalid ConditionExpression: The document path has too many nesting levels; nesting levels: 33"
    );
    assert!(
        context()
            .parse_condition(
                ExpressionKind::Condition,
                &format!("a{} = :n", ".a".repeat(31))
            )
            .is_ok()
    );
}

#[test]
fn pathological_nesting_fails_fast_without_recursion() {
    let started = Instant::now();
    let parentheses = "(".repeat(4096);
    assert!(condition_error(&parentheses).contains("maximum nesting level"));
    let nots = "NOT ".repeat(1000);
    assert!(condition_error(&format!("{nots}a = :n")).contains("maximum nesting level"));
    let sizes = "size(".repeat(500);
    let message = condition_error(&format!("{sizes}a"));
    assert!(message.contains("maximum nesting level"), "{message}");
    let appends = "list_append(".repeat(300);
    assert!(update_error(&format!("SET a = {appends}")).contains("maximum nesting level"));
    // Not a timed assertion: the duration is printed for the reader only.
    println!(
        "four pathological inputs rejected in {:?}",
        started.elapsed()
    );
    let nested_ok = format!("{}a = :n{}", "(a = :n AND ".repeat(31), ")".repeat(31));
    assert!(
        context()
            .parse_condition(ExpressionKind::Condition, &nested_ok)
            .is_ok()
    );
}

#[test]
fn update_errors() {
    for (expression, expected) in [
        (
            "",
            "Invalid UpdateExpression: The expression can not be empty;",
        ),
        (
            "a = :n",
            "Invalid UpdateExpression: Syntax error; token: \"a\", near: \"a =\"",
        ),
        (
            "SET a = :n SET b = :n",
            "Invalid UpdateExpression: The \"SET\" section can only be used once in an update expression;",
        ),
        (
            "SET a = :n, a.b = :n",
            "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a, b]",
        ),
        (
            "SET a.b = :n REMOVE a",
            "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a, b], path two: [a]",
        ),
        (
            "SET a = :n REMOVE a",
            "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a]",
        ),
        (
            "SET a.b = :n, a[0] = :n",
            "Invalid UpdateExpression: Two document paths conflict with each other; must remove or rewrite one of these paths; path one: [a, b], path two: [a, [0]]",
        ),
        (
            "ADD a :s",
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: STRING, typeSet: ALLOWED_FOR_ADD_OPERAND",
        ),
        (
            "DELETE a :n",
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: NUMBER, typeSet: ALLOWED_FOR_DELETE_OPERAND",
        ),
        (
            "ADD a b",
            "Invalid UpdateExpression: Syntax error; token: \"b\", near: \"a b\"",
        ),
        (
            "SET a = :s + :n",
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: +, operand type: S",
        ),
        (
            "SET a = list_append(:l, :s)",
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, operand type: S",
        ),
        (
            "SET a = if_not_exists(:n, :n)",
            "Invalid UpdateExpression: Operator or function requires a document path; operator or function: if_not_exists",
        ),
        (
            "SET a = list_append(:l)",
            "Invalid UpdateExpression: Incorrect number of operands for operator or function; operator or function: list_append, number of operands: 1",
        ),
        (
            "SET a = size(b)",
            "Invalid UpdateExpression: The function is not allowed to be used this way in an expression; function: size",
        ),
        (
            "SET a = foo(b)",
            "Invalid UpdateExpression: Invalid function name; function: foo",
        ),
        (
            "REMOVE a,",
            "Invalid UpdateExpression: Syntax error; token: \"<EOF>\", near: \",\"",
        ),
    ] {
        assert_eq!(update_error(expression), expected, "{expression:?}");
    }
}

#[test]
fn projection_errors() {
    let error = context().parse_projection("a, a.b").unwrap_err();
    assert_eq!(
        error.message(),
        "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a, b]"
    );
    let error = context().parse_projection("a[1].c, a.b").unwrap_err();
    assert!(
        error
            .message()
            .starts_with("Invalid ProjectionExpression: Two document paths conflict")
    );
    let error = context().parse_projection("a, ").unwrap_err();
    assert!(
        error
            .message()
            .starts_with("Invalid ProjectionExpression: Syntax error")
    );
}

#[test]
fn placeholder_maps_are_validated() {
    let error = ExpressionContext::from_json(Some(&json!({})), None).unwrap_err();
    assert_eq!(
        error.message(),
        "ExpressionAttributeNames must not be empty"
    );
    let error = ExpressionContext::from_json(None, Some(&json!({}))).unwrap_err();
    assert_eq!(
        error.message(),
        "ExpressionAttributeValues must not be empty"
    );
    let error = ExpressionContext::from_json(Some(&json!({"a": "b"})), None).unwrap_err();
    assert_eq!(
        error.message(),
        "ExpressionAttributeNames contains invalid key: Syntax error; key: \"a\""
    );
    let error = ExpressionContext::from_json(None, Some(&json!({"v": {"S": "x"}}))).unwrap_err();
    assert_eq!(
        error.message(),
        "ExpressionAttributeValues contains invalid key: Syntax error; key: \"v\""
    );
    let error = ExpressionContext::from_json(None, Some(&json!({":v": {"SS": []}}))).unwrap_err();
    assert_eq!(
        error.message(),
        "ExpressionAttributeValues contains invalid value: One or more parameter values were invalid: An string set  may not be empty for key :v"
    );
}

#[test]
fn placeholders_without_any_expression_are_rejected() {
    assert_eq!(
        context().finish().unwrap_err().message(),
        "ExpressionAttributeNames can only be specified when using expressions"
    );
    let values_only = ExpressionContext::from_json(None, Some(&json!({":v": {"N": "1"}}))).unwrap();
    assert_eq!(
        values_only.finish().unwrap_err().message(),
        "ExpressionAttributeValues can only be specified when using expressions"
    );
    assert!(
        ExpressionContext::from_json(None, None)
            .unwrap()
            .finish()
            .is_ok()
    );
}

#[test]
fn unused_placeholders_are_reported_after_all_expressions() {
    let mut context = context();
    context
        .parse_condition(ExpressionKind::Condition, "#a = :n")
        .unwrap();
    assert_eq!(
        context.finish().unwrap_err().message(),
        "Value provided in ExpressionAttributeNames unused in expressions: keys: {#b}"
    );
    context.parse_update("SET #b = :s").unwrap();
    assert_eq!(
        context.finish().unwrap_err().message(),
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:big, :bool, :l, :null, :ss, :type}"
    );
    context
        .parse_update("SET a = :big, b = :bool, c = :l, e = :null ADD d :ss")
        .unwrap();
    context.parse_projection("a").unwrap();
    context
        .parse_condition(ExpressionKind::Filter, "attribute_type(a, :type)")
        .unwrap_err();
    // The failed parse above still counted :type as used, as the whole request fails anyway.
    assert!(context.finish().is_ok());
}

#[test]
fn syntax_errors_are_reported_before_semantic_ones() {
    // DynamoDB's own example: VALUE is reserved, but the syntax error wins.
    assert_eq!(
        update_error("SET path = VALUE 1"),
        "Invalid UpdateExpression: Syntax error; token: \"1\", near: \"VALUE 1\""
    );
    assert_eq!(
        condition_error("status = :missing :n"),
        "Invalid ConditionExpression: Syntax error; token: \":n\", near: \":missing :n\""
    );
    assert_eq!(
        condition_error("#missing = :n AND"),
        "Invalid ConditionExpression: Syntax error; token: \"<EOF>\", near: \"AND\""
    );
    // With valid syntax, the first semantic error in the text is reported.
    assert_eq!(
        condition_error("status = :missing"),
        "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: status"
    );
    assert_eq!(
        condition_error("a = :missing AND #missing = :n"),
        "Invalid ConditionExpression: An expression attribute value used in expression is not defined; attribute value: :missing"
    );
    assert_eq!(
        condition_error("a BETWEEN :null AND :n"),
        "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: BETWEEN, operand type: NULL"
    );
}
