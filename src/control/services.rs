//! The `starwal.v1` gRPC services over an [`EngineHandle`]: `Control` (the levers and Resync,
//! behind [`auth`](super::auth)), `Status` (a snapshot) and `Metrics` (a stream of rate
//! samples), plus the snapshot → protobuf conversions they share.
//!
//! Every RPC answers from the handle alone, so they work in any phase, including while the
//! engine retries its setup: that is when an operator most needs `status`. Levers only record
//! a request on the handle; the engine acts on it at its next step, and the answer reports the
//! state right after the call (a Drain answers `DRAINING` only once the engine got there; a
//! Resync answers once the request is queued, and the copy's progress shows in `Status`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response};

use crate::control::auth::authorize;
use crate::control::pb;
use crate::control::process::ProcessStats;
use crate::control::sample::{sample, sample_interval, Counters};
use crate::postgres::Lsn;
use crate::secret::Secret;
use crate::state::{
    CopyProgress, EngineHandle, Phase, ResyncError, StatusSnapshot, StopRequest, TableStatus,
    LOAD_DURATION_BUCKETS,
};

/// `starwal.v1.Control`.
#[derive(Debug)]
pub(crate) struct ControlService {
    pub(crate) handle: Arc<EngineHandle>,
    pub(crate) token: Option<Secret>,
}

impl ControlService {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), tonic::Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes());
        authorize(self.token.as_ref(), authorization, request.remote_addr())
            .map_err(|denial| denial.into_status())
    }

    fn lever_state(&self) -> Option<pb::LeverState> {
        let status = self.handle.status();
        Some(pb::LeverState {
            phase: pb::Phase::from(status.phase).into(),
            paused: status.paused,
        })
    }
}

#[tonic::async_trait]
impl pb::control_server::Control for ControlService {
    async fn pause(
        &self,
        request: Request<pb::PauseRequest>,
    ) -> Result<Response<pb::PauseResponse>, tonic::Status> {
        self.authorize(&request)?;
        self.handle.pause();
        tracing::info!(peer = ?request.remote_addr(), "reading paused by Control.Pause");
        Ok(Response::new(pb::PauseResponse {
            state: self.lever_state(),
        }))
    }

