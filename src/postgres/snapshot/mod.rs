//! The snapshot reader: rows that existed before the stream, read with `COPY … TO STDOUT` inside
//! a transaction that imported an exported snapshot, chunked on the table's key.
//!
//! - [`ExportedSnapshot`]: a snapshot exported by `CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT`
//!   (the permanent slot's, when it is created, or a temporary slot's). Its consistent point is
//!   exact: transactions committed before it are in the snapshot, those after it are streamed.
//!   It lives until its replication connection runs another command, so it is held until every
//!   reader imported it, then released.
//! - [`SnapshotReader`]: one SQL connection in a `REPEATABLE READ READ ONLY` transaction with
//!   `SET TRANSACTION SNAPSHOT`; it counts and plans tables and copies chunks.
//! - [`ChunkRange`]: keyset ranges `(lower, upper]` on the key columns (any type with a btree
//!   order, composite keys as row comparisons), so each row is in exactly one chunk whatever the
//!   snapshot.
//! - [`copy_text`] splits COPY's text rows; undone escapes give the type's output text, the same
//!   text pgoutput sends, decoded by the same code.

pub mod copy_text;
pub mod store;

use tokio_postgres::{Client, CopyOutStream};

use crate::postgres::catalog::SourceTable;
use crate::postgres::conninfo::ConnInfo;
use crate::postgres::replication::{ReplicationConnection, ReplicationError, SlotSnapshot};
use crate::postgres::sql::{quote_ident, quote_literal};
use crate::postgres::tls::{connect_sql, SqlConnectError};
use crate::postgres::Lsn;
use crate::schema::TableSchema;
use store::KeyBound;

/// A snapshot other connections can import, held open by its replication connection.
#[derive(Debug)]
pub struct ExportedSnapshot {
    /// For `SET TRANSACTION SNAPSHOT`.
    pub name: String,
    /// Everything committed before it is in the snapshot; everything after it is streamed.
    pub consistent_point: Lsn,
    holder: ReplicationConnection,
}

impl ExportedSnapshot {
    /// Wraps the snapshot a slot creation on `holder` exported.
    pub fn new(
        name: String,
        consistent_point: Lsn,
        holder: ReplicationConnection,
    ) -> ExportedSnapshot {
        ExportedSnapshot {
            name,
            consistent_point,
            holder,
        }
    }

    /// Exports a snapshot through a temporary slot named `slot` (gone when released): its
    /// consistent point is exact, as for the permanent slot. Creating it waits for the
    /// transactions running at that moment to end, as any logical slot creation does.
    pub async fn temporary(
        conn: &ConnInfo,
        slot: &str,
    ) -> Result<ExportedSnapshot, ReplicationError> {
        let mut holder = ReplicationConnection::connect(conn).await?;
        let created = holder
            .create_logical_slot(slot, true, SlotSnapshot::Export)
            .await?;
        let name = created.snapshot_name.ok_or_else(|| {
            ReplicationError::Protocol(
                "CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT returned no snapshot name".into(),
            )
        })?;
        Ok(ExportedSnapshot::new(
            name,
            created.consistent_point,
            holder,
        ))
    }

    /// Ends the export (and a temporary slot with it). Readers that imported it keep it.
    pub async fn release(self) {
        self.holder.close().await;
    }
}

/// Keys sampled per planned chunk: enough that chunks come out within a few percent of
/// `STARWAL_SNAPSHOT_CHUNK_ROWS`.
pub const SAMPLES_PER_CHUNK: u64 = 200;

/// A chunk's key range: `lower < key <= upper`, either side open when `None`.
#[derive(Debug, Clone, Copy)]
pub struct ChunkRange<'a> {
    pub lower: Option<&'a KeyBound>,
    pub upper: Option<&'a KeyBound>,
}

