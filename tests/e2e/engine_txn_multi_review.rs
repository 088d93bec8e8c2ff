//! Adversarial review of `STARWAL_COMMIT_MODE=transaction` (issue 14, invariant 11 across
//! tables), through `starwal run` against the sim with real Postgres.
//!
//! One writer runs seeded random source transactions over four tables — small ones, ones larger
//! than a batch (so they go out as parts of one open multi-table transaction), ones touching a
//! single table, deletes, and a TRUNCATE alone in its transaction — while the test injects
//! faults: kill -9 at a random step (begin, load, commit; before or after it takes effect), an FE
//! restart (cancels open multi-table transactions), a commit whose answer is lost after or
//! before it took effect, a load whose connection drops, a refused begin.
//!
//! The writer keeps a model of the source after every transaction `k` (`states[k]`). A checker
//! thread reads all four tables at one committed version (`Sim::snapshot`) continuously and
//! asserts the strongest form of the promise: every read equals `states[k]` for some `k`, and `k`
//! never goes back — so no read shows part of a source transaction (in one table or across
//! tables), commits follow the source commit order, and nothing is applied twice or lost in a
//! way a reader could see, whatever the faults. At the end the targets equal the source and no
//! label committed twice.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starrocks_sim::catalog::Value;
use starrocks_sim::{FaultKind, LoadFault, Sim, TxnEffect, TxnOp};

use crate::harness::agent::{
    diff, metric_sample, metrics_text, source_rows, start_sim, target_rows, wait_for_rows,
    wait_until, Agent, AgentSpec, TARGET_DB,
};
use crate::harness::seeded::{seed, Lcg};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(180);
const TABLES: [&str; 4] = ["t0", "t1", "t2", "t3"];
/// Keys per table.
const KEYS: i64 = 2_000;
/// A batch is sealed at this many changes: larger transactions go out in parts.
const FLUSH_ROWS: &str = "150";

/// One table's rows: id → (seq, val).
type TableModel = BTreeMap<i64, (i64, i64)>;
type Model = [TableModel; 4];

fn fingerprint(tables: &[Vec<(i64, i64, i64)>]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for rows in tables {
        rows.len().hash(&mut hasher);
        for row in rows {
            row.hash(&mut hasher);
        }
    }
    hasher.finish()
}

fn model_rows(model: &Model) -> Vec<Vec<(i64, i64, i64)>> {
    model
        .iter()
        .map(|t| t.iter().map(|(id, (s, v))| (*id, *s, *v)).collect())
        .collect()
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => i64::try_from(*i).ok(),
        _ => None,
    }
}

/// The states the writer committed, in commit order (`fps[k]` is `states[k]`'s fingerprint).
#[derive(Default)]
struct History {
    fps: Vec<u64>,
    states: Vec<Vec<Vec<(i64, i64, i64)>>>,
}

#[derive(Debug, Default)]
struct Seen {
    reads: u64,
    /// Distinct source states seen (how many prefixes the checker could tell apart).
    states_seen: std::collections::BTreeSet<usize>,
    violations: Vec<String>,
}

/// Why a read is not a whole prefix: the tables that differ from the nearest state, briefly.
fn explain(read: &[Vec<(i64, i64, i64)>], history: &History, from: usize) -> String {
    let mut out = String::new();
    for k in from..history.states.len().min(from + 3) {
        let state = &history.states[k];
        let differing: Vec<String> = TABLES
            .iter()
            .enumerate()
            .filter(|(i, _)| read[*i] != state[*i])
            .map(|(i, name)| {
                let missing = state[i].iter().filter(|r| !read[i].contains(r)).count();
                let extra = read[i].iter().filter(|r| !state[i].contains(r)).count();
                format!("{name}: {missing} rows of the state missing, {extra} rows not in it")
            })
            .collect();
        out.push_str(&format!("\n  vs state {k}: {}", differing.join("; ")));
    }
    out
}

