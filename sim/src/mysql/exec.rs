//! Runs one parsed statement against the shared catalog for a session and produces the answer:
//! an OK (affected rows) or a text result set, or a StarRocks-style error.
//!
//! Owns statement semantics: name resolution (`db.t`, else the session's `USE` database, else
//! 1046), SELECT over a table or an `information_schema` view (WHERE, ORDER BY, LIMIT, `*`,
//! listed columns, constants, `COUNT(*)`), constant SELECTs (`current_version()`, `@@vars`,
//! `database()`, ...), the SHOW family, DESC, and DDL (CREATE/DROP DATABASE and TABLE,
//! TRUNCATE, ALTER as async jobs, CANCEL ALTER). Catalog access goes through
//! [`crate::CatalogHandle`] closures, so a query never sees a load half-applied; nothing here
//! awaits. Values are rendered as MySQL text: NULL as NULL, booleans 1/0, DATETIME with
//! microseconds only when non-zero, JSON compact.

use std::sync::Arc;

use crate::catalog::{CatalogError, ColumnPosition, ColumnType, Value};

use super::alter::{self, ColumnChange};
use super::ddl;
use super::error::{SqlError, SqlResult};
use super::infoschema;
use super::parser::{
    parse, AlterOp, CmpOp, Expr, Literal, ObjectName, OrderKey, Predicate, Query, Select,
    SelectItem, Statement,
};
use super::relation::{self, bind, column_index, row_matches, text, Kind, RelColumn, Relation};
use super::{now_text, Server, SERVER_VERSION};

/// Per-connection state.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) user: String,
    pub(crate) host: String,
    pub(crate) db: Option<String>,
    pub(crate) connection_id: u32,
    /// `SET @x = literal` values, by lower-cased name.
    pub(crate) user_vars: std::collections::HashMap<String, Option<String>>,
}

/// What a statement answers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// OK with affected rows.
    Ok(u64),
    /// A result set.
    Rows {
        columns: Vec<(String, Kind)>,
        rows: Vec<Vec<Option<String>>>,
    },
}

impl Outcome {
    fn from_relation(relation: Relation) -> Outcome {
        Outcome::Rows {
            columns: relation
                .columns
                .into_iter()
                .map(|c| (c.name, c.kind))
                .collect(),
            rows: relation
                .rows
                .iter()
                .map(|row| row.iter().map(Value::to_text).collect())
                .collect(),
        }
    }
}

