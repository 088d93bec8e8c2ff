//! Multi-table transactions (`transaction_type: multi`, StarRocks 4.0+) and the 3.x emulation,
//! with curl through the FE. The expected statuses are StarRocks' recorded answers (SQL-tester
//! case `test/sql/test_stream_load/T/test_stream_load_multi_table_rollback` and
//! `test_be_reject_transaction_type`); messages follow `StreamLoadMultiStmtTask`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use starrocks_sim::catalog::{ColumnDef, ColumnType, TableSpec};
use starrocks_sim::{FaultKind, LoadFault, Sim, SimOptions, TxnEffect, TxnOp, TxnStatus};

use crate::harness::*;

/// A sim with `db.t` (standard) and `db.t2 (id BIGINT, v INT)`.
fn start_two(options: SimOptions) -> Sim {
    let sim = start_with(options);
    sim.catalog()
        .create_table(
            "db",
            TableSpec::new("t2")
                .column(ColumnDef::new("id", ColumnType::BigInt).not_null())
                .column(ColumnDef::new("v", ColumnType::Int))
                .primary_key(&["id"]),
        )
        .unwrap();
    sim
}

/// A multi-table transaction call through the FE: `transaction_type: multi`, `table` only when
/// given (loads name their table; begin/commit/rollback need none).
fn mtxn(sim: &Sim, op: &str, label: &str, table: Option<&str>, body: Option<&[u8]>) -> Curl {
    mtxn_to(&sim.fe_url(), op, label, table, &[], body)
}

fn mtxn_to(
    base: &str,
    op: &str,
    label: &str,
    table: Option<&str>,
    extra: &[&str],
    body: Option<&[u8]>,
) -> Curl {
    let user = format!("root:{PASSWORD}");
    let url = format!("{base}/api/transaction/{op}");
    let label_header = format!("label:{label}");
    let table_header = table.map(|t| format!("table:{t}"));
    let file = body.map(TempFile::new);
    let mut args: Vec<&str> = vec![
        "--location-trusted",
        "-u",
        &user,
        "-H",
        "Expect:100-continue",
        "-H",
        &label_header,
        "-H",
        "db:db",
        "-H",
        "transaction_type:multi",
        "-H",
        "format:json",
    ];
    if let Some(t) = &table_header {
        args.push("-H");
        args.push(t);
    }
    for h in extra {
        args.push("-H");
        args.push(h);
    }
    match &file {
        Some(f) => {
            args.push("-XPUT");
            args.push("-T");
            args.push(f.path());
        }
        None => args.push("-XPOST"),
    }
    args.push(&url);
    curl(&args)
}

