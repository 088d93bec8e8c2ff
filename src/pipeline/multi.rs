//! `STARWAL_COMMIT_MODE=transaction` (invariant 11 across tables, StarRocks ≥ 4.0): every
//! StarRocks commit covers one or more whole source transactions across all replicated tables of
//! the target database, in commit order, through one multi-table transaction
//! (`transaction_type: multi`, `sink/starrocks/transaction.rs`).
//!
//! **Cutting.** Any flush (a full batch, the interval, a full buffer, a drain) seals every
//! table's batch at once — a group — so the commit holds every table's changes up to one point
//! of the stream. A group cut between source transactions is whole: begin, one load per table,
//! commit. A group cut inside a source transaction (a buffer full mid-transaction) is a part of
//! a multi-table transaction left open: later parts join it as they are sealed (sent and dropped:
//! memory stays under the cap, invariant 8), and it commits at the source COMMIT. While it is
//! open its first change holds the confirmed LSN (invariants 1–3).
//!
//! **One loader.** In this mode every job of every table (the groups, TRUNCATE, column changes,
//! a copy's barrier) runs on one task, in stream order, so a column change of one table lands
//! between the commits that were formed without and with it. A TRUNCATE, column change or copy
//! barrier inside a source transaction commits the open multi-table transaction first (warned,
//! counted in `transactions_split`), as table mode does.
//!
//! **Exactly once without prepare.** StarRocks refuses `prepare` for multi-table transactions,
//! so the commit is one phase. Before `begin` (and before a table's first load into a
//! transaction already begun) each table's label and range are recorded in `loads_in_flight`
//! (`kind = 'multi'`); just before `commit` every table's final range is recorded. Labels are
//! `starwal_<slot>__m_<hash>_<first commit lsn>_a<attempt>`: a multi-table label is not reusable
//! after a rollback, so each attempt has its own number (restarts continue after the highest
//! recorded). On restart, before streaming ([`recover_multi`]), every recorded label is rolled
//! back (any answer: a committed one stays committed; a dead agent's open one would otherwise
//! read `PREPARE` until its timeout) and then looked up with `get_load_state`:
//! `VISIBLE`/`COMMITTED` = done, its tables skip their changes through the recorded end;
//! `PREPARE`/`PREPARED`/`COMMITTING` = ask again; `ABORTED`/`UNKNOWN` = not applied, its tables
//! read their changes again from the recorded start under the next attempt's label. A commit
//! whose answer is lost is settled the same way while running (`multi_commit`).
//!
//! **Exceptions** (visible in steps, warned, counted in `transactions_split`): a table batch that
//! is not one full-row load (partial updates of unchanged TOAST without an earlier image,
//! soft-delete key-only rows) cannot share a transaction's data headers: the group without it
//! commits first, then it goes as a plain load. A load StarRocks refuses stops the agent rather
//! than parking its table, since parking one table would show the others' halves of its
//! transactions.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tokio::sync::mpsc;

use super::batch::SealedBatch;
use super::error::TimedOut;
use super::loader::{self, Job, JobDone, LoaderContext};
use super::restart::Resume;
use super::txn::{shape, Recovered};
use super::{Pipeline, PipelineError};
use crate::postgres::checkpoint::{Checkpoint, CheckpointStore, InFlightLoad};
use crate::postgres::{ChangePosition, Lsn};
use crate::sink::starrocks::label::Label;
use crate::sink::starrocks::transaction::{
    LoadPartError, TransactionClient, TransactionError, MULTI_TABLES,
};
use crate::sink::LoadFailure;

/// One table's sealed batch in a group.
#[derive(Debug)]
pub(super) struct Part {
    index: usize,
    source: String,
    target: String,
    batch: SealedBatch,
}

/// Work for the loader of this mode, in stream order.
#[derive(Debug)]
pub(super) enum MultiJob {
    /// A job of one table (TRUNCATE, column change, barrier, a plain load).
    Table {
        index: usize,
        source: String,
        target: String,
        // Boxed: a job holding a sealed batch is much larger than the other variants.
        job: Box<Job>,
    },
    /// A group: into the open multi-table transaction (begun by it when none is open);
    /// `last_part` commits it after. `first_commit` names a transaction this part begins.
    Part {
        first_commit: Lsn,
        parts: Vec<Part>,
        last_part: bool,
    },
    /// Rolls the open multi-table transaction back (the pipeline stops inside its source
    /// transaction).
    Abandon,
}

