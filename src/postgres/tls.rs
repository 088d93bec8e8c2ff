//! TLS to Postgres with rustls, for both the replication connection and tokio-postgres.
//!
//! `sslmode` keeps libpq's meaning: `prefer`/`require` encrypt without verifying the server (unless
//! `sslrootcert` is given, then the chain is verified as in `verify-ca`), `verify-ca` checks the
//! chain against `sslrootcert`, `verify-full` also checks the host name. The CA file defaults to
//! libpq's `~/.postgresql/root.crt`; `sslrootcert=system` uses the OS trust store. A missing or
//! unreadable CA file is an error naming the path, never a silent downgrade (invariant 10).
//!
//! What libpq (with OpenSSL) accepts beyond WebPKI, and so do we: a server certificate that is
//! itself in `sslrootcert` (the self-signed `openssl req -x509` kind, CA:TRUE, which WebPKI refuses
//! as an end entity) is trusted as it is, its validity dates and extendedKeyUsage still checked;
//! and `verify-full` matches the host name by libpq's rule, the subject CN standing in when the
//! certificate has no subjectAltName of the host's kind. Handshake signatures are always checked
//! with the presented certificate's key.
//!
//! `connect_sql` opens ordinary SQL connections, walking a multi-host URL as libpq does.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conninfo::{ConnInfo, RootCerts, ServerState, SslMode};

/// TLS could not be set up from the connection parameters.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA certificates in sslrootcert `{}`: {source}", path.display())]
    RootCertFile {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("sslrootcert `{}` contains no certificate", .0.display())]
    NoCertificates(PathBuf),
    #[error("sslmode={mode} needs a CA certificate: set sslrootcert=/path/to/ca.pem in STARWAL_PG_URL (or create {})", default.display())]
    NoRootCert {
        mode: &'static str,
        default: PathBuf,
    },
    #[error("cannot load the system trust store for sslrootcert=system: {0}")]
    SystemRoots(String),
    #[error("host `{0}` is not a valid TLS server name")]
    ServerName(String),
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[source] rustls::Error),
}

/// A ready-to-use TLS client configuration for one [`ConnInfo`], or `None` for `sslmode=disable`.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConnector")
    }
}

impl TlsConnector {
    /// Builds the TLS client for `info.sslmode`; `Ok(None)` for `disable`.
    pub fn for_conninfo(info: &ConnInfo) -> Result<Option<TlsConnector>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (info.sslmode, &info.sslrootcert) {
            (SslMode::Disable, _) => return Ok(None),
            (SslMode::Prefer | SslMode::Require, None) => Arc::new(NoVerification {
                provider: provider.clone(),
            }),
            (mode, roots) => {
                let (roots, pinned) = load_roots(mode, roots.as_ref())?;
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
                Arc::new(RootsVerifier {
                    webpki,
                    pinned,
                    check_host: mode == SslMode::VerifyFull,
                    provider: provider.clone(),
                })
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Some(TlsConnector {
            config: Arc::new(config),
        }))
    }

    /// Runs the TLS handshake over an established stream.
    pub async fn connect<S>(
        &self,
        host: &str,
        stream: S,
    ) -> io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = server_name(host).map_err(io::Error::other)?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}

fn default_root_cert_path() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".postgresql").join("root.crt")
}

/// The trust store for the chain check, and the same certificates as DER for the byte-identical
/// match of [`RootsVerifier`].
fn load_roots(
    mode: SslMode,
    roots: Option<&RootCerts>,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsError> {
    let mut store = RootCertStore::empty();
    let path = match roots {
        Some(RootCerts::System) => {
            let loaded = rustls_native_certs::load_native_certs();
            if loaded.certs.is_empty() {
                let why = loaded
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "no certificates found".into());
                return Err(TlsError::SystemRoots(why));
            }
            store.add_parsable_certificates(loaded.certs.iter().cloned());
            return Ok((store, loaded.certs));
        }
        Some(RootCerts::File(path)) => path.clone(),
        None => {
            let default = default_root_cert_path();
            if !default.exists() {
                let mode = match mode {
                    SslMode::VerifyFull => "verify-full",
                    _ => "verify-ca",
                };
                return Err(TlsError::NoRootCert { mode, default });
            }
            default
        }
    };
    let certs = CertificateDer::pem_file_iter(&path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::RootCertFile {
            path: path.clone(),
            source,
        })?;
    let (added, _ignored) = store.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err(TlsError::NoCertificates(path));
    }
    Ok((store, certs))
}

