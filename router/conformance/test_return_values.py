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


# UpdateItem on an item that does not exist. SET and ADD create it, and so does an update with
# no action at all (the key alone); an update made only of REMOVE and DELETE actions leaves it
# missing, and then no ReturnValues setting returns Attributes. ScyllaDB's
# test/alternator/test_item.py (test_update_item_non_existent) and test_returnvalues.py
# (test_update_item_returnvalues_all_new, _updated_new, _all_old), run against AWS with --aws.
MISSING = {"pk": {"S": "missing"}}
ALL_RETURN_VALUES = ["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"]


def get_missing(ddb, table):
    return ddb.get_item(TableName=table, Key=MISSING, ConsistentRead=True).get("Item")


@pytest.mark.parametrize("value", ALL_RETURN_VALUES)
@pytest.mark.parametrize("expression, values", [
    ("REMOVE a", None),
    ("REMOVE a, b.c, d[3]", None),
    ("DELETE s :s", {":s": {"SS": ["x"]}}),
    ("REMOVE a DELETE s :s", {":s": {"NS": ["1"]}}),
])
def test_remove_and_delete_do_not_create_a_missing_item(ddb, table, value, expression, values):
    params = dict(TableName=table, Key=MISSING, UpdateExpression=expression, ReturnValues=value)
    if values:
        params["ExpressionAttributeValues"] = values
    assert "Attributes" not in ddb.update_item(**params)
    assert get_missing(ddb, table) is None


def test_attribute_updates_delete_does_not_create_a_missing_item(ddb, table):
    response = ddb.update_item(TableName=table, Key=MISSING, ReturnValues="ALL_NEW",
                               AttributeUpdates={"a": {"Action": "DELETE"},
                                                 "s": {"Action": "DELETE", "Value": {"SS": ["x"]}}})
    assert "Attributes" not in response
    assert get_missing(ddb, table) is None


@pytest.mark.parametrize("value, expected", [
    ("NONE", None),
    ("ALL_OLD", None),
    ("UPDATED_OLD", None),
    ("ALL_NEW", {"pk": {"S": "missing"}, "n": {"N": "2"}, "s": {"SS": ["x"]}}),
    # Key attributes are never updated, so UPDATED_NEW leaves them out of a created item.
    ("UPDATED_NEW", {"n": {"N": "2"}, "s": {"SS": ["x"]}}),
])
def test_add_creates_a_missing_item(ddb, table, value, expected):
    response = ddb.update_item(TableName=table, Key=MISSING, ReturnValues=value,
                               UpdateExpression="ADD n :two, s :s REMOVE gone",
                               ExpressionAttributeValues={":two": {"N": "2"}, ":s": {"SS": ["x"]}})
    assert response.get("Attributes") == expected
    assert get_missing(ddb, table) == {"pk": {"S": "missing"}, "n": {"N": "2"}, "s": {"SS": ["x"]}}


@pytest.mark.parametrize("value, expected", [
    ("ALL_OLD", None),
    ("UPDATED_OLD", None),
    ("ALL_NEW", {"pk": {"S": "missing"}, "v": {"S": "new"}}),
    ("UPDATED_NEW", {"v": {"S": "new"}}),
])
def test_set_creates_a_missing_item(ddb, table, value, expected):
    response = ddb.update_item(TableName=table, Key=MISSING, ReturnValues=value,
                               UpdateExpression="SET v = :v REMOVE gone DELETE s :s",
                               ExpressionAttributeValues={":v": {"S": "new"}, ":s": {"SS": ["x"]}})
    assert response.get("Attributes") == expected
    assert get_missing(ddb, table) == {"pk": {"S": "missing"}, "v": {"S": "new"}}


@pytest.mark.parametrize("value, expected", [
    ("ALL_OLD", None),
    ("UPDATED_OLD", None),
    ("ALL_NEW", {"pk": {"S": "missing"}}),
    ("UPDATED_NEW", None),
])
def test_empty_attribute_updates_create_the_key_alone(ddb, table, value, expected):
    response = ddb.update_item(TableName=table, Key=MISSING, ReturnValues=value,
                               AttributeUpdates={})
    assert response.get("Attributes") == expected
    assert get_missing(ddb, table) == {"pk": {"S": "missing"}}


def test_remove_on_an_existing_item_keeps_the_key(ddb, seeded):
    # The item exists, so removing its last non-key attributes leaves the key (ALL_NEW) and
    # UPDATED_NEW has nothing to return. Same sources.
    response = ddb.update_item(TableName=seeded, Key=KEY, ReturnValues="ALL_NEW",
                               UpdateExpression="REMOVE a, b")
    assert response["Attributes"] == {"pk": {"S": "k"}}
    response = ddb.update_item(TableName=seeded, Key=KEY, ReturnValues="UPDATED_NEW",
                               UpdateExpression="REMOVE a, b")
    assert "Attributes" not in response
    assert ddb.get_item(TableName=seeded, Key=KEY, ConsistentRead=True)["Item"] == KEY