/// The pipeline's side of the mode.
#[derive(Debug)]
pub(super) struct MultiState {
    jobs: mpsc::UnboundedSender<MultiJob>,
    task: tokio::task::JoinHandle<()>,
    /// The batches sealed for the group being cut.
    pending: Vec<(usize, SealedBatch)>,
    /// A group is being cut: a flush seals one table's batch into it.
    grouping: bool,
    /// The multi-table transaction with parts sent and not yet closed.
    open: Option<PipeOpen>,
    /// The open transaction was abandoned (stop): it keeps holding the confirmed LSN.
    abandoned: bool,
    /// Tables changed (or truncated) by the current source transaction.
    changed: std::collections::BTreeSet<usize>,
    /// Tables the current source transaction truncated.
    truncated: Vec<usize>,
    /// The current source transaction was already warned and counted as split (`close_multi`).
    split_told: bool,
}

#[derive(Debug)]
struct PipeOpen {
    /// The commit LSN of its first change: holds the confirmed LSN.
    first: Lsn,
    /// Its tables and their ranges in it.
    tables: BTreeMap<usize, (ChangePosition, ChangePosition)>,
}

impl MultiState {
    /// Spawns the mode's loader; labels start at attempt `attempt`.
    pub(super) fn spawn(
        context: LoaderContext,
        slot: String,
        attempt: u32,
        done: mpsc::UnboundedSender<JobDone>,
    ) -> MultiState {
        let (jobs, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_loader(context, slot, attempt, rx, done));
        MultiState {
            jobs,
            task,
            pending: Vec::new(),
            grouping: false,
            open: None,
            abandoned: false,
            changed: Default::default(),
            truncated: Vec::new(),
            split_told: false,
        }
    }

    /// What holds the confirmed LSN besides the tables' queued ranges.
    pub(super) fn oldest_pending(&self) -> Option<Lsn> {
        self.open.as_ref().map(|open| open.first)
    }

    /// A group is being cut (a flush seals into it).
    pub(super) fn grouping(&self) -> bool {
        self.grouping
    }

    /// Whether the loader task ended (after a failed job).
    pub(super) fn loader_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Ends the loader task (the pipeline stops).
    pub(super) async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Queues a table's job on the mode's loader.
    pub(super) fn send_table(
        &self,
        index: usize,
        source: &str,
        target: &str,
        job: Job,
    ) -> Result<(), PipelineError> {
        self.jobs
            .send(MultiJob::Table {
                index,
                source: source.to_owned(),
                target: target.to_owned(),
                job: Box::new(job),
            })
            .map_err(|_| PipelineError::LoaderGone(target.to_owned()))
    }

    /// Takes a sealed batch into the group being cut.
    pub(super) fn add_to_group(&mut self, index: usize, sealed: SealedBatch) {
        self.pending.push((index, sealed));
    }
}

impl Pipeline {
    /// Seals every table's batch into one group and sends it (see the module docs).
    pub(super) async fn flush_group(&mut self) -> Result<(), PipelineError> {
        match self.multi.as_mut() {
            Some(multi) if !multi.grouping => multi.grouping = true,
            _ => return Ok(()),
        }
        let mut result = Ok(());
        for index in 0..self.tables.len() {
            if self.tables[index].resume.is_some_and(Resume::is_reform) {
                // A batch being re-formed after a restart goes out only whole, under its
                // recorded label, when its rule ends (apply.rs `commit_passed`).
                continue;
            }
            if let Err(err) = self.seal_and_send(index).await {
                result = Err(err);
                break;
            }
        }
        let Some(multi) = self.multi.as_mut() else {
            return result;
        };
        multi.grouping = false;
        let parts = std::mem::take(&mut multi.pending);
        result?;
        self.send_group(parts)
    }

