//! Fault injection: failures StarRocks produces in the field, on demand (reference §8 and the
//! "Fault injection" checklist item).
//!
//! Owns the fault book and the exact messages each fault produces. Load faults fire on the next
//! N matching loads (any table, or one `db`/`table`) at the point where StarRocks would fail:
//! before begin (HTTP concurrency limit, shutting down), at begin (running-txn limit, not master),
//! mid-body (connection reset), at write (too many versions, memory, txn timeout, any message) or
//! at commit (publish timeout — committed, visible later; commit-unknown — committed but answered
//! `Fail`; commit then dropped connection). A fault is consumed only when its point is reached.
//! Server faults (refuse or reset connections, delay replies, FE "No backend alive.") stay on
//! until cleared. It does not run loads; the HTTP side asks it at each point.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A failure injected into loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// `Failed to load data into tablet <id>, because of too many versions, …` (≥2.5) or, with
    /// `legacy`, `Too many versions. tablet_id: …`. Write phase; txn aborted.
    TooManyVersions {
        /// Use the pre-2.5 message.
        #[serde(default)]
        legacy: bool,
    },
    /// `Memory of process exceed limit. … Mem usage has exceed the limit of BE`. Write phase.
    MemoryExceeded,
    /// `timeout by txn manager`. Write phase.
    TxnTimeout,
    /// `Fail` with this message. Write phase.
    Fail {
        /// The `Message` to answer.
        message: String,
    },
    /// Commit succeeds but publish is late: answer `Publish Timeout`; rows become visible after
    /// `visible_after_ms`.
    PublishTimeout {
        /// Delay before the rows become visible.
        #[serde(default = "default_visible_after_ms")]
        visible_after_ms: u64,
    },
    /// The txn commits, but the answer is `Fail` with `Commit transaction fail cause …,
    /// Transaction status unknown, you can retry with same label.`
    CommitUnknown,
    /// The txn commits, then the connection is closed without an answer.
    CommitThenDropConnection,
    /// The txn commits (rows visible), then the answer is held back for `stall_ms` — a window in
    /// which a client can crash after StarRocks committed but before it learned so.
    CommitThenStall {
        /// How long the answer is held back.
        stall_ms: u64,
    },
    /// Part of the body is read, then the connection is reset; the txn is aborted.
    ResetMidBody,
    /// `Stream Load exceed http cuncurrent limit 47, please try again later` (sic), before begin.
    HttpConcurrencyLimit,
    /// `Service is shutting down, please retry later!`, before begin.
    ServiceShuttingDown,
    /// `current running txns on db …, larger than limit 1000`, at begin.
    RunningTxnLimit,
    /// `current fe is not master`, at begin (an FE leader change).
    NotMaster,
    /// A transaction-interface step (`begin`, `load`, `prepare`, `commit`, `rollback`; single- or
    /// multi-table) fails, or is cut off before or after it takes effect — so a test can stop a
    /// client at every step of a two-phase commit.
    TxnStep {
        /// Which operation.
        op: TxnOp,
        /// What happens to it.
        #[serde(default)]
        effect: TxnEffect,
        /// With `stall_after`: how long the answer is held back.
        #[serde(default)]
        stall_ms: u64,
    },
}

/// A transaction-interface operation, for [`FaultKind::TxnStep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnOp {
    /// `/api/transaction/begin`.
    Begin,
    /// `/api/transaction/load`.
    Load,
    /// `/api/transaction/prepare`.
    Prepare,
    /// `/api/transaction/commit`.
    Commit,
    /// `/api/transaction/rollback`.
    Rollback,
}

impl TxnOp {
    /// The operation's name in the URL.
    pub fn as_str(&self) -> &'static str {
        match self {
            TxnOp::Begin => "begin",
            TxnOp::Load => "load",
            TxnOp::Prepare => "prepare",
            TxnOp::Commit => "commit",
            TxnOp::Rollback => "rollback",
        }
    }
}

