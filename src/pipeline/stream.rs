//! Streamed in-progress transactions (`STARWAL_STREAMING`, issue 14 item 3; ARCHITECTURE.md
//! "Streamed transactions" has the design and why it is correct).
//!
//! With pgoutput protocol 2 and `streaming 'on'`, Postgres sends a transaction larger than
//! `logical_decoding_work_mem` before its COMMIT, in `S`…`E` blocks interleaved with other
//! transactions, ended by Stream Commit (`c`) or Stream Abort (`A`). Each streamed xid gets a
//! batch per table of its own, outside the table's ordered batch and counted in the same buffer;
//! a full one is sealed into the StarRocks transaction of that table and xid
//! ([`Label::for_stream`]), begun by its first part (recorded in the checkpoint before `begin`,
//! as table mode's are). Before a streamed xid's first change to a table, the table's ordered
//! batch is sent, so every change received before it is loaded before that transaction begins
//! (the restart rule's `ReadAgain` from its first change relies on it).
//!
//! Stream Commit: per table, the ordered batch (transactions committed before this one) goes
//! first, then the last part, which prepares, records (with the commit LSN) and commits, in the
//! table's loader order, so StarRocks versions follow commit order per key. Stream Abort of the
//! top xid rolls its StarRocks transactions back. What this build does not carry while
//! streaming — a savepoint rolled back (its rows are mixed into the loaded parts), a TRUNCATE,
//! an UPDATE leaving a TOASTed value unchanged (the earlier value may be in an earlier part) —
//! rolls the xid's transactions back and ends the attempt ([`PipelineError::StreamReadAgain`]);
//! the engine then streams without `streaming` for the rest of the process, and Postgres sends
//! the transaction whole at its COMMIT (the confirmed LSN never passed its first change).
//!
//! The confirmed LSN stays before the first change of every streamed xid holding changes
//! ([`Streams::oldest`]): a restart then gets the transaction again from its start.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use super::batch::{body_row_overhead, SealedBatch, TableBatch};
use super::loader::{Job, TxnRole};
use super::park::RefusedAtStart;
use super::restart::{Resume, Verdict};
use super::table::Buffered;
use super::{Pipeline, PipelineError};
use crate::postgres::pgoutput::{Message, StreamAbort, StreamCommit, TupleValueRef};
use crate::postgres::{ChangePosition, Lsn, Xid};
use crate::sink::starrocks::encoding::BodyFormat;
use crate::sink::starrocks::label::Label;

/// A streamed batch holding this much is sealed after the heap's free pages are given back
/// (as `flush.rs`'s `TRIM_BEFORE_SEAL`).
const TRIM_BEFORE_SEAL: u64 = 8 * 1024 * 1024;

/// Set once a streamed transaction had to be read again whole: later attempts stream without
/// `streaming` (that transaction streamed again would bring the same trouble) until the confirmed
/// LSN passes its COMMIT. The attempts of one process share it, hence a static.
static PAUSE: Mutex<Option<Pause>> = Mutex::new(None);

/// Told once the transaction that paused streaming is confirmed: the running attempt drains and
/// the next one streams again (`engine/run.rs`).
static RESUME: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The transaction whose confirmation ended the last pause, and its commit. Decoding restarts
/// at the slot's `restart_lsn`, before the confirmed LSN: PostgreSQL 14 was seen streaming such
/// a transaction's changes again (never its commit, which is before the start), and taken for a
/// new one it paused streaming again for good. Its streamed changes are dropped until a stream
/// block starting past its commit shows decoding is beyond it (checked once per block).
static CONFIRMED_WHOLE: Mutex<Option<(Xid, Lsn)>> = Mutex::new(None);

fn confirmed_whole() -> std::sync::MutexGuard<'static, Option<(Xid, Lsn)>> {
    CONFIRMED_WHOLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy)]
struct Pause {
    /// The top-level xid read again whole.
    xid: Xid,
    /// Its commit record, once the session without streaming sent its `Begin`.
    commit: Option<Lsn>,
}

fn pause() -> std::sync::MutexGuard<'static, Option<Pause>> {
    // A poisoned lock only means a panic elsewhere; the value is still a plain Option.
    PAUSE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether streaming is off for now (see [`PAUSE`]).