    fn send_group(&mut self, parts: Vec<(usize, SealedBatch)>) -> Result<(), PipelineError> {
        let Some(multi) = self.multi.as_mut() else {
            return Ok(());
        };
        if multi.abandoned {
            // Stopping: nothing more is loaded (what was sealed streams again next start).
            let held: u64 = parts.iter().map(|(_, sealed)| sealed.buffered_bytes).sum();
            self.context.handle.release_buffered(held);
            return Ok(());
        }
        if parts.is_empty() {
            return Ok(());
        }
        // One full-row load per table fits a transaction's data headers; others go plain.
        let (fit, odd): (Vec<_>, Vec<_>) = parts
            .into_iter()
            .partition(|(_, sealed)| matches!(shape(sealed), Some(None)));
        let current = self.transaction.map(|(commit, _)| commit);
        let open_before = multi.open.is_some();
        let mid = current.is_some_and(|commit| {
            open_before || fit.iter().any(|(_, sealed)| sealed.last.commit == commit)
        });
        // A plain load after a transaction still open would commit before that transaction's
        // earlier changes of its table: close first (order per key holds).
        let last_part = !mid || !odd.is_empty();
        if mid && last_part {
            tracing::warn!(tables = ?odd.iter().map(|(i, _)| self.tables[*i].target.as_str()).collect::<Vec<_>>(), "a batch of a source transaction larger than the buffer carries partial updates (or several column sets): the open multi-table transaction is committed before its commit, so the source transaction is visible in parts");
        }
        if !fit.is_empty() || (last_part && open_before) {
            let mut open = multi.open.take().unwrap_or_else(|| PipeOpen {
                first: fit
                    .iter()
                    .map(|(_, sealed)| sealed.first.commit)
                    .min()
                    .unwrap_or(Lsn::ZERO),
                tables: BTreeMap::new(),
            });
            for (index, sealed) in &fit {
                open.tables
                    .entry(*index)
                    .or_insert((sealed.first, sealed.last))
                    .1 = sealed.last;
            }
            if last_part {
                // Every table of the transaction is done when it commits: its whole range holds
                // the confirmed LSN until then. Queued only now, so each table's queue stays in
                // stream order (the confirmed LSN follows the queue's front).
                for (index, range) in &open.tables {
                    let table = &mut self.tables[*index];
                    table.queued.push_back(*range);
                    table.jobs_open += 1;
                    if mid {
                        self.context.handle.transaction_split(&table.source_name);
                    }
                }
            } else {
                // A part that leaves the transaction open confirms nothing when it is loaded
                // (it only releases its bytes): the open transaction's first change holds the
                // confirmed LSN meanwhile (`oldest_pending`). A range queued per part would sit
                // before the transaction's whole range and let the hold move past its start
                // once the part is loaded.
                for (index, _) in &fit {
                    self.tables[*index].jobs_open += 1;
                }
            }
            let first_commit = open.first;
            let parts: Vec<Part> = fit
                .into_iter()
                .map(|(index, batch)| Part {
                    index,
                    source: self.tables[index].source_name.clone(),
                    target: self.tables[index].target.clone(),
                    batch,
                })
                .collect();
            if !last_part {
                multi.open = Some(open);
            }
            multi
                .jobs
                .send(MultiJob::Part {
                    first_commit,
                    parts,
                    last_part,
                })
                .map_err(|_| PipelineError::LoaderGone(MULTI_TABLES.to_owned()))?;
        }
        for (index, sealed) in odd {
            let table = &mut self.tables[index];
            if let Some(quiet) = table.split_warnings.note(std::time::Instant::now()) {
                tracing::warn!(table = %table.target, first = %sealed.first, last = %sealed.last, earlier_not_logged = quiet, "a batch holds partial updates or several column sets (unchanged TOAST without an earlier image, soft-delete key-only rows): it cannot join a multi-table transaction and goes as plain Stream Loads after it, so its source transactions may be visible in steps (counted in transactions_split; logged at most once a minute per table)");
            }
            self.context.handle.transaction_split(&table.source_name);
            let range = (sealed.first, sealed.last);
            self.send(index, Job::Load(sealed), Some(range))?;
        }
        Ok(())
    }

