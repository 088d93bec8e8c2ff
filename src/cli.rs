//! The command line: subcommands, `--help`, and turning errors into exit codes.
//!
//! Exit codes: 0 success, 1 a runtime failure, 2 a configuration or usage error (so scripts and
//! Kubernetes can tell "fix your settings" from "something broke"). Errors are printed with their
//! whole cause chain; none contains a password (invariant 10).

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConfigError};
use crate::tail::{self, TailOptions};

/// Exit code for configuration and usage errors.
pub const EXIT_CONFIG: i32 = 2;
/// Exit code for runtime failures.
pub const EXIT_FAILURE: i32 = 1;

/// starwal replicates PostgreSQL tables into StarRocks in real time, through logical replication
/// (pgoutput) and Stream Load. It is configured with STARWAL_* environment variables (a .env file
/// in the working directory is read too); see .env.example.
#[derive(Debug, Parser)]
#[command(name = "starwal", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
}

#[derive(Debug, clap::Args)]
pub struct TeardownArgs {
    /// Confirm: without it, teardown only says what it would drop.
    #[arg(long)]
    pub yes: bool,
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
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Tail(args) => run_tail(args),
        Command::Teardown(args) => run_teardown(args),
        Command::Check => run_check(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("error: cannot start the async runtime: {err}");
            EXIT_FAILURE
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

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    // Logs go to stderr: stdout belongs to the data (tail's JSON lines).
    let filter = EnvFilter::try_from_env("STARWAL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn report(error: &anyhow::Error) {
    eprintln!("error: {error:#}");
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
    match runtime.block_on(tail::run(&config.postgres, options)) {
        Ok(()) => 0,
        Err(err) => {
            report(&err);
            EXIT_FAILURE
        }
    }
}
