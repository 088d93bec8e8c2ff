//! The checkpoint store: what has been committed downstream, kept in the source database (the
//! state schema, `STARWAL_STATE_SCHEMA`, default `starwal`) next to the slot it describes. Table
//! naming, schema creation, clearing and the error type are the state-table plumbing it shares
//! with the copy store (`postgres::state_table`).
//!
//! Two things are stored per slot: the confirmed LSN (a commit end LSN whose changes are all
//! committed in the target — never more, invariant 1) and, per table, the load in flight (its
//! first part's label and its first and last change position), written *before* the load is
//! sent. After a crash the pipeline's restart rule reads them: a load whose first transaction is
//! already confirmed is skipped through its last position; otherwise exactly that batch is
//! re-formed under the same label, so the target answers `Label Already Exists` instead of
//! applying it twice (invariant 5). [`CheckpointStore::confirm`] forgets the loads it covers.
//! Tables are created on first use; state is removed only by [`CheckpointStore::clear`]: at
//! teardown, and when a slot is created anew (an earlier slot's higher LSN would make it skip
//! transactions).

use tokio_postgres::Client;

use super::state_table::{StateError, StateStore, StateTables};
use super::{ChangePosition, Lsn};

/// A load that was about to be sent when the state was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightLoad {
    pub table: String,
    /// The label of the batch's first part (the others derive from the same range).
    pub label: String,
    pub first: ChangePosition,
    pub last: ChangePosition,
}

/// What a restart resumes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Everything up to here is committed in the target.
    pub confirmed_lsn: Lsn,
    pub in_flight: Vec<InFlightLoad>,
}

/// The checkpoint store could not be read or written.
pub type CheckpointError = StateError<CheckpointStore>;

/// Reads and writes the checkpoint of one slot.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    tables: StateTables,
}

impl StateStore for CheckpointStore {
    const NAME: &'static str = "checkpoint";
}

/// The store's tables in the state schema.
const TABLES: [&str; 2] = ["checkpoints", "loads_in_flight"];

impl CheckpointStore {
    /// A store for `slot` in `schema`.
    pub fn new(schema: &str, slot: &str) -> CheckpointStore {
        CheckpointStore {
            tables: StateTables::new(schema, slot),
        }
    }

