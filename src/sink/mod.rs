//! Sinks: where committed changes go. Today one, StarRocks ([`starrocks`]).
//!
//! The [`Sink`] contract is what the checkpoint relies on (invariant 1): `Ok` from
//! [`Sink::load`] means the batch is committed in the target, so the pipeline may count it toward
//! the confirmed LSN it stores and reports as flushed. Transient failures are retried inside the
//! sink without limit (invariant 7); only a permanent failure comes back, and it hands the batch
//! back so nothing is lost. Callers: the pipeline's loaders (streamed changes) and the snapshot
//! copier (copied rows).
//!
//! Retries inside the sink are not hidden: a [`LoadObserver`] given to the sink hears about every
//! failed attempt and every commit, so status and metrics show an outage while the sink rides it
//! out (invariant 13). The sink does not know who listens (the engine's shared state does).

pub mod starrocks;

use std::time::Duration;

use bytes::Bytes;

use crate::postgres::Lsn;
use starrocks::error::LoadErrorKind;
use starrocks::label::Label;
use starrocks::StreamLoadError;

/// One encoded load for one target table.
#[derive(Debug, Clone)]
pub struct LoadBatch {
    /// The target table name (in the sink's database).
    pub table: String,
    /// Deterministic from slot, table and LSN range: the same batch always has the same label.
    pub label: Label,
    pub first_lsn: Lsn,
    /// The highest commit end LSN the batch covers; confirmable once the batch is committed.
    pub last_lsn: Lsn,
    pub rows: u64,
    /// `Some(columns)` for a partial update: the key plus exactly these columns are written,
    /// the others keep their stored values.
    pub partial_columns: Option<Vec<String>>,
    /// `Some(columns)` when the body is CSV (`encoding::BodyFormat::Csv`): its fields, in
    /// order, are these columns (a partial update's are its `partial_columns`); `None` for JSON.
    pub csv_columns: Option<Vec<String>>,
    /// The request body, already encoded (and compressed when configured); shared, so retries
    /// re-send it without copying.
    pub body: Bytes,
}

/// What a committed load reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReceipt {
    pub label: Label,
    pub rows_loaded: u64,
    pub bytes: u64,
    /// An earlier attempt with the same label had already committed the batch.
    pub already_committed: bool,
    /// Attempts it took, 1 when the first succeeded.
    pub attempts: u32,
    pub duration: Duration,
}

/// A permanent failure, with the batch handed back.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct LoadFailure {
    pub batch: LoadBatch,
    #[source]
    pub error: StreamLoadError,
}

/// A destination for batches.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Loads `batch` into its table. The caller keeps at most one load in flight per table
    /// (order per key, invariant 4); loads of different tables may run concurrently.
    ///
    /// `Ok` promises the batch is committed in the target (also when an earlier attempt with the
    /// same label committed it). Transient failures are retried inside, with backoff and without
    /// limit; `Err` is permanent and returns the batch untouched.
    async fn load(&self, batch: LoadBatch) -> Result<LoadReceipt, LoadFailure>;

    /// Drops what the sink keeps between loads only to make the next one cheaper (pooled
    /// connections and their buffers). Called when the pipeline has been idle a while after a
    /// burst (invariant 8): a pool sized by the burst's concurrency is otherwise kept for good.
    fn release_idle(&self) {}
}

/// One failed load attempt, as a [`LoadObserver`] hears of it.
#[derive(Debug, Clone, Copy)]
pub struct AttemptFailed<'a> {
    /// The target table.
    pub table: &'a str,
    pub kind: LoadErrorKind,
    /// The attempt is retried (after `retry_in`); otherwise the batch goes back to the caller.
    pub transient: bool,
    /// Failed attempts of this batch so far, this one included.
    pub failures: u32,
    /// The wait before the next attempt; `None` when there is none (permanent).
    pub retry_in: Option<Duration>,
    pub error: &'a StreamLoadError,
}

/// Hears the outcome of every load attempt, from inside the sink's retry loop: called once per
/// attempt, on the loading task, so it must be quick and must not block.
pub trait LoadObserver: Send + Sync + std::fmt::Debug {
    /// An attempt failed (transient ones are then retried, permanent ones returned).
    fn attempt_failed(&self, failure: AttemptFailed<'_>);
    /// A load of `table` committed (also when StarRocks had committed its label already).
    fn load_committed(&self, table: &str);
}
