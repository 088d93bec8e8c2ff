//! The initial snapshot end to end: rows that existed before starwal started reach StarRocks,
//! exactly, also with writes running during the copy, after kill -9 mid-copy, for integer,
//! text, uuid and composite keys, empty tables, and in `only` mode.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::agent::{
    diff, source_rows, start_sim, target_rows, wait_for_rows, AgentSpec, Rows,
};
use crate::harness::{Cluster, TestDatabase};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Source and target rows of each `(table, columns, source select list as the target shows
/// them)` are equal (waits up to TIMEOUT for the target).
async fn assert_exact(
    client: &tokio_postgres::Client,
    sim: &starrocks_sim::Sim,
    tables: &[(&str, &[&str], &str)],
) {
    for (table, columns, select) in tables {
        let source = source_rows(client, &format!("SELECT {select} FROM {table}")).await;
        let got = wait_for_rows(&source, TIMEOUT, || target_rows(sim, table, columns)).await;
        assert!(got == source, "{table}: {}", diff(&source, &got));
    }
}

/// Writes inserts, updates, deletes and key changes to `t_int` until `stop` is set; returns
/// the number of transactions.
fn spawn_traffic(db: &TestDatabase, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let db = db.clone();
    tokio::spawn(async move {
        let client = db.owner_client().await;
        let mut round = 0u64;
        while !stop.load(Ordering::SeqCst) {
            round += 1;
            let sql = format!(
                "BEGIN;
                 INSERT INTO t_int VALUES ({new}, 'new {round}', {round});
                 UPDATE t_int SET v = 'upd {round}', n = n + 1 WHERE id = {upd};
                 DELETE FROM t_int WHERE id = {del};
                 UPDATE t_int SET id = id + 1000000 WHERE id = {moved};
                 UPDATE t_comp SET v = 'upd {round}' WHERE b = {b};
                 COMMIT;",
                new = 2_000_000 + round,
                upd = (round * 37) % 20_000,
                del = (round * 53) % 20_000,
                moved = (round * 71) % 20_000,
                b = round % 100,
            );
            client.batch_execute(&sql).await.expect("traffic");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        round
    })
}

async fn create_tables(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE t_int (id bigint PRIMARY KEY, v text, n int);
             INSERT INTO t_int SELECT g, 'v' || g, g FROM generate_series(1, 20000) g;
             CREATE TABLE t_text (k text PRIMARY KEY, v text);
             INSERT INTO t_text SELECT 'key ' || g || E' tab\\there ''q''', md5(g::text)
               FROM generate_series(1, 3000) g;
             CREATE TABLE t_uuid (id uuid PRIMARY KEY, at timestamptz, amount numeric(20,6));
             INSERT INTO t_uuid SELECT md5(g::text)::uuid, '2024-01-01 00:00:00+02'::timestamptz
               + g * interval '1 minute', g * 1.000001 FROM generate_series(1, 3000) g;
             CREATE TABLE t_comp (a text, b int, v text, PRIMARY KEY (a, b));
             INSERT INTO t_comp SELECT 'a' || (g % 30), g, E'line\\nbreak ' || g
               FROM generate_series(1, 3000) g;
             CREATE TABLE t_empty (id int PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
}

const TABLES: &[(&str, &[&str], &str)] = &[
    ("t_int", &["id", "v", "n"], "id::text, v, n::text"),
    ("t_text", &["k", "v"], "k, v"),
    (
        "t_uuid",
        &["id", "at", "amount"],
        // DATETIME has no zone: the UTC wall time.
        "id::text, (at AT TIME ZONE 'UTC')::text, amount::text",
    ),
    ("t_comp", &["a", "b", "v"], "a, b::text, v"),
    ("t_empty", &["id", "v"], "id::text, v"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_copies_every_key_type_exactly_while_the_source_is_written() {
    let db = Cluster::shared().create_database("snap_keys").await;
    let client = db.owner_client().await;
    create_tables(&client).await;
    let sim = start_sim();
    let spec = AgentSpec::new(
        &db,
        &sim,
        "public.t_int,public.t_text,public.t_uuid,public.t_comp,public.t_empty",
    )
    .var("STARWAL_SNAPSHOT", "initial")
    .var("STARWAL_SNAPSHOT_WORKERS", "3")
    .var("STARWAL_SNAPSHOT_CHUNK_ROWS", "700");
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = spawn_traffic(&db, stop.clone());
    let agent = spec.start_streaming().await;
    // Keep writing a little after the copy, while streaming.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let rounds = traffic.await.unwrap();
    assert!(
        rounds > 10,
        "the traffic ran during the copy ({rounds} transactions)"
    );
    assert_exact(&client, &sim, TABLES).await;
    let log = agent.log();
    assert!(log.contains("snapshot copy done"), "{log}");
    // Every table's copy is recorded as done, the empty one included.
    let done: i64 = client
        .query_one(
            "SELECT count(*) FROM starwal.snapshot_tables WHERE slot = $1 AND state = 'done'",
            &[&spec.slot()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_only_copies_a_million_rows_and_exits_zero() {
    let db = Cluster::shared().create_database("snap_only").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE big (id bigint PRIMARY KEY, v text);
             INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, 1000000) g;
             CREATE TABLE small (id int PRIMARY KEY);
             INSERT INTO small SELECT generate_series(1, 10);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.big,public.small").var("STARWAL_SNAPSHOT", "only");
    let mut agent = spec.start();
    let status = agent.wait(Duration::from_secs(600));
    let log = agent.log();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "`only` exits 0 once copied:\n{log}"
    );
    assert!(
        !log.contains("streaming changes"),
        "`only` never streams:\n{log}"
    );
    let count = |table: &str| {
        sim.catalog()
            .read(|catalog| catalog.row_count(crate::harness::agent::TARGET_DB, table))
            .unwrap_or(0)
    };
    assert_eq!(count("big"), 1_000_000);
    assert_eq!(count("small"), 10);
    let source: Rows = source_rows(&client, "SELECT id::text FROM small").await;
    assert_eq!(target_rows(&sim, "small", &["id"]), source);
    // The slot stays: a later `run` streams from the copy's consistent point.
    let slot_exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&spec.slot()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(slot_exists);
}
