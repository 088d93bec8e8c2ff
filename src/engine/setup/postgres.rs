//! Source-side setup, what acts on the source: prerequisites (version 14–18, `wal_level`, free
//! slots and senders, the REPLICATION attribute), the publication (created or completed) for the
//! configured tables (resolved and checked by `postgres::catalog`) and the slot (created when
//! missing, checked when found — an invalidated slot is reported with the way to recover). Runs
//! over an ordinary SQL connection, plus one replication connection when a slot has to be
//! created.
//!
//! Generated columns (invariant 12): pgoutput sends stored generated columns only on
//! PostgreSQL 18+ with `publish_generated_columns = stored`, and never before 18. So on 18 the
//! publication is created with that option, and an existing one without it is refused when a
//! configured table has a stored generated column (the error gives the ALTER that fixes it);
//! on 14–17 generated columns are left out of the target altogether (`catalog::table_schema`).

use std::time::Duration;

use tokio_postgres::Client;

use super::error::{MissingPrivilege, SetupError};
use crate::config::PostgresConfig;
use crate::postgres::catalog::{resolve_tables, SourceTable, PUBLISHES_GENERATED_COLUMNS};
use crate::postgres::conninfo::ConnInfo;
use crate::postgres::replication::{ReplicationConnection, SlotSnapshot};
use crate::postgres::snapshot::ExportedSnapshot;
use crate::postgres::sql::quote_ident;
use crate::postgres::Lsn;

/// The oldest and newest major versions starwal is tested against.
pub const SUPPORTED_MAJORS: std::ops::RangeInclusive<u32> = 14..=18;

/// What the source checks found and what setup changed.
#[derive(Debug, Clone)]
pub struct SourceReport {
    pub server_version_num: u32,
    pub tables: Vec<SourceTable>,
    pub publication_created: bool,
    /// Tables added to an existing publication.
    pub tables_added: Vec<String>,
}

/// The state of the permanent slot after [`ensure_slot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    pub created: bool,
    /// Where streaming resumes (`confirmed_flush_lsn`, or the consistent point of a new slot).
    pub confirmed_flush: Lsn,
}

/// Checks the server and the role. `need_new_slot`: whether a free slot is required (the slot
/// does not exist yet, or a temporary one will be made).
pub async fn check_prerequisites(client: &Client, need_new_slot: bool) -> Result<u32, SetupError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, current_setting('server_version'), \
             current_setting('wal_level'), current_setting('max_replication_slots')::int8, \
             current_setting('max_wal_senders')::int8, \
             (SELECT count(*) FROM pg_replication_slots), \
             (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'), \
             current_user::text, \
             (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await
        .map_err(SetupError::query("reading server settings"))?;
    let version_num = row.get::<_, i32>(0) as u32;
    if !SUPPORTED_MAJORS.contains(&(version_num / 10000)) {
        return Err(SetupError::ServerVersion {
            found: row.get::<_, String>(1),
        });
    }
    let wal_level: String = row.get(2);
    if wal_level != "logical" {
        return Err(SetupError::WalLevel { found: wal_level });
    }
    let user: String = row.get(7);
    if !row.get::<_, Option<bool>>(8).unwrap_or(false) {
        return Err(SetupError::NoReplicationPrivilege { user });
    }
    let (max_slots, used_slots): (i64, i64) = (row.get(3), row.get(5));
    if need_new_slot && used_slots >= max_slots {
        return Err(SetupError::NoFreeSlots {
            used: used_slots,
            max: max_slots,
        });
    }
    let (max_senders, used_senders): (i64, i64) = (row.get(4), row.get(6));
    if used_senders >= max_senders {
        return Err(SetupError::NoFreeSenders {
            used: used_senders,
            max: max_senders,
        });
    }
    Ok(version_num)
}

/// What the publication lacks, found without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicationStatus {
    /// It does not exist yet.
    Missing,
    /// It exists and publishes every configured table.
    Complete,
    /// It exists but lacks these tables.
    MissingTables(Vec<SourceTable>),
}

