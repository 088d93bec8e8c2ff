//! The CopyBoth stream after `START_REPLICATION`: XLogData and primary keepalives in, standby
//! status updates out, and a clean stop (CopyDone, then drain until the server's CopyDone and
//! ReadyForQuery) so the connection can be reused.
//!
//! This module moves bytes; it does not decide which positions to report — that is
//! [`super::feedback`]. NoticeResponse inside the stream (PG18 warns there about a missing
//! publication) is logged and skipped; ErrorResponse ends the stream with the server's error.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use postgres_protocol::message::backend;

use super::connection::{BackendMessage, ReplicationConnection};
use super::error::{PgError, ReplicationError};
use super::feedback::StandbyStatus;
use super::StartOptions;
use crate::postgres::Lsn;

/// Microseconds between the Unix epoch and Postgres' epoch (2000-01-01 UTC).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// `'w'` XLogData: one pgoutput message with its WAL positions.
#[derive(Debug, Clone)]
pub struct XLogData {
    /// Where the message starts in WAL (`0/0` for R, Y and some B).
    pub wal_start: Lsn,
    /// Equal to `wal_start` in logical mode; not the server's WAL end.
    pub wal_end: Lsn,
    /// Server clock, µs since 2000-01-01 UTC.
    pub send_time: i64,
    /// The pgoutput message, a zero-copy slice of the read buffer.
    pub data: Bytes,
}

/// `'k'` primary keepalive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// The server's sent position: everything before it has been sent to us.
    pub wal_end: Lsn,
    pub send_time: i64,
    /// The server wants a status update now (it will time us out otherwise).
    pub reply_requested: bool,
}

/// One event from the stream.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    XLogData(XLogData),
    Keepalive(Keepalive),
}

/// A replication stream in CopyBoth mode.
#[derive(Debug)]
pub struct ReplicationStream {
    conn: ReplicationConnection,
    slot: String,
    server_done: bool,
}

impl ReplicationStream {
    /// `START_REPLICATION SLOT slot LOGICAL start (options)`. `start` is only a floor: the server
    /// resumes from the slot's `confirmed_flush_lsn` when that is higher.
    pub async fn start(
        mut conn: ReplicationConnection,
        slot: &str,
        start: Lsn,
        options: &StartOptions,
    ) -> Result<ReplicationStream, ReplicationError> {
        let sql = ReplicationConnection::start_replication_sql(slot, start, options);
        conn.enter_copy_both(&sql).await?;
        Ok(ReplicationStream {
            conn,
            slot: slot.to_owned(),
            server_done: false,
        })
    }

    /// The slot being streamed.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// The next event; `Ok(None)` once the server has ended the copy (after [`Self::stop`] was
    /// requested, or when the server shuts the stream down). Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<StreamEvent>, ReplicationError> {
        if self.server_done {
            return Ok(None);
        }
        loop {
            match self.conn.read_message().await? {
                BackendMessage::CopyData(data) => return parse_copy_data(data).map(Some),
                BackendMessage::Other(backend::Message::CopyDone) => {
                    self.server_done = true;
                    return Ok(None);
                }
                BackendMessage::Other(backend::Message::NoticeResponse(body)) => {
                    let notice = PgError::from_fields(body.fields());
                    tracing::warn!(slot = %self.slot, code = %notice.code, "postgres notice in replication stream: {}", notice.message);
                }
                BackendMessage::Other(backend::Message::ErrorResponse(body)) => {
                    return Err(ReplicationError::Server(PgError::from_fields(
                        body.fields(),
                    )))
                }
                BackendMessage::Other(backend::Message::ParameterStatus(_)) => {}
                BackendMessage::Other(_) | BackendMessage::CopyBothResponse => {
                    return Err(ReplicationError::Protocol(
                        "unexpected message inside the replication stream".into(),
                    ))
                }
            }
        }
    }

    /// Sends a standby status update (`'r'`).
    pub async fn send_status(&mut self, status: StandbyStatus) -> Result<(), ReplicationError> {
        let mut payload = [0u8; 34];
        payload[0] = b'r';
        payload[1..9].copy_from_slice(&status.write.0.to_be_bytes());
        payload[9..17].copy_from_slice(&status.flush.0.to_be_bytes());
        payload[17..25].copy_from_slice(&status.apply.0.to_be_bytes());
        payload[25..33].copy_from_slice(&pg_now_micros().to_be_bytes());
        payload[33] = u8::from(status.reply_requested);
        self.conn.queue_copy_data(&payload)?;
        self.conn.flush().await
    }

    /// Ends streaming cleanly: optionally a last status update, CopyDone, then reads (and drops)
    /// whatever the server still sends until its CopyDone, CommandComplete and ReadyForQuery.
    /// Returns the connection for further commands (e.g. `DROP_REPLICATION_SLOT`).
    pub async fn stop(
        mut self,
        last_status: Option<StandbyStatus>,
    ) -> Result<ReplicationConnection, ReplicationError> {
        if let Some(status) = last_status {
            self.send_status(status).await?;
        }
        self.conn.queue_copy_done();
        self.conn.flush().await?;
        let mut error = None;
        loop {
            match self.conn.read_message().await? {
                BackendMessage::CopyData(_) => {}
                BackendMessage::Other(backend::Message::ReadyForQuery(_)) => {
                    return match error {
                        Some(err) => Err(ReplicationError::Server(err)),
                        None => Ok(self.conn),
                    }
                }
                BackendMessage::Other(backend::Message::ErrorResponse(body)) => {
                    error = Some(PgError::from_fields(body.fields()));
                }
                BackendMessage::Other(_) | BackendMessage::CopyBothResponse => {}
            }
        }
    }
}

