//! Issue 14, item 3: streamed transactions (`STARWAL_STREAMING=on`) across a restart that changes
//! whether Postgres streams them, and a streamed transaction whose table parks, through
//! `starwal run` against real Postgres and the sim.
//!
//! Postgres decides per walsender whether a transaction streams (`logical_decoding_work_mem`,
//! taken from `ALTER DATABASE … SET` by each new walsender), so the same source transaction can
//! reach one run streamed and the next whole, or the reverse:
//! - streamed, prepared and recorded in `streams_in_flight`, kill -9 before its StarRocks commit;
//!   the next walsender sends it whole: the restart committed it, so its changes are dropped
//!   (`Streams::committed_whole`), never loaded a second time;
//! - sent whole (table mode's parts), prepared, kill -9; the next walsender streams it: the
//!   restart committed it, so the streamed copy must not be loaded again either — a later
//!   transaction already in StarRocks would be overwritten by it;
//! - a seeded workload flipping `logical_decoding_work_mem` between 64 kB and 64 MB at every
//!   kill -9, with a checker reading the sim throughout (`n` per key never goes down).
//!
//! And a streamed transaction over three tables whose middle table refuses the load for good:
//! the other two commit, the refused one parks (invariant 13), status and metrics say what is
//! held, and `starwal retry` brings it in.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use starrocks_sim::catalog::Value;
use starrocks_sim::{FaultKind, LoadFault, Sim, TxnEffect, TxnOp};

use crate::harness::agent::{
    diff, metric_sample, metrics_text, source_rows, start_sim, status_json, target_rows,
    wait_until, Agent, AgentSpec, TARGET_DB,
};
use crate::harness::seeded::{seed, Lcg};
use crate::harness::{Cluster, TestDatabase};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Whether the shared cluster can stream in-progress transactions (PG 14+); says so when not.
fn streams() -> bool {
    let major = Cluster::shared().major();
    if major < 14 {
        eprintln!("PG {major}: no streaming of in-progress transactions before 14; skipped");
    }
    major >= 14
}

/// A fresh database whose new walsenders stream transactions above `work_mem`.
async fn database(prefix: &str, work_mem: &str) -> TestDatabase {
    let db = Cluster::shared().create_database(prefix).await;
    set_work_mem(&db, work_mem).await;
    db
}

/// Sets the database's `logical_decoding_work_mem` (the next walsender takes it).
async fn set_work_mem(db: &TestDatabase, work_mem: &str) {
    db.owner_client()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET logical_decoding_work_mem = '{work_mem}'",
            db.name
        ))
        .await
        .unwrap();
}

fn starwal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_starwal"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run starwal")
}

/// `id → n` of target table `table` (empty when it does not exist yet).
fn target_n(sim: &Sim, table: &str) -> BTreeMap<i128, i128> {
    sim.catalog().read(|c| {
        let Ok(table) = c.table(TARGET_DB, table) else {
            return BTreeMap::new();
        };
        table
            .rows()
            .filter_map(|row| match (&row[0], &row[1]) {
                (Value::Int(id), Value::Int(n)) => Some((*id, *n)),
                _ => None,
            })
            .collect()
    })
}

/// Per key, `n` never goes down (every source change raises it): remembers the highest seen.
#[derive(Default)]
struct NeverBack {
    seen: BTreeMap<(String, i128), i128>,
}

impl NeverBack {
    /// Reads `tables` of the sim; the first key whose `n` went down, as a message.
    fn look(&mut self, sim: &Sim, tables: &[&str]) -> Option<String> {
        for table in tables {
            for (id, n) in target_n(sim, table) {
                let before = self.seen.entry((table.to_string(), id)).or_insert(n);
                if n < *before {
                    return Some(format!(
                        "{table}: key {id} went from n = {before} back to {n}"
                    ));
                }
                *before = n;
            }
        }
        None
    }
}

