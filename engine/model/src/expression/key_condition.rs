//! KeyConditionExpression (and legacy KeyConditions): an equality on the partition key and an
//! optional condition on the sort key, checked against the table's key schema.

use std::cmp::Ordering;
use std::ops::Bound;

use super::ast::{Comparator, Condition, Operand, PathElement};
use super::{ExpressionContext, ExpressionKind};
use crate::error::{Result, validation};
use crate::key::{KeyAttribute, KeyParts, KeyType, sort_key_bytes, storage_key_prefix};
use crate::messages;
use crate::value::AttributeValue;

/// A range of encoded keys: lower and upper bound, as `BTreeMap::range` takes them.
pub type ByteRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// A condition on the sort key.
#[derive(Clone, Debug, PartialEq)]
pub enum SortKeyCondition {
    /// `sk = v`
    Equal(AttributeValue),
    /// `sk < v`
    Less(AttributeValue),
    /// `sk <= v`
    LessOrEqual(AttributeValue),
    /// `sk > v`
    Greater(AttributeValue),
    /// `sk >= v`
    GreaterOrEqual(AttributeValue),
    /// `sk BETWEEN lower AND upper`
    Between(AttributeValue, AttributeValue),
    /// `begins_with(sk, prefix)`
    BeginsWith(AttributeValue),
}

impl SortKeyCondition {
    /// Whether a sort key value satisfies the condition.
    pub fn matches(&self, value: &AttributeValue) -> bool {
        let order = |bound: &AttributeValue| value.compare(bound);
        match self {
            SortKeyCondition::Equal(bound) => order(bound) == Some(Ordering::Equal),
            SortKeyCondition::Less(bound) => order(bound) == Some(Ordering::Less),
            SortKeyCondition::LessOrEqual(bound) => {
                matches!(order(bound), Some(Ordering::Less | Ordering::Equal))
            }
            SortKeyCondition::Greater(bound) => order(bound) == Some(Ordering::Greater),
            SortKeyCondition::GreaterOrEqual(bound) => {
                matches!(order(bound), Some(Ordering::Greater | Ordering::Equal))
            }
            SortKeyCondition::Between(lower, upper) => {
                matches!(order(lower), Some(Ordering::Greater | Ordering::Equal))
                    && matches!(order(upper), Some(Ordering::Less | Ordering::Equal))
            }
            SortKeyCondition::BeginsWith(prefix) => match (value, prefix) {
                (AttributeValue::String(text), AttributeValue::String(prefix)) => {
                    text.starts_with(prefix.as_str())
                }
                (AttributeValue::Binary(bytes), AttributeValue::Binary(prefix)) => {
                    bytes.starts_with(prefix)
                }
                _ => false,
            },
        }
    }

    /// The range of encoded sort keys ([`sort_key_bytes`]) that satisfies the condition, for a
    /// range scan within one partition key.
    pub fn encoded_bounds(&self) -> ByteRange {
        let encode = |value: &AttributeValue| sort_key_bytes(value).unwrap_or_default();
        match self {
            SortKeyCondition::Equal(value) => (
                Bound::Included(encode(value)),
                Bound::Included(encode(value)),
            ),
            SortKeyCondition::Less(value) => (Bound::Unbounded, Bound::Excluded(encode(value))),
            SortKeyCondition::LessOrEqual(value) => {
                (Bound::Unbounded, Bound::Included(encode(value)))
            }
            SortKeyCondition::Greater(value) => (Bound::Excluded(encode(value)), Bound::Unbounded),
            SortKeyCondition::GreaterOrEqual(value) => {
                (Bound::Included(encode(value)), Bound::Unbounded)
            }
            SortKeyCondition::Between(lower, upper) => (
                Bound::Included(encode(lower)),
                Bound::Included(encode(upper)),
            ),
            SortKeyCondition::BeginsWith(prefix) => {
                let prefix = encode(prefix);
                let upper = prefix_successor(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
                (Bound::Included(prefix), upper)
            }
        }
    }
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut successor = prefix.to_vec();
    while let Some(last) = successor.pop() {
        if last < u8::MAX {
            successor.push(last + 1);
            return Some(successor);
        }
    }
    None
}

/// A validated key condition.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyCondition {
    /// The partition key value the query reads (the first attribute's, for a GSI's
    /// multi-attribute partition key).
    pub partition_value: AttributeValue,
    /// The values of a multi-attribute partition key's other attributes, in key order; empty
    /// for a key of one attribute.
    pub other_partition_values: Vec<AttributeValue>,
    /// Equalities on the leading attributes of a multi-attribute sort key, in key order: the
    /// attributes before the one `sort` constrains. Empty for a key of one attribute.
    pub sort_equal_prefix: Vec<AttributeValue>,
    /// The condition on the sort key attribute after `sort_equal_prefix`, if any.
    pub sort: Option<SortKeyCondition>,
}

