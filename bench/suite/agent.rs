//! The measured agent: the release `starwal run` binary started through the e2e harness's
//! [`AgentSpec`] with the suite's settings, and what the suite reads of it (start of streaming,
//! RSS and CPU from `/proc` through `ProcessStats::read_pid`, a clean stop).
//!
//! Agents run with the agent's own defaults except where a scenario says otherwise (the harness's
//! test tuning — a 100 ms flush interval, a 1 s status interval — is removed), `STARWAL_SNAPSHOT`
//! as the scenario needs it, and the `STARWAL_*` tuning variables of the environment on top.
//! Failures are errors quoting the agent's log, never panics.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use starrocks_sim::Sim;
use starwal::control::process::ProcessStats;

use super::harness::agent::{Agent, AgentSpec};
use super::harness::TestDatabase;
use super::settings::Settings;

/// What the agent logs once it reads the replication stream.
const STREAMING_LINE: &str = "streaming changes";

/// Starts the error of an agent that cannot run in the requested mode (`BENCH_MODES`): the
/// driver reports the scenario as skipped, not failed, when its error carries this.
pub const MODE_UNAVAILABLE: &str = "mode not available in this agent";

/// The variables of a mode whose refusal means the mode is not built (see `Mode`).
const MODE_VARIABLES: [&str; 2] = ["STARWAL_COMMIT_MODE", "STARWAL_STREAMING"];

/// Why this agent cannot run the mode `spec` asks for, from its log: it refused a mode variable
/// at startup (`exited`), or it runs but ignores a mode variable set to something other than
/// its `off` default (an agent without streaming warns that `STARWAL_STREAMING` is unknown).
fn mode_unavailable(spec: &AgentSpec, log: &str, exited: bool) -> Option<String> {
    MODE_VARIABLES.iter().find_map(|name| {
        let value = spec.get(name)?;
        let line = log.lines().find(|line| {
            line.contains(name)
                && (exited || (value != "off" && line.contains("is not a starwal variable")))
        })?;
        Some(format!(
            "{MODE_UNAVAILABLE}: {name}={value}: {}",
            line.trim()
        ))
    })
}

/// The spec of an agent replicating `tables` of `db` into `sim`: agent defaults, `snapshot` as
/// `STARWAL_SNAPSHOT`, then the environment's tuning variables.
pub fn spec(
    db: &TestDatabase,
    sim: &Sim,
    tables: &str,
    snapshot: &str,
    settings: &Settings,
) -> AgentSpec {
    let mut spec = AgentSpec::new(db, sim, tables);
    spec.vars
        .retain(|(k, _)| k != "STARWAL_FLUSH_INTERVAL_MS" && k != "STARWAL_STATUS_INTERVAL_S");
    let mut spec = spec.var("STARWAL_SNAPSHOT", snapshot);
    for (name, value) in &settings.agent_vars {
        spec = spec.var(name, value);
    }
    spec
}

/// The variables an agent ran with, without the password-bearing URL, for the result file.
pub fn vars_json(spec: &AgentSpec) -> serde_json::Value {
    spec.vars
        .iter()
        .filter(|(k, _)| k != "STARWAL_PG_URL" && !k.contains("PASSWORD"))
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Whether the agent has logged that it streams.
pub fn is_streaming(agent: &Agent) -> bool {
    agent.log().contains(STREAMING_LINE)
}

/// Starts the agent and waits until it streams; returns it and how long that took.
pub async fn start_streaming(spec: &AgentSpec, timeout: Duration) -> Result<(Agent, Duration)> {
    let started = Instant::now();
    let mut agent = spec.start();
    loop {
        if is_streaming(&agent) {
            if let Some(why) = mode_unavailable(spec, &agent.log(), false) {
                agent.kill9();
                bail!("{why}");
            }
            return Ok((agent, started.elapsed()));
        }
        if !agent.is_running() {
            if let Some(why) = mode_unavailable(spec, &agent.log(), true) {
                bail!("{why}");
            }
            bail!("the agent exited before streaming:\n{}", log_tail(&agent));
        }
        if started.elapsed() > timeout {
            bail!(
                "the agent did not stream within {} s:\n{}",
                timeout.as_secs(),
                log_tail(&agent)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM (drain) and wait for the exit; an agent that does not exit in time is killed.
pub fn stop(agent: &mut Agent) -> Result<()> {
    match agent.signal_and_wait(libc::SIGTERM, Duration::from_secs(60)) {
        Some(status) if status.success() => Ok(()),
        Some(status) => bail!(
            "the agent exited with {status} on SIGTERM:\n{}",
            log_tail(agent)
        ),
        None if agent.is_running() => {
            agent.kill9();
            bail!("the agent did not exit within 60 s of SIGTERM (killed)")
        }
        None => Ok(()),
    }
}

/// The last 40 lines the agent logged.
pub fn log_tail(agent: &Agent) -> String {
    let log = agent.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Resident memory of `pid` in bytes (0 when unknown).
pub fn rss(pid: u32) -> u64 {
    ProcessStats::read_pid(pid)
        .resident_memory_bytes
        .unwrap_or(0)
}

/// CPU seconds (user + system) `pid` has used (0 when unknown).
pub fn cpu_seconds(pid: u32) -> f64 {
    ProcessStats::read_pid(pid)
        .cpu_time
        .map_or(0.0, |cpu| cpu.as_secs_f64())
}

/// The kernel's high-water mark of `pid`'s resident set (`VmHWM`), in bytes (0 when unknown):
/// a peak no sampling interval can miss.
pub fn rss_high_water(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The peak of a process's RSS over the samples taken.
#[derive(Debug, Clone, Copy)]
pub struct PeakRss {
    pid: u32,
    pub peak_bytes: u64,
}

impl PeakRss {
    pub fn new(pid: u32) -> PeakRss {
        PeakRss { pid, peak_bytes: 0 }
    }

    pub fn sample(&mut self) {
        self.peak_bytes = self.peak_bytes.max(rss(self.pid));
    }
}

/// Percentile `p` (0..=1) of sorted durations, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
