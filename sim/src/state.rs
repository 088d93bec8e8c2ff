//! The running sim's shared state: catalog, transaction book, BE stream contexts, counters and
//! the publish queue, behind one lock — plus the commit and publish rules that tie them together
//! (reference §3 `Success`/`Publish Timeout`, checklist "Visibility").
//!
//! Owns the invariant that rows become visible only at commit: a load's batch is applied to the
//! catalog in the same critical section that marks its txn VISIBLE and counts it. A commit with a
//! delayed publish (injected `Publish Timeout`) is recorded COMMITTED and queued; later commits to
//! the same table queue behind it, so versions become visible in commit order. The lock is never
//! held across an `.await`. Persistence (`--data-dir`) snapshots after every committed change.
//! It does not speak HTTP.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::catalog::{Catalog, CatalogError, ChangeBatch, PreparedBatch, Value};
use crate::counters::Counters;
use crate::faults::Faults;
use crate::http::BodyBuffers;
use crate::load::options::SizeLimits;
use crate::persist;
use crate::txn::multi::MultiTasks;
use crate::txn::stream_context::{StreamContext, StreamContexts};
use crate::txn::{TxnBook, TxnCounts, TxnStatus};

/// Validated settings the servers consult.
#[derive(Debug, Clone)]
pub(crate) struct SimConfig {
    /// Basic-auth user.
    pub(crate) user: String,
    /// Basic-auth password (may be empty).
    pub(crate) password: String,
    /// Body size limits.
    pub(crate) limits: SizeLimits,
    /// FE refuses HTTP/1.1 `_stream_load` without `Expect: 100-continue`.
    pub(crate) require_100_continue: bool,
    /// Answer `StreamLoadPutTimeMs` instead of `StreamLoadPlanTimeMs` (older versions).
    pub(crate) legacy_put_time_field: bool,
    /// Snapshot directory.
    pub(crate) data_dir: Option<PathBuf>,
    /// The StarRocks version emulated (`SimOptions::starrocks_version`).
    pub(crate) version: String,
    /// Multi-table transactions (`transaction_type: multi`) exist: StarRocks 4.0+.
    pub(crate) multi_table_txn: bool,
    /// CSV rows are counted, not parsed or stored (`SimOptions::discard_rows`, benchmarks only).
    pub(crate) discard_rows: bool,
}

/// A committed version whose publish is pending.
#[derive(Debug, Clone)]
pub(crate) struct PendingVersion {
    pub(crate) txn_id: i64,
    pub(crate) batch: ChangeBatch,
    pub(crate) visible_at: Instant,
}

/// One table's share of a commit.
#[derive(Debug)]
pub(crate) struct CommitPart {
    pub(crate) table: String,
    pub(crate) batch: ChangeBatch,
    pub(crate) counts: TxnCounts,
    pub(crate) prepared: Option<PreparedBatch>,
}

/// What a commit achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitOutcome {
    /// Applied and visible.
    Visible,
    /// Committed; visible once the publish queue reaches it.
    Committed,
}

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct SimState {
    pub(crate) catalog: Catalog,
    pub(crate) txns: TxnBook,
    pub(crate) counters: Counters,
    pub(crate) contexts: StreamContexts,
    /// Labels the FE routed a transaction-interface `begin` for (its coordinator cache).
    pub(crate) fe_coordinators: std::collections::HashSet<String>,
    pub(crate) pending: BTreeMap<(String, String), VecDeque<PendingVersion>>,
    /// Open multi-table txns (FE tasks).
    pub(crate) multi: MultiTasks,
    /// Bumped each time committed data becomes visible (a commit applied, or a publish), so a
    /// reader can tell which version a consistent read saw.
    pub(crate) visible_version: u64,
}

impl SimState {
    pub(crate) fn new(catalog: Catalog, txns: TxnBook) -> SimState {
        SimState {
            catalog,
            txns,
            counters: Counters::default(),
            contexts: StreamContexts::default(),
            fe_coordinators: std::collections::HashSet::new(),
            pending: BTreeMap::new(),
            multi: MultiTasks::default(),
            visible_version: 0,
        }
    }

