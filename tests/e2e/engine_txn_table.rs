//! Invariant 11 in `table` commit mode, through `starwal run` against the sim: a source
//! transaction larger than `STARWAL_MAX_BUFFER_BYTES` goes out in parts, yet a reader of the table
//! sees the old row count or the new one, never one in between (its parts go into one StarRocks
//! transaction committed at its source commit); and kill -9 of the agent at every step of that
//! transaction's two-phase commit (begin, load, prepare, after the checkpoint recorded it
//! prepared, commit) leaves the target equal to the source with no label committed twice; a
//! TRUNCATE and a new column in the middle of a large transaction close its StarRocks
//! transaction first (visible in parts, counted) and the target still ends equal to the source;
//! a table parked by a bad value at the end of a large transaction shows none of it; a stop
//! inside a large transaction rolls its StarRocks transaction back; a whole batch sealed into
//! two loads (soft deletes beside full rows) is counted as split.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use starrocks_sim::{FaultKind, LoadFault, ServerFaults, ServerRole, Sim, TxnEffect, TxnOp};

use crate::harness::agent::{
    diff, metric_sample, metrics_text, source_rows, start_sim, status_json, target_rows,
    wait_for_rows, wait_until, AgentSpec, TARGET_DB,
};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(120);
/// Small enough that the transactions below go out in many parts.
const CAP: u64 = 512 * 1024;
const ROWS: u64 = 12_000;

/// Inserts `ROWS` rows from `start` in one transaction (about 6 MB: many parts under `CAP`).
fn big_insert(start: u64) -> String {
    format!(
        "INSERT INTO t SELECT g, repeat(md5(g::text), 16) FROM generate_series({start}, {}) g",
        start + ROWS - 1
    )
}