fn load_t(sim: &Sim, label: &str, id: i64) -> Curl {
    let body = format!(r#"{{"id":{id},"name":"n{id}","score":{id}}}"#);
    mtxn(sim, "load", label, Some("t"), Some(body.as_bytes()))
}

fn load_t2(sim: &Sim, label: &str, id: i64) -> Curl {
    let body = format!(r#"{{"id":{id},"v":{id}}}"#);
    mtxn(sim, "load", label, Some("t2"), Some(body.as_bytes()))
}

fn counts(sim: &Sim) -> (usize, usize) {
    let c = sim.catalog();
    (
        c.row_count("db", "t").unwrap(),
        c.row_count("db", "t2").unwrap(),
    )
}

#[test]
fn multi_table_commit_applies_every_table_at_once_and_follows_starrocks_matrix() {
    let sim = start_two(SimOptions::default());
    assert_eq!(sim.starrocks_version(), "4.0.2");
    let r = mtxn(&sim, "begin", "m1", None, None);
    assert_eq!(r.status(), "OK", "{}", r.body);
    assert!(!r.trace.contains("< HTTP/1.1 307"), "the FE answers begin");
    assert_eq!(r.body, "{\n  \"Status\": \"OK\",\n  \"Message\": \"\"\n}");
    for id in 1..=3 {
        let r = load_t(&sim, "m1", id);
        assert_eq!(r.status(), "OK", "{}", r.body);
        assert!(r.trace.contains("< HTTP/1.1 307"), "loads go to the BE");
    }
    let r = load_t2(&sim, "m1", 7);
    assert_eq!(r.status(), "OK", "{}", r.body);
    assert_eq!(counts(&sim), (0, 0), "nothing visible before commit");
    assert_eq!(sim.label_state("db", "m1"), TxnStatus::Prepare);
    let open = sim.open_multi_txns();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].3, ["t", "t2"]);

    let r = mtxn(&sim, "commit", "m1", None, None);
    assert_eq!(r.status(), "OK", "{}", r.body);
    assert_eq!(r.json()["Label"], "m1");
    let txn_id = r.json()["TxnId"].as_i64().unwrap();
    assert_eq!(counts(&sim), (3, 1));
    assert_eq!(sim.label_state("db", "m1"), TxnStatus::Visible);

    // StarRocks' recorded answers: commit again OK, load FAILED, rollback FAILED, begin
    // LABEL_ALREADY_EXISTS.
    let r = mtxn(&sim, "commit", "m1", None, None);
    assert_eq!(r.status(), "OK");
    assert_eq!(
        r.message(),
        format!("Transaction {txn_id} has already committed, label is m1")
    );
    let r = load_t(&sim, "m1", 9);
    assert_eq!(r.status(), "FAILED", "{}", r.body);
    assert_eq!(r.message(), "stream load task m1 has already been finished");
    let r = mtxn(&sim, "rollback", "m1", None, None);
    assert_eq!(r.status(), "FAILED");
    assert_eq!(
        r.message(),
        format!("Can not abort VISIBLE transaction {txn_id}, label is m1")
    );
    let r = mtxn(&sim, "begin", "m1", Some("t"), None);
    assert_eq!(r.status(), "LABEL_ALREADY_EXISTS", "{}", r.body);
    assert_eq!(r.json()["ExistingJobStatus"], "FINISHED");
    assert_eq!(counts(&sim), (3, 1));

    // Counted once, over both tables.
    let labels = sim.label_counters("db");
    assert_eq!(labels["m1"].commits, 1);
    assert_eq!(labels["m1"].tables, ["t", "t2"]);
    assert_eq!(labels["m1"].rows, 4);
    assert!(labels["m1"].multi_table);
    assert_eq!(sim.counters("db", "t").labels_committed, ["m1"]);
    assert_eq!(sim.counters("db", "t2").rows_loaded, 1);
    let ops: Vec<String> = sim.txn_events(0).into_iter().map(|e| e.op).collect();
    assert_eq!(ops, ["begin", "load", "load", "load", "load", "commit"]);
}

#[test]
fn multi_table_rollback_leaves_no_trace_and_keeps_the_label_used() {
    let sim = start_two(SimOptions::default());
    assert_eq!(mtxn(&sim, "begin", "r1", Some("t"), None).status(), "OK");
    assert_eq!(load_t(&sim, "r1", 1).status(), "OK");
    assert_eq!(load_t2(&sim, "r1", 1).status(), "OK");
    let r = mtxn(&sim, "rollback", "r1", None, None);
    assert_eq!(r.status(), "OK", "{}", r.body);
    assert_eq!(r.message(), "stream load r1 abort");
    let r = mtxn(&sim, "rollback", "r1", None, None);
    assert_eq!(r.status(), "OK");
    assert!(r.message().contains("has already aborted"), "{}", r.body);
    let r = load_t(&sim, "r1", 2);
    assert_eq!(r.status(), "FAILED");
    assert!(
        r.message()
            .starts_with("stream load task r1 has already been cancelled"),
        "{}",
        r.body
    );
    let r = mtxn(&sim, "commit", "r1", None, None);
    assert_eq!(r.status(), "FAILED");
    assert!(
        r.message()
            .starts_with("Can not commit CANCELLED transaction"),
        "{}",
        r.body
    );
    assert_eq!(counts(&sim), (0, 0));
    // Unlike a single-table label, a multi-table label is not free again after a rollback.
    let r = mtxn(&sim, "begin", "r1", Some("t"), None);
    assert_eq!(r.status(), "LABEL_ALREADY_EXISTS", "{}", r.body);
    assert_eq!(r.json()["ExistingJobStatus"], "CANCELLED");
    assert!(r
        .message()
        .starts_with("Transaction already started with label [r1], txnId: "));
    assert!(sim.label_counters("db").is_empty());
    // Until the label is evicted (label_keep_max_second).
    sim.evict_labels(Some("db"));
    assert_eq!(mtxn(&sim, "begin", "r1", None, None).status(), "OK");
}

