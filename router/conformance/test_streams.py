"""DynamoDB Streams: StreamSpecification on CreateTable/UpdateTable, and the Streams API
(ListStreams, DescribeStream, GetShardIterator, GetRecords; X-Amz-Target
DynamoDBStreams_20120810.*) through boto3's `dynamodbstreams` client.

Sources, cited per case (the research notes, with every text's origin, are in the branch's
report /work/streams-messages.md):
- API: the DynamoDB Streams API reference as botocore's dynamodbstreams service-2.json carries
  it (shapes: SequenceNumber 21-40 characters of digits, ShardId 28-65, ShardIterator 1-2048,
  StreamArn 37-1024; Limit "The upper limit is 100" for ListStreams/DescribeStream and 1000
  for GetRecords; a shard with an EndingSequenceNumber is closed; Record.userIdentity of Time to
  Live deletions; ApproximateCreationDateTime "in UNIX epoch time format and rounded down to the
  closest second"), and the DynamoDB API reference for StreamSpecification, LatestStreamArn and
  LatestStreamLabel.
- GUIDE: the developer guide, "Change data capture for DynamoDB Streams": the ARN form
  arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>; "If you perform a PutItem or
  UpdateItem operation that does not change any data in an item, DynamoDB Streams does not write
  a stream record for that operation"; re-enabling creates a new stream; "If you disable a
  stream, any shards that are open will be closed. The data in the stream will continue to be
  readable for 24 hours"; per item, records appear in the order of the modifications.
- ALTERNATOR: ScyllaDB's test/alternator/test_streams.py, written against DynamoDB and run on it
  (cases that Alternator fails are marked xfail there and pass on DynamoDB): the refusals'
  exception names, the images of each view type, no record for an identical PutItem or the
  DeleteItem of an absent item, closed shards of a disabled stream still readable, with
  NextShardIterator missing at their end.
- DYNALITE: dynalite's streams tests (test/getRecords.js, describeStream.js, listStreams.js)
  and validations (validations/describeStream.js, getRecords.js, listStreams.js,
  getShardIterator.js): eventVersion "1.1", eventSource "aws:dynamodb", SizeBytes > 0, Limit
  bounds, the LATEST iterator.
- QUIRKS-nnn: the ack-api-quirks DynamoDB catalogue's probes of DynamoDB (DDB-TABLE-050, 362,
  378, 442): "Table already has an enabled stream: TableName: <name>" (also for another view
  type), "Table has no stream to disable: TableName: <name>", DescribeTable without
  StreamSpecification but with the old LatestStreamArn after a disable, a new ARN on re-enable,
  ListStreams(TableName) listing the DISABLED streams too.

Shoal serves the Streams targets on the same endpoint as DynamoDB's (conftest.py's `streams`).
Records may appear a moment after the write that made them: every read polls, bounded by
WAIT_S.
"""

import datetime
import json
import re
import time

import pytest
from botocore.exceptions import ClientError

from conftest import (REGION, TTL_SWEEP_PERIOD_S, create_table_request, expect_error,
                      unique_name)

VIEW_TYPES = ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"]
# How long a test waits for records, a status or a table to settle.
WAIT_S = 15
# How long a Time to Live deletion may take here (test_ttl.py's bound).
EXPIRY_BOUND_S = 10 * TTL_SWEEP_PERIOD_S + 10
INVALID = "One or more parameter values were invalid: "
LABEL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}$")
SHARD_ID = re.compile(r"^[a-zA-Z0-9-]{28,65}$")
SEQUENCE_NUMBER = re.compile(r"^\d{21,40}$")
STREAMS_TARGET = "DynamoDBStreams_20120810."
TTL_IDENTITY = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}


# --- helpers --------------------------------------------------------------------------------

def wait_for(check, what, bound_s=WAIT_S, pause_s=0.2):
    """Polls `check` until it returns a truthy value (returned); fails after `bound_s`."""
    deadline = time.monotonic() + bound_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {bound_s} s (last: {value!r})")
        time.sleep(pause_s)


def wait_active(ddb, name):
    return wait_for(lambda: (lambda t: t if t["TableStatus"] == "ACTIVE" else None)(
        ddb.describe_table(TableName=name)["Table"]), f"table {name} ACTIVE")


def stream_status(streams, arn):
    return streams.describe_stream(StreamArn=arn)["StreamDescription"]["StreamStatus"]


def wait_stream_status(streams, arn, status):
    """ENABLING and DISABLING are the documented ways to ENABLED and DISABLED."""
    wait_for(lambda: stream_status(streams, arn) == status, f"stream {arn} {status}")


@pytest.fixture
def stream_table(ddb):
    """make(view_type, sort=None, **extra): a new table with partition key pk (S), a stream of
    `view_type` (none when None), ACTIVE; returns (name, CreateTable's TableDescription).
    Deleted after the test."""
    created = []

    def make(view_type="NEW_AND_OLD_IMAGES", sort=None, **extra):
        name = unique_name("streams")
        request = create_table_request(name, sort=sort)
        request.update(extra)
        if view_type is not None:
            request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view_type}
        answer = ddb.create_table(**request)["TableDescription"]
        created.append(name)
        wait_active(ddb, name)
        return name, answer

    yield make
    for name in created:
        try:
            ddb.delete_table(TableName=name)
        except ClientError:
            pass


