"""Local secondary indexes: CreateTable's index rules, DescribeTable's LocalSecondaryIndexes,
Query and Scan with IndexName (order, sparse index, projections, Select, paging), and index
maintenance through puts, updates and deletes.

Sources, cited per test:
- [API-CT] DynamoDB API reference, CreateTable (LocalSecondaryIndexes, Projection) and
  botocore's service-2.json for dynamodb 2012-08-10 (LocalSecondaryIndexDescription members).
- [DG-LSI] DynamoDB developer guide, "Local secondary indexes" (sparse indexes, attribute
  projections, fetching non-projected attributes, "Querying a local secondary index").
- [API-Q] DynamoDB API reference, Query (IndexName, Select, ExclusiveStartKey/LastEvaluatedKey).
- [DYNALITE] dynalite's validations/createTable.js and its test suite, which runs against
  DynamoDB (the index validation messages).
- [API-PutItem] DynamoDB API reference, PutItem (ReturnItemCollectionMetrics,
  ItemCollectionMetrics: ItemCollectionKey, SizeEstimateRangeGB).
- [API-BatchWriteItem] DynamoDB API reference, BatchWriteItem (ItemCollectionMetrics by table).
- [MOTO] moto's tests of create_table with indexes (test_dynamodb_exceptions.py), written from
  recorded DynamoDB answers ("Some AttributeDefinitions are not used").
"""

import time

import pytest

from conftest import expect_error, unique_name

ITEMS = 12


def lsi_table_request(name, **overrides):
    request = dict(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "rank", "AttributeType": "N"},
            {"AttributeName": "tag", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        LocalSecondaryIndexes=[
            {"IndexName": "by_rank",
             "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                           {"AttributeName": "rank", "KeyType": "RANGE"}],
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["shown"]}},
            {"IndexName": "by_tag",
             "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                           {"AttributeName": "tag", "KeyType": "RANGE"}],
             "Projection": {"ProjectionType": "KEYS_ONLY"}},
        ],
    )
    request.update(overrides)
    return request


@pytest.fixture(scope="module")
def lsi_table(ddb):
    name = unique_name("lsi")
    created = ddb.create_table(**lsi_table_request(name))
    # Items p/0..11: rank = 11 - i (so index order reverses table order), none for i % 4 == 3
    # (a sparse index holds only items with its key).
    for i in range(ITEMS):
        item = {"pk": {"S": "p"}, "sk": {"S": f"s{i:02d}"}, "shown": {"S": f"v{i}"},
                "hidden": {"S": "h"}}
        if i % 4 != 3:
            item["rank"] = {"N": str(ITEMS - 1 - i)}
        ddb.put_item(TableName=name, Item=item)
    ddb.put_item(TableName=name, Item={"pk": {"S": "other"}, "sk": {"S": "x"},
                                       "rank": {"N": "1"}})
    yield name, created["TableDescription"]
    ddb.delete_table(TableName=name)


def ranked():
    """The (rank, sk) of every item of p in the index, in index order."""
    pairs = [(ITEMS - 1 - i, f"s{i:02d}") for i in range(ITEMS) if i % 4 != 3]
    return sorted(pairs)


def query_index(ddb, table, **extra):
    return ddb.query(TableName=table, IndexName="by_rank", KeyConditionExpression="pk = :p",
                     ExpressionAttributeValues={":p": {"S": "p"}}, **extra)