#[test]
fn multi_table_edge_cases() {
    let sim = start_two(SimOptions::default());
    // Never begun.
    let r = load_t(&sim, "nb", 1);
    assert_eq!(r.status(), "FAILED");
    assert_eq!(
        r.message(),
        "class com.starrocks.common.StarRocksException: stream load task nb does not exist"
    );
    assert_eq!(mtxn(&sim, "commit", "nb", None, None).status(), "FAILED");
    let r = mtxn(&sim, "rollback", "nb", None, None);
    assert_eq!(r.status(), "FAILED");
    assert!(
        r.message().ends_with("stream load tasknbdoes not exist"),
        "sic"
    );
    // Empty commit is OK (single-table: INTERNAL_ERROR).
    assert_eq!(mtxn(&sim, "begin", "e1", Some("t"), None).status(), "OK");
    assert_eq!(mtxn(&sim, "commit", "e1", None, None).status(), "OK");
    // Double begin.
    assert_eq!(mtxn(&sim, "begin", "d1", Some("t"), None).status(), "OK");
    let r = mtxn(&sim, "begin", "d1", Some("t"), None);
    assert_eq!(r.status(), "LABEL_ALREADY_EXISTS");
    assert_eq!(r.json()["ExistingJobStatus"], "BEGIN");
    // No prepare for multi-table transactions.
    assert_eq!(load_t(&sim, "d1", 1).status(), "OK");
    let r = mtxn(&sim, "prepare", "d1", None, None);
    assert_eq!(r.status(), "FAILED");
    assert_eq!(
        r.message(),
        "class com.starrocks.common.StarRocksException: Unsupported operation: TXN_PREPARE"
    );
    // An unknown table cancels the transaction.
    let r = mtxn(&sim, "load", "d1", Some("nope"), Some(b"{}"));
    assert_eq!(r.status(), "FAILED");
    assert!(r.message().contains("Failed to find table nope in db db"));
    assert_eq!(sim.label_state("db", "d1"), TxnStatus::Aborted);
    // Bad data on the BE rolls the whole transaction back.
    assert_eq!(mtxn(&sim, "begin", "b1", None, None).status(), "OK");
    assert_eq!(load_t2(&sim, "b1", 1).status(), "OK");
    let r = mtxn(&sim, "load", "b1", Some("t"), Some(b"{\"id\":"));
    assert_eq!(r.status(), "FAILED", "{}", r.body);
    assert_eq!(sim.label_state("db", "b1"), TxnStatus::Aborted);
    assert_eq!(mtxn(&sim, "commit", "b1", None, None).status(), "FAILED");
    // A table whose rows were all rejected fails the commit, naming the table; nothing lands.
    assert_eq!(mtxn(&sim, "begin", "rj", None, None).status(), "OK");
    assert_eq!(load_t2(&sim, "rj", 1).status(), "OK");
    let r = mtxn_to(
        &sim.fe_url(),
        "load",
        "rj",
        Some("t"),
        &["max_filter_ratio:1"],
        Some(br#"{"id":null}"#),
    );
    assert_eq!(r.status(), "OK", "{}", r.body);
    let r = mtxn(&sim, "commit", "rj", None, None);
    assert_eq!(r.status(), "FAILED");
    assert!(r.message().contains("Failed to load table t"), "{}", r.body);
    assert!(r.message().contains("tracking_url:"), "{}", r.body);
    assert_eq!(sim.label_state("db", "rj"), TxnStatus::Aborted);
    // The BE refuses multi-table requests.
    let r = mtxn_to(&sim.be_url(), "begin", "x", Some("t"), &[], None);
    assert_eq!(
        r.body,
        "{\n    \"Status\": \"INVALID_ARGUMENT\",\n    \"Message\": \"Multi-statement transaction requests can only be sent to FE nodes, not BE nodes\"\n}"
    );
    assert_eq!(counts(&sim), (0, 0));
}

#[test]
fn multi_table_timeout_counts_from_begin() {
    let sim = start_two(SimOptions::default());
    let r = mtxn_to(&sim.fe_url(), "begin", "to", None, &["timeout:1"], None);
    assert_eq!(r.status(), "OK");
    assert_eq!(load_t(&sim, "to", 1).status(), "OK");
    assert!(eventually(Duration::from_secs(5), || sim
        .label_state("db", "to")
        == TxnStatus::Aborted));
    let r = load_t(&sim, "to", 2);
    assert_eq!(
        r.message(),
        "stream load task to has already been cancelled: transaction timeout after 1000ms"
    );
    assert_eq!(counts(&sim), (0, 0));
    assert_eq!(sim.counters("db", "t").loads_failed, 1);
}

#[test]
fn starrocks_3_ignores_transaction_type_multi() {
    let sim = start_two(SimOptions {
        starrocks_version: "3.3".into(),
        ..SimOptions::default()
    });
    // The header is unknown to a 3.x FE: a single-table begin on `table`, redirected to the BE.
    let r = mtxn(&sim, "begin", "s1", Some("t"), None);
    assert_eq!(r.status(), "OK", "{}", r.body);
    assert!(r.trace.contains("< HTTP/1.1 307"));
    assert!(r.json()["TxnId"].is_i64());
    assert_eq!(load_t(&sim, "s1", 1).status(), "OK");
    let r = load_t2(&sim, "s1", 1);
    assert_eq!(r.status(), "INVALID_ARGUMENT", "{}", r.body);
    assert_eq!(
        r.message(),
        "Request table t2 not equal transaction table t"
    );
    // Begin without a table fails on the BE.
    let r = mtxn(&sim, "begin", "s2", None, None);
    assert_eq!(r.status(), "ANALYSIS_ERROR", "{}", r.body);
    assert!(Sim::start(SimOptions {
        starrocks_version: "four".into(),
        ..SimOptions::default()
    })
    .is_err());
}

#[test]
fn current_version_reports_the_emulated_version() {
    assert_eq!(
        starrocks_sim::mysql::DEFAULT_VERSION,
        format!("{}-sim", starrocks_sim::DEFAULT_STARROCKS_VERSION),
        "the MySQL side's own default follows the sim's"
    );
    for (version, expected) in [(None, "4.0.2-sim"), (Some("3.3"), "3.3-sim")] {
        let mut options = SimOptions {
            mysql: Some("127.0.0.1:0".parse().unwrap()),
            ..SimOptions::default()
        };
        if let Some(v) = version {
            options.starrocks_version = v.into();
        }
        let sim = start_with(options);
        let addr = sim.addrs().mysql.unwrap();
        let got: String = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                use mysql_async::prelude::Queryable;
                let opts = mysql_async::OptsBuilder::default()
                    .ip_or_hostname(addr.ip().to_string())
                    .tcp_port(addr.port())
                    .user(Some("root"))
                    .pass(Some(PASSWORD));
                let mut conn = mysql_async::Conn::new(opts).await.unwrap();
                let v: Option<String> = conn.query_first("select current_version()").await.unwrap();
                let _ = conn.disconnect().await;
                v.unwrap()
            });
        assert_eq!(got, expected);
    }
}

