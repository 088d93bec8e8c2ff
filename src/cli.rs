//! The command line: subcommands, `--help`, and turning errors into exit codes; and the process
//! around the work: the runtime, the signal handler (one for `run` and `tail`), the control plane
//! of `run`, its shutdown timeout and the snapshot progress bar. Only this file (and `main.rs`)
//! ends the process; the engine and `tail` return.
//!
//! Exit codes: 0 success, 1 a runtime failure, 2 a configuration or usage error (so scripts and
//! Kubernetes can tell "fix your settings" from "something broke"). Errors are printed with each
//! cause once (`error_text`); none contains a password (invariant 10).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::config::{self, Config, SnapshotMode};
use crate::config_error::ConfigError;
use crate::control::client::{self as control_client, ClientError, Lever};
use crate::control::ControlServer;
use crate::engine::RunEnd;
use crate::secret::Secret;
use crate::state::{CopyState, EngineHandle, StopRequest, TableStatus};
use crate::tail::{self, TailOptions};

/// Exit code for configuration and usage errors.
pub const EXIT_CONFIG: i32 = 2;
/// Exit code for runtime failures.
pub const EXIT_FAILURE: i32 = 1;
/// `STARWAL_SNAPSHOT=only` stopped (a signal, a drain) before every table was copied: a Job
/// must not count that as done. The next start resumes the copy.
pub const EXIT_SNAPSHOT_INTERRUPTED: i32 = 3;

/// starwal replicates PostgreSQL tables into StarRocks in real time, through logical replication
/// (pgoutput) and Stream Load. It is configured with STARWAL_* environment variables (a .env file
/// in the working directory is read too); see .env.example.
#[derive(Debug, Parser)]
#[command(name = "starwal", version, about, long_about = None)]
pub struct Cli {
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replicate: set up both sides (publication, slot, target tables), then stream changes into
    /// StarRocks until SIGTERM/SIGINT or a Drain/Stop RPC. Serves gRPC control and health on
    /// STARWAL_CONTROL_ADDR and Prometheus metrics on STARWAL_METRICS_ADDR. The default command.
    Run,
    /// Print the decoded changes of the configured tables as JSON lines on stdout, until
    /// SIGINT/SIGTERM. Needs STARWAL_PG_URL and STARWAL_TABLES; creates the publication
    /// (STARWAL_PUBLICATION) when missing. By default reads through a temporary slot that
    /// vanishes when tail exits.
    Tail(TailArgs),
    /// Check every prerequisite on both sides (Postgres and StarRocks) and print a checklist,
    /// including what `run` would create. Changes nothing. Exits 1 when any check fails.
    Check,
    /// Drop what starwal created on the source: the replication slot (STARWAL_SLOT), the
    /// publication (STARWAL_PUBLICATION) and the slot's checkpoint state (STARWAL_STATE_SCHEMA).
    /// StarRocks tables are left alone. Refuses while a process streams from the slot.
    Teardown(TeardownArgs),
    /// Show a running agent's state through its control server: phase, health (and why), paused,
    /// WAL positions (received, flushed, confirmed, server end), lag, WAL retained by the slot,
    /// buffered bytes, uptime, then counters per table and the progress of each table's snapshot
    /// copy (state, rows copied of estimated, chunks, rows/s, ETA). Exits 1 when the agent cannot
    /// be reached.
    Status(ControlClientArgs),
    /// Pause a running agent: it stops reading the replication stream (feedback to Postgres keeps
    /// flowing, so the connection stays healthy) until `starwal resume`. Needs the agent's token
    /// (--token / STARWAL_CONTROL_TOKEN) unless it has none and this runs on the same host.
    Pause(ControlLeverArgs),
    /// Resume a paused agent: reading continues where it stopped. Same access rules as pause.
    Resume(ControlLeverArgs),
    /// Drain a running agent: it stops reading, loads and confirms what is buffered, then exits 0
    /// (what SIGTERM does). Same access rules as pause.
    Drain(ControlLeverArgs),
    /// Copy one table again on a running agent: its StarRocks table is emptied and refilled from a
    /// new snapshot while the other tables keep streaming (`starwal status` shows the progress).
    /// Exits 1 when the table is not replicated or is already being copied. Same access rules as
    /// pause.
    Resync(ResyncArgs),
    /// Load a parked table again on a running agent (one a permanent error stopped while the
    /// others streamed), once its cause is fixed: the stream restarts from the table's held
    /// position. Exits 1 when the table is not replicated or not parked. Same access rules as
    /// pause.
    Retry(ResyncArgs),
    /// Compare every replicated table's source rows with its StarRocks rows, key range by key
    /// range (the snapshot's chunks, STARWAL_SNAPSHOT_WORKERS connections), value by value in
    /// the form the loader writes. Safe while `run` streams: differences are re-checked once the
    /// agent has confirmed past a newer source snapshot (bounded by --wait). Prints per table the
    /// rows compared, missing, extra and different rows (the first keys, and the columns that
    /// differ). Exits 0 when equal, 1 when differences remain, 2 on configuration errors.
    Verify(VerifyArgs),
    /// A live terminal view of a running agent through its control server: phase, health,
    /// paused, lag, rates (rows/s, loads/s, bytes/s), loads in flight, buffer, RSS and CPU, then
    /// per table its state, rows/s, totals, loads in flight, failed loads, last load and last
    /// error, a progress bar per snapshot copy, and the selected table's details. Keys: q or Ctrl-C quit, p pause, r resume (same
    /// access rules as pause), t / T select the next / previous table. A lost connection is shown
    /// and retried every second. Needs a terminal (exit 2 otherwise: use `status --json`).
    Top(TopArgs),
    /// Print a shell completion script (bash, zsh, fish, …) on stdout, generated from this
    /// command line so it always matches --help. The .deb installs bash, zsh and fish scripts.
    Completions(CompletionsArgs),
    /// Print a man page (roff, section 1) on stdout, generated from this command line: starwal(1)
    /// (`starwal man | man -l -`), or with a command the page it links to, starwal-COMMAND(1).
    Man(ManArgs),
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The command whose page to print (e.g. `run` prints starwal-run(1)); the main page when
    /// omitted.
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct TeardownArgs {
    /// Confirm: without it, teardown only says what it would drop.
    #[arg(long)]
    pub yes: bool,
}

/// Where `status`, `pause`, `resume`, `drain` and `resync` find the agent.
#[derive(Debug, clap::Args)]
pub struct ControlClientArgs {
    /// The agent's control server (what it listens on with STARWAL_CONTROL_ADDR), as
    /// http://host:port.
    #[arg(
        long,
        env = "STARWAL_CONTROL_URL",
        value_name = "URL",
        default_value = crate::control::client::DEFAULT_CONTROL_URL
    )]
    pub addr: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `pause`, `resume`, `drain` and `resync`: the client arguments plus the token.
