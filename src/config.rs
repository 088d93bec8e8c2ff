//! Configuration from `STARWAL_`-prefixed environment variables (and a `.env` file when present).
//!
//! Raw strings are read with `envy` into [`RawConfig`], then validated once into [`Config`]; after
//! that nothing re-checks. Every error names the variable and the expected form, and the CLI exits
//! with code 2 on any of them. Secrets live in [`Secret`], whose `Debug`/`Display` redact, so a
//! password can never reach a log line, an error or a status answer (DESIGN invariant 10).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::postgres::conninfo::{ConnInfo, ConnInfoError};
use crate::sink::starrocks::config::{RawStarRocksConfig, StarRocksConfig};

/// The slot name used when `STARWAL_SLOT` is not set. One agent per slot, so a fixed, recognisable
/// name makes `pg_replication_slots` easy to read.
pub const DEFAULT_SLOT: &str = "starwal";
/// The publication name used when `STARWAL_PUBLICATION` is not set.
pub const DEFAULT_PUBLICATION: &str = "starwal";
/// Heartbeats are off by default: they write WAL on the source, which users should opt into.
pub const DEFAULT_HEARTBEAT_INTERVAL_S: u64 = 0;
/// Standby status updates at least this often. Postgres' default `wal_sender_timeout` is 60 s; ten
/// seconds (what the built-in subscriber uses) keeps us far inside it.
pub const DEFAULT_STATUS_INTERVAL_S: u64 = 10;

/// Longest accepted status interval: an hour is already far beyond any sane
/// `wal_sender_timeout`; the cap keeps deadline arithmetic far from overflow.
pub const MAX_STATUS_INTERVAL_S: u64 = 3600;
/// Longest accepted heartbeat interval (a day), for the same reason.
pub const MAX_HEARTBEAT_INTERVAL_S: u64 = 86_400;

/// A value that must never be printed: `Debug` and `Display` show `********`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (an auth exchange).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// The variables exactly as read from the environment, before validation.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    pg_url: Option<String>,
    tables: Option<String>,
    slot: Option<String>,
    publication: Option<String>,
    heartbeat_interval_s: Option<String>,
    status_interval_s: Option<String>,
    state_schema: Option<String>,
}

/// A table selector from `STARWAL_TABLES`: one table, or every table of a schema (`schema.*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TablePattern {
    /// `schema.table`
    Table { schema: String, name: String },
    /// `schema.*`
    AllInSchema { schema: String },
}

impl fmt::Display for TablePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TablePattern::Table { schema, name } => write!(f, "{schema}.{name}"),
            TablePattern::AllInSchema { schema } => write!(f, "{schema}.*"),
        }
    }
}

/// The validated Postgres-side configuration.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `STARWAL_PG_URL`: where to connect, with TLS settings and the (redacted) password.
    pub conn: ConnInfo,
    /// `STARWAL_TABLES`: what to replicate.
    pub tables: Vec<TablePattern>,
    /// `STARWAL_SLOT` (default [`DEFAULT_SLOT`]).
    pub slot: String,
    /// `STARWAL_PUBLICATION` (default [`DEFAULT_PUBLICATION`]).
    pub publication: String,
    /// `STARWAL_HEARTBEAT_INTERVAL_S` (default [`DEFAULT_HEARTBEAT_INTERVAL_S`], 0 = off).
    pub heartbeat_interval: Option<Duration>,
    /// `STARWAL_STATUS_INTERVAL_S` (default [`DEFAULT_STATUS_INTERVAL_S`]): the longest gap between
    /// two standby status updates.
    pub status_interval: Duration,
    /// `STARWAL_STATE_SCHEMA` (default [`crate::postgres::checkpoint::DEFAULT_STATE_SCHEMA`]): the
    /// source schema holding checkpoints.
    pub state_schema: String,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub postgres: PostgresConfig,
    /// Present when `STARWAL_STARROCKS_URL` is set; commands that load data require it
    /// ([`Config::require_starrocks`]), `tail` does without.
    pub starrocks: Option<StarRocksConfig>,
}

