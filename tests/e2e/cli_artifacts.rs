//! The files generated from the command line and shipped by the .deb: `starwal completions`
//! (accepted by each shell's parser), `starwal man` (a page per command that groff renders without
//! warnings) and the systemd unit in `packaging/systemd/` (the settings the README promises). The
//! package itself is built, installed and run in `.ci/run` (it needs root).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use clap::CommandFactory as _;

fn starwal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_starwal"))
        .args(args)
        .output()
        .expect("run starwal")
}

fn stdout_of(args: &[&str]) -> String {
    let output = starwal(args);
    assert!(
        output.status.success(),
        "starwal {args:?}: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Whether `program` can be started (it is installed).
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs `program args` with `input` on stdin; returns (success, stderr).
fn feed(program: &str, args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("start {program}: {err}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The subcommands, from the same definitions the binary uses.
fn subcommands() -> Vec<String> {
    starwal::cli::Cli::command()
        .get_subcommands()
        .map(|sub| sub.get_name().to_string())
        .collect()
}

#[test]
fn bash_completion_parses_and_names_every_command() {
    let script = stdout_of(&["completions", "bash"]);
    let (ok, stderr) = feed("bash", &["-n"], &script);
    assert!(ok, "bash -n rejects the completion script: {stderr}");
    assert!(script.contains("complete -F _starwal"), "{script}");
    for name in subcommands() {
        assert!(script.contains(&name), "bash completion lacks `{name}`");
    }
}

#[test]
fn zsh_and_fish_completions_parse_where_the_shell_is_installed() {
    for (shell, args) in [("zsh", &["-n"][..]), ("fish", &["--no-execute"][..])] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.contains("starwal"), "{shell}: {script}");
        if !installed(shell) {
            eprintln!("skipped: {shell} is not installed, its script is only generated");
            continue;
        }
        let (ok, stderr) = feed(shell, args, &script);
        assert!(ok, "{shell} rejects the completion script: {stderr}");
    }
}

#[test]
fn completions_for_an_unknown_shell_is_a_usage_error() {
    let output = starwal(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn man_page_has_a_title_and_names_every_command() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH starwal 1"), "{page}");
    for name in subcommands() {
        // The SUBCOMMANDS section links each command's page: starwal-NAME(1).
        assert!(
            page.contains(&format!("starwal\\-{name}(1)")),
            "the man page does not name `{name}`"
        );
        let sub = stdout_of(&["man", &name]);
        assert!(
            sub.contains(&format!(".TH starwal-{name} 1")),
            "starwal man {name}: {sub}"
        );
    }
}

#[test]
fn man_for_an_unknown_command_is_a_usage_error() {
    let output = starwal(&["man", "nope"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("man pages exist for: run"), "{stderr}");
}

/// groff (Debian: groff-base, which man-db needs) renders every page without a warning.
#[test]
fn man_pages_render_without_warnings() {
    if !installed("groff") {
        eprintln!("skipped: groff is not installed (Debian package groff-base)");
        return;
    }
    let mut pages = vec![stdout_of(&["man"])];
    pages.extend(subcommands().iter().map(|name| stdout_of(&["man", name])));
    for page in pages {
        // -k: preconv, as man does, for the UTF-8 in the description; -ww: every warning.
        let (ok, stderr) = feed("groff", &["-k", "-man", "-Tutf8", "-ww", "-z"], &page);
        assert!(ok && stderr.is_empty(), "groff: {stderr}\n{page}");
    }
}

#[test]
fn systemd_unit_reads_the_env_file_restarts_and_outwaits_the_drain() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/starwal.service");
    let unit = std::fs::read_to_string(&path).expect("read the unit");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .collect();
    let value = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("the unit has no {key}="))
    };
    assert_eq!(value("EnvironmentFile"), "/etc/starwal/starwal.env");
    assert_eq!(value("ExecStart"), "/usr/bin/starwal run");
    assert_eq!(value("Restart"), "on-failure");
    assert_eq!(value("KillSignal"), "SIGTERM");
    let stop: u64 = value("TimeoutStopSec").parse().expect("seconds");
    assert!(
        stop > starwal::config::DEFAULT_SHUTDOWN_TIMEOUT_S,
        "TimeoutStopSec={stop} must outlast the agent's own drain timeout"
    );
    for (key, expected) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert_eq!(value(key), expected, "{key}");
    }
}