pub fn streaming_paused() -> bool {
    pause().is_some()
}

/// Resolves once streaming may resume after a fallback (see [`RESUME`]).
pub async fn streaming_resumable() {
    RESUME.notified().await;
}

/// The streamed transactions a previous run had committed in StarRocks, or prepared and the
/// restart committed ([`recover_streams`]): until the confirmed LSN passes them, Postgres sends
/// them again, streamed or whole, and their changes to those tables must be dropped.
#[derive(Debug, Default)]
pub struct CommittedStreams {
    /// Their labels: a transaction streamed again is known by its xid's label.
    labels: HashSet<String>,
    /// Their target tables by commit LSN: a transaction sent again whole is known by its commit.
    whole: HashMap<Lsn, Vec<String>>,
}

/// Settles the streamed StarRocks transactions a previous run left, before streaming resumes:
/// a prepared one is committed (or found committed) and its source transaction is dropped when
/// it comes again; an open one is rolled back and forgotten (the confirmed LSN stayed before
/// its first change, so Postgres sends the source transaction again from its start).
/// A prepared one whose commit StarRocks refuses for good stays recorded, and its table starts
/// parked from the transaction's first change (returned beside the committed ones).
pub async fn recover_streams(
    txns: &crate::sink::starrocks::transaction::TransactionClient,
    store: &crate::postgres::checkpoint::CheckpointStore,
    client: &tokio_postgres::Client,
    confirmed: Lsn,
) -> Result<(CommittedStreams, Vec<RefusedAtStart>), PipelineError> {
    use crate::sink::starrocks::transaction::{Committed, TransactionError};
    let recorded = store
        .streams(client)
        .await
        .map_err(PipelineError::Checkpoint)?;
    let mut committed = CommittedStreams::default();
    let mut refused = Vec::new();
    for stream in recorded {
        let label = Label::from_recorded(&stream.label);
        match stream.prepared_at {
            // Confirmed: it can no longer come again (`confirm` forgets it on its next store).
            Some(commit) if commit < confirmed => continue,
            Some(commit) => match txns.commit(&stream.table, &label).await {
                Ok(outcome) => {
                    tracing::info!(table = %stream.table, %label, %commit, already = outcome == Committed::Already, "committed the streamed transaction a previous run had prepared: dropped when it comes again");
                    committed.labels.insert(stream.label);
                    committed
                        .whole
                        .entry(commit)
                        .or_default()
                        .push(stream.table);
                    continue;
                }
                Err(TransactionError::Aborted { message, .. }) => {
                    tracing::warn!(table = %stream.table, %label, %message, "a prepared streamed transaction was aborted (prepared_timeout passed?): its changes are loaded again");
                }
                Err(err) => {
                    // Held from its first change: the confirmed LSN stays before it, so the
                    // source transaction comes again after the retry.
                    let first = ChangePosition {
                        commit: stream.first_lsn,
                        seq: 1,
                    };
                    refused.push(RefusedAtStart::from_commit_error(
                        stream.table,
                        label.as_str(),
                        first,
                        err,
                    )?);
                    continue;
                }
            },
            None => {
                txns.rollback(&stream.table, &label)
                    .await
                    .map_err(PipelineError::from)?;
                tracing::info!(table = %stream.table, %label, "rolled back the streamed transaction a previous run left open: it streams again");
            }
        }
        store
            .forget_stream(client, &stream.table, &stream.label)
            .await
            .map_err(PipelineError::Checkpoint)?;
    }
    Ok((committed, refused))
}

/// The streamed transactions in progress.
#[derive(Debug, Default)]
pub(super) struct Streams {
    /// The xid of the open `S`…`E` block.
    current: Option<Xid>,
    /// The open block belongs to the transaction confirmed whole (`CONFIRMED_WHOLE`): its
    /// changes are dropped.
    current_confirmed: bool,
    txns: HashMap<Xid, StreamTxn>,
    /// The streamed transactions the restart found committed: dropped when they come again.
    committed_at_start: CommittedStreams,
    /// Tables of xids being dropped (see `committed_at_start`): per table, since a streamed
    /// transaction commits its tables' StarRocks transactions one by one and a crash between
    /// two leaves one committed and the next not (that one must be loaded again, whole).
    skipped: HashSet<(Xid, usize)>,
}