def test_describe_table_shows_local_indexes(ddb, lsi_table):
    # [API-CT] LocalSecondaryIndexDescription: IndexName, KeySchema, Projection,
    # IndexSizeBytes, ItemCount, IndexArn.
    name, created = lsi_table
    for description in (created, ddb.describe_table(TableName=name)["Table"]):
        indexes = {index["IndexName"]: index for index in description["LocalSecondaryIndexes"]}
        assert set(indexes) == {"by_rank", "by_tag"}
        by_rank = indexes["by_rank"]
        assert by_rank["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                        {"AttributeName": "rank", "KeyType": "RANGE"}]
        assert by_rank["Projection"] == {"ProjectionType": "INCLUDE",
                                         "NonKeyAttributes": ["shown"]}
        assert by_rank["IndexArn"] == f"{description['TableArn']}/index/by_rank"
        assert isinstance(by_rank["IndexSizeBytes"], int)
        assert isinstance(by_rank["ItemCount"], int)
        assert indexes["by_tag"]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
        assert "GlobalSecondaryIndexes" not in description
        names = {d["AttributeName"] for d in description["AttributeDefinitions"]}
        assert names == {"pk", "sk", "rank", "tag"}
    # ItemCount and IndexSizeBytes count the index's entries: the sparse index holds the items
    # with a rank (9 of p's 12, and other's), none has a tag. DynamoDB refreshes these about
    # every six hours; Shoal's DescribeTable counts them live, as it counts the table's.
    described = {index["IndexName"]: index
                 for index in ddb.describe_table(TableName=name)["Table"]["LocalSecondaryIndexes"]}
    assert described["by_rank"]["ItemCount"] == ITEMS - ITEMS // 4 + 1
    assert described["by_rank"]["IndexSizeBytes"] > 0
    assert (described["by_tag"]["ItemCount"], described["by_tag"]["IndexSizeBytes"]) == (0, 0)


def test_query_orders_by_the_index_sort_key_and_skips_items_without_it(ddb, lsi_table):
    # [DG-LSI] "Querying a local secondary index": results in index sort key order; sparse
    # indexes hold only items that have the index sort key.
    name, _ = lsi_table
    response = query_index(ddb, name, ConsistentRead=True)
    found = [(int(item["rank"]["N"]), item["sk"]["S"]) for item in response["Items"]]
    assert found == ranked()
    assert response["Count"] == len(ranked())
    backwards = query_index(ddb, name, ScanIndexForward=False)
    assert [(int(i["rank"]["N"]), i["sk"]["S"]) for i in backwards["Items"]] == ranked()[::-1]


def test_key_conditions_on_the_index_sort_key(ddb, lsi_table):
    # [API-Q] KeyConditionExpression names the index's keys when IndexName is given.
    name, _ = lsi_table
    response = ddb.query(TableName=name, IndexName="by_rank",
                         KeyConditionExpression="pk = :p AND #r BETWEEN :l AND :h",
                         ExpressionAttributeNames={"#r": "rank"},
                         ExpressionAttributeValues={":p": {"S": "p"}, ":l": {"N": "2"},
                                                    ":h": {"N": "6"}})
    assert [int(i["rank"]["N"]) for i in response["Items"]] == [r for r, _ in ranked()
                                                                 if 2 <= r <= 6]


def test_index_pages_resume_from_the_index_last_evaluated_key(ddb, lsi_table):
    # [API-Q] For an index, LastEvaluatedKey holds the table key and the index key.
    name, _ = lsi_table
    seen, start = [], None
    for _ in range(ITEMS + 1):
        extra = {"Limit": 2}
        if start:
            extra["ExclusiveStartKey"] = start
        page = query_index(ddb, name, **extra)
        seen += [(int(i["rank"]["N"]), i["sk"]["S"]) for i in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
        assert set(start) == {"pk", "sk", "rank"}
    assert seen == ranked()


def test_projections_and_select(ddb, lsi_table):
    # [DG-LSI] "Attribute projections": an index returns its projected attributes; asking for
    # others makes DynamoDB fetch them from the table. [API-Q] Select.
    name, _ = lsi_table
    default = query_index(ddb, name, Limit=1)["Items"][0]
    assert set(default) == {"pk", "sk", "rank", "shown"}
    projected = query_index(ddb, name, Limit=1, Select="ALL_PROJECTED_ATTRIBUTES")["Items"][0]
    assert projected == default
    whole = query_index(ddb, name, Limit=1, Select="ALL_ATTRIBUTES")["Items"][0]
    assert whole["hidden"] == {"S": "h"}
    fetched = query_index(ddb, name, Limit=1, ProjectionExpression="#h, shown",
                          ExpressionAttributeNames={"#h": "hidden"})["Items"][0]
    assert fetched == {"hidden": {"S": "h"}, "shown": default["shown"]}
    keys_only = ddb.query(TableName=name, IndexName="by_tag",
                          KeyConditionExpression="pk = :p",
                          ExpressionAttributeValues={":p": {"S": "p"}})
    assert keys_only["Count"] == 0  # no item has a tag yet: the index is empty
    count = query_index(ddb, name, Select="COUNT")
    assert count["Count"] == len(ranked()) and "Items" not in count


def test_reads_of_an_index_are_charged(ddb, lsi_table):
    # [DG-LSI] "Read capacity units": index reads are charged; non-projected attributes cost
    # an additional read of the table item.
    name, _ = lsi_table
    plain = query_index(ddb, name, ReturnConsumedCapacity="TOTAL", ConsistentRead=True)
    fetched = query_index(ddb, name, ReturnConsumedCapacity="TOTAL", ConsistentRead=True,
                          Select="ALL_ATTRIBUTES")
    assert plain["ConsumedCapacity"]["CapacityUnits"] >= 1.0
    assert fetched["ConsumedCapacity"]["CapacityUnits"] > plain["ConsumedCapacity"]["CapacityUnits"]


def test_index_capacity_is_reported_per_index(ddb, lsi_table):
    # [API-Q] ReturnConsumedCapacity INDEXES: ConsumedCapacity's Table and
    # LocalSecondaryIndexes members (botocore's ConsumedCapacity shape).
    name, _ = lsi_table
    response = query_index(ddb, name, ReturnConsumedCapacity="INDEXES")
    consumed = response["ConsumedCapacity"]
    assert consumed["Table"]["CapacityUnits"] == 0.0
    assert consumed["LocalSecondaryIndexes"]["by_rank"]["CapacityUnits"] == \
        consumed["CapacityUnits"] > 0


def test_scan_of_an_index_reads_its_entries_only(ddb, lsi_table):
    # [API-Q] Scan with IndexName reads the index; [DG-LSI] sparse indexes.
    name, _ = lsi_table
    index_scan = ddb.scan(TableName=name, IndexName="by_rank")
    assert index_scan["Count"] == len(ranked()) + 1  # and the item of partition key "other"
    table_scan = ddb.scan(TableName=name)
    assert table_scan["Count"] == ITEMS + 1
    # Pages of an index Scan walk every partition and resume from the index key ([API-Q]).
    seen, start = [], None
    for _ in range(ITEMS + 5):
        extra = {"ExclusiveStartKey": start} if start else {}
        page = ddb.scan(TableName=name, IndexName="by_rank", Limit=2, **extra)
        seen += [(item["pk"]["S"], item["sk"]["S"]) for item in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
        assert set(start) == {"pk", "sk", "rank"}
    assert sorted(seen) == sorted([("p", sk) for _, sk in ranked()] + [("other", "x")])
    # Parallel segments of the index together hold it once.
    segments = [ddb.scan(TableName=name, IndexName="by_rank", Segment=i, TotalSegments=3)
                for i in range(3)]
    assert sum(segment["Count"] for segment in segments) == len(ranked()) + 1


def test_writes_keep_the_index_in_step(ddb, make_table):
    # [DG-LSI] "Item collections" and index maintenance: DynamoDB adds, moves and removes index
    # entries as items change, atomically with the table write.
    name = unique_name("lsi")
    ddb.create_table(**lsi_table_request(name))
    try:
        ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"S": "1"},
                                           "tag": {"S": "m"}})
        ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"S": "2"},
                                           "tag": {"S": "b"}})

        def tags():
            response = ddb.query(TableName=name, IndexName="by_tag", ConsistentRead=True,
                                 KeyConditionExpression="pk = :p",
                                 ExpressionAttributeValues={":p": {"S": "a"}})
            return [(i["tag"]["S"], i["sk"]["S"]) for i in response["Items"]]

        assert tags() == [("b", "2"), ("m", "1")]

        def tag_entries():
            described = ddb.describe_table(TableName=name)["Table"]["LocalSecondaryIndexes"]
            by_tag = [index for index in described if index["IndexName"] == "by_tag"][0]
            return by_tag["ItemCount"], by_tag["IndexSizeBytes"] > 0

        assert tag_entries() == (2, True)
        ddb.update_item(TableName=name, Key={"pk": {"S": "a"}, "sk": {"S": "1"}},
                        UpdateExpression="SET tag = :t", ExpressionAttributeValues={":t": {"S": "a"}})
        assert tags() == [("a", "1"), ("b", "2")]
        ddb.update_item(TableName=name, Key={"pk": {"S": "a"}, "sk": {"S": "2"}},
                        UpdateExpression="REMOVE tag")
        assert tags() == [("a", "1")]
        ddb.delete_item(TableName=name, Key={"pk": {"S": "a"}, "sk": {"S": "1"}})
        assert tags() == []
        assert tag_entries() == (0, False)
        # A write whose index key has the wrong type is refused ([DYNALITE] putItem tests).
        expect_error(lambda: ddb.put_item(TableName=name, Item={
            "pk": {"S": "a"}, "sk": {"S": "3"}, "tag": {"N": "1"}}), "ValidationException",
            "One or more parameter values were invalid: Type mismatch for Index Key tag "
            "Expected: S Actual: N IndexName: by_tag")
        # The same for an update, whose new image the leader checks ([DYNALITE] updateItem
        # tests: "Type mismatch for Index Key ... IndexName: ...").
        expect_error(lambda: ddb.update_item(
            TableName=name, Key={"pk": {"S": "a"}, "sk": {"S": "3"}},
            UpdateExpression="SET tag = :t", ExpressionAttributeValues={":t": {"N": "1"}}),
            "ValidationException",
            "One or more parameter values were invalid: Type mismatch for Index Key tag "
            "Expected: S Actual: N IndexName: by_tag")
        # Checked before the condition, as input.
        expect_error(lambda: ddb.put_item(TableName=name, Item={
            "pk": {"S": "a"}, "sk": {"S": "3"}, "tag": {"N": "1"}},
            ConditionExpression="attribute_exists(nothing)"), "ValidationException")
        batch = ddb.batch_write_item(RequestItems={name: [
            {"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"S": str(i)},
                                     "tag": {"S": f"t{i}"}}}} for i in range(5)]},
            ReturnItemCollectionMetrics="SIZE")
        assert tags() == [(f"t{i}", str(i)) for i in range(5)]
        # [API-BatchWriteItem] ItemCollectionMetrics: per table, one entry per collection.
        [collection] = batch["ItemCollectionMetrics"][name]
        assert collection["ItemCollectionKey"] == {"pk": {"S": "a"}}
        assert len(collection["SizeEstimateRangeGB"]) == 2
        # [API-PutItem] ReturnItemCollectionMetrics SIZE: for a table with local secondary
        # indexes, the collection's partition key and a size range in GB.
        metrics = ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"S": "9"}},
                               ReturnItemCollectionMetrics="SIZE")["ItemCollectionMetrics"]
        assert metrics["ItemCollectionKey"] == {"pk": {"S": "a"}}
        low, high = metrics["SizeEstimateRangeGB"]
        assert low <= 0.001 < high
        deleted = ddb.delete_item(TableName=name, Key={"pk": {"S": "a"}, "sk": {"S": "9"}},
                                  ReturnItemCollectionMetrics="SIZE")
        assert deleted["ItemCollectionMetrics"]["ItemCollectionKey"] == {"pk": {"S": "a"}}
        quiet = ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"S": "9"}})
        assert "ItemCollectionMetrics" not in quiet
        # [DG-LSI] "Write capacity units": a write that adds an index entry also writes the
        # index, and INDEXES reports that index's share.
        indexed = ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"S": "9"},
                                                     "tag": {"S": "z"}},
                               ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
        assert indexed["LocalSecondaryIndexes"] == {"by_tag": {"CapacityUnits": 1.0}}
        assert indexed["Table"]["CapacityUnits"] == 1.0
        assert indexed["CapacityUnits"] == 2.0
    finally:
        ddb.delete_table(TableName=name)


