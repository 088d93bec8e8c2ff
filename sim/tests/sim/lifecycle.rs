//! Process-level behaviour: `--data-dir` persistence across restarts, the binary's ready line
//! and signal handling.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use starrocks_sim::{Sim, SimOptions, TxnStatus};

use crate::harness::*;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("starrocks-sim-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn data_dir_keeps_tables_labels_and_prepared_txns_across_restarts() {
    let dir = temp_dir("persist");
    let options = || SimOptions {
        password: PASSWORD.to_string(),
        data_dir: Some(dir.clone()),
        ..SimOptions::default()
    };
    {
        let sim = Sim::start(options()).unwrap();
        create_standard_table(&sim);
        assert_eq!(
            json_load(&sim, "before", r#"[{"id":1,"name":"a","score":1}]"#).status(),
            "Success"
        );
        assert_eq!(txn(&sim, "begin", "prep", &[], None).status(), "OK");
        txn(
            &sim,
            "load",
            "prep",
            &["format: json"],
            Some(br#"{"id":2,"score":2}"#),
        );
        assert_eq!(txn(&sim, "prepare", "prep", &[], None).status(), "OK");
        assert_eq!(txn(&sim, "begin", "open", &[], None).status(), "OK");
        sim.shutdown();
    }
    let sim = Sim::start(options()).unwrap();
    assert_eq!(rows(&sim), vec![(1, Some("a".into()), 1)]);
    let r = json_load(&sim, "before", r#"[{"id":9,"score":9}]"#);
    assert_eq!(r.json()["ExistingJobStatus"], "FINISHED");
    assert_eq!(sim.label_state("db", "open"), TxnStatus::Aborted);
    assert_eq!(sim.label_state("db", "prep"), TxnStatus::Prepared);
    assert_eq!(txn(&sim, "commit", "prep", &[], None).status(), "OK");
    assert_eq!(rows(&sim).len(), 2);
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_snapshot_is_a_start_error_not_a_panic() {
    let dir = temp_dir("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("starrocks-sim-state.json"), b"{not json").unwrap();
    let err = Sim::start(SimOptions {
        data_dir: Some(dir.clone()),
        ..SimOptions::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("cannot restore the snapshot"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_prints_one_ready_line_and_exits_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_starrocks-sim"))
        .args([
            "--fe-http",
            "127.0.0.1:0",
            "--be-http",
            "127.0.0.1:0",
            "--mysql",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--user",
            "root",
            "--password",
            PASSWORD,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(
        ready.starts_with("starrocks-sim ready fe_http=127.0.0.1:"),
        "{ready}"
    );
    assert!(ready.contains(" mysql=127.0.0.1:"), "{ready}");
    let fe = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("fe_http="))
        .unwrap()
        .to_string();
    let r = curl(&[
        "-u",
        "root:pw",
        &format!("http://{fe}/api/db/get_load_state?label=x"),
    ]);
    // The FE answers (credentials checked first); the path's database `db` does not exist, which
    // StarRocks reports as such.
    assert!(
        r.body.contains("unknown database, database=db"),
        "{}",
        r.body
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let exited = exited.expect("exits after SIGTERM");
    assert!(exited.success(), "{exited:?}");
    assert!(lines.next().is_none(), "exactly one line on stdout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_and_stops_inside_an_async_runtime() {
    let sim = start();
    let fe = sim.addrs().fe_http;
    let load = tokio::task::spawn_blocking(move || {
        let r = stream_load_to(
            &format!("http://{fe}"),
            "db",
            "t",
            "async",
            &[],
            b"1\ta\t1\n",
        );
        r.status()
    });
    assert_eq!(load.await.unwrap(), "Success");
    assert_eq!(rows(&sim).len(), 1);
    drop(sim);
}

#[test]
fn hostile_inputs_get_starrocks_style_errors_and_the_server_keeps_serving() {
    let sim = start();
    let bodies: [(&[&str], &[u8]); 12] = [
        (&["format: json"], b"\xff\xfe\x00garbage"),
        (&["format: json", "strip_outer_array: true"], b"{\"id\":1}"),
        (
            &["format: json", "strip_outer_array: true"],
            b"[1, \"x\", null, [], {}]",
        ),
        (
            &["format: json"],
            b"[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
        ),
        (
            &["format: json"],
            b"{\"id\":1e999999,\"score\":\"\\u0000\"}",
        ),
        (
            &["format: json"],
            b"{\"id\":-170141183460469231731687303715884105729}",
        ),
        (&["columns: id, x = upper(id)"], b"1\n"),
        (&["columns: `", "format: json"], b"{}"),
        (&["format: json"], b"{\"id\":null,\"id\":null}"),
        (
            &["row_delimiter: \\x", "enclose: \"", "escape: \\"],
            b"\"1\t\"a\t1",
        ),
        (&["where: id > 1"], b"1\ta\t1\n"),
        (&["compression: brotli"], b"x"),
    ];
    for (i, (headers, body)) in bodies.iter().enumerate() {
        let r = stream_load(&sim, &format!("h{i}"), headers, body);
        assert_eq!(r.code, 0, "{}", r.trace);
        assert_eq!(r.status(), "Fail", "case {i}: {}", r.body);
        assert!(!r.message().is_empty(), "case {i}");
    }
    // Raw garbage on the BE socket: hyper answers 400 or closes; nothing panics.
    let mut s = raw_request(
        sim.addrs().be_http,
        "PUT /api/db/t/_stream_load HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
    );
    let _ = read_until(&mut s, "\r\n\r\n");
    let mut s = raw_request(sim.addrs().be_http, "\x00\x01\x02 not http\r\n\r\n");
    let _ = read_until(&mut s, "\r\n\r\n");
    assert_eq!(
        stream_load(&sim, "after", &[], b"7\tok\t7\n").status(),
        "Success"
    );
    assert_eq!(rows(&sim), vec![(7, Some("ok".into()), 7)]);
}
