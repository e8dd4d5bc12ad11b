//! The recursive-descent parser. Grammar (keywords are case-insensitive, function names are
//! case-sensitive, as in DynamoDB):
//!
//! ```text
//! condition  := disjunct ( OR disjunct )*
//! disjunct   := conjunct ( AND conjunct )*
//! conjunct   := NOT conjunct | '(' condition ')' | function | operand comparison
//! comparison := comparator operand | BETWEEN operand AND operand | IN '(' operand, ... ')'
//! operand    := path | ':value' | size '(' operand ')'   (a constant's size is folded)
//! path       := name ( '.' name | '[' integer ']' )*         name := identifier | '#name'
//! update     := ( SET set, ... | REMOVE path, ... | ADD path :value, ... | DELETE path :value, ... )+
//! set        := path '=' update_operand ( ('+' | '-') update_operand )?
//! update_operand := path | ':value' | if_not_exists '(' path, update_operand ')'
//!                 | list_append '(' update_operand, update_operand ')'
//! projection := path ( ',' path )*
//! ```

use super::ast::{
    Comparator, Condition, DocumentPath, Operand, PathElement, SetValue, Update, UpdateAction,
    UpdateOperand,
};
use super::evaluate::size_of;
use super::reserved::is_reserved_word;
use super::tokenizer::{Token, TokenKind, tokenize};
use super::{
    DOCUMENT_PATH_DEPTH_MAX, EXPRESSION_BYTES_MAX, EXPRESSION_NESTING_DEPTH_MAX, ExpressionContext,
    ExpressionKind, IN_OPERANDS_MAX, OPERATORS_MAX, check_paths_disjoint,
};
use crate::error::{Error, Result, validation};
use crate::json::value_for_message;
use crate::messages;
use crate::value::{AttributeValue, TYPE_NAMES};

const CONDITION_FUNCTIONS: [&str; 5] = [
    "attribute_exists",
    "attribute_not_exists",
    "attribute_type",
    "begins_with",
    "contains",
];
const UPDATE_FUNCTIONS: [&str; 2] = ["if_not_exists", "list_append"];
const SIZE_FUNCTION: &str = "size";
/// The words of the condition grammar itself: never an attribute name in a condition.
const CONDITION_KEYWORDS: [&str; 5] = ["AND", "OR", "NOT", "BETWEEN", "IN"];

/// The type an operand is known to have before the item is read: a constant's, or N for
/// `size()`. DynamoDB checks these against what each operator accepts; a path's type is
/// only known once the item is read, and a mismatch there just makes the condition false.
fn known_type(operand: &Operand) -> Option<&'static str> {
    match operand {
        Operand::Value(value) => Some(value.type_name()),
        Operand::Size(_) => Some("N"),
        Operand::Path(_) => None,
    }
}

/// Whether values of `type_name` have an order (`<`, `BETWEEN`): strings, numbers, binaries.
fn is_ordered_type(type_name: &str) -> bool {
    matches!(type_name, "S" | "N" | "B")
}

struct Parser<'source, 'context> {
    source: &'source str,
    tokens: Vec<Token>,
    position: usize,
    kind: ExpressionKind,
    context: &'context mut ExpressionContext,
    operator_count: usize,
    /// The token indexes of the opening and closing parenthesis of the group closed last, to
    /// detect a group whose whole content is another group, which DynamoDB rejects.
    last_group: Option<(usize, usize)>,
    /// The first error of the whole-expression checks DynamoDB makes after the syntax and
    /// before any per-condition check: redundant parentheses and reserved words.
    deferred_expression: Option<Error>,
    /// The first per-condition error found (an undefined placeholder, a wrong operand count or
    /// type, operands that are not distinct). DynamoDB reports syntax errors and the
    /// whole-expression errors before these, so parsing goes on to the end and this error is
    /// returned only if nothing else is wrong.
    deferred: Option<Error>,
}

