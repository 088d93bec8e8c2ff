//! The pipeline: from decoded stream messages to committed StarRocks loads, and back to the
//! confirmed LSN.
//!
//! It runs as one task fed by the replication session through a channel. Per table it keeps an
//! open [`batch::TableBatch`] (changes collapsed per key); a batch is sealed when it reaches
//! `STARWAL_FLUSH_ROWS` changes or `STARWAL_FLUSH_BYTES` bytes, when its oldest change is
//! `STARWAL_FLUSH_INTERVAL_MS` old and the table's loader is idle, before a TRUNCATE or a schema
//! change of its table, and when the buffer is full (a transaction larger than the buffer goes
//! out in parts). Sealed batches go to the table's [`loader`] (one load in flight per table).
//! Finished loads come back, and [`progress::CommitLog`] says how far the confirmed LSN may move:
//! it is stored in the checkpoint table and handed to the session as `flush` (invariant 1).
//!
//! Memory (invariant 8): the buffered bytes are what is really allocated, each holder counting
//! its own share — the forwarder a message in the channel (its slot, its frame, the chunk's spare
//! capacity), a batch its rows, keys, capacity and the bodies sealing it will write, a sealed
//! batch its bodies until the load commits, the commit log its queue. The session stops reading
//! at `STARWAL_MAX_BUFFER_BYTES`, so the channel is bounded by bytes, not by messages.
//!
//! Restart (invariant 5): for each table's recorded in-flight load the pipeline either skips what
//! is known to be committed, or re-forms exactly that batch (same changes, same label) so
//! StarRocks answers `Label Already Exists` if it had committed it before the crash
//! (`restart.rs` has the rule).
//!
//! Files: this one holds the task (start, run, stop, commands); `forwarder.rs` the session's
//! side of the channel; `apply.rs` what a message does; `flush.rs` the flush triggers, the
//! loaders' queues and the confirmed LSN; `park.rs` a table stopped by a permanent error while
//! the others stream; `table.rs` the per-table state; `error.rs` its errors.

mod allocator;
mod apply;
pub mod batch;
mod error;
mod flush;
mod forwarder;
pub mod loader;
pub mod multi;
mod park;
pub mod progress;
mod restart;
mod schema_cache;
pub mod stream;
mod table;
mod toast;
pub mod txn;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::postgres::catalog::{SourceTable, TablePattern};
use crate::postgres::checkpoint::InFlightLoad;
use crate::postgres::{Lsn, Oid};
use crate::schema::TableSchema;
use crate::sink::starrocks::config::{Compression, DeleteMode};
use crate::sink::starrocks::encoding::TableEncoder;
use crate::sink::starrocks::mapping::{target_table_name, TypeMapping};
use batch::TableBatch;
use loader::{Job, JobDone, LoaderContext};
use progress::CommitLog;
use restart::Resume;
use table::{key_columns, TableState};

pub use error::PipelineError;
pub use forwarder::{Forwarder, PipelineGone, StreamItem};
pub use park::RefusedAtStart;

/// What the engine asks of a running pipeline.
#[derive(Debug)]
pub enum PipelineCommand {
    /// A copy of `table` (`schema.table`) begins while streaming: from now on its changes are
    /// dropped and nothing more is confirmed, so the stream replays them, after the copy, from
    /// the position confirmed now (engine/snapshot.rs has the argument). `ready` is answered
    /// once the loads of its changes received so far are done: the copy may empty the target.
    StartCopy {
        table: String,
        ready: tokio::sync::oneshot::Sender<()>,
    },
}

/// The settings the pipeline needs.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub slot: String,
    pub flush_rows: u64,
    pub flush_bytes: u64,
    pub flush_interval: Duration,
    pub max_buffer_bytes: u64,
    pub compression: Compression,
    pub delete_mode: DeleteMode,
    /// The target types setup used (`STARWAL_NUMERIC_UNCONSTRAINED`): encoders write into them.
    pub type_mapping: TypeMapping,
    pub tables: Vec<TablePattern>,
    /// A permanent error of one table's load or encoding parks that table (the others keep
    /// streaming) instead of stopping the pipeline; `false` with `STARWAL_EXIT_ON_ERROR`.
    pub park_failing_tables: bool,
    /// `STARWAL_COMMIT_MODE`: `transaction` cuts every flush across all tables into one
    /// multi-table transaction (`multi.rs`).
    pub commit_mode: crate::config::CommitMode,
}

