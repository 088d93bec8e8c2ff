//! Scenario `sustained`: a streaming agent under fixed insert rates into a 10-column table —
//! commit-to-visible lag, agent CPU per million changes, peak RSS.
//!
//! Each rate runs for `BENCH_DURATION_S` against the same agent and table, one after the other.
//! A fixed rate commits one transaction of `rate / 10` rows every 100 ms (missed ticks are caught
//! up, so the average rate holds); `max` commits `BENCH_TXN_ROWS`-row transactions back to back.
//! Lag is measured per transaction as in `benches/cdc.rs`: from the client's COMMIT returning to
//! the first moment the sim's row count covers the transaction (a thread polls it every 2 ms;
//! ids are dense from 1, so the count is the last visible id). CPU is the agent's (and the
//! walsender's) from the phase's first insert until its last row is visible, per million rows.
//!
//! The agent runs with a 100 ms flush interval unless `STARWAL_FLUSH_INTERVAL_MS` is set: the
//! default 1 s would make the lag measure mostly the timer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::agent::{self, cpu_seconds, percentile, rss};
use super::cluster;
use super::harness::agent::TARGET_DB;
use super::machine;
use super::report::{mib, secs, Report};
use super::settings::{Rate, Settings};
use super::workload;

const TABLE: &str = "sustained";
const TICK: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(2);
/// The target for 10-column changes.
const MAX_CPU_SECONDS_PER_MILLION: f64 = 3.0;
/// The flush interval the scenario sets when the environment does not.
const FLUSH_INTERVAL_MS: &str = "100";
/// The freshness target: lag p99 at most the flush interval plus this.
const LAG_P99_OVER_INTERVAL: Duration = Duration::from_millis(200);

/// What one rate measured.
#[derive(Debug)]
struct Phase {
    rate: Rate,
    rows: u64,
    txns: u64,
    writing: Duration,
    catch_up: Duration,
    lags: Vec<Duration>,
    agent_cpu_seconds: f64,
    walsender_cpu_seconds: Option<f64>,
    peak_rss_bytes: u64,
    /// Stream Loads the sim committed for the table during the phase.
    loads: u64,
    /// `/proc/loadavg` when the phase started.
    load_average: String,
}