/// Parses and runs one COM_QUERY text.
pub(crate) fn execute(
    server: &Arc<Server>,
    session: &mut Session,
    sql: &str,
) -> SqlResult<Outcome> {
    match parse(sql)? {
        Statement::Noop => Ok(Outcome::Ok(0)),
        Statement::SetUserVars(assignments) => {
            for (name, value) in assignments {
                session
                    .user_vars
                    .insert(name.to_ascii_lowercase(), value.text());
            }
            Ok(Outcome::Ok(0))
        }
        Statement::Select(select) => run_select(server, session, &select),
        Statement::Use(name) => {
            let db = match name.db {
                Some(catalog) if !catalog.eq_ignore_ascii_case("default_catalog") => {
                    return Err(SqlError::unsupported(format!("catalog '{catalog}'")))
                }
                _ => name.name,
            };
            use_database(server, session, &db)?;
            Ok(Outcome::Ok(0))
        }
        Statement::ShowDatabases { like } => {
            let names = server.catalog.read(|c| {
                std::iter::once(infoschema::NAME.to_string())
                    .chain(c.database_names().map(str::to_string))
                    .collect::<Vec<_>>()
            });
            let rows = names
                .into_iter()
                .filter(|n| like.as_deref().is_none_or(|p| relation::like(n, p)))
                .map(|n| vec![text(n)])
                .collect();
            Ok(Outcome::from_relation(Relation {
                columns: vec![RelColumn::str("Database")],
                rows,
            }))
        }
        Statement::ShowTables { db, full, like } => {
            let db = match db {
                Some(db) => db,
                None => session.db.clone().ok_or_else(SqlError::no_database)?,
            };
            let names: Vec<String> = if infoschema::is_info_schema(&db) {
                infoschema::view_names().map(str::to_string).collect()
            } else {
                server.catalog.read(|c| {
                    c.database(&db)
                        .map(|d| d.table_names().map(str::to_string).collect())
                        .ok_or_else(|| SqlError::unknown_database(&db))
                })?
            };
            let mut columns = vec![RelColumn::str(&format!("Tables_in_{db}"))];
            if full {
                columns.push(RelColumn::str("Table_type"));
            }
            let kind = if infoschema::is_info_schema(&db) {
                "SYSTEM VIEW"
            } else {
                "BASE TABLE"
            };
            let rows = names
                .into_iter()
                .filter(|n| like.as_deref().is_none_or(|p| relation::like(n, p)))
                .map(|n| {
                    let mut row = vec![text(n)];
                    if full {
                        row.push(text(kind));
                    }
                    row
                })
                .collect();
            Ok(Outcome::from_relation(Relation { columns, rows }))
        }
        Statement::ShowCreateTable(name) => {
            let db = db_of(session, &name)?;
            if infoschema::is_info_schema(&db) {
                return Err(SqlError::unsupported(
                    "SHOW CREATE TABLE on information_schema",
                ));
            }
            let ddl = server
                .catalog
                .read(|c| c.table(&db, &name.name).map(ddl::show_create_table))
                .map_err(SqlError::from)?;
            Ok(Outcome::from_relation(Relation {
                columns: vec![RelColumn::str("Table"), RelColumn::str("Create Table")],
                rows: vec![vec![text(&name.name), text(ddl)]],
            }))
        }
        Statement::ShowCreateDatabase(db) => {
            check_database(server, &db)?;
            Ok(Outcome::from_relation(Relation {
                columns: vec![
                    RelColumn::str("Database"),
                    RelColumn::str("Create Database"),
                ],
                rows: vec![vec![
                    text(&db),
                    text(format!("CREATE DATABASE `{}`", db.replace('`', "``"))),
                ]],
            }))
        }
        Statement::Describe(name) => describe(server, session, &name),
        Statement::ShowAlter { db, query } => {
            let db = match db {
                Some(db) => db,
                None => session.db.clone().ok_or_else(SqlError::no_database)?,
            };
            check_database(server, &db)?;
            let mut relation = alter::relation(server, &db);
            relation.apply(&query)?;
            Ok(Outcome::from_relation(relation))
        }
        Statement::ShowVariables { like, query } => {
            let rows = SYSTEM_VARIABLES
                .iter()
                .filter(|(name, _)| {
                    like.as_deref()
                        .is_none_or(|p| relation::like(name, &p.to_ascii_lowercase()))
                })
                .map(|(name, _)| {
                    let value = system_variable(server, name)
                        .and_then(|(v, _)| v)
                        .unwrap_or_default();
                    vec![text(*name), text(value)]
                })
                .collect();
            let mut relation = Relation {
                columns: vec![RelColumn::str("Variable_name"), RelColumn::str("Value")],
                rows,
            };
            relation.apply(&query)?;
            Ok(Outcome::from_relation(relation))
        }
        Statement::ShowWarnings => Ok(Outcome::from_relation(Relation {
            columns: vec![
                RelColumn::str("Level"),
                RelColumn::int("Code"),
                RelColumn::str("Message"),
            ],
            rows: Vec::new(),
        })),
        Statement::ShowBackends => Ok(Outcome::from_relation(backends(server))),
        Statement::ShowFrontends => Ok(Outcome::from_relation(frontends(server))),
        Statement::CreateDatabase {
            name,
            if_not_exists,
        } => {
            if infoschema::is_info_schema(&name) {
                if if_not_exists {
                    return Ok(Outcome::Ok(0));
                }
                return Err(SqlError::from(CatalogError::DatabaseExists {
                    database: name,
                }));
            }
            if name.is_empty() {
                return Err(SqlError::new(1102, "42000", "Incorrect database name ''"));
            }
            let created = server
                .catalog
                .write(|c| c.create_database(&name, if_not_exists))?;
            Ok(Outcome::Ok(u64::from(created)))
        }
        Statement::DropDatabase { name, if_exists } => {
            if infoschema::is_info_schema(&name) {
                return Err(access_denied_db(session, &name));
            }
            server
                .catalog
                .write(|c| c.drop_database(&name, if_exists))
                .map_err(|e| match e {
                    CatalogError::UnknownDatabase { database } => SqlError::new(
                        1008,
                        "HY000",
                        format!("Can't drop database '{database}'; database doesn't exist"),
                    ),
                    other => SqlError::from(other),
                })?;
            if session.db.as_deref() == Some(name.as_str()) {
                session.db = None;
            }
            Ok(Outcome::Ok(0))
        }
        Statement::CreateTable(create) => {
            let db = db_of(session, &create.name)?;
            if infoschema::is_info_schema(&db) {
                return Err(access_denied_db(session, &db));
            }
            check_database(server, &db)?;
            let spec = ddl::table_spec(sql, &create)?;
            server
                .catalog
                .write(|c| c.create_table(&db, spec, create.if_not_exists))?;
            Ok(Outcome::Ok(0))
        }
        Statement::DropTable { name, if_exists } => {
            let db = db_of(session, &name)?;
            if infoschema::is_info_schema(&db) {
                return Err(access_denied_db(session, &db));
            }
            server
                .catalog
                .write(|c| c.drop_table(&db, &name.name, if_exists))
                .map_err(|e| match e {
                    CatalogError::UnknownTable { database, table } => {
                        SqlError::new(1051, "42S02", format!("Unknown table '{database}.{table}'"))
                    }
                    other => SqlError::from(other),
                })?;
            Ok(Outcome::Ok(0))
        }
        Statement::Truncate(name) => {
            let db = db_of(session, &name)?;
            if infoschema::is_info_schema(&db) {
                return Err(access_denied_db(session, &db));
            }
            server
                .catalog
                .write(|c| c.truncate_table(&db, &name.name))?;
            Ok(Outcome::Ok(0))
        }
        Statement::Alter {
            table,
            ops,
            timeout,
        } => {
            let db = db_of(session, &table)?;
            if infoschema::is_info_schema(&db) {
                return Err(access_denied_db(session, &db));
            }
            let changes = ops
                .iter()
                .map(|op| column_change(sql, op))
                .collect::<SqlResult<Vec<_>>>()?;
            alter::submit(server, &db, &table.name, changes, timeout)?;
            Ok(Outcome::Ok(0))
        }
        Statement::CancelAlter(name) => {
            let db = db_of(session, &name)?;
            alter::cancel(server, &db, &name.name)?;
            Ok(Outcome::Ok(0))
        }
    }
}