/// The rows of `tables` in source and target, once equal (or the last seen, after `TIMEOUT`),
/// checking `never` on every read.
async fn settle(
    sim: &Sim,
    client: &tokio_postgres::Client,
    tables: &[&str],
    never: &mut NeverBack,
    agent: &Agent,
) {
    let deadline = Instant::now() + TIMEOUT;
    let mut source = Vec::new();
    for table in tables {
        source.push(source_rows(client, &format!("SELECT id::text, n::text FROM {table}")).await);
    }
    loop {
        if let Some(back) = never.look(sim, tables) {
            panic!("{back}\n{}", agent.log());
        }
        let target: Vec<_> = tables
            .iter()
            .map(|table| target_rows(sim, table, &["id", "n"]))
            .collect();
        if target == source {
            return;
        }
        if Instant::now() >= deadline {
            let diffs: Vec<String> = tables
                .iter()
                .zip(source.iter().zip(&target))
                .map(|(table, (s, t))| format!("{table}: {}", diff(s, t)))
                .collect();
            panic!(
                "target != source after {TIMEOUT:?}\n{}\n{}",
                diffs.join("\n"),
                agent.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// No label of the target database committed twice.
fn assert_no_label_twice(sim: &Sim, log: &str) {
    for (label, counters) in sim.label_counters(TARGET_DB) {
        assert!(
            counters.commits <= 1,
            "{label} was committed {} times\n{log}",
            counters.commits
        );
    }
}

/// Rows carried by committed loads (plain or transaction) into `table`, counting each label
/// once per commit: a source transaction loaded twice under two labels counts its rows twice.
fn rows_committed(sim: &Sim, table: &str) -> u64 {
    sim.label_counters(TARGET_DB)
        .values()
        .filter(|counters| counters.tables.iter().any(|t| t == table))
        .map(|counters| counters.rows)
        .sum()
}

/// The labels of committed loads into `table` that carry a streamed transaction (`…_s`).
fn streamed_labels_committed(sim: &Sim, table: &str) -> Vec<String> {
    sim.label_counters(TARGET_DB)
        .into_iter()
        .filter(|(label, counters)| {
            label.ends_with("_s")
                && counters.commits > 0
                && counters.tables.iter().any(|t| t == table)
        })
        .map(|(label, _)| label)
        .collect()
}

/// Loads into streamed StarRocks transactions (labels ending `_s`) the sim has taken so far.
fn streamed_loads(sim: &Sim) -> usize {
    sim.txn_events(0)
        .iter()
        .filter(|event| event.op == "load" && event.label.ends_with("_s"))
        .count()
}

/// Streamed transactions the checkpoint store holds for `slot`.
async fn streams_in_flight(client: &tokio_postgres::Client, slot: &str) -> Vec<String> {
    client
        .query(
            "SELECT target_table || ' ' || label || ' ' || coalesce(commit_lsn::text, 'open') \
             FROM starwal.streams_in_flight WHERE slot = $1",
            &[&slot],
        )
        .await
        .map(|rows| rows.iter().map(|row| row.get(0)).collect())
        .unwrap_or_default()
}

/// Waits until `query` (one bool column, `$1` the slot) returns true.
async fn wait_sql(client: &tokio_postgres::Client, slot: &str, query: &str, agent: &Agent) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let row = client.query_opt(query, &[&slot]).await.unwrap();
        if row.is_some_and(|row| row.get::<_, Option<bool>>(0) == Some(true)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never true: {query}\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every key of `table` in `ids` has `n` = `n` in the target.
async fn wait_target_n(
    sim: &Sim,
    table: &str,
    ids: std::ops::RangeInclusive<i128>,
    n: i128,
    agent: &Agent,
) {
    let reached = wait_until(TIMEOUT, || {
        let rows = target_n(sim, table);
        ids.clone().all(|id| rows.get(&id) == Some(&n))
    })
    .await;
    assert!(
        reached,
        "{table}: keys never reached n = {n}\n{}",
        agent.log()
    );
}

/// Brief item 1: a streamed transaction over `a` and `b` is prepared and recorded on both;
/// `a` commits, `b`'s commit is held, and a later plain transaction on `a` loads meanwhile.
/// kill -9; before the restart the database stops streaming (64 MB), so Postgres sends the
/// transaction whole at its COMMIT. The restart commits `b`'s StarRocks transaction and must
/// drop the whole copy on both tables: every row of it is committed once, the later change on
/// `a` is never overwritten, target = source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_prepared_then_sent_whole_after_restart_is_loaded_once() {
    streamed_then_sent_whole(TxnOp::Commit).await;
}

/// The same with `b`'s prepare held instead: `b`'s StarRocks transaction is open at the kill,
/// so the restart rolls it back and `b` gets the transaction from the whole copy, once, while
/// `a` (committed) drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_half_prepared_then_sent_whole_after_restart_is_loaded_once() {
    streamed_then_sent_whole(TxnOp::Prepare).await;
}

/// The run of the two tests above; `held`: `b`'s step held at the kill.
async fn streamed_then_sent_whole(held: TxnOp) {
    if !streams() {
        return;
    }
    const ROWS: i128 = 3000;
    let db = database("engine_txn_stream_restart_whole", "64kB").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE a (id int8 PRIMARY KEY, n int8 NOT NULL, pad text);
             CREATE TABLE b (id int8 PRIMARY KEY, n int8 NOT NULL, pad text);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_FLUSH_ROWS", "500")
        .var("STARWAL_TXN_IDLE_TIMEOUT_S", "60");
    let slot = spec.slot().to_owned();
    let mut agent = spec.start_streaming().await;
    // `b`'s step is held before it takes effect, long enough for the kill to land in it.
    sim.faults().inject(
        LoadFault::new(FaultKind::TxnStep {
            op: held,
            effect: TxnEffect::StallBefore,
            stall_ms: 90_000,
        })
        .on_table(TARGET_DB, "b"),
    );
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO a SELECT g, 1, repeat(md5(g::text), 8) FROM generate_series(1, {ROWS}) g;
             INSERT INTO b SELECT g, 1, repeat(md5(g::text), 8) FROM generate_series(1, {ROWS}) g;
             COMMIT;"
        ))
        .await
        .unwrap();
    let mut never = NeverBack::default();
    wait_target_n(&sim, "a", 1..=ROWS, 1, &agent).await;
    let b_recorded = if held == TxnOp::Commit {
        "SELECT bool_or(commit_lsn IS NOT NULL) FROM starwal.streams_in_flight \
         WHERE slot = $1 AND target_table = 'b'"
    } else {
        "SELECT bool_or(commit_lsn IS NULL) FROM starwal.streams_in_flight \
         WHERE slot = $1 AND target_table = 'b'"
    };
    wait_sql(&client, &slot, b_recorded, &agent).await;
    assert_eq!(
        streamed_labels_committed(&sim, "a").len(),
        1,
        "the transaction was not streamed into `a`\n{}",
        agent.log()
    );
    // A later transaction on `a`, loaded while `b`'s commit is held.
    client
        .batch_execute("UPDATE a SET n = 2 WHERE id <= 40")
        .await
        .unwrap();
    wait_target_n(&sim, "a", 1..=40, 2, &agent).await;
    assert!(never.look(&sim, &["a", "b"]).is_none());
    agent.kill9();
    sim.faults().clear();
    // The next walsender does not stream it: Postgres sends it whole at its COMMIT.
    set_work_mem(&db, "64MB").await;
    let streamed_before = streamed_loads(&sim);
    agent = spec.start();
    // A marker after it: once it is in, everything before it is decided.
    client
        .batch_execute("INSERT INTO b VALUES (-1, 1, 'marker')")
        .await
        .unwrap();
    settle(&sim, &client, &["a", "b"], &mut never, &agent).await;
    let log = agent.log();
    assert!(
        log.contains("committed the streamed transaction a previous run had prepared"),
        "the restart did not commit the prepared streamed transaction\n{log}"
    );
    if held == TxnOp::Prepare {
        assert!(
            log.contains("rolled back the streamed transaction a previous run left open"),
            "the restart did not roll back b's open streamed transaction\n{log}"
        );
    }
    assert_no_label_twice(&sim, &log);
    assert_eq!(
        streamed_loads(&sim),
        streamed_before,
        "the 64 MB walsender streamed it: the test did not test the whole path\n{log}"
    );
    // Each source row once: the streamed transaction's rows, the 40 updates, the marker.
    assert_eq!(
        rows_committed(&sim, "b"),
        ROWS as u64 + 1,
        "rows committed into b (the transaction loaded twice?)\n{log}"
    );
    assert_eq!(
        rows_committed(&sim, "a"),
        ROWS as u64 + 40,
        "rows committed into a (the transaction loaded twice?)\n{log}"
    );
    agent.stop_cleanly();
    assert_eq!(
        streams_in_flight(&client, &slot).await,
        Vec::<String>::new(),
        "records left after a clean stop"
    );
}

/// Brief item 1, the reverse: a transaction over `a` and `b` larger than a batch, sent whole
/// (the database does not stream: 64 MB), goes into table mode's StarRocks transactions; `a`
/// commits, `b`'s commit is held, and a later transaction on `a` (also larger than a batch, so
/// a StarRocks transaction too, but small enough never to stream) commits meanwhile. kill -9;
/// before the restart the database streams above 64 kB, so Postgres streams the first
/// transaction again. The restart committed `b`'s prepared transaction and `a`'s later one; the
/// streamed copy must not be loaded again: it would put `a`'s keys back to before the later
/// transaction, and that one, skipped by the restart rule, never comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_txn_prepared_whole_then_streamed_after_restart_is_loaded_once() {
    if !streams() {
        return;
    }
    const ROWS: i128 = 2000;
    const LATER: i128 = 150;
    let db = database("engine_txn_stream_restart_rev", "64MB").await;
    let client = db.owner_client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE a (id int8 PRIMARY KEY, n int8 NOT NULL);
             CREATE TABLE b (id int8 PRIMARY KEY, n int8 NOT NULL);
             INSERT INTO a SELECT g, 0 FROM generate_series(1, {ROWS}) g;
             INSERT INTO b SELECT g, 0 FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_FLUSH_ROWS", "100")
        .var("STARWAL_TXN_IDLE_TIMEOUT_S", "60");
    let slot = spec.slot().to_owned();
    let mut agent = spec.start_streaming().await;
    let mut never = NeverBack::default();
    wait_target_n(&sim, "b", 1..=ROWS, 0, &agent).await;
    sim.faults().inject(
        LoadFault::new(FaultKind::TxnStep {
            op: TxnOp::Commit,
            effect: TxnEffect::StallBefore,
            stall_ms: 90_000,
        })
        .on_table(TARGET_DB, "b"),
    );
    client
        .batch_execute("BEGIN; UPDATE a SET n = 1; UPDATE b SET n = 1; COMMIT;")
        .await
        .unwrap();
    wait_target_n(&sim, "a", 1..=ROWS, 1, &agent).await;
    wait_sql(
        &client,
        &slot,
        "SELECT bool_or(prepared) FROM starwal.loads_in_flight \
         WHERE slot = $1 AND target_table = 'b'",
        &agent,
    )
    .await;
    assert!(
        streamed_labels_committed(&sim, "a").is_empty(),
        "the 64 MB walsender streamed it\n{}",
        agent.log()
    );
    client
        .batch_execute(&format!("UPDATE a SET n = 2 WHERE id <= {LATER}"))
        .await
        .unwrap();
    wait_target_n(&sim, "a", 1..=LATER, 2, &agent).await;
    assert!(never.look(&sim, &["a", "b"]).is_none());
    agent.kill9();
    sim.faults().clear();
    // The next walsender streams it.
    set_work_mem(&db, "64kB").await;
    agent = spec.start();
    let streamed_before = streamed_loads(&sim);
    client
        .batch_execute("INSERT INTO b VALUES (-1, 1)")
        .await
        .unwrap();
    settle(&sim, &client, &["a", "b"], &mut never, &agent).await;
    let log = agent.log();
    assert!(
        streamed_loads(&sim) > streamed_before,
        "the 64 kB walsender did not stream it: the test did not test the streamed path\n{log}"
    );
    assert!(
        log.contains("committed the StarRocks transaction a previous run had prepared"),
        "the restart did not commit the prepared transaction\n{log}"
    );
    assert_no_label_twice(&sim, &log);
    // Copy (ROWS), the transaction (ROWS), the marker on b; plus the later LATER on a.
    assert_eq!(
        rows_committed(&sim, "b"),
        2 * ROWS as u64 + 1,
        "rows committed into b: the transaction loaded twice? streamed labels {:?}\n{log}",
        streamed_labels_committed(&sim, "b")
    );
    assert_eq!(
        rows_committed(&sim, "a"),
        2 * ROWS as u64 + LATER as u64,
        "rows committed into a: the transaction loaded twice? streamed labels {:?}\n{log}",
        streamed_labels_committed(&sim, "a")
    );
    agent.stop_cleanly();
}

