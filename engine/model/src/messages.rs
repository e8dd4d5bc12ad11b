//! Every message text this crate returns, in one place, worded as DynamoDB words it.
//!
//! Texts with parameters are functions. Where DynamoDB's own wording has a quirk (a double space,
//! a missing space), the quirk is kept on purpose: clients and their tests match these strings.
//!
//! Sources: the DynamoDB API model in botocore (limits, enums) and, for wording, the texts that
//! the moto project's DynamoDB mock reproduces from real responses. Texts found in neither are
//! our best knowledge of DynamoDB's wording; the report of issue 4 lists them.

/// The message of `ConditionalCheckFailedException`.
pub const CONDITIONAL_CHECK_FAILED: &str = "The conditional request failed";

// Numbers.
/// A number string that is not a decimal.
pub fn number_not_convertible(text: &str) -> String {
    format!("The parameter cannot be converted to a numeric value: {text}")
}
/// A number above 9.99...E+125 in magnitude.
pub const NUMBER_OVERFLOW: &str =
    "Number overflow. Attempting to store a number with magnitude larger than supported range";
/// A non-zero number below 1E-130 in magnitude.
pub const NUMBER_UNDERFLOW: &str =
    "Number underflow. Attempting to store a number with magnitude smaller than supported range";
/// A number with more than 38 significant digits.
pub const NUMBER_TOO_MANY_DIGITS: &str =
    "Attempting to store more than 38 significant digits in a Number";
/// An addition or subtraction whose exact result needs more than 38 significant digits.
pub const NUMBER_ARITHMETIC_PRECISION: &str =
    "Number overflow. Attempting to store a number with more than 38 significant digits";

// Attribute values in DynamoDB JSON.
/// An attribute value object without a type descriptor.
pub const ATTRIBUTE_VALUE_EMPTY: &str =
    "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes";
/// An attribute value object with two type descriptors.
pub const ATTRIBUTE_VALUE_MANY_TYPES: &str = "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes";
/// `{"NULL": false}`.
pub const NULL_MUST_BE_TRUE: &str = "One or more parameter values were invalid: Null attribute value types must have the value of true";

/// An empty set of the given kind ("string", "number", "binary"); DynamoDB's text has two spaces.
pub fn set_empty(kind: &str) -> String {
    format!("One or more parameter values were invalid: An {kind} set  may not be empty")
}

/// A set with a repeated member, listed as DynamoDB lists it.
pub fn set_duplicates(members: &str) -> String {
    format!(
        "One or more parameter values were invalid: Input collection {members} contains duplicates."
    )
}

/// A JSON shape that is not DynamoDB JSON (a SerializationException).
pub fn unexpected_json(context: &str) -> String {
    format!("Unexpected value type in payload: {context}")
}

/// Binary data that is not valid base64 (a SerializationException).
pub const BASE64_INVALID: &str = "Base64 encoded value could not be decoded";

/// An item or attribute nested deeper than DynamoDB allows (32 levels, the attribute itself
/// the first). The wording captured from DynamoDB in eu-west-2 by a public test suite that
/// checks it against the real service.
pub const NESTING_TOO_DEEP: &str = "Nesting Levels have exceeded supported limits: Attributes in the item have nested levels beyond supported limit";

// Items and keys.
/// A PutItem item above 400 KB.
pub const ITEM_TOO_LARGE: &str = "Item size has exceeded the maximum allowed size";
/// An UpdateItem result above 400 KB.
pub const UPDATED_ITEM_TOO_LARGE: &str =
    "Item size to update has exceeded the maximum allowed size";
/// A partition key above 2048 bytes. DynamoDB's text has no space in "of2048".
pub const PARTITION_KEY_TOO_LARGE: &str = "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes";
/// A sort key above 1024 bytes.
pub const SORT_KEY_TOO_LARGE: &str = "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size limit of 1024 bytes";
/// A Key parameter (GetItem, DeleteItem, UpdateItem) that is not exactly the schema's key.
pub const KEY_DOES_NOT_MATCH_SCHEMA: &str = "The provided key element does not match the schema";
/// An attribute name that is empty.
pub const ATTRIBUTE_NAME_EMPTY: &str =
    "One or more parameter values were invalid: An AttributeName must not be empty";

