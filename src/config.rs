//! Configuration from `STARWAL_`-prefixed environment variables (and a `.env` file when present).
//!
//! Raw strings are read with `envy` into [`RawConfig`], then validated once into [`Config`]; after
//! that nothing re-checks. Every error names the variable and the expected form, and the CLI exits
//! with code 2 on any of them ([`ConfigError`], in its own leaf module so that the StarRocks
//! settings in `sink/starrocks/config.rs` share it without importing this file). Secrets are held
//! in [`Secret`] (`secret.rs`), whose `Debug`/`Display` redact, so a password can never reach a
//! log line, an error or a status answer (DESIGN invariant 10).
//!
//! A `STARWAL_*` variable that no setting reads is named in a warning at start, with the known
//! variable it likely misspells ([`unknown_variables`]); the known ones are the fields of the
//! raw structs themselves, so the list cannot drift from what is read.

use std::time::Duration;

use serde::Deserialize;

use crate::config_error::ConfigError;
use crate::postgres::catalog::TablePattern;
use crate::postgres::conninfo::ConnInfo;
use crate::secret::{read_secret_file, secret_var, Secret, SecretSourceError};
use crate::sink::starrocks::config::{RawStarRocksConfig, StarRocksConfig};
use crate::sink::starrocks::transaction::TxnTimeouts;

/// The slot name used when `STARWAL_SLOT` is not set. One agent per slot, so a fixed, recognisable
/// name makes `pg_replication_slots` easy to read.
pub const DEFAULT_SLOT: &str = "starwal";
/// The publication name used when `STARWAL_PUBLICATION` is not set.
pub const DEFAULT_PUBLICATION: &str = "starwal";
/// The schema of the checkpoint and copy state when `STARWAL_STATE_SCHEMA` is unset: the
/// product's name, so the tables are easy to recognise (and to drop with `teardown`).
pub const DEFAULT_STATE_SCHEMA: &str = "starwal";
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

/// The variables exactly as read from the environment, before validation.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    pg_url: Option<String>,
    pg_password_file: Option<String>,
    pg_primary_url: Option<String>,
    tables: Option<String>,
    slot: Option<String>,
    publication: Option<String>,
    heartbeat_interval_s: Option<String>,
    status_interval_s: Option<String>,
    state_schema: Option<String>,
    on_slot_loss: Option<String>,
    slot_failover: Option<String>,
    flush_rows: Option<String>,
    flush_bytes: Option<String>,
    flush_interval_ms: Option<String>,
    max_buffer_bytes: Option<String>,
    max_concurrent_loads: Option<String>,
    exit_on_error: Option<String>,
    shutdown_timeout_s: Option<String>,
    control_addr: Option<String>,
    control_token: Option<String>,
    control_token_file: Option<String>,
    metrics_addr: Option<String>,
    snapshot: Option<String>,
    snapshot_workers: Option<String>,
    snapshot_chunk_rows: Option<String>,
    load_retry_max_delay_s: Option<String>,
    txn_timeout_s: Option<String>,
    txn_idle_timeout_s: Option<String>,
    txn_prepared_timeout_s: Option<String>,
    commit_mode: Option<String>,
    streaming: Option<String>,
}

/// The validated Postgres-side configuration.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `STARWAL_PG_URL`: where to connect, with TLS settings and the (redacted) password, which
    /// may come from `STARWAL_PG_PASSWORD_FILE` instead.
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
    /// `STARWAL_STATE_SCHEMA` (default [`DEFAULT_STATE_SCHEMA`]): the
    /// source schema holding checkpoints.
    pub state_schema: String,
    /// `STARWAL_ON_SLOT_LOSS` (default `stop`): what a start does when the slot is missing but
    /// the state schema shows starwal had streamed from it.
    pub on_slot_loss: OnSlotLoss,
    /// `STARWAL_SLOT_FAILOVER` (default: on where the server has failover slots, PG 17+):
    /// `None` when unset, so the default follows the server's version.
    pub slot_failover: Option<bool>,
    /// `STARWAL_PG_PRIMARY_URL` (default unset): the primary, for what starwal writes on the
    /// source (publication, state schema, heartbeats) when `conn` is a standby it decodes from
    /// (PG 16+). Without a password of its own it uses `conn`'s.
    pub primary: Option<ConnInfo>,
}

impl PostgresConfig {
    /// Where starwal's writes on the source go: the primary when `STARWAL_PG_PRIMARY_URL` is
    /// set, else `STARWAL_PG_URL`'s server.
    pub fn writes(&self) -> &ConnInfo {
        self.primary.as_ref().unwrap_or(&self.conn)
    }
}

/// What a start does when the slot is gone but starwal had confirmed changes from it (dropped,
/// invalidated and removed, or missing on a standby promoted after a failover).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSlotLoss {
    /// Refuse to start (health NOT_SERVING) and say what was lost and how to recover.
    Stop,
    /// Create the slot again and copy every table again (what an operator chooses knowingly);
    /// refused with `STARWAL_SNAPSHOT=never`, which would copy nothing.
    Resync,
}

