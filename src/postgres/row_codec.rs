//! The column codec both JSON writers share: a table's columns as a row writer needs them
//! ([`ColumnCodec`]: name, the name pre-rendered as a JSON key, the value kind resolved once, the
//! key flag) and the walk over one row's raw values ([`RowCodec::decode_row`]), which decodes
//! each value and leaves out what the image does not carry.
//!
//! `starwal tail` writes the decoded values with [`write_json`](crate::postgres::value::write_json),
//! the StarRocks sink with its own conventions; both walk rows here, so the two cannot disagree on
//! which columns a key-only image holds or on how a bad value is reported. Owns no output format
//! and no error context: a [`RowError`] names the column by index, and each caller adds its table
//! and LSN. Protects invariant #9: a wrong column count, a binary value or undecodable text is a
//! [`RowError`], never a panic. Hot path: built once per relation, then no allocation per row.

use crate::postgres::pgoutput::TupleValueRef;
use crate::postgres::value::{write_json_string, Value, ValueError, ValueKind};
use crate::postgres::Oid;

/// One column of a source table, prepared for writing rows.
#[derive(Debug, Clone)]
pub struct ColumnCodec {
    name: String,
    /// `"name":`, rendered once.
    json_key: Vec<u8>,
    kind: ValueKind,
    is_key: bool,
}

impl ColumnCodec {
    /// A column `name` of type `type_oid`; `is_key` when it belongs to the replica identity.
    pub fn new(name: &str, type_oid: Oid, is_key: bool) -> ColumnCodec {
        ColumnCodec {
            name: name.to_owned(),
            json_key: json_key(name),
            kind: ValueKind::from_type_oid(type_oid),
            is_key,
        }
    }

    /// The column name, as the source spells it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as a JSON object key with its colon (`"id":`).
    pub fn json_key(&self) -> &[u8] {
        &self.json_key
    }

    /// Whether the column belongs to the replica identity (a key-only image carries it).
    pub fn is_key(&self) -> bool {
        self.is_key
    }
}

/// `name` as a JSON object key with its colon (`"id":`), to render once and write per row.
pub fn json_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 3);
    write_json_string(name, &mut key);
    key.push(b':');
    key
}

/// Which of a row's columns a writer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// Every column the row carries.
    All,
    /// The replica-identity columns only (a delete's or an update's old key).
    KeyOnly,
}

/// One column of a row, as the walk hands it to the writer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'v> {
    /// The decoded value (`Value::Null` for SQL NULL).
    Value(Value<'v>),
    /// An unchanged TOASTed value the stream did not send: the row does not carry the column.
    UnchangedToast,
}

/// Why a row could not be decoded. Columns are named by index; the caller knows the table.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowError {
    /// The row has `found` values, the table `expected` columns.
    #[error("the row has {found} columns, the table {expected}")]
    ColumnCount { expected: usize, found: usize },
    /// Column `column` arrived in binary format, which starwal never requests.
    #[error("column {column} arrived in binary format")]
    Binary { column: usize },
    /// Column `column`'s text is not a value of its type.
    #[error("column {column}: {source}")]
    Value {
        column: usize,
        #[source]
        source: ValueError,
    },
}

/// A table's columns in `attnum` order, as tuples carry them.
#[derive(Debug, Clone, Default)]
pub struct RowCodec {
    columns: Vec<ColumnCodec>,
}

impl RowCodec {
    /// The codec of a table with `columns` in `attnum` order.
    pub fn new(columns: Vec<ColumnCodec>) -> RowCodec {
        RowCodec { columns }
    }

    /// The columns, in `attnum` order.
    pub fn columns(&self) -> &[ColumnCodec] {
        &self.columns
    }

    /// Column `index`, e.g. to name it in an error.
    pub fn column(&self, index: usize) -> Option<&ColumnCodec> {
        self.columns.get(index)
    }

    /// Decodes one row and hands each column the image carries to `write` with its index, in
    /// column order; a key-only image skips the other columns without looking at them. Stops at
    /// the first error (what `write` already received stays written: callers roll back).
    pub fn decode_row<'v, V>(
        &self,
        values: V,
        image: Image,
        mut write: impl FnMut(usize, &ColumnCodec, Field<'v>),
    ) -> Result<(), RowError>
    where
        V: IntoIterator<Item = TupleValueRef<'v>>,
        V::IntoIter: ExactSizeIterator,
    {
        let values = values.into_iter();
        if values.len() != self.columns.len() {
            return Err(RowError::ColumnCount {
                expected: self.columns.len(),
                found: values.len(),
            });
        }
        for (index, (column, value)) in self.columns.iter().zip(values).enumerate() {
            if image == Image::KeyOnly && !column.is_key {
                continue;
            }
            let field = match value {
                TupleValueRef::UnchangedToast => Field::UnchangedToast,
                TupleValueRef::Null => Field::Value(Value::Null),
                TupleValueRef::Text(text) => {
                    Field::Value(column.kind.decode(text).map_err(|source| RowError::Value {
                        column: index,
                        source,
                    })?)
                }
                // We never ask for `binary`, so a binary value means a confused stream.
                TupleValueRef::Binary(_) => return Err(RowError::Binary { column: index }),
            };
            write(index, column, field);
        }
        Ok(())
    }
}
