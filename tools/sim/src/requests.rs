//! The DynamoDB requests the simulated clients send to the real partition replicas, and the
//! reading of their answers. Requests are written as DynamoDB JSON and prepared as the router
//! prepares them, then pass through the typed request encoding and back, so every simulated
//! request also exercises the codec the bus uses.
//!
//! A simulated key `k` is the item whose partition key `pk` is the string `k<k>`; its register
//! value is the number attribute `v`. Every write in a run writes a value no other write writes,
//! so a value names the operation that wrote it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value as Json, json};
use shoal_model::Item;
use shoal_model::encoding::decode_item;
use shoal_model::index::global::GlobalIndex;
use shoal_model::index::{LocalIndex, Projection};
use shoal_model::json::item_to_json;
use shoal_model::key::{KeyAttribute, KeySchema, KeyType};
use shoal_model::request::{
    GetRequest, ItemOperation, PreparedRequest, TableIndexes, TransactAction, WriteRequest,
    prepare_for_table,
};
use shoal_model::request_codec::{decode_request, encode_request};
use shoal_wire::messages::ItemResult;

/// What a client asks a group to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Put {
        key: u64,
        value: u64,
    },
    /// Writes `new` only if the key currently holds `expected` (None: the key was never written).
    CompareAndSet {
        key: u64,
        expected: Option<u64>,
        new: u64,
    },
}

/// The exception a PutItem whose condition is false answers: the write was not applied.
pub const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

/// The simulated table's key: one string attribute, `pk`.
pub fn key_schema() -> KeySchema {
    KeySchema::partition_only("pk", KeyType::String)
}

/// The simulated table's local secondary index: its entries sort the items by `v`, so every
/// write moves an entry, and the checker compares the index with the items at every applied
/// slot. (CreateTable would ask the table for a sort key first; the partition does not need
/// one, and the simulated table keeps its one-attribute key.)
pub fn local_indexes() -> Vec<LocalIndex> {
    vec![LocalIndex {
        name: "by_value".to_string(),
        number: 0,
        sort_key: KeyAttribute {
            name: "v".to_string(),
            key_type: KeyType::Number,
        },
        projection: Projection::KeysOnly,
    }]
}

/// The simulated table's global secondary index when a run has one (`--global-index`).
pub const GLOBAL_INDEX_NAME: &str = "by_group";
/// The GSI's partition key: a string attribute with a few values derived from the written
/// value, absent for some values (a sparse index), so writes move entries between index keys
/// and out of the index.
pub const GLOBAL_INDEX_KEY_ATTRIBUTE: &str = "g";
/// Values of the GSI's key a write may set (`g1`..), besides leaving it out.
pub const GLOBAL_INDEX_KEY_VALUES: u64 = 3;
/// The version counter every write with the GSI adds one to (UpdateItem `ADD`): it grows with
/// the base partition's commit order per item, and the GSI projects it, so the checker can tell
/// an older entry from a newer one.
pub const VERSION_ATTRIBUTE: &str = "ver";

/// The GSI: key `g` (no sort key), projecting the version and not the register value `v`, so
/// entries are the projection of the items and not the items.
pub fn global_indexes() -> Vec<GlobalIndex> {
    vec![GlobalIndex {
        name: GLOBAL_INDEX_NAME.to_string(),
        number: 0,
        partition_keys: vec![KeyAttribute {
            name: GLOBAL_INDEX_KEY_ATTRIBUTE.to_string(),
            key_type: KeyType::String,
        }],
        sort_keys: Vec::new(),
        projection: Projection::Include(vec![VERSION_ATTRIBUTE.to_string()]),
    }]
}

/// The GSI key a write of `value` sets: `None` (the item leaves the index) for one value in
/// `GLOBAL_INDEX_KEY_VALUES + 1`.
pub fn global_index_key(value: u64) -> Option<String> {
    let bucket = value % (GLOBAL_INDEX_KEY_VALUES + 1);
    (bucket != 0).then(|| format!("g{bucket}"))
}

/// Every GSI key a write may set, in the order the end-of-run check queries them.
pub fn global_index_keys() -> Vec<String> {
    (1..=GLOBAL_INDEX_KEY_VALUES)
        .map(|bucket| format!("g{bucket}"))
        .collect()
}

