//! The tables and the writes the scenarios make, and the fingerprint that says when a target
//! table is level with its source.
//!
//! Writes are set-based (`generate_series` ranges, `UPDATE`/`DELETE ... WHERE id BETWEEN`) so the
//! client is never the bottleneck, and every statement's row count is added up: the reported
//! number of changes is what Postgres wrote, not what was asked for. Nothing here waits for the
//! agent.
//!
//! A [`Fingerprint`] is the row count, the sum of one integer column that every update changes
//! and the total length of one text column: cheap on both sides, and different from the final
//! one at every point of a backlog before its end (each change moves one of the three).

use anyhow::{Context as _, Result};
use starrocks_sim::catalog::Value;
use starrocks_sim::Sim;
use tokio_postgres::Client;

use super::harness::agent::TARGET_DB;

/// The 10-column shape of the mixed, onetxn, sustained and snapshot tables.
pub const TEN_COLUMNS: &str = "(id int8 PRIMARY KEY, a int4, b int8, c bool, d text, e text, \
    f numeric(12,2), g timestamptz, h date, i float8)";

/// Inserts rows `$1..=$2` into a [`TEN_COLUMNS`] table.
pub fn ten_column_insert(table: &str) -> String {
    format!(
        "INSERT INTO {table} SELECT g, g % 1000, g * 7, g % 2 = 0, 'name-' || g, md5(g::text), \
         (g * 1.5)::numeric(12,2), now(), current_date, g::float8 / 3 \
         FROM generate_series($1::int8, $2::int8) g"
    )
}

/// What a workload generator wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// Rows inserted, updated or deleted.
    pub changes: u64,
    pub txns: u64,
}

/// Which columns fingerprint a table.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub table: &'static str,
    /// An integer column every update changes (summed).
    pub int_column: &'static str,
    /// A text column whose total length is compared, if any.
    pub text_column: Option<&'static str>,
}

/// Row count, sum of the integer column, total bytes of the text column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub rows: u64,
    pub int_sum: i128,
    pub text_bytes: u64,
}

impl Shape {
    /// The source table's fingerprint.
    pub async fn source(&self, client: &Client) -> Result<Fingerprint> {
        let text = self.text_column.map_or("0".to_owned(), |c| {
            format!("coalesce(sum(octet_length({c})), 0)")
        });
        let sql = format!(
            "SELECT count(*)::int8, coalesce(sum({}), 0)::text, ({text})::int8 FROM {}",
            self.int_column, self.table
        );
        let row = client
            .query_one(&sql, &[])
            .await
            .with_context(|| format!("fingerprint of {}", self.table))?;
        let int_sum: String = row.get(1);
        Ok(Fingerprint {
            rows: row.get::<_, i64>(0) as u64,
            int_sum: int_sum
                .parse()
                .with_context(|| format!("sum of {}: {int_sum}", self.int_column))?,
            text_bytes: row.get::<_, i64>(2) as u64,
        })
    }

    /// Rows in the target table (0 while it does not exist).
    pub fn target_rows(&self, sim: &Sim) -> u64 {
        sim.catalog().row_count(TARGET_DB, self.table).unwrap_or(0) as u64
    }

    /// The target table's fingerprint (`None` while the table or a column is missing).
    pub fn target(&self, sim: &Sim) -> Option<Fingerprint> {
        sim.catalog().read(|catalog| {
            let table = catalog.table(TARGET_DB, self.table).ok()?;
            let (int_index, _) = table.column(self.int_column)?;
            let text_index = match self.text_column {
                Some(name) => Some(table.column(name)?.0),
                None => None,
            };
            let mut print = Fingerprint {
                rows: 0,
                int_sum: 0,
                text_bytes: 0,
            };
            for row in table.rows() {
                print.rows += 1;
                if let Value::Int(v) = row[int_index] {
                    print.int_sum += v;
                }
                if let Some(Value::Text(text)) = text_index.map(|i| &row[i]) {
                    print.text_bytes += text.len() as u64;
                }
            }
            Some(print)
        })
    }
}

/// Inserts rows `first..=last` with `insert` (`$1`, `$2` the range) in transactions of
/// `txn_rows`.
pub async fn insert_range(
    client: &Client,
    insert: &str,
    first: u64,
    last: u64,
    txn_rows: u64,
) -> Result<Written> {
    let statement = client.prepare(insert).await.context("prepare the insert")?;
    let mut written = Written::default();
    let mut next = first;
    while next <= last {
        let end = (next + txn_rows - 1).min(last);
        written.changes += client
            .execute(&statement, &[&(next as i64), &(end as i64)])
            .await
            .context("insert")?;
        written.txns += 1;
        next = end + 1;
    }
    Ok(written)
}

// --- narrow -------------------------------------------------------------------------------------

pub const NARROW: Shape = Shape {
    table: "narrow",
    int_column: "v",
    text_column: None,
};
pub const NARROW_DDL: &str = "CREATE TABLE narrow (id int8 PRIMARY KEY, v int8)";
pub const NARROW_INSERT: &str =
    "INSERT INTO narrow SELECT g, g * 3 FROM generate_series($1::int8, $2::int8) g";

