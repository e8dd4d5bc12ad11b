//! `Client`: the blocking native client (std::net). A pool of connections to one router, each
//! with a reader thread that matches responses to requests by request id, so many requests
//! may be in flight on one connection (pipelining), from one thread (`submit`, then `wait`) or
//! from many threads sharing the client.
//!
//! Invariants:
//! 1. A request id is in a connection's `pending` map from just before its frame is written
//!    until its response, its timeout or the connection's end; at most
//!    `requests_in_flight_max` are.
//! 2. Once a connection is closed (`closed` set) no request is added to it, and every pending
//!    request has been told (`ConnectionLost`); the pool replaces it on next use.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use shoal_protocol::handshake::{HandshakeKind, encode_hello, handshake_kind};
use shoal_protocol::{Operation, decode_response, encode_request, read_frame};
use shoal_rng::SeededRng;

use crate::credentials::{Credentials, answer_challenge, read_outcome, unexpected};
use crate::error::{ClientError, Outcome, outcome_of, response_value};
use crate::limits::{
    CONNECT_TIMEOUT_DEFAULT, CONNECTIONS_DEFAULT, CONNECTIONS_MAX, REQUEST_TIMEOUT_DEFAULT,
    REQUESTS_IN_FLIGHT_PER_CONNECTION_DEFAULT,
};
use crate::retry::{RetryPolicy, retryable};
use crate::tls::{Session, SessionReader, TlsSettings};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The router's native address (`shoal router --native`).
    pub endpoint: SocketAddr,
    /// Connections in the pool (1 to `CONNECTIONS_MAX`); calls take them round-robin.
    pub connections: usize,
    pub connect_timeout: Duration,
    /// How long one attempt waits for its response.
    pub request_timeout: Duration,
    /// Requests in flight per connection; a caller past it waits for room.
    pub requests_in_flight_max: usize,
    pub retry: RetryPolicy,
    /// Seeds the backoff jitter (reproducible in tests).
    pub seed: u64,
    /// Speak TLS to a router whose native port does (`shoal router --tls-cert`), trusting
    /// these settings' CA bundle. `None`: plaintext.
    pub tls: Option<TlsSettings>,
    /// The access key each connection authenticates with before its first request
    /// (net/protocol/FORMAT.md, "Authentication"). `None`: no handshake, which only a router
    /// started with `--auth none` serves.
    pub credentials: Option<Credentials>,
}

impl ClientConfig {
    pub fn new(endpoint: SocketAddr) -> ClientConfig {
        ClientConfig {
            endpoint,
            connections: CONNECTIONS_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            requests_in_flight_max: REQUESTS_IN_FLIGHT_PER_CONNECTION_DEFAULT,
            retry: RetryPolicy::default(),
            seed: crate::retry::jitter_seed(),
            tls: None,
            credentials: None,
        }
    }
}

struct ConnectionState {
    pending: HashMap<u64, SyncSender<Outcome>>,
    next_request_id: u64,
    /// Why the connection ended (invariant 2).
    closed: Option<String>,
}

struct ConnectionShared {
    state: Mutex<ConnectionState>,
    /// Signalled when a pending request leaves the map or the connection closes.
    room: Condvar,
}

impl ConnectionShared {
    fn lock(&self) -> MutexGuard<'_, ConnectionState> {
        // A panic while holding this lock leaves plain data behind (a map and a counter), still
        // consistent for our use: take it over rather than poison every later call.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Invariant 2: marks the connection closed and tells every pending request.
    fn close(&self, reason: &str) {
        let pending = {
            let mut state = self.lock();
            if state.closed.is_none() {
                state.closed = Some(reason.to_string());
            }
            std::mem::take(&mut state.pending)
        };
        for (_, sender) in pending {
            let _ = sender.try_send(Err(ClientError::ConnectionLost(reason.to_string())));
        }
        self.room.notify_all();
    }
}