/// Every label of the table committed once; returns the transaction labels (`…_t`) among them.
fn assert_no_label_twice(sim: &Sim) -> Vec<String> {
    let counters = sim.counters(TARGET_DB, "t");
    let unique: BTreeSet<&String> = counters.labels_committed.iter().collect();
    assert_eq!(
        unique.len(),
        counters.labels_committed.len(),
        "a label committed twice: {:?}",
        counters.labels_committed
    );
    for (label, committed) in sim.label_counters(TARGET_DB) {
        assert!(
            committed.commits <= 1,
            "{label} was committed {} times",
            committed.commits
        );
    }
    counters
        .labels_committed
        .into_iter()
        .filter(|label| label.ends_with("_t"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_a_transaction_larger_than_the_buffer_is_never_partly_visible() {
    let db = Cluster::shared()
        .create_database("engine_txn_visible")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, payload text);
             INSERT INTO t VALUES (0, 'before');",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_MAX_BUFFER_BYTES", &CAP.to_string());
    let agent = spec.start_streaming().await;
    let seeded = wait_for_rows(&[vec![Some("0".into())]].into(), TIMEOUT, || {
        target_rows(&sim, "t", &["id"])
    })
    .await;
    assert_eq!(
        seeded.len(),
        1,
        "the first row never arrived\n{}",
        agent.log()
    );
    let began_before = sim.counters(TARGET_DB, "t").label_attempts.len();

    // Every answer of the BE comes 200 ms late: the parts take seconds to go in, and the
    // reader below gets many looks at the table meanwhile.
    sim.faults().set_server(
        ServerRole::Be,
        ServerFaults {
            delay_ms: 200,
            ..ServerFaults::default()
        },
    );
    client.batch_execute(&big_insert(1)).await.unwrap();

    let deadline = Instant::now() + TIMEOUT;
    let mut looks_while_loading = 0;
    let mut counts = BTreeSet::new();
    // Metrics show the open transaction while its parts load (scraped now and then).
    let mut shown_open = false;
    loop {
        if !shown_open && looks_while_loading % 10 == 1 {
            let metrics = metrics_text(&spec);
            shown_open = metric_sample(&metrics, "starwal_transaction_open{table=\"public.t\"}")
                == Some(1.0)
                && metric_sample(&metrics, "starwal_transaction_rows{table=\"public.t\"}")
                    .is_some_and(|rows| rows > 0.0);
        }
        let begun = sim.counters(TARGET_DB, "t").label_attempts.len() > began_before;
        let count = target_rows(&sim, "t", &["id"]).len() as u64;
        counts.insert(count);
        assert!(
            count == 1 || count == ROWS + 1,
            "a reader saw {count} rows: neither the {} before nor the {} after the transaction\n{}",
            1,
            ROWS + 1,
            agent.log()
        );
        if count == ROWS + 1 {
            break;
        }
        if begun {
            looks_while_loading += 1;
        }
        assert!(
            Instant::now() < deadline,
            "the transaction never landed\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim.faults()
        .set_server(ServerRole::Be, ServerFaults::default());
    eprintln!("{looks_while_loading} looks while the parts loaded; counts seen {counts:?}");
    assert!(
        looks_while_loading >= 3,
        "only {looks_while_loading} looks while the parts loaded: the test proved nothing"
    );
    assert!(
        shown_open,
        "/metrics never showed the open transaction with rows while its parts loaded"
    );
    let metrics = metrics_text(&spec);
    assert_eq!(
        metric_sample(&metrics, "starwal_transaction_open{table=\"public.t\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric_sample(
            &metrics,
            "starwal_transactions_committed_total{table=\"public.t\"}"
        ),
        Some(1.0)
    );
    let transactions = assert_no_label_twice(&sim);
    assert_eq!(
        transactions.len(),
        1,
        "one StarRocks transaction carries the source transaction: {transactions:?}\n{}",
        agent.log()
    );
    let source = source_rows(&client, "SELECT id::text, payload FROM t").await;
    let target = target_rows(&sim, "t", &["id", "payload"]);
    assert!(source == target, "{}", diff(&source, &target));
    agent.stop_cleanly();
}

/// Where the agent is killed, and how the sim holds it there.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// `begin` took effect; its answer is held back.
    Begin,
    /// The first part's `load` took effect; its answer is held back.
    Load,
    /// `prepare` took effect (StarRocks holds a PREPARED transaction) before the checkpoint
    /// recorded it.
    Prepare,
    /// The checkpoint recorded it prepared; `commit` has not taken effect (its first attempt
    /// was cut off before it did, and the retry waits out its backoff).
    Recorded,
    /// `commit` took effect; its answer is held back.
    Commit,
}

impl KillAt {
    fn fault(self) -> FaultKind {
        let (op, effect) = match self {
            KillAt::Begin => (TxnOp::Begin, TxnEffect::StallAfter),
            KillAt::Load => (TxnOp::Load, TxnEffect::StallAfter),
            KillAt::Prepare => (TxnOp::Prepare, TxnEffect::StallAfter),
            KillAt::Recorded => (TxnOp::Commit, TxnEffect::DropBefore),
            KillAt::Commit => (TxnOp::Commit, TxnEffect::StallAfter),
        };
        FaultKind::TxnStep {
            op,
            effect,
            stall_ms: 20_000,
        }
    }

    /// The sim's event that marks the point (`Recorded`: the checkpoint's flag instead).
    fn event(self) -> &'static str {
        match self {
            KillAt::Begin => "begin",
            KillAt::Load => "load",
            KillAt::Prepare | KillAt::Recorded => "prepare",
            KillAt::Commit => "commit",
        }
    }
}

/// Whether the agent's checkpoint records a prepared StarRocks transaction.
async fn recorded_prepared(client: &tokio_postgres::Client, slot: &str) -> bool {
    client
        .query_opt(
            "SELECT 1 FROM starwal.loads_in_flight WHERE slot = $1 AND kind = 'txn' AND prepared",
            &[&slot],
        )
        .await
        .ok()
        .flatten()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_kill9_at_each_two_phase_commit_step_loads_every_transaction_once() {
    let db = Cluster::shared().create_database("engine_txn_kill9").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, payload text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_MAX_BUFFER_BYTES", &CAP.to_string())
        // A kill leaves an open StarRocks transaction behind; the restart rolls it back, and
        // it would time out by itself after this long.
        .var("STARWAL_TXN_IDLE_TIMEOUT_S", "60");
    let mut agent = spec.start_streaming().await;
    let slot = spec.slot().to_owned();
    let steps = [
        KillAt::Begin,
        KillAt::Load,
        KillAt::Prepare,
        KillAt::Recorded,
        KillAt::Commit,
    ];
    for (round, step) in steps.into_iter().enumerate() {
        let seen = sim.txn_events(0).last().map_or(0, |event| event.seq);
        sim.faults()
            .inject(LoadFault::new(step.fault()).on_table(TARGET_DB, "t"));
        // A small transaction first (a plain load), then a large one in parts, then another
        // small one: the kill lands inside the large one's StarRocks transaction.
        let start = 1 + round as u64 * (ROWS + 10);
        client
            .batch_execute(&format!(
                "INSERT INTO t VALUES ({}, 'small before'); {}; INSERT INTO t VALUES ({}, 'small after');",
                start + ROWS,
                big_insert(start),
                start + ROWS + 1
            ))
            .await
            .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let reached = sim.txn_events(seen).iter().any(|event| {
                event.op == step.event() && event.label.ends_with("_t") && event.tables == "t"
            });
            let reached = match step {
                KillAt::Recorded => reached && recorded_prepared(&client, &slot).await,
                _ => reached,
            };
            if reached {
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
        let source = source_rows(&client, "SELECT id::text, payload FROM t").await;
        let target = wait_for_rows(&source, TIMEOUT, || {
            target_rows(&sim, "t", &["id", "payload"])
        })
        .await;
        assert!(
            source == target,
            "round {round} ({step:?}): {}\n{}",
            diff(&source, &target),
            agent.log()
        );
        assert_no_label_twice(&sim);
        // The restart settled the StarRocks transaction the kill left before streaming.
        let settled = match step {
            KillAt::Begin | KillAt::Load | KillAt::Prepare => {
                "rolled back the StarRocks transaction a previous run left open"
            }
            KillAt::Recorded | KillAt::Commit => {
                "committed the StarRocks transaction a previous run had prepared"
            }
        };
        // After a kill at Commit the target equals the source at once: wait for the restart.
        let logged = wait_until(TIMEOUT, || agent.log().contains(settled)).await;
        assert!(
            logged,
            "round {round} ({step:?}): the restart did not log `{settled}`\n{}",
            agent.log()
        );
    }
    let transactions = assert_no_label_twice(&sim);
    assert!(
        transactions.len() >= steps.len(),
        "each large transaction commits in a StarRocks transaction: {transactions:?}"
    );
    agent.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_a_truncate_or_new_column_inside_a_large_transaction_commits_it_first_in_order() {
    let db = Cluster::shared().create_database("engine_txn_ddl").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, payload text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec =
        AgentSpec::new(&db, &sim, "public.t").var("STARWAL_MAX_BUFFER_BYTES", &CAP.to_string());
    let agent = spec.start_streaming().await;
    // Parts of the first insert are in a StarRocks transaction when the TRUNCATE comes: they
    // must be committed before it, or they would reappear after it. Then a column is added in
    // the middle of the second insert's parts.
    client
        .batch_execute(&format!(
            "BEGIN; {}; TRUNCATE t; {}; ALTER TABLE t ADD COLUMN extra text; \
             INSERT INTO t SELECT g, 'late', g::text FROM generate_series(100001, 100500) g; COMMIT;",
            big_insert(1),
            big_insert(50_001)
        ))
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO t VALUES (0, 'after', 'x')")
        .await
        .unwrap();
    let source = source_rows(
        &client,
        "SELECT id::text, payload, coalesce(extra, '-') FROM t",
    )
    .await;
    let target = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "t", &["id", "payload", "extra"])
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
        "{}\n{}",
        diff(&source, &target),
        agent.log()
    );
    assert_no_label_twice(&sim);
    let split = metric_sample(
        &metrics_text(&spec),
        "starwal_transactions_split_total{table=\"public.t\"}",
    );
    assert!(
        split.is_some_and(|n| n >= 1.0),
        "the TRUNCATE inside the transaction split it: {split:?}\n{}",
        agent.log()
    );
    agent.stop_cleanly();
}

/// A value the target cannot store, at the end of a large transaction whose first parts are
/// already in its StarRocks transaction: the table is parked (invariant 13) and none of the
/// transaction is visible (invariant 11), while another table keeps streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_a_table_parked_inside_a_large_transaction_shows_none_of_it() {
    let db = Cluster::shared().create_database("engine_txn_park").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, payload text, n numeric);
             CREATE TABLE b (id int PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t,public.b")
        .var("STARWAL_MAX_BUFFER_BYTES", &CAP.to_string());
    let agent = spec.start_streaming().await;
    let began_before = sim.counters(TARGET_DB, "t").label_attempts.len();
    // 12 000 good rows (many parts), then one whose numeric has more digits than the target's
    // DECIMAL keeps.
    client
        .batch_execute(&format!(
            "BEGIN; {}; INSERT INTO t VALUES (0, 'bad', 3.14159265358979); COMMIT;",
            big_insert(1)
        ))
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO b SELECT g, 'after' FROM generate_series(1, 20) g")
        .await
        .unwrap();
    let source_b = source_rows(&client, "SELECT id::text, v FROM b").await;
    let got = wait_for_rows(&source_b, TIMEOUT, || target_rows(&sim, "b", &["id", "v"])).await;
    assert!(
        got == source_b,
        "{}\n{}",
        diff(&source_b, &got),
        agent.log()
    );
    let parked = wait_until(TIMEOUT, || {
        status_json(&spec).is_some_and(|s| {
            s["tables"].as_array().is_some_and(|tables| {
                tables
                    .iter()
                    .any(|t| t["source"] == "public.t" && !t["parked"].is_null())
            })
        })
    })
    .await;
    assert!(parked, "{:?}\n{}", status_json(&spec), agent.log());
    assert!(
        sim.counters(TARGET_DB, "t").label_attempts.len() > began_before,
        "the first parts never went into a StarRocks transaction: the test proved nothing\n{}",
        agent.log()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        target_rows(&sim, "t", &["id"]).is_empty(),
        "part of the transaction became visible\n{}",
        agent.log()
    );
    assert_no_label_twice(&sim);
    agent.stop_cleanly();
}

/// SIGTERM while a large transaction's parts load: the drain rolls its StarRocks transaction
/// back (nothing of it visible, nothing confirmed), exits 0, and the next start loads it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_a_stop_inside_a_large_transaction_rolls_it_back_and_the_next_start_loads_it() {
    let db = Cluster::shared().create_database("engine_txn_stop").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, payload text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec =
        AgentSpec::new(&db, &sim, "public.t").var("STARWAL_MAX_BUFFER_BYTES", &CAP.to_string());
    let mut agent = spec.start_streaming().await;
    let seen = sim.txn_events(0).last().map_or(0, |event| event.seq);
    // Parts go in slowly: the stop lands while the transaction is open.
    sim.faults().set_server(
        ServerRole::Be,
        ServerFaults {
            delay_ms: 300,
            ..ServerFaults::default()
        },
    );
    // A small transaction just before: in the same batch, its row goes into the StarRocks
    // transaction's first part and is rolled back with it, so the stop must not confirm it.
    client
        .batch_execute("INSERT INTO t VALUES (0, 'small before')")
        .await
        .unwrap();
    client.batch_execute(&big_insert(1)).await.unwrap();
    let loading = wait_until(TIMEOUT, || {
        sim.txn_events(seen)
            .iter()
            .any(|event| event.op == "load" && event.label.ends_with("_t"))
    })
    .await;
    assert!(loading, "no part went into a transaction\n{}", agent.log());
    let status = agent.signal_and_wait(libc::SIGTERM, Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "the drain did not exit 0: {status:?}\n{}",
        agent.log()
    );
    sim.faults()
        .set_server(ServerRole::Be, ServerFaults::default());
    assert!(
        agent
            .log()
            .contains("rolled back the open StarRocks transaction"),
        "{}",
        agent.log()
    );
    assert!(
        sim.txn_events(seen)
            .iter()
            .any(|event| event.op == "rollback" && event.label.ends_with("_t")),
        "StarRocks saw no rollback: {:?}",
        sim.txn_events(seen)
    );
    // Nothing of the large transaction is visible (the small row may have gone plain first).
    let visible = target_rows(&sim, "t", &["id"]);
    assert!(
        visible.iter().all(|row| row[0].as_deref() == Some("0")),
        "{} rows of the rolled-back transaction are visible",
        visible.len()
    );
    let agent = spec.start();
    let source = source_rows(&client, "SELECT id::text, payload FROM t").await;
    let target = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "t", &["id", "payload"])
    })
    .await;
    assert!(
        source == target,
        "{}\n{}",
        diff(&source, &target),
        agent.log()
    );
    assert_no_label_twice(&sim);
    agent.stop_cleanly();
}

