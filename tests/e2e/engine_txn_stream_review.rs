//! Issue 14, item 3: an adversarial review of streamed transactions (`STARWAL_STREAMING=on`),
//! through `starwal run` against real Postgres and the sim.
//!
//! One seeded workload, as production data would have it: several large transactions open at
//! once (streamed: the database's `logical_decoding_work_mem` is 64 kB) on the same and on
//! different tables, while single-statement transactions commit on the same keys in between.
//! Both kinds change primary keys (`UPDATE … SET id = -id`, and DELETE + INSERT of the negated
//! key), some large ones roll back a savepoint at a random point (the agent reads that
//! transaction again whole), some roll back entirely (a streamed abort, often after parts were
//! loaded), and the agent is killed with -9 at random moments, some aimed inside a StarRocks
//! transaction step (a `TxnStep` stall on begin/load/prepare/commit).
//!
//! Every source transaction keeps, per table, the row count and `sum(n) = 0` (each change to a
//! row's `n` is paid back on a balance row of the same connection), so every state of a table
//! at a commit boundary has them. The checker, reading the sim throughout:
//! - per table, count and sum always equal the boundary values (a streamed part visible before
//!   its COMMIT, a rolled-back one, or half a source transaction would break them);
//! - the slot's `confirmed_flush_lsn` does not move past the first change of a large
//!   transaction that is still open while the agent holds streamed parts of it;
//! - at the end the target equals the source, and no label was committed twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use starrocks_sim::catalog::Value;
use starrocks_sim::{FaultKind, LoadFault, Sim, TxnEffect, TxnOp};
use starwal::postgres::Lsn;

use crate::harness::agent::{
    diff, slot_confirmed_flush, source_rows, start_sim, target_rows, wal_insert_position,
    AgentSpec, TARGET_DB,
};
use crate::harness::seeded::{seed, Lcg};
use crate::harness::{Cluster, TestDatabase};

const TIMEOUT: Duration = Duration::from_secs(120);
/// Ordinary keys per table: 1..=KEYS (or their negation after a key change).
const KEYS: u64 = 240;
/// Connections running large transactions at once.
const LARGE_CLIENTS: u64 = 3;
/// Large transactions per connection.
const LARGE_EACH: usize = 10;
/// Single-statement transactions.
const SMALL: usize = 600;
/// kill -9 of the agent during the workload.
const KILLS: usize = 3;
const TABLES: [&str; 2] = ["a", "b"];

/// The balance row of connection `client` (the small one is `LARGE_CLIENTS`).
fn balance(client: u64) -> u64 {
    1_000_000 + client
}

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

/// `n += 1` on the rows whose |id| is in `lo..=hi` (with ~2 kB of new padding each, so a few of
/// these exceed 64 kB), paid back on the connection's balance row: count and sum kept.
fn bump(table: &str, lo: u64, hi: u64, client: u64, pad: bool) -> String {
    // 640 bytes of random hex: pglz cannot shrink it and it stays inline (not TOASTed), so a
    // large transaction's changes really take decoding memory (a repeated md5 compressed to a
    // few bytes, and with some seeds on PG 18 no transaction reached the 64 kB to stream).
    let pad = if pad {
        ", pad = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 20))"
    } else {
        ""
    };
    format!(
        "WITH u AS (UPDATE {table} SET n = n + 1{pad} WHERE abs(id) BETWEEN {lo} AND {hi} \
         RETURNING 1) UPDATE {table} SET n = n - (SELECT count(*) FROM u) WHERE id = {}",
        balance(client)
    )
}

/// A primary-key change by UPDATE: exactly one of ±k exists, it becomes the other.
fn flip(table: &str, k: u64) -> String {
    format!("UPDATE {table} SET id = -id WHERE abs(id) = {k}")
}

/// A primary-key change by DELETE + INSERT of the negated key, keeping `n`.
fn move_row(table: &str, k: u64) -> String {
    format!(
        "WITH d AS (DELETE FROM {table} WHERE abs(id) = {k} RETURNING id, n, pad) \
         INSERT INTO {table} SELECT -id, n, pad FROM d"
    )
}

