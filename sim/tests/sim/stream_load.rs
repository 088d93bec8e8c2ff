//! Plain Stream Load through the FE with the real curl CLI: redirect and 100-continue on the
//! wire, PK semantics, labels, filtering, auth, compression, limits.

use std::io::Write;
use std::time::Duration;

use starrocks_sim::catalog::{ColumnDef, ColumnType, TableSpec, Value};
use starrocks_sim::{SimOptions, SizeLimits, TxnStatus};

use crate::harness::*;

#[test]
fn json_load_follows_307_and_waits_for_100_continue() {
    let sim = start();
    let r = json_load(
        &sim,
        "l1",
        r#"[{"id":1,"name":"a","score":10},{"id":2,"name":"b","score":20}]"#,
    );
    assert_eq!(r.code, 0, "{}", r.trace);
    // FE: 307 with Connection: close and a Location on the BE; BE: 100 Continue then 200.
    assert!(
        r.trace.contains("< HTTP/1.1 307 Temporary Redirect"),
        "{}",
        r.trace
    );
    assert!(r.trace.to_lowercase().contains("< connection: close"));
    let be = format!(
        "< location: http://{}/api/db/t/_stream_load",
        sim.addrs().be_http
    );
    assert!(r.trace.to_lowercase().contains(&be), "{}", r.trace);
    assert!(r.saw_100_continue(), "{}", r.trace);
    let j = r.json();
    assert_eq!(j["Status"], "Success");
    assert_eq!(j["Message"], "OK");
    assert_eq!(j["Label"], "l1");
    assert_eq!(j["NumberTotalRows"], 2);
    assert_eq!(j["NumberLoadedRows"], 2);
    assert!(j["TxnId"].as_i64().unwrap() > 0);
    // Pretty-printed with 4 spaces, fields in StarRocks order.
    assert!(r.body.starts_with("{\n    \"TxnId\": "), "{}", r.body);
    assert_eq!(
        rows(&sim),
        vec![(1, Some("a".into()), 10), (2, Some("b".into()), 20)]
    );
    assert_eq!(sim.label_state("db", "l1"), TxnStatus::Visible);
}

