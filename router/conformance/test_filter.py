"""FilterExpression on Query and Scan: filtered after reading, so Count and ScannedCount
differ and Limit counts items read, not items returned."""

import pytest

from conftest import expect_error


# Every test here only reads: one table serves the module.
@pytest.fixture(scope="module")
def seeded(ddb, make_module_table):
    sorted_table = make_module_table(sort=("sk", "N"))
    with_batch = [{"PutRequest": {"Item": {
        "pk": {"S": "p"}, "sk": {"N": str(i)}, "even": {"BOOL": i % 2 == 0}, "v": {"N": str(i * 10)}}}}
        for i in range(10)]
    ddb.batch_write_item(RequestItems={sorted_table: with_batch})
    return sorted_table


def test_query_filter_counts(ddb, seeded):
    response = ddb.query(TableName=seeded, KeyConditionExpression="pk = :p",
                         FilterExpression="even = :t",
                         ExpressionAttributeValues={":p": {"S": "p"}, ":t": {"BOOL": True}},
                         ConsistentRead=True)
    assert response["Count"] == 5
    assert response["ScannedCount"] == 10
    assert [item["sk"]["N"] for item in response["Items"]] == ["0", "2", "4", "6", "8"]


def test_limit_applies_before_the_filter(ddb, seeded):
    response = ddb.query(TableName=seeded, KeyConditionExpression="pk = :p",
                         FilterExpression="v >= :v", Limit=3,
                         ExpressionAttributeValues={":p": {"S": "p"}, ":v": {"N": "20"}},
                         ConsistentRead=True)
    # Items 0, 1, 2 are read; only 2 passes.
    assert response["ScannedCount"] == 3
    assert response["Count"] == 1
    assert response["LastEvaluatedKey"] == {"pk": {"S": "p"}, "sk": {"N": "2"}}


def test_scan_filter_counts(ddb, seeded):
    items, scanned = [], 0
    params = dict(TableName=seeded, FilterExpression="v BETWEEN :a AND :b",
                  ExpressionAttributeValues={":a": {"N": "30"}, ":b": {"N": "50"}},
                  ConsistentRead=True)
    # A page may end with a LastEvaluatedKey even when nothing follows (DynamoDB's docs say
    # so), so follow pages; a table of 10 items needs few.
    for _ in range(20):
        response = ddb.scan(**params)
        items += response["Items"]
        scanned += response["ScannedCount"]
        assert response["Count"] == len(response["Items"])
        if "LastEvaluatedKey" not in response:
            break
        params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    else:
        raise AssertionError("scan did not end within 20 pages")
    assert scanned == 10
    assert sorted(int(item["sk"]["N"]) for item in items) == [3, 4, 5]


def test_filter_matching_nothing(ddb, seeded):
    response = ddb.scan(TableName=seeded, FilterExpression="attribute_exists(nope)")
    assert response["Count"] == 0 and response["Items"] == []


def test_query_filter_on_a_key_attribute_is_refused(ddb, seeded):
    expect_error(
        lambda: ddb.query(TableName=seeded, KeyConditionExpression="pk = :p",
                          FilterExpression="sk > :v",
                          ExpressionAttributeValues={":p": {"S": "p"}, ":v": {"N": "1"}}),
        "ValidationException",
        "Filter Expression can only contain non-primary key attributes: Primary key attribute: sk")


def test_scan_filter_on_a_key_attribute_is_allowed(ddb, seeded):
    response = ddb.scan(TableName=seeded, FilterExpression="sk > :v",
                        ExpressionAttributeValues={":v": {"N": "7"}})
    assert response["Count"] == 2


def test_filter_syntax_error(ddb, seeded):
    expect_error(
        lambda: ddb.scan(TableName=seeded, FilterExpression="v >"),
        "ValidationException", contains="Invalid FilterExpression: Syntax error; token:")
