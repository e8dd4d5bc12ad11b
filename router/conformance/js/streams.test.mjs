// DynamoDB Streams through the AWS SDK for JavaScript v3 (@aws-sdk/client-dynamodb-streams):
// what the SDK sends and parses for ListStreams, DescribeStream, GetShardIterator and
// GetRecords. Mirrors test_streams.py's test_writes_produce_records_of_the_view_type for
// NEW_AND_OLD_IMAGES; sources: API (the DynamoDB Streams API reference: Record, StreamRecord,
// the images of each StreamViewType) and dynalite's test/getRecords.js.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import {
  DeleteItemCommand,
  DescribeTableCommand,
  PutItemCommand,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListStreamsCommand,
} from "@aws-sdk/client-dynamodb-streams";
import { REGION, ddb, dropTables, makeTable } from "./common.mjs";

after(dropTables);

// The same cluster, credentials and attempts as common.mjs's DynamoDB client: Shoal serves the
// Streams targets (DynamoDBStreams_20120810.*) on its DynamoDB endpoint.
const streams = new DynamoDBStreamsClient({
  endpoint: process.env.SHOAL_ENDPOINT,
  region: REGION,
  credentials: { accessKeyId: "AKIDJSCONFORMANCE", secretAccessKey: "js-conformance" },
  maxAttempts: 3,
});

// Records may appear a moment after the write: reads poll up to this long.
const WAIT_MS = 15_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitActive(name) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const { Table } = await ddb.send(new DescribeTableCommand({ TableName: name }));
    if (Table.TableStatus === "ACTIVE") return Table;
    assert.ok(Date.now() < deadline, `table ${name} not ACTIVE in time`);
    await sleep(200);
  }
}

/** Every record of the stream, each shard read from TRIM_HORIZON until a page is empty. */
async function readStream(streamArn) {
  const shards = [];
  let exclusiveStartShardId;
  do {
    const { StreamDescription } = await streams.send(
      new DescribeStreamCommand({ StreamArn: streamArn, ExclusiveStartShardId: exclusiveStartShardId }),
    );
    shards.push(...StreamDescription.Shards);
    exclusiveStartShardId = StreamDescription.LastEvaluatedShardId;
  } while (exclusiveStartShardId);
  const records = [];
  for (const shard of shards) {
    let { ShardIterator: iterator } = await streams.send(
      new GetShardIteratorCommand({
        StreamArn: streamArn,
        ShardId: shard.ShardId,
        ShardIteratorType: "TRIM_HORIZON",
      }),
    );
    for (let page = 0; iterator && page < 1000; page++) {
      const answer = await streams.send(new GetRecordsCommand({ ShardIterator: iterator }));
      records.push(...answer.Records);
      if (answer.Records.length === 0) break;
      iterator = answer.NextShardIterator;
    }
  }
  return records;
}

describe("streams", () => {
  it("put, update and delete are INSERT, MODIFY and REMOVE with both images (API Record)", async () => {
    const name = await makeTable({
      extra: { StreamSpecification: { StreamEnabled: true, StreamViewType: "NEW_AND_OLD_IMAGES" } },
    });
    const table = await waitActive(name);
    assert.deepEqual(table.StreamSpecification, {
      StreamEnabled: true,
      StreamViewType: "NEW_AND_OLD_IMAGES",
    });

    // ListStreams by table name finds the table's LatestStreamArn.
    const { Streams } = await streams.send(new ListStreamsCommand({ TableName: name }));
    assert.deepEqual(Streams, [
      { StreamArn: table.LatestStreamArn, TableName: name, StreamLabel: table.LatestStreamLabel },
    ]);
    const streamArn = Streams[0].StreamArn;
    const { StreamDescription } = await streams.send(new DescribeStreamCommand({ StreamArn: streamArn }));
    assert.equal(StreamDescription.StreamViewType, "NEW_AND_OLD_IMAGES");
    assert.equal(StreamDescription.TableName, name);
    assert.ok(StreamDescription.Shards.length >= 1);

    const key = { pk: { S: "js-stream" } };
    const first = { ...key, n: { N: "1" }, s: { S: "one" } };
    const second = { ...first, n: { N: "2" } };
    await ddb.send(new PutItemCommand({ TableName: name, Item: first }));
    await ddb.send(
      new UpdateItemCommand({
        TableName: name,
        Key: key,
        UpdateExpression: "SET n = :two",
        ExpressionAttributeValues: { ":two": { N: "2" } },
      }),
    );
    await ddb.send(new DeleteItemCommand({ TableName: name, Key: key }));

    const deadline = Date.now() + WAIT_MS;
    let records;
    for (;;) {
      records = (await readStream(streamArn)).filter(
        (record) => record.dynamodb.Keys.pk?.S === "js-stream",
      );
      if (records.length >= 3 || Date.now() > deadline) break;
      await sleep(300);
    }
    assert.equal(records.length, 3, JSON.stringify(records));
    assert.deepEqual(
      records.map((record) => record.eventName),
      ["INSERT", "MODIFY", "REMOVE"],
    );
    const [insert, modify, remove] = records.map((record) => record.dynamodb);
    assert.deepEqual(insert.NewImage, first);
    assert.equal(insert.OldImage, undefined);
    assert.deepEqual(modify.OldImage, first);
    assert.deepEqual(modify.NewImage, second);
    assert.deepEqual(remove.OldImage, second);
    assert.equal(remove.NewImage, undefined);
    let previous = 0n;
    for (const record of records) {
      assert.equal(record.eventSource, "aws:dynamodb");
      assert.equal(record.awsRegion, REGION);
      assert.deepEqual(record.dynamodb.Keys, key);
      assert.equal(record.dynamodb.StreamViewType, "NEW_AND_OLD_IMAGES");
      assert.ok(record.dynamodb.SizeBytes > 0);
      // The SDK parses the epoch seconds into a Date.
      assert.ok(record.dynamodb.ApproximateCreationDateTime instanceof Date);
      assert.ok(Math.abs(record.dynamodb.ApproximateCreationDateTime.getTime() - Date.now()) < 120_000);
      const sequence = BigInt(record.dynamodb.SequenceNumber);
      assert.ok(sequence > previous, "sequence numbers increase within the item's shard");
      previous = sequence;
    }
  });
});
