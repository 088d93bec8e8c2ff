//! Parking: one table's permanent error (a load StarRocks refuses for good, a value its target
//! column cannot hold) stops that table only, while the others keep streaming (invariant 13).
//!
//! "Held" means dropped and replayed, as for a copy while streaming: from its first change not
//! in StarRocks (the held position) the parked table's changes are dropped, and the confirmed
//! LSN stays before that position (`TableState::oldest_pending`), so the slot retains the WAL
//! from there. A retry (`starwal retry --table`) or a resync ends the attempt like a drain; the
//! next one streams from the confirmed LSN again: the parked table gets every change it held,
//! and the other tables skip what they loaded meanwhile by the restart rule (their loads in
//! flight stay recorded while the confirmed LSN holds). With `STARWAL_EXIT_ON_ERROR` nothing is
//! parked: the error ends the run as before.

use super::batch::{self, TableBatch};
use super::{Pipeline, PipelineError};
use crate::postgres::ChangePosition;

/// A StarRocks transaction a previous run prepared whose commit StarRocks refuses for good, as
/// the restart found it (`txn::recover_transactions`, `stream::recover_streams`): its table
/// starts parked from the transaction's first change and its record stays, so the other tables
/// stream while someone acts; `starwal retry --table` tries the commit again.
#[derive(Debug)]
pub struct RefusedAtStart {
    pub target: String,
    pub first: ChangePosition,
    pub error: PipelineError,
}

impl RefusedAtStart {
    /// `err`, met committing table `target`'s prepared transaction `label` (first change
    /// `first`) at the restart: a refusal for good parks the table (`Ok`); anything else stops
    /// the start (`Err`).
    pub(super) fn from_commit_error(
        target: String,
        label: &str,
        first: ChangePosition,
        err: crate::sink::starrocks::transaction::TransactionError,
    ) -> Result<RefusedAtStart, PipelineError> {
        match PipelineError::from(err).refused_in_transaction(&target, label, first) {
            error @ PipelineError::TransactionRefused { .. } => Ok(RefusedAtStart {
                target,
                first,
                error,
            }),
            error => Err(error),
        }
    }
}

impl Pipeline {
    /// Parks table `index` from `held` on, for `error`. `loader_gone`: its loader stopped at the
    /// failed job, so the jobs queued after it will never report back.
    pub(super) fn park(
        &mut self,
        index: usize,
        held: ChangePosition,
        error: &PipelineError,
        loader_gone: bool,
    ) {
        let table = &mut self.tables[index];
        // An open StarRocks transaction's parts are not visible (and its loader stops or will
        // not close it): the table is held from its first change.
        let held = table.txn.take().map_or(held, |txn| txn.first.min(held));
        let held = table.parked.map_or(held, |earlier| earlier.min(held));
        table.parked = Some(held);
        if loader_gone {
            table.queued.clear();
            table.jobs_open = 0;
        }
        // The open batch is dropped: its changes stream again after the retry.
        let mut fresh = TableBatch::default();
        fresh.set_row_overhead(batch::body_row_overhead(&table.schema));
        table.batch = fresh;
        table.resume = None;
        table.sync_buffered(&self.context.handle);
        self.drop_table_streams(index);
        let table = &self.tables[index];
        let detail = crate::error_text::chain(error).to_string();
        tracing::error!(
            table = %table.source_name,
            held_from = %held,
            error = %detail,
            "table parked: its changes are held from here (the slot retains the WAL) while the \
             other tables keep streaming; fix the cause, then `starwal retry --table {}` or \
             `starwal resync --table {}`",
            table.source_name,
            table.source_name
        );
        self.context
            .handle
            .table_parked(&table.source_name, &held.to_string(), &detail);
    }
}
