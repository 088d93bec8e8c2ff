//! A primary and a streaming standby made with `pg_basebackup`, for the failover tests (issue 18).
//!
//! [`Standby::attach`] creates a physical slot on a running [`Cluster`] (the primary), copies it
//! with `pg_basebackup` into a cluster of its own ([`ClusterOptions::base_backup`]) and starts it
//! as a hot standby streaming through that slot, with what slot synchronisation needs (PG 17+):
//! `primary_slot_name`, `hot_standby_feedback = on`, `sync_replication_slots = on` and a `dbname`
//! in `primary_conninfo`. [`Standby::guard_primary`] then sets `synchronized_standby_slots` on the
//! primary (so a logical consumer never receives a change the standby lacks) and, optionally,
//! makes the standby synchronous. [`Standby::promote`] makes it a primary; stopping the old
//! primary is [`Cluster::stop`] (`-m immediate`, a crash as far as the server can tell).
//!
//! The standby's cluster directory has no `tls/` CAs of its own: its data directory holds the
//! primary's server certificate (signed by the primary's test CA), so TLS tests keep to the
//! primary. On PG 14–15 a standby can stream but not decode; logical decoding on a standby needs
//! 16, slot synchronisation 17.

use std::fs;
use std::time::{Duration, Instant};

use starwal::postgres::Lsn;

use super::{check, unique_name, Cluster, ClusterOptions, SUPERUSER};

/// Where a standby's data directory comes from (see [`ClusterOptions::base_backup`]).
#[derive(Debug, Clone)]
pub struct BaseBackup {
    /// The primary's TCP port on 127.0.0.1.
    primary_port: u16,
    /// The physical slot on the primary the standby streams through; also its
    /// `application_name` (so `synchronous_standby_names` can name it).
    slot: String,
    /// The primary's major version: `sync_replication_slots` exists from 17 on.
    major: u32,
}

impl BaseBackup {
    /// `pg_basebackup` of the primary into the new cluster's data directory, then the standby's
    /// settings and `standby.signal`. Runs as the server's OS user, before the harness appends
    /// its port and socket lines (which override the primary's in the copied postgresql.conf).
    pub(super) fn restore(&self, cluster: &Cluster) {
        let data = cluster.data_dir();
        let out = cluster
            .server_cmd("pg_basebackup")
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.primary_port.to_string())
            .args(["-U", SUPERUSER, "-X", "stream", "-c", "fast", "--no-sync"])
            .args(["-S", &self.slot])
            .output()
            .expect("run pg_basebackup");
        check("pg_basebackup", &out);
        // The slot synchronisation worker connects with primary_conninfo and needs a database
        // there (any database: it reads pg_replication_slots, which is cluster-wide).
        let mut conf = format!(
            "\n# --- starwal test harness: standby ---\n\
             primary_conninfo = 'host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres \
             application_name={slot}'\n\
             primary_slot_name = '{slot}'\n\
             hot_standby = on\n\
             hot_standby_feedback = on\n",
            port = self.primary_port,
            slot = self.slot,
        );
        if self.major >= 17 {
            conf.push_str("sync_replication_slots = on\n");
        }
        let conf_path = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        fs::write(&conf_path, text).unwrap();
        // ALTER SYSTEM settings of the primary (postgresql.auto.conf) are the primary's own:
        // `synchronized_standby_slots` naming a slot the standby lacks would stall its walsenders
        // after a promotion. The harness sets them only after the copy, but keep the copy clean.
        fs::write(data.join("postgresql.auto.conf"), "").unwrap();
        fs::write(data.join("standby.signal"), "").unwrap();
    }
}

/// A hot standby of a harness primary, streaming through its own physical slot.
#[derive(Debug)]
pub struct Standby {
    /// The standby's cluster (its own port, socket directory, log; stopped on drop).
    pub cluster: Cluster,
    /// The physical slot on the primary, also the standby's `application_name`.
    pub slot: String,
}

