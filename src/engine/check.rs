//! `starwal check`: every prerequisite on both sides as a checklist, changing nothing.
//!
//! Each line says what was checked and what was found, including what `run` would create (a
//! publication, a slot, a database, tables, columns) — so a user can fix every problem before the
//! first start. Read-only by construction: it is the inspection `run` makes before it creates
//! anything (`engine::setup::inspect`), so the two cannot disagree (invariant 13).

use crate::config::Config;
use crate::engine::setup::inspect::{inspect_source, inspect_target, Finding};
use crate::schema::TableSchema;

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckItem {
    pub ok: bool,
    /// What was checked.
    pub subject: String,
    /// What was found, or the error with its fix.
    pub detail: String,
}

fn item(ok: bool, subject: impl Into<String>, detail: impl Into<String>) -> CheckItem {
    CheckItem {
        ok,
        subject: subject.into(),
        detail: detail.into(),
    }
}

/// Runs every check of both sides: the same inspection `run` makes before it creates anything
/// ([`inspect`](crate::engine::setup::inspect)), so `check` fails whenever `run`'s setup would.
pub async fn check(config: &Config) -> Vec<CheckItem> {
    let source = inspect_source(&config.postgres, config.engine.snapshot.mode).await;
    let mut findings = source.findings;
    let sr = match config.require_starrocks() {
        Ok(sr) => sr,
        Err(err) => {
            let mut items: Vec<CheckItem> = findings.iter().map(to_item).collect();
            items.push(item(false, "StarRocks", err.to_string()));
            return items;
        }
    };
    let schemas: Vec<TableSchema> = source.tables.into_iter().map(|(_, s)| s).collect();
    let target = inspect_target(sr, &schemas, &source.emptied_targets).await;
    findings.extend(target.findings);
    if let Some((setup, plan)) = target.setup {
        // `transaction` mode needs multi-table transactions (StarRocks 4.0+), as `run` checks.
        findings.extend(crate::engine::setup::inspect::commit_mode_finding(
            config.engine.commit_mode,
            &plan.version,
        ));
        setup.close().await;
    }
    findings.iter().map(to_item).collect()
}

fn to_item(finding: &Finding) -> CheckItem {
    match &finding.outcome {
        Ok(detail) => item(true, finding.subject.clone(), detail.clone()),
        Err(error) => item(false, finding.subject.clone(), error.to_string()),
    }
}