/// How the engine batches, buffers and stops (`starwal run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// `STARWAL_FLUSH_ROWS` (default [`DEFAULT_FLUSH_ROWS`]): a table's batch is sent at this many changes.
    pub flush_rows: u64,
    /// `STARWAL_FLUSH_BYTES` (default [`DEFAULT_FLUSH_BYTES`]): ...or at this many buffered bytes.
    pub flush_bytes: u64,
    /// `STARWAL_FLUSH_INTERVAL_MS` (default [`DEFAULT_FLUSH_INTERVAL_MS`]): ...or when its oldest
    /// change has waited this long.
    pub flush_interval: Duration,
    /// `STARWAL_MAX_BUFFER_BYTES` (default [`DEFAULT_MAX_BUFFER_BYTES`]): above this many buffered
    /// bytes the stream is no longer read (feedback keeps flowing) until loads complete.
    pub max_buffer_bytes: u64,
    /// `STARWAL_MAX_CONCURRENT_LOADS` (default [`DEFAULT_MAX_CONCURRENT_LOADS`]): Stream Loads
    /// of streamed changes running at once across tables (each table still has at most one).
    pub max_concurrent_loads: usize,
    /// `STARWAL_EXIT_ON_ERROR` (default false): exit non-zero on a setup or permanent error
    /// instead of reporting NOT_SERVING and retrying.
    pub exit_on_error: bool,
    /// `STARWAL_SHUTDOWN_TIMEOUT_S` (default [`DEFAULT_SHUTDOWN_TIMEOUT_S`]): how long a drain on
    /// SIGTERM may take before the process exits anyway (nothing is confirmed that was not loaded).
    pub shutdown_timeout: Duration,
    /// `STARWAL_SNAPSHOT`, `_WORKERS`, `_CHUNK_ROWS`: the initial copy.
    pub snapshot: SnapshotConfig,
    /// `STARWAL_LOAD_RETRY_MAX_DELAY_S` (default [`DEFAULT_LOAD_RETRY_MAX_DELAY_S`]): the longest
    /// wait between two attempts of a failing Stream Load, so also how late loads resume after
    /// StarRocks comes back.
    pub load_retry_max_delay: Duration,
    /// `STARWAL_TXN_TIMEOUT_S`, `STARWAL_TXN_IDLE_TIMEOUT_S`, `STARWAL_TXN_PREPARED_TIMEOUT_S`
    /// (defaults in `sink::starrocks::transaction`): the StarRocks transaction that carries a
    /// source transaction larger than a batch (`timeout`, `idle_transaction_timeout`,
    /// `prepared_timeout`).
    pub txn_timeouts: TxnTimeouts,
    /// `STARWAL_COMMIT_MODE` (default `table`): what one StarRocks commit covers.
    pub commit_mode: CommitMode,
    /// `STARWAL_STREAMING` (default `off`): load in-progress transactions as Postgres 14+
    /// streams them (see [`streaming`]).
    pub streaming: bool,
}

/// What one StarRocks commit covers (`STARWAL_COMMIT_MODE`, invariant 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// The changes of one table: a source transaction is never visible in part within a table
    /// (one larger than a batch goes into one StarRocks transaction of each table it touches),
    /// but lands table by table.
    #[default]
    Table,
    /// One or more whole source transactions across all replicated tables per commit, through
    /// StarRocks ≥ 4.0 multi-table transactions (checked at startup): a reader never sees part
    /// of a source transaction, in one table or across tables (`pipeline/multi.rs`).
    Transaction,
}

/// What `starwal run` does with rows that existed before the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    /// Copy every table not yet copied for this slot, then stream (the default).
    Initial,
    /// Never copy: only changes from the slot's consistent point on reach StarRocks.
    Never,
    /// Copy every table not yet copied, then exit 0 without streaming.
    Only,
}

/// How snapshot copies run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// `STARWAL_SNAPSHOT` (default `initial`).
    pub mode: SnapshotMode,
    /// `STARWAL_SNAPSHOT_WORKERS` (default [`DEFAULT_SNAPSHOT_WORKERS`]): Postgres connections
    /// copying chunks at once (each also holds one Stream Load body).
    pub workers: usize,
    /// `STARWAL_SNAPSHOT_CHUNK_ROWS` (default [`DEFAULT_SNAPSHOT_CHUNK_ROWS`]): rows per chunk,
    /// the unit of parallelism and of resumption after a crash.
    pub chunk_rows: u64,
}

/// Four connections keep two cores busy with COPY while the loads of earlier chunks run, and
/// ask little of `max_connections`.
pub const DEFAULT_SNAPSHOT_WORKERS: usize = 4;
/// About 20 MB of JSON for a 10-column row: large loads (StarRocks prefers few big ones) and
/// little repeated work when a crash makes a chunk start over.
pub const DEFAULT_SNAPSHOT_CHUNK_ROWS: u64 = 100_000;

/// Where the control plane listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// `STARWAL_CONTROL_ADDR` (default [`DEFAULT_CONTROL_ADDR`]): the gRPC server.
    pub addr: std::net::SocketAddr,
    /// `STARWAL_CONTROL_TOKEN` or the file `STARWAL_CONTROL_TOKEN_FILE` names: when set, mutating
    /// RPCs need `authorization: Bearer <token>`;
    /// when unset they are accepted from loopback only.
    pub token: Option<Secret>,
    /// `STARWAL_METRICS_ADDR` (default [`DEFAULT_METRICS_ADDR`], `off` disables): Prometheus
    /// text metrics at `/metrics`.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

pub const DEFAULT_FLUSH_ROWS: u64 = 100_000;
pub const DEFAULT_FLUSH_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1_000;
/// 64 MiB: invariant 8 then bounds peak RSS by 96 MiB. Draining a 1M-change 10-column backlog
/// (`./bench/run.sh backlog` with `BENCH_WORKLOADS=mixed`, 2026-12-07) took the same time at caps
/// of 32, 64, 128 and 256 MiB within the shared machine's noise, with the same agent CPU; the
/// peak was 47-56, 62-78, 110-138 and 87-116 MiB (3 runs each; README "Performance", issue 16).
pub const DEFAULT_MAX_BUFFER_BYTES: u64 = 64 * 1024 * 1024;
/// Each load in flight holds a blocking thread and a curl handle outside the buffer (measured
/// ~0.15 MiB each: 50 tables loading at once peaked 5-6 MiB above 16 at once), so 16 cost ~2.5
/// MiB of the 32 MiB slack invariant 8 allows; and 16 tables load at once, so a table waits
/// at most for the loads queued before it (in arrival order) when many tables flush together.
pub const DEFAULT_MAX_CONCURRENT_LOADS: u64 = 16;
/// Most accepted `STARWAL_MAX_CONCURRENT_LOADS`: 64 loads cost ~10 MiB outside the buffer,
/// more would crowd the 32 MiB slack, and StarRocks' BE serves 48 HTTP requests at once by
/// default (`webserver_num_workers`).
const MAX_CONCURRENT_LOADS: u64 = 64;
pub const DEFAULT_SHUTDOWN_TIMEOUT_S: u64 = 30;
/// Loads resume within this many seconds of StarRocks coming back, at the cost of one request
/// per failing table per wait during an outage (the reason is with
/// [`DEFAULT_MAX_RETRY_DELAY`](crate::sink::starrocks::stream_load::DEFAULT_MAX_RETRY_DELAY)).
pub const DEFAULT_LOAD_RETRY_MAX_DELAY_S: u64 =
    crate::sink::starrocks::stream_load::DEFAULT_MAX_RETRY_DELAY.as_secs();
