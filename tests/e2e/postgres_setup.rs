//! Source setup against real servers: each prerequisite error with its precise message, every
//! offending table reported at once, the publication created then completed idempotently, the
//! slot created once and reused (never dropped), and an invalidated slot explained.

use starwal::config::{Config, PostgresConfig};
use starwal::engine::setup::postgres::{ensure_slot, existing_slot, prepare_source};
use starwal::engine::setup::SetupError;
use starwal::postgres::catalog::{CatalogError, TableProblem};
use starwal::postgres::tls::connect_sql;

use crate::harness::{unique_name, Cluster, ClusterOptions, Role, TestDatabase};

fn config(
    db: &TestDatabase,
    role: Role,
    tables: &str,
    publication: &str,
    slot: &str,
) -> PostgresConfig {
    Config::from_vars([
        ("STARWAL_PG_URL".to_owned(), db.url(role, "disable")),
        ("STARWAL_TABLES".to_owned(), tables.to_owned()),
        ("STARWAL_PUBLICATION".to_owned(), publication.to_owned()),
        ("STARWAL_SLOT".to_owned(), slot.to_owned()),
    ])
    .unwrap()
    .postgres
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_setup_reports_every_bad_table_at_once() {
    let db = Cluster::shared().create_database("badtables").await;
    db.owner_client()
        .await
        .batch_execute(
            "CREATE TABLE ok (id int PRIMARY KEY);
             CREATE TABLE nokey (v text);
             CREATE TABLE full_identity (v text); ALTER TABLE full_identity REPLICA IDENTITY FULL;
             CREATE TABLE nothing (id int PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING;
             CREATE SCHEMA empty_schema;",
        )
        .await
        .unwrap();
    let cfg = config(
        &db,
        Role::Scram,
        "public.ok,public.missing,public.nokey,public.full_identity,public.nothing,empty_schema.*",
        "pub_bad",
        "slot_bad",
    );
    let client = connect_sql(&cfg.conn).await.unwrap();
    let err = prepare_source(&client, &cfg, true).await.unwrap_err();
    let SetupError::Catalog(CatalogError::Tables(problems)) = &err else {
        panic!("expected table problems, got {err}");
    };
    assert_eq!(
        problems,
        &vec![
            TableProblem::Missing("public.missing".into()),
            TableProblem::NoKey("public.nokey".into()),
            TableProblem::ReplicaIdentityNothing("public.nothing".into()),
            TableProblem::EmptySchema("empty_schema".into()),
        ]
    );
    let message = err.to_string();
    assert!(message.contains("REPLICA IDENTITY FULL"), "{message}");
    // Nothing was created while problems remained.
    assert_eq!(db.psql("select count(*) from pg_publication"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_setup_requires_the_replication_attribute() {
    let db = Cluster::shared().create_database("norepl").await;
    db.owner_client()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let cfg = config(&db, Role::NoReplication, "public.t", "p", "s");
    let client = connect_sql(&cfg.conn).await.unwrap();
    let err = prepare_source(&client, &cfg, true).await.unwrap_err();
    assert!(
        matches!(&err, SetupError::NoReplicationPrivilege { user } if user == "norepl"),
        "{err}"
    );
    assert!(
        err.to_string().contains("ALTER ROLE norepl REPLICATION"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_setup_requires_wal_level_logical() {
    let cluster = Cluster::start(ClusterOptions {
        extra_conf: "wal_level = replica\n".into(),
        ..Default::default()
    });
    let db = cluster.create_database("replica").await;
    db.owner_client()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let cfg = config(&db, Role::Scram, "public.t", "p", "s");
    let client = connect_sql(&cfg.conn).await.unwrap();
    let err = prepare_source(&client, &cfg, true).await.unwrap_err();
    assert!(
        matches!(&err, SetupError::WalLevel { found } if found == "replica"),
        "{err}"
    );
    assert!(err.to_string().contains("wal_level = logical"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv5_setup_is_idempotent_and_completes_the_publication() {
    let db = Cluster::shared().create_database("idem").await;
    db.owner_client()
        .await
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY);
             CREATE SCHEMA s; CREATE TABLE s.c (id int PRIMARY KEY); CREATE TABLE s.d (k text PRIMARY KEY);",
        )
        .await
        .unwrap();
    let publication = unique_name("pub");
    let slot = unique_name("slot");
    let cfg = config(&db, Role::Scram, "public.a", &publication, &slot);
    let client = connect_sql(&cfg.conn).await.unwrap();

    let report = prepare_source(&client, &cfg, true).await.unwrap();
    assert!(report.publication_created);
    assert_eq!(report.tables.len(), 1);
    let first = ensure_slot(&client, &cfg.conn, &slot).await.unwrap();
    assert!(first.created);

    // Same config again: nothing changes, the slot is reused with its position.
    let report = prepare_source(&client, &cfg, false).await.unwrap();
    assert!(!report.publication_created && report.tables_added.is_empty());
    let again = ensure_slot(&client, &cfg.conn, &slot).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.confirmed_flush, first.confirmed_flush);

    // More tables: added to the existing publication, patterns expanded.
    let cfg = config(
        &db,
        Role::Scram,
        "public.a,public.b,s.*",
        &publication,
        &slot,
    );
    let report = prepare_source(&client, &cfg, false).await.unwrap();
    assert_eq!(report.tables_added, vec!["public.b", "s.c", "s.d"]);
    assert_eq!(
        db.psql(&format!(
            "select string_agg(schemaname || '.' || tablename, ',' order by 1) from pg_publication_tables where pubname = '{publication}'"
        )),
        "public.a,public.b,s.c,s.d"
    );
    assert_eq!(
        db.psql(&format!(
            "select count(*) from pg_replication_slots where slot_name = '{slot}'"
        )),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_setup_explains_an_invalidated_slot() {
    let cluster = Cluster::start(ClusterOptions {
        extra_conf: "max_slot_wal_keep_size = 1MB\nmin_wal_size = 32MB\nmax_wal_size = 64MB\n"
            .into(),
        ..Default::default()
    });
    let db = cluster.create_database("lost").await;
    db.owner_client()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let slot = unique_name("lost");
    let cfg = config(&db, Role::Scram, "public.t", "p", &slot);
    let client = connect_sql(&cfg.conn).await.unwrap();
    prepare_source(&client, &cfg, true).await.unwrap();
    ensure_slot(&client, &cfg.conn, &slot).await.unwrap();

    // Write and switch WAL segments past the 1 MB the slot may keep, then checkpoint.
    let mut status = String::new();
    for _ in 0..20 {
        db.psql(
            "INSERT INTO t SELECT g, repeat('x', 1000) FROM generate_series(1, 3000) g ON CONFLICT (id) DO UPDATE SET v = excluded.v || 'y';
             SELECT pg_switch_wal(); CHECKPOINT;",
        );
        status = db.psql(&format!(
            "select wal_status from pg_replication_slots where slot_name = '{slot}'"
        ));
        if status == "lost" {
            break;
        }
    }
    assert_eq!(status, "lost", "the test could not invalidate the slot");

    let err = existing_slot(&client, &slot, &db.name).await.unwrap_err();
    assert!(matches!(err, SetupError::SlotInvalidated { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&slot) && message.contains("pg_drop_replication_slot"),
        "{message}"
    );
    // It is still there: setup never drops a slot.
    assert_eq!(
        db.psql(&format!(
            "select count(*) from pg_replication_slots where slot_name = '{slot}'"
        )),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_setup_reads_table_schemas_with_key_order() {
    use starwal::postgres::catalog::{resolve_tables, table_schema};
    use starwal::sink::starrocks::mapping::target_table;

    let db = Cluster::shared().create_database("schema").await;
    db.owner_client()
        .await
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('ok', 'sad');
             CREATE TABLE orders (note text, id bigint NOT NULL, region varchar(8) NOT NULL,
                 amount numeric(10,2), tags int4[], m mood, dropped int, PRIMARY KEY (region, id));
             ALTER TABLE orders DROP COLUMN dropped;
             CREATE TABLE ri (code text NOT NULL, v jsonb);
             CREATE UNIQUE INDEX ri_code ON ri (code); ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_code;",
        )
        .await
        .unwrap();
    let cfg = config(&db, Role::Scram, "public.orders,public.ri", "p", "s");
    let client = connect_sql(&cfg.conn).await.unwrap();
    let tables = resolve_tables(&client, &cfg.tables).await.unwrap();
    let orders = table_schema(&client, &tables[0]).await.unwrap();
    let described: Vec<(String, String, Option<u16>)> = orders
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.type_name.clone(), c.key_position))
        .collect();
    assert_eq!(
        described,
        vec![
            ("note".into(), "text".into(), None),
            ("id".into(), "bigint".into(), Some(1)),
            ("region".into(), "character varying(8)".into(), Some(0)),
            ("amount".into(), "numeric(10,2)".into(), None),
            ("tags".into(), "integer[]".into(), None),
            ("m".into(), "mood".into(), None),
        ]
    );
    let ddl = target_table(&orders, Default::default())
        .unwrap()
        .create_sql("analytics");
    assert!(
        ddl.contains("(`region` VARCHAR(32) NOT NULL, `id` BIGINT NOT NULL, `note` VARCHAR(1048576) NULL, `amount` DECIMAL(10,2) NULL, `tags` ARRAY<INT> NULL, `m` VARCHAR(1048576) NULL"),
        "{ddl}"
    );
    assert!(ddl.contains("PRIMARY KEY(`region`, `id`)"), "{ddl}");

    let ri = table_schema(&client, &tables[1]).await.unwrap();
    assert_eq!(
        ri.key_columns()
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["code"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_setup_refuses_a_publication_that_drops_operations() {
    let db = Cluster::shared().create_database("pubops").await;
    db.owner_client()
        .await
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY);
             CREATE PUBLICATION inserts_only FOR TABLE t WITH (publish = 'insert');",
        )
        .await
        .unwrap();
    let cfg = config(&db, Role::Scram, "public.t", "inserts_only", "s");
    let client = connect_sql(&cfg.conn).await.unwrap();
    let err = prepare_source(&client, &cfg, true).await.unwrap_err();
    assert!(
        matches!(&err, SetupError::PublicationOperations { missing, .. } if missing == &vec!["update", "delete", "truncate"]),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("ALTER PUBLICATION inserts_only SET (publish"),
        "{err}"
    );
}
