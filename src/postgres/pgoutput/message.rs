//! The pgoutput messages ([`Message`]) and their layouts, one decode function per type byte, as in
//! `reference/postgres-replication.md` §1.5: transaction (B C O), schema (R Y), changes (I U D T),
//! logical messages (M), streaming (S E c A) and two-phase (b P K r p). Whether `[xid]` precedes
//! R, Y, I, U, D, T and M is the caller's knowledge (inside a stream block or not); the
//! [`Decoder`](super::Decoder) tracks it. This file does not interpret the changes (the pipeline
//! does). Protects invariant #9: each decoder reads through the bounds-checked reader and rejects
//! trailing bytes, so every message is fully accounted for.

use std::fmt;

use bytes::Bytes;

use super::reader::Reader;
use super::tuple::{TupleData, NEW_TUPLE, OLD_FULL_TUPLE, OLD_KEY_TUPLE};
use super::{PgOutputError, PgStr};
use crate::postgres::value::PgTimestamp;
use crate::postgres::{Lsn, Oid, Xid};

/// The type byte of a pgoutput message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// `B`
    Begin,
    /// `C`
    Commit,
    /// `O`
    Origin,
    /// `R`
    Relation,
    /// `Y`
    Type,
    /// `I`
    Insert,
    /// `U`
    Update,
    /// `D`
    Delete,
    /// `T`
    Truncate,
    /// `M`
    Message,
    /// `S`
    StreamStart,
    /// `E`
    StreamStop,
    /// `c`
    StreamCommit,
    /// `A`
    StreamAbort,
    /// `b`
    BeginPrepare,
    /// `P`
    Prepare,
    /// `K`
    CommitPrepared,
    /// `r`
    RollbackPrepared,
    /// `p`
    StreamPrepare,
}

impl MessageType {
    /// The message type of a type byte, if pgoutput defines it.
    pub fn from_byte(byte: u8) -> Option<MessageType> {
        Some(match byte {
            b'B' => MessageType::Begin,
            b'C' => MessageType::Commit,
            b'O' => MessageType::Origin,
            b'R' => MessageType::Relation,
            b'Y' => MessageType::Type,
            b'I' => MessageType::Insert,
            b'U' => MessageType::Update,
            b'D' => MessageType::Delete,
            b'T' => MessageType::Truncate,
            b'M' => MessageType::Message,
            b'S' => MessageType::StreamStart,
            b'E' => MessageType::StreamStop,
            b'c' => MessageType::StreamCommit,
            b'A' => MessageType::StreamAbort,
            b'b' => MessageType::BeginPrepare,
            b'P' => MessageType::Prepare,
            b'K' => MessageType::CommitPrepared,
            b'r' => MessageType::RollbackPrepared,
            b'p' => MessageType::StreamPrepare,
            _ => return None,
        })
    }

    /// The type byte.
    pub fn as_byte(self) -> u8 {
        match self {
            MessageType::Begin => b'B',
            MessageType::Commit => b'C',
            MessageType::Origin => b'O',
            MessageType::Relation => b'R',
            MessageType::Type => b'Y',
            MessageType::Insert => b'I',
            MessageType::Update => b'U',
            MessageType::Delete => b'D',
            MessageType::Truncate => b'T',
            MessageType::Message => b'M',
            MessageType::StreamStart => b'S',
            MessageType::StreamStop => b'E',
            MessageType::StreamCommit => b'c',
            MessageType::StreamAbort => b'A',
            MessageType::BeginPrepare => b'b',
            MessageType::Prepare => b'P',
            MessageType::CommitPrepared => b'K',
            MessageType::RollbackPrepared => b'r',
            MessageType::StreamPrepare => b'p',
        }
    }

    /// The protocol documentation's name, as errors show it ("Stream Commit").
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Begin => "Begin",
            MessageType::Commit => "Commit",
            MessageType::Origin => "Origin",
            MessageType::Relation => "Relation",
            MessageType::Type => "Type",
            MessageType::Insert => "Insert",
            MessageType::Update => "Update",
            MessageType::Delete => "Delete",
            MessageType::Truncate => "Truncate",
            MessageType::Message => "Message",
            MessageType::StreamStart => "Stream Start",
            MessageType::StreamStop => "Stream Stop",
            MessageType::StreamCommit => "Stream Commit",
            MessageType::StreamAbort => "Stream Abort",
            MessageType::BeginPrepare => "Begin Prepare",
            MessageType::Prepare => "Prepare",
            MessageType::CommitPrepared => "Commit Prepared",
            MessageType::RollbackPrepared => "Rollback Prepared",
            MessageType::StreamPrepare => "Stream Prepare",
        }
    }

    /// Whether this message carries `[xid]` when sent inside a stream block.
    pub fn has_xid_in_stream_block(self) -> bool {
        matches!(
            self,
            MessageType::Relation
                | MessageType::Type
                | MessageType::Insert
                | MessageType::Update
                | MessageType::Delete
                | MessageType::Truncate
                | MessageType::Message
        )
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One decoded pgoutput message. Strings, tuples and message contents are slices of the
/// received buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `B`: a transaction starts.
    Begin(Begin),
    /// `C`: the transaction commits.
    Commit(Commit),
    /// `O`: the transaction came from another node through replication origin `origin_name`.
    Origin(Origin),
    /// `R`: a relation's schema (sent before its first change and after invalidations).
    Relation(Relation),
    /// `Y`: a user-defined type used by a following relation.
    Type(TypeMessage),
    /// `I`: a row was inserted.
    Insert(Insert),
    /// `U`: a row was updated.
    Update(Update),
    /// `D`: a row was deleted.
    Delete(Delete),
    /// `T`: relations were truncated.
    Truncate(Truncate),
    /// `M`: a `pg_logical_emit_message` (with `messages 'true'`).
    LogicalMessage(LogicalMessage),
    /// `S`: a stream block of an in-progress transaction starts.
    StreamStart(StreamStart),
    /// `E`: the stream block ends.
    StreamStop,
    /// `c`: a streamed transaction commits.
    StreamCommit(StreamCommit),
    /// `A`: a streamed (sub)transaction aborts.
    StreamAbort(StreamAbort),
    /// `b`: a prepared transaction starts (two-phase).
    BeginPrepare(BeginPrepare),
    /// `P`: the transaction is prepared.
    Prepare(Prepare),
    /// `K`: a prepared transaction commits.
    CommitPrepared(CommitPrepared),
    /// `r`: a prepared transaction rolls back.
    RollbackPrepared(RollbackPrepared),
    /// `p`: a streamed transaction is prepared (same layout as `P`).
    StreamPrepare(Prepare),
}

