//! Issue 14 ("source transactions land whole"), seen by a reader of StarRocks: a seeded random
//! workload of transfers between accounts (one table) and orders with their items (two tables)
//! streams through `starwal run` while a checker reads the sim continuously, each read one
//! committed version across all tables (`Sim::snapshot`, under the sim's state lock).
//!
//! Invariants checked at every read:
//! - the accounts' balance sum is constant (every source transaction moves money, never
//!   creates it), once the seed transaction has landed — in both commit modes, since every
//!   transfer touches one table;
//! - an order's items are all there or none (its items are written by one source transaction)
//!   — in both modes, a property of one table;
//! - in `transaction` mode only: every visible order has its items and every item its order
//!   (the commit covers whole source transactions across tables).
//!
//! Large transactions (more rows than `STARWAL_FLUSH_ROWS`) go out in parts through the
//! transaction interface; the kill -9 variant stops the agent at random two-phase-commit steps
//! (held there by the sim's `txn_step` faults) and restarts it, and the invariants must hold across
//! the crashes too. At the end the target equals the source and no label committed twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use starrocks_sim::catalog::Value;
use starrocks_sim::{FaultKind, LoadFault, Sim, SimOptions, TxnEffect, TxnOp};

use crate::harness::agent::{
    diff, source_rows, start_sim, target_rows, wait_for_rows, wait_until, AgentSpec, TARGET_DB,
};
use crate::harness::seeded::{seed, Lcg};
use crate::harness::{Cluster, TestDatabase};

const TIMEOUT: Duration = Duration::from_secs(120);
const ACCOUNTS: i64 = 400;
const START_BALANCE: i64 = 1_000;
/// A batch is sealed at this many changes: larger transactions go out in parts.
const FLUSH_ROWS: &str = "200";

fn int(v: &Value) -> i128 {
    match v {
        Value::Int(i) => *i,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// What the checker saw.
#[derive(Debug, Default)]
struct Seen {
    reads: u64,
    versions: std::collections::BTreeSet<u64>,
    /// Reads that saw some but not all orders of the workload so far (proves it read mid-run).
    partial_reads: u64,
}

/// Reads the three tables at one version until `stop`, asserting the invariants at every read.
/// `expected_items`: order id → number of items its source transaction wrote.
fn checker(
    sim: Arc<Sim>,
    expected_items: Arc<Mutex<BTreeMap<i64, i64>>>,
    cross_table: bool,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            // The agent creates the tables; until then there is nothing to check.
            let Ok((version, tables)) = sim.snapshot(TARGET_DB, &["accounts", "orders", "items"])
            else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let (accounts, orders, items) = (&tables[0], &tables[1], &tables[2]);
            if !accounts.is_empty() {
                assert_eq!(
                    accounts.len() as i64,
                    ACCOUNTS,
                    "version {version}: the seed transaction is visible in part"
                );
                let sum: i128 = accounts.iter().map(|r| int(&r[1])).sum();
                assert_eq!(
                    sum,
                    i128::from(ACCOUNTS * START_BALANCE),
                    "version {version}: the balance sum changed: a transfer is visible in part"
                );
            }
            let mut per_order: BTreeMap<i64, i64> = BTreeMap::new();
            for item in items {
                *per_order.entry(int(&item[0]) as i64).or_default() += 1;
            }
            let expected = expected_items.lock().unwrap().clone();
            for (order, count) in &per_order {
                assert_eq!(
                    Some(count),
                    expected.get(order),
                    "version {version}: order {order} has {count} items visible, its transaction wrote {:?}",
                    expected.get(order)
                );
            }
            if cross_table {
                let visible_orders: BTreeMap<i64, i64> = orders
                    .iter()
                    .map(|r| (int(&r[0]) as i64, int(&r[1]) as i64))
                    .collect();
                for (order, n) in &visible_orders {
                    assert_eq!(
                        per_order.get(order).copied().unwrap_or(0),
                        *n,
                        "version {version}: order {order} is visible without its {n} items"
                    );
                }
                for order in per_order.keys() {
                    assert!(
                        visible_orders.contains_key(order),
                        "version {version}: items of order {order} are visible without the order"
                    );
                }
            }
            if !per_order.is_empty() && per_order.len() < expected.len() {
                seen.partial_reads += 1;
            }
            seen.reads += 1;
            seen.versions.insert(version);
        }
        seen
    })
}

