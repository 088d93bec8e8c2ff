//! The FE HTTP server (8030): Stream Load redirect, load state, and the FE half of the
//! transaction interface (reference §1 "FE path", "Expect: 100-continue", §4 `get_load_state`).
//!
//! Owns the FE's order of checks for `PUT /api/{db}/{table}/_stream_load`: Basic auth (401), then
//! the `Expect: 100-continue` requirement for HTTP/1.1 (HTTP/1.0 exempt), then the "No backend
//! alive." fault, then `307 Temporary Redirect` to the BE with `Connection: close`. It never reads
//! a load body and does not check that the database or table exist (the BE's begin-txn does).
//! `get_load_state` checks the password, then the label, then the database (`unknown database,
//! database=<db>` in a `FAILED` body, HTTP 200), in StarRocks' order.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Method, Request, StatusCode, Version};

use super::response::{closing, compact, not_found, with_body};
use super::{auth, header, query_param, segments, txn_api, Ctx, Handled, Resp};

/// Routes one FE request.
pub(crate) async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Handled {
    let segments = segments(req.uri().path());
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match parts.as_slice() {
        ["api", "transaction", op] if method == Method::POST || method == Method::PUT => {
            let op = (*op).to_string();
            txn_api::fe(ctx, req, &op).await
        }
        ["api", _db, _table, "_stream_load"] if method == Method::PUT => {
            Ok(stream_load_redirect(ctx, &req))
        }
        ["api", db, "get_load_state"] if method == Method::GET => {
            let db = (*db).to_string();
            Ok(get_load_state(ctx, &req, &db))
        }
        _ => Ok(not_found()),
    }
}

/// `307` to the BE, or the FE's refusal.
fn stream_load_redirect(ctx: &Ctx, req: &Request<Incoming>) -> Resp {
    let shared = &ctx.shared;
    if let Some(reply) = auth::fe_reject(req.headers(), &shared.config, &ctx.peer.ip().to_string())
    {
        return reply;
    }
    let expects_continue = header(req.headers(), "expect")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
    if shared.config.require_100_continue && req.version() >= Version::HTTP_11 && !expects_continue
    {
        return closing(fe_plain_failure("There is no 100-continue header"));
    }
    if shared.faults.no_backend_alive() {
        return fe_plain_failure("No backend alive.");
    }
    redirect_to_be(ctx, req)
}

/// The FE's compact failure body (`text/html`, HTTP 200).
fn fe_plain_failure(text: &str) -> Resp {
    let body = compact(&[
        ("Status", "FAILED".into()),
        (
            "Message",
            format!("class com.starrocks.common.DdlException: {text}").into(),
        ),
    ]);
    with_body(StatusCode::OK, "text/html", body)
}

/// A REST action's failure as the FE sends it (`RestBaseResult`, HTTP 200): a `DdlException`
/// thrown after the password check.
fn fe_rest_failure(text: &str) -> Resp {
    let body = compact(&[
        ("status", "FAILED".into()),
        ("code", "1".into()),
        ("msg", text.into()),
        ("message", text.into()),
    ]);
    with_body(StatusCode::OK, "application/json", body)
}

/// `307 Temporary Redirect` to the same path and query on the BE, `Connection: close`.
pub(crate) fn redirect_to_be(ctx: &Ctx, req: &Request<Incoming>) -> Resp {
    let mut location = format!("http://{}{}", ctx.shared.be_authority(), req.uri().path());
    if let Some(q) = req.uri().query() {
        location.push('?');
        location.push_str(q);
    }
    let mut response = with_body(StatusCode::TEMPORARY_REDIRECT, "text/html", String::new());
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    closing(response)
}

/// `GET /api/{db}/get_load_state?label=L`.
fn get_load_state(ctx: &Ctx, req: &Request<Incoming>, db: &str) -> Resp {
    let shared = &ctx.shared;
    if let Some(reply) = auth::fe_reject(req.headers(), &shared.config, &ctx.peer.ip().to_string())
    {
        return reply;
    }
    let Some(label) = query_param(req.uri().query(), "label").filter(|l| !l.is_empty()) else {
        return fe_rest_failure("No label selected.");
    };
    let (state, reason) = {
        let mut guard = shared.lock();
        // After the password and the label, as StarRocks' `GetStreamLoadState` checks: so a
        // client can prove its credentials before the database exists.
        if guard.catalog.database(db).is_none() {
            drop(guard);
            return fe_rest_failure(&format!("unknown database, database={db}"));
        }
        let status = guard.txns.status_of(db, &label);
        let reason = guard
            .txns
            .by_label(db, &label)
            .map(|r| r.reason.clone())
            .unwrap_or_default();
        (status, reason)
    };
    let body = compact(&[
        ("status", "OK".into()),
        ("code", "0".into()),
        ("msg", "Success".into()),
        ("message", "OK".into()),
        ("state", state.as_str().into()),
        ("reason", reason.into()),
    ]);
    with_body(StatusCode::OK, "application/json", body)
}
