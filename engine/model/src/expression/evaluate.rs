//! Condition evaluation on a decoded item, with DynamoDB's semantics:
//! 1. A missing attribute makes every comparison false, except `<>`, which is then true.
//! 2. Values of different types are never equal; ordering (`<`, BETWEEN) is defined only for
//!    two numbers, two strings or two binaries, and is false otherwise.
//! 3. `size()` of a value without a size (a number, boolean or null) is missing.

use std::cmp::Ordering;

use super::ast::{Comparator, Condition, DocumentPath, Operand, PathElement};
use crate::error::{Error, Result};
use crate::number::Number;
use crate::value::{AttributeValue, Item};

/// The value at `path` in `item`, if every step exists and has the right container type.
pub fn value_at<'item>(item: &'item Item, path: &DocumentPath) -> Option<&'item AttributeValue> {
    let mut elements = path.elements.iter();
    let Some(PathElement::Attribute(name)) = elements.next() else {
        return None;
    };
    let mut current = item.get(name)?;
    for element in elements {
        current = match (element, current) {
            (PathElement::Attribute(name), AttributeValue::Map(map)) => map.get(name)?,
            (PathElement::Index(index), AttributeValue::List(list)) => list.get(*index)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The size DynamoDB's `size()` reports: characters of a string, bytes of a binary, members of
/// a set, elements of a list or map.
pub fn size_of(value: &AttributeValue) -> Option<Number> {
    let size = match value {
        AttributeValue::String(text) => text.chars().count(),
        AttributeValue::Binary(bytes) => bytes.len(),
        AttributeValue::StringSet(set) => set.len(),
        AttributeValue::NumberSet(set) => set.len(),
        AttributeValue::BinarySet(set) => set.len(),
        AttributeValue::List(list) => list.len(),
        AttributeValue::Map(map) => map.len(),
        AttributeValue::Number(_) | AttributeValue::Boolean(_) | AttributeValue::Null => {
            return None;
        }
    };
    Some(Number::from(size as u64))
}

/// An operand's value: borrowed from the item or the expression, or computed by `size()`.
enum Resolved<'a> {
    Borrowed(&'a AttributeValue),
    Owned(AttributeValue),
}

impl Resolved<'_> {
    fn get(&self) -> &AttributeValue {
        match self {
            Resolved::Borrowed(value) => value,
            Resolved::Owned(value) => value,
        }
    }
}

fn resolve<'a>(operand: &'a Operand, item: &'a Item) -> Option<Resolved<'a>> {
    match operand {
        Operand::Path(path) => value_at(item, path).map(Resolved::Borrowed),
        Operand::Value(value) => Some(Resolved::Borrowed(value)),
        Operand::Size(path) => value_at(item, path)
            .and_then(size_of)
            .map(|size| Resolved::Owned(AttributeValue::Number(size))),
    }
}

/// Whether `condition` holds for `item` (an absent item is evaluated as an empty one).
pub fn evaluate(condition: &Condition, item: &Item) -> bool {
    match condition {
        Condition::Comparison {
            left,
            comparator,
            right,
        } => {
            let left = resolve(left, item);
            let right = resolve(right, item);
            let (Some(left), Some(right)) = (left, right) else {
                return *comparator == Comparator::NotEqual;
            };
            compare(left.get(), *comparator, right.get())
        }
        Condition::Between {
            value,
            lower,
            upper,
        } => {
            let (Some(value), Some(lower), Some(upper)) = (
                resolve(value, item),
                resolve(lower, item),
                resolve(upper, item),
            ) else {
                return false;
            };
            let above_lower = matches!(
                value.get().compare(lower.get()),
                Some(Ordering::Greater | Ordering::Equal)
            );
            let below_upper = matches!(
                value.get().compare(upper.get()),
                Some(Ordering::Less | Ordering::Equal)
            );
            above_lower && below_upper
        }
        Condition::In { value, candidates } => {
            let Some(value) = resolve(value, item) else {
                return false;
            };
            candidates.iter().any(|candidate| {
                resolve(candidate, item).is_some_and(|candidate| candidate.get() == value.get())
            })
        }
        Condition::And(conditions) => conditions.iter().all(|condition| evaluate(condition, item)),
        Condition::Or(conditions) => conditions.iter().any(|condition| evaluate(condition, item)),
        Condition::Not(condition) => !evaluate(condition, item),
        Condition::AttributeExists(path) => value_at(item, path).is_some(),
        Condition::AttributeNotExists(path) => value_at(item, path).is_none(),
        Condition::AttributeType(path, type_name) => {
            value_at(item, path).is_some_and(|value| value.type_name() == type_name)
        }
        Condition::BeginsWith(value, prefix) => {
            let (Some(value), Some(prefix)) = (resolve(value, item), resolve(prefix, item)) else {
                return false;
            };
            match (value.get(), prefix.get()) {
                (AttributeValue::String(text), AttributeValue::String(prefix)) => {
                    text.starts_with(prefix.as_str())
                }
                (AttributeValue::Binary(bytes), AttributeValue::Binary(prefix)) => {
                    bytes.starts_with(prefix)
                }
                _ => false,
            }
        }
        Condition::Contains(container, member) => {
            let (Some(container), Some(member)) = (resolve(container, item), resolve(member, item))
            else {
                return false;
            };
            contains(container.get(), member.get())
        }
    }
}

/// The check a conditional write makes: `Ok` when there is no condition or it holds for the
/// current item (empty when absent), else `ConditionalCheckFailedException`.
pub fn check_condition(condition: Option<&Condition>, item: &Item) -> Result<()> {
    match condition {
        Some(condition) if !evaluate(condition, item) => Err(Error::ConditionalCheckFailed),
        _ => Ok(()),
    }
}

fn compare(left: &AttributeValue, comparator: Comparator, right: &AttributeValue) -> bool {
    match comparator {
        Comparator::Equal => left == right,
        Comparator::NotEqual => left != right,
        Comparator::Less => left.compare(right) == Some(Ordering::Less),
        Comparator::LessOrEqual => {
            matches!(left.compare(right), Some(Ordering::Less | Ordering::Equal))
        }
        Comparator::Greater => left.compare(right) == Some(Ordering::Greater),
        Comparator::GreaterOrEqual => {
            matches!(
                left.compare(right),
                Some(Ordering::Greater | Ordering::Equal)
            )
        }
    }
}

/// `contains`: a substring of a string, a contiguous run of a binary, a member of a set of the
/// member's type, or an element of a list.
fn contains(container: &AttributeValue, member: &AttributeValue) -> bool {
    match (container, member) {
        (AttributeValue::String(text), AttributeValue::String(part)) => {
            text.contains(part.as_str())
        }
        (AttributeValue::Binary(bytes), AttributeValue::Binary(part)) => {
            part.is_empty()
                || bytes
                    .windows(part.len())
                    .any(|window| window == part.as_slice())
        }
        (AttributeValue::StringSet(set), AttributeValue::String(text)) => set.contains(text),
        (AttributeValue::NumberSet(set), AttributeValue::Number(number)) => set.contains(number),
        (AttributeValue::BinarySet(set), AttributeValue::Binary(bytes)) => set.contains(bytes),
        (AttributeValue::List(list), member) => list.contains(member),
        _ => false,
    }
}
