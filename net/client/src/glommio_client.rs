//! `AsyncClient`: the native client on a glommio executor. One connection, pipelined: any
//! number of tasks may call at once (up to `requests_in_flight_max`), each matched to its
//! response by request id. A reader task dispatches responses; a writer task drains a bounded
//! queue of frames. A closed connection is replaced on the next call.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use futures_lite::future::or;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use serde_json::Value as Json;
use shoal_protocol::handshake::{HandshakeKind, encode_hello, handshake_kind};
use shoal_protocol::{Operation, decode_response, encode_request};
use shoal_rng::SeededRng;

use crate::async_io::{StreamHalf, read_frame_async, shutdown_now, split};
use crate::blocking::ClientConfig;
use crate::credentials::{Credentials, answer_challenge, read_outcome, unexpected};
use crate::error::{ClientError, Outcome, outcome_of, response_value};
use crate::limits::WRITE_QUEUE_FRAMES_MAX;
use crate::retry::retryable;

struct AsyncConnection {
    pending: RefCell<HashMap<u64, LocalSender<Outcome>>>,
    next_request_id: Cell<u64>,
    closed: RefCell<Option<String>>,
    /// One permit per request in flight.
    room: Semaphore,
    outgoing: LocalSender<Vec<u8>>,
    stream: Rc<RefCell<TcpStream>>,
}

impl AsyncConnection {
    async fn open(config: &ClientConfig) -> Result<Rc<AsyncConnection>, ClientError> {
        let stream = TcpStream::connect_timeout(config.endpoint, config.connect_timeout)
            .await
            .map_err(|error| ClientError::Connect(format!("{}: {error}", config.endpoint)))?;
        stream
            .set_nodelay(true)
            .map_err(|error| ClientError::Connect(error.to_string()))?;
        let (mut read_half, mut write_half, stream) = split(stream);
        if let Some(credentials) = &config.credentials {
            let handshake = authenticate(&mut read_half, &mut write_half, credentials);
            let expired = async {
                glommio::timer::sleep(config.connect_timeout).await;
                Err(ClientError::Connect(format!(
                    "authentication handshake: no answer within {:?}",
                    config.connect_timeout
                )))
            };
            if let Err(error) = or(handshake, expired).await {
                shutdown_now(&stream);
                return Err(error);
            }
        }
        let (outgoing, frames) = local_channel::new_bounded(WRITE_QUEUE_FRAMES_MAX);
        let connection = Rc::new(AsyncConnection {
            pending: RefCell::new(HashMap::new()),
            next_request_id: Cell::new(1),
            closed: RefCell::new(None),
            room: Semaphore::new(config.requests_in_flight_max.max(1) as u64),
            outgoing,
            stream,
        });
        glommio::spawn_local(read_responses(Rc::downgrade(&connection), read_half)).detach();
        glommio::spawn_local(write_frames(Rc::downgrade(&connection), write_half, frames)).detach();
        Ok(connection)
    }

    fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// Marks the connection closed, shuts the socket and tells every pending request.
    fn close(&self, reason: &str) {
        if self.closed.borrow().is_none() {
            *self.closed.borrow_mut() = Some(reason.to_string());
        }
        shutdown_now(&self.stream);
        self.room.close();
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for (_, sender) in pending {
            let _ = sender.try_send(Err(ClientError::ConnectionLost(reason.to_string())));
        }
    }

    async fn send_and_wait(
        &self,
        operation: Operation,
        body: &Json,
        timeout: Duration,
    ) -> Result<Json, ClientError> {
        let waited = async {
            // The permit is held until the response (or the timeout) ends this future.
            let _permit = self
                .room
                .acquire_permit(1)
                .await
                .map_err(|_| ClientError::Connect(self.closed_reason()))?;
            if self.is_closed() {
                return Err(ClientError::Connect(self.closed_reason()));
            }
            let request_id = self.next_request_id.get();
            self.next_request_id.set(request_id.wrapping_add(1));
            let frame = encode_request(request_id, operation, body)
                .map_err(|error| ClientError::InvalidRequest(error.to_string()))?;
            let (sender, receiver): (_, LocalReceiver<Outcome>) = local_channel::new_bounded(1);
            self.pending.borrow_mut().insert(request_id, sender);
            let forget = Forget {
                connection: self,
                request_id,
            };
            if self.outgoing.send(frame).await.is_err() {
                return Err(ClientError::ConnectionLost(self.closed_reason()));
            }
            let outcome = receiver
                .recv()
                .await
                .unwrap_or_else(|| Err(ClientError::ConnectionLost(self.closed_reason())));
            drop(forget);
            response_value(outcome)
        };
        let expired = async {
            glommio::timer::sleep(timeout).await;
            Err(ClientError::Timeout)
        };
        or(waited, expired).await
    }

    fn closed_reason(&self) -> String {
        self.closed
            .borrow()
            .clone()
            .unwrap_or_else(|| "the connection ended".to_string())
    }
}

/// Removes a request from `pending` when its wait ends for any reason (response, timeout, the
/// caller dropping the future), so a late response finds no one and the map stays bounded.
struct Forget<'a> {
    connection: &'a AsyncConnection,
    request_id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.connection
            .pending
            .borrow_mut()
            .remove(&self.request_id);
    }
}

