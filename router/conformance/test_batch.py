"""BatchGetItem (at most 100 keys) and BatchWriteItem (at most 25 requests): results,
Unprocessed members and their limits."""

import pytest

from conftest import expect_error, put_admitted


def put(i, **extra):
    return {"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "n": {"N": str(i)}, **extra}}}


# Read by the tests below; test_batch_write_puts_and_deletes writes to a table of its own.
@pytest.fixture(scope="module")
def hundred(ddb, make_module_table):
    table = make_module_table()
    for start in range(0, 100, 25):
        response = ddb.batch_write_item(RequestItems={table: [put(i) for i in range(start, start + 25)]})
        # Nothing was throttled or unavailable on an idle cluster.
        assert response["UnprocessedItems"] == {}
    return table


def test_batch_get_of_100_keys(ddb, hundred):
    response = ddb.batch_get_item(RequestItems={hundred: {
        "Keys": [{"pk": {"S": f"k{i}"}} for i in range(100)], "ConsistentRead": True}})
    assert response["UnprocessedKeys"] == {}
    assert sorted(int(item["n"]["N"]) for item in response["Responses"][hundred]) == list(range(100))


def test_batch_get_of_missing_keys_returns_only_found_items(ddb, hundred):
    response = ddb.batch_get_item(RequestItems={hundred: {
        "Keys": [{"pk": {"S": "k1"}}, {"pk": {"S": "nope"}}], "ConsistentRead": True}})
    assert [item["pk"]["S"] for item in response["Responses"][hundred]] == ["k1"]


def test_batch_get_of_101_keys_is_refused(ddb, hundred):
    expect_error(
        lambda: ddb.batch_get_item(RequestItems={hundred: {
            "Keys": [{"pk": {"S": f"k{i}"}} for i in range(101)]}}),
        "ValidationException", "Too many items requested for the BatchGetItem call")


def test_batch_get_with_duplicate_keys_is_refused(ddb, hundred):
    expect_error(
        lambda: ddb.batch_get_item(RequestItems={hundred: {
            "Keys": [{"pk": {"S": "k1"}}, {"pk": {"S": "k1"}}]}}),
        "ValidationException", "Provided list of item keys contains duplicates")


def test_batch_get_across_tables(ddb, hundred, make_table):
    other = make_table()
    ddb.put_item(TableName=other, Item={"pk": {"S": "o"}})
    response = ddb.batch_get_item(RequestItems={
        hundred: {"Keys": [{"pk": {"S": "k5"}}], "ConsistentRead": True},
        other: {"Keys": [{"pk": {"S": "o"}}], "ConsistentRead": True}})
    assert response["Responses"][hundred] == [{"pk": {"S": "k5"}, "n": {"N": "5"}}]
    assert response["Responses"][other] == [{"pk": {"S": "o"}}]


def test_batch_get_of_a_missing_table_is_refused(ddb):
    expect_error(
        lambda: ddb.batch_get_item(RequestItems={"conf-no-such-table": {"Keys": [{"pk": {"S": "a"}}]}}),
        "ResourceNotFoundException", "Requested resource not found")


def test_batch_write_of_26_requests_is_refused(ddb, table):
    expect_error(
        lambda: ddb.batch_write_item(RequestItems={table: [put(i) for i in range(26)]}),
        "ValidationException",
        contains="Member must have length less than or equal to 25")


def test_batch_write_with_duplicate_keys_is_refused(ddb, table):
    expect_error(
        lambda: ddb.batch_write_item(RequestItems={table: [
            put(1), {"DeleteRequest": {"Key": {"pk": {"S": "k1"}}}}]}),
        "ValidationException", "Provided list of item keys contains duplicates")


def test_batch_write_puts_and_deletes(ddb, table):
    hundred = table
    ddb.batch_write_item(RequestItems={hundred: [put(0)]})
    response = ddb.batch_write_item(RequestItems={hundred: [
        put(1000), {"DeleteRequest": {"Key": {"pk": {"S": "k0"}}}},
        {"DeleteRequest": {"Key": {"pk": {"S": "never-existed"}}}}]})
    assert response["UnprocessedItems"] == {}
    assert "Item" in ddb.get_item(TableName=hundred, Key={"pk": {"S": "k1000"}}, ConsistentRead=True)
    assert "Item" not in ddb.get_item(TableName=hundred, Key={"pk": {"S": "k0"}}, ConsistentRead=True)


def test_batch_write_with_an_invalid_item_fails_as_a_whole(ddb, table):
    expect_error(
        lambda: ddb.batch_write_item(RequestItems={table: [
            put(1), {"PutRequest": {"Item": {"pk": {"N": "2"}}}}]}),
        "ValidationException",
        "One or more parameter values were invalid: Type mismatch for key pk expected: S actual: N")
    # Validation happens before anything is written.
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "k1"}}, ConsistentRead=True)


