//! DynamoDB's expression language: parse (with placeholders resolved), validate, evaluate.
//!
//! Parsing is hand-written recursive descent over a token vector. It is linear in the input:
//! each token is consumed once, and every recursion first checks its depth against
//! [`EXPRESSION_NESTING_DEPTH_MAX`], so hostile input (4,096 nested parentheses) fails fast
//! with a ValidationException and cannot overflow the stack.

pub mod ast;
pub mod evaluate;
pub mod key_condition;
mod parser;
pub mod projection;
pub mod reserved;
mod tokenizer;
pub mod update;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

pub use ast::{
    Comparator, Condition, DocumentPath, Operand, PathElement, SetValue, Update, UpdateAction,
    UpdateOperand,
};

use crate::error::{Error, Result, validation};
use crate::json::value_from_json;
use crate::messages;
use crate::value::AttributeValue;

/// The longest expression, in bytes.
pub const EXPRESSION_BYTES_MAX: usize = 4096;
/// The most operators and functions in one expression.
pub const OPERATORS_MAX: usize = 300;
/// The deepest nesting of parentheses, NOT and function calls in one expression.
pub const EXPRESSION_NESTING_DEPTH_MAX: usize = 32;
/// The most elements in one document path.
pub const DOCUMENT_PATH_DEPTH_MAX: usize = 32;
/// The most operands on the right of IN.
pub const IN_OPERANDS_MAX: usize = 100;

// Each nesting level consumes at least one byte, so the depth limit is reachable.
const _: () = assert!(EXPRESSION_NESTING_DEPTH_MAX < EXPRESSION_BYTES_MAX);
// A document path may reach every level of a maximally nested item.
const _: () = assert!(DOCUMENT_PATH_DEPTH_MAX == crate::value::NESTING_DEPTH_MAX);

/// Which request parameter an expression came from; it prefixes every error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpressionKind {
    /// `ConditionExpression`.
    Condition,
    /// `FilterExpression`.
    Filter,
    /// `KeyConditionExpression`.
    KeyCondition,
    /// `UpdateExpression`.
    Update,
    /// `ProjectionExpression`.
    Projection,
}

impl ExpressionKind {
    /// The request parameter's name.
    pub fn parameter_name(self) -> &'static str {
        match self {
            ExpressionKind::Condition => "ConditionExpression",
            ExpressionKind::Filter => "FilterExpression",
            ExpressionKind::KeyCondition => "KeyConditionExpression",
            ExpressionKind::Update => "UpdateExpression",
            ExpressionKind::Projection => "ProjectionExpression",
        }
    }
}

/// The placeholders of one request, and which of them its expressions used.
///
/// A request parses each of its expressions through the same context, then calls
/// [`ExpressionContext::finish`], which rejects placeholders no expression used.
#[derive(Clone, Debug, Default)]
pub struct ExpressionContext {
    names: BTreeMap<String, String>,
    values: BTreeMap<String, AttributeValue>,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
    /// Whether any expression was parsed through this context.
    parsed_any: bool,
}

fn is_placeholder(key: &str, sigil: char) -> bool {
    key.strip_prefix(sigil).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
    })
}

impl ExpressionContext {
    /// A context from ExpressionAttributeNames and ExpressionAttributeValues; `None` where the
    /// request omitted the parameter.
    pub fn new(
        names: Option<BTreeMap<String, String>>,
        values: Option<BTreeMap<String, AttributeValue>>,
    ) -> Result<ExpressionContext> {
        if let Some(names) = &names {
            if names.is_empty() {
                return Err(validation(messages::NAMES_EMPTY));
            }
            if let Some(key) = names.keys().find(|key| !is_placeholder(key, '#')) {
                return Err(validation(messages::names_invalid_key(key)));
            }
            for name in names.values() {
                crate::value::check_attribute_name_length(name)?;
            }
        }
        if let Some(values) = &values {
            if values.is_empty() {
                return Err(validation(messages::VALUES_EMPTY));
            }
            if let Some(key) = values.keys().find(|key| !is_placeholder(key, ':')) {
                return Err(validation(messages::values_invalid_key(key)));
            }
        }
        Ok(ExpressionContext {
            names: names.unwrap_or_default(),
            values: values.unwrap_or_default(),
            used_names: BTreeSet::new(),
            used_values: BTreeSet::new(),
            parsed_any: false,
        })
    }

