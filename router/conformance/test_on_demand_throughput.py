"""OnDemandThroughput: the most read and write request units per second an on-demand table, or
one of its global secondary indexes, serves; set at CreateTable, changed by UpdateTable,
reported by DescribeTable, and enforced by admission.

Sources, cited per test:
- [API-ODT] DynamoDB API reference, OnDemandThroughput (MaxReadRequestUnits,
  MaxWriteRequestUnits; -1 removes a maximum) and botocore's model (CreateTable, UpdateTable,
  GlobalSecondaryIndex and UpdateGlobalSecondaryIndexAction members).
- [DG-ODT] DynamoDB developer guide, "Maximum throughput for on-demand tables": requests above
  the maximum are throttled.
- [QUIRKS] The ack-api-quirks DynamoDB catalogue, probes of the service recorded in October
  2026: DDB-TABLE-128 (CreateTable: only with PAY_PER_REQUEST, the table and GSI texts,
  members of at least 1), DDB-TABLE-051, 059, 153, 178 and 182 (UpdateTable: member-wise
  merge, -1 removes, 0 and -2 out of range, the texts on a PROVISIONED table, a switch to
  PROVISIONED drops every maximum; DescribeTable lists the maximums set and omits the struct
  when none is), and its quota entry ("Subscriber limit exceeded: Requested
  MaxReadRequestUnits for OnDemandThroughput for table exceeds TableMaxReadCapacityUnits of
  the account in region REGION").
"""

import time

from botocore.exceptions import ClientError

from conftest import REGION, _client, create_table_request, expect_error, unique_name
from test_tables import created  # noqa: F401 (the fixture: tables a test creates, deleted after it)

INVALID = "One or more parameter values were invalid: "
# Long enough for a bucket of one unit per second to refill.
REFILL_S = 1.2


def on_demand_request(name, **extra):
    request = create_table_request(name)
    request.update(extra)
    return request


def described(ddb, name):
    return ddb.describe_table(TableName=name)["Table"]


def test_create_table_sets_maximums_and_describe_table_lists_them(ddb, created):
    # [API-ODT] [QUIRKS DDB-TABLE-182] Only the members set are listed.
    name = unique_name("odt")
    ddb.create_table(**on_demand_request(name, OnDemandThroughput={"MaxReadRequestUnits": 100}))
    created.append(name)
    assert described(ddb, name)["OnDemandThroughput"] == {"MaxReadRequestUnits": 100}
    plain = unique_name("odt")
    ddb.create_table(**on_demand_request(plain))
    created.append(plain)
    assert "OnDemandThroughput" not in described(ddb, plain)


def test_create_table_refuses_maximums_of_a_provisioned_table_and_out_of_range(ddb):
    # [QUIRKS DDB-TABLE-128] The billing rule first, naming the first member given; then each
    # member at least 1.
    name = unique_name("odt")
    provisioned = create_table_request(name, billing="PROVISIONED")
    provisioned["OnDemandThroughput"] = {"MaxWriteRequestUnits": 10}
    expect_error(lambda: ddb.create_table(**provisioned), "ValidationException",
                 INVALID + "MaxWriteRequestUnits for OnDemandThroughput cannot be specified when "
                 "table BillingMode is PROVISIONED.")
    for value in (0, -1):
        expect_error(lambda: ddb.create_table(**on_demand_request(
            name, OnDemandThroughput={"MaxReadRequestUnits": value, "MaxWriteRequestUnits": 0})),
            "ValidationException",
            INVALID + "Requested MaxReadRequestUnits for OnDemandThroughput for table is outside "
            "of valid range")
    expect_error(lambda: ddb.create_table(**on_demand_request(
        name, OnDemandThroughput={"MaxReadRequestUnits": 40001})),
        "LimitExceededException",
        "Subscriber limit exceeded: Requested MaxReadRequestUnits for OnDemandThroughput for table "
        f"exceeds TableMaxReadCapacityUnits of the account in region {REGION}")
    expect_error(lambda: ddb.describe_table(TableName=name), "ResourceNotFoundException")


