//! The `starrocks-sim` command line: flags → [`SimOptions`], start, print one ready line, run
//! until SIGTERM/SIGINT.
//!
//! Owns argument parsing and process exit codes (0 after a signal-driven stop, 1 when the sim
//! cannot start, 2 for bad arguments — clap's own). It does no protocol work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use starrocks_sim::{Sim, SimOptions, SizeLimits};

/// StarRocks-compatible test and demo stand-in for starwal. Not a database.
#[derive(Debug, Parser)]
#[command(name = "starrocks-sim", version)]
struct Args {
    /// FE HTTP listen address (Stream Load entry point, 307 to the BE).
    #[arg(long, default_value = "127.0.0.1:8030")]
    fe_http: SocketAddr,
    /// BE HTTP listen address (Stream Load execution, error logs).
    #[arg(long, default_value = "127.0.0.1:8040")]
    be_http: SocketAddr,
    /// FE MySQL-protocol listen address (metadata, DDL, verification queries).
    #[arg(long)]
    mysql: Option<SocketAddr>,
    /// Admin endpoint (faults, counters, tables) listen address.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Basic-auth user.
    #[arg(long, default_value = "root")]
    user: String,
    /// Basic-auth password (empty allowed).
    #[arg(long, default_value = "")]
    password: String,
    /// Directory for the JSON snapshot (tables and labels survive restarts).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// BE `streaming_load_max_mb`: largest body in MiB.
    #[arg(long, default_value_t = 102_400)]
    streaming_load_max_mb: u64,
    /// BE `streaming_load_max_batch_size_mb`: largest JSON body in MiB.
    #[arg(long, default_value_t = 100)]
    json_max_mb: u64,
    /// Accept HTTP/1.1 Stream Loads without `Expect: 100-continue` (older FEs).
    #[arg(long)]
    no_require_100_continue: bool,
    /// Answer `StreamLoadPutTimeMs` like StarRocks before 2.5.
    #[arg(long)]
    legacy_put_time_field: bool,
    /// StarRocks version to emulate (`select current_version()`); below 4.0 there are no
    /// multi-table transactions (`transaction_type: multi` is ignored, as 3.x does).
    #[arg(long, default_value = starrocks_sim::DEFAULT_STARROCKS_VERSION, value_parser = version)]
    starrocks_version: String,
}

fn version(v: &str) -> Result<String, String> {
    starrocks_sim::parse_starrocks_version(v).map(|_| v.to_string())
}

/// Runs the binary.
pub(crate) fn main() -> ExitCode {
    let args = Args::parse();
    let options = SimOptions {
        fe_http: args.fe_http,
        be_http: args.be_http,
        mysql: args.mysql,
        admin: args.admin,
        user: args.user,
        password: args.password,
        data_dir: args.data_dir,
        limits: SizeLimits {
            max_body_bytes: args.streaming_load_max_mb.saturating_mul(1024 * 1024),
            max_json_bytes: args.json_max_mb.saturating_mul(1024 * 1024),
        },
        require_100_continue: !args.no_require_100_continue,
        legacy_put_time_field: args.legacy_put_time_field,
        starrocks_version: args.starrocks_version,
        ..SimOptions::default()
    };
    let sim = match Sim::start(options) {
        Ok(sim) => sim,
        Err(e) => {
            let mut message = format!("starrocks-sim: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            return ExitCode::from(1);
        }
    };
    let addrs = sim.addrs();
    let admin = addrs
        .admin
        .map_or_else(|| "off".to_string(), |a| a.to_string());
    let mysql = addrs
        .mysql
        .map_or_else(|| "off".to_string(), |a| a.to_string());
    println!(
        "starrocks-sim ready fe_http={} be_http={} admin={admin} mysql={mysql}",
        addrs.fe_http, addrs.be_http
    );
    if let Err(e) = wait_for_signal() {
        eprintln!("starrocks-sim: cannot wait for signals: {e}");
        sim.shutdown();
        return ExitCode::from(1);
    }
    sim.shutdown();
    ExitCode::SUCCESS
}

fn wait_for_signal() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}
