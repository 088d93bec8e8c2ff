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
//!
//! A re-formed batch must be the same bytes, not only the same changes, so the record also keeps
//! what the batch took from outside the stream: its `_starwal_synced_at`, and the values its moved
//! rows (a key change leaving TOASTed columns unchanged, invariant 4) were completed with — each
//! moved row's key and the source row read for it, or that there was none — one row per moved row
//! in `moved_rows`, the values as the text the source gave. They are written (upserted by number)
//! under the load's label before the record names that label, never deleted first, and removed
//! with the record (a later record of the table, or the confirmation that forgets it), so a crash
//! at any step leaves the recorded label with its moved rows — also when a re-formed batch records
//! its label again. A restart reads them one at a time as the re-formed batch asks, not all
//! tables' at once (invariant 8).
//! A streamed source transaction (`STARWAL_STREAMING=on`) has a StarRocks transaction per table
//! it touches, several of which may be open on one table beside its plain loads: each is a row
//! of its own in `streams_in_flight` (table, label, first LSN, commit LSN once prepared), never
//! replacing the table's load record or another's ([`CheckpointStore::begin_stream`]).
//! Tables are created on first use; state is removed only by [`CheckpointStore::clear`]: at
//! teardown, and when a slot is created anew (an earlier slot's higher LSN would make it skip
//! transactions).

use std::sync::Arc;

use tokio_postgres::Client;

use tokio_postgres::types::{ToSql, Type};

use super::state_table::{StateError, StateStore, StateTables};
use super::value::PgTimestamp;
use super::{ChangePosition, Lsn};

/// A load that was about to be sent when the state was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightLoad {
    pub table: String,
    /// The label of the batch's first part (the others derive from the same range).
    pub label: String,
    pub first: ChangePosition,
    pub last: ChangePosition,
    /// The `_starwal_synced_at` its rows carry; `None` in a record written before it was kept.
    pub synced_at: Option<PgTimestamp>,
    /// How its moved rows were completed, in the order the batch asked: written by
    /// [`CheckpointStore::begin_load`]; empty as [`CheckpointStore::load`] returns it (a re-formed
    /// batch reads them one at a time, [`CheckpointStore::recorded_moved_row`], so a restart
    /// does not hold every table's at once).
    pub moved: Vec<MovedRow>,
}

/// A row of a batch whose key changed and whose unchanged TOAST values were read from the source:
/// what that read returned, so a re-formed batch is completed with the same values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedRow {
    /// The new key's values as text, in key column order.
    pub key: Vec<Option<String>>,
    /// Every column of the source row as text (`None` where NULL); `None` when the source had no
    /// row with that key any more.
    pub values: Option<Vec<Option<String>>>,
}

/// A StarRocks transaction recorded in flight (see [`CheckpointStore::begin_transaction`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTransaction {
    pub table: String,
    pub label: String,
    /// Prepared before the crash: a restart commits it; otherwise it rolls it back.
    pub prepared: bool,
}

/// The StarRocks transaction of one table and one streamed source transaction
/// (`STARWAL_STREAMING`), recorded before `begin` (see [`CheckpointStore::begin_stream`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedStream {
    pub table: String,
    pub label: String,
    /// The LSN of the source transaction's first streamed change.
    pub first_lsn: Lsn,
    /// The source transaction's commit LSN, once its StarRocks transaction was prepared (the
    /// restart commits it and skips that source transaction on this table); `None` while open
    /// (the restart rolls it back and the source transaction streams again whole).
    pub prepared_at: Option<Lsn>,
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
    /// The statements run around every load ([`CheckpointStore::record`],
    /// [`CheckpointStore::confirm`]), rendered once: quoting the table names and formatting the
    /// text each time cost a few allocations per load.
    record_sql: Arc<str>,
    confirm_sql: Arc<str>,
}

impl StateStore for CheckpointStore {
    const NAME: &'static str = "checkpoint";
}