/// What the pipeline starts from.
#[derive(Debug)]
pub struct PipelineStart {
    /// Where the slot stood: streaming resumes after it.
    pub confirmed: Lsn,
    /// The loads recorded as in flight when the previous run ended.
    pub in_flight: Vec<InFlightLoad>,
    /// The tables found at setup, with their schemas.
    pub tables: Vec<(SourceTable, TableSchema)>,
    /// How the StarRocks transactions recorded in flight were settled, by target table
    /// ([`txn::recover_transactions`]); their tables' rule follows from it.
    pub transactions: HashMap<String, txn::Recovered>,
    /// The streamed transactions the restart found committed ([`stream::recover_streams`]).
    pub committed_streams: stream::CommittedStreams,
    /// Prepared StarRocks transactions (streamed or not) whose commit StarRocks refused for good
    /// at the restart: their tables start parked.
    pub refused: Vec<RefusedAtStart>,
    /// `transaction` mode: the attempt number of the next multi-table label
    /// ([`multi::recover_multi`]).
    pub multi_attempt: u32,
}

/// The running pipeline; see the module docs.
#[derive(Debug)]
pub struct Pipeline {
    settings: PipelineSettings,
    context: LoaderContext,
    client: Arc<tokio_postgres::Client>,
    tables: Vec<TableState>,
    by_relation: HashMap<Oid, usize>,
    /// Relations in the publication that starwal does not replicate (not in STARWAL_TABLES).
    ignored: std::collections::HashSet<Oid>,
    commits: CommitLog,
    /// What the commit log counts in the engine's buffer now.
    commits_buffered: table::Buffered,
    /// The most the buffer held since memory was last given back (see `on_tick`).
    buffered_peak: u64,
    /// When to look again after a burst was given back: once the loads have ended and their
    /// blocking threads exited, what they freed is given back too (see `on_tick`).
    settle_at: Option<tokio::time::Instant>,
    /// The open transaction: its commit LSN and time.
    transaction: Option<(Lsn, std::time::SystemTime)>,
    /// The xid of the last transaction begun, until a source read waited for it to be visible
    /// (`apply.rs` `fetch_moved_row`): a read of the source must see what it was asked for by.
    read_after: Option<crate::postgres::Xid>,
    done_tx: mpsc::UnboundedSender<JobDone>,
    done_rx: mpsc::UnboundedReceiver<JobDone>,
    confirmations: watch::Sender<Lsn>,
    /// The confirmed LSN last written to the checkpoint store.
    stored: Lsn,
    /// A load committed since then (only loads trigger a store; see `advance`).
    loads_since_store: bool,
    /// The loads recorded in flight at start, by target table, until their table is added; a
    /// load re-formed stays until its batch is sealed (see `add_table`).
    in_flight_at_start: HashMap<String, InFlightLoad>,
    /// Source tables being copied while streaming: their changes are dropped and the confirmed
    /// LSN holds (see [`PipelineCommand::StartCopy`]).
    copying: std::collections::HashSet<String>,
    commands: Option<mpsc::UnboundedReceiver<PipelineCommand>>,
    /// Set after an error: finished loads are taken in, nothing new is sent.
    winding_down: bool,
    /// The StarRocks transactions settled at start, by target table, until their table is added.
    recovered: HashMap<String, txn::Recovered>,
    /// `STARWAL_COMMIT_MODE=transaction`: the groups and the one loader of that mode.
    multi: Option<multi::MultiState>,
    /// `STARWAL_STREAMING`: the streamed transactions in progress (`stream.rs`).
    streams: stream::Streams,
}

/// How long the loads sent before an error may take to finish (see [`Pipeline::run`]).
const LOADS_GRACE_AFTER_ERROR: Duration = Duration::from_secs(10);

