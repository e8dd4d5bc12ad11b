//! The DynamoDB JSON 1.0 API over HTTP/1.1, as an AWS SDK speaks it: Shoal's HTTP front door
//! (`shoal dev --port P`) or any other DynamoDB implementation (dynalite). A small blocking
//! client over std's `TcpStream`: the generator's clients are threads, and a crate with its own
//! runtime would put that runtime's scheduling into every measurement.
//!
//! Requests carry a well-formed SigV4 `Authorization` header with fixed credentials (`shoal dev`
//! without `--auth` and dynalite check only its shape; a `shoal router` verifying signatures
//! would refuse them) so that the request is what an SDK would send, byte for byte close enough
//! that the server does the same work.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value as Json;

use super::targets::{
    OpError, Target, create_table_request, get_request, put_request, retry_until_ready,
    scan_request, scanned_items, transfer_request,
};

/// A response header section larger than this is a broken server, not a benchmark result.
const RESPONSE_HEADER_BYTES_MAX: usize = 16 * 1024;
/// The largest response body the generator accepts (a 1 MB Query page and change).
const RESPONSE_BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// A request that has not been answered in this long counts as a `Timeout` error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Fixed, syntactically valid SigV4 credentials; the servers measured do not check the
/// signature.
const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKIDSHOALBENCH/20260101/us-east-1/\
    dynamodb/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
    Signature=0000000000000000000000000000000000000000000000000000000000000000";
const AMZ_DATE: &str = "20260101T000000Z";

/// One keep-alive connection.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(endpoint: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&endpoint, REQUEST_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        Ok(Connection {
            reader: BufReader::new(stream),
        })
    }

    /// Sends one request and reads its answer: (status, body).
    fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        self.reader.get_mut().write_all(request)?;
        let mut head = Vec::new();
        loop {
            let before = head.len();
            let read = (&mut self.reader)
                .take((RESPONSE_HEADER_BYTES_MAX - before) as u64)
                .read_until(b'\n', &mut head)?;
            if read == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before the response head ended",
                ));
            }
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
            if head.len() >= RESPONSE_HEADER_BYTES_MAX {
                return Err(std::io::Error::other("response head too large"));
            }
        }
        let head = String::from_utf8_lossy(&head);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other("malformed status line"))?;
        let mut content_length = None;
        let mut chunked = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        let body = if chunked {
            self.read_chunked()?
        } else {
            let length =
                content_length.ok_or_else(|| std::io::Error::other("response without a length"))?;
            if length > RESPONSE_BODY_BYTES_MAX {
                return Err(std::io::Error::other("response body too large"));
            }
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body)?;
            body
        };
        Ok((status, body))
    }

    fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let mut size_line = String::new();
            self.reader.read_line(&mut size_line)?;
            let size =
                usize::from_str_radix(size_line.trim().split(';').next().unwrap_or_default(), 16)
                    .map_err(|_| std::io::Error::other("malformed chunk size"))?;
            if body.len() + size > RESPONSE_BODY_BYTES_MAX {
                return Err(std::io::Error::other("response body too large"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            self.reader.read_exact(&mut crlf)?;
            if size == 0 {
                return Ok(body);
            }
        }
    }
}

/// A DynamoDB-compatible endpoint; `name` tells the reports which system it is.
pub struct DynamoDbHttp {
    name: &'static str,
    /// Whether the benchmark table is created with provisioned capacity (Shoal) or on demand
    /// (peers); see `targets::create_table_request`.
    provisioned: bool,
    /// The table's global secondary indexes (`targets::create_table_request`), and its name.
    global_indexes: u8,
    /// The table's stream view type, when it has a stream.
    stream: Option<&'static str>,
    table: String,
    endpoint: SocketAddr,
    /// Idle keep-alive connections; a client thread takes one per request and gives it back.
    idle: Mutex<Vec<Connection>>,
}

impl DynamoDbHttp {
    /// Checks that `endpoint` accepts connections (a system still starting fails here).
    pub fn connect(
        name: &'static str,
        endpoint: SocketAddr,
        provisioned: bool,
    ) -> Result<DynamoDbHttp, String> {
        Self::connect_indexed(name, endpoint, provisioned, 0, None)
    }

