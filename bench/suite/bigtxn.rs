//! Scenario `bigtxn`: one large source transaction written while the agent streams (issue 14):
//! how long after its COMMIT all its rows are visible in StarRocks, whether a reader ever saw a
//! part of it, the agent's peak RSS against its buffer cap, and the CPU of the agent and of the
//! walsender serving it.
//!
//! Per size of `BENCH_BIGTXN_ROWS`, in a database of its own, with a fresh agent (so its
//! `VmHWM` is this transaction's peak): the agent loads `SEED_ROWS` seed rows first (the
//! "old value" a reader sees); then one transaction inserts the size's rows into the 10-column
//! table (or the 2-column one with `BENCH_BIGTXN_COLUMNS=2`: the in-process sim keeps every row,
//! and 10M 10-column rows do not fit its memory) in statements of `CHUNK_ROWS`, and commits. A thread reads the sim's row count every
//! `POLL` from the transaction's BEGIN until every row is visible, noting each change with its
//! time. Reported:
//!
//! - `commit_to_visible_s`: from the client's COMMIT returning until the count covers the whole
//!   transaction (with streaming, the rows are already in an open StarRocks transaction: what
//!   is left is prepare and commit; without, Postgres decodes the whole transaction only now);
//! - `begin_to_visible_s` and `writing_s` (BEGIN to COMMIT returning), for scale;
//! - `seen_before_commit`: the largest count a reader saw while the source transaction was
//!   open (anything above the seed count is a part visible before COMMIT), and
//!   `partial_counts_after_commit`: counts strictly between the old and the final one seen
//!   after it (the transaction became visible in parts). Both judged: whole at once is met;
//! - agent and walsender CPU seconds from BEGIN until visible; the agent's `VmHWM`;
//! - the slot's `pg_stat_replication_slots` deltas (PG 14+): what Postgres spilled to disk and
//!   what it streamed in progress for this transaction;
//! - the sim's committed loads and labels for the table over the transaction.
//!
//! The agent runs with the environment's `STARWAL_*` variables (and the mode's, with
//! `BENCH_MODES`); `STARWAL_MAX_BUFFER_BYTES` is the agent's default unless set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use starrocks_sim::Sim;
use tokio_postgres::Client;

use super::agent;
use super::cluster;
use super::harness::agent::{Agent, AgentSpec, TARGET_DB};
use super::harness::Cluster;
use super::machine;
use super::report::{mib, secs, Report};
use super::settings::Settings;
use super::workload;

/// Rows committed through the agent before the large transaction: the count a reader must keep
/// seeing until the source COMMIT.
const SEED_ROWS: u64 = 1_000;
/// Rows per INSERT statement inside the large transaction (the client is never the bottleneck,
/// and the sampler sees the transaction grow statement by statement in the server's WAL).
const CHUNK_ROWS: u64 = 100_000;
/// How often the agent's metrics are read (each read costs the agent a little CPU).
const METRICS_EVERY: Duration = Duration::from_millis(250);
/// How often the sampler reads the sim's row count (a counter read under the sim's lock).
const POLL: Duration = Duration::from_millis(5);
/// The 2-column table of `BENCH_BIGTXN_COLUMNS=2`.
const NARROW_COLUMNS: &str = "(id int8 PRIMARY KEY, v int8)";
/// Invariant 8: peak RSS at most the cap plus this.
const RSS_HEADROOM_BYTES: u64 = 32 * 1024 * 1024;

/// What one size measured.
#[derive(Debug, Default)]
struct Measured {
    rows: u64,
    writing: Duration,
    commit_to_visible: Option<Duration>,
    begin_to_visible: Option<Duration>,
    seen_before_commit: u64,
    partial_counts_after_commit: u64,
    agent_cpu_seconds: f64,
    walsender_cpu_seconds: Option<f64>,
    peak_rss_bytes: u64,
    /// `(spill_txns, spill_bytes, stream_txns, stream_bytes)` of the slot over the transaction.
    slot_stats: Option<(i64, i64, i64, i64)>,
    loads_committed: u64,
    labels_committed: u64,
    load_average: String,
    /// Seconds after COMMIT returned (negative: before) when the agent's open StarRocks
    /// transaction first held rows, and when it first held all it would.
    first_part_loaded: Option<f64>,
    all_parts_loaded: Option<f64>,
    /// From the first sample showing any of the transaction to the first showing all of it
    /// (0 when it appeared at once).
    parts_apart: Option<Duration>,
}

