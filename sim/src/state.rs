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
use crate::txn::stream_context::StreamContexts;
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
}

/// A committed version whose publish is pending.
#[derive(Debug, Clone)]
pub(crate) struct PendingVersion {
    pub(crate) txn_id: i64,
    pub(crate) batch: ChangeBatch,
    pub(crate) visible_at: Instant,
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
        if !record.status.is_running() {
            return Err(format!(
                "transaction {txn_id} is {}, can not commit",
                record.status
            ));
        }
        let (db, table, label) = (
            record.db.clone(),
            record.table.clone(),
            record.label.clone(),
        );
        let validated = match self
            .catalog
            .table(&db, &table)
            .and_then(|t| t.validate_prepared(batch, prepared))
        {
            Ok(validated) => validated,
            Err(e) => {
                let message = e.to_string();
                self.txns.abort(txn_id, &message);
                self.counters.failed(&db, &table);
                return Err(message);
            }
        };
        let key = (db.clone(), table.clone());
        let queue_busy = self.pending.get(&key).is_some_and(|q| !q.is_empty());
        let outcome = if publish_delay.is_none() && !queue_busy {
            // Validated just above under the same `&mut self`: nothing changed the table since.
            let applied = self
                .catalog
                .table_mut(&db, &table)
                .map(|t| t.apply_validated(batch, validated));
            if let Err(e) = applied {
                let message = e.to_string();
                self.txns.abort(txn_id, &message);
                self.counters.failed(&db, &table);
                return Err(message);
            }
            self.txns.mark_committed(txn_id, true, counts);
            CommitOutcome::Visible
        } else {
            self.pending
                .entry(key)
                .or_default()
                .push_back(PendingVersion {
                    txn_id,
                    batch: std::mem::take(batch),
                    visible_at: Instant::now() + publish_delay.unwrap_or_default(),
                });
            self.txns.mark_committed(txn_id, false, counts);
            CommitOutcome::Committed
        };
        self.counters.committed(
            &db,
            &table,
            &label,
            counts.loaded_rows,
            counts.filtered_rows,
        );
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
