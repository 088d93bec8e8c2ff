//! One loader task per table: the only place a table's loads are sent, one at a time, in the
//! order the pipeline queued them (invariant 4: per table, changes reach StarRocks in commit
//! order, at most one load in flight). Tables load in parallel, each on its own task, but at
//! most `STARWAL_MAX_CONCURRENT_LOADS` Stream Loads run at once across tables ([`LoadSlots`]).
//!
//! Before a batch is sent its label and range are written to the checkpoint store, so a restart
//! can re-form the same batch and StarRocks recognises the label (invariant 5). DDL jobs run in
//! the same order: a column is added after the loads formed without it and before the loads
//! that carry it, with the `DEFAULT` that gives the rows already there their source value
//! (decided by the schema cache; invariant 12).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex, Semaphore};

use super::batch::SealedBatch;
use super::error::{PipelineError, TimedOut};
use crate::postgres::checkpoint::{CheckpointStore, InFlightLoad};
use crate::postgres::{ChangePosition, Xid};
use crate::sink::starrocks::label::Label;
use crate::sink::starrocks::mapping::TargetColumn;
use crate::sink::starrocks::setup::{NewColumn, TargetSetup};
use crate::sink::starrocks::transaction::{
    LoadPartError, TransactionClient, TransactionError, TxnTimeouts,
};
use crate::sink::LoadFailure;
use crate::sink::Sink;
use crate::state::{EngineHandle, OpCounts};

/// What a loader does with a sealed batch that is part of a StarRocks transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRole {
    /// The transaction's label (from its first change).
    pub label: Label,
    /// The transaction's first change (the loader records it before `begin`).
    pub first: ChangePosition,
    /// After this part: prepare, record, commit.
    pub last_part: bool,
    /// The streamed source transaction it carries (`stream.rs`), recorded apart from the
    /// table's loads; `None` for table mode's transactions.
    pub stream: Option<Xid>,
}

/// Work for a table's loader, in stream order.
#[derive(Debug)]
pub enum Job {
    Load(SealedBatch),
    /// A part of the table's StarRocks transaction (`txn.rs`): begun by its first part, closed
    /// (prepared, recorded, committed) after the part marked last.
    LoadPart(SealedBatch, TxnRole),
    /// Closes the table's StarRocks transaction `label` with the parts already sent, which end
    /// at `last`.
    CloseTransaction {
        label: Label,
        last: ChangePosition,
    },
    /// Rolls back the table's open StarRocks transaction `label` (the pipeline stops inside its
    /// source transaction). A failure is only logged: the next start rolls it back too.
    AbandonTransaction(Label),
    /// The source truncated the table at this position.
    Truncate(ChangePosition),
    /// New source columns: add them (with what existing rows hold) before the next load.
    AddColumns(Vec<NewColumn>),
    /// Source column types widened: widen the target's before the next load.
    ModifyColumns(Vec<TargetColumn>),
    /// Reports when every job before it is done (a copy may then empty the target).
    Barrier(tokio::sync::oneshot::Sender<()>),
    /// A part of a streamed transaction's StarRocks transaction of this table (`stream.rs`):
    /// like [`Job::LoadPart`], but a table may have several open, one per streamed xid.
    StreamPart(SealedBatch, TxnRole),
    /// Closes a streamed transaction's StarRocks transaction `label`, whose parts are all sent,
    /// at `last` (its commit LSN and change count).
    StreamClose {
        label: Label,
        last: ChangePosition,
    },
    /// Rolls back a streamed transaction's StarRocks transaction (Stream Abort, or read again).
    StreamRollback(Label),
}

impl Job {
    /// What the job's batch counts in the engine's buffer (released when its report comes).
    fn buffered_bytes(&self) -> u64 {
        match self {
            Job::Load(batch) | Job::LoadPart(batch, _) | Job::StreamPart(batch, _) => {
                batch.buffered_bytes
            }
            _ => 0,
        }
    }
}

