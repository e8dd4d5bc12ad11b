// TransactWriteItems and TransactGetItems through the AWS SDK for JavaScript v3. Each case
// cites its source, as test_transactions.py does: API (DynamoDB API reference), GUIDE (developer
// guide, "Amazon DynamoDB Transactions: How it works"), LOCALSTACK (its snapshot recorded
// against AWS), NUBO (nubo-db/dynamodb-conformance, run against DynamoDB).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  GetItemCommand,
  PutItemCommand,
  TransactGetItemsCommand,
  TransactWriteItemsCommand,
  TransactionCanceledException,
} from "@aws-sdk/client-dynamodb";
import { ddb, dropTables, expectError, makeTable } from "./common.mjs";

after(dropTables);

let table;
let sorted;
before(async () => {
  table = await makeTable();
  sorted = await makeTable({ sort: ["sk", "N"] });
});

const key = (pk) => ({ pk: { S: pk } });

describe("transactions", () => {
  it("a write across two tables, then one read of it, in request order (API, NUBO)", async () => {
    await ddb.send(new PutItemCommand({ TableName: table, Item: { ...key("old"), n: { N: "1" } } }));
    // The SDK fills ClientRequestToken with a fresh UUID (the idempotencyToken trait).
    const written = await ddb.send(
      new TransactWriteItemsCommand({
        ReturnConsumedCapacity: "TOTAL",
        TransactItems: [
          { Put: { TableName: table, Item: { ...key("new"), b: { B: new Uint8Array([0, 255]) } } } },
          {
            Update: {
              TableName: table,
              Key: key("old"),
              UpdateExpression: "ADD n :one",
              ExpressionAttributeValues: { ":one": { N: "1" } },
            },
          },
          { Put: { TableName: sorted, Item: { ...key("s"), sk: { N: "1" }, v: { S: "x" } } } },
        ],
      }),
    );
    // GUIDE capacity: two write units per item of at most 1 KB; one entry per table.
    const units = Object.fromEntries(written.ConsumedCapacity.map((c) => [c.TableName, c.CapacityUnits]));
    assert.deepEqual(units, { [table]: 4, [sorted]: 2 });

    const read = await ddb.send(
      new TransactGetItemsCommand({
        TransactItems: [
          { Get: { TableName: sorted, Key: { ...key("s"), sk: { N: "1" } }, ProjectionExpression: "v" } },
          { Get: { TableName: table, Key: key("absent") } },
          { Get: { TableName: table, Key: key("old") } },
          { Get: { TableName: table, Key: key("new") } },
        ],
      }),
    );
    assert.equal(read.Responses.length, 4);
    assert.deepEqual(read.Responses[0].Item, { v: { S: "x" } });
    // A missing item's entry has no Item (API ItemResponse; NUBO transactGet).
    assert.equal(read.Responses[1].Item, undefined);
    assert.equal(read.Responses[2].Item.n.N, "2");
    assert.deepEqual([...read.Responses[3].Item.b.B], [0, 255]);
  });

  it("a failed condition cancels everything, with reasons in action order (LOCALSTACK, NUBO)", async () => {
    const old = { ...key("held"), owner: { S: "a" } };
    await ddb.send(new PutItemCommand({ TableName: table, Item: old }));
    const error = await expectError(
      ddb.send(
        new TransactWriteItemsCommand({
          TransactItems: [
            {
              ConditionCheck: {
                TableName: table,
                Key: key("held"),
                ConditionExpression: "attribute_not_exists(#o)",
                ExpressionAttributeNames: { "#o": "owner" },
                ReturnValuesOnConditionCheckFailure: "ALL_OLD",
              },
            },
            { Put: { TableName: table, Item: key("never") } },
          ],
        }),
      ),
      "TransactionCanceledException",
      {
        message:
          "Transaction cancelled, please refer cancellation reasons for specific reasons [ConditionalCheckFailed, None]",
      },
    );
    assert.ok(error instanceof TransactionCanceledException);
    // API CancellationReason: "None" is the literal code, with no Message; ALL_OLD puts the
    // item as it was in the failed action's reason.
    assert.deepEqual(error.CancellationReasons, [
      { Code: "ConditionalCheckFailed", Message: "The conditional request failed", Item: old },
      { Code: "None" },
    ]);
    const { Item: never } = await ddb.send(
      new GetItemCommand({ TableName: table, Key: key("never"), ConsistentRead: true }),
    );
    assert.equal(never, undefined);
  });
});
