//! The Prometheus text exposition (format 0.0.4) of a status snapshot: every metric name, its
//! help and type live here, so this file is the metrics table of the agent.
//!
//! Rendering is a pure function of a [`StatusSnapshot`] and a [`ProcessStats`] reading, taken at
//! scrape time: counters are the engine's own totals since the process started (they reset on
//! restart, which Prometheus' `rate()` handles), and nothing is accumulated here. Label values
//! are escaped per the format; labels are bounded (tables are configured, phases and ops fixed).
//! The `starwal_snapshot_*` series exist only for tables with a snapshot copy (planned, under way
//! or done in this process); they are gauges, not counters, because a resync starts a table's
//! copy again from 0 (so none of them is named `_total`). A StarRocks outage shows while it lasts
//! (invariant 13): failed attempts by kind, retries, how long a table's loads have failed, and
//! how long ago its last load committed. The output passes `promtool check metrics` (an e2e test
//! runs it against a live agent).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `starwal_rows_total` | counter | `table`, `op` (`insert`, `update`, `delete`) |
//! | `starwal_rows_loaded_total` | counter | `table` |
//! | `starwal_bytes_loaded_total` | counter | `table` |
//! | `starwal_loads_total` | counter | `table` |
//! | `starwal_loads_deduplicated_total` | counter | `table` |
//! | `starwal_loads_in_flight` | gauge (Stream Loads sent, not answered yet; streamed or copied) | `table` |
//! | `starwal_truncates_total` | counter | `table` |
//! | `starwal_load_duration_seconds` | histogram | `table` |
//! | `starwal_load_failures_total` | counter (failed Stream Load attempts) | `table`, `kind` (see `LoadErrorKind`) |
//! | `starwal_load_retries_total` | counter (attempts re-sent after a transient failure) | `table` |
//! | `starwal_load_failing_seconds` | gauge (how long the table's loads have failed; 0 when the last one committed) | `table` |
//! | `starwal_table_parked` | gauge (1 while a permanent error keeps the table parked, its changes held) | `table` |
//! | `starwal_last_load_age_seconds` | gauge (since the table's last committed load; absent before the first) | `table` |
//! | `starwal_transaction_open` | gauge (1 while a StarRocks transaction carrying a source transaction larger than a batch is open or prepared, not committed) | `table` |
//! | `starwal_transaction_prepared` | gauge (1 while that transaction is prepared and not yet committed) | `table` |
//! | `starwal_transaction_rows`, `starwal_transaction_age_seconds` | gauge (rows loaded into it, seconds since its first part; 0 when none is open) | `table` |
//! | `starwal_streamed_transactions`, `starwal_streamed_transactions_prepared` | gauge (source transactions streamed before their COMMIT, `STARWAL_STREAMING=on`, with changes to the table; of those, prepared and not yet committed) | `table` |
//! | `starwal_streamed_transaction_rows`, `starwal_streamed_transaction_oldest_age_seconds` | gauge (rows loaded into their StarRocks transactions, not visible yet; seconds since the oldest one's first change to the table) | `table` |
//! | `starwal_transactions_committed_total` | counter (such transactions, and streamed ones, committed) | `table` |
//! | `starwal_transactions_split_total` | counter (source transactions that became visible in parts, and whole batches sent as several loads: see README "Large transactions land whole") | `table` |
//! | `starwal_snapshot_state` | gauge (1 for the copy's current state) | `table`, `state` (`pending`, `copying`, `done`) |
//! | `starwal_snapshot_rows_copied`, `starwal_snapshot_rows_estimated` | gauge | `table` |
//! | `starwal_snapshot_chunks_done`, `starwal_snapshot_chunks_planned` | gauge | `table` |
//! | `starwal_snapshot_rows_per_second` | gauge (this process's copy rate) | `table` |
//! | `starwal_snapshot_eta_seconds` | gauge (absent while unknown and once done) | `table` |
//! | `starwal_lag_seconds`, `starwal_lag_bytes` | gauge (also counting WAL not read yet while reading is stopped) | |
//! | `starwal_unread_wal_bytes` | gauge (WAL not read yet while paused or the buffer is full) | |
//! | `starwal_slot_retained_wal_bytes` | gauge (absent until measured) | |
//! | `starwal_buffered_bytes`, `starwal_max_buffer_bytes` | gauge | |
//! | `starwal_received_lsn`, `starwal_confirmed_lsn` | gauge (WAL byte position) | |
//! | `starwal_phase` | gauge (1 for the current phase) | `phase` |
//! | `starwal_up` | gauge (1 when health is SERVING) | |
//! | `starwal_paused` | gauge | |
//! | `process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_start_time_seconds` | Linux only | |

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::control::process::ProcessStats;
use crate::state::{
    CopyProgress, CopyState, Phase, StatusSnapshot, TableStatus, LOAD_DURATION_BUCKETS,
};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const PHASES: [Phase; 6] = [
    Phase::Init,
    Phase::Setup,
    Phase::Snapshot,
    Phase::Cdc,
    Phase::Draining,
    Phase::Stopped,
];

