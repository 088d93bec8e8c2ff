//! Source transactions larger than a batch land whole (invariant 11, `STARWAL_COMMIT_MODE=table`).
//!
//! A batch sealed while its last change's source transaction is still open (the buffer filled,
//! or `STARWAL_FLUSH_ROWS`/`_BYTES`/`_INTERVAL_MS` fired mid-transaction) does not go out as a
//! Stream Load of its own, which StarRocks would make visible at once: it begins a StarRocks
//! transaction of its table (the transaction interface, `sink/starrocks/transaction.rs`), and
//! every later part of that source transaction goes into it. At the source COMMIT the last part
//! goes in and the loader prepares, records the prepared label and range in the checkpoint, and
//! commits. The parts are sent and dropped as they are sealed (invariant 8: nothing is kept).
//!
//! The StarRocks transaction begins with the batch's first change, which may belong to an
//! earlier, committed source transaction: that one waits too, and the confirmed LSN stays before
//! the StarRocks transaction's first change until it commits (`TableState::oldest_pending`).
//!
//! Restart (each attempt, before streaming): a recorded prepared transaction is committed
//! (committed already is fine) and the table skips its changes through the recorded end; one not
//! prepared is rolled back and the table reads its changes again from the recorded start (none
//! was ever visible, so the new parts need not match the old ones). Labels name the first
//! change ([`Label::for_transaction`]), so the retry reuses the rolled-back label.
//!
//! Where a StarRocks transaction cannot hold a part, the source transaction becomes visible in
//! parts, with a warning: a part carrying partial updates (the transaction interface wants the
//! same data headers on every load; parts are sealed as JSON for that reason, `flush.rs`), and
//! a TRUNCATE, column change or copy barrier of the table in the middle of the source
//! transaction (StarRocks' schema change would wait for the open transaction, and a TRUNCATE
//! must not be undone by parts committed after it). The open transaction is committed first,
//! so order per key holds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::batch::SealedBatch;
use super::loader::{Job, TxnRole};
use super::park::RefusedAtStart;
use super::{Pipeline, PipelineError};
use crate::postgres::checkpoint::{Checkpoint, CheckpointStore};
use crate::postgres::{ChangePosition, Lsn};
use crate::sink::starrocks::label::Label;
use crate::sink::starrocks::transaction::{Committed, TransactionClient, TransactionError};

/// A table's StarRocks transaction as the pipeline sees it: parts sent, not yet closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenTxn {
    /// Its first change: names it and holds the confirmed LSN.
    pub(super) first: ChangePosition,
    /// The last change of the parts sent so far.
    pub(super) last: ChangePosition,
    /// The body format of its parts (`LoadBatch::csv_columns`): every load of one StarRocks
    /// transaction must carry the same data headers.
    pub(super) format: Option<Vec<String>>,
}

/// How a sealed batch goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    /// A Stream Load of its own (visible when it commits).
    Plain,
    /// Into the table's StarRocks transaction beginning at `first` (begun by this part when it
    /// is the first); `last_part` closes it.
    Part {
        first: ChangePosition,
        last_part: bool,
    },
}

/// The shape of a sealed batch that matters here: `Some(format)` when it is one full-row load
/// (which a StarRocks transaction can take), with its body format; `None` otherwise.
pub(super) fn shape(sealed: &SealedBatch) -> Option<Option<Vec<String>>> {
    match sealed.loads.as_slice() {
        [load] if load.partial_columns.is_none() => Some(load.csv_columns.clone()),
        _ => None,
    }
}

/// The decision, pure: `open` the table's open transaction, `shape` the batch's ([`shape`]),
/// `mid` whether the batch ends inside a source transaction still open. Returns whether the open
/// transaction must be closed (committed as it is) first, and the batch's route.
pub(super) fn route(
    open: Option<&OpenTxn>,
    shape: Option<&Option<Vec<String>>>,
    first: ChangePosition,
    mid: bool,
) -> (bool, Route) {
    match (open, shape) {
        (Some(open), Some(format)) if open.format == *format => (
            false,
            Route::Part {
                first: open.first,
                last_part: !mid,
            },
        ),
        // The part cannot join (another shape): close what is open, then as if none were.
        (Some(_), shape) => (true, route(None, shape, first, mid).1),
        (None, Some(_)) if mid => (
            false,
            Route::Part {
                first,
                last_part: false,
            },
        ),
        (None, _) => (false, Route::Plain),
    }
}

/// Why a batch going out as plain loads (`Route::Plain`) makes source transactions visible in
/// steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PlainSplit {
    /// The batch ends inside its source transaction (partial updates or several bodies kept it
    /// out of a StarRocks transaction): that part is visible before the source COMMIT.
    MidTransaction,
    /// A whole batch sealed into several loads, one per column set (soft-delete key-only rows,
    /// unchanged TOAST without an earlier image): each is a Stream Load of its own, so a source
    /// transaction with rows in more than one becomes visible load by load.
    ColumnSets,
}

