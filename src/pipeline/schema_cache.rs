//! Relation messages: the schema cache keyed by relation id, and schema evolution.
//!
//! pgoutput sends a Relation message before a table's first change in a session and again after
//! its schema changed. The stream is authoritative for the column list from that point on, so a
//! change is handled in stream order: the table's open batch is sealed with the old encoder, new
//! columns are added to the target (a loader job, so it runs after the loads before it and
//! before the loads after it), dropped columns are simply no longer sent, and a type change is
//! accepted when the existing target column still holds the new type's values (the same check
//! setup makes), widened with `MODIFY COLUMN` when the target type widens losslessly (a loader
//! job too), and otherwise a permanent error naming the table and column. A relation we
//! have not seen is a table that joined the publication: when it matches `STARWAL_TABLES` its
//! target table is created and it streams like the others.
//!
//! A new column's value in the rows the table already has is never in the stream (Postgres
//! fills them without WAL), so the catalog is asked right after the Relation message
//! ([`existing_values`]): NULL → the column is added as is; a constant default → added with
//! that `DEFAULT`, which StarRocks gives the existing rows; anything else (a volatile default, a
//! generated column, a value StarRocks cannot take as a default) → the table is copied again
//! through the resync path, whose copy adds the column (invariant 12). The copy is asked for
//! before the column exists in the target: a crash in between leaves the column missing there,
//! and the next start's setup (`engine/setup/target.rs`) decides again from the catalog.

use crate::postgres::catalog::{existing_values, resolve_tables, table_schema, type_name};
use crate::postgres::pgoutput::Relation;
use crate::schema::{ColumnSchema, TableSchema};
use crate::sink::starrocks::encoding::TableEncoder;
use crate::sink::starrocks::mapping::{column_type, target_table, TargetColumn, TypeMapping};
use crate::sink::starrocks::setup::{NewColumn, TargetProblem, TargetSetupError};

use super::error::PipelineError;
use super::loader::Job;
use super::table::key_columns;
use super::Pipeline;

/// Whether `schema` already describes what `relation` sends.
pub(super) fn matches(schema: &TableSchema, relation: &Relation) -> bool {
    schema.columns.len() == relation.columns.len()
        && schema
            .columns
            .iter()
            .zip(&relation.columns)
            .all(|(column, sent)| {
                column.name == sent.name.as_str()
                    && column.type_oid == sent.type_oid
                    && column.type_modifier == sent.type_modifier
            })
}

/// The target columns to widen for `problems`, when every problem is a column whose type widened
/// in a way [`TargetType::widens_to`](crate::sink::starrocks::mapping::TargetType::widens_to)
/// allows; `None` when any is not.
fn widenings(
    old: &TableSchema,
    new: &TableSchema,
    problems: &[TargetProblem],
    mapping: TypeMapping,
) -> Option<Vec<TargetColumn>> {
    let mut widened = Vec::new();
    for problem in problems {
        let TargetProblem::Type { column, .. } = problem else {
            return None;
        };
        let before = old.columns.iter().find(|c| &c.name == column)?;
        let after = new.columns.iter().find(|c| &c.name == column)?;
        if after.is_key() {
            return None;
        }
        let (from, to) = (
            column_type(old, before, mapping).ok()?,
            column_type(new, after, mapping).ok()?,
        );
        if from == to || !from.widens_to(&to) {
            return None;
        }
        widened.push(TargetColumn {
            name: column.clone(),
            data_type: to,
            nullable: true,
            is_key: false,
        });
    }
    Some(widened)
}

impl Pipeline {
    pub(super) async fn relation(&mut self, relation: &Relation) -> Result<(), PipelineError> {
        match self.by_relation.get(&relation.relation_id) {
            Some(&index) if matches(&self.tables[index].schema, relation) => Ok(()),
            Some(&index) => self.schema_changed(index, relation).await,
            None if self.ignored.contains(&relation.relation_id) => Ok(()),
            None => self.new_relation(relation).await,
        }
    }

