//! What a suite run measures and how big: the scenarios and the `BENCH_*` variables, read once
//! at start. A value that does not parse is an error naming the variable (the run stops before
//! any cluster starts); nothing falls back silently.
//!
//! `STARWAL_*` tuning variables found in the environment (`STARWAL_FLUSH_ROWS`,
//! `STARWAL_MAX_BUFFER_BYTES`, `STARWAL_SNAPSHOT_WORKERS`, ...) are passed to every agent the
//! suite starts and recorded in the results; the connection, naming and listening variables are
//! the suite's own and are not taken from the environment.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

/// One scenario of `bench/run.sh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Drain of a backlog written while the agent was stopped, vs `pg_recvlogical`.
    Backlog,
    /// Fixed insert rates: lag, CPU per million changes, peak RSS.
    Sustained,
    /// An agent streaming with nothing to do: RSS and CPU.
    Idle,
    /// The initial copy (`STARWAL_SNAPSHOT=only`) vs raw `COPY ... TO STDOUT`.
    Snapshot,
    /// Peak RSS against `STARWAL_MAX_BUFFER_BYTES` per workload shape (invariant 8).
    Memory,
    /// One large transaction written while the agent streams: time from COMMIT to visible,
    /// whether it became visible in parts, peak RSS, agent and walsender CPU (issue 14).
    BigTxn,
}

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Scenario; 6] = [
        Scenario::Backlog,
        Scenario::Sustained,
        Scenario::Idle,
        Scenario::Snapshot,
        Scenario::Memory,
        Scenario::BigTxn,
    ];

    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Backlog => "backlog",
            Scenario::Sustained => "sustained",
            Scenario::Idle => "idle",
            Scenario::Snapshot => "snapshot",
            Scenario::Memory => "memory",
            Scenario::BigTxn => "bigtxn",
        }
    }
}

/// A backlog workload (`BENCH_WORKLOADS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Inserts into a 2-column table.
    Narrow,
    /// Inserts, updates and deletes on a 10-column table.
    Mixed,
    /// Updates of rows with an out-of-line TOASTed column, half of them changing it.
    Toast,
    /// One transaction inserting every row of a 10-column table.
    OneTxn,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Narrow,
        Workload::Mixed,
        Workload::Toast,
        Workload::OneTxn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Narrow => "narrow",
            Workload::Mixed => "mixed",
            Workload::Toast => "toast",
            Workload::OneTxn => "onetxn",
        }
    }
}

/// A workload shape of the memory scenario (`BENCH_MEMORY_SHAPES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryShape {
    /// Many one-row transactions.
    Tiny,
    /// One huge transaction.
    Huge,
    /// A sink outage under load, then the catch-up.
    Outage,
    /// Rows with a 1 MiB TOASTed value.
    Wide,
    /// Many tables at once.
    Tables,
}

impl MemoryShape {
    pub const ALL: [MemoryShape; 5] = [
        MemoryShape::Tiny,
        MemoryShape::Huge,
        MemoryShape::Outage,
        MemoryShape::Wide,
        MemoryShape::Tables,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MemoryShape::Tiny => "tiny",
            MemoryShape::Huge => "huge",
            MemoryShape::Outage => "outage",
            MemoryShape::Wide => "wide",
            MemoryShape::Tables => "tables",
        }
    }
}

/// The sizes of the memory scenario.
#[derive(Debug, Clone)]
pub struct MemorySettings {
    /// `BENCH_MEMORY_SHAPES` (`tiny,huge,outage,wide,tables`).
    pub shapes: Vec<MemoryShape>,
    /// `BENCH_MEMORY_TXNS` (300 000): one-row transactions of `tiny`.
    pub txns: u64,
    /// `BENCH_MEMORY_ROWS` (1 000 000): rows of the `huge` transaction.
    pub rows: u64,
    /// `BENCH_MEMORY_OUTAGE_S` (60): how long StarRocks is down in `outage`.
    pub outage: Duration,
    /// `BENCH_MEMORY_RATE` (2 000): one-row transactions per second during the outage.
    pub rate: u64,
    /// `BENCH_MEMORY_WIDE_ROWS` (300): 1 MiB rows of `wide`.
    pub wide_rows: u64,
    /// `BENCH_MEMORY_TABLES` (50): tables of `tables`.
    pub tables: u64,
    /// `BENCH_MEMORY_TABLE_ROWS` (20 000): transactions of `tables`, each a row in every table.
    pub table_rows: u64,
}