    /// [`DynamoDbHttp::connect`] to a table of its own with `global_indexes` GSIs and a stream
    /// of view type `stream`.
    pub fn connect_indexed(
        name: &'static str,
        endpoint: SocketAddr,
        provisioned: bool,
        global_indexes: u8,
        stream: Option<&'static str>,
    ) -> Result<DynamoDbHttp, String> {
        let first = Connection::open(endpoint).map_err(|error| format!("{endpoint}: {error}"))?;
        Ok(DynamoDbHttp {
            name,
            provisioned,
            global_indexes,
            stream,
            table: crate::load::targets::table_name(global_indexes, stream),
            endpoint,
            idle: Mutex::new(vec![first]),
        })
    }

    fn request_bytes(&self, target: &str, body: &[u8]) -> Vec<u8> {
        let mut request = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-amz-json-1.0\r\n\
             X-Amz-Target: {target}\r\nX-Amz-Date: {AMZ_DATE}\r\n\
             Authorization: {AUTHORIZATION}\r\nContent-Length: {}\r\n\r\n",
            self.endpoint,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    }

    /// Calls `operation`; a DynamoDB error becomes its exception name (the part after `#`).
    fn call(&self, operation: &str, input: &Json) -> Result<Json, OpError> {
        self.call_target(&format!("DynamoDB_20120810.{operation}"), input)
    }

    /// Calls the operation `target` names (`X-Amz-Target`).
    fn call_target(&self, target: &str, input: &Json) -> Result<Json, OpError> {
        let body = serde_json::to_vec(input).map_err(|error| OpError(error.to_string()))?;
        let request = self.request_bytes(target, &body);
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let reused = pooled.is_some();
        let mut connection = match pooled {
            Some(connection) => connection,
            None => Connection::open(self.endpoint).map_err(|_| OpError("Connect".into()))?,
        };
        let answer = match connection.exchange(&request) {
            Ok(answer) => answer,
            // A keep-alive connection the server closed while it sat idle (dynalite closes
            // them after 5 s): the request never reached a handler, so sending it again on a
            // fresh connection is what an SDK does too.
            Err(_) if reused => {
                connection =
                    Connection::open(self.endpoint).map_err(|_| OpError("Connect".to_string()))?;
                connection.exchange(&request).map_err(io_error_kind)?
            }
            Err(error) => return Err(io_error_kind(error)),
        };
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(connection);
        }
        let (status, body) = answer;
        let value: Json = serde_json::from_slice(&body)
            .map_err(|_| OpError(format!("HTTP {status}: body is not JSON")))?;
        if status == 200 {
            return Ok(value);
        }
        let type_name = value["__type"].as_str().unwrap_or("unknown");
        let short = type_name.rsplit('#').next().unwrap_or(type_name);
        Err(OpError(short.to_string()))
    }
}

/// What reading a whole stream took (`DynamoDbHttp::read_stream`).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamReadReport {
    pub shards: usize,
    pub records: u64,
    /// The records' SizeBytes, summed.
    pub record_bytes: u64,
    pub seconds: f64,
    /// GetRecords calls made.
    pub calls: u64,
}

impl StreamReadReport {
    pub fn table_row(&self) -> String {
        let per_second = |count: f64| {
            if self.seconds > 0.0 {
                count / self.seconds
            } else {
                0.0
            }
        };
        format!(
            "stream read (GetRecords, Limit 1000, TRIM_HORIZON of {} shards): {} records, {:.1} MB in {:.2} s = {:.0} records/s, {:.1} MB/s, {} calls",
            self.shards,
            self.records,
            self.record_bytes as f64 / 1e6,
            self.seconds,
            per_second(self.records as f64),
            per_second(self.record_bytes as f64) / 1e6,
            self.calls
        )
    }

    pub fn to_json(&self) -> Json {
        serde_json::json!({
            "shards": self.shards,
            "records": self.records,
            "record_bytes": self.record_bytes,
            "seconds": self.seconds,
            "calls": self.calls,
        })
    }
}

/// Pages of one shard a stream read follows at most: a bound on the loop (1,000 records a page).
const STREAM_PAGES_PER_SHARD_MAX: u64 = 100_000;

impl DynamoDbHttp {
    fn streams_call(&self, operation: &str, input: &Json) -> Result<Json, String> {
        self.call_target(&format!("DynamoDBStreams_20120810.{operation}"), input)
            .map_err(|OpError(name)| format!("{operation}: {name}"))
    }

