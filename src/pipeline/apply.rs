//! How the pipeline takes in a stream message: transactions and their commit positions, the
//! numbering of each table's changes, the restart rule's verdict on each change
//! ([`super::restart`]), the changes into the table's batch with the size and buffer triggers,
//! TRUNCATE in the table's loader order, and the moved rows whose unchanged TOAST values are read
//! from the source as their change is taken in (counted in the batch at once, invariant 8) — or,
//! for a batch re-formed after a restart, taken from its in-flight record.

use super::batch::FetchRequest;
use super::forwarder::StreamItem;
use super::loader::Job;
use super::restart::{Resume, Verdict};
use super::{Pipeline, PipelineError};
use crate::postgres::catalog::RowLookup;
use crate::postgres::checkpoint::MovedRow;
use crate::postgres::pgoutput::{Message, TupleData, TupleValueRef};
use crate::postgres::value::PgTimestamp;
use crate::postgres::{ChangePosition, Lsn, Oid};

impl Pipeline {
    pub(super) async fn message(&mut self, item: StreamItem) -> Result<(), PipelineError> {
        let StreamItem {
            lsn,
            message,
            bytes,
        } = item;
        // The item itself is gone once taken in; what a batch or the commit log keeps of it is
        // counted by them (`sync_buffered`).
        self.context.handle.release_buffered(bytes);
        // Streamed transactions (`STARWAL_STREAMING`) and what comes inside their blocks take
        // their own path (stream.rs); a Relation or a logical message comes back for this one.
        let message = if self.streams.in_block()
            || matches!(
                message,
                Message::StreamStart(_)
                    | Message::StreamStop
                    | Message::StreamCommit(_)
                    | Message::StreamAbort(_)
            ) {
            match self.stream_message(lsn, message).await? {
                Some(message) => message,
                None => return Ok(()),
            }
        } else {
            message
        };
        if !matches!(message, Message::Commit(_)) {
            // A batch that filled on the previous change: more of its transaction follows, so
            // it goes now, as a part of a StarRocks transaction (txn.rs).
            self.flush_deferred().await?;
        }
        match message {
            Message::Begin(begin) => {
                self.stream_note_begin(begin.xid, begin.final_lsn);
                self.read_after = Some(begin.xid);
                self.transaction = Some((begin.final_lsn, begin.commit_ts.to_system_time()));
            }
            Message::Commit(commit) => {
                self.note_committed(commit.commit_lsn, commit.end_lsn, commit.commit_ts);
                self.transaction = None;
                self.multi_split_truncate(commit.commit_lsn);
                // A batch that filled on the transaction's last change is whole: a plain load.
                self.flush_deferred().await?;
                // A source transaction larger than a batch: its last part goes into its
                // StarRocks transaction, which commits now (txn.rs).
                self.close_transactions_at_commit().await?;
                self.commit_passed(commit.commit_lsn).await?;
                self.advance(false).await?;
            }
            Message::Relation(relation) => self.relation(&relation).await?,
            Message::Insert(insert) => {
                if let Some((index, position)) = self.position(lsn, insert.relation_id)? {
                    if self.admit(index, position).await? {
                        let table = &mut self.tables[index];
                        table
                            .batch
                            .insert(position, &table.key_columns, insert.new_tuple);
                        table.sync_buffered(&self.context.handle);
                        self.after_change(index).await?;
                    }
                }
            }
            Message::Update(update) => {
                if let Some((index, position)) = self.position(lsn, update.relation_id)? {
                    if self.admit(index, position).await? {
                        let unchanged = update
                            .new_tuple
                            .raw_values()
                            .any(|value| matches!(value, TupleValueRef::UnchangedToast));
                        if unchanged {
                            // It may be a moved row whose values are read next.
                            self.wait_for_room().await?;
                        }
                        let table = &mut self.tables[index];
                        table.batch.update(
                            position,
                            &table.key_columns,
                            update.old_tuple.as_ref(),
                            update.new_tuple,
                        );
                        self.fetch_moved_rows(index).await?;
                        let table = &mut self.tables[index];
                        table.sync_buffered(&self.context.handle);
                        self.after_change(index).await?;
                    }
                }
            }
            Message::Delete(delete) => {
                if let Some((index, position)) = self.position(lsn, delete.relation_id)? {
                    if self.admit(index, position).await? {
                        let table = &mut self.tables[index];
                        table
                            .batch
                            .delete(position, &table.key_columns, &delete.old_tuple);
                        table.sync_buffered(&self.context.handle);
                        self.after_change(index).await?;
                    }
                }
            }
            Message::Truncate(truncate) => {
                for relation in truncate.relation_ids {
                    if let Some((index, position)) = self.position(lsn, relation)? {
                        if self.admit(index, position).await? {
                            self.multi_truncate(index);
                            // What came before the truncate is loaded first, then the target
                            // is emptied, in the table's loader order.
                            self.flush(index).await?;
                            self.send(index, Job::Truncate(position), Some((position, position)))?;
                        }
                    }
                }
            }
            // Origins, types, logical messages (heartbeats) carry nothing to load; streamed
            // and two-phase messages are not requested.
            _ => {}
        }
        Ok(())
    }

