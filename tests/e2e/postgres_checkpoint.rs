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

/// Streamed transactions' records (`streams_in_flight`): several per table, untouched by the
/// table's plain load records, marked prepared with their commit, forgotten one by one, and the
/// prepared ones forgotten once the confirmed LSN passes their commit (open ones stay: their
/// source transaction has not committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_streamed_transactions_are_recorded_per_table_and_label() {
    use starwal::postgres::checkpoint::RecordedStream;
    let db = Cluster::shared()
        .create_database("checkpoint_streams")
        .await;
    let slot = unique_name("slot");
    let store = CheckpointStore::new(DEFAULT_STATE_SCHEMA, &slot);
    let client = db.owner_client().await;
    store.ensure(&client).await.unwrap();
    let open = |label: &str, first: u64| RecordedStream {
        table: "t".into(),
        label: label.into(),
        first_lsn: Lsn(first),
        prepared_at: None,
    };
    store
        .begin_stream(&client, "t", "t_x7_s", Lsn(0x100))
        .await
        .unwrap();
    store
        .begin_stream(&client, "t", "t_x8_s", Lsn(0x180))
        .await
        .unwrap();
    // A plain load of the same table records itself without touching them.
    let load = InFlightLoad {
        table: "t".into(),
        label: "t_load".into(),
        first: ChangePosition {
            commit: Lsn(0x200),
            seq: 1,
        },
        last: ChangePosition {
            commit: Lsn(0x200),
            seq: 3,
        },
        synced_at: None,
        moved: Vec::new(),
    };
    store.begin_load(&client, &load).await.unwrap();
    assert_eq!(
        store.streams(&client).await.unwrap(),
        vec![open("t_x7_s", 0x100), open("t_x8_s", 0x180)]
    );
    assert!(store
        .stream_prepared(&client, "t", "t_x7_s", Lsn(0x300))
        .await
        .unwrap());
    assert!(
        !store
            .stream_prepared(&client, "t", "t_x9_s", Lsn(0x300))
            .await
            .unwrap(),
        "an unknown label is not recorded prepared"
    );
    let prepared = RecordedStream {
        prepared_at: Some(Lsn(0x300)),
        ..open("t_x7_s", 0x100)
    };
    assert_eq!(
        store.streams(&client).await.unwrap(),
        vec![prepared.clone(), open("t_x8_s", 0x180)]
    );
    // Not past its commit yet: kept.
    store.confirm(&client, Lsn(0x300)).await.unwrap();
    assert_eq!(
        store.streams(&client).await.unwrap(),
        vec![prepared, open("t_x8_s", 0x180)]
    );
    // Past it: the prepared one goes, the open one stays.
    store.confirm(&client, Lsn(0x301)).await.unwrap();
    assert_eq!(
        store.streams(&client).await.unwrap(),
        vec![open("t_x8_s", 0x180)]
    );
    store.forget_stream(&client, "t", "t_x8_s").await.unwrap();
    assert!(store.streams(&client).await.unwrap().is_empty());
    // Cleared with the slot.
    store
        .begin_stream(&client, "t", "t_x10_s", Lsn(0x400))
        .await
        .unwrap();
    store.clear(&client).await.unwrap();
    assert!(store.streams(&client).await.unwrap().is_empty());
}
