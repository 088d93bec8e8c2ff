//! The StarRocks sink against `starrocks-sim` over real sockets: upsert/delete/partial-update
//! semantics, the FE's 307 followed with credentials, a retried batch committed exactly once
//! (the sim's counters prove it), every injected transient fault retried to exactly one commit,
//! every permanent failure reported precisely with the batch handed back, filtered rows with the
//! ErrorURL text, compression, FE failover, and loads to the redirected BE directly (back
//! through the FE after a failed attempt).

use std::sync::Arc;
use std::time::Duration;

use starrocks_sim::catalog::{ColumnDef, ColumnType, TableSpec, Value as SimValue};
use starrocks_sim::{FaultKind, LoadFault, ServerFaults, ServerRole, Sim, SimOptions};
use starwal::postgres::value::ValueKind;
use starwal::postgres::{Lsn, Oid};
use starwal::secret::Secret;
use starwal::sink::starrocks::encoding::{BodyWriter, RowOp, ValueTarget};
use starwal::sink::starrocks::mapping::TargetType;
use starwal::sink::starrocks::{
    Compression, DeleteMode, Label, RetryPolicy, StarRocksConfig, StarRocksSink, StreamLoadClient,
    StreamLoadError,
};
use starwal::sink::{AttemptFailed, LoadBatch, LoadObserver, Sink};

const DB: &str = "analytics";
const PASSWORD: &str = "sim-secret";

fn start_sim() -> Sim {
    let sim = Sim::start(SimOptions {
        password: PASSWORD.into(),
        ..SimOptions::default()
    })
    .expect("start the sim");
    sim.catalog().create_database(DB).unwrap();
    sim.catalog()
        .create_table(
            DB,
            TableSpec::new("t")
                .column(ColumnDef::new("id", ColumnType::BigInt).not_null())
                .column(ColumnDef::new("name", ColumnType::Varchar { length: 32 }))
                .column(ColumnDef::new("score", ColumnType::Int))
                .primary_key(&["id"]),
        )
        .unwrap();
    sim
}

fn config(fe_urls: Vec<String>, password: &str) -> StarRocksConfig {
    StarRocksConfig {
        fe_urls,
        mysql_addr: "127.0.0.1:9030".into(),
        user: "root".into(),
        password: Secret::new(password),
        database: DB.into(),
        delete_mode: DeleteMode::Hard,
        compression: Compression::None,
        create_tables: true,
        type_mapping: Default::default(),
        connect_timeout: Duration::from_secs(2),
        load_timeout: Duration::from_secs(30),
    }
}

/// Retries fast, so fault tests take milliseconds.
const FAST: RetryPolicy = RetryPolicy {
    initial_delay: Duration::from_millis(10),
    max_delay: Duration::from_millis(100),
    label_state_polls: 50,
    label_state_interval: Duration::from_millis(50),
};

fn sink(config: StarRocksConfig) -> StarRocksSink {
    StarRocksSink::new(StreamLoadClient::with_retry(config, FAST))
}

/// One row: `(id, name, score)`, `None` for NULL; `op` upsert or delete.
type Row<'a> = (RowOp, i64, Option<&'a str>, Option<i32>);