/// What a finished job reports back to the pipeline.
#[derive(Debug)]
pub struct JobDone {
    pub table: usize,
    /// The last position the job covered, now committed in StarRocks (`None` for DDL-only jobs).
    pub through: Option<ChangePosition>,
    /// Stream bytes to release from the buffer.
    pub released_bytes: u64,
    pub result: Result<(), PipelineError>,
}

/// What every loader shares.
#[derive(Debug, Clone)]
pub struct LoaderContext {
    pub sink: Arc<dyn Sink>,
    pub store: CheckpointStore,
    pub state_client: Arc<tokio_postgres::Client>,
    pub ddl: Arc<Mutex<TargetSetup>>,
    pub handle: Arc<EngineHandle>,
    /// Shared by every table's loader: bounds the Stream Loads running at once.
    pub load_slots: LoadSlots,
    /// The transaction interface, for source transactions larger than a batch (`txn.rs`).
    pub transactions: TransactionClient,
}

/// The StarRocks transaction a loader has open (begun, parts loaded, not yet committed).
#[derive(Debug)]
pub struct LoaderTxn {
    label: Label,
    first: ChangePosition,
    /// See [`TxnRole::stream`].
    stream: Option<Xid>,
    rows: u64,
    parts: u32,
    began: std::time::Instant,
    /// When its last part went in (or it began): the idle timeout counts from here.
    last_load: std::time::Instant,
}

/// The bound on Stream Loads running at once across tables (`STARWAL_MAX_CONCURRENT_LOADS`).
///
/// Each load in flight costs memory outside the buffer: a blocking thread running curl (its
/// stack, its buffers) and a pooled curl handle kept for reuse afterwards. With one load per
/// table and no bound, 50 tables cost ~15 MiB on top of the buffer (invariant 8); the bound
/// makes that cost a constant. Waiters are served in arrival order (tokio's semaphore is
/// fair), so a busy table cannot starve a quiet one: a table waits for at most the loads queued
/// before it. The bound is per request, so a table's loads stay in order (invariant 4: one
/// loader per table sends them one at a time).
#[derive(Debug, Clone)]
pub struct LoadSlots(Arc<Semaphore>);

impl LoadSlots {
    /// At most `max` loads at once (at least one).
    pub fn new(max: usize) -> LoadSlots {
        LoadSlots(Arc::new(Semaphore::new(max.max(1))))
    }

    /// Waits for a slot; the load runs while the permit is held. `None` cannot happen:
    /// `acquire` fails only on a closed semaphore, and nothing closes this one (the type does
    /// not expose it).
    pub(super) async fn take(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.0.acquire().await.ok()
    }
}

impl std::fmt::Debug for dyn Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

/// Spawns the loader of table `table` (index in the pipeline, `source`/`target` names); the
/// handle lets the pipeline abort it when it stops.
pub fn spawn(
    context: LoaderContext,
    table: usize,
    source: String,
    target: String,
    done: mpsc::UnboundedSender<JobDone>,
) -> (mpsc::UnboundedSender<Job>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    let task = tokio::spawn(async move {
        // The table's open StarRocks transaction, if any: its parts went in, its commit has not.
        let mut open: Option<LoaderTxn> = None;
        // Streamed transactions' StarRocks transactions open here, by label (`stream.rs`).
        let mut streams: HashMap<String, LoaderTxn> = HashMap::new();
        while let Some(job) = rx.recv().await {
            let report = match job {
                Job::StreamPart(..) | Job::StreamClose { .. } | Job::StreamRollback(_) => {
                    run_stream_job(&context, table, &source, &target, job, &mut streams).await
                }
                job => run_job(&context, table, &source, &target, job, &mut open).await,
            };
            let mut report = report;
            let failed = report.result.is_err();
            if failed {
                // The jobs queued behind the failed one are dropped with this task (the table
                // parks, or the attempt ends): the bytes their batches hold in the buffer count
                // go back with this report, or a parked table would keep them counted until a
                // retry and the other tables would run under what is left of the cap.
                rx.close();
                while let Ok(job) = rx.try_recv() {
                    report.released_bytes += job.buffered_bytes();
                }
            }
            if done.send(report).is_err() || failed {
                // The pipeline is gone or stopping on our error: nothing more to do.
                break;
            }
        }
    });
    (tx, task)
}