impl KeyCondition {
    /// A condition on a key of one partition attribute and at most one sort attribute.
    pub fn single(partition_value: AttributeValue, sort: Option<SortKeyCondition>) -> Self {
        KeyCondition {
            partition_value,
            other_partition_values: Vec::new(),
            sort_equal_prefix: Vec::new(),
            sort,
        }
    }

    /// The partition key values, in key order.
    pub fn partition_values(&self) -> impl Iterator<Item = &AttributeValue> {
        std::iter::once(&self.partition_value).chain(&self.other_partition_values)
    }

    /// Whether a start key (an index's or the table's LastEvaluatedKey) is one this condition
    /// selects, with DynamoDB's message for each way it is not (dynalite's db/query.js, whose
    /// suite runs against DynamoDB): without a sort key condition, another partition key is
    /// outside the query's boundaries; with one, a sort key the condition does not match is
    /// checked first, then the partition key.
    pub fn check_start_key(&self, start: &crate::value::Item, parts: KeyParts<'_>) -> Result<()> {
        let partition_matches = parts
            .partition
            .iter()
            .zip(self.partition_values())
            .all(|(attribute, value)| start.get(&attribute.name) == Some(value));
        let Some(sort) = &self.sort else {
            return if partition_matches {
                Ok(())
            } else {
                Err(validation(crate::request::START_KEY_OUTSIDE_QUERY))
            };
        };
        let prefix_matches = parts
            .sort
            .iter()
            .zip(&self.sort_equal_prefix)
            .all(|(attribute, value)| start.get(&attribute.name) == Some(value));
        let constrained = parts.sort.get(self.sort_equal_prefix.len());
        let sort_matches = constrained
            .and_then(|attribute| start.get(&attribute.name))
            .is_some_and(|value| sort.matches(value));
        if !prefix_matches || !sort_matches {
            return Err(validation(crate::request::START_KEY_OUTSIDE_SORT_CONDITION));
        }
        if !partition_matches {
            return Err(validation(crate::request::START_KEY_CANNOT_RESTART));
        }
        Ok(())
    }

    /// The sort key attributes this condition constrains, in key order.
    pub fn constrained_sort_attributes<'a>(
        &self,
        parts: KeyParts<'a>,
    ) -> impl Iterator<Item = &'a KeyAttribute> {
        let count = self.sort_equal_prefix.len() + usize::from(self.sort.is_some());
        parts.sort.iter().take(count)
    }

    /// The range of storage keys ([`KeySchema::storage_key`]) holding exactly the items the
    /// condition selects, for one range scan. `None` if the partition value is not a key type.
    pub fn storage_bounds(&self) -> Option<ByteRange> {
        let prefix = storage_key_prefix(&self.partition_value)?;
        let after_prefix = || prefix_successor(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        let Some(sort) = &self.sort else {
            return Some((Bound::Included(prefix.clone()), after_prefix()));
        };
        let extend = |sort_bytes: &[u8]| {
            let mut key = prefix.clone();
            key.extend_from_slice(sort_bytes);
            key
        };
        let (lower, upper) = sort.encoded_bounds();
        let lower = match lower {
            Bound::Included(bytes) => Bound::Included(extend(&bytes)),
            Bound::Excluded(bytes) => Bound::Excluded(extend(&bytes)),
            Bound::Unbounded => Bound::Included(prefix.clone()),
        };
        let upper = match upper {
            Bound::Included(bytes) => Bound::Included(extend(&bytes)),
            Bound::Excluded(bytes) => Bound::Excluded(extend(&bytes)),
            Bound::Unbounded => after_prefix(),
        };
        Some((lower, upper))
    }
}

/// Parses and validates a KeyConditionExpression.
pub fn parse_key_condition(
    context: &mut ExpressionContext,
    source: &str,
    key: KeyParts<'_>,
) -> Result<KeyCondition> {
    let condition = context.parse_condition(ExpressionKind::KeyCondition, source)?;
    key_condition_from_tree(&condition, key)
}