    /// Commits the open multi-table transaction with the parts already sent; `why` (a DDL,
    /// TRUNCATE or copy inside its source transaction) makes it visible in parts: warned and
    /// counted.
    pub(super) fn close_multi(&mut self, why: Option<&str>) -> Result<(), PipelineError> {
        let Some(multi) = self.multi.as_mut() else {
            return Ok(());
        };
        if multi.abandoned {
            return Ok(());
        }
        let Some(open) = multi.open.take() else {
            return Ok(());
        };
        if let Some(why) = why {
            multi.split_told = true;
            tracing::warn!(first = %open.first, "{why} in the middle of a source transaction: the open multi-table transaction is committed before it, so the transaction is visible in parts");
        }
        for (index, range) in &open.tables {
            let table = &mut self.tables[*index];
            table.queued.push_back(*range);
            table.jobs_open += 1;
            if why.is_some() {
                self.context.handle.transaction_split(&table.source_name);
            }
        }
        multi
            .jobs
            .send(MultiJob::Part {
                first_commit: open.first,
                parts: Vec::new(),
                last_part: true,
            })
            .map_err(|_| PipelineError::LoaderGone(MULTI_TABLES.to_owned()))
    }

    /// The source transaction committed: the open multi-table transaction takes what is
    /// buffered as its last part and commits.
    pub(super) async fn close_multi_at_commit(&mut self) -> Result<(), PipelineError> {
        if self.multi.as_ref().is_none_or(|m| m.open.is_none()) {
            return Ok(());
        }
        // `self.transaction` is over: the group is the last part.
        self.flush_group().await?;
        // Nothing was left to seal: close with the parts sent.
        self.close_multi(None)
    }

    /// The current source transaction changes table `index` (apply.rs).
    pub(super) fn multi_change(&mut self, index: usize) {
        if let Some(multi) = self.multi.as_mut() {
            multi.changed.insert(index);
        }
    }

    /// The current source transaction truncates table `index` (apply.rs).
    pub(super) fn multi_truncate(&mut self, index: usize) {
        if let Some(multi) = self.multi.as_mut() {
            multi.changed.insert(index);
            multi.truncated.push(index);
        }
    }

    /// The source transaction `commit` ended: one that truncated a table and changed another
    /// (`TRUNCATE t0, t1`, or `TRUNCATE t0; INSERT INTO t1 …`) was visible in steps, since
    /// StarRocks cannot truncate inside a multi-table transaction (each TRUNCATE is its own
    /// `TRUNCATE TABLE`, between the groups): warned and counted in `transactions_split`.
    pub(super) fn multi_split_truncate(&mut self, commit: Lsn) {
        let Some(multi) = self.multi.as_mut() else {
            return;
        };
        let changed = std::mem::take(&mut multi.changed);
        let truncated = std::mem::take(&mut multi.truncated);
        let told = std::mem::replace(&mut multi.split_told, false);
        if truncated.is_empty() || changed.len() < 2 || told {
            return;
        }
        let name = |index: &usize| self.tables[*index].target.clone();
        let truncated: Vec<String> = truncated.iter().map(name).collect();
        let tables: Vec<String> = changed.iter().map(name).collect();
        tracing::warn!(commit = %commit, truncated = ?truncated, tables = ?tables, "a source transaction truncates a table and changes another: StarRocks cannot truncate inside a multi-table transaction, so each TRUNCATE runs on its own between the commits and the transaction is visible in steps (counted in transactions_split)");
        for index in changed {
            self.context
                .handle
                .transaction_split(&self.tables[index].source_name);
        }
    }

    /// At a stop: the open multi-table transaction is rolled back by the loader. It keeps
    /// holding the confirmed LSN (nothing of it is visible).
    pub(super) fn abandon_multi(&mut self) {
        let Some(multi) = self.multi.as_mut() else {
            return;
        };
        if multi.open.is_some() && !multi.abandoned {
            multi.abandoned = true;
            tracing::info!("stopping inside a source transaction: its multi-table transaction is rolled back (its changes stream again on the next start)");
            let _ = multi.jobs.send(MultiJob::Abandon);
        }
    }
}

/// A table of the loader's open transaction.
#[derive(Debug)]
struct Joined {
    source: String,
    target: String,
    last: ChangePosition,
    rows: u64,
    /// Buffer bytes of its parts released when the transaction commits (the last part's).
    released: u64,
}

