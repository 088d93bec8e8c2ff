//! Every injected fault, from the library API and from the admin endpoint, seen through curl.

use std::time::{Duration, Instant};

use starrocks_sim::{FaultKind, LoadFault, ServerFaults, ServerRole, SimOptions, TxnStatus};

use crate::harness::*;

const ROW: &str = r#"[{"id":1,"name":"a","score":1}]"#;

fn fails_with(kind: FaultKind, expected_prefix: &str) {
    let sim = start();
    sim.faults()
        .inject(LoadFault::new(kind).on_table("db", "t"));
    let r = json_load(&sim, "f1", ROW);
    assert_eq!(r.status(), "Fail", "{}", r.body);
    assert!(r.message().starts_with(expected_prefix), "{}", r.body);
    assert!(rows(&sim).is_empty());
    // The txn was rolled back: the same label succeeds on retry, exactly once.
    let r = json_load(&sim, "f1", ROW);
    assert_eq!(r.status(), "Success", "{}", r.body);
    let c = sim.counters("db", "t");
    assert_eq!(c.labels_committed, vec!["f1".to_string()]);
    assert_eq!(c.loads_failed, 1);
    assert_eq!(c.rows_loaded, 1);
}

#[test]
fn too_many_versions_both_generations() {
    fails_with(
        FaultKind::TooManyVersions { legacy: false },
        "Failed to load data into tablet ",
    );
    fails_with(
        FaultKind::TooManyVersions { legacy: true },
        "Too many versions. tablet_id: ",
    );
}

#[test]
fn memory_exceeded_and_txn_timeout_and_custom_message() {
    fails_with(FaultKind::MemoryExceeded, "Memory of process exceed limit.");
    fails_with(FaultKind::TxnTimeout, "timeout by txn manager");
    fails_with(
        FaultKind::Fail {
            message: "cancelled".into(),
        },
        "cancelled",
    );
}

#[test]
fn pre_begin_and_begin_faults_answer_txn_id_minus_one() {
    for (kind, prefix) in [
        (
            FaultKind::HttpConcurrencyLimit,
            "Stream Load exceed http cuncurrent limit",
        ),
        (
            FaultKind::ServiceShuttingDown,
            "Service is shutting down, please retry later!",
        ),
        (FaultKind::RunningTxnLimit, "current running txns on db"),
        (FaultKind::NotMaster, "current fe is not master"),
    ] {
        let sim = start();
        sim.faults().inject(LoadFault::new(kind));
        let r = json_load(&sim, "p", ROW);
        assert_eq!(r.status(), "Fail");
        assert!(r.message().starts_with(prefix), "{}", r.body);
        assert_eq!(r.json()["TxnId"], -1);
        assert!(!r.saw_100_continue(), "refused before reading the body");
        assert_eq!(json_load(&sim, "p", ROW).status(), "Success");
    }
}