/// A sustained-scenario rate (`BENCH_RATES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// This many inserted rows per second.
    RowsPerSecond(u64),
    /// Transactions of `BENCH_TXN_ROWS` rows back to back.
    Max,
}

impl Rate {
    pub fn label(self) -> String {
        match self {
            Rate::RowsPerSecond(rate) => rate.to_string(),
            Rate::Max => "max".to_owned(),
        }
    }
}

/// How the agent commits (`BENCH_MODES`): the issue-14 modes a scenario can run in. Each is a
/// set of agent variables that replaces the environment's for those names, so one driver runs
/// the same scenario in every mode and the result files say which (`<date>-<mode>-<scenario>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mode {
    pub name: &'static str,
    /// `(variable, value)` set on every agent of the run.
    pub vars: &'static [(&'static str, &'static str)],
}

impl Mode {
    /// `STARWAL_STREAMING=off` is set explicitly in the non-streaming modes: the agent's default
    /// may become `on` (an agent that does not know the variable warns and does not stream,
    /// which is what `off` means, so those modes still run on it).
    pub const ALL: [Mode; 4] = [
        Mode {
            name: "table",
            vars: &[
                ("STARWAL_COMMIT_MODE", "table"),
                ("STARWAL_STREAMING", "off"),
            ],
        },
        Mode {
            name: "table-streaming",
            vars: &[
                ("STARWAL_COMMIT_MODE", "table"),
                ("STARWAL_STREAMING", "on"),
            ],
        },
        Mode {
            name: "transaction",
            vars: &[
                ("STARWAL_COMMIT_MODE", "transaction"),
                ("STARWAL_STREAMING", "off"),
            ],
        },
        Mode {
            name: "transaction-streaming",
            vars: &[
                ("STARWAL_COMMIT_MODE", "transaction"),
                ("STARWAL_STREAMING", "on"),
            ],
        },
    ];

