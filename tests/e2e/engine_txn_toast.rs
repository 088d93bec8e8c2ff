//! Issue 14, seeded: large source transactions of random UPDATEs over rows with TOASTed values,
//! most leaving the value unchanged, land whole (`pipeline/toast.rs`). A small
//! `STARWAL_FLUSH_ROWS` makes each transaction several parts, and a small
//! `STARWAL_MAX_BUFFER_BYTES` makes completing a part's rows fill the buffer, so parts are also
//! split while being completed.
//!
//! Invariants:
//! - at every read of the target: all rows are there and every row's `n` is the same (each
//!   transaction sets `n` of every row to its number, in random pieces: a part visible early
//!   shows two numbers);
//! - each row's `doc` in a state showing transaction `k` is the value transaction `k` left, or
//!   one a later transaction wrote (the documented window: an unchanged value is read from the
//!   source when the row is completed, and a later transaction may have changed it by then);
//! - at the end the target equals the source.
//!
//! Replay a failure with `STARWAL_TEST_SEED=<seed printed>`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::agent::{
    diff, source_rows, start_sim, target_rows, wait_for_rows, AgentSpec, TARGET_DB,
};
use crate::harness::seeded::{seed, Lcg};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(180);
const ROWS: i64 = 200;
const TRANSACTIONS: i64 = 8;

/// A state of the target as the reader saw it: per row, (id, n, doc version).
type State = Vec<(i64, i64, i64)>;

/// A doc of row `id` written by transaction `k` (0: the seed): ~3.6 KB, stored out of line
/// (STORAGE EXTERNAL), and naming its writer in its first field.
fn doc_sql(k: i64) -> String {
    format!("repeat(id::text || '-{k};', 400)")
}

/// The writer named by a doc (`<id>-<k>;...`).
fn doc_version(doc: &str) -> Option<i64> {
    let field = doc.split(';').next()?;
    field.split('-').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_large_updates_leaving_toast_unchanged_are_visible_whole() {
    let seed = seed();
    eprintln!("STARWAL_TEST_SEED={seed}");
    let mut rng = Lcg(seed);
    let db = Cluster::shared()
        .create_database("engine_txn_toast_seeded")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE d (id int PRIMARY KEY, n int NOT NULL, doc text);
             ALTER TABLE d ALTER COLUMN doc SET STORAGE EXTERNAL;",
        )
        .await
        .unwrap();
    let sim = Arc::new(start_sim());
    let spec = AgentSpec::new(&db, &sim, "public.d")
        .var("STARWAL_FLUSH_ROWS", "50")
        .var("STARWAL_MAX_BUFFER_BYTES", "1048576");
    let agent = spec.start_streaming().await;
    client
        .batch_execute(&format!(
            "INSERT INTO d SELECT id, 0, {} FROM generate_series(1, {ROWS}) id",
            doc_sql(0)
        ))
        .await
        .unwrap();
    let columns = ["id", "n", "doc"];
    let source = source_rows(&client, "SELECT id::text, n::text, doc FROM d").await;
    wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "d", &columns)).await;
    let before = sim.counters(TARGET_DB, "d").labels_committed.len();

    // Every committed state the reader saw.
    let seen: Arc<Mutex<BTreeSet<State>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (sim, seen, stop) = (sim.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let rows = target_rows(&sim, "d", &columns);
                let state: State = rows
                    .iter()
                    .map(|row| {
                        let int = |v: &Option<String>| v.as_deref().and_then(|v| v.parse().ok());
                        let doc = row[2].as_deref().and_then(doc_version);
                        (
                            int(&row[0]).unwrap_or(-1),
                            int(&row[1]).unwrap_or(-1),
                            doc.unwrap_or(-1),
                        )
                    })
                    .collect();
                seen.lock().unwrap().insert(state);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    // Per transaction, the doc version of each row after it (index 0: the seed).
    let mut docs: Vec<Vec<i64>> = vec![vec![0; ROWS as usize + 1]];
    for k in 1..=TRANSACTIONS {
        let mut after = docs.last().unwrap().clone();
        let mut sql = String::from("BEGIN;");
        // `n = k` for every row, in 1-4 pieces by id modulo, each piece in random order with
        // doc rewrites of random rows (most rows keep theirs: unchanged TOAST).
        let pieces = 1 + rng.next(4) as i64;
        for piece in 0..pieces {
            sql.push_str(&format!(
                "UPDATE d SET n = {k} WHERE id % {pieces} = {piece};"
            ));
            if rng.next(2) == 0 {
                let every = 3 + rng.next(20) as i64;
                let at = rng.next(every as u64) as i64;
                sql.push_str(&format!(
                    "UPDATE d SET doc = {} WHERE id % {every} = {at};",
                    doc_sql(k)
                ));
                for id in 1..=ROWS {
                    if id % every == at {
                        after[id as usize] = k;
                    }
                }
            }
        }
        sql.push_str("COMMIT;");
        client.batch_execute(&sql).await.unwrap();
        docs.push(after);
    }

    let source = source_rows(&client, "SELECT id::text, n::text, doc FROM d").await;
    let target = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "d", &columns)).await;
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(
        source == target,
        "seed {seed}\n{}\n{}",
        diff(&source, &target),
        agent.log()
    );

    let seen = seen.lock().unwrap();
    let mut states = BTreeMap::new();
    for state in seen.iter() {
        assert_eq!(
            state.len() as i64,
            ROWS,
            "seed {seed}: a state with {} rows",
            state.len()
        );
        let numbers: BTreeSet<i64> = state.iter().map(|(_, n, _)| *n).collect();
        assert_eq!(
            numbers.len(),
            1,
            "seed {seed}: a transaction visible in part: n = {numbers:?}\n{}",
            agent.log()
        );
        let k = *numbers.iter().next().unwrap();
        assert!((0..=TRANSACTIONS).contains(&k), "seed {seed}: n = {k}");
        for &(id, _, version) in state {
            let Some(id) = usize::try_from(id)
                .ok()
                .filter(|id| (1..=ROWS as usize).contains(id))
            else {
                panic!("seed {seed}: a row with id {id}");
            };
            let later: BTreeSet<i64> = docs[k as usize..].iter().map(|d| d[id]).collect();
            assert!(
                later.contains(&version),
                "seed {seed}: row {id} in the state of transaction {k} has the doc of \
                 transaction {version}, which neither it nor a later one left"
            );
        }
        *states.entry(k).or_insert(0) += 1;
    }
    let labels = sim.counters(TARGET_DB, "d").labels_committed;
    assert!(
        labels.len() - before <= TRANSACTIONS as usize,
        "seed {seed}: {TRANSACTIONS} source transactions became {} StarRocks commits: {:?}",
        labels.len() - before,
        &labels[before..]
    );
    eprintln!(
        "states seen per transaction: {states:?}; commits: {}",
        labels.len() - before
    );
    agent.stop_cleanly();
}