    /// A source transaction committed at `commit_lsn` (a Commit, or a streamed one's Stream
    /// Commit): it enters the commit log, and status learns it was received.
    pub(super) fn note_committed(&mut self, commit_lsn: Lsn, end_lsn: Lsn, at: PgTimestamp) {
        let time = at.to_system_time();
        self.commits.committed(commit_lsn, end_lsn, time);
        self.sync_commits_buffered();
        self.context.handle.commit_waiting(time);
        self.context.handle.set_received(end_lsn, Lsn::ZERO);
    }

    /// The position of a change to `relation`, or `None` when the relation is not replicated.
    pub(super) fn position(
        &mut self,
        lsn: Lsn,
        relation: Oid,
    ) -> Result<Option<(usize, ChangePosition)>, PipelineError> {
        let Some(&index) = self.by_relation.get(&relation) else {
            if self.ignored.contains(&relation) {
                return Ok(None);
            }
            return Err(PipelineError::UnknownRelation { lsn, relation });
        };
        // Outside a transaction cannot happen with pgoutput v1; number it under the LSN.
        let commit = self.transaction.map_or(lsn, |(commit, _)| commit);
        self.multi_change(index);
        Ok(Some((index, self.tables[index].next_position(commit))))
    }

    /// Applies the restart rule to a change; `false` when it is already in StarRocks (or its
    /// table is being copied: the stream brings it again after the copy).
    pub(super) async fn admit(
        &mut self,
        index: usize,
        position: ChangePosition,
    ) -> Result<bool, PipelineError> {
        if !self.copying.is_empty() && self.copying.contains(&self.tables[index].source_name) {
            return Ok(false);
        }
        if self.tables[index].parked.is_some() {
            // Held: the stream brings it again after a retry or resync (park.rs).
            return Ok(false);
        }
        if self
            .streams
            .committed_whole(position.commit, &self.tables[index].target)
        {
            // A streamed transaction the restart committed, sent whole this time.
            return Ok(false);
        }
        let Some(rule) = self.tables[index].resume else {
            return Ok(true);
        };
        match rule.change(position) {
            Verdict::Skip => Ok(false),
            Verdict::Take => Ok(true),
            Verdict::TakeAfterRule { flush_first } => {
                self.tables[index].resume = None;
                if flush_first {
                    self.flush(index).await?;
                }
                Ok(true)
            }
        }
    }