def test_batch_write_of_a_missing_table_is_refused(ddb):
    expect_error(
        lambda: ddb.batch_write_item(RequestItems={"conf-no-such-table": [put(1)]}),
        "ResourceNotFoundException", "Requested resource not found")


def test_unprocessed_items_round_trip_through_a_retry_loop(ddb, table):
    """What clients do with UnprocessedItems: send them again until none are left. The loop
    is bounded; on an idle cluster the first call processes everything."""
    request = {table: [put(i) for i in range(25)]}
    for _ in range(5):
        response = ddb.batch_write_item(RequestItems=request)
        request = response["UnprocessedItems"]
        if not request:
            break
    assert request == {}
    count = ddb.scan(TableName=table, Select="COUNT", ConsistentRead=True)
    # The scan may page at partition boundaries; count every page.
    total, params = count["Count"], {}
    while "LastEvaluatedKey" in count:
        count = ddb.scan(TableName=table, Select="COUNT", ConsistentRead=True,
                         ExclusiveStartKey=count["LastEvaluatedKey"])
        total += count["Count"]
    assert total == 25


def test_consumed_capacity_per_table(ddb, hundred):
    response = ddb.batch_get_item(RequestItems={hundred: {"Keys": [{"pk": {"S": "k1"}}]}},
                                  ReturnConsumedCapacity="TOTAL")
    assert [c["TableName"] for c in response["ConsumedCapacity"]] == [hundred]


def test_batch_write_with_an_invalid_attribute_writes_nothing(ddb, table):
    """DynamoDB validates the whole request before writing any of it. 24 valid puts spread
    over every partition of the table; one item has an invalid non-key attribute. Tried with
    eight different invalid keys: whichever partition the invalid item lands in, nothing of the
    batch may be written (a batch checked group by group passes only when the invalid item's
    group comes first)."""
    for attempt in range(8):
        requests = [put(i) for i in range(24)]
        requests.append({"PutRequest": {"Item": {"pk": {"S": f"bad{attempt}"}, "z": {"NULL": False}}}})
        expect_error(
            lambda: ddb.batch_write_item(RequestItems={table: requests}),
            "ValidationException",
            "One or more parameter values were invalid: Null attribute value types must have the value of true")
    response = ddb.batch_get_item(RequestItems={table: {
        "Keys": [{"pk": {"S": f"k{i}"}} for i in range(24)], "ConsistentRead": True}})
    assert response["Responses"][table] == []


def test_batch_get_answers_at_most_16_mb_and_hands_back_the_rest(ddb, make_table):
    # "A single operation can retrieve up to 16 MB of data ... if you ask to retrieve 100 items,
    # but each individual item is 300 KB in size, the system returns 52 items (so as not to
    # exceed the 16 MB limit). It also returns an appropriate UnprocessedKeys value so you can
    # get the next page of results." (API reference, BatchGetItem.)
    table = make_table()
    value = "x" * (300 * 1024)
    count = 60
    for i in range(count):
        # 18,000 WCU in all: past a new on-demand table's 4,000 a second in a fast run.
        put_admitted(ddb, TableName=table, Item={"pk": {"S": f"big{i}"}, "v": {"S": value}})
    keys = [{"pk": {"S": f"big{i}"}} for i in range(count)]
    response = ddb.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
    first = response["Responses"][table]
    assert 0 < len(first) < count
    assert sum(len(item["v"]["S"]) for item in first) <= 16 * 1024 * 1024
    unprocessed = response["UnprocessedKeys"][table]
    assert unprocessed["ConsistentRead"] is True
    got = [item["pk"]["S"] for item in first]
    for _ in range(10):
        if not unprocessed:
            break
        response = ddb.batch_get_item(RequestItems={table: unprocessed})
        got += [item["pk"]["S"] for item in response["Responses"][table]]
        unprocessed = response["UnprocessedKeys"].get(table)
    assert sorted(got) == sorted(key["pk"]["S"] for key in keys)
    # Projected small, the same keys fit in one answer.
    response = ddb.batch_get_item(RequestItems={table: {"Keys": keys, "ProjectionExpression": "pk",
                                                        "ConsistentRead": True}})
    assert len(response["Responses"][table]) == count
    assert response["UnprocessedKeys"] == {}
