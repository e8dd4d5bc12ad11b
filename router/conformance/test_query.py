"""Query: order, Limit and pagination, Select, ConsistentRead and parameter checks."""

import pytest

from conftest import batch_write_admitted, expect_error

COUNT = 25


# Every test here only reads: one table serves the module.
@pytest.fixture(scope="module")
def seeded(ddb, make_module_table):
    sorted_table = make_module_table(sort=("sk", "N"))
    for start in range(0, COUNT, 25):
        ddb.batch_write_item(RequestItems={sorted_table: [
            {"PutRequest": {"Item": {"pk": {"S": "p"}, "sk": {"N": str(i)}, "v": {"S": f"v{i}"}}}}
            for i in range(start, min(COUNT, start + 25))]})
    ddb.put_item(TableName=sorted_table, Item={"pk": {"S": "other"}, "sk": {"N": "0"}})
    return sorted_table


def query(ddb, table, **extra):
    return ddb.query(TableName=table, KeyConditionExpression="pk = :p",
                     ExpressionAttributeValues={":p": {"S": "p"}}, ConsistentRead=True, **extra)


def test_results_are_in_sort_key_order(ddb, seeded):
    response = query(ddb, seeded)
    assert [int(item["sk"]["N"]) for item in response["Items"]] == list(range(COUNT))
    assert response["Count"] == COUNT == response["ScannedCount"]
    assert "LastEvaluatedKey" not in response


def test_scan_index_forward_false_reverses(ddb, seeded):
    response = query(ddb, seeded, ScanIndexForward=False, Limit=3)
    assert [item["sk"]["N"] for item in response["Items"]] == ["24", "23", "22"]
    assert response["LastEvaluatedKey"] == {"pk": {"S": "p"}, "sk": {"N": "22"}}
    following = query(ddb, seeded, ScanIndexForward=False, Limit=3,
                      ExclusiveStartKey=response["LastEvaluatedKey"])
    assert [item["sk"]["N"] for item in following["Items"]] == ["21", "20", "19"]


def test_pagination_visits_every_item_once(ddb, seeded):
    seen, start = [], None
    for _ in range(COUNT + 2):
        extra = {"Limit": 7}
        if start:
            extra["ExclusiveStartKey"] = start
        response = query(ddb, seeded, **extra)
        assert response["Count"] <= 7
        seen += [int(item["sk"]["N"]) for item in response["Items"]]
        start = response.get("LastEvaluatedKey")
        if not start:
            break
    assert seen == list(range(COUNT))


def test_paginator(ddb, seeded):
    paginator = ddb.get_paginator("query")
    pages = list(paginator.paginate(TableName=seeded, KeyConditionExpression="pk = :p",
                                    ExpressionAttributeValues={":p": {"S": "p"}},
                                    PaginationConfig={"PageSize": 10}))
    assert sum(page["Count"] for page in pages) == COUNT


def test_limit_equal_to_the_item_count_ends_with_a_last_evaluated_key(ddb, seeded):
    # DynamoDB stops at Limit without looking further, so it cannot know nothing follows.
    response = query(ddb, seeded, Limit=COUNT)
    assert response["Count"] == COUNT
    assert response["LastEvaluatedKey"] == {"pk": {"S": "p"}, "sk": {"N": str(COUNT - 1)}}
    after = query(ddb, seeded, ExclusiveStartKey=response["LastEvaluatedKey"])
    assert after["Count"] == 0 and after["Items"] == []


def test_select_count(ddb, seeded):
    response = query(ddb, seeded, Select="COUNT")
    assert response["Count"] == COUNT
    assert "Items" not in response


def test_select_specific_attributes(ddb, seeded):
    response = query(ddb, seeded, Select="SPECIFIC_ATTRIBUTES", ProjectionExpression="v", Limit=1)
    assert response["Items"] == [{"v": {"S": "v0"}}]


# service-2.json: "If you use the ProjectionExpression parameter, then the value for Select can
# only be SPECIFIC_ATTRIBUTES. Any other value for Select will return an error." The texts, and
# Query's "1 validation error detected: " envelope around them (Scan has none), are recorded by a
# moto test module marked aws_verified (run against DynamoDB).
@pytest.mark.parametrize("select, choice", [("ALL_ATTRIBUTES", "ALL_ATTRIBUTES"),
                                            ("ALL_PROJECTED_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES"),
                                            ("COUNT", "only the Count")])
