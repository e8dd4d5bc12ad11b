"""TagResource, UntagResource, ListTagsOfResource and CreateTable's Tags: tags are kept with the
table's metadata, keyed by the table ARN that DescribeTable reports, and checked by DynamoDB's
rules (at most 50 per table, keys of 1 to 128 Unicode characters, values up to 256, letters,
numbers, spaces and + - = . _ : / @ only, no `aws:` keys). Every refusal applies nothing.

Sources of the texts: the tag messages DynamoDB answers as recorded by probes of DynamoDB
(ack-api-quirks, DDB-TABLE-107/108/372) and dynalite's tests, which run against DynamoDB
("Invalid TableArn", "ResourcArn" as DynamoDB spells it).

DynamoDB applies tag changes a few seconds later (ListTagsOfResource is eventually consistent
there); Shoal applies them before answering, so the tests read them back at once.
"""

import contextlib

import pytest

from conftest import REGION, create_table_request, expect_error, unique_name

ACCOUNT = "000000000000"
TAGS_MAX = 50
TAG_LIMIT = "Number of Tags exceed the current limit for the provided ResourceArn"


def arn_of(name):
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


def tags_of(ddb, arn):
    response = ddb.list_tags_of_resource(ResourceArn=arn)
    assert "NextToken" not in response
    return {tag["Key"]: tag["Value"] for tag in response["Tags"]}


# Refused requests change nothing: one table serves every test of a refusal, and each of those
# tests checks that its table's tags are still the ones it started with.
@pytest.fixture(scope="module")
def refusing(ddb, make_module_table):
    arn = ddb.describe_table(TableName=make_module_table())["Table"]["TableArn"]
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "kept", "Value": "as is"}])
    return arn


def test_the_arn_is_the_one_describe_table_reports(ddb, refusing):
    name = refusing.rsplit("/", 1)[1]
    assert refusing == arn_of(name)
    assert tags_of(ddb, refusing) == {"kept": "as is"}


def test_tag_overwrite_and_untag(ddb, make_table):
    arn = arn_of(make_table())
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == []
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "team", "Value": "shoal"},
                                            {"Key": "empty", "Value": ""},
                                            {"Key": "ключ ы", "Value": "café 表 a+b-c=d.e_f:g/h@i"}])
    assert tags_of(ddb, arn) == {"team": "shoal", "empty": "", "ключ ы": "café 表 a+b-c=d.e_f:g/h@i"}
    # A key the table has gets the new value: keys are unique.
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "team", "Value": "other"}])
    assert tags_of(ddb, arn)["team"] == "other"
    # Removing a key the table does not have is not an error.
    ddb.untag_resource(ResourceArn=arn, TagKeys=["empty", "absent"])
    assert tags_of(ddb, arn) == {"team": "other", "ключ ы": "café 表 a+b-c=d.e_f:g/h@i"}
    ddb.untag_resource(ResourceArn=arn, TagKeys=["team", "ключ ы"])
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == []


def test_fifty_tags_at_most_counting_those_the_table_has(ddb, make_table):
    arn = arn_of(make_table())
    longest_key = "ק" * 128
    tags = [{"Key": f"k{index:02}", "Value": "v" * 256} for index in range(TAGS_MAX - 1)]
    tags.append({"Key": longest_key, "Value": "ק" * 256})
    ddb.tag_resource(ResourceArn=arn, Tags=tags)
    listed = tags_of(ddb, arn)
    assert len(listed) == TAGS_MAX and listed[longest_key] == "ק" * 256
    # DynamoDB answers 50 tags in one page; the paginator sees the same.
    pages = list(ddb.get_paginator("list_tags_of_resource").paginate(ResourceArn=arn))
    assert len(pages) == 1 and len(pages[0]["Tags"]) == TAGS_MAX
    # A new key would make 51; a new value for a key the table has is fine.
    expect_error(lambda: ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "one-more", "Value": ""}]),
                 "ValidationException", TAG_LIMIT)
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "k00", "Value": "new"}])
    assert tags_of(ddb, arn)["k00"] == "new"


def test_create_table_tags_and_delete_table_removes_them(ddb):
    name = unique_name()
    request = create_table_request(name)
    request["Tags"] = [{"Key": "team", "Value": "shoal"}, {"Key": "stage", "Value": "test"}]
    ddb.create_table(**request)
    try:
        assert tags_of(ddb, arn_of(name)) == {"team": "shoal", "stage": "test"}
        ddb.delete_table(TableName=name)
        expect_error(lambda: ddb.list_tags_of_resource(ResourceArn=arn_of(name)),
                     "ResourceNotFoundException",
                     f"Requested resource not found: ResourcArn: {arn_of(name)} not found")
        # A new table of the same name starts without the old one's tags.
        ddb.create_table(**create_table_request(name))
        assert ddb.list_tags_of_resource(ResourceArn=arn_of(name))["Tags"] == []
    finally:
        with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
            ddb.delete_table(TableName=name)


def test_create_table_with_invalid_tags_creates_nothing(ddb):
    name = unique_name()
    request = create_table_request(name)
    request["Tags"] = [{"Key": f"k{index}", "Value": ""} for index in range(TAGS_MAX + 1)]
    expect_error(lambda: ddb.create_table(**request), "ValidationException", TAG_LIMIT)
    expect_error(lambda: ddb.describe_table(TableName=name), "ResourceNotFoundException")


