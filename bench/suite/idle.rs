//! Scenario `idle`: the footprint of an agent streaming one table that receives no writes — RSS
//! sampled every second and CPU used over `BENCH_IDLE_S`, after a settling period.
//!
//! The agent runs with its own defaults (status every 10 s, no heartbeat), as an operator would
//! run it; only the `STARWAL_*` variables of the environment change that.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::agent::{self, cpu_seconds, rss};
use super::cluster;
use super::report::{mib, Report};
use super::settings::Settings;
use super::workload;

const TABLE: &str = "idle";
/// Time after "streaming changes" before the watch starts (startup allocations settle).
const SETTLE: Duration = Duration::from_secs(5);
/// Issue 16's target (issue 9 asked for 10 MiB).
const MAX_IDLE_RSS_BYTES: u64 = 8 * 1024 * 1024;

pub async fn run(settings: &Settings, report: &mut Report) -> Result<()> {
    let (cluster, sim) = cluster::start(report).await?;
    let db = cluster.create_database(TABLE).await;
    let client = db.owner_client().await;
    client
        .batch_execute(&format!("CREATE TABLE {TABLE} {}", workload::TEN_COLUMNS))
        .await
        .context("create the table")?;
    let spec = agent::spec(&db, &sim, &format!("public.{TABLE}"), "never", settings);
    report.set("agent_env", agent::vars_json(&spec));
    let (mut agent, startup) = agent::start_streaming(&spec, settings.timeout).await?;
    tokio::time::sleep(SETTLE).await;

    let pid = agent.pid();
    let cpu_start = cpu_seconds(pid);
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < settings.idle_duration {
        samples.push(rss(pid));
        if !agent.is_running() {
            bail!("the agent exited while idle:\n{}", agent::log_tail(&agent));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    samples.push(rss(pid));
    let watched = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_start;
    let stopped = agent::stop(&mut agent);

    let max = samples.iter().copied().max().unwrap_or(0);
    let min = samples.iter().copied().min().unwrap_or(0);
    let last = samples.last().copied().unwrap_or(0);
    report.set(
        "idle",
        serde_json::json!({
            "startup_seconds": startup.as_secs_f64(),
            "watched_seconds": watched,
            "rss_samples": samples.len(),
            "rss_min_bytes": min,
            "rss_max_bytes": max,
            "rss_last_bytes": last,
            "cpu_seconds": cpu,
            "cpu_percent": cpu * 100.0 / watched.max(1e-9),
        }),
    );
    report.sections.push(format!(
        "Idle agent (streaming one table, no writes) watched for {watched:.0} s after {} s of \
         settling.\n\n\
         | startup s | RSS min MiB | RSS max MiB | RSS last MiB | CPU s | CPU % |\n\
         |---|---|---|---|---|---|\n| {:.2} | {} | {} | {} | {:.3} | {:.3} |\n",
        SETTLE.as_secs(),
        startup.as_secs_f64(),
        mib(min),
        mib(max),
        mib(last),
        cpu,
        cpu * 100.0 / watched.max(1e-9),
    ));
    report.target(
        "idle RSS (max over the watch)",
        "≤ 8 MiB",
        format!("{} MiB", mib(max)),
        Some(max <= MAX_IDLE_RSS_BYTES),
    );
    stopped
}
