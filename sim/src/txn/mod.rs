//! The FE's transaction and label book: one record per load transaction, labels unique per
//! database (reference §4 "Labels", §5 state matrix).
//!
//! Owns the label rules: a label whose txn is COMMITTED/VISIBLE answers `Label Already Exists`
//! with `FINISHED`, one still PREPARE/PREPARED answers `RUNNING`, an ABORTED label is free again,
//! and a finished label older than the retention (`label_keep_max_second`, 3 days) is evicted and
//! may be loaded again. It also enforces the running-txn limit per database. It does not hold load
//! data for in-flight txns (the BE side does) and does not apply data to the catalog; it does keep
//! the batch of a PREPARED txn, which — like StarRocks — survives a BE restart and is committed
//! by the FE.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::catalog::{ChangeBatch, PreparedBatch};

pub(crate) mod multi;
pub(crate) mod stream_context;

/// FE `label_keep_max_second`: how long a finished label is remembered.
pub const DEFAULT_LABEL_KEEP: Duration = Duration::from_secs(259_200);
/// FE `max_running_txn_num_per_db` (default since 3.1).
pub const DEFAULT_MAX_RUNNING_TXN_PER_DB: usize = 1000;

/// A transaction's state, as `get_load_state` and the FE report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxnStatus {
    /// No such label (or evicted).
    Unknown,
    /// Begun, data being loaded.
    Prepare,
    /// Prepared (transaction interface), waiting for commit.
    Prepared,
    /// Committed, not yet visible (publish pending).
    Committed,
    /// Committed and visible.
    Visible,
    /// Rolled back; the label is free.
    Aborted,
}

impl TxnStatus {
    /// Upper-case StarRocks name.
    pub fn as_str(&self) -> &'static str {
        match self {
            TxnStatus::Unknown => "UNKNOWN",
            TxnStatus::Prepare => "PREPARE",
            TxnStatus::Prepared => "PREPARED",
            TxnStatus::Committed => "COMMITTED",
            TxnStatus::Visible => "VISIBLE",
            TxnStatus::Aborted => "ABORTED",
        }
    }

    /// Whether the txn's data is committed (COMMITTED or VISIBLE).
    pub fn is_committed(&self) -> bool {
        matches!(self, TxnStatus::Committed | TxnStatus::Visible)
    }

    /// Whether the txn is still running (PREPARE or PREPARED).
    pub fn is_running(&self) -> bool {
        matches!(self, TxnStatus::Prepare | TxnStatus::Prepared)
    }
}

impl fmt::Display for TxnStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which interface started the txn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnKind {
    /// A plain `_stream_load`.
    StreamLoad,
    /// The transaction interface (`/api/transaction/...`).
    Transaction,
    /// A multi-table transaction of the transaction interface (`transaction_type: multi`,
    /// StarRocks 4.0+): one label over several tables of one database, run by the FE.
    MultiTable,
}

/// Row counters reported by prepare/commit responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TxnCounts {
    /// `NumberTotalRows`.
    pub total_rows: u64,
    /// `NumberLoadedRows`.
    pub loaded_rows: u64,
    /// `NumberFilteredRows`.
    pub filtered_rows: u64,
    /// `NumberUnselectedRows`.
    pub unselected_rows: u64,
    /// `LoadBytes`.
    pub load_bytes: u64,
}

/// One transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnRecord {
    /// Transaction id.
    pub id: i64,
    /// Label.
    pub label: String,
    /// Database.
    pub db: String,
    /// Table.
    pub table: String,
    /// Current state.
    pub status: TxnStatus,
    /// Interface that started it.
    pub kind: TxnKind,
    /// Abort reason (empty unless ABORTED).
    pub reason: String,
    /// Unix milliseconds when it reached a final state (VISIBLE or ABORTED) or COMMITTED.
    pub finished_at_ms: Option<u64>,
    /// Batch kept while PREPARED (committed later by the FE).
    pub prepared_batch: Option<ChangeBatch>,
    /// Counters of the data, once known.
    pub counts: TxnCounts,
    /// Unix ms after which a PREPARED txn is aborted (`prepared_timeout`).
    pub prepared_deadline_ms: Option<u64>,
    /// `prepared_batch` validated at prepare time, outside the state lock, so the FE's commit
    /// holds the lock only to apply it (a cache: never persisted, not kept by a clone).
    #[serde(skip)]
    pub(crate) prepared_check: PreparedCheck,
}