@pytest.mark.parametrize("tags, message", [
    ([], "Atleast one Tag needs to be provided as Input."),
    ([{"Key": "aws:owner", "Value": "me"}], "Tag Key cannot be prefixed with aws:, Key: aws:owner"),
    ([{"Key": "k" * 129, "Value": ""}], "The Tag Key provided is invalid, Key: " + "k" * 129),
    ([{"Key": "k", "Value": "v" * 257}], "The Tag Value provided is invalid, Value: " + "v" * 257),
    ([{"Key": "", "Value": "v"}], "The Tag Key provided is invalid, Key: "),
    ([{"Key": "k"}], "The Tag Value provided is invalid, Value: null"),
    ([{"Key": "hi!", "Value": "v"}], "The Tag Key provided is invalid, Key: hi!"),
    ([{"Key": "k", "Value": "100%"}], "The Tag Value provided is invalid, Value: 100%"),
    ([{"Key": "dup", "Value": "1"}, {"Key": "dup", "Value": "2"}],
     "Duplicate Tag Keys provided as input: Duplicate Tag Key found dup"),
    # One bad tag refuses the good ones with it.
    ([{"Key": "good", "Value": "v"}, {"Key": "a,b", "Value": "v"}],
     "The Tag Key provided is invalid, Key: a,b"),
    ([{"Key": f"k{index}", "Value": ""} for index in range(TAGS_MAX + 1)], TAG_LIMIT),
])
def test_invalid_tags_are_refused(ddb, raw, refusing, tags, message):
    # By hand: botocore itself refuses some of these shapes.
    response = raw.call("TagResource", {"ResourceArn": refusing, "Tags": tags})
    assert response.status == 400 and response.error_type == "ValidationException"
    assert response.json()["message"] == message
    assert tags_of(ddb, refusing) == {"kept": "as is"}


# Each list but the empty one also names the table's tag, which must survive the refusal.
@pytest.mark.parametrize("keys, message", [
    ([], "Atleast one Tag Key needs to be provided as Input."),
    (["kept", ""], "The Tag Key provided is invalid, Key: "),
    (["kept", "k" * 129], "The Tag Key provided is invalid, Key: " + "k" * 129),
    (["kept"] + [f"k{index}" for index in range(TAGS_MAX)], TAG_LIMIT),
])
def test_invalid_tag_keys_are_refused(ddb, raw, refusing, keys, message):
    response = raw.call("UntagResource", {"ResourceArn": refusing, "TagKeys": keys})
    assert response.status == 400 and response.error_type == "ValidationException"
    assert response.json()["message"] == message
    assert tags_of(ddb, refusing) == {"kept": "as is"}


def test_missing_members_are_refused(raw, refusing):
    response = raw.call("TagResource", {"ResourceArn": refusing})
    assert response.json()["message"] == (
        "1 validation error detected: Value null at 'tags' failed to satisfy constraint: "
        "Member must not be null")
    response = raw.call("UntagResource", {"ResourceArn": refusing})
    assert response.json()["message"] == (
        "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: "
        "Member must not be null")
    for operation in ["TagResource", "UntagResource", "ListTagsOfResource"]:
        response = raw.call(operation, {})
        assert response.error_type == "ValidationException"
        assert response.json()["message"] == "Invalid TableArn"


@pytest.mark.parametrize("arn, message", [
    ("orders", "One or more parameter values were invalid: ARNs must start with 'arn:': orders"),
    ("arn:aws:s3:::bucket",
     "One or more parameter values were invalid: Provided Arn is not a DynamoDB resource arn: "
     "arn:aws:s3:::bucket"),
    (f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/orders/index/by-date",
     "One or more parameter values were invalid: Invalid resource arn provided, only table or "
     f"stream is accepted. Provided resource arn: arn:aws:dynamodb:{REGION}:{ACCOUNT}:"
     "table/orders/index/by-date"),
    (f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders",
     f"Invalid TableArn: Invalid ResourceArn provided as input arn:aws:dynamodb:eu-west-1:"
     f"{ACCOUNT}:table/orders"),
    (f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/ab",
     f"Invalid TableArn: Invalid ResourceArn provided as input arn:aws:dynamodb:{REGION}:"
     f"{ACCOUNT}:table/ab"),
])
def test_invalid_arns_are_refused(ddb, arn, message):
    for call in [lambda: ddb.list_tags_of_resource(ResourceArn=arn),
                 lambda: ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}]),
                 lambda: ddb.untag_resource(ResourceArn=arn, TagKeys=["k"])]:
        expect_error(call, "ValidationException", message)


def test_an_arn_of_no_table_is_not_found(ddb):
    arn = arn_of(unique_name("missing"))
    message = f"Requested resource not found: ResourcArn: {arn} not found"
    expect_error(lambda: ddb.list_tags_of_resource(ResourceArn=arn),
                 "ResourceNotFoundException", message)
    expect_error(lambda: ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}]),
                 "ResourceNotFoundException", message)
    expect_error(lambda: ddb.untag_resource(ResourceArn=arn, TagKeys=["k"]),
                 "ResourceNotFoundException", message)
