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
use crate::postgres::replication::commands::FAILOVER_SLOTS_VERSION;
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
        create_slot_if_missing(client, conn, slot, SlotSnapshot::Nothing, None).await?;
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
    create_slot_if_missing(client, conn, slot, SlotSnapshot::Export, None).await
}

/// The slot as `run` wants it, per the configuration: created when missing (exporting its
/// snapshot unless `snapshot` is `Nothing`) with failover as `STARWAL_SLOT_FAILOVER` says; an
/// existing slot that should fail over and does not gets a warning with the fix.
pub async fn ensure_configured_slot(
    client: &Client,
    config: &PostgresConfig,
    snapshot: SlotSnapshot,
) -> Result<(SlotState, Option<ExportedSnapshot>), SetupError> {
    create_slot_if_missing(
        client,
        &config.conn,
        &config.slot,
        snapshot,
        Some(config.slot_failover),
    )
    .await
}

/// Whether a slot should be created with failover: as configured, else wherever the server
/// has failover slots (PG 17+).
pub fn wants_failover(configured: Option<bool>, server_version_num: u32) -> bool {
    configured.unwrap_or(server_version_num >= FAILOVER_SLOTS_VERSION)
}

/// `pg_replication_slots.failover` of `slot` (PG 17+); `None` before 17 or when missing.
pub async fn slot_failover(client: &Client, slot: &str) -> Result<Option<bool>, SetupError> {
    let row = client
        .query_opt(
            "SELECT (to_jsonb(s) ->> 'failover')::bool FROM pg_replication_slots s \
             WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(SetupError::query("reading the slot's failover flag"))?;
    Ok(row.and_then(|row| row.get::<_, Option<bool>>(0)))
}

/// The warning for an existing slot that does not fail over while `STARWAL_SLOT_FAILOVER`
/// (or the PG 17+ default) asks for it, with the statement that fixes it.
pub fn no_failover_warning(slot: &str) -> String {
    format!(
        "replication slot `{slot}` was created without failover, so a standby does not keep a \
         copy of it and it is lost if the primary fails over; with starwal stopped, run \
         `ALTER_REPLICATION_SLOT {} (FAILOVER true)` on a replication connection \
         (psql \"dbname=<db> replication=database\"; there is no SQL function for it), or set \
         STARWAL_SLOT_FAILOVER=false to accept that",
        quote_ident(slot)
    )
}

/// Whether the cluster is set up so the slot survives a failover, as far as the primary can
/// tell: `Ok` says what was found, `Err` what is missing (a warning for `check`, never a
/// failure: many sources have no standby at all). `slot_failover`: the existing slot's flag.
pub async fn failover_readiness(
    client: &Client,
    server_version_num: u32,
    configured: Option<bool>,
    slot: &str,
    slot_failover: Option<bool>,
) -> Result<Result<String, String>, SetupError> {
    if server_version_num < FAILOVER_SLOTS_VERSION {
        return Ok(Err(format!(
            "PostgreSQL {} has no failover slots (17+): after a failover the slot is missing on \
             the new primary and starwal stops (STARWAL_ON_SLOT_LOSS)",
            server_version_num / 10000
        )));
    }
    if !wants_failover(configured, server_version_num) {
        return Ok(Err(
            "STARWAL_SLOT_FAILOVER=false: the slot is not kept on standbys and is lost if the \
             primary fails over"
                .to_owned(),
        ));
    }
    let mut missing = Vec::new();
    if slot_failover == Some(false) {
        missing.push(no_failover_warning(slot));
    }
    let row = client
        .query_one(
            "SELECT coalesce(current_setting('synchronized_standby_slots', true), ''), \
             coalesce((SELECT array_agg(slot_name::text ORDER BY slot_name) \
                       FROM pg_replication_slots WHERE slot_type = 'physical' AND active), '{}')",
            &[],
        )
        .await
        .map_err(SetupError::query("reading the failover settings"))?;
    let synchronized: String = row.get(0);
    let active_physical: Vec<String> = row.get(1);
    let listed: Vec<&str> = synchronized
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    if active_physical.is_empty() {
        missing.push(
            "no standby streams through a physical slot: a standby needs primary_slot_name \
             (with a physical slot here), hot_standby_feedback = on, sync_replication_slots = on \
             and dbname in primary_conninfo to keep a copy of the slot"
                .to_owned(),
        );
    }
    if listed.is_empty() {
        missing.push(format!(
            "synchronized_standby_slots is not set: starwal may confirm changes the standby has \
             not received, which are then missing after a failover; run ALTER SYSTEM SET \
             synchronized_standby_slots = '{}' and SELECT pg_reload_conf()",
            active_physical
                .first()
                .map(String::as_str)
                .unwrap_or("<standby's physical slot>")
        ));
    } else {
        let inactive: Vec<&str> = listed
            .iter()
            .copied()
            .filter(|name| !active_physical.iter().any(|active| active == name))
            .collect();
        if !inactive.is_empty() {
            missing.push(format!(
                "synchronized_standby_slots names {} with no standby streaming through it: \
                 logical decoding waits for it",
                inactive.join(", ")
            ));
        }
    }
    Ok(if missing.is_empty() {
        Ok(format!(
            "standby slot(s) {} active and in synchronized_standby_slots; the standby must also \
             have sync_replication_slots = on and hot_standby_feedback = on (not visible from \
             the primary)",
            listed.join(", ")
        ))
    } else {
        Err(missing.join("; "))
    })
}

/// `failover`: `None` keeps the old behaviour (no failover, no warning: `tail` and tests);
/// `Some(configured)` applies [`wants_failover`].
async fn create_slot_if_missing(
    client: &Client,
    conn: &ConnInfo,
    slot: &str,
    snapshot: SlotSnapshot,
    failover: Option<Option<bool>>,
) -> Result<(SlotState, Option<ExportedSnapshot>), SetupError> {
    if let Some(confirmed_flush) = existing_slot(client, slot, &conn.dbname).await? {
        if let Some(configured) = failover {
            let has = slot_failover(client, slot).await?;
            // `None`: the server has no failover slots; a warning there would ask the impossible.
            if has == Some(false) && wants_failover(configured, FAILOVER_SLOTS_VERSION) {
                tracing::warn!(slot, "{}", no_failover_warning(slot));
            }
        }
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
    // A slot made on a standby (decoding there, PG 16+) cannot fail over: Postgres refuses
    // FAILOVER there, and the standby's slot is not what a promotion keeps anyway.
    let on_standby = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(SetupError::query("asking whether the source is a standby"))?
        .get::<_, bool>(0);
    let failover = failover.filter(|_| !on_standby);
    let mut replication = ReplicationConnection::connect(conn)
        .await
        .map_err(create_error)?;
    let version = replication.server_version_num();
    let with_failover = failover.is_some_and(|configured| {
        let wanted = wants_failover(configured, version);
        if wanted && version < FAILOVER_SLOTS_VERSION {
            tracing::warn!(
                slot,
                server_version_num = version,
                "STARWAL_SLOT_FAILOVER=true, but failover slots need PostgreSQL 17+: the slot is \
                 created without it and is lost if the primary fails over"
            );
        }
        wanted && version >= FAILOVER_SLOTS_VERSION
    });
    let created = replication
        .create_logical_slot_with(slot, false, snapshot, with_failover)
        .await
        .map_err(create_error)?;
    tracing::info!(
        slot,
        consistent_point = %created.consistent_point,
        failover = with_failover,
        "created replication slot"
    );
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
