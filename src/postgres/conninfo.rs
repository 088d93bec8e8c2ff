//! Connection parameters parsed from `STARWAL_PG_URL`: a `postgres://` URL or libpq's
//! keyword/value form (`host=a,b port=5432,5433 dbname=app user=repl`).
//!
//! One parser serves both connections starwal opens: the replication connection (our own wire
//! client) and ordinary SQL through tokio-postgres. It keeps what libpq users expect — `sslmode`,
//! `sslrootcert`, `application_name`, `connect_timeout`, percent-encoded user and password — and
//! rejects any parameter it does not understand instead of ignoring it. The password is a
//! [`Secret`]; errors quote the URL only with the password removed (invariant 10). It may also
//! come from a file (`STARWAL_PG_PASSWORD_FILE`, read in `config.rs`), in which case the URL
//! must hold none: [`ConnInfo::password`] is then set from the file.
//!
//! Several hosts (`postgres://a:5432,b:5433/db`) and `target_session_attrs` follow libpq: a
//! connection tries the hosts in order ([`ConnInfo::candidates`]) and keeps the first that
//! answers and qualifies ([`TargetSessionAttrs::accepts`]), so after a failover a reconnect
//! finds the new primary. Both connections walk the list the same way (`tls::connect_sql`,
//! `ReplicationConnection::connect`).
//!
//! The keyword/value form follows libpq's rules: pairs separated by whitespace, spaces allowed
//! around `=`, a value in single quotes may hold spaces, and a backslash takes the next
//! character literally (`\'`, `\\`), quoted or not. `host` and `port` take comma-separated
//! lists (one port for every host, or one per host; an empty entry is 5432). Both forms give the
//! same [`ConnInfo`]; it always prints as a URL without the password.

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

/// libpq's `target_session_attrs`: which server of the host list a connection keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSessionAttrs {
    /// The first server that answers (libpq's default).
    Any,
    /// A server whose sessions are read-write (`transaction_read_only` off).
    ReadWrite,
    /// A server whose sessions are read-only.
    ReadOnly,
    /// A server not in recovery.
    Primary,
    /// A server in recovery (a standby).
    Standby,
    /// A standby if one answers, else any server.
    PreferStandby,
}

impl TargetSessionAttrs {
    fn parse(value: &str) -> Option<TargetSessionAttrs> {
        Some(match value {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            "primary" => TargetSessionAttrs::Primary,
            "standby" => TargetSessionAttrs::Standby,
            "prefer-standby" => TargetSessionAttrs::PreferStandby,
            _ => return None,
        })
    }

    /// Whether the server must be asked about its state after connecting.
    pub fn needs_state(self) -> bool {
        self != TargetSessionAttrs::Any
    }

    /// Whether a server in `state` qualifies in pass `pass` of the host list (libpq walks it
    /// twice for `prefer-standby`: standbys first, then any server).
    pub fn accepts(self, pass: usize, state: ServerState) -> bool {
        match self {
            TargetSessionAttrs::Any => true,
            TargetSessionAttrs::ReadWrite => !state.read_only,
            TargetSessionAttrs::ReadOnly => state.read_only,
            TargetSessionAttrs::Primary => !state.in_recovery,
            TargetSessionAttrs::Standby => state.in_recovery,
            TargetSessionAttrs::PreferStandby => pass > 0 || state.in_recovery,
        }
    }

    /// How many passes over the host list (two for `prefer-standby`).
    pub fn passes(self) -> usize {
        if self == TargetSessionAttrs::PreferStandby {
            2
        } else {
            1
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
            TargetSessionAttrs::Primary => "primary",
            TargetSessionAttrs::Standby => "standby",
            TargetSessionAttrs::PreferStandby => "prefer-standby",
        }
    }
}

/// What a server says about itself, for `target_session_attrs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerState {
    /// `SHOW transaction_read_only`.
    pub read_only: bool,
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
}

impl ServerState {
    /// The query both connections ask (libpq asks the same two things): read-only, in recovery.
    pub const QUERY: &'static str =
        "SELECT current_setting('transaction_read_only') = 'on', pg_is_in_recovery()";

