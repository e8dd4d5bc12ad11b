//! The router's native protocol listener (net/protocol/FORMAT.md), on the router's executor
//! and its `Router`, beside the HTTP API.
//!
//! Per connection: a reader loop that reads frames (length checked before the body is buffered,
//! crc32c before the flatbuffers verifier), runs each request in its own task (so requests of
//! one connection run concurrently and answer in any order), and a writer task that writes the
//! responses, each tagged with its request id. A bad frame closes the connection at once; a
//! sound version 1 request is answered with the version error (FORMAT.md, "Versions").
//!
//! Version 2 carries typed values, no JSON: each request's members become the DynamoDB JSON
//! value tree the router's operations take (shoal_protocol's decoder, in memory), so the HTTP
//! API and this listener share one validation path and DynamoDB's messages; the router's
//! answer is encoded back into the schema's typed tables.
//!
//! Authentication (FORMAT.md, "Authentication"): a router that verifies keys serves a
//! connection's requests only after its handshake (Hello, Challenge, Authenticate,
//! Authenticated) proved that the client holds the secret of one of the cluster's access
//! keys; each request is then authorised with that key's role and tables by the same
//! `AccessControl` the HTTP API uses, before the router sees it (a refused request costs no
//! capacity). Requests before that are answered MissingAuthenticationTokenException; a failed
//! handshake is answered with its error and the connection closed (its challenge is spent); a
//! connection not authenticated within `AUTHENTICATION_TIMEOUT` is closed. With `--auth none`,
//! requests need no handshake, and a handshake is answered after checking its shape only.
//!
//! Bounds: `NATIVE_CONNECTIONS_MAX` connections (the accept loop waits past it); per
//! connection `SERVER_REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX` requests in flight (the reader
//! stops reading past it, so TCP pushes back on the client) and `RESPONSE_QUEUE_FRAMES_MAX`
//! responses queued for the writer (handlers wait past it).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use serde_json::Value as Json;
use shoal_client::async_io::{read_frame_async, shutdown_now, split};
use shoal_http::TLS_HANDSHAKE_TIMEOUT;
use shoal_http::sigv4::{SIGNATURE_MISMATCH, format_timestamp};
use shoal_http::tls;
use shoal_protocol::frame::ReadFrameError;
use shoal_protocol::handshake::{
    Authenticate, Authenticated, CLOCK_SKEW_MAX, Challenge, ClockCheck, HandshakeKind, NONCE_BYTES,
    check_clock, decode_hello, handshake_kind,
};
use shoal_protocol::limits::{
    ATTRIBUTE_NESTING_DEPTH_MAX, SERVER_REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX,
};
use shoal_protocol::{
    DecodeError, Operation, ServiceError, decode_request, encode_response,
    encode_unsupported_version_response,
};
use shoal_router::access::{AccessControl, UNRECOGNIZED_CLIENT, UNRECOGNIZED_CLIENT_MESSAGE};
use shoal_router::{DynamoError, Router, RouterOperation};

/// Native connections served at once; the accept loop waits for one to end past it.
pub const NATIVE_CONNECTIONS_MAX: usize = 1024;
/// Responses of one connection queued for its writer.
const RESPONSE_QUEUE_FRAMES_MAX: usize = 64;
// The protocol's converters must carry every nesting the model accepts, and more, so that the
// router, not the converter, refuses what is too deep, with DynamoDB's message.
const _: () = assert!(ATTRIBUTE_NESTING_DEPTH_MAX > shoal_model::value::NESTING_DEPTH_MAX);

/// The pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// A connection to a router that verifies keys must finish its handshake within this of its
/// first frame (after TLS), or it is closed: an unauthenticated connection would otherwise
/// hold one of `NATIVE_CONNECTIONS_MAX` slots for as long as its peer likes.
pub const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(10);

const MISSING_AUTHENTICATION_TOKEN: &str = "MissingAuthenticationTokenException";
const INCOMPLETE_SIGNATURE: &str = "IncompleteSignatureException";
const INVALID_SIGNATURE: &str = "InvalidSignatureException";
/// What a request on a connection that has not authenticated is answered.
pub const NOT_AUTHENTICATED_MESSAGE: &str = "This connection is not authenticated: send the handshake (Hello, then Authenticate with an access key) before requests (net/protocol/FORMAT.md, \"Authentication\")";
/// What an Authenticate answering no challenge, or another connection's, is answered.
pub const NO_CHALLENGE_MESSAGE: &str =
    "No challenge was sent on this connection: send Hello and answer its Challenge";
