//! The BE HTTP server (8040): plain Stream Load, the error-log endpoint, and routing to the BE
//! half of the transaction interface (reference §1 "BE", §2, §3; BE `stream_load.cpp`).
//!
//! Owns the life of one plain load, in StarRocks' order: parse Basic auth and the pre-begin
//! headers (size limits, format, timeout) → begin the txn on the "FE" (credentials, timeout range,
//! unknown db/table, label rules) → plan (remaining headers, `columns`) → only then read the body,
//! which is when `100 Continue` goes out → decompress, parse, filter → commit. Any failure before
//! begin answers `TxnId: -1` without reading the body; any failure after begin rolls the txn back
//! (an aborted label is reusable). If the client vanishes mid-load the txn is rolled back too.
//! Every outcome is HTTP 200 with the pretty-printed result; only PUT is routed (else 404).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, StatusCode};

use super::response::{be_json, not_found, with_body, LoadStatus, StreamLoadResult};
use super::{
    auth, header, query_param, read_body, segments, txn_api, BodyError, Ctx, DropConnection,
    Handled,
};
use crate::faults::{FaultKind, FaultPoint};
use crate::load::options::{
    Format, HeaderOptions, PlanOptions, DEFAULT_LOAD_TIMEOUT_SECS, MAX_LOAD_TIMEOUT_SECS,
};
use crate::load::{decompress, LoadPlan, LoadProgress};
use crate::state::{generate_uuid, unique_u64, CommitOutcome, Shared};
use crate::txn::{BeginError, TxnCounts, TxnKind, TxnStatus};

/// Routes one BE request.
pub(crate) async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Handled {
    let segments = segments(req.uri().path());
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match parts.as_slice() {
        ["api", "transaction", op] if method == Method::POST || method == Method::PUT => {
            let op = (*op).to_string();
            txn_api::be(ctx, req, &op).await
        }
        ["api", "_load_error_log"] if method == Method::GET => {
            let file = query_param(req.uri().query(), "file").unwrap_or_default();
            let text = ctx
                .shared
                .error_logs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&file)
                .map(str::to_string);
            Ok(match text {
                Some(text) => with_body(StatusCode::OK, "text/plain; charset=utf-8", text),
                None => not_found(),
            })
        }
        ["api", db, table, "_stream_load"] if method == Method::PUT => {
            let (db, table) = ((*db).to_string(), (*table).to_string());
            stream_load(ctx, req, &db, &table).await
        }
        _ => Ok(not_found()),
    }
}

/// Milliseconds for response timing fields.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Rolls a begun txn back if the handler ends (or is dropped) without settling it.
pub(crate) struct TxnGuard {
    shared: Arc<Shared>,
    txn_id: i64,
    db: String,
    table: String,
    armed: bool,
}

impl TxnGuard {
    pub(crate) fn new(shared: Arc<Shared>, txn_id: i64, db: &str, table: &str) -> TxnGuard {
        TxnGuard {
            shared,
            txn_id,
            db: db.to_string(),
            table: table.to_string(),
            armed: true,
        }
    }

    /// Rolls the txn back now with `reason`.
    pub(crate) fn abort(mut self, reason: &str) {
        self.armed = false;
        abort_txn(&self.shared, self.txn_id, &self.db, &self.table, reason);
    }