/// `verify-ca` and `verify-full` (and `prefer`/`require` given a `sslrootcert`): what libpq with
/// OpenSSL accepts.
///
/// * A server certificate byte-identical to one in `sslrootcert` is trusted as it is, without
///   building a chain: OpenSSL finds it in its trust store and stops there. Its validity dates and,
///   if present, its extendedKeyUsage (serverAuth) are still checked, as OpenSSL does for the leaf.
///   WebPKI alone refuses the common self-signed certificate with `CaUsedAsEndEntity`.
/// * Any other certificate gets the WebPKI chain check against the same roots.
/// * `verify-full` then checks the host name: WebPKI's subjectAltName match, or else libpq's rule
///   ([`libpq_host_matches`]), which falls back to the subject CN when the certificate has no
///   subjectAltName of the host's kind.
///
/// Handshake signatures are verified with the presented certificate's key in every case.
#[derive(Debug)]
struct RootsVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// The certificates of `sslrootcert`, compared byte for byte with the server's.
    pinned: Vec<CertificateDer<'static>>,
    /// `verify-full`.
    check_host: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for RootsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|pin| pin.as_ref() == end_entity.as_ref())
        {
            let cert = CertInfo::parse(end_entity).ok_or(CertificateError::BadEncoding)?;
            cert.check_as_pinned(now)?;
            if self.check_host {
                check_host(&cert, server_name)?;
            }
            return Ok(ServerCertVerified::assertion());
        }
        // The WebPKI verifier checks the chain (dates, purpose, signatures) before the name, so a
        // name error means everything but the name was accepted.
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {
                if self.check_host {
                    let cert = CertInfo::parse(end_entity).ok_or(CertificateError::BadEncoding)?;
                    check_host(&cert, server_name)?;
                }
                Ok(ServerCertVerified::assertion())
            }
            Err(err) => Err(explain_chain_error(end_entity, err)),
            ok => ok,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A self-signed server certificate that is not in `sslrootcert` fails the chain check with
/// WebPKI's terse `CaUsedAsEndEntity` or `UnknownIssuer`; say what the operator can do about it.
fn explain_chain_error(end_entity: &CertificateDer<'_>, err: rustls::Error) -> rustls::Error {
    let untrusted = matches!(
        err,
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::Other(_)
        )
    );
    if !untrusted || !CertInfo::parse(end_entity).is_some_and(|cert| cert.self_issued) {
        return err;
    }
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        SelfSignedNotTrusted,
    ))))
}

/// See [`explain_chain_error`]. rustls shows a [`CertificateError::Other`] with `Debug`, so
/// `Debug` prints the message too.
#[derive(thiserror::Error)]
#[error(
    "the server's certificate is self-signed and not in sslrootcert: put that certificate (or the \
     CA that signed it) in the sslrootcert file"
)]
struct SelfSignedNotTrusted;

impl std::fmt::Debug for SelfSignedNotTrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// verify-full's host name check on a certificate whose chain is already accepted.
fn check_host(cert: &CertInfo<'_>, server_name: &ServerName<'_>) -> Result<(), rustls::Error> {
    let host = server_name.to_str();
    if libpq_host_matches(cert, &host) {
        return Ok(());
    }
    Err(CertificateError::NotValidForNameContext {
        expected: server_name.to_owned(),
        presented: cert.presented_names(),
    }
    .into())
}

/// `prefer`/`require` without a CA: encryption without authentication, as libpq does. Handshake
/// signatures are still checked so the session keys belong to the presented certificate.
#[derive(Debug)]
struct NoVerification {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// tokio-postgres adapter: ordinary SQL connections use the same TLS rules as replication.
#[derive(Debug, Clone)]
pub struct MakeTls(pub Option<TlsConnector>);

impl MakeTls {
    /// Builds the adapter for `info`.
    pub fn for_conninfo(info: &ConnInfo) -> Result<MakeTls, TlsError> {
        Ok(MakeTls(TlsConnector::for_conninfo(info)?))
    }
}

/// One pending TLS handshake for tokio-postgres.
#[derive(Debug)]
pub struct TlsConnect {
    connector: Option<TlsConnector>,
    host: String,
}

/// A TLS stream handed to tokio-postgres.
#[derive(Debug)]
pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for MakeTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = TlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<TlsConnect> {
        Ok(TlsConnect {
            connector: self.0.clone(),
            host: domain.to_owned(),
        })
    }
}

impl<S> tokio_postgres::tls::TlsConnect<S> for TlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = self.connector.ok_or_else(|| {
                io::Error::other("TLS requested with sslmode=disable (this is a bug)")
            })?;
            connector.connect(&self.host, stream).await.map(TlsStream)
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        tokio_postgres::tls::ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Opens an ordinary SQL connection (tokio-postgres) with the TLS rules of `info` and spawns its
/// connection task. The task ends when the client is dropped.
///
/// Several hosts and `target_session_attrs` as libpq: the hosts are tried in order, and the
/// first that answers and qualifies (asked with [`ServerState::QUERY`]) is kept; when none does
/// the error says what each one answered. One host with `any` is exactly one attempt.
pub async fn connect_sql(info: &ConnInfo) -> Result<tokio_postgres::Client, SqlConnectError> {
    let attrs = info.target_session_attrs;
    let candidates = info.candidates();
    if candidates.len() == 1 && !attrs.needs_state() {
        return connect_sql_host(info).await;
    }
    let mut failures = Vec::new();
    for pass in 0..attrs.passes() {
        for candidate in &candidates {
            let client = match connect_sql_host(candidate).await {
                Ok(client) => client,
                Err(err) => {
                    // A later pass meets the same unreachable hosts: report each once.
                    if pass == 0 {
                        failures.push(err.to_string());
                    }
                    continue;
                }
            };
            if !attrs.needs_state() {
                return Ok(client);
            }
            match client.query_one(ServerState::QUERY, &[]).await {
                Ok(row) => {
                    let state = ServerState {
                        read_only: row.get(0),
                        in_recovery: row.get(1),
                    };
                    if attrs.accepts(pass, state) {
                        return Ok(client);
                    }
                    if pass == 0 {
                        failures.push(format!("{}: {}", candidate, state.mismatch(attrs)));
                    }
                }
                Err(err) => failures.push(format!(
                    "{}: asking its state: {}",
                    candidate,
                    crate::error_text::chain(&err)
                )),
            }
        }
    }
    Err(SqlConnectError::NoHost {
        target: info.to_string(),
        failures,
    })
}

