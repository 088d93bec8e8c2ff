//! Issue 18, surviving a Postgres failover, against real servers (CI runs `postgres_*` on PG
//! 14–18, so version-specific asserts follow the server's version):
//! - a slot lost after starwal confirmed changes from it (dropped here, as a failover without a
//!   synchronised slot would) stops the agent with the cause and the way out, in `run` and in
//!   `check`, and creates no slot; `STARWAL_ON_SLOT_LOSS=resync` re-creates it and copies again;
//! - on PG 17+ the slot is created with failover (unless `STARWAL_SLOT_FAILOVER=false`), an
//!   existing one without it is reported with the fix (which works), and `check` warns that no
//!   standby keeps a copy; before 17 nothing changes;
//! - a multi-host `STARWAL_PG_URL` skips a host that is down (SQL, replication, a whole run), and
//!   `target_session_attrs` skips a server that does not qualify (a read-only one stands in
//!   for a standby) on both connections, with libpq's meaning of each value.

use std::process::Command;
use std::time::Duration;

use starwal::config::Config;
use starwal::engine::setup::postgres::{ensure_configured_slot, failover_readiness};
use starwal::postgres::conninfo::ConnInfo;
use starwal::postgres::replication::{ReplicationConnection, SlotSnapshot};
use starwal::postgres::tls::connect_sql;

use crate::harness::agent::{
    diff, free_port, source_rows, start_sim, target_rows, wait_for_rows, AgentSpec,
};
use crate::harness::{unique_name, Cluster, ClusterOptions, Role, TestDatabase};

const TIMEOUT: Duration = Duration::from_secs(60);