/// Runs one job of table `table` (also for `multi.rs`'s loader, which runs every table's jobs).
pub(super) async fn run_job(
    context: &LoaderContext,
    table: usize,
    source: &str,
    target: &str,
    job: Job,
    open: &mut Option<LoaderTxn>,
) -> JobDone {
    match job {
        Job::LoadPart(batch, role) => {
            let through = Some(batch.last);
            let released_bytes = batch.buffered_bytes;
            let result = match load_part(context, source, target, batch, role, open).await {
                // StarRocks rolled it back (or will, idle): the restart rule reads it again.
                Err(err) => Err(match open.take() {
                    Some(txn) => on_abort(context, source, target, &txn, err),
                    None => err,
                }),
                Ok(()) => Ok(()),
            };
            JobDone {
                table,
                through,
                released_bytes,
                result,
            }
        }
        Job::AbandonTransaction(label) => {
            if let Some(txn) = open.take() {
                match context.transactions.rollback(target, &txn.label).await {
                    Ok(()) => {
                        tracing::info!(table = %target, label = %txn.label, "rolled back the open StarRocks transaction")
                    }
                    Err(err) => {
                        tracing::warn!(table = %target, %label, error = %err, "could not roll back the open StarRocks transaction (the next start does, or its idle timeout)")
                    }
                }
            }
            JobDone {
                table,
                through: None,
                released_bytes: 0,
                result: Ok(()),
            }
        }
        Job::CloseTransaction { label, last } => {
            let result = match open.take() {
                Some(txn) => finish_transaction(context, source, target, txn, last).await,
                None => Err(PipelineError::from(
                    crate::sink::starrocks::transaction::TransactionError::Aborted {
                        table: target.to_owned(),
                        label: label.to_string(),
                        message: "the loader has no such transaction open".to_owned(),
                    },
                )),
            };
            JobDone {
                table,
                through: Some(last),
                released_bytes: 0,
                result,
            }
        }
        Job::Load(batch) => {
            let through = Some(batch.last);
            let released_bytes = batch.buffered_bytes;
            let result = load(context, source, target, batch).await;
            JobDone {
                table,
                through,
                released_bytes,
                result,
            }
        }
        Job::Truncate(position) => {
            let result = context
                .ddl
                .lock()
                .await
                .truncate(target)
                .await
                .map_err(|err| PipelineError::target(target, err));
            if result.is_ok() {
                tracing::info!(table = %target, at = %position, "truncated the target table");
                context.handle.record_truncate(source);
            }
            JobDone {
                table,
                through: Some(position),
                released_bytes: 0,
                result,
            }
        }
        Job::StreamPart(..) | Job::StreamClose { .. } | Job::StreamRollback(_) => JobDone {
            table,
            through: None,
            released_bytes: 0,
            // STARWAL_STREAMING is refused with STARWAL_COMMIT_MODE=transaction (config.rs).
            result: Err(PipelineError::StreamReadAgain {
                xid: 0,
                why: "streamed transactions are not carried in transaction mode",
            }),
        },
        Job::Barrier(reached) => {
            let _ = reached.send(());
            JobDone {
                table,
                through: None,
                released_bytes: 0,
                result: Ok(()),
            }
        }
        Job::AddColumns(columns) => {
            let result = context.ddl.lock().await.add_columns(target, &columns).await;
            let changed = columns
                .iter()
                .map(|c| {
                    format!(
                        "{} = {}",
                        c.column.name,
                        c.default.as_deref().unwrap_or("NULL")
                    )
                })
                .collect();
            altered(
                table,
                target,
                result,
                changed,
                "added columns to the target table (existing rows hold the value shown)",
            )
        }
        Job::ModifyColumns(columns) => {
            let refs: Vec<&TargetColumn> = columns.iter().collect();
            let result = context.ddl.lock().await.modify_columns(target, &refs).await;
            let changed = columns.iter().map(|c| c.name.clone()).collect();
            altered(
                table,
                target,
                result,
                changed,
                "widened target column types",
            )
        }
    }
}

