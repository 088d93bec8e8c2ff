//! One Primary Key table: its ordered column definitions, its key, and its rows stored by
//! encoded key, each packed into bytes (`row.rs`) (reference §6 "Primary Key table semantics",
//! §7 "DDL").
//!
//! Owns the row-level rules: upsert replaces the whole row, delete is by key, partial update keeps
//! unlisted columns and fills defaults (or the type's zero) for new keys, `merge_condition` applies
//! an update only when the incoming value is ≥ the stored one and never gates deletes, later
//! changes in a batch win. A batch is validated completely before any row changes, so a failed
//! [`Table::apply`] leaves the table untouched. It does not parse load input (the loader does) and
//! knows nothing of transactions or visibility: callers apply a batch only at commit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::key::{encode_key_into, KeyError, RowKey};
use super::row::StoredRow;
use super::types::ColumnType;
use super::value::Value;
use super::CatalogError;

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Name as declared; lookups ignore ASCII case.
    pub name: String,
    /// Declared type.
    pub column_type: ColumnType,
    /// Whether NULL is allowed. Key columns are always NOT NULL.
    pub nullable: bool,
    /// Default as written in DDL (`DEFAULT "0"`), validated against the type at creation.
    pub default: Option<String>,
    /// Column comment (empty when none).
    pub comment: String,
}

impl ColumnDef {
    /// A nullable column without default or comment.
    pub fn new(name: impl Into<String>, column_type: ColumnType) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            column_type,
            nullable: true,
            default: None,
            comment: String::new(),
        }
    }

    /// Marks the column NOT NULL.
    pub fn not_null(mut self) -> ColumnDef {
        self.nullable = false;
        self
    }

    /// Sets the DDL default (text form, converted with the column type).
    pub fn with_default(mut self, default: impl Into<String>) -> ColumnDef {
        self.default = Some(default.into());
        self
    }

    /// Sets the comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> ColumnDef {
        self.comment = comment.into();
        self
    }

    /// The default as a typed value, `None` when the column has no default.
    pub fn default_value(&self) -> Option<Value> {
        let text = self.default.as_deref()?;
        // Validated in `check_column`; an unconvertible default cannot be stored.
        self.column_type.convert_text(&self.name, text).ok()
    }

    /// The value a new row gets when this column is not provided: the default, else NULL when
    /// nullable, else the type's zero.
    pub fn fill_value(&self) -> Value {
        match self.default_value() {
            Some(v) => v,
            None if self.nullable => Value::Null,
            None => Value::zero_of(&self.column_type),
        }
    }

    /// Whether a name refers to this column (ASCII case-insensitive, like StarRocks).
    pub fn is_named(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Everything needed to create a table; the MySQL side builds this from CREATE TABLE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    /// Table name (case-sensitive, like StarRocks table names).
    pub name: String,
    /// Columns in order; the Primary Key columns must come first, in key order.
    pub columns: Vec<ColumnDef>,
    /// Primary Key column names.
    pub primary_key: Vec<String>,
    /// `DISTRIBUTED BY HASH(...)` columns; empty means the Primary Key. Must be key columns.
    pub distribution: Vec<String>,
    /// `BUCKETS n`, if given.
    pub buckets: Option<u32>,
    /// `PROPERTIES (...)` as given.
    pub properties: BTreeMap<String, String>,
    /// Table comment.
    pub comment: String,
}

impl TableSpec {
    /// A spec with the given name and no columns yet.
    pub fn new(name: impl Into<String>) -> TableSpec {
        TableSpec {
            name: name.into(),
            columns: Vec::new(),
            primary_key: Vec::new(),
            distribution: Vec::new(),
            buckets: None,
            properties: BTreeMap::new(),
            comment: String::new(),
        }
    }

    /// Appends a column.
    pub fn column(mut self, column: ColumnDef) -> TableSpec {
        self.columns.push(column);
        self
    }

    /// Sets the Primary Key column names.
    pub fn primary_key<S: AsRef<str>>(mut self, names: &[S]) -> TableSpec {
        self.primary_key = names.iter().map(|n| n.as_ref().to_string()).collect();
        self
    }
}

/// Where `ADD COLUMN` puts the new column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnPosition {
    /// After the last column (the default).
    Last,
    /// `AFTER <column>`; must not split the key prefix.
    After(String),
}

/// What a change does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeOp {
    /// `__op` = 0: insert or replace.
    Upsert,
    /// `__op` = 1: delete by key.
    Delete,
}

/// One row change, its values aligned with [`ChangeBatch::columns`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Upsert or delete.
    pub op: ChangeOp,
    /// Values, one per batch column.
    pub values: Vec<Value>,
}

/// A load's worth of changes to one table, applied atomically at commit.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChangeBatch {
    /// Column names the values refer to; must include every key column. Names that no longer
    /// exist (dropped since the load was planned) are ignored.
    pub columns: Vec<String>,
    /// Row-mode partial update: unlisted columns keep stored values.
    pub partial_update: bool,
    /// `merge_condition` column: an upsert of an existing key applies only if the incoming value
    /// is ≥ the stored one.
    pub merge_condition: Option<String>,
    /// Changes in load order; later changes to a key win.
    pub changes: Vec<Change>,
}