    fn names() -> String {
        Mode::ALL
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Variables an agent gets from the suite, never from the environment.
const SUITE_OWNED_VARS: &[&str] = &[
    "STARWAL_PG_URL",
    "STARWAL_TABLES",
    "STARWAL_SLOT",
    "STARWAL_PUBLICATION",
    "STARWAL_STATE_SCHEMA",
    "STARWAL_STARROCKS_URL",
    "STARWAL_STARROCKS_MYSQL",
    "STARWAL_STARROCKS_USER",
    "STARWAL_STARROCKS_PASSWORD",
    "STARWAL_STARROCKS_DATABASE",
    "STARWAL_CONTROL_ADDR",
    "STARWAL_CONTROL_URL",
    "STARWAL_CONTROL_TOKEN",
    "STARWAL_METRICS_ADDR",
    "STARWAL_SNAPSHOT",
    "STARWAL_EXIT_ON_ERROR",
];

/// Everything a suite run is told by its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `BENCH_ROWS` (1 000 000): changes per backlog workload, rows of the one transaction.
    pub backlog_changes: u64,
    /// `BENCH_WORKLOADS` (`narrow,mixed,toast,onetxn`).
    pub workloads: Vec<Workload>,
    /// `BENCH_TXN_ROWS` (1 000): changes per transaction in the narrow, mixed and toast
    /// backlogs, rows per transaction at the `max` sustained rate.
    pub txn_rows: u64,
    /// `BENCH_MIXED_SEED_ROWS` (a quarter of `BENCH_ROWS`): rows the mixed workload's updates
    /// and deletes find in place, loaded through the agent before it stops.
    pub mixed_seed_rows: u64,
    /// `BENCH_TOAST_ROWS` (a tenth of `BENCH_ROWS`): rows with a TOASTed value the toast
    /// workload's updates cycle over, loaded through the agent before it stops.
    pub toast_rows: u64,
    /// `BENCH_DURATION_S` (60): how long each sustained rate is driven.
    pub sustained_duration: Duration,
    /// `BENCH_RATES` (`1000,5000,10000,max`).
    pub rates: Vec<Rate>,
    /// `BENCH_IDLE_S` (60): how long the idle agent is watched.
    pub idle_duration: Duration,
    /// `BENCH_SNAPSHOT_ROWS` (1 000 000): rows of the snapshot scenario's table.
    pub snapshot_rows: u64,
    /// `BENCH_TIMEOUT_S` (3600): the longest wait for one drain, copy or catch-up.
    pub timeout: Duration,
    /// `BENCH_RESULTS_DIR` (`bench/results`).
    pub results_dir: PathBuf,
    /// `BENCH_DATE` (today, UTC): the `<date>` of the result files.
    pub date: String,
    /// `BENCH_COMMAND`: the command line to print as "reproduce with" (run.sh sets it).
    pub command: String,
    /// `STARWAL_*` tuning variables passed to every agent.
    pub agent_vars: Vec<(String, String)>,
    /// `STARWAL_MAX_BUFFER_BYTES` as the agents run with it (the agent's default when unset).
    pub max_buffer_bytes: u64,
    /// The memory scenario's sizes.
    pub memory: MemorySettings,
    /// `BENCH_BIGTXN_ROWS` (`2000000`): the sizes of the bigtxn scenario's transaction, one
    /// measurement each, in order. Not 10M by default: the in-process sim keeps every row, and
    /// 10M 10-column rows do not fit the development machine's memory.
    pub bigtxn_rows: Vec<u64>,
    /// `BENCH_BIGTXN_COLUMNS` (10): columns of the bigtxn table, 10 or 2.
    pub bigtxn_columns: u64,
    /// `BENCH_BIGTXN_TABLES` (1): tables the bigtxn transaction writes, 1 or 2 (its statements
    /// take turns), so `transaction` mode's whole commits across tables can be compared.
    pub bigtxn_tables: u64,
    /// `BENCH_MODES` (none): the modes every scenario runs in, one after the other; empty runs
    /// each scenario once with the environment's variables.
    pub modes: Vec<Mode>,
    /// The mode this run is in (set by [`Settings::with_mode`]).
    pub mode: Option<Mode>,
}

impl Settings {
    pub fn from_env() -> Result<Settings> {
        let backlog_changes = var("BENCH_ROWS", 1_000_000u64)?;
        let txn_rows = var("BENCH_TXN_ROWS", 1_000u64)?.max(1);
        let workloads = match non_empty("BENCH_WORKLOADS") {
            None => Workload::ALL.to_vec(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(|w| {
                    Workload::ALL
                        .into_iter()
                        .find(|k| k.name() == w)
                        .with_context(|| {
                            format!(
                                "BENCH_WORKLOADS: unknown workload `{w}` \
                                 (expected narrow, mixed, toast, onetxn)"
                            )
                        })
                })
                .collect::<Result<_>>()?,
        };
        let rates = match non_empty("BENCH_RATES") {
            None => vec![
                Rate::RowsPerSecond(1_000),
                Rate::RowsPerSecond(5_000),
                Rate::RowsPerSecond(10_000),
                Rate::Max,
            ],
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| match r {
                    "max" => Ok(Rate::Max),
                    n => match n.parse::<u64>() {
                        Ok(rate) if rate > 0 => Ok(Rate::RowsPerSecond(rate)),
                        _ => bail!("BENCH_RATES: `{n}` is neither a positive rows/s nor `max`"),
                    },
                })
                .collect::<Result<_>>()?,
        };
        let agent_vars: Vec<(String, String)> = {
            let mut vars: Vec<(String, String)> = std::env::vars()
                .filter(|(k, _)| {
                    k.starts_with("STARWAL_")
                        && !k.starts_with("STARWAL_TEST_")
                        && !SUITE_OWNED_VARS.contains(&k.as_str())
                })
                .collect();
            vars.sort();
            vars
        };
        let max_buffer_bytes = match agent_vars
            .iter()
            .find(|(k, _)| k == "STARWAL_MAX_BUFFER_BYTES")
        {
            Some((_, v)) => v
                .trim()
                .parse()
                .context("STARWAL_MAX_BUFFER_BYTES: expected a number of bytes")?,
            None => starwal::config::DEFAULT_MAX_BUFFER_BYTES,
        };
        let memory_shapes = match non_empty("BENCH_MEMORY_SHAPES") {
            None => MemoryShape::ALL.to_vec(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    MemoryShape::ALL
                        .into_iter()
                        .find(|k| k.name() == s)
                        .with_context(|| {
                            format!(
                                "BENCH_MEMORY_SHAPES: unknown shape `{s}` \
                                 (expected tiny, huge, outage, wide, tables)"
                            )
                        })
                })
                .collect::<Result<_>>()?,
        };
        let memory = MemorySettings {
            shapes: memory_shapes,
            txns: var("BENCH_MEMORY_TXNS", 300_000u64)?.max(1),
            rows: var("BENCH_MEMORY_ROWS", 1_000_000u64)?.max(1),
            outage: Duration::from_secs(var("BENCH_MEMORY_OUTAGE_S", 60u64)?),
            rate: var("BENCH_MEMORY_RATE", 2_000u64)?.max(10),
            wide_rows: var("BENCH_MEMORY_WIDE_ROWS", 300u64)?.max(1),
            tables: var("BENCH_MEMORY_TABLES", 50u64)?.max(1),
            table_rows: var("BENCH_MEMORY_TABLE_ROWS", 20_000u64)?.max(1),
        };
        let bigtxn_rows = match non_empty("BENCH_BIGTXN_ROWS") {
            None => vec![2_000_000],
            Some(list) => {
                let mut sizes = Vec::new();
                for size in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    match size.replace('_', "").parse::<u64>() {
                        Ok(rows) if rows > 0 && !sizes.contains(&rows) => sizes.push(rows),
                        Ok(rows) if rows > 0 => {} // measured once
                        _ => bail!("BENCH_BIGTXN_ROWS: `{size}` is not a positive row count"),
                    }
                }
                sizes
            }
        };
        let bigtxn_columns = var("BENCH_BIGTXN_COLUMNS", 10u64)?;
        if bigtxn_columns != 10 && bigtxn_columns != 2 {
            bail!("BENCH_BIGTXN_COLUMNS: `{bigtxn_columns}` columns: expected 10 or 2");
        }
        let bigtxn_tables = var("BENCH_BIGTXN_TABLES", 1u64)?;
        if bigtxn_tables != 1 && bigtxn_tables != 2 {
            bail!("BENCH_BIGTXN_TABLES: `{bigtxn_tables}` tables: expected 1 or 2");
        }
        let modes = match non_empty("BENCH_MODES") {
            None => Vec::new(),
            Some(list) => {
                let modes: Vec<Mode> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(|m| {
                        Mode::ALL
                            .into_iter()
                            .find(|k| k.name == m)
                            .with_context(|| {
                                format!(
                                    "BENCH_MODES: unknown mode `{m}` (expected {})",
                                    Mode::names()
                                )
                            })
                    })
                    .collect::<Result<_>>()?;
                // A mode sets these; the same variable in the environment too would leave
                // unclear which one a result measured.
                for (name, _) in &agent_vars {
                    if modes.iter().any(|m| m.vars.iter().any(|(v, _)| v == name)) {
                        bail!("{name} is set by BENCH_MODES: unset one of them");
                    }
                }
                modes
            }
        };
        let results_dir = match non_empty("BENCH_RESULTS_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/results"),
        };
        Ok(Settings {
            backlog_changes,
            workloads,
            txn_rows,
            mixed_seed_rows: var("BENCH_MIXED_SEED_ROWS", (backlog_changes / 4).max(1))?,
            toast_rows: var("BENCH_TOAST_ROWS", (backlog_changes / 10).max(txn_rows))?.max(2),
            sustained_duration: Duration::from_secs(var("BENCH_DURATION_S", 60u64)?),
            rates,
            idle_duration: Duration::from_secs(var("BENCH_IDLE_S", 60u64)?),
            snapshot_rows: var("BENCH_SNAPSHOT_ROWS", 1_000_000u64)?,
            timeout: Duration::from_secs(var("BENCH_TIMEOUT_S", 3_600u64)?),
            results_dir,
            date: non_empty("BENCH_DATE").unwrap_or_else(today_utc),
            command: non_empty("BENCH_COMMAND").unwrap_or_else(|| {
                let args: Vec<String> = std::env::args().skip(1).collect();
                format!("./bench/run.sh {}", args.join(" "))
            }),
            agent_vars,
            max_buffer_bytes,
            memory,
            bigtxn_rows,
            bigtxn_columns,
            bigtxn_tables,
            modes,
            mode: None,
        })
    }

    /// These settings for a run in `mode`: its variables go to every agent.
    pub fn with_mode(&self, mode: &Mode) -> Settings {
        let mut settings = self.clone();
        for (name, value) in mode.vars {
            settings.agent_vars.retain(|(k, _)| k != name);
            settings
                .agent_vars
                .push(((*name).to_owned(), (*value).to_owned()));
        }
        settings.agent_vars.sort();
        settings.mode = Some(mode.clone());
        settings
    }

    /// The settings as recorded in a result file.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "backlog_changes": self.backlog_changes,
            "workloads": self.workloads.iter().map(|w| w.name()).collect::<Vec<_>>(),
            "txn_rows": self.txn_rows,
            "mixed_seed_rows": self.mixed_seed_rows,
            "toast_rows": self.toast_rows,
            "sustained_duration_s": self.sustained_duration.as_secs(),
            "rates": self.rates.iter().map(|r| r.label()).collect::<Vec<_>>(),
            "idle_duration_s": self.idle_duration.as_secs(),
            "snapshot_rows": self.snapshot_rows,
            "timeout_s": self.timeout.as_secs(),
            "agent_env": self
                .agent_vars
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                .collect::<serde_json::Map<_, _>>(),
            "max_buffer_bytes": self.max_buffer_bytes,
            "mode": self.mode.as_ref().map(|m| m.name),
            "bigtxn_rows": self.bigtxn_rows,
            "bigtxn_columns": self.bigtxn_columns,
            "bigtxn_tables": self.bigtxn_tables,
            "memory": {
                "shapes": self.memory.shapes.iter().map(|s| s.name()).collect::<Vec<_>>(),
                "txns": self.memory.txns,
                "rows": self.memory.rows,
                "outage_s": self.memory.outage.as_secs(),
                "rate": self.memory.rate,
                "wide_rows": self.memory.wide_rows,
                "tables": self.memory.tables,
                "table_rows": self.memory.table_rows,
            },
        })
    }
}

fn non_empty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn var<T: FromStr>(name: &str, default: T) -> Result<T> {
    match non_empty(name) {
        None => Ok(default),
        Some(text) => text
            .replace('_', "")
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}: `{text}` is not a non-negative integer")),
    }
}

/// `YYYY-MM-DD` of now in UTC (days since the epoch to a civil date, H. Hinnant's algorithm).
fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