fn checker(
    sim: Arc<Sim>,
    history: Arc<Mutex<History>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        let mut at = 0usize;
        while !stop.load(Ordering::Relaxed) && seen.violations.len() < 5 {
            let Ok((version, tables)) = sim.snapshot(TARGET_DB, &TABLES) else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let read: Vec<Vec<(i64, i64, i64)>> = tables
                .iter()
                .map(|rows| {
                    let mut rows: Vec<(i64, i64, i64)> = rows
                        .iter()
                        .map(|r| {
                            (
                                r.first().and_then(int).unwrap_or(i64::MIN),
                                r.get(1).and_then(int).unwrap_or(i64::MIN),
                                r.get(2).and_then(int).unwrap_or(i64::MIN),
                            )
                        })
                        .collect();
                    rows.sort_unstable();
                    rows
                })
                .collect();
            let fp = fingerprint(&read);
            let history = history.lock().unwrap();
            match (at..history.fps.len()).find(|k| history.fps[*k] == fp) {
                Some(k) => {
                    at = k;
                    seen.states_seen.insert(k);
                }
                None => {
                    let earlier = (0..at).rev().find(|k| history.fps[*k] == fp);
                    seen.violations.push(match earlier {
                        Some(k) => format!(
                            "version {version}: StarRocks went back from source state {at} to {k}"
                        ),
                        None => format!(
                            "version {version}: the read is no source state at or after {at} (part of a transaction, or out of order){}",
                            explain(&read, &history, at)
                        ),
                    });
                }
            }
            drop(history);
            seen.reads += 1;
            std::thread::sleep(Duration::from_millis(15));
        }
        seen
    })
}

/// One random source transaction: its SQL, applied to `model` as Postgres will apply it.
fn random_transaction(rng: &mut Lcg, k: i64, model: &mut Model, large: bool) -> String {
    let mut sql = String::from("BEGIN;\n");
    if !large && rng.next(25) == 0 {
        // A TRUNCATE alone in its transaction: one step for a reader.
        let t = rng.next(4) as usize;
        model[t].clear();
        return format!("TRUNCATE {};", TABLES[t]);
    }
    let statements = if large {
        3 + rng.next(4)
    } else {
        1 + rng.next(4)
    };
    // Sometimes one table only (the group then has tables without changes).
    let only = (rng.next(4) == 0).then(|| rng.next(4) as usize);
    for _ in 0..statements {
        let t = only.unwrap_or_else(|| rng.next(4) as usize);
        let name = TABLES[t];
        let width = if large {
            100 + rng.next(500) as i64
        } else {
            1 + rng.next(8) as i64
        };
        let a = 1 + rng.next((KEYS - width) as u64) as i64;
        let b = a + width - 1;
        match rng.next(10) {
            0..=4 => {
                sql.push_str(&format!(
                    "INSERT INTO {name} SELECT g, {k}, g * 7 + {k} FROM generate_series({a}, {b}) g \
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, val = excluded.val;\n"
                ));
                for id in a..=b {
                    model[t].insert(id, (k, id * 7 + k));
                }
            }
            5..=7 => {
                sql.push_str(&format!(
                    "UPDATE {name} SET seq = {k}, val = val + 1 WHERE id BETWEEN {a} AND {b};\n"
                ));
                for (_, row) in model[t].range_mut(a..=b) {
                    *row = (k, row.1 + 1);
                }
            }
            _ => {
                sql.push_str(&format!(
                    "DELETE FROM {name} WHERE id BETWEEN {a} AND {b};\n"
                ));
                let ids: Vec<i64> = model[t].range(a..=b).map(|(id, _)| *id).collect();
                for id in ids {
                    model[t].remove(&id);
                }
            }
        }
    }
    sql.push_str("COMMIT;");
    sql
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    /// kill -9 once the step took effect (or is held before it).
    Kill(TxnOp, TxnEffect),
    /// The FE restarts while a large transaction loads.
    RestartFe,
    /// A step fails in a way the agent must ride out or settle (not kill).
    Step(TxnOp, TxnEffect),
}

fn random_fault(rng: &mut Lcg) -> Fault {
    let op = |rng: &mut Lcg| match rng.next(3) {
        0 => TxnOp::Begin,
        1 => TxnOp::Load,
        _ => TxnOp::Commit,
    };
    match rng.next(10) {
        0..=2 => Fault::None,
        3 | 4 => {
            let effect = if rng.next(2) == 0 {
                TxnEffect::StallAfter
            } else {
                TxnEffect::StallBefore
            };
            Fault::Kill(op(rng), effect)
        }
        5 | 6 => Fault::RestartFe,
        7 => Fault::Step(TxnOp::Commit, TxnEffect::DropAfter),
        8 => Fault::Step(TxnOp::Commit, TxnEffect::DropBefore),
        _ => Fault::Step(TxnOp::Load, TxnEffect::DropBefore),
    }
}

