//! Issue 14, item 3: streamed large transactions (`STARWAL_STREAMING`), through `starwal run`
//! against real Postgres and the sim.
//!
//! `on` with `STARWAL_COMMIT_MODE=transaction` is refused (the first test: exit 2, naming the
//! variables, before anything is created). With `STARWAL_STREAMING=on` (`pipeline/stream.rs`):
//! interleaved streamed and plain transactions on the same keys keep
//! commit order per key, and aborted streamed transactions leave no trace (seeded, with a checker
//! reading the sim throughout); the savepoint case is `engine_txn_savepoint::inv11_streamed_*`.
//! A large streamed transaction is loaded while open and appears at once at its COMMIT within
//! the memory bound; kill -9 while one is open and after its prepare loads it once.
//!
//! Postgres streams a transaction once its decoded changes exceed `logical_decoding_work_mem`;
//! `ALTER DATABASE … SET logical_decoding_work_mem = '64kB'` makes the walsender of that database
//! stream small transactions too (checked on PG 16 with `test_decoding`'s `stream-changes`), so
//! the tests need no server restart. Streaming exists from PG 14: below, the tests return early.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use starrocks_sim::catalog::Value;
use starrocks_sim::{FaultKind, LoadFault, Sim, TxnEffect, TxnOp};

use crate::harness::agent::{
    diff, source_rows, start_sim, target_rows, wait_for_rows, wait_until, AgentSpec, TARGET_DB,
};
use crate::harness::seeded::{seed, Lcg};
use crate::harness::{Cluster, TestDatabase};

const TIMEOUT: Duration = Duration::from_secs(180);
const MIB: u64 = 1024 * 1024;

/// Whether the shared cluster can stream in-progress transactions (PG 14+); says so when not.
fn streams() -> bool {
    let major = Cluster::shared().major();
    if major < 14 {
        eprintln!("PG {major}: no streaming of in-progress transactions before 14; skipped");
    }
    major >= 14
}

/// A fresh database whose walsenders stream any transaction above 64 kB.
async fn streaming_database(prefix: &str) -> TestDatabase {
    let db = Cluster::shared().create_database(prefix).await;
    db.owner_client()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET logical_decoding_work_mem = '64kB'",
            db.name
        ))
        .await
        .unwrap();
    db
}

/// Loads into streamed StarRocks transactions (labels ending `_s`) the sim has taken so far.
fn streamed_loads(sim: &Sim) -> usize {
    sim.txn_events(0)
        .iter()
        .filter(|event| event.op == "load" && event.label.ends_with("_s"))
        .count()
}

