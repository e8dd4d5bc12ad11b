//! Access keys: who may call the cluster, and what each key may do.
//!
//! A key is an id (`AKSH` and 16 base-32 characters, shaped like AWS's) and a secret (30 random
//! bytes, base64: 40 characters, like AWS's), a [`Role`], and optionally the tables it is
//! limited to. SigV4 needs the secret itself to recompute a signature (an HMAC, not a password
//! hash), so the secret is stored in the metadata as it is: whoever can read partition 0's
//! items (the nodes' data directories, the bus) can read every secret. The CLI prints a secret
//! once, when the key is created; `list-keys` never shows it.
//!
//! All keys live in one metadata item, `access_keys` (metadata.rs), with a revision: a change is
//! a read, a modification and a write conditional on the revision read
//! ([`MetadataStore::put_if_revision`]), so two `create-key` runs never lose one another's key.
//! One item keeps a router's refresh to one strongly consistent GetItem, however many tables
//! the metadata holds; [`ACCESS_KEYS_MAX`] keeps it under DynamoDB's 400 KB item limit.
//!
//! Routers keep the keys in a [`KeyCache`], read again every [`KEYS_REFRESH_INTERVAL`] and at
//! once (at most every [`KEYS_MISS_REFRESH_INTERVAL_MIN`]) when a request names a key the cache
//! does not have, so a new key works at once and a revoked one stops within the interval.
//!
//! # Invariants
//! 1. Key ids are unique (a map), at most [`ACCESS_KEYS_MAX`]; a key limited to tables lists
//!    1 to [`TABLES_PER_KEY_MAX`] valid table names.
//! 2. [`AccessKey::authorize`] runs before the operation: a refused request reaches no
//!    partition and is charged no capacity.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value as Json, json};

use crate::error::DynamoError;
use crate::forward::Forwarder;
use crate::metadata::{KEY_ATTRIBUTE, MetadataStore, NodeAddress, metadata_replicas};
use crate::partition_map::NodeDirectory;
use crate::validate;

/// The metadata item holding every key.
pub const ACCESS_KEYS_KEY: &str = "access_keys";
/// Keys at most. One key takes about 150 bytes of the item, plus its table names: 1,000 keys
/// stay well under DynamoDB's 400 KB item limit unless many list many long table names (the
/// metadata partition then refuses the write, and the CLI says so).
pub const ACCESS_KEYS_MAX: usize = 1000;
/// Table names one key may be limited to.
pub const TABLES_PER_KEY_MAX: usize = 100;
/// Every generated key id starts with this (AWS's start with AKIA).
pub const ACCESS_KEY_ID_PREFIX: &str = "AKSH";
/// Random base-32 characters after the prefix: 80 bits.
const ACCESS_KEY_ID_RANDOM_CHARACTERS: usize = 16;
/// Random bytes of a secret: 240 bits, 40 characters of base64.
const SECRET_RANDOM_BYTES: usize = 30;
/// How often a router reads the keys again: a revoked key stops working within this.
pub const KEYS_REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// A request naming an unknown key reads the keys again at once, but not more often than this
/// (a flood of unknown keys costs the metadata group a few reads a second, not one each).
pub const KEYS_MISS_REFRESH_INTERVAL_MIN: Duration = Duration::from_millis(250);
const _: () =
    assert!(KEYS_MISS_REFRESH_INTERVAL_MIN.as_millis() < KEYS_REFRESH_INTERVAL.as_millis());
/// One read or write of the keys item may take this long.
pub const KEYS_REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Conditional writes of the keys item tried at most, when other writers keep winning.
pub const KEYS_WRITE_ATTEMPTS_MAX: u32 = 8;

const ACCESS_DENIED: &str = "AccessDeniedException";
/// DynamoDB's answer to a key it does not know (never made, or revoked).
pub const UNRECOGNIZED_CLIENT: &str = "UnrecognizedClientException";
pub const UNRECOGNIZED_CLIENT_MESSAGE: &str =
    "The security token included in the request is invalid.";

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads: GetItem, Query, Scan, BatchGetItem, DescribeTable, ListTables, ListTagsOfResource,
    /// DescribeTimeToLive, DescribeLimits, DescribeEndpoints.
    ReadOnly,
    /// Reads and item writes: PutItem, UpdateItem, DeleteItem, BatchWriteItem.
    ReadWrite,
    /// Everything, the control plane included: CreateTable, DeleteTable, UpdateTable,
    /// TagResource, UntagResource, UpdateTimeToLive.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::ReadWrite, Role::ReadOnly];

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadWrite => "read-write",
            Role::ReadOnly => "read-only",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == text)
    }
}