/// `parameters` prepared for the simulated table and carried through the request encoding.
/// The simulator writes only valid requests, so a refusal is a bug in it (or in `prepare`).
fn prepared(operation: ItemOperation, parameters: &Json) -> PreparedRequest {
    prepared_for(operation, parameters, &[])
}

/// As [`prepared`], for a table that also has these global secondary indexes: writes carry
/// them, and a Query or Scan may name one.
fn prepared_for(
    operation: ItemOperation,
    parameters: &Json,
    global_indexes: &[GlobalIndex],
) -> PreparedRequest {
    let indexes = TableIndexes {
        local: &local_indexes(),
        global: global_indexes,
        consistent_global_reads: false,
    };
    let request = prepare_for_table(operation, parameters, &key_schema(), indexes)
        .unwrap_or_else(|error| panic!("the simulator built an invalid request: {error:?}"));
    decode_request(&encode_request(&request))
        .unwrap_or_else(|error| panic!("a prepared request does not decode: {error:?}"))
}

fn key_attribute(key: u64) -> Json {
    json!({ "S": format!("k{key}") })
}

impl Command {
    pub fn key(&self) -> u64 {
        match *self {
            Command::Put { key, .. } | Command::CompareAndSet { key, .. } => key,
        }
    }

    pub fn written_value(&self) -> u64 {
        match *self {
            Command::Put { value, .. } => value,
            Command::CompareAndSet { new, .. } => new,
        }
    }

    /// The PutItem: a blind put, or a put conditioned on the current value.
    pub fn request(&self) -> PreparedRequest {
        prepared(ItemOperation::PutItem, &self.parameters())
    }

    /// The same write to a table with the GSI (`--global-index`): an UpdateItem that sets `v`,
    /// sets or removes the GSI key `g` and adds one to the version, under the same condition.
    /// For the register `v` it is a put (the item holds nothing else that a put would drop).
    pub fn indexed_request(&self) -> PreparedRequest {
        let value = self.written_value();
        let mut values = serde_json::Map::new();
        values.insert(":v".to_string(), json!({ "N": value.to_string() }));
        values.insert(":one".to_string(), json!({ "N": "1" }));
        let expression = match global_index_key(value) {
            Some(key) => {
                values.insert(":g".to_string(), json!({ "S": key }));
                format!(
                    "SET v = :v, {GLOBAL_INDEX_KEY_ATTRIBUTE} = :g ADD {VERSION_ATTRIBUTE} :one"
                )
            }
            None => format!(
                "SET v = :v REMOVE {GLOBAL_INDEX_KEY_ATTRIBUTE} ADD {VERSION_ATTRIBUTE} :one"
            ),
        };
        let mut parameters = json!({
            "Key": { "pk": key_attribute(self.key()) },
            "UpdateExpression": expression,
        });
        match *self {
            Command::Put { .. } => {}
            Command::CompareAndSet { expected: None, .. } => {
                parameters["ConditionExpression"] = json!("attribute_not_exists(pk)");
            }
            Command::CompareAndSet {
                expected: Some(expected),
                ..
            } => {
                parameters["ConditionExpression"] = json!("v = :expected");
                values.insert(
                    ":expected".to_string(),
                    json!({ "N": expected.to_string() }),
                );
            }
        }
        parameters["ExpressionAttributeValues"] = Json::Object(values);
        prepared_for(ItemOperation::UpdateItem, &parameters, &global_indexes())
    }

    fn parameters(&self) -> Json {
        let item = json!({
            "pk": key_attribute(self.key()),
            "v": { "N": self.written_value().to_string() },
        });
        match *self {
            Command::Put { .. } => json!({ "Item": item }),
            Command::CompareAndSet { expected: None, .. } => json!({
                "Item": item,
                "ConditionExpression": "attribute_not_exists(pk)",
            }),
            Command::CompareAndSet {
                expected: Some(expected),
                ..
            } => json!({
                "Item": item,
                "ConditionExpression": "v = :expected",
                "ExpressionAttributeValues": { ":expected": { "N": expected.to_string() } },
            }),
        }
    }
}

/// The wall clock of the simulated nodes starts here, in epoch seconds (their sweepers' clock).
pub const UNIX_SECONDS_BASE: u64 = 1_800_000_000;
/// The TTL attribute of the simulated table when Time to Live is on.
pub const TIME_TO_LIVE_ATTRIBUTE: &str = "expires";