    /// Reads the benchmark table's stream from the start of every shard to its end (the
    /// records there when each shard's read began), one consumer, as fast as GetRecords
    /// answers: the stream's read throughput.
    pub fn read_stream(&self) -> Result<StreamReadReport, String> {
        let described = self
            .call(
                "DescribeTable",
                &serde_json::json!({"TableName": self.table}),
            )
            .map_err(|OpError(name)| format!("DescribeTable: {name}"))?;
        let arn = described["Table"]["LatestStreamArn"]
            .as_str()
            .ok_or("the benchmark table has no stream")?
            .to_string();
        let stream = self.streams_call("DescribeStream", &serde_json::json!({"StreamArn": arn}))?;
        let shards: Vec<String> = stream["StreamDescription"]["Shards"]
            .as_array()
            .map(|shards| {
                shards
                    .iter()
                    .filter_map(|shard| shard["ShardId"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let started = std::time::Instant::now();
        let mut report = StreamReadReport {
            shards: shards.len(),
            records: 0,
            record_bytes: 0,
            seconds: 0.0,
            calls: 0,
        };
        for shard in &shards {
            let request = serde_json::json!({
                "StreamArn": arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON",
            });
            let mut iterator = self.streams_call("GetShardIterator", &request)?["ShardIterator"]
                .as_str()
                .map(str::to_string);
            for _ in 0..STREAM_PAGES_PER_SHARD_MAX {
                let Some(current) = iterator.take() else {
                    break;
                };
                let page = self.streams_call(
                    "GetRecords",
                    &serde_json::json!({"ShardIterator": current, "Limit": 1000}),
                )?;
                report.calls += 1;
                let records = page["Records"].as_array().map_or(&[][..], Vec::as_slice);
                if records.is_empty() {
                    // An open shard read to its end (a closed one has no next iterator).
                    break;
                }
                report.records += records.len() as u64;
                report.record_bytes += records
                    .iter()
                    .filter_map(|record| record["dynamodb"]["SizeBytes"].as_u64())
                    .sum::<u64>();
                iterator = page["NextShardIterator"].as_str().map(str::to_string);
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}

fn io_error_kind(error: std::io::Error) -> OpError {
    OpError(match error.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "Timeout".to_string(),
        _ => "ConnectionLost".to_string(),
    })
}

impl Target for DynamoDbHttp {
    fn name(&self) -> &'static str {
        self.name
    }

    fn prepare(&self) -> Result<(), String> {
        retry_until_ready(|| {
            let created = self.call(
                "CreateTable",
                &create_table_request(
                    &self.table,
                    self.provisioned,
                    self.global_indexes,
                    self.stream,
                ),
            );
            match created {
                Ok(_) => Ok(()),
                Err(OpError(name)) if name == "ResourceInUseException" => Ok(()),
                Err(OpError(name)) => Err(name),
            }
        })?;
        // A new table is CREATING for a moment (dynalite: 500 ms by default).
        retry_until_ready(|| {
            self.put("shoal-bench-ready", &["ready"])
                .map_err(|error| error.0)
        })
    }

    fn put(&self, key: &str, fields: &[&str]) -> Result<(), OpError> {
        self.call("PutItem", &put_request(&self.table, key, fields))
            .map(|_| ())
    }

    fn get(&self, key: &str, strong: bool) -> Result<bool, OpError> {
        let response = self.call("GetItem", &get_request(&self.table, key, strong))?;
        Ok(response.get("Item").is_some())
    }

    fn scan(&self, start_key: &str, count: usize) -> Result<usize, OpError> {
        let response = self.call("Scan", &scan_request(&self.table, start_key, count))?;
        Ok(scanned_items(&response))
    }

    fn transfer(&self, keys: &[String], amount: u64) -> Result<(), OpError> {
        self.call(
            "TransactWriteItems",
            &transfer_request(&self.table, keys, amount),
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server that answers each request with the next canned response.
    fn canned_server(responses: Vec<String>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            for response in responses {
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                reader.get_mut().write_all(response.as_bytes()).unwrap();
            }
        });
        address
    }

    fn with_length(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn answers_errors_and_chunked_bodies_are_decoded() {
        let address = canned_server(vec![
            with_length("200 OK", r#"{"Item":{"pk":{"S":"user1"}}}"#),
            with_length(
                "400 Bad Request",
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"x"}"#,
            ),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\n{\"Ite\r\n16\r\nms\":[{},{}],\"Count\":2}\r\n0\r\n\r\n"
                .to_string(),
        ]);
        let target = DynamoDbHttp::connect("test", address, false).unwrap();
        assert_eq!(target.get("user1", true), Ok(true));
        assert_eq!(
            target.put("user1", &["x"]),
            Err(OpError("ResourceNotFoundException".to_string()))
        );
        assert_eq!(target.scan("user1", 2), Ok(2));
    }
}
