//! Issue 18 against a real primary and a streaming standby made with `pg_basebackup`
//! (`harness::standby`): the primary is stopped with `-m immediate` while a seeded workload runs,
//! the standby is promoted, and the agent, given a multi-host `STARWAL_PG_URL` listing both:
//! - with a failover slot (PG 17+, synchronised to the standby) resumes on the new primary: the
//!   target equals the new primary's tables, and no change is applied twice (every committed
//!   label once; the insert-only table's loaded rows equal its rows);
//! - with a slot created without failover stops loudly: health NOT_SERVING naming the lost slot,
//!   no slot created on the new primary;
//! - `check` warns on a primary no standby synchronises, and passes once one does;
//! - pointed at a standby (PG 16+) with `STARWAL_PG_PRIMARY_URL` naming the primary, decodes
//!   there: changes made on the primary reach the target through the standby's slot, the
//!   publication, state and heartbeats are written on the primary; without that variable a
//!   standby is refused with the way out; `teardown` drops each object where it lives.
//!
//! Slot synchronisation is a PG 17 feature, decoding on a standby a PG 16 one: on older servers
//! these tests say so and return (CI runs `postgres_*` against 16, 17 and 18 too). The standby is made synchronous
//! (`synchronous_standby_names`) so starwal's own writes (checkpoint, loads in flight) are on it
//! before a load is sent: with an asynchronous standby the last record before the crash may be
//! missing there, and a load it announced is then sent again under another label (README,
//! "Failover").

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use starrocks_sim::Sim;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::harness::agent::{
    diff, slot_confirmed_flush, source_rows, start_sim, status_json, target_rows, wait_for_rows,
    wait_until, Agent, AgentSpec, Rows, TARGET_DB,
};
use crate::harness::seeded::Lcg;
use crate::harness::standby::Standby;
use crate::harness::{Cluster, ClusterOptions, Role, TestDatabase};
use crate::postgres_failover::{check, slot_exists, starwal};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Whether the server has no slot synchronisation (before 17): the test says so and returns.
fn skip_before_17(test: &str) -> bool {
    let major = Cluster::shared().major();
    if major < 17 {
        eprintln!(
            "{test}: skipped: PostgreSQL {major} has no failover slots (17+); run with \
             STARWAL_TEST_PGBIN=/opt/starwal-pg/17/bin (CI does)"
        );
        return true;
    }
    false
}

/// `db`'s URL with both servers listed, primary first, keeping only one that qualifies for
/// `attrs` (`target_session_attrs`).
fn both_hosts(db: &TestDatabase, standby: &Cluster, attrs: &str) -> String {
    db.url(Role::Scram, "disable").replace(
        &format!("127.0.0.1:{}/", db.port()),
        &format!("127.0.0.1:{},127.0.0.1:{}/", db.port(), standby.port()),
    ) + "&target_session_attrs="
        + attrs
}

/// The `slot failover` line of `check`'s output.
fn failover_line(out: &str) -> &str {
    out.lines()
        .find(|line| line.contains("slot failover"))
        .unwrap_or_else(|| panic!("no `slot failover` line in:\n{out}"))
}

const TABLES: &str = "CREATE TABLE events (id bigint PRIMARY KEY, note text);
     CREATE TABLE accounts (id int PRIMARY KEY, n int NOT NULL, note text);
     INSERT INTO accounts SELECT g, 0, 'start' FROM generate_series(1, 50) g;";