/// Runs a job of a streamed transaction (`stream.rs`) with `streams`, the table's streamed
/// StarRocks transactions open by label; the parts, the two-phase commit and the timeout
/// handling are table mode's.
async fn run_stream_job(
    context: &LoaderContext,
    table: usize,
    source: &str,
    target: &str,
    job: Job,
    streams: &mut HashMap<String, LoaderTxn>,
) -> JobDone {
    let done = |through, released_bytes, result| JobDone {
        table,
        through,
        released_bytes,
        result,
    };
    match job {
        Job::StreamPart(batch, role) => {
            let through = Some(batch.last);
            let released_bytes = batch.buffered_bytes;
            let key = role.label.to_string();
            let mut open = streams.remove(&key);
            let result = match load_part(context, source, target, batch, role, &mut open).await {
                Err(err) => Err(match open.take() {
                    Some(txn) => on_abort(context, source, target, &txn, err),
                    None => err,
                }),
                Ok(()) => Ok(()),
            };
            if let Some(txn) = open {
                streams.insert(key, txn);
            }
            done(through, released_bytes, result)
        }
        Job::StreamClose { label, last } => {
            let result = match streams.remove(label.as_str()) {
                Some(txn) => finish_transaction(context, source, target, txn, last).await,
                None => Err(PipelineError::from(
                    crate::sink::starrocks::transaction::TransactionError::Aborted {
                        table: target.to_owned(),
                        label: label.to_string(),
                        message: "the loader has no such streamed transaction open".to_owned(),
                    },
                )),
            };
            done(Some(last), 0, result)
        }
        Job::StreamRollback(label) => {
            streams.remove(label.as_str());
            match context.transactions.rollback(target, &label).await {
                Ok(()) => {
                    tracing::info!(table = %target, %label, "rolled back a streamed transaction's StarRocks transaction");
                    // A record left behind only costs the next start a rollback.
                    if let Err(err) = context
                        .store
                        .forget_stream(&context.state_client, target, label.as_str())
                        .await
                    {
                        tracing::warn!(table = %target, %label, error = %err, "could not forget a rolled-back streamed transaction (the next start rolls it back again)");
                    }
                }
                Err(err) => {
                    tracing::warn!(table = %target, %label, error = %err, "could not roll back a streamed transaction's StarRocks transaction (the next start does, or its idle timeout)")
                }
            }
            done(None, 0, Ok(()))
        }
        // Not a streamed transaction's job: `spawn` does not send one here.
        _ => done(None, 0, Ok(())),
    }
}

/// The report of an `ALTER TABLE` job on the target, run in the table's job order.
fn altered(
    table: usize,
    target: &str,
    result: Result<(), crate::sink::starrocks::setup::TargetSetupError>,
    columns: Vec<String>,
    what: &'static str,
) -> JobDone {
    let result = result.map_err(|err| PipelineError::target(target, err));
    if result.is_ok() {
        tracing::info!(table = %target, ?columns, "{what}");
    }
    JobDone {
        table,
        through: None,
        released_bytes: 0,
        result,
    }
}