fn parse_copy_data(mut data: Bytes) -> Result<StreamEvent, ReplicationError> {
    let truncated = |what: &str| {
        ReplicationError::Protocol(format!("truncated {what} message ({} bytes)", data.len()))
    };
    match data.first().copied() {
        Some(b'w') => {
            if data.len() < 25 {
                return Err(truncated("XLogData"));
            }
            data.advance(1);
            let wal_start = Lsn(data.get_u64());
            let wal_end = Lsn(data.get_u64());
            let send_time = data.get_i64();
            Ok(StreamEvent::XLogData(XLogData {
                wal_start,
                wal_end,
                send_time,
                data,
            }))
        }
        Some(b'k') => {
            if data.len() < 18 {
                return Err(truncated("keepalive"));
            }
            data.advance(1);
            Ok(StreamEvent::Keepalive(Keepalive {
                wal_end: Lsn(data.get_u64()),
                send_time: data.get_i64(),
                reply_requested: data.get_u8() != 0,
            }))
        }
        Some(other) => Err(ReplicationError::Protocol(format!(
            "unknown CopyData message type {other:#04x} in the replication stream"
        ))),
        None => Err(ReplicationError::Protocol(
            "empty CopyData message in the replication stream".into(),
        )),
    }
}

/// Now, in Postgres' clock: µs since 2000-01-01 UTC.
pub fn pg_now_micros() -> i64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    since_unix - PG_EPOCH_OFFSET_MICROS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xlogdata_and_keepalive() {
        let mut w = vec![b'w'];
        w.extend_from_slice(&0x10u64.to_be_bytes());
        w.extend_from_slice(&0x20u64.to_be_bytes());
        w.extend_from_slice(&7i64.to_be_bytes());
        w.extend_from_slice(b"B...");
        match parse_copy_data(Bytes::from(w)).unwrap() {
            StreamEvent::XLogData(x) => {
                assert_eq!(
                    (x.wal_start, x.wal_end, x.send_time),
                    (Lsn(0x10), Lsn(0x20), 7)
                );
                assert_eq!(&x.data[..], b"B...");
            }
            other => panic!("{other:?}"),
        }
        let mut k = vec![b'k'];
        k.extend_from_slice(&0x30u64.to_be_bytes());
        k.extend_from_slice(&9i64.to_be_bytes());
        k.push(1);
        match parse_copy_data(Bytes::from(k)).unwrap() {
            StreamEvent::Keepalive(k) => {
                assert_eq!(
                    k,
                    Keepalive {
                        wal_end: Lsn(0x30),
                        send_time: 9,
                        reply_requested: true
                    }
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_short_or_unknown_copy_data() {
        for bytes in [&b""[..], b"w", b"k\0\0", b"x123", &[b'w'; 24]] {
            assert!(
                parse_copy_data(Bytes::copy_from_slice(bytes)).is_err(),
                "{bytes:?}"
            );
        }
    }
}
