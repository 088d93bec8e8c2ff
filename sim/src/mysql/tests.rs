//! End-to-end tests of the MySQL side with clients we did not write: `mysql_async` (the client
//! starwal itself uses) and the Debian `mariadb` CLI run exactly as a user would.
//!
//! Each test starts a [`Sim`] (for its catalog) and a MySQL server on `127.0.0.1:0` in-process.
//! The CLI tests fail — they do not skip — when `mariadb` is not installed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{serve, serve_with, MysqlOptions};
use crate::catalog::{ColumnType, Value};
use crate::{Sim, SimOptions};

const PASSWORD: &str = "s3cret";
const MARIADB: &str = "/usr/bin/mariadb";

struct Harness {
    sim: Sim,
    addr: SocketAddr,
    _stop: watch::Sender<bool>,
}

async fn start(alter_delay: Duration) -> Harness {
    let sim = Sim::start(SimOptions {
        password: PASSWORD.to_string(),
        ..SimOptions::default()
    })
    .expect("sim starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let options = MysqlOptions {
        alter_delay,
        ..MysqlOptions::new("root", PASSWORD)
    };
    tokio::spawn(serve_with(listener, sim.catalog(), options, stop_rx));
    Harness {
        sim,
        addr,
        _stop: stop,
    }
}

async fn connect_as(addr: SocketAddr, user: &str, password: &str) -> mysql_async::Result<Conn> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false);
    Conn::new(opts).await
}

async fn connect(h: &Harness) -> Conn {
    connect_as(h.addr, "root", PASSWORD)
        .await
        .expect("connects")
}

/// All rows as strings (NULL → "NULL").
async fn rows(conn: &mut Conn, sql: &str) -> Vec<Vec<String>> {
    let rows: Vec<Row> = conn
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    row.get::<Option<String>, _>(i)
                        .flatten()
                        .unwrap_or_else(|| "NULL".to_string())
                })
                .collect()
        })
        .collect()
}

