//! Replication commands sent as simple queries: `IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT` (in
//! the syntax each server version accepts, with `FAILOVER` on 17+), `ALTER_REPLICATION_SLOT`,
//! `DROP_REPLICATION_SLOT`, and the option list of
//! `START_REPLICATION` for pgoutput. Names are always quoted; option values are SQL literals.

use super::connection::ReplicationConnection;
use super::error::ReplicationError;
use crate::postgres::sql::{quote_ident, quote_literal};
use crate::postgres::Lsn;

/// What `IDENTIFY_SYSTEM` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    pub system_id: String,
    pub timeline: u64,
    /// The current WAL flush position.
    pub xlogpos: Lsn,
    pub dbname: Option<String>,
}

/// The snapshot a new slot exports (`SNAPSHOT` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotSnapshot {
    /// No snapshot (streaming only).
    Nothing,
    /// Export a snapshot usable with `SET TRANSACTION SNAPSHOT` until the next command.
    Export,
}

/// A slot `CREATE_REPLICATION_SLOT` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    pub name: String,
    /// The position from which the slot is consistent: changes committed after it are streamed.
    pub consistent_point: Lsn,
    pub snapshot_name: Option<String>,
}

/// How large transactions are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streaming {
    /// Only committed transactions, whole (protocol 1 is enough).
    Off,
    /// In-progress transactions in `S`…`E` blocks, ended by `c` or `A` (protocol ≥ 2).
    On,
    /// Like `On`, with abort LSN and time in `A` (protocol 4, PG16+).
    Parallel,
}

/// The pgoutput options of `START_REPLICATION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOptions {
    /// 1 = committed transactions only; 2 = streaming; 3 = two-phase; 4 = parallel streaming.
    pub proto_version: u32,
    pub publications: Vec<String>,
    /// Send `M` messages (`pg_logical_emit_message`), which carry the heartbeat.
    pub messages: bool,
    pub streaming: Streaming,
    pub two_phase: bool,
}

impl StartOptions {
    /// What the agent uses: protocol 1 (whole committed transactions, so nothing it reads is
    /// ever rolled back), messages on for the heartbeat.
    pub fn committed_only(publication: &str) -> StartOptions {
        StartOptions {
            proto_version: 1,
            publications: vec![publication.to_owned()],
            messages: true,
            streaming: Streaming::Off,
            two_phase: false,
        }
    }

    fn to_sql(&self) -> String {
        let mut options = format!(
            "proto_version '{}', publication_names {}",
            self.proto_version,
            quote_literal(&self.publications.join(","))
        );
        if self.messages {
            options.push_str(", messages 'true'");
        }
        match self.streaming {
            Streaming::Off => {}
            Streaming::On => options.push_str(", streaming 'on'"),
            Streaming::Parallel => options.push_str(", streaming 'parallel'"),
        }
        if self.two_phase {
            options.push_str(", two_phase 'true'");
        }
        options
    }
}

fn missing(command: &str, column: &str) -> ReplicationError {
    ReplicationError::Protocol(format!("{command} returned no `{column}`"))
}

fn parse_lsn(command: &str, text: &str) -> Result<Lsn, ReplicationError> {
    text.parse()
        .map_err(|e| ReplicationError::Protocol(format!("{command}: {e}")))
}

impl ReplicationConnection {
    /// `IDENTIFY_SYSTEM`. `timeline` is int4 on 14–15 and int8 on 16+; both fit a u64.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, ReplicationError> {
        const CMD: &str = "IDENTIFY_SYSTEM";
        let result = self.simple_query(CMD).await?;
        Ok(SystemIdentity {
            system_id: result
                .first("systemid")
                .ok_or_else(|| missing(CMD, "systemid"))?
                .to_owned(),
            timeline: result
                .first("timeline")
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| missing(CMD, "timeline"))?,
            xlogpos: parse_lsn(
                CMD,
                result
                    .first("xlogpos")
                    .ok_or_else(|| missing(CMD, "xlogpos"))?,
            )?,
            dbname: result.first("dbname").map(str::to_owned),
        })
    }

    /// `CREATE_REPLICATION_SLOT name [TEMPORARY] LOGICAL pgoutput`, in the old keyword syntax on
    /// PG14 and the parenthesised option syntax on 15+; without failover.
    pub async fn create_logical_slot(
        &mut self,
        name: &str,
        temporary: bool,
        snapshot: SlotSnapshot,
    ) -> Result<CreatedSlot, ReplicationError> {
        self.create_logical_slot_with(name, temporary, snapshot, false)
            .await
    }

    /// Like [`create_logical_slot`](Self::create_logical_slot); `failover` adds `FAILOVER true`
    /// (PG 17+, which a standby with `sync_replication_slots = on` keeps a copy of). Ignored on
    /// older servers, which have no such option.
    pub async fn create_logical_slot_with(
        &mut self,
        name: &str,
        temporary: bool,
        snapshot: SlotSnapshot,
        failover: bool,
    ) -> Result<CreatedSlot, ReplicationError> {
        const CMD: &str = "CREATE_REPLICATION_SLOT";
        let sql = create_slot_sql(
            self.server_version_num(),
            name,
            temporary,
            snapshot,
            failover,
        );
        let result = self.simple_query(&sql).await?;
        Ok(CreatedSlot {
            name: result
                .first("slot_name")
                .ok_or_else(|| missing(CMD, "slot_name"))?
                .to_owned(),
            consistent_point: parse_lsn(
                CMD,
                result
                    .first("consistent_point")
                    .ok_or_else(|| missing(CMD, "consistent_point"))?,
            )?,
            snapshot_name: result.first("snapshot_name").map(str::to_owned),
        })
    }

    /// `ALTER_REPLICATION_SLOT name (FAILOVER true|false)` (PG 17+; the slot must not be in use).
    pub async fn alter_slot_failover(
        &mut self,
        name: &str,
        failover: bool,
    ) -> Result<(), ReplicationError> {
        self.simple_query(&alter_slot_failover_sql(name, failover))
            .await
            .map(drop)
    }

    /// `DROP_REPLICATION_SLOT name WAIT`.
    pub async fn drop_slot(&mut self, name: &str) -> Result<(), ReplicationError> {
        self.simple_query(&format!("DROP_REPLICATION_SLOT {} WAIT", quote_ident(name)))
            .await
            .map(drop)
    }

    /// The `START_REPLICATION` command text.
    pub(crate) fn start_replication_sql(slot: &str, start: Lsn, options: &StartOptions) -> String {
        format!(
            "START_REPLICATION SLOT {} LOGICAL {start} ({})",
            quote_ident(slot),
            options.to_sql()
        )
    }
}