/// The store's tables in the state schema.
const TABLES: [&str; 4] = [
    "checkpoints",
    "loads_in_flight",
    "moved_rows",
    "streams_in_flight",
];

/// Text bytes of moved rows written per statement: a batch can move many rows with large values,
/// and one statement's parameters are held whole by the client (a second copy, in a buffer that
/// doubles as it grows, outside the buffer count) and the server. 1 MiB keeps that copy small
/// next to the 32 MiB invariant 8 allows above the cap; at 16 MiB a key change of 1 000 rows of
/// 100 kB under a 16 MiB cap peaked 12 MiB over the bound.
const MOVED_ROWS_CHUNK_BYTES: usize = 1024 * 1024;

impl CheckpointStore {
    /// A store for `slot` in `schema`.
    pub fn new(schema: &str, slot: &str) -> CheckpointStore {
        let tables = StateTables::new(schema, slot);
        let record_sql = format!(
            "WITH recorded AS (INSERT INTO {in_flight} \
               (slot, target_table, label, first_lsn, first_seq, last_lsn, last_seq, synced_at_us, \
                kind, prepared) \
             VALUES ($1, $2, $3, $4::text::pg_lsn, $5, $6::text::pg_lsn, $7, $8, $10, false) \
             ON CONFLICT (slot, target_table) DO UPDATE SET label = excluded.label, \
             first_lsn = excluded.first_lsn, first_seq = excluded.first_seq, \
             last_lsn = excluded.last_lsn, last_seq = excluded.last_seq, \
             synced_at_us = excluded.synced_at_us, kind = excluded.kind, \
             prepared = false) \
             DELETE FROM {moved_table} WHERE slot = $1 AND target_table = $2 \
             AND (label <> $3 OR n > $9)",
            in_flight = tables.table("loads_in_flight"),
            moved_table = tables.table("moved_rows"),
        );
        let confirm_sql = format!(
            "WITH forgotten AS (DELETE FROM {in_flight} \
               WHERE slot = $1 AND last_lsn < $2::text::pg_lsn RETURNING target_table, label), \
             unmoved AS (DELETE FROM {moved} m USING forgotten f \
               WHERE m.slot = $1 AND m.target_table = f.target_table AND m.label = f.label), \
             streamed AS (DELETE FROM {streams} \
               WHERE slot = $1 AND commit_lsn < $2::text::pg_lsn) \
             INSERT INTO {table} (slot, confirmed_lsn) VALUES ($1, $2::text::pg_lsn) \
             ON CONFLICT (slot) DO UPDATE SET confirmed_lsn = \
             greatest({table}.confirmed_lsn, excluded.confirmed_lsn), updated_at = now()",
            table = tables.table("checkpoints"),
            in_flight = tables.table("loads_in_flight"),
            moved = tables.table("moved_rows"),
            streams = tables.table("streams_in_flight"),
        );
        CheckpointStore {
            tables,
            record_sql: record_sql.into(),
            confirm_sql: confirm_sql.into(),
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
                 ALTER TABLE {in_flight} ADD COLUMN IF NOT EXISTS last_seq bigint NOT NULL DEFAULT 0;
                 ALTER TABLE {in_flight} ADD COLUMN IF NOT EXISTS synced_at_us bigint;
                 ALTER TABLE {in_flight} ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'load';
                 ALTER TABLE {in_flight} ADD COLUMN IF NOT EXISTS prepared boolean NOT NULL DEFAULT false;
                 CREATE TABLE IF NOT EXISTS {streams} (
                     slot text NOT NULL,
                     target_table text NOT NULL,
                     label text NOT NULL,
                     first_lsn pg_lsn NOT NULL,
                     commit_lsn pg_lsn,
                     PRIMARY KEY (slot, target_table, label));
                 CREATE TABLE IF NOT EXISTS {moved} (
                     slot text NOT NULL,
                     target_table text NOT NULL,
                     label text NOT NULL,
                     n bigint NOT NULL,
                     key text[] NOT NULL,
                     row_values text[],
                     PRIMARY KEY (slot, target_table, label, n));",
            checkpoints = self.tables.table("checkpoints"),
            in_flight = self.tables.table("loads_in_flight"),
            moved = self.tables.table("moved_rows"),
            streams = self.tables.table("streams_in_flight"),
        );
        self.tables.ensure(client, &ddl).await
    }