def latest_arn(ddb, name):
    return ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]


def all_shards(streams, arn):
    """Every shard of the stream, following LastEvaluatedShardId."""
    description = streams.describe_stream(StreamArn=arn)["StreamDescription"]
    shards = list(description["Shards"])
    while "LastEvaluatedShardId" in description:
        description = streams.describe_stream(
            StreamArn=arn, ExclusiveStartShardId=description["LastEvaluatedShardId"]
        )["StreamDescription"]
        shards.extend(description["Shards"])
    return shards


def drain(streams, iterator, limit=None):
    """Reads from `iterator` until a page comes back empty or the shard ends; returns the
    records and the iterator to go on with (None at the end of a closed shard)."""
    records = []
    for _ in range(1000):
        request = {"ShardIterator": iterator}
        if limit is not None:
            request["Limit"] = limit
        page = streams.get_records(**request)
        records.extend(page["Records"])
        iterator = page.get("NextShardIterator")
        if not page["Records"] or iterator is None:
            break
    return records, iterator


def read_stream(streams, arn):
    """{shard id: records from TRIM_HORIZON} for every shard of the stream."""
    by_shard = {}
    for shard in all_shards(streams, arn):
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        by_shard[shard["ShardId"]], _ = drain(streams, iterator)
    return by_shard


def flatten(by_shard):
    return [record for records in by_shard.values() for record in records]


def of_key(records, key):
    return [record for record in records if record["dynamodb"]["Keys"] == key]


def wait_records(streams, arn, count, key=None, what="records"):
    """Reads the whole stream until it holds at least `count` records (of `key`, if given);
    returns them (of `key`, if given) in stream order within each shard."""
    def enough():
        records = flatten(read_stream(streams, arn))
        if key is not None:
            records = of_key(records, key)
        return records if len(records) >= count else None
    return wait_for(enough, f"{count} {what} in {arn}", pause_s=0.3)


def shard_of(streams, arn, key):
    """The id of the shard whose records are those of `key` (one item's records are in one
    shard, in order: GUIDE)."""
    for shard_id, records in read_stream(streams, arn).items():
        if of_key(records, key):
            return shard_id
    pytest.fail(f"no shard of {arn} holds a record of {key}")


def stream_call(raw, operation, payload):
    return raw.call(operation, payload, target=STREAMS_TARGET + operation)


# --- stream on a table ------------------------------------------------------------------------

def test_create_table_with_a_stream_describes_and_lists_it(ddb, streams, stream_table):
    # API CreateTable/DescribeTable: StreamSpecification, LatestStreamArn, LatestStreamLabel in
    # both answers (ALTERNATOR test_latest_stream_arn, test_latest_stream_label,
    # test_stream_specification); GUIDE: the ARN is the table's ARN, /stream/, the label;
    # QUIRKS-050/362: the label is the enable time with milliseconds.
    name, created = stream_table("NEW_IMAGE", sort=("sk", "N"))
    table = ddb.describe_table(TableName=name)["Table"]
    for description in (created, table):
        assert description["StreamSpecification"] == {"StreamEnabled": True,
                                                      "StreamViewType": "NEW_IMAGE"}
        assert description["LatestStreamArn"] == table["LatestStreamArn"]
        assert description["LatestStreamLabel"] == table["LatestStreamLabel"]
    arn, label = table["LatestStreamArn"], table["LatestStreamLabel"]
    assert LABEL.match(label), label
    assert arn == f"{table['TableArn']}/stream/{label}"
    assert 37 <= len(arn) <= 1024

    # ListStreams with TableName: exactly this stream (API Stream shape; DYNALITE listStreams).
    listed = streams.list_streams(TableName=name)
    assert listed["Streams"] == [{"StreamArn": arn, "TableName": name, "StreamLabel": label}]
    assert "LastEvaluatedStreamArn" not in listed
    # Without TableName: every stream of the account, this one among them, page by page.
    everything, request = [], {"Limit": 100}
    for _ in range(1000):
        page = streams.list_streams(**request)
        everything.extend(page["Streams"])
        if "LastEvaluatedStreamArn" not in page:
            break
        request["ExclusiveStartStreamArn"] = page["LastEvaluatedStreamArn"]
    assert {"StreamArn": arn, "TableName": name, "StreamLabel": label} in everything

    # DescribeStream (API StreamDescription; DYNALITE describeStream; ALTERNATOR
    # test_describe_stream): ENABLING first is allowed.
    wait_stream_status(streams, arn, "ENABLED")
    description = streams.describe_stream(StreamArn=arn)["StreamDescription"]
    assert description["StreamArn"] == arn
    assert description["StreamLabel"] == label
    assert description["StreamViewType"] == "NEW_IMAGE"
    assert description["TableName"] == name
    assert description["KeySchema"] == table["KeySchema"]
    assert isinstance(description["CreationRequestDateTime"], datetime.datetime)
    shards = all_shards(streams, arn)
    assert shards
    assert len({shard["ShardId"] for shard in shards}) == len(shards)
    for shard in shards:
        assert SHARD_ID.match(shard["ShardId"]), shard
        assert SEQUENCE_NUMBER.match(shard["SequenceNumberRange"]["StartingSequenceNumber"]), shard
    # A new stream has open shards: no EndingSequenceNumber (API SequenceNumberRange).
    assert any("EndingSequenceNumber" not in shard["SequenceNumberRange"] for shard in shards)
    # ALTERNATOR list_shards: starting after the last shard lists none.
    after_last = streams.describe_stream(StreamArn=arn, ExclusiveStartShardId=shards[-1]["ShardId"])
    assert after_last["StreamDescription"]["Shards"] == []


