//! Target setup over the MySQL protocol against `starrocks-sim`: the whole type mapping created
//! from a real Postgres table, existing tables validated with every mismatch reported at once,
//! missing columns added through an asynchronous ALTER job that setup waits for, and a missing
//! table refused when table creation is off.

use std::net::SocketAddr;
use std::time::Duration;

use starrocks_sim::catalog::{ColumnDef, ColumnType, TableSpec};
use starrocks_sim::{Sim, SimOptions};
use starwal::config::Config;
use starwal::postgres::catalog::{resolve_tables, table_schema};
use starwal::postgres::tls::connect_sql;
use starwal::schema::TableSchema;
use starwal::secret::Secret;
use starwal::sink::starrocks::setup::{TargetProblem, TargetSetup, TargetSetupError};
use starwal::sink::starrocks::{Compression, DeleteMode, StarRocksConfig};

use crate::harness::{Cluster, Role, TestDatabase};

const DB: &str = "analytics";

fn start_sim() -> Sim {
    Sim::start(SimOptions {
        password: "pw".into(),
        mysql: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SimOptions::default()
    })
    .expect("start the sim")
}

fn config(sim: &Sim, create_tables: bool) -> StarRocksConfig {
    StarRocksConfig {
        fe_urls: vec![sim.fe_url()],
        mysql_addr: sim.addrs().mysql.expect("mysql enabled").to_string(),
        user: "root".into(),
        password: Secret::new("pw"),
        database: DB.into(),
        delete_mode: DeleteMode::Hard,
        compression: Compression::None,
        create_tables,
        type_mapping: Default::default(),
        connect_timeout: Duration::from_secs(5),
        load_timeout: Duration::from_secs(30),
    }
}

/// The schemas of `tables` (comma list) in `db`, read from the real catalog.
async fn schemas(db: &TestDatabase, tables: &str) -> Vec<TableSchema> {
    let cfg = Config::from_vars([
        ("STARWAL_PG_URL".to_owned(), db.url(Role::Scram, "disable")),
        ("STARWAL_TABLES".to_owned(), tables.to_owned()),
    ])
    .unwrap()
    .postgres;
    let client = connect_sql(&cfg.conn).await.unwrap();
    let mut out = Vec::new();
    for table in resolve_tables(&client, &cfg.tables).await.unwrap() {
        out.push(table_schema(&client, &table).await.unwrap());
    }
    out
}