/// Peak resident memory of a process since it started (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// No label of the target database committed twice.
fn assert_no_label_twice(sim: &Sim) {
    for (label, counters) in sim.label_counters(TARGET_DB) {
        assert!(
            counters.commits <= 1,
            "{label} was committed {} times",
            counters.commits
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_streaming_with_transaction_mode_is_refused_at_startup() {
    let db = Cluster::shared()
        .create_database("engine_txn_stream_off")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_COMMIT_MODE", "transaction");
    let mut agent = spec.start();
    let status = agent
        .wait(Duration::from_secs(60))
        .expect("the agent exits");
    let log = agent.log();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("STARWAL_STREAMING") && log.contains("STARWAL_COMMIT_MODE=table"),
        "the error names the variable and why:\n{log}"
    );
    // Refused before setup: no slot was created for it.
    let slots = client
        .query(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&spec.slot()],
        )
        .await
        .unwrap();
    assert!(slots.is_empty(), "a slot was created:\n{log}");
    // `off` runs.
    spec.var("STARWAL_STREAMING", "off")
        .var("STARWAL_COMMIT_MODE", "table")
        .start_streaming()
        .await
        .stop_cleanly();
}

/// A large transaction, streamed: its parts reach StarRocks while it is still open (the sim
/// takes `_s` loads before the COMMIT), a reader sees the old count until the COMMIT and the
/// new one at once after it, and the agent's peak RSS stays within the cap + 32 MiB.
/// `STARWAL_TEST_HUGE_ROWS` overrides the 2 000 000 rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_a_large_transaction_loads_while_open_and_appears_at_once() {
    if !streams() {
        return;
    }
    const CAP: u64 = 64 * MIB;
    let rows: u64 = std::env::var("STARWAL_TEST_HUGE_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2_000_000);
    let db = streaming_database("engine_txn_stream_huge").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int8 PRIMARY KEY, v int8, note text);
             INSERT INTO t VALUES (0, 0, 'before');",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_MAX_BUFFER_BYTES", &CAP.to_string())
        .var("STARWAL_LOG", "starwal=debug");
    let agent = spec.start_streaming().await;
    let count = || {
        sim.catalog()
            .read(|c| c.row_count(TARGET_DB, "t").unwrap_or(0) as u64)
    };
    assert!(
        wait_until(Duration::from_secs(60), || count() == 1).await,
        "the first row never arrived\n{}",
        agent.log()
    );
    client
        .batch_execute(&format!(
            "BEGIN; INSERT INTO t SELECT g, g * 7, md5(g::text) FROM generate_series(1, {rows}) g"
        ))
        .await
        .unwrap();
    // Still open: the agent loads it as Postgres streams it, and none of it is visible.
    assert!(
        wait_until(TIMEOUT, || streamed_loads(&sim) > 0).await,
        "no part of the open transaction was loaded\n{}",
        agent.log()
    );
    assert_eq!(count(), 1, "a part of an open transaction is visible");
    client.batch_execute("COMMIT").await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let n = count();
        assert!(
            n == 1 || n == rows + 1,
            "a reader saw {n} rows: neither the 1 before nor the {} after\n{}",
            rows + 1,
            agent.log()
        );
        if n == rows + 1 {
            break;
        }
        if Instant::now() >= deadline {
            let senders = client
                .query(
                    "SELECT state || ' sent ' || sent_lsn::text || ' flush ' || coalesce(flush_lsn::text, '') \
                     || ' wal ' || pg_current_wal_lsn()::text FROM pg_stat_replication",
                    &[],
                )
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| r.get::<_, Option<String>>(0))
                        .collect::<Vec<_>>()
                });
            eprintln!("walsenders: {senders:?}");
        }
        assert!(
            Instant::now() < deadline,
            "never landed; status {:?}; StarRocks transaction steps: {:?}\n{}",
            crate::harness::agent::status_json(&spec),
            sim.txn_events(0)
                .iter()
                .map(|event| format!("{} {}", event.op, event.label))
                .collect::<Vec<_>>(),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = peak_rss(agent.pid());
    eprintln!(
        "{rows} rows streamed in {} parts, agent peak RSS {:.1} MiB (cap {} MiB)",
        streamed_loads(&sim),
        peak as f64 / MIB as f64,
        CAP / MIB
    );
    assert!(
        peak <= CAP + 32 * MIB,
        "peak RSS {peak} B exceeds STARWAL_MAX_BUFFER_BYTES {CAP} B + 32 MiB"
    );
    assert_no_label_twice(&sim);
    agent.stop_cleanly();
}

/// kill -9 while a streamed transaction is open (a part loaded) and after its prepare (the
/// checkpoint recorded it prepared, `commit` held): the next start rolls back or commits as
/// recorded, and the target ends equal to the source with no label committed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_kill9_while_open_and_after_prepare_loads_it_once() {
    if !streams() {
        return;
    }
    let db = streaming_database("engine_txn_stream_kill9").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, payload text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_MAX_BUFFER_BYTES", &(512 * 1024).to_string())
        .var("STARWAL_TXN_IDLE_TIMEOUT_S", "60");
    let mut agent = spec.start_streaming().await;
    for (round, after_prepare) in [false, true].into_iter().enumerate() {
        let start = 1 + round as u64 * 20_000;
        let insert = format!(
            "INSERT INTO t SELECT g, repeat(md5(g::text), 16) FROM generate_series({start}, {}) g",
            start + 11_999
        );
        if after_prepare {
            // The first commit attempt is cut off before it takes effect; the kill lands while
            // the retry waits, after the checkpoint recorded the transaction prepared.
            sim.faults().inject(
                LoadFault::new(FaultKind::TxnStep {
                    op: TxnOp::Commit,
                    effect: TxnEffect::DropBefore,
                    stall_ms: 20_000,
                })
                .on_table(TARGET_DB, "t"),
            );
            client
                .batch_execute(&format!("BEGIN; {insert}; COMMIT"))
                .await
                .unwrap();
            let recorded = wait_until(TIMEOUT, || {
                sim.txn_events(0)
                    .iter()
                    .any(|event| event.op == "prepare" && event.label.ends_with("_s"))
            })
            .await;
            assert!(recorded, "never prepared\n{}", agent.log());
            let slot = spec.slot().to_owned();
            let deadline = Instant::now() + TIMEOUT;
            while client
                .query_opt(
                    "SELECT 1 FROM starwal.streams_in_flight WHERE slot = $1 \
                     AND commit_lsn IS NOT NULL",
                    &[&slot],
                )
                .await
                .unwrap()
                .is_none()
            {
                assert!(Instant::now() < deadline, "never recorded\n{}", agent.log());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            agent.kill9();
            sim.faults().clear();
            agent = spec.start();
        } else {
            client
                .batch_execute(&format!("BEGIN; {insert}"))
                .await
                .unwrap();
            assert!(
                wait_until(TIMEOUT, || streamed_loads(&sim) > 0).await,
                "no part of the open transaction was loaded\n{}",
                agent.log()
            );
            agent.kill9();
            agent = spec.start();
            client.batch_execute("COMMIT").await.unwrap();
        }
        let source = source_rows(&client, "SELECT id::text, payload FROM t").await;
        let target = wait_for_rows(&source, TIMEOUT, || {
            target_rows(&sim, "t", &["id", "payload"])
        })
        .await;
        assert!(
            source == target,
            "round {round}: {}\n{}",
            diff(&source, &target),
            agent.log()
        );
        assert_no_label_twice(&sim);
        let settled = if after_prepare {
            "committed the streamed transaction a previous run had prepared"
        } else {
            "rolled back the streamed transaction a previous run left open"
        };
        assert!(
            agent.log().contains(settled),
            "round {round}: the restart did not say it {settled:?}\n{}",
            agent.log()
        );
    }
    agent.stop_cleanly();
}

