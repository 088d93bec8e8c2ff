//! `starwal verify`: compares every replicated table's source rows with its StarRocks rows, key
//! range by key range, value by value, in the form the loader writes (see [`canon`]).
//!
//! How it reads:
//! - **Chunks** are the snapshot copy's keyset ranges (`SnapshotReader::plan` on a snapshot
//!   exported just for planning), read by `STARWAL_SNAPSHOT_WORKERS` connections. Each chunk is
//!   read in a `REPEATABLE READ READ ONLY` transaction of its own, held only while its COPY
//!   runs: a verify of a big table never holds back vacuum for longer than one chunk.
//! - **Source rows** go through the loader's own `TableEncoder` (the JSON a Stream Load would
//!   carry), so every documented lossy form is compared in that form.
//! - **Target rows** are asked for by key (`IN` lists, see [`target`]), so no range predicate
//!   has to order keys the same way on both sides (text collations, numeric keys stored as
//!   VARCHAR do not); rows in the target that no source chunk has are found by one pass over
//!   the target's keys (not in `--sample`).
//! - **While `run` streams** every difference is a suspect, not a verdict: the target may be
//!   behind the chunk's snapshot or ahead of it. Suspects are read again from a new source
//!   snapshot whose WAL position `L` is read inside it (every transaction it sees committed
//!   before `L`), then, once the slot's confirmed LSN reached `L` (the agent confirms only what
//!   StarRocks committed), from the target. A row whose target `_starwal_lsn` is past `L`
//!   changed again meanwhile and takes another round (at most [`RECHECK_ROUNDS`]). Only what
//!   still differs is reported. The wait is bounded (`--wait`) and stated in the output.

pub mod canon;
pub mod target;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_stream::StreamExt as _;

use crate::config::Config;
use crate::config_error::ConfigError;
use crate::postgres::catalog::{
    resolve_tables, table_schema, CatalogError, SourceTable, TablePattern,
};
use crate::postgres::snapshot::copy_text::CopyRowParser;
use crate::postgres::snapshot::store::KeyBound;
use crate::postgres::snapshot::{ChunkRange, SnapshotReader};
use crate::postgres::sql::{quote_ident, quote_literal};
use crate::postgres::tls::connect_sql;
use crate::postgres::Lsn;
use crate::schema::TableSchema;
use crate::sink::starrocks::config::{Compression, StarRocksConfig};
use crate::sink::starrocks::encoding::{
    Audit, BodyWriter, ColumnSet, SourceOp, SyncedAt, TableEncoder, ValueTarget,
};
use crate::sink::starrocks::mapping::{target_table_name, TargetType, AUDIT_DELETED, AUDIT_LSN};
use canon::{source_field, Canon};
use target::{quote_name, TargetRow};

/// Rounds of re-checking a row that keeps changing before it is reported as it stands.
pub const RECHECK_ROUNDS: usize = 3;
/// Suspects re-checked per table; more are reported without a re-check (and say so).
pub const MAX_RECHECK_ROWS: usize = 100_000;
/// The default bound on waiting for the agent to confirm past a re-check's snapshot.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Differences listed per table by default (all are counted).
pub const DEFAULT_SHOW: usize = 20;

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// `schema.table` (or the StarRocks table name); empty = every replicated table.
    pub tables: Vec<String>,
    /// Check only this fraction of each table's chunks (0 < f ≤ 1).
    pub sample: Option<f64>,
    /// Differences listed per table.
    pub show: usize,
    /// The bound on waiting for the agent's confirmed LSN.
    pub wait: Duration,
}

impl Default for VerifyOptions {
    fn default() -> VerifyOptions {
        VerifyOptions {
            tables: Vec::new(),
            sample: None,
            show: DEFAULT_SHOW,
            wait: DEFAULT_WAIT,
        }
    }
}

/// Why a verify could not run (differences are not errors: they are the report).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--table {0}: not a replicated table (STARWAL_TABLES); replicated: {1}")]
    UnknownTable(String, String),
    #[error("--sample {0}: expected a fraction in (0, 1]")]
    Sample(f64),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{what}: {detail}")]
    Source { what: String, detail: String },
    #[error("{what}: {detail}")]
    Target { what: String, detail: String },
    #[error("reading {table}: a row COPY sent is not valid: {detail}")]
    Format { table: String, detail: String },
}

impl VerifyError {
    /// Whether the user must fix the command or the settings (exit 2).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            VerifyError::Config(_) | VerifyError::UnknownTable(..) | VerifyError::Sample(_)
        )
    }

    fn source(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> VerifyError {
        let what = what.into();
        move |err| VerifyError::Source {
            what,
            detail: crate::error_text::chain(&err).to_string(),
        }
    }
}

/// How a row differs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// In the source, not in the target (or soft-deleted there).
    Missing,
    /// In the target, not in the source.
    Extra,
    /// In both, with these columns different.
    Different,
    /// The source row holds a value the loader refuses (the table is parked or stopped).
    Unloadable,
    /// Not compared: the row changed at the source between the last two re-checks and its
    /// target row is newer than the last one (a hot row the agent keeps loading). Listed, not
    /// counted as a difference; a quieter moment compares it.
    Changing,
}

