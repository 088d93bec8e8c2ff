//! `starwal tail`: the decoded changes of the configured tables as JSON lines on stdout.
//!
//! Setup is the same as the agent's (prerequisites, tables, publication). By default it streams
//! from a temporary slot, which Postgres drops when the connection closes, so a look at the data
//! leaves no slot behind. With `--slot NAME` it uses (or creates) a permanent slot and confirms
//! each transaction once its lines are written and flushed to stdout — never before (invariant 1)
//! — so the next run resumes after the last printed transaction. The stop condition is given (the
//! CLI's signal handler: SIGINT/SIGTERM end the copy cleanly and exit 0).

mod json;

use std::io::{self, Write};

use anyhow::Context as _;

use crate::config::PostgresConfig;
use crate::engine::setup::postgres::{ensure_slot, existing_slot, prepare_source};
use crate::postgres::heartbeat::spawn_heartbeat;
use crate::postgres::replication::session::{Session, SessionEnd};
use crate::postgres::replication::{
    ReplicationConnection, ReplicationStream, SlotSnapshot, StartOptions,
};
use crate::postgres::tls::connect_sql;
use crate::postgres::Lsn;

pub use json::{TailConsumer, TailError};

/// Options of `starwal tail` beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    /// Use this permanent slot (created when missing) and confirm what was printed.
    pub permanent_slot: Option<String>,
}

/// Runs `tail` on stdout until `shutdown` completes (the CLI passes SIGINT/SIGTERM).
pub async fn run(
    config: &PostgresConfig,
    options: TailOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let stdout = io::stdout().lock();
    let consumer = TailConsumer::new(io::BufWriter::with_capacity(64 * 1024, stdout));
    run_with(config, options, consumer, shutdown).await
}

/// `tail` with its output and stop condition given.
pub async fn run_with<W: Write>(
    config: &PostgresConfig,
    options: TailOptions,
    mut consumer: TailConsumer<W>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let client = connect_sql(&config.conn).await?;
    let slot_state = match &options.permanent_slot {
        Some(slot) => {
            let existing = existing_slot(&client, slot, &config.conn.dbname).await?;
            prepare_source(&client, config, existing.is_none()).await?;
            Some(ensure_slot(&client, &config.conn, slot).await?)
        }
        None => {
            prepare_source(&client, config, true).await?;
            None
        }
    };
    drop(client);

    let mut conn = ReplicationConnection::connect(&config.conn).await?;
    let (slot, confirmed) = match (&options.permanent_slot, slot_state) {
        (Some(slot), Some(state)) => (slot.clone(), state.confirmed_flush),
        _ => {
            let name = format!("starwal_tail_{}", std::process::id());
            let created = conn
                .create_logical_slot(&name, true, SlotSnapshot::Nothing)
                .await
                .with_context(|| format!("creating temporary slot `{name}`"))?;
            (name, created.consistent_point)
        }
    };
    tracing::info!(
        slot = %slot,
        temporary = options.permanent_slot.is_none(),
        from = %confirmed,
        publication = %config.publication,
        "tailing changes"
    );
    let stream = ReplicationStream::start(
        conn,
        &slot,
        Lsn::ZERO,
        &StartOptions::committed_only(&config.publication),
    )
    .await
    .with_context(|| format!("starting replication from slot `{slot}`"))?;
    let heartbeat = config
        .heartbeat_interval
        .map(|interval| spawn_heartbeat(config.conn.clone(), interval));
    let session = Session::new(stream, config.status_interval, confirmed);
    let result = session.run(&mut consumer, shutdown).await;
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    match result?.end {
        SessionEnd::Shutdown => Ok(()),
        SessionEnd::ServerEnded => anyhow::bail!("the server ended the replication stream"),
    }
}
