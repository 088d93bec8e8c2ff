//! Invariant 4's hard cases through `starwal run`: updates that leave TOASTed columns unchanged
//! (the stream carries no value for them) under REPLICA IDENTITY DEFAULT and FULL, in the same
//! batch as an earlier image and in a later one, and primary-key changes that move such a row —
//! the target never gets NULL or a default for a value the source has.

use std::time::Duration;

use crate::harness::agent::{diff, source_rows, start_sim, target_rows, wait_for_rows, AgentSpec};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(60);

/// 6 400 characters of md5 hex: incompressible, so stored out of line (TOASTed).
const BIG: &str = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 200))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv4_fills_unchanged_toast_columns_and_moves_rows_with_them() {
    let db = Cluster::shared().create_database("engine_toast").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE docs (id int PRIMARY KEY, big text, small int);
             CREATE TABLE docs_full (id int PRIMARY KEY, big text, small int);
             ALTER TABLE docs_full REPLICA IDENTITY FULL;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.docs,public.docs_full");
    let agent = spec.start_streaming().await;
    let check = |table: &'static str| {
        let client = &client;
        let sim = &sim;
        let agent = &agent;
        async move {
            let source = source_rows(
                client,
                &format!("SELECT id::text, big, small::text FROM {table}"),
            )
            .await;
            let got = wait_for_rows(&source, TIMEOUT, || {
                target_rows(sim, table, &["id", "big", "small"])
            })
            .await;
            assert!(
                got == source,
                "{table}: {}\n{}",
                diff(&source, &got),
                agent.log()
            );
        }
    };

    for table in ["docs", "docs_full"] {
        client
            .batch_execute(&format!(
                "INSERT INTO {table} SELECT g, {BIG}, g FROM generate_series(1, 10) g;
                 -- Same transaction, so the same batch: filled from the batch's own image.
                 BEGIN;
                 INSERT INTO {table} VALUES (11, {BIG}, 11);
                 UPDATE {table} SET small = 111 WHERE id = 11;
                 UPDATE {table} SET id = 12 WHERE id = 11;
                 COMMIT;"
            ))
            .await
            .unwrap();
        check(table).await;
        // Later batches: the target already has the rows. A plain update leaves `big` out (a
        // partial update under DEFAULT, filled from the old row under FULL); a key change must
        // carry `big` to the new key (fetched from the source under DEFAULT).
        client
            .batch_execute(&format!(
                "UPDATE {table} SET small = small + 100 WHERE id <= 5;
                 UPDATE {table} SET id = id + 1000 WHERE id IN (6, 7);
                 UPDATE {table} SET small = NULL WHERE id = 8;"
            ))
            .await
            .unwrap();
        check(table).await;
        // A moved row moved again and then updated, all in one transaction.
        client
            .batch_execute(&format!(
                "BEGIN;
                 UPDATE {table} SET id = 2000 WHERE id = 1006;
                 UPDATE {table} SET small = 7 WHERE id = 2000;
                 DELETE FROM {table} WHERE id = 9;
                 COMMIT;"
            ))
            .await
            .unwrap();
        check(table).await;
    }
}