/// Brief item 3: a streamed transaction over `a`, `b` and `c` whose loads into `b` are refused
/// for good. `b` parks (invariant 13: `a` and `c` go on, get the transaction at its COMMIT, and a
/// later change to `a` arrives); a reader of `b` sees none of it. The cause fixed, `starwal
/// retry --table public.b` brings `b` to the source, no label is committed twice, and after a
/// clean stop no streamed record is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_stream_refused_on_one_table_parks_it_and_retry_brings_it() {
    refused_on_one_table(false, "64kB").await;
}

/// Brief item 4 on the same run: once the source transaction committed, status lists no
/// streamed transaction on any table for more than a few seconds (the metrics agree), and the
/// agent's buffer count lets go of `b`'s batches when idle, although `b` is parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_stream_refused_on_one_table_status_and_buffer_let_go_of_it() {
    refused_on_one_table(true, "64kB").await;
}

/// The same without streaming (64 MB: the transaction comes whole at its COMMIT and goes into
/// table mode's StarRocks transactions): the buffer count and status let go of `b` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_txn_refused_on_one_table_status_and_buffer_let_go_of_it() {
    refused_on_one_table(true, "64MB").await;
}

/// The run of the three tests above (`work_mem`: the database's `logical_decoding_work_mem`);
/// `status_too`: also check status, metrics and the buffer count
/// while `b` is parked.
async fn refused_on_one_table(status_too: bool, work_mem: &str) {
    if !streams() {
        return;
    }
    const ROWS: i128 = 3000;
    let tables = ["a", "b", "c"];
    let db = database("engine_txn_stream_restart_park", work_mem).await;
    let client = db.owner_client().await;
    for table in tables {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (id int8 PRIMARY KEY, n int8 NOT NULL, pad text)"
            ))
            .await
            .unwrap();
    }
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b,public.c")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_FLUSH_ROWS", "500")
        .var("STARWAL_MAX_BUFFER_BYTES", &(1024 * 1024).to_string())
        .var("STARWAL_TXN_IDLE_TIMEOUT_S", "60");
    let slot = spec.slot().to_owned();
    let agent = spec.start_streaming().await;
    // Every load into a StarRocks transaction of `b` is refused.
    sim.faults().inject(
        LoadFault::new(FaultKind::TxnStep {
            op: TxnOp::Load,
            effect: TxnEffect::Fail,
            stall_ms: 0,
        })
        .on_table(TARGET_DB, "b")
        .times(1_000_000),
    );
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO a SELECT g, 1, repeat(md5(g::text), 8) FROM generate_series(1, {ROWS}) g;
             INSERT INTO b SELECT g, 1, repeat(md5(g::text), 8) FROM generate_series(1, {ROWS}) g;
             INSERT INTO c SELECT g, 1, repeat(md5(g::text), 8) FROM generate_series(1, {ROWS}) g;
             COMMIT;"
        ))
        .await
        .unwrap();
    let table_status = |status: &serde_json::Value, source: &str| {
        status["tables"]
            .as_array()
            .and_then(|all| all.iter().find(|t| t["source"] == source))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    assert!(
        wait_until(TIMEOUT, || status_json(&spec)
            .is_some_and(|s| !table_status(&s, "public.b")["parked"].is_null()))
        .await,
        "b never parked\n{}",
        agent.log()
    );
    // `a` and `c` get the transaction at its COMMIT.
    let mut never = NeverBack::default();
    settle(&sim, &client, &["a", "c"], &mut never, &agent).await;
    // A reader of `b` sees none of it.
    assert_eq!(target_n(&sim, "b").len(), 0, "a part of b is visible");
    // Invariant 13: a later change to `a` still arrives while `b` is parked.
    client
        .batch_execute("UPDATE a SET n = 2 WHERE id <= 10")
        .await
        .unwrap();
    settle(&sim, &client, &["a", "c"], &mut never, &agent).await;
    // The source transaction committed: within a few seconds status lists no streamed
    // transaction on any table, the metrics agree, and nothing stays counted in the buffer.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = status_json(&spec).expect("status answers");
    let metrics = metrics_text(&spec);
    let mut problems = Vec::new();
    for table in tables {
        let source = format!("public.{table}");
        let listed = table_status(&status, &source)["streamed_transactions"].clone();
        if listed.as_array().is_some_and(|l| !l.is_empty()) {
            problems.push(format!("status lists {listed} on {source}"));
        }
        let gauge = metric_sample(
            &metrics,
            &format!("starwal_streamed_transactions{{table=\"{source}\"}}"),
        );
        if gauge != Some(0.0) {
            problems.push(format!(
                "starwal_streamed_transactions on {source} = {gauge:?}"
            ));
        }
    }
    // Idle with `b` parked: the confirmed LSN is held, so the commit log keeps the commits
    // after it (tens of bytes each); a batch left counted would be hundreds of kB.
    let buffered = metric_sample(&metrics, "starwal_buffered_bytes");
    if !buffered.is_some_and(|bytes| bytes < 16.0 * 1024.0) {
        problems.push(format!("starwal_buffered_bytes = {buffered:?} while idle"));
    }
    eprintln!(
        "b parked: {}\nstreams_in_flight: {:?}",
        table_status(&status, "public.b")["parked"],
        streams_in_flight(&client, &slot).await
    );
    // The cause fixed, a retry brings `b` in.
    sim.faults().clear();
    let retried = starwal(&[
        "retry",
        "--table",
        "public.b",
        "--addr",
        &spec.control_url(),
    ]);
    assert!(retried.status.success(), "{retried:?}\n{}", agent.log());
    settle(&sim, &client, &["a", "b", "c"], &mut never, &agent).await;
    let log = agent.log();
    assert_no_label_twice(&sim, &log);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let metrics = metrics_text(&spec);
            tables.iter().all(|table| {
                metric_sample(
                    &metrics,
                    &format!("starwal_streamed_transactions{{table=\"public.{table}\"}}"),
                ) == Some(0.0)
            })
        })
        .await,
        "streamed transaction gauges never went back to 0 after the retry\n{}",
        metrics_text(&spec)
    );
    agent.stop_cleanly();
    assert_eq!(
        streams_in_flight(&client, &slot).await,
        Vec::<String>::new(),
        "records left after a clean stop"
    );
    if status_too {
        assert!(problems.is_empty(), "{}\n{log}", problems.join("\n"));
    }
}