/// What [`Table::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyStats {
    /// Upserts that wrote a row.
    pub upserted: u64,
    /// Deletes that removed a row.
    pub deleted: u64,
    /// Upserts skipped by `merge_condition`.
    pub skipped_by_condition: u64,
}

/// A Primary Key table with its rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "TableSnapshot", try_from = "TableSnapshot")]
pub struct Table {
    id: u64,
    spec: TableSpec,
    key_count: usize,
    rows: BTreeMap<RowKey, StoredRow>,
}

impl Table {
    /// Validates a spec against the Primary Key rules and creates an empty table.
    ///
    /// Rules (reference §7): at least one key column; key columns are the first columns in key
    /// order, NOT NULL, of key-eligible types; distribution columns are key columns; column
    /// names are unique ignoring case; defaults convert to their types.
    pub fn new(id: u64, spec: TableSpec) -> Result<Table, CatalogError> {
        let table_name = spec.name.clone();
        let invalid = |reason: String| CatalogError::InvalidTable {
            table: table_name.clone(),
            reason,
        };
        if spec.name.is_empty() {
            return Err(invalid("table name is empty".to_string()));
        }
        if spec.columns.is_empty() {
            return Err(invalid("a table needs at least one column".to_string()));
        }
        if spec.primary_key.is_empty() {
            return Err(invalid(
                "a Primary Key table needs PRIMARY KEY(...)".to_string(),
            ));
        }
        for (i, column) in spec.columns.iter().enumerate() {
            check_column(&spec.name, column)?;
            if spec.columns[..i].iter().any(|c| c.is_named(&column.name)) {
                return Err(CatalogError::DuplicateColumn {
                    table: spec.name.clone(),
                    column: column.name.clone(),
                });
            }
        }
        if spec.primary_key.len() > spec.columns.len() {
            return Err(invalid("more key columns than columns".to_string()));
        }
        for (i, key) in spec.primary_key.iter().enumerate() {
            let Some(position) = spec.columns.iter().position(|c| c.is_named(key)) else {
                return Err(CatalogError::UnknownColumn {
                    table: spec.name.clone(),
                    column: key.clone(),
                });
            };
            if position != i {
                return Err(invalid(format!(
                    "Key columns should be a ordered prefix of the schema: key column `{key}` must be column {}",
                    i + 1
                )));
            }
            let column = &spec.columns[position];
            if column.nullable {
                return Err(invalid(format!(
                    "primary key column `{}` must be NOT NULL",
                    column.name
                )));
            }
            if !column.column_type.is_key_eligible() {
                return Err(invalid(format!(
                    "primary key column `{}` cannot be of type {}",
                    column.name, column.column_type
                )));
            }
        }
        let key_count = spec.primary_key.len();
        for name in &spec.distribution {
            let is_key = spec.columns[..key_count].iter().any(|c| c.is_named(name));
            if !is_key {
                return Err(invalid(format!(
                    "distribution column `{name}` must be a primary key column"
                )));
            }
        }
        let mut spec = spec;
        // Normalise key names to the declared spelling.
        spec.primary_key = spec.columns[..key_count]
            .iter()
            .map(|c| c.name.clone())
            .collect();
        Ok(Table {
            id,
            spec,
            key_count,
            rows: BTreeMap::new(),
        })
    }

    /// The catalog-assigned id (also used as the "tablet id" in fault messages).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Table name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The spec as it stands (columns reflect ADD/DROP COLUMN).
    pub fn spec(&self) -> &TableSpec {
        &self.spec
    }

    /// Columns in order.
    pub fn columns(&self) -> &[ColumnDef] {
        &self.spec.columns
    }

    /// The key columns (a prefix of [`Table::columns`]).
    pub fn key_columns(&self) -> &[ColumnDef] {
        &self.spec.columns[..self.key_count]
    }

    /// Whether the column at `index` is part of the Primary Key.
    pub fn is_key(&self, index: usize) -> bool {
        index < self.key_count
    }