/// `USE db` / COM_INIT_DB.
pub(crate) fn use_database(server: &Server, session: &mut Session, db: &str) -> SqlResult<()> {
    if infoschema::is_info_schema(db) {
        session.db = Some(infoschema::NAME.to_string());
        return Ok(());
    }
    check_database(server, db)?;
    session.db = Some(db.to_string());
    Ok(())
}

fn check_database(server: &Server, db: &str) -> SqlResult<()> {
    if infoschema::is_info_schema(db) {
        return Ok(());
    }
    if server.catalog.read(|c| c.database(db).is_some()) {
        Ok(())
    } else {
        Err(SqlError::unknown_database(db))
    }
}

fn access_denied_db(session: &Session, db: &str) -> SqlError {
    SqlError::new(
        1044,
        "42000",
        format!(
            "Access denied for user '{}' to database '{db}'",
            session.user
        ),
    )
}

/// The database a name refers to: its qualifier, else the session's.
fn db_of(session: &Session, name: &ObjectName) -> SqlResult<String> {
    match &name.db {
        Some(db) => Ok(db.clone()),
        None => session.db.clone().ok_or_else(SqlError::no_database),
    }
}

fn column_change(sql: &str, op: &AlterOp) -> SqlResult<ColumnChange> {
    Ok(match op {
        AlterOp::Add {
            column,
            after,
            first,
        } => {
            if *first {
                return Err(SqlError::ddl(format!(
                    "Can not add column `{}` before the key columns of a primary key table",
                    column.name
                )));
            }
            ColumnChange::Add {
                column: ddl::column_def(sql, column, false)?,
                position: after
                    .clone()
                    .map_or(ColumnPosition::Last, ColumnPosition::After),
            }
        }
        AlterOp::Drop(name) => ColumnChange::Drop(name.clone()),
        AlterOp::Modify(column) => ColumnChange::Modify(ddl::column_def(sql, column, false)?),
    })
}

// ---- SELECT ----

/// One output column of a SELECT.
enum OutItem {
    /// A relation column.
    Column { index: usize, name: String },
    /// A constant.
    Const {
        value: Option<String>,
        kind: Kind,
        name: String,
    },
    /// `COUNT(*)` / `COUNT(const)` (`None`) or `COUNT(col)` (`Some(index)`).
    Count { column: Option<usize>, name: String },
    /// `SUM(col)` of a numeric column (NULLs skipped; NULL when no value).
    Sum { column: usize, name: String },
}

fn run_select(server: &Arc<Server>, session: &Session, select: &Select) -> SqlResult<Outcome> {
    let Some(from) = &select.from else {
        return constant_select(server, session, select);
    };
    let db = db_of(session, from)?;
    let query = &select.query;
    let relation = if infoschema::is_info_schema(&db) {
        let mut relation = server
            .catalog
            .read(|c| infoschema::view(c, &from.name))
            .ok_or_else(|| SqlError::unknown_table(infoschema::NAME, &from.name))?;
        let bound = bind(&relation.columns, &query.filter)?;
        let mut kept = Vec::new();
        for row in std::mem::take(&mut relation.rows) {
            if row_matches(&relation.columns, &row, &bound)? {
                kept.push(row);
            }
        }
        relation.rows = kept;
        relation
    } else {
        server.catalog.read(|c| -> SqlResult<Relation> {
            let table = c.table(&db, &from.name)?;
            let columns: Vec<RelColumn> = table
                .columns()
                .iter()
                .map(|col| RelColumn::new(col.name.clone(), Kind::Typed(col.column_type.clone())))
                .collect();
            let bound = bind(&columns, &query.filter)?;
            let mut rows = Vec::new();
            if let Some(keys) = key_lookups(table, &query.filter) {
                // Rows by key (`starwal verify` asks for hundreds of keys at a time): a
                // primary-key lookup each, as StarRocks' own point lookups, instead of a scan.
                for key in keys {
                    if let Some(row) = table.get(&key) {
                        if row_matches(&columns, &row, &bound)? {
                            rows.push(row);
                        }
                    }
                }
            } else {
                for row in table.rows() {
                    if row_matches(&columns, &row, &bound)? {
                        rows.push(row);
                    }
                }
            }
            Ok(Relation { columns, rows })
        })?
    };
    project(server, session, relation, select)
}

