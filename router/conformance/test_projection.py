"""ProjectionExpression on GetItem, Query, Scan and BatchGetItem."""

import pytest

from conftest import expect_error


# Every test here only reads: one table serves the module.
@pytest.fixture(scope="module")
def seeded(ddb, make_module_table):
    sorted_table = make_module_table(sort=("sk", "N"))
    ddb.put_item(TableName=sorted_table, Item={
        "pk": {"S": "p"}, "sk": {"N": "1"},
        "a": {"S": "A"}, "b": {"N": "2"},
        "doc": {"M": {"x": {"S": "X"}, "y": {"S": "Y"}, "lst": {"L": [{"N": "0"}, {"N": "1"}, {"N": "2"}]}}},
    })
    return sorted_table


KEY = {"pk": {"S": "p"}, "sk": {"N": "1"}}


def get(ddb, table, projection, names=None):
    params = dict(TableName=table, Key=KEY, ProjectionExpression=projection, ConsistentRead=True)
    if names:
        params["ExpressionAttributeNames"] = names
    return ddb.get_item(**params)["Item"]


def test_top_level_attributes(ddb, seeded):
    # Keys are returned only when projected.
    assert get(ddb, seeded, "a, b") == {"a": {"S": "A"}, "b": {"N": "2"}}


def test_missing_attributes_are_omitted(ddb, seeded):
    assert get(ddb, seeded, "a, nope") == {"a": {"S": "A"}}


def test_nested_paths_keep_their_structure(ddb, seeded):
    assert get(ddb, seeded, "doc.x, doc.lst[2], doc.lst[0]") == {
        "doc": {"M": {"x": {"S": "X"}, "lst": {"L": [{"N": "0"}, {"N": "2"}]}}}
    }


def test_names_placeholders(ddb, seeded):
    assert get(ddb, seeded, "#d.#y", {"#d": "doc", "#y": "y"}) == {"doc": {"M": {"y": {"S": "Y"}}}}


def test_projection_of_nothing_present_gives_an_empty_item(ddb, seeded):
    response = ddb.get_item(TableName=seeded, Key=KEY, ProjectionExpression="nope",
                            ConsistentRead=True)
    assert response["Item"] == {}


def test_reserved_word_is_refused(ddb, seeded):
    expect_error(lambda: get(ddb, seeded, "name"), "ValidationException",
                 "Invalid ProjectionExpression: Attribute name is a reserved keyword; reserved keyword: name")


def test_overlapping_paths_are_refused(ddb, seeded):
    expect_error(lambda: get(ddb, seeded, "doc, doc.x"), "ValidationException",
                 contains="Invalid ProjectionExpression: Two document paths overlap with each other")


def test_query_and_scan_project(ddb, seeded):
    query = ddb.query(TableName=seeded, KeyConditionExpression="pk = :p",
                      ExpressionAttributeValues={":p": {"S": "p"}}, ProjectionExpression="sk, a")
    assert query["Items"] == [{"sk": {"N": "1"}, "a": {"S": "A"}}]
    scan = ddb.scan(TableName=seeded, ProjectionExpression="b")
    assert scan["Items"] == [{"b": {"N": "2"}}]


def test_batch_get_projects(ddb, seeded):
    response = ddb.batch_get_item(RequestItems={seeded: {
        "Keys": [KEY], "ProjectionExpression": "#a", "ExpressionAttributeNames": {"#a": "a"}}})
    assert response["Responses"][seeded] == [{"a": {"S": "A"}}]


@pytest.fixture(scope="module")
def listed(ddb, make_module_table):
    table = make_module_table(sort=("sk", "N"))
    ddb.put_item(TableName=table, Item={
        "pk": {"S": "p"}, "sk": {"N": "1"},
        "a": {"L": [{"S": "a0"}, {"S": "a1"}, {"S": "a2"}]},
        "m": {"M": {"b": {"L": [{"M": {"c": {"N": "7"}, "d": {"N": "8"}}}, {"M": {"c": {"N": "9"}}}]}}},
    })
    return table


# List indexes in projections keep the item's structure, the selected elements in index
# order, on every read (Developer Guide, "Projection expressions": "Description,
# RelatedItems[0], ProductReviews.FiveStar"; Document paths: list elements by index).
@pytest.mark.parametrize("projection, expected", [
    ("a[2]", {"a": {"L": [{"S": "a2"}]}}),
    ("a[2], a[0]", {"a": {"L": [{"S": "a0"}, {"S": "a2"}]}}),
    ("m.b[0].c", {"m": {"M": {"b": {"L": [{"M": {"c": {"N": "7"}}}]}}}}),
    ("m.b[1].c, m.b[0].d", {"m": {"M": {"b": {"L": [{"M": {"d": {"N": "8"}}}, {"M": {"c": {"N": "9"}}}]}}}}),
    ("a[7], m.b[5].c", {}),
])
def test_list_indexes_on_every_read(ddb, listed, projection, expected):
    key = {"pk": {"S": "p"}, "sk": {"N": "1"}}
    got = ddb.get_item(TableName=listed, Key=key, ProjectionExpression=projection, ConsistentRead=True)
    assert got["Item"] == expected
    queried = ddb.query(TableName=listed, KeyConditionExpression="pk = :p",
                        ExpressionAttributeValues={":p": {"S": "p"}}, ProjectionExpression=projection,
                        ConsistentRead=True)
    assert queried["Items"] == [expected]
    scanned = ddb.scan(TableName=listed, ProjectionExpression=projection, ConsistentRead=True)
    assert scanned["Items"] == [expected]
    batch = ddb.batch_get_item(RequestItems={listed: {"Keys": [key], "ProjectionExpression": projection,
                                                      "ConsistentRead": True}})
    assert batch["Responses"][listed] == [expected]
