//! `starwal top` as a person uses it: inside a real terminal (a detached `tmux` session, keys
//! sent with `send-keys`, the screen read with `capture-pane`) against a running agent.
//! Covered: the phase, the table's rows and its snapshot copy bar on screen; `p`/`r` pausing and
//! resuming the agent with the token (checked through `starwal status` too); the agent killed and
//! restarted (the loss on screen, then the view following the new process); a load whose answer
//! StarRocks holds counted in flight; a refusal without
//! the token shown on screen; `q` and Ctrl-C ending it with exit 0 and the shell's screen back;
//! no terminal → exit 2. Skipped with a message when tmux is absent, except in CI (`.ci/run`
//! installs it).

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use starrocks_sim::{FaultKind, LoadFault};

use crate::harness::agent::{start_sim, status_json, wait_until, AgentSpec, TARGET_DB};
use crate::harness::{unique_name, Cluster};

const TIMEOUT: Duration = Duration::from_secs(60);
const TOKEN: &str = "top-s3cret";

/// A detached tmux server of its own (its own socket file), killed and its socket removed when
/// dropped (tmux leaves the file behind).
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A 160×40 session running `sh`; `None` when tmux is not installed (outside CI).
    fn start() -> Option<Tmux> {
        let socket = std::env::temp_dir()
            .join(format!(
                "{}_{}.tmux",
                unique_name("starwal_top"),
                std::process::id()
            ))
            .to_string_lossy()
            .into_owned();
        let tmux = Tmux { socket };
        // -u: UTF-8 whatever the locale (the screen draws box lines and arrows).
        let started = Command::new("tmux")
            .args(["-u", "-S", &tmux.socket, "-f", "/dev/null"])
            .args([
                "new-session",
                "-d",
                "-s",
                "top",
                "-x",
                "160",
                "-y",
                "40",
                "sh",
            ])
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .output();
        match started {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                assert!(
                    std::env::var("CI").is_err(),
                    "tmux is not installed (.ci/run installs it)"
                );
                eprintln!(
                    "SKIPPED the starwal top test: tmux is not installed (apt-get install tmux)"
                );
                None
            }
            Err(err) => panic!("tmux: {err}"),
            Ok(output) => {
                assert!(output.status.success(), "tmux new-session: {output:?}");
                Some(tmux)
            }
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = Command::new("tmux")
            .args(["-S", &self.socket])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux");
        assert!(output.status.success(), "tmux {args:?}: {output:?}");
        output
    }

    /// Types `keys` (tmux key names: `Enter`, `C-c`, or literal text).
    fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// The visible screen.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// Waits until the screen satisfies `condition`; panics with the screen otherwise.
    async fn wait_for(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let mut screen = String::new();
        let shown = wait_until(TIMEOUT, || {
            screen = self.screen();
            condition(&screen)
        })
        .await;
        assert!(shown, "the screen never showed {what}:\n{screen}");
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-S", &self.socket, "kill-server"])
            .stdin(Stdio::null())
            .output();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The screen line of table `source` in the tables block.
fn table_row<'a>(screen: &'a str, source: &str) -> Option<&'a str> {
    screen
        .lines()
        .find(|line| line.contains(source) && !line.contains("chunks") && !line.contains('→'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_the_agent_and_pulls_its_levers_in_a_terminal() {
    let Some(tmux) = Tmux::start() else { return };
    let db = Cluster::shared().create_database("cli_top").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'copied ' || g FROM generate_series(1, 321) g;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_CONTROL_TOKEN", TOKEN);
    let mut agent = spec.start_streaming().await;
    client
        .batch_execute(
            "INSERT INTO t SELECT g, 'streamed ' || g FROM generate_series(1001, 1777) g",
        )
        .await
        .unwrap();

    let starwal = env!("CARGO_BIN_EXE_starwal");
    let url = spec.control_url();
    tmux.send(&[
        &format!(
            "{starwal} top --addr {url} --token {TOKEN} --interval-ms 200; echo \"top exited $?\""
        ),
        "Enter",
    ]);
    // Phase, health, the table with its 321 copied + 777 streamed rows loaded, the copy's bar.
    let screen = tmux
        .wait_for("CDC and the table's 1098 rows", |screen| {
            screen.contains("phase CDC")
                && table_row(screen, "public.t").is_some_and(|row| row.contains(" 1098 "))
        })
        .await;
    assert!(screen.contains("health SERVING (streaming)"), "{screen}");
    assert!(screen.contains("paused: no"), "{screen}");
    let row = table_row(&screen, "public.t").unwrap();
    assert!(row.contains(" 777 "), "inserted count: {row}\n{screen}");
    let bar = screen
        .lines()
        .find(|line| line.contains("public.t") && line.contains("chunks"))
        .unwrap_or_else(|| panic!("no snapshot copy bar:\n{screen}"));
    assert!(
        bar.contains("done") && bar.contains("321/"),
        "{bar}\n{screen}"
    );
    assert!(!screen.contains(TOKEN), "the token on screen:\n{screen}");
    eprintln!("starwal top's screen:\n{screen}");

    // p pauses the agent (the screen and the agent's own status say so); r resumes it.
    tmux.send(&["p"]);
    tmux.wait_for("paused: yes", |screen| screen.contains("paused: yes"))
        .await;
    assert_eq!(status_json(&spec).unwrap()["paused"], true);
    tmux.send(&["r"]);
    tmux.wait_for("paused: no after resume", |screen| {
        screen.contains("paused: no") && screen.contains("resumed")
    })
    .await;
    assert_eq!(status_json(&spec).unwrap()["paused"], false);

    // The agent dies: the screen says the connection is lost and keeps what it knew; once the
    // agent is back, the view follows it again by itself.
    agent.kill9();
    tmux.wait_for("the lost connection", |screen| {
        screen.contains("connection lost") && screen.contains("public.t")
    })
    .await;
    let agent = spec.start_streaming().await;
    tmux.wait_for("the agent back", |screen| {
        screen.contains("phase CDC") && !screen.contains("connection lost")
    })
    .await;

    // A load StarRocks holds the answer of is in flight until it answers: on screen and in the
    // agent's status alike.
    sim.faults().inject(
        LoadFault::new(FaultKind::CommitThenStall { stall_ms: 4_000 })
            .times(1)
            .on_table(TARGET_DB, "t"),
    );
    client
        .batch_execute("INSERT INTO t VALUES (5000, 'held')")
        .await
        .unwrap();
    let in_flight = |spec: &AgentSpec| {
        status_json(spec).and_then(|status| status["tables"][0]["loads_in_flight"].as_u64())
    };
    tmux.wait_for("a load in flight", |screen| {
        screen.contains("loads in flight 1") && in_flight(&spec) == Some(1)
    })
    .await;
    tmux.wait_for("the load answered", |screen| {
        screen.contains("loads in flight 0") && in_flight(&spec) == Some(0)
    })
    .await;

    // q: exit 0, the shell's screen back (the command line is on it again).
    tmux.send(&["q"]);
    let screen = tmux
        .wait_for("top exited 0", |screen| screen.contains("top exited 0"))
        .await;
    assert!(screen.contains("top --addr"), "{screen}");
    assert!(
        !screen.contains("phase CDC"),
        "the view stayed on screen:\n{screen}"
    );
    // Raw mode is off again: the line discipline is canonical and echoes.
    tmux.send(&[
        "stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo | tr '\\n' ' '; echo stty-done",
        "Enter",
    ]);
    let screen = tmux
        .wait_for("the terminal modes", |screen| {
            screen.contains("icanon echo stty-done")
        })
        .await;
    assert!(!screen.contains("-icanon"), "{screen}");

    // Without the token the agent refuses the lever, and the screen says why; Ctrl-C quits.
    tmux.send(&["clear", "Enter"]);
    tmux.send(&[
        &format!("{starwal} top --addr {url}; echo \"second top exited $?\""),
        "Enter",
    ]);
    tmux.wait_for("the second view", |screen| screen.contains("phase CDC"))
        .await;
    tmux.send(&["p"]);
    tmux.wait_for("the refusal", |screen| {
        // The notice wraps: look for its words, not one line.
        screen.contains("refused") && screen.contains("Control.Pause") && screen.contains("--token")
    })
    .await;
    assert_eq!(status_json(&spec).unwrap()["paused"], false);
    tmux.send(&["C-c"]);
    tmux.wait_for("second top exited 0", |screen| {
        screen.contains("second top exited 0")
    })
    .await;

    agent.stop_cleanly();
}

#[test]
fn top_without_a_terminal_exits_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_starwal"))
        .args(["top", "--addr", "http://127.0.0.1:1"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run starwal");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not one"), "{stderr}");
    assert!(stderr.contains("status --json"), "{stderr}");
    assert!(output.stdout.is_empty(), "drew on a pipe: {output:?}");
}
