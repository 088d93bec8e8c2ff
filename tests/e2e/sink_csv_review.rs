//! Review of the CSV bodies through the real agent: seeded transactions mixing plain text with
//! values CSV cannot carry (the text `\N`, the separator bytes 0x1e/0x1f), upserts and hard
//! deletes. Every value must arrive exactly (`\N` stays text, never NULL) and every batch must
//! be one load (no `_p1` label: without partial updates a batch has one column set): a batch
//! split into a CSV and a JSON load makes its source transactions visible in two steps
//! (invariant 11); after kill -9 the same batches are re-formed into the same loads. The seed is
//! printed; `STARWAL_TEST_SEED` replays one.

use std::time::Duration;

use crate::harness::agent::{
    diff, source_rows, start_sim, target_rows, wait_for_rows, AgentSpec, TARGET_DB,
};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(120);

/// xorshift64*: deterministic per seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Text CSV carries as it is, and text it cannot (`None` is NULL).
const PLAIN: &[Option<&str>] = &[Some("plain"), Some(""), Some("N"), Some("\\\\N"), None];
const ODD: &[&str] = &["\\N", "a\u{1e}b", "\u{1f}", "x\u{1f}\u{1e}\\N"];

fn plain(rng: &mut Rng) -> Option<String> {
    PLAIN[rng.below(PLAIN.len() as u64) as usize].map(str::to_owned)
}

fn odd(rng: &mut Rng) -> Option<String> {
    Some(ODD[rng.below(ODD.len() as u64) as usize].to_owned())
}

/// `STARWAL_TEST_SEED`, or one from the clock; printed.
fn seed() -> u64 {
    let seed = std::env::var("STARWAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("STARWAL_TEST_SEED={seed}");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_values_csv_cannot_carry_arrive_exactly_and_never_split_a_batch() {
    let seed = seed();
    let mut rng = Rng(seed);
    let db = Cluster::shared().create_database("sink_csv_review").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, payload text, other text);
             INSERT INTO t VALUES (0, 'seed', NULL);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_SNAPSHOT", "initial");
    let agent = spec.start_streaming().await;
    let query = "SELECT id::text, payload, other FROM t";
    let seeded = wait_for_rows(&source_rows(&client, query).await, TIMEOUT, || {
        target_rows(&sim, "t", &["id", "payload", "other"])
    })
    .await;
    assert_eq!(
        seeded.len(),
        1,
        "the seed row never arrived\n{}",
        agent.log()
    );

    let mut next_id = 1i32;
    for _ in 0..25 {
        client.batch_execute("BEGIN").await.unwrap();
        // Each transaction holds plain rows and at least one row CSV cannot carry.
        for i in 0..2 + rng.below(6) {
            let id = if next_id > 1 && rng.below(3) == 0 {
                1 + rng.below(next_id as u64 - 1) as i32
            } else {
                next_id += 1;
                next_id - 1
            };
            let (payload, other) = if i == 0 {
                (odd(&mut rng), plain(&mut rng))
            } else if rng.below(3) == 0 {
                (plain(&mut rng), odd(&mut rng))
            } else {
                (plain(&mut rng), plain(&mut rng))
            };
            client
                .execute(
                    "INSERT INTO t VALUES ($1, $2, $3) ON CONFLICT (id)
                     DO UPDATE SET payload = excluded.payload, other = excluded.other",
                    &[&id, &payload, &other],
                )
                .await
                .unwrap();
        }
        if rng.below(3) == 0 && next_id > 1 {
            let id = 1 + rng.below(next_id as u64 - 1) as i32;
            client
                .execute("DELETE FROM t WHERE id = $1", &[&id])
                .await
                .unwrap();
        }
        client.batch_execute("COMMIT").await.unwrap();
    }

    let source = source_rows(&client, query).await;
    let target = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "t", &["id", "payload", "other"])
    })
    .await;
    assert_eq!(
        target,
        source,
        "seed {seed}: {}\n{}",
        diff(&source, &target),
        agent.log()
    );
    let labels = sim.counters(TARGET_DB, "t").labels_committed;
    // `_p<k>` ends the label of a batch's k-th load.
    let part = |label: &str| {
        label
            .rsplit('_')
            .next()
            .and_then(|last| last.strip_prefix('p'))
            .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
    };
    assert!(!labels.is_empty(), "seed {seed}: no label committed");
    let split: Vec<&String> = labels.iter().filter(|l| part(l)).collect();
    assert!(
        split.is_empty(),
        "seed {seed}: batches loaded in parts (visible in two steps): {split:?}"
    );
}

