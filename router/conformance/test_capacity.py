"""Capacity as DynamoDB admits it: validation before admission, burst credit on small
provisioned tables, throttling answered with ProvisionedThroughputExceededException, nothing
charged for refused requests.

Sources, cited per case:
- GUIDE-BURST: DynamoDB developer guide, "Burst capacity" (burst-adaptive-capacity.html):
  DynamoDB retains up to 300 seconds of unused read and write capacity.
- GUIDE-ON-DEMAND: developer guide, "On-demand capacity mode" / "Pre-warming": a new on-demand
  table sustains up to 4,000 writes and 12,000 reads per second.
- API-ERRORS: DynamoDB API reference, "Common errors" and each data-plane operation's errors:
  ProvisionedThroughputExceededException for requests above the table's or a partition's
  throughput; ThrottlingException for control-plane calls made too rapidly.
- API-PUTITEM: API reference PutItem: an item is at most 400 KB, else ValidationException
  "Item size has exceeded the maximum allowed size" (dynalite's tests, run against DynamoDB,
  expect the same text).

Each test uses a client that does not retry, so a throttle is seen as the server sent it.
"""

import pytest

import conftest
from conftest import create_table_request, expect_error, unique_name

ITEM_BYTES_MAX = 400 * 1024
# Writes to a new 5-WCU table that its burst credit must absorb (300 s x 5 WCU = 1,500 WCU).
BURST_WRITES = 300
# Bound on the writes a hot-key test sends before it must have met a throttle.
HOT_KEY_WRITES_MAX = 20


@pytest.fixture(scope="module")
def strict(endpoint):
    """A client that never retries."""
    return conftest._client(endpoint, retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture
def provisioned(ddb, strict):
    """Makes a new provisioned table of `read` RCU and `write` WCU; deleted after the test."""
    names = []

    def make(read, write):
        name = unique_name("capacity")
        request = create_table_request(name, billing="PROVISIONED")
        request["ProvisionedThroughput"] = {"ReadCapacityUnits": read,
                                            "WriteCapacityUnits": write}
        ddb.create_table(**request)
        names.append(name)
        return name

    yield make
    for name in names:
        ddb.delete_table(TableName=name)


def item_of(key, total_bytes):
    # "pk" + key + "d" bytes of names and key; the rest is the value of d.
    return {"pk": {"S": key}, "d": {"S": "x" * (total_bytes - 3 - len(key))}}


def test_an_oversized_item_is_refused_for_its_size_not_for_capacity(strict, provisioned):
    # API-PUTITEM: validation comes before admission: a 401 KB put on a 5-WCU table gets the
    # size error, never ProvisionedThroughputExceededException.
    table = provisioned(5, 5)
    for _ in range(3):
        expect_error(lambda: strict.put_item(TableName=table,
                                             Item=item_of("big", ITEM_BYTES_MAX + 1024)),
                     "ValidationException", "Item size has exceeded the maximum allowed size")
    # API-ERRORS: a refused request consumes nothing: 1,203 WCU of refused puts left the
    # table's credit whole for a 400 KB put and two more.
    for key in ["a", "b", "c"]:
        strict.put_item(TableName=table, Item=item_of(key, ITEM_BYTES_MAX))


def test_a_400_kb_write_to_a_small_provisioned_table_succeeds_on_burst_credit(strict, provisioned):
    # GUIDE-BURST: 300 s of unused capacity: a new 1-WCU table holds 300 WCU of credit and
    # takes a 400 KB write (400 WCU) at once; the rest is debt, so the next write is throttled
    # (API-ERRORS: the provisioned exception and its message) until refill repays it.
    table = provisioned(1, 1)
    strict.put_item(TableName=table, Item=item_of("big", ITEM_BYTES_MAX))
    response = expect_error(lambda: strict.put_item(TableName=table, Item=item_of("next", 100)),
                            "ProvisionedThroughputExceededException")
    assert "provisioned throughput" in response["Error"]["Message"]
    got = strict.get_item(TableName=table, Key={"pk": {"S": "big"}}, ConsistentRead=True)
    assert len(got["Item"]["d"]["S"]) == ITEM_BYTES_MAX - 6


def test_a_burst_of_writes_to_a_new_5_wcu_table_is_not_throttled(strict, provisioned):
    # GUIDE-BURST: test suites verified against DynamoDB create 5-WCU tables and write
    # hundreds of items at once; 300 s x 5 WCU of credit absorbs them.
    table = provisioned(5, 5)
    for index in range(BURST_WRITES):
        strict.put_item(TableName=table, Item=item_of(f"k{index}", 900))
    count = strict.scan(TableName=table, Select="COUNT", ConsistentRead=True)["Count"]
    assert count == BURST_WRITES


def test_on_demand_throttling_is_provisioned_throughput_exceeded(strict, table):
    # API-ERRORS / GUIDE-ON-DEMAND: one partition of an on-demand table serves at most 1,000
    # WCU per second; 400 KB writes to one key in a row exceed it, and the data plane answers
    # ProvisionedThroughputExceededException (ThrottlingException is the control plane's).
    codes = []
    for _ in range(HOT_KEY_WRITES_MAX):
        try:
            strict.put_item(TableName=table, Item=item_of("hot", ITEM_BYTES_MAX))
        except strict.exceptions.ClientError as error:
            codes.append(error.response["Error"]["Code"])
            break
    assert codes == ["ProvisionedThroughputExceededException"], codes
