//! The Stream Load transaction interface (reference §5, StarRocks ≥ 2.4): one StarRocks
//! transaction of one table, opened with `begin`, fed by any number of `load`s, then `prepare`d
//! and `commit`ted. The pipeline uses it for a source transaction larger than a batch, so its
//! parts become visible together at its source commit (invariant 11), and for two-phase commit:
//! between `prepare` and `commit` the checkpoint records the prepared label, so a restart commits
//! it instead of loading it again (invariant 5).
//!
//! The transport (curl handles, FE failover, 307 with credentials, 100-continue) is the Stream
//! Load client's ([`StreamLoadClient::exchange`]). Every request goes to the FE, which redirects
//! `begin`/`load`/`prepare` to the BE owning the label and settles `commit` of a PREPARED
//! transaction itself (so it works after a BE restart).
//!
//! What each step does on failure (the restart rule in `pipeline/restart.rs` does the rest):
//! - `begin` nothing is at stake yet: transient failures are retried in place; a label still held
//!   by an earlier attempt's transaction is rolled back first (a rolled-back label is reusable).
//! - `load` / `prepare`: a failure that leaves the transaction as it was (StarRocks unreachable,
//!   busy: invariant 7, a sink outage is ridden out with the stream kept) is retried in place —
//!   a part loaded twice in a row leaves every key as once, and a `prepare` whose answer was lost
//!   is found PREPARED by `get_load_state`. When StarRocks rolled the transaction back (bad data,
//!   a broken load, a timeout, a BE restart), the parts already sent are gone from memory
//!   (invariant 8), so the caller ends the attempt; the next one rolls the label back and reads
//!   the source transaction again. Refused data parks the table, as for a plain load.
//! - `commit` is idempotent by label (COMMITTED/VISIBLE answer `OK`): retried in place until it
//!   answers committed, or that the transaction was aborted (then the changes are read again).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::encoding::{CSV_COLUMN_SEPARATOR_HEADER, CSV_ROW_DELIMITER_HEADER};
use super::error::{is_transient_message, StreamLoadError};
use super::label::Label;
use super::response::{excerpt, LoadResponse};
use super::stream_load::{columns_header, path_segment, StreamLoadClient};
use crate::sink::{AttemptFailed, LoadBatch};

/// `timeout` on begin by default: how long a StarRocks transaction may stay open before it is
/// prepared. It spans the reading of the whole source transaction, so it is generous (StarRocks'
/// own default is 600 s, too short for a backfill of millions of rows).
pub const DEFAULT_TXN_TIMEOUT: Duration = Duration::from_secs(3600);
/// `idle_transaction_timeout` on begin by default: StarRocks rolls back an open transaction that
/// received nothing for this long — a crashed agent's transaction goes away by itself.
pub const DEFAULT_TXN_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// `prepared_timeout` on prepare by default (StarRocks' own default, one day): a prepared
/// transaction waits this long for the restart that commits it. It must exceed the longest
/// outage of the agent between prepare and commit.
pub const DEFAULT_TXN_PREPARED_TIMEOUT: Duration = Duration::from_secs(86_400);

/// The three timeouts of a StarRocks transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnTimeouts {
    /// `timeout` on begin (`STARWAL_TXN_TIMEOUT_S`).
    pub timeout: Duration,
    /// `idle_transaction_timeout` on begin (`STARWAL_TXN_IDLE_TIMEOUT_S`).
    pub idle: Duration,
    /// `prepared_timeout` on prepare (`STARWAL_TXN_PREPARED_TIMEOUT_S`).
    pub prepared: Duration,
}

impl Default for TxnTimeouts {
    fn default() -> Self {
        TxnTimeouts {
            timeout: DEFAULT_TXN_TIMEOUT,
            idle: DEFAULT_TXN_IDLE_TIMEOUT,
            prepared: DEFAULT_TXN_PREPARED_TIMEOUT,
        }
    }
}