#[derive(Debug, Default)]
struct StreamTxn {
    tables: BTreeMap<usize, StreamTable>,
}

#[derive(Debug)]
struct StreamTable {
    xid: Xid,
    batch: TableBatch,
    buffered: Buffered,
    label: Label,
    /// Its first change (the LSN of that change, seq 1): names the record and holds the
    /// confirmed LSN.
    first: ChangePosition,
    seq: u32,
    /// A part went to the loader (the StarRocks transaction is begun or being begun).
    sent: bool,
}

impl Streams {
    pub(super) fn new(committed_at_start: CommittedStreams) -> Streams {
        Streams {
            committed_at_start,
            ..Streams::default()
        }
    }

    /// Whether the change of table `target` in the source transaction committed at `commit`,
    /// sent whole, belongs to a streamed transaction the restart found committed.
    pub(super) fn committed_whole(&self, commit: Lsn, target: &str) -> bool {
        !self.committed_at_start.whole.is_empty()
            && self
                .committed_at_start
                .whole
                .get(&commit)
                .is_some_and(|tables| tables.iter().any(|table| table == target))
    }

    /// Inside an `S`…`E` block.
    pub(super) fn in_block(&self) -> bool {
        self.current.is_some()
    }

    /// The first change of the oldest streamed transaction holding changes: the confirmed LSN
    /// stays before it.
    pub(super) fn oldest(&self) -> Option<Lsn> {
        self.txns
            .values()
            .flat_map(|txn| txn.tables.values())
            .map(|table| table.first.commit)
            .min()
    }

    /// Streamed transactions in progress (for the log and status).
    pub(super) fn in_progress(&self) -> usize {
        self.txns.len()
    }

    /// Takes `xid`'s batch of table `index` out while the pipeline works on it (the pipeline
    /// is borrowed whole meanwhile); [`Streams::put_back`] returns it, unless the xid was rolled
    /// back in between.
    fn take(&mut self, xid: Xid, index: usize) -> Option<StreamTable> {
        self.txns
            .get_mut(&xid)
            .and_then(|txn| txn.tables.remove(&index))
    }

    fn put_back(&mut self, xid: Xid, index: usize, st: StreamTable) {
        if let Some(txn) = self.txns.get_mut(&xid) {
            txn.tables.insert(index, st);
        }
    }
}

