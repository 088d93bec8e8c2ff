//! Issue 13 item 6: TLS to Postgres accepts what libpq accepts. A dedicated cluster serves, in
//! turn, the self-signed certificate most people make (`openssl req -x509 -newkey rsa:2048 -nodes
//! -subj /CN=localhost`: CA:TRUE, no subjectAltName), an expired self-signed one, and the
//! harness' CA-signed one. Each case connects three ways — the replication connection, the SQL
//! connection, and psql (libpq) as the reference — and all three must agree with the expectation.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use starwal::postgres::conninfo::ConnInfo;
use starwal::postgres::replication::ReplicationConnection;
use starwal::postgres::tls::connect_sql;

use crate::harness::{Cluster, ClusterOptions, Role, TestDatabase};

/// Runs `openssl` in `dir`; arguments are split on whitespace (the file names here have none).
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run openssl (apt-get install openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The certificates of this test, written into the cluster's data directory (where
/// `ssl_cert_file` finds them by a relative name) and owned by the server's OS user.
struct Certs {
    data: PathBuf,
}

impl Certs {
    /// `pinned`: the issue's certificate. `other`: the same kind, a different key (what a server
    /// that regenerated its certificate presents). `expired`: the same kind, valid only in
    /// January 2020 (`openssl req` cannot back-date, `openssl ca -selfsign` can).
    fn make(cluster: &Cluster) -> Certs {
        let data = cluster.data_dir();
        let rsa = "-newkey rsa:2048 -nodes -subj /CN=localhost";
        for name in ["pinned", "other"] {
            openssl(
                &data,
                &format!("req -x509 {rsa} -days 30 -keyout {name}.key -out {name}.crt"),
            );
        }
        fs::write(
            data.join("expired-ca.cnf"),
            "[ca]\ndefault_ca = selfsign\n[selfsign]\ndatabase = expired-index.txt\n\
             new_certs_dir = .\nserial = expired-serial\ndefault_md = sha256\npolicy = any\n\
             x509_extensions = v3\n[any]\ncommonName = supplied\n\
             [v3]\nbasicConstraints = critical,CA:TRUE\n",
        )
        .unwrap();
        fs::write(data.join("expired-index.txt"), "").unwrap();
        fs::write(data.join("expired-serial"), "01\n").unwrap();
        openssl(
            &data,
            &format!("req -new {rsa} -keyout expired.key -out expired.csr"),
        );
        openssl(
            &data,
            "ca -batch -notext -config expired-ca.cnf -selfsign -keyfile expired.key \
             -in expired.csr -startdate 20200101000000Z -enddate 20200201000000Z -out expired.crt",
        );

        // The premise of the issue: CA:TRUE and no subjectAltName.
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in", "pinned.crt"])
            .current_dir(&data)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("CA:TRUE"), "{text}");
        assert!(!text.contains("Subject Alternative Name"), "{text}");

        let owner = fs::metadata(&data).unwrap();
        for entry in fs::read_dir(&data).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if ["pinned", "other", "expired"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
            {
                std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
                if name.ends_with(".key") {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
                }
            }
        }
        Certs { data }
    }

    fn crt(&self, name: &str) -> PathBuf {
        self.data.join(format!("{name}.crt"))
    }
}

