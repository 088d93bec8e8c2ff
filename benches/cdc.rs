//! End-to-end CDC benchmark: the release `starwal run` binary between a throwaway Postgres
//! cluster and an in-process `starrocks-sim`, all on this machine.
//!
//! `cargo bench --bench cdc` prints:
//! - sustained throughput: rows/s for a 10-column table, from the first commit of a backlog of
//!   `ROWS` inserted rows until the last is visible in the sim;
//! - commit-to-visible lag at a steady 10k rows/s (one transaction of 1 000 rows every 100 ms,
//!   for `STEADY_SECONDS`): p50/p99/max, measured from the client's COMMIT returning to the
//!   row count in the sim covering the transaction (polled every 2 ms);
//! - the agent's RSS idle (streaming, no traffic) and its peak under load.
//!
//! It measures; it asserts nothing. Postgres, the sim and the agent share the 2 cores, so the
//! numbers are a floor for the agent, not its ceiling.

#[path = "../tests/e2e/harness/mod.rs"]
#[allow(unused_imports)]
mod harness;

use std::time::{Duration, Instant};

use harness::agent::{start_sim, AgentSpec, TARGET_DB};
use harness::{Cluster, ClusterOptions};
use starwal::control::process::ProcessStats;

const ROWS: u64 = 500_000;
const BACKLOG_TXN_ROWS: u64 = 5_000;
const STEADY_SECONDS: u64 = 30;
const STEADY_TXN_ROWS: u64 = 1_000;

fn rss(pid: u32) -> u64 {
    ProcessStats::read_pid(pid)
        .resident_memory_bytes
        .unwrap_or(0)
}

/// CPU seconds (user + system) `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    ProcessStats::read_pid(pid)
        .cpu_time
        .map_or(0.0, |cpu| cpu.as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

const INSERT: &str = "INSERT INTO bench SELECT g, g % 1000, g * 7, g % 2 = 0, 'name-' || g, \
    md5(g::text), (g * 1.5)::numeric(12,2), now(), current_date, g::float8 / 3 \
    FROM generate_series($1::int8, $2::int8) g";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let cluster = Cluster::start(ClusterOptions {
        extra_conf: "logical_decoding_work_mem = 64MB\n".into(),
        ..ClusterOptions::default()
    });
    let db = cluster.create_database("bench").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE bench (id int8 PRIMARY KEY, a int4, b int8, c bool, d text, e text,
                                 f numeric(12,2), g timestamptz, h date, i float8)",
        )
        .await
        .expect("create table");
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.bench")
        .var("STARWAL_FLUSH_INTERVAL_MS", "50")
        .var("STARWAL_LOG", "warn");
    let agent = spec.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sim.catalog().read(|c| c.table(TARGET_DB, "bench").is_ok()) {
        assert!(
            Instant::now() < deadline,
            "agent did not start:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = rss(agent.pid());
    let insert = client.prepare(INSERT).await.expect("prepare");
    let walsender: i32 = client
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&spec.slot()],
        )
        .await
        .expect("walsender")
        .get(0);
    let walsender = walsender as u32;
    let (agent_cpu0, walsender_cpu0) = (cpu_seconds(agent.pid()), cpu_seconds(walsender));
    let visible = || sim.catalog().row_count(TARGET_DB, "bench").unwrap_or(0) as u64;

    // Throughput: a backlog written as fast as Postgres takes it.
    let start = Instant::now();
    let mut peak_rss = idle_rss;
    let mut next = 1u64;
    while next <= ROWS {
        let last = (next + BACKLOG_TXN_ROWS - 1).min(ROWS);
        client
            .execute(&insert, &[&(next as i64), &(last as i64)])
            .await
            .expect("insert");
        next = last + 1;
        peak_rss = peak_rss.max(rss(agent.pid()));
    }
    let written = start.elapsed();
    while visible() < ROWS {
        peak_rss = peak_rss.max(rss(agent.pid()));
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "backlog not loaded:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let loaded = start.elapsed();
    let agent_cpu = cpu_seconds(agent.pid()) - agent_cpu0;
    let walsender_cpu = cpu_seconds(walsender) - walsender_cpu0;

    // Lag at a steady 10k rows/s.
    let mut commits: Vec<(u64, Instant)> = Vec::new();
    let poller = {
        let sim_catalog = sim.catalog();
        let stop_at = Instant::now() + Duration::from_secs(STEADY_SECONDS + 30);
        std::thread::spawn(move || {
            let mut seen: Vec<(u64, Instant)> = Vec::new();
            let mut last = 0;
            while Instant::now() < stop_at {
                let count = sim_catalog.row_count(TARGET_DB, "bench").unwrap_or(0) as u64;
                if count != last {
                    seen.push((count, Instant::now()));
                    last = count;
                }
                if count >= ROWS + STEADY_SECONDS * 10 * STEADY_TXN_ROWS {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            seen
        })
    };
    let steady_start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for n in 0..STEADY_SECONDS * 10 {
        tick.tick().await;
        let first = ROWS + 1 + n * STEADY_TXN_ROWS;
        let last = first + STEADY_TXN_ROWS - 1;
        client
            .execute(&insert, &[&(first as i64), &(last as i64)])
            .await
            .expect("insert");
        commits.push((last, Instant::now()));
        peak_rss = peak_rss.max(rss(agent.pid()));
    }
    let steady_elapsed = steady_start.elapsed();
    let seen = poller.join().expect("poller");
    let mut lags: Vec<Duration> = commits
        .iter()
        .filter_map(|(last, committed)| {
            seen.iter()
                .find(|(count, _)| *count >= *last)
                .map(|(_, at)| at.saturating_duration_since(*committed))
        })
        .collect();
    lags.sort();

    println!(
        "starwal CDC benchmark (10-column table; Postgres, sim and agent on the same machine)"
    );
    println!(
        "  backlog: {ROWS} rows in {} txns written in {:.2} s, all visible after {:.2} s -> {:.0} rows/s sustained",
        ROWS / BACKLOG_TXN_ROWS,
        written.as_secs_f64(),
        loaded.as_secs_f64(),
        ROWS as f64 / loaded.as_secs_f64()
    );
    println!(
        "  CPU during the backlog: agent {agent_cpu:.2} s ({:.2} µs/row), walsender {walsender_cpu:.2} s ({:.2} µs/row)",
        agent_cpu * 1e6 / ROWS as f64,
        walsender_cpu * 1e6 / ROWS as f64
    );
    println!(
        "  steady {} rows/s for {:.1} s: {} of {} txns seen; lag p50 {} ms, p99 {} ms, max {} ms",
        10 * STEADY_TXN_ROWS,
        steady_elapsed.as_secs_f64(),
        lags.len(),
        commits.len(),
        percentile(&lags, 0.5).as_millis(),
        percentile(&lags, 0.99).as_millis(),
        lags.last().copied().unwrap_or_default().as_millis()
    );
    println!(
        "  agent RSS: idle {:.1} MiB, peak under load {:.1} MiB",
        idle_rss as f64 / 1048576.0,
        peak_rss as f64 / 1048576.0
    );
    drop(agent);
}
