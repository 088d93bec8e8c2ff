//! The checkpoint store against a real server: created idempotently, a new slot starts at 0/0,
//! loads in flight are recorded before sending and survive a "crash" (a new connection), the
//! confirmed LSN only moves forward and clears the loads it covers, slots are independent.

use starwal::config::DEFAULT_STATE_SCHEMA;
use starwal::postgres::checkpoint::{CheckpointStore, InFlightLoad};
use starwal::postgres::{ChangePosition, Lsn};

use crate::harness::{unique_name, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_checkpoint_records_loads_and_moves_forward_only() {
    let db = Cluster::shared().create_database("checkpoint").await;
    let slot = unique_name("slot");
    let store = CheckpointStore::new(DEFAULT_STATE_SCHEMA, &slot);
    let client = db.owner_client().await;
    store.ensure(&client).await.unwrap();
    store.ensure(&client).await.unwrap();
    let fresh = store.load(&client).await.unwrap();
    assert_eq!(fresh.confirmed_lsn, Lsn::ZERO);
    assert!(fresh.in_flight.is_empty());

    let orders = InFlightLoad {
        table: "orders".into(),
        label: "starwal_s_orders_1_2".into(),
        first: ChangePosition {
            commit: Lsn(0x100),
            seq: 1,
        },
        last: ChangePosition {
            commit: Lsn(0x1F0),
            seq: 7,
        },
        synced_at: None,
        moved: Vec::new(),
    };
    let items = InFlightLoad {
        table: "items".into(),
        label: "starwal_s_items_1_3".into(),
        first: ChangePosition {
            commit: Lsn(0x100),
            seq: 2,
        },
        last: ChangePosition {
            commit: Lsn(0x300),
            seq: 1,
        },
        synced_at: None,
        moved: Vec::new(),
    };
    store.begin_load(&client, &orders).await.unwrap();
    store.begin_load(&client, &items).await.unwrap();
    drop(client);

    // After a crash, a new connection sees both loads.
    let client = db.owner_client().await;
    let after_crash = store.load(&client).await.unwrap();
    assert_eq!(after_crash.in_flight, vec![items.clone(), orders.clone()]);

    // Confirming 0/200 (a commit end: every commit below it is done) clears the orders load only.
    store.confirm(&client, Lsn(0x200)).await.unwrap();
    let state = store.load(&client).await.unwrap();
    assert_eq!(state.confirmed_lsn, Lsn(0x200));
    assert_eq!(state.in_flight, vec![items]);

    // The confirmed LSN never moves back.
    store.confirm(&client, Lsn(0x150)).await.unwrap();
    assert_eq!(store.load(&client).await.unwrap().confirmed_lsn, Lsn(0x200));

    // Another slot's state is separate; clearing one leaves the other.
    let other = CheckpointStore::new(DEFAULT_STATE_SCHEMA, &unique_name("other"));
    other.confirm(&client, Lsn(0x999)).await.unwrap();
    store.clear(&client).await.unwrap();
    assert_eq!(store.load(&client).await.unwrap(), Default::default());
    assert_eq!(other.load(&client).await.unwrap().confirmed_lsn, Lsn(0x999));
}

/// On a server (here: a database) whose default is `synchronous_commit = off`, the store's
/// session commits durably: a prepared transaction's record must not be lost by a Postgres
/// crash after StarRocks was told to commit it (review finding 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_state_writes_commit_durably_when_the_server_default_is_async() {
    let db = Cluster::shared()
        .create_database("checkpoint_durable")
        .await;
    let store = CheckpointStore::new(DEFAULT_STATE_SCHEMA, &unique_name("slot"));
    let admin = db.owner_client().await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = off",
            db.name
        ))
        .await
        .unwrap();
    let client = db.owner_client().await;
    let show = |row: tokio_postgres::Row| row.get::<_, String>(0);
    let before = show(
        client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .unwrap(),
    );
    assert_eq!(before, "off", "the test needs an async default");
    store.ensure(&client).await.unwrap();
    store.make_durable(&client).await.unwrap();
    let after = show(
        client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .unwrap(),
    );
    assert_eq!(after, "on");
}
