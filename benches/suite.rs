//! The benchmark suite behind `bench/run.sh`: end-to-end numbers for the release `starwal run`
//! binary between a throwaway Postgres cluster (the e2e harness) and an in-process
//! `starrocks-sim`, compared with what Postgres itself can do (`pg_recvlogical`, raw `COPY`).
//!
//! `suite [all|backlog|sustained|idle|snapshot|memory|bigtxn]` runs the scenarios (see `bench/README.md` for
//! what each measures), each with its own cluster and sim, and writes
//! `bench/results/<date>-<scenario>.json` and `.md` for every one, printing the markdown.
//! Sizes come from `BENCH_*` variables ([`settings`]). It measures and asserts nothing: a
//! scenario that fails or cannot run (a missing tool, an agent without the snapshot feature)
//! still writes its result files, saying why, and the next scenario runs. The exit code is 1
//! when a scenario failed, 0 otherwise (skipped is not failed).
//!
//! The driver's own code lives in `bench/suite/`, one module per concern.

#[path = "../tests/e2e/harness/mod.rs"]
#[allow(unused_imports)]
mod harness;

#[path = "../bench/suite/agent.rs"]
mod agent;
#[path = "../bench/suite/backlog.rs"]
mod backlog;
#[path = "../bench/suite/bigtxn.rs"]
mod bigtxn;
#[path = "../bench/suite/cluster.rs"]
mod cluster;
#[path = "../bench/suite/idle.rs"]
mod idle;
#[path = "../bench/suite/machine.rs"]
mod machine;
#[path = "../bench/suite/memory.rs"]
mod memory;
#[path = "../bench/suite/recvlogical.rs"]
mod recvlogical;
#[path = "../bench/suite/report.rs"]
mod report;
#[path = "../bench/suite/settings.rs"]
mod settings;
#[path = "../bench/suite/snapshot.rs"]
mod snapshot;
#[path = "../bench/suite/sustained.rs"]
mod sustained;
#[path = "../bench/suite/workload.rs"]
mod workload;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use report::{Outcome, Report};
use settings::{Scenario, Settings};

fn main() -> ExitCode {
    // `cargo bench` appends `--bench`; anything starting with `-` is ignored.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let scenarios = match args.first().map(String::as_str) {
        None | Some("all") => Scenario::ALL.to_vec(),
        Some(name) => match Scenario::parse(name) {
            Some(scenario) => vec![scenario],
            None => {
                eprintln!(
                    "unknown scenario `{name}`: expected all, backlog, sustained, idle, snapshot, \
                     memory or bigtxn"
                );
                return ExitCode::from(2);
            }
        },
    };
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("bench: {err:#}");
            return ExitCode::from(2);
        }
    };

    // The harness names agent logs `$TMPDIR/starwal_agent_<n>.log` with a per-process counter,
    // so concurrent test runs would write the same files: give this process a directory of its
    // own (set before any thread exists).
    let private_tmp = std::env::temp_dir().join(format!("starwal-bench-{}", std::process::id()));
    if let Err(err) = std::fs::create_dir_all(&private_tmp) {
        eprintln!("bench: create {}: {err}", private_tmp.display());
        return ExitCode::FAILURE;
    }
    std::env::set_var("TMPDIR", &private_tmp);

    // Without BENCH_MODES, one run with the environment's variables; with it, every scenario
    // once per mode.
    let runs: Vec<Settings> = if settings.modes.is_empty() {
        vec![settings.clone()]
    } else {
        settings
            .modes
            .iter()
            .map(|mode| settings.with_mode(mode))
            .collect()
    };
    let mut failed = false;
    for (settings, scenario) in runs
        .iter()
        .flat_map(|s| scenarios.iter().map(move |&scenario| (s, scenario)))
    {
        match &settings.mode {
            Some(mode) => eprintln!(
                "bench: running scenario {} in mode {}",
                scenario.name(),
                mode.name
            ),
            None => eprintln!("bench: running scenario {}", scenario.name()),
        }
        let report = run_scenario(scenario, settings);
        failed |= matches!(report.outcome, Outcome::Failed(_));
        match report.write(settings) {
            Ok((json, md)) => {
                println!("{}", report.markdown(settings));
                eprintln!("bench: wrote {} and {}", json.display(), md.display());
            }
            Err(err) => {
                eprintln!("bench: could not write the results: {err:#}");
                failed = true;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&private_tmp);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs one scenario on a fresh two-thread runtime. A panic (the harness panics when Postgres
/// cannot start) becomes a failed report instead of ending the suite.
fn run_scenario(scenario: Scenario, settings: &Settings) -> Report {
    let mut report = Report::new(scenario);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report.outcome = Outcome::Failed(format!("tokio runtime: {err}"));
            return report;
        }
    };
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async {
            match scenario {
                Scenario::Backlog => backlog::run(settings, &mut report).await,
                Scenario::Sustained => sustained::run(settings, &mut report).await,
                Scenario::Idle => idle::run(settings, &mut report).await,
                Scenario::Snapshot => snapshot::run(settings, &mut report).await,
                Scenario::Memory => memory::run(settings, &mut report).await,
                Scenario::BigTxn => bigtxn::run(settings, &mut report).await,
            }
        })
    }));
    match result {
        Ok(Ok(())) => {} // completed, or skipped as the scenario said
        // A mode this agent was not built with (BENCH_MODES) is not a failure of the run.
        Ok(Err(err)) if format!("{err:#}").contains(agent::MODE_UNAVAILABLE) => {
            let text = format!("{err:#}");
            let why = text
                .find(agent::MODE_UNAVAILABLE)
                .map_or(text.as_str(), |at| &text[at..]);
            report.outcome = Outcome::Skipped(why.lines().next().unwrap_or(why).to_owned())
        }
        Ok(Err(err)) => report.outcome = Outcome::Failed(format!("{err:#}")),
        Err(panic) => {
            report.outcome = Outcome::Failed(format!("panicked: {}", panic_message(&panic)))
        }
    }
    // Close the cluster connections' tasks before the next scenario's cluster starts.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    report
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}