impl Pipeline {
    /// A pipeline over `start.tables`, loading through `context`; confirmations go to the
    /// returned receiver (give it to the session).
    pub fn new(
        settings: PipelineSettings,
        context: LoaderContext,
        client: Arc<tokio_postgres::Client>,
        start: PipelineStart,
    ) -> (Pipeline, watch::Receiver<Lsn>) {
        allocator::configure();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (confirmations, confirmations_rx) = watch::channel(start.confirmed);
        let mut pipeline = Pipeline {
            settings,
            context,
            client,
            tables: Vec::new(),
            by_relation: HashMap::new(),
            ignored: std::collections::HashSet::new(),
            commits: CommitLog::new(start.confirmed),
            commits_buffered: Default::default(),
            buffered_peak: 0,
            settle_at: None,
            transaction: None,
            read_after: None,
            done_tx,
            done_rx,
            confirmations,
            stored: start.confirmed,
            loads_since_store: false,
            // Streamed transactions a restart committed are dropped when they come again.
            streams: stream::Streams::new(start.committed_streams),
            in_flight_at_start: start
                .in_flight
                .into_iter()
                .map(|load| (load.table.clone(), load))
                .collect(),
            copying: std::collections::HashSet::new(),
            commands: None,
            winding_down: false,
            recovered: start.transactions,
            multi: None,
        };
        if pipeline.settings.commit_mode == crate::config::CommitMode::Transaction {
            pipeline.multi = Some(multi::MultiState::spawn(
                pipeline.context.clone(),
                pipeline.settings.slot.clone(),
                start.multi_attempt,
                pipeline.done_tx.clone(),
            ));
        }
        pipeline.context.handle.clear_open_transactions();
        pipeline.context.handle.set_confirmed(start.confirmed, None);
        // A new pipeline replays what a parked table held: nothing is parked until it fails again.
        pipeline.context.handle.clear_parked();
        pipeline
            .context
            .handle
            .set_received(start.confirmed, start.confirmed);
        for refused in &start.refused {
            // Held as a whole: neither re-formed nor skipped through (park.rs).
            pipeline.in_flight_at_start.remove(&refused.target);
            pipeline.recovered.remove(&refused.target);
        }
        for (source, schema) in start.tables {
            pipeline.add_table(source, schema);
        }
        for refused in start.refused {
            let index = pipeline
                .tables
                .iter()
                .position(|t| t.target == refused.target);
            if let Some(index) = index {
                pipeline.park(index, refused.first, &refused.error, false);
            }
        }
        (pipeline, confirmations_rx)
    }

    fn add_table(&mut self, source: SourceTable, schema: TableSchema) -> usize {
        let index = self.tables.len();
        let target = target_table_name(&schema.schema, &schema.name);
        let source_name = source.display_name();
        self.context.handle.add_table(&source_name, &target);
        let (jobs, loader) = loader::spawn(
            self.context.clone(),
            index,
            source_name.clone(),
            target.clone(),
            self.done_tx.clone(),
        );
        let recovered = self.recovered.remove(&target);
        let resume = self.in_flight_at_start.get(&target).and_then(|load| {
            if let Some(recovered) = recovered {
                // A StarRocks transaction: committed or rolled back already, never re-formed.
                return Resume::for_transaction(
                    load.first,
                    load.last,
                    self.commits.confirmed(),
                    recovered == txn::Recovered::Committed,
                );
            }
            let rule = Resume::for_load(load.first, load.last, self.commits.confirmed());
            if rule.is_some_and(Resume::is_reform) {
                tracing::info!(table = %target, label = %load.label, first = %load.first, last = %load.last, "re-forming the batch that was in flight");
            }
            rule
        });
        // In `transaction` mode too a plain load in flight is re-formed under its label: this
        // mode sends a batch of partial updates or several column sets as plain loads (multi.rs),
        // and the same changes make the same batch, which goes plain again under the same label
        // (StarRocks answers Label Already Exists when it committed). Read again instead, it was
        // applied twice. (A full-row plain load a `table`-mode run left joins a multi-table
        // transaction under a new label when re-formed: applied again, which a Primary Key
        // table absorbs.)
        // A load being re-formed keeps its record until its batch is sealed, which completes the
        // batch as recorded (`flush.rs`).
        if !resume.is_some_and(Resume::is_reform) {
            self.in_flight_at_start.remove(&target);
        }
        self.by_relation.insert(source.oid, index);
        let mut batch = TableBatch::default();
        batch.set_row_overhead(batch::body_row_overhead(&schema));
        self.tables.push(TableState {
            encoder: TableEncoder::new(
                &schema,
                self.settings.delete_mode,
                self.settings.type_mapping,
            ),
            key_columns: key_columns(&schema),
            source,
            source_name,
            target,
            schema,
            batch,
            buffered: Default::default(),
            jobs,
            loader,
            queued: VecDeque::new(),
            jobs_open: 0,
            txn_commit: Lsn::ZERO,
            txn_seq: 0,
            resume,
            parked: None,
            txn: None,
            flush_deferred: false,
            split_warnings: Default::default(),
        });
        index
    }