async fn create_tables(db: &TestDatabase) -> tokio_postgres::Client {
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text);
             CREATE TABLE orders (id int PRIMARY KEY, n_items int NOT NULL);
             CREATE TABLE items (order_id int, line int, qty int NOT NULL, note text,
                                 PRIMARY KEY (order_id, line));",
        )
        .await
        .unwrap();
    client
}

/// One random source transaction; returns whether it was a large one (more rows than a batch).
async fn step(
    client: &tokio_postgres::Client,
    rng: &mut Lcg,
    next_order: &mut i64,
    expected_items: &Mutex<BTreeMap<i64, i64>>,
) -> bool {
    match rng.next(10) {
        // A transfer between two accounts.
        0..=4 => {
            let a = 1 + rng.next(ACCOUNTS as u64) as i64;
            let b = 1 + rng.next(ACCOUNTS as u64) as i64;
            let amount = 1 + rng.next(50) as i64;
            client
                .batch_execute(&format!(
                    "BEGIN;
                     UPDATE accounts SET balance = balance - {amount} WHERE id = {a};
                     UPDATE accounts SET balance = balance + {amount} WHERE id = {b};
                     COMMIT;"
                ))
                .await
                .unwrap();
            false
        }
        // A redistribution over every account (larger than a batch): even ids give 1 to odd ids.
        5 => {
            client
                .batch_execute(
                    "UPDATE accounts SET balance = balance + CASE WHEN id % 2 = 0 THEN -1 ELSE 1 END,
                                         note = md5(random()::text)",
                )
                .await
                .unwrap();
            true
        }
        // An order with its items, sometimes more items than a batch holds.
        6..=8 => {
            let order = *next_order;
            *next_order += 1;
            let n = if rng.next(3) == 0 {
                300 + rng.next(500) as i64
            } else {
                1 + rng.next(8) as i64
            };
            expected_items.lock().unwrap().insert(order, n);
            client
                .batch_execute(&format!(
                    "BEGIN;
                     INSERT INTO orders VALUES ({order}, {n});
                     INSERT INTO items SELECT {order}, g, g % 7 + 1, repeat('x', 40)
                       FROM generate_series(1, {n}) g;
                     COMMIT;"
                ))
                .await
                .unwrap();
            n > 200
        }
        // An order cancelled: it and its items go in one transaction.
        _ => {
            let victim = {
                let expected = expected_items.lock().unwrap();
                let ids: Vec<i64> = expected.keys().copied().collect();
                (!ids.is_empty()).then(|| ids[rng.next(ids.len() as u64) as usize])
            };
            if let Some(order) = victim {
                client
                    .batch_execute(&format!(
                        "BEGIN;
                         DELETE FROM items WHERE order_id = {order};
                         DELETE FROM orders WHERE id = {order};
                         COMMIT;"
                    ))
                    .await
                    .unwrap();
            }
            false
        }
    }
}

/// A random two-phase-commit step to stop the agent at: the step takes effect and the sim holds
/// its answer back, so the agent is killed with StarRocks one step ahead of what it knows.
fn random_kill_point(rng: &mut Lcg) -> TxnOp {
    match rng.next(4) {
        0 => TxnOp::Begin,
        1 => TxnOp::Load,
        2 => TxnOp::Prepare,
        _ => TxnOp::Commit,
    }
}

