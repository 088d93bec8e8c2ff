//! The agent's shared state: what the control plane reads (phase, health, LSNs, per-table
//! counters) and the levers it pulls (pause, resume, drain, stop).
//!
//! A module of its own, below everything that shares it: the engine and the pipeline (its
//! loaders, the forwarder) write it, the control plane and the CLI's progress bar read it, and
//! none of them has to import another to reach it.
//!
//! One [`EngineHandle`] per process, shared as `Arc`. The engine writes to it at batch and commit
//! granularity (never per row), the gRPC and Prometheus servers read [`EngineHandle::status`]
//! snapshots. Nothing in it is secret: the configuration summary is built from redacted values
//! (invariant 10).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::postgres::Lsn;

/// Where the engine is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Init,
    Setup,
    Snapshot,
    Cdc,
    Draining,
    Stopped,
}

impl Phase {
    /// Upper-case name, as status and metrics print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Init => "INIT",
            Phase::Setup => "SETUP",
            Phase::Snapshot => "SNAPSHOT",
            Phase::Cdc => "CDC",
            Phase::Draining => "DRAINING",
            Phase::Stopped => "STOPPED",
        }
    }
}

/// What the health service answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `SERVING` in CDC (and snapshot); `NOT_SERVING` otherwise.
    pub serving: bool,
    /// Why, in words: `streaming`, or the error that stopped the engine.
    pub detail: String,
}

/// How a stop was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// Stop reading, flush what is buffered, confirm, exit 0 (SIGTERM, `Drain`).
    Drain,
    /// Stop reading and exit once loads in flight end; buffered changes are not sent (they are
    /// not confirmed either, so the next start streams them again).
    Stop,
}

/// Upper bounds (seconds) of the load duration histogram buckets.
pub const LOAD_DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram in Prometheus' shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Counts per bucket of [`LOAD_DURATION_BUCKETS`], not cumulative; the last is `+Inf`.
    pub buckets: [u64; LOAD_DURATION_BUCKETS.len() + 1],
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let index = LOAD_DURATION_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LOAD_DURATION_BUCKETS.len());
        self.buckets[index] += 1;
        self.sum_seconds += seconds;
        self.count += 1;
    }
}

/// Counters of one replicated table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableStatus {
    /// `schema.table` at the source.
    pub source: String,
    /// The StarRocks table name.
    pub target: String,
    pub rows_inserted: u64,
    pub rows_updated: u64,
    pub rows_deleted: u64,
    /// Rows actually sent after per-key compaction.
    pub rows_loaded: u64,
    /// Request body bytes sent.
    pub bytes_loaded: u64,
    pub loads: u64,
    /// Loads StarRocks had already committed under the same label (replays after a restart).
    pub loads_deduplicated: u64,
    pub truncates: u64,
    pub load_duration: Histogram,
    pub last_error: Option<String>,
    /// The table's snapshot copy (initial, later, or a resync), once one was planned.
    pub copy: Option<CopyProgress>,
}

/// Where a table's snapshot copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    /// Asked for (a resync, a new table, or a copy that has not begun), not planned yet.
    Pending,
    Copying,
    Done,
}

impl CopyState {
    /// Lower-case name, as status and metrics print it.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyState::Pending => "pending",
            CopyState::Copying => "copying",
            CopyState::Done => "done",
        }
    }
}

/// Progress of one table's snapshot copy.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyProgress {
    pub state: CopyState,
    /// Rows in StarRocks from this copy (all its chunks, also those of an earlier run).
    pub rows_copied: u64,
    /// `count(*)` of the table in the copy's snapshot, when planned.
    pub rows_estimated: u64,
    pub chunks_done: u64,
    pub chunks_total: u64,
    /// Rows per second copied by this process (0 before the first chunk ends).
    pub rows_per_second: f64,
    /// Seconds left at that rate; `None` while unknown or when done.
    pub eta_seconds: Option<f64>,
    /// When this process began copying and how many rows were done then: the rate's base.
    started: Option<(Instant, u64)>,
}

