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
//! Memory: the session counts every message into the engine's buffered bytes before handing it
//! over and stops reading at `STARWAL_MAX_BUFFER_BYTES`; the pipeline releases a message's bytes
//! when it is dropped or, for changes, when the load holding them commits (invariant 8).
//!
//! Restart (invariant 5): for each table's recorded in-flight load the pipeline either skips what
//! is known to be committed, or re-forms exactly that batch (same changes, same label) so
//! StarRocks answers `Label Already Exists` if it had committed it before the crash.

pub mod batch;
pub mod loader;
pub mod progress;
mod schema_cache;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::postgres::catalog::{CatalogError, RowLookup, SourceTable, TablePattern};
use crate::postgres::checkpoint::InFlightLoad;
use crate::postgres::pgoutput::{Message, TupleData, TupleValueRef};
use crate::postgres::replication::session::ChangeConsumer;
use crate::postgres::{ChangePosition, Lsn, Oid};
use crate::schema::TableSchema;
use crate::sink::starrocks::config::{Compression, DeleteMode};
use crate::sink::starrocks::encoding::{EncodeError, TableEncoder};
use crate::sink::starrocks::mapping::target_table_name;
use crate::sink::starrocks::setup::TargetSetupError;
use crate::sink::LoadFailure;
use crate::state::EngineHandle;
use batch::TableBatch;
use loader::{Job, JobDone, LoaderContext};
use progress::CommitLog;

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("loading `{table}` (changes {first} to {last}): {source}")]
    Load {
        table: String,
        first: ChangePosition,
        last: ChangePosition,
        #[source]
        source: Box<LoadFailure>,
    },
    #[error("StarRocks table `{table}`: {source}")]
    Target {
        table: String,
        #[source]
        source: TargetSetupError,
    },
    #[error(transparent)]
    Checkpoint(#[from] crate::postgres::checkpoint::CheckpointError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("source table {table}: {source}")]
    Source {
        table: String,
        #[source]
        source: CatalogError,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("change at LSN {lsn} for relation {relation} arrived before its Relation message")]
    UnknownRelation { lsn: Lsn, relation: Oid },
    #[error("the loader of `{0}` stopped unexpectedly")]
    LoaderGone(String),
}

impl PipelineError {
    pub(crate) fn target(table: &str, source: TargetSetupError) -> PipelineError {
        PipelineError::Target {
            table: table.to_owned(),
            source,
        }
    }

    /// Whether starting over (reconnect, set up, resume from the checkpoint) may succeed without
    /// anyone changing anything: connections lost, servers restarting.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Load { .. } | PipelineError::Encode(_) => false,
            PipelineError::Target { source, .. } => source.is_transient(),
            PipelineError::Checkpoint(_) | PipelineError::Source { .. } => true,
            // Tables that cannot be replicated, refused catalog queries: someone must act.
            PipelineError::Catalog(_) => false,
            PipelineError::UnknownRelation { .. } | PipelineError::LoaderGone(_) => true,
        }
    }
}

/// One message from the session, with the bytes it holds in the buffer.
#[derive(Debug)]
pub struct StreamItem {
    pub lsn: Lsn,
    pub message: Message,
    pub bytes: u64,
}

/// Messages travel to the pipeline in chunks of up to this many (and at every commit): one
/// cross-thread wake-up per chunk instead of per message.
const CHUNK: usize = 256;

