//! The legacy request parameters, translated into the same syntax tree as expressions:
//! Expected + ConditionalOperator and QueryFilter/ScanFilter into a [`Condition`],
//! AttributeUpdates into an [`Update`], KeyConditions into a [`KeyCondition`], and
//! AttributesToGet into projection paths. Inputs are the parameters' DynamoDB JSON.

use std::collections::BTreeSet;

use serde_json::{Map as JsonMap, Value as Json};

use crate::error::{Error, Result, validation};
use crate::expression::ast::{
    Comparator, Condition, DocumentPath, Operand, SetValue, Update, UpdateAction, UpdateOperand,
};
use crate::expression::key_condition::{KeyCondition, key_condition_from_tree};
use crate::json::value_from_json;
use crate::key::KeyParts;
use crate::messages;
use crate::value::{AttributeValue, check_attribute_name_length};

fn serialization(context: &str) -> Error {
    Error::Serialization(messages::unexpected_json(context))
}

fn object<'json>(json: &'json Json, parameter: &str) -> Result<&'json JsonMap<String, Json>> {
    match json {
        Json::Object(object) => Ok(object),
        _ => Err(serialization(&format!("{parameter} must be an object"))),
    }
}

fn attribute_value_list(entry: &JsonMap<String, Json>) -> Result<Vec<AttributeValue>> {
    match entry.get("AttributeValueList") {
        None => Ok(Vec::new()),
        Some(Json::Array(values)) => values.iter().map(value_from_json).collect(),
        Some(_) => Err(serialization("AttributeValueList must be an array")),
    }
}

/// The legacy ComparisonOperator enum.
const COMPARISON_OPERATORS: [&str; 13] = [
    "EQ",
    "NE",
    "LE",
    "LT",
    "GE",
    "GT",
    "NOT_NULL",
    "NULL",
    "CONTAINS",
    "NOT_CONTAINS",
    "BEGINS_WITH",
    "IN",
    "BETWEEN",
];

fn is_scalar(value: &AttributeValue) -> bool {
    matches!(
        value,
        AttributeValue::String(_) | AttributeValue::Number(_) | AttributeValue::Binary(_)
    )
}

/// Translates one legacy comparison on attribute `name`.
fn comparison(name: &str, operator: &str, mut values: Vec<AttributeValue>) -> Result<Condition> {
    check_attribute_name_length(name)?;
    let path = || DocumentPath::attribute(name);
    let value_count = values.len();
    let expect_count = |count: usize| {
        if value_count == count {
            Ok(())
        } else {
            Err(validation(messages::legacy_wrong_argument_count(operator)))
        }
    };
    let wrong_type = || validation(messages::legacy_wrong_argument_type(operator));
    let compare = |comparator: Comparator, value: AttributeValue| Condition::Comparison {
        left: Operand::Path(path()),
        comparator,
        right: Operand::Value(value),
    };
    Ok(match operator {
        "EQ" | "NE" | "LE" | "LT" | "GE" | "GT" => {
            expect_count(1)?;
            let value = values.swap_remove(0);
            let comparator = match operator {
                "EQ" => Comparator::Equal,
                "NE" => Comparator::NotEqual,
                "LE" => Comparator::LessOrEqual,
                "LT" => Comparator::Less,
                "GE" => Comparator::GreaterOrEqual,
                _ => Comparator::Greater,
            };
            let ordering = !matches!(comparator, Comparator::Equal | Comparator::NotEqual);
            if ordering && !is_scalar(&value) {
                return Err(wrong_type());
            }
            compare(comparator, value)
        }
        "NOT_NULL" => {
            expect_count(0)?;
            Condition::AttributeExists(path())
        }
        "NULL" => {
            expect_count(0)?;
            Condition::AttributeNotExists(path())
        }
        "CONTAINS" | "NOT_CONTAINS" => {
            expect_count(1)?;
            let value = values.swap_remove(0);
            if !is_scalar(&value) {
                return Err(wrong_type());
            }
            let contains = Condition::Contains(Operand::Path(path()), Operand::Value(value));
            if operator == "CONTAINS" {
                contains
            } else {
                // A missing attribute does not satisfy NOT_CONTAINS in the legacy API.
                Condition::And(vec![
                    Condition::AttributeExists(path()),
                    Condition::Not(Box::new(contains)),
                ])
            }
        }
        "BEGINS_WITH" => {
            expect_count(1)?;
            let value = values.swap_remove(0);
            if !matches!(value, AttributeValue::String(_) | AttributeValue::Binary(_)) {
                return Err(wrong_type());
            }
            Condition::BeginsWith(Operand::Path(path()), Operand::Value(value))
        }
        "IN" => {
            if values.is_empty() {
                return Err(validation(messages::legacy_wrong_argument_count(operator)));
            }
            if values
                .iter()
                .any(|value| value.type_name() != values[0].type_name())
            {
                return Err(validation(messages::LEGACY_VALUES_OF_DIFFERENT_TYPES));
            }
            if !values.iter().all(is_scalar) {
                return Err(wrong_type());
            }
            Condition::In {
                value: Operand::Path(path()),
                candidates: values.into_iter().map(Operand::Value).collect(),
            }
        }
        "BETWEEN" => {
            expect_count(2)?;
            let upper = values.swap_remove(1);
            let lower = values.swap_remove(0);
            if lower.type_name() != upper.type_name() {
                return Err(validation(messages::LEGACY_VALUES_OF_DIFFERENT_TYPES));
            }
            if !is_scalar(&lower) {
                return Err(wrong_type());
            }
            if lower.compare(&upper) == Some(std::cmp::Ordering::Greater) {
                return Err(validation(messages::LEGACY_BETWEEN_BOUNDS));
            }
            Condition::Between {
                value: Operand::Path(path()),
                lower: Operand::Value(lower),
                upper: Operand::Value(upper),
            }
        }
        other => return Err(validation(messages::legacy_unknown_operator(other))),
    })
}

