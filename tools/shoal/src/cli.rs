//! The admin CLI: `shoal table|item|query|scan`, a thin layer over shoal-client's blocking
//! client against a router's native protocol port. Items go in and come out as DynamoDB JSON.
//!
//! Credentials: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, as the AWS SDKs read them
//! (and as `shoal auth create-key` prints them); each connection authenticates with them
//! (net/protocol/FORMAT.md, "Authentication"). Without them no handshake is made, which only
//! a router with `--auth none` (as under `shoal dev`) serves.
//!
//! Exit status: 0 on success; 1 when the server answers with an error (printed as
//! `ExceptionName: message`) or cannot be reached; 2 on bad input (bad JSON, a bad key
//! specification, missing arguments: clap's usage errors are 2 as well).

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Map, Value as Json, json};
use shoal_client::{
    ACCESS_KEY_ID_VARIABLE, Client, ClientConfig, ClientError, Credentials, RetryPolicy,
    SECRET_ACCESS_KEY_VARIABLE, TlsSettings,
};

/// The dev cluster's native port (`shoal dev` with its default `--port 8000`).
const ENDPOINT_DEFAULT: &str = "127.0.0.1:8001";
/// One CLI call's attempts together may take this long.
const CALL_DEADLINE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Scan pages fetched at most when printing a whole table (a bound on the loop; a table
/// bigger than this many pages needs `--limit` and `--start-key`... or the SDKs).
const SCAN_PAGES_MAX: usize = 100_000;
/// Exit status for bad input.
const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Args, Clone)]
pub struct Endpoint {
    /// The router's native protocol address.
    #[arg(long, default_value = ENDPOINT_DEFAULT)]
    pub endpoint: SocketAddr,
    /// Speak TLS to the native port (a router with --tls-cert, or `shoal dev --tls`), trusting
    /// the certificates of this PEM file (for `shoal dev --tls`: <data-dir>/tls/cert.pem).
    #[arg(long)]
    pub ca_bundle: Option<std::path::PathBuf>,
    /// The name the router's certificate must be valid for; default: --endpoint's IP address.
    #[arg(long, requires = "ca_bundle")]
    pub tls_server_name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Create a table (on-demand unless capacities are given).
    Create(TableCreate),
    /// Print a table's description.
    Describe(TableName),
    /// Print the table names, one a line.
    List(Endpoint),
    /// Delete a table.
    Delete(TableName),
}

#[derive(Debug, Args)]
pub struct TableCreate {
    /// The table's name.
    #[arg(long)]
    pub name: String,
    /// The partition key: NAME:TYPE, TYPE one of S, N, B (e.g. year:N).
    #[arg(long)]
    pub partition_key: String,
    /// The sort key: NAME:TYPE.
    #[arg(long)]
    pub sort_key: Option<String>,
    /// Provisioned read capacity units (with --write-capacity); on-demand without.
    #[arg(long, requires = "write_capacity")]
    pub read_capacity: Option<u64>,
    /// Provisioned write capacity units (with --read-capacity).
    #[arg(long, requires = "read_capacity")]
    pub write_capacity: Option<u64>,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, Args)]
pub struct TableName {
    /// The table's name.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, Subcommand)]
pub enum ItemCommand {
    /// Write an item (DynamoDB JSON).
    Put(ItemPut),
    /// Print the item with this key, or nothing when there is none.
    Get(ItemGet),
    /// Apply an update expression and print the updated item.
    Update(ItemUpdate),
    /// Delete the item with this key.
    Delete(ItemDelete),
}

/// The placeholders of the expressions of any command.
#[derive(Debug, Args, Clone)]
pub struct Placeholders {
    /// ExpressionAttributeValues as DynamoDB JSON, e.g. '{":y":{"N":"2001"}}'.
    #[arg(long)]
    pub values: Option<String>,
    /// ExpressionAttributeNames as JSON, e.g. '{"#t":"title"}'.
    #[arg(long)]
    pub names: Option<String>,
}

/// The condition of a write (put, update, delete), with the placeholders. Reads take no
/// condition: a query has --key-condition and --filter, a scan --filter.
#[derive(Debug, Args, Clone)]
pub struct Expressions {
    /// A condition expression the write must satisfy.
    #[arg(long)]
    pub condition: Option<String>,
    #[command(flatten)]
    pub placeholders: Placeholders,
}

#[derive(Debug, Args)]
pub struct ItemPut {
    /// The table's name.
    #[arg(long)]
    pub table: String,
    /// The item, DynamoDB JSON.
    #[arg(long)]
    pub item: String,
    #[command(flatten)]
    pub expressions: Expressions,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, Args)]
