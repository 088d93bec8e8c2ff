//! The agent process's own resource use (resident memory, CPU time, start time), for the
//! `process_*` Prometheus series and the `StreamMetrics` samples.
//!
//! Read from `/proc` on Linux; elsewhere every value is `None` and the series are left out rather
//! than reported as zero. The files are parsed defensively: a kernel that prints something
//! unexpected yields `None` for that value, never a panic, so a scrape can always be answered.

use std::time::Duration;

/// One reading of the process's resource use; each value is `None` when it could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size (`VmRSS`).
    pub resident_memory_bytes: Option<u64>,
    /// User plus system CPU time since the process started.
    pub cpu_time: Option<Duration>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the current values of this process (all `None` off Linux).
    pub fn read() -> ProcessStats {
        imp::read("self")
    }

    /// Reads the current values of process `pid` (tests and benchmarks watch the agent and the
    /// walsender with it).
    pub fn read_pid(pid: u32) -> ProcessStats {
        imp::read(&pid.to_string())
    }
}

/// The fields of `/proc/self/stat` we use, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatTicks {
    utime: u64,
    stime: u64,
    /// Ticks after boot at which the process started.
    starttime: u64,
}

/// `VmRSS:   1234 kB` from `/proc/self/status`, in bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    let multiplier = match fields.next()? {
        "kB" | "KB" | "kb" => 1024,
        "mB" | "MB" => 1024 * 1024,
        "B" => 1,
        _ => return None,
    };
    value.checked_mul(multiplier)
}

/// utime (field 14), stime (15) and starttime (22) of `/proc/self/stat`. Field 2, the command
/// name, is in parentheses and may itself contain spaces and parentheses, so fields are counted
/// from the last `)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_stat(stat: &str) -> Option<StatTicks> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // after_comm starts with field 3 (state): field n is at index n - 3.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(StatTicks {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// `btime <seconds>` from `/proc/stat`: when the machine booted, in seconds since the epoch.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_boot_time(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.starts_with("btime "))?;
    line["btime ".len()..].trim().parse().ok()
}

#[cfg(target_os = "linux")]
mod imp {
    use std::sync::OnceLock;
    use std::time::Duration;

    use super::{parse_boot_time, parse_stat, parse_vm_rss, ProcessStats};

    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc/*/stat` times.
    fn ticks_per_second() -> Option<u64> {
        // SAFETY: sysconf only reads a constant of the running system; it has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        u64::try_from(ticks).ok().filter(|ticks| *ticks > 0)
    }

    /// The start time does not change, and `/proc/stat` is long: read it once.
    fn start_time_seconds(starttime_ticks: u64, ticks: u64) -> Option<f64> {
        static BOOT_TIME: OnceLock<Option<u64>> = OnceLock::new();
        let boot = (*BOOT_TIME.get_or_init(|| {
            std::fs::read_to_string("/proc/stat")
                .ok()
                .as_deref()
                .and_then(parse_boot_time)
        }))?;
        Some(boot as f64 + starttime_ticks as f64 / ticks as f64)
    }

    /// `process`: `self` or a pid, the directory under `/proc`.
    pub(super) fn read(process: &str) -> ProcessStats {
        let resident_memory_bytes = std::fs::read_to_string(format!("/proc/{process}/status"))
            .ok()
            .as_deref()
            .and_then(parse_vm_rss);
        let stat = std::fs::read_to_string(format!("/proc/{process}/stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat);
        let ticks = ticks_per_second();
        let (cpu_time, start_time_seconds) = match (stat, ticks) {
            (Some(stat), Some(ticks)) => {
                let cpu_ticks = stat.utime.saturating_add(stat.stime);
                let cpu = Duration::try_from_secs_f64(cpu_ticks as f64 / ticks as f64).ok();
                (cpu, start_time_seconds(stat.starttime, ticks))
            }
            _ => (None, None),
        };
        ProcessStats {
            resident_memory_bytes,
            cpu_time,
            start_time_seconds,
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::ProcessStats;

    pub(super) fn read(_process: &str) -> ProcessStats {
        ProcessStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tstarwal\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
    }

    #[test]
    fn vm_rss_garbage_is_none() {
        for status in [
            "",
            "VmRSS:",
            "VmRSS: kB",
            "VmRSS: -5 kB",
            "VmRSS: 12",
            "VmRSS: 12 parsecs",
            "VmRSS: 99999999999999999999 kB",
            "VmRSS: 18446744073709551615 kB",
            "\u{0}\u{ff}VmRS",
        ] {
            assert_eq!(parse_vm_rss(status), None, "{status:?}");
        }
    }

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with spaces and parentheses must not shift the fields.
        let stat = "4242 (star wal) (x)) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    731 129 0 0 20 0 4 0 98765 123456 789 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(StatTicks {
                utime: 731,
                stime: 129,
                starttime: 98765,
            })
        );
    }

    #[test]
    fn stat_garbage_is_none() {
        for stat in [
            "",
            ")",
            "1 (x) S",
            "1 (x) S 1 2 3 4 5 6 7 8 9 10 abc 12 0 0 20 0 4 0 5",
            "1 (x) S 1 2 3 4 5 6 7 8 9 10 11 -12 0 0 20 0 4 0 5",
            "no parenthesis at all 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
            "1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 0 0 20 0 4 0",
        ] {
            assert_eq!(parse_stat(stat), None, "{stat:?}");
        }
    }

    #[test]
    fn boot_time_is_read() {
        let stat = "cpu  1 2 3\ncpu0 1 2 3\nbtime 1700000000\nprocesses 12\n";
        assert_eq!(parse_boot_time(stat), Some(1_700_000_000));
        assert_eq!(parse_boot_time("btime soon\n"), None);
        assert_eq!(parse_boot_time(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_read() {
        let stats = ProcessStats::read();
        assert!(stats.resident_memory_bytes.unwrap() > 0);
        assert!(stats.cpu_time.is_some());
        let started = stats.start_time_seconds.unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Boot time has second resolution; allow for it.
        assert!(
            started <= now + 2.0 && started > now - 86_400.0 * 365.0,
            "{started} vs {now}"
        );
    }
}