/// One differing row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowDiff {
    pub kind: DiffKind,
    /// `col=value, …` in key order.
    pub key: String,
    /// The columns that differ (Different), or the loader's error (Unloadable).
    pub columns: Vec<String>,
    #[serde(skip)]
    key_values: Vec<Canon>,
    /// The key as Postgres reads it back (`CAST(text AS type)`), for re-reading the source.
    #[serde(skip)]
    pg_key: Vec<String>,
    #[serde(skip)]
    target_lsn: Option<u64>,
    /// The chunk the source row was read in (none for rows only the target has).
    #[serde(skip)]
    chunk: Option<u32>,
}

/// One table's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableReport {
    pub table: String,
    pub target: String,
    pub rows_compared: u64,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
    pub unloadable: u64,
    /// Rows that kept changing through every re-check (not differences; see
    /// [`DiffKind::Changing`]).
    pub changing: u64,
    /// Chunks checked of the table's chunks.
    pub chunks_checked: u64,
    pub chunks: u64,
    /// Whether extra rows were looked for (not in a sample).
    pub extra_checked: bool,
    /// Differences re-checked after the first pass (most turn out to be the stream in flight).
    pub rechecked: u64,
    /// The first differences (`--show`).
    pub differences: Vec<RowDiff>,
    pub seconds: f64,
    /// What `--repair` copies and deletes: the chunks of every row that differs, the keys of
    /// rows only the target has; `None` when a difference's chunk is not known (the whole
    /// table is copied then).
    #[serde(skip)]
    pub repair: Option<crate::state::PartialResync>,
}

impl TableReport {
    pub fn differs(&self) -> bool {
        self.missing + self.extra + self.different + self.unloadable > 0
    }
}

/// The whole result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub tables: Vec<TableReport>,
    /// Whether an agent was streaming from the slot when the re-check began.
    pub agent_streaming: Option<bool>,
    /// The LSN the last re-check waited for, and whether the agent confirmed it in time.
    pub recheck_lsn: Option<String>,
    pub recheck_confirmed: Option<bool>,
    pub waited_seconds: f64,
    pub wait_bound_seconds: f64,
    pub seconds: f64,
}

impl VerifyReport {
    pub fn differs(&self) -> bool {
        self.tables.iter().any(TableReport::differs)
    }
}

/// Chunks done / planned, for a progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    pub chunks_total: AtomicU64,
    pub chunks_done: AtomicU64,
    pub rows: AtomicU64,
}

/// A table as the verify needs it.
#[derive(Debug)]
pub struct TableCtx {
    pub source: SourceTable,
    pub name: String,
    pub target: String,
    pub schema: TableSchema,
    encoder: TableEncoder,
    /// Each column's StarRocks type (what the loader writes into).
    pub types: Vec<TargetType>,
    /// Positions of the key columns in `schema.columns`, in key order.
    pub key_idx: Vec<usize>,
    /// Source column positions by name, for the encoder's JSON.
    by_name: HashMap<String, usize>,
    /// `SELECT` list for the target: the source columns, `_starwal_lsn`, `_starwal_deleted`.
    pub select_list: String,
}

impl TableCtx {
    fn new(source: SourceTable, schema: TableSchema, sr: &StarRocksConfig) -> TableCtx {
        let types = schema
            .columns
            .iter()
            .map(|c| {
                ValueTarget::of_column(c, sr.type_mapping)
                    .data_type()
                    .clone()
            })
            .collect();
        let key_idx = {
            let mut keys: Vec<usize> = (0..schema.columns.len())
                .filter(|&i| schema.columns[i].is_key())
                .collect();
            keys.sort_by_key(|&i| schema.columns[i].key_position);
            keys
        };
        let by_name = schema
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let select_list = schema
            .columns
            .iter()
            .map(|c| quote_name(&c.name))
            .chain([quote_name(AUDIT_LSN), quote_name(AUDIT_DELETED)])
            .collect::<Vec<_>>()
            .join(", ");
        TableCtx {
            name: source.display_name(),
            target: target_table_name(&schema.schema, &schema.name),
            encoder: TableEncoder::new(&schema, sr.delete_mode, sr.type_mapping),
            source,
            schema,
            types,
            key_idx,
            by_name,
            select_list,
        }
    }

    /// A target row from the text of `SELECT <select_list>`.
    pub fn target_row(&self, mut row: Vec<Option<String>>) -> TargetRow {
        let deleted = row.pop().flatten();
        let lsn = row.pop().flatten();
        let values: Vec<Canon> = row
            .iter()
            .zip(&self.types)
            .map(|(text, data_type)| canon::target_field(data_type, text.as_deref()))
            .collect();
        TargetRow {
            key: self
                .key_idx
                .iter()
                .map(|&i| values.get(i).cloned().flatten())
                .collect(),
            values,
            lsn: lsn.and_then(|l| l.trim().parse().ok()),
            deleted: target::is_true(deleted.as_deref()),
        }
    }

