//! The session's side of the pipeline: [`Forwarder`] takes each decoded message from the
//! replication session, counts its bytes into the engine's buffer (invariant 8) and hands it to
//! the pipeline task over a channel, in chunks; it tells the session to stop reading while the
//! buffer is full, the operator paused, or the attempt is closing.
//!
//! What is counted is what the message really keeps allocated while it waits in the channel: its
//! slot in the chunk (`size_of::<StreamItem>()`), its frame (an allocation of its own, see
//! `replication::connection`) and the chunk's unused capacity. So the channel is bounded by bytes
//! through the same cap: one-row transactions cost their real ~300 bytes each, not 64.
//!
//! Closing: once the engine closes the forwarder ([`Forwarder::new`]'s `closed` flag), nothing more
//! is handed over, so what the pipeline takes in before it stops is exactly what was forwarded
//! before the close: the engine sets the flag, then tells the pipeline to stop, with no wait in
//! between (the runtime runs one thread, so no message is half handed over). Messages of a
//! transaction not committed yet may still sit in the forwarder's chunk then: nothing could
//! confirm them, and the next start streams them again.

use std::mem::size_of;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::postgres::pgoutput::{Message, TupleData};
use crate::postgres::replication::session::ChangeConsumer;
use crate::postgres::Lsn;
use crate::state::EngineHandle;

/// One message from the session, with the bytes it holds in the buffer until the pipeline has
/// taken it in (what the pipeline keeps of it is counted by the holder: batch, commit log).
#[derive(Debug)]
pub struct StreamItem {
    pub lsn: Lsn,
    pub message: Message,
    pub bytes: u64,
}

/// Messages travel to the pipeline in chunks of up to this many (and at every commit): one
/// wake-up of the pipeline task per chunk instead of per message.
const CHUNK: usize = 256;
/// A chunk's share of the channel's slot blocks and the Vec header.
const CHANNEL_SLOT: usize = 64;

/// The session side: forwards every message to the pipeline task and applies backpressure.
#[derive(Debug)]
pub struct Forwarder {
    tx: mpsc::UnboundedSender<Vec<StreamItem>>,
    chunk: Vec<StreamItem>,
    handle: Arc<EngineHandle>,
    /// Set when a drain or stop begins: read nothing more.
    closed: Arc<AtomicBool>,
}

/// The pipeline task is gone (it failed; its error is reported by the engine).
#[derive(Debug, thiserror::Error)]
#[error("the pipeline stopped")]
pub struct PipelineGone;

impl Forwarder {
    pub fn new(
        tx: mpsc::UnboundedSender<Vec<StreamItem>>,
        handle: Arc<EngineHandle>,
        closed: Arc<AtomicBool>,
    ) -> Forwarder {
        Forwarder {
            tx,
            chunk: Vec::new(),
            handle,
            closed,
        }
    }
}

/// The bytes a message keeps allocated while it travels: its chunk slot, its frame (the tuples'
/// bytes plus the XLogData and pgoutput headers, rounded up by the allocator) and the frame's
/// shared-ownership record (the message is cloned out of the session).
fn message_bytes(message: &Message) -> u64 {
    const FRAME_OVERHEAD: u64 = 96;
    let tuple = |t: &TupleData| t.wire_bytes().len() as u64;
    size_of::<StreamItem>() as u64
        + FRAME_OVERHEAD
        + match message {
            Message::Insert(insert) => tuple(&insert.new_tuple),
            Message::Update(update) => {
                tuple(&update.new_tuple) + update.old_tuple.as_ref().map_or(0, |o| tuple(o.tuple()))
            }
            Message::Delete(delete) => tuple(delete.old_tuple.tuple()),
            _ => 0,
        }
}

impl ChangeConsumer for Forwarder {
    type Error = PipelineGone;

    fn handle(&mut self, lsn: Lsn, message: &Message) -> Result<Option<Lsn>, PipelineGone> {
        if self.closed.load(Ordering::SeqCst) {
            // A message the session had begun to read when the close came: the pipeline may have
            // stopped taking messages already, so it is not handed over (nor confirmed: the next
            // start streams it again).
            return Ok(None);
        }
        let bytes = message_bytes(message);
        self.handle.add_buffered(bytes);
        self.chunk.push(StreamItem {
            lsn,
            message: message.clone(),
            bytes,
        });
        // A commit goes at once (it is what can be confirmed); a transaction's changes go in
        // chunks. What is still in `chunk` when the session ends is an unfinished transaction,
        // which nothing could have confirmed: the next start streams it again. A full buffer
        // also sends the chunk: the session stops reading until bytes are released, and only
        // the pipeline can release them, by loading what it holds — a transaction whose first
        // few large rows fill the buffer would otherwise wait here forever.
        // A streamed transaction's end (Stream Commit or Abort, `stream.rs`) is a commit too:
        // nothing may follow it for a long time.
        if self.chunk.len() >= CHUNK
            || matches!(
                message,
                Message::Commit(_) | Message::StreamCommit(_) | Message::StreamAbort(_)
            )
            || !self.handle.may_read()
        {
            // The chunk grows from empty (a one-row transaction takes 4 slots, not 256); its
            // unused slots and its place in the channel are memory too, counted on its last
            // item, which the pipeline takes in last.
            let mut chunk = std::mem::take(&mut self.chunk);
            let slack =
                ((chunk.capacity() - chunk.len()) * size_of::<StreamItem>() + CHANNEL_SLOT) as u64;
            self.handle.add_buffered(slack);
            if let Some(last) = chunk.last_mut() {
                last.bytes += slack;
            }
            self.tx.send(chunk).map_err(|_| PipelineGone)?;
        }
        Ok(None)
    }

    fn accepts(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.handle.may_read()
    }

    async fn accepts_changed(&self) {
        let notified = self.handle.notified();
        if self.accepts() {
            return;
        }
        // Also wake up now and then: a drain flag flip does not notify.
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }

    fn server_wal_end(&mut self, wal_end: Lsn) {
        self.handle.set_received(Lsn::ZERO, wal_end);
    }

    fn flushed(&mut self, flush: Lsn) {
        self.handle.set_flushed(flush);
    }
}