pub const OTHER_CHALLENGE_MESSAGE: &str = "The handshake answers a challenge this connection was not sent: a handshake is valid only on the connection it was made for (replayed?)";
pub const ALREADY_AUTHENTICATED_MESSAGE: &str = "This connection is already authenticated";

/// The exceptions native authentication answers, as /metrics counts them.
pub const AUTHENTICATION_REFUSALS: [&str; 4] = [
    MISSING_AUTHENTICATION_TOKEN,
    INCOMPLETE_SIGNATURE,
    INVALID_SIGNATURE,
    UNRECOGNIZED_CLIENT,
];

/// The native listener's counters, on the router's /metrics beside the HTTP API's.
pub struct NativeMetrics {
    verifies: bool,
    authenticated: Cell<u64>,
    /// Per exception in [`AUTHENTICATION_REFUSALS`] order.
    refused: [Cell<u64>; AUTHENTICATION_REFUSALS.len()],
    timed_out: Cell<u64>,
}

fn increment(counter: &Cell<u64>) {
    counter.set(counter.get().saturating_add(1));
}

impl NativeMetrics {
    /// `verifies`: whether connections must authenticate (not `--auth none`).
    pub fn new(verifies: bool) -> NativeMetrics {
        NativeMetrics {
            verifies,
            authenticated: Cell::new(0),
            refused: Default::default(),
            timed_out: Cell::new(0),
        }
    }

    fn refused(&self, type_name: &str) {
        if let Some(index) = AUTHENTICATION_REFUSALS
            .iter()
            .position(|name| *name == type_name)
        {
            increment(&self.refused[index]);
        }
    }

    /// Prometheus text, each family whole.
    pub fn render(&self) -> String {
        let mut text = format!(
            "# HELP shoal_native_keys_verified 1 if native connections must authenticate with an access key, 0 if they need none (--auth none).\n\
             # TYPE shoal_native_keys_verified gauge\n\
             shoal_native_keys_verified {}\n\
             # HELP shoal_native_authenticated_total Native connections that completed the authentication handshake.\n\
             # TYPE shoal_native_authenticated_total counter\n\
             shoal_native_authenticated_total {}\n\
             # HELP shoal_native_authentication_timeouts_total Native connections closed for not authenticating within the timeout.\n\
             # TYPE shoal_native_authentication_timeouts_total counter\n\
             shoal_native_authentication_timeouts_total {}\n\
             # HELP shoal_native_authentication_refused_total Native handshakes and requests refused by authentication, by exception.\n\
             # TYPE shoal_native_authentication_refused_total counter\n",
            u8::from(self.verifies),
            self.authenticated.get(),
            self.timed_out.get(),
        );
        for (name, count) in AUTHENTICATION_REFUSALS.iter().zip(&self.refused) {
            text.push_str(&format!(
                "shoal_native_authentication_refused_total{{exception=\"{name}\"}} {}\n",
                count.get()
            ));
        }
        text
    }
}

/// What the native listener serves with.
pub struct NativeListener {
    pub router: Rc<Router>,
    /// With a configuration, every connection speaks TLS (the HTTP API's certificate).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The access checks of a router that verifies keys; `None` under `--auth none`.
    pub access: Option<Rc<AccessControl>>,
    pub metrics: Rc<NativeMetrics>,
}

/// Where a connection stands in the handshake (FORMAT.md, "Authentication").
enum Session {
    /// No key yet. `challenge`: the nonce sent in answer to the last Hello, until an
    /// Authenticate spends it.
    Pending {
        challenge: Option<[u8; NONCE_BYTES]>,
    },
    /// The connection speaks for this key (`None`: any credentials, `--auth none`).
    Authenticated { access_key_id: Option<Rc<str>> },
}

/// A refusal: the exception name and its message.
type Refusal = (String, String);