/// A transaction step that failed.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    #[error("StarRocks transaction `{label}` of `{table}`: {op} failed: {source}")]
    Request {
        op: &'static str,
        table: String,
        label: String,
        #[source]
        source: StreamLoadError,
    },
    #[error("StarRocks transaction `{label}` of `{table}`: {op} answered {status}: {message}")]
    Refused {
        op: &'static str,
        table: String,
        label: String,
        status: String,
        message: String,
    },
    #[error("StarRocks transaction `{label}` of `{table}` was aborted before its commit ({message}); its changes are read again")]
    Aborted {
        table: String,
        label: String,
        message: String,
    },
    #[error("StarRocks transaction `{label}` of `{table}`: the label is already committed, but the checkpoint did not record it as prepared")]
    LabelCommitted { table: String, label: String },
}

impl TransactionError {
    /// Whether a new attempt (which rolls back what is open and reads the changes again) may
    /// succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            TransactionError::Request { source, .. } => source.is_transient(),
            TransactionError::Refused {
                status, message, ..
            } => {
                matches!(status.as_str(), "TXN_IN_PROCESSING" | "PUBLISH_TIMEOUT")
                    || is_transient_message(message)
            }
            TransactionError::Aborted { .. } => true,
            TransactionError::LabelCommitted { .. } => false,
        }
    }
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// This request committed it.
    Now,
    /// It was committed already (an earlier attempt, or the answer was lost).
    Already,
}

/// The transaction-interface client of one target database.
#[derive(Debug, Clone)]
pub struct TransactionClient {
    loads: Arc<StreamLoadClient>,
    timeouts: TxnTimeouts,
}

/// How many times `begin` rolls back a label an earlier attempt left open before giving up.
const BEGIN_ROLLBACKS: u32 = 3;

/// Why a part could not be loaded into its transaction.
#[derive(Debug)]
pub enum LoadPartError {
    /// The transaction is gone (rolled back by StarRocks: a broken load, a timeout, a BE
    /// restart): the caller ends the attempt and the changes are read again.
    Gone(TransactionError),
    /// StarRocks refused the data for good (filtered rows, a type mismatch, credentials): the
    /// table is parked as for a plain load.
    Refused(StreamLoadError),
}

/// The state `get_load_state` reports for a label, as StarRocks spells it.
fn load_state(body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = json.as_object()?;
    object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("state"))
        .and_then(|(_, value)| value.as_str().map(str::to_owned))
}

/// Whether an answer says the transaction no longer exists (rolled back, timed out, never
/// begun, lost with a BE).
fn txn_gone(answer: &LoadResponse) -> bool {
    let message = answer.message.to_ascii_lowercase();
    answer.status == "TXN_NOT_EXISTS"
        || message.contains("not exist")
        || message.contains("no transaction found")
        || message.contains("aborted")
        || message.contains("can't find the transaction")
        // A multi-table transaction rolled back (by StarRocks or a restart).
        || message.contains("has already been cancelled")
}

impl TransactionClient {
    /// A client sharing `loads`' transport and retry policy.
    pub fn new(loads: Arc<StreamLoadClient>, timeouts: TxnTimeouts) -> TransactionClient {
        TransactionClient { loads, timeouts }
    }

    /// The timeouts in use.
    pub fn timeouts(&self) -> TxnTimeouts {
        self.timeouts
    }

    /// One request (`body`: `None` for a GET); HTTP and auth failures as errors.
    async fn request(
        &self,
        path: String,
        headers: Vec<String>,
        body: Option<Bytes>,
    ) -> Result<(u32, Vec<u8>), StreamLoadError> {
        // Every step waits at most as long as a load may take, plus a margin for curl.
        let timeout = self.loads.config().load_timeout + Duration::from_secs(30);
        let client = Arc::clone(&self.loads);
        let answered =
            tokio::task::spawn_blocking(move || client.exchange(&path, &headers, body, timeout))
                .await;
        match answered {
            Ok(answer) => answer,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            // Cancelled: only while the runtime shuts down and this future is dropped with it.
            Err(_) => std::future::pending().await,
        }
    }