    /// Commits a running txn with its batch. The batch is validated against the table first; a
    /// failure aborts the txn and returns the message. With `publish_delay`, or when an earlier
    /// version of the table is still unpublished, the txn becomes COMMITTED and is queued (the
    /// batch is taken); otherwise it is applied and left to the caller, to be dropped after the
    /// lock is released. `prepared` is the batch's validation done before taking the lock
    /// ([`crate::load::LoadPlan::prepare`]); it is used only if the table's schema is unchanged.
    pub(crate) fn commit(
        &mut self,
        txn_id: i64,
        batch: &mut ChangeBatch,
        counts: TxnCounts,
        publish_delay: Option<Duration>,
        prepared: Option<PreparedBatch>,
    ) -> Result<CommitOutcome, String> {
        let Some(record) = self.txns.get(txn_id) else {
            return Err(format!("transaction {txn_id} not found"));
        };
        let mut parts = vec![CommitPart {
            table: record.table.clone(),
            batch: std::mem::take(batch),
            counts,
            prepared,
        }];
        let outcome = self.commit_parts(txn_id, &mut parts, publish_delay);
        if let Some(part) = parts.pop() {
            *batch = part.batch;
        }
        outcome
    }

    /// Commits a running txn that wrote one or more tables of its database, atomically: every
    /// table's batch is validated before any is applied (a failure aborts the txn and nothing is
    /// applied), and all are applied — or, with `publish_delay` or an earlier unpublished version
    /// of one of the tables, queued to become visible in one publish — under this one `&mut self`,
    /// i.e. the sim's state lock. So any reader that holds the lock (a SQL statement,
    /// [`CatalogHandle::read`], `GET /snapshot`) sees all of the txn's tables or none.
    pub(crate) fn commit_parts(
        &mut self,
        txn_id: i64,
        parts: &mut [CommitPart],
        publish_delay: Option<Duration>,
    ) -> Result<CommitOutcome, String> {
        let Some(record) = self.txns.get(txn_id) else {
            return Err(format!("transaction {txn_id} not found"));
        };
        if !record.status.is_running() {
            return Err(format!(
                "transaction {txn_id} is {}, can not commit",
                record.status
            ));
        }
        let (db, label) = (record.db.clone(), record.label.clone());
        let multi_table = record.kind == crate::txn::TxnKind::MultiTable;
        let tables: Vec<String> = parts.iter().map(|p| p.table.clone()).collect();
        let mut validated = Vec::with_capacity(parts.len());
        for part in parts.iter_mut() {
            let checked = self
                .catalog
                .table(&db, &part.table)
                .and_then(|t| t.validate_prepared(&part.batch, part.prepared.take()));
            match checked {
                Ok(v) => validated.push(v),
                Err(e) => {
                    let message = e.to_string();
                    self.txns.abort(txn_id, &message);
                    for table in &tables {
                        self.counters.failed(&db, table);
                    }
                    return Err(message);
                }
            }
        }
        let queue_busy = tables.iter().any(|table| {
            self.pending
                .get(&(db.clone(), table.clone()))
                .is_some_and(|q| !q.is_empty())
        });
        let mut total = TxnCounts::default();
        for part in parts.iter() {
            total.total_rows += part.counts.total_rows;
            total.loaded_rows += part.counts.loaded_rows;
            total.filtered_rows += part.counts.filtered_rows;
            total.unselected_rows += part.counts.unselected_rows;
            total.load_bytes += part.counts.load_bytes;
        }
        let outcome = if publish_delay.is_none() && !queue_busy {
            for (part, v) in parts.iter().zip(validated) {
                // Validated just above under the same `&mut self`: nothing changed the tables
                // since, and a table that exists stays so; this cannot fail half-way.
                if let Ok(t) = self.catalog.table_mut(&db, &part.table) {
                    t.apply_validated(&part.batch, v);
                }
            }
            self.visible_version += 1;
            self.txns.mark_committed(txn_id, true, total);
            CommitOutcome::Visible
        } else {
            // One visibility time for every table of the txn, no earlier than anything queued
            // ahead of it in any of them: one `publish_due` call then publishes all its tables.
            let mut visible_at = Instant::now() + publish_delay.unwrap_or_default();
            for table in &tables {
                if let Some(last) = self
                    .pending
                    .get(&(db.clone(), table.clone()))
                    .and_then(|q| q.back())
                {
                    visible_at = visible_at.max(last.visible_at);
                }
            }
            for part in parts.iter_mut() {
                self.pending
                    .entry((db.clone(), part.table.clone()))
                    .or_default()
                    .push_back(PendingVersion {
                        txn_id,
                        batch: std::mem::take(&mut part.batch),
                        visible_at,
                    });
            }
            self.txns.mark_committed(txn_id, false, total);
            CommitOutcome::Committed
        };
        for part in parts.iter() {
            self.counters.committed(
                &db,
                &part.table,
                &label,
                part.counts.loaded_rows,
                part.counts.filtered_rows,
            );
        }
        self.counters
            .label_committed(&db, &label, &tables, total.loaded_rows, multi_table);
        Ok(outcome)
    }

