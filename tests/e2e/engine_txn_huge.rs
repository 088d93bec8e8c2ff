//! Issue 14's huge transaction in `table` mode: 2 000 000 rows in one source transaction under
//! `STARWAL_MAX_BUFFER_BYTES=64 MiB`. The agent sends it in many parts into one StarRocks
//! transaction, so a reader polling the target sees the old count until the transaction commits
//! and then the new one at once — never a count in between — while the agent's peak resident
//! memory stays under the cap + 32 MiB (invariant 8), and the rows are committed once.
//!
//! `STARWAL_TEST_HUGE_ROWS` overrides the row count (e.g. for a quick local run).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::harness::agent::{start_sim, wait_until, AgentSpec, TARGET_DB};
use crate::harness::Cluster;

const MIB: u64 = 1024 * 1024;
const CAP: u64 = 64 * MIB;
const SLACK: u64 = 32 * MIB;
const TIMEOUT: Duration = Duration::from_secs(600);

/// Peak resident memory of a process since it started (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv11_a_two_million_row_transaction_appears_at_once_under_a_64_mib_cap() {
    let rows: usize = std::env::var("STARWAL_TEST_HUGE_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2_000_000);
    let db = Cluster::shared().create_database("engine_txn_huge").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int8 PRIMARY KEY, v int8, note text);
             INSERT INTO t VALUES (0, 0, 'before');",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_MAX_BUFFER_BYTES", &CAP.to_string());
    let mut agent = spec.start_streaming().await;
    let count = || {
        sim.catalog()
            .read(|c| c.row_count(TARGET_DB, "t").unwrap_or(0))
    };
    assert!(
        wait_until(Duration::from_secs(60), || count() == 1).await,
        "the first row never arrived\n{}",
        agent.log()
    );
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "INSERT INTO t SELECT g, g * 7, md5(g::text) FROM generate_series(1, {rows}) g"
        ))
        .await
        .unwrap();
    let committed_at = started.elapsed();

    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let n = count();
        seen.insert(n);
        assert!(
            n == 1 || n == rows + 1,
            "a reader saw {n} rows: neither the 1 before nor the {} after the transaction\n{}",
            rows + 1,
            agent.log()
        );
        if n == rows + 1 {
            break;
        }
        assert!(agent.is_running(), "the agent stopped\n{}", agent.log());
        assert!(
            Instant::now() < deadline,
            "the transaction never landed\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let visible_after = started.elapsed();
    let peak = peak_rss(agent.pid());
    let parts = sim.txn_events(0).iter().filter(|e| e.op == "load").count();
    eprintln!(
        "{rows} rows: source COMMIT after {committed_at:?}, visible after {visible_after:?}, \
         {parts} parts, agent peak RSS {:.1} MiB (cap {} MiB)",
        peak as f64 / MIB as f64,
        CAP / MIB
    );
    assert!(
        peak <= CAP + SLACK,
        "peak RSS {peak} B exceeds STARWAL_MAX_BUFFER_BYTES {CAP} B + 32 MiB"
    );
    assert!(parts > 1, "the transaction went out in {parts} part(s)");
    let labels = sim.label_counters(TARGET_DB);
    let carrying: Vec<_> = labels
        .iter()
        .filter(|(_, c)| c.rows as usize == rows)
        .collect();
    assert_eq!(
        carrying.len(),
        1,
        "one StarRocks transaction carries all {rows} rows: {labels:?}"
    );
    assert!(labels.values().all(|c| c.commits == 1), "{labels:?}");
    agent.stop_cleanly();
}