impl Pipeline {
    /// A message of the streaming protocol, or any message inside an `S`…`E` block. Returns the
    /// message when the ordinary path takes it (a Relation, a logical message).
    pub(super) async fn stream_message(
        &mut self,
        lsn: Lsn,
        message: Message,
    ) -> Result<Option<Message>, PipelineError> {
        if self.streams.current_confirmed
            && matches!(
                message,
                Message::Insert(_) | Message::Update(_) | Message::Delete(_) | Message::Truncate(_)
            )
        {
            // In StarRocks already (see `CONFIRMED_WHOLE`).
            return Ok(None);
        }
        match message {
            Message::StreamStart(start) => {
                tracing::trace!(xid = %start.xid, first = start.first_segment, "stream block");
                self.streams.current = Some(start.xid);
                self.streams.current_confirmed = {
                    let mut confirmed = confirmed_whole();
                    match *confirmed {
                        // Decoding is past its commit: it cannot come again.
                        Some((_, commit)) if lsn > commit => {
                            *confirmed = None;
                            false
                        }
                        Some((xid, _)) => xid == start.xid,
                        None => false,
                    }
                };
                Ok(None)
            }
            Message::StreamStop => {
                self.streams.current = None;
                self.streams.current_confirmed = false;
                Ok(None)
            }
            Message::StreamCommit(commit) => {
                tracing::debug!(xid = %commit.xid, commit = %commit.commit_lsn, "stream commit");
                self.stream_commit(commit).await?;
                Ok(None)
            }
            Message::StreamAbort(abort) => {
                self.stream_abort(abort).await?;
                Ok(None)
            }
            message if !self.streams.in_block() => Ok(Some(message)),
            Message::Insert(insert) => {
                self.stream_change(lsn, insert.relation_id, Change::Insert(insert.new_tuple))
                    .await?;
                Ok(None)
            }
            Message::Update(update) => {
                let unchanged = update
                    .new_tuple
                    .raw_values()
                    .any(|value| matches!(value, TupleValueRef::UnchangedToast));
                if unchanged && self.by_relation.contains_key(&update.relation_id) {
                    return Err(self.stream_read_again("an UPDATE left a TOASTed value unchanged"));
                }
                self.stream_change(
                    lsn,
                    update.relation_id,
                    Change::Update(update.old_tuple, update.new_tuple),
                )
                .await?;
                Ok(None)
            }
            Message::Delete(delete) => {
                self.stream_change(lsn, delete.relation_id, Change::Delete(delete.old_tuple))
                    .await?;
                Ok(None)
            }
            Message::Truncate(truncate) => {
                if truncate
                    .relation_ids
                    .iter()
                    .any(|relation| self.by_relation.contains_key(relation))
                {
                    return Err(self.stream_read_again("it truncates a replicated table"));
                }
                Ok(None)
            }
            Message::Relation(relation) => {
                // Postgres sends a relation again inside a stream block after its schema changed
                // (or its cache was invalidated) within the session: the streamed batch was
                // decoded with the old columns, and a target ALTER would wait for the open
                // StarRocks transaction. It also sends it, unchanged, before the first change of
                // every streamed top-level transaction to the table (pgoutput's
                // `schema_sent_in_streamed_txn`, per xid): while another streamed xid holds
                // changes of the table, that one is taken as it is (as the ordinary path takes
                // a relation it already knows), only a changed one reads again.
                let changed_while_streamed = self
                    .by_relation
                    .get(&relation.relation_id)
                    .is_some_and(|index| {
                        !super::schema_cache::matches(&self.tables[*index].schema, &relation)
                            && self
                                .streams
                                .txns
                                .values()
                                .any(|txn| txn.tables.contains_key(index))
                    });
                if changed_while_streamed {
                    return Err(
                        self.stream_read_again("a table's relation changed while it held changes")
                    );
                }
                Ok(Some(Message::Relation(relation)))
            }
            message => Ok(Some(message)),
        }
    }

    async fn stream_change(
        &mut self,
        lsn: Lsn,
        relation: crate::postgres::Oid,
        change: Change,
    ) -> Result<(), PipelineError> {
        let Some(xid) = self.streams.current else {
            return Ok(());
        };
        let Some(&index) = self.by_relation.get(&relation) else {
            if self.ignored.contains(&relation) {
                return Ok(());
            }
            return Err(PipelineError::UnknownRelation { lsn, relation });
        };
        if self.streams.skipped.contains(&(xid, index)) {
            return Ok(());
        }
        let table = &self.tables[index];
        if table.parked.is_some()
            || (!self.copying.is_empty() && self.copying.contains(&table.source_name))
        {
            // Dropped, as `admit` drops the ordered path's: the stream brings it again.
            return Ok(());
        }
        if table.resume.is_some_and(Resume::is_reform) {
            // The batch being re-formed must go out whole, under its recorded label, and the
            // record must not be replaced by this transaction's before it did.
            return Err(self.stream_read_again("its table is re-forming a batch after a restart"));
        }
        let known = self
            .streams
            .txns
            .get(&xid)
            .is_some_and(|txn| txn.tables.contains_key(&index));
        if !known {
            let label = Label::for_stream(&self.settings.slot, &table.target, xid.0);
            if self
                .streams
                .committed_at_start
                .labels
                .contains(label.as_str())
            {
                // Committed before the crash (the restart found it prepared): drop it all.
                tracing::info!(%xid, %label, "a streamed transaction the previous run committed streams again: skipped");
                self.streams.skipped.insert((xid, index));
                return Ok(());
            }
            // Every change received before this one is loaded before its transaction begins.
            self.seal_and_send(index).await?;
            let mut batch = TableBatch::default();
            batch.set_row_overhead(body_row_overhead(&self.tables[index].schema));
            let stream_table = StreamTable {
                xid,
                batch,
                buffered: Buffered::default(),
                label,
                first: ChangePosition {
                    commit: lsn,
                    seq: 1,
                },
                seq: 0,
                sent: false,
            };
            self.context.handle.stream_opened(
                &self.tables[index].source_name,
                xid.0,
                stream_table.label.as_str(),
            );
            self.streams
                .txns
                .entry(xid)
                .or_default()
                .tables
                .insert(index, stream_table);
        }
        let Some(mut st) = self.streams.take(xid, index) else {
            return Ok(());
        };
        st.seq = st.seq.saturating_add(1);
        let position = ChangePosition {
            commit: st.first.commit,
            seq: st.seq,
        };
        let keys = &self.tables[index].key_columns;
        match change {
            Change::Insert(row) => st.batch.insert(position, keys, row),
            Change::Update(old, new) => st.batch.update(position, keys, old.as_ref(), new),
            Change::Delete(old) => st.batch.delete(position, keys, &old),
        }
        st.buffered.set(&self.context.handle, st.batch.bytes());
        // As for a table's batch (`apply.rs` `flush_due`): under a full buffer only when the
        // loader is free, or every change would go out as a part of its own while the previous
        // part's body still holds the buffer.
        let full = st.batch.changes() >= self.settings.flush_rows
            || st.batch.bytes() >= self.settings.flush_bytes
            || (self.context.handle.buffered_bytes() >= self.settings.max_buffer_bytes
                && self.tables[index].loader_idle());
        let result = if full {
            self.send_stream_part(index, &mut st, None).map(|_| ())
        } else {
            Ok(())
        };
        self.streams.put_back(xid, index, st);
        result
    }