/// The validation of a PREPARED txn's batch ([`PreparedBatch`]), or none. Cloning or
/// deserializing gives none (the commit then validates under the lock, as before); it never takes
/// part in equality.
#[derive(Debug, Default)]
pub(crate) struct PreparedCheck(Option<PreparedBatch>);

impl Clone for PreparedCheck {
    fn clone(&self) -> Self {
        PreparedCheck(None)
    }
}

impl PartialEq for PreparedCheck {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Why `begin` refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginError {
    /// The label is taken; `existing` is `FINISHED` or `RUNNING`.
    LabelExists {
        /// `ExistingJobStatus`.
        existing: &'static str,
    },
    /// Label syntax.
    InvalidLabel(String),
    /// Too many running txns in the database.
    TooManyRunning(String),
}

/// All transactions, by id, with the label index per database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnBook {
    next_id: i64,
    records: BTreeMap<i64, TxnRecord>,
    #[serde(with = "label_index")]
    labels: HashMap<(String, String), i64>,
    label_keep_ms: u64,
    max_running_per_db: usize,
}

impl TxnBook {
    /// An empty book.
    pub fn new(label_keep: Duration, max_running_per_db: usize) -> TxnBook {
        TxnBook {
            next_id: 1001,
            records: BTreeMap::new(),
            labels: HashMap::new(),
            label_keep_ms: u64::try_from(label_keep.as_millis()).unwrap_or(u64::MAX),
            max_running_per_db,
        }
    }

    /// Replaces the retention and limit (after loading a snapshot written with other options).
    pub fn configure(&mut self, label_keep: Duration, max_running_per_db: usize) {
        self.label_keep_ms = u64::try_from(label_keep.as_millis()).unwrap_or(u64::MAX);
        self.max_running_per_db = max_running_per_db;
    }

    /// The live record for a label in a database (evicted labels are forgotten here).
    pub fn by_label(&mut self, db: &str, label: &str) -> Option<&TxnRecord> {
        self.evict_expired(db, label);
        let id = self.labels.get(&(db.to_string(), label.to_string()))?;
        self.records.get(id)
    }

    /// The state of a label (`UNKNOWN` when absent or evicted).
    pub fn status_of(&mut self, db: &str, label: &str) -> TxnStatus {
        self.by_label(db, label)
            .map_or(TxnStatus::Unknown, |r| r.status)
    }

    /// A record by id.
    pub fn get(&self, id: i64) -> Option<&TxnRecord> {
        self.records.get(&id)
    }

