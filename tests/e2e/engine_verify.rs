//! `starwal verify` end to end against a running agent: an equal replica verifies equal while a
//! workload streams; rows changed behind starwal's back (Stream Loads straight into the sim) —
//! a changed value, a missing row, an extra row, NULL vs the empty string, a numeric off in its
//! last digit, a timestamp off by one microsecond, a JSON value off in one key — exit 1 naming
//! each key and column, on integer, text, uuid and composite keys; `--repair` fixes them all
//! (copying only the differing chunks) while the workload keeps streaming, and the next verify
//! exits 0.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::agent::{
    metrics_text, start_sim, status_json, target_rows, wait_until, AgentSpec, TARGET_DB,
};
use crate::harness::{Cluster, TestDatabase};

const TABLES: &str = "public.t_int,public.t_text,public.t_uuid,public.t_comp";

async fn create_tables(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE t_int (id bigint PRIMARY KEY, v text, amount numeric(20,6),
                                 at timestamp(6), doc jsonb, f float8, ok boolean);
             INSERT INTO t_int SELECT g, 'v' || g, g * 1.000001,
                 '2024-01-01 00:00:00'::timestamp + g * interval '1.5 second',
                 jsonb_build_object('a', g, 'b', 'x' || g), g / 3.0, g % 2 = 0
               FROM generate_series(1, 3000) g;
             CREATE TABLE t_text (k text PRIMARY KEY, v text);
             INSERT INTO t_text SELECT 'key ' || g || E' tab\\there ''q''', 'v' || g
               FROM generate_series(1, 1000) g;
             CREATE TABLE t_uuid (id uuid PRIMARY KEY, v text);
             INSERT INTO t_uuid SELECT md5(g::text)::uuid, 'v' || g FROM generate_series(1, 1000) g;
             CREATE TABLE t_comp (a text, b int, v text, PRIMARY KEY (a, b));
             INSERT INTO t_comp SELECT 'a' || (g % 7), g, 'v' || g FROM generate_series(1, 1000) g;",
        )
        .await
        .unwrap();
}