/// An attribute name over 65,535 bytes (value.rs, `ATTRIBUTE_NAME_BYTES_MAX`). The text is our
/// own: no public record of DynamoDB's wording was found; tests run against DynamoDB check only
/// the exception and that the message names the limit.
pub const ATTRIBUTE_NAME_TOO_LONG: &str = "One or more parameter values were invalid: Attribute name size exceeds the maximum size limit of 65535 bytes";

/// An item without one of the key attributes.
pub fn key_missing_in_item(name: &str) -> String {
    format!("One or more parameter values were invalid: Missing the key {name} in the item")
}

/// A key attribute whose type differs from the schema.
pub fn key_type_mismatch(name: &str, expected: &str, actual: &str) -> String {
    format!(
        "One or more parameter values were invalid: Type mismatch for key {name} expected: {expected} actual: {actual}"
    )
}

/// A key attribute that is an empty string.
pub fn key_empty_string(name: &str) -> String {
    format!(
        "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: {name}"
    )
}

/// A key attribute that is an empty binary.
pub fn key_empty_binary(name: &str) -> String {
    format!(
        "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty binary value. Key: {name}"
    )
}

/// An update that would change a key attribute.
pub fn key_attribute_updated(name: &str) -> String {
    format!(
        "One or more parameter values were invalid: Cannot update attribute {name}. This attribute is part of the key"
    )
}

// Expressions: the prefix names the parameter, as in "Invalid UpdateExpression: ...".
/// The prefix of every expression error.
pub fn invalid_expression(kind: &str, detail: &str) -> String {
    format!("Invalid {kind}: {detail}")
}

/// A parenthesised group whose whole content is another parenthesised group, as in `((a = :v))`.
pub const REDUNDANT_PARENTHESES: &str = "The expression has redundant parentheses;";

/// An expression that is empty or only white space.
pub const EXPRESSION_EMPTY: &str = "The expression can not be empty;";

/// A syntax error at `token`; `near` is the text around it.
pub fn syntax_error(token: &str, near: &str) -> String {
    format!("Syntax error; token: \"{token}\", near: \"{near}\"")
}

/// An expression longer than 4 KB.
pub fn expression_too_long(size_bytes: usize) -> String {
    format!("Expression size has exceeded the maximum allowed size; expression size: {size_bytes}")
}

/// An expression with more than 300 operators and functions.
pub fn too_many_operators(count: usize) -> String {
    format!("The expression contains too many operators; operator count: {count}")
}

/// An expression nested more deeply (parentheses, NOT, function arguments) than allowed.
pub fn expression_nesting_too_deep(depth: usize) -> String {
    format!("The expression has exceeded the maximum nesting level; nesting level: {depth}")
}

/// A document path with more than 32 levels.
pub fn path_too_deep(depth: usize) -> String {
    format!("The document path has too many nesting levels; nesting levels: {depth}")
}

/// A bare attribute name that is one of DynamoDB's reserved words.
pub fn reserved_keyword(word: &str) -> String {
    format!("Attribute name is a reserved keyword; reserved keyword: {word}")
}

/// A `#name` placeholder missing from ExpressionAttributeNames.
pub fn undefined_name(name: &str) -> String {
    format!(
        "An expression attribute name used in the document path is not defined; attribute name: {name}"
    )
}

/// A `:value` placeholder missing from ExpressionAttributeValues.
pub fn undefined_value(name: &str) -> String {
    format!(
        "An expression attribute value used in expression is not defined; attribute value: {name}"
    )
}

/// Names given in ExpressionAttributeNames that no expression uses.
pub fn unused_names(keys: &str) -> String {
    format!("Value provided in ExpressionAttributeNames unused in expressions: keys: {{{keys}}}")
}