// Within the accepted range, and short: loads resume at most this long after an outage ends.
const _: () = assert!(DEFAULT_LOAD_RETRY_MAX_DELAY_S >= 1 && DEFAULT_LOAD_RETRY_MAX_DELAY_S <= 10);
/// Longest accepted `STARWAL_LOAD_RETRY_MAX_DELAY_S`: beyond 10 minutes an outage's end would go
/// unnoticed for longer than any alert waits.
const MAX_LOAD_RETRY_MAX_DELAY_S: u64 = 600;
/// Longest accepted `STARWAL_TXN_*_TIMEOUT_S`: StarRocks' own bound on a transaction's `timeout`
/// (3 days, also how long it keeps labels).
const MAX_TXN_TIMEOUT_S: u64 = 259_200;
pub const DEFAULT_CONTROL_ADDR: &str = "0.0.0.0:50051";
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9187";

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub postgres: PostgresConfig,
    pub engine: EngineConfig,
    pub control: ControlConfig,
    /// Present when `STARWAL_STARROCKS_URL` is set; commands that load data require it
    /// ([`Config::require_starrocks`]), `tail` does without.
    pub starrocks: Option<StarRocksConfig>,
}

const TABLES_FORM: &str = "a comma-separated list of schema-qualified tables, e.g. `public.orders,sales.*` (unquoted names fold to lower case; quote others: `public.\"Orders\"`)";
const IDENT_FORM: &str =
    "a Postgres identifier of lower-case letters, digits and underscores, at most 63 bytes";
const SECONDS_FORM: &str = "a whole number of seconds, e.g. 10";

impl Config {
    /// Reads `.env` when present (variables already set win), then the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        load_dotenv()?;
        let vars = environment()?;
        // A misspelled name would be ignored silently: say so, in the log (it is not an error:
        // a variable meant for another version or tool must not stop the agent).
        for unknown in unknown_variables(vars.iter().map(|(name, _)| name.as_str())) {
            tracing::warn!("{unknown}");
        }
        Self::from_vars(vars)
    }

    /// Validates the given `(name, value)` pairs; only `STARWAL_`-prefixed names are read.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with("STARWAL_"))
            .collect();
        let mut raw: RawConfig = envy::prefixed("STARWAL_")
            .from_iter(vars.iter().cloned())
            .map_err(ConfigError::Environment)?;
        let engine = EngineConfig::from_raw(&mut raw)?;
        let control = ControlConfig::from_raw(&mut raw)?;
        let raw_starrocks: RawStarRocksConfig = envy::prefixed("STARWAL_")
            .from_iter(vars)
            .map_err(ConfigError::Environment)?;
        let starrocks = if raw_starrocks.is_configured() {
            Some(raw_starrocks.validate()?)
        } else {
            None
        };
        let postgres = PostgresConfig::from_raw(raw)?;
        // A resync re-creates the slot and forgets the checkpoint, so only the copy brings back
        // what changed while the slot was lost: without one those rows would stay missing
        // while the log says every table is copied again.
        if postgres.on_slot_loss == OnSlotLoss::Resync
            && engine.snapshot.mode == SnapshotMode::Never
        {
            return Err(ConfigError::Invalid {
                var: "STARWAL_ON_SLOT_LOSS",
                value: "resync".to_owned(),
                expected: "stop while STARWAL_SNAPSHOT=never: a resync re-creates the slot and \
                           copies every table again, and `never` copies nothing, so what changed \
                           while the slot was lost would stay missing; set STARWAL_SNAPSHOT=initial \
                           to resync",
            });
        }
        Ok(Config {
            postgres,
            engine,
            control,
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

/// `STARWAL_*` variables read outside [`RawConfig`] and the StarRocks settings: the log filter
/// and format (`cli.rs`, before any configuration is read) and the control client's `--addr`. Everything else is a field of those raw
/// structs, so a variable added there is known here at once (see [`known_variables`]).
pub const OTHER_VARIABLES: &[&str] = &["STARWAL_LOG", "STARWAL_LOG_FORMAT", "STARWAL_CONTROL_URL"];

/// Every `STARWAL_*` variable starwal reads: the fields of the raw structs, as serde reads them,
/// and [`OTHER_VARIABLES`].
pub fn known_variables() -> Vec<String> {
    struct_fields::<RawConfig>()
        .iter()
        .chain(struct_fields::<RawStarRocksConfig>())
        .map(|field| format!("STARWAL_{}", field.to_ascii_uppercase()))
        .chain(OTHER_VARIABLES.iter().map(|name| (*name).to_owned()))
        .collect()
}

/// A `STARWAL_*` variable that starwal does not read (it would be ignored silently otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable {
    pub name: String,
    /// The known variable it most likely misspells, if one is close.
    pub did_you_mean: Option<String>,
}

impl std::fmt::Display for UnknownVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not a starwal variable and is ignored", self.name)?;
        match &self.did_you_mean {
            Some(known) => write!(f, "; did you mean {known}?"),
            None => f.write_str(" (see .env.example for the variables)"),
        }
    }
}