/// Most keys a WHERE may name for [`key_lookups`]; more fall back to a scan.
const MAX_KEY_LOOKUPS: usize = 100_000;

/// The keys a WHERE names when it pins every key column with `=` or `IN` (composite keys as the
/// cross product of the lists), in key order without repeats; `None` when it does not (scan).
/// A literal the column's type cannot hold names no key, as in a comparison.
fn key_lookups(table: &crate::catalog::Table, filter: &[Predicate]) -> Option<Vec<Vec<Value>>> {
    let mut keys: Vec<Vec<Value>> = vec![Vec::new()];
    for column in table.key_columns() {
        let literals: Vec<&Literal> = filter.iter().find_map(|p| match p {
            Predicate::In {
                column: c,
                values,
                negated: false,
            } if column.is_named(c) => Some(values.iter().collect()),
            Predicate::Cmp {
                column: c,
                op: CmpOp::Eq,
                value,
            } if column.is_named(c) => Some(vec![value]),
            _ => None,
        })?;
        let mut values: Vec<Value> = literals
            .iter()
            .filter_map(|lit| lit.text())
            .filter_map(|text| column.column_type.convert_text(&column.name, &text).ok())
            .collect();
        values.sort_by(|a, b| a.compare(b).unwrap_or(std::cmp::Ordering::Equal));
        values.dedup();
        if keys.len().saturating_mul(values.len()) > MAX_KEY_LOOKUPS {
            return None;
        }
        keys = keys
            .iter()
            .flat_map(|prefix| {
                values.iter().map(move |value| {
                    let mut key = prefix.clone();
                    key.push(value.clone());
                    key
                })
            })
            .collect();
    }
    Some(keys)
}

fn project(
    server: &Server,
    session: &Session,
    relation: Relation,
    select: &Select,
) -> SqlResult<Outcome> {
    let mut items = Vec::new();
    for item in &select.items {
        match item {
            SelectItem::Star => {
                for (index, column) in relation.columns.iter().enumerate() {
                    items.push(OutItem::Column {
                        index,
                        name: column.name.clone(),
                    });
                }
            }
            SelectItem::Expr { expr, name } => {
                items.push(match expr {
                    Expr::Column(column) => OutItem::Column {
                        index: column_index(&relation.columns, column)?,
                        name: name.clone(),
                    },
                    Expr::Func {
                        name: func,
                        args,
                        star,
                    } if func == "count" => OutItem::Count {
                        column: count_column(&relation.columns, args, *star)?,
                        name: name.clone(),
                    },
                    Expr::Func {
                        name: func, args, ..
                    } if func == "sum" => match args.as_slice() {
                        [Expr::Column(column)] => OutItem::Sum {
                            column: column_index(&relation.columns, column)?,
                            name: name.clone(),
                        },
                        _ => return Err(SqlError::unsupported("this SUM argument")),
                    },
                    other => {
                        let (value, kind) = eval_const(server, session, other)?;
                        OutItem::Const {
                            value,
                            kind,
                            name: name.clone(),
                        }
                    }
                });
            }
        }
    }
    if !select.query.group_by.is_empty() {
        return grouped(relation, &items, &select.query);
    }
    let aggregate = items
        .iter()
        .any(|i| matches!(i, OutItem::Count { .. } | OutItem::Sum { .. }));
    if aggregate {
        if items.iter().any(|i| matches!(i, OutItem::Column { .. })) {
            return Err(SqlError::analysis(
                "select list expression not produced by aggregation output (missing from GROUP BY clause?)",
            ));
        }
        let row: Vec<Option<String>> = items
            .iter()
            .map(|item| match item {
                OutItem::Count { column: None, .. } => Some(relation.rows.len().to_string()),
                OutItem::Count {
                    column: Some(index),
                    ..
                } => Some(
                    relation
                        .rows
                        .iter()
                        .filter(|r| r.get(*index).is_some_and(|v| !v.is_null()))
                        .count()
                        .to_string(),
                ),
                OutItem::Sum { column, .. } => sum(&relation.rows, *column),
                OutItem::Const { value, .. } => value.clone(),
                OutItem::Column { .. } => None,
            })
            .collect();
        return Ok(Outcome::Rows {
            columns: out_columns(&items, &relation.columns),
            rows: relation::limit(vec![row], &select.query),
        });
    }
    let keys = order_keys(&select.query, &items, &relation.columns)?;
    let mut rows = relation.rows;
    relation::sort(&mut rows, &keys);
    let rows = relation::limit(rows, &select.query);
    let rows = rows
        .iter()
        .map(|row| {
            items
                .iter()
                .map(|item| match item {
                    OutItem::Column { index, .. } => row.get(*index).and_then(Value::to_text),
                    OutItem::Const { value, .. } => value.clone(),
                    OutItem::Count { .. } | OutItem::Sum { .. } => None,
                })
                .collect()
        })
        .collect();
    Ok(Outcome::Rows {
        columns: out_columns(&items, &relation.columns),
        rows,
    })
}