fn refusal(type_name: &str, message: impl Into<String>) -> Refusal {
    (type_name.to_string(), message.into())
}

/// Binds `address` and serves it on this executor until the process ends. Returns the bound
/// address (port 0 picks one).
///
/// With `listener.tls`, every connection must complete a TLS handshake within
/// [`TLS_HANDSHAKE_TIMEOUT`] before its first frame (the router's certificate, as on the HTTP
/// API); a connection whose first byte is not a TLS record is closed unanswered.
pub fn start(address: SocketAddr, listener: NativeListener) -> Result<SocketAddr, String> {
    let socket = TcpListener::bind(address).map_err(|error| error.to_string())?;
    let bound = socket.local_addr().map_err(|error| error.to_string())?;
    let acceptor = listener
        .tls
        .clone()
        .map(|config| Rc::new(TlsAcceptor::from(config)));
    glommio::spawn_local(accept_connections(socket, Rc::new(listener), acceptor)).detach();
    Ok(bound)
}

async fn accept_connections(
    socket: TcpListener,
    listener: Rc<NativeListener>,
    acceptor: Option<Rc<TlsAcceptor>>,
) {
    let connections = Rc::new(Semaphore::new(NATIVE_CONNECTIONS_MAX as u64));
    loop {
        let Ok(permit) = connections.acquire_static_permit(1).await else {
            return;
        };
        match socket.accept().await {
            Ok(stream) => {
                let listener = listener.clone();
                let acceptor = acceptor.clone();
                glommio::spawn_local(async move {
                    serve_connection(stream, listener, acceptor).await;
                    drop(permit);
                })
                .detach();
            }
            Err(error) => {
                tracing::warn!(%error, "native listener: accept failed");
                drop(permit);
                glommio::timer::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    listener: Rc<NativeListener>,
    acceptor: Option<Rc<TlsAcceptor>>,
) {
    let peer = stream.peer_addr().ok();
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "native connection: cannot set TCP_NODELAY");
    }
    let Some(acceptor) = acceptor else {
        let (reader, writer, stream) = split(stream);
        return serve_frames(reader, writer, stream, listener, peer).await;
    };
    let deadline = Instant::now() + TLS_HANDSHAKE_TIMEOUT;
    if let Err(failure) = tls::screen(
        &mut stream,
        TLS_HANDSHAKE_TIMEOUT,
        tls::PlaintextAnswer::Close,
    )
    .await
    {
        tracing::debug!(?peer, ?failure, "native connection: not TLS; closed");
        return;
    }
    // The TLS stream runs over one handle of the shared socket; the third handle stays here for
    // `shutdown_now`, which must reach the socket under the TLS layer.
    let (handle, _, stream) = split(stream);
    let remaining = deadline.saturating_duration_since(Instant::now());
    let secured = match tls::handshake(&acceptor, handle, remaining).await {
        Ok(secured) => secured,
        Err(failure) => {
            tracing::debug!(?peer, ?failure, "native connection: TLS handshake failed");
            shutdown_now(&stream);
            return;
        }
    };
    let (reader, writer) = futures_lite::io::split(secured);
    serve_frames(reader, writer, stream, listener, peer).await;
}

/// Closes `stream` after [`AUTHENTICATION_TIMEOUT`] unless `authenticated` was set by then.
/// Holds the socket weakly: a connection that ended meanwhile is left alone.
fn close_unless_authenticated(
    stream: &Rc<std::cell::RefCell<TcpStream>>,
    authenticated: &Rc<Cell<bool>>,
    metrics: &Rc<NativeMetrics>,
    peer: Option<SocketAddr>,
) {
    let stream = Rc::downgrade(stream);
    let authenticated = authenticated.clone();
    let metrics = metrics.clone();
    glommio::spawn_local(async move {
        glommio::timer::sleep(AUTHENTICATION_TIMEOUT).await;
        if authenticated.get() {
            return;
        }
        if let Some(stream) = stream.upgrade() {
            tracing::debug!(
                ?peer,
                "native connection: not authenticated in time; closing"
            );
            increment(&metrics.timed_out);
            shutdown_now(&stream);
        }
    })
    .detach();
}

/// Serves the frames of one connection until it ends: `reader` and `writer` are its two
/// directions (over TLS or not), `stream` the socket under them.
async fn serve_frames<R, W>(
    mut reader: R,
    writer: W,
    stream: Rc<std::cell::RefCell<TcpStream>>,
    listener: Rc<NativeListener>,
    peer: Option<SocketAddr>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + 'static,
{
    let (responses, frames) = local_channel::new_bounded(RESPONSE_QUEUE_FRAMES_MAX);
    let responses = Rc::new(responses);
    let writer = glommio::spawn_local(write_responses(writer, frames, stream.clone())).detach();
    let in_flight = Rc::new(Semaphore::new(
        SERVER_REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX as u64,
    ));
    let mut session = Session::Pending { challenge: None };
    let authenticated = Rc::new(Cell::new(false));
    if listener.access.is_some() {
        close_unless_authenticated(&stream, &authenticated, &listener.metrics, peer);
    }
    loop {
        // Taken before reading: past the bound, this connection's requests wait in TCP.
        let Ok(permit) = in_flight.acquire_static_permit(1).await else {
            break;
        };
        let body = match read_frame_async(&mut reader).await {
            Ok(body) => body,
            Err(ReadFrameError::Closed) => break,
            Err(error) => {
                tracing::info!(?peer, %error, "native connection: bad frame; closing");
                shutdown_now(&stream);
                break;
            }
        };
        if let Some(kind) = handshake_kind(&body) {
            // Handled here, in order: nothing after a handshake message is read before it is
            // answered, so a request pipelined behind an Authenticate runs as its key.
            let (frame, close) = handshake_step(&listener, &mut session, kind, &body).await;
            if let Session::Authenticated { .. } = session {
                authenticated.set(true);
            }
            if responses.send(frame).await.is_err() || close {
                break;
            }
            drop(permit);
            continue;
        }
        let request = match decode_request(&body) {
            Ok(request) => request,
            Err(DecodeError::UnsupportedVersion {
                version,
                request_id,
            }) => {
                // A sound request of an older client: told, in its own format, and the
                // connection stays (its next request gets the same answer).
                tracing::debug!(?peer, version, "native connection: old protocol version");
                let frame = encode_unsupported_version_response(version, request_id);
                if responses.send(frame).await.is_err() {
                    break;
                }
                drop(permit);
                continue;
            }
            Err(error) => {
                tracing::info!(?peer, %error, "native connection: bad request buffer; closing");
                shutdown_now(&stream);
                break;
            }
        };
        let request_id = request.request_id;
        let caller = match (&listener.access, &session) {
            (None, _) => None,
            (Some(_), Session::Authenticated { access_key_id }) => access_key_id.clone(),
            (Some(_), Session::Pending { .. }) => {
                // Refused before its members are even converted: it costs nothing.
                listener.metrics.refused(MISSING_AUTHENTICATION_TOKEN);
                let refused = ServiceError {
                    type_name: MISSING_AUTHENTICATION_TOKEN.to_string(),
                    message: NOT_AUTHENTICATED_MESSAGE.to_string(),
                    item: None,
                };
                let frame = short_error_frame(request_id, &refused);
                if responses.send(frame).await.is_err() {
                    break;
                }
                drop(permit);
                continue;
            }
        };
        let operation_value = request.operation_value;
        // Converted here, while the frame body is borrowed; the task owns the value tree.
        let request_body = request.body().map_err(|error| ServiceError {
            type_name: "SerializationException".to_string(),
            message: format!("Unexpected value in payload: {error}"),
            item: None,
        });
        let listener = listener.clone();
        let responses = responses.clone();
        glommio::spawn_local(async move {
            let frame = answer(
                &listener,
                caller.as_deref(),
                request_id,
                operation_value,
                request_body,
            )
            .await;
            // Fails only when the writer has stopped (the connection is gone).
            let _ = responses.send(frame).await;
            drop(permit);
        })
        .detach();
    }
    // The writer ends once every request task has queued its response and dropped its sender.
    drop(responses);
    if let Some(()) = writer.await {
        shutdown_now(&stream);
    }
}

/// One handshake message: the frame to answer, and whether to close the connection after it
/// (a refused handshake spends the connection: its challenge is gone).
async fn handshake_step(
    listener: &NativeListener,
    session: &mut Session,
    kind: HandshakeKind,
    body: &[u8],
) -> (Vec<u8>, bool) {
    let outcome = match kind {
        HandshakeKind::Hello => match hello(listener, session, body) {
            Ok(challenge) => return (challenge.encode(), false),
            Err(refused) => Err(refused),
        },
        HandshakeKind::Authenticate => authenticate(listener, session, body).await,
        // The server's own messages, sent by a client: not something it may say.
        HandshakeKind::Challenge | HandshakeKind::Authenticated => Err(refusal(
            INCOMPLETE_SIGNATURE,
            format!("A client does not send {kind:?}: send Hello, then Authenticate"),
        )),
    };
    match outcome {
        Ok(access_key_id) => {
            increment(&listener.metrics.authenticated);
            *session = Session::Authenticated {
                access_key_id: access_key_id.map(Rc::from),
            };
            (Authenticated { outcome: Ok(()) }.encode(), false)
        }
        Err((type_name, message)) => {
            listener.metrics.refused(&type_name);
            tracing::debug!(%type_name, %message, "native connection: handshake refused");
            (
                Authenticated {
                    outcome: Err((type_name, message)),
                }
                .encode(),
                true,
            )
        }
    }
}

/// A Hello: a fresh challenge for this connection (a second Hello replaces the first).
fn hello(
    listener: &NativeListener,
    session: &mut Session,
    body: &[u8],
) -> Result<Challenge, Refusal> {
    if let Session::Authenticated { .. } = session {
        return Err(refusal(INCOMPLETE_SIGNATURE, ALREADY_AUTHENTICATED_MESSAGE));
    }
    decode_hello(body).map_err(|error| {
        refusal(
            INCOMPLETE_SIGNATURE,
            format!("The handshake is malformed: {error}"),
        )
    })?;
    let mut nonce = [0u8; NONCE_BYTES];
    // Without a random source, no challenge can be trusted: refused, not weakened.
    getrandom::fill(&mut nonce).map_err(|error| {
        refusal(
            "InternalServerError",
            format!("Internal server error (no random source for a challenge: {error})"),
        )
    })?;
    *session = Session::Pending {
        challenge: Some(nonce),
    };
    Ok(Challenge {
        nonce,
        verifies: listener.access.is_some(),
    })
}

fn unix_seconds_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// An Authenticate, checked in SigV4's order (sigv4.rs): shape, challenge, time, key,
/// signature. Returns the key id (`None` under `--auth none`, where only the shape and the
/// challenge are checked).
async fn authenticate(
    listener: &NativeListener,
    session: &mut Session,
    body: &[u8],
) -> Result<Option<String>, Refusal> {
    let challenge = match session {
        Session::Pending { challenge } => challenge.take(),
        Session::Authenticated { .. } => {
            return Err(refusal(INCOMPLETE_SIGNATURE, ALREADY_AUTHENTICATED_MESSAGE));
        }
    };
    let message = Authenticate::decode(body).map_err(|error| {
        refusal(
            INCOMPLETE_SIGNATURE,
            format!("The handshake is malformed: {error}"),
        )
    })?;
    let Some(nonce) = challenge else {
        return Err(refusal(INVALID_SIGNATURE, NO_CHALLENGE_MESSAGE));
    };
    // The nonce is no secret (the client was sent it): a plain comparison.
    if message.nonce != nonce {
        return Err(refusal(INVALID_SIGNATURE, OTHER_CHALLENGE_MESSAGE));
    }
    let Some(access) = &listener.access else {
        return Ok(None);
    };
    let now = unix_seconds_now();
    let skew_minutes = CLOCK_SKEW_MAX.as_secs() / 60;
    // DynamoDB's texts for a SigV4 request time outside the window, with this clock.
    match check_clock(message.unix_seconds, now) {
        ClockCheck::Current => {}
        ClockCheck::Expired { earliest } => {
            return Err(refusal(
                INVALID_SIGNATURE,
                format!(
                    "Signature expired: {} is now earlier than {} ({} - {skew_minutes} min.)",
                    format_timestamp(message.unix_seconds),
                    format_timestamp(earliest),
                    format_timestamp(now)
                ),
            ));
        }
        ClockCheck::NotYetCurrent { latest } => {
            return Err(refusal(
                INVALID_SIGNATURE,
                format!(
                    "Signature not yet current: {} is still later than {} ({} + {skew_minutes} min.)",
                    format_timestamp(message.unix_seconds),
                    format_timestamp(latest),
                    format_timestamp(now)
                ),
            ));
        }
    }
    let Some(secret) = access.secret(&message.access_key_id).await else {
        return Err(refusal(UNRECOGNIZED_CLIENT, UNRECOGNIZED_CLIENT_MESSAGE));
    };
    if !message.signature_matches(&secret) {
        return Err(refusal(INVALID_SIGNATURE, SIGNATURE_MISMATCH));
    }
    Ok(Some(message.access_key_id))
}

async fn write_responses<W: AsyncWrite + Unpin>(
    mut writer: W,
    frames: LocalReceiver<Vec<u8>>,
    stream: Rc<std::cell::RefCell<TcpStream>>,
) {
    while let Some(frame) = frames.recv().await {
        let written = async {
            writer.write_all(&frame).await?;
            writer.flush().await
        }
        .await;
        if let Err(error) = written {
            tracing::debug!(%error, "native connection: write failed; closing");
            shutdown_now(&stream);
            return;
        }
    }
}

fn service_error(error: DynamoError) -> ServiceError {
    ServiceError {
        type_name: error.type_name,
        message: error.message,
        item: error.item,
    }
}

/// The router's one dispatch table ([`Router::dispatch`]), by the operation's DynamoDB name,
/// after the caller's key is authorised for it (before anything is charged).
async fn dispatch(
    listener: &NativeListener,
    caller: Option<&str>,
    operation: Operation,
    body: Json,
) -> Result<Json, DynamoError> {
    if let Some(access) = &listener.access {
        // The reader loop sends no request of an unauthenticated connection here; should that
        // ever break, the request is refused, not served without a key.
        let Some(access_key_id) = caller else {
            return Err(DynamoError::new(
                MISSING_AUTHENTICATION_TOKEN,
                NOT_AUTHENTICATED_MESSAGE,
            ));
        };
        access
            .authorize(access_key_id, operation.name(), &body)
            .await?;
    }
    match RouterOperation::from_name(operation.name()) {
        Some(operation) => listener.router.dispatch(operation, body).await,
        None => Err(DynamoError::internal(format!(
            "Internal server error (operation {} has no handler)",
            operation.name()
        ))),
    }
}

/// The frame of an error without an item. Always encodes (short texts, no members): a
/// failure is a broken invariant of this module.
fn short_error_frame(request_id: u64, error: &ServiceError) -> Vec<u8> {
    match encode_response(request_id, Err(error)) {
        Ok(frame) => frame,
        Err(error) => {
            shoal_io::fatal!("native listener: cannot encode a short error response: {error}")
        }
    }
}

/// Runs one request and returns its response frame. `caller`: the connection's key, when the
/// router verifies keys.
async fn answer(
    listener: &NativeListener,
    caller: Option<&str>,
    request_id: u64,
    operation_value: u8,
    body: Result<Json, ServiceError>,
) -> Vec<u8> {
    let outcome = match Operation::from_wire_value(operation_value) {
        None => Err(ServiceError {
            type_name: "UnknownOperationException".to_string(),
            message: format!("Unknown operation value {operation_value}"),
            item: None,
        }),
        Some(operation) => match body {
            Ok(body) => dispatch(listener, caller, operation, body)
                .await
                .map_err(service_error),
            Err(error) => Err(error),
        },
    };
    let encoded = match &outcome {
        Ok(body) => encode_response(request_id, Ok(body)),
        Err(error) => encode_response(request_id, Err(error)),
    };
    match encoded {
        Ok(frame) => frame,
        Err(error) => {
            // A body over the protocol's limit, or a member the schema does not carry (a router
            // answer this listener does not know: a bug, named in the message), fails to
            // encode; the client is told so.
            let fallback = ServiceError {
                type_name: "InternalServerError".to_string(),
                message: format!("The response cannot be sent: {error}"),
                item: None,
            };
            short_error_frame(request_id, &fallback)
        }
    }
}
