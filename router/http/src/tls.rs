//! TLS for the router's ports: the server configuration built from a PEM certificate chain and
//! private key, and the guard a TLS port puts in front of every connection.
//!
//! rustls does the cryptography (on the `ring` provider, with its safe default protocol
//! versions and cipher suites: TLS 1.3 and 1.2, no older); this module only reads the files,
//! says precisely what is wrong with them at start-up, and bounds the handshake so a client
//! that stalls or speaks plaintext costs a task for at most [`TLS_HANDSHAKE_TIMEOUT`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A client has this long from connecting to finishing the TLS handshake. Generous for a real
/// client (a handshake is two round trips and a few milliseconds of CPU) and short enough that a
/// client which connects and says nothing, or never finishes, does not hold a task for long.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of every TLS connection: a record of content type handshake (RFC 8446 5.1).
/// Anything else on a TLS port is a plaintext client (or noise), answered without a handshake.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The most of a plaintext client's request read before it is answered.
const PLAINTEXT_READ_BYTES_MAX: usize = 16 * 1024;

/// What a plaintext HTTP client on a TLS port is told before the connection is closed, so that
/// someone who forgot `https://` sees why instead of a reset connection.
const PLAINTEXT_ON_TLS_PORT: &str = "This port speaks TLS only: use https:// instead of http://.\n";

/// Why the certificate and key cannot serve TLS. Each names the file and the fault, for the
/// start-up error an operator reads.
#[derive(Debug)]
pub enum TlsConfigError {
    Unreadable {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// The certificate file holds no `CERTIFICATE` PEM block.
    NoCertificate { path: PathBuf },
    /// A PEM block of the file does not decode.
    Malformed {
        what: &'static str,
        path: PathBuf,
        error: String,
    },
    /// The key file holds no PKCS#8, PKCS#1 or SEC1 private key.
    NoPrivateKey { path: PathBuf },
    /// The private key is not the key of the chain's first certificate.
    KeyMismatch { certificate: PathBuf, key: PathBuf },
    /// rustls refused the pair for another reason (an unsupported key type, say).
    Rejected { error: rustls::Error },
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::Unreadable { what, path, error } => {
                write!(
                    formatter,
                    "cannot read the TLS {what} {}: {error}",
                    path.display()
                )
            }
            TlsConfigError::NoCertificate { path } => write!(
                formatter,
                "the TLS certificate file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
            TlsConfigError::Malformed { what, path, error } => write!(
                formatter,
                "the TLS {what} {} is not valid PEM: {error}",
                path.display()
            ),
            TlsConfigError::NoPrivateKey { path } => write!(
                formatter,
                "the TLS key file {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                path.display()
            ),
            TlsConfigError::KeyMismatch { certificate, key } => write!(
                formatter,
                "the TLS private key {} does not belong to the certificate {} (the first certificate of the chain must be the server's own)",
                key.display(),
                certificate.display()
            ),
            TlsConfigError::Rejected { error } => {
                write!(
                    formatter,
                    "the TLS certificate and key cannot be used: {error}"
                )
            }
        }
    }
}

impl std::error::Error for TlsConfigError {}

/// Reads every certificate of a PEM file (a chain, or a CA bundle), in order.
pub fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let bytes = std::fs::read(path).map_err(|error| TlsConfigError::Unreadable {
        what,
        path: path.to_path_buf(),
        error,
    })?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsConfigError::Malformed {
            what,
            path: path.to_path_buf(),
            error: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let bytes = std::fs::read(path).map_err(|error| TlsConfigError::Unreadable {
        what: "private key",
        path: path.to_path_buf(),
        error,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey {
            path: path.to_path_buf(),
        },
        error => TlsConfigError::Malformed {
            what: "private key",
            path: path.to_path_buf(),
            error: error.to_string(),
        },
    })
}

/// The rustls server configuration for a certificate chain and its private key (PEM files).
/// Checks that the key is the first certificate's, so a mismatched pair fails at start-up,
/// not at the first client's handshake.
pub fn server_config(
    certificate_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = read_certificates(certificate_path, "certificate")?;
    let key = read_private_key(key_path)?;
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsConfigError::Rejected { error })?
        .with_no_client_auth()
        // Checks that the key's public half is the first certificate's.
        .with_single_cert(chain, key)
        .map_err(|error| match error {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsConfigError::KeyMismatch {
                    certificate: certificate_path.to_path_buf(),
                    key: key_path.to_path_buf(),
                }
            }
            error => TlsConfigError::Rejected { error },
        })?;
    Ok(Arc::new(config))
}