/// One workload transaction: a few rows appended to `events` (never changed again, so each is
/// loaded exactly once), a few random inserts, updates and deletes on `accounts`.
fn transaction(rng: &mut Lcg, next_event: &mut u64) -> String {
    let mut sql = String::from("BEGIN;");
    for _ in 0..1 + rng.next(4) {
        sql.push_str(&format!(
            "INSERT INTO events VALUES ({next_event}, 'e{next_event}');"
        ));
        *next_event += 1;
    }
    for _ in 0..1 + rng.next(3) {
        let id = 1 + rng.next(80);
        sql.push_str(&match rng.next(4) {
            0 => format!("DELETE FROM accounts WHERE id = {id};"),
            1 => format!(
                "INSERT INTO accounts VALUES ({id}, 1, 'i{id}') \
                 ON CONFLICT (id) DO UPDATE SET n = accounts.n + 1;"
            ),
            _ => format!(
                "UPDATE accounts SET n = n + 1, note = 'u{}' WHERE id = {id};",
                rng.next(1000)
            ),
        });
    }
    sql.push_str("COMMIT;");
    sql
}

/// Runs transactions on `db` until `stop` is set or the server goes away (the primary is
/// killed under it); returns the next event id.
async fn workload(db: TestDatabase, seed: u64, first_event: u64, stop: Arc<AtomicBool>) -> u64 {
    let client = db.owner_client().await;
    let mut rng = Lcg(seed);
    let mut next_event = first_event;
    while !stop.load(Ordering::Relaxed) {
        let sql = transaction(&mut rng, &mut next_event);
        if client.batch_execute(&sql).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5 + rng.next(20))).await;
    }
    next_event
}

const EVENTS: &str = "SELECT id::text, note FROM events";
const ACCOUNTS: &str = "SELECT id::text, n::text, note FROM accounts";

fn events(sim: &Sim) -> Rows {
    target_rows(sim, "events", &["id", "note"])
}

fn accounts(sim: &Sim) -> Rows {
    target_rows(sim, "accounts", &["id", "n", "note"])
}

/// Runs `count` workload transactions on `client`, one after the other.
async fn run_transactions(
    client: &tokio_postgres::Client,
    rng: &mut Lcg,
    next_event: &mut u64,
    count: usize,
) {
    for _ in 0..count {
        client
            .batch_execute(&transaction(rng, next_event))
            .await
            .unwrap();
    }
}

/// Waits until both target tables equal the source's (read through `client`), asserting they
/// do; `context` (a seed) goes into the message with the agent's log.
async fn assert_converged(
    client: &tokio_postgres::Client,
    sim: &Sim,
    agent: &Agent,
    context: &str,
) {
    for (query, rows) in [(EVENTS, events as fn(&Sim) -> Rows), (ACCOUNTS, accounts)] {
        let expected = source_rows(client, query).await;
        let got = wait_for_rows(&expected, TIMEOUT, || rows(sim)).await;
        assert!(
            got == expected,
            "{query}: {}\n{context}\n{}",
            diff(&expected, &got),
            agent.log()
        );
    }
}

async fn health(spec: &AgentSpec) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(spec.control_url())
        .ok()?
        .connect()
        .await
        .ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?
        .into_inner();
    ServingStatus::try_from(response.status).ok()
}

