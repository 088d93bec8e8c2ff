//! The in-memory model of a StarRocks cluster's data that every protocol side of the sim shares:
//! databases → Primary Key tables → rows.
//!
//! Owns names, schemas, rows and the DDL/DML rules of reference §6–§7 (type validation, key rules,
//! upsert/delete/partial update/merge_condition). It is plain data: no locking, no I/O, no
//! transactions — the sim wraps it in a lock, applies a load's [`ChangeBatch`] only when the load
//! commits (so rows become visible exactly at commit), and snapshots it to disk with serde. The
//! HTTP side builds batches from Stream Load bodies; the MySQL side builds [`TableSpec`]s from
//! CREATE TABLE and reads rows back for SELECT and `information_schema`.
//!
//! Database and table names are case-sensitive (as in StarRocks); column names are not.

mod key;
mod row;
mod table;
mod types;
mod value;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use key::PRIMARY_KEY_LIMIT_BYTES;
pub(crate) use table::PreparedBatch;
pub use table::{
    ApplyStats, Change, ChangeBatch, ChangeOp, ColumnDef, ColumnPosition, Table, TableSpec,
};
pub use types::{
    ColumnType, MAX_CHAR_BYTES, MAX_DECIMAL_PRECISION, MAX_JSON_BYTES, MAX_VARCHAR_BYTES,
    STRING_BYTES,
};
pub use value::{ConversionError, ConversionErrorKind, Date, DateTime, Decimal, Value};

/// Every way a catalog operation can fail. `Display` gives the StarRocks wording where one is
/// known (reference §3), so protocol sides can pass it through unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    /// The database does not exist.
    #[error("unknown database, database={database}")]
    UnknownDatabase {
        /// Database name.
        database: String,
    },
    /// The table does not exist in an existing database.
    #[error("unknown table \"{database}.{table}\"")]
    UnknownTable {
        /// Database name.
        database: String,
        /// Table name.
        table: String,
    },
    /// CREATE DATABASE of an existing name without IF NOT EXISTS.
    #[error("Can't create database '{database}'; database exists")]
    DatabaseExists {
        /// Database name.
        database: String,
    },
    /// CREATE TABLE of an existing name without IF NOT EXISTS.
    #[error("Table '{table}' already exists")]
    TableExists {
        /// Table name.
        table: String,
    },
    /// A column name that the table does not have.
    #[error("Unknown column '{column}' in '{table}'")]
    UnknownColumn {
        /// Table name.
        table: String,
        /// Column name as given.
        column: String,
    },
    /// Two columns with the same name (ignoring case).
    #[error("Duplicate column name '{column}'")]
    DuplicateColumn {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
    },
    /// MODIFY COLUMN that some stored value does not survive, or of a key column.
    #[error("Can not change column `{column}` of table `{table}` to {to}: {reason}")]
    ColumnTypeChange {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
        /// The new type.
        to: String,
        /// Why not.
        reason: String,
    },
    /// DROP COLUMN of a key column.
    #[error("Can not drop key column '{column}' of primary key table '{table}'")]
    KeyColumnDrop {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
    },
    /// A table definition that breaks the Primary Key rules.
    #[error("invalid definition of table '{table}': {reason}")]
    InvalidTable {
        /// Table name.
        table: String,
        /// What rule was broken.
        reason: String,
    },
    /// A DEFAULT that does not convert to the column type.
    #[error("Invalid default value for '{column}': {reason}")]
    InvalidDefault {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
        /// Conversion failure.
        reason: String,
    },
    /// A type string that does not parse.
    #[error("invalid column type '{text}': {reason}")]
    InvalidType {
        /// The type text.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A type StarRocks has but the sim does not model, or StarRocks does not have (TIME, UUID).
    #[error("unsupported column type {name}")]
    UnsupportedType {
        /// Upper-case type name.
        name: String,
    },
    /// A batch that does not carry every key column.
    #[error("key column '{column}' of table '{table}' is missing from the load columns")]
    MissingKeyColumn {
        /// Table name.
        table: String,
        /// Key column name.
        column: String,
    },
    /// NULL for a NOT NULL column.
    #[error("NULL value in non-nullable column '{column}'")]
    NullInNotNull {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
    },
    /// A value of the wrong kind or out of the column type's range.
    #[error("invalid value for column '{column}' of table '{table}': {reason}")]
    InvalidValue {
        /// Table name.
        table: String,
        /// Column name (empty when the problem is the row shape).
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// The encoded Primary Key is longer than [`PRIMARY_KEY_LIMIT_BYTES`].
    #[error("primary key size exceed the limit.")]
    PrimaryKeyTooLong {
        /// Table name.
        table: String,
        /// Encoded size.
        bytes: usize,
    },
}

/// One database: a namespace of tables.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Database {
    tables: BTreeMap<String, Table>,
}

impl Database {
    /// Table names in sorted order.
    pub fn table_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tables.keys().map(String::as_str)
    }

    /// Tables in name order.
    pub fn tables(&self) -> impl Iterator<Item = &Table> + '_ {
        self.tables.values()
    }

    /// A table by exact name.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }
}

