//! Facts about the machine and the build a result was measured on: cores, CPU model, memory,
//! kernel, load average when the scenario started, the Postgres server, the git commit.
//!
//! Every fact is read defensively: what cannot be read is reported as `unknown`, never a failure
//! (a result without a CPU model is still a result).

use std::path::Path;
use std::process::Command;

/// What a result file says about where it was measured.
#[derive(Debug, Clone)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub memory_mib: Option<u64>,
    pub kernel: String,
    /// `/proc/loadavg`'s first three fields when the scenario started (others' work on a shared
    /// machine shows here).
    pub load_average: String,
    pub git_commit: String,
    /// `version()` of the server the scenario ran against, once known.
    pub postgres: Option<String>,
    /// The agent binary the scenario ran (`STARWAL_TEST_AGENT_BIN` or this build's) and when it
    /// was built: `git_commit` is the driver's tree, which need not be the agent's.
    pub agent_binary: String,
}

impl Machine {
    /// Reads everything but the Postgres version (set by the scenario once its cluster runs).
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                matches!(key.trim(), "model name" | "Model" | "cpu model")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib / 1024)
            });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let load_average = load_average();
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            memory_mib,
            kernel,
            load_average,
            git_commit: git_commit(Path::new(env!("CARGO_MANIFEST_DIR"))),
            postgres: None,
            agent_binary: agent_binary(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "nproc": self.nproc,
            "cpu_model": self.cpu_model,
            "memory_mib": self.memory_mib,
            "kernel": self.kernel,
            "load_average_at_start": self.load_average,
            "postgres": self.postgres,
            "git_commit": self.git_commit,
            "agent_binary": self.agent_binary,
        })
    }

    /// One markdown line.
    pub fn summary(&self) -> String {
        format!(
            "{} × {}, {} MiB RAM, Linux {}; {}; starwal {} (agent {}); load average at start {}",
            self.nproc,
            self.cpu_model,
            self.memory_mib
                .map_or_else(|| "unknown".to_owned(), |m| m.to_string()),
            self.kernel,
            self.postgres.as_deref().unwrap_or("PostgreSQL unknown"),
            self.git_commit,
            self.agent_binary,
            self.load_average
        )
    }
}

/// The agent binary's path and modification time (UTC).
fn agent_binary() -> String {
    let path = super::harness::agent::agent_binary();
    let built = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ", "-r"])
        .arg(&path)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{}, built {built}", Path::new(&path).display())
}

/// `HEAD`'s hash, with `+dirty` when tracked files differ from it (the measured binary was built
/// from the work tree, not from the commit alone).
fn git_commit(repo: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(hash) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{hash}+dirty"),
            _ => hash,
        },
        None => "unknown (git not available)".to_owned(),
    }
}

/// `/proc/loadavg`'s first three fields now: recorded next to each measurement, because wall
/// times and lags on a shared machine depend on what else runs (CPU seconds much less).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}
