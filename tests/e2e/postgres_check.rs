//! `starwal check` through the built binary against real Postgres and the sim: a healthy setup
//! passes and says what `run` would create, while nothing is created; a missing table and a
//! wrong StarRocks password each fail their line and exit 1.

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
