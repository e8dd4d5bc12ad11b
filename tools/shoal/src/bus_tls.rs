//! The bus's mutual TLS settings, shared by `shoal node`, `shoal router` and `shoal auth`:
//! three files (the member's certificate chain, its key, the cluster CA bundle), given as
//! flags or config keys, all three or none (net/bus/src/tls.rs; kernel-notes/deployment.md,
//! "Bus TLS").

use std::path::{Path, PathBuf};

use clap::Args;
use shoal_bus::BusTls;

/// `--bus-tls-cert`, `--bus-tls-key`, `--bus-tls-ca`.
#[derive(Debug, Args, Clone, Default)]
pub struct BusTlsArgs {
    /// Mutual TLS on the bus: this member's PEM certificate chain (its own certificate first,
    /// signed by the cluster CA; a node's must name its bus IP address). With --bus-tls-key
    /// and --bus-tls-ca; without all three the bus is plaintext.
    #[arg(long, requires_all = ["bus_tls_key", "bus_tls_ca"])]
    pub bus_tls_cert: Option<PathBuf>,
    /// The PEM private key of --bus-tls-cert's first certificate.
    #[arg(long, requires_all = ["bus_tls_cert", "bus_tls_ca"])]
    pub bus_tls_key: Option<PathBuf>,
    /// The cluster CA bundle (PEM): peers must present a certificate it signed.
    #[arg(long, requires_all = ["bus_tls_cert", "bus_tls_key"])]
    pub bus_tls_ca: Option<PathBuf>,
}

/// Reads and checks the files now (a missing file or a mismatched key stops the process at
/// start, named), or `None` when none is given.
pub fn load(
    certificate: Option<&Path>,
    key: Option<&Path>,
    ca: Option<&Path>,
) -> Result<Option<BusTls>, String> {
    match (certificate, key, ca) {
        (None, None, None) => Ok(None),
        (Some(certificate), Some(key), Some(ca)) => BusTls::from_files(certificate, key, ca)
            .map(Some)
            .map_err(|error| error.to_string()),
        _ => Err(
            "bus_tls_cert, bus_tls_key and bus_tls_ca go together: give all three, or none for a plaintext bus"
                .to_string(),
        ),
    }
}

impl BusTlsArgs {
    pub fn load(&self) -> Result<Option<BusTls>, String> {
        load(
            self.bus_tls_cert.as_deref(),
            self.bus_tls_key.as_deref(),
            self.bus_tls_ca.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_files_go_together() {
        assert!(load(None, None, None).unwrap().is_none());
        let path = Path::new("/nonexistent/x.pem");
        let error = load(Some(path), None, Some(path)).unwrap_err();
        assert!(error.contains("go together"), "{error}");
        let error = load(Some(path), Some(path), Some(path)).unwrap_err();
        assert!(
            error.contains("cannot read the bus TLS certificate /nonexistent/x.pem"),
            "{error}"
        );
    }
}