/// The session side: forwards every message to the pipeline task and applies backpressure.
#[derive(Debug)]
pub struct Forwarder {
    tx: mpsc::UnboundedSender<Vec<StreamItem>>,
    chunk: Vec<StreamItem>,
    handle: Arc<EngineHandle>,
    /// Set when a drain or stop begins: read nothing more.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

/// The pipeline task is gone (it failed; its error is reported by the engine).
#[derive(Debug, thiserror::Error)]
#[error("the pipeline stopped")]
pub struct PipelineGone;

impl Forwarder {
    pub fn new(
        tx: mpsc::UnboundedSender<Vec<StreamItem>>,
        handle: Arc<EngineHandle>,
        closed: Arc<std::sync::atomic::AtomicBool>,
    ) -> Forwarder {
        Forwarder {
            tx,
            chunk: Vec::with_capacity(CHUNK),
            handle,
            closed,
        }
    }
}

/// Approximate bytes a message keeps alive: its tuples' wire bytes plus a fixed overhead.
fn message_bytes(message: &Message) -> u64 {
    const OVERHEAD: u64 = 64;
    let tuple = |t: &TupleData| t.wire_bytes().len() as u64;
    OVERHEAD
        + match message {
            Message::Insert(insert) => tuple(&insert.new_tuple),
            Message::Update(update) => {
                tuple(&update.new_tuple) + update.old_tuple.as_ref().map_or(0, |o| tuple(o.tuple()))
            }
            Message::Delete(delete) => tuple(delete.old_tuple.tuple()),
            _ => 0,
        }
}

impl ChangeConsumer for Forwarder {
    type Error = PipelineGone;

    fn handle(&mut self, lsn: Lsn, message: &Message) -> Result<Option<Lsn>, PipelineGone> {
        let bytes = message_bytes(message);
        self.handle.add_buffered(bytes);
        self.chunk.push(StreamItem {
            lsn,
            message: message.clone(),
            bytes,
        });
        // A commit goes at once (it is what can be confirmed); a transaction's changes go in
        // chunks. What is still in `chunk` when the session ends is an unfinished transaction,
        // which nothing could have confirmed: the next start streams it again.
        if self.chunk.len() >= CHUNK || matches!(message, Message::Commit(_)) {
            let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
            self.tx.send(chunk).map_err(|_| PipelineGone)?;
        }
        Ok(None)
    }

    fn accepts(&self) -> bool {
        !self.closed.load(std::sync::atomic::Ordering::SeqCst) && self.handle.may_read()
    }

    async fn accepts_changed(&self) {
        let notified = self.handle.notified();
        if self.accepts() {
            return;
        }
        // Also wake up now and then: a drain flag flip does not notify.
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }

    fn server_wal_end(&mut self, wal_end: Lsn) {
        self.handle.set_received(Lsn::ZERO, wal_end);
    }

    fn flushed(&mut self, flush: Lsn) {
        self.handle.set_flushed(flush);
    }
}

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
    pub tables: Vec<TablePattern>,
}

/// What to do with a table's first changes after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// Everything up to here is already in StarRocks.
    SkipThrough(ChangePosition),
    /// Changes before `first` are in StarRocks; `first..=last` is the batch that was in flight:
    /// send exactly it again, under its label.
    Reform {
        first: ChangePosition,
        last: ChangePosition,
    },
}

#[derive(Debug)]
struct TableState {
    source: SourceTable,
    source_name: String,
    target: String,
    schema: TableSchema,
    encoder: TableEncoder,
    key_columns: Vec<usize>,
    batch: TableBatch,
    jobs: mpsc::UnboundedSender<Job>,
    loader: tokio::task::JoinHandle<()>,
    /// Ranges of queued jobs not yet done, oldest first.
    queued: VecDeque<(ChangePosition, ChangePosition)>,
    /// Jobs sent to the loader and not yet reported done (loads, truncates, DDL).
    jobs_open: usize,
    /// Numbering of this table's changes in the current transaction.
    txn_commit: Lsn,
    txn_seq: u32,
    resume: Option<Resume>,
}

impl TableState {
    fn next_position(&mut self, commit: Lsn) -> ChangePosition {
        if self.txn_commit != commit {
            self.txn_commit = commit;
            self.txn_seq = 0;
        }
        self.txn_seq = self.txn_seq.saturating_add(1);
        ChangePosition {
            commit,
            seq: self.txn_seq,
        }
    }

