//! The operator artifacts under `deploy/` (issue 17 items 1 and 2) against the agent they
//! describe: the Grafana dashboard `deploy/grafana/starwal.json` and the Prometheus rules
//! `deploy/prometheus/starwal-rules.yml`.
//! - Every metric either one names is a family a live agent's `/metrics` exports (started against
//!   Postgres and the sim, with a snapshot copy so the `starwal_snapshot_*` families are there):
//!   renaming a metric in `src/control/prometheus.rs` breaks this test, not a dashboard in
//!   production. A family legitimately absent from a healthy agent (the copy's ETA once it is
//!   done) must at least be spelled in the exporter's source.
//! - The dashboard imports as-is: a `${DS_PROMETHEUS}` datasource input used by every panel and
//!   query, unique panel ids, a recent schema, and a panel for each thing issue 17 lists.
//! - The rules pass `promtool check rules` and their unit tests `promtool test rules` (skipped
//!   with a message when promtool is absent, except under CI=true, like `engine_health`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::agent::{
    diff, metrics_text, source_rows, start_sim, target_rows, wait_for_rows, wait_until, AgentSpec,
};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Families a healthy agent may not export at a given scrape, so the live check cannot demand
/// them: the ETA is absent while unknown and once the copy is done.
const CONDITIONAL: [&str; 1] = ["starwal_snapshot_eta_seconds"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dashboard() -> Value {
    let path = repo().join("deploy/grafana/starwal.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana/starwal.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

fn rules_text() -> String {
    std::fs::read_to_string(repo().join("deploy/prometheus/starwal-rules.yml"))
        .expect("deploy/prometheus/starwal-rules.yml")
}

/// Every PromQL string of the dashboard: panel targets and templating queries.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().expect("a target's expr").to_owned());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            queries.push(query.to_owned());
        }
    }
    queries
}

/// The metric names (`starwal_*`, `process_*`) a text mentions. Anything else in PromQL
/// (functions, labels, `up`) is not the agent's to export.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(word(bytes[i - 1]) || bytes[i - 1].is_ascii_uppercase());
        let rest = &text[i..];
        if starts_word && (rest.starts_with("starwal_") || rest.starts_with("process_")) {
            let end = rest.bytes().position(|b| !word(b)).unwrap_or(rest.len());
            names.insert(rest[..end].to_owned());
            i += end;
        } else {
            i += 1;
        }
    }
    names
}

/// The families of an exposition and their types, from its `# TYPE` lines.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| {
            let mut parts = line.strip_prefix("# TYPE ")?.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// Names among `names` that are not a family of `exported` (a histogram's `_bucket`, `_sum`
/// and `_count` series count as their family) nor, for [`CONDITIONAL`] ones, spelled in the
/// exporter's source.
fn unknown_names(names: &BTreeSet<String>, exported: &BTreeMap<String, String>) -> Vec<String> {
    let exporter = std::fs::read_to_string(repo().join("src/control/prometheus.rs"))
        .expect("src/control/prometheus.rs");
    names
        .iter()
        .filter(|name| {
            if exported.contains_key(*name) {
                return false;
            }
            let histogram_series = ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| exported.get(base).is_some_and(|t| t == "histogram"))
            });
            if histogram_series {
                return false;
            }
            !(CONDITIONAL.contains(&name.as_str()) && exporter.contains(&format!("\"{name}\"")))
        })
        .cloned()
        .collect()
}