/// Inspects the publication: it must publish every operation and not be `FOR ALL TABLES`.
pub async fn publication_status(
    client: &Client,
    publication: &str,
    tables: &[SourceTable],
) -> Result<PublicationStatus, SetupError> {
    let existing = client
        .query_opt(
            "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate, \
                    to_jsonb(p) ->> 'pubgencols', \
                    current_setting('server_version_num')::int4 >= $2 \
             FROM pg_publication p WHERE pubname = $1",
            &[&publication, &PUBLISHES_GENERATED_COLUMNS],
        )
        .await
        .map_err(SetupError::query("looking up the publication"))?;
    let Some(row) = existing else {
        return Ok(PublicationStatus::Missing);
    };
    if row.get::<_, bool>(0) {
        return Err(SetupError::PublicationAllTables {
            publication: publication.to_owned(),
        });
    }
    // A publication that leaves out an operation would silently drop those changes.
    let missing: Vec<&'static str> = [(1, "insert"), (2, "update"), (3, "delete"), (4, "truncate")]
        .into_iter()
        .filter(|(index, _)| !row.get::<_, bool>(*index))
        .map(|(_, operation)| operation)
        .collect();
    if !missing.is_empty() {
        return Err(SetupError::PublicationOperations {
            publication: publication.to_owned(),
            missing,
        });
    }
    // On 18 `table_schema` counts stored generated columns as replicated: the stream must carry
    // them, or every change would write NULL over the copied values.
    let generated_published = row.get::<_, Option<String>>(5).as_deref() == Some("s");
    if row.get::<_, bool>(6) && !generated_published {
        let generated = tables_with_generated_columns(client, tables).await?;
        if !generated.is_empty() {
            return Err(SetupError::PublicationGeneratedColumns {
                publication: publication.to_owned(),
                tables: generated,
            });
        }
    }
    let published = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(SetupError::query("listing the publication's tables"))?;
    let missing: Vec<SourceTable> = tables
        .iter()
        .filter(|t| {
            !published
                .iter()
                .any(|row| row.get::<_, &str>(0) == t.schema && row.get::<_, &str>(1) == t.name)
        })
        .cloned()
        .collect();
    Ok(if missing.is_empty() {
        PublicationStatus::Complete
    } else {
        PublicationStatus::MissingTables(missing)
    })
}

/// The configured tables that have a stored generated column, as `schema.table`.
async fn tables_with_generated_columns(
    client: &Client,
    tables: &[SourceTable],
) -> Result<Vec<String>, SetupError> {
    let oids: Vec<u32> = tables.iter().map(|t| t.oid.0).collect();
    let rows = client
        .query(
            "SELECT DISTINCT attrelid FROM pg_attribute \
              WHERE attrelid = ANY($1::oid[]) AND attgenerated = 's' AND NOT attisdropped",
            &[&oids],
        )
        .await
        .map_err(SetupError::query("looking for generated columns"))?;
    Ok(tables
        .iter()
        .filter(|t| rows.iter().any(|row| row.get::<_, u32>(0) == t.oid.0))
        .map(SourceTable::display_name)
        .collect())
}

/// The `WITH` options of a publication starwal creates: through the root (one target table per
/// partitioned table) and, where the server can, with stored generated columns (see the module
/// docs).
async fn publication_options(client: &Client) -> Result<&'static str, SetupError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4 >= $1",
            &[&PUBLISHES_GENERATED_COLUMNS],
        )
        .await
        .map_err(SetupError::query("reading the server version"))?;
    Ok(if row.get::<_, bool>(0) {
        "publish_via_partition_root = true, publish_generated_columns = stored"
    } else {
        "publish_via_partition_root = true"
    })
}

/// The `CREATE PUBLICATION` setup runs for `tables` (also the fix a privilege error offers, to
/// be run by the tables' owner).
pub async fn create_publication_sql(
    client: &Client,
    publication: &str,
    tables: &[SourceTable],
) -> Result<String, SetupError> {
    Ok(format!(
        "CREATE PUBLICATION {} FOR TABLE {} WITH ({})",
        quote_ident(publication),
        quoted_list(tables),
        publication_options(client).await?
    ))
}

