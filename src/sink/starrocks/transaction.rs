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
//! - `load` / `prepare`: StarRocks rolls the transaction back on any error, and the parts already
//!   sent are gone from memory (invariant 8), so the caller ends the attempt; the next one rolls
//!   the label back and reads the source transaction again.
//! - `commit` is idempotent by label (COMMITTED/VISIBLE answer `OK`): retried in place until it
//!   answers committed, or that the transaction was aborted (then the changes are read again).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::encoding::{CSV_COLUMN_SEPARATOR_HEADER, CSV_ROW_DELIMITER_HEADER};
use super::error::{is_transient_message, StreamLoadError};
use super::label::Label;
use super::response::{excerpt, LoadResponse};
use super::stream_load::{columns_header, StreamLoadClient};
use crate::sink::LoadBatch;

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
/// How many times a step answered `TXN_IN_PROCESSING` or a transient failure is tried again in
/// place before the attempt ends (commit: without limit, see [`TransactionClient::commit`]).
const STEP_RETRIES: u32 = 5;

impl TransactionClient {
    /// A client sharing `loads`' transport and retry policy.
    pub fn new(loads: Arc<StreamLoadClient>, timeouts: TxnTimeouts) -> TransactionClient {
        TransactionClient { loads, timeouts }
    }

    /// The timeouts in use.
    pub fn timeouts(&self) -> TxnTimeouts {
        self.timeouts
    }

    /// One request; the answer parsed, HTTP and auth failures as errors.
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
        // Every step waits at most as long as a load may take, plus a margin for curl.
        let timeout = config.load_timeout + Duration::from_secs(30);
        let client = Arc::clone(&self.loads);
        let path = format!("/api/transaction/{op}");
        let answered =
            tokio::task::spawn_blocking(move || client.exchange(&path, &headers, body, timeout))
                .await;
        let request = |source| TransactionError::Request {
            op,
            table: table.to_owned(),
            label: label.to_string(),
            source,
        };
        let (status, body) = match answered {
            Ok(answer) => answer.map_err(request)?,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            // Cancelled: only while the runtime shuts down and this future is dropped with it.
            Err(_) => std::future::pending().await,
        };
        let url = format!("/api/transaction/{op}");
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

    async fn pause(&self, failures: u32) {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(u64::from(failures));
        tokio::time::sleep(self.loads.retry_policy().delay(failures, seed)).await;
    }

    /// Opens the transaction `label` on `table`. A label an earlier attempt left open (not
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
            let answer = match self
                .call("begin", table, label, headers(), Bytes::new())
                .await
            {
                Ok(answer) => answer,
                Err(err) if err.is_transient() && failures < STEP_RETRIES => {
                    failures += 1;
                    tracing::warn!(table, %label, error = %err, "begin of a StarRocks transaction failed; retrying");
                    self.pause(failures).await;
                    continue;
                }
                Err(err) => return Err(err),
            };
            match answer.status.as_str() {
                "OK" => return Ok(()),
                "LABEL_ALREADY_EXISTS" => {
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
                }
                _ => {
                    let err = Self::refused("begin", table, label, answer);
                    if err.is_transient() && failures < STEP_RETRIES {
                        failures += 1;
                        self.pause(failures).await;
                        continue;
                    }
                    return Err(err);
                }
            }
        }
    }

    /// Sends one part (`batch.label` must be the transaction's label). `Ok` carries the answer
    /// (rows loaded); `Err` means StarRocks rolled the transaction back (or may have).
    pub async fn load(&self, batch: &LoadBatch) -> Result<LoadResponse, StreamLoadError> {
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
        let answer = self
            .call(
                "load",
                &batch.table,
                &batch.label,
                headers,
                batch.body.clone(),
            )
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(TransactionError::Request { source, .. }) => return Err(source),
            Err(other) => {
                return Err(StreamLoadError::Rejected {
                    table: batch.table.clone(),
                    label: batch.label.to_string(),
                    message: other.to_string(),
                })
            }
        };
        if answer.status == "OK" {
            return Ok(answer);
        }
        if answer.filtered_rows > 0 || answer.message.contains("too many filtered rows") {
            return Err(StreamLoadError::FilteredRows {
                table: batch.table.clone(),
                label: batch.label.to_string(),
                filtered: answer.filtered_rows,
                error_log: answer.error_url.map_or_else(
                    || answer.message.clone(),
                    |url| format!("{} ({url})", answer.message),
                ),
            });
        }
        Err(StreamLoadError::Rejected {
            table: batch.table.clone(),
            label: batch.label.to_string(),
            message: format!("{}: {}", answer.status, answer.message),
        })
    }

    /// Prepares the transaction: its data is checked and kept, not yet visible.
    pub async fn prepare(&self, table: &str, label: &Label) -> Result<(), TransactionError> {
        let headers = vec![format!(
            "prepared_timeout: {}",
            self.timeouts.prepared.as_secs().max(1)
        )];
        let answer = self
            .call("prepare", table, label, headers, Bytes::new())
            .await?;
        match answer.status.as_str() {
            "OK" => Ok(()),
            _ => Err(Self::refused("prepare", table, label, answer)),
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
                    "OK" if answer.message.contains("already committed") => {
                        return Ok(Committed::Already)
                    }
                    "OK" | "PUBLISH_TIMEOUT" | "Publish Timeout" => return Ok(Committed::Now),
                    _ if answer.message.contains("ABORTED")
                        || answer.message.contains("No transaction found")
                        || answer.status == "TXN_NOT_EXISTS" =>
                    {
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
            tracing::warn!(table, %label, attempt = failures, error = %err, "commit of a prepared StarRocks transaction failed; retrying with the same label");
            self.pause(failures).await;
        }
    }

    /// Rolls the transaction back. A transaction already gone (aborted, timed out, never begun,
    /// lost with a BE) counts as rolled back; a committed one is an error.
    pub async fn rollback(&self, table: &str, label: &Label) -> Result<(), TransactionError> {
        let answer = self
            .call("rollback", table, label, Vec::new(), Bytes::new())
            .await?;
        let gone = answer.message.contains("No transaction found")
            || answer.message.contains("not exist")
            || answer.status == "TXN_NOT_EXISTS";
        match answer.status.as_str() {
            "OK" => Ok(()),
            _ if gone => Ok(()),
            _ if answer.message.contains("VISIBLE") || answer.message.contains("COMMITTED") => {
                Err(TransactionError::LabelCommitted {
                    table: table.to_owned(),
                    label: label.to_string(),
                })
            }
            _ => Err(Self::refused("rollback", table, label, answer)),
        }
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
    fn the_timeouts_default_to_documented_values() {
        let timeouts = TxnTimeouts::default();
        assert_eq!(timeouts.timeout, Duration::from_secs(3600));
        assert_eq!(timeouts.idle, Duration::from_secs(300));
        assert_eq!(timeouts.prepared, Duration::from_secs(86_400));
    }
}