// --- mixed --------------------------------------------------------------------------------------

pub const MIXED: Shape = Shape {
    table: "mixed",
    int_column: "b",
    text_column: Some("d"),
};

/// `changes` changes to `mixed`, whose rows `1..=seed_rows` exist: transactions of `txn_rows`
/// changes, 20% deletes of the oldest rows, 30% updates cycling over the live rows, 50% inserts
/// of new ids (in that order within each transaction).
pub async fn mixed_backlog(
    client: &mut Client,
    seed_rows: u64,
    changes: u64,
    txn_rows: u64,
) -> Result<Written> {
    let insert = client.prepare(&ten_column_insert("mixed")).await?;
    let update = client
        .prepare(
            "UPDATE mixed SET a = a + 1, b = b + 1, d = 'upd-' || id || '-' || b, g = now() \
             WHERE id BETWEEN $1 AND $2",
        )
        .await?;
    let delete = client
        .prepare("DELETE FROM mixed WHERE id BETWEEN $1 AND $2")
        .await?;
    let (mut low, mut high) = (1i64, seed_rows as i64);
    let mut cursor = low;
    let mut written = Written::default();
    while written.changes < changes {
        let size = (changes - written.changes).min(txn_rows) as i64;
        let deletes = size / 5;
        let updates = size * 3 / 10;
        let inserts = size - deletes - updates;
        let txn = client.transaction().await?;
        if deletes > 0 && high - low + 1 > deletes + updates {
            written.changes += txn.execute(&delete, &[&low, &(low + deletes - 1)]).await?;
            low += deletes;
        }
        if updates > 0 && high >= low {
            if cursor < low || cursor > high {
                cursor = low;
            }
            let end = (cursor + updates - 1).min(high);
            written.changes += txn.execute(&update, &[&cursor, &end]).await?;
            cursor = end + 1;
        }
        if inserts > 0 {
            written.changes += txn
                .execute(&insert, &[&(high + 1), &(high + inserts)])
                .await?;
            high += inserts;
        }
        txn.commit().await?;
        written.txns += 1;
    }
    Ok(written)
}

// --- toast --------------------------------------------------------------------------------------

pub const TOAST: Shape = Shape {
    table: "toast",
    int_column: "n",
    text_column: Some("big"),
};

/// `big` is stored out of line uncompressed (`EXTERNAL`): every value of 2.5 kB and more is a
/// TOAST pointer in the heap row, so an update that leaves it alone decodes as unchanged TOAST.
pub const TOAST_DDL: &str =
    "CREATE TABLE toast (id int8 PRIMARY KEY, n int8 NOT NULL, big text NOT NULL); \
     ALTER TABLE toast ALTER COLUMN big SET STORAGE EXTERNAL";
/// 80 × 32 = 2 560 bytes per value.
pub const TOAST_INSERT: &str = "INSERT INTO toast SELECT g, 0, repeat(md5(g::text), 80) \
     FROM generate_series($1::int8, $2::int8) g";

/// `changes` updates of `toast`, whose rows `1..=rows` exist, cycling over them in transactions
/// of `txn_rows`: in each, half the rows get a new `big` (2 560 to 2 624 bytes, so its length
/// moves) and the other half only `n + 1` (unchanged TOAST).
pub async fn toast_backlog(
    client: &mut Client,
    rows: u64,
    changes: u64,
    txn_rows: u64,
) -> Result<Written> {
    let touching = client
        .prepare(
            "UPDATE toast SET n = n + 1, \
             big = repeat(md5(id::text || '-' || $3::int8::text), (80 + (id + $3::int8) % 3)::int) \
             WHERE id BETWEEN $1 AND $2",
        )
        .await?;
    let not_touching = client
        .prepare("UPDATE toast SET n = n + 1 WHERE id BETWEEN $1 AND $2")
        .await?;
    let rows = rows as i64;
    let mut cursor = 1i64;
    let mut written = Written::default();
    while written.changes < changes {
        let size = ((changes - written.changes).min(txn_rows) as i64).min(rows);
        let half = (size / 2).max(1);
        let txn = client.transaction().await?;
        let generation = written.txns as i64;
        if let Some((first, last)) = next_range(&mut cursor, half, rows) {
            written.changes += txn
                .execute(&touching, &[&first, &last, &generation])
                .await?;
        }
        if let Some((first, last)) = next_range(&mut cursor, size - half, rows) {
            written.changes += txn.execute(&not_touching, &[&first, &last]).await?;
        }
        txn.commit().await?;
        written.txns += 1;
    }
    Ok(written)
}

/// The next `count` ids from `cursor` within `1..=rows`, wrapping to 1 at the end.
fn next_range(cursor: &mut i64, count: i64, rows: i64) -> Option<(i64, i64)> {
    if count <= 0 {
        return None;
    }
    if *cursor > rows {
        *cursor = 1;
    }
    let first = *cursor;
    let last = (first + count - 1).min(rows);
    *cursor = last + 1;
    Some((first, last))
}

// --- onetxn -------------------------------------------------------------------------------------

pub const ONETXN: Shape = Shape {
    table: "onetxn",
    int_column: "b",
    text_column: Some("d"),
};