@pytest.mark.parametrize("view_type", VIEW_TYPES)
def test_writes_produce_records_of_the_view_type(ddb, streams, stream_table, view_type):
    # API Record and StreamRecord; DYNALITE getRecords ("should return all stream records");
    # ALTERNATOR compare_events / test_streams_new_and_old_images: KEYS_ONLY has no image,
    # NEW_IMAGE only NewImage, OLD_IMAGE only OldImage, NEW_AND_OLD_IMAGES both; an INSERT has
    # no OldImage, a REMOVE no NewImage; a replacing PutItem is one MODIFY with the whole old
    # and new items.
    name, _ = stream_table(view_type)
    arn = latest_arn(ddb, name)
    key = {"pk": {"S": "item"}}
    first = {**key, "a": {"N": "1"}, "s": {"S": "x"}}
    second = {**key, "b": {"SS": ["p", "q"]}}
    third = {**second, "c": {"M": {"n": {"BOOL": True}}}}
    started = datetime.datetime.now(datetime.timezone.utc)
    ddb.put_item(TableName=name, Item=first)
    ddb.put_item(TableName=name, Item=second)
    ddb.update_item(TableName=name, Key=key, UpdateExpression="SET c = :c",
                    ExpressionAttributeValues={":c": {"M": {"n": {"BOOL": True}}}})
    ddb.delete_item(TableName=name, Key=key)
    expected = [("INSERT", None, first), ("MODIFY", first, second), ("MODIFY", second, third),
                ("REMOVE", third, None)]

    records = wait_records(streams, arn, 4, key=key)
    assert len(records) == 4, records
    assert len({record["eventID"] for record in records}) == 4
    previous = 0
    for record, (event, old, new) in zip(records, expected):
        assert record["eventName"] == event
        assert record["eventSource"] == "aws:dynamodb"
        assert record["eventVersion"] == "1.1"
        assert record["awsRegion"] == REGION
        assert record["eventID"]
        assert not record.get("userIdentity"), record
        change = record["dynamodb"]
        assert change["Keys"] == key
        assert change["StreamViewType"] == view_type
        assert change["SizeBytes"] > 0
        assert SEQUENCE_NUMBER.match(change["SequenceNumber"])
        assert int(change["SequenceNumber"]) > previous
        previous = int(change["SequenceNumber"])
        # Rounded down to the second (API), so allow a second before the first write.
        created = change["ApproximateCreationDateTime"]
        assert started - datetime.timedelta(seconds=2) <= created
        assert created <= datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
        wants_new = view_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES") and new is not None
        wants_old = view_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES") and old is not None
        if wants_new:
            assert change["NewImage"] == new
        else:
            assert "NewImage" not in change
        if wants_old:
            assert change["OldImage"] == old
        else:
            assert "OldImage" not in change


def test_get_records_wire_shapes(ddb, raw, stream_table):
    # API StreamRecord: ApproximateCreationDateTime is epoch seconds rounded down (a JSON
    # number: the AWS CLI example prints 1571849028.0; DynamoDB's JSON timestamps are epoch
    # seconds); SizeBytes a positive number; SequenceNumber digits, 21 to 40; ShardIterator 1 to
    # 2048 characters.
    name, _ = stream_table("KEYS_ONLY")
    arn = latest_arn(ddb, name)
    ddb.put_item(TableName=name, Item={"pk": {"S": "wire"}})

    def records():
        found = []
        description = stream_call(raw, "DescribeStream", {"StreamArn": arn}).json()
        for shard in description["StreamDescription"]["Shards"]:
            answer = stream_call(raw, "GetShardIterator", {
                "StreamArn": arn, "ShardId": shard["ShardId"],
                "ShardIteratorType": "TRIM_HORIZON"})
            assert answer.status == 200, answer.body
            iterator = answer.json()["ShardIterator"]
            assert isinstance(iterator, str) and 1 <= len(iterator) <= 2048
            page = stream_call(raw, "GetRecords", {"ShardIterator": iterator})
            assert page.status == 200, page.body
            found.extend(page.json()["Records"])
        return found

    record = wait_for(records, "the record over the wire")[0]
    change = record["dynamodb"]
    assert isinstance(change["ApproximateCreationDateTime"], (int, float))
    assert change["ApproximateCreationDateTime"] == int(change["ApproximateCreationDateTime"])
    assert abs(change["ApproximateCreationDateTime"] - time.time()) < 60
    assert isinstance(change["SizeBytes"], int) and change["SizeBytes"] > 0
    assert isinstance(change["SequenceNumber"], str)
    assert SEQUENCE_NUMBER.match(change["SequenceNumber"])
    assert change["Keys"] == {"pk": {"S": "wire"}}
    assert record["eventName"] == "INSERT"
    assert isinstance(record["eventID"], str) and record["eventID"]