    async fn resume(
        &self,
        request: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::ResumeResponse>, tonic::Status> {
        self.authorize(&request)?;
        self.handle.resume();
        tracing::info!(peer = ?request.remote_addr(), "reading resumed by Control.Resume");
        Ok(Response::new(pb::ResumeResponse {
            state: self.lever_state(),
        }))
    }

    async fn drain(
        &self,
        request: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainResponse>, tonic::Status> {
        self.authorize(&request)?;
        self.handle.request_stop(StopRequest::Drain);
        tracing::info!(peer = ?request.remote_addr(), "drain requested by Control.Drain");
        Ok(Response::new(pb::DrainResponse {
            state: self.lever_state(),
        }))
    }

    async fn stop(
        &self,
        request: Request<pb::StopRequest>,
    ) -> Result<Response<pb::StopResponse>, tonic::Status> {
        self.authorize(&request)?;
        self.handle.request_stop(StopRequest::Stop);
        tracing::info!(peer = ?request.remote_addr(), "stop requested by Control.Stop");
        Ok(Response::new(pb::StopResponse {
            state: self.lever_state(),
        }))
    }

    async fn resync(
        &self,
        request: Request<pb::ResyncRequest>,
    ) -> Result<Response<pb::ResyncResponse>, tonic::Status> {
        self.authorize(&request)?;
        let peer = request.remote_addr();
        let request = request.into_inner();
        let table = request.table;
        let partial = request.partial.map(|p| crate::state::PartialResync {
            boundaries: p.boundaries.into_iter().map(|k| k.values).collect(),
            chunks: p.chunks,
            delete_keys: p.delete_keys.into_iter().map(|k| k.values).collect(),
        });
        let chunks = partial.as_ref().map(|p| p.chunks.len());
        match self.handle.request_resync_of(&table, partial) {
            Ok(source) => {
                tracing::info!(?peer, table = %source, ?chunks, "resync requested by Control.Resync");
                Ok(Response::new(pb::ResyncResponse { table: source }))
            }
            Err(err) => Err(resync_refusal(&err)),
        }
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, tonic::Status> {
        self.authorize(&request)?;
        let peer = request.remote_addr();
        let tables = request.into_inner().tables;
        match self.handle.request_verify(tables.clone()) {
            Ok(()) => {
                tracing::info!(?peer, ?tables, "verify requested by Control.Verify");
                Ok(Response::new(pb::VerifyResponse {}))
            }
            Err(err) => Err(ControlService::verify_refusal(&err)),
        }
    }

    async fn retry(
        &self,
        request: Request<pb::RetryRequest>,
    ) -> Result<Response<pb::RetryResponse>, tonic::Status> {
        self.authorize(&request)?;
        let peer = request.remote_addr();
        let table = request.into_inner().table;
        match self.handle.request_retry(&table) {
            Ok(source) => {
                tracing::info!(?peer, table = %source, "retry of a parked table requested by Control.Retry");
                Ok(Response::new(pb::RetryResponse { table: source }))
            }
            Err(err) => Err(resync_refusal(&err)),
        }
    }
}

impl ControlService {
    fn verify_refusal(error: &crate::state::VerifyRefused) -> tonic::Status {
        tonic::Status::failed_precondition(error.to_string())
    }
}

/// A refused resync or retry as gRPC answers it: the table's name is the caller's to fix (NOT_FOUND), a
/// copy under way is the agent's state (FAILED_PRECONDITION: ask again once it is done).
fn resync_refusal(error: &ResyncError) -> tonic::Status {
    match error {
        ResyncError::UnknownTable(_) => tonic::Status::not_found(error.to_string()),
        ResyncError::AlreadyCopying(_) | ResyncError::NotParked(_) => {
            tonic::Status::failed_precondition(error.to_string())
        }
    }
}

/// `starwal.v1.Status`.
#[derive(Debug)]
pub(crate) struct StatusService {
    pub(crate) handle: Arc<EngineHandle>,
}

#[tonic::async_trait]
impl pb::status_server::Status for StatusService {
    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, tonic::Status> {
        Ok(Response::new(status_response(&self.handle.status())))
    }
}

/// Samples buffered per stream: a slow client makes its own stream wait, never the engine.
const SAMPLES_BUFFERED: usize = 2;

/// `starwal.v1.Metrics`.
#[derive(Debug)]
pub(crate) struct MetricsService {
    pub(crate) handle: Arc<EngineHandle>,
    /// Becomes `true` when the control server shuts down: streams end so shutdown is not held
    /// up by a client that never cancels.
    pub(crate) shutdown: watch::Receiver<bool>,
}

type SampleStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamMetricsResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl pb::metrics_server::Metrics for MetricsService {
    type StreamMetricsStream = SampleStream;

    async fn stream_metrics(
        &self,
        request: Request<pb::StreamMetricsRequest>,
    ) -> Result<Response<Self::StreamMetricsStream>, tonic::Status> {
        let interval = sample_interval(request.get_ref().interval_ms);
        let handle = Arc::clone(&self.handle);
        let mut shutdown = self.shutdown.clone();
        let (samples, receiver) = mpsc::channel(SAMPLES_BUFFERED);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate: it only sets the baseline.
            ticker.tick().await;
            let mut previous =
                Counters::read(&handle.status(), &ProcessStats::read(), Instant::now());
            loop {
                tokio::select! {
                    _ = samples.closed() => return,
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                    _ = ticker.tick() => {}
                }
                let snapshot = handle.status();
                let process = ProcessStats::read();
                let current = Counters::read(&snapshot, &process, Instant::now());
                let next = sample(&previous, &current, &snapshot, &process);
                if samples.send(Ok(next)).await.is_err() {
                    return;
                }
                previous = current;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

impl From<Phase> for pb::Phase {
    fn from(phase: Phase) -> pb::Phase {
        match phase {
            Phase::Init => pb::Phase::Init,
            Phase::Setup => pb::Phase::Setup,
            Phase::Snapshot => pb::Phase::Snapshot,
            Phase::Cdc => pb::Phase::Cdc,
            Phase::Draining => pb::Phase::Draining,
            Phase::Stopped => pb::Phase::Stopped,
        }
    }
}

impl From<Lsn> for pb::Lsn {
    fn from(lsn: Lsn) -> pb::Lsn {
        pb::Lsn {
            text: lsn.to_string(),
            value: lsn.0,
        }
    }
}

/// Everything in `snapshot`, as `GetStatus` answers it.
pub(crate) fn status_response(snapshot: &StatusSnapshot) -> pb::GetStatusResponse {
    let now = snapshot.at;
    pb::GetStatusResponse {
        phase: pb::Phase::from(snapshot.phase).into(),
        serving: snapshot.health.serving,
        health_detail: snapshot.health.detail.clone(),
        paused: snapshot.paused,
        received_lsn: Some(snapshot.received_lsn.into()),
        flushed_lsn: Some(snapshot.flushed_lsn.into()),
        confirmed_lsn: Some(snapshot.confirmed_lsn.into()),
        server_wal_end: Some(snapshot.server_wal_end.into()),
        lag_bytes: snapshot.lag_bytes,
        lag_seconds: snapshot.lag_seconds,
        unread_wal_bytes: snapshot.unread_wal_bytes,
        slot_retained_wal_bytes: snapshot.slot_retained_wal_bytes,
        buffered_bytes: snapshot.buffered_bytes,
        max_buffer_bytes: snapshot.max_buffer_bytes,
        uptime_seconds: snapshot.uptime.as_secs_f64(),
        tables: snapshot
            .tables
            .iter()
            .map(|table| table_status(table, now))
            .collect(),
        config: snapshot
            .config
            .iter()
            .map(|(name, value)| pb::ConfigSetting {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        verify: verify_result(&snapshot.verify),
    }
}

fn verify_result(verify: &crate::state::VerifyStatus) -> Option<pb::VerifyResult> {
    if !verify.running && verify.finished.is_none() {
        return None;
    }
    Some(pb::VerifyResult {
        running: verify.running,
        finished_unix_seconds: verify.finished.map(|at| {
            at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        }),
        seconds: verify.seconds,
        error: verify.error.clone(),
        tables: verify
            .tables
            .iter()
            .map(|t| pb::VerifyTable {
                table: t.table.clone(),
                rows_compared: t.rows_compared,
                rows_mismatched: t.rows_mismatched,
            })
            .collect(),
    })
}

fn table_status(table: &TableStatus, now: SystemTime) -> pb::TableStatus {
    let age = |at: SystemTime| now.duration_since(at).map_or(0.0, |d| d.as_secs_f64());
    let histogram = &table.load_duration;
    let mut cumulative = 0u64;
    let buckets = histogram
        .buckets
        .iter()
        .enumerate()
        .map(|(index, count)| {
            cumulative = cumulative.saturating_add(*count);
            pb::HistogramBucket {
                upper_bound_seconds: LOAD_DURATION_BUCKETS
                    .get(index)
                    .copied()
                    .unwrap_or(f64::INFINITY),
                cumulative_count: cumulative,
            }
        })
        .collect();
    pb::TableStatus {
        source: table.source.clone(),
        target: table.target.clone(),
        rows_inserted: table.rows_inserted,
        rows_updated: table.rows_updated,
        rows_deleted: table.rows_deleted,
        rows_loaded: table.rows_loaded,
        bytes_loaded: table.bytes_loaded,
        loads: table.loads,
        loads_in_flight: table.loads_in_flight,
        loads_deduplicated: table.loads_deduplicated,
        truncates: table.truncates,
        load_duration: Some(pb::Histogram {
            buckets,
            sum_seconds: histogram.sum_seconds,
            count: histogram.count,
        }),
        last_error: table.last_error.clone(),
        copy: table.copy.as_ref().map(pb::TableCopy::from),
        load_failures: table
            .load_failures
            .iter()
            .map(|(kind, count)| pb::LoadFailureCount {
                kind: (*kind).to_owned(),
                count: *count,
            })
            .collect(),
        load_retries: table.load_retries,
        failing: table.failing.as_ref().map(|failing| pb::LoadFailing {
            since_unix_seconds: failing
                .since
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            failing_seconds: age(failing.since),
            attempts: failing.attempts,
            kind: failing.kind.to_owned(),
            retrying: failing.transient,
        }),
        last_load_age_seconds: table.last_load_at.map(age),
        parked: table.parked.as_ref().map(|parked| pb::TableParked {
            held_from: parked.held_from.clone(),
            parked_seconds: age(parked.since),
            error: parked.error.clone(),
        }),
        open_transaction: table
            .open_transaction
            .as_ref()
            .map(|txn| pb::OpenTransaction {
                label: txn.label.clone(),
                rows: txn.rows,
                age_seconds: age(txn.began),
                prepared: txn.prepared,
            }),
        transactions_committed: table.transactions_committed,
        transactions_split: table.transactions_split,
        streamed_transactions: table
            .streamed_transactions
            .iter()
            .map(|(xid, txn)| pb::StreamedTransaction {
                xid: *xid,
                label: txn.label.clone(),
                rows: txn.rows,
                age_seconds: age(txn.began),
                prepared: txn.prepared,
            })
            .collect(),
    }
}

impl From<&CopyProgress> for pb::TableCopy {
    fn from(copy: &CopyProgress) -> pb::TableCopy {
        pb::TableCopy {
            state: copy.state.as_str().to_owned(),
            rows_copied: copy.rows_copied,
            rows_estimated: copy.rows_estimated,
            chunks_done: copy.chunks_done,
            chunks_total: copy.chunks_total,
            rows_per_second: copy.rows_per_second,
            eta_seconds: copy.eta_seconds,
        }
    }
}