#[test]
fn a_reader_never_sees_half_of_a_multi_table_commit() {
    let sim = Arc::new(start_two(SimOptions::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let sim = sim.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            let mut versions = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let (version, tables) = sim.snapshot("db", &["t", "t2"]).unwrap();
                assert_eq!(
                    tables[0].len(),
                    2 * tables[1].len(),
                    "version {version}: t has 2 rows per t2 row"
                );
                versions.insert(version);
                reads += 1;
            }
            (reads, versions.len())
        })
    };
    // Every transaction adds two rows to t and one to t2; one of them also waits for a delayed
    // publish, which must make both tables visible together.
    sim.faults()
        .inject(LoadFault::new(FaultKind::PublishTimeout {
            visible_after_ms: 300,
        }));
    for i in 0..8i64 {
        let label = format!("a{i}");
        assert_eq!(mtxn(&sim, "begin", &label, None, None).status(), "OK");
        assert_eq!(load_t(&sim, &label, 2 * i).status(), "OK");
        assert_eq!(load_t2(&sim, &label, i).status(), "OK");
        assert_eq!(load_t(&sim, &label, 2 * i + 1).status(), "OK");
        let r = mtxn(&sim, "commit", &label, None, None);
        assert_eq!(r.status(), "OK", "{}", r.body);
    }
    assert!(eventually(Duration::from_secs(5), || counts(&sim) == (16, 8)));
    stop.store(true, Ordering::Relaxed);
    let (reads, versions) = reader.join().unwrap();
    assert!(
        reads > 0 && versions > 1,
        "{reads} reads over {versions} versions"
    );
}