/// A primary with a database holding the workload's tables, and a standby attached after the
/// tables exist, guarding the primary (synchronous, `synchronized_standby_slots`).
async fn primary_and_standby(name: &str) -> (Cluster, TestDatabase, Standby) {
    let primary = Cluster::start(ClusterOptions::default());
    let db = primary.create_database(name).await;
    db.owner_client().await.batch_execute(TABLES).await.unwrap();
    let standby = Standby::attach(&primary);
    standby.guard_primary(&primary, true);
    (primary, db, standby)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_promoted_standby_resumes_without_loss_or_duplicates() {
    let test = "postgres_failover_promoted_standby_resumes_without_loss_or_duplicates";
    if skip_before_17(test) {
        return;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("{test}: seed {seed}");

    // `check` on a primary without a standby: a warning that names what is missing.
    let primary = Cluster::start(ClusterOptions::default());
    let db = primary.create_database("fo_promote").await;
    db.owner_client().await.batch_execute(TABLES).await.unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.events,public.accounts")
        .var("STARWAL_SNAPSHOT", "initial");
    let (code, out) = check(&spec);
    assert_eq!(code, 0, "{out}");
    let line = failover_line(&out);
    assert!(
        line.contains("warning") && line.contains("no standby streams through a physical slot"),
        "{out}"
    );

    // With a synchronising standby guarding the primary, it passes.
    let standby = Standby::attach(&primary);
    standby.guard_primary(&primary, true);
    let (code, out) = check(&spec);
    assert_eq!(code, 0, "{out}");
    let line = failover_line(&out);
    assert!(
        !line.contains("warning") && line.contains(&standby.slot),
        "{out}"
    );

    let spec = spec.var(
        "STARWAL_PG_URL",
        &both_hosts(&db, &standby.cluster, "read-write"),
    );
    let slot = spec.slot().to_owned();
    let mut agent = spec.start_streaming().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(workload(db.clone(), seed, 1, stop.clone()));

    // Streaming works, and the standby holds a synchronised copy of the slot that has moved
    // past a position confirmed while the workload ran.
    let client = db.owner_client().await;
    let loaded = wait_until(TIMEOUT, || events(&sim).len() >= 20).await;
    assert!(loaded, "no events loaded:\n{}", agent.log());
    let confirmed = slot_confirmed_flush(&client, &slot).await;
    let mut synced = None;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        synced = standby.synced_slot(&slot, TIMEOUT).await;
        if synced.is_some_and(|lsn| lsn >= confirmed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        synced.is_some_and(|lsn| lsn >= confirmed),
        "the standby's copy of `{slot}` ({synced:?}) never reached {confirmed}\n--- standby log ---\n{}",
        standby.cluster.server_log()
    );

    // The primary dies mid-workload; the standby takes over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(client);
    primary.stop();
    let next_event = writer.await.unwrap();
    standby.promote();

    // More changes on the new primary; the agent finds it through the URL and resumes.
    let new_primary = standby.cluster.database(&db.name);
    let client = new_primary.owner_client().await;
    let max_event: i64 = client
        .query_one("SELECT coalesce(max(id), 0) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert!(max_event as u64 <= next_event);
    let mut rng = Lcg(seed ^ 0x5eed);
    let mut event = next_event + 1000;
    run_transactions(&client, &mut rng, &mut event, 20).await;
    assert_converged(&client, &sim, &agent, &format!("seed {seed}")).await;
    // Nothing twice: every committed label once, and each event row (never changed after its
    // insert) loaded once.
    for table in ["events", "accounts"] {
        let labels = sim.counters(TARGET_DB, table).labels_committed;
        let unique: BTreeSet<&String> = labels.iter().collect();
        assert_eq!(
            unique.len(),
            labels.len(),
            "{table}: a label committed twice (seed {seed}): {labels:?}"
        );
    }
    let event_rows: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        sim.counters(TARGET_DB, "events").rows_loaded,
        event_rows as u64,
        "events loaded more than once (seed {seed}):\n{}",
        agent.log()
    );
    let log = agent.log();
    assert_eq!(
        log.matches("created replication slot").count(),
        1,
        "the slot was created again instead of resumed:\n{log}"
    );
    assert!(agent.is_running(), "{log}");
    agent.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_slot_without_failover_stops_loudly_after_promotion() {
    let test = "postgres_failover_slot_without_failover_stops_loudly_after_promotion";
    if skip_before_17(test) {
        return;
    }
    let (primary, db, standby) = primary_and_standby("fo_nofailover").await;
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.events,public.accounts")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_SLOT_FAILOVER", "false")
        .var(
            "STARWAL_PG_URL",
            &both_hosts(&db, &standby.cluster, "read-write"),
        );
    let slot = spec.slot().to_owned();
    // `check` says the slot would not survive.
    let (code, out) = check(&spec);
    assert_eq!(code, 0, "{out}");
    assert!(
        failover_line(&out).contains("STARWAL_SLOT_FAILOVER=false"),
        "{out}"
    );

    let mut agent = spec.start_streaming().await;
    let client = db.owner_client().await;
    let mut rng = Lcg(7);
    let mut event = 1;
    run_transactions(&client, &mut rng, &mut event, 10).await;
    let expected = source_rows(&client, EVENTS).await;
    let got = wait_for_rows(&expected, TIMEOUT, || events(&sim)).await;
    assert!(
        got == expected,
        "{}\n{}",
        diff(&expected, &got),
        agent.log()
    );
    drop(client);

    primary.stop();
    standby.promote();
    let new_primary = standby.cluster.database(&db.name);
    let client = new_primary.owner_client().await;
    run_transactions(&client, &mut rng, &mut event, 1).await;

    // The agent keeps running (STARWAL_EXIT_ON_ERROR is off) but does not serve, and says why.
    // What starwal had is "confirmed up to LSN …" or "… load(s) in flight", whichever its
    // state schema held when the primary died.
    let cause = format!("slot `{slot}` is missing but starwal had ");
    let said = wait_until(TIMEOUT, || {
        status_json(&spec).is_some_and(|status| {
            status["serving"] == false
                && status["health_detail"]
                    .as_str()
                    .is_some_and(|detail| detail.contains(&cause))
        })
    })
    .await;
    let log = agent.log();
    assert!(said, "{:?}\n{log}", status_json(&spec));
    assert_eq!(
        health(&spec).await,
        Some(ServingStatus::NotServing),
        "{log}"
    );
    assert!(
        log.contains(&cause)
            && log.contains("lost in a failover")
            && log.contains("STARWAL_ON_SLOT_LOSS=resync"),
        "{log}"
    );
    assert!(agent.is_running(), "{log}");
    assert!(
        !slot_exists(&client, &slot).await,
        "a slot was created on the new primary:\n{log}"
    );
    // Nothing was copied again: the target still holds what it had before the failover.
    assert_eq!(events(&sim), expected);
    agent.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_standby_decoding_reaches_the_target_through_the_standby() {
    let test = "postgres_failover_standby_decoding_reaches_the_target_through_the_standby";
    let major = Cluster::shared().major();
    if major < 16 {
        eprintln!(
            "{test}: skipped: PostgreSQL {major} cannot decode on a standby (16+); run with \
             STARWAL_TEST_PGBIN=/opt/starwal-pg/16/bin (CI does)"
        );
        return;
    }
    let primary = Cluster::start(ClusterOptions::default());
    let db = primary.create_database("fo_standby_decoding").await;
    let client = db.owner_client().await;
    client.batch_execute(TABLES).await.unwrap();
    let standby = Standby::attach(&primary);
    let on_standby = standby.cluster.database(&db.name);
    let sim = start_sim();
    // Both servers in the URL, the standby chosen by target_session_attrs; the primary for the
    // writes, in libpq's keyword/value form.
    let spec = AgentSpec::new(&db, &sim, "public.events,public.accounts")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_HEARTBEAT_INTERVAL_S", "1")
        .var(
            "STARWAL_PG_URL",
            &both_hosts(&db, &standby.cluster, "standby"),
        );
    let slot = spec.slot().to_owned();

    // Without somewhere to write, a standby is refused with the way out.
    let (code, out) = check(&spec);
    assert_eq!(code, 1, "{out}");
    let writable = out
        .lines()
        .find(|line| line.contains("Postgres writable"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        writable.contains("is in recovery (a standby)")
            && writable.contains("STARWAL_PG_PRIMARY_URL"),
        "{out}"
    );

    let spec = spec.var(
        "STARWAL_PG_PRIMARY_URL",
        &format!(
            "host=127.0.0.1 port={} dbname={} user=repl password='repl-secret' sslmode=disable",
            db.port(),
            db.name
        ),
    );
    let (code, out) = check(&spec);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("a standby: decoding here")
            && failover_line(&out).contains("the slot is on this standby"),
        "{out}"
    );

    let agent = spec.start_streaming().await;
    let mut rng = Lcg(16);
    let mut event = 1;
    run_transactions(&client, &mut rng, &mut event, 30).await;
    assert_converged(&client, &sim, &agent, "changes made on the primary").await;
    // The slot is the standby's; the primary holds the publication and the state, and had
    // none of the agent's slots.
    let standby_client = on_standby.superuser_client().await;
    assert!(slot_exists(&standby_client, &slot).await, "on the standby");
    assert!(!slot_exists(&client, &slot).await, "on the primary");
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM starwal.checkpoints WHERE slot = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "no checkpoint on the primary:\n{}", agent.log());
    let log = agent.log();
    assert!(
        !log.contains("heartbeat failed") && !log.contains("cannot execute"),
        "{log}"
    );
    agent.stop_cleanly();

    // teardown drops the slot on the standby, the publication and the state on the primary.
    let (code, out) = starwal(&spec, &["teardown", "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert!(!slot_exists(&standby_client, &slot).await, "{out}");
    let publications: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_publication WHERE pubname = $1",
            &[&spec.get("STARWAL_PUBLICATION").unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(publications, 0, "{out}");
}

/// Review of issue 18, decoding from a standby (PG 16+):
/// - `STARWAL_PG_PRIMARY_URL` naming a writable primary of *another* cluster is refused by
///   `check` (system identifiers differ) and by `teardown`, which then drops nothing there;
/// - with the right primary, an idle agent's heartbeats (written on the primary, replayed and
///   decoded on the standby) move the standby slot's `confirmed_flush_lsn` past WAL written
///   elsewhere, so the standby's slot does not hold WAL forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_standby_review_other_cluster_refused_and_idle_slot_advances() {
    let test = "postgres_failover_standby_review_other_cluster_refused_and_idle_slot_advances";
    let major = Cluster::shared().major();
    if major < 16 {
        eprintln!("{test}: skipped: PostgreSQL {major} cannot decode on a standby (16+)");
        return;
    }
    let primary = Cluster::start(ClusterOptions::default());
    let db = primary.create_database("fo_review").await;
    let client = db.owner_client().await;
    client.batch_execute(TABLES).await.unwrap();
    let standby = Standby::attach(&primary);
    let on_standby = standby.cluster.database(&db.name);
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.events,public.accounts")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_HEARTBEAT_INTERVAL_S", "1")
        .var(
            "STARWAL_PG_URL",
            &both_hosts(&db, &standby.cluster, "standby"),
        );
    let slot = spec.slot().to_owned();
    let publication = spec.get("STARWAL_PUBLICATION").unwrap().to_owned();
    let primary_url = |port: u16, dbname: &str| {
        format!(
            "host=127.0.0.1 port={port} dbname={dbname} user=repl password='repl-secret' \
             sslmode=disable"
        )
    };

    // Another cluster (the shared one), writable, with a publication of the same name.
    let other = Cluster::shared().create_database("fo_review_other").await;
    other
        .superuser_client()
        .await
        .batch_execute(&format!(
            "{TABLES}; CREATE PUBLICATION \"{publication}\" FOR ALL TABLES"
        ))
        .await
        .unwrap_or_else(|e| panic!("other cluster: {e:?}"));
    let wrong = spec.clone().var(
        "STARWAL_PG_PRIMARY_URL",
        &primary_url(other.port(), &other.name),
    );
    let (code, out) = check(&wrong);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("not in STARWAL_PG_URL's cluster (system identifier"),
        "{out}"
    );
    let (code, out) = starwal(&wrong, &["teardown", "--yes"]);
    assert_ne!(code, 0, "{out}");
    let kept: i64 = other
        .owner_client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        kept, 1,
        "teardown dropped another cluster's publication:\n{out}"
    );

    // The right primary: stream, then stay idle while WAL is written outside the publication.
    let spec = spec.var("STARWAL_PG_PRIMARY_URL", &primary_url(db.port(), &db.name));
    let agent = spec.start_streaming().await;
    let mut rng = Lcg(18);
    let mut event = 1;
    run_transactions(&client, &mut rng, &mut event, 10).await;
    assert_converged(&client, &sim, &agent, "before idling").await;
    let elsewhere = primary.create_database("fo_review_noise").await;
    elsewhere
        .owner_client()
        .await
        .batch_execute("CREATE TABLE noise AS SELECT g FROM generate_series(1, 1000) g")
        .await
        .unwrap();
    let written: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let written: starwal::postgres::Lsn = written.parse().unwrap();
    let standby_client = on_standby.superuser_client().await;
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut confirmed = slot_confirmed_flush(&standby_client, &slot).await;
    while confirmed < written && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        confirmed = slot_confirmed_flush(&standby_client, &slot).await;
    }
    assert!(
        confirmed >= written,
        "the idle standby slot stayed at {confirmed}, WAL written up to {written}:\n{}",
        agent.log()
    );
    // Still nothing lost or doubled after idling.
    run_transactions(&client, &mut rng, &mut event, 5).await;
    assert_converged(&client, &sim, &agent, "after idling").await;
    agent.stop_cleanly();
}

