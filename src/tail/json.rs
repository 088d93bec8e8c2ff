//! The JSON-lines rendering of `tail`: a [`ChangeConsumer`] that writes one object per change.
//!
//! Relation messages are cached by OID with their names pre-rendered as JSON strings and each
//! column's value kind resolved once, so a row costs no allocation beyond the reused line buffer.
//! A transaction's lines are flushed at its commit, and only then is its end LSN confirmed.

use std::collections::HashMap;
use std::io::Write;

use crate::postgres::pgoutput::{Message, OldTuple, Relation, TupleData};
use crate::postgres::replication::session::ChangeConsumer;
use crate::postgres::row_codec::{ColumnCodec, Field, Image, RowCodec, RowError};
use crate::postgres::value::{write_json, write_json_string, PgTimestamp, ValueError};
use crate::postgres::{Lsn, Oid, Xid};

/// Why tail could not print a change.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("writing to stdout: {0}")]
    Output(#[source] std::io::Error),
    #[error(
        "change at LSN {lsn} names relation {oid}, which was never described by a Relation message"
    )]
    UnknownRelation { lsn: Lsn, oid: Oid },
    #[error("change at LSN {lsn} for `{table}` has {found} columns, its Relation message described {expected}")]
    ColumnCount {
        lsn: Lsn,
        table: String,
        expected: usize,
        found: usize,
    },
    #[error("column `{column}` of `{table}` at LSN {lsn} arrived in binary format, which starwal does not request")]
    BinaryValue {
        lsn: Lsn,
        table: String,
        column: String,
    },
    #[error("column `{column}` of `{table}` at LSN {lsn}: {source}")]
    Value {
        lsn: Lsn,
        table: String,
        column: String,
        #[source]
        source: ValueError,
    },
}

struct RelationInfo {
    qualified_name: String,
    /// `"schema.name"`, pre-rendered.
    json_name: Vec<u8>,
    codec: RowCodec,
}

impl RelationInfo {
    fn from_message(relation: &Relation) -> RelationInfo {
        // An empty namespace means pg_catalog (pgoutput's shorthand).
        let namespace = match relation.namespace.as_str() {
            "" => "pg_catalog",
            namespace => namespace,
        };
        let qualified_name = format!("{namespace}.{}", relation.name.as_str());
        let mut json_name = Vec::new();
        write_json_string(&qualified_name, &mut json_name);
        let codec = RowCodec::new(
            relation
                .columns
                .iter()
                .map(|column| {
                    ColumnCodec::new(column.name.as_str(), column.type_oid, column.is_key())
                })
                .collect(),
        );
        RelationInfo {
            qualified_name,
            json_name,
            codec,
        }
    }
}

impl RelationInfo {
    /// `err` with the table, column name and LSN a reader needs.
    fn error(&self, lsn: Lsn, err: RowError) -> TailError {
        let table = self.qualified_name.clone();
        let column = |index: usize| {
            self.codec
                .column(index)
                .map_or_else(String::new, |column| column.name().to_owned())
        };
        match err {
            RowError::ColumnCount { expected, found } => TailError::ColumnCount {
                lsn,
                table,
                expected,
                found,
            },
            RowError::Binary { column: index } => TailError::BinaryValue {
                lsn,
                table,
                column: column(index),
            },
            RowError::Value {
                column: index,
                source,
            } => TailError::Value {
                lsn,
                table,
                column: column(index),
                source,
            },
        }
    }
}

struct TransactionInfo {
    commit_lsn: Lsn,
    xid: Xid,
    commit_time: PgTimestamp,
}

/// Writes changes as JSON lines to `W`.
pub struct TailConsumer<W: Write> {
    out: W,
    line: Vec<u8>,
    relations: HashMap<Oid, RelationInfo>,
    transaction: Option<TransactionInfo>,
    /// Columns of the current update that carried no value (unchanged TOAST), by index.
    unchanged: Vec<usize>,
}

impl<W: Write> std::fmt::Debug for TailConsumer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailConsumer")
            .field("relations", &self.relations.len())
            .finish()
    }
}

impl<W: Write> TailConsumer<W> {
    /// A consumer writing to `out` (buffered by the caller as it sees fit).
    pub fn new(out: W) -> TailConsumer<W> {
        TailConsumer {
            out,
            line: Vec::with_capacity(4096),
            relations: HashMap::new(),
            transaction: None,
            unchanged: Vec::new(),
        }
    }