/// The PutItem of expiring item `key`: partition key `x<key>`, already expired at every moment
/// of the run, so the sweeper may delete it as soon as it is applied. No client reads it: the
/// register keys `k<k>` never carry a TTL attribute, so a delete of one of them by the sweeper
/// is a linearizability violation. It carries the local index's attribute `v`, so it has an
/// index entry that the sweeper's delete must remove with it.
/// With the GSI (`global_index`), the item also carries a GSI key and a version, so the
/// sweeper's delete must remove its GSI entry through the outbox.
pub fn expiring_put_request(key: u64, global_index: bool) -> PreparedRequest {
    let mut item = json!({
        "pk": { "S": format!("x{key}") },
        "v": { "N": key.to_string() },
        TIME_TO_LIVE_ATTRIBUTE: { "N": (UNIX_SECONDS_BASE - 1).to_string() },
    });
    if !global_index {
        return prepared(ItemOperation::PutItem, &json!({ "Item": item }));
    }
    item[GLOBAL_INDEX_KEY_ATTRIBUTE] =
        json!({ "S": format!("g{}", 1 + key % GLOBAL_INDEX_KEY_VALUES) });
    item[VERSION_ATTRIBUTE] = json!({ "N": "1" });
    prepared_for(
        ItemOperation::PutItem,
        &json!({ "Item": item }),
        &global_indexes(),
    )
}

/// A GetItem of `key`, strongly consistent or not.
pub fn get_request(key: u64, consistent: bool) -> PreparedRequest {
    prepared(
        ItemOperation::GetItem,
        &json!({ "Key": { "pk": key_attribute(key) }, "ConsistentRead": consistent }),
    )
}

/// A Scan that reads the whole partition at any replica (its applied state).
pub fn scan_request() -> PreparedRequest {
    prepared(ItemOperation::Scan, &json!({}))
}

/// A Scan of the local index `by_value`, which must hold exactly the items of [`scan_request`].
pub fn index_scan_request() -> PreparedRequest {
    prepared(ItemOperation::Scan, &json!({ "IndexName": "by_value" }))
}

/// An eventually consistent Scan of the GSI at one of its index partition's replicas (the
/// request the router sends for a Scan with its IndexName): every entry, in entry-key order.
pub fn global_index_scan_request() -> PreparedRequest {
    prepared_for(
        ItemOperation::Scan,
        &json!({ "IndexName": GLOBAL_INDEX_NAME }),
        &global_indexes(),
    )
}

/// An eventually consistent Query of the GSI for one GSI key: exactly the entries whose entry
/// keys are under that key.
pub fn global_index_query_request(key: &str) -> PreparedRequest {
    prepared_for(
        ItemOperation::Query,
        &json!({
            "IndexName": GLOBAL_INDEX_NAME,
            "KeyConditionExpression": format!("{GLOBAL_INDEX_KEY_ATTRIBUTE} = :g"),
            "ExpressionAttributeValues": { ":g": { "S": key } },
        }),
        &global_indexes(),
    )
}

/// Every item of a Query or Scan answer, decoded, in the order of the answer.
pub fn parse_items(result: &ItemResult) -> Result<Vec<Item>, String> {
    let ItemResult::Range {
        items,
        last_evaluated_key,
        ..
    } = result
    else {
        return Err(format!("a range read answered {result:?}"));
    };
    if last_evaluated_key.is_some() {
        return Err("a range read of a few small items stopped early".to_string());
    }
    items
        .iter()
        .map(|bytes| {
            decode_item(bytes)
                .map_err(|error| format!("an answered item does not decode: {error:?}"))
        })
        .collect()
}

/// The base key (`pk`) and version of a GSI entry or a base item.
pub fn key_and_version(item: &Item) -> Result<(String, u64), String> {
    let json = item_to_json(item);
    let key = json["pk"]["S"]
        .as_str()
        .ok_or_else(|| format!("an item without a string pk: {json}"))?
        .to_string();
    let version = json[VERSION_ATTRIBUTE]["N"]
        .as_str()
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| format!("an item without a numeric {VERSION_ATTRIBUTE}: {json}"))?;
    Ok((key, version))
}

fn item_of(bytes: &[u8]) -> Result<Json, String> {
    decode_item(bytes)
        .map(|item| item_to_json(&item))
        .map_err(|error| format!("an answered item does not decode: {error:?}"))
}