/// `SELECT cols, aggregates ... GROUP BY cols`: one row per distinct group key, in ascending key
/// order (ORDER BY with GROUP BY is not modelled); `LIMIT` applies to the groups.
fn grouped(relation: Relation, items: &[OutItem], query: &Query) -> SqlResult<Outcome> {
    if !query.order.is_empty() {
        return Err(SqlError::unsupported("ORDER BY with GROUP BY"));
    }
    let keys = query
        .group_by
        .iter()
        .map(|name| column_index(&relation.columns, name))
        .collect::<SqlResult<Vec<usize>>>()?;
    for item in items {
        if let OutItem::Column { index, .. } = item {
            if !keys.contains(index) {
                return Err(SqlError::analysis(
                    "select list expression not produced by aggregation output (missing from GROUP BY clause?)",
                ));
            }
        }
    }
    let mut rows = relation.rows;
    relation::sort(
        &mut rows,
        &keys.iter().map(|k| (*k, false)).collect::<Vec<_>>(),
    );
    let same = |a: &Vec<Value>, b: &Vec<Value>| keys.iter().all(|k| a.get(*k) == b.get(*k));
    let mut out = Vec::new();
    for group in rows.chunk_by(same) {
        out.push(
            items
                .iter()
                .map(|item| match item {
                    OutItem::Column { index, .. } => group[0].get(*index).and_then(Value::to_text),
                    OutItem::Count { column: None, .. } => Some(group.len().to_string()),
                    OutItem::Count {
                        column: Some(index),
                        ..
                    } => Some(
                        group
                            .iter()
                            .filter(|r| r.get(*index).is_some_and(|v| !v.is_null()))
                            .count()
                            .to_string(),
                    ),
                    OutItem::Sum { column, .. } => sum(group, *column),
                    OutItem::Const { value, .. } => value.clone(),
                })
                .collect(),
        );
    }
    Ok(Outcome::Rows {
        columns: out_columns(items, &relation.columns),
        rows: relation::limit(out, query),
    })
}

/// `SUM` of one column as text: integers exactly (i128), DECIMALs exactly at the largest scale,
/// floats as f64; NULLs skipped, NULL when there is no value (or on i128 overflow).
fn sum(rows: &[Vec<Value>], column: usize) -> Option<String> {
    let mut ints: Option<i128> = None;
    let mut decimal: Option<(i128, u8)> = None;
    let mut float: Option<f64> = None;
    for value in rows.iter().filter_map(|r| r.get(column)) {
        match value {
            Value::Int(i) => ints = Some(ints.unwrap_or(0).checked_add(*i)?),
            Value::Decimal(d) => {
                let (sum, scale) = decimal.unwrap_or((0, d.scale));
                let scale_to = scale.max(d.scale);
                let up = |v: i128, from: u8| {
                    v.checked_mul(10i128.checked_pow(u32::from(scale_to - from))?)
                };
                decimal = Some((
                    up(sum, scale)?.checked_add(up(d.unscaled, d.scale)?)?,
                    scale_to,
                ));
            }
            Value::Float(f) => float = Some(float.unwrap_or(0.0) + f),
            Value::Bool(b) => ints = Some(ints.unwrap_or(0) + i128::from(*b)),
            _ => {}
        }
    }
    if let Some((unscaled, scale)) = decimal {
        return Some(crate::catalog::Decimal { unscaled, scale }.to_string());
    }
    if let Some(f) = float {
        return Value::Float(f + ints.map_or(0.0, |i| i as f64)).to_text();
    }
    ints.map(|i| i.to_string())
}

