//! The first phase of setup, shared by `starwal check` and every attempt of `starwal run`: every
//! check that can fail, on both sides, run read-only before anything is created (invariant 13).
//! Source: the connection, whether it accepts writes (a primary, not read-only), server
//! prerequisites, the slot (a missing one that the state schema shows starwal had streamed from
//! is a lost slot: refused unless `STARWAL_ON_SLOT_LOSS=resync`),
//! whether the slot would survive a failover (a warning only), the tables and their schemas, the
//! publication, the role's privileges for what setup would create, a replication connection.
//! Target: the MySQL protocol (credentials, version, database, tables) and the FE's HTTP
//! endpoint with the credentials loads use, whether the database exists yet or not.
//!
//! Each check is a [`Finding`]: `check` prints them all; `run` stops at the first failure and
//! creates nothing, so a start that fails leaves no publication and no slot holding WAL. Because
//! both run exactly these checks, `check` fails whenever `run`'s setup would. Findings also say
//! what `run` would do (create a publication, a slot, tables; empty a target table that has rows
//! before its first copy).

use std::collections::HashSet;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::error::SetupError;
use super::postgres::{
    check_prerequisites, check_privileges, existing_slot, failover_readiness, publication_status,
    slot_failover, PublicationStatus,
};
use crate::config::{CommitMode, OnSlotLoss, PostgresConfig, SnapshotMode};
use crate::postgres::catalog::{resolve_tables, table_schema, SourceTable};
use crate::postgres::checkpoint::{Checkpoint, CheckpointStore};
use crate::postgres::conninfo::ServerState;
use crate::postgres::replication::ReplicationConnection;
use crate::postgres::snapshot::store::{CopyRecord, CopyStore};
use crate::postgres::tls::connect_sql;
use crate::postgres::Lsn;
use crate::schema::TableSchema;
use crate::sink::starrocks::mapping::target_table_name;
use crate::sink::starrocks::setup::{TargetPlan, TargetSetup};
use crate::sink::starrocks::{ProbeFound, StarRocksConfig, StreamLoadClient};

/// One check: what was checked, and what was found or why it fails.
#[derive(Debug)]
pub struct Finding {
    pub subject: String,
    pub outcome: Result<String, SetupError>,
}

impl Finding {
    fn passed(subject: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            subject: subject.into(),
            outcome: Ok(detail.into()),
        }
    }

    fn failed(subject: impl Into<String>, error: impl Into<SetupError>) -> Finding {
        Finding {
            subject: subject.into(),
            outcome: Err(error.into()),
        }
    }
}

/// What the source checks found.
#[derive(Debug, Default)]
pub struct SourceInspection {
    pub findings: Vec<Finding>,
    /// The SQL connection, when it opened.
    pub client: Option<Client>,
    /// `Some(confirmed_flush)` when the slot exists (and is usable).
    pub existing_slot: Option<Lsn>,
    /// The configured tables with their schemas (those whose schema could be read).
    pub tables: Vec<(SourceTable, TableSchema)>,
    /// Target table names the first copy empties before copying (see [`tables_emptied`]).
    pub emptied_targets: HashSet<String>,
}

/// What the target checks found.
#[derive(Debug, Default)]
pub struct TargetInspection {
    pub findings: Vec<Finding>,
    /// The MySQL-protocol connection and what setup would do there, when both worked.
    pub setup: Option<(TargetSetup, TargetPlan)>,
}

/// Both sides, ready for the phase that creates: only when every finding passed.
#[derive(Debug)]
pub struct Inspected {
    pub client: Client,
    pub existing_slot: Option<Lsn>,
    pub tables: Vec<(SourceTable, TableSchema)>,
    pub target: TargetSetup,
    pub plan: TargetPlan,
}

/// Source and target checks together, as `run` uses them: the first failure as the error
/// (every failure is logged), or everything the creating phase needs.
pub fn ready(source: SourceInspection, target: TargetInspection) -> Result<Inspected, SetupError> {
    let mut first = None;
    for finding in source.findings.into_iter().chain(target.findings) {
        if let Err(error) = finding.outcome {
            match first {
                None => first = Some(error),
                Some(_) => tracing::error!(check = %finding.subject, "{error}"),
            }
        }
    }
    if let Some(error) = first {
        return Err(error);
    }
    match (source.client, target.setup) {
        (Some(client), Some((target, plan))) => Ok(Inspected {
            client,
            existing_slot: source.existing_slot,
            tables: source.tables,
            target,
            plan,
        }),
        // Every finding passed, so both connections opened: a finding is pushed for each.
        _ => unreachable!("every check passed without both connections"),
    }
}

