//! `BusClient`: the glommio client side of the bus for routers, tools and tests. One connection
//! to one shard; many requests in flight (pipelining), matched to responses by request id; a
//! timeout per request.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;
use shoal_wire::messages::{BusMessage, NodeRequest, NodeResponse, RequestFrame};
use shoal_wire::{AlignedVec, FrameDecoder, encode_frame};

use crate::error::ClientError;
use crate::limits::{
    CLIENT_REQUEST_TIMEOUT_DEFAULT, CLIENT_REQUESTS_IN_FLIGHT_MAX, CONNECT_TIMEOUT_DEFAULT,
    READ_CHUNK_BYTES,
};
use crate::notify::Notify;
use crate::tls::{BUS_TLS_HANDSHAKE_TIMEOUT, BusTls};
use shoal_io::tcp::{shutdown_now, split};

#[derive(Debug, Clone)]
pub struct BusClientConfig {
    pub connect_timeout: Duration,
    /// How long `call` waits for its response.
    pub request_timeout: Duration,
    /// Requests in flight at once; `call` waits for room past this.
    pub requests_in_flight_max: usize,
    /// Mutual TLS with the cluster CA (tls.rs): the shard's certificate is verified for the
    /// address dialled, and ours presented. `None`: plaintext.
    pub tls: Option<BusTls>,
}

impl Default for BusClientConfig {
    fn default() -> Self {
        BusClientConfig {
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_timeout: CLIENT_REQUEST_TIMEOUT_DEFAULT,
            requests_in_flight_max: CLIENT_REQUESTS_IN_FLIGHT_MAX,
            tls: None,
        }
    }
}

/// Counters of one client.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientStats {
    pub requests_sent: u64,
    pub responses_received: u64,
    pub timeouts: u64,
    /// Responses that arrived after their request timed out.
    pub late_responses: u64,
}

#[derive(Default)]
struct ResponseSlot {
    response: RefCell<Option<NodeResponse>>,
    filled: Notify,
}

struct ClientShared {
    outgoing: RefCell<VecDeque<AlignedVec>>,
    queued: Notify,
    pending: RefCell<HashMap<u64, Rc<ResponseSlot>>>,
    room: Notify,
    next_request_id: Cell<u64>,
    /// Set once when the connection ends; every later call fails with it.
    failure: RefCell<Option<ClientError>>,
    stats: RefCell<ClientStats>,
}

impl ClientShared {
    fn fail(&self, error: ClientError) {
        {
            let mut failure = self.failure.borrow_mut();
            if failure.is_none() {
                *failure = Some(error);
            }
        }
        let slots: Vec<Rc<ResponseSlot>> = self.pending.borrow().values().cloned().collect();
        for slot in slots {
            slot.filled.notify_all();
        }
        self.queued.notify_all();
        self.room.notify_all();
    }

    fn failure(&self) -> Option<ClientError> {
        self.failure.borrow().clone()
    }
}