fn count_column(columns: &[RelColumn], args: &[Expr], star: bool) -> SqlResult<Option<usize>> {
    if star {
        return Ok(None);
    }
    match args {
        [Expr::Literal(Literal::Null)] => Err(SqlError::unsupported("COUNT(NULL)")),
        [Expr::Literal(_)] => Ok(None),
        [Expr::Column(name)] => column_index(columns, name).map(Some),
        _ => Err(SqlError::unsupported("this COUNT argument")),
    }
}

fn out_columns(items: &[OutItem], columns: &[RelColumn]) -> Vec<(String, Kind)> {
    items
        .iter()
        .map(|item| match item {
            OutItem::Column { index, name } => (
                name.clone(),
                columns.get(*index).map_or(Kind::Str, |c| c.kind.clone()),
            ),
            OutItem::Const { kind, name, .. } => (name.clone(), kind.clone()),
            OutItem::Count { name, .. } => (name.clone(), Kind::Int),
            OutItem::Sum { column, name } => (
                name.clone(),
                match columns.get(*column).map(|c| &c.kind) {
                    Some(Kind::Typed(
                        ColumnType::Boolean
                        | ColumnType::TinyInt
                        | ColumnType::SmallInt
                        | ColumnType::Int
                        | ColumnType::BigInt
                        | ColumnType::LargeInt,
                    )) => Kind::Int,
                    _ => Kind::Str,
                },
            ),
        })
        .collect()
}

fn order_keys(
    query: &Query,
    items: &[OutItem],
    columns: &[RelColumn],
) -> SqlResult<Vec<(usize, bool)>> {
    let mut keys = Vec::new();
    for order in &query.order {
        let index = match &order.key {
            OrderKey::Position(p) => match p.checked_sub(1).and_then(|i| items.get(i)) {
                Some(OutItem::Column { index, .. }) => Some(*index),
                Some(_) => None,
                None => {
                    return Err(SqlError::analysis(format!(
                        "ORDER BY position {p} is not in select list"
                    )))
                }
            },
            OrderKey::Column(name) => {
                let alias = items.iter().find_map(|item| match item {
                    OutItem::Column { index, name: n } if n.eq_ignore_ascii_case(name) => {
                        Some(Some(*index))
                    }
                    OutItem::Const { name: n, .. } if n.eq_ignore_ascii_case(name) => Some(None),
                    _ => None,
                });
                match alias {
                    Some(index) => index,
                    None => Some(column_index(columns, name)?),
                }
            }
        };
        if let Some(index) = index {
            keys.push((index, order.desc));
        }
    }
    Ok(keys)
}

fn constant_select(server: &Server, session: &Session, select: &Select) -> SqlResult<Outcome> {
    if !select.query.filter.is_empty() {
        return Err(SqlError::unsupported("WHERE without FROM"));
    }
    let mut columns = Vec::new();
    let mut row = Vec::new();
    for item in &select.items {
        match item {
            SelectItem::Star => {
                return Err(SqlError::new(1096, "HY000", "No tables used"));
            }
            SelectItem::Expr { expr, name } => {
                let (value, kind) = match expr {
                    Expr::Func { name: func, .. } if func == "count" => {
                        (Some("1".to_string()), Kind::Int)
                    }
                    Expr::Column(column) => return Err(SqlError::unknown_column(column)),
                    other => eval_const(server, session, other)?,
                };
                columns.push((name.clone(), kind));
                row.push(value);
            }
        }
    }
    for order in &select.query.order {
        if let OrderKey::Position(p) = order.key {
            if p == 0 || p > columns.len() {
                return Err(SqlError::analysis(format!(
                    "ORDER BY position {p} is not in select list"
                )));
            }
        }
    }
    Ok(Outcome::Rows {
        columns,
        rows: relation::limit(vec![row], &select.query),
    })
}

