"""Scan: whole-table pagination, Limit, parallel scan segments, Select COUNT and the
segment parameter checks."""

import pytest

from conftest import expect_error

COUNT = 60


# Every test here but test_empty_table only reads: one table serves them.
@pytest.fixture(scope="module")
def seeded(ddb, make_module_table):
    table = make_module_table()
    # Many partition keys, so the items spread over every partition of the table.
    for start in range(0, COUNT, 25):
        ddb.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {"pk": {"S": f"item-{i}"}, "n": {"N": str(i)}}}}
            for i in range(start, min(COUNT, start + 25))]})
    return table


def scan_all(ddb, table, max_pages=200, **params):
    """Every page of a scan, following LastEvaluatedKey (bounded)."""
    pages = []
    for _ in range(max_pages):
        response = ddb.scan(TableName=table, **params)
        pages.append(response)
        if "LastEvaluatedKey" not in response:
            return pages
        params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    raise AssertionError(f"scan did not end within {max_pages} pages")


def keys(pages):
    return [item["pk"]["S"] for page in pages for item in page["Items"]]


def test_full_scan_returns_every_item_exactly_once(ddb, seeded):
    found = keys(scan_all(ddb, seeded, ConsistentRead=True))
    assert sorted(found) == sorted(f"item-{i}" for i in range(COUNT))


def test_limit_bounds_every_page(ddb, seeded):
    pages = scan_all(ddb, seeded, Limit=7, ConsistentRead=True)
    assert all(page["ScannedCount"] <= 7 for page in pages)
    assert sorted(keys(pages)) == sorted(f"item-{i}" for i in range(COUNT))


def test_paginator(ddb, seeded):
    pages = ddb.get_paginator("scan").paginate(TableName=seeded, PaginationConfig={"PageSize": 9})
    assert sum(page["Count"] for page in pages) == COUNT


@pytest.mark.parametrize("total", [1, 2, 3, 4, 7])
def test_parallel_scan_segments_partition_the_table(ddb, seeded, total):
    by_segment = [keys(scan_all(ddb, seeded, Segment=s, TotalSegments=total, ConsistentRead=True))
                  for s in range(total)]
    everything = [key for segment in by_segment for key in segment]
    # Disjoint and complete.
    assert len(everything) == len(set(everything)) == COUNT


def test_select_count(ddb, seeded):
    pages = scan_all(ddb, seeded, Select="COUNT", ConsistentRead=True)
    assert all("Items" not in page for page in pages)
    assert sum(page["Count"] for page in pages) == COUNT


def test_select_count_with_filter(ddb, seeded):
    pages = scan_all(ddb, seeded, Select="COUNT", FilterExpression="n < :v",
                     ExpressionAttributeValues={":v": {"N": "10"}}, ConsistentRead=True)
    assert sum(page["Count"] for page in pages) == 10
    assert sum(page["ScannedCount"] for page in pages) == COUNT


# Scan words the Select rules without Query's "1 validation error detected: " envelope (a moto
# test module marked aws_verified records both; test_query.py has Query's).
@pytest.mark.parametrize("select, choice", [("ALL_ATTRIBUTES", "ALL_ATTRIBUTES"),
                                            ("COUNT", "only the Count")])
def test_select_other_than_specific_attributes_with_a_projection_is_refused(ddb, seeded, select,
                                                                             choice):
    expect_error(lambda: ddb.scan(TableName=seeded, Select=select, ProjectionExpression="n"),
                 "ValidationException",
                 f"Cannot specify the ProjectionExpression when choosing to get {choice}")
    expect_error(lambda: ddb.scan(TableName=seeded, Select=select, AttributesToGet=["n"]),
                 "ValidationException",
                 f"Cannot specify the AttributesToGet when choosing to get {choice}")


def test_select_specific_attributes(ddb, seeded):
    pages = scan_all(ddb, seeded, Select="SPECIFIC_ATTRIBUTES", ProjectionExpression="n",
                     ConsistentRead=True)
    items = [item for page in pages for item in page["Items"]]
    assert len(items) == COUNT and all(set(item) == {"n"} for item in items)
    expect_error(lambda: ddb.scan(TableName=seeded, Select="SPECIFIC_ATTRIBUTES"),
                 "ValidationException",
                 "Must specify the AttributesToGet or ProjectionExpression when choosing to get "
                 "SPECIFIC_ATTRIBUTES")


def test_an_index_the_table_does_not_have_is_refused(ddb, seeded):
    expect_error(lambda: ddb.scan(TableName=seeded, IndexName="by-n"), "ValidationException",
                 "The table does not have the specified index: by-n")


def test_empty_table(ddb, table):
    pages = scan_all(ddb, table)
    assert keys(pages) == [] and sum(page["Count"] for page in pages) == 0