pub struct ItemGet {
    /// The table's name.
    #[arg(long)]
    pub table: String,
    /// The key, DynamoDB JSON.
    #[arg(long)]
    pub key: String,
    /// A strongly consistent read.
    #[arg(long)]
    pub consistent: bool,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, Args)]
pub struct ItemDelete {
    /// The table's name.
    #[arg(long)]
    pub table: String,
    /// The key, DynamoDB JSON.
    #[arg(long)]
    pub key: String,
    #[command(flatten)]
    pub expressions: Expressions,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, Args)]
pub struct ItemUpdate {
    /// The table's name.
    #[arg(long)]
    pub table: String,
    /// The key, DynamoDB JSON.
    #[arg(long)]
    pub key: String,
    /// The update expression, e.g. 'SET rating = :r'.
    #[arg(long)]
    pub update: String,
    #[command(flatten)]
    pub expressions: Expressions,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, Args)]
pub struct QueryOptions {
    /// The table's name.
    #[arg(long)]
    pub table: String,
    /// The key condition expression, e.g. 'year = :y'.
    #[arg(long)]
    pub key_condition: String,
    /// A filter expression.
    #[arg(long)]
    pub filter: Option<String>,
    /// Items printed at most.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Strongly consistent reads.
    #[arg(long)]
    pub consistent: bool,
    /// Newest sort keys first.
    #[arg(long)]
    pub descending: bool,
    #[command(flatten)]
    pub placeholders: Placeholders,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, Args)]
pub struct ScanOptions {
    /// The table's name.
    #[arg(long)]
    pub table: String,
    /// A filter expression.
    #[arg(long)]
    pub filter: Option<String>,
    /// Items printed at most.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Strongly consistent reads.
    #[arg(long)]
    pub consistent: bool,
    #[command(flatten)]
    pub placeholders: Placeholders,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

/// How a command failed.
enum Failure {
    BadInput(String),
    Client(ClientError),
    /// Standard output could not be written: closed by its reader (`shoal scan | head`), which
    /// ends the command quietly, or another I/O error.
    Output(std::io::Error),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure::Client(error)
    }
}

fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::BadInput(message)) => {
            eprintln!("shoal: {message}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(Failure::Client(ClientError::Connect(reason))) => {
            eprintln!("shoal: cannot reach the router ({reason}); is `shoal dev` running?");
            ExitCode::FAILURE
        }
        Err(Failure::Client(ClientError::InvalidRequest(reason))) => {
            eprintln!("shoal: {reason}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(Failure::Client(
            ClientError::ConnectionLost(reason) | ClientError::Protocol(reason),
        )) if answered_http(&reason) => {
            eprintln!(
                "shoal: the endpoint answered in HTTP: it is the router's DynamoDB HTTP port; \
                 --endpoint takes the native protocol port, the HTTP port + 1 \
                 ({ENDPOINT_DEFAULT} for `shoal dev`)"
            );
            ExitCode::FAILURE
        }
        Err(Failure::Client(error @ ClientError::Tls(_))) => {
            eprintln!(
                "shoal: {error}; --ca-bundle must name the CA (or the self-signed certificate) that signed the router's certificate"
            );
            ExitCode::FAILURE
        }
        Err(Failure::Client(error))
            if error.exception_name() == Some("MissingAuthenticationTokenException") =>
        {
            eprintln!(
                "{error}\nshoal: this router verifies access keys: set {ACCESS_KEY_ID_VARIABLE} and {SECRET_ACCESS_KEY_VARIABLE} (`shoal auth create-key` prints them)"
            );
            ExitCode::FAILURE
        }
        Err(Failure::Client(error)) => {
            // DynamoDB errors print as `ExceptionName: message`.
            eprintln!("{error}");
            ExitCode::FAILURE
        }
        Err(Failure::Output(error)) if error.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Output(error)) => {
            eprintln!("shoal: cannot write the output: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Whether a failed call read an HTTP response as a native frame: the answer's first bytes,
/// "HTTP", taken as the frame's little-endian length, are what the client reports.
fn answered_http(reason: &str) -> bool {
    const HTTP_AS_FRAME_LENGTH: u32 = u32::from_le_bytes(*b"HTTP");
    reason.contains("bad frame") && reason.contains(&HTTP_AS_FRAME_LENGTH.to_string())
}

fn connect(endpoint: &Endpoint) -> Result<Client, Failure> {
    let mut config = ClientConfig::new(endpoint.endpoint);
    config.connections = 1;
    config.connect_timeout = CONNECT_TIMEOUT;
    config.retry = RetryPolicy {
        deadline: CALL_DEADLINE,
        ..RetryPolicy::default()
    };
    if let Some(ca_bundle) = &endpoint.ca_bundle {
        let server_name = endpoint
            .tls_server_name
            .clone()
            .unwrap_or_else(|| endpoint.endpoint.ip().to_string());
        config.tls =
            Some(TlsSettings::from_ca_bundle(ca_bundle, &server_name).map_err(Failure::BadInput)?);
    }
    // The key the AWS SDKs would use (what `shoal auth create-key` prints as `export` lines):
    // one pair of variables serves the HTTP API and this port.
    config.credentials = Credentials::from_env();
    Ok(Client::connect(config)?)
}

/// Parses `text` (the value of `--flag`) as a JSON object.
fn json_object(flag: &str, text: &str) -> Result<Json, Failure> {
    match serde_json::from_str::<Json>(text) {
        Ok(value @ Json::Object(_)) => Ok(value),
        Ok(_) => Err(Failure::BadInput(format!("--{flag} must be a JSON object"))),
        Err(error) => Err(Failure::BadInput(format!(
            "--{flag} is not valid JSON: {error}"
        ))),
    }
}

/// Adds the condition and placeholders given on the command line to `body`.
fn add_expressions(body: &mut Json, expressions: &Expressions) -> Result<(), Failure> {
    if let Some(condition) = &expressions.condition {
        body["ConditionExpression"] = json!(condition);
    }
    add_placeholders(body, &expressions.placeholders)
}

/// Adds the placeholders given on the command line to `body`.
fn add_placeholders(body: &mut Json, placeholders: &Placeholders) -> Result<(), Failure> {
    if let Some(values) = &placeholders.values {
        body["ExpressionAttributeValues"] = json_object("values", values)?;
    }
    if let Some(names) = &placeholders.names {
        body["ExpressionAttributeNames"] = json_object("names", names)?;
    }
    Ok(())
}

/// `NAME:TYPE` into (name, type).
fn key_attribute(flag: &str, text: &str) -> Result<(String, String), Failure> {
    let bad = || {
        Failure::BadInput(format!(
            "--{flag} {text:?}: expected NAME:TYPE with TYPE one of S, N, B (e.g. year:N)"
        ))
    };
    let (name, kind) = text.rsplit_once(':').ok_or_else(bad)?;
    if name.is_empty() || !matches!(kind, "S" | "N" | "B") {
        return Err(bad());
    }
    Ok((name.to_string(), kind.to_string()))
}

/// Writes one line to standard output; a reader that closed it ends the command (quietly,
/// see [`finish`]) instead of panicking as `println!` does.
fn print_line(text: &dyn std::fmt::Display) -> Result<(), Failure> {
    writeln!(std::io::stdout().lock(), "{text}").map_err(Failure::Output)
}

fn print_json(value: &Json) -> Result<(), Failure> {
    print_line(value)
}

fn print_pretty(value: &Json) -> Result<(), Failure> {
    match serde_json::to_string_pretty(value) {
        Ok(text) => print_line(&text),
        Err(_) => print_line(value),
    }
}

pub fn run_table(command: &TableCommand) -> ExitCode {
    finish(table(command))
}

fn table(command: &TableCommand) -> Result<(), Failure> {
    match command {
        TableCommand::Create(create) => {
            let (hash_name, hash_type) = key_attribute("partition-key", &create.partition_key)?;
            let mut definitions =
                vec![json!({"AttributeName": hash_name, "AttributeType": hash_type})];
            let mut schema = vec![json!({"AttributeName": hash_name, "KeyType": "HASH"})];
            if let Some(sort_key) = &create.sort_key {
                let (range_name, range_type) = key_attribute("sort-key", sort_key)?;
                if range_name == hash_name {
                    return Err(Failure::BadInput(
                        "--sort-key must name another attribute than --partition-key".to_string(),
                    ));
                }
                definitions.push(json!({"AttributeName": range_name, "AttributeType": range_type}));
                schema.push(json!({"AttributeName": range_name, "KeyType": "RANGE"}));
            }
            let mut body = json!({
                "TableName": create.name,
                "AttributeDefinitions": definitions,
                "KeySchema": schema,
            });
            match (create.read_capacity, create.write_capacity) {
                (Some(read), Some(write)) => {
                    body["BillingMode"] = json!("PROVISIONED");
                    body["ProvisionedThroughput"] =
                        json!({"ReadCapacityUnits": read, "WriteCapacityUnits": write});
                }
                _ => body["BillingMode"] = json!("PAY_PER_REQUEST"),
            }
            let created = connect(&create.endpoint)?.create_table(&body)?;
            print_pretty(&created["TableDescription"])?;
        }
        TableCommand::Describe(table) => {
            let described =
                connect(&table.endpoint)?.describe_table(&json!({"TableName": table.name}))?;
            print_pretty(&described["Table"])?;
        }
        TableCommand::List(endpoint) => {
            let client = connect(endpoint)?;
            let mut start: Option<Json> = None;
            loop {
                let mut body = json!({});
                if let Some(start) = start.take() {
                    body["ExclusiveStartTableName"] = start;
                }
                let page = client.list_tables(&body)?;
                for name in page["TableNames"].as_array().into_iter().flatten() {
                    if let Some(name) = name.as_str() {
                        print_line(&name)?;
                    }
                }
                match page.get("LastEvaluatedTableName") {
                    Some(next) => start = Some(next.clone()),
                    None => break,
                }
            }
        }
        TableCommand::Delete(table) => {
            let deleted =
                connect(&table.endpoint)?.delete_table(&json!({"TableName": table.name}))?;
            print_pretty(&deleted["TableDescription"])?;
        }
    }
    Ok(())
}

pub fn run_item(command: &ItemCommand) -> ExitCode {
    finish(item(command))
}

fn item(command: &ItemCommand) -> Result<(), Failure> {
    match command {
        ItemCommand::Put(put) => {
            let mut body = json!({"TableName": put.table, "Item": json_object("item", &put.item)?});
            add_expressions(&mut body, &put.expressions)?;
            connect(&put.endpoint)?.put_item(&body)?;
        }
        ItemCommand::Get(get) => {
            let body = json!({
                "TableName": get.table,
                "Key": json_object("key", &get.key)?,
                "ConsistentRead": get.consistent,
            });
            let got = connect(&get.endpoint)?.get_item(&body)?;
            match got.get("Item") {
                Some(item) => print_json(item)?,
                None => eprintln!("shoal: no item with this key"),
            }
        }
        ItemCommand::Update(update) => {
            let mut body = json!({
                "TableName": update.table,
                "Key": json_object("key", &update.key)?,
                "UpdateExpression": update.update,
                "ReturnValues": "ALL_NEW",
            });
            add_expressions(&mut body, &update.expressions)?;
            let updated = connect(&update.endpoint)?.update_item(&body)?;
            print_json(
                updated
                    .get("Attributes")
                    .unwrap_or(&Json::Object(Map::new())),
            )?;
        }
        ItemCommand::Delete(delete) => {
            let mut body =
                json!({"TableName": delete.table, "Key": json_object("key", &delete.key)?});
            add_expressions(&mut body, &delete.expressions)?;
            connect(&delete.endpoint)?.delete_item(&body)?;
        }
    }
    Ok(())
}

/// Runs a Query or Scan page after page, printing each item on a line, until the end or
/// `limit` items.
fn print_pages(
    client: &Client,
    mut body: Json,
    limit: Option<u64>,
    page: impl Fn(&Client, &Json) -> Result<Json, ClientError>,
) -> Result<(), Failure> {
    let mut printed: u64 = 0;
    for _ in 0..SCAN_PAGES_MAX {
        if let Some(limit) = limit {
            body["Limit"] = json!(limit - printed);
        }
        let result = page(client, &body)?;
        for item in result["Items"].as_array().into_iter().flatten() {
            print_json(item)?;
            printed += 1;
        }
        if limit.is_some_and(|limit| printed >= limit) {
            return Ok(());
        }
        match result.get("LastEvaluatedKey") {
            Some(next) => body["ExclusiveStartKey"] = next.clone(),
            None => return Ok(()),
        }
    }
    Err(Failure::BadInput(format!(
        "stopped after {SCAN_PAGES_MAX} pages; use --limit"
    )))
}

pub fn run_query(options: &QueryOptions) -> ExitCode {
    finish((|| {
        if options.limit == Some(0) {
            return Err(Failure::BadInput("--limit must be at least 1".to_string()));
        }
        let mut body = json!({
            "TableName": options.table,
            "KeyConditionExpression": options.key_condition,
            "ConsistentRead": options.consistent,
            "ScanIndexForward": !options.descending,
        });
        if let Some(filter) = &options.filter {
            body["FilterExpression"] = json!(filter);
        }
        add_placeholders(&mut body, &options.placeholders)?;
        let client = connect(&options.endpoint)?;
        print_pages(&client, body, options.limit, |client, body| {
            client.query(body)
        })
    })())
}

pub fn run_scan(options: &ScanOptions) -> ExitCode {
    finish((|| {
        if options.limit == Some(0) {
            return Err(Failure::BadInput("--limit must be at least 1".to_string()));
        }
        let mut body = json!({"TableName": options.table, "ConsistentRead": options.consistent});
        if let Some(filter) = &options.filter {
            body["FilterExpression"] = json!(filter);
        }
        add_placeholders(&mut body, &options.placeholders)?;
        let client = connect(&options.endpoint)?;
        print_pages(&client, body, options.limit, |client, body| {
            client.scan(body)
        })
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_attributes_parse_name_and_type() {
        assert!(
            matches!(key_attribute("k", "year:N"), Ok((name, kind)) if name == "year" && kind == "N")
        );
        assert!(matches!(key_attribute("k", "a:b:S"), Ok((name, _)) if name == "a:b"));
        for bad in ["year", "year:X", ":S", "year:"] {
            assert!(
                matches!(key_attribute("k", bad), Err(Failure::BadInput(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_http_answer_is_recognised() {
        // What the client reports when the endpoint is the router's HTTP port.
        assert!(answered_http(
            "bad frame: frame body of 1347703880 bytes is over the limit of 16842752"
        ));
        assert!(!answered_http(
            "bad frame: frame body of 99999999 bytes is over the limit of 16842752"
        ));
    }

    #[test]
    fn reads_offer_no_write_condition() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: Commands,
        }
        #[derive(clap::Subcommand)]
        enum Commands {
            Query(QueryOptions),
            Scan(ScanOptions),
            #[command(subcommand)]
            Item(ItemCommand),
        }
        let mut cli = Cli::command();
        cli.build();
        let flags = |command: &clap::Command| -> Vec<String> {
            command
                .get_arguments()
                .filter_map(|argument| argument.get_long().map(str::to_string))
                .collect()
        };
        for path in [&["query"][..], &["scan"], &["item", "get"]] {
            let mut command = &cli;
            for name in path {
                command = command.find_subcommand(name).unwrap();
            }
            assert!(
                !flags(command).contains(&"condition".to_string()),
                "{path:?}"
            );
            // Every flag says what it is for.
            for argument in command.get_arguments() {
                assert!(
                    argument.get_help().is_some(),
                    "{path:?} --{:?}",
                    argument.get_long()
                );
            }
        }
        let delete = cli
            .find_subcommand("item")
            .and_then(|item| item.find_subcommand("delete"))
            .unwrap();
        assert!(flags(delete).contains(&"condition".to_string()));
    }

    #[test]
    fn json_flags_must_be_objects() {
        assert!(json_object("item", r#"{"a":{"S":"b"}}"#).is_ok());
        assert!(matches!(
            json_object("item", "[1]"),
            Err(Failure::BadInput(_))
        ));
        assert!(matches!(
            json_object("item", "{nope"),
            Err(Failure::BadInput(_))
        ));
    }
}
