"""UpdateTable (billing mode and provisioned throughput) and DescribeLimits: the table
description DynamoDB reports after each change, and every refusal with DynamoDB's message.

Shoal applies an UpdateTable at once and answers ACTIVE with the new values (DynamoDB answers
UPDATING with the old ones and finishes later; DynamoDB Local answers as Shoal does), so the
tests read the change back with DescribeTable right away.
"""

import datetime

import pytest

from conftest import create_table_request, expect_error, unique_name

# DescribeLimits' values: DynamoDB's default quotas (router/server/src/validate.rs).
ACCOUNT_MAX = 80000
TABLE_MAX = 40000
NOTHING_TO_DO = (
    "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, "
    "GlobalSecondaryIndexUpdates, SSESpecification, ReplicaUpdates, MultiAccountReplicaReady, "
    "ReplicaTransitRoleArn, MultiRegionConsistency, DeletionProtectionEnabled, "
    "OnDemandThroughput, WarmThroughput or TableClass is required")
PAY_PER_REQUEST_WITH_THROUGHPUT = (
    "One or more parameter values were invalid: Neither ReadCapacityUnits nor "
    "WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST")


def throughput(read, write):
    return {"ReadCapacityUnits": read, "WriteCapacityUnits": write}


# Refused requests change nothing: one on-demand and one provisioned table serve every test
# that expects a refusal or a no-op.
@pytest.fixture(scope="module")
def on_demand(make_module_table):
    return make_module_table()


@pytest.fixture(scope="module")
def provisioned(make_module_table):
    return make_module_table(billing="PROVISIONED")


def describe(ddb, name):
    return ddb.describe_table(TableName=name)["Table"]


def test_describe_limits(ddb):
    assert {key: value for key, value in ddb.describe_limits().items()
            if key != "ResponseMetadata"} == {
        "AccountMaxReadCapacityUnits": ACCOUNT_MAX,
        "AccountMaxWriteCapacityUnits": ACCOUNT_MAX,
        "TableMaxReadCapacityUnits": TABLE_MAX,
        "TableMaxWriteCapacityUnits": TABLE_MAX,
    }