/// One connection attempt to `info.host` alone.
async fn connect_sql_host(info: &ConnInfo) -> Result<tokio_postgres::Client, SqlConnectError> {
    let tls = MakeTls::for_conninfo(info).map_err(SqlConnectError::Tls)?;
    let (client, connection) = info
        .to_tokio_postgres()
        .connect(tls)
        .await
        .map_err(|source| SqlConnectError::Connect {
            target: info.to_string(),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %crate::error_text::chain(&err), "SQL connection closed");
        }
    });
    Ok(client)
}

/// An ordinary SQL connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SqlConnectError {
    #[error(transparent)]
    Tls(TlsError),
    #[error("cannot connect to {target}: {}", crate::error_text::chain(.source))]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// Several hosts (or `target_session_attrs`): none answered and qualified.
    #[error("no server of {target} could be used: {}", .failures.join("; "))]
    NoHost {
        target: String,
        failures: Vec<String>,
    },
}

/// libpq's host name rule for `verify-full` (`fe-secure-openssl.c`,
/// `pgtls_verify_peer_name_matches_certificate_guts`): the host matches a subjectAltName dNSName
/// (exactly or by a leading `*.` wildcard, case-insensitively) or an iPAddress; the subject's first
/// CN is compared as a name only when the certificate has no subjectAltName of the host's kind
/// (iPAddress for an IP address host, dNSName otherwise), which is the case of a certificate made
/// with `openssl req -x509 -subj /CN=host`.
fn libpq_host_matches(cert: &CertInfo<'_>, host: &str) -> bool {
    let host_ip: Option<IpAddr> = host.parse().ok();
    let mut san_of_host_kind = false;
    for name in &cert.dns_names {
        san_of_host_kind |= host_ip.is_none();
        if name_matches(name, host) {
            return true;
        }
    }
    for address in &cert.ip_addresses {
        san_of_host_kind |= host_ip.is_some();
        let matches = match host_ip {
            Some(IpAddr::V4(ip)) => *address == ip.octets().as_slice(),
            Some(IpAddr::V6(ip)) => *address == ip.octets().as_slice(),
            None => false,
        };
        if matches {
            return true;
        }
    }
    !san_of_host_kind && cert.common_name.is_some_and(|cn| name_matches(cn, host))
}

/// libpq's `pq_verify_peer_name_matches_certificate_name`: equal ignoring ASCII case, or a `*.`
/// wildcard standing for one non-empty label. A name with an embedded NUL never matches (libpq
/// refuses it as an attack).
fn name_matches(name: &[u8], host: &str) -> bool {
    let host = host.as_bytes();
    if name.is_empty() || name.contains(&0) {
        return false;
    }
    if name.eq_ignore_ascii_case(host) {
        return true;
    }
    let Some(suffix) = name.strip_prefix(b"*") else {
        return false;
    };
    if suffix.len() < 2 || suffix[0] != b'.' || host.len() <= suffix.len() {
        return false;
    }
    let (label, host_suffix) = host.split_at(host.len() - suffix.len());
    host_suffix.eq_ignore_ascii_case(suffix) && !label.contains(&b'.')
}

/// What the pinned-certificate check and libpq's host name rule need from an X.509 certificate,
/// read with a small bounds-checked DER walk (the handshake signature check parses the certificate
/// again with WebPKI's strict parser).
#[derive(Debug, Default, PartialEq)]
struct CertInfo<'a> {
    /// `notBefore`, seconds since the Unix epoch.
    not_before: i64,
    /// `notAfter`, seconds since the Unix epoch.
    not_after: i64,
    /// Issuer and subject are the same name.
    self_issued: bool,
    /// The first commonName of the subject, raw string bytes (as libpq compares them).
    common_name: Option<&'a [u8]>,
    /// subjectAltName dNSName entries.
    dns_names: Vec<&'a [u8]>,
    /// subjectAltName iPAddress entries (4 or 16 bytes).
    ip_addresses: Vec<&'a [u8]>,
    /// No extendedKeyUsage extension, or one listing serverAuth.
    server_auth: bool,
}

/// OID 2.5.4.3, commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// OID 2.5.29.17, subjectAltName.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// OID 2.5.29.37, extendedKeyUsage.
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
/// OID 1.3.6.1.5.5.7.3.1, id-kp-serverAuth.
const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
/// `[0] EXPLICIT Version` of TBSCertificate.
const TAG_VERSION: u8 = 0xa0;
/// `[1] IMPLICIT issuerUniqueID`, `[2] IMPLICIT subjectUniqueID`.
const TAG_ISSUER_UID: u8 = 0x81;
const TAG_SUBJECT_UID: u8 = 0x82;
/// `[3] EXPLICIT Extensions`.
const TAG_EXTENSIONS: u8 = 0xa3;
/// GeneralName `[2] IMPLICIT IA5String` and `[7] IMPLICIT OCTET STRING`.
const TAG_SAN_DNS_NAME: u8 = 0x82;
const TAG_SAN_IP_ADDRESS: u8 = 0x87;

