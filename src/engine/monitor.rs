//! What an attempt watches on the source while it streams: how much WAL the slot retains and
//! where the server's WAL ends (for status and lag), and, with a `schema.*` pattern, new tables
//! to add to the publication. Both run as tasks the attempt aborts when it ends; a failed look is
//! logged and tried again at the next tick, never an attempt error.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::PostgresConfig;
use crate::engine::setup::postgres::ensure_publication;
use crate::postgres::catalog::{resolve_tables, TablePattern};
use crate::postgres::Lsn;
use crate::state::EngineHandle;

/// While a slot is created on a standby (decoding there, `STARWAL_PG_PRIMARY_URL`): every
/// half second, `pg_log_standby_snapshot()` on the primary. The standby's slot reaches its
/// consistent point only at a running-transactions record from the primary, which an idle
/// primary writes every 15 s at best; abort the task once the slot exists. Errors are logged
/// once: without the nudge creating the slot only takes longer.
pub fn spawn_standby_snapshot_nudge(
    primary: Arc<tokio_postgres::Client>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        loop {
            ticker.tick().await;
            if let Err(err) = primary
                .execute("SELECT pg_log_standby_snapshot()", &[])
                .await
            {
                tracing::warn!(
                    error = %crate::error_text::chain(&err),
                    "pg_log_standby_snapshot() on STARWAL_PG_PRIMARY_URL failed (only superusers \
                     may call it unless granted: GRANT EXECUTE ON FUNCTION \
                     pg_log_standby_snapshot() TO <role>); creating the slot on the standby waits \
                     for the primary's next running-transactions record"
                );
                return;
            }
        }
    })
}

/// Every `interval`, how much WAL the slot retains and where the server's WAL ends.
pub fn spawn_retained_wal_monitor(
    client: Arc<tokio_postgres::Client>,
    slot: String,
    handle: Arc<EngineHandle>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.min(Duration::from_secs(10)));
        loop {
            ticker.tick().await;
            let row = client
                .query_opt(
                    // On a standby (decoding there) WAL ends where it is replayed.
                    "WITH wal AS (SELECT CASE WHEN pg_is_in_recovery() \
                                              THEN pg_last_wal_replay_lsn() \
                                              ELSE pg_current_wal_lsn() END AS end_lsn) \
                     SELECT (wal.end_lsn - restart_lsn)::int8, wal.end_lsn::text \
                       FROM pg_replication_slots, wal WHERE slot_name = $1",
                    &[&slot],
                )
                .await;
            match row {
                Ok(Some(row)) => {
                    let retained: Option<i64> = row.get(0);
                    handle.set_slot_retained_wal(retained.and_then(|b| u64::try_from(b).ok()));
                    if let Some(end) = row
                        .get::<_, Option<String>>(1)
                        .and_then(|s| s.parse::<Lsn>().ok())
                    {
                        handle.set_server_wal_end(end);
                    }
                }
                Ok(None) => handle.set_slot_retained_wal(None),
                Err(err) => {
                    tracing::debug!(error = %crate::error_text::chain(&err), "cannot read the slot's retained WAL")
                }
            }
        }
    })
}

/// How often `schema.*` patterns are looked at again for new tables.
pub const TABLE_RESCAN_INTERVAL: Duration = Duration::from_secs(10);

/// With a `schema.*` pattern, new tables created in that schema join the publication (within
/// [`TABLE_RESCAN_INTERVAL`]); their first change then brings a Relation message and the
/// pipeline creates the target table. A table that does not qualify (no key, say) is logged
/// and left out — the tables already streaming keep streaming. Rows written to a new table
/// before it joined are not streamed (an initial snapshot's job).
pub fn spawn_publication_watcher(
    client: Arc<tokio_postgres::Client>,
    config: PostgresConfig,
    copy_new_tables: Option<mpsc::UnboundedSender<String>>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !config
        .tables
        .iter()
        .any(|pattern| matches!(pattern, TablePattern::AllInSchema { .. }))
    {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(TABLE_RESCAN_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let tables = match resolve_tables(&client, &config.tables).await {
                Ok(tables) => tables,
                Err(err) => {
                    tracing::warn!("looking for new tables: {err}");
                    continue;
                }
            };
            match ensure_publication(&client, &config.publication, &tables).await {
                Ok((_, added)) if !added.is_empty() => {
                    tracing::info!(?added, "new tables joined the publication");
                    if let Some(copies) = &copy_new_tables {
                        for table in added {
                            let _ = copies.send(table);
                        }
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::warn!("adding new tables to the publication: {err}"),
            }
        }
    }))
}
