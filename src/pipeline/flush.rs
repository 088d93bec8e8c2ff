//! When the pipeline seals a table's batch and what happens to it: the flush interval and a full
//! buffer (checked when the flush timer fires and when a loader becomes free), the queue of jobs per loader
//! (one load in flight per table), the finished jobs coming back, and the confirmed LSN that
//! follows from them — stored after loads committed and handed to the session (invariant 1).

use super::batch::moved_row_bytes;
use super::loader::{Job, JobDone};
use super::restart::Resume;
use super::table::TableState;
use super::{Pipeline, PipelineError};
use crate::postgres::checkpoint::MovedRow;
use crate::postgres::{ChangePosition, Lsn};
use crate::sink::starrocks::encoding::BodyFormat;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The buffer must have held this much since the last give-back for another to be worth it (or
/// half the cap, when that is less: the peak is sampled when the timer fires, and a buffer
/// capped at 8 MiB was never seen holding all of it, so its burst was never given back).
const GIVE_BACK_AFTER: u64 = 8 * 1024 * 1024;
/// ...and hold less than this now (the burst is over).
const GIVE_BACK_BELOW: u64 = 1024 * 1024;
/// How long after a burst was given back the pipeline looks again: the burst's loads may still
/// run then, and each ran curl on a tokio blocking thread whose allocator cache is freed only
/// when the thread exits, 10 s (tokio's keep-alive) after its last load.
const SETTLE: Duration = Duration::from_secs(12);
/// A batch holding this much is sealed after the heap's free pages are given back: small
/// batches would pay a heap walk for little.
const TRIM_BEFORE_SEAL: u64 = 8 * 1024 * 1024;
/// How often the timer fires while something besides a batch's deadline needs a look: a full
/// buffer, a batch being re-formed (sent only under pressure), memory to give back after a burst.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// The earliest the timer fires again after firing: a deadline that a flush could not clear
/// must not spin the task.
const MIN_REARM: Duration = Duration::from_millis(1);

impl Pipeline {
    /// When the flush timer must fire next, or `None` when nothing waits for it.
    ///
    /// It fires at the earliest deadline of a batch that may go (its oldest change is then
    /// exactly `STARWAL_FLUSH_INTERVAL_MS` old): a periodic check would send a batch up to one
    /// check period late (the interval / 4 tick did: 1.0–1.25 s at the default 1 s), and wake
    /// the task when nothing is due. A batch whose loader is busy has no deadline here: the
    /// load finishing sends it (`job_done`).
    pub(super) fn next_wake(&mut self, now: Instant) -> Option<Instant> {
        let buffered = self.context.handle.buffered_bytes();
        self.buffered_peak = self.buffered_peak.max(buffered);
        let mut wake: Option<Instant> = None;
        let mut housekeeping = buffered >= self.settings.max_buffer_bytes
            || (self.buffered_peak >= self.give_back_after() && buffered < GIVE_BACK_BELOW);
        for table in &self.tables {
            if table.batch.is_empty() || !table.loader_idle() || table.parked.is_some() {
                continue;
            }
            if table.resume.is_some_and(Resume::is_reform) {
                housekeeping = true;
                continue;
            }
            if let Some(opened) = table.batch.opened_at() {
                let due = Instant::from_std(opened) + self.settings.flush_interval;
                wake = Some(wake.map_or(due, |w| w.min(due)));
            }
        }
        if housekeeping {
            let next = now + HOUSEKEEPING;
            wake = Some(wake.map_or(next, |w| w.min(next)));
        }
        if let Some(settle) = self.settle_at {
            wake = Some(wake.map_or(settle, |w| w.min(settle)));
        }
        wake.map(|w| w.max(now + MIN_REARM))
    }

    /// How much the buffer must have held for its burst to be given back ([`GIVE_BACK_AFTER`]).
    fn give_back_after(&self) -> u64 {
        GIVE_BACK_AFTER.min(self.settings.max_buffer_bytes / 2)
    }

    /// The flush timer fired (see [`Pipeline::next_wake`]): sends the batches that are due, or
    /// all that may go while the buffer is full, and gives memory back after a burst.
    pub(super) async fn on_tick(&mut self) -> Result<(), PipelineError> {
        let buffered = self.context.handle.buffered_bytes();
        self.buffered_peak = self.buffered_peak.max(buffered);
        if buffered < GIVE_BACK_BELOW && self.buffered_peak >= self.give_back_after() {
            // Idle after a burst: the freed heap pages go back to the system (invariant 8).
            super::allocator::give_back();
            self.buffered_peak = buffered;
            self.settle_at = Some(Instant::now() + SETTLE);
        } else if self.settle_at.is_some_and(|at| Instant::now() >= at) {
            self.settle();
        }
        let pressed = buffered >= self.settings.max_buffer_bytes;
        if pressed {
            // Streamed transactions' batches too: one idle in its stream must not hold the
            // buffer (`stream.rs`).
            self.seal_streams()?;
        }
        for index in 0..self.tables.len() {
            let table = &self.tables[index];
            if table.batch.is_empty() || !table.loader_idle() {
                continue;
            }
            if table.resume.is_some_and(Resume::is_reform) {
                if !pressed {
                    continue;
                }
                // The batch being re-formed no longer fits (the buffer cap was lowered since
                // the crash): send what there is. Its label differs from the recorded one, so
                // StarRocks may apply those rows a second time — harmless for a Primary Key
                // table (same final state), and the only way forward.
                tracing::warn!(table = %table.target, "the re-formed batch exceeds STARWAL_MAX_BUFFER_BYTES: sending it under a new label");
                self.tables[index].resume = None;
                self.flush(index).await?;
                continue;
            }
            let due = table
                .batch
                .opened_at()
                .is_some_and(|opened| opened.elapsed() >= self.settings.flush_interval);
            if due || pressed {
                self.flush(index).await?;
            }
        }
        Ok(())
    }

    /// [`SETTLE`] after a burst was given back: if every loader is idle, what the loads kept is
    /// given back too — the sink's pooled connections (the pool grew to the burst's concurrency:
    /// 2.3 MB of curl buffers after a 50-table burst) and the heap the loads and their threads
    /// freed since. Loads still running put it off by another [`SETTLE`]; a new burst's
    /// give-back replaces it.
    fn settle(&mut self) {
        let quiet = self.context.handle.buffered_bytes() < GIVE_BACK_BELOW
            && self.tables.iter().all(TableState::loader_idle);
        if !quiet {
            self.settle_at = Some(Instant::now() + SETTLE);
            return;
        }
        self.settle_at = None;
        self.context.sink.release_idle();
        super::allocator::give_back();
        tracing::debug!("idle after a burst: pooled connections dropped, free memory given back");
    }

    /// Seals the table's batch and queues it; in `transaction` mode every table's, as one group
    /// (`multi.rs`).
    pub(super) async fn flush(&mut self, index: usize) -> Result<(), PipelineError> {
        if self.multi.as_ref().is_some_and(|m| !m.grouping()) {
            return self.flush_group().await;
        }
        self.seal_and_send(index).await
    }

    /// Seals table `index`'s batch and queues it (or adds it to the group being cut). A batch
    /// going into a StarRocks transaction has its unchanged-TOAST rows completed first, in as
    /// many parts as the buffer cap needs (`toast.rs`).
    pub(super) async fn seal_and_send(&mut self, index: usize) -> Result<(), PipelineError> {
        loop {
            let rest = self.complete_for_transaction(index).await?;
            self.seal_round(index, rest.is_some()).await?;
            match rest {
                Some(rest) if !rest.is_empty() => self.continue_with(index, rest).await?,
                _ => return Ok(()),
            }
        }
    }

    pub(super) async fn seal_once(&mut self, index: usize) -> Result<(), PipelineError> {
        if self.tables[index].batch.is_empty() || self.tables[index].parked.is_some() {
            return Ok(());
        }
        // Moved rows are completed as their changes come in (apply.rs); this only catches one
        // some other path left waiting, so none is sealed incomplete.
        self.fetch_moved_rows(index).await?;
        // The table's first batch after a restart, when its load in flight is being re-formed:
        // it carries that load's `_starwal_synced_at` (mod.rs keeps the record only for such a
        // table), and its moved rows were completed from the record (apply.rs). Only that batch:
        // it starts where the record does (a batch cut short by a full buffer too).
        let first = self.tables[index].batch.first();
        let synced_at = self
            .in_flight_at_start
            .remove(&self.tables[index].target)
            .filter(|load| Some(load.first) == first)
            .and_then(|load| load.synced_at);
        let table = &mut self.tables[index];
        if table.batch.bytes() >= TRIM_BEFORE_SEAL {
            // The body is written while the rows are still held: give back the heap's free
            // pages first, so the peak is the live rows plus the bodies (allocator.rs).
            super::allocator::trim_heap();
        }
        let moved = table.batch.take_moved();
        if let Some(at) = synced_at {
            table.batch.keep_synced_at(at);
        }
        // A batch that joins or begins a StarRocks transaction (the table has one open, or the
        // batch ends inside its source transaction: `txn.rs`) is JSON: every load of one
        // transaction must have one body format, and a CSV part followed by one holding a value
        // CSV cannot carry would otherwise split the transaction into visible commits.
        let in_transaction = self.multi.is_some()
            || table.txn.is_some()
            || self
                .transaction
                .is_some_and(|(commit, _)| commit == table.batch.last().commit);
        let format = if in_transaction {
            BodyFormat::Json
        } else {
            table.encoder.format()
        };
        let sealed = match table.batch.seal_as(
            &table.encoder,
            format,
            &self.settings.slot,
            &table.target,
            self.settings.compression,
        ) {
            Ok(sealed) => sealed,
            Err(err) => {
                let err = PipelineError::Encode(err);
                return match first {
                    // A value the target cannot take: this table stops, the others go on.
                    // Not in `transaction` mode: the other tables' halves of its source
                    // transactions would be visible (multi.rs).
                    Some(first) if self.settings.park_failing_tables && self.multi.is_none() => {
                        self.park(index, first, &err, false);
                        Ok(())
                    }
                    _ => Err(err),
                };
            }
        };
        // From here the batch's memory is its encoded bodies (the rows are gone): count those
        // instead (the loader releases them), and the emptied batch what it keeps (invariant 8).
        let sealed = sealed.map(|mut sealed| {
            // Held until the loader has recorded them; released with the bodies.
            sealed.buffered_bytes += moved.iter().map(moved_row_bytes).sum::<u64>()
                + (moved.capacity() * std::mem::size_of::<MovedRow>()) as u64;
            sealed.moved = moved;
            sealed
        });
        if let Some(sealed) = &sealed {
            self.context.handle.add_buffered(sealed.buffered_bytes);
        }
        table.sync_buffered(&self.context.handle);
        if let Some(sealed) = sealed {
            // A plain load, or a part of the table's StarRocks transaction (txn.rs).
            self.send_sealed(index, sealed)?;
        }
        Ok(())
    }

    pub(super) fn send(
        &mut self,
        index: usize,
        job: Job,
        range: Option<(ChangePosition, ChangePosition)>,
    ) -> Result<(), PipelineError> {
        let table = &mut self.tables[index];
        if table.parked.is_some() {
            // Nothing of the table is loaded while parked. A copy waiting for its loads may
            // begin once the loads sent before it parked are done: at once when none is open
            // or its loader is gone (it stops at its failed load), else after them.
            if let Job::Barrier(ready) = job {
                if table.jobs_open == 0 {
                    let _ = ready.send(());
                } else {
                    match table.jobs.send(Job::Barrier(ready)) {
                        Ok(()) => table.jobs_open += 1,
                        // The loader stopped at a failed load not reported yet: none is left.
                        Err(mpsc::error::SendError(Job::Barrier(ready))) => {
                            let _ = ready.send(());
                        }
                        Err(_) => {}
                    }
                }
            }
            return Ok(());
        }
        if !matches!(
            job,
            Job::Load(_)
                | Job::LoadPart(..)
                | Job::CloseTransaction { .. }
                | Job::AbandonTransaction(_)
                | Job::StreamPart(..)
                | Job::StreamClose { .. }
                | Job::StreamRollback(_)
        ) {
            // DDL, TRUNCATE or a copy's barrier must not land inside an open StarRocks
            // transaction of the table (txn.rs).
            self.close_transaction(index, "a TRUNCATE, column change or copy");
        }
        let table = &mut self.tables[index];
        // Queued before sending: if the loader is gone the sealed batch is lost, and its range
        // must keep holding the confirmed LSN back (the batch itself is already emptied).
        if let Some(range) = range {
            table.queued.push_back(range);
        }
        if let Some(multi) = &self.multi {
            // `transaction` mode: one loader runs every table's jobs, in stream order.
            multi.send_table(index, &table.source_name, &table.target, job)?;
            table.jobs_open += 1;
            return Ok(());
        }
        table
            .jobs
            .send(job)
            .map_err(|_| PipelineError::LoaderGone(table.target.clone()))?;
        table.jobs_open += 1;
        Ok(())
    }

    pub(super) async fn job_done(&mut self, done: JobDone) -> Result<(), PipelineError> {
        self.context.handle.release_buffered(done.released_bytes);
        let Some(table) = self.tables.get_mut(done.table) else {
            return Ok(());
        };
        table.jobs_open = table.jobs_open.saturating_sub(1);
        if let Err(err) = done.result {
            match &err {
                // A load StarRocks refused for good (the sink retries transient failures
                // itself), a step of a table's StarRocks transaction refused for good, or a
                // transaction it aborts at its timeout on every attempt (held until someone
                // raises the timeout, `loader.rs`): this table stops, the others go on. Its loader stopped at the failed job; the jobs queued after it are
                // dropped and stream again.
                PipelineError::Load { first, .. }
                | PipelineError::TransactionTimedOut { first, .. }
                | PipelineError::TransactionRefused { first, .. }
                    if self.settings.park_failing_tables && self.multi.is_none() =>
                {
                    let held = table
                        .queued
                        .front()
                        .map_or(*first, |(q, _)| (*q).min(*first));
                    self.park(done.table, held, &err, true);
                    return self.advance(false).await;
                }
                PipelineError::StreamReadAgain { xid, .. } => {
                    // A loader could not carry a streamed transaction (`loader.rs`): the next
                    // attempt reads it whole.
                    super::stream::pause_for(crate::postgres::Xid(*xid));
                    return Err(err);
                }
                _ => return Err(err),
            }
        }
        if let Some(through) = done.through {
            if table
                .queued
                .front()
                .is_some_and(|(_, last)| *last == through)
            {
                table.queued.pop_front();
            }
            self.loads_since_store = true;
        }
        self.advance(false).await?;
        // The loader is free: a batch that waited for it may go now.
        let table = &self.tables[done.table];
        if !self.winding_down
            && table.loader_idle()
            && !table.batch.is_empty()
            && !table.resume.is_some_and(Resume::is_reform)
            && (table
                .batch
                .opened_at()
                .is_some_and(|opened| opened.elapsed() >= self.settings.flush_interval)
                || self.context.handle.buffered_bytes() >= self.settings.max_buffer_bytes)
        {
            self.flush(done.table).await?;
        }
        Ok(())
    }

    /// Brings the buffer total in line with the memory the commit log takes now.
    pub(super) fn sync_commits_buffered(&mut self) {
        self.commits_buffered
            .set(&self.context.handle, self.commits.bytes());
    }

    /// Moves the confirmed LSN as far as the loads allow; stores it after loads committed (or
    /// always when `final_store`), then hands it to the session.
    pub(super) async fn advance(&mut self, final_store: bool) -> Result<(), PipelineError> {
        let oldest = if self.copying.is_empty() {
            // In `transaction` mode the open multi-table transaction holds it too (multi.rs).
            self.tables
                .iter()
                .filter_map(TableState::oldest_pending)
                .chain(self.multi.as_ref().and_then(|m| m.oldest_pending()))
                // A streamed transaction holds it before its first change (`stream.rs`).
                .chain(self.streams.oldest())
                .min()
        } else {
            // A copy runs while streaming: its table's dropped changes must stream again.
            Some(Lsn::ZERO)
        };
        self.commits.advance(oldest);
        self.sync_commits_buffered();
        let confirmed = self.commits.confirmed();
        self.context
            .handle
            .set_confirmed(confirmed, self.commits.oldest_waiting());
        // After a fallback, streaming comes back once this passes that transaction (stream.rs).
        self.stream_confirmed(confirmed);
        if confirmed > self.stored && (self.loads_since_store || final_store) {
            // Stored only when loads moved it: storing writes a transaction to the source,
            // which (on PG 14) comes back through the stream as an empty one.
            self.context
                .store
                .confirm(&self.client, confirmed)
                .await
                .map_err(PipelineError::Checkpoint)?;
            self.stored = confirmed;
            self.loads_since_store = false;
        }
        self.confirmations.send_if_modified(|current| {
            if confirmed > *current {
                *current = confirmed;
                true
            } else {
                false
            }
        });
        Ok(())
    }
}