    /// One step of the transaction `label` of `table`; the answer parsed.
    async fn call(
        &self,
        op: &'static str,
        table: &str,
        label: &Label,
        extra: Vec<String>,
        body: Bytes,
    ) -> Result<LoadResponse, TransactionError> {
        let config = self.loads.config();
        let mut headers = vec![
            format!("label: {label}"),
            format!("db: {}", config.database),
            format!("table: {table}"),
        ];
        headers.extend(extra);
        let url = format!("/api/transaction/{op}");
        let request = |source| TransactionError::Request {
            op,
            table: table.to_owned(),
            label: label.to_string(),
            source,
        };
        let (status, body) = self
            .request(url.clone(), headers, Some(body))
            .await
            .map_err(request)?;
        match status {
            200 => LoadResponse::parse(&body)
                .map_err(|source| request(StreamLoadError::Malformed { url, source })),
            401 | 403 => Err(request(StreamLoadError::Auth {
                message: excerpt(&body),
            })),
            _ => Err(request(StreamLoadError::Http {
                url,
                status,
                excerpt: excerpt(&body),
            })),
        }
    }

    /// `get_load_state` of `label`: `PREPARE`, `PREPARED`, `COMMITTED`, `VISIBLE`, `ABORTED` or
    /// `UNKNOWN`.
    async fn state(&self, table: &str, label: &Label) -> Result<String, TransactionError> {
        let url = format!(
            "/api/{}/get_load_state?label={label}",
            path_segment(&self.loads.config().database)
        );
        let request = |source| TransactionError::Request {
            op: "get_load_state",
            table: table.to_owned(),
            label: label.to_string(),
            source,
        };
        let (status, body) = self
            .request(url.clone(), Vec::new(), None)
            .await
            .map_err(request)?;
        match (status, load_state(&body)) {
            (200, Some(state)) => Ok(state),
            _ => Err(request(StreamLoadError::Http {
                url,
                status,
                excerpt: excerpt(&body),
            })),
        }
    }

    fn refused(
        op: &'static str,
        table: &str,
        label: &Label,
        answer: LoadResponse,
    ) -> TransactionError {
        TransactionError::Refused {
            op,
            table: table.to_owned(),
            label: label.to_string(),
            status: answer.status,
            message: answer.message,
        }
    }

    /// A failed attempt of a step that is tried again: logged, told to the observer (status and
    /// metrics show a StarRocks outage while it lasts, invariant 13), then waited out.
    async fn retry_after(&self, table: &str, failures: u32, err: &TransactionError) {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(u64::from(failures));
        let delay = self.loads.retry_policy().delay(failures, seed);
        let rejected;
        let error = match err {
            TransactionError::Request { source, .. } => source,
            other => {
                rejected = StreamLoadError::Rejected {
                    table: table.to_owned(),
                    label: String::new(),
                    message: other.to_string(),
                };
                &rejected
            }
        };
        if let Some(observer) = self.loads.observer() {
            observer.attempt_failed(AttemptFailed {
                table,
                kind: error.kind(),
                transient: true,
                failures,
                retry_in: Some(delay),
                error,
            });
        }
        tracing::warn!(table, attempt = failures, retry_in_ms = delay.as_millis() as u64, error = %err, "a StarRocks transaction step failed; retrying");
        tokio::time::sleep(delay).await;
    }

    /// Opens the transaction `label` on `table`, retrying transient failures without limit
    /// (nothing is at stake yet; invariant 7). A label an earlier attempt left open (not
    /// committed: the checkpoint would say prepared) is rolled back and begun again.
    pub async fn begin(&self, table: &str, label: &Label) -> Result<(), TransactionError> {
        let headers = || {
            vec![
                format!("timeout: {}", self.timeouts.timeout.as_secs().max(1)),
                format!(
                    "idle_transaction_timeout: {}",
                    self.timeouts.idle.as_secs().max(1)
                ),
            ]
        };
        let mut rollbacks = 0;
        let mut failures = 0;
        loop {
            let err = match self
                .call("begin", table, label, headers(), Bytes::new())
                .await
            {
                Ok(answer) if answer.status == "OK" => return Ok(()),
                Ok(answer) if answer.status == "LABEL_ALREADY_EXISTS" => {
                    if matches!(
                        answer.existing_job_status.as_deref(),
                        Some("FINISHED" | "VISIBLE" | "COMMITTED" | "COMMITED")
                    ) {
                        return Err(TransactionError::LabelCommitted {
                            table: table.to_owned(),
                            label: label.to_string(),
                        });
                    }
                    if rollbacks >= BEGIN_ROLLBACKS {
                        return Err(Self::refused("begin", table, label, answer));
                    }
                    rollbacks += 1;
                    tracing::info!(table, %label, "an earlier attempt's StarRocks transaction holds the label: rolling it back");
                    self.rollback(table, label).await?;
                    continue;
                }
                Ok(answer) => Self::refused("begin", table, label, answer),
                Err(err) => err,
            };
            if !err.is_transient() {
                return Err(err);
            }
            failures += 1;
            self.retry_after(table, failures, &err).await;
        }
    }

