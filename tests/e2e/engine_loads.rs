//! How `starwal run` sends its loads, proved from the sim's side (a client's own account of
//! itself would prove nothing): at most one load in flight per table while batches queue up
//! behind slow loads (invariant 4); a transaction larger than `STARWAL_MAX_BUFFER_BYTES`, which
//! goes out in parts, is confirmed (slot and stored checkpoint) only once its last part committed
//! (invariants 1 and 8); every load asks for `max_filter_ratio: 0` (invariant 6 — StarRocks'
//! default is also 0, so only the request itself shows the header is sent).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use starrocks_sim::{FaultKind, LoadFault, ServerFaults, ServerRole, Sim, TableCounters};
use starwal::postgres::Lsn;

use crate::harness::agent::{
    diff, metric_sample, metrics_text, slot_confirmed_flush, source_rows, start_sim,
    stored_checkpoint, target_rows, wait_for_rows, wait_until, AgentSpec, TARGET_DB,
};
use crate::harness::{Cluster, ClusterOptions};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Every plain load that began asked for `max_filter_ratio: 0`, and there was at least one.
/// (The sim counts the header of plain Stream Loads only; a StarRocks transaction's labels end
/// in `_t` and are left out.)
fn assert_max_filter_ratio_0(table: &str, counters: &TableCounters) {
    let began: u64 = counters
        .label_attempts
        .iter()
        .filter(|(label, _)| !label.ends_with("_t"))
        .map(|(_, attempts)| attempts)
        .sum();
    assert!(began > 0, "{table}: no load began");
    assert_eq!(
        counters.max_filter_ratio_headers,
        BTreeMap::from([("0".to_string(), began)]),
        "{table}: every load must send `max_filter_ratio: 0`"
    );
}

/// Batches of 20 changes are sealed faster than the sim answers (each load's answer is held
/// 150 ms after it committed), so each table's loads queue up behind one another; the BE never
/// handles two loads of one table at the same time, while the two tables load side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv4_one_load_in_flight_per_table_while_batches_queue_up() {
    let db = Cluster::shared()
        .create_database("engine_loads_inflight")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY, v text);
             CREATE TABLE b (id int PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b").var("STARWAL_FLUSH_ROWS", "20");
    let agent = spec.start_streaming().await;
    for table in ["a", "b"] {
        sim.faults().inject(
            LoadFault::new(FaultKind::CommitThenStall { stall_ms: 150 })
                .times(1_000)
                .on_table(TARGET_DB, table),
        );
    }
    // Transactions of exactly 20 changes per table: each fills a batch at its last change, so
    // batches are whole and go as plain loads (a batch filling inside a transaction would go
    // into a StarRocks transaction, whose loads the sim does not count here).
    for round in 0..30 {
        client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO a SELECT g, 'a' || g FROM generate_series({lo}, {hi} - 1) g;
                 UPDATE a SET v = 'again' WHERE id = {lo};
                 COMMIT;
                 BEGIN;
                 INSERT INTO b SELECT g, 'b' || g FROM generate_series({lo}, {hi}) g;
                 COMMIT;",
                lo = round * 20,
                hi = round * 20 + 19
            ))
            .await
            .unwrap();
    }
    for table in ["a", "b"] {
        let source = source_rows(&client, &format!("SELECT id::text, v FROM {table}")).await;
        // Until the rows are in, or two loads of the table overlapped (then they may never be
        // right: a later batch can commit before an earlier one).
        wait_until(TIMEOUT, || {
            sim.counters(TARGET_DB, table).max_loads_in_progress > 1
                || target_rows(&sim, table, &["id", "v"]) == source
        })
        .await;
        let counters = sim.counters(TARGET_DB, table);
        assert_eq!(
            counters.max_loads_in_progress, 1,
            "{table}: the BE handled {} loads of the table at once",
            counters.max_loads_in_progress
        );
        let got = target_rows(&sim, table, &["id", "v"]);
        assert!(
            got == source,
            "{table}: {}\n{}",
            diff(&source, &got),
            agent.log()
        );
        let counters = sim.counters(TARGET_DB, table);
        assert!(
            counters.loads_committed >= 10,
            "{table}: only {} loads: the batches never queued up\n{}",
            counters.loads_committed,
            agent.log()
        );
        assert_max_filter_ratio_0(table, &counters);
    }
    sim.faults().clear();
    agent.stop_cleanly();
}