def test_writes_that_change_nothing_produce_no_record(ddb, streams, stream_table):
    # GUIDE: a PutItem or UpdateItem that does not change any data writes no record.
    # ALTERNATOR do_updates_1 (verified on DynamoDB): "a second put_item of the *same* key and
    # same value, doesn't appear in the log at all!"; "deleting a non-existent item doesn't
    # appear in the log at all". A refused conditional write changes nothing either.
    name, _ = stream_table("NEW_AND_OLD_IMAGES")
    arn = latest_arn(ddb, name)
    absent = {"pk": {"S": "never-written"}}
    ddb.delete_item(TableName=name, Key=absent)
    key = {"pk": {"S": "steady"}}
    item = {**key, "a": {"N": "1"}, "l": {"L": [{"S": "x"}]}}
    ddb.put_item(TableName=name, Item=item)
    ddb.put_item(TableName=name, Item=item)
    ddb.update_item(TableName=name, Key=key, UpdateExpression="SET a = :same",
                    ExpressionAttributeValues={":same": {"N": "1"}})
    expect_error(lambda: ddb.put_item(TableName=name, Item={**key, "a": {"N": "2"}},
                                      ConditionExpression="attribute_not_exists(pk)"),
                 "ConditionalCheckFailedException")
    expect_error(lambda: ddb.update_item(TableName=name, Key=key, UpdateExpression="SET a = :two",
                                         ConditionExpression="a = :zero",
                                         ExpressionAttributeValues={":two": {"N": "2"},
                                                                    ":zero": {"N": "0"}}),
                 "ConditionalCheckFailedException")
    expect_error(lambda: ddb.delete_item(TableName=name, Key=key,
                                         ConditionExpression="attribute_not_exists(pk)"),
                 "ConditionalCheckFailedException")
    # A real change of the same item last: once its record is there, every earlier one of the
    # item is (per item, records are in the order of the modifications: GUIDE).
    ddb.update_item(TableName=name, Key=key, UpdateExpression="SET a = :three",
                    ExpressionAttributeValues={":three": {"N": "3"}})

    records = wait_records(streams, arn, 2, key=key)
    assert [record["eventName"] for record in records] == ["INSERT", "MODIFY"], records
    assert records[1]["dynamodb"]["OldImage"] == item
    assert records[1]["dynamodb"]["NewImage"] == {**item, "a": {"N": "3"}}
    assert of_key(flatten(read_stream(streams, arn)), absent) == []


def test_latest_iterator_sees_only_later_writes(ddb, streams, stream_table):
    # API GetShardIterator LATEST: "Start reading just after the most recent stream record in
    # the shard"; DYNALITE getRecords ("latest iterator should return only new records"); an
    # open shard read to its end still gives a NextShardIterator (ALTERNATOR
    # test_streams_no_records).
    name, _ = stream_table("KEYS_ONLY")
    arn = latest_arn(ddb, name)
    before = {"pk": {"S": "before"}}
    ddb.put_item(TableName=name, Item=before)
    wait_records(streams, arn, 1, key=before)
    iterators = {}
    for shard in all_shards(streams, arn):
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="LATEST")["ShardIterator"]
        page = streams.get_records(ShardIterator=iterator)
        assert page["Records"] == []
        assert page["NextShardIterator"]
        iterators[shard["ShardId"]] = page["NextShardIterator"]
    after = {"pk": {"S": "after"}}
    ddb.put_item(TableName=name, Item=after)

    seen = []

    def read_on():
        for shard_id, iterator in iterators.items():
            records, next_iterator = drain(streams, iterator)
            seen.extend(records)
            iterators[shard_id] = next_iterator
        return of_key(seen, after)

    wait_for(read_on, "the later write through LATEST iterators")
    assert [record["dynamodb"]["Keys"] for record in seen] == [after]


