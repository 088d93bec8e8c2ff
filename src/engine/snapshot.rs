//! Snapshot copies: the rows that existed before the stream, copied chunk by chunk into
//! StarRocks by `STARWAL_SNAPSHOT_WORKERS` connections reading one exported snapshot.
//!
//! Why the copy and the stream converge (invariant: the snapshot is consistent with the stream;
//! the full argument, and the case that needs care, is in ARCHITECTURE.md "Snapshot"):
//! a copy reads a snapshot `S` exported at consistent point `C`, with `C` at or after the
//! position `P` the stream will replay from. Every transaction missing from `S` commits after
//! `C ≥ P`, so the stream brings it; transactions in `S` that the stream brings again are
//! applied again over a newer image, in commit order, so each key ends at its last change
//! (or at its image in `S` when it has none after `P`). That holds while nothing of the stream
//! reaches the table between the copy's start and its end: before streaming (the SNAPSHOT
//! phase) that is trivially so; a copy made while streaming (resync, a table that joined the
//! publication later) has the pipeline drop the table's changes and hold the confirmed LSN,
//! and the stream restarts from the held position when the copy is done (engine/run.rs).
//!
//! The two occasions: [`copy_before_streaming`] (the SNAPSHOT phase of an attempt) and
//! [`CopiesWhileStreaming`] (resyncs and new tables, while the attempt streams).
//!
//! Resumable: chunk plans and finished chunks are stored in the source (`CopyStore`); a new
//! run copies the unfinished chunks from a new snapshot (any snapshot at or after `P` will
//! do), and loading a chunk twice is harmless (full row images of a Primary Key table).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, Mutex};
use tokio_stream::StreamExt as _;