def test_segment_without_total_segments_is_refused(ddb, seeded):
    expect_error(lambda: ddb.scan(TableName=seeded, Segment=0), "ValidationException",
                 "The TotalSegments parameter is required but was not present in the request "
                 "when Segment parameter is present")


def test_total_segments_without_segment_is_refused(ddb, seeded):
    expect_error(lambda: ddb.scan(TableName=seeded, TotalSegments=2), "ValidationException",
                 "The Segment parameter is required but was not present in the request when "
                 "parameter TotalSegments is present")


def test_segment_not_below_total_segments_is_refused(ddb, seeded):
    expect_error(lambda: ddb.scan(TableName=seeded, Segment=4, TotalSegments=4),
                 "ValidationException",
                 "The Segment parameter is zero-based and must be less than parameter "
                 "TotalSegments: Segment: 4 is not less than TotalSegments: 4")


def test_total_segments_out_of_range_is_refused(ddb, seeded):
    expect_error(lambda: ddb.scan(TableName=seeded, Segment=0, TotalSegments=1000001),
                 "ValidationException",
                 "1 validation error detected: Value '1000001' at 'totalSegments' failed to "
                 "satisfy constraint: Member must have value less than or equal to 1000000")


def test_scan_of_a_missing_table(ddb):
    expect_error(lambda: ddb.scan(TableName="conf-no-such-table"), "ResourceNotFoundException",
                 "Requested resource not found")


# A single Scan of a small table returns all of it: DynamoDB fills a page up to 1 MB or Limit
# across its partitions (API reference, Scan: "A single Scan operation reads up to the maximum
# number of items set (if using the Limit parameter) or a maximum of 1 MB of data"). Before,
# Shoal answered one partition's items per call (issue 21).
def test_one_scan_of_a_small_table_returns_every_item(ddb, seeded):
    response = ddb.scan(TableName=seeded)
    assert sorted(item["pk"]["S"] for item in response["Items"]) == sorted(
        f"item-{i}" for i in range(COUNT))
    assert response["Count"] == response["ScannedCount"] == COUNT
    assert "LastEvaluatedKey" not in response


# LastEvaluatedKey is the key of the last item evaluated (API reference, Scan:
# "LastEvaluatedKey: The primary key of the item where the operation stopped"), so clients and
# ORMs can decode it as a key and resume from it.
def test_last_evaluated_key_is_the_last_items_key(ddb, seeded):
    for limit in (1, 7, 25):
        response = ddb.scan(TableName=seeded, Limit=limit, ConsistentRead=True)
        assert len(response["Items"]) == limit
        assert response["LastEvaluatedKey"] == {"pk": response["Items"][-1]["pk"]}


# A start key must belong to the segment it resumes; DynamoDB's message as ScyllaDB's Alternator
# tests verified on AWS (scylladb/scylladb#9270, test_scan.py::
# test_scan_parallel_with_exclusive_start_key).
def test_a_start_key_of_another_segment_is_refused(ddb, seeded):
    total = 4
    first = ddb.scan(TableName=seeded, Segment=0, TotalSegments=total, Limit=1)
    start = first["LastEvaluatedKey"]
    # The same segment resumes after it...
    ddb.scan(TableName=seeded, Segment=0, TotalSegments=total, ExclusiveStartKey=start)
    # ...another is refused.
    expect_error(
        lambda: ddb.scan(TableName=seeded, Segment=1, TotalSegments=total,
                         ExclusiveStartKey=start),
        "ValidationException",
        "The provided starting key is invalid: Invalid ExclusiveStartKey. Please use "
        f"ExclusiveStartKey with correct Segment. TotalSegments: {total} Segment: 1")


# A page's reads are rounded up once (developer guide, "Read consumption for Scan": the sizes
# of all items read are summed and rounded up to the next 4 KB), whatever the number of
# partitions it crossed: 60 small items read eventually consistently cost 0.5 units.
def test_a_page_is_charged_once_for_all_it_read(ddb, seeded):
    response = ddb.scan(TableName=seeded, ReturnConsumedCapacity="TOTAL")
    assert response["ConsumedCapacity"]["CapacityUnits"] == 0.5
    strong = ddb.scan(TableName=seeded, ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
    assert strong["ConsumedCapacity"]["CapacityUnits"] == 1.0


@pytest.mark.parametrize("total", [2, 5])
def test_parallel_scan_resumed_with_exclusive_start_key(ddb, seeded, total):
    # Each segment paged with Limit and resumed from its own LastEvaluatedKey covers its
    # share once; together the segments cover the table once (Developer Guide, Parallel scan).
    everything = []
    for segment in range(total):
        pages = scan_all(ddb, seeded, Segment=segment, TotalSegments=total, Limit=4,
                         ConsistentRead=True)
        assert all(len(page["Items"]) <= 4 for page in pages)
        everything += keys(pages)
    assert sorted(everything) == sorted(f"item-{i}" for i in range(COUNT))
