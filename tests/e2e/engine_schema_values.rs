//! Values the stream does not carry still end up right in the target (invariant 12, issue 12
//! item 2): stored generated columns (published on PostgreSQL 18, left out of the target before
//! 18 — never NULLed by CDC), a column added with a constant default (existing rows get the
//! default, while streaming and across a restart), and a column added with a volatile default
//! (the table is copied again). CI runs these against PG 14–18 (`engine_schema*`).

use std::time::Duration;

use crate::harness::agent::{diff, source_rows, start_sim, target_rows, wait_for_rows, AgentSpec};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_columns_match_the_source_after_snapshot_and_cdc() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("engine_generated").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE g (id int PRIMARY KEY, a int,
                 doubled int GENERATED ALWAYS AS (a * 2) STORED, note text);
             INSERT INTO g (id, a, note) SELECT n, n, 'copied' FROM generate_series(1, 10) n;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.g").var("STARWAL_SNAPSHOT", "initial");
    let agent = spec.start_streaming().await;
    client
        .batch_execute(
            "INSERT INTO g (id, a, note) SELECT n, n, 'streamed' FROM generate_series(11, 15) n;
             UPDATE g SET a = a + 100 WHERE id IN (2, 12);
             UPDATE g SET note = 'touched' WHERE id IN (3, 13);",
        )
        .await
        .unwrap();
    let published = cluster.major() >= 18;
    let (query, columns): (&str, &[&str]) = if published {
        (
            "SELECT id::text, a::text, doubled::text, note FROM g",
            &["id", "a", "doubled", "note"],
        )
    } else {
        (
            "SELECT id::text, a::text, note FROM g",
            &["id", "a", "note"],
        )
    };
    let source = source_rows(&client, query).await;
    let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "g", columns)).await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    let has_doubled = sim.catalog().read(|c| {
        c.table(crate::harness::agent::TARGET_DB, "g")
            .unwrap()
            .column("doubled")
            .is_some()
    });
    // Before 18 pgoutput never sends it: a target copy could not be kept current.
    assert_eq!(has_doubled, published, "{}", agent.log());
}

/// On PostgreSQL 18 an existing publication that leaves generated columns out is refused,
/// naming the ALTER that fixes it; before 18 there is nothing to publish and setup goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_publication_must_publish_generated_columns_on_pg18() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("engine_generated_pub").await;
    let client = db.owner_client().await;
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.g");
    client
        .batch_execute(&format!(
            "CREATE TABLE g (id int PRIMARY KEY, a int,
                 doubled int GENERATED ALWAYS AS (a * 2) STORED);
             CREATE PUBLICATION \"{}\" FOR TABLE g;",
            spec.get("STARWAL_PUBLICATION").unwrap()
        ))
        .await
        .unwrap();
    if cluster.major() < 18 {
        let agent = spec.start_streaming().await;
        drop(agent);
        return;
    }
    let agent = spec.start();
    let refused = crate::harness::agent::wait_until(TIMEOUT, || {
        agent
            .log()
            .contains("SET (publish_generated_columns = stored)")
    })
    .await;
    assert!(refused, "{}", agent.log());
    // Refused before any slot exists (nothing left holding WAL).
    let slots: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&spec.slot()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0, "{}", agent.log());
    // The ALTER the error names is the fix: the retrying agent then streams.
    client
        .batch_execute(&format!(
            "ALTER PUBLICATION \"{}\" SET (publish_generated_columns = stored)",
            spec.slot()
        ))
        .await
        .unwrap();
    let streaming =
        crate::harness::agent::wait_until(TIMEOUT, || agent.log().contains("streaming changes"))
            .await;
    assert!(streaming, "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_column_with_a_default_gives_existing_rows_the_default() {
    let db = Cluster::shared()
        .create_database("engine_add_default")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE d (id int PRIMARY KEY, name text);
             INSERT INTO d SELECT n, 'n' || n FROM generate_series(1, 10) n;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.d").var("STARWAL_SNAPSHOT", "initial");
    let agent = spec.start_streaming().await;
    client
        .batch_execute(
            "ALTER TABLE d ADD COLUMN c int DEFAULT 5,
                           ADD COLUMN label text DEFAULT 'it''s \"quoted\" \\ here',
                           ADD COLUMN born date DEFAULT '2024-02-29';
             INSERT INTO d (id, name, c) VALUES (11, 'n11', 6);
             INSERT INTO d (id, name) VALUES (12, 'n12');
             UPDATE d SET name = 'renamed' WHERE id = 1;",
        )
        .await
        .unwrap();
    let query = "SELECT id::text, name, c::text, label, born::text FROM d";
    let columns = ["id", "name", "c", "label", "born"];
    let source = source_rows(&client, query).await;
    let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "d", &columns)).await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());

    // Added while starwal is stopped: setup adds it with the default.
    agent.stop_cleanly();
    client
        .batch_execute("ALTER TABLE d ADD COLUMN later bigint DEFAULT 7")
        .await
        .unwrap();
    let agent = spec.start_streaming().await;
    let query = "SELECT id::text, c::text, later::text FROM d";
    let source = source_rows(&client, query).await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "d", &["id", "c", "later"])
    })
    .await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_column_with_a_volatile_default_copies_the_table_again() {
    let db = Cluster::shared()
        .create_database("engine_add_volatile")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE v (id int PRIMARY KEY, name text);
             INSERT INTO v SELECT n, 'n' || n FROM generate_series(1, 50) n;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.v").var("STARWAL_SNAPSHOT", "initial");
    let agent = spec.start_streaming().await;
    client
        .batch_execute(
            "ALTER TABLE v ADD COLUMN r int DEFAULT (random() * 1000000)::int;
             INSERT INTO v (id, name) VALUES (51, 'n51');
             UPDATE v SET name = 'renamed' WHERE id = 2;",
        )
        .await
        .unwrap();
    let query = "SELECT id::text, name, r::text FROM v";
    let source = source_rows(&client, query).await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "v", &["id", "name", "r"])
    })
    .await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    assert!(
        agent.log().contains("copying the table again"),
        "{}",
        agent.log()
    );
    // And it keeps streaming after the copy.
    client
        .batch_execute("INSERT INTO v (id, name) VALUES (52, 'n52'); DELETE FROM v WHERE id = 3;")
        .await
        .unwrap();
    let source = source_rows(&client, query).await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "v", &["id", "name", "r"])
    })
    .await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
}
