//! The snapshot copies each row exactly once: chunk boundaries are planned and compared in the
//! key's own type order (with the column's collation), not as text, so chunks never overlap.
//!
//! Counted where a duplicate cannot hide: the sim's per-table `rows_loaded` counter and the
//! copy's recorded chunk rows (what status reports), not the target's row count (a Primary Key
//! table deduplicates, which is how overlapping chunks went unnoticed). Keys whose text order
//! differs from their type order (negative and multi-digit integers, numerics of mixed scale),
//! text under an ICU collation, uuid, timestamp, timestamptz and a composite key, through both
//! planners: sampled quantiles and the exact numbering.

use std::time::Duration;

use crate::harness::agent::{start_sim, AgentSpec, TARGET_DB};
use crate::harness::Cluster;

/// Rows per table: several chunks of [`sampled`] and [`numbered`] sizes.
const ROWS: i64 = 5000;

/// `(table, DDL and rows)`: every key type, with values whose text order is not their order.
const TABLES: &[(&str, &str)] = &[
    (
        // -1 < 2 < 10 as integers; '-1' > '-10' and '10' < '2' as text.
        "k_int",
        "CREATE TABLE k_int (id int PRIMARY KEY, v text);
         INSERT INTO k_int SELECT g - 2500, 'v' || g FROM generate_series(1, 5000) g;",
    ),
    (
        "k_bigint",
        "CREATE TABLE k_bigint (id bigint PRIMARY KEY, v text);
         INSERT INTO k_bigint SELECT (g - 2500) * 3000000007, 'v' || g
           FROM generate_series(1, 5000) g;",
    ),
    (
        // Unconstrained numeric, half the values with trailing zeros (`0.12000` next to `0.13`):
        // a boundary's text reads back as the equal value whatever its scale.
        "k_numeric",
        "CREATE TABLE k_numeric (id numeric PRIMARY KEY, v text);
         INSERT INTO k_numeric SELECT (g - 2500) * 0.01
             * CASE WHEN g % 2 = 0 THEN 1.000 ELSE 1 END, 'v' || g
           FROM generate_series(1, 5000) g;",
    ),
    (
        // The ICU order (case and accents second) is neither the C order nor the byte order.
        "k_text",
        "CREATE TABLE k_text (k text COLLATE \"en-x-icu\" PRIMARY KEY, v text);
         INSERT INTO k_text SELECT CASE g % 4 WHEN 0 THEN 'Key ' WHEN 1 THEN 'key '
             WHEN 2 THEN 'äpfel ' ELSE '_Z ' END || g, 'v' || g
           FROM generate_series(1, 5000) g;",
    ),
    (
        "k_uuid",
        "CREATE TABLE k_uuid (id uuid PRIMARY KEY, v text);
         INSERT INTO k_uuid SELECT md5(g::text)::uuid, 'v' || g FROM generate_series(1, 5000) g;",
    ),
    (
        "k_ts",
        "CREATE TABLE k_ts (at timestamp PRIMARY KEY, v text);
         INSERT INTO k_ts SELECT timestamp '2000-01-01'
             + (g - 2500) * interval '1 day 7 hours 13 minutes 0.25 seconds', 'v' || g
           FROM generate_series(1, 5000) g;",
    ),
    (
        "k_tstz",
        "CREATE TABLE k_tstz (at timestamptz PRIMARY KEY, v text);
         INSERT INTO k_tstz SELECT timestamptz '2000-01-01 00:00:00+05:30'
             + (g - 2500) * interval '3 hours 0.5 seconds', 'v' || g
           FROM generate_series(1, 5000) g;",
    ),
    (
        // (int, text): the first column alone orders differently as text.
        "k_comp",
        "CREATE TABLE k_comp (a int, b text, v text, PRIMARY KEY (a, b));
         INSERT INTO k_comp SELECT g % 23 - 11, 'b' || g, 'v' || g
           FROM generate_series(1, 5000) g;",
    ),
];

