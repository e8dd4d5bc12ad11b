"""UpdateTable's GlobalSecondaryIndexUpdates: creating an index on a table with data (backfill,
then ACTIVE), deleting one, changing one's throughput, and the rules DynamoDB checks.

Sources, cited per test:
- [DG-ONLINE] DynamoDB developer guide, "Managing global secondary indexes" (adding an index
  to an existing table: IndexStatus CREATING with Backfilling, then ACTIVE; deleting; one
  index creation or deletion at a time per table).
- [ALTERNATOR] ScyllaDB's Alternator test_gsi.py, written against DynamoDB (test_gsi_backfill:
  items whose key attribute is missing or of another type are not indexed, and a second index
  of the same name is refused with a message containing "already exists"; test_gsi_delete: a
  deleted index's Query is a ValidationException naming it).
- [API-UT] DynamoDB API reference, UpdateTable (GlobalSecondaryIndexUpdates; one of Create,
  Update, Delete per entry; AttributeDefinitions naming the new index's key attributes) and
  messages recorded from the service by other emulators' suites (the "Subscriber limit
  exceeded" LimitExceededException, "Attempting to create an index which already exists",
  "Some index key attributes are not defined in AttributeDefinitions", "Only one global
  secondary index action is allowed per GlobalSecondaryIndexUpdate object").
- [API-Q] DynamoDB API reference, Query: an index that is still backfilling cannot be read
  ("Cannot read from backfilling global secondary index").
"""

import time

import pytest

from conftest import expect_error, unique_name

# An index is ACTIVE once its backfill ran, which starts some seconds after UpdateTable (when
# every router routes writes with it); DynamoDB itself takes minutes.
ACTIVE_WAIT_S = 120


def wait_for_index(ddb, table, index, status):
    deadline = time.monotonic() + ACTIVE_WAIT_S
    while time.monotonic() < deadline:
        described = ddb.describe_table(TableName=table)["Table"].get("GlobalSecondaryIndexes", [])
        found = [entry for entry in described if entry["IndexName"] == index]
        if status is None and not found:
            return None
        if found and found[0]["IndexStatus"] == status:
            return found[0]
        time.sleep(0.5)
    pytest.fail(f"index {index} of {table} did not become {status} in {ACTIVE_WAIT_S} s")


def full_scan(ddb, **kwargs):
    items = []
    while True:
        page = ddb.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def create_hello(ddb, table):
    return ddb.update_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "x", "AttributeType": "S"}],
        GlobalSecondaryIndexUpdates=[{"Create": {
            "IndexName": "hello",
            "KeySchema": [{"AttributeName": "x", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"}}}])


def test_an_index_added_to_a_table_with_data_is_backfilled_then_deleted(ddb):
    # [DG-ONLINE] [ALTERNATOR] [API-Q]
    name = unique_name("gsiadd")
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "p", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "p", "KeyType": "HASH"}])
    try:
        # A third have x as a string (indexed), a third as a number (another type: skipped),
        # a third none (sparse).
        for i in range(300):
            item = {"p": {"S": f"k{i}"}, "y": {"S": f"y{i}"}}
            if i % 3 == 0:
                item["x"] = {"S": f"x{i % 5}"}
            elif i % 3 == 1:
                item["x"] = {"N": str(i)}
            ddb.put_item(TableName=name, Item=item)
        answer = create_hello(ddb, name)
        [created] = answer["TableDescription"]["GlobalSecondaryIndexes"]
        assert created["IndexStatus"] == "CREATING"
        assert created["Backfilling"] is True
        expect_error(lambda: ddb.query(TableName=name, IndexName="hello",
                                       KeyConditionExpression="x = :x",
                                       ExpressionAttributeValues={":x": {"S": "x0"}}),
                     "ValidationException",
                     "Cannot read from backfilling global secondary index: hello")
        # A second online change waits for this one.
        expect_error(lambda: ddb.update_table(
            TableName=name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "hello"}}]),
            "LimitExceededException",
            "Subscriber limit exceeded: Only 1 online index can be created or deleted "
            "simultaneously per table")
        # Writes continue during the backfill, and none is missed: puts, a move out of the
        # index (REMOVE of its key) and a delete. The new index's key type already binds them.
        for i in range(300, 330):
            ddb.put_item(TableName=name, Item={"p": {"S": f"k{i}"}, "x": {"S": f"x{i % 5}"}})
        ddb.update_item(TableName=name, Key={"p": {"S": "k3"}}, UpdateExpression="REMOVE x")
        ddb.delete_item(TableName=name, Key={"p": {"S": "k6"}})
        expect_error(lambda: ddb.put_item(TableName=name, Item={"p": {"S": "k9"}, "x": {"N": "9"}}),
                     "ValidationException",
                     "One or more parameter values were invalid: Type mismatch for Index Key x "
                     "Expected: S Actual: N IndexName: hello")
        active = wait_for_index(ddb, name, "hello", "ACTIVE")
        assert "Backfilling" not in active
        expected = {f"k{i}" for i in range(330) if i >= 300 or i % 3 == 0} - {"k3", "k6"}
        # Once ACTIVE, the backfill has been applied at the index partitions' leaders; a read
        # is eventually consistent (it may reach a replica a moment behind), so it is polled,
        # but it must never show an item that is not in the index [ALTERNATOR's
        # assert_index_scan does the same].
        deadline = time.monotonic() + 30
        while True:
            indexed = {item["p"]["S"] for item in full_scan(ddb, TableName=name, IndexName="hello")}
            assert indexed <= expected, f"entries not in the index: {sorted(indexed - expected)}"
            if indexed == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sorted(indexed) == sorted(expected)
        page = ddb.query(TableName=name, IndexName="hello", KeyConditionExpression="x = :x",
                         ExpressionAttributeValues={":x": {"S": "x0"}})
        assert {item["p"]["S"] for item in page["Items"]} == {
            f"k{i}" for i in range(330) if (i >= 300 or i % 3 == 0) and i % 5 == 0} - {"k3", "k6"}
        # DescribeTable counts entries from the index partitions (also eventually).
        deadline = time.monotonic() + 30
        while wait_for_index(ddb, name, "hello", "ACTIVE")["ItemCount"] != len(expected):
            assert time.monotonic() < deadline, "ItemCount never reached the index's size"
            time.sleep(0.2)
        # The same name again is refused [ALTERNATOR].
        expect_error(lambda: create_hello(ddb, name), "ValidationException",
                     "Attempting to create an index which already exists")
        # Delete: DELETING in the answer, then gone; a Query of it names it [ALTERNATOR].
        answer = ddb.update_table(TableName=name,
                                  GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "hello"}}])
        [deleting] = answer["TableDescription"]["GlobalSecondaryIndexes"]
        assert deleting["IndexStatus"] == "DELETING"
        wait_for_index(ddb, name, "hello", None)
        expect_error(lambda: ddb.query(TableName=name, IndexName="hello",
                                       KeyConditionExpression="x = :x",
                                       ExpressionAttributeValues={":x": {"S": "x0"}}),
                     "ValidationException", contains="hello")
        # The table itself is untouched.
        assert len(full_scan(ddb, TableName=name)) == 329
    finally:
        ddb.delete_table(TableName=name)