#[test]
fn step_faults_cut_every_two_phase_commit_step() {
    let sim = start();
    let faults = sim.faults();
    let step = |op, effect| {
        LoadFault::new(FaultKind::TxnStep {
            op,
            effect,
            stall_ms: 0,
        })
    };
    // Fail at begin: no transaction.
    faults.inject(step(TxnOp::Begin, TxnEffect::Fail));
    let r = txn(&sim, "begin", "f1", &[], None);
    assert_eq!(r.status(), "INTERNAL_ERROR", "{}", r.body);
    assert_eq!(sim.label_state("db", "f1"), TxnStatus::Unknown);
    // Fail at load: rolled back.
    assert_eq!(txn(&sim, "begin", "f2", &[], None).status(), "OK");
    faults.inject(step(TxnOp::Load, TxnEffect::Fail));
    let body: &[u8] = br#"{"id":1,"name":"a","score":1}"#;
    let r = txn(&sim, "load", "f2", &["format: json"], Some(body));
    assert_eq!(r.status(), "INTERNAL_ERROR");
    assert_eq!(sim.label_state("db", "f2"), TxnStatus::Aborted);
    // Prepare applied, answer lost: PREPARED, survives a BE restart, the FE commits it.
    assert_eq!(txn(&sim, "begin", "f3", &[], None).status(), "OK");
    assert_eq!(
        txn(&sim, "load", "f3", &["format: json"], Some(body)).status(),
        "OK"
    );
    faults.inject(step(TxnOp::Prepare, TxnEffect::DropAfter));
    let r = txn(&sim, "prepare", "f3", &[], None);
    assert_ne!(r.code, 0, "connection dropped: {}", r.trace);
    assert_eq!(sim.label_state("db", "f3"), TxnStatus::Prepared);
    assert_eq!(sim.restart_be(), 0);
    // Commit applied, answer lost ("outcome unknown"), then the retry finds it committed.
    faults.inject(step(TxnOp::Commit, TxnEffect::DropAfter));
    let r = txn(&sim, "commit", "f3", &[], None);
    assert_ne!(r.code, 0);
    assert_eq!(sim.label_state("db", "f3"), TxnStatus::Visible);
    let r = txn(&sim, "commit", "f3", &[], None);
    assert_eq!(r.status(), "OK");
    assert!(r.message().contains("has already committed"));
    assert_eq!(rows(&sim).len(), 1);
    assert_eq!(sim.label_counters("db")["f3"].commits, 1);
    // Dropped before commit: nothing happened, the PREPARED txn stays.
    assert_eq!(txn(&sim, "begin", "f4", &[], None).status(), "OK");
    assert_eq!(
        txn(&sim, "load", "f4", &["format: json"], Some(body)).status(),
        "OK"
    );
    assert_eq!(txn(&sim, "prepare", "f4", &[], None).status(), "OK");
    faults.inject(step(TxnOp::Commit, TxnEffect::DropBefore));
    assert_ne!(txn(&sim, "commit", "f4", &[], None).code, 0);
    assert_eq!(sim.label_state("db", "f4"), TxnStatus::Prepared);
    // A failed commit of a PREPARED txn leaves it PREPARED.
    faults.inject(step(TxnOp::Commit, TxnEffect::Fail));
    assert_eq!(txn(&sim, "commit", "f4", &[], None).status(), "FAILED");
    assert_eq!(sim.label_state("db", "f4"), TxnStatus::Prepared);
    assert_eq!(txn(&sim, "commit", "f4", &[], None).status(), "OK");
    // Stall after prepare: the step log shows it applied while the client still waits.
    assert_eq!(txn(&sim, "begin", "f5", &[], None).status(), "OK");
    assert_eq!(
        txn(&sim, "load", "f5", &["format: json"], Some(body)).status(),
        "OK"
    );
    faults.inject(LoadFault::new(FaultKind::TxnStep {
        op: TxnOp::Prepare,
        effect: TxnEffect::StallAfter,
        stall_ms: 1500,
    }));
    let seen = sim.txn_events(0).last().map_or(0, |e| e.seq);
    let sim = Arc::new(sim);
    let waiter = {
        let sim = sim.clone();
        std::thread::spawn(move || txn(&sim, "prepare", "f5", &[], None))
    };
    assert!(eventually(Duration::from_secs(5), || sim
        .txn_events(seen)
        .iter()
        .any(|e| e.op == "prepare" && e.label == "f5")));
    assert!(!waiter.is_finished(), "the answer is held back");
    assert_eq!(waiter.join().unwrap().status(), "OK");
    // Stall before commit: the request is held with nothing applied yet.
    sim.faults().inject(LoadFault::new(FaultKind::TxnStep {
        op: TxnOp::Commit,
        effect: TxnEffect::StallBefore,
        stall_ms: 1500,
    }));
    let waiter = {
        let sim = sim.clone();
        std::thread::spawn(move || txn(&sim, "commit", "f5", &[], None))
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sim.label_state("db", "f5"), TxnStatus::Prepared);
    assert_eq!(waiter.join().unwrap().status(), "OK");
    assert_eq!(sim.label_state("db", "f5"), TxnStatus::Visible);
}