/// The loader's open multi-table transaction.
#[derive(Debug)]
struct LoaderOpen {
    label: Label,
    began: Instant,
    parts: u32,
    tables: BTreeMap<usize, Joined>,
}

/// A failed job: which table reports it, and the error.
type Failed = (usize, PipelineError);

async fn run_loader(
    context: LoaderContext,
    slot: String,
    mut attempt: u32,
    mut rx: mpsc::UnboundedReceiver<MultiJob>,
    done: mpsc::UnboundedSender<JobDone>,
) {
    let mut open: Option<LoaderOpen> = None;
    while let Some(job) = rx.recv().await {
        let reports = match job {
            MultiJob::Table {
                index,
                source,
                target,
                job,
            } => {
                let mut none = None;
                vec![loader::run_job(&context, index, &source, &target, *job, &mut none).await]
            }
            MultiJob::Part {
                first_commit,
                parts,
                last_part,
            } => {
                let fallback = parts.first().map(|p| p.index).unwrap_or(0);
                match load_group(
                    &context,
                    &slot,
                    &mut attempt,
                    &mut open,
                    first_commit,
                    parts,
                    last_part,
                )
                .await
                {
                    Ok(reports) => reports,
                    Err((index, err)) => {
                        let index = open
                            .as_ref()
                            .and_then(|o| o.tables.keys().next().copied())
                            .unwrap_or(if index == usize::MAX { fallback } else { index });
                        vec![JobDone {
                            table: index,
                            through: None,
                            released_bytes: 0,
                            result: Err(err),
                        }]
                    }
                }
            }
            MultiJob::Abandon => {
                if let Some(txn) = open.take() {
                    match context.transactions.multi_rollback(&txn.label).await {
                        Ok(()) => {
                            tracing::info!(label = %txn.label, "rolled back the open multi-table transaction")
                        }
                        Err(err) => {
                            tracing::warn!(label = %txn.label, error = %err, "could not roll back the open multi-table transaction (the next start does, or its timeout)")
                        }
                    }
                    context.handle.clear_open_transactions();
                }
                Vec::new()
            }
        };
        let failed = reports.iter().any(|r| r.result.is_err());
        for report in reports {
            if done.send(report).is_err() {
                return;
            }
        }
        if failed {
            return;
        }
    }
}

/// Records the tables of `parts` as joining transaction `label`.
async fn record(context: &LoaderContext, label: &Label, parts: &[&Part]) -> Result<(), Failed> {
    for part in parts {
        let record = InFlightLoad {
            table: part.target.clone(),
            label: label.to_string(),
            first: part.batch.first,
            last: part.batch.last,
            synced_at: Some(part.batch.synced_at),
            moved: Vec::new(),
        };
        context
            .store
            .begin_multi(&context.state_client, &record)
            .await
            .map_err(|err| (part.index, PipelineError::Checkpoint(err)))?;
    }
    Ok(())
}

/// Timeout aborts in a row of one source transaction that stop the agent (table mode parks the
/// table at the same count, `loader.rs`): the second shows it takes longer to load than that.
const TIMEOUT_ABORTS_TO_STOP: u32 = 2;

/// A source transaction StarRocks aborted at `STARWAL_TXN_TIMEOUT_S` twice in a row would be
/// aborted again, each attempt taking the whole timeout: it is not begun again in this process.
/// Every attempt of the agent ends at once with the error (health shows it, the backoff grows;
/// `STARWAL_EXIT_ON_ERROR=true` exits) until the timeout is raised and the agent restarted.
fn held_for_timeouts(
    context: &LoaderContext,
    slot: &str,
    first_commit: Lsn,
    attempt: u32,
    parts: &[&Part],
) -> Option<Failed> {
    // The last attempt's label (the one aborted): this one was never begun.
    let label = Label::for_multi(slot, first_commit, attempt.saturating_sub(1));
    let aborts = context.handle.txn_timeout_aborts(attempts_key(&label));
    let part = parts.first()?;
    if aborts < TIMEOUT_ABORTS_TO_STOP {
        return None;
    }
    let limit = context.transactions.timeouts().timeout;
    Some((
        part.index,
        PipelineError::TransactionTimedOut {
            table: part.target.clone(),
            label: label.to_string(),
            first: part.batch.first,
            timed_out: TimedOut::Timeout,
            limit_s: limit.as_secs(),
            age_s: 0,
            parts: 0,
            rows: 0,
            aborts,
        },
    ))
}