    /// The txn was settled elsewhere (committed, or aborted by the commit path).
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TxnGuard {
    fn drop(&mut self) {
        if self.armed {
            abort_txn(
                &self.shared,
                self.txn_id,
                &self.db,
                &self.table,
                "cancelled: the client connection closed",
            );
        }
    }
}

/// Counts one plain Stream Load as in progress on its table until dropped: when the handler has
/// built its answer (before the client can read it, so a client that waits for answers is never
/// seen twice) or was cancelled by a closed connection.
struct LoadInProgress {
    shared: Arc<Shared>,
    db: String,
    table: String,
}

impl LoadInProgress {
    fn new(shared: Arc<Shared>, db: &str, table: &str) -> LoadInProgress {
        shared.lock().counters.load_started(db, table);
        LoadInProgress {
            shared,
            db: db.to_string(),
            table: table.to_string(),
        }
    }
}

impl Drop for LoadInProgress {
    fn drop(&mut self) {
        self.shared
            .lock()
            .counters
            .load_ended(&self.db, &self.table);
    }
}

/// Aborts a running txn, counts the failure and wakes waiters.
pub(crate) fn abort_txn(shared: &Shared, txn_id: i64, db: &str, table: &str, reason: &str) {
    let mut state = shared.lock();
    if state.txns.abort(txn_id, reason) {
        state.counters.failed(db, table);
    }
    drop(state);
    shared.notify_changed();
}

/// Whether a `timeout` is within 1..=259200 seconds.
pub(crate) fn valid_timeout(secs: u64) -> bool {
    (1..=MAX_LOAD_TIMEOUT_SECS).contains(&secs)
}

/// Why begin + plan failed.
enum BeginFailure {
    /// Before a txn existed: `TxnId` stays −1.
    Refused(String),
    /// `Label Already Exists`.
    LabelExists(&'static str),
    /// After the txn began (plan errors): rolled back.
    Planned { txn_id: i64, message: String },
}

/// Begins the txn and plans the load, as the FE's `loadTxnBegin` + `streamLoadPut` do.
#[allow(clippy::too_many_arguments)]
fn begin_and_plan<'a>(
    shared: &Shared,
    db: &str,
    table: &str,
    label: &str,
    credentials: &auth::Credentials,
    peer_ip: &str,
    options: &HeaderOptions,
    header: impl Fn(&str) -> Option<&'a str>,
) -> Result<(i64, LoadPlan), BeginFailure> {
    let mut state = shared.lock();
    if !credentials.valid(&shared.config) {
        return Err(BeginFailure::Refused(format!(
            "Access denied for {}@{peer_ip}",
            credentials.user
        )));
    }
    if let Some(t) = options.timeout_secs {
        if !valid_timeout(t) {
            return Err(BeginFailure::Refused(format!(
                "Invalid timeout. Timeout should between 1 and {MAX_LOAD_TIMEOUT_SECS} seconds"
            )));
        }
    }
    if let Err(e) = state.catalog.table(db, table) {
        return Err(BeginFailure::Refused(e.to_string()));
    }
    if let Some(fault) = shared.faults.take(FaultPoint::Begin, db, table) {
        return Err(BeginFailure::Refused(fault.message(db, 0, "", -1)));
    }
    let txn_id = match state.txns.begin(db, table, label, TxnKind::StreamLoad) {
        Ok(id) => id,
        Err(BeginError::LabelExists { existing }) => {
            return Err(BeginFailure::LabelExists(existing));
        }
        Err(BeginError::InvalidLabel(m) | BeginError::TooManyRunning(m)) => {
            return Err(BeginFailure::Refused(m));
        }
    };
    state.counters.attempted(db, table, label);
    state
        .counters
        .max_filter_ratio_sent(db, table, header("max_filter_ratio"));
    let planned = PlanOptions::parse(header, options.format).and_then(|plan_options| {
        let t = state.catalog.table(db, table).map_err(|e| e.to_string())?;
        LoadPlan::new(t, plan_options).map(|p| p.discarding_rows(shared.config.discard_rows))
    });
    match planned {
        Ok(plan) => Ok((txn_id, plan)),
        Err(message) => {
            if state.txns.abort(txn_id, &message) {
                state.counters.failed(db, table);
            }
            Err(BeginFailure::Planned { txn_id, message })
        }
    }
}

/// Decompresses a received body: transport compression first, then a compressed-CSV format.
/// A plain body is borrowed, not copied.
pub(crate) fn plain_body<'a>(
    received: &'a [u8],
    plan_options: &PlanOptions,
    max_bytes: u64,
) -> Result<Cow<'a, [u8]>, String> {
    let once = decompress(received, plan_options.transport_compression, max_bytes)?;
    match plan_options.format {
        Format::Csv(Some(c)) => Ok(Cow::Owned(
            decompress(&once, Some(c), max_bytes)?.into_owned(),
        )),
        _ => Ok(once),
    }
}

/// The message for a body that could not be read.
pub(crate) fn body_error_message(error: &BodyError, limit: u64) -> String {
    match error {
        BodyError::TooLarge(n) => format!(
            "body size {n} exceed limit: {limit}. You can increase the limit by setting streaming_load_max_mb in be.conf."
        ),
        BodyError::Timeout => "timeout by txn manager".to_string(),
        BodyError::Incomplete => "receive body don't equal with body bytes".to_string(),
    }
}