#[test]
fn issue17_the_dashboard_imports_as_is_and_has_a_panel_for_each_concern() {
    let dashboard = dashboard();
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "{inputs:?}"
    );
    assert!(
        dashboard["schemaVersion"].as_u64() >= Some(36),
        "schemaVersion {}",
        dashboard["schemaVersion"]
    );
    assert_eq!(
        dashboard["id"],
        Value::Null,
        "an exported dashboard has no id"
    );
    assert_eq!(dashboard["uid"], "starwal");

    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "{title}: id repeated"
        );
        let grid = &panel["gridPos"];
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "{title}: wider than the grid"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let expr = target["expr"].as_str().unwrap();
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: {expr} ignores the instance variable"
            );
        }
    }

    // Issue 17 item 1, concern by concern: each needs a query over its metric.
    let used: BTreeSet<String> = dashboard_queries(&dashboard)
        .iter()
        .flat_map(|q| metric_names(q))
        .collect();
    for wanted in [
        "starwal_lag_seconds",
        "starwal_lag_bytes",
        "starwal_rows_total",
        "starwal_load_duration_seconds_bucket",
        "starwal_load_failures_total",
        "starwal_load_retries_total",
        "starwal_buffered_bytes",
        "starwal_max_buffer_bytes",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "starwal_slot_retained_wal_bytes",
        "starwal_snapshot_rows_copied",
        "starwal_snapshot_rows_estimated",
        "starwal_table_parked",
    ] {
        assert!(used.contains(wanted), "no panel queries {wanted}: {used:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue17_every_metric_the_dashboard_and_rules_query_is_exported_by_a_live_agent() {
    let db = Cluster::shared().create_database("deploy_artifacts").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'copied' FROM generate_series(1, 100) g",
        )
        .await
        .unwrap();
    let sim = start_sim();
    // An initial copy, so the `starwal_snapshot_*` families are exported too.
    let spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_SNAPSHOT", "initial");
    let agent = spec.start_streaming().await;
    client
        .batch_execute("INSERT INTO t SELECT g, 'streamed' FROM generate_series(101, 200) g")
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, v FROM t").await;
    let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, "t", &["id", "v"])).await;
    assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    // Measured once per status interval (1 s here), absent before.
    let measured = wait_until(TIMEOUT, || {
        let text = metrics_text(&spec);
        let exported = families(&text);
        [
            "starwal_slot_retained_wal_bytes",
            "starwal_last_load_age_seconds",
        ]
        .iter()
        .all(|name| exported.contains_key(*name))
    })
    .await;
    let exposition = metrics_text(&spec);
    assert!(measured, "{exposition}\n{}", agent.log());
    let exported = families(&exposition);

    let dashboard_names: BTreeSet<String> = dashboard_queries(&dashboard())
        .iter()
        .flat_map(|q| metric_names(q))
        .collect();
    let rules_names = metric_names(&rules_text());
    assert!(dashboard_names.len() > 20, "{dashboard_names:?}");
    assert!(rules_names.len() >= 7, "{rules_names:?}");
    for (artifact, names) in [
        ("deploy/grafana/starwal.json", &dashboard_names),
        ("deploy/prometheus/starwal-rules.yml", &rules_names),
    ] {
        let unknown = unknown_names(names, &exported);
        assert!(
            unknown.is_empty(),
            "{artifact} queries metrics the agent does not export: {unknown:?}\nexported: {:?}",
            exported.keys().collect::<Vec<_>>()
        );
    }
    agent.stop_cleanly();
}

/// Runs promtool with `args` in `dir`. `None` when promtool is not installed (outside CI);
/// otherwise whether it succeeded, with its output.
fn promtool(dir: &Path, args: &[&str]) -> Option<(bool, String)> {
    match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(output) => Some((
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").is_err(),
                "promtool is not installed (.ci/run installs Debian's `prometheus` package)"
            );
            eprintln!(
                "SKIPPED the promtool rules checks: promtool is not installed (apt-get install prometheus)"
            );
            None
        }
        Err(err) => panic!("promtool: {err}"),
    }
}

#[test]
fn issue17_the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = repo().join("deploy/prometheus");
    let Some((ok, said)) = promtool(&dir, &["check", "rules", "starwal-rules.yml"]) else {
        return;
    };
    assert!(ok, "promtool check rules:\n{said}");
    let (ok, said) = promtool(&dir, &["test", "rules", "starwal-rules.test.yml"])
        .expect("promtool was there a moment ago");
    assert!(
        ok && said.contains("SUCCESS"),
        "promtool test rules:\n{said}"
    );

    // Every alert of the rules file has a unit test that expects it to fire.
    let rules = rules_text();
    let tests = std::fs::read_to_string(dir.join("starwal-rules.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 7, "{alerts:?}");
    for alert in alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - "
            )),
            "no unit test fires {alert}"
        );
    }
}

#[test]
fn metric_names_finds_whole_metric_names_only() {
    let names = metric_names(
        "histogram_quantile(0.5, sum by (le) (rate(starwal_load_duration_seconds_bucket{job=~\"x\"}[5m]))) \
         / process_cpu_seconds_total and up and STARWAL_MAX_BUFFER_BYTES and my_starwal_x",
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "process_cpu_seconds_total",
            "starwal_load_duration_seconds_bucket"
        ]
    );
}
