//! The systems under load, behind one blocking interface: a call returns when the system has
//! answered (for a write: acknowledged durably, by each system's own contract).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};
use shoal_client::{Client, ClientConfig, ClientError};

/// The table every Shoal run uses (hash key `pk`, a string).
pub const SHOAL_TABLE: &str = "usertable";
/// The benchmark table's provisioned capacity on Shoal. Shoal, like DynamoDB, sizes a table by
/// its capacity (1,000 write and 3,000 read units a second per partition) and admits no more
/// than that per partition; an on-demand table starts with 4 partitions and would cap every
/// put cell at about 2,000 puts/s of these 2-unit items, which measures admission control, not
/// the cluster. 16,000 write units give 16 partitions (8,000 puts/s); reads are capped only by
/// the per-table maximum.
pub const SHOAL_TABLE_WRITE_UNITS: u64 = 16_000;
pub const SHOAL_TABLE_READ_UNITS: u64 = 40_000;

/// The CreateTable request of the benchmark table: provisioned as above for Shoal, on demand
/// for peers (which do not admit by capacity).
pub fn create_table_request(
    table: &str,
    provisioned: bool,
    global_indexes: u8,
    stream: Option<&str>,
) -> Json {
    let mut request = json!({
        "TableName": table,
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
    });
    let throughput = json!({
        "ReadCapacityUnits": SHOAL_TABLE_READ_UNITS,
        "WriteCapacityUnits": SHOAL_TABLE_WRITE_UNITS,
    });
    if provisioned {
        request["BillingMode"] = json!("PROVISIONED");
        request["ProvisionedThroughput"] = throughput.clone();
    }
    if global_indexes > 0 {
        let mut definitions = vec![json!({"AttributeName": "pk", "AttributeType": "S"})];
        let mut indexes = Vec::new();
        for number in 0..global_indexes {
            let field = format!("field{number}");
            definitions.push(json!({"AttributeName": field, "AttributeType": "S"}));
            // The first index holds keys only, the second whole records: the two ends of
            // what an index costs per write.
            let projection = if number == 0 { "KEYS_ONLY" } else { "ALL" };
            let mut index = json!({
                "IndexName": format!("by_{field}"),
                "KeySchema": [{"AttributeName": field, "KeyType": "HASH"}],
                "Projection": {"ProjectionType": projection},
            });
            if provisioned {
                index["ProvisionedThroughput"] = throughput.clone();
            }
            indexes.push(index);
        }
        request["AttributeDefinitions"] = Json::Array(definitions);
        request["GlobalSecondaryIndexes"] = Json::Array(indexes);
    }
    if let Some(view) = stream {
        request["StreamSpecification"] = json!({"StreamEnabled": true, "StreamViewType": view});
    }
    request
}

/// Global secondary indexes a benchmark table may have (`--global-indexes`): one per field it
/// indexes (field0, field1).
pub const GLOBAL_INDEXES_MAX: u8 = 2;

/// The benchmark table of a run with `global_indexes` GSIs and a stream of view `stream`: its
/// own table, so that runs with and without indexes or a stream can share a cluster.
pub fn table_name(global_indexes: u8, stream: Option<&str>) -> String {
    let mut name = SHOAL_TABLE.to_string();
    if global_indexes > 0 {
        name.push_str(&format!("_gsi{global_indexes}"));
    }
    if let Some(view) = stream {
        name.push_str(&format!("_stream_{}", view.to_ascii_lowercase()));
    }
    name
}

/// A record as a DynamoDB item: the key in `pk`, field i in `field<i>` (every DynamoDB-speaking
/// target writes the same item).
pub fn record_item(key: &str, fields: &[&str]) -> Json {
    let mut item = Map::new();
    item.insert("pk".to_string(), json!({ "S": key }));
    for (index, field) in fields.iter().enumerate() {
        item.insert(format!("field{index}"), json!({ "S": field }));
    }
    Json::Object(item)
}

/// The PutItem request of the whole record `key`.
pub fn put_request(table: &str, key: &str, fields: &[&str]) -> Json {
    json!({ "TableName": table, "Item": record_item(key, fields) })
}

/// The GetItem request of `key`.
pub fn get_request(table: &str, key: &str, strong: bool) -> Json {
    json!({
        "TableName": table,
        "Key": { "pk": { "S": key } },
        "ConsistentRead": strong,
    })
}

/// YCSB E's short scan: up to `count` items after `start_key` in the table's own order.
pub fn scan_request(table: &str, start_key: &str, count: usize) -> Json {
    json!({
        "TableName": table,
        "ExclusiveStartKey": { "pk": { "S": start_key } },
        "Limit": count,
    })
}

