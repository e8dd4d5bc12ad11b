"""Size limits: items of 400 KB, partition keys of 2048 bytes, sort keys of 1024 bytes,
nesting of 32 levels."""

import pytest

from conftest import create_table_request, expect_error, unique_name

# DynamoDB's item limit: 400 KB, counted as the UTF-8 bytes of attribute names and values.
ITEM_BYTES_MAX = 400 * 1024


def put_and_get_400_kb(client, table, name_bytes):
    # `name_bytes` of attribute names and key value; the rest of 400 KB is one string.
    item = {"pk": {"S": "k"}, "d": {"S": "x" * (ITEM_BYTES_MAX - name_bytes)}}
    client.put_item(TableName=table, Item=item)
    got = client.get_item(TableName=table, Key={"pk": {"S": "k"}}, ConsistentRead=True)
    assert len(got["Item"]["d"]["S"]) == ITEM_BYTES_MAX - name_bytes


def test_item_of_exactly_400_kb_is_stored(isolated_client):
    # On a cluster of its own: this item once stopped every replica that applied it (its
    # encoding is a few bytes over 400 KiB); the trees now take any encoded 400 KB item.
    name = unique_name()
    isolated_client.create_table(**create_table_request(name))
    isolated_client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    # "pk" + "k" + "d" = 4 bytes of names and key value.
    put_and_get_400_kb(isolated_client, name, 4)


def test_item_a_little_under_400_kb_is_stored(ddb, table):
    # Well under the limit, on the shared cluster.
    put_and_get_400_kb(ddb, table, 1024)


def test_item_one_byte_over_400_kb_is_refused(ddb, table):
    item = {"pk": {"S": "k"}, "d": {"S": "x" * (ITEM_BYTES_MAX - 3)}}
    expect_error(lambda: ddb.put_item(TableName=table, Item=item), "ValidationException",
                 "Item size has exceeded the maximum allowed size")


def test_update_growing_an_item_past_400_kb_is_refused(ddb, table):
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "d": {"S": "x" * 300_000}})
    expect_error(
        lambda: ddb.update_item(TableName=table, Key={"pk": {"S": "k"}}, UpdateExpression="SET e = :v",
                                ExpressionAttributeValues={":v": {"S": "y" * 200_000}}),
        "ValidationException", "Item size to update has exceeded the maximum allowed size")


def test_partition_key_limits(ddb, table):
    ddb.put_item(TableName=table, Item={"pk": {"S": "p" * 2048}})
    assert "Item" in ddb.get_item(TableName=table, Key={"pk": {"S": "p" * 2048}}, ConsistentRead=True)
    expect_error(
        lambda: ddb.put_item(TableName=table, Item={"pk": {"S": "p" * 2049}}),
        "ValidationException",
        "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes")


def test_sort_key_limits(ddb, make_table):
    name = make_table(sort=("sk", "S"))
    ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": "s" * 1024}})
    expect_error(
        lambda: ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": "s" * 1025}}),
        "ValidationException",
        "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size limit of 1024 bytes")


def test_multibyte_characters_count_as_utf8_bytes(ddb, table):
    # "é" is two bytes in UTF-8: 1024 of them are 2048 bytes, 1025 are too many.
    ddb.put_item(TableName=table, Item={"pk": {"S": "é" * 1024}})
    expect_error(lambda: ddb.put_item(TableName=table, Item={"pk": {"S": "é" * 1025}}),
                 "ValidationException", contains="Size of hashkey has exceeded")


def nested(depth):
    value = {"S": "leaf"}
    for _ in range(depth):
        value = {"M": {"m": value}}
    return value


NESTING_TOO_DEEP = ("Nesting Levels have exceeded supported limits: Attributes in the item have "
                    "nested levels beyond supported limit")


def test_nesting_up_to_32_levels(ddb, table):
    # The attribute itself is level 1: 31 maps around a scalar (the scalar at level 32) is the
    # deepest DynamoDB takes, 32 maps are refused, with this message. A public test suite
    # captured both against DynamoDB in eu-west-2 ("Nesting depth - 32-level document limit",
    # PutItem and ExpressionAttributeValues alike).
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "n": nested(31)})
    expect_error(lambda: ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "n": nested(32)}),
                 "ValidationException", NESTING_TOO_DEEP)
    expect_error(lambda: ddb.delete_item(TableName=table, Key={"pk": {"S": "k"}},
                                         ConditionExpression="n = :v",
                                         ExpressionAttributeValues={":v": nested(32)}),
                 "ValidationException", contains=NESTING_TOO_DEEP)


