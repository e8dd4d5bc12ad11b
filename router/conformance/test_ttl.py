"""UpdateTimeToLive, DescribeTimeToLive, and items deleted once their TTL attribute has passed.

Sources:
- API reference, UpdateTimeToLive and DescribeTimeToLive (the botocore model's documentation):
  the specification's members are required (TimeToLiveAttributeName is 1 to 255 long); the
  answer echoes TimeToLiveSpecification; an item expires when its TTL attribute is a Number of
  epoch seconds less than the current time; expired items not yet deleted are still read;
  another UpdateTimeToLive within the interval after a change is a ValidationException.
- Probes of DynamoDB (ack-api-quirks, findings DDB-TABLE-143/144/145): "TimeToLive is already
  enabled" for the same attribute, "active on a different AttributeName" for another, "TimeToLive
  is already disabled" for a table without TTL, all checked before the interval ("Time to live
  has been modified multiple times within a fixed interval"); DescribeTimeToLive shows the
  settled status at once (no ENABLING was seen) and {TimeToLiveStatus: DISABLED} without
  AttributeName for a table that never had TTL.
- Developer guide, "Time to Live": only a top-level Number is an expiry; values more than five
  years in the past are ignored.

The suite's clusters sweep every TTL_SWEEP_PERIOD_S seconds (conftest.py), so expiry is watched
within seconds where DynamoDB takes up to days.
"""

import time

from conftest import TTL_SWEEP_PERIOD_S, expect_error

ALREADY_ENABLED = "TimeToLive is already enabled"
ALREADY_DISABLED = "TimeToLive is already disabled"
WITHIN_INTERVAL = "Time to live has been modified multiple times within a fixed interval"
# How long an expired item may outlive its expiry here: the nodes read the setting within a
# sweep period, a pass starts within another, and a pass over a test table takes a few steps.
EXPIRY_BOUND_S = 10 * TTL_SWEEP_PERIOD_S + 10
FIVE_YEARS_S = 5 * 365 * 86_400


def describe(ddb, name):
    return ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]


def enable(ddb, name, attribute):
    return ddb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute})


def disable(ddb, name, attribute):
    return ddb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": False, "AttributeName": attribute})


def test_a_new_table_has_ttl_disabled_without_an_attribute(ddb, make_table):
    # DDB-TABLE-144: never configured reads DISABLED, no AttributeName.
    assert describe(ddb, make_table()) == {"TimeToLiveStatus": "DISABLED"}


def test_enabling_echoes_the_specification_and_describes_enabled(ddb, make_table):
    # API reference: the answer is the TimeToLiveSpecification; DDB-TABLE-145: the settled
    # status shows at once.
    name = make_table()
    response = enable(ddb, name, "expires_at")
    assert response["TimeToLiveSpecification"] == {"Enabled": True, "AttributeName": "expires_at"}
    assert describe(ddb, name) == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    # TTL does not change the table itself.
    assert ddb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"


def test_refusals_check_the_setting_before_the_interval(ddb, make_table):
    # DDB-TABLE-143: the content errors come before the interval's; the last, a real change
    # right after the enable, is refused by the interval. None of them changes the setting.
    name = make_table()
    enable(ddb, name, "ttl")
    expect_error(lambda: enable(ddb, name, "ttl"), "ValidationException", ALREADY_ENABLED)
    different = "TimeToLive is active on a different AttributeName: current value of AttributeName is ttl"
    expect_error(lambda: enable(ddb, name, "other"), "ValidationException", different)
    expect_error(lambda: disable(ddb, name, "other"), "ValidationException", different)
    expect_error(lambda: disable(ddb, name, "ttl"), "ValidationException", WITHIN_INTERVAL)
    assert describe(ddb, name) == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}


def test_disabling_a_table_without_ttl_is_refused(ddb, make_table):
    # DDB-TABLE-143 and the Terraform provider's handling of the same text.
    name = make_table()
    expect_error(lambda: disable(ddb, name, "ttl"), "ValidationException", ALREADY_DISABLED)
    assert describe(ddb, name) == {"TimeToLiveStatus": "DISABLED"}