#[derive(Debug, clap::Args)]
pub struct ControlLeverArgs {
    #[command(flatten)]
    pub client: ControlClientArgs,
    /// The agent's STARWAL_CONTROL_TOKEN, sent as a bearer token; when unset, the content of the
    /// file STARWAL_CONTROL_TOKEN_FILE names. Prefer either variable: a command-line value is
    /// visible to other users in the process list.
    #[arg(
        long,
        env = "STARWAL_CONTROL_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// `top`: where the agent is, the token for its levers and how often to sample.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The agent's control server (what it listens on with STARWAL_CONTROL_ADDR), as
    /// http://host:port.
    #[arg(
        long,
        env = "STARWAL_CONTROL_URL",
        value_name = "URL",
        default_value = crate::control::client::DEFAULT_CONTROL_URL
    )]
    pub addr: String,
    /// The agent's STARWAL_CONTROL_TOKEN, sent with pause and resume (the p and r keys); when
    /// unset, the content of the file STARWAL_CONTROL_TOKEN_FILE names. Prefer either variable:
    /// a command-line value is visible to other users in the process list.
    #[arg(
        long,
        env = "STARWAL_CONTROL_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Milliseconds between samples (the agent's Metrics.StreamMetrics interval), 100 to 60000.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(100..=60_000)
    )]
    pub interval_ms: u32,
}

/// `resync` and `retry`: the lever arguments plus the table.
#[derive(Debug, clap::Args)]
pub struct ResyncArgs {
    #[command(flatten)]
    pub lever: ControlLeverArgs,
    /// The table to copy again: `schema.table` at the source, or its StarRocks table name.
    #[arg(long, value_name = "TABLE")]
    pub table: String,
}