impl Message {
    /// The message's type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Begin(_) => MessageType::Begin,
            Message::Commit(_) => MessageType::Commit,
            Message::Origin(_) => MessageType::Origin,
            Message::Relation(_) => MessageType::Relation,
            Message::Type(_) => MessageType::Type,
            Message::Insert(_) => MessageType::Insert,
            Message::Update(_) => MessageType::Update,
            Message::Delete(_) => MessageType::Delete,
            Message::Truncate(_) => MessageType::Truncate,
            Message::LogicalMessage(_) => MessageType::Message,
            Message::StreamStart(_) => MessageType::StreamStart,
            Message::StreamStop => MessageType::StreamStop,
            Message::StreamCommit(_) => MessageType::StreamCommit,
            Message::StreamAbort(_) => MessageType::StreamAbort,
            Message::BeginPrepare(_) => MessageType::BeginPrepare,
            Message::Prepare(_) => MessageType::Prepare,
            Message::CommitPrepared(_) => MessageType::CommitPrepared,
            Message::RollbackPrepared(_) => MessageType::RollbackPrepared,
            Message::StreamPrepare(_) => MessageType::StreamPrepare,
        }
    }
}

/// `B` Begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the commit record (= the following Commit's `commit_lsn`).
    pub final_lsn: Lsn,
    /// Commit time.
    pub commit_ts: PgTimestamp,
    /// Transaction id.
    pub xid: Xid,
}

/// `C` Commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Unused by Postgres so far (0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// End of the commit record: the position to confirm once the transaction is durable.
    pub end_lsn: Lsn,
    /// Commit time.
    pub commit_ts: PgTimestamp,
}

/// `O` Origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Commit LSN on the origin server.
    pub origin_commit_lsn: Lsn,
    /// Replication origin name.
    pub origin_name: PgStr,
}

/// Replica identity of a relation, from `R`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: the primary key.
    Default,
    /// `n`: none.
    Nothing,
    /// `f`: all columns (old tuples come whole, as `O`).
    Full,
    /// `i`: a unique index.
    Index,
}

impl ReplicaIdentity {
    /// The identity of a `relreplident` byte.
    pub fn from_byte(byte: u8) -> Option<ReplicaIdentity> {
        match byte {
            b'd' => Some(ReplicaIdentity::Default),
            b'n' => Some(ReplicaIdentity::Nothing),
            b'f' => Some(ReplicaIdentity::Full),
            b'i' => Some(ReplicaIdentity::Index),
            _ => None,
        }
    }
}

/// `R` Relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Transaction id, only inside a stream block.
    pub xid: Option<Xid>,
    /// Relation OID (the key that I/U/D/T refer to).
    pub relation_id: Oid,
    /// Schema name (empty means `pg_catalog`).
    pub namespace: PgStr,
    /// Relation name.
    pub name: PgStr,
    /// Replica identity setting.
    pub replica_identity: ReplicaIdentity,
    /// The published columns, in tuple order.
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Bit 1 = part of the replica identity key.
    pub flags: u8,
    /// Column name.
    pub name: PgStr,
    /// Type OID.
    pub type_oid: Oid,
    /// Type modifier (`atttypmod`, -1 when none).
    pub type_modifier: i32,
}

impl RelationColumn {
    /// Whether the column is part of the replica identity key.
    pub fn is_key(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// `Y` Type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMessage {
    /// Transaction id, only inside a stream block.
    pub xid: Option<Xid>,
    /// Type OID.
    pub type_oid: Oid,
    /// Schema name.
    pub namespace: PgStr,
    /// Type name.
    pub name: PgStr,
}

/// The old row image an Update or Delete carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: the replica identity key columns (other columns are `n`).
    Key(TupleData),
    /// `O`: the whole old row (REPLICA IDENTITY FULL), detoasted.
    Full(TupleData),
}

