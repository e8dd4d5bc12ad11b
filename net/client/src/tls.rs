//! TLS for the blocking client: the trust settings (a CA bundle and the name the router's
//! certificate must carry), the handshake, and the two directions of one rustls session over
//! a socket that a writer and the connection's reader thread share.
//!
//! The session sits behind a mutex that is never held across a blocking socket call: the
//! reader thread reads ciphertext from its own handle of the socket and only then takes the
//! lock to decrypt it; a writer encrypts under the lock and writes the records after releasing
//! it, under the connection's writer mutex, which keeps the records in the order they were
//! sealed. The reader never writes: what rustls has to send in answer to the server (a TLS 1.3
//! key update) goes out with the next request's records.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::ClientConnection;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::error::ClientError;

/// Bytes of ciphertext the reader takes from the socket per read: one full TLS record.
const CIPHERTEXT_READ_BYTES: usize = 16 * 1024 + 256;
/// Round trips a handshake may take before the client gives up on a server that keeps it
/// going (TLS 1.3 takes one or two, 1.2 two).
const HANDSHAKE_ROUNDS_MAX: usize = 16;

/// How the client checks the router's certificate.
#[derive(Clone)]
pub struct TlsSettings {
    pub config: Arc<rustls::ClientConfig>,
    /// The name (a DNS name or an IP address) the certificate must be valid for.
    pub server_name: ServerName<'static>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TlsSettings")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Trusts exactly the certificates of the PEM file `ca_bundle` (a private CA, or
    /// `shoal dev --tls`'s self-signed certificate) for a router named `server_name`.
    pub fn from_ca_bundle(ca_bundle: &Path, server_name: &str) -> Result<TlsSettings, String> {
        let bytes = std::fs::read(ca_bundle).map_err(|error| {
            format!("cannot read the CA bundle {}: {error}", ca_bundle.display())
        })?;
        let certificates = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| {
                format!(
                    "the CA bundle {} is not valid PEM: {error}",
                    ca_bundle.display()
                )
            })?;
        if certificates.is_empty() {
            return Err(format!(
                "the CA bundle {} holds no PEM certificate",
                ca_bundle.display()
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        for certificate in certificates {
            roots.add(certificate).map_err(|error| {
                format!(
                    "the CA bundle {} holds an unusable certificate: {error}",
                    ca_bundle.display()
                )
            })?;
        }
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|error| format!("{server_name:?} is not a DNS name or IP address: {error}"))?;
        let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsSettings {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// rustls's `ring` provider, as the router uses (router/http/src/tls.rs says why ring and not
/// aws-lc-rs; rustls 0.23.48 deprecated it for lacking post-quantum key exchange).
#[allow(deprecated)]
fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One TLS session shared by a connection's writer and its reader thread.
pub(crate) type Session = Arc<Mutex<ClientConnection>>;

fn lock(session: &Session) -> MutexGuard<'_, ClientConnection> {
    // rustls keeps its state consistent between calls; a panic elsewhere does not corrupt it.
    session
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs the handshake on `socket` (blocking, each socket call bounded by `timeout`). A refused
/// certificate is a `ClientError::Tls`, which is not retried.
pub(crate) fn handshake(
    settings: &TlsSettings,
    socket: &mut TcpStream,
    timeout: Duration,
) -> Result<Session, ClientError> {
    let mut session = ClientConnection::new(settings.config.clone(), settings.server_name.clone())
        .map_err(|error| ClientError::Tls(error.to_string()))?;
    let bounded = socket
        .set_read_timeout(Some(timeout))
        .and_then(|()| socket.set_write_timeout(Some(timeout)));
    bounded.map_err(|error| ClientError::Connect(error.to_string()))?;
    let mut rounds = 0;
    while session.is_handshaking() {
        rounds += 1;
        if rounds > HANDSHAKE_ROUNDS_MAX {
            return Err(ClientError::Tls(format!(
                "the handshake did not finish in {HANDSHAKE_ROUNDS_MAX} round trips"
            )));
        }
        if let Err(error) = session.complete_io(socket) {
            // rustls reports its own failures (a certificate refused, no common version) as
            // InvalidData; anything else is the socket's.
            return Err(if error.kind() == io::ErrorKind::InvalidData {
                ClientError::Tls(error.to_string())
            } else {
                ClientError::Connect(format!("TLS handshake: {error}"))
            });
        }
    }
    // Requests and the reader thread wait as long as they need (their own timeouts apply).
    let unbounded = socket
        .set_read_timeout(None)
        .and_then(|()| socket.set_write_timeout(None));
    unbounded.map_err(|error| ClientError::Connect(error.to_string()))?;
    Ok(Arc::new(Mutex::new(session)))
}

/// Seals `plaintext` into records under the session's lock and writes them after releasing
/// it. The caller holds the connection's writer mutex (record order).
pub(crate) fn write_sealed(
    session: &Session,
    socket: &mut TcpStream,
    plaintext: &[u8],
) -> io::Result<()> {
    let mut records = Vec::with_capacity(plaintext.len() + 64);
    {
        let mut session = lock(session);
        session.writer().write_all(plaintext)?;
        while session.wants_write() {
            session.write_tls(&mut records)?;
        }
    }
    socket.write_all(&records)
}

/// The reading direction of a session: `Read` yields plaintext (0 at the end of the stream).
pub(crate) struct SessionReader {
    pub(crate) session: Session,
    pub(crate) socket: TcpStream,
    plaintext: Vec<u8>,
    position: usize,
}

impl SessionReader {
    pub(crate) fn new(session: Session, socket: TcpStream) -> SessionReader {
        SessionReader {
            session,
            socket,
            plaintext: Vec::new(),
            position: 0,
        }
    }
}

impl Read for SessionReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let mut ciphertext = vec![0u8; CIPHERTEXT_READ_BYTES];
        // Each turn consumes ciphertext from the socket, or ends the read: bounded by the
        // stream itself.
        loop {
            if self.position < self.plaintext.len() {
                let available = &self.plaintext[self.position..];
                let count = available.len().min(buffer.len());
                buffer[..count].copy_from_slice(&available[..count]);
                self.position += count;
                return Ok(count);
            }
            let read = self.socket.read(&mut ciphertext)?;
            if read == 0 {
                return Ok(0);
            }
            let mut session = lock(&self.session);
            let mut pending = &ciphertext[..read];
            self.plaintext.clear();
            self.position = 0;
            while !pending.is_empty() {
                session.read_tls(&mut pending)?;
                let state = session
                    .process_new_packets()
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                // Drained at once, so rustls's own buffer never fills.
                let mut chunk = vec![0u8; state.plaintext_bytes_to_read()];
                session.reader().read_exact(&mut chunk)?;
                self.plaintext.extend_from_slice(&chunk);
                if state.peer_has_closed() && self.plaintext.is_empty() {
                    return Ok(0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_bundle_or_server_name_is_named_in_the_error() {
        let directory =
            std::env::temp_dir().join(format!("shoal-client-tls-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let missing = directory.join("missing.pem");
        let error = TlsSettings::from_ca_bundle(&missing, "127.0.0.1").unwrap_err();
        assert!(
            error.contains("cannot read the CA bundle") && error.contains("missing.pem"),
            "{error}"
        );
        let empty = directory.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let error = TlsSettings::from_ca_bundle(&empty, "127.0.0.1").unwrap_err();
        assert!(error.contains("holds no PEM certificate"), "{error}");
        let garbled = directory.join("garbled.pem");
        std::fs::write(
            &garbled,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let error = TlsSettings::from_ca_bundle(&garbled, "127.0.0.1").unwrap_err();
        assert!(error.contains("not valid PEM"), "{error}");
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