/// The simulated key and value of one item in DynamoDB JSON.
fn key_and_value(item: &Json) -> Result<(u64, u64), String> {
    let key = item["pk"]["S"]
        .as_str()
        .and_then(|name| name.strip_prefix('k'))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| format!("item without a simulated key: {item}"))?;
    let value = item["v"]["N"]
        .as_str()
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| format!("item without a numeric v: {item}"))?;
    Ok((key, value))
}

/// The value a GetItem answer holds: None when the item does not exist.
pub fn parse_get_result(result: &ItemResult) -> Result<Option<u64>, String> {
    match result {
        ItemResult::Get { item: None } => Ok(None),
        ItemResult::Get { item: Some(bytes) } => {
            key_and_value(&item_of(bytes)?).map(|(_, value)| Some(value))
        }
        other => Err(format!("a GetItem answered {other:?}")),
    }
}

/// A replica's applied items: the registers by simulated key, the expiring items' keys, and
/// with transactions the accounts' balances and markers (an index entry has no marker).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScannedState {
    pub registers: BTreeMap<u64, u64>,
    pub expiring: BTreeSet<u64>,
    pub accounts: BTreeMap<u64, i64>,
    pub markers: BTreeMap<u64, u64>,
}

impl ScannedState {
    /// How many items the state holds.
    pub fn len(&self) -> usize {
        self.registers.len() + self.expiring.len() + self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every item of a Scan answer.
pub fn parse_scan_result(result: &ItemResult) -> Result<ScannedState, String> {
    let ItemResult::Range {
        items,
        last_evaluated_key,
        ..
    } = result
    else {
        return Err(format!("a Scan answered {result:?}"));
    };
    if last_evaluated_key.is_some() {
        return Err("a scan of a few small items stopped early".to_string());
    }
    let mut state = ScannedState::default();
    for bytes in items {
        let item = item_of(bytes)?;
        let expiring = item["pk"]["S"]
            .as_str()
            .and_then(|name| name.strip_prefix('x'))
            .and_then(|digits| digits.parse::<u64>().ok());
        let account = item["pk"]["S"]
            .as_str()
            .is_some_and(|name| name.starts_with('a'));
        match expiring {
            Some(key) => {
                state.expiring.insert(key);
            }
            None if account => {
                let decoded = decode_item(bytes)
                    .map_err(|error| format!("an answered item does not decode: {error:?}"))?;
                let (account, balance, marker) = parse_account(&decoded)?;
                state.accounts.insert(account, balance);
                if marker != 0 {
                    state.markers.insert(account, marker);
                }
            }
            None => {
                let (key, value) = key_and_value(&item)?;
                state.registers.insert(key, value);
            }
        }
    }
    Ok(state)
}

/// FNV-1a over the applied items in key order: equal states give equal digests everywhere.
/// Expiring items count too (after the registers, each with a marker byte), so replicas that
/// disagree on a delete by the sweeper differ; without them the digest is the registers' alone.
/// Accounts (balance and marker) come last, the same way.
pub fn digest(state: &ScannedState) -> u64 {
    let registers = state
        .registers
        .iter()
        .fold(crate::FNV_OFFSET_BASIS, |hash, (key, value)| {
            crate::fnv1a(crate::fnv1a(hash, &key.to_le_bytes()), &value.to_le_bytes())
        });
    let expiring = state.expiring.iter().fold(registers, |hash, key| {
        crate::fnv1a(crate::fnv1a(hash, b"x"), &key.to_le_bytes())
    });
    // Accounts (transactions on) last, so that runs without them keep their digests.
    state
        .accounts
        .iter()
        .fold(expiring, |hash, (account, balance)| {
            let marker = state.markers.get(account).copied().unwrap_or(0);
            let hash = crate::fnv1a(crate::fnv1a(hash, b"a"), &account.to_le_bytes());
            crate::fnv1a(
                crate::fnv1a(hash, &balance.to_le_bytes()),
                &marker.to_le_bytes(),
            )
        })
}

/// Transactions (`--transactions`): account `n` is the item `{"pk": {"S": "a<n>"}, "v":
/// balance}`. Its balance is in `v`, the attribute the local index sorts by, so every
/// committed transfer moves index entries too (the index check holds commits to it), and the
/// reader's conflicting writes set the marker attribute `m` and nothing else.
pub const ACCOUNT_MARKER_ATTRIBUTE: &str = "m";

fn account_attribute(account: u64) -> Json {
    json!({ "S": format!("a{account}") })
}

fn write_of(request: PreparedRequest) -> WriteRequest {
    match request {
        PreparedRequest::Write(write) => write,
        other => panic!("a transaction action prepared as {other:?}"),
    }
}

/// The PutItem that creates account `account` with `balance`, once: a resend after a lost
/// answer finds it and fails its condition.
pub fn account_create_request(account: u64, balance: u64) -> PreparedRequest {
    prepared(
        ItemOperation::PutItem,
        &json!({
            "Item": { "pk": account_attribute(account), "v": { "N": balance.to_string() } },
            "ConditionExpression": "attribute_not_exists(pk)",
        }),
    )
}

/// A transfer's debit: an Update action `SET v = v - :amount` under the condition
/// `v >= :amount`, as a client writes it in TransactItems.
pub fn account_debit_action(account: u64, amount: u64) -> TransactAction {
    TransactAction {
        write: write_of(prepared(
            ItemOperation::UpdateItem,
            &json!({
                "Key": { "pk": account_attribute(account) },
                "UpdateExpression": "SET v = v - :amount",
                "ConditionExpression": "v >= :amount",
                "ExpressionAttributeValues": { ":amount": { "N": amount.to_string() } },
            }),
        )),
        check_only: false,
    }
}

/// A transfer's credit: an Update action `SET v = v + :amount` on an existing account.
pub fn account_credit_action(account: u64, amount: u64) -> TransactAction {
    TransactAction {
        write: write_of(prepared(
            ItemOperation::UpdateItem,
            &json!({
                "Key": { "pk": account_attribute(account) },
                "UpdateExpression": "SET v = v + :amount",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": { ":amount": { "N": amount.to_string() } },
            }),
        )),
        check_only: false,
    }
}

/// A ConditionCheck action `v >= :least` on an account (the router prepares a ConditionCheck
/// as a Delete with the check's condition, never applied).
pub fn account_check_action(account: u64, least: u64) -> TransactAction {
    TransactAction {
        write: write_of(prepared(
            ItemOperation::DeleteItem,
            &json!({
                "Key": { "pk": account_attribute(account) },
                "ConditionExpression": "v >= :least",
                "ExpressionAttributeValues": { ":least": { "N": least.to_string() } },
            }),
        )),
        check_only: true,
    }
}

/// A TransactGetItems' Get of an account (strongly consistent, as the router makes them).
pub fn account_get(account: u64) -> GetRequest {
    match prepared(
        ItemOperation::GetItem,
        &json!({ "Key": { "pk": account_attribute(account) }, "ConsistentRead": true }),
    ) {
        PreparedRequest::Get(get) => get,
        other => panic!("a GetItem prepared as {other:?}"),
    }
}

/// A single-item write to an account that a transaction's lock must refuse
/// (TransactionConflictException): `SET m = :marker`, which leaves the balance alone.
pub fn account_mark_request(account: u64, marker: u64) -> PreparedRequest {
    prepared(
        ItemOperation::UpdateItem,
        &json!({
            "Key": { "pk": account_attribute(account) },
            "UpdateExpression": "SET m = :marker",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": { ":marker": { "N": marker.to_string() } },
        }),
    )
}

/// An account item's number, balance and marker (0 when it has none). Balances are signed:
/// a negative one must be reported, not fail to parse.
pub fn parse_account(item: &Item) -> Result<(u64, i64, u64), String> {
    let json = item_to_json(item);
    let account = json["pk"]["S"]
        .as_str()
        .and_then(|name| name.strip_prefix('a'))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| format!("not an account: {json}"))?;
    let balance = json["v"]["N"]
        .as_str()
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| format!("an account without a numeric balance: {json}"))?;
    let marker = match json[ACCOUNT_MARKER_ATTRIBUTE]["N"].as_str() {
        Some(digits) => digits
            .parse()
            .map_err(|_| format!("an account with a malformed marker: {json}"))?,
        None => 0,
    };
    Ok((account, balance, marker))
}