impl CopyProgress {
    fn pending() -> CopyProgress {
        CopyProgress {
            state: CopyState::Pending,
            rows_copied: 0,
            rows_estimated: 0,
            chunks_done: 0,
            chunks_total: 0,
            rows_per_second: 0.0,
            eta_seconds: None,
            started: None,
        }
    }

    /// Rate and ETA as of now.
    fn refreshed(&self) -> CopyProgress {
        let mut progress = self.clone();
        if let (CopyState::Copying, Some((since, base))) = (self.state, self.started) {
            let seconds = since.elapsed().as_secs_f64();
            let copied = self.rows_copied.saturating_sub(base);
            if seconds > 0.0 && copied > 0 {
                progress.rows_per_second = copied as f64 / seconds;
                let left = self.rows_estimated.saturating_sub(self.rows_copied);
                progress.eta_seconds = Some(left as f64 / progress.rows_per_second);
            }
        }
        progress
    }
}

/// Why a resync request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResyncError {
    #[error(
        "no replicated table is called `{0}` (give `schema.table` or the StarRocks table name)"
    )]
    UnknownTable(String),
    #[error("table `{0}` is already being copied")]
    AlreadyCopying(String),
}

/// Rows of one source operation, as a table's batch counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}

/// A point-in-time copy of everything the control plane shows.
#[derive(Debug, Clone)]
pub struct StatusSnapshot {
    pub phase: Phase,
    pub health: Health,
    pub paused: bool,
    /// The highest position received from the stream.
    pub received_lsn: Lsn,
    /// The last `flush` position reported to Postgres.
    pub flushed_lsn: Lsn,
    /// The checkpoint stored in the source (everything up to it is in StarRocks).
    pub confirmed_lsn: Lsn,
    /// The server's WAL end, from the latest keepalive or status query.
    pub server_wal_end: Lsn,
    /// `server_wal_end - confirmed_lsn` in bytes while a received commit waits; 0 when caught up.
    pub lag_bytes: u64,
    /// Age of the oldest received commit not yet confirmed (0 when none is waiting).
    pub lag_seconds: f64,
    /// WAL the slot holds back (`pg_current_wal_lsn() - restart_lsn`), when last measured.
    pub slot_retained_wal_bytes: Option<u64>,
    pub buffered_bytes: u64,
    pub max_buffer_bytes: u64,
    pub uptime: Duration,
    pub tables: Vec<TableStatus>,
    /// `(setting, value)` pairs without secrets.
    pub config: Vec<(String, String)>,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    health: Health,
    received_lsn: Lsn,
    flushed_lsn: Lsn,
    confirmed_lsn: Lsn,
    server_wal_end: Lsn,
    /// Commit time of the oldest received commit that is not confirmed yet.
    oldest_unconfirmed_commit: Option<SystemTime>,
    slot_retained_wal_bytes: Option<u64>,
    tables: BTreeMap<String, TableStatus>,
    /// Source tables (`schema.table`) an operator asked to copy again, oldest first.
    resyncs: Vec<String>,
}

/// The shared state; see the module docs.
#[derive(Debug)]
pub struct EngineHandle {
    inner: Mutex<Inner>,
    started: Instant,
    config: Vec<(String, String)>,
    health: watch::Sender<Health>,
    stop: watch::Sender<Option<StopRequest>>,
    paused: AtomicBool,
    pause_changed: Notify,
    buffered_bytes: AtomicU64,
    max_buffer_bytes: u64,
    copy_requested: Notify,
}

