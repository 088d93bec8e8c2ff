//! The client side of the control plane, for `starwal status|pause|resume|drain|resync`: connect
//! to a running agent, call one RPC, and render the answer for people or (with `--json`) for
//! scripts.
//!
//! Errors say which address was tried and why, and tell an operator refused by the agent's
//! auth to pass the token; usage errors (a malformed address) are their own kind so the CLI can
//! exit 2 for them. The token is sent as `authorization: Bearer ...` and never printed.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint};

use crate::control::pb;
use crate::secret::Secret;

/// Where the subcommands connect when neither `--addr` nor `STARWAL_CONTROL_URL` says otherwise:
/// an agent on the same host with the default `STARWAL_CONTROL_ADDR`.
pub const DEFAULT_CONTROL_URL: &str = "http://127.0.0.1:50051";
/// How long connecting may take: a local agent answers at once, a remote one within seconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one RPC may take; every one answers from memory.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A mutating RPC of `starwal.v1.Control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lever {
    Pause,
    Resume,
    Drain,
    Stop,
}

impl Lever {
    /// The RPC's name as the proto spells it.
    pub fn rpc(self) -> &'static str {
        match self {
            Lever::Pause => "Control.Pause",
            Lever::Resume => "Control.Resume",
            Lever::Drain => "Control.Drain",
            Lever::Stop => "Control.Stop",
        }
    }
}

/// Why a control RPC failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid control server address `{}`: {reason}", crate::secret::redact_userinfo(.addr))]
    InvalidAddr { addr: String, reason: &'static str },
    #[error("the token (--token or STARWAL_CONTROL_TOKEN) contains characters not allowed in gRPC metadata: use visible ASCII")]
    InvalidToken,
    #[error("cannot reach the control server at {}: {}", crate::secret::redact_userinfo(.addr), crate::error_text::chain(.source))]
    Unreachable {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the control server at {} refused {rpc} ({}); pass the agent's token with --token or STARWAL_CONTROL_TOKEN", crate::secret::redact_userinfo(.addr), .source.message())]
    Refused {
        addr: String,
        rpc: &'static str,
        #[source]
        source: tonic::Status,
    },
    #[error("{rpc} on the control server at {} failed: {}", crate::secret::redact_userinfo(.addr), crate::error_text::chain(.source))]
    Rpc {
        addr: String,
        rpc: &'static str,
        #[source]
        source: tonic::Status,
    },
    #[error("the control server at {} answered {rpc} without the agent's state", crate::secret::redact_userinfo(.addr))]
    EmptyAnswer { addr: String, rpc: &'static str },
}

impl ClientError {
    /// A usage error (exit code 2), as opposed to a runtime failure (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ClientError::InvalidAddr { .. } | ClientError::InvalidToken
        )
    }
}

/// `host:port` or `http://host:port` → an endpoint; TLS is not served by the agent.
fn endpoint(addr: &str) -> Result<Endpoint, ClientError> {
    let invalid = |reason| ClientError::InvalidAddr {
        addr: addr.to_owned(),
        reason,
    };
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    if url.starts_with("https://") {
        return Err(invalid(
            "the control server speaks plain HTTP/2; use http://",
        ));
    }
    if !url.starts_with("http://") {
        return Err(invalid(
            "expected http://host:port, e.g. http://127.0.0.1:50051",
        ));
    }
    let endpoint = Endpoint::from_shared(url)
        .map_err(|_| invalid("expected http://host:port, e.g. http://127.0.0.1:50051"))?;
    if endpoint.uri().host().is_none_or(str::is_empty) {
        return Err(invalid("no host: expected http://host:port"));
    }
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT))
}

/// `message` with `authorization: Bearer <token>` metadata when a token is given.
fn authorized<T>(message: T, token: Option<&Secret>) -> Result<tonic::Request<T>, ClientError> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {}", token.expose())
            .parse()
            .map_err(|_| ClientError::InvalidToken)?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

