//! `starwal run`: INIT → SETUP → (SNAPSHOT) → CDC → DRAINING → STOPPED.
//!
//! One *attempt* sets up both sides (publication, slot — created, never dropped —, target tables,
//! checkpoint state) and streams until a stop, a drain, or an error. Any error ends the attempt:
//! health goes NOT_SERVING with the error as its detail, and the engine starts a new attempt
//! after a backoff (1 s doubling to 60 s), resuming from the slot — so an operator can fix a
//! grant, a table or StarRocks without restarting the process, and a Postgres restart is
//! survived. `STARWAL_EXIT_ON_ERROR=true` exits non-zero instead.
//!
//! A drain (SIGTERM, SIGINT, the Drain RPC) stops reading the stream, flushes every batch, waits
//! for the loads, stores and reports the confirmed LSN, ends the copy cleanly, and returns `Ok`.
//! The CLI bounds it by `STARWAL_SHUTDOWN_TIMEOUT_S` and turns the result into the exit code.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Mutex};

use crate::config::{Config, SnapshotMode};
use crate::engine::setup::postgres::{
    ensure_slot, ensure_slot_exporting, existing_slot, prepare_source,
};
use crate::engine::snapshot::{jobs_for, temporary_slot_name, Copier, CopyJob, SnapshotError};
use crate::pipeline::loader::LoaderContext;
use crate::pipeline::{
    Forwarder, Pipeline, PipelineCommand, PipelineError, PipelineSettings, PipelineStart,
};
use crate::postgres::catalog::{resolve_tables, table_schema, CatalogError, SourceTable};
use crate::postgres::checkpoint::{Checkpoint, CheckpointStore};
use crate::postgres::heartbeat::spawn_heartbeat;
use crate::postgres::replication::session::{Session, SessionEnd, SessionError};
use crate::postgres::replication::{ReplicationConnection, ReplicationStream, StartOptions};
use crate::postgres::snapshot::store::{CopyRecord, CopyStore, CopyStoreError};
use crate::postgres::snapshot::ExportedSnapshot;
use crate::postgres::tls::connect_sql;
use crate::postgres::Lsn;
use crate::schema::TableSchema;
use crate::sink::starrocks::setup::TargetSetup;
use crate::sink::starrocks::{StarRocksSink, StreamLoadClient};
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
    /// A copy made while streaming finished: stream again from the held position.
    Restart,
}

/// Why an attempt failed, and whether the same attempt may work later unchanged.
#[derive(Debug)]
struct AttemptError {
    error: anyhow::Error,
    transient: bool,
}

impl AttemptError {
    fn permanent(error: impl Into<anyhow::Error>) -> AttemptError {
        AttemptError {
            error: error.into(),
            transient: false,
        }
    }
}

impl From<crate::engine::setup::SetupError> for AttemptError {
    fn from(err: crate::engine::setup::SetupError) -> Self {
        AttemptError {
            transient: err.is_transient(),
            error: err.into(),
        }
    }
}

impl From<CatalogError> for AttemptError {
    /// Tables that cannot be replicated, refused catalog queries: someone must act first.
    fn from(err: CatalogError) -> Self {
        AttemptError::permanent(err)
    }
}

impl From<PipelineError> for AttemptError {
    fn from(err: PipelineError) -> Self {
        AttemptError {
            transient: err.is_transient(),
            error: err.into(),
        }
    }
}