def test_sequence_number_iterators_and_limit(ddb, streams, stream_table):
    # API GetShardIterator AT_SEQUENCE_NUMBER / AFTER_SEQUENCE_NUMBER, GetRecords Limit and
    # NextShardIterator; ALTERNATOR test_streams_at_sequence_number,
    # test_streams_after_sequence_number, test_streams_trim_horizon,
    # test_streams_starting_sequence_number; DYNALITE getRecords ("should return respect limit
    # and return valid next iterator").
    name, _ = stream_table("KEYS_ONLY")
    arn = latest_arn(ddb, name)
    key = {"pk": {"S": "counter"}}
    for value in ("1", "2", "3"):
        ddb.put_item(TableName=name, Item={**key, "n": {"N": value}})
    records = wait_records(streams, arn, 3, key=key)
    sequence = [record["dynamodb"]["SequenceNumber"] for record in records]
    assert [int(number) for number in sequence] == sorted(int(number) for number in sequence)
    shard_id = shard_of(streams, arn, key)

    def iterator(kind, number=None):
        request = dict(StreamArn=arn, ShardId=shard_id, ShardIteratorType=kind)
        if number is not None:
            request["SequenceNumber"] = number
        return streams.get_shard_iterator(**request)["ShardIterator"]

    def numbers(page):
        return [record["dynamodb"]["SequenceNumber"] for record in page["Records"]]

    assert numbers(streams.get_records(ShardIterator=iterator("AT_SEQUENCE_NUMBER", sequence[1]),
                                       Limit=1)) == [sequence[1]]
    assert numbers(streams.get_records(
        ShardIterator=iterator("AFTER_SEQUENCE_NUMBER", sequence[1]), Limit=1)) == [sequence[2]]
    all_after_first, _ = drain(streams, iterator("AFTER_SEQUENCE_NUMBER", sequence[0]))
    assert [record["dynamodb"]["SequenceNumber"] for record in all_after_first] == sequence[1:]

    # TRIM_HORIZON one record at a time, then the rest, then nothing (the shard is open).
    page = streams.get_records(ShardIterator=iterator("TRIM_HORIZON"), Limit=1)
    assert numbers(page) == [sequence[0]]
    page = streams.get_records(ShardIterator=page["NextShardIterator"], Limit=1)
    assert numbers(page) == [sequence[1]]
    page = streams.get_records(ShardIterator=page["NextShardIterator"], Limit=1000)
    assert numbers(page) == [sequence[2]]
    page = streams.get_records(ShardIterator=page["NextShardIterator"])
    assert page["Records"] == []
    assert page["NextShardIterator"]

    # The shard's StartingSequenceNumber reads what TRIM_HORIZON reads.
    shard = next(shard for shard in all_shards(streams, arn) if shard["ShardId"] == shard_id)
    start = shard["SequenceNumberRange"]["StartingSequenceNumber"]
    from_start, _ = drain(streams, iterator("AT_SEQUENCE_NUMBER", start))
    assert [record["dynamodb"]["SequenceNumber"] for record in from_start] == sequence