async fn connect(addr: &str) -> Result<Channel, ClientError> {
    endpoint(addr)?
        .connect()
        .await
        .map_err(|source| ClientError::Unreachable {
            addr: addr.to_owned(),
            source,
        })
}

fn rpc_error(addr: &str, rpc: &'static str, status: tonic::Status) -> ClientError {
    match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => ClientError::Refused {
            addr: addr.to_owned(),
            rpc,
            source: status,
        },
        _ => ClientError::Rpc {
            addr: addr.to_owned(),
            rpc,
            source: status,
        },
    }
}

/// Calls `Status.GetStatus` on the agent at `addr`.
pub async fn status(addr: &str) -> Result<pb::GetStatusResponse, ClientError> {
    Connection::open(addr).await?.status().await
}

/// Checks `addr` and `token` as every call would, without connecting: `starwal top` refuses a
/// malformed one (a usage error) before it takes over the terminal.
pub fn check_args(addr: &str, token: Option<&Secret>) -> Result<(), ClientError> {
    endpoint(addr)?;
    authorized((), token).map(drop)
}

/// The RPC [`Connection::metrics`] calls, as errors name it.
pub const METRICS_RPC: &str = "Metrics.StreamMetrics";

/// One agent's control server, connected once for many calls (`starwal top` reads a status per
/// sample). The channel reconnects by itself after the agent restarts; a call made while it
/// cannot fails with [`ClientError::Rpc`] (`UNAVAILABLE`).
#[derive(Debug, Clone)]
pub struct Connection {
    addr: String,
    channel: Channel,
}

impl Connection {
    /// Connects to the agent at `addr`.
    pub async fn open(addr: &str) -> Result<Connection, ClientError> {
        Ok(Connection {
            addr: addr.to_owned(),
            channel: connect(addr).await?,
        })
    }

    /// `Status.GetStatus`.
    pub async fn status(&self) -> Result<pb::GetStatusResponse, ClientError> {
        pb::status_client::StatusClient::new(self.channel.clone())
            .get_status(pb::GetStatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| rpc_error(&self.addr, "Status.GetStatus", status))
    }

    /// Opens `Metrics.StreamMetrics`: one sample per `interval_ms` (clamped by the agent) until
    /// the stream is dropped. [`REQUEST_TIMEOUT`] bounds the wait for the stream to open, not
    /// its samples.
    pub async fn metrics(
        &self,
        interval_ms: u32,
    ) -> Result<tonic::Streaming<pb::StreamMetricsResponse>, ClientError> {
        pb::metrics_client::MetricsClient::new(self.channel.clone())
            .stream_metrics(pb::StreamMetricsRequest { interval_ms })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| rpc_error(&self.addr, METRICS_RPC, status))
    }

    /// A stream error as the other calls' errors read (naming the agent and the RPC).
    pub fn stream_error(&self, status: tonic::Status) -> ClientError {
        rpc_error(&self.addr, METRICS_RPC, status)
    }
}

/// Pulls `lever` on the agent at `addr`, with `token` as bearer token when given, and returns the
/// agent's state right after.
pub async fn pull(
    addr: &str,
    token: Option<&Secret>,
    lever: Lever,
) -> Result<pb::LeverState, ClientError> {
    let mut client = pb::control_client::ControlClient::new(connect(addr).await?);
    let state = match lever {
        Lever::Pause => client
            .pause(authorized(pb::PauseRequest {}, token)?)
            .await
            .map(|r| r.into_inner().state),
        Lever::Resume => client
            .resume(authorized(pb::ResumeRequest {}, token)?)
            .await
            .map(|r| r.into_inner().state),
        Lever::Drain => client
            .drain(authorized(pb::DrainRequest {}, token)?)
            .await
            .map(|r| r.into_inner().state),
        Lever::Stop => client
            .stop(authorized(pb::StopRequest {}, token)?)
            .await
            .map(|r| r.into_inner().state),
    };
    state
        .map_err(|status| rpc_error(addr, lever.rpc(), status))?
        .ok_or_else(|| ClientError::EmptyAnswer {
            addr: addr.to_owned(),
            rpc: lever.rpc(),
        })
}

