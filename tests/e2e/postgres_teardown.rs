//! `starwal teardown` through the built binary: without `--yes` it only says what it would drop
//! (exit 2, nothing dropped); with `--yes` it drops the slot, the publication and the slot's
//! checkpoint state, leaves other slots' state, and can be repeated; it refuses an active slot.

use std::process::Command;

use starwal::config::DEFAULT_STATE_SCHEMA;
use starwal::postgres::checkpoint::CheckpointStore;
use starwal::postgres::Lsn;

use crate::harness::{unique_name, Cluster, Role, TestDatabase};

fn teardown(db: &TestDatabase, slot: &str, publication: &str, yes: bool) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_starwal"));
    command
        .arg("teardown")
        .env("STARWAL_PG_URL", db.url(Role::Scram, "disable"))
        .env("STARWAL_TABLES", "public.t")
        .env("STARWAL_SLOT", slot)
        .env("STARWAL_PUBLICATION", publication)
        .current_dir(std::env::temp_dir());
    if yes {
        command.arg("--yes");
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn count(db: &TestDatabase, sql: &str) -> String {
    db.psql(sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_teardown_drops_only_what_starwal_made() {
    let db = Cluster::shared().create_database("teardown").await;
    let slot = unique_name("slot");
    let publication = unique_name("pub");
    let client = db.owner_client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION {publication} FOR TABLE t;"
        ))
        .await
        .unwrap();
    // A slot cannot be created in a transaction that wrote: its own statement.
    client
        .batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
        ))
        .await
        .unwrap();
    let store = CheckpointStore::new(DEFAULT_STATE_SCHEMA, &slot);
    store.ensure(&client).await.unwrap();
    store.confirm(&client, Lsn(0x10)).await.unwrap();
    let other = CheckpointStore::new(DEFAULT_STATE_SCHEMA, "some_other_slot");
    other.confirm(&client, Lsn(0x20)).await.unwrap();

    let (code, _, stderr) = teardown(&db, &slot, &publication, false);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--yes") && stderr.contains(&slot),
        "{stderr}"
    );
    assert_eq!(
        count(
            &db,
            &format!("select count(*) from pg_replication_slots where slot_name = '{slot}'")
        ),
        "1"
    );

    // An active slot is refused.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let db = db.clone();
        let slot = slot.clone();
        let publication = publication.clone();
        std::thread::spawn(move || {
            let mut child = Command::new(env!("CARGO_BIN_EXE_starwal"))
                .args(["tail", "--slot", &slot])
                .env("STARWAL_PG_URL", db.url(Role::Scram, "disable"))
                .env("STARWAL_TABLES", "public.t")
                .env("STARWAL_PUBLICATION", &publication)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let _ = rx.recv();
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().unwrap();
        })
    };
    for _ in 0..100 {
        if count(
            &db,
            &format!(
                "select count(*) from pg_replication_slots where slot_name = '{slot}' and active"
            ),
        ) == "1"
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, _, stderr) = teardown(&db, &slot, &publication, true);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("in use by process"), "{stderr}");
    tx.send(()).unwrap();
    holder.join().unwrap();

    let (code, stdout, stderr) = teardown(&db, &slot, &publication, true);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("dropped replication slot `{slot}`")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("dropped publication `{publication}`")),
        "{stdout}"
    );
    assert_eq!(
        count(
            &db,
            &format!("select count(*) from pg_replication_slots where slot_name = '{slot}'")
        ),
        "0"
    );
    assert_eq!(
        count(
            &db,
            &format!("select count(*) from pg_publication where pubname = '{publication}'")
        ),
        "0"
    );
    assert_eq!(store.load(&client).await.unwrap(), Default::default());
    assert_eq!(
        other.load(&client).await.unwrap().confirmed_lsn,
        Lsn(0x20),
        "other slots keep their state"
    );
    assert_eq!(
        count(&db, "select count(*) from t"),
        "0",
        "the table itself is untouched"
    );

    // Again: nothing left, still exit 0.
    let (code, stdout, _) = teardown(&db, &slot, &publication, true);
    assert_eq!(code, 0);
    assert!(stdout.contains("not found: replication slot"), "{stdout}");
}