/// No label committed more than once, per table and per label.
fn assert_nothing_committed_twice(sim: &Sim) {
    for table in ["accounts", "orders", "items"] {
        let labels = sim.counters(TARGET_DB, table).labels_committed;
        let unique: std::collections::BTreeSet<&String> = labels.iter().collect();
        assert_eq!(
            unique.len(),
            labels.len(),
            "{table}: a label committed twice"
        );
    }
    for (label, c) in sim.label_counters(TARGET_DB) {
        assert!(c.commits <= 1, "{label} committed {} times", c.commits);
    }
}

async fn run(mode: Option<&str>, kills: usize, rounds: usize, sim: Sim) {
    let seed = seed();
    eprintln!("seed {seed} (replay with STARWAL_TEST_SEED={seed})");
    let mut rng = Lcg(seed);
    let db = Cluster::shared().create_database("engine_txn_inv").await;
    let client = create_tables(&db).await;
    let sim = Arc::new(sim);
    let mut spec = AgentSpec::new(&db, &sim, "public.accounts,public.orders,public.items")
        .var("STARWAL_FLUSH_ROWS", FLUSH_ROWS)
        .var("STARWAL_TXN_IDLE_TIMEOUT_S", "60");
    if let Some(mode) = mode {
        spec = spec.var("STARWAL_COMMIT_MODE", mode);
    }
    let cross_table = mode == Some("transaction");
    let mut agent = spec.start_streaming().await;
    let expected_items = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let check = checker(
        sim.clone(),
        expected_items.clone(),
        cross_table,
        stop.clone(),
    );

    // The seed: every account in one (large) transaction.
    client
        .batch_execute(&format!(
            "INSERT INTO accounts SELECT g, {START_BALANCE}, md5(g::text)
               FROM generate_series(1, {ACCOUNTS}) g"
        ))
        .await
        .unwrap();
    let mut next_order = 1;
    let kill_rounds: Vec<usize> = (0..kills).map(|k| (k + 1) * rounds / (kills + 1)).collect();
    for round in 0..rounds {
        if kill_rounds.contains(&round) {
            // Arm a stop at a random step, run a large transaction into it, kill -9 there.
            let op = random_kill_point(&mut rng);
            let seen = sim.txn_events(0).last().map_or(0, |e| e.seq);
            sim.faults().inject(LoadFault::new(FaultKind::TxnStep {
                op,
                effect: TxnEffect::StallAfter,
                stall_ms: 30_000,
            }));
            let order = next_order;
            next_order += 1;
            let n = 600 + rng.next(400) as i64;
            expected_items.lock().unwrap().insert(order, n);
            client
                .batch_execute(&format!(
                    "BEGIN;
                     INSERT INTO orders VALUES ({order}, {n});
                     INSERT INTO items SELECT {order}, g, 1, repeat('k', 40)
                       FROM generate_series(1, {n}) g;
                     UPDATE accounts SET balance = balance + CASE WHEN id % 2 = 0 THEN 1 ELSE -1 END;
                     COMMIT;"
                ))
                .await
                .unwrap();
            // In transaction mode there is no prepare: the stop then falls on the commit.
            let reached = wait_until(Duration::from_secs(30), || {
                sim.txn_events(seen).iter().any(|e| e.op == op.as_str())
                    || (sim.faults().snapshot().loads.is_empty()
                        && sim.txn_events(seen).iter().any(|e| e.op == "commit"))
            })
            .await;
            eprintln!("round {round}: kill -9 at {op:?} (reached: {reached})");
            agent.kill9();
            sim.faults().clear();
            agent = spec.start();
        } else {
            // Paced, so the agent's loads (every 100 ms) fall between transactions and the
            // checker gets many versions to look at.
            let large = step(&client, &mut rng, &mut next_order, &expected_items).await;
            let pause = if large { 50 } else { 10 + rng.next(30) };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    for (table, sql, columns) in [
        (
            "accounts",
            "SELECT id::text, balance::text, note FROM accounts",
            &["id", "balance", "note"][..],
        ),
        (
            "orders",
            "SELECT id::text, n_items::text FROM orders",
            &["id", "n_items"][..],
        ),
        (
            "items",
            "SELECT order_id::text, line::text, qty::text, note FROM items",
            &["order_id", "line", "qty", "note"][..],
        ),
    ] {
        let source = source_rows(&client, sql).await;
        let target = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, table, columns)).await;
        assert!(
            source == target,
            "{table} (seed {seed}): {}\n{}",
            diff(&source, &target),
            agent.log()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let seen = check
        .join()
        .expect("the checker saw an invariant broken (see above)");
    eprintln!(
        "checker: {} reads over {} versions, {} mid-run",
        seen.reads,
        seen.versions.len(),
        seen.partial_reads
    );
    assert!(
        seen.versions.len() >= 5,
        "the checker saw only {} versions: it proved nothing",
        seen.versions.len()
    );
    assert_nothing_committed_twice(&sim);
    let txn_commits = sim
        .txn_events(0)
        .iter()
        .filter(|e| e.op == "commit")
        .count();
    assert!(
        txn_commits > 0,
        "no transaction went through the transaction interface: the test proved nothing\n{}",
        agent.log()
    );
    eprintln!("{txn_commits} commits through the transaction interface");
    agent.stop_cleanly();
}

/// `table` mode (the default): every table's invariant holds at every read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_table_mode_each_table_sees_whole_transactions() {
    run(None, 0, 60, start_sim()).await;
}

/// `table` mode, kill -9 at random two-phase-commit steps: still whole, still once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_table_mode_kill9_at_random_steps_keeps_transactions_whole_and_once() {
    run(None, 3, 40, start_sim()).await;
}

