// Shared helpers of the JavaScript SDK cases: a client of the cluster run.sh started
// (SHOAL_ENDPOINT), unique table names, tables made and removed, and error checks.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import {
  CreateTableCommand,
  DeleteTableCommand,
  DynamoDBClient,
  UpdateTableCommand,
} from "@aws-sdk/client-dynamodb";

export const REGION = "us-east-1";

const endpoint = process.env.SHOAL_ENDPOINT;
if (!endpoint) {
  throw new Error("SHOAL_ENDPOINT must name the shoal dev HTTP endpoint (run.sh sets it)");
}

// Few attempts: a conformance failure must not hide behind retries, but a leader election
// in progress may answer one retryable error.
export const ddb = new DynamoDBClient({
  endpoint,
  region: REGION,
  credentials: { accessKeyId: "AKIDJSCONFORMANCE", secretAccessKey: "js-conformance" },
  maxAttempts: 3,
});

export function uniqueName(prefix = "js") {
  return `${prefix}-${randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

const created = [];

/** Creates an on-demand table keyed by pk (S) and, if given, a sort key; returns its name. */
export async function makeTable({ sort = null, extra = {} } = {}) {
  const name = uniqueName();
  const keySchema = [{ AttributeName: "pk", KeyType: "HASH" }];
  const definitions = [{ AttributeName: "pk", AttributeType: "S" }];
  if (sort) {
    keySchema.push({ AttributeName: sort[0], KeyType: "RANGE" });
    definitions.push({ AttributeName: sort[0], AttributeType: sort[1] });
  }
  await ddb.send(
    new CreateTableCommand({
      TableName: name,
      BillingMode: "PAY_PER_REQUEST",
      KeySchema: keySchema,
      AttributeDefinitions: definitions,
      ...extra,
    }),
  );
  created.push(name);
  return name;
}

/** Deletes every table makeTable made (deletion protection turned off first). */
export async function dropTables() {
  for (const name of created.splice(0)) {
    try {
      await ddb.send(new UpdateTableCommand({ TableName: name, DeletionProtectionEnabled: false }));
    } catch {
      // Already off (or gone): the delete below says which.
    }
    try {
      await ddb.send(new DeleteTableCommand({ TableName: name }));
    } catch (error) {
      if (error.name !== "ResourceNotFoundException") throw error;
    }
  }
}

/** Awaits `promise`, which must fail with DynamoDB error `name` (and `message` exactly, if
 * given, or a message containing `contains`); returns the error. */
export async function expectError(promise, name, { message, contains } = {}) {
  let caught = null;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught, `expected ${name}, the call succeeded`);
  assert.equal(caught.name, name, caught.message);
  assert.equal(caught.$metadata?.httpStatusCode, name === "InternalServerError" ? 500 : 400);
  if (message !== undefined) assert.equal(caught.message, message);
  if (contains !== undefined) assert.ok(caught.message.includes(contains), caught.message);
  return caught;
}