impl OldTuple {
    /// The tuple, whichever image it is.
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(tuple) | OldTuple::Full(tuple) => tuple,
        }
    }
}

/// `I` Insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// Transaction id, only inside a stream block.
    pub xid: Option<Xid>,
    /// Relation OID.
    pub relation_id: Oid,
    /// The new row.
    pub new_tuple: TupleData,
}

/// `U` Update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Transaction id, only inside a stream block.
    pub xid: Option<Xid>,
    /// Relation OID.
    pub relation_id: Oid,
    /// The old key (key changed) or old row (FULL); absent when the key did not change.
    pub old_tuple: Option<OldTuple>,
    /// The new row; unchanged TOASTed columns are `UnchangedToast`.
    pub new_tuple: TupleData,
}

/// `D` Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Transaction id, only inside a stream block.
    pub xid: Option<Xid>,
    /// Relation OID.
    pub relation_id: Oid,
    /// The deleted row's key or whole old row.
    pub old_tuple: OldTuple,
}

/// `T` Truncate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Transaction id, only inside a stream block.
    pub xid: Option<Xid>,
    /// Option bits: 1 = CASCADE, 2 = RESTART IDENTITY.
    pub options: u8,
    /// The truncated relations.
    pub relation_ids: Vec<Oid>,
}

impl Truncate {
    /// `TRUNCATE … CASCADE`.
    pub fn cascade(&self) -> bool {
        self.options & 1 != 0
    }

    /// `TRUNCATE … RESTART IDENTITY`.
    pub fn restart_identity(&self) -> bool {
        self.options & 2 != 0
    }
}

/// `M` logical decoding message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    /// Transaction id, only inside a stream block.
    pub xid: Option<Xid>,
    /// Bit 1 = transactional.
    pub flags: u8,
    /// LSN of the message.
    pub lsn: Lsn,
    /// The prefix given to `pg_logical_emit_message`.
    pub prefix: PgStr,
    /// The content (arbitrary bytes).
    pub content: Bytes,
}

impl LogicalMessage {
    /// Whether the message is part of its transaction (inside B…C) rather than standalone.
    pub fn is_transactional(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// `S` Stream Start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStart {
    /// The streamed transaction.
    pub xid: Xid,
    /// Whether this is the transaction's first stream block.
    pub first_segment: bool,
}

/// `c` Stream Commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCommit {
    /// The streamed transaction.
    pub xid: Xid,
    /// Unused so far (0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// End of the commit record: the position to confirm.
    pub end_lsn: Lsn,
    /// Commit time.
    pub commit_ts: PgTimestamp,
}

/// `A` Stream Abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAbort {
    /// The streamed transaction.
    pub xid: Xid,
    /// The aborted subtransaction; equal to `xid` when the whole transaction aborts.
    pub subxid: Xid,
    /// Abort position and time: only with proto 4 and `streaming 'parallel'`.
    pub abort: Option<StreamAbortPosition>,
}

impl StreamAbort {
    /// Whether the whole transaction (not a subtransaction) aborted.
    pub fn aborts_whole_transaction(&self) -> bool {
        self.xid == self.subxid
    }
}

/// The tail of a Stream Abort under parallel streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAbortPosition {
    /// LSN of the abort record.
    pub abort_lsn: Lsn,
    /// Abort time.
    pub abort_ts: PgTimestamp,
}

/// `b` Begin Prepare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginPrepare {
    /// LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// End of the prepare record.
    pub end_lsn: Lsn,
    /// Prepare time.
    pub prepare_ts: PgTimestamp,
    /// Transaction id.
    pub xid: Xid,
    /// Global transaction id of the prepared transaction.
    pub gid: PgStr,
}

/// `P` Prepare and `p` Stream Prepare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    /// Unused so far (0).
    pub flags: u8,
    /// LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// End of the prepare record.
    pub end_lsn: Lsn,
    /// Prepare time.
    pub prepare_ts: PgTimestamp,
    /// Transaction id.
    pub xid: Xid,
    /// Global transaction id.
    pub gid: PgStr,
}

/// `K` Commit Prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPrepared {
    /// Unused so far (0).
    pub flags: u8,
    /// LSN of the commit-prepared record.
    pub commit_lsn: Lsn,
    /// End of that record: the position to confirm.
    pub end_lsn: Lsn,
    /// Commit time.
    pub commit_ts: PgTimestamp,
    /// Transaction id.
    pub xid: Xid,
    /// Global transaction id.
    pub gid: PgStr,
}

/// `r` Rollback Prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPrepared {
    /// Unused so far (0).
    pub flags: u8,
    /// End of the prepare record.
    pub prepare_end_lsn: Lsn,
    /// End of the rollback record: the position to confirm.
    pub rollback_end_lsn: Lsn,
    /// Prepare time.
    pub prepare_ts: PgTimestamp,
    /// Rollback time.
    pub rollback_ts: PgTimestamp,
    /// Transaction id.
    pub xid: Xid,
    /// Global transaction id.
    pub gid: PgStr,
}

