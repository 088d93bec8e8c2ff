//! Crash safety of `starwal run` (invariant 5): kill -9 at any point, restart, and the target
//! converges to the source with every change applied once. Before a load is sent its label and
//! range are recorded; after a restart the first load per table re-forms the same batch under
//! the same label, so StarRocks answers Label Already Exists instead of committing it twice.

use std::collections::BTreeSet;
use std::time::Duration;

use starrocks_sim::{FaultKind, LoadFault, Sim};

use crate::harness::agent::{
    diff, slot_confirmed_flush, source_rows, start_sim, target_rows, wait_for_rows, wait_until,
    AgentSpec, TARGET_DB,
};
use crate::harness::seeded::Lcg;
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(90);

/// The (first, last) change positions of a committed label, `None` for extra parts of a batch.
fn label_range(label: &str) -> Option<((u64, u32), (u64, u32))> {
    let mut parts: Vec<&str> = label.rsplit('_').collect();
    if parts.first()?.starts_with('p') {
        return None;
    }
    parts.truncate(4);
    let last_seq = parts[0].parse().ok()?;
    let last = u64::from_str_radix(parts[1], 16).ok()?;
    let first_seq = parts[2].parse().ok()?;
    let first = u64::from_str_radix(parts[3], 16).ok()?;
    Some(((first, first_seq), (last, last_seq)))
}

/// Every committed label once, and no two committed batches of a table covering the same change.
fn assert_applied_once(sim: &Sim, table: &str) {
    let counters = sim.counters(TARGET_DB, table);
    let unique: BTreeSet<&String> = counters.labels_committed.iter().collect();
    assert_eq!(
        unique.len(),
        counters.labels_committed.len(),
        "{table}: a label committed twice: {:?}",
        counters.labels_committed
    );
    let mut ranges: Vec<_> = counters
        .labels_committed
        .iter()
        .filter_map(|label| label_range(label))
        .collect();
    ranges.sort();
    for pair in ranges.windows(2) {
        assert!(
            pair[0].1 < pair[1].0,
            "{table}: committed batches overlap: {:?} and {:?} (labels {:?})",
            pair[0],
            pair[1],
            counters.labels_committed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_engine_crash_after_commit_before_answer_is_not_applied_twice() {
    let db = Cluster::shared().create_database("engine_crash_once").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t");
    let mut agent = spec.start_streaming().await;
    // StarRocks commits the first load, then holds the answer back: the agent never learns.
    sim.faults().inject(
        LoadFault::new(FaultKind::CommitThenStall { stall_ms: 60_000 })
            .times(1)
            .on_table(TARGET_DB, "t"),
    );
    client
        .batch_execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g")
        .await
        .unwrap();
    assert!(
        wait_until(TIMEOUT, || sim.counters(TARGET_DB, "t").loads_committed
            == 1)
        .await,
        "the first load never committed\n{}",
        agent.log()
    );
    agent.kill9();

    let mut agent = spec.start();
    client
        .batch_execute("UPDATE t SET v = 'after' WHERE id <= 10")
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, v FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "t", &["id", "v"])).await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    let counters = sim.counters(TARGET_DB, "t");
    // The re-formed batch carried the same label: StarRocks refused it, nothing loaded twice.
    assert_eq!(
        counters.labels_committed.len(),
        2,
        "the insert batch and the update batch, each once: {:?}",
        counters.labels_committed
    );
    assert_eq!(counters.rows_loaded, 110, "100 inserted once + 10 updated");
    assert!(
        agent
            .log()
            .contains("re-forming the batch that was in flight")
            && agent.log().contains("already committed"),
        "{}",
        agent.log()
    );
    assert_applied_once(&sim, "t");
    let status = agent
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(30))
        .expect("exit");
    assert!(status.success(), "{}", agent.log());
}

/// The checkpoint row's confirmed LSN (`None` before the first store).
async fn stored_checkpoint(client: &tokio_postgres::Client, slot: &str) -> Option<u64> {
    let text: Option<String> = client
        .query_opt(
            "SELECT confirmed_lsn::text FROM starwal.checkpoints WHERE slot = $1",
            &[&slot],
        )
        .await
        .ok()
        .flatten()
        .map(|row| row.get(0));
    text.and_then(|t| t.parse::<starwal::postgres::Lsn>().ok())
        .map(|lsn| lsn.0)
}