impl<'a> CertInfo<'a> {
    /// `None` when the bytes are not a certificate of the expected shape.
    fn parse(der: &'a [u8]) -> Option<CertInfo<'a>> {
        let mut outer = Der::new(der);
        let mut certificate = Der::new(outer.expect(TAG_SEQUENCE)?);
        let mut tbs = Der::new(certificate.expect(TAG_SEQUENCE)?);
        tbs.optional(TAG_VERSION)?;
        tbs.expect(TAG_INTEGER)?; // serialNumber
        tbs.expect(TAG_SEQUENCE)?; // signature algorithm
        let issuer = tbs.expect(TAG_SEQUENCE)?;
        let mut validity = Der::new(tbs.expect(TAG_SEQUENCE)?);
        let (tag, not_before) = validity.read()?;
        let not_before = parse_time(tag, not_before)?;
        let (tag, not_after) = validity.read()?;
        let not_after = parse_time(tag, not_after)?;
        let subject = tbs.expect(TAG_SEQUENCE)?;
        tbs.expect(TAG_SEQUENCE)?; // subjectPublicKeyInfo
        tbs.optional(TAG_ISSUER_UID)?;
        tbs.optional(TAG_SUBJECT_UID)?;
        let mut info = CertInfo {
            not_before,
            not_after,
            self_issued: issuer == subject,
            common_name: first_common_name(subject)?,
            server_auth: true,
            ..CertInfo::default()
        };
        if let Some(extensions) = tbs.optional(TAG_EXTENSIONS)? {
            let mut list = Der::new(Der::new(extensions).expect(TAG_SEQUENCE)?);
            while !list.is_empty() {
                let mut extension = Der::new(list.expect(TAG_SEQUENCE)?);
                let oid = extension.expect(TAG_OID)?;
                extension.optional(TAG_BOOLEAN)?; // critical
                let value = extension.expect(TAG_OCTET_STRING)?;
                if oid == OID_SUBJECT_ALT_NAME {
                    info.read_subject_alt_names(value)?;
                } else if oid == OID_EXT_KEY_USAGE {
                    let mut purposes = Der::new(Der::new(value).expect(TAG_SEQUENCE)?);
                    info.server_auth = false;
                    while !purposes.is_empty() {
                        info.server_auth |= purposes.expect(TAG_OID)? == OID_SERVER_AUTH;
                    }
                }
            }
        }
        Some(info)
    }

    fn read_subject_alt_names(&mut self, value: &'a [u8]) -> Option<()> {
        let mut names = Der::new(Der::new(value).expect(TAG_SEQUENCE)?);
        while !names.is_empty() {
            match names.read()? {
                (TAG_SAN_DNS_NAME, name) => self.dns_names.push(name),
                (TAG_SAN_IP_ADDRESS, address) => self.ip_addresses.push(address),
                _ => {} // other GeneralName kinds play no part in host name checks
            }
        }
        Some(())
    }

    /// The checks OpenSSL still makes on a leaf certificate found in its trust store.
    fn check_as_pinned(&self, now: UnixTime) -> Result<(), CertificateError> {
        let time = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let unix = |secs: i64| UnixTime::since_unix_epoch(Duration::from_secs(secs.max(0) as u64));
        if time < self.not_before {
            return Err(CertificateError::NotValidYetContext {
                time: now,
                not_before: unix(self.not_before),
            });
        }
        if time > self.not_after {
            return Err(CertificateError::ExpiredContext {
                time: now,
                not_after: unix(self.not_after),
            });
        }
        if !self.server_auth {
            return Err(CertificateError::InvalidPurpose);
        }
        Ok(())
    }

    /// The names an operator compares with the host in an error message.
    fn presented_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .dns_names
            .iter()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect();
        for address in &self.ip_addresses {
            if let Ok(v4) = <[u8; 4]>::try_from(*address) {
                names.push(IpAddr::from(v4).to_string());
            } else if let Ok(v6) = <[u8; 16]>::try_from(*address) {
                names.push(IpAddr::from(v6).to_string());
            }
        }
        if let Some(cn) = self.common_name {
            names.push(format!("CN={}", String::from_utf8_lossy(cn)));
        }
        names
    }
}

/// The first commonName value of an X.501 Name (the contents of its SEQUENCE), as OpenSSL's
/// `X509_NAME_get_index_by_NID(name, NID_commonName, -1)` finds it.
fn first_common_name(name: &[u8]) -> Option<Option<&[u8]>> {
    let mut rdns = Der::new(name);
    let mut found = None;
    while !rdns.is_empty() {
        let mut attributes = Der::new(rdns.expect(TAG_SET)?);
        while !attributes.is_empty() {
            let mut attribute = Der::new(attributes.expect(TAG_SEQUENCE)?);
            let oid = attribute.expect(TAG_OID)?;
            let (_string_type, value) = attribute.read()?;
            if oid == OID_COMMON_NAME && found.is_none() {
                found = Some(value);
            }
        }
    }
    Some(found)
}

