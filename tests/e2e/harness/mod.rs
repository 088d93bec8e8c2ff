//! Throwaway PostgreSQL clusters for the end-to-end tests.
//!
//! * [`Cluster::shared`] starts one cluster per test binary (lazily, on first use) and stops it
//!   when the process exits; every test takes its own database from it with
//!   [`Cluster::create_database`].
//! * [`Cluster::start`] starts a dedicated cluster with extra `postgresql.conf` lines (for
//!   `wal_level = replica`, `max_slot_wal_keep_size`, restarts…); it is stopped on drop.
//! * [`standby::Standby::attach`] makes a streaming standby of such a cluster with
//!   `pg_basebackup` (failover and standby-decoding tests).
//!
//! Binaries: `$STARWAL_TEST_PGBIN` if set, else the newest `/usr/lib/postgresql/*/bin`.
//! When the tests run as root the server runs as the OS user `postgres` (created if missing).
//! Each cluster lives in `/tmp/starwal-test-<pid>-<n>/` (data dir, unix socket, `server.log`,
//! `tls/`), removed when the cluster stops. `STARWAL_TEST_KEEP=1` keeps the directory (server
//! stopped) for post-mortems. A detached watchdog stops the server and removes the directory if
//! the test process dies without cleaning up (SIGKILL, abort).
//!
//! Server settings: `wal_level = logical`, 64 slots / WAL senders, `max_connections = 300`,
//! `fsync = off`, `ssl = on` (server cert for `localhost` / `127.0.0.1` signed by a per-cluster
//! test CA, see [`Cluster::ca_cert_path`]), `password_encryption = scram-sha-256`,
//! `max_prepared_transactions = 20`, `logical_decoding_work_mem = 64kB`,
//! `log_replication_commands = on`, listening on 127.0.0.1 only.
//!
//! Roles (TCP from 127.0.0.1; each has a `host all` and a `host replication` line in pg_hba,
//! because `replication=database` connections match on the database name): see [`Role`].
#![allow(dead_code)]

pub mod agent;
pub mod seeded;
pub mod standby;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// OS user the server runs as when the tests run as root.
const OS_USER: &str = "postgres";
/// Name of the database superuser (trust over the unix socket and TCP from 127.0.0.1).
pub const SUPERUSER: &str = "postgres";

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static SHARED: OnceLock<Cluster> = OnceLock::new();
static AT_EXIT: Once = Once::new();

/// A login role of the test clusters, one per authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `repl` / `repl-secret`, SCRAM-SHA-256, REPLICATION; owner of every [`TestDatabase`].
    Scram,
    /// `repl_md5` / `md5-secret`, md5 (stored as an md5 hash), REPLICATION.
    Md5,
    /// `repl_trust`, no password (`trust`), REPLICATION.
    Trust,
    /// `repl_clear` / `clear-secret`, method `password` (cleartext on the wire), REPLICATION.
    Cleartext,
    /// `norepl` / `norepl-secret`, SCRAM, LOGIN but **no** REPLICATION.
    NoReplication,
    /// `postgres`, superuser, `trust`.
    Superuser,
}

impl Role {
    /// Every role, for table-driven tests.
    pub const ALL: [Role; 6] = [
        Role::Scram,
        Role::Md5,
        Role::Trust,
        Role::Cleartext,
        Role::NoReplication,
        Role::Superuser,
    ];

    /// The database user name.
    pub fn user(self) -> &'static str {
        match self {
            Role::Scram => "repl",
            Role::Md5 => "repl_md5",
            Role::Trust => "repl_trust",
            Role::Cleartext => "repl_clear",
            Role::NoReplication => "norepl",
            Role::Superuser => SUPERUSER,
        }
    }

    /// The password, `None` for the trust roles.
    pub fn password(self) -> Option<&'static str> {
        match self {
            Role::Scram => Some("repl-secret"),
            Role::Md5 => Some("md5-secret"),
            Role::Cleartext => Some("clear-secret"),
            Role::NoReplication => Some("norepl-secret"),
            Role::Trust | Role::Superuser => None,
        }
    }
}

