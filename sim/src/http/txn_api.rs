//! The transaction Stream Load interface, `/api/transaction/{begin|load|prepare|commit|rollback}`,
//! FE and BE halves (reference §5; FE `TransactionLoadAction`, BE `transaction_stream_load.cpp`
//! and `transaction_mgr.cpp`).
//!
//! FE half: checks auth, `db` (`No database selected.`), `label` (`Empty label.`) and the op;
//! commits a PREPARED txn itself, answers idempotently for COMMITTED/VISIBLE (commit) and ABORTED
//! (rollback), fails commit-of-ABORTED and rollback-of-COMMITTED, and 307-redirects everything
//! else to the BE that owns the label (FE-style errors: `Status: FAILED`, exception-class message).
//! BE half: owns the open txn's stream context — `begin` creates it (`LABEL_ALREADY_EXISTS` if it
//! exists), `load` appends data (one writer at a time: `TXN_IN_PROCESSING`; bad data rolls the
//! txn back: later `load` → `TXN_NOT_EXISTS`), `prepare`/`commit` check the data (`INTERNAL_ERROR`
//! `hasn't send any data yet`, `too many filtered rows`) and hand it to the FE, `rollback` drops
//! it. Any error after begin rolls back. Rows become visible only when the txn commits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{HeaderMap, Request};
use serde_json::Value as Json;

use super::be::{
    abort_txn, body_error_message, ms, plain_body, table_id, valid_timeout, wait_visible,
};
use super::fe::redirect_to_be;
use super::response::{be_json, fe_failed, fe_txn_result, txn_reply, Fields};
use super::{auth, header, read_body, Ctx, DropConnection, Handled, Resp};
use crate::catalog::ChangeBatch;
use crate::faults::{FaultKind, FaultPoint, TxnEffect, TxnOp};
use crate::load::options::{HeaderOptions, PlanOptions, DEFAULT_LOAD_TIMEOUT_SECS};
use crate::load::{LoadPlan, LoadProgress};
use crate::state::{CommitOutcome, Shared, SimState};
use crate::txn::stream_context::StreamContext;
use crate::txn::{BeginError, TxnCounts, TxnKind, TxnStatus};

const FE_EXCEPTION: &str = "com.starrocks.common.StarRocksException";
/// FE `prepared_transaction_default_timeout_second`.
const DEFAULT_PREPARED_TIMEOUT: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Begin,
    Load,
    Prepare,
    Commit,
    Rollback,
}

impl Op {
    fn txn_op(self) -> TxnOp {
        match self {
            Op::Begin => TxnOp::Begin,
            Op::Load => TxnOp::Load,
            Op::Prepare => TxnOp::Prepare,
            Op::Commit => TxnOp::Commit,
            Op::Rollback => TxnOp::Rollback,
        }
    }
}

/// A `TxnStep` fault for this op, if one is armed.
fn step_fault(shared: &Shared, op: TxnOp, db: &str, table: &str) -> Option<(TxnEffect, u64)> {
    let tables = [table.to_string()];
    match shared
        .faults
        .take_matching(FaultPoint::Txn(op), db, &tables, |k| !k.is_stall_before())
    {
        Some(FaultKind::TxnStep {
            effect, stall_ms, ..
        }) => Some((effect, stall_ms)),
        _ => None,
    }
}