/// The RPC [`resync`] calls, as errors name it.
pub const RESYNC_RPC: &str = "Control.Resync";

/// Asks the agent at `addr` to copy `table` (`schema.table` or the StarRocks name) again, with
/// `token` as bearer token when given; returns the source table (`schema.table`) it will copy.
/// An unknown table or one already being copied is an [`ClientError::Rpc`] whose status says so.
pub async fn resync(
    addr: &str,
    token: Option<&Secret>,
    table: &str,
) -> Result<String, ClientError> {
    resync_of(addr, token, table, None).await
}

/// [`resync`] of some chunks only (`partial`: boundaries, chunks, keys to delete), or of the
/// whole table.
pub async fn resync_of(
    addr: &str,
    token: Option<&Secret>,
    table: &str,
    partial: Option<crate::state::PartialResync>,
) -> Result<String, ClientError> {
    let mut client = pb::control_client::ControlClient::new(connect(addr).await?);
    let key = |values: Vec<String>| pb::KeyValues { values };
    let request = authorized(
        pb::ResyncRequest {
            table: table.to_owned(),
            partial: partial.map(|p| pb::PartialResync {
                boundaries: p.boundaries.into_iter().map(key).collect(),
                chunks: p.chunks,
                delete_keys: p.delete_keys.into_iter().map(key).collect(),
            }),
        },
        token,
    )?;
    client
        .resync(request)
        .await
        .map(|response| response.into_inner().table)
        .map_err(|status| rpc_error(addr, RESYNC_RPC, status))
}

/// The RPC [`retry`] calls, as errors name it.
pub const RETRY_RPC: &str = "Control.Retry";

/// Asks the agent at `addr` to load parked `table` again (its cause fixed), with `token` as
/// bearer token when given; returns the source table (`schema.table`). An unknown table or one
/// that is not parked is an [`ClientError::Rpc`] whose status says so.
pub async fn retry(addr: &str, token: Option<&Secret>, table: &str) -> Result<String, ClientError> {
    let mut client = pb::control_client::ControlClient::new(connect(addr).await?);
    let request = authorized(
        pb::RetryRequest {
            table: table.to_owned(),
        },
        token,
    )?;
    client
        .retry(request)
        .await
        .map(|response| response.into_inner().table)
        .map_err(|status| rpc_error(addr, RETRY_RPC, status))
}

/// The RPC [`verify`] calls, as errors name it.
pub const VERIFY_RPC: &str = "Control.Verify";

/// Asks the agent at `addr` to verify `tables` (every replicated table when empty) beside its
/// engine; the result shows in its status when done. FAILED_PRECONDITION while one runs.
pub async fn verify(
    addr: &str,
    token: Option<&Secret>,
    tables: &[String],
) -> Result<(), ClientError> {
    let mut client = pb::control_client::ControlClient::new(connect(addr).await?);
    let request = authorized(
        pb::VerifyRequest {
            tables: tables.to_vec(),
        },
        token,
    )?;
    client
        .verify(request)
        .await
        .map(|_| ())
        .map_err(|status| rpc_error(addr, VERIFY_RPC, status))
}

/// `Control.Retry`'s answer as one JSON object.
pub fn retry_json(table: &str) -> Value {
    json!({ "rpc": RETRY_RPC, "table": table })
}

/// `Control.Retry`'s answer for people.
pub fn retry_text(table: &str) -> String {
    format!(
        "retry requested: the stream restarts from where `{table}` was parked; if the cause is still there it parks again (see `starwal status`)"
    )
}

/// `CDC`, `SETUP`, ... as the engine and metrics spell phases.
pub(crate) fn phase_name(phase: i32) -> String {
    match pb::Phase::try_from(phase) {
        Ok(phase) => phase.as_str_name().trim_start_matches("PHASE_").to_owned(),
        Err(_) => format!("UNKNOWN({phase})"),
    }
}

