//! The built `starwal run` binary as a subprocess against a test database and a `starrocks-sim`,
//! plus the comparisons the engine tests make (source rows vs target rows).
//!
//! Logs go to a file per agent start (printed by [`Agent::log`] when an assertion needs them).
//! The agent is killed (SIGKILL) when dropped.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use starrocks_sim::{Sim, SimOptions};
use starwal::control::process::ProcessStats;
use starwal::postgres::Lsn;

use super::{unique_name, Role, TestDatabase};

/// The StarRocks database the engine tests load into.
pub const TARGET_DB: &str = "analytics";

/// A sim with the MySQL protocol on, password `pw`.
pub fn start_sim() -> Sim {
    Sim::start(SimOptions {
        password: "pw".into(),
        mysql: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SimOptions::default()
    })
    .expect("start the sim")
}

pub use super::free_port;

/// How to start an agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub vars: Vec<(String, String)>,
    pub control_port: u16,
    pub metrics_port: u16,
}

impl AgentSpec {
    /// The variables for `tables` of `db` into `sim`, with a fresh slot and publication, a
    /// 100 ms flush interval and a 1 s status interval.
    pub fn new(db: &TestDatabase, sim: &Sim, tables: &str) -> AgentSpec {
        let slot = unique_name("agent");
        let control_port = free_port();
        let metrics_port = free_port();
        let vars = [
            ("STARWAL_PG_URL", db.url(Role::Scram, "disable")),
            ("STARWAL_TABLES", tables.to_owned()),
            ("STARWAL_SLOT", slot.clone()),
            ("STARWAL_PUBLICATION", slot),
            ("STARWAL_STARROCKS_URL", sim.fe_url()),
            (
                "STARWAL_STARROCKS_MYSQL",
                sim.addrs().mysql.expect("mysql on").to_string(),
            ),
            ("STARWAL_STARROCKS_PASSWORD", "pw".into()),
            ("STARWAL_STARROCKS_DATABASE", TARGET_DB.into()),
            ("STARWAL_FLUSH_INTERVAL_MS", "100".into()),
            ("STARWAL_STATUS_INTERVAL_S", "1".into()),
            ("STARWAL_CONTROL_ADDR", format!("127.0.0.1:{control_port}")),
            ("STARWAL_METRICS_ADDR", format!("127.0.0.1:{metrics_port}")),
            ("STARWAL_LOG", "info".into()),
            // The CDC tests start from the slot's consistent point; `engine_snapshot` turns the
            // initial copy on where it is the subject.
            ("STARWAL_SNAPSHOT", "never".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        AgentSpec {
            vars,
            control_port,
            metrics_port,
        }
    }

    /// Sets (or replaces) a variable.
    pub fn var(mut self, name: &str, value: &str) -> AgentSpec {
        self.vars.retain(|(k, _)| k != name);
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn slot(&self) -> &str {
        self.get("STARWAL_SLOT").unwrap_or_default()
    }

    pub fn control_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.control_port)
    }

    /// Starts `starwal run` and waits (up to 180 s) until it streams. Creating the slot waits
    /// for every transaction running in the cluster to end, and tests sharing the cluster hold
    /// some open for tens of seconds (on a loaded CI machine, past 60 s).
    pub async fn start_streaming(&self) -> Agent {
        let agent = self.start();
        let streaming = wait_until(Duration::from_secs(180), || {
            agent.log().contains("streaming changes")
        })
        .await;
        assert!(
            streaming,
            "the agent did not start streaming:\n{}",
            agent.log()
        );
        agent
    }

    /// Starts `starwal run`.
    pub fn start(&self) -> Agent {
        // The pid too: `unique_name` counts per process, and test processes share the tmpdir.
        let log_path = std::env::temp_dir().join(format!(
            "{}_{}.log",
            unique_name("starwal-agent"),
            std::process::id()
        ));
        let log = std::fs::File::create(&log_path).expect("agent log file");
        let mut command = Command::new(agent_binary());
        command
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = command.spawn().expect("spawn starwal run");
        Agent {
            child: Some(child),
            log_path,
        }
    }
}

/// A running `starwal run`.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    log_path: PathBuf,
}

