"""KeyConditionExpression: the sort key operators, and what a key condition may not say."""

import pytest

from conftest import expect_error


# Every test here only reads: one table of each sort key type serves the module.
@pytest.fixture(scope="module")
def numbers(ddb, make_module_table):
    name = make_module_table(sort=("sk", "N"))
    requests = [{"PutRequest": {"Item": {"pk": {"S": "p"}, "sk": {"N": str(i)}}}} for i in range(-3, 7)]
    ddb.batch_write_item(RequestItems={name: requests})
    return name


@pytest.fixture(scope="module")
def strings(ddb, make_module_table):
    name = make_module_table(sort=("sk", "S"))
    requests = [{"PutRequest": {"Item": {"pk": {"S": "p"}, "sk": {"S": s}}}}
                for s in ["a", "ab", "abc", "b", "ba", "B"]]
    ddb.batch_write_item(RequestItems={name: requests})
    return name


def sort_keys(ddb, table, condition, values, kind="N"):
    response = ddb.query(TableName=table, KeyConditionExpression=condition,
                         ExpressionAttributeValues={":p": {"S": "p"}, **values}, ConsistentRead=True)
    return [item["sk"][kind] for item in response["Items"]]


@pytest.mark.parametrize("condition, values, expected", [
    ("pk = :p", {}, ["-3", "-2", "-1", "0", "1", "2", "3", "4", "5", "6"]),
    ("pk = :p AND sk = :v", {":v": {"N": "2"}}, ["2"]),
    ("pk = :p AND sk < :v", {":v": {"N": "-1"}}, ["-3", "-2"]),
    ("pk = :p AND sk <= :v", {":v": {"N": "-1"}}, ["-3", "-2", "-1"]),
    ("pk = :p AND sk > :v", {":v": {"N": "4.5"}}, ["5", "6"]),
    ("pk = :p AND sk >= :v", {":v": {"N": "5"}}, ["5", "6"]),
    ("pk = :p AND sk BETWEEN :a AND :b", {":a": {"N": "0"}, ":b": {"N": "2"}}, ["0", "1", "2"]),
    ("sk = :v AND pk = :p", {":v": {"N": "0"}}, ["0"]),
    ("(pk = :p) AND (sk = :v)", {":v": {"N": "1"}}, ["1"]),
    # The key may be on either side of a comparison.
    (":p = pk AND :v <= sk", {":v": {"N": "5"}}, ["5", "6"]),
])
def test_number_sort_key_operators(ddb, numbers, condition, values, expected):
    assert sort_keys(ddb, numbers, condition, values) == expected


def test_string_sort_keys_order_by_bytes_and_begins_with(ddb, strings):
    assert sort_keys(ddb, strings, "pk = :p", {}, "S") == ["B", "a", "ab", "abc", "b", "ba"]
    assert sort_keys(ddb, strings, "pk = :p AND begins_with(sk, :s)", {":s": {"S": "ab"}}, "S") == ["ab", "abc"]


def test_begins_with_on_a_number_sort_key_is_refused(ddb, numbers):
    expect_error(
        lambda: sort_keys(ddb, numbers, "pk = :p AND begins_with(sk, :v)", {":v": {"N": "1"}}),
        "ValidationException",
        contains="Invalid KeyConditionExpression: Incorrect operand type for operator or function; "
                 "operator or function: begins_with, operand type: N")


def test_missing_partition_key_condition_is_refused(ddb, numbers):
    expect_error(
        lambda: ddb.query(TableName=numbers, KeyConditionExpression="sk = :v",
                          ExpressionAttributeValues={":v": {"N": "1"}}),
        "ValidationException", "Query condition missed key schema element: pk")


def test_non_key_attribute_is_refused(ddb, numbers):
    expect_error(
        lambda: ddb.query(TableName=numbers, KeyConditionExpression="pk = :p AND extra = :v",
                          ExpressionAttributeValues={":p": {"S": "p"}, ":v": {"N": "1"}}),
        "ValidationException", "Query condition missed key schema element: sk")


def test_or_is_refused(ddb, numbers):
    expect_error(
        lambda: ddb.query(TableName=numbers, KeyConditionExpression="pk = :p OR sk = :v",
                          ExpressionAttributeValues={":p": {"S": "p"}, ":v": {"N": "1"}}),
        "ValidationException", "Invalid operator used in KeyConditionExpression: OR")


def test_partition_key_range_is_refused(ddb, numbers):
    expect_error(
        lambda: ddb.query(TableName=numbers, KeyConditionExpression="pk > :p",
                          ExpressionAttributeValues={":p": {"S": "p"}}),
        "ValidationException", "Query key condition not supported")


def test_two_conditions_on_the_sort_key_are_refused(ddb, numbers):
    expect_error(
        lambda: ddb.query(TableName=numbers, KeyConditionExpression="pk = :p AND sk > :a AND sk < :b",
                          ExpressionAttributeValues={":p": {"S": "p"}, ":a": {"N": "1"}, ":b": {"N": "3"}}),
        "ValidationException",
        "KeyConditionExpressions must only contain one condition per key")


def test_value_of_the_wrong_type_is_refused(ddb, numbers):
    expect_error(
        lambda: sort_keys(ddb, numbers, "pk = :p AND sk = :v", {":v": {"S": "1"}}),
        "ValidationException",
        "One or more parameter values were invalid: Condition parameter type does not match schema type")


def test_neither_key_condition_parameter_is_refused(ddb, numbers):
    expect_error(
        lambda: ddb.query(TableName=numbers),
        "ValidationException",
        "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.")