/// The role an operation needs, by its DynamoDB name. An operation not listed needs admin.
pub fn role_needed(operation: &str) -> Role {
    match operation {
        "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems" | "DescribeTable"
        | "ListTables" | "ListTagsOfResource" | "DescribeTimeToLive" | "DescribeLimits"
        | "DescribeEndpoints" => Role::ReadOnly,
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems" => {
            Role::ReadWrite
        }
        _ => Role::Admin,
    }
}

/// What a request acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resources {
    /// Nothing in particular: DescribeLimits, DescribeEndpoints.
    None,
    /// Every table: ListTables.
    AllTables,
    /// These tables, as the body names them (none when it names none: the operation's own
    /// validation refuses it).
    Tables(Vec<String>),
}

/// The tables a request names: `TableName`, the keys of a batch's `RequestItems`, or the table
/// of a tag operation's `ResourceArn`.
pub fn resources(operation: &str, body: &Json) -> Resources {
    match operation {
        "DescribeLimits" | "DescribeEndpoints" => Resources::None,
        "ListTables" => Resources::AllTables,
        "BatchGetItem" | "BatchWriteItem" => Resources::Tables(
            body.get("RequestItems")
                .and_then(Json::as_object)
                .map(|items| items.keys().cloned().collect())
                .unwrap_or_default(),
        ),
        // Every action's table (a name or a table ARN), so a key limited to some tables
        // reaches no other through a transaction.
        "TransactWriteItems" | "TransactGetItems" => Resources::Tables(
            body.get("TransactItems")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(Json::as_object)
                .flat_map(|action| action.values())
                .filter_map(|operation| operation.get("TableName").and_then(Json::as_str))
                .map(|name| match name.split_once(":table/") {
                    Some((_, table)) => table.to_string(),
                    None => name.to_string(),
                })
                .collect(),
        ),
        "TagResource" | "UntagResource" | "ListTagsOfResource" => Resources::Tables(
            body.get("ResourceArn")
                .and_then(Json::as_str)
                .and_then(|arn| arn.split_once(":table/"))
                .map(|(_, rest)| rest.split('/').next().unwrap_or_default().to_string())
                .into_iter()
                .collect(),
        ),
        _ => Resources::Tables(
            body.get("TableName")
                .and_then(Json::as_str)
                .map(str::to_string)
                .into_iter()
                .collect(),
        ),
    }
}

/// One access key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    pub role: Role,
    /// `None`: every table. Otherwise only these (invariant 1).
    pub tables: Option<BTreeSet<String>>,
    pub created_at_seconds: u64,
}

/// Base-32 (RFC 4648 alphabet) of random bytes, `count` characters: key ids are upper-case
/// letters and digits like AWS's.
fn base32(bytes: &[u8], count: usize) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut text = String::with_capacity(count);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 && text.len() < count {
            bits -= 5;
            text.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    text
}

fn unix_seconds_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Checks a table limit as given to `create-key` (invariant 1).
pub fn check_tables(tables: &BTreeSet<String>) -> Result<(), DynamoError> {
    if tables.is_empty() || tables.len() > TABLES_PER_KEY_MAX {
        return Err(DynamoError::validation(format!(
            "A key is limited to 1 to {TABLES_PER_KEY_MAX} tables, not {}",
            tables.len()
        )));
    }
    tables
        .iter()
        .try_for_each(|name| validate::check_table_name(name))
}

