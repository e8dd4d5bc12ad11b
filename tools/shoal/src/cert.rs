//! `shoal cert ca | issue`: a cluster CA for the bus's mutual TLS, and the certificates it
//! signs for nodes and routers (kernel-notes/deployment.md, "Bus TLS"). rcgen on ring, as
//! `shoal dev --tls`; ECDSA P-256 keys.
//!
//! `ca --dir DIR` writes `DIR/ca.pem` (give it to every member as `bus_tls_ca`) and
//! `DIR/ca.key` (readable by its owner only: keep it off the cluster's machines, it makes
//! members). `issue --ca-dir DIR --name N --ip IP... --out-dir OUT` writes `OUT/N.pem` and
//! `OUT/N.key`, valid for server and client use, for the IP addresses (and DNS names) given:
//! a node's must include the IP its peers and routers dial. Existing files are never
//! overwritten. `issue` signs only with a CA `shoal cert ca` made (it names the CA the way
//! `ca` does), and checks the new certificate against `ca.pem` before it says it is done.
//!
//! Exit status: 0 on success, 1 when a file cannot be written or the CA does not sign, 2 on
//! bad input.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The subject (and so the issuer name of every certificate it signs) of a CA this command
/// makes; `issue` rebuilds its issuer from it.
const CA_COMMON_NAME: &str = "Shoal cluster CA";
/// A CA outlives its members' certificates: ten years.
const CA_VALIDITY_DAYS_DEFAULT: u32 = 3650;
/// A member certificate: two years, then `issue` again and restart the member.
const MEMBER_VALIDITY_DAYS_DEFAULT: u32 = 730;
/// The longest validity accepted (about 30 years).
const VALIDITY_DAYS_MAX: u32 = 11_000;
const SECONDS_PER_DAY: u64 = 86_400;
const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Make a cluster CA: DIR/ca.pem (every member's bus_tls_ca) and DIR/ca.key (keep it
    /// safe, off the cluster).
    Ca(CaOptions),
    /// Issue a member certificate signed by the CA in --ca-dir: OUT-DIR/NAME.pem and
    /// OUT-DIR/NAME.key (bus_tls_cert and bus_tls_key).
    Issue(IssueOptions),
}

#[derive(Debug, Args)]
pub struct CaOptions {
    /// Where to write ca.pem and ca.key (created if missing; existing files are kept).
    #[arg(long)]
    pub dir: PathBuf,
    /// Days the CA is valid from now.
    #[arg(long, default_value_t = CA_VALIDITY_DAYS_DEFAULT)]
    pub days: u32,
}

#[derive(Debug, Args)]
pub struct IssueOptions {
    /// The directory `shoal cert ca` wrote.
    #[arg(long)]
    pub ca_dir: PathBuf,
    /// The member's name: the files' stem and the certificate's common name (e.g. node-1).
    #[arg(long)]
    pub name: String,
    /// An IP address the member is dialled at (its bus address for a node). Repeat.
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
    /// A DNS name the member is dialled at. Repeat.
    #[arg(long = "dns")]
    pub dns_names: Vec<String>,
    /// Where to write NAME.pem and NAME.key (default: --ca-dir).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Days the certificate is valid from now.
    #[arg(long, default_value_t = MEMBER_VALIDITY_DAYS_DEFAULT)]
    pub days: u32,
}