/// Evaluates a constant expression (no column references).
fn eval_const(
    server: &Server,
    session: &Session,
    expr: &Expr,
) -> SqlResult<(Option<String>, Kind)> {
    Ok(match expr {
        Expr::Literal(Literal::Null) => (None, Kind::Str),
        Expr::Literal(Literal::Num(n)) => (
            Some(n.clone()),
            if n.parse::<i64>().is_ok() {
                Kind::Int
            } else {
                Kind::Str
            },
        ),
        Expr::Literal(Literal::Str(s)) => (Some(s.clone()), Kind::Str),
        Expr::Literal(Literal::Bool(b)) => {
            (Some(if *b { "1" } else { "0" }.to_string()), Kind::Int)
        }
        Expr::SysVar(name) => system_variable(server, name).ok_or_else(|| {
            SqlError::new(1193, "HY000", format!("Unknown system variable '{name}'"))
        })?,
        Expr::UserVar(name) => (
            session
                .user_vars
                .get(&name.to_ascii_lowercase())
                .cloned()
                .flatten(),
            Kind::Str,
        ),
        Expr::Column(column) => return Err(SqlError::unknown_column(column)),
        Expr::Func { name, args, star } => {
            if *star || !args.is_empty() {
                return Err(no_function(name));
            }
            match name.as_str() {
                "current_version" => (Some(server.options.version.clone()), Kind::Str),
                "version" => (Some(SERVER_VERSION.to_string()), Kind::Str),
                "database" | "schema" => (session.db.clone(), Kind::Str),
                "user" | "session_user" | "system_user" => (
                    Some(format!("'{}'@'{}'", session.user, session.host)),
                    Kind::Str,
                ),
                "current_user" => (Some(format!("'{}'@'%'", session.user)), Kind::Str),
                "connection_id" => (Some(session.connection_id.to_string()), Kind::Int),
                "last_insert_id" => (Some("0".to_string()), Kind::Int),
                "now" | "current_timestamp" | "localtime" | "localtimestamp" | "sysdate" => {
                    (Some(now_text()), Kind::Str)
                }
                "curdate" | "current_date" => {
                    (Some(now_text().chars().take(10).collect()), Kind::Str)
                }
                _ => return Err(no_function(name)),
            }
        }
    })
}

fn no_function(name: &str) -> SqlError {
    SqlError::analysis(format!("No matching function with signature: {name}()"))
}

/// System variables the sim reports (`SELECT @@x`, `SHOW VARIABLES`); values follow a
/// single-FE StarRocks 3.3 with UTC as its time zone.
const SYSTEM_VARIABLES: [(&str, bool); 33] = [
    ("auto_increment_increment", true),
    ("autocommit", true),
    ("character_set_client", false),
    ("character_set_connection", false),
    ("character_set_database", false),
    ("character_set_results", false),
    ("character_set_server", false),
    ("collation_connection", false),
    ("collation_database", false),
    ("collation_server", false),
    ("init_connect", false),
    ("interactive_timeout", true),
    ("language", false),
    ("license", false),
    ("lower_case_table_names", true),
    ("max_allowed_packet", true),
    ("net_buffer_length", true),
    ("net_write_timeout", true),
    ("performance_schema", true),
    ("query_cache_size", true),
    ("query_cache_type", true),
    ("query_timeout", true),
    ("socket", false),
    ("sql_mode", false),
    ("system_time_zone", false),
    ("time_zone", false),
    ("transaction_isolation", false),
    ("transaction_read_only", true),
    ("tx_isolation", false),
    ("tx_read_only", true),
    ("version", false),
    ("version_comment", false),
    ("wait_timeout", true),
];

/// A system variable's value and kind; `None` when unknown. `@@socket` is NULL.
fn system_variable(server: &Server, name: &str) -> Option<(Option<String>, Kind)> {
    let name = name.to_ascii_lowercase();
    let value: Option<String> = match name.as_str() {
        "auto_increment_increment" | "autocommit" => Some("1".into()),
        "character_set_client"
        | "character_set_connection"
        | "character_set_database"
        | "character_set_results"
        | "character_set_server" => Some("utf8".into()),
        "collation_connection" | "collation_database" | "collation_server" => {
            Some("utf8_general_ci".into())
        }
        "init_connect" => Some(String::new()),
        "interactive_timeout" => Some("3600".into()),
        "language" => Some("/starrocks/share/english/".into()),
        "license" => Some("Apache License 2.0".into()),
        "lower_case_table_names" => Some("0".into()),
        "max_allowed_packet" => Some(super::protocol::MAX_ALLOWED_PACKET.to_string()),
        "net_buffer_length" => Some("16384".into()),
        "net_write_timeout" => Some("60".into()),
        "performance_schema" => Some("0".into()),
        "query_cache_size" => Some("1048576".into()),
        "query_cache_type" => Some("0".into()),
        "query_timeout" => Some("300".into()),
        "socket" => None,
        "sql_mode" => Some("ONLY_FULL_GROUP_BY".into()),
        "system_time_zone" | "time_zone" => Some("UTC".into()),
        "transaction_isolation" | "tx_isolation" => Some("REPEATABLE-READ".into()),
        "transaction_read_only" | "tx_read_only" => Some("0".into()),
        "version" => Some(SERVER_VERSION.into()),
        "version_comment" => Some(format!("StarRocks version {}", server.options.version)),
        "wait_timeout" => Some("28800".into()),
        _ => return None,
    };
    let numeric = SYSTEM_VARIABLES
        .iter()
        .any(|(n, numeric)| *n == name && *numeric);
    Some((value, if numeric { Kind::Int } else { Kind::Str }))
}