fn sim_columns(sim: &Sim, table: &str) -> Vec<(String, String, bool)> {
    sim.catalog().read(|c| {
        c.table(DB, table)
            .unwrap()
            .columns()
            .iter()
            .map(|col| (col.name.clone(), col.column_type.to_string(), col.nullable))
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_setup_creates_tables_across_the_type_mapping() {
    let db = Cluster::shared().create_database("mapping").await;
    db.owner_client()
        .await
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('ok', 'sad');
             CREATE TABLE every_type (id bigint PRIMARY KEY, b boolean, i2 smallint, i4 integer,
                 f4 real, f8 double precision, n numeric(12,3), nu numeric, c char(3), v varchar(10),
                 t text, u uuid, j json, jb jsonb, by bytea, d date, ts timestamp, tz timestamptz,
                 tm time, iv interval, arr int4[], tarr text[], m mood);
             CREATE SCHEMA sales;
             CREATE TABLE sales.orders (region text, id uuid, amount numeric(10,2), PRIMARY KEY (region, id));",
        )
        .await
        .unwrap();
    let sources = schemas(&db, "public.every_type,sales.orders").await;
    let sim = start_sim();
    let mut setup = TargetSetup::connect(&config(&sim, true)).await.unwrap();
    let report = setup.prepare(&sources).await.unwrap();
    assert!(report.database_created);
    assert_eq!(report.tables_created, vec!["every_type", "sales_orders"]);
    assert_eq!(
        report.version,
        format!("{}-sim", starrocks_sim::DEFAULT_STARROCKS_VERSION)
    );

    let columns = sim_columns(&sim, "every_type");
    let types: Vec<(&str, &str)> = columns
        .iter()
        .map(|(name, ty, _)| (name.as_str(), ty.as_str()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("id", "BIGINT"),
            ("b", "BOOLEAN"),
            ("i2", "SMALLINT"),
            ("i4", "INT"),
            ("f4", "FLOAT"),
            ("f8", "DOUBLE"),
            ("n", "DECIMAL(12,3)"),
            ("nu", "DECIMAL(38,9)"),
            ("c", "VARCHAR(12)"),
            ("v", "VARCHAR(40)"),
            ("t", "VARCHAR(1048576)"),
            ("u", "VARCHAR(36)"),
            ("j", "JSON"),
            ("jb", "JSON"),
            ("by", "VARCHAR(1048576)"),
            ("d", "DATE"),
            ("ts", "DATETIME"),
            ("tz", "DATETIME"),
            ("tm", "VARCHAR(32)"),
            ("iv", "VARCHAR(64)"),
            ("arr", "ARRAY<INT>"),
            ("tarr", "ARRAY<VARCHAR(1048576)>"),
            ("m", "VARCHAR(1048576)"),
            ("_starwal_op", "VARCHAR(8)"),
            ("_starwal_deleted", "BOOLEAN"),
            ("_starwal_synced_at", "DATETIME"),
            ("_starwal_lsn", "BIGINT"),
        ]
    );
    // Key first and NOT NULL; value columns nullable.
    assert!(!columns[0].2 && columns[1..].iter().all(|c| c.2));
    let orders = sim_columns(&sim, "sales_orders");
    assert_eq!(
        orders[..3]
            .iter()
            .map(|(n, t, _)| (n.as_str(), t.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("region", "VARCHAR(128)"),
            ("id", "VARCHAR(36)"),
            ("amount", "DECIMAL(10,2)")
        ]
    );

    // Idempotent: a second run creates nothing and adds nothing.
    let report = setup.prepare(&sources).await.unwrap();
    assert!(report.tables_created.is_empty() && report.columns_added.is_empty());
    setup.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_setup_reports_every_mismatch_and_adds_missing_columns() {
    let db = Cluster::shared().create_database("evolve").await;
    db.owner_client()
        .await
        .batch_execute(
            "CREATE TABLE good (id int PRIMARY KEY, v text, added_later date);
             CREATE TABLE bad (id int PRIMARY KEY, v jsonb, w text);",
        )
        .await
        .unwrap();
    let sources = schemas(&db, "public.good,public.bad").await;
    let sim = start_sim();
    sim.catalog().create_database(DB).unwrap();
    // `good` exists without `added_later` and without the audit columns.
    sim.catalog()
        .create_table(
            DB,
            TableSpec::new("good")
                .column(ColumnDef::new("id", ColumnType::Int).not_null())
                .column(ColumnDef::new(
                    "v",
                    ColumnType::Varchar { length: 1_048_576 },
                ))
                .primary_key(&["id"]),
        )
        .unwrap();
    // `bad` has the wrong key and a wrong type.
    sim.catalog()
        .create_table(
            DB,
            TableSpec::new("bad")
                .column(ColumnDef::new("w", ColumnType::Varchar { length: 10 }).not_null())
                .column(ColumnDef::new("id", ColumnType::Int))
                .column(ColumnDef::new("v", ColumnType::Int))
                .primary_key(&["w"]),
        )
        .unwrap();
    let mut setup = TargetSetup::connect(&config(&sim, true)).await.unwrap();
    let err = setup.prepare(&sources).await.unwrap_err();
    let TargetSetupError::Tables(problems) = &err else {
        panic!("expected table problems, got {err}");
    };
    assert_eq!(problems.len(), 3, "{err}");
    assert!(
        matches!(&problems[0], TargetProblem::Key { table, .. } if table == "bad"),
        "{err}"
    );
    assert!(
        matches!(&problems[1], TargetProblem::Type { column, found, .. } if column == "v" && found.starts_with("int")),
        "{err}"
    );
    // Too narrow is a mismatch too: text needs VARCHAR(1048576).
    assert!(
        matches!(&problems[2], TargetProblem::Type { column, found, .. } if column == "w" && found == "varchar(10)"),
        "{err}"
    );
    // Nothing was changed while problems remained.
    assert_eq!(sim_columns(&sim, "good").len(), 2);

    // Without `bad`, setup adds the missing columns and waits for the ALTER job.
    let report = setup.prepare(&sources[..1]).await.unwrap();
    let added: Vec<&str> = report
        .columns_added
        .iter()
        .map(|(_, c)| c.as_str())
        .collect();
    assert_eq!(
        added,
        vec![
            "added_later",
            "_starwal_op",
            "_starwal_deleted",
            "_starwal_synced_at",
            "_starwal_lsn"
        ]
    );
    let names: Vec<String> = sim_columns(&sim, "good").into_iter().map(|c| c.0).collect();
    assert_eq!(
        names.len(),
        7,
        "the ALTER job finished before setup returned: {names:?}"
    );
    setup.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_setup_without_table_creation_refuses_missing_tables() {
    let db = Cluster::shared().create_database("nocreate").await;
    db.owner_client()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let sources = schemas(&db, "public.t").await;
    let sim = start_sim();
    let mut setup = TargetSetup::connect(&config(&sim, false)).await.unwrap();
    let err = setup.prepare(&sources).await.unwrap_err();
    assert!(
        matches!(err, TargetSetupError::MissingDatabase(ref d) if d == DB),
        "{err}"
    );
    sim.catalog().create_database(DB).unwrap();
    let err = setup.prepare(&sources).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("table `t` does not exist and STARWAL_CREATE_TABLES=false"),
        "{err}"
    );

    // Wrong credentials name the variable.
    let mut wrong = config(&sim, true);
    wrong.password = Secret::new("nope");
    let err = TargetSetup::connect(&wrong).await.unwrap_err();
    assert!(err.to_string().contains("STARWAL_STARROCKS_MYSQL"), "{err}");
    assert!(!err.to_string().contains("nope"), "{err}");
}