impl EngineHandle {
    /// A handle in phase INIT, NOT_SERVING.
    pub fn new(config: &Config) -> EngineHandle {
        let health = Health {
            serving: false,
            detail: "starting".into(),
        };
        EngineHandle {
            inner: Mutex::new(Inner {
                phase: Phase::Init,
                health: health.clone(),
                received_lsn: Lsn::ZERO,
                flushed_lsn: Lsn::ZERO,
                confirmed_lsn: Lsn::ZERO,
                server_wal_end: Lsn::ZERO,
                oldest_unconfirmed_commit: None,
                slot_retained_wal_bytes: None,
                tables: BTreeMap::new(),
                resyncs: Vec::new(),
            }),
            copy_requested: Notify::new(),
            started: Instant::now(),
            config: config_summary(config),
            health: watch::Sender::new(health),
            stop: watch::Sender::new(None),
            paused: AtomicBool::new(false),
            pause_changed: Notify::new(),
            buffered_bytes: AtomicU64::new(0),
            max_buffer_bytes: config.engine.max_buffer_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain counters behind: still fine to read.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ---- read side (control plane) ----

    /// A consistent copy of the current state.
    pub fn status(&self) -> StatusSnapshot {
        let inner = self.lock();
        let lag_seconds = inner
            .oldest_unconfirmed_commit
            .and_then(|commit| SystemTime::now().duration_since(commit).ok())
            .map_or(0.0, |age| age.as_secs_f64());
        StatusSnapshot {
            phase: inner.phase,
            health: inner.health.clone(),
            paused: self.is_paused(),
            received_lsn: inner.received_lsn,
            flushed_lsn: inner.flushed_lsn,
            confirmed_lsn: inner.confirmed_lsn,
            server_wal_end: inner.server_wal_end,
            // Caught up (every received commit confirmed), the slot follows the server's WAL
            // end (invariant 3): no lag, whatever other databases write.
            lag_bytes: match inner.oldest_unconfirmed_commit {
                None => 0,
                Some(_) => inner.server_wal_end.0.saturating_sub(inner.confirmed_lsn.0),
            },
            lag_seconds,
            slot_retained_wal_bytes: inner.slot_retained_wal_bytes,
            buffered_bytes: self.buffered_bytes.load(Ordering::Relaxed),
            max_buffer_bytes: self.max_buffer_bytes,
            uptime: self.started.elapsed(),
            tables: inner
                .tables
                .values()
                .map(|table| TableStatus {
                    copy: table.copy.as_ref().map(CopyProgress::refreshed),
                    ..table.clone()
                })
                .collect(),
            config: self.config.clone(),
        }
    }

    /// Health changes, for `Health.Watch`.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    // ---- levers (control plane) ----

    /// Stops reading the stream (feedback keeps flowing) until [`EngineHandle::resume`].
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.pause_changed.notify_waiters();
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.pause_changed.notify_waiters();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Asks the engine to stop. A drain wins over a plain stop asked later.
    pub fn request_stop(&self, request: StopRequest) {
        self.stop.send_if_modified(|current| match current {
            Some(StopRequest::Drain) => false,
            _ => {
                *current = Some(request);
                true
            }
        });
    }

    /// Stop requests, for the engine.
    pub fn stop_requests(&self) -> watch::Receiver<Option<StopRequest>> {
        self.stop.subscribe()
    }

    /// Asks for `table` (`schema.table`, or its StarRocks name) to be copied again: its target
    /// is emptied and refilled from a new snapshot while the other tables keep streaming.
    /// Returns the source name. The engine picks the request up in CDC (or at its next start).
    pub fn request_resync(&self, table: &str) -> Result<String, ResyncError> {
        let mut inner = self.lock();
        let source = inner
            .tables
            .values()
            .find(|t| t.source == table || t.target == table)
            .map(|t| t.source.clone())
            .ok_or_else(|| ResyncError::UnknownTable(table.to_owned()))?;
        let copying = inner.resyncs.contains(&source)
            || inner.tables.get(&source).is_some_and(|t| {
                t.copy
                    .as_ref()
                    .is_some_and(|copy| copy.state != CopyState::Done)
            });
        if copying {
            return Err(ResyncError::AlreadyCopying(source));
        }
        inner.resyncs.push(source.clone());
        if let Some(status) = inner.tables.get_mut(&source) {
            status.copy = Some(CopyProgress::pending());
        }
        drop(inner);
        self.copy_requested.notify_one();
        Ok(source)
    }

    /// Takes the resync requests made since the last call (engine side).
    pub fn take_resyncs(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().resyncs)
    }

    /// Completes when a resync is requested (a request made before the call is not missed:
    /// `Notify` keeps one permit).
    pub async fn resync_requested(&self) {
        self.copy_requested.notified().await;
    }

    /// A future that completes on the next pause/resume/buffer change; create it *before*
    /// checking the condition you wait for, so no wake-up is missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.pause_changed.notified()
    }