/// Brief item 2, with the walsender's mind changing at every kill: large transactions (three
/// connections, open at once on two tables) and single-row ones raise `n` on the same keys; at
/// each of several rounds a `TxnStep` stall is aimed at a random step of a random table, the
/// agent is killed with -9 inside it, and `logical_decoding_work_mem` flips between 64 kB
/// (streamed) and 64 MB (whole, table mode's parts) before it starts again. The checker reads
/// the sim throughout: per key `n` never goes down; at the end target = source, no label
/// committed twice, and no streamed record left after a clean stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_restarts_flipping_streaming_keep_order_per_key() {
    if !streams() {
        return;
    }
    const KEYS: u64 = 300;
    const LARGE_CLIENTS: u64 = 3;
    const LARGE_EACH: usize = 12;
    const SMALL: usize = 800;
    const KILLS: usize = 6;
    let tables = ["a", "b"];
    let seed = seed();
    eprintln!("seed {seed} (STARWAL_TEST_SEED replays it)");
    let db = database("engine_txn_stream_restart_flip", "64kB").await;
    let setup = db.owner_client().await;
    for table in tables {
        setup
            .batch_execute(&format!(
                "CREATE TABLE {table} (id int8 PRIMARY KEY, n int8 NOT NULL, pad text);
                 INSERT INTO {table} SELECT g, 0, '' FROM generate_series(1, {KEYS}) g;"
            ))
            .await
            .unwrap();
    }
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_FLUSH_ROWS", "60")
        .var("STARWAL_MAX_BUFFER_BYTES", &(1024 * 1024).to_string())
        .var("STARWAL_TXN_IDLE_TIMEOUT_S", "60");
    let slot = spec.slot().to_owned();
    let mut agent = spec.start_streaming().await;
    let mut workers = Vec::new();
    for client_id in 0..LARGE_CLIENTS {
        let client = db.owner_client().await;
        let mut rng = Lcg(seed ^ (client_id + 1).wrapping_mul(0x9e37_79b9));
        workers.push(tokio::spawn(async move {
            let mut failed = 0;
            for _ in 0..LARGE_EACH {
                // Each large connection keeps to its own keys: they share tables, not rows.
                let slice = KEYS / LARGE_CLIENTS;
                let lo = 1 + client_id * slice + rng.next(slice / 3);
                let hi = lo + slice / 2;
                let rollback = rng.next(6) == 0;
                let mut sql = String::from("BEGIN;");
                for _ in 0..2 + rng.next(3) {
                    let table = ["a", "b"][rng.next(2) as usize];
                    sql += &format!(
                        "UPDATE {table} SET n = n + 1, pad = repeat(md5(random()::text), 24) \
                         WHERE id BETWEEN {lo} AND {hi};"
                    );
                }
                client.batch_execute(&sql).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100 + rng.next(400))).await;
                let end = if rollback { "ROLLBACK" } else { "COMMIT" };
                if client.batch_execute(end).await.is_err() {
                    failed += 1;
                    let _ = client.batch_execute("ROLLBACK").await;
                }
                // Spread over the whole run, so every run (streaming or not) gets some.
                tokio::time::sleep(Duration::from_millis(200 + rng.next(1000))).await;
            }
            failed
        }));
    }
    {
        let client = db.owner_client().await;
        let mut rng = Lcg(seed ^ 0x5eed);
        workers.push(tokio::spawn(async move {
            let mut failed = 0;
            for _ in 0..SMALL {
                let table = ["a", "b"][rng.next(2) as usize];
                let k = 1 + rng.next(KEYS);
                let sql = if rng.next(4) == 0 {
                    format!(
                        "BEGIN; UPDATE a SET n = n + 1 WHERE id = {k}; \
                         UPDATE b SET n = n + 1 WHERE id = {k}; COMMIT"
                    )
                } else {
                    format!("UPDATE {table} SET n = n + 1 WHERE id = {k}")
                };
                tokio::time::sleep(Duration::from_millis(rng.next(40))).await;
                if client.batch_execute(&sql).await.is_err() {
                    failed += 1;
                    let _ = client.batch_execute("ROLLBACK").await;
                }
            }
            failed
        }));
    }
    let mut rng = Lcg(seed ^ 0xdead);
    let mut never = NeverBack::default();
    let mut kills = 0;
    let mut streaming = true;
    let mut next_kill = Instant::now() + Duration::from_millis(1500 + rng.next(2000));
    let deadline = Instant::now() + 2 * TIMEOUT;
    while workers.iter().any(|w| !w.is_finished()) {
        if let Some(back) = never.look(&sim, &tables) {
            panic!("seed {seed}: {back}\n{}", agent.log());
        }
        if kills < KILLS && Instant::now() >= next_kill {
            let op =
                [TxnOp::Begin, TxnOp::Load, TxnOp::Prepare, TxnOp::Commit][rng.next(4) as usize];
            let effect = [TxnEffect::StallAfter, TxnEffect::StallBefore][rng.next(2) as usize];
            let table = tables[rng.next(2) as usize];
            sim.faults().inject(
                LoadFault::new(FaultKind::TxnStep {
                    op,
                    effect,
                    stall_ms: 4_000,
                })
                .on_table(TARGET_DB, table)
                .times(1),
            );
            tokio::time::sleep(Duration::from_millis(200 + rng.next(1500))).await;
            streaming = !streaming;
            eprintln!(
                "seed {seed}: kill -9 #{} ({effect:?} on {op:?} of {table}); {} streamed loads so far; next run streams: {streaming}",
                kills + 1,
                streamed_loads(&sim)
            );
            agent.kill9();
            sim.faults().clear();
            set_work_mem(&db, if streaming { "64kB" } else { "64MB" }).await;
            agent = spec.start();
            kills += 1;
            next_kill = Instant::now() + Duration::from_millis(2000 + rng.next(2000));
        }
        assert!(Instant::now() < deadline, "seed {seed}: workload too slow");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut failed = 0;
    for worker in workers {
        failed += worker.await.unwrap();
    }
    settle(&sim, &setup, &tables, &mut never, &agent).await;
    let log = agent.log();
    assert_no_label_twice(&sim, &log);
    let streamed = sim
        .txn_events(0)
        .iter()
        .filter(|e| e.op == "load" && e.label.ends_with("_s"))
        .count();
    eprintln!("seed {seed}: {kills} kills, {streamed} streamed loads, {failed} failed statements");
    // Everything committed or rolled back: status and the metrics list no streamed transaction.
    let listed = |status: &serde_json::Value| {
        status["tables"]
            .as_array()
            .map(|all| {
                if all.len() < tables.len() {
                    return vec![format!("{} tables in status", all.len())];
                }
                all.iter()
                    .filter(|t| {
                        t["streamed_transactions"]
                            .as_array()
                            .is_some_and(|l| !l.is_empty())
                    })
                    .map(|t| format!("{}: {}", t["source"], t["streamed_transactions"]))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|| vec!["no tables in status".into()])
    };
    // The last kill may be recent: the agent streams again before its status is read.
    assert!(
        wait_until(TIMEOUT, || agent.log().contains("streaming changes")).await,
        "seed {seed}: the last start never streamed\n{}",
        agent.log()
    );
    let mut last = Vec::new();
    let cleared = wait_until(Duration::from_secs(15), || {
        last = status_json(&spec)
            .map(|s| listed(&s))
            .unwrap_or_else(|| vec!["no status".into()]);
        last.is_empty()
    })
    .await;
    assert!(cleared, "seed {seed}: status still lists {last:?}\n{log}");
    let metrics = metrics_text(&spec);
    for table in tables {
        assert_eq!(
            metric_sample(
                &metrics,
                &format!("starwal_streamed_transactions{{table=\"public.{table}\"}}")
            ),
            Some(0.0),
            "seed {seed}: {metrics}"
        );
    }
    agent.stop_cleanly();
    assert_eq!(
        streams_in_flight(&setup, &slot).await,
        Vec::<String>::new(),
        "seed {seed}: records left after a clean stop"
    );
}

/// Invariant 13 with a queue behind the refused load (bug B2's setting, table mode): `b`'s first
/// load is held 3 s, then every load into it is refused. Meanwhile `b`'s full parts queue behind
/// it; when the held one fails and `b` parks, the queued parts are dropped with the stopped
/// loader, and their bytes must be released (bug B2). The other tables must go on: `c` (after
/// `b` in the same source transaction) and a later change to `a` arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_a_queue_behind_a_refused_load_does_not_stop_the_other_tables() {
    let db = database("engine_txn_stream_restart_queue", "64MB").await;
    let client = db.owner_client().await;
    for table in ["a", "b", "c"] {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (id int8 PRIMARY KEY, n int8 NOT NULL, pad text)"
            ))
            .await
            .unwrap();
    }
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b,public.c")
        .var("STARWAL_FLUSH_ROWS", "500")
        .var("STARWAL_MAX_BUFFER_BYTES", &(1024 * 1024).to_string());
    let agent = spec.start_streaming().await;
    sim.faults().inject(
        LoadFault::new(FaultKind::TxnStep {
            op: TxnOp::Load,
            effect: TxnEffect::StallBefore,
            stall_ms: 3_000,
        })
        .on_table(TARGET_DB, "b"),
    );
    sim.faults().inject(
        LoadFault::new(FaultKind::TxnStep {
            op: TxnOp::Load,
            effect: TxnEffect::Fail,
            stall_ms: 0,
        })
        .on_table(TARGET_DB, "b")
        .times(1_000_000),
    );
    client
        .batch_execute(
            "BEGIN;
             INSERT INTO a SELECT g, 1, repeat(md5(g::text), 8) FROM generate_series(1, 1000) g;
             INSERT INTO b SELECT g, 1, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g;
             INSERT INTO c SELECT g, 1, repeat(md5(g::text), 8) FROM generate_series(1, 1000) g;
             COMMIT;
             UPDATE a SET n = 2 WHERE id <= 10;",
        )
        .await
        .unwrap();
    let mut never = NeverBack::default();
    settle(&sim, &client, &["a", "c"], &mut never, &agent).await;
    let metrics = metrics_text(&spec);
    // The queued parts' bytes are released with the stopped loader (bug B2): idle with `b`
    // parked, only the commit log's few entries stay counted.
    let buffered = metric_sample(&metrics, "starwal_buffered_bytes");
    assert!(
        buffered.is_some_and(|bytes| bytes < 16.0 * 1024.0),
        "starwal_buffered_bytes = {buffered:?} while idle\n{}",
        agent.log()
    );
    agent.stop_cleanly();
}