def test_the_partition_key_may_be_the_ttl_attribute(ddb, make_table):
    # DDB-TABLE-143: TTL on the partition key is accepted.
    name = make_table(hash_key=("id", "N"))
    enable(ddb, name, "id")
    assert describe(ddb, name)["AttributeName"] == "id"


def test_the_specification_is_validated_before_the_table_is_looked_up(raw):
    # The service model: both members required, AttributeName 1 to 255 long. Sent raw: boto3
    # checks the required members itself.
    missing = "failed to satisfy constraint: Member must not be null"
    cases = [
        (None, "1 validation error detected: Value null at 'timeToLiveSpecification' " + missing),
        ({}, "2 validation errors detected: Value null at 'timeToLiveSpecification.enabled' "
             + missing),
        ({"Enabled": True},
         "1 validation error detected: Value null at 'timeToLiveSpecification.attributeName' "
         + missing),
        ({"Enabled": True, "AttributeName": ""},
         "Value '' at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: "
         "Member must have length greater than or equal to 1"),
        ({"Enabled": True, "AttributeName": "a" * 256},
         "Member must have length less than or equal to 255"),
    ]
    for specification, text in cases:
        body = {"TableName": "conf-no-such-table"}
        if specification is not None:
            body["TimeToLiveSpecification"] = specification
        response = raw.call("UpdateTimeToLive", body)
        assert response.status == 400
        assert response.error_type == "ValidationException", response.json()
        assert text in response.json()["message"], response.json()


def test_an_unknown_table_is_not_found(ddb):
    expect_error(lambda: ddb.describe_time_to_live(TableName="conf-no-such-table"),
                 "ResourceNotFoundException")
    expect_error(lambda: enable(ddb, "conf-no-such-table", "ttl"), "ResourceNotFoundException")


def wait_until(predicate, bound_s):
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


def test_expired_items_are_deleted_and_others_kept(ddb, make_table):
    name = make_table()
    enable(ddb, name, "expires")
    now = int(time.time())
    items = {
        "expired": {"N": str(now - 60)},
        "expired-fraction": {"N": f"{now - 60}.5"},
        "future": {"N": str(now + 3600)},
        # Developer guide: only a Number counts, and not one more than five years back.
        "string": {"S": str(now - 60)},
        "ancient": {"N": str(now - FIVE_YEARS_S - 86_400)},
        # Milliseconds by mistake: far in the future.
        "milliseconds": {"N": str((now - 60) * 1000)},
    }
    for pk, expires in items.items():
        ddb.put_item(TableName=name, Item={"pk": {"S": pk}, "expires": expires})
    ddb.put_item(TableName=name, Item={"pk": {"S": "no-expiry"}})

    def present(pk):
        return "Item" in ddb.get_item(TableName=name, Key={"pk": {"S": pk}}, ConsistentRead=True)

    assert wait_until(lambda: not present("expired") and not present("expired-fraction"),
                      EXPIRY_BOUND_S), "expired items outlived the bound"
    for pk in ("future", "string", "ancient", "milliseconds", "no-expiry"):
        assert present(pk), pk


def test_an_item_whose_ttl_is_extended_is_kept(ddb, make_table):
    name = make_table()
    enable(ddb, name, "expires")
    soon = int(time.time()) + 2
    ddb.put_item(TableName=name, Item={"pk": {"S": "session"}, "expires": {"N": str(soon)}})
    ddb.update_item(TableName=name, Key={"pk": {"S": "session"}},
                    UpdateExpression="SET expires = :later",
                    ExpressionAttributeValues={":later": {"N": str(soon + 3600)}})
    # A control item with the first expiry shows the sweeper ran past it meanwhile.
    ddb.put_item(TableName=name, Item={"pk": {"S": "control"}, "expires": {"N": str(soon)}})

    def present(pk):
        return "Item" in ddb.get_item(TableName=name, Key={"pk": {"S": pk}}, ConsistentRead=True)

    assert wait_until(lambda: not present("control"), EXPIRY_BOUND_S + 2)
    item = ddb.get_item(TableName=name, Key={"pk": {"S": "session"}}, ConsistentRead=True)["Item"]
    assert item["expires"] == {"N": str(soon + 3600)}