def test_empty_attribute_name_is_refused(ddb, table):
    expect_error(lambda: ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "": {"S": "v"}}),
                 "ValidationException",
                 "One or more parameter values were invalid: An AttributeName must not be empty")


# --- Attribute names -------------------------------------------------------------------------
# SCYLLA-LIMITS: ScyllaDB's test/alternator/test_limits.py, whose tests are run against
# DynamoDB: non-key names of 65,535 bytes work everywhere, 65,536 are a ValidationException
# naming the limit (DynamoDB's exact text is not recorded there; Shoal's is in
# engine/model/src/messages.rs); key attribute names are 1 to 255 characters.
NAME_BYTES_MAX = 65535


@pytest.fixture
def created(ddb):
    """Names of tables a test created itself, deleted after it."""
    names = []
    yield names
    for name in names:
        ddb.delete_table(TableName=name)
NAME_TOO_LONG = "Attribute name size exceeds the maximum size limit of 65535 bytes"


def test_attribute_names_up_to_65535_bytes(ddb, table):
    # SCYLLA-LIMITS test_limit_attribute_length_nonkey_good.
    longest = "n" * NAME_BYTES_MAX
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, longest: {"N": "1"}})
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "k"}}, ConsistentRead=True,
                       ProjectionExpression="#n", ExpressionAttributeNames={"#n": longest})
    assert got["Item"] == {longest: {"N": "1"}}
    ddb.update_item(TableName=table, Key={"pk": {"S": "k"}}, UpdateExpression="SET #n = #n + :one",
                    ExpressionAttributeNames={"#n": longest},
                    ExpressionAttributeValues={":one": {"N": "1"}})
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "k"}}, ConsistentRead=True,
                       AttributesToGet=[longest])
    assert got["Item"] == {longest: {"N": "2"}}


def test_attribute_names_over_65535_bytes_are_refused_everywhere(ddb, table):
    # SCYLLA-LIMITS test_limit_attribute_length_nonkey_bad: PutItem, ProjectionExpression names,
    # AttributesToGet, AttributeUpdates, UpdateExpression and ConditionExpression names.
    too_long = "n" * (NAME_BYTES_MAX + 1)
    key = {"pk": {"S": "k"}}
    for call in [
        lambda: ddb.put_item(TableName=table, Item={**key, too_long: {"N": "1"}}),
        lambda: ddb.get_item(TableName=table, Key=key, ProjectionExpression="#n",
                             ExpressionAttributeNames={"#n": too_long}),
        lambda: ddb.get_item(TableName=table, Key=key, AttributesToGet=[too_long]),
        lambda: ddb.update_item(TableName=table, Key=key,
                                AttributeUpdates={too_long: {"Value": {"N": "2"},
                                                             "Action": "PUT"}}),
        lambda: ddb.update_item(TableName=table, Key=key, UpdateExpression="SET #n = :v",
                                ExpressionAttributeNames={"#n": too_long},
                                ExpressionAttributeValues={":v": {"N": "3"}}),
        lambda: ddb.update_item(TableName=table, Key=key, UpdateExpression="SET a = :v",
                                ConditionExpression="#n = :v",
                                ExpressionAttributeNames={"#n": too_long},
                                ExpressionAttributeValues={":v": {"N": "1"}}),
    ]:
        expect_error(call, "ValidationException", contains=NAME_TOO_LONG)
    assert "Item" not in ddb.get_item(TableName=table, Key=key, ConsistentRead=True)


@pytest.mark.parametrize("schema_name, definition_name, path", [
    ("k" * 256, "k" * 256, "keySchema.1.member.attributeName"),
    ("pk", "k" * 256, "attributeDefinitions.1.member.attributeName"),
])
def test_key_attribute_names_over_255_characters_are_refused(ddb, schema_name, definition_name,
                                                              path):
    # SCYLLA-LIMITS test_limit_attribute_length_key_bad (and _incoherent_names: the length is
    # reported whatever else is wrong); the text is DynamoDB's generic constraint shape
    # (botocore KeySchemaAttributeName: length 1 to 255).
    name = unique_name()
    expect_error(lambda: ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": schema_name, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": definition_name, "AttributeType": "S"}]),
        "ValidationException",
        f"1 validation error detected: Value '{'k' * 256}' at '{path}' failed to satisfy "
        "constraint: Member must have length less than or equal to 255")