/// A streamed source transaction open longer than `STARWAL_TXN_TIMEOUT_S` (here 3 s; 1 h by
/// default): with streaming its StarRocks transaction is open as long as the source one, so
/// StarRocks aborts it at that timeout while the source is still writing. With `off` the same
/// transaction lands (the timeout counts only while its parts load, after its COMMIT: the test
/// below); with `on` it must land too (read whole, say), not park its table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_a_source_transaction_longer_than_the_txn_timeout_lands() {
    long_source_transaction("on").await;
}

/// The same source transaction with `STARWAL_STREAMING=off` lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_unstreamed_a_source_transaction_longer_than_the_txn_timeout_lands() {
    long_source_transaction("off").await;
}

/// A source transaction writing 8 000 rows over 8 s, with `STARWAL_TXN_TIMEOUT_S=3` and
/// `STARWAL_STREAMING=streaming`: it lands whole, and (with `on`) was streamed.
async fn long_source_transaction(streaming: &str) {
    if !streams() {
        return;
    }
    let db = database("engine_txn_stream_restart_long", "64kB").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE a (id int8 PRIMARY KEY, n int8 NOT NULL, pad text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a")
        .var("STARWAL_STREAMING", streaming)
        .var("STARWAL_FLUSH_ROWS", "500")
        .var("STARWAL_TXN_TIMEOUT_S", "3");
    let agent = spec.start_streaming().await;
    client.batch_execute("BEGIN").await.unwrap();
    for step in 0..8 {
        client
            .batch_execute(&format!(
                "INSERT INTO a SELECT g, 1, repeat(md5(g::text), 8) \
                 FROM generate_series({}, {}) g",
                step * 1000 + 1,
                step * 1000 + 1000
            ))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    client.batch_execute("COMMIT").await.unwrap();
    let mut never = NeverBack::default();
    settle(&sim, &client, &["a"], &mut never, &agent).await;
    assert_eq!(
        streamed_loads(&sim) > 0,
        streaming == "on",
        "streamed loads with STARWAL_STREAMING={streaming}\n{}",
        agent.log()
    );
    agent.stop_cleanly();
}

/// A resync of a table while a streamed transaction holds parts of it in an open StarRocks
/// transaction. The copy's snapshot (a temporary slot) waits for that transaction to end, so
/// it has the whole transaction; the pipeline drops the table's changes from the resync on, so
/// the parts loaded before it must not be committed after the copy loaded the table (their
/// older values would overwrite the copy's), nor count as done when the stream restarts.
/// Here the streamed transaction's StarRocks commit is slow (3 s). Target = source at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_resync_while_a_streamed_transaction_is_open_converges() {
    if !streams() {
        return;
    }
    let db = database("engine_txn_stream_restart_resync", "64kB").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int8 PRIMARY KEY, n int8 NOT NULL, pad text);
             INSERT INTO t SELECT g, 0, '' FROM generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_FLUSH_ROWS", "500")
        .var("STARWAL_TXN_IDLE_TIMEOUT_S", "60");
    let agent = spec.start_streaming().await;
    wait_target_n(&sim, "t", 1..=100, 0, &agent).await;
    client
        .batch_execute(
            "BEGIN; INSERT INTO t SELECT g, 1, repeat(md5(g::text), 8) \
             FROM generate_series(10001, 13000) g",
        )
        .await
        .unwrap();
    assert!(
        wait_until(TIMEOUT, || streamed_loads(&sim) > 0).await,
        "nothing of the open transaction was streamed\n{}",
        agent.log()
    );
    // The streamed transaction's StarRocks commit is held 3 s before it takes effect (the
    // copy's own loads are plain Stream Loads: not held).
    sim.faults().inject(
        LoadFault::new(FaultKind::TxnStep {
            op: TxnOp::Commit,
            effect: TxnEffect::StallBefore,
            stall_ms: 3_000,
        })
        .on_table(TARGET_DB, "t"),
    );
    let resync = starwal(&[
        "resync",
        "--table",
        "public.t",
        "--addr",
        &spec.control_url(),
    ]);
    assert!(resync.status.success(), "{resync:?}\n{}", agent.log());
    // The pipeline drops the table's changes from here; the copy's snapshot (a temporary slot)
    // waits for the open transaction to end.
    assert!(
        wait_until(TIMEOUT, || agent
            .log()
            .contains("copy while streaming: dropping"))
        .await,
        "the copy did not start\n{}",
        agent.log()
    );
    // The rest of the transaction (dropped by the pipeline while the table copies), COMMIT.
    client
        .batch_execute("UPDATE t SET n = 2 WHERE id > 10000; COMMIT")
        .await
        .unwrap();
    let mut never = NeverBack::default();
    settle(&sim, &client, &["t"], &mut never, &agent).await;
    // The copy can end before the streamed commit lands: once the stream restarted after the
    // copy and a later change arrived, the target must still equal the source.
    assert!(
        wait_until(TIMEOUT, || agent.log().matches("streaming changes").count()
            >= 2)
        .await,
        "the stream did not restart after the copy\n{}",
        agent.log()
    );
    client
        .batch_execute("INSERT INTO t VALUES (-1, 0, 'marker')")
        .await
        .unwrap();
    settle(&sim, &client, &["t"], &mut never, &agent).await;
    assert_no_label_twice(&sim, &agent.log());
    agent.stop_cleanly();
}