/// The ledger's key (the router's ledger table: partition key `id`, a string).
pub const LEDGER_KEY: &str = "id";
/// Ledger record states (router/server `router/transactions.rs`).
pub const LEDGER_PENDING: &str = "PENDING";
pub const LEDGER_COMMITTED: &str = "COMMITTED";
pub const LEDGER_CANCELLED: &str = "CANCELLED";

pub fn ledger_key_schema() -> KeySchema {
    KeySchema::partition_only(LEDGER_KEY, KeyType::String)
}

fn ledger_prepared(operation: ItemOperation, parameters: &Json) -> PreparedRequest {
    let indexes = TableIndexes {
        local: &[],
        global: &[],
        consistent_global_reads: false,
    };
    let request = prepare_for_table(operation, parameters, &ledger_key_schema(), indexes)
        .unwrap_or_else(|error| panic!("the simulator built an invalid request: {error:?}"));
    decode_request(&encode_request(&request))
        .unwrap_or_else(|error| panic!("a prepared request does not decode: {error:?}"))
}

/// The router's `ledger_begin` for a new record: PENDING with the attempt's nonce, only if no
/// record exists.
pub fn ledger_begin_request(ledger_key: &str, nonce: u64) -> PreparedRequest {
    ledger_prepared(
        ItemOperation::PutItem,
        &json!({
            "Item": {
                LEDGER_KEY: { "S": ledger_key },
                "state": { "S": LEDGER_PENDING },
                "nonce": { "N": nonce.to_string() },
                "digest": { "S": "sim" },
            },
            "ConditionExpression": "attribute_not_exists(#id)",
            "ExpressionAttributeNames": { "#id": LEDGER_KEY },
        }),
    )
}