    /// Why a server in this state does not qualify for `attrs`.
    pub fn mismatch(self, attrs: TargetSessionAttrs) -> String {
        format!(
            "{} (target_session_attrs={})",
            match (self.in_recovery, self.read_only) {
                (true, _) => "the server is in recovery (a standby)",
                (false, true) => "the server is read-only",
                (false, false) => "the server is a read-write primary",
            },
            attrs.as_str()
        )
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
    /// The host this connection goes to: the first of [`hosts`](Self::hosts), or the one a
    /// [`candidates`](Self::candidates) entry stands for.
    pub host: String,
    pub port: u16,
    /// Every host of the URL, in order (one for a single-host URL).
    pub hosts: Vec<(String, u16)>,
    /// `target_session_attrs` (default `any`).
    pub target_session_attrs: TargetSessionAttrs,
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
            .field("hosts", &self.hosts)
            .field("target_session_attrs", &self.target_session_attrs)
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
        write!(f, "postgres://{}@", self.user)?;
        for (i, (host, port)) in self.hosts.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            if host.contains(':') {
                write!(f, "{sep}[{host}]:{port}")?;
            } else {
                write!(f, "{sep}{host}:{port}")?;
            }
        }
        write!(f, "/{}", self.dbname)?;
        if self.target_session_attrs != TargetSessionAttrs::Any {
            write!(
                f,
                "?target_session_attrs={}",
                self.target_session_attrs.as_str()
            )?;
        }
        Ok(())
    }
}