def test_disabling_closes_the_stream_and_keeps_its_records(ddb, streams, stream_table):
    # QUIRKS-050: after {StreamEnabled: false} DescribeTable has no StreamSpecification but keeps
    # LatestStreamArn/Label; a second disable is "Table has no stream to disable"; the old
    # stream's DescribeStream says DISABLED. GUIDE: open shards are closed, the data stays
    # readable. ALTERNATOR test_streams_disabled_stream (verified on DynamoDB): the old ARN is
    # still listed, every shard has an EndingSequenceNumber, TRIM_HORIZON reads the record, and
    # the end of a closed shard has no NextShardIterator.
    name, _ = stream_table("NEW_IMAGE")
    arn = latest_arn(ddb, name)
    label = ddb.describe_table(TableName=name)["Table"]["LatestStreamLabel"]
    key = {"pk": {"S": "kept"}}
    ddb.put_item(TableName=name, Item={**key, "v": {"S": "1"}})
    wait_records(streams, arn, 1, key=key)
    wait_stream_status(streams, arn, "ENABLED")

    ddb.update_table(TableName=name, StreamSpecification={"StreamEnabled": False})
    table = wait_active(ddb, name)
    assert "StreamSpecification" not in table
    assert table["LatestStreamArn"] == arn
    assert table["LatestStreamLabel"] == label
    wait_stream_status(streams, arn, "DISABLED")
    description = streams.describe_stream(StreamArn=arn)["StreamDescription"]
    assert description["StreamViewType"] == "NEW_IMAGE"
    assert description["TableName"] == name
    assert [stream["StreamArn"] for stream in streams.list_streams(TableName=name)["Streams"]] \
        == [arn]
    shards = all_shards(streams, arn)
    for shard in shards:
        assert SEQUENCE_NUMBER.match(shard["SequenceNumberRange"]["EndingSequenceNumber"]), shard

    # Writes after the disable reach no stream.
    ddb.put_item(TableName=name, Item={**key, "v": {"S": "2"}})
    time.sleep(1)
    found = []
    for shard in shards:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records, next_iterator = drain(streams, iterator)
        found.extend(records)
        if next_iterator is not None:
            # The end may take one more, empty, page to report (ALTERNATOR).
            page = streams.get_records(ShardIterator=next_iterator)
            assert page["Records"] == []
            assert "NextShardIterator" not in page
    assert [record["eventName"] for record in found] == ["INSERT"]
    assert found[0]["dynamodb"]["NewImage"] == {**key, "v": {"S": "1"}}

    expect_error(lambda: ddb.update_table(TableName=name,
                                          StreamSpecification={"StreamEnabled": False}),
                 "ValidationException", f"Table has no stream to disable: TableName: {name}")

    # Re-enabling makes a new stream (GUIDE; QUIRKS-362: the answer already carries it);
    # ListStreams(TableName) lists both (QUIRKS-378).
    answer = ddb.update_table(TableName=name, StreamSpecification={
        "StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})["TableDescription"]
    new_arn = answer["LatestStreamArn"]
    assert new_arn != arn
    assert answer["LatestStreamLabel"] != label
    assert answer["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
    table = wait_active(ddb, name)
    assert table["LatestStreamArn"] == new_arn
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
    listed = {stream["StreamArn"] for stream in streams.list_streams(TableName=name)["Streams"]}
    assert listed == {arn, new_arn}
    wait_stream_status(streams, new_arn, "ENABLED")
    assert stream_status(streams, arn) == "DISABLED"
    ddb.put_item(TableName=name, Item={**key, "v": {"S": "3"}})
    records = wait_records(streams, new_arn, 1, key=key)
    assert [record["eventName"] for record in records] == ["MODIFY"]
    assert records[0]["dynamodb"]["StreamViewType"] == "KEYS_ONLY"
    assert "OldImage" not in records[0]["dynamodb"] and "NewImage" not in records[0]["dynamodb"]


def test_enabling_a_stream_on_an_existing_table(ddb, streams, stream_table):
    # API UpdateTable StreamSpecification; QUIRKS-362: the UpdateTable answer carries the new
    # LatestStreamArn; QUIRKS-050: enabling again, with the same or another view type, is
    # "Table already has an enabled stream: TableName: <name>" (ALTERNATOR
    # test_streams_enable_on_enabled, test_streams_change_type).
    name, created = stream_table(None)
    assert "LatestStreamArn" not in created
    assert streams.list_streams(TableName=name)["Streams"] == []
    answer = ddb.update_table(TableName=name, StreamSpecification={
        "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})["TableDescription"]
    arn = answer["LatestStreamArn"]
    assert answer["StreamSpecification"] == {"StreamEnabled": True,
                                             "StreamViewType": "NEW_AND_OLD_IMAGES"}
    wait_active(ddb, name)
    assert latest_arn(ddb, name) == arn
    wait_stream_status(streams, arn, "ENABLED")
    for view_type in ("NEW_AND_OLD_IMAGES", "KEYS_ONLY"):
        expect_error(lambda: ddb.update_table(TableName=name, StreamSpecification={
            "StreamEnabled": True, "StreamViewType": view_type}),
            "ValidationException", f"Table already has an enabled stream: TableName: {name}")
    key = {"pk": {"S": "k"}}
    ddb.put_item(TableName=name, Item=key)
    records = wait_records(streams, arn, 1, key=key)
    assert records[0]["eventName"] == "INSERT"
    assert records[0]["dynamodb"]["NewImage"] == key


def test_an_invalid_stream_view_type_is_refused(ddb):
    # ALTERNATOR test_create_streams_wrong_type: ValidationException; the text is DynamoDB's
    # enum constraint (QUIRKS-442's shape validator; the set's order is not asserted).
    name = unique_name("streams")
    expect_error(lambda: ddb.create_table(**create_table_request(name), StreamSpecification={
        "StreamEnabled": True, "StreamViewType": "Fisk"}), "ValidationException",
        contains="Value 'Fisk' at 'streamSpecification.streamViewType' failed to satisfy "
                 "constraint: Member must satisfy enum value set")
    expect_error(lambda: ddb.describe_table(TableName=name), "ResourceNotFoundException")


def test_streams_api_refusals(ddb, streams, raw, stream_table):
    # ALTERNATOR (verified on DynamoDB, which answers ValidationException where DynamoDB Local
    # answers ResourceNotFoundException): test_describe_nonexistent_stream,
    # test_get_shard_iterator, test_get_shard_iterator_for_nonexistent_stream,
    # test_get_shard_iterator_for_nonexistent_shard, test_get_records_nonexistent_iterator,
    # test_get_records_too_high_limit, test_list_streams_zero_limit,
    # test_list_streams_with_nonexistent_last_stream, test_describe_stream_with_nonexistent_last_shard.
    name, _ = stream_table("KEYS_ONLY")
    arn = latest_arn(ddb, name)
    shard = all_shards(streams, arn)[0]
    shard_id = shard["ShardId"]
    start = shard["SequenceNumberRange"]["StartingSequenceNumber"]

    # A well-formed ARN of no stream: ResourceNotFoundException with DynamoDB's text (a public
    # test against eu-west-1: "Requested resource not found: Stream: <arn> not found").
    table_arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
    unknown = table_arn.replace(name, unique_name("nostream")) + "/stream/2015-05-11T21:21:33.291"
    expect_error(lambda: streams.describe_stream(StreamArn=unknown), "ResourceNotFoundException",
                 f"Requested resource not found: Stream: {unknown} not found")
    expect_error(lambda: streams.get_shard_iterator(StreamArn=unknown, ShardId=shard_id,
                                                    ShardIteratorType="LATEST"),
                 "ResourceNotFoundException", contains="Requested resource not found")
    # A malformed ARN: ValidationException.
    malformed = "sdfadfsdfnlfkajakfgjalksfgklasjklasdjfklasdfasdfgasf"
    expect_error(lambda: streams.describe_stream(StreamArn=malformed), "ValidationException")
    expect_error(lambda: streams.get_shard_iterator(StreamArn=malformed, ShardId=shard_id,
                                                    ShardIteratorType="LATEST"),
                 "ValidationException")
    # An unknown shard of a real stream.
    expect_error(lambda: streams.get_shard_iterator(
        StreamArn=arn, ShardId="adfasdasdasdasdasdasdasdasdasasdasd",
        ShardIteratorType="LATEST"), "ResourceNotFoundException")
    # SequenceNumber is required by AT/AFTER_SEQUENCE_NUMBER and refused by the others.
    for kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        expect_error(lambda: streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id,
                                                        ShardIteratorType=kind),
                     "ValidationException")
    for kind in ("TRIM_HORIZON", "LATEST"):
        expect_error(lambda: streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id,
                                                        ShardIteratorType=kind,
                                                        SequenceNumber=start),
                     "ValidationException")
    expect_error(lambda: streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id,
                                                    ShardIteratorType="bulle",
                                                    SequenceNumber=start),
                 "ValidationException")
    expect_error(lambda: streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard_id, ShardIteratorType="LATEST",
        SequenceNumber="sdfsafglldfngjdafnasdflgnaldklkafdsgklnasdlv"), "ValidationException")

    # GetRecords: a malformed iterator; Limit 1 to 1000 (API: "The upper limit is 1000").
    expect_error(lambda: streams.get_records(
        ShardIterator="sdfsdfsgagaddafgagasgasgasdfasdfasdfasdfasdgasdasdgasdg", Limit=1000),
        "ValidationException")
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id,
                                          ShardIteratorType="LATEST")["ShardIterator"]
    assert streams.get_records(ShardIterator=iterator, Limit=1000)["Records"] == []
    error = expect_error(lambda: streams.get_records(ShardIterator=iterator, Limit=1001),
                         "ValidationException")
    assert "limit" in error["Error"]["Message"].lower()
    # boto3 checks the model's minimum itself: these go raw.
    for limit in (0, -1):
        answer = stream_call(raw, "GetRecords", {"ShardIterator": iterator, "Limit": limit})
        assert answer.status == 400
        assert answer.error_type == "ValidationException", answer.json()
        assert "limit" in answer.json()["message"].lower()

    # ListStreams and DescribeStream: Limit 1 to 100 (API; DYNALITE validations).
    for operation, payload in (("ListStreams", {}), ("DescribeStream", {"StreamArn": arn})):
        for limit in (0, 101):
            answer = stream_call(raw, operation, {**payload, "Limit": limit})
            assert answer.status == 400, (operation, limit)
            assert answer.error_type == "ValidationException", (operation, limit, answer.json())
        assert stream_call(raw, operation, {**payload, "Limit": 100}).status == 200
    expect_error(lambda: streams.list_streams(
        TableName=name, ExclusiveStartStreamArn="kossaapaaasdafsdaasdasdasdasasdasfadfadfasdasdas"),
        "ValidationException")
    # An ExclusiveStartShardId of no shard is no error: no shards follow it.
    answer = streams.describe_stream(
        StreamArn=arn, ExclusiveStartShardId="zzzzzzzzzzzzzzzzzzzzzzzzsfasdgagadfadfgagkjsdfsfsdjfjks")
    assert answer["StreamDescription"]["Shards"] == []