/// The router's `ledger_decide`: PENDING -> `state` for attempt `nonce`, the commit point.
pub fn ledger_decide_request(ledger_key: &str, nonce: u64, state: &str) -> PreparedRequest {
    ledger_prepared(
        ItemOperation::UpdateItem,
        &json!({
            "Key": { LEDGER_KEY: { "S": ledger_key } },
            "UpdateExpression": "SET #state = :state",
            "ConditionExpression": "#state = :pending AND #nonce = :nonce",
            "ExpressionAttributeNames": { "#state": "state", "#nonce": "nonce" },
            "ExpressionAttributeValues": {
                ":state": { "S": state },
                ":pending": { "S": LEDGER_PENDING },
                ":nonce": { "N": nonce.to_string() },
            },
        }),
    )
}

/// The router's `ledger_read`: a strongly consistent GetItem of the record.
pub fn ledger_read_request(ledger_key: &str) -> PreparedRequest {
    ledger_prepared(
        ItemOperation::GetItem,
        &json!({ "Key": { LEDGER_KEY: { "S": ledger_key } }, "ConsistentRead": true }),
    )
}

/// A Scan of the whole ledger partition (the checkers' read of a ledger replica).
pub fn ledger_scan_request() -> PreparedRequest {
    ledger_prepared(ItemOperation::Scan, &json!({}))
}