/// The `STARWAL_*` names among `names` that no setting reads, each with the known name it is
/// closest to when that one is a likely misspelling. Names compare as envy reads them, ignoring
/// case after the prefix.
pub fn unknown_variables<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<UnknownVariable> {
    let known = known_variables();
    let mut unknown: Vec<UnknownVariable> = names
        .into_iter()
        .filter(|name| name.starts_with("STARWAL_"))
        .filter(|name| !known.iter().any(|k| k.eq_ignore_ascii_case(name)))
        .map(|name| {
            let upper = name.to_ascii_uppercase();
            // Close: at most two edits, or a quarter of the name for long ones.
            let limit = 2.max(upper.len().saturating_sub("STARWAL_".len()) / 4);
            let did_you_mean = known
                .iter()
                .map(|k| (edit_distance(&upper, k), k))
                .filter(|(distance, _)| *distance <= limit)
                .min()
                .map(|(_, k)| k.clone());
            UnknownVariable {
                name: name.to_owned(),
                did_you_mean,
            }
        })
        .collect();
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    unknown.dedup();
    unknown
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`: optimal string
/// alignment distance, so the common `TABELS` for `TABLES` is one edit, not two.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// The field names of a struct as its derived `Deserialize` declares them, read by asking it to
/// deserialize from a deserializer that only records them: the raw structs stay the one list
/// of variables.
fn struct_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};

    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // Always an error: the deserializer stops once it has the names.
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

/// The process environment as `(name, value)` pairs. A `STARWAL_*` variable that is not valid
/// UTF-8 is an error naming it (`std::env::vars` would panic on it, invariant 9); other
/// variables are not ours to judge and are left out.
fn environment() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => vars.push((name.to_owned(), value)),
            Err(_) if name.starts_with("STARWAL_") => {
                return Err(ConfigError::Environment(envy::Error::Custom(format!(
                    "{name} is not valid UTF-8"
                ))))
            }
            Err(_) => {}
        }
    }
    Ok(vars)
}

impl PostgresConfig {
    fn from_raw(raw: RawConfig) -> Result<PostgresConfig, ConfigError> {
        let url = non_empty(raw.pg_url).ok_or(ConfigError::Missing {
            var: "STARWAL_PG_URL",
            expected:
                "a postgres URL, e.g. postgres://user:password@host:5432/db?sslmode=verify-full",
        })?;
        let mut conn = ConnInfo::parse(&url).map_err(ConfigError::PgUrl)?;
        // The password from a mounted secret file; a second one in the URL would leave which
        // is meant to a guess.
        if let Some(path) = non_empty(raw.pg_password_file) {
            if conn.password.is_some() {
                return Err(ConfigError::Secret(SecretSourceError::InUrl {
                    url_var: "STARWAL_PG_URL",
                    file_var: "STARWAL_PG_PASSWORD_FILE",
                }));
            }
            conn.password = Some(
                read_secret_file("STARWAL_PG_PASSWORD_FILE", std::path::Path::new(&path))
                    .map_err(ConfigError::Secret)?,
            );
        }
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
            DEFAULT_STATE_SCHEMA,
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
        let on_slot_loss = match non_empty(raw.on_slot_loss).as_deref() {
            None => OnSlotLoss::Stop,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "stop" => OnSlotLoss::Stop,
                "resync" => OnSlotLoss::Resync,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "STARWAL_ON_SLOT_LOSS",
                        value: v.to_owned(),
                        expected: "stop or resync",
                    })
                }
            },
        };
        let slot_failover = match non_empty(raw.slot_failover).as_deref() {
            None => None,
            Some(v) => Some(parse_bool(v).ok_or_else(|| ConfigError::Invalid {
                var: "STARWAL_SLOT_FAILOVER",
                value: v.to_owned(),
                expected: "true or false",
            })?),
        };
        let primary = match non_empty(raw.pg_primary_url) {
            None => None,
            Some(url) => {
                let mut primary = ConnInfo::parse(&url).map_err(ConfigError::PgPrimaryUrl)?;
                // Usually the same role on both servers: one secret, not two.
                if primary.password.is_none() {
                    primary.password.clone_from(&conn.password);
                }
                Some(primary)
            }
        };
        Ok(PostgresConfig {
            primary,
            conn,
            tables,
            slot,
            publication,
            heartbeat_interval: (heartbeat > 0).then(|| Duration::from_secs(heartbeat)),
            status_interval: Duration::from_secs(status),
            state_schema,
            on_slot_loss,
            slot_failover,
        })
    }
}

impl EngineConfig {
    fn from_raw(raw: &mut RawConfig) -> Result<EngineConfig, ConfigError> {
        let flush_rows = positive(
            "STARWAL_FLUSH_ROWS",
            raw.flush_rows.take(),
            DEFAULT_FLUSH_ROWS,
        )?;
        let flush_bytes = positive(
            "STARWAL_FLUSH_BYTES",
            raw.flush_bytes.take(),
            DEFAULT_FLUSH_BYTES,
        )?;
        let flush_interval_ms = positive(
            "STARWAL_FLUSH_INTERVAL_MS",
            raw.flush_interval_ms.take(),
            DEFAULT_FLUSH_INTERVAL_MS,
        )?;
        let max_buffer_bytes = positive(
            "STARWAL_MAX_BUFFER_BYTES",
            raw.max_buffer_bytes.take(),
            DEFAULT_MAX_BUFFER_BYTES,
        )?;
        let max_concurrent_loads = positive(
            "STARWAL_MAX_CONCURRENT_LOADS",
            raw.max_concurrent_loads.take(),
            DEFAULT_MAX_CONCURRENT_LOADS,
        )?;
        if max_concurrent_loads > MAX_CONCURRENT_LOADS {
            return Err(ConfigError::Invalid {
                var: "STARWAL_MAX_CONCURRENT_LOADS",
                value: max_concurrent_loads.to_string(),
                expected: "1 to 64 loads",
            });
        }
        if flush_interval_ms > 3_600_000 {
            return Err(ConfigError::Invalid {
                var: "STARWAL_FLUSH_INTERVAL_MS",
                value: flush_interval_ms.to_string(),
                expected: "1 to 3600000 milliseconds",
            });
        }
        let shutdown = seconds(
            "STARWAL_SHUTDOWN_TIMEOUT_S",
            raw.shutdown_timeout_s.take(),
            DEFAULT_SHUTDOWN_TIMEOUT_S,
        )?;
        if !(1..=MAX_STATUS_INTERVAL_S).contains(&shutdown) {
            return Err(ConfigError::Invalid {
                var: "STARWAL_SHUTDOWN_TIMEOUT_S",
                value: shutdown.to_string(),
                expected: "1 to 3600 seconds",
            });
        }
        let exit_on_error = match non_empty(raw.exit_on_error.take()).as_deref() {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| ConfigError::Invalid {
                var: "STARWAL_EXIT_ON_ERROR",
                value: v.to_owned(),
                expected: "true or false",
            })?,
        };
        let mode = match non_empty(raw.snapshot.take()).as_deref() {
            None => SnapshotMode::Initial,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "initial" => SnapshotMode::Initial,
                "never" => SnapshotMode::Never,
                "only" => SnapshotMode::Only,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "STARWAL_SNAPSHOT",
                        value: v.to_owned(),
                        expected: "initial, never or only",
                    })
                }
            },
        };
        let workers = positive(
            "STARWAL_SNAPSHOT_WORKERS",
            raw.snapshot_workers.take(),
            DEFAULT_SNAPSHOT_WORKERS as u64,
        )?;
        if workers > 64 {
            return Err(ConfigError::Invalid {
                var: "STARWAL_SNAPSHOT_WORKERS",
                value: workers.to_string(),
                expected: "1 to 64 connections",
            });
        }
        let chunk_rows = positive(
            "STARWAL_SNAPSHOT_CHUNK_ROWS",
            raw.snapshot_chunk_rows.take(),
            DEFAULT_SNAPSHOT_CHUNK_ROWS,
        )?;
        let retry_max = positive(
            "STARWAL_LOAD_RETRY_MAX_DELAY_S",
            raw.load_retry_max_delay_s.take(),
            DEFAULT_LOAD_RETRY_MAX_DELAY_S,
        )?;
        if retry_max > MAX_LOAD_RETRY_MAX_DELAY_S {
            return Err(ConfigError::Invalid {
                var: "STARWAL_LOAD_RETRY_MAX_DELAY_S",
                value: retry_max.to_string(),
                expected: "1 to 600 seconds",
            });
        }
        let defaults = TxnTimeouts::default();
        // StarRocks accepts 1 s to 3 days for `timeout` (and refuses a begin outside it).
        let txn_seconds = |var: &'static str, raw: Option<String>, default: Duration| {
            let value = positive(var, raw, default.as_secs())?;
            if value > MAX_TXN_TIMEOUT_S {
                return Err(ConfigError::Invalid {
                    var,
                    value: value.to_string(),
                    expected: "1 to 259200 seconds",
                });
            }
            Ok(Duration::from_secs(value))
        };
        let txn_timeouts = TxnTimeouts {
            timeout: txn_seconds(
                "STARWAL_TXN_TIMEOUT_S",
                raw.txn_timeout_s.take(),
                defaults.timeout,
            )?,
            idle: txn_seconds(
                "STARWAL_TXN_IDLE_TIMEOUT_S",
                raw.txn_idle_timeout_s.take(),
                defaults.idle,
            )?,
            prepared: txn_seconds(
                "STARWAL_TXN_PREPARED_TIMEOUT_S",
                raw.txn_prepared_timeout_s.take(),
                defaults.prepared,
            )?,
        };
        let commit_mode = match non_empty(raw.commit_mode.take()).as_deref() {
            None => CommitMode::Table,
            Some(v) if v.eq_ignore_ascii_case("table") => CommitMode::Table,
            Some(v) if v.eq_ignore_ascii_case("transaction") => CommitMode::Transaction,
            Some(v) => {
                return Err(ConfigError::Invalid {
                    var: "STARWAL_COMMIT_MODE",
                    value: v.to_owned(),
                    expected: "table or transaction",
                })
            }
        };
        let streaming = streaming(raw.streaming.take())?;
        if streaming && commit_mode == CommitMode::Transaction {
            // Streamed parts go into single-table transactions; a multi-table one would need
            // its own design (and StarRocks' has no prepare).
            return Err(ConfigError::Invalid {
                var: "STARWAL_STREAMING",
                value: "on".to_owned(),
                expected: "off with STARWAL_COMMIT_MODE=transaction (streamed transactions \
                           load into one table's StarRocks transactions; use \
                           STARWAL_COMMIT_MODE=table to stream)",
            });
        }
        Ok(EngineConfig {
            commit_mode,
            streaming,
            txn_timeouts,
            load_retry_max_delay: Duration::from_secs(retry_max),
            snapshot: SnapshotConfig {
                mode,
                workers: workers as usize,
                chunk_rows,
            },
            flush_rows,
            flush_bytes,
            flush_interval: Duration::from_millis(flush_interval_ms),
            max_buffer_bytes,
            max_concurrent_loads: max_concurrent_loads as usize,
            exit_on_error,
            shutdown_timeout: Duration::from_secs(shutdown),
        })
    }
}

/// `STARWAL_STREAMING` (default `off`): whether to ask Postgres 14+ for in-progress transactions
/// (pgoutput v2 `streaming 'on'`) and load them before their COMMIT (issue 14, item 3; the design
/// and why the default is `off` are in ARCHITECTURE.md, "Streamed transactions").
fn streaming(value: Option<String>) -> Result<bool, ConfigError> {
    match non_empty(value).as_deref() {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("off") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("on") => Ok(true),
        Some(v) => Err(ConfigError::Invalid {
            var: "STARWAL_STREAMING",
            value: v.to_owned(),
            expected: "on or off",
        }),
    }
}

impl ControlConfig {
    fn from_raw(raw: &mut RawConfig) -> Result<ControlConfig, ConfigError> {
        const ADDR_FORM: &str = "a socket address `host:port`, e.g. 0.0.0.0:50051";
        let socket = |var: &'static str, value: String| {
            value
                .parse::<std::net::SocketAddr>()
                .map_err(|_| ConfigError::Invalid {
                    var,
                    value,
                    expected: ADDR_FORM,
                })
        };
        let addr = socket(
            "STARWAL_CONTROL_ADDR",
            non_empty(raw.control_addr.take()).unwrap_or_else(|| DEFAULT_CONTROL_ADDR.into()),
        )?;
        let metrics_addr = match non_empty(raw.metrics_addr.take()) {
            Some(v) if v.eq_ignore_ascii_case("off") => None,
            Some(v) => Some(socket("STARWAL_METRICS_ADDR", v)?),
            None => Some(socket("STARWAL_METRICS_ADDR", DEFAULT_METRICS_ADDR.into())?),
        };
        let token_file = non_empty(raw.control_token_file.take());
        let token = secret_var(
            "STARWAL_CONTROL_TOKEN",
            // The variable is trimmed, as it always was; a file is taken as written.
            non_empty(raw.control_token.take()),
            "STARWAL_CONTROL_TOKEN_FILE",
            token_file.clone(),
        )
        .map_err(ConfigError::Secret)?;
        if let (Some(path), Some(token)) = (token_file, &token) {
            // An empty token would mean "no token" (mutating RPCs from loopback only): not what
            // a mounted token file asks for, so say so rather than run without it.
            if token.expose().trim().is_empty() {
                return Err(ConfigError::Invalid {
                    var: "STARWAL_CONTROL_TOKEN_FILE",
                    value: path,
                    expected: "a file holding the token (this one is empty)",
                });
            }
        }
        Ok(ControlConfig {
            addr,
            token,
            metrics_addr,
        })
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, any case).
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn positive(var: &'static str, value: Option<String>, default: u64) -> Result<u64, ConfigError> {
    match non_empty(value) {
        None => Ok(default),
        Some(v) => match v.replace('_', "").parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::Invalid {
                var,
                value: v,
                expected: "a whole number greater than 0",
            }),
        },
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Parses `STARWAL_TABLES` with Postgres' identifier rules ([`TablePattern::parse_list`]):
/// unquoted names fold to lower case, quoted ones (`public."Orders"`) are taken as written.
pub fn parse_tables(value: &str) -> Result<Vec<TablePattern>, ConfigError> {
    TablePattern::parse_list(value).map_err(ConfigError::Tables)
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
    fn a_resync_without_a_copy_is_refused_naming_both_variables() {
        let set = [
            ("STARWAL_PG_URL", URL),
            ("STARWAL_TABLES", "public.t"),
            ("STARWAL_ON_SLOT_LOSS", "resync"),
            ("STARWAL_SNAPSHOT", "never"),
        ];
        let err = Config::from_vars(vars(&set)).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    var: "STARWAL_ON_SLOT_LOSS",
                    ..
                }
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("STARWAL_ON_SLOT_LOSS") && text.contains("STARWAL_SNAPSHOT=never"),
            "{text}"
        );
        // Every mode that copies resyncs; `never` with the default `stop` is accepted.
        for (loss, snapshot) in [("resync", "initial"), ("resync", "only"), ("stop", "never")] {
            let mut set = set.to_vec();
            set.truncate(2);
            set.push(("STARWAL_ON_SLOT_LOSS", loss));
            set.push(("STARWAL_SNAPSHOT", snapshot));
            assert!(
                Config::from_vars(vars(&set)).is_ok(),
                "{loss} with {snapshot}"
            );
        }
    }

    #[test]
    fn slot_loss_stops_by_default_and_failover_follows_the_server_unless_set() {
        let base = [("STARWAL_PG_URL", URL), ("STARWAL_TABLES", "public.t")];
        let pg = Config::from_vars(vars(&base)).unwrap().postgres;
        assert_eq!(pg.on_slot_loss, OnSlotLoss::Stop);
        assert_eq!(pg.slot_failover, None);
        let mut set = base.to_vec();
        set.push(("STARWAL_ON_SLOT_LOSS", "Resync"));
        set.push(("STARWAL_SLOT_FAILOVER", "false"));
        let pg = Config::from_vars(vars(&set)).unwrap().postgres;
        assert_eq!(pg.on_slot_loss, OnSlotLoss::Resync);
        assert_eq!(pg.slot_failover, Some(false));
        for (var, bad) in [
            ("STARWAL_ON_SLOT_LOSS", "restart"),
            ("STARWAL_SLOT_FAILOVER", "maybe"),
        ] {
            let mut set = base.to_vec();
            set.push((var, bad));
            let err = Config::from_vars(vars(&set)).unwrap_err().to_string();
            assert!(err.contains(var) && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn primary_url_is_where_writes_go_and_shares_the_password() {
        let base = [("STARWAL_PG_URL", URL), ("STARWAL_TABLES", "public.t")];
        let pg = Config::from_vars(vars(&base)).unwrap().postgres;
        assert!(pg.primary.is_none());
        assert_eq!(pg.writes(), &pg.conn);
        let mut set = base.to_vec();
        set.push(("STARWAL_PG_PRIMARY_URL", "host=pg1 user=repl dbname=app"));
        let pg = Config::from_vars(vars(&set)).unwrap().postgres;
        let primary = pg.primary.as_ref().unwrap();
        assert_eq!(pg.writes(), primary);
        assert_eq!(primary.host, "pg1");
        assert_eq!(primary.password.as_ref().unwrap().expose(), "hunter2");
        let mut set = base.to_vec();
        set.push(("STARWAL_PG_PRIMARY_URL", "postgres://x:secret@h:0/db"));
        let err = Config::from_vars(vars(&set)).unwrap_err().to_string();
        assert!(
            err.starts_with("STARWAL_PG_PRIMARY_URL is invalid") && !err.contains("secret"),
            "{err}"
        );
    }

    #[test]
    fn inv8_concurrent_loads_default_to_a_bound_and_are_validated() {
        let base = [("STARWAL_PG_URL", URL), ("STARWAL_TABLES", "public.t")];
        let config = Config::from_vars(vars(&base)).unwrap();
        assert_eq!(
            config.engine.max_concurrent_loads,
            DEFAULT_MAX_CONCURRENT_LOADS as usize
        );
        let mut with = base.to_vec();
        with.push(("STARWAL_MAX_CONCURRENT_LOADS", "4"));
        assert_eq!(
            Config::from_vars(vars(&with))
                .unwrap()
                .engine
                .max_concurrent_loads,
            4
        );
        for bad in ["0", "65", "8 loads", "-1"] {
            let mut with = base.to_vec();
            with.push(("STARWAL_MAX_CONCURRENT_LOADS", bad));
            let err = Config::from_vars(vars(&with)).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("STARWAL_MAX_CONCURRENT_LOADS is invalid"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn inv9_missing_and_invalid_values_name_the_variable() {
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
            "public.\"Orders",
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
    fn issue13_load_retry_cap_defaults_short_and_is_validated() {
        let base = [("STARWAL_PG_URL", URL), ("STARWAL_TABLES", "public.t")];
        let config = Config::from_vars(vars(&base)).unwrap();
        assert_eq!(
            config.engine.load_retry_max_delay,
            Duration::from_secs(DEFAULT_LOAD_RETRY_MAX_DELAY_S)
        );
        let mut with = base.to_vec();
        with.push(("STARWAL_LOAD_RETRY_MAX_DELAY_S", "2"));
        let config = Config::from_vars(vars(&with)).unwrap();
        assert_eq!(config.engine.load_retry_max_delay, Duration::from_secs(2));
        for bad in ["0", "601", "5s", "-1"] {
            let mut with = base.to_vec();
            with.push(("STARWAL_LOAD_RETRY_MAX_DELAY_S", bad));
            let err = Config::from_vars(vars(&with)).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("STARWAL_LOAD_RETRY_MAX_DELAY_S is invalid"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn inv11_commit_mode_is_table_or_transaction_and_others_are_refused_naming_the_variable() {
        let base = [("STARWAL_PG_URL", URL), ("STARWAL_TABLES", "public.t")];
        let config = Config::from_vars(vars(&base)).unwrap();
        assert_eq!(config.engine.commit_mode, CommitMode::Table);
        let mut with = base.to_vec();
        with.push(("STARWAL_COMMIT_MODE", "TABLE"));
        assert_eq!(
            Config::from_vars(vars(&with)).unwrap().engine.commit_mode,
            CommitMode::Table
        );
        with.pop();
        with.push(("STARWAL_COMMIT_MODE", "transaction"));
        assert_eq!(
            Config::from_vars(vars(&with)).unwrap().engine.commit_mode,
            CommitMode::Transaction
        );
        for (bad, says) in [
            ("tables", "expected table or transaction"),
            ("multi", "expected table or transaction"),
        ] {
            let mut with = base.to_vec();
            with.push(("STARWAL_COMMIT_MODE", bad));
            let err = Config::from_vars(vars(&with)).unwrap_err().to_string();
            assert!(
                err.starts_with("STARWAL_COMMIT_MODE is invalid") && err.contains(says),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn inv11_streaming_is_off_by_default_and_on_is_refused_only_with_transaction_mode() {
        let base = [("STARWAL_PG_URL", URL), ("STARWAL_TABLES", "public.t")];
        assert!(!Config::from_vars(vars(&base)).unwrap().engine.streaming);
        for (value, on) in [
            ("off", false),
            ("OFF", false),
            ("", false),
            ("on", true),
            ("ON", true),
        ] {
            let mut with = base.to_vec();
            with.push(("STARWAL_STREAMING", value));
            assert_eq!(
                Config::from_vars(vars(&with)).unwrap().engine.streaming,
                on,
                "{value}"
            );
        }
        for bad in ["parallel", "true", "preview"] {
            let mut with = base.to_vec();
            with.push(("STARWAL_STREAMING", bad));
            let err = Config::from_vars(vars(&with)).unwrap_err().to_string();
            assert!(
                err.starts_with("STARWAL_STREAMING is invalid") && err.contains("on or off"),
                "{bad}: {err}"
            );
        }
        assert!(unknown_variables(["STARWAL_STREAMING"]).is_empty());
        let mut with = base.to_vec();
        with.push(("STARWAL_STREAMING", "on"));
        with.push(("STARWAL_COMMIT_MODE", "transaction"));
        let err = Config::from_vars(vars(&with)).unwrap_err().to_string();
        assert!(err.contains("STARWAL_COMMIT_MODE=table"), "{err}");
    }

    #[test]
    fn inv11_transaction_timeouts_default_and_are_validated_naming_the_variable() {
        let base = [("STARWAL_PG_URL", URL), ("STARWAL_TABLES", "public.t")];
        let config = Config::from_vars(vars(&base)).unwrap();
        assert_eq!(config.engine.txn_timeouts, TxnTimeouts::default());
        let mut with = base.to_vec();
        with.extend([
            ("STARWAL_TXN_TIMEOUT_S", "7200"),
            ("STARWAL_TXN_IDLE_TIMEOUT_S", "60"),
            ("STARWAL_TXN_PREPARED_TIMEOUT_S", "259200"),
        ]);
        let config = Config::from_vars(vars(&with)).unwrap();
        assert_eq!(
            config.engine.txn_timeouts,
            TxnTimeouts {
                timeout: Duration::from_secs(7200),
                idle: Duration::from_secs(60),
                prepared: Duration::from_secs(259_200),
            }
        );
        for var in [
            "STARWAL_TXN_TIMEOUT_S",
            "STARWAL_TXN_IDLE_TIMEOUT_S",
            "STARWAL_TXN_PREPARED_TIMEOUT_S",
        ] {
            for bad in ["0", "259201", "1h", "-1"] {
                let mut with = base.to_vec();
                with.push((var, bad));
                let err = Config::from_vars(vars(&with)).unwrap_err();
                assert!(
                    err.to_string().starts_with(&format!("{var} is invalid")),
                    "{var}={bad}: {err}"
                );
            }
        }
    }

    #[test]
    fn issue13_tables_take_quoted_identifiers() {
        let config = Config::from_vars(vars(&[
            ("STARWAL_PG_URL", URL),
            ("STARWAL_TABLES", "public.\"Orders\", Sales.Items"),
        ]))
        .unwrap();
        assert_eq!(
            config.postgres.tables,
            vec![
                TablePattern::Table {
                    schema: "public".into(),
                    name: "Orders".into()
                },
                TablePattern::Table {
                    schema: "sales".into(),
                    name: "items".into()
                },
            ]
        );
    }

    #[test]
    fn issue13_unknown_variables_are_named_with_a_near_miss() {
        let known = known_variables();
        for name in [
            "STARWAL_PG_URL",
            "STARWAL_TABLES",
            "STARWAL_STARROCKS_URL",
            "STARWAL_STARROCKS_PASSWORD",
            "STARWAL_LOG",
            "STARWAL_CONTROL_URL",
        ] {
            assert!(known.iter().any(|k| k == name), "{name} in {known:?}");
        }
        let unknown = unknown_variables([
            "STARWAL_TABELS",
            "STARWAL_STARROCKS_PASWORD",
            "STARWAL_PG_URL",
            "STARWAL_tables",
            "PATH",
            "STARWAL_COMPLETELY_DIFFERENT",
        ]);
        assert_eq!(
            unknown,
            vec![
                UnknownVariable {
                    name: "STARWAL_COMPLETELY_DIFFERENT".into(),
                    did_you_mean: None,
                },
                UnknownVariable {
                    name: "STARWAL_STARROCKS_PASWORD".into(),
                    did_you_mean: Some("STARWAL_STARROCKS_PASSWORD".into()),
                },
                UnknownVariable {
                    name: "STARWAL_TABELS".into(),
                    did_you_mean: Some("STARWAL_TABLES".into()),
                },
            ]
        );
        assert_eq!(
            unknown[2].to_string(),
            "STARWAL_TABELS is not a starwal variable and is ignored; did you mean STARWAL_TABLES?"
        );
    }

    #[test]
    fn inv10_password_never_appears_in_debug_or_errors() {
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

    /// Writes `content` to a new file under the system temp directory; removed by the caller.
    fn secret_file(name: &str, content: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("starwal-config-test-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn inv10_secrets_come_from_files_and_not_twice() {
        const NO_PASSWORD: &str = "postgres://repl@db.example:5432/app";
        let pg = secret_file("pg", "pg-secret\n");
        let sr = secret_file("sr", "sr secret \n");
        let token = secret_file("token", "tok\n");
        let empty = secret_file("empty", "\n");
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let base = vec![
            ("STARWAL_PG_URL".to_owned(), NO_PASSWORD.to_owned()),
            ("STARWAL_TABLES".to_owned(), "public.t".to_owned()),
            (
                "STARWAL_STARROCKS_URL".to_owned(),
                "http://fe:8030".to_owned(),
            ),
            (
                "STARWAL_STARROCKS_DATABASE".to_owned(),
                "analytics".to_owned(),
            ),
        ];
        let with = |extra: &[(&str, String)]| {
            let mut all = base.clone();
            all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
            Config::from_vars(all)
        };

        let config = with(&[
            ("STARWAL_PG_PASSWORD_FILE", path(&pg)),
            ("STARWAL_STARROCKS_PASSWORD_FILE", path(&sr)),
            ("STARWAL_CONTROL_TOKEN_FILE", path(&token)),
        ])
        .unwrap();
        let password = config.postgres.conn.password.as_ref().unwrap();
        assert_eq!(password.expose(), "pg-secret");
        let starrocks = config.starrocks.as_ref().unwrap();
        assert_eq!(starrocks.password.expose(), "sr secret ");
        assert_eq!(config.control.token.as_ref().unwrap().expose(), "tok");
        let debug = format!("{config:?}");
        for secret in ["pg-secret", "sr secret", "tok\""] {
            assert!(!debug.contains(secret), "{debug}");
        }

        // Both the variable and the file: an error naming both, showing neither value.
        for (extra, named) in [
            (
                vec![
                    ("STARWAL_STARROCKS_PASSWORD", "sr-env".to_owned()),
                    ("STARWAL_STARROCKS_PASSWORD_FILE", path(&sr)),
                ],
                "STARWAL_STARROCKS_PASSWORD and STARWAL_STARROCKS_PASSWORD_FILE are both set",
            ),
            (
                vec![
                    ("STARWAL_CONTROL_TOKEN", "tok-env".to_owned()),
                    ("STARWAL_CONTROL_TOKEN_FILE", path(&token)),
                ],
                "STARWAL_CONTROL_TOKEN and STARWAL_CONTROL_TOKEN_FILE are both set",
            ),
        ] {
            let err = with(&extra).unwrap_err().to_string();
            assert!(err.contains(named), "{err}");
            assert!(!err.contains("-env") && !err.contains("secret"), "{err}");
        }
        let mut in_url = base.clone();
        in_url[0].1 = URL.to_owned();
        in_url.push(("STARWAL_PG_PASSWORD_FILE".to_owned(), path(&pg)));
        let err = Config::from_vars(in_url).unwrap_err().to_string();
        assert!(
            err.starts_with("STARWAL_PG_URL holds a password and STARWAL_PG_PASSWORD_FILE is set"),
            "{err}"
        );
        assert!(
            !err.contains("hunter2") && !err.contains("pg-secret"),
            "{err}"
        );

        // An empty variable next to a file is no conflict (a `.env` copied from the example).
        let config = with(&[
            ("STARWAL_STARROCKS_PASSWORD", String::new()),
            ("STARWAL_STARROCKS_PASSWORD_FILE", path(&sr)),
        ])
        .unwrap();
        assert_eq!(config.starrocks.unwrap().password.expose(), "sr secret ");

        // A missing file names its variable and path; an empty token file is refused.
        let missing = std::env::temp_dir().join("starwal-config-test-no-such-file");
        let err = with(&[("STARWAL_PG_PASSWORD_FILE", path(&missing))])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "STARWAL_PG_PASSWORD_FILE: cannot read `{}`",
                missing.display()
            )),
            "{err}"
        );
        let err = with(&[("STARWAL_CONTROL_TOKEN_FILE", path(&empty))])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("STARWAL_CONTROL_TOKEN_FILE is invalid"),
            "{err}"
        );

        // The new names are known variables, not misspellings.
        assert!(unknown_variables([
            "STARWAL_PG_PASSWORD_FILE",
            "STARWAL_STARROCKS_PASSWORD_FILE",
            "STARWAL_CONTROL_TOKEN_FILE",
            "STARWAL_LOG_FORMAT",
        ])
        .is_empty());
        for file in [pg, sr, token, empty] {
            let _ = std::fs::remove_file(file);
        }
    }
}
