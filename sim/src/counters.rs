//! Per-table load counters, so tests can prove exactly-once delivery: how many loads committed,
//! how many rows they carried, which labels were tried and which committed; and what a client
//! cannot be trusted to report about itself: how many of its loads of one table the BE handled at
//! once (invariant 4, one load in flight per table) and which `max_filter_ratio` each load asked
//! for (invariant 6: StarRocks' default is also 0, so only the request shows the header was sent);
//! and a digest of every body read under each label, so a test can tell whether a load sent again
//! under its label carried the same bytes (invariant 5: a re-formed batch is the same batch).
//!
//! Owns counting only; the commit path updates it under the same lock that applies the data, so a
//! reader never sees rows without their count or the reverse. Counters live for the process (they
//! are not persisted with `--data-dir`).

use std::collections::BTreeMap;
use std::hash::Hasher;

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
    /// Plain Stream Loads of this table the BE is handling now (request received, answer not
    /// yet written).
    pub loads_in_progress: u64,
    /// The most plain Stream Loads of this table the BE handled at the same time.
    pub max_loads_in_progress: u64,
    /// Plain Stream Loads that reached begin-txn, by the text of their `max_filter_ratio` header
    /// ([`MAX_FILTER_RATIO_ABSENT`] when the header was not sent).
    pub max_filter_ratio_headers: BTreeMap<String, u64>,
    /// Plain Stream Load bodies the BE read in full, by label: the [`body_digest`] of each, in
    /// arrival order. An attempt refused before its body was read (a label already committed
    /// answers at begin, before `100 Continue`) has none.
    pub body_digests: BTreeMap<String, Vec<String>>,
}

/// A digest of a body as received (before decompression): its length and a 64-bit hash, equal
/// for equal bytes within one sim process (std's `DefaultHasher` with its fixed keys; cheap next
/// to parsing the body).
pub fn body_digest(body: &[u8]) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(body);
    format!("{}:{:016x}", body.len(), hasher.finish())
}

/// The [`TableCounters::max_filter_ratio_headers`] key of loads sent without the header.
pub const MAX_FILTER_RATIO_ABSENT: &str = "(absent)";

/// Counters of one label's transaction commits, across all the tables it touched — what a test
/// needs to prove no transaction was committed twice.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct LabelCounters {
    /// How many times a commit under this label was applied (1 for a committed label; StarRocks
    /// refuses a second, so more than 1 can only follow a label eviction).
    pub commits: u64,
    /// Tables the commit(s) wrote, in name order (several for a multi-table transaction).
    pub tables: Vec<String>,
    /// Rows the commit(s) carried over all tables (`NumberLoadedRows`).
    pub rows: u64,
    /// Whether it was a multi-table transaction (`transaction_type: multi`).
    pub multi_table: bool,
}

/// One transaction-interface step that took effect, in order (see [`Counters::txn_event`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxnEvent {
    /// Sequence number, from 1, over the sim's life.
    pub seq: u64,
    /// Database.
    pub db: String,
    /// Label.
    pub label: String,
    /// `begin`, `load`, `prepare`, `commit`, `rollback`, or `abort` (the sim rolled the
    /// transaction back: an error, a timeout, a BE restart).
    pub op: String,
    /// The table(s) concerned (comma-separated; empty for a multi-table begin).
    pub tables: String,
}

/// How many [`TxnEvent`]s are kept (oldest dropped first).
pub const MAX_TXN_EVENTS: usize = 100_000;

