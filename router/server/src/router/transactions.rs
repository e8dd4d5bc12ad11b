//! TransactWriteItems and TransactGetItems: the router is the transaction coordinator
//! (shoal-model `transaction` has the partition side and its invariants).
//!
//! A write transaction:
//! 1. Every action is parsed and checked here, as its single-item operation would be; request
//!    shape problems are top-level errors, problems of a key against its table's schema are
//!    cancellation reasons (both as DynamoDB answers, router/conformance/notes/transactions.md).
//! 2. Its **ledger record** is written PENDING: one item of the hidden ledger table
//!    ([`LEDGER_TABLE`], partitioned and replicated like any table), keyed by the
//!    ClientRequestToken (or a random id), holding the attempt's nonce and the request's
//!    digest. An existing record answers a retried token: the first outcome, a mismatch, or
//!    "in progress".
//! 3. **Prepare** at every partition concerned, concurrently: each checks its actions and locks
//!    the items through its log.
//! 4. The **decision**, the commit point: the ledger record goes from PENDING to COMMITTED (all
//!    prepared) or CANCELLED, conditionally on still being PENDING with this nonce.
//! 5. **Finish** at every partition: commit or cancel its locks.
//!
//! A coordinator that dies anywhere leaves locks behind; the recovery step of the repair pass
//! ([`Router::recover_transactions`]) asks every partition for locks older than
//! [`TRANSACTION_LOCK_STALE`] and finishes each as its ledger record says, first cancelling a
//! record still PENDING (so its coordinator, if alive after all, cannot commit it any more).
//! A lock whose record is gone (never written, or expired) is cancelled.
//!
//! TransactGetItems reads each partition's items at its leader (one instant per partition) and,
//! over several partitions, asks each whether any of them changed since; any lock or change
//! cancels it with TransactionConflict, which SDKs retry.

use shoal_model::request::TransactAction;
use shoal_model::transaction::{
    CLIENT_REQUEST_TOKEN_BYTES_MAX, CLIENT_REQUEST_TOKEN_BYTES_MIN, CLIENT_REQUEST_TOKEN_MEMORY_MS,
    CancellationCode, TRANSACT_ITEMS_MAX, TRANSACTION_BYTES_MAX, TransactionRef,
    cancellation_message,
};
use shoal_wire::messages::{CancellationReasonWire, IndexWriteUnits};

use super::*;

/// The ledger table: '#' is not a DynamoDB table name character, so no user table can take
/// the name and no client request can name it (every front end checks names first).
pub const LEDGER_TABLE: &str = "shoal#transactions";
/// The ledger's partition key (S).
const LEDGER_KEY: &str = "id";
/// The ledger's Time to Live attribute: records expire [`LEDGER_RETENTION_SECONDS`] after
/// they were written or decided.
const LEDGER_EXPIRES: &str = "expires";
/// How long a ledger record is kept. Longer than the token memory (10 minutes) and than any
/// lock can wait for the recovery loop while its partition is reachable: a lock outliving its
/// record is cancelled, which is wrong only for a committed transaction one of whose
/// partitions stayed unreachable for this long.
pub const LEDGER_RETENTION_SECONDS: u64 = 60 * 60;
/// A lock older than this is presumed abandoned by its coordinator and finished by the
/// recovery loop through the ledger. Far above a live transaction's duration (milliseconds).
pub const TRANSACTION_LOCK_STALE: Duration = Duration::from_secs(10);
/// How often the repair pass looks for stale locks everywhere (one call per partition of every
/// table). Between these full sweeps it looks only where requests met locks lately, at every
/// pass ([`REPAIR_INTERVAL`]).
pub const TRANSACTION_RECOVERY_INTERVAL: Duration = Duration::from_secs(60);
/// Partitions remembered as holding a lock someone met, at most (more wait for a full sweep).
const LOCK_SUSPECTS_MAX: usize = 10_000;
/// Attempts at finishing one partition's locks before the coordinator leaves them to the
/// recovery loop.
const FINISH_ATTEMPTS_MAX: usize = 3;
/// How often a transaction waiting for the ledger's creation looks again.
const LEDGER_CREATION_POLL: Duration = Duration::from_millis(50);
/// Finish rounds at most: each commits about 1 MiB (partition `FINISH_ENTRY_BYTES_MAX`), or
/// at least one item, at every partition, so 100 items need at most 100; the request's
/// deadline ends them first in practice.
const FINISH_ROUNDS_MAX: usize = 1_000;
/// Estimated item bytes in one prepare request: a partition's actions are split past it, so
/// each prepare's lock records fit one log entry (2 MiB) whatever the transaction's size.
const PREPARE_BYTES_MAX: u64 = 1024 * 1024;
/// Groupings of a transaction's actions at most: the first, and one more per split met among
/// its partitions since (a split takes seconds to finish, a transaction milliseconds).
const TRANSACTION_GROUPINGS_MAX: usize = 4;

/// DynamoDB's message for two actions on one item (verified, notes section 1).
pub const MULTIPLE_OPERATIONS_ON_ONE_ITEM: &str =
    "Transaction request cannot include multiple operations on one item";
/// A retried token whose first request is still running (aws/aws-sdk-java-v2#2518).
pub const TRANSACTION_IN_PROGRESS: &str = "Transaction from previous request is still in progress";
/// DynamoDB's text for this is not known (notes section 3); this one says what happened.
pub const IDEMPOTENT_PARAMETER_MISMATCH: &str =
    "The request uses the same client token as a previous, but non-identical request.";
/// DynamoDB's text for an aggregate over 4 MB is not known (notes section 1).
pub const TRANSACTION_TOO_LARGE: &str = "Transaction request cannot be larger than 4 MB";

const STATE_PENDING: &str = "PENDING";
const STATE_COMMITTED: &str = "COMMITTED";
const STATE_CANCELLED: &str = "CANCELLED";

/// The four action kinds of TransactWriteItems, as DynamoDB names their members.
const WRITE_ACTIONS: [&str; 4] = ["ConditionCheck", "Put", "Delete", "Update"];

/// One parsed action: its table, its partition, and its write.
struct Action {
    table: String,
    hash: u64,
    write: WriteRequest,
    check_only: bool,
}

/// One prepare request: actions of one table at one partition (request positions, in order).
struct PrepareGroup {
    table: String,
    /// A hash the partition owns (its first action's), to route by.
    hash: u64,
    partition: u64,
    members: Vec<usize>,
}

/// What one group's prepare came to.
struct Prepared {
    /// One per action of the group; `None` for those not prepared.
    reasons: Vec<CancellationReasonWire>,
    write_units_milli: u64,
    index_write_units_milli: Vec<IndexWriteUnits>,
    /// The first of the group's actions the partition refused as not its own (it was split
    /// after the grouping): these and the ones after them were not prepared there.
    elsewhere_from: Option<usize>,
}

/// A ledger record as read.
struct LedgerRecord {
    state: String,
    nonce: u64,
    digest: String,
    started_ms: u64,
    decided_ms: Option<u64>,
    /// Where the attempt's actions are, as (table, key hash): older records list one hash per
    /// partition, newer ones one per action, so both lead to every partition concerned.
    participants: Vec<(String, u64)>,
}

/// The table a TransactItems member names: its name, or the name in a table ARN.
fn table_named(name: &str) -> &str {
    match name.strip_prefix("arn:") {
        Some(rest) => rest.rsplit_once(":table/").map_or(name, |(_, table)| table),
        None => name,
    }
}

/// Whether a model error is about a key against its table's schema: DynamoDB makes these
/// cancellation reasons (ValidationError) inside a transaction, not top-level errors.
fn is_key_schema_error(error: &DynamoError) -> bool {
    error.type_name == crate::error::VALIDATION
        && (error.message.contains("Type mismatch for key")
            || error.message.contains("Type mismatch for Index Key")
            || error
                .message
                .contains(shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA))
}