def test_ttl_deletions_are_records_of_the_service(ddb, streams, stream_table):
    # API Record.userIdentity: "Items that are deleted by the Time to Live process after
    # expiration have ... type "Service", principalId "dynamodb.amazonaws.com"" (the
    # developer guide's "DynamoDB Streams and Time to Live" likewise). boto3 reads the
    # model's member names, PrincipalId and Type. A DeleteItem's record has no userIdentity.
    name, _ = stream_table("NEW_AND_OLD_IMAGES")
    arn = latest_arn(ddb, name)
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "expires"})
    expired = {"pk": {"S": "expired"}, "expires": {"N": str(int(time.time()) - 60)}}
    deleted = {"pk": {"S": "deleted"}}
    ddb.put_item(TableName=name, Item=expired)
    ddb.put_item(TableName=name, Item=deleted)
    ddb.delete_item(TableName=name, Key=deleted)

    def removal():
        records = of_key(flatten(read_stream(streams, arn)), {"pk": {"S": "expired"}})
        return [record for record in records if record["eventName"] == "REMOVE"]

    record = wait_for(removal, "the Time to Live deletion's record", bound_s=EXPIRY_BOUND_S,
                      pause_s=0.5)[0]
    assert record["userIdentity"] == TTL_IDENTITY
    assert record["dynamodb"]["OldImage"] == expired
    assert "NewImage" not in record["dynamodb"]
    user_records = wait_records(streams, arn, 2, key=deleted)
    assert [r["eventName"] for r in user_records] == ["INSERT", "REMOVE"]
    assert not user_records[1].get("userIdentity")


