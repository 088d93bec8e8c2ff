//! `starwal tail` end to end through the built binary: a scripted set of DML against a real
//! server, compared with the expected JSON lines; SIGTERM exits 0 and leaves no temporary slot;
//! `--slot` resumes after what it printed; configuration errors exit 2 naming the variable.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{unique_name, Cluster, ClusterOptions, Role, TestDatabase};

struct Tail {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Tail {
    fn start(db: &TestDatabase, tables: &str, publication: &str, extra_args: &[&str]) -> Tail {
        let mut child = Command::new(env!("CARGO_BIN_EXE_starwal"))
            .arg("tail")
            .args(extra_args)
            .env("STARWAL_PG_URL", db.url(Role::Scram, "disable"))
            .env("STARWAL_TABLES", tables)
            .env("STARWAL_PUBLICATION", publication)
            .env("STARWAL_STATUS_INTERVAL_S", "1")
            .env("STARWAL_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start starwal tail");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Tail { child, lines }
    }

    /// Waits until the tail process has an active walsender on `db` (slots are cluster-wide:
    /// other tests' tails run beside it in other databases).
    fn wait_streaming(&self, db: &TestDatabase, slot_like: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let active = db.psql(&format!(
                "select count(*) from pg_replication_slots where active and slot_name like '{slot_like}' and database = current_database()"
            ));
            if active == "1" {
                return;
            }
            assert!(Instant::now() < deadline, "tail did not start streaming");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn take(&self, n: usize) -> Vec<Value> {
        // Generous: CI runs this beside four other clusters' worth of tests on two cores.
        let deadline = Instant::now() + Duration::from_secs(60);
        (0..n)
            .map(|i| {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = self
                    .lines
                    .recv_timeout(left)
                    .unwrap_or_else(|_| panic!("only {i} of {n} lines arrived"));
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
            })
            .collect()
    }

    fn terminate(mut self) -> i32 {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "tail did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The parts of a change that do not depend on WAL positions or time; checks those exist.
fn stable(change: &Value) -> Value {
    let mut change = change.clone();
    let object = change.as_object_mut().unwrap();
    for key in ["lsn", "commit_lsn"] {
        let lsn = object.remove(key).unwrap_or_else(|| panic!("no {key}"));
        assert!(lsn.as_str().unwrap().contains('/'), "{key}: {lsn}");
    }
    assert!(object.remove("xid").unwrap().is_u64());
    let time = object.remove("commit_time").unwrap();
    let time = time.as_str().unwrap();
    assert!(time.ends_with('Z') && time.contains('T'), "{time}");
    change
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tail_prints_the_expected_json() {
    // A cluster of its own: a walsender decodes the whole cluster's WAL, and beside the other
    // tests' agents on two cores the shared one's WAL kept tail from its rows for over 60 s.
    let cluster = Cluster::start(ClusterOptions::default());
    let db = cluster.create_database("tail").await;
    db.owner_client()
        .await
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, amount numeric(10,2), note text, tags text[],
                 created timestamptz, payload jsonb, flag bool, score float8, day date, uid uuid,
                 raw bytea, qty int8);
             CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
             ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
             CREATE TABLE audit (id int, v text);
             ALTER TABLE audit REPLICA IDENTITY FULL;",
        )
        .await
        .unwrap();
    let publication = unique_name("tailpub");
    let tail = Tail::start(
        &db,
        "public.orders,public.docs,public.audit",
        &publication,
        &[],
    );
    tail.wait_streaming(&db, "starwal_tail_%");

    db.psql(
        "INSERT INTO orders VALUES (1, 12.5, 'first', '{a,\"b c\",NULL}', '2026-11-22 10:00:00.123456+02',
             '{\"k\": [1, 2]}', true, 'NaN', '2026-11-22', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x0102', 9007199254740993);
         UPDATE orders SET note = 'second', score = 1.5 WHERE id = 1;
         UPDATE orders SET id = 2 WHERE id = 1;
         DELETE FROM orders WHERE id = 2;
         INSERT INTO docs VALUES (1, 'a', repeat('x', 9000));
         UPDATE docs SET title = 'b' WHERE id = 1;
         INSERT INTO audit VALUES (7, 'x');
         UPDATE audit SET v = 'y';
         DELETE FROM audit;
         BEGIN; INSERT INTO docs VALUES (2, NULL, NULL); TRUNCATE orders, docs; COMMIT;",
    );
    // One more transaction: its line must come right after the 11 above, proving nothing else
    // (e.g. a duplicate) was printed in between.
    db.psql("INSERT INTO audit VALUES (8, 'last')");
    let changes: Vec<Value> = tail.take(12).iter().map(stable).collect();
    let row = |id: i64, note: &str, score: Value| {
        json!({"id": id, "amount": "12.50", "note": note, "tags": ["a", "b c", null],
               "created": "2026-11-22T08:00:00.123456Z", "payload": {"k": [1, 2]}, "flag": true,
               "score": score, "day": "2026-11-22", "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
               "raw": "\\x0102", "qty": 9007199254740993i64})
    };
    let expected = vec![
        json!({"op": "insert", "table": "public.orders", "new": row(1, "first", json!("NaN"))}),
        json!({"op": "update", "table": "public.orders", "new": row(1, "second", json!(1.5))}),
        json!({"op": "update", "table": "public.orders", "new": row(2, "second", json!(1.5)), "key": {"id": 1}}),
        json!({"op": "delete", "table": "public.orders", "key": {"id": 2}}),
        json!({"op": "insert", "table": "public.docs", "new": {"id": 1, "title": "a", "body": "x".repeat(9000)}}),
        json!({"op": "update", "table": "public.docs", "new": {"id": 1, "title": "b"}, "unchanged_toast": ["body"]}),
        json!({"op": "insert", "table": "public.audit", "new": {"id": 7, "v": "x"}}),
        json!({"op": "update", "table": "public.audit", "new": {"id": 7, "v": "y"}, "old": {"id": 7, "v": "x"}}),
        json!({"op": "delete", "table": "public.audit", "old": {"id": 7, "v": "y"}}),
        json!({"op": "insert", "table": "public.docs", "new": {"id": 2, "title": null, "body": null}}),
        json!({"op": "truncate", "tables": ["public.orders", "public.docs"]}),
    ];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&changes[i], want, "change {i}");
    }
    assert_eq!(
        changes[11],
        json!({"op": "insert", "table": "public.audit", "new": {"id": 8, "v": "last"}})
    );