/// The JSON text of `value` with every object's members in name order: two requests that
/// differ only in member order have one digest (DynamoDB compares them so, notes section 3).
fn canonical_text(value: &Json, output: &mut String) {
    match value {
        Json::Object(members) => {
            let mut names: Vec<&String> = members.keys().collect();
            names.sort_unstable();
            output.push('{');
            for (position, name) in names.into_iter().enumerate() {
                if position > 0 {
                    output.push(',');
                }
                output.push_str(&Json::String(name.clone()).to_string());
                output.push(':');
                canonical_text(&members[name], output);
            }
            output.push('}');
        }
        Json::Array(elements) => {
            output.push('[');
            for (position, element) in elements.iter().enumerate() {
                if position > 0 {
                    output.push(',');
                }
                canonical_text(element, output);
            }
            output.push(']');
        }
        other => output.push_str(&other.to_string()),
    }
}

fn request_digest(items: &Json) -> String {
    let mut text = String::new();
    canonical_text(items, &mut text);
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

fn random_u64() -> Result<u64, DynamoError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|error| DynamoError::internal(format!("Internal server error ({error})")))?;
    Ok(u64::from_le_bytes(bytes))
}

fn cancelled(reasons: &[CancellationReasonWire]) -> Result<DynamoError, DynamoError> {
    let mut rendered = Vec::with_capacity(reasons.len());
    let mut codes = Vec::with_capacity(reasons.len());
    for reason in reasons {
        let code = CancellationCode::from_code(reason.code).unwrap_or(CancellationCode::None);
        codes.push(code);
        let mut member = json!({ "Code": code.name() });
        if !reason.message.is_empty() {
            member["Message"] = json!(reason_message(code, &reason.message));
        }
        if let Some(item) = &reason.item {
            member["Item"] = item_json(item)?;
        }
        rendered.push(member);
    }
    let mut error = DynamoError::new("TransactionCanceledException", cancellation_message(codes));
    error.cancellation_reasons = Some(Json::Array(rendered));
    Ok(error)
}

/// A reason's message: the single-item operation's, except where the API reference lists
/// another for transactions (TransactionCanceledException's ValidationError messages): an
/// update operand of the wrong type found against the item is "An operand in the update
/// expression has an incorrect data type" there, whatever the operator.
fn reason_message(code: CancellationCode, message: &str) -> &str {
    if code == CancellationCode::ValidationError
        && message.starts_with("Invalid UpdateExpression: Incorrect operand type")
    {
        return shoal_model::messages::UPDATE_OPERAND_TYPE;
    }
    message
}

fn reason(code: CancellationCode, message: &str) -> CancellationReasonWire {
    CancellationReasonWire {
        code: code.code(),
        message: message.to_string(),
        item: None,
    }
}

fn none_reasons(count: usize) -> Vec<CancellationReasonWire> {
    vec![reason(CancellationCode::None, ""); count]
}

