//! Which commit may be confirmed: the rule behind invariant 1.
//!
//! A commit is confirmable once every change of its transaction, and of every transaction before
//! it, is committed in StarRocks. Tables load independently, so the answer is "every received
//! commit older than the oldest change still buffered or in flight in any table". Commits with
//! no change for our tables (PG 14 sends empty transactions; a heartbeat is one) confirm as soon
//! as nothing older waits.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::postgres::Lsn;

#[derive(Debug, Clone, Copy)]
struct ReceivedCommit {
    /// `Begin.final_lsn` = `Commit.commit_lsn`: what change positions carry.
    commit_lsn: Lsn,
    end_lsn: Lsn,
    time: SystemTime,
    /// Buffer bytes the commit holds until it is confirmed: waiting commits are memory too, and
    /// counting them keeps their number bounded when one table's loads are stuck.
    bytes: u64,
}

/// Commits received and not yet confirmed, oldest first.
#[derive(Debug, Default)]
pub struct CommitLog {
    waiting: VecDeque<ReceivedCommit>,
    confirmed: Lsn,
}

impl CommitLog {
    /// A log starting at `confirmed` (where the slot stood).
    pub fn new(confirmed: Lsn) -> CommitLog {
        CommitLog {
            waiting: VecDeque::new(),
            confirmed,
        }
    }

    /// A commit was received; it holds `bytes` of the buffer until confirmed.
    pub fn committed(&mut self, commit_lsn: Lsn, end_lsn: Lsn, time: SystemTime, bytes: u64) {
        self.waiting.push_back(ReceivedCommit {
            commit_lsn,
            end_lsn,
            time,
            bytes,
        });
    }

    /// Confirms every waiting commit older than `oldest_pending` (the commit LSN of the oldest
    /// change not yet committed in StarRocks; `None` when nothing is pending). Returns the buffer
    /// bytes the confirmed commits held.
    pub fn advance(&mut self, oldest_pending: Option<Lsn>) -> u64 {
        let mut released = 0;
        while let Some(front) = self.waiting.front() {
            if oldest_pending.is_some_and(|pending| front.commit_lsn >= pending) {
                break;
            }
            self.confirmed = self.confirmed.max(front.end_lsn);
            released += front.bytes;
            self.waiting.pop_front();
        }
        released
    }

    pub fn confirmed(&self) -> Lsn {
        self.confirmed
    }

    /// The commit time of the oldest commit still waiting (for lag in seconds).
    pub fn oldest_waiting(&self) -> Option<SystemTime> {
        self.waiting.front().map(|commit| commit.time)
    }

    /// Whether every commit received is confirmed.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv1_confirms_only_commits_older_than_the_oldest_pending_change() {
        let now = SystemTime::now();
        let mut log = CommitLog::new(Lsn(10));
        log.committed(Lsn(100), Lsn(108), now, 1);
        log.committed(Lsn(200), Lsn(208), now, 2);
        log.committed(Lsn(300), Lsn(308), now, 4);
        // A change of the transaction committed at 200 is still pending: only 100 is done.
        assert_eq!(log.advance(Some(Lsn(200))), 1);
        assert_eq!(log.advance(Some(Lsn(200))), 0);
        assert_eq!(log.confirmed(), Lsn(108));
        // Nothing pending: everything received is confirmed, and its bytes released.
        assert_eq!(log.advance(None), 6);
        assert_eq!(log.confirmed(), Lsn(308));
        assert!(log.is_empty());
        // A pending change of a transaction not yet committed holds nothing back that was received.
        log.committed(Lsn(400), Lsn(408), now, 8);
        assert_eq!(log.advance(Some(Lsn(500))), 8);
        assert_eq!(log.confirmed(), Lsn(408));
    }
}
