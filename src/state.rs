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
//!
//! Nothing is hidden while it lasts (invariant 13): the sink reports every failed load attempt
//! here (as its [`LoadObserver`]), so a StarRocks outage the sink rides out shows per table (since
//! when, how many attempts, the last error) and turns readiness NOT_SERVING until a load of every
//! failing table commits; and while reading is stopped (paused, or the buffer full), WAL the agent
//! has not read yet counts as lag. A table parked by a permanent error (pipeline/park.rs) shows
//! with its error and held position, and keeps readiness NOT_SERVING until a retry or resync.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::postgres::Lsn;
use crate::sink::{AttemptFailed, LoadObserver};

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
    /// Stream Loads of the table under way now, streamed or copied, from when one is sent (a
    /// streamed one once it holds a load slot) until it answers ([`EngineHandle::load_started`]).
    pub loads_in_flight: u64,
    /// Loads StarRocks had already committed under the same label (replays after a restart).
    pub loads_deduplicated: u64,
    pub truncates: u64,
    pub load_duration: Histogram,
    /// The last load error (transient or permanent), cleared by the next committed load.
    pub last_error: Option<String>,
    /// The table's snapshot copy (initial, later, or a resync), once one was planned.
    pub copy: Option<CopyProgress>,
    /// Failed load attempts since start, by [`LoadErrorKind`](crate::sink::starrocks::error::LoadErrorKind) name.
    pub load_failures: BTreeMap<&'static str, u64>,
    /// Attempts re-sent after a transient failure, since start.
    pub load_retries: u64,
    /// Set while the table's loads fail: from the first failed attempt to the next commit.
    pub failing: Option<LoadFailing>,
    /// When a load of the table last committed (streamed or copied); `None` before the first.
    pub last_load_at: Option<SystemTime>,
    /// Set while a permanent error keeps the table parked (the others stream).
    pub parked: Option<TableParked>,
    /// The table's StarRocks transaction carrying a source transaction larger than a batch,
    /// while it is open (parts loaded, not visible yet) or prepared and not yet committed.
    pub open_transaction: Option<OpenTransaction>,
    /// The table's StarRocks transactions carrying streamed source transactions
    /// (`STARWAL_STREAMING=on`), by xid, from the source transaction's first change to the table
    /// until its StarRocks transaction commits or is rolled back.
    pub streamed_transactions: BTreeMap<u32, OpenTransaction>,
    /// Such transactions (open ones and streamed ones) committed since start.
    pub transactions_committed: u64,
    /// Source transactions that became visible in parts since start (a part StarRocks'
    /// transaction could not take, or DDL in the middle), and whole batches sent as several
    /// loads, one per column set (counted once each; see `pipeline/txn.rs`).
    pub transactions_split: u64,
}

/// A table's open StarRocks transaction (invariant 11).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTransaction {
    pub label: String,
    /// Rows loaded into it so far.
    pub rows: u64,
    pub began: SystemTime,
    /// Prepared (recorded in the checkpoint) and not yet committed.
    pub prepared: bool,
}

/// A table stopped by a permanent error of its load or encoding, while the others stream.
#[derive(Debug, Clone, PartialEq)]
pub struct TableParked {
    pub since: SystemTime,
    /// Its first change not in StarRocks (`commit LSN/seq`): the confirmed LSN stays before it.
    pub held_from: String,
    pub error: String,
}

/// A table whose loads fail now.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadFailing {
    /// The first failed attempt since the last commit.
    pub since: SystemTime,
    /// Failed attempts since then.
    pub attempts: u64,
    /// The latest failure's kind.
    pub kind: &'static str,
    /// The latest failure is retried (`false`: it was permanent and the batch went back).
    pub transient: bool,
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

/// A resync limited to some chunks of a plan (`starwal verify --repair`): the target is not
/// emptied, the chunks are copied and the keys deleted while the table's stream is held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartialResync {
    /// The chunk plan's key boundaries (Postgres text per key column).
    pub boundaries: Vec<Vec<String>>,
    /// The chunks to copy.
    pub chunks: Vec<u32>,
    /// Keys to delete from the target (StarRocks text per key column).
    pub delete_keys: Vec<Vec<String>>,
}

