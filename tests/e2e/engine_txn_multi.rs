//! Invariant 11 in `transaction` commit mode (`STARWAL_COMMIT_MODE=transaction`, StarRocks ≥
//! 4.0 multi-table transactions), through `starwal run` against the sim: kill -9 of the agent at
//! every step of a multi-table transaction that spans two tables and is larger than the buffer —
//! after its label was recorded (begin held back), after `begin`, after a load, after `commit`
//! took effect but before the agent heard of it — leaves both targets equal to the source, with
//! no label committed twice (the sim's label counters), every commit covering both tables, and
//! the restart settling the recorded label from its state (`get_load_state`): committed ones
//! skipped, others rolled back and read again under the next attempt's label. While a part is
//! loading, status shows the open multi-table transaction on both tables. A commit whose answer
//! is lost (after or before it took effect) or that StarRocks refuses is settled from the label's
//! state while running. A TRUNCATE and a new column inside a large transaction commit what is
//! open first. 2 × 300 000 rows in one transaction under a 64 MiB cap appear at once in both
//! tables with the agent's peak RSS under the cap + 32 MiB.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use starrocks_sim::{FaultKind, LoadFault, Sim, TxnEffect, TxnOp};

use crate::harness::agent::{
    diff, metric_sample, metrics_text, source_rows, start_sim, status_json, target_rows,
    wait_for_rows, wait_until, AgentSpec, TARGET_DB,
};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(120);
/// Small enough that the large transaction below goes out in several parts.
const CAP: u64 = 512 * 1024;
const ROWS: u64 = 6_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillAt {
    /// The label is recorded in the checkpoint; `begin` is held before it takes effect.
    Recorded,
    /// `begin` took effect; its answer is held back.
    Begin,
    /// A load took effect; its answer is held back.
    Load,
    /// `commit` took effect (the rows are visible); its answer is held back, so the agent has
    /// not confirmed anything of it.
    Commit,
}

impl KillAt {
    fn fault(self) -> FaultKind {
        let (op, effect) = match self {
            KillAt::Recorded => (TxnOp::Begin, TxnEffect::StallBefore),
            KillAt::Begin => (TxnOp::Begin, TxnEffect::StallAfter),
            KillAt::Load => (TxnOp::Load, TxnEffect::StallAfter),
            KillAt::Commit => (TxnOp::Commit, TxnEffect::StallAfter),
        };
        FaultKind::TxnStep {
            op,
            effect,
            stall_ms: 20_000,
        }
    }

    /// What the restart must log about the label the kill left.
    fn settled(self) -> &'static str {
        match self {
            KillAt::Recorded | KillAt::Begin | KillAt::Load => "was not committed (rolled back)",
            KillAt::Commit => "is committed: its changes are skipped",
        }
    }
}

