//! Applying an update to an item, and ReturnValues.
//!
//! DynamoDB evaluates every SET right-hand side against the item as it was before the update,
//! then applies the actions. REMOVEs run last, in descending path order, so that removing
//! `a[1]` and `a[3]` removes the elements that had those indexes before the update.

use std::collections::BTreeSet;

use super::ast::{DocumentPath, PathElement, SetValue, Update, UpdateAction, UpdateOperand};
use super::evaluate::value_at;
use super::projection::project;
use crate::error::{Result, validation};
use crate::key::KeySchema;
use crate::messages;
use crate::value::{AttributeValue, ITEM_BYTES_MAX, Item, NESTING_DEPTH_MAX, item_size_bytes};

/// Applies `update` to `old_item` (empty when the item does not exist) and returns the new item.
pub fn apply_update(update: &Update, old_item: &Item, key_schema: &KeySchema) -> Result<Item> {
    for action in &update.actions {
        let name = action.path().top_level_name();
        if key_schema.is_key_attribute(name) {
            return Err(validation(messages::key_attribute_updated(name)));
        }
    }
    // Right-hand sides read `old_item`, never `new_item`, so every SET sees the item as it was
    // before the update whatever the order of the actions. Every SET value ends up in the new
    // item (targets never overlap, so none is removed again), so their total size bounds the
    // new item's; checking it as values are built keeps a hostile expression from copying a
    // large item hundreds of times before the final size check.
    let mut new_item = old_item.clone();
    let mut set_values_bytes = 0usize;
    let mut removals: Vec<&DocumentPath> = Vec::new();
    for action in &update.actions {
        match action {
            UpdateAction::Set(path, value) => {
                let value = evaluate_set_value(value, old_item)?;
                set_values_bytes = set_values_bytes.saturating_add(value.size_bytes());
                if set_values_bytes > ITEM_BYTES_MAX {
                    return Err(validation(messages::UPDATED_ITEM_TOO_LARGE));
                }
                set_at(&mut new_item, path, value)?;
            }
            UpdateAction::Remove(path) => removals.push(path),
            UpdateAction::Add(path, operand) => {
                let value = match value_at(&new_item, path) {
                    None => operand.clone(),
                    Some(existing) => add(existing, operand)?,
                };
                set_at(&mut new_item, path, value)?;
            }
            UpdateAction::Delete(path, operand) => {
                let Some(existing) = value_at(&new_item, path) else {
                    continue;
                };
                match set_difference(existing, operand)? {
                    Some(remaining) => set_at(&mut new_item, path, remaining)?,
                    None => remove_at(&mut new_item, path)?,
                }
            }
        }
    }
    removals.sort_by(|left, right| right.cmp(left));
    for path in removals {
        remove_at(&mut new_item, path)?;
    }
    if item_size_bytes(&new_item) > ITEM_BYTES_MAX {
        return Err(validation(messages::UPDATED_ITEM_TOO_LARGE));
    }
    if new_item
        .values()
        .any(|value| value.depth() > NESTING_DEPTH_MAX)
    {
        return Err(validation(messages::NESTING_TOO_DEEP));
    }
    Ok(new_item)
}

fn evaluate_operand(operand: &UpdateOperand, item: &Item) -> Result<AttributeValue> {
    match operand {
        UpdateOperand::Path(path) => value_at(item, path)
            .cloned()
            .ok_or_else(|| validation(messages::UPDATE_MISSING_ATTRIBUTE)),
        UpdateOperand::Value(value) => Ok(value.clone()),
        UpdateOperand::IfNotExists(path, fallback) => match value_at(item, path) {
            Some(value) => Ok(value.clone()),
            None => evaluate_operand(fallback, item),
        },
        UpdateOperand::ListAppend(first, second) => {
            match (
                evaluate_operand(first, item)?,
                evaluate_operand(second, item)?,
            ) {
                (AttributeValue::List(mut first), AttributeValue::List(second)) => {
                    first.extend(second);
                    Ok(AttributeValue::List(first))
                }
                (AttributeValue::List(_), other) | (other, _) => {
                    Err(operand_type_error("list_append", &other))
                }
            }
        }
    }
}