/// `pg_replication_slots.failover` of `slot` as text (`None` before PG 17 or when missing).
async fn failover_flag(client: &tokio_postgres::Client, slot: &str) -> Option<String> {
    client
        .query_opt(
            "SELECT to_jsonb(s) ->> 'failover' FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .and_then(|row| row.get(0))
}

pub(crate) async fn slot_exists(client: &tokio_postgres::Client, slot: &str) -> bool {
    client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .is_some()
}

/// Drops `slot`, retrying while the walsender of a process that just exited still holds it.
async fn drop_slot(db: &TestDatabase, slot: &str) {
    let client = db.superuser_client().await;
    for _ in 0..100 {
        match client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
        {
            Ok(_) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("slot {slot} could not be dropped");
}

/// `starwal check` with the agent's variables: (exit code, stdout + stderr).
pub(crate) fn check(spec: &AgentSpec) -> (i32, String) {
    starwal(spec, &["check"])
}

/// `starwal <args>` with the agent's variables: (exit code, stdout + stderr).
pub(crate) fn starwal(spec: &AgentSpec, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_starwal"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(spec.vars.iter().map(|(k, v)| (k, v)))
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
async fn postgres_failover_lost_slot_stops_loudly_and_resyncs_only_when_asked() {
    let db = Cluster::shared().create_database("slot_loss").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'a' || g FROM generate_series(1, 20) g;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t").var("STARWAL_SNAPSHOT", "initial");
    let slot = spec.slot().to_owned();
    let rows = |sim: &starrocks_sim::Sim| target_rows(sim, "t", &["id", "v"]);
    let source = "SELECT id::text, v FROM t";

    // A first run copies and streams, and confirms a position.
    let agent = spec.start_streaming().await;
    client
        .batch_execute("INSERT INTO t SELECT g, 'b' || g FROM generate_series(21, 30) g")
        .await
        .unwrap();
    let expected = source_rows(&client, source).await;
    let got = wait_for_rows(&expected, TIMEOUT, || rows(&sim)).await;
    assert!(
        got == expected,
        "{}\n{}",
        diff(&expected, &got),
        agent.log()
    );
    agent.stop_cleanly();

    // The slot is lost (as on a new primary without a synchronised copy) and changes are made
    // that no slot holds.
    drop_slot(&db, &slot).await;
    client
        .batch_execute(
            "INSERT INTO t SELECT g, 'lost' || g FROM generate_series(31, 40) g;
             UPDATE t SET v = 'lost-update' WHERE id <= 5;",
        )
        .await
        .unwrap();

    // Default `stop`: `check` fails the slot line, `run` exits with the cause, no slot made.
    let (code, out) = check(&spec);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "slot `{slot}` is missing but starwal had confirmed up to LSN"
        )) && out.contains("STARWAL_ON_SLOT_LOSS=resync"),
        "{out}"
    );
    assert!(!slot_exists(&client, &slot).await);
    let mut stopped = spec.clone().var("STARWAL_EXIT_ON_ERROR", "true").start();
    let status = stopped
        .wait(TIMEOUT)
        .unwrap_or_else(|| panic!("the agent kept running:\n{}", stopped.log()));
    let log = stopped.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "slot `{slot}` is missing but starwal had confirmed up to LSN"
        )) && log.contains("changes made since it was lost are gone")
            && log.contains("STARWAL_ON_SLOT_LOSS=resync")
            && log.contains("teardown"),
        "{log}"
    );
    assert!(
        !slot_exists(&client, &slot).await,
        "a slot was created:\n{log}"
    );
    // Nothing was copied again: the lost changes are not in the target.
    assert_eq!(rows(&sim), expected);

    // `resync`: the operator's explicit choice re-creates the slot, copies every table again
    // (the lost changes with it) and streams.
    let resync = spec.clone().var("STARWAL_ON_SLOT_LOSS", "resync");
    // ...which needs a copy: with `never` it would say so and copy nothing, so it is refused
    // as a configuration error naming both variables.
    let (code, out) = check(&resync.clone().var("STARWAL_SNAPSHOT", "never"));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("STARWAL_ON_SLOT_LOSS") && out.contains("STARWAL_SNAPSHOT=never"),
        "{out}"
    );
    let (code, out) = check(&resync);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("copies every table again"), "{out}");
    let agent = resync.start_streaming().await;
    assert!(
        agent.log().contains("STARWAL_ON_SLOT_LOSS=resync"),
        "{}",
        agent.log()
    );
    client
        .batch_execute("INSERT INTO t SELECT g, 'c' || g FROM generate_series(41, 50) g")
        .await
        .unwrap();
    let expected = source_rows(&client, source).await;
    let got = wait_for_rows(&expected, TIMEOUT, || rows(&sim)).await;
    assert!(
        got == expected,
        "{}\n{}",
        diff(&expected, &got),
        agent.log()
    );
    assert!(slot_exists(&client, &slot).await);
    agent.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_slot_fails_over_on_17_and_check_names_what_is_missing() {
    let db = Cluster::shared().create_database("slot_failover").await;
    let client = db.client(Role::Superuser).await;
    let config = |slot: &str, failover: Option<&str>| {
        let mut vars = vec![
            ("STARWAL_PG_URL".to_owned(), db.url(Role::Scram, "disable")),
            ("STARWAL_TABLES".to_owned(), "public.t".to_owned()),
            ("STARWAL_SLOT".to_owned(), slot.to_owned()),
        ];
        if let Some(value) = failover {
            vars.push(("STARWAL_SLOT_FAILOVER".to_owned(), value.to_owned()));
        }
        Config::from_vars(vars).unwrap().postgres
    };
    let version = db.version_num();
    let has_failover_slots = version >= 170000;

    // The default: failover where the server has it.
    let default_slot = unique_name("fo_default");
    let cfg = config(&default_slot, None);
    let sql = connect_sql(&cfg.conn).await.unwrap();
    let (state, _) = ensure_configured_slot(&sql, &cfg, SlotSnapshot::Nothing)
        .await
        .unwrap();
    assert!(state.created);
    let flag = failover_flag(&client, &default_slot).await;
    if has_failover_slots {
        assert_eq!(flag.as_deref(), Some("true"));
    } else {
        assert_eq!(flag, None, "PG {version} has no failover column");
    }
    // Without a standby `check` warns (never fails) and names what is missing.
    let readiness = failover_readiness(&sql, version, None, &default_slot, Some(true))
        .await
        .unwrap();
    let missing = readiness.expect_err("no standby: a warning");
    if has_failover_slots {
        assert!(
            missing.contains("no standby streams through a physical slot")
                && missing.contains("synchronized_standby_slots is not set"),
            "{missing}"
        );
    } else {
        assert!(missing.contains("has no failover slots (17+)"), "{missing}");
    }

    // Turned off: no failover; an existing slot without it is reported with a fix that works.
    let off_slot = unique_name("fo_off");
    let cfg = config(&off_slot, Some("false"));
    ensure_configured_slot(&sql, &cfg, SlotSnapshot::Nothing)
        .await
        .unwrap();
    let flag = failover_flag(&client, &off_slot).await;
    if has_failover_slots {
        assert_eq!(flag.as_deref(), Some("false"));
        let readiness = failover_readiness(&sql, version, None, &off_slot, Some(false))
            .await
            .unwrap();
        let missing = readiness.expect_err("a slot without failover");
        assert!(
            missing.contains(&format!(
                "ALTER_REPLICATION_SLOT \"{off_slot}\" (FAILOVER true)"
            )),
            "{missing}"
        );
        let mut replication = ReplicationConnection::connect(&cfg.conn).await.unwrap();
        replication
            .alter_slot_failover(&off_slot, true)
            .await
            .unwrap();
        replication.close().await;
        assert_eq!(
            failover_flag(&client, &off_slot).await.as_deref(),
            Some("true")
        );
    } else {
        assert_eq!(flag, None);
    }
    for slot in [&default_slot, &off_slot] {
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[slot])
            .await
            .unwrap();
    }
}