/// The writing side of a connection: the socket, or the socket and its TLS session.
enum Writer {
    Plain(TcpStream),
    Tls { socket: TcpStream, session: Session },
}

impl Writer {
    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Plain(socket) => socket.write_all(frame),
            Writer::Tls { socket, session } => crate::tls::write_sealed(session, socket, frame),
        }
    }

    fn shutdown(&self) {
        let socket = match self {
            Writer::Plain(socket) | Writer::Tls { socket, .. } => socket,
        };
        let _ = socket.shutdown(Shutdown::Both);
    }
}

/// One connection of the pool: the writing side here, the reading side on its own thread.
struct Connection {
    writer: Mutex<Writer>,
    shared: Arc<ConnectionShared>,
    requests_in_flight_max: usize,
}

impl Connection {
    fn open(config: &ClientConfig) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect_timeout(&config.endpoint, config.connect_timeout)
            .map_err(|error| ClientError::Connect(format!("{}: {error}", config.endpoint)))?;
        stream
            .set_nodelay(true)
            .map_err(|error| ClientError::Connect(error.to_string()))?;
        let mut stream = stream;
        let session = match &config.tls {
            Some(settings) => Some(crate::tls::handshake(
                settings,
                &mut stream,
                config.connect_timeout,
            )?),
            None => None,
        };
        let reader_socket = stream
            .try_clone()
            .map_err(|error| ClientError::Connect(error.to_string()))?;
        let shared = Arc::new(ConnectionShared {
            state: Mutex::new(ConnectionState {
                pending: HashMap::new(),
                next_request_id: 1,
                closed: None,
            }),
            room: Condvar::new(),
        });
        let reader_shared = shared.clone();
        let (mut reader, writer): (Box<dyn Read + Send>, Writer) = match session {
            None => (Box::new(reader_socket), Writer::Plain(stream)),
            Some(session) => (
                Box::new(SessionReader::new(session.clone(), reader_socket)),
                Writer::Tls {
                    socket: stream,
                    session,
                },
            ),
        };
        let shutdown_socket = stream_for_shutdown(&writer)?;
        let mut writer = writer;
        if let Some(credentials) = &config.credentials
            && let Err(error) = authenticate(
                &mut writer,
                &mut reader,
                &shutdown_socket,
                credentials,
                config.connect_timeout,
            )
        {
            writer.shutdown();
            return Err(error);
        }
        std::thread::Builder::new()
            .name("shoal-client-reader".to_string())
            .spawn(move || read_responses(&mut reader, &shutdown_socket, &reader_shared))
            .map_err(|error| ClientError::Connect(format!("cannot start a reader: {error}")))?;
        Ok(Connection {
            writer: Mutex::new(writer),
            shared,
            requests_in_flight_max: config.requests_in_flight_max.max(1),
        })
    }

    fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Sends one request (invariant 1) and returns the handle to wait on.
    fn send(
        self: &Arc<Self>,
        operation: Operation,
        body: &Json,
        deadline: Instant,
    ) -> Result<Pending, ClientError> {
        let (sender, receiver) = sync_channel(1);
        let request_id = {
            let mut state = self.shared.lock();
            loop {
                if let Some(reason) = &state.closed {
                    // Nothing of this request was written: it is safe to send elsewhere.
                    return Err(ClientError::Connect(reason.clone()));
                }
                if state.pending.len() < self.requests_in_flight_max {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(ClientError::Timeout);
                }
                state = self
                    .shared
                    .room
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
            let request_id = state.next_request_id;
            state.next_request_id = state.next_request_id.wrapping_add(1);
            state.pending.insert(request_id, sender);
            request_id
        };
        let frame = match encode_request(request_id, operation, body) {
            Ok(frame) => frame,
            Err(error) => {
                self.forget(request_id);
                return Err(ClientError::InvalidRequest(error.to_string()));
            }
        };
        let written = {
            let mut writer = self
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            writer.write_frame(&frame)
        };
        if let Err(error) = written {
            // Part of the frame may have reached the server: the outcome is unknown.
            let reason = format!("write failed: {error}");
            self.shared.close(&reason);
            return Err(ClientError::ConnectionLost(reason));
        }
        Ok(Pending {
            connection: self.clone(),
            request_id,
            receiver,
            deadline,
        })
    }

    fn forget(&self, request_id: u64) {
        self.shared.lock().pending.remove(&request_id);
        self.shared.room.notify_all();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Ends the reader thread: its read returns at once.
        if let Ok(writer) = self.writer.lock() {
            writer.shutdown();
        }
        self.shared.close("client dropped");
    }
}