    fn apply(&mut self, db: &str, table: &str, batch: &ChangeBatch) -> Result<(), CatalogError> {
        self.catalog.table_mut(db, table)?.apply(batch).map(|_| ())
    }

    /// Publishes queued versions that are due, in order per table. Returns whether any did.
    pub(crate) fn publish_due(&mut self, now: Instant) -> bool {
        let mut published = Vec::new();
        for ((db, table), queue) in self.pending.iter_mut() {
            while queue.front().is_some_and(|v| v.visible_at <= now) {
                if let Some(version) = queue.pop_front() {
                    published.push((db.clone(), table.clone(), version));
                }
            }
        }
        self.pending.retain(|_, q| !q.is_empty());
        let any = !published.is_empty();
        if any {
            self.visible_version += 1;
        }
        for (db, table, version) in published {
            // The batch was validated at commit; a table dropped since simply loses it.
            let _ = self.apply(&db, &table, &version.batch);
            self.txns.mark_visible(version.txn_id);
        }
        any
    }

    /// Publishes everything queued now (shutdown, snapshot load).
    pub(crate) fn publish_all(&mut self) {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        self.publish_due(far);
    }

    /// The open transaction-interface context a `load` appends to: the table's context of an open
    /// multi-table txn when `multi`, else the single-table context of the label.
    pub(crate) fn context_mut(
        &mut self,
        label: &str,
        table: &str,
        multi: bool,
    ) -> Option<&mut StreamContext> {
        if multi {
            self.multi.get_mut(label)?.tables.get_mut(table)
        } else {
            self.contexts.get_mut(label)
        }
    }

    /// Aborts an open multi-table txn (removing its task), counting a failure on each table it
    /// loaded, and records `event` (`abort` or `rollback`). Returns whether it changed state.
    pub(crate) fn abort_multi(&mut self, label: &str, reason: &str, event: &str) -> bool {
        let Some(task) = self.multi.remove(label) else {
            return false;
        };
        let aborted = self.txns.abort(task.txn_id, reason);
        if aborted {
            for table in task.tables.keys() {
                self.counters.failed(&task.db, table);
            }
            self.counters
                .txn_event(&task.db, label, event, &task.table_list());
        }
        aborted
    }

    /// Status of a txn by id.
    pub(crate) fn status(&self, txn_id: i64) -> TxnStatus {
        self.txns
            .get(txn_id)
            .map_or(TxnStatus::Unknown, |r| r.status)
    }
}

/// Error-log texts served at `/api/_load_error_log?file=...`, newest kept.
#[derive(Debug, Default)]
pub(crate) struct ErrorLogs {
    texts: HashMap<String, String>,
    order: VecDeque<String>,
}

impl ErrorLogs {
    const MAX_LOGS: usize = 1000;

    /// Stores the lines and returns the file name.
    pub(crate) fn add(&mut self, lines: &[String]) -> String {
        let file = format!("error_log_{:016x}_{:016x}", unique_u64(), unique_u64());
        let mut text = lines.join("\n");
        text.push('\n');
        self.texts.insert(file.clone(), text);
        self.order.push_back(file.clone());
        while self.order.len() > Self::MAX_LOGS {
            if let Some(old) = self.order.pop_front() {
                self.texts.remove(&old);
            }
        }
        file
    }

    pub(crate) fn get(&self, file: &str) -> Option<&str> {
        self.texts.get(file).map(String::as_str)
    }
}

/// State shared by every server task and the public handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    state: Mutex<SimState>,
    pub(crate) faults: Faults,
    pub(crate) error_logs: Mutex<ErrorLogs>,
    /// Bumped whenever a txn changes state in the background (publish, expiry).
    pub(crate) changed: watch::Sender<u64>,
    pub(crate) fe_addr: OnceLock<SocketAddr>,
    pub(crate) be_addr: OnceLock<SocketAddr>,
    persist_failed: std::sync::atomic::AtomicBool,
    /// Load bodies' buffers, reused.
    pub(crate) body_buffers: BodyBuffers,
}

impl Shared {
    pub(crate) fn new(config: SimConfig, state: SimState) -> Shared {
        Shared {
            config,
            state: Mutex::new(state),
            faults: Faults::new(),
            error_logs: Mutex::new(ErrorLogs::default()),
            changed: watch::channel(0).0,
            fe_addr: OnceLock::new(),
            be_addr: OnceLock::new(),
            persist_failed: std::sync::atomic::AtomicBool::new(false),
            body_buffers: BodyBuffers::default(),
        }
    }