/// Review of issue 18 (PG 16+): starwal streamed from the primary (slot and state there); the
/// deployment then moves to decoding from a standby whose replay lags behind that state. The
/// slot is missing on the standby and starwal had confirmed changes, so with
/// `STARWAL_ON_SLOT_LOSS=stop` `check` must refuse, reading the state where it lives (the
/// primary), not the standby's stale copy that shows no state at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_standby_review_slot_loss_read_on_the_primary_not_a_lagging_standby() {
    let major = Cluster::shared().major();
    if major < 16 {
        eprintln!("skipped: PostgreSQL {major} cannot decode on a standby (16+)");
        return;
    }
    let primary = Cluster::start(ClusterOptions::default());
    let db = primary.create_database("fo_review_lag").await;
    let client = db.owner_client().await;
    client.batch_execute(TABLES).await.unwrap();
    let standby = Standby::attach(&primary);
    // The standby stops replaying before starwal writes anything.
    let standby_client = standby.cluster.database(&db.name).superuser_client().await;
    standby_client
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let sim = start_sim();
    // No failover slot: on 17+ the standby's slot sync worker would otherwise keep a copy of
    // the slot there (and hold it), and the slot would not be lost.
    let spec = AgentSpec::new(&db, &sim, "public.events,public.accounts")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_SLOT_FAILOVER", "false");
    let agent = spec.start_streaming().await;
    let mut rng = Lcg(7);
    let mut event = 1;
    run_transactions(&client, &mut rng, &mut event, 5).await;
    assert_converged(&client, &sim, &agent, "on the primary").await;
    agent.stop_cleanly();

    let on_standby = spec
        .clone()
        .var(
            "STARWAL_PG_URL",
            &both_hosts(&db, &standby.cluster, "standby"),
        )
        .var(
            "STARWAL_PG_PRIMARY_URL",
            &format!(
                "host=127.0.0.1 port={} dbname={} user=repl password='repl-secret' \
                 sslmode=disable",
                db.port(),
                db.name
            ),
        );
    let (code, out) = check(&on_standby);
    assert_eq!(code, 1, "a lost slot passed as a fresh start:\n{out}");
    assert!(out.contains("confirmed up to LSN"), "{out}");
    // The role (`repl`, no superuser) may not ask the primary for a running-xacts record.
    assert!(
        out.contains("GRANT EXECUTE ON FUNCTION pg_log_standby_snapshot() TO <role>"),
        "{out}"
    );
}
