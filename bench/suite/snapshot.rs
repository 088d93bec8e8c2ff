//! Scenario `snapshot`: rows/s of the initial copy of a 10-column table (`starwal run` with
//! `STARWAL_SNAPSHOT=only`: copy, then exit 0) against one raw `COPY (SELECT * FROM t) TO STDOUT`
//! of the same table read by a client that discards it.
//!
//! The table is written and `VACUUM (FREEZE, ANALYZE)`d first, so neither reader pays for
//! setting hint bits. The agent's time runs from spawning it until it has exited 0; the target
//! must then hold every row (else the scenario fails, saying how many arrived).
//!
//! An agent without the snapshot feature ignores the variable and streams instead, or rejects
//! it as a configuration error: the scenario is then *skipped* ("snapshot not available"), not
//! failed. `STARWAL_SNAPSHOT_WORKERS` and `STARWAL_SNAPSHOT_CHUNK_ROWS` from the environment
//! reach the agent like every tuning variable.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tokio_stream::StreamExt as _;

use super::agent::{self, cpu_seconds, PeakRss};
use super::cluster;
use super::harness::agent::TARGET_DB;
use super::report::{mib, Outcome, Report};
use super::settings::Settings;
use super::workload;

const TABLE: &str = "snap";
const POLL: Duration = Duration::from_millis(10);
/// Rows per transaction while filling the table.
const FILL_TXN_ROWS: u64 = 100_000;