/// Values given in ExpressionAttributeValues that no expression uses.
pub fn unused_values(keys: &str) -> String {
    format!("Value provided in ExpressionAttributeValues unused in expressions: keys: {{{keys}}}")
}

/// ExpressionAttributeNames given as an empty map.
pub const NAMES_EMPTY: &str = "ExpressionAttributeNames must not be empty";
/// ExpressionAttributeValues given as an empty map.
pub const VALUES_EMPTY: &str = "ExpressionAttributeValues must not be empty";

/// A key in ExpressionAttributeNames that does not start with `#`.
pub fn names_invalid_key(key: &str) -> String {
    format!("ExpressionAttributeNames contains invalid key: Syntax error; key: \"{key}\"")
}

/// A key in ExpressionAttributeValues that does not start with `:`.
pub fn values_invalid_key(key: &str) -> String {
    format!("ExpressionAttributeValues contains invalid key: Syntax error; key: \"{key}\"")
}

/// A value in ExpressionAttributeValues that is not a valid attribute value.
pub fn values_invalid_value(detail: &str, key: &str) -> String {
    format!("ExpressionAttributeValues contains invalid value: {detail} for key {key}")
}

/// ExpressionAttributeNames or ExpressionAttributeValues given without any expression.
pub fn placeholders_without_expression(parameter: &str) -> String {
    format!("{parameter} can only be specified when using expressions")
}

/// A function name the grammar does not know.
pub fn invalid_function(name: &str) -> String {
    format!("Invalid function name; function: {name}")
}

/// A function or operator called with the wrong count of operands.
pub fn wrong_operand_count(name: &str, count: usize) -> String {
    format!(
        "Incorrect number of operands for operator or function; operator or function: {name}, number of operands: {count}"
    )
}

/// A function or operator given an operand of a type it does not accept.
pub fn wrong_operand_type(name: &str, type_name: &str) -> String {
    format!(
        "Incorrect operand type for operator or function; operator or function: {name}, operand type: {type_name}"
    )
}

/// A function whose operand must be a document path.
pub fn requires_path(name: &str) -> String {
    format!("Operator or function requires a document path; operator or function: {name}")
}

/// A function used where the grammar does not allow it (such as `size` as a condition).
pub fn function_not_allowed(name: &str) -> String {
    format!("The function is not allowed to be used this way in an expression; function: {name}")
}

/// An `attribute_type` argument that is not a type name. The list has no spaces inside its
/// braces (dynalite's test/scan.js matches DynamoDB's with
/// `valid types: {((B|NULL|SS|BOOL|L|BS|N|NS|S|M),?){10}}$`; the order is dynalite's).
pub fn invalid_type_name(name: &str) -> String {
    format!(
        "Invalid attribute type name found; type: {name}, valid types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}"
    )
}

/// A BETWEEN whose constant bounds have different types.
pub fn between_types_differ(lower: &str, upper: &str) -> String {
    format!(
        "The BETWEEN operator requires same data type for lower and upper bounds; lower bound operand: AttributeValue: {lower}, upper bound operand: AttributeValue: {upper}"
    )
}

/// Two operands of one operator or function that are the same document path.
pub fn operands_not_distinct(operator: &str, path: &str) -> String {
    format!(
        "The first operand must be distinct from the remaining operands for this operator or function; operator: {operator}, first operand: {path}"
    )
}

/// A BETWEEN whose constant bounds are in the wrong order.
pub fn between_bounds(lower: &str, upper: &str) -> String {
    format!(
        "The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {lower}, upper bound operand: AttributeValue: {upper}"
    )
}

/// An IN with more than 100 operands on its right.
pub fn in_too_many_operands(count: usize) -> String {
    format!("The IN operator is provided with too many operands; number of operands: {count}")
}

/// An update expression with a section keyword (SET, REMOVE, ADD, DELETE) used twice.
pub fn section_repeated(section: &str) -> String {
    format!("The \"{section}\" section can only be used once in an update expression;")
}

/// Two paths of one expression where one is a prefix of the other.
pub fn paths_overlap(first: &str, second: &str) -> String {
    format!(
        "Two document paths overlap with each other; must remove or rewrite one of these paths; path one: {first}, path two: {second}"
    )
}

