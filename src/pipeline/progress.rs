//! Which commit may be confirmed: the rule behind invariant 1.
//!
//! A commit is confirmable once every change of its transaction, and of every transaction before
//! it, is committed in StarRocks. Tables load independently, so the answer is "every received
//! commit older than the oldest change still buffered or in flight in any table". Commits with
//! no change for our tables (PG 14 sends empty transactions; a heartbeat is one) confirm as soon
//! as nothing older waits.
//!
//! Waiting commits are memory too (one-row transactions queue by the hundred thousand behind a
//! stuck load): [`CommitLog::bytes`] is what the log's queue really takes, counted into the
//! buffer so their number stays bounded, and the queue shrinks again after a burst.

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

/// Capacity the queue keeps when it shrinks after a burst.
const KEPT_CAPACITY: usize = 1024;

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

    /// A commit was received; it waits until confirmed.
    pub fn committed(&mut self, commit_lsn: Lsn, end_lsn: Lsn, time: SystemTime) {
        self.waiting.push_back(ReceivedCommit {
            commit_lsn,
            end_lsn,
            time,
        });
    }

    /// Confirms every waiting commit older than `oldest_pending` (the commit LSN of the oldest
    /// change not yet committed in StarRocks; `None` when nothing is pending).
    pub fn advance(&mut self, oldest_pending: Option<Lsn>) {
        while let Some(front) = self.waiting.front() {
            if oldest_pending.is_some_and(|pending| front.commit_lsn >= pending) {
                break;
            }
            self.confirmed = self.confirmed.max(front.end_lsn);
            self.waiting.pop_front();
        }
        // After a burst: give the queue's memory back once it is mostly empty (hysteresis, so
        // a steady stream does not reallocate back and forth).
        let capacity = self.waiting.capacity();
        if capacity > KEPT_CAPACITY && self.waiting.len() < capacity / 4 {
            self.waiting
                .shrink_to(KEPT_CAPACITY.max(self.waiting.len() * 2));
        }
    }

    /// Memory the waiting commits take: the queue's capacity.
    pub fn bytes(&self) -> u64 {
        (self.waiting.capacity() * std::mem::size_of::<ReceivedCommit>()) as u64
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
        log.committed(Lsn(100), Lsn(108), now);
        log.committed(Lsn(200), Lsn(208), now);
        log.committed(Lsn(300), Lsn(308), now);
        // A change of the transaction committed at 200 is still pending: only 100 is done.
        log.advance(Some(Lsn(200)));
        assert_eq!(log.confirmed(), Lsn(108));
        log.advance(Some(Lsn(200)));
        assert_eq!(log.confirmed(), Lsn(108));
        // Nothing pending: everything received is confirmed.
        log.advance(None);
        assert_eq!(log.confirmed(), Lsn(308));
        assert!(log.is_empty());
        // A pending change of a transaction not yet committed holds nothing back that was received.
        log.committed(Lsn(400), Lsn(408), now);
        log.advance(Some(Lsn(500)));
        assert_eq!(log.confirmed(), Lsn(408));
    }

    #[test]
    fn waiting_commits_are_counted_and_their_memory_returned_after_a_burst() {
        let now = SystemTime::now();
        let mut log = CommitLog::new(Lsn(0));
        for n in 1..=100_000u64 {
            log.committed(Lsn(n * 10), Lsn(n * 10 + 8), now);
        }
        let burst = log.bytes();
        assert!(burst >= 100_000 * std::mem::size_of::<ReceivedCommit>() as u64);
        log.advance(None);
        assert!(
            log.bytes() <= (KEPT_CAPACITY * std::mem::size_of::<ReceivedCommit>()) as u64,
            "{} bytes kept after the burst",
            log.bytes()
        );
    }
}
