//! Snapshot copy progress, kept in the source's state schema next to the checkpoint: per table
//! its copy's generation, state and chunk plan, and per chunk whether it is in StarRocks. After a
//! crash the next start copies only the chunks not recorded here (resumable by chunk).
//!
//! A table's copy goes `pending` (asked for; the target is emptied next) → `copying` (planned:
//! the chunk boundaries are stored, chunks are recorded as they finish) → `done`. A resync starts
//! a new generation, which forgets the old chunks. Table naming, schema creation, clearing and
//! the error type are the state-table plumbing it shares with the checkpoint store
//! (`postgres::state_table`).

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::postgres::state_table::{StateError, StateStore, StateTables};

/// A key boundary: the key columns' values as text, in key order.
pub type KeyBound = Vec<String>;

/// Where a table's copy stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyRecord {
    /// Asked for, not planned: its target must be emptied before the first chunk.
    Pending {
        generation: i32,
    },
    /// Planned: `boundaries` split the key space into `boundaries.len() + 1` chunks; `done` are
    /// the finished ones with their row counts.
    Copying {
        generation: i32,
        rows_estimated: u64,
        boundaries: Vec<KeyBound>,
        done: HashMap<u32, u64>,
    },
    Done {
        generation: i32,
    },
}

impl CopyRecord {
    pub fn generation(&self) -> i32 {
        match self {
            CopyRecord::Pending { generation }
            | CopyRecord::Copying { generation, .. }
            | CopyRecord::Done { generation } => *generation,
        }
    }
}

/// The copy state could not be read or written.
pub type CopyStoreError = StateError<CopyStore>;

/// Reads and writes the copy state of one slot.
#[derive(Debug, Clone)]
pub struct CopyStore {
    tables: StateTables,
}

impl StateStore for CopyStore {
    const NAME: &'static str = "snapshot";
}

/// The store's tables in the state schema.
const TABLES: [&str; 2] = ["snapshot_tables", "snapshot_chunks"];

impl CopyStore {
    pub fn new(schema: &str, slot: &str) -> CopyStore {
        CopyStore {
            tables: StateTables::new(schema, slot),
        }
    }