/// Decodes one pgoutput message (one XLogData payload). `in_stream_block` says whether it arrived
/// between Stream Start and Stream Stop, which puts `[xid]` in front of R, Y, I, U, D, T and M.
pub fn decode_message(data: Bytes, in_stream_block: bool) -> Result<Message, PgOutputError> {
    let Some(&type_byte) = data.first() else {
        return Err(PgOutputError::Empty);
    };
    let message_type = MessageType::from_byte(type_byte)
        .ok_or(PgOutputError::UnknownMessageType { byte: type_byte })?;
    let mut reader = Reader::new(&data, message_type);
    let reader = &mut reader;
    let xid = if in_stream_block && message_type.has_xid_in_stream_block() {
        Some(reader.xid("xid")?)
    } else {
        None
    };
    let message = match message_type {
        MessageType::Begin => Message::Begin(Begin {
            final_lsn: reader.lsn("final LSN")?,
            commit_ts: reader.timestamp("commit timestamp")?,
            xid: reader.xid("xid")?,
        }),
        MessageType::Commit => Message::Commit(Commit {
            flags: reader.u8("flags")?,
            commit_lsn: reader.lsn("commit LSN")?,
            end_lsn: reader.lsn("end LSN")?,
            commit_ts: reader.timestamp("commit timestamp")?,
        }),
        MessageType::Origin => Message::Origin(Origin {
            origin_commit_lsn: reader.lsn("origin commit LSN")?,
            origin_name: reader.string("origin name")?,
        }),
        MessageType::Relation => Message::Relation(decode_relation(reader, xid)?),
        MessageType::Type => Message::Type(TypeMessage {
            xid,
            type_oid: reader.oid("type OID")?,
            namespace: reader.string("namespace")?,
            name: reader.string("type name")?,
        }),
        MessageType::Insert => {
            let relation_id = reader.oid("relation id")?;
            expect_marker(reader, b"N", "'N'")?;
            Message::Insert(Insert {
                xid,
                relation_id,
                new_tuple: TupleData::read(reader, NEW_TUPLE)?,
            })
        }
        MessageType::Update => {
            let relation_id = reader.oid("relation id")?;
            let old_tuple = match expect_marker(reader, b"KON", "'K', 'O' or 'N'")? {
                b'K' => Some(OldTuple::Key(TupleData::read(reader, OLD_KEY_TUPLE)?)),
                b'O' => Some(OldTuple::Full(TupleData::read(reader, OLD_FULL_TUPLE)?)),
                _ => None,
            };
            if old_tuple.is_some() {
                expect_marker(reader, b"N", "'N'")?;
            }
            Message::Update(Update {
                xid,
                relation_id,
                old_tuple,
                new_tuple: TupleData::read(reader, NEW_TUPLE)?,
            })
        }
        MessageType::Delete => {
            let relation_id = reader.oid("relation id")?;
            let old_tuple = match expect_marker(reader, b"KO", "'K' or 'O'")? {
                b'K' => OldTuple::Key(TupleData::read(reader, OLD_KEY_TUPLE)?),
                _ => OldTuple::Full(TupleData::read(reader, OLD_FULL_TUPLE)?),
            };
            Message::Delete(Delete {
                xid,
                relation_id,
                old_tuple,
            })
        }
        MessageType::Truncate => Message::Truncate(decode_truncate(reader, xid)?),
        MessageType::Message => {
            let flags = reader.u8("flags")?;
            let lsn = reader.lsn("message LSN")?;
            let prefix = reader.string("prefix")?;
            let length = reader.length("content length")?;
            Message::LogicalMessage(LogicalMessage {
                xid,
                flags,
                lsn,
                prefix,
                content: reader.bytes(length, "content")?,
            })
        }
        MessageType::StreamStart => Message::StreamStart(StreamStart {
            xid: reader.xid("xid")?,
            first_segment: reader.u8("first segment flag")? != 0,
        }),
        MessageType::StreamStop => Message::StreamStop,
        MessageType::StreamCommit => Message::StreamCommit(StreamCommit {
            xid: reader.xid("xid")?,
            flags: reader.u8("flags")?,
            commit_lsn: reader.lsn("commit LSN")?,
            end_lsn: reader.lsn("end LSN")?,
            commit_ts: reader.timestamp("commit timestamp")?,
        }),
        MessageType::StreamAbort => {
            let xid = reader.xid("xid")?;
            let subxid = reader.xid("subtransaction xid")?;
            // The abort position exists only with proto 4 + parallel streaming: accept exactly
            // 0 or 16 more bytes (a partial tail is truncated, a longer one trailing).
            let abort = if reader.remaining().is_empty() {
                None
            } else {
                Some(StreamAbortPosition {
                    abort_lsn: reader.lsn("abort LSN")?,
                    abort_ts: reader.timestamp("abort timestamp")?,
                })
            };
            Message::StreamAbort(StreamAbort { xid, subxid, abort })
        }
        MessageType::BeginPrepare => Message::BeginPrepare(BeginPrepare {
            prepare_lsn: reader.lsn("prepare LSN")?,
            end_lsn: reader.lsn("end LSN")?,
            prepare_ts: reader.timestamp("prepare timestamp")?,
            xid: reader.xid("xid")?,
            gid: reader.string("gid")?,
        }),
        MessageType::Prepare => Message::Prepare(decode_prepare(reader)?),
        MessageType::StreamPrepare => Message::StreamPrepare(decode_prepare(reader)?),
        MessageType::CommitPrepared => Message::CommitPrepared(CommitPrepared {
            flags: reader.u8("flags")?,
            commit_lsn: reader.lsn("commit LSN")?,
            end_lsn: reader.lsn("end LSN")?,
            commit_ts: reader.timestamp("commit timestamp")?,
            xid: reader.xid("xid")?,
            gid: reader.string("gid")?,
        }),
        MessageType::RollbackPrepared => Message::RollbackPrepared(RollbackPrepared {
            flags: reader.u8("flags")?,
            prepare_end_lsn: reader.lsn("prepare end LSN")?,
            rollback_end_lsn: reader.lsn("rollback end LSN")?,
            prepare_ts: reader.timestamp("prepare timestamp")?,
            rollback_ts: reader.timestamp("rollback timestamp")?,
            xid: reader.xid("xid")?,
            gid: reader.string("gid")?,
        }),
    };
    reader.finish()?;
    Ok(message)
}