    /// Sends one part (`batch.label` must be the transaction's label). A failure that leaves
    /// the transaction as it was (StarRocks unreachable, busy) is retried in place without
    /// limit: loading the same part twice in a row leaves every key as once, since a part holds
    /// each key once. Returns the rows sent.
    pub async fn load(&self, batch: &LoadBatch) -> Result<u64, LoadPartError> {
        self.load_with(batch, false).await
    }

    /// [`Self::load`], into a multi-table transaction when `multi`.
    async fn load_with(&self, batch: &LoadBatch, multi: bool) -> Result<u64, LoadPartError> {
        let config = self.loads.config();
        // The data headers of a plain load of the same batch (`stream_load.rs`); the pipeline
        // puts only full-row loads of one body format into a transaction, so they are the same
        // on every load of it, as StarRocks requires.
        let mut headers = match &batch.csv_columns {
            Some(columns) => vec![
                "format: csv".to_owned(),
                format!("column_separator: {CSV_COLUMN_SEPARATOR_HEADER}"),
                format!("row_delimiter: {CSV_ROW_DELIMITER_HEADER}"),
                format!("columns: {}", columns_header(columns)),
            ],
            None => vec![
                "format: json".to_owned(),
                "strip_outer_array: true".to_owned(),
                "ignore_json_size: true".to_owned(),
            ],
        };
        headers.push("max_filter_ratio: 0".to_owned());
        headers.push("strict_mode: true".to_owned());
        if let Some(columns) = &batch.partial_columns {
            headers.push("partial_update: true".to_owned());
            if batch.csv_columns.is_none() {
                headers.push(format!("columns: {}", columns_header(columns)));
            }
        }
        if let Some(compression) = config.compression.header_value() {
            headers.push(format!("compression: {compression}"));
        }
        if multi {
            headers.push("transaction_type: multi".to_owned());
        }
        let (table, label) = (batch.table.as_str(), &batch.label);
        let mut failures = 0;
        loop {
            let outcome = self
                .call("load", table, label, headers.clone(), batch.body.clone())
                .await;
            let err = match outcome {
                Ok(answer) if answer.status == "OK" => return Ok(batch.rows),
                Ok(answer) if txn_gone(&answer) => {
                    return Err(LoadPartError::Gone(TransactionError::Aborted {
                        table: table.to_owned(),
                        label: label.to_string(),
                        message: answer.message,
                    }))
                }
                Ok(answer)
                    if answer.filtered_rows > 0
                        || answer.message.contains("too many filtered rows") =>
                {
                    return Err(LoadPartError::Refused(StreamLoadError::FilteredRows {
                        table: table.to_owned(),
                        label: label.to_string(),
                        filtered: answer.filtered_rows,
                        error_log: answer.error_url.map_or_else(
                            || answer.message.clone(),
                            |url| format!("{} ({url})", answer.message),
                        ),
                    }))
                }
                Ok(answer) => Self::refused("load", table, label, answer),
                Err(err) => err,
            };
            if !err.is_transient() {
                return Err(LoadPartError::Refused(match err {
                    TransactionError::Request { source, .. } => source,
                    other => StreamLoadError::Rejected {
                        table: table.to_owned(),
                        label: label.to_string(),
                        message: other.to_string(),
                    },
                }));
            }
            failures += 1;
            self.retry_after(table, failures, &err).await;
        }
    }

