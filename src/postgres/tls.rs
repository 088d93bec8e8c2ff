//! TLS to Postgres with rustls, for both the replication connection and tokio-postgres.
//!
//! `sslmode` keeps libpq's meaning: `prefer`/`require` encrypt without verifying the server (unless
//! `sslrootcert` is given, then the chain is verified as in `verify-ca`), `verify-ca` checks the
//! chain against `sslrootcert`, `verify-full` also checks the host name. The CA file defaults to
//! libpq's `~/.postgresql/root.crt`; `sslrootcert=system` uses the OS trust store. A missing or
//! unreadable CA file is an error naming the path, never a silent downgrade (invariant 10).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conninfo::{ConnInfo, RootCerts, SslMode};

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
                let roots = load_roots(mode, roots.as_ref())?;
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
                if mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly { inner: webpki })
                }
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

fn load_roots(mode: SslMode, roots: Option<&RootCerts>) -> Result<RootCertStore, TlsError> {
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
            store.add_parsable_certificates(loaded.certs);
            return Ok(store);
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
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::NoCertificates(path));
    }
    Ok(store)
}

/// `verify-ca`: the full WebPKI chain check, minus the host name.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
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
pub async fn connect_sql(info: &ConnInfo) -> Result<tokio_postgres::Client, SqlConnectError> {
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
            tracing::debug!(error = %err, "SQL connection closed");
        }
    });
    Ok(client)
}

/// An ordinary SQL connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SqlConnectError {
    #[error(transparent)]
    Tls(TlsError),
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
}
