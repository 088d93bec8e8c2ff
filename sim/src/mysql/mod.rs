//! The sim's MySQL-protocol side (StarRocks FE :9030): what CDC setup code and people with a
//! `mysql`/`mariadb` client use to create, inspect and verify tables (reference §7).
//!
//! Owns the server: the accept loop ([`serve`] / [`serve_with`]), one task per connection, the
//! handshake with `mysql_native_password` (wrong user or password → ERR 1045), and the command
//! phase (COM_QUERY, COM_PING, COM_INIT_DB, COM_QUIT, COM_FIELD_LIST, COM_RESET_CONNECTION,
//! COM_STATISTICS). Statements, case-insensitive with backtick identifiers, `db.t` names and an
//! optional trailing `;`:
//!
//! - `SELECT 1`, `select current_version()`, `SELECT @@var, database(), user(), ...`;
//! - `SELECT cols|*|COUNT(*) FROM [db.]t | information_schema.{SCHEMATA,TABLES,COLUMNS}
//!   [WHERE c op literal [AND ...]] [ORDER BY c [ASC|DESC], ...] [LIMIT [m,] n]` with `op` one of
//!   `= <=> <> != < <= > >=`, `IS [NOT] NULL`, `[NOT] IN (...)`, `[NOT] LIKE`;
//! - `SET ...` (accepted; `SET @v = literal` is remembered), `USE db`, BEGIN/COMMIT/ROLLBACK;
//! - `SHOW DATABASES`, `SHOW [FULL] TABLES [FROM db] [LIKE]`, `SHOW CREATE TABLE|DATABASE`,
//!   `DESC t` / `SHOW COLUMNS FROM t`, `SHOW VARIABLES [LIKE]`, `SHOW WARNINGS`,
//!   `SHOW BACKENDS`, `SHOW FRONTENDS`, `SHOW ALTER TABLE COLUMN [FROM db] [WHERE ...]
//!   [ORDER BY ...] [LIMIT n]`;
//! - `CREATE DATABASE [IF NOT EXISTS]`, `DROP DATABASE [IF EXISTS]`, `CREATE TABLE [IF NOT
//!   EXISTS]` for Primary Key tables with StarRocks' rules, `DROP TABLE [IF EXISTS]`, `TRUNCATE
//!   TABLE`, `ALTER TABLE t ADD COLUMN ... / DROP COLUMN ...` as asynchronous jobs, `CANCEL ALTER
//!   TABLE COLUMN FROM t`.
//!
//! Anything else is a StarRocks-style ERR (1064 syntax/analysis errors, "not supported by
//! starrocks-sim"), never a guess. Rows are only read here; they are written by Stream Load.
//!
//! Wiring into `Sim::start`, beside the FE/BE servers (ALTER jobs are spawned on the runtime
//! that runs `serve`; it and every open connection end when `stop_rx` turns `true` or its
//! sender is dropped):
//!
//! ```text
//! let mysql = options.mysql.map(|addr| bind_one("MySQL", addr)).transpose()?;
//! // SimAddrs { mysql: mysql.as_ref().map(|l| local(l, addr, "MySQL")).transpose()?, .. }
//! // inside runtime.block_on, with the other tasks:
//! if let Some(listener) = mysql {
//!     tasks.push(tokio::spawn(crate::mysql::serve(
//!         listener,
//!         CatalogHandle { shared: task_shared.clone() },
//!         (task_shared.config.user.clone(), task_shared.config.password.clone()),
//!         stop_rx.clone(),
//!     )));
//! }
//! ```
//!
//! [`serve_with`] takes [`MysqlOptions`] instead, to set the ALTER delay or the version.

mod alter;
mod ddl;
mod error;
mod exec;
mod infoschema;
mod lexer;
mod parser;
mod protocol;
mod relation;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::state::CatalogHandle;

use self::alter::AlterJobs;
use self::error::SqlError;
use self::exec::{Outcome, Session};
use self::protocol::{PacketIo, Reader};

/// How long an ALTER TABLE job takes by default (PENDING → RUNNING → FINISHED).
pub const DEFAULT_ALTER_DELAY: Duration = Duration::from_millis(300);
/// What `select current_version()` answers by default (`crate::DEFAULT_STARROCKS_VERSION` + `-sim`,
/// as a `Sim` answers; `SimOptions::starrocks_version` changes it there).
pub const DEFAULT_VERSION: &str = "4.0.2-sim";
/// The MySQL server version in the handshake and `version()`, as StarRocks 3.x reports it.
pub(crate) const SERVER_VERSION: &str = "8.0.33";