/// A configuration problem: names the variable and the form it expects.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set: expected {expected}")]
    Missing {
        var: &'static str,
        expected: &'static str,
    },
    #[error("{var} is invalid: `{value}`: expected {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("STARWAL_PG_URL is invalid: {0}")]
    PgUrl(#[source] ConnInfoError),
    #[error("could not read the environment: {0}")]
    Environment(#[source] envy::Error),
    #[error("could not read the .env file: {0}")]
    DotEnv(#[source] dotenvy::Error),
}

const TABLES_FORM: &str =
    "a comma-separated list of schema-qualified tables, e.g. `public.orders,sales.*`";
const IDENT_FORM: &str =
    "a Postgres identifier of lower-case letters, digits and underscores, at most 63 bytes";
const SECONDS_FORM: &str = "a whole number of seconds, e.g. 10";

impl Config {
    /// Reads `.env` when present (variables already set win), then the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        load_dotenv()?;
        Self::from_vars(std::env::vars())
    }

    /// Validates the given `(name, value)` pairs; only `STARWAL_`-prefixed names are read.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with("STARWAL_"))
            .collect();
        let raw: RawConfig = envy::prefixed("STARWAL_")
            .from_iter(vars.iter().cloned())
            .map_err(ConfigError::Environment)?;
        let raw_starrocks: RawStarRocksConfig = envy::prefixed("STARWAL_")
            .from_iter(vars)
            .map_err(ConfigError::Environment)?;
        let starrocks = if raw_starrocks.is_configured() {
            Some(raw_starrocks.validate()?)
        } else {
            None
        };
        Ok(Config {
            postgres: PostgresConfig::from_raw(raw)?,
            starrocks,
        })
    }

    /// The StarRocks settings, or the error naming `STARWAL_STARROCKS_URL`.
    pub fn require_starrocks(&self) -> Result<&StarRocksConfig, ConfigError> {
        self.starrocks.as_ref().ok_or(ConfigError::Missing {
            var: "STARWAL_STARROCKS_URL",
            expected: "comma-separated FE HTTP URLs, e.g. http://fe1:8030",
        })
    }
}

/// Loads `.env` from the working directory when it exists; a present but unreadable file is an error.
pub fn load_dotenv() -> Result<(), ConfigError> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(err) if err.not_found() => Ok(()),
        Err(err) => Err(ConfigError::DotEnv(err)),
    }
}

impl PostgresConfig {
    fn from_raw(raw: RawConfig) -> Result<PostgresConfig, ConfigError> {
        let url = non_empty(raw.pg_url).ok_or(ConfigError::Missing {
            var: "STARWAL_PG_URL",
            expected:
                "a postgres URL, e.g. postgres://user:password@host:5432/db?sslmode=verify-full",
        })?;
        let conn = ConnInfo::parse(&url).map_err(ConfigError::PgUrl)?;
        let tables = non_empty(raw.tables).ok_or(ConfigError::Missing {
            var: "STARWAL_TABLES",
            expected: TABLES_FORM,
        })?;
        let tables = parse_tables(&tables)?;
        let slot = identifier("STARWAL_SLOT", raw.slot, DEFAULT_SLOT)?;
        let publication = identifier("STARWAL_PUBLICATION", raw.publication, DEFAULT_PUBLICATION)?;
        let state_schema = identifier(
            "STARWAL_STATE_SCHEMA",
            raw.state_schema,
            crate::postgres::checkpoint::DEFAULT_STATE_SCHEMA,
        )?;
        let heartbeat = seconds(
            "STARWAL_HEARTBEAT_INTERVAL_S",
            raw.heartbeat_interval_s,
            DEFAULT_HEARTBEAT_INTERVAL_S,
        )?;
        let status = seconds(
            "STARWAL_STATUS_INTERVAL_S",
            raw.status_interval_s,
            DEFAULT_STATUS_INTERVAL_S,
        )?;
        if !(1..=MAX_STATUS_INTERVAL_S).contains(&status) {
            return Err(ConfigError::Invalid {
                var: "STARWAL_STATUS_INTERVAL_S",
                value: status.to_string(),
                expected: "1 to 3600 seconds (and well below the server's wal_sender_timeout)",
            });
        }
        if heartbeat > MAX_HEARTBEAT_INTERVAL_S {
            return Err(ConfigError::Invalid {
                var: "STARWAL_HEARTBEAT_INTERVAL_S",
                value: heartbeat.to_string(),
                expected: "0 (off) to 86400 seconds",
            });
        }
        Ok(PostgresConfig {
            conn,
            tables,
            slot,
            publication,
            heartbeat_interval: (heartbeat > 0).then(|| Duration::from_secs(heartbeat)),
            status_interval: Duration::from_secs(status),
            state_schema,
        })
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Parses `STARWAL_TABLES`. Names are taken as written (unquoted Postgres identifiers are
/// lower-case; quoting is not supported here, so `Public.Orders` is rejected rather than guessed).
pub fn parse_tables(value: &str) -> Result<Vec<TablePattern>, ConfigError> {
    let invalid = || ConfigError::Invalid {
        var: "STARWAL_TABLES",
        value: value.to_owned(),
        expected: TABLES_FORM,
    };
    let mut tables = Vec::new();
    for item in value.split(',').map(str::trim) {
        let (schema, name) = item.split_once('.').ok_or_else(invalid)?;
        if !is_identifier(schema) {
            return Err(invalid());
        }
        let pattern = if name == "*" {
            TablePattern::AllInSchema {
                schema: schema.to_owned(),
            }
        } else if is_identifier(name) {
            TablePattern::Table {
                schema: schema.to_owned(),
                name: name.to_owned(),
            }
        } else {
            return Err(invalid());
        };
        if !tables.contains(&pattern) {
            tables.push(pattern);
        }
    }
    Ok(tables)
}

/// An unquoted Postgres identifier as users write it in env vars: lower-case letters, digits,
/// `_` and `$`, not starting with a digit, at most 63 bytes.
pub fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'$'))
        && s.len() <= 63
}