/// `verify`: what to compare, and for `--repair` how to reach the agent.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Only this table (`schema.table` or its StarRocks name); repeat for more. Every
    /// replicated table when omitted.
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Check a random fraction (0 < F <= 1) of each table's chunks; extra rows in the target
    /// are not looked for.
    #[arg(long, value_name = "F")]
    pub sample: Option<f64>,
    /// Repair what differs: ask the running agent (--addr, --token) to copy each differing
    /// table again while it keeps streaming, wait for the copies, then verify those tables
    /// again.
    #[arg(long)]
    pub repair: bool,
    /// Differences listed per table (all are counted).
    #[arg(long, value_name = "N", default_value_t = crate::engine::verify::DEFAULT_SHOW)]
    pub show: usize,
    /// The longest wait, in seconds, for the agent to confirm past a re-check's snapshot (and,
    /// with --repair, for each copy).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub wait: u64,
    #[command(flatten)]
    pub lever: ControlLeverArgs,
}

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Use (or create) this permanent replication slot instead of a temporary one, and confirm
    /// what was printed, so the next `tail --slot NAME` continues where this one stopped.
    #[arg(long, value_name = "NAME")]
    pub slot: Option<String>,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    // Before parsing: flags backed by variables (--token, --addr) see a .env file too. A broken
    // file is reported by the commands that read the configuration.
    let _ = crate::config::load_dotenv();
    let cli = Cli::parse();
    // Before the logging set-up: generating files reads no configuration, so a packaging build
    // with an odd environment still gets them.
    match &cli.command {
        Some(Command::Completions(args)) => return print_completions(args.shell),
        Some(Command::Man(args)) => return print_man_page(args.command.as_deref()),
        _ => {}
    }
    // `top` owns the terminal that stderr shares: a log line would tear its screen.
    if !matches!(cli.command, Some(Command::Top(_))) {
        if let Err(err) = init_tracing() {
            return config_error(err);
        }
    }
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run_engine(),
        Command::Tail(args) => run_tail(args),
        Command::Teardown(args) => run_teardown(args),
        Command::Check => run_check(),
        Command::Status(args) => run_status(args),
        Command::Pause(args) => run_lever(args, Lever::Pause),
        Command::Resume(args) => run_lever(args, Lever::Resume),
        Command::Drain(args) => run_lever(args, Lever::Drain),
        Command::Resync(args) => run_resync(args),
        Command::Retry(args) => run_retry(args),
        Command::Verify(args) => run_verify(args),
        Command::Top(args) => run_top(args),
        Command::Completions(args) => print_completions(args.shell),
        Command::Man(args) => print_man_page(args.command.as_deref()),
    }
}

/// `starwal completions SHELL`: the script for `shell`, from the same clap definitions as --help.
fn print_completions(shell: clap_complete::Shell) -> i32 {
    let mut script = Vec::new();
    clap_complete::generate(
        shell,
        &mut <Cli as clap::CommandFactory>::command(),
        "starwal",
        &mut script,
    );
    write_stdout(&script)
}

/// `starwal man [COMMAND]`: starwal(1), or starwal-COMMAND(1), which the main page's SUBCOMMANDS
/// section names (the .deb ships them all). Rendered into memory first, so a failed write is
/// reported once instead of leaving half a page.
fn print_man_page(command: Option<&str>) -> i32 {
    let mut cli = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    // Building sets each subcommand's display name (`starwal-run`) and bin name (`starwal run`),
    // which the page's title and synopsis use.
    cli.build();
    let cmd = match command {
        None => cli,
        Some(name) => match cli.find_subcommand(name) {
            Some(sub) => sub.clone(),
            None => {
                let names: Vec<&str> = cli.get_subcommands().map(|sub| sub.get_name()).collect();
                eprintln!(
                    "error: no command `{name}`; man pages exist for: {}",
                    names.join(", ")
                );
                return EXIT_CONFIG;
            }
        },
    };
    let mut page = Vec::new();
    let rendered = clap_mangen::Man::new(cmd).render(&mut page);
    match rendered {
        Ok(()) => write_stdout(&page),
        Err(err) => {
            eprintln!("error: cannot render the man page: {err}");
            EXIT_FAILURE
        }
    }
}

/// Writes a generated file to stdout. A closed pipe (`starwal man | head`) is the reader's
/// choice, not a failure: exit 0 as other Unix tools do; any other write error exits 1.
/// (The generators write into a `Vec` because clap_complete panics on a failed write.)
fn write_stdout(bytes: &[u8]) -> i32 {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(err) => {
            eprintln!("error: cannot write to stdout: {err}");
            EXIT_FAILURE
        }
    }
}

/// One thread runs everything async (Stream Load's curl calls go to tokio's blocking pool).
/// The agent's work is a pipeline of hand-offs — socket → session → pipeline → loaders — and on
/// a multi-threaded runtime every hand-off was a cross-thread wake-up: a backlog drain measured
/// 1.3–1.5 CPU-s per 500k changes on one thread against 2.0–4.4 on two workers, most of the
/// difference system time (futex wake-ups and task switches).
fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("error: cannot start the async runtime: {err}");
            EXIT_FAILURE
        })
}