use crate::config::SnapshotConfig;
use crate::pipeline::PipelineCommand;
use crate::postgres::catalog::{
    resolve_tables, table_schema, CatalogError, SourceTable, TablePattern,
};
use crate::postgres::conninfo::ConnInfo;
use crate::postgres::replication::ReplicationError;
use crate::postgres::snapshot::copy_text::{CopyRowParser, CopyTextError};
use crate::postgres::snapshot::store::{CopyRecord, CopyStore, CopyStoreError, KeyBound};
use crate::postgres::snapshot::{ChunkRange, ExportedSnapshot, ReaderError, SnapshotReader};
use crate::postgres::Lsn;
use crate::schema::TableSchema;
use crate::sink::starrocks::config::{Compression, DeleteMode};
use crate::sink::starrocks::encoding::{
    Audit, BodyFormat, BodyWriter, ColumnSet, EncodeError, SourceOp, SyncedAt, TableEncoder,
    Written,
};
use crate::sink::starrocks::label::Label;
use crate::sink::starrocks::mapping::{target_table_name, TypeMapping};
use crate::sink::starrocks::setup::{TargetSetup, TargetSetupError};
use crate::sink::{LoadBatch, LoadFailure, LoadReceipt, Sink};
use crate::state::{EngineHandle, PartialResync, Phase};

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("exporting a snapshot to copy from: {0}")]
    Export(#[source] ReplicationError),
    #[error("snapshot copy: {0}")]
    Reader(#[from] ReaderError),
    #[error("copying {table}, chunk {chunk}: a row COPY sent is not valid: {source}")]
    Format {
        table: String,
        chunk: u32,
        #[source]
        source: CopyTextError,
    },
    #[error("copying {table}, chunk {chunk}: the copy ended inside a row")]
    Truncated { table: String, chunk: u32 },
    #[error("copying {table}: {source}")]
    Encode {
        table: String,
        #[source]
        source: Box<EncodeError>,
    },
    #[error("copying {table}, chunk {chunk}: {source}")]
    Load {
        table: String,
        chunk: u32,
        #[source]
        source: Box<LoadFailure>,
    },
    #[error("emptying StarRocks table `{table}` before its copy: {source}")]
    Target {
        table: String,
        #[source]
        source: TargetSetupError,
    },
    #[error(transparent)]
    Store(#[from] CopyStoreError),
    #[error("a copy worker failed: {0}")]
    Worker(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Creating the target tables of copies asked for while streaming.
    #[error(transparent)]
    TargetTables(TargetSetupError),
    #[error("the pipeline stopped before a copy of {table} began")]
    PipelineGone { table: String },
}

impl SnapshotError {
    /// Whether a new attempt may succeed unchanged: lost connections, servers restarting.
    /// Bad rows, refused loads and refused SQL (permissions, a dropped key) need someone.
    pub fn is_transient(&self) -> bool {
        match self {
            SnapshotError::Export(err) => err.is_transient(),
            SnapshotError::Reader(ReaderError::Connect(_)) => true,
            SnapshotError::Reader(ReaderError::Query { source, .. }) => {
                source.is_closed()
                    || source.code().is_none_or(|code| {
                        // Class 42 (access, undefined objects) and 0A (not supported) stay.
                        !(code.code().starts_with("42") || code.code().starts_with("0A"))
                    })
            }
            SnapshotError::Format { .. }
            | SnapshotError::Truncated { .. }
            | SnapshotError::Encode { .. }
            | SnapshotError::Load { .. } => false,
            SnapshotError::Target { source, .. } | SnapshotError::TargetTables(source) => {
                source.is_transient()
            }
            SnapshotError::Store(_) | SnapshotError::Worker(_) => true,
            // Tables that cannot be replicated, refused catalog queries: someone must act.
            SnapshotError::Catalog(_) => false,
            SnapshotError::PipelineGone { .. } => true,
        }
    }
}

/// One table to copy, with where its copy stands.
#[derive(Debug)]
pub struct CopyJob {
    pub source: SourceTable,
    pub schema: TableSchema,
    pub record: CopyRecord,
}

/// Everything a copy needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct Copier {
    pub conn: ConnInfo,
    pub slot: String,
    pub settings: SnapshotConfig,
    /// A chunk's rows go out in loads of about this many bytes (see [`copy_load_bytes`]).
    pub load_bytes: u64,
    pub compression: Compression,
    pub delete_mode: DeleteMode,
    /// The target types setup used: the copy's encoders write into them.
    pub type_mapping: TypeMapping,
    pub store: CopyStore,
    pub state_client: Arc<tokio_postgres::Client>,
    pub sink: Arc<dyn Sink>,
    pub ddl: Arc<Mutex<TargetSetup>>,
    pub handle: Arc<EngineHandle>,
}

/// The largest load body of a copy: each worker holds one body filling and one loading, so this
/// bounds a copy's memory at about `2 × STARWAL_SNAPSHOT_WORKERS × 16 MiB`, while a load stays
/// large enough that StarRocks' per-load cost does not matter.
pub const MAX_COPY_LOAD_BYTES: u64 = 16 * 1024 * 1024;

/// Load body size for copies: `STARWAL_FLUSH_BYTES`, at most [`MAX_COPY_LOAD_BYTES`].
pub fn copy_load_bytes(flush_bytes: u64) -> u64 {
    flush_bytes.min(MAX_COPY_LOAD_BYTES)
}

/// The copy jobs for `tables`: every table with an unfinished copy, plus, unless the mode is
/// `never`, every table never copied for this slot (recorded as requested now).
pub async fn jobs_for(
    store: &CopyStore,
    client: &tokio_postgres::Client,
    tables: &[(SourceTable, TableSchema)],
    copy_new_tables: bool,
) -> Result<Vec<CopyJob>, CopyStoreError> {
    let mut records = store.load(client).await?;
    let mut jobs = Vec::new();
    for (source, schema) in tables {
        let name = source.display_name();
        let record = match records.remove(&name) {
            Some(CopyRecord::Done { .. }) => continue,
            Some(record) => record,
            None if copy_new_tables => CopyRecord::Pending {
                generation: store.request(client, &name).await?,
            },
            None => continue,
        };
        jobs.push(CopyJob {
            source: source.clone(),
            schema: schema.clone(),
            record,
        });
    }
    Ok(jobs)
}

/// A table's planned copy, shared by the workers.
#[derive(Debug)]
struct TablePlan {
    source: SourceTable,
    source_name: String,
    schema: TableSchema,
    target: String,
    encoder: TableEncoder,
    generation: i32,
    boundaries: Vec<KeyBound>,
    /// Chunks not finished yet; the worker that finishes the last marks the table done.
    remaining: AtomicUsize,
    consistent_point: Lsn,
}

#[derive(Debug)]
struct ChunkTask {
    plan: Arc<TablePlan>,
    chunk: u32,
}

/// Bodies a worker sent, kept to write later bodies into their memory once the loads and
/// the pooled curl handles that sent them have let go (a handle keeps its last body until it
/// sends the next). A 16 MiB body written into fresh memory faulted in ~4000 pages, then
/// unmapped them: ~18 % of the agent's CPU in a profile of a 1M-row copy. Only bodies nothing
/// else holds are taken back, so keeping these references holds no memory the loads do not.
#[derive(Debug, Default)]
struct SpareBodies(VecDeque<Bytes>);

impl SpareBodies {
    /// At most this many sent bodies are watched. A pooled handle lets go of a body only when
    /// it sends another, perhaps for another worker, so the last few are watched.
    const KEPT: usize = 8;

    /// Watches `body`, just sent.
    fn keep(&mut self, body: &Bytes) {
        self.0.push_back(body.clone());
        while self.0.len() > Self::KEPT {
            self.0.pop_front();
        }
    }

    /// The buffer of a watched body nothing else holds any more, emptied. Other such bodies
    /// are let go (freed): only bodies something else holds stay watched.
    fn reclaim(&mut self) -> Option<Vec<u8>> {
        let mut reclaimed = None;
        for _ in 0..self.0.len() {
            let Some(body) = self.0.pop_front() else {
                break;
            };
            match body.try_into_mut() {
                Ok(mut buffer) if reclaimed.is_none() => {
                    // Emptied first: converting a non-empty one would move its bytes.
                    buffer.clear();
                    reclaimed = Some(Vec::from(buffer));
                }
                Ok(_) => {}
                Err(body) => self.0.push_back(body),
            }
        }
        reclaimed
    }
}

/// Aborts a spawned load when dropped: a cancelled copy leaves nothing running behind it.
struct LoadTask(tokio::task::JoinHandle<Result<LoadReceipt, LoadFailure>>);

impl Drop for LoadTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Copier {
    /// Copies `jobs` from `snapshot`: opens the readers (all import the snapshot before it is
    /// released), empties and plans the tables whose copy starts now, then copies every
    /// unfinished chunk. Dropping the returned future cancels the copy; what finished is kept.
    pub async fn copy(
        &self,
        snapshot: ExportedSnapshot,
        jobs: Vec<CopyJob>,
    ) -> Result<(), SnapshotError> {
        if jobs.is_empty() {
            snapshot.release().await;
            return Ok(());
        }
        let started = Instant::now();
        let mut readers = Vec::with_capacity(self.settings.workers);
        for _ in 0..self.settings.workers {
            readers.push(SnapshotReader::open(&self.conn, &snapshot.name).await?);
        }
        let consistent_point = snapshot.consistent_point;
        snapshot.release().await;
        tracing::info!(
            tables = jobs.len(),
            workers = readers.len(),
            %consistent_point,
            "snapshot imported; copying"
        );

        let mut queue = VecDeque::new();
        for job in jobs {
            let source_name = job.source.display_name();
            let target = target_table_name(&job.schema.schema, &job.schema.name);
            self.handle.add_table(&source_name, &target);
            let (generation, rows_estimated, boundaries, done) = match job.record {
                CopyRecord::Done { .. } => continue,
                CopyRecord::Pending { generation } => {
                    // A copy that starts over starts from an empty table: rows deleted at the
                    // source before the snapshot must not survive in StarRocks.
                    self.ddl
                        .lock()
                        .await
                        .truncate(&target)
                        .await
                        .map_err(|source| SnapshotError::Target {
                            table: target.clone(),
                            source,
                        })?;
                    let (rows, boundaries) = readers[0]
                        .plan(&job.source, &job.schema, self.settings.chunk_rows)
                        .await?;
                    self.store
                        .planned(
                            &self.state_client,
                            &source_name,
                            generation,
                            rows,
                            &boundaries,
                        )
                        .await?;
                    (generation, rows, boundaries, HashMap::new())
                }
                CopyRecord::Copying {
                    generation,
                    rows_estimated,
                    boundaries,
                    done,
                } => (generation, rows_estimated, boundaries, done),
            };
            let total = boundaries.len() + 1;
            let left: Vec<u32> = (0..total as u32)
                .filter(|c| !done.contains_key(c))
                .collect();
            self.handle.copy_planned(
                &source_name,
                rows_estimated,
                total as u64,
                done.len() as u64,
                done.values().sum(),
            );
            tracing::info!(table = %source_name, rows_estimated, chunks = total, left = left.len(), generation, "copy planned");
            let plan = Arc::new(TablePlan {
                encoder: TableEncoder::new(&job.schema, self.delete_mode, self.type_mapping),
                source: job.source,
                source_name,
                schema: job.schema,
                target,
                generation,
                boundaries,
                remaining: AtomicUsize::new(left.len()),
                consistent_point,
            });
            if left.is_empty() {
                self.table_done(&plan).await?;
            }
            queue.extend(left.into_iter().map(|chunk| ChunkTask {
                plan: plan.clone(),
                chunk,
            }));
        }

        let queue = Arc::new(std::sync::Mutex::new(queue));
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut workers = tokio::task::JoinSet::new();
        for reader in readers {
            let copier = self.clone();
            let queue = queue.clone();
            workers.spawn(async move { copier.work(reader, queue, run).await });
        }
        // The first failure returns; dropping the set aborts the other workers.
        while let Some(result) = workers.join_next().await {
            result.map_err(|err| SnapshotError::Worker(err.to_string()))??;
        }
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "snapshot copy done"
        );
        Ok(())
    }

    async fn table_done(&self, plan: &TablePlan) -> Result<(), SnapshotError> {
        self.store
            .table_done(&self.state_client, &plan.source_name, plan.generation)
            .await?;
        self.handle.copy_done(&plan.source_name);
        tracing::info!(table = %plan.source_name, "table copied");
        Ok(())
    }

    /// One worker: takes chunks until none is left.
    async fn work(
        self,
        reader: SnapshotReader,
        queue: Arc<std::sync::Mutex<VecDeque<ChunkTask>>>,
        run: u64,
    ) -> Result<(), SnapshotError> {
        let mut parser = CopyRowParser::default();
        let mut present = ColumnSet::default();
        let mut spare = SpareBodies::default();
        loop {
            let task = queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop_front();
            let Some(ChunkTask { plan, chunk }) = task else {
                return Ok(());
            };
            let rows = self
                .copy_chunk(
                    &reader,
                    &plan,
                    chunk,
                    run,
                    (&mut parser, &mut present, &mut spare),
                )
                .await?;
            self.store
                .chunk_done(
                    &self.state_client,
                    &plan.source_name,
                    plan.generation,
                    chunk,
                    rows,
                )
                .await?;
            self.handle.copy_progressed(&plan.source_name, 0, true);
            if plan.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.table_done(&plan).await?;
            }
        }
    }

    /// Streams one chunk's COPY rows into Stream Load bodies of about `load_bytes`, one load in
    /// flight while the next body fills. Returns the rows loaded.
    async fn copy_chunk(
        &self,
        reader: &SnapshotReader,
        plan: &TablePlan,
        chunk: u32,
        run: u64,
        (parser, present, spare): (&mut CopyRowParser, &mut ColumnSet, &mut SpareBodies),
    ) -> Result<u64, SnapshotError> {
        let range = ChunkRange::of(&plan.boundaries, chunk as usize);
        let stream = reader.copy(&plan.source, &plan.schema, range).await?;
        tokio::pin!(stream);
        let audit = Audit {
            op: SourceOp::Snapshot,
            lsn: plan.consistent_point,
            synced_at: SyncedAt::now(),
        };
        let tail = plan.encoder.snapshot_tail(&audit);
        let columns = plan.schema.columns.len();
        let mut writer = plan.encoder.body_writer();
        // Into the pages of a body an earlier chunk sent, if one is free (often: a chunk of
        // `STARWAL_SNAPSHOT_CHUNK_ROWS` fits in one body, sent as the chunk ends).
        if let Some(buffer) = spare.reclaim() {
            writer.reuse_buffer(buffer);
        }
        // Rows the table's CSV cannot carry (see `encoding::Written`), loaded as JSON parts.
        let mut json = BodyWriter::new();
        let mut carry: Vec<u8> = Vec::new();
        let mut part = 0u32;
        let mut rows = 0u64;
        let mut in_flight: Option<(LoadTask, u64)> = None;
        let mut encode = |line: &[u8],
                          writer: &mut BodyWriter,
                          json: &mut BodyWriter|
         -> Result<(), SnapshotError> {
            parser
                .parse(line, columns)
                .map_err(|source| SnapshotError::Format {
                    table: plan.source_name.clone(),
                    chunk,
                    source,
                })?;
            let encode_error = |source| SnapshotError::Encode {
                table: plan.source_name.clone(),
                source: Box::new(source),
            };
            let written = plan
                .encoder
                .write_snapshot_csv_row(writer, parser.values(line), &tail, present)
                .map_err(encode_error)?;
            if written == Written::NeedsJson {
                let _ = plan
                    .encoder
                    .write_snapshot_row(json, parser.values(line), &audit, present)
                    .map_err(encode_error)?;
            }
            Ok(())
        };
        while let Some(data) = stream.next().await {
            let data = data.map_err(|source| ReaderError::Query {
                what: format!("copying {}", plan.source_name),
                source,
            })?;
            // COPY sends one row per message; a row split across messages is joined anyway.
            let mut rest = &data[..];
            while let Some(end) = memchr::memchr(b'\n', rest) {
                if carry.is_empty() {
                    encode(&rest[..end], &mut writer, &mut json)?;
                } else {
                    carry.extend_from_slice(&rest[..end]);
                    encode(&carry, &mut writer, &mut json)?;
                    carry.clear();
                }
                rest = &rest[end + 1..];
            }
            carry.extend_from_slice(rest);
            for body in [&mut writer, &mut json] {
                if body.byte_len() as u64 >= self.load_bytes {
                    rows += self
                        .send_part(plan, chunk, run, part, body, (&mut in_flight, spare))
                        .await?;
                    part += 1;
                    if let Some(buffer) = spare.reclaim() {
                        body.reuse_buffer(buffer);
                    }
                }
            }
        }
        if !carry.is_empty() {
            return Err(SnapshotError::Truncated {
                table: plan.source_name.clone(),
                chunk,
            });
        }
        for body in [&mut writer, &mut json] {
            if !body.is_empty() {
                rows += self
                    .send_part(plan, chunk, run, part, body, (&mut in_flight, spare))
                    .await?;
                part += 1;
            }
        }
        if let Some((load, part_rows)) = in_flight.take() {
            self.finish_load(plan, chunk, load, part_rows).await?;
            rows += part_rows;
        }
        Ok(rows)
    }

    /// Sends the writer's body as the next part, after the previous part committed (its rows
    /// are returned).
    async fn send_part(
        &self,
        plan: &TablePlan,
        chunk: u32,
        run: u64,
        part: u32,
        writer: &mut BodyWriter,
        (in_flight, spare): (&mut Option<(LoadTask, u64)>, &mut SpareBodies),
    ) -> Result<u64, SnapshotError> {
        let part_rows = writer.rows();
        let csv_columns = (writer.format() == BodyFormat::Csv).then(|| plan.encoder.full_columns());
        let body = writer
            .take_body(self.compression)
            .map_err(|err| SnapshotError::Encode {
                table: plan.source_name.clone(),
                source: Box::new(EncodeError::Io {
                    table: plan.target.clone(),
                    message: err.to_string(),
                }),
            })?;
        let mut committed = 0;
        if let Some((load, rows)) = in_flight.take() {
            self.finish_load(plan, chunk, load, rows).await?;
            committed = rows;
        }
        if self.compression == Compression::None {
            // The next body is written into a sent one's pages when one is free again.
            spare.keep(&body);
        }
        let batch = LoadBatch {
            table: plan.target.clone(),
            label: Label::for_copy(&self.slot, &plan.target, run, chunk, part),
            first_lsn: plan.consistent_point,
            last_lsn: plan.consistent_point,
            rows: part_rows,
            partial_columns: None,
            csv_columns,
            body,
        };
        let sink = self.sink.clone();
        // Counted until it answers or the LoadTask aborts it (the guard drops with the task).
        let counted = self.handle.load_started(&plan.source_name);
        *in_flight = Some((
            LoadTask(tokio::spawn(async move {
                let _counted = counted;
                sink.load(batch).await
            })),
            part_rows,
        ));
        Ok(committed)
    }

    async fn finish_load(
        &self,
        plan: &TablePlan,
        chunk: u32,
        mut load: LoadTask,
        rows: u64,
    ) -> Result<(), SnapshotError> {
        let result = (&mut load.0)
            .await
            .map_err(|err| SnapshotError::Worker(err.to_string()))?;
        let receipt = result.map_err(|failure| SnapshotError::Load {
            table: plan.source_name.clone(),
            chunk,
            source: Box::new(failure),
        })?;
        self.handle.copy_progressed(&plan.source_name, rows, false);
        self.handle.record_load(
            &plan.source_name,
            crate::state::OpCounts::default(),
            receipt.rows_loaded,
            receipt.bytes,
            receipt.duration,
            receipt.already_committed,
        );
        Ok(())
    }
}

