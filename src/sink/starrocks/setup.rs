//! Target-side setup over StarRocks' MySQL protocol (FE :9030): connectivity and version, the
//! database (created when `STARWAL_CREATE_TABLES=true`), each target table created from the
//! source schema or validated — primary key equal to the source key, types compatible, every
//! mismatch reported at once — and missing source and audit columns added, waiting for the ALTER
//! job to finish. A column added to a table that has rows carries what those rows hold at the
//! source as its `DEFAULT` ([`NewColumn`]): StarRocks fills existing rows with a new column's
//! default, and [`default_literal`] writes it under the same value conventions as the loads
//! (invariant 12); whoever knows the source (`engine/setup`, the pipeline's schema cache)
//! decides which value that is. Only the text protocol is used (no prepared statements), like
//! StarRocks' own tools.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row};

use super::config::StarRocksConfig;
use super::encoding::{write_value, ValueTarget};
use super::mapping::{quote, target_table, MappingError, TargetColumn, TargetTable, TargetType};
use crate::postgres::catalog::ExistingValues;
use crate::postgres::value::decode;
use crate::schema::{ColumnSchema, TableSchema};

/// How long to wait for one `ALTER TABLE ... ADD COLUMN` job. With fast schema evolution it
/// takes seconds; without, a large table may take minutes.
pub const ALTER_JOB_TIMEOUT: Duration = Duration::from_secs(600);
/// Pause between two looks at the ALTER job.
const ALTER_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A mismatch between a target table and what starwal needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetProblem {
    /// The key columns differ from the source key.
    Key {
        table: String,
        expected: Vec<String>,
        found: Vec<String>,
    },
    /// A column's type cannot hold the source column's values.
    Type {
        table: String,
        column: String,
        expected: String,
        found: String,
    },
    /// The table does not exist and `STARWAL_CREATE_TABLES=false`.
    Missing { table: String },
    /// A source column cannot be mapped.
    Mapping(MappingError),
    /// Two source tables map to the same target name (`a_b.c` and `a.b_c`, say).
    DuplicateName { table: String, sources: Vec<String> },
}

impl std::fmt::Display for TargetProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetProblem::Key { table, expected, found } => write!(
                f,
                "table `{table}` has primary key ({}), the source key is ({})",
                found.join(", "),
                expected.join(", ")
            ),
            TargetProblem::Type { table, column, expected, found } => write!(
                f,
                "column `{column}` of `{table}` is {found}, starwal needs {expected} (or a wider type)"
            ),
            TargetProblem::Missing { table } => write!(
                f,
                "table `{table}` does not exist and STARWAL_CREATE_TABLES=false"
            ),
            TargetProblem::Mapping(err) => err.fmt(f),
            TargetProblem::DuplicateName { table, sources } => write!(
                f,
                "source tables {} would all load into `{table}`: replicate them with separate agents or databases",
                sources.join(", ")
            ),
        }
    }
}

/// Target setup failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetSetupError {
    #[error(
        "cannot connect to StarRocks' MySQL protocol at {addr} (STARWAL_STARROCKS_MYSQL): {}",
        crate::error_text::chain(.source)
    )]
    Connect {
        addr: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("StarRocks: {what}: {}", crate::error_text::chain(.source))]
    Query {
        what: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("database `{0}` does not exist and STARWAL_CREATE_TABLES=false")]
    MissingDatabase(String),
    #[error("{} target table problem(s):\n  - {}", .0.len(), .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  - "))]
    Tables(Vec<TargetProblem>),
    #[error("ALTER TABLE on `{table}` ended {state}: {message}")]
    AlterFailed {
        table: String,
        state: String,
        message: String,
    },
    #[error("ALTER TABLE on `{table}` did not finish within {} s", .timeout.as_secs())]
    AlterTimeout { table: String, timeout: Duration },
}

impl TargetSetupError {
    /// Whether retrying setup unchanged may succeed (StarRocks unreachable or busy).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TargetSetupError::Connect { .. } | TargetSetupError::AlterTimeout { .. }
        ) || matches!(self, TargetSetupError::Query { source, .. } if matches!(source, mysql_async::Error::Io(_)))
    }
}