    /// Makes this session's commits durable before they return (`synchronous_commit = on`),
    /// whatever the server's default: the restart rule trusts what the store says, and a
    /// transaction recorded prepared is committed in StarRocks right after the write returns.
    /// With `synchronous_commit = off` a Postgres crash could lose that record after the commit
    /// went out, and the restart would find a committed label it thinks was never prepared.
    pub async fn make_durable(&self, client: &Client) -> Result<(), CheckpointError> {
        client
            .batch_execute("SET synchronous_commit = on")
            .await
            .map_err(
                self.tables
                    .failed("setting synchronous_commit = on for the state writes"),
            )
    }

    /// The stored checkpoint, or the default (`0/0`, nothing in flight) for a new slot. The
    /// loads' moved rows are not read here (see [`InFlightLoad::moved`]).
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
                    "SELECT target_table, label, first_lsn::text, last_lsn::text, first_seq, last_seq, \
                     synced_at_us FROM {} WHERE slot = $1 ORDER BY target_table",
                    self.tables.table("loads_in_flight")
                ),
                &[&self.tables.slot()],
            )
            .await
            .map_err(self.tables.failed("reading the loads in flight"))?;
        let in_flight: Vec<InFlightLoad> = rows
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
                        synced_at: row.get::<_, Option<i64>>(6).map(PgTimestamp),
                        moved: Vec::new(),
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

    /// Records `load` as in flight for its table (replacing the table's previous one), with its
    /// moved rows. Call it before sending the load.
    ///
    /// Not one transaction (the client is shared by the loaders, so a `BEGIN` would take in
    /// their statements too), but ordered so that a crash between any two statements leaves the
    /// recorded label with exactly its moved rows (invariant 5): the label's rows are upserted
    /// by number first — a re-formed batch records its label again with the same rows, so
    /// nothing the record names is ever missing in between, not even for a moment — then the
    /// record names the label and, in the same statement, the table's rows of other labels and
    /// those numbered past this load's (rows are numbered from 1) go.
    pub async fn begin_load(
        &self,
        client: &Client,
        load: &InFlightLoad,
    ) -> Result<(), CheckpointError> {
        self.record(client, load, "load").await
    }

    /// Records the StarRocks transaction `load.label`, beginning at `load.first`, as open (not
    /// prepared) for its table, replacing the table's previous record. Call it before `begin`:
    /// a restart rolls it back and reads its changes again from `load.first` (a transaction's
    /// parts need not be re-formed exactly: none of them was ever visible).
    pub async fn begin_transaction(
        &self,
        client: &Client,
        load: &InFlightLoad,
    ) -> Result<(), CheckpointError> {
        self.record(client, load, "txn").await
    }

    /// Records table `load.table` as joining multi-table transaction `load.label` with its
    /// changes `load.first..=load.last` (replacing the table's previous record). Call it before
    /// `begin`, or before the table's first load into a transaction already begun: a restart
    /// finds the label's state and skips the table's changes through the recorded end
    /// (committed) or reads them again from the recorded start (not).
    pub async fn begin_multi(
        &self,
        client: &Client,
        load: &InFlightLoad,
    ) -> Result<(), CheckpointError> {
        self.record(client, load, "multi").await
    }

    /// Records that table `table`'s changes in multi-table transaction `label` end at `last`.
    /// Call it for every table of the transaction before `commit`. `false` when the table's
    /// record names another label.
    pub async fn multi_final(
        &self,
        client: &Client,
        table: &str,
        label: &str,
        last: ChangePosition,
    ) -> Result<bool, CheckpointError> {
        self.record_final(
            client,
            table,
            label,
            last,
            "multi",
            "recording the end of a multi-table transaction",
        )
        .await
    }

    /// Records that the StarRocks transaction `label` of `table` is prepared and ends at `last`.
    /// Call it after `prepare` answered and before `commit`: a restart then commits it instead of
    /// rolling it back, and skips its changes through `last` (invariant 5, two-phase commit).
    /// `false` when the table's record names another label (nothing was recorded).
    pub async fn transaction_prepared(
        &self,
        client: &Client,
        table: &str,
        label: &str,
        last: ChangePosition,
    ) -> Result<bool, CheckpointError> {
        self.record_final(
            client,
            table,
            label,
            last,
            "txn",
            "recording a prepared transaction",
        )
        .await
    }

    /// Marks the `kind` record of `table` under `label` final (`prepared`) with its end `last`;
    /// `false` when the table's record names another label.
    async fn record_final(
        &self,
        client: &Client,
        table: &str,
        label: &str,
        last: ChangePosition,
        kind: &str,
        what: &'static str,
    ) -> Result<bool, CheckpointError> {
        let updated = client
            .execute(
                &format!(
                    "UPDATE {} SET prepared = true, last_lsn = $4::text::pg_lsn, last_seq = $5 \
                     WHERE slot = $1 AND target_table = $2 AND label = $3 AND kind = $6",
                    self.tables.table("loads_in_flight"),
                ),
                &[
                    &self.tables.slot(),
                    &table,
                    &label,
                    &last.commit.to_string(),
                    &i64::from(last.seq),
                    &kind,
                ],
            )
            .await
            .map_err(self.tables.failed(what))?;
        Ok(updated == 1)
    }

    /// The StarRocks transactions recorded in flight, by target table: their label and whether
    /// they were prepared (their ranges are in [`Checkpoint::in_flight`] like any load's).
    pub async fn transactions(
        &self,
        client: &Client,
    ) -> Result<Vec<RecordedTransaction>, CheckpointError> {
        self.transactions_of_kind(client, "txn").await
    }

    /// The multi-table transactions (`STARWAL_COMMIT_MODE=transaction`) recorded in flight, one
    /// row per table that joined one: label, and whether its ranges are final (recorded just
    /// before `commit`).
    pub async fn multi_transactions(
        &self,
        client: &Client,
    ) -> Result<Vec<RecordedTransaction>, CheckpointError> {
        self.transactions_of_kind(client, "multi").await
    }

    async fn transactions_of_kind(
        &self,
        client: &Client,
        kind: &str,
    ) -> Result<Vec<RecordedTransaction>, CheckpointError> {
        let rows = client
            .query(
                &format!(
                    "SELECT target_table, label, prepared FROM {} WHERE slot = $1 AND kind = $2 \
                     ORDER BY target_table",
                    self.tables.table("loads_in_flight")
                ),
                &[&self.tables.slot(), &kind],
            )
            .await
            .map_err(self.tables.failed("reading the transactions in flight"))?;
        Ok(rows
            .iter()
            .map(|row| RecordedTransaction {
                table: row.get(0),
                label: row.get(1),
                prepared: row.get(2),
            })
            .collect())
    }

    /// Records the StarRocks transaction `label` of `table` for a streamed source transaction
    /// whose first change to the table is at `first`, as open. Call it before `begin`. Kept
    /// apart from the table's load record ([`CheckpointStore::begin_load`]): several streamed
    /// transactions can be open on one table while its plain loads go on, and each record must
    /// outlive the others until its transaction is settled.
    pub async fn begin_stream(
        &self,
        client: &Client,
        table: &str,
        label: &str,
        first: Lsn,
    ) -> Result<(), CheckpointError> {
        client
            .execute_typed(
                &format!(
                    "INSERT INTO {} (slot, target_table, label, first_lsn, commit_lsn) \
                     VALUES ($1, $2, $3, $4::text::pg_lsn, NULL) \
                     ON CONFLICT (slot, target_table, label) DO UPDATE \
                     SET first_lsn = excluded.first_lsn, commit_lsn = NULL",
                    self.tables.table("streams_in_flight"),
                ),
                &[
                    (&self.tables.slot(), Type::TEXT),
                    (&table, Type::TEXT),
                    (&label, Type::TEXT),
                    (&first.to_string(), Type::TEXT),
                ],
            )
            .await
            .map(drop)
            .map_err(self.tables.failed("recording a streamed transaction"))
    }

    /// Records that the streamed StarRocks transaction `label` of `table` is prepared for the
    /// source transaction committed at `commit`. Call it after `prepare` and before `commit`.
    /// `false` when no such record exists (nothing was recorded).
    pub async fn stream_prepared(
        &self,
        client: &Client,
        table: &str,
        label: &str,
        commit: Lsn,
    ) -> Result<bool, CheckpointError> {
        let updated = client
            .execute_typed(
                &format!(
                    "UPDATE {} SET commit_lsn = $4::text::pg_lsn \
                     WHERE slot = $1 AND target_table = $2 AND label = $3",
                    self.tables.table("streams_in_flight"),
                ),
                &[
                    (&self.tables.slot(), Type::TEXT),
                    (&table, Type::TEXT),
                    (&label, Type::TEXT),
                    (&commit.to_string(), Type::TEXT),
                ],
            )
            .await
            .map_err(
                self.tables
                    .failed("recording a prepared streamed transaction"),
            )?;
        Ok(updated == 1)
    }

    /// Forgets the streamed StarRocks transaction `label` of `table` (rolled back: nothing of it
    /// is in StarRocks, and the source transaction streams again if it commits).
    pub async fn forget_stream(
        &self,
        client: &Client,
        table: &str,
        label: &str,
    ) -> Result<(), CheckpointError> {
        client
            .execute_typed(
                &format!(
                    "DELETE FROM {} WHERE slot = $1 AND target_table = $2 AND label = $3",
                    self.tables.table("streams_in_flight"),
                ),
                &[
                    (&self.tables.slot(), Type::TEXT),
                    (&table, Type::TEXT),
                    (&label, Type::TEXT),
                ],
            )
            .await
            .map(drop)
            .map_err(self.tables.failed("forgetting a streamed transaction"))
    }

    /// The streamed StarRocks transactions recorded in flight.
    pub async fn streams(&self, client: &Client) -> Result<Vec<RecordedStream>, CheckpointError> {
        let rows = client
            .query(
                &format!(
                    "SELECT target_table, label, commit_lsn::text, first_lsn::text FROM {} \
                     WHERE slot = $1 ORDER BY target_table, label",
                    self.tables.table("streams_in_flight")
                ),
                &[&self.tables.slot()],
            )
            .await
            .map_err(
                self.tables
                    .failed("reading the streamed transactions in flight"),
            )?;
        Ok(rows
            .iter()
            .map(|row| RecordedStream {
                table: row.get(0),
                label: row.get(1),
                // A value that does not parse cannot be written by `stream_prepared`.
                prepared_at: row
                    .get::<_, Option<String>>(2)
                    .and_then(|lsn| lsn.parse().ok()),
                // Written from an `Lsn` by `begin_stream`.
                first_lsn: row.get::<_, String>(3).parse().unwrap_or(Lsn::ZERO),
            })
            .collect())
    }

    async fn record(
        &self,
        client: &Client,
        load: &InFlightLoad,
        kind: &str,
    ) -> Result<(), CheckpointError> {
        let mut written = 0;
        while written < load.moved.len() {
            let chunk = moved_rows_chunk(&load.moved[written..]);
            self.write_moved_rows(client, load, written, chunk).await?;
            written += chunk.len();
        }
        let moved_count = i64::try_from(load.moved.len()).unwrap_or(i64::MAX);
        // Typed parameters: one round trip (an unnamed statement parsed, bound and run
        // together) instead of prepare, execute and close — this runs before every load.
        client
            .execute_typed(
                &self.record_sql,
                &[
                    (&self.tables.slot(), Type::TEXT),
                    (&load.table, Type::TEXT),
                    (&load.label, Type::TEXT),
                    (&load.first.commit.to_string(), Type::TEXT),
                    (&i64::from(load.first.seq), Type::INT8),
                    (&load.last.commit.to_string(), Type::TEXT),
                    (&i64::from(load.last.seq), Type::INT8),
                    (&load.synced_at.map(|at| at.0), Type::INT8),
                    (&moved_count, Type::INT8),
                    (&kind, Type::TEXT),
                ],
            )
            .await
            .map(drop)
            .map_err(self.tables.failed("recording a load in flight"))
    }

    /// Moved row number `number` (from 0, in the order the batch asked) of the recorded `load`;
    /// `None` when it has fewer.
    pub async fn recorded_moved_row(
        &self,
        client: &Client,
        load: &InFlightLoad,
        number: usize,
    ) -> Result<Option<MovedRow>, CheckpointError> {
        // Stored from 1 (`write_moved_rows`).
        let n = i64::try_from(number).unwrap_or(i64::MAX).saturating_add(1);
        self.read_moved_row(client, load, "n = $4", &n).await
    }

    /// The recorded `load`'s moved row with key `key` (the first, when it has several); `None`
    /// when it has none. For a record whose rows are in another order than the batch asks now.
    pub async fn recorded_moved_row_by_key(
        &self,
        client: &Client,
        load: &InFlightLoad,
        key: &[Option<String>],
    ) -> Result<Option<MovedRow>, CheckpointError> {
        self.read_moved_row(client, load, "key = $4::text[]", &key)
            .await
    }

    /// The first moved row of the recorded `load` (only while the record names its label)
    /// meeting `condition` on `$4`.
    async fn read_moved_row(
        &self,
        client: &Client,
        load: &InFlightLoad,
        condition: &str,
        value: &(dyn ToSql + Sync),
    ) -> Result<Option<MovedRow>, CheckpointError> {
        let row = client
            .query_opt(
                &format!(
                    "SELECT m.key, m.row_values FROM {moved} m \
                     JOIN {in_flight} f USING (slot, target_table, label) \
                     WHERE m.slot = $1 AND m.target_table = $2 AND m.label = $3 AND m.{condition} \
                     ORDER BY m.n LIMIT 1",
                    moved = self.tables.table("moved_rows"),
                    in_flight = self.tables.table("loads_in_flight"),
                ),
                &[&self.tables.slot(), &load.table, &load.label, value],
            )
            .await
            .map_err(
                self.tables
                    .failed("reading a moved row of a load in flight"),
            )?;
        Ok(row.map(|row| MovedRow {
            key: row.get(0),
            values: row.get(1),
        }))
    }

    /// Writes `rows`, the moved rows of `load` from number `offset` on, in one statement: the
    /// keys and values flattened into two arrays, each row's slices given by its bounds.
    async fn write_moved_rows(
        &self,
        client: &Client,
        load: &InFlightLoad,
        offset: usize,
        rows: &[MovedRow],
    ) -> Result<(), CheckpointError> {
        let mut keys: Vec<Option<&str>> = Vec::new();
        let mut values: Vec<Option<&str>> = Vec::new();
        let (mut key_from, mut key_to) = (Vec::new(), Vec::new());
        let (mut values_from, mut values_to) = (Vec::new(), Vec::new());
        let mut present = Vec::with_capacity(rows.len());
        // Array bounds are int4 on the server; a chunk is far below that.
        let bound = |len: usize| i32::try_from(len).unwrap_or(i32::MAX);
        for row in rows {
            key_from.push(bound(keys.len() + 1));
            keys.extend(row.key.iter().map(Option::as_deref));
            key_to.push(bound(keys.len()));
            values_from.push(bound(values.len() + 1));
            if let Some(row_values) = &row.values {
                values.extend(row_values.iter().map(Option::as_deref));
            }
            values_to.push(bound(values.len()));
            present.push(row.values.is_some());
        }
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 11] = [
            &self.tables.slot(),
            &load.table,
            &load.label,
            &offset,
            &keys,
            &values,
            &key_from,
            &key_to,
            &values_from,
            &values_to,
            &present,
        ];
        client
            .execute(
                &format!(
                    "INSERT INTO {} (slot, target_table, label, n, key, row_values) \
                     SELECT $1, $2, $3, $4 + r.n, ($5::text[])[r.key_from:r.key_to], \
                     CASE WHEN r.present THEN ($6::text[])[r.values_from:r.values_to] END \
                     FROM unnest($7::int[], $8::int[], $9::int[], $10::int[], $11::bool[]) \
                     WITH ORDINALITY AS r(key_from, key_to, values_from, values_to, present, n) \
                     ON CONFLICT (slot, target_table, label, n) DO UPDATE \
                     SET key = excluded.key, row_values = excluded.row_values",
                    self.tables.table("moved_rows")
                ),
                &params,
            )
            .await
            .map(drop)
            .map_err(self.tables.failed("recording the moved rows of a load"))
    }

    /// Stores `confirmed` and forgets the loads whose whole range it covers (a transaction is
    /// confirmed when its commit LSN is below `confirmed`) with their moved rows, and the
    /// prepared streamed transactions it covers, in one statement. `confirmed` only ever moves forward: a lower value is ignored.
    pub async fn confirm(&self, client: &Client, confirmed: Lsn) -> Result<(), CheckpointError> {
        // One round trip (typed parameters, see `record`): this runs after every load.
        client
            .execute_typed(
                &self.confirm_sql,
                &[
                    (&self.tables.slot(), Type::TEXT),
                    (&confirmed.to_string(), Type::TEXT),
                ],
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

/// The longest prefix of `rows` (at least one row) whose text stays within
/// [`MOVED_ROWS_CHUNK_BYTES`].
fn moved_rows_chunk(rows: &[MovedRow]) -> &[MovedRow] {
    let text = |values: &[Option<String>]| -> usize {
        values
            .iter()
            .map(|v| v.as_ref().map_or(0, String::len))
            .sum()
    };
    let mut bytes = 0;
    let mut end = 0;
    for row in rows {
        bytes += text(&row.key) + row.values.as_deref().map_or(0, text);
        if end > 0 && bytes > MOVED_ROWS_CHUNK_BYTES {
            break;
        }
        end += 1;
    }
    &rows[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, value_bytes: usize) -> MovedRow {
        MovedRow {
            key: vec![Some(key.to_owned())],
            values: Some(vec![Some(key.to_owned()), Some("x".repeat(value_bytes))]),
        }
    }

    #[test]
    fn moved_rows_are_written_in_chunks_of_bounded_text_and_never_none() {
        let rows = vec![
            row("1", MOVED_ROWS_CHUNK_BYTES / 2),
            row("2", MOVED_ROWS_CHUNK_BYTES / 2),
            row("3", 10),
        ];
        assert_eq!(
            moved_rows_chunk(&rows).len(),
            1,
            "two halves and keys exceed the cap"
        );
        assert_eq!(moved_rows_chunk(&rows[1..]).len(), 2);
        // A row larger than a chunk still goes, alone.
        let huge = vec![row("4", MOVED_ROWS_CHUNK_BYTES * 2), row("5", 1)];
        assert_eq!(moved_rows_chunk(&huge).len(), 1);
        let absent = vec![MovedRow {
            key: vec![Some("6".into())],
            values: None,
        }];
        assert_eq!(moved_rows_chunk(&absent).len(), 1);
    }
}