    /// Prepares the transaction: its data is checked and kept, not yet visible. Transient
    /// failures are retried in place; an answer lost after StarRocks prepared it shows as a
    /// transaction gone on the retry, and `get_load_state` then says PREPARED.
    pub async fn prepare(&self, table: &str, label: &Label) -> Result<(), TransactionError> {
        let headers = vec![format!(
            "prepared_timeout: {}",
            self.timeouts.prepared.as_secs().max(1)
        )];
        let mut failures = 0;
        loop {
            let outcome = self
                .call("prepare", table, label, headers.clone(), Bytes::new())
                .await;
            let err = match outcome {
                Ok(answer) if answer.status == "OK" => return Ok(()),
                Ok(answer) if txn_gone(&answer) => {
                    // After a lost answer the transaction may be gone from the BE because it
                    // is prepared; otherwise StarRocks rolled it back (a timeout, a BE restart).
                    let state = match failures {
                        0 => String::from("gone"),
                        _ => self.state(table, label).await?,
                    };
                    if state == "PREPARED" {
                        return Ok(());
                    }
                    return Err(TransactionError::Aborted {
                        table: table.to_owned(),
                        label: label.to_string(),
                        message: format!("{} (state {state})", answer.message),
                    });
                }
                Ok(answer) => Self::refused("prepare", table, label, answer),
                Err(err) => err,
            };
            if !err.is_transient() {
                return Err(err);
            }
            failures += 1;
            self.retry_after(table, failures, &err).await;
        }
    }

    /// Commits the (prepared) transaction, retrying until StarRocks answers that it is
    /// committed — also when it was already (the FE answers `OK` for COMMITTED/VISIBLE). An
    /// aborted or unknown transaction is [`TransactionError::Aborted`].
    pub async fn commit(&self, table: &str, label: &Label) -> Result<Committed, TransactionError> {
        let mut failures = 0;
        loop {
            let outcome = self
                .call("commit", table, label, Vec::new(), Bytes::new())
                .await;
            let err = match outcome {
                Ok(answer) => match answer.status.as_str() {
                    "OK" | "PUBLISH_TIMEOUT" | "Publish Timeout" => {
                        if let Some(observer) = self.loads.observer() {
                            observer.load_committed(table);
                        }
                        return Ok(if answer.message.contains("already committed") {
                            Committed::Already
                        } else {
                            Committed::Now
                        });
                    }
                    _ if txn_gone(&answer) => {
                        return Err(TransactionError::Aborted {
                            table: table.to_owned(),
                            label: label.to_string(),
                            message: answer.message,
                        })
                    }
                    _ => Self::refused("commit", table, label, answer),
                },
                Err(err) => err,
            };
            if !err.is_transient() {
                return Err(err);
            }
            failures += 1;
            self.retry_after(table, failures, &err).await;
        }
    }

    /// Rolls the transaction back. A transaction already gone (aborted, timed out, never begun,
    /// lost with a BE) counts as rolled back; a committed one is an error.
    pub async fn rollback(&self, table: &str, label: &Label) -> Result<(), TransactionError> {
        let answer = self
            .call("rollback", table, label, Vec::new(), Bytes::new())
            .await?;
        match answer.status.as_str() {
            "OK" => Ok(()),
            _ if answer.message.contains("VISIBLE") || answer.message.contains("COMMITTED") => {
                Err(TransactionError::LabelCommitted {
                    table: table.to_owned(),
                    label: label.to_string(),
                })
            }
            _ if txn_gone(&answer) => Ok(()),
            _ => Err(Self::refused("rollback", table, label, answer)),
        }
    }
}

/// The `table` named in errors of a multi-table transaction's steps (it spans the database).
pub const MULTI_TABLES: &str = "(all tables)";