fn run_engine() -> i32 {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return config_error(err),
    };
    if let Err(err) = config.require_starrocks() {
        return config_error(err);
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    // STARWAL_COMMIT_MODE=transaction against StarRocks < 4.0 is a configuration error.
    if let Ok(starrocks) = config.require_starrocks() {
        let checked = runtime.block_on(crate::engine::setup::inspect::check_commit_mode_at_start(
            starrocks,
            config.engine.commit_mode,
        ));
        if let Err(err) = checked {
            eprintln!("configuration error: {err}");
            return EXIT_CONFIG;
        }
    }
    let snapshot_only = config.engine.snapshot.mode == SnapshotMode::Only;
    match runtime.block_on(run_agent(config)) {
        Ok(RunEnd::Stopped) if snapshot_only => {
            eprintln!(
                "error: STARWAL_SNAPSHOT=only stopped before every table was copied (exit {EXIT_SNAPSHOT_INTERRUPTED}); the next start resumes the copy"
            );
            EXIT_SNAPSHOT_INTERRUPTED
        }
        Ok(RunEnd::Stopped | RunEnd::Copied) => 0,
        Err(err) => {
            report(&err);
            EXIT_FAILURE
        }
    }
}

/// `starwal run`: the control plane, the signal handler and the engine, with the shutdown timeout
/// applied from the first stop request. A drain that overruns it ends in an error (exit 1):
/// nothing is confirmed that was not loaded, so the next start resumes from the checkpoint.
async fn run_agent(config: Config) -> anyhow::Result<RunEnd> {
    let handle = Arc::new(EngineHandle::new(&config));
    // Bound first: a busy port is a startup error naming its variable, and health and status
    // answer from the first second on (also while setup is retried).
    let control = ControlServer::bind(&config.control, handle.clone()).await?;
    let addrs = control.local_addrs();
    tracing::info!(control = %addrs.grpc, metrics = ?addrs.metrics, "control plane listening");
    let (control_stop, control_stopped) = tokio::sync::oneshot::channel::<()>();
    let control_task = tokio::spawn(control.serve(async move {
        let _ = control_stopped.await;
    }));
    let signals = tokio::spawn(drain_on_signals(Signals::listen(), handle.clone()));
    // Control.Verify: a verify beside the engine, on connections of its own.
    let verifier = tokio::spawn(serve_verify(config.clone(), handle.clone()));
    let progress = (config.engine.snapshot.mode == SnapshotMode::Only
        && std::io::IsTerminal::is_terminal(&std::io::stderr()))
    .then(|| spawn_progress_bar(handle.clone()));
    let timeout = config.engine.shutdown_timeout;
    let mut stops = handle.stop_requests();
    let engine = crate::engine::run(config, handle.clone());
    tokio::pin!(engine);
    let result = loop {
        tokio::select! {
            result = &mut engine => break result,
            changed = stops.changed() => {
                if changed.is_ok() && stops.borrow().is_some() {
                    match tokio::time::timeout(timeout, &mut engine).await {
                        Ok(result) => break result,
                        Err(_) => break Err(anyhow::anyhow!(
                            "the drain did not finish within STARWAL_SHUTDOWN_TIMEOUT_S={} s; exiting without confirming more (the next start resumes from the checkpoint)",
                            timeout.as_secs()
                        )),
                    }
                }
            }
        }
    };
    signals.abort();
    verifier.abort();
    if let Some(progress) = progress {
        progress.abort();
        if let Some(line) = progress_line(&handle.status().tables) {
            eprintln!("\r\x1b[2K{line}");
        }
    }
    let _ = control_stop.send(());
    match control_task.await {
        Ok(Err(err)) => tracing::warn!("control plane: {err}"),
        Err(err) => tracing::warn!("control plane task: {err}"),
        Ok(Ok(())) => {}
    }
    result.context("starwal run")
}

