//! Issue 12, item 3: a batch re-formed after a crash is the same bytes under the same label
//! (invariant 5), also when it holds a moved row — a primary-key change leaving a TOASTed column
//! unchanged, whose value the stream does not carry and the agent reads from the source
//! (invariant 4). What was read goes with the load's in-flight record; the re-formed batch takes
//! it from there, not from the source's row as it is after the crash. A moved row the source no
//! longer has is not written under its new key at all (its columns alone would create the row
//! with NULLs). The sim digests every body it reads, per label.

use std::collections::BTreeMap;
use std::time::Duration;

use starrocks_sim::{FaultKind, LoadFault};
use starwal::config::DEFAULT_STATE_SCHEMA;
use starwal::postgres::checkpoint::{CheckpointStore, InFlightLoad, MovedRow};
use starwal::postgres::{ChangePosition, Lsn};

use crate::harness::agent::{
    diff, source_rows, start_sim, target_rows, wait_for_rows, wait_until, AgentSpec, Rows,
    TARGET_DB,
};
use crate::harness::{unique_name, Cluster};

const TIMEOUT: Duration = Duration::from_secs(90);

/// 6 400 characters of md5 hex: incompressible, so stored out of line (TOASTed), and an update
/// that leaves it alone sends `u` for it.
const BIG: &str = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 200))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_issue12_a_re_sent_label_carries_the_same_body_after_a_crash() {
    let db = Cluster::shared().create_database("toast_reform").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, big text, small int)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t");
    let mut agent = spec.start_streaming().await;
    client
        .batch_execute(&format!("INSERT INTO t VALUES (1, {BIG}, 1)"))
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, big, small::text FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "t", &["id", "big", "small"])
    })
    .await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());

    // Every load of `t` fails before commit (transient: the agent retries), so the move's batch
    // stays in flight with its body read by the sim at least once.
    sim.faults().inject(
        LoadFault::new(FaultKind::TooManyVersions { legacy: false })
            .times(1_000)
            .on_table(TARGET_DB, "t"),
    );
    client
        .batch_execute("UPDATE t SET id = 2 WHERE id = 1")
        .await
        .unwrap();
    let mut in_flight = None;
    let attempted = wait_until(TIMEOUT, || {
        let counters = sim.counters(TARGET_DB, "t");
        in_flight = counters
            .body_digests
            .keys()
            .find(|label| !counters.labels_committed.contains(label))
            .cloned();
        in_flight.is_some()
    })
    .await;
    assert!(
        attempted,
        "the move's load never reached the sim\n{}",
        agent.log()
    );
    let label = in_flight.expect("found above");
    // The source row changes after the batch was formed (another batch), then the agent dies.
    client
        .batch_execute("UPDATE t SET big = repeat('x', 9000) WHERE id = 2")
        .await
        .unwrap();
    agent.kill9();
    sim.faults().clear();

    let mut agent = spec.start();
    let source = source_rows(&client, "SELECT id::text, big, small::text FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "t", &["id", "big", "small"])
    })
    .await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    let counters = sim.counters(TARGET_DB, "t");
    assert!(
        counters.labels_committed.contains(&label),
        "the re-formed batch committed under its label {label}: {:?}\n{}",
        counters.labels_committed,
        agent.log()
    );
    let digests = &counters.body_digests[&label];
    assert!(
        digests.len() >= 2,
        "sent before and after the crash: {digests:?}"
    );
    assert!(
        digests.iter().all(|d| d == &digests[0]),
        "label {label} went out with different bodies: {digests:?}\n{}",
        agent.log()
    );
    assert!(
        agent
            .log()
            .contains("re-forming the batch that was in flight"),
        "{}",
        agent.log()
    );
    let status = agent
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(30))
        .expect("exit");
    assert!(status.success(), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv4_issue12_a_moved_row_deleted_before_its_batch_is_never_written_with_nulls() {
    let db = Cluster::shared().create_database("toast_absent").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, big text, small int)")
        .await
        .unwrap();
    let sim = start_sim();
    // One change per batch: the move and the later delete go in separate loads.
    let spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_FLUSH_ROWS", "1");
    let mut agent = spec.start_streaming().await;
    client
        .batch_execute(&format!("INSERT INTO t VALUES (1, {BIG}, 1)"))
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, big, small::text FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "t", &["id", "big", "small"])
    })
    .await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    let status = agent
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(30))
        .expect("exit");
    assert!(status.success(), "{}", agent.log());

    // Two transactions while the agent is down: when it reads the move, the row is gone.
    client
        .batch_execute("UPDATE t SET id = 2 WHERE id = 1")
        .await
        .unwrap();
    client
        .batch_execute("DELETE FROM t WHERE id = 2")
        .await
        .unwrap();
    // Each load's answer is held back after its commit, so every state the target goes through
    // stays visible long enough to be seen.
    sim.faults().inject(
        LoadFault::new(FaultKind::CommitThenStall { stall_ms: 1_500 })
            .times(4)
            .on_table(TARGET_DB, "t"),
    );
    let committed_before = sim.counters(TARGET_DB, "t").loads_committed;
    let agent = spec.start();
    // The target as of each number of committed loads, until both batches are in (the move's
    // old-key delete, then the delete of the new key) and the target is empty.
    let mut seen: BTreeMap<u64, Rows> = BTreeMap::new();
    let converged = wait_until(TIMEOUT, || {
        let committed = sim.counters(TARGET_DB, "t").loads_committed;
        let rows = target_rows(&sim, "t", &["id", "big", "small"]);
        let done = rows.is_empty() && committed >= committed_before + 2;
        seen.entry(committed).or_insert(rows);
        done
    })
    .await;
    assert!(converged, "target never emptied: {seen:?}\n{}", agent.log());
    for (committed, rows) in &seen {
        assert!(
            rows.iter().all(|row| row[1].is_some()),
            "after {committed} loads the target has a row with NULL `big`: {rows:?}\n{}",
            agent.log()
        );
        assert!(
            rows.iter().all(|row| row[0].as_deref() != Some("2")),
            "after {committed} loads the moved row was written under its new key: {rows:?}\n{}",
            agent.log()
        );
    }
    assert_eq!(
        sim.counters(TARGET_DB, "t").loads_committed,
        committed_before + 2,
        "one load per batch: {seen:?}\n{}",
        agent.log()
    );
    agent.stop_cleanly();
}