def test_index_maintenance_adds_no_records(ddb, streams, stream_table):
    # GUIDE: a stream record describes a modification of one item of the table; a global
    # secondary index is kept by DynamoDB, not written by the application, and has no stream.
    name, _ = stream_table(
        "NEW_AND_OLD_IMAGES",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "g", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "by_g",
                                 "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}])
    arn = latest_arn(ddb, name)
    key = {"pk": {"S": "indexed"}}
    ddb.put_item(TableName=name, Item={**key, "g": {"S": "one"}})
    ddb.update_item(TableName=name, Key=key, UpdateExpression="SET g = :two",
                    ExpressionAttributeValues={":two": {"S": "two"}})
    ddb.update_item(TableName=name, Key=key, UpdateExpression="REMOVE g")
    ddb.delete_item(TableName=name, Key=key)
    records = wait_records(streams, arn, 4, key=key)
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "MODIFY", "REMOVE"]
    # Give a stray index record time to show, then count the whole stream.
    time.sleep(1)
    everything = flatten(read_stream(streams, arn))
    assert len(everything) == 4, json.dumps(everything, default=str)


def test_nodes_report_the_bytes_their_streams_hold(ddb, port, stream_table):
    """Operators see how much of each partition its stream takes (shoal's own metric,
    engine/shard metrics.rs: shoal_partition_stream_record_bytes), one sample per replica that
    holds records."""
    import test_metrics

    def total_bytes():
        total = 0
        for node in range(1, 4):
            text = test_metrics.scrape(port + 100 * node + test_metrics.ADMIN_PORT_OFFSET)
            family = test_metrics.families_of(text).get("shoal_partition_stream_record_bytes")
            if family is not None:
                total += sum(sample.value for sample in family.samples)
        return total

    name, _ = stream_table("NEW_AND_OLD_IMAGES")
    # Other tests' streams hold bytes too; this one's writes must add to them.
    before = total_bytes()
    for i in range(20):
        ddb.put_item(TableName=name, Item={"pk": {"S": f"m{i}"}, "v": {"S": "x" * 500}})
    # Every replica applies every record: the three nodes together hold three copies of more
    # than the images written.
    wait_for(lambda: total_bytes() >= before + 3 * 20 * 500, "stream bytes in the nodes' metrics")


def test_at_timestamp_iterators_start_at_the_first_record_created_then(ddb, streams,
                                                                       stream_table):
    """AT_TIMESTAMP (API reference, GetShardIterator, "Timestamp"): the first record whose
    ApproximateCreationDateTime is at or after the timestamp; an older timestamp reads from
    TRIM_HORIZON; a timestamp in the future is a ValidationException. Current botocore models
    it; older SDKs do not send it."""
    name, _ = stream_table("NEW_IMAGE")
    arn = latest_arn(ddb, name)
    for i in range(6):
        ddb.put_item(TableName=name, Item={"pk": {"S": f"early{i}"}})
    wait_records(streams, arn, 6)
    # Record times are the leaders' clocks in milliseconds: a pause separates the two groups.
    time.sleep(1.1)
    boundary = time.time()
    time.sleep(0.1)
    for i in range(6):
        ddb.put_item(TableName=name, Item={"pk": {"S": f"late{i}"}})
    wait_records(streams, arn, 12)

    def keys_from(timestamp):
        keys = []
        for shard in all_shards(streams, arn):
            iterator = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="AT_TIMESTAMP",
                Timestamp=timestamp)["ShardIterator"]
            records, _ = drain(streams, iterator)
            keys.extend(record["dynamodb"]["Keys"]["pk"]["S"] for record in records)
        return sorted(keys)

    assert keys_from(boundary) == [f"late{i}" for i in range(6)]
    assert keys_from(boundary - 3600) == sorted([f"early{i}" for i in range(6)]
                                                + [f"late{i}" for i in range(6)])
    shard_id = all_shards(streams, arn)[0]["ShardId"]
    expect_error(lambda: streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard_id, ShardIteratorType="AT_TIMESTAMP",
        Timestamp=time.time() + 3600), "ValidationException")
    expect_error(lambda: streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard_id, ShardIteratorType="AT_TIMESTAMP"),
        "ValidationException")


def test_a_child_shards_filter_lists_only_children(ddb, streams, stream_table):
    """DescribeStream's ShardFilter CHILD_SHARDS (API reference; the only type): the shards
    whose parent is the one named. A new stream's shards have no children yet."""
    name, _ = stream_table("KEYS_ONLY")
    arn = latest_arn(ddb, name)
    wait_stream_status(streams, arn, "ENABLED")
    shard_id = all_shards(streams, arn)[0]["ShardId"]
    children = streams.describe_stream(
        StreamArn=arn, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": shard_id}
    )["StreamDescription"]["Shards"]
    assert children == []
    expect_error(lambda: streams.describe_stream(
        StreamArn=arn, ShardFilter={"Type": "PARENT_SHARDS", "ShardId": shard_id}),
        "ValidationException")
