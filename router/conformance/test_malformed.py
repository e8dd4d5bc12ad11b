"""Malformed input: SerializationException (the JSON does not fit the operation's shape)
versus ValidationException (it fits, and a value breaks a rule), and empty batches."""

import pytest

from conftest import expect_error

EMPTY = "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"


def call(raw, operation, payload):
    response = raw.call(operation, payload)
    assert response.status == 400, response.body
    return response.error_type, response.json().get("message")


# Members that name no type are ignored, as DynamoDB's JSON reader ignores unknown members, so
# an AttributeValue of only unknown members is empty (a ValidationException) and one with a
# type beside them is that type. dynalite's test/putItem.js and test/batchWriteItem.js ("should
# return ValidationException for unsupported datatype in Item": {}, {a: ''}, {M: {a: {}}},
# {L: [{}]}); its README: tested against the live DynamoDB instances, messages included.
@pytest.mark.parametrize("value", [
    {}, {"a": ""}, {"X": "1"}, {"M": {"a": {}}}, {"L": [{}]}, {"L": [{"a": {}}]},
], ids=str)
def test_attribute_value_of_no_known_type_is_empty(raw, table, value):
    assert call(raw, "PutItem", {"TableName": table, "Item": {"pk": {"S": "k"}, "a": value}}) == (
        "ValidationException", EMPTY)
    assert call(raw, "BatchWriteItem", {"RequestItems": {table: [
        {"PutRequest": {"Item": {"pk": {"S": "k"}, "a": value}}}]}}) == ("ValidationException", EMPTY)


def test_unknown_members_beside_a_type_are_ignored(raw, ddb, table):
    response = raw.call("PutItem", {"TableName": table,
                                    "Item": {"pk": {"S": "k"}, "a": {"S": "v", "Unknown": 1}}})
    assert response.status == 200, response.body
    item = ddb.get_item(TableName=table, Key={"pk": {"S": "k"}}, ConsistentRead=True)["Item"]
    assert item == {"pk": {"S": "k"}, "a": {"S": "v"}}


# A member of the wrong JSON type is a SerializationException (dynalite's assertType cases:
# "should return SerializationException when TableName is not a string", "... Item is not a
# map", "... Item.Attr.S is not a string" and so on, in test/putItem.js and test/getItem.js).
@pytest.mark.parametrize("operation, payload", [
    ("PutItem", {"TableName": 5, "Item": {"pk": {"S": "k"}}}),
    ("PutItem", {"Item": []}),
    ("PutItem", {"Item": {"pk": {"S": "k"}, "a": {"S": 5}}}),
    ("PutItem", {"Item": {"pk": {"S": "k"}, "a": {"N": 5}}}),
    ("PutItem", {"Item": {"pk": {"S": "k"}, "a": {"BOOL": "true"}}}),
    ("PutItem", {"Item": {"pk": {"S": "k"}, "a": {"L": {}}}}),
    ("PutItem", {"Item": {"pk": {"S": "k"}, "a": {"M": []}}}),
    ("PutItem", {"Item": {"pk": {"S": "k"}, "a": {"SS": "x"}}}),
    ("PutItem", {"Item": {"pk": "k"}}),
    ("GetItem", {"Key": ["pk"]}),
    ("GetItem", {"Key": {"pk": {"S": "k"}}, "ConsistentRead": "yes"}),
    ("Scan", {"Limit": "5"}),
], ids=lambda value: str(value)[:40])
def test_wrong_json_types_are_serialization_errors(raw, table, operation, payload):
    payload = {"TableName": table, **payload}
    error_type, _ = call(raw, operation, payload)
    assert error_type == "SerializationException"


# An empty RequestItems breaks the map's length constraint. Public suites run against DynamoDB
# match "failed to satisfy constraint: Member must have length greater than or equal to 1"; they
# spell the member 'RequestItems' or 'requestItems', so only the constraint is checked here.
@pytest.mark.parametrize("operation", ["BatchGetItem", "BatchWriteItem"])
def test_empty_request_items_are_refused(ddb, operation):
    call_operation = {"BatchGetItem": ddb.batch_get_item, "BatchWriteItem": ddb.batch_write_item}
    expect_error(lambda: call_operation[operation](RequestItems={}), "ValidationException",
                 contains="failed to satisfy constraint: Member must have length greater than or "
                          "equal to 1")
