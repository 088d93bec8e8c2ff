//! `starwal check` through the built binary against real Postgres and the sim: a healthy setup
//! passes and says what `run` would create, while nothing is created; a missing table and a
//! wrong StarRocks password each fail their line and exit 1. Issue 13 item 5: what a user reads
//! from `check` and `run` names each cause once and no secret; a misspelled variable is warned
//! about; a mixed-case table is reached through a quoted name.

use std::net::SocketAddr;
use std::process::Command;

use starrocks_sim::{Sim, SimOptions};

use crate::harness::{unique_name, Cluster, Role, TestDatabase};

fn check(
    db: &TestDatabase,
    sim: &Sim,
    tables: &str,
    password: &str,
    publication: &str,
    slot: &str,
) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_starwal"))
        .arg("check")
        .env("STARWAL_PG_URL", db.url(Role::Scram, "disable"))
        .env("STARWAL_TABLES", tables)
        .env("STARWAL_PUBLICATION", publication)
        .env("STARWAL_SLOT", slot)
        .env("STARWAL_STARROCKS_URL", sim.fe_url())
        .env(
            "STARWAL_STARROCKS_MYSQL",
            sim.addrs().mysql.unwrap().to_string(),
        )
        .env("STARWAL_STARROCKS_PASSWORD", password)
        .env("STARWAL_STARROCKS_DATABASE", "analytics")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_check_reports_without_changing_anything() {
    let db = Cluster::shared().create_database("check").await;
    db.owner_client()
        .await
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        .await
        .unwrap();
    let sim = Sim::start(SimOptions {
        password: "pw".into(),
        mysql: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SimOptions::default()
    })
    .unwrap();
    let publication = unique_name("pub");
    let slot = unique_name("slot");

    let (code, out) = check(&db, &sim, "public.orders", "pw", &publication, &slot);
    assert_eq!(code, 0, "{out}");
    for line in [
        "ok   Postgres connection",
        "ok   Postgres prerequisites",
        &format!("ok   slot `{slot}`: missing; run creates it"),
        "ok   tables: public.orders",
        &format!("ok   publication `{publication}`: missing; run creates it"),
        "ok   replication connection",
        "ok   database `analytics`: missing; run creates it",
        "ok   target `orders`: missing; run creates it",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    // Read-only: nothing was created on either side.
    assert_eq!(db.psql("select count(*) from pg_publication"), "0");
    assert_eq!(
        db.psql(&format!(
            "select count(*) from pg_replication_slots where slot_name = '{slot}'"
        )),
        "0"
    );
    assert!(sim.catalog().read(|c| c.database("analytics").is_none()));

    // With the database present, the Stream Load endpoint and its credentials are checked too.
    sim.catalog().create_database("analytics").unwrap();
    let (code, out) = check(&db, &sim, "public.orders", "pw", &publication, &slot);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok   Stream Load"), "{out}");

    let (code, out) = check(
        &db,
        &sim,
        "public.orders,public.nope",
        "pw",
        &publication,
        &slot,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL tables") && out.contains("public.nope"),
        "{out}"
    );

    let (code, out) = check(&db, &sim, "public.orders", "wrong", &publication, &slot);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL StarRocks MySQL protocol"), "{out}");
    assert!(!out.contains("wrong"), "the password never appears: {out}");
}

/// Runs `starwal <command>` for `public.orders` of `db` into `sim` with `overrides` on top (`run`
/// exits on its first error); returns the exit code and stdout + stderr.
fn starwal(
    command: &str,
    db: &TestDatabase,
    sim: &Sim,
    overrides: &[(&str, &str)],
) -> (i32, String) {
    let slot = unique_name("slot");
    let mut vars: Vec<(String, String)> = [
        ("STARWAL_PG_URL", db.url(Role::Scram, "disable")),
        ("STARWAL_TABLES", "public.orders".to_owned()),
        ("STARWAL_SLOT", slot.clone()),
        ("STARWAL_PUBLICATION", slot),
        ("STARWAL_STARROCKS_URL", sim.fe_url()),
        (
            "STARWAL_STARROCKS_MYSQL",
            sim.addrs().mysql.unwrap().to_string(),
        ),
        ("STARWAL_STARROCKS_PASSWORD", "pw".to_owned()),
        ("STARWAL_STARROCKS_DATABASE", "analytics".to_owned()),
        ("STARWAL_EXIT_ON_ERROR", "true".to_owned()),
        ("STARWAL_CONTROL_ADDR", "127.0.0.1:0".to_owned()),
        ("STARWAL_METRICS_ADDR", "off".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (name, value) in overrides {
        vars.retain(|(k, _)| k != name);
        vars.push((name.to_string(), value.to_string()));
    }
    let output = Command::new(env!("CARGO_BIN_EXE_starwal"))
        .arg(command)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// No line repeats a cause: every `: `-separated part of a line (of some length) occurs once in
/// it. Today's chains read "db error: db error: FATAL: …" and a MySQL error three times.
fn assert_each_cause_once(out: &str) {
    for line in out.lines() {
        for part in line.split(": ").filter(|part| part.len() >= 12) {
            assert_eq!(
                line.matches(part).count(),
                1,
                "`{part}` repeats in:\n{line}\n\nwhole output:\n{out}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_errors_read_once_and_secrets_never() {
    let db = Cluster::shared().create_database("check_once").await;
    db.owner_client()
        .await
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        .await
        .unwrap();
    let sim = Sim::start(SimOptions {
        password: "pw".into(),
        mysql: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SimOptions::default()
    })
    .unwrap();

    // A wrong Postgres password: the server's message once, without "db error" (check used to
    // show only "db error", run "db error: db error: FATAL: …").
    let wrong_pg = format!(
        "postgres://repl:Wr0ng-pg-S3cret@127.0.0.1:{}/{}?sslmode=disable",
        db.port(),
        db.name
    );
    for command in ["check", "run"] {
        let (code, out) = starwal(command, &db, &sim, &[("STARWAL_PG_URL", &wrong_pg)]);
        assert_eq!(code, 1, "{command}: {out}");
        assert_eq!(
            out.matches("password authentication failed for user \"repl\"")
                .count(),
            1,
            "{command}: {out}"
        );
        assert!(!out.contains("db error"), "{command}: {out}");
        assert!(!out.contains("Wr0ng-pg-S3cret"), "{command}: {out}");
        assert_each_cause_once(&out);
    }

    // A wrong StarRocks password: StarRocks' answer once (run printed it three times).
    for command in ["check", "run"] {
        let (code, out) = starwal(
            command,
            &db,
            &sim,
            &[("STARWAL_STARROCKS_PASSWORD", "Wr0ng-sr-S3cret")],
        );
        assert_eq!(code, 1, "{command}: {out}");
        assert_eq!(
            out.matches("Access denied for user 'root'").count(),
            1,
            "{command}: {out}"
        );
        assert!(!out.contains("Wr0ng-sr-S3cret"), "{command}: {out}");
        assert_each_cause_once(&out);
    }

    // Credentials written into a StarRocks address: refused (exit 2) without quoting them.
    let mysql = format!("root:Sr-S3cret@{}", sim.addrs().mysql.unwrap());
    let url = "http://root:Sr-S3cret@127.0.0.1:8030".to_owned();
    for (var, value) in [
        ("STARWAL_STARROCKS_URL", url.as_str()),
        ("STARWAL_STARROCKS_MYSQL", mysql.as_str()),
    ] {
        for command in ["check", "run"] {
            let (code, out) = starwal(command, &db, &sim, &[(var, value)]);
            assert_eq!(code, 2, "{command} {var}: {out}");
            assert!(
                out.contains(&format!("configuration error: {var} is invalid")),
                "{command} {var}: {out}"
            );
            assert!(out.contains("********@"), "{command} {var}: {out}");
            assert!(!out.contains("Sr-S3cret"), "{command} {var}: {out}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_misspelled_variables_are_warned_about() {
    let db = Cluster::shared().create_database("check_vars").await;
    db.owner_client()
        .await
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY)")
        .await
        .unwrap();
    let sim = Sim::start(SimOptions {
        password: "pw".into(),
        mysql: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SimOptions::default()
    })
    .unwrap();
    let (code, out) = starwal(
        "check",
        &db,
        &sim,
        &[
            ("STARWAL_FLUSH_ROWZ", "10"),
            ("STARWAL_NOT_A_SETTING_AT_ALL", "1"),
        ],
    );
    // A warning, not an error: the check itself passes.
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "STARWAL_FLUSH_ROWZ is not a starwal variable and is ignored; did you mean STARWAL_FLUSH_ROWS?"
        ),
        "{out}"
    );
    assert!(
        out.contains("STARWAL_NOT_A_SETTING_AT_ALL is not a starwal variable and is ignored"),
        "{out}"
    );
    // Every variable the command was given is a known one: no other warning.
    assert_eq!(out.matches("is not a starwal variable").count(), 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_mixed_case_tables_are_named_with_quotes() {
    let db = Cluster::shared().create_database("check_case").await;
    db.owner_client()
        .await
        .batch_execute(
            "CREATE TABLE \"Orders\" (id int PRIMARY KEY); CREATE TABLE orders (id int PRIMARY KEY)",
        )
        .await
        .unwrap();
    let sim = Sim::start(SimOptions {
        password: "pw".into(),
        mysql: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SimOptions::default()
    })
    .unwrap();
    // Quoted: the mixed-case table (refused as invalid before).
    let (code, out) = starwal(
        "check",
        &db,
        &sim,
        &[("STARWAL_TABLES", "public.\"Orders\"")],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok   tables: public.Orders\n"), "{out}");
    // Unquoted: folded to lower case, as in SQL.
    let (code, out) = starwal("check", &db, &sim, &[("STARWAL_TABLES", "Public.ORDERS")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok   tables: public.orders\n"), "{out}");
    // A missing quoted table is named as written.
    let (code, out) = starwal("check", &db, &sim, &[("STARWAL_TABLES", "public.\"Nope\"")]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("table `public.\"Nope\"` does not exist"),
        "{out}"
    );
}