    /// Takes engine commands from `commands` while running.
    pub fn with_commands(mut self, commands: mpsc::UnboundedReceiver<PipelineCommand>) -> Pipeline {
        self.commands = Some(commands);
        self
    }

    /// Runs until `stop` says `Some(drain)` or the stream channel closes, or an error; returns the
    /// confirmed LSN. With `drain` every batch is flushed and confirmed first; without, only the
    /// loads already queued finish (what was not sent is not confirmed, so it streams again);
    /// after an error too, for at most [`LOADS_GRACE_AFTER_ERROR`]. Either way the loader tasks are gone when it returns: a next attempt's loaders never race
    /// an old one on the same table (a late TRUNCATE or ALTER has no label to protect it).
    pub async fn run(
        mut self,
        stream: mpsc::UnboundedReceiver<Vec<StreamItem>>,
        stop: watch::Receiver<Option<bool>>,
    ) -> Result<Lsn, PipelineError> {
        let result = self.run_until_stopped(stream, stop).await;
        if result.is_err() {
            self.finish_sent_loads().await;
        }
        for table in &mut self.tables {
            table.loader.abort();
        }
        for table in &mut self.tables {
            let _ = (&mut table.loader).await;
        }
        if let Some(multi) = &mut self.multi {
            multi.stop().await;
        }
        result
    }