impl Agent {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Resident memory in bytes (0 when unknown).
    pub fn rss(&self) -> u64 {
        ProcessStats::read_pid(self.pid())
            .resident_memory_bytes
            .unwrap_or(0)
    }

    /// What the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` and waits up to `timeout` for the exit.
    pub fn signal_and_wait(&mut self, signal: i32, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        // SAFETY: kill(2) with a pid we own; no memory is touched.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
        self.wait(timeout)
    }

    /// Stops the agent with SIGTERM (a drain) and asserts it exits 0 within 30 s.
    pub fn stop_cleanly(mut self) {
        let status = self
            .signal_and_wait(libc::SIGTERM, Duration::from_secs(30))
            .expect("the agent did not exit within 30 s of SIGTERM");
        assert!(status.success(), "{}", self.log());
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The slot's `confirmed_flush_lsn` (`0/0` when unset or missing).
pub async fn slot_confirmed_flush(client: &tokio_postgres::Client, slot: &str) -> Lsn {
    let text: Option<String> = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .and_then(|row| row.get(0));
    text.and_then(|t| t.parse().ok()).unwrap_or(Lsn::ZERO)
}

/// `pg_current_wal_insert_lsn()`: where the next WAL record goes.
pub async fn wal_insert_position(client: &tokio_postgres::Client) -> Lsn {
    let text: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    text.parse().unwrap()
}

/// A table's rows as text (NULL as `None`), sorted.
pub type Rows = BTreeSet<Vec<Option<String>>>;

/// Rows of the target table `table`, columns `columns`, as the MySQL text protocol shows them.
pub fn target_rows(sim: &Sim, table: &str, columns: &[&str]) -> Rows {
    sim.catalog().read(|catalog| {
        let Ok(table) = catalog.table(TARGET_DB, table) else {
            return Rows::new();
        };
        table
            .select(columns)
            .unwrap_or_default()
            .into_iter()
            .map(|row| row.iter().map(|v| v.to_text()).collect())
            .collect()
    })
}

/// Rows of `sql` (every column cast to text by the query) from the source.
pub async fn source_rows(client: &tokio_postgres::Client, sql: &str) -> Rows {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.get::<_, Option<String>>(i))
                .collect()
        })
        .collect()
}

/// Polls until `target()` equals `source`, up to `timeout`; returns the last target rows.
pub async fn wait_for_rows(source: &Rows, timeout: Duration, target: impl Fn() -> Rows) -> Rows {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = target();
        if rows == *source || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `condition` every 100 ms up to `timeout`.
pub async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A short human diff of two row sets.
pub fn diff(source: &Rows, target: &Rows) -> String {
    let missing: Vec<_> = source.difference(target).take(5).collect();
    let extra: Vec<_> = target.difference(source).take(5).collect();
    format!(
        "source {} rows, target {} rows; missing in target (first 5): {missing:?}; extra in target (first 5): {extra:?}",
        source.len(),
        target.len()
    )
}

/// The `starwal` binary agents run: this build's, or `STARWAL_TEST_AGENT_BIN` (the benchmark
/// suite compares two builds with it; a shared checkout's `target/` holds whatever was built
/// last).
pub fn agent_binary() -> std::ffi::OsString {
    std::env::var_os("STARWAL_TEST_AGENT_BIN")
        .filter(|bin| !bin.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_starwal").into())
}

/// `starwal status --json` of the agent at `spec`, when it answers.
pub fn status_json(spec: &AgentSpec) -> Option<serde_json::Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_starwal"))
        .args(["status", "--json", "--addr", &spec.control_url()])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).ok())
        .flatten()
}

/// The body of the agent's `GET /metrics`.
pub fn metrics_text(spec: &AgentSpec) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", spec.metrics_port)).expect("metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of the sample `series` (name and labels exactly as printed) in `text`, if present.
pub fn metric_sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// The stored checkpoint's confirmed LSN of `slot` (`None` before the first store).
pub async fn stored_checkpoint(client: &tokio_postgres::Client, slot: &str) -> Option<Lsn> {
    client
        .query_opt(
            "SELECT confirmed_lsn::text FROM starwal.checkpoints WHERE slot = $1",
            &[&slot],
        )
        .await
        .ok()
        .flatten()
        .and_then(|row| row.get::<_, String>(0).parse().ok())
}
