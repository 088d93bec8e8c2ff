//! A running sim: [`Sim::start`] binds the listeners, restores `--data-dir`, and runs the FE,
//! BE and admin servers plus the background ticker on a private tokio runtime in its own thread.
//!
//! Owns process-level lifecycle: start (bind errors are returned, not panicked), the ticker
//! (publishes delayed versions, expires transaction-interface txns past `timeout` /
//! `idle_transaction_timeout` / `prepared_timeout`), and stop (on [`Sim::shutdown`] or drop: the
//! servers close, a final snapshot is written). Because it owns its runtime, a `Sim` works from
//! synchronous tests, from async tests on any runtime, and from the binary alike.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::catalog::Catalog;
use std::collections::BTreeMap;

use crate::catalog::{CatalogError, Value};
use crate::counters::{LabelCounters, TableCounters, TxnEvent};
use crate::faults::Faults;
use crate::http::{bind, serve, Endpoint};
use crate::load::options::SizeLimits;
use crate::persist;
use crate::state::{CatalogHandle, Shared, SimConfig, SimState};
use crate::txn::{TxnBook, TxnStatus, DEFAULT_LABEL_KEEP, DEFAULT_MAX_RUNNING_TXN_PER_DB};

/// How often the ticker publishes and expires.
const TICK: Duration = Duration::from_millis(20);

/// Everything configurable about a sim. `Default` gives free ports on 127.0.0.1, user `root`
/// with an empty password, no admin endpoint and no persistence.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// FE HTTP address (StarRocks default port 8030; port 0 = any free port).
    pub fe_http: SocketAddr,
    /// BE HTTP address (default port 8040; port 0 = any free port).
    pub be_http: SocketAddr,
    /// FE MySQL-protocol address (9030), if wanted.
    pub mysql: Option<SocketAddr>,
    /// Admin endpoint address, if wanted.
    pub admin: Option<SocketAddr>,
    /// Basic-auth user.
    pub user: String,
    /// Basic-auth password (may be empty, as in StarRocks).
    pub password: String,
    /// Directory for the JSON snapshot; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// BE body size limits (`streaming_load_max_mb`, `streaming_load_max_batch_size_mb`).
    pub limits: SizeLimits,
    /// FE refuses HTTP/1.1 `_stream_load` without `Expect: 100-continue` (3.3+/3.4+ behaviour).
    pub require_100_continue: bool,
    /// Answer `StreamLoadPutTimeMs` (older StarRocks) instead of `StreamLoadPlanTimeMs`.
    pub legacy_put_time_field: bool,
    /// How long finished labels are remembered (`label_keep_max_second`, 3 days).
    pub label_keep: Duration,
    /// `max_running_txn_num_per_db`.
    pub max_running_txn_per_db: usize,
    /// The StarRocks version emulated, `MAJOR.MINOR[.PATCH]` (default [`DEFAULT_STARROCKS_VERSION`]).
    /// `select current_version()` answers it with a `-sim` suffix. Below 4.0 the FE does not know
    /// `transaction_type: multi` (multi-table transactions arrived in 4.0) and ignores the header,
    /// as StarRocks 3.x does.
    pub starrocks_version: String,
    /// **Benchmark only, not StarRocks behaviour.** CSV loads are answered exactly as usual
    /// (status, labels, `NumberTotalRows`/`NumberLoadedRows`, counters) but their rows are only
    /// counted, split on the row delimiter: fields are not parsed, converted or checked, and no
    /// row is stored (the table stays empty; [`Sim::counters`]' `rows_loaded` has the count).
    /// It lets a benchmark on a small machine see whether the agent keeps up with its source
    /// without paying for the sim's row storage. Off by default; tests never set it.
    pub discard_rows: bool,
}

/// All rows of one table, in key order.
pub type TableRows = Vec<Vec<Value>>;

/// The StarRocks version a sim emulates by default.
pub const DEFAULT_STARROCKS_VERSION: &str = "4.0.2";

