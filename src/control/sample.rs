//! Samples for `starwal.v1.Metrics/StreamMetrics`: rates computed from the difference between two
//! status snapshots one interval apart.
//!
//! The engine keeps only totals; a rate exists only between two readings, so each stream keeps
//! its previous [`Counters`] and nothing is stored engine-side per client. Counters never go
//! backwards within a process, but subtraction saturates anyway so a table registered between two
//! readings (or a clock that did not advance) yields 0, never a panic or a negative rate. The one
//! total that does go back is a table's rows copied, to 0 when a resync begins: that interval's
//! copy rate reads 0 too.

use std::time::{Duration, Instant};

use crate::control::pb;
use crate::control::process::ProcessStats;
use crate::state::StatusSnapshot;

/// Interval used when the request asks for 0 ms.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(1000);
/// Shortest interval: faster sampling would cost more (snapshots copy every table) than it shows.
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Longest interval: a minute is already longer than any dashboard refresh.
pub const MAX_SAMPLE_INTERVAL: Duration = Duration::from_millis(60_000);

/// The interval a request asks for, defaulted and clamped.
pub fn sample_interval(requested_ms: u32) -> Duration {
    if requested_ms == 0 {
        return DEFAULT_SAMPLE_INTERVAL;
    }
    Duration::from_millis(u64::from(requested_ms)).clamp(MIN_SAMPLE_INTERVAL, MAX_SAMPLE_INTERVAL)
}

/// The totals a rate is computed from, read at one moment.
#[derive(Debug, Clone)]
pub struct Counters {
    at: Instant,
    rows: u64,
    bytes: u64,
    loads: u64,
    cpu: Option<Duration>,
    /// Per table, in the snapshot's (sorted) order.
    tables: Vec<TableCounters>,
}

/// The totals of one table a rate is computed from.
#[derive(Debug, Clone)]
struct TableCounters {
    source: String,
    /// Source changes: inserts + updates + deletes.
    rows: u64,
    bytes: u64,
    /// Rows of its snapshot copy in StarRocks (0 without one; back to 0 when a resync begins).
    rows_copied: u64,
}

impl Counters {
    /// Reads the totals of `snapshot` and `process` as of `at`.
    pub fn read(snapshot: &StatusSnapshot, process: &ProcessStats, at: Instant) -> Counters {
        let mut counters = Counters {
            at,
            rows: 0,
            bytes: 0,
            loads: 0,
            cpu: process.cpu_time,
            tables: Vec::with_capacity(snapshot.tables.len()),
        };
        for table in &snapshot.tables {
            let rows = table
                .rows_inserted
                .saturating_add(table.rows_updated)
                .saturating_add(table.rows_deleted);
            counters.rows = counters.rows.saturating_add(rows);
            counters.bytes = counters.bytes.saturating_add(table.bytes_loaded);
            counters.loads = counters.loads.saturating_add(table.loads);
            counters.tables.push(TableCounters {
                source: table.source.clone(),
                rows,
                bytes: table.bytes_loaded,
                rows_copied: table.copy.as_ref().map_or(0, |copy| copy.rows_copied),
            });
        }
        counters
    }
}