/// The label without its attempt number: the same for every attempt of one source transaction.
fn attempts_key(label: &Label) -> &str {
    let text = label.as_str();
    text.rsplit_once("_a").map_or(text, |(base, _)| base)
}

/// How many used labels `begin` skips before giving up.
const BEGIN_LABELS: u32 = 5;

async fn load_group(
    context: &LoaderContext,
    slot: &str,
    attempt: &mut u32,
    open: &mut Option<LoaderOpen>,
    first_commit: Lsn,
    parts: Vec<Part>,
    last_part: bool,
) -> Result<Vec<JobDone>, Failed> {
    let txns = &context.transactions;
    if open.is_none() && parts.is_empty() {
        return Ok(Vec::new());
    }
    if open.is_none() {
        let all: Vec<&Part> = parts.iter().collect();
        if let Some(failed) = held_for_timeouts(context, slot, first_commit, *attempt, &all) {
            return Err(failed);
        }
        let mut tries = 0;
        let label = loop {
            let label = Label::for_multi(slot, first_commit, *attempt);
            *attempt = attempt.saturating_add(1);
            // Recorded before begin: a restart finds the label whatever happens next.
            record(context, &label, &all).await?;
            match txns.multi_begin(&label).await {
                Ok(()) => break label,
                Err(TransactionError::LabelCommitted { .. }) => {
                    // Committed under this label means the checkpoint lost track of it: the next
                    // attempt's label would load the same changes a second time.
                    let first = all.iter().map(|p| p.batch.first).min();
                    let last = all.iter().map(|p| p.batch.last).max();
                    let index = all.first().map_or(usize::MAX, |p| p.index);
                    let (Some(first), Some(last)) = (first, last) else {
                        return Ok(Vec::new());
                    };
                    return Err((
                        index,
                        PipelineError::MultiLabelCommitted {
                            label: label.to_string(),
                            first,
                            last,
                        },
                    ));
                }
                Err(err) => {
                    let used = matches!(&err, TransactionError::Refused { status, .. } if status == "LABEL_ALREADY_EXISTS");
                    if !used || tries >= BEGIN_LABELS {
                        return Err((usize::MAX, PipelineError::from(err)));
                    }
                    tries += 1;
                    tracing::warn!(%label, error = %err, "the multi-table label is used already: taking the next attempt's");
                }
            }
        };
        tracing::debug!(%label, first = %first_commit, "began a multi-table transaction");
        *open = Some(LoaderOpen {
            label,
            began: Instant::now(),
            parts: 0,
            tables: BTreeMap::new(),
        });
    } else if let Some(txn) = open.as_ref() {
        let new: Vec<&Part> = parts
            .iter()
            .filter(|p| !txn.tables.contains_key(&p.index))
            .collect();
        record(context, &txn.label, &new).await?;
    }
    let Some(txn) = open.as_mut() else {
        return Ok(Vec::new());
    };
    let mut reports = Vec::new();
    for part in parts {
        let started = Instant::now();
        let (mut rows, mut bytes) = (0, 0);
        let Part {
            index,
            source,
            target,
            batch,
        } = part;
        for mut load in batch.loads {
            load.label = txn.label.clone();
            let slot_permit = context.load_slots.take().await;
            let in_flight = context.handle.load_started(&source);
            let outcome = txns.multi_load(&load).await;
            drop((in_flight, slot_permit));
            match outcome {
                Ok(sent) => {
                    rows += sent;
                    bytes += load.body.len() as u64;
                }
                Err(LoadPartError::Gone(error)) => {
                    let limit = context.transactions.timeouts().timeout;
                    let age = txn.began.elapsed();
                    if age >= limit || error.to_string().to_ascii_lowercase().contains("timeout") {
                        // Read again, it would take as long: say which variable to raise.
                        let detail = format!(
                            "StarRocks aborted multi-table transaction `{}` after {} s ({} parts) at its timeout: the source transaction takes longer to load than STARWAL_TXN_TIMEOUT_S ({} s); raise STARWAL_TXN_TIMEOUT_S",
                            txn.label,
                            age.as_secs(),
                            txn.parts,
                            limit.as_secs()
                        );
                        tracing::error!(label = %txn.label, error = %error, "{detail}");
                        context.handle.record_table_error(&source, &detail);
                        // Counted per source transaction (the label without its attempt): no
                        // table can be parked in this mode, so the second abort in a row stops
                        // the agent rather than retrying forever.
                        let aborts = context.handle.txn_timed_out(attempts_key(&txn.label));
                        if aborts >= TIMEOUT_ABORTS_TO_STOP {
                            return Err((
                                index,
                                PipelineError::TransactionTimedOut {
                                    table: target.clone(),
                                    label: txn.label.to_string(),
                                    first: batch.first,
                                    timed_out: TimedOut::Timeout,
                                    limit_s: limit.as_secs(),
                                    age_s: age.as_secs(),
                                    parts: txn.parts,
                                    rows: txn.tables.values().map(|j| j.rows).sum::<u64>() + rows,
                                    aborts,
                                },
                            ));
                        }
                    }
                    return Err((index, PipelineError::from(error)));
                }
                Err(LoadPartError::Refused(error)) => {
                    let failure = LoadFailure { batch: load, error };
                    context
                        .handle
                        .record_table_error(&source, &failure.to_string());
                    return Err((
                        index,
                        PipelineError::Load {
                            table: target.clone(),
                            first: batch.first,
                            last: batch.last,
                            source: Box::new(failure),
                        },
                    ));
                }
            }
        }
        let joined = txn.tables.entry(index).or_insert_with(|| Joined {
            source: source.clone(),
            target: target.clone(),
            last: batch.last,
            rows: 0,
            released: 0,
        });
        joined.last = batch.last;
        joined.rows += rows;
        context
            .handle
            .transaction_part(&source, txn.label.as_str(), joined.rows, txn.began);
        context
            .handle
            .record_load(&source, batch.ops, rows, bytes, started.elapsed(), false);
        if last_part {
            joined.released += batch.buffered_bytes;
        } else {
            // Nothing is confirmed by a part of a transaction still open (see `send_group`).
            reports.push(JobDone {
                table: index,
                through: None,
                released_bytes: batch.buffered_bytes,
                result: Ok(()),
            });
        }
    }
    txn.parts += 1;
    if !last_part {
        return Ok(reports);
    }
    let Some(txn) = open.take() else {
        return Ok(reports);
    };
    commit(context, txn).await.map(|mut done| {
        reports.append(&mut done);
        reports
    })
}

