"""Multi-attribute GSI keys: a GSI partition key and sort key of up to four attributes each,
declared as several HASH and RANGE elements of the index's KeySchema.

Sources, cited per test:
- [DG-MAK] DynamoDB developer guide, "Multi-attribute keys pattern" (GSI.DesignPattern.
  MultiAttributeKeys): up to four attributes per key, the partition attributes hashed together,
  each attribute keeping its own type, the tournament/region/round/bracket example, queries that
  give every partition key attribute and the sort key attributes left to right.
- [DG-GSI] DynamoDB developer guide, "Using Global Secondary Indexes", "Multi-attribute key
  schema" and sparse indexes (an item without an index key attribute is not in the index).
- [BOTOCORE] botocore's DynamoDB model (service-2.json), CreateGlobalSecondaryIndexAction's
  KeySchema: "Global secondary index supports up to 4 partition and up to 4 sort keys"; the
  KeySchema shape has no maximum length.
- [API-Q] DynamoDB API reference, Query: LastEvaluatedKey of an index holds the table's and
  the index's key attributes; "Query condition missed key schema element" and "Query key
  condition not supported" are its key-condition refusals (dynalite's validations, whose suite
  runs against DynamoDB).

DynamoDB's texts for refusing a malformed multi-attribute KeySchema (more than four attributes
in a part, a HASH after a RANGE) are not published: those tests check the exception's name
only, and notes/multi-attribute-keys.md records the texts Shoal chose.
"""

import pytest

from conftest import expect_error, unique_name
from test_gsi import eventually
from test_gsi_updates import wait_for_index

INDEX = "by_match"
TOURNAMENTS = ["WINTER2024", "SPRING2025"]
REGIONS = ["NA-EAST", "EU-WEST"]
ROUNDS = ["FINALS", "QUARTERFINALS", "SEMIFINALS"]
BRACKETS = [1, 2, 3]