/// Reads one byte that must be one of `allowed`.
fn expect_marker(
    reader: &mut Reader<'_>,
    allowed: &'static [u8],
    expected: &'static str,
) -> Result<u8, PgOutputError> {
    let offset = reader.offset();
    let marker = reader.u8("tuple marker")?;
    if allowed.contains(&marker) {
        Ok(marker)
    } else {
        Err(PgOutputError::UnexpectedTupleMarker {
            message: reader.message(),
            offset,
            expected,
            found: marker,
        })
    }
}

/// Bytes every relation column needs at least: flags, an empty name's NUL, type OID, typmod.
const MIN_RELATION_COLUMN_BYTES: usize = 1 + 1 + 4 + 4;

fn decode_relation(reader: &mut Reader<'_>, xid: Option<Xid>) -> Result<Relation, PgOutputError> {
    let relation_id = reader.oid("relation id")?;
    let namespace = reader.string("namespace")?;
    let name = reader.string("relation name")?;
    let identity_offset = reader.offset();
    let identity_byte = reader.u8("replica identity")?;
    let replica_identity =
        ReplicaIdentity::from_byte(identity_byte).ok_or(PgOutputError::InvalidReplicaIdentity {
            message: reader.message(),
            offset: identity_offset,
            found: identity_byte,
        })?;
    let count_offset = reader.offset();
    let column_count = reader.i16("column count")?;
    let column_count =
        usize::try_from(column_count).map_err(|_| PgOutputError::NegativeLength {
            message: reader.message(),
            field: "column count",
            offset: count_offset,
            value: i32::from(column_count),
        })?;
    // Never reserve more than the message could hold.
    let capacity = column_count.min(reader.remaining().len() / MIN_RELATION_COLUMN_BYTES);
    let mut columns = Vec::with_capacity(capacity);
    for _ in 0..column_count {
        columns.push(RelationColumn {
            flags: reader.u8("column flags")?,
            name: reader.string("column name")?,
            type_oid: reader.oid("column type OID")?,
            type_modifier: reader.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        xid,
        relation_id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn decode_truncate(reader: &mut Reader<'_>, xid: Option<Xid>) -> Result<Truncate, PgOutputError> {
    let relation_count = reader.length("relation count")?;
    let options = reader.u8("options")?;
    let needed = relation_count.saturating_mul(4);
    if reader.remaining().len() < needed {
        return Err(reader.truncated("relation ids", needed));
    }
    let mut relation_ids = Vec::with_capacity(relation_count);
    for _ in 0..relation_count {
        relation_ids.push(reader.oid("relation id")?);
    }
    Ok(Truncate {
        xid,
        options,
        relation_ids,
    })
}

fn decode_prepare(reader: &mut Reader<'_>) -> Result<Prepare, PgOutputError> {
    Ok(Prepare {
        flags: reader.u8("flags")?,
        prepare_lsn: reader.lsn("prepare LSN")?,
        end_lsn: reader.lsn("end LSN")?,
        prepare_ts: reader.timestamp("prepare timestamp")?,
        xid: reader.xid("xid")?,
        gid: reader.string("gid")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::pgoutput::test_messages::WireMessage;
    use crate::postgres::pgoutput::TupleValueRef;

    fn decode(message: WireMessage, in_stream_block: bool) -> Result<Message, PgOutputError> {
        decode_message(message.build(), in_stream_block)
    }

    fn text_values(tuple: &TupleData) -> Vec<Option<String>> {
        tuple
            .raw_values()
            .map(|value| match value {
                TupleValueRef::Text(text) => Some(String::from_utf8(text.to_vec()).unwrap()),
                TupleValueRef::Null => None,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn owned(columns: &[Option<&str>]) -> Vec<Option<String>> {
        columns.iter().map(|c| c.map(str::to_owned)).collect()
    }

    #[test]
    fn begin_and_commit() {
        let begin = WireMessage::new(b'B').u64(0x1_0000_0020).i64(-5).u32(731);
        assert_eq!(
            decode(begin, false),
            Ok(Message::Begin(Begin {
                final_lsn: Lsn(0x1_0000_0020),
                commit_ts: PgTimestamp(-5),
                xid: Xid(731),
            }))
        );
        let commit = WireMessage::new(b'C').u8(0).u64(10).u64(20).i64(30);
        assert_eq!(
            decode(commit, false),
            Ok(Message::Commit(Commit {
                flags: 0,
                commit_lsn: Lsn(10),
                end_lsn: Lsn(20),
                commit_ts: PgTimestamp(30),
            }))
        );
    }

    #[test]
    fn origin() {
        let Ok(Message::Origin(origin)) =
            decode(WireMessage::new(b'O').u64(7).str("sub_node"), false)
        else {
            panic!()
        };
        assert_eq!(origin.origin_commit_lsn, Lsn(7));
        assert_eq!(origin.origin_name, "sub_node");
    }

    #[test]
    fn relation_with_and_without_xid() {
        for xid in [None, Some(731)] {
            let message = WireMessage::new(b'R')
                .maybe_xid(xid)
                .u32(16_384)
                .str("")
                .str("orders")
                .u8(b'f')
                .i16(2)
                .u8(1)
                .str("id")
                .u32(20)
                .i32(-1)
                .u8(0)
                .str("prix")
                .u32(1700)
                .i32(655_366);
            let Ok(Message::Relation(relation)) = decode(message, xid.is_some()) else {
                panic!()
            };
            assert_eq!(relation.xid, xid.map(Xid));
            assert_eq!(relation.relation_id, Oid(16_384));
            assert_eq!(relation.namespace, "");
            assert_eq!(relation.name, "orders");
            assert_eq!(relation.replica_identity, ReplicaIdentity::Full);
            assert_eq!(relation.columns.len(), 2);
            assert!(relation.columns[0].is_key());
            assert!(!relation.columns[1].is_key());
            assert_eq!(relation.columns[1].name, "prix");
            assert_eq!(relation.columns[1].type_oid, Oid(1700));
            assert_eq!(relation.columns[1].type_modifier, 655_366);
        }
    }

    #[test]
    fn type_message_with_and_without_xid() {
        for xid in [None, Some(9)] {
            let message = WireMessage::new(b'Y')
                .maybe_xid(xid)
                .u32(16_390)
                .str("public")
                .str("mood");
            assert_eq!(
                decode(message, xid.is_some()),
                Ok(Message::Type(TypeMessage {
                    xid: xid.map(Xid),
                    type_oid: Oid(16_390),
                    namespace: PgStr::from_utf8(Bytes::from_static(b"public")).unwrap(),
                    name: PgStr::from_utf8(Bytes::from_static(b"mood")).unwrap(),
                }))
            );
        }
    }

    #[test]
    fn insert_with_and_without_xid() {
        let row = [Some("1"), None, Some("x y")];
        for xid in [None, Some(42)] {
            let message = WireMessage::new(b'I')
                .maybe_xid(xid)
                .u32(5)
                .u8(b'N')
                .text_tuple(&row);
            let Ok(Message::Insert(insert)) = decode(message, xid.is_some()) else {
                panic!()
            };
            assert_eq!(insert.xid, xid.map(Xid));
            assert_eq!(insert.relation_id, Oid(5));
            assert_eq!(text_values(&insert.new_tuple), owned(&row));
        }
    }

    #[test]
    fn update_variants_with_and_without_xid() {
        let key = [Some("1"), None];
        let old = [Some("1"), Some("old")];
        let new = [Some("2"), Some("new")];
        for xid in [None, Some(42)] {
            let start = || WireMessage::new(b'U').maybe_xid(xid).u32(5);
            let in_block = xid.is_some();

            let Ok(Message::Update(only_new)) = decode(start().u8(b'N').text_tuple(&new), in_block)
            else {
                panic!()
            };
            assert_eq!(only_new.xid, xid.map(Xid));
            assert_eq!(only_new.old_tuple, None);
            assert_eq!(text_values(&only_new.new_tuple), owned(&new));

            let message = start().u8(b'K').text_tuple(&key).u8(b'N').text_tuple(&new);
            let Ok(Message::Update(key_change)) = decode(message, in_block) else {
                panic!()
            };
            let Some(OldTuple::Key(old_key)) = &key_change.old_tuple else {
                panic!()
            };
            assert_eq!(text_values(old_key), owned(&key));
            assert_eq!(text_values(&key_change.new_tuple), owned(&new));

            let message = start().u8(b'O').text_tuple(&old).u8(b'N').text_tuple(&new);
            let Ok(Message::Update(full)) = decode(message, in_block) else {
                panic!()
            };
            let Some(OldTuple::Full(old_row)) = &full.old_tuple else {
                panic!()
            };
            assert_eq!(text_values(old_row), owned(&old));
        }
    }

    #[test]
    fn update_with_unchanged_toast() {
        let message = WireMessage::new(b'U')
            .u32(5)
            .u8(b'N')
            .raw(b"\x00\x03t\x00\x00\x00\x011t\x00\x00\x00\x01bu");
        let Ok(Message::Update(update)) = decode(message, false) else {
            panic!()
        };
        let values: Vec<_> = update.new_tuple.raw_values().collect();
        assert_eq!(
            values,
            [
                TupleValueRef::Text(b"1"),
                TupleValueRef::Text(b"b"),
                TupleValueRef::UnchangedToast
            ]
        );
    }

    #[test]
    fn delete_variants_with_and_without_xid() {
        for xid in [None, Some(42)] {
            let start = || WireMessage::new(b'D').maybe_xid(xid).u32(5);
            let Ok(Message::Delete(by_key)) = decode(
                start().u8(b'K').text_tuple(&[Some("1"), None]),
                xid.is_some(),
            ) else {
                panic!()
            };
            assert_eq!(by_key.xid, xid.map(Xid));
            assert!(matches!(by_key.old_tuple, OldTuple::Key(_)));
            let Ok(Message::Delete(full)) = decode(
                start().u8(b'O').text_tuple(&[Some("1"), Some("x")]),
                xid.is_some(),
            ) else {
                panic!()
            };
            assert_eq!(
                text_values(full.old_tuple.tuple()),
                owned(&[Some("1"), Some("x")])
            );
        }
    }

    #[test]
    fn truncate_with_and_without_xid() {
        for xid in [None, Some(42)] {
            let message = WireMessage::new(b'T')
                .maybe_xid(xid)
                .i32(2)
                .u8(3)
                .u32(10)
                .u32(11);
            let Ok(Message::Truncate(truncate)) = decode(message, xid.is_some()) else {
                panic!()
            };
            assert_eq!(truncate.xid, xid.map(Xid));
            assert_eq!(truncate.relation_ids, [Oid(10), Oid(11)]);
            assert!(truncate.cascade() && truncate.restart_identity());
        }
        let empty = WireMessage::new(b'T').i32(0).u8(0);
        assert!(
            matches!(decode(empty, false), Ok(Message::Truncate(t)) if t.relation_ids.is_empty())
        );
    }

    #[test]
    fn logical_message_with_and_without_xid() {
        for xid in [None, Some(42)] {
            let message = WireMessage::new(b'M')
                .maybe_xid(xid)
                .u8(1)
                .u64(0x50)
                .str("heartbeat")
                .i32(4)
                .raw(b"\x00\xffok");
            let Ok(Message::LogicalMessage(logical)) = decode(message, xid.is_some()) else {
                panic!()
            };
            assert_eq!(logical.xid, xid.map(Xid));
            assert!(logical.is_transactional());
            assert_eq!(logical.lsn, Lsn(0x50));
            assert_eq!(logical.prefix, "heartbeat");
            assert_eq!(&logical.content[..], b"\x00\xffok");
        }
    }

    #[test]
    fn stream_messages() {
        assert_eq!(
            decode(WireMessage::new(b'S').u32(731).u8(0), false),
            Ok(Message::StreamStart(StreamStart {
                xid: Xid(731),
                first_segment: false
            }))
        );
        assert_eq!(
            decode(WireMessage::new(b'E'), true),
            Ok(Message::StreamStop)
        );
        assert_eq!(
            decode(
                WireMessage::new(b'c').u32(731).u8(0).u64(1).u64(2).i64(3),
                false
            ),
            Ok(Message::StreamCommit(StreamCommit {
                xid: Xid(731),
                flags: 0,
                commit_lsn: Lsn(1),
                end_lsn: Lsn(2),
                commit_ts: PgTimestamp(3),
            }))
        );
        let Ok(Message::StreamAbort(sub)) = decode(WireMessage::new(b'A').u32(731).u32(732), false)
        else {
            panic!()
        };
        assert_eq!(
            (sub.subxid, sub.abort, sub.aborts_whole_transaction()),
            (Xid(732), None, false)
        );
        let parallel = WireMessage::new(b'A').u32(731).u32(731).u64(9).i64(10);
        let Ok(Message::StreamAbort(whole)) = decode(parallel, false) else {
            panic!()
        };
        assert!(whole.aborts_whole_transaction());
        assert_eq!(
            whole.abort,
            Some(StreamAbortPosition {
                abort_lsn: Lsn(9),
                abort_ts: PgTimestamp(10)
            })
        );
    }

    #[test]
    fn stream_abort_accepts_only_zero_or_sixteen_extra_bytes() {
        for extra in [1usize, 8, 15, 17, 24] {
            let message = WireMessage::new(b'A').u32(1).u32(1).raw(&vec![0; extra]);
            assert!(
                decode(message, false).is_err(),
                "{extra} extra bytes accepted"
            );
        }
    }

    #[test]
    fn two_phase_messages() {
        let gid = || PgStr::from_utf8(Bytes::from_static(b"gid-1")).unwrap();
        assert_eq!(
            decode(
                WireMessage::new(b'b')
                    .u64(1)
                    .u64(2)
                    .i64(3)
                    .u32(4)
                    .str("gid-1"),
                false
            ),
            Ok(Message::BeginPrepare(BeginPrepare {
                prepare_lsn: Lsn(1),
                end_lsn: Lsn(2),
                prepare_ts: PgTimestamp(3),
                xid: Xid(4),
                gid: gid(),
            }))
        );
        let prepare = Prepare {
            flags: 0,
            prepare_lsn: Lsn(1),
            end_lsn: Lsn(2),
            prepare_ts: PgTimestamp(3),
            xid: Xid(4),
            gid: gid(),
        };
        let prepare_bytes = |type_byte| {
            WireMessage::new(type_byte)
                .u8(0)
                .u64(1)
                .u64(2)
                .i64(3)
                .u32(4)
                .str("gid-1")
        };
        assert_eq!(
            decode(prepare_bytes(b'P'), false),
            Ok(Message::Prepare(prepare.clone()))
        );
        assert_eq!(
            decode(prepare_bytes(b'p'), false),
            Ok(Message::StreamPrepare(prepare))
        );
        assert_eq!(
            decode(
                WireMessage::new(b'K')
                    .u8(0)
                    .u64(5)
                    .u64(6)
                    .i64(7)
                    .u32(4)
                    .str("gid-1"),
                false
            ),
            Ok(Message::CommitPrepared(CommitPrepared {
                flags: 0,
                commit_lsn: Lsn(5),
                end_lsn: Lsn(6),
                commit_ts: PgTimestamp(7),
                xid: Xid(4),
                gid: gid(),
            }))
        );
        assert_eq!(
            decode(
                WireMessage::new(b'r')
                    .u8(0)
                    .u64(5)
                    .u64(6)
                    .i64(7)
                    .i64(8)
                    .u32(4)
                    .str("gid-1"),
                false
            ),
            Ok(Message::RollbackPrepared(RollbackPrepared {
                flags: 0,
                prepare_end_lsn: Lsn(5),
                rollback_end_lsn: Lsn(6),
                prepare_ts: PgTimestamp(7),
                rollback_ts: PgTimestamp(8),
                xid: Xid(4),
                gid: gid(),
            }))
        );
    }

    #[test]
    fn errors_name_message_field_and_offset() {
        let error = |message: WireMessage, in_stream_block| {
            decode(message, in_stream_block).unwrap_err().to_string()
        };
        assert_eq!(
            decode_message(Bytes::new(), false),
            Err(PgOutputError::Empty)
        );
        assert_eq!(
            error(WireMessage::new(b'Z'), false),
            "unknown pgoutput message type 0x5a (Z)"
        );
        assert_eq!(
            error(WireMessage::new(b'I'), false),
            "truncated Insert message: expected 4 bytes for relation id at offset 1, 0 left"
        );
        assert_eq!(
            error(WireMessage::new(b'I').u8(1), true),
            "truncated Insert message: expected 4 bytes for xid at offset 1, 1 left"
        );
        assert_eq!(
            error(WireMessage::new(b'I').u32(1).u8(b'X'), false),
            "invalid tuple marker 0x58 in Insert message at offset 5: expected 'N'"
        );
        assert_eq!(
            error(
                WireMessage::new(b'U')
                    .u32(1)
                    .u8(b'K')
                    .text_tuple(&[])
                    .u8(b'K'),
                false
            ),
            "invalid tuple marker 0x4b in Update message at offset 8: expected 'N'"
        );
        assert_eq!(
            error(
                WireMessage::new(b'D').u32(1).u8(b'N').text_tuple(&[]),
                false
            ),
            "invalid tuple marker 0x4e in Delete message at offset 5: expected 'K' or 'O'"
        );
        assert_eq!(
            error(
                WireMessage::new(b'D').u32(1).u8(b'K').raw(b"\x00\x01z"),
                false
            ),
            "invalid tuple column kind 0x7a for column 0 of old key tuple in Delete message at \
             offset 8"
        );
        assert_eq!(
            error(WireMessage::new(b'O').u64(1).raw(b"abc"), false),
            "truncated Origin message: string origin name at offset 9 has no NUL terminator"
        );
        assert_eq!(
            error(WireMessage::new(b'O').u64(1).raw(b"\xc3\x28\x00"), false),
            "invalid UTF-8 in origin name of Origin message at offset 9"
        );
        assert_eq!(
            error(
                WireMessage::new(b'R')
                    .u32(1)
                    .str("s")
                    .str("t")
                    .u8(b'x')
                    .i16(0),
                false
            ),
            "invalid replica identity 0x78 in Relation message at offset 9"
        );
        assert_eq!(
            error(
                WireMessage::new(b'R')
                    .u32(1)
                    .str("s")
                    .str("t")
                    .u8(b'd')
                    .i16(-1),
                false
            ),
            "negative column count -1 in Relation message at offset 10"
        );
        assert_eq!(
            error(WireMessage::new(b'T').i32(-1).u8(0), false),
            "negative relation count -1 in Truncate message at offset 1"
        );
        assert_eq!(
            error(WireMessage::new(b'T').i32(1000).u8(0).u32(1), false),
            "truncated Truncate message: expected 4000 bytes for relation ids at offset 6, 4 left"
        );
        assert_eq!(
            error(WireMessage::new(b'M').u8(0).u64(0).str("p").i32(-3), false),
            "negative content length -3 in Message message at offset 12"
        );
        assert_eq!(
            error(WireMessage::new(b'E').u8(0), true),
            "1 trailing bytes after Stream Stop message at offset 1"
        );
        assert_eq!(
            error(WireMessage::new(b'B').u64(1).i64(2).u32(3).u8(0), false),
            "1 trailing bytes after Begin message at offset 21"
        );
    }

    #[test]
    fn message_types_round_trip_their_bytes() {
        for byte in 0..=u8::MAX {
            if let Some(message_type) = MessageType::from_byte(byte) {
                assert_eq!(message_type.as_byte(), byte);
                assert!(!message_type.name().is_empty());
            }
        }
    }
}