def test_index_updates_are_checked_as_dynamodb_checks_them(ddb):
    # [API-UT]
    name = unique_name("gsirules")
    ddb.create_table(
        TableName=name, BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
        AttributeDefinitions=[{"AttributeName": "p", "AttributeType": "S"},
                              {"AttributeName": "s", "AttributeType": "S"},
                              {"AttributeName": "g", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "p", "KeyType": "HASH"},
                   {"AttributeName": "s", "KeyType": "RANGE"}],
        LocalSecondaryIndexes=[{
            "IndexName": "local",
            "KeySchema": [{"AttributeName": "p", "KeyType": "HASH"},
                          {"AttributeName": "g", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"}}],
        GlobalSecondaryIndexes=[{
            "IndexName": "by_g",
            "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
            "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}}])
    try:
        expect_error(lambda: ddb.update_table(
            TableName=name,
            GlobalSecondaryIndexUpdates=[{"Create": {
                "IndexName": "by_z",
                "KeySchema": [{"AttributeName": "z", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
                "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}}}]),
            "ValidationException",
            "One or more parameter values were invalid: Some index key attributes are not "
            "defined in AttributeDefinitions. Keys: [z], AttributeDefinitions: []")
        expect_error(lambda: ddb.update_table(
            TableName=name,
            GlobalSecondaryIndexUpdates=[{"Update": {
                "IndexName": "by_g",
                "ProvisionedThroughput": {"ReadCapacityUnits": 2, "WriteCapacityUnits": 2}},
                "Delete": {"IndexName": "by_g"}}]),
            "ValidationException",
            "One or more parameter values were invalid: Only one global secondary index action "
            "is allowed per GlobalSecondaryIndexUpdate object")
        expect_error(lambda: ddb.update_table(
            TableName=name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "local"}}]),
            "ValidationException",
            "Cannot delete an index that is not a GlobalSecondaryIndex: local")
        expect_error(lambda: ddb.update_table(
            TableName=name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "nope"}}]),
            "ResourceNotFoundException")
        # A provisioned index's throughput changes in place.
        answer = ddb.update_table(TableName=name, GlobalSecondaryIndexUpdates=[{"Update": {
            "IndexName": "by_g",
            "ProvisionedThroughput": {"ReadCapacityUnits": 7, "WriteCapacityUnits": 8}}}])
        [index] = answer["TableDescription"]["GlobalSecondaryIndexes"]
        assert index["ProvisionedThroughput"]["ReadCapacityUnits"] == 7
        assert index["ProvisionedThroughput"]["WriteCapacityUnits"] == 8
        assert index["IndexStatus"] == "ACTIVE"
    finally:
        ddb.delete_table(TableName=name)