#[test]
fn multi_table_commit_outcome_unknown_and_admin_endpoints() {
    let sim = start_two(SimOptions {
        admin: Some("127.0.0.1:0".parse().unwrap()),
        ..SimOptions::default()
    });
    let admin = format!("http://{}", sim.addrs().admin.unwrap());
    let r = curl(&[
        "-XPOST",
        "-d",
        r#"{"kind":"txn_step","op":"commit","effect":"drop_after","table":"t2"}"#,
        &format!("{admin}/faults"),
    ]);
    assert!(r.body.contains("txn_step"), "{}", r.body);
    assert_eq!(mtxn(&sim, "begin", "u1", None, None).status(), "OK");
    assert_eq!(load_t(&sim, "u1", 1).status(), "OK");
    assert_eq!(load_t2(&sim, "u1", 1).status(), "OK");
    let open = curl(&[&format!("{admin}/multi_txns")]);
    assert!(
        open.body.contains("\"tables\":[\"t\",\"t2\"]"),
        "{}",
        open.body
    );
    let state = |label: &str| {
        let url = format!("{}/api/db/get_load_state?label={label}", sim.fe_url());
        let r = curl(&["-u", &format!("root:{PASSWORD}"), &url]);
        r.json()["state"].as_str().unwrap().to_string()
    };
    assert_eq!(state("u1"), "PREPARE");
    let r = mtxn(&sim, "commit", "u1", None, None);
    assert_ne!(r.code, 0, "no answer: {}", r.trace);
    // With no prepare, a client settles an unknown commit from the label's state.
    assert_eq!(state("u1"), "VISIBLE");
    assert_eq!(counts(&sim), (1, 1));
    assert_eq!(mtxn(&sim, "commit", "u1", None, None).status(), "OK");
    let labels = curl(&[&format!("{admin}/label_counters/db")]);
    let j: serde_json::Value = serde_json::from_str(&labels.body).unwrap();
    assert_eq!(j["u1"]["commits"], 1);
    let snap = curl(&[&format!("{admin}/snapshot/db?tables=t,t2")]);
    let j: serde_json::Value = serde_json::from_str(&snap.body).unwrap();
    assert_eq!(j["tables"]["t2"], serde_json::json!([[1, 1]]));
    assert!(j["version"].as_u64().unwrap() >= 1);
    let events = curl(&[&format!("{admin}/txn_events?after=0")]);
    assert!(events.body.contains("\"op\":\"commit\""), "{}", events.body);
}