/// Records every table's final range, then commits (one phase); reports every table done.
async fn commit(context: &LoaderContext, txn: LoaderOpen) -> Result<Vec<JobDone>, Failed> {
    for (index, joined) in &txn.tables {
        let recorded = context
            .store
            .multi_final(
                &context.state_client,
                &joined.target,
                txn.label.as_str(),
                joined.last,
            )
            .await
            .map_err(|err| (*index, PipelineError::Checkpoint(err)))?;
        if !recorded {
            return Err((
                *index,
                PipelineError::TransactionNotRecorded {
                    table: joined.target.clone(),
                    label: txn.label.to_string(),
                },
            ));
        }
    }
    let first = txn.tables.keys().next().copied().unwrap_or(0);
    let committed = context
        .transactions
        .multi_commit(&txn.label)
        .await
        .map_err(|err| (first, PipelineError::from(err)))?;
    let rows: u64 = txn.tables.values().map(|j| j.rows).sum();
    context.handle.txn_landed(attempts_key(&txn.label));
    tracing::info!(label = %txn.label, tables = ?txn.tables.values().map(|j| j.target.as_str()).collect::<Vec<_>>(), parts = txn.parts, rows, already = committed == crate::sink::starrocks::transaction::Committed::Already, "committed a multi-table transaction");
    let mut reports = Vec::new();
    for (index, joined) in txn.tables {
        context.handle.transaction_committed(&joined.source);
        reports.push(JobDone {
            table: index,
            through: Some(joined.last),
            released_bytes: joined.released,
            result: Ok(()),
        });
    }
    context.handle.load_succeeded();
    Ok(reports)
}