/// Runs each verify `Control.Verify` asks for and records its result in the handle (status,
/// metrics). It shares the agent's thread, so the engine slows while it compares; `starwal
/// verify` as a process of its own does not.
async fn serve_verify(config: Config, handle: Arc<EngineHandle>) {
    use crate::engine::verify::{self, Progress, VerifyOptions};
    use crate::state::VerifyTableStatus;
    loop {
        let tables = handle.verify_requested().await;
        let started = std::time::Instant::now();
        let options = VerifyOptions {
            tables,
            ..VerifyOptions::default()
        };
        let result = verify::verify(&config, &options, Arc::new(Progress::default())).await;
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(report) => {
                let tables: Vec<VerifyTableStatus> = report
                    .tables
                    .iter()
                    .map(|t| VerifyTableStatus {
                        table: t.table.clone(),
                        rows_compared: t.rows_compared,
                        rows_mismatched: t.missing + t.extra + t.different + t.unloadable,
                    })
                    .collect();
                let mismatched: u64 = tables.iter().map(|t| t.rows_mismatched).sum();
                tracing::info!(seconds, mismatched, "verify finished");
                for t in report.tables.iter().filter(|t| t.differs()) {
                    for d in &t.differences {
                        tracing::warn!(table = %t.table, kind = ?d.kind, key = %d.key, columns = ?d.columns, "verify: a row differs");
                    }
                }
                handle.verify_finished(seconds, Ok(tables));
            }
            Err(err) => {
                let error = crate::error_text::chain(&err).to_string();
                tracing::warn!(%error, "verify failed");
                handle.verify_finished(seconds, Err(error));
            }
        }
    }
}

/// SIGINT and SIGTERM: the one signal handler, for `run` and `tail`.
struct Signals {
    /// `None` when SIGTERM cannot be listened for (then only SIGINT stops the process).
    terminate: Option<Signal>,
}

impl Signals {
    /// Starts listening (inside the runtime).
    fn listen() -> Signals {
        let terminate = match signal(SignalKind::terminate()) {
            Ok(terminate) => Some(terminate),
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only SIGINT stops starwal");
                None
            }
        };
        Signals { terminate }
    }

    /// Completes at the next SIGINT or SIGTERM.
    async fn next(&mut self) {
        match &mut self.terminate {
            Some(terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// `run`: the first signal asks the engine to drain; a second exits at once (status 1).
async fn drain_on_signals(mut signals: Signals, handle: Arc<EngineHandle>) {
    signals.next().await;
    tracing::info!("signal received: draining (send it again to exit at once)");
    handle.request_stop(StopRequest::Drain);
    signals.next().await;
    // Nothing is confirmed that was not loaded, so exiting mid-drain loses nothing: the next
    // start streams the rest again.
    tracing::warn!("second signal: exiting without finishing the drain");
    std::process::exit(EXIT_FAILURE);
}

/// One line of copy progress for a terminal (`None` before any copy is planned): tables done,
/// rows copied of the estimate, rate and time left.
fn progress_line(tables: &[TableStatus]) -> Option<String> {
    let copies: Vec<_> = tables.iter().filter_map(|t| t.copy.as_ref()).collect();
    if copies.is_empty() {
        return None;
    }
    let done = copies.iter().filter(|c| c.state == CopyState::Done).count();
    let rows: u64 = copies.iter().map(|c| c.rows_copied).sum();
    let estimated: u64 = copies
        .iter()
        .map(|c| c.rows_estimated.max(c.rows_copied))
        .sum();
    let rate: f64 = copies.iter().map(|c| c.rows_per_second).sum();
    let percent = if estimated == 0 {
        100.0
    } else {
        rows as f64 * 100.0 / estimated as f64
    };
    let mut line = format!(
        "copying: {done}/{} tables, {rows}/{estimated} rows ({percent:.0}%)",
        copies.len()
    );
    if rate > 0.0 {
        let left = estimated.saturating_sub(rows) as f64 / rate;
        line.push_str(&format!(
            ", {rate:.0} rows/s, ETA {}:{:02}",
            (left / 60.0) as u64,
            (left % 60.0) as u64
        ));
    }
    Some(line)
}

/// Redraws [`progress_line`] on stderr twice a second (`STARWAL_SNAPSHOT=only` on a terminal).
fn spawn_progress_bar(handle: Arc<EngineHandle>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use std::io::Write as _;
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        loop {
            ticker.tick().await;
            if let Some(line) = progress_line(&handle.status().tables) {
                let mut stderr = std::io::stderr().lock();
                let _ = write!(stderr, "\r\x1b[2K{line}");
                let _ = stderr.flush();
            }
        }
    })
}

fn run_check() -> i32 {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return config_error(err),
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let items = runtime.block_on(crate::engine::check::check(&config));
    for item in &items {
        println!(
            "{} {}: {}",
            if item.ok { "ok  " } else { "FAIL" },
            item.subject,
            item.detail
        );
    }
    let failed = items.iter().filter(|item| !item.ok).count();
    if failed == 0 {
        println!("all {} checks passed", items.len());
        0
    } else {
        println!("{failed} of {} checks failed", items.len());
        EXIT_FAILURE
    }
}

fn run_teardown(args: TeardownArgs) -> i32 {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return config_error(err),
    };
    let pg = &config.postgres;
    if !args.yes {
        eprintln!(
            "teardown would drop replication slot `{}`, publication `{}` and the checkpoint state of the slot in schema `{}` on {}; StarRocks tables are kept. Run again with --yes to do it.",
            pg.slot, pg.publication, pg.state_schema, pg.conn
        );
        return EXIT_CONFIG;
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(crate::engine::teardown::teardown(pg)) {
        Ok(report) => {
            let said = |done: bool, what: String| {
                println!("{} {what}", if done { "dropped" } else { "not found:" })
            };
            said(
                report.slot_dropped,
                format!("replication slot `{}`", pg.slot),
            );
            said(
                report.publication_dropped,
                format!("publication `{}`", pg.publication),
            );
            said(
                report.state_cleared,
                format!("checkpoint state in schema `{}`", pg.state_schema),
            );
            0
        }
        Err(err) => {
            report(&err.into());
            EXIT_FAILURE
        }
    }
}

/// How log lines are written (`STARWAL_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    /// One human-readable line per event (the default).
    Text,
    /// One JSON object per line, for log pipelines: `timestamp`, `level`, `target`, `fields`
    /// (the message and the event's own fields: `table`, `lsn`, `label`, …) and the spans.
    Json,
}