/// Multi-table transactions (`transaction_type: multi`, StarRocks ≥ 4.0; `STARWAL_COMMIT_MODE=
/// transaction`, `pipeline/multi.rs`): one label over several tables of the database. The FE
/// answers begin, commit and rollback itself; loads are redirected to a BE as usual. There is no
/// `prepare` (StarRocks refuses it for multi-table transactions), so commit is one phase and an
/// unknown outcome is settled by the label's state (`get_load_state`). A multi-table label is not
/// reusable, even after a rollback: every attempt has its own.
impl TransactionClient {
    /// One step of multi-table transaction `label` (`table` only on loads).
    async fn call_multi(
        &self,
        op: &'static str,
        label: &Label,
        extra: Vec<String>,
    ) -> Result<LoadResponse, TransactionError> {
        let config = self.loads.config();
        let mut headers = vec![
            format!("label: {label}"),
            format!("db: {}", config.database),
            "transaction_type: multi".to_owned(),
        ];
        headers.extend(extra);
        let url = format!("/api/transaction/{op}");
        let request = |source| TransactionError::Request {
            op,
            table: MULTI_TABLES.to_owned(),
            label: label.to_string(),
            source,
        };
        let (status, body) = self
            .request(url.clone(), headers, Some(Bytes::new()))
            .await
            .map_err(request)?;
        match status {
            200 => LoadResponse::parse(&body)
                .map_err(|source| request(StreamLoadError::Malformed { url, source })),
            401 | 403 => Err(request(StreamLoadError::Auth {
                message: excerpt(&body),
            })),
            _ => Err(request(StreamLoadError::Http {
                url,
                status,
                excerpt: excerpt(&body),
            })),
        }
    }

    /// Begins multi-table transaction `label` with an explicit `timeout` (the FE's default for
    /// multi-table transactions is 20 s). Transient failures are retried in place. A label
    /// already used (by a committed or aborted transaction: multi-table labels are never reused)
    /// is [`TransactionError::Refused`] with status `LABEL_ALREADY_EXISTS`, or
    /// [`TransactionError::LabelCommitted`]: the caller takes the next attempt's label. After a
    /// lost answer, the retry finding the label open (`BEGIN`) is this begin: it counts as begun.
    pub async fn multi_begin(&self, label: &Label) -> Result<(), TransactionError> {
        let headers = vec![format!(
            "timeout: {}",
            self.timeouts.timeout.as_secs().max(1)
        )];
        let mut failures = 0;
        loop {
            let err = match self.call_multi("begin", label, headers.clone()).await {
                Ok(answer) if answer.status == "OK" => return Ok(()),
                Ok(answer) if answer.status == "LABEL_ALREADY_EXISTS" => {
                    let existing = answer.existing_job_status.as_deref().unwrap_or("");
                    if matches!(existing, "FINISHED" | "VISIBLE" | "COMMITTED" | "COMMITED") {
                        return Err(TransactionError::LabelCommitted {
                            table: MULTI_TABLES.to_owned(),
                            label: label.to_string(),
                        });
                    }
                    if failures > 0 && existing == "BEGIN" {
                        // Our earlier request began it; its answer was lost.
                        return Ok(());
                    }
                    return Err(Self::refused("begin", MULTI_TABLES, label, answer));
                }
                Ok(answer) => Self::refused("begin", MULTI_TABLES, label, answer),
                Err(err) => err,
            };
            if !err.is_transient() {
                return Err(err);
            }
            failures += 1;
            self.retry_after(MULTI_TABLES, failures, &err).await;
        }
    }

    /// Loads one table's part into multi-table transaction `batch.label` (see [`Self::load`]).
    pub async fn multi_load(&self, batch: &LoadBatch) -> Result<u64, LoadPartError> {
        self.load_with(batch, true).await
    }

    /// Commits multi-table transaction `label` (one phase). An answer other than committed, or
    /// none, is settled by the label's state: `VISIBLE`/`COMMITTED` = committed (commit after
    /// commit answers OK too), still open or committing = the commit is sent again,
    /// `ABORTED`/`UNKNOWN` = [`TransactionError::Aborted`] (its changes are read again).
    pub async fn multi_commit(&self, label: &Label) -> Result<Committed, TransactionError> {
        let mut failures = 0;
        loop {
            let err = match self.call_multi("commit", label, Vec::new()).await {
                Ok(answer)
                    if matches!(
                        answer.status.as_str(),
                        "OK" | "PUBLISH_TIMEOUT" | "Publish Timeout"
                    ) =>
                {
                    if let Some(observer) = self.loads.observer() {
                        observer.load_committed(MULTI_TABLES);
                    }
                    return Ok(if answer.message.contains("already committed") {
                        Committed::Already
                    } else {
                        Committed::Now
                    });
                }
                Ok(answer) => Self::refused("commit", MULTI_TABLES, label, answer),
                Err(err) => err,
            };
            // The outcome is not known from the answer: the label's state says.
            match self.label_state(label).await.as_deref() {
                Ok("VISIBLE" | "COMMITTED") => return Ok(Committed::Already),
                Ok("ABORTED" | "UNKNOWN") => {
                    return Err(TransactionError::Aborted {
                        table: MULTI_TABLES.to_owned(),
                        label: label.to_string(),
                        message: err.to_string(),
                    })
                }
                // Open or committing (or the state could not be read): commit again.
                _ => {}
            }
            failures += 1;
            self.retry_after(MULTI_TABLES, failures, &err).await;
        }
    }

