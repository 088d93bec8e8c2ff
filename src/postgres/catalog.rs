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
/// Names are held as Postgres stores them (case kept), parsed by [`TablePattern::parse_list`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TablePattern {
    /// `schema.table`
    Table { schema: String, name: String },
    /// `schema.*`
    AllInSchema { schema: String },
}

impl std::fmt::Display for TablePattern {
    /// As the user would write it: names that are not plain lower-case identifiers are quoted
    /// (`public."Orders"`), so the text parses back to the same pattern.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TablePattern::Table { schema, name } => {
                write!(f, "{}.{}", display_ident(schema), display_ident(name))
            }
            TablePattern::AllInSchema { schema } => write!(f, "{}.*", display_ident(schema)),
        }
    }
}

/// Postgres' limit on identifier length (NAMEDATALEN - 1 bytes); Postgres truncates longer names
/// with a notice, starwal refuses them so a table is never silently another.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Why a `STARWAL_TABLES` entry is not a table pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TablePatternError {
    #[error("an entry is empty")]
    Empty,
    #[error("`{0}` is not schema-qualified: write schema.table or schema.*")]
    Unqualified(String),
    #[error("`{0}` has more than two parts: write schema.table or schema.*")]
    TooManyParts(String),
    #[error("`{0}` has an empty name")]
    EmptyName(String),
    #[error("`{0}` has a quoted name without its closing `\"`")]
    Unterminated(String),
    #[error("`{entry}`: `{name}` is not an identifier (unquoted names are letters, digits, `_` and `$`, not starting with a digit; quote others: \"{name}\")")]
    Invalid { entry: String, name: String },
    #[error("`{0}`: a name is longer than 63 bytes")]
    TooLong(String),
}

impl TablePattern {
    /// Parses a comma-separated `STARWAL_TABLES` list with Postgres' rules for identifiers: an
    /// unquoted name folds to lower case (`Public.Orders` is `public.orders`), a quoted one is
    /// taken as written, with `""` for a quote (`public."Orders"`, `"My Schema"."T"`); an
    /// unquoted `*` as the table means every table of the schema. Duplicates are dropped.
    pub fn parse_list(value: &str) -> Result<Vec<TablePattern>, TablePatternError> {
        let mut patterns = Vec::new();
        for entry in split_outside_quotes(value, ',') {
            let pattern = TablePattern::parse(entry.trim())?;
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        }
        Ok(patterns)
    }

    /// Parses one `schema.table` or `schema.*` (see [`TablePattern::parse_list`]).
    pub fn parse(entry: &str) -> Result<TablePattern, TablePatternError> {
        if entry.is_empty() {
            return Err(TablePatternError::Empty);
        }
        let parts = split_outside_quotes(entry, '.');
        let (schema, table) = match parts.as_slice() {
            [_] => return Err(TablePatternError::Unqualified(entry.to_owned())),
            [schema, table] => (*schema, *table),
            _ => return Err(TablePatternError::TooManyParts(entry.to_owned())),
        };
        let schema = identifier(entry, schema)?;
        if table == "*" {
            return Ok(TablePattern::AllInSchema { schema });
        }
        Ok(TablePattern::Table {
            schema,
            name: identifier(entry, table)?,
        })
    }
}

/// `text` split at `separator` where it is outside double quotes (a `""` inside quotes is an
/// escaped quote, which leaves the quoting state as it was).
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (at, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&text[start..at]);
            start = at + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// One identifier of `entry` with Postgres' rules: quoted as written (`""` is `"`), unquoted
/// folded to lower case (ASCII only, as Postgres does for UTF-8).
fn identifier(entry: &str, text: &str) -> Result<String, TablePatternError> {
    let name = if let Some(inner) = text.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| TablePatternError::Unterminated(entry.to_owned()))?;
        // Inside, every quote must be doubled: a lone one ends the name early.
        let unescaped = inner.replace("\"\"", "\"");
        if unescaped.matches('"').count() * 2 != inner.matches('"').count() {
            return Err(TablePatternError::Unterminated(entry.to_owned()));
        }
        unescaped
    } else {
        let mut chars = text.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii());
        if !valid {
            return Err(if text.is_empty() {
                TablePatternError::EmptyName(entry.to_owned())
            } else {
                TablePatternError::Invalid {
                    entry: entry.to_owned(),
                    name: text.to_owned(),
                }
            });
        }
        text.to_ascii_lowercase()
    };
    if name.is_empty() {
        return Err(TablePatternError::EmptyName(entry.to_owned()));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(TablePatternError::TooLong(entry.to_owned()));
    }
    Ok(name)
}