#[test]
fn deletes_by_json_op_key_and_by_constant_columns_header() {
    let sim = start();
    json_load(
        &sim,
        "seed",
        r#"[{"id":1,"name":"a","score":1},{"id":2,"name":"b","score":2},{"id":3,"name":"c","score":3}]"#,
    );
    let r = json_load(&sim, "del1", r#"[{"id":1,"score":0,"__op":1}]"#);
    assert_eq!(r.status(), "Success", "{}", r.body);
    let r = stream_load(
        &sim,
        "del2",
        &["format: json", "columns: id, __op='delete'"],
        br#"{"id":2}"#,
    );
    assert_eq!(r.status(), "Success", "{}", r.body);
    assert_eq!(rows(&sim), vec![(3, Some("c".into()), 3)]);
}

#[test]
fn csv_with_separator_and_per_row_op_column() {
    let sim = start();
    let r = stream_load(
        &sim,
        "csv1",
        &[
            "column_separator:,",
            "columns: id,name,score,op_tmp,__op=op_tmp",
        ],
        b"1,a,10,0\n2,b,20,0\n3,\\N,30,0\n1,x,0,1\n",
    );
    assert_eq!(r.status(), "Success", "{}", r.body);
    assert_eq!(r.json()["NumberTotalRows"], 4);
    assert_eq!(rows(&sim), vec![(2, Some("b".into()), 20), (3, None, 30)]);
}

#[test]
fn last_row_wins_within_one_load() {
    let sim = start();
    let r = json_load(
        &sim,
        "lrw",
        r#"[{"id":1,"name":"first","score":1},{"id":1,"name":"second","score":2},{"id":2,"score":5,"__op":1},{"id":2,"name":"back","score":6}]"#,
    );
    assert_eq!(r.status(), "Success", "{}", r.body);
    assert_eq!(
        rows(&sim),
        vec![(1, Some("second".into()), 2), (2, Some("back".into()), 6)]
    );
}

#[test]
fn partial_update_keeps_unlisted_columns_and_fills_defaults_for_new_keys() {
    let sim = start();
    json_load(&sim, "seed", r#"[{"id":1,"name":"a","score":10}]"#);
    let r = stream_load(
        &sim,
        "pu",
        &[
            "format: json",
            "strip_outer_array: true",
            "partial_update: true",
            "columns: id,name",
        ],
        br#"[{"id":1,"name":"renamed"},{"id":2,"name":"new"}]"#,
    );
    assert_eq!(r.status(), "Success", "{}", r.body);
    assert_eq!(
        rows(&sim),
        vec![(1, Some("renamed".into()), 10), (2, Some("new".into()), 0)]
    );
}

#[test]
fn merge_condition_applies_only_newer_values() {
    let sim = start();
    json_load(&sim, "seed", r#"[{"id":1,"name":"v5","score":5}]"#);
    let r = stream_load(
        &sim,
        "mc",
        &[
            "format: json",
            "strip_outer_array: true",
            "merge_condition: score",
        ],
        br#"[{"id":1,"name":"v4","score":4}]"#,
    );
    assert_eq!(r.status(), "Success", "{}", r.body);
    assert_eq!(rows(&sim), vec![(1, Some("v5".into()), 5)]);
    let r = stream_load(
        &sim,
        "mc2",
        &["format: json", "merge_condition: score"],
        br#"{"id":1,"name":"v6","score":6}"#,
    );
    assert_eq!(r.status(), "Success", "{}", r.body);
    assert_eq!(rows(&sim), vec![(1, Some("v6".into()), 6)]);
}

#[test]
fn label_already_exists_finished_then_running() {
    let sim = start();
    assert_eq!(
        json_load(&sim, "dup", r#"[{"id":1,"score":1}]"#).status(),
        "Success"
    );
    let r = json_load(&sim, "dup", r#"[{"id":2,"score":2}]"#);
    let j = r.json();
    assert_eq!(j["Status"], "Label Already Exists");
    assert_eq!(j["ExistingJobStatus"], "FINISHED");
    assert_eq!(j["TxnId"], -1);
    assert_eq!(j["Message"], "Label [dup] has already been used.");
    // ExistingJobStatus comes right after Status.
    assert!(r
        .body
        .contains("\"Status\": \"Label Already Exists\",\n    \"ExistingJobStatus\""));
    // A label still in PREPARE (open transaction-interface txn) answers RUNNING.
    assert_eq!(txn(&sim, "begin", "open", &[], None).status(), "OK");
    let r = json_load(&sim, "open", r#"[{"id":3,"score":3}]"#);
    assert_eq!(r.json()["ExistingJobStatus"], "RUNNING");
    assert_eq!(rows(&sim).len(), 1);
}

#[test]
fn aborted_label_is_reusable() {
    let sim = start();
    let r = json_load(
        &sim,
        "retry",
        r#"[{"id":1,"name":"this name is far too long"}]"#,
    );
    assert_eq!(r.status(), "Fail");
    assert_eq!(sim.label_state("db", "retry"), TxnStatus::Aborted);
    let r = json_load(&sim, "retry", r#"[{"id":1,"name":"ok","score":1}]"#);
    assert_eq!(r.status(), "Success", "{}", r.body);
    assert_eq!(
        sim.counters("db", "t").labels_committed,
        vec!["retry".to_string()]
    );
    assert_eq!(sim.counters("db", "t").label_attempts["retry"], 2);
}

#[test]
fn filtered_rows_fail_with_error_url_serving_the_reasons() {
    let sim = start();
    let r = json_load(
        &sim,
        "bad",
        r#"[{"id":1,"name":"ok","score":1},{"id":2,"name":"this one is too long for sixteen"},{"id":3,"score":null}]"#,
    );
    let j = r.json();
    assert_eq!(j["Status"], "Fail");
    assert_eq!(j["Message"], "too many filtered rows");
    assert_eq!(j["NumberTotalRows"], 3);
    assert_eq!(j["NumberFilteredRows"], 2);
    let url = j["ErrorURL"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!(
        "http://{}/api/_load_error_log?file=error_log_",
        sim.addrs().be_http
    )));
    let log = curl(&[&url]);
    assert_eq!(log.code, 0);
    assert!(log.body.contains("Error: "), "{}", log.body);
    assert!(log.body.contains("is too long"), "{}", log.body);
    assert!(
        log.body
            .contains("NULL value in non-nullable column 'score'"),
        "{}",
        log.body
    );
    assert!(
        rows(&sim).is_empty(),
        "nothing is visible from a failed load"
    );

    // The filter-ratio formula: 2 filtered of 3 ≤ 0.7 × 3 → Success, ErrorURL still given.
    let r = stream_load(
        &sim,
        "tolerant",
        &["format: json", "strip_outer_array: true", "max_filter_ratio: 0.7"],
        br#"[{"id":1,"score":1},{"id":2,"name":"this one is too long for sixteen"},{"id":3,"score":null}]"#,
    );
    let j = r.json();
    assert_eq!(j["Status"], "Success", "{}", r.body);
    assert_eq!(j["NumberLoadedRows"], 1);
    assert!(j["ErrorURL"].is_string());
    assert_eq!(rows(&sim), vec![(1, None, 1)]);
}

#[test]
fn strict_mode_filters_unconvertible_values_that_non_strict_turns_into_null() {
    let sim = start();
    sim.catalog()
        .create_table(
            "db",
            TableSpec::new("n")
                .column(ColumnDef::new("id", ColumnType::BigInt).not_null())
                .column(ColumnDef::new("v", ColumnType::Int))
                .primary_key(&["id"]),
        )
        .unwrap();
    let base = sim.fe_url();
    let r = stream_load_to(
        &base,
        "db",
        "n",
        "s1",
        &["format: json"],
        br#"{"id":1,"v":"abc"}"#,
    );
    assert_eq!(r.status(), "Success", "{}", r.body);
    let r = stream_load_to(
        &base,
        "db",
        "n",
        "s2",
        &["format: json", "strict_mode: true"],
        br#"{"id":2,"v":"abc"}"#,
    );
    assert_eq!(r.status(), "Fail");
    assert_eq!(r.message(), "too many filtered rows");
    let r = stream_load_to(&base, "db", "n", "s3", &["strict_mode: maybe"], b"3\t4\n");
    assert_eq!(r.message(), "Invalid strict mode format. Must be bool type");
    assert_ne!(r.json()["TxnId"], -1, "strict_mode is checked after begin");
    assert_eq!(
        sim.catalog().rows("db", "n").unwrap(),
        vec![vec![Value::Int(1), Value::Null]]
    );
}

#[test]
fn fe_auth_failures_answer_401_with_exact_body() {
    let sim = start();
    let url = format!("{}/api/db/t/_stream_load", sim.fe_url());
    let file = TempFile::new(b"1\ta\t1\n");
    let r = curl(&[
        "--location-trusted",
        "-u",
        "root:wrong",
        "-H",
        "Expect:100-continue",
        "-T",
        file.path(),
        &url,
    ]);
    assert!(
        r.trace.contains("< HTTP/1.1 401 Unauthorized"),
        "{}",
        r.trace
    );
    assert!(r
        .trace
        .to_lowercase()
        .contains("< www-authenticate: basic realm=\"\""));
    assert_eq!(
        r.body,
        r#"{"status":"FAILED","code":"1","msg":"Access denied for root@127.0.0.1","message":"Access denied for root@127.0.0.1"}"#
    );
    let r = curl(&["-H", "Expect:100-continue", "-T", file.path(), &url]);
    assert!(r.trace.contains("< HTTP/1.1 401"));
    assert!(r.body.contains("Need auth information."));
}

#[test]
fn be_direct_auth_failures_and_no_100_continue_on_early_failure() {
    let sim = start();
    let be = sim.be_url();
    let url = format!("{be}/api/db/t/_stream_load");
    let file = TempFile::new(b"1\ta\t1\n");
    // Missing auth at the BE: parsed only, `no valid Basic authorization`.
    let r = curl(&["-H", "Expect:100-continue", "-T", file.path(), &url]);
    assert_eq!(r.message(), "no valid Basic authorization");
    assert_eq!(r.json()["TxnId"], -1);
    assert!(!r.saw_100_continue(), "{}", r.trace);
    // Wrong password: begin-txn refuses; still no 100 Continue, body never read.
    let r = curl(&[
        "-u",
        "root:nope",
        "-H",
        "Expect:100-continue",
        "-T",
        file.path(),
        &url,
    ]);
    assert_eq!(r.message(), "Access denied for root@127.0.0.1");
    assert!(!r.saw_100_continue());
    // Unknown table: failure at begin, answered at once without 100 Continue.
    let r = stream_load_to(&be, "db", "missing", "u1", &[], b"1\n");
    assert_eq!(r.status(), "Fail");
    assert_eq!(r.message(), "unknown table \"db.missing\"");
    assert!(!r.saw_100_continue(), "{}", r.trace);
    let r = stream_load_to(&be, "nodb", "t", "u2", &[], b"1\n");
    assert_eq!(r.message(), "unknown database, database=nodb");
    // Non-PUT methods are 404 on the BE.
    let r = curl(&["-u", "root:pw", &url]);
    assert!(r.trace.contains("< HTTP/1.1 404"));
}

#[test]
fn fe_refuses_http11_without_100_continue_but_not_http10() {
    let sim = start();
    let url = format!("{}/api/db/t/_stream_load", sim.fe_url());
    let file = TempFile::new(b"1\ta\t1\n");
    // `-H Expect:` removes curl's automatic Expect header.
    let r = curl(&[
        "--location-trusted",
        "-u",
        "root:pw",
        "-H",
        "Expect:",
        "-T",
        file.path(),
        &url,
    ]);
    assert!(r.trace.contains("< HTTP/1.1 200 OK"));
    assert!(r.trace.to_lowercase().contains("< connection: close"));
    assert_eq!(
        r.body,
        r#"{"Status":"FAILED","Message":"class com.starrocks.common.DdlException: There is no 100-continue header"}"#
    );
    assert!(rows(&sim).is_empty());
    let r = curl(&[
        "--http1.0",
        "--location-trusted",
        "-u",
        "root:pw",
        "-H",
        "label:h10",
        "-T",
        file.path(),
        &url,
    ]);
    assert_eq!(r.status(), "Success", "{}", r.trace);
    assert_eq!(rows(&sim), vec![(1, Some("a".into()), 1)]);
}

#[test]
fn gzip_and_lz4_bodies_and_conflicting_compression_headers() {
    let sim = start();
    let json = br#"[{"id":1,"name":"gz","score":1}]"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json).unwrap();
    let gz = gz.finish().unwrap();
    let r = stream_load(
        &sim,
        "gz",
        &[
            "format: json",
            "strip_outer_array: true",
            "compression: gzip",
        ],
        &gz,
    );
    assert_eq!(r.status(), "Success", "{}", r.body);
    assert_eq!(r.json()["LoadBytes"], gz.len() as u64);

    let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
    lz.write_all(br#"{"id":2,"name":"lz","score":2}"#).unwrap();
    let lz = lz.finish().unwrap();
    let r = stream_load(
        &sim,
        "lz",
        &["format: json", "Content-Encoding: lz4_frame"],
        &lz,
    );
    assert_eq!(r.status(), "Success", "{}", r.body);

    let mut csv = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    csv.write_all(b"3\tcsv\t3\n").unwrap();
    let r = stream_load(&sim, "gzcsv", &["format: gzip"], &csv.finish().unwrap());
    assert_eq!(r.status(), "Success", "{}", r.body);

    let r = stream_load(
        &sim,
        "both",
        &[
            "format: json",
            "compression: gzip",
            "Content-Encoding: gzip",
        ],
        &gz,
    );
    assert_eq!(
        r.message(),
        "Only one of http header content-encoding and compression can be set"
    );
    let r = stream_load(
        &sim,
        "garbage",
        &["format: json", "compression: gzip"],
        b"not gzip",
    );
    assert_eq!(r.status(), "Fail");
    assert_eq!(rows(&sim).len(), 3);
}

#[test]
fn chunked_body_from_stdin() {
    let sim = start();
    let user = format!("root:{PASSWORD}");
    let url = format!("{}/api/db/t/_stream_load", sim.fe_url());
    let r = curl_with_stdin(
        &[
            "--location-trusted",
            "-u",
            &user,
            "-H",
            "Expect:100-continue",
            "-H",
            "label:chunked",
            "-H",
            "format: json",
            "-T",
            "-",
            &url,
        ],
        Some(br#"{"id":1,"name":"c","score":1} {"id":2,"name":"d","score":2}"#),
    );
    assert!(
        r.trace
            .to_lowercase()
            .contains("transfer-encoding: chunked"),
        "{}",
        r.trace
    );
    assert_eq!(r.status(), "Success", "{}", r.body);
    assert_eq!(rows(&sim).len(), 2);
}

#[test]
fn header_errors_use_starrocks_messages() {
    let sim = start();
    let r = stream_load(&sim, "f", &["format: parquet"], b"x");
    assert_eq!(r.message(), "unknown data format, format=parquet");
    assert_eq!(r.json()["TxnId"], -1);
    let r = stream_load(&sim, "t1", &["timeout: soon"], b"x");
    assert_eq!(r.message(), "Invalid timeout format");
    let r = stream_load(&sim, "t2", &["timeout: 300000"], b"x");
    assert!(r
        .message()
        .contains("Timeout should between 1 and 259200 seconds"));
    let r = stream_load(&sim, "bad label!", &[], b"1\ta\t1\n");
    assert!(r.message().starts_with("Label format error."), "{}", r.body);
    let r = stream_load(&sim, "pu", &["partial_update: yes"], b"1\ta\t1\n");
    assert_eq!(
        r.message(),
        "Invalid partial update flag format. Must be bool type"
    );
    let r = stream_load(&sim, "cols", &["columns: name"], b"a\n");
    assert_eq!(r.message(), "Column has no default value. column: id");
    let r = stream_load(&sim, "mj", &["format: json"], b"{\"id\":1");
    assert_eq!(r.status(), "Fail");
    assert!(
        r.message().starts_with("Failed to parse json data"),
        "{}",
        r.body
    );
    // No label: the BE generates one.
    let r = stream_load(&sim, "", &[], b"5\te\t5\n");
    assert_eq!(r.status(), "Success");
    assert_eq!(r.json()["Label"].as_str().unwrap().len(), 36);
}

#[test]
fn size_limits_refuse_before_reading_the_body() {
    let sim = start_with(SimOptions {
        limits: SizeLimits {
            max_body_bytes: 64,
            max_json_bytes: 32,
        },
        ..SimOptions::default()
    });
    let big = format!(r#"[{{"id":1,"name":"{}","score":1}}]"#, "x".repeat(10));
    let r = json_load(&sim, "json", &big);
    assert!(
        r.message().starts_with(
            "The size of this batch exceed the max size [32]  of json type data  data [ "
        ),
        "{}",
        r.body
    );
    assert!(!r.saw_100_continue());
    let r = stream_load(
        &sim,
        "json_ok",
        &[
            "format: json",
            "strip_outer_array: true",
            "ignore_json_size: true",
        ],
        big.as_bytes(),
    );
    assert_eq!(r.status(), "Success", "{}", r.body);
    let r = stream_load(&sim, "csv", &[], "1\tabc\t1\n".repeat(10).as_bytes());
    assert!(
        r.message().starts_with("body size 80 exceed limit: 64, "),
        "{}",
        r.body
    );
    assert!(r
        .message()
        .ends_with("You can increase the limit by setting streaming_load_max_mb in be.conf."));
}

#[test]
fn get_load_state_reports_every_stage() {
    let sim = start();
    let user = format!("root:{PASSWORD}");
    let state = |label: &str| {
        let url = format!("{}/api/db/get_load_state?label={label}", sim.fe_url());
        let r = curl(&["-u", &user, &url]);
        r.json()["state"].as_str().unwrap().to_string()
    };
    assert_eq!(state("none"), "UNKNOWN");
    json_load(&sim, "ok", r#"[{"id":1,"score":1}]"#);
    assert_eq!(state("ok"), "VISIBLE");
    json_load(&sim, "bad", r#"[{"id":null}]"#);
    assert_eq!(state("bad"), "ABORTED");
    txn(&sim, "begin", "tx", &[], None);
    assert_eq!(state("tx"), "PREPARE");
    txn(
        &sim,
        "load",
        "tx",
        &["format: json"],
        Some(br#"{"id":9,"score":9}"#),
    );
    txn(&sim, "prepare", "tx", &[], None);
    assert_eq!(state("tx"), "PREPARED");
    let url = format!("{}/api/db/get_load_state?label=ok", sim.fe_url());
    let body = curl(&["-u", &user, &url]).body;
    assert_eq!(
        body,
        r#"{"status":"OK","code":"0","msg":"Success","message":"OK","state":"VISIBLE","reason":""}"#
    );
    // Label expiry (label_keep_max_second) makes a finished label loadable again.
    assert_eq!(sim.evict_labels(Some("db")), 2);
    assert_eq!(state("ok"), "UNKNOWN");
    assert_eq!(
        json_load(&sim, "ok", r#"[{"id":1,"score":2}]"#).status(),
        "Success"
    );
}

#[test]
fn case_insensitive_columns_unknown_keys_and_missing_keys() {
    let sim = start();
    let r = json_load(
        &sim,
        "ci",
        r#"[{"ID":1,"Name":"x","SCORE":3,"unknown":{"nested":true}},{"id":2,"score":4}]"#,
    );
    assert_eq!(r.status(), "Success", "{}", r.body);
    assert_eq!(rows(&sim), vec![(1, Some("x".into()), 3), (2, None, 4)]);
    // A mapped __op that is missing filters the row.
    let r = stream_load(
        &sim,
        "opnull",
        &["format: json", "columns: id,name,score,__op"],
        br#"{"id":5,"name":"n","score":1}"#,
    );
    assert_eq!(r.status(), "Fail");
    let url = r.json()["ErrorURL"].as_str().unwrap().to_string();
    assert!(curl(&[&url])
        .body
        .contains("NULL value in non-nullable column '__op'"));
    assert!(
        eventually(Duration::from_millis(10), || rows(&sim).len() == 2),
        "nothing from the failed load"
    );
}

/// `discard_rows` (benchmarks only): a CSV load is answered as usual, with its rows counted in
/// the answer and the counters, a repeated label still refused, but no row is stored.
#[test]
fn discard_rows_counts_csv_rows_without_storing_them() {
    let sim = start_with(SimOptions {
        discard_rows: true,
        ..SimOptions::default()
    });
    let body = "1\ta\t1\n2\tb\t2\n3\tc\t3";
    let r = stream_load(&sim, "d1", &[], body.as_bytes());
    assert_eq!(r.status(), "Success", "{}", r.body);
    assert_eq!(r.json()["NumberTotalRows"], 3, "{}", r.body);
    assert_eq!(r.json()["NumberLoadedRows"], 3, "{}", r.body);
    assert_eq!(r.json()["NumberFilteredRows"], 0, "{}", r.body);
    let r = stream_load(&sim, "d1", &[], body.as_bytes());
    assert_eq!(r.status(), "Label Already Exists", "{}", r.body);
    let counters = sim.counters("db", "t");
    assert_eq!(counters.rows_loaded, 3);
    assert_eq!(counters.loads_committed, 1);
    assert_eq!(counters.labels_committed, vec!["d1".to_string()]);
    assert!(rows(&sim).is_empty());
}