/// StarRocks 3.x has the single-table transaction interface only: `table` mode needs no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_table_mode_on_starrocks_3_sees_whole_transactions() {
    run(None, 0, 30, start_sim_version("3.3")).await;
}

/// A sim like `start_sim`'s emulating another StarRocks version.
fn start_sim_version(version: &str) -> Sim {
    Sim::start(SimOptions {
        password: "pw".into(),
        mysql: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        starrocks_version: version.into(),
        ..SimOptions::default()
    })
    .expect("start the sim")
}

/// `transaction` mode: a reader never sees part of a source transaction across tables either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_transaction_mode_readers_see_whole_transactions_across_tables() {
    run(Some("transaction"), 0, 60, start_sim()).await;
}

/// `transaction` mode, kill -9 at random steps (multi-table commits have no prepare: commit is
/// one phase, settled from the label's state after a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_transaction_mode_kill9_at_random_steps_keeps_transactions_whole_and_once() {
    run(Some("transaction"), 3, 40, start_sim()).await;
}

/// `transaction` mode against StarRocks 3.x (no multi-table transactions) is refused at setup
/// with an error naming the variable and the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_transaction_mode_is_refused_on_starrocks_3() {
    let db = Cluster::shared().create_database("engine_txn_v3").await;
    let client = create_tables(&db).await;
    drop(client);
    let sim = start_sim_version("3.3");
    let spec =
        AgentSpec::new(&db, &sim, "public.accounts").var("STARWAL_COMMIT_MODE", "transaction");
    let mut agent = spec.start();
    let status = agent
        .wait(Duration::from_secs(60))
        .expect("the agent exits");
    assert_eq!(status.code(), Some(2), "{}", agent.log());
    let log = agent.log();
    assert!(
        log.contains("STARWAL_COMMIT_MODE") && log.contains("3.3"),
        "the error names the variable and the version:\n{log}"
    );
    // Table mode works against the same 3.x sim.
    let spec = spec.var("STARWAL_COMMIT_MODE", "table");
    let started = Instant::now();
    spec.start_streaming().await.stop_cleanly();
    assert!(started.elapsed() < TIMEOUT);
}
