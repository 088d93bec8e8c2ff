//! Unchanged TOAST in a source transaction larger than a batch (invariant 11, issue 14).
//!
//! An UPDATE that leaves a TOASTed column unchanged carries no value for it. A batch fills it
//! from the key's earlier image or a REPLICA IDENTITY FULL old tuple (`batch.rs`); without
//! either the row is sealed as a partial update, which a StarRocks transaction cannot take (its
//! loads share one set of data headers, `txn.rs`). A bulk UPDATE of TOAST-heavy rows is exactly
//! that: before this, nearly every part of such a transaction went out as a visible plain load.
//!
//! So a batch that goes into a StarRocks transaction — the table has one open, or the batch ends
//! inside its source transaction — has those rows completed from the source before it is sealed,
//! as moved rows are (`apply.rs` `fetch_moved_row`: the same source read, the same record with
//! the load, a row the source no longer has is not written). Batches sealed at a transaction
//! boundary are untouched: their partial updates are exact and cost no source read.
//!
//! What a reader can see. The value read is the source's current one, not the one the decoded
//! transaction T left; both are the same unless a later committed transaction U changed that
//! column of that row (or deleted the row) before the read. U's change is later in the stream
//! and lands after T, so the final state is right. Between T's StarRocks commit and U's, that
//! row shows T's other columns with U's value of the unchanged column (or, deleted by U, its
//! state before T): a state the source did not have, for rows changed again within the
//! replication lag, until the next load of the table. The split this replaces showed a prefix
//! of T's rows for the whole time T's parts were loading, for every large UPDATE.
//!
//! Memory (invariant 8): values are counted as they arrive ([`TableBatch::complete`]). When the
//! buffer reaches its cap while completing, the rows completed so far go as a part and the rest
//! are moved to a batch of their own ([`TableBatch::split_partial`]) and completed once loads
//! have made room. All of them go into the same StarRocks transaction, so none is visible
//! early; the rows of one batch have distinct keys, so their order among parts does not matter.

use super::batch::TableBatch;
use super::{Pipeline, PipelineError};

impl Pipeline {
    /// Completes the unchanged-TOAST rows of table `index`'s batch from the source when the
    /// batch goes into a StarRocks transaction (see the module docs). Returns the rows left to
    /// complete when the buffer filled first: the caller seals what was completed, then goes on
    /// with them ([`Pipeline::continue_with`]).
    pub(super) async fn complete_for_transaction(
        &mut self,
        index: usize,
    ) -> Result<Option<TableBatch>, PipelineError> {
        let table = &self.tables[index];
        // `transaction` mode seals every table as one group (multi.rs): not split in rounds.
        if self.multi.is_some() || table.batch.is_empty() || table.parked.is_some() {
            return Ok(None);
        }
        let mid = self
            .transaction
            .is_some_and(|(commit, _)| commit == table.batch.last().commit);
        if !mid && table.txn.is_none() {
            return Ok(None);
        }
        // Rows split off are sealed after this round, with positions inside its range: only
        // safe when the round goes into the StarRocks transaction too (a plain round would be
        // recorded, and skipped after a restart, as covering them). Key-only delete rows can
        // keep it out, and so can a row whose values cannot be read: then the buffer's cap
        // stops the completing instead, and the batch goes out as before (visible in parts,
        // counted in `transactions_split`).
        let mut may_split = !table.batch.has_key_only_rows();
        let mut requests = table.batch.partial_rows().into_iter();
        while let Some(request) = requests.next() {
            let entry = request.entry;
            self.fetch_moved_row(index, request).await?;
            let table = &mut self.tables[index];
            may_split &= !table.batch.is_partial(entry);
            table.sync_buffered(&self.context.handle);
            let full = self.context.handle.buffered_bytes() >= self.settings.max_buffer_bytes;
            if full && requests.len() > 0 {
                if !may_split {
                    return Ok(None);
                }
                let rest = self.tables[index].batch.split_partial();
                if !rest.is_empty() {
                    return Ok(Some(rest));
                }
            }
        }
        Ok(None)
    }

    /// Seals table `index`'s batch; `more` when rows split off from it follow
    /// ([`Pipeline::complete_for_transaction`]). Those go into the same StarRocks transaction, so
    /// this part must not close it, also when the source COMMIT was already read (the last
    /// part is sealed then): the part is sealed as one inside its source transaction.
    pub(super) async fn seal_round(
        &mut self,
        index: usize,
        more: bool,
    ) -> Result<(), PipelineError> {
        let commit = self.tables[index].batch.last().commit;
        let closing = more && self.transaction.is_none();
        if closing {
            self.transaction = Some((commit, std::time::SystemTime::now()));
        }
        let sealed = self.seal_once(index).await;
        if closing {
            self.transaction = None;
        }
        sealed
    }

    /// Makes `rest` (rows split off by [`Pipeline::complete_for_transaction`]) the table's batch
    /// after the completed rows were sealed, and waits until loads have freed room to complete
    /// them.
    pub(super) async fn continue_with(
        &mut self,
        index: usize,
        rest: TableBatch,
    ) -> Result<(), PipelineError> {
        let table = &mut self.tables[index];
        // Sealing left the batch empty: nothing is replaced.
        table.batch = rest;
        table.sync_buffered(&self.context.handle);
        while self.context.handle.buffered_bytes() >= self.settings.max_buffer_bytes
            && !self.tables.iter().all(|table| table.loader_idle())
        {
            match self.done_rx.recv().await {
                // Boxed: a finished load may seal this table again (`job_done` → `flush`).
                Some(done) => Box::pin(self.job_done(done)).await?,
                None => break,
            }
        }
        Ok(())
    }
}