/// X.509 `Time`: UTCTime `YYMMDDHHMMSSZ` (years 1950–2049) or GeneralizedTime `YYYYMMDDHHMMSSZ`,
/// as RFC 5280 requires them; seconds since the Unix epoch.
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let field = text.get(range)?;
        field.iter().try_fold(0i64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let (year, rest) = match (tag, text.len()) {
        (TAG_UTC_TIME, 13) => {
            let yy = digits(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (TAG_GENERALIZED_TIME, 15) => (digits(0..4)?, 4),
        _ => return None,
    };
    let month = digits(rest..rest + 2)?;
    let day = digits(rest + 2..rest + 4)?;
    let hour = digits(rest + 4..rest + 6)?;
    let minute = digits(rest + 6..rest + 8)?;
    let second = digits(rest + 8..rest + 10)?;
    let valid = text.last() == Some(&b'Z')
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A cursor over DER: definite lengths only, single-byte tags, every length checked against the
/// bytes left. Each read returns `None` on malformed input rather than panicking.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Der<'a> {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element: its tag and contents.
    fn read(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // high tag numbers do not occur in the fields read here
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None; // indefinite length, or longer than any certificate
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return None;
        }
        let (contents, after) = rest.split_at(len);
        self.rest = after;
        Some((tag, contents))
    }

    /// The next element, which must have `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.read()? {
            (found, contents) if found == tag => Some(contents),
            _ => None,
        }
    }

    /// The next element if it has `tag`; `Some(None)` when another element (or nothing) follows.
    fn optional(&mut self, tag: u8) -> Option<Option<&'a [u8]>> {
        if self.rest.first() != Some(&tag) {
            return Some(None);
        }
        self.expect(tag).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1
    // -days 36500` (valid 2026-12-07 to 2126-11-13); OpenSSL's default v3_ca makes them CA:TRUE.

    /// `-subj /CN=localhost`, no subjectAltName: the certificate of issue 13 item 6.
    const SELF_SIGNED_CN_ONLY: &str = "-----BEGIN CERTIFICATE-----
MIIBfzCCASWgAwIBAgIUNDNCOSpGx01Tr5oFjbmKoHR0qD4wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNzEyMzgwNFoYDzIxMjYxMTEz
MTIzODA0WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAR6dxV/bxtBbY/IU4ayapk9iItnqcK/0PNKccROwNhxTwlqrX035MIt
wtxd3Y1gp7LZNjL5p2fxmv7D12cR+Fbso1MwUTAdBgNVHQ4EFgQU57gIstdnb1I+
Xj7VewuOvtzV20gwHwYDVR0jBBgwFoAU57gIstdnb1I+Xj7VewuOvtzV20gwDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiAcII2e0bz9I4Hsu77juVGF
6oio+UH6ARxo/rHUK1ui+AIhAKaeTHblcYo8OXS+0lzkuSgLUKopmZiihJKfFTY0
a2fy
-----END CERTIFICATE-----";

    /// `-subj /CN=cn.example.com -addext subjectAltName=DNS:*.example.com,DNS:db.internal,
    /// IP:127.0.0.1,IP:::1 -addext extendedKeyUsage=serverAuth`.
    const SELF_SIGNED_WITH_SAN: &str = "-----BEGIN CERTIFICATE-----
MIIB3zCCAYWgAwIBAgIUAo/nwEigkOBtawLEoxbBGl/fo7gwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOY24uZXhhbXBsZS5jb20wIBcNMjYxMjA3MTIzODA0WhgPMjEy
NjExMTMxMjM4MDRaMBkxFzAVBgNVBAMMDmNuLmV4YW1wbGUuY29tMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAE/ZZzkrKKAsoKqVovmZSegTB0AYAvQ85BnUAHh0Gz
9WeR+nHG9Vl6GhMXcGYYBqYQM1mDCrq38fjbxuLk3zv3RqOBqDCBpTAdBgNVHQ4E
FgQUk88hWgmXuiGF2jaliAmW66DQvV0wHwYDVR0jBBgwFoAUk88hWgmXuiGF2jal
iAmW66DQvV0wDwYDVR0TAQH/BAUwAwEB/zA9BgNVHREENjA0gg0qLmV4YW1wbGUu
Y29tggtkYi5pbnRlcm5hbIcEfwAAAYcQAAAAAAAAAAAAAAAAAAAAATATBgNVHSUE
DDAKBggrBgEFBQcDATAKBggqhkjOPQQDAgNIADBFAiA1q/m8CAOzP5G/0QEaPaua
y+3JDJGAhzWl0nTI/eTnJQIhAMnGDi4wk9yVxmHkVa0QYhTvrCP/5juw8uRaYpYJ
OqHs
-----END CERTIFICATE-----";

    /// `-subj /O=acme/CN=localhost -addext extendedKeyUsage=clientAuth`: not for servers.
    const SELF_SIGNED_CLIENT_ONLY: &str = "-----BEGIN CERTIFICATE-----
