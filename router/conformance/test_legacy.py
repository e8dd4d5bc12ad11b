"""The legacy (pre-expression) parameters: AttributesToGet, Expected, ConditionalOperator,
KeyConditions, QueryFilter, ScanFilter, AttributeUpdates, and the rule that they cannot be
mixed with expressions."""

import pytest

from conftest import expect_error

KEY = {"pk": {"S": "k"}}


@pytest.fixture
def seeded(ddb, table):
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "n": {"N": "5"}, "s": {"S": "abc"},
                                        "tags": {"SS": ["a", "b"]}})
    return table


def test_attributes_to_get(ddb, seeded):
    got = ddb.get_item(TableName=seeded, Key=KEY, AttributesToGet=["n", "absent"], ConsistentRead=True)
    assert got["Item"] == {"n": {"N": "5"}}


def test_expected_exists_false_and_value(ddb, seeded):
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             Expected={"pk": {"Exists": False}}),
        "ConditionalCheckFailedException", "The conditional request failed")
    ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}, "n": {"N": "6"}},
                 Expected={"n": {"Value": {"N": "5"}}})
    got = ddb.get_item(TableName=seeded, Key=KEY, ConsistentRead=True)
    assert got["Item"]["n"] == {"N": "6"}


def test_expected_comparison_operators_and_conditional_operator(ddb, seeded):
    ddb.delete_item(
        TableName=seeded, Key=KEY,
        Expected={"n": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "100"}]},
                  "s": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [{"S": "ab"}]}},
        ConditionalOperator="OR")
    assert "Item" not in ddb.get_item(TableName=seeded, Key=KEY, ConsistentRead=True)


def test_expected_exists_false_with_a_value_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             Expected={"n": {"Exists": False, "Value": {"N": "5"}}}),
        "ValidationException",
        "One or more parameter values were invalid: Value cannot be used when Exists is false")


def test_wrong_number_of_arguments_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             Expected={"n": {"ComparisonOperator": "BETWEEN",
                                             "AttributeValueList": [{"N": "1"}]}}),
        "ValidationException",
        "One or more parameter values were invalid: Invalid number of argument(s) for the "
        "BETWEEN ComparisonOperator")


def test_attribute_updates(ddb, seeded):
    response = ddb.update_item(
        TableName=seeded, Key=KEY, ReturnValues="ALL_NEW",
        AttributeUpdates={
            "n": {"Action": "ADD", "Value": {"N": "10"}},
            "tags": {"Action": "DELETE", "Value": {"SS": ["a"]}},
            "s": {"Action": "DELETE"},
            "new": {"Action": "PUT", "Value": {"BOOL": True}},
        })
    assert response["Attributes"] == {"pk": {"S": "k"}, "n": {"N": "15"}, "tags": {"SS": ["b"]},
                                      "new": {"BOOL": True}}


def test_key_conditions_and_query_filter(ddb, sorted_table):
    for i in range(5):
        ddb.put_item(TableName=sorted_table, Item={"pk": {"S": "p"}, "sk": {"N": str(i)},
                                                   "odd": {"BOOL": i % 2 == 1}})
    response = ddb.query(
        TableName=sorted_table, ConsistentRead=True,
        KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]},
                       "sk": {"ComparisonOperator": "GE", "AttributeValueList": [{"N": "1"}]}},
        QueryFilter={"odd": {"ComparisonOperator": "EQ", "AttributeValueList": [{"BOOL": True}]}})
    assert [item["sk"]["N"] for item in response["Items"]] == ["1", "3"]
    assert response["ScannedCount"] == 4


def test_scan_filter(ddb, seeded):
    response = ddb.scan(TableName=seeded, ConsistentRead=True,
                        ScanFilter={"tags": {"ComparisonOperator": "CONTAINS",
                                             "AttributeValueList": [{"S": "b"}]}})
    assert [item["pk"] for item in response["Items"]] == [{"S": "k"}]


def test_unknown_comparison_operator_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.scan(TableName=seeded, ScanFilter={
            "n": {"ComparisonOperator": "LIKE", "AttributeValueList": [{"N": "1"}]}}),
        "ValidationException",
        contains="Value 'LIKE' at")


def test_mixing_legacy_and_expression_parameters_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.get_item(TableName=seeded, Key=KEY, AttributesToGet=["n"],
                             ProjectionExpression="s"),
        "ValidationException",
        "Can not use both expression and non-expression parameters in the same request: "
        "Non-expression parameters: {AttributesToGet} Expression parameters: {ProjectionExpression}")


def test_expression_attribute_values_without_expressions_are_refused(ddb, seeded):
    expect_error(
        lambda: ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}},
                             ExpressionAttributeValues={":v": {"N": "1"}}),
        "ValidationException",
        "ExpressionAttributeValues can only be specified when using expressions")