/// A verify was asked for while one runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a verify is already running on this agent; its result shows in status when it ends")]
pub struct VerifyRefused;

/// Why a resync request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResyncError {
    #[error(
        "no replicated table is called `{0}` (give `schema.table` or the StarRocks table name)"
    )]
    UnknownTable(String),
    #[error("table `{0}` is already being copied")]
    AlreadyCopying(String),
    #[error("table `{0}` is not parked: nothing to retry")]
    NotParked(String),
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
    /// When it was taken: ages (of failures, of the last load) are counted to here.
    pub at: SystemTime,
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
    /// `server_wal_end - confirmed_lsn` in bytes while a received commit waits, or while reading
    /// is stopped with WAL not read yet; 0 when caught up.
    pub lag_bytes: u64,
    /// Age of the oldest received commit not yet confirmed, or, while reading is stopped, of the
    /// oldest WAL not read yet (as first seen); 0 when neither waits.
    pub lag_seconds: f64,
    /// WAL past what the stream has shown, while reading is stopped (paused or buffer full).
    pub unread_wal_bytes: u64,
    /// WAL the slot holds back (`pg_current_wal_lsn() - restart_lsn`), when last measured.
    pub slot_retained_wal_bytes: Option<u64>,
    pub buffered_bytes: u64,
    pub max_buffer_bytes: u64,
    pub uptime: Duration,
    pub tables: Vec<TableStatus>,
    /// `(setting, value)` pairs without secrets.
    pub config: Vec<(String, String)>,
    /// The last `Verify` run on this agent, and whether one runs now.
    pub verify: VerifyStatus,
}

/// What the last verify on this agent found (the `Verify` RPC; `starwal verify` run as its own
/// process reports only to its caller).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyStatus {
    /// A verify runs now.
    pub running: bool,
    /// When the last one ended, and how long it took.
    pub finished: Option<SystemTime>,
    pub seconds: f64,
    /// Why the last one could not finish.
    pub error: Option<String>,
    /// Per table of the last one that finished.
    pub tables: Vec<VerifyTableStatus>,
}