fn batch(rows: &[Row<'_>], first: u64, last: u64, compression: Compression) -> LoadBatch {
    let mut writer = BodyWriter::new();
    let int8 = ValueKind::from_type_oid(Oid(20));
    let text = ValueKind::from_type_oid(Oid(25));
    let int4 = ValueKind::from_type_oid(Oid(23));
    let (bigint, varchar, int) = (
        ValueTarget::checked(TargetType::BigInt),
        ValueTarget::checked(TargetType::Varchar(64)),
        ValueTarget::checked(TargetType::Int),
    );
    for (op, id, name, score) in rows {
        writer.begin_row();
        let id = id.to_string();
        let id = int8.decode(id.as_bytes()).unwrap();
        writer.field(b"\"id\":", &id, &bigint).unwrap();
        if *op == RowOp::Upsert {
            match name {
                Some(name) => {
                    let name = text.decode(name.as_bytes()).unwrap();
                    writer.field(b"\"name\":", &name, &varchar).unwrap()
                }
                None => writer.raw_field(b"\"name\":", b"null"),
            }
            match score {
                Some(score) => {
                    let score = score.to_string();
                    let score = int4.decode(score.as_bytes()).unwrap();
                    writer.field(b"\"score\":", &score, &int).unwrap()
                }
                None => writer.raw_field(b"\"score\":", b"null"),
            }
        }
        writer.end_row(*op);
    }
    let rows = writer.rows();
    LoadBatch {
        table: "t".into(),
        label: Label::for_batch("test", "public.t", Lsn(first), Lsn(last)),
        first_lsn: Lsn(first),
        last_lsn: Lsn(last),
        rows,
        partial_columns: None,
        csv_columns: None,
        body: writer.finish(compression).unwrap(),
    }
}

fn rows(sim: &Sim) -> Vec<Vec<SimValue>> {
    sim.catalog().rows(DB, "t").unwrap()
}

fn row(id: i128, name: Option<&str>, score: Option<i128>) -> Vec<SimValue> {
    vec![
        SimValue::Int(id),
        name.map_or(SimValue::Null, |n| SimValue::Text(n.into())),
        score.map_or(SimValue::Null, SimValue::Int),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_upserts_deletes_and_partial_updates() {
    let sim = start_sim();
    let sink = sink(config(vec![sim.fe_url()], PASSWORD));
    use RowOp::{Delete, Upsert};
    let receipt = sink
        .load(batch(
            &[
                (Upsert, 1, Some("a"), Some(10)),
                (Upsert, 2, Some("b"), Some(20)),
                (Upsert, 1, Some("a2"), Some(11)),
            ],
            10,
            20,
            Compression::None,
        ))
        .await
        .unwrap();
    assert_eq!(receipt.rows_loaded, 3);
    assert!(!receipt.already_committed);
    assert_eq!(
        rows(&sim),
        vec![row(1, Some("a2"), Some(11)), row(2, Some("b"), Some(20))]
    );

    sink.load(batch(
        &[(Delete, 2, None, None), (Upsert, 3, None, Some(30))],
        21,
        30,
        Compression::None,
    ))
    .await
    .unwrap();
    assert_eq!(
        rows(&sim),
        vec![row(1, Some("a2"), Some(11)), row(3, None, Some(30))]
    );

    // A partial update writes the key and the listed columns; `name` keeps its value.
    let mut partial = BodyWriter::new();
    partial.begin_row();
    partial.raw_field(b"\"id\":", b"1");
    partial.raw_field(b"\"score\":", b"99");
    partial.end_row(Upsert);
    let partial = LoadBatch {
        table: "t".into(),
        label: Label::for_batch("test", "public.t", Lsn(31), Lsn(40)),
        first_lsn: Lsn(31),
        last_lsn: Lsn(40),
        rows: 1,
        partial_columns: Some(vec!["id".into(), "score".into(), "__op".into()]),
        csv_columns: None,
        body: partial.finish(Compression::None).unwrap(),
    };
    sink.load(partial).await.unwrap();
    assert_eq!(
        rows(&sim),
        vec![row(1, Some("a2"), Some(99)), row(3, None, Some(30))]
    );
    assert_eq!(sim.counters(DB, "t").loads_committed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_retried_batch_commits_exactly_once() {
    let sim = start_sim();
    let sink = sink(config(vec![sim.fe_url()], PASSWORD));
    let first = batch(
        &[(RowOp::Upsert, 1, Some("a"), Some(1))],
        100,
        200,
        Compression::None,
    );
    let again = first.clone();
    assert!(!sink.load(first).await.unwrap().already_committed);
    // The same batch again (a retry after a crash): StarRocks answers Label Already Exists.
    let receipt = sink.load(again).await.unwrap();
    assert!(receipt.already_committed);
    assert_eq!(receipt.rows_loaded, 0);
    let counters = sim.counters(DB, "t");
    assert_eq!(counters.loads_committed, 1);
    assert_eq!(counters.rows_loaded, 1);
    assert_eq!(counters.labels_committed.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv7_transient_faults_are_retried_to_exactly_one_commit() {
    let sim = start_sim();
    let sink = sink(config(vec![sim.fe_url()], PASSWORD));
    let faults = [
        FaultKind::TooManyVersions { legacy: false },
        FaultKind::TooManyVersions { legacy: true },
        FaultKind::MemoryExceeded,
        FaultKind::TxnTimeout,
        FaultKind::CommitUnknown,
        FaultKind::CommitThenDropConnection,
        FaultKind::ResetMidBody,
        FaultKind::HttpConcurrencyLimit,
        FaultKind::ServiceShuttingDown,
        FaultKind::RunningTxnLimit,
        FaultKind::NotMaster,
        FaultKind::PublishTimeout {
            visible_after_ms: 100,
        },
    ];
    for (index, fault) in faults.iter().enumerate() {
        let before = sim.counters(DB, "t").loads_committed;
        sim.faults()
            .inject(LoadFault::new(fault.clone()).times(2).on_table(DB, "t"));
        let id = index as i64 + 1;
        let lsn = 1000 + index as u64 * 10;
        let receipt = sink
            .load(batch(
                &[(RowOp::Upsert, id, Some("x"), Some(1))],
                lsn,
                lsn + 5,
                Compression::None,
            ))
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {}", e.error));
        let after = sim.counters(DB, "t").loads_committed;
        assert_eq!(after, before + 1, "{fault:?}: exactly one commit");
        if !matches!(fault, FaultKind::PublishTimeout { .. }) {
            assert!(
                receipt.attempts > 1 || receipt.already_committed,
                "{fault:?}: {receipt:?}"
            );
        }
        sim.faults().clear();
    }
    // Publish Timeout rows become visible later; wait for them, then every row is there once.
    for _ in 0..50 {
        if rows(&sim).len() == faults.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows(&sim).len(), faults.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv7_permanent_failures_are_precise_and_hand_the_batch_back() {
    let sim = start_sim();

    let wrong = sink(config(vec![sim.fe_url()], "wrong-password"));
    let failure = wrong
        .load(batch(
            &[(RowOp::Upsert, 1, Some("a"), Some(1))],
            1,
            2,
            Compression::None,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(failure.error, StreamLoadError::Auth { .. }),
        "{}",
        failure.error
    );
    assert!(!failure.error.to_string().contains("wrong-password"));
    assert_eq!(failure.batch.first_lsn, Lsn(1), "the batch comes back");

    let good = sink(config(vec![sim.fe_url()], PASSWORD));
    let mut unknown = batch(
        &[(RowOp::Upsert, 1, Some("a"), Some(1))],
        3,
        4,
        Compression::None,
    );
    unknown.table = "no_such_table".into();
    let failure = good.load(unknown).await.unwrap_err();
    assert!(!failure.error.is_transient());
    assert!(
        failure.error.to_string().contains("unknown table"),
        "{}",
        failure.error
    );

    // A NULL key is filtered by StarRocks: max_filter_ratio 0 turns it into an error that
    // quotes the error log.
    let mut body = BodyWriter::new();
    body.begin_row();
    body.raw_field(b"\"id\":", b"null");
    body.raw_field(b"\"name\":", b"\"x\"");
    body.end_row(RowOp::Upsert);
    let filtered = LoadBatch {
        body: body.finish(Compression::None).unwrap(),
        ..batch(&[], 5, 6, Compression::None)
    };
    let failure = good.load(filtered).await.unwrap_err();
    match &failure.error {
        StreamLoadError::FilteredRows {
            filtered,
            error_log,
            ..
        } => {
            assert_eq!(*filtered, 1);
            assert!(
                error_log.contains("id"),
                "the error log names the column: {error_log}"
            );
        }
        other => panic!("expected filtered rows, got {other}"),
    }

    sim.faults().inject(
        LoadFault::new(FaultKind::Fail {
            message: "something nobody has seen before".into(),
        })
        .on_table(DB, "t"),
    );
    let failure = good
        .load(batch(
            &[(RowOp::Upsert, 9, Some("z"), Some(9))],
            7,
            8,
            Compression::None,
        ))
        .await
        .unwrap_err();
    assert!(
        failure
            .error
            .to_string()
            .contains("something nobody has seen before"),
        "{}",
        failure.error
    );
    assert_eq!(sim.counters(DB, "t").loads_committed, 0);
    assert!(rows(&sim).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_compression_and_fe_failover() {
    let sim = start_sim();
    // The first FE refuses connections; the sink moves on to the second.
    let mut cfg = config(vec!["http://127.0.0.1:1".into(), sim.fe_url()], PASSWORD);
    cfg.compression = Compression::Gzip;
    let client: Arc<StreamLoadClient> = StreamLoadClient::with_retry(cfg.clone(), FAST);
    let gzip = StarRocksSink::new(client);
    gzip.load(batch(
        &[(RowOp::Upsert, 1, Some("g"), Some(1))],
        1,
        2,
        Compression::Gzip,
    ))
    .await
    .unwrap();
    cfg.compression = Compression::Lz4;
    let lz4 = sink(cfg);
    lz4.load(batch(
        &[(RowOp::Upsert, 2, Some("l"), Some(2))],
        3,
        4,
        Compression::Lz4,
    ))
    .await
    .unwrap();
    assert_eq!(
        rows(&sim),
        vec![row(1, Some("g"), Some(1)), row(2, Some("l"), Some(2))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv7_waits_out_no_backend_alive() {
    let sim = start_sim();
    sim.faults().set_no_backend_alive(true);
    let faults = sim.faults();
    let healer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        faults.set_no_backend_alive(false);
    });
    let receipt = sink(config(vec![sim.fe_url()], PASSWORD))
        .load(batch(
            &[(RowOp::Upsert, 1, Some("a"), Some(1))],
            1,
            2,
            Compression::None,
        ))
        .await
        .unwrap();
    healer.await.unwrap();
    assert!(receipt.attempts > 1, "{receipt:?}");
    assert_eq!(sim.counters(DB, "t").loads_committed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_loads_the_redirected_be_directly_and_goes_back_to_the_fe_after_a_failure() {
    /// Counts failed attempts, so the test acts after one, not after a guessed delay.
    #[derive(Debug, Default)]
    struct FailedAttempts(std::sync::atomic::AtomicU32);
    impl LoadObserver for FailedAttempts {
        fn attempt_failed(&self, _failure: AttemptFailed<'_>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        fn load_committed(&self, _table: &str) {}
    }

    let sim = start_sim();
    let attempts = Arc::new(FailedAttempts::default());
    let failed = || attempts.0.load(std::sync::atomic::Ordering::SeqCst);
    let sink = StarRocksSink::new(StreamLoadClient::observed(
        config(vec![sim.fe_url()], PASSWORD),
        FAST,
        attempts.clone(),
    ));
    let one = |id: i64, first: u64| {
        batch(
            &[(RowOp::Upsert, id, Some("x"), Some(1))],
            first,
            first + 1,
            Compression::None,
        )
    };
    // The first load learns the BE from the FE's 307.
    assert_eq!(sink.load(one(1, 10)).await.unwrap().attempts, 1);

    // With the FE gone, the next load still lands in one attempt: it goes to the BE directly.
    let down = ServerFaults {
        refuse_connections: true,
        ..ServerFaults::default()
    };
    sim.faults().set_server(ServerRole::Fe, down);
    assert_eq!(sink.load(one(2, 20)).await.unwrap().attempts, 1);

    // The BE goes too (its open connections with it): the failed attempt forgets the BE, so
    // with the BE back but the FE still gone the load cannot land; once the FE is back it lands
    // through the FE's redirect.
    sim.faults().set_server(ServerRole::Be, down);
    // Its first attempt must have failed (on the BE) before the BE comes back; waiting a fixed
    // 300 ms was not enough on a busy machine, and the attempt then found the BE up. A load sent
    // before the sim dropped the BE's kept-alive connection can still land there: it proves
    // nothing here, so another is sent until one's attempt fails.
    let mut loads = 3;
    let loading = loop {
        let loading = tokio::spawn({
            let sink = sink.clone();
            let batch = one(loads, 10 * loads as u64);
            async move { sink.load(batch).await }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while failed() == 0 && !loading.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "no attempt failed in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if failed() > 0 {
            break loading;
        }
        loading.await.unwrap().unwrap();
        loads += 1;
        assert!(
            loads < 10,
            "every load landed on the BE set to refuse connections"
        );
    };
    sim.faults()
        .set_server(ServerRole::Be, ServerFaults::default());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !loading.is_finished(),
        "the load went to the BE directly after a failed attempt"
    );
    sim.faults()
        .set_server(ServerRole::Fe, ServerFaults::default());
    let receipt = loading.await.unwrap().unwrap();
    assert!(receipt.attempts > 1, "{receipt:?}");
    let counters = sim.counters(DB, "t");
    assert_eq!(counters.loads_committed, loads as u64);
    assert_eq!(counters.labels_committed.len(), loads as usize);
    assert_eq!(rows(&sim).len(), loads as usize);
}
