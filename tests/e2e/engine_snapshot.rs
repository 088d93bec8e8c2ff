//! The initial snapshot end to end: rows that existed before starwal started reach StarRocks,
//! exactly, also with writes running during the copy, after kill -9 mid-copy, for integer,
//! text, uuid and composite keys, empty tables, and in `only` mode.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::agent::{
    diff, source_rows, start_sim, target_rows, wait_for_rows, AgentSpec, Rows,
};
use crate::harness::{Cluster, TestDatabase};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Source and target rows of each `(target table, its columns, source query giving the rows
/// as the target shows them)` are equal (waits up to TIMEOUT for the target).
async fn assert_exact(
    client: &tokio_postgres::Client,
    sim: &starrocks_sim::Sim,
    tables: &[(&str, &[&str], &str)],
) {
    for (table, columns, query) in tables {
        let source = source_rows(client, query).await;
        let got = wait_for_rows(&source, TIMEOUT, || target_rows(sim, table, columns)).await;
        assert!(got == source, "{table}: {}", diff(&source, &got));
    }
}

/// Writes inserts, updates, deletes and key changes to `t_int` until `stop` is set; returns
/// the number of transactions.
fn spawn_traffic(db: &TestDatabase, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let db = db.clone();
    tokio::spawn(async move {
        let client = db.owner_client().await;
        let mut round = 0u64;
        while !stop.load(Ordering::SeqCst) {
            round += 1;
            let sql = format!(
                "BEGIN;
                 INSERT INTO t_int VALUES ({new}, 'new {round}', {round});
                 UPDATE t_int SET v = 'upd {round}', n = n + 1 WHERE id = {upd};
                 DELETE FROM t_int WHERE id = {del};
                 UPDATE t_int SET id = id + 1000000 WHERE id = {moved};
                 UPDATE t_comp SET v = 'upd {round}' WHERE b = {b};
                 UPDATE t_toast SET n = n + 1 WHERE id = {b};
                 COMMIT;",
                new = 2_000_000 + round,
                upd = (round * 37) % 20_000,
                del = (round * 53) % 20_000,
                moved = (round * 71) % 20_000,
                b = round % 100,
            );
            client.batch_execute(&sql).await.expect("traffic");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        round
    })
}

async fn create_tables(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE t_int (id bigint PRIMARY KEY, v text, n int);
             INSERT INTO t_int SELECT g, 'v' || g, g FROM generate_series(1, 20000) g;
             CREATE TABLE t_text (k text PRIMARY KEY, v text);
             INSERT INTO t_text SELECT 'key ' || g || E' tab\\there ''q''', md5(g::text)
               FROM generate_series(1, 3000) g;
             CREATE TABLE t_uuid (id uuid PRIMARY KEY, at timestamptz, amount numeric(20,6));
             INSERT INTO t_uuid SELECT md5(g::text)::uuid, '2024-01-01 00:00:00+02'::timestamptz
               + g * interval '1 minute', g * 1.000001 FROM generate_series(1, 3000) g;
             CREATE TABLE t_comp (a text, b int, v text, PRIMARY KEY (a, b));
             INSERT INTO t_comp SELECT 'a' || (g % 30), g, E'line\\nbreak ' || g
               FROM generate_series(1, 3000) g;
             CREATE TABLE t_empty (id int PRIMARY KEY, v text);
             -- 6 400 incompressible characters: stored out of line, so updates that leave
             -- `big` alone stream it as unchanged TOAST (a partial update).
             CREATE TABLE t_toast (id int PRIMARY KEY, big text, n int);
             INSERT INTO t_toast SELECT o, (SELECT string_agg(md5(random()::text || o || i), '')
               FROM generate_series(1, 200) i), 0 FROM generate_series(1, 200) o;",
        )
        .await
        .unwrap();
}

