"""ConditionExpression on PutItem, UpdateItem and DeleteItem: functions, comparators, logic
and the expression validation messages."""

import pytest

from conftest import expect_error

FAILED = "The conditional request failed"


SEED = {
        "pk": {"S": "k"},
        "n": {"N": "10"},
        "s": {"S": "prefix-body"},
        "tags": {"SS": ["red", "blue"]},
        "doc": {"M": {"lst": {"L": [{"N": "1"}, {"S": "two"}]}, "flag": {"BOOL": True}}},
        "nothing": {"NULL": True},
}


@pytest.fixture
def seeded(ddb, table):
    ddb.put_item(TableName=table, Item=SEED)
    return table


@pytest.fixture(scope="module")
def shared(ddb, make_module_table):
    """One seeded table for the parametrized evaluation cases: `holds` writes only `probe`,
    which no case reads."""
    name = make_module_table()
    ddb.put_item(TableName=name, Item=SEED)
    return name


def holds(ddb, table, condition, values=None, names=None):
    """Whether `condition` holds on item k: a conditional no-op update either succeeds or
    fails with ConditionalCheckFailedException."""
    params = dict(TableName=table, Key={"pk": {"S": "k"}}, ConditionExpression=condition,
                  UpdateExpression="SET probe = :probe")
    params["ExpressionAttributeValues"] = {":probe": {"S": "p"}, **(values or {})}
    if names:
        params["ExpressionAttributeNames"] = names
    try:
        ddb.update_item(**params)
        return True
    except ddb.exceptions.ConditionalCheckFailedException as error:
        assert error.response["Error"]["Message"] == FAILED
        return False


@pytest.mark.parametrize("condition, values, expected", [
    ("n = :v", {":v": {"N": "10"}}, True),
    ("n = :v", {":v": {"N": "10.000"}}, True),
    ("n <> :v", {":v": {"N": "10"}}, False),
    ("n < :v", {":v": {"N": "11"}}, True),
    ("n <= :v", {":v": {"N": "9"}}, False),
    ("n > :v", {":v": {"N": "-1"}}, True),
    ("n >= :v", {":v": {"N": "10"}}, True),
    ("n BETWEEN :a AND :b", {":a": {"N": "1"}, ":b": {"N": "10"}}, True),
    ("n IN (:a, :b)", {":a": {"N": "3"}, ":b": {"N": "10"}}, True),
    ("n IN (:a, :b)", {":a": {"N": "3"}, ":b": {"N": "4"}}, False),
    # Comparing different types is false, not an error.
    ("n = :v", {":v": {"S": "10"}}, False),
    ("n < :v", {":v": {"S": "z"}}, False),
    ("begins_with(s, :p)", {":p": {"S": "prefix"}}, True),
    ("begins_with(s, :p)", {":p": {"S": "body"}}, False),
    ("contains(s, :p)", {":p": {"S": "x-b"}}, True),
    ("contains(tags, :p)", {":p": {"S": "red"}}, True),
    ("contains(tags, :p)", {":p": {"S": "green"}}, False),
    ("contains(doc.lst, :p)", {":p": {"S": "two"}}, True),
    ("size(s) = :v", {":v": {"N": "11"}}, True),
    ("size(tags) = :v", {":v": {"N": "2"}}, True),
    ("size(doc.lst) > :v", {":v": {"N": "1"}}, True),
    ("attribute_type(n, :t)", {":t": {"S": "N"}}, True),
    ("attribute_type(nothing, :t)", {":t": {"S": "NULL"}}, True),
    ("attribute_type(doc, :t)", {":t": {"S": "L"}}, False),
    ("doc.lst[1] = :v", {":v": {"S": "two"}}, True),
    ("doc.flag = :v", {":v": {"BOOL": True}}, True),
    ("n = :v AND s = :s", {":v": {"N": "10"}, ":s": {"S": "nope"}}, False),
    ("n = :v OR s = :s", {":v": {"N": "10"}, ":s": {"S": "nope"}}, True),
    ("NOT (n = :v)", {":v": {"N": "10"}}, False),
    ("NOT n = :v OR n = :v", {":v": {"N": "10"}}, True),
], ids=lambda value: str(value)[:40])
def test_condition_evaluation(ddb, shared, condition, values, expected):
    assert holds(ddb, shared, condition, values) is expected