    /// A context from the request's JSON parameters (`{"#n": "name"}`, `{":v": {"S": "x"}}`).
    pub fn from_json(names: Option<&Json>, values: Option<&Json>) -> Result<ExpressionContext> {
        let names = names
            .map(|json| {
                let Json::Object(object) = json else {
                    return Err(Error::Serialization(messages::unexpected_json(
                        "ExpressionAttributeNames must be an object",
                    )));
                };
                object
                    .iter()
                    .map(|(key, value)| match value {
                        Json::String(name) => Ok((key.clone(), name.clone())),
                        _ => Err(Error::Serialization(messages::unexpected_json(
                            "ExpressionAttributeNames values must be strings",
                        ))),
                    })
                    .collect::<Result<BTreeMap<_, _>>>()
            })
            .transpose()?;
        let values = values
            .map(|json| {
                let Json::Object(object) = json else {
                    return Err(Error::Serialization(messages::unexpected_json(
                        "ExpressionAttributeValues must be an object",
                    )));
                };
                object
                    .iter()
                    .map(|(key, value)| match value_from_json(value) {
                        Ok(value) => Ok((key.clone(), value)),
                        Err(Error::Validation(message)) => {
                            Err(validation(messages::values_invalid_value(&message, key)))
                        }
                        Err(other) => Err(other),
                    })
                    .collect::<Result<BTreeMap<_, _>>>()
            })
            .transpose()?;
        ExpressionContext::new(names, values)
    }

    /// Parses a ConditionExpression or FilterExpression.
    pub fn parse_condition(&mut self, kind: ExpressionKind, source: &str) -> Result<Condition> {
        self.parsed_any = true;
        parser::parse_condition(self, kind, source)
    }

    /// Parses an UpdateExpression.
    pub fn parse_update(&mut self, source: &str) -> Result<Update> {
        self.parsed_any = true;
        parser::parse_update(self, source)
    }

    /// Parses a ProjectionExpression into its paths, in written order.
    pub fn parse_projection(&mut self, source: &str) -> Result<Vec<DocumentPath>> {
        self.parsed_any = true;
        parser::parse_projection(self, source)
    }

    /// Rejects names or values that no expression of the request used, with DynamoDB's message;
    /// a request with placeholders but no expression at all gets DynamoDB's own message for that.
    pub fn finish(&self) -> Result<()> {
        if !self.parsed_any {
            if !self.names.is_empty() {
                return Err(validation(messages::placeholders_without_expression(
                    "ExpressionAttributeNames",
                )));
            }
            if !self.values.is_empty() {
                return Err(validation(messages::placeholders_without_expression(
                    "ExpressionAttributeValues",
                )));
            }
        }
        let unused_names: Vec<&str> = self
            .names
            .keys()
            .filter(|key| !self.used_names.contains(*key))
            .map(String::as_str)
            .collect();
        if !unused_names.is_empty() {
            return Err(validation(messages::unused_names(&unused_names.join(", "))));
        }
        let unused_values: Vec<&str> = self
            .values
            .keys()
            .filter(|key| !self.used_values.contains(*key))
            .map(String::as_str)
            .collect();
        if !unused_values.is_empty() {
            return Err(validation(messages::unused_values(
                &unused_values.join(", "),
            )));
        }
        Ok(())
    }

    fn resolve_name(&mut self, placeholder: &str) -> Option<String> {
        let name = self.names.get(placeholder)?.clone();
        self.used_names.insert(placeholder.to_string());
        Some(name)
    }

    fn resolve_value(&mut self, placeholder: &str) -> Option<AttributeValue> {
        let value = self.values.get(placeholder)?.clone();
        self.used_values.insert(placeholder.to_string());
        Some(value)
    }
}

/// How two paths of one expression relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PathRelation {
    /// Neither touches the other.
    Disjoint,
    /// One is a prefix of the other, or they are equal.
    Overlap,
    /// At the first difference one indexes a list and the other names a map key.
    Conflict,
}

fn relate(first: &DocumentPath, second: &DocumentPath) -> PathRelation {
    for (left, right) in first.elements.iter().zip(&second.elements) {
        match (left, right) {
            _ if left == right => {}
            (PathElement::Attribute(_), PathElement::Attribute(_))
            | (PathElement::Index(_), PathElement::Index(_)) => return PathRelation::Disjoint,
            _ => return PathRelation::Conflict,
        }
    }
    PathRelation::Overlap
}

/// Rejects overlapping or conflicting paths with DynamoDB's messages, naming them in written
/// order. Runs in O(n log n): after sorting, if any two paths overlap or conflict then two
/// neighbours do, because every path sorted between them shares the prefix they share.
fn check_paths_disjoint(kind: ExpressionKind, paths: &[&DocumentPath]) -> Result<()> {
    let mut order: Vec<usize> = (0..paths.len()).collect();
    order.sort_by(|&left, &right| paths[left].cmp(paths[right]).then(left.cmp(&right)));
    for pair in order.windows(2) {
        let (first, second) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
        let detail = match relate(paths[first], paths[second]) {
            PathRelation::Disjoint => continue,
            PathRelation::Overlap => {
                messages::paths_overlap(&paths[first].to_string(), &paths[second].to_string())
            }
            PathRelation::Conflict => {
                messages::paths_conflict(&paths[first].to_string(), &paths[second].to_string())
            }
        };
        return Err(validation(messages::invalid_expression(
            kind.parameter_name(),
            &detail,
        )));
    }
    Ok(())
}