/// The multi-table labels the checkpoint records, with whether their ranges are final.
async fn recorded_labels(client: &tokio_postgres::Client, slot: &str) -> Vec<String> {
    client
        .query(
            "SELECT label FROM starwal.loads_in_flight WHERE slot = $1 AND kind = 'multi'",
            &[&slot],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

/// Every label committed once (per table and in the label counters); every multi-table commit
/// of the big transactions covers both tables. Returns the multi-table labels committed.
fn assert_once_and_whole(sim: &Sim) -> BTreeSet<String> {
    for table in ["a", "b"] {
        let labels = sim.counters(TARGET_DB, table).labels_committed;
        let unique: BTreeSet<&String> = labels.iter().collect();
        assert_eq!(
            unique.len(),
            labels.len(),
            "{table}: a label committed twice"
        );
    }
    let mut multi = BTreeSet::new();
    for (label, c) in sim.label_counters(TARGET_DB) {
        assert!(c.commits <= 1, "{label} committed {} times", c.commits);
        if c.commits == 1 && c.multi_table {
            multi.insert(label);
        }
    }
    multi
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_multi_kill9_at_each_step_commits_every_transaction_once_and_whole() {
    let db = Cluster::shared().create_database("engine_txn_multi").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY, payload text);
             CREATE TABLE b (id int PRIMARY KEY, a_id int NOT NULL, payload text);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b")
        .var("STARWAL_COMMIT_MODE", "transaction")
        .var("STARWAL_MAX_BUFFER_BYTES", &CAP.to_string());
    let mut agent = spec.start_streaming().await;
    let slot = spec.slot().to_owned();
    let steps = [
        KillAt::Recorded,
        KillAt::Begin,
        KillAt::Load,
        KillAt::Commit,
    ];
    for (round, step) in steps.into_iter().enumerate() {
        let seen = sim.txn_events(0).last().map_or(0, |event| event.seq);
        let labels_before = recorded_labels(&client, &slot).await;
        sim.faults().inject(LoadFault::new(step.fault()));
        // A small transaction, a large one over both tables (parts of one multi-table
        // transaction), another small one.
        let start = 1 + round as u64 * (ROWS + 10);
        client
            .batch_execute(&format!(
                "INSERT INTO a VALUES ({small}, 'small before');
                 BEGIN;
                 INSERT INTO a SELECT g, repeat(md5(g::text), 8) FROM generate_series({start}, {end}) g;
                 INSERT INTO b SELECT g, g, repeat(md5(g::text), 8) FROM generate_series({start}, {end}) g;
                 COMMIT;
                 INSERT INTO b VALUES ({small2}, {small2}, 'small after');",
                small = start + ROWS,
                small2 = start + ROWS + 1,
                end = start + ROWS - 1,
            ))
            .await
            .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        let mut shown_open = false;
        loop {
            let events = sim.txn_events(seen);
            let reached = match step {
                // Recorded, and begin not taken effect.
                KillAt::Recorded => {
                    let recorded = recorded_labels(&client, &slot).await;
                    recorded.iter().any(|label| {
                        !labels_before.contains(label)
                            && !events.iter().any(|e| e.op == "begin" && &e.label == label)
                    })
                }
                KillAt::Begin => events.iter().any(|e| e.op == "begin"),
                KillAt::Load => events.iter().any(|e| e.op == "load"),
                KillAt::Commit => events.iter().any(|e| e.op == "commit"),
            };
            if reached {
                if step == KillAt::Load && !shown_open {
                    // The load's answer is held: the open multi-table transaction is shown.
                    shown_open = status_json(&spec).is_some_and(|status| {
                        status["tables"].as_array().is_some_and(|tables| {
                            tables.iter().any(|t| {
                                t["open_transaction"]["label"]
                                    .as_str()
                                    .is_some_and(|l| l.contains("__m_"))
                            })
                        })
                    });
                    if !shown_open {
                        assert!(
                            Instant::now() < deadline,
                            "round {round}: status never showed the open multi-table transaction\n{}",
                            agent.log()
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the agent never reached {step:?}\n{}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("round {round}: kill -9 at {step:?}");
        agent.kill9();
        sim.faults().clear();
        agent = spec.start();
        for (table, sql, columns) in [
            (
                "a",
                "SELECT id::text, payload FROM a",
                &["id", "payload"][..],
            ),
            (
                "b",
                "SELECT id::text, a_id::text, payload FROM b",
                &["id", "a_id", "payload"][..],
            ),
        ] {
            let source = source_rows(&client, sql).await;
            let target =
                wait_for_rows(&source, TIMEOUT, || target_rows(&sim, table, columns)).await;
            assert!(
                source == target,
                "round {round} ({step:?}) {table}: {}\n{}",
                diff(&source, &target),
                agent.log()
            );
        }
        assert_once_and_whole(&sim);
        // After a kill at Commit the targets equal the source at once: wait for the restart.
        let logged = wait_until(TIMEOUT, || agent.log().contains(step.settled())).await;
        assert!(
            logged,
            "round {round} ({step:?}): the restart did not log `{}`\n{}",
            step.settled(),
            agent.log()
        );
    }
    let committed = assert_once_and_whole(&sim);
    assert!(
        !committed.is_empty(),
        "no multi-table transaction committed"
    );
    // The large transactions' commits each covered both tables.
    let both = sim
        .label_counters(TARGET_DB)
        .into_iter()
        .filter(|(_, c)| {
            c.commits == 1
                && c.multi_table
                && c.tables.iter().any(|t| t == "a")
                && c.tables.iter().any(|t| t == "b")
        })
        .count();
    assert!(
        both >= steps.len(),
        "every large transaction commits both tables at once: {both} such commits"
    );
    agent.stop_cleanly();
}

/// A commit whose answer is lost after it took effect, one lost before it took effect, and one
/// StarRocks refuses (the transaction is rolled back): the agent settles each from the label's
/// state while running — committed (done), still open (committed again), aborted (read again
/// under the next attempt's label) — and nothing is committed twice or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_multi_a_commit_without_an_answer_is_settled_by_the_label_state() {
    let db = Cluster::shared()
        .create_database("engine_txn_multi_commit")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY, payload text);
             CREATE TABLE b (id int PRIMARY KEY, a_id int NOT NULL, payload text);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b")
        .var("STARWAL_COMMIT_MODE", "transaction")
        .var("STARWAL_FLUSH_INTERVAL_MS", "100");
    let agent = spec.start_streaming().await;
    for (round, effect) in [TxnEffect::DropAfter, TxnEffect::DropBefore, TxnEffect::Fail]
        .into_iter()
        .enumerate()
    {
        let seen = sim.txn_events(0).last().map_or(0, |event| event.seq);
        sim.faults().inject(LoadFault::new(FaultKind::TxnStep {
            op: TxnOp::Commit,
            effect,
            stall_ms: 0,
        }));
        let start = 1 + round as i64 * 100;
        client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO a SELECT g, 'r{round}' FROM generate_series({start}, {end}) g;
                 INSERT INTO b SELECT g, g, 'r{round}' FROM generate_series({start}, {end}) g;
                 COMMIT;",
                end = start + 49
            ))
            .await
            .unwrap();
        for (table, sql, columns) in [
            (
                "a",
                "SELECT id::text, payload FROM a",
                &["id", "payload"][..],
            ),
            (
                "b",
                "SELECT id::text, a_id::text, payload FROM b",
                &["id", "a_id", "payload"][..],
            ),
        ] {
            let source = source_rows(&client, sql).await;
            let target =
                wait_for_rows(&source, TIMEOUT, || target_rows(&sim, table, columns)).await;
            assert!(
                source == target,
                "round {round} ({effect:?}) {table}: {}\n{}",
                diff(&source, &target),
                agent.log()
            );
        }
        let commits = sim
            .txn_events(seen)
            .iter()
            .filter(|e| e.op == "commit")
            .count();
        eprintln!("round {round} ({effect:?}): {commits} commit(s) took effect");
        assert_once_and_whole(&sim);
        assert!(
            sim.faults().snapshot().loads.is_empty(),
            "round {round}: the commit fault never fired"
        );
    }
    // The refused commit rolled its transaction back: the attempt ended, and the next one
    // found the recorded label aborted and read its changes again.
    let log = agent.log();
    assert!(
        log.contains("was not committed (rolled back)"),
        "the refused commit was not settled from the label's state\n{log}"
    );
    agent.stop_cleanly();
}

/// A TRUNCATE of one table and a new column of the other in the middle of a source transaction
/// larger than the buffer: the open multi-table transaction is committed before each (counted
/// as split), the DDL runs in stream order on the one loader, and both targets end equal to the
/// source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_multi_a_truncate_or_new_column_inside_a_large_transaction_commits_it_first() {
    let db = Cluster::shared()
        .create_database("engine_txn_multi_ddl")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY, payload text);
             CREATE TABLE b (id int PRIMARY KEY, a_id int NOT NULL, payload text);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b")
        .var("STARWAL_COMMIT_MODE", "transaction")
        .var("STARWAL_MAX_BUFFER_BYTES", &CAP.to_string());
    let agent = spec.start_streaming().await;
    let insert = |table: &str, from: u64| {
        let to = from + ROWS - 1;
        match table {
            "a" => format!("INSERT INTO a SELECT g, repeat(md5(g::text), 8) FROM generate_series({from}, {to}) g"),
            _ => format!("INSERT INTO b SELECT g, g, repeat(md5(g::text), 8) FROM generate_series({from}, {to}) g"),
        }
    };
    client
        .batch_execute(&format!(
            "BEGIN; {}; {}; TRUNCATE b; {}; {}; ALTER TABLE a ADD COLUMN extra text; \
             INSERT INTO a SELECT g, 'late', g::text FROM generate_series(100001, 100500) g; COMMIT;",
            insert("a", 1),
            insert("b", 1),
            insert("b", 20_001),
            insert("a", 20_001),
        ))
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; INSERT INTO a VALUES (0, 'after', 'x'); INSERT INTO b VALUES (0, 0, 'after'); COMMIT;")
        .await
        .unwrap();
    let source = source_rows(
        &client,
        "SELECT id::text, payload, coalesce(extra, '-') FROM a",
    )
    .await;
    let target = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "a", &["id", "payload", "extra"])
            .into_iter()
            .map(|mut row| {
                if row[2].is_none() {
                    row[2] = Some("-".into());
                }
                row
            })
            .collect()
    })
    .await;
    assert!(
        source == target,
        "a: {}\n{}",
        diff(&source, &target),
        agent.log()
    );
    let source = source_rows(&client, "SELECT id::text, a_id::text, payload FROM b").await;
    let target = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "b", &["id", "a_id", "payload"])
    })
    .await;
    assert!(
        source == target,
        "b: {}\n{}",
        diff(&source, &target),
        agent.log()
    );
    assert_once_and_whole(&sim);
    let split = metric_sample(
        &metrics_text(&spec),
        "starwal_transactions_split_total{table=\"public.b\"}",
    );
    assert!(
        split.is_some_and(|n| n >= 1.0),
        "the TRUNCATE inside the transaction split it: {split:?}\n{}",
        agent.log()
    );
    agent.stop_cleanly();
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

