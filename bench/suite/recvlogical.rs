//! The yardstick for the backlog drain: `pg_recvlogical` reading the same backlog through its own
//! pgoutput slot and the same publication, output to `/dev/null` — the rate at which Postgres
//! itself emits the stream.
//!
//! It connects like the agent does (TCP to 127.0.0.1, no TLS, the `repl` role), so both pay the
//! same walsender, protocol and socket costs. It stops at `--endpos`, the WAL position after the
//! backlog: on the data message at that position or on the first keepalive past it, which the
//! walsender sends as soon as it has decoded everything before it.
//!
//! The binary is the cluster's own (`<pgbin>/pg_recvlogical`), else `/usr/bin/pg_recvlogical`,
//! else the first on `PATH`; without one the backlog runs without the comparison and says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::harness::{Role, TestDatabase};

/// Where `pg_recvlogical` is, or why it is not.
pub fn find(pgbin: &Path) -> Result<PathBuf, String> {
    let mut candidates = vec![
        pgbin.join("pg_recvlogical"),
        PathBuf::from("/usr/bin/pg_recvlogical"),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("pg_recvlogical")));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        format!(
            "pg_recvlogical not found (looked in {}, /usr/bin and PATH; it comes with the \
             Debian package postgresql-client)",
            pgbin.display()
        )
    })
}

/// Creates a pgoutput slot `slot` now, before the backlog; returns its consistent point.
pub async fn create_slot(client: &tokio_postgres::Client, slot: &str) -> Result<String> {
    let row = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .with_context(|| format!("create the pg_recvlogical slot {slot}"))?;
    Ok(row.get(0))
}

/// Reads the stream of `slot` (publication `publication`) from its start to `endpos` and returns
/// the wall time from spawn to exit.
pub async fn read_to(
    binary: &Path,
    db: &TestDatabase,
    slot: &str,
    publication: &str,
    endpos: &str,
    timeout: Duration,
) -> Result<Duration> {
    let role = Role::Scram;
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname={} user={} sslmode=disable",
        db.port(),
        db.name,
        role.user()
    );
    let mut command = Command::new(binary);
    command
        .args(["--no-loop", "--start", "-d", &conninfo, "--slot", slot])
        .args(["-o", "proto_version=1", "-o"])
        .arg(format!("publication_names={publication}"))
        .args(["-f", "/dev/null", "--endpos", endpos])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("PG")) {
            command.env_remove(key);
        }
    }
    if let Some(password) = role.password() {
        command.env("PGPASSWORD", password);
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("run {}", binary.display()))?;
    loop {
        if let Some(status) = child.try_wait().context("wait for pg_recvlogical")? {
            let elapsed = started.elapsed();
            if !status.success() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                bail!("pg_recvlogical exited with {status}: {}", stderr.trim());
            }
            return Ok(elapsed);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "pg_recvlogical did not reach {endpos} within {} s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