/// Options for [`Cluster::start`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Lines appended last to `postgresql.conf`, so they override the harness defaults
    /// (e.g. `"wal_level = replica\n"` or `"max_slot_wal_keep_size = 1MB\n"`).
    pub extra_conf: String,
    /// Binary directory; default `$STARWAL_TEST_PGBIN` or the newest `/usr/lib/postgresql/*/bin`.
    pub pgbin: Option<PathBuf>,
    /// Make the data directory with `pg_basebackup` from a running primary instead of `initdb`
    /// (a streaming standby, see [`standby`]); roles and TLS material come with the copy.
    pub base_backup: Option<standby::BaseBackup>,
}

/// A running throwaway PostgreSQL cluster.
#[derive(Debug)]
pub struct Cluster {
    pgbin: PathBuf,
    dir: PathBuf,
    port: u16,
    version_num: u32,
    run_as: Option<&'static str>,
    watchdog: Mutex<Option<Child>>,
    stopped: AtomicBool,
}

/// A database of a [`Cluster`], owned by `repl` ([`Role::Scram`]). Plain data: cloneable and
/// usable after the `Cluster` borrow ends (but not after the cluster stops).
#[derive(Debug, Clone)]
pub struct TestDatabase {
    /// The database name (lower case, unique within the cluster).
    pub name: String,
    port: u16,
    socket_dir: PathBuf,
    psql: PathBuf,
    version_num: u32,
}

/// A unique, lower-case identifier `<prefix>_<n>` (non-alphanumerics become `_`), usable
/// unquoted as a database, slot or publication name. Unique within the test process, and so
/// within its clusters.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut p: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if !p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        p.insert_str(0, "t_");
    }
    format!("{p}_{n}")
}