/// Streamed transactions interleaved with plain ones on the same keys. Each change bumps the
/// row's `n`, so per key the target's `n` must never go down between two reads (an older
/// transaction's StarRocks commit overwriting a newer one would), and it ends equal to the
/// source. Large transactions (streamed: above `logical_decoding_work_mem`) update a range of
/// keys, some roll back (a streamed abort); small ones update one key each, waiting on a large
/// one's row lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_interleaved_with_plain_transactions_keeps_order_per_key() {
    if !streams() {
        return;
    }
    const KEYS: u64 = 300;
    const LARGE: usize = 30;
    const SMALL: usize = 1500;
    let seed = seed();
    eprintln!("seed {seed} (STARWAL_TEST_SEED replays it)");
    let db = streaming_database("engine_txn_stream_order").await;
    let setup = db.owner_client().await;
    setup
        .batch_execute(&format!(
            "CREATE TABLE t (id int PRIMARY KEY, n int8 NOT NULL, pad text);
             INSERT INTO t SELECT g, 0, '' FROM generate_series(1, {KEYS}) g;"
        ))
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_MAX_BUFFER_BYTES", &(1024 * 1024).to_string());
    let agent = spec.start_streaming().await;

    let large = {
        let client = db.owner_client().await;
        let mut rng = Lcg(seed);
        tokio::spawn(async move {
            for _ in 0..LARGE {
                let from = 1 + rng.next(KEYS / 2);
                let to = from + KEYS / 4 + rng.next(KEYS / 4);
                // ~1 kB per row and several passes: well above 64 kB, so Postgres streams it.
                // (No savepoints: one rolled back turns streaming off for the process, and the
                // savepoint test covers it.)
                let mut sql = String::from("BEGIN;");
                for _ in 0..4 {
                    sql += &format!(
                        "UPDATE t SET n = n + 1, pad = repeat(md5(random()::text), 32) \
                         WHERE id BETWEEN {from} AND {to};"
                    );
                }
                sql += if rng.next(5) == 0 {
                    "ROLLBACK;"
                } else {
                    "COMMIT;"
                };
                client.batch_execute(&sql).await.unwrap();
            }
        })
    };
    let small = {
        let client = db.owner_client().await;
        let mut rng = Lcg(seed ^ 0x5eed);
        tokio::spawn(async move {
            for _ in 0..SMALL {
                let key = 1 + rng.next(KEYS);
                client
                    .batch_execute(&format!("UPDATE t SET n = n + 1 WHERE id = {key}"))
                    .await
                    .unwrap();
            }
        })
    };
    // The checker: per key, `n` in the target never goes down.
    let read = || -> BTreeMap<i128, i128> {
        sim.catalog().read(|c| {
            let Ok(table) = c.table(TARGET_DB, "t") else {
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
    };
    // Read throughout the workload and until the target caught up with the source.
    let mut last = BTreeMap::new();
    let mut looks = 0;
    let mut source = None;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let now = read();
        for (id, n) in &now {
            let before = last.get(id).copied().unwrap_or(0);
            assert!(
                *n >= before,
                "seed {seed}: key {id} went from n = {before} back to {n}\n{}",
                agent.log()
            );
        }
        last = now;
        looks += 1;
        if source.is_none() && large.is_finished() && small.is_finished() {
            source = Some(source_rows(&setup, "SELECT id::text, n::text, pad FROM t").await);
        }
        if let Some(source) = &source {
            let target = target_rows(&sim, "t", &["id", "n", "pad"]);
            if *source == target {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "seed {seed}: {}\n{}",
                diff(source, &target),
                agent.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    large.await.unwrap();
    small.await.unwrap();
    assert!(
        streamed_loads(&sim) > 0,
        "nothing was streamed\n{}",
        agent.log()
    );
    assert!(
        !agent.log().contains("read again whole"),
        "a streamed transaction was read again whole\n{}",
        agent.log()
    );
    assert_no_label_twice(&sim);
    eprintln!(
        "seed {seed}: {looks} looks, {} streamed loads",
        streamed_loads(&sim)
    );
    agent.stop_cleanly();
}

/// A statement inside a streamed transaction that the streamed path does not load (`TRUNCATE`,
/// or `ALTER TABLE … ADD COLUMN`, which makes Postgres send the relation again inside the
/// block) after parts of it were loaded: the agent rolls those parts back and reads the
/// transaction again whole. No streamed part is ever committed; a reader polling the sim sees
/// only the counts in `seen`: before (1), after (the last), and the points where table mode
/// itself commits before such a statement (it warns "visible in parts"; the same without
/// streaming), never a count made by a streamed part. The target ends equal to the source and
/// no label is committed twice. Once that transaction is confirmed, streaming resumes: the next
/// large transaction is loaded in parts while open.
async fn stream_then_fallback(prefix: &str, statement: &str, seen: &[usize], columns: &[&str]) {
    let after = *seen.last().unwrap();
    let db = streaming_database(prefix).await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_FLUSH_ROWS", "200")
        .var("STARWAL_STREAMING", "on");
    let agent = spec.start_streaming().await;
    client
        .batch_execute("INSERT INTO t VALUES (0, 'before')")
        .await
        .unwrap();
    let count = || {
        sim.catalog()
            .read(|c| c.row_count(TARGET_DB, "t").unwrap_or(0))
    };
    assert!(
        wait_until(Duration::from_secs(60), || count() == 1).await,
        "the first row never arrived\n{}",
        agent.log()
    );
    client
        .batch_execute("BEGIN; INSERT INTO t SELECT g, 'first' FROM generate_series(1, 3000) g")
        .await
        .unwrap();
    // Parts of the open transaction are loaded before the statement that forces the fallback.
    assert!(
        wait_until(TIMEOUT, || streamed_loads(&sim) > 0).await,
        "no part of the open transaction was loaded\n{}",
        agent.log()
    );
    assert_eq!(count(), 1, "a part of an open transaction is visible");
    client
        .batch_execute(&format!("{statement}; COMMIT"))
        .await
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let n = count();
        assert!(
            seen.contains(&n),
            "a reader saw {n} rows: none of {seen:?}\n{}",
            agent.log()
        );
        if n == after {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never landed; steps {:?}\n{}",
            sim.txn_events(0)
                .iter()
                .map(|event| format!("{} {}", event.op, event.label))
                .collect::<Vec<_>>(),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let select = format!(
        "SELECT {} FROM t",
        columns
            .iter()
            .map(|c| format!("coalesce({c}::text, '-')"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let source = source_rows(&client, &select).await;
    let target = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "t", columns)
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| Some(v.unwrap_or_else(|| "-".into())))
                    .collect()
            })
            .collect()
    })
    .await;
    assert!(source == target, "{}", diff(&source, &target));
    assert!(
        agent.log().contains("read again whole"),
        "the statement did not make the agent read the transaction again\n{}",
        agent.log()
    );
    let streamed: Vec<_> = sim
        .txn_events(0)
        .into_iter()
        .filter(|event| event.label.ends_with("_s"))
        .map(|event| event.op)
        .collect();
    assert!(
        streamed.iter().any(|op| op == "rollback") && !streamed.iter().any(|op| op == "commit"),
        "the streamed parts were not rolled back, or one was committed: {streamed:?}\n{}",
        agent.log()
    );
    // Streaming comes back once that transaction is confirmed: the next large one is loaded
    // in parts while still open, under a label of its own, and appears at its COMMIT.
    let streamed_labels = || {
        sim.txn_events(0)
            .into_iter()
            .filter(|event| event.op == "load" && event.label.ends_with("_s"))
            .map(|event| event.label)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let before = streamed_labels();
    client
        .batch_execute(
            "BEGIN; INSERT INTO t SELECT g, 'second' FROM generate_series(20001, 23000) g",
        )
        .await
        .unwrap();
    assert!(
        wait_until(TIMEOUT, || streamed_labels().len() > before.len()).await,
        "after the fallback, the next large transaction was not streamed while open\n{}",
        agent.log()
    );
    assert_eq!(count(), after, "a part of an open transaction is visible");
    client.batch_execute("COMMIT").await.unwrap();
    assert!(
        wait_until(TIMEOUT, || count() == after + 3000).await,
        "the second transaction never landed\n{}",
        agent.log()
    );
    assert!(agent.log().contains("streaming resumes"), "{}", agent.log());
    assert_no_label_twice(&sim);
    agent.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_truncate_inside_reads_it_again_whole_then_streams_again() {
    if !streams() {
        return;
    }
    stream_then_fallback(
        "engine_txn_stream_trunc",
        "TRUNCATE t; INSERT INTO t SELECT g, 'kept' FROM generate_series(10001, 10500) g",
        // Table mode commits rows 0..=3000 before the TRUNCATE, then truncates.
        &[1, 3001, 0, 500],
        &["id", "v"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_add_column_inside_reads_it_again_whole_then_streams_again() {
    if !streams() {
        return;
    }
    stream_then_fallback(
        "engine_txn_stream_ddl",
        "ALTER TABLE t ADD COLUMN w text; \
         INSERT INTO t SELECT g, 'late', g::text FROM generate_series(10001, 11000) g",
        // Table mode commits rows 0..=3000 before the column change.
        &[1, 3001, 4001],
        &["id", "v", "w"],
    )
    .await;
}

/// While a streamed transaction is open, `status` and the metrics show it on its table (xid,
/// label, rows loaded, not prepared); after its COMMIT it is gone from both and counted as
/// committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_status_and_metrics_show_a_streamed_transaction_in_progress() {
    use crate::harness::agent::{metric_sample, metrics_text, status_json};
    if !streams() {
        return;
    }
    let db = streaming_database("engine_txn_stream_status").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int8 PRIMARY KEY, note text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_FLUSH_ROWS", "500");
    let agent = spec.start_streaming().await;
    client
        .batch_execute(
            "BEGIN; INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g",
        )
        .await
        .unwrap();
    let xid: i64 = client
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    let xid = (xid % (1 << 32)) as u64;
    let streamed = |status: &serde_json::Value| {
        status["tables"][0]["streamed_transactions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let mut seen = None;
    assert!(
        wait_until(TIMEOUT, || {
            seen = status_json(&spec)
                .map(|status| streamed(&status))
                .and_then(|txns| txns.first().cloned())
                .filter(|txn| txn["rows"].as_u64().unwrap_or(0) > 0);
            seen.is_some()
        })
        .await,
        "status never showed the open streamed transaction with rows loaded\n{}",
        agent.log()
    );
    let txn = seen.unwrap();
    assert_eq!(txn["xid"].as_u64(), Some(xid), "{txn}");
    assert_eq!(txn["prepared"].as_bool(), Some(false), "{txn}");
    let label = txn["label"].as_str().unwrap_or_default();
    assert!(label.ends_with(&format!("_x{xid}_s")), "{txn}");
    let metrics = metrics_text(&spec);
    assert_eq!(
        metric_sample(
            &metrics,
            "starwal_streamed_transactions{table=\"public.t\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metric_sample(
            &metrics,
            "starwal_streamed_transaction_rows{table=\"public.t\"}"
        )
        .is_some_and(|rows| rows > 0.0),
        "{metrics}"
    );
    assert_eq!(
        sim.catalog()
            .read(|c| c.row_count(TARGET_DB, "t").unwrap_or(0)),
        0,
        "a part of the open transaction is visible"
    );
    client.batch_execute("COMMIT").await.unwrap();
    assert!(
        wait_until(TIMEOUT, || {
            status_json(&spec).is_some_and(|status| {
                streamed(&status).is_empty()
                    && status["tables"][0]["transactions_committed"].as_u64() >= Some(1)
            })
        })
        .await,
        "the committed streamed transaction stayed in status\n{}",
        agent.log()
    );
    assert_eq!(
        metric_sample(
            &metrics_text(&spec),
            "starwal_streamed_transactions{table=\"public.t\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sim.catalog()
            .read(|c| c.row_count(TARGET_DB, "t").unwrap_or(0)),
        5000
    );
    agent.stop_cleanly();
}
