//! What we tell Postgres, and when: the standby status update rules.
//!
//! * `write` = the highest position received (XLogData or keepalive). Reporting less makes the
//!   walsender send a keepalive on every WAL wait — tens of thousands a second when another
//!   database is busy (reference Part 1.3).
//! * `flush` (= `apply`) = what the consumer confirmed: a commit's `end_lsn` once the change is
//!   durable downstream. It never passes a change that was not confirmed (invariant 1).
//! * When nothing is open and every commit received has been confirmed, `flush` follows the
//!   keepalive's WAL end, so a slot whose tables are quiet does not retain WAL (invariant 3).
//! * An update goes out when the server asks, at least every status interval whatever the
//!   consumer is doing (invariant 2), and shortly after `flush` moves.
//!
//! The tracker is pure state: the caller feeds it events and the clock, which keeps the rules
//! testable without a server.

use std::time::{Duration, Instant};

use crate::postgres::{Lsn, Xid};

/// After the consumer confirms something, report it within this delay rather than waiting for
/// the status interval: the slot then releases WAL promptly, and we still batch a burst of commits
/// into one update.
pub const CONFIRM_REPORT_DELAY: Duration = Duration::from_millis(200);

/// One standby status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyStatus {
    pub write: Lsn,
    pub flush: Lsn,
    pub apply: Lsn,
    pub reply_requested: bool,
}

/// The state behind the status updates of one stream.
#[derive(Debug)]
pub struct FeedbackTracker {
    status_interval: Duration,
    received: Lsn,
    confirmed: Lsn,
    /// The highest commit end position received; `confirmed` must reach it before we are idle.
    last_commit_end: Lsn,
    /// The latest keepalive WAL end: what `flush` may follow while idle.
    keepalive_end: Lsn,
    /// A `B`…`C` (or `b`…`P`) transaction is being received.
    in_transaction: bool,
    /// Streamed (`S`…`E`) or prepared transactions received but not yet committed or aborted.
    pending: Vec<Xid>,
    last_sent: Option<(Instant, Lsn)>,
    /// The `write` position of the last update sent.
    last_sent_write: Lsn,
}

impl FeedbackTracker {
    /// A tracker starting from `confirmed` (the slot's `confirmed_flush_lsn`, or `0/0`).
    pub fn new(status_interval: Duration, confirmed: Lsn) -> FeedbackTracker {
        FeedbackTracker {
            status_interval,
            received: confirmed,
            confirmed,
            last_commit_end: confirmed,
            keepalive_end: Lsn::ZERO,
            in_transaction: false,
            pending: Vec::new(),
            last_sent: None,
            last_sent_write: Lsn::ZERO,
        }
    }

    /// An XLogData message arrived; `position` is its WAL start (0/0 for R and Y).
    pub fn data_received(&mut self, position: Lsn) {
        self.received = self.received.max(position);
    }

    /// A keepalive arrived: the server has sent us everything before `wal_end`.
    pub fn keepalive_received(&mut self, wal_end: Lsn) {
        self.received = self.received.max(wal_end);
        self.keepalive_end = self.keepalive_end.max(wal_end);
    }

    /// `B` (or `b`): a transaction begins.
    pub fn transaction_began(&mut self) {
        self.in_transaction = true;
    }

    /// `C` (or `c`, `K`): a transaction committed; the consumer will confirm `end_lsn`.
    pub fn transaction_committed(&mut self, end_lsn: Lsn) {
        self.in_transaction = false;
        self.last_commit_end = self.last_commit_end.max(end_lsn);
        self.received = self.received.max(end_lsn);
    }

    /// A streamed (`S`) or prepared (`P`) transaction is open until it commits or aborts.
    pub fn transaction_pending(&mut self, xid: Xid) {
        self.in_transaction = false;
        if !self.pending.contains(&xid) {
            self.pending.push(xid);
        }
    }

    /// `c`/`K` or a whole-transaction `A`/`r` for a pending transaction.
    pub fn pending_resolved(&mut self, xid: Xid) {
        self.pending.retain(|pending| *pending != xid);
    }

    /// The consumer has made everything up to `lsn` (a commit end) durable.
    pub fn confirm(&mut self, lsn: Lsn) {
        self.confirmed = self.confirmed.max(lsn);
    }

    /// What the consumer confirmed, not counting the idle advance.
    pub fn confirmed(&self) -> Lsn {
        self.confirmed
    }

    /// Nothing open, nothing unconfirmed.
    pub fn is_idle(&self) -> bool {
        !self.in_transaction && self.pending.is_empty() && self.confirmed >= self.last_commit_end
    }