/// The authentication handshake (credentials.rs), before the reader thread starts: each of
/// its reads and writes bounded by `timeout` (the connect timeout), through the connection's
/// own reader and writer, so it is encrypted when the connection is.
fn authenticate(
    writer: &mut Writer,
    reader: &mut Box<dyn Read + Send>,
    socket: &TcpStream,
    credentials: &Credentials,
    timeout: Duration,
) -> Result<(), ClientError> {
    let set_timeouts = |timeout: Option<Duration>| {
        socket
            .set_read_timeout(timeout)
            .and_then(|()| socket.set_write_timeout(timeout))
            .map_err(|error| ClientError::Connect(error.to_string()))
    };
    // Nothing of a request was sent yet: a failure here is a connect failure (retryable).
    let broken = |error: &dyn std::fmt::Display| {
        ClientError::Connect(format!("authentication handshake: {error}"))
    };
    set_timeouts(Some(timeout))?;
    writer
        .write_frame(&encode_hello())
        .map_err(|error| broken(&error))?;
    let challenge = read_frame(reader).map_err(|error| broken(&error))?;
    if handshake_kind(&challenge) != Some(HandshakeKind::Challenge) {
        return Err(unexpected(HandshakeKind::Challenge));
    }
    writer
        .write_frame(&answer_challenge(&challenge, credentials)?)
        .map_err(|error| broken(&error))?;
    let outcome = read_frame(reader).map_err(|error| broken(&error))?;
    if handshake_kind(&outcome) != Some(HandshakeKind::Authenticated) {
        return Err(unexpected(HandshakeKind::Authenticated));
    }
    read_outcome(&outcome)?;
    set_timeouts(None)
}

/// A handle of the connection's socket for the reader thread to shut it down with.
fn stream_for_shutdown(writer: &Writer) -> Result<TcpStream, ClientError> {
    let socket = match writer {
        Writer::Plain(socket) | Writer::Tls { socket, .. } => socket,
    };
    socket
        .try_clone()
        .map_err(|error| ClientError::Connect(error.to_string()))
}

/// The reader thread of one connection: hands each response to its waiting request.
fn read_responses(
    stream: &mut Box<dyn Read + Send>,
    socket: &TcpStream,
    shared: &ConnectionShared,
) {
    let reason = loop {
        let body = match read_frame(stream) {
            Ok(body) => body,
            Err(error) => break error.to_string(),
        };
        let response = match decode_response(&body) {
            Ok(response) => response,
            Err(error) => break format!("bad response: {error}"),
        };
        let sender = {
            let mut state = shared.lock();
            state.pending.remove(&response.request_id)
        };
        shared.room.notify_all();
        // No sender: the request timed out and its caller gave up on it (a late response).
        if let Some(sender) = sender {
            let _ = sender.try_send(outcome_of(response));
        }
    };
    let _ = socket.shutdown(Shutdown::Both);
    shared.close(&reason);
}

/// A request sent and not yet answered. `wait` returns its response.
pub struct Pending {
    connection: Arc<Connection>,
    request_id: u64,
    receiver: Receiver<Outcome>,
    deadline: Instant,
}

