//! The source catalog: which tables starwal replicates and what they look like, read from
//! `pg_class`, `pg_index` and `pg_attribute` over an ordinary SQL connection.
//!
//! [`TablePattern`]s (`STARWAL_TABLES`, parsed by `config.rs`) resolve to [`SourceTable`]s, each
//! checked to be keyable (a table that is not is a [`TableProblem`], all reported at once);
//! [`table_schema`] reads a table's columns, types and key in the order pgoutput sends them —
//! the columns the stream carries, so the snapshot copies and the target holds exactly those
//! (generated columns only where pgoutput publishes them, see [`table_schema`]);
//! [`existing_values`] says what the rows that existed before a column was added hold in it
//! (Postgres fills them without WAL, invariant 12); [`RowLookup`] reads a table's current row by
//! key (for rows whose key changed and whose unchanged TOAST values the stream does not carry).
//! Everything here only reads: creating the publication and the slot is setup's
//! (`engine/setup/postgres.rs`).

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::postgres::sql::quote_ident;
use crate::postgres::Oid;
use crate::schema::{ColumnSchema, TableSchema};

/// A table selector from `STARWAL_TABLES`: one table, or every table of a schema (`schema.*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TablePattern {
    /// `schema.table`
    Table { schema: String, name: String },
    /// `schema.*`
    AllInSchema { schema: String },
}

impl std::fmt::Display for TablePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TablePattern::Table { schema, name } => write!(f, "{schema}.{name}"),
            TablePattern::AllInSchema { schema } => write!(f, "{schema}.*"),
        }
    }
}

/// One source table that will be replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTable {
    pub oid: Oid,
    pub schema: String,
    pub name: String,
    /// `d` default (primary key), `f` full, `i` index, `n` nothing.
    pub replica_identity: char,
    pub has_primary_key: bool,
}

impl SourceTable {
    /// `"schema"."name"`, quoted for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// `schema.name` for messages.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// A problem with one configured table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableProblem {
    /// `schema.table` does not exist (or is not a table).
    Missing(String),
    /// `schema.*` matched no table.
    EmptySchema(String),
    /// No primary key and REPLICA IDENTITY DEFAULT: updates and deletes cannot be keyed.
    NoKey(String),
    /// REPLICA IDENTITY NOTHING: Postgres refuses published updates and deletes.
    ReplicaIdentityNothing(String),
}

impl std::fmt::Display for TableProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableProblem::Missing(t) => write!(f, "table `{t}` does not exist"),
            TableProblem::EmptySchema(s) => write!(f, "`{s}.*` matches no table"),
            TableProblem::NoKey(t) => write!(
                f,
                "table `{t}` has no primary key: add one, or run ALTER TABLE {t} REPLICA IDENTITY FULL"
            ),
            TableProblem::ReplicaIdentityNothing(t) => write!(
                f,
                "table `{t}` has REPLICA IDENTITY NOTHING: run ALTER TABLE {t} REPLICA IDENTITY DEFAULT (with a primary key) or FULL"
            ),
        }
    }
}

/// A catalog read failed, or configured tables cannot be replicated.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{what}: {}", crate::error_text::chain(.source))]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{} configured table(s) cannot be replicated:\n  - {}", .0.len(), .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  - "))]
    Tables(Vec<TableProblem>),
}