impl Standby {
    /// Creates a physical slot on `primary`, copies it with `pg_basebackup` and starts the copy
    /// as a standby streaming through the slot; returns once the primary sees it streaming.
    /// Blocking (a few seconds); panics with the server log when the standby does not stream.
    pub fn attach(primary: &Cluster) -> Standby {
        let slot = unique_name("standby");
        primary.database("postgres").psql(&format!(
            "SELECT pg_create_physical_replication_slot('{slot}', true)"
        ));
        let cluster = Cluster::start(ClusterOptions {
            base_backup: Some(BaseBackup {
                primary_port: primary.port(),
                slot: slot.clone(),
                major: primary.major(),
            }),
            pgbin: Some(primary.pgbin().to_path_buf()),
            ..ClusterOptions::default()
        });
        let standby = Standby { cluster, slot };
        let deadline = Instant::now() + Duration::from_secs(60);
        let query = format!(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{}' \
             AND state = 'streaming'",
            standby.slot
        );
        while primary.database("postgres").psql(&query) != "1" {
            assert!(
                Instant::now() < deadline,
                "the standby does not stream after 60 s\n--- standby log ---\n{}",
                standby.cluster.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        standby
    }

    /// On `primary`: `synchronized_standby_slots` = this standby's slot (PG 17+), so logical
    /// walsenders send nothing the standby has not flushed; with `synchronous`, also
    /// `synchronous_standby_names` = this standby, so a commit (starwal's checkpoint and
    /// loads-in-flight records too) returns only once the standby has it.
    pub fn guard_primary(&self, primary: &Cluster, synchronous: bool) {
        let mut sql = String::new();
        if primary.major() >= 17 {
            sql.push_str(&format!(
                "ALTER SYSTEM SET synchronized_standby_slots = '{}';\n",
                self.slot
            ));
        }
        if synchronous {
            sql.push_str(&format!(
                "ALTER SYSTEM SET synchronous_standby_names = '{}';\n",
                self.slot
            ));
        }
        sql.push_str("SELECT pg_reload_conf();\n");
        primary.database("postgres").psql(&sql);
    }

    /// `pg_ctl promote -w`: the standby leaves recovery and becomes a read-write primary.
    pub fn promote(&self) {
        let out = self
            .cluster
            .server_cmd("pg_ctl")
            .arg("promote")
            .arg("-D")
            .arg(self.cluster.data_dir())
            .args(["-w", "-t", "60", "-s"])
            .output()
            .expect("run pg_ctl promote");
        if !out.status.success() {
            panic!(
                "pg_ctl promote failed: {}\n--- server log ---\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.cluster.server_log()
            );
        }
    }

    /// The `confirmed_flush_lsn` of `slot` on the standby once it is synchronised from the
    /// primary and persistent (`synced AND NOT temporary`: a slot still waiting for the
    /// primary's slot to pass the standby's own position is dropped at promotion), polled up to
    /// `timeout`. `None` if it never is (or the server has no slot synchronisation, < 17).
    pub async fn synced_slot(&self, slot: &str, timeout: Duration) -> Option<Lsn> {
        if self.cluster.major() < 17 {
            return None;
        }
        let client = self.cluster.database("postgres").superuser_client().await;
        let deadline = Instant::now() + timeout;
        loop {
            let row = client
                .query_opt(
                    "SELECT confirmed_flush_lsn::text FROM pg_replication_slots \
                     WHERE slot_name = $1 AND synced AND NOT temporary",
                    &[&slot],
                )
                .await
                .unwrap();
            if let Some(lsn) = row
                .and_then(|row| row.get::<_, Option<String>>(0))
                .and_then(|text| text.parse().ok())
            {
                return Some(lsn);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The standby's replay position (`pg_last_wal_replay_lsn()`).
    pub async fn replay_position(&self) -> Lsn {
        let client = self.cluster.database("postgres").superuser_client().await;
        let text: String = client
            .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        text.parse().unwrap()
    }
}