/// One transaction of ~8 MB against a 512 KiB buffer goes out in many parts, each load slowed by
/// the BE. Until the last part committed, neither the slot's `confirmed_flush_lsn` nor the stored
/// checkpoint reaches the transaction's commit (read exactly from a second slot); then both do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv1_a_transaction_larger_than_the_buffer_is_confirmed_only_at_its_commit() {
    // A cluster of its own: no other database's WAL blurs the positions compared below.
    let cluster = Cluster::start(ClusterOptions::default());
    let db = cluster.create_database("engine_loads_big_txn").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, payload text)")
        .await
        .unwrap();
    let sim = start_sim();
    const CAP: u64 = 512 * 1024;
    const ROWS: u64 = 16_000;
    let spec =
        AgentSpec::new(&db, &sim, "public.t").var("STARWAL_MAX_BUFFER_BYTES", &CAP.to_string());
    let agent = spec.start_streaming().await;
    let (pg, slot, target) = (&client, spec.slot(), &sim);

    // The commit before: loaded, confirmed and stored.
    client
        .batch_execute("INSERT INTO t VALUES (0, 'before')")
        .await
        .unwrap();
    let settled = wait_until_async(TIMEOUT, || async move {
        stored_checkpoint(pg, slot).await.is_some()
            && slot_confirmed_flush(pg, slot).await > Lsn::ZERO
            && target_rows(target, "t", &["id"]).len() == 1
    })
    .await;
    assert!(settled, "the first row never settled\n{}", agent.log());
    let loads_before = sim.counters(TARGET_DB, "t").label_attempts.len();
    let committed_before = sim.counters(TARGET_DB, "t").loads_committed;
    let parts_before = metric_sample(
        &metrics_text(&spec),
        "starwal_loads_total{table=\"public.t\"}",
    )
    .unwrap_or(0.0);
    // A second slot on the agent's publication, only peeked at: it tells the big transaction's
    // commit LSN exactly as the agent's stream carries it (the commit record's end).
    let probe = format!("{slot}_probe");
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&probe],
        )
        .await
        .unwrap();

    // Each load is answered 300 ms late, so the parts take seconds to go out.
    sim.faults().set_server(
        ServerRole::Be,
        ServerFaults {
            delay_ms: 300,
            ..ServerFaults::default()
        },
    );
    client
        .batch_execute(&format!(
            "INSERT INTO t SELECT g, repeat(md5(g::text), 16) FROM generate_series(1, {ROWS}) g"
        ))
        .await
        .unwrap();
    let publication = spec.get("STARWAL_PUBLICATION").expect("publication");
    let commit = commit_after_first_insert(&client, &probe, publication).await;

    let deadline = Instant::now() + TIMEOUT;
    let mut samples_mid_transaction = 0;
    loop {
        // Read the positions first: if the rows are all in afterwards, the positions were read
        // while parts could still be loading, and must not have reached the commit then.
        let confirmed = slot_confirmed_flush(pg, slot).await;
        let stored = stored_checkpoint(pg, slot).await;
        let parts_begun = sim.counters(TARGET_DB, "t").label_attempts.len() - loads_before;
        let loaded = target_rows(&sim, "t", &["id"]).len() as u64;
        if loaded == ROWS + 1 {
            break;
        }
        if parts_begun > 0 {
            samples_mid_transaction += 1;
        }
        assert!(
            confirmed < commit,
            "the slot confirmed {confirmed} with {loaded} of {} rows loaded: the commit ({commit}) is not loaded yet\n{}",
            ROWS + 1,
            agent.log()
        );
        assert!(
            stored.is_some_and(|stored| stored < commit),
            "the stored checkpoint is {stored:?} with {loaded} of {} rows loaded: the commit ({commit}) is not loaded yet\n{}",
            ROWS + 1,
            agent.log()
        );
        assert!(
            Instant::now() < deadline,
            "the transaction never landed ({loaded} rows)\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.faults()
        .set_server(ServerRole::Be, ServerFaults::default());
    // Parts: the loads the agent sent (`starwal_loads_total` counts each part); they went into
    // one StarRocks transaction, committed once (invariant 11).
    let parts = metric_sample(
        &metrics_text(&spec),
        "starwal_loads_total{table=\"public.t\"}",
    )
    .unwrap_or(0.0)
        - parts_before;
    let commits = sim.counters(TARGET_DB, "t").loads_committed - committed_before;
    eprintln!(
        "{parts} parts in {commits} commit(s); {samples_mid_transaction} samples while they loaded; commit {commit}"
    );
    assert!(
        parts >= 4.0,
        "the transaction went out in {parts} load(s): the buffer cap did not split it\n{}",
        agent.log()
    );
    assert_eq!(
        commits,
        1,
        "the parts must become visible together, in one StarRocks commit\n{}",
        agent.log()
    );
    assert!(
        samples_mid_transaction >= 3,
        "only {samples_mid_transaction} samples were taken while the parts loaded"
    );

    // Landed: the stored checkpoint and the slot reach the commit.
    let reached = wait_until_async(TIMEOUT, || async move {
        stored_checkpoint(pg, slot)
            .await
            .is_some_and(|stored| stored >= commit)
            && slot_confirmed_flush(pg, slot).await >= commit
    })
    .await;
    assert!(
        reached,
        "the checkpoint ({:?}) or the slot ({}) stayed before the commit {commit}\n{}",
        stored_checkpoint(pg, slot).await,
        slot_confirmed_flush(pg, slot).await,
        agent.log()
    );
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&probe])
        .await
        .unwrap();
    agent.stop_cleanly();
}