async fn restart_if_gone(agent: &mut Agent, spec: &AgentSpec, restarts: &mut Vec<String>) {
    if !agent.is_running() {
        let log = agent.log();
        let tail: String = log.lines().rev().take(4).collect::<Vec<_>>().join(" | ");
        eprintln!("the agent exited by itself; restarting it. Log tail: {tail}");
        restarts.push(tail);
        *agent = spec.start();
    }
}

async fn run(rounds: usize, max_buffer_bytes: Option<&str>) {
    let seed = seed();
    eprintln!("seed {seed} (replay with STARWAL_TEST_SEED={seed})");
    let mut rng = Lcg(seed);
    let db = Cluster::shared()
        .create_database("engine_txn_multi_review")
        .await;
    let client = db.owner_client().await;
    for name in TABLES {
        client
            .batch_execute(&format!(
                "CREATE TABLE {name} (id int PRIMARY KEY, seq bigint NOT NULL, val bigint NOT NULL)"
            ))
            .await
            .unwrap();
    }
    let sim = Arc::new(start_sim());
    let spec = AgentSpec::new(&db, &sim, "public.t0,public.t1,public.t2,public.t3")
        .var("STARWAL_COMMIT_MODE", "transaction")
        .var("STARWAL_FLUSH_ROWS", FLUSH_ROWS);
    let spec = match max_buffer_bytes {
        Some(cap) => spec.var("STARWAL_MAX_BUFFER_BYTES", cap),
        None => spec,
    };
    let mut model: Model = Default::default();
    let history = Arc::new(Mutex::new(History::default()));
    {
        let rows = model_rows(&model);
        let mut h = history.lock().unwrap();
        h.fps.push(fingerprint(&rows));
        h.states.push(rows);
    }
    let mut agent = spec.start_streaming().await;
    let stop = Arc::new(AtomicBool::new(false));
    let check = checker(sim.clone(), history.clone(), stop.clone());
    let mut restarts = Vec::new();
    let mut faults_done: Vec<String> = Vec::new();
    // Every agent run's log, for a failure's report (each run writes its own file).
    let mut earlier_logs = String::new();

    for round in 0..rounds {
        let fault = if round < 3 {
            Fault::None
        } else {
            random_fault(&mut rng)
        };
        let large = !matches!(fault, Fault::None) || rng.next(4) == 0;
        let seen = sim.txn_events(0).last().map_or(0, |e| e.seq);
        match fault {
            Fault::Kill(op, effect) => sim.faults().inject(LoadFault::new(FaultKind::TxnStep {
                op,
                effect,
                stall_ms: 30_000,
            })),
            Fault::Step(op, effect) => sim.faults().inject(LoadFault::new(FaultKind::TxnStep {
                op,
                effect,
                stall_ms: 0,
            })),
            Fault::None | Fault::RestartFe => {}
        }
        let k = {
            let h = history.lock().unwrap();
            h.fps.len() as i64
        };
        let sql = random_transaction(&mut rng, k, &mut model, large);
        {
            // Known before the source commits: the agent cannot load it sooner.
            let rows = model_rows(&model);
            let mut h = history.lock().unwrap();
            h.fps.push(fingerprint(&rows));
            h.states.push(rows);
        }
        client.batch_execute(&sql).await.unwrap();
        match fault {
            Fault::Kill(op, effect) => {
                let reached = wait_until(Duration::from_secs(20), || {
                    sim.txn_events(seen).iter().any(|e| e.op == op.as_str())
                        || sim.faults().snapshot().loads.is_empty()
                })
                .await;
                // StallBefore: the request is held, not yet applied; give it time to arrive.
                tokio::time::sleep(Duration::from_millis(200 + rng.next(300))).await;
                faults_done.push(format!(
                    "round {round}: kill -9 at {op:?} {effect:?} (reached {reached})"
                ));
                agent.kill9();
                earlier_logs.push_str(&agent.log());
                sim.faults().clear();
                agent = spec.start();
            }
            Fault::RestartFe => {
                // While a multi-table transaction is open (parts loaded, not committed), so the
                // restart cancels it under the agent.
                let open = wait_until(Duration::from_secs(10), || {
                    !sim.open_multi_txns().is_empty()
                })
                .await;
                if !open {
                    tokio::time::sleep(Duration::from_millis(rng.next(400))).await;
                }
                let cancelled = sim.restart_fe();
                faults_done.push(format!("round {round}: FE restart ({cancelled} cancelled)"));
            }
            Fault::Step(op, effect) => {
                wait_until(Duration::from_secs(20), || {
                    sim.faults().snapshot().loads.is_empty()
                })
                .await;
                faults_done.push(format!("round {round}: {op:?} {effect:?}"));
                sim.faults().clear();
            }
            Fault::None => {}
        }
        if !agent.is_running() {
            earlier_logs.push_str(&agent.log());
        }
        restart_if_gone(&mut agent, &spec, &mut restarts).await;
        tokio::time::sleep(Duration::from_millis(20 + rng.next(80))).await;
    }
    for f in &faults_done {
        eprintln!("{f}");
    }

    let mut mismatches = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    for (i, table) in TABLES.iter().enumerate() {
        let source = source_rows(
            &client,
            &format!("SELECT id::text, seq::text, val::text FROM {table}"),
        )
        .await;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let target = wait_for_rows(&source, left, || {
            target_rows(&sim, table, &["id", "seq", "val"])
        })
        .await;
        if source != target {
            mismatches.push(format!("{table} (table {i}): {}", diff(&source, &target)));
        }
    }
    // The last state must be seen (the checker reads until it is stopped).
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = check.join().expect("the checker thread");
    let log_path = std::env::temp_dir().join(format!("engine_txn_multi_review_{seed}.log"));
    let _ = std::fs::write(&log_path, format!("{earlier_logs}{}", agent.log()));
    eprintln!("every agent run's log: {}", log_path.display());
    eprintln!(
        "checker: {} reads, {} distinct source states of {}",
        seen.reads,
        seen.states_seen.len(),
        history.lock().unwrap().fps.len()
    );
    assert!(
        mismatches.is_empty(),
        "seed {seed}: the targets differ from the source:\n{}\nreaders saw: {:?}\nfaults:\n{}\nlogs: {}",
        mismatches.join("\n"),
        seen.violations,
        faults_done.join("\n"),
        log_path.display()
    );
    assert!(
        seen.violations.is_empty(),
        "seed {seed}: readers saw what no source state holds:\n{}\nfaults:\n{}\nlogs: {}",
        seen.violations.join("\n"),
        faults_done.join("\n"),
        log_path.display()
    );
    assert!(
        seen.states_seen.len() >= 5,
        "the checker told only {} states apart: it proved nothing",
        seen.states_seen.len()
    );
    for table in TABLES {
        let labels = sim.counters(TARGET_DB, table).labels_committed;
        let unique: std::collections::BTreeSet<&String> = labels.iter().collect();
        assert_eq!(
            unique.len(),
            labels.len(),
            "seed {seed}: {table}: a label committed twice"
        );
    }
    for (label, c) in sim.label_counters(TARGET_DB) {
        assert!(
            c.commits <= 1,
            "seed {seed}: {label} committed {} times",
            c.commits
        );
    }
    assert!(
        restarts.is_empty(),
        "seed {seed}: the agent exited by itself {} times (faults it should ride out): {restarts:?}",
        restarts.len()
    );
    agent.stop_cleanly();
}

