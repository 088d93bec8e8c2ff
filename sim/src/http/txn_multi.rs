//! Multi-table transactions of the transaction interface (`transaction_type: multi`, StarRocks
//! 4.0+), FE half: FE `MultiStatementTransactionHandler` + `StreamLoadMultiStmtTask`.
//!
//! Owns the FE's answers for a multi-table label: `begin` (no `table` needed; answered by the FE,
//! never redirected), the FE-side checks of `load` before it is 307-redirected to the BE (the BE
//! appends to the table's own context, see `txn_api::be_load`), `commit` — which applies every
//! table's rows under one lock, so a reader sees all of them or none — and `rollback`. There is
//! no `prepare`: the FE handler has none (`Unsupported operation: TXN_PREPARE`), so these
//! transactions commit in one phase. The state matrix and texts follow StarRocks (SQL-tester
//! case `test_stream_load_multi_table_rollback`): commit after commit is OK, load after commit
//! FAILED (not `TXN_NOT_EXISTS`), an empty commit is OK, and a label stays used after a rollback.

use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{HeaderMap, Request};

use super::be::wait_visible;
use super::fe::redirect_to_be;
use super::response::{fe_failed, fe_txn_result};
use super::{header, Ctx, DropConnection, Handled, Resp};
use crate::faults::{FaultKind, FaultPoint, TxnEffect, TxnOp};
use crate::load::LoadProgress;
use crate::state::{CommitOutcome, CommitPart};
use crate::txn::multi::{MultiTask, DEFAULT_MULTI_TIMEOUT};
use crate::txn::stream_context::StreamContext;
use crate::txn::{BeginError, TxnCounts, TxnKind, TxnRecord, TxnStatus};

const FE_EXCEPTION: &str = "com.starrocks.common.StarRocksException";
const META_NOT_FOUND: &str = "com.starrocks.common.MetaNotFoundException";

/// Whether the request asks for a multi-table transaction (`transaction_type: multi`). Only
/// StarRocks 4.0+ knows the header; older FEs ignore it.
pub(crate) fn wants_multi(ctx: &Ctx, headers: &HeaderMap) -> bool {
    ctx.shared.config.multi_table_txn
        && header(headers, "transaction_type")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("multi"))
}

/// Whether a label in a database belongs to a multi-table txn (the FE routes commit/rollback of
/// such a label to the multi-table handler even without the header).
pub(crate) fn is_multi_label(ctx: &Ctx, db: &str, label: &str) -> bool {
    ctx.shared.config.multi_table_txn
        && ctx
            .shared
            .lock()
            .txns
            .by_label(db, label)
            .is_some_and(|r| r.kind == TxnKind::MultiTable)
}

/// An FE answer `Status: FAILED` with a plain message (`TransactionResult.setErrorMsg`).
fn failed(message: &str) -> Resp {
    fe_txn_result("FAILED", message, Vec::new())
}

/// Handles `/api/transaction/{op}` of a multi-table txn on the FE.
pub(crate) async fn fe(
    ctx: &Ctx,
    req: Request<Incoming>,
    op: TxnOp,
    db: &str,
    label: &str,
) -> Handled {
    match op {
        TxnOp::Begin => begin(ctx, req.headers(), db, label).await,
        TxnOp::Load => Ok(load(ctx, &req, db, label)),
        TxnOp::Prepare => Ok(fe_failed(
            FE_EXCEPTION,
            "Unsupported operation: TXN_PREPARE",
        )),
        TxnOp::Commit => commit(ctx, db, label).await,
        TxnOp::Rollback => rollback(ctx, db, label).await,
    }
}