/// A pipelining client of one shard. Lives on one glommio executor (`!Send`); dropping it
/// closes the connection and fails nothing silently: calls in progress end with
/// `ConnectionClosed` or their timeout.
pub struct BusClient {
    shared: Rc<ClientShared>,
    config: BusClientConfig,
    stream: Rc<RefCell<TcpStream>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl BusClient {
    pub async fn connect(
        address: SocketAddr,
        config: BusClientConfig,
    ) -> Result<BusClient, ClientError> {
        let stream = TcpStream::connect_timeout(address, config.connect_timeout)
            .await
            .map_err(|error| ClientError::from(std::io::Error::from(error)))?;
        stream
            .set_nodelay(true)
            .map_err(|error| ClientError::from(std::io::Error::from(error)))?;
        let shared = Rc::new(ClientShared {
            outgoing: RefCell::new(VecDeque::new()),
            queued: Notify::default(),
            pending: RefCell::new(HashMap::new()),
            room: Notify::default(),
            next_request_id: Cell::new(1),
            failure: RefCell::new(None),
            stats: RefCell::new(ClientStats::default()),
        });
        let (read_half, write_half, stream) = split(stream);
        let (reader, writer) = match &config.tls {
            None => (
                glommio::spawn_local(run_reader(shared.clone(), read_half)).detach(),
                glommio::spawn_local(run_writer(shared.clone(), write_half)).detach(),
            ),
            Some(tls) => {
                // Over one handle of the shared socket; `stream` stays for `shutdown_now`.
                let secured = match crate::tls::connect(
                    &tls.connector(),
                    address,
                    read_half,
                    BUS_TLS_HANDSHAKE_TIMEOUT,
                )
                .await
                {
                    Ok(secured) => secured,
                    Err(message) => {
                        shutdown_now(&stream);
                        return Err(ClientError::Io {
                            kind: std::io::ErrorKind::InvalidData,
                            message,
                        });
                    }
                };
                let (read_half, write_half) = futures_lite::io::split(secured);
                (
                    glommio::spawn_local(run_reader(shared.clone(), read_half)).detach(),
                    glommio::spawn_local(run_writer(shared.clone(), write_half)).detach(),
                )
            }
        };
        Ok(BusClient {
            shared,
            config,
            stream,
            reader,
            writer,
        })
    }

    /// Sends one request and waits for its response, or the request timeout. Many calls may be
    /// in flight at once (from several tasks, or joined futures); each is matched to its
    /// response by a request id this client assigns.
    pub async fn call(&self, request: NodeRequest) -> Result<NodeResponse, ClientError> {
        // Waits only while the in-flight bound is reached; each wake is a finished call, and
        // every call finishes by its timeout.
        while self.shared.pending.borrow().len() >= self.config.requests_in_flight_max.max(1) {
            if let Some(error) = self.shared.failure() {
                return Err(error);
            }
            self.shared.room.notified().await;
        }
        if let Some(error) = self.shared.failure() {
            return Err(error);
        }
        let request_id = self.shared.next_request_id.get();
        self.shared.next_request_id.set(request_id.wrapping_add(1));
        let frame = encode_frame(&BusMessage::Request(RequestFrame {
            request_id,
            request,
        }))
        .map_err(ClientError::Encode)?;
        let slot = Rc::new(ResponseSlot::default());
        self.shared
            .pending
            .borrow_mut()
            .insert(request_id, slot.clone());
        self.shared.outgoing.borrow_mut().push_back(frame);
        self.shared.queued.notify_all();
        self.shared.stats.borrow_mut().requests_sent += 1;

        let shared = &self.shared;
        let response = async {
            loop {
                if let Some(response) = slot.response.borrow_mut().take() {
                    return Ok(response);
                }
                if let Some(error) = shared.failure() {
                    return Err(error);
                }
                slot.filled.notified().await;
            }
        };
        let timeout = async {
            glommio::timer::sleep(self.config.request_timeout).await;
            Err(ClientError::Timeout)
        };
        let result = futures_lite::future::or(response, timeout).await;
        self.shared.pending.borrow_mut().remove(&request_id);
        self.shared.room.notify_all();
        if result == Err(ClientError::Timeout) {
            self.shared.stats.borrow_mut().timeouts += 1;
        }
        result
    }

    /// Requests sent and not yet answered or timed out.
    pub fn in_flight(&self) -> usize {
        self.shared.pending.borrow().len()
    }

    pub fn stats(&self) -> ClientStats {
        *self.shared.stats.borrow()
    }
}

impl Drop for BusClient {
    fn drop(&mut self) {
        self.shared.fail(ClientError::ConnectionClosed);
        shutdown_now(&self.stream);
        self.reader.cancel();
        self.writer.cancel();
    }
}

async fn run_reader(shared: Rc<ClientShared>, mut read_half: impl AsyncRead + Unpin) {
    let mut decoder = FrameDecoder::new();
    let mut buffer = vec![0u8; READ_CHUNK_BYTES];
    // One socket read per pass, until the connection ends.
    while shared.failure().is_none() {
        let read = match read_half.read(&mut buffer).await {
            Ok(0) => return shared.fail(ClientError::ConnectionClosed),
            Err(error) => return shared.fail(error.into()),
            Ok(read) => read,
        };
        let mut input = &buffer[..read];
        // Each decode call consumes at least one byte (shoal-wire frame invariant 5).
        for _ in 0..read {
            if input.is_empty() {
                break;
            }
            match decoder.decode(&mut input) {
                Ok(None) => break,
                Ok(Some(BusMessage::Response(frame))) => {
                    let slot = shared.pending.borrow().get(&frame.request_id).cloned();
                    let mut stats = shared.stats.borrow_mut();
                    match slot {
                        Some(slot) => {
                            stats.responses_received += 1;
                            *slot.response.borrow_mut() = Some(frame.response);
                            slot.filled.notify_all();
                        }
                        None => stats.late_responses += 1,
                    }
                }
                Ok(Some(other)) => {
                    return shared.fail(ClientError::Protocol {
                        message: format!(
                            "expected a response, got {:?}",
                            shoal_wire::MessageKind::of(&other)
                        ),
                    });
                }
                Err(error) => return shared.fail(ClientError::Frame(error)),
            }
        }
    }
}

async fn run_writer(shared: Rc<ClientShared>, mut write_half: impl AsyncWrite + Unpin) {
    // One drained queue per pass, until the connection ends.
    while shared.failure().is_none() {
        if shared.outgoing.borrow().is_empty() {
            shared.queued.notified().await;
            continue;
        }
        let mut bytes = Vec::new();
        for frame in shared.outgoing.borrow_mut().drain(..) {
            bytes.extend_from_slice(&frame);
        }
        // Flushed: a TLS stream holds sealed records until then.
        let written = async {
            write_half.write_all(&bytes).await?;
            write_half.flush().await
        };
        if let Err(error) = written.await {
            return shared.fail(error.into());
        }
    }
}
