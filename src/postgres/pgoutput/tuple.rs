//! TupleData: the column values of an Insert, Update or Delete. A tuple is validated once while
//! its message is decoded — column count, kinds `n u t b`, every length non-negative and within the
//! message — and then kept as one `Bytes` slice plus the column count: no per-column allocation.
//! Iterating yields [`TupleValue`]s (each value a `Bytes::slice`, a reference-count bump) or, with
//! [`TupleData::raw_values`], borrowed [`TupleValueRef`]s for callers that decode in place. It does
//! not interpret values (see `postgres::value`) nor match them to relation columns (the pipeline
//! does). Protects invariant #9: validation is the only place lengths are trusted from the wire;
//! iteration re-reads them with checked access and stops rather than panic.

use bytes::{BufMut, Bytes, BytesMut};

use super::reader::Reader;
use super::PgOutputError;

/// Kind byte of a NULL column.
const KIND_NULL: u8 = b'n';
/// Kind byte of an unchanged TOASTed column (value not sent).
const KIND_UNCHANGED_TOAST: u8 = b'u';
/// Kind byte of a text-format value.
const KIND_TEXT: u8 = b't';
/// Kind byte of a binary-format value.
const KIND_BINARY: u8 = b'b';

/// The names a tuple's fields carry in errors, per role in its message.
#[derive(Debug, Clone, Copy)]
pub(super) struct TupleFields {
    pub(super) tuple: &'static str,
    count: &'static str,
    kind: &'static str,
    length: &'static str,
    value: &'static str,
}

pub(super) const NEW_TUPLE: TupleFields = TupleFields {
    tuple: "new tuple",
    count: "new tuple column count",
    kind: "new tuple column kind",
    length: "new tuple value length",
    value: "new tuple value",
};

pub(super) const OLD_KEY_TUPLE: TupleFields = TupleFields {
    tuple: "old key tuple",
    count: "old key tuple column count",
    kind: "old key tuple column kind",
    length: "old key tuple value length",
    value: "old key tuple value",
};

pub(super) const OLD_FULL_TUPLE: TupleFields = TupleFields {
    tuple: "old tuple",
    count: "old tuple column count",
    kind: "old tuple column kind",
    length: "old tuple value length",
    value: "old tuple value",
};

/// A row image: `column_count` values, validated, backed by a slice of the received message.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TupleData {
    /// The wire bytes of the columns (after the i16 column count).
    columns: Bytes,
    column_count: u16,
}

/// One column of a [`TupleData`], sharing the received buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// SQL NULL (`n`).
    Null,
    /// An unchanged TOASTed value that the server did not send (`u`).
    UnchangedToast,
    /// A text-format value (`t`): what the type's output function printed.
    Text(Bytes),
    /// A binary-format value (`b`), only with the `binary` option.
    Binary(Bytes),
}