/// A `TxnStep` fault for this op, if one is armed.
fn step_fault(ctx: &Ctx, op: TxnOp, db: &str, tables: &[String]) -> Option<(TxnEffect, u64)> {
    match ctx
        .shared
        .faults
        .take_matching(FaultPoint::Txn(op), db, tables, |k| !k.is_stall_before())
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

fn step_message(op: TxnOp) -> String {
    FaultKind::TxnStep {
        op,
        effect: TxnEffect::Fail,
        stall_ms: 0,
    }
    .message("", 0, "", -1)
}

async fn begin(ctx: &Ctx, headers: &HeaderMap, db: &str, label: &str) -> Handled {
    let shared = &ctx.shared;
    let timeout = match header(headers, "timeout").map(str::trim) {
        None => DEFAULT_MULTI_TIMEOUT,
        Some(v) => match v.parse::<i64>() {
            Ok(secs) => Duration::from_millis(u64::try_from(secs.max(1)).unwrap_or(1) * 1000),
            Err(_) => {
                return Ok(fe_failed(
                    "java.lang.NumberFormatException",
                    &format!("For input string: \"{v}\""),
                ))
            }
        },
    };
    if shared.lock().catalog.database(db).is_none() {
        return Ok(fe_failed(
            FE_EXCEPTION,
            &format!("Database[{db}] does not exist"),
        ));
    }
    let fault = step_fault(ctx, TxnOp::Begin, db, &[]);
    match fault {
        Some((TxnEffect::Fail, _)) => {
            return Ok(fe_failed(FE_EXCEPTION, &step_message(TxnOp::Begin)))
        }
        Some((TxnEffect::DropBefore, _)) => return Err(DropConnection),
        _ => {}
    }
    if let Some(f) = shared.faults.take_any(FaultPoint::Begin, db, &[]) {
        return Ok(fe_failed(FE_EXCEPTION, &f.message(db, 0, "", -1)));
    }
    let reply = {
        let mut state = shared.lock();
        let existing = state.txns.by_label(db, label).cloned();
        let committing = state.multi.get(label).is_some_and(|t| t.committing);
        if let Some(reply) = existing.and_then(|r| label_taken(&r, db, label, committing)) {
            return Ok(reply);
        }
        match state.txns.begin(db, "", label, TxnKind::MultiTable) {
            Ok(txn_id) => {
                state.multi.insert(
                    label.to_string(),
                    MultiTask {
                        txn_id,
                        label: label.to_string(),
                        db: db.to_string(),
                        tables: Default::default(),
                        begun_at: Instant::now(),
                        timeout,
                        committing: false,
                    },
                );
                state.counters.txn_event(db, label, "begin", "");
                fe_txn_result("OK", "", Vec::new())
            }
            Err(BeginError::LabelExists { existing }) => fe_txn_result(
                "LABEL_ALREADY_EXISTS",
                &format!("Label [{label}] has already been used."),
                vec![("ExistingJobStatus", existing.into()), ("Db", db.into())],
            ),
            Err(BeginError::InvalidLabel(m) | BeginError::TooManyRunning(m)) => {
                fe_failed(FE_EXCEPTION, &m)
            }
        }
    };
    after_effect(fault).await?;
    Ok(reply)
}

/// `LABEL_ALREADY_EXISTS` for a label already used in the database, or `None` if it is free
/// (an aborted single-table label is; a multi-table task keeps its label until evicted).
fn label_taken(r: &TxnRecord, db: &str, label: &str, committing: bool) -> Option<Resp> {
    if r.kind == TxnKind::MultiTable {
        let (message, state) = match r.status {
            TxnStatus::Committed => (
                format!("Label [{label}] has already been used."),
                "COMMITED",
            ),
            TxnStatus::Visible => (
                format!("Label [{label}] has already been used."),
                "FINISHED",
            ),
            status => (
                format!(
                    "Transaction already started with label [{label}], txnId: {}",
                    r.id
                ),
                match status {
                    TxnStatus::Aborted => "CANCELLED",
                    _ if committing => "COMMITING",
                    _ => "BEGIN",
                },
            ),
        };
        let mut extra = vec![("ExistingJobStatus", state.into())];
        if !r.status.is_committed() {
            extra.push(("TxnId", r.id.into()));
        }
        return Some(fe_txn_result("LABEL_ALREADY_EXISTS", &message, extra));
    }
    (r.status != TxnStatus::Aborted).then(|| {
        fe_txn_result(
            "LABEL_ALREADY_EXISTS",
            &format!("Label [{label}] has already been used."),
            vec![
                ("ExistingJobStatus", r.status.as_str().into()),
                ("Db", db.into()),
            ],
        )
    })
}

/// The FE's checks of a `load` (`executeLoadTask` / `tryLoad`): the task must accept loads and
/// the table must exist (else the task is cancelled); the table joins the txn; then 307.
fn load(ctx: &Ctx, req: &Request<Incoming>, db: &str, label: &str) -> Resp {
    let shared = &ctx.shared;
    let table = header(req.headers(), "table")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut state = shared.lock();
    let Some(record) = state.txns.by_label(db, label).cloned() else {
        return fe_failed(
            FE_EXCEPTION,
            &format!("stream load task {label} does not exist"),
        );
    };
    match record.status {
        TxnStatus::Aborted => {
            return failed(&format!(
                "stream load task {label} has already been cancelled: {}",
                record.reason
            ))
        }
        TxnStatus::Committed => {
            return failed(&format!(
                "stream load task {label} has already been commited"
            ))
        }
        TxnStatus::Visible => {
            return failed(&format!(
                "stream load task {label} has already been finished"
            ))
        }
        _ => {}
    }
    let Some(task) = state.multi.get(label) else {
        return fe_failed(
            FE_EXCEPTION,
            &format!("stream load task {label} does not exist"),
        );
    };
    if task.committing {
        return failed(&format!(
            "stream load task {label} is committing, can not accept new loads"
        ));
    }
    if state.catalog.table(db, &table).is_err() {
        let message = format!("Failed to find table {table} in db {db}");
        state.abort_multi(label, &message, "abort");
        shared.persist(&state);
        drop(state);
        shared.notify_changed();
        return fe_failed(META_NOT_FOUND, &message);
    }
    let joined = state.multi.get_mut(label).map(|task| {
        let (txn_id, begun_at, timeout) = (task.txn_id, task.begun_at, task.timeout);
        task.tables
            .entry(table.clone())
            .or_insert_with(|| StreamContext {
                txn_id,
                db: db.to_string(),
                table: table.clone(),
                plan: None,
                progress: LoadProgress::default(),
                busy: false,
                begun_at,
                last_active: Instant::now(),
                timeout,
                idle_timeout: None,
            });
        (txn_id, task.table_list())
    });
    if let Some((txn_id, tables)) = joined {
        state.txns.set_table(txn_id, &tables);
    }
    drop(state);
    redirect_to_be(ctx, req)
}

async fn commit(ctx: &Ctx, db: &str, label: &str) -> Handled {
    let shared = ctx.shared.clone();
    // Check the state and mark the task committing (new loads are refused from here on).
    let (txn_id, step, contexts) = {
        let mut state = shared.lock();
        let Some(record) = state.txns.by_label(db, label).cloned() else {
            return Ok(fe_failed(
                FE_EXCEPTION,
                &format!("stream load task {label} does not exist"),
            ));
        };
        match record.status {
            TxnStatus::Committed | TxnStatus::Visible => {
                return Ok(fe_txn_result(
                    "OK",
                    &format!(
                        "Transaction {} has already committed, label is {label}",
                        record.id
                    ),
                    vec![("Label", label.into()), ("TxnId", record.id.into())],
                ))
            }
            TxnStatus::Aborted => {
                return Ok(failed(&format!(
                    "Can not commit CANCELLED transaction {}, label is {label}",
                    record.id
                )))
            }
            _ => {}
        }
        let Some(task) = state.multi.get_mut(label) else {
            return Ok(fe_failed(
                FE_EXCEPTION,
                &format!("stream load task {label} does not exist"),
            ));
        };
        if task.committing {
            return Ok(failed(&format!(
                "Transaction {} is already committing, label is {label}",
                record.id
            )));
        }
        if task.busy() {
            return Ok(failed(&format!(
                "Transaction in processing, label: {label}"
            )));
        }
        let tables = task.table_names();
        let fault = step_fault(ctx, TxnOp::Commit, db, &tables);
        match fault {
            Some((TxnEffect::Fail, _)) => {
                state.abort_multi(label, &step_message(TxnOp::Commit), "abort");
                shared.persist(&state);
                drop(state);
                shared.notify_changed();
                return Ok(failed(&step_message(TxnOp::Commit)));
            }
            Some((TxnEffect::DropBefore, _)) => return Err(DropConnection),
            _ => {}
        }
        task.committing = true;
        let contexts = std::mem::take(&mut task.tables);
        drop(state);
        (record.id, fault, contexts)
    };
    let tables: Vec<String> = contexts.keys().cloned().collect();
    let abort = |message: &str| {
        let mut state = shared.lock();
        if state.multi.remove(label).is_some() && state.txns.abort(txn_id, message) {
            for table in &tables {
                state.counters.failed(db, table);
            }
            state
                .counters
                .txn_event(db, label, "abort", &tables.join(","));
        }
        shared.persist(&state);
        drop(state);
        shared.notify_changed();
        failed(message)
    };
    if let Some(f) = shared.faults.take_any(FaultPoint::Write, db, &tables) {
        return Ok(abort(&f.message(db, 0, &shared.be_authority(), txn_id)));
    }
    // Each table's loads become one part; a table whose load never reached the BE has none.
    let mut parts = Vec::with_capacity(contexts.len());
    for (table, mut context) in contexts {
        let Some(plan) = context.plan.take() else {
            continue;
        };
        let mut progress = std::mem::take(&mut context.progress);
        if let Err(message) = plan.finish(&mut progress) {
            return Ok(abort(&message));
        }
        if progress.exceeds_filter_ratio(plan.max_filter_ratio) {
            return Ok(abort("too many filtered rows"));
        }
        if progress.filtered_rows > 0 && progress.loaded_rows() == 0 {
            // StarRocks fails the whole commit when one table kept no row (SQL-tester case
            // test_multi_table_all_rows_rejected_tracking: the message names the table and has
            // a tracking_url); the rest of this text is the sim's own.
            let url = shared.error_url(&progress.error_lines);
            return Ok(abort(&format!(
                "Failed to load table {table}: all {} rows were filtered, tracking_url: {url}",
                progress.filtered_rows
            )));
        }
        let counts = TxnCounts {
            total_rows: progress.total_rows,
            loaded_rows: progress.loaded_rows(),
            filtered_rows: progress.filtered_rows,
            unselected_rows: progress.unselected_rows,
            load_bytes: progress.received_bytes,
        };
        parts.push(CommitPart {
            table,
            batch: progress.batch,
            counts,
            prepared: None,
        });
    }
    let commit_fault = shared.faults.take_any(FaultPoint::Commit, db, &tables);
    let delay = match &commit_fault {
        Some(FaultKind::PublishTimeout { visible_after_ms }) => {
            Some(Duration::from_millis(*visible_after_ms))
        }
        _ => None,
    };
    let outcome = {
        let mut state = shared.lock();
        state.multi.remove(label);
        let outcome = state.commit_parts(txn_id, &mut parts, delay);
        match &outcome {
            Ok(_) => state
                .counters
                .txn_event(db, label, "commit", &tables.join(",")),
            Err(_) => state
                .counters
                .txn_event(db, label, "abort", &tables.join(",")),
        }
        shared.persist(&state);
        outcome
    };
    shared.notify_changed();
    drop(parts);
    let outcome = match outcome {
        Ok(o) => o,
        Err(message) => return Ok(failed(&message)),
    };
    match commit_fault {
        Some(FaultKind::CommitThenDropConnection) => return Err(DropConnection),
        Some(FaultKind::CommitThenStall { stall_ms }) => {
            tokio::time::sleep(Duration::from_millis(stall_ms)).await;
        }
        Some(FaultKind::CommitUnknown) => {
            return Ok(failed(&FaultKind::CommitUnknown.message(db, 0, "", txn_id)))
        }
        _ => {}
    }
    after_effect(step).await?;
    if outcome == CommitOutcome::Committed && delay.is_none() {
        // Queued behind an unpublished version of one of its tables: wait (bounded) as the FE's
        // commit waits for publish.
        let _ = wait_visible(&shared, txn_id, Instant::now() + Duration::from_secs(20)).await;
    }
    Ok(fe_txn_result(
        "OK",
        "",
        vec![("Label", label.into()), ("TxnId", txn_id.into())],
    ))
}

async fn rollback(ctx: &Ctx, db: &str, label: &str) -> Handled {
    let shared = &ctx.shared;
    let (reply, step) = {
        let mut state = shared.lock();
        let Some(record) = state.txns.by_label(db, label).cloned() else {
            // Sic: StarRocks' text has no spaces around the label here.
            return Ok(fe_failed(
                FE_EXCEPTION,
                &format!("stream load task{label}does not exist"),
            ));
        };
        match record.status {
            TxnStatus::Committed | TxnStatus::Visible => {
                return Ok(failed(&format!(
                    "Can not abort VISIBLE transaction {}, label is {label}",
                    record.id
                )))
            }
            TxnStatus::Aborted => {
                return Ok(fe_txn_result(
                    "OK",
                    &format!(
                        "Transaction {} has already aborted, label is {label}",
                        record.id
                    ),
                    vec![("Label", label.into()), ("TxnId", record.id.into())],
                ))
            }
            _ => {}
        }
        let tables = state
            .multi
            .get(label)
            .map(MultiTask::table_names)
            .unwrap_or_default();
        if state.multi.get(label).is_some_and(|t| t.committing) {
            return Ok(failed(&format!(
                "Can not abort transaction {} during committing, label is {label}",
                record.id
            )));
        }
        let fault = step_fault(ctx, TxnOp::Rollback, db, &tables);
        match fault {
            Some((TxnEffect::Fail, _)) => return Ok(failed(&step_message(TxnOp::Rollback))),
            Some((TxnEffect::DropBefore, _)) => return Err(DropConnection),
            _ => {}
        }
        if !state.abort_multi(label, "manual abort", "rollback")
            && state.txns.abort(record.id, "manual abort")
        {
            state.counters.txn_event(db, label, "rollback", "");
        }
        shared.persist(&state);
        (
            fe_txn_result("OK", &format!("stream load {label} abort"), Vec::new()),
            fault,
        )
    };
    shared.notify_changed();
    after_effect(step).await?;
    Ok(reply)
}