def test_select_other_than_specific_attributes_with_a_projection_is_refused(ddb, seeded, select,
                                                                             choice):
    expect_error(lambda: query(ddb, seeded, Select=select, ProjectionExpression="v"),
                 "ValidationException",
                 "1 validation error detected: Cannot specify the ProjectionExpression when "
                 f"choosing to get {choice}")


def test_select_all_attributes_with_attributes_to_get_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.query(TableName=seeded, Select="ALL_ATTRIBUTES", AttributesToGet=["v"],
                          KeyConditions={"pk": {"ComparisonOperator": "EQ",
                                                "AttributeValueList": [{"S": "p"}]}}),
        "ValidationException",
        "1 validation error detected: Cannot specify the AttributesToGet when choosing to get "
        "ALL_ATTRIBUTES")


def test_select_specific_attributes_needs_a_projection(ddb, seeded):
    expect_error(lambda: query(ddb, seeded, Select="SPECIFIC_ATTRIBUTES"), "ValidationException",
                 "1 validation error detected: Must specify the AttributesToGet or "
                 "ProjectionExpression when choosing to get SPECIFIC_ATTRIBUTES")


def test_select_all_projected_attributes_needs_an_index(ddb, seeded):
    expect_error(lambda: query(ddb, seeded, Select="ALL_PROJECTED_ATTRIBUTES"),
                 "ValidationException",
                 "1 validation error detected: ALL_PROJECTED_ATTRIBUTES can be used only when "
                 "Querying using an IndexName")


def test_select_all_attributes_without_a_projection(ddb, seeded):
    response = query(ddb, seeded, Select="ALL_ATTRIBUTES", Limit=1)
    assert response["Items"] == [{"pk": {"S": "p"}, "sk": {"N": "0"}, "v": {"S": "v0"}}]


def test_an_index_the_table_does_not_have_is_refused(ddb, seeded):
    # Tables have no secondary indexes yet: reading the table instead would answer wrongly.
    expect_error(lambda: query(ddb, seeded, IndexName="by-v"), "ValidationException",
                 "The table does not have the specified index: by-v")


def test_invalid_select_is_refused(ddb, seeded):
    expect_error(lambda: query(ddb, seeded, Select="SOME"), "ValidationException",
                 contains="Value 'SOME' at 'select' failed to satisfy constraint")


def test_limit_zero_is_refused(raw, seeded):
    # botocore refuses Limit 0 itself, so the request is sent by hand.
    response = raw.call("Query", {"TableName": seeded, "KeyConditionExpression": "pk = :p",
                                  "ExpressionAttributeValues": {":p": {"S": "p"}}, "Limit": 0})
    assert response.status == 400
    assert response.error_type == "ValidationException"
    assert response.json()["message"] == (
        "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1")


