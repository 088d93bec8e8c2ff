//! Target setup as `run` does it at startup: the checks and DDL of `sink::starrocks::setup`,
//! plus what only the source knows — the value the rows a target table already has must get in
//! a column it lacks (invariant 12). A column added to the source while starwal was not
//! streaming it (stopped, or behind) is added with the `DEFAULT` that gives existing rows their
//! source value (`postgres::catalog::existing_values`: NULL, or a constant default); when no
//! default can (a volatile default, a generated column, a JSON or array value), a copy of the
//! table is recorded first — before the column exists, so a crash in between decides again —
//! and the SNAPSHOT phase copies it before streaming. `check` uses the plan alone.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::error::SetupError;
use crate::postgres::catalog::{existing_values, SourceTable};
use crate::postgres::snapshot::store::CopyStore;
use crate::schema::{ColumnSchema, TableSchema};
use crate::sink::starrocks::mapping::target_table_name;
use crate::sink::starrocks::setup::{NewColumn, TargetPlan, TargetReport, TargetSetup};

/// Makes every target table ready for `tables` by carrying out `plan` (from
/// [`TargetSetup::plan`], which the inspection made); copies it records are in `copies`, for the
/// SNAPSHOT phase.
pub async fn prepare_target(
    target: &mut TargetSetup,
    plan: TargetPlan,
    client: &Client,
    tables: &[(SourceTable, TableSchema)],
    copies: &CopyStore,
) -> Result<TargetReport, SetupError> {
    let mut defaults: HashMap<(String, String), String> = HashMap::new();
    for table in plan.tables.iter().filter(|t| t.exists) {
        if table.missing_columns.is_empty() {
            continue;
        }
        let Some((source, schema)) = tables
            .iter()
            .find(|(_, s)| target_table_name(&s.schema, &s.name) == table.target.name)
        else {
            continue;
        };
        let columns: Vec<&ColumnSchema> = table
            .missing_columns
            .iter()
            .filter_map(|c| schema.columns.iter().find(|s| s.name == c.name))
            .collect();
        let values = existing_values(client, source, &columns).await?;
        let mut unknown = Vec::new();
        for missing in &table.missing_columns {
            let found = columns
                .iter()
                .zip(&values)
                .find(|(column, _)| column.name == missing.name)
                .map(|(column, values)| (*column, values));
            match NewColumn::for_existing_rows(missing.clone(), found) {
                Some(NewColumn {
                    default: Some(default),
                    column,
                }) => {
                    defaults.insert((table.target.name.clone(), column.name), default);
                }
                Some(_) => {}
                None => unknown.push(missing.name.clone()),
            }
        }
        if !unknown.is_empty() {
            let name = source.display_name();
            tracing::warn!(
                table = %name,
                columns = ?unknown,
                "the rows the table already has hold values in these new columns that no \
                 column default can give them (a volatile default, a generated column, a JSON \
                 or array value): copying the table again"
            );
            copies.ensure(client).await.map_err(Box::new)?;
            copies.request(client, &name).await.map_err(Box::new)?;
        }
    }
    let report = target
        .apply(plan, |table, column| {
            defaults
                .get(&(table.to_owned(), column.name.clone()))
                .cloned()
        })
        .await?;
    Ok(report)
}
