"""Global secondary indexes: CreateTable and DescribeTable with GlobalSecondaryIndexes, Query and
Scan with a GSI's IndexName (key conditions, order, sparse index, projections, Select,
pagination, parallel scan), and index maintenance through puts, updates, deletes and batches.

GSIs are eventually consistent in DynamoDB ("Data synchronization between tables and global
secondary indexes": an index is updated asynchronously, usually within a fraction of a second):
tests that read an index after writing poll it, for at most PROPAGATION_WAIT_S.

Sources, cited per test:
- [DG-GSI] DynamoDB developer guide, "Using Global Secondary Indexes in DynamoDB" (attribute
  projections, sparse indexes, reading and synchronization, non-unique index keys).
- [API-CT] DynamoDB API reference, CreateTable (GlobalSecondaryIndexes) and botocore's
  service-2.json (GlobalSecondaryIndexDescription members: IndexName, KeySchema, Projection,
  IndexStatus, ProvisionedThroughput, IndexSizeBytes, ItemCount, IndexArn).
- [API-Q] DynamoDB API reference, Query: "Strongly consistent reads are not supported on
  global secondary indexes. If you query a global secondary index with ConsistentRead set to
  true, you will receive a ValidationException"; Select ALL_ATTRIBUTES and
  ALL_PROJECTED_ATTRIBUTES; LastEvaluatedKey of an index.
- [DYNALITE] dynalite's validations/query.js and scan.js and its test suite, which runs
  against DynamoDB (the ConsistentRead and Select ALL_ATTRIBUTES messages).
- [SDK-JAVA] aws-sdk-java-v2's DynamoDB integration tests (SecondaryIndexesIntegrationTest:
  Select ALL_ATTRIBUTES on a GSI that does not project everything is refused).
- [DG-ERR] DynamoDB developer guide, error handling: a write whose index key attribute has the
  wrong type is a ValidationException naming the index.
"""

import time

import pytest
from botocore.exceptions import ClientError

from conftest import expect_error, unique_name

PROPAGATION_WAIT_S = 15
ITEMS = 20


def gsi_table_request(name, **overrides):
    request = dict(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "city", "AttributeType": "S"},
            {"AttributeName": "age", "AttributeType": "N"},
            {"AttributeName": "team", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {"IndexName": "by_city",
             "KeySchema": [{"AttributeName": "city", "KeyType": "HASH"},
                           {"AttributeName": "age", "KeyType": "RANGE"}],
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["nick"]}},
            {"IndexName": "by_team",
             "KeySchema": [{"AttributeName": "team", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "ALL"}},
        ],
    )
    request.update(overrides)
    return request


def person(i):
    """Item u<i>: every fifth has no city (sparse in by_city), every third no team."""
    item = {"pk": {"S": f"u{i:02d}"}, "nick": {"S": f"n{i}"}, "secret": {"S": "s"}}
    if i % 5 != 4:
        item["city"] = {"S": "paris" if i % 2 else "rome"}
        item["age"] = {"N": str(20 + i)}
    if i % 3 != 2:
        item["team"] = {"S": f"t{i % 2}"}
    return item


def eventually(check, what):
    """Polls `check` until it returns a truthy value (returned) or the wait is over."""
    deadline = time.monotonic() + PROPAGATION_WAIT_S
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"the index did not show {what} within {PROPAGATION_WAIT_S} s")
        time.sleep(0.05)