/// A batch holding a value CSV cannot carry is re-formed after kill -9 into the same loads under
/// the same labels (the JSON fallback is decided by the batch's values alone): the target
/// converges to the source exactly, no label commits twice, no batch is split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_kill9_with_values_csv_cannot_carry_converges_exactly() {
    let seed = seed();
    let db = Cluster::shared()
        .create_database("sink_csv_review_kill")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, payload text, other text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_FLUSH_ROWS", "50");
    let mut agent = spec.start_streaming().await;

    let writer = db.owner_client().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workload = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut rng = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                writer.batch_execute("BEGIN").await.unwrap();
                for _ in 0..1 + rng.below(8) {
                    let id = rng.below(200) as i32;
                    if rng.below(5) == 0 {
                        writer
                            .execute("DELETE FROM t WHERE id = $1", &[&id])
                            .await
                            .unwrap();
                        continue;
                    }
                    let payload = if rng.below(4) == 0 {
                        odd(&mut rng)
                    } else {
                        plain(&mut rng)
                    };
                    let other = plain(&mut rng);
                    writer
                        .execute(
                            "INSERT INTO t VALUES ($1, $2, $3) ON CONFLICT (id)
                             DO UPDATE SET payload = excluded.payload, other = excluded.other",
                            &[&id, &payload, &other],
                        )
                        .await
                        .unwrap();
                }
                writer.batch_execute("COMMIT").await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut rng = Rng(seed);
    for round in 0..4 {
        let delay = 300 + rng.below(1200);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        eprintln!("round {round}: kill -9 after {delay} ms");
        agent.kill9();
        agent = spec.start();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    workload.await.unwrap();

    let query = "SELECT id::text, payload, other FROM t";
    let source = source_rows(&client, query).await;
    let target = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "t", &["id", "payload", "other"])
    })
    .await;
    assert_eq!(
        target,
        source,
        "seed {seed}: {}\n{}",
        diff(&source, &target),
        agent.log()
    );
    for (label, committed) in sim.label_counters(TARGET_DB) {
        assert!(
            committed.commits <= 1,
            "seed {seed}: {label} committed {} times",
            committed.commits
        );
    }
    let split: Vec<String> = sim
        .counters(TARGET_DB, "t")
        .labels_committed
        .into_iter()
        .filter(|label| {
            label
                .rsplit('_')
                .next()
                .and_then(|last| last.strip_prefix('p'))
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    assert!(
        split.is_empty(),
        "seed {seed}: batches loaded in parts: {split:?}"
    );
}

/// The snapshot copy writes rows CSV cannot carry into a JSON part beside the CSV part of their
/// chunk: every value arrives exactly, `\N` as text and NULL as NULL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_copy_of_values_csv_cannot_carry_arrives_exactly() {
    let db = Cluster::shared()
        .create_database("sink_csv_review_copy")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            r"CREATE TABLE t (id int PRIMARY KEY, payload text, other text);
              INSERT INTO t SELECT g,
                CASE g % 7 WHEN 0 THEN E'\\N' WHEN 1 THEN 'a' || chr(30) || 'b'
                  WHEN 2 THEN chr(31) WHEN 3 THEN NULL WHEN 4 THEN '' WHEN 5 THEN E'\\\\N'
                  ELSE 'plain ' || g END,
                CASE WHEN g % 11 = 0 THEN E'\\N' ELSE 'o' || g END
              FROM generate_series(1, 3000) g;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_SNAPSHOT_CHUNK_ROWS", "1000");
    let agent = spec.start_streaming().await;
    let query = "SELECT id::text, payload, other FROM t";
    let source = source_rows(&client, query).await;
    assert!(source.contains(&vec![
        Some("7".to_owned()),
        Some("\\N".to_owned()),
        Some("o7".to_owned())
    ]));
    let target = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "t", &["id", "payload", "other"])
    })
    .await;
    assert_eq!(
        target,
        source,
        "{}\n{}",
        diff(&source, &target),
        agent.log()
    );
}