    /// The position reported as `flush`.
    pub fn flush_position(&self) -> Lsn {
        if self.is_idle() {
            self.confirmed.max(self.keepalive_end)
        } else {
            self.confirmed
        }
    }

    /// The update to send now.
    pub fn status(&self) -> StandbyStatus {
        let flush = self.flush_position();
        StandbyStatus {
            write: self.received.max(flush),
            flush,
            apply: flush,
            reply_requested: false,
        }
    }

    /// Records that `status` went out at `now`.
    pub fn status_sent(&mut self, now: Instant, status: &StandbyStatus) {
        self.last_sent = Some((now, status.flush));
        self.last_sent_write = status.write;
    }

    /// Whether the server has not yet heard that we received everything up to `received`.
    /// The walsender sends a keepalive on every wait for WAL while our reported `write` is behind
    /// its sent position, so a keepalive that moves `write` gets an immediate answer; this is
    /// what keeps a busy neighbour database from causing a keepalive storm.
    pub fn write_behind(&self) -> bool {
        self.received > self.last_sent_write
    }

    /// When the next update is due.
    pub fn next_due(&self) -> Option<Instant> {
        let (sent_at, sent_flush) = self.last_sent?;
        if self.flush_position() != sent_flush {
            Some(sent_at + CONFIRM_REPORT_DELAY.min(self.status_interval))
        } else {
            Some(sent_at + self.status_interval)
        }
    }

    /// Whether an update is due at `now` (always true before the first one).
    pub fn is_due(&self, now: Instant) -> bool {
        self.next_due().is_none_or(|due| now >= due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);

    #[test]
    fn inv1_flush_waits_for_the_consumer() {
        let mut t = FeedbackTracker::new(INTERVAL, Lsn(100));
        t.transaction_began();
        t.data_received(Lsn(150));
        t.transaction_committed(Lsn(200));
        // A keepalive far ahead must not be reported as flushed while the commit is unconfirmed.
        t.keepalive_received(Lsn(500));
        let status = t.status();
        assert_eq!(status.flush, Lsn(100));
        assert_eq!(status.write, Lsn(500), "write reports what was received");
        t.confirm(Lsn(200));
        assert_eq!(
            t.status().flush,
            Lsn(500),
            "idle now: flush follows the keepalive"
        );
    }

    #[test]
    fn inv1_open_transaction_blocks_the_idle_advance() {
        let mut t = FeedbackTracker::new(INTERVAL, Lsn(100));
        t.transaction_began();
        t.keepalive_received(Lsn(300));
        assert_eq!(t.status().flush, Lsn(100));
        t.transaction_committed(Lsn(400));
        t.confirm(Lsn(400));
        t.keepalive_received(Lsn(450));
        assert_eq!(t.status().flush, Lsn(450));
    }

    #[test]
    fn inv1_pending_streamed_transactions_block_the_idle_advance() {
        let mut t = FeedbackTracker::new(INTERVAL, Lsn(100));
        t.transaction_pending(Xid(7));
        t.keepalive_received(Lsn(300));
        assert_eq!(t.status().flush, Lsn(100));
        t.pending_resolved(Xid(7));
        assert_eq!(t.status().flush, Lsn(300));
    }

    #[test]
    fn inv3_idle_slot_follows_keepalives() {
        let mut t = FeedbackTracker::new(INTERVAL, Lsn(100));
        t.keepalive_received(Lsn(900));
        assert!(t.is_idle());
        assert_eq!(t.status().flush, Lsn(900));
    }

    #[test]
    fn inv2_updates_are_due_on_interval_and_soon_after_a_confirm() {
        let mut t = FeedbackTracker::new(INTERVAL, Lsn(0));
        let start = Instant::now();
        assert!(t.is_due(start), "the first update is due at once");
        let status = t.status();
        t.status_sent(start, &status);
        assert!(!t.is_due(start + Duration::from_secs(9)));
        assert!(
            t.is_due(start + INTERVAL),
            "due every interval even with nothing new"
        );
        t.transaction_began();
        t.transaction_committed(Lsn(50));
        t.confirm(Lsn(50));
        assert_eq!(t.next_due(), Some(start + CONFIRM_REPORT_DELAY));
    }

    #[test]
    fn inv2_a_keepalive_ahead_of_the_reported_write_needs_an_answer() {
        let mut t = FeedbackTracker::new(INTERVAL, Lsn(0));
        let now = Instant::now();
        t.keepalive_received(Lsn(10));
        assert!(t.write_behind());
        let status = t.status();
        t.status_sent(now, &status);
        assert!(!t.write_behind());
        t.keepalive_received(Lsn(10));
        assert!(!t.write_behind(), "a repeated position needs no answer");
    }
}