/// Column names of a result.
async fn column_names(conn: &mut Conn, sql: &str) -> Vec<String> {
    let rows: Vec<Row> = conn.query(sql).await.unwrap();
    rows.first()
        .map(|r| {
            r.columns_ref()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The server error of a statement that must fail: (code, message).
async fn fails(conn: &mut Conn, sql: &str) -> (u16, String) {
    match conn.query_drop(sql).await {
        Err(mysql_async::Error::Server(e)) => (e.code, e.message),
        other => panic!("{sql}: expected a server error, got {other:?}"),
    }
}

async fn ok(conn: &mut Conn, sql: &str) {
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn create_sample(conn: &mut Conn) {
    ok(conn, "CREATE DATABASE IF NOT EXISTS db").await;
    ok(
        conn,
        "CREATE TABLE IF NOT EXISTS `db`.`t` (
            `id` BIGINT NOT NULL COMMENT 'key',
            `name` VARCHAR(64) NULL,
            flag BOOLEAN,
            amount DECIMAL(18, 4) NULL DEFAULT \"0\",
            ts DATETIME,
            doc JSON,
            big LARGEINT
        ) PRIMARY KEY(`id`) DISTRIBUTED BY HASH(`id`) BUCKETS 4
        PROPERTIES (\"replication_num\" = \"1\", \"enable_persistent_index\" = \"true\");",
    )
    .await;
}

#[tokio::test]
async fn handshake_version_and_session_statements() {
    let h = start(Duration::ZERO).await;
    let mut conn = connect(&h).await;
    assert_eq!(
        rows(&mut conn, "select current_version()").await,
        vec![vec!["4.0.2-sim".to_string()]]
    );
    assert_eq!(
        column_names(&mut conn, "select current_version()").await,
        vec!["current_version()"]
    );
    assert_eq!(
        rows(&mut conn, "SELECT 1").await,
        vec![vec!["1".to_string()]]
    );
    assert_eq!(
        rows(&mut conn, "  select 1 AS one , 'x' , NULL ;  ").await,
        vec![vec!["1".to_string(), "x".to_string(), "NULL".to_string()]]
    );
    ok(&mut conn, "SET NAMES utf8mb4").await;
    ok(&mut conn, "set session query_timeout = 600;").await;
    ok(&mut conn, "SET @a = 'v'").await;
    assert_eq!(
        rows(&mut conn, "select @a").await,
        vec![vec!["v".to_string()]]
    );
    assert_eq!(
        rows(&mut conn, "select @@version_comment, @@SESSION.autocommit").await,
        vec![vec![
            "StarRocks version 4.0.2-sim".to_string(),
            "1".to_string()
        ]]
    );
    assert_eq!(fails(&mut conn, "select @@nope").await.0, 1193);
    assert_eq!(
        rows(
            &mut conn,
            "SELECT @@max_allowed_packet,@@wait_timeout,@@socket"
        )
        .await,
        vec![["33554432", "28800", "NULL"].map(String::from).to_vec()]
    );
    let variables = rows(&mut conn, "SHOW VARIABLES").await;
    assert_eq!(variables.len(), 33);
    assert_eq!(
        rows(&mut conn, "show variables like 'MAX_ALLOWED%'").await,
        vec![["max_allowed_packet", "33554432"]
            .map(String::from)
            .to_vec()]
    );
    assert_eq!(
        rows(
            &mut conn,
            "show session variables where Variable_name = 'time_zone'"
        )
        .await,
        vec![["time_zone", "UTC"].map(String::from).to_vec()]
    );
    assert_eq!(
        rows(&mut conn, "select database()").await,
        vec![vec!["NULL".to_string()]]
    );
    conn.ping().await.unwrap();
    // USE through SQL and through COM_INIT_DB.
    ok(&mut conn, "CREATE DATABASE d1").await;
    ok(&mut conn, "use `d1`").await;
    assert_eq!(
        rows(&mut conn, "select database()").await,
        vec![vec!["d1".to_string()]]
    );
    conn.query_drop("USE information_schema").await.unwrap();
    conn.reset().await.unwrap();
    let (code, message) = fails(&mut conn, "USE nope").await;
    assert_eq!((code, message.as_str()), (1049, "Unknown database 'nope'"));
    // Connecting with a database, and with one that does not exist.
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(h.addr.port())
        .user(Some("root"))
        .pass(Some(PASSWORD))
        .db_name(Some("d1"))
        .prefer_socket(false);
    let mut in_db = Conn::new(opts.clone()).await.unwrap();
    assert_eq!(
        rows(&mut in_db, "select database()").await,
        vec![vec!["d1".to_string()]]
    );
    in_db.disconnect().await.unwrap();
    match Conn::new(opts.db_name(Some("nope"))).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1049),
        other => panic!("{other:?}"),
    }
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn wrong_credentials_are_denied_with_1045() {
    let h = start(Duration::ZERO).await;
    for (user, password, using) in [
        ("root", "wrong", "YES"),
        ("root", "", "NO"),
        ("admin", PASSWORD, "YES"),
    ] {
        match connect_as(h.addr, user, password).await {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!(e.code, 1045);
                assert_eq!(e.state, "28000");
                assert_eq!(
                    e.message,
                    format!(
                        "Access denied for user '{user}'@'127.0.0.1' (using password: {using})"
                    )
                );
            }
            other => panic!("{user}/{password}: {other:?}"),
        }
    }
    // An empty configured password accepts exactly the empty password.
    let sim = Sim::start(SimOptions::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(serve(
        listener,
        sim.catalog(),
        ("root".to_string(), String::new()),
        stop_rx,
    ));
    let mut conn = connect_as(addr, "root", "").await.unwrap();
    conn.ping().await.unwrap();
    assert!(connect_as(addr, "root", "x").await.is_err());
}

#[tokio::test]
async fn information_schema_desc_and_show_create_table() {
    let h = start(Duration::ZERO).await;
    let mut conn = connect(&h).await;
    create_sample(&mut conn).await;
    assert_eq!(
        rows(
            &mut conn,
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'db'"
        )
        .await,
        vec![vec!["db".to_string()]]
    );
    assert!(rows(
        &mut conn,
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'DB'"
    )
    .await
    .is_empty());
    assert_eq!(
        rows(
            &mut conn,
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='db'"
        )
        .await,
        vec![vec!["t".to_string()]]
    );
    // The query starwal's target setup issues, escaped the way it escapes.
    assert_eq!(
        rows(
            &mut conn,
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_KEY FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = 'db' AND TABLE_NAME = 't' ORDER BY ORDINAL_POSITION"
        )
        .await,
        [
            ["id", "bigint", "PRI"],
            ["name", "varchar", ""],
            ["flag", "tinyint", ""],
            ["amount", "decimal", ""],
            ["ts", "datetime", ""],
            ["doc", "json", ""],
            ["big", "bigint unsigned", ""],
        ]
        .map(|r| r.map(String::from).to_vec())
        .to_vec()
    );
    assert_eq!(
        rows(
            &mut conn,
            "select column_name, data_type, ordinal_position, column_size, decimal_digits, is_nullable, column_key, column_comment, column_type, column_default \
             from information_schema.columns where table_schema = 'db' and table_name = 't' and column_name in ('id', 'flag', 'amount', 'name') order by ordinal_position desc"
        )
        .await,
        [
            ["amount", "decimal", "4", "18", "4", "YES", "", "", "decimal(18,4)", "0"],
            ["flag", "tinyint", "3", "NULL", "NULL", "YES", "", "", "tinyint(1)", "NULL"],
            ["name", "varchar", "2", "64", "NULL", "YES", "", "", "varchar(64)", "NULL"],
            ["id", "bigint", "1", "19", "0", "NO", "PRI", "key", "bigint(20)", "NULL"],
        ]
        .map(|r| r.map(String::from).to_vec())
        .to_vec()
    );
    assert!(rows(
        &mut conn,
        "SELECT * FROM information_schema.columns WHERE TABLE_SCHEMA = 'db' AND TABLE_NAME = 'missing'"
    )
    .await
    .is_empty());
    // DESC.
    assert_eq!(
        column_names(&mut conn, "DESC db.t").await,
        ["Field", "Type", "Null", "Key", "Default", "Extra"]
    );
    assert_eq!(
        rows(&mut conn, "desc `db`.`t`").await[..4],
        [
            ["id", "bigint(20)", "NO", "true", "NULL", ""],
            ["name", "varchar(64)", "YES", "false", "NULL", ""],
            ["flag", "boolean", "YES", "false", "NULL", ""],
            ["amount", "decimal(18,4)", "YES", "false", "0", ""],
        ]
        .map(|r| r.map(String::from).to_vec())
    );
    // SHOW CREATE TABLE.
    let show = rows(&mut conn, "SHOW CREATE TABLE db.t").await;
    assert_eq!(show[0][0], "t");
    let ddl = &show[0][1];
    assert!(
        ddl.starts_with("CREATE TABLE `t` (\n  `id` bigint(20) NOT NULL COMMENT \"key\",\n"),
        "{ddl}"
    );
    assert!(ddl.contains(") ENGINE=OLAP \nPRIMARY KEY(`id`)\nCOMMENT \"OLAP\"\nDISTRIBUTED BY HASH(`id`) BUCKETS 4 \nPROPERTIES (\n"), "{ddl}");
    assert!(
        ddl.contains("\"fast_schema_evolution\" = \"true\""),
        "{ddl}"
    );
    assert!(ddl.contains("\"replication_num\" = \"1\""), "{ddl}");
    assert!(ddl.ends_with(");"), "{ddl}");
    // SHOW DATABASES / TABLES.
    let dbs = rows(&mut conn, "SHOW DATABASES").await;
    assert!(dbs.contains(&vec!["information_schema".to_string()]));
    assert!(dbs.contains(&vec!["db".to_string()]));
    assert_eq!(
        rows(&mut conn, "show tables from db").await,
        vec![vec!["t".to_string()]]
    );
    assert_eq!(
        column_names(&mut conn, "SHOW TABLES FROM db").await,
        ["Tables_in_db"]
    );
    assert_eq!(fails(&mut conn, "SHOW TABLES").await.0, 1046);
    ok(&mut conn, "USE db").await;
    assert_eq!(
        rows(&mut conn, "SHOW TABLES").await,
        vec![vec!["t".to_string()]]
    );
    assert_eq!(rows(&mut conn, "desc t").await.len(), 7);
    assert_eq!(rows(&mut conn, "SHOW BACKENDS").await.len(), 1);
    let frontends = rows(&mut conn, "SHOW FRONTENDS").await;
    assert_eq!(frontends[0][4], h.addr.port().to_string());
}

#[tokio::test]
async fn create_table_rules_and_errors() {
    let h = start(Duration::ZERO).await;
    let mut conn = connect(&h).await;
    ok(&mut conn, "CREATE DATABASE db").await;
    let (code, message) = fails(&mut conn, "CREATE DATABASE db").await;
    assert_eq!(
        (code, message.as_str()),
        (1007, "Can't create database 'db'; database exists")
    );
    ok(&mut conn, "create database if not exists db").await;
    let cases = [
        (
            "CREATE TABLE db.a (v INT, id BIGINT NOT NULL) PRIMARY KEY(id) DISTRIBUTED BY HASH(id)",
            "Key columns should be a ordered prefix of the schema.",
        ),
        (
            "CREATE TABLE db.a (id BIGINT NULL, v INT) PRIMARY KEY(id) DISTRIBUTED BY HASH(id)",
            "primary key column[id] cannot be nullable",
        ),
        (
            "CREATE TABLE db.a (id DECIMAL(10,2) NOT NULL) PRIMARY KEY(id) DISTRIBUTED BY HASH(id)",
            "primary key column[id] type not supported: DECIMAL(10,2)",
        ),
        (
            "CREATE TABLE db.a (id DOUBLE NOT NULL) PRIMARY KEY(id)",
            "primary key column[id] type not supported: DOUBLE",
        ),
        (
            "CREATE TABLE db.a (id INT NOT NULL, k2 INT NOT NULL, v INT) PRIMARY KEY(id) DISTRIBUTED BY HASH(k2)",
            "Distribution column[k2] is not key column",
        ),
        (
            "CREATE TABLE db.a (id INT NOT NULL, v TIME) PRIMARY KEY(id)",
            "Unexpected input 'TIME'",
        ),
        (
            "CREATE TABLE db.a (id INT NOT NULL, v uuid) PRIMARY KEY(id)",
            "Unexpected input 'UUID'",
        ),
        (
            "CREATE TABLE db.a (id INT NOT NULL, v INT) DUPLICATE KEY(id)",
            "not supported by starrocks-sim",
        ),
        (
            "CREATE TABLE db.a (id INT NOT NULL, v VARCHAR(0)) PRIMARY KEY(id)",
            "VARCHAR length",
        ),
        (
            "CREATE TABLE db.a (id INT NOT NULL, v INT) PRIMARY KEY(id) BUCKETS",
            "Getting syntax error",
        ),
    ];
    for (sql, expected) in cases {
        let (code, message) = fails(&mut conn, sql).await;
        assert_eq!(code, 1064, "{sql}: {message}");
        assert!(message.contains(expected), "{sql}: {message}");
    }
    let (code, message) = fails(&mut conn, "CREATE TABLE a (id INT) PRIMARY KEY(id)").await;
    assert_eq!((code, message.as_str()), (1046, "No database selected"));
    let (code, message) = fails(&mut conn, "CREATE TABLE nodb.a (id INT) PRIMARY KEY(id)").await;
    assert_eq!((code, message.as_str()), (1049, "Unknown database 'nodb'"));
    // Key columns without NULL/NOT NULL become NOT NULL.
    ok(
        &mut conn,
        "CREATE TABLE db.a (id INT, k VARCHAR(8), v INT) PRIMARY KEY(id, k)",
    )
    .await;
    assert_eq!(
        rows(
            &mut conn,
            "select IS_NULLABLE from information_schema.COLUMNS where TABLE_NAME = 'a'"
        )
        .await,
        [["NO"], ["NO"], ["YES"]]
            .map(|r| r.map(String::from).to_vec())
            .to_vec()
    );
    let (code, message) = fails(&mut conn, "CREATE TABLE db.a (id INT) PRIMARY KEY(id)").await;
    assert_eq!((code, message.as_str()), (1050, "Table 'a' already exists"));
    ok(
        &mut conn,
        "CREATE TABLE IF NOT EXISTS db.a (id INT) PRIMARY KEY(id)",
    )
    .await;
    assert_eq!(
        rows(&mut conn, "desc db.a").await.len(),
        3,
        "IF NOT EXISTS keeps the table"
    );
    // The catalog saw it.
    let created = h.sim.catalog().read(|c| {
        c.table("db", "a").map(|t| {
            t.columns()
                .iter()
                .map(|c| c.column_type.clone())
                .collect::<Vec<_>>()
        })
    });
    assert_eq!(
        created.unwrap(),
        vec![
            ColumnType::Int,
            ColumnType::Varchar { length: 8 },
            ColumnType::Int
        ]
    );
    // DROP.
    ok(&mut conn, "DROP TABLE db.a").await;
    let (code, message) = fails(&mut conn, "DROP TABLE db.a").await;
    assert_eq!((code, message.as_str()), (1051, "Unknown table 'db.a'"));
    ok(&mut conn, "DROP TABLE IF EXISTS db.a").await;
    ok(&mut conn, "DROP DATABASE db").await;
    let (code, _) = fails(&mut conn, "DROP DATABASE db").await;
    assert_eq!(code, 1008);
    ok(&mut conn, "DROP DATABASE IF EXISTS db").await;
}

async fn last_job(conn: &mut Conn, db: &str, table: &str) -> Vec<String> {
    let sql = format!(
        "SHOW ALTER TABLE COLUMN FROM `{db}` WHERE TableName = '{table}' ORDER BY JobId DESC LIMIT 1"
    );
    rows(conn, &sql)
        .await
        .into_iter()
        .next()
        .unwrap_or_default()
}

async fn wait_finished(conn: &mut Conn, db: &str, table: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let job = last_job(conn, db, table).await;
        if job.get(9).map(String::as_str) == Some("FINISHED") {
            return job;
        }
        assert!(Instant::now() < deadline, "job never finished: {job:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn column_list(conn: &mut Conn, table: &str) -> Vec<String> {
    rows(conn, &format!("DESC db.{table}"))
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

#[tokio::test]
async fn alter_table_is_an_async_job() {
    let h = start(Duration::from_millis(600)).await;
    let mut conn = connect(&h).await;
    create_sample(&mut conn).await;
    h.sim
        .catalog()
        .write(|c| {
            let t = c.table_mut("db", "t")?;
            t.upsert(vec![
                Value::Int(1),
                Value::Text("a".into()),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ])
        })
        .unwrap();
    assert_eq!(
        column_names(&mut conn, "SHOW ALTER TABLE COLUMN FROM db").await,
        Vec::<String>::new(),
        "no jobs yet"
    );
    let started = Instant::now();
    ok(
        &mut conn,
        "ALTER TABLE `db`.`t` ADD COLUMN `c1` INT NULL DEFAULT \"7\" AFTER `name`",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "ALTER returns at once"
    );
    let job = last_job(&mut conn, "db", "t").await;
    assert_eq!(
        column_names(&mut conn, "SHOW ALTER TABLE COLUMN FROM db").await,
        [
            "JobId",
            "TableName",
            "CreateTime",
            "FinishTime",
            "IndexName",
            "IndexId",
            "OriginIndexId",
            "SchemaVersion",
            "TransactionId",
            "State",
            "Msg",
            "Progress",
            "Timeout"
        ]
    );
    assert_eq!(job[1], "t");
    assert!(job[9] == "PENDING" || job[9] == "RUNNING", "{job:?}");
    assert_eq!(job[3], "NULL", "no FinishTime yet");
    assert!(!column_list(&mut conn, "t")
        .await
        .contains(&"c1".to_string()));
    // One job per table.
    let (code, message) = fails(&mut conn, "ALTER TABLE db.t ADD COLUMN c2 INT").await;
    assert_eq!(code, 1064);
    assert_eq!(
        message,
        "Table[t]'s state(SCHEMA_CHANGE) is not NORMAL. Do not allow doing ALTER ops"
    );
    // RUNNING before the end, then FINISHED with the column in place and filled.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(last_job(&mut conn, "db", "t").await[9], "RUNNING");
    let job = wait_finished(&mut conn, "db", "t").await;
    assert_ne!(job[3], "NULL");
    assert_eq!(
        column_list(&mut conn, "t").await[..3],
        ["id", "name", "c1"].map(String::from)
    );
    assert_eq!(
        rows(&mut conn, "SELECT id, c1 FROM db.t").await,
        vec![vec!["1".to_string(), "7".to_string()]]
    );
    // Several columns: repeated ADD COLUMN and the parenthesised form; then DROP COLUMN.
    ok(
        &mut conn,
        "ALTER TABLE db.t ADD COLUMN c2 BIGINT NULL, ADD COLUMN c3 VARCHAR(8)",
    )
    .await;
    wait_finished(&mut conn, "db", "t").await;
    ok(&mut conn, "use db").await;
    ok(
        &mut conn,
        "alter table t add column (c4 INT, c5 INT) PROPERTIES (\"timeout\" = \"60\")",
    )
    .await;
    let job = wait_finished(&mut conn, "db", "t").await;
    assert_eq!(job[12], "60");
    assert!(column_list(&mut conn, "t")
        .await
        .ends_with(&["c2", "c3", "c4", "c5"].map(String::from)));
    ok(&mut conn, "ALTER TABLE db.t DROP COLUMN c3").await;
    wait_finished(&mut conn, "db", "t").await;
    assert!(!column_list(&mut conn, "t")
        .await
        .contains(&"c3".to_string()));
    // Rejected at statement time: key drop, duplicates, unknown columns.
    for (sql, expected) in [
        (
            "ALTER TABLE db.t DROP COLUMN id",
            "Can not drop key column in primary data model table",
        ),
        (
            "ALTER TABLE db.t ADD COLUMN c1 INT",
            "Can not add column which already exists in base table: c1",
        ),
        (
            "ALTER TABLE db.t DROP COLUMN nope",
            "Column does not exists: nope",
        ),
        (
            "ALTER TABLE db.t ADD COLUMN z INT AFTER nope",
            "Column[nope] does not exist",
        ),
        (
            "ALTER TABLE db.t ADD COLUMN z TIME",
            "Unexpected input 'TIME'",
        ),
        (
            "ALTER TABLE db.t RENAME u",
            "not supported by starrocks-sim",
        ),
    ] {
        let (code, message) = fails(&mut conn, sql).await;
        assert_eq!(code, 1064, "{sql}");
        assert!(message.contains(expected), "{sql}: {message}");
    }
    assert_eq!(
        fails(&mut conn, "ALTER TABLE db.nope ADD COLUMN z INT")
            .await
            .0,
        1146
    );
    // Four finished jobs, newest first.
    let jobs = rows(
        &mut conn,
        "SHOW ALTER TABLE COLUMN WHERE TableName = \"t\" ORDER BY JobId DESC",
    )
    .await;
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j[9] == "FINISHED"));
    assert!(jobs[0][0].parse::<i64>().unwrap() > jobs[3][0].parse::<i64>().unwrap());
    // CANCEL an unfinished job.
    ok(&mut conn, "ALTER TABLE db.t ADD COLUMN c9 INT").await;
    ok(&mut conn, "CANCEL ALTER TABLE COLUMN FROM db.t").await;
    let job = last_job(&mut conn, "db", "t").await;
    assert_eq!(
        (job[9].as_str(), job[10].as_str()),
        ("CANCELLED", "user cancelled")
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!column_list(&mut conn, "t")
        .await
        .contains(&"c9".to_string()));
    assert_eq!(
        fails(&mut conn, "CANCEL ALTER TABLE COLUMN FROM db.t")
            .await
            .0,
        1064
    );
    // A table dropped while its job runs: the job is cancelled, nothing panics.
    ok(&mut conn, "ALTER TABLE db.t ADD COLUMN c10 INT").await;
    ok(&mut conn, "DROP TABLE db.t").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let job = last_job(&mut conn, "db", "t").await;
        if job[9] == "CANCELLED" {
            assert!(job[10].contains("Unknown table"), "{job:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{job:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn select_where_order_limit_count_truncate() {
    let h = start(Duration::ZERO).await;
    let mut conn = connect(&h).await;
    create_sample(&mut conn).await;
    let datetime = |s: &str| ColumnType::DateTime.convert_text("ts", s).unwrap();
    let decimal = |s: &str| {
        ColumnType::Decimal {
            precision: 18,
            scale: 4,
        }
        .convert_text("amount", s)
        .unwrap()
    };
    h.sim
        .catalog()
        .write(|c| -> Result<(), crate::catalog::CatalogError> {
            let t = c.table_mut("db", "t")?;
            t.upsert(vec![
                Value::Int(1),
                Value::Text("alice".into()),
                Value::Bool(true),
                decimal("12.5"),
                datetime("2024-05-06 07:08:09.000123"),
                Value::Json(serde_json::json!({"a": [1, 2]})),
                Value::Int(170_141_183_460_469_231_731_687_303_715_884_105_727),
            ])?;
            t.upsert(vec![
                Value::Int(2),
                Value::Text("bob".into()),
                Value::Bool(false),
                decimal("-3"),
                datetime("2024-05-06 07:08:09"),
                Value::Null,
                Value::Null,
            ])?;
            t.upsert(vec![
                Value::Int(3),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ])
        })
        .unwrap();
    assert_eq!(
        rows(&mut conn, "SELECT * FROM db.t WHERE id = 1").await,
        vec![[
            "1",
            "alice",
            "1",
            "12.5000",
            "2024-05-06 07:08:09.000123",
            "{\"a\":[1,2]}",
            "170141183460469231731687303715884105727"
        ]
        .map(String::from)
        .to_vec()]
    );
    assert_eq!(
        rows(&mut conn, "select id, flag, ts from `db`.`t` where id = 2").await,
        vec![["2", "0", "2024-05-06 07:08:09"].map(String::from).to_vec()]
    );
    let ids = |rows: Vec<Vec<String>>| rows.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(rows(&mut conn, "SELECT id FROM db.t ORDER BY id DESC").await),
        ["3", "2", "1"]
    );
    assert_eq!(
        ids(rows(&mut conn, "SELECT id FROM db.t ORDER BY name").await),
        ["3", "1", "2"],
        "NULL first"
    );
    assert_eq!(
        ids(rows(&mut conn, "SELECT id FROM db.t ORDER BY name DESC LIMIT 2").await),
        ["2", "1"]
    );
    assert_eq!(
        ids(rows(&mut conn, "SELECT id FROM db.t ORDER BY 1 LIMIT 1, 1").await),
        ["2"]
    );
    assert_eq!(
        ids(rows(&mut conn, "SELECT id FROM db.t LIMIT 1 OFFSET 2").await),
        ["3"]
    );
    for (filter, expected) in [
        ("id <> 2", vec!["1", "3"]),
        ("id != 2", vec!["1", "3"]),
        ("id > 1", vec!["2", "3"]),
        ("id >= 2 AND id <= 2", vec!["2"]),
        ("id < '2'", vec!["1"]),
        ("name IS NULL", vec!["3"]),
        ("name IS NOT NULL", vec!["1", "2"]),
        ("name = 'alice'", vec!["1"]),
        ("name = 'ALICE'", vec![]),
        ("name > 'b'", vec!["2"]),
        ("name = NULL", vec![]),
        ("flag = true", vec!["1"]),
        ("flag = 0", vec!["2"]),
        ("amount = 12.5", vec!["1"]),
        ("amount < 0", vec!["2"]),
        ("amount >= -3.0000", vec!["1", "2"]),
        ("ts > '2024-05-06 07:08:09'", vec!["1"]),
        ("ts >= '2024-05-06'", vec!["1", "2"]),
        ("id IN (1, 3)", vec!["1", "3"]),
        ("id NOT IN (1, 3)", vec!["2"]),
        // Key lookups (every key column pinned): repeats, absent keys, further conditions.
        ("id IN (3, 1, 1, 7)", vec!["1", "3"]),
        ("id IN ('2', 'x') AND name = 'bob'", vec!["2"]),
        ("id IN (1, 2, 3) AND name IS NULL", vec!["3"]),
        ("id = 2", vec!["2"]),
        ("name LIKE 'a%'", vec!["1"]),
        ("(id > 1) AND name IS NOT NULL", vec!["2"]),
        ("2 < id", vec!["3"]),
        ("id = 'x'", vec![]),
        ("big = 170141183460469231731687303715884105727", vec!["1"]),
        ("id = 99999999999999999999999999999999999999999999", vec![]),
        (
            "id < 99999999999999999999999999999999999999999999",
            vec!["1", "2", "3"],
        ),
    ] {
        assert_eq!(
            ids(rows(
                &mut conn,
                &format!("SELECT id FROM db.t WHERE {filter} ORDER BY id")
            )
            .await),
            expected,
            "{filter}"
        );
    }
    assert_eq!(
        rows(&mut conn, "SELECT COUNT(*) FROM db.t").await,
        vec![vec!["3".to_string()]]
    );
    assert_eq!(
        rows(
            &mut conn,
            "select count(*) from db.t where name is not null"
        )
        .await,
        vec![vec!["2".to_string()]]
    );
    assert_eq!(
        rows(&mut conn, "select count(name), count(1) from db.t").await,
        vec![vec!["2".to_string(), "3".to_string()]]
    );
    assert_eq!(
        rows(&mut conn, "select sum(id), count(*) from db.t where id > 1").await,
        vec![vec!["5".to_string(), "2".to_string()]]
    );
    assert_eq!(
        rows(
            &mut conn,
            "SELECT flag, count(*), sum(id) FROM db.t GROUP BY flag LIMIT 5"
        )
        .await,
        [["NULL", "1", "3"], ["0", "1", "2"], ["1", "1", "1"]]
            .map(|r| r.map(String::from).to_vec())
            .to_vec()
    );
    assert_eq!(
        column_names(&mut conn, "SELECT COUNT(*) FROM db.t").await,
        ["COUNT(*)"]
    );
    // Errors, not wrong answers.
    for (sql, code) in [
        ("SELECT nope FROM db.t", 1064),
        ("SELECT id FROM db.t WHERE nope = 1", 1064),
        ("SELECT id FROM db.t WHERE id = 1 OR id = 2", 1064),
        ("SELECT id FROM db.t WHERE doc = '{}'", 1064),
        ("SELECT id, COUNT(*) FROM db.t", 1064),
        ("SELECT id FROM db.t GROUP BY name", 1064),
        ("SELECT id FROM db.t GROUP BY id ORDER BY id", 1064),
        ("SELECT id FROM db.t GROUP BY id HAVING id > 1", 1064),
        ("SELECT * FROM db.t a JOIN db.t b", 1064),
        ("SELECT id FROM db.nope", 1146),
        ("SELECT id FROM nodb.t", 1049),
        ("SELECT id FROM t", 1046),
        ("SELECT * FROM information_schema.nope", 1146),
        ("SELECT upper('x')", 1064),
        ("INSERT INTO db.t VALUES (1)", 1064),
    ] {
        let (got, message) = fails(&mut conn, sql).await;
        assert_eq!(got, code, "{sql}: {message}");
    }
    let (_, message) = fails(&mut conn, "SELECT id FROM db.nope").await;
    assert_eq!(message, "Unknown table 'db.nope'");
    ok(&mut conn, "TRUNCATE TABLE db.t").await;
    assert_eq!(
        rows(&mut conn, "SELECT COUNT(*) FROM db.t").await,
        vec![vec!["0".to_string()]]
    );
    assert_eq!(h.sim.catalog().row_count("db", "t").unwrap(), 0);
}

#[tokio::test]
async fn hostile_input_is_an_error_never_a_crash() {
    let h = start(Duration::ZERO).await;
    let mut conn = connect(&h).await;
    create_sample(&mut conn).await;
    let inputs = [
        "",
        ";",
        ";;",
        "   ",
        "-- only a comment",
        "/* unterminated",
        "select 'unterminated",
        "select `",
        "select \u{0}",
        "sélect 1",
        "SELECT * FROM db.t WHERE id = -",
        "SELECT * FROM db.t LIMIT 99999999999999999999999",
        "SELECT * FROM db.t ORDER BY 0",
        "SELECT * FROM db.t ORDER BY 99",
        "CREATE TABLE db.x (id ARRAY<ARRAY<INT NOT NULL) PRIMARY KEY(id)",
        "CREATE TABLE db.x (id INT) PRIMARY KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 0",
        "CREATE TABLE db.x (id INT) PRIMARY KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 99999999999",
        "CREATE TABLE db.x (id DECIMAL(99, 2)) PRIMARY KEY(id)",
        "CREATE TABLE db.x (id INT, v INT DEFAULT 'abc') PRIMARY KEY(id)",
        "CREATE TABLE db.x (id INT, __op INT) PRIMARY KEY(id)",
        "ALTER TABLE db.t ADD COLUMN",
        "ALTER TABLE db.t ADD COLUMN ()",
        "SHOW ALTER TABLE ROLLUP",
        "SHOW PROC '/'",
        "DESC db.nope",
        "USE ``",
        "SELECT 1; SELECT 2",
        "KILL 1",
    ];
    for sql in inputs {
        match conn.query_drop(sql).await {
            Err(mysql_async::Error::Server(e)) => {
                assert!(!e.message.is_empty(), "{sql}");
            }
            other => panic!("{sql:?}: {other:?}"),
        }
    }
    // Still serving.
    conn.ping().await.unwrap();
    assert_eq!(
        rows(&mut conn, "SELECT 1").await,
        vec![vec!["1".to_string()]]
    );
    // Raw garbage on a fresh socket must not take the server down.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for garbage in [
        &b"\x00\x00\x00"[..],
        &b"\xff\xff\xff\x01\x00"[..],
        &b"\x05\x00\x00\x01\x00\x00\x00\x00\x00"[..],
        &b"GET / HTTP/1.1\r\n\r\n"[..],
    ] {
        let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        let mut greeting = [0u8; 4];
        s.read_exact(&mut greeting).await.unwrap();
        let _ = s.write_all(garbage).await;
        drop(s);
    }
    let mut again = connect(&h).await;
    assert_eq!(
        rows(&mut again, "SELECT 1").await,
        vec![vec!["1".to_string()]]
    );
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(serve(
        listener,
        sim.catalog(),
        ("root".to_string(), String::new()),
        stop_rx,
    ));
    let mut conn = connect_as(addr, "root", "").await.unwrap();
    conn.ping().await.unwrap();
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returns after shutdown")
        .unwrap();
    assert!(connect_as(addr, "root", "").await.is_err());
    assert!(
        conn.ping().await.is_err(),
        "open connections are closed too"
    );
}

/// The statements starwal's target setup (`src/sink/starrocks/setup.rs`) sends, verbatim in
/// shape: version, database lookup/creation, column lookup, CREATE TABLE, ADD COLUMN + wait,
/// SHOW CREATE TABLE.
#[tokio::test]
async fn starwal_target_setup_statements() {
    let h = start(Duration::from_millis(150)).await;
    let mut conn = connect(&h).await;
    assert_eq!(
        rows(&mut conn, "select current_version()").await[0][0],
        "4.0.2-sim"
    );
    assert!(rows(
        &mut conn,
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'analytics'"
    )
    .await
    .is_empty());
    ok(&mut conn, "CREATE DATABASE IF NOT EXISTS `analytics`").await;
    let columns = "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_KEY FROM information_schema.COLUMNS \
                   WHERE TABLE_SCHEMA = 'analytics' AND TABLE_NAME = 'sales_o\\'rders' ORDER BY ORDINAL_POSITION";
    assert!(rows(&mut conn, columns).await.is_empty());
    ok(
        &mut conn,
        "CREATE TABLE IF NOT EXISTS `analytics`.`sales_o'rders` (`id` BIGINT NOT NULL, `region` VARCHAR(32) NOT NULL, \
         `note` VARCHAR(1048576) NULL, `tags` ARRAY<VARCHAR(400)> NULL, `price` DECIMAL(38,9) NULL, `ok` BOOLEAN NULL, \
         `at` DATETIME NULL, `doc` JSON NULL, `_starwal_op` VARCHAR(8) NULL, `_starwal_deleted` BOOLEAN NULL, \
         `_starwal_synced_at` DATETIME NULL, `_starwal_lsn` BIGINT NULL) PRIMARY KEY(`id`, `region`) \
         DISTRIBUTED BY HASH(`id`, `region`) PROPERTIES (\"enable_persistent_index\" = \"true\")",
    )
    .await;
    let found = rows(&mut conn, columns).await;
    assert_eq!(found.len(), 12);
    assert_eq!(found[1], ["region", "varchar", "PRI"].map(String::from));
    assert_eq!(found[3], ["tags", "array", ""].map(String::from));
    assert_eq!(found[5], ["ok", "tinyint", ""].map(String::from));
    ok(
        &mut conn,
        "ALTER TABLE `analytics`.`sales_o'rders` ADD COLUMN `extra` INT NULL, ADD COLUMN `more` DOUBLE NULL",
    )
    .await;
    let wait = "SHOW ALTER TABLE COLUMN FROM `analytics` WHERE TableName = 'sales_o\\'rders' ORDER BY JobId DESC LIMIT 1";
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows: Vec<Row> = conn.query(wait).await.unwrap();
        let state = rows.first().and_then(|row| {
            let i = row
                .columns_ref()
                .iter()
                .position(|c| c.name_str().eq_ignore_ascii_case("State"))?;
            row.get::<Option<String>, _>(i).flatten()
        });
        if state.as_deref() == Some("FINISHED") {
            break;
        }
        assert!(Instant::now() < deadline, "{state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows(&mut conn, columns).await.len(), 14);
    let ddl = rows(&mut conn, "SHOW CREATE TABLE `analytics`.`sales_o'rders`").await[0][1].clone();
    assert!(!ddl
        .replace(' ', "")
        .contains("\"fast_schema_evolution\"=\"false\""));
    assert!(ddl.contains("`tags` array<varchar(400)> NULL"), "{ddl}");
    assert!(ddl.contains("DISTRIBUTED BY HASH(`id`, `region`)"), "{ddl}");
}

// ---- the mariadb CLI, exactly as a user runs it ----

fn mariadb_cli() -> &'static str {
    assert!(
        Path::new(MARIADB).exists(),
        "the `mariadb` CLI is missing: install it with `apt-get install -y mariadb-client` \
         (these tests check the MySQL side against a client we did not write)"
    );
    MARIADB
}

/// Runs `mariadb -h 127.0.0.1 -P PORT -u root -pPASSWORD [extra...] -e SQL`; (status ok, stdout,
/// stderr).
async fn mariadb(
    addr: SocketAddr,
    password: &str,
    extra: &[&str],
    sql: &str,
) -> (bool, String, String) {
    let cli = mariadb_cli();
    let mut args = vec![
        "-h".to_string(),
        "127.0.0.1".to_string(),
        "-P".to_string(),
        addr.port().to_string(),
        "-u".to_string(),
        "root".to_string(),
        format!("-p{password}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("-e".to_string());
    args.push(sql.to_string());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(cli)
            .args(&args)
            .env("HOME", std::env::temp_dir())
            .output()
    })
    .await
    .unwrap()
    .expect("mariadb runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_version_and_wrong_password() {
    let h = start(Duration::ZERO).await;
    let (ok, stdout, stderr) = mariadb(h.addr, PASSWORD, &[], "select current_version()").await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "current_version()\n4.0.2-sim\n");
    let (ok, _, stderr) = mariadb(h.addr, "wrong", &[], "select 1").await;
    assert!(!ok);
    assert!(
        stderr.contains(
            "ERROR 1045 (28000): Access denied for user 'root'@'127.0.0.1' (using password: YES)"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_create_desc_round_trip() {
    let h = start(Duration::ZERO).await;
    let (ok, stdout, stderr) = mariadb(
        h.addr,
        PASSWORD,
        &[],
        "CREATE DATABASE IF NOT EXISTS demo; \
         CREATE TABLE demo.orders (id BIGINT NOT NULL, region VARCHAR(32) NOT NULL, amount DECIMAL(10,2) NULL, note STRING COMMENT 'free text') \
         PRIMARY KEY(id, region) DISTRIBUTED BY HASH(id) BUCKETS 2 PROPERTIES (\"replication_num\" = \"1\"); \
         DESC demo.orders;",
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "Field\tType\tNull\tKey\tDefault\tExtra\n\
         id\tbigint(20)\tNO\ttrue\tNULL\t\n\
         region\tvarchar(32)\tNO\ttrue\tNULL\t\n\
         amount\tdecimal(10,2)\tYES\tfalse\tNULL\t\n\
         note\tvarchar(65533)\tYES\tfalse\tNULL\t\n"
    );
    // Connecting with a database, the table listing and SHOW CREATE TABLE (raw, -r).
    let (ok, stdout, stderr) = mariadb(
        h.addr,
        PASSWORD,
        &["-r", "-N", "demo"],
        "show tables; show create table orders",
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(
            "orders\norders\tCREATE TABLE `orders` (\n  `id` bigint(20) NOT NULL COMMENT \"\",\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("PRIMARY KEY(`id`, `region`)"), "{stdout}");
    assert!(
        stdout.contains("\"fast_schema_evolution\" = \"true\""),
        "{stdout}"
    );
    // Errors print as a StarRocks user would see them, with a non-zero exit.
    let (ok, _, stderr) = mariadb(
        h.addr,
        PASSWORD,
        &[],
        "CREATE TABLE demo.bad (v INT, id BIGINT NOT NULL) PRIMARY KEY(id)",
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("ERROR 1064 (HY000) at line 1: Getting analyzing error. Detail message: Key columns should be a ordered prefix of the schema."),
        "{stderr}"
    );
    let (ok, _, stderr) = mariadb(h.addr, PASSWORD, &[], "select * from demo.nope").await;
    assert!(!ok);
    assert!(
        stderr.contains("ERROR 1146 (42S02) at line 1: Unknown table 'demo.nope'"),
        "{stderr}"
    );
}

/// Thousands of random token soups through the parser and executor: every one must end in an
/// answer (OK, rows or ERR), none in a panic.
#[tokio::test]
async fn random_statements_never_panic() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let server = std::sync::Arc::new(super::Server {
        catalog: sim.catalog(),
        options: MysqlOptions {
            alter_delay: Duration::ZERO,
            ..MysqlOptions::default()
        },
        jobs: Default::default(),
        local_addr: None,
        started_at: super::now_text(),
        started: Instant::now(),
        next_connection_id: Default::default(),
    });
    let mut session = super::exec::Session {
        user: "root".into(),
        host: "127.0.0.1".into(),
        db: None,
        connection_id: 1,
        user_vars: Default::default(),
    };
    let setup = [
        "CREATE DATABASE IF NOT EXISTS db",
        "CREATE TABLE IF NOT EXISTS db.t (id INT, name VARCHAR(10), v DECIMAL(5,2), a ARRAY<INT>, j JSON, d DATE) PRIMARY KEY(id)",
    ];
    let mut answered = 0;
    let vocabulary = [
        "SELECT",
        "*",
        "FROM",
        "WHERE",
        "db.t",
        "t",
        "db",
        "id",
        "name",
        "v",
        "a",
        "j",
        "d",
        "=",
        "<>",
        "<",
        ">=",
        "<=>",
        "'x'",
        "'2024-01-01'",
        "1",
        "-1",
        "1.5",
        "NULL",
        "TRUE",
        "AND",
        "OR",
        "NOT",
        "IS",
        "IN",
        "LIKE",
        "ORDER",
        "BY",
        "DESC",
        "LIMIT",
        "OFFSET",
        ",",
        "(",
        ")",
        ";",
        ".",
        "CREATE",
        "TABLE",
        "DATABASE",
        "IF",
        "EXISTS",
        "PRIMARY",
        "KEY",
        "DISTRIBUTED",
        "HASH",
        "BUCKETS",
        "PROPERTIES",
        "\"k\"",
        "INT",
        "VARCHAR(3)",
        "DECIMAL(5,2)",
        "ARRAY<INT>",
        "TIME",
        "ALTER",
        "ADD",
        "COLUMN",
        "DROP",
        "AFTER",
        "FIRST",
        "SHOW",
        "TABLES",
        "DATABASES",
        "DESCRIBE",
        "TRUNCATE",
        "USE",
        "information_schema.COLUMNS",
        "information_schema",
        "COUNT(*)",
        "COUNT",
        "@@version",
        "@a",
        "SET",
        "`q`",
        "'é'",
        "/*",
        "*/",
        "-- c\n",
        "CANCEL",
        "VARIABLES",
        "CURRENT_VERSION()",
        "AS",
        "DEFAULT",
        "COMMENT",
        "NOT NULL",
        "GROUP",
        "JOIN",
        "ENGINE=OLAP",
        "\u{0}",
        "é",
        "99999999999999999999999999999999999999999",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..4000 {
        let len = 1 + (next() % 14) as usize;
        let sql: Vec<&str> = (0..len)
            .map(|_| vocabulary[(next() % vocabulary.len() as u64) as usize])
            .collect();
        let sql = sql.join(" ");
        for statement in setup {
            super::exec::execute(&server, &mut session, statement).unwrap();
        }
        // Any result is fine; a panic fails the test.
        if super::exec::execute(&server, &mut session, &sql).is_ok() {
            answered += 1;
        }
        if session.db.as_deref() != Some("db") && next() % 4 == 0 {
            session.db = Some("db".into());
        }
    }
    assert!(answered > 0, "some random statements are valid");
}