    /// The writer, e.g. to inspect what a test captured.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn relation(&self, lsn: Lsn, oid: Oid) -> Result<&RelationInfo, TailError> {
        self.relations
            .get(&oid)
            .ok_or(TailError::UnknownRelation { lsn, oid })
    }

    fn start_line(&mut self, lsn: Lsn, op: &str) {
        use std::io::Write as _;
        self.line.clear();
        let _ = write!(self.line, "{{\"lsn\":\"{lsn}\"");
        if let Some(txn) = &self.transaction {
            let _ = write!(
                self.line,
                ",\"commit_lsn\":\"{}\",\"xid\":{},\"commit_time\":\"",
                txn.commit_lsn, txn.xid
            );
            txn.commit_time.write_iso8601(&mut self.line);
            self.line.push(b'"');
        }
        let _ = write!(self.line, ",\"op\":\"{op}\"");
    }

    fn write_row(
        line: &mut Vec<u8>,
        unchanged: &mut Vec<usize>,
        lsn: Lsn,
        relation: &RelationInfo,
        field: &str,
        tuple: &TupleData,
        image: Image,
    ) -> Result<(), TailError> {
        line.extend_from_slice(b",\"");
        line.extend_from_slice(field.as_bytes());
        line.extend_from_slice(b"\":{");
        let mut first = true;
        relation
            .codec
            .decode_row(tuple.raw_values(), image, |index, column, field| {
                let value = match field {
                    Field::Value(value) => value,
                    Field::UnchangedToast => {
                        unchanged.push(index);
                        return;
                    }
                };
                if !first {
                    line.push(b',');
                }
                first = false;
                line.extend_from_slice(column.json_key());
                write_json(&value, line);
            })
            .map_err(|err| relation.error(lsn, err))?;
        line.push(b'}');
        Ok(())
    }

    fn row_change(
        &mut self,
        lsn: Lsn,
        op: &str,
        oid: Oid,
        old: Option<&OldTuple>,
        new: Option<&TupleData>,
    ) -> Result<(), TailError> {
        self.start_line(lsn, op);
        let relation = self
            .relations
            .get(&oid)
            .ok_or(TailError::UnknownRelation { lsn, oid })?;
        self.line.extend_from_slice(b",\"table\":");
        self.line.extend_from_slice(&relation.json_name);
        self.unchanged.clear();
        if let Some(new) = new {
            Self::write_row(
                &mut self.line,
                &mut self.unchanged,
                lsn,
                relation,
                "new",
                new,
                Image::All,
            )?;
        }
        // Unchanged-TOAST markers only matter in the new image; the old one never has them.
        let mut ignored = Vec::new();
        match old {
            Some(OldTuple::Key(key)) => Self::write_row(
                &mut self.line,
                &mut ignored,
                lsn,
                relation,
                "key",
                key,
                Image::KeyOnly,
            )?,
            Some(OldTuple::Full(old)) => Self::write_row(
                &mut self.line,
                &mut ignored,
                lsn,
                relation,
                "old",
                old,
                Image::All,
            )?,
            None => {}
        }
        if !self.unchanged.is_empty() {
            self.line.extend_from_slice(b",\"unchanged_toast\":[");
            for (i, index) in self.unchanged.iter().enumerate() {
                if i > 0 {
                    self.line.push(b',');
                }
                if let Some(column) = relation.codec.column(*index) {
                    write_json_string(column.name(), &mut self.line);
                }
            }
            self.line.push(b']');
        }
        self.finish_line()
    }

    fn finish_line(&mut self) -> Result<(), TailError> {
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line).map_err(TailError::Output)
    }
}

impl<W: Write> ChangeConsumer for TailConsumer<W> {
    type Error = TailError;

    fn handle(&mut self, lsn: Lsn, message: &Message) -> Result<Option<Lsn>, TailError> {
        match message {
            Message::Relation(relation) => {
                self.relations
                    .insert(relation.relation_id, RelationInfo::from_message(relation));
            }
            Message::Begin(begin) => {
                self.transaction = Some(TransactionInfo {
                    commit_lsn: begin.final_lsn,
                    xid: begin.xid,
                    commit_time: begin.commit_ts,
                });
            }
            Message::Insert(insert) => self.row_change(
                lsn,
                "insert",
                insert.relation_id,
                None,
                Some(&insert.new_tuple),
            )?,
            Message::Update(update) => self.row_change(
                lsn,
                "update",
                update.relation_id,
                update.old_tuple.as_ref(),
                Some(&update.new_tuple),
            )?,
            Message::Delete(delete) => self.row_change(
                lsn,
                "delete",
                delete.relation_id,
                Some(&delete.old_tuple),
                None,
            )?,
            Message::Truncate(truncate) => {
                self.start_line(lsn, "truncate");
                self.line.extend_from_slice(b",\"tables\":[");
                for (i, oid) in truncate.relation_ids.iter().enumerate() {
                    let relation = self.relation(lsn, *oid)?;
                    let name = relation.json_name.clone();
                    if i > 0 {
                        self.line.push(b',');
                    }
                    self.line.extend_from_slice(&name);
                }
                self.line.push(b']');
                self.finish_line()?;
            }
            Message::Commit(commit) => {
                self.transaction = None;
                // Durable for tail means: handed to the OS. Only then is the commit confirmed.
                self.out.flush().map_err(TailError::Output)?;
                return Ok(Some(commit.end_lsn));
            }
            _ => {}
        }
        Ok(None)
    }
}
