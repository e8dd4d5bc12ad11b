//! The HTTP/1.1 server: one accept loop per router core, one task per connection.
//!
//! A connection reads a request head (bounded by [`HEAD_BYTES_MAX`] and [`HEADERS_MAX`]), then
//! its body, framed by `Content-Length` or `Transfer-Encoding: chunked` (framing.rs) and bounded
//! by [`BODY_BYTES_MAX`], answers it, and reads the next request (keep-alive; requests pipelined
//! by the client are answered in order). A client that sends nothing for [`IDLE_TIMEOUT`]
//! between requests, or takes longer than [`REQUEST_READ_TIMEOUT`] to send one request once it
//! started, is disconnected. A head that does not parse, or is too large, gets `400` and the
//! connection is closed, since the stream can no longer be framed.
//!
//! The statuses are DynamoDB's, as public test suites recorded them against it: a head (request
//! line or headers) past 16 KB is `400 Bad Request` (scylladb/scylladb issue 23438 and the tests
//! of pull request 23442, which pass against DynamoDB); a body past 16 MB is `413`, whether
//! framed by `Content-Length` or chunked (test_manual_requests.py's
//! test_too_large_request_content_length and test_too_large_request_chunked; dynalite's
//! test/connection.js records the `413` with an empty body). The `413` is only useful if the
//! client reads it, and a client still sending its body does not read until it is done, so the
//! server reads and discards the rest of an oversized body (up to [`OVERSIZED_DRAIN_BYTES_MAX`]
//! within [`OVERSIZED_DRAIN_TIMEOUT`]) before closing: closing with unread bytes would reset
//! the connection and lose the answer (ScyllaDB issue 8195).
//!
//! CORS, so that browser applications can call the API, as DynamoDB answers it (see
//! [`cors_headers`]): a preflight `OPTIONS` with an `Origin` (on any path) is answered `200`
//! without a signature, without reaching the [`Api`] and so without consuming capacity; any
//! other request with an `Origin` gets `Access-Control-Allow-Origin` and
//! `Access-Control-Expose-Headers` on its response and is otherwise checked as always.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use glommio::net::TcpListener;
use serde_json::Value as Json;

use crate::framing::{ChunkedDecoder, ChunkedError};
use crate::protocol::{
    ApiError, BODY_BYTES_MAX, COMPRESS_RESPONSE_BYTES_MIN, CONTENT_TYPE, Operation, accepts_gzip,
    decode_body, gzip, parse_body,
};
use crate::sigv4::{self, SignedRequest};
use crate::tls::{self, HandshakeFailure, TLS_HANDSHAKE_TIMEOUT};

/// A request head (request line and headers) must fit in this.
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Headers per request at most.
pub const HEADERS_MAX: usize = 64;
/// A keep-alive connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Once a request started arriving, all of it must arrive within this (slow clients).
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections per router core; more are accepted and closed at once.
pub const CONNECTIONS_MAX: usize = 8192;
/// Bytes read from the socket per read call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);
/// The region of a server not told otherwise (the AWS SDKs' usual default).
pub const DEFAULT_REGION: &str = "us-east-1";
/// After answering `413`, at most this much more of the oversized body is read and discarded
/// so that the client, still sending, gets to read the answer; a client that declared more is
/// cut off at once (it would not read the answer in time anyway).
pub const OVERSIZED_DRAIN_BYTES_MAX: usize = 2 * BODY_BYTES_MAX;
/// ... and for at most this long.
pub const OVERSIZED_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// `Access-Control-Expose-Headers`, the list DynamoDB sends. Recorded from
/// dynamodb.us-east-1.amazonaws.com in AllanZhengYP/cors-test (output.md, a preflight with
/// `Origin: https://foo.example`), and the list ScyllaDB's Alternator copies from DynamoDB
/// (alternator/server.cc, handle_CORS). `x-amz-crc32` is deliberately not in it, as it is not
/// in DynamoDB's: a browser inflates a gzip response before the application sees it, so a
/// checksum of the bytes sent could not be checked there.
pub const CORS_EXPOSE_HEADERS: &str = "x-amzn-RequestId,x-amzn-ErrorType,x-amzn-ErrorMessage,Date";
/// `Access-Control-Max-Age` of a preflight answer: 2 days, as DynamoDB sends (the same
/// recording; dynalite's test/connection.js asserts it too).
pub const CORS_MAX_AGE_SECONDS: u64 = 172_800;