impl AccessKey {
    /// A new key with an id and secret from the operating system's random source.
    pub fn generate(
        role: Role,
        tables: Option<BTreeSet<String>>,
    ) -> Result<AccessKey, DynamoError> {
        if let Some(tables) = &tables {
            check_tables(tables)?;
        }
        let mut id_bytes = [0u8; ACCESS_KEY_ID_RANDOM_CHARACTERS * 5 / 8];
        let mut secret_bytes = [0u8; SECRET_RANDOM_BYTES];
        getrandom::fill(&mut id_bytes)
            .and_then(|()| getrandom::fill(&mut secret_bytes))
            .map_err(|error| {
                DynamoError::internal(format!(
                    "Internal server error (no random source for a key: {error})"
                ))
            })?;
        use base64::Engine as _;
        Ok(AccessKey {
            id: format!(
                "{ACCESS_KEY_ID_PREFIX}{}",
                base32(&id_bytes, ACCESS_KEY_ID_RANDOM_CHARACTERS)
            ),
            secret: base64::engine::general_purpose::STANDARD.encode(secret_bytes),
            role,
            tables,
            created_at_seconds: unix_seconds_now(),
        })
    }

    /// Whether this key may run `operation` with `body` (invariant 2), with DynamoDB's
    /// AccessDeniedException when not. The message has the shape IAM gives a denied DynamoDB
    /// call; the user is the key id, in the router's account.
    pub fn authorize(
        &self,
        operation: &str,
        body: &Json,
        region: &str,
        account: &str,
    ) -> Result<(), DynamoError> {
        let table_arn = |table: &str| format!("arn:aws:dynamodb:{region}:{account}:table/{table}");
        let denied = |resource: String| {
            DynamoError::new(
                ACCESS_DENIED,
                format!(
                    "User: arn:aws:iam::{account}:user/{} is not authorized to perform: dynamodb:{operation} on resource: {resource} because no identity-based policy allows the dynamodb:{operation} action",
                    self.id
                ),
            )
        };
        let resources = resources(operation, body);
        let first_resource = || match &resources {
            Resources::Tables(tables) if !tables.is_empty() => table_arn(&tables[0]),
            Resources::None => "*".to_string(),
            _ => table_arn("*"),
        };
        if self.role < role_needed(operation) {
            return Err(denied(first_resource()));
        }
        let Some(allowed) = &self.tables else {
            return Ok(());
        };
        match &resources {
            Resources::None => Ok(()),
            Resources::AllTables => Err(denied(table_arn("*"))),
            Resources::Tables(tables) => {
                match tables.iter().find(|table| !allowed.contains(*table)) {
                    Some(table) => Err(denied(table_arn(table))),
                    None => Ok(()),
                }
            }
        }
    }

    fn to_json(&self) -> Json {
        let mut member = Map::new();
        member.insert("id".to_string(), json!({ "S": self.id }));
        member.insert("secret".to_string(), json!({ "S": self.secret }));
        member.insert("role".to_string(), json!({ "S": self.role.name() }));
        member.insert(
            "created_at".to_string(),
            json!({ "N": self.created_at_seconds.to_string() }),
        );
        if let Some(tables) = &self.tables {
            let names: Vec<Json> = tables.iter().map(|name| json!({ "S": name })).collect();
            member.insert("tables".to_string(), json!({ "L": names }));
        }
        json!({ "M": member })
    }

    fn from_json(value: &Json) -> Result<AccessKey, DynamoError> {
        let corrupt = |what: &str| {
            DynamoError::internal(format!("Internal server error (access key: {what})"))
        };
        let map = value.get("M").ok_or_else(|| corrupt("not a map"))?;
        let text = |name: &str| {
            map.get(name)
                .and_then(|value| value.get("S"))
                .and_then(Json::as_str)
                .ok_or_else(|| corrupt(&format!("{name} is not a string")))
        };
        let tables = match map.get("tables") {
            None => None,
            Some(list) => Some(
                list.get("L")
                    .and_then(Json::as_array)
                    .ok_or_else(|| corrupt("tables is not a list"))?
                    .iter()
                    .map(|name| {
                        name.get("S")
                            .and_then(Json::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| corrupt("a table is not a string"))
                    })
                    .collect::<Result<BTreeSet<String>, DynamoError>>()?,
            ),
        };
        Ok(AccessKey {
            id: text("id")?.to_string(),
            secret: text("secret")?.to_string(),
            role: Role::parse(text("role")?).ok_or_else(|| corrupt("unknown role"))?,
            tables,
            created_at_seconds: map
                .get("created_at")
                .and_then(|value| value.get("N"))
                .and_then(Json::as_str)
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| corrupt("created_at is not a number"))?,
        })
    }
}

/// Every key, as the `access_keys` item holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessKeys {
    pub keys: BTreeMap<String, AccessKey>,
    /// `None` while the item does not exist (no key was ever created).
    pub revision: Option<u64>,
}