fn evaluate_set_value(value: &SetValue, item: &Item) -> Result<AttributeValue> {
    let (left, right, subtract) = match value {
        SetValue::Operand(operand) => return evaluate_operand(operand, item),
        SetValue::Plus(left, right) => (left, right, false),
        SetValue::Minus(left, right) => (left, right, true),
    };
    match (
        evaluate_operand(left, item)?,
        evaluate_operand(right, item)?,
    ) {
        (AttributeValue::Number(left), AttributeValue::Number(right)) => {
            let result = if subtract {
                left.subtract(&right)?
            } else {
                left.add(&right)?
            };
            Ok(AttributeValue::Number(result))
        }
        (AttributeValue::Number(_), other) | (other, _) => {
            Err(operand_type_error(if subtract { "-" } else { "+" }, &other))
        }
    }
}

/// The error for a SET operand of the wrong type, found when the item's value is read.
fn operand_type_error(operator: &str, operand: &AttributeValue) -> crate::error::Error {
    validation(messages::invalid_expression(
        "UpdateExpression",
        &messages::wrong_operand_type(operator, operand.type_name()),
    ))
}

fn add(existing: &AttributeValue, operand: &AttributeValue) -> Result<AttributeValue> {
    Ok(match (existing, operand) {
        (AttributeValue::Number(left), AttributeValue::Number(right)) => {
            AttributeValue::Number(left.add(right)?)
        }
        (AttributeValue::StringSet(left), AttributeValue::StringSet(right)) => {
            AttributeValue::StringSet(left.union(right).cloned().collect())
        }
        (AttributeValue::NumberSet(left), AttributeValue::NumberSet(right)) => {
            AttributeValue::NumberSet(left.union(right).cloned().collect())
        }
        (AttributeValue::BinarySet(left), AttributeValue::BinarySet(right)) => {
            AttributeValue::BinarySet(left.union(right).cloned().collect())
        }
        _ => return Err(validation(messages::UPDATE_OPERAND_TYPE)),
    })
}

/// The members of `existing` not in `operand`; `None` when nothing remains (DynamoDB then
/// removes the attribute, since a set may not be empty).
fn set_difference(
    existing: &AttributeValue,
    operand: &AttributeValue,
) -> Result<Option<AttributeValue>> {
    fn difference<T: Ord + Clone>(left: &BTreeSet<T>, right: &BTreeSet<T>) -> BTreeSet<T> {
        left.difference(right).cloned().collect()
    }
    let remaining = match (existing, operand) {
        (AttributeValue::StringSet(left), AttributeValue::StringSet(right)) => {
            AttributeValue::StringSet(difference(left, right))
        }
        (AttributeValue::NumberSet(left), AttributeValue::NumberSet(right)) => {
            AttributeValue::NumberSet(difference(left, right))
        }
        (AttributeValue::BinarySet(left), AttributeValue::BinarySet(right)) => {
            AttributeValue::BinarySet(difference(left, right))
        }
        _ => return Err(validation(messages::UPDATE_OPERAND_TYPE)),
    };
    let empty = match &remaining {
        AttributeValue::StringSet(set) => set.is_empty(),
        AttributeValue::NumberSet(set) => set.is_empty(),
        AttributeValue::BinarySet(set) => set.is_empty(),
        _ => false,
    };
    Ok((!empty).then_some(remaining))
}