pub async fn run(settings: &Settings, report: &mut Report) -> Result<()> {
    let (cluster, sim) = cluster::start(report).await?;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    let mut failures = Vec::new();
    for &size in &settings.bigtxn_rows {
        eprintln!("bench: bigtxn {size} rows");
        let mut m = Measured {
            rows: size,
            ..Measured::default()
        };
        let outcome = measure(&cluster, &sim, settings, &mut m).await;
        if let Err(err) = &outcome {
            // A mode this agent lacks ends the scenario (skipped), not this size alone.
            if format!("{err:#}").contains(agent::MODE_UNAVAILABLE) {
                return outcome;
            }
            failures.push(format!("{size} rows: {err:#}"));
        }
        record(settings, report, &m, outcome.is_ok(), &mut rows, &mut json);
    }
    report.set("transactions", serde_json::Value::from(json));
    report.sections.push(format!(
        "One transaction of N {}-column rows over {} table(s) inserted while the agent streams \
         ({SEED_ROWS} rows per table committed before it); visible = the sim's row count (all \
         tables, one read) covers it.\n\n\
         | rows | writing s | COMMIT → visible s | agent's first part loaded s | all parts loaded s | \
         BEGIN → visible s | first → all of it visible s | seen before COMMIT | \
         partial counts after COMMIT | agent CPU s | agent CPU s / M rows | walsender CPU s | \
         peak RSS MiB | Postgres spilled MiB | Postgres streamed MiB | loads | labels | \
         load average |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n{}",
        settings.bigtxn_columns,
        settings.bigtxn_tables,
        rows.join("")
    ));
    report.notes.push(format!(
        "seen before COMMIT: the largest row count a reader of the sim saw while the source \
         transaction was open ({} = none of it); partial counts after COMMIT: samples (every {} \
         ms) strictly between the old and the final count; first → all of it visible: from the \
         first sample showing any of the transaction to the first showing all of it (with two \
         tables in table mode, the time a reader sees one table's part without the other's)",
        SEED_ROWS * settings.bigtxn_tables,
        POLL.as_millis()
    ));
    report.notes.push(format!(
        "agent's first part loaded / all parts loaded: seconds after COMMIT returned (negative: \
         before) when the agent's `starwal_transaction_rows` (or `_streamed_transaction_rows`) for the table, read every {} ms, \
         was first above 0 / first at its largest value (– when no part went into a StarRocks \
         transaction: the whole transaction fit one load)",
        METRICS_EVERY.as_millis()
    ));
    report.notes.push(
        "CPU from the transaction's BEGIN until it is visible; walsender = the backend serving \
         the agent's slot; Postgres spilled / streamed: pg_stat_replication_slots deltas of the \
         agent's slot (logical_decoding_work_mem = 64MB)"
            .to_owned(),
    );
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

async fn measure(
    cluster: &Cluster,
    sim: &Sim,
    settings: &Settings,
    m: &mut Measured,
) -> Result<()> {
    let size = m.rows;
    // Target tables of their own per size: the sim's tables are shared by the scenario's
    // databases.
    let name = format!("bigtxn_{size}");
    let tables: Vec<String> = if settings.bigtxn_tables == 2 {
        vec![format!("{name}_a"), format!("{name}_b")]
    } else {
        vec![name.clone()]
    };
    let db = cluster.create_database(&name).await;
    let client = db.owner_client().await;
    for table in &tables {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} {}",
                if settings.bigtxn_columns == 2 {
                    NARROW_COLUMNS
                } else {
                    workload::TEN_COLUMNS
                }
            ))
            .await
            .with_context(|| format!("create {table}"))?;
    }
    let list = tables
        .iter()
        .map(|t| format!("public.{t}"))
        .collect::<Vec<_>>()
        .join(",");
    let spec = agent::spec(&db, sim, &list, "never", settings);
    let (mut agent, _) = agent::start_streaming(&spec, settings.timeout).await?;
    let outcome = transaction(&client, sim, settings, &tables, &spec, &mut agent, m).await;
    let stopped = agent::stop(&mut agent);
    drop(agent);
    // Free what the size took (Postgres' WAL behind the slot, the sim's rows in this process)
    // before the next, larger one.
    let _ = client
        .execute(
            "SELECT pg_drop_replication_slot($1)",
            &[&spec.slot().to_owned()],
        )
        .await;
    for table in &tables {
        let _ = client.batch_execute(&format!("DROP TABLE {table}")).await;
        sim.catalog()
            .write(|c| c.drop_table(TARGET_DB, table, true))
            .ok();
    }
    outcome?;
    stopped.context("stopping the agent")
}

