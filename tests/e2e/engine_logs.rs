//! Issue 17, items 4 and 5, through the binary: `STARWAL_LOG_FORMAT=json` makes every log line a
//! JSON object (timestamp, level, target, fields), and the passwords and the control token come
//! from mounted secret files (`*_FILE`, the Docker/Kubernetes convention) without ever reaching
//! a log line. Bad values exit 2 naming the variables, before anything connects.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use starrocks_sim::{Sim, SimOptions};

use crate::harness::agent::{source_rows, target_rows, wait_for_rows, AgentSpec};
use crate::harness::{unique_name, Cluster, Role};

const TIMEOUT: Duration = Duration::from_secs(60);
/// Distinctive secrets, so "never in a log line" is a meaningful search.
const STARROCKS_SECRET: &str = "sr-file-secret-5b1e";
const TOKEN_SECRET: &str = "tok-file-secret-9c2d";

/// Runs `starwal <args>` with only `env`; returns (exit code, stdout, stderr).
fn cli(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_starwal"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run starwal");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A directory of secret files, removed when dropped (as a mounted Secret volume would hold).
struct SecretDir(PathBuf);

impl SecretDir {
    fn new() -> SecretDir {
        let dir = std::env::temp_dir().join(format!(
            "{}_{}",
            unique_name("starwal-secrets"),
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("secret dir");
        SecretDir(dir)
    }

    /// Writes `content` plus the trailing newline `kubectl create secret --from-file` of an
    /// `echo`ed file would hold; returns the path.
    fn file(&self, name: &str, content: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, format!("{content}\n")).expect("secret file");
        path.to_str().expect("utf-8 temp path").to_owned()
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every non-empty line of `log` as a JSON object with the fields a log pipeline relies on.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}\n--- log:\n{log}"));
            for key in ["timestamp", "level", "target"] {
                assert!(value[key].is_string(), "no {key}: {line}");
            }
            assert!(value["fields"].is_object(), "no fields: {line}");
            value
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue17_secrets_from_files_and_json_logs() {
    let db = Cluster::shared().create_database("engine_logs").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let sim = Sim::start(SimOptions {
        password: STARROCKS_SECRET.into(),
        mysql: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SimOptions::default()
    })
    .expect("start the sim");
    let pg_secret = Role::Scram.password().expect("scram has a password");
    let secrets = SecretDir::new();
    let url_with_password = db.url(Role::Scram, "disable");
    let url = url_with_password.replace(&format!(":{pg_secret}@"), "@");
    assert_ne!(url, url_with_password, "the harness URL changed form");

    let mut spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_PG_URL", &url)
        .var("STARWAL_PG_PASSWORD_FILE", &secrets.file("pg", pg_secret))
        .var(
            "STARWAL_STARROCKS_PASSWORD_FILE",
            &secrets.file("starrocks", STARROCKS_SECRET),
        )
        .var(
            "STARWAL_CONTROL_TOKEN_FILE",
            &secrets.file("token", TOKEN_SECRET),
        )
        .var("STARWAL_LOG_FORMAT", "json");
    spec.vars
        .retain(|(name, _)| name != "STARWAL_STARROCKS_PASSWORD");
    let secret_texts = [pg_secret, STARROCKS_SECRET, TOKEN_SECRET];

    // `check` reaches both sides with the passwords from the files.
    let (code, stdout, stderr) = cli(&["check"], &spec.vars);
    assert_eq!(code, 0, "{stdout}{stderr}");
    json_lines(&stderr);

    let mut agent = spec.start_streaming().await;
    client
        .batch_execute("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 50) g")
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, v FROM t").await;
    let target = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "t", &["id", "v"])).await;
    assert_eq!(source, target, "{}", agent.log());

    // The client in the agent's environment finds the token in the same file.
    let client_env = vec![(
        "STARWAL_CONTROL_TOKEN_FILE".to_owned(),
        spec.get("STARWAL_CONTROL_TOKEN_FILE").unwrap().to_owned(),
    )];
    let url = spec.control_url();
    for lever in ["pause", "resume"] {
        let (code, stdout, stderr) = cli(&[lever, "--addr", &url], &client_env);
        assert_eq!(code, 0, "{lever}: {stdout}{stderr}");
    }
    let (code, _, _) = cli(&["pause", "--addr", &url], &[]);
    assert_ne!(code, 0, "pause without the token file was accepted");