/// A `STARWAL_PG_URL` that cannot be used. Never carries the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    #[error("expected a URL starting with postgres:// or postgresql://, or libpq keyword=value pairs (host=... dbname=...)")]
    Scheme,
    #[error("invalid port `{0}`: expected a number from 1 to 65535")]
    Port(String),
    #[error("no host: expected postgres://user:password@host:port/dbname")]
    Host,
    #[error("no user: expected postgres://user:password@host:port/dbname")]
    User,
    #[error("invalid target_session_attrs `{0}`: expected any, read-write, read-only, primary, standby or prefer-standby")]
    TargetSessionAttrs(String),
    #[error("invalid percent-encoding in the {0}")]
    PercentEncoding(&'static str),
    #[error("invalid sslmode `{0}`: expected disable, prefer, require, verify-ca or verify-full")]
    SslMode(String),
    #[error("invalid connect_timeout `{0}`: expected whole seconds")]
    ConnectTimeout(String),
    #[error("unsupported parameter `{0}`: supported are sslmode, sslrootcert, application_name, connect_timeout, target_session_attrs, dbname, user")]
    UnknownParameter(String),
    /// Keyword/value form: a keyword starwal does not know. Never the text right after a
    /// password (an unquoted password with a space would otherwise show its second half).
    #[error("unsupported keyword {0}: supported are host, port, user, password, dbname, sslmode, sslrootcert, application_name, connect_timeout, target_session_attrs")]
    UnknownKeyword(String),
    /// Keyword/value form that cannot be split into pairs; names no text of it.
    #[error("invalid keyword=value string: {0}")]
    Syntax(&'static str),
    /// A Unix-domain socket directory as host (libpq's `host=/var/run/postgresql`): the SQL
    /// client would take it, the replication client cannot.
    #[error("host `{0}` is a Unix-domain socket directory; starwal connects over TCP only: give a host name or IP address (e.g. host=127.0.0.1)")]
    SocketHost(String),
    /// Keyword/value form: `port` lists neither one port nor one per host.
    #[error("{ports} ports for {hosts} hosts: give one port for every host, or one per host")]
    PortCount { ports: usize, hosts: usize },
}

impl ConnInfo {
    /// Parses `postgres[ql]://[user[:password]@]host[:port][,host[:port]...][/dbname][?param=value&...]`.
    /// `dbname` defaults to the user name, like libpq; a host without a port gets 5432.
    /// Or libpq's keyword/value form ([`ConnInfo::parse_keywords`]).
    pub fn parse(url: &str) -> Result<ConnInfo, ConnInfoError> {
        let Some(rest) = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
        else {
            return if url.contains('=') {
                ConnInfo::parse_keywords(url)
            } else {
                Err(ConnInfoError::Scheme)
            };
        };
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
        let mut hosts = Vec::new();
        for entry in hostport.split(',') {
            let (host, port) = split_host_port(entry)?;
            let host = percent_decode(host, "host")?;
            if host.is_empty() {
                return Err(ConnInfoError::Host);
            }
            hosts.push((host, port));
        }
        let mut info = ConnInfo::with_hosts(hosts, password);
        info.dbname = percent_decode(path, "database name")?;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value, "query parameters")?;
            match key {
                "user" => user = value,
                "host" | "port" | "password" => {
                    // Accepting these in the query would create two sources of truth for the
                    // same setting; the URL's authority part is the one place for them.
                    return Err(ConnInfoError::UnknownParameter(key.to_owned()));
                }
                _ => {
                    if !info.set_option(key, value)? {
                        return Err(ConnInfoError::UnknownParameter(key.to_owned()));
                    }
                }
            }
        }
        info.finish(user)
    }

    /// Parses libpq's keyword/value form: `host=a,b port=5432,5433 dbname=app user=repl
    /// password='it\'s' target_session_attrs=read-write` (see the module docs for quoting).
    /// The same keywords as the URL's parameters, plus `host`, `port` and `password`; the same
    /// defaults (`dbname` = the user name, port 5432).
    pub fn parse_keywords(text: &str) -> Result<ConnInfo, ConnInfoError> {
        let pairs = split_keywords(text)?;
        let mut hosts_text: Option<String> = None;
        let mut ports_text: Option<String> = None;
        let mut user = String::new();
        let mut password = None;
        // Options are applied after the hosts are known; `ConnInfo::with_hosts` needs them.
        let mut options = Vec::new();
        let mut after_password = false;
        for (key, value, quoted) in pairs {
            // Every libpq keyword is a word. Anything else is not a keyword but, most likely, a
            // URL with a scheme other than postgres:// (`Postgres://`, `jdbc:postgresql://`) cut
            // at its `?param=`: naming it would print the URL's password, and "no host" would
            // mislead.
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConnInfoError::Scheme);
            }
            // Only an unquoted password can have swallowed the next "keyword".
            let unquoted_password = key == "password" && !quoted;
            match key.as_str() {
                "host" => hosts_text = Some(value),
                "port" => ports_text = Some(value),
                "user" => user = value,
                "password" => password = Some(Secret::new(value)),
                _ => options.push((key, value, after_password)),
            }
            after_password = unquoted_password;
        }
        let hosts_text = hosts_text.ok_or(ConnInfoError::Host)?;
        let host_names: Vec<&str> = hosts_text.split(',').map(str::trim).collect();
        if host_names.iter().any(|host| host.is_empty()) {
            return Err(ConnInfoError::Host);
        }
        let ports = match &ports_text {
            None => vec![DEFAULT_PORT],
            Some(text) => text
                .split(',')
                .map(|port| match port.trim() {
                    "" => Ok(DEFAULT_PORT),
                    port => match port.parse::<u16>() {
                        Ok(number) if number > 0 => Ok(number),
                        _ => Err(ConnInfoError::Port(port.to_owned())),
                    },
                })
                .collect::<Result<Vec<u16>, _>>()?,
        };
        if ports.len() != 1 && ports.len() != host_names.len() {
            return Err(ConnInfoError::PortCount {
                ports: ports.len(),
                hosts: host_names.len(),
            });
        }
        let hosts = host_names
            .iter()
            .enumerate()
            .map(|(i, host)| {
                (
                    (*host).to_owned(),
                    ports[if ports.len() == 1 { 0 } else { i }],
                )
            })
            .collect();
        let mut info = ConnInfo::with_hosts(hosts, password);
        for (key, value, after_password) in options {
            if !info.set_option(&key, value)? {
                return Err(ConnInfoError::UnknownKeyword(if after_password {
                    "right after password= (a password with spaces must be quoted: \
                     password='...')"
                        .to_owned()
                } else {
                    format!("`{key}`")
                }));
            }
        }
        info.finish(user)
    }

    /// Defaults for `hosts` (at least one); the first is [`host`](Self::host).
    fn with_hosts(hosts: Vec<(String, u16)>, password: Option<Secret>) -> ConnInfo {
        let (host, port) = hosts[0].clone();
        ConnInfo {
            host,
            port,
            hosts,
            target_session_attrs: TargetSessionAttrs::Any,
            user: String::new(),
            password,
            dbname: String::new(),
            sslmode: SslMode::Prefer,
            sslrootcert: None,
            application_name: DEFAULT_APPLICATION_NAME.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// A parameter both forms take; `Ok(false)` when `key` is none of them.
    fn set_option(&mut self, key: &str, value: String) -> Result<bool, ConnInfoError> {
        match key {
            "sslmode" => {
                self.sslmode = SslMode::parse(&value).ok_or(ConnInfoError::SslMode(value))?
            }
            "sslrootcert" => {
                self.sslrootcert = Some(if value == "system" {
                    RootCerts::System
                } else {
                    RootCerts::File(PathBuf::from(value))
                })
            }
            "application_name" => self.application_name = value,
            "connect_timeout" => {
                let seconds = value
                    .parse::<u64>()
                    .map_err(|_| ConnInfoError::ConnectTimeout(value.clone()))?;
                self.connect_timeout = Duration::from_secs(seconds.max(1));
            }
            "target_session_attrs" => {
                self.target_session_attrs = TargetSessionAttrs::parse(&value)
                    .ok_or(ConnInfoError::TargetSessionAttrs(value))?
            }
            "dbname" => self.dbname = value,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The checks and defaults both forms end with: a host and a user; `dbname` defaults to
    /// the user name, like libpq.
    fn finish(mut self, user: String) -> Result<ConnInfo, ConnInfoError> {
        if self.host.is_empty() {
            return Err(ConnInfoError::Host);
        }
        // tokio-postgres reads a host starting with `/` as a socket directory, our replication
        // client as a host name: the two connections would go different ways. Refuse it.
        if let Some((host, _)) = self.hosts.iter().find(|(host, _)| host.starts_with('/')) {
            return Err(ConnInfoError::SocketHost(host.clone()));
        }
        if user.is_empty() {
            return Err(ConnInfoError::User);
        }
        if self.dbname.is_empty() {
            self.dbname = user.clone();
        }
        self.user = user;
        Ok(self)
    }

    /// One `ConnInfo` per host, in the URL's order: what a connection tries, each for its host
    /// alone (`host`/`port` set, `hosts` that one), with `target_session_attrs` kept for the
    /// check after connecting.
    pub fn candidates(&self) -> Vec<ConnInfo> {
        self.hosts
            .iter()
            .map(|(host, port)| ConnInfo {
                host: host.clone(),
                port: *port,
                hosts: vec![(host.clone(), *port)],
                ..self.clone()
            })
            .collect()
    }

    /// The same parameters for tokio-postgres (ordinary SQL), for [`host`](Self::host) alone
    /// (the host walk is `tls::connect_sql`'s). TLS is decided by the connector
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

/// libpq's `conninfo_parse`: `keyword = value` pairs separated by whitespace; a value is
/// single-quoted (may hold whitespace) or runs to the next whitespace; in both a backslash takes
/// the next character literally. Errors quote nothing of the text (it may hold a password).
/// Each pair says whether its value was quoted.
fn split_keywords(text: &str) -> Result<Vec<(String, String, bool)>, ConnInfoError> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| is_space(*c)).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !is_space(*c) && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| is_space(*c)).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConnInfoError::Syntax(
                "a keyword without `= value` (write keyword=value pairs separated by spaces)",
            ));
        }
        while chars.next_if(|c| is_space(*c)).is_some() {}
        let mut value = String::new();
        let quoted = chars.next_if_eq(&'\'').is_some();
        if quoted {
            loop {
                match chars.next() {
                    None => {
                        return Err(ConnInfoError::Syntax(
                            "a quoted value without its closing `'`",
                        ))
                    }
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(ConnInfoError::Syntax(
                                "a quoted value without its closing `'`",
                            ))
                        }
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !is_space(*c)) {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        value.push(next);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value, quoted));
    }
}