/// What serves the operations, and knows the access keys.
#[allow(async_fn_in_trait)]
pub trait Api {
    /// The secret access key of `access_key_id`; `None` for a key that does not exist (or was
    /// revoked). Asked once per request when signatures are verified
    /// ([`Authentication::SigV4`]), never otherwise.
    async fn secret_key(&self, access_key_id: &str) -> Option<String>;

    /// Serves one operation for `caller`, who is authenticated but not yet authorized: what a
    /// key may do is the implementation's business.
    async fn call(
        &self,
        caller: &Caller,
        operation: Operation,
        body: Json,
    ) -> Result<Json, ApiError>;

    /// The implementation's metrics in the Prometheus text format, each family whole (HELP,
    /// TYPE, then its samples); /metrics serves them after the server's own.
    fn metrics(&self) -> String {
        String::new()
    }
}

/// Who sent a request, as far as the server knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The request was signed with this access key's secret (verified).
    Key { access_key_id: String },
    /// Signatures are not verified ([`Authentication::Off`]): anyone may do anything.
    Anyone,
}

/// Whether the server verifies signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authentication {
    /// Every request must carry a valid SigV4 signature of a known key (the default).
    SigV4,
    /// Any credentials are accepted, as DynamoDB Local accepts them: the signature's shape is
    /// still checked (SDKs always send one), its value is not. For `shoal dev`, and for
    /// `shoal router --auth none`, which says so loudly.
    Off,
}

#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The name the health check reports (`healthy: <name>`), normally the advertised
    /// host:port.
    pub health_name: String,
    /// Seeds request ids.
    pub seed: u64,
    /// [`IDLE_TIMEOUT`] unless a test needs it shorter.
    pub idle_timeout: Duration,
    /// [`REQUEST_READ_TIMEOUT`] unless a test needs it shorter.
    pub request_read_timeout: Duration,
    /// [`Authentication::SigV4`] unless deliberately turned off.
    pub authentication: Authentication,
    /// The region credentials must be scoped to.
    pub region: String,
    /// The wall clock signatures' times are checked against; tests fix it.
    pub clock: fn() -> SystemTime,
    /// With a configuration (`tls::server_config`), the port speaks TLS only; without, plain
    /// HTTP only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// [`TLS_HANDSHAKE_TIMEOUT`] unless a test needs it shorter.
    pub tls_handshake_timeout: Duration,
}