def test_update_table_merges_member_by_member_and_minus_one_removes(ddb, created):
    # [QUIRKS DDB-TABLE-051, 178, 182]
    name = unique_name("odt")
    ddb.create_table(**on_demand_request(name))
    created.append(name)

    def update(**odt):
        return ddb.update_table(TableName=name, OnDemandThroughput=odt)

    update(MaxReadRequestUnits=1000, MaxWriteRequestUnits=500)
    assert described(ddb, name)["OnDemandThroughput"] == {
        "MaxReadRequestUnits": 1000, "MaxWriteRequestUnits": 500}
    update(MaxReadRequestUnits=2000)
    assert described(ddb, name)["OnDemandThroughput"] == {
        "MaxReadRequestUnits": 2000, "MaxWriteRequestUnits": 500}
    update(MaxWriteRequestUnits=-1)
    assert described(ddb, name)["OnDemandThroughput"] == {"MaxReadRequestUnits": 2000}
    for value in (0, -2):
        expect_error(lambda: update(MaxWriteRequestUnits=value), "ValidationException",
                     INVALID + "Requested MaxWriteRequestUnits for OnDemandThroughput for table "
                     "is outside of valid range")
    update(MaxReadRequestUnits=-1)
    assert "OnDemandThroughput" not in described(ddb, name)


def test_a_provisioned_table_has_no_maximums(ddb, created):
    # [QUIRKS DDB-TABLE-059, 153] UpdateTable's text on a PROVISIONED table; a switch to
    # PROVISIONED drops the maximums, and they do not come back with PAY_PER_REQUEST.
    name = unique_name("odt")
    ddb.create_table(**on_demand_request(name, OnDemandThroughput={"MaxReadRequestUnits": 300}))
    created.append(name)
    ddb.update_table(TableName=name, BillingMode="PROVISIONED",
                     ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    assert "OnDemandThroughput" not in described(ddb, name)
    expect_error(lambda: ddb.update_table(TableName=name,
                                          OnDemandThroughput={"MaxReadRequestUnits": 100}),
                 "ValidationException",
                 INVALID + "MaxReadRequestUnits for OnDemandThroughput cannot be specified when "
                 "the table BillingMode is PROVISIONED")
    ddb.update_table(TableName=name, BillingMode="PAY_PER_REQUEST")
    assert "OnDemandThroughput" not in described(ddb, name)


def gsi_request(name, index_extra):
    request = create_table_request(name)
    request["AttributeDefinitions"].append({"AttributeName": "g", "AttributeType": "S"})
    index = {"IndexName": "g-a", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "ALL"}}
    index.update(index_extra)
    request["GlobalSecondaryIndexes"] = [index]
    return request


def test_a_global_index_has_maximums_of_its_own(ddb, created):
    # [API-ODT] [QUIRKS DDB-TABLE-128, 153] A GSI of an on-demand table lists both members, -1
    # for none; UpdateTable's index Update merges as the table's does.
    name = unique_name("odtgsi")
    ddb.create_table(**gsi_request(name, {"OnDemandThroughput": {"MaxReadRequestUnits": 10}}))
    created.append(name)

    def index_maximums():
        return described(ddb, name)["GlobalSecondaryIndexes"][0]["OnDemandThroughput"]

    assert index_maximums() == {"MaxReadRequestUnits": 10, "MaxWriteRequestUnits": -1}
    ddb.update_table(TableName=name, GlobalSecondaryIndexUpdates=[{"Update": {
        "IndexName": "g-a", "OnDemandThroughput": {"MaxWriteRequestUnits": 7}}}])
    assert index_maximums() == {"MaxReadRequestUnits": 10, "MaxWriteRequestUnits": 7}
    expect_error(lambda: ddb.update_table(TableName=name, GlobalSecondaryIndexUpdates=[{"Update": {
        "IndexName": "g-a", "OnDemandThroughput": {"MaxWriteRequestUnits": 0}}}]),
        "ValidationException",
        INVALID + "Requested MaxWriteRequestUnits for OnDemandThroughput for index : g-a is "
        "outside of valid range")
    assert index_maximums() == {"MaxReadRequestUnits": 10, "MaxWriteRequestUnits": 7}