/// Copies every table of [`TABLES`] with `STARWAL_SNAPSHOT=only` and `chunk_rows` per chunk, and
/// asserts each table's rows were loaded once: loaded rows == recorded chunk rows == source rows.
/// With `analyze`, the tables are analyzed first, so the planner's estimate (not `count(*)`)
/// sizes the chunks.
async fn copies_each_row_once(database: &str, chunk_rows: u64, analyze: bool) {
    let db = Cluster::shared().create_database(database).await;
    let client = db.owner_client().await;
    // Servers built without ICU (the PG 14/16/17/18 builds CI installs) lack `en-x-icu`: take the
    // first linguistic collation the server has, else the default one.
    let collation: Option<String> = client
        .query_opt(
            "SELECT collname FROM pg_collation
              WHERE collname IN ('en-x-icu', 'und-x-icu', 'en_US.utf8', 'en_US.UTF-8')
                AND collencoding IN (-1, pg_char_to_encoding('UTF8'))
              ORDER BY collname = 'en-x-icu' DESC, collname LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .map(|row| row.get(0));
    let collate = match &collation {
        Some(name) => format!("COLLATE \"{name}\""),
        None => String::new(),
    };
    eprintln!("k_text collation: {collation:?}");
    for (_, sql) in TABLES {
        let sql = sql.replace("COLLATE \"en-x-icu\"", &collate);
        client.batch_execute(&sql).await.unwrap();
    }
    if analyze {
        for (table, _) in TABLES {
            client
                .batch_execute(&format!("ANALYZE {table}"))
                .await
                .unwrap();
        }
    }
    let sim = start_sim();
    let tables = TABLES
        .iter()
        .map(|(table, _)| format!("public.{table}"))
        .collect::<Vec<_>>()
        .join(",");
    let spec = AgentSpec::new(&db, &sim, &tables)
        .var("STARWAL_SNAPSHOT", "only")
        .var("STARWAL_SNAPSHOT_WORKERS", "2")
        .var("STARWAL_SNAPSHOT_CHUNK_ROWS", &chunk_rows.to_string());
    let mut agent = spec.start();
    let status = agent.wait(Duration::from_secs(300));
    let log = agent.log();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "`only` exits 0 once copied:\n{log}"
    );

    let mut wrong = Vec::new();
    for (table, _) in TABLES {
        let source: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(source, ROWS, "{table}: the fixture has {ROWS} rows");
        let (chunks, recorded): (i64, i64) = client
            .query_one(
                "SELECT count(*), coalesce(sum(rows_copied), 0)::int8 \
                   FROM starwal.snapshot_chunks WHERE slot = $1 AND source_table = $2",
                &[&spec.slot(), &format!("public.{table}")],
            )
            .await
            .map(|row| (row.get(0), row.get(1)))
            .unwrap();
        // Chunking is exercised: about ROWS / chunk_rows chunks, never one.
        assert!(chunks >= 5, "{table}: only {chunks} chunks:\n{log}");
        let loaded = sim.counters(TARGET_DB, table).rows_loaded;
        let stored = sim
            .catalog()
            .read(|catalog| catalog.row_count(TARGET_DB, table))
            .unwrap_or(0);
        if loaded != ROWS as u64 || recorded != ROWS || stored != ROWS as usize {
            wrong.push(format!(
                "{table}: {loaded} rows loaded, {recorded} recorded in {chunks} chunks, \
                 {stored} in the target, of {ROWS}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "each row is copied once:\n{}",
        wrong.join("\n")
    );
}

/// 500 rows per chunk: the sample is 200 keys per chunk, 40 % of the table, so the boundaries
/// are quantiles of a `TABLESAMPLE` sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_copies_each_row_once_with_sampled_boundaries() {
    copies_each_row_once("snap_once_sampled", 500, false).await;
}

/// As [`snapshot_copies_each_row_once_with_sampled_boundaries`] with analyzed tables: the
/// chunks are sized from `pg_class`'s estimate instead of a `count(*)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_copies_each_row_once_with_estimated_row_counts() {
    copies_each_row_once("snap_once_estimated", 500, true).await;
}

/// 300 rows per chunk: a sample would be two thirds of the table, so every key is numbered
/// (`row_number()`) and every 300th is a boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_copies_each_row_once_with_numbered_boundaries() {
    copies_each_row_once("snap_once_numbered", 300, false).await;
}