    /// A commit passed: a re-formed batch that ends in it is complete.
    pub(super) async fn commit_passed(&mut self, commit: Lsn) -> Result<(), PipelineError> {
        for index in 0..self.tables.len() {
            let Some(rule) = self.tables[index].resume else {
                continue;
            };
            if let Some(flush) = rule.commit_passed(commit) {
                self.tables[index].resume = None;
                if flush {
                    self.flush(index).await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn after_change(&mut self, index: usize) -> Result<(), PipelineError> {
        let table = &self.tables[index];
        if table.resume.is_some_and(Resume::is_reform) {
            // The batch must end exactly where the recorded one did.
            return Ok(());
        }
        if self.flush_due(index) {
            if self.transaction.is_some() {
                // Sealed at the next message instead: if that is the Commit, the batch holds
                // whole transactions and goes as a plain load, not as a StarRocks transaction of
                // two parts (one message later costs one change more in the buffer).
                self.tables[index].flush_deferred = true;
            } else {
                self.flush(index).await?;
            }
        }
        Ok(())
    }

    /// Whether table `index`'s batch is to be sent now: full (`STARWAL_FLUSH_ROWS`/`_BYTES`),
    /// or the buffer is full and its loader free.
    fn flush_due(&self, index: usize) -> bool {
        let table = &self.tables[index];
        let full = table.batch.changes() >= self.settings.flush_rows
            || table.batch.bytes() >= self.settings.flush_bytes;
        let pressed = self.context.handle.buffered_bytes() >= self.settings.max_buffer_bytes
            && table.loader_idle();
        full || pressed
    }

    /// Sends the batches whose flush waited for the next message (see `after_change`), when
    /// they are still due (another path may have sent them meanwhile).
    pub(super) async fn flush_deferred(&mut self) -> Result<(), PipelineError> {
        for index in 0..self.tables.len() {
            if !std::mem::take(&mut self.tables[index].flush_deferred) {
                continue;
            }
            if !self.tables[index].resume.is_some_and(Resume::is_reform) && self.flush_due(index) {
                self.flush(index).await?;
            }
        }
        Ok(())
    }

    /// Before a change that may read a moved row's values from the source: while the buffer is
    /// full, sends what can go (idle loaders' batches) and takes in finished loads, so the values
    /// read next have room (invariant 8). The change costs a few bytes in the stream, the read
    /// its whole unchanged values: the forwarder's backpressure, which counts the stream's
    /// bytes, cannot see it coming, and one chunk from it may hold thousands of such changes.
    /// Blocks the pipeline like a stop does (until loads finish); feedback flows meanwhile.
    async fn wait_for_room(&mut self) -> Result<(), PipelineError> {
        while self.context.handle.buffered_bytes() >= self.settings.max_buffer_bytes {
            for index in 0..self.tables.len() {
                let table = &self.tables[index];
                // A batch being re-formed goes out only whole (it was within the cap when
                // first formed).
                if table.loader_idle()
                    && !table.batch.is_empty()
                    && !table.resume.is_some_and(Resume::is_reform)
                {
                    self.flush(index).await?;
                }
            }
            if self.tables.iter().all(|table| table.loader_idle()) {
                // No load will free anything: what is held is the open batches and the commit
                // log, which the forwarder's backpressure bounds.
                return Ok(());
            }
            match self.done_rx.recv().await {
                Some(done) => self.job_done(done).await?,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Completes the moved rows that came to lack unchanged-TOAST values with the change just
    /// taken in, and records how (the load's in-flight record takes it). Run after each change,
    /// so what is fetched is counted in the batch at once and the size trigger and a full buffer
    /// see it (invariant 8). In a batch being re-formed after a restart, row number `n` is
    /// completed as the record's row `n` (the same changes ask in the same order), so the label
    /// goes out with the same bytes whatever the source holds now (invariant 5); the others from
    /// the source's current row. A row the source no longer has is not written under its new
    /// key (the stream holds the later change that deleted or moved it; the old key's delete
    /// stands).
    pub(super) async fn fetch_moved_rows(&mut self, index: usize) -> Result<(), PipelineError> {
        let requests = self.tables[index].batch.needing_fetch();
        for request in requests {
            self.fetch_moved_row(index, request).await?;
        }
        Ok(())
    }

    pub(super) async fn fetch_moved_row(
        &mut self,
        index: usize,
        request: FetchRequest,
    ) -> Result<(), PipelineError> {
        let table = &self.tables[index];
        let key = key_text(&request.row, &table.key_columns);
        // The record applies to the table's first batch after the restart only (flush.rs).
        let record = self
            .in_flight_at_start
            .get(&table.target)
            .filter(|load| Some(load.first) == table.batch.first());
        let recorded = match record {
            Some(load) => {
                let store = &self.context.store;
                let number = table.batch.moved_rows();
                let row = match store
                    .recorded_moved_row(&self.client, load, number)
                    .await
                    .map_err(PipelineError::Checkpoint)?
                {
                    Some(row) if row.key == key => Some(row),
                    // Recorded in another order (by an earlier version, which fetched when
                    // sealing): found by its key.
                    _ => store
                        .recorded_moved_row_by_key(&self.client, load, &key)
                        .await
                        .map_err(PipelineError::Checkpoint)?,
                };
                row.map(|row| row.values)
            }
            None => None,
        };
        let values = match recorded {
            Some(values) => values,
            None => {
                let lookup = self.tables[index].batch.take_lookup();
                let table = &self.tables[index];
                let source_error = |source| PipelineError::Source {
                    table: table.source_name.clone(),
                    source,
                };
                let lookup = match lookup {
                    Some(lookup) => lookup,
                    None => {
                        let prepared = RowLookup::prepare(
                            &self.client,
                            &table.source,
                            &table.schema,
                            &table.key_columns,
                        )
                        .await
                        .map_err(source_error)?;
                        if prepared.is_none() {
                            // A key column of the stream's schema is gone from the source
                            // already; the stream's Relation message for that change follows
                            // (and seals the batch). Retrying would fail the same way.
                            tracing::warn!(table = %table.source_name, "cannot read moved rows' unchanged TOAST values (a key column was dropped or renamed since)");
                        }
                        prepared
                    }
                };
                if let Some(xid) = self.read_after.take() {
                    // The decoded transaction may not be visible to a read yet (see
                    // `wait_until_visible`): its row would seem gone, and not be written.
                    let visible = crate::postgres::catalog::wait_until_visible(
                        &self.client,
                        xid.0,
                        VISIBLE_WITHIN,
                    )
                    .await
                    .map_err(source_error)?;
                    if !visible {
                        tracing::warn!(table = %table.source_name, xid = xid.0, "the source transaction was not visible to a read {} s after its commit arrived; reading anyway", VISIBLE_WITHIN.as_secs());
                    }
                }
                let fetched = match &lookup {
                    Some(lookup) => lookup.fetch(&self.client, &key).await.map(Some),
                    None => Ok(None),
                };
                let fetched = fetched.map_err(source_error);
                self.tables[index].batch.keep_lookup(lookup);
                match fetched? {
                    Some(values) => values,
                    // Left waiting, as a partial update (see the warning above).
                    None => return Ok(()),
                }
            }
        };
        let table = &mut self.tables[index];
        match &values {
            Some(values) => {
                let tuple = TupleData::from_values(values.iter().map(|v| match v {
                    Some(text) => TupleValueRef::Text(text.as_bytes()),
                    None => TupleValueRef::Null,
                }));
                table.batch.complete(request.entry, &tuple);
            }
            None => {
                tracing::info!(table = %table.source_name, "a row whose key changed, or whose unchanged TOAST values a large transaction needed, is gone from the source: not written (a later change in the stream deletes or moves it)");
                table.batch.absent(request.entry);
            }
        }
        // The values move into the record: the completed row holds its own copy in wire form.
        table.batch.record_moved(MovedRow { key, values });
        Ok(())
    }
}

/// How long a source read waits for the decoded transaction to become visible (normally
/// microseconds: the committing backend leaving the proc array).
const VISIBLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The key columns' values of `row` as text, in key column order: how a moved row is named for
/// the source read and in the in-flight record.
fn key_text(row: &TupleData, key_columns: &[usize]) -> Vec<Option<String>> {
    row.raw_values()
        .enumerate()
        .filter(|(column, _)| key_columns.contains(column))
        .map(|(_, value)| match value {
            TupleValueRef::Text(text) => Some(String::from_utf8_lossy(text).into_owned()),
            _ => None,
        })
        .collect()
}
