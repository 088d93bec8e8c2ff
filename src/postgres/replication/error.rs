//! Errors of the replication connection and stream. Each says what failed and where (the target
//! without its password, the slot, the LSN), keeps the server's SQLSTATE, and decides in one place
//! whether a reconnect may help ([`ReplicationError::is_transient`]).

use std::fmt;
use std::io;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

use crate::postgres::tls::TlsError;

/// An ErrorResponse or NoticeResponse from the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgError {
    pub severity: String,
    /// SQLSTATE, e.g. `55000`.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl PgError {
    pub(crate) fn from_fields(mut fields: ErrorFields<'_>) -> PgError {
        let mut error = PgError::default();
        while let Ok(Some(field)) = fields.next() {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'V' => error.severity = value,
                b'S' if error.severity.is_empty() => error.severity = value,
                b'C' => error.code = value,
                b'M' => error.message = value,
                b'D' => error.detail = Some(value),
                b'H' => error.hint = Some(value),
                _ => {}
            }
        }
        error
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Something went wrong on the replication connection.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to {target}: no answer within {seconds} s (connect_timeout)")]
    ConnectTimeout { target: String, seconds: u64 },
    #[error("{target} does not accept TLS, but sslmode requires it")]
    TlsRefused { target: String },
    #[error("TLS handshake with {target} failed: {source}")]
    TlsHandshake {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Tls(TlsError),
    #[error("the server asks for a password for user `{user}`, but STARWAL_PG_URL has none")]
    PasswordRequired { user: String },
    #[error("unsupported authentication method: {0}")]
    UnsupportedAuth(String),
    #[error("postgres: {0}")]
    Server(PgError),
    #[error("connection to {target} lost: {source}")]
    ConnectionLost {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
    /// Several hosts (or `target_session_attrs`): none answered and qualified.
    #[error("no server of {target} could be used: {}", .failures.join("; "))]
    NoHost {
        target: String,
        failures: Vec<String>,
    },
}

impl ReplicationError {
    /// The server's error, if this is one.
    pub fn server_error(&self) -> Option<&PgError> {
        match self {
            ReplicationError::Server(err) => Some(err),
            _ => None,
        }
    }

    /// Whether reconnecting later may succeed without anyone changing anything: network trouble
    /// and server-side conditions that pass (shutdown, too many connections, slot in use).
    pub fn is_transient(&self) -> bool {
        match self {
            ReplicationError::Connect { .. }
            | ReplicationError::ConnectTimeout { .. }
            | ReplicationError::ConnectionLost { .. }
            | ReplicationError::Io(_)
            // A failover in progress: the new primary may answer on the next attempt.
            | ReplicationError::NoHost { .. } => true,
            ReplicationError::Server(err) => matches!(
                err.code.as_str(),
                // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections,
                // object_in_use (slot active for another PID)
                "57P01" | "57P02" | "57P03" | "53300" | "55006"
            ),
            ReplicationError::TlsRefused { .. }
            | ReplicationError::TlsHandshake { .. }
            | ReplicationError::Tls(_)
            | ReplicationError::PasswordRequired { .. }
            | ReplicationError::UnsupportedAuth(_)
            | ReplicationError::Protocol(_) => false,
        }
    }
}
