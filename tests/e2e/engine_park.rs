//! One table's permanent error parks that table while the others keep streaming (issue 13 item
//! 4, invariant 13), seen through the binary: `status --json`, gRPC health, `/metrics`, the
//! slot's `confirmed_flush_lsn`, and `starwal retry --table` resuming the table without a
//! restart. With `STARWAL_EXIT_ON_ERROR=true` the same error still ends the run with exit 1.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use starrocks_sim::{FaultKind, LoadFault};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::harness::agent::{
    diff, metric_sample, metrics_text, slot_confirmed_flush, source_rows, start_sim, status_json,
    stored_checkpoint, target_rows, wait_for_rows, wait_until, wal_insert_position, AgentSpec,
    TARGET_DB,
};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(60);

fn starwal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_starwal"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run starwal")
}

/// The status entry of source table `source`.
fn table<'a>(status: &'a Value, source: &str) -> &'a Value {
    status["tables"]
        .as_array()
        .and_then(|tables| tables.iter().find(|t| t["source"] == source))
        .unwrap_or(&Value::Null)
}

/// `promtool check metrics` on `text`, when promtool is installed (CI installs it).
fn assert_promtool_clean(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            assert!(std::env::var("CI").is_err(), "promtool is not installed");
            eprintln!("SKIPPED the promtool check: promtool is not installed");
            return;
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
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
}

async fn readiness(spec: &AgentSpec) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(spec.control_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(response.status).unwrap()
}

async fn create_tables(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY, v text);
             CREATE TABLE b (id int PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
}