# One Expected entry's checks, DynamoDB's messages in its order. Source: dynalite's
# test/deleteItem.js (dynalite's README: "tested against [the live DynamoDB instances] in
# various regions, including all limits and error messages"); ScyllaDB's test_expected.py (run
# with --aws) for Value standing in for a one-element AttributeValueList.
INVALID = "One or more parameter values were invalid: "


@pytest.mark.parametrize("entry, message", [
    ({"ComparisonOperator": "LT"},
     INVALID + "Value or AttributeValueList must be used with ComparisonOperator: LT for Attribute: n"),
    ({"Exists": True, "ComparisonOperator": "LT", "AttributeValueList": [{"N": "1"}]},
     INVALID + "Exists and ComparisonOperator cannot be used together for Attribute: n"),
    ({"Exists": False, "ComparisonOperator": "NULL"},
     INVALID + "Exists and ComparisonOperator cannot be used together for Attribute: n"),
    ({"AttributeValueList": [{"N": "1"}]},
     INVALID + "AttributeValueList can only be used with a ComparisonOperator for Attribute: n"),
    ({"Exists": True, "AttributeValueList": []},
     INVALID + "AttributeValueList can only be used with a ComparisonOperator for Attribute: n"),
    ({"Value": {"N": "5"}, "AttributeValueList": [{"N": "5"}], "ComparisonOperator": "EQ"},
     INVALID + "Value and AttributeValueList cannot be used together for Attribute: n"),
    ({"Value": {"N": "5"}, "ComparisonOperator": "BETWEEN"},
     INVALID + "Invalid number of argument(s) for the BETWEEN ComparisonOperator"),
    ({"Value": {"N": "5"}, "ComparisonOperator": "NULL"},
     INVALID + "Invalid number of argument(s) for the NULL ComparisonOperator"),
    ({"ComparisonOperator": "IN", "AttributeValueList": []},
     INVALID + "Invalid number of argument(s) for the IN ComparisonOperator"),
    ({"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "1"}, {"N": "2"}, {"N": "3"}]},
     INVALID + "Invalid number of argument(s) for the BETWEEN ComparisonOperator"),
    ({"ComparisonOperator": "IN", "AttributeValueList": [{"N": "5"}, {"S": "5"}]},
     INVALID + "AttributeValues inside AttributeValueList must be of same type"),
    ({"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "1"}, {"S": "9"}]},
     INVALID + "AttributeValues inside AttributeValueList must be of same type"),
    ({"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "9"}, {"N": "1"}]},
     "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound"),
    ({"ComparisonOperator": "eq", "AttributeValueList": [{"N": "5"}]},
     "1 validation error detected: Value 'eq' at 'comparisonOperator' failed to satisfy constraint: "
     "Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, "
     "NE, LE, BEGINS_WITH, GE, CONTAINS]"),
], ids=lambda value: str(value)[:50])
def test_expected_entry_is_validated(ddb, seeded, entry, message):
    expect_error(lambda: ddb.delete_item(TableName=seeded, Key=KEY, Expected={"n": entry}),
                 "ValidationException", message)
    assert "Item" in ddb.get_item(TableName=seeded, Key=KEY, ConsistentRead=True)


def test_value_stands_for_a_one_element_list(ddb, seeded):
    ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}, "n": {"N": "6"}},
                 Expected={"n": {"Value": {"N": "5"}, "ComparisonOperator": "EQ"}})
    expect_error(lambda: ddb.delete_item(TableName=seeded, Key=KEY,
                                         Expected={"n": {"Value": {"N": "7"},
                                                         "ComparisonOperator": "GE"}}),
                 "ConditionalCheckFailedException")


def test_empty_expected_is_no_condition(ddb, seeded):
    # test_expected.py, test_update_expected_empty.
    ddb.update_item(TableName=seeded, Key=KEY, Expected={},
                    AttributeUpdates={"z": {"Action": "PUT", "Value": {"N": "3"}}})
    assert ddb.get_item(TableName=seeded, Key=KEY, ConsistentRead=True)["Item"]["z"] == {"N": "3"}


CONDITIONAL_OPERATOR_ALONE = ("ConditionalOperator can only be used when Filter or Expected has "
                              "two or more elements")


@pytest.mark.parametrize("extra", [
    {},
    {"Expected": {}},
    {"Expected": {"n": {"Exists": True, "Value": {"N": "5"}}}},
], ids=["no Expected", "empty Expected", "one entry"])
def test_conditional_operator_needs_two_entries(ddb, seeded, extra):
    # test_expected.py (test_update_expected_empty) refuses it with an empty Expected; the
    # message is the one DynamoDB gives for a single entry too.
    expect_error(lambda: ddb.delete_item(TableName=seeded, Key=KEY, ConditionalOperator="OR",
                                         **extra),
                 "ValidationException", CONDITIONAL_OPERATOR_ALONE)