/// The decision, pure: `mid` as for [`route`], `closed` whether the table's open StarRocks
/// transaction was just closed for this batch (already counted as split: the batch is the tail
/// of that same source transaction), `loads` how many loads the batch was sealed into.
pub(super) fn plain_split(mid: bool, closed: bool, loads: usize) -> Option<PlainSplit> {
    if mid {
        Some(PlainSplit::MidTransaction)
    } else if !closed && loads > 1 {
        Some(PlainSplit::ColumnSets)
    } else {
        None
    }
}

/// How often a table warns about whole batches visible in steps: with soft deletes every batch
/// mixing deletes and other writes is one, which would flood the log.
pub(super) const SPLIT_WARN_EVERY: Duration = Duration::from_secs(60);

/// A table's rate limit for the [`PlainSplit::ColumnSets`] warning (every batch is counted; the
/// log gets one line per [`SPLIT_WARN_EVERY`] with how many it stands for).
#[derive(Debug, Default)]
pub(super) struct SplitWarnings {
    last: Option<Instant>,
    /// Batches since the last warning that were not logged.
    quiet: u64,
}

impl SplitWarnings {
    /// One more such batch at `now`: `Some(batches not logged before it)` when it is to be
    /// logged, `None` when the last warning is too recent.
    pub(super) fn note(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < SPLIT_WARN_EVERY => {
                self.quiet += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.quiet))
            }
        }
    }
}

/// The loads of a batch for the warning: label, and which columns each writes.
fn describe_loads(sealed: &SealedBatch) -> String {
    let loads: Vec<String> = sealed
        .loads
        .iter()
        .map(|load| match &load.partial_columns {
            None => format!("{} (full rows: {})", load.label, load.rows),
            Some(columns) => format!(
                "{} (partial update of {}: {})",
                load.label,
                columns.join(", "),
                load.rows
            ),
        })
        .collect();
    loads.join("; ")
}

/// What the restart found of a table's recorded StarRocks transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// It was prepared and is committed now (or was already): skip through its end.
    Committed,
    /// It was not prepared (or was aborted): rolled back; its changes are read again.
    RolledBack,
}

/// How the restart settled the StarRocks transactions a previous run left.
#[derive(Debug, Default)]
pub struct RecoveredTransactions {
    /// Per target table.
    pub outcomes: HashMap<String, Recovered>,
    /// Prepared ones whose commit StarRocks refuses for good: their tables start parked.
    pub refused: Vec<RefusedAtStart>,
}

/// Settles the StarRocks transactions a previous run left, before streaming resumes: commits
/// the prepared ones, rolls back the others.
pub async fn recover_transactions(
    txns: &TransactionClient,
    store: &CheckpointStore,
    client: &tokio_postgres::Client,
    checkpoint: &Checkpoint,
    confirmed: Lsn,
) -> Result<RecoveredTransactions, PipelineError> {
    let recorded = store
        .transactions(client)
        .await
        .map_err(PipelineError::Checkpoint)?;
    let mut recovered = RecoveredTransactions::default();
    for txn in recorded {
        let Some(load) = checkpoint.in_flight.iter().find(|l| l.table == txn.table) else {
            continue;
        };
        if load.last.commit < confirmed {
            // Confirmed: it committed before the confirmed LSN could pass it.
            continue;
        }
        let label = Label::from_recorded(&txn.label);
        let outcome = if txn.prepared {
            match txns.commit(&txn.table, &label).await {
                Ok(committed) => {
                    tracing::info!(table = %txn.table, %label, first = %load.first, last = %load.last, already = committed == Committed::Already, "committed the StarRocks transaction a previous run had prepared");
                    Recovered::Committed
                }
                Err(TransactionError::Aborted { message, .. }) => {
                    tracing::warn!(table = %txn.table, %label, %message, "a prepared StarRocks transaction was aborted (prepared_timeout passed?): its changes are loaded again");
                    Recovered::RolledBack
                }
                Err(err) => {
                    recovered.refused.push(RefusedAtStart::from_commit_error(
                        txn.table,
                        label.as_str(),
                        load.first,
                        err,
                    )?);
                    continue;
                }
            }
        } else {
            txns.rollback(&txn.table, &label)
                .await
                .map_err(PipelineError::from)?;
            tracing::info!(table = %txn.table, %label, first = %load.first, "rolled back the StarRocks transaction a previous run left open: its changes are loaded again");
            Recovered::RolledBack
        };
        recovered.outcomes.insert(txn.table, outcome);
    }
    Ok(recovered)
}