async fn load(
    context: &LoaderContext,
    source: &str,
    target: &str,
    mut batch: SealedBatch,
) -> Result<(), PipelineError> {
    let Some(first_label) = batch.loads.first().map(|load| load.label.to_string()) else {
        return Ok(());
    };
    let record = InFlightLoad {
        table: target.to_owned(),
        label: first_label,
        first: batch.first,
        last: batch.last,
        synced_at: Some(batch.synced_at),
        moved: std::mem::take(&mut batch.moved),
    };
    context
        .store
        .begin_load(&context.state_client, &record)
        .await
        .map_err(PipelineError::Checkpoint)?;
    let mut rows_loaded = 0;
    let mut bytes = 0;
    let mut duration = Duration::ZERO;
    let mut deduplicated = false;
    for load in batch.loads {
        // Held across the sink's retries: a failing load waits out its backoff in its slot
        // (capped at STARWAL_LOAD_RETRY_MAX_DELAY_S), which keeps the bound simple and exact.
        let slot = context.load_slots.take().await;
        let in_flight = context.handle.load_started(source);
        let outcome = context.sink.load(load).await;
        drop((in_flight, slot));
        match outcome {
            Ok(receipt) => {
                rows_loaded += receipt.rows_loaded;
                bytes += receipt.bytes;
                duration += receipt.duration;
                deduplicated |= receipt.already_committed;
                if receipt.already_committed {
                    tracing::info!(table = %target, label = %receipt.label, "StarRocks had already committed this batch (label exists): not applied twice");
                }
            }
            Err(failure) => {
                let message = failure.to_string();
                context.handle.record_table_error(source, &message);
                return Err(PipelineError::Load {
                    table: target.to_owned(),
                    first: batch.first,
                    last: batch.last,
                    source: Box::new(failure),
                });
            }
        }
    }
    let ops: OpCounts = batch.ops;
    context
        .handle
        .record_load(source, ops, rows_loaded, bytes, duration, deduplicated);
    context.handle.load_succeeded();
    Ok(())
}

/// Sends one part of the table's StarRocks transaction, beginning it first (recorded in the
/// checkpoint before `begin`) when it is the first part, and closing it after the last.
async fn load_part(
    context: &LoaderContext,
    source: &str,
    target: &str,
    batch: SealedBatch,
    role: TxnRole,
    open: &mut Option<LoaderTxn>,
) -> Result<(), PipelineError> {
    let txns = &context.transactions;
    if open.as_ref().is_some_and(|txn| txn.label != role.label) {
        // Cannot happen (the pipeline closes a transaction before it begins another); a
        // transaction left open would be rolled back by StarRocks or the next start.
        tracing::warn!(table = %target, "a StarRocks transaction was left open for another");
        *open = None;
    }
    if open.is_none() {
        let recorded = match role.stream {
            Some(_) => {
                context
                    .store
                    .begin_stream(
                        &context.state_client,
                        target,
                        role.label.as_str(),
                        role.first.commit,
                    )
                    .await
            }
            None => {
                let record = InFlightLoad {
                    table: target.to_owned(),
                    label: role.label.to_string(),
                    first: role.first,
                    last: batch.last,
                    synced_at: Some(batch.synced_at),
                    moved: Vec::new(),
                };
                context
                    .store
                    .begin_transaction(&context.state_client, &record)
                    .await
            }
        };
        recorded.map_err(PipelineError::Checkpoint)?;
        match (txns.begin(target, &role.label).await, role.stream) {
            (Ok(()), _) => {}
            (Err(TransactionError::LabelCommitted { .. }), Some(xid)) => {
                // The restart commits and skips every streamed transaction it finds prepared, so
                // a committed label here is an older transaction of the same xid: the xid
                // wrapped around within StarRocks' label retention (3 days by default). Read
                // this one again whole, under its commit LSN's label.
                return Err(read_whole(
                    xid,
                    &role.label,
                    "its label is taken by a committed StarRocks transaction of an earlier use \
                     of the xid",
                ));
            }
            (Err(err), _) => {
                return Err(PipelineError::from(err).refused_in_transaction(
                    target,
                    role.label.as_str(),
                    role.first,
                ))
            }
        }
        tracing::debug!(table = %target, label = %role.label, first = %role.first, "began a StarRocks transaction for a source transaction larger than a batch");
        *open = Some(LoaderTxn {
            label: role.label.clone(),
            first: role.first,
            stream: role.stream,
            rows: 0,
            parts: 0,
            began: std::time::Instant::now(),
            last_load: std::time::Instant::now(),
        });
    }
    let Some(txn) = open.as_mut() else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let mut bytes = 0;
    let mut rows = 0;
    for mut load in batch.loads {
        load.label = txn.label.clone();
        let slot = context.load_slots.take().await;
        let in_flight = context.handle.load_started(source);
        let outcome = txns.load(&load).await;
        drop((in_flight, slot));
        match outcome {
            Ok(sent) => {
                rows += sent;
                bytes += load.body.len() as u64;
            }
            // StarRocks rolled it back: the attempt ends and the restart reads it again.
            Err(LoadPartError::Gone(error)) => return Err(PipelineError::from(error)),
            Err(LoadPartError::Refused(error)) => {
                let failure = LoadFailure { batch: load, error };
                context
                    .handle
                    .record_table_error(source, &failure.to_string());
                return Err(PipelineError::Load {
                    table: target.to_owned(),
                    first: txn.first,
                    last: batch.last,
                    source: Box::new(failure),
                });
            }
        }
        // The body is dropped here: an open transaction keeps nothing of its parts (invariant 8).
    }
    txn.rows += rows;
    txn.parts += 1;
    txn.last_load = std::time::Instant::now();
    match txn.stream {
        Some(xid) => context.handle.stream_part(source, xid.0, txn.rows),
        None => context
            .handle
            .transaction_part(source, txn.label.as_str(), txn.rows, txn.began),
    }
    context
        .handle
        .record_load(source, batch.ops, rows, bytes, started.elapsed(), false);
    if role.last_part {
        if let Some(txn) = open.take() {
            return finish_transaction(context, source, target, txn, batch.last).await;
        }
    }
    Ok(())
}