def test_key_attribute_names_of_255_characters_work(ddb, created):
    # SCYLLA-LIMITS test_limit_attribute_length_key_good.
    name = unique_name()
    hash_name, range_name = "h" * 255, "r" * 255
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": hash_name, "KeyType": "HASH"},
                                {"AttributeName": range_name, "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": hash_name, "AttributeType": "S"},
                                           {"AttributeName": range_name, "AttributeType": "S"}])
    created.append(name)
    key = {hash_name: {"S": "hi"}, range_name: {"S": "ho"}}
    ddb.put_item(TableName=name, Item={**key, "another": {"N": "2"}})
    got = ddb.get_item(TableName=name, Key=key, ConsistentRead=True)["Item"]
    assert got == {**key, "another": {"N": "2"}}


# --- Key sizes in every position -----------------------------------------------------------
# MOTO-KEYS: moto's test_dynamodb (test_item_add_long_string_*_key_exception,
# test_update_item_with_long_string_*_key_exception) records DynamoDB's two texts for PutItem
# and UpdateItem; SCYLLA-LIMITS (test_limit_sort_key_len_1024, test_limit_partition_key_len_2048)
# finds the same limits "in both read and write" on DynamoDB.
HASH_KEY_TOO_LARGE = ("One or more parameter values were invalid: Size of hashkey has exceeded "
                      "the maximum size limit of2048 bytes")
RANGE_KEY_TOO_LARGE = ("One or more parameter values were invalid: Aggregated size of all range "
                       "keys has exceeded the size limit of 1024 bytes")


def test_key_sizes_are_checked_in_every_item_position(ddb, make_table):
    name = make_table(sort=("sk", "S"))
    long_hash = {"pk": {"S": "h" * 2049}, "sk": {"S": "s"}}
    long_range = {"pk": {"S": "p"}, "sk": {"S": "r" * 1025}}
    for key, message in [(long_hash, HASH_KEY_TOO_LARGE), (long_range, RANGE_KEY_TOO_LARGE)]:
        for call in [
            lambda: ddb.get_item(TableName=name, Key=key),
            lambda: ddb.delete_item(TableName=name, Key=key),
            lambda: ddb.update_item(TableName=name, Key=key, UpdateExpression="SET a = :v",
                                    ExpressionAttributeValues={":v": {"N": "1"}}),
            lambda: ddb.batch_get_item(RequestItems={name: {"Keys": [key]}}),
            lambda: ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": key}}]}),
            lambda: ddb.batch_write_item(RequestItems={name: [{"DeleteRequest": {"Key": key}}]}),
        ]:
            expect_error(call, "ValidationException", message)
    # Nothing refused was written.
    assert ddb.scan(TableName=name, ConsistentRead=True)["Count"] == 0


# --- Expression limits -----------------------------------------------------------------------
# GUIDE-QUOTAS: developer guide, "Quotas" (ServiceQuotas.html), expression parameters: any
# expression string at most 4 KB; at most 300 operators or functions; IN at most 100 operands;
# document paths at most 32 levels. The texts: SCYLLA-EXPR, ScyllaDB's
# test/alternator/test_limits.py and test_condition_expression.py, which quote DynamoDB's
# answers ("Invalid ConditionExpression: Expression size has exceeded the maximum allowed size;
# expression size: 200004", "... The expression contains too many operators; operator count:
# 301").
EXPRESSION_BYTES_MAX = 4096
OPERATORS_MAX = 300


def size_error(kind, size):
    return (f"Invalid {kind}: Expression size has exceeded the maximum allowed size; "
            f"expression size: {size}")


def padded(expression, size):
    return expression + " " * (size - len(expression))


def test_every_expression_kind_is_limited_to_4_kb(ddb, make_table):
    # GUIDE-QUOTAS / SCYLLA-EXPR: 4,096 bytes are taken, one more is refused, in each kind.
    name = make_table(sort=("sk", "S"))
    key = {"pk": {"S": "p"}, "sk": {"S": "s"}}
    one = {":v": {"N": "1"}}
    calls = {
        "ConditionExpression": lambda size: ddb.put_item(
            TableName=name, Item=key,
            ConditionExpression=padded("attribute_not_exists(a)", size)),
        "UpdateExpression": lambda size: ddb.update_item(
            TableName=name, Key=key, UpdateExpression=padded("SET a = :v", size),
            ExpressionAttributeValues=one),
        "FilterExpression": lambda size: ddb.scan(
            TableName=name, FilterExpression=padded("attribute_exists(a)", size)),
        "KeyConditionExpression": lambda size: ddb.query(
            TableName=name, KeyConditionExpression=padded("pk = :v", size),
            ExpressionAttributeValues={":v": {"S": "p"}}),
        "ProjectionExpression": lambda size: ddb.get_item(
            TableName=name, Key=key, ProjectionExpression=padded("a", size)),
    }
    for kind, call in calls.items():
        call(EXPRESSION_BYTES_MAX)
        expect_error(lambda: call(EXPRESSION_BYTES_MAX + 1), "ValidationException",
                     size_error(kind, EXPRESSION_BYTES_MAX + 1))