/// A whole batch (no StarRocks transaction) holding two column sets: soft deletes with the
/// default replica identity are key-only partial updates, so a transaction that inserts and
/// deletes goes out as two Stream Loads and is visible in two steps. What is loaded is unchanged;
/// the split is counted (`starwal_transactions_split_total`) and logged, and a batch of one
/// column set is not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_a_whole_batch_of_two_column_sets_is_counted_as_split() {
    let db = Cluster::shared()
        .create_database("engine_txn_colsets")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, payload text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_DELETE_MODE", "soft");
    let agent = spec.start_streaming().await;
    let series = "starwal_transactions_split_total{table=\"public.t\"}";
    // The target as (id, payload, flagged deleted), flags read as the sim stores them.
    let target = || -> crate::harness::agent::Rows {
        target_rows(&sim, "t", &["id", "payload", "_starwal_deleted"])
            .into_iter()
            .map(|mut row| {
                let flagged = matches!(row[2].as_deref(), Some("1" | "true"));
                row[2] = Some(flagged.to_string());
                row
            })
            .collect()
    };

    // Inserts only: one column set, one load, nothing split.
    client
        .batch_execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 10) g")
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, payload, 'false' FROM t").await;
    let loaded = wait_for_rows(&source, TIMEOUT, target).await;
    assert!(
        source == loaded,
        "{}\n{}",
        diff(&source, &loaded),
        agent.log()
    );
    let split = metric_sample(&metrics_text(&spec), series);
    assert!(
        split.is_none_or(|n| n == 0.0),
        "a batch of one column set was counted as split: {split:?}\n{}",
        agent.log()
    );

    // Full rows and a key-only soft delete in one transaction: two loads.
    client
        .batch_execute(
            "BEGIN; INSERT INTO t SELECT g, 'v' || g FROM generate_series(11, 20) g; \
             UPDATE t SET payload = 'changed' WHERE id = 2; DELETE FROM t WHERE id = 1; COMMIT;",
        )
        .await
        .unwrap();
    let source = source_rows(
        &client,
        "SELECT id::text, payload, 'false' FROM t UNION ALL SELECT '1', 'v1', 'true'",
    )
    .await;
    let loaded = wait_for_rows(&source, TIMEOUT, target).await;
    assert!(
        source == loaded,
        "{}\n{}",
        diff(&source, &loaded),
        agent.log()
    );
    let split = metric_sample(&metrics_text(&spec), series);
    assert!(
        split.is_some_and(|n| n >= 1.0),
        "a whole batch sealed into two loads was not counted as split: {split:?}\n{}",
        agent.log()
    );
    assert!(
        agent.log().contains("several column sets"),
        "no warning about the batch visible in steps\n{}",
        agent.log()
    );
    agent.stop_cleanly();
}