@pytest.mark.parametrize("condition, expected", [
    ("attribute_exists(n)", True),
    ("attribute_exists(absent)", False),
    ("attribute_not_exists(absent)", True),
    ("attribute_exists(doc.lst[0])", True),
    ("attribute_exists(doc.lst[5])", False),
    ("attribute_exists(nothing)", True),
])
def test_existence_functions(ddb, shared, condition, expected):
    assert holds(ddb, shared, condition) is expected


def test_attribute_not_exists_makes_put_create_only(ddb, table):
    item = {"pk": {"S": "once"}, "v": {"N": "1"}}
    ddb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    expect_error(
        lambda: ddb.put_item(TableName=table, Item={"pk": {"S": "once"}, "v": {"N": "2"}},
                             ConditionExpression="attribute_not_exists(pk)"),
        "ConditionalCheckFailedException", FAILED)
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "once"}}, ConsistentRead=True)
    assert got["Item"]["v"] == {"N": "1"}


def test_condition_on_a_missing_item_sees_no_attributes(ddb, table):
    expect_error(
        lambda: ddb.delete_item(TableName=table, Key={"pk": {"S": "ghost"}},
                                ConditionExpression="attribute_exists(pk)"),
        "ConditionalCheckFailedException", FAILED)
    # The failed update must not have created the item.
    expect_error(
        lambda: ddb.update_item(TableName=table, Key={"pk": {"S": "ghost"}},
                                UpdateExpression="SET v = :v",
                                ConditionExpression="attribute_exists(pk)",
                                ExpressionAttributeValues={":v": {"N": "1"}}),
        "ConditionalCheckFailedException", FAILED)
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "ghost"}},
                                      ConsistentRead=True)


def test_conditional_delete(ddb, seeded):
    expect_error(
        lambda: ddb.delete_item(TableName=seeded, Key={"pk": {"S": "k"}},
                                ConditionExpression="n > :v",
                                ExpressionAttributeValues={":v": {"N": "100"}}),
        "ConditionalCheckFailedException", FAILED)
    ddb.delete_item(TableName=seeded, Key={"pk": {"S": "k"}}, ConditionExpression="n < :v",
                    ExpressionAttributeValues={":v": {"N": "100"}})
    assert "Item" not in ddb.get_item(TableName=seeded, Key={"pk": {"S": "k"}},
                                      ConsistentRead=True)


def test_expression_attribute_names_substitute_reserved_words(ddb, seeded):
    ddb.update_item(TableName=seeded, Key={"pk": {"S": "k"}}, UpdateExpression="SET #s = :v",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":v": {"S": "on"}})
    assert holds(ddb, seeded, "#s = :v", {":v": {"S": "on"}}, {"#s": "status"})


def test_reserved_word_without_a_name_placeholder_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             ConditionExpression="attribute_exists(status)"),
        "ValidationException",
        "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: status")


def test_undefined_value_placeholder_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             ConditionExpression="n = :missing"),
        "ValidationException",
        "Invalid ConditionExpression: An expression attribute value used in expression is not "
        "defined; attribute value: :missing")


def test_undefined_name_placeholder_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             ConditionExpression="attribute_exists(#missing)"),
        "ValidationException",
        "Invalid ConditionExpression: An expression attribute name used in the document path is "
        "not defined; attribute name: #missing")


def test_unused_placeholders_are_refused(ddb, seeded):
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             ConditionExpression="attribute_exists(n)",
                             ExpressionAttributeValues={":unused": {"N": "1"}}),
        "ValidationException",
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:unused}")
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             ConditionExpression="attribute_exists(n)",
                             ExpressionAttributeNames={"#unused": "x"}),
        "ValidationException",
        "Value provided in ExpressionAttributeNames unused in expressions: keys: {#unused}")