#[test]
fn publish_timeout_commits_and_rows_appear_later() {
    let sim = start();
    sim.faults()
        .inject(LoadFault::new(FaultKind::PublishTimeout {
            visible_after_ms: 600,
        }));
    let r = json_load(&sim, "pt", ROW);
    assert_eq!(r.status(), "Publish Timeout", "{}", r.body);
    assert!(r
        .message()
        .starts_with("Publish timeout. The data will be visible after a while"));
    assert_eq!(sim.label_state("db", "pt"), TxnStatus::Committed);
    assert!(rows(&sim).is_empty(), "committed but not yet visible");
    // The label is taken (FINISHED) even before the rows are visible: never re-send.
    let r = json_load(&sim, "pt", ROW);
    assert_eq!(r.json()["ExistingJobStatus"], "FINISHED");
    // A later load of the same table waits for the earlier version, then succeeds.
    let started = Instant::now();
    let r = json_load(&sim, "after", r#"[{"id":2,"score":2}]"#);
    assert_eq!(r.status(), "Success", "{}", r.body);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(rows(&sim).len(), 2);
    assert_eq!(sim.label_state("db", "pt"), TxnStatus::Visible);
}

#[test]
fn commit_unknown_is_committed_although_answered_fail() {
    let sim = start();
    sim.faults()
        .inject(LoadFault::new(FaultKind::CommitUnknown));
    let r = json_load(&sim, "cu", ROW);
    assert_eq!(r.status(), "Fail");
    assert!(r
        .message()
        .ends_with("Transaction status unknown, you can retry with same label."));
    assert_eq!(rows(&sim).len(), 1);
    // The documented recovery: retry with the same label → already FINISHED.
    let r = json_load(&sim, "cu", ROW);
    assert_eq!(r.json()["ExistingJobStatus"], "FINISHED");
    assert_eq!(
        sim.counters("db", "t").labels_committed,
        vec!["cu".to_string()]
    );
}

#[test]
fn commit_then_dropped_connection() {
    let sim = start();
    sim.faults()
        .inject(LoadFault::new(FaultKind::CommitThenDropConnection));
    let r = json_load(&sim, "cd", ROW);
    assert_eq!(r.code, 52, "curl: empty reply from server\n{}", r.trace);
    assert_eq!(rows(&sim).len(), 1);
    assert_eq!(sim.label_state("db", "cd"), TxnStatus::Visible);
    let r = json_load(&sim, "cd", ROW);
    assert_eq!(r.json()["ExistingJobStatus"], "FINISHED");
}

#[test]
fn reset_mid_body_aborts_and_the_label_is_reusable() {
    let sim = start();
    sim.faults().inject(LoadFault::new(FaultKind::ResetMidBody));
    let r = json_load(&sim, "rm", ROW);
    assert_ne!(r.code, 0, "{}", r.trace);
    assert!(r.saw_100_continue());
    assert_eq!(sim.label_state("db", "rm"), TxnStatus::Aborted);
    assert!(rows(&sim).is_empty());
    assert_eq!(json_load(&sim, "rm", ROW).status(), "Success");
}

#[test]
fn faults_count_down_and_only_hit_their_table() {
    let sim = start();
    sim.faults().inject(
        LoadFault::new(FaultKind::MemoryExceeded)
            .times(2)
            .on_table("db", "other"),
    );
    assert_eq!(json_load(&sim, "a", ROW).status(), "Success");
    sim.faults()
        .inject(LoadFault::new(FaultKind::TxnTimeout).times(2));
    assert_eq!(json_load(&sim, "b", ROW).status(), "Fail");
    assert_eq!(json_load(&sim, "b", ROW).status(), "Fail");
    assert_eq!(json_load(&sim, "b", ROW).status(), "Success");
    let left = sim.faults().snapshot().loads;
    assert_eq!(left.len(), 1, "the other table's fault is untouched");
    sim.faults().clear();
    assert!(sim.faults().snapshot().loads.is_empty());
}

#[test]
fn refused_and_reset_connections() {
    let sim = start();
    sim.faults().set_server(
        ServerRole::Be,
        ServerFaults {
            refuse_connections: true,
            ..ServerFaults::default()
        },
    );
    // Closing the listener happens on the accept loop; give it a moment.
    assert!(eventually(Duration::from_secs(2), || {
        std::net::TcpStream::connect(sim.addrs().be_http).is_err()
    }));
    let r = json_load(&sim, "r1", ROW);
    assert_eq!(r.code, 7, "curl: couldn't connect\n{}", r.trace);
    sim.faults()
        .set_server(ServerRole::Be, ServerFaults::default());
    assert!(eventually(Duration::from_secs(2), || {
        std::net::TcpStream::connect(sim.addrs().be_http).is_ok()
    }));
    assert_eq!(json_load(&sim, "r1", ROW).status(), "Success");

    sim.faults().set_server(
        ServerRole::Fe,
        ServerFaults {
            reset_connections: true,
            ..ServerFaults::default()
        },
    );
    std::thread::sleep(Duration::from_millis(50));
    let r = json_load(&sim, "r2", ROW);
    // Depending on timing curl sees the RST while connecting (7), sending (55) or receiving (56).
    assert!(
        [7, 52, 55, 56].contains(&r.code) && r.trace.contains("reset"),
        "curl: connection reset, got {}\n{}",
        r.code,
        r.trace
    );
    sim.faults().clear();
}

#[test]
fn delayed_replies_and_no_backend_alive() {
    let sim = start();
    sim.faults().set_server(
        ServerRole::Be,
        ServerFaults {
            delay_ms: 400,
            ..ServerFaults::default()
        },
    );
    let started = Instant::now();
    assert_eq!(json_load(&sim, "slow", ROW).status(), "Success");
    assert!(started.elapsed() >= Duration::from_millis(400));
    sim.faults().clear();

    sim.faults().set_no_backend_alive(true);
    let r = json_load(&sim, "nb", ROW);
    assert_eq!(
        r.body,
        r#"{"Status":"FAILED","Message":"class com.starrocks.common.DdlException: No backend alive."}"#
    );
    assert!(!r.trace.contains("< HTTP/1.1 307"));
}

#[test]
fn admin_endpoint_injects_faults_and_reports_counters() {
    let admin_addr = "127.0.0.1:0".parse().unwrap();
    let sim = start_with(SimOptions {
        admin: Some(admin_addr),
        ..SimOptions::default()
    });
    let admin = format!("http://{}", sim.addrs().admin.unwrap());
    let r = curl(&[
        "-XPOST",
        "-d",
        r#"{"kind":"too_many_versions","count":1,"db":"db","table":"t"}"#,
        &format!("{admin}/faults"),
    ]);
    assert_eq!(r.code, 0);
    assert!(r.body.contains("too_many_versions"), "{}", r.body);
    assert!(json_load(&sim, "adm", ROW)
        .message()
        .contains("too many versions"));
    assert_eq!(json_load(&sim, "adm", ROW).status(), "Success");

    let r = curl(&[
        "-XPOST",
        "-d",
        r#"{"kind":"no_backend_alive"}"#,
        &format!("{admin}/faults"),
    ]);
    assert_eq!(r.code, 0);
    assert!(json_load(&sim, "nb", ROW)
        .body
        .contains("No backend alive."));
    curl(&["-XDELETE", &format!("{admin}/faults")]);

    let r = curl(&[
        "-XPOST",
        "-d",
        r#"{"kind":"delay","server":"be","ms":300}"#,
        &format!("{admin}/faults"),
    ]);
    assert_eq!(
        sim.faults().server(ServerRole::Be).delay_ms,
        300,
        "{}",
        r.body
    );
    curl(&["-XDELETE", &format!("{admin}/faults")]);

    let r = curl(&["-XPOST", "-d", "not json", &format!("{admin}/faults")]);
    assert!(r.trace.contains("< HTTP/1.1 400"));
    let r = curl(&[
        "-XPOST",
        "-d",
        r#"{"kind":"explode"}"#,
        &format!("{admin}/faults"),
    ]);
    assert!(r.trace.contains("< HTTP/1.1 400"));

    let r = curl(&[&format!("{admin}/counters/db/t")]);
    let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(j["loads_committed"], 1);
    assert_eq!(j["labels_committed"], serde_json::json!(["adm"]));
    assert_eq!(j["label_attempts"]["adm"], 2);

    let r = curl(&[&format!("{admin}/tables/db/t")]);
    let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(j["rows"], serde_json::json!([[1, "a", 1]]));

    let r = curl(&[
        "-XPOST",
        "-d",
        r#"{"name":"u","columns":[{"name":"k","type":"VARCHAR(10)","nullable":false},{"name":"j","type":"JSON"}],"primary_key":["k"]}"#,
        &format!("{admin}/tables/db"),
    ]);
    assert!(r.body.contains("\"created\":true"), "{}", r.body);
    let r = stream_load_to(
        &sim.fe_url(),
        "db",
        "u",
        "j1",
        &["format: json"],
        br#"{"k":"x","j":{"a":[1,2]}}"#,
    );
    assert_eq!(r.status(), "Success", "{}", r.body);
}
