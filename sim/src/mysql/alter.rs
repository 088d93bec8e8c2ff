//! `ALTER TABLE ... ADD/DROP COLUMN` as asynchronous schema-change jobs, and the job history
//! `SHOW ALTER TABLE COLUMN` reads (reference §7 "Schema evolution").
//!
//! Owns the job lifecycle: a statement is validated against the current schema at once (so a
//! duplicate column or a key-column drop fails the statement), then registered PENDING and the
//! statement returns OK; after a third of the configured delay the job is RUNNING, and at the end
//! of the delay its changes are applied to the table in one catalog write and the job is FINISHED
//! (or CANCELLED with a message if the table went away or changed meanwhile). Only one unfinished
//! job per table: a second ALTER fails with StarRocks' "Do not allow doing ALTER ops". `CANCEL
//! ALTER TABLE COLUMN` cancels an unfinished job. Lock order is always job book, then catalog.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::catalog::{CatalogError, ColumnDef, ColumnPosition, Table};

use super::error::{SqlError, SqlResult};
use super::relation::{int, text, RelColumn, Relation};
use super::{now_text, Server};

/// StarRocks' default `alter_table_timeout_second`.
const DEFAULT_TIMEOUT_SECONDS: u64 = 86_400;

/// A job's state as `SHOW ALTER TABLE COLUMN` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobState {
    Pending,
    Running,
    Finished,
    Cancelled,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Finished => "FINISHED",
            JobState::Cancelled => "CANCELLED",
        }
    }

    fn is_done(self) -> bool {
        matches!(self, JobState::Finished | JobState::Cancelled)
    }
}

/// One column change of a job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ColumnChange {
    Add {
        column: ColumnDef,
        position: ColumnPosition,
    },
    Drop(String),
    Modify(ColumnDef),
}

#[derive(Debug, Clone)]
struct Job {
    id: i64,
    db: String,
    table: String,
    table_id: u64,
    changes: Vec<ColumnChange>,
    create_time: String,
    finish_time: Option<String>,
    state: JobState,
    msg: String,
    transaction_id: i64,
    schema_version: u64,
    timeout: u64,
}

#[derive(Debug)]
struct Book {
    next_id: i64,
    jobs: Vec<Job>,
}

/// Every ALTER job this server ran, oldest first.
#[derive(Debug)]
pub(crate) struct AlterJobs {
    book: Mutex<Book>,
}

impl Default for AlterJobs {
    fn default() -> AlterJobs {
        AlterJobs {
            book: Mutex::new(Book {
                next_id: 20_001,
                jobs: Vec::new(),
            }),
        }
    }
}