fn identifier(
    var: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<String, ConfigError> {
    match non_empty(value) {
        None => Ok(default.to_owned()),
        Some(v) if is_identifier(&v) && !v.contains('$') => Ok(v),
        Some(v) => Err(ConfigError::Invalid {
            var,
            value: v,
            expected: IDENT_FORM,
        }),
    }
}

fn seconds(var: &'static str, value: Option<String>, default: u64) -> Result<u64, ConfigError> {
    match non_empty(value) {
        None => Ok(default),
        Some(v) => v.parse::<u64>().map_err(|_| ConfigError::Invalid {
            var,
            value: v,
            expected: SECONDS_FORM,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const URL: &str = "postgres://repl:hunter2@db.example:5432/app?sslmode=require";

    #[test]
    fn defaults_apply_when_optional_vars_are_unset() {
        let config = Config::from_vars(vars(&[
            ("STARWAL_PG_URL", URL),
            ("STARWAL_TABLES", "public.orders, sales.*"),
        ]))
        .unwrap();
        let pg = &config.postgres;
        assert_eq!(pg.slot, "starwal");
        assert_eq!(pg.publication, "starwal");
        assert_eq!(pg.heartbeat_interval, None);
        assert_eq!(pg.status_interval, Duration::from_secs(10));
        assert_eq!(
            pg.tables,
            vec![
                TablePattern::Table {
                    schema: "public".into(),
                    name: "orders".into()
                },
                TablePattern::AllInSchema {
                    schema: "sales".into()
                },
            ]
        );
    }

    #[test]
    fn missing_and_invalid_values_name_the_variable() {
        let err = Config::from_vars(vars(&[("STARWAL_TABLES", "public.t")])).unwrap_err();
        assert!(
            err.to_string().starts_with("STARWAL_PG_URL is not set"),
            "{err}"
        );

        let err = Config::from_vars(vars(&[("STARWAL_PG_URL", URL)])).unwrap_err();
        assert!(
            err.to_string().starts_with("STARWAL_TABLES is not set"),
            "{err}"
        );

        for bad in [
            "orders",
            "public.",
            "public.Orders",
            "a.b.c",
            ",",
            "public.t;drop",
        ] {
            let err = Config::from_vars(vars(&[("STARWAL_PG_URL", URL), ("STARWAL_TABLES", bad)]))
                .unwrap_err();
            assert!(
                err.to_string().starts_with("STARWAL_TABLES is invalid"),
                "{bad}: {err}"
            );
        }

        let err = Config::from_vars(vars(&[
            ("STARWAL_PG_URL", URL),
            ("STARWAL_TABLES", "public.t"),
            ("STARWAL_HEARTBEAT_INTERVAL_S", "5s"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("STARWAL_HEARTBEAT_INTERVAL_S is invalid: `5s`"),
            "{err}"
        );

        let err = Config::from_vars(vars(&[
            ("STARWAL_PG_URL", URL),
            ("STARWAL_TABLES", "public.t"),
            ("STARWAL_SLOT", "My-Slot"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().starts_with("STARWAL_SLOT is invalid"),
            "{err}"
        );
    }

    #[test]
    fn password_never_appears_in_debug_or_errors() {
        let config = Config::from_vars(vars(&[
            ("STARWAL_PG_URL", URL),
            ("STARWAL_TABLES", "public.t"),
        ]))
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("********"));

        let err = Config::from_vars(vars(&[
            (
                "STARWAL_PG_URL",
                "postgres://u:hunter2@h/db?sslmode=sometimes",
            ),
            ("STARWAL_TABLES", "public.t"),
        ]))
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("sslmode"), "{err}");
    }
}