/// Counters of all tables, keyed by (database, table).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Counters {
    tables: BTreeMap<(String, String), TableCounters>,
    labels: BTreeMap<(String, String), LabelCounters>,
    events: std::collections::VecDeque<TxnEvent>,
    next_event: u64,
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

    /// A plain Stream Load of the table reached the BE.
    pub(crate) fn load_started(&mut self, db: &str, table: &str) {
        let c = self.entry(db, table);
        c.loads_in_progress += 1;
        c.max_loads_in_progress = c.max_loads_in_progress.max(c.loads_in_progress);
    }

    /// A plain Stream Load of the table was answered (or its connection dropped).
    pub(crate) fn load_ended(&mut self, db: &str, table: &str) {
        let c = self.entry(db, table);
        c.loads_in_progress = c.loads_in_progress.saturating_sub(1);
    }

    /// A plain Stream Load began its txn with this `max_filter_ratio` header (`None`: absent).
    pub(crate) fn max_filter_ratio_sent(&mut self, db: &str, table: &str, header: Option<&str>) {
        *self
            .entry(db, table)
            .max_filter_ratio_headers
            .entry(header.unwrap_or(MAX_FILTER_RATIO_ABSENT).to_string())
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

    /// A plain Stream Load's body was read in full.
    pub(crate) fn body_received(&mut self, db: &str, table: &str, label: &str, digest: String) {
        self.entry(db, table)
            .body_digests
            .entry(label.to_string())
            .or_default()
            .push(digest);
    }

    pub(crate) fn failed(&mut self, db: &str, table: &str) {
        self.entry(db, table).loads_failed += 1;
    }

    /// A txn's commit was applied (once per label, whatever the number of tables).
    pub(crate) fn label_committed(
        &mut self,
        db: &str,
        label: &str,
        tables: &[String],
        rows: u64,
        multi_table: bool,
    ) {
        let c = self
            .labels
            .entry((db.to_string(), label.to_string()))
            .or_default();
        c.commits += 1;
        c.rows += rows;
        c.multi_table |= multi_table;
        for t in tables {
            if !c.tables.contains(t) {
                c.tables.push(t.clone());
            }
        }
        c.tables.sort();
    }

    /// Commit counters of every label of a database that committed.
    pub(crate) fn labels(&self, db: &str) -> BTreeMap<String, LabelCounters> {
        self.labels
            .iter()
            .filter(|((d, _), _)| d == db)
            .map(|((_, l), c)| (l.clone(), c.clone()))
            .collect()
    }

    /// Records a transaction-interface step that took effect.
    pub(crate) fn txn_event(&mut self, db: &str, label: &str, op: &str, tables: &str) {
        self.next_event += 1;
        self.events.push_back(TxnEvent {
            seq: self.next_event,
            db: db.to_string(),
            label: label.to_string(),
            op: op.to_string(),
            tables: tables.to_string(),
        });
        while self.events.len() > MAX_TXN_EVENTS {
            self.events.pop_front();
        }
    }

    /// Transaction-interface events with `seq` greater than `after`.
    pub(crate) fn txn_events(&self, after: u64) -> Vec<TxnEvent> {
        self.events
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_in_progress_keep_their_maximum_and_headers_are_counted_by_text() {
        let mut counters = Counters::default();
        counters.load_started("db", "t");
        counters.load_started("db", "t");
        counters.load_ended("db", "t");
        counters.load_started("db", "t");
        counters.load_ended("db", "t");
        counters.load_ended("db", "t");
        counters.load_started("db", "other");
        counters.max_filter_ratio_sent("db", "t", Some("0"));
        counters.max_filter_ratio_sent("db", "t", None);
        counters.max_filter_ratio_sent("db", "t", Some("0"));
        let t = counters.table("db", "t");
        assert_eq!((t.loads_in_progress, t.max_loads_in_progress), (0, 2));
        assert_eq!(counters.table("db", "other").max_loads_in_progress, 1);
        assert_eq!(
            t.max_filter_ratio_headers,
            BTreeMap::from([
                ("0".to_string(), 2),
                (MAX_FILTER_RATIO_ABSENT.to_string(), 1)
            ])
        );
    }

    #[test]
    fn labels_count_commits_across_tables_and_events_are_numbered() {
        let mut counters = Counters::default();
        let tables = ["b".to_string(), "a".to_string()];
        counters.label_committed("db", "l1", &tables, 5, true);
        counters.label_committed("db", "l2", &tables[..1], 1, false);
        counters.label_committed("other", "l1", &tables[..1], 1, false);
        let labels = counters.labels("db");
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["l1"].commits, 1);
        assert_eq!(labels["l1"].tables, ["a", "b"]);
        assert!(labels["l1"].multi_table);
        counters.txn_event("db", "l1", "begin", "");
        counters.txn_event("db", "l1", "commit", "a,b");
        let events = counters.txn_events(1);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].seq, events[0].op.as_str()), (2, "commit"));
    }

    #[test]
    fn bodies_are_digested_per_label_in_arrival_order() {
        let mut counters = Counters::default();
        counters.body_received("db", "t", "l1", body_digest(b"[1]"));
        counters.body_received("db", "t", "l1", body_digest(b"[2]"));
        counters.body_received("db", "t", "l2", body_digest(b"[1]"));
        let digests = counters.table("db", "t").body_digests;
        assert_eq!(digests["l1"].len(), 2);
        assert_ne!(digests["l1"][0], digests["l1"][1], "different bytes");
        assert_eq!(digests["l1"][0], digests["l2"][0], "same bytes");
        assert!(digests["l1"][0].starts_with("3:"), "{}", digests["l1"][0]);
    }
}