impl AccessKeys {
    pub fn to_item(&self, revision: u64) -> Json {
        let keys: Vec<Json> = self.keys.values().map(AccessKey::to_json).collect();
        json!({
            KEY_ATTRIBUTE: { "S": ACCESS_KEYS_KEY },
            "keys": { "L": keys },
            "revision": { "N": revision.to_string() },
        })
    }

    pub fn from_item(item: &Json) -> Result<AccessKeys, DynamoError> {
        let corrupt = |what: &str| {
            DynamoError::internal(format!("Internal server error (access keys: {what})"))
        };
        let revision = item
            .get("revision")
            .and_then(|value| value.get("N"))
            .and_then(Json::as_str)
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| corrupt("revision is not a number"))?;
        let mut keys = BTreeMap::new();
        for value in item
            .get("keys")
            .and_then(|value| value.get("L"))
            .and_then(Json::as_array)
            .ok_or_else(|| corrupt("keys is not a list"))?
        {
            let key = AccessKey::from_json(value)?;
            keys.insert(key.id.clone(), key);
        }
        Ok(AccessKeys {
            keys,
            revision: Some(revision),
        })
    }
}

/// Reads and changes the keys through the metadata group's leader. It has its own bus
/// connections (to the metadata nodes only), so the CLI can use it without a router.
pub struct KeyStore {
    forwarder: Forwarder,
    metadata: MetadataStore,
}

impl KeyStore {
    /// `nodes` as a router is given them: the metadata group is looked for on the lowest ids
    /// first, then through the nodes (`MetadataStore::rediscover`). `bus_tls`:
    /// the bus's mutual TLS, when the cluster's buses require it.
    pub fn new(
        nodes: &[NodeAddress],
        seed: u64,
        bus_tls: Option<shoal_bus::BusTls>,
    ) -> Result<KeyStore, DynamoError> {
        if nodes.is_empty() {
            return Err(DynamoError::validation(
                "the key store needs the cluster's nodes",
            ));
        }
        let directory = NodeDirectory::new(nodes.iter().map(|node| (node.id, node.address)));
        Ok(KeyStore {
            forwarder: Forwarder::new(directory, seed).with_bus_tls(bus_tls),
            metadata: MetadataStore::new(metadata_replicas(nodes)),
        })
    }

    /// Every key, strongly consistent.
    pub async fn load(&self) -> Result<AccessKeys, DynamoError> {
        let deadline = Instant::now() + KEYS_REQUEST_DEADLINE;
        match self
            .metadata
            .get(&self.forwarder, ACCESS_KEYS_KEY, deadline)
            .await
            .map_err(|error| error.into_dynamo())?
        {
            None => Ok(AccessKeys::default()),
            Some(item) => AccessKeys::from_item(&item),
        }
    }

    /// Applies `change` to the keys and writes them back if the revision is still the one
    /// read; reads again and retries when another writer won, up to
    /// [`KEYS_WRITE_ATTEMPTS_MAX`] times.
    async fn change<Outcome>(
        &self,
        change: impl Fn(&mut AccessKeys) -> Result<Outcome, DynamoError>,
    ) -> Result<Outcome, DynamoError> {
        for _attempt in 0..KEYS_WRITE_ATTEMPTS_MAX {
            let mut keys = self.load().await?;
            let expected = keys.revision;
            let outcome = change(&mut keys)?;
            let next = expected.map_or(1, |revision| revision.saturating_add(1));
            let written = self
                .metadata
                .put_if_revision(
                    &self.forwarder,
                    keys.to_item(next),
                    expected,
                    Instant::now() + KEYS_REQUEST_DEADLINE,
                )
                .await
                .map_err(|error| error.into_dynamo())?;
            if written {
                return Ok(outcome);
            }
        }
        Err(DynamoError::new(
            crate::error::LIMIT_EXCEEDED,
            format!(
                "The access keys changed {KEYS_WRITE_ATTEMPTS_MAX} times while this change was tried; try again"
            ),
        ))
    }