def test_tables_without_local_indexes_report_no_item_collection(ddb, table):
    # [API-PutItem] ItemCollectionMetrics "is only returned if the ReturnItemCollectionMetrics
    # parameter was specified" and the table has local secondary indexes.
    response = ddb.put_item(TableName=table, Item={"pk": {"S": "a"}},
                            ReturnItemCollectionMetrics="SIZE")
    assert "ItemCollectionMetrics" not in response
    expect_error(lambda: ddb.put_item(TableName=table, Item={"pk": {"S": "a"}},
                                      ReturnItemCollectionMetrics="ALL"),
                 "ValidationException",
                 "1 validation error detected: Value 'ALL' at 'returnItemCollectionMetrics' "
                 "failed to satisfy constraint: Member must satisfy enum value set: [SIZE, NONE]")


def test_unknown_index_names_are_refused(ddb, lsi_table):
    # [API-Q] an IndexName the table does not have.
    name, _ = lsi_table
    expect_error(lambda: ddb.query(TableName=name, IndexName="nope",
                                   KeyConditionExpression="pk = :p",
                                   ExpressionAttributeValues={":p": {"S": "p"}}),
                 "ValidationException", "The table does not have the specified index: nope")


def _invalid(ddb, request, message):
    expect_error(lambda: ddb.create_table(**request), "ValidationException", message)
    expect_error(lambda: ddb.describe_table(TableName=request["TableName"]),
                 "ResourceNotFoundException")


