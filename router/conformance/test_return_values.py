"""ReturnValues on PutItem, UpdateItem and DeleteItem, and
ReturnValuesOnConditionCheckFailure."""

import pytest

from conftest import expect_error

KEY = {"pk": {"S": "k"}}
OLD = {"pk": {"S": "k"}, "a": {"N": "1"}, "b": {"S": "keep"}}


@pytest.fixture
def seeded(ddb, table):
    ddb.put_item(TableName=table, Item=OLD)
    return table


def test_put_all_old(ddb, seeded):
    response = ddb.put_item(TableName=seeded, Item={"pk": {"S": "k"}}, ReturnValues="ALL_OLD")
    assert response["Attributes"] == OLD
    # Nothing was there before a new item.
    response = ddb.put_item(TableName=seeded, Item={"pk": {"S": "new"}}, ReturnValues="ALL_OLD")
    assert "Attributes" not in response


def test_put_none_returns_nothing(ddb, seeded):
    assert "Attributes" not in ddb.put_item(TableName=seeded, Item=OLD, ReturnValues="NONE")


@pytest.mark.parametrize("value", ["ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"])
def test_put_accepts_only_none_and_all_old(ddb, seeded, value):
    expect_error(lambda: ddb.put_item(TableName=seeded, Item=OLD, ReturnValues=value),
                 "ValidationException", "Return values set to invalid value")


def test_delete_all_old(ddb, seeded):
    assert ddb.delete_item(TableName=seeded, Key=KEY, ReturnValues="ALL_OLD")["Attributes"] == OLD
    expect_error(lambda: ddb.delete_item(TableName=seeded, Key=KEY, ReturnValues="ALL_NEW"),
                 "ValidationException", "Return values set to invalid value")


@pytest.mark.parametrize("value, expected", [
    ("NONE", None),
    ("ALL_OLD", OLD),
    ("ALL_NEW", {"pk": {"S": "k"}, "a": {"N": "2"}, "b": {"S": "keep"}, "c": {"S": "new"}}),
    ("UPDATED_OLD", {"a": {"N": "1"}}),
    ("UPDATED_NEW", {"a": {"N": "2"}, "c": {"S": "new"}}),
])
def test_update_return_values(ddb, seeded, value, expected):
    response = ddb.update_item(TableName=seeded, Key=KEY, ReturnValues=value,
                               UpdateExpression="SET a = a + :one, c = :c",
                               ExpressionAttributeValues={":one": {"N": "1"}, ":c": {"S": "new"}})
    assert response.get("Attributes") == expected


def test_updated_old_of_a_removed_attribute(ddb, seeded):
    response = ddb.update_item(TableName=seeded, Key=KEY, ReturnValues="UPDATED_OLD",
                               UpdateExpression="REMOVE b")
    assert response["Attributes"] == {"b": {"S": "keep"}}


def test_invalid_return_values_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.update_item(TableName=seeded, Key=KEY, ReturnValues="EVERYTHING"),
        "ValidationException",
        "1 validation error detected: Value 'EVERYTHING' at 'returnValues' failed to satisfy "
        "constraint: Member must satisfy enum value set: [ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]")


@pytest.mark.parametrize("operation", ["put", "update", "delete"])
def test_return_values_on_condition_check_failure_all_old(ddb, seeded, operation):
    common = dict(TableName=seeded, ConditionExpression="a = :two",
                  ExpressionAttributeValues={":two": {"N": "2"}},
                  ReturnValuesOnConditionCheckFailure="ALL_OLD")
    calls = {
        "put": lambda: ddb.put_item(Item={"pk": {"S": "k"}}, **common),
        "update": lambda: ddb.update_item(Key=KEY, UpdateExpression="REMOVE b", **common),
        "delete": lambda: ddb.delete_item(Key=KEY, **common),
    }
    response = expect_error(calls[operation], "ConditionalCheckFailedException",
                            "The conditional request failed")
    assert response["Item"] == OLD


def test_return_values_on_condition_check_failure_none_has_no_item(ddb, seeded):
    response = expect_error(
        lambda: ddb.delete_item(TableName=seeded, Key=KEY, ConditionExpression="attribute_not_exists(a)",
                                ReturnValuesOnConditionCheckFailure="NONE"),
        "ConditionalCheckFailedException")
    assert "Item" not in response


def test_return_values_on_condition_check_failure_of_a_missing_item(ddb, table):
    response = expect_error(
        lambda: ddb.delete_item(TableName=table, Key=KEY, ConditionExpression="attribute_exists(pk)",
                                ReturnValuesOnConditionCheckFailure="ALL_OLD"),
        "ConditionalCheckFailedException")
    assert "Item" not in response


def test_invalid_return_values_on_condition_check_failure_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.delete_item(TableName=seeded, Key=KEY, ReturnValuesOnConditionCheckFailure="ALL_NEW"),
        "ValidationException",
        contains="at 'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member "
                 "must satisfy enum value set: [ALL_OLD, NONE]")
