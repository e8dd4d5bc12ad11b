"""PutItem, GetItem and DeleteItem: the item model round trip and key validation."""

from conftest import expect_error, unique_name

ALL_TYPES = {
    "pk": {"S": "all-types"},
    "s": {"S": "héllo wörld"},
    "empty_s": {"S": ""},
    "n": {"N": "-12.5"},
    "b": {"B": b"\x00\x01\xff"},
    "t": {"BOOL": True},
    "f": {"BOOL": False},
    "z": {"NULL": True},
    "l": {"L": [{"S": "a"}, {"N": "1"}, {"L": []}, {"M": {}}]},
    "m": {"M": {"inner": {"M": {"deep": {"S": "x"}}}, "list": {"L": [{"BOOL": False}]}}},
    "ss": {"SS": ["b", "a", "c"]},
    "ns": {"NS": ["3", "1", "2.5"]},
    "bs": {"BS": [b"\x01", b"\x02"]},
}


def normalise(item):
    """Sets come back in any order: compare them as sets."""
    out = {}
    for name, value in item.items():
        (kind, inner), = value.items()
        if kind in ("SS", "NS", "BS"):
            out[name] = {kind: sorted(inner)}
        elif kind == "M":
            out[name] = {"M": normalise(inner)}
        else:
            out[name] = value
    return out


def test_every_type_round_trips(ddb, table):
    ddb.put_item(TableName=table, Item=ALL_TYPES)
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "all-types"}}, ConsistentRead=True)
    assert normalise(got["Item"]) == normalise(ALL_TYPES)


def test_get_of_a_missing_item_has_no_item_member(ddb, table):
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "nothing"}})
    assert "Item" not in got


def test_put_replaces_the_whole_item(ddb, table):
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "a": {"N": "1"}, "b": {"N": "2"}})
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "c": {"N": "3"}})
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "k"}}, ConsistentRead=True)
    assert got["Item"] == {"pk": {"S": "k"}, "c": {"N": "3"}}


def test_delete_removes_and_deleting_a_missing_item_succeeds(ddb, table):
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}})
    ddb.delete_item(TableName=table, Key={"pk": {"S": "k"}})
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "k"}}, ConsistentRead=True)
    # DynamoDB's DeleteItem is idempotent: a missing item is not an error.
    response = ddb.delete_item(TableName=table, Key={"pk": {"S": "k"}})
    assert "Attributes" not in response


def test_numeric_and_binary_partition_keys(ddb, make_table):
    numbers = make_table(hash_key=("id", "N"))
    ddb.put_item(TableName=numbers, Item={"id": {"N": "42"}, "v": {"S": "n"}})
    # 42 and 42.0 are the same number, so the same key.
    got = ddb.get_item(TableName=numbers, Key={"id": {"N": "42.0"}}, ConsistentRead=True)
    assert got["Item"]["v"] == {"S": "n"}
    binary = make_table(hash_key=("id", "B"))
    ddb.put_item(TableName=binary, Item={"id": {"B": b"\x00k"}, "v": {"S": "b"}})
    got = ddb.get_item(TableName=binary, Key={"id": {"B": b"\x00k"}}, ConsistentRead=True)
    assert got["Item"]["v"] == {"S": "b"}


def test_put_without_the_key_is_refused(ddb, table):
    expect_error(
        lambda: ddb.put_item(TableName=table, Item={"other": {"S": "x"}}),
        "ValidationException",
        "One or more parameter values were invalid: Missing the key pk in the item",
    )


def test_put_with_a_key_of_the_wrong_type_is_refused(ddb, table):
    expect_error(
        lambda: ddb.put_item(TableName=table, Item={"pk": {"N": "1"}}),
        "ValidationException",
        "One or more parameter values were invalid: Type mismatch for key pk expected: S actual: N",
    )


