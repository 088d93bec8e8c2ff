//! Proves the harness: clusters start, databases are isolated, roles, pg_hba and TLS behave as
//! documented in `harness`.

use std::process::{Command, Stdio};

use crate::harness::{Cluster, ClusterOptions, Role};

/// Runs psql (the cluster's) against `conninfo` and returns (success, stdout, stderr).
fn psql_url(cluster: &Cluster, conninfo: &str, sql: &str) -> (bool, String, String) {
    let psql = cluster.pgbin().join("psql");
    let psql = if psql.is_file() { psql } else { "psql".into() };
    let out = Command::new(psql)
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
            conninfo,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_shared_cluster_answers() {
    let cluster = Cluster::shared();
    assert!(cluster.version_num() >= 140000, "{}", cluster.version_num());
    let db = cluster.create_database("smoke").await;

    let su = db.superuser_client().await;
    let version: String = su.query_one("select version()", &[]).await.unwrap().get(0);
    assert!(version.starts_with("PostgreSQL "), "{version}");
    let num: String = su
        .query_one("show server_version_num", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(num.parse::<u32>().unwrap(), cluster.version_num());
    for (setting, want) in [
        ("wal_level", "logical"),
        ("ssl", "on"),
        ("max_replication_slots", "256"),
    ] {
        let got: String = su
            .query_one(&format!("show {setting}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(got, want, "{setting}");
    }

    // The owner can create tables and publications.
    let owner = db.owner_client().await;
    owner
        .batch_execute(
            "create table t (id int primary key, v text); create publication p for table t;",
        )
        .await
        .unwrap();
    assert_eq!(
        db.psql("select pubname, current_user from pg_publication"),
        "p|postgres"
    );
    assert_eq!(
        db.psql("insert into t values (1, 'a'); select count(*) from t;"),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_databases_are_distinct() {
    let cluster = Cluster::shared();
    let a = cluster.create_database("smoke_a").await;
    let b = cluster.create_database("smoke_a").await;
    assert_ne!(a.name, b.name);

    a.psql("create table only_in_a (id int)");
    let ca = a.owner_client().await;
    let cb = b.owner_client().await;
    let name_a: String = ca
        .query_one("select current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    let name_b: String = cb
        .query_one("select current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (name_a.as_str(), name_b.as_str()),
        (a.name.as_str(), b.name.as_str())
    );
    let count = |db: &crate::harness::TestDatabase| {
        db.psql("select count(*) from pg_class where relname = 'only_in_a'")
    };
    assert_eq!(count(&a), "1");
    assert_eq!(count(&b), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_dedicated_cluster_with_extra_conf() {
    let shared_port = Cluster::shared().port();
    let cluster = Cluster::start(ClusterOptions {
        extra_conf: "wal_level = replica\n".into(),
        ..Default::default()
    });
    assert_ne!(cluster.port(), shared_port);
    let dir = cluster.dir().to_owned();
    let db = cluster.create_database("dedicated").await;
    let su = db.superuser_client().await;
    let level: String = su.query_one("show wal_level", &[]).await.unwrap().get(0);
    assert_eq!(level, "replica");
    drop(su);
    drop(cluster);
    assert!(!dir.exists(), "{} not removed", dir.display());
}

/// Every role logs in over TCP (plain and `replication=database`, which needs its own pg_hba
/// match), `norepl` is refused replication, and TLS verifies against the right CA only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_roles_hba_and_tls() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("smoke_roles").await;
    let ca = cluster.ca_cert_path();
    let other_ca = cluster.other_ca_cert_path();

    for role in Role::ALL {
        let client = db.client(role).await;
        let user: String = client
            .query_one("select current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(user, role.user());

        let url = format!("{}&replication=database", db.url(role, "disable"));
        let (ok, out, err) = psql_url(cluster, &url, "IDENTIFY_SYSTEM");
        if role == Role::NoReplication {
            assert!(
                !ok && err.to_lowercase().contains("replication"),
                "{role:?}: {out} {err}"
            );
        } else {
            assert!(ok, "{role:?} replication=database: {err}");
            assert!(out.ends_with(&format!("|{}", db.name)), "{role:?}: {out}");
        }
    }

    let sql = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
    // libpq matches IP addresses against IP SANs only since PG 15.
    let hosts: &[&str] = if cluster.major() >= 15 {
        &["localhost", "127.0.0.1"]
    } else {
        &["localhost"]
    };
    for host in hosts {
        let url = db
            .url(Role::Scram, "verify-full")
            .replace("127.0.0.1", host);
        let (ok, out, err) = psql_url(cluster, &format!("{url}&sslrootcert={}", ca.display()), sql);
        assert!(ok && out == "t", "verify-full {host}: {out} {err}");
    }
    let url = format!(
        "{}&sslrootcert={}",
        db.url(Role::Scram, "verify-ca"),
        other_ca.display()
    );
    let (ok, _, err) = psql_url(cluster, &url, sql);
    assert!(
        !ok && err.contains("certificate verify failed"),
        "other CA accepted: {err}"
    );
    let (ok, out, err) = psql_url(cluster, &db.url(Role::Md5, "disable"), sql);
    assert!(ok && out == "f", "sslmode=disable: {out} {err}");
}