/// Two paths of one expression that treat the same attribute as a map and as a list.
pub fn paths_conflict(first: &str, second: &str) -> String {
    format!(
        "Two document paths conflict with each other; must remove or rewrite one of these paths; path one: {first}, path two: {second}"
    )
}

/// An ExpressionAttributeValues value of a type ADD or DELETE does not accept.
pub fn update_operand_type(operator: &str, type_name: &str) -> String {
    format!(
        "Incorrect operand type for operator or function; operator: {operator}, operand type: {type_name}, typeSet: ALLOWED_FOR_{operator}_OPERAND"
    )
}

// Update evaluation.
/// An update whose operand has the wrong type for its operation at evaluation time.
pub const UPDATE_OPERAND_TYPE: &str =
    "An operand in the update expression has an incorrect data type";
/// A SET or REMOVE through a missing or non-container parent.
pub const UPDATE_PATH_INVALID: &str =
    "The document path provided in the update expression is invalid for update";
/// A SET whose right side reads a missing attribute.
pub const UPDATE_MISSING_ATTRIBUTE: &str =
    "The provided expression refers to an attribute that does not exist in the item";

// Key conditions.
/// A key condition operator that queries do not allow.
pub fn key_condition_invalid_operator(operator: &str) -> String {
    format!("Invalid operator used in KeyConditionExpression: {operator}")
}

/// A key condition without the partition key.
pub fn key_condition_missing_key(name: &str) -> String {
    format!("Query condition missed key schema element: {name}")
}

/// A key condition on an attribute outside the key, or an unsupported form.
pub const KEY_CONDITION_NOT_SUPPORTED: &str = "Query key condition not supported";
/// Two conditions on one key attribute.
pub const KEY_CONDITION_ONE_PER_KEY: &str =
    "KeyConditionExpressions must only contain one condition per key";
/// A key condition value whose type differs from the key's type.
pub const KEY_CONDITION_TYPE_MISMATCH: &str = "One or more parameter values were invalid: Condition parameter type does not match schema type";

// Legacy parameters.
/// A legacy parameter used together with its expression replacement.
pub fn legacy_with_expression(legacy: &str, expression: &str) -> String {
    format!(
        "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {{{legacy}}} Expression parameters: {{{expression}}}"
    )
}

/// A legacy comparison with the wrong count of values.
pub fn legacy_wrong_argument_count(operator: &str) -> String {
    format!(
        "One or more parameter values were invalid: Invalid number of argument(s) for the {operator} ComparisonOperator"
    )
}

/// A legacy comparison operator given a value of a type it does not accept.
pub fn legacy_wrong_argument_type(operator: &str) -> String {
    format!(
        "One or more parameter values were invalid: ComparisonOperator {operator} is not valid for the given AttributeValue type"
    )
}

/// An unknown legacy comparison operator.
pub fn legacy_unknown_operator(operator: &str) -> String {
    format!(
        "1 validation error detected: Value '{operator}' at 'comparisonOperator' failed to satisfy constraint: Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"
    )
}

/// Expected with `Exists: false` and a Value.
pub const LEGACY_EXISTS_FALSE_WITH_VALUE: &str =
    "One or more parameter values were invalid: Value cannot be used when Exists is false";
/// Expected with `Exists: true` and no Value.
pub const LEGACY_EXISTS_TRUE_WITHOUT_VALUE: &str =
    "One or more parameter values were invalid: Value must be provided when Exists is true";
/// Expected with both Value and ComparisonOperator forms mixed.
/// An Expected entry with both Value and AttributeValueList.
pub fn legacy_value_and_value_list(name: &str) -> String {
    format!(
        "One or more parameter values were invalid: Value and AttributeValueList cannot be used together for Attribute: {name}"
    )
}

/// An Expected entry with AttributeValueList but no ComparisonOperator.
pub fn legacy_value_list_without_operator(name: &str) -> String {
    format!(
        "One or more parameter values were invalid: AttributeValueList can only be used with a ComparisonOperator for Attribute: {name}"
    )
}