/// One source transaction of 2 × 300 000 rows over two tables under a 64 MiB buffer: its parts
/// go into one open multi-table transaction as they are sealed, so a reader of both tables at
/// one version sees the old counts until the source COMMIT and then both new counts at once,
/// while the agent's peak resident memory stays under the cap + 32 MiB (invariant 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_multi_a_transaction_larger_than_the_buffer_appears_at_once_under_the_cap() {
    const MIB: u64 = 1024 * 1024;
    const BIG_CAP: u64 = 64 * MIB;
    let rows: usize = 300_000;
    let db = Cluster::shared()
        .create_database("engine_txn_multi_big")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE a (id int8 PRIMARY KEY, v int8, note text);
             CREATE TABLE b (id int8 PRIMARY KEY, a_id int8, note text);
             INSERT INTO a VALUES (0, 0, 'before');
             INSERT INTO b VALUES (0, 0, 'before');",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b")
        .var("STARWAL_COMMIT_MODE", "transaction")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_MAX_BUFFER_BYTES", &BIG_CAP.to_string());
    let mut agent = spec.start_streaming().await;
    // Both counts under one lock: one committed version.
    let counts = || {
        sim.catalog().read(|c| {
            (
                c.row_count(TARGET_DB, "a").unwrap_or(0),
                c.row_count(TARGET_DB, "b").unwrap_or(0),
            )
        })
    };
    assert!(
        wait_until(Duration::from_secs(60), || counts() == (1, 1)).await,
        "the first rows never arrived\n{}",
        agent.log()
    );
    let seen_before = sim.txn_events(0).last().map_or(0, |e| e.seq);
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO a SELECT g, g * 7, md5(g::text) FROM generate_series(1, {rows}) g;
             INSERT INTO b SELECT g, g, md5(g::text) FROM generate_series(1, {rows}) g;
             COMMIT;"
        ))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = counts();
        assert!(
            n == (1, 1) || n == (rows + 1, rows + 1),
            "a reader saw {n:?} rows: neither (1, 1) before nor both {} after the transaction\n{}",
            rows + 1,
            agent.log()
        );
        if n == (rows + 1, rows + 1) {
            break;
        }
        assert!(agent.is_running(), "the agent stopped\n{}", agent.log());
        assert!(
            Instant::now() < deadline,
            "the transaction never landed\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = peak_rss(agent.pid());
    let loads = sim
        .txn_events(seen_before)
        .iter()
        .filter(|e| e.op == "load")
        .count();
    eprintln!(
        "2 x {rows} rows: {loads} loads into the multi-table transaction, agent peak RSS {:.1} MiB (cap {} MiB)",
        peak as f64 / MIB as f64,
        BIG_CAP / MIB
    );
    assert!(
        peak <= BIG_CAP + 32 * MIB,
        "peak RSS {peak} B exceeds STARWAL_MAX_BUFFER_BYTES {BIG_CAP} B + 32 MiB"
    );
    assert!(loads > 2, "the transaction went out in {loads} load(s)");
    let carrying: Vec<_> = sim
        .label_counters(TARGET_DB)
        .into_iter()
        .filter(|(_, c)| c.rows as usize == 2 * rows)
        .collect();
    assert_eq!(
        carrying.len(),
        1,
        "one multi-table transaction carries all {} rows",
        2 * rows
    );
    assert_once_and_whole(&sim);
    agent.stop_cleanly();
}