    fn key_text(&self, key: &[Canon]) -> String {
        self.key_idx
            .iter()
            .zip(key)
            .map(|(&i, value)| {
                let name = &self.schema.columns[i].name;
                match value.as_deref() {
                    None => format!("{name}=NULL"),
                    // Quoted and escaped when plain text would not read back: control
                    // characters, or the `, ` that separates key columns.
                    Some(v) if v.chars().any(char::is_control) || v.contains(", ") => {
                        format!("{name}={v:?}")
                    }
                    Some(v) => format!("{name}={v}"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `ROW(k1, k2) IN (ROW(CAST('…' AS t1), …), …)` for Postgres.
    fn pg_key_condition(&self, keys: &[&Vec<String>]) -> String {
        let columns = self
            .key_idx
            .iter()
            .map(|&i| quote_ident(&self.schema.columns[i].name))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = keys
            .iter()
            .map(|key| {
                let values = self
                    .key_idx
                    .iter()
                    .zip(key.iter())
                    .map(|(&i, text)| {
                        format!(
                            "CAST({} AS {})",
                            quote_literal(text),
                            self.schema.columns[i].type_name
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("ROW({values})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!("ROW({columns}) IN ({rows})")
    }

    fn copy_sql(&self, condition: &str) -> String {
        let columns = self
            .schema
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "COPY (SELECT {columns} FROM {} WHERE {condition}) TO STDOUT",
            self.source.quoted()
        )
    }
}

/// A source row in the comparison form.
#[derive(Debug)]
struct SourceRow {
    values: Vec<Canon>,
    pg_key: Vec<String>,
    /// The loader refuses the row: its error.
    unloadable: Option<String>,
}

/// Source rows of one read, by key.
type SourceRows = HashMap<Vec<Canon>, SourceRow>;

/// Source rows compared per target query round: bounds a worker's memory whatever the chunk
/// size.
const ROWS_PER_BATCH: usize = 10_000;

/// A COPY being read, with the part of a row its last message ended in.
struct Copy {
    stream: std::pin::Pin<Box<tokio_postgres::CopyOutStream>>,
    carry: Vec<u8>,
}

/// A key's 128-bit fingerprint: the extra-row pass keeps one per source row (16 bytes instead
/// of the key's text); two keys share one with probability ~n²/2¹²⁹.
fn fingerprint(key: &[Canon]) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut hasher);
        key.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// Reads `COPY … TO STDOUT` text rows through the loader's encoder into the comparison form.
struct RowReader {
    parser: CopyRowParser,
    writer: BodyWriter,
    present: ColumnSet,
    audit: Audit,
}

impl RowReader {
    fn new() -> RowReader {
        RowReader {
            parser: CopyRowParser::default(),
            writer: BodyWriter::new(),
            present: ColumnSet::default(),
            audit: Audit {
                op: SourceOp::Snapshot,
                lsn: Lsn(0),
                synced_at: SyncedAt::now(),
            },
        }
    }

    async fn read(
        &mut self,
        client: &tokio_postgres::Client,
        ctx: &TableCtx,
        sql: &str,
        rows: &mut SourceRows,
    ) -> Result<(), VerifyError> {
        let mut copy = self.open(client, ctx, sql).await?;
        while self.next_batch(ctx, &mut copy, rows, usize::MAX).await? {}
        Ok(())
    }

    async fn open(
        &mut self,
        client: &tokio_postgres::Client,
        ctx: &TableCtx,
        sql: &str,
    ) -> Result<Copy, VerifyError> {
        let stream = client
            .copy_out(sql)
            .await
            .map_err(VerifyError::source(format!("reading {}", ctx.name)))?;
        Ok(Copy {
            stream: Box::pin(stream),
            carry: Vec::new(),
        })
    }

    /// Reads rows of `copy` into `rows` until it holds `limit` rows or the copy ends; returns
    /// whether more may follow.
    async fn next_batch(
        &mut self,
        ctx: &TableCtx,
        copy: &mut Copy,
        rows: &mut SourceRows,
        limit: usize,
    ) -> Result<bool, VerifyError> {
        while rows.len() < limit {
            let Some(data) = copy.stream.next().await else {
                if !copy.carry.is_empty() {
                    return Err(VerifyError::Format {
                        table: ctx.name.clone(),
                        detail: "the copy ended inside a row".into(),
                    });
                }
                return Ok(false);
            };
            let data = data.map_err(VerifyError::source(format!("reading {}", ctx.name)))?;
            let mut rest = &data[..];
            while let Some(end) = memchr::memchr(b'\n', rest) {
                if copy.carry.is_empty() {
                    self.row(ctx, &rest[..end], rows)?;
                } else {
                    copy.carry.extend_from_slice(&rest[..end]);
                    let line = std::mem::take(&mut copy.carry);
                    self.row(ctx, &line, rows)?;
                }
                rest = &rest[end + 1..];
            }
            copy.carry.extend_from_slice(rest);
        }
        Ok(true)
    }

    fn row(
        &mut self,
        ctx: &TableCtx,
        line: &[u8],
        rows: &mut SourceRows,
    ) -> Result<(), VerifyError> {
        let columns = ctx.schema.columns.len();
        self.parser
            .parse(line, columns)
            .map_err(|err| VerifyError::Format {
                table: ctx.name.clone(),
                detail: err.to_string(),
            })?;
        let texts: Vec<Option<String>> = self
            .parser
            .values(line)
            .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect();
        let pg_key: Vec<String> = ctx
            .key_idx
            .iter()
            .map(|&i| texts[i].clone().unwrap_or_default())
            .collect();
        let written = ctx.encoder.write_snapshot_row(
            &mut self.writer,
            self.parser.values(line),
            &self.audit,
            &mut self.present,
        );
        let (values, unloadable) = match written {
            Ok(_) => {
                let body =
                    self.writer
                        .finish(Compression::None)
                        .map_err(|err| VerifyError::Format {
                            table: ctx.name.clone(),
                            detail: err.to_string(),
                        })?;
                // `[{…}]`: one row.
                let object = body.get(1..body.len().saturating_sub(1)).unwrap_or(&[]);
                let mut values: Vec<Canon> = vec![None; columns];
                for (name, raw) in canon::split_object(object).unwrap_or_default() {
                    if let Some(&i) = ctx.by_name.get(&name) {
                        values[i] = source_field(&ctx.types[i], raw);
                    }
                }
                (values, None)
            }
            Err(err) => {
                // The key's own text stands in for its comparison form.
                let values = texts.clone();
                (values, Some(err.to_string()))
            }
        };
        let key: Vec<Canon> = ctx.key_idx.iter().map(|&i| values[i].clone()).collect();
        rows.insert(
            key,
            SourceRow {
                values,
                pg_key,
                unloadable,
            },
        );
        Ok(())
    }
}

/// Compares source rows with the target rows of the same keys. Returns the differences and the
/// number of source rows found in the target.
fn compare(ctx: &TableCtx, source: &SourceRows, target: Vec<TargetRow>) -> Vec<RowDiff> {
    let mut diffs = Vec::new();
    let mut seen: HashSet<Vec<Canon>> = HashSet::with_capacity(target.len());
    for row in target {
        let Some(src) = source.get(&row.key) else {
            continue;
        };
        seen.insert(row.key.clone());
        if let Some(error) = &src.unloadable {
            diffs.push(diff(
                ctx,
                DiffKind::Unloadable,
                &row.key,
                src,
                vec![error.clone()],
                row.lsn,
            ));
            continue;
        }
        if row.deleted {
            diffs.push(diff(
                ctx,
                DiffKind::Missing,
                &row.key,
                src,
                Vec::new(),
                row.lsn,
            ));
            continue;
        }
        let columns: Vec<String> = src
            .values
            .iter()
            .zip(&row.values)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| ctx.schema.columns[i].name.clone())
            .collect();
        if !columns.is_empty() {
            diffs.push(diff(
                ctx,
                DiffKind::Different,
                &row.key,
                src,
                columns,
                row.lsn,
            ));
        }
    }
    for (key, src) in source {
        if !seen.contains(key) {
            let (kind, columns) = match &src.unloadable {
                Some(error) => (DiffKind::Unloadable, vec![error.clone()]),
                None => (DiffKind::Missing, Vec::new()),
            };
            diffs.push(diff(ctx, kind, key, src, columns, None));
        }
    }
    diffs
}

fn diff(
    ctx: &TableCtx,
    kind: DiffKind,
    key: &[Canon],
    src: &SourceRow,
    columns: Vec<String>,
    target_lsn: Option<u64>,
) -> RowDiff {
    RowDiff {
        kind,
        key: ctx.key_text(key),
        columns,
        key_values: key.to_vec(),
        pg_key: src.pg_key.clone(),
        target_lsn,
        chunk: None,
    }
}

/// Per-table tallies while chunks run.
#[derive(Debug, Default)]
struct Tally {
    rows: u64,
    chunks: u64,
    diffs: Vec<RowDiff>,
    keys: HashSet<u128>,
    /// Seconds from the start until the table's last chunk (and key pass) ended.
    seconds: f64,
}

#[derive(Debug)]
struct ChunkTask {
    table: usize,
    chunk: usize,
}

/// Runs a verify. `progress` is updated as chunks finish.
pub async fn verify(
    config: &Config,
    options: &VerifyOptions,
    progress: Arc<Progress>,
) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    if let Some(f) = options.sample {
        if !(f > 0.0 && f <= 1.0) {
            return Err(VerifyError::Sample(f));
        }
    }
    let sr = config.require_starrocks()?.clone();
    let conn = &config.postgres.conn;
    let planner = connect_sql(conn).await.map_err(|err| VerifyError::Source {
        what: "connecting to Postgres".into(),
        detail: err.to_string(),
    })?;
    let sources = resolve_tables(&planner, &config.postgres.tables).await?;
    let mut chosen = Vec::new();
    for wanted in &options.tables {
        // As written (`schema.table` as `status` prints it, or the StarRocks name), else with
        // STARWAL_TABLES' rules: `public."Orders"` is the table `Orders`, `Public.Orders` is
        // `public.orders`.
        let parsed = match TablePattern::parse(wanted) {
            Ok(TablePattern::Table { schema, name }) => Some((schema, name)),
            _ => None,
        };
        let found = sources
            .iter()
            .find(|t| {
                t.display_name() == *wanted || target_table_name(&t.schema, &t.name) == *wanted
            })
            .or_else(|| {
                sources.iter().find(|t| {
                    parsed
                        .as_ref()
                        .is_some_and(|(schema, name)| *schema == t.schema && *name == t.name)
                })
            });
        match found {
            Some(t) => chosen.push(t.clone()),
            None => {
                return Err(VerifyError::UnknownTable(
                    wanted.clone(),
                    sources
                        .iter()
                        .map(SourceTable::display_name)
                        .collect::<Vec<_>>()
                        .join(", "),
                ))
            }
        }
    }
    if options.tables.is_empty() {
        chosen = sources;
    }
    chosen.sort_by_key(SourceTable::display_name);
    // By name, not display text: `"a.b".c` and `a."b.c"` print alike and are two tables.
    chosen.dedup_by(|a, b| a.schema == b.schema && a.name == b.name);
    let mut tables = Vec::with_capacity(chosen.len());
    for source in chosen {
        let schema = table_schema(&planner, &source).await?;
        let ctx = TableCtx::new(source, schema, &sr);
        if ctx.key_idx.is_empty() {
            // Rows are compared by key; `run` does not load such a table either.
            return Err(VerifyError::Source {
                what: format!("verifying {}", ctx.name),
                detail: "the table has no primary key or replica identity index, so its rows \
                         have no key to compare by (REPLICA IDENTITY FULL without a primary key \
                         is tailed, not loaded)"
                    .into(),
            });
        }
        tables.push(ctx);
    }

    // Plan on one snapshot exported for planning only, released right after.
    planner
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(VerifyError::source("starting the planning transaction"))?;
    let name: String = planner
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(VerifyError::source("exporting a snapshot to plan chunks"))?
        .get(0);
    let reader = SnapshotReader::open(conn, &name)
        .await
        .map_err(|err| VerifyError::Source {
            what: "planning chunks".into(),
            detail: err.to_string(),
        })?;
    let mut plans: Vec<(Vec<KeyBound>, Vec<usize>)> = Vec::with_capacity(tables.len());
    let mut seed = started.elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
    for ctx in &tables {
        let (_, boundaries) = reader
            .plan(&ctx.source, &ctx.schema, config.engine.snapshot.chunk_rows)
            .await
            .map_err(|err| VerifyError::Source {
                what: format!("planning the chunks of {}", ctx.name),
                detail: err.to_string(),
            })?;
        let total = boundaries.len() + 1;
        let chunks: Vec<usize> = match options.sample {
            None => (0..total).collect(),
            Some(fraction) => {
                let mut picked: Vec<usize> = (0..total)
                    .filter(|_| {
                        seed = xorshift(seed);
                        (seed >> 11) as f64 / (1u64 << 53) as f64 <= fraction
                    })
                    .collect();
                if picked.is_empty() {
                    seed = xorshift(seed);
                    picked.push((seed % total as u64) as usize);
                }
                picked
            }
        };
        progress
            .chunks_total
            .fetch_add(chunks.len() as u64, Ordering::Relaxed);
        plans.push((boundaries, chunks));
    }
    drop(reader);
    planner
        .batch_execute("COMMIT")
        .await
        .map_err(VerifyError::source("ending the planning transaction"))?;

    // A table whose every chunk is read gets the extra-row pass, sample or not: a sample of a
    // one-chunk table (or `--sample 1`) reads the whole table and must not call it equal
    // without looking for rows only the target has.
    let full: Arc<Vec<bool>> = Arc::new(
        plans
            .iter()
            .map(|(boundaries, chunks)| chunks.len() == boundaries.len() + 1)
            .collect(),
    );
    let tables = Arc::new(tables);
    let plans = Arc::new(plans);
    let tallies: Arc<Vec<Mutex<Tally>>> = Arc::new(
        tables
            .iter()
            .map(|_| Mutex::new(Tally::default()))
            .collect(),
    );
    let queue: VecDeque<ChunkTask> = plans
        .iter()
        .enumerate()
        .flat_map(|(table, (_, chunks))| {
            chunks.iter().map(move |&chunk| ChunkTask { table, chunk })
        })
        .collect();
    let queue = Arc::new(Mutex::new(queue));
    let workers = config.engine.snapshot.workers.max(1);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let client = connect_sql(conn).await.map_err(|err| VerifyError::Source {
            what: "connecting to Postgres".into(),
            detail: err.to_string(),
        })?;
        let mysql = target::connect(&sr).await?;
        let (tables, plans, tallies, queue, progress) = (
            tables.clone(),
            plans.clone(),
            tallies.clone(),
            queue.clone(),
            progress.clone(),
        );
        let database = sr.database.clone();
        let full = full.clone();
        set.spawn(async move {
            let mut mysql = mysql;
            let mut reader = RowReader::new();
            loop {
                let task = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(task) = task else {
                    mysql.disconnect().await.ok();
                    return Ok::<(), VerifyError>(());
                };
                let ctx = &tables[task.table];
                let range = ChunkRange::of(&plans[task.table].0, task.chunk);
                let sql = ctx.copy_sql(&range.condition(&ctx.schema));
                // One short snapshot per chunk: held only while this chunk is read.
                client
                    .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(VerifyError::source(format!("reading {}", ctx.name)))?;
                let mut copy = reader.open(&client, ctx, &sql).await?;
                let mut rows = SourceRows::new();
                let (mut count, mut diffs, mut keys) = (0u64, Vec::new(), Vec::new());
                loop {
                    let more = reader
                        .next_batch(ctx, &mut copy, &mut rows, ROWS_PER_BATCH)
                        .await?;
                    let batch: Vec<&Vec<Canon>> = rows.keys().collect();
                    let found = target::rows_by_key(&mut mysql, &database, ctx, &batch).await?;
                    diffs.extend(compare(ctx, &rows, found).into_iter().map(|mut d| {
                        d.chunk = Some(task.chunk as u32);
                        d
                    }));
                    count += rows.len() as u64;
                    progress
                        .rows
                        .fetch_add(rows.len() as u64, Ordering::Relaxed);
                    if full[task.table] {
                        keys.extend(rows.keys().map(|k| fingerprint(k)));
                    }
                    rows.clear();
                    if !more {
                        break;
                    }
                }
                drop(copy);
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(VerifyError::source(format!("reading {}", ctx.name)))?;
                progress.chunks_done.fetch_add(1, Ordering::Relaxed);
                let mut tally = tallies[task.table]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                tally.rows += count;
                tally.chunks += 1;
                tally.seconds = started.elapsed().as_secs_f64();
                tally.diffs.extend(diffs);
                tally.keys.extend(keys);
            }
        });
    }
    while let Some(result) = set.join_next().await {
        result.map_err(|err| VerifyError::Source {
            what: "a verify worker failed".into(),
            detail: err.to_string(),
        })??;
    }
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        rows = progress.rows.load(Ordering::Relaxed),
        "verify: chunks compared"
    );
    // Rows in the target that no source chunk had.
    let mut mysql = target::connect(&sr).await?;
    let mut tallies: Vec<Tally> = Arc::try_unwrap(tallies)
        .map(|v| {
            v.into_iter()
                .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
                .collect()
        })
        .unwrap_or_default();
    for ((ctx, tally), _) in tables
        .iter()
        .zip(&mut tallies)
        .zip(full.iter())
        .filter(|(_, full)| **full)
    {
        let source_keys = &tally.keys;
        let mut extras = Vec::new();
        target::for_each_key(&mut mysql, &sr.database, ctx, |row| {
            if !row.deleted && !source_keys.contains(&fingerprint(&row.key)) {
                extras.push(RowDiff {
                    kind: DiffKind::Extra,
                    key: ctx.key_text(&row.key),
                    columns: Vec::new(),
                    pg_key: row
                        .key
                        .iter()
                        .map(|v| v.clone().unwrap_or_default())
                        .collect(),
                    key_values: row.key,
                    target_lsn: row.lsn,
                    chunk: None,
                });
            }
        })
        .await?;
        tally.diffs.extend(extras);
        tally.keys = HashSet::new();
        tally.seconds = started.elapsed().as_secs_f64();
    }

    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "verify: extra rows looked for"
    );
    // Re-check the suspects after the agent confirmed past a newer snapshot.
    let mut report = VerifyReport {
        tables: Vec::new(),
        agent_streaming: None,
        recheck_lsn: None,
        recheck_confirmed: None,
        waited_seconds: 0.0,
        wait_bound_seconds: options.wait.as_secs_f64(),
        seconds: 0.0,
    };
    let mut rechecked = vec![0u64; tables.len()];
    let deadline = Instant::now() + options.wait;
    // Per table: the previous re-check's source rows, and the keys whose source row changed
    // between the last two re-checks (evidence that a row is hot, not wrong: a target row
    // merely stamped with a high `_starwal_lsn` does not move the source).
    let mut previous: Vec<Option<SourceRows>> = tables.iter().map(|_| None).collect();
    let mut moved: Vec<HashSet<Vec<Canon>>> = tables.iter().map(|_| HashSet::new()).collect();
    let mut last: Option<(Lsn, bool)> = None;
    for _round in 0..RECHECK_ROUNDS {
        if tallies.iter().all(|t| t.diffs.is_empty()) {
            break;
        }
        let client = connect_sql(conn).await.map_err(|err| VerifyError::Source {
            what: "connecting to Postgres".into(),
            detail: err.to_string(),
        })?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(VerifyError::source("starting a re-check"))?;
        // Read inside the snapshot: everything the snapshot sees committed before it.
        let lsn_text: String = client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(VerifyError::source("reading the WAL position"))?
            .get(0);
        let lsn: Lsn = lsn_text.parse().unwrap_or(Lsn(0));
        let mut reader = RowReader::new();
        let mut fresh: Vec<SourceRows> = Vec::with_capacity(tables.len());
        for (ctx, tally) in tables.iter().zip(&tallies) {
            let mut rows = SourceRows::new();
            let suspects: Vec<&Vec<String>> = tally
                .diffs
                .iter()
                .take(MAX_RECHECK_ROWS)
                .map(|d| &d.pg_key)
                .collect();
            for batch in suspects.chunks(target::KEYS_PER_QUERY) {
                let sql = ctx.copy_sql(&ctx.pg_key_condition(batch));
                reader.read(&client, ctx, &sql, &mut rows).await?;
            }
            fresh.push(rows);
        }
        for (i, rows) in fresh.iter().enumerate() {
            moved[i] = match &previous[i] {
                None => HashSet::new(),
                Some(before) => rows
                    .iter()
                    .filter(|(k, r)| before.get(*k).is_none_or(|b| b.values != r.values))
                    .map(|(k, _)| k.clone())
                    .chain(before.keys().filter(|k| !rows.contains_key(*k)).cloned())
                    .collect(),
            };
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(VerifyError::source("ending a re-check"))?;
        let (streaming, confirmed, waited) =
            wait_for_confirm(&client, &config.postgres.slot, lsn, deadline).await?;
        report.agent_streaming = Some(streaming);
        report.recheck_lsn = Some(lsn.to_string());
        report.recheck_confirmed = Some(confirmed);
        report.waited_seconds += waited;
        let mut again = false;
        for (i, ctx) in tables.iter().enumerate() {
            let tally = &mut tallies[i];
            if tally.diffs.is_empty() {
                continue;
            }
            let overflow = tally
                .diffs
                .split_off(tally.diffs.len().min(MAX_RECHECK_ROWS));
            rechecked[i] += tally.diffs.len() as u64;
            let mut keys: Vec<&Vec<Canon>> = tally.diffs.iter().map(|d| &d.key_values).collect();
            // Keys the source has now (a row may have moved into the set under a new value).
            keys.extend(fresh[i].keys());
            keys.sort();
            keys.dedup();
            let found = target::rows_by_key(&mut mysql, &sr.database, ctx, &keys).await?;
            let target_keys: HashSet<Vec<Canon>> = found
                .iter()
                .filter(|r| !r.deleted)
                .map(|r| r.key.clone())
                .collect();
            let old_extras: Vec<RowDiff> = tally
                .diffs
                .iter()
                .filter(|d| {
                    !fresh[i].contains_key(&d.key_values) && target_keys.contains(&d.key_values)
                })
                .cloned()
                .collect();
            let chunks: HashMap<&Vec<Canon>, Option<u32>> = tally
                .diffs
                .iter()
                .map(|d| (&d.key_values, d.chunk))
                .collect();
            let mut diffs: Vec<RowDiff> = compare(ctx, &fresh[i], found.clone())
                .into_iter()
                .map(|mut d| {
                    d.chunk = chunks.get(&d.key_values).copied().flatten();
                    d
                })
                .collect();
            for mut extra in old_extras {
                extra.kind = DiffKind::Extra;
                extra.target_lsn = found
                    .iter()
                    .find(|r| r.key == extra.key_values)
                    .and_then(|r| r.lsn);
                diffs.push(extra);
            }
            if streaming
                && diffs
                    .iter()
                    .any(|d| d.target_lsn.is_some_and(|l| l > lsn.0))
            {
                again = true;
            }
            // A row missing from the target may have been deleted at the source after `L`
            // (and that delete loaded): it has no `_starwal_lsn` to tell. It stands only if the
            // source still holds it as the re-check's snapshot did.
            if streaming && !again {
                let missing: Vec<&Vec<String>> = diffs
                    .iter()
                    .filter(|d| d.kind == DiffKind::Missing)
                    .map(|d| &d.pg_key)
                    .collect();
                let mut now = SourceRows::new();
                for batch in missing.chunks(target::KEYS_PER_QUERY) {
                    let sql = ctx.copy_sql(&ctx.pg_key_condition(batch));
                    reader.read(&client, ctx, &sql, &mut now).await?;
                }
                let moved = diffs
                    .iter()
                    .filter(|d| d.kind == DiffKind::Missing)
                    .any(
                        |d| match (now.get(&d.key_values), fresh[i].get(&d.key_values)) {
                            (Some(a), Some(b)) => a.values != b.values,
                            _ => true,
                        },
                    );
                if moved {
                    again = true;
                }
            }
            diffs.extend(overflow);
            tally.diffs = diffs;
        }
        last = Some((lsn, streaming));
        previous = fresh.into_iter().map(Some).collect();
        if !again || !streaming || Instant::now() >= deadline {
            break;
        }
    }
    mysql.disconnect().await.ok();
    // What still differs only because it keeps changing is not a difference found.
    if let Some((lsn, true)) = last {
        for (tally, moved) in tallies.iter_mut().zip(&moved) {
            for d in &mut tally.diffs {
                if matches!(d.kind, DiffKind::Different | DiffKind::Extra)
                    && d.target_lsn.is_some_and(|l| l > lsn.0)
                    && moved.contains(&d.key_values)
                {
                    d.kind = DiffKind::Changing;
                }
            }
        }
    }

    for (i, (ctx, tally)) in tables.iter().zip(tallies).enumerate() {
        let count = |kind: DiffKind| tally.diffs.iter().filter(|d| d.kind == kind).count() as u64;
        let repair = repair_plan(&plans[i].0, &tally.diffs);
        let mut differences = tally.diffs.clone();
        differences.sort_by(|a, b| a.key.cmp(&b.key));
        differences.truncate(options.show);
        report.tables.push(TableReport {
            table: ctx.name.clone(),
            target: ctx.target.clone(),
            rows_compared: tally.rows,
            missing: count(DiffKind::Missing),
            extra: count(DiffKind::Extra),
            different: count(DiffKind::Different),
            unloadable: count(DiffKind::Unloadable),
            changing: count(DiffKind::Changing),
            chunks_checked: tally.chunks,
            chunks: plans[i].0.len() as u64 + 1,
            extra_checked: full[i],
            rechecked: rechecked[i],
            differences,
            seconds: tally.seconds,
            repair,
        });
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The partial resync that repairs `diffs`: their chunks, and the keys of rows only the target
/// has; `None` when a row the source has is in no known chunk.
fn repair_plan(boundaries: &[KeyBound], diffs: &[RowDiff]) -> Option<crate::state::PartialResync> {
    let mut chunks = Vec::new();
    let mut delete_keys = Vec::new();
    for d in diffs {
        match d.kind {
            DiffKind::Extra => delete_keys.push(
                d.key_values
                    .iter()
                    .map(|v| v.clone().unwrap_or_default())
                    .collect(),
            ),
            // Copying its chunk would stop on the same value, as the loader did; a changing
            // row is being loaded.
            DiffKind::Unloadable | DiffKind::Changing => {}
            DiffKind::Missing | DiffKind::Different => chunks.push(d.chunk?),
        }
    }
    chunks.sort_unstable();
    chunks.dedup();
    Some(crate::state::PartialResync {
        boundaries: boundaries.to_vec(),
        chunks,
        delete_keys,
    })
}

/// Waits until the slot's confirmed LSN reaches `lsn` or `deadline` passes. Returns whether an
/// agent streams from the slot, whether it confirmed `lsn`, and the seconds waited. Without an
/// agent nothing will move: no wait.
async fn wait_for_confirm(
    client: &tokio_postgres::Client,
    slot: &str,
    lsn: Lsn,
    deadline: Instant,
) -> Result<(bool, bool, f64), VerifyError> {
    let started = Instant::now();
    loop {
        let row = client
            .query_opt(
                "SELECT confirmed_flush_lsn::text, active FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(VerifyError::source(format!("reading slot `{slot}`")))?;
        let Some(row) = row else {
            return Ok((false, false, started.elapsed().as_secs_f64()));
        };
        let confirmed: Option<String> = row.get(0);
        let active: bool = row.get(1);
        let confirmed = confirmed
            .and_then(|c| c.parse::<Lsn>().ok())
            .is_some_and(|c| c >= lsn);
        if confirmed || !active || Instant::now() >= deadline {
            return Ok((active, confirmed, started.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn xorshift(mut x: u64) -> u64 {
    if x == 0 {
        x = 0x9E37_79B9_7F4A_7C15;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The report as text lines (what `starwal verify` prints).
pub fn report_text(report: &VerifyReport) -> String {
    let mut out = String::new();
    for t in &report.tables {
        let sample = if t.chunks_checked < t.chunks {
            format!(" ({} of {} chunks sampled)", t.chunks_checked, t.chunks)
        } else {
            String::new()
        };
        let changing = if t.changing > 0 {
            format!(
                "; {} rows changed at the source through every re-check, not compared",
                t.changing
            )
        } else {
            String::new()
        };
        if t.differs() {
            out.push_str(&format!(
                "DIFF {}: {} rows compared{sample}: {} missing in target, {} extra in target{}, {} different{}{} ({:.1} s)\n",
                t.table,
                t.rows_compared,
                t.missing,
                t.extra,
                if t.extra_checked { "" } else { " (not looked for in a sample)" },
                t.different,
                if t.unloadable > 0 { format!(", {} the loader refuses", t.unloadable) } else { String::new() },
                changing,
                t.seconds
            ));
            for d in &t.differences {
                let what = match d.kind {
                    DiffKind::Missing => "missing   ".to_owned(),
                    DiffKind::Extra => "extra     ".to_owned(),
                    DiffKind::Different => "different ".to_owned(),
                    DiffKind::Unloadable => "unloadable".to_owned(),
                    DiffKind::Changing => "changing  ".to_owned(),
                };
                if d.columns.is_empty() {
                    out.push_str(&format!("  {what} {}\n", d.key));
                } else {
                    out.push_str(&format!("  {what} {}: {}\n", d.key, d.columns.join(", ")));
                }
            }
            let listed = t.differences.len() as u64;
            let total = t.missing + t.extra + t.different + t.unloadable + t.changing;
            if listed < total {
                out.push_str(&format!(
                    "  … and {} more (--show N lists more)\n",
                    total - listed
                ));
            }
        } else {
            out.push_str(&format!(
                "ok   {}: {} rows compared{sample}, equal{}{changing} ({:.1} s)\n",
                t.table,
                t.rows_compared,
                if t.extra_checked {
                    ""
                } else {
                    " (extra rows not looked for in a sample)"
                },
                t.seconds
            ));
            for d in &t.differences {
                out.push_str(&format!("  changing   {}\n", d.key));
            }
        }
    }
    if let Some(lsn) = &report.recheck_lsn {
        let agent = match report.agent_streaming {
            Some(true) => "",
            _ => " (no agent streams from the slot: not waited for)",
        };
        out.push_str(&format!(
            "re-checked the differences at LSN {lsn}{agent}: agent confirmed it: {}, waited {:.1} s of at most {:.0} s\n",
            if report.recheck_confirmed == Some(true) { "yes" } else { "no" },
            report.waited_seconds,
            report.wait_bound_seconds
        ));
    }
    let differing = report.tables.iter().filter(|t| t.differs()).count();
    if differing == 0 {
        out.push_str(&format!(
            "equal: {} tables ({:.1} s)\n",
            report.tables.len(),
            report.seconds
        ));
    } else {
        out.push_str(&format!(
            "differences in {differing} of {} tables ({:.1} s)\n",
            report.tables.len(),
            report.seconds
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_never_sticks_at_zero() {
        assert_ne!(xorshift(0), 0);
        assert_ne!(xorshift(1), xorshift(2));
    }
}