fn combine(
    mut conditions: Vec<Condition>,
    conditional_operator: Option<&str>,
) -> Result<Option<Condition>> {
    let use_or = match conditional_operator {
        None | Some("AND") => false,
        Some("OR") => true,
        Some(other) => {
            return Err(validation(messages::legacy_unknown_conditional_operator(
                other,
            )));
        }
    };
    // DynamoDB refuses a ConditionalOperator with nothing to combine, even AND over a single
    // entry (ScyllaDB's test_expected.py, test_update_expected_empty, run with --aws).
    if conditional_operator.is_some() && conditions.len() < 2 {
        return Err(validation(messages::LEGACY_CONDITIONAL_OPERATOR_ALONE));
    }
    Ok(match conditions.len() {
        0 => None,
        1 => conditions.pop(),
        _ if use_or => Some(Condition::Or(conditions)),
        _ => Some(Condition::And(conditions)),
    })
}

/// Refuses a ConditionalOperator given without the Expected or filter it combines.
pub fn check_conditional_operator_has_entries(conditional_operator: Option<&str>) -> Result<()> {
    match conditional_operator {
        Some(_) => Err(validation(messages::LEGACY_CONDITIONAL_OPERATOR_ALONE)),
        None => Ok(()),
    }
}

/// Translates `Expected` (with `ConditionalOperator`) into a condition; `None` when empty.
pub fn expected_to_condition(
    expected: &Json,
    conditional_operator: Option<&str>,
) -> Result<Option<Condition>> {
    let mut conditions = Vec::new();
    for (name, entry) in object(expected, "Expected")? {
        let entry = object(entry, "ExpectedAttributeValue")?;
        let value = entry.get("Value").map(value_from_json).transpose()?;
        let exists = match entry.get("Exists") {
            None => None,
            Some(Json::Bool(flag)) => Some(*flag),
            Some(_) => return Err(serialization("Exists must be a boolean")),
        };
        let operator = match entry.get("ComparisonOperator") {
            None => None,
            Some(Json::String(operator)) => Some(operator.as_str()),
            Some(_) => return Err(serialization("ComparisonOperator must be a string")),
        };
        let value_list = entry
            .get("AttributeValueList")
            .map(|_| attribute_value_list(entry))
            .transpose()?;
        // DynamoDB's checks of one entry, in its order (dynalite's test/deleteItem.js, a suite
        // run against DynamoDB): Value with AttributeValueList, AttributeValueList without an
        // operator, Exists with an operator, an operator without arguments.
        if value.is_some() && value_list.is_some() {
            return Err(validation(messages::legacy_value_and_value_list(name)));
        }
        if value_list.is_some() && operator.is_none() {
            return Err(validation(messages::legacy_value_list_without_operator(
                name,
            )));
        }
        if let Some(operator) = operator {
            if !COMPARISON_OPERATORS.contains(&operator) {
                return Err(validation(messages::legacy_unknown_operator(operator)));
            }
            if exists.is_some() {
                return Err(validation(messages::legacy_exists_with_operator(name)));
            }
            // Value stands for a one-element AttributeValueList.
            let arguments = match (value_list, value) {
                (Some(list), _) => list,
                (None, Some(value)) => vec![value],
                (None, None) if matches!(operator, "NULL" | "NOT_NULL") => Vec::new(),
                (None, None) => {
                    return Err(validation(messages::legacy_operator_without_arguments(
                        operator, name,
                    )));
                }
            };
            conditions.push(comparison(name, operator, arguments)?);
            continue;
        }
        check_attribute_name_length(name)?;
        let condition = match (exists.unwrap_or(true), value) {
            (true, Some(value)) => Condition::Comparison {
                left: Operand::Path(DocumentPath::attribute(name)),
                comparator: Comparator::Equal,
                right: Operand::Value(value),
            },
            (true, None) => return Err(validation(messages::LEGACY_EXISTS_TRUE_WITHOUT_VALUE)),
            (false, Some(_)) => return Err(validation(messages::LEGACY_EXISTS_FALSE_WITH_VALUE)),
            (false, None) => Condition::AttributeNotExists(DocumentPath::attribute(name)),
        };
        conditions.push(condition);
    }
    combine(conditions, conditional_operator)
}