    /// Seals `st`'s batch and sends it as a part of its StarRocks transaction; `commit`: the
    /// last part, of the transaction committed there. Returns whether anything was sent.
    fn send_stream_part(
        &mut self,
        index: usize,
        st: &mut StreamTable,
        commit: Option<Lsn>,
    ) -> Result<bool, PipelineError> {
        let table = &self.tables[index];
        if table.parked.is_some() {
            // Parked meanwhile (its ordered batch, sent just before, failed to encode): nothing
            // of the table is loaded, and a sealed part's bytes would never be released.
            st.batch = TableBatch::default();
            st.buffered.set(&self.context.handle, 0);
            self.context
                .handle
                .stream_closed(&table.source_name, st.xid.0, false);
            return Ok(false);
        }
        if st.batch.bytes() >= TRIM_BEFORE_SEAL {
            // As `flush.rs` does before a large seal: the body is written while the rows are
            // still held, so the heap's free pages go back first (allocator.rs).
            super::allocator::trim_heap();
        }
        let sealed = st.batch.seal_as(
            &table.encoder,
            BodyFormat::Json,
            &self.settings.slot,
            &table.target,
            self.settings.compression,
        );
        st.buffered.set(&self.context.handle, st.batch.bytes());
        let sealed: Option<SealedBatch> = sealed.map_err(PipelineError::Encode)?;
        let last = commit.map(|commit| ChangePosition {
            commit,
            seq: st.seq,
        });
        let role = TxnRole {
            label: st.label.clone(),
            first: st.first,
            last_part: last.is_some(),
            stream: Some(st.xid),
        };
        let range = last.map(|last| {
            (
                ChangePosition {
                    commit: last.commit,
                    seq: 1,
                },
                last,
            )
        });
        match sealed {
            Some(mut sealed) => {
                if super::txn::shape(&sealed).is_none() {
                    // Several column sets (partial updates): a StarRocks transaction takes one.
                    // `st` is out of `streams` while it is sent: rolled back here, the rest of
                    // its xid's tables with the others.
                    st.buffered.set(&self.context.handle, 0);
                    self.context
                        .handle
                        .stream_closed(&table.source_name, st.xid.0, false);
                    if std::mem::take(&mut st.sent) {
                        let _ = self.send(index, Job::StreamRollback(st.label.clone()), None);
                    }
                    return Err(self.stream_read_again_of(
                        Some(st.xid),
                        "a part holds rows of several column sets",
                    ));
                }
                self.context.handle.add_buffered(sealed.buffered_bytes);
                if let Some(last) = last {
                    // The record and the restart rule see the final range by its commit.
                    sealed.last = last;
                }
                self.send(index, Job::StreamPart(sealed, role), range)?;
                st.sent = true;
                Ok(true)
            }
            None => match last {
                Some(last) if st.sent => {
                    self.send(
                        index,
                        Job::StreamClose {
                            label: st.label.clone(),
                            last,
                        },
                        range,
                    )?;
                    Ok(true)
                }
                _ => Ok(false),
            },
        }
    }

