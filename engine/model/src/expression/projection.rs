//! ProjectionExpression and AttributesToGet: the parts of an item a read returns. Also the
//! UPDATED_OLD and UPDATED_NEW forms of ReturnValues, which project onto the updated paths.

use std::collections::BTreeMap;

use super::ast::{DocumentPath, PathElement};
use super::evaluate::value_at;
use crate::value::{AttributeValue, Item};

/// A partially built projection.
enum Node<'item> {
    /// Nothing selected yet.
    Empty,
    /// A whole value was selected.
    Whole(&'item AttributeValue),
    /// Some keys of a map were selected.
    Map(BTreeMap<String, Node<'item>>),
    /// Some elements of a list were selected; the result keeps them in index order, compacted,
    /// as DynamoDB returns `a[1], a[3]` as a two-element list.
    List(BTreeMap<usize, Node<'item>>),
}

fn insert<'item>(node: &mut Node<'item>, rest: &[PathElement], value: &'item AttributeValue) {
    let Some((element, tail)) = rest.split_first() else {
        *node = Node::Whole(value);
        return;
    };
    if matches!(node, Node::Whole(_)) {
        // An enclosing value is already selected whole; it includes this one.
        return;
    }
    match element {
        PathElement::Attribute(name) => {
            if !matches!(node, Node::Map(_)) {
                *node = Node::Map(BTreeMap::new());
            }
            if let Node::Map(children) = node {
                insert(
                    children.entry(name.clone()).or_insert(Node::Empty),
                    tail,
                    value,
                );
            }
        }
        PathElement::Index(index) => {
            if !matches!(node, Node::List(_)) {
                *node = Node::List(BTreeMap::new());
            }
            if let Node::List(children) = node {
                insert(children.entry(*index).or_insert(Node::Empty), tail, value);
            }
        }
    }
}

fn build(node: Node<'_>) -> Option<AttributeValue> {
    match node {
        Node::Empty => None,
        Node::Whole(value) => Some(value.clone()),
        Node::Map(children) => Some(AttributeValue::Map(
            children
                .into_iter()
                .filter_map(|(name, child)| build(child).map(|value| (name, value)))
                .collect(),
        )),
        Node::List(children) => Some(AttributeValue::List(
            children.into_values().filter_map(build).collect(),
        )),
    }
}

/// The parts of `item` at `paths`. Missing paths are skipped; an empty result is an empty item.
pub fn project(item: &Item, paths: &[DocumentPath]) -> Item {
    let mut root = Node::Map(BTreeMap::new());
    for path in paths {
        if let Some(value) = value_at(item, path) {
            insert(&mut root, &path.elements, value);
        }
    }
    match build(root) {
        Some(AttributeValue::Map(map)) => map,
        _ => Item::new(),
    }
}