    /// The stream's column list, with names, types and keys from the catalog where they agree
    /// with it (the catalog may already be ahead of the stream).
    async fn stream_schema(
        &self,
        index: usize,
        relation: &Relation,
    ) -> Result<TableSchema, PipelineError> {
        let table = &self.tables[index];
        let catalog = table_schema(&self.client, &table.source).await?;
        let mut columns = Vec::with_capacity(relation.columns.len());
        for sent in &relation.columns {
            let name = sent.name.as_str();
            let known = catalog
                .columns
                .iter()
                .chain(&table.schema.columns)
                .find(|c| {
                    c.name == name
                        && c.type_oid == sent.type_oid
                        && c.type_modifier == sent.type_modifier
                })
                .cloned();
            let column = match known {
                Some(column) => column,
                None => {
                    let type_name = type_name(&self.client, sent.type_oid, sent.type_modifier)
                        .await
                        .map_err(|source| PipelineError::Source {
                            table: table.source_name.clone(),
                            source,
                        })?;
                    ColumnSchema {
                        name: name.to_owned(),
                        type_oid: sent.type_oid,
                        type_modifier: sent.type_modifier,
                        type_name,
                        nullable: true,
                        key_position: table
                            .schema
                            .columns
                            .iter()
                            .find(|c| c.name == name)
                            .and_then(|c| c.key_position),
                    }
                }
            };
            columns.push(column);
        }
        Ok(TableSchema {
            schema: table.schema.schema.clone(),
            name: table.schema.name.clone(),
            columns,
        })
    }