    /// Rolls multi-table transaction `label` back. Any answer is taken (a committed one stays
    /// committed, an aborted one aborted): the caller reads the label's state after it. Only a
    /// request that got no answer is an error.
    pub async fn multi_rollback(&self, label: &Label) -> Result<(), TransactionError> {
        let answer = self.call_multi("rollback", label, Vec::new()).await?;
        tracing::debug!(%label, status = %answer.status, message = %answer.message, "rollback of a multi-table transaction answered");
        Ok(())
    }

    /// `get_load_state` of `label`: `PREPARE` (open), `COMMITTED`, `VISIBLE`, `ABORTED` or
    /// `UNKNOWN` (never begun, or evicted).
    pub async fn label_state(&self, label: &Label) -> Result<String, TransactionError> {
        self.state(MULTI_TABLES, label).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: &str, message: &str) -> TransactionError {
        TransactionError::Refused {
            op: "commit",
            table: "t".into(),
            label: "l".into(),
            status: status.into(),
            message: message.into(),
        }
    }

    #[test]
    fn inv11_transient_and_permanent_transaction_failures() {
        assert!(refused("TXN_IN_PROCESSING", "Transaction in processing, label: l").is_transient());
        assert!(refused(
            "FAILED",
            "Commit transaction fail cause X, Transaction status unknown, you can retry with same label."
        )
        .is_transient());
        assert!(!refused("ANALYSIS_ERROR", "Unknown table t").is_transient());
        let aborted = TransactionError::Aborted {
            table: "t".into(),
            label: "l".into(),
            message: "Can not commit ABORTED transaction 3".into(),
        };
        assert!(
            aborted.is_transient(),
            "an aborted transaction is read again"
        );
        let committed = TransactionError::LabelCommitted {
            table: "t".into(),
            label: "l".into(),
        };
        assert!(!committed.is_transient());
        assert!(committed.to_string().contains("`l`") && committed.to_string().contains("`t`"));
    }

    #[test]
    fn inv11_answers_that_say_the_transaction_is_gone() {
        let answer = |status: &str, message: &str| LoadResponse {
            status: status.into(),
            message: message.into(),
            ..LoadResponse::default()
        };
        // A load after StarRocks rolled the transaction back (BE answer), an unknown label (FE
        // answer), a commit of an aborted one: the changes are read again.
        assert!(txn_gone(&answer(
            "TXN_NOT_EXISTS",
            "Transaction with label l not exists"
        )));
        assert!(txn_gone(&answer(
            "FAILED",
            "class com.starrocks.common.StarRocksException: No transaction found with db[d] and label[l]"
        )));
        assert!(txn_gone(&answer(
            "FAILED",
            "class com.starrocks.common.StarRocksException: Can not commit ABORTED transaction 7, label is l"
        )));
        // Busy or bad data: not gone.
        assert!(!txn_gone(&answer(
            "TXN_IN_PROCESSING",
            "Transaction in processing, label: l"
        )));
        assert!(!txn_gone(&answer(
            "ANALYSIS_ERROR",
            "too many filtered rows"
        )));
        assert_eq!(
            load_state(br#"{"status":"OK","msg":"Success","state":"PREPARED"}"#).as_deref(),
            Some("PREPARED")
        );
        assert_eq!(load_state(b"<html>"), None);
    }

    #[test]
    fn the_timeouts_default_to_documented_values() {
        let timeouts = TxnTimeouts::default();
        assert_eq!(timeouts.timeout, Duration::from_secs(3600));
        assert_eq!(timeouts.idle, Duration::from_secs(300));
        assert_eq!(timeouts.prepared, Duration::from_secs(86_400));
    }
}