def test_local_index_needs_a_table_sort_key(ddb):
    # [DYNALITE] createTable.js.
    request = lsi_table_request(unique_name("lsi"))
    request["KeySchema"] = request["KeySchema"][:1]
    _invalid(ddb, request, "One or more parameter values were invalid: Table KeySchema does not "
             "have a range key, which is required when specifying a LocalSecondaryIndex")


def test_local_index_hash_key_must_be_the_tables(ddb):
    # [DYNALITE] createTable.js.
    request = lsi_table_request(unique_name("lsi"))
    request["LocalSecondaryIndexes"][0]["KeySchema"] = [
        {"AttributeName": "tag", "KeyType": "HASH"}, {"AttributeName": "rank", "KeyType": "RANGE"}]
    _invalid(ddb, request, "One or more parameter values were invalid: Index KeySchema does not "
             "have the same leading hash key as table KeySchema for index: by_rank. index hash "
             "key: tag, table hash key: pk")


def test_duplicate_index_names_and_the_index_limit(ddb):
    # [DYNALITE] createTable.js; [API-CT] at most 5 local secondary indexes per table.
    request = lsi_table_request(unique_name("lsi"))
    request["LocalSecondaryIndexes"][1]["IndexName"] = "by_rank"
    _invalid(ddb, request,
             "One or more parameter values were invalid: Duplicate index name: by_rank")
    request = lsi_table_request(unique_name("lsi"))
    index = request["LocalSecondaryIndexes"][0]
    request["LocalSecondaryIndexes"] = [dict(index, IndexName=f"index{i}") for i in range(6)]
    _invalid(ddb, request, "One or more parameter values were invalid: Number of "
             "LocalSecondaryIndexes exceeds per-table limit of 5")