    /// Finds a column by name, ignoring ASCII case.
    pub fn column(&self, name: &str) -> Option<(usize, &ColumnDef)> {
        self.spec
            .columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.is_named(name))
    }

    /// Number of rows.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// Rows in key order, each aligned with [`Table::columns`] (copies: rows are stored
    /// packed).
    pub fn rows(&self) -> impl Iterator<Item = Vec<Value>> + '_ {
        self.rows.values().map(StoredRow::values)
    }

    /// The row with this key (values in key-column order), if present.
    pub fn get(&self, key: &[Value]) -> Option<Vec<Value>> {
        let encoded = self.encode_key_values(key).ok()?;
        self.rows.get(&encoded).map(StoredRow::values)
    }

    /// Rows in key order projected onto `columns` (names, case-insensitive).
    pub fn select(&self, columns: &[&str]) -> Result<Vec<Vec<Value>>, CatalogError> {
        let mut indexes = Vec::with_capacity(columns.len());
        for name in columns {
            let (i, _) = self
                .column(name)
                .ok_or_else(|| CatalogError::UnknownColumn {
                    table: self.spec.name.clone(),
                    column: (*name).to_string(),
                })?;
            indexes.push(i);
        }
        Ok(self
            .rows
            .values()
            .map(|row| {
                let mut values = row.values();
                indexes
                    .iter()
                    .map(|&i| std::mem::replace(&mut values[i], Value::Null))
                    .collect()
            })
            .collect())
    }

    /// Removes every row.
    pub fn truncate(&mut self) {
        self.rows.clear();
    }

    /// Adds a column; existing rows get its fill value (default, else NULL, else the zero).
    pub fn add_column(
        &mut self,
        column: ColumnDef,
        position: ColumnPosition,
    ) -> Result<(), CatalogError> {
        check_column(&self.spec.name, &column)?;
        if self.column(&column.name).is_some() {
            return Err(CatalogError::DuplicateColumn {
                table: self.spec.name.clone(),
                column: column.name,
            });
        }
        let index = match position {
            ColumnPosition::Last => self.spec.columns.len(),
            ColumnPosition::After(name) => {
                let (i, _) = self
                    .column(&name)
                    .ok_or_else(|| CatalogError::UnknownColumn {
                        table: self.spec.name.clone(),
                        column: name.clone(),
                    })?;
                i + 1
            }
        };
        if index < self.key_count {
            return Err(CatalogError::InvalidTable {
                table: self.spec.name.clone(),
                reason: format!(
                    "column `{}` cannot be placed among the primary key columns",
                    column.name
                ),
            });
        }
        let fill = column.fill_value();
        self.reshape_rows(|values| values.insert(index, fill.clone()));
        self.spec.columns.insert(index, column);
        Ok(())
    }

    /// Changes a value column's type (`MODIFY COLUMN`), converting every stored value through
    /// its text form; refused when one does not convert (or fit), and for key columns.
    pub fn modify_column(&mut self, column: ColumnDef) -> Result<(), CatalogError> {
        let refuse = |reason: String| CatalogError::ColumnTypeChange {
            table: self.spec.name.clone(),
            column: column.name.clone(),
            to: column.column_type.to_string(),
            reason,
        };
        let Some((index, _)) = self.column(&column.name) else {
            return Err(CatalogError::UnknownColumn {
                table: self.spec.name.clone(),
                column: column.name.clone(),
            });
        };
        if self.is_key(index) {
            return Err(refuse("key columns cannot change type".into()));
        }
        let mut converted = Vec::with_capacity(self.rows.len());
        for row in self.rows.values() {
            let value = match row.value(index).to_text() {
                None => Value::Null,
                Some(text) => column
                    .column_type
                    .convert_text(&column.name, &text)
                    .map_err(|err| refuse(err.to_string()))?,
            };
            if !value.fits(&column.column_type) {
                return Err(refuse("a stored value does not fit".into()));
            }
            converted.push(value);
        }
        // Same key order as the pass above.
        let mut converted = converted.into_iter();
        self.reshape_rows(|values| {
            if let Some(value) = converted.next() {
                values[index] = value;
            }
        });
        let name = column.name.clone();
        self.spec.columns[index] = ColumnDef { name, ..column };
        Ok(())
    }

    /// Drops a value column. Key columns cannot be dropped.
    pub fn drop_column(&mut self, name: &str) -> Result<(), CatalogError> {
        let (index, column) = self
            .column(name)
            .ok_or_else(|| CatalogError::UnknownColumn {
                table: self.spec.name.clone(),
                column: name.to_string(),
            })?;
        if self.is_key(index) {
            return Err(CatalogError::KeyColumnDrop {
                table: self.spec.name.clone(),
                column: column.name.clone(),
            });
        }
        self.reshape_rows(|values| {
            values.remove(index);
        });
        self.spec.columns.remove(index);
        Ok(())
    }

    /// Rewrites every stored row through `change`, in key order.
    fn reshape_rows(&mut self, mut change: impl FnMut(&mut Vec<Value>)) {
        let mut buffer = Vec::new();
        for row in self.rows.values_mut() {
            let mut values = row.values();
            change(&mut values);
            *row = StoredRow::new(&values, &mut buffer);
        }
    }

    /// Inserts or replaces a whole row (values aligned with [`Table::columns`]).
    pub fn upsert(&mut self, values: Vec<Value>) -> Result<(), CatalogError> {
        let batch = ChangeBatch {
            columns: self.spec.columns.iter().map(|c| c.name.clone()).collect(),
            partial_update: false,
            merge_condition: None,
            changes: vec![Change {
                op: ChangeOp::Upsert,
                values,
            }],
        };
        self.apply(&batch).map(|_| ())
    }

    /// Deletes the row with this key (values in key-column order); returns whether it existed.
    pub fn delete(&mut self, key: &[Value]) -> Result<bool, CatalogError> {
        let encoded = self.encode_key_values(key)?;
        Ok(self.rows.remove(&encoded).is_some())
    }

    /// Checks a batch without applying it: the same validation [`Table::apply`] runs first
    /// (used to refuse a commit whose publish is delayed, before it is acknowledged).
    pub fn validate(&self, batch: &ChangeBatch) -> Result<(), CatalogError> {
        self.plan_batch(batch).map(|_| ())
    }

    /// Applies a batch atomically: everything is validated first (columns, key presence, value
    /// types, NOT NULL, key size), then the changes run in order.
    pub fn apply(&mut self, batch: &ChangeBatch) -> Result<ApplyStats, CatalogError> {
        let plan = self.plan_batch(batch)?;
        Ok(self.apply_planned(plan, batch, None))
    }

    /// [`Table::validate`] that keeps its work for [`Table::apply_validated`]: the encoded keys,
    /// and for a batch of whole rows the rows already packed, so applying is little more than
    /// inserting.
    pub(crate) fn validate_for_apply(
        &self,
        batch: &ChangeBatch,
    ) -> Result<ValidatedBatch, CatalogError> {
        let plan = self.plan_batch(batch)?;
        let packed = self.whole_rows(&plan.mapping).then(|| {
            let mut buffer = Vec::new();
            batch
                .changes
                .iter()
                .map(|c| match c.op {
                    ChangeOp::Upsert => Some(StoredRow::new(&c.values, &mut buffer)),
                    ChangeOp::Delete => None,
                })
                .collect()
        });
        Ok(ValidatedBatch { plan, packed })
    }

    /// An empty table with this one's id and schema: batches checked against it outside the
    /// state lock ([`PreparedBatch`]) stay valid for this table while its schema is unchanged.
    pub(crate) fn schema_copy(&self) -> Table {
        Table {
            id: self.id,
            spec: self.spec.clone(),
            key_count: self.key_count,
            rows: BTreeMap::new(),
        }
    }

    /// [`Table::validate_for_apply`] ahead of commit, against a [`Table::schema_copy`].
    pub(crate) fn prepare(&self, batch: &ChangeBatch) -> PreparedBatch {
        PreparedBatch {
            spec: self.spec.clone(),
            validated: self.validate_for_apply(batch),
        }
    }

    /// The outcome of [`Table::validate_for_apply`] for `batch`: taken from `prepared` when it
    /// was checked against this very schema (validation depends on nothing else), else run now.
    pub(crate) fn validate_prepared(
        &self,
        batch: &ChangeBatch,
        prepared: Option<PreparedBatch>,
    ) -> Result<ValidatedBatch, CatalogError> {
        match prepared {
            Some(prepared) if prepared.spec == self.spec => prepared.validated,
            _ => self.validate_for_apply(batch),
        }
    }

    /// Applies a batch validated by [`Table::validate_for_apply`] with no change to the table in
    /// between (the caller holds the state lock across both).
    pub(crate) fn apply_validated(
        &mut self,
        batch: &ChangeBatch,
        validated: ValidatedBatch,
    ) -> ApplyStats {
        self.apply_planned(validated.plan, batch, validated.packed)
    }

    /// Whether a batch mapped this way provides every column, in table order (its values are
    /// the new rows).
    fn whole_rows(&self, mapping: &[Option<usize>]) -> bool {
        mapping.len() == self.spec.columns.len()
            && mapping.iter().enumerate().all(|(i, t)| *t == Some(i))
    }

    /// Runs validated changes in order; `packed` holds the new rows of a whole-row batch, one
    /// per change (`None` for deletes).
    fn apply_planned(
        &mut self,
        plan: BatchPlan,
        batch: &ChangeBatch,
        packed: Option<Vec<Option<StoredRow>>>,
    ) -> ApplyStats {
        let whole_rows = self.whole_rows(&plan.mapping);
        let BatchPlan {
            mapping,
            merge_index,
            keys,
        } = plan;
        let mut packed = packed.map(Vec::into_iter);
        // The batch position holding the merge column (the first one, if listed twice).
        let merge =
            merge_index.and_then(|m| mapping.iter().position(|t| *t == Some(m)).map(|p| (m, p)));
        let fill: Vec<Value> = if whole_rows {
            Vec::new()
        } else {
            self.spec
                .columns
                .iter()
                .map(ColumnDef::fill_value)
                .collect()
        };
        let mut stats = ApplyStats::default();
        let mut buffer = Vec::new();
        for (change, key) in batch.changes.iter().zip(keys) {
            let packed_row = packed.as_mut().and_then(Iterator::next).flatten();
            match change.op {
                ChangeOp::Delete => {
                    if self.rows.remove(&key).is_some() {
                        stats.deleted += 1;
                    }
                }
                ChangeOp::Upsert => {
                    if let Some((m, p)) = merge {
                        if let Some(stored) = self.rows.get(&key) {
                            let keep_stored = change.values[p]
                                .compare(&stored.value(m))
                                .is_some_and(|o| o == std::cmp::Ordering::Less);
                            if keep_stored {
                                stats.skipped_by_condition += 1;
                                continue;
                            }
                        }
                    }
                    stats.upserted += 1;
                    if whole_rows {
                        let row = packed_row
                            .unwrap_or_else(|| StoredRow::new(&change.values, &mut buffer));
                        self.rows.insert(key, row);
                        continue;
                    }
                    if batch.partial_update {
                        if let Some(stored) = self.rows.get_mut(&key) {
                            let mut row = stored.values();
                            assign(&mut row, &change.values, &mapping);
                            *stored = StoredRow::new(&row, &mut buffer);
                            continue;
                        }
                    }
                    let mut row = fill.clone();
                    assign(&mut row, &change.values, &mapping);
                    self.rows.insert(key, StoredRow::new(&row, &mut buffer));
                }
            }
        }
        stats
    }

    fn plan_batch(&self, batch: &ChangeBatch) -> Result<BatchPlan, CatalogError> {
        // Map batch positions to table columns; unknown names are ignored (dropped columns).
        let mut mapping: Vec<Option<usize>> = Vec::with_capacity(batch.columns.len());
        for name in &batch.columns {
            mapping.push(self.column(name).map(|(i, _)| i));
        }
        let mut key_positions = Vec::with_capacity(self.key_count);
        for k in 0..self.key_count {
            match mapping.iter().position(|m| *m == Some(k)) {
                Some(p) => key_positions.push(p),
                None => {
                    return Err(CatalogError::MissingKeyColumn {
                        table: self.spec.name.clone(),
                        column: self.spec.columns[k].name.clone(),
                    })
                }
            }
        }
        let merge_index = match &batch.merge_condition {
            Some(name) => {
                let (i, _) = self
                    .column(name)
                    .ok_or_else(|| CatalogError::UnknownColumn {
                        table: self.spec.name.clone(),
                        column: name.clone(),
                    })?;
                if self.is_key(i) {
                    return Err(CatalogError::InvalidTable {
                        table: self.spec.name.clone(),
                        reason: format!("merge condition column `{name}` must not be a key column"),
                    });
                }
                Some(i)
            }
            None => None,
        };

        // Validate every change and pre-compute its key.
        let targets: Vec<Option<&ColumnDef>> = mapping
            .iter()
            .map(|t| t.map(|i| &self.spec.columns[i]))
            .collect();
        let key_types: Vec<&ColumnType> =
            self.key_columns().iter().map(|c| &c.column_type).collect();
        let mut key_values: Vec<&Value> = Vec::with_capacity(self.key_count);
        let mut encoded = Vec::with_capacity(32);
        let mut keys = Vec::with_capacity(batch.changes.len());
        for change in &batch.changes {
            if change.values.len() != batch.columns.len() {
                return Err(CatalogError::InvalidValue {
                    table: self.spec.name.clone(),
                    column: String::new(),
                    reason: format!(
                        "change has {} values for {} columns",
                        change.values.len(),
                        batch.columns.len()
                    ),
                });
            }
            for (value, target) in change.values.iter().zip(&targets) {
                let Some(column) = *target else { continue };
                if value.is_null() && !column.nullable {
                    return Err(CatalogError::NullInNotNull {
                        table: self.spec.name.clone(),
                        column: column.name.clone(),
                    });
                }
                if !value.fits(&column.column_type) {
                    return Err(CatalogError::InvalidValue {
                        table: self.spec.name.clone(),
                        column: column.name.clone(),
                        reason: format!("value does not fit type {}", column.column_type),
                    });
                }
            }
            key_values.clear();
            key_values.extend(key_positions.iter().map(|&p| &change.values[p]));
            keys.push(self.encode_key_with(&key_types, &key_values, &mut encoded)?);
        }
        Ok(BatchPlan {
            mapping,
            merge_index,
            keys,
        })
    }

    fn encode_key_values(&self, key: &[Value]) -> Result<RowKey, CatalogError> {
        if key.len() != self.key_count {
            return Err(CatalogError::InvalidValue {
                table: self.spec.name.clone(),
                column: String::new(),
                reason: format!("expected {} key values, got {}", self.key_count, key.len()),
            });
        }
        let refs: Vec<&Value> = key.iter().collect();
        self.encode_key_refs(&refs)
    }

    fn encode_key_refs(&self, key: &[&Value]) -> Result<RowKey, CatalogError> {
        let types: Vec<&ColumnType> = self.key_columns().iter().map(|c| &c.column_type).collect();
        self.encode_key_with(&types, key, &mut Vec::new())
    }

    /// Encodes a key through `buffer` (reused across a batch).
    fn encode_key_with(
        &self,
        types: &[&ColumnType],
        key: &[&Value],
        buffer: &mut Vec<u8>,
    ) -> Result<RowKey, CatalogError> {
        encode_key_into(types, key, buffer).map_err(|e| match e {
            KeyError::TooLong { bytes } => CatalogError::PrimaryKeyTooLong {
                table: self.spec.name.clone(),
                bytes,
            },
            KeyError::BadValue { index } => CatalogError::InvalidValue {
                table: self.spec.name.clone(),
                column: self.spec.columns[index].name.clone(),
                reason: "not a valid key value".to_string(),
            },
        })?;
        Ok(RowKey::new(buffer))
    }
}