    /// After an error: the loads already sent were formed before it and may still confirm work
    /// (a schema change the target cannot take stops the stream, not the batch sealed before
    /// it). Waits for them, at most [`LOADS_GRACE_AFTER_ERROR`], sending nothing new, and stores
    /// what they confirmed.
    async fn finish_sent_loads(&mut self) {
        self.winding_down = true;
        let deadline = tokio::time::Instant::now() + LOADS_GRACE_AFTER_ERROR;
        // A loader stops at its first failed job without answering for the jobs after it: a
        // finished loader is not waited for (its answers already sent are still taken in).
        // In `transaction` mode one loader runs every table's jobs.
        let multi_finished = |p: &Pipeline| p.multi.as_ref().is_some_and(|m| m.loader_finished());
        while !multi_finished(self)
            && self
                .tables
                .iter()
                .any(|t| !t.loader_idle() && !t.loader.is_finished())
        {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "loads sent before the error did not finish within {}s: abandoned (their changes stream again)",
                    LOADS_GRACE_AFTER_ERROR.as_secs()
                );
                break;
            }
            match tokio::time::timeout(Duration::from_millis(50), self.done_rx.recv()).await {
                Ok(Some(done)) => self.take_done_after_error(done).await,
                Ok(None) => break,
                Err(_) => {}
            }
        }
        while let Ok(done) = self.done_rx.try_recv() {
            self.take_done_after_error(done).await;
        }
        if let Err(err) = self.advance(true).await {
            tracing::warn!(error = %err, "storing the checkpoint after the error failed");
        }
    }

    async fn take_done_after_error(&mut self, done: JobDone) {
        if let Err(err) = self.job_done(done).await {
            tracing::warn!(error = %err, "a load sent before the error failed too");
        }
    }

    async fn run_until_stopped(
        &mut self,
        mut stream: mpsc::UnboundedReceiver<Vec<StreamItem>>,
        mut stop: watch::Receiver<Option<bool>>,
    ) -> Result<Lsn, PipelineError> {
        // One timer, set to the next batch deadline (flush.rs `next_wake`), not a periodic tick:
        // batches leave when due, and an idle pipeline does not wake up.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<tokio::time::Instant> = None;
        let mut commands = self.commands.take();
        let drain = loop {
            let wake = self.next_wake(tokio::time::Instant::now());
            if let Some(at) = wake.filter(|_| wake != armed) {
                timer.as_mut().reset(at);
            }
            armed = wake;
            tokio::select! {
                biased;
                // The pipeline holds a sender itself: this channel never closes while it runs.
                Some(done) = self.done_rx.recv() => self.job_done(done).await?,
                Some(command) = async {
                    match commands.as_mut() {
                        Some(commands) => commands.recv().await,
                        None => std::future::pending().await,
                    }
                } => self.command(command).await?,
                // Before the stream: under steady input the stream is always ready, and the
                // flush interval must still be honoured.
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.on_tick().await?;
                }
                // Not while the buffer is full and a load will free some (invariant 8): a
                // message costs more in a batch (index, body estimate) than in the channel, so
                // taking in what the channel holds would carry the buffer past the cap.
                chunk = stream.recv(), if !self.full_until_a_load_finishes() => match chunk {
                    Some(chunk) => {
                        for item in chunk {
                            self.message(item).await?;
                        }
                    }
                    None => break stop.borrow().unwrap_or(false),
                },
                changed = stop.changed() => match changed {
                    Err(_) => break false,
                    Ok(()) => {
                        if let Some(drain) = *stop.borrow() {
                            break drain;
                        }
                    }
                },
            }
        };
        // Take what is already queued in the channel too: it was received and counted.
        while let Ok(chunk) = stream.try_recv() {
            for item in chunk {
                self.message(item).await?;
            }
        }
        if drain {
            for index in 0..self.tables.len() {
                // A batch being re-formed goes out only whole, under its recorded label: cut
                // short, it could undo what StarRocks already has. Its changes stay unconfirmed,
                // so the next start re-forms it exactly.
                if !self.tables[index].resume.is_some_and(Resume::is_reform) {
                    self.flush(index).await?;
                }
            }
        }
        // The source transaction the stop cut off never commits in StarRocks from here: its
        // StarRocks transactions are rolled back now rather than held until they time out
        // (txn.rs); its changes stream again on the next start.
        self.abandon_transactions();
        // Wait for the loads in flight (a stop without drain still lets them finish: they may
        // confirm work).
        while self.tables.iter().any(|t| !t.loader_idle()) {
            match self.done_rx.recv().await {
                Some(done) => self.job_done(done).await?,
                None => break,
            }
        }
        self.advance(true).await?;
        Ok(self.commits.confirmed())
    }

    /// The buffer is at the cap and a job in flight will release bytes when it finishes (if
    /// none is, only taking in more, which lets the pressed flush send batches, makes progress).
    fn full_until_a_load_finishes(&self) -> bool {
        self.context.handle.buffered_bytes() >= self.settings.max_buffer_bytes
            && self.tables.iter().any(|t| !t.loader_idle())
    }

    async fn command(&mut self, command: PipelineCommand) -> Result<(), PipelineError> {
        match command {
            PipelineCommand::StartCopy { table, ready } => {
                tracing::info!(%table, "copy while streaming: dropping the table's changes and holding the confirmed LSN until the stream restarts");
                self.copying.insert(table.clone());
                match self.tables.iter().position(|t| t.source_name == table) {
                    Some(index) => {
                        // Its changes so far go out first; the copy empties the table after.
                        if !self.tables[index].resume.is_some_and(Resume::is_reform) {
                            self.flush(index).await?;
                        }
                        // Streamed transactions open on it are rolled back before the copy.
                        self.drop_table_streams(index);
                        self.send(index, Job::Barrier(ready), None)?;
                    }
                    // Not seen in the stream yet (a table that just joined the publication).
                    None => {
                        let _ = ready.send(());
                    }
                }
            }
        }
        Ok(())
    }
}
