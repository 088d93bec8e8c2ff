//! The plumbing the two state stores share: the checkpoint store (`postgres::checkpoint`) and the
//! copy store (`postgres::snapshot::store`) both keep one slot's rows in tables of the state schema
//! (`STARWAL_STATE_SCHEMA`) on the source. [`StateTables`] names those tables (quoted,
//! schema-qualified), creates the schema with a store's tables, and deletes a slot's rows;
//! [`StateError`] names the store, the schema and the step that failed.
//!
//! Does not own any table's columns or statements: each store writes its own SQL against the
//! names it gets here. Nothing here drops a table; [`StateTables::clear`] removes one slot's rows
//! only, so agents with other slots sharing the schema keep theirs.

use std::marker::PhantomData;

use tokio_postgres::Client;

use super::sql::{quote_ident, quote_literal};

/// A store whose tables live in the state schema; its name starts the store's error messages.
pub trait StateStore {
    /// `checkpoint`, `snapshot`: "<NAME> state in schema …".
    const NAME: &'static str;
}

/// A state store could not read or write its tables. `S` tells the stores' errors apart as types
/// (each has its alias: `CheckpointError`, `CopyStoreError`).
#[derive(thiserror::Error)]
#[error("{} state in schema `{schema}`: {what}: {}", S::NAME, crate::error_text::chain(.source))]
pub struct StateError<S: StateStore> {
    schema: String,
    what: &'static str,
    #[source]
    source: tokio_postgres::Error,
    store: PhantomData<fn() -> S>,
}

impl<S: StateStore> std::fmt::Debug for StateError<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateError")
            .field("store", &S::NAME)
            .field("schema", &self.schema)
            .field("what", &self.what)
            .field("source", &self.source)
            .finish()
    }
}

/// One slot's view of the state schema.
#[derive(Debug, Clone)]
pub struct StateTables {
    schema: String,
    slot: String,
}

impl StateTables {
    /// The tables of `schema`, for the rows of `slot`.
    pub fn new(schema: &str, slot: &str) -> StateTables {
        StateTables {
            schema: schema.to_owned(),
            slot: slot.to_owned(),
        }
    }

    /// The slot whose rows the store reads and writes (the `slot` column of every state table).
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// The schema name, unquoted.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// `"schema"."name"`, ready for SQL text.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(name))
    }

    /// Maps a failed statement to the store's error, naming the step (`what`).
    pub fn failed<S: StateStore>(
        &self,
        what: &'static str,
    ) -> impl FnOnce(tokio_postgres::Error) -> StateError<S> + '_ {
        move |source| StateError {
            schema: self.schema.clone(),
            what,
            source,
            store: PhantomData,
        }
    }

    /// Creates the schema when missing, then runs `ddl` (the store's idempotent
    /// `CREATE TABLE IF NOT EXISTS …` statements). `CREATE SCHEMA IF NOT EXISTS` needs CREATE
    /// on the database even when the schema exists, so it runs only when the schema is missing:
    /// a role needs that privilege for the first start only.
    pub async fn ensure<S: StateStore>(
        &self,
        client: &Client,
        ddl: &str,
    ) -> Result<(), StateError<S>> {
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                &[&self.schema],
            )
            .await
            .map_err(self.failed("looking up the state schema"))?
            .is_some();
        let create_schema = if exists {
            String::new()
        } else {
            format!(
                "CREATE SCHEMA IF NOT EXISTS {};\n",
                quote_ident(&self.schema)
            )
        };
        client
            .batch_execute(&format!("{create_schema}{ddl}"))
            .await
            .map_err(self.failed("creating the state tables"))
    }

    /// Deletes this slot's rows from each of `tables` (names in the schema) that exists: a
    /// teardown, or a new slot that must not inherit an earlier slot's state. A table never
    /// created is fine (its store was never used).
    pub async fn clear<S: StateStore>(
        &self,
        client: &Client,
        tables: &[&str],
    ) -> Result<(), StateError<S>> {
        for name in tables {
            // A DO block, because whether the table exists is known only when it runs; it takes
            // no parameters, hence the quoted literals.
            let table = self.table(name);
            let sql = format!(
                "DO $$ BEGIN IF to_regclass({regclass}) IS NOT NULL THEN \
                   DELETE FROM {table} WHERE slot = {slot}; END IF; END $$",
                regclass = quote_literal(&table),
                slot = quote_literal(&self.slot),
            );
            client
                .batch_execute(&sql)
                .await
                .map_err(self.failed("clearing the state"))?;
        }
        Ok(())
    }
}
