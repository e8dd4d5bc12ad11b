//! Optional mutual TLS on the bus, with a cluster CA.
//!
//! Every node and router of a cluster holds a certificate signed by the cluster's CA, and its
//! private key. With a [`BusTls`] in its configuration a bus accepts only connections that
//! complete a TLS handshake presenting a client certificate the CA signed (a plaintext peer, or
//! one whose certificate another CA signed, is refused in the handshake and counted), and a
//! bus or [`crate::BusClient`] connects only to peers whose server certificate the CA signed
//! for the IP address it dials (node certificates must carry their bus addresses' IPs as
//! subject alternative names).
//!
//! What it proves: the peer holds a key the cluster CA certified. It does not tie a
//! certificate to a node id (a holder of any cluster certificate can introduce itself as any
//! node with `Hello`): the CA certifies cluster members, and the firewall and the CA's key are
//! what keep others out.
//!
//! rustls on the ring provider (as the router's TLS, router/http/src/tls.rs), TLS 1.3 and 1.2;
//! futures-rustls drives it over glommio's readiness-based streams. The handshake is bounded by
//! [`BUS_TLS_HANDSHAKE_TIMEOUT`] on both sides.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::{TlsAcceptor, TlsConnector, client, server};
use glommio::net::TcpStream;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A peer has this long from its TCP connection to a finished TLS handshake, either side: a
/// handshake is two round trips and a few milliseconds of CPU between machines of one cluster,
/// and a peer that stalls must not hold an inbound connection slot for long.
pub const BUS_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The first byte of every TLS connection: a handshake record (RFC 8446 5.1). A bus connection
/// that starts otherwise is a plaintext peer, counted apart from failed handshakes.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A node's (or router's) bus TLS: its certificate chain and key, and the cluster CA, made into
/// the rustls configurations for both directions. Cheap to clone (two `Arc`s); `Send`, so one
/// value read at start serves every shard executor.
#[derive(Clone)]
pub struct BusTls {
    /// Accepting: our certificate, and client certificates verified against the CA.
    server: Arc<ServerConfig>,
    /// Connecting: the server's certificate verified against the CA, and ours presented.
    client: Arc<ClientConfig>,
}

impl fmt::Debug for BusTls {
    // The configurations hold the private key: never printed.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("BusTls { .. }")
    }
}

/// Why the files cannot make a bus TLS configuration. Each names the file, for the start-up
/// error an operator reads.
#[derive(Debug)]
pub enum BusTlsError {
    Unreadable {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file that must hold certificates holds no `CERTIFICATE` PEM block.
    NoCertificate { what: &'static str, path: PathBuf },
    Malformed {
        what: &'static str,
        path: PathBuf,
        error: String,
    },
    /// The key file holds no PKCS#8, PKCS#1 or SEC1 private key.
    NoPrivateKey { path: PathBuf },
    /// The private key is not the key of the chain's first certificate.
    KeyMismatch { certificate: PathBuf, key: PathBuf },
    /// A CA certificate rustls cannot use as a trust anchor.
    BadCa { path: PathBuf, error: String },
    /// rustls refused the configuration for another reason (an unsupported key type, say).
    Rejected { error: String },
}

impl fmt::Display for BusTlsError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusTlsError::Unreadable { what, path, error } => {
                write!(
                    formatter,
                    "cannot read the bus TLS {what} {}: {error}",
                    path.display()
                )
            }
            BusTlsError::NoCertificate { what, path } => write!(
                formatter,
                "the bus TLS {what} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
            BusTlsError::Malformed { what, path, error } => write!(
                formatter,
                "the bus TLS {what} {} is not valid PEM: {error}",
                path.display()
            ),
            BusTlsError::NoPrivateKey { path } => write!(
                formatter,
                "the bus TLS key file {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                path.display()
            ),
            BusTlsError::KeyMismatch { certificate, key } => write!(
                formatter,
                "the bus TLS private key {} does not belong to the certificate {} (the first certificate of the chain must be this node's own)",
                key.display(),
                certificate.display()
            ),
            BusTlsError::BadCa { path, error } => write!(
                formatter,
                "the bus TLS CA bundle {} holds a certificate that cannot be a trust anchor: {error}",
                path.display()
            ),
            BusTlsError::Rejected { error } => {
                write!(formatter, "the bus TLS files cannot be used: {error}")
            }
        }
    }
}

impl std::error::Error for BusTlsError {}

fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, BusTlsError> {
    let bytes = std::fs::read(path).map_err(|error| BusTlsError::Unreadable {
        what,
        path: path.to_path_buf(),
        error,
    })?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| BusTlsError::Malformed {
            what,
            path: path.to_path_buf(),
            error: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(BusTlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, BusTlsError> {
    let bytes = std::fs::read(path).map_err(|error| BusTlsError::Unreadable {
        what: "private key",
        path: path.to_path_buf(),
        error,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => BusTlsError::NoPrivateKey {
            path: path.to_path_buf(),
        },
        error => BusTlsError::Malformed {
            what: "private key",
            path: path.to_path_buf(),
            error: error.to_string(),
        },
    })
}

/// rustls's `ring` provider, as router/http/src/tls.rs explains (aws-lc-rs needs cmake and
/// builds for many minutes on our machines).
#[allow(deprecated)]
fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl BusTls {
    /// Reads the node's certificate chain (its own certificate first), its private key and
    /// the cluster CA bundle (PEM files), and checks them now: a missing file, a key that is
    /// not the certificate's, or a CA that cannot anchor trust stops the process at start,
    /// with the file named, not at the first peer's handshake.
    pub fn from_files(
        certificate_path: &Path,
        key_path: &Path,
        ca_path: &Path,
    ) -> Result<BusTls, BusTlsError> {
        let chain = read_certificates(certificate_path, "certificate")?;
        let key = read_private_key(key_path)?;
        let mut roots = RootCertStore::empty();
        for certificate in read_certificates(ca_path, "CA bundle")? {
            roots.add(certificate).map_err(|error| BusTlsError::BadCa {
                path: ca_path.to_path_buf(),
                error: error.to_string(),
            })?;
        }
        let roots = Arc::new(roots);
        let provider = crypto_provider();
        let mismatch = |error: rustls::Error| match error {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                BusTlsError::KeyMismatch {
                    certificate: certificate_path.to_path_buf(),
                    key: key_path.to_path_buf(),
                }
            }
            error => BusTlsError::Rejected {
                error: error.to_string(),
            },
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|error| BusTlsError::BadCa {
                path: ca_path.to_path_buf(),
                error: error.to_string(),
            })?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| BusTlsError::Rejected {
                error: error.to_string(),
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(mismatch)?;
        // Bus connections are long-lived and never resumed: no session tickets to send (the
        // peer writer never reads, and they would sit unread in its socket).
        server.send_tls13_tickets = 0;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| BusTlsError::Rejected {
                error: error.to_string(),
            })?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(mismatch)?;
        Ok(BusTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server.clone())
    }

    pub(crate) fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.client.clone())
    }
}

/// Why an inbound connection did not become a TLS stream, as the bus counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Its first byte is not a TLS handshake record: a plaintext peer (a node or router
    /// without bus TLS, or something else).
    NotTls,
    /// It did not finish within [`BUS_TLS_HANDSHAKE_TIMEOUT`].
    TimedOut,
    /// It closed before sending a byte (a TCP health check, a port scan).
    Closed,
    /// The handshake failed: no client certificate, one the cluster CA did not sign (or
    /// expired), no common protocol version, a broken connection.
    Failed,
}

impl HandshakeFailure {
    /// Every reason, in the order `BusStats::tls_handshakes_failed` counts them, with the
    /// label /metrics gives it.
    pub const ALL: [(HandshakeFailure, &'static str); 4] = [
        (HandshakeFailure::NotTls, "not_tls"),
        (HandshakeFailure::TimedOut, "timed_out"),
        (HandshakeFailure::Closed, "closed"),
        (HandshakeFailure::Failed, "failed"),
    ];

    pub fn index(self) -> usize {
        match self {
            HandshakeFailure::NotTls => 0,
            HandshakeFailure::TimedOut => 1,
            HandshakeFailure::Closed => 2,
            HandshakeFailure::Failed => 3,
        }
    }
}

/// Waits (within `timeout`) for an accepted connection's first byte without consuming it, and
/// refuses the connection unless it starts a TLS handshake record: plaintext is never handed
/// to rustls, and counted as what it is.
pub(crate) async fn screen(stream: &TcpStream, timeout: Duration) -> Result<(), HandshakeFailure> {
    let mut first = [0u8; 1];
    let peeked =
        glommio::timer::timeout(timeout, async { Ok(stream.peek(&mut first).await) }).await;
    match peeked {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => Ok(()),
        Ok(Ok(1)) => Err(HandshakeFailure::NotTls),
        Ok(Ok(_)) => Err(HandshakeFailure::Closed),
        Ok(Err(_)) => Err(HandshakeFailure::Failed),
        Err(_) => Err(HandshakeFailure::TimedOut),
    }
}

/// The server side of the handshake over `stream` (a handle to a screened connection), within
/// `timeout`. The client certificate is verified against the cluster CA inside rustls.
pub(crate) async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &TlsAcceptor,
    stream: S,
    timeout: Duration,
) -> Result<server::TlsStream<S>, HandshakeFailure> {
    match glommio::timer::timeout(timeout, async { Ok(acceptor.accept(stream).await) }).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(_)) => Err(HandshakeFailure::Failed),
        Err(_) => Err(HandshakeFailure::TimedOut),
    }
}

/// The client side of the handshake to `address`, within `timeout`: the server's certificate
/// must be the cluster CA's and valid for `address`'s IP. Returns the error's text on failure
/// (an untrusted peer, a peer without TLS, a timeout).
pub(crate) async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    connector: &TlsConnector,
    address: SocketAddr,
    stream: S,
    timeout: Duration,
) -> Result<client::TlsStream<S>, String> {
    let name = ServerName::IpAddress(address.ip().into());
    match glommio::timer::timeout(timeout, async { Ok(connector.connect(name, stream).await) })
        .await
    {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(format!("TLS handshake with {address}: {error}")),
        Err(_) => Err(format!(
            "TLS handshake with {address}: no answer within {timeout:?}"
        )),
    }
}