async fn transaction(
    client: &Client,
    sim: &Sim,
    settings: &Settings,
    tables: &[String],
    spec: &AgentSpec,
    agent: &mut Agent,
    m: &mut Measured,
) -> Result<()> {
    let size = m.rows;
    // Every table's count read under one lock: what one reader query sees.
    let count = || total_rows(&sim.catalog(), tables);
    let mut inserts = Vec::new();
    for table in tables {
        let insert = client
            .prepare(&if settings.bigtxn_columns == 2 {
                format!(
                    "INSERT INTO {table} SELECT g, g * 3 \
                     FROM generate_series($1::int8, $2::int8) g"
                )
            } else {
                workload::ten_column_insert(table)
            })
            .await
            .context("prepare the insert")?;
        client
            .execute(&insert, &[&1i64, &(SEED_ROWS as i64)])
            .await
            .context("insert the seed rows")?;
        inserts.push(insert);
    }
    let seeded = SEED_ROWS * tables.len() as u64;
    wait_for(agent, settings, || count() >= seeded)
        .await
        .context("loading the seed rows")?;

    let walsender: Option<u32> = client
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&spec.slot()],
        )
        .await
        .context("find the walsender")?
        .get::<_, Option<i32>>(0)
        .map(|pid| pid as u32);
    let stats_before = stats(client, spec.slot()).await;
    let counters_before = counters(sim, tables);
    let agent_pid = agent.pid();
    let agent_cpu_before = agent::cpu_seconds(agent_pid);
    let walsender_cpu_before = walsender.map(agent::cpu_seconds);
    m.load_average = machine::load_average();

    // The sampler: every change of the visible count, with when it was seen.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let catalog = sim.catalog();
        let stop = stop.clone();
        let tables = tables.to_vec();
        std::thread::spawn(move || {
            let mut seen: Vec<(u64, Instant)> = Vec::new();
            let mut last = u64::MAX;
            while !stop.load(Ordering::Relaxed) {
                let count = total_rows(&catalog, &tables);
                if count != last {
                    seen.push((count, Instant::now()));
                    last = count;
                }
                std::thread::sleep(POLL);
            }
            seen
        })
    };
    // The agent's view, every `METRICS_EVERY`: rows loaded into its open StarRocks transaction
    // (`starwal_transaction_rows`, or `starwal_streamed_transaction_rows` when it streams),
    // which splits COMMIT → visible into Postgres sending the transaction, the agent loading
    // its parts, and the StarRocks commit.
    let metrics = {
        let stop = stop.clone();
        let port = spec.metrics_port;
        let series: Vec<String> = tables
            .iter()
            .flat_map(|t| {
                [
                    "starwal_transaction_rows",
                    "starwal_streamed_transaction_rows",
                ]
                .map(|name| format!("{name}{{table=\"public.{t}\"}}"))
            })
            .collect();
        std::thread::spawn(move || {
            let mut samples: Vec<(Instant, f64)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(rows) = metric(port, &series) {
                    samples.push((Instant::now(), rows));
                }
                std::thread::sleep(METRICS_EVERY);
            }
            samples
        })
    };
    let finish = |stop: &AtomicBool| stop.store(true, Ordering::Relaxed);

    let begun = Instant::now();
    let written = async {
        client.batch_execute("BEGIN").await?;
        let mut next = SEED_ROWS + 1;
        let last = SEED_ROWS + size;
        // With several tables the statements take turns: ids stay unique in each table.
        for insert in inserts.iter().cycle() {
            if next > last {
                break;
            }
            let end = (next + CHUNK_ROWS - 1).min(last);
            client
                .execute(insert, &[&(next as i64), &(end as i64)])
                .await?;
            next = end + 1;
        }
        let commit_sent = Instant::now();
        client.batch_execute("COMMIT").await?;
        Ok::<_, tokio_postgres::Error>(commit_sent)
    }
    .await;
    let commit_sent = match written {
        Ok(at) => at,
        Err(err) => {
            finish(&stop);
            let _ = sampler.join();
            let _ = metrics.join();
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(err).context("write the large transaction");
        }
    };
    let committed = Instant::now();
    m.writing = committed - begun;

    let expected = seeded + size;
    let waited = wait_for(agent, settings, || count() >= expected).await;
    m.agent_cpu_seconds = agent::cpu_seconds(agent_pid) - agent_cpu_before;
    m.walsender_cpu_seconds = walsender
        .zip(walsender_cpu_before)
        .map(|(pid, before)| agent::cpu_seconds(pid) - before);
    m.peak_rss_bytes = agent::rss_high_water(agent_pid);
    finish(&stop);
    let seen = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the sampler thread panicked"))?;
    let agent_rows = metrics.join().unwrap_or_default();
    let since_commit = |at: Instant| {
        if at >= committed {
            (at - committed).as_secs_f64()
        } else {
            -(committed - at).as_secs_f64()
        }
    };
    m.first_part_loaded = agent_rows
        .iter()
        .find(|&&(_, rows)| rows > 0.0)
        .map(|&(at, _)| since_commit(at));
    let most = agent_rows.iter().map(|&(_, rows)| rows).fold(0.0, f64::max);
    m.all_parts_loaded = agent_rows
        .iter()
        .find(|&&(_, rows)| rows >= most && most > 0.0)
        .map(|&(at, _)| since_commit(at));
    let counters_after = counters(sim, tables);
    m.loads_committed = counters_after.0 - counters_before.0;
    m.labels_committed = counters_after.1 - counters_before.1;
    if let (Some(before), Some(after)) = (stats_before, stats(client, spec.slot()).await) {
        m.slot_stats = Some((
            after.0 - before.0,
            after.1 - before.1,
            after.2 - before.2,
            after.3 - before.3,
        ));
    }
    m.seen_before_commit = seen
        .iter()
        .filter(|&&(_, at)| at < commit_sent)
        .map(|&(count, _)| count)
        .max()
        .unwrap_or(0);
    m.partial_counts_after_commit = seen
        .iter()
        .filter(|&&(count, at)| at >= commit_sent && count > seeded && count < expected)
        .count() as u64;
    let visible_at = seen
        .iter()
        .find(|&&(count, _)| count >= expected)
        .map(|&(_, at)| at);
    // From the first sample showing any of the transaction to the first showing all of it.
    m.parts_apart = seen
        .iter()
        .find(|&&(count, _)| count > seeded)
        .map(|&(_, at)| at)
        .zip(visible_at)
        .map(|(first, all)| all.saturating_duration_since(first));
    waited.context("waiting for the transaction to be visible")?;
    let visible_at = visible_at.context("the sampler never saw the whole transaction")?;
    m.commit_to_visible = Some(visible_at.saturating_duration_since(committed));
    m.begin_to_visible = Some(visible_at.saturating_duration_since(begun));
    Ok(())
}