/// DynamoDB's text has no "Invalid KeyConditionExpression: " prefix here (as clients quote it:
/// "Invalid operator used in KeyConditionExpression: OR").
fn invalid_operator(operator: &str) -> crate::error::Error {
    validation(messages::key_condition_invalid_operator(operator))
}

/// One conjunct, reduced to the key attribute it constrains and how.
enum KeyTerm {
    Equal(AttributeValue),
    Sort(SortKeyCondition),
}

fn single_attribute(operand: &Operand) -> Result<&str> {
    match operand {
        Operand::Path(path) => match path.elements.as_slice() {
            [PathElement::Attribute(name)] => Ok(name),
            _ => Err(validation(messages::KEY_CONDITION_NOT_SUPPORTED)),
        },
        _ => Err(validation(messages::KEY_CONDITION_NOT_SUPPORTED)),
    }
}

fn constant(operand: &Operand) -> Result<&AttributeValue> {
    match operand {
        Operand::Value(value) => Ok(value),
        _ => Err(validation(messages::KEY_CONDITION_NOT_SUPPORTED)),
    }
}

fn term(condition: &Condition) -> Result<(&str, KeyTerm)> {
    match condition {
        Condition::Comparison {
            left,
            comparator,
            right,
        } => {
            // DynamoDB accepts the key on either side; a constant on the left mirrors the order.
            let (name, value, comparator) = match (left, right) {
                (Operand::Value(value), path) => {
                    (single_attribute(path)?, value, mirror(*comparator))
                }
                (path, value) => (single_attribute(path)?, constant(value)?, *comparator),
            };
            let value = value.clone();
            let term = match comparator {
                Comparator::Equal => KeyTerm::Equal(value),
                Comparator::Less => KeyTerm::Sort(SortKeyCondition::Less(value)),
                Comparator::LessOrEqual => KeyTerm::Sort(SortKeyCondition::LessOrEqual(value)),
                Comparator::Greater => KeyTerm::Sort(SortKeyCondition::Greater(value)),
                Comparator::GreaterOrEqual => {
                    KeyTerm::Sort(SortKeyCondition::GreaterOrEqual(value))
                }
                Comparator::NotEqual => return Err(invalid_operator("<>")),
            };
            Ok((name, term))
        }
        Condition::Between {
            value,
            lower,
            upper,
        } => Ok((
            single_attribute(value)?,
            KeyTerm::Sort(SortKeyCondition::Between(
                constant(lower)?.clone(),
                constant(upper)?.clone(),
            )),
        )),
        Condition::BeginsWith(value, prefix) => Ok((
            single_attribute(value)?,
            KeyTerm::Sort(SortKeyCondition::BeginsWith(constant(prefix)?.clone())),
        )),
        Condition::Or(_) => Err(invalid_operator("OR")),
        Condition::Not(_) => Err(invalid_operator("NOT")),
        Condition::In { .. } => Err(invalid_operator("IN")),
        Condition::AttributeExists(_) => Err(invalid_operator("attribute_exists")),
        Condition::AttributeNotExists(_) => Err(invalid_operator("attribute_not_exists")),
        Condition::AttributeType(..) => Err(invalid_operator("attribute_type")),
        Condition::Contains(..) => Err(invalid_operator("contains")),
        Condition::And(_) => Err(validation(messages::KEY_CONDITION_NOT_SUPPORTED)),
    }
}

fn mirror(comparator: Comparator) -> Comparator {
    match comparator {
        Comparator::Less => Comparator::Greater,
        Comparator::LessOrEqual => Comparator::GreaterOrEqual,
        Comparator::Greater => Comparator::Less,
        Comparator::GreaterOrEqual => Comparator::LessOrEqual,
        other => other,
    }
}

fn sort_values(condition: &SortKeyCondition) -> Vec<&AttributeValue> {
    match condition {
        SortKeyCondition::Between(lower, upper) => vec![lower, upper],
        SortKeyCondition::Equal(value)
        | SortKeyCondition::Less(value)
        | SortKeyCondition::LessOrEqual(value)
        | SortKeyCondition::Greater(value)
        | SortKeyCondition::GreaterOrEqual(value)
        | SortKeyCondition::BeginsWith(value) => vec![value],
    }
}