/// A load StarRocks refuses for good parks `public.a`; `public.b` keeps loading, the confirmed
/// LSN stays before the refused change, status, health and metrics name the table; once
/// StarRocks accepts again, `starwal retry --table public.a` brings both tables to the source
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_a_refused_table_is_parked_the_other_streams_and_retry_resumes_it() {
    let db = Cluster::shared().create_database("engine_park").await;
    let client = db.owner_client().await;
    create_tables(&client).await;
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b");
    let mut agent = spec.start_streaming().await;
    client
        .batch_execute(
            "INSERT INTO a SELECT g, 'before' FROM generate_series(1, 10) g;
             INSERT INTO b SELECT g, 'before' FROM generate_series(1, 10) g;",
        )
        .await
        .unwrap();
    for name in ["a", "b"] {
        let source = source_rows(&client, &format!("SELECT id::text, v FROM {name}")).await;
        let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, name, &["id", "v"])).await;
        assert!(got == source, "{}\n{}", diff(&source, &got), agent.log());
    }

    // Every load into `a` is refused with a permanent error from now on.
    sim.faults().inject(
        LoadFault::new(FaultKind::Fail {
            message: "something nobody has seen before".into(),
        })
        .times(u32::MAX)
        .on_table(TARGET_DB, "a"),
    );
    let before_bad = wal_insert_position(&client).await;
    client
        .batch_execute("INSERT INTO a VALUES (11, 'refused')")
        .await
        .unwrap();
    let parked = wait_until(TIMEOUT, || {
        status_json(&spec).is_some_and(|s| !table(&s, "public.a")["parked"].is_null())
    })
    .await;
    assert!(parked, "{:?}\n{}", status_json(&spec), agent.log());
    client
        .batch_execute(
            "INSERT INTO a VALUES (12, 'held');
             INSERT INTO b SELECT g, 'after' FROM generate_series(11, 20) g;
             UPDATE b SET v = 'updated after' WHERE id <= 5;",
        )
        .await
        .unwrap();

    // `b` keeps loading: rows written after the refused change arrive.
    let source_b = source_rows(&client, "SELECT id::text, v FROM b").await;
    let got = wait_for_rows(&source_b, TIMEOUT, || target_rows(&sim, "b", &["id", "v"])).await;
    assert!(
        got == source_b,
        "{}\n{}",
        diff(&source_b, &got),
        agent.log()
    );
    assert!(agent.is_running(), "the agent exited:\n{}", agent.log());

    // Status, health and metrics name the parked table and its error.
    let now = status_json(&spec).unwrap();
    let a = table(&now, "public.a");
    assert!(
        a["parked"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("something nobody has seen before")),
        "{now}"
    );
    assert!(a["parked"]["held_from"].as_str().is_some(), "{now}");
    assert!(table(&now, "public.b")["parked"].is_null(), "{now}");
    assert_eq!(now["serving"], false, "{now}");
    let detail = now["health_detail"].as_str().unwrap();
    assert!(
        detail.contains("`public.a` parked")
            && detail.contains("something nobody has seen before")
            && detail.contains("starwal retry --table public.a"),
        "{now}"
    );
    assert_eq!(readiness(&spec).await, ServingStatus::NotServing);
    let text = metrics_text(&spec);
    assert_eq!(
        metric_sample(&text, "starwal_table_parked{table=\"public.a\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_sample(&text, "starwal_table_parked{table=\"public.b\"}"),
        Some(0.0),
        "{text}"
    );
    assert_promtool_clean(&text);

    // The confirmed LSN does not pass the refused change (several status intervals later).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let confirmed = slot_confirmed_flush(&client, spec.slot()).await;
    assert!(
        confirmed <= before_bad,
        "confirmed {confirmed} passed the refused change (written after {before_bad})"
    );
    let got_a = target_rows(&sim, "a", &["id", "v"]);
    assert_eq!(got_a.len(), 10, "nothing of `a` after the refused change");

    // A table that is not parked has nothing to retry.
    let refused = starwal(&[
        "retry",
        "--table",
        "public.b",
        "--addr",
        &spec.control_url(),
    ]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");

    // The cause is fixed; a retry resumes `a` without a restart.
    sim.faults().clear();
    client
        .batch_execute("INSERT INTO b VALUES (21, 'after the fix')")
        .await
        .unwrap();
    let retried = starwal(&[
        "retry",
        "--table",
        "public.a",
        "--addr",
        &spec.control_url(),
    ]);
    assert!(retried.status.success(), "{retried:?}");
    for name in ["a", "b"] {
        let source = source_rows(&client, &format!("SELECT id::text, v FROM {name}")).await;
        let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, name, &["id", "v"])).await;
        assert!(
            got == source,
            "{name}: {}\n{}",
            diff(&source, &got),
            agent.log()
        );
    }
    let healthy = wait_until(TIMEOUT, || {
        status_json(&spec).is_some_and(|s| s["serving"] == true)
    })
    .await;
    assert!(healthy, "{:?}\n{}", status_json(&spec), agent.log());
    let now = status_json(&spec).unwrap();
    assert!(table(&now, "public.a")["parked"].is_null(), "{now}");
    assert_eq!(
        metric_sample(
            &metrics_text(&spec),
            "starwal_table_parked{table=\"public.a\"}"
        ),
        Some(0.0)
    );
    // Confirmation moves past the change once it is loaded.
    let moved = {
        let mut moved = false;
        for _ in 0..100 {
            if slot_confirmed_flush(&client, spec.slot()).await > before_bad {
                moved = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moved
    };
    assert!(moved, "{}", agent.log());
    assert!(agent.is_running());
    agent.stop_cleanly();
}

/// A value the target column cannot hold exactly parks its table the same way (the other
/// streams); with `STARWAL_EXIT_ON_ERROR=true` the same change ends the run with exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_a_value_that_does_not_fit_parks_its_table_or_exits_1_when_asked() {
    let db = Cluster::shared().create_database("engine_park_value").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE nums (id int PRIMARY KEY, n numeric);
             CREATE TABLE b (id int PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.nums,public.b");
    let mut agent = spec.start_streaming().await;
    let before_bad = wal_insert_position(&client).await;
    client
        .batch_execute(
            "INSERT INTO nums VALUES (1, 3.14159265358979);
             INSERT INTO b SELECT g, 'after' FROM generate_series(1, 20) g;",
        )
        .await
        .unwrap();
    let source_b = source_rows(&client, "SELECT id::text, v FROM b").await;
    let got = wait_for_rows(&source_b, TIMEOUT, || target_rows(&sim, "b", &["id", "v"])).await;
    assert!(
        got == source_b,
        "{}\n{}",
        diff(&source_b, &got),
        agent.log()
    );
    let parked = wait_until(TIMEOUT, || {
        status_json(&spec).is_some_and(|s| {
            table(&s, "public.nums")["parked"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("column `n` of `public.nums`, key (id)=(1)"))
        })
    })
    .await;
    assert!(parked, "{:?}\n{}", status_json(&spec), agent.log());
    assert!(agent.is_running(), "{}", agent.log());
    assert!(target_rows(&sim, "nums", &["id", "n"]).is_empty());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let confirmed = slot_confirmed_flush(&client, spec.slot()).await;
    assert!(
        confirmed <= before_bad,
        "confirmed {confirmed} passed the bad change (written after {before_bad})"
    );
    agent.stop_cleanly();

    // The same slot, held before the bad change: with STARWAL_EXIT_ON_ERROR the run ends.
    let mut exiting = spec.clone().var("STARWAL_EXIT_ON_ERROR", "true").start();
    let exit = exiting.wait(TIMEOUT);
    assert_eq!(
        exit.and_then(|status| status.code()),
        Some(1),
        "{}",
        exiting.log()
    );
    assert!(
        exiting
            .log()
            .contains("column `n` of `public.nums`, key (id)=(1)"),
        "{}",
        exiting.log()
    );
}

/// `starwal resync --table` un-parks a table too: its copy ends like a retry, and the stream
/// from the held position brings the changes it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_a_resync_of_a_parked_table_resumes_it() {
    let db = Cluster::shared()
        .create_database("engine_park_resync")
        .await;
    let client = db.owner_client().await;
    create_tables(&client).await;
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b").var("STARWAL_SNAPSHOT", "initial");
    let mut agent = spec.start_streaming().await;
    sim.faults().inject(
        LoadFault::new(FaultKind::Fail {
            message: "something nobody has seen before".into(),
        })
        .times(u32::MAX)
        .on_table(TARGET_DB, "a"),
    );
    client
        .batch_execute(
            "INSERT INTO a SELECT g, 'refused' FROM generate_series(1, 10) g;
             INSERT INTO b SELECT g, 'streamed' FROM generate_series(1, 10) g;",
        )
        .await
        .unwrap();
    let parked = wait_until(TIMEOUT, || {
        status_json(&spec).is_some_and(|s| !table(&s, "public.a")["parked"].is_null())
    })
    .await;
    assert!(parked, "{:?}\n{}", status_json(&spec), agent.log());

    // The target table is fixed; the resync copies `a` and streams what it held.
    sim.faults().clear();
    let resync = starwal(&[
        "resync",
        "--table",
        "public.a",
        "--addr",
        &spec.control_url(),
    ]);
    assert!(resync.status.success(), "{resync:?}");
    client
        .batch_execute("UPDATE a SET v = 'after' WHERE id <= 3; INSERT INTO b VALUES (11, 'x')")
        .await
        .unwrap();
    for name in ["a", "b"] {
        let source = source_rows(&client, &format!("SELECT id::text, v FROM {name}")).await;
        let got = wait_for_rows(&source, TIMEOUT, || target_rows(&sim, name, &["id", "v"])).await;
        assert!(
            got == source,
            "{name}: {}\n{}",
            diff(&source, &got),
            agent.log()
        );
    }
    let healthy = wait_until(TIMEOUT, || {
        status_json(&spec).is_some_and(|s| s["serving"] == true)
    })
    .await;
    assert!(healthy, "{:?}\n{}", status_json(&spec), agent.log());
    assert!(agent.is_running());
    agent.stop_cleanly();
}