def test_syntax_errors_are_refused(ddb, seeded):
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             ConditionExpression="n = = :v",
                             ExpressionAttributeValues={":v": {"N": "1"}}),
        "ValidationException", contains="Invalid ConditionExpression: Syntax error; token:")
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             ConditionExpression="no_such_function(n)"),
        "ValidationException",
        "Invalid ConditionExpression: Invalid function name; function: no_such_function")


def test_between_with_reversed_bounds_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             ConditionExpression="n BETWEEN :hi AND :lo",
                             ExpressionAttributeValues={":hi": {"N": "9"}, ":lo": {"N": "1"}}),
        "ValidationException",
        contains="The BETWEEN operator requires upper bound to be greater than or equal to lower bound")


def test_empty_expression_attribute_values_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             ConditionExpression="attribute_exists(n)",
                             ExpressionAttributeValues={}),
        "ValidationException", "ExpressionAttributeValues must not be empty")


# What DynamoDB refuses before it reads the item, with its messages. Sources: dynalite's
# test/scan.js and test/deleteItem.js (a suite its README says runs against DynamoDB itself;
# the FilterExpression cases there are the same checks as ConditionExpression's), and ScyllaDB's
# test/alternator/test_condition_expression.py (run against AWS with --aws), which shows that a
# constant of a type the operator cannot order is a ValidationException while the same type
# read from the item only makes the condition false.
def operand_type(operator, type_name):
    return ("Invalid ConditionExpression: Incorrect operand type for operator or function; "
            f"operator or function: {operator}, operand type: {type_name}")


def not_distinct(operator, path):
    return ("Invalid ConditionExpression: The first operand must be distinct from the remaining "
            f"operands for this operator or function; operator: {operator}, first operand: {path}")


def misused(function):
    return ("Invalid ConditionExpression: The function is not allowed to be used this way in an "
            f"expression; function: {function}")


@pytest.mark.parametrize("condition, values, message", [
    ("n < :v", {":v": {"BOOL": True}}, operand_type("<", "BOOL")),
    ("n <= :v", {":v": {"L": [{"N": "1"}]}}, operand_type("<=", "L")),
    (":v > n", {":v": {"M": {}}}, operand_type(">", "M")),
    ("n >= :v", {":v": {"NULL": True}}, operand_type(">=", "NULL")),
    ("n BETWEEN :a AND :b", {":a": {"NS": ["1"]}, ":b": {"NS": ["2"]}}, operand_type("BETWEEN", "NS")),
    ("n BETWEEN :a AND :b", {":a": {"N": "1"}, ":b": {"S": "a"}},
     "Invalid ConditionExpression: The BETWEEN operator requires same data type for lower and "
     "upper bounds; lower bound operand: AttributeValue: {N:1}, upper bound operand: "
     "AttributeValue: {S:a}"),
    ("begins_with(s, size(tags))", None, operand_type("begins_with", "N")),
    ("begins_with(:v, s)", {":v": {"SS": ["a"]}}, operand_type("begins_with", "SS")),
    ("attribute_type(s, size(tags))", None, operand_type("attribute_type", "N")),
    ("size(size(s)) > n", None, operand_type("size", "N")),
    ("size(:v) > n", {":v": {"N": "1"}}, operand_type("size", "N")),
    ("size(:v) > n", {":v": {"BOOL": False}}, operand_type("size", "BOOL")),
    ("attribute_not_exists(size(:v))", {":v": {"S": "1"}},
     "Invalid ConditionExpression: Operator or function requires a document path; operator or "
     "function: attribute_not_exists"),
    ("n = n", None, not_distinct("=", "[n]")),
    ("s = :v AND doc.lst[1] <> #d.lst[1]", {":v": {"S": "x"}}, not_distinct("<>", "[doc, lst, [1]]")),
    ("contains(doc.lst, doc.lst)", None, not_distinct("contains", "[doc, lst]")),
    ("begins_with(s, s)", None, not_distinct("begins_with", "[s]")),
    ("attribute_type(s, s)", None, not_distinct("attribute_type", "[s]")),
    ("attribute_not_exists(n) > s", None, misused("attribute_not_exists")),
    ("contains(:v, s) = s", {":v": {"S": "x"}}, misused("contains")),
    ("size(contains(s, n)) > n", None, misused("contains")),
    ("n BETWEEN s AND attribute_exists(s)", None, misused("attribute_exists")),
    ("size(s)", None, misused("size")),
    # Reserved words are refused before undefined placeholders, wherever they stand.
    (":missing < abort", None,
     "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: abort"),
], ids=lambda value: str(value)[:40])
def test_refused_before_the_item_is_read(ddb, shared, condition, values, message):
    params = dict(TableName=shared, Key={"pk": {"S": "k"}}, ConditionExpression=condition)
    if values:
        params["ExpressionAttributeValues"] = values
    if "#d" in condition:
        params["ExpressionAttributeNames"] = {"#d": "doc"}
    expect_error(lambda: ddb.delete_item(**params), "ValidationException", message)
    assert ddb.get_item(TableName=shared, Key={"pk": {"S": "k"}}, ConsistentRead=True)["Item"]


