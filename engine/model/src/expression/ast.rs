//! The syntax tree shared by expressions and the legacy parameters. Placeholders are already
//! resolved: names are attribute names, values are attribute values.

use std::fmt;

use crate::value::AttributeValue;

/// One step of a document path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A map key (or, first in a path, a top-level attribute name).
    Attribute(String),
    /// A list index.
    Index(usize),
}

/// A document path such as `a.b[3].c`. The first element is always an attribute.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocumentPath {
    /// The steps, outermost first; never empty.
    pub elements: Vec<PathElement>,
}

impl DocumentPath {
    /// A path naming one top-level attribute.
    pub fn attribute(name: &str) -> DocumentPath {
        DocumentPath {
            elements: vec![PathElement::Attribute(name.to_string())],
        }
    }

    /// The top-level attribute the path starts at.
    pub fn top_level_name(&self) -> &str {
        match self.elements.first() {
            Some(PathElement::Attribute(name)) => name,
            _ => "",
        }
    }
}

/// DynamoDB's rendering in error messages: `[a, b, [3]]`.
impl fmt::Display for DocumentPath {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[")?;
        for (position, element) in self.elements.iter().enumerate() {
            if position > 0 {
                formatter.write_str(", ")?;
            }
            match element {
                PathElement::Attribute(name) => formatter.write_str(name)?,
                PathElement::Index(index) => write!(formatter, "[{index}]")?,
            }
        }
        formatter.write_str("]")
    }
}

/// An operand of a comparison or function in a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// The value at a document path of the item, if present.
    Path(DocumentPath),
    /// A constant from ExpressionAttributeValues (or a legacy AttributeValueList).
    Value(AttributeValue),
    /// `size(path)`: the size of the value at the path, as a number.
    Size(DocumentPath),
}

/// A binary comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparator {
    /// `=`
    Equal,
    /// `<>`
    NotEqual,
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
}

impl Comparator {
    /// The operator as written in an expression.
    pub fn symbol(self) -> &'static str {
        match self {
            Comparator::Equal => "=",
            Comparator::NotEqual => "<>",
            Comparator::Less => "<",
            Comparator::LessOrEqual => "<=",
            Comparator::Greater => ">",
            Comparator::GreaterOrEqual => ">=",
        }
    }
}

/// A condition: ConditionExpression, FilterExpression, KeyConditionExpression, and the legacy
/// Expected, QueryFilter, ScanFilter and KeyConditions all become this tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// `left comparator right`.
    Comparison {
        /// The left operand.
        left: Operand,
        /// The operator.
        comparator: Comparator,
        /// The right operand.
        right: Operand,
    },
    /// `value BETWEEN lower AND upper`.
    Between {
        /// The operand tested.
        value: Operand,
        /// The inclusive lower bound.
        lower: Operand,
        /// The inclusive upper bound.
        upper: Operand,
    },
    /// `value IN (candidate, ...)`.
    In {
        /// The operand tested.
        value: Operand,
        /// The candidates, at most `IN_OPERANDS_MAX`.
        candidates: Vec<Operand>,
    },
    /// All conditions hold (at least two).
    And(Vec<Condition>),
    /// At least one condition holds (at least two).
    Or(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
    /// `attribute_exists(path)`.
    AttributeExists(DocumentPath),
    /// `attribute_not_exists(path)`.
    AttributeNotExists(DocumentPath),
    /// `attribute_type(path, :type)`, with the type name already checked.
    AttributeType(DocumentPath, String),
    /// `begins_with(operand, prefix)`.
    BeginsWith(Operand, Operand),
    /// `contains(operand, member)`.
    Contains(Operand, Operand),
}

/// An operand on the right side of SET.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateOperand {
    /// The value at a path of the item before the update; it must exist.
    Path(DocumentPath),
    /// A constant.
    Value(AttributeValue),
    /// `if_not_exists(path, fallback)`.
    IfNotExists(DocumentPath, Box<UpdateOperand>),
    /// `list_append(first, second)`.
    ListAppend(Box<UpdateOperand>, Box<UpdateOperand>),
}

/// The right side of a SET action.
#[derive(Clone, Debug, PartialEq)]
pub enum SetValue {
    /// A single operand.
    Operand(UpdateOperand),
    /// `left + right`, numbers only.
    Plus(UpdateOperand, UpdateOperand),
    /// `left - right`, numbers only.
    Minus(UpdateOperand, UpdateOperand),
}

/// One action of an update.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateAction {
    /// `SET path = value`.
    Set(DocumentPath, SetValue),
    /// `REMOVE path`.
    Remove(DocumentPath),
    /// `ADD path value`: add to a number, or union into a set.
    Add(DocumentPath, AttributeValue),
    /// `DELETE path value`: remove members from a set.
    Delete(DocumentPath, AttributeValue),
}

impl UpdateAction {
    /// The path the action writes.
    pub fn path(&self) -> &DocumentPath {
        match self {
            UpdateAction::Set(path, _)
            | UpdateAction::Remove(path)
            | UpdateAction::Add(path, _)
            | UpdateAction::Delete(path, _) => path,
        }
    }
}

/// A parsed UpdateExpression (or translated AttributeUpdates): actions in written order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Update {
    /// The actions; their target paths never overlap or conflict.
    pub actions: Vec<UpdateAction>,
}
