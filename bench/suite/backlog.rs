//! Scenario `backlog`: how long the agent takes to drain a backlog of changes written while it
//! was stopped, against `pg_recvlogical` reading the same backlog (see `recvlogical`).
//!
//! Per workload, in a database of its own: the agent starts once (creating its slot and
//! publication, and the target table), loads the workload's seed rows if it has any, and stops
//! with SIGTERM. Then `pg_recvlogical`'s slot is created, the backlog is written, and the WAL
//! position after it becomes `--endpos`. `pg_recvlogical` reads first, alone; then the agent
//! starts again, alone, and its time runs from spawning the process until the target's
//! fingerprint (see `workload`) equals the source's — startup included, reported apart too.
//! The agent's slot and `pg_recvlogical`'s are dropped afterwards so the next workload's WAL is
//! not retained behind them.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use starrocks_sim::Sim;
use tokio_postgres::Client;

use super::agent::{self, PeakRss};
use super::cluster;
use super::harness::agent::Agent;
use super::harness::Cluster;
use super::machine;
use super::recvlogical;
use super::report::{mib, secs, Report};
use super::settings::{Settings, Workload};
use super::workload::{self, Fingerprint, Shape, Written};

/// The target: drain time at most this many times `pg_recvlogical`'s.
const MAX_RATIO: f64 = 1.5;
/// The target: agent CPU at most this share of the walsender's (mixed workload).
const MAX_AGENT_TO_WALSENDER_CPU: f64 = 0.25;
/// The target: drain time at most this many times the walsender's CPU seconds (the
/// agent never makes Postgres wait).
const MAX_DRAIN_TO_WALSENDER_BUSY: f64 = 1.1;
/// The target for 10-column changes.
const MAX_CPU_SECONDS_PER_MILLION: f64 = 3.0;
/// The target: peak RSS on the one transaction within the buffer limit plus this.
const RSS_HEADROOM_BYTES: u64 = 32 * 1024 * 1024;
/// How often the target is checked while the agent drains.
const POLL: Duration = Duration::from_millis(10);
/// How often, at most, the target's fingerprint is computed (it scans the table).
const FINGERPRINT_EVERY: Duration = Duration::from_millis(50);
/// The fingerprint scan holds the in-process sim's state lock (it decodes every row, each
/// `toast` row with its 2.5 kB text), and every Stream Load the sim commits waits for that lock:
/// scans are spaced so they hold it at most 1 / (1 + this) of the time. Unpaced, a `toast` backlog
/// (whose row count is level from the start, so it scans throughout) drained several times slower
/// the larger its table.
const FINGERPRINT_IDLE_PER_SCAN: u32 = 9;

/// What one workload measured.
#[derive(Debug, Default)]
struct Measured {
    written: Written,
    seed_rows: u64,
    generate: Duration,
    wal_bytes: u64,
    toast_relation_bytes: Option<i64>,
    recv: Option<Result<Duration, String>>,
    drain: Option<Drain>,
    /// The agent's variables (without secrets).
    agent_env: Option<serde_json::Value>,
}

/// The agent's drain of one backlog.
#[derive(Debug)]
struct Drain {
    elapsed: Duration,
    startup: Option<Duration>,
    cpu_seconds: f64,
    /// CPU seconds of the walsender serving the agent, over its whole life (it starts with the
    /// agent's replication connection): the real limit, what Postgres spends decoding the
    /// backlog. `None` when its pid was not seen.
    walsender_cpu_seconds: Option<f64>,
    peak_rss_bytes: u64,
    /// `/proc/loadavg` when the drain started.
    load_average: String,
}

impl Workload {
    fn shape(self) -> Shape {
        match self {
            Workload::Narrow => workload::NARROW,
            Workload::Mixed => workload::MIXED,
            Workload::Toast => workload::TOAST,
            Workload::OneTxn => workload::ONETXN,
        }
    }

    fn columns(self) -> u32 {
        match self {
            Workload::Narrow => 2,
            Workload::Mixed | Workload::OneTxn => 10,
            Workload::Toast => 3,
        }
    }

    fn description(self) -> &'static str {
        match self {
            Workload::Narrow => "inserts, 2 columns",
            Workload::Mixed => "20% delete / 30% update / 50% insert, 10 columns",
            Workload::Toast => "updates, half of them changing a 2.5 kB out-of-line TOAST value",
            Workload::OneTxn => "one transaction of inserts, 10 columns",
        }
    }
}