/// One column of a [`TupleData`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TupleValueRef<'a> {
    /// SQL NULL (`n`).
    Null,
    /// An unchanged TOASTed value that the server did not send (`u`).
    UnchangedToast,
    /// A text-format value (`t`).
    Text(&'a [u8]),
    /// A binary-format value (`b`).
    Binary(&'a [u8]),
}

impl TupleData {
    /// Reads and validates a TupleData at the reader's position.
    pub(super) fn read(
        reader: &mut Reader<'_>,
        fields: TupleFields,
    ) -> Result<TupleData, PgOutputError> {
        let count_offset = reader.offset();
        let column_count = reader.i16(fields.count)?;
        let column_count =
            u16::try_from(column_count).map_err(|_| PgOutputError::NegativeLength {
                message: reader.message(),
                field: fields.count,
                offset: count_offset,
                value: i32::from(column_count),
            })?;
        let start = reader.offset();
        let bytes = reader.remaining();
        let mut position = 0usize;
        for column in 0..usize::from(column_count) {
            let Some(&kind) = bytes.get(position) else {
                return Err(reader.truncated_at(fields.kind, start + position, 1));
            };
            position += 1;
            match kind {
                KIND_NULL | KIND_UNCHANGED_TOAST => {}
                KIND_TEXT | KIND_BINARY => {
                    let length_offset = start + position;
                    let Some(length) = bytes
                        .get(position..)
                        .and_then(|rest| rest.first_chunk::<4>())
                    else {
                        return Err(reader.truncated_at(fields.length, length_offset, 4));
                    };
                    let length = i32::from_be_bytes(*length);
                    let Ok(length) = usize::try_from(length) else {
                        return Err(PgOutputError::NegativeLength {
                            message: reader.message(),
                            field: fields.length,
                            offset: length_offset,
                            value: length,
                        });
                    };
                    position += 4;
                    if bytes.len() - position < length {
                        return Err(reader.truncated_at(fields.value, start + position, length));
                    }
                    position += length;
                }
                other => {
                    return Err(PgOutputError::InvalidTupleKind {
                        message: reader.message(),
                        field: fields.tuple,
                        column,
                        offset: start + position - 1,
                        kind: other,
                    })
                }
            }
        }
        let columns = reader.bytes(position, fields.value)?;
        Ok(TupleData {
            columns,
            column_count,
        })
    }

    /// Encodes `values` as a tuple (allocates; for tests and synthesized rows, not the hot path).
    /// Panics-free: more than `i16::MAX` columns or a value over `i32::MAX` bytes is cut off.
    pub fn from_values<'v>(values: impl IntoIterator<Item = TupleValueRef<'v>>) -> TupleData {
        let mut columns = BytesMut::new();
        let mut column_count: u16 = 0;
        for value in values {
            if column_count == i16::MAX as u16 {
                break;
            }
            let (kind, payload) = match value {
                TupleValueRef::Null => (KIND_NULL, None),
                TupleValueRef::UnchangedToast => (KIND_UNCHANGED_TOAST, None),
                TupleValueRef::Text(text) => (KIND_TEXT, Some(text)),
                TupleValueRef::Binary(binary) => (KIND_BINARY, Some(binary)),
            };
            columns.put_u8(kind);
            if let Some(payload) = payload {
                let length = payload.len().min(i32::MAX as usize);
                columns.put_i32(length as i32);
                columns.put_slice(payload.get(..length).unwrap_or_default());
            }
            column_count += 1;
        }
        TupleData {
            columns: columns.freeze(),
            column_count,
        }
    }

    /// The same tuple in an allocation of its own. A received tuple shares the read buffer it
    /// arrived in (64 KiB or more), so keeping it keeps that whole buffer alive; a consumer that
    /// holds tuples for long (a batch waiting for its load) detaches them so the memory it holds
    /// is the memory it counts.
    pub fn detached(&self) -> TupleData {
        TupleData {
            columns: Bytes::copy_from_slice(&self.columns),
            column_count: self.column_count,
        }
    }

    /// Number of columns.
    pub fn column_count(&self) -> usize {
        usize::from(self.column_count)
    }

    /// The columns as [`TupleValue`]s (each value a shared slice of the received buffer).
    pub fn values(&self) -> TupleValues<'_> {
        TupleValues {
            columns: &self.columns,
            raw: self.raw_values(),
        }
    }

    /// The columns as borrowed [`TupleValueRef`]s: no reference counting at all, the cheapest
    /// way to decode values in place.
    pub fn raw_values(&self) -> RawTupleValues<'_> {
        RawTupleValues {
            columns: &self.columns,
            position: 0,
            remaining_columns: self.column_count,
        }
    }

    /// The column bytes as received (after the column count), e.g. to keep or hash a row.
    pub fn wire_bytes(&self) -> &Bytes {
        &self.columns
    }
}

impl std::fmt::Debug for TupleData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.raw_values()).finish()
    }
}

impl<'t> IntoIterator for &'t TupleData {
    type Item = TupleValue;
    type IntoIter = TupleValues<'t>;

    fn into_iter(self) -> TupleValues<'t> {
        self.values()
    }
}

/// Iterator over a tuple's columns as borrowed slices; see [`TupleData::raw_values`].
#[derive(Debug, Clone)]
pub struct RawTupleValues<'t> {
    columns: &'t [u8],
    position: usize,
    remaining_columns: u16,
}

impl<'t> RawTupleValues<'t> {
    /// The next column and the byte range of its value within the tuple's columns.
    #[inline]
    fn next_with_range(&mut self) -> Option<(TupleValueRef<'t>, usize, usize)> {
        if self.remaining_columns == 0 {
            return None;
        }
        let kind = *self.columns.get(self.position)?;
        self.position += 1;
        let value = match kind {
            KIND_NULL => (TupleValueRef::Null, 0, 0),
            KIND_UNCHANGED_TOAST => (TupleValueRef::UnchangedToast, 0, 0),
            _ => {
                let length = self.columns.get(self.position..)?.first_chunk::<4>()?;
                let length = usize::try_from(i32::from_be_bytes(*length)).ok()?;
                let start = self.position + 4;
                let end = start.checked_add(length)?;
                let payload = self.columns.get(start..end)?;
                self.position = end;
                let value = if kind == KIND_BINARY {
                    TupleValueRef::Binary(payload)
                } else {
                    TupleValueRef::Text(payload)
                };
                (value, start, end)
            }
        };
        self.remaining_columns -= 1;
        Some(value)
    }
}

impl<'t> Iterator for RawTupleValues<'t> {
    type Item = TupleValueRef<'t>;

    #[inline]
    fn next(&mut self) -> Option<TupleValueRef<'t>> {
        self.next_with_range().map(|(value, _, _)| value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = usize::from(self.remaining_columns);
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for RawTupleValues<'_> {}

/// Iterator over a tuple's columns as shared [`TupleValue`]s; see [`TupleData::values`].
#[derive(Debug, Clone)]
pub struct TupleValues<'t> {
    columns: &'t Bytes,
    raw: RawTupleValues<'t>,
}

impl Iterator for TupleValues<'_> {
    type Item = TupleValue;

