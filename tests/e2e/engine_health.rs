//! What an operator sees of a running `starwal run` when things go wrong (issue 13 item 3,
//! invariant 13: nothing hidden while it lasts), through the binary's own `status --json`, the
//! gRPC health service and `/metrics`:
//! - a StarRocks outage: readiness NOT_SERVING (liveness SERVING) naming the table, since when
//!   and how many attempts failed, the last error per table, failures by kind in the metrics;
//!   loads resume within the retry cap once StarRocks is back, and the exposition passes
//!   `promtool check metrics` (skipped with a message when promtool is absent, except in CI);
//! - a paused agent with unread rows shows lag;
//! - the setup retry backoff starts over after an attempt that worked.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use starrocks_sim::{ServerFaults, ServerRole};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::harness::agent::{
    diff, metric_sample, metrics_text, source_rows, start_sim, status_json, target_rows,
    wait_for_rows, wait_until, Agent, AgentSpec,
};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a lever (`pause`, `resume`) of the CLI against the agent (loopback: no token needed).
fn lever(spec: &AgentSpec, lever: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_starwal"))
        .args([lever, "--addr", &spec.control_url()])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run starwal");
    assert!(output.status.success(), "{lever}: {output:?}");
}

async fn health(spec: &AgentSpec, service: &str) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(spec.control_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let response = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(response.status).unwrap()
}

/// Runs `promtool check metrics` on `text`. `None` when promtool is not installed (outside CI);
/// otherwise whether it passed, with its output.
fn promtool(text: &str) -> Option<(bool, String)> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").is_err(),
                "promtool is not installed (.ci/run installs Debian's `prometheus` package)"
            );
            eprintln!("SKIPPED the promtool check: promtool is not installed (apt-get install prometheus)");
            return None;
        }
        Err(err) => panic!("promtool: {err}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.success() && said.trim().is_empty(), said))
}

fn assert_promtool_clean(text: &str) {
    if let Some((clean, said)) = promtool(text) {
        assert!(
            clean,
            "promtool check metrics:\n{said}\n--- exposition:\n{text}"
        );
    }
}

