//! The allocator settings behind invariant 8 (memory bounded by the cap, and given back after a
//! burst), for glibc's malloc; elsewhere these are no-ops.
//!
//! - Large buffers (load bodies, big frames) always come from `mmap`: glibc otherwise raises its
//!   mmap threshold to the size of each large block freed (up to 32 MiB), after which bodies grow
//!   by copying inside the heap (old and new copy at once) and leave it fragmented.
//! - Two arenas at most: each thread that allocates (the loads run curl on tokio's blocking
//!   threads, one per table loading) would otherwise get an arena of its own, up to 8 per core,
//!   each keeping its freed memory to itself.
//! - When the pipeline goes idle after holding a lot, the heap's free pages are returned
//!   (`malloc_trim`): freed small blocks otherwise stay resident at the burst's peak.
//! - Clean file pages (code and read-only data of the binary and its libraries) are unmapped
//!   3 s and 30 s after the pipeline starts and again after a burst: the kernel maps them 64
//!   KiB at a time around each page touched (fault-around), so startup (argument parsing,
//!   setup checks, TLS and MySQL clients) left ~10 MiB of code mapped that an idle agent never
//!   runs again. They stay in the page cache; what the idle loop still runs faults back in as
//!   minor faults. Measured in ARCHITECTURE.md ("Idle footprint").

/// Requests at least this large are served by `mmap` and returned on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

/// When, after the pipeline starts, the startup pages are given back: at once (argument parsing,
/// setup checks and the clients' construction are done, and a backlog waiting at start would
/// otherwise be drained with their pages still mapped: 50 tables' catch-up peaked 1 MiB over
/// invariant 8's bound in CI), soon after (what the pipeline's own start touched; an idle
/// watch that starts 5 s after streaming sees the result), and again once the first status
/// updates, keepalives and monitor rounds have run.
const STARTUP_SETTLE: [std::time::Duration; 3] = [
    std::time::Duration::ZERO,
    std::time::Duration::from_secs(3),
    std::time::Duration::from_secs(30),
];

/// Fixes the mmap threshold (see the module docs). Call once, before the pipeline allocates.
/// Inside a tokio runtime it also schedules [`give_back`] for when startup has settled.
pub(crate) fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning parameters; it is thread-safe in glibc.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async {
            let started = tokio::time::Instant::now();
            for after in STARTUP_SETTLE {
                tokio::time::sleep_until(started + after).await;
                give_back();
            }
        });
    }
}

/// Returns the heap's free pages to the system (`malloc_trim`), without the file pages.
///
/// Called before a large batch is sealed (`flush.rs`): the heap then holds, besides the batch's
/// rows, the free chunks of every message already taken into a batch (their frames waited in the
/// forwarder's channel while the buffer was full) and of earlier batches — resident at the
/// heap's high-water mark, counted nowhere since nothing lives in them. The bodies the seal
/// writes are large blocks, served by `mmap` (not from those free chunks), so without this the
/// peak was the heap's high-water mark plus the new body plus the part in flight: measured
/// 98-102 MiB against a 96 MiB bound for a 64 MiB cap with JSON transaction parts (issue 14).
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory malloc holds free; it is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns free heap pages and clean file pages to the system.
pub(crate) fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory malloc holds free; it is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(target_os = "linux")]
    if let Err(err) = release_clean_file_pages() {
        tracing::debug!("clean file pages not released: {err}");
    }
}

/// Unmaps the resident pages of every private, read-only file mapping none of whose pages was
/// ever written (`Anonymous: 0 kB`, no swap in `/proc/self/smaps`): each such page is the
/// file's page-cache page, so `MADV_DONTNEED` only drops this process's mapping of it and the
/// next access maps the same bytes again. Mappings with a copied page (RELRO data the loader
/// relocated) are left alone: dropping those would bring back the unrelocated file bytes.
/// Relies on the agent never unmapping a file mapping while it runs (no `dlclose`, no file
/// `mmap`), so a range read from smaps is still that mapping when advised. Returns the bytes
/// advised.
#[cfg(target_os = "linux")]
pub(crate) fn release_clean_file_pages() -> std::io::Result<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for mapping in clean_file_mappings(&smaps) {
        // SAFETY: the range is a whole mapping of this process, read-only and unmodified (see
        // above), so dropping its pages cannot change what the process reads there.
        let result = unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.end - mapping.start,
                libc::MADV_DONTNEED,
            )
        };
        if result == 0 {
            released += mapping.end - mapping.start;
        }
    }
    Ok(released)
}