def test_attribute_definitions_must_be_used_and_defined(ddb):
    # [MOTO] "Some AttributeDefinitions are not used"; [DYNALITE] undefined index keys.
    request = lsi_table_request(unique_name("lsi"))
    request["AttributeDefinitions"].append({"AttributeName": "spare", "AttributeType": "S"})
    _invalid(ddb, request, "One or more parameter values were invalid: Some AttributeDefinitions "
             "are not used. AttributeDefinitions: [pk, sk, rank, tag, spare], keys used: "
             "[pk, sk, rank, tag]")
    request = lsi_table_request(unique_name("lsi"))
    request["AttributeDefinitions"] = request["AttributeDefinitions"][:3]
    _invalid(ddb, request, "One or more parameter values were invalid: Some index key "
             "attributes are not defined in AttributeDefinitions. Keys: [pk, tag], "
             "AttributeDefinitions: [pk, sk, rank]")


def test_projection_rules(ddb):
    # [DYNALITE] createTable.js: NonKeyAttributes only with INCLUDE; ProjectionType required.
    request = lsi_table_request(unique_name("lsi"))
    request["LocalSecondaryIndexes"][1]["Projection"] = {"ProjectionType": "KEYS_ONLY",
                                                         "NonKeyAttributes": ["x"]}
    _invalid(ddb, request, "One or more parameter values were invalid: ProjectionType is "
             "KEYS_ONLY, but NonKeyAttributes is specified")
    request = lsi_table_request(unique_name("lsi"))
    request["LocalSecondaryIndexes"][1]["Projection"] = {}
    _invalid(ddb, request, "One or more parameter values were invalid: Unknown ProjectionType: null")


def test_local_and_global_indexes_together(ddb):
    # [DG-LSI] A table may have both kinds; each write maintains both (the LSI in the same
    # write, the GSI eventually).
    name = unique_name("lsi")
    request = lsi_table_request(name)
    request["GlobalSecondaryIndexes"] = [{
        "IndexName": "by_tag_global",
        "KeySchema": [{"AttributeName": "tag", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "ALL"}}]
    ddb.create_table(**request)
    try:
        ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": "1"}, "tag": {"S": "t"},
                                           "rank": {"N": "5"}})
        local = ddb.query(TableName=name, IndexName="by_tag", KeyConditionExpression="pk = :p",
                          ExpressionAttributeValues={":p": {"S": "p"}})
        assert local["Count"] == 1
        deadline = time.monotonic() + 15
        while True:
            page = ddb.query(TableName=name, IndexName="by_tag_global",
                             KeyConditionExpression="tag = :t",
                             ExpressionAttributeValues={":t": {"S": "t"}})
            if page["Count"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert page["Items"] == [{"pk": {"S": "p"}, "sk": {"S": "1"}, "tag": {"S": "t"},
                                  "rank": {"N": "5"}}]
    finally:
        ddb.delete_table(TableName=name)