pub async fn run(settings: &Settings, report: &mut Report) -> Result<()> {
    let (cluster, sim) = cluster::start(report).await?;
    let recv_binary = recvlogical::find(cluster.pgbin());
    match &recv_binary {
        Ok(binary) => report.set(
            "pg_recvlogical",
            serde_json::Value::from(binary.display().to_string()),
        ),
        Err(missing) => report
            .notes
            .push(format!("no pg_recvlogical comparison: {missing}")),
    }
    let mut rows = Vec::new();
    let mut json = Vec::new();
    let mut failures = Vec::new();
    for &workload in &settings.workloads {
        eprintln!("bench: backlog {}", workload.name());
        let mut measured = Measured::default();
        let outcome = measure(
            &cluster,
            &sim,
            settings,
            workload,
            recv_binary.as_deref().ok(),
            &mut measured,
        )
        .await;
        let error = outcome.err().map(|e| format!("{e:#}"));
        if let Some(error) = &error {
            failures.push(format!("{}: {error}", workload.name()));
        }
        record(
            settings,
            report,
            workload,
            &measured,
            error.as_deref(),
            &mut rows,
            &mut json,
        );
    }
    report.set("workloads", serde_json::Value::from(json));
    report.sections.push(format!(
        "Backlog drain: {} changes per workload written while the agent was stopped; seconds \
         until the target is level (starwal) or the stream is read to its end \
         (pg_recvlogical, output to /dev/null).\n\n\
         | workload | changes | txns | WAL MiB | pg_recvlogical s | starwal s | ratio | \
         starwal startup s | agent CPU s | CPU s / M changes | walsender CPU s | agent / \
         walsender CPU | drain s / walsender CPU s | peak RSS MiB | load average |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n{}",
        settings.backlog_changes,
        rows.join("")
    ));
    report.notes.push(
        "walsender CPU s: user + system seconds of the walsender serving the agent's drain, \
         its whole life (it starts with the agent's replication connection), read when the \
         target is level — the real limit: Postgres decoding the backlog; drain s / walsender \
         CPU s near 1 means the agent kept the walsender busy all the time"
            .to_owned(),
    );
    report.notes.push(
        "pg_recvlogical reads first, then starwal, each alone; starwal's time runs from \
         spawning `starwal run` to the target being level (row count and column sums equal), \
         its startup included"
            .to_owned(),
    );
    report.notes.push(format!(
        "the agent sends a batch at STARWAL_FLUSH_ROWS changes or when its oldest change is \
         STARWAL_FLUSH_INTERVAL_MS old (agent defaults unless set: {} rows, {} ms): the last \
         batch of a drain waits for that timer, which dominates small backlogs",
        settings
            .agent_vars
            .iter()
            .find(|(k, _)| k == "STARWAL_FLUSH_ROWS")
            .map_or(starwal::config::DEFAULT_FLUSH_ROWS.to_string(), |(_, v)| v
                .clone()),
        settings
            .agent_vars
            .iter()
            .find(|(k, _)| k == "STARWAL_FLUSH_INTERVAL_MS")
            .map_or(
                starwal::config::DEFAULT_FLUSH_INTERVAL_MS.to_string(),
                |(_, v)| v.clone()
            ),
    ));
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// One workload, filling `measured` as it goes (so a failure keeps what was measured).
async fn measure(
    cluster: &Cluster,
    sim: &Sim,
    settings: &Settings,
    workload: Workload,
    recv_binary: Option<&std::path::Path>,
    measured: &mut Measured,
) -> Result<()> {
    let shape = workload.shape();
    let db = cluster.create_database(workload.name()).await;
    let mut client = db.owner_client().await;
    let ddl = match workload {
        Workload::Narrow => workload::NARROW_DDL.to_owned(),
        Workload::Toast => workload::TOAST_DDL.to_owned(),
        Workload::Mixed | Workload::OneTxn => {
            format!("CREATE TABLE {} {}", shape.table, workload::TEN_COLUMNS)
        }
    };
    client
        .batch_execute(&ddl)
        .await
        .context("create the table")?;
    let spec = agent::spec(
        &db,
        sim,
        &format!("public.{}", shape.table),
        "never",
        settings,
    );
    measured.agent_env = Some(agent::vars_json(&spec));

    // The agent's first run: slot, publication, target table, seed rows.
    let (mut first, _) = agent::start_streaming(&spec, settings.timeout).await?;
    let seed = match workload {
        Workload::Mixed => Some((
            workload::ten_column_insert("mixed"),
            settings.mixed_seed_rows,
        )),
        Workload::Toast => Some((workload::TOAST_INSERT.to_owned(), settings.toast_rows)),
        Workload::Narrow | Workload::OneTxn => None,
    };
    if let Some((insert, seed_rows)) = seed {
        workload::insert_range(&client, &insert, 1, seed_rows, settings.txn_rows).await?;
        measured.seed_rows = seed_rows;
        let expected = shape.source(&client).await?;
        wait_level(&mut first, sim, shape, expected, settings.timeout)
            .await
            .context("loading the seed rows")?;
    }
    if workload == Workload::Toast {
        let bytes: i64 = client
            .query_one(
                "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'toast'::regclass",
                &[],
            )
            .await?
            .get(0);
        measured.toast_relation_bytes = Some(bytes);
    }
    agent::stop(&mut first).context("stopping the agent's first run")?;
    drop(first);

    // pg_recvlogical's slot at the same point, then the backlog.
    let recv_slot = format!("recv_{}", spec.slot());
    let publication = spec
        .get("STARWAL_PUBLICATION")
        .unwrap_or_default()
        .to_owned();
    if recv_binary.is_some() {
        recvlogical::create_slot(&client, &recv_slot).await?;
    }
    let wal_start = wal_position(&client).await?;
    let started = Instant::now();
    measured.written = match workload {
        Workload::Narrow => {
            workload::insert_range(
                &client,
                workload::NARROW_INSERT,
                1,
                settings.backlog_changes,
                settings.txn_rows,
            )
            .await?
        }
        Workload::Mixed => {
            workload::mixed_backlog(
                &mut client,
                settings.mixed_seed_rows,
                settings.backlog_changes,
                settings.txn_rows,
            )
            .await?
        }
        Workload::Toast => {
            workload::toast_backlog(
                &mut client,
                settings.toast_rows,
                settings.backlog_changes,
                settings.txn_rows,
            )
            .await?
        }
        Workload::OneTxn => {
            workload::insert_range(
                &client,
                &workload::ten_column_insert("onetxn"),
                1,
                settings.backlog_changes,
                settings.backlog_changes.max(1),
            )
            .await?
        }
    };
    measured.generate = started.elapsed();
    let endpos = wal_position(&client).await?;
    measured.wal_bytes = client
        .query_one(
            "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::int8",
            &[&endpos, &wal_start],
        )
        .await?
        .get::<_, i64>(0)
        .max(0) as u64;
    let expected = shape.source(&client).await?;

    if let Some(binary) = recv_binary {
        measured.recv = Some(
            recvlogical::read_to(
                binary,
                &db,
                &recv_slot,
                &publication,
                &endpos,
                settings.timeout,
            )
            .await
            .map_err(|e| format!("{e:#}")),
        );
    }

    // The measured drain.
    let started = Instant::now();
    let mut agent = spec.start();
    let drain = drain(
        &mut agent,
        sim,
        shape,
        expected,
        started,
        settings.timeout,
        Some((&client, spec.slot())),
    )
    .await;
    let stopped = agent::stop(&mut agent);
    drop(agent);
    measured.drain = Some(drain?);
    stopped.context("stopping the agent after the drain")?;

    for slot in [spec.slot(), recv_slot.as_str()] {
        let _ = client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&slot],
            )
            .await;
    }
    Ok(())
}