/// A crash after a load's checkpoint is stored but before the server processed the feedback
/// carrying it leaves the slot behind the checkpoint. That window is a few milliseconds wide, so
/// the test builds the state instead: a copy of the slot taken before the loads replaces the slot
/// after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_restart_with_the_slot_behind_the_checkpoint_does_not_reload_committed_changes() {
    let db = Cluster::shared()
        .create_database("engine_crash_slot_behind")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t");
    let slot = spec.slot().to_owned();
    let behind = format!("{slot}_behind");
    spec.start_streaming().await.stop_cleanly();
    client
        .execute(
            "SELECT pg_copy_logical_replication_slot($1, $2)",
            &[&slot, &behind],
        )
        .await
        .unwrap();

    let agent = spec.start_streaming().await;
    for round in 0..3 {
        client
            .batch_execute(&format!(
                "INSERT INTO t SELECT g, 'v' || g FROM generate_series({} + 1, {} + 100) g",
                round * 100,
                round * 100
            ))
            .await
            .unwrap();
        let want = (round + 1) * 100;
        assert!(
            wait_until(TIMEOUT, || target_rows(&sim, "t", &["id"]).len() == want).await,
            "round {round} never loaded\n{}",
            agent.log()
        );
    }
    agent.stop_cleanly();
    client
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot('{slot}');
             SELECT pg_copy_logical_replication_slot('{behind}', '{slot}');
             SELECT pg_drop_replication_slot('{behind}');"
        ))
        .await
        .unwrap();
    let slot_at = slot_confirmed_flush(&client, &slot).await;
    let stored = stored_checkpoint(&client, &slot).await;
    assert!(
        stored.is_some_and(|s| s > slot_at.0),
        "stored {stored:?} is not ahead of the slot {slot_at}"
    );

    let agent = spec.start();
    client
        .batch_execute("UPDATE t SET v = 'after' WHERE id <= 10")
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, v FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "t", &["id", "v"])).await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    let counters = sim.counters(TARGET_DB, "t");
    assert_eq!(
        counters.rows_loaded,
        310,
        "300 inserted once + 10 updated: {:?}\n{}",
        counters.labels_committed,
        agent.log()
    );
    assert_applied_once(&sim, "t");
    agent.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_kill9_at_random_points_converges_with_every_change_once() {
    let db = Cluster::shared().create_database("engine_kill9").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint, owner text);
             CREATE TABLE events (account int, n int, kind text, PRIMARY KEY (account, n));",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec =
        AgentSpec::new(&db, &sim, "public.accounts,public.events").var("STARWAL_FLUSH_ROWS", "200");
    let mut agent = spec.start_streaming().await;

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill -9 test seed: {seed}");
    // A sustained workload from its own connection.
    let writer = db.owner_client().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workload = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut rng = Lcg(seed ^ 0x9E37_79B9_7F4A_7C15);
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let id = rng.next(300);
                let sql = match rng.next(6) {
                    0 | 1 => format!(
                        "INSERT INTO accounts VALUES ({id}, {n}, 'o{n}') ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + 1;
                         INSERT INTO events VALUES ({id}, {n}, 'open') ON CONFLICT DO NOTHING;"
                    ),
                    2 => format!(
                        "BEGIN; UPDATE accounts SET balance = balance - 1, owner = 'u{n}' WHERE id % 10 = {};
                         INSERT INTO events SELECT id, {n}, 'bulk' FROM accounts WHERE id % 10 = {} ON CONFLICT DO NOTHING; COMMIT;",
                        id % 10, id % 10
                    ),
                    3 => format!("DELETE FROM accounts WHERE id = {id}; DELETE FROM events WHERE account = {id};"),
                    4 => format!("UPDATE accounts SET id = id + 1000 WHERE id = {id}"),
                    _ => format!("INSERT INTO events SELECT {id}, {n} * 1000 + g, 'many' FROM generate_series(1, 50) g"),
                };
                if let Err(err) = writer.batch_execute(&sql).await {
                    // Key collisions from the id move are expected now and then.
                    if err.code() != Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                        panic!("{sql}: {err}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let mut rng = Lcg(seed);
    for round in 0..5 {
        let delay = 300 + rng.next(1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        eprintln!("round {round}: kill -9 after {delay} ms");
        agent.kill9();
        agent = spec.start();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    workload.await.unwrap();

    for (table, sql, columns) in [
        (
            "accounts",
            "SELECT id::text, balance::text, owner FROM accounts",
            &["id", "balance", "owner"][..],
        ),
        (
            "events",
            "SELECT account::text, n::text, kind FROM events",
            &["account", "n", "kind"][..],
        ),
    ] {
        let source = source_rows(&client, sql).await;
        let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, table, columns)).await;
        assert!(
            got == source,
            "{table} (seed {seed}): {}\n{}",
            diff(&source, &got),
            agent.log()
        );
        assert_applied_once(&sim, table);
    }
    let status = agent
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(30))
        .expect("exit");
    assert!(status.success(), "{}", agent.log());
}
