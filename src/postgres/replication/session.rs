//! The receive loop shared by every consumer of the stream (`tail`'s JSON printer and the
//! pipeline's forwarder): read events, decode pgoutput, hand messages to the consumer, and keep
//! the feedback flowing.
//!
//! The loop owns the rules of invariants 1–3 so no consumer can get them wrong: it tells the
//! [`FeedbackTracker`] where transactions begin and end, takes confirmations from the consumer
//! (returned from [`ChangeConsumer::handle`] or sent later on a `watch` channel), answers every
//! keepalive that asks for a reply, and sends a status update at least every status interval —
//! also while the consumer is slow, since it is polled between rounds of events. On shutdown it
//! sends a last update with what was confirmed and ends the copy cleanly.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::error::ReplicationError;
use super::feedback::FeedbackTracker;
use super::stream::{ReplicationStream, StreamEvent};
use crate::postgres::pgoutput::{Decoder, Message, PgOutputError};
use crate::postgres::Lsn;

/// At most this many events already read from the socket are handled in one round of the loop
/// before the shutdown, the timer and the confirmations are looked at again. A round re-arms every
/// branch's waker (watch, notify, timer), which cost more than decoding a small change (perf on a
/// backlog drain: ~6 % of the agent's CPU); a bound keeps the status updates and the shutdown
/// prompt (a few hundred changes take well under a millisecond).
const EVENTS_PER_ROUND: usize = 256;

/// Polls `future` once: its output if it is ready now, `None` if it would wait. Only for
/// cancel-safe futures ([`ReplicationStream::recv`] is): a pending one is dropped.
fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Receives each decoded pgoutput message, in stream order.
pub trait ChangeConsumer {
    /// The consumer's own error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Handles one message that starts at WAL position `lsn` (`0/0` for R and Y). Returns the
    /// position now durable downstream (a commit's end LSN) if handling it made one so; the
    /// loop reports it as `flush`. Must not confirm anything it has not made durable.
    fn handle(&mut self, lsn: Lsn, message: &Message) -> Result<Option<Lsn>, Self::Error>;

    /// Whether the consumer takes another message now. While it says no, the loop stops reading
    /// the stream (the server's send buffer fills, the walsender waits) but keeps answering
    /// keepalives and sending status updates (backpressure without `wal_sender_timeout`).
    fn accepts(&self) -> bool {
        true
    }

    /// Completes when [`ChangeConsumer::accepts`] may have changed; the loop asks again then.
    fn accepts_changed(&self) -> impl Future<Output = ()> + Send + '_ {
        std::future::pending()
    }

    /// The server's WAL end from a keepalive, for lag reporting.
    fn server_wal_end(&mut self, _wal_end: Lsn) {}

    /// A status update reported `flush` (for status reporting; it may pass what the consumer
    /// confirmed when the slot is idle, invariant 3).
    fn flushed(&mut self, _flush: Lsn) {}
}

/// Why the receive loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SessionError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("cannot decode the pgoutput message at LSN {lsn}: {source}")]
    Decode {
        lsn: Lsn,
        #[source]
        source: PgOutputError,
    },
    #[error(transparent)]
    Consumer(E),
}

/// How the loop ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The shutdown future completed; the copy was ended cleanly.
    Shutdown,
    /// The server ended the copy.
    ServerEnded,
}

/// What a finished [`Session::run`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSummary {
    pub end: SessionEnd,
    /// Keepalives received (a storm shows up here).
    pub keepalives_received: u64,
    /// Standby status updates sent.
    pub status_updates_sent: u64,
    /// The last `flush` position reported.
    pub flushed: Lsn,
}

/// A running replication session: stream + decoder + feedback.
#[derive(Debug)]
pub struct Session {
    stream: ReplicationStream,
    decoder: Decoder,
    tracker: FeedbackTracker,
    confirmations: Option<watch::Receiver<Lsn>>,
    keepalives_received: u64,
    status_updates_sent: u64,
}

impl Session {
    /// Wraps a started stream. `confirmed` is where the slot stood (its `confirmed_flush_lsn`).
    pub fn new(stream: ReplicationStream, status_interval: Duration, confirmed: Lsn) -> Session {
        Session {
            stream,
            decoder: Decoder::default(),
            tracker: FeedbackTracker::new(status_interval, confirmed),
            confirmations: None,
            keepalives_received: 0,
            status_updates_sent: 0,
        }
    }

    /// Confirmations that arrive later than `handle` returns (e.g. from a sink task).
    pub fn with_confirmations(mut self, confirmations: watch::Receiver<Lsn>) -> Session {
        self.confirmations = Some(confirmations);
        self
    }

