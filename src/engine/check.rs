//! `starwal check`: every prerequisite on both sides as a checklist, changing nothing.
//!
//! Each line says what was checked and what was found, including what `run` would create (a
//! publication, a slot, a database, tables, columns) — so a user can fix every problem before the
//! first start. Read-only by construction: it calls only the inspecting halves of setup
//! (`publication_status`, `existing_slot`, `TargetSetup::plan`), never the ones that create.

use crate::config::Config;
use crate::engine::setup::postgres::{
    check_prerequisites, existing_slot, publication_status, PublicationStatus,
};
use crate::postgres::catalog::{resolve_tables, table_schema};
use crate::postgres::replication::ReplicationConnection;
use crate::postgres::tls::connect_sql;
use crate::sink::starrocks::setup::TargetSetup;
use crate::sink::starrocks::StreamLoadClient;

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

/// Runs every check; stops a side at the first check the others depend on (the connection).
pub async fn check(config: &Config) -> Vec<CheckItem> {
    let mut items = Vec::new();
    let pg = &config.postgres;
    let mut sources = Vec::new();
    match connect_sql(&pg.conn).await {
        Err(err) => items.push(item(false, "Postgres connection", err.to_string())),
        Ok(client) => {
            items.push(item(true, "Postgres connection", pg.conn.to_string()));
            let slot = existing_slot(&client, &pg.slot, &pg.conn.dbname).await;
            let slot_exists = matches!(slot, Ok(Some(_)));
            match check_prerequisites(&client, !slot_exists).await {
                Ok(version) => items.push(item(
                    true,
                    "Postgres prerequisites",
                    format!("server_version_num {version}, wal_level logical, REPLICATION granted, free sender{}", if slot_exists { "" } else { " and slot" }),
                )),
                Err(err) => items.push(item(false, "Postgres prerequisites", err.to_string())),
            }
            items.push(match slot {
                Ok(Some(lsn)) => item(
                    true,
                    format!("slot `{}`", pg.slot),
                    format!("exists, resumes at {lsn}"),
                ),
                Ok(None) => item(
                    true,
                    format!("slot `{}`", pg.slot),
                    "missing; run creates it",
                ),
                Err(err) => item(false, format!("slot `{}`", pg.slot), err.to_string()),
            });
            match resolve_tables(&client, &pg.tables).await {
                Err(err) => items.push(item(false, "tables", err.to_string())),
                Ok(tables) => {
                    let names: Vec<String> = tables.iter().map(|t| t.display_name()).collect();
                    items.push(item(true, "tables", names.join(", ")));
                    items.push(
                        match publication_status(&client, &pg.publication, &tables).await {
                            Ok(PublicationStatus::Complete) => item(
                                true,
                                format!("publication `{}`", pg.publication),
                                "publishes every table",
                            ),
                            Ok(PublicationStatus::Missing) => item(
                                true,
                                format!("publication `{}`", pg.publication),
                                "missing; run creates it (the role must own the tables)",
                            ),
                            Ok(PublicationStatus::MissingTables(missing)) => item(
                                true,
                                format!("publication `{}`", pg.publication),
                                format!(
                                    "run adds {}",
                                    missing
                                        .iter()
                                        .map(|t| t.display_name())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            ),
                            Err(err) => item(
                                false,
                                format!("publication `{}`", pg.publication),
                                err.to_string(),
                            ),
                        },
                    );
                    for table in &tables {
                        match table_schema(&client, table).await {
                            Ok(schema) => sources.push(schema),
                            Err(err) => items.push(item(
                                false,
                                format!("table `{}`", table.display_name()),
                                err.to_string(),
                            )),
                        }
                    }
                }
            }
            items.push(match ReplicationConnection::connect(&pg.conn).await {
                Ok(mut conn) => {
                    let identity = conn.identify_system().await;
                    conn.close().await;
                    match identity {
                        Ok(identity) => item(true, "replication connection", format!("system {}, timeline {}", identity.system_id, identity.timeline)),
                        Err(err) => item(false, "replication connection", err.to_string()),
                    }
                }
                Err(err) => item(false, "replication connection", format!("{err} (pg_hba.conf: a replication=database connection matches the database column, not `replication`)")),
            });
        }
    }

    let sr = match config.require_starrocks() {
        Ok(sr) => sr,
        Err(err) => {
            items.push(item(false, "StarRocks", err.to_string()));
            return items;
        }
    };
    let mut database_exists = false;
    match TargetSetup::connect(sr).await {
        Err(err) => items.push(item(false, "StarRocks MySQL protocol", err.to_string())),
        Ok(mut setup) => {
            match setup.plan(&sources).await {
                Ok(plan) => {
                    database_exists = !plan.create_database;
                    items.push(item(
                        true,
                        "StarRocks MySQL protocol",
                        format!("{} (version {})", sr.mysql_addr, plan.version),
                    ));
                    items.push(item(
                        true,
                        format!("database `{}`", sr.database),
                        if plan.create_database {
                            "missing; run creates it"
                        } else {
                            "exists"
                        },
                    ));
                    for table in &plan.tables {
                        let detail = if !table.exists {
                            "missing; run creates it".to_owned()
                        } else if table.missing_columns.is_empty() {
                            "matches the source".to_owned()
                        } else {
                            format!(
                                "run adds {}",
                                table
                                    .missing_columns
                                    .iter()
                                    .map(|c| c.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        };
                        items.push(item(
                            true,
                            format!("target `{}`", table.target.name),
                            detail,
                        ));
                    }
                }
                Err(err) => items.push(item(false, "StarRocks tables", err.to_string())),
            }
            setup.close().await;
        }
    }
    if !database_exists {
        // get_load_state needs the database; its credentials check waits for it.
        return items;
    }
    let client = StreamLoadClient::new(sr.clone());
    items.push(match client.probe().await {
        Ok(()) => item(
            true,
            "Stream Load",
            format!(
                "{} answers and accepts the credentials",
                sr.fe_urls.join(", ")
            ),
        ),
        Err(err) => item(false, "Stream Load", err.to_string()),
    });
    items
}