impl ChunkRange<'_> {
    /// Chunk `index` of the plan `boundaries` (`boundaries.len() + 1` chunks).
    pub fn of(boundaries: &[KeyBound], index: usize) -> ChunkRange<'_> {
        ChunkRange {
            lower: index.checked_sub(1).and_then(|i| boundaries.get(i)),
            upper: boundaries.get(index),
        }
    }

    /// The `WHERE` condition (literals inlined: COPY takes no parameters), or `TRUE`.
    pub fn condition(&self, schema: &TableSchema) -> String {
        let keys = schema.key_columns();
        let columns = keys
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let bound = |values: &KeyBound| {
            keys.iter()
                .zip(values)
                .map(|(column, value)| {
                    format!("CAST({} AS {})", quote_literal(value), column.type_name)
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::with_capacity(2);
        if let Some(lower) = self.lower {
            parts.push(format!("ROW({columns}) > ROW({})", bound(lower)));
        }
        if let Some(upper) = self.upper {
            parts.push(format!("ROW({columns}) <= ROW({})", bound(upper)));
        }
        if parts.is_empty() {
            "TRUE".into()
        } else {
            parts.join(" AND ")
        }
    }
}

/// A reading or planning query failed.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error(transparent)]
    Connect(#[from] SqlConnectError),
    #[error("{what}: {}", crate::error_text::chain(.source))]
    Query {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl ReaderError {
    fn query(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ReaderError {
        let what = what.into();
        move |source| ReaderError::Query { what, source }
    }
}

/// One connection reading inside an imported snapshot.
#[derive(Debug)]
pub struct SnapshotReader {
    client: Client,
}

impl SnapshotReader {
    /// Connects and imports `snapshot` into a `REPEATABLE READ READ ONLY` transaction (READ ONLY
    /// is required on 16+). The connection pins [`crate::postgres::SESSION_SETTINGS`].
    pub async fn open(conn: &ConnInfo, snapshot: &str) -> Result<SnapshotReader, ReaderError> {
        let client = connect_sql(conn).await?;
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                quote_literal(snapshot)
            ))
            .await
            .map_err(ReaderError::query(format!(
                "importing snapshot `{snapshot}`"
            )))?;
        Ok(SnapshotReader { client })
    }

    /// The table's row count (estimated, see [`SnapshotReader::estimate_rows`]) and the chunk
    /// boundaries, about `chunk_rows` apart.
    ///
    /// Boundaries are quantiles of a Bernoulli sample of the keys (about
    /// [`SAMPLES_PER_CHUNK`] per chunk): one sequential pass returning a few hundred rows per
    /// chunk, ~4× cheaper than numbering every key in order. Any boundaries are correct (the
    /// ranges cover the key space once); the sample only balances the chunks. When the sample
    /// would be the whole table, the exact numbering is used instead.
    pub async fn plan(
        &self,
        table: &SourceTable,
        schema: &TableSchema,
        chunk_rows: u64,
    ) -> Result<(u64, Vec<KeyBound>), ReaderError> {
        let name = table.display_name();
        let count = match self.estimate_rows(table).await? {
            Some(rows) => rows,
            None => {
                let count: i64 = self
                    .client
                    .query_one(&format!("SELECT count(*) FROM {}", table.quoted()), &[])
                    .await
                    .map_err(ReaderError::query(format!("counting the rows of {name}")))?
                    .get(0);
                u64::try_from(count).unwrap_or(0)
            }
        };
        let chunk_rows = chunk_rows.max(1);
        if count <= chunk_rows {
            return Ok((count, Vec::new()));
        }
        let chunks = count.div_ceil(chunk_rows);
        let keys = schema.key_columns();
        // TABLESAMPLE takes a float4 percentage.
        let percent = ((chunks * SAMPLES_PER_CHUNK) as f64 * 100.0 / count as f64) as f32;
        let read = |rows: Vec<tokio_postgres::Row>| -> Vec<KeyBound> {
            rows.iter()
                .map(|row| (0..keys.len()).map(|i| row.get::<_, String>(i)).collect())
                .collect()
        };
        if percent < 50.0 {
            let sample = self
                .client
                .query(&sample_sql(&table.quoted(), &keys), &[&percent])
                .await
                .map_err(ReaderError::query(format!("sampling the keys of {name}")))?;
            let sample = read(sample);
            let chunks = usize::try_from(chunks).unwrap_or(usize::MAX);
            if sample.len() >= chunks {
                let boundaries = (1..chunks)
                    .map(|i| sample[i * sample.len() / chunks].clone())
                    .collect();
                return Ok((count, boundaries));
            }
        }
        let chunk_rows = i64::try_from(chunk_rows).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(&numbering_sql(&table.quoted(), &keys), &[&chunk_rows])
            .await
            .map_err(ReaderError::query(format!("planning the chunks of {name}")))?;
        Ok((count, read(rows)))
    }

    /// The table's rows as the planner estimates them, without reading the table: the density
    /// of its last VACUUM or ANALYZE (`reltuples / relpages`) times its size now in pages; `None`
    /// when it has none (never vacuumed or analyzed, or no storage of its own), and the caller
    /// counts. The count only sizes the chunks and the progress shown; any boundaries are
    /// correct, so an estimate saves the copy a sequential scan of the table before its first
    /// chunk (`count(*)` of a 1M-row table: ~40 ms with two cores).
    async fn estimate_rows(&self, table: &SourceTable) -> Result<Option<u64>, ReaderError> {
        let row = self
            .client
            .query_one(
                "SELECT c.reltuples::float8, c.relpages::int8, \
                        pg_relation_size(c.oid) / current_setting('block_size')::int8 \
                 FROM pg_class c WHERE c.oid = $1::text::regclass",
                &[&table.quoted()],
            )
            .await
            .map_err(ReaderError::query(format!(
                "estimating the rows of {}",
                table.display_name()
            )))?;
        let (tuples, pages, pages_now): (f64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if tuples <= 0.0 || pages <= 0 || pages_now <= 0 {
            return Ok(None);
        }
        Ok(Some(
            (tuples / pages as f64 * pages_now as f64).round() as u64
        ))
    }

    /// Starts `COPY (SELECT <columns> … WHERE <range>) TO STDOUT` (text format).
    pub async fn copy(
        &self,
        table: &SourceTable,
        schema: &TableSchema,
        range: ChunkRange<'_>,
    ) -> Result<CopyOutStream, ReaderError> {
        let columns = schema
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "COPY (SELECT {columns} FROM {} WHERE {}) TO STDOUT",
            table.quoted(),
            range.condition(schema)
        );
        self.client
            .copy_out(&sql)
            .await
            .map_err(ReaderError::query(format!(
                "copying {}",
                table.display_name()
            )))
    }
}

/// The key columns of the table aliased `relation`, qualified (`k."a", k."b"`): in `ORDER BY` a
/// bare name that is also an output column's name means that output column, and the outputs
/// are the keys cast to text — text order, under which `10 < 9` and chunks overlap. Qualified,
/// they are the columns themselves: their type's btree order with the column's collation, the
/// order [`ChunkRange::condition`]'s row comparisons use.
fn qualified_keys(relation: &str, keys: &[&crate::schema::ColumnSchema]) -> Vec<String> {
    keys.iter()
        .map(|c| format!("{relation}.{}", quote_ident(&c.name)))
        .collect()
}

/// A `TABLESAMPLE BERNOULLI ($1)` sample of the keys (as text) of `table`, in key order.
fn sample_sql(table: &str, keys: &[&crate::schema::ColumnSchema]) -> String {
    let columns = qualified_keys("k", keys);
    let texts = columns
        .iter()
        .map(|c| format!("{c}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {texts} FROM {table} AS k TABLESAMPLE BERNOULLI ($1) ORDER BY {}",
        columns.join(", ")
    )
}

/// Every `$1`-th key (as text) of `table` in key order. The numbered keys are renamed
/// (`numbered(k0, k1, …, n)`) so no key column's name can collide with the row number's.
fn numbering_sql(table: &str, keys: &[&crate::schema::ColumnSchema]) -> String {
    let order = qualified_keys("k", keys).join(", ");
    let renamed = (0..keys.len()).map(|i| format!("k{i}")).collect::<Vec<_>>();
    let texts = renamed
        .iter()
        .map(|c| format!("numbered.{c}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {texts} FROM (SELECT {order}, row_number() OVER (ORDER BY {order}) \
           FROM {table} AS k) AS numbered({}, n) \
         WHERE numbered.n % $1 = 0 ORDER BY numbered.n",
        renamed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::Oid;
    use crate::schema::ColumnSchema;

    fn schema() -> TableSchema {
        let column = |name: &str, type_name: &str, key_position: Option<u16>| ColumnSchema {
            name: name.into(),
            type_oid: Oid(25),
            type_modifier: -1,
            type_name: type_name.into(),
            nullable: key_position.is_none(),
            key_position,
        };
        TableSchema {
            schema: "public".into(),
            name: "t".into(),
            columns: vec![
                column("b", "uuid", Some(2)),
                column("v", "text", None),
                column("a", "text", Some(1)),
            ],
        }
    }

    #[test]
    fn chunk_ranges_cover_the_key_space_once() {
        let boundaries = vec![
            vec!["x".to_owned(), "1".to_owned()],
            vec!["it's".to_owned(), "2".to_owned()],
        ];
        let schema = schema();
        assert_eq!(
            ChunkRange::of(&boundaries, 0).condition(&schema),
            "ROW(\"a\", \"b\") <= ROW(CAST('x' AS text), CAST('1' AS uuid))"
        );
        assert_eq!(
            ChunkRange::of(&boundaries, 1).condition(&schema),
            "ROW(\"a\", \"b\") > ROW(CAST('x' AS text), CAST('1' AS uuid)) AND ROW(\"a\", \"b\") <= ROW(CAST('it''s' AS text), CAST('2' AS uuid))"
        );
        assert_eq!(
            ChunkRange::of(&boundaries, 2).condition(&schema),
            "ROW(\"a\", \"b\") > ROW(CAST('it''s' AS text), CAST('2' AS uuid))"
        );
        assert_eq!(ChunkRange::of(&[], 0).condition(&schema), "TRUE");
    }

    #[test]
    fn planning_orders_by_the_key_columns_not_their_text() {
        let schema = schema();
        let keys = schema.key_columns();
        // Qualified in ORDER BY: a bare "a" would name the output `"a"::text`, and sort as text.
        assert_eq!(
            sample_sql("\"public\".\"t\"", &keys),
            "SELECT k.\"a\"::text, k.\"b\"::text FROM \"public\".\"t\" AS k \
             TABLESAMPLE BERNOULLI ($1) ORDER BY k.\"a\", k.\"b\""
        );
        assert_eq!(
            numbering_sql("\"public\".\"t\"", &keys),
            "SELECT numbered.k0::text, numbered.k1::text FROM (SELECT k.\"a\", k.\"b\", \
             row_number() OVER (ORDER BY k.\"a\", k.\"b\") FROM \"public\".\"t\" AS k) \
             AS numbered(k0, k1, n) WHERE numbered.n % $1 = 0 ORDER BY numbered.n"
        );
    }
}
