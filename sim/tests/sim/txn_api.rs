//! The transaction interface through the FE with curl: the state matrix of reference §5.

use std::io::Write;
use std::time::Duration;

use starrocks_sim::TxnStatus;

use crate::harness::*;

fn status(r: &Curl) -> String {
    r.status()
}

#[test]
fn begin_load_commit_makes_rows_visible_only_at_commit() {
    let sim = start();
    let r = txn(&sim, "begin", "t1", &[], None);
    assert_eq!(status(&r), "OK", "{}", r.trace);
    assert!(
        r.trace.contains("< HTTP/1.1 307"),
        "FE redirects begin to the BE"
    );
    let j = r.json();
    assert_eq!(j["Label"], "t1");
    let txn_id = j["TxnId"].as_i64().unwrap();
    assert!(j["BeginTxnTimeMs"].is_u64());

    let r = txn(
        &sim,
        "load",
        "t1",
        &["format: json"],
        Some(br#"{"id":1,"name":"a","score":1}"#),
    );
    assert_eq!(status(&r), "OK", "{}", r.body);
    assert!(r.saw_100_continue());
    assert_eq!(r.json()["TxnId"], txn_id);
    let r = txn(
        &sim,
        "load",
        "t1",
        &["format: json"],
        Some(br#"{"id":2,"name":"b","score":2}"#),
    );
    assert_eq!(status(&r), "OK", "{}", r.body);
    assert!(rows(&sim).is_empty(), "not visible before commit");

    let r = txn(&sim, "commit", "t1", &[], None);
    assert_eq!(status(&r), "OK", "{}", r.body);
    let j = r.json();
    assert_eq!(j["NumberTotalRows"], 2);
    assert_eq!(j["NumberLoadedRows"], 2);
    assert_eq!(rows(&sim).len(), 2);
    assert_eq!(sim.label_state("db", "t1"), TxnStatus::Visible);

    // Repeated commit is idempotent (answered by the FE); load after commit has no txn.
    let r = txn(&sim, "commit", "t1", &[], None);
    assert_eq!(status(&r), "OK");
    assert_eq!(
        r.message(),
        format!("Transaction {txn_id} has already committed, label is t1")
    );
    let r = txn(&sim, "load", "t1", &["format: json"], Some(b"{}"));
    assert_eq!(status(&r), "TXN_NOT_EXISTS", "{}", r.body);
    // Rollback after commit fails on the FE.
    let r = txn(&sim, "rollback", "t1", &[], None);
    assert_eq!(status(&r), "FAILED");
    assert!(
        r.message().contains("Can not abort VISIBLE transaction"),
        "{}",
        r.body
    );
    // Begin reusing a committed label.
    let r = txn(&sim, "begin", "t1", &[], None);
    assert_eq!(status(&r), "LABEL_ALREADY_EXISTS", "{}", r.body);
    assert_eq!(r.json()["ExistingJobStatus"], "FINISHED");
}

#[test]
fn double_begin_and_load_without_begin() {
    let sim = start();
    assert_eq!(status(&txn(&sim, "begin", "d1", &[], None)), "OK");
    let r = txn(&sim, "begin", "d1", &[], None);
    assert_eq!(status(&r), "LABEL_ALREADY_EXISTS", "{}", r.body);
    let r = txn(&sim, "load", "never-begun", &["format: json"], Some(b"{}"));
    assert_eq!(status(&r), "FAILED", "{}", r.body);
    assert!(r
        .message()
        .starts_with("class com.starrocks.common.StarRocksException: Can't find the transaction"));
    assert!(!r.trace.contains("< HTTP/1.1 307"), "answered by the FE");
}

#[test]
fn commit_without_data_is_an_internal_error_and_rolls_back() {
    let sim = start();
    assert_eq!(status(&txn(&sim, "begin", "empty", &[], None)), "OK");
    let r = txn(&sim, "commit", "empty", &[], None);
    assert_eq!(status(&r), "INTERNAL_ERROR", "{}", r.body);
    assert!(
        r.message().ends_with("hasn't send any data yet"),
        "{}",
        r.body
    );
    assert_eq!(sim.label_state("db", "empty"), TxnStatus::Aborted);
    let r = txn(&sim, "commit", "empty", &[], None);
    assert_eq!(status(&r), "FAILED");
    assert!(r.message().contains("Can not commit ABORTED transaction"));
}

#[test]
fn bad_data_rolls_back_and_later_ops_see_no_txn() {
    let sim = start();
    assert_eq!(status(&txn(&sim, "begin", "bad", &[], None)), "OK");
    let r = txn(&sim, "load", "bad", &["format: json"], Some(b"{\"id\":"));
    assert_eq!(status(&r), "ANALYSIS_ERROR", "{}", r.body);
    let r = txn(
        &sim,
        "load",
        "bad",
        &["format: json"],
        Some(br#"{"id":1,"score":1}"#),
    );
    assert_eq!(status(&r), "TXN_NOT_EXISTS", "{}", r.body);
    let r = txn(&sim, "commit", "bad", &[], None);
    assert_eq!(status(&r), "FAILED", "{}", r.body);
    // A rolled-back label can begin again.
    assert_eq!(status(&txn(&sim, "begin", "bad", &[], None)), "OK");
}

#[test]
fn rollback_is_repeatable_and_frees_the_label() {
    let sim = start();
    assert_eq!(status(&txn(&sim, "begin", "rb", &[], None)), "OK");
    txn(
        &sim,
        "load",
        "rb",
        &["format: json"],
        Some(br#"{"id":1,"score":1}"#),
    );
    let r = txn(&sim, "rollback", "rb", &[], None);
    assert_eq!(status(&r), "OK", "{}", r.body);
    let r = txn(&sim, "rollback", "rb", &[], None);
    assert_eq!(status(&r), "OK", "{}", r.body);
    assert!(r.message().contains("has already aborted"));
    assert!(rows(&sim).is_empty());
    assert_eq!(status(&txn(&sim, "begin", "rb", &[], None)), "OK");
}

#[test]
fn prepared_txn_survives_a_be_restart_and_is_committed_by_the_fe() {
    let sim = start();
    assert_eq!(status(&txn(&sim, "begin", "p1", &[], None)), "OK");
    txn(
        &sim,
        "load",
        "p1",
        &["format: json"],
        Some(br#"{"id":1,"name":"p","score":1}"#),
    );
    let r = txn(&sim, "prepare", "p1", &[], None);
    assert_eq!(status(&r), "OK", "{}", r.body);
    assert_eq!(r.json()["NumberLoadedRows"], 1);
    assert_eq!(sim.label_state("db", "p1"), TxnStatus::Prepared);
    // An open (PREPARE) txn dies with the BE; the PREPARED one does not.
    assert_eq!(status(&txn(&sim, "begin", "p2", &[], None)), "OK");
    assert_eq!(sim.restart_be(), 1);
    assert_eq!(sim.label_state("db", "p2"), TxnStatus::Aborted);
    assert!(rows(&sim).is_empty());
    let r = txn(&sim, "commit", "p1", &[], None);
    assert_eq!(status(&r), "OK", "{}", r.body);
    assert!(
        !r.trace.contains("< HTTP/1.1 307"),
        "the FE commits PREPARED itself"
    );
    assert_eq!(rows(&sim), vec![(1, Some("p".into()), 1)]);
    // Rollback of a PREPARED txn is also the FE's.
    assert_eq!(status(&txn(&sim, "begin", "p3", &[], None)), "OK");
    txn(
        &sim,
        "load",
        "p3",
        &["format: json"],
        Some(br#"{"id":3,"score":3}"#),
    );
    assert_eq!(status(&txn(&sim, "prepare", "p3", &[], None)), "OK");
    assert_eq!(status(&txn(&sim, "rollback", "p3", &[], None)), "OK");
    assert_eq!(sim.label_state("db", "p3"), TxnStatus::Aborted);
}

/// The FE's commit uses the batch as validated at prepare, unless the table changed since: a
/// column added in between is filled on the committed rows (checked anew, as before).
#[test]
fn a_prepared_txn_commits_its_batch_once_even_after_the_table_changed() {
    use starrocks_sim::catalog::{ColumnDef, ColumnPosition, ColumnType, Value};
    let sim = start();
    for (label, body) in [
        ("same", br#"{"id":1,"name":"a","score":1}"#.as_slice()),
        ("altered", br#"{"id":2,"name":"b","score":2}"#.as_slice()),
    ] {
        assert_eq!(status(&txn(&sim, "begin", label, &[], None)), "OK");
        let r = txn(&sim, "load", label, &["format: json"], Some(body));
        assert_eq!(status(&r), "OK", "{}", r.body);
        let r = txn(&sim, "prepare", label, &[], None);
        assert_eq!(status(&r), "OK", "{}", r.body);
    }
    let r = txn(&sim, "commit", "same", &[], None);
    assert_eq!(status(&r), "OK", "{}", r.body);
    assert_eq!(rows(&sim), vec![(1, Some("a".into()), 1)]);
    sim.catalog().write(|c| {
        c.table_mut("db", "t")
            .unwrap()
            .add_column(
                ColumnDef::new("age", ColumnType::Int).with_default("7"),
                ColumnPosition::Last,
            )
            .unwrap()
    });
    let r = txn(&sim, "commit", "altered", &[], None);
    assert_eq!(status(&r), "OK", "{}", r.body);
    let all = sim.catalog().rows("db", "t").unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1][0], Value::Int(2));
    assert_eq!(
        all[1][3],
        Value::Int(7),
        "the added column is filled: {all:?}"
    );
    // A second commit is answered from the label; the rows are applied once.
    let r = txn(&sim, "commit", "altered", &[], None);
    assert_eq!(status(&r), "OK", "{}", r.body);
    assert_eq!(sim.catalog().rows("db", "t").unwrap().len(), 2);
    assert_eq!(sim.label_state("db", "altered"), TxnStatus::Visible);
}

#[test]
fn concurrent_load_on_one_txn_is_in_processing() {
    let sim = start();
    assert_eq!(status(&txn(&sim, "begin", "busy", &[], None)), "OK");
    // A hand-made client that starts a load and holds it mid-body.
    let head = format!(
        "PUT /api/transaction/load HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nlabel: busy\r\ndb: db\r\ntable: t\r\nformat: json\r\nExpect: 100-continue\r\nContent-Length: 30\r\n\r\n",
        basic_auth()
    );
    let mut slow = raw_request(sim.addrs().be_http, &head);
    let interim = read_until(&mut slow, "100 Continue");
    assert!(interim.contains("HTTP/1.1 100 Continue"), "{interim}");
    slow.write_all(br#"{"id":1,"score":1}"#).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let r = txn(
        &sim,
        "load",
        "busy",
        &["format: json"],
        Some(br#"{"id":2,"score":2}"#),
    );
    assert_eq!(status(&r), "TXN_IN_PROCESSING", "{}", r.body);
    assert_eq!(r.json()["Label"], "busy");
    // Finish the slow load (30 bytes in total), then the txn commits both rows' worth.
    slow.write_all(b"           \n").unwrap();
    let reply = read_until(&mut slow, "\n}");
    assert!(reply.contains("\"Status\": \"OK\""), "{reply}");
    assert_eq!(status(&txn(&sim, "commit", "busy", &[], None)), "OK");
    assert_eq!(rows(&sim).len(), 1);
}

#[test]
fn idle_and_prepared_timeouts_abort() {
    let sim = start();
    assert_eq!(
        status(&txn(
            &sim,
            "begin",
            "idle",
            &["idle_transaction_timeout: 1"],
            None
        )),
        "OK"
    );
    assert!(eventually(Duration::from_secs(4), || sim
        .label_state("db", "idle")
        == TxnStatus::Aborted));
    assert_eq!(status(&txn(&sim, "begin", "prep", &[], None)), "OK");
    txn(
        &sim,
        "load",
        "prep",
        &["format: json"],
        Some(br#"{"id":1,"score":1}"#),
    );
    let r = txn(&sim, "prepare", "prep", &["prepared_timeout: 1"], None);
    assert_eq!(status(&r), "OK", "{}", r.body);
    assert!(eventually(Duration::from_secs(4), || sim
        .label_state("db", "prep")
        == TxnStatus::Aborted));
    let r = txn(&sim, "prepare", "x", &["prepared_timeout: soon"], None);
    assert_eq!(status(&r), "FAILED", "no txn: the FE answers first");
}

#[test]
fn fe_validates_db_label_and_op() {
    let sim = start();
    let user = format!("root:{PASSWORD}");
    let url = format!("{}/api/transaction/begin", sim.fe_url());
    let r = curl(&["-u", &user, "-XPOST", "-H", "label:x", &url]);
    assert_eq!(
        r.message(),
        "class com.starrocks.common.StarRocksException: No database selected."
    );
    let r = curl(&["-u", &user, "-XPOST", "-H", "db:db", &url]);
    assert_eq!(
        r.message(),
        "class com.starrocks.common.StarRocksException: Empty label."
    );
    let bad = format!("{}/api/transaction/explode", sim.fe_url());
    let r = curl(&["-u", &user, "-XPOST", "-H", "db:db", "-H", "label:x", &bad]);
    assert!(r
        .message()
        .ends_with("Unknown transaction operation: explode"));
    // FE-style bodies are Gson pretty (2 spaces).
    assert!(
        r.body.starts_with("{\n  \"Status\": \"FAILED\""),
        "{}",
        r.body
    );
    let r = curl(&[
        "-u", "root:bad", "-XPOST", "-H", "db:db", "-H", "label:x", &url,
    ]);
    assert!(r.trace.contains("< HTTP/1.1 401"));
}

#[test]
fn csv_rows_spanning_loads_join() {
    let sim = start();
    assert_eq!(status(&txn(&sim, "begin", "csv", &[], None)), "OK");
    let r = txn(
        &sim,
        "load",
        "csv",
        &["column_separator:,"],
        Some(b"1,a,1\n2,b"),
    );
    assert_eq!(status(&r), "OK", "{}", r.body);
    let r = txn(&sim, "load", "csv", &["column_separator:,"], Some(b",2\n"));
    assert_eq!(status(&r), "OK", "{}", r.body);
    let r = txn(&sim, "commit", "csv", &[], None);
    assert_eq!(r.json()["NumberTotalRows"], 2, "{}", r.body);
    assert_eq!(
        rows(&sim),
        vec![(1, Some("a".into()), 1), (2, Some("b".into()), 2)]
    );
}
