// Control-plane cases through the AWS SDK for JavaScript v3. Each cites its source: API
// (DynamoDB API reference), QUIRKS-nnn (the ack-api-quirks catalogue of probes of DynamoDB,
// as the Python suite cites it), or the Python case it mirrors.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import {
  CreateTableCommand,
  DeleteTableCommand,
  DescribeLimitsCommand,
  DescribeTableCommand,
  ListTablesCommand,
  ListTagsOfResourceCommand,
  TagResourceCommand,
  UpdateTableCommand,
} from "@aws-sdk/client-dynamodb";
import { REGION, ddb, dropTables, expectError, makeTable, uniqueName } from "./common.mjs";

after(dropTables);

describe("tables", () => {
  it("CreateTable answers a description and DescribeTable reads it back (API)", async () => {
    const name = await makeTable({ sort: ["sk", "N"] });
    const { Table: table } = await ddb.send(new DescribeTableCommand({ TableName: name }));
    assert.equal(table.TableName, name);
    assert.equal(table.TableStatus, "ACTIVE");
    assert.deepEqual(table.KeySchema, [
      { AttributeName: "pk", KeyType: "HASH" },
      { AttributeName: "sk", KeyType: "RANGE" },
    ]);
    assert.equal(table.BillingModeSummary.BillingMode, "PAY_PER_REQUEST");
    // The SDK turns DynamoDB's epoch seconds into a Date.
    assert.ok(table.CreationDateTime instanceof Date);
    assert.ok(Math.abs(Date.now() - table.CreationDateTime.getTime()) < 3_600_000);
    assert.equal(table.TableArn, `arn:aws:dynamodb:${REGION}:000000000000:table/${name}`);
    assert.equal(table.DeletionProtectionEnabled, false);
  });

  it("a second CreateTable of one name is ResourceInUseException (API)", async () => {
    const name = await makeTable();
    await expectError(
      ddb.send(
        new CreateTableCommand({
          TableName: name,
          BillingMode: "PAY_PER_REQUEST",
          KeySchema: [{ AttributeName: "pk", KeyType: "HASH" }],
          AttributeDefinitions: [{ AttributeName: "pk", AttributeType: "S" }],
        }),
      ),
      "ResourceInUseException",
      { message: `Table already exists: ${name}` },
    );
  });

  it("DescribeTable of a missing table is ResourceNotFoundException (API)", async () => {
    const name = uniqueName("missing");
    await expectError(
      ddb.send(new DescribeTableCommand({ TableName: name })),
      "ResourceNotFoundException",
      { message: `Requested resource not found: Table: ${name} not found` },
    );
  });

  it("ListTables pages by Limit and ExclusiveStartTableName (API)", async () => {
    const names = [await makeTable(), await makeTable()].sort();
    const first = await ddb.send(
      new ListTablesCommand({ ExclusiveStartTableName: names[0].slice(0, -1), Limit: 1 }),
    );
    assert.equal(first.TableNames.length, 1);
    assert.ok(first.LastEvaluatedTableName);
    const all = await ddb.send(new ListTablesCommand({}));
    for (const name of names) assert.ok(all.TableNames.includes(name));
  });

  it("a table name with a bad character is refused by DynamoDB's pattern (API)", async () => {
    await expectError(
      ddb.send(new DescribeTableCommand({ TableName: "no spaces allowed" })),
      "ValidationException",
      { contains: "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+" },
    );
  });

  it("deletion protection refuses DeleteTable until turned off (QUIRKS-017, 442)", async () => {
    const name = await makeTable({ extra: { DeletionProtectionEnabled: true } });
    await expectError(ddb.send(new DeleteTableCommand({ TableName: name })), "ValidationException", {
      message:
        "Resource cannot be deleted as it is currently protected against deletion. Disable deletion protection first.",
    });
    const updated = await ddb.send(
      new UpdateTableCommand({ TableName: name, DeletionProtectionEnabled: false }),
    );
    assert.equal(updated.TableDescription.DeletionProtectionEnabled, false);
    const deleted = await ddb.send(new DeleteTableCommand({ TableName: name }));
    assert.equal(deleted.TableDescription.TableName, name);
  });

  it("SSESpecification with KMS is described as SSEDescription (API, QUIRKS-027)", async () => {
    const name = await makeTable({ extra: { SSESpecification: { Enabled: true } } });
    const { Table: table } = await ddb.send(new DescribeTableCommand({ TableName: name }));
    assert.deepEqual(table.SSEDescription, {
      Status: "ENABLED",
      SSEType: "KMS",
      KMSMasterKeyArn: `arn:aws:kms:${REGION}:000000000000:alias/aws/dynamodb`,
    });
  });

  it("TableClass is stored and changed by UpdateTable (API TableClassSummary)", async () => {
    const name = await makeTable({ extra: { TableClass: "STANDARD_INFREQUENT_ACCESS" } });
    let { Table: table } = await ddb.send(new DescribeTableCommand({ TableName: name }));
    assert.equal(table.TableClassSummary.TableClass, "STANDARD_INFREQUENT_ACCESS");
    await ddb.send(new UpdateTableCommand({ TableName: name, TableClass: "STANDARD" }));
    ({ Table: table } = await ddb.send(new DescribeTableCommand({ TableName: name })));
    assert.equal(table.TableClassSummary.TableClass, "STANDARD");
    assert.ok(table.TableClassSummary.LastUpdateDateTime instanceof Date);
  });

  it("enabling a stream twice is refused with the table named (test_streams.py)", async () => {
    const name = await makeTable({
      extra: { StreamSpecification: { StreamEnabled: true, StreamViewType: "NEW_IMAGE" } },
    });
    const { Table: created } = await ddb.send(new DescribeTableCommand({ TableName: name }));
    assert.deepEqual(created.StreamSpecification, {
      StreamEnabled: true,
      StreamViewType: "NEW_IMAGE",
    });
    assert.ok(created.LatestStreamArn.startsWith(created.TableArn + "/stream/"));
    // Probes of DynamoDB (ack-api-quirks DDB-TABLE-050) and Alternator's test_streams.py.
    await expectError(
      ddb.send(
        new UpdateTableCommand({
          TableName: name,
          StreamSpecification: { StreamEnabled: true, StreamViewType: "KEYS_ONLY" },
        }),
      ),
      "ValidationException",
      { contains: `Table already has an enabled stream: TableName: ${name}` },
    );
  });

  it("UpdateTable switches billing and reports the throughput (API)", async () => {
    const name = await makeTable();
    const { TableDescription: described } = await ddb.send(
      new UpdateTableCommand({
        TableName: name,
        BillingMode: "PROVISIONED",
        ProvisionedThroughput: { ReadCapacityUnits: 7, WriteCapacityUnits: 3 },
      }),
    );
    assert.equal(described.ProvisionedThroughput.ReadCapacityUnits, 7);
    assert.equal(described.ProvisionedThroughput.WriteCapacityUnits, 3);
    await expectError(
      ddb.send(
        new UpdateTableCommand({
          TableName: name,
          ProvisionedThroughput: { ReadCapacityUnits: 7, WriteCapacityUnits: 3 },
        }),
      ),
      "ValidationException",
      { contains: "The provisioned throughput for the table will not change" },
    );
  });

  it("tags given to TagResource are listed (API)", async () => {
    const name = await makeTable();
    const arn = `arn:aws:dynamodb:${REGION}:000000000000:table/${name}`;
    await ddb.send(
      new TagResourceCommand({ ResourceArn: arn, Tags: [{ Key: "team", Value: "shoal" }] }),
    );
    const { Tags: tags } = await ddb.send(new ListTagsOfResourceCommand({ ResourceArn: arn }));
    assert.deepEqual(tags, [{ Key: "team", Value: "shoal" }]);
  });

  it("OnDemandThroughput is set, merged and removed (test_on_demand_throughput.py, QUIRKS DDB-TABLE-051/182)", async () => {
    const name = await makeTable({ extra: { OnDemandThroughput: { MaxReadRequestUnits: 100 } } });
    const describe = async () =>
      (await ddb.send(new DescribeTableCommand({ TableName: name }))).Table.OnDemandThroughput;
    assert.deepEqual(await describe(), { MaxReadRequestUnits: 100 });
    await ddb.send(
      new UpdateTableCommand({ TableName: name, OnDemandThroughput: { MaxWriteRequestUnits: 50 } }),
    );
    assert.deepEqual(await describe(), { MaxReadRequestUnits: 100, MaxWriteRequestUnits: 50 });
    await ddb.send(
      new UpdateTableCommand({
        TableName: name,
        OnDemandThroughput: { MaxReadRequestUnits: -1, MaxWriteRequestUnits: -1 },
      }),
    );
    assert.equal(await describe(), undefined);
    await expectError(
      ddb.send(
        new UpdateTableCommand({ TableName: name, OnDemandThroughput: { MaxReadRequestUnits: 0 } }),
      ),
      "ValidationException",
      {
        message:
          "One or more parameter values were invalid: Requested MaxReadRequestUnits for OnDemandThroughput for table is outside of valid range",
      },
    );
  });

  it("DescribeLimits reports DynamoDB's default quotas (API)", async () => {
    const limits = await ddb.send(new DescribeLimitsCommand({}));
    assert.equal(limits.TableMaxReadCapacityUnits, 40000);
    assert.equal(limits.AccountMaxWriteCapacityUnits, 80000);
  });
});
