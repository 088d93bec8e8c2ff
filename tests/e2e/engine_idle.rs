//! Invariant 3 through `starwal run`: the slot of a quiet database advances while another
//! database of the cluster is busy, and the optional heartbeat moves it with no traffic at all.

use std::time::Duration;

use starwal::postgres::Lsn;

use crate::harness::agent::{slot_confirmed_flush, start_sim, AgentSpec};
use crate::harness::Cluster;

/// `pg_current_wal_lsn()`: what the server has written (and may send).
async fn wal_now(client: &tokio_postgres::Client) -> Lsn {
    let text: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv3_idle_slot_advances_while_another_database_is_busy() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("engine_idle").await;
    let busy = cluster.create_database("engine_busy").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE quiet (id int PRIMARY KEY)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.quiet");
    let agent = spec.start_streaming().await;
    let busy_client = busy.owner_client().await;
    busy_client
        .batch_execute(
            "CREATE TABLE noise (id int, v text);
             INSERT INTO noise SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g;",
        )
        .await
        .unwrap();
    let written = wal_now(&busy_client).await;
    let mut flushed = Lsn::ZERO;
    for _ in 0..300 {
        flushed = slot_confirmed_flush(&client, spec.slot()).await;
        if flushed >= written {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        flushed >= written,
        "the quiet slot stayed at {flushed}, the busy database wrote up to {written}\n{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv3_heartbeat_moves_the_slot_without_any_traffic() {
    // A cluster of its own: no other test's WAL can move the slot.
    let cluster = Cluster::start(crate::harness::ClusterOptions::default());
    let db = cluster.create_database("engine_heartbeat").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE quiet (id int PRIMARY KEY)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.quiet").var("STARWAL_HEARTBEAT_INTERVAL_S", "1");
    let agent = spec.start_streaming().await;
    // Nothing writes to this cluster but the heartbeat: the slot moves once per beat.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut seen = vec![slot_confirmed_flush(&client, spec.slot()).await];
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = slot_confirmed_flush(&client, spec.slot()).await;
        if now > *seen.last().unwrap() {
            seen.push(now);
        }
        if seen.len() >= 3 {
            break;
        }
    }
    assert!(
        seen.len() >= 3,
        "the heartbeat did not keep moving the slot: {seen:?}\n{}",
        agent.log()
    );
}
