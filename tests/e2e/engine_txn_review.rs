//! Issue 14 review: a seeded randomized crash test of `table` mode. A writer runs a mixed
//! workload of small and large source transactions over two tables (some large ones touch both)
//! while the agent is stopped again and again at random: kill -9 at a random moment, kill -9 the
//! instant the sim applies a random transaction-interface step (begin, load, prepare, commit: no
//! fault holds it, so the kill races the agent's next step, e.g. the checkpoint write after
//! prepare or the confirm after commit), or a drain (SIGTERM) wherever it falls. A checker reads
//! both tables at one committed version throughout.
//!
//! Invariants:
//! - at every read, per table: `a`'s balance sum is constant once its seed is visible (every
//!   later transaction moves money, never makes it) and every group of `b` (written, and
//!   deleted, by one source transaction) is visible whole or not at all;
//! - at the end the target equals the source, and the sim's counters show no label committed
//!   twice.
//!
//! Replay a failure with `STARWAL_TEST_SEED=<seed printed>`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starrocks_sim::catalog::Value;
use starrocks_sim::{Sim, SimOptions};

use crate::harness::agent::{
    diff, source_rows, start_sim, status_json, target_rows, wait_for_rows, wait_until, Agent,
    AgentSpec, TARGET_DB,
};
use crate::harness::seeded::{seed, Lcg};
use crate::harness::{unique_name, Cluster};

const TIMEOUT: Duration = Duration::from_secs(180);
const ACCOUNTS: i64 = 300;
const START_BALANCE: i64 = 1_000;
/// Batches are sealed at this many changes: a transaction of more rows goes out in parts.
const FLUSH_ROWS: &str = "100";
/// Agent stops (kill -9 or drain) per run.
const ROUNDS: usize = 12;

fn int(v: &Value) -> i128 {
    match v {
        Value::Int(i) => *i,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// Reads `a` and `b` at one version until `stop`; panics on a transaction visible in part.
/// `groups`: group id of `b` → rows its source transaction wrote. Returns the versions seen.
fn checker(
    slot: SimSlot,
    groups: Arc<Mutex<BTreeMap<i64, i64>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut versions = std::collections::BTreeSet::new();
        while !stop.load(Ordering::Relaxed) {
            // None while StarRocks restarts; the clone is dropped before the next turn.
            let sim = slot.lock().unwrap().clone();
            let Some(Ok((version, tables))) = sim.map(|sim| sim.snapshot(TARGET_DB, &["a", "b"]))
            else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let (a, b) = (&tables[0], &tables[1]);
            if !a.is_empty() {
                assert_eq!(
                    a.len() as i64,
                    ACCOUNTS,
                    "version {version}: a's seed is visible in part"
                );
                let sum: i128 = a.iter().map(|r| int(&r[1])).sum();
                assert_eq!(
                    sum,
                    i128::from(ACCOUNTS * START_BALANCE),
                    "version {version}: a's balance sum changed: a transaction is visible in part"
                );
            }
            let mut per_group: BTreeMap<i64, i64> = BTreeMap::new();
            for row in b {
                *per_group.entry(int(&row[1]) as i64).or_default() += 1;
            }
            let expected = groups.lock().unwrap().clone();
            for (group, count) in &per_group {
                assert_eq!(
                    Some(count),
                    expected.get(group),
                    "version {version}: group {group} of b has {count} rows visible, its transaction wrote {:?}",
                    expected.get(group)
                );
            }
            // Versions restart with StarRocks' process: count reads of distinct ones per life.
            versions.insert((version, a.len(), b.len()));
            std::thread::sleep(Duration::from_millis(5));
        }
        versions.len()
    })
}

/// The current StarRocks (`None` while it restarts).
type SimSlot = Arc<Mutex<Option<Arc<Sim>>>>;

fn sim_options(dir: Option<&std::path::Path>) -> SimOptions {
    SimOptions {
        password: "pw".into(),
        mysql: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        data_dir: dir.map(std::path::Path::to_path_buf),
        ..SimOptions::default()
    }
}