/// A streamed transaction whose UPDATEs leave a TOASTed value unchanged (the common "set a
/// status on rows with a large document"): the streamed path cannot carry it and reads the
/// transaction again whole; the target must end equal to the source, documents included, with
/// no streamed part committed and status listing nothing once it landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_unchanged_toast_reads_it_again_whole_and_lands() {
    if !streams() {
        return;
    }
    let db = database("engine_txn_stream_restart_toast", "64kB").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int8 PRIMARY KEY, n int8 NOT NULL, doc text);
             ALTER TABLE t ALTER COLUMN doc SET STORAGE EXTERNAL;
             INSERT INTO t SELECT g, 0, (SELECT string_agg(md5(g::text || i::text), '') \
               FROM generate_series(1, 100) i) FROM generate_series(1, 1500) g;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_FLUSH_ROWS", "400");
    let agent = spec.start_streaming().await;
    wait_target_n(&sim, "t", 1..=1500, 0, &agent).await;
    client
        .batch_execute(
            "BEGIN;
             UPDATE t SET n = 1 WHERE id <= 1000;
             UPDATE t SET n = 2, doc = 'new ' || id WHERE id BETWEEN 901 AND 1100;
             UPDATE t SET n = 3 WHERE id BETWEEN 1001 AND 1500;
             COMMIT;",
        )
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, n::text, doc FROM t").await;
    let deadline = Instant::now() + TIMEOUT;
    let mut never = NeverBack::default();
    loop {
        if let Some(back) = never.look(&sim, &["t"]) {
            panic!("{back}\n{}", agent.log());
        }
        let got = target_rows(&sim, "t", &["id", "n", "doc"]);
        if got == source {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}\n{}",
            diff(&source, &got),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = agent.log();
    assert_no_label_twice(&sim, &log);
    assert!(
        log.contains("an UPDATE left a TOASTed value unchanged"),
        "the transaction was not streamed up to an unchanged TOASTed value\n{log}"
    );
    assert!(
        !sim.txn_events(0)
            .iter()
            .any(|e| e.op == "commit" && e.label.ends_with("_s")),
        "a streamed part was committed\n{log}"
    );
    let listed = status_json(&spec).map(|s| s["tables"][0]["streamed_transactions"].clone());
    assert!(
        wait_until(Duration::from_secs(15), || status_json(&spec).is_some_and(
            |s| s["tables"][0]["streamed_transactions"]
                .as_array()
                .is_some_and(|l| l.is_empty())
        ))
        .await,
        "status still lists {listed:?}\n{log}"
    );
    agent.stop_cleanly();
}

/// Invariant 13 at `begin`: StarRocks refuses for good to begin the streamed transaction's
/// StarRocks transaction on `b` (as it does for a table dropped there). `b` must park as for a
/// refused load; `a` gets the transaction at its COMMIT and a later change; status names `b`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_stream_begin_refused_on_one_table_parks_it() {
    begin_refused_on_one_table("64kB", TxnOp::Begin).await;
}

/// The same with `prepare` refused for good (the streamed parts loaded, the COMMIT came).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_stream_prepare_refused_on_one_table_parks_it() {
    begin_refused_on_one_table("64kB", TxnOp::Prepare).await;
}