/// Validates a condition tree (from an expression or from legacy KeyConditions) as a key
/// condition for `key`.
///
/// A multi-attribute key (a GSI's) follows the developer guide's "Multi-attribute keys
/// pattern": every partition key attribute with an equality; sort key attributes from the left
/// without a gap, each with an equality but the last one given, which may have any sort key
/// condition. For a key of one attribute each, this is the classic rule.
pub fn key_condition_from_tree(condition: &Condition, key: KeyParts<'_>) -> Result<KeyCondition> {
    let conjuncts: Vec<&Condition> = match condition {
        Condition::And(conjuncts) => conjuncts.iter().collect(),
        single => vec![single],
    };
    let terms = conjuncts
        .into_iter()
        .map(term)
        .collect::<Result<Vec<_>>>()?;
    let terms_of = |attribute: &KeyAttribute| -> Vec<&KeyTerm> {
        terms
            .iter()
            .filter(|(name, _)| *name == attribute.name)
            .map(|(_, term)| term)
            .collect()
    };
    // The checks run in DynamoDB's order: the partition key first, then attributes outside the
    // key, then the sort key.
    let mut partition_values = Vec::with_capacity(key.partition.len());
    for attribute in key.partition {
        let found = terms_of(attribute);
        let Some(term) = found.first() else {
            return Err(validation(messages::key_condition_missing_key(
                &attribute.name,
            )));
        };
        if found.len() > 1 {
            return Err(validation(messages::KEY_CONDITION_ONE_PER_KEY));
        }
        let KeyTerm::Equal(value) = term else {
            return Err(validation(messages::KEY_CONDITION_NOT_SUPPORTED));
        };
        partition_values.push(value);
    }
    let sort_terms: Vec<Vec<&KeyTerm>> = key.sort.iter().map(terms_of).collect();
    let outside_key = terms.iter().any(|(name, _)| !key.is_key_attribute(name));
    if outside_key {
        return Err(match key.sort.first() {
            Some(first) if sort_terms.iter().all(Vec::is_empty) => {
                validation(messages::key_condition_missing_key(&first.name))
            }
            _ => validation(messages::KEY_CONDITION_NOT_SUPPORTED),
        });
    }
    if sort_terms.iter().any(|found| found.len() > 1) {
        return Err(validation(messages::KEY_CONDITION_ONE_PER_KEY));
    }
    for (attribute, value) in key.partition.iter().zip(&partition_values) {
        check_key_value(&attribute.name, attribute.key_type, value)?;
    }
    // The sort key attributes given form a prefix of the sort key: the first one missing after
    // one given is the one the condition missed.
    let given = sort_terms
        .iter()
        .take_while(|found| !found.is_empty())
        .count();
    if sort_terms[given..].iter().any(|found| !found.is_empty()) {
        return Err(validation(messages::key_condition_missing_key(
            &key.sort[given].name,
        )));
    }
    let mut sort_equal_prefix = Vec::new();
    let mut sort = None;
    for (position, (attribute, found)) in key.sort.iter().zip(&sort_terms).take(given).enumerate() {
        let condition = match found[0] {
            KeyTerm::Equal(value) => SortKeyCondition::Equal(value.clone()),
            KeyTerm::Sort(condition) => condition.clone(),
        };
        for value in sort_values(&condition) {
            check_key_value(&attribute.name, attribute.key_type, value)?;
        }
        if position + 1 < given {
            // Only the last sort key attribute given may have a range condition (DynamoDB's
            // text for it is not published: this is its generic refusal of a key condition).
            let SortKeyCondition::Equal(value) = condition else {
                return Err(validation(messages::KEY_CONDITION_NOT_SUPPORTED));
            };
            sort_equal_prefix.push(value);
        } else {
            sort = Some(condition);
        }
    }
    let mut partition_values = partition_values.into_iter().cloned();
    let Some(partition_value) = partition_values.next() else {
        return Err(validation(messages::KEY_CONDITION_NOT_SUPPORTED));
    };
    Ok(KeyCondition {
        partition_value,
        other_partition_values: partition_values.collect(),
        sort_equal_prefix,
        sort,
    })
}

/// A key condition value must have the key's type and, like every key value, must not be an
/// empty string or binary.
fn check_key_value(name: &str, key_type: KeyType, value: &AttributeValue) -> Result<()> {
    if !key_type.matches(value) {
        return Err(validation(messages::KEY_CONDITION_TYPE_MISMATCH));
    }
    match value {
        AttributeValue::String(text) if text.is_empty() => {
            Err(validation(messages::key_empty_string(name)))
        }
        AttributeValue::Binary(bytes) if bytes.is_empty() => {
            Err(validation(messages::key_empty_binary(name)))
        }
        _ => Ok(()),
    }
}