async fn send(writer: &mut StreamHalf, frame: &[u8]) -> std::io::Result<()> {
    writer.write_all(frame).await?;
    writer.flush().await
}

/// The authentication handshake (credentials.rs), before the reader and writer tasks start.
async fn authenticate(
    reader: &mut StreamHalf,
    writer: &mut StreamHalf,
    credentials: &Credentials,
) -> Result<(), ClientError> {
    // Nothing of a request was sent yet: a failure here is a connect failure (retryable).
    let broken = |error: &dyn std::fmt::Display| {
        ClientError::Connect(format!("authentication handshake: {error}"))
    };
    send(writer, &encode_hello())
        .await
        .map_err(|error| broken(&error))?;
    let challenge = read_frame_async(reader)
        .await
        .map_err(|error| broken(&error))?;
    if handshake_kind(&challenge) != Some(HandshakeKind::Challenge) {
        return Err(unexpected(HandshakeKind::Challenge));
    }
    send(writer, &answer_challenge(&challenge, credentials)?)
        .await
        .map_err(|error| broken(&error))?;
    let outcome = read_frame_async(reader)
        .await
        .map_err(|error| broken(&error))?;
    if handshake_kind(&outcome) != Some(HandshakeKind::Authenticated) {
        return Err(unexpected(HandshakeKind::Authenticated));
    }
    read_outcome(&outcome)
}

async fn read_responses(connection: Weak<AsyncConnection>, mut reader: StreamHalf) {
    let reason = loop {
        let body = match read_frame_async(&mut reader).await {
            Ok(body) => body,
            Err(error) => break error.to_string(),
        };
        let response = match decode_response(&body) {
            Ok(response) => response,
            Err(error) => break format!("bad response: {error}"),
        };
        let Some(connection) = connection.upgrade() else {
            return;
        };
        let sender = connection.pending.borrow_mut().remove(&response.request_id);
        if let Some(sender) = sender {
            let _ = sender.try_send(outcome_of(response));
        }
    };
    if let Some(connection) = connection.upgrade() {
        connection.close(&reason);
    }
}

async fn write_frames(
    connection: Weak<AsyncConnection>,
    mut writer: StreamHalf,
    frames: LocalReceiver<Vec<u8>>,
) {
    while let Some(frame) = frames.recv().await {
        let written = async {
            writer.write_all(&frame).await?;
            writer.flush().await
        }
        .await;
        if let Err(error) = written {
            if let Some(connection) = connection.upgrade() {
                connection.close(&format!("write failed: {error}"));
            }
            return;
        }
    }
}

/// The glommio client. Lives on one executor (`!Send`). `ClientConfig::connections` is not
/// used: one connection carries every request, pipelined.
pub struct AsyncClient {
    config: ClientConfig,
    connection: RefCell<Option<Rc<AsyncConnection>>>,
    rng: RefCell<SeededRng>,
}

impl AsyncClient {
    /// Connects now, so a wrong endpoint fails here.
    ///
    /// Plaintext only: a config with `tls` set is refused (`InvalidRequest`) rather than
    /// connected without the encryption it asks for. The blocking `Client` speaks TLS.
    pub async fn connect(config: ClientConfig) -> Result<AsyncClient, ClientError> {
        if config.tls.is_some() {
            return Err(ClientError::InvalidRequest(
                "the glommio client does not speak TLS yet; use the blocking Client".to_string(),
            ));
        }
        let connection = AsyncConnection::open(&config).await?;
        Ok(AsyncClient {
            rng: RefCell::new(SeededRng::new(config.seed)),
            config,
            connection: RefCell::new(Some(connection)),
        })
    }

    async fn connection(&self) -> Result<Rc<AsyncConnection>, ClientError> {
        let current = self.connection.borrow().clone();
        if let Some(connection) = current
            && !connection.is_closed()
        {
            return Ok(connection);
        }
        let connection = AsyncConnection::open(&self.config).await?;
        *self.connection.borrow_mut() = Some(connection.clone());
        Ok(connection)
    }

    /// One attempt, no retries.
    pub async fn call_once(&self, operation: Operation, body: &Json) -> Result<Json, ClientError> {
        self.connection()
            .await?
            .send_and_wait(operation, body, self.config.request_timeout)
            .await
    }

    /// Runs one operation with the retry policy (retry.rs).
    pub async fn call(&self, operation: Operation, body: &Json) -> Result<Json, ClientError> {
        let call_deadline = Instant::now() + self.config.retry.deadline;
        let attempts = self.config.retry.attempts();
        let mut retry = 0;
        loop {
            let timeout = self
                .config
                .request_timeout
                .min(call_deadline.saturating_duration_since(Instant::now()));
            let error = match self.connection().await {
                Ok(connection) => match connection.send_and_wait(operation, body, timeout).await {
                    Ok(value) => return Ok(value),
                    Err(error) => error,
                },
                Err(error) => error,
            };
            if retry + 1 >= attempts || !retryable(operation, &error) {
                return Err(error);
            }
            let delay = self.config.retry.backoff(retry, &mut self.rng.borrow_mut());
            if Instant::now() + delay >= call_deadline {
                return Err(error);
            }
            glommio::timer::sleep(delay).await;
            retry += 1;
        }
    }
}

impl Drop for AsyncClient {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.borrow_mut().take() {
            connection.close("client dropped");
        }
    }
}

crate::operations::operation_methods!(AsyncClient, async);