def test_a_partition_with_no_items(ddb, seeded):
    response = ddb.query(TableName=seeded, KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": "nobody"}})
    assert response["Items"] == [] and response["Count"] == 0 and response["ScannedCount"] == 0


def test_exclusive_start_key_of_another_partition_key_is_refused(ddb, seeded):
    expect_error(
        lambda: query(ddb, seeded, ExclusiveStartKey={"pk": {"S": "other"}, "sk": {"N": "0"}}),
        "ValidationException",
        "The provided starting key is outside query boundaries based on provided conditions")


def test_query_of_a_missing_table(ddb):
    expect_error(
        lambda: ddb.query(TableName="conf-no-such-table", KeyConditionExpression="pk = :p",
                          ExpressionAttributeValues={":p": {"S": "p"}}),
        "ResourceNotFoundException", "Requested resource not found")


def test_hash_only_table(ddb, table):
    ddb.put_item(TableName=table, Item={"pk": {"S": "solo"}, "v": {"N": "1"}})
    response = ddb.query(TableName=table, KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": "solo"}}, ConsistentRead=True)
    assert response["Items"] == [{"pk": {"S": "solo"}, "v": {"N": "1"}}]


def test_consumed_capacity_is_reported_when_asked(ddb, seeded):
    response = query(ddb, seeded, ReturnConsumedCapacity="TOTAL")
    capacity = response["ConsumedCapacity"]
    assert capacity["TableName"] == seeded
    assert capacity["CapacityUnits"] > 0


# ExclusiveStartKey checks, with DynamoDB's messages: dynalite's test/query.js and db/query.js
# (its README: tested against the live DynamoDB instances, error messages included).
STARTING_KEY_INVALID = ("The provided starting key is invalid: The provided key element does not "
                        "match the schema")


@pytest.mark.parametrize("start", [
    {"pk": {"S": "p"}},
    {"pk": {"S": "p"}, "sk": {"S": "1"}},
    {"pk": {"S": "p"}, "sk": {"N": "1"}, "v": {"S": "extra"}},
    {},
], ids=["no sort key", "sort key of the wrong type", "an extra attribute", "empty"])
def test_start_key_not_matching_the_schema_is_refused(ddb, seeded, start):
    expect_error(lambda: query(ddb, seeded, ExclusiveStartKey=start), "ValidationException",
                 STARTING_KEY_INVALID)


@pytest.mark.parametrize("start", [
    {"pk": {"S": "p"}, "sk": {"N": "1"}},
    {"pk": {"S": "p"}, "other": {"S": "x"}},
], ids=["a sort key", "another attribute"])
def test_start_key_of_a_table_without_sort_key(ddb, table, start):
    expect_error(lambda: query(ddb, table, ExclusiveStartKey=start), "ValidationException",
                 STARTING_KEY_INVALID)
    expect_error(lambda: ddb.scan(TableName=table, ExclusiveStartKey=start), "ValidationException",
                 STARTING_KEY_INVALID)


@pytest.mark.parametrize("start, message", [
    # The sort key is checked against the sort key condition first...
    ({"pk": {"S": "p"}, "sk": {"N": "2"}},
     "The provided starting key does not match the range key predicate"),
    ({"pk": {"S": "other"}, "sk": {"N": "30"}},
     "The provided starting key does not match the range key predicate"),
    # ...then the partition key.
    ({"pk": {"S": "other"}, "sk": {"N": "7"}},
     "The query can return at most one row and cannot be restarted"),
])
def test_start_key_outside_a_sort_key_condition_is_refused(ddb, seeded, start, message):
    expect_error(
        lambda: ddb.query(TableName=seeded, KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
                          ExpressionAttributeValues={":p": {"S": "p"}, ":a": {"N": "5"},
                                                     ":b": {"N": "20"}},
                          ExclusiveStartKey=start),
        "ValidationException", message)


def test_long_partition_read_backwards_across_size_pages(ddb, make_table):
    # 3 MB in one partition: a backward query crosses 1 MB pages, each LastEvaluatedKey the
    # last item read, every item once and in descending order (API reference, Query:
    # ScanIndexForward and LastEvaluatedKey).
    table = make_table(sort=("sk", "N"))
    value = "x" * 12_000
    total = 250
    # 3,000 WCU into one partition: past its 1,000 a second in a fast run.
    batch_write_admitted(ddb, table, [
        {"PutRequest": {"Item": {"pk": {"S": "long"}, "sk": {"N": str(i)}, "v": {"S": value}}}}
        for i in range(total)])
    seen, pages, start_key = [], 0, None
    while True:
        extra = {"ExclusiveStartKey": start_key} if start_key else {}
        response = ddb.query(TableName=table, KeyConditionExpression="pk = :p",
                             ExpressionAttributeValues={":p": {"S": "long"}}, ScanIndexForward=False,
                             ConsistentRead=True, ProjectionExpression="sk", **extra)
        pages += 1
        seen += [int(item["sk"]["N"]) for item in response["Items"]]
        start_key = response.get("LastEvaluatedKey")
        if start_key is None:
            break
        assert start_key == {"pk": {"S": "long"}, "sk": {"N": str(seen[-1])}}
    assert seen == list(range(total - 1, -1, -1))
    assert pages >= 3