fn quoted_list(tables: &[SourceTable]) -> String {
    tables
        .iter()
        .map(|t| t.quoted())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates the publication for `tables`, or adds the ones it lacks. Returns (created, added).
pub async fn ensure_publication(
    client: &Client,
    publication: &str,
    tables: &[SourceTable],
) -> Result<(bool, Vec<String>), SetupError> {
    let (action, sql, added) = match publication_status(client, publication, tables).await? {
        PublicationStatus::Complete => return Ok((false, Vec::new())),
        PublicationStatus::Missing => (
            "create",
            create_publication_sql(client, publication, tables).await?,
            Vec::new(),
        ),
        PublicationStatus::MissingTables(missing) => (
            "add tables to",
            format!(
                "ALTER PUBLICATION {} ADD TABLE {}",
                quote_ident(publication),
                quoted_list(&missing)
            ),
            missing
                .iter()
                .map(SourceTable::display_name)
                .collect::<Vec<_>>(),
        ),
    };
    client
        .batch_execute(&sql)
        .await
        .map_err(|source| SetupError::Publication {
            action,
            publication: publication.to_owned(),
            sql: sql.clone(),
            source,
        })?;
    tracing::info!(publication, action, ?added, "publication changed");
    // Only two changes reach here: a new publication (nothing "added") or added tables.
    Ok((added.is_empty(), added))
}

/// Checks that the role may do what setup would do, read-only, so that a missing grant stops
/// setup before it creates anything (invariant 13): CREATE on the database for a publication or
/// a state schema it creates, CREATE and USAGE on an existing state schema (its tables are
/// created `IF NOT EXISTS` on every start, which needs CREATE), ownership of the tables a
/// publication gets (and of a publication it adds tables to), and SELECT on every table (copies
/// and moved-row reads). Every missing privilege at once, each with its GRANT; returns the
/// role's name.
pub async fn check_privileges(
    client: &Client,
    config: &PostgresConfig,
    tables: &[SourceTable],
    publication: &PublicationStatus,
) -> Result<String, SetupError> {
    let row = client
        .query_one(
            "SELECT current_user::text, current_database()::text, \
                    has_database_privilege(current_database(), 'CREATE'), \
                    n.oid IS NOT NULL, \
                    n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'CREATE'), \
                    n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'USAGE') \
               FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = $1",
            &[&config.state_schema],
        )
        .await
        .map_err(SetupError::query("reading the role's privileges"))?;
    let user: String = row.get(0);
    let database: String = row.get(1);
    let (create_on_database, schema_exists) = (row.get::<_, bool>(2), row.get::<_, bool>(3));
    let (create_on_schema, usage_on_schema) = (row.get::<_, bool>(4), row.get::<_, bool>(5));
    let oids: Vec<u32> = tables.iter().map(|t| t.oid.0).collect();
    let rows = client
        .query(
            "SELECT c.oid, pg_has_role(c.relowner, 'USAGE'), has_table_privilege(c.oid, 'SELECT') \
               FROM pg_class c WHERE c.oid = ANY($1::oid[])",
            &[&oids],
        )
        .await
        .map_err(SetupError::query("reading the tables' owners and grants"))?;
    let granted = |table: &SourceTable, column: usize| {
        rows.iter()
            .find(|row| row.get::<_, u32>(0) == table.oid.0)
            .is_some_and(|row| row.get::<_, bool>(column))
    };
    let names = |tables: &[&SourceTable]| {
        tables
            .iter()
            .map(|t| t.quoted())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let role = quote_ident(&user);
    let mut missing = Vec::new();

    let mut database_create_for = Vec::new();
    if *publication == PublicationStatus::Missing {
        database_create_for.push(format!("to create publication `{}`", config.publication));
    }
    if !schema_exists {
        database_create_for.push(format!(
            "to create the state schema `{}`",
            config.state_schema
        ));
    }
    if !create_on_database && !database_create_for.is_empty() {
        missing.push(MissingPrivilege {
            privilege: format!("CREATE on database `{database}`"),
            needed_for: database_create_for.join(" and "),
            fix: format!(
                "GRANT CREATE ON DATABASE {} TO {role}",
                quote_ident(&database)
            ),
        });
    }
    if schema_exists && !(create_on_schema && usage_on_schema) {
        missing.push(MissingPrivilege {
            privilege: format!("USAGE and CREATE on schema `{}`", config.state_schema),
            needed_for: "to keep the checkpoint and copy progress there".to_owned(),
            fix: format!(
                "GRANT USAGE, CREATE ON SCHEMA {} TO {role}",
                quote_ident(&config.state_schema)
            ),
        });
    }
    let to_publish: Vec<SourceTable> = match publication {
        PublicationStatus::Missing => tables.to_vec(),
        PublicationStatus::MissingTables(missing) => missing.clone(),
        PublicationStatus::Complete => Vec::new(),
    };
    let not_owned: Vec<&SourceTable> = to_publish.iter().filter(|t| !granted(t, 1)).collect();
    if !not_owned.is_empty() {
        let (needed_for, owner_sql) = if *publication == PublicationStatus::Missing {
            (
                format!("to create publication `{}` for them", config.publication),
                create_publication_sql(client, &config.publication, tables).await?,
            )
        } else {
            (
                format!("to add them to publication `{}`", config.publication),
                format!(
                    "ALTER PUBLICATION {} ADD TABLE {}",
                    quote_ident(&config.publication),
                    quoted_list(&to_publish)
                ),
            )
        };
        missing.push(MissingPrivilege {
            privilege: format!("ownership of {}", names(&not_owned)),
            needed_for,
            fix: format!(
                "{}; or have their owner run: {owner_sql}",
                not_owned
                    .iter()
                    .map(|t| format!("ALTER TABLE {} OWNER TO {role}", t.quoted()))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    if let PublicationStatus::MissingTables(_) = publication {
        let owns = client
            .query_opt(
                "SELECT pg_has_role(pubowner, 'USAGE') FROM pg_publication WHERE pubname = $1",
                &[&config.publication],
            )
            .await
            .map_err(SetupError::query("reading the publication's owner"))?
            .is_some_and(|row| row.get::<_, bool>(0));
        if !owns {
            missing.push(MissingPrivilege {
                privilege: format!("ownership of publication `{}`", config.publication),
                needed_for: "to add the tables it lacks".to_owned(),
                fix: format!(
                    "ALTER PUBLICATION {} OWNER TO {role}",
                    quote_ident(&config.publication)
                ),
            });
        }
    }
    let unreadable: Vec<&SourceTable> = tables.iter().filter(|t| !granted(t, 2)).collect();
    if !unreadable.is_empty() {
        missing.push(MissingPrivilege {
            privilege: format!("SELECT on {}", names(&unreadable)),
            needed_for: "to copy them and read rows the stream does not carry".to_owned(),
            fix: format!("GRANT SELECT ON {} TO {role}", names(&unreadable)),
        });
    }
    if missing.is_empty() {
        Ok(user)
    } else {
        Err(SetupError::Privileges { user, missing })
    }
}

/// Whether the slot exists: `Some(confirmed_flush)` after checking it is usable.
pub async fn existing_slot(
    client: &Client,
    slot: &str,
    dbname: &str,
) -> Result<Option<Lsn>, SetupError> {
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, active_pid, wal_status, \
             confirmed_flush_lsn::text, to_jsonb(s) ->> 'invalidation_reason' \
             FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(SetupError::query("looking up the replication slot"))?;
    let Some(row) = row else { return Ok(None) };
    let plugin: Option<String> = row.get(0);
    let plugin = plugin.unwrap_or_else(|| "(physical)".into());
    if plugin != "pgoutput" {
        return Err(SetupError::SlotWrongPlugin {
            slot: slot.to_owned(),
            plugin,
        });
    }
    let database: Option<String> = row.get(1);
    let database = database.unwrap_or_default();
    if database != dbname {
        return Err(SetupError::SlotOtherDatabase {
            slot: slot.to_owned(),
            database,
            expected: dbname.to_owned(),
        });
    }
    let wal_status: Option<String> = row.get(3);
    if wal_status.as_deref() == Some("lost") {
        let reason: Option<String> = row.get(5);
        return Err(SetupError::SlotInvalidated {
            slot: slot.to_owned(),
            reason: reason.map(|r| format!(", {r}")).unwrap_or_default(),
        });
    }
    if let Some(pid) = row.get::<_, Option<i32>>(2) {
        return Err(SetupError::SlotActive {
            slot: slot.to_owned(),
            pid,
        });
    }
    let confirmed: Option<String> = row.get(4);
    Ok(Some(
        confirmed.and_then(|c| c.parse().ok()).unwrap_or(Lsn::ZERO),
    ))
}

/// Creates the permanent slot when missing; never drops one (invariant 5).
pub async fn ensure_slot(
    client: &Client,
    conn: &ConnInfo,
    slot: &str,
) -> Result<SlotState, SetupError> {
    let (state, snapshot) =
        create_slot_if_missing(client, conn, slot, SlotSnapshot::Nothing).await?;
    debug_assert!(snapshot.is_none());
    Ok(state)
}

/// Like [`ensure_slot`], but a slot created now exports its snapshot: the rows exactly at its
/// consistent point, for the initial copy. The snapshot is held until released (it dies with
/// the next command on its connection), so release it once the readers imported it.
pub async fn ensure_slot_exporting(
    client: &Client,
    conn: &ConnInfo,
    slot: &str,
) -> Result<(SlotState, Option<ExportedSnapshot>), SetupError> {
    create_slot_if_missing(client, conn, slot, SlotSnapshot::Export).await
}

async fn create_slot_if_missing(
    client: &Client,
    conn: &ConnInfo,
    slot: &str,
    snapshot: SlotSnapshot,
) -> Result<(SlotState, Option<ExportedSnapshot>), SetupError> {
    if let Some(confirmed_flush) = existing_slot(client, slot, &conn.dbname).await? {
        let state = SlotState {
            created: false,
            confirmed_flush,
        };
        return Ok((state, None));
    }
    let create_error = |source| SetupError::CreateSlot {
        slot: slot.to_owned(),
        source: Box::new(source),
    };
    let mut replication = ReplicationConnection::connect(conn)
        .await
        .map_err(create_error)?;
    let created = replication
        .create_logical_slot(slot, false, snapshot)
        .await
        .map_err(create_error)?;
    tracing::info!(slot, consistent_point = %created.consistent_point, "created replication slot");
    let state = SlotState {
        created: true,
        confirmed_flush: created.consistent_point,
    };
    match created.snapshot_name {
        Some(name) if snapshot == SlotSnapshot::Export => Ok((
            state,
            Some(ExportedSnapshot::new(
                name,
                created.consistent_point,
                replication,
            )),
        )),
        _ => {
            replication.close().await;
            Ok((state, None))
        }
    }
}

/// Prerequisites, tables and publication: everything but the slot.
pub async fn prepare_source(
    client: &Client,
    config: &PostgresConfig,
    need_new_slot: bool,
) -> Result<SourceReport, SetupError> {
    let server_version_num = check_prerequisites(client, need_new_slot).await?;
    let tables = resolve_tables(client, &config.tables).await?;
    let (publication_created, tables_added) =
        ensure_publication(client, &config.publication, &tables).await?;
    Ok(SourceReport {
        server_version_num,
        tables,
        publication_created,
        tables_added,
    })
}

/// While backpressure holds the stream, only the periodic status updates keep the walsender from
/// timing out: the interval must be well below `wal_sender_timeout`.
pub async fn warn_on_short_sender_timeout(client: &Client, status_interval: Duration) {
    let timeout_ms = client
        .query_opt(
            "SELECT setting::int8 FROM pg_settings WHERE name = 'wal_sender_timeout'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map(|row| row.get::<_, i64>(0));
    if let Some(ms) = timeout_ms.filter(|ms| *ms > 0) {
        if status_interval.as_millis() * 2 > u128::from(ms.unsigned_abs()) {
            tracing::warn!(
                wal_sender_timeout_ms = ms,
                status_interval_s = status_interval.as_secs(),
                "STARWAL_STATUS_INTERVAL_S is not well below the server's wal_sender_timeout: \
                 while StarRocks is slow the server may drop the replication connection"
            );
        }
    }
}