    // ---- write side (engine) ----

    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// A load succeeded: in CDC, health is SERVING (again).
    pub fn load_succeeded(&self) {
        let serving = self.health.borrow().serving;
        if !serving && self.phase() == Phase::Cdc {
            self.set_health(true, "streaming");
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.lock().phase = phase;
    }

    /// Sets health and its detail; watchers are told when it changes.
    pub fn set_health(&self, serving: bool, detail: impl Into<String>) {
        let health = Health {
            serving,
            detail: detail.into(),
        };
        self.lock().health = health.clone();
        self.health.send_if_modified(|current| {
            if *current == health {
                false
            } else {
                *current = health;
                true
            }
        });
    }

    /// Adds `bytes` to the buffered total.
    pub fn add_buffered(&self, bytes: u64) {
        self.buffered_bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Removes `bytes` from the buffered total and wakes a reader waiting for room.
    pub fn release_buffered(&self, bytes: u64) {
        let _ = self
            .buffered_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                Some(b.saturating_sub(bytes))
            });
        self.pause_changed.notify_waiters();
    }

    /// Forgets every buffered byte: a new attempt starts with an empty pipeline (the previous
    /// one's batches, queued jobs and channel were dropped without releasing theirs).
    pub fn reset_buffered(&self) {
        self.buffered_bytes.store(0, Ordering::SeqCst);
        self.pause_changed.notify_waiters();
    }

    pub fn buffered_bytes(&self) -> u64 {
        self.buffered_bytes.load(Ordering::SeqCst)
    }

    /// Whether the stream may be read: not paused and the buffer below its cap.
    pub fn may_read(&self) -> bool {
        !self.is_paused() && self.buffered_bytes() < self.max_buffer_bytes
    }

    pub fn set_received(&self, received: Lsn, server_wal_end: Lsn) {
        let mut inner = self.lock();
        inner.received_lsn = inner.received_lsn.max(received);
        inner.server_wal_end = inner.server_wal_end.max(server_wal_end).max(received);
    }

    /// Records the stored checkpoint and the commit time of the oldest commit still waiting.
    pub fn set_confirmed(&self, confirmed: Lsn, oldest_unconfirmed_commit: Option<SystemTime>) {
        let mut inner = self.lock();
        inner.confirmed_lsn = inner.confirmed_lsn.max(confirmed);
        inner.oldest_unconfirmed_commit = oldest_unconfirmed_commit;
    }

    /// The commit time of the oldest unconfirmed commit, when nothing older was waiting.
    pub fn commit_waiting(&self, commit_time: SystemTime) {
        let mut inner = self.lock();
        if inner.oldest_unconfirmed_commit.is_none() {
            inner.oldest_unconfirmed_commit = Some(commit_time);
        }
    }

    /// The `flush` of the latest status update sent to Postgres.
    pub fn set_flushed(&self, flushed: Lsn) {
        let mut inner = self.lock();
        inner.flushed_lsn = inner.flushed_lsn.max(flushed);
    }

    pub fn set_slot_retained_wal(&self, bytes: Option<u64>) {
        self.lock().slot_retained_wal_bytes = bytes;
    }

    /// Registers a table (idempotent).
    pub fn add_table(&self, source: &str, target: &str) {
        self.lock()
            .tables
            .entry(source.to_owned())
            .or_insert_with(|| TableStatus {
                source: source.to_owned(),
                target: target.to_owned(),
                ..TableStatus::default()
            });
    }

