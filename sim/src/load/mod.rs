//! Turning a Stream Load request into a [`ChangeBatch`]: header options, the `columns` mapping,
//! decompression, JSON/CSV framing and per-row conversion, with the row counters and error-log
//! lines StarRocks reports (reference §2, §3 "Filter ratio", §6).
//!
//! Owns everything between "the body bytes arrived" and "here are the changes and the counts".
//! It does not decide outcomes (the HTTP side applies `max_filter_ratio`, faults and commit) and
//! does not touch the catalog: a plan is built from the table schema at plan time and its batch
//! is applied at commit.

mod body;
mod columns;
pub(crate) mod options;
mod plan;
mod rows;

pub(crate) use body::decompress;
pub(crate) use plan::LoadPlan;

use crate::catalog::ChangeBatch;

/// At most this many error lines are kept per load (the rest are only counted).
const MAX_ERROR_LINES: usize = 1000;

/// Rows and counters accumulated by one load (or by all `load` calls of one transaction).
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadProgress {
    /// Changes that passed conversion, in arrival order.
    pub(crate) batch: ChangeBatch,
    /// `NumberTotalRows`.
    pub(crate) total_rows: u64,
    /// `NumberFilteredRows`.
    pub(crate) filtered_rows: u64,
    /// `NumberUnselectedRows` (always 0: `where` is not supported).
    pub(crate) unselected_rows: u64,
    /// Error-log lines for filtered rows.
    pub(crate) error_lines: Vec<String>,
    /// Bytes received over HTTP (`LoadBytes`), before decompression.
    pub(crate) received_bytes: u64,
    /// CSV bytes after the last row delimiter, carried to the next transaction `load`.
    pub(crate) csv_tail: Vec<u8>,
    /// CSV rows seen so far, for `skip_header`.
    pub(crate) csv_rows_seen: u64,
}

impl LoadProgress {
    /// Empty progress writing into `batch`.
    pub(crate) fn new(batch: ChangeBatch) -> LoadProgress {
        LoadProgress {
            batch,
            ..LoadProgress::default()
        }
    }

    /// Counts a filtered row and keeps its reason for the error log.
    pub(crate) fn filter(&mut self, line: String) {
        self.filtered_rows += 1;
        if self.error_lines.len() < MAX_ERROR_LINES {
            self.error_lines.push(format!("Error: {line}"));
        }
    }

    /// `NumberLoadedRows`.
    pub(crate) fn loaded_rows(&self) -> u64 {
        self.total_rows - self.filtered_rows - self.unselected_rows
    }

    /// StarRocks' check: filtered > ratio × (total − unselected) fails the load.
    pub(crate) fn exceeds_filter_ratio(&self, max_filter_ratio: f64) -> bool {
        let considered = (self.total_rows - self.unselected_rows) as f64;
        self.filtered_rows as f64 > max_filter_ratio * considered
    }
}
