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