/// Translates `QueryFilter` or `ScanFilter` (with `ConditionalOperator`); `None` when empty.
pub fn filter_to_condition(
    filter: &Json,
    conditional_operator: Option<&str>,
) -> Result<Option<Condition>> {
    let mut conditions = Vec::new();
    for (name, entry) in object(filter, "Filter")? {
        let entry = object(entry, "Condition")?;
        let Some(Json::String(operator)) = entry.get("ComparisonOperator") else {
            return Err(serialization("ComparisonOperator must be a string"));
        };
        conditions.push(comparison(name, operator, attribute_value_list(entry)?)?);
    }
    combine(conditions, conditional_operator)
}

/// Translates `KeyConditions` and validates it against the key schema.
pub fn key_conditions_to_key_condition(
    key_conditions: &Json,
    key: KeyParts<'_>,
) -> Result<KeyCondition> {
    let mut conditions = Vec::new();
    for (name, entry) in object(key_conditions, "KeyConditions")? {
        let entry = object(entry, "Condition")?;
        let Some(Json::String(operator)) = entry.get("ComparisonOperator") else {
            return Err(serialization("ComparisonOperator must be a string"));
        };
        // The enum is checked first: `eq` is not an operator at all, NE is one that cannot
        // use an index.
        if !COMPARISON_OPERATORS.contains(&operator.as_str()) {
            return Err(validation(messages::legacy_unknown_operator(operator)));
        }
        if !matches!(
            operator.as_str(),
            "EQ" | "LE" | "LT" | "GE" | "GT" | "BEGINS_WITH" | "BETWEEN"
        ) {
            return Err(validation(messages::LEGACY_KEY_CONDITION_NOT_INDEXABLE));
        }
        conditions.push(comparison(name, operator, attribute_value_list(entry)?)?);
    }
    let condition = match conditions.len() {
        1 => conditions.swap_remove(0),
        _ => Condition::And(conditions),
    };
    key_condition_from_tree(&condition, key)
}