/// A table parked by a value that does not fit, while an earlier load of it still retries a
/// transient failure: that load holds the confirmed LSN (slot and checkpoint) before its commit
/// while the other table keeps loading, and its row reaches StarRocks once the failure ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv1_a_parked_table_s_load_still_retrying_holds_the_confirmed_lsn() {
    let db = Cluster::shared()
        .create_database("engine_park_in_flight")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY, n numeric);
             CREATE TABLE b (id int PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.a,public.b").var("STARWAL_FLUSH_ROWS", "2");
    let mut agent = spec.start_streaming().await;
    // Every load into `a` fails transiently: the sink keeps retrying its first load.
    sim.faults().inject(
        LoadFault::new(FaultKind::MemoryExceeded)
            .times(100_000)
            .on_table(TARGET_DB, "a"),
    );
    let before_row_1 = wal_insert_position(&client).await;
    client
        .batch_execute("INSERT INTO a VALUES (1, 1.5)")
        .await
        .unwrap();
    // Sealed by the flush interval; its load is retried from here on.
    tokio::time::sleep(Duration::from_secs(1)).await;
    client
        .batch_execute("INSERT INTO a VALUES (2, 3.14159265358979), (3, 1)")
        .await
        .unwrap();
    let parked = wait_until(TIMEOUT, || {
        status_json(&spec).is_some_and(|s| !table(&s, "public.a")["parked"].is_null())
    })
    .await;
    assert!(parked, "{:?}\n{}", status_json(&spec), agent.log());
    client
        .batch_execute("INSERT INTO b SELECT g, 'after' FROM generate_series(1, 10) g")
        .await
        .unwrap();
    let source_b = source_rows(&client, "SELECT id::text, v FROM b").await;
    let got = wait_for_rows(&source_b, TIMEOUT, || target_rows(&sim, "b", &["id", "v"])).await;
    assert!(
        got == source_b,
        "{}\n{}",
        diff(&source_b, &got),
        agent.log()
    );

    // Row 1 is not in StarRocks: neither the slot nor the checkpoint passes its commit.
    for _ in 0..20 {
        let confirmed = slot_confirmed_flush(&client, spec.slot()).await;
        assert!(
            confirmed <= before_row_1,
            "slot confirmed {confirmed} passed row 1 (written after {before_row_1})\n{}",
            agent.log()
        );
        let stored = stored_checkpoint(&client, spec.slot()).await;
        assert!(
            stored.is_none_or(|stored| stored <= before_row_1),
            "checkpoint {stored:?} passed row 1 (written after {before_row_1})\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(target_rows(&sim, "a", &["id"]).is_empty());

    // StarRocks accepts again; a retry resumes `a` and row 1 arrives (row 2 parks it again).
    sim.faults().clear();
    let retried = starwal(&[
        "retry",
        "--table",
        "public.a",
        "--addr",
        &spec.control_url(),
    ]);
    assert!(retried.status.success(), "{retried:?}");
    let row_1 = wait_until(TIMEOUT, || {
        target_rows(&sim, "a", &["id"]).contains(&vec![Some("1".to_string())])
    })
    .await;
    assert!(row_1, "{}", agent.log());
    assert!(agent.is_running(), "{}", agent.log());
    agent.stop_cleanly();
}
