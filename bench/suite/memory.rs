//! Scenario `memory`: the agent's peak resident memory against `STARWAL_MAX_BUFFER_BYTES` for
//! each workload shape of invariant 8, and what it keeps once idle after the burst.
//!
//! Per shape, in a database of its own, one agent: a backlog that is many times the cap is
//! written (while the agent is stopped, or while StarRocks is down for `outage`), the agent
//! drains it, and the peak is the kernel's high-water mark of the agent's resident set
//! (`VmHWM` in `/proc/<pid>/status`, so no sampling can miss a spike). Five seconds after the
//! target is level, the resident set is read again (`idle after`).
//!
//! | shape | backlog | cap |
//! |---|---|---|
//! | `tiny` | `BENCH_MEMORY_TXNS` one-row transactions | 32 MiB |
//! | `huge` | one transaction of `BENCH_MEMORY_ROWS` 10-column rows | 64 MiB |
//! | `outage` | StarRocks refuses connections for `BENCH_MEMORY_OUTAGE_S` while one-row transactions arrive at `BENCH_MEMORY_RATE` per second; then the catch-up | 32 MiB |
//! | `wide` | `BENCH_MEMORY_WIDE_ROWS` one-row transactions of a 1 MiB TOASTed text | 32 MiB |
//! | `tables` | `BENCH_MEMORY_TABLE_ROWS` transactions each inserting into all `BENCH_MEMORY_TABLES` tables | 32 MiB |
//!
//! `STARWAL_MAX_BUFFER_BYTES` in the environment replaces every shape's cap.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use starrocks_sim::{ServerFaults, ServerRole, Sim};
use tokio_postgres::Client;

use super::agent;
use super::cluster;
use super::harness::agent::{Agent, TARGET_DB};
use super::harness::Cluster;
use super::report::{mib, secs, Report};
use super::settings::{MemoryShape, Settings};
use super::workload;

const MIB: u64 = 1024 * 1024;
/// Invariant 8: peak RSS at most the cap plus this.
const HEADROOM: u64 = 32 * MIB;
/// How long after the drain the idle resident set is read.
const IDLE_AFTER: Duration = Duration::from_secs(5);

impl MemoryShape {
    /// The cap the shape runs with unless the environment sets one.
    fn default_cap(self) -> u64 {
        match self {
            MemoryShape::Huge => 64 * MIB,
            _ => 32 * MIB,
        }
    }

    fn description(self, settings: &Settings) -> String {
        let m = &settings.memory;
        match self {
            MemoryShape::Tiny => format!("{} one-row transactions", m.txns),
            MemoryShape::Huge => format!("one transaction of {} 10-column rows", m.rows),
            MemoryShape::Outage => format!(
                "{} s sink outage at {} one-row tx/s, then the catch-up",
                m.outage.as_secs(),
                m.rate
            ),
            MemoryShape::Wide => format!("{} rows of a 1 MiB TOASTed text", m.wide_rows),
            MemoryShape::Tables => format!(
                "{} tables, {} transactions each touching all",
                m.tables, m.table_rows
            ),
        }
    }
}

/// What one shape measured.
#[derive(Debug)]
struct Measured {
    cap: u64,
    changes: u64,
    drain: Duration,
    peak: u64,
    idle_after: u64,
}

fn status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

