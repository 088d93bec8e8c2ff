//! Connection parameters parsed from a `postgres://` URL (`STARWAL_PG_URL`).
//!
//! One parser serves both connections starwal opens: the replication connection (our own wire
//! client) and ordinary SQL through tokio-postgres. It keeps what libpq users expect — `sslmode`,
//! `sslrootcert`, `application_name`, `connect_timeout`, percent-encoded user and password — and
//! rejects any parameter it does not understand instead of ignoring it. The password is a
//! [`Secret`]; errors quote the URL only with the password removed (invariant 10). It may also
//! come from a file (`STARWAL_PG_PASSWORD_FILE`, read in `config.rs`), in which case the URL
//! must hold none: [`ConnInfo::password`] is then set from the file.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;

/// Postgres' default port.
pub const DEFAULT_PORT: u16 = 5432;
/// How long to wait for a TCP connection when the URL has no `connect_timeout`: long enough for a
/// slow network, short enough that a wrong host is reported promptly.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `application_name` when the URL gives none; shows up in `pg_stat_replication`.
pub const DEFAULT_APPLICATION_NAME: &str = "starwal";

/// libpq's `sslmode`, with libpq's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, without verifying the server (libpq's default).
    Prefer,
    /// TLS or fail; the certificate is not verified unless `sslrootcert` is given.
    Require,
    /// TLS, certificate chain verified against `sslrootcert`; the host name is not checked.
    VerifyCa,
    /// TLS, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// Whether a server that refuses TLS must be refused.
    pub fn requires_tls(self) -> bool {
        !matches!(self, SslMode::Disable | SslMode::Prefer)
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file (`sslrootcert=/path/ca.pem`).
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`).
    System,
}

/// Parsed connection parameters.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The URL's password, or the content of `STARWAL_PG_PASSWORD_FILE` (never both).
    pub password: Option<Secret>,
    pub dbname: String,
    pub sslmode: SslMode,
    /// `sslrootcert`; `None` means libpq's default `~/.postgresql/root.crt` when verifying.
    pub sslrootcert: Option<RootCerts>,
    pub application_name: String,
    pub connect_timeout: Duration,
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnInfo")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("application_name", &self.application_name)
            .finish()
    }
}

impl fmt::Display for ConnInfo {
    /// The URL without its password: safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

/// A `STARWAL_PG_URL` that cannot be used. Never carries the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    #[error("expected a URL starting with postgres:// or postgresql://")]
    Scheme,
    #[error("invalid port `{0}`: expected a number from 1 to 65535")]
    Port(String),
    #[error("no host: expected postgres://user:password@host:port/dbname")]
    Host,
    #[error("no user: expected postgres://user:password@host:port/dbname")]
    User,
    #[error("several hosts are not supported (`{0}`): give one host")]
    MultipleHosts(String),
    #[error("invalid percent-encoding in the {0}")]
    PercentEncoding(&'static str),
    #[error("invalid sslmode `{0}`: expected disable, prefer, require, verify-ca or verify-full")]
    SslMode(String),
    #[error("invalid connect_timeout `{0}`: expected whole seconds")]
    ConnectTimeout(String),
    #[error("unsupported parameter `{0}`: supported are sslmode, sslrootcert, application_name, connect_timeout, dbname, user")]
    UnknownParameter(String),
}

impl ConnInfo {
    /// Parses `postgres[ql]://[user[:password]@]host[:port][/dbname][?param=value&...]`.
    /// `dbname` defaults to the user name, like libpq.
    pub fn parse(url: &str) -> Result<ConnInfo, ConnInfoError> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or(ConnInfoError::Scheme)?;
        // User info ends at the last `@`. Split it off before anything else: a password with an
        // unencoded `/` or `?` must not be cut apart, and since every text an error may quote
        // comes after this `@`, no part of the password can ever reach an error message.
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(userinfo), rest),
            None => (None, rest),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (hostport, path) = match rest.split_once('/') {
            Some((hostport, path)) => (hostport, path),
            None => (rest, ""),
        };
        let (mut user, password) = match userinfo {
            None => (String::new(), None),
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (
                    percent_decode(user, "user name")?,
                    Some(Secret::new(percent_decode(password, "password")?)),
                ),
                None => (percent_decode(info, "user name")?, None),
            },
        };
        if hostport.contains(',') {
            return Err(ConnInfoError::MultipleHosts(hostport.to_owned()));
        }
        let (host, port) = split_host_port(hostport)?;
        let mut info = ConnInfo {
            host: percent_decode(host, "host")?,
            port,
            user: String::new(),
            password,
            dbname: percent_decode(path, "database name")?,
            sslmode: SslMode::Prefer,
            sslrootcert: None,
            application_name: DEFAULT_APPLICATION_NAME.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value, "query parameters")?;
            match key {
                "sslmode" => {
                    info.sslmode = SslMode::parse(&value).ok_or(ConnInfoError::SslMode(value))?
                }
                "sslrootcert" => {
                    info.sslrootcert = Some(if value == "system" {
                        RootCerts::System
                    } else {
                        RootCerts::File(PathBuf::from(value))
                    })
                }
                "application_name" => info.application_name = value,
                "connect_timeout" => {
                    let seconds = value
                        .parse::<u64>()
                        .map_err(|_| ConnInfoError::ConnectTimeout(value.clone()))?;
                    info.connect_timeout = Duration::from_secs(seconds.max(1));
                }
                "dbname" => info.dbname = value,
                "user" => user = value,
                "host" | "port" | "password" => {
                    // Accepting these in the query would create two sources of truth for the
                    // same setting; the URL's authority part is the one place for them.
                    return Err(ConnInfoError::UnknownParameter(key.to_owned()));
                }
                other => return Err(ConnInfoError::UnknownParameter(other.to_owned())),
            }
        }
        if info.host.is_empty() {
            return Err(ConnInfoError::Host);
        }
        if user.is_empty() {
            return Err(ConnInfoError::User);
        }
        if info.dbname.is_empty() {
            info.dbname = user.clone();
        }
        info.user = user;
        Ok(info)
    }

    /// The same parameters for tokio-postgres (ordinary SQL). TLS is decided by the connector
    /// from [`crate::postgres::tls`]; verify modes map to `Require` there.
    pub fn to_tokio_postgres(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(&self.application_name)
            .connect_timeout(self.connect_timeout)
            .ssl_mode(match self.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                    tokio_postgres::config::SslMode::Require
                }
            });
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        let options: Vec<String> = crate::postgres::SESSION_SETTINGS
            .iter()
            .map(|(name, value)| format!("-c {name}={value}"))
            .collect();
        config.options(options.join(" "));
        config
    }
}