/// The items of a TransactItems list, checked for its length.
fn transact_items(body: &Json) -> Result<&Vec<Json>, DynamoError> {
    let items = match body.get("TransactItems") {
        None | Some(Json::Null) => return Err(DynamoError::missing_member("transactItems")),
        Some(Json::Array(items)) => items,
        Some(_) => return Err(DynamoError::serialization("TransactItems must be a list")),
    };
    if items.is_empty() {
        return Err(DynamoError::validation(
            "1 validation error detected: Value '[]' at 'transactItems' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    if items.len() > TRANSACT_ITEMS_MAX {
        return Err(DynamoError::validation(format!(
            "1 validation error detected: Value '{}' at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to {TRANSACT_ITEMS_MAX}",
            Json::Array(items.clone())
        )));
    }
    Ok(items)
}

fn client_request_token(body: &Json) -> Result<Option<&str>, DynamoError> {
    let token = match body.get("ClientRequestToken") {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::String(token)) => token.as_str(),
        Some(_) => {
            return Err(DynamoError::serialization(
                "ClientRequestToken must be a string",
            ));
        }
    };
    if token.len() < CLIENT_REQUEST_TOKEN_BYTES_MIN {
        return Err(DynamoError::validation(format!(
            "1 validation error detected: Value '{token}' at 'clientRequestToken' failed to satisfy constraint: Member must have length greater than or equal to {CLIENT_REQUEST_TOKEN_BYTES_MIN}"
        )));
    }
    if token.len() > CLIENT_REQUEST_TOKEN_BYTES_MAX {
        return Err(DynamoError::validation(format!(
            "1 validation error detected: Value '{token}' at 'clientRequestToken' failed to satisfy constraint: Member must have length less than or equal to {CLIENT_REQUEST_TOKEN_BYTES_MAX}"
        )));
    }
    Ok(Some(token))
}

/// What a transaction consumed in one table: its units (thousandths) and, for INDEXES, each
/// index's part as (global, number, units).
type TableUnits = (String, u64, Vec<(bool, u8, u64)>);

impl Router {
    /// The ledger table, created the first time a transaction needs it; a transaction that
    /// finds it being created (by itself or by a concurrent one) waits until it is ACTIVE.
    async fn ensure_ledger(&self, deadline: Instant) -> Result<(), DynamoError> {
        if self.tables.borrow().contains_key(LEDGER_TABLE) {
            return Ok(());
        }
        let mut created = false;
        loop {
            match self.read_table(LEDGER_TABLE, deadline).await? {
                Some(record) if record.status == TableStatus::Active => {
                    return self.refresh_table(LEDGER_TABLE, deadline).await;
                }
                Some(_) => {}
                None if !created => {
                    created = true;
                    self.create_ledger().await?;
                    continue;
                }
                // Created and gone again: its creation was abandoned (nodes down).
                None => {
                    return Err(DynamoError::internal(
                        "Internal server error (the transaction ledger could not be created; retry when the nodes are back)",
                    ));
                }
            }
            if Instant::now() + LEDGER_CREATION_POLL >= deadline {
                return Err(DynamoError::internal(
                    "Internal server error (the transaction ledger is still being created; retry)",
                ));
            }
            glommio::timer::sleep(LEDGER_CREATION_POLL).await;
        }
    }

    /// CreateTable of the ledger: an on-demand table like a user's, created through the same
    /// state machine (so a router dying midway leaves it to the repair pass), with its name
    /// put in after the checks, which it would fail. Another router's creation is fine.
    async fn create_ledger(&self) -> Result<(), DynamoError> {
        let body = json!({
            "TableName": "ledger",
            "AttributeDefinitions": [{"AttributeName": LEDGER_KEY, "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": LEDGER_KEY, "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        });
        let mut request = validate::create_table(&body)?;
        request.name = LEDGER_TABLE.to_string();
        match self
            .create_validated_table(request, Some(LEDGER_EXPIRES.to_string()))
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.type_name == RESOURCE_IN_USE => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// One ledger request: a single-item operation on the ledger table.
    async fn ledger_call(
        &self,
        operation: ItemOperation,
        parameters: Json,
        deadline: Instant,
    ) -> Result<Reply, DynamoError> {
        let key_schema = KeySchema::partition_only(LEDGER_KEY, shoal_model::key::KeyType::String);
        let key = match operation {
            ItemOperation::PutItem => &parameters["Item"],
            _ => &parameters["Key"],
        };
        let hash = key_hash(&key_schema, key, operation == ItemOperation::PutItem)?;
        let prepared = shoal_model::request::prepare(operation, &parameters, &key_schema)
            .map_err(DynamoError::from)?;
        // The ledger is the cluster's bookkeeping: never throttled.
        self.route_unadmitted(LEDGER_TABLE, hash, &ItemCall::new(&prepared), deadline)
            .await
    }

    async fn ledger_read(
        &self,
        ledger_key: &str,
        deadline: Instant,
    ) -> Result<Option<LedgerRecord>, DynamoError> {
        let reply = self
            .ledger_call(
                ItemOperation::GetItem,
                json!({ "Key": { LEDGER_KEY: { "S": ledger_key } }, "ConsistentRead": true }),
                deadline,
            )
            .await?;
        let body = render_result(&reply.result, false)?;
        let Some(item) = body.get("Item") else {
            return Ok(None);
        };
        let text = |name: &str| item[name]["S"].as_str().map(str::to_string);
        let number = |name: &str| item[name]["N"].as_str().and_then(|text| text.parse().ok());
        let corrupt = || {
            DynamoError::internal(format!(
                "Internal server error (the ledger record {ledger_key} is malformed)"
            ))
        };
        Ok(Some(LedgerRecord {
            state: text("state").ok_or_else(corrupt)?,
            nonce: number("nonce").ok_or_else(corrupt)?,
            digest: text("digest").ok_or_else(corrupt)?,
            started_ms: number("started").ok_or_else(corrupt)?,
            decided_ms: number("decided"),
            participants: item["participants"]["L"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|member| {
                    let member = &member["M"];
                    Some((
                        member["t"]["S"].as_str()?.to_string(),
                        member["h"]["N"].as_str()?.parse().ok()?,
                    ))
                })
                .collect(),
        }))
    }

    /// Writes a PENDING record for attempt `nonce`: new, or replacing the record of attempt
    /// `replacing`. `Ok(false)` when the record is not as expected (another attempt won).
    #[allow(clippy::too_many_arguments)]
    async fn ledger_begin(
        &self,
        ledger_key: &str,
        nonce: u64,
        digest: &str,
        participants: &[(String, u64)],
        replacing: Option<(u64, String)>,
        deadline: Instant,
    ) -> Result<bool, DynamoError> {
        let now_ms = unix_millis_now();
        // Where the transaction's actions are, as (table, key hash), so that recovery finishes
        // all of its partitions once it finds one lock.
        let listed: Vec<Json> = participants
            .iter()
            .map(|(table, hash)| json!({ "M": { "t": { "S": table }, "h": { "N": hash.to_string() } } }))
            .collect();
        let mut parameters = json!({
            "Item": {
                LEDGER_KEY: { "S": ledger_key },
                "state": { "S": STATE_PENDING },
                "nonce": { "N": nonce.to_string() },
                "digest": { "S": digest },
                "started": { "N": now_ms.to_string() },
                "participants": { "L": listed },
                LEDGER_EXPIRES: { "N": (now_ms / 1000 + LEDGER_RETENTION_SECONDS).to_string() },
            },
        });
        match replacing {
            None => {
                parameters["ConditionExpression"] = json!("attribute_not_exists(#id)");
                parameters["ExpressionAttributeNames"] = json!({ "#id": LEDGER_KEY });
            }
            // Only the record as it was read: an attempt decided since (a slow coordinator's
            // COMMITTED) is never replaced by a new one.
            Some((previous, state)) => {
                parameters["ConditionExpression"] = json!("#nonce = :nonce AND #state = :state");
                parameters["ExpressionAttributeNames"] =
                    json!({ "#nonce": "nonce", "#state": "state" });
                parameters["ExpressionAttributeValues"] = json!({
                    ":nonce": { "N": previous.to_string() },
                    ":state": { "S": state },
                });
            }
        }
        conditional(
            self.ledger_call(ItemOperation::PutItem, parameters, deadline)
                .await,
        )
    }

    /// The commit point: PENDING -> `state` for attempt `nonce`. `Ok(false)` when the record
    /// is no longer this attempt's PENDING one (the recovery loop cancelled it).
    async fn ledger_decide(
        &self,
        transaction: &TransactionRef,
        state: &str,
        deadline: Instant,
    ) -> Result<bool, DynamoError> {
        let now_ms = unix_millis_now();
        let parameters = json!({
            "Key": { LEDGER_KEY: { "S": transaction.ledger_key } },
            "UpdateExpression": "SET #state = :state, #decided = :now, #expires = :expires",
            "ConditionExpression": "#state = :pending AND #nonce = :nonce",
            "ExpressionAttributeNames": {
                "#state": "state",
                "#decided": "decided",
                "#expires": LEDGER_EXPIRES,
                "#nonce": "nonce",
            },
            "ExpressionAttributeValues": {
                ":state": { "S": state },
                ":pending": { "S": STATE_PENDING },
                ":nonce": { "N": transaction.nonce.to_string() },
                ":now": { "N": now_ms.to_string() },
                ":expires": { "N": (now_ms / 1000 + LEDGER_RETENTION_SECONDS).to_string() },
            },
        });
        conditional(
            self.ledger_call(ItemOperation::UpdateItem, parameters, deadline)
                .await,
        )
    }

    /// TransactWriteItems (the module's steps 1 to 5).
    pub async fn transact_write_items(&self, body: Json) -> Result<Json, DynamoError> {
        let report = capacity_report(&body)?;
        let metrics = items::item_collection_metrics(&body)?;
        let items = transact_items(&body)?;
        let token = client_request_token(&body)?;
        let deadline = self.deadline();
        let mut actions: Vec<Action> = Vec::with_capacity(items.len());
        let mut early_reasons = none_reasons(items.len());
        let mut early_cancel = false;
        let mut total_bytes = 0usize;
        for (position, item) in items.iter().enumerate() {
            let members = item.as_object().ok_or_else(|| {
                DynamoError::serialization("TransactItems members must be objects")
            })?;
            let named: Vec<&str> = WRITE_ACTIONS
                .into_iter()
                .filter(|name| members.get(*name).is_some_and(|value| !value.is_null()))
                .collect();
            let [kind] = named[..] else {
                return Err(DynamoError::validation(format!(
                    "1 validation error detected: Value at 'transactItems.{}.member' failed to satisfy constraint: exactly one of ConditionCheck, Put, Delete or Update must be set",
                    position + 1
                )));
            };
            let action = &members[kind];
            let member_path = format!(
                "transactItems.{}.member.{}",
                position + 1,
                match kind {
                    "ConditionCheck" => "conditionCheck",
                    "Put" => "put",
                    "Delete" => "delete",
                    _ => "update",
                }
            );
            let name = match action.get("TableName") {
                None | Some(Json::Null) => {
                    return Err(DynamoError::missing_member(&format!(
                        "{member_path}.tableName"
                    )));
                }
                Some(Json::String(name)) => table_named(name).to_string(),
                Some(_) => return Err(DynamoError::serialization("TableName must be a string")),
            };
            validate::check_table_name(&name)?;
            if kind == "ConditionCheck"
                && action.get("ConditionExpression").is_none_or(Json::is_null)
            {
                return Err(DynamoError::missing_member(&format!(
                    "{member_path}.conditionExpression"
                )));
            }
            let (key_schema, indexes, _) = self.table_with_indexes(&name, deadline).await?;
            let operation = match kind {
                "Put" => ItemOperation::PutItem,
                "Update" => ItemOperation::UpdateItem,
                _ => ItemOperation::DeleteItem,
            };
            let is_item = kind == "Put";
            let key_member = if is_item { "Item" } else { "Key" };
            let key = action
                .get(key_member)
                .filter(|key| !key.is_null())
                .ok_or_else(|| {
                    DynamoError::missing_member(&format!(
                        "{member_path}.{}",
                        key_member.to_ascii_lowercase()
                    ))
                })?;
            let prepared = key_hash(&key_schema, key, is_item).and_then(|_| {
                prepare_for_table(operation, action, &key_schema, indexes.as_table_indexes())
                    .map_err(DynamoError::from)
            });
            let write = match prepared {
                Ok(PreparedRequest::Write(write)) => write,
                Ok(_) => {
                    return Err(DynamoError::internal(
                        "Internal server error (a transaction action prepared as something else)",
                    ));
                }
                Err(error) if is_key_schema_error(&error) => {
                    early_reasons[position] =
                        reason(CancellationCode::ValidationError, &error.message);
                    early_cancel = true;
                    continue;
                }
                Err(error) => return Err(error),
            };
            total_bytes += write_estimate_bytes(&write) as usize;
            let hash = storage_key_hash(&write.storage_key).ok_or_else(|| {
                DynamoError::validation(shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA)
            })?;
            if actions.iter().any(|earlier| {
                earlier.table == name && earlier.write.storage_key == write.storage_key
            }) {
                return Err(DynamoError::validation(MULTIPLE_OPERATIONS_ON_ONE_ITEM));
            }
            actions.push(Action {
                table: name,
                hash,
                write,
                check_only: kind == "ConditionCheck",
            });
        }
        if total_bytes > TRANSACTION_BYTES_MAX {
            return Err(DynamoError::validation(TRANSACTION_TOO_LARGE));
        }
        if early_cancel {
            return Err(cancelled(&early_reasons)?);
        }
        // Step 2: the ledger record, listing a key hash of every action. Not one per partition:
        // a partition split after the record is written leaves the transaction's locks in
        // children the record must still lead to (recovery and a replayed token's commit
        // finish every partition the hashes fall in, each once).
        let mut participants: Vec<(String, u64)> = Vec::new();
        for action in &actions {
            if !participants
                .iter()
                .any(|(table, hash)| *table == action.table && *hash == action.hash)
            {
                participants.push((action.table.clone(), action.hash));
            }
        }
        self.ensure_ledger(deadline).await?;
        let digest = request_digest(&body["TransactItems"]);
        let ledger_key = match token {
            Some(token) => format!("t#{token}"),
            None => format!("x#{:016x}{:016x}", random_u64()?, random_u64()?),
        };
        let transaction = TransactionRef {
            ledger_key,
            nonce: random_u64()?,
        };
        let mut replacing = None;
        // Another pass only after an abandoned attempt was recovered, or replacing a cancelled
        // or forgotten one was raced.
        for _attempt in 0..3 {
            if self
                .ledger_begin(
                    &transaction.ledger_key,
                    transaction.nonce,
                    &digest,
                    &participants,
                    replacing,
                    deadline,
                )
                .await?
            {
                self.step_done(ControlStep::TransactionLedgerWritten).await;
                return self
                    .run_transaction(&actions, &transaction, report, metrics, deadline)
                    .await;
            }
            let Some(record) = self.ledger_read(&transaction.ledger_key, deadline).await? else {
                replacing = None;
                continue;
            };
            let remembered = record
                .decided_ms
                .is_none_or(|decided| unix_millis_now() < decided + CLIENT_REQUEST_TOKEN_MEMORY_MS);
            if remembered && record.digest != digest {
                return Err(DynamoError::new(
                    "IdempotentParameterMismatchException",
                    IDEMPOTENT_PARAMETER_MISMATCH,
                ));
            }
            if record.state == STATE_PENDING {
                let stale_ms =
                    u64::try_from(self.config.transaction_lock_stale.as_millis()).unwrap_or(0);
                if unix_millis_now() < record.started_ms.saturating_add(stale_ms) {
                    return Err(DynamoError::new(
                        "TransactionInProgressException",
                        TRANSACTION_IN_PROGRESS,
                    ));
                }
                // Inline recovery (DynamoDB's API reference: a retry well after the first
                // attempt "can trigger inline recovery"): the abandoned attempt is cancelled,
                // its locks, at this same request's partitions (the same request: the digests
                // match), released, and the request runs again as a new attempt.
                let abandoned = TransactionRef {
                    ledger_key: transaction.ledger_key.clone(),
                    nonce: record.nonce,
                };
                if self
                    .ledger_decide(&abandoned, STATE_CANCELLED, deadline)
                    .await?
                {
                    self.finish_groups(participants.clone(), &abandoned, false, deadline)
                        .await;
                    replacing = Some((record.nonce, STATE_CANCELLED.to_string()));
                } else {
                    // Decided meanwhile by its own coordinator: read it again.
                    replacing = None;
                }
                continue;
            }
            if remembered && record.state == STATE_COMMITTED {
                // The first request's outcome, without applying it again; a replay reports a
                // transactional read of each item (DynamoDB's documented behaviour). Its
                // commits are made sure of first (its coordinator may have died after the
                // decision): a success must be visible to the reads that follow it.
                let committed = TransactionRef {
                    ledger_key: transaction.ledger_key.clone(),
                    nonce: record.nonce,
                };
                self.finish_groups(record.participants.clone(), &committed, true, deadline)
                    .await;
                let mut response = json!({});
                if report != CapacityReport::None {
                    let units: Vec<TableUnits> = actions
                        .iter()
                        .map(|action| (action.table.clone(), 2000, Vec::new()))
                        .collect();
                    response["ConsumedCapacity"] =
                        self.consumed_by_table(&units, report, deadline).await?;
                }
                return Ok(response);
            }
            // Cancelled, or forgotten: the request runs again as a new attempt, once the old
            // attempt's locks are finished as it was decided (its record is about to go).
            let old = TransactionRef {
                ledger_key: transaction.ledger_key.clone(),
                nonce: record.nonce,
            };
            self.finish_groups(
                record.participants.clone(),
                &old,
                record.state == STATE_COMMITTED,
                deadline,
            )
            .await;
            replacing = Some((record.nonce, record.state));
        }
        Err(DynamoError::new(
            "TransactionInProgressException",
            TRANSACTION_IN_PROGRESS,
        ))
    }

    /// Groups the actions at `positions` into prepares by the partitions of the current map:
    /// one prepare per partition (its actions, in request order), or several where its items
    /// are large, so that each prepare is one log entry of locks holding the items.
    async fn prepare_groups(
        &self,
        actions: &[Action],
        positions: &[usize],
        deadline: Instant,
    ) -> Result<Vec<PrepareGroup>, DynamoError> {
        let mut groups: Vec<PrepareGroup> = Vec::new();
        let mut group_bytes: Vec<u64> = Vec::new();
        for position in positions {
            let action = &actions[*position];
            let map = self.route_map(&action.table, None, deadline).await?;
            let partition = map.lookup(action.hash).id;
            let bytes = write_estimate_bytes(&action.write);
            match groups.iter().zip(&group_bytes).rposition(|(group, total)| {
                group.table == action.table
                    && group.partition == partition
                    && total + bytes <= PREPARE_BYTES_MAX
            }) {
                Some(group) => {
                    groups[group].members.push(*position);
                    group_bytes[group] += bytes;
                }
                None => {
                    groups.push(PrepareGroup {
                        table: action.table.clone(),
                        hash: action.hash,
                        partition,
                        members: vec![*position],
                    });
                    group_bytes.push(bytes);
                }
            }
        }
        Ok(groups)
    }

    /// Steps 3 to 5 for a transaction whose PENDING record is written.
    async fn run_transaction(
        &self,
        actions: &[Action],
        transaction: &TransactionRef,
        report: CapacityReport,
        metrics: bool,
        deadline: Instant,
    ) -> Result<Json, DynamoError> {
        let mut reasons = none_reasons(actions.len());
        // Every prepare sent, whatever its outcome: each of their partitions is finished.
        let mut sent: Vec<PrepareGroup> = Vec::new();
        let mut failure: Option<DynamoError> = None;
        let mut throttled = false;
        let mut units: Vec<TableUnits> = Vec::new();
        // Actions still to prepare. A partition split after the actions were grouped refuses
        // the keys it no longer owns, having locked nothing: they are grouped again with the
        // map as it is now, a round at most per split met (splits wait for locks to go, so a
        // partition holding this transaction's locks is never split under it).
        let mut pending: Vec<usize> = (0..actions.len()).collect();
        for _round in 0..TRANSACTION_GROUPINGS_MAX {
            if pending.is_empty() {
                break;
            }
            let groups = match self.prepare_groups(actions, &pending, deadline).await {
                Ok(groups) => groups,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            pending.clear();
            let calls: Vec<(Vec<TransactAction>, CapacityUnits)> = groups
                .iter()
                .map(|group| {
                    let group_actions = group
                        .members
                        .iter()
                        .map(|position| TransactAction {
                            write: actions[*position].write.clone(),
                            check_only: actions[*position].check_only,
                        })
                        .collect();
                    // Admission refuses only an exhausted bucket and charges the estimate,
                    // then settles what the partition reports. A transaction's units (twice
                    // its items') may exceed what is left, as DynamoDB allows (10 items of
                    // 350 KB in one transaction): so the estimate is the least its actions
                    // cost.
                    let least = write_units(1).as_milli() * group.members.len() as u64;
                    (group_actions, CapacityUnits::from_milli(least))
                })
                .collect();
            // Admission for every prepare before any is sent (one settled first would leave
            // the next an emptied bucket). A refused one cancels the transaction before
            // anything more is sent, and nothing is charged.
            let mut admissions = Vec::with_capacity(groups.len());
            for (group, (group_actions, estimate)) in groups.iter().zip(&calls) {
                // A group that writes needs every GSI of its table to have write capacity; one
                // of ConditionChecks alone changes no index entry.
                let admitted = if group_actions.iter().all(|action| action.check_only) {
                    Ok(())
                } else {
                    self.check_index_writes(&group.table)
                };
                match admitted.and_then(|()| {
                    self.admit(
                        &group.table,
                        None,
                        Operation::Write,
                        group.partition,
                        *estimate,
                    )
                }) {
                    Ok(admission) => admissions.push(admission),
                    Err(error) => {
                        throttled = true;
                        let code = CancellationCode::of_exception(&error.type_name);
                        for position in &group.members {
                            reasons[*position] = reason(code, &error.message);
                        }
                        admissions.push(None);
                    }
                }
            }
            if throttled {
                for (group, admission) in groups.iter().zip(admissions) {
                    self.settle(&group.table, None, admission, 0);
                }
                break;
            }
            let results = join_bounded(
                groups
                    .iter()
                    .zip(&calls)
                    .map(|(group, (group_actions, _))| {
                        self.prepare_at(
                            &group.table,
                            group.hash,
                            transaction,
                            group_actions,
                            deadline,
                        )
                    })
                    .collect(),
                BATCH_PARTITIONS_IN_FLIGHT_MAX,
            )
            .await;
            for ((group, result), admission) in groups.iter().zip(results).zip(admissions) {
                match result {
                    Ok(prepared) => {
                        // Admission charges the table's part; GSI writes are the indexes'.
                        let global_milli: u64 = prepared
                            .index_write_units_milli
                            .iter()
                            .filter(|units| units.global)
                            .map(|units| units.milli)
                            .sum();
                        self.settle(
                            &group.table,
                            None,
                            admission,
                            prepared.write_units_milli.saturating_sub(global_milli),
                        );
                        self.charge_index_units(
                            &group.table,
                            prepared
                                .index_write_units_milli
                                .iter()
                                .filter(|units| units.global)
                                .map(|units| (units.number, units.milli))
                                .collect(),
                        );
                        units.push((
                            group.table.clone(),
                            prepared.write_units_milli,
                            prepared
                                .index_write_units_milli
                                .iter()
                                .map(|units| (units.global, units.number, units.milli))
                                .collect(),
                        ));
                        for (position, answer) in group.members.iter().zip(prepared.reasons) {
                            reasons[*position] = answer;
                        }
                        if let Some(first) = prepared.elsewhere_from {
                            pending.extend_from_slice(&group.members[first..]);
                        }
                    }
                    Err(error) => {
                        self.settle(&group.table, None, admission, 0);
                        failure = Some(error);
                    }
                }
            }
            for group in &groups {
                if group.members.iter().any(|position| {
                    reasons[*position].code == CancellationCode::TransactionConflict.code()
                }) {
                    self.suspect_lock(&group.table, group.hash);
                }
            }
            sent.extend(groups);
            let refused = reasons
                .iter()
                .any(|reason| reason.code != CancellationCode::None.code());
            if failure.is_some() || refused {
                break;
            }
        }
        if failure.is_none() && !throttled && !pending.is_empty() {
            failure = Some(DynamoError::internal(
                "Internal server error (the table's partitions kept splitting under the \
                 transaction; nothing was applied, send it again)",
            ));
        }
        let all_prepared = failure.is_none()
            && !throttled
            && reasons
                .iter()
                .all(|reason| reason.code == CancellationCode::None.code());
        if all_prepared {
            self.step_done(ControlStep::TransactionPrepared).await;
        }
        // Step 4: the commit point.
        let wanted = if all_prepared {
            STATE_COMMITTED
        } else {
            STATE_CANCELLED
        };
        let decided = self.ledger_decide(transaction, wanted, deadline).await;
        let committed = match decided {
            Ok(true) => all_prepared,
            // The recovery loop cancelled it first (this coordinator was too slow).
            Ok(false) => {
                if all_prepared {
                    for reason_of in &mut reasons {
                        *reason_of = reason(
                            CancellationCode::TransactionConflict,
                            shoal_model::transaction::TRANSACTION_CONFLICT_REASON,
                        );
                    }
                }
                false
            }
            Err(error) => {
                // Unknown whether the decision was recorded: the recovery loop finishes the
                // locks as the ledger says; the client learns the outcome is unknown.
                return Err(error);
            }
        };
        self.step_done(ControlStep::TransactionDecided).await;
        // Step 5, at every partition a prepare reached: each group's hash, reduced to one per
        // partition by the map as it is now (`finish_groups`). Not by the partition each group
        // was grouped for: two groups of one partition split since (a partition's actions
        // past PREPARE_BYTES_MAX make several) may have locked in different children.
        let partitions: Vec<(String, u64)> = sent
            .iter()
            .map(|group| (group.table.clone(), group.hash))
            .collect();
        let collections = self
            .finish_groups(partitions, transaction, committed, deadline)
            .await;
        if let Some(error) = failure {
            return Err(error);
        }
        if !committed {
            return Err(cancelled(&reasons)?);
        }
        let mut response = json!({});
        if report != CapacityReport::None {
            response["ConsumedCapacity"] = self.consumed_by_table(&units, report, deadline).await?;
        }
        if metrics && !collections.is_empty() {
            // DynamoDB's shape: by table, one entry per item collection written.
            let mut by_table = serde_json::Map::new();
            for (table, size) in collections {
                let entry = json!({
                    "ItemCollectionKey": item_json(&size.key)?,
                    "SizeEstimateRangeGB": shoal_model::index::size_estimate_range_gb(size.bytes),
                });
                if let Json::Array(entries) = by_table
                    .entry(table)
                    .or_insert_with(|| Json::Array(Vec::new()))
                {
                    entries.push(entry);
                }
            }
            response["ItemCollectionMetrics"] = Json::Object(by_table);
        }
        Ok(response)
    }

    /// Prepares `actions` at the partition of `hash`: in one request, or in several when their
    /// lock records need more than one log entry (the partition says how many it locked).
    /// Returns each action's reason and the units the partition reported; a partition that
    /// no longer owns some of the keys (split since they were grouped) leaves the rest
    /// unprepared ([`Prepared::elsewhere_from`]).
    async fn prepare_at(
        &self,
        table: &str,
        hash: u64,
        transaction: &TransactionRef,
        actions: &[TransactAction],
        deadline: Instant,
    ) -> Result<Prepared, DynamoError> {
        let mut prepared = Prepared {
            reasons: none_reasons(actions.len()),
            write_units_milli: 0,
            index_write_units_milli: Vec::new(),
            elsewhere_from: None,
        };
        let mut start = 0;
        // Each round locks at least one action, so the loop ends within the action count.
        while start < actions.len() {
            let call = ItemCall::new(&PreparedRequest::TransactPrepare {
                transaction: transaction.clone(),
                actions: actions[start..].to_vec(),
            });
            let reply = match self
                .route_forward(table, None, hash, &call, None, deadline)
                .await
            {
                Ok(reply) => reply,
                Err(ForwardError::KeysElsewhere { .. }) => {
                    prepared.elsewhere_from = Some(start);
                    break;
                }
                Err(error) => return Err(error.into_dynamo()),
            };
            let ItemResult::TransactPrepared {
                reasons: answered,
                index_write_units_milli,
                locked,
            } = reply.result
            else {
                return Err(DynamoError::internal(
                    "Internal server error (a partition answered a transaction prepare with another result)",
                ));
            };
            let locked = usize::try_from(locked).unwrap_or(usize::MAX);
            if answered.len() != actions.len() - start || locked == 0 {
                return Err(DynamoError::internal(
                    "Internal server error (a partition answered a transaction prepare for other actions)",
                ));
            }
            prepared.write_units_milli += reply.write_units_milli;
            prepared
                .index_write_units_milli
                .extend(index_write_units_milli);
            let refused = answered
                .iter()
                .any(|reason| reason.code != CancellationCode::None.code());
            for (slot, answer) in prepared.reasons[start..].iter_mut().zip(answered) {
                *slot = answer;
            }
            if refused {
                break;
            }
            start += locked.min(actions.len() - start);
        }
        Ok(prepared)
    }

    /// ConsumedCapacity of a transaction: one entry per table, in first-mention order, with
    /// the table's and each index's part for INDEXES.
    async fn consumed_by_table(
        &self,
        units: &[TableUnits],
        report: CapacityReport,
        deadline: Instant,
    ) -> Result<Json, DynamoError> {
        let mut by_table: Vec<TableUnits> = Vec::new();
        for (table, milli, indexes) in units {
            match by_table.iter_mut().find(|(name, _, _)| name == table) {
                Some((_, total, parts)) => {
                    *total += milli;
                    parts.extend(indexes.iter().copied());
                }
                None => by_table.push((table.clone(), *milli, indexes.clone())),
            }
        }
        let mut entries = Vec::with_capacity(by_table.len());
        for (table, milli, parts) in by_table {
            let mut entry = consumed_capacity_json(&table, milli, report);
            if report == CapacityReport::Indexes && !parts.is_empty() {
                let (_, indexes, _) = self.table_with_indexes(&table, deadline).await?;
                items::split_index_units(&mut entry, milli, &indexes, parts.into_iter());
            }
            entries.push(entry);
        }
        Ok(Json::Array(entries))
    }

    /// Commits or cancels the transaction's locks at each `(table, hash)` partition,
    /// concurrently, retrying a few times; what still fails is left to the recovery loop.
    /// Returns the item collections the commits wrote to (tables with local indexes), by
    /// table, with their sizes after the commit.
    async fn finish_groups(
        &self,
        partitions: Vec<(String, u64)>,
        transaction: &TransactionRef,
        commit: bool,
        deadline: Instant,
    ) -> Vec<(String, shoal_wire::messages::CollectionSize)> {
        let partitions = self.distinct_partitions(partitions, deadline).await;
        let mut collections = Vec::new();
        let mut calls = Vec::with_capacity(partitions.len());
        let mut remaining: Vec<usize> = Vec::with_capacity(partitions.len());
        for (position, (table, _)) in partitions.iter().enumerate() {
            let indexes = match self.table_with_indexes(table, deadline).await {
                Ok((_, indexes, _)) => indexes,
                // A commit needs the table's indexes (it maintains them); without them it is
                // left to recovery. A cancel changes no item and needs none.
                Err(error) if commit => {
                    tracing::warn!(%table, %error.message, "transaction commit left to recovery");
                    calls.push(None);
                    continue;
                }
                Err(_) => IndexDefinitions::default(),
            };
            calls.push(Some(ItemCall::new(&PreparedRequest::TransactFinish {
                transaction: transaction.clone(),
                commit,
                local_indexes: indexes.local.clone(),
                global_indexes: indexes.global.clone(),
            })));
            remaining.push(position);
        }
        let mut failures = vec![0usize; partitions.len()];
        let mut last_error = None;
        // Each round commits up to a log entry's worth at each partition still holding locks
        // (a 4 MB transaction needs a handful); a partition failing FINISH_ATTEMPTS_MAX times
        // is left to the recovery loop.
        // Each round makes progress at every partition that answers (at least one item), so
        // the rounds end; the deadline bounds them too.
        for _round in 0..FINISH_ROUNDS_MAX {
            if remaining.is_empty() || Instant::now() >= deadline {
                break;
            }
            let results = join_bounded(
                remaining
                    .iter()
                    .filter_map(|position| {
                        let (table, hash) = &partitions[*position];
                        let call = calls[*position].as_ref()?;
                        Some(self.route_unadmitted(table, *hash, call, deadline))
                    })
                    .collect(),
                BATCH_PARTITIONS_IN_FLIGHT_MAX,
            )
            .await;
            let mut unfinished = Vec::new();
            for (position, result) in remaining.into_iter().zip(results) {
                match result {
                    Ok(Reply {
                        result:
                            ItemResult::TransactFinished {
                                more,
                                collections: written,
                            },
                        ..
                    }) => {
                        let table = &partitions[position].0;
                        collections.extend(written.into_iter().map(|size| (table.clone(), size)));
                        if more {
                            unfinished.push(position);
                        }
                    }
                    Ok(_) => {
                        last_error =
                            Some("a partition answered a finish with another result".to_string());
                        failures[position] = FINISH_ATTEMPTS_MAX;
                    }
                    Err(error) => {
                        tracing::debug!(table = %partitions[position].0, %error.message,
                            "transaction finish failed");
                        last_error = Some(error.message);
                        failures[position] += 1;
                        if failures[position] < FINISH_ATTEMPTS_MAX {
                            unfinished.push(position);
                        }
                    }
                }
            }
            remaining = unfinished;
        }
        remaining.extend((0..partitions.len()).filter(|position| {
            failures[*position] >= FINISH_ATTEMPTS_MAX || calls[*position].is_none()
        }));
        for position in remaining {
            let (table, _) = &partitions[position];
            tracing::warn!(%table, ledger = %transaction.ledger_key, commit, error = ?last_error,
                "transaction finish failed; the recovery loop will finish it");
        }
        for (table, hash) in &partitions {
            // A commit's GSI changes wait in the partition's outbox.
            if commit {
                self.request_propagation(table, *hash);
            }
        }
        collections
    }

    /// `hashes` (table, key hash) less those routed to a partition an earlier one is routed
    /// to now: one per partition to call. A table whose map cannot be read keeps all of its
    /// entries (the calls fail as they would have).
    async fn distinct_partitions(
        &self,
        hashes: Vec<(String, u64)>,
        deadline: Instant,
    ) -> Vec<(String, u64)> {
        let mut seen: Vec<(String, u64)> = Vec::new();
        let mut distinct = Vec::with_capacity(hashes.len());
        for (table, hash) in hashes {
            if let Ok(map) = self.route_map(&table, None, deadline).await {
                let partition = map.lookup(hash).id;
                if seen
                    .iter()
                    .any(|(name, id)| *name == table && *id == partition)
                {
                    continue;
                }
                seen.push((table.clone(), partition));
            }
            distinct.push((table, hash));
        }
        distinct
    }

    /// TransactGetItems: see the module's comment.
    pub async fn transact_get_items(&self, body: Json) -> Result<Json, DynamoError> {
        let report = capacity_report(&body)?;
        let items = transact_items(&body)?;
        let deadline = self.deadline();
        let mut gets: Vec<(String, u64, GetRequest)> = Vec::with_capacity(items.len());
        let mut early_reasons = none_reasons(items.len());
        let mut early_cancel = false;
        for (position, item) in items.iter().enumerate() {
            let Some(action) = item.get("Get").filter(|get| !get.is_null()) else {
                return Err(DynamoError::missing_member(&format!(
                    "transactItems.{}.member.get",
                    position + 1
                )));
            };
            let name = match action.get("TableName") {
                None | Some(Json::Null) => {
                    return Err(DynamoError::missing_member(&format!(
                        "transactItems.{}.member.get.tableName",
                        position + 1
                    )));
                }
                Some(Json::String(name)) => table_named(name).to_string(),
                Some(_) => return Err(DynamoError::serialization("TableName must be a string")),
            };
            validate::check_table_name(&name)?;
            let (key_schema, indexes, _) = self.table_with_indexes(&name, deadline).await?;
            let key = action
                .get("Key")
                .filter(|key| !key.is_null())
                .ok_or_else(|| {
                    DynamoError::missing_member(&format!(
                        "transactItems.{}.member.get.key",
                        position + 1
                    ))
                })?;
            let mut parameters = action.clone();
            parameters["ConsistentRead"] = json!(true);
            let prepared = key_hash(&key_schema, key, false).and_then(|_| {
                prepare_for_table(
                    ItemOperation::GetItem,
                    &parameters,
                    &key_schema,
                    indexes.as_table_indexes(),
                )
                .map_err(DynamoError::from)
            });
            let get = match prepared {
                Ok(PreparedRequest::Get(get)) => get,
                Ok(_) => {
                    return Err(DynamoError::internal(
                        "Internal server error (a transaction get prepared as something else)",
                    ));
                }
                Err(error)
                    if is_key_schema_error(&error)
                        || key.as_object().is_some_and(|key| key.is_empty()) =>
                {
                    early_reasons[position] =
                        reason(CancellationCode::ValidationError, &error.message);
                    early_cancel = true;
                    continue;
                }
                Err(error) => return Err(error),
            };
            if gets
                .iter()
                .any(|(table, _, earlier)| *table == name && earlier.storage_key == get.storage_key)
            {
                return Err(DynamoError::validation(MULTIPLE_OPERATIONS_ON_ONE_ITEM));
            }
            let hash = storage_key_hash(&get.storage_key).ok_or_else(|| {
                DynamoError::validation(shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA)
            })?;
            gets.push((name, hash, get));
        }
        if early_cancel {
            return Err(cancelled(&early_reasons)?);
        }
        let mut found: Vec<Option<Vec<u8>>> = vec![None; gets.len()];
        let mut units: Vec<TableUnits> = Vec::new();
        let mut reasons = none_reasons(gets.len());
        let mut conflict = false;
        // A partition split after the gets were grouped refuses the keys it no longer owns:
        // the reads start again, grouped with the map as it is now.
        for grouping in 1..=TRANSACTION_GROUPINGS_MAX {
            let last_grouping = grouping == TRANSACTION_GROUPINGS_MAX;
            // One read per partition.
            let mut groups: Vec<(String, u64, u64, Vec<usize>)> = Vec::new();
            for (position, (table, hash, _)) in gets.iter().enumerate() {
                let partition = self
                    .route_map(table, None, deadline)
                    .await?
                    .lookup(*hash)
                    .id;
                match groups
                    .iter_mut()
                    .find(|(name, _, id, _)| name == table && *id == partition)
                {
                    Some((_, _, _, members)) => members.push(position),
                    None => groups.push((table.clone(), *hash, partition, vec![position])),
                }
            }
            let reads: Vec<ItemCall> = groups
                .iter()
                .map(|(_, _, _, members)| {
                    ItemCall::new(&PreparedRequest::TransactRead {
                        gets: members
                            .iter()
                            .map(|position| gets[*position].2.clone())
                            .collect(),
                    })
                })
                .collect();
            let results = join_bounded(
                groups
                    .iter()
                    .zip(&reads)
                    .map(|((table, hash, _, members), call)| {
                        let estimate = CapacityUnits::from_milli(
                            read_units(1, ReadConsistency::Strong).as_milli()
                                * 2
                                * members.len() as u64,
                        );
                        self.route_forward(
                            table,
                            None,
                            *hash,
                            call,
                            Some((Operation::Read, estimate)),
                            deadline,
                        )
                    })
                    .collect(),
                BATCH_PARTITIONS_IN_FLIGHT_MAX,
            )
            .await;
            let mut regroup = false;
            let mut since = Vec::with_capacity(groups.len());
            for ((table, hash, _, members), result) in groups.iter().zip(results) {
                let reply = match result {
                    Ok(reply) => reply,
                    Err(ForwardError::KeysElsewhere { .. }) if !last_grouping => {
                        regroup = true;
                        since.push(0);
                        continue;
                    }
                    Err(error) => return Err(error.into_dynamo()),
                };
                let ItemResult::TransactRead {
                    items,
                    locked,
                    applied_slot,
                } = reply.result
                else {
                    return Err(DynamoError::internal(
                        "Internal server error (a partition answered a transaction read with another result)",
                    ));
                };
                // Charged when served, whether this grouping's reads are kept or not.
                units.push((table.clone(), reply.read_units_milli, Vec::new()));
                if locked {
                    self.suspect_lock(table, *hash);
                    conflict = true;
                    for position in members {
                        reasons[*position] = reason(
                            CancellationCode::TransactionConflict,
                            shoal_model::transaction::TRANSACTION_CONFLICT_REASON,
                        );
                    }
                }
                for (position, item) in members.iter().zip(items) {
                    found[*position] = item;
                }
                since.push(applied_slot);
            }
            if conflict {
                break;
            }
            if regroup {
                continue;
            }
            if groups.len() > 1 {
                // The second round: nothing read changed since (the module's comment).
                let confirms: Vec<ItemCall> = groups
                    .iter()
                    .zip(&since)
                    .map(|((_, _, _, members), since)| {
                        ItemCall::new(&PreparedRequest::TransactConfirm {
                            storage_keys: members
                                .iter()
                                .map(|position| gets[*position].2.storage_key.clone())
                                .collect(),
                            since: *since,
                        })
                    })
                    .collect();
                let results = join_bounded(
                    groups
                        .iter()
                        .zip(&confirms)
                        .map(|((table, hash, _, _), call)| {
                            self.route_forward(table, None, *hash, call, None, deadline)
                        })
                        .collect(),
                    BATCH_PARTITIONS_IN_FLIGHT_MAX,
                )
                .await;
                for ((_, _, _, members), result) in groups.iter().zip(results) {
                    let unchanged = match result {
                        Ok(reply) => matches!(
                            reply.result,
                            ItemResult::TransactConfirmed { unchanged: true }
                        ),
                        // Split between the read and the confirmation: the slots read at the
                        // parent mean nothing to its child, so the reads start again.
                        Err(ForwardError::KeysElsewhere { .. }) if !last_grouping => {
                            regroup = true;
                            true
                        }
                        Err(error) => return Err(error.into_dynamo()),
                    };
                    if !unchanged {
                        conflict = true;
                        for position in members {
                            reasons[*position] = reason(
                                CancellationCode::TransactionConflict,
                                shoal_model::transaction::TRANSACTION_CONFLICT_REASON,
                            );
                        }
                    }
                }
            }
            if conflict || !regroup {
                break;
            }
        }
        if conflict {
            return Err(cancelled(&reasons)?);
        }
        let mut responses = Vec::with_capacity(found.len());
        for item in found {
            responses.push(match item {
                Some(item) => json!({ "Item": item_json(&item)? }),
                None => json!({}),
            });
        }
        let mut response = json!({ "Responses": responses });
        if report != CapacityReport::None {
            response["ConsumedCapacity"] = self.consumed_by_table(&units, report, deadline).await?;
        }
        Ok(response)
    }

    /// Notes that a request met a lock in the partition of `hash` in `table`: the repair pass
    /// looks there at its next runs (`recover_transactions(false)`), so an abandoned lock on
    /// an item clients want is recovered within seconds of becoming stale, not at the next
    /// full sweep.
    pub(super) fn suspect_lock(&self, table: &str, hash: u64) {
        let mut suspects = self.repair.lock_suspects.borrow_mut();
        if suspects.len() < LOCK_SUSPECTS_MAX {
            suspects
                .entry((table.to_string(), hash))
                .or_insert_with(Instant::now);
        }
    }

    /// The repair pass's transaction step: every lock older than the staleness threshold
    /// ([`TRANSACTION_LOCK_STALE`]) is finished as its ledger record says (the module's
    /// comment). `full`: at every partition of every table (the repair pass does it every
    /// [`TRANSACTION_RECOVERY_INTERVAL`]); otherwise only where requests met locks lately
    /// (every pass). Returns how many transactions it finished at some partition.
    pub async fn recover_transactions(&self, full: bool) -> Result<usize, DynamoError> {
        let deadline = Instant::now() + CONTROL_DEADLINE;
        let stale = self.config.transaction_lock_stale;
        let stale_before =
            unix_millis_now().saturating_sub(u64::try_from(stale.as_millis()).unwrap_or(u64::MAX));
        let partitions: Vec<(String, u64)> = if full {
            let tables = self
                .metadata
                .all_tables(&self.forwarder, deadline)
                .await
                .map_err(ForwardError::into_dynamo)?;
            tables
                .iter()
                .filter(|record| {
                    record.status == TableStatus::Active && record.name != LEDGER_TABLE
                })
                .flat_map(|record| {
                    record
                        .routed_partitions()
                        .into_iter()
                        .map(|partition| (record.name.clone(), partition.range.first))
                })
                .collect()
        } else {
            let mut suspects = self.repair.lock_suspects.borrow_mut();
            let listed = suspects.keys().cloned().collect();
            // A suspect is looked at until a listing after its lock can have become stale.
            suspects.retain(|_, marked| marked.elapsed() <= stale + REPAIR_INTERVAL);
            listed
        };
        let mut finished = 0;
        for (table, hash) in partitions {
            let call = ItemCall::new(&PreparedRequest::TransactLocks {
                prepared_before_ms: stale_before,
            });
            let reply = match self.route_unadmitted(&table, hash, &call, deadline).await {
                Ok(reply) => reply,
                Err(error) => {
                    tracing::debug!(%table, %error.message, "lock listing failed");
                    continue;
                }
            };
            let ItemResult::TransactLocks { locks } = reply.result else {
                continue;
            };
            for lock in locks {
                let transaction = TransactionRef {
                    ledger_key: lock.ledger_key,
                    nonce: lock.nonce,
                };
                let (commit, mut participants) = match self.resolve(&transaction, deadline).await {
                    Ok(resolved) => resolved,
                    Err(error) => {
                        // Tried again at the next pass; the other locks need not wait.
                        tracing::warn!(%table, ledger = %transaction.ledger_key, %error.message,
                            "an abandoned transaction could not be resolved");
                        continue;
                    }
                };
                tracing::info!(%table, ledger = %transaction.ledger_key, commit,
                    "recovering an abandoned transaction");
                // Every partition of the transaction at once (a finish where it holds nothing
                // is answered at once), this one even if its record is gone.
                if !participants
                    .iter()
                    .any(|(other, other_hash)| *other == table && *other_hash == hash)
                {
                    participants.push((table.clone(), hash));
                }
                self.finish_groups(participants, &transaction, commit, deadline)
                    .await;
                finished += 1;
            }
        }
        Ok(finished)
    }

    /// Whether an abandoned transaction committed (its ledger record decides, after a PENDING
    /// record of this attempt is cancelled), and the partitions its record lists.
    async fn resolve(
        &self,
        transaction: &TransactionRef,
        deadline: Instant,
    ) -> Result<(bool, Vec<(String, u64)>), DynamoError> {
        self.ensure_ledger(deadline).await?;
        // Two reads at most: a PENDING record is cancelled, then read again.
        for _ in 0..2 {
            let Some(record) = self.ledger_read(&transaction.ledger_key, deadline).await? else {
                return Ok((false, Vec::new()));
            };
            if record.nonce != transaction.nonce {
                return Ok((false, Vec::new()));
            }
            match record.state.as_str() {
                STATE_COMMITTED => return Ok((true, record.participants)),
                STATE_PENDING => {
                    if self
                        .ledger_decide(transaction, STATE_CANCELLED, deadline)
                        .await?
                    {
                        return Ok((false, record.participants));
                    }
                }
                _ => return Ok((false, record.participants)),
            }
        }
        Ok((false, Vec::new()))
    }
}

/// A conditional write's outcome: `Ok(false)` when its condition failed.
fn conditional(outcome: Result<Reply, DynamoError>) -> Result<bool, DynamoError> {
    match outcome {
        Ok(_) => Ok(true),
        Err(error) if error.type_name == "ConditionalCheckFailedException" => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_ignores_member_order_only() {
        let first = json!([{"Update": {"TableName": "t", "Key": {"pk": {"S": "a"}}}}]);
        let reordered = json!([{"Update": {"Key": {"pk": {"S": "a"}}, "TableName": "t"}}]);
        let other = json!([{"Update": {"TableName": "t", "Key": {"pk": {"S": "b"}}}}]);
        assert_eq!(request_digest(&first), request_digest(&reordered));
        assert_ne!(request_digest(&first), request_digest(&other));
    }

    #[test]
    fn a_table_arn_names_its_table() {
        assert_eq!(
            table_named("arn:aws:dynamodb:us-east-1:123456789012:table/orders"),
            "orders"
        );
        assert_eq!(table_named("orders"), "orders");
    }

    #[test]
    fn cancellation_reasons_have_dynamodb_shape() {
        let error = cancelled(&[
            reason(CancellationCode::None, ""),
            reason(
                CancellationCode::ConditionalCheckFailed,
                "The conditional request failed",
            ),
        ])
        .unwrap();
        assert_eq!(error.type_name, "TransactionCanceledException");
        assert_eq!(
            error.message,
            "Transaction cancelled, please refer cancellation reasons for specific reasons [None, ConditionalCheckFailed]"
        );
        assert_eq!(
            error.cancellation_reasons,
            Some(json!([
                {"Code": "None"},
                {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
            ]))
        );
    }
}