/// Two-phase commit of the table's StarRocks transaction, whose parts end at `last`: prepare,
/// record it prepared (with `last`) in the checkpoint, commit (retried until it answers).
async fn finish_transaction(
    context: &LoaderContext,
    source: &str,
    target: &str,
    txn: LoaderTxn,
    last: ChangePosition,
) -> Result<(), PipelineError> {
    let txns = &context.transactions;
    txns.prepare(target, &txn.label).await.map_err(|err| {
        on_abort(context, source, target, &txn, PipelineError::from(err)).refused_in_transaction(
            target,
            txn.label.as_str(),
            txn.first,
        )
    })?;
    match txn.stream {
        Some(xid) => context.handle.stream_prepared(source, xid.0),
        None => context.handle.transaction_prepared(source),
    }
    let recorded = match txn.stream {
        Some(_) => {
            context
                .store
                .stream_prepared(
                    &context.state_client,
                    target,
                    txn.label.as_str(),
                    last.commit,
                )
                .await
        }
        None => {
            context
                .store
                .transaction_prepared(&context.state_client, target, txn.label.as_str(), last)
                .await
        }
    }
    .map_err(PipelineError::Checkpoint)?;
    if !recorded {
        return Err(PipelineError::TransactionNotRecorded {
            table: target.to_owned(),
            label: txn.label.to_string(),
        });
    }
    // Refused for good: the table parks with the transaction prepared and recorded; a retry
    // (or a restart) commits it, or reads it again if StarRocks aborted it meanwhile.
    let committed = txns.commit(target, &txn.label).await.map_err(|err| {
        PipelineError::from(err).refused_in_transaction(target, txn.label.as_str(), txn.first)
    })?;
    tracing::info!(table = %target, label = %txn.label, first = %txn.first, last = %last, parts = txn.parts, rows = txn.rows, already = committed == crate::sink::starrocks::transaction::Committed::Already, "committed a source transaction larger than a batch in one StarRocks transaction");
    match txn.stream {
        Some(xid) => context.handle.stream_closed(source, xid.0, true),
        None => context.handle.transaction_committed(source),
    }
    context.handle.txn_landed(txn.label.as_str());
    context.handle.load_succeeded();
    Ok(())
}