/// Runs the engine until a drain or stop completes (Ok) or, with `STARWAL_EXIT_ON_ERROR`, the
/// first error. `handle` is shared with the control plane. Returns; never ends the process.
pub async fn run(config: Config, handle: Arc<EngineHandle>) -> anyhow::Result<()> {
    let mut stops = handle.stop_requests();
    let mut backoff = FIRST_BACKOFF;
    let mut permanent: Option<String> = None;
    let result = loop {
        if stops.borrow().is_some() {
            break Ok(());
        }
        handle.set_phase(Phase::Setup);
        match attempt(&config, &handle, permanent.as_deref()).await {
            Ok(AttemptEnd::Stopped { confirmed }) => {
                tracing::info!(%confirmed, "stopped");
                break Ok(());
            }
            Ok(AttemptEnd::Restart) => {
                tracing::info!("restarting the stream from the held position after a copy");
                backoff = FIRST_BACKOFF;
            }
            Err(failure) => {
                let detail = format!("{:#}", failure.error);
                handle.set_health(false, detail.clone());
                // Only errors met while streaming: a setup that fails and is then fixed passes
                // setup the next time, which is proof enough to serve.
                permanent =
                    (!failure.transient && handle.phase() == Phase::Cdc).then(|| detail.clone());
                if config.engine.exit_on_error {
                    break Err(failure.error);
                }
                if stops.borrow().is_some() {
                    break Ok(());
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
    let starrocks = config
        .require_starrocks()
        .map_err(AttemptError::permanent)?
        .clone();

    // Source: prerequisites, tables, publication, slot (never dropped).
    let client = connect_sql(&pg.conn)
        .await
        .map_err(crate::engine::setup::SetupError::from)?;
    warn_on_short_sender_timeout(&client, pg.status_interval).await;
    let existing = existing_slot(&client, &pg.slot, &pg.conn.dbname).await?;
    let source = prepare_source(&client, pg, existing.is_none()).await?;
    let snapshot_mode = config.engine.snapshot.mode;
    // A slot created now exports its snapshot for the first copy (held until the readers took
    // it); with `never` there is nothing to copy.
    let (slot, exported) = if snapshot_mode == SnapshotMode::Never {
        (ensure_slot(&client, &pg.conn, &pg.slot).await?, None)
    } else {
        ensure_slot_exporting(&client, &pg.conn, &pg.slot).await?
    };
    let mut tables = Vec::with_capacity(source.tables.len());
    for table in source.tables {
        let schema = table_schema(&client, &table).await?;
        tables.push((table, schema));
    }

    // Target: database and tables.
    let mut target = TargetSetup::connect(&starrocks)
        .await
        .map_err(|err| AttemptError {
            transient: err.is_transient(),
            error: err.into(),
        })?;
    let schemas: Vec<_> = tables.iter().map(|(_, schema)| schema.clone()).collect();
    target.prepare(&schemas).await.map_err(|err| AttemptError {
        transient: err.is_transient(),
        error: err.into(),
    })?;

    // Checkpoint state.
    let store = CheckpointStore::new(&pg.state_schema, &pg.slot);
    let transient = |err: crate::postgres::checkpoint::CheckpointError| AttemptError {
        transient: true,
        error: err.into(),
    };
    store.ensure(&client).await.map_err(transient)?;
    let mut checkpoint = store.load(&client).await.map_err(transient)?;
    if existing.is_none() && checkpoint != Checkpoint::default() {
        // Left by an earlier slot of this name (dropped, or the database restored elsewhere):
        // its positions mean nothing to the new slot, and a stale high LSN would make a later
        // attempt skip transactions (see `resume_position`).
        tracing::warn!(
            slot = %pg.slot,
            stored = %checkpoint.confirmed_lsn,
            in_flight = checkpoint.in_flight.len(),
            "the slot was created now: forgetting the checkpoint an earlier slot of this name left"
        );
        store.clear(&client).await.map_err(transient)?;
        checkpoint = Checkpoint::default();
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

    let client = Arc::new(client);
    let sink: Arc<dyn Sink> =
        Arc::new(StarRocksSink::new(StreamLoadClient::new(starrocks.clone())));
    let ddl = Arc::new(Mutex::new(target));

    // Snapshot copies: what was asked for (resyncs, copies a crash cut short) and, unless
    // `never`, every table not copied yet for this slot. Streaming starts after them, from the
    // slot's position, which no copy is older than (see engine/snapshot.rs).
    let copier = Copier {
        conn: pg.conn.clone(),
        slot: pg.slot.clone(),
        settings: config.engine.snapshot,
        load_bytes: crate::engine::snapshot::copy_load_bytes(config.engine.flush_bytes),
        compression: starrocks.compression,
        delete_mode: starrocks.delete_mode,
        store: CopyStore::new(&pg.state_schema, &pg.slot),
        state_client: client.clone(),
        sink: sink.clone(),
        ddl: ddl.clone(),
        handle: handle.clone(),
    };
    copier
        .store
        .ensure(&client)
        .await
        .map_err(|err| AttemptError {
            transient: true,
            error: err.into(),
        })?;
    if existing.is_none() {
        // A new slot's stream starts now: tables an earlier slot of this name copied missed
        // whatever changed while no slot held the WAL, so they are copied again.
        copier
            .store
            .clear(&client)
            .await
            .map_err(|err| AttemptError {
                transient: true,
                error: err.into(),
            })?;
    }
    let copied = copy_before_streaming(
        &copier,
        &client,
        &tables,
        exported,
        snapshot_mode != SnapshotMode::Never,
    )
    .await?;
    if copied == CopyOutcome::Stopped || snapshot_mode == SnapshotMode::Only {
        if snapshot_mode == SnapshotMode::Only && copied != CopyOutcome::Stopped {
            tracing::info!(
                "STARWAL_SNAPSHOT=only: every table is copied; exiting without streaming"
            );
        }
        return Ok(AttemptEnd::Stopped {
            confirmed: resume_from,
        });
    }

    let context = LoaderContext {
        sink,
        store,
        state_client: client.clone(),
        ddl,
        handle: handle.clone(),
    };
    let settings = PipelineSettings {
        slot: pg.slot.clone(),
        flush_rows: config.engine.flush_rows,
        flush_bytes: config.engine.flush_bytes,
        flush_interval: config.engine.flush_interval,
        max_buffer_bytes: config.engine.max_buffer_bytes,
        compression: starrocks.compression,
        delete_mode: starrocks.delete_mode,
        tables: pg.tables.clone(),
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
        },
    );

    // The stream.
    let conn = ReplicationConnection::connect(&pg.conn)
        .await
        .map_err(|err| AttemptError {
            transient: err.is_transient(),
            error: anyhow::Error::from(err).context("opening the replication connection"),
        })?;
    let stream = ReplicationStream::start(
        conn,
        &pg.slot,
        resume_from,
        &StartOptions::committed_only(&pg.publication),
    )
    .await
    .map_err(|err| AttemptError {
        transient: err.is_transient(),
        error: anyhow::Error::from(err)
            .context(format!("starting replication from slot `{}`", pg.slot)),
    })?;
    let pipeline = pipeline.with_commands(commands_rx);
    let session =
        Session::new(stream, pg.status_interval, resume_from).with_confirmations(confirmations);

    let heartbeat = pg
        .heartbeat_interval
        .map(|interval| spawn_heartbeat(pg.conn.clone(), interval));
    let retained = spawn_retained_wal_monitor(
        client.clone(),
        pg.slot.clone(),
        handle.clone(),
        pg.status_interval,
    );
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
        };
        closed.store(true, Ordering::SeqCst);
        // Let a message being handed over land in the channel first.
        tokio::time::sleep(Duration::from_millis(50)).await;
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
    retained.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    let session = Some(session);
    let pipeline = pipeline.map_err(|err| AttemptError {
        transient: true,
        error: anyhow::anyhow!("the pipeline task failed: {err}"),
    })?;
    let confirmed = pipeline?;
    match copies {
        Some(Err(err)) => return Err(err),
        Some(Ok(())) if handle.stop_requests().borrow().is_none() => {
            return Ok(AttemptEnd::Restart);
        }
        _ => {}
    }
    match session {
        Some(Ok(summary)) if summary.end == SessionEnd::Shutdown => {
            tracing::info!(flushed = %summary.flushed, "replication stream closed");
            Ok(AttemptEnd::Stopped { confirmed })
        }
        Some(Ok(_)) => Err(AttemptError {
            transient: true,
            error: anyhow::anyhow!("the server ended the replication stream"),
        }),
        Some(Err(SessionError::Consumer(_))) | None => Ok(AttemptEnd::Stopped { confirmed }),
        Some(Err(err)) => Err(AttemptError {
            transient: true,
            error: anyhow::Error::from(err).context("replication stream"),
        }),
    }
}

/// How the copies before streaming ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyOutcome {
    /// Nothing needed copying, or every copy finished.
    Complete,
    /// A stop or drain came first; finished chunks are kept for the next start.
    Stopped,
}

/// The SNAPSHOT phase: copies the tables that need it before the stream starts. Uses the new
/// slot's exported snapshot when there is one, else a temporary slot's.
async fn copy_before_streaming(
    copier: &Copier,
    client: &tokio_postgres::Client,
    tables: &[(SourceTable, TableSchema)],
    exported: Option<ExportedSnapshot>,
    copy_new_tables: bool,
) -> Result<CopyOutcome, AttemptError> {
    let transient = |err: CopyStoreError| AttemptError {
        transient: true,
        error: err.into(),
    };
    let jobs = jobs_for(&copier.store, client, tables, copy_new_tables)
        .await
        .map_err(transient)?;
    if jobs.is_empty() {
        if let Some(exported) = exported {
            exported.release().await;
        }
        return Ok(CopyOutcome::Complete);
    }
    let handle = &copier.handle;
    handle.set_phase(Phase::Snapshot);
    handle.set_health(true, format!("copying {} tables", jobs.len()));
    for job in &jobs {
        handle.copy_pending(&job.source.display_name());
    }
    let snapshot = match exported {
        Some(exported) => exported,
        None => ExportedSnapshot::temporary(&copier.conn, &temporary_slot_name(&copier.slot))
            .await
            .map_err(|err| AttemptError {
                transient: err.is_transient(),
                error: SnapshotError::Export(err).into(),
            })?,
    };
    let mut stops = handle.stop_requests();
    tokio::select! {
        result = copier.copy(snapshot, jobs) => {
            result.map_err(|err| AttemptError {
                transient: err.is_transient(),
                error: err.into(),
            })?;
            Ok(CopyOutcome::Complete)
        }
        _ = stops.wait_for(Option::is_some) => {
            tracing::info!("stop requested during the snapshot copy: finished chunks are kept, the next start copies the rest");
            Ok(CopyOutcome::Stopped)
        }
    }
}

/// Copies made while the stream runs: resyncs asked through the control plane and tables that
/// joined the publication. [`CopiesWhileStreaming::run`] waits for requests, has the pipeline
/// drop each table's changes and hold the confirmed LSN, copies from a temporary slot's
/// snapshot, and returns: the attempt then ends and the next one streams again from the held
/// position, so the copied tables get every change from it on (see engine/snapshot.rs).
struct CopiesWhileStreaming {
    copier: Copier,
    client: Arc<tokio_postgres::Client>,
    tables: Vec<crate::postgres::catalog::TablePattern>,
    commands: mpsc::UnboundedSender<PipelineCommand>,
    new_tables: mpsc::UnboundedReceiver<String>,
}

impl CopiesWhileStreaming {
    async fn run(mut self) -> Result<(), AttemptError> {
        let handle = self.copier.handle.clone();
        let mut requested = loop {
            let mut requested = handle.take_resyncs();
            while let Ok(table) = self.new_tables.try_recv() {
                requested.push(table);
            }
            if !requested.is_empty() {
                break requested;
            }
            tokio::select! {
                _ = handle.resync_requested() => {}
                Some(table) = self.new_tables.recv() => break vec![table],
            }
        };
        requested.sort();
        requested.dedup();
        let transient = |err: CopyStoreError| AttemptError {
            transient: true,
            error: err.into(),
        };
        let sources = resolve_tables(&self.client, &self.tables)
            .await
            .map_err(AttemptError::from)?;
        let mut jobs = Vec::with_capacity(requested.len());
        for name in &requested {
            let Some(source) = sources.iter().find(|t| t.display_name() == *name) else {
                tracing::warn!(table = %name, "a table asked to be copied is no longer replicated: skipped");
                continue;
            };
            // Recorded first: if anything below fails, the next start copies it before streaming.
            let generation = self
                .copier
                .store
                .request(&self.client, name)
                .await
                .map_err(transient)?;
            handle.copy_pending(name);
            let (ready, reached) = tokio::sync::oneshot::channel();
            self.commands
                .send(PipelineCommand::StartCopy {
                    table: name.clone(),
                    ready,
                })
                .map_err(|_| AttemptError {
                    transient: true,
                    error: anyhow::anyhow!("the pipeline stopped before a copy of {name} began"),
                })?;
            let _ = reached.await;
            let schema = table_schema(&self.client, source)
                .await
                .map_err(AttemptError::from)?;
            jobs.push(CopyJob {
                source: source.clone(),
                schema,
                record: CopyRecord::Pending { generation },
            });
        }
        if jobs.is_empty() {
            return Ok(());
        }
        // A new table may not exist in StarRocks yet.
        let schemas: Vec<TableSchema> = jobs.iter().map(|job| job.schema.clone()).collect();
        self.copier
            .ddl
            .lock()
            .await
            .prepare(&schemas)
            .await
            .map_err(|err| AttemptError {
                transient: err.is_transient(),
                error: err.into(),
            })?;
        let snapshot =
            ExportedSnapshot::temporary(&self.copier.conn, &temporary_slot_name(&self.copier.slot))
                .await
                .map_err(|err| AttemptError {
                    transient: err.is_transient(),
                    error: SnapshotError::Export(err).into(),
                })?;
        tracing::info!(tables = ?requested, "copying while streaming");
        self.copier
            .copy(snapshot, jobs)
            .await
            .map_err(|err| AttemptError {
                transient: err.is_transient(),
                error: err.into(),
            })
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

/// While backpressure holds the stream, only the periodic status updates keep the walsender from
/// timing out: the interval must be well below `wal_sender_timeout`.
async fn warn_on_short_sender_timeout(client: &tokio_postgres::Client, status_interval: Duration) {
    let timeout_ms = client
        .query_opt(
            "SELECT setting::int8 FROM pg_settings WHERE name = 'wal_sender_timeout'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map(|row| row.get::<_, i64>(0));
    if let Some(ms) = timeout_ms.filter(|ms| *ms > 0) {
        if status_interval.as_millis() * 2 > u128::from(ms.unsigned_abs()) {
            tracing::warn!(
                wal_sender_timeout_ms = ms,
                status_interval_s = status_interval.as_secs(),
                "STARWAL_STATUS_INTERVAL_S is not well below the server's wal_sender_timeout: \
                 while StarRocks is slow the server may drop the replication connection"
            );
        }
    }
}

/// Every `interval`, how much WAL the slot retains and where the server's WAL ends.
fn spawn_retained_wal_monitor(
    client: Arc<tokio_postgres::Client>,
    slot: String,
    handle: Arc<EngineHandle>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.min(Duration::from_secs(10)));
        loop {
            ticker.tick().await;
            let row = client
                .query_opt(
                    "SELECT (pg_current_wal_lsn() - restart_lsn)::int8, pg_current_wal_lsn()::text \
                       FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await;
            match row {
                Ok(Some(row)) => {
                    let retained: Option<i64> = row.get(0);
                    handle.set_slot_retained_wal(retained.and_then(|b| u64::try_from(b).ok()));
                    if let Some(end) = row.get::<_, Option<String>>(1).and_then(|s| s.parse().ok())
                    {
                        handle.set_received(Lsn::ZERO, end);
                    }
                }
                Ok(None) => handle.set_slot_retained_wal(None),
                Err(err) => tracing::debug!(error = %err, "cannot read the slot's retained WAL"),
            }
        }
    })
}

/// How often `schema.*` patterns are looked at again for new tables.
pub const TABLE_RESCAN_INTERVAL: Duration = Duration::from_secs(10);

/// With a `schema.*` pattern, new tables created in that schema join the publication (within
/// [`TABLE_RESCAN_INTERVAL`]); their first change then brings a Relation message and the
/// pipeline creates the target table. A table that does not qualify (no key, say) is logged
/// and left out — the tables already streaming keep streaming. Rows written to a new table
/// before it joined are not streamed (an initial snapshot's job).
fn spawn_publication_watcher(
    client: Arc<tokio_postgres::Client>,
    config: crate::config::PostgresConfig,
    copy_new_tables: Option<mpsc::UnboundedSender<String>>,
) -> Option<tokio::task::JoinHandle<()>> {
    use crate::engine::setup::postgres::ensure_publication;
    use crate::postgres::catalog::TablePattern;
    if !config
        .tables
        .iter()
        .any(|pattern| matches!(pattern, TablePattern::AllInSchema { .. }))
    {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(TABLE_RESCAN_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let tables = match resolve_tables(&client, &config.tables).await {
                Ok(tables) => tables,
                Err(err) => {
                    tracing::warn!("looking for new tables: {err}");
                    continue;
                }
            };
            match ensure_publication(&client, &config.publication, &tables).await {
                Ok((_, added)) if !added.is_empty() => {
                    tracing::info!(?added, "new tables joined the publication");
                    if let Some(copies) = &copy_new_tables {
                        for table in added {
                            let _ = copies.send(table);
                        }
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::warn!("adding new tables to the publication: {err}"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_resumes_after_the_stored_checkpoint_of_an_existing_slot() {
        let slot = Lsn(0x26B_22D8);
        let stored = Lsn(0x26B_87B8);
        assert_eq!(resume_position(Some(slot), slot, stored), stored);
        // The slot moved past the checkpoint (feedback processed, store not yet written).
        assert_eq!(resume_position(Some(stored), stored, slot), stored);
        // A slot created now ignores a checkpoint left by an earlier slot of the same name.
        assert_eq!(resume_position(None, slot, stored), slot);
    }
}