    /// Creates a key (invariant 1) and returns it, secret included.
    pub async fn create(
        &self,
        role: Role,
        tables: Option<BTreeSet<String>>,
    ) -> Result<AccessKey, DynamoError> {
        let key = AccessKey::generate(role, tables)?;
        self.change(|keys| {
            if keys.keys.len() >= ACCESS_KEYS_MAX {
                return Err(DynamoError::new(
                    crate::error::LIMIT_EXCEEDED,
                    format!("A cluster holds at most {ACCESS_KEYS_MAX} access keys"),
                ));
            }
            keys.keys.insert(key.id.clone(), key.clone());
            Ok(())
        })
        .await?;
        Ok(key)
    }

    /// Removes a key; `Ok(false)` if there was none with this id.
    pub async fn revoke(&self, id: &str) -> Result<bool, DynamoError> {
        self.change(|keys| Ok(keys.keys.remove(id).is_some())).await
    }
}

/// A router core's copy of the keys (see the module docs for when it is read again).
pub struct KeyCache {
    store: KeyStore,
    keys: RefCell<BTreeMap<String, AccessKey>>,
    /// When the last read of the keys started.
    last_started: Cell<Option<Instant>>,
    /// When the read that gave `keys` started: everything written before it is in `keys`.
    keys_read_at: Cell<Option<Instant>>,
}

impl KeyCache {
    pub fn new(store: KeyStore) -> KeyCache {
        KeyCache {
            store,
            keys: RefCell::new(BTreeMap::new()),
            last_started: Cell::new(None),
            keys_read_at: Cell::new(None),
        }
    }

    /// Reads the keys again; on failure the keys read last stay in use.
    pub async fn refresh(&self) -> Result<usize, DynamoError> {
        let started = Instant::now();
        self.last_started.set(Some(started));
        let keys = self.store.load().await?.keys;
        let count = keys.len();
        // Reads may complete out of order: keep the newest.
        if self
            .keys_read_at
            .get()
            .is_none_or(|read_at| read_at <= started)
        {
            *self.keys.borrow_mut() = keys;
            self.keys_read_at.set(Some(started));
        }
        Ok(count)
    }

    /// The key with this id. A miss waits for keys read after the request arrived (so a key
    /// created just before it works), starting a read at most every
    /// [`KEYS_MISS_REFRESH_INTERVAL_MIN`]: misses arriving together share one read.
    pub async fn key(&self, id: &str) -> Option<AccessKey> {
        if let Some(key) = self.keys.borrow().get(id) {
            return Some(key.clone());
        }
        let arrived = Instant::now();
        if let Some(started) = self.last_started.get() {
            let allowed = started + KEYS_MISS_REFRESH_INTERVAL_MIN;
            if allowed > arrived {
                glommio::timer::sleep(allowed - arrived).await;
            }
        }
        let fresh = self
            .keys_read_at
            .get()
            .is_some_and(|read_at| read_at >= arrived);
        if !fresh && let Err(error) = self.refresh().await {
            tracing::warn!(%error.message, "cannot read the access keys");
        }
        self.keys.borrow().get(id).cloned()
    }

    /// Refreshes every [`KEYS_REFRESH_INTERVAL`] for the life of the executor.
    pub fn start_refreshing(self: &Rc<Self>) {
        let cache = self.clone();
        glommio::spawn_local(async move {
            // Logged when it changes, not at every pass while the metadata is unreachable.
            let mut failing = false;
            loop {
                match cache.refresh().await {
                    Ok(_) if failing => {
                        tracing::info!("access keys readable again");
                        failing = false;
                    }
                    Ok(_) => {}
                    Err(error) if !failing => {
                        tracing::warn!(%error.message, "cannot read the access keys; the keys read last stay in use");
                        failing = true;
                    }
                    Err(_) => {}
                }
                glommio::timer::sleep(KEYS_REFRESH_INTERVAL).await;
            }
        })
        .detach();
    }
}

/// The access checks of a router that verifies keys, shared by its front ends (the HTTP API
/// and the native protocol), so both refuse exactly the same requests with the same messages.
pub struct AccessControl {
    keys: Rc<KeyCache>,
    region: String,
    account: String,
}

impl AccessControl {
    /// `region` and `account` are the router's: they name resources in AccessDenied messages.
    pub fn new(keys: Rc<KeyCache>, region: String, account: String) -> AccessControl {
        AccessControl {
            keys,
            region,
            account,
        }
    }

