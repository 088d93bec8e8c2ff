//! Outages on either side of `starwal run`: a 60 s StarRocks outage is ridden out with nothing
//! lost, the walsender never killed (invariant 2: feedback keeps flowing while the stream is
//! paused by backpressure) and memory bounded by STARWAL_MAX_BUFFER_BYTES (invariant 8); a
//! Postgres restart mid-stream is reconnected with backoff and resumed.

use std::time::{Duration, Instant};

use starrocks_sim::{ServerFaults, ServerRole};

use crate::harness::agent::{
    diff, slot_confirmed_flush, source_rows, start_sim, target_rows, wait_for_rows,
    wal_insert_position, AgentSpec,
};
use crate::harness::{Cluster, ClusterOptions};

const TIMEOUT: Duration = Duration::from_secs(150);

async fn walsender_pid(client: &tokio_postgres::Client, slot: &str) -> Option<i32> {
    client
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .ok()
        .and_then(|row| row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv7_rides_out_a_60s_sink_outage_with_bounded_memory() {
    let db = Cluster::shared().create_database("engine_outage").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, payload text)")
        .await
        .unwrap();
    let sim = start_sim();
    const CAP: u64 = 2 * 1024 * 1024;
    let spec =
        AgentSpec::new(&db, &sim, "public.t").var("STARWAL_MAX_BUFFER_BYTES", &CAP.to_string());
    let mut agent = spec.start_streaming().await;
    client
        .batch_execute("INSERT INTO t SELECT g, 'warm-up' FROM generate_series(1, 1000) g")
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, payload FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "t", &["id", "payload"])
    })
    .await;
    assert!(got == source, "{}", diff(&source, &got));
    let walsender = walsender_pid(&client, spec.slot())
        .await
        .expect("walsender");
    let baseline = agent.rss();

    // StarRocks goes away: both FE and BE refuse connections.
    let down = ServerFaults {
        refuse_connections: true,
        ..ServerFaults::default()
    };
    sim.faults().set_server(ServerRole::Fe, down);
    sim.faults().set_server(ServerRole::Be, down);
    let outage = Instant::now();
    // ~80 MB of changes while it is down: far more than the 2 MB buffer.
    for chunk in 0..16 {
        client
            .batch_execute(&format!(
                "INSERT INTO t SELECT g, repeat(md5(g::text), 32) FROM generate_series({}, {}) g",
                10_000 + chunk * 5_000,
                10_000 + chunk * 5_000 + 4_999
            ))
            .await
            .unwrap();
    }
    let mut peak = 0;
    while outage.elapsed() < Duration::from_secs(60) {
        peak = peak.max(agent.rss());
        assert!(agent.is_running(), "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sim.faults()
        .set_server(ServerRole::Fe, ServerFaults::default());
    sim.faults()
        .set_server(ServerRole::Be, ServerFaults::default());

    let source = source_rows(&client, "SELECT id::text, payload FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "t", &["id", "payload"])
    })
    .await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    assert_eq!(
        walsender_pid(&client, spec.slot()).await,
        Some(walsender),
        "the walsender was replaced: the stream was dropped during the outage\n{}",
        agent.log()
    );
    let growth = peak.saturating_sub(baseline);
    eprintln!("RSS baseline {baseline} B, peak during the outage {peak} B, growth {growth} B");
    // 80 MB arrived; what stays is the capped buffer plus allocator and socket slack.
    assert!(
        growth < 3 * CAP + 24 * 1024 * 1024,
        "RSS grew by {growth} B during the outage (cap {CAP} B)"
    );
    let status = agent
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(30))
        .expect("exit");
    assert!(status.success(), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_reconnects_after_a_postgres_restart() {
    let cluster = Cluster::start(ClusterOptions::default());
    let db = cluster.create_database("engine_pg_restart").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t");
    let mut agent = spec.start_streaming().await;
    client
        .batch_execute("INSERT INTO t SELECT g, 0 FROM generate_series(1, 500) g")
        .await
        .unwrap();
    drop(client);
    cluster.restart();
    let client = db.owner_client().await;
    client
        .batch_execute(
            "UPDATE t SET v = 1 WHERE id % 2 = 0; DELETE FROM t WHERE id > 450;
             INSERT INTO t SELECT g, 2 FROM generate_series(1000, 1100) g;",
        )
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, v::text FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "t", &["id", "v"])).await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    assert!(agent.is_running(), "{}", agent.log());
    let status = agent
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(30))
        .expect("exit");
    assert!(status.success(), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv1_drain_gives_up_after_the_shutdown_timeout_without_confirming() {
    // A cluster of its own, so no other database's WAL blurs the positions compared below.
    let cluster = Cluster::start(ClusterOptions::default());
    let db = cluster.create_database("engine_drain_timeout").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_SHUTDOWN_TIMEOUT_S", "3");
    let mut agent = spec.start_streaming().await;
    let down = ServerFaults {
        refuse_connections: true,
        ..ServerFaults::default()
    };
    sim.faults().set_server(ServerRole::Fe, down);
    sim.faults().set_server(ServerRole::Be, down);
    let before_insert = wal_insert_position(&client).await;
    client
        .batch_execute("INSERT INTO t SELECT generate_series(1, 10)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let status = agent
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(20))
        .expect("exit after the timeout");
    assert_eq!(status.code(), Some(1), "{}", agent.log());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        agent.log().contains("STARWAL_SHUTDOWN_TIMEOUT_S"),
        "{}",
        agent.log()
    );
    let after = slot_confirmed_flush(&client, spec.slot()).await;
    // The insert was never loaded: the slot stays before its commit.
    assert!(
        after <= before_insert,
        "the slot moved to {after}, past the unloaded insert (written after {before_insert})"
    );
    assert!(target_rows(&sim, "t", &["id"]).is_empty());
    let stored: Option<String> = client
        .query_opt(
            "SELECT confirmed_lsn::text FROM starwal.checkpoints WHERE slot = $1",
            &[&spec.slot()],
        )
        .await
        .ok()
        .flatten()
        .map(|row| row.get(0));
    assert!(
        stored.is_none(),
        "a checkpoint was stored without any load: {stored:?}"
    );
}
