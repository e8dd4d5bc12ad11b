"""CreateTable, DescribeTable, ListTables, DeleteTable: shapes, pagination and errors, and the
CreateTable members of features not built yet. UpdateTable and DescribeLimits are in
test_update_table.py, the tag operations in test_tags.py."""

import pytest

from conftest import create_table_request, expect_error, unique_name

# Tests here create several tables each, and CreateTable slows down as a cluster accumulates
# partitions (deleted tables' replicas stay on the nodes: router/server/README.md); seconds
# per table late in a run on a busy two-core machine.
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def created(ddb):
    """Tables a test creates directly (not from the pool), deleted after it."""
    names = []
    yield names
    for name in names:
        try:
            ddb.delete_table(TableName=name)
        except ddb.exceptions.ResourceNotFoundException:
            pass


def create(ddb, created, **kwargs):
    name = unique_name()
    response = ddb.create_table(**create_table_request(name, **kwargs))
    created.append(name)
    return name, response["TableDescription"]


def test_create_and_describe_shape(ddb, created):
    name, description = create(ddb, created, sort=("sk", "N"))
    assert description["TableName"] == name
    assert description["TableStatus"] in ("CREATING", "ACTIVE")
    assert description["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                        {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert sorted(description["AttributeDefinitions"], key=lambda d: d["AttributeName"]) == [
        {"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert description["TableArn"].endswith(f":table/{name}")
    assert description["TableArn"].startswith("arn:aws:dynamodb:")
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    table = ddb.describe_table(TableName=name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["ItemCount"] == 0 and table["TableSizeBytes"] == 0
    assert table["TableId"] == description["TableId"]
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 0


def test_provisioned_table_describes_its_capacity(ddb, created):
    name, description = create(ddb, created, billing="PROVISIONED")
    throughput = description["ProvisionedThroughput"]
    assert throughput["ReadCapacityUnits"] == 100 and throughput["WriteCapacityUnits"] == 100


def test_duplicate_create_is_resource_in_use(ddb, created):
    name, _ = create(ddb, created)
    expect_error(lambda: ddb.create_table(**create_table_request(name)),
                 "ResourceInUseException", f"Table already exists: {name}")


def test_describe_and_delete_of_a_missing_table(ddb):
    name = unique_name("missing")
    message = f"Requested resource not found: Table: {name} not found"
    expect_error(lambda: ddb.describe_table(TableName=name), "ResourceNotFoundException", message)
    expect_error(lambda: ddb.delete_table(TableName=name), "ResourceNotFoundException", message)


def test_delete_table(ddb, created):
    name, _ = create(ddb, created)
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    description = ddb.delete_table(TableName=name)["TableDescription"]
    assert description["TableName"] == name
    assert description["TableStatus"] == "DELETING"
    ddb.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    expect_error(lambda: ddb.get_item(TableName=name, Key={"pk": {"S": "k"}}),
                 "ResourceNotFoundException", "Requested resource not found")


def test_a_recreated_table_starts_empty(ddb, created):
    name, _ = create(ddb, created)
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    ddb.put_item(TableName=name, Item={"pk": {"S": "old"}})
    ddb.delete_table(TableName=name)
    ddb.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    ddb.create_table(**create_table_request(name))
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert "Item" not in ddb.get_item(TableName=name, Key={"pk": {"S": "old"}}, ConsistentRead=True)


def test_list_tables_paginates_in_name_order(ddb, created):
    mine = sorted(create(ddb, created)[0] for _ in range(3))
    names, start = [], None
    # Every table of the session fits in this many pages of 2.
    for _ in range(1000):
        params = {"Limit": 2}
        if start:
            params["ExclusiveStartTableName"] = start
        page = ddb.list_tables(**params)
        assert len(page["TableNames"]) <= 2
        names += page["TableNames"]
        start = page.get("LastEvaluatedTableName")
        if not start:
            break
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert set(mine) <= set(names)


def test_list_tables_paginator(ddb, created):
    mine = {create(ddb, created)[0] for _ in range(2)}
    names = [n for page in ddb.get_paginator("list_tables").paginate(PaginationConfig={"PageSize": 1})
             for n in page["TableNames"]]
    assert mine <= set(names)


def test_list_tables_limit_out_of_range_is_refused(ddb):
    expect_error(lambda: ddb.list_tables(Limit=101), "ValidationException",
                 contains="at 'limit' failed to satisfy constraint: Member must have value less than or equal to 100")


def test_table_name_too_short_is_refused(ddb):
    expect_error(lambda: ddb.create_table(**create_table_request("ab")), "ValidationException",
                 "1 validation error detected: Value 'ab' at 'tableName' failed to satisfy constraint: "
                 "Member must have length greater than or equal to 3")


def test_key_attribute_not_defined_is_refused(ddb):
    request = create_table_request(unique_name())
    request["AttributeDefinitions"] = [{"AttributeName": "other", "AttributeType": "S"}]
    expect_error(lambda: ddb.create_table(**request), "ValidationException",
                 "One or more parameter values were invalid: Some index key attributes are not "
                 "defined in AttributeDefinitions. Keys: [pk], AttributeDefinitions: [other]")


def test_extra_attribute_definitions_are_refused(ddb):
    request = create_table_request(unique_name())
    request["AttributeDefinitions"].append({"AttributeName": "extra", "AttributeType": "S"})
    expect_error(lambda: ddb.create_table(**request), "ValidationException",
                 "One or more parameter values were invalid: Number of attributes in KeySchema does "
                 "not exactly match number of attributes defined in AttributeDefinitions")


def test_invalid_attribute_type_is_refused(ddb):
    request = create_table_request(unique_name())
    request["AttributeDefinitions"][0]["AttributeType"] = "BOOL"
    expect_error(lambda: ddb.create_table(**request), "ValidationException",
                 contains="Member must satisfy enum value set: [B, N, S]")


def test_pay_per_request_with_throughput_is_refused(ddb):
    request = create_table_request(unique_name())
    request["ProvisionedThroughput"] = {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
    expect_error(lambda: ddb.create_table(**request), "ValidationException",
                 "One or more parameter values were invalid: Neither ReadCapacityUnits nor "
                 "WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST")


def test_provisioned_without_throughput_is_refused(ddb):
    request = create_table_request(unique_name())
    del request["BillingMode"]
    expect_error(lambda: ddb.create_table(**request), "ValidationException",
                 contains="ReadCapacityUnits and WriteCapacityUnits must both be specified")


def test_describe_endpoints(ddb, endpoint):
    response = ddb.describe_endpoints()
    assert response["Endpoints"][0]["Address"] == endpoint.removeprefix("http://")
    assert response["Endpoints"][0]["CachePeriodInMinutes"] == 1440


# SSESpecification, TableClass, DeletionProtectionEnabled and a disabled stream are table
# settings: test_table_settings.py.
@pytest.mark.parametrize("member, value", [
    ("WarmThroughput", {"ReadUnitsPerSecond": 13000}),
])
def test_create_table_refuses_features_not_built(ddb, member, value):
    # Refused, never silently ignored; the table is not created.
    name = unique_name()
    request = create_table_request(name)
    request[member] = value
    expect_error(lambda: ddb.create_table(**request), "ValidationException",
                 f"{member} is not supported by this server yet")
    expect_error(lambda: ddb.describe_table(TableName=name), "ResourceNotFoundException")


def test_create_table_with_a_global_secondary_index(ddb, created):
    name = unique_name()
    request = create_table_request(name)
    request["AttributeDefinitions"].append({"AttributeName": "g", "AttributeType": "S"})
    request["GlobalSecondaryIndexes"] = [{"IndexName": "by-g", "KeySchema": [
        {"AttributeName": "g", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}}]
    ddb.create_table(**request)
    created.append(name)


def test_operations_not_built_are_unknown_operations(ddb):
    # What a gap looks like: DynamoDB's answer to an operation it does not know.
    expect_error(lambda: ddb.describe_continuous_backups(TableName="conf-any"),
                 "UnknownOperationException")