/// A source transaction whose loading takes longer than `STARWAL_TXN_TIMEOUT_S` does not loop
/// in transaction mode: no table can be parked there (the others would show their halves), so
/// after the second abort of the same source transaction in a row every attempt of the agent
/// ends at once with an error naming the variable and the label (not begun again, not taking
/// the timeout again); nothing of it is visible. Raised, the restart loads it
/// whole in one commit over both tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_multi_a_transaction_longer_than_the_txn_timeout_is_held_then_lands() {
    let db = Cluster::shared()
        .create_database("engine_txn_multi_timeout")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY, note text);
             CREATE TABLE b (id int PRIMARY KEY, note text);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    // Thousands of parts: more than a 1 s `timeout` lets StarRocks take before the commit.
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b")
        .var("STARWAL_COMMIT_MODE", "transaction")
        .var("STARWAL_FLUSH_ROWS", "10")
        .var("STARWAL_TXN_TIMEOUT_S", "1");
    let agent = spec.start_streaming().await;
    client
        .batch_execute(
            "BEGIN;
             INSERT INTO a SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
             INSERT INTO b SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
             COMMIT;",
        )
        .await
        .unwrap();
    // Held, not looping: the attempts after the second abort end before any begin.
    let held = wait_until(TIMEOUT, || {
        agent.log().matches("2 times in a row").count() >= 3
    })
    .await;
    let log = agent.log();
    assert!(held, "not held after two aborts:\n{log}");
    assert!(
        log.contains("raise STARWAL_TXN_TIMEOUT_S and restart the agent") && log.contains("__m_"),
        "the error names the variable and the label:\n{log}"
    );
    assert_eq!(
        log.matches("at its timeout: the source transaction")
            .count(),
        2,
        "StarRocks aborted it more than twice (the third attempt began):\n{log}"
    );
    assert!(
        target_rows(&sim, "a", &["id", "note"]).is_empty()
            && target_rows(&sim, "b", &["id", "note"]).is_empty(),
        "part of the transaction is visible"
    );
    agent.stop_cleanly();

    let before = sim.counters(TARGET_DB, "a").labels_committed.len();
    let raised = spec.clone().var("STARWAL_TXN_TIMEOUT_S", "3600");
    let agent = raised.start();
    for table in ["a", "b"] {
        let source = source_rows(&client, &format!("SELECT id::text, note FROM {table}")).await;
        let target = wait_for_rows(&source, TIMEOUT, || {
            target_rows(&sim, table, &["id", "note"])
        })
        .await;
        assert!(
            source == target,
            "{table}: {}\n{}",
            diff(&source, &target),
            agent.log()
        );
    }
    let labels = sim.counters(TARGET_DB, "a").labels_committed;
    assert_eq!(
        labels.len() - before,
        1,
        "not one StarRocks commit: {:?}",
        &labels[before..]
    );
    agent.stop_cleanly();
}