/// Whether a state store's read failed because its schema or table does not exist.
fn never_created(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = error.source();
    while let Some(current) = cause {
        if let Some(code) = current
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
        {
            return *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME;
        }
        cause = current.source();
    }
    false
}

/// The source checks (see the module docs). Stops after the connection when it fails; otherwise
/// runs every check, so all problems are found at once.
pub async fn inspect_source(config: &PostgresConfig, snapshot: SnapshotMode) -> SourceInspection {
    let mut inspection = SourceInspection::default();
    let findings = &mut inspection.findings;
    let client = match connect_sql(&config.conn).await {
        Ok(client) => client,
        Err(err) => {
            findings.push(Finding::failed("Postgres connection", err));
            return inspection;
        }
    };
    findings.push(Finding::passed(
        "Postgres connection",
        config.conn.to_string(),
    ));
    findings.push(match source_writable(&client, config).await {
        Ok(detail) => Finding::passed("Postgres writable", detail),
        Err(err) => Finding::failed("Postgres writable", err),
    });
    // starwal's state lives where run writes it (`STARWAL_PG_PRIMARY_URL` when set). A standby's
    // replayed copy may lag behind it, or predate it: read there, a lost slot would look like a
    // fresh start, and run would then forget the primary's checkpoint and copy everything again
    // with STARWAL_ON_SLOT_LOSS=stop. Unreachable, `Postgres writable` has already failed.
    let primary_client = match &config.primary {
        Some(primary) => connect_sql(primary).await.ok(),
        None => None,
    };
    let state_client = primary_client.as_ref().unwrap_or(&client);

    let slot = existing_slot(&client, &config.slot, &config.conn.dbname).await;
    let slot_exists = matches!(slot, Ok(Some(_)));
    let prerequisites = check_prerequisites(&client, !slot_exists).await;
    let server_version = prerequisites.as_ref().ok().copied();
    findings.push(match prerequisites {
        Ok(version) => Finding::passed(
            "Postgres prerequisites",
            format!(
                "server_version_num {version}, wal_level logical, REPLICATION granted, free sender{}",
                if slot_exists { "" } else { " and slot" }
            ),
        ),
        Err(err) => Finding::failed("Postgres prerequisites", err),
    });
    let slot_subject = format!("slot `{}`", config.slot);
    findings.push(match slot {
        Ok(Some(lsn)) => {
            inspection.existing_slot = Some(lsn);
            Finding::passed(slot_subject, format!("exists, resumes at {lsn}"))
        }
        Ok(None) => match slot_loss(state_client, config).await {
            Ok(None) => Finding::passed(
                slot_subject,
                "missing; run creates it last, after every other step of setup worked",
            ),
            Ok(Some(what)) => match config.on_slot_loss {
                OnSlotLoss::Stop => Finding::failed(
                    slot_subject,
                    SetupError::SlotLost {
                        slot: config.slot.clone(),
                        state_schema: config.state_schema.clone(),
                        what,
                    },
                ),
                OnSlotLoss::Resync => Finding::passed(
                    slot_subject,
                    format!(
                        "missing though starwal had {what}; STARWAL_ON_SLOT_LOSS=resync: run \
                         re-creates it and copies every table again"
                    ),
                ),
            },
            Err(err) => Finding::failed(slot_subject, err),
        },
        Err(err) => Finding::failed(slot_subject, err),
    });
    // Decoding from a standby: the slot is the standby's, which cannot fail over; what the
    // primary-side readiness check would say (no standby, synchronized_standby_slots) is moot.
    let on_standby = server_state(&client)
        .await
        .is_ok_and(|state| state.in_recovery);
    if on_standby {
        findings.push(Finding::passed(
            "slot failover",
            "warning: the slot is on this standby, where Postgres makes no failover slots: no \
             other server keeps a copy of it (README, Decoding from a standby)",
        ));
    } else if let Some(version) = server_version {
        let has_failover = match inspection.existing_slot {
            Some(_) => slot_failover(&client, &config.slot).await.ok().flatten(),
            None => None,
        };
        // A warning, never a failure: a source without a standby is a valid setup.
        match failover_readiness(
            &client,
            version,
            config.slot_failover,
            &config.slot,
            has_failover,
        )
        .await
        {
            Ok(Ok(detail)) => findings.push(Finding::passed("slot failover", detail)),
            Ok(Err(missing)) => findings.push(Finding::passed(
                "slot failover",
                format!("warning: {missing}"),
            )),
            Err(err) => findings.push(Finding::passed(
                "slot failover",
                format!("warning: could not tell: {err}"),
            )),
        }
    }

    match resolve_tables(&client, &config.tables).await {
        Err(err) => findings.push(Finding::failed("tables", err)),
        Ok(tables) => {
            let names: Vec<String> = tables.iter().map(SourceTable::display_name).collect();
            findings.push(Finding::passed("tables", names.join(", ")));
            let publication_subject = format!("publication `{}`", config.publication);
            match publication_status(&client, &config.publication, &tables).await {
                Ok(status) => {
                    findings.push(Finding::passed(
                        publication_subject,
                        match &status {
                            PublicationStatus::Complete => "publishes every table".to_owned(),
                            PublicationStatus::Missing => "missing; run creates it".to_owned(),
                            PublicationStatus::MissingTables(missing) => format!(
                                "run adds {}",
                                missing
                                    .iter()
                                    .map(SourceTable::display_name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        },
                    ));
                    findings.push(
                        match check_privileges(&client, config, &tables, &status).await {
                            Ok(user) => Finding::passed(
                                "Postgres privileges",
                                format!("role `{user}` may do what run does"),
                            ),
                            Err(err) => Finding::failed("Postgres privileges", err),
                        },
                    );
                }
                Err(err) => findings.push(Finding::failed(publication_subject, err)),
            }
            for table in &tables {
                match table_schema(&client, table).await {
                    Ok(schema) => inspection.tables.push((table.clone(), schema)),
                    Err(err) => findings.push(Finding::failed(
                        format!("table `{}`", table.display_name()),
                        err,
                    )),
                }
            }
            match tables_emptied(state_client, config, slot_exists, snapshot, &tables).await {
                Ok(emptied) => inspection.emptied_targets = emptied,
                Err(err) => findings.push(Finding::failed("copy progress", err)),
            }
        }
    }

    findings.push(match ReplicationConnection::connect(&config.conn).await {
        Ok(mut conn) => {
            let identity = conn.identify_system().await;
            conn.close().await;
            match identity {
                Ok(identity) => Finding::passed(
                    "replication connection",
                    format!(
                        "system {}, timeline {}",
                        identity.system_id, identity.timeline
                    ),
                ),
                Err(source) => Finding::failed(
                    "replication connection",
                    SetupError::ReplicationConnection {
                        source: Box::new(source),
                    },
                ),
            }
        }
        Err(source) => Finding::failed(
            "replication connection",
            SetupError::ReplicationConnection {
                source: Box::new(source),
            },
        ),
    });
    inspection.client = Some(client);
    inspection
}

/// Whether the source accepts what run writes there (publication, state tables, slot): a
/// standby or a read-only session (`default_transaction_read_only` set for the database or the
/// role) would pass every other check and then fail at the first CREATE, after the target was
/// created. Asks what `target_session_attrs` asks ([`ServerState::QUERY`]).
///
/// A standby of PostgreSQL 16+ passes when `STARWAL_PG_PRIMARY_URL` names its writable primary:
/// starwal then decodes from the standby (the slot is created there) and writes the publication,
/// state tables and heartbeats on the primary, which the standby replays.
async fn source_writable(client: &Client, config: &PostgresConfig) -> Result<String, SetupError> {
    let state = server_state(client).await.map_err(SetupError::query(
        "asking whether the source accepts writes",
    ))?;
    match (state.in_recovery, state.read_only) {
        (true, _) => {
            let version: i32 = client
                .query_one("SELECT current_setting('server_version_num')::int4", &[])
                .await
                .map_err(SetupError::query("reading the server version"))?
                .get(0);
            let Some(primary) = config.primary.as_ref().filter(|_| version >= 160000) else {
                return Err(SetupError::SourceNotWritable {
                    state: "is in recovery (a standby)",
                    fix: if version >= 160000 {
                        ", or, to decode from this standby, set STARWAL_PG_PRIMARY_URL to its \
                         primary: the slot is then created here and the publication, state \
                         tables and heartbeats are written there"
                            .to_owned()
                    } else {
                        " (decoding from a standby needs PostgreSQL 16+)".to_owned()
                    },
                });
            };
            let primary_client = connect_sql(primary)
                .await
                .map_err(SetupError::PrimaryConnect)?;
            let primary_state = server_state(&primary_client)
                .await
                .map_err(SetupError::query(
                    "asking whether STARWAL_PG_PRIMARY_URL accepts writes",
                ))?;
            match (primary_state.in_recovery, primary_state.read_only) {
                (true, _) => Err(SetupError::PrimaryNotWritable {
                    state: "is in recovery (a standby)",
                }),
                (false, true) => Err(SetupError::PrimaryNotWritable {
                    state: "is read-only (transaction_read_only = on)",
                }),
                (false, false) => {
                    same_cluster(client, &primary_client).await?;
                    // Without it, creating a slot here waits for the primary's own
                    // running-transactions record (15 s, or never while it writes no WAL).
                    let nudge = primary_client
                        .query_one(
                            "SELECT has_function_privilege('pg_log_standby_snapshot()', 'EXECUTE')",
                            &[],
                        )
                        .await
                        .map_err(SetupError::query(
                            "asking whether STARWAL_PG_PRIMARY_URL's role may call \
                             pg_log_standby_snapshot()",
                        ))?
                        .get::<_, bool>(0);
                    Ok(format!(
                        "a standby: decoding here (the slot is created here); the publication, \
                         state tables and heartbeats are written on STARWAL_PG_PRIMARY_URL \
                         ({primary}){}",
                        if nudge {
                            ""
                        } else {
                            "; warning: its role may not call pg_log_standby_snapshot(), so \
                             creating a slot here waits for the primary's next running-transactions \
                             record (about 15 s, longer while it writes no WAL): GRANT EXECUTE ON \
                             FUNCTION pg_log_standby_snapshot() TO <role> on the primary"
                        }
                    ))
                }
            }
        }
        (false, true) => Err(SetupError::SourceNotWritable {
            state: "is read-only (transaction_read_only = on)",
            fix: format!(
                ", or make this one writable: ALTER DATABASE \"{}\" (or ALTER ROLE, where \
                 it was set) SET default_transaction_read_only = off",
                config.conn.dbname
            ),
        }),
        (false, false) => match &config.primary {
            None => Ok("a read-write primary".to_owned()),
            // `run` writes on STARWAL_PG_PRIMARY_URL whenever it is set (a multi-host URL with
            // prefer-standby may land here): say so, and refuse another cluster.
            Some(primary) => {
                let primary_client = connect_sql(primary)
                    .await
                    .map_err(SetupError::PrimaryConnect)?;
                same_cluster(client, &primary_client).await?;
                Ok(format!(
                    "a read-write primary; the publication, state tables and heartbeats are \
                     written on STARWAL_PG_PRIMARY_URL ({primary})"
                ))
            }
        },
    }
}

/// `STARWAL_PG_PRIMARY_URL` must be the primary of `STARWAL_PG_URL`'s cluster: another cluster
/// (a typo, a staging server) accepts the publication, state tables and heartbeats, which then
/// never reach the slot, and teardown would drop a publication and state there. Clusters are told
/// apart by their system identifier, which a standby shares with its primary.
pub async fn same_cluster(source: &Client, primary: &Client) -> Result<(), SetupError> {
    const QUERY: &str = "SELECT system_identifier FROM pg_control_system()";
    let what = "reading the system identifier (pg_control_system())";
    let source_id: i64 = source
        .query_one(QUERY, &[])
        .await
        .map_err(SetupError::query(what))?
        .get(0);
    let primary_id: i64 = primary
        .query_one(QUERY, &[])
        .await
        .map_err(SetupError::query(what))?
        .get(0);
    if source_id == primary_id {
        Ok(())
    } else {
        Err(SetupError::PrimaryOtherCluster {
            source_id,
            primary_id,
        })
    }
}

async fn server_state(client: &Client) -> Result<ServerState, tokio_postgres::Error> {
    let row = client.query_one(ServerState::QUERY, &[]).await?;
    Ok(ServerState {
        read_only: row.get(0),
        in_recovery: row.get(1),
    })
}

/// What the state schema recorded for a slot that is missing: `Some` (\"confirmed up to LSN …\")
/// when starwal had streamed or copied from a slot of this name, which means the slot was
/// lost; `None` for a fresh start. Read-only: state tables that do not exist yet mean a fresh
/// start. A copy only asked for (`Pending`, recorded before the slot is created) does not count.
async fn slot_loss(client: &Client, config: &PostgresConfig) -> Result<Option<String>, SetupError> {
    let checkpoint = match CheckpointStore::new(&config.state_schema, &config.slot)
        .load(client)
        .await
    {
        Ok(checkpoint) => checkpoint,
        Err(err) if never_created(&err) => Checkpoint::default(),
        Err(err) => return Err(SetupError::State(Box::new(err))),
    };
    let copies = match CopyStore::new(&config.state_schema, &config.slot)
        .load(client)
        .await
    {
        Ok(records) => records,
        Err(err) if never_created(&err) => Default::default(),
        Err(err) => return Err(Box::new(err).into()),
    };
    let copied = copies
        .values()
        .filter(|record| !matches!(record, CopyRecord::Pending { .. }))
        .count();
    let mut what = Vec::new();
    if checkpoint.confirmed_lsn != Lsn::ZERO {
        what.push(format!("confirmed up to LSN {}", checkpoint.confirmed_lsn));
    }
    if !checkpoint.in_flight.is_empty() {
        what.push(format!("{} load(s) in flight", checkpoint.in_flight.len()));
    }
    if copied > 0 {
        what.push(format!("copied {copied} table(s)"));
    }
    Ok((!what.is_empty()).then(|| what.join(", ")))
}

/// The target tables (StarRocks names) the first copy empties before copying: with a copy to
/// make (`STARWAL_SNAPSHOT` other than `never`), every table when the slot is new (its stream
/// starts now, so earlier copies do not count), else the tables with no copy record or a copy
/// asked for and not started (a copy cut short resumes without emptying). Read-only: a state
/// table that does not exist yet means no table was copied.
async fn tables_emptied(
    client: &Client,
    config: &PostgresConfig,
    slot_exists: bool,
    snapshot: SnapshotMode,
    tables: &[SourceTable],
) -> Result<HashSet<String>, SetupError> {
    let target = |t: &SourceTable| target_table_name(&t.schema, &t.name);
    let copy_unrecorded = snapshot != SnapshotMode::Never;
    if !slot_exists {
        return Ok(if copy_unrecorded {
            tables.iter().map(target).collect()
        } else {
            HashSet::new()
        });
    }
    let store = CopyStore::new(&config.state_schema, &config.slot);
    let records = match store.load(client).await {
        Ok(records) => records,
        // The state schema or its tables do not exist yet: nothing was copied.
        Err(err) if never_created(&err) => Default::default(),
        Err(err) => return Err(Box::new(err).into()),
    };
    Ok(tables
        .iter()
        .filter(|t| match records.get(&t.display_name()) {
            None => copy_unrecorded,
            Some(CopyRecord::Pending { .. }) => true,
            Some(_) => false,
        })
        .map(target)
        .collect())
}

/// The target checks (see the module docs); `sources` are the source schemas found,
/// `emptied` the target tables the first copy empties.
pub async fn inspect_target(
    config: &StarRocksConfig,
    sources: &[TableSchema],
    emptied: &HashSet<String>,
) -> TargetInspection {
    let mut inspection = TargetInspection::default();
    let findings = &mut inspection.findings;
    match TargetSetup::connect(config).await {
        Err(err) => findings.push(Finding::failed("StarRocks MySQL protocol", err)),
        Ok(mut setup) => match setup.plan(sources).await {
            Err(err) => {
                findings.push(Finding::failed("StarRocks tables", err));
                setup.close().await;
            }
            Ok(plan) => {
                findings.push(Finding::passed(
                    "StarRocks MySQL protocol",
                    format!("{} (version {})", config.mysql_addr, plan.version),
                ));
                findings.push(Finding::passed(
                    format!("database `{}`", config.database),
                    if plan.create_database {
                        "missing; run creates it"
                    } else {
                        "exists"
                    },
                ));
                for table in &plan.tables {
                    let subject = format!("target `{}`", table.target.name);
                    let mut detail = if !table.exists {
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
                    if table.exists && emptied.contains(&table.target.name) {
                        match setup.row_count(&table.target.name).await {
                            Ok(0) => {}
                            Ok(rows) => detail.push_str(&format!(
                                "; it has {rows} rows, which run deletes before the first copy \
                                 (STARWAL_SNAPSHOT=never keeps them)"
                            )),
                            Err(err) => {
                                findings.push(Finding::failed(subject, err));
                                continue;
                            }
                        }
                    }
                    findings.push(Finding::passed(subject, detail));
                }
                inspection.setup = Some((setup, plan));
            }
        },
    }

    let client = StreamLoadClient::new(config.clone());
    findings.push(match client.probe().await {
        Ok(found) => Finding::passed(
            "Stream Load",
            format!(
                "{} answers and accepts the credentials{}",
                config.fe_urls.join(", "),
                match found {
                    ProbeFound::Database => "",
                    ProbeFound::NoDatabase => " (the database does not exist yet)",
                }
            ),
        ),
        Err(source) => Finding::failed(
            "Stream Load",
            SetupError::StreamLoad {
                source: Box::new(source),
            },
        ),
    });
    inspection
}

/// `STARWAL_COMMIT_MODE=transaction` needs multi-table transactions: StarRocks 4.0 or later
/// (`version` as `select current_version()` answers it, e.g. `4.0.2-sim`, `3.3.5-abc`). A
/// version that does not start with a number is let through (a build with another scheme).
pub fn check_commit_mode(mode: CommitMode, version: &str) -> Result<(), SetupError> {
    if mode != CommitMode::Transaction {
        return Ok(());
    }
    let major: Option<u32> = version
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok());
    match major {
        Some(major) if major < 4 => Err(SetupError::CommitModeNeedsStarRocks4 {
            version: version.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// `starwal check`'s line for [`check_commit_mode`] (`None` in `table` mode).
pub fn commit_mode_finding(mode: CommitMode, version: &str) -> Option<Finding> {
    if mode != CommitMode::Transaction {
        return None;
    }
    let subject = "STARWAL_COMMIT_MODE=transaction";
    Some(match check_commit_mode(mode, version) {
        Ok(()) => Finding::passed(
            subject,
            format!("StarRocks {version} has multi-table transactions"),
        ),
        Err(err) => Finding::failed(subject, err),
    })
}

/// [`check_commit_mode`] before anything starts (`starwal run` exits 2 on an older StarRocks):
/// `Ok` too when StarRocks cannot be asked now (setup asks again on every attempt).
pub async fn check_commit_mode_at_start(
    config: &StarRocksConfig,
    mode: CommitMode,
) -> Result<(), SetupError> {
    if mode != CommitMode::Transaction {
        return Ok(());
    }
    let Ok(mut setup) = TargetSetup::connect(config).await else {
        return Ok(());
    };
    let version = setup.version().await;
    setup.close().await;
    match version {
        Ok(version) => check_commit_mode(mode, &version),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod commit_mode_tests {
    use super::*;

    #[test]
    fn inv11_transaction_mode_needs_starrocks_4() {
        let t = CommitMode::Transaction;
        assert!(check_commit_mode(t, "4.0.2-sim").is_ok());
        assert!(check_commit_mode(t, "5.1").is_ok());
        let err = check_commit_mode(t, "3.3-sim").unwrap_err().to_string();
        assert!(
            err.contains("STARWAL_COMMIT_MODE") && err.contains("3.3-sim"),
            "{err}"
        );
        assert!(check_commit_mode(CommitMode::Table, "3.3").is_ok());
        assert!(check_commit_mode(t, "dev-build").is_ok());
    }
}
