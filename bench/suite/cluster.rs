//! The systems a scenario runs against: a throwaway Postgres cluster from the e2e harness with
//! the suite's server settings, and an in-process `starrocks-sim`. Both stop when dropped (the
//! harness's watchdog also stops the server if the driver is killed).
//!
//! The server settings differ from the harness's test defaults only where a benchmark needs it:
//! Postgres' default `logical_decoding_work_mem` (the tests shrink it to 64 kB to exercise
//! spilling), shared buffers a little larger, and no checkpoint forced by WAL volume in the
//! middle of a measurement.

use anyhow::{Context as _, Result};
use starrocks_sim::Sim;

use super::harness::agent::start_sim;
use super::harness::{Cluster, ClusterOptions};
use super::report::Report;

/// `postgresql.conf` lines on top of the harness's (recorded in every result).
pub const POSTGRES_CONF: &str = "\
logical_decoding_work_mem = 64MB
shared_buffers = 128MB
max_wal_size = 16GB
checkpoint_timeout = 30min
";

/// Starts the cluster and the sim and records the server version in the report.
pub async fn start(report: &mut Report) -> Result<(Cluster, Sim)> {
    let cluster = Cluster::start(ClusterOptions {
        extra_conf: POSTGRES_CONF.into(),
        ..ClusterOptions::default()
    });
    let client = cluster.database("postgres").superuser_client().await;
    let version: String = client
        .query_one(
            "SELECT 'PostgreSQL ' || current_setting('server_version')",
            &[],
        )
        .await
        .context("read the server version")?
        .get(0);
    report.machine.postgres = Some(version);
    report.set(
        "postgres_conf",
        serde_json::Value::from(POSTGRES_CONF.lines().collect::<Vec<_>>()),
    );
    let sim = start_sim();
    Ok((cluster, sim))
}