/// All databases. Operations take `&mut self`; share it behind a lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    databases: BTreeMap<String, Database>,
    next_table_id: u64,
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog::new()
    }
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog {
            databases: BTreeMap::new(),
            next_table_id: 10_001,
        }
    }

    /// Database names in sorted order.
    pub fn database_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.databases.keys().map(String::as_str)
    }

    /// A database by exact name.
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.get(name)
    }

    /// Creates a database. Returns `false` when it existed and `if_not_exists` was set.
    pub fn create_database(
        &mut self,
        name: &str,
        if_not_exists: bool,
    ) -> Result<bool, CatalogError> {
        if self.databases.contains_key(name) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(CatalogError::DatabaseExists {
                    database: name.to_string(),
                })
            };
        }
        self.databases.insert(name.to_string(), Database::default());
        Ok(true)
    }

    /// Drops a database and its tables. Returns `false` when it was absent and `if_exists` set.
    pub fn drop_database(&mut self, name: &str, if_exists: bool) -> Result<bool, CatalogError> {
        match self.databases.remove(name) {
            Some(_) => Ok(true),
            None if if_exists => Ok(false),
            None => Err(CatalogError::UnknownDatabase {
                database: name.to_string(),
            }),
        }
    }

    /// Creates a table from a spec (validated by [`Table::new`]). Returns `false` when a table of
    /// that name existed and `if_not_exists` was set (the existing table is left unchanged).
    pub fn create_table(
        &mut self,
        database: &str,
        spec: TableSpec,
        if_not_exists: bool,
    ) -> Result<bool, CatalogError> {
        let id = self.next_table_id;
        let db = self.database_mut(database)?;
        if db.tables.contains_key(&spec.name) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(CatalogError::TableExists { table: spec.name })
            };
        }
        let table = Table::new(id, spec)?;
        db.tables.insert(table.name().to_string(), table);
        self.next_table_id += 1;
        Ok(true)
    }

    /// Drops a table. Returns `false` when it was absent and `if_exists` was set.
    pub fn drop_table(
        &mut self,
        database: &str,
        table: &str,
        if_exists: bool,
    ) -> Result<bool, CatalogError> {
        let db = self.database_mut(database)?;
        match db.tables.remove(table) {
            Some(_) => Ok(true),
            None if if_exists => Ok(false),
            None => Err(CatalogError::UnknownTable {
                database: database.to_string(),
                table: table.to_string(),
            }),
        }
    }

    /// Removes every row of a table.
    pub fn truncate_table(&mut self, database: &str, table: &str) -> Result<(), CatalogError> {
        self.table_mut(database, table)?.truncate();
        Ok(())
    }

    /// A table, or the StarRocks "unknown database"/"unknown table" error.
    pub fn table(&self, database: &str, table: &str) -> Result<&Table, CatalogError> {
        let db = self
            .databases
            .get(database)
            .ok_or_else(|| CatalogError::UnknownDatabase {
                database: database.to_string(),
            })?;
        db.tables
            .get(table)
            .ok_or_else(|| CatalogError::UnknownTable {
                database: database.to_string(),
                table: table.to_string(),
            })
    }

    /// A table for modification (ADD/DROP COLUMN, upsert, apply).
    pub fn table_mut(&mut self, database: &str, table: &str) -> Result<&mut Table, CatalogError> {
        let db = self.database_mut(database)?;
        db.tables
            .get_mut(table)
            .ok_or_else(|| CatalogError::UnknownTable {
                database: database.to_string(),
                table: table.to_string(),
            })
    }

    /// Number of rows in a table.
    pub fn row_count(&self, database: &str, table: &str) -> Result<usize, CatalogError> {
        Ok(self.table(database, table)?.row_count())
    }

    fn database_mut(&mut self, name: &str) -> Result<&mut Database, CatalogError> {
        self.databases
            .get_mut(name)
            .ok_or_else(|| CatalogError::UnknownDatabase {
                database: name.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_and_tables_lifecycle() {
        let mut c = Catalog::new();
        assert!(c.create_database("db", false).unwrap());
        assert!(!c.create_database("db", true).unwrap());
        assert_eq!(
            c.create_database("db", false).unwrap_err().to_string(),
            "Can't create database 'db'; database exists"
        );
        let spec = TableSpec::new("t")
            .column(ColumnDef::new("id", ColumnType::Int).not_null())
            .primary_key(&["id"]);
        assert!(c.create_table("db", spec.clone(), false).unwrap());
        assert!(!c.create_table("db", spec.clone(), true).unwrap());
        assert_eq!(
            c.create_table("nodb", spec, false).unwrap_err().to_string(),
            "unknown database, database=nodb"
        );
        assert_eq!(
            c.table("db", "T").unwrap_err().to_string(),
            "unknown table \"db.T\""
        );
        c.table_mut("db", "t")
            .unwrap()
            .upsert(vec![Value::Int(1)])
            .unwrap();
        assert_eq!(c.row_count("db", "t").unwrap(), 1);
        c.truncate_table("db", "t").unwrap();
        assert_eq!(c.row_count("db", "t").unwrap(), 0);
        assert!(c.drop_table("db", "t", false).unwrap());
        assert!(!c.drop_table("db", "t", true).unwrap());
        assert!(c.drop_database("db", false).unwrap());
        assert_eq!(c.database_names().count(), 0);
    }
}