/// What a [`FaultKind::TxnStep`] does to its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnEffect {
    /// The operation is refused with an error and has no effect; like any error after begin,
    /// it rolls the transaction back (begin: no transaction is created).
    #[default]
    Fail,
    /// The connection is closed before the operation takes effect (a `load` body is not read
    /// and, as a broken load does, rolls the transaction back).
    DropBefore,
    /// The operation takes effect, then the connection is closed without an answer (the
    /// client cannot know it happened: "outcome unknown").
    DropAfter,
    /// The operation takes effect, then the answer is held back `stall_ms` — a window to kill
    /// the client in.
    StallAfter,
    /// The request is held `stall_ms` before the operation takes effect — a window to kill the
    /// client in with the step sent but not applied. Matches on the request's `db` and `table`
    /// headers.
    StallBefore,
}

impl FaultKind {
    /// Whether this is a [`TxnEffect::StallBefore`] step fault.
    pub(crate) fn is_stall_before(&self) -> bool {
        matches!(
            self,
            FaultKind::TxnStep {
                effect: TxnEffect::StallBefore,
                ..
            }
        )
    }
}

fn default_visible_after_ms() -> u64 {
    2000
}

/// Where in a load a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultPoint {
    /// After header checks, before begin.
    BeforeBegin,
    /// The begin-txn call.
    Begin,
    /// While reading the body.
    Body,
    /// After the body is parsed, before commit.
    Write,
    /// At commit.
    Commit,
    /// A transaction-interface operation ([`FaultKind::TxnStep`]).
    Txn(TxnOp),
}

impl FaultKind {
    pub(crate) fn point(&self) -> FaultPoint {
        match self {
            FaultKind::HttpConcurrencyLimit | FaultKind::ServiceShuttingDown => {
                FaultPoint::BeforeBegin
            }
            FaultKind::RunningTxnLimit | FaultKind::NotMaster => FaultPoint::Begin,
            FaultKind::ResetMidBody => FaultPoint::Body,
            FaultKind::TooManyVersions { .. }
            | FaultKind::MemoryExceeded
            | FaultKind::TxnTimeout
            | FaultKind::Fail { .. } => FaultPoint::Write,
            FaultKind::PublishTimeout { .. }
            | FaultKind::CommitUnknown
            | FaultKind::CommitThenDropConnection
            | FaultKind::CommitThenStall { .. } => FaultPoint::Commit,
            FaultKind::TxnStep { op, .. } => FaultPoint::Txn(*op),
        }
    }

    /// The `Message` a failing fault answers with.
    pub(crate) fn message(&self, db: &str, tablet_id: u64, be_host: &str, txn_id: i64) -> String {
        match self {
            FaultKind::TooManyVersions { legacy: false } => format!(
                "Failed to load data into tablet {tablet_id}, because of too many versions, current/limit: 1001/1000. You can reduce the loading job concurrency, or increase loading data batch size. If you are loading data with Routine Load, you can increase FE configs routine_load_task_consume_second and max_routine_load_batch_size,"
            ),
            FaultKind::TooManyVersions { legacy: true } => format!(
                "Too many versions. tablet_id: {tablet_id}, version_count: 1001, limit: 1000"
            ),
            FaultKind::MemoryExceeded => format!(
                "Memory of process exceed limit. Load Backend: {be_host}, Used: 2147483648, Limit: 2147483648. Mem usage has exceed the limit of BE"
            ),
            FaultKind::TxnTimeout => "timeout by txn manager".to_string(),
            FaultKind::Fail { message } => message.clone(),
            FaultKind::PublishTimeout { .. } => format!(
                "Publish timeout. The data will be visible after a while, txn_id: {txn_id}"
            ),
            FaultKind::CommitUnknown => "Commit transaction fail cause TTransportException: java.net.SocketTimeoutException: Read timed out, Transaction status unknown, you can retry with same label.".to_string(),
            FaultKind::CommitThenDropConnection
            | FaultKind::CommitThenStall { .. }
            | FaultKind::ResetMidBody => String::new(),
            FaultKind::HttpConcurrencyLimit => {
                "Stream Load exceed http cuncurrent limit 47, please try again later".to_string()
            }
            FaultKind::ServiceShuttingDown => "Service is shutting down, please retry later!".to_string(),
            FaultKind::RunningTxnLimit => {
                format!("current running txns on db {db} is 1000, larger than limit 1000")
            }
            FaultKind::NotMaster => "current fe is not master".to_string(),
            FaultKind::TxnStep { op, .. } => {
                format!("starrocks-sim injected failure at transaction {}", op.as_str())
            }
        }
    }
}