fn check_column(table: &str, column: &ColumnDef) -> Result<(), CatalogError> {
    let name = &column.name;
    if name.is_empty() {
        return Err(CatalogError::InvalidTable {
            table: table.to_string(),
            reason: "column name is empty".to_string(),
        });
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("__op") || lower.starts_with("__row") {
        return Err(CatalogError::InvalidTable {
            table: table.to_string(),
            reason: format!("column name `{name}` is reserved (names starting with __op/__row)"),
        });
    }
    if let Some(default) = &column.default {
        if let Err(e) = column.column_type.convert_text(name, default) {
            return Err(CatalogError::InvalidDefault {
                table: table.to_string(),
                column: name.clone(),
                reason: e.message,
            });
        }
    }
    Ok(())
}

/// Copies a change's values into a row: batch position → table column (unknown columns
/// dropped; a column listed twice takes the later value).
fn assign(row: &mut [Value], values: &[Value], mapping: &[Option<usize>]) {
    for (value, target) in values.iter().zip(mapping) {
        if let Some(i) = *target {
            row[i] = value.clone();
        }
    }
}

/// A batch checked by [`Table::validate_for_apply`], ready for [`Table::apply_validated`].
#[derive(Debug)]
pub(crate) struct ValidatedBatch {
    plan: BatchPlan,
    /// The new rows of a whole-row batch, per change (`None` for deletes).
    packed: Option<Vec<Option<StoredRow>>>,
}

/// A batch checked before commit against the schema the table had then ([`Table::prepare`]),
/// so the packing and key encoding run outside the state lock.
#[derive(Debug)]
pub(crate) struct PreparedBatch {
    spec: TableSpec,
    validated: Result<ValidatedBatch, CatalogError>,
}

/// A validated batch: table column per batch column, merge column, encoded key per change.
#[derive(Debug)]
struct BatchPlan {
    mapping: Vec<Option<usize>>,
    merge_index: Option<usize>,
    keys: Vec<RowKey>,
}

/// Serialized form: rows as a list (keys are re-encoded on load).
#[derive(Serialize, Deserialize)]
struct TableSnapshot {
    id: u64,
    spec: TableSpec,
    rows: Vec<Vec<Value>>,
}

impl From<Table> for TableSnapshot {
    fn from(table: Table) -> TableSnapshot {
        TableSnapshot {
            id: table.id,
            spec: table.spec,
            rows: table.rows.values().map(StoredRow::values).collect(),
        }
    }
}

impl TryFrom<TableSnapshot> for Table {
    type Error = CatalogError;

    fn try_from(snapshot: TableSnapshot) -> Result<Table, CatalogError> {
        let mut table = Table::new(snapshot.id, snapshot.spec)?;
        for row in snapshot.rows {
            table.upsert(row)?;
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Table {
        let spec = TableSpec::new("users")
            .column(ColumnDef::new("id", ColumnType::BigInt).not_null())
            .column(ColumnDef::new("name", ColumnType::Varchar { length: 8 }))
            .column(ColumnDef::new("score", ColumnType::Int).not_null())
            .column(ColumnDef::new("city", ColumnType::String).with_default("nowhere"))
            .primary_key(&["id"]);
        Table::new(1, spec).unwrap()
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    fn batch(columns: &[&str], changes: Vec<(ChangeOp, Vec<Value>)>) -> ChangeBatch {
        ChangeBatch {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            partial_update: false,
            merge_condition: None,
            changes: changes
                .into_iter()
                .map(|(op, values)| Change { op, values })
                .collect(),
        }
    }

    #[test]
    fn upsert_delete_and_last_row_wins() {
        let mut t = users();
        let b = batch(
            &["id", "name", "score", "city"],
            vec![
                (
                    ChangeOp::Upsert,
                    vec![Value::Int(1), text("a"), Value::Int(1), text("x")],
                ),
                (
                    ChangeOp::Upsert,
                    vec![Value::Int(2), text("b"), Value::Int(2), text("y")],
                ),
                (
                    ChangeOp::Upsert,
                    vec![Value::Int(1), text("a2"), Value::Int(3), text("z")],
                ),
                (
                    ChangeOp::Delete,
                    vec![Value::Int(2), Value::Null, Value::Int(0), Value::Null],
                ),
            ],
        );
        let stats = t.apply(&b).unwrap();
        assert_eq!(stats.upserted, 3);
        assert_eq!(stats.deleted, 1);
        assert_eq!(t.row_count(), 1);
        assert_eq!(
            t.get(&[Value::Int(1)]).unwrap(),
            &[Value::Int(1), text("a2"), Value::Int(3), text("z")]
        );
    }

    #[test]
    fn partial_update_keeps_unlisted_and_fills_new_rows() {
        let mut t = users();
        t.upsert(vec![Value::Int(1), text("a"), Value::Int(5), text("x")])
            .unwrap();
        let mut b = batch(
            &["ID", "Name"],
            vec![
                (ChangeOp::Upsert, vec![Value::Int(1), text("new")]),
                (ChangeOp::Upsert, vec![Value::Int(9), text("fresh")]),
            ],
        );
        b.partial_update = true;
        t.apply(&b).unwrap();
        assert_eq!(
            t.get(&[Value::Int(1)]).unwrap(),
            &[Value::Int(1), text("new"), Value::Int(5), text("x")]
        );
        // NOT NULL without default → 0; default → "nowhere".
        assert_eq!(
            t.get(&[Value::Int(9)]).unwrap(),
            &[Value::Int(9), text("fresh"), Value::Int(0), text("nowhere")]
        );
    }

    #[test]
    fn merge_condition_gates_upserts_but_not_deletes() {
        let mut t = users();
        t.upsert(vec![Value::Int(1), text("a"), Value::Int(5), text("x")])
            .unwrap();
        t.upsert(vec![Value::Int(2), text("b"), Value::Int(5), text("x")])
            .unwrap();
        let mut b = batch(
            &["id", "name", "score"],
            vec![
                (
                    ChangeOp::Upsert,
                    vec![Value::Int(1), text("old"), Value::Int(4)],
                ),
                (
                    ChangeOp::Upsert,
                    vec![Value::Int(1), text("same"), Value::Int(5)],
                ),
                (
                    ChangeOp::Delete,
                    vec![Value::Int(2), text("z"), Value::Int(0)],
                ),
                (
                    ChangeOp::Upsert,
                    vec![Value::Int(3), text("new"), Value::Int(0)],
                ),
            ],
        );
        b.merge_condition = Some("score".into());
        let stats = t.apply(&b).unwrap();
        assert_eq!(stats.skipped_by_condition, 1);
        assert_eq!(t.get(&[Value::Int(1)]).unwrap()[1], text("same"));
        assert!(t.get(&[Value::Int(2)]).is_none());
        assert!(t.get(&[Value::Int(3)]).is_some());
    }

    /// The commit path (validate once, move values in) ends where `apply` (borrowing) ends.
    #[test]
    fn apply_validated_matches_apply() {
        let mut start = users();
        start
            .upsert(vec![Value::Int(1), text("a"), Value::Int(5), text("x")])
            .unwrap();
        start
            .upsert(vec![Value::Int(2), text("b"), Value::Int(5), Value::Null])
            .unwrap();
        // Rows as (op, id, name, score, city), projected onto each batch's columns.
        let rows = [
            (ChangeOp::Upsert, 1, "n1", 4, "c1"),
            (ChangeOp::Upsert, 3, "n3", 6, "c3"),
            (ChangeOp::Delete, 2, "", 0, ""),
            (ChangeOp::Upsert, 3, "n4", 7, "c4"),
            (ChangeOp::Upsert, 2, "n2", 9, "c2"),
        ];
        let changes = |columns: &[&str]| {
            rows.iter()
                .map(|&(op, id, name, score, city)| {
                    let values = columns
                        .iter()
                        .map(|c| match c.to_ascii_lowercase().as_str() {
                            "id" => Value::Int(id),
                            "name" => text(name),
                            "score" => Value::Int(score),
                            "city" => text(city),
                            _ => text("dropped"),
                        })
                        .collect();
                    (op, values)
                })
                .collect()
        };
        let mut batches = Vec::new();
        for columns in [
            &["id", "name", "score", "city"][..],
            &["city", "score", "name", "id"][..],
            &["id", "NAME", "gone", "score"][..],
            &["id", "name", "name", "score"][..],
        ] {
            for partial_update in [false, true] {
                for merge_condition in [None, Some("score".to_string())] {
                    let mut b = batch(columns, changes(columns));
                    b.partial_update = partial_update;
                    b.merge_condition = merge_condition;
                    batches.push(b);
                }
            }
        }
        for b in batches {
            let mut borrowed = start.clone();
            let expected = borrowed.apply(&b).unwrap();
            let mut moved = start.clone();
            let validated = moved.validate_for_apply(&b).unwrap();
            let stats = moved.apply_validated(&b, validated);
            assert_eq!(stats, expected, "{b:?}");
            assert_eq!(moved, borrowed, "{b:?}");
        }
    }

    /// A batch prepared against an older schema is checked again at commit.
    #[test]
    fn prepared_batches_are_rechecked_after_a_schema_change() {
        let mut t = users();
        let whole = batch(
            &["id", "name", "score", "city"],
            vec![(
                ChangeOp::Upsert,
                vec![Value::Int(1), text("a"), Value::Int(5), text("x")],
            )],
        );
        // Unchanged schema: the prepared work is used.
        let prepared = t.schema_copy().prepare(&whole);
        let validated = t.validate_prepared(&whole, Some(prepared)).unwrap();
        t.apply_validated(&whole, validated);
        assert_eq!(t.row_count(), 1);
        // After ADD COLUMN the batch no longer covers every column: checked and applied anew.
        let prepared = t.schema_copy().prepare(&whole);
        t.add_column(
            ColumnDef::new("age", ColumnType::Int).with_default("7"),
            ColumnPosition::Last,
        )
        .unwrap();
        let validated = t.validate_prepared(&whole, Some(prepared)).unwrap();
        t.apply_validated(&whole, validated);
        assert_eq!(
            t.get(&[Value::Int(1)]).unwrap(),
            &[
                Value::Int(1),
                text("a"),
                Value::Int(5),
                text("x"),
                Value::Int(7)
            ]
        );
        // A batch that was fine before MODIFY COLUMN but no longer fits is refused.
        let long_name = batch(
            &["id", "name", "score"],
            vec![(
                ChangeOp::Upsert,
                vec![Value::Int(2), text("abcdef"), Value::Int(1)],
            )],
        );
        let prepared = t.schema_copy().prepare(&long_name);
        t.modify_column(ColumnDef::new("name", ColumnType::Varchar { length: 3 }))
            .unwrap();
        assert!(matches!(
            t.validate_prepared(&long_name, Some(prepared)),
            Err(CatalogError::InvalidValue { .. })
        ));
    }

    #[test]
    fn invalid_batches_change_nothing() {
        let mut t = users();
        t.upsert(vec![Value::Int(1), text("a"), Value::Int(5), text("x")])
            .unwrap();
        let b = batch(
            &["id", "name", "score"],
            vec![
                (
                    ChangeOp::Upsert,
                    vec![Value::Int(2), text("ok"), Value::Int(1)],
                ),
                (
                    ChangeOp::Upsert,
                    vec![Value::Int(3), text("ok"), Value::Null],
                ),
            ],
        );
        assert!(matches!(
            t.apply(&b),
            Err(CatalogError::NullInNotNull { .. })
        ));
        assert_eq!(t.row_count(), 1);
        let b = batch(&["name"], vec![(ChangeOp::Upsert, vec![text("x")])]);
        assert!(matches!(
            t.apply(&b),
            Err(CatalogError::MissingKeyColumn { .. })
        ));
        let b = batch(
            &["id", "name"],
            vec![(ChangeOp::Upsert, vec![Value::Int(4), text("toolongname")])],
        );
        assert!(matches!(
            t.apply(&b),
            Err(CatalogError::InvalidValue { .. })
        ));
    }

    #[test]
    fn schema_rules_are_enforced() {
        let bad_order = TableSpec::new("t")
            .column(ColumnDef::new("v", ColumnType::Int))
            .column(ColumnDef::new("id", ColumnType::Int).not_null())
            .primary_key(&["id"]);
        assert!(Table::new(1, bad_order).is_err());
        let nullable_key = TableSpec::new("t")
            .column(ColumnDef::new("id", ColumnType::Int))
            .primary_key(&["id"]);
        assert!(Table::new(1, nullable_key).is_err());
        let decimal_key = TableSpec::new("t")
            .column(
                ColumnDef::new(
                    "id",
                    ColumnType::Decimal {
                        precision: 5,
                        scale: 0,
                    },
                )
                .not_null(),
            )
            .primary_key(&["id"]);
        assert!(Table::new(1, decimal_key).is_err());
        let dup = TableSpec::new("t")
            .column(ColumnDef::new("id", ColumnType::Int).not_null())
            .column(ColumnDef::new("ID", ColumnType::Int))
            .primary_key(&["id"]);
        assert!(matches!(
            Table::new(1, dup),
            Err(CatalogError::DuplicateColumn { .. })
        ));
        let reserved = TableSpec::new("t")
            .column(ColumnDef::new("id", ColumnType::Int).not_null())
            .column(ColumnDef::new("__op", ColumnType::Int))
            .primary_key(&["id"]);
        assert!(Table::new(1, reserved).is_err());
        let bad_default = TableSpec::new("t")
            .column(ColumnDef::new("id", ColumnType::Int).not_null())
            .column(ColumnDef::new("v", ColumnType::Int).with_default("abc"))
            .primary_key(&["id"]);
        assert!(matches!(
            Table::new(1, bad_default),
            Err(CatalogError::InvalidDefault { .. })
        ));
    }

    #[test]
    fn add_and_drop_columns_reshape_rows() {
        let mut t = users();
        t.upsert(vec![Value::Int(1), text("a"), Value::Int(5), text("x")])
            .unwrap();
        t.add_column(
            ColumnDef::new("age", ColumnType::Int).with_default("7"),
            ColumnPosition::After("name".into()),
        )
        .unwrap();
        assert_eq!(t.columns()[2].name, "age");
        assert_eq!(t.get(&[Value::Int(1)]).unwrap()[2], Value::Int(7));
        t.drop_column("NAME").unwrap();
        assert_eq!(
            t.get(&[Value::Int(1)]).unwrap(),
            &[Value::Int(1), Value::Int(7), Value::Int(5), text("x")]
        );
        assert!(matches!(
            t.drop_column("id"),
            Err(CatalogError::KeyColumnDrop { .. })
        ));
        assert!(t
            .add_column(ColumnDef::new("Age", ColumnType::Int), ColumnPosition::Last)
            .is_err());
    }

    #[test]
    fn primary_key_limit_fails_the_batch() {
        let spec = TableSpec::new("t")
            .column(ColumnDef::new("k", ColumnType::Varchar { length: 1000 }).not_null())
            .primary_key(&["k"]);
        let mut t = Table::new(1, spec).unwrap();
        let err = t.upsert(vec![text(&"x".repeat(200))]).unwrap_err();
        assert!(matches!(
            err,
            CatalogError::PrimaryKeyTooLong { bytes: 200, .. }
        ));
        assert_eq!(err.to_string(), "primary key size exceed the limit.");
    }

    #[test]
    fn snapshot_round_trip() {
        let mut t = users();
        t.upsert(vec![Value::Int(1), text("a"), Value::Int(5), Value::Null])
            .unwrap();
        let json = serde_json::to_string(&t).unwrap();
        let back: Table = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }
}