async fn stream_load(ctx: &Ctx, req: Request<Incoming>, db: &str, table: &str) -> Handled {
    let started = Instant::now();
    let shared = ctx.shared.clone();
    let _in_progress = LoadInProgress::new(shared.clone(), db, table);
    let legacy = shared.config.legacy_put_time_field;
    let (parts, body) = req.into_parts();
    let headers: HeaderMap = parts.headers;
    let h = |name: &str| header(&headers, name);
    let label = h("label")
        .filter(|l| !l.is_empty())
        .map_or_else(generate_uuid, str::to_string);
    let mut result = StreamLoadResult::new(label.clone());
    let finish = |mut result: StreamLoadResult| {
        result.load_time_ms = ms(started.elapsed());
        be_json(result.to_json(legacy))
    };

    // Header time: nothing here reads the body, so no `100 Continue` is sent on failure.
    let Some(credentials) = auth::basic(&headers) else {
        result.message = "no valid Basic authorization".to_string();
        return Ok(finish(result));
    };
    let brief = format!(
        "id={:016x}-{:016x}, job_id=-1, txn_id: -1, label={label}, db={db}",
        unique_u64(),
        unique_u64()
    );
    let limits = shared.config.limits;
    let options = match HeaderOptions::parse(h, &limits, &brief) {
        Ok(o) => o,
        Err(message) => {
            result.message = message;
            return Ok(finish(result));
        }
    };
    if let Some(fault) = shared.faults.take(FaultPoint::BeforeBegin, db, table) {
        result.message = fault.message(db, 0, "", -1);
        return Ok(finish(result));
    }

    let begin_started = Instant::now();
    let peer_ip = ctx.peer.ip().to_string();
    let (txn_id, plan) = match begin_and_plan(
        &shared,
        db,
        table,
        &label,
        &credentials,
        &peer_ip,
        &options,
        h,
    ) {
        Ok(v) => v,
        Err(BeginFailure::Refused(message)) => {
            result.message = message;
            return Ok(finish(result));
        }
        Err(BeginFailure::LabelExists(existing)) => {
            result.status = LoadStatus::LabelAlreadyExists;
            result.existing_job_status = existing.to_string();
            result.message = format!("Label [{label}] has already been used.");
            return Ok(finish(result));
        }
        Err(BeginFailure::Planned { txn_id, message }) => {
            shared.notify_changed();
            result.txn_id = txn_id;
            result.message = message;
            return Ok(finish(result));
        }
    };
    result.txn_id = txn_id;
    result.begin_txn_time_ms = ms(begin_started.elapsed());
    result.plan_time_ms = 0;
    let guard = TxnGuard::new(shared.clone(), txn_id, db, table);
    let fail = |guard: TxnGuard, mut result: StreamLoadResult, message: String| {
        guard.abort(&message);
        result.status = LoadStatus::Fail;
        result.message = message;
        finish(result)
    };

    // Reading the body is what sends `100 Continue`.
    let timeout = Duration::from_secs(options.timeout_secs.unwrap_or(DEFAULT_LOAD_TIMEOUT_SECS));
    let deadline = begin_started + timeout;
    let reset_mid_body = shared.faults.take(FaultPoint::Body, db, table).is_some();
    let read_started = Instant::now();
    let received = match read_body(
        body,
        limits.max_body_bytes,
        deadline,
        reset_mid_body,
        &shared.body_buffers,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            let message = body_error_message(&e, limits.max_body_bytes);
            return Ok(fail(guard, result, message));
        }
    };
    if reset_mid_body {
        guard.abort("connection reset by the sim (injected fault)");
        return Err(DropConnection);
    }
    if let Some(declared) = options.content_length {
        if declared != received.len() as u64 {
            return Ok(fail(
                guard,
                result,
                "receive body don't equal with body bytes".to_string(),
            ));
        }
    }
    result.load_bytes = received.len() as u64;
    result.read_data_time_ms = ms(read_started.elapsed());
    // Digested outside the lock: a body can be large.
    let digest = crate::counters::body_digest(&received);
    shared
        .lock()
        .counters
        .body_received(db, table, &label, digest);

    let write_started = Instant::now();
    let plain = match plain_body(&received, &plan.options, limits.max_body_bytes) {
        Ok(p) => p,
        Err(message) => return Ok(fail(guard, result, message)),
    };
    let mut progress = LoadProgress::new(plan.empty_batch());
    progress.received_bytes = received.len() as u64;
    let fed = plan.feed(&plain, &mut progress, true);
    drop(plain);
    shared.body_buffers.give_back(received);
    if let Err(message) = fed {
        return Ok(fail(guard, result, message));
    }
    result.total_rows = progress.total_rows;
    result.filtered_rows = progress.filtered_rows;
    result.unselected_rows = progress.unselected_rows;
    result.loaded_rows = progress.loaded_rows();
    if progress.filtered_rows > 0 {
        result.error_url = Some(shared.error_url(&progress.error_lines));
    }
    if progress.exceeds_filter_ratio(plan.max_filter_ratio) {
        result.loaded_rows = 0;
        return Ok(fail(guard, result, "too many filtered rows".to_string()));
    }
    let tablet_id = table_id(&shared, db, table) * 10 + 1;
    let be_host = ctx.shared.be_authority();
    if let Some(fault) = shared.faults.take(FaultPoint::Write, db, table) {
        let message = fault.message(db, tablet_id, &be_host, txn_id);
        return Ok(fail(guard, result, message));
    }
    result.write_data_time_ms = ms(write_started.elapsed());

    // Commit: rows become visible here and nowhere earlier.
    let commit_started = Instant::now();
    let commit_fault = shared.faults.take(FaultPoint::Commit, db, table);
    let publish_delay = match &commit_fault {
        Some(FaultKind::PublishTimeout { visible_after_ms }) => {
            Some(Duration::from_millis(*visible_after_ms))
        }
        _ => None,
    };
    let counts = TxnCounts {
        total_rows: progress.total_rows,
        loaded_rows: progress.loaded_rows(),
        filtered_rows: progress.filtered_rows,
        unselected_rows: progress.unselected_rows,
        load_bytes: progress.received_bytes,
    };
    // The heavy part of validation runs before the lock is taken.
    let prepared = plan.prepare(&progress.batch);
    let committed = {
        let mut state = shared.lock();
        let outcome = state.commit(
            txn_id,
            &mut progress.batch,
            counts,
            publish_delay,
            Some(prepared),
        );
        shared.persist(&state);
        outcome
    };
    // The applied batch is freed here, outside the lock.
    drop(progress);
    guard.disarm();
    shared.notify_changed();
    let outcome = match committed {
        Ok(outcome) => outcome,
        Err(message) => {
            result.status = LoadStatus::Fail;
            result.message = message;
            return Ok(finish(result));
        }
    };
    match commit_fault {
        Some(FaultKind::CommitThenDropConnection) => return Err(DropConnection),
        Some(FaultKind::CommitThenStall { stall_ms }) => {
            tokio::time::sleep(Duration::from_millis(stall_ms)).await;
        }
        Some(FaultKind::CommitUnknown) => {
            result.status = LoadStatus::Fail;
            result.message = FaultKind::CommitUnknown.message(db, tablet_id, &be_host, txn_id);
            return Ok(finish(result));
        }
        _ => {}
    }
    result.status = match outcome {
        CommitOutcome::Visible => LoadStatus::Success,
        CommitOutcome::Committed if publish_delay.is_some() => LoadStatus::PublishTimeout,
        CommitOutcome::Committed => {
            if wait_visible(&shared, txn_id, deadline).await {
                LoadStatus::Success
            } else {
                LoadStatus::PublishTimeout
            }
        }
    };
    if result.status == LoadStatus::PublishTimeout {
        result.message = FaultKind::PublishTimeout {
            visible_after_ms: 0,
        }
        .message(db, tablet_id, &be_host, txn_id);
    }
    result.commit_and_publish_time_ms = ms(commit_started.elapsed());
    Ok(finish(result))
}

/// The catalog id of a table (0 when it vanished), for "tablet" ids in messages.
pub(crate) fn table_id(shared: &Shared, db: &str, table: &str) -> u64 {
    shared
        .lock()
        .catalog
        .table(db, table)
        .map_or(0, crate::catalog::Table::id)
}

/// Waits until a committed txn is VISIBLE or the deadline passes.
pub(crate) async fn wait_visible(shared: &Shared, txn_id: i64, deadline: Instant) -> bool {
    let mut changes = shared.changed.subscribe();
    loop {
        if shared.lock().status(txn_id) == TxnStatus::Visible {
            return true;
        }
        let wait = tokio::time::timeout_at(deadline.into(), changes.changed()).await;
        if wait.is_err() {
            return shared.lock().status(txn_id) == TxnStatus::Visible;
        }
    }
}
