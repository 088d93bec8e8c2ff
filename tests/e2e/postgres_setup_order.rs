//! Invariant 13 through the built binary: `check` fails whenever `run` would, with the same cause,
//! and a `run` that fails at setup (`STARWAL_EXIT_ON_ERROR=true`) leaves nothing behind — no
//! publication, no slot holding WAL, no StarRocks database. Cases: a wrong StarRocks password,
//! the FE's HTTP port refused before the target database exists, a role without CREATE on the
//! database (and without ownership of a table), Postgres connection errors (each must keep its
//! cause), a read-only source (`default_transaction_read_only`), and a populated target table
//! that the first copy would empty (said, not failed).

use std::process::Command;
use std::time::Duration;

use starrocks_sim::{ServerFaults, ServerRole, Sim};

use crate::harness::agent::{free_port, start_sim, AgentSpec, TARGET_DB};
use crate::harness::{unique_name, Cluster, Role, TestDatabase};

/// How long a `run` that fails at setup may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(90);

/// `starwal check` with the spec's variables: (exit code, stdout + stderr).
fn check(spec: &AgentSpec) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_starwal"))
        .arg("check")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(spec.vars.iter().map(|(k, v)| (k, v)))
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run starwal check");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// `starwal run` with `STARWAL_EXIT_ON_ERROR=true`, waited for: (exit code, its log).
fn run_until_exit(spec: &AgentSpec) -> (i32, String) {
    let mut agent = spec.clone().var("STARWAL_EXIT_ON_ERROR", "true").start();
    let status = agent.wait(EXIT_TIMEOUT);
    let log = agent.log();
    let code = status
        .unwrap_or_else(|| panic!("run did not exit within {EXIT_TIMEOUT:?}:\n{log}"))
        .code()
        .unwrap_or(-1);
    (code, log)
}

/// The checklist line of `subject` (`ok  subject: …` or `FAIL subject: …`).
fn line<'a>(out: &'a str, subject: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(5..).is_some_and(|rest| rest.starts_with(subject)))
        .unwrap_or_else(|| panic!("no `{subject}` line in:\n{out}"))
}

/// Asserts neither the slot nor the publication of `spec` exists on `db`.
async fn assert_nothing_created(db: &TestDatabase, spec: &AgentSpec, log: &str) {
    let client = db.superuser_client().await;
    let name = |var| spec.get(var).unwrap_or_default().to_owned();
    let slots: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&name("STARWAL_SLOT")],
        )
        .await
        .unwrap()
        .get(0);
    let publications: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_publication WHERE pubname = $1",
            &[&name("STARWAL_PUBLICATION")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (slots, publications),
        (0, 0),
        "a failed start left a slot or a publication behind:\n{log}"
    );
}

fn database_exists(sim: &Sim, name: &str) -> bool {
    sim.catalog().read(|c| c.database(name).is_some())
}