impl LogFormat {
    /// Reads `STARWAL_LOG_FORMAT` (after `.env`). Unset or empty is text; anything but `text`
    /// or `json` is a configuration error naming the variable: a log pipeline expecting JSON
    /// must not get text because of a typo.
    fn from_env() -> Result<LogFormat, ConfigError> {
        let value = match std::env::var_os("STARWAL_LOG_FORMAT") {
            None => return Ok(LogFormat::Text),
            Some(value) => value.to_string_lossy().trim().to_ascii_lowercase(),
        };
        match value.as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(ConfigError::Invalid {
                var: "STARWAL_LOG_FORMAT",
                value,
                expected: "text or json",
            }),
        }
    }
}

/// Installs the log subscriber for every subcommand, in the format `STARWAL_LOG_FORMAT` names.
/// Called before any configuration is read, so its own error (a bad format) is printed plainly.
fn init_tracing() -> Result<(), ConfigError> {
    use tracing_subscriber::EnvFilter;
    let format = LogFormat::from_env()?;
    // Logs go to stderr: stdout belongs to the data (tail's JSON lines).
    let filter = EnvFilter::try_from_env("STARWAL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .init(),
        // No colour codes inside JSON strings, and the target kept: a pipeline filters on it.
        LogFormat::Json => builder.json().with_ansi(false).with_target(true).init(),
    }
    Ok(())
}

/// Prints a failure with each cause once (`error_text`): anyhow's `{:#}` would repeat the causes
/// our errors already print.
fn report(error: &anyhow::Error) {
    eprintln!("error: {}", crate::error_text::chain(&**error));
}

fn config_error(error: ConfigError) -> i32 {
    eprintln!("configuration error: {error}");
    EXIT_CONFIG
}

fn run_tail(args: TailArgs) -> i32 {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return config_error(err),
    };
    if let Some(slot) = &args.slot {
        if !config::is_identifier(slot) || slot.contains('$') {
            eprintln!(
                "usage error: --slot `{slot}`: expected lower-case letters, digits and underscores"
            );
            return EXIT_CONFIG;
        }
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let options = TailOptions {
        permanent_slot: args.slot,
    };
    let tail = async {
        let mut signals = Signals::listen();
        let shutdown = async move {
            signals.next().await;
            tracing::info!("stopping");
        };
        tail::run(&config.postgres, options, shutdown).await
    };
    match runtime.block_on(tail) {
        Ok(()) => 0,
        Err(err) => {
            report(&err);
            EXIT_FAILURE
        }
    }
}

fn run_status(args: ControlClientArgs) -> i32 {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(control_client::status(&args.addr)) {
        Ok(status) if args.json => {
            println!("{}", control_client::status_json(&status));
            0
        }
        Ok(status) => {
            print!("{}", control_client::status_text(&status));
            0
        }
        Err(err) => control_client_error(err),
    }
}

/// `--token`, unless empty (an empty STARWAL_CONTROL_TOKEN means none, as on the agent); else
/// the file STARWAL_CONTROL_TOKEN_FILE names, so `kubectl exec … starwal drain` in the agent's
/// pod finds the token the agent reads from its mounted Secret.
fn lever_token(args: &ControlLeverArgs) -> Result<Option<Secret>, ConfigError> {
    token_or_file(args.token.as_deref())
}

