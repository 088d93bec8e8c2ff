//! The FE's open multi-table transactions (`transaction_type: multi`, StarRocks 4.0+; FE
//! `StreamLoadMultiStmtTask`): one label over several tables of one database.
//!
//! Owns what is open: per table, the stream context its loads append to (plan fixed by the
//! table's first load), the `timeout` counted from begin, and the "committing" mark that refuses
//! new loads while a commit runs. A task leaves this map when it commits or is cancelled; its
//! final state (COMMITED/FINISHED = the txn's COMMITTED/VISIBLE, CANCELLED = ABORTED) is then read
//! from the txn book, which keeps it until the label is evicted — so, as in StarRocks, a
//! multi-table label is not reusable after a rollback. Unlike single-table txns there is no
//! PREPARED state (the FE handler has no `prepare`), no `idle_transaction_timeout` and no
//! `prepared_timeout`. It is lost on a restart (the txn is aborted), as the FE cancels such tasks
//! after its own restart.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::stream_context::StreamContext;

/// FE default `timeout` of a transaction-interface txn when the header is absent
/// (`TransactionLoadAction.DEFAULT_TXN_TIMEOUT_MILLIS`): 20 seconds.
pub(crate) const DEFAULT_MULTI_TIMEOUT: Duration = Duration::from_secs(20);

/// One open multi-table transaction.
#[derive(Debug)]
pub(crate) struct MultiTask {
    /// FE transaction id.
    pub(crate) txn_id: i64,
    /// Label.
    pub(crate) label: String,
    /// Database.
    pub(crate) db: String,
    /// Per table (in the order of their names), the loads so far.
    pub(crate) tables: BTreeMap<String, StreamContext>,
    /// When `begin` ran.
    pub(crate) begun_at: Instant,
    /// `timeout` on begin, counted from begin.
    pub(crate) timeout: Duration,
    /// A commit is running: new loads are refused.
    pub(crate) committing: bool,
}

impl MultiTask {
    /// Whether the task is past its `timeout` at `now` (a committing task is left alone).
    pub(crate) fn expired(&self, now: Instant) -> bool {
        !self.committing && now.duration_since(self.begun_at) > self.timeout
    }

    /// The tables loaded so far, comma-separated (StarRocks' `getTableName`).
    pub(crate) fn table_list(&self) -> String {
        self.tables.keys().cloned().collect::<Vec<_>>().join(",")
    }

    /// The tables loaded so far.
    pub(crate) fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    /// Whether a load of any table is reading its body now.
    pub(crate) fn busy(&self) -> bool {
        self.tables.values().any(|c| c.busy)
    }
}

/// Open multi-table tasks by label (the FE keys its stream load tasks by label).
#[derive(Debug, Default)]
pub(crate) struct MultiTasks {
    by_label: HashMap<String, MultiTask>,
}

impl MultiTasks {
    pub(crate) fn get(&self, label: &str) -> Option<&MultiTask> {
        self.by_label.get(label)
    }

    pub(crate) fn get_mut(&mut self, label: &str) -> Option<&mut MultiTask> {
        self.by_label.get_mut(label)
    }

    pub(crate) fn insert(&mut self, label: String, task: MultiTask) {
        self.by_label.insert(label, task);
    }

    pub(crate) fn remove(&mut self, label: &str) -> Option<MultiTask> {
        self.by_label.remove(label)
    }

    /// Removes and returns tasks past their `timeout` (not those committing or mid-load).
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<MultiTask> {
        let labels: Vec<String> = self
            .by_label
            .iter()
            .filter(|(_, t)| t.expired(now) && !t.busy())
            .map(|(l, _)| l.clone())
            .collect();
        labels
            .into_iter()
            .filter_map(|l| self.by_label.remove(&l))
            .collect()
    }

    /// Removes every task that is not committing (a BE restart fails their loads).
    pub(crate) fn take_open(&mut self) -> Vec<MultiTask> {
        let labels: Vec<String> = self
            .by_label
            .iter()
            .filter(|(_, t)| !t.committing)
            .map(|(l, _)| l.clone())
            .collect();
        labels
            .into_iter()
            .filter_map(|l| self.by_label.remove(&l))
            .collect()
    }

    /// Every open task: (label, txn id, database, tables, age).
    pub(crate) fn list(&self, now: Instant) -> Vec<(String, i64, String, Vec<String>, Duration)> {
        let mut out: Vec<_> = self
            .by_label
            .iter()
            .map(|(l, t)| {
                (
                    l.clone(),
                    t.txn_id,
                    t.db.clone(),
                    t.table_names(),
                    now.duration_since(t.begun_at),
                )
            })
            .collect();
        out.sort_by_key(|(_, id, ..)| *id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::LoadProgress;

    fn context(busy: bool) -> StreamContext {
        let now = Instant::now();
        StreamContext {
            txn_id: 1,
            db: "db".into(),
            table: "t".into(),
            plan: None,
            progress: LoadProgress::default(),
            busy,
            begun_at: now,
            last_active: now,
            timeout: DEFAULT_MULTI_TIMEOUT,
            idle_timeout: None,
        }
    }

    #[test]
    fn expiry_spares_committing_and_busy_tasks() {
        let start = Instant::now();
        let mut tasks = MultiTasks::default();
        for (label, committing, busy) in
            [("a", false, false), ("b", true, false), ("c", false, true)]
        {
            let mut tables = BTreeMap::new();
            tables.insert("t".to_string(), context(busy));
            tables.insert("s".to_string(), context(false));
            tasks.insert(
                label.into(),
                MultiTask {
                    txn_id: 1,
                    label: label.into(),
                    db: "db".into(),
                    tables,
                    begun_at: start,
                    timeout: Duration::from_millis(1),
                    committing,
                },
            );
        }
        assert_eq!(
            tasks.get("a").map(MultiTask::table_list).as_deref(),
            Some("s,t")
        );
        let expired = tasks.take_expired(start + Duration::from_secs(1));
        assert_eq!(expired.len(), 1);
        assert!(tasks.get("a").is_none());
        assert_eq!(
            tasks.take_open().len(),
            1,
            "only the busy one; committing stays"
        );
        assert!(tasks.get("b").is_some());
    }
}
