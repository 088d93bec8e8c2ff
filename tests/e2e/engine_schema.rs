//! Schema changes mid-stream through `starwal run`: a new column is added to the target before
//! the first load that carries it, a dropped column is no longer sent, an incompatible type
//! change stops the engine with an error naming table and column (health NOT_SERVING, nothing
//! confirmed past it), and a table created in a `schema.*` pattern's schema joins and streams.

use std::time::Duration;

use crate::harness::agent::{
    diff, source_rows, start_sim, target_rows, wait_for_rows, wait_until, AgentSpec, TARGET_DB,
};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_follows_added_and_dropped_columns_and_new_tables() {
    let db = Cluster::shared().create_database("engine_schema").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE SCHEMA shop;
             CREATE TABLE shop.products (id int PRIMARY KEY, name text, legacy text);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "shop.*");
    let agent = spec.start_streaming().await;
    client
        .batch_execute(
            "INSERT INTO shop.products SELECT g, 'p' || g, 'old' FROM generate_series(1, 20) g;
             ALTER TABLE shop.products ADD COLUMN price numeric(8,2);
             INSERT INTO shop.products VALUES (21, 'p21', 'old', 2.50);
             UPDATE shop.products SET price = id * 1.5 WHERE id <= 5;
             ALTER TABLE shop.products DROP COLUMN legacy;
             INSERT INTO shop.products VALUES (22, 'p22', 9.99);
             UPDATE shop.products SET name = 'renamed' WHERE id = 1;",
        )
        .await
        .unwrap();
    let source = source_rows(
        &client,
        "SELECT id::text, name, price::text FROM shop.products",
    )
    .await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "shop_products", &["id", "name", "price"])
    })
    .await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    // The dropped column stays in the target (starwal never drops data) and is no longer sent:
    // rows written after the drop have NULL there.
    let legacy = target_rows(&sim, "shop_products", &["id", "legacy"]);
    assert!(
        legacy.contains(&vec![Some("22".into()), None]),
        "{legacy:?}"
    );
    assert!(
        legacy.contains(&vec![Some("2".into()), Some("old".into())]),
        "{legacy:?}"
    );

    // A new table in the schema joins the publication and streams.
    client
        .batch_execute("CREATE TABLE shop.orders (id bigint PRIMARY KEY, product int)")
        .await
        .unwrap();
    let slot = spec.slot().to_owned();
    let mut joined = false;
    for _ in 0..300 {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_publication_tables WHERE pubname = $1 AND tablename = 'orders'",
                &[&slot],
            )
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        joined,
        "shop.orders never joined the publication\n{}",
        agent.log()
    );
    client
        .batch_execute("INSERT INTO shop.orders SELECT g, g % 22 + 1 FROM generate_series(1, 50) g")
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, product::text FROM shop.orders").await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "shop_orders", &["id", "product"])
    })
    .await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv7_stops_on_an_incompatible_type_change_naming_the_column() {
    let db = Cluster::shared()
        .create_database("engine_type_change")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE m (id int PRIMARY KEY, reading int)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.m");
    let agent = spec.start_streaming().await;
    // Two source transactions: a multi-statement query is one, and a source transaction is never
    // visible in part (invariant 11), so the row before the change must commit on its own.
    client
        .batch_execute("INSERT INTO m VALUES (1, 10)")
        .await
        .unwrap();
    client
        .batch_execute(
            "ALTER TABLE m ALTER COLUMN reading TYPE text;
             INSERT INTO m VALUES (2, 'not a number');",
        )
        .await
        .unwrap();
    assert!(
        wait_until(TIMEOUT, || {
            let log = agent.log();
            log.contains("column `reading` of `m`") && log.contains("starwal needs")
        })
        .await,
        "no error naming table and column\n{}",
        agent.log()
    );
    // Health stays NOT_SERVING across the retries (which meet the same error), naming it.
    let status = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_starwal"))
            .args(["status", "--json", "--addr", &spec.control_url()])
            .env_clear()
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap_or_default()
    };
    for _ in 0..8 {
        let now = status();
        assert_eq!(now["serving"], false, "{now}\n{}", agent.log());
        assert!(
            now["health_detail"]
                .as_str()
                .unwrap_or("")
                .contains("reading"),
            "{now}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The row before the change is loaded; the one after is not (and not confirmed).
    let rows = target_rows(&sim, "m", &["id", "reading"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let counters = sim.counters(TARGET_DB, "m");
    assert_eq!(counters.rows_loaded, 1, "{counters:?}\n{}", agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_widens_target_columns_when_source_types_widen() {
    let db = Cluster::shared().create_database("engine_widen").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE w (id int PRIMARY KEY, n int, label varchar(5), amount numeric(6,2))",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.w");
    let agent = spec.start_streaming().await;
    client
        .batch_execute(
            "INSERT INTO w VALUES (1, 7, 'short', 1234.56);
             ALTER TABLE w ALTER COLUMN n TYPE bigint, ALTER COLUMN label TYPE varchar(40),
                           ALTER COLUMN amount TYPE numeric(12,3);
             INSERT INTO w VALUES (2, 9000000000, 'a label longer than twenty chars', 123456789.125);",
        )
        .await
        .unwrap();
    let source = source_rows(
        &client,
        "SELECT id::text, n::text, label, amount::text FROM w",
    )
    .await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "w", &["id", "n", "label", "amount"])
    })
    .await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    let types: Vec<String> = sim.catalog().read(|c| {
        let table = c.table(TARGET_DB, "w").unwrap();
        ["n", "label", "amount"]
            .iter()
            .map(|name| table.column(name).unwrap().1.column_type.to_string())
            .collect()
    });
    assert_eq!(
        types,
        ["BIGINT", "VARCHAR(160)", "DECIMAL(12,3)"],
        "{}",
        agent.log()
    );
}