const TABLES: &[(&str, &[&str], &str)] = &[
    (
        "t_int",
        &["id", "v", "n"],
        "SELECT id::text, v, n::text FROM t_int",
    ),
    ("t_text", &["k", "v"], "SELECT k, v FROM t_text"),
    (
        "t_uuid",
        &["id", "at", "amount"],
        // DATETIME has no zone: the UTC wall time.
        "SELECT id::text, (at AT TIME ZONE 'UTC')::text, amount::text FROM t_uuid",
    ),
    (
        "t_comp",
        &["a", "b", "v"],
        "SELECT a, b::text, v FROM t_comp",
    ),
    ("t_empty", &["id", "v"], "SELECT id::text, v FROM t_empty"),
    (
        "t_toast",
        &["id", "big", "n"],
        "SELECT id::text, big, n::text FROM t_toast",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_copies_every_key_type_exactly_while_the_source_is_written() {
    let db = Cluster::shared().create_database("snap_keys").await;
    let client = db.owner_client().await;
    create_tables(&client).await;
    let sim = start_sim();
    let spec = AgentSpec::new(
        &db,
        &sim,
        "public.t_int,public.t_text,public.t_uuid,public.t_comp,public.t_empty,public.t_toast",
    )
    .var("STARWAL_SNAPSHOT", "initial")
    .var("STARWAL_SNAPSHOT_WORKERS", "3")
    .var("STARWAL_SNAPSHOT_CHUNK_ROWS", "700");
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = spawn_traffic(&db, stop.clone());
    let agent = spec.start_streaming().await;
    // Keep writing a little after the copy, while streaming.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let rounds = traffic.await.unwrap();
    assert!(
        rounds > 10,
        "the traffic ran during the copy ({rounds} transactions)"
    );
    assert_exact(&client, &sim, TABLES).await;
    let log = agent.log();
    assert!(log.contains("snapshot copy done"), "{log}");
    // Every table's copy is recorded as done, the empty one included.
    let done: i64 = client
        .query_one(
            "SELECT count(*) FROM starwal.snapshot_tables WHERE slot = $1 AND state = 'done'",
            &[&spec.slot()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_only_copies_a_million_rows_and_exits_zero() {
    let db = Cluster::shared().create_database("snap_only").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE big (id bigint PRIMARY KEY, v text);
             INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, 1000000) g;
             CREATE TABLE small (id int PRIMARY KEY);
             INSERT INTO small SELECT generate_series(1, 10);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.big,public.small").var("STARWAL_SNAPSHOT", "only");
    let mut agent = spec.start();
    let status = agent.wait(Duration::from_secs(600));
    let log = agent.log();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "`only` exits 0 once copied:\n{log}"
    );
    assert!(
        !log.contains("streaming changes"),
        "`only` never streams:\n{log}"
    );
    let count = |table: &str| {
        sim.catalog()
            .read(|catalog| catalog.row_count(crate::harness::agent::TARGET_DB, table))
            .unwrap_or(0)
    };
    assert_eq!(count("big"), 1_000_000);
    assert_eq!(count("small"), 10);
    let source: Rows = source_rows(&client, "SELECT id::text FROM small").await;
    assert_eq!(target_rows(&sim, "small", &["id"]), source);
    // The slot stays: a later `run` streams from the copy's consistent point.
    let slot_exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&spec.slot()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(slot_exists);
}

/// Finished chunks of the slot's current copies.
async fn chunks_done(client: &tokio_postgres::Client, slot: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM starwal.snapshot_chunks c JOIN starwal.snapshot_tables t \
               USING (slot, source_table, generation) WHERE slot = $1",
            &[&slot],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or(0)
}

/// Chunks of the slot's planned copies (boundaries + 1 per table).
async fn planned_chunks(client: &tokio_postgres::Client, slot: &str) -> i64 {
    client
        .query_one(
            "SELECT coalesce(sum(jsonb_array_length(boundaries) + 1), 0)::int8 \
               FROM starwal.snapshot_tables WHERE slot = $1 AND boundaries IS NOT NULL",
            &[&slot],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or(0)
}

/// `left=N` of the agent's "copy planned" lines.
fn chunks_left(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|line| line.contains("copy planned"))
        .filter_map(|line| {
            let at = line.find("left=")? + "left=".len();
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_resumes_after_kill9_mid_copy_and_stays_exact() {
    let db = Cluster::shared().create_database("snap_kill").await;
    let client = db.owner_client().await;
    create_tables(&client).await;
    client
        .batch_execute(
            "INSERT INTO t_int SELECT g, 'bulk' || g, g FROM generate_series(20001, 200000) g",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t_int,public.t_comp")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_SNAPSHOT_WORKERS", "2")
        .var("STARWAL_SNAPSHOT_CHUNK_ROWS", "4000");
    let slot = spec.slot().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = spawn_traffic(&db, stop.clone());
    let mut done_before = 0;
    for kill in 1..=3 {
        let mut agent = spec.start();
        // Let this run finish a couple of chunks, then kill it mid-copy.
        let mut done = 0;
        for _ in 0..600 {
            done = chunks_done(&client, &slot).await;
            if done >= done_before + 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let total_chunks = planned_chunks(&client, &slot).await;
        assert!(
            done >= done_before + 2 && done < total_chunks,
            "kill {kill}: {done} of {total_chunks} chunks done (before: {done_before}):\n{}",
            agent.log()
        );
        agent.kill9();
        if kill > 1 {
            // A restart copies only what the earlier runs left.
            let left = chunks_left(&agent.log());
            assert!(
                left.iter().sum::<u64>() <= (total_chunks - done_before) as u64,
                "kill {kill}: chunks left {left:?}, {done_before} were done before:\n{}",
                agent.log()
            );
        }
        done_before = chunks_done(&client, &slot).await;
    }
    let agent = spec.start_streaming().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    assert_exact(
        &client,
        &sim,
        &[
            (
                "t_int",
                &["id", "v", "n"],
                "SELECT id::text, v, n::text FROM t_int",
            ),
            (
                "t_comp",
                &["a", "b", "v"],
                "SELECT a, b::text, v FROM t_comp",
            ),
        ],
    )
    .await;
    let left = chunks_left(&agent.log());
    let total_chunks = planned_chunks(&client, &slot).await;
    assert!(
        left.iter().sum::<u64>() < total_chunks as u64,
        "the last start resumed rather than starting over: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_joining_later_is_copied_alone_while_the_others_stream() {
    let db = Cluster::shared().create_database("snap_later").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE SCHEMA shop;
             CREATE TABLE shop.a (id int PRIMARY KEY, v text);
             INSERT INTO shop.a SELECT g, 'a' || g FROM generate_series(1, 2000) g;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "shop.*")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_SNAPSHOT_CHUNK_ROWS", "1000");
    let agent = spec.start_streaming().await;
    let a: &[(&str, &[&str], &str)] = &[("shop_a", &["id", "v"], "SELECT id::text, v FROM shop.a")];
    let a_source = "SELECT id::text, v FROM shop.a";
    let source = source_rows(&client, a_source).await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "shop_a", &["id", "v"])
    })
    .await;
    assert!(got == source, "{}", diff(&source, &got));

    // A new table with rows, written to (and `a` too) while it is being copied.
    client
        .batch_execute(
            "CREATE TABLE shop.b (id int PRIMARY KEY, v text);
             INSERT INTO shop.b SELECT g, 'b' || g FROM generate_series(1, 30000) g;",
        )
        .await
        .unwrap();
    let writer = {
        let db = db.clone();
        tokio::spawn(async move {
            let client = db.owner_client().await;
            for round in 0..300 {
                client
                    .batch_execute(&format!(
                        "UPDATE shop.b SET v = 'upd {round}' WHERE id = {b};
                         DELETE FROM shop.b WHERE id = {d};
                         INSERT INTO shop.b VALUES ({n}, 'new');
                         UPDATE shop.a SET v = 'upd {round}' WHERE id = {a};",
                        b = round * 97 % 30000 + 1,
                        d = round * 89 % 30000 + 1,
                        n = 100_000 + round,
                        a = round % 2000 + 1,
                    ))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    writer.await.unwrap();
    assert_exact(
        &client,
        &sim,
        &[
            a[0],
            ("shop_b", &["id", "v"], "SELECT id::text, v FROM shop.b"),
        ],
    )
    .await;
    let log = agent.log();
    assert!(log.contains("copying while streaming"), "{log}");
    let planned_a = log
        .lines()
        .filter(|l| l.contains("copy planned") && l.contains("shop.a"))
        .count();
    assert_eq!(
        planned_a, 1,
        "shop.a is copied once, not again with shop.b:\n{log}"
    );
    let generation: i32 = client
        .query_one(
            "SELECT generation FROM starwal.snapshot_tables WHERE slot = $1 AND source_table = 'shop.a'",
            &[&spec.slot()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(generation, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_recopies_one_table_while_the_others_stream() {
    let db = Cluster::shared().create_database("snap_resync").await;
    let client = db.owner_client().await;
    create_tables(&client).await;
    let sim = start_sim();
    // Without a snapshot StarRocks lacks the rows that existed before: a resync brings them.
    let spec = AgentSpec::new(&db, &sim, "public.t_int,public.t_comp")
        .var("STARWAL_SNAPSHOT", "never")
        // Small chunks: planned by numbering every key (a sample would be most of the table).
        .var("STARWAL_SNAPSHOT_CHUNK_ROWS", "300");
    let agent = spec.start_streaming().await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = spawn_traffic(&db, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = |table: &str| {
        sim.catalog()
            .read(|catalog| catalog.row_count(crate::harness::agent::TARGET_DB, table))
            .unwrap_or(0)
    };
    assert!(count("t_int") < 20_000, "nothing was copied yet");

    let resync = std::process::Command::new(env!("CARGO_BIN_EXE_starwal"))
        .args(["resync", "--table", "public.t_int", "--addr"])
        .arg(spec.control_url())
        .env_clear()
        .output()
        .expect("run starwal resync");
    assert!(
        resync.status.success(),
        "starwal resync: {}{}",
        String::from_utf8_lossy(&resync.stdout),
        String::from_utf8_lossy(&resync.stderr)
    );
    // The copy ends, the stream restarts from the held position, and t_comp kept streaming.
    let copied = crate::harness::agent::wait_until(TIMEOUT, || {
        agent
            .log()
            .contains("restarting the stream from the held position")
    })
    .await;
    assert!(copied, "{}", agent.log());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    assert_exact(
        &client,
        &sim,
        &[
            (
                "t_int",
                &["id", "v", "n"],
                "SELECT id::text, v, n::text FROM t_int",
            ),
            // Only the rows t_comp's stream touched are in StarRocks: it was never copied.
            (
                "t_comp",
                &["a", "b", "v"],
                "SELECT a, b::text, v FROM t_comp WHERE v LIKE 'upd %'",
            ),
        ],
    )
    .await;
    let log = agent.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("copy planned") && l.contains("t_comp")),
        "only the asked-for table is copied:\n{log}"
    );
}

/// A slot dropped behind starwal's back (or a database restored into another cluster) leaves a
/// checkpoint and copy state that mean nothing to the slot created next. The new slot forgets
/// them: the table is copied again (rows written while no slot existed arrive), and a stale
/// stored LSN far ahead never makes a later start skip transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_slot_forgets_the_old_checkpoint_and_copies_again() {
    let db = Cluster::shared()
        .create_database("snapshot_recreated_slot")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_SNAPSHOT", "initial");
    let query = "SELECT id::text, v FROM t";
    let agent = spec.start_streaming().await;
    assert_exact(&client, &sim, &[("t", &["id", "v"], query)]).await;
    agent.stop_cleanly();

    // The slot goes; rows are written while none holds the WAL; the stored LSN is far ahead
    // (as after a restore into a cluster with lower LSNs).
    let slot = spec.slot().to_owned();
    client
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot('{slot}');
             INSERT INTO t SELECT g, 'gap' || g FROM generate_series(101, 150) g;
             UPDATE t SET v = 'gap' WHERE id <= 10;
             INSERT INTO starwal.checkpoints (slot, confirmed_lsn) VALUES ('{slot}', 'FFFF/0')
               ON CONFLICT (slot) DO UPDATE SET confirmed_lsn = excluded.confirmed_lsn;"
        ))
        .await
        .unwrap();
    // A lost slot stops the agent unless the re-copy is asked for (issue 18).
    let spec = spec.var("STARWAL_ON_SLOT_LOSS", "resync");
    let agent = spec.start_streaming().await;
    assert!(
        agent.log().contains("forgetting the checkpoint"),
        "{}",
        agent.log()
    );
    assert_exact(&client, &sim, &[("t", &["id", "v"], query)]).await;
    agent.stop_cleanly();

    // The next start resumes from the new slot, not from the stale position.
    let agent = spec.start_streaming().await;
    client
        .batch_execute("INSERT INTO t SELECT g, 'after' || g FROM generate_series(151, 160) g")
        .await
        .unwrap();
    assert_exact(&client, &sim, &[("t", &["id", "v"], query)]).await;
    agent.stop_cleanly();
}

/// Issue 12 item 5: `STARWAL_SNAPSHOT=only` stopped by SIGTERM mid-copy must not look done to a
/// Job: it exits 3, and the next start finishes the copy and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_only_interrupted_exits_3_and_the_next_start_finishes() {
    let db = Cluster::shared().create_database("snap_only_sigterm").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE big (id bigint PRIMARY KEY, v text);
             INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.big")
        .var("STARWAL_SNAPSHOT", "only")
        .var("STARWAL_SNAPSHOT_WORKERS", "1")
        .var("STARWAL_SNAPSHOT_CHUNK_ROWS", "2000");
    let slot = spec.slot().to_owned();
    let mut agent = spec.start();
    let mut done = 0;
    for _ in 0..600 {
        done = chunks_done(&client, &slot).await;
        if done >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let planned = planned_chunks(&client, &slot).await;
    assert!(
        done >= 2 && done < planned,
        "{done} of {planned} chunks done:\n{}",
        agent.log()
    );
    let status = agent.signal_and_wait(libc::SIGTERM, Duration::from_secs(60));
    let copied = chunks_done(&client, &slot).await;
    assert!(copied < planned, "the copy finished before the signal");
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(3),
        "an interrupted `only` copy exits 3:\n{}",
        agent.log()
    );

    let mut agent = spec.start();
    let status = agent.wait(Duration::from_secs(300));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the resumed copy exits 0:\n{}",
        agent.log()
    );
    let count = sim
        .catalog()
        .read(|catalog| catalog.row_count(crate::harness::agent::TARGET_DB, "big"))
        .unwrap_or(0);
    assert_eq!(count, 200_000);
}