def test_billing_mode_and_throughput_changes_are_described(ddb, make_table):
    name = make_table()
    created = describe(ddb, name)
    # A table created on demand has been on demand since its creation.
    assert created["BillingModeSummary"] == {
        "BillingMode": "PAY_PER_REQUEST",
        "LastUpdateToPayPerRequestDateTime": created["CreationDateTime"]}

    switched = ddb.update_table(TableName=name, BillingMode="PROVISIONED",
                                ProvisionedThroughput=throughput(5, 5))["TableDescription"]
    assert switched["TableStatus"] == "ACTIVE"
    assert switched["TableName"] == name and switched["TableId"] == created["TableId"]
    assert switched["BillingModeSummary"] == {
        "BillingMode": "PROVISIONED",
        "LastUpdateToPayPerRequestDateTime": created["CreationDateTime"]}
    # A switch between modes is neither an increase nor a decrease.
    assert switched["ProvisionedThroughput"] == {
        "NumberOfDecreasesToday": 0, "ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    assert describe(ddb, name)["ProvisionedThroughput"] == switched["ProvisionedThroughput"]

    raised = ddb.update_table(TableName=name, ProvisionedThroughput=throughput(10, 5))
    raised = raised["TableDescription"]["ProvisionedThroughput"]
    assert raised["ReadCapacityUnits"] == 10 and raised["WriteCapacityUnits"] == 5
    assert raised["NumberOfDecreasesToday"] == 0 and "LastDecreaseDateTime" not in raised
    assert raised["LastIncreaseDateTime"] >= created["CreationDateTime"]

    lowered = ddb.update_table(TableName=name, ProvisionedThroughput=throughput(10, 1))
    lowered = lowered["TableDescription"]["ProvisionedThroughput"]
    assert lowered["WriteCapacityUnits"] == 1 and lowered["NumberOfDecreasesToday"] == 1
    assert lowered["LastIncreaseDateTime"] == raised["LastIncreaseDateTime"]
    assert lowered["LastDecreaseDateTime"] >= raised["LastIncreaseDateTime"]
    # DescribeTable reads the same from the metadata group.
    assert describe(ddb, name)["ProvisionedThroughput"] == lowered

    # Items are served throughout, under the new limits.
    ddb.put_item(TableName=name, Item={"pk": {"S": "k"}})
    assert ddb.get_item(TableName=name, Key={"pk": {"S": "k"}}, ConsistentRead=True)["Item"]

    back = ddb.update_table(TableName=name, BillingMode="PAY_PER_REQUEST")["TableDescription"]
    summary = back["BillingModeSummary"]
    assert summary["BillingMode"] == "PAY_PER_REQUEST"
    assert summary["LastUpdateToPayPerRequestDateTime"] >= lowered["LastDecreaseDateTime"]
    assert back["ProvisionedThroughput"]["ReadCapacityUnits"] == 0
    assert back["ProvisionedThroughput"]["WriteCapacityUnits"] == 0
    assert describe(ddb, name)["BillingModeSummary"] == summary


def test_a_table_created_provisioned_has_no_billing_summary(ddb, provisioned):
    table = describe(ddb, provisioned)
    assert "BillingModeSummary" not in table
    assert table["ProvisionedThroughput"] == {
        "NumberOfDecreasesToday": 0, "ReadCapacityUnits": 100, "WriteCapacityUnits": 100}


def test_what_a_table_already_is_changes_nothing(ddb, on_demand):
    before = describe(ddb, on_demand)
    for request in [{"BillingMode": "PAY_PER_REQUEST"}, {"TableClass": "STANDARD"},
                    {"DeletionProtectionEnabled": False}]:
        answer = ddb.update_table(TableName=on_demand, **request)["TableDescription"]
        assert answer["TableStatus"] == "ACTIVE"
        assert answer["BillingModeSummary"] == before["BillingModeSummary"]
    assert describe(ddb, on_demand)["BillingModeSummary"] == before["BillingModeSummary"]


def test_the_same_throughput_will_not_change(ddb, provisioned):
    expected = (
        "The provisioned throughput for the table will not change. The requested value equals "
        "the current value. Current ReadCapacityUnits provisioned for the table: 100. Requested "
        "ReadCapacityUnits: 100. Current WriteCapacityUnits provisioned for the table: 100. "
        "Requested WriteCapacityUnits: 100. Refer to the Amazon DynamoDB Developer Guide for "
        "current limits and how to request higher limits.")
    expect_error(lambda: ddb.update_table(TableName=provisioned,
                                          ProvisionedThroughput=throughput(100, 100)),
                 "ValidationException", expected)
    expect_error(lambda: ddb.update_table(TableName=provisioned, BillingMode="PROVISIONED",
                                          ProvisionedThroughput=throughput(100, 100)),
                 "ValidationException", expected)


def test_throughput_with_on_demand_is_refused(ddb, on_demand, provisioned):
    # Asked together, and asked of a table that is on demand.
    expect_error(lambda: ddb.update_table(TableName=provisioned, BillingMode="PAY_PER_REQUEST",
                                          ProvisionedThroughput=throughput(1, 1)),
                 "ValidationException", PAY_PER_REQUEST_WITH_THROUGHPUT)
    expect_error(lambda: ddb.update_table(TableName=on_demand,
                                          ProvisionedThroughput=throughput(1, 1)),
                 "ValidationException", PAY_PER_REQUEST_WITH_THROUGHPUT)


def test_provisioned_without_throughput_is_refused(ddb, on_demand):
    expect_error(lambda: ddb.update_table(TableName=on_demand, BillingMode="PROVISIONED"),
                 "ValidationException",
                 "One or more parameter values were invalid: ProvisionedThroughput must be "
                 "specified when BillingMode is PROVISIONED")


def test_an_update_of_nothing_is_refused(ddb, raw, on_demand):
    expect_error(lambda: ddb.update_table(TableName=on_demand), "ValidationException",
                 NOTHING_TO_DO)
    # AttributeDefinitions change nothing without an index change, in DynamoDB too.
    expect_error(lambda: ddb.update_table(
        TableName=on_demand, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}]),
        "ValidationException", NOTHING_TO_DO)