    /// Records a committed load of `source`'s table.
    pub fn record_load(
        &self,
        source: &str,
        ops: OpCounts,
        rows_loaded: u64,
        bytes: u64,
        duration: Duration,
        deduplicated: bool,
    ) {
        let mut inner = self.lock();
        if let Some(table) = inner.tables.get_mut(source) {
            table.rows_inserted += ops.inserted;
            table.rows_updated += ops.updated;
            table.rows_deleted += ops.deleted;
            table.rows_loaded += rows_loaded;
            table.bytes_loaded += bytes;
            table.loads += 1;
            table.loads_deduplicated += u64::from(deduplicated);
            table.load_duration.observe(duration.as_secs_f64());
            table.last_error = None;
        }
    }

    /// A copy of `source` is planned (or resumed): totals, and what earlier runs already did.
    pub fn copy_planned(
        &self,
        source: &str,
        rows_estimated: u64,
        chunks_total: u64,
        chunks_done: u64,
        rows_done: u64,
    ) {
        if let Some(table) = self.lock().tables.get_mut(source) {
            table.copy = Some(CopyProgress {
                state: CopyState::Copying,
                rows_copied: rows_done,
                rows_estimated,
                chunks_done,
                chunks_total,
                rows_per_second: 0.0,
                eta_seconds: None,
                started: Some((Instant::now(), rows_done)),
            });
        }
    }

    /// A copy of `source` is asked for but not planned yet.
    pub fn copy_pending(&self, source: &str) {
        if let Some(table) = self.lock().tables.get_mut(source) {
            table.copy = Some(CopyProgress::pending());
        }
    }

    /// `rows` more rows of `source` are in StarRocks; `chunk_done` when they ended a chunk.
    pub fn copy_progressed(&self, source: &str, rows: u64, chunk_done: bool) {
        if let Some(copy) = self
            .lock()
            .tables
            .get_mut(source)
            .and_then(|t| t.copy.as_mut())
        {
            copy.rows_copied += rows;
            copy.chunks_done += u64::from(chunk_done);
        }
    }

    /// Every chunk of `source` is copied.
    pub fn copy_done(&self, source: &str) {
        if let Some(copy) = self
            .lock()
            .tables
            .get_mut(source)
            .and_then(|t| t.copy.as_mut())
        {
            copy.state = CopyState::Done;
            copy.eta_seconds = None;
            copy.rows_estimated = copy.rows_estimated.max(copy.rows_copied);
        }
    }

    pub fn record_truncate(&self, source: &str) {
        if let Some(table) = self.lock().tables.get_mut(source) {
            table.truncates += 1;
        }
    }

    pub fn record_table_error(&self, source: &str, error: &str) {
        if let Some(table) = self.lock().tables.get_mut(source) {
            table.last_error = Some(error.to_owned());
        }
    }
}

/// The settings worth showing, without secrets (the URL's password is redacted by `ConnInfo`'s
/// `Display`; the StarRocks password and the control token are left out).
fn config_summary(config: &Config) -> Vec<(String, String)> {
    let pg = &config.postgres;
    let engine = &config.engine;
    let mut summary = vec![
        ("postgres".to_owned(), pg.conn.to_string()),
        (
            "tables".to_owned(),
            pg.tables
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("slot".to_owned(), pg.slot.clone()),
        ("publication".to_owned(), pg.publication.clone()),
        ("state_schema".to_owned(), pg.state_schema.clone()),
        ("flush_rows".to_owned(), engine.flush_rows.to_string()),
        ("flush_bytes".to_owned(), engine.flush_bytes.to_string()),
        (
            "flush_interval_ms".to_owned(),
            engine.flush_interval.as_millis().to_string(),
        ),
        (
            "max_buffer_bytes".to_owned(),
            engine.max_buffer_bytes.to_string(),
        ),
        (
            "control_token".to_owned(),
            if config.control.token.is_some() {
                "set".into()
            } else {
                "unset (mutating RPCs from loopback only)".into()
            },
        ),
    ];
    if let Some(sr) = &config.starrocks {
        summary.push(("starrocks".to_owned(), sr.fe_urls.join(",")));
        summary.push(("starrocks_database".to_owned(), sr.database.clone()));
        summary.push(("starrocks_user".to_owned(), sr.user.clone()));
    }
    summary
}