/// An Expected entry with both Exists and ComparisonOperator.
pub fn legacy_exists_with_operator(name: &str) -> String {
    format!(
        "One or more parameter values were invalid: Exists and ComparisonOperator cannot be used together for Attribute: {name}"
    )
}

/// An Expected entry whose ComparisonOperator takes arguments and has none.
pub fn legacy_operator_without_arguments(operator: &str, name: &str) -> String {
    format!(
        "One or more parameter values were invalid: Value or AttributeValueList must be used with ComparisonOperator: {operator} for Attribute: {name}"
    )
}

/// IN or BETWEEN with AttributeValueList members of different types.
pub const LEGACY_VALUES_OF_DIFFERENT_TYPES: &str = "One or more parameter values were invalid: AttributeValues inside AttributeValueList must be of same type";

/// A legacy BETWEEN whose bounds are in the wrong order.
pub const LEGACY_BETWEEN_BOUNDS: &str = "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound";

/// ConditionalOperator with no Expected or filter to combine, or with only one entry.
pub const LEGACY_CONDITIONAL_OPERATOR_ALONE: &str =
    "ConditionalOperator can only be used when Filter or Expected has two or more elements";
/// AttributeUpdates with an ADD of a type other than number or set.
pub const LEGACY_ADD_TYPE: &str =
    "One or more parameter values were invalid: Action ADD is not supported for the type ";
/// AttributeUpdates PUT without a value.
pub const LEGACY_PUT_WITHOUT_VALUE: &str = "One or more parameter values were invalid: Only DELETE action is allowed when no attribute value is specified";
/// AttributesToGet with a repeated name.
pub fn legacy_duplicate_attributes_to_get(name: &str) -> String {
    format!("One or more parameter values were invalid: Duplicate value in attribute name: {name}")
}

/// A ReturnValues value outside the enum.
pub fn return_values_invalid(value: &str) -> String {
    format!(
        "1 validation error detected: Value '{value}' at 'returnValues' failed to satisfy constraint: Member must satisfy enum value set: [ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]"
    )
}

/// AttributeUpdates DELETE with a value that is not a set.
pub fn legacy_delete_type(type_name: &str) -> String {
    format!(
        "One or more parameter values were invalid: DELETE action with value is not supported for the type {type_name}"
    )
}

/// An AttributeUpdates Action outside the enum.
pub fn legacy_unknown_action(action: &str) -> String {
    format!(
        "1 validation error detected: Value '{action}' at 'attributeUpdates.action' failed to satisfy constraint: Member must satisfy enum value set: [ADD, PUT, DELETE]"
    )
}

/// A ConditionalOperator outside the enum.
pub fn legacy_unknown_conditional_operator(operator: &str) -> String {
    format!(
        "1 validation error detected: Value '{operator}' at 'conditionalOperator' failed to satisfy constraint: Member must satisfy enum value set: [OR, AND]"
    )
}

/// KeyConditions with an operator a key range cannot serve.
pub const LEGACY_KEY_CONDITION_NOT_INDEXABLE: &str =
    "Attempted conditional constraint is not an indexable operation";

/// AttributesToGet given as an empty list.
pub const LEGACY_ATTRIBUTES_TO_GET_EMPTY: &str = "1 validation error detected: Value '[]' at 'attributesToGet' failed to satisfy constraint: Member must have length greater than or equal to 1";

// Select and indexes.
/// Query reports its Select rules inside the envelope of a constraint violation, Scan without
/// it: a moto test module marked `aws_verified` (run against DynamoDB) records both.
pub fn query_select_violation(message: &str) -> String {
    format!("1 validation error detected: {message}")
}

/// `Select` other than SPECIFIC_ATTRIBUTES with ProjectionExpression or AttributesToGet
/// (`parameter`). COUNT is worded "only the Count".
pub fn select_excludes_attributes(parameter: &str, select: &str) -> String {
    let choice = if select == "COUNT" {
        "only the Count"
    } else {
        select
    };
    format!("Cannot specify the {parameter} when choosing to get {choice}")
}