impl HttpConfig {
    pub fn new(listen: SocketAddr, health_name: String, seed: u64) -> HttpConfig {
        HttpConfig {
            listen,
            health_name,
            seed,
            idle_timeout: IDLE_TIMEOUT,
            request_read_timeout: REQUEST_READ_TIMEOUT,
            authentication: Authentication::SigV4,
            region: DEFAULT_REGION.to_string(),
            clock: SystemTime::now,
            tls: None,
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

pub struct HttpServer<A: Api> {
    config: HttpConfig,
    api: Rc<A>,
    connections: Cell<usize>,
    request_ids: Cell<u64>,
    /// Requests refused by authentication, per exception in [`AUTHENTICATION_ERRORS`] order.
    authentication_refusals: [Cell<u64>; AUTHENTICATION_ERRORS.len()],
    /// Present when the port speaks TLS.
    tls_acceptor: Option<TlsAcceptor>,
    /// Connections that did not become TLS, per reason in [`TLS_HANDSHAKE_FAILURES`] order.
    tls_handshake_failures: [Cell<u64>; TLS_HANDSHAKE_FAILURES.len()],
}

/// Why TLS handshakes failed, as /metrics counts them.
pub const TLS_HANDSHAKE_FAILURES: [(HandshakeFailure, &str); 4] = [
    (HandshakeFailure::NotTls, "not_tls"),
    (HandshakeFailure::TimedOut, "timed_out"),
    (HandshakeFailure::Closed, "closed"),
    (HandshakeFailure::Failed, "failed"),
];

/// The exceptions authentication answers, as /metrics counts them.
pub const AUTHENTICATION_ERRORS: [&str; 4] = [
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "UnrecognizedClientException",
];

/// Why a connection stops.
enum Stop {
    /// The peer closed the connection cleanly between requests.
    Closed,
    /// The peer broke the protocol or a limit; it was answered if it could be.
    Refused,
    TimedOut,
    Io,
    /// The body is past [`BODY_BYTES_MAX`]: after the `413`, read and discard the rest of it
    /// (at most `drain_bytes`; `None` when its length is unknown: chunked) before closing.
    Oversized {
        drain_bytes: Option<usize>,
    },
}

/// Why [`HttpServer::call`] did not produce a result.
enum CallError {
    Api(ApiError),
    /// A compressed body that inflates past [`BODY_BYTES_MAX`]: `413`, as a body past it
    /// always is (DynamoDB refuses such a gzip bomb too, since early 2026: ScyllaDB pull
    /// request 28820; which status it uses is not recorded there).
    BodyTooLarge,
}

impl From<ApiError> for CallError {
    fn from(error: ApiError) -> CallError {
        CallError::Api(error)
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

struct Response {
    status: u16,
    /// `None` for an answer without a body to describe (a CORS preflight), which also goes
    /// without `x-amz-crc32`, as DynamoDB's does.
    content_type: Option<&'static str>,
    body: Vec<u8>,
    extra_headers: Vec<(&'static str, String)>,
}

impl Response {
    /// Adds the CORS headers an ordinary response carries when its request had an `Origin`.
    fn with_cors(mut self, cross_origin: bool) -> Response {
        if cross_origin {
            self.extra_headers.extend(cors_headers(None));
        }
        self
    }
}

/// What a request asks of CORS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preflight {
    /// `Access-Control-Request-Method`.
    pub method: Option<String>,
    /// `Access-Control-Request-Headers`.
    pub headers: Option<String>,
}

/// The CORS headers DynamoDB answers: for every request with an `Origin`,
/// `Access-Control-Allow-Origin: *` (any origin: a browser application authenticates each
/// request with its own SigV4 signature, never with cookies, so no origin needs refusing) and
/// [`CORS_EXPOSE_HEADERS`]; for a preflight (`Some`), also the requested method and headers
/// echoed as allowed (each only when requested) and [`CORS_MAX_AGE_SECONDS`].
///
/// Sources, each recorded against DynamoDB: the preflight answer of
/// dynamodb.us-east-1.amazonaws.com in AllanZhengYP/cors-test output.md (200, empty body,
/// `Access-Control-Allow-Origin: *`, the request headers and method echoed, these exposed
/// headers, max age 172800); dynalite's test/connection.js ("should set CORS if OPTIONS and
/// Origin and Headers and Method": `*`, echoes, 172800, empty body; "should return
/// UnknownOperationException and set CORS if using Origin": `*` on an error too); ScyllaDB's
/// test/alternator/test_cors.py (no CORS header without an `Origin`; with one, allow-origin
/// and expose-headers on every method, max age, allowed methods and headers only on the
/// preflight).
pub fn cors_headers(preflight: Option<&Preflight>) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("Access-Control-Allow-Origin", "*".to_string()),
        (
            "Access-Control-Expose-Headers",
            CORS_EXPOSE_HEADERS.to_string(),
        ),
    ];
    if let Some(preflight) = preflight {
        if let Some(requested) = &preflight.headers {
            headers.push(("Access-Control-Allow-Headers", requested.clone()));
        }
        if let Some(requested) = &preflight.method {
            headers.push(("Access-Control-Allow-Methods", requested.clone()));
        }
        headers.push(("Access-Control-Max-Age", CORS_MAX_AGE_SECONDS.to_string()));
    }
    headers
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        501 => "Not Implemented",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

impl<A: Api + 'static> HttpServer<A> {
    pub fn new(config: HttpConfig, api: Rc<A>) -> Rc<Self> {
        Rc::new(Self {
            tls_acceptor: config.tls.clone().map(TlsAcceptor::from),
            tls_handshake_failures: Default::default(),
            request_ids: Cell::new(config.seed),
            config,
            api,
            connections: Cell::new(0),
            authentication_refusals: Default::default(),
        })
    }

    /// Binds the listener (so the caller learns of a busy port at once) and spawns the accept
    /// loop on the current executor. Returns the bound address.
    pub fn start(self: &Rc<Self>) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(self.config.listen)?;
        let address = listener.local_addr()?;
        let server = self.clone();
        glommio::spawn_local(async move { server.accept_loop(listener).await }).detach();
        Ok(address)
    }

    async fn accept_loop(self: Rc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    if self.connections.get() >= CONNECTIONS_MAX {
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.connections.set(self.connections.get() + 1);
                    let server = self.clone();
                    glommio::spawn_local(async move {
                        match &server.tls_acceptor {
                            None => {
                                let _ = server.serve_connection(stream).await;
                            }
                            Some(acceptor) => {
                                let timeout = server.config.tls_handshake_timeout;
                                match tls::accept(acceptor, stream, timeout).await {
                                    Ok(stream) => {
                                        let _ = server.serve_connection(stream).await;
                                    }
                                    Err(failure) => server.count_handshake_failure(failure),
                                }
                            }
                        }
                        server.connections.set(server.connections.get() - 1);
                    })
                    .detach();
                }
                Err(_) => glommio::timer::sleep(ACCEPT_ERROR_PAUSE).await,
            }
        }
    }