    /// Locks the state. Never hold the guard across `.await`.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SimState> {
        // The state is plain data; a panic elsewhere cannot leave it half-updated in a way later
        // requests could not cope with, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes a snapshot if `--data-dir` is set. Called with the state locked so snapshots are
    /// written in commit order. A write failure is reported once on stderr; loads keep working.
    pub(crate) fn persist(&self, state: &SimState) {
        let Some(dir) = &self.config.data_dir else {
            return;
        };
        if let Err(e) = persist::save(dir, state) {
            if !self.persist_failed.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "starrocks-sim: cannot write snapshot to {}: {e}",
                    dir.display()
                );
            }
        }
    }

    /// Wakes waiters on txn state.
    pub(crate) fn notify_changed(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// `host:port` of the BE HTTP server as clients should reach it.
    pub(crate) fn be_authority(&self) -> String {
        self.be_addr
            .get()
            .map_or_else(|| "127.0.0.1:8040".to_string(), |a| a.to_string())
    }

    /// Stores an error log and returns its `ErrorURL`.
    pub(crate) fn error_url(&self, lines: &[String]) -> String {
        let file = self
            .error_logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(lines);
        format!(
            "http://{}/api/_load_error_log?file={file}",
            self.be_authority()
        )
    }
}

/// Shared handle to the catalog for tests and the MySQL side; cheap to clone.
///
/// Reads and writes run under the sim's state lock, so they never observe a load half-applied.
/// `write` snapshots to `--data-dir` afterwards.
#[derive(Debug, Clone)]
pub struct CatalogHandle {
    pub(crate) shared: Arc<Shared>,
}

impl CatalogHandle {
    /// Runs `f` with the catalog locked for reading.
    pub fn read<R>(&self, f: impl FnOnce(&Catalog) -> R) -> R {
        let state = self.shared.lock();
        f(&state.catalog)
    }

    /// Runs `f` with the catalog locked for reading and returns the visible version it saw: a
    /// counter bumped each time committed data becomes visible. Everything `f` reads — any
    /// number of tables — is that one version; a multi-table commit is seen whole or not at all.
    pub fn read_versioned<R, E>(
        &self,
        f: impl FnOnce(&Catalog) -> Result<R, E>,
    ) -> Result<(u64, R), (u64, E)> {
        let state = self.shared.lock();
        let version = state.visible_version;
        f(&state.catalog)
            .map(|r| (version, r))
            .map_err(|e| (version, e))
    }

    /// Runs `f` with the catalog locked for writing, then persists the snapshot.
    pub fn write<R>(&self, f: impl FnOnce(&mut Catalog) -> R) -> R {
        let mut state = self.shared.lock();
        let result = f(&mut state.catalog);
        self.shared.persist(&state);
        result
    }

    /// `CREATE DATABASE [IF NOT EXISTS]`; returns whether it was created.
    pub fn create_database(&self, name: &str) -> Result<bool, CatalogError> {
        self.write(|c| c.create_database(name, true))
    }

    /// `CREATE TABLE [IF NOT EXISTS]`; returns whether it was created.
    pub fn create_table(
        &self,
        database: &str,
        spec: crate::catalog::TableSpec,
    ) -> Result<bool, CatalogError> {
        self.write(|c| c.create_table(database, spec, true))
    }

    /// All rows of a table in key order (a copy).
    pub fn rows(&self, database: &str, table: &str) -> Result<Vec<Vec<Value>>, CatalogError> {
        self.read(|c| Ok(c.table(database, table)?.rows().collect()))
    }

    /// Number of rows of a table.
    pub fn row_count(&self, database: &str, table: &str) -> Result<usize, CatalogError> {
        self.read(|c| c.row_count(database, table))
    }
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A well-mixed 64-bit value, unique per call within the process (ids, generated labels).
pub(crate) fn unique_u64() -> u64 {
    thread_local! {
        static STATE: RandomState = RandomState::new();
    }
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    STATE.with(|s| {
        let mut h = s.build_hasher();
        h.write_u64(n);
        h.write_u128(Instant::now().elapsed().as_nanos());
        h.finish()
    })
}

/// A UUID-shaped random string (labels the BE generates when none is given).
pub(crate) fn generate_uuid() -> String {
    let a = unique_u64();
    let b = unique_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}