/// The commit LSN (end of the commit record, as pgoutput's Commit message carries it) of the
/// first transaction with an insert that slot `probe` holds, read without consuming anything.
async fn commit_after_first_insert(
    client: &tokio_postgres::Client,
    probe: &str,
    publication: &str,
) -> Lsn {
    // pgoutput message types are the first byte: `I` insert, `C` commit.
    let rows = client
        .query(
            "SELECT lsn::text, get_byte(data, 0) FROM pg_logical_slot_peek_binary_changes(
                 $1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)",
            &[&probe, &publication],
        )
        .await
        .unwrap();
    let mut inserted = false;
    for row in rows {
        let kind = u8::try_from(row.get::<_, i32>(1)).unwrap_or(0);
        if kind == b'I' {
            inserted = true;
        } else if kind == b'C' && inserted {
            return row.get::<_, String>(0).parse().unwrap();
        }
    }
    panic!("slot {probe} holds no committed insert");
}

/// Polls an async `condition` every 100 ms up to `timeout`.
async fn wait_until_async<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sim is what tells whether the header went out: used by both tests above through
/// [`assert_max_filter_ratio_0`], and here on a table loaded without any fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv6_every_load_asks_for_max_filter_ratio_0() {
    let db = Cluster::shared()
        .create_database("engine_loads_ratio")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let sim: Sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_FLUSH_ROWS", "50");
    let agent = spec.start_streaming().await;
    // Transactions of 50 changes (a batch each, whole: plain loads, whose headers the sim counts).
    for lo in (1..=300).step_by(50) {
        client
            .batch_execute(&format!(
                "INSERT INTO t SELECT g, 'v' || g FROM generate_series({lo}, {lo} + 49) g"
            ))
            .await
            .unwrap();
    }
    client
        .batch_execute(
            "BEGIN; UPDATE t SET v = NULL WHERE id % 3 = 0 AND id <= 150; COMMIT;
             BEGIN; DELETE FROM t WHERE id % 5 = 0 AND id <= 250; COMMIT;",
        )
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, v FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "t", &["id", "v"])).await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    assert_max_filter_ratio_0("t", &sim.counters(TARGET_DB, "t"));
    agent.stop_cleanly();
}

/// A transaction whose first few rows alone fill `STARWAL_MAX_BUFFER_BYTES` (12 rows of 1 MiB
/// against a 4 MiB cap, far fewer than a forwarder chunk holds) is loaded in parts instead of
/// waiting forever: the session stops reading at the cap, so the rows it read must reach the
/// pipeline, which alone can release bytes by loading them (invariant 8, found in review).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv8_a_transaction_whose_first_rows_fill_the_buffer_is_loaded() {
    let db = Cluster::shared().create_database("loads_big_rows").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE wide (id int PRIMARY KEY, body text)")
        .await
        .unwrap();
    let sim = start_sim();
    let agent = AgentSpec::new(&db, &sim, "public.wide")
        .var("STARWAL_MAX_BUFFER_BYTES", &(4 << 20).to_string())
        .start_streaming()
        .await;
    client
        .batch_execute(
            "INSERT INTO wide SELECT g, repeat(chr(97 + g), 1048576) FROM generate_series(1, 12) g",
        )
        .await
        .unwrap();
    // Each body as its length and letter (the rows are 1 MiB each).
    let query = "SELECT id::text, length(body)::text || ':' || left(body, 1) FROM wide";
    let source = source_rows(&client, query).await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "wide", &["id", "body"])
            .into_iter()
            .map(|row| {
                let shape = row[1]
                    .as_deref()
                    .map(|body| format!("{}:{}", body.len(), body.get(..1).unwrap_or("")));
                vec![row[0].clone(), shape]
            })
            .collect()
    })
    .await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    agent.stop_cleanly();
}