/// Items in a Scan answer.
pub fn scanned_items(response: &Json) -> usize {
    response["Items"].as_array().map_or(0, Vec::len)
}

/// How long `prepare` waits for a system that is still starting.
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(60);
const PREPARE_RETRY_INTERVAL: Duration = Duration::from_millis(250);

/// Why an operation failed, by kind (the JSON counts errors by this name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError(pub String);

pub trait Target: Send + Sync {
    fn name(&self) -> &'static str;
    /// Makes the system ready for the workload (creates the table); idempotent; waits while
    /// the system starts, at most `PREPARE_TIMEOUT`.
    fn prepare(&self) -> Result<(), String>;
    /// Writes the whole record `key` (its fields, in order).
    fn put(&self, key: &str, fields: &[&str]) -> Result<(), OpError>;
    /// Reads the record `key`: strongly (linearizable) or eventually consistent (Shoal's
    /// eventually consistent read, etcd's serializable read). Returns whether it exists.
    fn get(&self, key: &str, strong: bool) -> Result<bool, OpError>;
    /// Reads up to `count` records after `start_key` in the system's own key order (YCSB E's
    /// short scan: DynamoDB Scan from `ExclusiveStartKey` with `Limit`; an etcd range from
    /// the key). Returns how many records came back.
    fn scan(&self, start_key: &str, count: usize) -> Result<usize, OpError>;
    /// Moves `amount` from the first of `keys` to each of the others in one transaction
    /// (TransactWriteItems: the debit conditional on the record existing, the credits
    /// unconditional). Systems without transactions answer `Unsupported`.
    fn transfer(&self, keys: &[String], amount: u64) -> Result<(), OpError> {
        let _ = (keys, amount);
        Err(OpError("Unsupported".to_string()))
    }
}

/// The TransactWriteItems request of a transfer of `amount` from `keys[0]` to each other key
/// (a numeric `balance` attribute, added to the record).
pub fn transfer_request(table: &str, keys: &[String], amount: u64) -> Json {
    let actions: Vec<Json> = keys
        .iter()
        .enumerate()
        .map(|(position, key)| {
            let mut update = json!({
                "TableName": table,
                "Key": { "pk": { "S": key } },
                "UpdateExpression": "ADD balance :amount",
                "ExpressionAttributeValues": {
                    ":amount": { "N": if position == 0 {
                        format!("-{}", amount * (keys.len() as u64 - 1))
                    } else {
                        amount.to_string()
                    } },
                },
            });
            if position == 0 {
                update["ConditionExpression"] = json!("attribute_exists(pk)");
            }
            json!({ "Update": update })
        })
        .collect();
    json!({ "TransactItems": actions })
}

/// Retries `attempt` until it succeeds or `PREPARE_TIMEOUT` passes.
pub fn retry_until_ready(mut attempt: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let deadline = Instant::now() + PREPARE_TIMEOUT;
    loop {
        match attempt() {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("not ready after {PREPARE_TIMEOUT:?}: {error}"));
            }
            Err(_) => std::thread::sleep(PREPARE_RETRY_INTERVAL),
        }
    }
}

/// Retries `connect` until it succeeds or `PREPARE_TIMEOUT` passes (a system still starting).
pub fn retry_connect<T>(mut connect: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + PREPARE_TIMEOUT;
    loop {
        match connect() {
            Ok(connected) => return Ok(connected),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("cannot connect in {PREPARE_TIMEOUT:?}: {error}"));
            }
            Err(_) => std::thread::sleep(PREPARE_RETRY_INTERVAL),
        }
    }
}

/// Shoal through its native protocol (shoal-client's blocking, pooled, pipelined `Client`).
pub struct ShoalNative {
    client: Client,
}

fn client_error_kind(error: &ClientError) -> OpError {
    OpError(match error {
        ClientError::Service { type_name, .. } => type_name.clone(),
        ClientError::Connect(_) => "Connect".to_string(),
        ClientError::ConnectionLost(_) => "ConnectionLost".to_string(),
        ClientError::Timeout => "Timeout".to_string(),
        ClientError::InvalidRequest(_) => "InvalidRequest".to_string(),
        ClientError::Protocol(_) => "Protocol".to_string(),
        ClientError::Tls(_) => "Tls".to_string(),
    })
}

impl ShoalNative {
    /// `connections`: the pool size (1 to shoal-client's `CONNECTIONS_MAX`).
    pub fn connect(endpoint: SocketAddr, connections: usize) -> Result<ShoalNative, String> {
        let mut config = ClientConfig::new(endpoint);
        config.connections = connections.clamp(1, shoal_client::limits::CONNECTIONS_MAX);
        // A router that verifies keys (not `shoal dev`) takes the key the AWS variables name,
        // as the CLI does; each connection authenticates once, outside the measured calls.
        config.credentials = shoal_client::Credentials::from_env();
        let client = Client::connect(config).map_err(|error| format!("{endpoint}: {error}"))?;
        Ok(ShoalNative { client })
    }
}