    /// The secret of `access_key_id`, to verify a signature with; `None` for an unknown key.
    pub async fn secret(&self, access_key_id: &str) -> Option<String> {
        self.keys.key(access_key_id).await.map(|key| key.secret)
    }

    /// Whether the key, already authenticated, may run `operation` on what `body` names
    /// (invariant 2). A key revoked since it was authenticated is refused as unknown, so a
    /// revocation reaches long-lived connections too.
    pub async fn authorize(
        &self,
        access_key_id: &str,
        operation: &str,
        body: &Json,
    ) -> Result<(), DynamoError> {
        let Some(key) = self.keys.key(access_key_id).await else {
            return Err(DynamoError::new(
                UNRECOGNIZED_CLIENT,
                UNRECOGNIZED_CLIENT_MESSAGE,
            ));
        };
        key.authorize(operation, body, &self.region, &self.account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(role: Role, tables: Option<&[&str]>) -> AccessKey {
        AccessKey {
            id: "AKSHTEST".to_string(),
            secret: "secret".to_string(),
            role,
            tables: tables.map(|names| names.iter().map(|name| name.to_string()).collect()),
            created_at_seconds: 1_700_000_000,
        }
    }

    fn denial(key: &AccessKey, operation: &str, body: Json) -> String {
        let error = key
            .authorize(operation, &body, "us-east-1", "000000000000")
            .unwrap_err();
        assert_eq!(error.type_name, "AccessDeniedException");
        error.message
    }

    // The message IAM gives a denied DynamoDB call, as SDK users quote it (for example
    // anomalyco/sst issue 4469, ministryofjustice/modernisation-platform pull request 6789):
    // "User: <arn> is not authorized to perform: dynamodb:PutItem on resource:
    // arn:aws:dynamodb:<region>:<account>:table/<T> because no identity-based policy allows the
    // dynamodb:PutItem action".
    #[test]
    fn transactions_need_their_role_and_every_table_they_name() {
        let write = json!({"TransactItems": [
            {"Put": {"TableName": "movies", "Item": {}}},
            {"ConditionCheck": {"TableName": "arn:aws:dynamodb:r:a:table/secrets", "Key": {}}},
        ]});
        let read = json!({"TransactItems": [{"Get": {"TableName": "movies", "Key": {}}}]});
        let reader = key(Role::ReadOnly, None);
        reader
            .authorize("TransactGetItems", &read, "r", "a")
            .unwrap();
        denial(&reader, "TransactWriteItems", write.clone());
        let writer = key(Role::ReadWrite, None);
        writer
            .authorize("TransactWriteItems", &write, "r", "a")
            .unwrap();
        let limited = key(Role::Admin, Some(&["movies"]));
        limited
            .authorize("TransactGetItems", &read, "r", "a")
            .unwrap();
        assert!(
            denial(&limited, "TransactWriteItems", write).contains("table/secrets"),
            "a table outside the key's list, named by its ARN in a ConditionCheck"
        );
    }

    #[test]
    fn roles_allow_their_operations_and_deny_with_iam_messages() {
        let item = json!({"TableName": "movies", "Item": {}});
        let reader = key(Role::ReadOnly, None);
        reader.authorize("GetItem", &item, "r", "a").unwrap();
        reader
            .authorize("ListTables", &json!({}), "r", "a")
            .unwrap();
        assert_eq!(
            denial(&reader, "PutItem", item.clone()),
            "User: arn:aws:iam::000000000000:user/AKSHTEST is not authorized to perform: dynamodb:PutItem on resource: arn:aws:dynamodb:us-east-1:000000000000:table/movies because no identity-based policy allows the dynamodb:PutItem action"
        );
        let writer = key(Role::ReadWrite, None);
        writer.authorize("PutItem", &item, "r", "a").unwrap();
        writer
            .authorize(
                "BatchWriteItem",
                &json!({"RequestItems": {"a": []}}),
                "r",
                "a",
            )
            .unwrap();
        assert!(denial(&writer, "UpdateTimeToLive", item.clone()).contains("table/movies"));
        key(Role::ReadOnly, None)
            .authorize("DescribeTimeToLive", &item, "r", "a")
            .unwrap();
        assert!(denial(&writer, "CreateTable", item.clone()).contains(
            "dynamodb:CreateTable on resource: arn:aws:dynamodb:us-east-1:000000000000:table/movies"
        ));
        assert!(
            denial(
                &writer,
                "TagResource",
                json!({"ResourceArn": "arn:aws:dynamodb:us-east-1:000000000000:table/movies"})
            )
            .contains("table/movies")
        );
        // An operation nobody listed needs admin.
        assert!(denial(&writer, "UpdateContinuousBackups", json!({})).contains("table/*"));
        let admin = key(Role::Admin, None);
        for operation in [
            "CreateTable",
            "DeleteTable",
            "UpdateTable",
            "TagResource",
            "PutItem",
            "Scan",
        ] {
            admin.authorize(operation, &item, "r", "a").unwrap();
        }
    }

    #[test]
    fn table_limits_cover_every_table_a_request_names() {
        let limited = key(Role::ReadWrite, Some(&["movies", "books"]));
        limited
            .authorize("PutItem", &json!({"TableName": "movies"}), "r", "a")
            .unwrap();
        assert!(denial(&limited, "GetItem", json!({"TableName": "users"})).ends_with(
            "dynamodb:GetItem on resource: arn:aws:dynamodb:us-east-1:000000000000:table/users because no identity-based policy allows the dynamodb:GetItem action"
        ));
        limited
            .authorize(
                "BatchGetItem",
                &json!({"RequestItems": {"movies": {}, "books": {}}}),
                "r",
                "a",
            )
            .unwrap();
        assert!(
            denial(
                &limited,
                "BatchWriteItem",
                json!({"RequestItems": {"movies": [], "users": []}})
            )
            .contains("table/users")
        );
        assert!(
            denial(
                &limited,
                "ListTagsOfResource",
                json!({"ResourceArn": "arn:aws:dynamodb:us-east-1:000000000000:table/users"})
            )
            .contains("table/users")
        );
        // ListTables would show every table; DescribeLimits shows none.
        assert!(
            denial(&limited, "ListTables", json!({}))
                .contains("on resource: arn:aws:dynamodb:us-east-1:000000000000:table/*")
        );
        limited
            .authorize("DescribeLimits", &json!({}), "r", "a")
            .unwrap();
        // A request naming no table is left to the operation's validation.
        limited.authorize("GetItem", &json!({}), "r", "a").unwrap();
    }

    #[test]
    fn keys_items_round_trip_as_dynamodb_items() {
        let mut keys = AccessKeys::default();
        for access_key in [
            key(Role::Admin, None),
            AccessKey {
                id: "AKSHOTHER".to_string(),
                ..key(Role::ReadOnly, Some(&["t1", "t2"]))
            },
        ] {
            keys.keys.insert(access_key.id.clone(), access_key);
        }
        let item = keys.to_item(4);
        shoal_model::json::item_from_json(&item).unwrap();
        let read = AccessKeys::from_item(&item).unwrap();
        assert_eq!(read.revision, Some(4));
        assert_eq!(read.keys, keys.keys);
        let mut broken = item.clone();
        broken["keys"]["L"][0]["M"]["role"] = json!({"S": "root"});
        assert!(AccessKeys::from_item(&broken).is_err());
    }

    #[test]
    fn generated_keys_look_like_aws_keys_and_differ() {
        let first = AccessKey::generate(Role::ReadOnly, None).unwrap();
        let second = AccessKey::generate(Role::ReadOnly, None).unwrap();
        assert_eq!(first.id.len(), 20);
        assert!(first.id.starts_with(ACCESS_KEY_ID_PREFIX));
        assert!(
            first
                .id
                .bytes()
                .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit())
        );
        assert_eq!(first.secret.len(), 40);
        assert_ne!(first.id, second.id);
        assert_ne!(first.secret, second.secret);
        let empty = AccessKey::generate(Role::ReadOnly, Some(BTreeSet::new())).unwrap_err();
        assert_eq!(empty.type_name, "ValidationException");
        let bad_name = AccessKey::generate(Role::ReadOnly, Some(BTreeSet::from(["a".to_string()])));
        assert!(bad_name.is_err());
        assert_eq!(base32(&[0xff, 0x00, 0xff, 0x00, 0xff], 8), "74AP6AH7");
    }

    #[test]
    fn roles_parse_by_name() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        assert!(Role::ReadOnly < Role::ReadWrite && Role::ReadWrite < Role::Admin);
    }
}