/// Stops StarRocks (what it wrote to `dir` survives: PREPARED transactions, labels, data; open
/// transactions are aborted as a BE restart does), waits `down`, starts it on the same ports.
/// Returns the labels the stopped one committed, as `table/label`.
async fn restart_starrocks(slot: &SimSlot, dir: &std::path::Path, down: Duration) -> Vec<String> {
    let mut shared = slot.lock().unwrap().take().expect("a running sim");
    let sim = loop {
        match Arc::try_unwrap(shared) {
            Ok(sim) => break sim,
            // The checker holds a clone for one read.
            Err(again) => {
                shared = again;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let addrs = sim.addrs();
    let mut committed = Vec::new();
    for table in ["a", "b"] {
        // Per table: a multi-table label (`transaction` mode) is committed in both.
        committed.extend(
            sim.counters(TARGET_DB, table)
                .labels_committed
                .into_iter()
                .map(|label| format!("{table}/{label}")),
        );
    }
    for (label, c) in sim.label_counters(TARGET_DB) {
        assert!(c.commits <= 1, "{label} committed {} times", c.commits);
    }
    sim.shutdown();
    tokio::time::sleep(down).await;
    let sim = Sim::start(SimOptions {
        fe_http: addrs.fe_http,
        be_http: addrs.be_http,
        mysql: addrs.mysql,
        ..sim_options(Some(dir))
    })
    .expect("restart the sim on the same ports");
    *slot.lock().unwrap() = Some(Arc::new(sim));
    committed
}

/// One random source transaction; `next_group` numbers `b`'s groups.
async fn step(
    client: &tokio_postgres::Client,
    rng: &mut Lcg,
    next_group: &mut i64,
    groups: &Mutex<BTreeMap<i64, i64>>,
) {
    let redistribute = "UPDATE a SET balance = balance + CASE WHEN id % 2 = 0 THEN -1 ELSE 1 END, \
                        note = md5(random()::text);";
    let mut new_group = |rng: &mut Lcg, large: bool| {
        let group = *next_group;
        *next_group += 1;
        let n = if large {
            150 + rng.next(600) as i64
        } else {
            1 + rng.next(5) as i64
        };
        groups.lock().unwrap().insert(group, n);
        format!(
            "INSERT INTO b SELECT {group} * 10000 + g, {group}, md5(g::text) \
               FROM generate_series(1, {n}) g;"
        )
    };
    let sql = match rng.next(12) {
        // Small: a transfer, or a small group, or both.
        0..=2 => {
            let x = 1 + rng.next(ACCOUNTS as u64);
            let y = 1 + rng.next(ACCOUNTS as u64);
            let amount = 1 + rng.next(40);
            format!(
                "UPDATE a SET balance = balance - {amount} WHERE id = {x};
                 UPDATE a SET balance = balance + {amount} WHERE id = {y};"
            )
        }
        3..=4 => new_group(rng, false),
        5 => {
            let x = 1 + rng.next(ACCOUNTS as u64);
            let y = 1 + rng.next(ACCOUNTS as u64);
            format!(
                "{} UPDATE a SET balance = balance - 3 WHERE id = {x};
                 UPDATE a SET balance = balance + 3 WHERE id = {y};",
                new_group(rng, false)
            )
        }
        // Large, one table.
        6 => redistribute.to_owned(),
        7..=8 => new_group(rng, true),
        // Large over both tables.
        9 => format!("{} {redistribute}", new_group(rng, true)),
        // A group rewritten or deleted whole (in one transaction, large when the group is).
        _ => {
            let ids: Vec<i64> = groups.lock().unwrap().keys().copied().collect();
            if ids.is_empty() {
                return;
            }
            let group = ids[rng.next(ids.len() as u64) as usize];
            if rng.next(2) == 0 {
                format!("UPDATE b SET note = md5(random()::text) WHERE grp = {group};")
            } else {
                format!("DELETE FROM b WHERE grp = {group};")
            }
        }
    };
    client
        .batch_execute(&format!("BEGIN; {sql} COMMIT;"))
        .await
        .unwrap();
}

/// Stops `agent` one of three ways (chosen by `rng`) and says which.
async fn stop_somehow(agent: &mut Agent, sim: &Sim, rng: &mut Lcg) -> String {
    match rng.next(5) {
        0..=1 => {
            agent.kill9();
            "kill -9 at a random moment".to_owned()
        }
        2..=3 => {
            let op = ["begin", "load", "prepare", "commit"][rng.next(4) as usize];
            let seen = sim.txn_events(0).last().map_or(0, |e| e.seq);
            let reached = wait_until(Duration::from_secs(10), || {
                sim.txn_events(seen).iter().any(|e| e.op == op)
            })
            .await;
            agent.kill9();
            format!("kill -9 right after the sim applied {op} (reached: {reached})")
        }
        _ => {
            let status = agent.signal_and_wait(libc::SIGTERM, Duration::from_secs(60));
            assert!(
                status.is_some_and(|s| s.success()),
                "the drain did not end with exit 0 within 60 s ({status:?}):\n{}",
                agent.log()
            );
            "drain (SIGTERM)".to_owned()
        }
    }
}

/// No label committed twice: `earlier` holds the labels committed by StarRocks processes
/// stopped before `sim` (a restarted one counts afresh, but keeps the labels: a second commit of
/// one would be a second apply).
fn assert_nothing_committed_twice(sim: &Sim, earlier: &[String]) {
    let mut labels = earlier.to_vec();
    for table in ["a", "b"] {
        labels.extend(
            sim.counters(TARGET_DB, table)
                .labels_committed
                .into_iter()
                .map(|label| format!("{table}/{label}")),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for label in &labels {
        assert!(seen.insert(label), "{label} committed twice");
    }
    for (label, c) in sim.label_counters(TARGET_DB) {
        assert!(c.commits <= 1, "{label} committed {} times", c.commits);
    }
}

/// Mixed small and large transactions over two tables, the agent stopped `ROUNDS` times at
/// random: every transaction lands whole and once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_review_random_kills_over_mixed_transactions_keep_them_whole_and_once() {
    run(false, "table").await;
}

/// The same with StarRocks restarted (`--data-dir`) at random too: open transactions die with
/// its BE, prepared ones survive and are committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_review_random_kills_and_starrocks_restarts_keep_transactions_whole_and_once() {
    run(true, "table").await;
}

/// The same in `transaction` mode (multi-table transactions: no prepare, the label's state
/// settles a restart; a StarRocks restart cancels the open one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_review_transaction_mode_random_kills_and_starrocks_restarts_keep_them_whole_and_once(
) {
    run(true, "transaction").await;
}

async fn run(starrocks_restarts: bool, commit_mode: &str) {
    let seed = seed();
    eprintln!("seed {seed} (replay with STARWAL_TEST_SEED={seed})");
    let mut rng = Lcg(seed);
    let db = Cluster::shared().create_database("engine_txn_review").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY, balance bigint NOT NULL, note text);
             CREATE TABLE b (id bigint PRIMARY KEY, grp int NOT NULL, note text);",
        )
        .await
        .unwrap();
    // The pid too: `unique_name` counts per process, and test processes share the tmpdir.
    let dir = std::env::temp_dir().join(format!(
        "{}_{}",
        unique_name("txn-review"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let first = Sim::start(sim_options(starrocks_restarts.then_some(dir.as_path())))
        .expect("start the sim");
    let spec = AgentSpec::new(&db, &first, "public.a,public.b")
        .var("STARWAL_FLUSH_ROWS", FLUSH_ROWS)
        .var("STARWAL_TXN_IDLE_TIMEOUT_S", "60")
        .var("STARWAL_COMMIT_MODE", commit_mode);
    let slot: SimSlot = Arc::new(Mutex::new(Some(Arc::new(first))));
    let current = || slot.lock().unwrap().clone().expect("a running sim");
    let mut agent = spec.start_streaming().await;
    let groups = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let check = checker(slot.clone(), groups.clone(), stop.clone());

    client
        .batch_execute(&format!(
            "INSERT INTO a SELECT g, {START_BALANCE}, md5(g::text) FROM generate_series(1, {ACCOUNTS}) g"
        ))
        .await
        .unwrap();

    // The writer runs until told to stop; its own generator, seeded from the run's.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (writing, groups) = (writing.clone(), groups.clone());
        let writer_client = db.owner_client().await;
        let mut rng = Lcg(seed ^ 0x9e37_79b9_7f4a_7c15);
        // A sim with `--data-dir` rewrites its whole snapshot on every commit (sim/src/persist.rs):
        // a slower writer keeps the agent's backlog, and the test, short.
        let pause = if starrocks_restarts { 150 } else { 5 };
        tokio::spawn(async move {
            let mut next_group = 1;
            let mut count = 0u64;
            while writing.load(Ordering::Relaxed) {
                step(&writer_client, &mut rng, &mut next_group, &groups).await;
                count += 1;
                tokio::time::sleep(Duration::from_millis(pause + rng.next(40))).await;
            }
            count
        })
    };

    let mut stops = Vec::new();
    let mut committed_before = Vec::new();
    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(200 + rng.next(2_300))).await;
        assert!(
            agent.is_running(),
            "round {round}: the agent exited on its own (stops so far: {stops:?}):\n{}",
            agent.log()
        );
        if starrocks_restarts && rng.next(2) == 0 {
            // StarRocks goes down under the running agent, at a random moment or the instant
            // it prepared a transaction (the agent's commit then meets the restart).
            let how = if rng.next(2) == 0 {
                let sim = current();
                let seen = sim.txn_events(0).last().map_or(0, |e| e.seq);
                let reached = wait_until(Duration::from_secs(10), || {
                    sim.txn_events(seen).iter().any(|e| e.op == "prepare")
                })
                .await;
                format!("StarRocks restart right after a prepare (reached: {reached})")
            } else {
                "StarRocks restart at a random moment".to_owned()
            };
            let down = Duration::from_millis(rng.next(2_000));
            committed_before.extend(restart_starrocks(&slot, &dir, down).await);
            eprintln!("round {round}: {how}, down {down:?}");
            stops.push(how);
            continue;
        }
        let how = stop_somehow(&mut agent, &current(), &mut rng).await;
        eprintln!("round {round}: {how}");
        stops.push(how);
        agent = spec.start();
    }
    writing.store(false, Ordering::Relaxed);
    let transactions = writer.await.unwrap();
    eprintln!("{transactions} source transactions written");

    let sim = current();
    for (table, sql, columns) in [
        (
            "a",
            "SELECT id::text, balance::text, note FROM a",
            &["id", "balance", "note"][..],
        ),
        (
            "b",
            "SELECT id::text, grp::text, note FROM b",
            &["id", "grp", "note"][..],
        ),
    ] {
        let source = source_rows(&client, sql).await;
        let target = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, table, columns)).await;
        assert!(
            source == target,
            "{table} (seed {seed}, stops {stops:?}): {}\n{}",
            diff(&source, &target),
            agent.log()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let versions = check
        .join()
        .expect("the checker saw a transaction visible in part (see above)");
    eprintln!("checker: {versions} distinct reads");
    assert_nothing_committed_twice(&sim, &committed_before);
    let commits = sim
        .txn_events(0)
        .iter()
        .filter(|e| e.op == "commit")
        .count();
    eprintln!("{commits} commits through the transaction interface (last StarRocks process)");
    assert!(
        commits > 0 || starrocks_restarts,
        "no transaction went through the transaction interface: the test proved nothing"
    );
    agent.stop_cleanly();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A large transaction in which one text value is one CSV cannot carry (`\N`, or a separator
/// byte) still lands in one StarRocks commit: a part's body format must not split it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_review_a_value_csv_cannot_carry_does_not_split_a_large_transaction() {
    let db = Cluster::shared()
        .create_database("engine_txn_review_csv")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE c (id int PRIMARY KEY, note text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.c").var("STARWAL_FLUSH_ROWS", FLUSH_ROWS);
    let agent = spec.start_streaming().await;
    // 1000 rows, 10 batches; the 550th row's note is the text `\N`, the 750th holds a unit
    // separator: their batches' bodies are JSON, the others' CSV.
    client
        .batch_execute(
            "INSERT INTO c SELECT g, CASE WHEN g = 550 THEN '\\N' WHEN g = 750 THEN 'a' || chr(31) || 'b'
                                     ELSE md5(g::text) END
               FROM generate_series(1, 1000) g",
        )
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, note FROM c").await;
    let target = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "c", &["id", "note"])).await;
    assert!(
        source == target,
        "{}\n{}",
        diff(&source, &target),
        agent.log()
    );
    let labels = sim.counters(TARGET_DB, "c").labels_committed;
    assert_eq!(
        labels.len(),
        1,
        "one source transaction became {} StarRocks commits (visible in parts): {labels:?}\n{}",
        labels.len(),
        agent.log()
    );
    agent.stop_cleanly();
}