/// Makes the server present `<name>.crt` to new connections, and waits until it does.
fn serve(cluster: &Cluster, name: &str) {
    let admin = cluster.database("postgres");
    admin.psql(&format!(
        "ALTER SYSTEM SET ssl_cert_file = '{name}.crt';\n\
         ALTER SYSTEM SET ssl_key_file = '{name}.key';\n\
         SELECT pg_reload_conf();"
    ));
    // The postmaster reloads the configuration and then the TLS context in one go, before it
    // forks the next backend: once a new session shows the setting, new handshakes use the file.
    let mut shown = String::new();
    for _ in 0..200 {
        shown = admin.psql("SHOW ssl_cert_file");
        if shown == format!("{name}.crt") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(shown, format!("{name}.crt"));
    let log = cluster.server_log();
    assert!(
        !log.contains("SSL configuration was not reloaded"),
        "the server kept its previous certificate:\n{log}"
    );
}

/// The whole cause chain of an error, so a test can look for the reason wherever it sits.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// psql, i.e. libpq with OpenSSL, on `url`: `Err(stderr)` when it cannot connect.
fn psql(cluster: &Cluster, url: &str) -> Result<(), String> {
    // The newest libpq at hand: the system's psql (PG 15 on Debian 12) before the cluster's own,
    // since libpq before 15 does not match IP addresses against subjectAltName.
    let system = Path::new("/usr/bin/psql");
    let bin = if system.is_file() {
        system.to_path_buf()
    } else {
        let own = cluster.pgbin().join("psql");
        if own.is_file() {
            own
        } else {
            "psql".into()
        }
    };
    let mut cmd = Command::new(bin);
    cmd.args(["-X", "-A", "-t", "-c", "SELECT 1", url])
        .stdin(Stdio::null())
        // No ~/.postgresql client certificate or root.crt of the caller's.
        .env("HOME", cluster.dir());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().expect("run psql");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Connects with `url` through the replication connection, the SQL connection and psql, and
/// checks that each one accepts (`Ok`) or refuses the server with the expected outcome; for
/// starwal, a refusal must name `reason`.
async fn expect(cluster: &Cluster, url: &str, expected: Result<(), &str>) {
    let info = ConnInfo::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let replication = match ReplicationConnection::connect(&info).await {
        Ok(mut conn) => {
            assert!(conn.is_tls(), "{url}");
            conn.identify_system().await.unwrap();
            conn.close().await;
            Ok(())
        }
        Err(err) => Err(chain(&err)),
    };
    let sql = match connect_sql(&info).await {
        Ok(client) => {
            let ssl: bool = client
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert!(ssl, "{url}");
            Ok(())
        }
        Err(err) => Err(chain(&err)),
    };
    let libpq = psql(cluster, url);
    match expected {
        Ok(()) => {
            assert_eq!(replication, Ok(()), "replication connection, {url}");
            assert_eq!(sql, Ok(()), "SQL connection, {url}");
            assert_eq!(libpq, Ok(()), "psql, {url}");
        }
        Err(reason) => {
            for (what, outcome) in [("replication connection", replication), ("SQL", sql)] {
                let err = outcome.expect_err(&format!("{what} accepted {url}"));
                assert!(err.contains(reason), "{what}, {url}: {err}");
            }
            assert!(libpq.is_err(), "psql accepted {url}, starwal refused it");
        }
    }
}

/// `db`'s URL with `host` and TLS parameters `params` (`sslmode=…&sslrootcert=…`).
fn url(db: &TestDatabase, host: &str, params: &str) -> String {
    db.url(Role::Scram, "disable")
        .replace("127.0.0.1", host)
        .replace("sslmode=disable", params)
}

fn roots(mode: &str, file: &Path) -> String {
    format!("sslmode={mode}&sslrootcert={}", file.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_item6_tls_accepts_what_libpq_accepts() {
    let cluster = Cluster::start(ClusterOptions::default());
    let db = cluster.create_database("tls_pinned").await;
    let certs = Certs::make(&cluster);
    let pinned = certs.crt("pinned");
    let other = certs.crt("other");
    let expired = certs.crt("expired");
    let harness_ca = cluster.ca_cert_path();
    let bundle = certs.data.join("bundle.crt");
    fs::write(
        &bundle,
        [fs::read(&harness_ca).unwrap(), fs::read(&pinned).unwrap()].concat(),
    )
    .unwrap();

    // The self-signed certificate, itself the root.
    serve(&cluster, "pinned");
    for (host, params, expected) in [
        ("localhost", roots("verify-full", &pinned), Ok(())),
        ("localhost", roots("verify-full", &bundle), Ok(())),
        // verify-ca checks the certificate, not the host name.
        ("127.0.0.1", roots("verify-ca", &pinned), Ok(())),
        // require with a root certificate verifies like verify-ca (libpq).
        ("127.0.0.1", roots("require", &pinned), Ok(())),
        // No subjectAltName: the host is compared with the CN.
        (
            "127.0.0.1",
            roots("verify-full", &pinned),
            Err("CN=localhost"),
        ),
        // Not the certificate in sslrootcert.
        (
            "localhost",
            roots("verify-full", &other),
            Err("self-signed and not in sslrootcert"),
        ),
        (
            "localhost",
            roots("verify-ca", &other),
            Err("self-signed and not in sslrootcert"),
        ),
        (
            "localhost",
            roots("verify-full", &harness_ca),
            Err("self-signed and not in sslrootcert"),
        ),
    ] {
        expect(&cluster, &url(&db, host, &params), expected).await;
    }

    // A pinned certificate keeps its dates.
    serve(&cluster, "expired");
    for mode in ["verify-full", "verify-ca"] {
        let url = url(&db, "localhost", &roots(mode, &expired));
        expect(&cluster, &url, Err("expired")).await;
    }
    // The encryption-only mode still connects: the refusals above were the certificate's.
    expect(&cluster, &url(&db, "localhost", "sslmode=require"), Ok(())).await;

    // The CA-signed certificate (subjectAltName localhost, 127.0.0.1) as before.
    serve(&cluster, "server");
    for (host, params, expected) in [
        ("localhost", roots("verify-full", &harness_ca), Ok(())),
        ("127.0.0.1", roots("verify-full", &harness_ca), Ok(())),
        ("localhost", roots("verify-full", &bundle), Ok(())),
        ("127.0.0.1", roots("verify-ca", &harness_ca), Ok(())),
        (
            "localhost",
            roots("verify-full", &pinned),
            Err("UnknownIssuer"),
        ),
    ] {
        expect(&cluster, &url(&db, host, &params), expected).await;
    }
}