impl Pending {
    /// The id this request carries on its connection.
    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// Waits for the response until this attempt's deadline.
    pub fn wait(self) -> Result<Json, ClientError> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        match self.receiver.recv_timeout(remaining) {
            Ok(outcome) => response_value(outcome),
            Err(RecvTimeoutError::Timeout) => {
                self.connection.forget(self.request_id);
                Err(ClientError::Timeout)
            }
            Err(RecvTimeoutError::Disconnected) => Err(ClientError::ConnectionLost(
                "the connection ended".to_string(),
            )),
        }
    }
}

/// The blocking client. `Send + Sync`: share it between threads with an `Arc`.
pub struct Client {
    config: ClientConfig,
    pool: Vec<Mutex<Option<Arc<Connection>>>>,
    next_connection: AtomicUsize,
    rng: Mutex<SeededRng>,
}

impl Client {
    /// Connects the first connection of the pool now, so a wrong endpoint fails here; the
    /// others connect on first use.
    pub fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        if config.connections == 0 || config.connections > CONNECTIONS_MAX {
            return Err(ClientError::InvalidRequest(format!(
                "connections must be 1 to {CONNECTIONS_MAX}"
            )));
        }
        let pool = (0..config.connections).map(|_| Mutex::new(None)).collect();
        let client = Client {
            rng: Mutex::new(SeededRng::new(config.seed)),
            config,
            pool,
            next_connection: AtomicUsize::new(0),
        };
        client.connection(0)?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The pool's connection `index`, opened again if it has closed.
    fn connection(&self, index: usize) -> Result<Arc<Connection>, ClientError> {
        let mut slot = self.pool[index % self.pool.len()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(connection) = slot.as_ref()
            && !connection.is_closed()
        {
            return Ok(connection.clone());
        }
        let connection = Arc::new(Connection::open(&self.config)?);
        *slot = Some(connection.clone());
        Ok(connection)
    }

    fn next_connection(&self) -> Result<Arc<Connection>, ClientError> {
        let index = self.next_connection.fetch_add(1, Ordering::Relaxed);
        self.connection(index)
    }

    /// Sends one request without waiting for its response, and without retries: several
    /// `submit`s followed by their `wait`s are pipelined. Requests go to the pool's connections
    /// round-robin; `submit_on` picks one.
    pub fn submit(&self, operation: Operation, body: &Json) -> Result<Pending, ClientError> {
        let deadline = Instant::now() + self.config.request_timeout;
        self.next_connection()?.send(operation, body, deadline)
    }

    /// `submit` on connection `index` of the pool (modulo its size).
    pub fn submit_on(
        &self,
        index: usize,
        operation: Operation,
        body: &Json,
    ) -> Result<Pending, ClientError> {
        let deadline = Instant::now() + self.config.request_timeout;
        self.connection(index)?.send(operation, body, deadline)
    }

    /// Runs one operation with the retry policy (retry.rs) and returns DynamoDB's response
    /// body, or the error of the last attempt.
    pub fn call(&self, operation: Operation, body: &Json) -> Result<Json, ClientError> {
        let started = Instant::now();
        let call_deadline = started + self.config.retry.deadline;
        let attempts = self.config.retry.attempts();
        let mut retry = 0;
        loop {
            let attempt_deadline =
                (Instant::now() + self.config.request_timeout).min(call_deadline);
            let result = self
                .next_connection()
                .and_then(|connection| connection.send(operation, body, attempt_deadline))
                .and_then(Pending::wait);
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if retry + 1 >= attempts || !retryable(operation, &error) {
                return Err(error);
            }
            let delay = {
                let mut rng = self
                    .rng
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                self.config.retry.backoff(retry, &mut rng)
            };
            if Instant::now() + delay >= call_deadline {
                return Err(error);
            }
            std::thread::sleep(delay);
            retry += 1;
        }
    }
}

crate::operations::operation_methods!(Client, sync);
