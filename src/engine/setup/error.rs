//! Why setup could not finish. Every variant names the object (slot, publication, role,
//! setting; tables through [`CatalogError`]) and says how to fix it, because these are the errors
//! a user meets first.

use crate::postgres::catalog::CatalogError;
use crate::postgres::replication::ReplicationError;
use crate::postgres::tls::SqlConnectError;

/// Setup failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Connect(#[from] SqlConnectError),
    #[error("{what}: {}", crate::error_text::chain(.source))]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("Postgres {found} is not supported: starwal needs PostgreSQL 14 to 18")]
    ServerVersion { found: String },
    #[error("wal_level is `{found}`, logical replication needs `logical`: run ALTER SYSTEM SET wal_level = logical and restart Postgres")]
    WalLevel { found: String },
    #[error("role `{user}` lacks the REPLICATION attribute: run ALTER ROLE {user} REPLICATION (as a superuser)")]
    NoReplicationPrivilege { user: String },
    #[error("no free replication slot: {used} of max_replication_slots = {max} are in use; drop an unused slot or raise max_replication_slots (needs a restart)")]
    NoFreeSlots { used: i64, max: i64 },
    #[error("no free WAL sender: {used} of max_wal_senders = {max} are in use; raise max_wal_senders (needs a restart)")]
    NoFreeSenders { used: i64, max: i64 },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("publication `{publication}` does not publish {}: those changes would never reach the target; run ALTER PUBLICATION {publication} SET (publish = 'insert, update, delete, truncate')", .missing.join(", "))]
    PublicationOperations {
        publication: String,
        missing: Vec<&'static str>,
    },
    #[error("publication `{publication}` does not publish generated columns, so every change would write NULL over the values of the stored generated columns of {}: run ALTER PUBLICATION {publication} SET (publish_generated_columns = stored)", .tables.join(", "))]
    PublicationGeneratedColumns {
        publication: String,
        tables: Vec<String>,
    },
    #[error("publication `{publication}` publishes all tables (FOR ALL TABLES), not the configured ones; use another STARWAL_PUBLICATION or drop it")]
    PublicationAllTables { publication: String },
    #[error("cannot {action} publication `{publication}`: {}; a role that can may run instead: {sql}", crate::error_text::chain(.source))]
    Publication {
        action: &'static str,
        publication: String,
        sql: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("role `{user}` lacks what run needs:\n  - {}", .missing.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  - "))]
    Privileges {
        user: String,
        missing: Vec<MissingPrivilege>,
    },
    #[error("replication connection: {source} (pg_hba.conf: a replication=database connection matches the database column, not `replication`)")]
    ReplicationConnection {
        #[source]
        source: Box<ReplicationError>,
    },
    #[error("StarRocks FE HTTP (STARWAL_STARROCKS_URL): {source}")]
    StreamLoad {
        #[source]
        source: Box<crate::sink::starrocks::StreamLoadError>,
    },
    #[error("replication slot `{slot}` was invalidated (wal_status = lost{reason}): Postgres removed WAL it still needed, so changes were lost. Recover with STARWAL_ON_SLOT_LOSS=resync after SELECT pg_drop_replication_slot('{slot}') (the next start re-creates the slot and copies every table again), or with `starwal teardown --yes` and a fresh start")]
    SlotInvalidated { slot: String, reason: String },
    #[error("replication slot `{slot}` is missing but starwal had {what} from it (state schema `{state_schema}`): \
             the slot was dropped, invalidated or lost in a failover, so the changes made since it was lost are gone \
             and the target may miss them. starwal does not start over on its own. Recover with \
             STARWAL_ON_SLOT_LOSS=resync (re-creates the slot and copies every table again), or with \
             `starwal teardown --yes` and a fresh start")]
    SlotLost {
        slot: String,
        state_schema: String,
        /// What the state schema recorded: "confirmed up to LSN 0/16B3748 (2 loads in flight)".
        what: String,
    },
    /// The source does not accept writes, and run creates a publication, state tables and a
    /// slot there (found read-only, before anything is created: invariant 13).
    #[error("the source {state}: run creates a publication, state tables and a replication slot there, so it needs a writable primary; point STARWAL_PG_URL at the primary (with several hosts, target_session_attrs=read-write picks it){fix}")]
    SourceNotWritable {
        /// "is in recovery (a standby)" or "is read-only (transaction_read_only = on)".
        state: &'static str,
        /// How to make it writable when it is a primary set read-only ("" for a standby).
        fix: String,
    },
    /// Decoding from a standby: `STARWAL_PG_PRIMARY_URL`, where starwal's writes go, cannot be
    /// reached.
    #[error("STARWAL_PG_PRIMARY_URL (where starwal writes the publication, state tables and heartbeats while decoding from the standby): {0}")]
    PrimaryConnect(#[source] SqlConnectError),
    /// Decoding from a standby: `STARWAL_PG_PRIMARY_URL` is not a writable primary.
    #[error("STARWAL_PG_PRIMARY_URL {state}: starwal writes the publication, state tables and heartbeats there while it decodes from the standby, so it must be the standby's read-write primary")]
    PrimaryNotWritable {
        /// "is in recovery (a standby)" or "is read-only (transaction_read_only = on)".
        state: &'static str,
    },
    /// Decoding from a standby: `STARWAL_PG_PRIMARY_URL` is a server of another cluster.
    #[error("STARWAL_PG_PRIMARY_URL is not in STARWAL_PG_URL's cluster (system identifier {primary_id}, not {source_id}): the publication, state tables and heartbeats written there would never reach the slot; point it at the primary the standby replicates from")]
    PrimaryOtherCluster { source_id: i64, primary_id: i64 },
    /// `STARWAL_COMMIT_MODE=transaction` needs multi-table transactions (StarRocks 4.0+).
    #[error("STARWAL_COMMIT_MODE=transaction needs StarRocks 4.0 or later (multi-table transactions), but `select current_version()` answered `{version}`; use STARWAL_COMMIT_MODE=table with this StarRocks")]
    CommitModeNeedsStarRocks4 { version: String },
    #[error("replication slot `{slot}` uses plugin `{plugin}`, not pgoutput; choose another STARWAL_SLOT")]
    SlotWrongPlugin { slot: String, plugin: String },
    #[error("replication slot `{slot}` belongs to database `{database}`, not `{expected}`; choose another STARWAL_SLOT")]
    SlotOtherDatabase {
        slot: String,
        database: String,
        expected: String,
    },
    #[error("replication slot `{slot}` is in use by process {pid}; is another starwal running with the same STARWAL_SLOT?")]
    SlotActive { slot: String, pid: i32 },
    #[error(transparent)]
    State(Box<crate::postgres::checkpoint::CheckpointError>),
    #[error(transparent)]
    CopyState(#[from] Box<crate::postgres::snapshot::store::CopyStoreError>),
    #[error(transparent)]
    Target(#[from] crate::sink::starrocks::setup::TargetSetupError),
    #[error("creating replication slot `{slot}`: {source}")]
    CreateSlot {
        slot: String,
        #[source]
        source: Box<ReplicationError>,
    },
}

impl SetupError {
    /// Wraps a failed SQL statement with what it was for (for `map_err`).
    pub fn query(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SetupError {
        move |source| SetupError::Query { what, source }
    }

    /// Whether retrying setup unchanged may succeed (the server was unreachable or busy);
    /// everything else needs someone to change something first.
    pub fn is_transient(&self) -> bool {
        match self {
            SetupError::Connect(SqlConnectError::Connect { .. }) => true,
            // A failover in progress: the new primary may answer on the next attempt.
            SetupError::Connect(SqlConnectError::NoHost { .. }) => true,
            SetupError::PrimaryConnect(SqlConnectError::Connect { .. }) => true,
            SetupError::PrimaryConnect(SqlConnectError::NoHost { .. }) => true,
            SetupError::CreateSlot { source, .. } => source.is_transient(),
            SetupError::SlotActive { .. } => true,
            SetupError::Target(err) => err.is_transient(),
            SetupError::ReplicationConnection { source } => source.is_transient(),
            SetupError::StreamLoad { source } => source.is_transient(),
            _ => false,
        }
    }
}

/// A privilege the role lacks for something `run` would do, with the statement that grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPrivilege {
    /// What is lacking: "CREATE on database `app`".
    pub privilege: String,
    /// What run needs it for: "to create publication `starwal`".
    pub needed_for: String,
    /// The statement that fixes it (run by an owner or a superuser).
    pub fix: String,
}

impl std::fmt::Display for MissingPrivilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.privilege, self.needed_for, self.fix)
    }
}