/// Waits for the target to be level with `expected`, sampling the agent; times from `started`.
/// With `walsender` (a client and the agent's slot), the walsender serving the agent is found
/// while it drains and its CPU seconds are read when the target is level.
async fn drain(
    agent: &mut Agent,
    sim: &Sim,
    shape: Shape,
    expected: Fingerprint,
    started: Instant,
    timeout: Duration,
    walsender: Option<(&Client, &str)>,
) -> Result<Drain> {
    let load_average = machine::load_average();
    let mut peak = PeakRss::new(agent.pid());
    let mut startup = None;
    let mut walsender_pid = None;
    let mut last_fingerprint = Instant::now() - FINGERPRINT_EVERY;
    let mut fingerprint_every = FINGERPRINT_EVERY;
    loop {
        peak.sample();
        if startup.is_none() && agent::is_streaming(agent) {
            startup = Some(started.elapsed());
        }
        if let (None, Some((client, slot))) = (walsender_pid, walsender) {
            walsender_pid = active_pid(client, slot).await;
        }
        if shape.target_rows(sim) == expected.rows
            && last_fingerprint.elapsed() >= fingerprint_every
        {
            last_fingerprint = Instant::now();
            let target = shape.target(sim);
            fingerprint_every =
                FINGERPRINT_EVERY.max(last_fingerprint.elapsed() * FINGERPRINT_IDLE_PER_SCAN);
            if target == Some(expected) {
                let elapsed = started.elapsed();
                peak.sample();
                return Ok(Drain {
                    elapsed,
                    startup,
                    cpu_seconds: agent::cpu_seconds(agent.pid()),
                    walsender_cpu_seconds: walsender_pid.map(agent::cpu_seconds),
                    peak_rss_bytes: peak.peak_bytes.max(agent::rss_high_water(agent.pid())),
                    load_average,
                });
            }
        }
        if !agent.is_running() {
            bail!(
                "the agent exited while draining:\n{}",
                agent::log_tail(agent)
            );
        }
        if started.elapsed() > timeout {
            bail!(
                "the target was not level after {} s (source {expected:?}, target {:?}):\n{}",
                timeout.as_secs(),
                shape.target(sim),
                agent::log_tail(agent)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits (untimed) for the target to be level with `expected`.
async fn wait_level(
    agent: &mut Agent,
    sim: &Sim,
    shape: Shape,
    expected: Fingerprint,
    timeout: Duration,
) -> Result<()> {
    drain(agent, sim, shape, expected, Instant::now(), timeout, None)
        .await
        .map(|_| ())
}

/// The pid of the walsender serving `slot`, once a replication connection holds it.
async fn active_pid(client: &Client, slot: &str) -> Option<u32> {
    client
        .query_opt(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .ok()
        .flatten()
        .and_then(|row| row.get::<_, Option<i32>>(0))
        .map(|pid| pid as u32)
}

async fn wal_position(client: &Client) -> Result<String> {
    Ok(client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .context("read the WAL position")?
        .get(0))
}

/// Adds the workload's markdown row, JSON object and targets.
fn record(
    settings: &Settings,
    report: &mut Report,
    workload: Workload,
    m: &Measured,
    error: Option<&str>,
    rows: &mut Vec<String>,
    json: &mut Vec<serde_json::Value>,
) {
    let recv_seconds = match &m.recv {
        Some(Ok(d)) => Some(d.as_secs_f64()),
        _ => None,
    };
    let agent_seconds = m.drain.as_ref().map(|d| d.elapsed.as_secs_f64());
    let ratio = match (agent_seconds, recv_seconds) {
        (Some(a), Some(r)) if r > 0.0 => Some(a / r),
        _ => None,
    };
    let changes = m.written.changes;
    let walsender_cpu = m.drain.as_ref().and_then(|d| d.walsender_cpu_seconds);
    let agent_to_walsender = m
        .drain
        .as_ref()
        .zip(walsender_cpu)
        .filter(|(_, w)| *w > 0.0)
        .map(|(d, w)| d.cpu_seconds / w);
    let drain_to_walsender_busy = agent_seconds
        .zip(walsender_cpu)
        .filter(|(_, w)| *w > 0.0)
        .map(|(a, w)| a / w);
    let cpu_per_million = m
        .drain
        .as_ref()
        .filter(|_| changes > 0)
        .map(|d| d.cpu_seconds * 1e6 / changes as f64);
    let opt = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
    };
    rows.push(format!(
        "| {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        workload.name(),
        workload.description(),
        changes,
        m.written.txns,
        mib(m.wal_bytes),
        match &m.recv {
            Some(Err(_)) => "failed".to_owned(),
            _ => opt(recv_seconds, 2),
        },
        if error.is_some() && agent_seconds.is_none() {
            "failed".to_owned()
        } else {
            opt(agent_seconds, 2)
        },
        opt(ratio, 2),
        opt(
            m.drain
                .as_ref()
                .and_then(|d| d.startup)
                .map(|s| s.as_secs_f64()),
            2
        ),
        opt(m.drain.as_ref().map(|d| d.cpu_seconds), 2),
        opt(cpu_per_million, 2),
        opt(walsender_cpu, 2),
        opt(agent_to_walsender, 2),
        opt(drain_to_walsender_busy, 2),
        m.drain
            .as_ref()
            .map_or_else(|| "–".to_owned(), |d| mib(d.peak_rss_bytes)),
        m.drain.as_ref().map_or("–", |d| d.load_average.as_str()),
    ));
    json.push(serde_json::json!({
        "workload": workload.name(),
        "description": workload.description(),
        "columns": workload.columns(),
        "changes": changes,
        "transactions": m.written.txns,
        "seed_rows": m.seed_rows,
        "generate_seconds": m.generate.as_secs_f64(),
        "wal_bytes": m.wal_bytes,
        "toast_relation_bytes": m.toast_relation_bytes,
        "starwal_seconds": agent_seconds,
        "pg_recvlogical_seconds": recv_seconds,
        "ratio_vs_pg_recvlogical": ratio,
        "pg_recvlogical_error": match &m.recv {
            Some(Err(e)) => Some(e.as_str()),
            _ => None,
        },
        "starwal_startup_seconds": m.drain.as_ref().and_then(|d| d.startup).map(|s| s.as_secs_f64()),
        "agent_cpu_seconds": m.drain.as_ref().map(|d| d.cpu_seconds),
        "agent_cpu_seconds_per_million_changes": cpu_per_million,
        "agent_cpu_s": m.drain.as_ref().map(|d| d.cpu_seconds),
        "walsender_cpu_s": walsender_cpu,
        "agent_to_walsender_cpu": agent_to_walsender,
        "drain_to_walsender_busy": drain_to_walsender_busy,
        "load_average_at_drain": m.drain.as_ref().map(|d| d.load_average.as_str()),
        "agent_peak_rss_bytes": m.drain.as_ref().map(|d| d.peak_rss_bytes),
        "error": error,
        "agent_env": m.agent_env,
    }));

    let n = workload.name();
    report.target(
        format!("backlog drain, {n}"),
        &format!("≤ {MAX_RATIO} × pg_recvlogical"),
        ratio.map_or_else(|| "–".to_owned(), |r| format!("{r:.2} ×")),
        ratio.map(|r| r <= MAX_RATIO),
    );
    if workload == Workload::Mixed {
        report.target(
            format!("agent CPU / walsender CPU, backlog {n}"),
            &format!("≤ {MAX_AGENT_TO_WALSENDER_CPU}"),
            agent_to_walsender.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}")),
            agent_to_walsender.map(|r| r <= MAX_AGENT_TO_WALSENDER_CPU),
        );
    }
    report.target(
        format!("drain time / walsender CPU s, backlog {n}"),
        &format!("≤ {MAX_DRAIN_TO_WALSENDER_BUSY}"),
        drain_to_walsender_busy.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}")),
        drain_to_walsender_busy.map(|r| r <= MAX_DRAIN_TO_WALSENDER_BUSY),
    );
    if workload.columns() == 10 {
        report.target(
            format!("agent CPU per million 10-column changes, backlog {n}"),
            &format!("≤ {MAX_CPU_SECONDS_PER_MILLION} s"),
            cpu_per_million.map_or_else(|| "–".to_owned(), |c| format!("{} s", secs(c))),
            cpu_per_million.map(|c| c <= MAX_CPU_SECONDS_PER_MILLION),
        );
    }
    if workload == Workload::OneTxn {
        let limit = settings.max_buffer_bytes + RSS_HEADROOM_BYTES;
        let peak = m.drain.as_ref().map(|d| d.peak_rss_bytes);
        report.target(
            format!("peak RSS, one transaction of {changes} rows"),
            &format!("≤ STARWAL_MAX_BUFFER_BYTES + 32 MiB = {} MiB", mib(limit)),
            peak.map_or_else(|| "–".to_owned(), |p| format!("{} MiB", mib(p))),
            peak.map(|p| p <= limit),
        );
    }
}