    /// Under a full buffer (the flush timer): every streamed batch holding changes goes out as
    /// a part, so an idle streamed transaction does not hold the buffer.
    pub(super) fn seal_streams(&mut self) -> Result<(), PipelineError> {
        let open: Vec<(Xid, usize)> = self
            .streams
            .txns
            .iter()
            .flat_map(|(xid, txn)| {
                txn.tables
                    .iter()
                    .filter(|(_, table)| !table.batch.is_empty())
                    .map(move |(index, _)| (*xid, *index))
                    // One part in flight per table at a time: a second body beside the first
                    // would only add to the full buffer.
                    .filter(|(_, index)| self.tables[*index].loader_idle())
            })
            .collect();
        for (xid, index) in open {
            let Some(mut st) = self.streams.take(xid, index) else {
                continue;
            };
            let result = self.send_stream_part(index, &mut st, None);
            self.streams.put_back(xid, index, st);
            result?;
        }
        Ok(())
    }

    async fn stream_commit(&mut self, commit: StreamCommit) -> Result<(), PipelineError> {
        self.note_committed(commit.commit_lsn, commit.end_lsn, commit.commit_ts);
        self.streams.skipped.retain(|(xid, _)| *xid != commit.xid);
        if let Some(txn) = self.streams.txns.remove(&commit.xid) {
            let tables = txn.tables.len();
            for (index, mut st) in txn.tables {
                let last = ChangePosition {
                    commit: commit.commit_lsn,
                    seq: st.seq,
                };
                let loaded = self.tables[index]
                    .resume
                    .is_some_and(|rule| rule.change(last) == Verdict::Skip);
                if loaded {
                    // The restart rule says this source transaction is in StarRocks already on
                    // this table (table mode committed it whole before a crash, and the restart
                    // committed its prepared transaction); streamed this time, it must not be
                    // committed again over what came after it.
                    tracing::info!(xid = %commit.xid, commit = %commit.commit_lsn, table = %self.tables[index].target, "a streamed transaction the previous run loaded whole: rolled back, not committed again");
                    self.drop_stream_table(index, st);
                    continue;
                }
                // Transactions committed before this one go first, in the table's order.
                self.seal_and_send(index).await?;
                self.send_stream_part(index, &mut st, Some(commit.commit_lsn))?;
                st.buffered.set(&self.context.handle, 0);
            }
            tracing::debug!(xid = %commit.xid, commit = %commit.commit_lsn, tables, "a streamed transaction committed");
        }
        self.commit_passed(commit.commit_lsn).await?;
        self.advance(false).await
    }

    async fn stream_abort(&mut self, abort: StreamAbort) -> Result<(), PipelineError> {
        if abort.aborts_whole_transaction() {
            self.streams.skipped.retain(|(xid, _)| *xid != abort.xid);
            self.rollback_stream(Some(abort.xid));
            return self.advance(false).await;
        }
        let touched = self.streams.txns.contains_key(&abort.xid);
        if !touched {
            // Nothing of it was taken (no replicated table): nothing to undo.
            return Ok(());
        }
        Err(self.stream_read_again("a savepoint was rolled back after its changes were streamed"))
    }

    /// Rolls back the StarRocks transactions of `xid` and drops what it holds.
    fn rollback_stream(&mut self, xid: Option<Xid>) {
        let Some(txn) = xid.and_then(|xid| self.streams.txns.remove(&xid)) else {
            return;
        };
        for (index, st) in txn.tables {
            self.drop_stream_table(index, st);
        }
    }

    /// Drops what a streamed transaction holds for table `index` and rolls back its StarRocks
    /// transaction there.
    fn drop_stream_table(&mut self, index: usize, mut st: StreamTable) {
        st.batch = TableBatch::default();
        st.buffered.set(&self.context.handle, 0);
        self.context
            .handle
            .stream_closed(&self.tables[index].source_name, st.xid.0, false);
        if st.sent {
            // A rollback StarRocks did not take leaves the transaction to its idle timeout or
            // the next start's rollback: nothing of it is visible either way. A parked table's
            // loader takes no job: the record stays for the next start's rollback.
            let _ = self.send(index, Job::StreamRollback(st.label), None);
        }
    }