/// A large UPDATE of a table with TOASTed values it leaves unchanged (a common shape: a status
/// flag set on many rows carrying a large document) lands in one StarRocks commit.
///
/// Failed before the rows were completed from the source (seen: 2 source transactions, 13
/// commits): a part with partial updates closed the StarRocks transaction and went as plain
/// loads, so any large UPDATE that left a TOASTed column unchanged was visible in parts
/// (`pipeline/toast.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_review_a_large_update_leaving_toast_unchanged_lands_in_one_commit() {
    let db = Cluster::shared()
        .create_database("engine_txn_review_toast")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE d (id int PRIMARY KEY, n int NOT NULL, doc text);
             ALTER TABLE d ALTER COLUMN doc SET STORAGE EXTERNAL;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.d").var("STARWAL_FLUSH_ROWS", FLUSH_ROWS);
    let agent = spec.start_streaming().await;
    // Each doc is stored out of line (4 KiB, STORAGE EXTERNAL): an UPDATE that leaves it
    // unchanged sends it as "unchanged TOAST".
    client
        .batch_execute(
            "INSERT INTO d SELECT g, 0, repeat(md5(g::text), 128) FROM generate_series(1, 50) g",
        )
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, n::text, doc FROM d").await;
    wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "d", &["id", "n", "doc"])
    })
    .await;
    let before = sim.counters(TARGET_DB, "d").labels_committed.len();
    client
        .batch_execute("UPDATE d SET n = n + 1")
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO d SELECT g, 0, repeat(md5(g::text), 128) FROM generate_series(51, 1000) g;
             UPDATE d SET n = n + 1;",
        )
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, n::text, doc FROM d").await;
    let target = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "d", &["id", "n", "doc"])
    })
    .await;
    assert!(
        source == target,
        "{}\n{}",
        diff(&source, &target),
        agent.log()
    );
    let labels = sim.counters(TARGET_DB, "d").labels_committed;
    assert!(
        labels.len() - before <= 2,
        "two source transactions became {} StarRocks commits (visible in parts): {:?}",
        labels.len() - before,
        &labels[before..]
    );
    agent.stop_cleanly();
}