impl Target for ShoalNative {
    fn name(&self) -> &'static str {
        "shoal"
    }

    fn prepare(&self) -> Result<(), String> {
        retry_until_ready(|| {
            let created =
                self.client
                    .create_table(&create_table_request(SHOAL_TABLE, true, 0, None));
            match created {
                Ok(_) => Ok(()),
                Err(error) if error.exception_name() == Some("ResourceInUseException") => Ok(()),
                Err(error) => Err(error.to_string()),
            }
        })?;
        // The table may take a moment to accept writes on every node.
        retry_until_ready(|| {
            self.put("shoal-bench-ready", &["ready"])
                .map_err(|error| error.0)
        })
    }

    fn put(&self, key: &str, fields: &[&str]) -> Result<(), OpError> {
        self.client
            .put_item(&put_request(SHOAL_TABLE, key, fields))
            .map(|_| ())
            .map_err(|error| client_error_kind(&error))
    }

    fn get(&self, key: &str, strong: bool) -> Result<bool, OpError> {
        let response = self
            .client
            .get_item(&get_request(SHOAL_TABLE, key, strong))
            .map_err(|error| client_error_kind(&error))?;
        Ok(response.get("Item").is_some())
    }

    fn scan(&self, start_key: &str, count: usize) -> Result<usize, OpError> {
        let response = self
            .client
            .scan(&scan_request(SHOAL_TABLE, start_key, count))
            .map_err(|error| client_error_kind(&error))?;
        Ok(scanned_items(&response))
    }
}

#[cfg(feature = "etcd")]
pub use etcd::Etcd;

#[cfg(feature = "etcd")]
mod etcd {
    use super::{OpError, Target, retry_until_ready};
    use etcd_client::{Client, GetOptions};

    /// Worker threads of the runtime that drives etcd-client (tonic needs tokio).
    const RUNTIME_THREADS: usize = 2;

    /// etcd v3 through etcd-client (gRPC). Puts are etcd's default: acknowledged after a quorum
    /// has fdatasync'ed the entry. Strong reads are linearizable; eventual ones serializable.
    pub struct Etcd {
        runtime: tokio::runtime::Runtime,
        client: Client,
    }

    fn kind(error: &etcd_client::Error) -> OpError {
        OpError(match error {
            etcd_client::Error::GRpcStatus(status) => format!("grpc:{:?}", status.code()),
            etcd_client::Error::TransportError(_) => "transport".to_string(),
            _ => "etcd".to_string(),
        })
    }

    impl Etcd {
        pub fn connect(endpoints: &[String]) -> Result<Etcd, String> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(RUNTIME_THREADS)
                .enable_all()
                .build()
                .map_err(|error| format!("tokio runtime: {error}"))?;
            let client = runtime
                .block_on(Client::connect(endpoints, None))
                .map_err(|error| format!("etcd {endpoints:?}: {error}"))?;
            Ok(Etcd { runtime, client })
        }
    }

    impl Target for Etcd {
        fn name(&self) -> &'static str {
            "etcd"
        }

        fn prepare(&self) -> Result<(), String> {
            retry_until_ready(|| {
                self.put("shoal-bench-ready", &["ready"])
                    .map_err(|error| error.0)
            })
        }

        fn put(&self, key: &str, fields: &[&str]) -> Result<(), OpError> {
            let value = fields.concat();
            let mut client = self.client.kv_client();
            self.runtime
                .block_on(client.put(key, value, None))
                .map(|_| ())
                .map_err(|error| kind(&error))
        }

        fn get(&self, key: &str, strong: bool) -> Result<bool, OpError> {
            let options = (!strong).then(|| GetOptions::new().with_serializable());
            let mut client = self.client.kv_client();
            let response = self
                .runtime
                .block_on(client.get(key, options))
                .map_err(|error| kind(&error))?;
            Ok(!response.kvs().is_empty())
        }

        fn scan(&self, start_key: &str, count: usize) -> Result<usize, OpError> {
            // The keys after `start_key` (exclusive, as DynamoDB's ExclusiveStartKey: the
            // range starts at the key with a 0 byte appended), linearizable like strong reads.
            let options = GetOptions::new()
                .with_from_key()
                .with_limit(i64::try_from(count).unwrap_or(i64::MAX));
            let mut client = self.client.kv_client();
            let response = self
                .runtime
                .block_on(client.get(format!("{start_key}\0"), Some(options)))
                .map_err(|error| kind(&error))?;
            Ok(response.kvs().len())
        }
    }
}
