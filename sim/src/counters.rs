//! Per-table load counters, so tests can prove exactly-once delivery: how many loads committed,
//! how many rows they carried, which labels were tried and which committed.
//!
//! Owns counting only; the commit path updates it under the same lock that applies the data, so a
//! reader never sees rows without their count or the reverse. Counters live for the process (they
//! are not persisted with `--data-dir`).

use std::collections::BTreeMap;

use serde::Serialize;

/// Counters of one table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TableCounters {
    /// Loads (plain or transaction interface) that committed.
    pub loads_committed: u64,
    /// Loads that ended `Fail` or were rolled back after a txn began.
    pub loads_failed: u64,
    /// Rows in committed loads (`NumberLoadedRows`).
    pub rows_loaded: u64,
    /// Rows filtered in committed loads.
    pub rows_filtered: u64,
    /// Labels of committed loads, in commit order (a duplicate here would break exactly-once).
    pub labels_committed: Vec<String>,
    /// Every label that reached begin-txn, with how many attempts used it.
    pub label_attempts: BTreeMap<String, u64>,
}

/// Counters of all tables, keyed by (database, table).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Counters {
    tables: BTreeMap<(String, String), TableCounters>,
}

impl Counters {
    pub(crate) fn table(&self, db: &str, table: &str) -> TableCounters {
        self.tables
            .get(&(db.to_string(), table.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn all(&self) -> Vec<(String, String, TableCounters)> {
        self.tables
            .iter()
            .map(|((d, t), c)| (d.clone(), t.clone(), c.clone()))
            .collect()
    }

    fn entry(&mut self, db: &str, table: &str) -> &mut TableCounters {
        self.tables
            .entry((db.to_string(), table.to_string()))
            .or_default()
    }

    pub(crate) fn attempted(&mut self, db: &str, table: &str, label: &str) {
        *self
            .entry(db, table)
            .label_attempts
            .entry(label.to_string())
            .or_default() += 1;
    }

    pub(crate) fn committed(
        &mut self,
        db: &str,
        table: &str,
        label: &str,
        loaded: u64,
        filtered: u64,
    ) {
        let c = self.entry(db, table);
        c.loads_committed += 1;
        c.rows_loaded += loaded;
        c.rows_filtered += filtered;
        c.labels_committed.push(label.to_string());
    }

    pub(crate) fn failed(&mut self, db: &str, table: &str) {
        self.entry(db, table).loads_failed += 1;
    }
}