def test_create_table_checks_a_global_index_maximums(ddb):
    # [QUIRKS DDB-TABLE-128]
    name = unique_name("odtgsi")
    expect_error(lambda: ddb.create_table(**gsi_request(
        name, {"OnDemandThroughput": {"MaxReadRequestUnits": 0}})),
        "ValidationException",
        INVALID + "Requested MaxReadRequestUnits for OnDemandThroughput for index : g-a is "
        "outside of valid range")
    provisioned = gsi_request(name, {
        "OnDemandThroughput": {"MaxReadRequestUnits": 10},
        "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}})
    provisioned["BillingMode"] = "PROVISIONED"
    provisioned["ProvisionedThroughput"] = {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
    expect_error(lambda: ddb.create_table(**provisioned), "ValidationException",
                 INVALID + "MaxReadRequestUnits for OnDemandThroughput for index: g-a cannot be "
                 "specified when table BillingMode is PROVISIONED.")


def test_requests_above_the_maximum_are_throttled(ddb, endpoint, created):
    # [DG-ODT] A table whose maximum is one write request unit per second serves one write of a
    # small item in a second and throttles the next ones (the on-demand message); reads have
    # their own maximum. The client does not retry: a retry a second later would be served.
    name = unique_name("odtcap")
    ddb.create_table(**on_demand_request(
        name, OnDemandThroughput={"MaxReadRequestUnits": 1, "MaxWriteRequestUnits": 1}))
    created.append(name)
    # A first write and read through the retrying client see the new table's leaders elected;
    # then the buckets refill for a second.
    ddb.put_item(TableName=name, Item={"pk": {"S": "warm"}})
    ddb.get_item(TableName=name, Key={"pk": {"S": "warm"}}, ConsistentRead=True)
    time.sleep(REFILL_S)
    ddb = _client(endpoint, retries={"mode": "standard", "total_max_attempts": 1})
    codes = []
    for i in range(5):
        try:
            ddb.put_item(TableName=name, Item={"pk": {"S": f"k{i}"}})
            codes.append("ok")
        except ClientError as error:
            codes.append(error.response["Error"]["Code"])
            message = error.response["Error"]["Message"]
    assert codes[0] == "ok"
    assert "ProvisionedThroughputExceededException" in codes, codes
    assert message.startswith("Throughput exceeds the current capacity of your table or index")
    read_codes = []
    for _ in range(5):
        try:
            ddb.get_item(TableName=name, Key={"pk": {"S": "k0"}}, ConsistentRead=True)
            read_codes.append("ok")
        except ClientError as error:
            read_codes.append(error.response["Error"]["Code"])
    assert read_codes[0] == "ok"
    assert "ProvisionedThroughputExceededException" in read_codes, read_codes


def test_a_global_index_warm_throughput_is_refused_not_ignored(ddb, created):
    # [API-ODT] GlobalSecondaryIndex, CreateGlobalSecondaryIndexAction and
    # UpdateGlobalSecondaryIndexAction take WarmThroughput; Shoal has no pre-warming and refuses
    # it as it refuses a table's (test_tables.py), rather than ignore it.
    name = unique_name("warm")
    expect_error(lambda: ddb.create_table(**gsi_request(
        name, {"WarmThroughput": {"ReadUnitsPerSecond": 13000}})),
        "ValidationException", "WarmThroughput is not supported by this server yet")
    ddb.create_table(**gsi_request(name, {}))
    created.append(name)
    expect_error(lambda: ddb.update_table(TableName=name, GlobalSecondaryIndexUpdates=[{"Update": {
        "IndexName": "g-a", "WarmThroughput": {"WriteUnitsPerSecond": 5000}}}]),
        "ValidationException", "WarmThroughput is not supported by this server yet")