/// A load fault with its target and remaining count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadFault {
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// How many more loads it hits.
    #[serde(default = "one")]
    pub count: u32,
    /// Only loads into this database (any when `None`).
    #[serde(default)]
    pub db: Option<String>,
    /// Only loads into this table (any when `None`).
    #[serde(default)]
    pub table: Option<String>,
}

fn one() -> u32 {
    1
}

impl LoadFault {
    /// A fault for the next load into any table.
    pub fn new(kind: FaultKind) -> LoadFault {
        LoadFault {
            kind,
            count: 1,
            db: None,
            table: None,
        }
    }

    /// Hits the next `count` loads instead of one.
    pub fn times(mut self, count: u32) -> LoadFault {
        self.count = count;
        self
    }

    /// Only loads into `db.table`.
    pub fn on_table(mut self, db: impl Into<String>, table: impl Into<String>) -> LoadFault {
        self.db = Some(db.into());
        self.table = Some(table.into());
        self
    }

    fn matches(&self, db: &str, table: &str) -> bool {
        self.count > 0
            && self.db.as_deref().is_none_or(|d| d == db)
            && self.table.as_deref().is_none_or(|t| t == table)
    }
}

/// Which HTTP server a server fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerRole {
    /// FE HTTP (8030).
    Fe,
    /// BE HTTP (8040).
    Be,
}

/// Connection-level behaviour of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServerFaults {
    /// Close the listening socket: connections are refused.
    pub refuse_connections: bool,
    /// Accept, then reset each connection before reading a request.
    pub reset_connections: bool,
    /// Delay every reply by this many milliseconds.
    pub delay_ms: u64,
}

/// Everything currently injected.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FaultState {
    /// Pending load faults, in injection order.
    pub loads: Vec<LoadFault>,
    /// FE server faults.
    pub fe: ServerFaults,
    /// BE server faults.
    pub be: ServerFaults,
    /// FE answers `No backend alive.` instead of redirecting.
    pub no_backend_alive: bool,
}

/// Shared handle to the fault book; cheap to clone. Every change bumps a version that the
/// servers watch (a refused listener is re-opened when the fault is cleared).
#[derive(Debug, Clone)]
pub struct Faults {
    state: Arc<Mutex<FaultState>>,
    version: Arc<watch::Sender<u64>>,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults::new()
    }
}

impl Faults {
    /// An empty fault book.
    pub fn new() -> Faults {
        Faults {
            state: Arc::new(Mutex::new(FaultState::default())),
            version: Arc::new(watch::channel(0).0),
        }
    }

    /// Adds a load fault.
    pub fn inject(&self, fault: LoadFault) {
        self.update(|s| s.loads.push(fault));
    }

    /// Sets the connection-level faults of one server.
    pub fn set_server(&self, role: ServerRole, faults: ServerFaults) {
        self.update(|s| match role {
            ServerRole::Fe => s.fe = faults,
            ServerRole::Be => s.be = faults,
        });
    }

    /// Turns the FE's `No backend alive.` answer on or off.
    pub fn set_no_backend_alive(&self, on: bool) {
        self.update(|s| s.no_backend_alive = on);
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.update(|s| *s = FaultState::default());
    }

    /// A copy of what is injected.
    pub fn snapshot(&self) -> FaultState {
        self.lock().clone()
    }

    /// The connection-level faults of one server.
    pub fn server(&self, role: ServerRole) -> ServerFaults {
        let s = self.lock();
        match role {
            ServerRole::Fe => s.fe,
            ServerRole::Be => s.be,
        }
    }