fn value_at_mut<'item>(
    item: &'item mut Item,
    elements: &[PathElement],
) -> Option<&'item mut AttributeValue> {
    let (first, rest) = elements.split_first()?;
    let PathElement::Attribute(name) = first else {
        return None;
    };
    let mut current = item.get_mut(name)?;
    for element in rest {
        current = match (element, current) {
            (PathElement::Attribute(name), AttributeValue::Map(map)) => map.get_mut(name)?,
            (PathElement::Index(index), AttributeValue::List(list)) => list.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Writes `value` at `path`. The parent must exist and be a map (for a name) or a list (for an
/// index); an index past the end appends, as DynamoDB does.
fn set_at(item: &mut Item, path: &DocumentPath, value: AttributeValue) -> Result<()> {
    let invalid = || validation(messages::UPDATE_PATH_INVALID);
    let Some((last, parent_elements)) = path.elements.split_last() else {
        return Err(invalid());
    };
    if parent_elements.is_empty() {
        let PathElement::Attribute(name) = last else {
            return Err(invalid());
        };
        item.insert(name.clone(), value);
        return Ok(());
    }
    let parent = value_at_mut(item, parent_elements).ok_or_else(invalid)?;
    match (last, parent) {
        (PathElement::Attribute(name), AttributeValue::Map(map)) => {
            map.insert(name.clone(), value);
        }
        (PathElement::Index(index), AttributeValue::List(list)) => {
            if let Some(slot) = list.get_mut(*index) {
                *slot = value;
            } else {
                list.push(value);
            }
        }
        _ => return Err(invalid()),
    }
    Ok(())
}

/// Removes the value at `path`. A missing value (or missing parent) is not an error; a parent
/// of the wrong container type is.
fn remove_at(item: &mut Item, path: &DocumentPath) -> Result<()> {
    let invalid = || validation(messages::UPDATE_PATH_INVALID);
    let Some((last, parent_elements)) = path.elements.split_last() else {
        return Err(invalid());
    };
    if parent_elements.is_empty() {
        if let PathElement::Attribute(name) = last {
            item.remove(name);
        }
        return Ok(());
    }
    let Some(parent) = value_at_mut(item, parent_elements) else {
        return Ok(());
    };
    match (last, parent) {
        (PathElement::Attribute(name), AttributeValue::Map(map)) => {
            map.remove(name);
        }
        (PathElement::Index(index), AttributeValue::List(list)) => {
            if *index < list.len() {
                list.remove(*index);
            }
        }
        _ => return Err(invalid()),
    }
    Ok(())
}

/// Whether `update` writes an item that does not exist yet. DynamoDB creates the missing item
/// for an update with a SET or ADD action, and for one with no action at all (empty
/// AttributeUpdates, or no update parameter): the new item is then the key alone. An update
/// made only of REMOVE and DELETE actions has nothing to write, so a missing item stays
/// missing and every ReturnValues setting returns no Attributes.
pub fn creates_missing_item(update: &Update) -> bool {
    update.actions.is_empty()
        || update
            .actions
            .iter()
            .any(|action| matches!(action, UpdateAction::Set(..) | UpdateAction::Add(..)))
}

/// The ReturnValues parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReturnValues {
    /// `NONE`: nothing.
    #[default]
    None,
    /// `ALL_OLD`: the whole item before the write.
    AllOld,
    /// `UPDATED_OLD`: the updated paths, before the write.
    UpdatedOld,
    /// `ALL_NEW`: the whole item after the write.
    AllNew,
    /// `UPDATED_NEW`: the updated paths, after the write.
    UpdatedNew,
}

impl ReturnValues {
    /// Parses the parameter's value.
    pub fn parse(text: &str) -> Result<ReturnValues> {
        Ok(match text {
            "NONE" => ReturnValues::None,
            "ALL_OLD" => ReturnValues::AllOld,
            "UPDATED_OLD" => ReturnValues::UpdatedOld,
            "ALL_NEW" => ReturnValues::AllNew,
            "UPDATED_NEW" => ReturnValues::UpdatedNew,
            other => return Err(validation(messages::return_values_invalid(other))),
        })
    }
}

/// The `Attributes` a write returns for `return_values`, given the item before the write (if it
/// existed), the item after it (if it exists) and the paths the write updated. `None` when
/// DynamoDB returns no Attributes (nothing requested, or nothing to report).
pub fn returned_attributes(
    return_values: ReturnValues,
    old_item: Option<&Item>,
    new_item: Option<&Item>,
    updated_paths: &[DocumentPath],
) -> Option<Item> {
    let attributes = match return_values {
        ReturnValues::None => return None,
        ReturnValues::AllOld => old_item?.clone(),
        ReturnValues::AllNew => new_item?.clone(),
        ReturnValues::UpdatedOld => project(old_item?, updated_paths),
        ReturnValues::UpdatedNew => project(new_item?, updated_paths),
    };
    (!attributes.is_empty()).then_some(attributes)
}

/// The paths an update writes, for [`returned_attributes`].
pub fn updated_paths(update: &Update) -> Vec<DocumentPath> {
    update
        .actions
        .iter()
        .map(|action| action.path().clone())
        .collect()
}