impl AlterJobs {
    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Validates and registers a job; applies it at once when the delay is zero, else schedules it.
pub(crate) fn submit(
    server: &Arc<Server>,
    db: &str,
    table: &str,
    changes: Vec<ColumnChange>,
    timeout: Option<u64>,
) -> SqlResult<()> {
    let id = {
        let mut book = server.jobs.lock();
        let table_id = server.catalog.read(|c| -> SqlResult<u64> {
            let t = c.table(db, table)?;
            if book
                .jobs
                .iter()
                .any(|j| !j.state.is_done() && j.db == db && j.table == table)
            {
                return Err(SqlError::ddl(format!(
                    "Table[{table}]'s state(SCHEMA_CHANGE) is not NORMAL. Do not allow doing ALTER ops"
                )));
            }
            let mut probe = Table::new(t.id(), t.spec().clone())?;
            apply_changes(&mut probe, &changes)?;
            Ok(t.id())
        })?;
        let id = book.next_id;
        book.next_id += 1;
        let schema_version = 1 + book
            .jobs
            .iter()
            .filter(|j| j.table_id == table_id && j.state == JobState::Finished)
            .count() as u64;
        book.jobs.push(Job {
            id,
            db: db.to_string(),
            table: table.to_string(),
            table_id,
            changes,
            create_time: now_text(),
            finish_time: None,
            state: JobState::Pending,
            msg: String::new(),
            transaction_id: id + 1_000,
            schema_version,
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
        });
        id
    };
    let delay = server.options.alter_delay;
    if delay.is_zero() {
        finish(server, id);
        return Ok(());
    }
    let server = Arc::clone(server);
    tokio::spawn(async move {
        let running_at = delay / 3;
        tokio::time::sleep(running_at).await;
        {
            let mut book = server.jobs.lock();
            if let Some(job) = book.jobs.iter_mut().find(|j| j.id == id) {
                if job.state == JobState::Pending {
                    job.state = JobState::Running;
                }
            }
        }
        tokio::time::sleep(delay.saturating_sub(running_at)).await;
        finish(&server, id);
    });
    Ok(())
}

/// Applies an unfinished job's changes and marks it FINISHED, or CANCELLED with the reason.
fn finish(server: &Server, id: i64) {
    let mut book = server.jobs.lock();
    let Some(job) = book.jobs.iter_mut().find(|j| j.id == id) else {
        return;
    };
    if job.state.is_done() {
        return;
    }
    let result = server.catalog.write(|c| -> SqlResult<()> {
        let table = c.table_mut(&job.db, &job.table)?;
        if table.id() != job.table_id {
            return Err(SqlError::ddl(format!(
                "table {} was dropped and re-created during the schema change",
                job.table
            )));
        }
        // All-or-nothing: check on a row-less copy first.
        let mut probe = Table::new(table.id(), table.spec().clone())?;
        apply_changes(&mut probe, &job.changes)?;
        apply_changes(table, &job.changes)
    });
    job.finish_time = Some(now_text());
    match result {
        Ok(()) => job.state = JobState::Finished,
        Err(e) => {
            job.state = JobState::Cancelled;
            job.msg = e.message;
        }
    }
}

/// `CANCEL ALTER TABLE COLUMN FROM db.t`.
pub(crate) fn cancel(server: &Server, db: &str, table: &str) -> SqlResult<()> {
    let mut book = server.jobs.lock();
    server.catalog.read(|c| c.table(db, table).map(|_| ()))?;
    match book
        .jobs
        .iter_mut()
        .find(|j| !j.state.is_done() && j.db == db && j.table == table)
    {
        Some(job) => {
            job.state = JobState::Cancelled;
            job.msg = "user cancelled".to_string();
            job.finish_time = Some(now_text());
            Ok(())
        }
        None => Err(SqlError::ddl(format!(
            "Table[{table}] is under NORMAL state. Do not allow cancel ALTER ops"
        ))),
    }
}

/// Applies changes in order with StarRocks' schema-change messages.
fn apply_changes(table: &mut Table, changes: &[ColumnChange]) -> SqlResult<()> {
    for change in changes {
        match change {
            ColumnChange::Add { column, position } => {
                table
                    .add_column(column.clone(), position.clone())
                    .map_err(|e| match e {
                        CatalogError::DuplicateColumn { column, .. } => SqlError::ddl(format!(
                            "Can not add column which already exists in base table: {column}"
                        )),
                        CatalogError::UnknownColumn { column, .. } => {
                            SqlError::ddl(format!("Column[{column}] does not exist"))
                        }
                        CatalogError::InvalidTable { reason, .. } => SqlError::ddl(reason),
                        other => SqlError::from(other),
                    })?;
            }
            ColumnChange::Modify(column) => {
                table.modify_column(column.clone()).map_err(|e| match e {
                    CatalogError::UnknownColumn { column, .. } => {
                        SqlError::ddl(format!("Column[{column}] does not exist"))
                    }
                    other => SqlError::from(other),
                })?
            }
            ColumnChange::Drop(name) => table.drop_column(name).map_err(|e| match e {
                CatalogError::UnknownColumn { column, .. } => {
                    SqlError::ddl(format!("Column does not exists: {column}"))
                }
                other => SqlError::from(other),
            })?,
        }
    }
    Ok(())
}

/// The `SHOW ALTER TABLE COLUMN` rows of one database.
pub(crate) fn relation(server: &Server, db: &str) -> Relation {
    let columns = vec![
        RelColumn::int("JobId"),
        RelColumn::str("TableName"),
        RelColumn::str("CreateTime"),
        RelColumn::str("FinishTime"),
        RelColumn::str("IndexName"),
        RelColumn::int("IndexId"),
        RelColumn::int("OriginIndexId"),
        RelColumn::str("SchemaVersion"),
        RelColumn::int("TransactionId"),
        RelColumn::str("State"),
        RelColumn::str("Msg"),
        RelColumn::str("Progress"),
        RelColumn::int("Timeout"),
    ];
    let book = server.jobs.lock();
    let rows = book
        .jobs
        .iter()
        .filter(|j| j.db == db)
        .map(|j| {
            vec![
                int(j.id),
                text(&j.table),
                text(&j.create_time),
                j.finish_time
                    .as_ref()
                    .map_or(crate::catalog::Value::Null, text),
                text(&j.table),
                int(j.id + 1),
                int(i128::from(j.table_id) + 1),
                text(format!("{}:0", j.schema_version)),
                int(j.transaction_id),
                text(j.state.as_str()),
                text(&j.msg),
                crate::catalog::Value::Null,
                int(j.timeout),
            ]
        })
        .collect();
    Relation { columns, rows }
}