/// Random transactions over four tables, random faults: every read is a whole source prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_review_multi_random_faults_every_read_is_a_whole_source_prefix() {
    run(40, None).await;
}

/// The same under a small buffer cap: groups are cut when the buffer is full (the pressed
/// flush, waiting for room) rather than at a batch's row count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_review_multi_random_faults_under_a_small_buffer_every_read_is_whole() {
    run(30, Some("262144")).await;
}

/// `TRUNCATE t0, t1` is one source transaction over two tables, and so is
/// `BEGIN; TRUNCATE t0; INSERT INTO t1 …; COMMIT`. StarRocks cannot truncate inside a
/// multi-table transaction, so both are visible in steps; the promise is that the agent says
/// so: one warning per such source transaction naming its commit LSN and the tables, each of
/// its tables counted once in `transactions_split`. A TRUNCATE of one table alone in its
/// transaction is whole (one step) and is neither warned nor counted. Targets end equal to
/// the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_review_multi_a_truncate_with_other_tables_is_warned_and_counted() {
    let db = Cluster::shared()
        .create_database("engine_txn_multi_review_trunc")
        .await;
    let client = db.owner_client().await;
    for name in ["t0", "t1"] {
        client
            .batch_execute(&format!(
                "CREATE TABLE {name} (id int PRIMARY KEY, seq bigint NOT NULL, val bigint NOT NULL)"
            ))
            .await
            .unwrap();
    }
    let sim = Arc::new(start_sim());
    let spec =
        AgentSpec::new(&db, &sim, "public.t0,public.t1").var("STARWAL_COMMIT_MODE", "transaction");
    let agent = spec.start_streaming().await;
    const CYCLES: i64 = 3;
    let mut lsns = Vec::new();
    for cycle in 1..=CYCLES {
        client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO t0 SELECT g, {cycle}, g FROM generate_series(1, 200) g;
                 INSERT INTO t1 SELECT g, {cycle}, g FROM generate_series(1, 200) g;
                 COMMIT;"
            ))
            .await
            .unwrap();
        let filled = wait_until(Duration::from_secs(30), || {
            sim.snapshot(TARGET_DB, &["t0", "t1"])
                .is_ok_and(|(_, t)| t[0].len() == 200 && t[1].len() == 200)
        })
        .await;
        assert!(filled, "cycle {cycle}: not loaded\n{}", agent.log());
        client.batch_execute("TRUNCATE t0, t1").await.unwrap();
        lsns.push(current_lsn(&client).await);
        // The TRUNCATE first: no multi-table transaction is open when it comes.
        client
            .batch_execute(&format!(
                "BEGIN;
                 TRUNCATE t0;
                 INSERT INTO t1 SELECT g, {cycle}, g FROM generate_series(1, 50) g;
                 COMMIT;"
            ))
            .await
            .unwrap();
        lsns.push(current_lsn(&client).await);
        // One table alone: whole, not warned.
        client.batch_execute("TRUNCATE t1").await.unwrap();
        let emptied = wait_until(Duration::from_secs(30), || {
            sim.snapshot(TARGET_DB, &["t0", "t1"])
                .is_ok_and(|(_, t)| t[0].is_empty() && t[1].is_empty())
        })
        .await;
        assert!(emptied, "cycle {cycle}: not truncated\n{}", agent.log());
    }
    // Both tables are empty already after a cycle's first TRUNCATE: the last cycle's later
    // transactions may still be on their way (the earlier cycles are waited for by the next
    // one's fill). Wait for their warnings before counting (more than expected still fails).
    let warned = |log: &str| {
        log.lines()
            .filter(|l| l.contains("truncates a table and changes another"))
            .count()
    };
    wait_until(Duration::from_secs(30), || {
        warned(&agent.log()) >= 2 * CYCLES as usize
    })
    .await;
    let log = agent.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("truncates a table and changes another"))
        .collect();
    assert_eq!(
        warnings.len(),
        2 * CYCLES as usize,
        "one warning per TRUNCATE-with-another-table source transaction:\n{log}"
    );
    for warning in &warnings {
        assert!(
            warning.contains("\"t0\"") && warning.contains("\"t1\"") && warning.contains("commit="),
            "the warning names the tables and the commit LSN: {warning}"
        );
    }
    // Each warned transaction's commit LSN is at or before the LSN read right after it.
    let commits: Vec<u64> = warnings
        .iter()
        .filter_map(|w| w.split("commit=").nth(1)?.split_whitespace().next())
        .filter_map(parse_lsn)
        .collect();
    assert_eq!(
        commits.len(),
        warnings.len(),
        "commit LSNs readable: {warnings:?}"
    );
    for (commit, after) in commits.iter().zip(&lsns) {
        assert!(
            commit <= after,
            "warned commit {commit:X} after the LSN read after it {after:X}"
        );
    }
    let text = metrics_text(&spec);
    for table in ["public.t0", "public.t1"] {
        let split = metric_sample(
            &text,
            &format!("starwal_transactions_split_total{{table=\"{table}\"}}"),
        );
        assert_eq!(
            split,
            Some(2.0 * CYCLES as f64),
            "{table}: counted once per split source transaction\n{log}"
        );
    }
    agent.stop_cleanly();
}

/// The WAL position right after the last statement (`pg_current_wal_lsn`), as a number.
async fn current_lsn(client: &tokio_postgres::Client) -> u64 {
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap();
    parse_lsn(row.get::<_, String>(0).as_str()).expect("an LSN")
}

fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text
        .trim_matches(|c: char| !c.is_ascii_hexdigit() && c != '/')
        .split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}