impl CatalogError {
    /// Wraps a failed SQL statement with what it was for (for `map_err`).
    pub fn query(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CatalogError {
        move |source| CatalogError::Query { what, source }
    }
}

const TABLE_COLUMNS: &str =
    "SELECT c.oid, n.nspname::text, c.relname::text, c.relreplident::text, \
     EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition";

/// Resolves `STARWAL_TABLES` to tables and checks that each can be keyed. Reports every problem.
pub async fn resolve_tables(
    client: &Client,
    patterns: &[TablePattern],
) -> Result<Vec<SourceTable>, CatalogError> {
    let by_name = client
        .prepare(&format!(
            "{TABLE_COLUMNS} AND n.nspname = $1 AND c.relname = $2"
        ))
        .await
        .map_err(CatalogError::query("looking up tables"))?;
    let by_schema = client
        .prepare(&format!(
            "{TABLE_COLUMNS} AND n.nspname = $1 ORDER BY c.relname"
        ))
        .await
        .map_err(CatalogError::query("looking up tables"))?;
    let mut tables: Vec<SourceTable> = Vec::new();
    let mut problems = Vec::new();
    for pattern in patterns {
        let rows = match pattern {
            TablePattern::Table { schema, name } => client.query(&by_name, &[schema, name]).await,
            TablePattern::AllInSchema { schema } => client.query(&by_schema, &[schema]).await,
        }
        .map_err(CatalogError::query("looking up tables"))?;
        if rows.is_empty() {
            problems.push(match pattern {
                TablePattern::Table { .. } => TableProblem::Missing(pattern.to_string()),
                TablePattern::AllInSchema { schema } => TableProblem::EmptySchema(schema.clone()),
            });
        }
        for row in rows {
            let replica_identity: String = row.get(3);
            let table = SourceTable {
                oid: Oid(row.get::<_, u32>(0)),
                schema: row.get(1),
                name: row.get(2),
                replica_identity: replica_identity.chars().next().unwrap_or('d'),
                has_primary_key: row.get(4),
            };
            if tables.iter().any(|t| t.oid == table.oid) {
                continue;
            }
            match table.replica_identity {
                'n' => problems.push(TableProblem::ReplicaIdentityNothing(table.display_name())),
                'd' if !table.has_primary_key => {
                    problems.push(TableProblem::NoKey(table.display_name()))
                }
                _ => {}
            }
            tables.push(table);
        }
    }
    if problems.is_empty() {
        Ok(tables)
    } else {
        Err(CatalogError::Tables(problems))
    }
}

/// The first server version whose pgoutput can publish stored generated columns (the
/// publication's `publish_generated_columns = stored`); older ones never send them.
pub const PUBLISHES_GENERATED_COLUMNS: i32 = 180_000;

/// The columns of `table` with their types and key positions (the replica identity index when
/// the table uses one — that is the key the stream's old-key tuples carry — else the primary
/// key), in `attnum` order — the order pgoutput sends tuple values in. (`indkey` is
/// an int2vector, whose subscripts start at 0, so `array_position` is already the key position.)
///
/// Only the columns the stream carries: stored generated columns on PostgreSQL 18+ (setup makes
/// the publication publish them, `engine/setup/postgres.rs`), no generated column before 18
/// (pgoutput leaves them out, so a target copy of them could never be kept current) and no
/// virtual generated column (18 never publishes those). Snapshot and stream then agree.
pub async fn table_schema(
    client: &Client,
    table: &SourceTable,
) -> Result<TableSchema, CatalogError> {
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), \
                    NOT a.attnotnull, \
                    (SELECT array_position(i.indkey::int2[], a.attnum)::int4 \
                       FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
                      WHERE i.indrelid = a.attrelid AND (i.indisprimary OR i.indisreplident) \
                      ORDER BY (c.relreplident = 'i' AND i.indisreplident) DESC, \
                               i.indisprimary DESC LIMIT 1) \
               FROM pg_attribute a \
              WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
                AND (a.attgenerated = '' OR (a.attgenerated = 's' AND \
                     current_setting('server_version_num')::int4 >= $2)) \
              ORDER BY a.attnum",
            &[&table.oid.0, &PUBLISHES_GENERATED_COLUMNS],
        )
        .await
        .map_err(CatalogError::query("reading table columns"))?;
    let columns = rows
        .iter()
        .map(|row| ColumnSchema {
            name: row.get(0),
            type_oid: Oid(row.get::<_, u32>(1)),
            type_modifier: row.get(2),
            type_name: row.get(3),
            nullable: row.get(4),
            key_position: row
                .get::<_, Option<i32>>(5)
                .and_then(|p| u16::try_from(p).ok()),
        })
        .collect();
    Ok(TableSchema {
        schema: table.schema.clone(),
        name: table.name.clone(),
        columns,
    })
}

/// What the rows that existed before a column was added hold in it. Postgres fills them without
/// writing WAL (a fast default is kept in `pg_attribute.attmissingval`; a volatile one rewrites
/// the table), so the stream never says; the target must be told (invariant 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExistingValues {
    /// NULL: the column was added without a default. Also said of a column the catalog no
    /// longer has (dropped since the Relation message): the source holds no value to match.
    Null,
    /// This value, as the type's output text: a default Postgres evaluated once
    /// (`atthasmissing`), which every row older than the column reads.
    Constant(String),
    /// Not knowable without reading the rows: a generated column, a default written into a
    /// rewritten table (volatile, such as `random()`), a constant default a later rewrite
    /// materialised (`atthasmissing` cleared, the default still set: the two look alike), or a
    /// column re-created with another type since.
    Unknown,
}