/// An address range of a mapping in `/proc/self/smaps`.
#[cfg(target_os = "linux")]
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
}

/// The private read-only file mappings of `smaps` with no anonymous or dirty page.
#[cfg(target_os = "linux")]
fn clean_file_mappings(smaps: &str) -> Vec<Mapping> {
    let mut found = Vec::new();
    let mut current: Option<(Mapping, bool)> = None;
    let mut finish = |current: &mut Option<(Mapping, bool)>| {
        if let Some((mapping, true)) = current.take() {
            found.push(mapping);
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-') {
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                continue;
            };
            finish(&mut current);
            let perms = fields.next().unwrap_or("");
            // offset, device, inode, then the path (absent for anonymous memory).
            let inode = fields.nth(2).unwrap_or("0");
            let path = fields.next().unwrap_or("");
            let candidate = perms.len() == 4
                && perms.starts_with('r')
                && !perms.contains('w')
                && perms.ends_with('p')
                && inode != "0"
                && path.starts_with('/')
                && !line.ends_with("(deleted)");
            current = Some((Mapping { start, end }, candidate));
            continue;
        }
        let Some((_, clean)) = current.as_mut() else {
            continue;
        };
        // Only a copied page shows the mapping was modified: it is anonymous (or swapped). A
        // dirty page that is not anonymous is the file's own page cache not yet written back (a
        // binary installed or copied moments before the start), the same bytes the next access
        // maps again.
        if let "Anonymous:" | "Swap:" = first {
            if fields.next() != Some("0") {
                *clean = false;
            }
        }
    }
    finish(&mut current);
    found
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn only_unmodified_read_only_file_mappings_are_released() {
        let smaps = "\
5600-5700 r--p 00000000 08:01 42 /usr/bin/starwal
Rss:                 100 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
5700-5900 r-xp 00100000 08:01 42 /usr/bin/starwal
Rss:                 400 kB
Shared_Dirty:          0 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
5900-5a00 r--p 00300000 08:01 42 /usr/bin/starwal
Private_Dirty:        12 kB
Anonymous:            12 kB
5a00-5b00 rw-p 00400000 08:01 42 /usr/bin/starwal
Anonymous:             0 kB
6000-6100 rw-p 00000000 00:00 0 [heap]
Anonymous:             4 kB
7000-7100 r-xp 00000000 08:01 77 /usr/lib/libcrypto.so.3
Anonymous:             0 kB
7100-7200 r--s 00000000 08:01 78 /dev/shm/x
Anonymous:             0 kB
7200-7300 r-xp 00000000 08:01 79 /tmp/old (deleted)
Anonymous:             0 kB
7300-7400 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
7400-7500 r-xp 00000000 08:01 80 /tmp/just-copied
Rss:                 256 kB
Private_Dirty:       256 kB
Anonymous:             0 kB
";
        assert_eq!(
            clean_file_mappings(smaps),
            [
                Mapping {
                    start: 0x5600,
                    end: 0x5700
                },
                Mapping {
                    start: 0x5700,
                    end: 0x5900
                },
                Mapping {
                    start: 0x7000,
                    end: 0x7100
                },
                // Dirty page cache of a file written just before (not a copy): released too.
                Mapping {
                    start: 0x7400,
                    end: 0x7500
                },
            ]
        );
    }

    #[test]
    fn releasing_keeps_the_process_running_the_same_code() {
        // Code and constants of this test binary are dropped and fault back in as it runs on.
        let released = release_clean_file_pages().unwrap();
        assert!(released > 0);
        let text: String = (0..1000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        assert_eq!(text.len(), 1000);
        assert!(format!("{:?}", clean_file_mappings("")).contains("[]"));
    }
}