impl Pipeline {
    /// Queues a sealed batch: as a Stream Load of its own, or as a part of the table's
    /// StarRocks transaction ([`route`]).
    pub(super) fn send_sealed(
        &mut self,
        index: usize,
        sealed: SealedBatch,
    ) -> Result<(), PipelineError> {
        if let Some(multi) = &mut self.multi {
            // `transaction` mode: into the group being cut (multi.rs).
            multi.add_to_group(index, sealed);
            return Ok(());
        }
        let mid = self
            .transaction
            .is_some_and(|(commit, _)| commit == sealed.last.commit);
        let shape = shape(&sealed);
        let (close, route) = route(
            self.tables[index].txn.as_ref(),
            shape.as_ref(),
            sealed.first,
            mid,
        );
        if close {
            self.close_transaction(index, "a part with partial updates or another body format");
        }
        match route {
            Route::Plain => {
                let split = plain_split(mid, close, sealed.loads.len());
                match split {
                    Some(PlainSplit::MidTransaction) => {
                        tracing::warn!(table = %self.tables[index].target, first = %sealed.first, last = %sealed.last, "part of a source transaction larger than a batch carries partial updates (or several bodies): it is visible before its commit");
                    }
                    Some(PlainSplit::ColumnSets) => {
                        let table = &mut self.tables[index];
                        if let Some(quiet) = table.split_warnings.note(Instant::now()) {
                            tracing::warn!(table = %table.target, first = %sealed.first, last = %sealed.last, loads = %describe_loads(&sealed), earlier_not_logged = quiet, "a batch holds rows of several column sets (soft-delete key-only rows or unchanged TOAST without an earlier image): it goes out as one Stream Load per column set, so a source transaction in it may be visible in steps (counted in transactions_split; logged at most once a minute per table)");
                        }
                    }
                    None => {}
                }
                if split.is_some() {
                    self.context
                        .handle
                        .transaction_split(&self.tables[index].source_name);
                }
                let range = (sealed.first, sealed.last);
                self.send(index, Job::Load(sealed), Some(range))
            }
            Route::Part { first, last_part } => {
                let table = &mut self.tables[index];
                table.txn = if last_part {
                    None
                } else {
                    Some(OpenTxn {
                        first,
                        last: sealed.last,
                        format: shape.flatten(),
                    })
                };
                let role = TxnRole {
                    label: Label::for_transaction(&self.settings.slot, &table.target, first),
                    first,
                    last_part,
                    stream: None,
                };
                // The range starts at the transaction's first change: until it commits, nothing
                // from there on is confirmed.
                let range = (first, sealed.last);
                self.send(index, Job::LoadPart(sealed, role), Some(range))
            }
        }
    }

    /// Closes (prepares and commits) table `index`'s StarRocks transaction as it is, before
    /// `why`: the source transaction becomes visible in parts (see the module docs).
    pub(super) fn close_transaction(&mut self, index: usize, why: &str) {
        if self.multi.is_some() {
            // A send error shows on the job sent next.
            let _ = self.close_multi(Some(why));
            return;
        }
        let Some(open) = self.tables[index].txn.take() else {
            return;
        };
        let table = &self.tables[index];
        tracing::warn!(table = %table.target, first = %open.first, last = %open.last, "{why} in the middle of a source transaction: its StarRocks transaction is committed before it, so the transaction is visible in parts");
        self.context.handle.transaction_split(&table.source_name);
        let range = (open.first, open.last);
        let job = Job::CloseTransaction {
            label: Label::for_transaction(&self.settings.slot, &table.target, open.first),
            last: open.last,
        };
        // Sent like any job; a loader already gone fails the next send too.
        let _ = self.send(index, job, Some(range));
    }

    /// At a stop: every table's open StarRocks transaction is rolled back by its loader (after
    /// the parts queued before it). Nothing of them was visible or is confirmed.
    pub(super) fn abandon_transactions(&mut self) {
        self.abandon_multi();
        for index in 0..self.tables.len() {
            // Kept, not taken: it holds the confirmed LSN before its first change until the
            // pipeline ends. That change may belong to an earlier source transaction, already
            // committed at the source and rolled back here with the rest: without the hold the
            // final store would confirm it, and the next start would never read it again.
            let Some(first) = self.tables[index].txn.as_ref().map(|open| open.first) else {
                continue;
            };
            let target = &self.tables[index].target;
            let label = Label::for_transaction(&self.settings.slot, target, first);
            tracing::info!(table = %target, %label, "stopping inside a source transaction: its StarRocks transaction is rolled back (its changes stream again on the next start)");
            // A loader already gone cannot roll back: the next start or the idle timeout does.
            let _ = self.send(index, Job::AbandonTransaction(label), None);
        }
    }