    fn oldest_pending(&self) -> Option<Lsn> {
        let queued = self.queued.front().map(|(first, _)| first.commit);
        let open = self.batch.first().map(|first| first.commit);
        match (queued, open) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn loader_idle(&self) -> bool {
        self.jobs_open == 0
    }
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
    /// The open transaction: its commit LSN and time.
    transaction: Option<(Lsn, std::time::SystemTime)>,
    done_tx: mpsc::UnboundedSender<JobDone>,
    done_rx: mpsc::UnboundedReceiver<JobDone>,
    confirmations: watch::Sender<Lsn>,
    /// The confirmed LSN last written to the checkpoint store.
    stored: Lsn,
    /// A load committed since then (only loads trigger a store; see `advance`).
    loads_since_store: bool,
    in_flight_at_start: HashMap<String, InFlightLoad>,
    /// Source tables being copied while streaming: their changes are dropped and the confirmed
    /// LSN holds (see [`PipelineCommand::StartCopy`]).
    copying: std::collections::HashSet<String>,
    commands: Option<mpsc::UnboundedReceiver<PipelineCommand>>,
    /// Set after an error: finished loads are taken in, nothing new is sent.
    winding_down: bool,
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
            transaction: None,
            done_tx,
            done_rx,
            confirmations,
            stored: start.confirmed,
            loads_since_store: false,
            in_flight_at_start: start
                .in_flight
                .into_iter()
                .map(|load| (load.table.clone(), load))
                .collect(),
            copying: std::collections::HashSet::new(),
            commands: None,
            winding_down: false,
        };
        pipeline.context.handle.set_confirmed(start.confirmed, None);
        pipeline
            .context
            .handle
            .set_received(start.confirmed, start.confirmed);
        for (source, schema) in start.tables {
            pipeline.add_table(source, schema);
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
        let resume = self.in_flight_at_start.remove(&target).and_then(|load| {
            let confirmed = self.commits.confirmed();
            if load.last.commit < confirmed {
                None
            } else if load.first.commit < confirmed {
                // Confirmation passed the batch's start, which happens only after it committed.
                Some(Resume::SkipThrough(load.last))
            } else {
                tracing::info!(table = %target, label = %load.label, first = %load.first, last = %load.last, "re-forming the batch that was in flight");
                Some(Resume::Reform {
                    first: load.first,
                    last: load.last,
                })
            }
        });
        self.by_relation.insert(source.oid, index);
        self.tables.push(TableState {
            encoder: TableEncoder::new(&schema, self.settings.delete_mode),
            key_columns: key_columns(&schema),
            source,
            source_name,
            target,
            schema,
            batch: TableBatch::default(),
            jobs,
            loader,
            queued: VecDeque::new(),
            jobs_open: 0,
            txn_commit: Lsn::ZERO,
            txn_seq: 0,
            resume,
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
        while self
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
        let tick = (self.settings.flush_interval / 4)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands = self.commands.take();
        let drain = loop {
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
                _ = ticker.tick() => self.on_tick().await?,
                chunk = stream.recv() => match chunk {
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
                if !matches!(self.tables[index].resume, Some(Resume::Reform { .. })) {
                    self.flush(index).await?;
                }
            }
        }
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

    async fn command(&mut self, command: PipelineCommand) -> Result<(), PipelineError> {
        match command {
            PipelineCommand::StartCopy { table, ready } => {
                tracing::info!(%table, "copy while streaming: dropping the table's changes and holding the confirmed LSN until the stream restarts");
                self.copying.insert(table.clone());
                match self.tables.iter().position(|t| t.source_name == table) {
                    Some(index) => {
                        // Its changes so far go out first; the copy empties the table after.
                        if !matches!(self.tables[index].resume, Some(Resume::Reform { .. })) {
                            self.flush(index).await?;
                        }
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

    async fn message(&mut self, item: StreamItem) -> Result<(), PipelineError> {
        let StreamItem {
            lsn,
            message,
            bytes,
        } = item;
        let mut held = false;
        match message {
            Message::Begin(begin) => {
                self.transaction = Some((begin.final_lsn, begin.commit_ts.to_system_time()));
            }
            Message::Commit(commit) => {
                let time = commit.commit_ts.to_system_time();
                self.commits
                    .committed(commit.commit_lsn, commit.end_lsn, time, bytes);
                held = true;
                self.context.handle.commit_waiting(time);
                self.context.handle.set_received(commit.end_lsn, Lsn::ZERO);
                self.transaction = None;
                self.commit_passed(commit.commit_lsn).await?;
                self.advance(false).await?;
            }
            Message::Relation(relation) => self.relation(&relation).await?,
            Message::Insert(insert) => {
                if let Some((index, position)) = self.position(lsn, insert.relation_id)? {
                    if self.admit(index, position).await? {
                        let table = &mut self.tables[index];
                        table
                            .batch
                            .insert(position, bytes, &table.key_columns, insert.new_tuple);
                        held = true;
                        self.after_change(index).await?;
                    }
                }
            }
            Message::Update(update) => {
                if let Some((index, position)) = self.position(lsn, update.relation_id)? {
                    if self.admit(index, position).await? {
                        let table = &mut self.tables[index];
                        table.batch.update(
                            position,
                            bytes,
                            &table.key_columns,
                            update.old_tuple.as_ref(),
                            update.new_tuple,
                        );
                        held = true;
                        self.after_change(index).await?;
                    }
                }
            }
            Message::Delete(delete) => {
                if let Some((index, position)) = self.position(lsn, delete.relation_id)? {
                    if self.admit(index, position).await? {
                        let table = &mut self.tables[index];
                        table
                            .batch
                            .delete(position, bytes, &table.key_columns, &delete.old_tuple);
                        held = true;
                        self.after_change(index).await?;
                    }
                }
            }
            Message::Truncate(truncate) => {
                for relation in truncate.relation_ids {
                    if let Some((index, position)) = self.position(lsn, relation)? {
                        if self.admit(index, position).await? {
                            // What came before the truncate is loaded first, then the target
                            // is emptied, in the table's loader order.
                            self.flush(index).await?;
                            self.send(index, Job::Truncate(position), Some((position, position)))?;
                        }
                    }
                }
            }
            // Origins, types, logical messages (heartbeats) carry nothing to load; streamed
            // and two-phase messages are not requested.
            _ => {}
        }
        if !held {
            self.context.handle.release_buffered(bytes);
        }
        Ok(())
    }

    /// The position of a change to `relation`, or `None` when the relation is not replicated.
    fn position(
        &mut self,
        lsn: Lsn,
        relation: Oid,
    ) -> Result<Option<(usize, ChangePosition)>, PipelineError> {
        let Some(&index) = self.by_relation.get(&relation) else {
            if self.ignored.contains(&relation) {
                return Ok(None);
            }
            return Err(PipelineError::UnknownRelation { lsn, relation });
        };
        // Outside a transaction cannot happen with pgoutput v1; number it under the LSN.
        let commit = self.transaction.map_or(lsn, |(commit, _)| commit);
        Ok(Some((index, self.tables[index].next_position(commit))))
    }

    /// Applies the restart rule to a change; `false` when it is already in StarRocks (or its
    /// table is being copied: the stream brings it again after the copy).
    async fn admit(
        &mut self,
        index: usize,
        position: ChangePosition,
    ) -> Result<bool, PipelineError> {
        if !self.copying.is_empty() && self.copying.contains(&self.tables[index].source_name) {
            return Ok(false);
        }
        match self.tables[index].resume {
            None => Ok(true),
            Some(Resume::SkipThrough(through)) => {
                if position <= through {
                    return Ok(false);
                }
                self.tables[index].resume = None;
                Ok(true)
            }
            Some(Resume::Reform { first, last }) => {
                if position < first {
                    return Ok(false);
                }
                if position > last {
                    self.tables[index].resume = None;
                    self.flush(index).await?;
                }
                Ok(true)
            }
        }
    }

    /// A commit passed: a re-formed batch that ends in it is complete.
    async fn commit_passed(&mut self, commit: Lsn) -> Result<(), PipelineError> {
        for index in 0..self.tables.len() {
            match self.tables[index].resume {
                Some(Resume::Reform { last, .. }) if last.commit <= commit => {
                    self.tables[index].resume = None;
                    self.flush(index).await?;
                }
                Some(Resume::SkipThrough(through)) if through.commit <= commit => {
                    self.tables[index].resume = None;
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn after_change(&mut self, index: usize) -> Result<(), PipelineError> {
        let table = &self.tables[index];
        if matches!(table.resume, Some(Resume::Reform { .. })) {
            // The batch must end exactly where the recorded one did.
            return Ok(());
        }
        let full = table.batch.changes() >= self.settings.flush_rows
            || table.batch.bytes() >= self.settings.flush_bytes;
        let pressed = self.context.handle.buffered_bytes() >= self.settings.max_buffer_bytes
            && table.loader_idle();
        if full || pressed {
            self.flush(index).await?;
        }
        Ok(())
    }

    async fn on_tick(&mut self) -> Result<(), PipelineError> {
        let pressed = self.context.handle.buffered_bytes() >= self.settings.max_buffer_bytes;
        for index in 0..self.tables.len() {
            let table = &self.tables[index];
            if table.batch.is_empty() || !table.loader_idle() {
                continue;
            }
            if matches!(table.resume, Some(Resume::Reform { .. })) {
                if !pressed {
                    continue;
                }
                // The batch being re-formed no longer fits (the buffer cap was lowered since
                // the crash): send what there is. Its label differs from the recorded one, so
                // StarRocks may apply those rows a second time — harmless for a Primary Key
                // table (same final state), and the only way forward.
                tracing::warn!(table = %table.target, "the re-formed batch exceeds STARWAL_MAX_BUFFER_BYTES: sending it under a new label");
                self.tables[index].resume = None;
                self.flush(index).await?;
                continue;
            }
            let due = table
                .batch
                .opened_at()
                .is_some_and(|opened| opened.elapsed() >= self.settings.flush_interval);
            if due || pressed {
                self.flush(index).await?;
            }
        }
        Ok(())
    }

    /// Seals the table's batch and queues it.
    async fn flush(&mut self, index: usize) -> Result<(), PipelineError> {
        if self.tables[index].batch.is_empty() {
            return Ok(());
        }
        self.fetch_moved_rows(index).await?;
        let table = &mut self.tables[index];
        let sealed = table.batch.seal(
            &table.encoder,
            &self.settings.slot,
            &table.target,
            self.settings.compression,
        )?;
        if let Some(mut sealed) = sealed {
            // From here the batch's memory is its encoded bodies (the tuples are gone): count
            // those instead, so the buffer cap bounds what is really held (invariant 8).
            let body_bytes: u64 = sealed.loads.iter().map(|l| l.body.len() as u64).sum();
            self.context.handle.add_buffered(body_bytes);
            self.context.handle.release_buffered(sealed.buffered_bytes);
            sealed.buffered_bytes = body_bytes;
            let range = (sealed.first, sealed.last);
            self.send(index, Job::Load(sealed), Some(range))?;
        }
        Ok(())
    }

    fn send(
        &mut self,
        index: usize,
        job: Job,
        range: Option<(ChangePosition, ChangePosition)>,
    ) -> Result<(), PipelineError> {
        let table = &mut self.tables[index];
        // Queued before sending: if the loader is gone the sealed batch is lost, and its range
        // must keep holding the confirmed LSN back (the batch itself is already emptied).
        if let Some(range) = range {
            table.queued.push_back(range);
        }
        table
            .jobs
            .send(job)
            .map_err(|_| PipelineError::LoaderGone(table.target.clone()))?;
        table.jobs_open += 1;
        Ok(())
    }

    async fn job_done(&mut self, done: JobDone) -> Result<(), PipelineError> {
        self.context.handle.release_buffered(done.released_bytes);
        let Some(table) = self.tables.get_mut(done.table) else {
            return Ok(());
        };
        table.jobs_open = table.jobs_open.saturating_sub(1);
        done.result?;
        if let Some(through) = done.through {
            if table
                .queued
                .front()
                .is_some_and(|(_, last)| *last == through)
            {
                table.queued.pop_front();
            }
            self.loads_since_store = true;
        }
        self.advance(false).await?;
        // The loader is free: a batch that waited for it may go now.
        let table = &self.tables[done.table];
        if !self.winding_down
            && table.loader_idle()
            && !table.batch.is_empty()
            && !matches!(table.resume, Some(Resume::Reform { .. }))
            && (table
                .batch
                .opened_at()
                .is_some_and(|opened| opened.elapsed() >= self.settings.flush_interval)
                || self.context.handle.buffered_bytes() >= self.settings.max_buffer_bytes)
        {
            self.flush(done.table).await?;
        }
        Ok(())
    }

    /// Moves the confirmed LSN as far as the loads allow; stores it after loads committed (or
    /// always when `final_store`), then hands it to the session.
    async fn advance(&mut self, final_store: bool) -> Result<(), PipelineError> {
        let oldest = if self.copying.is_empty() {
            self.tables
                .iter()
                .filter_map(TableState::oldest_pending)
                .min()
        } else {
            // A copy runs while streaming: its table's dropped changes must stream again.
            Some(Lsn::ZERO)
        };
        let released = self.commits.advance(oldest);
        self.context.handle.release_buffered(released);
        let confirmed = self.commits.confirmed();
        self.context
            .handle
            .set_confirmed(confirmed, self.commits.oldest_waiting());
        if confirmed > self.stored && (self.loads_since_store || final_store) {
            // Stored only when loads moved it: storing writes a transaction to the source,
            // which (on PG 14) comes back through the stream as an empty one.
            self.context
                .store
                .confirm(&self.client, confirmed)
                .await
                .map_err(PipelineError::Checkpoint)?;
            self.stored = confirmed;
            self.loads_since_store = false;
        }
        self.confirmations.send_if_modified(|current| {
            if confirmed > *current {
                *current = confirmed;
                true
            } else {
                false
            }
        });
        Ok(())
    }

    /// Completes moved rows that lack unchanged-TOAST values from the source's current row.
    async fn fetch_moved_rows(&mut self, index: usize) -> Result<(), PipelineError> {
        let requests = self.tables[index].batch.needing_fetch();
        if requests.is_empty() {
            return Ok(());
        }
        let table = &self.tables[index];
        let source_error = |source| PipelineError::Source {
            table: table.source_name.clone(),
            source,
        };
        let lookup = RowLookup::prepare(
            &self.client,
            &table.source,
            &table.schema,
            &table.key_columns,
        )
        .await
        .map_err(source_error)?;
        let Some(lookup) = lookup else {
            // A column of the stream's schema is gone from the source already; the stream's
            // Relation message for that drop follows. Retrying would fail the same way.
            tracing::warn!(table = %table.source_name, "cannot read moved rows' unchanged TOAST values (a column was dropped since)");
            return Ok(());
        };
        let mut completions = Vec::with_capacity(requests.len());
        for request in requests {
            let keys: Vec<Option<String>> = request
                .row
                .raw_values()
                .enumerate()
                .filter(|(column, _)| table.key_columns.contains(column))
                .map(|(_, value)| match value {
                    TupleValueRef::Text(text) => Some(String::from_utf8_lossy(text).into_owned()),
                    _ => None,
                })
                .collect();
            match lookup
                .fetch(&self.client, &keys)
                .await
                .map_err(source_error)?
            {
                Some(values) => {
                    let tuple = TupleData::from_values(values.iter().map(|v| match v {
                        Some(text) => TupleValueRef::Text(text.as_bytes()),
                        None => TupleValueRef::Null,
                    }));
                    completions.push((request.entry, tuple));
                }
                None => {
                    // Gone from the source: a later change in the stream deletes or moves it
                    // again; until then the row keeps the columns it has.
                    tracing::warn!(table = %table.source_name, "a row whose key changed is gone from the source; its unchanged TOAST columns stay unset until a later change");
                }
            }
        }
        let batch = &mut self.tables[index].batch;
        for (entry, tuple) in completions {
            batch.complete(entry, &tuple);
        }
        Ok(())
    }
}

/// Indices of the key columns, in column order.
fn key_columns(schema: &TableSchema) -> Vec<usize> {
    schema
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_key())
        .map(|(i, _)| i)
        .collect()
}