fn prepare<'source, 'context>(
    context: &'context mut ExpressionContext,
    kind: ExpressionKind,
    source: &'source str,
) -> Result<Parser<'source, 'context>> {
    let invalid =
        |detail: &str| validation(messages::invalid_expression(kind.parameter_name(), detail));
    if source.len() > EXPRESSION_BYTES_MAX {
        return Err(invalid(&messages::expression_too_long(source.len())));
    }
    let tokens = match tokenize(source) {
        Ok(tokens) => tokens,
        Err(invalid_character) => {
            let token = &source[invalid_character.start..invalid_character.end];
            let near_start = invalid_character
                .previous_token_start
                .unwrap_or(invalid_character.start);
            let near = &source[near_start..invalid_character.context_end];
            return Err(invalid(&messages::syntax_error(token, near)));
        }
    };
    if tokens.len() == 1 {
        return Err(invalid(messages::EXPRESSION_EMPTY));
    }
    Ok(Parser {
        source,
        tokens,
        position: 0,
        kind,
        context,
        operator_count: 0,
        last_group: None,
        deferred_expression: None,
        deferred: None,
    })
}

pub(crate) fn parse_condition(
    context: &mut ExpressionContext,
    kind: ExpressionKind,
    source: &str,
) -> Result<Condition> {
    let mut parser = prepare(context, kind, source)?;
    let condition = parser.condition(0)?;
    parser.expect(TokenKind::End)?;
    parser.finish()?;
    Ok(condition)
}

pub(crate) fn parse_update(context: &mut ExpressionContext, source: &str) -> Result<Update> {
    let mut parser = prepare(context, ExpressionKind::Update, source)?;
    let update = parser.update()?;
    parser.finish()?;
    let paths: Vec<&DocumentPath> = update.actions.iter().map(UpdateAction::path).collect();
    check_paths_disjoint(ExpressionKind::Update, &paths)?;
    Ok(update)
}

pub(crate) fn parse_projection(
    context: &mut ExpressionContext,
    source: &str,
) -> Result<Vec<DocumentPath>> {
    let mut parser = prepare(context, ExpressionKind::Projection, source)?;
    let mut paths = vec![parser.path()?];
    while parser.accept(TokenKind::Comma) {
        paths.push(parser.path()?);
    }
    parser.expect(TokenKind::End)?;
    parser.finish()?;
    let references: Vec<&DocumentPath> = paths.iter().collect();
    check_paths_disjoint(ExpressionKind::Projection, &references)?;
    Ok(paths)
}

/// DynamoDB's long type names, used in ADD and DELETE operand errors.
fn long_type_name(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::String(_) => "STRING",
        AttributeValue::Number(_) => "NUMBER",
        AttributeValue::Binary(_) => "BINARY",
        AttributeValue::Boolean(_) => "BOOLEAN",
        AttributeValue::Null => "NULL",
        AttributeValue::Map(_) => "MAP",
        AttributeValue::List(_) => "LIST",
        AttributeValue::StringSet(_) => "STRING SET",
        AttributeValue::NumberSet(_) => "NUMBER SET",
        AttributeValue::BinarySet(_) => "BINARY SET",
    }
}

impl Parser<'_, '_> {
    fn error(&self, detail: &str) -> Error {
        validation(messages::invalid_expression(
            self.kind.parameter_name(),
            detail,
        ))
    }

    /// Records a semantic error to report once the whole expression has parsed.
    fn defer(&mut self, detail: &str) {
        if self.deferred.is_none() {
            self.deferred = Some(self.error(detail));
        }
    }

    /// Records a whole-expression error (reported before every per-condition one).
    fn defer_expression_error(&mut self, detail: &str) {
        if self.deferred_expression.is_none() {
            self.deferred_expression = Some(self.error(detail));
        }
    }