/// Settings of the MySQL side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlOptions {
    /// The one user that may log in.
    pub user: String,
    /// Its password (empty allowed, as in StarRocks).
    pub password: String,
    /// Time from ALTER TABLE to its job being FINISHED (zero: applied before the OK).
    pub alter_delay: Duration,
    /// `select current_version()`.
    pub version: String,
}

impl MysqlOptions {
    /// Options for this user and password with default delay and version.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> MysqlOptions {
        MysqlOptions {
            user: user.into(),
            password: password.into(),
            alter_delay: DEFAULT_ALTER_DELAY,
            version: DEFAULT_VERSION.to_string(),
        }
    }
}

impl Default for MysqlOptions {
    /// User `root`, empty password.
    fn default() -> MysqlOptions {
        MysqlOptions::new("root", "")
    }
}

/// State shared by the connections of one MySQL server.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) catalog: CatalogHandle,
    pub(crate) options: MysqlOptions,
    pub(crate) jobs: AlterJobs,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) started_at: String,
    started: Instant,
    next_connection_id: AtomicU32,
}

/// Serves the MySQL protocol on `listener` until `shutdown` turns `true` (or its sender is
/// dropped), with default [`MysqlOptions`] for the given `(user, password)`.
pub async fn serve(
    listener: TcpListener,
    catalog: CatalogHandle,
    credentials: (String, String),
    shutdown: watch::Receiver<bool>,
) {
    let (user, password) = credentials;
    serve_with(
        listener,
        catalog,
        MysqlOptions::new(user, password),
        shutdown,
    )
    .await;
}

/// [`serve`] with explicit options (ALTER delay, reported version).
pub async fn serve_with(
    listener: TcpListener,
    catalog: CatalogHandle,
    options: MysqlOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let server = Arc::new(Server {
        catalog,
        options,
        jobs: AlterJobs::default(),
        local_addr: listener.local_addr().ok(),
        started_at: now_text(),
        started: Instant::now(),
        next_connection_id: AtomicU32::new(1),
    });
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(stream, peer, Arc::clone(&server), shutdown.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
}

/// Resolves when `shutdown` is `true` or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<Server>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut io = PacketIo::new(stream);
    let session = tokio::select! {
        _ = stopped(&mut shutdown) => return,
        session = handshake(&mut io, &server, peer) => session,
    };
    let Ok(Some(mut session)) = session else {
        return;
    };
    loop {
        io.reset_sequence();
        let packet = tokio::select! {
            _ = stopped(&mut shutdown) => return,
            packet = io.read_packet() => packet,
        };
        let packet = match packet {
            Ok(Some(packet)) => packet,
            Ok(None) => return,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    io.write_err(&SqlError::new(1153, "08S01", e.to_string()));
                    let _ = io.flush().await;
                }
                return;
            }
        };
        if !command(&mut io, &server, &mut session, &packet) {
            let _ = io.flush().await;
            return;
        }
        if io.flush().await.is_err() {
            return;
        }
    }
}

/// Sends the greeting, checks the credentials, applies the requested database.
async fn handshake(
    io: &mut PacketIo<TcpStream>,
    server: &Server,
    peer: SocketAddr,
) -> io::Result<Option<Session>> {
    let connection_id = server.next_connection_id.fetch_add(1, Ordering::Relaxed);
    let scramble = protocol::new_scramble();
    io.write_packet(&protocol::handshake_v10(
        SERVER_VERSION,
        connection_id,
        &scramble,
    ));
    io.flush().await?;
    let Some(packet) = io.read_packet().await? else {
        return Ok(None);
    };
    let response = match protocol::parse_handshake_response(&packet) {
        Ok(response) => response,
        Err(e) => {
            let message = match e {
                protocol::HandshakeError::Ssl => "SSL is not supported by starrocks-sim",
                _ => "Bad handshake",
            };
            io.write_err(&SqlError::new(1043, "08S01", message));
            io.flush().await?;
            return Ok(None);
        }
    };
    let mut auth = response.auth_response.clone();
    if response
        .auth_plugin
        .as_deref()
        .is_some_and(|p| !p.is_empty() && p != protocol::NATIVE_PASSWORD)
    {
        io.write_packet(&protocol::auth_switch_request(&scramble));
        io.flush().await?;
        let Some(packet) = io.read_packet().await? else {
            return Ok(None);
        };
        auth = packet;
    }
    let host = peer.ip().to_string();
    if response.user != server.options.user
        || !protocol::check_native_password(&server.options.password, &scramble, &auth)
    {
        io.write_err(&SqlError::access_denied(
            &response.user,
            &host,
            !auth.is_empty(),
        ));
        io.flush().await?;
        return Ok(None);
    }
    let mut session = Session {
        user: response.user,
        host,
        db: None,
        connection_id,
        user_vars: Default::default(),
    };
    if let Some(db) = &response.database {
        if let Err(e) = exec::use_database(server, &mut session, db) {
            io.write_err(&e);
            io.flush().await?;
            return Ok(None);
        }
    }
    io.write_ok(0);
    io.flush().await?;
    Ok(Some(session))
}