def test_capacity_below_one_is_refused_with_every_violation(raw, provisioned):
    # botocore refuses capacities below 1 itself, so the request is sent by hand.
    response = raw.call("UpdateTable", {"TableName": provisioned,
                                        "ProvisionedThroughput": throughput(0, -1)})
    assert response.status == 400 and response.error_type == "ValidationException"
    assert response.json()["message"] == (
        "2 validation errors detected: Value '-1' at 'provisionedThroughput.writeCapacityUnits' "
        "failed to satisfy constraint: Member must have value greater than or equal to 1; "
        "Value '0' at 'provisionedThroughput.readCapacityUnits' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1")
    response = raw.call("UpdateTable", {"TableName": provisioned,
                                        "ProvisionedThroughput": {"ReadCapacityUnits": 5}})
    assert response.json()["message"] == (
        "1 validation error detected: Value null at 'provisionedThroughput.writeCapacityUnits' "
        "failed to satisfy constraint: Member must not be null")


def test_capacity_above_the_table_maximum_is_a_limit(ddb, provisioned):
    message = ("The requested WriteCapacityUnits, 40001, is above the per table maximum for the "
               "account in us-east-1. Per table maximum: 40000. Refer to the Amazon DynamoDB "
               "Developer Guide for current limits and how to request higher limits.")
    expect_error(lambda: ddb.update_table(TableName=provisioned,
                                          ProvisionedThroughput=throughput(1, TABLE_MAX + 1)),
                 "LimitExceededException", message)
    # CreateTable applies the same limit, and creates nothing.
    name = unique_name()
    request = create_table_request(name, billing="PROVISIONED")
    request["ProvisionedThroughput"] = throughput(TABLE_MAX + 1, 1)
    expect_error(lambda: ddb.create_table(**request), "LimitExceededException",
                 message.replace("WriteCapacityUnits", "ReadCapacityUnits"))
    expect_error(lambda: ddb.describe_table(TableName=name), "ResourceNotFoundException")


def test_update_of_a_missing_table(ddb):
    name = unique_name("missing")
    expect_error(lambda: ddb.update_table(TableName=name, BillingMode="PAY_PER_REQUEST"),
                 "ResourceNotFoundException",
                 f"Requested resource not found: Table: {name} not found")


@pytest.mark.parametrize("member, value", [
    ("ReplicaUpdates", [{"Create": {"RegionName": "eu-west-1"}}]),
    ("WarmThroughput", {"ReadUnitsPerSecond": 13000}),
    ("MultiRegionConsistency", "STRONG"),
])
def test_features_not_built_are_refused_not_ignored(raw, on_demand, member, value):
    response = raw.call("UpdateTable", {"TableName": on_demand, member: value})
    assert response.status == 400 and response.error_type == "ValidationException"
    assert response.json()["message"] == f"{member} is not supported by this server yet"


def test_table_class_and_deletion_protection_are_each_the_only_change(ddb, on_demand):
    # DynamoDB: either must be the only change of its request (ack-api-quirks DDB-TABLE-442;
    # the settings themselves: test_table_settings.py).
    expect_error(lambda: ddb.update_table(TableName=on_demand, TableClass="STANDARD",
                                          BillingMode="PAY_PER_REQUEST"),
                 "ValidationException",
                 "One or more parameter values were invalid: TableClass modification must be "
                 "the only operation in the request")
    expect_error(lambda: ddb.update_table(TableName=on_demand, DeletionProtectionEnabled=False,
                                          BillingMode="PAY_PER_REQUEST"),
                 "ValidationException",
                 "One or more parameter values were invalid: DeletionProtection modification "
                 "must be the only operation in the request")
    assert describe(ddb, on_demand)["DeletionProtectionEnabled"] is False


def test_dates_are_recent(ddb, on_demand):
    # CreationDateTime and LastUpdateToPayPerRequestDateTime come from the router's clock.
    created = describe(ddb, on_demand)["CreationDateTime"]
    now = datetime.datetime.now(created.tzinfo)
    assert now - datetime.timedelta(hours=1) < created <= now + datetime.timedelta(minutes=1)
