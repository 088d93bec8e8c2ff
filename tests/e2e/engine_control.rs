//! The control plane of a running `starwal run`, driven through the binary's own client
//! subcommands: status in CDC (SERVING), NOT_SERVING with a precise detail while setup fails
//! (and recovery once the operator fixes it, without a restart), pause/resume/drain guarded by
//! the token, bad configuration exiting 2 naming the variable.

use std::process::Command;
use std::time::Duration;

use starrocks_sim::catalog::{ColumnDef, ColumnType, TableSpec};

use crate::harness::agent::{
    source_rows, start_sim, target_rows, wait_for_rows, wait_until, AgentSpec, TARGET_DB,
};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `starwal <args>`; returns (exit code, stdout, stderr).
fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_starwal"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run starwal");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn status(spec: &AgentSpec) -> Option<serde_json::Value> {
    let (code, stdout, _) = cli(&["status", "--json", "--addr", &spec.control_url()], &[]);
    (code == 0)
        .then(|| serde_json::from_str(&stdout).ok())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv10_pause_resume_drain_need_the_token() {
    let db = Cluster::shared().create_database("engine_control").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_CONTROL_TOKEN", "s3cret-token");
    let mut agent = spec.start();
    assert!(
        wait_until(TIMEOUT, || status(&spec)
            .is_some_and(|s| s["phase"] == "CDC"))
        .await,
        "{}",
        agent.log()
    );
    let now = status(&spec).unwrap();
    assert_eq!(now["serving"], true, "{now}");
    assert_eq!(now["tables"][0]["source"], "public.t", "{now}");
    assert!(
        !now.to_string().contains("s3cret-token") && !now.to_string().contains("repl-secret"),
        "a secret in the status: {now}"
    );

    // Without the token: refused, nothing changes.
    let url = spec.control_url();
    let (code, _, stderr) = cli(&["pause", "--addr", &url], &[]);
    assert_ne!(code, 0, "pause without the token was accepted");
    assert!(stderr.contains("STARWAL_CONTROL_TOKEN"), "{stderr}");
    assert!(!stderr.contains("s3cret-token"), "{stderr}");
    let (code, _, _) = cli(&["pause", "--addr", &url, "--token", "wrong"], &[]);
    assert_ne!(code, 0, "pause with a wrong token was accepted");
    assert_eq!(status(&spec).unwrap()["paused"], false);

    // With it: paused, nothing is loaded until resume.
    let (code, stdout, stderr) = cli(&["pause", "--addr", &url, "--token", "s3cret-token"], &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(status(&spec).unwrap()["paused"], true);
    client
        .batch_execute("INSERT INTO t SELECT generate_series(1, 100)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        target_rows(&sim, "t", &["id"]).is_empty(),
        "loaded while paused"
    );
    let (code, _, _) = cli(
        &["resume", "--addr", &url],
        &[("STARWAL_CONTROL_TOKEN", "s3cret-token")],
    );
    assert_eq!(code, 0);
    let source = source_rows(&client, "SELECT id::text FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "t", &["id"])).await;
    assert_eq!(got, source, "{}", agent.log());

    // Drain: the agent exits 0.
    let (code, _, stderr) = cli(&["drain", "--addr", &url, "--token", "s3cret-token"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let exit = agent
        .wait(Duration::from_secs(30))
        .expect("exit after drain");
    assert!(exit.success(), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_setup_error_is_not_serving_with_detail_and_retried() {
    let db = Cluster::shared()
        .create_database("engine_not_serving")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, amount int)")
        .await
        .unwrap();
    let sim = start_sim();
    // The target exists with a column too narrow for the source's: setup must refuse it.
    sim.catalog().create_database(TARGET_DB).unwrap();
    sim.catalog()
        .write(|c| {
            c.create_table(
                TARGET_DB,
                TableSpec::new("t")
                    .column(ColumnDef::new("id", ColumnType::Int).not_null())
                    .column(ColumnDef::new("amount", ColumnType::TinyInt))
                    .primary_key(&["id"]),
                false,
            )
        })
        .unwrap();
    let spec = AgentSpec::new(&db, &sim, "public.t");
    let agent = spec.start();
    assert!(
        wait_until(TIMEOUT, || status(&spec).is_some_and(|s| {
            s["serving"] == false
                && s["health_detail"]
                    .as_str()
                    .unwrap_or("")
                    .contains("column `amount` of `t`")
        }))
        .await,
        "no NOT_SERVING with a detail naming the column: {:?}\n{}",
        status(&spec),
        agent.log()
    );
    // The operator fixes the target; the next attempt succeeds without a restart.
    sim.catalog()
        .write(|c| {
            c.drop_table(TARGET_DB, "t", false)?;
            Ok::<_, starrocks_sim::catalog::CatalogError>(())
        })
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(90), || status(&spec)
            .is_some_and(|s| s["serving"] == true))
        .await,
        "{}",
        agent.log()
    );
}

#[test]
fn inv9_bad_configuration_exits_2_naming_the_variable() {
    let base = [
        ("STARWAL_PG_URL", "postgres://u@localhost/db"),
        ("STARWAL_TABLES", "public.t"),
        ("STARWAL_STARROCKS_URL", "http://127.0.0.1:1"),
        ("STARWAL_STARROCKS_MYSQL", "127.0.0.1:2"),
        ("STARWAL_STARROCKS_DATABASE", "d"),
    ];
    for (var, value) in [
        ("STARWAL_FLUSH_ROWS", "0"),
        ("STARWAL_FLUSH_INTERVAL_MS", "soon"),
        ("STARWAL_MAX_BUFFER_BYTES", "-1"),
        ("STARWAL_CONTROL_ADDR", "localhost"),
        ("STARWAL_METRICS_ADDR", "9187"),
        ("STARWAL_EXIT_ON_ERROR", "maybe"),
        ("STARWAL_SHUTDOWN_TIMEOUT_S", "0"),
    ] {
        let mut env = base.to_vec();
        env.push((var, value));
        let (code, _, stderr) = cli(&["run"], &env);
        assert_eq!(code, 2, "{var}={value}: {stderr}");
        assert!(stderr.contains(var), "{var}: {stderr}");
    }
    let (code, _, stderr) = cli(&["run"], &base[..1]);
    assert_eq!(code, 2);
    assert!(stderr.contains("STARWAL_TABLES"), "{stderr}");
    let (code, _, stderr) = cli(&["run"], &base[..2]);
    assert_eq!(code, 2);
    assert!(stderr.contains("STARWAL_STARROCKS_URL"), "{stderr}");
}

#[test]
fn engine_exit_on_error_exits_1_instead_of_retrying() {
    let closed = crate::harness::agent::free_port();
    let url = format!("postgres://repl:pw@127.0.0.1:{closed}/db?sslmode=disable&connect_timeout=2");
    let started = std::time::Instant::now();
    let (code, _, stderr) = cli(
        &["run"],
        &[
            ("STARWAL_PG_URL", &url),
            ("STARWAL_TABLES", "public.t"),
            ("STARWAL_STARROCKS_URL", "http://127.0.0.1:1"),
            ("STARWAL_STARROCKS_DATABASE", "d"),
            ("STARWAL_EXIT_ON_ERROR", "true"),
            ("STARWAL_CONTROL_ADDR", "127.0.0.1:0"),
            ("STARWAL_METRICS_ADDR", "off"),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{closed}")), "{stderr}");
    assert!(!stderr.contains(":pw@"), "the password leaked: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