MIIBsjCCAVigAwIBAgIUFPSKZFHfCGCNskqJvFrUI839e9swCgYIKoZIzj0EAwIw
IzENMAsGA1UECgwEYWNtZTESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNzEy
MzgwNFoYDzIxMjYxMTEzMTIzODA0WjAjMQ0wCwYDVQQKDARhY21lMRIwEAYDVQQD
DAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATFzCtOiZ9xkcPZ
92LALc3OXedzAWjgEnhiOsxT54uHngomb2U8DirTNIZGuhxxaZUJu/7id+pPJL7U
ZS58Zipao2gwZjAdBgNVHQ4EFgQU65sm2WnC3hS6hLCyA8g11KT5dJYwHwYDVR0j
BBgwFoAU65sm2WnC3hS6hLCyA8g11KT5dJYwDwYDVR0TAQH/BAUwAwEB/zATBgNV
HSUEDDAKBggrBgEFBQcDAjAKBggqhkjOPQQDAgNIADBFAiEAlU/iBWGHf5rf6jOe
RPR1Zq+cAY7IQ4OSDSUSIXu5gEACIGK7W/0n2vDsVlhrAH7JaoL07pNiRcJnDbmi
5T4sdwl9
-----END CERTIFICATE-----";

    /// A CA (`/CN=unit test CA`) and a leaf it signed (`/CN=localhost`, CA:FALSE, no
    /// subjectAltName), for the CA-signed path.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBhDCCASugAwIBAgIUV/OWuvUPqiOHBdhAQ4bk6loIEGEwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMdW5pdCB0ZXN0IENBMCAXDTI2MTIwNzEyMzkxM1oYDzIxMjYx
MTEzMTIzOTEzWjAXMRUwEwYDVQQDDAx1bml0IHRlc3QgQ0EwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAAQNHyNNf2WZO2ZEXzn1wNReKJ+nQ/jom2+0sDMrcqGKVaAk
QHn7zZMvcNMftxh5SP6r4IhhKlUfoqLK4YgCh+Ebo1MwUTAdBgNVHQ4EFgQUw0Uj
glGkxZgvCd09r247OR9wpZgwHwYDVR0jBBgwFoAUw0UjglGkxZgvCd09r247OR9w
pZgwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiAbpAciY/pWWPqV
1/YYletkuFHlypAQnw4N7sc5wuaZRAIgfG+IlMJmyEWlH6z1/O1TBdbbePZ2LKB8
dBM5P6mwWkU=
-----END CERTIFICATE-----";
    const CA_SIGNED_CN_ONLY: &str = "-----BEGIN CERTIFICATE-----