fn split_host_port(hostport: &str) -> Result<(&str, u16), ConnInfoError> {
    let parse_port = |p: &str| match p.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ConnInfoError::Port(p.to_owned())),
    };
    if let Some(rest) = hostport.strip_prefix('[') {
        // IPv6 literal: [::1]:5432
        let (host, after) = rest.split_once(']').ok_or(ConnInfoError::Host)?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, parse_port(port)?)),
            None if after.is_empty() => Ok((host, DEFAULT_PORT)),
            None => Err(ConnInfoError::Host),
        };
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => Ok((host, parse_port(port)?)),
        None => Ok((hostport, DEFAULT_PORT)),
    }
}

fn percent_decode(s: &str, what: &'static str) -> Result<String, ConnInfoError> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(ConnInfoError::PercentEncoding(what))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConnInfoError::PercentEncoding(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_url() {
        let info = ConnInfo::parse(
            "postgresql://repl:p%40ss%3Aw@db.internal:6543/app?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(info.host, "db.internal");
        assert_eq!(info.port, 6543);
        assert_eq!(info.user, "repl");
        assert_eq!(info.password.as_ref().unwrap().expose(), "p@ss:w");
        assert_eq!(info.dbname, "app");
        assert_eq!(info.sslmode, SslMode::VerifyFull);
        assert_eq!(
            info.sslrootcert,
            Some(RootCerts::File("/etc/ca.pem".into()))
        );
        assert_eq!(info.application_name, "x");
        assert_eq!(info.connect_timeout, Duration::from_secs(3));
        assert_eq!(info.to_string(), "postgres://repl@db.internal:6543/app");
    }

    #[test]
    fn applies_libpq_defaults() {
        let info = ConnInfo::parse("postgres://alice@localhost").unwrap();
        assert_eq!(info.port, 5432);
        assert_eq!(info.dbname, "alice");
        assert_eq!(info.sslmode, SslMode::Prefer);
        assert!(info.password.is_none());
        let info = ConnInfo::parse("postgres://bob@[::1]:7000/x?sslrootcert=system").unwrap();
        assert_eq!(info.host, "::1");
        assert_eq!(info.port, 7000);
        assert_eq!(info.sslrootcert, Some(RootCerts::System));
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        let cases = [
            ("mysql://a@b/c", ConnInfoError::Scheme),
            ("postgres://a@b:0/c", ConnInfoError::Port("0".into())),
            ("postgres://a@b:x/c", ConnInfoError::Port("x".into())),
            ("postgres://a@/c", ConnInfoError::Host),
            ("postgres://b/c", ConnInfoError::User),
            (
                "postgres://a@h1,h2/c",
                ConnInfoError::MultipleHosts("h1,h2".into()),
            ),
            (
                "postgres://a@b/c?sslmode=on",
                ConnInfoError::SslMode("on".into()),
            ),
            (
                "postgres://a@b/c?target_session_attrs=any",
                ConnInfoError::UnknownParameter("target_session_attrs".into()),
            ),
            (
                "postgres://a:%zz@b/c",
                ConnInfoError::PercentEncoding("password"),
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(ConnInfo::parse(url).unwrap_err(), expected, "{url}");
        }
    }

    #[test]
    fn passwords_with_url_delimiters_stay_out_of_errors() {
        let info = ConnInfo::parse("postgres://u:pa/ss?x@h:5433/db?sslmode=disable").unwrap();
        assert_eq!(info.password.as_ref().unwrap().expose(), "pa/ss?x");
        assert_eq!(
            (info.host.as_str(), info.port, info.dbname.as_str()),
            ("h", 5433, "db")
        );
        for url in [
            "postgres://u:pa/ss@h:x/db",
            "postgres://u:p?q=1@h/db?nope=1",
        ] {
            let err = ConnInfo::parse(url).unwrap_err().to_string();
            assert!(!err.contains("pa/ss") && !err.contains("p?q"), "{err}");
        }
    }

    #[test]
    fn inv10_debug_output_redacts_the_password() {
        let info = ConnInfo::parse("postgres://u:topsecret@h/d").unwrap();
        assert!(!format!("{info:?}").contains("topsecret"));
        assert!(!info.to_string().contains("topsecret"));
    }
}