/// `(major, minor)` of a `MAJOR.MINOR[.PATCH][-suffix]` version, or why it is not one.
pub fn parse_starrocks_version(version: &str) -> Result<(u32, u32), String> {
    let core = version.split('-').next().unwrap_or_default();
    let mut parts = core.split('.');
    let number = |p: Option<&str>| p.and_then(|p| p.parse::<u32>().ok());
    match (number(parts.next()), number(parts.next())) {
        (Some(major), Some(minor)) if parts.all(|p| p.parse::<u32>().is_ok()) => Ok((major, minor)),
        _ => Err(format!(
            "StarRocks version {version:?} is not MAJOR.MINOR[.PATCH] (e.g. 3.3 or 4.0.2)"
        )),
    }
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        SimOptions {
            fe_http: any,
            be_http: any,
            mysql: None,
            admin: None,
            user: "root".to_string(),
            password: String::new(),
            data_dir: None,
            limits: SizeLimits::default(),
            require_100_continue: true,
            legacy_put_time_field: false,
            label_keep: DEFAULT_LABEL_KEEP,
            max_running_txn_per_db: DEFAULT_MAX_RUNNING_TXN_PER_DB,
            starrocks_version: DEFAULT_STARROCKS_VERSION.to_string(),
            discard_rows: false,
        }
    }
}

/// The addresses a started sim listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimAddrs {
    /// FE HTTP.
    pub fe_http: SocketAddr,
    /// BE HTTP.
    pub be_http: SocketAddr,
    /// FE MySQL protocol, if enabled.
    pub mysql: Option<SocketAddr>,
    /// Admin endpoint, if enabled.
    pub admin: Option<SocketAddr>,
}