/// `(spill_txns, spill_bytes, stream_txns, stream_bytes)` of the slot; `None` before PG 14
/// (no `pg_stat_replication_slots`) or when the slot has no row yet.
async fn stats(client: &Client, slot: &str) -> Option<(i64, i64, i64, i64)> {
    let row = client
        .query_opt(
            "SELECT spill_txns, spill_bytes, stream_txns, stream_bytes \
             FROM pg_stat_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .ok()??;
    Some((row.get(0), row.get(1), row.get(2), row.get(3)))
}

/// Rows of `tables` in the target, read under one lock (0 for a table not there yet).
fn total_rows(catalog: &starrocks_sim::CatalogHandle, tables: &[String]) -> u64 {
    catalog.read(|c| {
        tables
            .iter()
            .map(|t| c.row_count(TARGET_DB, t).unwrap_or(0) as u64)
            .sum()
    })
}

/// Loads and labels the sim committed for `tables`, summed.
fn counters(sim: &Sim, tables: &[String]) -> (u64, u64) {
    tables.iter().fold((0, 0), |(loads, labels), t| {
        let c = sim.counters(TARGET_DB, t);
        (
            loads + c.loads_committed,
            labels + c.labels_committed.len() as u64,
        )
    })
}

/// The sum of `series` in the agent's Prometheus text at `port` (`None` when it does not
/// answer or prints none of them).
fn metric(port: u16, series: &[String]) -> Option<f64> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let values: Vec<f64> = series
        .iter()
        .filter_map(|series| {
            answer
                .lines()
                .find_map(|line| line.strip_prefix(series.as_str())?.strip_prefix(' '))
                .and_then(|value| value.trim().parse().ok())
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Waits until `done`, failing when the agent exits or the suite's timeout passes.
async fn wait_for(agent: &mut Agent, settings: &Settings, done: impl Fn() -> bool) -> Result<()> {
    let started = Instant::now();
    loop {
        if done() {
            return Ok(());
        }
        if !agent.is_running() {
            bail!("the agent exited:\n{}", agent::log_tail(agent));
        }
        if started.elapsed() > settings.timeout {
            bail!("not done within {} s", settings.timeout.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

fn record(
    settings: &Settings,
    report: &mut Report,
    m: &Measured,
    completed: bool,
    rows: &mut Vec<String>,
    json: &mut Vec<serde_json::Value>,
) {
    let opt = |d: Option<Duration>| d.map_or_else(|| "–".to_owned(), |d| secs(d.as_secs_f64()));
    let per_million = (completed && m.rows > 0).then(|| m.agent_cpu_seconds * 1e6 / m.rows as f64);
    let (spilled, streamed) = m.slot_stats.map_or((None, None), |(_, spill, _, stream)| {
        (Some(spill), Some(stream))
    });
    let mib_opt = |b: Option<i64>| b.map_or_else(|| "–".to_owned(), |b| mib(b.max(0) as u64));
    rows.push(format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        m.rows,
        secs(m.writing.as_secs_f64()),
        opt(m.commit_to_visible),
        m.first_part_loaded.map_or_else(|| "–".to_owned(), secs),
        m.all_parts_loaded.map_or_else(|| "–".to_owned(), secs),
        opt(m.begin_to_visible),
        opt(m.parts_apart),
        m.seen_before_commit,
        m.partial_counts_after_commit,
        secs(m.agent_cpu_seconds),
        per_million.map_or_else(|| "–".to_owned(), secs),
        m.walsender_cpu_seconds.map_or_else(|| "–".to_owned(), secs),
        mib(m.peak_rss_bytes),
        mib_opt(spilled),
        mib_opt(streamed),
        m.loads_committed,
        m.labels_committed,
        m.load_average,
    ));
    json.push(serde_json::json!({
        "rows": m.rows,
        "completed": completed,
        "seed_rows_per_table": SEED_ROWS,
        "columns": settings.bigtxn_columns,
        "tables": settings.bigtxn_tables,
        "first_to_all_visible_s": m.parts_apart.map(|d| d.as_secs_f64()),
        "writing_seconds": m.writing.as_secs_f64(),
        "commit_to_visible_s": m.commit_to_visible.map(|d| d.as_secs_f64()),
        "begin_to_visible_s": m.begin_to_visible.map(|d| d.as_secs_f64()),
        "first_part_loaded_after_commit_s": m.first_part_loaded,
        "all_parts_loaded_after_commit_s": m.all_parts_loaded,
        "seen_before_commit": m.seen_before_commit,
        "partial_counts_after_commit": m.partial_counts_after_commit,
        "agent_cpu_s": m.agent_cpu_seconds,
        "agent_cpu_s_per_million_rows": per_million,
        "walsender_cpu_s": m.walsender_cpu_seconds,
        "agent_peak_rss_bytes": m.peak_rss_bytes,
        "slot_spill_txns": m.slot_stats.map(|s| s.0),
        "slot_spill_bytes": m.slot_stats.map(|s| s.1),
        "slot_stream_txns": m.slot_stats.map(|s| s.2),
        "slot_stream_bytes": m.slot_stats.map(|s| s.3),
        "loads_committed": m.loads_committed,
        "labels_committed": m.labels_committed,
        "load_average_at_start": m.load_average,
    }));
    if !completed {
        return;
    }
    let limit = settings.max_buffer_bytes + RSS_HEADROOM_BYTES;
    report.target(
        format!("peak RSS, transaction of {} rows", m.rows),
        &format!("≤ STARWAL_MAX_BUFFER_BYTES + 32 MiB = {} MiB", mib(limit)),
        format!("{} MiB", mib(m.peak_rss_bytes)),
        Some(m.peak_rss_bytes <= limit),
    );
    let seeded = SEED_ROWS * settings.bigtxn_tables;
    let whole = m.seen_before_commit <= seeded && m.partial_counts_after_commit == 0;
    report.target(
        format!("visible whole at once, transaction of {} rows", m.rows),
        &format!("count {seeded} until COMMIT, then the final count with none between"),
        format!(
            "max {} before COMMIT, {} partial counts after",
            m.seen_before_commit, m.partial_counts_after_commit
        ),
        Some(whole),
    );
}