/// The store side: moved rows are recorded with their load (present and absent rows, NULL
/// values, a value larger than a write chunk's worth of small ones), read back with the record,
/// replaced by the table's next record, and forgotten with the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_moved_rows_are_recorded_with_their_load_and_forgotten_with_it() {
    let db = Cluster::shared().create_database("moved_rows_store").await;
    let client = db.owner_client().await;
    let store = CheckpointStore::new(DEFAULT_STATE_SCHEMA, &unique_name("slot"));
    store.ensure(&client).await.unwrap();
    let at = |commit: u64, seq: u32| ChangePosition {
        commit: Lsn(commit),
        seq,
    };
    let big = "é".repeat(100_000);
    let moved: Vec<MovedRow> = (0..500)
        .map(|n| MovedRow {
            key: vec![Some(n.to_string()), Some(format!("k{n}"))],
            values: match n % 3 {
                0 => None,
                1 => Some(vec![Some(n.to_string()), None, Some(big.clone())]),
                _ => Some(vec![Some(String::new()), Some("a,{b}\"c".into()), None]),
            },
        })
        .collect();
    let load = InFlightLoad {
        table: "t".into(),
        label: "starwal_s_t_100_1_200_2".into(),
        first: at(0x100, 1),
        last: at(0x200, 2),
        synced_at: Some(starwal::postgres::value::PgTimestamp(848_656_800_123_456)),
        moved: moved.clone(),
    };
    let other = InFlightLoad {
        table: "u".into(),
        label: "starwal_s_u_100_1_100_1".into(),
        first: at(0x100, 1),
        last: at(0x100, 1),
        synced_at: None,
        moved: Vec::new(),
    };
    store.begin_load(&client, &load).await.unwrap();
    store.begin_load(&client, &other).await.unwrap();
    // Recording the same label again (a re-formed batch) leaves one copy.
    store.begin_load(&client, &load).await.unwrap();
    let state = store.load(&client).await.unwrap();
    assert_eq!(state.in_flight, vec![as_read(&load), as_read(&other)]);
    assert!(recorded_moved_rows(&store, &client, &state.in_flight[0]).await == moved);
    assert!(recorded_moved_rows(&store, &client, &state.in_flight[1])
        .await
        .is_empty());
    // A row is found by its key too (a record written in another order).
    let by_key = store
        .recorded_moved_row_by_key(&client, &load, &moved[301].key)
        .await
        .unwrap();
    assert_eq!(by_key.as_ref(), Some(&moved[301]));

    // The table's next load replaces the record and its moved rows.
    let next = InFlightLoad {
        label: "starwal_s_t_300_1_300_1".into(),
        first: at(0x300, 1),
        last: at(0x300, 1),
        moved: moved[..2].to_vec(),
        ..load.clone()
    };
    store.begin_load(&client, &next).await.unwrap();
    let state = store.load(&client).await.unwrap();
    assert_eq!(state.in_flight, vec![as_read(&next), as_read(&other)]);
    assert_eq!(
        recorded_moved_rows(&store, &client, &state.in_flight[0]).await,
        next.moved
    );
    assert_eq!(
        store.recorded_moved_row(&client, &load, 0).await.unwrap(),
        None,
        "the earlier label is no longer recorded"
    );
    let stored = |table: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {DEFAULT_STATE_SCHEMA}.moved_rows WHERE target_table = $1"
                    ),
                    &[&table],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(stored("t").await, 2, "the earlier label's rows are gone");

    // Confirming past the load forgets it with its moved rows.
    store.confirm(&client, Lsn(0x301)).await.unwrap();
    let state = store.load(&client).await.unwrap();
    assert!(state.in_flight.is_empty(), "{:?}", state.in_flight);
    assert_eq!(stored("t").await, 0);
    store.clear(&client).await.unwrap();
}