impl Cluster {
    /// The cluster shared by all tests of this binary: started on first call (blocking, about
    /// 1–2 s), stopped (`pg_ctl stop -m immediate`) and its directory removed at process exit.
    /// Don't stop, restart or reconfigure it; use [`Cluster::start`] for that.
    pub fn shared() -> &'static Cluster {
        SHARED.get_or_init(|| {
            let cluster = Cluster::start(ClusterOptions::default());
            AT_EXIT.call_once(|| {
                // SAFETY: registers a plain `extern "C" fn()` that never unwinds.
                let rc = unsafe { libc::atexit(stop_shared_at_exit) };
                assert_eq!(rc, 0, "atexit failed");
            });
            cluster
        })
    }

    /// Starts a dedicated cluster (initdb + TLS material + start + roles), blocking. Panics with
    /// the server log on failure. Stopped with `-m immediate` and removed on drop.
    pub fn start(opts: ClusterOptions) -> Cluster {
        let t0 = Instant::now();
        let pgbin = opts.pgbin.unwrap_or_else(default_pgbin);
        if !pgbin.join("initdb").is_file() {
            panic!(
                "no initdb in {}: install PostgreSQL (`apt-get install postgresql`) or set \
                 STARWAL_TEST_PGBIN to a directory holding initdb, pg_ctl and postgres",
                pgbin.display()
            );
        }
        let run_as = if is_root() {
            ensure_os_user(OS_USER);
            Some(OS_USER)
        } else {
            None
        };

        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/starwal-test-{}-{n}", std::process::id()));
        if dir.exists() {
            // Left over by an earlier process with the same pid.
            let _ = fs::remove_dir_all(&dir);
        }
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let mut cluster = Cluster {
            pgbin,
            dir,
            port: 0,
            version_num: 0,
            run_as,
            watchdog: Mutex::new(None),
            stopped: AtomicBool::new(false),
        };
        // From here on, a panic drops `cluster`, which stops the server and removes the dir.
        cluster.chown_dir();
        if let Some(user) = run_as {
            let ok = cluster
                .as_server_user(Path::new("test"))
                .arg("-x")
                .arg(cluster.pgbin.join("postgres"))
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "user {user} cannot execute {}/postgres (every parent directory must be traversable)",
                cluster.pgbin.display()
            );
        }
        cluster.spawn_watchdog();

        let data = cluster.data_dir();
        if let Some(backup) = &opts.base_backup {
            backup.restore(&cluster);
        } else {
            cluster.init_data_dir();
        }
        let base_conf = fs::read_to_string(data.join("postgresql.conf")).unwrap();

        let mut attempt = 0;
        loop {
            attempt += 1;
            cluster.port = free_port();
            let conf = format!(
                "{base_conf}\n# --- starwal test harness ---\nport = {port}\n\
                 unix_socket_directories = '{dir}'\n{HARNESS_CONF}\n# --- extra_conf ---\n{extra}\n",
                port = cluster.port,
                dir = cluster.dir.display(),
                extra = opts.extra_conf,
            );
            fs::write(data.join("postgresql.conf"), conf).unwrap();
            let _ = fs::remove_file(cluster.log_path()); // judge this attempt's log only
            cluster.chown_dir();
            let out = cluster
                .server_cmd("pg_ctl")
                .arg("start")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(cluster.log_path())
                .args(["-w", "-t", "60", "-s"])
                .output()
                .expect("run pg_ctl start");
            if out.status.success() {
                break;
            }
            let log = cluster.server_log();
            if attempt < 5 && (log.contains("could not bind") || log.contains("already in use")) {
                continue; // someone grabbed the port between free_port() and the bind
            }
            panic!(
                "pg_ctl start failed ({}):\n{}{}\n--- server log ---\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        // A standby is read-only and has the primary's roles already.
        let setup_sql = match opts.base_backup {
            Some(_) => "SHOW server_version_num;",
            None => SETUP_SQL,
        };
        let version = cluster.database("postgres").psql(setup_sql);
        cluster.version_num = version
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("unexpected server_version_num output {version:?}"));
        eprintln!(
            "starwal-test: PostgreSQL {} on 127.0.0.1:{} in {} ({} ms)",
            cluster.version_num,
            cluster.port,
            cluster.dir.display(),
            t0.elapsed().as_millis()
        );
        cluster
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `server_version_num`, e.g. `150018`.
    pub fn version_num(&self) -> u32 {
        self.version_num
    }

    /// Major version, e.g. `15`.
    pub fn major(&self) -> u32 {
        self.version_num / 10000
    }

    /// PEM of the CA that signed the server certificate (SAN `DNS:localhost`, `IP:127.0.0.1`).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("tls/ca.crt")
    }

    /// PEM of an unrelated CA that did not sign the server certificate (negative TLS tests).
    pub fn other_ca_cert_path(&self) -> PathBuf {
        self.dir.join("tls/other-ca.crt")
    }

    /// The binary directory in use (`initdb`, `pg_ctl`, `postgres`, usually `psql`, …).
    pub fn pgbin(&self) -> &Path {
        &self.pgbin
    }

    /// The cluster's directory (`/tmp/starwal-test-<pid>-<n>`), also the unix socket directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The server log so far (e.g. to look for `invalidating obsolete replication slot`).
    pub fn server_log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A handle on an existing database of this cluster (e.g. `"postgres"`).
    pub fn database(&self, name: &str) -> TestDatabase {
        TestDatabase {
            name: name.to_owned(),
            port: self.port,
            socket_dir: self.dir.clone(),
            psql: self.psql_path(),
            version_num: self.version_num,
        }
    }

    /// Creates a fresh database `<prefix>_<n>` owned by `repl`, so [`Role::Scram`] can create
    /// tables and publications in it.
    pub async fn create_database(&self, prefix: &str) -> TestDatabase {
        let name = unique_name(prefix);
        let client = self.database("postgres").superuser_client().await;
        client
            .batch_execute(&format!("CREATE DATABASE {name} OWNER repl"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.database(&name)
    }

    /// Restarts the server (`pg_ctl restart -m fast`), keeping port and data: connections drop.
    /// Not for the shared cluster.
    pub fn restart(&self) {
        let out = self
            .server_cmd("pg_ctl")
            .arg("restart")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-m", "fast", "-w", "-t", "60", "-s"])
            .output()
            .expect("run pg_ctl restart");
        if !out.status.success() {
            panic!(
                "pg_ctl restart failed: {}\n--- server log ---\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.server_log()
            );
        }
    }

    /// Stops the server (`-m immediate`) and removes the directory (unless `STARWAL_TEST_KEEP`
    /// is set). Idempotent; called by `Drop` and, for the shared cluster, at process exit.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let data = self.data_dir();
        let pid_file = data.join("postmaster.pid");
        if pid_file.exists() {
            let stopped = self
                .server_cmd("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "-t", "30", "-s"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !stopped {
                if let Some(pid) = fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
                {
                    // SAFETY: plain syscall; SIGQUIT = immediate shutdown of the postmaster.
                    unsafe { libc::kill(pid, libc::SIGQUIT) };
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        if let Some(mut w) = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = w.kill();
            let _ = w.wait();
        }
        if keep_dirs() {
            eprintln!("starwal-test: kept {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    /// initdb, the TLS material and the harness's pg_hba.conf.
    fn init_data_dir(&self) {
        let data = self.data_dir();
        let out = self
            .server_cmd("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        check("initdb", &out);
        self.make_tls();
        fs::write(data.join("pg_hba.conf"), PG_HBA).unwrap();
    }

    fn psql_path(&self) -> PathBuf {
        let p = self.pgbin.join("psql");
        if p.is_file() {
            p
        } else {
            PathBuf::from("psql")
        }
    }

    /// `program` (a path, or a name in `pgbin`) run as the server's OS user, cwd = cluster dir,
    /// no inherited `PG*` variables, stdin closed.
    fn as_server_user(&self, program: &Path) -> Command {
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        clear_pg_env(&mut cmd);
        cmd
    }

    fn server_cmd(&self, name: &str) -> Command {
        self.as_server_user(&self.pgbin.join(name))
    }

    fn chown_dir(&self) {
        if let Some(user) = self.run_as {
            let out = Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(&self.dir)
                .output()
                .expect("run chown");
            check("chown", &out);
        }
    }

    /// Test CA, server certificate signed by it (in the data dir), and an unrelated CA.
    fn make_tls(&self) {
        let tls = self.dir.join("tls");
        fs::create_dir_all(&tls).unwrap();
        // Arguments are split on whitespace (file names here have none).
        let openssl = |args: &str| {
            let out = Command::new("openssl")
                .args(args.split_whitespace())
                .current_dir(&tls)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("run openssl (apt-get install openssl): {e}"));
            check(&format!("openssl {args}"), &out);
        };
        let ec = "-nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1";
        for (name, cn) in [("ca", "starwal test CA"), ("other-ca", "starwal other CA")] {
            let cnf = format!(
                "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3_ca\n\
                 [dn]\nCN = {cn}\n[v3_ca]\nbasicConstraints = critical,CA:TRUE\n\
                 keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n"
            );
            fs::write(tls.join(format!("{name}.cnf")), cnf).unwrap();
            openssl(&format!(
                "req -x509 -new {ec} -days 30 -config {name}.cnf -keyout {name}.key -out {name}.crt"
            ));
        }
        fs::write(
            tls.join("server.cnf"),
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = localhost\n",
        )
        .unwrap();
        fs::write(
            tls.join("server.ext"),
            "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid,issuer\n",
        )
        .unwrap();
        openssl(&format!(
            "req -new {ec} -config server.cnf -keyout server.key -out server.csr"
        ));
        openssl(
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
             -extfile server.ext -out server.crt",
        );
        let data = self.data_dir();
        fs::copy(tls.join("server.crt"), data.join("server.crt")).unwrap();
        fs::copy(tls.join("server.key"), data.join("server.key")).unwrap();
        fs::set_permissions(data.join("server.key"), fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// A detached shell that, once this process is gone, stops the server and removes the
    /// directory; killed by [`Cluster::stop`]. Own process group, so Ctrl-C does not reach it;
    /// stdio on /dev/null, so it never holds a `cargo test | tee` pipe open.
    fn spawn_watchdog(&self) {
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SH)
            .arg("starwal-test-watchdog")
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .arg(if keep_dirs() { "1" } else { "" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        match child {
            Ok(c) => *self.watchdog.lock().unwrap() = Some(c),
            Err(e) => {
                eprintln!("starwal-test: no watchdog ({e}); a killed test run leaks a server")
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

impl TestDatabase {
    /// `postgres://user[:password]@127.0.0.1:PORT/NAME?sslmode=SSLMODE`.
    pub fn url(&self, role: Role, sslmode: &str) -> String {
        let auth = match role.password() {
            Some(pw) => format!("{}:{pw}", role.user()),
            None => role.user().to_owned(),
        };
        format!(
            "postgres://{auth}@127.0.0.1:{}/{}?sslmode={sslmode}",
            self.port, self.name
        )
    }

    /// TCP port of the cluster.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `server_version_num` of the cluster.
    pub fn version_num(&self) -> u32 {
        self.version_num
    }

    /// A plain (non-replication) client as `role` over TCP without TLS; the connection task
    /// is spawned on the current runtime. Panics if the connection fails.
    pub async fn client(&self, role: Role) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(role.user())
            .dbname(&self.name);
        if let Some(pw) = role.password() {
            config.password(pw);
        }
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {} as {}: {e}", self.name, role.user()));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("starwal-test: connection error: {e}");
            }
        });
        client
    }

    /// [`TestDatabase::client`] as the superuser `postgres`.
    pub async fn superuser_client(&self) -> tokio_postgres::Client {
        self.client(Role::Superuser).await
    }

    /// [`TestDatabase::client`] as the owner `repl` ([`Role::Scram`]).
    pub async fn owner_client(&self) -> tokio_postgres::Client {
        self.client(Role::Scram).await
    }

    /// Runs `sql` (any number of statements, each in its own transaction unless the script says
    /// `BEGIN`) with psql as the superuser over the unix socket, `ON_ERROR_STOP`; returns stdout
    /// in unaligned tuples-only form (`-qAt`: rows separated by newlines, columns by `|`, no
    /// command tags), trailing whitespace trimmed. Panics with stderr on failure. Blocking.
    pub fn psql(&self, sql: &str) -> String {
        let mut cmd = Command::new(&self.psql);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", &self.name, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        clear_pg_env(&mut cmd);
        let mut child = cmd.spawn().expect("run psql");
        let mut stdin = child.stdin.take().unwrap();
        let sql_owned = sql.to_owned();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(sql_owned.as_bytes());
        });
        let out = child.wait_with_output().expect("wait for psql");
        let _ = writer.join();
        if !out.status.success() {
            panic!(
                "psql on {} failed ({}):\n{}\n--- sql ---\n{sql}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }
}

const HARNESS_CONF: &str = "\
listen_addresses = '127.0.0.1'
wal_level = logical
max_replication_slots = 256
max_wal_senders = 200
max_connections = 300
shared_buffers = 32MB
fsync = off
password_encryption = 'scram-sha-256'
max_prepared_transactions = 20
logical_decoding_work_mem = 64kB
log_replication_commands = on
log_connections = on
log_line_prefix = '%m [%p] %q%u@%d '
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
";

const PG_HBA: &str = "\
# starwal test harness. First match wins; replication=database connections match the database
# column (`all`), physical/replication-keyword ones match `replication`: both lines per role.
local all         all                       trust
local replication all                       trust
host  all         postgres   127.0.0.1/32   trust
host  replication postgres   127.0.0.1/32   trust
host  all         repl_trust 127.0.0.1/32   trust
host  replication repl_trust 127.0.0.1/32   trust
host  all         repl_md5   127.0.0.1/32   md5
host  replication repl_md5   127.0.0.1/32   md5
host  all         repl_clear 127.0.0.1/32   password
host  replication repl_clear 127.0.0.1/32   password
host  all         all        127.0.0.1/32   scram-sha-256
host  replication all        127.0.0.1/32   scram-sha-256
";

/// Roles; prints `server_version_num` last. The repl* roles get `pg_read_all_data` so any of
/// them can copy an initial snapshot; `repl` owns the test databases anyway.
const SETUP_SQL: &str = "\
SET client_min_messages = error;
SET password_encryption = 'scram-sha-256';
CREATE ROLE repl LOGIN REPLICATION PASSWORD 'repl-secret';
CREATE ROLE repl_clear LOGIN REPLICATION PASSWORD 'clear-secret';
CREATE ROLE norepl LOGIN PASSWORD 'norepl-secret';
CREATE ROLE repl_trust LOGIN REPLICATION;
SET password_encryption = 'md5';
CREATE ROLE repl_md5 LOGIN REPLICATION PASSWORD 'md5-secret';
GRANT pg_read_all_data TO repl, repl_md5, repl_trust, repl_clear;
SHOW server_version_num;
";

/// `$1` parent pid, `$2` cluster dir, `$3` non-empty = keep the dir. Repeats the stop + remove
/// a few times, in case the process died while initdb or `pg_ctl start` was still running.
const WATCHDOG_SH: &str = r#"
while kill -0 "$1" 2>/dev/null; do sleep 1; done
case "$2" in /tmp/starwal-test-*) ;; *) exit 0 ;; esac
for round in 1 2 3 4 5; do
  pidfile="$2/data/postmaster.pid"
  if [ -f "$pidfile" ]; then
    pid=$(head -1 "$pidfile")
    kill -QUIT "$pid" 2>/dev/null
    i=0; while [ $i -lt 50 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.2; i=$((i+1)); done
  fi
  [ -n "$3" ] || rm -rf "$2"
  sleep 1
  [ -e "$2" ] || [ -n "$3" ] || exit 0
done
"#;

extern "C" fn stop_shared_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(cluster) = SHARED.get() {
            cluster.stop();
        }
    });
}

fn default_pgbin() -> PathBuf {
    if let Some(dir) = std::env::var_os("STARWAL_TEST_PGBIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .max_by_key(|(major, _)| *major);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL found in /usr/lib/postgresql/*/bin: `apt-get install postgresql`, or \
             set STARWAL_TEST_PGBIN to a directory holding initdb, pg_ctl and postgres"
        ),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn ensure_os_user(user: &str) {
    let exists = Command::new("id")
        .arg("-u")
        .arg(user)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                user,
            ])
            .output()
            .expect("run useradd");
        // A concurrent test process may have created it meanwhile (exit code 9).
        if !out.status.success() && out.status.code() != Some(9) {
            check("useradd", &out);
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server a test starts (a cluster,
/// an agent's control and metrics listeners).
///
/// Taken below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`, 32768-60999 by
/// default), not from `bind(0)`: a port `bind(0)` hands out comes from the pool outgoing
/// connections draw their source ports from, so between this check and the server's own bind a
/// test's client connection could take it (an agent failed with "Address already in use" on
/// its metrics port that way). A counter per process, started at an offset from the pid, keeps
/// tests of one process from being handed the same port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % COUNT,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{FIRST}-{}", FIRST + COUNT - 1);
}

fn keep_dirs() -> bool {
    std::env::var_os("STARWAL_TEST_KEEP").is_some_and(|v| !v.is_empty() && v != "0")
}

fn clear_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("PG")) {
            cmd.env_remove(key);
        }
    }
}

fn check(what: &str, out: &Output) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