    assert_eq!(tail.terminate(), 0, "tail exits 0 on SIGTERM");
    // The temporary slot went away with tail.
    assert_eq!(
        db.psql(
            "select count(*) from pg_replication_slots \
              where slot_name like 'starwal_tail_%' and database = current_database()"
        ),
        "0"
    );
}

/// One line per change (issue 12 item 2): a `json` value keeps its source text, newlines
/// included, and is printed compactly; dates and timestamps outside ISO 8601's four-digit years
/// use its expanded, astronomical form (44 BC is `-0043`), as loads number them; `±infinity` is
/// spelled out; a multi-dimensional array nests and a lower bound is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tail_prints_one_line_per_change_and_iso_years() {
    // A cluster of its own: a walsender decodes the whole cluster's WAL, and beside the other
    // tests' agents on two cores the shared one's WAL kept tail from its rows for over 60 s.
    let cluster = Cluster::start(ClusterOptions::default());
    let db = cluster.create_database("tail_values").await;
    db.owner_client()
        .await
        .batch_execute(
            "CREATE TABLE vals (id int PRIMARY KEY, j json, jb jsonb, d date, ts timestamp,
                 tz timestamptz, grid text[], shifted int[]);",
        )
        .await
        .unwrap();
    let publication = unique_name("tailpub");
    let tail = Tail::start(&db, "public.vals", &publication, &[]);
    tail.wait_streaming(&db, "starwal_tail_%");
    db.psql(
        r#"INSERT INTO vals VALUES (1, E'{\n "a" : 1,\n "s": "x  y"\n}', E'{"k":\n [1, 2]}',
             '0044-03-15 BC', '0001-12-31 23:59:59.5 BC', '0044-03-15 12:00:00+00 BC',
             '{{a,b},{c,NULL}}', '[0:2]={1,2,3}');
         INSERT INTO vals (id, d, ts, tz) VALUES (2, 'infinity', '-infinity', '10000-01-01 00:00:00+00');
         INSERT INTO vals (id) VALUES (3);"#,
    );
    let changes: Vec<Value> = tail.take(3).iter().map(stable).collect();
    assert_eq!(
        changes[0]["new"],
        json!({"id": 1, "j": {"a": 1, "s": "x  y"}, "jb": {"k": [1, 2]}, "d": "-0043-03-15",
               "ts": "0000-12-31T23:59:59.5", "tz": "-0043-03-15T12:00:00Z",
               "grid": [["a", "b"], ["c", null]], "shifted": [1, 2, 3]})
    );
    assert_eq!(
        changes[1]["new"],
        json!({"id": 2, "j": null, "jb": null, "d": "infinity", "ts": "-infinity",
               "tz": "+10000-01-01T00:00:00Z", "grid": null, "shifted": null})
    );
    // The third line is the third change: nothing was split over lines in between.
    assert_eq!(changes[2]["new"]["id"], json!(3));
    assert_eq!(tail.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tail_with_a_permanent_slot_resumes_after_what_it_printed() {
    // A cluster of its own: a walsender decodes the whole cluster's WAL, and beside the other
    // tests' agents on two cores the shared one's WAL kept tail from its rows for over 60 s.
    let cluster = Cluster::start(ClusterOptions::default());
    let db = cluster.create_database("tailslot").await;
    db.owner_client()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let publication = unique_name("pub");
    let slot = unique_name("tailslot");
    let tail = Tail::start(&db, "public.t", &publication, &["--slot", &slot]);
    tail.wait_streaming(&db, &slot);
    db.psql("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);");
    let first: Vec<i64> = tail
        .take(2)
        .iter()
        .map(|c| c["new"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(first, vec![1, 2]);
    assert_eq!(tail.terminate(), 0);

    // Changes made while tail is away arrive on the next run; the printed ones do not return.
    db.psql("INSERT INTO t VALUES (3);");
    let tail = Tail::start(&db, "public.t", &publication, &["--slot", &slot]);
    tail.wait_streaming(&db, &slot);
    db.psql("INSERT INTO t VALUES (4);");
    let next: Vec<i64> = tail
        .take(2)
        .iter()
        .map(|c| c["new"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(next, vec![3, 4]);
    assert_eq!(tail.terminate(), 0);
    assert_eq!(
        db.psql(&format!(
            "select count(*) from pg_replication_slots where slot_name = '{slot}'"
        )),
        "1",
        "a permanent slot stays"
    );
}

#[test]
fn inv9_tail_configuration_errors_exit_2_and_name_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_starwal"))
        .arg("tail")
        .env_remove("STARWAL_PG_URL")
        .env("STARWAL_TABLES", "public.t")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("STARWAL_PG_URL is not set"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_starwal"))
        .arg("tail")
        .env(
            "STARWAL_PG_URL",
            "postgres://u:sekrit@127.0.0.1:1/db?sslmode=bogus",
        )
        .env("STARWAL_TABLES", "public.t")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("STARWAL_PG_URL") && stderr.contains("sslmode"),
        "{stderr}"
    );
    assert!(!stderr.contains("sekrit"), "{stderr}");
}