#[test]
fn multi_table_label_state_survives_a_restart_and_open_ones_abort() {
    let dir = std::env::temp_dir().join(format!("sim-multi-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let options = || SimOptions {
        data_dir: Some(dir.clone()),
        ..SimOptions::default()
    };
    {
        let sim = start_two(options());
        assert_eq!(mtxn(&sim, "begin", "p1", None, None).status(), "OK");
        assert_eq!(load_t(&sim, "p1", 1).status(), "OK");
        assert_eq!(load_t2(&sim, "p1", 1).status(), "OK");
        assert_eq!(mtxn(&sim, "commit", "p1", None, None).status(), "OK");
        assert_eq!(mtxn(&sim, "begin", "p2", None, None).status(), "OK");
        assert_eq!(load_t(&sim, "p2", 2).status(), "OK");
        sim.shutdown();
    }
    let sim = Sim::start(SimOptions {
        password: PASSWORD.into(),
        ..options()
    })
    .unwrap();
    assert_eq!(counts(&sim), (1, 1));
    assert_eq!(sim.label_state("db", "p1"), TxnStatus::Visible);
    assert_eq!(sim.label_state("db", "p2"), TxnStatus::Aborted);
    let r = mtxn(&sim, "commit", "p2", None, None);
    assert_eq!(r.status(), "FAILED", "{}", r.body);
    assert_eq!(mtxn(&sim, "commit", "p1", None, None).status(), "OK");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_fe_restart_cancels_open_multi_table_txns_only() {
    let sim = start_two(SimOptions::default());
    assert_eq!(mtxn(&sim, "begin", "fr", None, None).status(), "OK");
    assert_eq!(load_t(&sim, "fr", 1).status(), "OK");
    assert_eq!(txn(&sim, "begin", "single", &[], None).status(), "OK");
    let body: &[u8] = br#"{"id":2,"name":"b","score":2}"#;
    assert_eq!(
        txn(&sim, "load", "single", &["format: json"], Some(body)).status(),
        "OK"
    );
    assert_eq!(sim.restart_fe(), 1);
    assert!(sim
        .txn_events(0)
        .iter()
        .any(|e| e.label == "fr" && e.op == "abort" && e.tables == "t"));
    let r = mtxn(&sim, "commit", "fr", None, None);
    assert_eq!(r.status(), "FAILED", "{}", r.body);
    assert_eq!(sim.label_state("db", "fr"), TxnStatus::Aborted);
    let r = load_t(&sim, "fr", 3);
    assert!(
        r.message()
            .ends_with("has already been cancelled: cancelled after FE restart"),
        "{}",
        r.body
    );
    // The single-table txn carries on.
    assert_eq!(txn(&sim, "commit", "single", &[], None).status(), "OK");
    assert_eq!(counts(&sim), (1, 0));
}

#[test]
fn the_binary_takes_the_version_flag_and_refuses_a_bad_one() {
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_starrocks-sim"))
        .args(["--fe-http", "127.0.0.1:0", "--be-http", "127.0.0.1:0"])
        .args(["--starrocks-version", "four"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not MAJOR.MINOR[.PATCH]"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_starrocks-sim"))
        .args(["--fe-http", "127.0.0.1:0", "--be-http", "127.0.0.1:0"])
        .args(["--starrocks-version", "3.3", "--password", PASSWORD])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    let fe = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("fe_http="))
        .unwrap()
        .to_string();
    // 3.x: the header is ignored, begin goes to the BE, which needs the (missing) database.
    let r = mtxn_to(&format!("http://{fe}"), "begin", "v3", None, &[], None);
    assert!(r.trace.contains("< HTTP/1.1 307"), "{}", r.trace);
    let _ = child.kill();
    let _ = child.wait();
}
