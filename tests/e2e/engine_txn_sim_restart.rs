//! Issue 14, StarRocks restarting between prepare and commit: a PREPARED transaction survives
//! the restart (the sim writes it to `--data-dir`, as StarRocks keeps it in the FE's edit log),
//! and the agent, whose commit was cut off by the restart, commits it afterwards — once. The
//! target then equals the source. While the commit is held, the agent's status and `/metrics`
//! show the prepared transaction under the label StarRocks holds PREPARED.

use std::time::Duration;

use starrocks_sim::{FaultKind, LoadFault, Sim, SimOptions, TxnEffect, TxnOp, TxnStatus};

use crate::harness::agent::{
    diff, metric_sample, metrics_text, source_rows, status_json, target_rows, wait_for_rows,
    wait_until, AgentSpec, TARGET_DB,
};
use crate::harness::{unique_name, Cluster};

const TIMEOUT: Duration = Duration::from_secs(120);

fn sim_options(dir: &std::path::Path) -> SimOptions {
    SimOptions {
        password: "pw".into(),
        mysql: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        data_dir: Some(dir.to_path_buf()),
        ..SimOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_a_prepared_transaction_survives_a_starrocks_restart_and_commits_once() {
    let db = Cluster::shared()
        .create_database("engine_txn_sim_restart")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, payload text)")
        .await
        .unwrap();
    // The pid too: `unique_name` counts per process, and test processes share the tmpdir.
    let dir = std::env::temp_dir().join(format!(
        "{}_{}",
        unique_name("sim-restart"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sim = Sim::start(sim_options(&dir)).expect("start the sim");
    let addrs = sim.addrs();
    let spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_FLUSH_ROWS", "100");
    let agent = spec.start_streaming().await;

    // The commit of the large transaction's PREPARED StarRocks transaction is held before it
    // acts; StarRocks goes down meanwhile.
    sim.faults().inject(LoadFault::new(FaultKind::TxnStep {
        op: TxnOp::Commit,
        effect: TxnEffect::StallBefore,
        stall_ms: 15_000,
    }));
    client
        .batch_execute(
            "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g;
             INSERT INTO t VALUES (5000, 'small one after')",
        )
        .await
        .unwrap();
    let held = wait_until(TIMEOUT, || sim.faults().snapshot().loads.is_empty()).await;
    assert!(held, "the commit never came\n{}", agent.log());
    let prepared: Vec<String> = sim
        .txn_events(0)
        .into_iter()
        .filter(|e| e.op == "prepare")
        .map(|e| e.label)
        .collect();
    assert_eq!(prepared.len(), 1, "one prepared transaction: {prepared:?}");
    let label = prepared[0].clone();
    assert_eq!(sim.label_state(TARGET_DB, &label), TxnStatus::Prepared);
    // The agent shows the transaction StarRocks holds PREPARED, under the same label.
    let shown = wait_until(Duration::from_secs(10), || {
        status_json(&spec).is_some_and(|status| {
            status["tables"].as_array().is_some_and(|tables| {
                tables.iter().any(|t| {
                    t["open_transaction"]["label"] == label.as_str()
                        && t["open_transaction"]["prepared"] == true
                })
            })
        })
    })
    .await;
    assert!(
        shown,
        "status does not show {label} prepared: {:?}",
        status_json(&spec)
    );
    let metrics = metrics_text(&spec);
    assert_eq!(
        metric_sample(&metrics, "starwal_transaction_prepared{table=\"public.t\"}"),
        Some(1.0),
        "{metrics}"
    );
    sim.shutdown();

    // The same StarRocks comes back on the same ports with what it had written.
    let sim = Sim::start(SimOptions {
        fe_http: addrs.fe_http,
        be_http: addrs.be_http,
        mysql: addrs.mysql,
        ..sim_options(&dir)
    })
    .expect("restart the sim on the same ports");
    assert_eq!(
        sim.label_state(TARGET_DB, &label),
        TxnStatus::Prepared,
        "the PREPARED transaction survived the restart"
    );
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
    assert_eq!(sim.label_state(TARGET_DB, &label), TxnStatus::Visible);
    // Counters restart with the process: what the new one committed, each once.
    for (l, c) in sim.label_counters(TARGET_DB) {
        assert_eq!(c.commits, 1, "{l}");
    }
    assert!(
        sim.txn_events(0)
            .iter()
            .any(|e| e.op == "commit" && e.label == label),
        "the agent committed the prepared transaction on the restarted sim\n{}",
        agent.log()
    );
    agent.stop_cleanly();
    let _ = std::fs::remove_dir_all(&dir);
}