/// `Select: SPECIFIC_ATTRIBUTES` without ProjectionExpression or AttributesToGet.
pub const SELECT_SPECIFIC_WITHOUT_ATTRIBUTES: &str = "Must specify the AttributesToGet or ProjectionExpression when choosing to get SPECIFIC_ATTRIBUTES";

/// `Select: ALL_PROJECTED_ATTRIBUTES` without IndexName (Scan's text says Querying too).
pub const SELECT_ALL_PROJECTED_WITHOUT_INDEX: &str =
    "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName";

/// An IndexName the table does not have.
pub fn index_not_found(name: &str) -> String {
    format!("The table does not have the specified index: {name}")
}

// Parallel scan.
/// TotalSegments may be 1 to this.
pub const TOTAL_SEGMENTS_MAX: u64 = 1_000_000;

/// Checks a Scan's `Segment` and `TotalSegments` in DynamoDB's order (the members' ranges,
/// then both or neither, then `Segment < TotalSegments`): `Ok(Some((segment, total)))` for a
/// parallel scan, `Ok(None)` for a whole-table scan, or DynamoDB's message.
pub fn scan_segment(
    segment: Option<u64>,
    total: Option<u64>,
) -> Result<Option<(u64, u64)>, String> {
    let mut problems = Vec::new();
    if let Some(total) = total {
        if total < 1 {
            problems.push(format!("Value '{total}' at 'totalSegments' failed to satisfy constraint: Member must have value greater than or equal to 1"));
        } else if total > TOTAL_SEGMENTS_MAX {
            problems.push(format!("Value '{total}' at 'totalSegments' failed to satisfy constraint: Member must have value less than or equal to {TOTAL_SEGMENTS_MAX}"));
        }
    }
    if let Some(segment) = segment
        && segment > TOTAL_SEGMENTS_MAX - 1
    {
        problems.push(format!(
            "Value '{segment}' at 'segment' failed to satisfy constraint: Member must have value less than or equal to {}",
            TOTAL_SEGMENTS_MAX - 1
        ));
    }
    if !problems.is_empty() {
        let noun = if problems.len() == 1 {
            "error"
        } else {
            "errors"
        };
        return Err(format!(
            "{} validation {noun} detected: {}",
            problems.len(),
            problems.join("; ")
        ));
    }
    match (segment, total) {
        (None, None) => Ok(None),
        (Some(_), None) => Err("The TotalSegments parameter is required but was not present in the request when Segment parameter is present".to_string()),
        (None, Some(_)) => Err("The Segment parameter is required but was not present in the request when parameter TotalSegments is present".to_string()),
        (Some(segment), Some(total)) if segment >= total => Err(format!(
            "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: {segment} is not less than TotalSegments: {total}"
        )),
        (Some(segment), Some(total)) => Ok(Some((segment, total))),
    }
}

#[cfg(test)]
mod scan_segment_tests {
    use super::scan_segment;

    #[test]
    fn scan_segment_checks_in_dynamodb_order() {
        assert_eq!(scan_segment(None, None), Ok(None));
        assert_eq!(scan_segment(Some(3), Some(4)), Ok(Some((3, 4))));
        assert_eq!(
            scan_segment(Some(4), Some(4)).unwrap_err(),
            "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: 4 is not less than TotalSegments: 4"
        );
        assert!(
            scan_segment(Some(0), None)
                .unwrap_err()
                .starts_with("The TotalSegments parameter is required")
        );
        assert!(
            scan_segment(None, Some(2))
                .unwrap_err()
                .starts_with("The Segment parameter is required")
        );
        assert_eq!(
            scan_segment(Some(0), Some(1_000_001)).unwrap_err(),
            "1 validation error detected: Value '1000001' at 'totalSegments' failed to satisfy constraint: Member must have value less than or equal to 1000000"
        );
        assert!(
            scan_segment(Some(0), Some(0))
                .unwrap_err()
                .contains("greater than or equal to 1")
        );
    }
}
