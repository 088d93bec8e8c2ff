//! The admin HTTP endpoint (`--admin ADDR`): fault injection, counters, a BE restart, label
//! expiry and table inspection for tests and demos driven from outside the process.
//!
//! Owns the admin JSON shapes (documented in `README.md`). It is not part of StarRocks' surface,
//! does not require auth, and never panics on bad JSON: bad requests answer 400 with
//! `{"error": "..."}`. Table creation here exists until the MySQL side lands.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::response::with_body;
use super::{query_param, segments, Ctx, Resp};
use crate::catalog::{ColumnDef, ColumnType, TableSpec};
use crate::faults::{LoadFault, ServerRole};

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 1024 * 1024;

fn ok(value: Json) -> Resp {
    with_body(StatusCode::OK, "application/json", value.to_string())
}

fn bad(status: StatusCode, message: impl Into<String>) -> Resp {
    with_body(
        status,
        "application/json",
        json!({ "error": message.into() }).to_string(),
    )
}

/// Routes one admin request.
pub(crate) async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Resp {
    let segments = segments(req.uri().path());
    let parts: Vec<String> = segments;
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_string);
    let body = match read_small(req.into_body()).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let shared = &ctx.shared;
    match (method, parts.as_slice()) {
        (Method::GET, ["health"]) => ok(json!({"status": "ok"})),
        (Method::GET, ["faults"]) => ok(json!(shared.faults.snapshot())),
        (Method::DELETE, ["faults"]) => {
            shared.faults.clear();
            ok(json!({"cleared": true}))
        }
        (Method::POST, ["faults"]) => match add_fault(ctx, &body) {
            Ok(()) => ok(json!(shared.faults.snapshot())),
            Err(m) => bad(StatusCode::BAD_REQUEST, m),
        },
        (Method::GET, ["counters"]) => {
            let all: Vec<Json> = shared
                .lock()
                .counters
                .all()
                .into_iter()
                .map(|(db, table, c)| json!({"db": db, "table": table, "counters": c}))
                .collect();
            ok(Json::Array(all))
        }
        (Method::GET, ["counters", db, table]) => {
            ok(json!(shared.lock().counters.table(db, table)))
        }
        (Method::GET, ["labels", db, label]) => {
            let mut state = shared.lock();
            let status = state.txns.status_of(db, label);
            // Not the whole record: a PREPARED txn's holds its batch.
            let record = state
                .txns
                .by_label(db, label)
                .map(|r| (r.id, r.reason.clone()));
            ok(json!({
                "state": status.as_str(),
                "txn_id": record.as_ref().map(|r| r.0),
                "reason": record.map(|r| r.1).unwrap_or_default(),
            }))
        }
        (Method::POST, ["actions", "restart_fe"]) => {
            let aborted = crate::instance::restart_fe(shared);
            ok(json!({"aborted_txns": aborted}))
        }
        (Method::POST, ["actions", "restart_be"]) => {
            let aborted = crate::instance::restart_be(shared);
            ok(json!({"aborted_txns": aborted}))
        }
        (Method::POST, ["actions", "evict_labels"]) => {
            let db = query_param(query.as_deref(), "db");
            let evicted = {
                let mut state = shared.lock();
                let n = state.txns.evict_finished_labels(db.as_deref());
                shared.persist(&state);
                n
            };
            ok(json!({"evicted": evicted}))
        }
        (Method::POST, ["databases", db]) => {
            let mut state = shared.lock();
            let result = state.catalog.create_database(db, true);
            shared.persist(&state);
            match result {
                Ok(created) => ok(json!({"created": created})),
                Err(e) => bad(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        (Method::POST, ["tables", db]) => match table_spec(&body) {
            Ok(spec) => {
                let mut state = shared.lock();
                let result = state.catalog.create_table(db, spec, true);
                shared.persist(&state);
                match result {
                    Ok(created) => ok(json!({"created": created})),
                    Err(e) => bad(StatusCode::BAD_REQUEST, e.to_string()),
                }
            }
            Err(m) => bad(StatusCode::BAD_REQUEST, m),
        },
        (Method::GET, ["tables", db, table]) => {
            let state = shared.lock();
            match state.catalog.table(db, table) {
                Ok(t) => {
                    let columns: Vec<Json> = t
                        .columns()
                        .iter()
                        .map(|c| {
                            json!({
                                "name": c.name,
                                "type": c.column_type.to_string(),
                                "nullable": c.nullable,
                                "default": c.default,
                            })
                        })
                        .collect();
                    let rows: Vec<Json> = t
                        .rows()
                        .map(|r| {
                            Json::Array(r.iter().map(crate::catalog::Value::to_json).collect())
                        })
                        .collect();
                    ok(json!({
                        "columns": columns,
                        "primary_key": t.spec().primary_key,
                        "row_count": t.row_count(),
                        "rows": rows,
                    }))
                }
                Err(e) => bad(StatusCode::NOT_FOUND, e.to_string()),
            }
        }
        (Method::GET, ["label_counters", db]) => ok(json!(shared.lock().counters.labels(db))),
        (Method::GET, ["txn_events"]) => {
            let after = query_param(query.as_deref(), "after")
                .and_then(|a| a.parse::<u64>().ok())
                .unwrap_or(0);
            ok(json!(shared.lock().counters.txn_events(after)))
        }
        (Method::GET, ["multi_txns"]) => {
            let open: Vec<Json> = shared
                .lock()
                .multi
                .list(std::time::Instant::now())
                .into_iter()
                .map(|(label, txn_id, db, tables, age)| {
                    json!({"label": label, "txn_id": txn_id, "db": db, "tables": tables,
                           "age_ms": u64::try_from(age.as_millis()).unwrap_or(u64::MAX)})
                })
                .collect();
            ok(Json::Array(open))
        }
        (Method::GET, ["snapshot", db]) => {
            let wanted = query_param(query.as_deref(), "tables").unwrap_or_default();
            let state = shared.lock();
            let mut tables = serde_json::Map::new();
            for name in wanted.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                match state.catalog.table(db, name) {
                    Ok(t) => {
                        let rows: Vec<Json> = t
                            .rows()
                            .map(|r| {
                                Json::Array(r.iter().map(crate::catalog::Value::to_json).collect())
                            })
                            .collect();
                        tables.insert(name.to_string(), Json::Array(rows));
                    }
                    Err(e) => return bad(StatusCode::NOT_FOUND, e.to_string()),
                }
            }
            ok(json!({"version": state.visible_version, "tables": tables}))
        }
        _ => bad(StatusCode::NOT_FOUND, "unknown admin endpoint"),
    }
}

async fn read_small(body: Incoming) -> Result<Bytes, Resp> {
    let limited = http_body_util::Limited::new(body, MAX_ADMIN_BODY);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(bad(
            StatusCode::BAD_REQUEST,
            "request body unreadable or larger than 1 MiB",
        )),
    }
}