/// Issue 12 review: recording a label again (its batch re-formed after a restart) must never
/// leave the record naming it with its moved rows missing or partial, whatever statement the
/// agent dies after — the next restart would read the source instead and send other bytes under
/// the same label. The "crash" is a trigger failing the moved-row writes from row 300 on: the
/// first pieces (1 MiB of text each) are written, the rest and the record are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_a_crash_while_recording_a_label_again_keeps_its_moved_rows() {
    let db = Cluster::shared().create_database("moved_rows_crash").await;
    let client = db.owner_client().await;
    let store = CheckpointStore::new(DEFAULT_STATE_SCHEMA, &unique_name("slot"));
    store.ensure(&client).await.unwrap();
    let at = |commit: u64, seq: u32| ChangePosition {
        commit: Lsn(commit),
        seq,
    };
    // 200 kB per present row (4 in 5): a few rows per written piece, so row 300 is in a
    // piece well after the first.
    let big = "é".repeat(100_000);
    let moved: Vec<MovedRow> = (0..500)
        .map(|n| MovedRow {
            key: vec![Some(n.to_string())],
            values: (n % 5 != 0).then(|| vec![Some(n.to_string()), Some(big.clone())]),
        })
        .collect();
    let load = InFlightLoad {
        table: "t".into(),
        label: "starwal_s_t_100_1_200_2".into(),
        first: at(0x100, 1),
        last: at(0x200, 2),
        synced_at: None,
        moved: moved.clone(),
    };
    store.begin_load(&client, &load).await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE FUNCTION crash_at_300() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.n >= 300 THEN RAISE EXCEPTION 'killed while recording'; END IF; \
               RETURN NEW; END $$; \
             CREATE TRIGGER crash BEFORE INSERT OR UPDATE ON {DEFAULT_STATE_SCHEMA}.moved_rows \
               FOR EACH ROW EXECUTE FUNCTION crash_at_300()"
        ))
        .await
        .unwrap();
    let interrupted = store.begin_load(&client, &load).await;
    assert!(interrupted.is_err(), "the trigger stops the recording");
    let written: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {DEFAULT_STATE_SCHEMA}.moved_rows WHERE target_table = 't'"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 500, "every recorded moved row is still there");
    client
        .batch_execute(&format!(
            "DROP TRIGGER crash ON {DEFAULT_STATE_SCHEMA}.moved_rows"
        ))
        .await
        .unwrap();
    // The restart after that crash re-forms the batch from the complete record.
    let state = store.load(&client).await.unwrap();
    assert_eq!(state.in_flight.len(), 1, "{:?}", state.in_flight);
    let recorded = recorded_moved_rows(&store, &client, &state.in_flight[0]).await;
    assert!(
        recorded == moved,
        "the label's moved rows changed: {} recorded of {}",
        recorded.len(),
        moved.len()
    );
    store.clear(&client).await.unwrap();
}