const COPY_STATES: [CopyState; 3] = [CopyState::Pending, CopyState::Copying, CopyState::Done];

/// Renders every series for one scrape.
pub fn render(snapshot: &StatusSnapshot, process: &ProcessStats) -> String {
    let mut out = String::with_capacity(4096 + snapshot.tables.len() * 2048);
    let tables = &snapshot.tables;

    header(
        &mut out,
        "starwal_rows_total",
        "counter",
        "Source changes loaded into StarRocks, by operation.",
    );
    for table in tables {
        for (op, rows) in [
            ("insert", table.rows_inserted),
            ("update", table.rows_updated),
            ("delete", table.rows_deleted),
        ] {
            sample_labels(
                &mut out,
                "starwal_rows_total",
                &[("table", &table.source), ("op", op)],
                rows,
            );
        }
    }
    per_table(
        &mut out,
        tables,
        "starwal_rows_loaded_total",
        "Rows sent in Stream Load bodies, after per-key compaction.",
        |t| t.rows_loaded,
    );
    per_table(
        &mut out,
        tables,
        "starwal_bytes_loaded_total",
        "Stream Load request body bytes sent.",
        |t| t.bytes_loaded,
    );
    per_table(
        &mut out,
        tables,
        "starwal_loads_total",
        "Stream Loads committed.",
        |t| t.loads,
    );
    per_table(
        &mut out,
        tables,
        "starwal_loads_deduplicated_total",
        "Loads StarRocks had already committed under the same label (replays after a restart).",
        |t| t.loads_deduplicated,
    );
    per_table(
        &mut out,
        tables,
        "starwal_truncates_total",
        "TRUNCATEs applied to the target table.",
        |t| t.truncates,
    );
    // A gauge, so not `per_table` (which declares counters).
    let name = "starwal_loads_in_flight";
    header(
        &mut out,
        name,
        "gauge",
        "Stream Loads of the table sent and not answered yet (streamed or copied).",
    );
    for table in tables {
        sample_labels(
            &mut out,
            name,
            &[("table", &table.source)],
            table.loads_in_flight,
        );
    }

    header(
        &mut out,
        "starwal_load_duration_seconds",
        "histogram",
        "Duration of Stream Loads, from request to commit.",
    );
    for table in tables {
        histogram(&mut out, table);
    }
    load_failures(&mut out, tables, snapshot.at);

    snapshot_copies(&mut out, tables);
    verify_results(&mut out, &snapshot.verify);

    gauge(
        &mut out,
        "starwal_lag_seconds",
        "Age of the oldest received commit not yet confirmed in the source (0 when none waits).",
        Number::Float(snapshot.lag_seconds),
    );
    gauge(
        &mut out,
        "starwal_lag_bytes",
        "WAL between the server's end and the confirmed checkpoint (0 when caught up and reading).",
        Number::Int(snapshot.lag_bytes),
    );
    gauge(
        &mut out,
        "starwal_unread_wal_bytes",
        "WAL the stream has not shown yet while reading is stopped (paused or buffer full).",
        Number::Int(snapshot.unread_wal_bytes),
    );
    if let Some(retained) = snapshot.slot_retained_wal_bytes {
        gauge(
            &mut out,
            "starwal_slot_retained_wal_bytes",
            "WAL the replication slot holds back on the source, when last measured.",
            Number::Int(retained),
        );
    }
    gauge(
        &mut out,
        "starwal_buffered_bytes",
        "Changes buffered in memory, waiting to be loaded.",
        Number::Int(snapshot.buffered_bytes),
    );
    gauge(
        &mut out,
        "starwal_max_buffer_bytes",
        "Buffer size above which the stream is not read (STARWAL_MAX_BUFFER_BYTES).",
        Number::Int(snapshot.max_buffer_bytes),
    );
    gauge(
        &mut out,
        "starwal_received_lsn",
        "Highest WAL position received from the stream, as a byte position.",
        Number::Int(snapshot.received_lsn.0),
    );
    gauge(
        &mut out,
        "starwal_confirmed_lsn",
        "WAL position of the checkpoint stored in the source, as a byte position.",
        Number::Int(snapshot.confirmed_lsn.0),
    );

    header(
        &mut out,
        "starwal_phase",
        "gauge",
        "The engine's lifecycle phase: 1 for the current one.",
    );
    for phase in PHASES {
        sample_labels(
            &mut out,
            "starwal_phase",
            &[("phase", phase.as_str())],
            u64::from(phase == snapshot.phase),
        );
    }
    gauge(
        &mut out,
        "starwal_up",
        "1 when the health service answers SERVING.",
        Number::Int(u64::from(snapshot.health.serving)),
    );
    gauge(
        &mut out,
        "starwal_paused",
        "1 while reading is paused by the Control.Pause RPC.",
        Number::Int(u64::from(snapshot.paused)),
    );

    if let Some(rss) = process.resident_memory_bytes {
        gauge(
            &mut out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            Number::Int(rss),
        );
    }
    if let Some(cpu) = process.cpu_time {
        header(
            &mut out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        sample_number(
            &mut out,
            "process_cpu_seconds_total",
            &[],
            Number::Float(cpu.as_secs_f64()),
        );
    }
    if let Some(start) = process.start_time_seconds {
        gauge(
            &mut out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            Number::Float(start),
        );
    }
    out
}

/// The last `Verify` on this agent: rows that still differed per table, and when it ended; no
/// sample before the first one ended.
fn verify_results(out: &mut String, verify: &crate::state::VerifyStatus) {
    let Some(finished) = verify.finished else {
        return;
    };
    if !verify.tables.is_empty() {
        header(
            out,
            "starwal_verify_rows_mismatched",
            "gauge",
            "Rows missing, extra or different in StarRocks after the last verify's re-check.",
        );
        for table in &verify.tables {
            sample_labels(
                out,
                "starwal_verify_rows_mismatched",
                &[("table", &table.table)],
                table.rows_mismatched,
            );
        }
    }
    gauge(
        out,
        "starwal_verify_last_run_timestamp_seconds",
        "When the last verify on this agent ended, in seconds since the Unix epoch.",
        Number::Float(
            finished
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        ),
    );
    gauge(
        out,
        "starwal_verify_last_run_success",
        "1 when the last verify on this agent finished (equal or not), 0 when it failed.",
        Number::Int(u64::from(verify.error.is_none())),
    );
}

/// A sample value: integers print exactly, floats in Prometheus' spelling.
#[derive(Debug, Clone, Copy)]
enum Number {
    Int(u64),
    Float(f64),
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: Number) {
    header(out, name, "gauge", help);
    sample_number(out, name, &[], value);
}

fn per_table(
    out: &mut String,
    tables: &[TableStatus],
    name: &str,
    help: &str,
    value: impl Fn(&TableStatus) -> u64,
) {
    header(out, name, "counter", help);
    for table in tables {
        sample_labels(out, name, &[("table", &table.source)], value(table));
    }
}

/// The `starwal_snapshot_*` families, with a sample per table that has a copy; a family without
/// any sample (no copy at all, or no ETA known) is left out.
fn snapshot_copies(out: &mut String, tables: &[TableStatus]) {
    let copies: Vec<(&str, &CopyProgress)> = tables
        .iter()
        .filter_map(|table| Some((table.source.as_str(), table.copy.as_ref()?)))
        .collect();
    if copies.is_empty() {
        return;
    }
    let name = "starwal_snapshot_state";
    header(
        out,
        name,
        "gauge",
        "State of the table's snapshot copy: 1 for the current one.",
    );
    for (table, copy) in &copies {
        for state in COPY_STATES {
            sample_labels(
                out,
                name,
                &[("table", table), ("state", state.as_str())],
                u64::from(state == copy.state),
            );
        }
    }
    let int = |value: u64| Some(Number::Int(value));
    copy_gauge(
        out,
        &copies,
        "starwal_snapshot_rows_copied",
        "Rows of the table's snapshot copy in StarRocks, chunks of earlier runs included.",
        |copy| int(copy.rows_copied),
    );
    copy_gauge(
        out,
        &copies,
        "starwal_snapshot_rows_estimated",
        "Row count of the table in the copy's snapshot (0 until planned).",
        |copy| int(copy.rows_estimated),
    );
    copy_gauge(
        out,
        &copies,
        "starwal_snapshot_chunks_done",
        "Chunks of the table's snapshot copy loaded.",
        |copy| int(copy.chunks_done),
    );
    copy_gauge(
        out,
        &copies,
        "starwal_snapshot_chunks_planned",
        "Chunks the table's snapshot copy is split into (0 until planned).",
        |copy| int(copy.chunks_total),
    );
    copy_gauge(
        out,
        &copies,
        "starwal_snapshot_rows_per_second",
        "Rows per second this process copied since it began the table's copy.",
        |copy| Some(Number::Float(copy.rows_per_second)),
    );
    copy_gauge(
        out,
        &copies,
        "starwal_snapshot_eta_seconds",
        "Seconds the table's snapshot copy needs at its current rate.",
        |copy| copy.eta_seconds.map(Number::Float),
    );
}

/// The families that show a StarRocks outage while it lasts: failed attempts by kind, retries,
/// how long loads have failed, how long ago a load last committed (ages counted to `at`).
fn load_failures(out: &mut String, tables: &[TableStatus], at: SystemTime) {
    let age = |since: SystemTime| at.duration_since(since).map_or(0.0, |d| d.as_secs_f64());
    let name = "starwal_load_failures_total";
    header(
        out,
        name,
        "counter",
        "Failed Stream Load attempts, by kind (transient ones are retried).",
    );
    for table in tables {
        for (kind, count) in &table.load_failures {
            sample_labels(
                out,
                name,
                &[("table", &table.source), ("kind", kind)],
                *count,
            );
        }
    }
    per_table(
        out,
        tables,
        "starwal_load_retries_total",
        "Stream Load attempts re-sent after a transient failure.",
        |t| t.load_retries,
    );
    let name = "starwal_load_failing_seconds";
    header(
        out,
        name,
        "gauge",
        "How long the table's loads have been failing (0 when the last attempt committed).",
    );
    for table in tables {
        let seconds = table.failing.as_ref().map_or(0.0, |f| age(f.since));
        sample_number(
            out,
            name,
            &[("table", &table.source)],
            Number::Float(seconds),
        );
    }
    let name = "starwal_table_parked";
    header(
        out,
        name,
        "gauge",
        "1 while a permanent error keeps the table parked: its changes are held, the others stream.",
    );
    for table in tables {
        sample_number(
            out,
            name,
            &[("table", &table.source)],
            Number::Int(u64::from(table.parked.is_some())),
        );
    }
    transactions(out, tables, at);
    let loaded: Vec<(&str, SystemTime)> = tables
        .iter()
        .filter_map(|t| Some((t.source.as_str(), t.last_load_at?)))
        .collect();
    if !loaded.is_empty() {
        let name = "starwal_last_load_age_seconds";
        header(
            out,
            name,
            "gauge",
            "Seconds since a load of the table last committed (absent before the first).",
        );
        for (table, at) in loaded {
            sample_number(out, name, &[("table", table)], Number::Float(age(at)));
        }
    }
}

/// A per-table sample's value.
type TableValue<'a> = dyn Fn(&TableStatus) -> Number + 'a;

/// The StarRocks transactions that carry source transactions larger than a batch (invariant
/// 11): open or prepared ones per table, and how many committed or were split.
fn transactions(out: &mut String, tables: &[TableStatus], at: SystemTime) {
    let age = |since: SystemTime| at.duration_since(since).map_or(0.0, |d| d.as_secs_f64());
    let open = |t: &TableStatus| Number::Int(u64::from(t.open_transaction.is_some()));
    let prepared = |t: &TableStatus| {
        Number::Int(u64::from(
            t.open_transaction.as_ref().is_some_and(|o| o.prepared),
        ))
    };
    let rows = |t: &TableStatus| Number::Int(t.open_transaction.as_ref().map_or(0, |o| o.rows));
    let seconds =
        |t: &TableStatus| Number::Float(t.open_transaction.as_ref().map_or(0.0, |o| age(o.began)));
    let streamed = |t: &TableStatus| Number::Int(t.streamed_transactions.len() as u64);
    let streamed_prepared = |t: &TableStatus| {
        Number::Int(
            t.streamed_transactions
                .values()
                .filter(|o| o.prepared)
                .count() as u64,
        )
    };
    let streamed_rows =
        |t: &TableStatus| Number::Int(t.streamed_transactions.values().map(|o| o.rows).sum());
    let streamed_oldest = |t: &TableStatus| {
        Number::Float(
            t.streamed_transactions
                .values()
                .map(|o| age(o.began))
                .fold(0.0, f64::max),
        )
    };
    let gauges: [(&str, &str, &TableValue); 8] = [
        (
            "starwal_transaction_open",
            "1 while the table's StarRocks transaction for a source transaction larger than a batch is open or prepared, not committed.",
            &open,
        ),
        (
            "starwal_transaction_prepared",
            "1 while that transaction is prepared (recorded in the checkpoint) and not yet committed.",
            &prepared,
        ),
        (
            "starwal_transaction_rows",
            "Rows loaded into the table's open StarRocks transaction (0 when none is open).",
            &rows,
        ),
        (
            "starwal_transaction_age_seconds",
            "Seconds since the table's open StarRocks transaction began (0 when none is open).",
            &seconds,
        ),
        (
            "starwal_streamed_transactions",
            "Source transactions Postgres streams before their COMMIT (STARWAL_STREAMING=on) with changes to the table, their StarRocks transaction open or prepared.",
            &streamed,
        ),
        (
            "starwal_streamed_transactions_prepared",
            "Of those, the ones whose StarRocks transaction is prepared and not yet committed.",
            &streamed_prepared,
        ),
        (
            "starwal_streamed_transaction_rows",
            "Rows loaded into the table's StarRocks transactions of streamed source transactions, not visible yet.",
            &streamed_rows,
        ),
        (
            "starwal_streamed_transaction_oldest_age_seconds",
            "Seconds since the oldest streamed source transaction's first change to the table (0 when none).",
            &streamed_oldest,
        ),
    ];
    for (name, help, value) in gauges {
        header(out, name, "gauge", help);
        for table in tables {
            sample_number(out, name, &[("table", &table.source)], value(table));
        }
    }
    per_table(
        out,
        tables,
        "starwal_transactions_committed_total",
        "StarRocks transactions committed that carried a source transaction larger than a batch.",
        |t| t.transactions_committed,
    );
    per_table(
        out,
        tables,
        "starwal_transactions_split_total",
        "Source transactions that became visible in parts (a part with partial updates, or DDL in the middle), and whole batches sent as several loads (one per column set).",
        |t| t.transactions_split,
    );
}

/// One per-table snapshot gauge family; `value` is `None` for tables without a sample.
fn copy_gauge(
    out: &mut String,
    copies: &[(&str, &CopyProgress)],
    name: &str,
    help: &str,
    value: impl Fn(&CopyProgress) -> Option<Number>,
) {
    let samples: Vec<(&str, Number)> = copies
        .iter()
        .filter_map(|(table, copy)| Some((*table, value(copy)?)))
        .collect();
    if samples.is_empty() {
        return;
    }
    header(out, name, "gauge", help);
    for (table, number) in samples {
        sample_number(out, name, &[("table", table)], number);
    }
}

fn histogram(out: &mut String, table: &TableStatus) {
    let name = "starwal_load_duration_seconds";
    let histogram = &table.load_duration;
    let mut cumulative = 0u64;
    for (index, count) in histogram.buckets.iter().enumerate() {
        cumulative = cumulative.saturating_add(*count);
        let le = match LOAD_DURATION_BUCKETS.get(index) {
            Some(bound) => format_float(*bound),
            None => "+Inf".to_owned(),
        };
        sample_labels(
            out,
            &format!("{name}_bucket"),
            &[("table", &table.source), ("le", &le)],
            cumulative,
        );
    }
    sample_number(
        out,
        &format!("{name}_sum"),
        &[("table", &table.source)],
        Number::Float(histogram.sum_seconds),
    );
    sample_labels(
        out,
        &format!("{name}_count"),
        &[("table", &table.source)],
        histogram.count,
    );
}

fn sample_labels(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    sample_number(out, name, labels, Number::Int(value));
}

fn sample_number(out: &mut String, name: &str, labels: &[(&str, &str)], value: Number) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (index, (label, value)) in labels.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    match value {
        Number::Int(value) => {
            let _ = write!(out, "{value}");
        }
        Number::Float(value) => out.push_str(&format_float(value)),
    }
    out.push('\n');
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Help text escapes backslash and line feed.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Floats as Prometheus spells them: `+Inf`, `-Inf`, `NaN`, otherwise Rust's shortest
/// round-trip form (`0.005`, `1`, `1e-7`), which Prometheus parses.
fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::postgres::Lsn;
    use crate::state::{EngineHandle, OpCounts};

    fn handle() -> EngineHandle {
        let config = Config::from_vars(vec![
            ("STARWAL_PG_URL".into(), "postgres://u@localhost/db".into()),
            ("STARWAL_TABLES".into(), "public.t".into()),
        ])
        .unwrap();
        EngineHandle::new(&config)
    }

    fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn renders_table_counters_histogram_and_gauges() {
        let handle = handle();
        handle.add_table("public.orders", "orders");
        handle.set_phase(Phase::Cdc);
        handle.set_health(true, "streaming");
        handle.set_received(Lsn(0x1_0000_0010), Lsn(0x1_0000_0100));
        // A received commit waits, so the lag counts from the confirmed LSN; it is stamped ahead
        // of this clock (skew), which reads as 0 s of lag and keeps the rendering exact.
        let ahead = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        handle.set_confirmed(Lsn(0x1_0000_0000), Some(ahead));
        handle.record_load(
            "public.orders",
            OpCounts {
                inserted: 5,
                updated: 2,
                deleted: 1,
            },
            7,
            700,
            Duration::from_millis(20),
            false,
        );
        handle.record_load(
            "public.orders",
            OpCounts {
                inserted: 1,
                ..OpCounts::default()
            },
            1,
            100,
            Duration::from_secs(60),
            true,
        );
        handle.record_truncate("public.orders");
        handle.load_attempt_failed("orders", "connection", true, "refused");
        handle.load_attempt_failed("orders", "connection", true, "refused");
        handle.load_attempt_failed("orders", "too_many_versions", true, "too many versions");
        let process = ProcessStats {
            resident_memory_bytes: Some(4096),
            cpu_time: Some(Duration::from_millis(1500)),
            start_time_seconds: Some(1_700_000_000.5),
        };
        let text = render(&handle.status(), &process);

        for expected in [
            "# HELP starwal_rows_total Source changes loaded into StarRocks, by operation.",
            "# TYPE starwal_rows_total counter",
            "starwal_rows_total{table=\"public.orders\",op=\"insert\"} 6",
            "starwal_rows_total{table=\"public.orders\",op=\"update\"} 2",
            "starwal_rows_total{table=\"public.orders\",op=\"delete\"} 1",
            "starwal_rows_loaded_total{table=\"public.orders\"} 8",
            "starwal_bytes_loaded_total{table=\"public.orders\"} 800",
            "starwal_loads_total{table=\"public.orders\"} 2",
            "starwal_loads_deduplicated_total{table=\"public.orders\"} 1",
            "starwal_truncates_total{table=\"public.orders\"} 1",
            "# TYPE starwal_loads_in_flight gauge",
            "starwal_loads_in_flight{table=\"public.orders\"} 0",
            "# TYPE starwal_load_failures_total counter",
            "starwal_load_failures_total{table=\"public.orders\",kind=\"connection\"} 2",
            "starwal_load_failures_total{table=\"public.orders\",kind=\"too_many_versions\"} 1",
            "starwal_load_retries_total{table=\"public.orders\"} 3",
            "# TYPE starwal_load_failing_seconds gauge",
            "# TYPE starwal_table_parked gauge",
            "starwal_table_parked{table=\"public.orders\"} 0",
            "# TYPE starwal_last_load_age_seconds gauge",
            "# TYPE starwal_load_duration_seconds histogram",
            "starwal_load_duration_seconds_bucket{table=\"public.orders\",le=\"0.005\"} 0",
            "starwal_load_duration_seconds_bucket{table=\"public.orders\",le=\"0.025\"} 1",
            "starwal_load_duration_seconds_bucket{table=\"public.orders\",le=\"30\"} 1",
            "starwal_load_duration_seconds_bucket{table=\"public.orders\",le=\"+Inf\"} 2",
            "starwal_load_duration_seconds_sum{table=\"public.orders\"} 60.02",
            "starwal_load_duration_seconds_count{table=\"public.orders\"} 2",
            "starwal_lag_seconds 0",
            "starwal_lag_bytes 256",
            "starwal_buffered_bytes 0",
            "starwal_received_lsn 4294967312",
            "starwal_confirmed_lsn 4294967296",
            "starwal_phase{phase=\"CDC\"} 1",
            "starwal_phase{phase=\"INIT\"} 0",
            // Loads fail: readiness says so.
            "starwal_up 0",
            "starwal_unread_wal_bytes 0",
            "starwal_paused 0",
            "process_resident_memory_bytes 4096",
            "# TYPE process_cpu_seconds_total counter",
            "process_cpu_seconds_total 1.5",
            "process_start_time_seconds 1700000000.5",
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "missing `{expected}` in\n{text}"
            );
        }
        // One bucket line per bound plus +Inf, cumulative and never decreasing.
        let buckets = lines_starting(&text, "starwal_load_duration_seconds_bucket");
        assert_eq!(buckets.len(), LOAD_DURATION_BUCKETS.len() + 1);
        let counts: Vec<u64> = buckets
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        // Not measured yet: absent rather than a misleading zero.
        assert!(!text.contains("starwal_slot_retained_wal_bytes"));
        assert_families_declared_once(&text);
    }

    /// Every sample belongs to a declared family, and each family is declared once.
    fn assert_families_declared_once(text: &str) {
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_owned()), "{name} declared twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| *f == "starwal_load_duration_seconds")
                    .unwrap_or(name);
                assert!(declared.contains(family), "{line}");
            }
        }
    }

    #[test]
    fn snapshot_series_only_for_tables_with_a_copy() {
        let handle = handle();
        for (source, target) in [("public.a", "a"), ("public.b", "b"), ("public.c", "c")] {
            handle.add_table(source, target);
        }
        let text = render(&handle.status(), &ProcessStats::default());
        assert!(!text.contains("starwal_snapshot_"), "{text}");

        // a: resumed with 2 of 10 chunks done, then one more; b: asked for, not planned; c: none.
        handle.copy_planned("public.a", 1000, 10, 2, 200);
        handle.copy_progressed("public.a", 100, true);
        handle.copy_pending("public.b");
        let text = render(&handle.status(), &ProcessStats::default());
        for expected in [
            "# HELP starwal_snapshot_state State of the table's snapshot copy: 1 for the current one.",
            "# TYPE starwal_snapshot_state gauge",
            "starwal_snapshot_state{table=\"public.a\",state=\"pending\"} 0",
            "starwal_snapshot_state{table=\"public.a\",state=\"copying\"} 1",
            "starwal_snapshot_state{table=\"public.a\",state=\"done\"} 0",
            "starwal_snapshot_state{table=\"public.b\",state=\"pending\"} 1",
            "# TYPE starwal_snapshot_rows_copied gauge",
            "starwal_snapshot_rows_copied{table=\"public.a\"} 300",
            "starwal_snapshot_rows_copied{table=\"public.b\"} 0",
            "starwal_snapshot_rows_estimated{table=\"public.a\"} 1000",
            "starwal_snapshot_chunks_done{table=\"public.a\"} 3",
            "starwal_snapshot_chunks_planned{table=\"public.a\"} 10",
            "starwal_snapshot_chunks_planned{table=\"public.b\"} 0",
            "starwal_snapshot_rows_per_second{table=\"public.b\"} 0",
            "# TYPE starwal_snapshot_eta_seconds gauge",
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "missing `{expected}` in\n{text}"
            );
        }
        // a copied 100 rows in this process: a rate and an ETA; b has neither yet.
        let rate = lines_starting(
            &text,
            "starwal_snapshot_rows_per_second{table=\"public.a\"}",
        );
        let rate: f64 = rate[0].rsplit(' ').next().unwrap().parse().unwrap();
        assert!(rate > 0.0, "{text}");
        let etas = lines_starting(&text, "starwal_snapshot_eta_seconds{");
        assert_eq!(etas.len(), 1, "{text}");
        assert!(etas[0].contains("public.a"), "{text}");
        assert!(
            lines_starting(&text, "starwal_snapshot_")
                .iter()
                .all(|line| !line.contains("public.c")),
            "{text}"
        );
        assert_families_declared_once(&text);

        // Done: no ETA left anywhere, so the family is left out.
        handle.copy_done("public.a");
        let text = render(&handle.status(), &ProcessStats::default());
        assert!(text.contains("starwal_snapshot_state{table=\"public.a\",state=\"done\"} 1\n"));
        assert!(!text.contains("starwal_snapshot_eta_seconds"), "{text}");
        assert_families_declared_once(&text);
    }

    #[test]
    fn inv11_open_and_prepared_starrocks_transactions_show_per_table() {
        let handle = handle();
        handle.add_table("public.orders", "orders");
        handle.add_table("public.items", "items");
        handle.transaction_part(
            "public.orders",
            "starwal_s_orders_1_0000000001000000_1_t",
            5000,
            std::time::Instant::now(),
        );
        handle.transaction_prepared("public.orders");
        handle.transaction_part("public.items", "l_t", 7, std::time::Instant::now());
        handle.transaction_committed("public.items");
        handle.transaction_split("public.items");
        let text = render(&handle.status(), &ProcessStats::default());
        for expected in [
            "# TYPE starwal_transaction_open gauge",
            "starwal_transaction_open{table=\"public.orders\"} 1",
            "starwal_transaction_open{table=\"public.items\"} 0",
            "starwal_transaction_prepared{table=\"public.orders\"} 1",
            "starwal_transaction_rows{table=\"public.orders\"} 5000",
            "starwal_transaction_rows{table=\"public.items\"} 0",
            "# TYPE starwal_transactions_committed_total counter",
            "starwal_transactions_committed_total{table=\"public.items\"} 1",
            "starwal_transactions_committed_total{table=\"public.orders\"} 0",
            "starwal_transactions_split_total{table=\"public.items\"} 1",
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "missing `{expected}` in\n{text}"
            );
        }
        assert!(text.contains("starwal_transaction_age_seconds{table=\"public.orders\"} "));
    }

    #[test]
    fn inv11_streamed_transactions_show_per_table_until_they_commit_or_roll_back() {
        let handle = handle();
        handle.add_table("public.orders", "orders");
        handle.stream_opened("public.orders", 7, "o_x7_s");
        handle.stream_opened("public.orders", 8, "o_x8_s");
        handle.stream_opened("public.orders", 9, "o_x9_s");
        handle.stream_part("public.orders", 7, 100);
        handle.stream_part("public.orders", 8, 20);
        handle.stream_prepared("public.orders", 7);
        handle.stream_closed("public.orders", 9, false);
        let text = render(&handle.status(), &ProcessStats::default());
        for expected in [
            "# TYPE starwal_streamed_transactions gauge",
            "starwal_streamed_transactions{table=\"public.orders\"} 2",
            "starwal_streamed_transactions_prepared{table=\"public.orders\"} 1",
            "starwal_streamed_transaction_rows{table=\"public.orders\"} 120",
            "starwal_transactions_committed_total{table=\"public.orders\"} 0",
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "missing `{expected}` in\n{text}"
            );
        }
        handle.stream_closed("public.orders", 7, true);
        handle.stream_closed("public.orders", 8, false);
        let text = render(&handle.status(), &ProcessStats::default());
        for expected in [
            "starwal_streamed_transactions{table=\"public.orders\"} 0",
            "starwal_streamed_transaction_oldest_age_seconds{table=\"public.orders\"} 0",
            "starwal_transactions_committed_total{table=\"public.orders\"} 1",
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "missing `{expected}` in\n{text}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let handle = handle();
        handle.add_table("we\"ird\\sch\nema.t", "t");
        let text = render(&handle.status(), &ProcessStats::default());
        assert!(
            text.contains("starwal_loads_total{table=\"we\\\"ird\\\\sch\\nema.t\"} 0\n"),
            "{text}"
        );
        // Off Linux (or unreadable /proc): the process series are left out.
        assert!(!text.contains("process_"));
    }

    #[tokio::test]
    async fn verify_series_appear_once_a_verify_ended() {
        let handle = handle();
        let text = render(&handle.status(), &ProcessStats::default());
        assert!(!text.contains("starwal_verify_"), "{text}");
        handle.request_verify(Vec::new()).unwrap();
        // One at a time: a second request waits for none, it is refused.
        assert!(handle.request_verify(Vec::new()).is_err());
        assert!(handle.verify_requested().await.is_empty());
        assert!(handle.status().verify.running);
        handle.verify_finished(
            1.5,
            Ok(vec![crate::state::VerifyTableStatus {
                table: "public.t".into(),
                rows_compared: 10,
                rows_mismatched: 2,
            }]),
        );
        let text = render(&handle.status(), &ProcessStats::default());
        assert!(
            text.contains("starwal_verify_rows_mismatched{table=\"public.t\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("starwal_verify_last_run_timestamp_seconds "));
        assert!(text.contains("starwal_verify_last_run_success 1\n"));
        assert_families_declared_once(&text);
        // A failed verify keeps the last tables and says it failed.
        handle.request_verify(vec!["public.t".into()]).unwrap();
        assert_eq!(handle.verify_requested().await, vec!["public.t".to_owned()]);
        handle.verify_finished(0.1, Err("connection refused".into()));
        let status = handle.status();
        assert_eq!(status.verify.error.as_deref(), Some("connection refused"));
        assert_eq!(status.verify.tables.len(), 1);
        let text = render(&status, &ProcessStats::default());
        assert!(text.contains("starwal_verify_last_run_success 0\n"));
    }

    #[test]
    fn floats_use_prometheus_spelling() {
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(0.005), "0.005");
        assert_eq!(format_float(30.0), "30");
    }
}