fn describe(server: &Server, session: &Session, name: &ObjectName) -> SqlResult<Outcome> {
    let db = db_of(session, name)?;
    let columns = vec![
        RelColumn::str("Field"),
        RelColumn::str("Type"),
        RelColumn::str("Null"),
        RelColumn::str("Key"),
        RelColumn::str("Default"),
        RelColumn::str("Extra"),
    ];
    let rows = if infoschema::is_info_schema(&db) {
        infoschema::view_columns(&name.name)
            .ok_or_else(|| SqlError::unknown_table(infoschema::NAME, &name.name))?
            .into_iter()
            .map(|c| {
                let ty = if c.kind == Kind::Int {
                    "bigint(20)"
                } else {
                    "varchar(512)"
                };
                vec![
                    text(c.name),
                    text(ty),
                    text("YES"),
                    text("false"),
                    Value::Null,
                    text(""),
                ]
            })
            .collect()
    } else {
        server.catalog.read(|c| -> SqlResult<Vec<Vec<Value>>> {
            let table = c.table(&db, &name.name)?;
            Ok(table
                .columns()
                .iter()
                .enumerate()
                .map(|(i, column)| {
                    vec![
                        text(&column.name),
                        text(column.column_type.column_type()),
                        text(if column.nullable { "YES" } else { "NO" }),
                        text(if table.is_key(i) { "true" } else { "false" }),
                        column.default.as_ref().map_or(Value::Null, text),
                        text(""),
                    ]
                })
                .collect())
        })?
    };
    Ok(Outcome::from_relation(Relation { columns, rows }))
}

fn backends(server: &Server) -> Relation {
    let shared = &server.catalog.shared;
    let be = shared.be_addr.get().copied();
    let ip = be.map_or_else(|| "127.0.0.1".to_string(), |a| a.ip().to_string());
    let http_port = be.map_or(8040, |a| a.port());
    let names = [
        "BackendId",
        "IP",
        "HeartbeatPort",
        "BePort",
        "HttpPort",
        "BrpcPort",
        "LastStartTime",
        "LastHeartbeat",
        "Alive",
        "SystemDecommissioned",
        "ClusterDecommissioned",
        "TabletNum",
        "ErrMsg",
        "Version",
    ];
    let row = vec![
        text("10001"),
        text(ip),
        text("9050"),
        text("9060"),
        text(http_port.to_string()),
        text("8060"),
        text(&server.started_at),
        text(now_text()),
        text("true"),
        text("false"),
        text("false"),
        text("0"),
        text(""),
        text(&server.options.version),
    ];
    Relation {
        columns: names.iter().map(|n| RelColumn::str(n)).collect(),
        rows: vec![row],
    }
}

fn frontends(server: &Server) -> Relation {
    let shared = &server.catalog.shared;
    let fe = shared.fe_addr.get().copied();
    let ip = fe
        .or(server.local_addr)
        .map_or_else(|| "127.0.0.1".to_string(), |a| a.ip().to_string());
    let http_port = fe.map_or(8030, |a| a.port());
    let query_port = server.local_addr.map_or(9030, |a| a.port());
    let names = [
        "Name",
        "IP",
        "EditLogPort",
        "HttpPort",
        "QueryPort",
        "RpcPort",
        "Role",
        "ClusterId",
        "Join",
        "Alive",
        "ReplayedJournalId",
        "LastHeartbeat",
        "IsHelper",
        "ErrMsg",
        "StartTime",
        "Version",
    ];
    let row = vec![
        text(format!("{ip}_9010_sim")),
        text(&ip),
        text("9010"),
        text(http_port.to_string()),
        text(query_port.to_string()),
        text("9020"),
        text("LEADER"),
        text("1"),
        text("true"),
        text("true"),
        text("1"),
        text(now_text()),
        text("true"),
        text(""),
        text(&server.started_at),
        text(&server.options.version),
    ];
    Relation {
        columns: names.iter().map(|n| RelColumn::str(n)).collect(),
        rows: vec![row],
    }
}

#[cfg(test)]
mod sum_tests {
    use super::*;
    use crate::catalog::Decimal;

    #[test]
    fn sum_is_exact_for_integers_and_decimals_and_skips_nulls() {
        let rows = |vals: Vec<Value>| vals.into_iter().map(|v| vec![v]).collect::<Vec<_>>();
        assert_eq!(
            sum(
                &rows(vec![
                    Value::Int(i128::from(i64::MAX)),
                    Value::Int(1),
                    Value::Null
                ]),
                0
            ),
            Some("9223372036854775808".to_string())
        );
        let d = |unscaled, scale| Value::Decimal(Decimal { unscaled, scale });
        assert_eq!(
            sum(&rows(vec![d(125, 1), d(-3, 2)]), 0),
            Some("12.47".to_string())
        );
        assert_eq!(sum(&rows(vec![Value::Null]), 0), None);
        assert_eq!(
            sum(&rows(vec![Value::Int(i128::MAX), Value::Int(1)]), 0),
            None
        );
    }
}