def test_conditional_operator_without_a_filter_is_refused(ddb, sorted_table):
    expect_error(
        lambda: ddb.query(TableName=sorted_table, ConditionalOperator="AND", KeyConditions={
            "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]}}),
        "ValidationException", CONDITIONAL_OPERATOR_ALONE)


@pytest.mark.parametrize("operator, values, message", [
    ("eq", [{"S": "p"}],
     "1 validation error detected: Value 'eq' at 'comparisonOperator' failed to satisfy "
     "constraint: Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, "
     "GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"),
    # dynalite's test/query.js: operators that cannot use the key.
    ("NE", [{"S": "p"}], "Attempted conditional constraint is not an indexable operation"),
    ("IN", [{"S": "p"}], "Attempted conditional constraint is not an indexable operation"),
    ("NOT_NULL", [], "Attempted conditional constraint is not an indexable operation"),
    ("CONTAINS", [{"S": "p"}], "Attempted conditional constraint is not an indexable operation"),
])
def test_key_conditions_operators(ddb, sorted_table, operator, values, message):
    condition = {"ComparisonOperator": operator}
    if values:
        condition["AttributeValueList"] = values
    expect_error(lambda: ddb.query(TableName=sorted_table, KeyConditions={"pk": condition}),
                 "ValidationException", message)


def test_query_filter_in_over_mixed_types_is_refused(ddb, sorted_table):
    expect_error(
        lambda: ddb.query(
            TableName=sorted_table,
            KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]}},
            QueryFilter={"v": {"ComparisonOperator": "IN",
                               "AttributeValueList": [{"N": "1"}, {"S": "1"}]}}),
        "ValidationException", INVALID + "AttributeValues inside AttributeValueList must be of same type")


def test_attributes_to_get_applies_after_the_filter(ddb, sorted_table):
    # The filter reads attributes that AttributesToGet leaves out of the result.
    for i in range(4):
        ddb.put_item(TableName=sorted_table, Item={"pk": {"S": "p"}, "sk": {"N": str(i)},
                                                   "v": {"N": str(i)}, "w": {"S": f"w{i}"}})
    response = ddb.query(
        TableName=sorted_table, ConsistentRead=True, AttributesToGet=["w"],
        KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]}},
        QueryFilter={"v": {"ComparisonOperator": "GE", "AttributeValueList": [{"N": "2"}]}})
    assert response["Items"] == [{"w": {"S": "w2"}}, {"w": {"S": "w3"}}]
    assert (response["Count"], response["ScannedCount"]) == (2, 4)
    response = ddb.scan(TableName=sorted_table, ConsistentRead=True, AttributesToGet=["sk"],
                        ScanFilter={"w": {"ComparisonOperator": "EQ",
                                          "AttributeValueList": [{"S": "w1"}]}})
    assert response["Items"] == [{"sk": {"N": "1"}}]


@pytest.mark.parametrize("operation, params, legacy, expression", [
    ("query", dict(KeyConditions={"pk": {"ComparisonOperator": "EQ",
                                         "AttributeValueList": [{"S": "p"}]}},
                   ProjectionExpression="v"),
     "KeyConditions", "ProjectionExpression"),
    ("query", dict(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}},
                   QueryFilter={"v": {"ComparisonOperator": "NOT_NULL"}}),
     "QueryFilter", "KeyConditionExpression"),
    ("query", dict(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}},
                   AttributesToGet=["v"]),
     "AttributesToGet", "KeyConditionExpression"),
    ("scan", dict(ScanFilter={"v": {"ComparisonOperator": "NOT_NULL"}}, ProjectionExpression="v"),
     "ScanFilter", "ProjectionExpression"),
    ("scan", dict(AttributesToGet=["v"], FilterExpression="attribute_exists(v)"),
     "AttributesToGet", "FilterExpression"),
    ("delete_item", dict(Key={"pk": {"S": "p"}, "sk": {"N": "1"}}, ConditionalOperator="OR",
                         ConditionExpression="attribute_exists(v)"),
     "ConditionalOperator", "ConditionExpression"),
], ids=lambda value: str(value)[:30])
def test_any_legacy_parameter_with_any_expression_is_refused(ddb, sorted_table, operation, params,
                                                              legacy, expression):
    # "DynamoDB does not allow mixing legacy conditional parameters and expression parameters
    # in a single call. For example, calling the Query operation with AttributesToGet and
    # ConditionExpression will result in an error." (Developer Guide, Legacy conditional
    # parameters.)
    expect_error(lambda: getattr(ddb, operation)(TableName=sorted_table, **params),
                 "ValidationException",
                 "Can not use both expression and non-expression parameters in the same request: "
                 f"Non-expression parameters: {{{legacy}}} Expression parameters: {{{expression}}}")