/// Why a sim could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for {server}")]
    Bind {
        /// Which server.
        server: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `starrocks_version` is not a version.
    #[error("{0}")]
    Version(String),
    /// The runtime could not be built.
    #[error("cannot start the sim's runtime")]
    Runtime(#[source] std::io::Error),
    /// The snapshot in `--data-dir` could not be read.
    #[error("cannot restore the snapshot in {dir}")]
    Restore {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// A running StarRocks-compatible test server. Stops on [`Sim::shutdown`] or drop.
#[derive(Debug)]
pub struct Sim {
    addrs: SimAddrs,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Sim {
    /// Binds the listeners, restores the snapshot (if `data_dir` has one) and starts serving.
    pub fn start(options: SimOptions) -> Result<Sim, SimError> {
        let (major, _) =
            parse_starrocks_version(&options.starrocks_version).map_err(SimError::Version)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("starrocks-sim")
            .enable_all()
            .build()
            .map_err(SimError::Runtime)?;

        let (catalog, txns) = match &options.data_dir {
            Some(dir) => match persist::load(dir) {
                Ok(Some(restored)) => restored,
                Ok(None) => (
                    Catalog::new(),
                    TxnBook::new(options.label_keep, options.max_running_txn_per_db),
                ),
                Err(source) => {
                    return Err(SimError::Restore {
                        dir: dir.clone(),
                        source,
                    })
                }
            },
            None => (
                Catalog::new(),
                TxnBook::new(options.label_keep, options.max_running_txn_per_db),
            ),
        };
        let mut txns = txns;
        txns.configure(options.label_keep, options.max_running_txn_per_db);
        let config = SimConfig {
            user: options.user.clone(),
            password: options.password.clone(),
            limits: options.limits,
            require_100_continue: options.require_100_continue,
            legacy_put_time_field: options.legacy_put_time_field,
            data_dir: options.data_dir.clone(),
            version: options.starrocks_version.clone(),
            multi_table_txn: major >= 4,
            discard_rows: options.discard_rows,
        };
        let shared = Arc::new(Shared::new(config, SimState::new(catalog, txns)));

        // `enter` (not `block_on`) so starting from inside another runtime — an async test —
        // is fine; the listeners register with this runtime's reactor.
        let bind_one = |server: &'static str, addr: SocketAddr| {
            let _context = runtime.enter();
            bind(addr).map_err(|source| SimError::Bind {
                server,
                addr,
                source,
            })
        };
        let fe = bind_one("FE HTTP", options.fe_http)?;
        let be = bind_one("BE HTTP", options.be_http)?;
        let admin = match options.admin {
            Some(addr) => Some(bind_one("admin", addr)?),
            None => None,
        };
        let mysql = match options.mysql {
            Some(addr) => Some(bind_one("MySQL", addr)?),
            None => None,
        };
        let local = |l: &tokio::net::TcpListener, addr: SocketAddr, server: &'static str| {
            l.local_addr().map_err(|source| SimError::Bind {
                server,
                addr,
                source,
            })
        };
        let addrs = SimAddrs {
            fe_http: local(&fe, options.fe_http, "FE HTTP")?,
            be_http: local(&be, options.be_http, "BE HTTP")?,
            mysql: match &mysql {
                Some(l) => Some(local(l, options.mysql.unwrap_or(options.fe_http), "MySQL")?),
                None => None,
            },
            admin: match &admin {
                Some(l) => Some(local(l, options.admin.unwrap_or(options.fe_http), "admin")?),
                None => None,
            },
        };
        let _ = shared.fe_addr.set(addrs.fe_http);
        let _ = shared.be_addr.set(addrs.be_http);

        let (stop, stop_rx) = watch::channel(false);
        let task_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("starrocks-sim".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = Vec::new();
                    tasks.push(tokio::spawn(serve(
                        Endpoint::Fe,
                        fe,
                        task_shared.clone(),
                        stop_rx.clone(),
                    )));
                    tasks.push(tokio::spawn(serve(
                        Endpoint::Be,
                        be,
                        task_shared.clone(),
                        stop_rx.clone(),
                    )));
                    if let Some(admin) = admin {
                        tasks.push(tokio::spawn(serve(
                            Endpoint::Admin,
                            admin,
                            task_shared.clone(),
                            stop_rx.clone(),
                        )));
                    }
                    if let Some(mysql) = mysql {
                        let mysql_options = crate::mysql::MysqlOptions {
                            version: format!("{}-sim", task_shared.config.version),
                            ..crate::mysql::MysqlOptions::new(
                                task_shared.config.user.clone(),
                                task_shared.config.password.clone(),
                            )
                        };
                        tasks.push(tokio::spawn(crate::mysql::serve_with(
                            mysql,
                            CatalogHandle {
                                shared: task_shared.clone(),
                            },
                            mysql_options,
                            stop_rx.clone(),
                        )));
                    }
                    tasks.push(tokio::spawn(ticker(task_shared.clone(), stop_rx.clone())));
                    let mut stop_rx = stop_rx;
                    while !*stop_rx.borrow() {
                        if stop_rx.changed().await.is_err() {
                            break;
                        }
                    }
                    for task in tasks {
                        let _ = task.await;
                    }
                    let mut state = task_shared.lock();
                    state.publish_all();
                    task_shared.persist(&state);
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(SimError::Runtime)?;

        Ok(Sim {
            addrs,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The listening addresses.
    pub fn addrs(&self) -> SimAddrs {
        self.addrs
    }

    /// `http://host:port` of the FE HTTP server.
    pub fn fe_url(&self) -> String {
        format!("http://{}", self.addrs.fe_http)
    }

    /// `http://host:port` of the BE HTTP server.
    pub fn be_url(&self) -> String {
        format!("http://{}", self.addrs.be_http)
    }

    /// The shared catalog (create tables, read rows).
    pub fn catalog(&self) -> CatalogHandle {
        CatalogHandle {
            shared: self.shared.clone(),
        }
    }

    /// The fault book (inject, inspect, clear).
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// Load counters of one table.
    pub fn counters(&self, db: &str, table: &str) -> TableCounters {
        self.shared.lock().counters.table(db, table)
    }

    /// Load counters of every table that saw a load: (database, table, counters).
    pub fn all_counters(&self) -> Vec<(String, String, TableCounters)> {
        self.shared.lock().counters.all()
    }

    /// Commit counters of every label of a database that committed: how many times each was
    /// applied (never more than 1 unless a label was evicted and reused), its tables and rows.
    pub fn label_counters(&self, db: &str) -> BTreeMap<String, LabelCounters> {
        self.shared.lock().counters.labels(db)
    }

    /// Transaction-interface steps that took effect, after sequence number `after` (0: all
    /// kept), oldest first. A test waits here for "prepare of label X applied" to kill a client
    /// at that point.
    pub fn txn_events(&self, after: u64) -> Vec<TxnEvent> {
        self.shared.lock().counters.txn_events(after)
    }

    /// Open multi-table transactions: (label, txn id, database, tables, age).
    pub fn open_multi_txns(&self) -> Vec<(String, i64, String, Vec<String>, Duration)> {
        self.shared.lock().multi.list(Instant::now())
    }

    /// Rows of several tables of a database read at one committed version (under the state
    /// lock, so no commit — single- or multi-table — is seen half-applied), with that version
    /// ([`crate::CatalogHandle::read_versioned`]). Fails if a table does not exist.
    pub fn snapshot(
        &self,
        db: &str,
        tables: &[&str],
    ) -> Result<(u64, Vec<TableRows>), CatalogError> {
        self.catalog()
            .read_versioned(|c| {
                tables
                    .iter()
                    .map(|t| Ok(c.table(db, t)?.rows().collect()))
                    .collect::<Result<Vec<_>, CatalogError>>()
            })
            .map_or_else(|(_, e)| Err(e), Ok)
    }

    /// The StarRocks version emulated.
    pub fn starrocks_version(&self) -> &str {
        &self.shared.config.version
    }

    /// The state of a label, as `get_load_state` reports it.
    pub fn label_state(&self, db: &str, label: &str) -> TxnStatus {
        self.shared.lock().txns.status_of(db, label)
    }

    /// Simulates a BE restart: open transaction-interface txns (PREPARE) lose their stream
    /// contexts and are aborted; PREPARED txns survive and can still be committed via the FE.
    /// Returns how many txns were aborted.
    pub fn restart_be(&self) -> usize {
        restart_be(&self.shared)
    }

    /// Simulates an FE (leader) restart: open multi-table txns are cancelled (StarRocks'
    /// `cancelAfterRestart`: `cancelled after FE restart`) and the FE forgets which BE
    /// coordinates each single-table txn (it finds them again by label). Single-table txns and
    /// PREPARED ones are untouched (their state is in the FE's edit log, their data on the BE).
    /// Returns how many txns were aborted.
    pub fn restart_fe(&self) -> usize {
        restart_fe(&self.shared)
    }

    /// Simulates `label_keep_max_second` passing: finished labels (optionally of one database)
    /// are forgotten and can be loaded again. Returns how many were evicted.
    pub fn evict_labels(&self, db: Option<&str>) -> usize {
        let mut state = self.shared.lock();
        let evicted = state.txns.evict_finished_labels(db);
        self.shared.persist(&state);
        evicted
    }

    /// Stops the servers, publishes pending versions and writes the final snapshot.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Cancels open multi-table txns and clears the FE's coordinator cache.
pub(crate) fn restart_fe(shared: &Shared) -> usize {
    let aborted = {
        let mut state = shared.lock();
        state.fe_coordinators.clear();
        let mut n = 0;
        for task in state.multi.take_open() {
            if state.txns.abort(task.txn_id, "cancelled after FE restart") {
                n += 1;
                for table in task.tables.keys() {
                    state.counters.failed(&task.db, table);
                }
                let tables = task.table_list();
                state
                    .counters
                    .txn_event(&task.db, &task.label, "abort", &tables);
            }
        }
        shared.persist(&state);
        n
    };
    shared.notify_changed();
    aborted
}

/// Drops every BE stream context and aborts their txns.
pub(crate) fn restart_be(shared: &Shared) -> usize {
    let aborted = {
        let mut state = shared.lock();
        let txn_ids = state.contexts.clear();
        let mut n = 0;
        for id in txn_ids {
            let table = state.txns.get(id).map(|r| (r.db.clone(), r.table.clone()));
            if state.txns.abort(id, "coordinate BE is down") {
                n += 1;
                if let Some((db, table)) = table {
                    state.counters.failed(&db, &table);
                }
            }
        }
        // Open multi-table txns lose their loads' BE side too (StarRocks fails their
        // coordinators; the commit would fail), so they abort the same way.
        for task in state.multi.take_open() {
            if state.txns.abort(task.txn_id, "coordinate BE is down") {
                n += 1;
                for table in task.tables.keys() {
                    state.counters.failed(&task.db, table);
                }
                let tables = task.table_list();
                state
                    .counters
                    .txn_event(&task.db, &task.label, "abort", &tables);
            }
        }
        shared.persist(&state);
        n
    };
    shared.notify_changed();
    aborted
}

/// Publishes due versions and expires timed-out transaction-interface txns.
async fn ticker(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = interval.tick() => {}
        }
        let changed = {
            let mut state = shared.lock();
            let mut changed = state.publish_due(Instant::now());
            for (_, context) in state.contexts.take_expired(Instant::now()) {
                if state.txns.abort(context.txn_id, "timeout by txn manager") {
                    state.counters.failed(&context.db, &context.table);
                    changed = true;
                }
            }
            for task in state.multi.take_expired(Instant::now()) {
                let reason = format!("transaction timeout after {}ms", task.timeout.as_millis());
                if state.txns.abort(task.txn_id, &reason) {
                    for table in task.tables.keys() {
                        state.counters.failed(&task.db, table);
                    }
                    let tables = task.table_list();
                    state
                        .counters
                        .txn_event(&task.db, &task.label, "abort", &tables);
                    changed = true;
                }
            }
            if !state.txns.expire_prepared().is_empty() {
                changed = true;
            }
            if changed {
                shared.persist(&state);
            }
            changed
        };
        if changed {
            shared.notify_changed();
        }
    }
}