    /// Table `index` stops taking streamed changes until the stream restarts: it was parked, or
    /// a copy while streaming begins. The streamed transactions' batches of it are dropped (their
    /// changes come again when the stream restarts; a parked table's sealed part would have no
    /// loader to release its bytes) and their StarRocks transactions rolled back: by its loader
    /// before a copy's barrier (a commit of the early parts at the Stream Commit would land over
    /// the copy's newer rows), or by the next start's records when the loader stopped. Status no
    /// longer lists them.
    pub(super) fn drop_table_streams(&mut self, index: usize) {
        let xids: Vec<Xid> = self
            .streams
            .txns
            .iter()
            .filter(|(_, txn)| txn.tables.contains_key(&index))
            .map(|(xid, _)| *xid)
            .collect();
        for xid in xids {
            let Some(st) = self.streams.take(xid, index) else {
                continue;
            };
            self.drop_stream_table(index, st);
            if self
                .streams
                .txns
                .get(&xid)
                .is_some_and(|txn| txn.tables.is_empty())
            {
                self.streams.txns.remove(&xid);
            }
        }
    }

    /// The current streamed transaction cannot go on as streamed: its StarRocks transactions are
    /// rolled back, streaming is off from the next attempt on, and this one ends.
    fn stream_read_again(&mut self, why: &'static str) -> PipelineError {
        self.stream_read_again_of(self.streams.current, why)
    }

    /// [`Self::stream_read_again`] for `xid`, the transaction that cannot go on as streamed.
    fn stream_read_again_of(&mut self, xid: Option<Xid>, why: &'static str) -> PipelineError {
        for xid in self.streams.txns.keys().copied().collect::<Vec<_>>() {
            self.rollback_stream(Some(xid));
        }
        // Without an xid (not in a block) nothing marks the end of the pause but a restart.
        *pause() = Some(Pause {
            xid: xid.unwrap_or(Xid(0)),
            commit: None,
        });
        tracing::warn!(xid = ?xid.map(|x| x.0), in_progress = self.streams.in_progress(), "{why}: the streamed transaction is read again whole; streaming stays off until the confirmed LSN passes its COMMIT");
        PipelineError::StreamReadAgain {
            xid: xid.map_or(0, |xid| xid.0),
            why,
        }
    }

    /// A whole transaction's `Begin` (no streaming): if it is the one that paused streaming,
    /// its commit LSN is what the confirmed LSN must pass before streaming resumes.
    pub(super) fn stream_note_begin(&self, xid: Xid, final_lsn: Lsn) {
        if let Some(pause) = pause().as_mut() {
            if pause.xid == xid && xid != Xid(0) {
                pause.commit = Some(final_lsn);
            }
        }
    }

    /// The confirmed LSN moved: once it is past the COMMIT of the transaction that paused
    /// streaming, that transaction is in StarRocks and will not come again whole (its streamed
    /// changes may: `CONFIRMED_WHOLE`), so the pause ends and the running attempt is told to
    /// drain (the next one streams).
    pub(super) fn stream_confirmed(&self, confirmed: Lsn) {
        let mut pause = pause();
        // The confirmed LSN takes commit end LSNs, and the end of a commit is past its start.
        if let Some(Pause {
            xid,
            commit: Some(commit),
        }) = *pause
        {
            if confirmed > commit {
                *pause = None;
                *confirmed_whole() = Some((xid, commit));
                tracing::info!(xid = xid.0, %commit, %confirmed, "the transaction read again whole is confirmed: streaming resumes");
                RESUME.notify_one();
            }
        }
    }
}

/// A loader found that streamed transaction `xid` cannot go on as streamed (its
/// [`PipelineError::StreamReadAgain`] came back in a job's report, `flush.rs` `job_done`):
/// streaming pauses as for any transaction read again whole.
pub(super) fn pause_for(xid: Xid) {
    *pause() = Some(Pause { xid, commit: None });
}

/// A change of a streamed transaction.
enum Change {
    Insert(crate::postgres::pgoutput::TupleData),
    Update(
        Option<crate::postgres::pgoutput::OldTuple>,
        crate::postgres::pgoutput::TupleData,
    ),
    Delete(crate::postgres::pgoutput::OldTuple),
}