def test_every_condition_kind_is_limited_to_300_operators(ddb, make_table):
    # GUIDE-QUOTAS / SCYLLA-EXPR (test_deeply_nested_expression_2: 299 "<" and "or" work, more
    # than 300 answer "operator count: 301"). n comparisons joined by OR are 2n - 1 operators.
    name = make_table(sort=("sk", "S"))
    key = {"pk": {"S": "p"}, "sk": {"S": "s"}}
    one = {":v": {"N": "1"}}
    within = " OR ".join(["a < :v"] * 150)  # 299 operators
    over = " OR ".join(["a < :v"] * 151)  # 301 operators
    for kind, call in {
        "ConditionExpression": lambda expression: ddb.update_item(
            TableName=name, Key=key, UpdateExpression="SET b = :v",
            ConditionExpression=f"attribute_not_exists(a) OR {expression}",
            ExpressionAttributeValues=one),
        "FilterExpression": lambda expression: ddb.scan(
            TableName=name, FilterExpression=expression, ExpressionAttributeValues=one),
    }.items():
        expect_error(lambda: call(over), "ValidationException",
                     f"Invalid {kind}: The expression contains too many operators; "
                     "operator count: 301")
    ddb.scan(TableName=name, FilterExpression=within, ExpressionAttributeValues=one)
    expect_error(lambda: ddb.query(TableName=name,
                                   KeyConditionExpression=" AND ".join(["pk = :v"] * 151),
                                   ExpressionAttributeValues={":v": {"S": "p"}}),
                 "ValidationException",
                 "Invalid KeyConditionExpression: The expression contains too many operators; "
                 "operator count: 301")


def test_update_expressions_are_limited_to_300_operators(ddb, table):
    # GUIDE-QUOTAS: "the maximum number of operators or functions allowed in an
    # UpdateExpression is 300". 300 additions are taken, 301 refused.
    key = {"pk": {"S": "p"}}
    values = {":v": {"N": "1"}}

    def additions(count):
        return "SET " + ",".join(f"a{index}=:v+:v" for index in range(count))

    ddb.update_item(TableName=table, Key=key, UpdateExpression=additions(OPERATORS_MAX),
                    ExpressionAttributeValues=values)
    expect_error(lambda: ddb.update_item(TableName=table, Key=key,
                                         UpdateExpression=additions(OPERATORS_MAX + 1),
                                         ExpressionAttributeValues=values),
                 "ValidationException",
                 "Invalid UpdateExpression: The expression contains too many operators; "
                 "operator count: 301")


def test_in_takes_at_most_100_operands(ddb, table):
    # GUIDE-QUOTAS: "The maximum number of operands for the IN comparator is 100".
    values = {":v": {"N": "1"}}
    ddb.scan(TableName=table, FilterExpression="a IN (" + ", ".join([":v"] * 100) + ")",
             ExpressionAttributeValues=values)
    expect_error(lambda: ddb.scan(TableName=table,
                                  FilterExpression="a IN (" + ", ".join([":v"] * 101) + ")",
                                  ExpressionAttributeValues=values),
                 "ValidationException", contains="IN operator is provided with too many operands")


def test_document_paths_are_limited_to_32_levels(ddb, table):
    # GUIDE-QUOTAS: "The maximum depth for a document path is 32", in every expression kind
    # that takes a path.
    key = {"pk": {"S": "p"}}
    deepest, too_deep = ".".join(["a"] * 32), ".".join(["a"] * 33)
    ddb.get_item(TableName=table, Key=key, ProjectionExpression=deepest)
    for call in [
        lambda: ddb.get_item(TableName=table, Key=key, ProjectionExpression=too_deep),
        lambda: ddb.scan(TableName=table, FilterExpression=f"attribute_exists({too_deep})"),
        lambda: ddb.update_item(TableName=table, Key=key, UpdateExpression=f"REMOVE {too_deep}"),
    ]:
        expect_error(call, "ValidationException", contains="document path has too many nesting")