/// Streamed transaction `xid` (StarRocks transaction `label`) cannot go on as streamed, for
/// `why`: the attempt ends with this error, and the pipeline pauses streaming when the report
/// comes (`flush.rs` `job_done`), so the next attempt reads it whole.
fn read_whole(xid: Xid, label: &Label, why: &'static str) -> PipelineError {
    tracing::warn!(xid = xid.0, %label, "{why}: the streamed transaction is read again whole; streaming stays off until the confirmed LSN passes its COMMIT");
    PipelineError::StreamReadAgain { xid: xid.0, why }
}

/// Whether StarRocks aborted a transaction at one of its timeouts, as far as the agent can
/// tell: its `age` (since begin) or `idle` time (since its last part) reached the configured
/// limit, or the abort's `message` says so. The age comes first because StarRocks' answer to a
/// load or prepare into a transaction it aborted often says only that it does not exist.
fn timed_out(
    message: &str,
    age: Duration,
    idle: Duration,
    limits: TxnTimeouts,
) -> Option<TimedOut> {
    let message = message.to_ascii_lowercase();
    if age >= limits.timeout {
        Some(TimedOut::Timeout)
    } else if idle >= limits.idle || (message.contains("idle") && message.contains("timeout")) {
        Some(TimedOut::Idle)
    } else if message.contains("timeout") {
        Some(TimedOut::Timeout)
    } else {
        None
    }
}

/// Aborts in a row of one label at its timeout that park the table: the first may be bad luck
/// (a slow StarRocks), the second shows the source transaction takes longer to load than that.
const TIMEOUT_ABORTS_TO_PARK: u32 = 2;