pub async fn run(settings: &Settings, report: &mut Report) -> Result<()> {
    let rows = settings.snapshot_rows;
    let (cluster, sim) = cluster::start(report).await?;
    let db = cluster.create_database(TABLE).await;
    let client = db.owner_client().await;
    client
        .batch_execute(&format!("CREATE TABLE {TABLE} {}", workload::TEN_COLUMNS))
        .await
        .context("create the table")?;
    workload::insert_range(
        &client,
        &workload::ten_column_insert(TABLE),
        1,
        rows,
        FILL_TXN_ROWS,
    )
    .await?;
    client
        .batch_execute(&format!("VACUUM (FREEZE, ANALYZE) {TABLE}"))
        .await
        .context("vacuum the table")?;
    let table_bytes: i64 = client
        .query_one(&format!("SELECT pg_table_size('{TABLE}')"), &[])
        .await?
        .get(0);

    // The yardstick: one COPY, read and dropped.
    eprintln!("bench: snapshot: raw COPY of {rows} rows");
    let started = Instant::now();
    let stream = client
        .copy_out(&format!("COPY (SELECT * FROM {TABLE}) TO STDOUT"))
        .await
        .context("COPY TO STDOUT")?;
    tokio::pin!(stream);
    let mut copy_bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        copy_bytes += chunk.context("COPY TO STDOUT")?.len() as u64;
    }
    let copy = started.elapsed();
    let copy_rows_per_second = rows as f64 / copy.as_secs_f64().max(1e-9);
    report.set(
        "copy_to_stdout",
        serde_json::json!({
            "rows": rows,
            "table_bytes": table_bytes,
            "seconds": copy.as_secs_f64(),
            "bytes": copy_bytes,
            "rows_per_second": copy_rows_per_second,
        }),
    );

    // Who else spends CPU while the agent copies: on this machine the target (the sim, in this
    // process) and Postgres share the cores with the agent, unlike a real StarRocks cluster.
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let postmaster = parent_pid(backend as u32);
    let sim_before = sim_cpu_seconds();
    let postgres_before = postmaster.map(tree_cpu_seconds);

    // The agent.
    eprintln!("bench: snapshot: starwal run with STARWAL_SNAPSHOT=only");
    let spec = agent::spec(&db, &sim, &format!("public.{TABLE}"), "only", settings);
    report.set("agent_env", agent::vars_json(&spec));
    let started = Instant::now();
    let mut agent = spec.start();
    let mut peak = PeakRss::new(agent.pid());
    let mut cpu = 0.0;
    let mut all_visible = None;
    let visible = || sim.catalog().row_count(TARGET_DB, TABLE).unwrap_or(0) as u64;
    let status = loop {
        peak.sample();
        // Read while the process lives: once reaped, /proc has nothing left.
        cpu = f64::max(cpu, cpu_seconds(agent.pid()));
        if all_visible.is_none() && visible() >= rows {
            all_visible = Some(started.elapsed());
        }
        if let Some(status) = agent.wait(Duration::ZERO) {
            break status;
        }
        if agent::is_streaming(&agent) {
            agent.kill9();
            report.outcome = Outcome::Skipped(
                "snapshot not available: the agent ignored STARWAL_SNAPSHOT=only and started \
                 streaming"
                    .to_owned(),
            );
            return Ok(());
        }
        if started.elapsed() > settings.timeout {
            let tail = agent::log_tail(&agent);
            agent.kill9();
            bail!(
                "the snapshot did not finish within {} s ({} of {rows} rows visible):\n{tail}",
                settings.timeout.as_secs(),
                visible()
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let elapsed = started.elapsed();
    // The agent's backends end with it; the postmaster reaps them into its children's times.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sim_cpu = sim_cpu_seconds() - sim_before;
    let postgres_cpu = postmaster
        .map(tree_cpu_seconds)
        .zip(postgres_before)
        .map(|(after, before)| after - before);
    if status.code() == Some(2) && names_snapshot_variable(&agent.log()) {
        report.outcome = Outcome::Skipped(format!(
            "snapshot not available: the agent rejected STARWAL_SNAPSHOT=only ({})",
            agent::log_tail(&agent).trim()
        ));
        return Ok(());
    }
    if !status.success() {
        bail!(
            "the agent exited with {status} during the snapshot:\n{}",
            agent::log_tail(&agent)
        );
    }
    let copied = visible();
    if copied != rows {
        bail!("the agent exited 0 with {copied} of {rows} rows in the target");
    }
    let agent_rows_per_second = rows as f64 / elapsed.as_secs_f64().max(1e-9);
    let ratio = agent_rows_per_second / copy_rows_per_second;
    report.set(
        "starwal",
        serde_json::json!({
            "seconds": elapsed.as_secs_f64(),
            "all_rows_visible_seconds": all_visible.map(|d| d.as_secs_f64()),
            "rows_per_second": agent_rows_per_second,
            "cpu_seconds": cpu,
            "cpu_seconds_per_million_rows": cpu * 1e6 / rows.max(1) as f64,
            "peak_rss_bytes": peak.peak_bytes,
        }),
    );
    report.set(
        "cpu_while_copying",
        serde_json::json!({
            "agent_s": cpu,
            "sim_s": sim_cpu,
            "postgres_s": postgres_cpu,
        }),
    );
    report.set("rows_per_second_vs_copy", serde_json::Value::from(ratio));
    let setting = |name: &str| {
        spec.get(name)
            .map_or_else(|| "agent default".to_owned(), str::to_owned)
    };
    report.sections.push(format!(
        "Initial copy of a 10-column table of {rows} rows ({} MiB): `starwal run` with \
         STARWAL_SNAPSHOT=only (workers: {}, chunk rows: {}) from spawn to exit 0, against one \
         `COPY (SELECT * FROM {TABLE}) TO STDOUT` read and discarded.\n\n\
         | reader | seconds | rows/s | agent CPU s | peak RSS MiB |\n|---|---|---|---|---|\n\
         | COPY TO STDOUT | {:.2} | {:.0} | – | – |\n\
         | starwal snapshot | {:.2} | {:.0} | {:.2} | {} |\n\n\
         starwal copies at {:.2} × the rate of raw COPY; agent CPU {:.2} s per million rows.\n\n\
         CPU seconds spent while the agent ran (2 cores shared): agent {:.2}, starrocks-sim {:.2}, \
         Postgres {}.\n",
        mib(table_bytes.max(0) as u64),
        setting("STARWAL_SNAPSHOT_WORKERS"),
        setting("STARWAL_SNAPSHOT_CHUNK_ROWS"),
        copy.as_secs_f64(),
        copy_rows_per_second,
        elapsed.as_secs_f64(),
        agent_rows_per_second,
        cpu,
        mib(peak.peak_bytes),
        ratio,
        cpu * 1e6 / rows.max(1) as f64,
        cpu,
        sim_cpu,
        postgres_cpu.map_or_else(|| "unknown".to_owned(), |s| format!("{s:.2}")),
    ));
    Ok(())
}

/// Whether a configuration error names `STARWAL_SNAPSHOT` itself (not `_WORKERS` or
/// `_CHUNK_ROWS`, whose bad values are the caller's mistake, not a missing feature).
fn names_snapshot_variable(log: &str) -> bool {
    log.match_indices("STARWAL_SNAPSHOT")
        .any(|(at, name)| !log[at + name.len()..].starts_with('_'))
}

/// Fields of `/proc/<pid>/stat` after the command (`state` is index 0).
fn stat_fields(path: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(
        rest.split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect(),
    )
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn parent_pid(pid: u32) -> Option<u32> {
    let ppid = *stat_fields(&format!("/proc/{pid}/stat"))?.get(1)?;
    u32::try_from(ppid).ok()
}

/// CPU seconds of `root` and its children, living (user + system) and reaped (the root's
/// children's times): a Postgres cluster's, through its postmaster.
fn tree_cpu_seconds(root: u32) -> f64 {
    let mut ticks = 0;
    if let Some(fields) = stat_fields(&format!("/proc/{root}/stat")) {
        ticks += fields.get(11..15).map_or(0, |t| t.iter().sum::<u64>());
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(fields) = stat_fields(&format!("/proc/{pid}/stat")) {
            if fields.get(1) == Some(&u64::from(root)) {
                ticks += fields.get(11..13).map_or(0, |t| t.iter().sum::<u64>());
            }
        }
    }
    ticks as f64 / ticks_per_second()
}

/// CPU seconds of this process's `starrocks-sim` threads (the sim's runtime).
fn sim_cpu_seconds() -> f64 {
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let task = entry.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim_end() != "starrocks-sim" {
            continue;
        }
        if let Some(fields) = stat_fields(&task.join("stat").to_string_lossy()) {
            ticks += fields.get(11..13).map_or(0, |t| t.iter().sum::<u64>());
        }
    }
    ticks as f64 / ticks_per_second()
}