async fn database_with_orders(prefix: &str) -> TestDatabase {
    let db = Cluster::shared().create_database(prefix).await;
    db.owner_client()
        .await
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, note text); \
             INSERT INTO orders VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        )
        .await
        .unwrap();
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_a_wrong_starrocks_password_fails_check_and_run_before_anything_is_created() {
    let db = database_with_orders("order_pw").await;
    let sim = start_sim();
    let spec =
        AgentSpec::new(&db, &sim, "public.orders").var("STARWAL_STARROCKS_PASSWORD", "wrong");

    let (code, out) = check(&spec);
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "StarRocks MySQL protocol").starts_with("FAIL")
            && line(&out, "StarRocks MySQL protocol").contains("Access denied"),
        "{out}"
    );
    assert!(
        line(&out, "Stream Load").starts_with("FAIL")
            && line(&out, "Stream Load").contains("refused the credentials"),
        "{out}"
    );

    let (code, log) = run_until_exit(&spec);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("Access denied"), "{log}");
    assert_nothing_created(&db, &spec, &log).await;
    assert!(!database_exists(&sim, TARGET_DB), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_fe_http_refused_before_the_database_exists_fails_check_and_run() {
    let db = database_with_orders("order_fe").await;
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.orders");
    sim.faults().set_server(
        ServerRole::Fe,
        ServerFaults {
            refuse_connections: true,
            ..ServerFaults::default()
        },
    );

    let (code, out) = check(&spec);
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, &format!("database `{TARGET_DB}`")).contains("missing; run creates it"),
        "{out}"
    );
    let stream_load = line(&out, "Stream Load");
    assert!(
        stream_load.starts_with("FAIL") && stream_load.contains("cannot reach StarRocks"),
        "{out}"
    );

    let (code, log) = run_until_exit(&spec);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("cannot reach StarRocks"), "{log}");
    assert_nothing_created(&db, &spec, &log).await;
    assert!(
        !database_exists(&sim, TARGET_DB),
        "run created the StarRocks database before the FE answered:\n{log}"
    );

    // With the FE answering, the probe proves the credentials before the database exists.
    sim.faults()
        .set_server(ServerRole::Fe, ServerFaults::default());
    let (code, out) = check(&spec);
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "Stream Load").contains("the database does not exist yet"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_a_role_without_create_on_the_database_fails_check_and_run_with_the_grant() {
    let db = Cluster::shared().create_database("order_priv").await;
    let role = unique_name("nocreate");
    let superuser = db.superuser_client().await;
    superuser
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN REPLICATION PASSWORD 'nocreate-secret'; \
             CREATE TABLE orders (id int PRIMARY KEY, note text); \
             ALTER TABLE orders OWNER TO {role}; \
             CREATE TABLE items (id int PRIMARY KEY); \
             ALTER TABLE items OWNER TO repl"
        ))
        .await
        .unwrap();
    let sim = start_sim();
    let url = format!(
        "postgres://{role}:nocreate-secret@127.0.0.1:{}/{}?sslmode=disable",
        db.port(),
        db.name
    );
    let spec = AgentSpec::new(&db, &sim, "public.orders").var("STARWAL_PG_URL", &url);

    // The role owns its table: only CREATE on the database is missing.
    let grant = format!("GRANT CREATE ON DATABASE \"{}\" TO \"{role}\"", db.name);
    let (code, out) = check(&spec);
    assert_eq!(code, 1, "{out}");
    let privileges = out
        .split("Postgres privileges")
        .nth(1)
        .unwrap_or_else(|| panic!("no privileges line:\n{out}"));
    assert!(
        line(&out, "Postgres privileges").starts_with("FAIL") && privileges.contains(&grant),
        "{out}"
    );
    assert!(!out.contains("ownership of"), "{out}");
    assert!(!out.contains("needs to own the tables"), "{out}");

    let (code, log) = run_until_exit(&spec);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains(&grant), "{log}");
    assert!(!log.contains("permission denied"), "{log}");
    assert_nothing_created(&db, &spec, &log).await;

    // A table it does not own: the ownership (and SELECT) is named with its fix too.
    let both = spec
        .clone()
        .var("STARWAL_TABLES", "public.orders,public.items");
    let (code, out) = check(&both);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ownership of \"public\".\"items\"")
            && out.contains(&format!(
                "ALTER TABLE \"public\".\"items\" OWNER TO \"{role}\""
            )),
        "{out}"
    );
    let (code, log) = run_until_exit(&both);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("ownership of \"public\".\"items\""), "{log}");
    assert_nothing_created(&db, &both, &log).await;

    // The grant the message gives is enough.
    superuser
        .batch_execute(&format!("GRANT CREATE ON DATABASE {} TO {role}", db.name))
        .await
        .unwrap();
    let (code, out) = check(&spec);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_postgres_connection_errors_keep_their_cause_in_check_and_run() {
    let db = database_with_orders("order_conn").await;
    let sim = start_sim();
    let base = AgentSpec::new(&db, &sim, "public.orders");
    let url = |user: &str, host: &str, port: u16, dbname: &str| {
        format!("postgres://{user}@{host}:{port}/{dbname}?sslmode=disable")
    };
    let cases = [
        (
            "a wrong password",
            url("repl:wrong", "127.0.0.1", db.port(), &db.name),
            "password authentication failed for user \"repl\"".to_owned(),
        ),
        (
            "an unknown database",
            url(
                &format!("repl:{}", Role::Scram.password().unwrap()),
                "127.0.0.1",
                db.port(),
                "no_such_db",
            ),
            "database \"no_such_db\" does not exist".to_owned(),
        ),
        (
            "a closed port",
            url("repl:x", "127.0.0.1", free_port(), "x"),
            "Connection refused".to_owned(),
        ),
        (
            "an unknown host",
            url("repl:x", "no-such-host.invalid", 5432, "x"),
            "failed to lookup address".to_owned(),
        ),
    ];
    for (case, url, cause) in cases {
        let spec = base.clone().var("STARWAL_PG_URL", &url);
        let (code, out) = check(&spec);
        assert_eq!(code, 1, "{case}: {out}");
        let connection = line(&out, "Postgres connection");
        assert!(
            connection.starts_with("FAIL") && connection.contains(&cause),
            "{case}: check does not say `{cause}`:\n{out}"
        );
        let (code, log) = run_until_exit(&spec);
        assert_eq!(code, 1, "{case}: {log}");
        assert!(
            log.contains(&cause),
            "{case}: run does not say `{cause}`:\n{log}"
        );
    }
    assert_nothing_created(&db, &base, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_check_says_the_first_copy_empties_a_populated_target_table() {
    let db = database_with_orders("order_copy").await;
    let sim = start_sim();
    // A first agent copies the three rows and exits.
    let first = AgentSpec::new(&db, &sim, "public.orders").var("STARWAL_SNAPSHOT", "only");
    let (code, log) = run_until_exit(&first);
    assert_eq!(code, 0, "{log}");

    // A second agent (another slot) would copy the table again, emptying it first.
    let second = AgentSpec::new(&db, &sim, "public.orders").var("STARWAL_SNAPSHOT", "initial");
    let (code, out) = check(&second);
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "target `orders`")
            .contains("it has 3 rows, which run deletes before the first copy"),
        "{out}"
    );
    // Without a copy the rows stay, and check says nothing about them.
    let (code, out) = check(&second.clone().var("STARWAL_SNAPSHOT", "never"));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("deletes"), "{out}");
    // The first agent's own slot copied it already: nothing is emptied again.
    let (code, out) = check(&first.clone().var("STARWAL_SNAPSHOT", "initial"));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("deletes"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv13_a_read_only_source_fails_check_and_run_before_anything_is_created() {
    let db = database_with_orders("order_ro").await;
    let superuser = db.superuser_client().await;
    // New sessions (the agent's) are read-only; this one, opened before, is not.
    superuser
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
            db.name
        ))
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.orders");
    let cause = "the source is read-only (transaction_read_only = on)";

    let (code, out) = check(&spec);
    assert_eq!(code, 1, "{out}");
    let writable = line(&out, "Postgres writable");
    assert!(
        writable.starts_with("FAIL")
            && writable.contains(cause)
            && writable.contains("needs a writable primary")
            && writable.contains("target_session_attrs=read-write"),
        "{out}"
    );

    let (code, log) = run_until_exit(&spec);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains(cause), "{log}");
    assert!(!log.contains("cannot execute"), "{log}");
    assert_nothing_created(&db, &spec, &log).await;
    assert!(
        !database_exists(&sim, TARGET_DB),
        "run created the StarRocks database on a read-only source:\n{log}"
    );

    // The fix the message gives is enough.
    superuser
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET default_transaction_read_only = off",
            db.name
        ))
        .await
        .unwrap();
    let (code, out) = check(&spec);
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "Postgres writable").contains("read-write primary"),
        "{out}"
    );
}