/// The first server version with failover slots.
pub const FAILOVER_SLOTS_VERSION: u32 = 170000;

/// The `CREATE_REPLICATION_SLOT` text for `server_version_num`: keyword options before 15, the
/// parenthesised list from 15, `FAILOVER` from 17 (temporary slots cannot fail over).
fn create_slot_sql(
    server_version_num: u32,
    name: &str,
    temporary: bool,
    snapshot: SlotSnapshot,
    failover: bool,
) -> String {
    let options = if server_version_num < 150000 {
        match snapshot {
            SlotSnapshot::Nothing => " NOEXPORT_SNAPSHOT".to_owned(),
            SlotSnapshot::Export => " EXPORT_SNAPSHOT".to_owned(),
        }
    } else {
        let snapshot = match snapshot {
            SlotSnapshot::Nothing => "SNAPSHOT 'nothing'",
            SlotSnapshot::Export => "SNAPSHOT 'export'",
        };
        if failover && !temporary && server_version_num >= FAILOVER_SLOTS_VERSION {
            format!(" ({snapshot}, FAILOVER true)")
        } else {
            format!(" ({snapshot})")
        }
    };
    let temporary = if temporary { " TEMPORARY" } else { "" };
    format!(
        "CREATE_REPLICATION_SLOT {}{temporary} LOGICAL pgoutput{options}",
        quote_ident(name)
    )
}

fn alter_slot_failover_sql(name: &str, failover: bool) -> String {
    format!(
        "ALTER_REPLICATION_SLOT {} (FAILOVER {failover})",
        quote_ident(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_slot_asks_for_failover_only_where_the_server_has_it() {
        assert_eq!(
            create_slot_sql(140000, "s", false, SlotSnapshot::Export, true),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput EXPORT_SNAPSHOT"
        );
        assert_eq!(
            create_slot_sql(160000, "s", false, SlotSnapshot::Nothing, true),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput (SNAPSHOT 'nothing')"
        );
        assert_eq!(
            create_slot_sql(170000, "s", false, SlotSnapshot::Export, true),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER true)"
        );
        assert_eq!(
            create_slot_sql(180000, "s", false, SlotSnapshot::Export, false),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput (SNAPSHOT 'export')"
        );
        assert_eq!(
            create_slot_sql(170000, "s", true, SlotSnapshot::Export, true),
            "CREATE_REPLICATION_SLOT \"s\" TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')"
        );
        assert_eq!(
            alter_slot_failover_sql("s\"1", true),
            "ALTER_REPLICATION_SLOT \"s\"\"1\" (FAILOVER true)"
        );
    }

    #[test]
    fn start_replication_quotes_names_and_values() {
        let mut options = StartOptions::committed_only("pub'x");
        assert_eq!(
            ReplicationConnection::start_replication_sql("s\"1", Lsn(0x16B3748), &options),
            "START_REPLICATION SLOT \"s\"\"1\" LOGICAL 0/16B3748 (proto_version '1', publication_names 'pub''x', messages 'true')"
        );
        options.proto_version = 4;
        options.streaming = Streaming::Parallel;
        options.two_phase = true;
        options.messages = false;
        assert!(ReplicationConnection::start_replication_sql("s", Lsn::ZERO, &options)
            .ends_with("(proto_version '4', publication_names 'pub''x', streaming 'parallel', two_phase 'true')"));
    }
}