/// The port of the server `conn_info` reaches, over SQL and over replication.
async fn ports_reached(url: &str) -> (String, String) {
    let info = ConnInfo::parse(url).unwrap();
    let client = connect_sql(&info)
        .await
        .unwrap_or_else(|err| panic!("SQL to {url}: {err}"));
    let sql: String = client.query_one("SHOW port", &[]).await.unwrap().get(0);
    let mut replication = ReplicationConnection::connect(&info)
        .await
        .unwrap_or_else(|err| panic!("replication to {url}: {err}"));
    let port = replication.simple_query("SHOW port").await.unwrap();
    let replication_port = port.rows[0][0].clone().unwrap();
    replication.close().await;
    (sql, replication_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_multi_host_url_skips_a_down_host_and_one_that_does_not_qualify() {
    let db = Cluster::shared().create_database("multi_host").await;
    let up = db.port();
    let down = free_port();
    let url = db.url(Role::Scram, "disable").replace(
        &format!("127.0.0.1:{up}/"),
        &format!("127.0.0.1:{down},127.0.0.1:{up}/"),
    );
    assert_eq!(ports_reached(&url).await, (up.to_string(), up.to_string()));

    // A whole run through the list: copies and streams from the host that answers.
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'a' || g FROM generate_series(1, 10) g;",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.t")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_PG_URL", &url);
    let agent = spec.start_streaming().await;
    client
        .batch_execute("INSERT INTO t SELECT g, 'b' || g FROM generate_series(11, 20) g")
        .await
        .unwrap();
    let expected = source_rows(&client, "SELECT id::text, v FROM t").await;
    let got = wait_for_rows(&expected, TIMEOUT, || target_rows(&sim, "t", &["id", "v"])).await;
    assert!(
        got == expected,
        "{}\n{}",
        diff(&expected, &got),
        agent.log()
    );
    agent.stop_cleanly();

    // A server whose sessions are read-only (what a standby is to `read-write`) listed first:
    // `read-write` skips it, `any`, `read-only` and `primary` (it is not in recovery) keep it.
    let read_only = Cluster::start(ClusterOptions::default());
    let admin = read_only.database("postgres").superuser_client().await;
    for statement in [
        "ALTER SYSTEM SET default_transaction_read_only = on",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(statement).await.unwrap();
    }
    let ro = read_only.port();
    let both = |attrs: &str| {
        format!(
            "postgres://repl:repl-secret@127.0.0.1:{ro},127.0.0.1:{up}/postgres\
             ?sslmode=disable&target_session_attrs={attrs}"
        )
    };
    let (ro, up) = (ro.to_string(), up.to_string());
    assert_eq!(
        ports_reached(&both("read-write")).await,
        (up.clone(), up.clone())
    );
    for attrs in ["any", "read-only", "primary"] {
        assert_eq!(
            ports_reached(&both(attrs)).await,
            (ro.clone(), ro.clone()),
            "{attrs}"
        );
    }
    // Neither is a standby: `standby` fails naming what each server is, `prefer-standby`
    // falls back to the first that answers.
    let info = ConnInfo::parse(&both("standby")).unwrap();
    let err = connect_sql(&info).await.unwrap_err().to_string();
    assert!(
        err.matches("is a read-write primary").count() + err.matches("is read-only").count() == 2
            && err.contains("target_session_attrs=standby"),
        "{err}"
    );
    let err = ReplicationConnection::connect(&info)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no server of") && err.contains("is read-only"),
        "{err}"
    );
    assert_eq!(
        ports_reached(&both("prefer-standby")).await,
        (ro.clone(), ro)
    );
}