/// A source transaction whose loading takes longer than `STARWAL_TXN_TIMEOUT_S` (StarRocks
/// aborts a transaction not prepared within `timeout`) does not loop: the second abort of its
/// label parks the table with an error naming the variable (status shows it), none of it is
/// visible, and once the timeout is raised and the agent restarted it lands whole, in one
/// StarRocks commit.
///
/// Before the fix (review finding 3; 40 000 rows in 4 000 parts, `timeout` 1 s): 0 rows after
/// 60 s, 22 attempts aborted, every one re-reading the transaction from its first change,
/// nothing naming the variable, the WAL held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_review_a_transaction_longer_than_the_txn_timeout_parks_then_lands_when_raised() {
    let db = Cluster::shared()
        .create_database("engine_txn_review_timeout")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE e (id int PRIMARY KEY, note text)")
        .await
        .unwrap();
    let sim = start_sim();
    // 4 000 parts: more than a 1 s `timeout` lets StarRocks take before its prepare.
    let spec = AgentSpec::new(&db, &sim, "public.e")
        .var("STARWAL_FLUSH_ROWS", "10")
        .var("STARWAL_TXN_TIMEOUT_S", "1");
    let agent = spec.start_streaming().await;
    client
        .batch_execute("INSERT INTO e SELECT g, md5(g::text) FROM generate_series(1, 40000) g")
        .await
        .unwrap();
    let parked_error = || {
        status_json(&spec).and_then(|status| {
            status["tables"]
                .as_array()?
                .iter()
                .find(|t| t["source"] == "public.e")?["parked"]["error"]
                .as_str()
                .map(str::to_owned)
        })
    };
    let parked = wait_until(TIMEOUT, || parked_error().is_some()).await;
    let log = agent.log();
    assert!(parked, "not parked: {:?}\n{log}", status_json(&spec));
    let error = parked_error().unwrap();
    assert!(
        error.contains("STARWAL_TXN_TIMEOUT_S") && error.contains("2 times in a row"),
        "{error}"
    );
    assert!(
        log.contains("ERROR") && log.contains("raise STARWAL_TXN_TIMEOUT_S"),
        "{log}"
    );
    // Parked after the second abort, not looping: no third attempt of the label.
    let aborts = log.matches("abort 1 in a row").count() + log.matches("abort 2 in a row").count();
    assert_eq!(log.matches("abort 3 in a row").count(), 0, "{log}");
    assert_eq!(aborts, 2, "{log}");
    assert!(
        target_rows(&sim, "e", &["id", "note"]).is_empty(),
        "part of the transaction is visible"
    );
    agent.stop_cleanly();

    // Raised: the restart reads it again from its first change and it lands whole.
    let before = sim.counters(TARGET_DB, "e").labels_committed.len();
    let raised = spec.clone().var("STARWAL_TXN_TIMEOUT_S", "3600");
    let agent = raised.start();
    let source = source_rows(&client, "SELECT id::text, note FROM e").await;
    let target = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "e", &["id", "note"])).await;
    assert!(
        source == target,
        "{}\n{}",
        diff(&source, &target),
        agent.log()
    );
    let labels = sim.counters(TARGET_DB, "e").labels_committed;
    assert_eq!(
        labels.len() - before,
        1,
        "not one StarRocks commit: {:?}",
        &labels[before..]
    );
    agent.stop_cleanly();
}
