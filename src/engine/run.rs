//! `starwal run`: INIT → SETUP → (SNAPSHOT) → CDC → DRAINING → STOPPED.
//!
//! One *attempt* sets up both sides — first every check, read-only (`setup::inspect`, the ones
//! `check` prints), then, only if all passed, target tables, checkpoint state, publication and
//! the slot last (created, never dropped) — and streams until a stop, a drain, or an error. Any error ends the attempt:
//! health goes NOT_SERVING with the error as its detail, and the engine starts a new attempt
//! after a backoff (1 s doubling to 60 s), resuming from the slot — so an operator can fix a
//! grant, a table or StarRocks without restarting the process, and a Postgres restart is
//! survived. The backoff starts over at 1 s after an attempt that worked (a load committed, or
//! it streamed longer than the longest backoff): it measures consecutive failures, not the
//! failures of the process's life. `STARWAL_EXIT_ON_ERROR=true` exits non-zero instead.
//!
//! A drain (SIGTERM, SIGINT, the Drain RPC) stops reading the stream, flushes every batch, waits
//! for the loads, stores and reports the confirmed LSN, ends the copy cleanly, and returns `Ok`.
//! The CLI bounds it by `STARWAL_SHUTDOWN_TIMEOUT_S` and turns the result into the exit code.
//!
//! A table parked by a permanent error (pipeline/park.rs) does not end the attempt; a retry of it
//! (`starwal retry --table`) ends the attempt like the end of a copy made while streaming: the
//! next one streams from the held position. With `STARWAL_EXIT_ON_ERROR` nothing is parked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Mutex};

use crate::config::{Config, SnapshotMode};
use crate::engine::error::{AttemptError, StreamError};
use crate::engine::monitor::{
    spawn_publication_watcher, spawn_retained_wal_monitor, spawn_standby_snapshot_nudge,
};
use crate::engine::setup::error::SetupError;
use crate::engine::setup::inspect::{inspect_source, inspect_target, ready, Inspected};
use crate::engine::setup::postgres::{
    ensure_configured_slot, ensure_publication, warn_on_short_sender_timeout,
};
use crate::engine::setup::target::prepare_target;
use crate::engine::snapshot::{
    copy_before_streaming, copy_load_bytes, Copier, CopiesWhileStreaming, CopyOutcome,
};
use crate::pipeline::loader::LoaderContext;
use crate::pipeline::multi::recover_multi;
use crate::pipeline::stream::recover_streams;
use crate::pipeline::txn::recover_transactions;
use crate::pipeline::{Forwarder, Pipeline, PipelineSettings, PipelineStart};
use crate::postgres::checkpoint::{Checkpoint, CheckpointStore};
use crate::postgres::heartbeat::spawn_heartbeat;
use crate::postgres::replication::session::{Session, SessionEnd, SessionError};
use crate::postgres::replication::{
    ReplicationConnection, ReplicationStream, SlotSnapshot, StartOptions,
};
use crate::postgres::snapshot::store::{CopyRecord, CopyStore};
use crate::postgres::tls::connect_sql;
use crate::postgres::Lsn;
use crate::schema::TableSchema;
use crate::sink::starrocks::transaction::TransactionClient;
use crate::sink::starrocks::{RetryPolicy, StarRocksSink, StreamLoadClient};
use crate::sink::Sink;
use crate::state::{EngineHandle, Phase, StopRequest};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How an attempt ended without error.
#[derive(Debug)]
enum AttemptEnd {
    Stopped {
        confirmed: Lsn,
    },
    /// `STARWAL_SNAPSHOT=only`: every table is copied.
    Copied,
    /// A copy made while streaming finished: stream again from the held position.
    Restart,
}

/// How [`run`] ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// A drain or stop completed. With `STARWAL_SNAPSHOT=only` this means the copy was
    /// interrupted before every table was copied (the next start resumes it).
    Stopped,
    /// `STARWAL_SNAPSHOT=only`: every table is copied.
    Copied,
}

