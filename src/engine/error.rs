//! Why an attempt of `starwal run` failed ([`AttemptError`]), and whether the same attempt may
//! work later unchanged: each error type decides that itself (`is_transient`, or always / never
//! for the few that have no choice), and the `From` impls carry its answer over, so the attempt
//! only writes `?`. [`StreamError`] names the stream's own failures.

use crate::config_error::ConfigError;
use crate::engine::setup::SetupError;
use crate::engine::snapshot::SnapshotError;
use crate::pipeline::{PipelineError, PipelineGone};
use crate::postgres::catalog::CatalogError;
use crate::postgres::checkpoint::CheckpointError;
use crate::postgres::replication::session::SessionError;
use crate::postgres::replication::ReplicationError;
use crate::postgres::snapshot::store::CopyStoreError;
use crate::sink::starrocks::setup::TargetSetupError;

/// Why an attempt failed, and whether the same attempt may work later unchanged (each error
/// type decides that itself; the `From` impls below only carry its answer over).
#[derive(Debug)]
pub(super) struct AttemptError {
    pub(super) error: anyhow::Error,
    pub(super) transient: bool,
}

/// `From` for error types that know whether they are transient (`is_transient`).
macro_rules! attempt_error_from {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for AttemptError {
            fn from(err: $error) -> Self {
                AttemptError {
                    transient: err.is_transient(),
                    error: err.into(),
                }
            }
        }
    )*};
}

attempt_error_from!(
    SetupError,
    PipelineError,
    SnapshotError,
    TargetSetupError,
    StreamError,
);

/// `From` for error types that are always (`true`) or never (`false`) transient.
macro_rules! attempt_error_always {
    ($($error:ty => $transient:expr),* $(,)?) => {$(
        impl From<$error> for AttemptError {
            fn from(err: $error) -> Self {
                AttemptError {
                    transient: $transient,
                    error: err.into(),
                }
            }
        }
    )*};
}

attempt_error_always!(
    // The state tables live in the source: failing to read or write them is the connection's.
    CheckpointError => true,
    CopyStoreError => true,
    // Tables that cannot be replicated, refused catalog queries: someone must act first.
    CatalogError => false,
    ConfigError => false,
);

/// What went wrong with the stream itself (the parts of an attempt that have no error type of
/// their own).
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamError {
    #[error("opening the replication connection: {0}")]
    Connect(#[source] ReplicationError),
    #[error("starting replication from slot `{slot}`: {source}")]
    Start {
        slot: String,
        #[source]
        source: ReplicationError,
    },
    #[error("the server ended the replication stream")]
    ServerEnded,
    #[error("replication stream: {0}")]
    Session(#[source] SessionError<PipelineGone>),
    #[error("the pipeline task failed: {0}")]
    PipelineTask(tokio::task::JoinError),
    #[error(
        "STARWAL_STREAMING needs Postgres 14 or later (pgoutput protocol 2 streams in-progress \
         transactions), the server runs {}: set STARWAL_STREAMING=off",
        .version / 10000
    )]
    StreamingNeedsPg14 { version: u32 },
}

impl StreamError {
    fn is_transient(&self) -> bool {
        match self {
            StreamError::Connect(source) | StreamError::Start { source, .. } => {
                source.is_transient()
            }
            StreamError::ServerEnded | StreamError::Session(_) | StreamError::PipelineTask(_) => {
                true
            }
            StreamError::StreamingNeedsPg14 { .. } => false,
        }
    }
}