    /// Begins a txn: validates the label, enforces label uniqueness (aborted labels are reused)
    /// and the running-txn limit, and records it as PREPARE.
    pub fn begin(
        &mut self,
        db: &str,
        table: &str,
        label: &str,
        kind: TxnKind,
    ) -> Result<i64, BeginError> {
        if !is_valid_label(label) {
            return Err(BeginError::InvalidLabel(format!(
                "Label format error. regex: ^[-\\w]{{1,128}}$, label: {label}"
            )));
        }
        if let Some(existing) = self.by_label(db, label) {
            if existing.status.is_committed() {
                return Err(BeginError::LabelExists {
                    existing: "FINISHED",
                });
            }
            if existing.status.is_running() {
                return Err(BeginError::LabelExists {
                    existing: "RUNNING",
                });
            }
        }
        let running = self
            .records
            .values()
            .filter(|r| r.db == db && (r.status.is_running() || r.status == TxnStatus::Committed))
            .count();
        if running >= self.max_running_per_db {
            return Err(BeginError::TooManyRunning(format!(
                "current running txns on db {db} is {running}, larger than limit {}",
                self.max_running_per_db
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.records.insert(
            id,
            TxnRecord {
                id,
                label: label.to_string(),
                db: db.to_string(),
                table: table.to_string(),
                status: TxnStatus::Prepare,
                kind,
                reason: String::new(),
                finished_at_ms: None,
                prepared_batch: None,
                prepared_check: PreparedCheck::default(),
                counts: TxnCounts::default(),
                prepared_deadline_ms: None,
            },
        );
        self.labels.insert((db.to_string(), label.to_string()), id);
        Ok(id)
    }

    /// Aborts a running txn (no-op for committed or already aborted ones). Returns whether it
    /// changed state.
    pub fn abort(&mut self, id: i64, reason: &str) -> bool {
        let Some(record) = self.records.get_mut(&id) else {
            return false;
        };
        if !record.status.is_running() {
            return false;
        }
        record.status = TxnStatus::Aborted;
        record.reason = reason.to_string();
        record.prepared_batch = None;
        record.prepared_check = PreparedCheck::default();
        record.finished_at_ms = Some(now_ms());
        true
    }

    /// Marks a txn PREPARED with its data.
    pub fn mark_prepared(
        &mut self,
        id: i64,
        batch: ChangeBatch,
        counts: TxnCounts,
        prepared_timeout: Duration,
    ) {
        if let Some(record) = self.records.get_mut(&id) {
            record.status = TxnStatus::Prepared;
            record.prepared_batch = Some(batch);
            record.counts = counts;
            record.prepared_deadline_ms =
                Some(now_ms().saturating_add(
                    u64::try_from(prepared_timeout.as_millis()).unwrap_or(u64::MAX),
                ));
        }
    }

    /// Keeps `check`, the prepare-time validation of a PREPARED txn's batch, for its commit.
    pub(crate) fn set_prepared_check(&mut self, id: i64, check: PreparedBatch) {
        if let Some(record) = self.records.get_mut(&id) {
            if record.status == TxnStatus::Prepared {
                record.prepared_check = PreparedCheck(Some(check));
            }
        }
    }

    /// Takes a PREPARED txn's batch and its validation out for the commit, which owns them from
    /// here: the caller holds the state lock until the txn is settled or [`Self::restore_prepared`].
    pub(crate) fn take_prepared(&mut self, id: i64) -> (ChangeBatch, Option<PreparedBatch>) {
        match self.records.get_mut(&id) {
            Some(record) => (
                record.prepared_batch.take().unwrap_or_default(),
                std::mem::take(&mut record.prepared_check).0,
            ),
            None => (ChangeBatch::default(), None),
        }
    }

    /// Puts back the batch of a txn a commit did not settle (still PREPARED).
    pub(crate) fn restore_prepared(&mut self, id: i64, batch: ChangeBatch) {
        if let Some(record) = self.records.get_mut(&id) {
            if record.status == TxnStatus::Prepared {
                record.prepared_batch = Some(batch);
            }
        }
    }

    /// Records the tables a multi-table txn loads so far (comma-separated, as StarRocks shows
    /// them).
    pub fn set_table(&mut self, id: i64, table: &str) {
        if let Some(record) = self.records.get_mut(&id) {
            record.table = table.to_string();
        }
    }

    /// Marks a txn COMMITTED (publish pending) or VISIBLE.
    pub fn mark_committed(&mut self, id: i64, visible: bool, counts: TxnCounts) {
        if let Some(record) = self.records.get_mut(&id) {
            record.status = if visible {
                TxnStatus::Visible
            } else {
                TxnStatus::Committed
            };
            record.prepared_batch = None;
            record.prepared_check = PreparedCheck::default();
            record.prepared_deadline_ms = None;
            record.counts = counts;
            record.finished_at_ms = Some(now_ms());
        }
    }

    /// Marks a COMMITTED txn VISIBLE.
    pub fn mark_visible(&mut self, id: i64) {
        if let Some(record) = self.records.get_mut(&id) {
            if record.status == TxnStatus::Committed {
                record.status = TxnStatus::Visible;
            }
        }
    }

    /// Aborts PREPARED txns whose `prepared_timeout` passed; returns their ids.
    pub fn expire_prepared(&mut self) -> Vec<i64> {
        let now = now_ms();
        let expired: Vec<i64> = self
            .records
            .values()
            .filter(|r| {
                r.status == TxnStatus::Prepared && r.prepared_deadline_ms.is_some_and(|d| d <= now)
            })
            .map(|r| r.id)
            .collect();
        for id in &expired {
            self.abort(*id, "timeout by txn manager");
        }
        expired
    }

    /// Forgets every finished label (simulates `label_keep_max_second` passing), optionally only
    /// in one database. Returns how many labels were evicted.
    pub fn evict_finished_labels(&mut self, db: Option<&str>) -> usize {
        let evict: Vec<(String, String)> = self
            .labels
            .iter()
            .filter(|((d, _), id)| {
                db.is_none_or(|want| want == d)
                    && self.records.get(id).is_some_and(|r| !r.status.is_running())
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &evict {
            if let Some(id) = self.labels.remove(key) {
                self.records.remove(&id);
            }
        }
        evict.len()
    }

    /// Aborts every PREPARE txn (a BE restart loses their stream contexts) and returns them.
    pub fn abort_all_prepare(&mut self, reason: &str) -> Vec<i64> {
        let ids: Vec<i64> = self
            .records
            .values()
            .filter(|r| r.status == TxnStatus::Prepare)
            .map(|r| r.id)
            .collect();
        for id in &ids {
            self.abort(*id, reason);
        }
        ids
    }

    fn evict_expired(&mut self, db: &str, label: &str) {
        let key = (db.to_string(), label.to_string());
        let Some(id) = self.labels.get(&key) else {
            return;
        };
        let expired = self.records.get(id).is_some_and(|r| {
            !r.status.is_running()
                && r.finished_at_ms
                    .is_some_and(|t| now_ms().saturating_sub(t) > self.label_keep_ms)
        });
        if expired {
            if let Some(id) = self.labels.remove(&key) {
                self.records.remove(&id);
            }
        }
    }
}

/// FE label syntax `^[-\w]{1,128}$` (`\w` = ASCII letters, digits, `_`).
pub fn is_valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 128
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// JSON has no tuple keys: the label index is stored as a list.
mod label_index {
    use std::collections::HashMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Index = HashMap<(String, String), i64>;

    pub(super) fn serialize<S: Serializer>(index: &Index, s: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&String, &String, i64)> =
            index.iter().map(|((d, l), id)| (d, l, *id)).collect();
        entries.sort();
        entries.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Index, D::Error> {
        let entries: Vec<(String, String, i64)> = Vec::deserialize(d)?;
        Ok(entries.into_iter().map(|(d, l, id)| ((d, l), id)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> TxnBook {
        TxnBook::new(DEFAULT_LABEL_KEEP, 3)
    }

    #[test]
    fn labels_follow_the_state_rules() {
        let mut b = book();
        let id = b.begin("db", "t", "l1", TxnKind::StreamLoad).unwrap();
        assert_eq!(
            b.begin("db", "t", "l1", TxnKind::StreamLoad),
            Err(BeginError::LabelExists {
                existing: "RUNNING"
            })
        );
        // Another database has its own labels.
        assert!(b.begin("db2", "t", "l1", TxnKind::StreamLoad).is_ok());
        b.mark_committed(id, true, TxnCounts::default());
        assert_eq!(
            b.begin("db", "t", "l1", TxnKind::StreamLoad),
            Err(BeginError::LabelExists {
                existing: "FINISHED"
            })
        );
        assert_eq!(b.status_of("db", "l1"), TxnStatus::Visible);

        let id2 = b.begin("db", "t", "l2", TxnKind::StreamLoad).unwrap();
        assert!(b.abort(id2, "bad data"));
        assert_eq!(b.status_of("db", "l2"), TxnStatus::Aborted);
        let id3 = b.begin("db", "t", "l2", TxnKind::StreamLoad).unwrap();
        assert_ne!(id2, id3);
        assert_eq!(b.status_of("db", "nope"), TxnStatus::Unknown);
    }

    #[test]
    fn label_syntax_limit_and_eviction() {
        let mut b = book();
        assert!(matches!(
            b.begin("db", "t", "bad label", TxnKind::StreamLoad),
            Err(BeginError::InvalidLabel(_))
        ));
        assert!(is_valid_label(&"a".repeat(128)));
        assert!(!is_valid_label(&"a".repeat(129)));
        for l in ["a", "b", "c"] {
            b.begin("db", "t", l, TxnKind::StreamLoad).unwrap();
        }
        assert!(matches!(
            b.begin("db", "t", "d", TxnKind::StreamLoad),
            Err(BeginError::TooManyRunning(_))
        ));
        let id = b.by_label("db", "a").unwrap().id;
        b.mark_committed(id, true, TxnCounts::default());
        assert_eq!(b.evict_finished_labels(None), 1);
        assert_eq!(b.status_of("db", "a"), TxnStatus::Unknown);
        let json = serde_json::to_string(&b).unwrap();
        let back: TxnBook = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
    }
}