/// Handles one command packet; `false` closes the connection.
fn command(
    io: &mut PacketIo<TcpStream>,
    server: &Arc<Server>,
    session: &mut Session,
    packet: &[u8],
) -> bool {
    let mut reader = Reader::new(packet);
    let Some(code) = reader.u8() else {
        io.write_err(&SqlError::new(1047, "08S01", "Unknown command"));
        return true;
    };
    match code {
        // COM_QUIT
        0x01 => return false,
        // COM_INIT_DB
        0x02 => {
            let db = reader.rest_str();
            match exec::use_database(server, session, &db) {
                Ok(()) => io.write_ok(0),
                Err(e) => io.write_err(&e),
            }
        }
        // COM_QUERY
        0x03 => {
            let sql = reader.rest_str();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                exec::execute(server, session, &sql)
            }))
            .unwrap_or_else(|_| {
                Err(SqlError::new(
                    1105,
                    "HY000",
                    "starrocks-sim internal error while executing the statement",
                ))
            });
            match result {
                Ok(Outcome::Ok(affected)) => io.write_ok(affected),
                Ok(Outcome::Rows { columns, rows }) => io.write_result_set(&columns, &rows),
                Err(e) => io.write_err(&e),
            }
        }
        // COM_FIELD_LIST (the mariadb/mysql CLI's completion): column definitions + EOF.
        0x04 => {
            let table = reader.nul_str().unwrap_or_default();
            let columns = session.db.clone().map_or_else(
                || Err(SqlError::no_database()),
                |db| {
                    server.catalog.read(|c| {
                        c.table(&db, &table)
                            .map(|t| {
                                t.columns()
                                    .iter()
                                    .map(|col| {
                                        (
                                            col.name.clone(),
                                            relation::Kind::Typed(col.column_type.clone()),
                                        )
                                    })
                                    .collect::<Vec<_>>()
                            })
                            .map_err(SqlError::from)
                    })
                },
            );
            match columns {
                Ok(columns) => {
                    for (name, kind) in &columns {
                        io.write_column(name, kind);
                    }
                    io.write_eof();
                }
                Err(e) => io.write_err(&e),
            }
        }
        // COM_STATISTICS: a bare string.
        0x09 => {
            let uptime = server.started.elapsed().as_secs();
            io.write_packet(format!("Uptime: {uptime}  Threads: 1  Questions: 0  Slow queries: 0  Opens: 0  Flush tables: 0  Open tables: 0  Queries per second avg: 0.000").as_bytes());
        }
        // COM_PING
        0x0e => io.write_ok(0),
        // COM_SET_OPTION
        0x1b => io.write_eof(),
        // COM_RESET_CONNECTION
        0x1f => {
            session.user_vars.clear();
            io.write_ok(0);
        }
        // COM_STMT_CLOSE / COM_STMT_RESET expect no or an OK reply; prepared statements are
        // refused at COM_STMT_PREPARE, so there is nothing to close.
        0x19 => {}
        0x16 => io.write_err(&SqlError::new(
            1295,
            "HY000",
            "This command is not supported in the prepared statement protocol by starrocks-sim; use text queries",
        )),
        _ => io.write_err(&SqlError::new(1047, "08S01", "Unknown command")),
    }
    true
}

/// Now as `YYYY-MM-DD HH:MM:SS` (UTC), the format of StarRocks' SHOW outputs.
pub(crate) fn now_text() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(now_text().len(), 19);
    }
}
