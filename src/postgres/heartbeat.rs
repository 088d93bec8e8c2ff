//! The optional heartbeat (`STARWAL_HEARTBEAT_INTERVAL_S`): a transactional
//! `pg_logical_emit_message` in the slot's database every interval.
//!
//! When the published tables are quiet but other databases of the cluster write, the slot would
//! otherwise pin WAL. The heartbeat's commit arrives on our stream (`messages` is on), the
//! consumer confirms it like any commit, and the slot moves (invariant 3). Failures are logged and
//! retried next interval: a missed heartbeat costs retained WAL, never data.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::conninfo::ConnInfo;
use super::tls::connect_sql;

/// The `prefix` of heartbeat messages, so consumers can tell them from application messages.
pub const HEARTBEAT_PREFIX: &str = "starwal_heartbeat";

/// Starts the heartbeat task; abort the handle to stop it.
pub fn spawn_heartbeat(conn: ConnInfo, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = None;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if client.is_none() {
                match connect_sql(&conn).await {
                    Ok(connected) => client = Some(connected),
                    Err(err) => {
                        tracing::warn!(error = %err, "heartbeat: cannot connect; retrying next interval");
                        continue;
                    }
                }
            }
            let Some(connected) = &client else { continue };
            let result = connected
                .execute(
                    "SELECT pg_logical_emit_message(true, $1, now()::text)",
                    &[&HEARTBEAT_PREFIX],
                )
                .await;
            if let Err(err) = result {
                tracing::warn!(error = %crate::error_text::chain(&err), "heartbeat failed; reconnecting next interval");
                client = None;
            }
        }
    })
}