def match_table_request(name):
    return dict(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "matchId", "AttributeType": "S"},
            {"AttributeName": "tournamentId", "AttributeType": "S"},
            {"AttributeName": "regionId", "AttributeType": "S"},
            {"AttributeName": "roundName", "AttributeType": "S"},
            {"AttributeName": "bracket", "AttributeType": "N"},
            {"AttributeName": "matchSeq", "AttributeType": "B"},
        ],
        KeySchema=[{"AttributeName": "matchId", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{
            "IndexName": INDEX,
            "KeySchema": [
                {"AttributeName": "tournamentId", "KeyType": "HASH"},
                {"AttributeName": "regionId", "KeyType": "HASH"},
                {"AttributeName": "roundName", "KeyType": "RANGE"},
                {"AttributeName": "bracket", "KeyType": "RANGE"},
                {"AttributeName": "matchSeq", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["winner"]},
        }],
    )


def matches():
    """Every (tournament, region, round, bracket, seq) with a match id; seq bytes 0x00 and 0x01
    so that a binary attribute in the middle of nothing and at the end both order."""
    rows = []
    for t in TOURNAMENTS:
        for r in REGIONS:
            for round_name in ROUNDS:
                for bracket in BRACKETS:
                    for seq in (b"\x01", b"\x00\x01"):
                        rows.append((t, r, round_name, bracket, seq))
    return rows


def match_item(index, row):
    t, r, round_name, bracket, seq = row
    return {
        "matchId": {"S": f"m{index:03d}"},
        "tournamentId": {"S": t},
        "regionId": {"S": r},
        "roundName": {"S": round_name},
        "bracket": {"N": str(bracket)},
        "matchSeq": {"B": seq},
        "winner": {"S": f"w{index}"},
        "referee": {"S": "hidden"},
    }


def expected(t, r, keep=lambda row: True):
    """Match ids of (t, r) in index order: round, then bracket, then seq, each in DynamoDB's
    order (strings and binaries by bytes, numbers by value)."""
    rows = [(row, i) for i, row in enumerate(matches()) if row[0] == t and row[1] == r and keep(row)]
    rows.sort(key=lambda pair: (pair[0][2].encode(), pair[0][3], pair[0][4]))
    return [f"m{i:03d}" for _, i in rows]


def query_ids(ddb, table, condition, values, **extra):
    ids = []
    kwargs = dict(TableName=table, IndexName=INDEX, KeyConditionExpression=condition,
                  ExpressionAttributeValues=values, **extra)
    while True:
        page = ddb.query(**kwargs)
        ids.extend(item["matchId"]["S"] for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return ids
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


PARTITION = "tournamentId = :t AND regionId = :r"


def partition_values(t="WINTER2024", r="NA-EAST", **more):
    values = {":t": {"S": t}, ":r": {"S": r}}
    values.update(more)
    return values


@pytest.fixture(scope="module")
def match_table(ddb):
    name = unique_name("multikey")
    created = ddb.create_table(**match_table_request(name))
    rows = matches()
    for start in range(0, len(rows), 25):
        ddb.batch_write_item(RequestItems={name: [
            {"PutRequest": {"Item": match_item(i, rows[i])}}
            for i in range(start, min(start + 25, len(rows)))
        ]})
    # Sparse: a match without a bracket is not in the index.
    ddb.put_item(TableName=name, Item={
        "matchId": {"S": "unscheduled"}, "tournamentId": {"S": "WINTER2024"},
        "regionId": {"S": "NA-EAST"}, "roundName": {"S": "FINALS"}, "matchSeq": {"B": b"\x09"}})
    for t in TOURNAMENTS:
        for r in REGIONS:
            eventually(lambda t=t, r=r: query_ids(ddb, name, PARTITION, partition_values(t, r))
                       == expected(t, r), f"every match of {t} {r}")
    yield name, created["TableDescription"]
    ddb.delete_table(TableName=name)


def test_describe_table_lists_every_key_attribute_in_order(ddb, match_table):
    # [BOTOCORE] [DG-MAK] The KeySchema comes back as given: partition attributes, then sort
    # attributes, each in key order.
    name, created = match_table
    for description in (created, ddb.describe_table(TableName=name)["Table"]):
        index = description["GlobalSecondaryIndexes"][0]
        assert index["IndexName"] == INDEX
        assert index["KeySchema"] == match_table_request(name)["GlobalSecondaryIndexes"][0]["KeySchema"]
    assert ddb.describe_table(TableName=name)["Table"]["GlobalSecondaryIndexes"][0]["IndexStatus"] == "ACTIVE"


def test_a_query_gives_every_partition_attribute_and_reads_in_sort_attribute_order(ddb, match_table):
    # [DG-MAK] Items of one partition key come back ordered by the sort key attributes compared
    # left to right; ScanIndexForward false reverses it; the sparse item is absent.
    name, _ = match_table
    assert query_ids(ddb, name, PARTITION, partition_values()) == expected("WINTER2024", "NA-EAST")
    assert query_ids(ddb, name, PARTITION, partition_values(), ScanIndexForward=False) == list(
        reversed(expected("WINTER2024", "NA-EAST")))
    # Another region of the same tournament is another partition key.
    assert query_ids(ddb, name, PARTITION, partition_values(r="EU-WEST")) == expected("WINTER2024", "EU-WEST")
    # Projection: the table's and the index's keys and the included attribute only.
    item = ddb.query(TableName=name, IndexName=INDEX, KeyConditionExpression=PARTITION,
                     ExpressionAttributeValues=partition_values(), Limit=1)["Items"][0]
    assert set(item) == {"matchId", "tournamentId", "regionId", "roundName", "bracket", "matchSeq", "winner"}


def test_sort_attributes_are_constrained_from_the_left(ddb, match_table):
    # [DG-MAK] Equalities on the leading sort key attributes and any sort key condition on the
    # last one given.
    name, _ = match_table
    semis = lambda row: row[2] == "SEMIFINALS"
    assert query_ids(ddb, name, PARTITION + " AND roundName = :round",
                     partition_values(**{":round": {"S": "SEMIFINALS"}})) == expected(
        "WINTER2024", "NA-EAST", semis)
    assert query_ids(ddb, name, PARTITION + " AND roundName = :round AND bracket >= :b",
                     partition_values(**{":round": {"S": "SEMIFINALS"}, ":b": {"N": "2"}})) == expected(
        "WINTER2024", "NA-EAST", lambda row: semis(row) and row[3] >= 2)
    assert query_ids(ddb, name, PARTITION + " AND roundName = :round AND bracket = :b AND matchSeq = :s",
                     partition_values(**{":round": {"S": "SEMIFINALS"}, ":b": {"N": "3"},
                                         ":s": {"B": b"\x00\x01"}})) == expected(
        "WINTER2024", "NA-EAST", lambda row: semis(row) and row[3] == 3 and row[4] == b"\x00\x01")
    assert query_ids(ddb, name, PARTITION + " AND begins_with(roundName, :p)",
                     partition_values(**{":p": {"S": "QUARTER"}})) == expected(
        "WINTER2024", "NA-EAST", lambda row: row[2] == "QUARTERFINALS")
    assert query_ids(ddb, name, PARTITION + " AND roundName BETWEEN :a AND :b",
                     partition_values(**{":a": {"S": "G"}, ":b": {"S": "S"}})) == expected(
        "WINTER2024", "NA-EAST", lambda row: "G" <= row[2] <= "S")
    counted = ddb.query(TableName=name, IndexName=INDEX, Select="COUNT",
                        KeyConditionExpression=PARTITION + " AND roundName = :round AND bracket < :b",
                        ExpressionAttributeValues=partition_values(**{":round": {"S": "FINALS"},
                                                                      ":b": {"N": "3"}}))
    assert counted["Count"] == len(expected("WINTER2024", "NA-EAST",
                                            lambda row: row[2] == "FINALS" and row[3] < 3))


def test_pages_carry_every_key_attribute(ddb, match_table):
    # [API-Q] An index's LastEvaluatedKey has the table's key and every index key attribute;
    # paging with Limit 4 returns the whole partition once, in order.
    name, _ = match_table
    page = ddb.query(TableName=name, IndexName=INDEX, KeyConditionExpression=PARTITION,
                     ExpressionAttributeValues=partition_values(), Limit=4)
    assert set(page["LastEvaluatedKey"]) == {"matchId", "tournamentId", "regionId", "roundName",
                                             "bracket", "matchSeq"}
    assert query_ids(ddb, name, PARTITION, partition_values(), Limit=4) == expected(
        "WINTER2024", "NA-EAST")
    # A start key from another partition key is refused, as for any index.
    expect_error(lambda: ddb.query(TableName=name, IndexName=INDEX, KeyConditionExpression=PARTITION,
                                   ExpressionAttributeValues=partition_values(r="EU-WEST"),
                                   ExclusiveStartKey=page["LastEvaluatedKey"]),
                 "ValidationException")


def test_key_conditions_that_skip_an_attribute_are_refused(ddb, match_table):
    # [DG-MAK] Every partition attribute with an equality; sort attributes without a gap, only
    # the last one given with a range. [API-Q] for the texts.
    name, _ = match_table

    def refused(condition, values, message):
        expect_error(lambda: ddb.query(TableName=name, IndexName=INDEX, KeyConditionExpression=condition,
                                       ExpressionAttributeValues=values),
                     "ValidationException", message)

    refused("tournamentId = :t", {":t": {"S": "WINTER2024"}},
            "Query condition missed key schema element: regionId")
    refused(PARTITION + " AND bracket = :b", partition_values(**{":b": {"N": "1"}}),
            "Query condition missed key schema element: roundName")
    refused(PARTITION + " AND roundName > :round AND bracket = :b",
            partition_values(**{":round": {"S": "A"}, ":b": {"N": "1"}}),
            "Query key condition not supported")
    refused("tournamentId = :t AND regionId > :r", partition_values(),
            "Query key condition not supported")
    refused(PARTITION + " AND bracket = :b AND roundName = :round AND matchSeq = :s AND bracket = :c",
            partition_values(**{":b": {"N": "1"}, ":round": {"S": "A"}, ":s": {"B": b"\x01"},
                                ":c": {"N": "2"}}),
            "KeyConditionExpressions must only contain one condition per key")


def test_a_filter_reads_the_sort_attributes_the_condition_leaves_out(ddb, match_table):
    # [DG-MAK] A query narrows by later sort attributes with a filter; the partition attributes
    # belong in the key condition (the rule for any index key).
    name, _ = match_table
    ids = query_ids(ddb, name, PARTITION, partition_values(**{":b": {"N": "2"}}),
                    FilterExpression="bracket = :b")
    assert ids == expected("WINTER2024", "NA-EAST", lambda row: row[3] == 2)
    expect_error(lambda: ddb.query(TableName=name, IndexName=INDEX, KeyConditionExpression=PARTITION,
                                   ExpressionAttributeValues=partition_values(),
                                   FilterExpression="regionId = :r"),
                 "ValidationException",
                 "Filter Expression can only contain non-primary key attributes: Primary key attribute: regionId")


def test_writes_keep_the_index_and_a_wrong_type_is_refused(ddb, match_table):
    # [DG-GSI] Changing one attribute of the partition key moves the entry to another index
    # partition; removing any key attribute takes the item out. [DG-MAK] each attribute keeps its
    # own type: a write with another type is refused naming the index.
    name, _ = match_table
    key = {"matchId": {"S": "mover"}}
    ddb.put_item(TableName=name, Item={**key, "tournamentId": {"S": "SUMMER"}, "regionId": {"S": "AP"},
                                       "roundName": {"S": "R1"}, "bracket": {"N": "1"},
                                       "matchSeq": {"B": b"\x01"}})
    summer = lambda r: query_ids(ddb, name, PARTITION, {":t": {"S": "SUMMER"}, ":r": {"S": r}})
    eventually(lambda: summer("AP") == ["mover"], "the new item")
    ddb.update_item(TableName=name, Key=key, UpdateExpression="SET regionId = :r",
                    ExpressionAttributeValues={":r": {"S": "SA"}})
    eventually(lambda: summer("AP") == [] and summer("SA") == ["mover"], "the moved entry")
    ddb.update_item(TableName=name, Key=key, UpdateExpression="REMOVE matchSeq")
    eventually(lambda: summer("SA") == [], "the removed key attribute")
    expect_error(lambda: ddb.put_item(TableName=name, Item={**key, "bracket": {"S": "one"}}),
                 "ValidationException",
                 "One or more parameter values were invalid: Type mismatch for Index Key bracket "
                 "Expected: N Actual: S IndexName: by_match")


def test_a_scan_of_the_index_returns_each_entry_once(ddb, match_table):
    # [DG-GSI] Scan with IndexName reads every entry; the sparse item is not one.
    name, _ = match_table
    seen = []
    kwargs = dict(TableName=name, IndexName=INDEX, Limit=7)
    while True:
        page = ddb.scan(**kwargs)
        seen.extend(item["matchId"]["S"] for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    ids = [i for i in seen if i.startswith("m") and i != "mover"]
    assert sorted(ids) == [f"m{i:03d}" for i in range(len(matches()))]
    assert "unscheduled" not in seen


def test_an_index_with_a_multi_attribute_key_is_added_online(ddb):
    # [DG-MAK] "no backfilling of synthetic keys": an index on existing attributes is created
    # on a table with data and serves them once ACTIVE.
    name = unique_name("multikeyadd")
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    try:
        for i in range(30):
            ddb.put_item(TableName=name, Item={"id": {"S": f"e{i:02d}"}, "org": {"S": f"o{i % 2}"},
                                               "dept": {"N": str(i % 3)}, "team": {"S": f"t{i % 5}"},
                                               "level": {"N": str(i)}})
        ddb.update_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "org", "AttributeType": "S"},
                                  {"AttributeName": "dept", "AttributeType": "N"},
                                  {"AttributeName": "team", "AttributeType": "S"},
                                  {"AttributeName": "level", "AttributeType": "N"}],
            GlobalSecondaryIndexUpdates=[{"Create": {
                "IndexName": "by_org",
                "KeySchema": [{"AttributeName": "org", "KeyType": "HASH"},
                              {"AttributeName": "dept", "KeyType": "HASH"},
                              {"AttributeName": "team", "KeyType": "RANGE"},
                              {"AttributeName": "level", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"}}}])
        described = wait_for_index(ddb, name, "by_org", "ACTIVE")
        assert [element["KeyType"] for element in described["KeySchema"]] == ["HASH", "HASH", "RANGE", "RANGE"]
        got = ddb.query(TableName=name, IndexName="by_org",
                        KeyConditionExpression="org = :o AND dept = :d AND team = :t",
                        ExpressionAttributeValues={":o": {"S": "o1"}, ":d": {"N": "1"}, ":t": {"S": "t3"}})
        want = sorted((i for i in range(30) if i % 2 == 1 and i % 3 == 1 and i % 5 == 3))
        assert [item["id"]["S"] for item in got["Items"]] == [f"e{i:02d}" for i in want]
    finally:
        ddb.delete_table(TableName=name)


def test_a_malformed_multi_attribute_key_schema_is_refused(ddb):
    # [BOTOCORE] "up to 4 partition and up to 4 sort keys"; HASH elements first (the order
    # DynamoDB documents for every KeySchema). The texts are Shoal's (see the module docstring).
    def create(key_schema, names):
        return lambda: ddb.create_table(
            TableName=unique_name("badkey"), BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}]
            + [{"AttributeName": n, "AttributeType": "S"} for n in names],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[{"IndexName": "bad", "KeySchema": key_schema,
                                     "Projection": {"ProjectionType": "ALL"}}])

    names = ["a", "b", "c", "d", "e"]
    five_hash = [{"AttributeName": n, "KeyType": "HASH"} for n in names]
    expect_error(create(five_hash, names), "ValidationException", contains="at most 4 HASH")
    five_range = [{"AttributeName": "id", "KeyType": "HASH"}] + [
        {"AttributeName": n, "KeyType": "RANGE"} for n in names]
    expect_error(create(five_range, names), "ValidationException", contains="at most 4 RANGE")
    interleaved = [{"AttributeName": "a", "KeyType": "HASH"}, {"AttributeName": "b", "KeyType": "RANGE"},
                   {"AttributeName": "c", "KeyType": "HASH"}]
    expect_error(create(interleaved, ["a", "b", "c"]), "ValidationException",
                 contains="HASH KeySchemaElement")
