//! Sinks: where committed changes go. Today one, StarRocks ([`starrocks`]).
//!
//! The [`Sink`] contract is what the checkpoint relies on (invariant 1): `Ok` from
//! [`Sink::load`] means the batch is committed in the target, so the pipeline may count it toward
//! the confirmed LSN it stores and reports as flushed. Transient failures are retried inside the
//! sink without limit (invariant 7); only a permanent failure comes back, and it hands the batch
//! back so nothing is lost. Callers: the pipeline's loaders (streamed changes) and the snapshot
//! copier (copied rows).

pub mod starrocks;

use std::time::Duration;

use bytes::Bytes;

use crate::postgres::Lsn;
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
}