def test_get_with_a_key_not_matching_the_schema_is_refused(ddb, sorted_table):
    message = "The provided key element does not match the schema"
    # Wrong type.
    expect_error(lambda: ddb.get_item(TableName=sorted_table, Key={"pk": {"N": "1"}, "sk": {"N": "1"}}),
                 "ValidationException", message)
    # Missing the sort key.
    expect_error(lambda: ddb.get_item(TableName=sorted_table, Key={"pk": {"S": "a"}}),
                 "ValidationException", message)
    # An attribute that is not part of the key.
    expect_error(
        lambda: ddb.get_item(TableName=sorted_table,
                             Key={"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"S": "y"}}),
        "ValidationException", message)


def test_empty_string_key_is_refused_but_empty_non_key_string_is_stored(ddb, table):
    expect_error(
        lambda: ddb.put_item(TableName=table, Item={"pk": {"S": ""}}),
        "ValidationException",
        "One or more parameter values are not valid. The AttributeValue for a key attribute "
        "cannot contain an empty string value. Key: pk",
    )
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "e": {"S": ""}, "eb": {"B": b""}})
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "k"}}, ConsistentRead=True)
    assert got["Item"]["e"] == {"S": ""}
    assert got["Item"]["eb"] == {"B": b""}


def test_empty_and_duplicate_sets_are_refused(ddb, table):
    expect_error(
        lambda: ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "s": {"SS": []}}),
        "ValidationException",
        "One or more parameter values were invalid: An string set  may not be empty",
    )
    expect_error(
        lambda: ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "s": {"SS": ["a", "a"]}}),
        "ValidationException",
        contains="contains duplicates",
    )
    # 1 and 1.0 are the same number: a duplicate in a number set.
    expect_error(
        lambda: ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "s": {"NS": ["1", "1.0"]}}),
        "ValidationException",
        contains="contains duplicates",
    )


def test_null_false_is_refused(ddb, table):
    expect_error(
        lambda: ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "z": {"NULL": False}}),
        "ValidationException",
        "One or more parameter values were invalid: Null attribute value types must have the value of true",
    )


def test_attribute_value_with_two_types_is_refused(ddb, table):
    expect_error(
        lambda: ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "x": {"S": "a", "N": "1"}}),
        "ValidationException",
        "Supplied AttributeValue has more than one datatypes set, must contain exactly one of "
        "the supported datatypes",
    )


def test_operations_on_a_missing_table(ddb):
    name = unique_name("missing")
    for call in (
        lambda: ddb.put_item(TableName=name, Item={"pk": {"S": "k"}}),
        lambda: ddb.get_item(TableName=name, Key={"pk": {"S": "k"}}),
        lambda: ddb.delete_item(TableName=name, Key={"pk": {"S": "k"}}),
        lambda: ddb.update_item(TableName=name, Key={"pk": {"S": "k"}}),
    ):
        expect_error(call, "ResourceNotFoundException", "Requested resource not found")


def test_invalid_table_name_is_a_validation_error(ddb):
    expect_error(
        lambda: ddb.get_item(TableName="a!", Key={"pk": {"S": "k"}}),
        "ValidationException",
        contains="Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
    )


def test_items_are_isolated_between_tables(ddb, make_table):
    first, second = make_table(), make_table()
    ddb.put_item(TableName=first, Item={"pk": {"S": "same"}, "from": {"S": "first"}})
    assert "Item" not in ddb.get_item(TableName=second, Key={"pk": {"S": "same"}},
                                      ConsistentRead=True)


def test_resource_api_round_trips_python_types(resource, table):
    from decimal import Decimal

    handle = resource.Table(table)
    handle.put_item(Item={"pk": "r", "n": Decimal("3.14"), "tags": {"x", "y"}, "doc": {"a": [1, "b"]}})
    item = handle.get_item(Key={"pk": "r"}, ConsistentRead=True)["Item"]
    assert item == {"pk": "r", "n": Decimal("3.14"), "tags": {"x", "y"}, "doc": {"a": [Decimal(1), "b"]}}
