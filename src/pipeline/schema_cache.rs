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

use crate::postgres::catalog::{resolve_tables, table_schema, type_name};
use crate::postgres::pgoutput::Relation;
use crate::schema::{ColumnSchema, TableSchema};
use crate::sink::starrocks::encoding::TableEncoder;
use crate::sink::starrocks::mapping::{column_type, target_table, TargetColumn};
use crate::sink::starrocks::setup::{TargetProblem, TargetSetupError};

use super::error::PipelineError;
use super::loader::Job;
use super::table::key_columns;
use super::Pipeline;

/// Whether `schema` already describes what `relation` sends.
fn matches(schema: &TableSchema, relation: &Relation) -> bool {
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
            column_type(old, before).ok()?,
            column_type(new, after).ok()?,
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
                let Some(widened) = widenings(old, &schema, &problems) else {
                    return Err(PipelineError::target(
                        &target,
                        TargetSetupError::Tables(problems),
                    ));
                };
                let added = target_table(&schema)
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
            self.send(index, Job::AddColumns(missing), None)?;
        }
        let delete_mode = self.settings.delete_mode;
        let table = &mut self.tables[index];
        table.encoder = TableEncoder::new(&schema, delete_mode);
        table.key_columns = key_columns(&schema);
        table
            .batch
            .set_row_overhead(super::batch::body_row_overhead(&schema));
        table.schema = schema;
        Ok(())
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