    /// Creates the schema and tables when missing (idempotent).
    pub async fn ensure(&self, client: &Client) -> Result<(), CheckpointError> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {checkpoints} (
                     slot text PRIMARY KEY,
                     confirmed_lsn pg_lsn NOT NULL,
                     updated_at timestamptz NOT NULL DEFAULT now());
                 CREATE TABLE IF NOT EXISTS {in_flight} (
                     slot text NOT NULL,
                     target_table text NOT NULL,
                     label text NOT NULL,
                     first_lsn pg_lsn NOT NULL,
                     last_lsn pg_lsn NOT NULL,
                     PRIMARY KEY (slot, target_table));
                 ALTER TABLE {in_flight} ADD COLUMN IF NOT EXISTS first_seq bigint NOT NULL DEFAULT 0;
                 ALTER TABLE {in_flight} ADD COLUMN IF NOT EXISTS last_seq bigint NOT NULL DEFAULT 0;",
            checkpoints = self.tables.table("checkpoints"),
            in_flight = self.tables.table("loads_in_flight"),
        );
        self.tables.ensure(client, &ddl).await
    }

    /// The stored checkpoint, or the default (`0/0`, nothing in flight) for a new slot.
    pub async fn load(&self, client: &Client) -> Result<Checkpoint, CheckpointError> {
        let confirmed = client
            .query_opt(
                &format!(
                    "SELECT confirmed_lsn::text FROM {} WHERE slot = $1",
                    self.tables.table("checkpoints")
                ),
                &[&self.tables.slot()],
            )
            .await
            .map_err(self.tables.failed("reading the confirmed LSN"))?
            .and_then(|row| row.get::<_, String>(0).parse().ok())
            .unwrap_or(Lsn::ZERO);
        let rows = client
            .query(
                &format!(
                    "SELECT target_table, label, first_lsn::text, last_lsn::text, first_seq, last_seq FROM {} \
                     WHERE slot = $1 ORDER BY target_table",
                    self.tables.table("loads_in_flight")
                ),
                &[&self.tables.slot()],
            )
            .await
            .map_err(self.tables.failed("reading the loads in flight"))?;
        let in_flight = rows
            .iter()
            .filter_map(|row| {
                let seq = |index| u32::try_from(row.get::<_, i64>(index)).ok();
                let load = (|| {
                Some(InFlightLoad {
                    table: row.get(0),
                    label: row.get(1),
                    first: ChangePosition {
                        commit: row.get::<_, String>(2).parse().ok()?,
                        seq: seq(4)?,
                    },
                    last: ChangePosition {
                        commit: row.get::<_, String>(3).parse().ok()?,
                        seq: seq(5)?,
                    },
                })
                })();
                if load.is_none() {
                    tracing::warn!(schema = %self.tables.schema(), slot = %self.tables.slot(), "ignoring an unreadable loads_in_flight row: its batch is re-formed under a new label (applied again, which a Primary Key table absorbs)");
                }
                load
            })
            .collect();
        Ok(Checkpoint {
            confirmed_lsn: confirmed,
            in_flight,
        })
    }

    /// Records `load` as in flight for its table (replacing the table's previous one). Call it
    /// before sending the load.
    pub async fn begin_load(
        &self,
        client: &Client,
        load: &InFlightLoad,
    ) -> Result<(), CheckpointError> {
        client
            .execute(
                &format!(
                    "INSERT INTO {} (slot, target_table, label, first_lsn, first_seq, last_lsn, last_seq) \
                     VALUES ($1, $2, $3, $4::text::pg_lsn, $5, $6::text::pg_lsn, $7) \
                     ON CONFLICT (slot, target_table) DO UPDATE SET label = excluded.label, \
                     first_lsn = excluded.first_lsn, first_seq = excluded.first_seq, \
                     last_lsn = excluded.last_lsn, last_seq = excluded.last_seq",
                    self.tables.table("loads_in_flight")
                ),
                &[
                    &self.tables.slot(),
                    &load.table,
                    &load.label,
                    &load.first.commit.to_string(),
                    &i64::from(load.first.seq),
                    &load.last.commit.to_string(),
                    &i64::from(load.last.seq),
                ],
            )
            .await
            .map(drop)
            .map_err(self.tables.failed("recording a load in flight"))
    }

    /// Stores `confirmed` and forgets the loads whose whole range it covers (a transaction is
    /// confirmed when its commit LSN is below `confirmed`), in one statement. `confirmed` only ever
    /// moves forward: a lower value is ignored.
    pub async fn confirm(&self, client: &Client, confirmed: Lsn) -> Result<(), CheckpointError> {
        client
            .execute(
                &format!(
                    "WITH forgotten AS (DELETE FROM {in_flight} \
                       WHERE slot = $1 AND last_lsn < $2::text::pg_lsn) \
                     INSERT INTO {table} (slot, confirmed_lsn) VALUES ($1, $2::text::pg_lsn) \
                     ON CONFLICT (slot) DO UPDATE SET confirmed_lsn = \
                     greatest({table}.confirmed_lsn, excluded.confirmed_lsn), updated_at = now()",
                    table = self.tables.table("checkpoints"),
                    in_flight = self.tables.table("loads_in_flight"),
                ),
                &[&self.tables.slot(), &confirmed.to_string()],
            )
            .await
            .map(drop)
            .map_err(self.tables.failed("storing the confirmed LSN"))
    }

    /// Removes this slot's checkpoint and loads in flight (teardown; a slot created anew).
    pub async fn clear(&self, client: &Client) -> Result<(), CheckpointError> {
        self.tables.clear(client, &TABLES).await
    }
}