/// [`lever_token`]'s rule for any `--token` value (`top` has its own arguments).
fn token_or_file(token: Option<&str>) -> Result<Option<Secret>, ConfigError> {
    if let Some(token) = token.filter(|token| !token.is_empty()) {
        return Ok(Some(Secret::new(token)));
    }
    match std::env::var_os("STARWAL_CONTROL_TOKEN_FILE").filter(|path| !path.is_empty()) {
        None => Ok(None),
        Some(path) => crate::secret::read_secret_file(
            "STARWAL_CONTROL_TOKEN_FILE",
            std::path::Path::new(&path),
        )
        .map(Some)
        .map_err(ConfigError::Secret),
    }
}

fn run_lever(args: ControlLeverArgs, lever: Lever) -> i32 {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let token = match lever_token(&args) {
        Ok(token) => token,
        Err(err) => return config_error(err),
    };
    match runtime.block_on(control_client::pull(
        &args.client.addr,
        token.as_ref(),
        lever,
    )) {
        Ok(state) if args.client.json => {
            println!("{}", control_client::lever_json(lever, &state));
            0
        }
        Ok(state) => {
            println!("{}", control_client::lever_text(lever, &state));
            0
        }
        Err(err) => control_client_error(err),
    }
}

fn run_resync(args: ResyncArgs) -> i32 {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let token = match lever_token(&args.lever) {
        Ok(token) => token,
        Err(err) => return config_error(err),
    };
    let client = &args.lever.client;
    match runtime.block_on(control_client::resync(
        &client.addr,
        token.as_ref(),
        &args.table,
    )) {
        Ok(table) if client.json => {
            println!("{}", control_client::resync_json(&table));
            0
        }
        Ok(table) => {
            println!("{}", control_client::resync_text(&table));
            0
        }
        Err(err) => control_client_error(err),
    }
}

fn run_retry(args: ResyncArgs) -> i32 {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let token = match lever_token(&args.lever) {
        Ok(token) => token,
        Err(err) => return config_error(err),
    };
    let client = &args.lever.client;
    match runtime.block_on(control_client::retry(
        &client.addr,
        token.as_ref(),
        &args.table,
    )) {
        Ok(table) if client.json => {
            println!("{}", control_client::retry_json(&table));
            0
        }
        Ok(table) => {
            println!("{}", control_client::retry_text(&table));
            0
        }
        Err(err) => control_client_error(err),
    }
}

