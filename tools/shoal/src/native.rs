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
//! Bounds: `NATIVE_CONNECTIONS_MAX` connections (the accept loop waits past it); per
//! connection `SERVER_REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX` requests in flight (the reader
//! stops reading past it, so TCP pushes back on the client) and `RESPONSE_QUEUE_FRAMES_MAX`
//! responses queued for the writer (handlers wait past it).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use serde_json::Value as Json;
use shoal_client::async_io::{read_frame_async, shutdown_now, split};
use shoal_http::TLS_HANDSHAKE_TIMEOUT;
use shoal_http::tls;
use shoal_protocol::frame::ReadFrameError;
use shoal_protocol::limits::{
    ATTRIBUTE_NESTING_DEPTH_MAX, SERVER_REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX,
};
use shoal_protocol::{
    DecodeError, Operation, ServiceError, decode_request, encode_response,
    encode_unsupported_version_response,
};
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

/// Binds `address` and serves it on this executor until the process ends. Returns the bound
/// address (port 0 picks one).
///
/// With `tls`, every connection must complete a TLS handshake within
/// [`TLS_HANDSHAKE_TIMEOUT`] before its first frame (the router's certificate, as on the HTTP
/// API); a connection whose first byte is not a TLS record is closed unanswered.
pub fn start(
    address: SocketAddr,
    router: Rc<Router>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(address).map_err(|error| error.to_string())?;
    let bound = listener.local_addr().map_err(|error| error.to_string())?;
    let acceptor = tls.map(|config| Rc::new(TlsAcceptor::from(config)));
    glommio::spawn_local(accept_connections(listener, router, acceptor)).detach();
    Ok(bound)
}

async fn accept_connections(
    listener: TcpListener,
    router: Rc<Router>,
    acceptor: Option<Rc<TlsAcceptor>>,
) {
    let connections = Rc::new(Semaphore::new(NATIVE_CONNECTIONS_MAX as u64));
    loop {
        let Ok(permit) = connections.acquire_static_permit(1).await else {
            return;
        };
        match listener.accept().await {
            Ok(stream) => {
                let router = router.clone();
                let acceptor = acceptor.clone();
                glommio::spawn_local(async move {
                    serve_connection(stream, router, acceptor).await;
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
    router: Rc<Router>,
    acceptor: Option<Rc<TlsAcceptor>>,
) {
    let peer = stream.peer_addr().ok();
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "native connection: cannot set TCP_NODELAY");
    }
    let Some(acceptor) = acceptor else {
        let (reader, writer, stream) = split(stream);
        return serve_frames(reader, writer, stream, router, peer).await;
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
    serve_frames(reader, writer, stream, router, peer).await;
}

/// Serves the frames of one connection until it ends: `reader` and `writer` are its two
/// directions (over TLS or not), `stream` the socket under them.
async fn serve_frames<R, W>(
    mut reader: R,
    writer: W,
    stream: Rc<std::cell::RefCell<TcpStream>>,
    router: Rc<Router>,
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
        let operation_value = request.operation_value;
        // Converted here, while the frame body is borrowed; the task owns the value tree.
        let request_body = request.body().map_err(|error| ServiceError {
            type_name: "SerializationException".to_string(),
            message: format!("Unexpected value in payload: {error}"),
            item: None,
        });
        let router = router.clone();
        let responses = responses.clone();
        glommio::spawn_local(async move {
            let frame = answer(&router, request_id, operation_value, request_body).await;
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

/// The router's one dispatch table ([`Router::dispatch`]), by the operation's DynamoDB name.
async fn dispatch(router: &Router, operation: Operation, body: Json) -> Result<Json, DynamoError> {
    match RouterOperation::from_name(operation.name()) {
        Some(operation) => router.dispatch(operation, body).await,
        None => Err(DynamoError::internal(format!(
            "Internal server error (operation {} has no handler)",
            operation.name()
        ))),
    }
}

/// Runs one request and returns its response frame.
async fn answer(
    router: &Router,
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
            Ok(body) => dispatch(router, operation, body)
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
            match encode_response(request_id, Err(&fallback)) {
                Ok(frame) => frame,
                // A short error without an item always encodes: a failure here is a broken
                // invariant of this module.
                Err(error) => {
                    shoal_io::fatal!(
                        "native listener: cannot encode a short error response: {error}"
                    )
                }
            }
        }
    }
}