/// The moved rows recorded for `load`, in the order its batch asked for them.
async fn recorded_moved_rows(
    store: &CheckpointStore,
    client: &tokio_postgres::Client,
    load: &InFlightLoad,
) -> Vec<MovedRow> {
    let mut rows = Vec::new();
    while let Some(row) = store
        .recorded_moved_row(client, load, rows.len())
        .await
        .unwrap()
    {
        rows.push(row);
    }
    rows
}

/// `load` as [`CheckpointStore::load`] returns it (moved rows are read one at a time).
fn as_read(load: &InFlightLoad) -> InFlightLoad {
    InFlightLoad {
        moved: Vec::new(),
        ..load.clone()
    }
}

/// Issue 12 review, invariant 8: a moved row costs only its key while it waits in the batch, so
/// when many rows change key at once their fetched values must still be counted as they arrive
/// — not read all together when the batch is sealed (1 000 rows of 100 kB under a 16 MiB cap
/// peaked at 316 MiB). Peak RSS stays under the cap + 32 MiB, and the target equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv8_many_moved_rows_stay_under_the_memory_cap() {
    const MIB: u64 = 1024 * 1024;
    const CAP: u64 = 16 * MIB;
    const ROWS: usize = 1_000;
    let db = Cluster::shared()
        .create_database("toast_moves_memory")
        .await;
    let client = db.owner_client().await;
    // EXTERNAL: out of line and uncompressed, so each 100 kB value is TOASTed and the key
    // change sends `u` for it.
    client
        .batch_execute(
            "CREATE TABLE w (id int8 PRIMARY KEY, big text); \
             ALTER TABLE w ALTER COLUMN big SET STORAGE EXTERNAL",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.w")
        .var("STARWAL_MAX_BUFFER_BYTES", &CAP.to_string())
        .var("STARWAL_FLUSH_ROWS", "100000");
    let agent = spec.start_streaming().await;
    client
        .batch_execute(&format!(
            "INSERT INTO w SELECT g, repeat(md5(g::text), 3200) FROM generate_series(1, {ROWS}) g"
        ))
        .await
        .unwrap();
    let ids = |sim: &starrocks_sim::Sim| target_rows(sim, "w", &["id"]);
    let inserted = wait_until(TIMEOUT, || ids(&sim).len() == ROWS).await;
    assert!(inserted, "the inserts never arrived\n{}", agent.log());
    // The key change is read by a fresh agent, so its peak is the key change's alone.
    agent.stop_cleanly();
    client
        .batch_execute("UPDATE w SET id = id + 1000000")
        .await
        .unwrap();
    let mut agent = spec.start();
    let moved = wait_until(TIMEOUT, || {
        let ids = ids(&sim);
        ids.len() == ROWS
            && ids
                .iter()
                .all(|id| id[0].as_deref().is_some_and(|id| id.len() == 7))
    })
    .await;
    assert!(moved, "the key change never arrived\n{}", agent.log());
    let source = source_rows(&client, "SELECT id::text, big FROM w").await;
    let got = target_rows(&sim, "w", &["id", "big"]);
    assert!(
        got == source,
        "target differs from source: {} rows vs {}, {} equal\n{}",
        got.len(),
        source.len(),
        got.intersection(&source).count(),
        agent.log()
    );
    let peak = peak_rss(agent.pid());
    eprintln!(
        "moved rows: peak RSS {:.1} MiB, cap {} MiB",
        peak as f64 / MIB as f64,
        CAP / MIB
    );
    assert!(peak > 0, "no VmHWM for pid {}", agent.pid());
    assert!(
        peak <= CAP + 32 * MIB,
        "peak RSS {peak} B exceeds STARWAL_MAX_BUFFER_BYTES {CAP} B + 32 MiB\n{}",
        agent.log()
    );
    let status = agent
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(30))
        .expect("exit");
    assert!(status.success(), "{}", agent.log());
}

/// Peak resident memory of process `pid` since it started (VmHWM; 0 when unreadable).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