    /// Whether the FE answers `No backend alive.`.
    pub(crate) fn no_backend_alive(&self) -> bool {
        self.lock().no_backend_alive
    }

    /// Consumes one matching fault for this point, if any.
    pub(crate) fn take(&self, point: FaultPoint, db: &str, table: &str) -> Option<FaultKind> {
        let mut taken = None;
        self.update(|s| {
            if let Some(fault) = s
                .loads
                .iter_mut()
                .find(|f| f.kind.point() == point && f.matches(db, table))
            {
                fault.count -= 1;
                taken = Some(fault.kind.clone());
            }
            s.loads.retain(|f| f.count > 0);
        });
        taken
    }

    /// Consumes one matching fault for this point in an operation touching several tables (a
    /// multi-table transaction): a fault filtered on a table matches when that table is one of
    /// them.
    pub(crate) fn take_any(
        &self,
        point: FaultPoint,
        db: &str,
        tables: &[String],
    ) -> Option<FaultKind> {
        self.take_matching(point, db, tables, |_| true)
    }

    /// [`Faults::take_any`] limited to faults `wanted` accepts.
    pub(crate) fn take_matching(
        &self,
        point: FaultPoint,
        db: &str,
        tables: &[String],
        wanted: impl Fn(&FaultKind) -> bool,
    ) -> Option<FaultKind> {
        let mut taken = None;
        self.update(|s| {
            if let Some(fault) = s.loads.iter_mut().find(|f| {
                f.kind.point() == point
                    && wanted(&f.kind)
                    && f.count > 0
                    && f.db.as_deref().is_none_or(|d| d == db)
                    && f.table
                        .as_deref()
                        .is_none_or(|t| tables.iter().any(|have| have == t))
            }) {
                fault.count -= 1;
                taken = Some(fault.kind.clone());
            }
            s.loads.retain(|f| f.count > 0);
        });
        taken
    }

    /// A receiver that changes whenever faults change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The reply delay of a server.
    pub(crate) fn delay(&self, role: ServerRole) -> Duration {
        Duration::from_millis(self.server(role).delay_ms)
    }

    fn update(&self, f: impl FnOnce(&mut FaultState)) {
        f(&mut self.lock());
        self.version.send_modify(|v| *v += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        // A panic while holding this lock cannot leave the plain-data state inconsistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_at_their_point_on_matching_tables_and_count_down() {
        let faults = Faults::new();
        faults.inject(
            LoadFault::new(FaultKind::MemoryExceeded)
                .times(2)
                .on_table("db", "t"),
        );
        assert_eq!(faults.take(FaultPoint::Commit, "db", "t"), None);
        assert_eq!(faults.take(FaultPoint::Write, "db", "other"), None);
        assert_eq!(
            faults.take(FaultPoint::Write, "db", "t"),
            Some(FaultKind::MemoryExceeded)
        );
        assert_eq!(
            faults.take(FaultPoint::Write, "db", "t"),
            Some(FaultKind::MemoryExceeded)
        );
        assert_eq!(faults.take(FaultPoint::Write, "db", "t"), None);
        assert!(faults.snapshot().loads.is_empty());
    }

    #[test]
    fn admin_json_shape() {
        let f: LoadFault = serde_json::from_str(
            r#"{"kind":"too_many_versions","legacy":true,"count":3,"db":"d","table":"t"}"#,
        )
        .unwrap();
        assert_eq!(f.kind, FaultKind::TooManyVersions { legacy: true });
        assert_eq!(f.count, 3);
        let f: LoadFault = serde_json::from_str(r#"{"kind":"publish_timeout"}"#).unwrap();
        assert_eq!(
            f.kind,
            FaultKind::PublishTimeout {
                visible_after_ms: 2000
            }
        );
        assert_eq!(f.count, 1);
        assert!(serde_json::from_str::<LoadFault>(r#"{"kind":"nope"}"#).is_err());
    }
}