    /// Creates the schema and tables when missing (idempotent).
    pub async fn ensure(&self, client: &Client) -> Result<(), CopyStoreError> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {tables} (
                 slot text NOT NULL,
                 source_table text NOT NULL,
                 generation int NOT NULL,
                 state text NOT NULL CHECK (state IN ('pending', 'copying', 'done')),
                 rows_estimated bigint NOT NULL DEFAULT 0,
                 boundaries jsonb,
                 updated_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (slot, source_table));
             CREATE TABLE IF NOT EXISTS {chunks} (
                 slot text NOT NULL,
                 source_table text NOT NULL,
                 generation int NOT NULL,
                 chunk int NOT NULL,
                 rows_copied bigint NOT NULL,
                 copied_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (slot, source_table, generation, chunk));",
            tables = self.tables.table("snapshot_tables"),
            chunks = self.tables.table("snapshot_chunks"),
        );
        self.tables.ensure(client, &ddl).await
    }

    /// Every table's copy record (`schema.table` → record); tables never copied are absent.
    pub async fn load(
        &self,
        client: &Client,
    ) -> Result<HashMap<String, CopyRecord>, CopyStoreError> {
        let rows = client
            .query(
                &format!(
                    "SELECT source_table, generation, state, rows_estimated, boundaries::text \
                       FROM {} WHERE slot = $1",
                    self.tables.table("snapshot_tables")
                ),
                &[&self.tables.slot()],
            )
            .await
            .map_err(self.tables.failed("reading the table copies"))?;
        let chunk_rows = client
            .query(
                &format!(
                    "SELECT c.source_table, c.chunk, c.rows_copied FROM {chunks} c \
                       JOIN {tables} t USING (slot, source_table, generation) \
                      WHERE c.slot = $1 AND t.state = 'copying'",
                    chunks = self.tables.table("snapshot_chunks"),
                    tables = self.tables.table("snapshot_tables"),
                ),
                &[&self.tables.slot()],
            )
            .await
            .map_err(self.tables.failed("reading the copied chunks"))?;
        let mut done: HashMap<String, HashMap<u32, u64>> = HashMap::new();
        for row in &chunk_rows {
            let (Ok(chunk), Ok(rows)) = (
                u32::try_from(row.get::<_, i32>(1)),
                u64::try_from(row.get::<_, i64>(2)),
            ) else {
                continue;
            };
            done.entry(row.get(0)).or_default().insert(chunk, rows);
        }
        let mut records = HashMap::with_capacity(rows.len());
        for row in &rows {
            let table: String = row.get(0);
            let generation: i32 = row.get(1);
            let state: String = row.get(2);
            let record = match state.as_str() {
                "done" => CopyRecord::Done { generation },
                "copying" => {
                    let boundaries = row
                        .get::<_, Option<String>>(4)
                        .and_then(|json| serde_json::from_str::<Vec<KeyBound>>(&json).ok());
                    match boundaries {
                        Some(boundaries) => CopyRecord::Copying {
                            generation,
                            rows_estimated: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
                            boundaries,
                            done: done.remove(&table).unwrap_or_default(),
                        },
                        // An unreadable plan: plan (and empty the target) again.
                        None => {
                            tracing::warn!(%table, "unreadable snapshot chunk plan: the table is copied again from the start");
                            CopyRecord::Pending { generation }
                        }
                    }
                }
                _ => CopyRecord::Pending { generation },
            };
            records.insert(table, record);
        }
        Ok(records)
    }

    /// Asks for a fresh copy of `table` in a new generation (its earlier chunks no longer
    /// count). Returns the generation.
    pub async fn request(&self, client: &Client, table: &str) -> Result<i32, CopyStoreError> {
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO {tables} AS t (slot, source_table, generation, state) \
                     VALUES ($1, $2, 1, 'pending') \
                     ON CONFLICT (slot, source_table) DO UPDATE SET \
                       generation = t.generation + 1, state = 'pending', boundaries = NULL, \
                       rows_estimated = 0, updated_at = now() \
                     RETURNING generation",
                    tables = self.tables.table("snapshot_tables"),
                ),
                &[&self.tables.slot(), &table],
            )
            .await
            .map_err(self.tables.failed("recording a copy request"))?;
        let generation: i32 = row.get(0);
        client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE slot = $1 AND source_table = $2 AND generation < $3",
                    self.tables.table("snapshot_chunks")
                ),
                &[&self.tables.slot(), &table, &generation],
            )
            .await
            .map_err(self.tables.failed("forgetting an earlier copy's chunks"))?;
        Ok(generation)
    }

    /// Stores the chunk plan of `table`'s copy `generation` (its target is empty by now).
    pub async fn planned(
        &self,
        client: &Client,
        table: &str,
        generation: i32,
        rows_estimated: u64,
        boundaries: &[KeyBound],
    ) -> Result<(), CopyStoreError> {
        let json = serde_json::to_string(boundaries).unwrap_or_else(|_| "[]".into());
        client
            .execute(
                &format!(
                    "UPDATE {} SET state = 'copying', boundaries = $4::text::jsonb, \
                       rows_estimated = $5, updated_at = now() \
                     WHERE slot = $1 AND source_table = $2 AND generation = $3",
                    self.tables.table("snapshot_tables")
                ),
                &[
                    &self.tables.slot(),
                    &table,
                    &generation,
                    &json,
                    &i64::try_from(rows_estimated).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map(drop)
            .map_err(self.tables.failed("storing a chunk plan"))
    }

    /// Chunk `chunk` of `table`'s copy `generation` is in StarRocks.
    pub async fn chunk_done(
        &self,
        client: &Client,
        table: &str,
        generation: i32,
        chunk: u32,
        rows: u64,
    ) -> Result<(), CopyStoreError> {
        client
            .execute(
                &format!(
                    "INSERT INTO {} (slot, source_table, generation, chunk, rows_copied) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    self.tables.table("snapshot_chunks")
                ),
                &[
                    &self.tables.slot(),
                    &table,
                    &generation,
                    &i32::try_from(chunk).unwrap_or(i32::MAX),
                    &i64::try_from(rows).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map(drop)
            .map_err(self.tables.failed("recording a copied chunk"))
    }

    /// Every chunk of `table`'s copy `generation` is in StarRocks.
    pub async fn table_done(
        &self,
        client: &Client,
        table: &str,
        generation: i32,
    ) -> Result<(), CopyStoreError> {
        client
            .execute(
                &format!(
                    "UPDATE {} SET state = 'done', updated_at = now() \
                     WHERE slot = $1 AND source_table = $2 AND generation = $3",
                    self.tables.table("snapshot_tables")
                ),
                &[&self.tables.slot(), &table, &generation],
            )
            .await
            .map(drop)
            .map_err(self.tables.failed("recording a finished copy"))
    }

    /// Removes this slot's copy state (teardown; a slot created anew). Missing tables are fine.
    pub async fn clear(&self, client: &Client) -> Result<(), CopyStoreError> {
        self.tables.clear(client, &TABLES).await
    }
}