/// What the restart found of the multi-table transactions a previous run recorded.
#[derive(Debug, Default)]
pub struct MultiRecovered {
    /// By target table.
    pub outcomes: HashMap<String, Recovered>,
    /// The attempt number the next label takes (after the highest recorded).
    pub next_attempt: u32,
}

/// How long the restart waits for a label that is still open or committing after its rollback.
const SETTLE_ROUNDS: u32 = 60;

/// Settles the multi-table transactions a previous run left, before streaming resumes (see the
/// module docs): each recorded label is rolled back, then looked up.
pub async fn recover_multi(
    txns: &TransactionClient,
    store: &CheckpointStore,
    client: &tokio_postgres::Client,
    checkpoint: &Checkpoint,
    confirmed: Lsn,
) -> Result<MultiRecovered, PipelineError> {
    let recorded = store
        .multi_transactions(client)
        .await
        .map_err(PipelineError::Checkpoint)?;
    let next_attempt = recorded
        .iter()
        .filter_map(|txn| Label::from_recorded(&txn.label).multi_attempt())
        .max()
        .map_or(1, |n| n.saturating_add(1));
    let mut by_label: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for txn in recorded {
        let Some(load) = checkpoint.in_flight.iter().find(|l| l.table == txn.table) else {
            continue;
        };
        if load.last.commit < confirmed {
            // Confirmed: it committed before the confirmed LSN could pass it.
            continue;
        }
        by_label.entry(txn.label).or_default().push(txn.table);
    }
    let mut outcomes = HashMap::new();
    for (label, tables) in by_label {
        let label = Label::from_recorded(&label);
        let outcome = settle(txns, &label).await?;
        match outcome {
            Recovered::Committed => {
                tracing::info!(%label, ?tables, "a multi-table transaction a previous run left is committed: its changes are skipped")
            }
            Recovered::RolledBack => {
                tracing::info!(%label, ?tables, "a multi-table transaction a previous run left was not committed (rolled back): its changes are loaded again under a new label")
            }
        }
        for table in tables {
            outcomes.insert(table, outcome);
        }
    }
    Ok(MultiRecovered {
        outcomes,
        next_attempt,
    })
}

/// Rolls `label` back (any answer) and reads its state until it is settled.
async fn settle(txns: &TransactionClient, label: &Label) -> Result<Recovered, PipelineError> {
    let mut last = String::new();
    for round in 0..SETTLE_ROUNDS {
        if let Err(err) = txns.multi_rollback(label).await {
            tracing::warn!(%label, error = %err, "rolling back a recorded multi-table transaction got no answer; reading its state");
        }
        match txns.label_state(label).await {
            Ok(state) => match state.as_str() {
                "VISIBLE" | "COMMITTED" => return Ok(Recovered::Committed),
                "PREPARE" | "PREPARED" | "COMMITTING" | "PREPARING" => last = state,
                _ => return Ok(Recovered::RolledBack),
            },
            Err(err) if round + 1 == SETTLE_ROUNDS => return Err(PipelineError::from(err)),
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Err(PipelineError::from(TransactionError::Refused {
        op: "get_load_state",
        table: MULTI_TABLES.to_owned(),
        label: label.to_string(),
        // Transient: the next attempt asks again.
        status: "TXN_IN_PROCESSING".to_owned(),
        message: format!("still {last} after {SETTLE_ROUNDS} s; the next attempt asks again"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv11_multi_labels_carry_their_attempt_and_differ_per_attempt() {
        let a = Label::for_multi("slot_1", Lsn(0x1234), 1);
        let b = Label::for_multi("slot_1", Lsn(0x1234), 2);
        assert_ne!(a, b);
        assert_eq!(a.multi_attempt(), Some(1));
        assert_eq!(b.multi_attempt(), Some(2));
        assert!(a.as_str().len() <= 128);
        // Another slot's label for the same position differs.
        assert_ne!(a, Label::for_multi("slot_2", Lsn(0x1234), 1));
    }
}