pub async fn run(settings: &Settings, report: &mut Report) -> Result<()> {
    let (cluster, sim) = cluster::start(report).await?;
    let db = cluster.create_database(TABLE).await;
    let client = db.owner_client().await;
    client
        .batch_execute(&format!("CREATE TABLE {TABLE} {}", workload::TEN_COLUMNS))
        .await
        .context("create the table")?;
    let mut spec = agent::spec(&db, &sim, &format!("public.{TABLE}"), "never", settings);
    if spec.get("STARWAL_FLUSH_INTERVAL_MS").is_none() {
        spec = spec.var("STARWAL_FLUSH_INTERVAL_MS", FLUSH_INTERVAL_MS);
    }
    report.set("agent_env", agent::vars_json(&spec));
    let interval = Duration::from_millis(
        spec.get("STARWAL_FLUSH_INTERVAL_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(starwal::config::DEFAULT_FLUSH_INTERVAL_MS),
    );
    let (mut agent, _) = agent::start_streaming(&spec, settings.timeout).await?;
    let walsender: Option<i32> = client
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&spec.slot()],
        )
        .await
        .context("find the walsender")?
        .get(0);
    let walsender = walsender.map(|pid| pid as u32);
    let insert = client
        .prepare(&workload::ten_column_insert(TABLE))
        .await
        .context("prepare the insert")?;

    let mut phases = Vec::new();
    let mut next_id = 1u64;
    let outcome = async {
        for &rate in &settings.rates {
            eprintln!("bench: sustained {} rows/s", rate.label());
            let pid = agent.pid();
            let cpu_start = cpu_seconds(pid);
            let walsender_start = walsender.map(cpu_seconds);
            let load_average = machine::load_average();
            let loads_start = sim.counters(TARGET_DB, TABLE).loads_committed;
            let stop = Arc::new(AtomicBool::new(false));
            let poller = {
                let catalog = sim.catalog();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut seen: Vec<(u64, Instant)> = Vec::new();
                    let mut peak = 0u64;
                    let mut last = u64::MAX;
                    let mut polls = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let count = catalog.row_count(TARGET_DB, TABLE).unwrap_or(0) as u64;
                        if count != last {
                            seen.push((count, Instant::now()));
                            last = count;
                        }
                        if polls.is_multiple_of(10) {
                            peak = peak.max(rss(pid));
                        }
                        polls += 1;
                        std::thread::sleep(POLL);
                    }
                    (seen, peak)
                })
            };

            let first_id = next_id;
            let mut commits: Vec<(u64, Instant)> = Vec::new();
            let started = Instant::now();
            match rate {
                Rate::RowsPerSecond(per_second) => {
                    let (tick, rows) = if per_second >= 10 {
                        (TICK, per_second / 10)
                    } else {
                        (Duration::from_secs(1) / per_second as u32, 1)
                    };
                    let mut interval = tokio::time::interval(tick);
                    while started.elapsed() < settings.sustained_duration {
                        interval.tick().await;
                        insert_rows(&client, &insert, &mut next_id, rows, &mut commits).await?;
                    }
                }
                Rate::Max => {
                    while started.elapsed() < settings.sustained_duration {
                        insert_rows(
                            &client,
                            &insert,
                            &mut next_id,
                            settings.txn_rows,
                            &mut commits,
                        )
                        .await?;
                    }
                }
            }
            let writing = started.elapsed();
            let last_id = next_id - 1;
            let written_at = Instant::now();
            loop {
                if sim.catalog().row_count(TARGET_DB, TABLE).unwrap_or(0) as u64 >= last_id {
                    break;
                }
                if !agent.is_running() {
                    stop.store(true, Ordering::Relaxed);
                    bail!("the agent exited:\n{}", agent::log_tail(&agent));
                }
                if written_at.elapsed() > settings.timeout {
                    stop.store(true, Ordering::Relaxed);
                    bail!(
                        "rows written at {} rows/s were not all visible {} s later",
                        rate.label(),
                        settings.timeout.as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let catch_up = written_at.elapsed();
            let agent_cpu_seconds = cpu_seconds(pid) - cpu_start;
            let loads = sim.counters(TARGET_DB, TABLE).loads_committed - loads_start;
            let walsender_cpu_seconds = walsender
                .zip(walsender_start)
                .map(|(pid, start)| cpu_seconds(pid) - start);
            stop.store(true, Ordering::Relaxed);
            let (seen, peak_rss_bytes) = poller
                .join()
                .map_err(|_| anyhow::anyhow!("the poller thread panicked"))?;
            let mut lags: Vec<Duration> = commits
                .iter()
                .filter_map(|&(last, committed)| {
                    let index = seen.partition_point(|&(count, _)| count < last);
                    seen.get(index)
                        .map(|&(_, at)| at.saturating_duration_since(committed))
                })
                .collect();
            lags.sort();
            phases.push(Phase {
                rate,
                rows: next_id - first_id,
                txns: commits.len() as u64,
                writing,
                catch_up,
                lags,
                agent_cpu_seconds,
                walsender_cpu_seconds,
                peak_rss_bytes,
                loads,
                load_average,
            });
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    let stopped = agent::stop(&mut agent);
    record(report, &phases, interval);
    outcome?;
    stopped
}

/// Inserts the next `rows` ids in one transaction and notes when its COMMIT returned.
async fn insert_rows(
    client: &tokio_postgres::Client,
    insert: &tokio_postgres::Statement,
    next_id: &mut u64,
    rows: u64,
    commits: &mut Vec<(u64, Instant)>,
) -> Result<()> {
    let last = *next_id + rows - 1;
    client
        .execute(insert, &[&(*next_id as i64), &(last as i64)])
        .await
        .context("insert")?;
    commits.push((last, Instant::now()));
    *next_id = last + 1;
    Ok(())
}

fn record(report: &mut Report, phases: &[Phase], interval: Duration) {
    let mut rows = String::new();
    let mut json = Vec::new();
    for p in phases {
        let per_million = if p.rows > 0 {
            Some(p.agent_cpu_seconds * 1e6 / p.rows as f64)
        } else {
            None
        };
        let walsender_per_million = p
            .walsender_cpu_seconds
            .filter(|_| p.rows > 0)
            .map(|c| c * 1e6 / p.rows as f64);
        let achieved = p.rows as f64 / p.writing.as_secs_f64().max(1e-9);
        let agent_to_walsender = p
            .walsender_cpu_seconds
            .filter(|w| *w > 0.0)
            .map(|w| p.agent_cpu_seconds / w);
        let cpu_ms_per_load = (p.loads > 0).then(|| p.agent_cpu_seconds * 1e3 / p.loads as f64);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let p50 = percentile(&p.lags, 0.5);
        let p99 = percentile(&p.lags, 0.99);
        let max = p.lags.last().copied().unwrap_or_default();
        rows.push_str(&format!(
            "| {} | {:.0} | {} | {:.2} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} |\n",
            p.rate.label(),
            achieved,
            p.rows,
            p.catch_up.as_secs_f64(),
            ms(p50),
            ms(p99),
            ms(max),
            per_million.map_or_else(|| "–".to_owned(), secs),
            walsender_per_million.map_or_else(|| "–".to_owned(), secs),
            agent_to_walsender.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}")),
            p.loads,
            cpu_ms_per_load.map_or_else(|| "–".to_owned(), |c| format!("{c:.2}")),
            mib(p.peak_rss_bytes),
            p.load_average,
        ));
        json.push(serde_json::json!({
            "rate": p.rate.label(),
            "rows": p.rows,
            "transactions": p.txns,
            "writing_seconds": p.writing.as_secs_f64(),
            "achieved_rows_per_second": achieved,
            "catch_up_seconds": p.catch_up.as_secs_f64(),
            "lag_ms": {
                "p50": ms(p50),
                "p99": ms(p99),
                "max": ms(max),
                "transactions_measured": p.lags.len(),
            },
            "agent_cpu_seconds": p.agent_cpu_seconds,
            "agent_cpu_seconds_per_million_changes": per_million,
            "walsender_cpu_seconds": p.walsender_cpu_seconds,
            "walsender_cpu_seconds_per_million_changes": walsender_per_million,
            "agent_peak_rss_bytes": p.peak_rss_bytes,
            "agent_cpu_s": p.agent_cpu_seconds,
            "walsender_cpu_s": p.walsender_cpu_seconds,
            "agent_to_walsender_cpu": agent_to_walsender,
            "loads": p.loads,
            "agent_cpu_ms_per_load": cpu_ms_per_load,
            "flush_interval_ms": interval.as_millis() as u64,
            "load_average_at_start": p.load_average,
        }));
        if let Rate::RowsPerSecond(_) = p.rate {
            let limit = interval + LAG_P99_OVER_INTERVAL;
            report.target(
                format!("lag p99, {} rows/s", p.rate.label()),
                &format!(
                    "≤ STARWAL_FLUSH_INTERVAL_MS + 200 ms = {} ms",
                    limit.as_millis()
                ),
                format!("{:.0} ms", ms(p99)),
                Some(p99 <= limit),
            );
        }
        report.target(
            format!(
                "agent CPU per million 10-column changes, {} rows/s",
                p.rate.label()
            ),
            &format!("≤ {MAX_CPU_SECONDS_PER_MILLION} s"),
            per_million.map_or_else(|| "–".to_owned(), |c| format!("{} s", secs(c))),
            per_million.map(|c| c <= MAX_CPU_SECONDS_PER_MILLION),
        );
    }
    report.set("rates", serde_json::Value::from(json));
    report.sections.push(format!(
        "Sustained inserts into a 10-column table, each rate for its duration; lag from COMMIT \
         returning to the rows being visible in the sim.\n\n\
         | rate (rows/s) | achieved rows/s | rows | catch-up s | lag p50 ms | lag p99 ms | \
         lag max ms | agent CPU s / M rows | walsender CPU s / M rows | agent / walsender CPU | \
         loads | agent CPU ms / load | peak RSS MiB | load average |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n{rows}\n\
         Flush interval: {} ms. Loads are the Stream Loads the sim committed in the phase; \
         agent CPU per load is the phase's agent CPU over them (at low rates the fixed cost of \
         a load dominates).",
        interval.as_millis()
    ));
}