/// The same with `commit` refused for good (after the prepare was recorded): `b` parks with its
/// StarRocks transaction prepared and recorded, and the retry commits it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_stream_commit_refused_on_one_table_parks_it() {
    begin_refused_on_one_table("64kB", TxnOp::Commit).await;
}

/// The same for a transaction larger than a batch read whole (table mode's StarRocks
/// transaction, not streamed), with `commit` refused for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_txn_commit_refused_on_one_table_parks_it() {
    begin_refused_on_one_table("64MB", TxnOp::Commit).await;
}

/// The same without streaming (the transaction whole at its COMMIT, table mode's parts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_txn_begin_refused_on_one_table_parks_it() {
    begin_refused_on_one_table("64MB", TxnOp::Begin).await;
}

/// The run of the four tests above (`work_mem`: the database's `logical_decoding_work_mem`;
/// `op`: the step refused on `b`).
async fn begin_refused_on_one_table(work_mem: &str, op: TxnOp) {
    if !streams() {
        return;
    }
    let db = database("engine_txn_stream_restart_begin", work_mem).await;
    let client = db.owner_client().await;
    for table in ["a", "b"] {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (id int8 PRIMARY KEY, n int8 NOT NULL, pad text)"
            ))
            .await
            .unwrap();
    }
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_FLUSH_ROWS", "500");
    let mut agent = spec.start_streaming().await;
    sim.faults().inject(
        LoadFault::new(FaultKind::TxnStep {
            op,
            effect: TxnEffect::Fail,
            stall_ms: 0,
        })
        .on_table(TARGET_DB, "b")
        .times(1_000_000),
    );
    client
        .batch_execute(
            "BEGIN;
             INSERT INTO a SELECT g, 1, repeat(md5(g::text), 8) FROM generate_series(1, 3000) g;
             INSERT INTO b SELECT g, 1, repeat(md5(g::text), 8) FROM generate_series(1, 3000) g;
             COMMIT;
             UPDATE a SET n = 2 WHERE id <= 10;",
        )
        .await
        .unwrap();
    let mut never = NeverBack::default();
    settle(&sim, &client, &["a"], &mut never, &agent).await;
    let b_parked = || async {
        wait_until(TIMEOUT, || {
            status_json(&spec).is_some_and(|s| {
                s["tables"]
                    .as_array()
                    .and_then(|all| all.iter().find(|t| t["source"] == "public.b"))
                    .is_some_and(|b| !b["parked"].is_null())
            })
        })
        .await
    };
    assert!(b_parked().await, "b is not parked\n{}", agent.log());
    if op == TxnOp::Commit {
        // A restart finds b's transaction prepared and recorded, and its commit still refused:
        // b starts parked (the record kept), `a` streams on.
        agent.kill9();
        let log = agent.log();
        agent = spec.start_streaming().await;
        client
            .batch_execute("UPDATE a SET n = 3 WHERE id <= 10")
            .await
            .unwrap();
        settle(&sim, &client, &["a"], &mut never, &agent).await;
        assert!(
            b_parked().await,
            "b is not parked after a restart\n{log}\n{}",
            agent.log()
        );
        let begun_on_b = sim
            .txn_events(0)
            .iter()
            .filter(|e| e.op == "begin" && e.tables == "b")
            .count();
        assert_eq!(
            begun_on_b,
            1,
            "b's prepared transaction was not kept\n{}",
            agent.log()
        );
    }
    sim.faults().clear();
    let retried = starwal(&[
        "retry",
        "--table",
        "public.b",
        "--addr",
        &spec.control_url(),
    ]);
    assert!(retried.status.success(), "{retried:?}\n{}", agent.log());
    settle(&sim, &client, &["a", "b"], &mut never, &agent).await;
    assert_no_label_twice(&sim, &agent.log());
    agent.stop_cleanly();
}

/// Brief item 2, step by step: in each round three streamed transactions are open at once on
/// one table (each on its own keys) while single-row transactions change keys of all three;
/// a `TxnStep` stall is armed on one step (begin, load, prepare, commit; before or after it
/// takes effect), the three commit, and the agent is killed with -9 inside the stall. After
/// every restart the target equals the source with `n` never going down per key; at the end no
/// label was committed twice and, after a clean stop, no streamed record is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_kill9_at_each_2pc_step_with_three_open_on_one_table() {
    if !streams() {
        return;
    }
    const KEYS: u64 = 300;
    let seed = seed();
    eprintln!("seed {seed} (STARWAL_TEST_SEED replays it)");
    let mut rng = Lcg(seed);
    let db = database("engine_txn_stream_restart_steps", "64kB").await;
    let setup = db.owner_client().await;
    setup
        .batch_execute(&format!(
            "CREATE TABLE t (id int8 PRIMARY KEY, n int8 NOT NULL, pad text);
             INSERT INTO t SELECT g, 0, '' FROM generate_series(1, {KEYS}) g;"
        ))
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_FLUSH_ROWS", "100")
        .var("STARWAL_TXN_IDLE_TIMEOUT_S", "60");
    let slot = spec.slot().to_owned();
    let mut agent = spec.start_streaming().await;
    let mut never = NeverBack::default();
    settle(&sim, &setup, &["t"], &mut never, &agent).await;
    let mut large = Vec::new();
    for _ in 0..3 {
        large.push(db.owner_client().await);
    }
    let steps = [TxnOp::Begin, TxnOp::Load, TxnOp::Prepare, TxnOp::Commit];
    let effects = [TxnEffect::StallBefore, TxnEffect::StallAfter];
    for op in steps {
        for effect in effects {
            // Armed first: the first begin/load of this round's streamed parts can be the one.
            sim.faults().inject(
                LoadFault::new(FaultKind::TxnStep {
                    op,
                    effect,
                    stall_ms: 4_000,
                })
                .on_table(TARGET_DB, "t")
                .times(1),
            );
            let slice = KEYS / 3;
            for (i, client) in large.iter().enumerate() {
                let (lo, hi) = (1 + i as u64 * slice, (i as u64 + 1) * slice);
                client
                    .batch_execute(&format!(
                        "BEGIN;
                         UPDATE t SET n = n + 1, pad = repeat(md5(random()::text), 24)
                           WHERE id BETWEEN {lo} AND {hi};
                         UPDATE t SET n = n + 1 WHERE id BETWEEN {lo} AND {hi};"
                    ))
                    .await
                    .unwrap();
            }
            // Single-row transactions wait on the open ones' row locks: only keys of the one
            // committing next, then that one commits.
            for (i, client) in large.iter().enumerate() {
                let k = 1 + i as u64 * slice + rng.next(slice);
                let small = db.owner_client().await;
                let waiting = tokio::spawn(async move {
                    small
                        .batch_execute(&format!("UPDATE t SET n = n + 1 WHERE id = {k}"))
                        .await
                        .unwrap();
                });
                client.batch_execute("COMMIT").await.unwrap();
                waiting.await.unwrap();
            }
            let wait = 200 + rng.next(1500);
            let deadline = Instant::now() + Duration::from_millis(wait);
            while Instant::now() < deadline {
                if let Some(back) = never.look(&sim, &["t"]) {
                    panic!("seed {seed}: {op:?} {effect:?}: {back}\n{}", agent.log());
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            eprintln!("seed {seed}: kill -9 {wait} ms after the commits ({effect:?} on {op:?})");
            agent.kill9();
            sim.faults().clear();
            agent = spec.start();
            settle(&sim, &setup, &["t"], &mut never, &agent).await;
        }
    }
    let log = agent.log();
    assert_no_label_twice(&sim, &log);
    assert!(
        streamed_loads(&sim) > 0,
        "seed {seed}: nothing was streamed\n{log}"
    );
    assert!(
        wait_until(TIMEOUT, || agent.log().contains("streaming changes")).await,
        "seed {seed}: the last start never streamed\n{}",
        agent.log()
    );
    agent.stop_cleanly();
    assert_eq!(
        streams_in_flight(&setup, &slot).await,
        Vec::<String>::new(),
        "seed {seed}: records left after a clean stop"
    );
}

/// Two streamed transactions open at once on one table: Postgres sends the table's Relation
/// again inside the second one's first block (pgoutput sends the schema once per streamed
/// transaction). Both must stay streamed — loaded while open, not read again whole — and land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_two_open_on_one_table_both_stream() {
    if !streams() {
        return;
    }
    let db = database("engine_txn_stream_restart_two", "64kB").await;
    let first = db.owner_client().await;
    let second = db.owner_client().await;
    first
        .batch_execute("CREATE TABLE t (id int8 PRIMARY KEY, n int8 NOT NULL, pad text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_FLUSH_ROWS", "500");
    let agent = spec.start_streaming().await;
    let labels = || {
        sim.txn_events(0)
            .into_iter()
            .filter(|e| e.op == "load" && e.label.ends_with("_s"))
            .map(|e| e.label)
            .collect::<std::collections::BTreeSet<_>>()
    };
    first
        .batch_execute(
            "BEGIN; INSERT INTO t SELECT g, 1, repeat(md5(g::text), 8) \
             FROM generate_series(1, 3000) g",
        )
        .await
        .unwrap();
    assert!(
        wait_until(TIMEOUT, || labels().len() == 1).await,
        "the first transaction was not streamed\n{}",
        agent.log()
    );
    second
        .batch_execute(
            "BEGIN; INSERT INTO t SELECT g, 1, repeat(md5(g::text), 8) \
             FROM generate_series(10001, 13000) g",
        )
        .await
        .unwrap();
    let both = wait_until(Duration::from_secs(20), || labels().len() == 2).await;
    first.batch_execute("COMMIT").await.unwrap();
    second.batch_execute("COMMIT").await.unwrap();
    let mut never = NeverBack::default();
    settle(&sim, &first, &["t"], &mut never, &agent).await;
    let log = agent.log();
    assert!(
        both && !log.contains("read again whole"),
        "the second transaction on the table was not streamed while the first was open \
         (streamed labels {:?})\n{log}",
        labels()
    );
    assert_no_label_twice(&sim, &log);
    agent.stop_cleanly();
}