/// A large transaction still open: its xid (as the agent's labels spell it) and the WAL insert
/// position right after its first change (that change is at or before it).
#[derive(Clone, Copy)]
struct Open {
    xid: u32,
    after_first: Lsn,
    before_first: Lsn,
}

/// The per-table `(count, sum(n))` of the target.
fn target_shape(sim: &Sim, table: &str) -> Option<(usize, i128)> {
    sim.catalog().read(|c| {
        let table = c.table(TARGET_DB, table).ok()?;
        let mut count = 0;
        let mut sum = 0;
        for row in table.rows() {
            count += 1;
            if let Value::Int(n) = &row[1] {
                sum += *n;
            }
        }
        Some((count, sum))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_stream_review_concurrent_key_changes_savepoints_aborts_and_kill9() {
    if Cluster::shared().major() < 14 {
        eprintln!("no streaming of in-progress transactions before PG 14; skipped");
        return;
    }
    let seed = seed();
    eprintln!("seed {seed} (STARWAL_TEST_SEED replays it)");
    let db = streaming_database("engine_txn_stream_review").await;
    let setup = db.owner_client().await;
    for table in TABLES {
        setup
            .batch_execute(&format!(
                "CREATE TABLE {table} (id int8 PRIMARY KEY, n int8 NOT NULL, pad text);
                 INSERT INTO {table} SELECT g, 0, '' FROM generate_series(1, {KEYS}) g;
                 INSERT INTO {table} SELECT g, 0, '' FROM generate_series({}, {}) g;",
                balance(0),
                balance(LARGE_CLIENTS)
            ))
            .await
            .unwrap();
    }
    let rows_per_table = (KEYS + LARGE_CLIENTS + 1) as usize;
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_STREAMING", "on")
        .var("STARWAL_FLUSH_ROWS", "50")
        .var("STARWAL_MAX_BUFFER_BYTES", &(1024 * 1024).to_string());
    let mut agent = spec.start_streaming().await;
    let slot = spec.slot().to_owned();

    let open: Arc<Mutex<BTreeMap<u64, Open>>> = Arc::default();
    let mut workers = Vec::new();
    for client_id in 0..LARGE_CLIENTS {
        let client = db.owner_client().await;
        let open = open.clone();
        let mut rng = Lcg(seed ^ (client_id + 1).wrapping_mul(0x9e37_79b9));
        workers.push(tokio::spawn(async move {
            let (mut committed, mut aborted, mut failed) = (0, 0, 0);
            for _ in 0..LARGE_EACH {
                let savepoint_at = if rng.next(5) == 0 {
                    Some(rng.next(5))
                } else {
                    None
                };
                let rollback = rng.next(5) == 0;
                let steps = 3 + rng.next(4);
                client.batch_execute("BEGIN").await.unwrap();
                let before_first = wal_insert_position(&client).await;
                let mut result = Ok(());
                for step in 0..steps {
                    let table = TABLES[rng.next(2) as usize];
                    // Each large connection keeps to its own keys (the small one crosses them
                    // all): open large transactions share tables, not rows, so they rarely
                    // deadlock.
                    let slice = KEYS / LARGE_CLIENTS;
                    let first = 1 + client_id * slice;
                    let sql = match rng.next(6) {
                        0 => flip(table, first + rng.next(slice)),
                        1 => move_row(table, first + rng.next(slice)),
                        _ => {
                            let lo = first + rng.next(slice / 2);
                            bump(table, lo, lo + slice / 2, client_id, true)
                        }
                    };
                    let sql = if savepoint_at == Some(step) {
                        format!("SAVEPOINT s; {sql}; ROLLBACK TO SAVEPOINT s; RELEASE s")
                    } else {
                        sql
                    };
                    // Held open a while, so that several are open (and streamed) at once.
                    tokio::time::sleep(Duration::from_millis(50 + rng.next(300))).await;
                    result = client.batch_execute(&sql).await;
                    if result.is_err() {
                        break;
                    }
                    if step == 0 {
                        let xid: i64 = client
                            .query_one("SELECT txid_current()", &[])
                            .await
                            .unwrap()
                            .get(0);
                        let after_first = wal_insert_position(&client).await;
                        open.lock().unwrap().insert(
                            client_id,
                            Open {
                                xid: (xid % (1 << 32)) as u32,
                                after_first,
                                before_first,
                            },
                        );
                    }
                }
                // Closed for the checker before the end is sent: a confirmed LSN read while the
                // entry is there cannot include this transaction's commit.
                open.lock().unwrap().remove(&client_id);
                if result.is_err() {
                    // A deadlock with another large transaction: rolled back by Postgres.
                    failed += 1;
                    client.batch_execute("ROLLBACK").await.unwrap();
                } else if rollback {
                    aborted += 1;
                    client.batch_execute("ROLLBACK").await.unwrap();
                } else {
                    committed += 1;
                    client.batch_execute("COMMIT").await.unwrap();
                }
            }
            (committed, aborted, failed)
        }));
    }
    {
        let client = db.owner_client().await;
        let mut rng = Lcg(seed ^ 0x5eed);
        workers.push(tokio::spawn(async move {
            let mut failed = 0;
            for _ in 0..SMALL {
                let table = TABLES[rng.next(2) as usize];
                let k = 1 + rng.next(KEYS);
                let sql = match rng.next(4) {
                    0 => flip(table, k),
                    1 => move_row(table, k),
                    2 => format!(
                        "BEGIN; {}; {}; COMMIT",
                        bump("a", k, k, LARGE_CLIENTS, false),
                        bump("b", k, k, LARGE_CLIENTS, false)
                    ),
                    _ => bump(table, k, k, LARGE_CLIENTS, false),
                };
                tokio::time::sleep(Duration::from_millis(rng.next(30))).await;
                if client.batch_execute(&sql).await.is_err() {
                    failed += 1;
                    let _ = client.batch_execute("ROLLBACK").await;
                }
            }
            (SMALL - failed, 0, failed)
        }));
    }

    let checker = db.owner_client().await;
    let mut rng = Lcg(seed ^ 0xdead);
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(1500 + rng.next(3000));
    // xid → confirmed LSN when the agent was first seen holding streamed parts of it.
    let mut held: BTreeMap<u32, Lsn> = BTreeMap::new();
    // xids open across a kill or rolled back by the agent: Postgres may send them whole later,
    // so the confirmed LSN may pass them legitimately.
    let mut excluded: BTreeSet<u32> = BTreeSet::new();
    let mut watched = BTreeSet::new();
    let mut looks = 0;
    let mut source = None;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        for table in TABLES {
            if let Some((count, sum)) = target_shape(&sim, table) {
                assert!(
                    count == rows_per_table && sum == 0,
                    "seed {seed}: table {table} showed {count} rows with sum(n) = {sum}, a state \
                     no commit boundary had ({rows_per_table} rows, 0)\n{}",
                    agent.log()
                );
            }
        }
        // The confirmed LSN, then the streamed labels (after it: a rollback that let it move
        // on is seen), then the open set (after it: a transaction there was open when it was
        // read).
        let events_before = sim.txn_events(0);
        let confirmed = slot_confirmed_flush(&checker, &slot).await;
        let events = sim.txn_events(0);
        let now_open: Vec<Open> = open.lock().unwrap().values().copied().collect();
        for event in &events {
            if event.op == "rollback" || event.op == "abort" {
                if let Some(xid) = stream_xid(&event.label) {
                    excluded.insert(xid);
                }
            }
        }
        for txn in &now_open {
            if excluded.contains(&txn.xid) {
                continue;
            }
            let suffix = format!("_x{}_s", txn.xid);
            let streamed = events_before
                .iter()
                .any(|e| e.op == "load" && e.label.ends_with(&suffix));
            if !streamed {
                continue;
            }
            let baseline = *held.entry(txn.xid).or_insert(confirmed);
            watched.insert(txn.xid);
            // Only when the agent held parts before the confirmed LSN reached the transaction.
            if baseline <= txn.before_first {
                assert!(
                    confirmed <= txn.after_first,
                    "seed {seed}: confirmed_flush_lsn {confirmed} passed the first change (at or \
                     before {}) of open streamed xid {}\n{}",
                    txn.after_first,
                    txn.xid,
                    agent.log()
                );
            }
        }
        looks += 1;
        let running = workers.iter().any(|w| !w.is_finished());
        if running && kills < KILLS && Instant::now() >= next_kill {
            // Aim at a step of a StarRocks transaction: stall it, kill the agent inside.
            let op =
                [TxnOp::Begin, TxnOp::Load, TxnOp::Prepare, TxnOp::Commit][rng.next(4) as usize];
            let table = TABLES[rng.next(2) as usize];
            sim.faults().inject(
                LoadFault::new(FaultKind::TxnStep {
                    op,
                    effect: TxnEffect::StallAfter,
                    stall_ms: 3_000,
                })
                .on_table(TARGET_DB, table)
                .times(1),
            );
            tokio::time::sleep(Duration::from_millis(200 + rng.next(1500))).await;
            eprintln!(
                "seed {seed}: kill -9 #{} (stall on {op:?} of {table})",
                kills + 1
            );
            agent.kill9();
            sim.faults().clear();
            excluded.extend(open.lock().unwrap().values().map(|t| t.xid));
            excluded.extend(held.keys().copied());
            held.clear();
            agent = spec.start();
            kills += 1;
            next_kill = Instant::now() + Duration::from_millis(2000 + rng.next(3000));
        }
        if source.is_none() && !running {
            let mut all = Vec::new();
            for table in TABLES {
                all.push(
                    source_rows(
                        &setup,
                        &format!("SELECT id::text, n::text, pad FROM {table}"),
                    )
                    .await,
                );
            }
            source = Some(all);
        }
        if let Some(source) = &source {
            let target: Vec<_> = TABLES
                .iter()
                .map(|table| target_rows(&sim, table, &["id", "n", "pad"]))
                .collect();
            if *source == target {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "seed {seed}: a {}\nb {}\n{}",
                diff(&source[0], &target[0]),
                diff(&source[1], &target[1]),
                agent.log()
            );
        }
        assert!(Instant::now() < deadline, "seed {seed}: workload too slow");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut totals = (0, 0, 0);
    for worker in workers {
        let (c, a, f) = worker.await.unwrap();
        totals = (totals.0 + c, totals.1 + a, totals.2 + f);
    }
    for (label, counters) in sim.label_counters(TARGET_DB) {
        assert!(
            counters.commits <= 1,
            "seed {seed}: {label} was committed {} times\n{}",
            counters.commits,
            agent.log()
        );
    }
    let streamed = sim
        .txn_events(0)
        .iter()
        .filter(|e| e.op == "load" && e.label.ends_with("_s"))
        .count();
    assert!(
        streamed > 0,
        "seed {seed}: nothing was streamed\n{}",
        agent.log()
    );
    let log = agent.log();
    eprintln!(
        "seed {seed}: last run's log: {} 'names another label' errors, {} 'read again whole'",
        log.matches("names another label").count(),
        log.matches("read again whole").count()
    );
    eprintln!(
        "seed {seed}: {looks} looks, {kills} kills, {streamed} streamed loads, {} watched while \
         held; transactions committed/rolled back/failed {totals:?}",
        watched.len()
    );
    agent.stop_cleanly();
}

/// The xid of a streamed label (`…_x<xid>_s`).
fn stream_xid(label: &str) -> Option<u32> {
    let rest = label.strip_suffix("_s")?;
    let at = rest.rfind("_x")?;
    rest[at + 2..].parse().ok()
}