/// `err` ended table `target`'s open transaction `txn`. When StarRocks aborted it at one of its
/// timeouts this logs an error naming the variable (otherwise each attempt reads the source
/// transaction again, takes as long, and is aborted again, silently and forever), and from the
/// second such abort of the label in a row returns [`PipelineError::TransactionTimedOut`],
/// which parks the table, instead of `err` (transient: the next attempt reads it again).
fn on_abort(
    context: &LoaderContext,
    source: &str,
    target: &str,
    txn: &LoaderTxn,
    err: PipelineError,
) -> PipelineError {
    let PipelineError::Transaction(inner) = &err else {
        return err;
    };
    let TransactionError::Aborted { message, .. } = inner.as_ref() else {
        return err;
    };
    let limits = context.transactions.timeouts();
    let (age, idle) = (txn.began.elapsed(), txn.last_load.elapsed());
    let Some(which) = timed_out(message, age, idle, limits) else {
        return err;
    };
    if let Some(xid) = txn.stream {
        // A streamed transaction's StarRocks transaction is open as long as the source
        // transaction (and idle between its stream blocks): the timeout says the source
        // transaction stays open longer than that, not that it loads slowly. Read whole at its
        // COMMIT it loads within the timeout (table mode's parts), so it is not counted toward
        // parking the table.
        return read_whole(
            xid,
            &txn.label,
            match which {
                TimedOut::Timeout => {
                    "StarRocks aborted its transaction at STARWAL_TXN_TIMEOUT_S: the source \
                     transaction stayed open longer than that"
                }
                TimedOut::Idle => {
                    "StarRocks aborted its transaction at STARWAL_TXN_IDLE_TIMEOUT_S: the source \
                     transaction sent nothing for longer than that"
                }
            },
        );
    }
    let limit = match which {
        TimedOut::Timeout => limits.timeout,
        TimedOut::Idle => limits.idle,
    };
    let aborts = context.handle.txn_timed_out(txn.label.as_str());
    let variable = which.variable();
    let detail = format!(
        "StarRocks aborted transaction `{}` of `{target}` at its {variable} ({} s) after {} s, {} parts, {} rows (abort {aborts} in a row): the source transaction takes longer to load than that; raise {variable}",
        txn.label,
        limit.as_secs(),
        age.as_secs(),
        txn.parts,
        txn.rows
    );
    tracing::error!(table = %target, label = %txn.label, first = %txn.first, variable, limit_s = limit.as_secs(), age_s = age.as_secs(), parts = txn.parts, rows = txn.rows, aborts, error = %message, "{detail}");
    context.handle.record_table_error(source, &detail);
    if aborts < TIMEOUT_ABORTS_TO_PARK {
        return err;
    }
    PipelineError::TransactionTimedOut {
        table: target.to_owned(),
        label: txn.label.to_string(),
        first: txn.first,
        timed_out: which,
        limit_s: limit.as_secs(),
        age_s: age.as_secs(),
        parts: txn.parts,
        rows: txn.rows,
        aborts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv11_a_transaction_aborted_at_its_timeout_is_told_apart() {
        let limits = TxnTimeouts {
            timeout: Duration::from_secs(60),
            idle: Duration::from_secs(10),
            prepared: Duration::from_secs(600),
        };
        let secs = Duration::from_secs;
        // The answer says only that it is gone: the ages decide.
        let gone = "transaction not exists";
        assert_eq!(
            timed_out(gone, secs(60), secs(1), limits),
            Some(TimedOut::Timeout)
        );
        assert_eq!(
            timed_out(gone, secs(30), secs(10), limits),
            Some(TimedOut::Idle)
        );
        assert_eq!(timed_out(gone, secs(30), secs(1), limits), None);
        // The answer names the timeout, the ages do not reach it (clocks differ).
        assert_eq!(
            timed_out("timeout by txn manager", secs(59), secs(1), limits),
            Some(TimedOut::Timeout)
        );
        assert_eq!(
            timed_out("idle transaction timeout", secs(5), secs(5), limits),
            Some(TimedOut::Idle)
        );
        // A BE restart is not a timeout: the next attempt may well succeed.
        assert_eq!(
            timed_out("coordinate BE is down", secs(5), secs(1), limits),
            None
        );
        assert_eq!(TimedOut::Timeout.variable(), "STARWAL_TXN_TIMEOUT_S");
        assert_eq!(TimedOut::Idle.variable(), "STARWAL_TXN_IDLE_TIMEOUT_S");
    }

    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "current_thread")]
    async fn inv8_loads_in_flight_are_bounded_and_served_in_arrival_order() {
        const MAX: usize = 3;
        const LOADS: usize = 12;
        let slots = LoadSlots::new(MAX);
        // Every slot taken: the loads below queue in the order they arrive.
        let held: Vec<_> = {
            let mut held = Vec::new();
            for _ in 0..MAX {
                held.push(Arc::clone(&slots.0).acquire_owned().await.unwrap());
            }
            held
        };
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..LOADS {
            let (slots, running, most, order) = (
                slots.clone(),
                Arc::clone(&running),
                Arc::clone(&most),
                Arc::clone(&order),
            );
            tasks.push(tokio::spawn(async move {
                let slot = slots.take().await;
                assert!(slot.is_some(), "the semaphore is never closed");
                order.lock().unwrap().push(n);
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            }));
            // One thread: the task runs up to its wait in the queue before the next arrives.
            tokio::task::yield_now().await;
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= MAX, "{most:?} loads at once");
        assert_eq!(
            *order.lock().unwrap(),
            (0..LOADS).collect::<Vec<_>>(),
            "a load that waited longer went later"
        );
    }

    #[test]
    fn a_bound_of_zero_still_lets_loads_through() {
        assert_eq!(LoadSlots::new(0).0.available_permits(), 1);
    }
}