/// Streams updates, inserts and deletes on rows the test never tampers with (`t_int` ids above
/// 100, new `t_text` keys) until `stop`; counts transactions.
fn spawn_workload(
    db: &TestDatabase,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let db = db.clone();
    tokio::spawn(async move {
        let client = db.owner_client().await;
        let mut round = 0u64;
        while !stop.load(Ordering::SeqCst) {
            round += 1;
            let sql = format!(
                "BEGIN;
                 UPDATE t_int SET v = 'upd {round}', amount = amount + 1 WHERE id = {upd};
                 INSERT INTO t_int VALUES ({new}, 'new', 1.5, now()::timestamp, '{{}}', 0.5, true);
                 DELETE FROM t_int WHERE id = {del};
                 INSERT INTO t_text VALUES ('new {round}', 'n');
                 UPDATE t_comp SET v = 'upd {round}' WHERE a = 'a3' AND b = {b};
                 COMMIT;",
                upd = 100 + (round * 37) % 2900,
                new = 1_000_000 + round,
                del = 1_000_000 + round / 2,
                b = 3 + 7 * (round % 100),
            );
            client.batch_execute(&sql).await.expect("workload");
            rounds.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// `starwal verify` with the agent's variables.
pub(crate) fn verify(spec: &AgentSpec, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_starwal"))
        .arg("verify")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(spec.vars.iter().map(|(k, v)| (k, v)))
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run starwal verify")
}

pub(crate) fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asks the agent for a verify through `Control.Verify` and waits (up to 120 s) for its result
/// in the agent's status; returns the status's `verify` object.
async fn rpc_verify(spec: &AgentSpec) -> serde_json::Value {
    let before = status_json(spec).and_then(|s| s["verify"]["finished_unix_seconds"].as_f64());
    starwal::control::client::verify(&spec.control_url(), None, &[])
        .await
        .expect("Control.Verify");
    let mut last = serde_json::Value::Null;
    let done = wait_until(Duration::from_secs(120), || {
        let Some(status) = status_json(spec) else {
            return false;
        };
        last = status["verify"].clone();
        let finished = last["finished_unix_seconds"].as_f64();
        last["running"] == false && finished.is_some() && finished != before
    })
    .await;
    assert!(done, "no verify result in status: {last}");
    last
}

/// One Stream Load straight into the sim (what someone writing to the replica would do).
pub(crate) fn stream_load(
    sim: &starrocks_sim::Sim,
    table: &str,
    rows: &str,
    partial: Option<&str>,
) {
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "--location-trusted",
        "-u",
        "root:pw",
        "-H",
        "Expect:100-continue",
        "-H",
        "format: json",
        "-H",
        "strip_outer_array: true",
        "-X",
        "PUT",
        "--data-binary",
        rows,
    ]);
    if let Some(columns) = partial {
        command.args([
            "-H",
            "partial_update: true",
            "-H",
            &format!("columns: {columns}"),
        ]);
    }
    let url = format!("{}/api/{TARGET_DB}/{table}/_stream_load", sim.fe_url());
    let output = command.arg(url).output().expect("curl");
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(
        answer.contains("\"Status\": \"Success\""),
        "stream load into {table}: {answer}"
    );
}

pub(crate) fn differences(
    report: &serde_json::Value,
    table: &str,
) -> Vec<(String, String, Vec<String>)> {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("{table} in {report}"))["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["key"].as_str().unwrap().to_owned(),
                d["columns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_difference_and_repair_fixes_them_while_streaming() {
    let db = Cluster::shared().create_database("verify").await;
    let client = db.owner_client().await;
    create_tables(&client).await;
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, TABLES)
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_SNAPSHOT_WORKERS", "2")
        .var("STARWAL_SNAPSHOT_CHUNK_ROWS", "400");
    let mut agent = spec.start_streaming().await;
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let workload = spawn_workload(&db, stop.clone(), rounds.clone());

    // An equal replica, with the workload streaming: equal.
    let out = verify(&spec, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("equal: 4 tables"),
        "{}",
        text(&out)
    );

    // The same through the agent's Verify RPC: the result in status and /metrics.
    let verified = rpc_verify(&spec).await;
    assert_eq!(verified["error"], serde_json::Value::Null, "{verified}");
    let metrics = metrics_text(&spec);
    assert!(
        metrics.contains("starwal_verify_rows_mismatched{table=\"public.t_int\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("starwal_verify_last_run_timestamp_seconds "),
        "{metrics}"
    );

    // Behind starwal's back.
    stream_load(&sim, "t_int", r#"[{"id":1,"v":"changed"}]"#, Some("id,v"));
    stream_load(&sim, "t_int", r#"[{"id":2,"__op":1}]"#, None);
    stream_load(
        &sim,
        "t_int",
        r#"[{"id":999999,"v":"extra","__op":0}]"#,
        None,
    );
    stream_load(
        &sim,
        "t_int",
        r#"[{"id":3,"amount":"3.000004"}]"#,
        Some("id,amount"),
    );
    stream_load(
        &sim,
        "t_int",
        r#"[{"id":4,"at":"2024-01-01 00:00:06.000001"}]"#,
        Some("id,at"),
    );
    stream_load(
        &sim,
        "t_int",
        r#"[{"id":5,"doc":{"a":5,"b":"y5"}}]"#,
        Some("id,doc"),
    );
    // NULL at the source, the empty string in the target.
    client
        .batch_execute("UPDATE t_text SET v = NULL WHERE k = 'key 7' || E' tab\\there ''q'''")
        .await
        .unwrap();
    // The NULL must have streamed before the empty string is written over it.
    let streamed = wait_until(Duration::from_secs(60), || {
        target_rows(&sim, "t_text", &["k", "v"])
            .iter()
            .any(|row| row[0].as_deref() == Some("key 7 tab\there 'q'") && row[1].is_none())
    })
    .await;
    assert!(streamed, "{}", agent.log());
    stream_load(
        &sim,
        "t_text",
        r#"[{"k":"key 7 tab\there 'q'","v":""}]"#,
        Some("k,v"),
    );
    let uuid: String = client
        .query_one("SELECT md5('9')::uuid::text", &[])
        .await
        .unwrap()
        .get(0);
    stream_load(
        &sim,
        "t_uuid",
        &format!(r#"[{{"id":"{uuid}","v":"other"}}]"#),
        Some("id,v"),
    );
    stream_load(&sim, "t_comp", r#"[{"a":"a1","b":8,"__op":1}]"#, None);
    stream_load(
        &sim,
        "t_comp",
        r#"[{"a":"zz","b":1,"v":"extra","__op":0}]"#,
        None,
    );

    let verified = rpc_verify(&spec).await;
    let mismatched = |table: &str| {
        verified["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .map(|t| t["rows_mismatched"].as_u64().unwrap())
    };
    assert_eq!(mismatched("public.t_int"), Some(6), "{verified}");
    assert_eq!(mismatched("public.t_comp"), Some(2), "{verified}");
    let metrics = metrics_text(&spec);
    assert!(
        metrics.contains("starwal_verify_rows_mismatched{table=\"public.t_int\"} 6"),
        "{metrics}"
    );

    let out = verify(&spec, &["--json", "--wait", "30"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    let int = differences(&report, "public.t_int");
    let expect = |diffs: &[(String, String, Vec<String>)], kind: &str, key: &str, cols: &[&str]| {
        assert!(
            diffs
                .iter()
                .any(|(k, key_text, c)| k == kind && key_text == key && c == cols),
            "{kind} {key} {cols:?} not in {diffs:?}\n{}",
            text(&out)
        );
    };
    expect(&int, "different", "id=1", &["v"]);
    expect(&int, "missing", "id=2", &[]);
    expect(&int, "extra", "id=999999", &[]);
    expect(&int, "different", "id=3", &["amount"]);
    expect(&int, "different", "id=4", &["at"]);
    expect(&int, "different", "id=5", &["doc"]);
    assert_eq!(int.len(), 6, "only the tampered rows: {int:?}");
    let texts = differences(&report, "public.t_text");
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0].0, "different");
    assert_eq!(texts[0].2, vec!["v".to_owned()]);
    let uuids = differences(&report, "public.t_uuid");
    expect(&uuids, "different", &format!("id={uuid}"), &["v"]);
    let comp = differences(&report, "public.t_comp");
    expect(&comp, "missing", "a=a1, b=8", &[]);
    expect(&comp, "extra", "a=zz, b=1", &[]);

    // Repair through the agent, the workload still running.
    let before = rounds.load(Ordering::SeqCst);
    let out = verify(
        &spec,
        &["--repair", "--wait", "30", "--addr", &spec.control_url()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Only the chunk holding ids 1..5 is copied again, and the extra row deleted.
    let said = String::from_utf8_lossy(&out.stdout);
    let chunks = said
        .split("public.t_int (")
        .nth(1)
        .and_then(|rest| rest.split(" of ").next())
        .and_then(|n| n.parse::<u32>().ok());
    assert_eq!(chunks, Some(1), "{}", text(&out));
    assert!(said.contains("1 rows deleted"), "{}", text(&out));
    let out = verify(&spec, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A sample checks some chunks of each table and says extra rows were not looked for.
    let out = verify(&spec, &["--sample", "0.5", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let int = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.t_int")
        .unwrap();
    // Extra rows are looked for only when the sample happened to pick every chunk.
    assert_eq!(
        int["extra_checked"].as_bool(),
        Some(int["chunks_checked"] == int["chunks"]),
        "{report}"
    );
    assert!(
        int["chunks_checked"].as_u64().unwrap() >= 1
            && int["chunks_checked"].as_u64() <= int["chunks"].as_u64(),
        "{report}"
    );
    assert!(
        rounds.load(Ordering::SeqCst) > before,
        "the workload kept running through the repair"
    );
    stop.store(true, Ordering::SeqCst);
    workload.await.unwrap();
    assert!(agent.is_running(), "{}", agent.log());
    // The repaired tables stay equal once the workload's last changes are in.
    let out = verify(&spec, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_an_unknown_table_and_a_bad_sample_with_exit_2() {
    let db = Cluster::shared().create_database("verify_cfg").await;
    let client = db.owner_client().await;
    create_tables(&client).await;
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, TABLES);
    let out = verify(&spec, &["--table", "public.nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("public.nope"),
        "{}",
        text(&out)
    );
    let out = verify(&spec, &["--sample", "1.5"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(!all.contains("pw@") && !all.contains(":pw"), "{all}");
}

/// The cost of verifying a 1M-row table (a benchmark, not a test: it asserts only that the
/// replica is equal, and prints the time). The sim is the release binary as a process of its own
/// (`cargo build --release -p starrocks-sim`), so its cost is not the test profile's; the agent
/// and `verify` are `STARWAL_BENCH_BIN` when set (e.g. `target/release/starwal`).
///
/// `STARWAL_BENCH_BIN=target/release/starwal cargo test --test e2e -- --ignored --nocapture
/// engine_verify::bench_verify_a_million_rows`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn bench_verify_a_million_rows() {
    use crate::harness::agent::free_port;
    use std::io::BufRead as _;
    let sim_bin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/starrocks-sim");
    assert!(
        sim_bin.is_file(),
        "build the release sim first: cargo build --release -p starrocks-sim"
    );
    let bin = std::env::var("STARWAL_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_starwal").to_owned());
    let db = Cluster::shared().create_database("verify_bench").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE big (id bigint PRIMARY KEY, v text, n int, amount numeric(12,2),
                               at timestamptz, doc jsonb);
             INSERT INTO big SELECT g, 'row ' || g, g % 1000, g / 100.0,
                 '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second',
                 jsonb_build_object('g', g)
               FROM generate_series(1, 1000000) g;
             ANALYZE big;",
        )
        .await
        .unwrap();
    let (fe, be, mysql) = (free_port(), free_port(), free_port());
    let mut sim = Command::new(&sim_bin)
        .args([
            "--fe-http",
            &format!("127.0.0.1:{fe}"),
            "--be-http",
            &format!("127.0.0.1:{be}"),
            "--mysql",
            &format!("127.0.0.1:{mysql}"),
            "--password",
            "pw",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the release sim");
    let mut ready = String::new();
    std::io::BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.contains("ready"), "{ready}");
    let in_process = start_sim();
    let spec = AgentSpec::new(&db, &in_process, "public.big")
        .var("STARWAL_SNAPSHOT", "only")
        .var("STARWAL_STARROCKS_URL", &format!("http://127.0.0.1:{fe}"))
        .var("STARWAL_STARROCKS_MYSQL", &format!("127.0.0.1:{mysql}"));
    let copy = Command::new(&bin)
        .arg("run")
        .env_clear()
        .envs(spec.vars.iter().map(|(k, v)| (k, v)))
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(copy.success(), "the copy");
    for workers in ["1", "4"] {
        let spec = spec.clone().var("STARWAL_SNAPSHOT_WORKERS", workers);
        let usage = || {
            let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
            // SAFETY: getrusage fills the struct it is given.
            unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
            // SAFETY: initialised by getrusage (zeroed otherwise).
            let usage = unsafe { usage.assume_init() };
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            (secs(usage.ru_utime) + secs(usage.ru_stime), usage.ru_maxrss)
        };
        let sim_cpu = || {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", sim.id())).unwrap();
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            // utime and stime, fields 14 and 15 of /proc/pid/stat (12 and 13 after the name).
            let ticks: f64 =
                fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
            ticks / 100.0
        };
        let sim_before = sim_cpu();
        let (cpu_before, _) = usage();
        let started = std::time::Instant::now();
        let out = Command::new(&bin)
            .args(["verify", "--json"])
            .env_clear()
            .envs(spec.vars.iter().map(|(k, v)| (k, v)))
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let (cpu_after, max_rss_kib) = usage();
        let sim_seconds = sim_cpu() - sim_before;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            if line.contains("verify:") {
                println!("  {line}");
            }
        }
        println!(
            "verify of 1M rows, STARWAL_SNAPSHOT_WORKERS={workers}: {seconds:.1} s wall, \
             {:.1} CPU-s for verify, {sim_seconds:.1} CPU-s for the sim (largest RSS of any \
             child so far, the agent's copy included: {} MiB); load average at the end: {}",
            cpu_after - cpu_before,
            max_rss_kib / 1024,
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        );
    }
    let _ = sim.kill();
    let _ = sim.wait();
}