/// A ledger record's key, state and nonce.
pub fn parse_ledger_record(item: &Item) -> Result<(String, String, u64), String> {
    let json = item_to_json(item);
    let text = |name: &str| json[name]["S"].as_str().map(str::to_string);
    let nonce = json["nonce"]["N"]
        .as_str()
        .and_then(|digits| digits.parse().ok());
    match (text(LEDGER_KEY), text("state"), nonce) {
        (Some(key), Some(state), Some(nonce)) => Ok((key, state, nonce)),
        _ => Err(format!("a malformed ledger record: {json}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::encoding::encode_item;
    use shoal_model::json::item_from_json;
    use shoal_model::request::WriteKind;

    fn put_of(command: Command) -> shoal_model::request::WriteRequest {
        match command.request() {
            PreparedRequest::Write(write) => write,
            other => panic!("not a write: {other:?}"),
        }
    }

    #[test]
    fn requests_carry_the_key_the_value_and_the_condition() {
        let put = put_of(Command::Put { key: 3, value: 9 });
        let WriteKind::Put(item) = &put.kind else {
            panic!("not a put");
        };
        assert_eq!(
            item_to_json(item),
            json!({"pk": {"S": "k3"}, "v": {"N": "9"}})
        );
        assert!(put.condition.is_none());
        for expected in [None, Some(7)] {
            let conditional = put_of(Command::CompareAndSet {
                key: 1,
                expected,
                new: 4,
            });
            assert!(conditional.condition.is_some(), "{expected:?}");
        }
        assert!(matches!(get_request(2, true), PreparedRequest::Get(get) if get.consistent));
        assert!(matches!(scan_request(), PreparedRequest::Range(_)));
    }

    /// With the GSI, a write is an UpdateItem that carries the index, under the same
    /// condition, and moves the item between GSI keys or out of the index by its value.
    #[test]
    fn indexed_writes_carry_the_global_index_and_its_key() {
        let update_of = |command: Command| match command.indexed_request() {
            PreparedRequest::Write(write) => write,
            other => panic!("not a write: {other:?}"),
        };
        let with_key = update_of(Command::Put { key: 3, value: 5 });
        assert!(matches!(with_key.kind, WriteKind::Update(_)));
        assert_eq!(with_key.global_indexes, global_indexes());
        assert!(with_key.condition.is_none());
        assert_eq!(global_index_key(5), Some("g1".to_string()));
        assert_eq!(global_index_key(4), None);
        let conditional = update_of(Command::CompareAndSet {
            key: 1,
            expected: Some(7),
            new: 4,
        });
        assert!(conditional.condition.is_some());
        assert_eq!(global_index_keys().len() as u64, GLOBAL_INDEX_KEY_VALUES);
        let PreparedRequest::Range(scan) = global_index_scan_request() else {
            panic!("not a range read");
        };
        assert!(scan.global_index.is_some() && !scan.consistent);
        let PreparedRequest::Range(query) = global_index_query_request("g2") else {
            panic!("not a range read");
        };
        assert!(query.global_index.is_some());
        let PreparedRequest::Write(expiring) = expiring_put_request(2, true) else {
            panic!("not a write");
        };
        let WriteKind::Put(item) = &expiring.kind else {
            panic!("not a put");
        };
        assert!(global_indexes()[0].holds(item));
        assert_eq!(key_and_version(item), Ok(("x2".to_string(), 1)));
    }

    fn encoded(item: Json) -> Vec<u8> {
        encode_item(&item_from_json(&item).unwrap())
    }

    #[test]
    fn answers_parse_and_malformed_ones_are_refused() {
        assert_eq!(parse_get_result(&ItemResult::Get { item: None }), Ok(None));
        assert_eq!(
            parse_get_result(&ItemResult::Get {
                item: Some(encoded(json!({"pk": {"S": "k2"}, "v": {"N": "11"}})))
            }),
            Ok(Some(11))
        );
        assert!(
            parse_get_result(&ItemResult::Get {
                item: Some(encoded(json!({"pk": {"S": "k2"}})))
            })
            .is_err()
        );
        assert!(
            parse_get_result(&ItemResult::Get {
                item: Some(vec![9])
            })
            .is_err()
        );
        let scan = |last_evaluated_key| ItemResult::Range {
            items: vec![
                encoded(json!({"pk": {"S": "k2"}, "v": {"N": "11"}})),
                encoded(json!({"pk": {"S": "k0"}, "v": {"N": "3"}})),
            ],
            count: 2,
            scanned_count: 2,
            scanned_bytes: 20,
            last_evaluated_key,
        };
        let state = parse_scan_result(&scan(None)).expect("scan");
        assert_eq!(state.registers, BTreeMap::from([(0, 3), (2, 11)]));
        assert!(state.expiring.is_empty());
        assert!(parse_scan_result(&scan(Some(encoded(json!({"pk": {"S": "k0"}}))))).is_err());
        let mut changed = state.clone();
        changed.registers.insert(2, 12);
        assert_ne!(digest(&state), digest(&changed));
        let mut with_expiring = state.clone();
        with_expiring.expiring.insert(2);
        assert_ne!(digest(&state), digest(&with_expiring));
        let PreparedRequest::Write(expiring) = expiring_put_request(5, false) else {
            panic!("not a write");
        };
        let WriteKind::Put(item) = &expiring.kind else {
            panic!("not a put");
        };
        let scanned = parse_scan_result(&ItemResult::Range {
            items: vec![encode_item(item)],
            count: 1,
            scanned_count: 1,
            scanned_bytes: 10,
            last_evaluated_key: None,
        })
        .expect("scan");
        assert_eq!(scanned.expiring, BTreeSet::from([5]));
        assert!(shoal_partition::time_to_live::expired(
            item,
            TIME_TO_LIVE_ATTRIBUTE,
            UNIX_SECONDS_BASE
        ));
    }
}