pub async fn run(settings: &Settings, report: &mut Report) -> Result<()> {
    let (cluster, sim) = cluster::start(report).await?;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    let mut failures = Vec::new();
    for &shape in &settings.memory.shapes {
        eprintln!("bench: memory {}", shape.name());
        let cap = if settings
            .agent_vars
            .iter()
            .any(|(k, _)| k == "STARWAL_MAX_BUFFER_BYTES")
        {
            settings.max_buffer_bytes
        } else {
            shape.default_cap()
        };
        match measure(&cluster, &sim, settings, shape, cap).await {
            Ok(m) => {
                let met = m.peak <= m.cap + HEADROOM;
                rows.push(format!(
                    "| {} | {} | {} | {} | {} | {:.2} | {} | {} |",
                    shape.name(),
                    shape.description(settings),
                    m.changes,
                    mib(m.cap),
                    mib(m.peak),
                    m.peak as f64 / m.cap as f64,
                    mib(m.idle_after),
                    secs(m.drain.as_secs_f64()),
                ));
                json.push(serde_json::json!({
                    "shape": shape.name(),
                    "description": shape.description(settings),
                    "changes": m.changes,
                    "cap_bytes": m.cap,
                    "peak_rss_bytes": m.peak,
                    "peak_over_cap": m.peak as f64 / m.cap as f64,
                    "idle_rss_after_bytes": m.idle_after,
                    "drain_seconds": m.drain.as_secs_f64(),
                }));
                report.target(
                    format!("peak RSS, {}", shape.name()),
                    "≤ cap + 32 MiB",
                    format!("{} MiB (cap {} MiB)", mib(m.peak), mib(m.cap)),
                    Some(met),
                );
            }
            Err(err) => {
                failures.push(format!("{}: {err:#}", shape.name()));
                report.target(
                    format!("peak RSS, {}", shape.name()),
                    "≤ cap + 32 MiB",
                    "failed".to_owned(),
                    None,
                );
            }
        }
    }
    report.set("shapes", serde_json::Value::from(json));
    report.sections.push(format!(
        "Peak resident memory (VmHWM) of the agent draining each shape's backlog; idle RSS \
         {} s after the drain.\n\n\
         | shape | backlog | changes | cap MiB | peak MiB | peak / cap | idle after MiB | drain s |\n\
         |---|---|---|---|---|---|---|---|\n{}\n",
        IDLE_AFTER.as_secs(),
        rows.join("\n")
    ));
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

async fn measure(
    cluster: &Cluster,
    sim: &Sim,
    settings: &Settings,
    shape: MemoryShape,
    cap: u64,
) -> Result<Measured> {
    let db = cluster
        .create_database(&format!("mem_{}", shape.name()))
        .await;
    let client = db.owner_client().await;
    let m = &settings.memory;
    let tables: Vec<String> = match shape {
        MemoryShape::Tables => (1..=m.tables).map(|n| format!("t{n:03}")).collect(),
        _ => vec!["t".to_owned()],
    };
    let ddl = match shape {
        MemoryShape::Huge => format!("CREATE TABLE t {}", workload::TEN_COLUMNS),
        MemoryShape::Wide => "CREATE TABLE t (id int8 PRIMARY KEY, big text)".to_owned(),
        _ => tables
            .iter()
            .map(|t| format!("CREATE TABLE {t} (id int8 PRIMARY KEY, v text);"))
            .collect(),
    };
    client.batch_execute(&ddl).await.context("create tables")?;
    let list = tables
        .iter()
        .map(|t| format!("public.{t}"))
        .collect::<Vec<_>>()
        .join(",");
    let spec = agent::spec(&db, sim, &list, "never", settings)
        .var("STARWAL_MAX_BUFFER_BYTES", &cap.to_string());
    // Started once: the slot exists before the backlog, so the backlog is streamed.
    let (mut first, _) = agent::start_streaming(&spec, settings.timeout).await?;
    let result = match shape {
        MemoryShape::Outage => outage(&client, sim, settings, &mut first).await,
        _ => {
            agent::stop(&mut first)?;
            let changes = backlog(&client, settings, shape, &tables).await?;
            let (mut agent, _) = agent::start_streaming(&spec, settings.timeout).await?;
            let started = Instant::now();
            wait_level(
                sim,
                &tables,
                changes / tables.len() as u64,
                settings,
                &mut agent,
            )
            .await?;
            let drain = started.elapsed();
            let peak = status_bytes(agent.pid(), "VmHWM");
            tokio::time::sleep(IDLE_AFTER).await;
            let idle_after = status_bytes(agent.pid(), "VmRSS");
            agent::stop(&mut agent)?;
            Ok(Measured {
                cap,
                changes,
                drain,
                peak,
                idle_after,
            })
        }
    };
    // The slot is not needed any more: no WAL retained behind it for the next shape.
    let _ = client
        .execute(
            "SELECT pg_drop_replication_slot($1)",
            &[&spec.slot().to_owned()],
        )
        .await;
    result.map(|m| Measured { cap, ..m })
}

/// One-row transactions inserting ids `from..from + count` (a DO block committing each).
fn one_row_transactions(table: &str, from: u64, count: u64) -> String {
    format!(
        "DO $$ BEGIN FOR i IN {from}..{} LOOP \
           INSERT INTO {table} VALUES (i, md5(i::text)); COMMIT; \
         END LOOP; END $$",
        from + count - 1
    )
}

/// Writes the shape's backlog; returns the rows written over all tables.
async fn backlog(
    client: &Client,
    settings: &Settings,
    shape: MemoryShape,
    tables: &[String],
) -> Result<u64> {
    let m = &settings.memory;
    match shape {
        MemoryShape::Tiny => {
            client
                .batch_execute(&one_row_transactions("t", 1, m.txns))
                .await?;
            Ok(m.txns)
        }
        MemoryShape::Huge => {
            client
                .execute(
                    &workload::ten_column_insert("t"),
                    &[&1i64, &(m.rows as i64)],
                )
                .await?;
            Ok(m.rows)
        }
        MemoryShape::Wide => {
            client
                .batch_execute(
                    "CREATE TEMP TABLE one_mib AS \
                     SELECT string_agg(md5(g::text), '') AS v FROM generate_series(1, 32768) g",
                )
                .await?;
            client
                .batch_execute(&format!(
                    "DO $$ BEGIN FOR i IN 1..{} LOOP \
                       INSERT INTO t SELECT i, overlay(v placing md5(i::text) from 1) \
                       FROM one_mib; COMMIT; \
                     END LOOP; END $$",
                    m.wide_rows
                ))
                .await?;
            Ok(m.wide_rows)
        }
        MemoryShape::Tables => {
            let inserts: String = tables
                .iter()
                .map(|t| format!("INSERT INTO {t} VALUES (i, md5(i::text)); "))
                .collect();
            client
                .batch_execute(&format!(
                    "DO $$ BEGIN FOR i IN 1..{} LOOP {inserts} COMMIT; END LOOP; END $$",
                    m.table_rows
                ))
                .await?;
            Ok(m.table_rows * tables.len() as u64)
        }
        MemoryShape::Outage => bail!("the outage shape writes while the agent runs"),
    }
}

/// StarRocks down for the outage while one-row transactions arrive, then the catch-up.
async fn outage(
    client: &Client,
    sim: &Sim,
    settings: &Settings,
    agent: &mut Agent,
) -> Result<Measured> {
    let m = &settings.memory;
    let down = ServerFaults {
        refuse_connections: true,
        ..ServerFaults::default()
    };
    sim.faults().set_server(ServerRole::Fe, down);
    sim.faults().set_server(ServerRole::Be, down);
    let per_tick = (m.rate / 10).max(1);
    let started = Instant::now();
    let mut next = 1;
    let mut tick = 0u32;
    while started.elapsed() < m.outage {
        client
            .batch_execute(&one_row_transactions("t", next, per_tick))
            .await?;
        next += per_tick;
        tick += 1;
        if let Some(wait) = (Duration::from_millis(100) * tick).checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if !agent.is_running() {
            bail!(
                "the agent exited during the outage:\n{}",
                agent::log_tail(agent)
            );
        }
    }
    sim.faults()
        .set_server(ServerRole::Fe, ServerFaults::default());
    sim.faults()
        .set_server(ServerRole::Be, ServerFaults::default());
    let caught_up = Instant::now();
    let changes = next - 1;
    wait_level(sim, &["t".to_owned()], changes, settings, agent).await?;
    let drain = caught_up.elapsed();
    let peak = status_bytes(agent.pid(), "VmHWM");
    tokio::time::sleep(IDLE_AFTER).await;
    let idle_after = status_bytes(agent.pid(), "VmRSS");
    agent::stop(agent)?;
    Ok(Measured {
        cap: 0,
        changes,
        drain,
        peak,
        idle_after,
    })
}

/// Waits until every table has `rows` rows in the target.
async fn wait_level(
    sim: &Sim,
    tables: &[String],
    rows: u64,
    settings: &Settings,
    agent: &mut Agent,
) -> Result<()> {
    let started = Instant::now();
    let count = |table: &str| {
        sim.catalog()
            .read(|c| c.row_count(TARGET_DB, table).unwrap_or(0)) as u64
    };
    loop {
        if tables.iter().all(|t| count(t) >= rows) {
            return Ok(());
        }
        if !agent.is_running() {
            bail!(
                "the agent exited while draining:\n{}",
                agent::log_tail(agent)
            );
        }
        if started.elapsed() > settings.timeout {
            bail!(
                "the target did not reach {rows} rows per table within {} s",
                settings.timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