#[derive(Deserialize)]
struct ServerFaultRequest {
    kind: String,
    server: Option<ServerRole>,
    #[serde(default = "yes")]
    on: bool,
    #[serde(default)]
    ms: u64,
}

fn yes() -> bool {
    true
}

/// `POST /faults`: a load fault (`{"kind":"too_many_versions","count":2,"db":"d","table":"t"}`)
/// or a server fault (`refuse_connections`, `reset_connections`, `delay`, `no_backend_alive`).
fn add_fault(ctx: &Ctx, body: &[u8]) -> Result<(), String> {
    let value: Json = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let kind = value
        .get("kind")
        .and_then(Json::as_str)
        .ok_or("missing \"kind\"")?;
    let faults = &ctx.shared.faults;
    match kind {
        "refuse_connections" | "reset_connections" | "delay" | "no_backend_alive" => {
            let request: ServerFaultRequest =
                serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
            if request.kind == "no_backend_alive" {
                faults.set_no_backend_alive(request.on);
                return Ok(());
            }
            let role = request
                .server
                .ok_or("server faults need \"server\": \"fe\" or \"be\"")?;
            let mut current = faults.server(role);
            match request.kind.as_str() {
                "refuse_connections" => current.refuse_connections = request.on,
                "reset_connections" => current.reset_connections = request.on,
                _ => current.delay_ms = request.ms,
            }
            faults.set_server(role, current);
            Ok(())
        }
        _ => {
            let fault: LoadFault = serde_json::from_value(value).map_err(|e| e.to_string())?;
            faults.inject(fault);
            Ok(())
        }
    }
}

#[derive(Deserialize)]
struct ColumnRequest {
    name: String,
    #[serde(rename = "type")]
    column_type: String,
    #[serde(default = "yes")]
    nullable: bool,
    #[serde(default)]
    default: Option<String>,
}

#[derive(Deserialize)]
struct TableRequest {
    name: String,
    columns: Vec<ColumnRequest>,
    primary_key: Vec<String>,
}

/// `POST /tables/{db}`: `{"name":"t","columns":[{"name":"id","type":"BIGINT","nullable":false}],
/// "primary_key":["id"]}`.
fn table_spec(body: &[u8]) -> Result<TableSpec, String> {
    let request: TableRequest =
        serde_json::from_slice(body).map_err(|e| format!("invalid table JSON: {e}"))?;
    let mut spec = TableSpec::new(request.name).primary_key(&request.primary_key);
    for c in request.columns {
        let ty = ColumnType::parse(&c.column_type).map_err(|e| e.to_string())?;
        let mut column = ColumnDef::new(c.name, ty);
        column.nullable = c.nullable;
        column.default = c.default;
        spec = spec.column(column);
    }
    Ok(spec)
}