MIIBbDCCARKgAwIBAgIBBzAKBggqhkjOPQQDAjAXMRUwEwYDVQQDDAx1bml0IHRl
c3QgQ0EwIBcNMjYxMjA3MTIzOTEzWhgPMjEyNjExMTMxMjM5MTNaMBQxEjAQBgNV
BAMMCWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABFlbzd+TWAAr
Nu9cra5hcyc9I7MHTWvywkVcbd/jhhqM40XBniHUk6ZhuAD62ah9pBUZXEyYy3y2
EZUjMcRP2d2jUDBOMAwGA1UdEwEB/wQCMAAwHQYDVR0OBBYEFP5UmAyGlbC5CzrJ
Jz6BobAieiw/MB8GA1UdIwQYMBaAFMNFI4JRpMWYLwndPa9uOzkfcKWYMAoGCCqG
SM49BAMCA0gAMEUCIQDej4vdEUn5FsaqT+EjxfgkcqQKfsIrFlI0D3voK1xbgAIg
By2jii977d5Sc7qscEVF70u1Y8vL2KyfkqEK0+Z1mtE=
-----END CERTIFICATE-----";

    /// 2030-01-01T00:00:00Z, inside every certificate's validity.
    const IN_VALIDITY: u64 = 1_893_456_000;
    /// The notBefore / notAfter of the three self-signed certificates.
    const NOT_BEFORE: i64 = 1_796_647_084;
    const NOT_AFTER: i64 = 4_950_247_084;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("test PEM")
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    fn name(host: &str) -> ServerName<'static> {
        ServerName::try_from(host.to_owned()).expect("test host name")
    }

    /// The verifier `for_conninfo` builds for a `sslrootcert` file holding `roots`.
    fn verifier(roots: &[&str], check_host: bool) -> RootsVerifier {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pinned: Vec<_> = roots.iter().map(|pem| der(pem)).collect();
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(pinned.iter().cloned());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .build()
            .unwrap();
        RootsVerifier {
            webpki,
            pinned,
            check_host,
            provider,
        }
    }

    fn verify(
        verifier: &RootsVerifier,
        cert: &str,
        host: &str,
        now: u64,
    ) -> Result<ServerCertVerified, rustls::Error> {
        verifier.verify_server_cert(&der(cert), &[], &name(host), &[], at(now))
    }

    #[test]
    fn parses_a_self_signed_certificate_without_subject_alt_name() {
        let bytes = der(SELF_SIGNED_CN_ONLY);
        let cert = CertInfo::parse(&bytes).unwrap();
        assert_eq!(
            cert,
            CertInfo {
                not_before: NOT_BEFORE,
                not_after: NOT_AFTER,
                self_issued: true,
                common_name: Some(b"localhost".as_slice()),
                dns_names: vec![],
                ip_addresses: vec![],
                server_auth: true,
            }
        );
    }

    #[test]
    fn parses_subject_alt_names_and_extended_key_usage() {
        let bytes = der(SELF_SIGNED_WITH_SAN);
        let cert = CertInfo::parse(&bytes).unwrap();
        assert_eq!(cert.common_name, Some(b"cn.example.com".as_slice()));
        assert_eq!(
            cert.dns_names,
            vec![b"*.example.com".as_slice(), b"db.internal".as_slice()]
        );
        let mut v6_loopback = [0u8; 16];
        v6_loopback[15] = 1;
        assert_eq!(
            cert.ip_addresses,
            vec![[127u8, 0, 0, 1].as_slice(), v6_loopback.as_slice()]
        );
        assert!(cert.server_auth);
        assert_eq!(
            cert.presented_names(),
            [
                "*.example.com",
                "db.internal",
                "127.0.0.1",
                "::1",
                "CN=cn.example.com"
            ]
        );

        let bytes = der(SELF_SIGNED_CLIENT_ONLY);
        let cert = CertInfo::parse(&bytes).unwrap();
        assert!(!cert.server_auth, "extendedKeyUsage is clientAuth only");
        // The first CN, after the O attribute.
        assert_eq!(cert.common_name, Some(b"localhost".as_slice()));

        let bytes = der(CA_SIGNED_CN_ONLY);
        let cert = CertInfo::parse(&bytes).unwrap();
        assert!(!cert.self_issued);
    }

    #[test]
    fn malformed_certificates_are_refused_without_panicking() {
        for pem in [SELF_SIGNED_CN_ONLY, SELF_SIGNED_WITH_SAN, CA_SIGNED_CN_ONLY] {
            let bytes = der(pem);
            for len in 0..bytes.len() {
                assert_eq!(
                    CertInfo::parse(&bytes[..len]),
                    None,
                    "prefix of {len} bytes"
                );
            }
            // Every single-byte corruption parses or is refused; none panics.
            let mut bytes = bytes.to_vec();
            for i in 0..bytes.len() {
                for flip in [0x01, 0x80, 0xff] {
                    bytes[i] ^= flip;
                    let _ = CertInfo::parse(&bytes);
                    bytes[i] ^= flip;
                }
            }
        }
        assert_eq!(CertInfo::parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(CertInfo::parse(&[0x30, 0x80, 0x00, 0x00]), None);
        assert_eq!(CertInfo::parse(&[0x1f, 0x01, 0x00]), None);
    }

    #[test]
    fn times_follow_rfc_5280() {
        let t = |tag, s: &str| parse_time(tag, s.as_bytes());
        assert_eq!(t(TAG_UTC_TIME, "700101000000Z"), Some(0));
        assert_eq!(t(TAG_UTC_TIME, "491231235959Z"), Some(2_524_607_999));
        assert_eq!(t(TAG_UTC_TIME, "500101000000Z"), Some(-631_152_000));
        assert_eq!(
            t(TAG_GENERALIZED_TIME, "20240229120000Z"),
            Some(1_709_208_000)
        );
        assert_eq!(t(TAG_GENERALIZED_TIME, "21261113123804Z"), Some(NOT_AFTER));
        for bad in [
            "20230229000000Z", // not a leap year
            "21000229000000Z", // nor is 2100
            "20241301000000Z",
            "20240100000000Z",
            "20240101240000Z",
            "20240101006000Z",
            "20240101000060Z",
            "20240101000000+",
            "2024010100000Z",
            "2024010100000aZ",
            "20240101000000.5Z",
        ] {
            assert_eq!(t(TAG_GENERALIZED_TIME, bad), None, "{bad}");
        }
        assert_eq!(
            t(TAG_GENERALIZED_TIME, "20000229000000Z"),
            Some(951_782_400)
        );
        assert_eq!(t(TAG_UTC_TIME, "20240101000000Z"), None, "wrong length");
        assert_eq!(t(TAG_OCTET_STRING, "700101000000Z"), None, "wrong tag");
    }

    #[test]
    fn names_match_as_libpq_compares_them() {
        for (name, host, expected) in [
            ("localhost", "localhost", true),
            ("LocalHost", "localhost", true),
            ("localhost", "localhost.example", false),
            ("*.example.com", "db.example.com", true),
            ("*.example.com", "DB.Example.COM", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", "db.example.org", false),
            ("*example.com", "dbexample.com", false),
            ("*.", "a.", false),
            ("*", "localhost", false),
            ("db.*.com", "db.example.com", false),
            ("", "", false),
            ("local\0host", "local", false),
        ] {
            assert_eq!(
                name_matches(name.as_bytes(), host),
                expected,
                "{name:?} vs {host:?}"
            );
        }
    }

    #[test]
    fn host_matches_by_libpq_rule() {
        let cn_only = CertInfo {
            common_name: Some(b"localhost"),
            ..CertInfo::default()
        };
        assert!(libpq_host_matches(&cn_only, "localhost"));
        assert!(!libpq_host_matches(&cn_only, "127.0.0.1"));
        assert!(!libpq_host_matches(&cn_only, "otherhost"));
        assert!(!libpq_host_matches(&CertInfo::default(), "localhost"));

        // A dNSName entry hides the CN from host names, not from IP addresses (libpq).
        let dns_san = CertInfo {
            common_name: Some(b"127.0.0.1"),
            dns_names: vec![b"db.internal"],
            ..CertInfo::default()
        };
        assert!(libpq_host_matches(&dns_san, "db.internal"));
        assert!(libpq_host_matches(&dns_san, "127.0.0.1"));
        let dns_san = CertInfo {
            common_name: Some(b"localhost"),
            ..dns_san
        };
        assert!(!libpq_host_matches(&dns_san, "localhost"));

        // An iPAddress entry hides the CN from IP addresses only.
        let ip_san = CertInfo {
            common_name: Some(b"localhost"),
            ip_addresses: vec![&[10, 0, 0, 1]],
            ..CertInfo::default()
        };
        assert!(libpq_host_matches(&ip_san, "10.0.0.1"));
        assert!(!libpq_host_matches(&ip_san, "10.0.0.2"));
        assert!(libpq_host_matches(&ip_san, "localhost"));
        let ip_cn = CertInfo {
            common_name: Some(b"10.0.0.2"),
            ..ip_san
        };
        assert!(!libpq_host_matches(&ip_cn, "10.0.0.2"));

        let bytes = der(SELF_SIGNED_WITH_SAN);
        let cert = CertInfo::parse(&bytes).unwrap();
        for (host, expected) in [
            ("db.example.com", true),
            ("db.internal", true),
            ("127.0.0.1", true),
            ("::1", true),
            ("0:0:0:0:0:0:0:1", true),
            ("127.0.0.2", false),
            ("cn.example.com", true), // by the wildcard, not the CN
            ("example.com", false),
            ("localhost", false),
        ] {
            assert_eq!(libpq_host_matches(&cert, host), expected, "{host}");
        }
    }

    #[test]
    fn issue13_item6_a_certificate_in_sslrootcert_is_trusted_as_it_is() {
        let full = verifier(&[SELF_SIGNED_CN_ONLY], true);
        verify(&full, SELF_SIGNED_CN_ONLY, "localhost", IN_VALIDITY).unwrap();
        verify(&full, SELF_SIGNED_CN_ONLY, "LOCALHOST", IN_VALIDITY).unwrap();
        let err = verify(&full, SELF_SIGNED_CN_ONLY, "127.0.0.1", IN_VALIDITY).unwrap_err();
        assert!(
            matches!(
                &err,
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                    presented, ..
                }) if presented == &["CN=localhost"]
            ),
            "{err:?}"
        );
        // verify-ca does not look at the name.
        let ca = verifier(&[SELF_SIGNED_CN_ONLY], false);
        verify(&ca, SELF_SIGNED_CN_ONLY, "127.0.0.1", IN_VALIDITY).unwrap();

        // Among other certificates in the file, in any order.
        let bundle = verifier(&[TEST_CA, SELF_SIGNED_WITH_SAN, SELF_SIGNED_CN_ONLY], true);
        verify(&bundle, SELF_SIGNED_CN_ONLY, "localhost", IN_VALIDITY).unwrap();
        verify(&bundle, SELF_SIGNED_WITH_SAN, "db.example.com", IN_VALIDITY).unwrap();
        verify(&bundle, SELF_SIGNED_WITH_SAN, "::1", IN_VALIDITY).unwrap();
        verify(&bundle, CA_SIGNED_CN_ONLY, "localhost", IN_VALIDITY).unwrap();
    }

    #[test]
    fn issue13_item6_a_pinned_certificate_keeps_its_dates_and_purpose() {
        for check_host in [true, false] {
            let pinned = verifier(&[SELF_SIGNED_CN_ONLY, SELF_SIGNED_CLIENT_ONLY], check_host);
            let err = verify(
                &pinned,
                SELF_SIGNED_CN_ONLY,
                "localhost",
                NOT_AFTER as u64 + 1,
            )
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
                ),
                "{err:?}"
            );
            verify(&pinned, SELF_SIGNED_CN_ONLY, "localhost", NOT_AFTER as u64).unwrap();
            verify(&pinned, SELF_SIGNED_CN_ONLY, "localhost", NOT_BEFORE as u64).unwrap();
            let err = verify(
                &pinned,
                SELF_SIGNED_CN_ONLY,
                "localhost",
                NOT_BEFORE as u64 - 1,
            )
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })
                ),
                "{err:?}"
            );
            let err =
                verify(&pinned, SELF_SIGNED_CLIENT_ONLY, "localhost", IN_VALIDITY).unwrap_err();
            assert_eq!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose)
            );
        }
    }

    #[test]
    fn issue13_item6_a_self_signed_certificate_not_in_sslrootcert_is_refused() {
        for check_host in [true, false] {
            let other = verifier(&[SELF_SIGNED_WITH_SAN, TEST_CA], check_host);
            let err = verify(&other, SELF_SIGNED_CN_ONLY, "localhost", IN_VALIDITY).unwrap_err();
            assert!(
                err.to_string()
                    .contains("self-signed and not in sslrootcert"),
                "{err}"
            );
        }
    }

    #[test]
    fn ca_signed_certificates_keep_the_chain_check_and_gain_the_cn_fallback() {
        let full = verifier(&[TEST_CA], true);
        // No subjectAltName: WebPKI finds no name, libpq's rule takes the CN.
        verify(&full, CA_SIGNED_CN_ONLY, "localhost", IN_VALIDITY).unwrap();
        let err = verify(&full, CA_SIGNED_CN_ONLY, "db.internal", IN_VALIDITY).unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
            ),
            "{err:?}"
        );
        let ca = verifier(&[TEST_CA], false);
        verify(&ca, CA_SIGNED_CN_ONLY, "db.internal", IN_VALIDITY).unwrap();
        // The chain's dates are WebPKI's to check.
        let err = verify(
            &ca,
            CA_SIGNED_CN_ONLY,
            "localhost",
            NOT_AFTER as u64 + 86_400,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
            ),
            "{err:?}"
        );
        // Another CA's leaf is still an unknown issuer.
        let other = verifier(&[SELF_SIGNED_CN_ONLY], true);
        let err = verify(&other, CA_SIGNED_CN_ONLY, "localhost", IN_VALIDITY).unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }
}