/// One table's result in [`VerifyStatus`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyTableStatus {
    /// `schema.table` at the source.
    pub table: String,
    pub rows_compared: u64,
    /// Missing, extra, different and unloadable rows that remained after the re-check.
    pub rows_mismatched: u64,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    health: Health,
    received_lsn: Lsn,
    flushed_lsn: Lsn,
    confirmed_lsn: Lsn,
    server_wal_end: Lsn,
    /// The highest WAL end the stream itself has shown (keepalives, data): what was read.
    stream_wal_end: Lsn,
    /// When WAL past `stream_wal_end` was first seen while reading was stopped.
    unread_since: Option<SystemTime>,
    /// Commit time of the oldest received commit that is not confirmed yet.
    oldest_unconfirmed_commit: Option<SystemTime>,
    slot_retained_wal_bytes: Option<u64>,
    tables: BTreeMap<String, TableStatus>,
    /// Source tables (`schema.table`) an operator asked to copy again, oldest first.
    resyncs: Vec<String>,
    /// The chunks to copy of a requested resync that is partial, by source table.
    partial_resyncs: BTreeMap<String, PartialResync>,
    /// A parked table's retry was asked for: the engine restarts the stream from the held position.
    retry: bool,
    verify: VerifyStatus,
    /// Tables a requested verify should check (empty = all), until it starts.
    verify_request: Option<Vec<String>>,
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
    retry_requested: Notify,
    verify_requested: Notify,
    /// Per StarRocks transaction label: how many times in a row StarRocks aborted it at its
    /// timeout (`pipeline/loader.rs`). Kept here because it must outlive the attempt each abort
    /// ends; reset when the label commits.
    txn_timeout_aborts: Mutex<BTreeMap<String, u32>>,
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
                stream_wal_end: Lsn::ZERO,
                unread_since: None,
                oldest_unconfirmed_commit: None,
                slot_retained_wal_bytes: None,
                tables: BTreeMap::new(),
                resyncs: Vec::new(),
                partial_resyncs: BTreeMap::new(),
                retry: false,
                verify: VerifyStatus::default(),
                verify_request: None,
            }),
            retry_requested: Notify::new(),
            verify_requested: Notify::new(),
            copy_requested: Notify::new(),
            started: Instant::now(),
            config: config_summary(config),
            health: watch::Sender::new(health),
            stop: watch::Sender::new(None),
            paused: AtomicBool::new(false),
            pause_changed: Notify::new(),
            buffered_bytes: AtomicU64::new(0),
            max_buffer_bytes: config.engine.max_buffer_bytes,
            txn_timeout_aborts: Mutex::new(BTreeMap::new()),
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
        let now = SystemTime::now();
        let age = |since: SystemTime| now.duration_since(since).map_or(0.0, |a| a.as_secs_f64());
        // While reading is stopped, WAL past what the stream showed has not been read: it may
        // hold changes of ours (it cannot be told without reading it), so it counts as lag.
        let reading = self.may_read();
        let unread_wal_bytes = if reading {
            0
        } else {
            inner
                .server_wal_end
                .0
                .saturating_sub(inner.stream_wal_end.0)
        };
        let unread_since = inner.unread_since.filter(|_| unread_wal_bytes > 0);
        let lag_seconds = inner
            .oldest_unconfirmed_commit
            .into_iter()
            .chain(unread_since)
            .map(age)
            .fold(0.0, f64::max);
        StatusSnapshot {
            at: now,
            phase: inner.phase,
            health: effective_health(&inner, Some(now)),
            paused: self.is_paused(),
            received_lsn: inner.received_lsn,
            flushed_lsn: inner.flushed_lsn,
            confirmed_lsn: inner.confirmed_lsn,
            server_wal_end: inner.server_wal_end,
            // Caught up (every received commit confirmed) and reading, the slot follows the
            // server's WAL end (invariant 3): no lag, whatever other databases write.
            lag_bytes: if inner.oldest_unconfirmed_commit.is_some() || unread_wal_bytes > 0 {
                inner.server_wal_end.0.saturating_sub(inner.confirmed_lsn.0)
            } else {
                0
            },
            lag_seconds,
            unread_wal_bytes,
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
            verify: inner.verify.clone(),
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
        self.lock().unread_since = None;
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
        self.request_resync_of(table, None)
    }

    /// [`EngineHandle::request_resync`] of some chunks only (`partial`), or of the whole table.
    pub fn request_resync_of(
        &self,
        table: &str,
        partial: Option<PartialResync>,
    ) -> Result<String, ResyncError> {
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
        match partial {
            Some(partial) => inner.partial_resyncs.insert(source.clone(), partial),
            None => inner.partial_resyncs.remove(&source),
        };
        if let Some(status) = inner.tables.get_mut(&source) {
            status.copy = Some(CopyProgress::pending());
        }
        drop(inner);
        self.copy_requested.notify_one();
        Ok(source)
    }

    /// Asks for parked `table` (`schema.table`, or its StarRocks name) to be loaded again: the
    /// engine restarts the stream from the held position, after its cause was fixed. Returns the
    /// source name; refused for a table that is not parked.
    pub fn request_retry(&self, table: &str) -> Result<String, ResyncError> {
        let mut inner = self.lock();
        let status = inner
            .tables
            .values()
            .find(|t| t.source == table || t.target == table)
            .ok_or_else(|| ResyncError::UnknownTable(table.to_owned()))?;
        let source = status.source.clone();
        if status.parked.is_none() {
            return Err(ResyncError::NotParked(source));
        }
        inner.retry = true;
        drop(inner);
        self.retry_requested.notify_one();
        Ok(source)
    }

    /// Completes when a retry is requested and takes the request (engine side; a request made
    /// before the call is not missed).
    pub async fn retry_requested(&self) {
        loop {
            if std::mem::take(&mut self.lock().retry) {
                return;
            }
            self.retry_requested.notified().await;
        }
    }

    /// Asks for a verify of `tables` (source or StarRocks names; empty = every table) on this
    /// agent; refused while one runs or waits. The process runs it beside the engine.
    pub fn request_verify(&self, tables: Vec<String>) -> Result<(), VerifyRefused> {
        let mut inner = self.lock();
        if inner.verify.running || inner.verify_request.is_some() {
            return Err(VerifyRefused);
        }
        inner.verify_request = Some(tables);
        drop(inner);
        self.verify_requested.notify_one();
        Ok(())
    }

    /// Waits for a verify request and takes it, marking a verify as running.
    pub async fn verify_requested(&self) -> Vec<String> {
        loop {
            {
                let mut inner = self.lock();
                if let Some(tables) = inner.verify_request.take() {
                    inner.verify.running = true;
                    return tables;
                }
            }
            self.verify_requested.notified().await;
        }
    }

    /// Records the end of a verify: its tables, or why it could not finish (the tables of the
    /// last one that did are kept then).
    pub fn verify_finished(&self, seconds: f64, result: Result<Vec<VerifyTableStatus>, String>) {
        let mut inner = self.lock();
        let verify = &mut inner.verify;
        verify.running = false;
        verify.finished = Some(SystemTime::now());
        verify.seconds = seconds;
        match result {
            Ok(tables) => {
                verify.tables = tables;
                verify.error = None;
            }
            Err(error) => verify.error = Some(error),
        }
    }

    /// Takes the partial plan of a requested resync of `table`, if it is partial (engine side).
    pub fn take_partial_resync(&self, table: &str) -> Option<PartialResync> {
        self.lock().partial_resyncs.remove(table)
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
        // The engine's own health: a table still failing keeps the effective one NOT_SERVING.
        let serving = self.lock().health.serving;
        if !serving && self.phase() == Phase::Cdc {
            self.set_health(true, "streaming");
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.lock().phase = phase;
    }

    /// Sets health and its detail; watchers are told when it changes. While loads fail, the
    /// health read back says so instead of a SERVING `health` (see [`effective_health`]).
    pub fn set_health(&self, serving: bool, detail: impl Into<String>) {
        let health = Health {
            serving,
            detail: detail.into(),
        };
        let mut inner = self.lock();
        inner.health = health;
        self.publish_health(&inner);
    }

    /// Sends the effective health to watchers when it changed. Called with the lock held, so
    /// two changes cannot be published out of order.
    fn publish_health(&self, inner: &Inner) {
        let health = effective_health(inner, None);
        self.health.send_if_modified(|current| {
            if *current == health {
                false
            } else {
                *current = health;
                true
            }
        });
    }

    /// Loads committed since start, over every table (streamed and copied).
    pub fn loads_committed(&self) -> u64 {
        self.lock().tables.values().map(|t| t.loads).sum()
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

    /// What the stream showed: a commit received, or the WAL end of a keepalive or data message.
    pub fn set_received(&self, received: Lsn, server_wal_end: Lsn) {
        let mut inner = self.lock();
        inner.received_lsn = inner.received_lsn.max(received);
        inner.stream_wal_end = inner.stream_wal_end.max(server_wal_end).max(received);
        inner.server_wal_end = inner.server_wal_end.max(inner.stream_wal_end);
        self.note_unread(&mut inner);
    }

    /// The server's WAL end as a query on the source saw it (`pg_current_wal_lsn()`), which,
    /// unlike the stream's, moves on while the stream is not read.
    pub fn set_server_wal_end(&self, server_wal_end: Lsn) {
        let mut inner = self.lock();
        inner.server_wal_end = inner.server_wal_end.max(server_wal_end);
        self.note_unread(&mut inner);
    }

    /// Starts the clock of unread WAL when reading is stopped and the server has WAL the stream
    /// has not shown; stops it once reading goes on.
    fn note_unread(&self, inner: &mut Inner) {
        if self.may_read() {
            inner.unread_since = None;
        } else if inner.server_wal_end > inner.stream_wal_end && inner.unread_since.is_none() {
            inner.unread_since = Some(SystemTime::now());
        }
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

    /// A part went into `source`'s open StarRocks transaction `label`, begun at `began`, which
    /// now holds `rows` rows.
    pub fn transaction_part(&self, source: &str, label: &str, rows: u64, began: Instant) {
        let began = SystemTime::now()
            .checked_sub(began.elapsed())
            .unwrap_or_else(SystemTime::now);
        if let Some(table) = self.lock().tables.get_mut(source) {
            table.open_transaction = Some(OpenTransaction {
                label: label.to_owned(),
                rows,
                began,
                prepared: false,
            });
        }
    }

    /// Streamed source transaction `xid` brought its first change to `source`'s table; its
    /// StarRocks transaction there is `label`.
    pub fn stream_opened(&self, source: &str, xid: u32, label: &str) {
        if let Some(table) = self.lock().tables.get_mut(source) {
            table.streamed_transactions.insert(
                xid,
                OpenTransaction {
                    label: label.to_owned(),
                    rows: 0,
                    began: SystemTime::now(),
                    prepared: false,
                },
            );
        }
    }

    /// A part of streamed source transaction `xid` went into `source`'s StarRocks transaction,
    /// which now holds `rows` rows.
    pub fn stream_part(&self, source: &str, xid: u32, rows: u64) {
        self.with_streamed(source, xid, |txn| txn.rows = rows);
    }

    /// Streamed source transaction `xid`'s StarRocks transaction of `source` is prepared.
    pub fn stream_prepared(&self, source: &str, xid: u32) {
        self.with_streamed(source, xid, |txn| txn.prepared = true);
    }

    /// Streamed source transaction `xid`'s StarRocks transaction of `source` is over:
    /// `committed` (its rows are visible) or rolled back.
    pub fn stream_closed(&self, source: &str, xid: u32, committed: bool) {
        if let Some(table) = self.lock().tables.get_mut(source) {
            if table.streamed_transactions.remove(&xid).is_some() && committed {
                table.transactions_committed += 1;
            }
        }
    }

    fn with_streamed(&self, source: &str, xid: u32, change: impl FnOnce(&mut OpenTransaction)) {
        if let Some(txn) = self
            .lock()
            .tables
            .get_mut(source)
            .and_then(|table| table.streamed_transactions.get_mut(&xid))
        {
            change(txn);
        }
    }

    /// `source`'s open StarRocks transaction is prepared (about to be committed).
    pub fn transaction_prepared(&self, source: &str) {
        if let Some(table) = self.lock().tables.get_mut(source) {
            if let Some(txn) = &mut table.open_transaction {
                txn.prepared = true;
            }
        }
    }

    /// `source`'s open StarRocks transaction committed: its rows are visible.
    pub fn transaction_committed(&self, source: &str) {
        if let Some(table) = self.lock().tables.get_mut(source) {
            table.open_transaction = None;
            table.transactions_committed += 1;
        }
    }

    /// StarRocks aborted transaction `label` at its timeout once more: how many times in a row
    /// now.
    pub fn txn_timed_out(&self, label: &str) -> u32 {
        let mut aborts = self
            .txn_timeout_aborts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = aborts.entry(label.to_owned()).or_insert(0);
        *count += 1;
        *count
    }

    /// How many times in a row StarRocks aborted transaction `label` at its timeout so far.
    pub fn txn_timeout_aborts(&self, label: &str) -> u32 {
        self.txn_timeout_aborts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(label)
            .copied()
            .unwrap_or(0)
    }

    /// Transaction `label` committed: its timeout aborts are no longer consecutive.
    pub fn txn_landed(&self, label: &str) {
        self.txn_timeout_aborts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(label);
    }

    /// A new attempt: the previous one's open StarRocks transactions are settled at its start.
    pub fn clear_open_transactions(&self) {
        for table in self.lock().tables.values_mut() {
            table.open_transaction = None;
            table.streamed_transactions.clear();
        }
    }

    /// A source transaction of `source`'s table became visible in parts.
    pub fn transaction_split(&self, source: &str) {
        if let Some(table) = self.lock().tables.get_mut(source) {
            table.transactions_split += 1;
        }
    }

    /// A Stream Load of `source`'s table is under way until the returned guard is dropped: when
    /// it answers, or when its task is aborted mid-load (a guard, so an abort cannot leave the
    /// count up).
    pub fn load_started(self: &Arc<EngineHandle>, source: &str) -> LoadInFlight {
        if let Some(table) = self.lock().tables.get_mut(source) {
            table.loads_in_flight += 1;
        }
        LoadInFlight {
            handle: Arc::clone(self),
            source: source.to_owned(),
        }
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
            table.last_load_at = Some(SystemTime::now());
            if table.failing.take().is_some() {
                self.publish_health(&inner);
            }
        }
    }

    /// A load attempt into StarRocks table `target` failed: counted, and the table is failing
    /// (with `error` as its last error) until a load of it commits.
    pub fn load_attempt_failed(
        &self,
        target: &str,
        kind: &'static str,
        transient: bool,
        error: &str,
    ) {
        let mut inner = self.lock();
        let Some(table) = inner.tables.values_mut().find(|t| t.target == target) else {
            return;
        };
        *table.load_failures.entry(kind).or_insert(0) += 1;
        table.load_retries += u64::from(transient);
        table.last_error = Some(error.to_owned());
        let failing = table.failing.get_or_insert(LoadFailing {
            since: SystemTime::now(),
            attempts: 0,
            kind,
            transient,
        });
        failing.attempts += 1;
        failing.kind = kind;
        failing.transient = transient;
        self.publish_health(&inner);
    }

    /// A load into StarRocks table `target` committed: the table is no longer failing.
    pub fn load_committed(&self, target: &str) {
        let mut inner = self.lock();
        let Some(table) = inner.tables.values_mut().find(|t| t.target == target) else {
            return;
        };
        table.last_load_at = Some(SystemTime::now());
        table.last_error = None;
        if table.failing.take().is_some() {
            self.publish_health(&inner);
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

    /// Table `source` is parked from `held_from` for `error` (pipeline/park.rs).
    pub fn table_parked(&self, source: &str, held_from: &str, error: &str) {
        let mut inner = self.lock();
        if let Some(table) = inner.tables.get_mut(source) {
            table.last_error = Some(error.to_owned());
            table.parked = Some(TableParked {
                since: SystemTime::now(),
                held_from: held_from.to_owned(),
                error: error.to_owned(),
            });
            self.publish_health(&inner);
        }
    }

    /// A new stream replays what parked tables held: none is parked until it fails again.
    pub fn clear_parked(&self) {
        let mut inner = self.lock();
        for table in inner.tables.values_mut() {
            table.parked = None;
        }
        inner.retry = false;
        self.publish_health(&inner);
    }

    pub fn record_table_error(&self, source: &str, error: &str) {
        if let Some(table) = self.lock().tables.get_mut(source) {
            table.last_error = Some(error.to_owned());
        }
    }
}

/// The sink reports here: see the module docs.
impl LoadObserver for EngineHandle {
    fn attempt_failed(&self, failure: AttemptFailed<'_>) {
        self.load_attempt_failed(
            failure.table,
            failure.kind.as_str(),
            failure.transient,
            &failure.error.to_string(),
        );
    }

    fn load_committed(&self, table: &str) {
        EngineHandle::load_committed(self, table);
    }
}

/// The health probes and status report. The engine's own (`inner.health`) while it is not
/// serving; while it is, a table whose loads fail makes it NOT_SERVING, with the table that has
/// failed longest, its attempts and its last error as the detail: readiness means "changes reach
/// StarRocks now", and the liveness service stays SERVING (nothing a restart would fix).
/// `now` adds how long loads have failed (status); watchers get it without, so the detail they
/// hold changes only when the failure does.
fn effective_health(inner: &Inner, now: Option<SystemTime>) -> Health {
    if !inner.health.serving {
        return inner.health.clone();
    }
    let mut parked: Vec<(&TableStatus, &TableParked)> = inner
        .tables
        .values()
        .filter_map(|table| Some((table, table.parked.as_ref()?)))
        .collect();
    parked.sort_by_key(|(_, parked)| parked.since);
    if let Some((table, first)) = parked.first() {
        let mut detail = format!(
            "table `{}` parked, other tables stream: {}; its changes from {} are held and the \
             confirmed LSN stays before them (the slot retains that WAL): fix the cause, then \
             `starwal retry --table {}` or `starwal resync --table {}`",
            table.source, first.error, first.held_from, table.source, table.source
        );
        if parked.len() > 1 {
            detail.push_str(&format!("; {} more table(s) parked", parked.len() - 1));
        }
        return Health {
            serving: false,
            detail,
        };
    }
    let mut failing: Vec<(&TableStatus, &LoadFailing)> = inner
        .tables
        .values()
        .filter_map(|table| Some((table, table.failing.as_ref()?)))
        .collect();
    failing.sort_by_key(|(_, failing)| failing.since);
    let Some((table, first)) = failing.first() else {
        return inner.health.clone();
    };
    let duration = now
        .and_then(|now| now.duration_since(first.since).ok())
        .map(|age| format!(" for {:.0} s", age.as_secs_f64()))
        .unwrap_or_default();
    let retrying = if first.transient {
        "retrying"
    } else {
        "not retried"
    };
    let mut detail = format!(
        "StarRocks loads failing{duration}: `{}` ({} failed attempts, last {}, {retrying}): {}",
        table.source,
        first.attempts,
        first.kind,
        table.last_error.as_deref().unwrap_or("")
    );
    if failing.len() > 1 {
        detail.push_str(&format!("; {} more table(s) failing", failing.len() - 1));
    }
    Health {
        serving: false,
        detail,
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

/// One Stream Load under way ([`EngineHandle::load_started`]); dropping it ends it.
#[derive(Debug)]
pub struct LoadInFlight {
    handle: Arc<EngineHandle>,
    source: String,
}

impl Drop for LoadInFlight {
    fn drop(&mut self) {
        if let Some(table) = self.handle.lock().tables.get_mut(&self.source) {
            table.loads_in_flight = table.loads_in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loads_in_flight_count_until_answered_or_aborted() {
        let handle = Arc::new(handle());
        let in_flight = |handle: &EngineHandle| {
            let status = handle.status();
            (
                status.tables[0].loads_in_flight,
                status.tables[1].loads_in_flight,
            )
        };
        let first = handle.load_started("public.a");
        let second = handle.load_started("public.a");
        // A table not registered (yet) counts nothing, and its guard ends nothing.
        drop(handle.load_started("public.unknown"));
        assert_eq!(in_flight(&handle), (2, 0));
        drop(first);
        assert_eq!(in_flight(&handle), (1, 0));
        // A loader aborted mid-load drops its guard with the future.
        let guard = handle.load_started("public.b");
        let task = tokio::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        assert_eq!(in_flight(&handle), (1, 1));
        task.abort();
        let _ = task.await;
        drop(second);
        assert_eq!(in_flight(&handle), (0, 0));
    }

    fn handle() -> EngineHandle {
        let config = Config::from_vars(vec![
            ("STARWAL_PG_URL".into(), "postgres://u@localhost/db".into()),
            ("STARWAL_TABLES".into(), "public.t".into()),
        ])
        .unwrap();
        let handle = EngineHandle::new(&config);
        handle.add_table("public.a", "a");
        handle.add_table("public.b", "b");
        handle.set_phase(Phase::Cdc);
        handle.set_health(true, "streaming");
        handle
    }

    #[test]
    fn inv13_a_parked_table_keeps_readiness_not_serving_until_a_new_stream_and_retry_needs_one() {
        let handle = handle();
        assert_eq!(
            handle.request_retry("public.a"),
            Err(ResyncError::NotParked("public.a".into()))
        );
        assert_eq!(
            handle.request_retry("nope"),
            Err(ResyncError::UnknownTable("nope".into()))
        );
        handle.table_parked(
            "public.a",
            "0/16B3748/1",
            "StarRocks rejected the load: bad",
        );
        // Loads of the other table commit: the agent is still not ready.
        handle.load_succeeded();
        handle.load_committed("b");
        let status = handle.status();
        assert!(!status.health.serving);
        assert!(
            status.health.detail.starts_with(
                "table `public.a` parked, other tables stream: StarRocks rejected the load: bad; \
                 its changes from 0/16B3748/1 are held"
            ) && status
                .health
                .detail
                .contains("starwal retry --table public.a"),
            "{}",
            status.health.detail
        );
        assert!(!handle.health().borrow().serving, "watchers are told");
        let parked = status.tables[0].parked.as_ref().expect("parked");
        assert_eq!(parked.held_from, "0/16B3748/1");
        assert!(status.tables[1].parked.is_none());
        assert_eq!(handle.request_retry("a"), Ok("public.a".into()));
        // The next stream replays what it held: nothing parked until it fails again.
        handle.clear_parked();
        let status = handle.status();
        assert!(status.health.serving, "{}", status.health.detail);
        assert!(status.tables[0].parked.is_none());
    }

    #[test]
    fn inv13_failing_loads_turn_readiness_not_serving_until_they_commit() {
        let handle = handle();
        let health = handle.health();
        handle.load_attempt_failed("a", "connection", true, "cannot reach StarRocks");
        handle.load_attempt_failed("a", "http", true, "StarRocks answered HTTP 503");
        let status = handle.status();
        assert!(!status.health.serving);
        assert!(
            status.health.detail.starts_with("StarRocks loads failing for ")
                && status.health.detail.contains(
                    "`public.a` (2 failed attempts, last http, retrying): StarRocks answered HTTP 503"
                ),
            "{}",
            status.health.detail
        );
        assert!(!health.borrow().serving, "watchers were not told");
        let a = &status.tables[0];
        assert_eq!(a.load_retries, 2);
        assert_eq!(a.load_failures.get("connection"), Some(&1));
        assert_eq!(a.load_failures.get("http"), Some(&1));
        let failing = a.failing.as_ref().expect("failing");
        assert_eq!((failing.attempts, failing.kind), (2, "http"));
        assert_eq!(a.last_error.as_deref(), Some("StarRocks answered HTTP 503"));
        assert!(status.tables[1].failing.is_none());

        handle.load_attempt_failed("b", "too_many_versions", true, "too many versions");
        assert!(handle
            .status()
            .health
            .detail
            .contains("1 more table(s) failing"));
        handle.load_committed("a");
        let status = handle.status();
        assert!(!status.health.serving, "b still fails");
        assert!(
            status.health.detail.contains("`public.b`"),
            "{}",
            status.health.detail
        );
        assert!(status.tables[0].failing.is_none() && status.tables[0].last_error.is_none());
        assert!(status.tables[0].last_load_at.is_some());
        // Totals stay: they are counters.
        assert_eq!(status.tables[0].load_retries, 2);
        handle.load_committed("b");
        let status = handle.status();
        assert_eq!(
            status.health,
            Health {
                serving: true,
                detail: "streaming".into()
            }
        );
        assert!(health.borrow().serving);
    }

    #[test]
    fn issue13_the_engine_s_own_not_serving_wins_over_load_failures() {
        let handle = handle();
        handle.load_attempt_failed("a", "connection", true, "refused");
        handle.set_health(false, "draining");
        assert_eq!(handle.status().health.detail, "draining");
        // A permanent failure is counted, not retried.
        handle.set_health(true, "streaming");
        handle.load_attempt_failed("b", "filtered_rows", false, "filtered 1 row");
        let status = handle.status();
        assert_eq!(status.tables[1].load_retries, 0);
        assert_eq!(
            status.tables[1].load_failures.get("filtered_rows"),
            Some(&1)
        );
        assert!(!status.tables[1].failing.as_ref().unwrap().transient);
    }

    #[test]
    fn issue13_unread_wal_counts_as_lag_while_reading_is_stopped() {
        let handle = handle();
        // Caught up and reading: other databases' WAL is no lag (invariant 3).
        handle.set_received(Lsn(1000), Lsn(1000));
        handle.set_confirmed(Lsn(1000), None);
        handle.set_server_wal_end(Lsn(5000));
        let status = handle.status();
        assert_eq!((status.lag_bytes, status.lag_seconds), (0, 0.0));
        assert_eq!(status.unread_wal_bytes, 0);

        handle.pause();
        handle.set_server_wal_end(Lsn(9000));
        std::thread::sleep(Duration::from_millis(20));
        let status = handle.status();
        assert_eq!(status.lag_bytes, 8000, "server WAL end - confirmed");
        assert_eq!(
            status.unread_wal_bytes, 8000,
            "server WAL end - what the stream showed (1000; 5000 came from a query)"
        );
        assert!(status.lag_seconds > 0.0, "{}", status.lag_seconds);

        handle.resume();
        handle.set_received(Lsn(9000), Lsn(9000));
        handle.set_confirmed(Lsn(9000), None);
        let status = handle.status();
        assert_eq!((status.lag_bytes, status.lag_seconds), (0, 0.0));
    }
}