/// A name for the temporary slot of a copy made while the permanent slot `slot` exists: unique
/// per process and copy.
pub fn temporary_slot_name(slot: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let mut name = format!("{slot}_copy_{}_{n}", std::process::id());
    name.truncate(63);
    name
}

/// How the copies before streaming ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Nothing needed copying, or every copy finished.
    Complete,
    /// A stop or drain came first; finished chunks are kept for the next start.
    Stopped,
}

/// The SNAPSHOT phase: copies the tables that need it before the stream starts. Uses the new
/// slot's exported snapshot when there is one, else a temporary slot's.
pub async fn copy_before_streaming(
    copier: &Copier,
    client: &tokio_postgres::Client,
    tables: &[(SourceTable, TableSchema)],
    exported: Option<ExportedSnapshot>,
    copy_new_tables: bool,
) -> Result<CopyOutcome, SnapshotError> {
    let jobs = jobs_for(&copier.store, client, tables, copy_new_tables).await?;
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
            .map_err(SnapshotError::Export)?,
    };
    let mut stops = handle.stop_requests();
    tokio::select! {
        result = copier.copy(snapshot, jobs) => {
            result?;
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
#[derive(Debug)]
pub struct CopiesWhileStreaming {
    pub copier: Copier,
    pub client: Arc<tokio_postgres::Client>,
    pub tables: Vec<TablePattern>,
    pub commands: mpsc::UnboundedSender<PipelineCommand>,
    pub new_tables: mpsc::UnboundedReceiver<String>,
}

impl CopiesWhileStreaming {
    pub async fn run(mut self) -> Result<(), SnapshotError> {
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
        let sources = resolve_tables(&self.client, &self.tables).await?;
        let mut jobs = Vec::with_capacity(requested.len());
        // Per partial resync: the target table, its key columns, the keys to delete.
        let mut deletes: Vec<(String, Vec<String>, Vec<Vec<String>>)> = Vec::new();
        for name in &requested {
            let Some(source) = sources.iter().find(|t| t.display_name() == *name) else {
                tracing::warn!(table = %name, "a table asked to be copied is no longer replicated: skipped");
                continue;
            };
            // Recorded first: if anything below fails, the next start copies it before streaming.
            let generation = self.copier.store.request(&self.client, name).await?;
            handle.copy_pending(name);
            let (ready, reached) = tokio::sync::oneshot::channel();
            self.commands
                .send(PipelineCommand::StartCopy {
                    table: name.clone(),
                    ready,
                })
                .map_err(|_| SnapshotError::PipelineGone {
                    table: name.clone(),
                })?;
            let _ = reached.await;
            let schema = table_schema(&self.client, source).await?;
            let record = match handle.take_partial_resync(name) {
                Some(partial) => {
                    let record = self.plan_partial(name, generation, &partial).await?;
                    let delete_keys = self
                        .still_extra(source, &schema, partial.delete_keys)
                        .await?;
                    deletes.push((
                        target_table_name(&schema.schema, &schema.name),
                        schema
                            .key_columns()
                            .iter()
                            .map(|c| c.name.clone())
                            .collect(),
                        delete_keys,
                    ));
                    record
                }
                None => CopyRecord::Pending { generation },
            };
            jobs.push(CopyJob {
                source: source.clone(),
                schema,
                record,
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
            .map_err(SnapshotError::TargetTables)?;
        for (target, keys, delete_keys) in deletes {
            self.delete_keys(&target, &keys, &delete_keys).await?;
        }
        let snapshot =
            ExportedSnapshot::temporary(&self.copier.conn, &temporary_slot_name(&self.copier.slot))
                .await
                .map_err(SnapshotError::Export)?;
        tracing::info!(tables = ?requested, "copying while streaming");
        self.copier.copy(snapshot, jobs).await
    }
}

impl CopiesWhileStreaming {
    /// Records a partial resync's plan: its boundaries, and every chunk but the asked ones as
    /// done, so [`Copier::copy`] copies only those, into the target as it is (not emptied). A
    /// crash from here on resumes exactly these chunks; before it, the pending record copies
    /// the whole table.
    async fn plan_partial(
        &self,
        name: &str,
        generation: i32,
        partial: &PartialResync,
    ) -> Result<CopyRecord, SnapshotError> {
        let store = &self.copier.store;
        store
            .planned(&self.client, name, generation, 0, &partial.boundaries)
            .await?;
        let total = partial.boundaries.len() as u32 + 1;
        let mut done = HashMap::new();
        for chunk in (0..total).filter(|c| !partial.chunks.contains(c)) {
            store
                .chunk_done(&self.client, name, generation, chunk, 0)
                .await?;
            done.insert(chunk, 0);
        }
        tracing::info!(table = %name, chunks = ?partial.chunks, of = total, deletes = partial.delete_keys.len(), "partial resync planned");
        Ok(CopyRecord::Copying {
            generation,
            rows_estimated: 0,
            boundaries: partial.boundaries.clone(),
            done,
        })
    }

    /// The `delete_keys` (StarRocks text per key column) the source does not hold now. They were
    /// extra when the verify that listed them ran; a row the source inserted under such a key
    /// since, whose insert streamed before this table's stream was held, is in the target
    /// rightly: deleting it would lose it (its chunk is not copied, the stream does not replay
    /// it). Asked while the stream is held, so an insert after this is replayed after the copy.
    /// A key Postgres cannot read as its column's type (a value written straight into the
    /// target) is not in the source.
    async fn still_extra(
        &self,
        source: &SourceTable,
        schema: &TableSchema,
        delete_keys: Vec<Vec<String>>,
    ) -> Result<Vec<Vec<String>>, SnapshotError> {
        use crate::postgres::sql::{quote_ident, quote_literal};
        const KEYS_PER_QUERY: usize = 1_000;
        let columns = schema.key_columns();
        let held_sql = |first: usize, keys: &[Vec<String>]| {
            let rows = keys
                .iter()
                .enumerate()
                .map(|(i, values)| {
                    let casts: Vec<String> = columns
                        .iter()
                        .zip(values)
                        .map(|(c, v)| format!("CAST({} AS {})", quote_literal(v), c.type_name))
                        .collect();
                    format!("({}, {})", first + i, casts.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let aliases: Vec<String> = (0..columns.len()).map(|k| format!("k{k}")).collect();
            let table_columns: Vec<String> = columns
                .iter()
                .map(|c| format!("t.{}", quote_ident(&c.name)))
                .collect();
            let value_columns: Vec<String> = aliases.iter().map(|a| format!("v.{a}")).collect();
            format!(
                "SELECT v.i FROM (VALUES {rows}) AS v(i, {}) WHERE EXISTS \
                 (SELECT 1 FROM {} t WHERE ROW({}) = ROW({}))",
                aliases.join(", "),
                source.quoted(),
                table_columns.join(", "),
                value_columns.join(", ")
            )
        };
        let error = |source| {
            SnapshotError::Reader(ReaderError::Query {
                what: format!(
                    "checking which rows to delete from {} are still extra",
                    schema.name
                ),
                source,
            })
        };
        let mut held = std::collections::HashSet::new();
        for (n, batch) in delete_keys.chunks(KEYS_PER_QUERY).enumerate() {
            let first = n * KEYS_PER_QUERY;
            match self.client.query(&held_sql(first, batch), &[]).await {
                Ok(rows) => held.extend(rows.iter().map(|r| r.get::<_, i32>(0) as usize)),
                // One key Postgres cannot read fails the batch: ask key by key.
                Err(err) if err.as_db_error().is_some() => {
                    for (i, key) in batch.iter().enumerate() {
                        let sql = held_sql(first + i, std::slice::from_ref(key));
                        match self.client.query(&sql, &[]).await {
                            Ok(rows) => {
                                held.extend(rows.iter().map(|r| r.get::<_, i32>(0) as usize))
                            }
                            Err(err) if err.as_db_error().is_some() => {}
                            Err(err) => return Err(error(err)),
                        }
                    }
                }
                Err(err) => return Err(error(err)),
            }
        }
        if !held.is_empty() {
            tracing::info!(table = %source.display_name(), rows = held.len(), "rows listed as extra are in the source again: not deleted");
        }
        Ok(delete_keys
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !held.contains(i))
            .map(|(_, key)| key)
            .collect())
    }

    /// Deletes `delete_keys` (StarRocks text per key column) from `target` in one load, while
    /// the table's stream is held: a row the source inserts again after the held position is
    /// replayed after the copy.
    async fn delete_keys(
        &self,
        target: &str,
        keys: &[String],
        delete_keys: &[Vec<String>],
    ) -> Result<(), SnapshotError> {
        if delete_keys.is_empty() {
            return Ok(());
        }
        let mut body = Vec::from(&b"["[..]);
        for (i, values) in delete_keys.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            let row: serde_json::Map<String, serde_json::Value> = keys
                .iter()
                .zip(values)
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .chain([("__op".to_owned(), serde_json::Value::from(1))])
                .collect();
            body.extend_from_slice(serde_json::Value::Object(row).to_string().as_bytes());
        }
        body.push(b']');
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let batch = LoadBatch {
            table: target.to_owned(),
            label: Label::for_copy(&self.copier.slot, target, run, u32::MAX, 0),
            first_lsn: Lsn(0),
            last_lsn: Lsn(0),
            rows: delete_keys.len() as u64,
            partial_columns: None,
            csv_columns: None,
            body: bytes::Bytes::from(body),
        };
        self.copier
            .sink
            .load(batch)
            .await
            .map_err(|source| SnapshotError::Load {
                table: target.to_owned(),
                chunk: u32::MAX,
                source: Box::new(source),
            })?;
        tracing::info!(table = %target, rows = delete_keys.len(), "deleted rows the source does not have");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sent body's buffer comes back, with its capacity and without a copy, only once nothing
    /// else holds it; at most two sent bodies are watched.
    #[test]
    fn spare_bodies_come_back_once_no_one_else_holds_them() {
        let mut spare = SpareBodies::default();
        let mut buffer = Vec::with_capacity(1 << 20);
        buffer.extend_from_slice(b"row\x1e");
        let address = buffer.as_ptr();
        let body = Bytes::from(buffer);
        let held = body.clone(); // the load, or the curl handle that sent it
        spare.keep(&body);
        drop(body);
        assert!(spare.reclaim().is_none(), "still held");
        drop(held);
        let buffer = spare.reclaim().expect("free again");
        assert_eq!((buffer.as_ptr(), buffer.len()), (address, 0));
        assert!(buffer.capacity() >= 1 << 20);
        assert!(spare.reclaim().is_none(), "given once");

        // Free ones beyond the one given back are let go; held ones stay watched.
        let held: Vec<Bytes> = (0..2u8).map(|n| Bytes::from(vec![n; 8])).collect();
        held.iter().for_each(|body| spare.keep(body));
        (0..2u8).for_each(|n| spare.keep(&Bytes::from(vec![n; 8])));
        assert!(spare.reclaim().is_some());
        assert_eq!(spare.0.len(), 2);
        for n in 0..20u8 {
            spare.keep(&Bytes::from(vec![n; 8]));
        }
        assert_eq!(spare.0.len(), SpareBodies::KEPT);
    }
}
