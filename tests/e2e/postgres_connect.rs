//! The replication connection against a real server: every authentication method, a wrong
//! password, TLS with each sslmode (verify-full against the harness CA, a foreign CA refused),
//! and the replication commands (IDENTIFY_SYSTEM, slot creation in each version's syntax).

use starwal::postgres::conninfo::ConnInfo;
use starwal::postgres::replication::{ReplicationConnection, ReplicationError, SlotSnapshot};
use starwal::postgres::tls::connect_sql;

use crate::harness::{unique_name, Cluster, Role};

fn conninfo(url: &str) -> ConnInfo {
    ConnInfo::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connect_every_auth_method() {
    let db = Cluster::shared().create_database("auth").await;
    for role in [Role::Scram, Role::Md5, Role::Cleartext, Role::Trust] {
        let info = conninfo(&db.url(role, "disable"));
        let mut conn = ReplicationConnection::connect(&info)
            .await
            .unwrap_or_else(|e| panic!("{role:?}: {e}"));
        assert_eq!(conn.server_version_num() / 10000, db.version_num() / 10000);
        let identity = conn.identify_system().await.unwrap();
        assert_eq!(
            identity.dbname.as_deref(),
            Some(db.name.as_str()),
            "{role:?}"
        );
        assert!(identity.xlogpos.0 > 0);
        conn.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv10_wrong_password_is_refused_without_echoing_it() {
    let db = Cluster::shared().create_database("badpw").await;
    let url = db
        .url(Role::Scram, "disable")
        .replace("repl-secret", "not-the-password");
    let err = ReplicationConnection::connect(&conninfo(&url))
        .await
        .unwrap_err();
    let server = err.server_error().expect("a server error");
    assert_eq!(server.code, "28P01", "{err}");
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("not-the-password"), "{err}");

    let url = db.url(Role::Md5, "disable").replace("md5-secret", "nope");
    let err = ReplicationConnection::connect(&conninfo(&url))
        .await
        .unwrap_err();
    assert_eq!(
        err.server_error().map(|e| e.code.as_str()),
        Some("28P01"),
        "{err}"
    );

    // No password at all for a role that needs one.
    let url = db.url(Role::Scram, "disable").replace(":repl-secret", "");
    let err = ReplicationConnection::connect(&conninfo(&url))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReplicationError::PasswordRequired { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv10_tls_modes() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("tls").await;
    let ca = cluster.ca_cert_path();
    let other_ca = cluster.other_ca_cert_path();
    let base = db.url(Role::Scram, "disable");
    let with = |params: &str| base.replace("sslmode=disable", params);

    for (params, expect_tls) in [
        ("sslmode=disable".to_owned(), false),
        ("sslmode=prefer".to_owned(), true),
        ("sslmode=require".to_owned(), true),
        (
            format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
            true,
        ),
        (
            format!("sslmode=verify-full&sslrootcert={}", ca.display()),
            true,
        ),
    ] {
        let info = conninfo(&with(&params));
        let mut conn = ReplicationConnection::connect(&info)
            .await
            .unwrap_or_else(|e| panic!("{params}: {e}"));
        assert_eq!(conn.is_tls(), expect_tls, "{params}");
        conn.identify_system().await.unwrap();
        conn.close().await;
        // Ordinary SQL follows the same rules.
        let client = connect_sql(&info)
            .await
            .unwrap_or_else(|e| panic!("{params}: {e}"));
        let ssl: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(ssl, expect_tls, "SQL connection with {params}");
    }

    // A certificate from another CA is refused by both verify modes.
    for mode in ["verify-ca", "verify-full"] {
        let info = conninfo(&with(&format!(
            "sslmode={mode}&sslrootcert={}",
            other_ca.display()
        )));
        let err = ReplicationConnection::connect(&info).await.unwrap_err();
        assert!(
            matches!(err, ReplicationError::TlsHandshake { .. }),
            "{mode}: {err}"
        );
        assert!(
            connect_sql(&info).await.is_err(),
            "SQL connection with {mode}"
        );
    }

    // verify-full checks the host name: the certificate names localhost and 127.0.0.1 only.
    let info = conninfo(
        &with(&format!("sslmode=verify-full&sslrootcert={}", ca.display()))
            .replace("127.0.0.1", "127.0.0.2"),
    );
    if let Err(err) = ReplicationConnection::connect(&info).await {
        // Either the name mismatch (server reachable on 127.0.0.2) or no server there at all.
        assert!(
            matches!(
                err,
                ReplicationError::TlsHandshake { .. } | ReplicationError::Connect { .. }
            ),
            "{err}"
        );
    } else {
        panic!("verify-full accepted a certificate for another host name");
    }

    // A missing CA file is named in the error.
    let info = conninfo(&with("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"));
    let err = ReplicationConnection::connect(&info).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connect_creates_slots_in_the_version_syntax() {
    let db = Cluster::shared().create_database("slotsyntax").await;
    let info = conninfo(&db.url(Role::Scram, "disable"));
    let mut conn = ReplicationConnection::connect(&info).await.unwrap();
    let permanent = unique_name("perm");
    let created = conn
        .create_logical_slot(&permanent, false, SlotSnapshot::Nothing)
        .await
        .unwrap();
    assert_eq!(created.name, permanent);
    assert!(created.snapshot_name.is_none());
    let temporary = unique_name("temp");
    let exported = conn
        .create_logical_slot(&temporary, true, SlotSnapshot::Export)
        .await
        .unwrap();
    assert!(exported.snapshot_name.is_some());
    assert_eq!(
        db.psql(&format!(
            "select slot_name || ':' || temporary from pg_replication_slots where slot_name in ('{permanent}', '{temporary}') order by 1"
        )),
        format!("{permanent}:false\n{temporary}:true")
    );
    // A server error keeps the connection usable.
    let err = conn
        .create_logical_slot(&permanent, false, SlotSnapshot::Nothing)
        .await
        .unwrap_err();
    assert_eq!(err.server_error().unwrap().code, "42710", "{err}");
    conn.drop_slot(&permanent).await.unwrap();
    conn.close().await;
    // The temporary slot went away with the connection.
    let mut remaining = String::from("?");
    for _ in 0..50 {
        remaining = db.psql(&format!(
            "select count(*) from pg_replication_slots where slot_name in ('{permanent}', '{temporary}')"
        ));
        if remaining == "0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(remaining, "0");
}