/// After bug G's fix the concurrent streamed path runs for real: in each of three rounds three
/// streamed transactions are open at once on one table (each on its own keys: all three stream
/// while open), then get a second statement and COMMIT in a seeded order, a single-row
/// transaction on the committing one's keys waiting for its row lock. Per key `n` never goes
/// down, all three are loaded while open (three `_s` labels), none is read again whole, and the
/// target ends equal to the source with no label committed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_three_open_on_one_table_keep_order_per_key() {
    if !streams() {
        return;
    }
    let seed = seed();
    eprintln!("seed {seed} (STARWAL_TEST_SEED replays it)");
    let mut rng = Lcg(seed);
    let db = database("engine_txn_stream_restart_three", "64kB").await;
    let setup = db.owner_client().await;
    setup
        .batch_execute(
            "CREATE TABLE t (id int8 PRIMARY KEY, n int8 NOT NULL, pad text);
             INSERT INTO t SELECT g, 0, '' FROM generate_series(1, 900) g;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_FLUSH_ROWS", "100");
    let agent = spec.start_streaming().await;
    let mut never = NeverBack::default();
    settle(&sim, &setup, &["t"], &mut never, &agent).await;
    for round in 0..3 {
        let before = streamed_labels(&sim);
        let mut large = Vec::new();
        for i in 0..3u64 {
            let client = db.owner_client().await;
            // Own keys 1 + 300 i ..= 300 (i + 1); each statement ~100 kB: streamed.
            let (lo, hi) = (1 + 300 * i, 300 * (i + 1));
            client
                .batch_execute(&format!(
                    "BEGIN; UPDATE t SET n = n + 1, pad = repeat(md5(random()::text), 24) \
                     WHERE id BETWEEN {lo} AND {hi}"
                ))
                .await
                .unwrap();
            large.push(client);
        }
        let streamed_all = wait_until(TIMEOUT, || {
            if let Some(back) = never.look(&sim, &["t"]) {
                panic!("seed {seed}: {back}\n{}", agent.log());
            }
            streamed_labels(&sim).difference(&before).count() == 3
        })
        .await;
        assert!(
            streamed_all,
            "seed {seed} round {round}: not all three were loaded while open: {:?}\n{}",
            streamed_labels(&sim)
                .difference(&before)
                .collect::<Vec<_>>(),
            agent.log()
        );
        // A second statement each, then COMMIT in a seeded order, single-row transactions on
        // the committing one's keys waiting for it.
        let mut order = vec![0usize, 1, 2];
        for i in (1..order.len()).rev() {
            order.swap(i, rng.next(i as u64 + 1) as usize);
        }
        for i in order {
            let (lo, hi) = (1 + 300 * i as u64, 300 * (i as u64 + 1));
            large[i]
                .batch_execute(&format!(
                    "UPDATE t SET n = n + 1 WHERE id BETWEEN {lo} AND {}",
                    lo + 149
                ))
                .await
                .unwrap();
            let k = lo + rng.next(hi - lo + 1);
            let small = db.owner_client().await;
            let waiting = tokio::spawn(async move {
                small
                    .batch_execute(&format!("UPDATE t SET n = n + 1 WHERE id = {k}"))
                    .await
                    .unwrap();
            });
            large[i].batch_execute("COMMIT").await.unwrap();
            waiting.await.unwrap();
            if let Some(back) = never.look(&sim, &["t"]) {
                panic!("seed {seed}: {back}\n{}", agent.log());
            }
        }
        settle(&sim, &setup, &["t"], &mut never, &agent).await;
    }
    let log = agent.log();
    assert!(
        !log.contains("read again whole"),
        "seed {seed}: a streamed transaction was read again whole\n{log}"
    );
    assert_no_label_twice(&sim, &log);
    agent.stop_cleanly();
}

/// Labels of streamed StarRocks transactions (`…_s`) the sim has taken a load for.
fn streamed_labels(sim: &Sim) -> std::collections::BTreeSet<String> {
    sim.txn_events(0)
        .into_iter()
        .filter(|e| e.op == "load" && e.label.ends_with("_s"))
        .map(|e| e.label)
        .collect()
}