/// What target setup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetReport {
    pub version: String,
    pub database_created: bool,
    pub tables_created: Vec<String>,
    /// `(table, column)` pairs added.
    pub columns_added: Vec<(String, String)>,
    /// Tables without fast schema evolution (adding columns rewrites data there).
    pub slow_schema_change: Vec<String>,
}

/// A column to add to an existing target table, with the value its existing rows get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewColumn {
    pub column: TargetColumn,
    /// The `DEFAULT` text (StarRocks' form, from [`default_literal`]): StarRocks gives it to
    /// every row the table already has. `None`: they hold NULL.
    pub default: Option<String>,
}

impl NewColumn {
    /// A column whose existing rows hold NULL.
    pub fn null(column: TargetColumn) -> NewColumn {
        NewColumn {
            column,
            default: None,
        }
    }
}

/// What a target column's `DEFAULT` must say so that StarRocks stores a source value exactly as
/// a load of it would (see [`default_literal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultLiteral {
    /// A load would store NULL: no default.
    Null,
    /// The `DEFAULT` text.
    Text(String),
    /// A default cannot carry it: JSON and ARRAY columns (StarRocks has no defaults for them),
    /// or text the source type does not decode.
    Unrepresentable,
}

/// The default that makes StarRocks store `text` (a value of the source `column`, as its type's
/// output text) in a `target` column exactly as a load would: the value the loads' encoder
/// writes, read back from its JSON form into StarRocks' literal form.
pub fn default_literal(column: &ColumnSchema, target: &TargetType, text: &str) -> DefaultLiteral {
    if matches!(target, TargetType::Json | TargetType::Array(_)) {
        return DefaultLiteral::Unrepresentable;
    }
    let Ok(value) = decode(column.type_oid, text.as_bytes()) else {
        return DefaultLiteral::Unrepresentable;
    };
    let mut json = Vec::new();
    // A value the column cannot hold (invariant 12) has no default either: only a copy can.
    if write_value(&value, &ValueTarget::checked(target.clone()), &mut json).is_err() {
        return DefaultLiteral::Unrepresentable;
    }
    let Ok(json) = std::str::from_utf8(&json) else {
        return DefaultLiteral::Unrepresentable;
    };
    match json {
        "null" => DefaultLiteral::Null,
        // BOOLEAN: StarRocks' own spelling of its values.
        "true" => DefaultLiteral::Text("1".to_owned()),
        "false" => DefaultLiteral::Text("0".to_owned()),
        quoted if quoted.starts_with('"') => match serde_json::from_str::<String>(quoted) {
            Ok(text) => DefaultLiteral::Text(text),
            Err(_) => DefaultLiteral::Unrepresentable,
        },
        number if number.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
            DefaultLiteral::Text(number.to_owned())
        }
        _ => DefaultLiteral::Unrepresentable,
    }
}

impl NewColumn {
    /// `column` added to a table whose rows hold `existing` in it (the source column's values
    /// per `postgres::catalog::existing_values`; `None` with no source column, as for audit
    /// columns: NULL). `None` when no default gives those rows their value: only a copy can.
    pub fn for_existing_rows(
        column: TargetColumn,
        source: Option<(&ColumnSchema, &ExistingValues)>,
    ) -> Option<NewColumn> {
        let default = match source {
            None | Some((_, ExistingValues::Null)) => None,
            Some((source, ExistingValues::Constant(text))) => {
                match default_literal(source, &column.data_type, text) {
                    DefaultLiteral::Null => None,
                    DefaultLiteral::Text(text) => Some(text),
                    DefaultLiteral::Unrepresentable => return None,
                }
            }
            Some((_, ExistingValues::Unknown)) => return None,
        };
        Some(NewColumn { column, default })
    }
}

/// `"text"` as a StarRocks string literal (backslash escapes, like MySQL).
fn string_literal(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// What setup would do to one target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePlan {
    pub target: TargetTable,
    /// The table exists (else it will be created).
    pub exists: bool,
    /// Columns to add to an existing table (new source columns, audit columns).
    pub missing_columns: Vec<TargetColumn>,
}

/// What setup would do, found without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPlan {
    pub version: String,
    pub create_database: bool,
    pub tables: Vec<TablePlan>,
}

