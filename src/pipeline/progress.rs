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

    pub fn committed(&mut self, commit_lsn: Lsn, end_lsn: Lsn, time: SystemTime) {
        self.waiting.push_back(ReceivedCommit {
            commit_lsn,
            end_lsn,
            time,
        });
    }

    /// Confirms every waiting commit older than `oldest_pending` (the commit LSN of the oldest
    /// change not yet committed in StarRocks; `None` when nothing is pending). Returns the new
    /// confirmed LSN when it moved.
    pub fn advance(&mut self, oldest_pending: Option<Lsn>) -> Option<Lsn> {
        let before = self.confirmed;
        while let Some(front) = self.waiting.front() {
            if oldest_pending.is_some_and(|pending| front.commit_lsn >= pending) {
                break;
            }
            self.confirmed = self.confirmed.max(front.end_lsn);
            self.waiting.pop_front();
        }
        (self.confirmed > before).then_some(self.confirmed)
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
    fn confirms_only_commits_older_than_the_oldest_pending_change() {
        let now = SystemTime::now();
        let mut log = CommitLog::new(Lsn(10));
        log.committed(Lsn(100), Lsn(108), now);
        log.committed(Lsn(200), Lsn(208), now);
        log.committed(Lsn(300), Lsn(308), now);
        // A change of the transaction committed at 200 is still pending: only 100 is done.
        assert_eq!(log.advance(Some(Lsn(200))), Some(Lsn(108)));
        assert_eq!(log.advance(Some(Lsn(200))), None);
        assert_eq!(log.confirmed(), Lsn(108));
        // Nothing pending: everything received is confirmed.
        assert_eq!(log.advance(None), Some(Lsn(308)));
        assert!(log.is_empty());
        // A pending change of a transaction not yet committed holds nothing back that was received.
        log.committed(Lsn(400), Lsn(408), now);
        assert_eq!(log.advance(Some(Lsn(500))), Some(Lsn(408)));
    }
}