    /// Runs until `shutdown` completes, the server ends the copy, or an error. After a
    /// shutdown the stream is stopped cleanly with a last status update; the connection is then
    /// closed (dropping a temporary slot).
    pub async fn run<C: ChangeConsumer>(
        mut self,
        consumer: &mut C,
        shutdown: impl Future<Output = ()>,
    ) -> Result<SessionSummary, SessionError<C::Error>> {
        tokio::pin!(shutdown);
        // One timer for the whole loop, moved only when the deadline changes: a fresh sleep per
        // message would register and cancel a timer for every change streamed.
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let end = 'events: loop {
            let now = Instant::now();
            if self.tracker.is_due(now.into_std()) {
                let flush = self.send_status(false).await?;
                consumer.flushed(flush);
            }
            let due = self
                .tracker
                .next_due()
                .map(Instant::from_std)
                .unwrap_or(now);
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            let confirmations = self.confirmations.as_mut();
            let accepts = consumer.accepts();
            tokio::select! {
                biased;
                _ = &mut shutdown => break SessionEnd::Shutdown,
                _ = &mut timer => {}
                _ = consumer.accepts_changed(), if !accepts => {}
                changed = async {
                    match confirmations {
                        Some(rx) => rx.changed().await.ok(),
                        None => std::future::pending().await,
                    }
                } => {
                    match changed {
                        Some(()) => {
                            if let Some(rx) = &self.confirmations {
                                let confirmed = *rx.borrow();
                                self.tracker.confirm(confirmed);
                            }
                        }
                        // The sender is gone: nothing more will be confirmed that way.
                        None => self.confirmations = None,
                    }
                }
                event = self.stream.recv(), if accepts => {
                    let mut event = event?;
                    let mut handled = 1;
                    // Then the events already buffered, while the consumer takes them.
                    loop {
                        if self.handle_event(consumer, event).await?.is_none() {
                            break 'events SessionEnd::ServerEnded;
                        }
                        if handled == EVENTS_PER_ROUND || !consumer.accepts() {
                            break;
                        }
                        match ready_now(self.stream.recv()) {
                            Some(next) => event = next?,
                            None => break,
                        }
                        handled += 1;
                    }
                }
            }
        };
        // A confirmation may have arrived together with the shutdown (which the biased select
        // prefers): the last update must carry it.
        if let Some(rx) = &self.confirmations {
            let confirmed = *rx.borrow();
            self.tracker.confirm(confirmed);
        }
        let status = self.tracker.status();
        if end == SessionEnd::Shutdown {
            let conn = self.stream.stop(Some(status)).await?;
            self.status_updates_sent += 1;
            conn.close().await;
        }
        Ok(SessionSummary {
            end,
            keepalives_received: self.keepalives_received,
            status_updates_sent: self.status_updates_sent,
            flushed: status.flush,
        })
    }

    /// One event of the stream; `None` when the server ended the copy.
    async fn handle_event<C: ChangeConsumer>(
        &mut self,
        consumer: &mut C,
        event: Option<StreamEvent>,
    ) -> Result<Option<()>, SessionError<C::Error>> {
        match event {
            None => return Ok(None),
            Some(StreamEvent::Keepalive(keepalive)) => {
                self.keepalives_received += 1;
                self.tracker.keepalive_received(keepalive.wal_end);
                consumer.server_wal_end(keepalive.wal_end);
                if keepalive.reply_requested || self.tracker.write_behind() {
                    let flush = self.send_status(false).await?;
                    consumer.flushed(flush);
                }
            }
            Some(StreamEvent::XLogData(xlog)) => {
                self.tracker.data_received(xlog.wal_start);
                let message =
                    self.decoder
                        .decode(xlog.data)
                        .map_err(|source| SessionError::Decode {
                            lsn: xlog.wal_start,
                            source,
                        })?;
                self.track(&message);
                if let Some(confirmed) = consumer
                    .handle(xlog.wal_start, &message)
                    .map_err(SessionError::Consumer)?
                {
                    self.tracker.confirm(confirmed);
                }
            }
        }
        Ok(Some(()))
    }

    fn track(&mut self, message: &Message) {
        match message {
            Message::Begin(_) | Message::BeginPrepare(_) => self.tracker.transaction_began(),
            Message::Commit(commit) => self.tracker.transaction_committed(commit.end_lsn),
            Message::StreamStart(start) => self.tracker.transaction_pending(start.xid),
            Message::StreamCommit(commit) => {
                self.tracker.pending_resolved(commit.xid);
                self.tracker.transaction_committed(commit.end_lsn);
            }
            Message::StreamAbort(abort) if abort.aborts_whole_transaction() => {
                self.tracker.pending_resolved(abort.xid)
            }
            Message::Prepare(prepare) | Message::StreamPrepare(prepare) => {
                self.tracker.transaction_pending(prepare.xid)
            }
            Message::CommitPrepared(commit) => {
                self.tracker.pending_resolved(commit.xid);
                self.tracker.transaction_committed(commit.end_lsn);
            }
            Message::RollbackPrepared(rollback) => self.tracker.pending_resolved(rollback.xid),
            _ => {}
        }
    }

    /// Sends an update; returns the `flush` it reported.
    async fn send_status(&mut self, reply_requested: bool) -> Result<Lsn, ReplicationError> {
        let mut status = self.tracker.status();
        status.reply_requested = reply_requested;
        self.stream.send_status(status).await?;
        self.tracker.status_sent(std::time::Instant::now(), &status);
        self.status_updates_sent += 1;
        Ok(status.flush)
    }
}