    async fn schema_changed(
        &mut self,
        index: usize,
        relation: &Relation,
    ) -> Result<(), PipelineError> {
        if self.tables[index].parked.is_some() {
            // Its changes are dropped while parked, and the stream after a retry or resync
            // plans it from setup again: a plan error here would stop every table.
            return Ok(());
        }
        // Everything received so far was encoded for the old columns.
        self.flush(index).await?;
        let schema = self.stream_schema(index, relation).await?;
        let target = self.tables[index].target.clone();
        let planned = {
            let mut ddl = self.context.ddl.lock().await;
            ddl.plan(std::slice::from_ref(&schema)).await
        };
        let (missing, widened) = match planned {
            Ok(plan) => (
                plan.tables
                    .into_iter()
                    .next()
                    .map(|table| table.missing_columns)
                    .unwrap_or_default(),
                Vec::new(),
            ),
            Err(TargetSetupError::Tables(problems)) => {
                // Columns too narrow for the new source types: widen them when that loses
                // nothing; anything else stops the engine naming table and column.
                let old = &self.tables[index].schema;
                let Some(widened) = widenings(old, &schema, &problems, self.settings.type_mapping)
                else {
                    return Err(PipelineError::target(
                        &target,
                        TargetSetupError::Tables(problems),
                    ));
                };
                let added = target_table(&schema, self.settings.type_mapping)
                    .map(|table| {
                        table
                            .columns
                            .into_iter()
                            .filter(|c| {
                                !c.is_key
                                    && schema.columns.iter().any(|n| n.name == c.name)
                                    && !old.columns.iter().any(|o| o.name == c.name)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (added, widened)
            }
            Err(err) => return Err(PipelineError::target(&target, err)),
        };
        let old = &self.tables[index].schema;
        let dropped: Vec<&str> = old
            .columns
            .iter()
            .filter(|c| !schema.columns.iter().any(|n| n.name == c.name))
            .map(|c| c.name.as_str())
            .collect();
        tracing::info!(
            table = %self.tables[index].source_name,
            added = ?missing.iter().map(|c| &c.name).collect::<Vec<_>>(),
            dropped = ?dropped,
            "source schema changed"
        );
        if !widened.is_empty() {
            tracing::info!(
                table = %self.tables[index].source_name,
                columns = ?widened.iter().map(|c| format!("{} {}", c.name, c.data_type)).collect::<Vec<_>>(),
                "source column types widened: widening the target's"
            );
            self.send(index, Job::ModifyColumns(widened), None)?;
        }
        if !missing.is_empty() {
            match self.new_columns(index, &schema, missing).await? {
                Ok(columns) => self.send(index, Job::AddColumns(columns), None)?,
                Err(unknown) => self.copy_again(index, &unknown),
            }
        }
        let delete_mode = self.settings.delete_mode;
        let table = &mut self.tables[index];
        table.encoder = TableEncoder::new(&schema, delete_mode, self.settings.type_mapping);
        table.key_columns = key_columns(&schema);
        table
            .batch
            .set_row_overhead(super::batch::body_row_overhead(&schema));
        table.schema = schema;
        Ok(())
    }

    /// The target columns `missing` with what the table's existing rows hold in each
    /// (see the module docs); `Err` with the columns whose values only a copy can bring.
    async fn new_columns(
        &self,
        index: usize,
        schema: &TableSchema,
        missing: Vec<TargetColumn>,
    ) -> Result<Result<Vec<NewColumn>, Vec<String>>, PipelineError> {
        let table = &self.tables[index];
        // Audit columns (a target made by an older starwal) have no source column: NULL.
        let sources: Vec<&ColumnSchema> = missing
            .iter()
            .filter_map(|c| schema.columns.iter().find(|s| s.name == c.name))
            .collect();
        let values = existing_values(&self.client, &table.source, &sources)
            .await
            .map_err(|source| PipelineError::Source {
                table: table.source_name.clone(),
                source,
            })?;
        let mut columns = Vec::with_capacity(missing.len());
        let mut unknown = Vec::new();
        for column in missing {
            let source = sources
                .iter()
                .zip(&values)
                .find(|(source, _)| source.name == column.name)
                .map(|(source, values)| (*source, values));
            let name = column.name.clone();
            match NewColumn::for_existing_rows(column, source) {
                Some(column) => columns.push(column),
                None => unknown.push(name),
            }
        }
        Ok(if unknown.is_empty() {
            Ok(columns)
        } else {
            Err(unknown)
        })
    }

    /// The table gained columns whose values in existing rows only a copy can bring: its
    /// changes are dropped and the confirmed LSN holds from now on (as for any copy while
    /// streaming, `PipelineCommand::StartCopy`), so nothing after this point is confirmed before
    /// the copy is recorded; the resync it asks for copies the table, adding the columns first.
    fn copy_again(&mut self, index: usize, columns: &[String]) {
        let name = self.tables[index].source_name.clone();
        tracing::warn!(
            table = %name,
            ?columns,
            "the rows the table already has hold values in these new columns that the stream \
             does not carry (a volatile default, a generated column, or a value StarRocks \
             cannot take as a column default): copying the table again"
        );
        self.copying.insert(name.clone());
        if let Err(err) = self.context.handle.request_resync(&name) {
            // Already being copied: the copy running now reads the columns, or the restart
            // after it streams this Relation message again (the confirmed LSN holds).
            tracing::info!(table = %name, reason = %err, "no new copy asked for");
        }
    }

    async fn new_relation(&mut self, relation: &Relation) -> Result<(), PipelineError> {
        let tables = resolve_tables(&self.client, &self.settings.tables).await?;
        let Some(source) = tables
            .into_iter()
            .find(|table| table.oid == relation.relation_id)
        else {
            let name = format!("{}.{}", relation.namespace.as_str(), relation.name.as_str());
            tracing::warn!(table = %name, "the publication streams a table that STARWAL_TABLES does not name; its changes are ignored");
            self.ignored.insert(relation.relation_id);
            return Ok(());
        };
        let schema = table_schema(&self.client, &source).await?;
        let name = source.display_name();
        {
            let mut ddl = self.context.ddl.lock().await;
            ddl.prepare(std::slice::from_ref(&schema))
                .await
                .map_err(|err: TargetSetupError| PipelineError::target(&name, err))?;
        }
        tracing::info!(table = %name, "a new table joined the publication: streaming it");
        let index = self.add_table(source, schema);
        if !matches(&self.tables[index].schema, relation) {
            self.schema_changed(index, relation).await?;
        }
        Ok(())
    }
}
