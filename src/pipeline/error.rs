//! [`PipelineError`]: why the pipeline stopped, and whether a new attempt may succeed unchanged
//! (`is_transient`, one match). Variants name the table and the change positions involved.

use crate::postgres::catalog::CatalogError;
use crate::postgres::{ChangePosition, Lsn, Oid};
use crate::sink::starrocks::encoding::EncodeError;
use crate::sink::starrocks::setup::TargetSetupError;
use crate::sink::LoadFailure;

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("loading `{table}` (changes {first} to {last}): {source}")]
    Load {
        table: String,
        first: ChangePosition,
        last: ChangePosition,
        #[source]
        source: Box<LoadFailure>,
    },
    #[error("StarRocks table `{table}`: {source}")]
    Target {
        table: String,
        #[source]
        source: TargetSetupError,
    },
    #[error(transparent)]
    Checkpoint(#[from] crate::postgres::checkpoint::CheckpointError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("source table {table}: {source}")]
    Source {
        table: String,
        #[source]
        source: CatalogError,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("change at LSN {lsn} for relation {relation} arrived before its Relation message")]
    UnknownRelation { lsn: Lsn, relation: Oid },
    #[error("the loader of `{0}` stopped unexpectedly")]
    LoaderGone(String),
    /// Boxed: the error type names the step, table, label and the transport's cause.
    #[error(transparent)]
    Transaction(Box<crate::sink::starrocks::transaction::TransactionError>),
    #[error("StarRocks transaction `{label}` of `{table}` is about to commit, but the checkpoint names another label for the table: not committed (a restart rolls it back and loads its changes again)")]
    TransactionNotRecorded { table: String, label: String },
    /// StarRocks aborted the same transaction at its timeout on consecutive attempts: each
    /// attempt reads the source transaction again from its first change and takes as long, so
    /// another would too. The table is parked (`loader.rs`, [`TimedOut`]).
    #[error("StarRocks aborted transaction `{label}` of `{table}` {aborts} times in a row at its {} ({limit_s} s; the last attempt ran {age_s} s and sent {parts} parts, {rows} rows): this source transaction takes longer to load than that; raise {} and restart the agent, then it loads whole", timed_out.variable(), timed_out.variable())]
    TransactionTimedOut {
        table: String,
        label: String,
        /// The transaction's first change: the table is held from there.
        first: ChangePosition,
        timed_out: TimedOut,
        limit_s: u64,
        age_s: u64,
        parts: u32,
        rows: u64,
        aborts: u32,
    },
    /// StarRocks refused a step of a table's StarRocks transaction (`begin`, `prepare`) for good,
    /// as it would refuse a load: like a refused load, the table is parked from the
    /// transaction's first change (`flush.rs` `job_done`), the other tables go on.
    #[error(
        "StarRocks refused transaction `{label}` of `{table}` (changes from {first}): {source}"
    )]
    TransactionRefused {
        table: String,
        label: String,
        first: ChangePosition,
        #[source]
        source: Box<crate::sink::starrocks::transaction::TransactionError>,
    },
    /// A streamed transaction the StarRocks side cannot carry as it was streamed (a savepoint
    /// rolled back after its changes were loaded, a TRUNCATE or an unchanged TOAST value inside
    /// it): its StarRocks transactions are rolled back, and the next attempt reads it whole,
    /// without streaming (`stream.rs`).
    #[error("streamed transaction {xid}: {why}; reading it again whole, without streaming")]
    StreamReadAgain { xid: u32, why: &'static str },
    /// `begin` of a multi-table transaction found its label already committed: the checkpoint
    /// and StarRocks disagree, and loading the changes under the next label could apply them
    /// twice (`multi.rs`).
    #[error("multi-table transaction label `{label}` is already committed in StarRocks, but the checkpoint has changes {first}..{last} still to load under it: they may be applied already, and loading them under another label could apply them twice; stopping (does another agent use this slot, or was the checkpoint schema restored from a backup?)")]
    MultiLabelCommitted {
        label: String,
        first: ChangePosition,
        last: ChangePosition,
    },
}

/// Which StarRocks transaction timeout aborted a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedOut {
    /// `timeout` on begin: begin to prepared.
    Timeout,
    /// `idle_transaction_timeout` on begin: no load for that long.
    Idle,
}

impl TimedOut {
    /// The variable that sets it.
    pub fn variable(self) -> &'static str {
        match self {
            TimedOut::Timeout => "STARWAL_TXN_TIMEOUT_S",
            TimedOut::Idle => "STARWAL_TXN_IDLE_TIMEOUT_S",
        }
    }
}

impl From<crate::sink::starrocks::transaction::TransactionError> for PipelineError {
    fn from(error: crate::sink::starrocks::transaction::TransactionError) -> PipelineError {
        PipelineError::Transaction(Box::new(error))
    }
}

impl PipelineError {
    /// `err`, from a step of table `table`'s StarRocks transaction `label` whose first change is
    /// `first`: a refusal for good becomes [`PipelineError::TransactionRefused`] (parkable);
    /// anything else (transient, aborted, a committed label) stays as it is.
    pub(crate) fn refused_in_transaction(
        self,
        table: &str,
        label: &str,
        first: ChangePosition,
    ) -> PipelineError {
        use crate::sink::starrocks::transaction::TransactionError;
        match self {
            PipelineError::Transaction(source)
                if matches!(*source, TransactionError::Refused { .. })
                    && !source.is_transient() =>
            {
                PipelineError::TransactionRefused {
                    table: table.to_owned(),
                    label: label.to_owned(),
                    first,
                    source,
                }
            }
            other => other,
        }
    }

    pub(crate) fn target(table: &str, source: TargetSetupError) -> PipelineError {
        PipelineError::Target {
            table: table.to_owned(),
            source,
        }
    }

    /// Whether starting over (reconnect, set up, resume from the checkpoint) may succeed without
    /// anyone changing anything: connections lost, servers restarting.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Load { .. } | PipelineError::Encode(_) => false,
            PipelineError::Target { source, .. } => source.is_transient(),
            PipelineError::Checkpoint(_) | PipelineError::Source { .. } => true,
            // Tables that cannot be replicated, refused catalog queries: someone must act.
            PipelineError::Catalog(_) => false,
            PipelineError::UnknownRelation { .. } | PipelineError::LoaderGone(_) => true,
            // The next attempt rolls back what is open and reads the changes again.
            PipelineError::Transaction(source) => source.is_transient(),
            PipelineError::TransactionNotRecorded { .. } => true,
            // Another attempt times out the same way: someone must raise the timeout.
            PipelineError::TransactionTimedOut { .. } => false,
            PipelineError::TransactionRefused { .. } => false,
            PipelineError::StreamReadAgain { .. } => true,
            // The checkpoint and StarRocks disagree: someone must look.
            PipelineError::MultiLabelCommitted { .. } => false,
        }
    }
}
