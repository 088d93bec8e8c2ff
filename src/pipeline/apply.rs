//! How the pipeline takes in a stream message: transactions and their commit positions, the
//! numbering of each table's changes, the restart rule's verdict on each change
//! ([`super::restart`]), the changes into the table's batch with the size and buffer triggers,
//! TRUNCATE in the table's loader order, and the moved rows whose unchanged TOAST values are read
//! from the source before a batch is sealed — or, for a batch re-formed after a restart, taken
//! from its in-flight record.

use std::collections::HashMap;

use super::batch::allocation;
use super::forwarder::StreamItem;
use super::loader::Job;
use super::restart::{Resume, Verdict};
use super::{Pipeline, PipelineError};
use crate::postgres::catalog::RowLookup;
use crate::postgres::checkpoint::MovedRow;
use crate::postgres::pgoutput::{Message, TupleData, TupleValueRef};
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
        match message {
            Message::Begin(begin) => {
                self.transaction = Some((begin.final_lsn, begin.commit_ts.to_system_time()));
            }
            Message::Commit(commit) => {
                let time = commit.commit_ts.to_system_time();
                self.commits
                    .committed(commit.commit_lsn, commit.end_lsn, time);
                self.sync_commits_buffered();
                self.context.handle.commit_waiting(time);
                self.context.handle.set_received(commit.end_lsn, Lsn::ZERO);
                self.transaction = None;
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
                        let table = &mut self.tables[index];
                        table.batch.update(
                            position,
                            &table.key_columns,
                            update.old_tuple.as_ref(),
                            update.new_tuple,
                        );
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
        let full = table.batch.changes() >= self.settings.flush_rows
            || table.batch.bytes() >= self.settings.flush_bytes;
        let pressed = self.context.handle.buffered_bytes() >= self.settings.max_buffer_bytes
            && table.loader_idle();
        if full || pressed {
            self.flush(index).await?;
        }
        Ok(())
    }

    /// Completes the batch's moved rows that lack unchanged-TOAST values, and returns how, for
    /// the load's in-flight record. A row in `recorded` (the batch is the load in flight before a
    /// restart, re-formed) is completed as recorded, so the label goes out with the same bytes
    /// whatever the source holds now (invariant 5); the others from the source's current row. A
    /// row the source no longer has is not written under its new key (the stream holds the later
    /// change that deleted or moved it; the old key's delete stands).
    pub(super) async fn fetch_moved_rows(
        &mut self,
        index: usize,
        recorded: Vec<MovedRow>,
    ) -> Result<Vec<MovedRow>, PipelineError> {
        let requests = self.tables[index].batch.needing_fetch();
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut recorded: HashMap<Vec<Option<String>>, Option<Vec<Option<String>>>> = recorded
            .into_iter()
            .map(|row| (row.key, row.values))
            .collect();
        let table = &self.tables[index];
        let source_error = |source| PipelineError::Source {
            table: table.source_name.clone(),
            source,
        };
        // Prepared at the first row not recorded: a re-formed batch reads nothing.
        let mut lookup: Option<Option<RowLookup>> = None;
        let mut resolved = Vec::with_capacity(requests.len());
        for request in requests {
            let key = key_text(&request.row, &table.key_columns);
            let values = match recorded.remove(&key) {
                Some(values) => values,
                None => {
                    if lookup.is_none() {
                        let prepared = RowLookup::prepare(
                            &self.client,
                            &table.source,
                            &table.schema,
                            &table.key_columns,
                        )
                        .await
                        .map_err(source_error)?;
                        if prepared.is_none() {
                            // A column of the stream's schema is gone from the source already;
                            // the stream's Relation message for that drop follows. Retrying
                            // would fail the same way.
                            tracing::warn!(table = %table.source_name, "cannot read moved rows' unchanged TOAST values (a column was dropped since)");
                        }
                        lookup = Some(prepared);
                    }
                    let Some(Some(lookup)) = &lookup else {
                        continue;
                    };
                    lookup
                        .fetch(&self.client, &key)
                        .await
                        .map_err(source_error)?
                }
            };
            if values.is_none() {
                tracing::info!(table = %table.source_name, "a row whose key changed is gone from the source: not written under its new key (a later change in the stream deletes or moves it)");
            }
            resolved.push((request.entry, MovedRow { key, values }));
        }
        let batch = &mut self.tables[index].batch;
        let mut moved = Vec::with_capacity(resolved.len());
        for (entry, row) in resolved {
            match &row.values {
                Some(values) => {
                    let tuple = TupleData::from_values(values.iter().map(|v| match v {
                        Some(text) => TupleValueRef::Text(text.as_bytes()),
                        None => TupleValueRef::Null,
                    }));
                    batch.complete(entry, &tuple);
                }
                None => batch.absent(entry),
            }
            moved.push(row);
        }
        Ok(moved)
    }
}

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

/// Bytes the moved rows' values take while they wait for the in-flight record (invariant 8):
/// each string's allocation and the vectors' slots.
pub(super) fn moved_rows_bytes(moved: &[MovedRow]) -> u64 {
    let slot = std::mem::size_of::<Option<String>>() as u64;
    let strings = |values: &[Option<String>]| -> u64 {
        values
            .iter()
            .map(|v| slot + v.as_ref().map_or(0, |text| allocation(text.len())))
            .sum()
    };
    moved
        .iter()
        .map(|row| {
            std::mem::size_of::<MovedRow>() as u64
                + strings(&row.key)
                + row.values.as_deref().map_or(0, strings)
        })
        .sum()
}