fn lsn_json(lsn: Option<&pb::Lsn>) -> Value {
    match lsn {
        Some(lsn) => json!({ "text": lsn.text, "value": lsn.value }),
        None => Value::Null,
    }
}

fn lsn_text(lsn: Option<&pb::Lsn>) -> &str {
    lsn.map_or("-", |lsn| lsn.text.as_str())
}

/// A histogram bound as Prometheus spells it (`0.005`, `+Inf`).
fn bound_text(bound: f64) -> String {
    if bound.is_infinite() {
        "+Inf".to_owned()
    } else {
        bound.to_string()
    }
}

/// `GetStatus` as one JSON object (`starwal status --json`).
pub fn status_json(status: &pb::GetStatusResponse) -> Value {
    let tables: Vec<Value> = status
        .tables
        .iter()
        .map(|table| {
            let duration = table.load_duration.clone().unwrap_or_default();
            json!({
                "source": table.source,
                "target": table.target,
                "rows_inserted": table.rows_inserted,
                "rows_updated": table.rows_updated,
                "rows_deleted": table.rows_deleted,
                "rows_loaded": table.rows_loaded,
                "bytes_loaded": table.bytes_loaded,
                "loads": table.loads,
                "loads_in_flight": table.loads_in_flight,
                "loads_deduplicated": table.loads_deduplicated,
                "truncates": table.truncates,
                "load_duration": {
                    "buckets": duration.buckets.iter().map(|bucket| json!({
                        "le": bound_text(bucket.upper_bound_seconds),
                        "count": bucket.cumulative_count,
                    })).collect::<Vec<_>>(),
                    "sum_seconds": duration.sum_seconds,
                    "count": duration.count,
                },
                "last_error": table.last_error,
                "copy": table.copy.as_ref().map(copy_json),
                "load_failures": table
                    .load_failures
                    .iter()
                    .map(|failures| (failures.kind.clone(), Value::from(failures.count)))
                    .collect::<serde_json::Map<String, Value>>(),
                "load_retries": table.load_retries,
                "failing": table.failing.as_ref().map(|failing| json!({
                    "since_unix_seconds": failing.since_unix_seconds,
                    "failing_seconds": failing.failing_seconds,
                    "attempts": failing.attempts,
                    "kind": failing.kind,
                    "retrying": failing.retrying,
                })),
                "last_load_age_seconds": table.last_load_age_seconds,
                "parked": table.parked.as_ref().map(|parked| json!({
                    "held_from": parked.held_from,
                    "parked_seconds": parked.parked_seconds,
                    "error": parked.error,
                })),
                "open_transaction": table.open_transaction.as_ref().map(|txn| json!({
                    "label": txn.label,
                    "rows": txn.rows,
                    "age_seconds": txn.age_seconds,
                    "prepared": txn.prepared,
                })),
                "transactions_committed": table.transactions_committed,
                "transactions_split": table.transactions_split,
                "streamed_transactions": table.streamed_transactions.iter().map(|txn| json!({
                    "xid": txn.xid,
                    "label": txn.label,
                    "rows": txn.rows,
                    "age_seconds": txn.age_seconds,
                    "prepared": txn.prepared,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let config: serde_json::Map<String, Value> = status
        .config
        .iter()
        .map(|setting| (setting.name.clone(), Value::from(setting.value.clone())))
        .collect();
    json!({
        "phase": phase_name(status.phase),
        "serving": status.serving,
        "health_detail": status.health_detail,
        "paused": status.paused,
        "received_lsn": lsn_json(status.received_lsn.as_ref()),
        "flushed_lsn": lsn_json(status.flushed_lsn.as_ref()),
        "confirmed_lsn": lsn_json(status.confirmed_lsn.as_ref()),
        "server_wal_end": lsn_json(status.server_wal_end.as_ref()),
        "lag_bytes": status.lag_bytes,
        "lag_seconds": status.lag_seconds,
        "unread_wal_bytes": status.unread_wal_bytes,
        "slot_retained_wal_bytes": status.slot_retained_wal_bytes,
        "buffered_bytes": status.buffered_bytes,
        "max_buffer_bytes": status.max_buffer_bytes,
        "uptime_seconds": status.uptime_seconds,
        "version": status.version,
        "tables": tables,
        "config": config,
        "verify": status.verify.as_ref().map(|verify| json!({
            "running": verify.running,
            "finished_unix_seconds": verify.finished_unix_seconds,
            "seconds": verify.seconds,
            "error": verify.error,
            "tables": verify.tables.iter().map(|t| json!({
                "table": t.table,
                "rows_compared": t.rows_compared,
                "rows_mismatched": t.rows_mismatched,
            })).collect::<Vec<_>>(),
        })),
    })
}

/// A table's snapshot copy as JSON (`null` in the table's object when it has none).
fn copy_json(copy: &pb::TableCopy) -> Value {
    json!({
        "state": copy.state,
        "rows_copied": copy.rows_copied,
        "rows_estimated": copy.rows_estimated,
        "chunks_done": copy.chunks_done,
        "chunks_total": copy.chunks_total,
        "rows_per_second": copy.rows_per_second,
        "eta_seconds": copy.eta_seconds,
    })
}

/// A table's snapshot copy in one line: `copying: 300 of 1000 rows (30.0%), 3/10 chunks,
/// 1250 rows/s, ETA 560 ms`.
pub(crate) fn copy_text(copy: &pb::TableCopy) -> String {
    if copy.state == "pending" {
        return "pending: asked for, not planned yet".to_owned();
    }
    let percent = if copy.rows_estimated > 0 {
        format!(
            "{:.1}%",
            copy.rows_copied as f64 / copy.rows_estimated as f64 * 100.0
        )
    } else if copy.state == "done" {
        "100.0%".to_owned()
    } else {
        "-".to_owned()
    };
    let mut text = format!(
        "{}: {} of {} rows ({percent}), {}/{} chunks",
        copy.state, copy.rows_copied, copy.rows_estimated, copy.chunks_done, copy.chunks_total
    );
    if copy.state != "done" {
        let eta = copy
            .eta_seconds
            .map_or_else(|| "unknown".to_owned(), seconds_text);
        let _ = write!(text, ", {:.0} rows/s, ETA {eta}", copy.rows_per_second);
    }
    text
}

/// `GetStatus` for people: the agent's state, then one row per table, then a line per snapshot
/// copy and per table error.
pub fn status_text(status: &pb::GetStatusResponse) -> String {
    let mut out = String::new();
    let health = if status.serving {
        "SERVING"
    } else {
        "NOT_SERVING"
    };
    let retained = status
        .slot_retained_wal_bytes
        .map_or_else(|| "not measured yet".to_owned(), bytes_text);
    let rows = [
        ("phase", phase_name(status.phase)),
        ("health", format!("{health} ({})", status.health_detail)),
        (
            "paused",
            if status.paused { "yes" } else { "no" }.to_owned(),
        ),
        (
            "received LSN",
            lsn_text(status.received_lsn.as_ref()).to_owned(),
        ),
        (
            "flushed LSN",
            lsn_text(status.flushed_lsn.as_ref()).to_owned(),
        ),
        (
            "confirmed LSN",
            lsn_text(status.confirmed_lsn.as_ref()).to_owned(),
        ),
        (
            "server WAL end",
            lsn_text(status.server_wal_end.as_ref()).to_owned(),
        ),
        ("lag", lag_text(status)),
        ("slot retains", retained),
        (
            "buffered",
            format!(
                "{} of {}",
                bytes_text(status.buffered_bytes),
                bytes_text(status.max_buffer_bytes)
            ),
        ),
        ("uptime", seconds_text(status.uptime_seconds)),
        ("version", status.version.clone()),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "{:<15} {value}", format!("{name}:"));
    }
    out.push('\n');
    if status.tables.is_empty() {
        out.push_str("no tables registered yet\n");
        return out;
    }
    let header = [
        "TABLE",
        "TARGET",
        "INSERTED",
        "UPDATED",
        "DELETED",
        "LOADED",
        "BYTES",
        "LOADS",
        "DEDUP",
        "TRUNCATES",
        "AVG LOAD",
        "LAST LOAD",
    ];
    let mut cells: Vec<[String; 12]> = vec![header.map(str::to_owned)];
    for table in &status.tables {
        let duration = table.load_duration.clone().unwrap_or_default();
        let average = if duration.count > 0 {
            seconds_text(duration.sum_seconds / duration.count as f64)
        } else {
            "-".to_owned()
        };
        cells.push([
            table.source.clone(),
            table.target.clone(),
            table.rows_inserted.to_string(),
            table.rows_updated.to_string(),
            table.rows_deleted.to_string(),
            table.rows_loaded.to_string(),
            bytes_text(table.bytes_loaded),
            table.loads.to_string(),
            table.loads_deduplicated.to_string(),
            table.truncates.to_string(),
            average,
            table.last_load_age_seconds.map_or_else(
                || "-".to_owned(),
                |age| format!("{} ago", seconds_text(age)),
            ),
        ]);
    }
    let mut widths = [0usize; 12];
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &cells {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            if index < 2 {
                let _ = write!(line, "{cell:<width$}  ");
            } else {
                let _ = write!(line, "{cell:>width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for table in &status.tables {
        if let Some(copy) = &table.copy {
            let _ = writeln!(out, "{}: snapshot copy {}", table.source, copy_text(copy));
        }
    }
    for table in &status.tables {
        if let Some(txn) = &table.open_transaction {
            let _ = writeln!(
                out,
                "{}: StarRocks transaction {} {} for {}: {} rows, visible at the source commit",
                table.source,
                txn.label,
                if txn.prepared { "prepared" } else { "open" },
                seconds_text(txn.age_seconds),
                txn.rows
            );
        }
        for txn in &table.streamed_transactions {
            let _ = writeln!(
                out,
                "{}: streamed source transaction {} in StarRocks transaction {} {} for {}: {} rows loaded, visible at its COMMIT",
                table.source,
                txn.xid,
                txn.label,
                if txn.prepared { "prepared" } else { "open" },
                seconds_text(txn.age_seconds),
                txn.rows
            );
        }
        if let Some(parked) = &table.parked {
            let _ = writeln!(
                out,
                "{}: parked for {}: changes from {} held (the slot retains the WAL); fix the cause, then `starwal retry --table {}` or `starwal resync --table {}`: {}",
                table.source,
                seconds_text(parked.parked_seconds),
                parked.held_from,
                table.source,
                table.source,
                parked.error
            );
        }
        if let Some(failing) = &table.failing {
            let _ = writeln!(
                out,
                "{}: loads failing for {} ({} failed attempts, last {}, {})",
                table.source,
                seconds_text(failing.failing_seconds),
                failing.attempts,
                failing.kind,
                if failing.retrying {
                    "retrying"
                } else {
                    "not retried"
                }
            );
        }
        if let Some(error) = &table.last_error {
            let _ = writeln!(out, "{}: last error: {error}", table.source);
        }
    }
    out
}

/// `3.2 s behind, 1.5 MiB of WAL`, and, while reading is stopped, how much of it is not read.
fn lag_text(status: &pb::GetStatusResponse) -> String {
    let mut text = format!(
        "{} behind, {} of WAL",
        seconds_text(status.lag_seconds),
        bytes_text(status.lag_bytes)
    );
    if status.unread_wal_bytes > 0 {
        let why = if status.paused {
            "paused"
        } else {
            "buffer full"
        };
        let _ = write!(
            text,
            " ({} not read yet: {why})",
            bytes_text(status.unread_wal_bytes)
        );
    }
    text
}

/// A lever's answer as one JSON object.
pub fn lever_json(lever: Lever, state: &pb::LeverState) -> Value {
    json!({
        "rpc": lever.rpc(),
        "phase": phase_name(state.phase),
        "paused": state.paused,
    })
}

/// A lever's answer for people.
pub fn lever_text(lever: Lever, state: &pb::LeverState) -> String {
    let phase = phase_name(state.phase);
    match lever {
        Lever::Pause => format!(
            "paused: the agent no longer reads the stream (phase {phase}); `starwal resume` continues"
        ),
        Lever::Resume => format!(
            "resumed: the agent reads the stream (phase {phase}, paused: {})",
            if state.paused { "yes" } else { "no" }
        ),
        Lever::Drain => format!(
            "drain requested: the agent stops reading, loads and confirms what is buffered, then exits (phase {phase})"
        ),
        Lever::Stop => format!(
            "stop requested: the agent exits once loads in flight end; buffered changes stream again on the next start (phase {phase})"
        ),
    }
}

/// `Control.Resync`'s answer as one JSON object.
pub fn resync_json(table: &str) -> Value {
    json!({ "rpc": RESYNC_RPC, "table": table })
}

/// `Control.Resync`'s answer for people.
pub fn resync_text(table: &str) -> String {
    format!(
        "resync requested: `{table}` will be emptied in StarRocks and copied again from a new snapshot while the other tables keep streaming; follow it with `starwal status`"
    )
}

/// `1.5 MiB`, `512 B`.
pub(crate) fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `850 ms`, `12.3 s`, `1h 02m 03s`.
pub(crate) fn seconds_text(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".to_owned();
    }
    if seconds < 1.0 {
        return format!("{:.0} ms", seconds * 1000.0);
    }
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let total = seconds as u64;
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if days > 0 {
        format!("{days}d {hours:02}h {minutes:02}m {secs:02}s")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m {secs:02}s")
    } else {
        format!("{minutes}m {secs:02}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_urls_or_host_port() {
        assert!(endpoint("http://127.0.0.1:50051").is_ok());
        assert!(endpoint("127.0.0.1:50051").is_ok());
        assert!(endpoint("agent.internal:50051").is_ok());
        for bad in ["https://x:1", "ftp://x:1", "http://", "http:// x", ""] {
            let err = endpoint(bad).unwrap_err();
            assert!(err.is_usage(), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(bytes_text(256 * 1024 * 1024), "256.0 MiB");
        assert_eq!(seconds_text(0.25), "250 ms");
        assert_eq!(seconds_text(12.34), "12.3 s");
        assert_eq!(seconds_text(3723.0), "1h 02m 03s");
        assert_eq!(seconds_text(90_061.0), "1d 01h 01m 01s");
        assert_eq!(seconds_text(f64::NAN), "-");
    }

    #[test]
    fn phases_print_without_prefix() {
        assert_eq!(phase_name(pb::Phase::Cdc.into()), "CDC");
        assert_eq!(phase_name(99), "UNKNOWN(99)");
    }

    #[test]
    fn status_renders_for_people_and_scripts() {
        let status = pb::GetStatusResponse {
            phase: pb::Phase::Cdc.into(),
            serving: true,
            health_detail: "streaming".into(),
            received_lsn: Some(pb::Lsn {
                text: "0/16B3748".into(),
                value: 0x16B3748,
            }),
            max_buffer_bytes: 1 << 20,
            tables: vec![pb::TableStatus {
                source: "public.orders".into(),
                target: "orders".into(),
                rows_inserted: 42,
                loads: 2,
                load_duration: Some(pb::Histogram {
                    buckets: vec![pb::HistogramBucket {
                        upper_bound_seconds: f64::INFINITY,
                        cumulative_count: 2,
                    }],
                    sum_seconds: 1.0,
                    count: 2,
                }),
                last_error: Some("boom".into()),
                copy: Some(pb::TableCopy {
                    state: "copying".into(),
                    rows_copied: 300,
                    rows_estimated: 1000,
                    chunks_done: 3,
                    chunks_total: 10,
                    rows_per_second: 1250.4,
                    eta_seconds: Some(0.56),
                }),
                load_failures: vec![pb::LoadFailureCount {
                    kind: "connection".into(),
                    count: 7,
                }],
                load_retries: 7,
                failing: Some(pb::LoadFailing {
                    since_unix_seconds: 1_700_000_000.0,
                    failing_seconds: 12.34,
                    attempts: 7,
                    kind: "connection".into(),
                    retrying: true,
                }),
                last_load_age_seconds: Some(40.0),
                ..pb::TableStatus::default()
            }],
            paused: true,
            lag_seconds: 3.0,
            lag_bytes: 4096,
            unread_wal_bytes: 2048,
            config: vec![pb::ConfigSetting {
                name: "slot".into(),
                value: "starwal".into(),
            }],
            ..pb::GetStatusResponse::default()
        };
        let text = status_text(&status);
        assert!(text.contains("phase:          CDC"), "{text}");
        assert!(text.contains("SERVING (streaming)"), "{text}");
        assert!(text.contains("received LSN:   0/16B3748"), "{text}");
        assert!(text.contains("slot retains:   not measured yet"), "{text}");
        assert!(text.contains("public.orders  orders"), "{text}");
        assert!(text.contains("500 ms"), "{text}");
        assert!(text.contains("public.orders: last error: boom"), "{text}");
        assert!(
            text.contains(
                "public.orders: loads failing for 12.3 s (7 failed attempts, last connection, retrying)\n"
            ),
            "{text}"
        );
        assert!(text.contains("40.0 s ago"), "{text}");
        assert!(
            text.contains(
                "lag:            3.0 s behind, 4.0 KiB of WAL (2.0 KiB not read yet: paused)"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "public.orders: snapshot copy copying: 300 of 1000 rows (30.0%), 3/10 chunks, 1250 rows/s, ETA 560 ms\n"
            ),
            "{text}"
        );

        let value = status_json(&status);
        assert_eq!(value["phase"], "CDC");
        assert_eq!(value["received_lsn"]["value"], 0x16B3748);
        assert_eq!(value["tables"][0]["rows_inserted"], 42);
        assert_eq!(
            value["tables"][0]["load_duration"]["buckets"][0]["le"],
            "+Inf"
        );
        assert_eq!(value["config"]["slot"], "starwal");
        assert_eq!(value["unread_wal_bytes"], 2048);
        assert_eq!(value["tables"][0]["load_failures"]["connection"], 7);
        assert_eq!(value["tables"][0]["failing"]["attempts"], 7);
        assert_eq!(value["tables"][0]["failing"]["retrying"], true);
        assert_eq!(value["tables"][0]["last_load_age_seconds"], 40.0);
        assert_eq!(value["slot_retained_wal_bytes"], Value::Null);
        let copy = &value["tables"][0]["copy"];
        assert_eq!(copy["state"], "copying");
        assert_eq!(
            (copy["rows_copied"].as_u64(), copy["chunks_total"].as_u64()),
            (Some(300), Some(10))
        );
        assert_eq!(copy["eta_seconds"], 0.56);
    }

    #[test]
    fn copy_lines_per_state() {
        let mut copy = pb::TableCopy {
            state: "pending".into(),
            ..pb::TableCopy::default()
        };
        assert_eq!(copy_text(&copy), "pending: asked for, not planned yet");
        copy.state = "copying".into();
        copy.rows_estimated = 0;
        assert_eq!(
            copy_text(&copy),
            "copying: 0 of 0 rows (-), 0/0 chunks, 0 rows/s, ETA unknown"
        );
        copy.state = "done".into();
        copy.rows_copied = 7;
        copy.rows_estimated = 7;
        copy.chunks_done = 1;
        copy.chunks_total = 1;
        assert_eq!(copy_text(&copy), "done: 7 of 7 rows (100.0%), 1/1 chunks");
        // No copy: `null` in JSON, no line in the text.
        let status = pb::GetStatusResponse {
            tables: vec![pb::TableStatus {
                source: "public.t".into(),
                ..pb::TableStatus::default()
            }],
            ..pb::GetStatusResponse::default()
        };
        assert_eq!(status_json(&status)["tables"][0]["copy"], Value::Null);
        assert!(!status_text(&status).contains("snapshot copy"));
    }
}