pub fn run(command: &CertCommand) -> ExitCode {
    let outcome = match command {
        CertCommand::Ca(options) => make_ca(options),
        CertCommand::Issue(options) => issue(options),
    };
    match outcome {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(Failure::BadInput(message)) => {
            eprintln!("shoal cert: {message}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("shoal cert: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    BadInput(String),
    Failed(String),
}

fn failed(what: &str) -> impl Fn(rcgen::Error) -> Failure + '_ {
    move |error| Failure::Failed(format!("{what}: {error}"))
}

/// Valid from now (less a day, for clocks a little behind) for `days`.
fn set_validity(params: &mut CertificateParams, days: u32) -> Result<(), Failure> {
    if days == 0 || days > VALIDITY_DAYS_MAX {
        return Err(Failure::BadInput(format!(
            "--days must be 1 to {VALIDITY_DAYS_MAX}"
        )));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let date = |unix_seconds: u64| {
        // YYYYMMDDTHHMMSSZ: the calendar arithmetic SigV4 already has.
        let text = shoal_http::sigv4::format_timestamp(unix_seconds);
        let number = |range: std::ops::Range<usize>| text[range].parse::<u8>().unwrap_or(1);
        let year = text[0..4].parse::<i32>().unwrap_or(1970);
        rcgen::date_time_ymd(year, number(4..6), number(6..8))
    };
    params.not_before = date(now.saturating_sub(SECONDS_PER_DAY));
    params.not_after = date(now + u64::from(days) * SECONDS_PER_DAY);
    Ok(())
}

/// Refuses before anything is written when one of `paths` exists, so a refused command
/// leaves no half of a pair behind.
fn refuse_existing(paths: &[&Path]) -> Result<(), Failure> {
    match paths.iter().find(|path| path.exists()) {
        Some(path) => Err(Failure::BadInput(format!(
            "{} exists; it is never overwritten (move it away first)",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// Creates `path` with `contents`, never over an existing file; `private`: readable by its
/// owner only from the first byte.
fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    if private {
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            Failure::BadInput(format!(
                "{} exists; it is never overwritten (move it away first)",
                path.display()
            ))
        } else {
            Failure::Failed(format!("cannot create {}: {error}", path.display()))
        }
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| Failure::Failed(format!("cannot write {}: {error}", path.display())))
}

fn ca_params() -> Result<CertificateParams, Failure> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(failed("cannot describe the CA"))?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn make_ca(options: &CaOptions) -> Result<String, Failure> {
    let mut params = ca_params()?;
    set_validity(&mut params, options.days)?;
    let key = KeyPair::generate().map_err(failed("cannot generate the CA key"))?;
    let certificate = params
        .self_signed(&key)
        .map_err(failed("cannot sign the CA"))?;
    std::fs::create_dir_all(&options.dir).map_err(|error| {
        Failure::Failed(format!("cannot create {}: {error}", options.dir.display()))
    })?;
    let (certificate_path, key_path) = (options.dir.join("ca.pem"), options.dir.join("ca.key"));
    refuse_existing(&[&key_path, &certificate_path])?;
    // The key first: a ca.pem without its key would be a CA nobody can use.
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&certificate_path, &certificate.pem(), false)?;
    Ok(format!(
        "shoal cert: a cluster CA in {} (give it to every node and router as bus_tls_ca) and its key in {} (keep it off the cluster)",
        certificate_path.display(),
        key_path.display()
    ))
}

fn issue(options: &IssueOptions) -> Result<String, Failure> {
    if options.name.is_empty()
        || !options
            .name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
    {
        return Err(Failure::BadInput(
            "--name must be letters, digits, '-', '_' or '.' (it names the files)".to_string(),
        ));
    }
    if options.ips.is_empty() && options.dns_names.is_empty() {
        return Err(Failure::BadInput(
            "give the addresses the member is dialled at: --ip (and/or --dns)".to_string(),
        ));
    }
    let ca_certificate = options.ca_dir.join("ca.pem");
    let ca_key_path = options.ca_dir.join("ca.key");
    let ca_key_text = std::fs::read_to_string(&ca_key_path).map_err(|error| {
        Failure::BadInput(format!(
            "cannot read the CA key {}: {error}",
            ca_key_path.display()
        ))
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_text).map_err(|error| {
        Failure::BadInput(format!(
            "{} is not a PEM private key: {error}",
            ca_key_path.display()
        ))
    })?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(failed("cannot describe the certificate"))?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, options.name.clone());
    params.subject_alt_names = options
        .ips
        .iter()
        .map(|ip| Ok(SanType::IpAddress(*ip)))
        .chain(options.dns_names.iter().map(|name| {
            name.clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| Failure::BadInput(format!("--dns {name:?} is not a DNS name")))
        }))
        .collect::<Result<Vec<_>, Failure>>()?;
    // Members are servers (their bus port) and clients (their connections to peers).
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, options.days)?;
    let key = KeyPair::generate().map_err(failed("cannot generate the key"))?;
    let certificate = params
        .signed_by(&key, &issuer)
        .map_err(failed("cannot sign the certificate"))?;
    check_chain(certificate.der(), &ca_certificate)?;
    let directory = options.out_dir.as_ref().unwrap_or(&options.ca_dir);
    std::fs::create_dir_all(directory).map_err(|error| {
        Failure::Failed(format!("cannot create {}: {error}", directory.display()))
    })?;
    let certificate_path = directory.join(format!("{}.pem", options.name));
    let key_path = directory.join(format!("{}.key", options.name));
    refuse_existing(&[&key_path, &certificate_path])?;
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&certificate_path, &certificate.pem(), false)?;
    Ok(format!(
        "shoal cert: {} (bus_tls_cert) and {} (bus_tls_key), signed by {}",
        certificate_path.display(),
        key_path.display(),
        ca_certificate.display()
    ))
}

/// Verifies the new certificate against `ca.pem` as a bus verifies a peer's: a CA directory
/// whose `ca.pem` is not the CA of `ca.key` (or was made another way) is refused before any
/// file is written.
fn check_chain(
    certificate: &rustls_pki_types::CertificateDer<'_>,
    ca_path: &Path,
) -> Result<(), Failure> {
    use rustls_pki_types::pem::PemObject;
    let bad_ca = |reason: String| {
        Failure::BadInput(format!(
            "the CA {} does not sign as its key does: {reason} (issue with the CA that `shoal cert ca` made)",
            ca_path.display()
        ))
    };
    let mut roots = rustls::RootCertStore::empty();
    let certificates = rustls_pki_types::CertificateDer::pem_file_iter(ca_path)
        .map_err(|error| bad_ca(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad_ca(error.to_string()))?;
    for ca in certificates {
        roots.add(ca).map_err(|error| bad_ca(error.to_string()))?;
    }
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider,
    )
    .build()
    .map_err(|error| bad_ca(error.to_string()))?;
    verifier
        .verify_client_cert(certificate, &[], rustls_pki_types::UnixTime::now())
        .map(|_| ())
        .map_err(|error| bad_ca(error.to_string()))
}