fn run_top(args: TopArgs) -> i32 {
    let token = match token_or_file(args.token.as_deref()) {
        Ok(token) => token,
        Err(err) => return config_error(err),
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let options = crate::top::TopOptions {
        addr: args.addr,
        token,
        interval_ms: args.interval_ms,
    };
    let top = async {
        // SIGINT/SIGTERM from elsewhere (Ctrl-C itself is a key on top's raw-mode terminal).
        let mut signals = Signals::listen();
        crate::top::run(options, async move { signals.next().await }).await
    };
    // The terminal is restored before `run` returns, so errors print on a normal screen.
    match runtime.block_on(top) {
        Ok(()) => 0,
        Err(err) if err.is_usage() => {
            eprintln!("usage error: {}", crate::error_text::chain(&err));
            EXIT_CONFIG
        }
        Err(err) => {
            report(&err.into());
            EXIT_FAILURE
        }
    }
}

fn run_verify(args: VerifyArgs) -> i32 {
    use crate::engine::verify::{self, Progress, VerifyOptions};
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return config_error(err),
    };
    let token = match lever_token(&args.lever) {
        Ok(token) => token,
        Err(err) => return config_error(err),
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let json = args.lever.client.json;
    let mut options = VerifyOptions {
        tables: args.tables.clone(),
        sample: args.sample,
        show: args.show,
        wait: Duration::from_secs(args.wait),
    };
    let run = |options: &VerifyOptions| -> Result<verify::VerifyReport, i32> {
        let progress = Arc::new(Progress::default());
        let bar = (!json && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .then(|| spawn_verify_bar(progress.clone()));
        let result = runtime.block_on(verify::verify(&config, options, progress));
        if let Some((done, thread)) = bar {
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = thread.join();
        }
        result.map_err(|err| {
            let code = if err.is_config() {
                EXIT_CONFIG
            } else {
                EXIT_FAILURE
            };
            report(&err.into());
            code
        })
    };
    let print = |report: &verify::VerifyReport| {
        if json {
            println!("{}", serde_json::to_string(report).unwrap_or_default());
        } else {
            print!("{}", verify::report_text(report));
        }
    };
    let mut result = match run(&options) {
        Ok(result) => result,
        Err(code) => return code,
    };
    print(&result);
    if args.repair && result.differs() {
        let differing: Vec<(String, Option<crate::state::PartialResync>)> = result
            .tables
            .iter()
            .filter(|t| t.differs())
            .map(|t| (t.table.clone(), t.repair.clone()))
            .collect();
        let addr = &args.lever.client.addr;
        let repaired = runtime.block_on(repair(
            addr,
            token.as_ref(),
            &differing,
            Duration::from_secs(args.wait.max(1) * 10),
        ));
        if let Err(err) = repaired {
            return match err.downcast::<ClientError>() {
                Ok(err) => control_client_error(err),
                Err(err) => {
                    report(&err);
                    EXIT_FAILURE
                }
            };
        }
        if !json {
            let what: Vec<String> = differing
                .iter()
                .map(|(table, partial)| match partial {
                    Some(p) => format!(
                        "{table} ({} of {} chunks copied, {} rows deleted)",
                        p.chunks.len(),
                        p.boundaries.len() + 1,
                        p.delete_keys.len()
                    ),
                    None => format!("{table} (copied whole)"),
                })
                .collect();
            println!("repaired: {}; verifying them again", what.join(", "));
        }
        options.tables = differing.into_iter().map(|(table, _)| table).collect();
        result = match run(&options) {
            Ok(result) => result,
            Err(code) => return code,
        };
        print(&result);
    }
    if result.differs() {
        EXIT_FAILURE
    } else {
        0
    }
}

/// `verify --repair`: asks the agent to copy each table again, only the differing chunks (and
/// deleting the rows only the target has) when they are known, else whole (the resync path: the
/// agent keeps streaming the other tables, and the copied one from the held position after),
/// then waits until every copy is done and the agent streams again.
async fn repair(
    addr: &str,
    token: Option<&Secret>,
    repairs: &[(String, Option<crate::state::PartialResync>)],
    bound: Duration,
) -> anyhow::Result<()> {
    for (table, partial) in repairs {
        control_client::resync_of(addr, token, table, partial.clone()).await?;
    }
    let tables: Vec<String> = repairs.iter().map(|(table, _)| table.clone()).collect();
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The agent restarts its attempt when a copy ends: an unreachable moment is expected.
        let Ok(status) = control_client::status(addr).await else {
            continue;
        };
        let copied = tables.iter().all(|name| {
            status
                .tables
                .iter()
                .any(|t| t.source == *name && t.copy.as_ref().is_some_and(|c| c.state == "done"))
        });
        if copied && status.phase == crate::control::pb::Phase::Cdc as i32 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "--repair: the copies of {} did not finish within {} s",
                tables.join(", "),
                bound.as_secs()
            );
        }
    }
}

/// The verify progress bar on stderr (a terminal only): chunks and rows so far.
fn spawn_verify_bar(
    progress: Arc<crate::engine::verify::Progress>,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    use std::sync::atomic::Ordering;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let thread = std::thread::spawn(move || {
        let mut shown = false;
        while !stop.load(Ordering::Relaxed) {
            let total = progress.chunks_total.load(Ordering::Relaxed);
            if total > 0 {
                let chunks = progress.chunks_done.load(Ordering::Relaxed);
                let rows = progress.rows.load(Ordering::Relaxed);
                let width = 30;
                let filled = (chunks * width / total.max(1)).min(width) as usize;
                eprint!(
                    "\rverifying [{}{}] {chunks}/{total} chunks, {rows} rows",
                    "#".repeat(filled),
                    " ".repeat(width as usize - filled)
                );
                shown = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if shown {
            eprint!("\r\x1b[2K");
        }
    });
    (done, thread)
}

fn control_client_error(error: ClientError) -> i32 {
    if error.is_usage() {
        eprintln!("usage error: {error}");
        EXIT_CONFIG
    } else {
        report(&error.into());
        EXIT_FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_sums_the_tables_being_copied() {
        let config = Config::from_vars(vec![
            ("STARWAL_PG_URL".into(), "postgres://u@localhost/db".into()),
            ("STARWAL_TABLES".into(), "public.a,public.b".into()),
        ])
        .unwrap();
        let handle = EngineHandle::new(&config);
        handle.add_table("public.a", "a");
        handle.add_table("public.b", "b");
        assert_eq!(progress_line(&handle.status().tables), None);
        handle.copy_planned("public.a", 1000, 4, 0, 0);
        handle.copy_planned("public.b", 3000, 3, 1, 1000);
        handle.copy_progressed("public.a", 1000, true);
        handle.copy_done("public.a");
        let line = progress_line(&handle.status().tables).unwrap();
        assert!(
            line.starts_with("copying: 1/2 tables, 2000/4000 rows (50%)"),
            "{line}"
        );
    }
}
