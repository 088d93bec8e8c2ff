//! Issue 14: an aborted transaction and a subtransaction rolled back to a savepoint leave no
//! trace in StarRocks, even when the transaction is larger than a batch and goes out in parts.
//! A reader polling the target never sees a row of the rolled-back parts, and the row count
//! only ever takes the values of whole transactions. The streaming variant (changes of an
//! in-progress transaction loaded as they arrive, `STARWAL_STREAMING=on`) waits for that feature.

use std::time::{Duration, Instant};

use starrocks_sim::catalog::Value;
use starrocks_sim::{ServerFaults, ServerRole};

use crate::harness::agent::{
    diff, source_rows, start_sim, target_rows, wait_for_rows, AgentSpec, TARGET_DB,
};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(120);

async fn run(streaming: bool) {
    if streaming && Cluster::shared().major() < 14 {
        eprintln!("no streaming of in-progress transactions before PG 14; skipped");
        return;
    }
    let db = Cluster::shared()
        .create_database("engine_txn_savepoint")
        .await;
    let client = db.owner_client().await;
    if streaming {
        // Postgres streams a transaction once it exceeds this (the walsender of the database
        // takes it at connect): every transaction below streams, and the savepoint rolled back
        // after its changes were streamed arrives as a subtransaction's Stream Abort.
        client
            .batch_execute(&format!(
                "ALTER DATABASE {} SET logical_decoding_work_mem = '64kB'",
                db.name
            ))
            .await
            .unwrap();
    }
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let sim = start_sim();
    let mut spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_FLUSH_ROWS", "200");
    if streaming {
        spec = spec.var("STARWAL_STREAMING", "on");
    }
    let agent = spec.start_streaming().await;
    // Every BE answer 100 ms late: the parts take a while, and the reader gets looks meanwhile.
    sim.faults().set_server(
        ServerRole::Be,
        ServerFaults {
            delay_ms: 100,
            ..ServerFaults::default()
        },
    );
    client
        .batch_execute(
            "BEGIN;
             INSERT INTO t SELECT g, 'kept' FROM generate_series(1, 1000) g;
             SAVEPOINT s1;
             INSERT INTO t SELECT g, 'rolled back' FROM generate_series(1001, 2000) g;
             UPDATE t SET v = 'rolled back' WHERE id <= 500;
             ROLLBACK TO SAVEPOINT s1;
             INSERT INTO t SELECT g, 'kept' FROM generate_series(2001, 2500) g;
             COMMIT;
             BEGIN;
             INSERT INTO t SELECT g, 'aborted' FROM generate_series(5001, 7000) g;
             ROLLBACK;
             INSERT INTO t VALUES (9999, 'after');",
        )
        .await
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut looks = 0;
    loop {
        let (count, trace) = sim.catalog().read(|c| {
            let Ok(table) = c.table(TARGET_DB, "t") else {
                return (0, None);
            };
            let trace = table.rows().find(|row| {
                let id = match &row[0] {
                    Value::Int(i) => *i,
                    _ => 0,
                };
                (1001..=2000).contains(&id)
                    || (5001..=7000).contains(&id)
                    || row[1] == Value::Text("rolled back".into())
            });
            (table.row_count(), trace)
        });
        assert!(
            trace.is_none(),
            "a rolled-back row is visible: {trace:?}\n{}",
            agent.log()
        );
        assert!(
            [0, 1500, 1501].contains(&count),
            "a reader saw {count} rows: not a whole-transaction count\n{}",
            agent.log()
        );
        looks += 1;
        if count == 1501 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never converged\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim.faults()
        .set_server(ServerRole::Be, ServerFaults::default());
    let source = source_rows(&client, "SELECT id::text, v FROM t").await;
    let target = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "t", &["id", "v"])).await;
    assert!(source == target, "{}", diff(&source, &target));
    eprintln!("{looks} looks");
    if streaming {
        // Postgres streamed them: the agent loaded parts into streamed transactions, and the
        // savepoint rolled back after its changes were loaded made it read that one again whole.
        let streamed: Vec<_> = sim
            .txn_events(0)
            .into_iter()
            .filter(|event| event.label.ends_with("_s"))
            .map(|event| format!("{} {}", event.op, event.label))
            .collect();
        eprintln!("streamed transaction steps: {streamed:?}");
        assert!(
            streamed.iter().any(|step| step.starts_with("begin")),
            "nothing was streamed\n{}",
            agent.log()
        );
        assert!(
            agent.log().contains("read again whole"),
            "the rolled-back savepoint did not make it read the transaction again\n{}",
            agent.log()
        );
    }
    for (label, c) in sim.label_counters(TARGET_DB) {
        assert_eq!(c.commits, 1, "{label}");
    }
    agent.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_rolled_back_savepoints_and_aborted_transactions_leave_no_trace() {
    run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_streamed_rolled_back_savepoints_and_aborts_leave_no_trace() {
    run(true).await;
}