/// The `retry_in_ms` of every Stream Load retry the agent logged.
fn load_retry_delays_ms(agent: &Agent) -> Vec<u64> {
    agent
        .log()
        .lines()
        .filter(|line| line.contains("stream load failed; retrying"))
        .filter_map(|line| {
            let rest = line.split("retry_in_ms=").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// A stand-in for an operator watching a StarRocks outage: FE and BE refuse connections for
/// 20 s, long enough for the old backoff (doubling to 60 s) to wait 8–16 s between attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_a_starrocks_outage_shows_in_status_health_and_metrics_and_loads_resume_soon() {
    let db = Cluster::shared().create_database("engine_health").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'copied' FROM generate_series(1, 100) g",
        )
        .await
        .unwrap();
    let sim = start_sim();
    // With an initial copy, so the snapshot series are in the exposition promtool checks.
    let spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_SNAPSHOT", "initial");
    let agent = spec.start_streaming().await;
    client
        .batch_execute("INSERT INTO t SELECT g, 'streamed' FROM generate_series(101, 200) g")
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, v FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "t", &["id", "v"])).await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    assert_promtool_clean(&metrics_text(&spec));

    let down = ServerFaults {
        refuse_connections: true,
        ..ServerFaults::default()
    };
    sim.faults().set_server(ServerRole::Fe, down);
    sim.faults().set_server(ServerRole::Be, down);
    let outage = Instant::now();
    client
        .batch_execute("INSERT INTO t SELECT g, 'during' FROM generate_series(201, 300) g")
        .await
        .unwrap();

    // Readiness goes NOT_SERVING naming the table; liveness stays SERVING.
    let seen = wait_until(TIMEOUT, || {
        status_json(&spec).is_some_and(|s| {
            s["serving"] == false && s["tables"][0]["failing"]["attempts"].as_u64() >= Some(2)
        })
    })
    .await;
    assert!(seen, "{:?}\n{}", status_json(&spec), agent.log());
    let now = status_json(&spec).unwrap();
    let detail = now["health_detail"].as_str().unwrap();
    assert!(
        detail.starts_with("StarRocks loads failing for ")
            && detail.contains("`public.t`")
            && detail.contains("cannot reach StarRocks"),
        "{now}"
    );
    let table = &now["tables"][0];
    assert!(
        table["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach StarRocks")),
        "{now}"
    );
    assert_eq!(table["failing"]["kind"], "connection", "{now}");
    assert_eq!(table["failing"]["retrying"], true, "{now}");
    let since = table["failing"]["since_unix_seconds"].as_f64().unwrap();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(since <= wall && since > wall - 60.0, "{now}");
    assert!(
        table["load_failures"]["connection"].as_u64() >= Some(2),
        "{now}"
    );
    assert!(table["load_retries"].as_u64() >= Some(2), "{now}");
    assert_eq!(health(&spec, "").await, ServingStatus::NotServing);
    assert_eq!(
        health(&spec, "starwal.liveness").await,
        ServingStatus::Serving
    );

    // Metrics: failed attempts by kind, retries, how long loads have failed.
    let text = metrics_text(&spec);
    let failures = metric_sample(
        &text,
        "starwal_load_failures_total{table=\"public.t\",kind=\"connection\"}",
    );
    assert!(failures >= Some(2.0), "{text}");
    assert!(
        metric_sample(&text, "starwal_load_retries_total{table=\"public.t\"}") >= Some(2.0),
        "{text}"
    );
    assert!(
        metric_sample(&text, "starwal_load_failing_seconds{table=\"public.t\"}") > Some(0.0),
        "{text}"
    );
    assert!(
        metric_sample(&text, "starwal_last_load_age_seconds{table=\"public.t\"}") > Some(0.0),
        "{text}"
    );
    assert_eq!(metric_sample(&text, "starwal_up"), Some(0.0), "{text}");
    assert_promtool_clean(&text);

    while outage.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sim.faults()
        .set_server(ServerRole::Fe, ServerFaults::default());
    sim.faults()
        .set_server(ServerRole::Be, ServerFaults::default());
    let back = Instant::now();
    let source = source_rows(&client, "SELECT id::text, v FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "t", &["id", "v"])).await;
    let resumed = back.elapsed();
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    let delays = load_retry_delays_ms(&agent);
    eprintln!(
        "outage {:.1} s: loads resumed {:.1} s after StarRocks came back; retry delays (ms): {delays:?}",
        back.duration_since(outage).as_secs_f64(),
        resumed.as_secs_f64()
    );
    let cap_ms = 5_000;
    assert!(!delays.is_empty(), "{}", agent.log());
    assert!(
        delays.iter().all(|delay| *delay <= cap_ms),
        "a retry waited longer than the {cap_ms} ms cap: {delays:?}"
    );
    // The next attempt comes at most one capped delay later; the margin covers the load itself
    // and a slow machine.
    assert!(
        resumed < Duration::from_millis(cap_ms) + Duration::from_secs(10),
        "loads resumed {resumed:?} after StarRocks came back"
    );

    // Healthy again: nothing failing, the error cleared, readiness back.
    let healthy = wait_until(TIMEOUT, || {
        status_json(&spec).is_some_and(|s| s["serving"] == true)
    })
    .await;
    assert!(healthy, "{:?}", status_json(&spec));
    let now = status_json(&spec).unwrap();
    assert_eq!(now["health_detail"], "streaming", "{now}");
    assert_eq!(now["tables"][0]["failing"], Value::Null, "{now}");
    assert_eq!(now["tables"][0]["last_error"], Value::Null, "{now}");
    assert!(
        now["tables"][0]["last_load_age_seconds"].as_f64() < Some(30.0),
        "{now}"
    );
    assert_eq!(health(&spec, "").await, ServingStatus::Serving);
    let text = metrics_text(&spec);
    assert_eq!(
        metric_sample(&text, "starwal_load_failing_seconds{table=\"public.t\"}"),
        Some(0.0),
        "{text}"
    );
    assert_promtool_clean(&text);
    agent.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_paused_agent_with_unread_rows_shows_lag() {
    let db = Cluster::shared().create_database("engine_lag").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t");
    let agent = spec.start_streaming().await;
    lever(&spec, "pause");
    client
        .batch_execute("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g")
        .await
        .unwrap();
    // The WAL end is looked at every status interval (1 s here).
    let lagging = wait_until(Duration::from_secs(20), || {
        status_json(&spec).is_some_and(|s| {
            s["lag_bytes"].as_u64() > Some(100_000)
                && s["unread_wal_bytes"].as_u64() > Some(100_000)
                && s["lag_seconds"].as_f64() > Some(1.0)
        })
    })
    .await;
    assert!(lagging, "{:?}\n{}", status_json(&spec), agent.log());
    let text = metrics_text(&spec);
    assert!(
        metric_sample(&text, "starwal_lag_bytes") > Some(100_000.0),
        "{text}"
    );
    assert!(
        metric_sample(&text, "starwal_lag_seconds") > Some(1.0),
        "{text}"
    );
    assert!(
        target_rows(&sim, "t", &["id"]).is_empty(),
        "loaded while paused"
    );

    lever(&spec, "resume");
    let source = source_rows(&client, "SELECT id::text FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "t", &["id"])).await;
    assert!(got == source, "{}", diff(&source, &got));
    let caught_up = wait_until(Duration::from_secs(20), || {
        status_json(&spec).is_some_and(|s| s["lag_bytes"] == 0 && s["unread_wal_bytes"] == 0)
    })
    .await;
    assert!(caught_up, "{:?}", status_json(&spec));
    agent.stop_cleanly();
}

/// The `retry_in_s` of every failed attempt the engine logged.
fn attempt_retry_delays_s(agent: &Agent) -> Vec<u64> {
    agent
        .log()
        .lines()
        .filter_map(|line| {
            let rest = line.split("retry_in_s=").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_setup_backoff_starts_over_after_an_attempt_that_loaded() {
    let db = Cluster::shared().create_database("engine_backoff").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t");
    let agent = spec.start_streaming().await;
    for round in 1..=3 {
        // A healthy attempt: rows loaded.
        client
            .batch_execute(&format!("INSERT INTO t VALUES ({round})"))
            .await
            .unwrap();
        let source = source_rows(&client, "SELECT id::text FROM t").await;
        let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "t", &["id"])).await;
        assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
        // Then the stream breaks: the walsender is terminated, the attempt ends in an error.
        client
            .batch_execute(&format!(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
                  WHERE slot_name = '{}' AND active_pid IS NOT NULL",
                spec.slot()
            ))
            .await
            .unwrap();
        let retried = wait_until(TIMEOUT, || {
            attempt_retry_delays_s(&agent).len() >= round
                && agent.log().matches("streaming changes").count() > round
        })
        .await;
        assert!(retried, "round {round}:\n{}", agent.log());
    }
    let delays = attempt_retry_delays_s(&agent);
    // Each error followed an attempt that loaded: a first failure each time, not 1, 2, 4 s.
    assert_eq!(delays, vec![1, 1, 1], "{}", agent.log());
    agent.stop_cleanly();
}