/// What existing rows hold in each of `columns` of `table` (see [`ExistingValues`]), read from
/// the catalog now: call it right after the Relation message that brought the columns. The
/// catalog may be ahead of the stream by then; every later change that could matter (a rewrite
/// clears `atthasmissing`, a drop removes the column) only turns an answer into `Unknown` or
/// `Null`, never into a wrong constant.
pub async fn existing_values(
    client: &Client,
    table: &SourceTable,
    columns: &[&ColumnSchema],
) -> Result<Vec<ExistingValues>, CatalogError> {
    let mut values = Vec::with_capacity(columns.len());
    for column in columns {
        let row = client
            .query_opt(
                "SELECT a.attgenerated::text, a.atthasdef, a.atthasmissing, a.atttypid, a.atttypmod \
                   FROM pg_attribute a \
                  WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                &[&table.oid.0, &column.name],
            )
            .await
            .map_err(CatalogError::query("reading how a new column was added"))?;
        let Some(row) = row else {
            values.push(ExistingValues::Null);
            continue;
        };
        let (generated, has_default, has_missing): (String, bool, bool) =
            (row.get(0), row.get(1), row.get(2));
        let same_type = Oid(row.get::<_, u32>(3)) == column.type_oid
            && row.get::<_, i32>(4) == column.type_modifier;
        values.push(if !generated.is_empty() || !same_type {
            ExistingValues::Unknown
        } else if has_missing {
            missing_value(client, table, column).await?
        } else if has_default {
            ExistingValues::Unknown
        } else {
            ExistingValues::Null
        });
    }
    Ok(values)
}

/// `attmissingval` (a one-element array of the column's type) as the element's output text,
/// printed with the session's pinned settings like every value the stream sends.
async fn missing_value(
    client: &Client,
    table: &SourceTable,
    column: &ColumnSchema,
) -> Result<ExistingValues, CatalogError> {
    let sql = format!(
        "SELECT (a.attmissingval::text::{}[])[1]::text FROM pg_attribute a \
          WHERE a.attrelid = $1 AND a.attname = $2 AND a.atthasmissing",
        column.type_name
    );
    match client.query_opt(&sql, &[&table.oid.0, &column.name]).await {
        Ok(Some(row)) => Ok(match row.get::<_, Option<String>>(0) {
            Some(text) => ExistingValues::Constant(text),
            None => ExistingValues::Null,
        }),
        // Rewritten between the two reads: the value is in the rows now, not the catalog.
        Ok(None) => Ok(ExistingValues::Unknown),
        // A type whose array text does not read back as one element (an array column's own
        // arrays): not a value a target default could hold anyway.
        Err(err) if err.as_db_error().is_some() => Ok(ExistingValues::Unknown),
        Err(source) => Err(CatalogError::Query {
            what: "reading a new column's value in existing rows",
            source,
        }),
    }
}

/// A prepared read of one table's current row by key: every column of the schema as text, so
/// the values decode like the stream's. Used for a row whose key changed while a TOASTed column
/// stayed unchanged: the stream carries no value for that column, and the target may not have
/// committed the old key yet, so the source is the one place to read it from.
#[derive(Debug)]
pub struct RowLookup {
    statement: Statement,
}

impl RowLookup {
    /// Prepares the read of `table` by the columns at `key_columns` of `schema`. `Ok(None)` when
    /// a column of `schema` is gone from the source already (the stream's Relation message for
    /// that drop follows; until then nothing can be read this way).
    pub async fn prepare(
        client: &Client,
        table: &SourceTable,
        schema: &TableSchema,
        key_columns: &[usize],
    ) -> Result<Option<RowLookup>, CatalogError> {
        let columns = schema
            .columns
            .iter()
            .map(|c| format!("{}::text", quote_ident(&c.name)))
            .collect::<Vec<_>>()
            .join(", ");
        let condition = key_columns
            .iter()
            .enumerate()
            .map(|(n, &column)| {
                let column = &schema.columns[column];
                format!(
                    "{} = ${}::text::{}",
                    quote_ident(&column.name),
                    n + 1,
                    column.type_name
                )
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        let sql = format!("SELECT {columns} FROM {} WHERE {condition}", table.quoted());
        match client.prepare(&sql).await {
            Ok(statement) => Ok(Some(RowLookup { statement })),
            Err(err) if err.code() == Some(&SqlState::UNDEFINED_COLUMN) => Ok(None),
            Err(source) => Err(CatalogError::Query {
                what: "preparing the row fetch for a moved row",
                source,
            }),
        }
    }

    /// The row whose key columns hold `keys` (as text, in key column order), every column as
    /// text; `None` when no row has that key any more.
    pub async fn fetch(
        &self,
        client: &Client,
        keys: &[Option<String>],
    ) -> Result<Option<Vec<Option<String>>>, CatalogError> {
        let params: Vec<&(dyn ToSql + Sync)> =
            keys.iter().map(|k| k as &(dyn ToSql + Sync)).collect();
        let row = client
            .query_opt(&self.statement, &params)
            .await
            .map_err(CatalogError::query(
                "fetching a moved row's unchanged TOAST values",
            ))?;
        Ok(row.map(|row| (0..row.len()).map(|i| row.get(i)).collect()))
    }
}

/// The SQL name of a type with its modifier (`format_type`), e.g. `numeric(10,2)`.
pub async fn type_name(client: &Client, oid: Oid, modifier: i32) -> Result<String, CatalogError> {
    let row = client
        .query_one("SELECT format_type($1, $2)", &[&oid.0, &modifier])
        .await
        .map_err(CatalogError::query("naming a column type"))?;
    Ok(row.get(0))
}