    /// Records the error of two operands that are the same path, which DynamoDB refuses for
    /// every two-operand operator and function (`a = a`, `contains(a, a)`).
    fn check_distinct(&mut self, operator: &str, first: &Operand, second: &Operand) {
        if let (Operand::Path(first), Operand::Path(second)) = (first, second)
            && first == second
        {
            self.defer(&messages::operands_not_distinct(
                operator,
                &first.to_string(),
            ));
        }
    }

    /// A stand-in condition after a deferred error; the parse fails, so it is never evaluated.
    fn deferred_condition(&mut self, detail: &str) -> Result<Condition> {
        self.defer(detail);
        Ok(Condition::And(Vec::new()))
    }

    /// A stand-in update operand after a deferred error; never evaluated either.
    fn deferred_update_operand(&mut self, detail: &str) -> Result<UpdateOperand> {
        self.defer(detail);
        Ok(UpdateOperand::Value(AttributeValue::Null))
    }

    fn finish(&mut self) -> Result<()> {
        match self
            .deferred_expression
            .take()
            .or_else(|| self.deferred.take())
        {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn peek(&self) -> Token {
        // The token vector always ends with End, and the position never passes it.
        self.tokens[self.position.min(self.tokens.len() - 1)]
    }

    fn peek_second(&self) -> Token {
        self.tokens[(self.position + 1).min(self.tokens.len() - 1)]
    }

    fn text(&self, token: Token) -> &str {
        &self.source[token.start..token.end]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek();
        if token.kind != TokenKind::End {
            self.position += 1;
        }
        token
    }

    fn accept(&mut self, kind: TokenKind) -> bool {
        if self.peek().kind == kind {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, kind: TokenKind) -> Result<Token> {
        if self.peek().kind == kind {
            Ok(self.advance())
        } else {
            Err(self.syntax_error())
        }
    }

    fn is_keyword(&self, token: Token, keyword: &str) -> bool {
        token.kind == TokenKind::Identifier && self.text(token).eq_ignore_ascii_case(keyword)
    }

    fn accept_keyword(&mut self, keyword: &str) -> bool {
        if self.is_keyword(self.peek(), keyword) {
            self.advance();
            true
        } else {
            false
        }
    }

    /// A syntax error at the current token, quoting it and its neighbours as DynamoDB does.
    fn syntax_error(&self) -> Error {
        let position = self.position.min(self.tokens.len() - 1);
        let token = self.tokens[position];
        let token_text = if token.kind == TokenKind::End {
            "<EOF>"
        } else {
            self.text(token)
        };
        let near_start = self.tokens[position.saturating_sub(1)].start;
        let near_end = self.tokens[(position + 1).min(self.tokens.len() - 1)].end;
        let near = &self.source[near_start.min(token.start)..near_end.max(token.end)];
        self.error(&messages::syntax_error(token_text, near))
    }

    fn count_operator(&mut self) -> Result<()> {
        self.operator_count += 1;
        if self.operator_count > OPERATORS_MAX {
            return Err(self.error(&messages::too_many_operators(self.operator_count)));
        }
        Ok(())
    }

    /// Checked before every recursive descent, so recursion depth is bounded by the limit.
    fn enter(&self, depth: usize) -> Result<usize> {
        let depth = depth + 1;
        if depth > EXPRESSION_NESTING_DEPTH_MAX {
            return Err(self.error(&messages::expression_nesting_too_deep(depth)));
        }
        Ok(depth)
    }

    fn condition(&mut self, depth: usize) -> Result<Condition> {
        let mut disjuncts = vec![self.conjunction(depth)?];
        while self.accept_keyword("OR") {
            self.count_operator()?;
            disjuncts.push(self.conjunction(depth)?);
        }
        Ok(if disjuncts.len() == 1 {
            disjuncts.swap_remove(0)
        } else {
            Condition::Or(disjuncts)
        })
    }

    fn conjunction(&mut self, depth: usize) -> Result<Condition> {
        let mut conjuncts = vec![self.unary(depth)?];
        while self.accept_keyword("AND") {
            self.count_operator()?;
            conjuncts.push(self.unary(depth)?);
        }
        Ok(if conjuncts.len() == 1 {
            conjuncts.swap_remove(0)
        } else {
            Condition::And(conjuncts)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Condition> {
        if self.accept_keyword("NOT") {
            self.count_operator()?;
            let depth = self.enter(depth)?;
            return Ok(Condition::Not(Box::new(self.unary(depth)?)));
        }
        if self.accept(TokenKind::LeftParenthesis) {
            let open_index = self.position - 1;
            let depth = self.enter(depth)?;
            let condition = self.condition(depth)?;
            self.expect(TokenKind::RightParenthesis)?;
            let close_index = self.position - 1;
            if self.last_group == Some((open_index + 1, close_index - 1)) {
                self.defer_expression_error(messages::REDUNDANT_PARENTHESES);
            }
            self.last_group = Some((open_index, close_index));
            return Ok(condition);
        }
        let token = self.peek();
        if token.kind == TokenKind::Identifier
            && self.peek_second().kind == TokenKind::LeftParenthesis
        {
            let name = self.text(token).to_string();
            if CONDITION_FUNCTIONS.contains(&name.as_str()) {
                self.advance();
                let condition = self.condition_function(&name, depth)?;
                // A function that is a condition is not an operand: `attribute_exists(a) = :v`.
                if self.comparison_follows() {
                    return Err(self.error(&messages::function_not_allowed(&name)));
                }
                return Ok(condition);
            }
        }
        let left = self.operand(depth)?;
        self.comparison(left, depth)
    }

    /// Whether the next token starts the right-hand side of a comparison.
    fn comparison_follows(&self) -> bool {
        let token = self.peek();
        matches!(
            token.kind,
            TokenKind::Equal
                | TokenKind::NotEqual
                | TokenKind::Less
                | TokenKind::LessOrEqual
                | TokenKind::Greater
                | TokenKind::GreaterOrEqual
        ) || self.is_keyword(token, "BETWEEN")
            || self.is_keyword(token, "IN")
    }

    fn comparison(&mut self, left: Operand, depth: usize) -> Result<Condition> {
        let comparator = match self.peek().kind {
            TokenKind::Equal => Some(Comparator::Equal),
            TokenKind::NotEqual => Some(Comparator::NotEqual),
            TokenKind::Less => Some(Comparator::Less),
            TokenKind::LessOrEqual => Some(Comparator::LessOrEqual),
            TokenKind::Greater => Some(Comparator::Greater),
            TokenKind::GreaterOrEqual => Some(Comparator::GreaterOrEqual),
            _ => None,
        };
        if let Some(comparator) = comparator {
            self.advance();
            self.count_operator()?;
            let right = self.operand(depth)?;
            self.check_distinct(comparator.symbol(), &left, &right);
            if !matches!(comparator, Comparator::Equal | Comparator::NotEqual) {
                self.check_ordered(comparator.symbol(), &[&left, &right]);
            }
            return Ok(Condition::Comparison {
                left,
                comparator,
                right,
            });
        }
        if self.accept_keyword("BETWEEN") {
            self.count_operator()?;
            let lower = self.operand(depth)?;
            if !self.accept_keyword("AND") {
                return Err(self.syntax_error());
            }
            let upper = self.operand(depth)?;
            self.check_ordered("BETWEEN", &[&left, &lower, &upper]);
            if let (Operand::Value(lower_value), Operand::Value(upper_value)) = (&lower, &upper) {
                let bounds = || {
                    (
                        value_for_message(lower_value),
                        value_for_message(upper_value),
                    )
                };
                if lower_value.type_name() != upper_value.type_name() {
                    let (lower_text, upper_text) = bounds();
                    self.defer(&messages::between_types_differ(&lower_text, &upper_text));
                } else if lower_value.compare(upper_value) == Some(std::cmp::Ordering::Greater) {
                    let (lower_text, upper_text) = bounds();
                    self.defer(&messages::between_bounds(&lower_text, &upper_text));
                }
            }
            return Ok(Condition::Between {
                value: left,
                lower,
                upper,
            });
        }
        if self.accept_keyword("IN") {
            self.count_operator()?;
            self.expect(TokenKind::LeftParenthesis)?;
            let mut candidates = vec![self.operand(depth)?];
            while self.accept(TokenKind::Comma) {
                candidates.push(self.operand(depth)?);
                if candidates.len() > IN_OPERANDS_MAX {
                    return Err(self.error(&messages::in_too_many_operands(candidates.len())));
                }
            }
            self.expect(TokenKind::RightParenthesis)?;
            return Ok(Condition::In {
                value: left,
                candidates,
            });
        }
        // `size(a)` alone is a misused function, `size(a).b` a syntax error.
        let path_follows = matches!(self.peek().kind, TokenKind::Dot | TokenKind::LeftBracket);
        if matches!(left, Operand::Size(_)) && !path_follows {
            return Err(self.error(&messages::function_not_allowed(SIZE_FUNCTION)));
        }
        Err(self.syntax_error())
    }

    /// Records the error of an operand whose type is known (a constant, or `size()`) and has
    /// no order, for `<`, `<=`, `>`, `>=` and BETWEEN.
    fn check_ordered(&mut self, operator: &str, operands: &[&Operand]) {
        if let Some(type_name) = operands
            .iter()
            .filter_map(|operand| known_type(operand))
            .find(|type_name| !is_ordered_type(type_name))
        {
            self.defer(&messages::wrong_operand_type(operator, type_name));
        }
    }

    /// Parses `( operand, ... )` after a function name.
    fn arguments(&mut self, depth: usize) -> Result<Vec<Operand>> {
        let depth = self.enter(depth)?;
        self.expect(TokenKind::LeftParenthesis)?;
        let mut arguments = Vec::new();
        if self.accept(TokenKind::RightParenthesis) {
            return Ok(arguments);
        }
        loop {
            arguments.push(self.operand(depth)?);
            if !self.accept(TokenKind::Comma) {
                break;
            }
        }
        self.expect(TokenKind::RightParenthesis)?;
        Ok(arguments)
    }

    fn condition_function(&mut self, name: &str, depth: usize) -> Result<Condition> {
        self.count_operator()?;
        let mut arguments = self.arguments(depth)?;
        let expected_count = match name {
            "attribute_exists" | "attribute_not_exists" => 1,
            _ => 2,
        };
        if arguments.len() != expected_count {
            return self.deferred_condition(&messages::wrong_operand_count(name, arguments.len()));
        }
        let second = if expected_count == 2 {
            arguments.pop()
        } else {
            None
        };
        let first = arguments.pop();
        if let (Some(first), Some(second)) = (&first, &second) {
            self.check_distinct(name, first, second);
        }
        match (name, first, second) {
            ("attribute_exists", Some(Operand::Path(path)), None) => {
                Ok(Condition::AttributeExists(path))
            }
            ("attribute_not_exists", Some(Operand::Path(path)), None) => {
                Ok(Condition::AttributeNotExists(path))
            }
            (
                "attribute_type",
                Some(tested @ (Operand::Path(_) | Operand::Value(_))),
                Some(type_operand),
            ) => {
                let type_name = match type_operand {
                    Operand::Value(AttributeValue::String(type_name)) => type_name,
                    other => {
                        let type_name = known_type(&other).unwrap_or("path");
                        return self
                            .deferred_condition(&messages::wrong_operand_type(name, type_name));
                    }
                };
                if !TYPE_NAMES.contains(&type_name.as_str()) {
                    return self.deferred_condition(&messages::invalid_type_name(&type_name));
                }
                Ok(match tested {
                    Operand::Path(path) => Condition::AttributeType(path, type_name),
                    // DynamoDB also tests the type of a constant: the answer is known now,
                    // so the condition becomes a comparison of two constants.
                    constant => Condition::Comparison {
                        left: Operand::Value(AttributeValue::String(
                            known_type(&constant).unwrap_or_default().to_string(),
                        )),
                        comparator: Comparator::Equal,
                        right: Operand::Value(AttributeValue::String(type_name)),
                    },
                })
            }
            ("begins_with", Some(first), Some(second)) => {
                for operand in [&first, &second] {
                    if let Some(type_name) = known_type(operand)
                        && !matches!(type_name, "S" | "B")
                    {
                        let detail = messages::wrong_operand_type(name, type_name);
                        return self.deferred_condition(&detail);
                    }
                }
                Ok(Condition::BeginsWith(first, second))
            }
            ("contains", Some(first), Some(second)) => Ok(Condition::Contains(first, second)),
            _ => self.deferred_condition(&messages::requires_path(name)),
        }
    }

    fn operand(&mut self, depth: usize) -> Result<Operand> {
        let token = self.peek();
        match token.kind {
            TokenKind::ValuePlaceholder => {
                self.advance();
                Ok(Operand::Value(self.value(token)?))
            }
            TokenKind::Identifier if self.peek_second().kind == TokenKind::LeftParenthesis => {
                let name = self.text(token).to_string();
                self.advance();
                if name != SIZE_FUNCTION {
                    return Err(self.error(&self.unknown_function(&name)));
                }
                self.count_operator()?;
                let mut arguments = self.arguments(depth)?;
                let detail = match arguments.pop() {
                    Some(_) if !arguments.is_empty() => {
                        messages::wrong_operand_count(&name, arguments.len() + 1)
                    }
                    None => messages::wrong_operand_count(&name, 0),
                    Some(Operand::Path(path)) => return Ok(Operand::Size(path)),
                    // The size of a constant is known now (DynamoDB accepts `size(:v)`).
                    Some(Operand::Value(value)) => match size_of(&value) {
                        Some(size) => return Ok(Operand::Value(AttributeValue::Number(size))),
                        None => messages::wrong_operand_type(&name, value.type_name()),
                    },
                    Some(Operand::Size(_)) => messages::wrong_operand_type(&name, "N"),
                };
                self.defer(&detail);
                Ok(Operand::Value(AttributeValue::Null))
            }
            TokenKind::Identifier | TokenKind::NamePlaceholder => Ok(Operand::Path(self.path()?)),
            _ => Err(self.syntax_error()),
        }
    }

    /// The error detail for a function name not allowed where it appears.
    fn unknown_function(&self, name: &str) -> String {
        let known = CONDITION_FUNCTIONS.contains(&name)
            || UPDATE_FUNCTIONS.contains(&name)
            || name == SIZE_FUNCTION;
        if known {
            messages::function_not_allowed(name)
        } else {
            messages::invalid_function(name)
        }
    }

    fn value(&mut self, token: Token) -> Result<AttributeValue> {
        let placeholder = self.text(token).to_string();
        match self.context.resolve_value(&placeholder) {
            Some(value) => Ok(value),
            None => {
                self.defer(&messages::undefined_value(&placeholder));
                Ok(AttributeValue::Null)
            }
        }
    }

    fn path_name(&mut self) -> Result<String> {
        let token = self.peek();
        match token.kind {
            TokenKind::Identifier => {
                let name = self.text(token).to_string();
                let in_condition = matches!(
                    self.kind,
                    ExpressionKind::Condition
                        | ExpressionKind::Filter
                        | ExpressionKind::KeyCondition
                );
                if in_condition
                    && CONDITION_KEYWORDS
                        .iter()
                        .any(|keyword| name.eq_ignore_ascii_case(keyword))
                {
                    return Err(self.syntax_error());
                }
                self.advance();
                if is_reserved_word(&name) {
                    self.defer_expression_error(&messages::reserved_keyword(&name));
                }
                Ok(name)
            }
            TokenKind::NamePlaceholder => {
                self.advance();
                let placeholder = self.text(token).to_string();
                match self.context.resolve_name(&placeholder) {
                    Some(name) => Ok(name),
                    None => {
                        self.defer(&messages::undefined_name(&placeholder));
                        Ok(placeholder)
                    }
                }
            }
            _ => Err(self.syntax_error()),
        }
    }

    fn path(&mut self) -> Result<DocumentPath> {
        let mut elements = vec![PathElement::Attribute(self.path_name()?)];
        loop {
            if self.accept(TokenKind::Dot) {
                elements.push(PathElement::Attribute(self.path_name()?));
            } else if self.accept(TokenKind::LeftBracket) {
                let token = self.expect(TokenKind::Integer)?;
                let Ok(index) = self.text(token).parse::<usize>() else {
                    self.position -= 1;
                    return Err(self.syntax_error());
                };
                self.expect(TokenKind::RightBracket)?;
                elements.push(PathElement::Index(index));
            } else {
                break;
            }
            if elements.len() > DOCUMENT_PATH_DEPTH_MAX {
                return Err(self.error(&messages::path_too_deep(elements.len())));
            }
        }
        Ok(DocumentPath { elements })
    }

    fn update(&mut self) -> Result<Update> {
        let mut actions = Vec::new();
        let mut seen_sections: Vec<&'static str> = Vec::new();
        while self.peek().kind != TokenKind::End {
            let section = ["SET", "REMOVE", "ADD", "DELETE"]
                .into_iter()
                .find(|section| self.is_keyword(self.peek(), section))
                .ok_or_else(|| self.syntax_error())?;
            if seen_sections.contains(&section) {
                self.defer(&messages::section_repeated(section));
            }
            seen_sections.push(section);
            self.advance();
            loop {
                let path = self.path()?;
                let action = match section {
                    "SET" => {
                        self.expect(TokenKind::Equal)?;
                        UpdateAction::Set(path, self.set_value()?)
                    }
                    "REMOVE" => UpdateAction::Remove(path),
                    _ => {
                        let token = self.expect(TokenKind::ValuePlaceholder)?;
                        let value = self.value(token)?;
                        self.check_add_or_delete_operand(section, &value);
                        if section == "ADD" {
                            UpdateAction::Add(path, value)
                        } else {
                            UpdateAction::Delete(path, value)
                        }
                    }
                };
                actions.push(action);
                if !self.accept(TokenKind::Comma) {
                    break;
                }
            }
        }
        Ok(Update { actions })
    }

    fn check_add_or_delete_operand(&mut self, section: &str, value: &AttributeValue) {
        let is_set = matches!(
            value,
            AttributeValue::StringSet(_)
                | AttributeValue::NumberSet(_)
                | AttributeValue::BinarySet(_)
        );
        let accepted = is_set || (section == "ADD" && matches!(value, AttributeValue::Number(_)));
        if !accepted {
            self.defer(&messages::update_operand_type(
                section,
                long_type_name(value),
            ));
        }
    }

    fn set_value(&mut self) -> Result<SetValue> {
        let left = self.update_operand(0)?;
        let arithmetic = match self.peek().kind {
            TokenKind::Plus => Some("+"),
            TokenKind::Minus => Some("-"),
            _ => None,
        };
        let Some(symbol) = arithmetic else {
            return Ok(SetValue::Operand(left));
        };
        self.advance();
        self.count_operator()?;
        let right = self.update_operand(0)?;
        for operand in [&left, &right] {
            if let UpdateOperand::Value(value) = operand
                && !matches!(value, AttributeValue::Number(_))
            {
                self.defer(&messages::wrong_operand_type(symbol, value.type_name()));
            }
        }
        Ok(if symbol == "+" {
            SetValue::Plus(left, right)
        } else {
            SetValue::Minus(left, right)
        })
    }

    fn update_operand(&mut self, depth: usize) -> Result<UpdateOperand> {
        let token = self.peek();
        match token.kind {
            TokenKind::ValuePlaceholder => {
                self.advance();
                Ok(UpdateOperand::Value(self.value(token)?))
            }
            TokenKind::Identifier if self.peek_second().kind == TokenKind::LeftParenthesis => {
                let name = self.text(token).to_string();
                self.advance();
                if !UPDATE_FUNCTIONS.contains(&name.as_str()) {
                    return Err(self.error(&self.unknown_function(&name)));
                }
                self.count_operator()?;
                let depth = self.enter(depth)?;
                self.expect(TokenKind::LeftParenthesis)?;
                let mut arguments = Vec::new();
                if !self.accept(TokenKind::RightParenthesis) {
                    loop {
                        arguments.push(self.update_operand(depth)?);
                        if !self.accept(TokenKind::Comma) {
                            break;
                        }
                    }
                    self.expect(TokenKind::RightParenthesis)?;
                }
                if arguments.len() != 2 {
                    let detail = messages::wrong_operand_count(&name, arguments.len());
                    return self.deferred_update_operand(&detail);
                }
                let second = arguments.pop();
                let first = arguments.pop();
                match (name.as_str(), first, second) {
                    ("if_not_exists", Some(UpdateOperand::Path(path)), Some(fallback)) => {
                        Ok(UpdateOperand::IfNotExists(path, Box::new(fallback)))
                    }
                    ("list_append", Some(first), Some(second)) => {
                        for operand in [&first, &second] {
                            if let UpdateOperand::Value(value) = operand
                                && !matches!(value, AttributeValue::List(_))
                            {
                                let detail = messages::wrong_operand_type(&name, value.type_name());
                                return self.deferred_update_operand(&detail);
                            }
                        }
                        Ok(UpdateOperand::ListAppend(Box::new(first), Box::new(second)))
                    }
                    _ => self.deferred_update_operand(&messages::requires_path(&name)),
                }
            }
            TokenKind::Identifier | TokenKind::NamePlaceholder => {
                Ok(UpdateOperand::Path(self.path()?))
            }
            _ => Err(self.syntax_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::number::Number;

    fn parse(source: &str) -> Condition {
        let values = BTreeMap::from([(":v".to_string(), AttributeValue::Number(Number::from(1)))]);
        let mut context = ExpressionContext::new(None, Some(values)).unwrap();
        context
            .parse_condition(ExpressionKind::Condition, source)
            .unwrap()
    }

    fn compare(name: &str) -> Condition {
        Condition::Comparison {
            left: Operand::Path(DocumentPath::attribute(name)),
            comparator: Comparator::Equal,
            right: Operand::Value(AttributeValue::Number(Number::from(1))),
        }
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        assert_eq!(
            parse("a = :v OR b = :v AND NOT c = :v"),
            Condition::Or(vec![
                compare("a"),
                Condition::And(vec![compare("b"), Condition::Not(Box::new(compare("c")))]),
            ])
        );
        assert_eq!(
            parse("(a = :v OR b = :v) AND c = :v"),
            Condition::And(vec![
                Condition::Or(vec![compare("a"), compare("b")]),
                compare("c")
            ])
        );
    }

    #[test]
    fn paths_parse_into_elements() {
        let Condition::AttributeExists(path) = parse("attribute_exists(a.b[3].c[0][1])") else {
            panic!("not attribute_exists");
        };
        assert_eq!(
            path.elements,
            vec![
                PathElement::Attribute("a".to_string()),
                PathElement::Attribute("b".to_string()),
                PathElement::Index(3),
                PathElement::Attribute("c".to_string()),
                PathElement::Index(0),
                PathElement::Index(1),
            ]
        );
        assert_eq!(path.to_string(), "[a, b, [3], c, [0], [1]]");
    }
}