/// After the op took effect: drop the connection or hold the answer, as the fault says.
async fn after_effect(fault: Option<(TxnEffect, u64)>) -> Result<(), DropConnection> {
    match fault {
        Some((TxnEffect::DropAfter, _)) => Err(DropConnection),
        Some((TxnEffect::StallAfter, ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Holds the request if a `stall_before` step fault is armed for it (matched on the request's
/// `db` and `table` headers), before anything is looked at.
pub(crate) async fn stall_before(shared: &Shared, op: TxnOp, headers: &HeaderMap) {
    let db = header(headers, "db").unwrap_or_default().trim();
    let tables: Vec<String> = header(headers, "table")
        .map(|t| vec![t.trim().to_string()])
        .unwrap_or_default();
    if let Some(FaultKind::TxnStep { stall_ms, .. }) =
        shared
            .faults
            .take_matching(FaultPoint::Txn(op), db, &tables, FaultKind::is_stall_before)
    {
        tokio::time::sleep(Duration::from_millis(stall_ms)).await;
    }
}

fn step_message(op: TxnOp) -> String {
    FaultKind::TxnStep {
        op,
        effect: TxnEffect::Fail,
        stall_ms: 0,
    }
    .message("", 0, "", -1)
}

fn parse_op(op: &str) -> Option<Op> {
    match op.to_ascii_lowercase().as_str() {
        "begin" => Some(Op::Begin),
        "load" => Some(Op::Load),
        "prepare" => Some(Op::Prepare),
        "commit" => Some(Op::Commit),
        "rollback" => Some(Op::Rollback),
        _ => None,
    }
}

fn non_blank<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    header(headers, name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

// ---------------------------------------------------------------------------------------------
// FE half
// ---------------------------------------------------------------------------------------------

/// Handles `/api/transaction/{op}` on the FE.
pub(crate) async fn fe(ctx: &Ctx, req: Request<Incoming>, op: &str) -> Handled {
    let shared = &ctx.shared;
    let headers = req.headers();
    if let Some(reply) = auth::fe_reject(headers, &shared.config, &ctx.peer.ip().to_string()) {
        return Ok(reply);
    }
    let Some(db) = non_blank(headers, "db") else {
        return Ok(fe_failed(FE_EXCEPTION, "No database selected."));
    };
    let Some(label) = non_blank(headers, "label") else {
        return Ok(fe_failed(FE_EXCEPTION, "Empty label."));
    };
    let Some(op) = parse_op(op) else {
        return Ok(fe_failed(
            FE_EXCEPTION,
            &format!("Unknown transaction operation: {op}"),
        ));
    };
    let (db, label) = (db.to_string(), label.to_string());
    stall_before(shared, op.txn_op(), headers).await;
    if super::txn_multi::wants_multi(ctx, headers)
        || super::txn_multi::is_multi_label(ctx, &db, &label)
    {
        return super::txn_multi::fe(ctx, req, op.txn_op(), &db, &label).await;
    }
    match op {
        Op::Begin => {
            shared.lock().fe_coordinators.insert(label);
            Ok(redirect_to_be(ctx, &req))
        }
        Op::Load | Op::Prepare => Ok(match coordinator(shared, &db, &label) {
            Ok(()) => redirect_to_be(ctx, &req),
            Err(message) => fe_failed(FE_EXCEPTION, &message),
        }),
        Op::Commit | Op::Rollback => fe_finish(ctx, &req, op, &db, &label).await,
    }
}

/// The FE's routing lookup for `load`/`prepare` (and commit/rollback of a PREPARE txn).
fn coordinator(shared: &Shared, db: &str, label: &str) -> Result<(), String> {
    let mut state = shared.lock();
    if state.fe_coordinators.contains(label) {
        return Ok(());
    }
    if state.catalog.database(db).is_none() {
        return Err(format!(
            "Can't find db[{db}] for label[{label}]. The db may be dropped."
        ));
    }
    if state.txns.by_label(db, label).is_none() {
        return Err(format!(
            "Can't find the transaction with db [{db}] and label[{label}]. The possible reasons: 1. FE leader is started or switched; 2. The transaction timeouts and is cleaned."
        ));
    }
    Ok(())
}

/// `commit`/`rollback` on the FE: settled on the FE when the state allows, else redirected.
async fn fe_finish(ctx: &Ctx, req: &Request<Incoming>, op: Op, db: &str, label: &str) -> Handled {
    let shared = &ctx.shared;
    let decision = {
        let mut state = shared.lock();
        let cached = state.fe_coordinators.contains(label);
        if state.catalog.database(db).is_none() {
            return Ok(fe_failed(
                FE_EXCEPTION,
                &format!("Database[{db}] does not exist."),
            ));
        }
        // Only what the decision needs: the record of a PREPARED txn holds its whole batch.
        let record = state.txns.by_label(db, label).map(|r| Brief {
            id: r.id,
            status: r.status,
            db: r.db.clone(),
            table: r.table.clone(),
        });
        if record.is_none() && !cached {
            return Ok(fe_failed(
                FE_EXCEPTION,
                &format!("No transaction found with db[{db}] and label[{label}]"),
            ));
        }
        match (op, record) {
            (_, None) => FeDecision::Redirect,
            (Op::Commit, Some(r)) => match r.status {
                TxnStatus::Prepared => FeDecision::CommitPrepared(r.id),
                TxnStatus::Committed | TxnStatus::Visible => FeDecision::Reply(fe_txn_result(
                    "OK",
                    &format!(
                        "Transaction {} has already committed, label is {label}",
                        r.id
                    ),
                    vec![("TxnId", r.id.into()), ("Label", label.into())],
                )),
                TxnStatus::Aborted => FeDecision::Reply(fe_failed(
                    FE_EXCEPTION,
                    &format!(
                        "Can not commit ABORTED transaction {}, label is {label}",
                        r.id
                    ),
                )),
                _ => FeDecision::Redirect,
            },
            (_, Some(r)) => match r.status {
                TxnStatus::Prepared => {
                    let step = step_fault(shared, TxnOp::Rollback, db, &r.table);
                    match step {
                        Some((TxnEffect::Fail, _)) => {
                            return Ok(fe_failed(FE_EXCEPTION, &step_message(TxnOp::Rollback)))
                        }
                        Some((TxnEffect::DropBefore, _)) => return Err(DropConnection),
                        _ => {}
                    }
                    if state.txns.abort(r.id, "User Aborted") {
                        state.counters.failed(&r.db, &r.table);
                        state.counters.txn_event(db, label, "rollback", &r.table);
                    }
                    shared.persist(&state);
                    FeDecision::ReplyAfter(
                        fe_txn_result(
                            "OK",
                            "",
                            vec![("TxnId", r.id.into()), ("Label", label.into())],
                        ),
                        step,
                    )
                }
                TxnStatus::Aborted => FeDecision::Reply(fe_txn_result(
                    "OK",
                    &format!("Transaction {} has already aborted, label is {label}", r.id),
                    vec![("TxnId", r.id.into()), ("Label", label.into())],
                )),
                TxnStatus::Committed | TxnStatus::Visible => FeDecision::Reply(fe_failed(
                    FE_EXCEPTION,
                    &format!(
                        "Can not abort {} transaction {}, label is {label}",
                        r.status, r.id
                    ),
                )),
                _ => FeDecision::Redirect,
            },
        }
    };
    shared.notify_changed();
    match decision {
        FeDecision::Reply(reply) => Ok(reply),
        FeDecision::ReplyAfter(reply, step) => {
            after_effect(step).await?;
            Ok(reply)
        }
        FeDecision::Redirect => Ok(redirect_to_be(ctx, req)),
        FeDecision::CommitPrepared(txn_id) => {
            commit_prepared_on_fe(shared, txn_id, db, label).await
        }
    }
}

/// The fields of a txn record [`fe_finish`] decides on.
struct Brief {
    id: i64,
    status: TxnStatus,
    db: String,
    table: String,
}

enum FeDecision {
    Reply(Resp),
    ReplyAfter(Resp, Option<(TxnEffect, u64)>),
    Redirect,
    CommitPrepared(i64),
}

/// The FE commits a PREPARED txn itself (so it works after a BE restart).
async fn commit_prepared_on_fe(
    shared: &Arc<Shared>,
    txn_id: i64,
    db: &str,
    label: &str,
) -> Handled {
    let table = shared
        .lock()
        .txns
        .get(txn_id)
        .map(|r| r.table.clone())
        .unwrap_or_default();
    // A PREPARED txn survives a failed commit (it stays PREPARED until `prepared_timeout`).
    let step = step_fault(shared, TxnOp::Commit, db, &table);
    match step {
        Some((TxnEffect::Fail, _)) => {
            return Ok(fe_failed(FE_EXCEPTION, &step_message(TxnOp::Commit)))
        }
        Some((TxnEffect::DropBefore, _)) => return Err(DropConnection),
        _ => {}
    }
    let fault = shared.faults.take(FaultPoint::Commit, db, &table);
    let delay = match &fault {
        Some(FaultKind::PublishTimeout { visible_after_ms }) => {
            Some(Duration::from_millis(*visible_after_ms))
        }
        _ => None,
    };
    let (committed, applied) = {
        let mut state = shared.lock();
        let (outcome, applied) = commit_prepared(&mut state, txn_id, delay);
        if outcome.is_ok() {
            state.counters.txn_event(db, label, "commit", &table);
        }
        shared.persist(&state);
        (outcome, applied)
    };
    // The applied batch is freed here, outside the lock.
    drop(applied);
    shared.notify_changed();
    if matches!(fault, Some(FaultKind::CommitThenDropConnection)) && committed.is_ok() {
        return Err(DropConnection);
    }
    if committed.is_ok() {
        after_effect(step).await?;
    }
    if let (Some(FaultKind::CommitThenStall { stall_ms }), true) = (&fault, committed.is_ok()) {
        tokio::time::sleep(Duration::from_millis(*stall_ms)).await;
    }
    match committed {
        Ok(CommitOutcome::Committed) if delay.is_none() => {
            // Queued behind an unpublished version: the FE waits (bounded) like commitPreparedTransaction.
            let _ = wait_visible(shared, txn_id, Instant::now() + Duration::from_secs(20)).await;
            Ok(fe_ok(txn_id, label))
        }
        Ok(_) => Ok(fe_ok(txn_id, label)),
        Err(message) => Ok(fe_failed(FE_EXCEPTION, &message)),
    }
}

fn fe_ok(txn_id: i64, label: &str) -> Resp {
    fe_txn_result(
        "OK",
        "",
        vec![("TxnId", txn_id.into()), ("Label", label.into())],
    )
}

/// Commits a PREPARED txn with the batch it keeps, moved out (not copied) and validated at
/// prepare time when the schema is unchanged. Returns the outcome and what is left of the batch
/// (applied, or empty when queued), for the caller to drop after releasing the lock. A txn the
/// commit left PREPARED gets its batch back.
fn commit_prepared(
    state: &mut SimState,
    txn_id: i64,
    delay: Option<Duration>,
) -> (Result<CommitOutcome, String>, ChangeBatch) {
    let Some(record) = state.txns.get(txn_id) else {
        return (
            Err(format!("transaction {txn_id} not found")),
            ChangeBatch::default(),
        );
    };
    let counts = record.counts;
    let (mut batch, check) = state.txns.take_prepared(txn_id);
    let outcome = state.commit(txn_id, &mut batch, counts, delay, check);
    if outcome.is_err() {
        state
            .txns
            .restore_prepared(txn_id, std::mem::take(&mut batch));
    }
    (outcome, batch)
}

// ---------------------------------------------------------------------------------------------
// BE half
// ---------------------------------------------------------------------------------------------

/// Handles `/api/transaction/{op}` on the BE.
pub(crate) async fn be(ctx: &Ctx, req: Request<Incoming>, op: &str) -> Handled {
    let label = header(req.headers(), "label")
        .unwrap_or_default()
        .to_string();
    let parsed = parse_op(op);
    if let Some(op) = parsed {
        stall_before(&ctx.shared, op.txn_op(), req.headers()).await;
    }
    if parsed == Some(Op::Load) {
        return be_load(ctx, req, &label).await;
    }
    if super::txn_multi::wants_multi(ctx, req.headers()) {
        return Ok(reply(
            "INVALID_ARGUMENT",
            &label,
            "Multi-statement transaction requests can only be sent to FE nodes, not BE nodes",
        ));
    }
    if label.is_empty() {
        return Ok(reply("INVALID_ARGUMENT", &label, "empty label"));
    }
    match parsed {
        Some(Op::Begin) => be_begin(ctx, req.headers(), &label).await,
        Some(Op::Prepare) => be_commit(ctx, req.headers(), &label, true).await,
        Some(Op::Commit) => be_commit(ctx, req.headers(), &label, false).await,
        Some(Op::Rollback) => be_rollback(ctx, req.headers(), &label).await,
        Some(Op::Load) | None => Ok(reply(
            "INVALID_ARGUMENT",
            &label,
            &format!("unsupport transaction operation {op}"),
        )),
    }
}

/// A failed `load` of a multi-table txn answers `FAILED` (StarRocks runs it as a task of the
/// FE's multi-statement load; the SQL-tester records `FAILED`), a single-table one the BE's code.
fn load_status(multi: bool, code: &'static str) -> &'static str {
    if multi && code != "OK" {
        "FAILED"
    } else {
        code
    }
}

fn reply(code: &'static str, label: &str, message: &str) -> Resp {
    be_json(txn_reply(code, label, None, message, Vec::new(), None))
}

fn ok_reply(label: &str, extra: Fields, error_url: Option<String>) -> Resp {
    be_json(txn_reply("OK", label, None, "", extra, error_url))
}

/// Removes the context and aborts its txn (any error after begin); for a multi-table txn, the
/// whole txn (every table) is rolled back, as StarRocks cancels the task on a load error.
fn rollback_context(shared: &Shared, label: &str, reason: &str, multi: bool) {
    if multi {
        let mut state = shared.lock();
        state.abort_multi(label, reason, "abort");
        shared.persist(&state);
        drop(state);
        shared.notify_changed();
        return;
    }
    let removed = shared.lock().contexts.remove(label);
    if let Some(context) = removed {
        shared
            .lock()
            .counters
            .txn_event(&context.db, label, "abort", &context.table);
        abort_txn(shared, context.txn_id, &context.db, &context.table, reason);
    }
}

fn parse_seconds(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ()> {
    match non_blank(headers, name) {
        None => Ok(None),
        Some(v) => v.parse::<u32>().map(|n| Some(u64::from(n))).map_err(|_| ()),
    }
}

async fn be_begin(ctx: &Ctx, headers: &HeaderMap, label: &str) -> Handled {
    let (reply, step) = be_begin_locked(ctx, headers, label)?;
    after_effect(step).await?;
    Ok(reply)
}

type Stepped = Result<(Resp, Option<(TxnEffect, u64)>), DropConnection>;

fn be_begin_locked(ctx: &Ctx, headers: &HeaderMap, label: &str) -> Stepped {
    let done = |r: Resp| Ok((r, None));
    let shared = &ctx.shared;
    let started = Instant::now();
    let mut state = shared.lock();
    if state.contexts.get(label).is_some() {
        return done(be_json(txn_reply(
            "LABEL_ALREADY_EXISTS",
            label,
            Some(""),
            "",
            Vec::new(),
            None,
        )));
    }
    let (Ok(timeout), Ok(idle)) = (
        parse_seconds(headers, "timeout"),
        parse_seconds(headers, "idle_transaction_timeout"),
    ) else {
        return done(reply("INVALID_ARGUMENT", label, "Invalid timeout format"));
    };
    let Some(credentials) = auth::basic(headers) else {
        return done(reply(
            "INTERNAL_ERROR",
            label,
            "no valid Basic authorization",
        ));
    };
    let db = header(headers, "db").unwrap_or_default().to_string();
    let table = header(headers, "table").unwrap_or_default().to_string();
    if !credentials.valid(&shared.config) {
        let message = format!("Access denied for {}@{}", credentials.user, ctx.peer.ip());
        return done(reply("NOT_AUTHORIZED", label, &message));
    }
    if let Some(t) = timeout {
        if !valid_timeout(t) {
            return done(reply(
                "ANALYSIS_ERROR",
                label,
                "Invalid timeout. Timeout should between 1 and 259200 seconds",
            ));
        }
    }
    if let Err(e) = state.catalog.table(&db, &table) {
        return done(reply("ANALYSIS_ERROR", label, &e.to_string()));
    }
    let step = step_fault(shared, TxnOp::Begin, &db, &table);
    match step {
        Some((TxnEffect::Fail, _)) => {
            return done(reply("INTERNAL_ERROR", label, &step_message(TxnOp::Begin)))
        }
        Some((TxnEffect::DropBefore, _)) => return Err(DropConnection),
        _ => {}
    }
    if let Some(fault) = shared.faults.take(FaultPoint::Begin, &db, &table) {
        return done(reply(
            "ANALYSIS_ERROR",
            label,
            &fault.message(&db, 0, "", -1),
        ));
    }
    let txn_id = match state.txns.begin(&db, &table, label, TxnKind::Transaction) {
        Ok(id) => id,
        Err(BeginError::LabelExists { existing }) => {
            return done(be_json(txn_reply(
                "LABEL_ALREADY_EXISTS",
                label,
                Some(existing),
                &format!("Label [{label}] has already been used."),
                Vec::new(),
                None,
            )))
        }
        Err(BeginError::InvalidLabel(m) | BeginError::TooManyRunning(m)) => {
            return done(reply("ANALYSIS_ERROR", label, &m))
        }
    };
    state.counters.attempted(&db, &table, label);
    state.counters.txn_event(&db, label, "begin", &table);
    let now = Instant::now();
    state.contexts.insert(
        label.to_string(),
        StreamContext {
            txn_id,
            db,
            table,
            plan: None,
            progress: LoadProgress::default(),
            busy: false,
            begun_at: now,
            last_active: now,
            timeout: Duration::from_secs(timeout.unwrap_or(DEFAULT_LOAD_TIMEOUT_SECS)),
            idle_timeout: idle.map(Duration::from_secs),
        },
    );
    drop(state);
    let ok = ok_reply(
        label,
        vec![
            ("TxnId", txn_id.into()),
            ("BeginTxnTimeMs", ms(started.elapsed()).into()),
        ],
        None,
    );
    Ok((ok, step))
}

/// Holds a context "in processing" while a `load` reads its body; releases it (and returns the
/// progress) however the handler ends.
struct BusyGuard {
    shared: Arc<Shared>,
    label: String,
    table: String,
    multi: bool,
    progress: Option<LoadProgress>,
}

impl BusyGuard {
    fn release(mut self, progress: LoadProgress) {
        self.progress = Some(progress);
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(context) = state.context_mut(&self.label, &self.table, self.multi) {
            context.busy = false;
            context.last_active = Instant::now();
            if let Some(progress) = self.progress.take() {
                context.progress = progress;
            }
        }
    }
}

async fn be_load(ctx: &Ctx, req: Request<Incoming>, label: &str) -> Handled {
    let shared = ctx.shared.clone();
    let started = Instant::now();
    if label.is_empty() {
        return Ok(reply("INVALID_ARGUMENT", label, "Invalid label "));
    }
    let multi = super::txn_multi::wants_multi(ctx, req.headers());
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let h = |name: &str| header(&headers, name);
    let limits = shared.config.limits;
    let req_table = h("table").unwrap_or_default().to_string();

    // Claim the context and fix the plan (first load) under the lock.
    let claimed = {
        let mut state = shared.lock();
        let SimState {
            contexts,
            catalog,
            multi: tasks,
            ..
        } = &mut *state;
        let found = if multi {
            tasks
                .get_mut(label)
                .and_then(|t| t.tables.get_mut(&req_table))
        } else {
            contexts.get_mut(label)
        };
        let Some(context) = found else {
            return Ok(reply(
                load_status(multi, "TXN_NOT_EXISTS"),
                label,
                &format!("Transaction with label {label} not exists"),
            ));
        };
        let req_db = h("db").unwrap_or_default();
        if context.db != req_db {
            let message = format!(
                "Request database {req_db} not equal transaction database {}",
                context.db
            );
            return Ok(reply(
                load_status(multi, "INVALID_ARGUMENT"),
                label,
                &message,
            ));
        }
        if context.table != req_table {
            let message = format!(
                "Request table {req_table} not equal transaction table {}",
                context.table
            );
            return Ok(reply(
                load_status(multi, "INVALID_ARGUMENT"),
                label,
                &message,
            ));
        }
        if context.busy {
            return Ok(reply(
                load_status(multi, "TXN_IN_PROCESSING"),
                label,
                &format!("Transaction in processing, label: {label}"),
            ));
        }
        let brief = format!(
            "id={}, job_id=-1, txn_id: {}, label={label}, db={}",
            context.txn_id, context.txn_id, context.db
        );
        let planned: Result<(LoadPlan, Option<u64>), (&'static str, String)> =
            match HeaderOptions::parse(h, &limits, &brief) {
                Err(m) => Err(("INTERNAL_ERROR", m)),
                Ok(header_options) => match &context.plan {
                    Some(plan) => Ok((plan.clone(), header_options.content_length)),
                    None => PlanOptions::parse(h, header_options.format)
                        .and_then(|options| {
                            let t = catalog
                                .table(&context.db, &context.table)
                                .map_err(|e| e.to_string())?;
                            LoadPlan::new(t, options)
                        })
                        .map(|plan| plan.discarding_rows(shared.config.discard_rows))
                        .map(|plan| (plan, header_options.content_length))
                        .map_err(|m| ("ANALYSIS_ERROR", m)),
                },
            };
        match planned {
            Ok((plan, content_length)) => {
                context.busy = true;
                context.last_active = Instant::now();
                if context.plan.is_none() {
                    context.plan = Some(plan.clone());
                    context.progress = LoadProgress::new(plan.empty_batch());
                }
                let progress = std::mem::take(&mut context.progress);
                let deadline = context.begun_at + context.timeout;
                Ok((plan, progress, context.txn_id, content_length, deadline))
            }
            Err(e) => Err(e),
        }
    };
    let (plan, mut progress, txn_id, content_length, deadline) = match claimed {
        Ok(v) => v,
        Err((code, message)) => {
            rollback_context(&shared, label, &message, multi);
            return Ok(reply(load_status(multi, code), label, &message));
        }
    };
    let guard = BusyGuard {
        shared: shared.clone(),
        label: label.to_string(),
        table: req_table.clone(),
        multi,
        progress: None,
    };
    let db = h("db").unwrap_or_default().to_string();
    let step = step_fault(&shared, TxnOp::Load, &db, &req_table);
    match step {
        Some((TxnEffect::Fail, _)) => {
            let message = step_message(TxnOp::Load);
            drop(guard);
            rollback_context(&shared, label, &message, multi);
            return Ok(reply(load_status(multi, "INTERNAL_ERROR"), label, &message));
        }
        Some((TxnEffect::DropBefore, _)) => {
            drop(guard);
            rollback_context(&shared, label, "connection reset by peer", multi);
            return Err(DropConnection);
        }
        _ => {}
    }

    let read_started = Instant::now();
    let received = match read_body(
        body,
        limits.max_body_bytes,
        deadline,
        false,
        &shared.body_buffers,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            let message = body_error_message(&e, limits.max_body_bytes);
            drop(guard);
            rollback_context(&shared, label, &message, multi);
            return Ok(reply(load_status(multi, "INTERNAL_ERROR"), label, &message));
        }
    };
    if content_length.is_some_and(|n| n != received.len() as u64) {
        let message = "receive body don't equal with body bytes";
        drop(guard);
        rollback_context(&shared, label, message, multi);
        return Ok(reply(load_status(multi, "INTERNAL_ERROR"), label, message));
    }
    let received_ms = ms(read_started.elapsed());
    let parsed = plain_body(&received, &plan.options, limits.max_body_bytes)
        .and_then(|plain| plan.feed(&plain, &mut progress, false));
    if let Err(message) = parsed {
        drop(guard);
        rollback_context(&shared, label, &message, multi);
        return Ok(reply(load_status(multi, "ANALYSIS_ERROR"), label, &message));
    }
    let received_bytes = received.len() as u64;
    progress.received_bytes += received_bytes;
    shared.body_buffers.give_back(received);
    guard.release(progress);
    shared
        .lock()
        .counters
        .txn_event(&db, label, "load", &req_table);
    after_effect(step).await?;
    Ok(ok_reply(
        label,
        vec![
            ("TxnId", txn_id.into()),
            ("LoadBytes", received_bytes.into()),
            (
                "StreamLoadPlanTimeMs",
                ms(started.elapsed().saturating_sub(read_started.elapsed())).into(),
            ),
            ("ReceivedDataTimeMs", received_ms.into()),
        ],
        None,
    ))
}

async fn be_commit(ctx: &Ctx, headers: &HeaderMap, label: &str, prepare: bool) -> Handled {
    let shared = ctx.shared.clone();
    let started = Instant::now();
    let prepared_timeout = if prepare {
        match non_blank(headers, "prepared_timeout") {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n > 0 => Some(Duration::from_secs(u64::from(n))),
                _ => {
                    return Ok(reply(
                        "INVALID_ARGUMENT",
                        label,
                        &format!("Invalid prepared_timeout: {v}"),
                    ))
                }
            },
        }
    } else {
        None
    };

    // Take the context out; from here on it is settled one way or the other.
    let step;
    let context = {
        let mut state = shared.lock();
        let Some(context) = state.contexts.get(label) else {
            return Ok(reply(
                "TXN_NOT_EXISTS",
                label,
                &format!("transaction with label {label} not exists"),
            ));
        };
        let req_db = header(headers, "db").unwrap_or_default();
        if context.db != req_db {
            let message = format!(
                "request db {req_db} transaction db {} not match",
                context.db
            );
            return Ok(reply("INVALID_ARGUMENT", label, &message));
        }
        if context.busy {
            return Ok(reply(
                "TXN_IN_PROCESSING",
                label,
                &format!("Transaction in processing, label: {label}"),
            ));
        }
        let (db, table) = (context.db.clone(), context.table.clone());
        let op = if prepare {
            TxnOp::Prepare
        } else {
            TxnOp::Commit
        };
        step = step_fault(&shared, op, &db, &table);
        match step {
            Some((TxnEffect::Fail, _)) => {}
            Some((TxnEffect::DropBefore, _)) => return Err(DropConnection),
            _ => {}
        }
        state.contexts.remove(label)
    };
    let Some(mut context) = context else {
        return Ok(reply(
            "TXN_NOT_EXISTS",
            label,
            &format!("transaction with label {label} not exists"),
        ));
    };
    let (txn_id, db, table) = (context.txn_id, context.db.clone(), context.table.clone());
    let fail = |code: &'static str, message: String, error_url: Option<String>| {
        abort_txn(&shared, txn_id, &db, &table, &message);
        be_json(txn_reply(
            code,
            label,
            None,
            &message,
            Vec::new(),
            error_url,
        ))
    };
    if let Some((TxnEffect::Fail, _)) = step {
        let op = if prepare {
            TxnOp::Prepare
        } else {
            TxnOp::Commit
        };
        shared
            .lock()
            .counters
            .txn_event(&db, label, "abort", &table);
        return Ok(fail("INTERNAL_ERROR", step_message(op), None));
    }
    let Some(plan) = context.plan.take() else {
        let message = format!(
            "transaction id={txn_id}, job_id=-1, txn_id: {txn_id}, label={label}, db={db} hasn't send any data yet"
        );
        return Ok(fail("INTERNAL_ERROR", message, None));
    };
    let mut progress = std::mem::take(&mut context.progress);
    if let Err(message) = plan.finish(&mut progress) {
        return Ok(fail("ANALYSIS_ERROR", message, None));
    }
    let error_url = (progress.filtered_rows > 0).then(|| shared.error_url(&progress.error_lines));
    if progress.exceeds_filter_ratio(plan.max_filter_ratio) {
        return Ok(fail(
            "INTERNAL_ERROR",
            "too many filtered rows".to_string(),
            error_url,
        ));
    }
    let tablet_id = table_id(&shared, &db, &table) * 10 + 1;
    let be_host = shared.be_authority();
    if let Some(fault) = shared.faults.take(FaultPoint::Write, &db, &table) {
        let message = fault.message(&db, tablet_id, &be_host, txn_id);
        return Ok(fail("INTERNAL_ERROR", message, error_url));
    }
    let counts = TxnCounts {
        total_rows: progress.total_rows,
        loaded_rows: progress.loaded_rows(),
        filtered_rows: progress.filtered_rows,
        unselected_rows: progress.unselected_rows,
        load_bytes: progress.received_bytes,
    };
    // The heavy part of validation runs before the lock is taken (as for a plain Stream Load);
    // a prepared batch keeps it for the FE's commit.
    let check = plan.prepare(&progress.batch);
    let commit_started = Instant::now();
    let commit_fault = if prepare {
        None
    } else {
        shared.faults.take(FaultPoint::Commit, &db, &table)
    };
    let publish_delay = match &commit_fault {
        Some(FaultKind::PublishTimeout { visible_after_ms }) => {
            Some(Duration::from_millis(*visible_after_ms))
        }
        _ => None,
    };
    let outcome = {
        let mut state = shared.lock();
        let outcome = if prepare {
            let still_running =
                state.txns.get(txn_id).map(|r| r.status) == Some(TxnStatus::Prepare);
            if still_running {
                state.txns.mark_prepared(
                    txn_id,
                    std::mem::take(&mut progress.batch),
                    counts,
                    prepared_timeout.unwrap_or(DEFAULT_PREPARED_TIMEOUT),
                );
                state.txns.set_prepared_check(txn_id, check);
                Ok(CommitOutcome::Committed)
            } else {
                Err(format!(
                    "transaction {txn_id} is not running, can not prepare"
                ))
            }
        } else {
            state.commit(
                txn_id,
                &mut progress.batch,
                counts,
                publish_delay,
                Some(check),
            )
        };
        if outcome.is_ok() {
            let op = if prepare { "prepare" } else { "commit" };
            state.counters.txn_event(&db, label, op, &table);
        }
        shared.persist(&state);
        outcome
    };
    // The applied batch is freed here, outside the lock.
    drop(std::mem::take(&mut progress.batch));
    shared.notify_changed();
    let outcome = match outcome {
        Ok(o) => o,
        Err(message) => return Ok(fail("INTERNAL_ERROR", message, error_url)),
    };
    match commit_fault {
        Some(FaultKind::CommitThenDropConnection) => return Err(DropConnection),
        Some(FaultKind::CommitThenStall { stall_ms }) => {
            tokio::time::sleep(Duration::from_millis(stall_ms)).await;
        }
        Some(FaultKind::CommitUnknown) => {
            let message = FaultKind::CommitUnknown.message(&db, tablet_id, &be_host, txn_id);
            return Ok(be_json(txn_reply(
                "INTERNAL_ERROR",
                label,
                None,
                &message,
                Vec::new(),
                error_url,
            )));
        }
        _ => {}
    }
    after_effect(step).await?;
    if !prepare && outcome == CommitOutcome::Committed {
        let visible = publish_delay.is_none()
            && wait_visible(&shared, txn_id, context.begun_at + context.timeout).await;
        if !visible {
            let message = FaultKind::PublishTimeout {
                visible_after_ms: 0,
            }
            .message(&db, tablet_id, &be_host, txn_id);
            return Ok(be_json(txn_reply(
                "PUBLISH_TIMEOUT",
                label,
                None,
                &message,
                Vec::new(),
                error_url,
            )));
        }
    }
    let fields: Fields = vec![
        ("TxnId", Json::from(txn_id)),
        ("NumberTotalRows", counts.total_rows.into()),
        ("NumberLoadedRows", counts.loaded_rows.into()),
        ("NumberFilteredRows", counts.filtered_rows.into()),
        ("NumberUnselectedRows", counts.unselected_rows.into()),
        ("LoadBytes", counts.load_bytes.into()),
        ("LoadTimeMs", ms(context.begun_at.elapsed()).into()),
        ("StreamLoadPlanTimeMs", 0u64.into()),
        ("ReceivedDataTimeMs", 0u64.into()),
        (
            "WriteDataTimeMs",
            ms(commit_started.duration_since(started)).into(),
        ),
        (
            "CommitAndPublishTimeMs",
            ms(commit_started.elapsed()).into(),
        ),
    ];
    Ok(ok_reply(label, fields, error_url))
}

async fn be_rollback(ctx: &Ctx, headers: &HeaderMap, label: &str) -> Handled {
    let shared = &ctx.shared;
    let step;
    let context = {
        let mut state = shared.lock();
        let Some(context) = state.contexts.get(label) else {
            return Ok(reply(
                "TXN_NOT_EXISTS",
                label,
                &format!("transaction with label {label} not exists"),
            ));
        };
        let req_db = header(headers, "db").unwrap_or_default();
        if context.db != req_db {
            let message = format!(
                "request db {req_db} transaction db {} not match",
                context.db
            );
            return Ok(reply("INVALID_ARGUMENT", label, &message));
        }
        step = step_fault(shared, TxnOp::Rollback, &context.db, &context.table);
        match step {
            Some((TxnEffect::Fail, _)) => {
                return Ok(reply(
                    "INTERNAL_ERROR",
                    label,
                    &step_message(TxnOp::Rollback),
                ))
            }
            Some((TxnEffect::DropBefore, _)) => return Err(DropConnection),
            _ => {}
        }
        state.contexts.remove(label)
    };
    if let Some(context) = context {
        shared
            .lock()
            .counters
            .txn_event(&context.db, label, "rollback", &context.table);
        abort_txn(
            shared,
            context.txn_id,
            &context.db,
            &context.table,
            "transaction is aborted by user.",
        );
    }
    after_effect(step).await?;
    Ok(ok_reply(label, Vec::new(), None))
}