    #[inline]
    fn next(&mut self) -> Option<TupleValue> {
        let (value, start, end) = self.raw.next_with_range()?;
        // `start..end` was just read through `get` on these same bytes: in bounds.
        Some(match value {
            TupleValueRef::Null => TupleValue::Null,
            TupleValueRef::UnchangedToast => TupleValue::UnchangedToast,
            TupleValueRef::Text(_) => TupleValue::Text(self.columns.slice(start..end)),
            TupleValueRef::Binary(_) => TupleValue::Binary(self.columns.slice(start..end)),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.raw.size_hint()
    }
}

impl ExactSizeIterator for TupleValues<'_> {}

impl TupleValue {
    /// The borrowed form of this value.
    pub fn as_ref(&self) -> TupleValueRef<'_> {
        match self {
            TupleValue::Null => TupleValueRef::Null,
            TupleValue::UnchangedToast => TupleValueRef::UnchangedToast,
            TupleValue::Text(text) => TupleValueRef::Text(text),
            TupleValue::Binary(binary) => TupleValueRef::Binary(binary),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::pgoutput::MessageType;

    /// `I` type byte + a tuple, read from offset 1.
    fn read(tuple_bytes: &[u8]) -> Result<TupleData, PgOutputError> {
        let mut message = vec![b'I'];
        message.extend_from_slice(tuple_bytes);
        let message = Bytes::from(message);
        let mut reader = Reader::new(&message, MessageType::Insert);
        let tuple = TupleData::read(&mut reader, NEW_TUPLE)?;
        reader.finish()?;
        Ok(tuple)
    }

    #[test]
    fn all_column_kinds() {
        let tuple = read(b"\x00\x04nu\x74\x00\x00\x00\x02hi\x62\x00\x00\x00\x00").unwrap();
        assert_eq!(tuple.column_count(), 4);
        let values: Vec<TupleValue> = tuple.values().collect();
        assert_eq!(
            values,
            [
                TupleValue::Null,
                TupleValue::UnchangedToast,
                TupleValue::Text(Bytes::from_static(b"hi")),
                TupleValue::Binary(Bytes::new()),
            ]
        );
        let raw: Vec<TupleValueRef<'_>> = tuple.raw_values().collect();
        assert_eq!(
            raw,
            values.iter().map(TupleValue::as_ref).collect::<Vec<_>>()
        );
        assert_eq!(tuple.values().len(), 4);
        assert_eq!(
            format!("{tuple:?}"),
            "[Null, UnchangedToast, Text([104, 105]), Binary([])]"
        );
    }

    #[test]
    fn empty_tuple() {
        let tuple = read(b"\x00\x00").unwrap();
        assert_eq!(tuple.column_count(), 0);
        assert_eq!(tuple.values().count(), 0);
    }

    #[test]
    fn malformed_tuples_are_errors() {
        let error = |bytes: &[u8]| read(bytes).unwrap_err().to_string();
        assert_eq!(
            error(b"\xff\xff"),
            "negative new tuple column count -1 in Insert message at offset 1"
        );
        assert_eq!(
            error(b"\x00\x01x"),
            "invalid tuple column kind 0x78 for column 0 of new tuple in Insert message at offset 3"
        );
        assert_eq!(
            error(b"\x00\x02n"),
            "truncated Insert message: expected 1 bytes for new tuple column kind at offset 4, 0 left"
        );
        assert_eq!(
            error(b"\x00\x01t\x00\x00"),
            "truncated Insert message: expected 4 bytes for new tuple value length at offset 4, 2 left"
        );
        assert_eq!(
            error(b"\x00\x01t\xff\xff\xff\xff"),
            "negative new tuple value length -1 in Insert message at offset 4"
        );
        assert_eq!(
            error(b"\x00\x01t\x00\x00\x00\x05abc"),
            "truncated Insert message: expected 5 bytes for new tuple value at offset 8, 3 left"
        );
        assert_eq!(
            error(b"\x00\x01t\x7f\xff\xff\xffabc"),
            "truncated Insert message: expected 2147483647 bytes for new tuple value at offset 8, 3 left"
        );
        assert_eq!(
            error(b"\x00\x01nx"),
            "1 trailing bytes after Insert message at offset 4"
        );
    }

    #[test]
    fn from_values_round_trips() {
        let values = [
            TupleValueRef::Text(b"1"),
            TupleValueRef::Null,
            TupleValueRef::UnchangedToast,
            TupleValueRef::Binary(b"\x00\x01"),
        ];
        let tuple = TupleData::from_values(values);
        assert_eq!(tuple.raw_values().collect::<Vec<_>>(), values);
        let mut wire = vec![0u8, 4];
        wire.extend_from_slice(tuple.wire_bytes());
        assert_eq!(read(&wire).unwrap(), tuple);
    }
}
