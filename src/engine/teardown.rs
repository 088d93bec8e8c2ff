//! `starwal teardown --yes`: removes what starwal created on the source — the replication slot,
//! the publication, and this slot's checkpoint state — and nothing else. It is the only path
//! that drops a slot (invariant 5: `run` never does). The StarRocks tables are left alone: they
//! hold the data users came for.

use tokio_postgres::Client;

use super::setup::inspect::same_cluster;
use super::setup::SetupError;
use crate::config::PostgresConfig;
use crate::postgres::checkpoint::CheckpointStore;
use crate::postgres::snapshot::store::CopyStore;
use crate::postgres::sql::quote_ident;
use crate::postgres::tls::connect_sql;

/// What teardown removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TeardownReport {
    pub slot_dropped: bool,
    pub publication_dropped: bool,
    pub state_cleared: bool,
}

/// Drops the slot (refusing while a process streams from it), the publication and the state.
/// Missing objects are not an error, so teardown can be repeated.
pub async fn teardown(config: &PostgresConfig) -> Result<TeardownReport, SetupError> {
    let client = connect_sql(&config.conn).await?;
    // Decoding from a standby: the slot is the standby's, the publication and the state are the
    // primary's (`STARWAL_PG_PRIMARY_URL`). Checked before anything is dropped: a primary of
    // another cluster would lose a publication and state that are not starwal's.
    let primary = match &config.primary {
        Some(conn) => {
            let primary = connect_sql(conn)
                .await
                .map_err(SetupError::PrimaryConnect)?;
            same_cluster(&client, &primary).await?;
            Some(primary)
        }
        None => None,
    };
    let mut report = TeardownReport::default();

    let slot = client
        .query_opt(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&config.slot],
        )
        .await
        .map_err(SetupError::query("looking up the replication slot"))?;
    if let Some(row) = slot {
        if let Some(pid) = row.get::<_, Option<i32>>(0) {
            return Err(SetupError::SlotActive {
                slot: config.slot.clone(),
                pid,
            });
        }
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&config.slot])
            .await
            .map_err(SetupError::query("dropping the replication slot"))?;
        report.slot_dropped = true;
    }

    let client = primary.as_ref().unwrap_or(&client);
    let publication_exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&config.publication],
        )
        .await
        .map_err(SetupError::query("looking up the publication"))?
        .is_some();
    if publication_exists {
        client
            .batch_execute(&format!(
                "DROP PUBLICATION IF EXISTS {}",
                quote_ident(&config.publication)
            ))
            .await
            .map_err(SetupError::query("dropping the publication"))?;
        report.publication_dropped = true;
    }

    report.state_cleared = clear_state(client, config).await?;
    Ok(report)
}

async fn clear_state(client: &Client, config: &PostgresConfig) -> Result<bool, SetupError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass(format('%I.%I', $1::text, 'checkpoints')) IS NOT NULL",
            &[&config.state_schema],
        )
        .await
        .map_err(SetupError::query("looking up the checkpoint state"))?
        .get(0);
    if !exists {
        return Ok(false);
    }
    CheckpointStore::new(&config.state_schema, &config.slot)
        .clear(client)
        .await
        .map_err(|err| SetupError::State(Box::new(err)))?;
    CopyStore::new(&config.state_schema, &config.slot)
        .clear(client)
        .await
        .map_err(|err| SetupError::CopyState(Box::new(err)))?;
    Ok(true)
}