/// One column as `information_schema.COLUMNS` reports it.
#[derive(Debug, Clone)]
struct ExistingColumn {
    name: String,
    data_type: String,
    /// `COLUMN_TYPE`, with parameters: `varchar(64)`, `decimal64(18, 4)`.
    column_type: String,
    is_key: bool,
}

/// The numbers inside `COLUMN_TYPE`'s parentheses: `decimal64(18, 4)` → [18, 4].
fn type_parameters(column_type: &str) -> Vec<u32> {
    column_type
        .split_once('(')
        .map(|(_, rest)| rest.trim_end_matches(')'))
        .unwrap_or("")
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// Whether the existing column's size can hold every value of `wanted`: a DECIMAL with at
/// least as many integer and fractional digits, a VARCHAR at least as long. Unknown sizes pass.
fn wide_enough(wanted: &TargetType, existing: &ExistingColumn) -> bool {
    let params = type_parameters(&existing.column_type);
    match (
        wanted,
        existing.data_type.to_ascii_lowercase().as_str(),
        params.as_slice(),
    ) {
        (TargetType::Decimal { precision, scale }, _, [p, s]) => {
            *s >= *scale && p.saturating_sub(*s) >= precision - scale
        }
        (TargetType::Varchar(length), "varchar" | "char", [n]) => *n >= *length,
        _ => true,
    }
}

/// The StarRocks `DATA_TYPE`s that can hold values of `wanted`.
fn compatible(wanted: &TargetType, found: &str) -> bool {
    let found = found.to_ascii_lowercase();
    let accepted: &[&str] = match wanted {
        TargetType::Boolean => &["tinyint", "boolean"],
        TargetType::SmallInt => &["smallint", "int", "bigint", "largeint"],
        TargetType::Int => &["int", "bigint", "largeint"],
        TargetType::BigInt => &["bigint", "largeint"],
        TargetType::Float => &["float", "double"],
        TargetType::Double => &["double"],
        TargetType::Decimal { .. } => &[
            "decimal",
            "decimal32",
            "decimal64",
            "decimal128",
            "decimalv2",
        ],
        TargetType::Date => &["date", "datetime"],
        TargetType::DateTime => &["datetime"],
        TargetType::Varchar(_) => &["varchar", "char", "string"],
        TargetType::Json => &["json"],
        TargetType::Array(_) => &["array"],
    };
    accepted.contains(&found.as_str())
}

fn escape_literal(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

/// A connection to the FE's MySQL protocol for setup.
#[derive(Debug)]
pub struct TargetSetup {
    conn: Conn,
    config: StarRocksConfig,
}

impl TargetSetup {
    /// Connects with `STARWAL_STARROCKS_USER`/`_PASSWORD`.
    pub async fn connect(config: &StarRocksConfig) -> Result<TargetSetup, TargetSetupError> {
        let connect_error = |source| TargetSetupError::Connect {
            addr: config.mysql_addr.clone(),
            source,
        };
        let (host, port) = config
            .mysql_addr
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .unwrap_or((config.mysql_addr.as_str(), 9030));
        let opts = OptsBuilder::default()
            .ip_or_hostname(host)
            .tcp_port(port)
            .user(Some(config.user.clone()))
            .pass(Some(config.password.expose().to_owned()))
            .prefer_socket(false);
        let conn = tokio::time::timeout(config.connect_timeout, Conn::new(opts))
            .await
            .map_err(|_| {
                connect_error(mysql_async::Error::Io(mysql_async::IoError::Io(
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
                )))
            })?
            .map_err(connect_error)?;
        Ok(TargetSetup {
            conn,
            config: config.clone(),
        })
    }

    async fn rows(&mut self, what: &str, sql: &str) -> Result<Vec<Row>, TargetSetupError> {
        self.conn
            .query::<Row, _>(sql)
            .await
            .map_err(|source| TargetSetupError::Query {
                what: what.to_owned(),
                source,
            })
    }

    async fn execute(&mut self, what: &str, sql: &str) -> Result<(), TargetSetupError> {
        self.conn
            .query_drop(sql)
            .await
            .map_err(|source| TargetSetupError::Query {
                what: what.to_owned(),
                source,
            })
    }

    /// `TRUNCATE TABLE` (the source truncated the table).
    pub async fn truncate(&mut self, table: &str) -> Result<(), TargetSetupError> {
        self.execute(
            &format!("truncating `{table}`"),
            &format!(
                "TRUNCATE TABLE {}.{}",
                quote(&self.config.database),
                quote(table)
            ),
        )
        .await
    }

    /// `select current_version()`.
    pub async fn version(&mut self) -> Result<String, TargetSetupError> {
        let rows = self
            .rows("reading the version", "select current_version()")
            .await?;
        Ok(rows
            .first()
            .and_then(|row| row.get::<Option<String>, _>(0).flatten())
            .unwrap_or_default())
    }

    /// How many rows target `table` holds (`SELECT COUNT(*)`): `check` says when a copy would
    /// empty a table that has some.
    pub async fn row_count(&mut self, table: &str) -> Result<u64, TargetSetupError> {
        let rows = self
            .rows(
                &format!("counting the rows of `{table}`"),
                &format!(
                    "SELECT COUNT(*) FROM {}.{}",
                    quote(&self.config.database),
                    quote(table)
                ),
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|row| row.get::<Option<u64>, _>(0).flatten())
            .unwrap_or(0))
    }

    async fn existing_columns(
        &mut self,
        table: &str,
    ) -> Result<Vec<ExistingColumn>, TargetSetupError> {
        let sql = format!(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_KEY, COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = '{}' ORDER BY ORDINAL_POSITION",
            escape_literal(&self.config.database),
            escape_literal(table)
        );
        let rows = self.rows("reading table columns", &sql).await?;
        Ok(rows
            .iter()
            .map(|row| ExistingColumn {
                name: row
                    .get::<Option<String>, _>(0)
                    .flatten()
                    .unwrap_or_default(),
                data_type: row
                    .get::<Option<String>, _>(1)
                    .flatten()
                    .unwrap_or_default(),
                is_key: row.get::<Option<String>, _>(2).flatten().as_deref() == Some("PRI"),
                column_type: row
                    .get::<Option<String>, _>(3)
                    .flatten()
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// What setup would do, without changing anything: the checks of the module docs, every
    /// problem at once as [`TargetSetupError::Tables`]. `starwal check` stops here.
    pub async fn plan(&mut self, sources: &[TableSchema]) -> Result<TargetPlan, TargetSetupError> {
        let version = self.version().await?;
        let database = self.config.database.clone();
        let database_exists = !self
            .rows(
                "looking up the database",
                &format!(
                    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{}'",
                    escape_literal(&database)
                ),
            )
            .await?
            .is_empty();
        if !database_exists && !self.config.create_tables {
            return Err(TargetSetupError::MissingDatabase(database));
        }

        let mut problems = Vec::new();
        let mut by_name: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for source in sources {
            by_name
                .entry(super::mapping::target_table_name(
                    &source.schema,
                    &source.name,
                ))
                .or_default()
                .push(source.to_string());
        }
        for (table, sources) in by_name.into_iter().filter(|(_, s)| s.len() > 1) {
            problems.push(TargetProblem::DuplicateName { table, sources });
        }
        let mut tables = Vec::new();
        for source in sources {
            let target = match target_table(source, self.config.type_mapping) {
                Ok(target) => target,
                Err(err) => {
                    problems.push(TargetProblem::Mapping(err));
                    continue;
                }
            };
            let existing = self.existing_columns(&target.name).await?;
            if existing.is_empty() && !self.config.create_tables {
                problems.push(TargetProblem::Missing {
                    table: target.name.clone(),
                });
                continue;
            }
            if !existing.is_empty() {
                problems.extend(validate(&target, &existing));
            }
            let missing_columns = if existing.is_empty() {
                Vec::new()
            } else {
                target
                    .columns
                    .iter()
                    .filter(|c| {
                        !existing
                            .iter()
                            .any(|e| e.name.eq_ignore_ascii_case(&c.name))
                    })
                    .cloned()
                    .collect()
            };
            tables.push(TablePlan {
                exists: !existing.is_empty(),
                target,
                missing_columns,
            });
        }
        if !problems.is_empty() {
            return Err(TargetSetupError::Tables(problems));
        }
        Ok(TargetPlan {
            version,
            create_database: !database_exists,
            tables,
        })
    }

    /// Makes the database and every target table ready; see the module docs. Columns it adds
    /// to existing tables get no default: for callers that fill the rows themselves (a copy).
    pub async fn prepare(
        &mut self,
        sources: &[TableSchema],
    ) -> Result<TargetReport, TargetSetupError> {
        let plan = self.plan(sources).await?;
        self.apply(plan, |_, _| None).await
    }

    /// Carries out `plan` (from [`TargetSetup::plan`]); `defaults(table, column)` gives the
    /// `DEFAULT` of each column added to an existing table (see [`NewColumn`]).
    pub async fn apply(
        &mut self,
        plan: TargetPlan,
        defaults: impl Fn(&str, &TargetColumn) -> Option<String>,
    ) -> Result<TargetReport, TargetSetupError> {
        let database = self.config.database.clone();
        let mut report = TargetReport {
            version: plan.version,
            ..TargetReport::default()
        };
        if plan.create_database {
            self.execute(
                "creating the database",
                &format!("CREATE DATABASE IF NOT EXISTS {}", quote(&database)),
            )
            .await?;
            report.database_created = true;
        }
        for table in plan.tables {
            let target = table.target;
            if !table.exists {
                self.execute(
                    &format!("creating table `{}`", target.name),
                    &target.create_sql(&database),
                )
                .await?;
                tracing::info!(table = %target.name, "created target table");
                report.tables_created.push(target.name.clone());
                continue;
            }
            if !table.missing_columns.is_empty() {
                let missing: Vec<NewColumn> = table
                    .missing_columns
                    .iter()
                    .map(|column| {
                        let default = defaults(&target.name, column);
                        NewColumn {
                            column: column.clone(),
                            default,
                        }
                    })
                    .collect();
                self.add_columns(&target.name, &missing).await?;
                report.columns_added.extend(
                    missing
                        .iter()
                        .map(|c| (target.name.clone(), c.column.name.clone())),
                );
            }
            if !self.has_fast_schema_evolution(&target.name).await? {
                tracing::warn!(table = %target.name, "fast_schema_evolution is off: adding columns later rewrites the table's data");
                report.slow_schema_change.push(target.name.clone());
            }
        }
        Ok(report)
    }

    /// `ALTER TABLE ADD COLUMN ... [DEFAULT ...]` and waits for the job.
    pub async fn add_columns(
        &mut self,
        table: &str,
        columns: &[NewColumn],
    ) -> Result<(), TargetSetupError> {
        let clauses: Vec<String> = columns
            .iter()
            .map(|c| {
                let default = c
                    .default
                    .as_deref()
                    .map(|text| format!(" DEFAULT {}", string_literal(text)))
                    .unwrap_or_default();
                format!(
                    "ADD COLUMN {} {} NULL{default}",
                    quote(&c.column.name),
                    c.column.data_type
                )
            })
            .collect();
        self.alter_table(table, "adding columns to", &clauses).await
    }

    /// `ALTER TABLE MODIFY COLUMN ...` (a widened source type) and waits for the job.
    pub async fn modify_columns(
        &mut self,
        table: &str,
        columns: &[&TargetColumn],
    ) -> Result<(), TargetSetupError> {
        let clauses: Vec<String> = columns
            .iter()
            .map(|c| format!("MODIFY COLUMN {} {} NULL", quote(&c.name), c.data_type))
            .collect();
        self.alter_table(table, "changing column types of", &clauses)
            .await
    }

    async fn alter_table(
        &mut self,
        table: &str,
        what: &str,
        clauses: &[String],
    ) -> Result<(), TargetSetupError> {
        let clauses = clauses.join(", ");
        self.execute(
            &format!("{what} `{table}`"),
            &format!(
                "ALTER TABLE {}.{} {clauses}",
                quote(&self.config.database),
                quote(table)
            ),
        )
        .await?;
        self.wait_for_alter(table).await
    }

    async fn wait_for_alter(&mut self, table: &str) -> Result<(), TargetSetupError> {
        let sql = format!(
            "SHOW ALTER TABLE COLUMN FROM {} WHERE TableName = '{}' ORDER BY JobId DESC LIMIT 1",
            quote(&self.config.database),
            escape_literal(table)
        );
        let started = Instant::now();
        loop {
            let rows = self.rows("watching the ALTER job", &sql).await?;
            let job = rows.first().map(|row| {
                let column = |name: &str| -> String {
                    row.columns_ref()
                        .iter()
                        .position(|c| c.name_str().eq_ignore_ascii_case(name))
                        .and_then(|i| row.get::<Option<String>, _>(i).flatten())
                        .unwrap_or_default()
                };
                (column("State"), column("Msg"))
            });
            match job {
                Some((state, _)) if state == "FINISHED" => return Ok(()),
                Some((state, message)) if state == "CANCELLED" => {
                    return Err(TargetSetupError::AlterFailed {
                        table: table.to_owned(),
                        state,
                        message,
                    })
                }
                _ => {}
            }
            if started.elapsed() > ALTER_JOB_TIMEOUT {
                return Err(TargetSetupError::AlterTimeout {
                    table: table.to_owned(),
                    timeout: ALTER_JOB_TIMEOUT,
                });
            }
            tokio::time::sleep(ALTER_POLL_INTERVAL).await;
        }
    }

    async fn has_fast_schema_evolution(&mut self, table: &str) -> Result<bool, TargetSetupError> {
        let rows = self
            .rows(
                "reading SHOW CREATE TABLE",
                &format!(
                    "SHOW CREATE TABLE {}.{}",
                    quote(&self.config.database),
                    quote(table)
                ),
            )
            .await?;
        let ddl = rows
            .first()
            .and_then(|row| row.get::<Option<String>, _>(1).flatten())
            .unwrap_or_default();
        Ok(!ddl
            .replace(' ', "")
            .contains("\"fast_schema_evolution\"=\"false\""))
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.conn.disconnect().await;
    }
}

/// Every problem of an existing table against the target definition.
fn validate(target: &TargetTable, existing: &[ExistingColumn]) -> Vec<TargetProblem> {
    let mut problems = Vec::new();
    let expected: Vec<String> = target
        .columns
        .iter()
        .filter(|c| c.is_key)
        .map(|c| c.name.to_ascii_lowercase())
        .collect();
    let found: Vec<String> = existing
        .iter()
        .filter(|c| c.is_key)
        .map(|c| c.name.to_ascii_lowercase())
        .collect();
    if expected != found {
        problems.push(TargetProblem::Key {
            table: target.name.clone(),
            expected,
            found,
        });
    }
    for column in &target.columns {
        if let Some(existing) = existing
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(&column.name))
        {
            if !compatible(&column.data_type, &existing.data_type)
                || !wide_enough(&column.data_type, existing)
            {
                problems.push(TargetProblem::Type {
                    table: target.name.clone(),
                    column: column.name.clone(),
                    expected: column.data_type.to_string(),
                    found: if existing.column_type.is_empty() {
                        existing.data_type.clone()
                    } else {
                        existing.column_type.clone()
                    },
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn existing(name: &str, data_type: &str, is_key: bool) -> ExistingColumn {
        ExistingColumn {
            name: name.into(),
            data_type: data_type.into(),
            column_type: String::new(),
            is_key,
        }
    }

    fn target() -> TargetTable {
        let column = |name: &str, data_type, is_key: bool| TargetColumn {
            name: name.into(),
            data_type,
            nullable: !is_key,
            is_key,
        };
        TargetTable {
            name: "orders".into(),
            columns: vec![
                column("id", TargetType::BigInt, true),
                column(
                    "amount",
                    TargetType::Decimal {
                        precision: 10,
                        scale: 2,
                    },
                    false,
                ),
                column("note", TargetType::Varchar(100), false),
            ],
        }
    }

    fn source(type_oid: u32) -> ColumnSchema {
        ColumnSchema {
            name: "c".into(),
            type_oid: crate::postgres::Oid(type_oid),
            type_modifier: -1,
            type_name: String::new(),
            nullable: true,
            key_position: None,
        }
    }

    #[test]
    fn defaults_follow_the_load_conventions() {
        let text = |s: &str| DefaultLiteral::Text(s.to_owned());
        let cases: &[(u32, TargetType, &str, DefaultLiteral)] = &[
            (23, TargetType::Int, "5", text("5")),
            (16, TargetType::Boolean, "t", text("1")),
            (16, TargetType::Boolean, "f", text("0")),
            (
                25,
                TargetType::Varchar(100),
                "it's \"q\" \\",
                text("it's \"q\" \\"),
            ),
            (
                1184,
                TargetType::DateTime,
                "2024-01-02 03:04:05+02",
                text("2024-01-02 01:04:05"),
            ),
            (1082, TargetType::Date, "infinity", text("9999-12-31")),
            (701, TargetType::Double, "NaN", text("NaN")),
            (
                1700,
                TargetType::Decimal {
                    precision: 38,
                    scale: 9,
                },
                "NaN",
                DefaultLiteral::Unrepresentable,
            ),
            (
                1082,
                TargetType::Date,
                "0044-03-15 BC",
                DefaultLiteral::Unrepresentable,
            ),
            (
                3802,
                TargetType::Json,
                "{}",
                DefaultLiteral::Unrepresentable,
            ),
            (
                1007,
                TargetType::Array(Box::new(TargetType::Int)),
                "{1}",
                DefaultLiteral::Unrepresentable,
            ),
            (
                23,
                TargetType::Int,
                "not a number",
                DefaultLiteral::Unrepresentable,
            ),
        ];
        for (oid, target, value, expected) in cases {
            assert_eq!(
                &default_literal(&source(*oid), target, value),
                expected,
                "{oid} {value}"
            );
        }
    }

    #[test]
    fn new_columns_take_a_default_only_for_values_it_can_carry() {
        let column = TargetColumn {
            name: "c".into(),
            data_type: TargetType::Int,
            nullable: true,
            is_key: false,
        };
        let int = source(23);
        let with = |values: ExistingValues| {
            NewColumn::for_existing_rows(column.clone(), Some((&int, &values)))
        };
        assert_eq!(
            with(ExistingValues::Null),
            Some(NewColumn::null(column.clone()))
        );
        assert_eq!(
            with(ExistingValues::Constant("5".into())).and_then(|c| c.default),
            Some("5".to_owned())
        );
        assert_eq!(with(ExistingValues::Unknown), None);
        assert_eq!(
            NewColumn::for_existing_rows(column.clone(), None),
            Some(NewColumn::null(column))
        );
    }

    #[test]
    fn string_literals_escape_quotes_and_backslashes() {
        assert_eq!(string_literal(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn a_matching_table_has_no_problems() {
        let found = [
            existing("ID", "bigint", true),
            existing("amount", "decimal64", false),
            existing("note", "varchar", false),
        ];
        assert!(validate(&target(), &found).is_empty());
    }

    #[test]
    fn narrower_decimals_and_varchars_are_mismatches() {
        let sized = |name: &str, data_type: &str, column_type: &str| ExistingColumn {
            column_type: column_type.into(),
            ..existing(name, data_type, false)
        };
        let found = [
            existing("id", "bigint", true),
            sized("amount", "decimal", "decimal64(18, 1)"),
            sized("note", "varchar", "varchar(50)"),
        ];
        let problems = validate(&target(), &found);
        assert_eq!(problems.len(), 2, "{problems:?}");
        let wide = [
            existing("id", "bigint", true),
            sized("amount", "decimal", "decimal64(18, 4)"),
            sized("note", "varchar", "varchar(65533)"),
        ];
        assert!(validate(&target(), &wide).is_empty());
    }

    #[test]
    fn every_mismatch_is_reported() {
        let found = [
            existing("id", "int", false),
            existing("amount", "varchar", true),
            existing("note", "json", false),
        ];
        let problems = validate(&target(), &found);
        assert_eq!(problems.len(), 4, "{problems:?}");
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text[0].contains("primary key (amount), the source key is (id)"),
            "{}",
            text[0]
        );
        assert!(
            text.iter()
                .any(|t| t.contains("`note` of `orders` is json")),
            "{text:?}"
        );
    }
}