    /// The source transaction committed: every table's StarRocks transaction gets its last part
    /// (what the batch holds now) and is closed.
    pub(super) async fn close_transactions_at_commit(&mut self) -> Result<(), PipelineError> {
        if self.multi.is_some() {
            return self.close_multi_at_commit().await;
        }
        for index in 0..self.tables.len() {
            if self.tables[index].txn.is_none() {
                continue;
            }
            // `self.transaction` is over: the sealed part is the last one.
            self.flush(index).await?;
            if let Some(open) = self.tables[index].txn.take() {
                // Nothing left to seal: close with the parts already sent.
                let target = &self.tables[index].target;
                let job = Job::CloseTransaction {
                    label: Label::for_transaction(&self.settings.slot, target, open.first),
                    last: open.last,
                };
                self.send(index, job, Some((open.first, open.last)))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(commit: u64, seq: u32) -> ChangePosition {
        ChangePosition {
            commit: Lsn(commit),
            seq,
        }
    }

    fn open(first: ChangePosition, format: Option<Vec<String>>) -> OpenTxn {
        OpenTxn {
            first,
            last: first,
            format,
        }
    }

    const JSON: Option<&Option<Vec<String>>> = Some(&None);

    #[test]
    fn inv11_a_whole_batch_goes_as_a_plain_load() {
        assert_eq!(route(None, JSON, at(10, 1), false), (false, Route::Plain));
        // Partial updates, not mid-transaction: plain too.
        assert_eq!(route(None, None, at(10, 1), false), (false, Route::Plain));
    }

    #[test]
    fn inv11_a_batch_ending_mid_transaction_begins_a_starrocks_transaction() {
        assert_eq!(
            route(None, JSON, at(10, 1), true),
            (
                false,
                Route::Part {
                    first: at(10, 1),
                    last_part: false
                }
            )
        );
    }

    #[test]
    fn inv11_later_parts_join_and_the_one_after_the_commit_closes() {
        let txn = open(at(10, 1), None);
        assert_eq!(
            route(Some(&txn), JSON, at(20, 5), true),
            (
                false,
                Route::Part {
                    first: at(10, 1),
                    last_part: false
                }
            )
        );
        assert_eq!(
            route(Some(&txn), JSON, at(20, 9), false),
            (
                false,
                Route::Part {
                    first: at(10, 1),
                    last_part: true
                }
            )
        );
    }

    #[test]
    fn inv11_a_whole_batch_of_several_column_sets_counts_as_split() {
        // One load: nothing visible in steps.
        assert_eq!(plain_split(false, false, 1), None);
        // Full rows plus soft-delete key-only rows (or unchanged TOAST): two Stream Loads.
        assert_eq!(plain_split(false, false, 2), Some(PlainSplit::ColumnSets));
        // Mid-transaction: the existing warning, whatever the number of loads.
        assert_eq!(
            plain_split(true, false, 1),
            Some(PlainSplit::MidTransaction)
        );
        assert_eq!(plain_split(true, true, 2), Some(PlainSplit::MidTransaction));
        // The tail of a transaction whose StarRocks transaction was just closed: counted there.
        assert_eq!(plain_split(false, true, 2), None);
    }

    #[test]
    fn inv11_the_column_sets_warning_is_logged_once_a_minute_with_a_count() {
        let mut warnings = SplitWarnings::default();
        let start = Instant::now();
        assert_eq!(warnings.note(start), Some(0));
        assert_eq!(warnings.note(start + Duration::from_secs(1)), None);
        assert_eq!(warnings.note(start + Duration::from_secs(59)), None);
        // A minute on: logged, standing for the two that were not.
        assert_eq!(warnings.note(start + SPLIT_WARN_EVERY), Some(2));
        assert_eq!(warnings.note(start + SPLIT_WARN_EVERY), None);
        assert_eq!(warnings.note(start + 2 * SPLIT_WARN_EVERY), Some(1));
    }

    #[test]
    fn inv11_a_part_of_another_shape_closes_the_transaction_first() {
        let txn = open(at(10, 1), None);
        // Partial updates: the open transaction commits, the part goes plain.
        assert_eq!(
            route(Some(&txn), None, at(20, 5), true),
            (true, Route::Plain)
        );
        // Another body format, still mid-transaction: a new transaction from this part.
        let csv = Some(vec!["id".to_owned()]);
        assert_eq!(
            route(Some(&txn), Some(&csv), at(20, 5), true),
            (
                true,
                Route::Part {
                    first: at(20, 5),
                    last_part: false
                }
            )
        );
        // The same format: joins.
        let csv_txn = open(at(10, 1), csv.clone());
        assert!(!route(Some(&csv_txn), Some(&csv), at(20, 5), false).0);
    }
}