@pytest.mark.parametrize("condition", [
    "size(s).b > n", "size(s)[0] > n", "n > between", "n IN (s, )", "n = :v.b",
    "attribute_exists(s[x])", "attribute_exists(s..b)",
])
def test_more_syntax_errors(ddb, shared, condition):
    # dynalite's test/scan.js, "should return ValidationException for syntax errors".
    params = dict(TableName=shared, Key={"pk": {"S": "k"}}, ConditionExpression=condition)
    if ":v" in condition:
        params["ExpressionAttributeValues"] = {":v": {"S": "x"}}
    expect_error(lambda: ddb.delete_item(**params), "ValidationException",
                 contains="Invalid ConditionExpression: Syntax error; ")


@pytest.mark.parametrize("condition, values, expected", [
    # The same types read from the item only make the condition false.
    ("doc.lst < n", None, False),
    ("n BETWEEN doc.flag AND doc.lst", None, False),
    ("begins_with(n, s)", None, False),
    # Constants DynamoDB accepts where its documentation names paths: size(:v) and
    # attribute_type(:v, :t) (test_condition_expression.py, test_update_condition_attribute_type).
    ("size(:v) = size(s)", {":v": {"S": "eleven-char"}}, True),
    ("size(:v) = :n", {":v": {"SS": ["a", "b"]}, ":n": {"N": "2"}}, True),
    ("attribute_type(:v, :t)", {":v": {"N": "0"}, ":t": {"S": "N"}}, True),
    ("attribute_type(:v, :t)", {":v": {"N": "0"}, ":t": {"S": "S"}}, False),
    # begins_with works both ways round and between two paths.
    ("begins_with(:v, s)", {":v": {"S": "prefix-body-and-more"}}, True),
], ids=lambda value: str(value)[:40])
def test_accepted_operands(ddb, shared, condition, values, expected):
    assert holds(ddb, shared, condition, values) is expected


def test_unknown_type_name_in_attribute_type(ddb, shared):
    # dynalite's test/scan.js: "Invalid attribute type name found; type: 1, valid types:
    # {((B|NULL|SS|BOOL|L|BS|N|NS|S|M),?){10}}$" (the ten names in braces, no spaces).
    import re
    response = expect_error(
        lambda: ddb.delete_item(TableName=shared, Key={"pk": {"S": "k"}},
                                ConditionExpression="attribute_type(n, :t)",
                                ExpressionAttributeValues={":t": {"S": "1"}}),
        "ValidationException")
    assert re.fullmatch(r"Invalid ConditionExpression: Invalid attribute type name found; type: 1, "
                        r"valid types: \{((B|NULL|SS|BOOL|L|BS|N|NS|S|M),?){10}\}",
                        response["Error"]["Message"])