    fn count_handshake_failure(&self, failure: HandshakeFailure) {
        tracing::debug!(?failure, "TLS handshake failed");
        if let Some(index) = TLS_HANDSHAKE_FAILURES
            .iter()
            .position(|(kind, _)| *kind == failure)
        {
            let count = &self.tls_handshake_failures[index];
            count.set(count.get().saturating_add(1));
        }
    }

    fn next_request_id(&self) -> String {
        // 52 characters of [0-9A-Z], like DynamoDB's own request ids.
        const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut state = self.request_ids.get();
        let mut id = String::with_capacity(52);
        for _ in 0..4 {
            let mut word = shoal_rng::splitmix64(&mut state);
            for _ in 0..13 {
                id.push(ALPHABET[(word % 36) as usize] as char);
                word /= 36;
            }
        }
        self.request_ids.set(state);
        id
    }

    async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
        self: &Rc<Self>,
        mut stream: S,
    ) -> Result<(), Stop> {
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let outcome = self.read_request(&mut stream, &mut buffer).await;
            let (response, keep_alive) = match outcome {
                Ok(request) => {
                    let keep_alive = request.keep_alive;
                    (self.answer(request).await, keep_alive)
                }
                Err((Some(response), Stop::Oversized { drain_bytes })) => {
                    self.write_response(&mut stream, response, false).await?;
                    Self::drain(&mut stream, drain_bytes).await;
                    let _ = stream.close().await;
                    return Err(Stop::Refused);
                }
                Err((Some(response), _)) => (response, false),
                Err((None, stop)) => return Err(stop),
            };
            self.write_response(&mut stream, response, keep_alive)
                .await?;
            if !keep_alive {
                let _ = stream.close().await;
                return Ok(());
            }
        }
    }

    /// Reads and discards the rest of an oversized body so that the client, which may still be
    /// sending it, finishes and reads the `413` already written; bounded by
    /// [`OVERSIZED_DRAIN_BYTES_MAX`] and [`OVERSIZED_DRAIN_TIMEOUT`].
    async fn drain<S: AsyncRead + Unpin>(stream: &mut S, drain_bytes: Option<usize>) {
        let wanted = drain_bytes.unwrap_or(OVERSIZED_DRAIN_BYTES_MAX);
        if wanted > OVERSIZED_DRAIN_BYTES_MAX {
            return;
        }
        let deadline = Instant::now() + OVERSIZED_DRAIN_TIMEOUT;
        let mut drained = 0;
        let mut buffer = Vec::new();
        while drained < wanted {
            match Self::read_more(stream, &mut buffer, deadline).await {
                Ok(0) | Err(_) => return,
                Ok(read) => {
                    drained += read;
                    buffer.clear();
                }
            }
        }
    }

    async fn read_more<S: AsyncRead + Unpin>(
        stream: &mut S,
        buffer: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<usize, Stop> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Stop::TimedOut);
        }
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        let read =
            glommio::timer::timeout(remaining, async { Ok(stream.read(&mut chunk).await) }).await;
        match read {
            Ok(Ok(read)) => {
                buffer.extend_from_slice(&chunk[..read]);
                Ok(read)
            }
            Ok(Err(_)) => Err(Stop::Io),
            Err(_) => Err(Stop::TimedOut),
        }
    }

    /// Reads one request; on failure, the response to send before closing (if any).
    async fn read_request<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        buffer: &mut Vec<u8>,
    ) -> Result<Request, (Option<Response>, Stop)> {
        let idle_deadline = Instant::now() + self.config.idle_timeout;
        let mut request_deadline: Option<Instant> =
            (!buffer.is_empty()).then(|| Instant::now() + self.config.request_read_timeout);
        // The head.
        let (head_length, method, path, headers) = loop {
            let mut header_slots = [httparse::EMPTY_HEADER; HEADERS_MAX];
            let mut parsed = httparse::Request::new(&mut header_slots);
            match parsed.parse(buffer) {
                Ok(httparse::Status::Complete(length)) if length > HEAD_BYTES_MAX => {
                    return Err((Some(plain(400, HEAD_TOO_LARGE)), Stop::Refused));
                }
                Ok(httparse::Status::Complete(length)) => {
                    let method = parsed.method.unwrap_or_default().to_string();
                    let path = parsed.path.unwrap_or_default().to_string();
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|header| {
                            (
                                header.name.to_string(),
                                String::from_utf8_lossy(header.value).into_owned(),
                            )
                        })
                        .collect();
                    break (length, method, path, headers);
                }
                Ok(httparse::Status::Partial) => {
                    if buffer.len() > HEAD_BYTES_MAX {
                        return Err((Some(plain(400, HEAD_TOO_LARGE)), Stop::Refused));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err((Some(plain(400, "too many headers\n")), Stop::Refused));
                }
                Err(_) => return Err((Some(plain(400, "malformed request\n")), Stop::Refused)),
            }
            let deadline = request_deadline.unwrap_or(idle_deadline);
            match Self::read_more(stream, buffer, deadline).await {
                Ok(0) if buffer.is_empty() => return Err((None, Stop::Closed)),
                Ok(0) => return Err((None, Stop::Io)),
                Ok(_) => {
                    request_deadline
                        .get_or_insert_with(|| Instant::now() + self.config.request_read_timeout);
                }
                Err(Stop::TimedOut) if request_deadline.is_some() => {
                    return Err((Some(plain(408, "request timeout\n")), Stop::TimedOut));
                }
                Err(stop) => return Err((None, stop)),
            }
        };
        let find = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
        };
        let cross_origin = find("origin").is_some();
        let refuse = |status: u16, text: &str| {
            Err((
                Some(plain(status, text).with_cors(cross_origin)),
                Stop::Refused,
            ))
        };
        let too_large = |drain_bytes: Option<usize>| {
            Err((
                Some(empty(413).with_cors(cross_origin)),
                Stop::Oversized { drain_bytes },
            ))
        };
        let transfer_encoding = find("transfer-encoding");
        let content_length = find("content-length");
        let body = if let Some(coding) = transfer_encoding {
            // RFC 9112 section 6.1: a request with both is refused (one of them would be
            // ignored, and a proxy in front may have honoured the other: request smuggling);
            // a transfer coding other than chunked cannot be framed, so 501.
            if content_length.is_some() {
                return refuse(400, "both Transfer-Encoding and Content-Length\n");
            }
            if !coding.trim().eq_ignore_ascii_case("chunked") {
                return refuse(501, "only the chunked transfer coding is supported\n");
            }
            buffer.drain(..head_length);
            let deadline = request_deadline
                .unwrap_or_else(|| Instant::now() + self.config.request_read_timeout);
            let mut decoder = ChunkedDecoder::new(BODY_BYTES_MAX);
            let mut body = Vec::new();
            loop {
                match decoder.feed(buffer, &mut body) {
                    Ok(used) => {
                        buffer.drain(..used);
                    }
                    Err(ChunkedError::TooLarge) => return too_large(None),
                    Err(ChunkedError::Malformed) => return refuse(400, "malformed chunked body\n"),
                }
                if decoder.is_done() {
                    break body;
                }
                match Self::read_more(stream, buffer, deadline).await {
                    Ok(0) => return Err((None, Stop::Io)),
                    Ok(_) => {}
                    Err(Stop::TimedOut) => {
                        return Err((Some(plain(408, "request timeout\n")), Stop::TimedOut));
                    }
                    Err(stop) => return Err((None, stop)),
                }
            }
        } else {
            let content_length = match content_length {
                None => 0,
                Some(value) => match value.trim().parse::<usize>() {
                    Ok(length) => length,
                    Err(_) => return refuse(400, "bad Content-Length\n"),
                },
            };
            if content_length > BODY_BYTES_MAX {
                let received = buffer.len() - head_length;
                return too_large(Some(content_length.saturating_sub(received)));
            }
            let deadline = request_deadline
                .unwrap_or_else(|| Instant::now() + self.config.request_read_timeout);
            while buffer.len() < head_length + content_length {
                match Self::read_more(stream, buffer, deadline).await {
                    Ok(0) => return Err((None, Stop::Io)),
                    Ok(_) => {}
                    Err(Stop::TimedOut) => {
                        return Err((Some(plain(408, "request timeout\n")), Stop::TimedOut));
                    }
                    Err(stop) => return Err((None, stop)),
                }
            }
            let body = buffer[head_length..head_length + content_length].to_vec();
            buffer.drain(..head_length + content_length);
            body
        };
        let connection = find("connection").map(|value| value.to_ascii_lowercase());
        let keep_alive = !matches!(connection.as_deref(), Some("close"));
        Ok(Request {
            method,
            path,
            headers,
            body,
            keep_alive,
        })
    }

    fn error_response(&self, error: &ApiError, extra: &[(&'static str, String)]) -> Response {
        Response {
            status: error.status(),
            content_type: Some(CONTENT_TYPE),
            body: error.body().to_string().into_bytes(),
            extra_headers: extra.to_vec(),
        }
    }

    /// The response to a whole request, with the CORS headers when it came with an `Origin`.
    async fn answer(&self, request: Request) -> Response {
        let origin = request.header("origin").is_some();
        if origin && request.method == "OPTIONS" {
            // A preflight: browsers send it without credentials, so it is answered before
            // authentication and never reaches the Api (no capacity, no operation).
            let preflight = Preflight {
                method: request
                    .header("access-control-request-method")
                    .map(str::to_string),
                headers: request
                    .header("access-control-request-headers")
                    .map(str::to_string),
            };
            let mut response = empty(200);
            response.extra_headers = cors_headers(Some(&preflight));
            return response;
        }
        self.answer_request(request).await.with_cors(origin)
    }

    async fn answer_request(&self, request: Request) -> Response {
        if request.method == "GET" {
            return if request.path == "/" {
                plain(200, &format!("healthy: {}", self.config.health_name))
            } else if request.path == "/metrics" {
                plain(200, &self.render_metrics())
            } else {
                plain(404, "not found\n")
            };
        }
        if request.method != "POST" {
            return plain(405, "method not allowed\n");
        }
        let gzip_response = accepts_gzip(request.header("accept-encoding"));
        match self.call(&request).await {
            Ok(body) => {
                let body = body.to_string().into_bytes();
                let mut extra = Vec::new();
                let body = if gzip_response && body.len() >= COMPRESS_RESPONSE_BYTES_MIN {
                    extra.push(("Content-Encoding", "gzip".to_string()));
                    gzip(&body)
                } else {
                    body
                };
                Response {
                    status: 200,
                    content_type: Some(CONTENT_TYPE),
                    body,
                    extra_headers: extra,
                }
            }
            Err(CallError::Api(error)) => self.error_response(&error, &[]),
            Err(CallError::BodyTooLarge) => empty(413),
        }
    }

    /// The protocol checks in DynamoDB's order: authentication, operation, body, then the
    /// operation itself (which authorizes the caller before it does anything, so a refused
    /// request costs no capacity).
    async fn call(&self, request: &Request) -> Result<Json, CallError> {
        let caller = self.authenticate(request).await?;
        let operation = request
            .header("x-amz-target")
            .and_then(Operation::from_target)
            .ok_or_else(ApiError::unknown_operation)?;
        let body = decode_body(request.header("content-encoding"), request.body.clone()).map_err(
            |error| match error.api_error() {
                Some(api_error) => CallError::Api(api_error),
                None => CallError::BodyTooLarge,
            },
        )?;
        let body = parse_body(&body)?;
        Ok(self.api.call(&caller, operation, body).await?)
    }

    /// Prometheus text: whether signatures are verified (an operator must see at a glance that
    /// a router runs with `--auth none`) and the requests authentication refused.
    fn render_metrics(&self) -> String {
        let verified = u8::from(self.config.authentication == Authentication::SigV4);
        let mut text = format!(
            "# HELP shoal_http_signatures_verified 1 if SigV4 signatures are verified, 0 if any credentials are accepted (--auth none).\n\
             # TYPE shoal_http_signatures_verified gauge\n\
             shoal_http_signatures_verified {verified}\n\
             # HELP shoal_http_authentication_refused_total Requests refused by authentication, by exception.\n\
             # TYPE shoal_http_authentication_refused_total counter\n"
        );
        for (name, count) in AUTHENTICATION_ERRORS
            .iter()
            .zip(&self.authentication_refusals)
        {
            text.push_str(&format!(
                "shoal_http_authentication_refused_total{{exception=\"{name}\"}} {}\n",
                count.get()
            ));
        }
        if self.tls_acceptor.is_some() {
            text.push_str(
                "# HELP shoal_http_tls_handshakes_failed_total Connections to the TLS port that did not become TLS, by reason.\n\
                 # TYPE shoal_http_tls_handshakes_failed_total counter\n",
            );
            for ((_, reason), count) in TLS_HANDSHAKE_FAILURES
                .iter()
                .zip(&self.tls_handshake_failures)
            {
                text.push_str(&format!(
                    "shoal_http_tls_handshakes_failed_total{{reason=\"{reason}\"}} {}\n",
                    count.get()
                ));
            }
        }
        text.push_str(&self.api.metrics());
        text
    }

    /// [`Self::verify_caller`], counting refusals for /metrics.
    async fn authenticate(&self, request: &Request) -> Result<Caller, ApiError> {
        let outcome = self.verify_caller(request).await;
        if let Err(error) = &outcome
            && let Some(index) = AUTHENTICATION_ERRORS
                .iter()
                .position(|name| *name == error.type_name)
        {
            let count = &self.authentication_refusals[index];
            count.set(count.get().saturating_add(1));
        }
        outcome
    }

    /// The steps of sigv4.rs in order: shape, scope, time, key, signature. With
    /// [`Authentication::Off`], the shape only.
    async fn verify_caller(&self, request: &Request) -> Result<Caller, ApiError> {
        let signed = SignedRequest {
            method: &request.method,
            target: &request.path,
            headers: &request.headers,
            body: &request.body,
        };
        let signature = sigv4::parse(&signed)?;
        if self.config.authentication == Authentication::Off {
            return Ok(Caller::Anyone);
        }
        sigv4::check_scope(&signature, &self.config.region)?;
        sigv4::check_time(&signature, (self.config.clock)())?;
        let Some(secret_key) = self.api.secret_key(&signature.access_key_id).await else {
            return Err(ApiError::new(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        };
        sigv4::verify(&signature, &signed, &secret_key)?;
        Ok(Caller::Key {
            access_key_id: signature.access_key_id,
        })
    }

    async fn write_response<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        response: Response,
        keep_alive: bool,
    ) -> Result<(), Stop> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nx-amzn-RequestId: {}\r\n",
            response.status,
            reason(response.status),
            response.body.len(),
            self.next_request_id(),
        );
        if let Some(content_type) = response.content_type {
            let checksum = crc32fast::hash(&response.body);
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nx-amz-crc32: {checksum}\r\n"
            ));
        }
        for (name, value) in &response.extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(if keep_alive {
            "Connection: keep-alive\r\n\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&response.body);
        stream.write_all(&bytes).await.map_err(|_| Stop::Io)?;
        stream.flush().await.map_err(|_| Stop::Io)
    }
}

/// The answer to a head past [`HEAD_BYTES_MAX`].
const HEAD_TOO_LARGE: &str = "request head too large\n";

fn plain(status: u16, text: &str) -> Response {
    Response {
        status,
        content_type: Some("text/plain"),
        body: text.as_bytes().to_vec(),
        extra_headers: Vec::new(),
    }
}

/// A response with an empty body: DynamoDB's `413` (dynalite's test/connection.js) and its
/// CORS preflight answer have none.
fn empty(status: u16) -> Response {
    Response {
        status,
        content_type: None,
        body: Vec::new(),
        extra_headers: Vec::new(),
    }
}