/// One sample: rates from `previous` to `current`, gauges from `snapshot` (the reading `current`
/// was made from) and `process`.
pub fn sample(
    previous: &Counters,
    current: &Counters,
    snapshot: &StatusSnapshot,
    process: &ProcessStats,
) -> pb::StreamMetricsResponse {
    let elapsed = current.at.saturating_duration_since(previous.at);
    let seconds = elapsed.as_secs_f64();
    let rate = |before: u64, after: u64| {
        if seconds > 0.0 {
            after.saturating_sub(before) as f64 / seconds
        } else {
            0.0
        }
    };
    let cpu_percent = match (previous.cpu, current.cpu) {
        (Some(before), Some(after)) if seconds > 0.0 => {
            Some(after.saturating_sub(before).as_secs_f64() / seconds * 100.0)
        }
        _ => None,
    };
    let tables = current
        .tables
        .iter()
        .map(|now| {
            // New since the previous reading: no baseline, so no rate rather than a burst.
            let before = previous
                .tables
                .iter()
                .find(|t| t.source == now.source)
                .unwrap_or(now);
            let copy = snapshot
                .tables
                .iter()
                .find(|t| t.source == now.source)
                .and_then(|t| t.copy.as_ref())
                .map(pb::TableCopy::from);
            pb::TableRate {
                source: now.source.clone(),
                rows_per_second: rate(before.rows, now.rows),
                bytes_per_second: rate(before.bytes, now.bytes),
                copied_rows_per_second: rate(before.rows_copied, now.rows_copied),
                copy,
            }
        })
        .collect();
    pb::StreamMetricsResponse {
        elapsed_seconds: seconds,
        phase: pb::Phase::from(snapshot.phase).into(),
        serving: snapshot.health.serving,
        paused: snapshot.paused,
        rows_per_second: rate(previous.rows, current.rows),
        bytes_per_second: rate(previous.bytes, current.bytes),
        loads_per_second: rate(previous.loads, current.loads),
        lag_seconds: snapshot.lag_seconds,
        lag_bytes: snapshot.lag_bytes,
        buffered_bytes: snapshot.buffered_bytes,
        rss_bytes: process.resident_memory_bytes,
        cpu_percent,
        tables,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::state::{EngineHandle, OpCounts};

    #[test]
    fn interval_is_defaulted_and_clamped() {
        assert_eq!(sample_interval(0), Duration::from_millis(1000));
        assert_eq!(sample_interval(1), Duration::from_millis(100));
        assert_eq!(sample_interval(250), Duration::from_millis(250));
        assert_eq!(sample_interval(u32::MAX), Duration::from_millis(60_000));
    }

    #[test]
    fn rates_are_deltas_over_elapsed_time() {
        let config = Config::from_vars(vec![
            ("STARWAL_PG_URL".into(), "postgres://u@localhost/db".into()),
            ("STARWAL_TABLES".into(), "public.t".into()),
        ])
        .unwrap();
        let handle = EngineHandle::new(&config);
        handle.add_table("public.a", "a");
        handle.copy_planned("public.a", 100, 4, 1, 10);
        let start = Instant::now();
        let process_before = ProcessStats {
            cpu_time: Some(Duration::from_secs(1)),
            ..ProcessStats::default()
        };
        let before = Counters::read(&handle.status(), &process_before, start);

        handle.add_table("public.b", "b");
        let ops = OpCounts {
            inserted: 10,
            updated: 6,
            deleted: 4,
        };
        handle.record_load("public.a", ops, 20, 2000, Duration::ZERO, false);
        handle.record_load("public.b", ops, 20, 1000, Duration::ZERO, false);
        handle.copy_progressed("public.a", 30, true);
        let snapshot = handle.status();
        let process_after = ProcessStats {
            cpu_time: Some(Duration::from_millis(1500)),
            resident_memory_bytes: Some(1 << 20),
            start_time_seconds: None,
        };
        let after = Counters::read(&snapshot, &process_after, start + Duration::from_secs(2));
        let sample = sample(&before, &after, &snapshot, &process_after);

        assert_eq!(sample.elapsed_seconds, 2.0);
        assert_eq!(sample.rows_per_second, 20.0);
        assert_eq!(sample.bytes_per_second, 1500.0);
        assert_eq!(sample.loads_per_second, 1.0);
        assert_eq!(sample.cpu_percent, Some(25.0));
        assert_eq!(sample.rss_bytes, Some(1 << 20));
        assert_eq!(sample.tables.len(), 2);
        assert_eq!(sample.tables[0].source, "public.a");
        assert_eq!(sample.tables[0].rows_per_second, 10.0);
        assert_eq!(sample.tables[0].bytes_per_second, 1000.0);
        assert_eq!(sample.tables[0].copied_rows_per_second, 15.0);
        let copy = sample.tables[0].copy.as_ref().expect("public.a has a copy");
        assert_eq!(copy.state, "copying");
        assert_eq!((copy.rows_copied, copy.rows_estimated), (40, 100));
        assert_eq!((copy.chunks_done, copy.chunks_total), (2, 4));
        assert_eq!(sample.tables[1].copy, None);
        // New since the previous reading: no baseline, so no rate rather than a burst.
        assert_eq!(sample.tables[1].rows_per_second, 0.0);

        // Same instant twice: zero rates, no division by zero.
        let same = sample_same(&after, &snapshot);
        assert_eq!(same.rows_per_second, 0.0);
        assert_eq!(same.cpu_percent, None);
    }

    fn sample_same(counters: &Counters, snapshot: &StatusSnapshot) -> pb::StreamMetricsResponse {
        sample(counters, counters, snapshot, &ProcessStats::default())
    }
}