/// C's `isspace` in the C locale, which libpq splits on: ASCII only. Rust's `char::is_whitespace`
/// would also split at a no-break space inside an unquoted password, which libpq keeps.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
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
            ("postgres://a@h1,/c", ConnInfoError::Host),
            ("postgres://a@h1,h2:x/c", ConnInfoError::Port("x".into())),
            (
                "postgres://a@b/c?sslmode=on",
                ConnInfoError::SslMode("on".into()),
            ),
            (
                "postgres://a@b/c?target_session_attrs=master",
                ConnInfoError::TargetSessionAttrs("master".into()),
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
    fn parses_several_hosts_in_order_with_their_ports() {
        let info = ConnInfo::parse(
            "postgres://u:pw@db1:5433,db2,[::1]:7000/app?target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(
            info.hosts,
            vec![
                ("db1".to_owned(), 5433),
                ("db2".to_owned(), DEFAULT_PORT),
                ("::1".to_owned(), 7000)
            ]
        );
        assert_eq!((info.host.as_str(), info.port), ("db1", 5433));
        assert_eq!(info.target_session_attrs, TargetSessionAttrs::ReadWrite);
        assert_eq!(
            info.to_string(),
            "postgres://u@db1:5433,db2:5432,[::1]:7000/app?target_session_attrs=read-write"
        );
        let candidates = info.candidates();
        assert_eq!(candidates.len(), 3);
        assert_eq!(
            (candidates[1].host.as_str(), candidates[1].port),
            ("db2", 5432)
        );
        assert_eq!(candidates[1].hosts, vec![("db2".to_owned(), 5432)]);
        assert_eq!(
            candidates[2].to_string(),
            "postgres://u@[::1]:7000/app?target_session_attrs=read-write"
        );
        assert_eq!(candidates[2].password.as_ref().unwrap().expose(), "pw");
        // One host: as before.
        let one = ConnInfo::parse("postgres://u@h/d").unwrap();
        assert_eq!(one.hosts, vec![("h".to_owned(), DEFAULT_PORT)]);
        assert_eq!(one.target_session_attrs, TargetSessionAttrs::Any);
        assert_eq!(one.to_string(), "postgres://u@h:5432/d");
    }

    #[test]
    fn target_session_attrs_follow_libpq() {
        use TargetSessionAttrs::*;
        let primary = ServerState {
            read_only: false,
            in_recovery: false,
        };
        let read_only_primary = ServerState {
            read_only: true,
            in_recovery: false,
        };
        let standby = ServerState {
            read_only: true,
            in_recovery: true,
        };
        let cases = [
            (Any, [true, true, true]),
            (ReadWrite, [true, false, false]),
            (ReadOnly, [false, true, true]),
            (Primary, [true, true, false]),
            (Standby, [false, false, true]),
            (PreferStandby, [false, false, true]),
        ];
        for (attrs, expected) in cases {
            let got = [primary, read_only_primary, standby].map(|state| attrs.accepts(0, state));
            assert_eq!(got, expected, "{attrs:?}");
            assert_eq!(TargetSessionAttrs::parse(attrs.as_str()), Some(attrs));
        }
        // The second pass of prefer-standby takes any server.
        assert_eq!(PreferStandby.passes(), 2);
        assert!(PreferStandby.accepts(1, primary));
        assert_eq!(ReadWrite.passes(), 1);
        assert!(standby.mismatch(ReadWrite).contains("in recovery"));
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
    fn keyword_value_form_gives_what_the_url_gives() {
        let url = ConnInfo::parse(
            "postgres://repl:pw@db1:5432,db2:5433/app?target_session_attrs=read-write&sslmode=disable",
        )
        .unwrap();
        let keywords = ConnInfo::parse(
            "host=db1,db2 port=5432,5433 dbname=app user=repl password=pw \
             target_session_attrs=read-write sslmode=disable",
        )
        .unwrap();
        assert_eq!(keywords, url);
        assert_eq!(keywords.to_string(), url.to_string());
        // Spaces around `=`, one port for every host, libpq's defaults.
        let info = ConnInfo::parse("  host = a,b   port=6000 user = u  ").unwrap();
        assert_eq!(
            info.hosts,
            vec![("a".to_owned(), 6000), ("b".to_owned(), 6000)]
        );
        assert_eq!(info.dbname, "u");
        assert_eq!(info.sslmode, SslMode::Prefer);
        let info = ConnInfo::parse("host=a,b,c port=,7000, user=u").unwrap();
        assert_eq!(
            info.hosts,
            vec![
                ("a".to_owned(), DEFAULT_PORT),
                ("b".to_owned(), 7000),
                ("c".to_owned(), DEFAULT_PORT)
            ]
        );
        let info = ConnInfo::parse("host=::1 user=u").unwrap();
        assert_eq!((info.host.as_str(), info.port), ("::1", DEFAULT_PORT));
    }

    #[test]
    fn keyword_values_are_quoted_and_escaped_like_libpq() {
        let info = ConnInfo::parse(
            r"host=h user=u password='it\'s a \\ secret' application_name=a\ b dbname='my db'",
        )
        .unwrap();
        assert_eq!(info.password.as_ref().unwrap().expose(), r"it's a \ secret");
        assert_eq!(info.application_name, "a b");
        assert_eq!(info.dbname, "my db");
        let info = ConnInfo::parse("host=h user=u password='' dbname=d").unwrap();
        assert_eq!(info.password.as_ref().unwrap().expose(), "");
    }

    #[test]
    fn keyword_value_errors_name_the_cause_and_never_the_password() {
        let cases = [
            ("user=u dbname=d", ConnInfoError::Host),
            ("host=a,,b user=u", ConnInfoError::Host),
            ("host=h dbname=d", ConnInfoError::User),
            ("host=h port=x user=u", ConnInfoError::Port("x".into())),
            (
                "host=a,b,c port=1,2 user=u",
                ConnInfoError::PortCount { ports: 2, hosts: 3 },
            ),
            (
                "host=h user=u sslmode=on",
                ConnInfoError::SslMode("on".into()),
            ),
            (
                "host=h user=u hostaddr=1.2.3.4",
                ConnInfoError::UnknownKeyword("`hostaddr`".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(ConnInfo::parse(text).unwrap_err(), expected, "{text}");
        }
        for text in [
            "host=h user=u password='top secret",
            "host=h user=u password=top secret",
            "host=h user=u password=top secret=x",
            "host=h user=u password='top\\",
        ] {
            let err = ConnInfo::parse(text).unwrap_err().to_string();
            assert!(
                !err.contains("top") && !err.contains("secret"),
                "{text}: {err}"
            );
        }
        // Neither a URL nor keyword pairs.
        assert_eq!(
            ConnInfo::parse("db.internal:5432").unwrap_err(),
            ConnInfoError::Scheme
        );
    }

    #[test]
    fn review_keyword_form_edge_cases_follow_libpq_and_hide_the_password() {
        // A URL with a scheme starwal does not know is not keyword pairs: the error says what
        // is expected and quotes none of it (the first "keyword" would be the URL up to `?`).
        for text in [
            "Postgres://u:s3cr3t@h/d?sslmode=disable host=h",
            "jdbc:postgresql://h/d?user=u:s3cr3t&x=1 host=h",
            "postgresql+psycopg://u:s3cr3t@h/d?a=b",
            "host=h user=u =s3cr3t",
        ] {
            let err = ConnInfo::parse(text).unwrap_err();
            assert_eq!(err, ConnInfoError::Scheme, "{text}");
            assert!(!err.to_string().contains("s3cr3t"), "{text}: {err}");
        }
        // A quoted password cannot have swallowed the next keyword: name it.
        assert_eq!(
            ConnInfo::parse("host=h user=u password='a b' hostaddr=1.2.3.4").unwrap_err(),
            ConnInfoError::UnknownKeyword("`hostaddr`".into())
        );
        for keyword in ["service", "passfile", "hostaddr"] {
            assert_eq!(
                ConnInfo::parse(&format!("host=h user=u {keyword}=x")).unwrap_err(),
                ConnInfoError::UnknownKeyword(format!("`{keyword}`"))
            );
        }
        // A socket directory, in either form, is refused by name rather than tried as a name.
        for text in ["host=/var/run/postgresql user=u", "postgres://u@%2Ftmp/d"] {
            assert!(matches!(
                ConnInfo::parse(text).unwrap_err(),
                ConnInfoError::SocketHost(host) if host.starts_with('/')
            ));
        }
        // libpq splits on ASCII whitespace only: a no-break space stays in the value.
        let info = ConnInfo::parse("host=h user=u password=a\u{a0}b").unwrap();
        assert_eq!(info.password.as_ref().unwrap().expose(), "a\u{a0}b");
        // `=` with spaces, a trailing backslash dropped, IPv6 hosts with one port each.
        let info =
            ConnInfo::parse("host = ::1,fe80::2 port = 5433,5434 user=u dbname=d\\").unwrap();
        assert_eq!(
            info.hosts,
            vec![("::1".to_owned(), 5433), ("fe80::2".to_owned(), 5434)]
        );
        assert_eq!(info.dbname, "d");
        assert_eq!(info.to_string(), "postgres://u@[::1]:5433,[fe80::2]:5434/d");
    }

    #[test]
    fn inv10_debug_output_redacts_the_password() {
        let info = ConnInfo::parse("postgres://u:topsecret@h/d").unwrap();
        assert!(!format!("{info:?}").contains("topsecret"));
        assert!(!info.to_string().contains("topsecret"));
    }
}