/// Runs the engine until a drain or stop completes, the `only` snapshot is done (Ok), or, with
/// `STARWAL_EXIT_ON_ERROR`, the first error. `handle` is shared with the control plane. Returns;
/// never ends the process.
pub async fn run(config: Config, handle: Arc<EngineHandle>) -> anyhow::Result<RunEnd> {
    let mut stops = handle.stop_requests();
    let mut backoff = FIRST_BACKOFF;
    let mut permanent: Option<String> = None;
    let result = loop {
        if stops.borrow().is_some() {
            break Ok(RunEnd::Stopped);
        }
        handle.set_phase(Phase::Setup);
        let started = Instant::now();
        let loads_before = handle.loads_committed();
        let result = attempt(&config, &handle, permanent.as_deref()).await;
        if attempt_worked(
            handle.loads_committed() > loads_before,
            handle.phase(),
            started.elapsed(),
        ) {
            backoff = FIRST_BACKOFF;
        }
        match result {
            Ok(AttemptEnd::Stopped { confirmed }) => {
                tracing::info!(%confirmed, "stopped");
                break Ok(RunEnd::Stopped);
            }
            Ok(AttemptEnd::Copied) => break Ok(RunEnd::Copied),
            Ok(AttemptEnd::Restart) => {
                tracing::info!(
                    "restarting the stream from the held position (after a copy or a retry)"
                );
                backoff = FIRST_BACKOFF;
            }
            Err(failure) => {
                let detail = crate::error_text::chain(&*failure.error).to_string();
                handle.set_health(false, detail.clone());
                // Only errors met while streaming: a setup that fails and is then fixed passes
                // setup the next time, which is proof enough to serve.
                permanent =
                    (!failure.transient && handle.phase() == Phase::Cdc).then(|| detail.clone());
                if config.engine.exit_on_error {
                    break Err(failure.error);
                }
                if stops.borrow().is_some() {
                    break Ok(RunEnd::Stopped);
                }
                tracing::error!(
                    retry_in_s = backoff.as_secs(),
                    transient = failure.transient,
                    "{detail}"
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stops.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    handle.set_phase(Phase::Stopped);
    if result.is_ok() {
        handle.set_health(false, "stopped");
    }
    result
}

/// The pgoutput options of the stream: whole committed transactions (protocol 1), or with
/// `STARWAL_STREAMING` in-progress ones too (protocol 2, `streaming 'on'`; never `parallel`,
/// whose abort carries nothing the pipeline needs), unless a streamed transaction had to be read
/// again whole (`pipeline/stream.rs`: streaming stays off until that one is confirmed). Err:
/// streaming asked of a server before 14, whose `server_version_num` it is.
fn start_options(
    publication: &str,
    streaming: bool,
    server_version_num: u32,
) -> Result<StartOptions, u32> {
    let mut options = StartOptions::committed_only(publication);
    if !streaming || crate::pipeline::stream::streaming_paused() {
        return Ok(options);
    }
    if server_version_num < 140000 {
        return Err(server_version_num);
    }
    options.proto_version = 2;
    options.streaming = crate::postgres::replication::Streaming::On;
    Ok(options)
}

/// One setup + stream; see the module docs.
/// `after_permanent`: the permanent error that ended the previous attempt, if one did; health
/// then stays NOT_SERVING (with that error as detail) until a load succeeds, so a probe does not
/// flap to SERVING on every retry of an error nobody fixed yet (invariant 7).
async fn attempt(
    config: &Config,
    handle: &Arc<EngineHandle>,
    after_permanent: Option<&str>,
) -> Result<AttemptEnd, AttemptError> {
    let pg = &config.postgres;
    let starrocks = config.require_starrocks()?.clone();
    let snapshot_mode = config.engine.snapshot.mode;

    // Read-only first: every check of both sides, the ones `starwal check` prints. Nothing is
    // created unless all of them pass, so a start that fails here leaves no publication and no
    // slot holding WAL (invariant 13).
    let source = inspect_source(pg, snapshot_mode).await;
    let schemas: Vec<TableSchema> = source.tables.iter().map(|(_, s)| s.clone()).collect();
    let target = inspect_target(&starrocks, &schemas, &source.emptied_targets).await;
    let Inspected {
        client: source_client,
        existing_slot: existing,
        tables,
        mut target,
        plan,
    } = ready(source, target)?;
    // Multi-table transactions exist from StarRocks 4.0 (checked again each attempt: the target
    // may have been replaced by an older one).
    crate::engine::setup::inspect::check_commit_mode(config.engine.commit_mode, &plan.version)?;
    warn_on_short_sender_timeout(&source_client, pg.status_interval).await;
    // Decoding from a standby (`STARWAL_PG_PRIMARY_URL`, checked by the inspection): what starwal
    // writes on the source (state tables, publication, moved rows' values) goes to the primary,
    // which the standby replays; the slot and the stream stay on the standby.
    let source_client = Arc::new(source_client);
    let client = match &pg.primary {
        Some(primary) => Arc::new(
            connect_sql(primary)
                .await
                .map_err(SetupError::PrimaryConnect)?,
        ),
        None => source_client.clone(),
    };

    // Then what is created, WAL-holding last: the target's database, tables and columns
    // (columns the target lacks get what existing rows hold, or the table a copy), the state
    // tables, the publication, the slot (never dropped).
    let copies = CopyStore::new(&pg.state_schema, &pg.slot);
    prepare_target(&mut target, plan, &client, &tables, &copies).await?;
    let store = CheckpointStore::new(&pg.state_schema, &pg.slot);
    store.ensure(&client).await?;
    // Before any write the restart rule will trust (a prepared transaction's record above all).
    store.make_durable(&client).await?;
    let mut checkpoint = store.load(&client).await?;
    if existing.is_none() && checkpoint != Checkpoint::default() {
        // Left by an earlier slot of this name (dropped, or the database restored elsewhere):
        // its positions mean nothing to the new slot, and a stale high LSN would make a later
        // attempt skip transactions (see `resume_position`).
        // Only reached with STARWAL_ON_SLOT_LOSS=resync: with `stop` the inspection refused.
        tracing::error!(
            slot = %pg.slot,
            stored = %checkpoint.confirmed_lsn,
            in_flight = checkpoint.in_flight.len(),
            "STARWAL_ON_SLOT_LOSS=resync: the slot is missing though starwal had confirmed up to \
             the stored LSN; changes since it was lost are gone: creating the slot again, \
             forgetting the checkpoint, copying every table again"
        );
        store.clear(&client).await?;
        checkpoint = Checkpoint::default();
    }
    copies.ensure(&client).await?;
    if existing.is_none() {
        // A new slot's stream starts now: tables an earlier slot of this name copied missed
        // whatever changed while no slot held the WAL, so they are copied again (a lost slot
        // gets here only with STARWAL_ON_SLOT_LOSS=resync).
        let recorded = copies
            .load(&client)
            .await?
            .values()
            .filter(|record| !matches!(record, CopyRecord::Pending { .. }))
            .count();
        if recorded > 0 {
            tracing::warn!(
                slot = %pg.slot,
                tables = recorded,
                "the slot is missing: forgetting the copies made for an earlier slot of this \
                 name; every table is copied again"
            );
        }
        copies.clear(&client).await?;
    }
    let sources: Vec<_> = tables.iter().map(|(source, _)| source.clone()).collect();
    ensure_publication(&client, &pg.publication, &sources).await?;
    // A slot created now exports its snapshot for the first copy (held until the readers took
    // it); with `never` there is nothing to copy.
    // A slot created on a standby waits for the primary to log its running transactions, which
    // an idle primary does only every 15 s (and not at all without other WAL): ask for it.
    let on_standby = pg.primary.is_some()
        && source_client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .is_ok_and(|row| row.get::<_, bool>(0));
    let nudge = (existing.is_none() && on_standby)
        .then(|| TaskGuard(spawn_standby_snapshot_nudge(client.clone())));
    let (slot, exported) = ensure_configured_slot(
        &source_client,
        pg,
        if snapshot_mode == SnapshotMode::Never {
            SlotSnapshot::Nothing
        } else {
            SlotSnapshot::Export
        },
    )
    .await?;
    drop(nudge);
    // From here the slot holds WAL, during the copy as while streaming: status shows how much.
    let _retained = TaskGuard(spawn_retained_wal_monitor(
        source_client.clone(),
        pg.slot.clone(),
        handle.clone(),
        pg.status_interval,
    ));
    if slot.created && exported.is_some() {
        tracing::info!(
            slot = %pg.slot,
            from = %slot.confirmed_flush,
            "the new slot holds the WAL written from now on until the first copy is done and \
             streaming confirms it; status shows how much (slot retains)"
        );
    }
    let resume_from = resume_position(existing, slot.confirmed_flush, checkpoint.confirmed_lsn);
    tracing::info!(
        slot = %pg.slot,
        from = %resume_from,
        slot_confirmed = %slot.confirmed_flush,
        stored = %checkpoint.confirmed_lsn,
        in_flight = checkpoint.in_flight.len(),
        tables = tables.len(),
        "setup done; starting replication"
    );

    // The sink tells the handle about every attempt, so an outage it rides out is visible.
    let retry = RetryPolicy {
        max_delay: config.engine.load_retry_max_delay,
        ..RetryPolicy::default()
    };
    let loads = StreamLoadClient::observed(starrocks.clone(), retry, handle.clone());
    let transactions = TransactionClient::new(loads.clone(), config.engine.txn_timeouts);
    let sink: Arc<dyn Sink> = Arc::new(StarRocksSink::new(loads));
    let ddl = Arc::new(Mutex::new(target));

    // Snapshot copies: what was asked for (resyncs, copies a crash cut short) and, unless
    // `never`, every table not copied yet for this slot. Streaming starts after them, from the
    // slot's position, which no copy is older than (see engine/snapshot.rs).
    let copier = Copier {
        conn: pg.conn.clone(),
        slot: pg.slot.clone(),
        settings: config.engine.snapshot,
        load_bytes: copy_load_bytes(config.engine.flush_bytes),
        compression: starrocks.compression,
        delete_mode: starrocks.delete_mode,
        type_mapping: starrocks.type_mapping,
        store: copies,
        state_client: client.clone(),
        sink: sink.clone(),
        ddl: ddl.clone(),
        handle: handle.clone(),
    };
    let copied = copy_before_streaming(
        &copier,
        &client,
        &tables,
        exported,
        snapshot_mode != SnapshotMode::Never,
    )
    .await?;
    if copied == CopyOutcome::Stopped {
        return Ok(AttemptEnd::Stopped {
            confirmed: resume_from,
        });
    }
    if snapshot_mode == SnapshotMode::Only {
        tracing::info!("STARWAL_SNAPSHOT=only: every table is copied; exiting without streaming");
        return Ok(AttemptEnd::Copied);
    }

    // StarRocks transactions the previous run left (invariant 11): a prepared one is committed,
    // an open one rolled back, before anything streams.
    let mut recovered =
        recover_transactions(&transactions, &store, &client, &checkpoint, resume_from).await?;
    // `transaction` mode's multi-table transactions: each recorded label rolled back, then looked
    // up (no prepare for them: the label's state says whether it committed).
    let multi = recover_multi(&transactions, &store, &client, &checkpoint, resume_from).await?;
    recovered.outcomes.extend(multi.outcomes);
    // Streamed transactions (`STARWAL_STREAMING`): a prepared one committed, an open one rolled
    // back; read whatever STARWAL_STREAMING says now, since a previous run may have streamed.
    let (committed_streams, refused_streams) =
        recover_streams(&transactions, &store, &client, resume_from).await?;
    // A prepared transaction whose commit StarRocks refuses for good parks its table, as the
    // same refusal does while running (invariant 13), or ends the run with STARWAL_EXIT_ON_ERROR.
    let mut refused = recovered.refused;
    refused.extend(refused_streams);
    if config.engine.exit_on_error && !refused.is_empty() {
        return Err(refused.swap_remove(0).error.into());
    }
    let context = LoaderContext {
        transactions,
        sink,
        store,
        state_client: client.clone(),
        ddl,
        handle: handle.clone(),
        load_slots: crate::pipeline::loader::LoadSlots::new(config.engine.max_concurrent_loads),
    };
    let settings = PipelineSettings {
        slot: pg.slot.clone(),
        flush_rows: config.engine.flush_rows,
        flush_bytes: config.engine.flush_bytes,
        flush_interval: config.engine.flush_interval,
        max_buffer_bytes: config.engine.max_buffer_bytes,
        compression: starrocks.compression,
        delete_mode: starrocks.delete_mode,
        type_mapping: starrocks.type_mapping,
        tables: pg.tables.clone(),
        park_failing_tables: !config.engine.exit_on_error,
        commit_mode: config.engine.commit_mode,
    };
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (pipeline, confirmations) = Pipeline::new(
        settings,
        context,
        client.clone(),
        PipelineStart {
            confirmed: resume_from,
            in_flight: checkpoint.in_flight,
            tables,
            transactions: recovered.outcomes,
            committed_streams,
            refused,
            multi_attempt: multi.next_attempt,
        },
    );

    // The stream.
    let conn = ReplicationConnection::connect(&pg.conn)
        .await
        .map_err(StreamError::Connect)?;
    let options = start_options(
        &pg.publication,
        config.engine.streaming,
        conn.server_version_num(),
    )
    .map_err(|version| StreamError::StreamingNeedsPg14 { version })?;
    let stream = ReplicationStream::start(conn, &pg.slot, resume_from, &options)
        .await
        .map_err(|source| StreamError::Start {
            slot: pg.slot.clone(),
            source,
        })?;
    let pipeline = pipeline.with_commands(commands_rx);
    let session =
        Session::new(stream, pg.status_interval, resume_from).with_confirmations(confirmations);

    let heartbeat = pg
        .heartbeat_interval
        .map(|interval| spawn_heartbeat(pg.writes().clone(), interval));
    let (new_tables_tx, new_tables) = mpsc::unbounded_channel();
    let watcher = spawn_publication_watcher(
        client.clone(),
        pg.clone(),
        (snapshot_mode != SnapshotMode::Never).then_some(new_tables_tx),
    );
    // Copies asked for while streaming (resyncs, new tables). When one finishes, or fails, the
    // attempt ends like a drain: `Ok` restarts the stream from the held position.
    let (copies_done_tx, mut copies_done) = watch::channel(false);
    let coordinator = tokio::spawn({
        let copies = CopiesWhileStreaming {
            copier: copier.clone(),
            client: client.clone(),
            tables: pg.tables.clone(),
            commands,
            new_tables,
        };
        async move {
            let result = copies.run().await;
            let _ = copies_done_tx.send(true);
            result
        }
    });

    // Nothing of a previous attempt is buffered any more (its pipeline is gone).
    handle.reset_buffered();
    let (items_tx, items_rx) = mpsc::unbounded_channel();
    let closed = Arc::new(AtomicBool::new(false));
    let mut forwarder = Forwarder::new(items_tx, handle.clone(), closed.clone());
    let (stop_pipeline, stop_pipeline_rx) = watch::channel(None);
    let (finished_tx, mut finished_rx) = watch::channel(false);
    let pipeline_task = tokio::spawn(async move {
        let result = pipeline.run(items_rx, stop_pipeline_rx).await;
        let _ = finished_tx.send(true);
        result
    });

    handle.set_phase(Phase::Cdc);
    match after_permanent {
        None => handle.set_health(true, "streaming"),
        Some(error) => handle.set_health(
            false,
            format!("streaming again, NOT_SERVING until a load succeeds after: {error}"),
        ),
    }
    tracing::info!("streaming changes");

    let mut stops = handle.stop_requests();
    let stopper_handle = handle.clone();
    let retried = Arc::new(AtomicBool::new(false));
    let retried_by_stopper = retried.clone();
    let stopper = tokio::spawn(async move {
        // Wait for a stop request (or the end of a copy made while streaming), then close the
        // stream side and tell the pipeline.
        let drain = tokio::select! {
            request = stops.wait_for(Option::is_some) => {
                let request = request.ok().and_then(|r| *r);
                stopper_handle.set_phase(Phase::Draining);
                stopper_handle.set_health(false, "draining");
                tracing::info!(?request, "stop requested: reading no more changes");
                request != Some(StopRequest::Stop)
            }
            _ = copies_done.wait_for(|done| *done) => {
                tracing::info!("copy while streaming ended: flushing, then streaming again");
                true
            }
            // A parked table's cause was fixed: like the end of a copy, the next attempt
            // streams from the held position (pipeline/park.rs).
            _ = stopper_handle.retry_requested() => {
                tracing::info!("retry of a parked table: flushing, then streaming again from the held position");
                retried_by_stopper.store(true, Ordering::SeqCst);
                true
            }
            // The transaction read again whole without streaming is confirmed: the next
            // attempt streams again (pipeline/stream.rs).
            _ = crate::pipeline::stream::streaming_resumable() => {
                tracing::info!("streaming resumes: flushing, then streaming again from the held position");
                retried_by_stopper.store(true, Ordering::SeqCst);
                true
            }
        };
        // Closed before the pipeline is told: from here the forwarder hands nothing over, so
        // what the pipeline takes in before it stops is exactly what was forwarded (see
        // pipeline/forwarder.rs), with no wait in between.
        closed.store(true, Ordering::SeqCst);
        let _ = stop_pipeline.send(Some(drain));
        // The pipeline reads the sender until it returns; this task is aborted then.
        std::future::pending::<()>().await;
    });

    // The session ends when the pipeline is done (drained, stopped or failed): its last
    // confirmation is in the watch channel by then, and the session sends it before ending the
    // copy. If the session ends first (connection lost), closing the channel stops the pipeline.
    let session = session
        .run(&mut forwarder, async move {
            let _ = finished_rx.wait_for(|finished| *finished).await;
        })
        .await;
    drop(forwarder);
    let pipeline = pipeline_task.await;
    stopper.abort();
    // A copy that ended (or failed) decides how this attempt ends; one still running is
    // cancelled (its finished chunks are kept; the next attempt copies the rest first).
    let copies = if coordinator.is_finished() {
        coordinator.await.ok()
    } else {
        coordinator.abort();
        None
    };
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    let confirmed = pipeline.map_err(StreamError::PipelineTask)??;
    match copies {
        Some(Err(err)) => return Err(err.into()),
        Some(Ok(())) if handle.stop_requests().borrow().is_none() => {
            return Ok(AttemptEnd::Restart);
        }
        _ => {}
    }
    if retried.load(Ordering::SeqCst) && handle.stop_requests().borrow().is_none() {
        return Ok(AttemptEnd::Restart);
    }
    match session {
        Ok(summary) if summary.end == SessionEnd::Shutdown => {
            tracing::info!(flushed = %summary.flushed, "replication stream closed");
            Ok(AttemptEnd::Stopped { confirmed })
        }
        Ok(_) => Err(StreamError::ServerEnded.into()),
        // The pipeline is gone: it stopped (its own error, if any, was returned above).
        Err(SessionError::Consumer(_)) => Ok(AttemptEnd::Stopped { confirmed }),
        Err(err) => Err(StreamError::Session(err).into()),
    }
}

/// Whether an attempt that ended worked, so the next error is a first failure again: a load
/// committed during it, or it streamed (ended in CDC or later) for longer than the longest
/// backoff — a healthy but idle stream loads nothing. An attempt that failed in setup, or
/// soon after streaming began, did not.
fn attempt_worked(loaded: bool, phase_at_end: Phase, lasted: Duration) -> bool {
    let streamed = matches!(phase_at_end, Phase::Cdc | Phase::Draining);
    loaded || (streamed && lasted >= MAX_BACKOFF)
}

/// Aborts a task when dropped, so every way out of an attempt ends it.
struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where streaming resumes: after everything already loaded. The stored checkpoint is written
/// when loads commit; the slot's `confirmed_flush` only when the server has processed the
/// feedback carrying it, so a crash in between leaves the slot behind the checkpoint. Starting
/// at the slot's position then would replay transactions whose loads committed and whose
/// in-flight records are gone, and load them a second time under new labels. The server skips
/// transactions committed before the start LSN. A checkpoint counts only for a slot that
/// existed before this attempt: one created now starts a new history.
fn resume_position(existing: Option<Lsn>, slot_confirmed: Lsn, stored: Lsn) -> Lsn {
    match existing {
        Some(_) => slot_confirmed.max(stored),
        None => slot_confirmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue13_backoff_starts_over_after_an_attempt_that_worked() {
        let short = Duration::from_secs(2);
        assert!(attempt_worked(true, Phase::Cdc, short));
        assert!(attempt_worked(true, Phase::Setup, short), "a copy loaded");
        assert!(attempt_worked(false, Phase::Cdc, MAX_BACKOFF));
        assert!(!attempt_worked(false, Phase::Cdc, short));
        assert!(!attempt_worked(false, Phase::Setup, MAX_BACKOFF * 2));
    }

    #[test]
    fn inv5_streaming_resumes_after_the_stored_checkpoint_of_an_existing_slot() {
        let slot = Lsn(0x26B_22D8);
        let stored = Lsn(0x26B_87B8);
        assert_eq!(resume_position(Some(slot), slot, stored), stored);
        // The slot moved past the checkpoint (feedback processed, store not yet written).
        assert_eq!(resume_position(Some(stored), stored, slot), stored);
        // A slot created now ignores a checkpoint left by an earlier slot of the same name.
        assert_eq!(resume_position(None, slot, stored), slot);
    }
}