    let status = agent
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(30))
        .expect("the agent did not exit within 30 s of SIGTERM");
    let log = agent.log();
    assert!(status.success(), "{log}");
    let lines = json_lines(&log);
    assert!(
        lines
            .iter()
            .any(|line| line["fields"]["message"] == "streaming changes"),
        "{log}"
    );
    // Where the event knows its table, the table is a field a pipeline can filter on.
    assert!(
        lines
            .iter()
            .any(|line| line["fields"]["table"].as_str() == Some("t")
                || line["fields"]["table"].as_str() == Some("public.t")),
        "no line names the table in its fields:\n{log}"
    );
    assert!(
        lines.iter().any(|line| line["target"]
            .as_str()
            .is_some_and(|target| target.starts_with("starwal"))),
        "{log}"
    );
    for secret in secret_texts {
        assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
        assert!(!stderr.contains(secret), "`{secret}` in check's log");
    }
}

#[test]
fn issue17_bad_log_format_and_secret_files_exit_2_naming_the_variables() {
    let secrets = SecretDir::new();
    let password = secrets.file("password", STARROCKS_SECRET);
    let base = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        [
            ("STARWAL_PG_URL", "postgres://repl@127.0.0.1:1/db"),
            ("STARWAL_TABLES", "public.t"),
            ("STARWAL_STARROCKS_URL", "http://127.0.0.1:1"),
            ("STARWAL_STARROCKS_DATABASE", "analytics"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let dir = secrets.path().to_str().unwrap().to_owned();
    let missing = secrets.path().join("missing");
    let missing = missing.to_str().unwrap();
    for (extra, expected) in [
        (
            vec![("STARWAL_LOG_FORMAT", "yaml")],
            "configuration error: STARWAL_LOG_FORMAT is invalid: `yaml`: expected text or json"
                .to_owned(),
        ),
        (
            vec![
                ("STARWAL_STARROCKS_PASSWORD", "from-env"),
                ("STARWAL_STARROCKS_PASSWORD_FILE", password.as_str()),
            ],
            "STARWAL_STARROCKS_PASSWORD and STARWAL_STARROCKS_PASSWORD_FILE are both set"
                .to_owned(),
        ),
        (
            vec![
                ("STARWAL_PG_URL", "postgres://repl:from-url@127.0.0.1:1/db"),
                ("STARWAL_PG_PASSWORD_FILE", password.as_str()),
            ],
            "STARWAL_PG_URL holds a password and STARWAL_PG_PASSWORD_FILE is set".to_owned(),
        ),
        (
            vec![("STARWAL_PG_PASSWORD_FILE", missing)],
            format!("STARWAL_PG_PASSWORD_FILE: cannot read `{missing}`"),
        ),
        (
            vec![("STARWAL_CONTROL_TOKEN_FILE", dir.as_str())],
            format!("STARWAL_CONTROL_TOKEN_FILE: cannot read `{dir}`"),
        ),
    ] {
        for command in ["check", "run"] {
            let (code, stdout, stderr) = cli(&[command], &base(&extra));
            assert_eq!(code, 2, "{command} {extra:?}: {stdout}{stderr}");
            assert!(stderr.contains(&expected), "{command} {extra:?}: {stderr}");
            for secret in [STARROCKS_SECRET, "from-env", "from-url"] {
                assert!(
                    !stderr.contains(secret),
                    "{command}: `{secret}` in {stderr}"
                );
            }
        }
    }

    // Text stays the default; `text` names it explicitly. A warning shows the format.
    for format in [None, Some("text"), Some("TEXT")] {
        let mut env = base(&[("STARWAL_TABELS", "x")]);
        if let Some(format) = format {
            env.push(("STARWAL_LOG_FORMAT".into(), format.into()));
        }
        env.push(("STARWAL_PG_PASSWORD_FILE".into(), missing.into()));
        let (code, _, stderr) = cli(&["check"], &env);
        assert_eq!(code, 2, "{stderr}");
        let warning = stderr
            .lines()
            .find(|line| line.contains("STARWAL_TABELS"))
            .unwrap_or_else(|| panic!("{format:?}: no warning in {stderr}"));
        assert!(!warning.starts_with('{'), "{format:?}: {warning}");
        assert!(warning.contains(" WARN "), "{format:?}: {warning}");
    }
}
