"""Numbers: 38 significant digits, magnitudes 1E-130 to 1E+126 (exclusive), exact decimal
arithmetic and normalised text."""

import uuid

import pytest

from conftest import expect_error

KEY = {"pk": {"S": "k"}}


@pytest.fixture(scope="module")
def shared(make_module_table):
    """One table for the round-trip cases; each writes its own key."""
    return make_module_table()


def round_trip(ddb, table, text):
    key = {"pk": {"S": uuid.uuid4().hex}}
    ddb.put_item(TableName=table, Item={**key, "n": {"N": text}})
    return ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]["n"]["N"]


@pytest.mark.parametrize("text", [
    "12345678901234567890123456789012345678",
    "-0.12345678901234567890123456789012345678",
    "9.9999999999999999999999999999999999999E+125",
    "1E-130",
    "-1E-130",
    "0",
])
def test_representable_numbers_are_kept_exactly(ddb, shared, text):
    from decimal import Decimal

    assert Decimal(round_trip(ddb, shared, text)) == Decimal(text)


@pytest.mark.parametrize("text, normal", [
    ("1.50", "1.5"), ("007", "7"), ("-0", "0"), ("1e3", "1000"), ("0.000", "0"),
])
def test_numbers_come_back_normalised(ddb, shared, text, normal):
    assert round_trip(ddb, shared, text) == normal


def test_more_than_38_significant_digits_is_refused(ddb, shared):
    expect_error(lambda: round_trip(ddb, shared, "1234567890123456789012345678901234567891"),
                 "ValidationException",
                 "Attempting to store more than 38 significant digits in a Number")


def test_overflow_is_refused(ddb, shared):
    expect_error(lambda: round_trip(ddb, shared, "1E+126"), "ValidationException",
                 "Number overflow. Attempting to store a number with magnitude larger than supported range")


def test_underflow_is_refused(ddb, shared):
    expect_error(lambda: round_trip(ddb, shared, "1E-131"), "ValidationException",
                 "Number underflow. Attempting to store a number with magnitude smaller than supported range")


@pytest.mark.parametrize("text", ["abc", "1..2", "", "NaN", "Infinity", "0x10"])
def test_text_that_is_not_a_number_is_refused(ddb, shared, text):
    expect_error(lambda: round_trip(ddb, shared, text), "ValidationException",
                 contains="The parameter cannot be converted to a numeric value")


def test_addition_is_exact_decimal(ddb, table):
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "n": {"N": "0.1"}})
    response = ddb.update_item(TableName=table, Key=KEY, UpdateExpression="SET n = n + :v",
                               ExpressionAttributeValues={":v": {"N": "0.2"}}, ReturnValues="UPDATED_NEW")
    assert response["Attributes"]["n"] == {"N": "0.3"}


def test_arithmetic_overflow_is_refused(ddb, table):
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "n": {"N": "9E+125"}})
    expect_error(
        lambda: ddb.update_item(TableName=table, Key=KEY, UpdateExpression="SET n = n + :v",
                                ExpressionAttributeValues={":v": {"N": "9E+125"}}),
        "ValidationException",
        "Number overflow. Attempting to store a number with magnitude larger than supported range")


def test_numbers_compare_numerically(ddb, table):
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "n": {"N": "10"}})
    # As text "9" > "10"; as numbers it is not.
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "n": {"N": "11"}},
                 ConditionExpression="n > :v", ExpressionAttributeValues={":v": {"N": "9"}})