def city_pks(ddb, table, city, **extra):
    items = []
    kwargs = dict(TableName=table, IndexName="by_city", KeyConditionExpression="city = :c",
                  ExpressionAttributeValues={":c": {"S": city}}, **extra)
    while True:
        page = ddb.query(**kwargs)
        items.extend(item["pk"]["S"] for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def expected_city(city):
    """The pks of `city` in index order (age, which grows with i)."""
    return [f"u{i:02d}" for i in range(ITEMS)
            if i % 5 != 4 and ("paris" if i % 2 else "rome") == city]


@pytest.fixture(scope="module")
def gsi_table(ddb):
    name = unique_name("gsi")
    created = ddb.create_table(**gsi_table_request(name))
    for i in range(ITEMS):
        ddb.put_item(TableName=name, Item=person(i))
    # GSI reads are eventually consistent and may reach a replica a moment behind: every test
    # below that compares a whole result polls too.
    eventually(lambda: city_pks(ddb, name, "paris") == expected_city("paris")
               and city_pks(ddb, name, "rome") == expected_city("rome"), "every put")
    yield name, created["TableDescription"]
    ddb.delete_table(TableName=name)


def test_create_table_describes_its_gsis(ddb, gsi_table):
    # [API-CT] GlobalSecondaryIndexDescription.
    name, created = gsi_table
    described = ddb.describe_table(TableName=name)["Table"]
    for description in (created, described):
        indexes = {index["IndexName"]: index for index in description["GlobalSecondaryIndexes"]}
        assert set(indexes) == {"by_city", "by_team"}
        by_city = indexes["by_city"]
        assert by_city["KeySchema"] == [{"AttributeName": "city", "KeyType": "HASH"},
                                        {"AttributeName": "age", "KeyType": "RANGE"}]
        assert by_city["Projection"] == {"ProjectionType": "INCLUDE",
                                         "NonKeyAttributes": ["nick"]}
        assert by_city["IndexStatus"] == "ACTIVE"
        assert by_city["IndexArn"].endswith(f"table/{name}/index/by_city")
        assert by_city["ProvisionedThroughput"]["ReadCapacityUnits"] == 0
        assert indexes["by_team"]["KeySchema"] == [{"AttributeName": "team", "KeyType": "HASH"}]
    # The index counts its entries: items without the index key are not in it.
    def by_city():
        table = ddb.describe_table(TableName=name)["Table"]
        return {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}["by_city"]
    counted = eventually(lambda: (lambda index: index if index["ItemCount"] == sum(
        1 for i in range(ITEMS) if i % 5 != 4) else None)(by_city()), "the entry count")
    assert counted["IndexSizeBytes"] > 0


def test_query_reads_one_index_key_in_sort_key_order(ddb, gsi_table):
    # [DG-GSI] "Reading data from a global secondary index"; sparse index.
    name, _ = gsi_table
    eventually(lambda: city_pks(ddb, name, "paris") == expected_city("paris"), "paris")
    eventually(lambda: city_pks(ddb, name, "rome") == expected_city("rome"), "rome")
    eventually(lambda: city_pks(ddb, name, "rome", ScanIndexForward=False)
               == list(reversed(expected_city("rome"))), "rome backwards")
    page = ddb.query(TableName=name, IndexName="by_city",
                     KeyConditionExpression="city = :c AND age BETWEEN :a AND :b",
                     ExpressionAttributeValues={":c": {"S": "paris"}, ":a": {"N": "25"},
                                                ":b": {"N": "31"}})
    assert [item["age"]["N"] for item in page["Items"]] == ["25", "27", "31"]
    assert page["Count"] == 3


def test_projection_holds_keys_and_included_attributes_only(ddb, gsi_table):
    # [DG-GSI] "Attribute projections": INCLUDE projects the table and index keys and the
    # listed attributes; ALL projects everything.
    name, _ = gsi_table
    page = ddb.query(TableName=name, IndexName="by_city", KeyConditionExpression="city = :c",
                     ExpressionAttributeValues={":c": {"S": "paris"}})
    for item in page["Items"]:
        assert set(item) == {"pk", "city", "age", "nick"}
    page = ddb.query(TableName=name, IndexName="by_city", KeyConditionExpression="city = :c",
                     Select="ALL_PROJECTED_ATTRIBUTES",
                     ExpressionAttributeValues={":c": {"S": "paris"}})
    assert all(set(item) == {"pk", "city", "age", "nick"} for item in page["Items"])
    page = ddb.query(TableName=name, IndexName="by_team", KeyConditionExpression="team = :t",
                     ExpressionAttributeValues={":t": {"S": "t1"}})
    assert page["Count"] == sum(1 for i in range(ITEMS) if i % 3 != 2 and i % 2 == 1)
    for item in page["Items"]:
        assert "secret" in item and "nick" in item
    # A projection expression may name attributes the index does not hold: they are absent.
    page = ddb.query(TableName=name, IndexName="by_city", KeyConditionExpression="city = :c",
                     ProjectionExpression="nick, secret",
                     ExpressionAttributeValues={":c": {"S": "paris"}})
    assert all(set(item) == {"nick"} for item in page["Items"])


def test_reads_a_gsi_cannot_serve_are_refused(ddb, gsi_table):
    # [API-Q] [DYNALITE] [SDK-JAVA]
    name, _ = gsi_table
    expect_error(lambda: ddb.query(TableName=name, IndexName="by_city", ConsistentRead=True,
                                   KeyConditionExpression="city = :c",
                                   ExpressionAttributeValues={":c": {"S": "paris"}}),
                 "ValidationException",
                 "Consistent reads are not supported on global secondary indexes")
    expect_error(lambda: ddb.scan(TableName=name, IndexName="by_city", ConsistentRead=True),
                 "ValidationException",
                 "Consistent reads are not supported on global secondary indexes")
    expect_error(lambda: ddb.query(TableName=name, IndexName="by_city", Select="ALL_ATTRIBUTES",
                                   KeyConditionExpression="city = :c",
                                   ExpressionAttributeValues={":c": {"S": "paris"}}),
                 "ValidationException",
                 "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not "
                 "supported for global secondary index by_city because its projection type is not ALL")
    # An index that projects everything serves ALL_ATTRIBUTES.
    page = ddb.query(TableName=name, IndexName="by_team", Select="ALL_ATTRIBUTES",
                     KeyConditionExpression="team = :t",
                     ExpressionAttributeValues={":t": {"S": "t0"}})
    assert page["Count"] > 0
    expect_error(lambda: ddb.query(TableName=name, IndexName="nope",
                                   KeyConditionExpression="city = :c",
                                   ExpressionAttributeValues={":c": {"S": "paris"}}),
                 "ValidationException", "The table does not have the specified index: nope")
    # The key condition is on the index's key, not the table's.
    expect_error(lambda: ddb.query(TableName=name, IndexName="by_city",
                                   KeyConditionExpression="pk = :p",
                                   ExpressionAttributeValues={":p": {"S": "u01"}}),
                 "ValidationException")


def test_pages_continue_after_the_table_and_index_key(ddb, gsi_table):
    # [API-Q] LastEvaluatedKey of an index query holds the table key and the index key.
    name, _ = gsi_table
    page = ddb.query(TableName=name, IndexName="by_city", KeyConditionExpression="city = :c",
                     Limit=3, ExpressionAttributeValues={":c": {"S": "rome"}})
    assert page["Count"] == 3
    assert set(page["LastEvaluatedKey"]) == {"pk", "city", "age"}

    def paged():
        page = ddb.query(TableName=name, IndexName="by_city", KeyConditionExpression="city = :c",
                         Limit=3, ExpressionAttributeValues={":c": {"S": "rome"}})
        pages = [item["pk"]["S"] for item in page["Items"]]
        while "LastEvaluatedKey" in page:
            page = ddb.query(TableName=name, IndexName="by_city",
                             KeyConditionExpression="city = :c", Limit=3,
                             ExclusiveStartKey=page["LastEvaluatedKey"],
                             ExpressionAttributeValues={":c": {"S": "rome"}})
            pages.extend(item["pk"]["S"] for item in page["Items"])
        return pages

    eventually(lambda: paged() == expected_city("rome"), "every page")


def test_scan_of_a_gsi_returns_each_entry_once(ddb, gsi_table):
    # [DG-GSI] Scanning an index; parallel scan of an index with Segment/TotalSegments.
    name, _ = gsi_table
    indexed = sorted(f"u{i:02d}" for i in range(ITEMS) if i % 5 != 4)
    page = eventually(lambda: (lambda page: page if sorted(
        item["pk"]["S"] for item in page["Items"]) == indexed else None)(
        ddb.scan(TableName=name, IndexName="by_city")), "the whole index")
    assert page["Count"] == page["ScannedCount"] == len(indexed)
    def segmented():
        seen = []
        for segment in range(3):
            kwargs = dict(TableName=name, IndexName="by_city", Segment=segment, TotalSegments=3,
                          Limit=2)
            while True:
                page = ddb.scan(**kwargs)
                seen.extend(item["pk"]["S"] for item in page["Items"])
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(seen)

    eventually(lambda: segmented() == indexed, "every entry once over three segments")


def test_writes_move_items_in_and_out_of_the_index(ddb):
    # [DG-GSI] "Data synchronization": an update that changes the index key moves the entry;
    # removing the key attribute or deleting the item removes it; index keys need not be unique.
    name = unique_name("gsimove")
    ddb.create_table(**gsi_table_request(name))
    try:
        for i in range(4):
            ddb.put_item(TableName=name, Item={"pk": {"S": f"m{i}"}, "city": {"S": "oslo"},
                                               "age": {"N": "30"}})
        eventually(lambda: len(city_pks(ddb, name, "oslo")) == 4, "four equal index keys")
        ddb.update_item(TableName=name, Key={"pk": {"S": "m0"}},
                        UpdateExpression="SET city = :c", ExpressionAttributeValues={":c": {"S": "lima"}})
        ddb.update_item(TableName=name, Key={"pk": {"S": "m1"}}, UpdateExpression="REMOVE age")
        ddb.delete_item(TableName=name, Key={"pk": {"S": "m2"}})
        eventually(lambda: city_pks(ddb, name, "oslo") == ["m3"], "the update, REMOVE and delete")
        assert city_pks(ddb, name, "lima") == ["m0"]
        # A batch's writes reach the index too.
        ddb.batch_write_item(RequestItems={name: [
            {"PutRequest": {"Item": {"pk": {"S": f"b{i}"}, "city": {"S": "kyiv"}, "age": {"N": str(i)}}}}
            for i in range(10)
        ] + [{"DeleteRequest": {"Key": {"pk": {"S": "m3"}}}}]})
        eventually(lambda: city_pks(ddb, name, "kyiv") == [f"b{i}" for i in range(10)],
                   "the batch's puts")
        eventually(lambda: city_pks(ddb, name, "oslo") == [], "the batch's delete")
        # A projected attribute's change rewrites the entry.
        ddb.update_item(TableName=name, Key={"pk": {"S": "b0"}}, UpdateExpression="SET nick = :n",
                        ExpressionAttributeValues={":n": {"S": "new"}})
        eventually(lambda: ddb.query(TableName=name, IndexName="by_city",
                                     KeyConditionExpression="city = :c AND age = :a",
                                     ExpressionAttributeValues={":c": {"S": "kyiv"}, ":a": {"N": "0"}}
                                     )["Items"][0].get("nick") == {"S": "new"},
                   "the projected attribute's new value")
    finally:
        ddb.delete_table(TableName=name)


def test_a_wrong_index_key_type_is_refused(ddb, gsi_table):
    # [DG-ERR] The message names the attribute, both types and the index.
    name, _ = gsi_table
    expect_error(lambda: ddb.put_item(TableName=name, Item={"pk": {"S": "bad"}, "city": {"N": "1"}}),
                 "ValidationException",
                 "One or more parameter values were invalid: Type mismatch for Index Key city "
                 "Expected: S Actual: N IndexName: by_city")
    expect_error(lambda: ddb.update_item(TableName=name, Key={"pk": {"S": "u00"}},
                                         UpdateExpression="SET team = :t",
                                         ExpressionAttributeValues={":t": {"N": "7"}}),
                 "ValidationException",
                 "One or more parameter values were invalid: Type mismatch for Index Key team "
                 "Expected: S Actual: N IndexName: by_team")
    assert "Item" not in ddb.get_item(TableName=name, Key={"pk": {"S": "bad"}})


def test_provisioned_gsi_throughput_is_described(ddb):
    # [API-CT] A provisioned table's GSI has its own ProvisionedThroughput.
    name = unique_name("gsiprov")
    request = gsi_table_request(
        name, BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    for index, units in zip(request["GlobalSecondaryIndexes"], (3, 4)):
        index["ProvisionedThroughput"] = {"ReadCapacityUnits": units, "WriteCapacityUnits": units}
    ddb.create_table(**request)
    try:
        described = ddb.describe_table(TableName=name)["Table"]["GlobalSecondaryIndexes"]
        throughput = {index["IndexName"]: index["ProvisionedThroughput"] for index in described}
        assert throughput["by_city"]["ReadCapacityUnits"] == 3
        assert throughput["by_team"]["WriteCapacityUnits"] == 4
    finally:
        ddb.delete_table(TableName=name)


def test_a_provisioned_gsi_has_capacity_of_its_own(ddb):
    # [DG-GSI] "Provisioned throughput considerations for Global Secondary Indexes": a GSI has
    # its own read and write capacity; a query of the index consumes the index's read
    # capacity, and a table write succeeds only if the table and all of its GSIs have the
    # write capacity for it (else it is throttled), with the message recorded from the service
    # ([DG-ERR]; audienceproject/spark-dynamodb#61 quotes it). Both buckets start with 300 s
    # of burst credit (src/lib.rs of shoal-admission): 300 units at 1 unit per second.
    name = unique_name("gsicap")
    request = gsi_table_request(
        name, BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 1000, "WriteCapacityUnits": 1000})
    for index in request["GlobalSecondaryIndexes"]:
        index["ProvisionedThroughput"] = {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
    ddb.create_table(**request)
    try:
        big = "x" * 330_000
        # The table has plenty; by_team (projecting ALL) is charged 323 units for this entry,
        # more than its 300 of credit: the write is served, the index left in debt.
        ddb.put_item(TableName=name, Item={"pk": {"S": "big"}, "team": {"S": "t"}, "blob": {"S": big}})
        expect_error(lambda: ddb.put_item(TableName=name, Item={"pk": {"S": "small"}}),
                     "ProvisionedThroughputExceededException",
                     "The level of configured provisioned throughput for one or more global "
                     "secondary indexes of the table was exceeded. Consider increasing your "
                     "provisioning level for the under-provisioned global secondary indexes with "
                     "the UpdateTable API")
        # Reads of the table are not the index's: served.
        assert ddb.get_item(TableName=name, Key={"pk": {"S": "big"}})["Item"]["team"] == {"S": "t"}
        # Queries of by_team read the 323 KB entry: 41 units each (eventually consistent), out
        # of the index's 300 of read credit, so the eighth at the latest is throttled.
        eventually(lambda: ddb.query(TableName=name, IndexName="by_team",
                                     KeyConditionExpression="team = :t",
                                     ExpressionAttributeValues={":t": {"S": "t"}})["Count"] == 1,
                   "the big entry")
        throttled = None
        for _ in range(10):
            try:
                ddb.query(TableName=name, IndexName="by_team", KeyConditionExpression="team = :t",
                          ExpressionAttributeValues={":t": {"S": "t"}})
            except ClientError as error:
                throttled = error.response["Error"]["Code"]
                break
        assert throttled == "ProvisionedThroughputExceededException"
        # The other index's reads have their own capacity.
        ddb.query(TableName=name, IndexName="by_city", KeyConditionExpression="city = :c",
                  ExpressionAttributeValues={":c": {"S": "paris"}})
    finally:
        ddb.delete_table(TableName=name)


def test_index_read_capacity_is_reported_under_the_index(ddb, gsi_table):
    # [API-Q] ReturnConsumedCapacity INDEXES: a GSI query charges the index, not the table.
    name, _ = gsi_table
    page = ddb.query(TableName=name, IndexName="by_city", KeyConditionExpression="city = :c",
                     ReturnConsumedCapacity="INDEXES",
                     ExpressionAttributeValues={":c": {"S": "paris"}})
    consumed = page["ConsumedCapacity"]
    assert consumed["Table"]["CapacityUnits"] == 0
    assert consumed["GlobalSecondaryIndexes"]["by_city"]["CapacityUnits"] > 0


def test_an_opted_in_table_reads_its_gsi_consistently(ddb):
    # Beyond DynamoDB (README.md, "Secondary indexes"): with the tag
    # shoal:consistent-gsi-reads=true, a GSI read with ConsistentRead waits until the index
    # has applied every write committed before it, so a read right after a write sees it.
    # Without the tag the read is refused as DynamoDB refuses it (test above).
    name = unique_name("gsistrong")
    ddb.create_table(**gsi_table_request(
        name, Tags=[{"Key": "shoal:consistent-gsi-reads", "Value": "true"}]))
    try:
        for i in range(20):
            ddb.put_item(TableName=name, Item={"pk": {"S": f"s{i}"}, "city": {"S": "lyon"},
                                               "age": {"N": str(i)}})
            page = ddb.query(TableName=name, IndexName="by_city", ConsistentRead=True,
                             KeyConditionExpression="city = :c",
                             ExpressionAttributeValues={":c": {"S": "lyon"}})
            assert [item["pk"]["S"] for item in page["Items"]] == [f"s{j}" for j in range(i + 1)]
            ddb.update_item(TableName=name, Key={"pk": {"S": f"s{i}"}},
                            UpdateExpression="SET nick = :n",
                            ExpressionAttributeValues={":n": {"S": f"v{i}"}})
            scanned = ddb.scan(TableName=name, IndexName="by_city", ConsistentRead=True)
            assert {item["pk"]["S"]: item.get("nick") for item in scanned["Items"]}[f"s{i}"] == {
                "S": f"v{i}"}
    finally:
        ddb.delete_table(TableName=name)


def test_write_capacity_of_a_gsi_is_reported_under_the_index(ddb, gsi_table):
    # [DG-GSI] "Provisioned throughput considerations": a write that adds an index entry
    # consumes a write unit of the index too; ReturnConsumedCapacity INDEXES reports the
    # table's and each index's part, TOTAL their sum.
    name, _ = gsi_table
    item = {"pk": {"S": "cap1"}, "city": {"S": "nice"}, "age": {"N": "1"}}
    total = ddb.put_item(TableName=name, Item=item, ReturnConsumedCapacity="TOTAL")
    assert total["ConsumedCapacity"]["CapacityUnits"] == 2.0
    item["pk"] = {"S": "cap2"}
    indexes = ddb.put_item(TableName=name, Item=item, ReturnConsumedCapacity="INDEXES")
    consumed = indexes["ConsumedCapacity"]
    assert consumed["CapacityUnits"] == 2.0
    assert consumed["Table"]["CapacityUnits"] == 1.0
    assert consumed["GlobalSecondaryIndexes"] == {"by_city": {"CapacityUnits": 1.0}}
    # An item in no index costs the table only.
    plain = ddb.put_item(TableName=name, Item={"pk": {"S": "cap3"}},
                         ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert plain["CapacityUnits"] == 1.0 and "GlobalSecondaryIndexes" not in plain
    for pk in ("cap1", "cap2", "cap3"):
        ddb.delete_item(TableName=name, Key={"pk": {"S": pk}})
