//! `starwal run` end to end: the built binary against a real Postgres and `starrocks-sim`.
//! Inserts, updates (also of the primary key), deletes and TRUNCATE over several tables reach the
//! target row for row; SIGTERM drains and stores the last commit's end LSN.

use std::time::Duration;

use crate::harness::agent::{
    diff, slot_confirmed_flush, source_rows, start_sim, target_rows, wait_for_rows,
    wal_insert_position, AgentSpec,
};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_replicates_every_kind_of_change_and_drains_on_sigterm() {
    let db = Cluster::shared().create_database("engine_run").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, qty int, note text);
             CREATE TABLE items (order_id bigint, line int, sku text NOT NULL, price numeric(10,2),
                                 PRIMARY KEY (order_id, line));
             INSERT INTO orders SELECT g, 'c' || g, g, NULL FROM generate_series(1, 50) g;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.orders,public.items");
    // Rows written before the slot existed are not streamed (that is the snapshot's job):
    // wait for the agent to be streaming, then write.
    let mut agent = spec.start_streaming().await;
    client
        .batch_execute(
            "DELETE FROM orders;
             INSERT INTO orders SELECT g, 'c' || g, g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END
               FROM generate_series(1, 300) g;
             INSERT INTO items SELECT g / 3, g % 3, 'sku' || g, (g * 1.25)::numeric(10,2)
               FROM generate_series(3, 600) g;",
        )
        .await
        .unwrap();
    for round in 0..20 {
        client
            .batch_execute(&format!(
                "BEGIN;
                 UPDATE orders SET qty = qty + 1, note = 'r{round}' WHERE id % 7 = {m};
                 DELETE FROM items WHERE order_id = {round} + 10;
                 UPDATE items SET price = price * 2 WHERE order_id = {round} + 40;
                 INSERT INTO orders VALUES (1000 + {round}, 'new', {round}, NULL);
                 UPDATE orders SET id = id + 5000 WHERE id = {round} + 100;
                 COMMIT;",
                m = round % 7
            ))
            .await
            .unwrap();
    }
    client
        .batch_execute(
            "TRUNCATE items;
             INSERT INTO items VALUES (1, 1, 'after-truncate', 9.99), (2, 1, 'x', NULL);
             UPDATE orders SET customer = NULL WHERE id < 10;",
        )
        .await
        .unwrap();
    // The last transaction's commit ends after `before` and at or before `after` (other
    // sessions, the agent's own checkpoint writes among them, may write WAL in between).
    let before = wal_insert_position(&client).await;
    client
        .batch_execute("UPDATE orders SET note = 'last' WHERE id = 1")
        .await
        .unwrap();
    let after = wal_insert_position(&client).await;

    let orders = source_rows(
        &client,
        "SELECT id::text, customer, qty::text, note FROM orders",
    )
    .await;
    let got = wait_for_rows(&orders, TIMEOUT, || {
        target_rows(&sim, "orders", &["id", "customer", "qty", "note"])
    })
    .await;
    assert!(
        got == orders,
        "orders: {}\n{}",
        diff(&orders, &got),
        agent.log()
    );
    let items = source_rows(
        &client,
        "SELECT order_id::text, line::text, sku, price::text FROM items",
    )
    .await;
    let got = wait_for_rows(&items, TIMEOUT, || {
        target_rows(&sim, "items", &["order_id", "line", "sku", "price"])
    })
    .await;
    assert!(
        got == items,
        "items: {}\n{}",
        diff(&items, &got),
        agent.log()
    );

    // SIGTERM: drain, exit 0, the stored checkpoint is the last commit's end.
    let status = agent
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(30))
        .expect("agent exits after SIGTERM");
    assert!(status.success(), "exit {status:?}\n{}", agent.log());
    let stored: String = client
        .query_one(
            "SELECT confirmed_lsn::text FROM starwal.checkpoints WHERE slot = $1",
            &[&spec.slot()],
        )
        .await
        .unwrap()
        .get(0);
    let stored: starwal::postgres::Lsn = stored.parse().unwrap();
    // PG 14 streams empty transactions too (the agent's own checkpoint writes among them), and
    // they are commits like any other: there the checkpoint may lie past `after`.
    let after = if Cluster::shared().major() < 15 {
        starwal::postgres::Lsn(u64::MAX)
    } else {
        after
    };
    assert!(
        before < stored && stored <= after,
        "stored checkpoint {stored} is not the last commit's end (between {before} and {after})\n{}",
        agent.log()
    );
    let slot_flush = slot_confirmed_flush(&client, spec.slot()).await;
    assert!(
        slot_flush >= stored,
        "slot {slot_flush} behind the checkpoint {stored}"
    );
    // Each committed label appears once.
    for table in ["orders", "items"] {
        let counters = sim.counters(crate::harness::agent::TARGET_DB, table);
        let unique: std::collections::BTreeSet<_> = counters.labels_committed.iter().collect();
        assert_eq!(
            unique.len(),
            counters.labels_committed.len(),
            "{table}: a label committed twice"
        );
        assert_eq!(counters.rows_filtered, 0);
    }
}