/// rustls's `ring` provider: TLS 1.3 and 1.2 with X25519 and the NIST curves. rustls 0.23.48
/// deprecated it because it lacks the post-quantum key exchange of the aws-lc-rs provider; we
/// keep ring on purpose, since aws-lc-rs needs cmake and builds for many minutes on our
/// machines. Moving to aws-lc-rs later changes this one function (and the crate features).
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a connection to a TLS port did not become a TLS stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The client sent something other than a TLS handshake (plaintext HTTP, say); it was told
    /// so if it looked like HTTP, and the connection closed.
    NotTls,
    /// The client did not finish the handshake within [`TLS_HANDSHAKE_TIMEOUT`].
    TimedOut,
    /// The client closed the connection before sending a byte (a load balancer's TCP health
    /// check, a port scan): counted apart, so that `Failed` means failed handshakes.
    Closed,
    /// The handshake failed (no common version or cipher suite, the client refused our
    /// certificate, a malformed message) or the connection broke.
    Failed,
}

/// What a TLS port answers a client whose first byte is not a TLS handshake record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaintextAnswer {
    /// A `400` saying to use `https://`, when the first byte looks like an HTTP method (the
    /// DynamoDB API's port).
    Http,
    /// Nothing: the connection closes (the native protocol's port, whose clients would not
    /// read an HTTP answer).
    Close,
}

/// Takes a freshly accepted connection of the HTTP API through the TLS handshake, within
/// `timeout` in all. Never panics on what the client sends; every failure closes the
/// connection.
pub async fn accept(
    acceptor: &TlsAcceptor,
    mut stream: TcpStream,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, HandshakeFailure> {
    let deadline = std::time::Instant::now() + timeout;
    screen(&mut stream, timeout, PlaintextAnswer::Http).await?;
    let remaining = deadline.saturating_duration_since(std::time::Instant::now());
    handshake(acceptor, stream, remaining).await
}

/// Waits (within `timeout`) for the connection's first byte, without consuming it, and refuses
/// the connection unless it starts a TLS handshake record: plaintext is never handed to
/// rustls, and a plaintext HTTP client learns why it is refused.
pub async fn screen(
    stream: &mut TcpStream,
    timeout: Duration,
    answer: PlaintextAnswer,
) -> Result<(), HandshakeFailure> {
    let mut first = [0u8; 1];
    let peeked =
        glommio::timer::timeout(timeout, async { Ok(stream.peek(&mut first).await) }).await;
    match peeked {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => Ok(()),
        Ok(Ok(1)) => {
            // A method name starts with a capital letter: answer in HTTP, which is what the
            // client speaks. Anything else gets no answer. Best effort: the client may be gone.
            if answer == PlaintextAnswer::Http && first[0].is_ascii_uppercase() {
                // Read what the client sent first (one read, bounded): closing a socket with
                // unread bytes resets it, and the client would see the reset, not the answer.
                let mut request = vec![0u8; PLAINTEXT_READ_BYTES_MAX];
                let _ =
                    glommio::timer::timeout(timeout, async { Ok(stream.read(&mut request).await) })
                        .await;
                let response = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PLAINTEXT_ON_TLS_PORT}",
                    PLAINTEXT_ON_TLS_PORT.len()
                );
                let _ = glommio::timer::timeout(timeout, async {
                    Ok(stream.write_all(response.as_bytes()).await)
                })
                .await;
            }
            let _ = stream.close().await;
            Err(HandshakeFailure::NotTls)
        }
        Ok(Ok(_)) => Err(HandshakeFailure::Closed),
        Ok(Err(_)) => Err(HandshakeFailure::Failed),
        Err(_) => Err(HandshakeFailure::TimedOut),
    }
}

/// The TLS handshake over `stream` (a screened connection, or a handle to one), within
/// `timeout`.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &TlsAcceptor,
    stream: S,
    timeout: Duration,
) -> Result<TlsStream<S>, HandshakeFailure> {
    match glommio::timer::timeout(timeout, async { Ok(acceptor.accept(stream).await) }).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(_)) => Err(HandshakeFailure::Failed),
        Err(_) => Err(HandshakeFailure::TimedOut),
    }
}
