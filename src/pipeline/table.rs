//! [`TableState`]: what the pipeline keeps per replicated table — its schema and encoder, the
//! open batch, the channel to its loader and the ranges queued there, the numbering of its
//! changes within a transaction, and its restart rule.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::batch::TableBatch;
use super::loader::Job;
use super::restart::Resume;
use super::txn::{OpenTxn, SplitWarnings};
use crate::postgres::catalog::SourceTable;
use crate::postgres::{ChangePosition, Lsn};
use crate::schema::TableSchema;
use crate::sink::starrocks::encoding::TableEncoder;
use crate::state::EngineHandle;

#[derive(Debug)]
pub(super) struct TableState {
    pub(super) source: SourceTable,
    pub(super) source_name: String,
    pub(super) target: String,
    pub(super) schema: TableSchema,
    pub(super) encoder: TableEncoder,
    pub(super) key_columns: Vec<usize>,
    pub(super) batch: TableBatch,
    pub(super) jobs: mpsc::UnboundedSender<Job>,
    pub(super) loader: tokio::task::JoinHandle<()>,
    /// Ranges of queued jobs not yet done, oldest first.
    pub(super) queued: VecDeque<(ChangePosition, ChangePosition)>,
    /// Jobs sent to the loader and not yet reported done (loads, truncates, DDL).
    pub(super) jobs_open: usize,
    /// Numbering of this table's changes in the current transaction.
    pub(super) txn_commit: Lsn,
    pub(super) txn_seq: u32,
    pub(super) resume: Option<Resume>,
    /// What the batch counts in the engine's buffer now.
    pub(super) buffered: Buffered,
    /// Set when a permanent error of this table's load or encoding parked it: its first change
    /// not in StarRocks. Its changes from there are dropped, and the confirmed LSN stays before
    /// it, so the stream brings them again when the stream restarts (a retry or a resync).
    pub(super) parked: Option<ChangePosition>,
    /// The table's StarRocks transaction with parts sent and not yet closed (`txn.rs`): it holds
    /// the confirmed LSN before its first change until it commits (invariant 11).
    pub(super) txn: Option<OpenTxn>,
    /// The batch filled inside a transaction: it is sent at the next message (`apply.rs`).
    pub(super) flush_deferred: bool,
    /// Rate limit of the warning for whole batches sealed into several loads (`txn.rs`).
    pub(super) split_warnings: SplitWarnings,
}

/// The share of the engine's buffer total one holder (a batch, the commit log) has reported:
/// holders report what they hold after each change, and the total moves by the difference.
#[derive(Debug, Default)]
pub(super) struct Buffered(u64);

impl Buffered {
    pub(super) fn set(&mut self, handle: &EngineHandle, now: u64) {
        if now > self.0 {
            handle.add_buffered(now - self.0);
        } else if now < self.0 {
            handle.release_buffered(self.0 - now);
        }
        self.0 = now;
    }
}

impl TableState {
    pub(super) fn next_position(&mut self, commit: Lsn) -> ChangePosition {
        if self.txn_commit != commit {
            self.txn_commit = commit;
            self.txn_seq = 0;
        }
        self.txn_seq = self.txn_seq.saturating_add(1);
        ChangePosition {
            commit,
            seq: self.txn_seq,
        }
    }

    pub(super) fn oldest_pending(&self) -> Option<Lsn> {
        // A parked table may still have loads queued from before it parked (an encode error
        // parks it while its loader still retries an earlier load): they hold the confirmed
        // LSN too, or their commits would be confirmed before StarRocks has them (invariant 1).
        let parked = self.parked.map(|held| held.commit);
        let queued = self.queued.front().map(|(first, _)| first.commit);
        let open = self.batch.first().map(|first| first.commit);
        let txn = self.txn.as_ref().map(|txn| txn.first.commit);
        [parked, queued, open, txn].into_iter().flatten().min()
    }

    /// Brings the buffer total in line with what the batch holds now ([`TableBatch::bytes`]).
    pub(super) fn sync_buffered(&mut self, handle: &EngineHandle) {
        self.buffered.set(handle, self.batch.bytes());
    }

    pub(super) fn loader_idle(&self) -> bool {
        self.jobs_open == 0
    }
}

/// Indices of the key columns, in column order.
pub(super) fn key_columns(schema: &TableSchema) -> Vec<usize> {
    schema
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_key())
        .map(|(i, _)| i)
        .collect()
}