/// `name` as it would be written unquoted when that reads back the same, quoted otherwise.
fn display_ident(name: &str) -> std::borrow::Cow<'_, str> {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(quote_ident(name))
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
    /// Prepares the read of `table` by the columns at `key_columns` of `schema`. A column of
    /// `schema` gone from the source already (dropped or renamed since the stream's schema; the
    /// stream's Relation message for it follows) reads as NULL: the other columns, which are
    /// what a moved row usually lacks, are still read. `Ok(None)` when a key column is gone.
    pub async fn prepare(
        client: &Client,
        table: &SourceTable,
        schema: &TableSchema,
        key_columns: &[usize],
    ) -> Result<Option<RowLookup>, CatalogError> {
        match Self::prepare_reading(client, table, schema, key_columns, None).await? {
            Some(lookup) => Ok(Some(lookup)),
            None => {
                let present = Self::present_columns(client, table).await?;
                let gone: Vec<&str> = schema
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .filter(|name| !present.iter().any(|p| p == name))
                    .collect();
                if key_columns
                    .iter()
                    .any(|&k| gone.contains(&schema.columns[k].name.as_str()))
                {
                    return Ok(None);
                }
                tracing::warn!(table = %table.display_name(), columns = ?gone, "columns of the stream's schema are gone from the source (dropped or renamed since): a moved row's values of these columns read as NULL");
                Self::prepare_reading(client, table, schema, key_columns, Some(&present)).await
            }
        }
    }

    /// The columns the source table has now.
    async fn present_columns(
        client: &Client,
        table: &SourceTable,
    ) -> Result<Vec<String>, CatalogError> {
        let rows = client
            .query(
                "SELECT attname::text FROM pg_attribute \
                 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
                &[&table.oid.0],
            )
            .await
            .map_err(CatalogError::query("reading a table's columns"))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The read; `present`: only these columns exist (the others read as NULL). `Ok(None)` when
    /// a column is missing.
    async fn prepare_reading(
        client: &Client,
        table: &SourceTable,
        schema: &TableSchema,
        key_columns: &[usize],
        present: Option<&[String]>,
    ) -> Result<Option<RowLookup>, CatalogError> {
        let columns = schema
            .columns
            .iter()
            .map(|c| match present {
                Some(present) if !present.contains(&c.name) => "NULL::text".to_owned(),
                _ => format!("{}::text", quote_ident(&c.name)),
            })
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

/// Waits until source transaction `xid` (32 bits, as pgoutput sends it) is visible to a new
/// snapshot of `client`'s server, for at most `timeout`; `false` when it was not by then.
///
/// A walsender sends a transaction once its commit record is flushed, which happens before the
/// committing backend leaves the proc array: for a moment after its Commit arrives, a read of
/// the source does not see it yet, and a moved row's lookup by its new key finds nothing (or the
/// row the key held before). A row read for a change must wait for that moment to pass.
pub async fn wait_until_visible(
    client: &Client,
    xid: u32,
    timeout: std::time::Duration,
) -> Result<bool, CatalogError> {
    // The 32-bit xid in the epoch of the snapshot's xmax (one epoch back when it is above
    // xmax's low half: it is committed, so below xmax).
    const SQL: &str = "SELECT pg_visible_in_snapshot(\
         ((((pg_snapshot_xmax(s)::text::int8 >> 32) \
            - CASE WHEN $1::int8 > (pg_snapshot_xmax(s)::text::int8 & 4294967295) THEN 1 ELSE 0 END) \
           << 32) | $1::int8)::text::xid8, s) \
         FROM (SELECT pg_current_snapshot() AS s) q";
    let deadline = std::time::Instant::now() + timeout;
    let xid = i64::from(xid);
    loop {
        let visible: bool = client
            .query_one(SQL, &[&xid])
            .await
            .map_err(CatalogError::query(
                "waiting for the source transaction to be visible",
            ))?
            .get(0);
        if visible {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: &str, name: &str) -> TablePattern {
        TablePattern::Table {
            schema: schema.into(),
            name: name.into(),
        }
    }

    #[test]
    fn issue13_quoted_identifiers_follow_postgres_rules() {
        for (text, expected) in [
            ("public.orders", vec![table("public", "orders")]),
            // Unquoted names fold to lower case, as Postgres does.
            ("Public.Orders", vec![table("public", "orders")]),
            ("public.\"Orders\"", vec![table("public", "Orders")]),
            ("\"My Schema\".\"T\"", vec![table("My Schema", "T")]),
            ("\"a.b\".\"c,d\"", vec![table("a.b", "c,d")]),
            (
                "public.\"say \"\"hi\"\"\"",
                vec![table("public", "say \"hi\"")],
            ),
            ("public.\"*\"", vec![table("public", "*")]),
            ("_s.t$1", vec![table("_s", "t$1")]),
            ("public.café", vec![table("public", "café")]),
            (
                " sales.* , public.\"Orders\",public.\"Orders\"",
                vec![
                    TablePattern::AllInSchema {
                        schema: "sales".into(),
                    },
                    table("public", "Orders"),
                ],
            ),
        ] {
            assert_eq!(TablePattern::parse_list(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn inv9_bad_patterns_say_why() {
        for (text, error) in [
            ("orders", TablePatternError::Unqualified("orders".into())),
            ("a.b.c", TablePatternError::TooManyParts("a.b.c".into())),
            ("public.", TablePatternError::EmptyName("public.".into())),
            (
                "public.\"\"",
                TablePatternError::EmptyName("public.\"\"".into()),
            ),
            (",", TablePatternError::Empty),
            (
                "public.\"Orders",
                TablePatternError::Unterminated("public.\"Orders".into()),
            ),
            (
                "public.\"a\"b\"",
                TablePatternError::Unterminated("public.\"a\"b\"".into()),
            ),
            (
                "public.t;drop",
                TablePatternError::Invalid {
                    entry: "public.t;drop".into(),
                    name: "t;drop".into(),
                },
            ),
            (
                "public.1t",
                TablePatternError::Invalid {
                    entry: "public.1t".into(),
                    name: "1t".into(),
                },
            ),
        ] {
            assert_eq!(TablePattern::parse_list(text), Err(error), "{text}");
        }
        let long = format!("public.{}", "t".repeat(64));
        assert_eq!(
            TablePattern::parse_list(&long),
            Err(TablePatternError::TooLong(long.clone()))
        );
        assert!(TablePattern::parse_list(&format!("public.{}", "t".repeat(63))).is_ok());
    }

    #[test]
    fn patterns_display_as_they_parse() {
        for text in [
            "public.orders",
            "public.\"Orders\"",
            "\"My Schema\".\"T\"",
            "public.\"say \"\"hi\"\"\"",
            "public.\"*\"",
            "sales.*",
        ] {
            let patterns = TablePattern::parse_list(text).unwrap();
            assert_eq!(patterns[0].to_string(), text);
        }
    }
}