/// Translates `AttributeUpdates` into an update.
pub fn attribute_updates_to_update(attribute_updates: &Json) -> Result<Update> {
    let mut actions = Vec::new();
    for (name, entry) in object(attribute_updates, "AttributeUpdates")? {
        let entry = object(entry, "AttributeValueUpdate")?;
        let value = entry.get("Value").map(value_from_json).transpose()?;
        let action = match entry.get("Action") {
            None => "PUT",
            Some(Json::String(action)) => action.as_str(),
            Some(_) => return Err(serialization("Action must be a string")),
        };
        check_attribute_name_length(name)?;
        let path = DocumentPath::attribute(name);
        let is_set = |value: &AttributeValue| {
            matches!(
                value,
                AttributeValue::StringSet(_)
                    | AttributeValue::NumberSet(_)
                    | AttributeValue::BinarySet(_)
            )
        };
        actions.push(match (action, value) {
            ("PUT", Some(value)) => {
                UpdateAction::Set(path, SetValue::Operand(UpdateOperand::Value(value)))
            }
            ("PUT" | "ADD", None) => return Err(validation(messages::LEGACY_PUT_WITHOUT_VALUE)),
            ("DELETE", None) => UpdateAction::Remove(path),
            ("DELETE", Some(value)) if is_set(&value) => UpdateAction::Delete(path, value),
            ("DELETE", Some(value)) => {
                return Err(validation(messages::legacy_delete_type(value.type_name())));
            }
            ("ADD", Some(value))
                if is_set(&value) || matches!(value, AttributeValue::Number(_)) =>
            {
                UpdateAction::Add(path, value)
            }
            ("ADD", Some(value)) => {
                return Err(validation(format!(
                    "{}{}",
                    messages::LEGACY_ADD_TYPE,
                    value.type_name()
                )));
            }
            (other, _) => return Err(validation(messages::legacy_unknown_action(other))),
        });
    }
    Ok(Update { actions })
}

/// Translates `AttributesToGet` into projection paths.
pub fn attributes_to_get_to_projection(attributes_to_get: &Json) -> Result<Vec<DocumentPath>> {
    let Json::Array(names) = attributes_to_get else {
        return Err(serialization("AttributesToGet must be an array"));
    };
    if names.is_empty() {
        return Err(validation(messages::LEGACY_ATTRIBUTES_TO_GET_EMPTY));
    }
    let mut seen = BTreeSet::new();
    let mut paths = Vec::with_capacity(names.len());
    for name in names {
        let Json::String(name) = name else {
            return Err(serialization("AttributesToGet members must be strings"));
        };
        if !seen.insert(name.as_str()) {
            return Err(validation(messages::legacy_duplicate_attributes_to_get(
                name,
            )));
        }
        check_attribute_name_length(name)?;
        paths.push(DocumentPath::attribute(name));
    }
    Ok(paths)
}

/// The legacy parameters of the item operations, in the order DynamoDB's error lists them.
const LEGACY_PARAMETERS: [&str; 7] = [
    "AttributesToGet",
    "AttributeUpdates",
    "ConditionalOperator",
    "Expected",
    "KeyConditions",
    "QueryFilter",
    "ScanFilter",
];

/// The expression parameters that replace them.
const EXPRESSION_PARAMETERS: [&str; 5] = [
    "ConditionExpression",
    "FilterExpression",
    "KeyConditionExpression",
    "ProjectionExpression",
    "UpdateExpression",
];

/// Rejects a request that mixes any legacy parameter with any expression parameter, not only
/// a legacy parameter with its own replacement: "DynamoDB does not allow mixing legacy
/// conditional parameters and expression parameters in a single call" (Developer Guide,
/// Legacy conditional parameters), so QueryFilter with ProjectionExpression is refused too.
pub fn check_request_not_mixed(parameters: &Json) -> Result<()> {
    let present = |names: &[&'static str]| -> Vec<&'static str> {
        names
            .iter()
            .copied()
            .filter(|name| parameters.get(name).is_some())
            .collect()
    };
    check_not_mixed(
        &present(&LEGACY_PARAMETERS),
        &present(&EXPRESSION_PARAMETERS),
    )
}

/// Rejects a request that mixes legacy parameters with expression parameters, naming both
/// groups as DynamoDB does. Each slice lists the parameter names present in the request.
pub fn check_not_mixed(legacy_parameters: &[&str], expression_parameters: &[&str]) -> Result<()> {
    if legacy_parameters.is_empty() || expression_parameters.is_empty() {
        return Ok(());
    }
    Err(validation(messages::legacy_with_expression(
        &legacy_parameters.join(", "),
        &expression_parameters.join(", "),
    )))
}
