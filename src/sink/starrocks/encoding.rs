//! Stream Load bodies and the rows in them. [`BodyWriter`] builds one body: a JSON array of row
//! objects (`strip_outer_array`), each ending in `__op` (0 upsert, 1 delete), so one load carries
//! upserts and deletes in commit order; it keeps its buffer across bodies and compresses as
//! configured. [`TableEncoder`] turns a change, or a row copied by a snapshot, into one such row:
//! the source columns walked and decoded by the column codec `tail` shares
//! (`postgres::row_codec`), then the audit columns ([`AUDIT_COLUMNS`]); a hard delete is the key
//! with `__op` 1, a soft delete an upsert with `_starwal_deleted`, and a row without its
//! unchanged-TOAST columns is a partial update of exactly the columns it carries (invariant 4).
//! A value that does not decode is an [`EncodeError`] naming table, column and LSN, and the half
//! row is rolled back (invariant 6: nothing dropped silently).
//!
//! Values follow the type mapping in README ("Type mapping"): what StarRocks can hold is written
//! straight from the decoded [`Value`] (text slices, exact numeric digits, raw JSON), and the few
//! lossy conventions live here and nowhere else — NaN/±Infinity become NULL, dates and
//! timestamps outside StarRocks' 0000-01-01..9999-12-31 range are clamped to its ends,
//! timestamptz is written as its UTC wall time. Does not own which changes a batch holds or how
//! they collapse (`pipeline::batch`), nor the transport (`stream_load`).

use std::io::Write as _;

use bytes::Bytes;

use super::config::{Compression, DeleteMode};
use super::mapping::AUDIT_COLUMNS;
use crate::postgres::pgoutput::{TupleData, TupleValueRef};
use crate::postgres::row_codec::{json_key, ColumnCodec, Field, Image, RowCodec, RowError};
use crate::postgres::value::{
    write_json, write_json_array, write_u64, CivilDate, CivilDateTime, Date, Float, Fraction,
    Numeric, PgTimestamp, Timestamp, Value, ValueError,
};
use crate::postgres::Lsn;
use crate::schema::TableSchema;

/// The latest DATETIME StarRocks stores; `infinity` and years past 9999 become this.
const MAX_DATETIME: &str = "9999-12-31 23:59:59.999999";
/// The earliest DATETIME; `-infinity` and BC timestamps become this.
const MIN_DATETIME: &str = "0000-01-01 00:00:00";
const MAX_DATE: &str = "9999-12-31";
const MIN_DATE: &str = "0000-01-01";

/// What a row does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOp {
    Upsert,
    Delete,
}

/// Appends `value` as StarRocks expects it in a JSON load.
pub fn write_value(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Float(Float::NaN | Float::Infinity | Float::NegInfinity)
        | Value::Numeric(Numeric::NaN | Numeric::Infinity | Numeric::NegInfinity) => {
            out.extend_from_slice(b"null")
        }
        Value::Date(date) => {
            out.push(b'"');
            match date {
                Date::Civil(civil) if civil.year > 9999 => {
                    out.extend_from_slice(MAX_DATE.as_bytes())
                }
                Date::Civil(civil) if civil.year < 0 => out.extend_from_slice(MIN_DATE.as_bytes()),
                Date::Civil(civil) => civil.write_iso8601(out),
                Date::Infinity => out.extend_from_slice(MAX_DATE.as_bytes()),
                Date::NegInfinity | Date::BeforeCommonEra(_) => {
                    out.extend_from_slice(MIN_DATE.as_bytes())
                }
            }
            out.push(b'"');
        }
        Value::Timestamp(timestamp) | Value::TimestampTz(timestamp) => {
            out.push(b'"');
            match timestamp {
                Timestamp::Civil(civil) if civil.date.year > 9999 => {
                    out.extend_from_slice(MAX_DATETIME.as_bytes())
                }
                Timestamp::Civil(civil) if civil.date.year < 0 => {
                    out.extend_from_slice(MIN_DATETIME.as_bytes())
                }
                Timestamp::Civil(civil) => write_datetime(civil, out),
                Timestamp::Infinity => out.extend_from_slice(MAX_DATETIME.as_bytes()),
                Timestamp::NegInfinity | Timestamp::BeforeCommonEra(_) => {
                    out.extend_from_slice(MIN_DATETIME.as_bytes())
                }
            }
            out.push(b'"');
        }
        Value::Array(array) => write_json_array(array, out, write_value),
        // Everything else has one JSON form, shared with `tail`.
        _ => write_json(value, out),
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, StarRocks' DATETIME literal, the year held to 0000..=9999 and
/// the fraction to six digits whatever the caller passes (`SyncedAt` sizes its buffer on that).
fn write_datetime(civil: &CivilDateTime, out: &mut Vec<u8>) {
    let held = CivilDateTime {
        date: CivilDate {
            year: civil.date.year.clamp(0, 9999),
            ..civil.date
        },
        microsecond: civil.microsecond.min(999_999),
        ..*civil
    };
    held.write_text(out, b' ', Fraction::Micros);
}

/// Builds one Stream Load body. Reuse it: [`BodyWriter::finish`] hands out the bytes and keeps
/// the buffer's capacity for the next batch.
#[derive(Debug, Default)]
pub struct BodyWriter {
    buf: Vec<u8>,
    rows: u64,
    in_row: bool,
    fields_in_row: usize,
}

impl BodyWriter {
    /// An empty writer.
    pub fn new() -> BodyWriter {
        BodyWriter::default()
    }

    /// Rows written since the last [`BodyWriter::finish`].
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes written since the last finish (uncompressed).
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no row was written since the last finish.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Where the writer stands, to [`BodyWriter::rollback`] to if a row cannot be completed.
    pub fn mark(&self) -> (usize, u64) {
        (self.buf.len(), self.rows)
    }

    /// Forgets everything written since `mark`, e.g. a row abandoned half-way.
    pub fn rollback(&mut self, mark: (usize, u64)) {
        self.buf.truncate(mark.0);
        self.rows = mark.1;
        self.in_row = false;
    }

    /// Starts a row.
    pub fn begin_row(&mut self) {
        debug_assert!(!self.in_row, "begin_row inside a row");
        self.buf.push(if self.rows == 0 { b'[' } else { b',' });
        self.buf.push(b'{');
        self.in_row = true;
        self.fields_in_row = 0;
    }

    fn key(&mut self, json_key: &[u8]) {
        if self.fields_in_row > 0 {
            self.buf.push(b',');
        }
        self.fields_in_row += 1;
        self.buf.extend_from_slice(json_key);
    }

    /// Writes one field; `json_key` is the quoted name with its colon (`"id":`), rendered once
    /// per column by the caller.
    pub fn field(&mut self, json_key: &[u8], value: &Value<'_>) {
        self.key(json_key);
        write_value(value, &mut self.buf);
    }

    /// Writes one field whose JSON is already rendered (audit columns).
    pub fn raw_field(&mut self, json_key: &[u8], json: &[u8]) {
        self.key(json_key);
        self.buf.extend_from_slice(json);
    }

    /// Writes one field whose JSON `write` renders straight into the body.
    pub fn field_with(&mut self, json_key: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        self.key(json_key);
        write(&mut self.buf);
    }

    /// Ends the row with its `__op`.
    pub fn end_row(&mut self, op: RowOp) {
        self.key(b"\"__op\":");
        self.buf.push(match op {
            RowOp::Upsert => b'0',
            RowOp::Delete => b'1',
        });
        self.buf.push(b'}');
        self.in_row = false;
        self.rows += 1;
    }

    /// Like [`BodyWriter::finish`], but an uncompressed body takes the buffer itself instead of
    /// a copy: for large bodies built one at a time (snapshot chunks), which are then never
    /// held twice. The writer starts its next body from an empty buffer.
    pub fn take_body(&mut self, compression: Compression) -> std::io::Result<Bytes> {
        if compression != Compression::None {
            return self.finish(compression);
        }
        if self.rows == 0 {
            self.buf.push(b'[');
        }
        self.buf.push(b']');
        self.rows = 0;
        Ok(Bytes::from(std::mem::take(&mut self.buf)))
    }

    /// Closes the array and returns the body, compressed as configured; the writer is empty
    /// afterwards. An empty batch gives `[]`.
    pub fn finish(&mut self, compression: Compression) -> std::io::Result<Bytes> {
        if self.rows == 0 {
            self.buf.push(b'[');
        }
        self.buf.push(b']');
        let body = match compression {
            Compression::None => Bytes::copy_from_slice(&self.buf),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.buf.len() / 4),
                    flate2::Compression::fast(),
                );
                encoder.write_all(&self.buf)?;
                Bytes::from(encoder.finish()?)
            }
            Compression::Lz4 => {
                let mut encoder =
                    lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(self.buf.len() / 3));
                encoder.write_all(&self.buf)?;
                Bytes::from(encoder.finish().map_err(std::io::Error::other)?)
            }
        };
        self.buf.clear();
        self.rows = 0;
        Ok(body)
    }
}

/// What happened at the source, for the `_starwal_op` audit column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceOp {
    Insert,
    Update,
    Delete,
    /// A row copied by a snapshot (initial copy or resync).
    Snapshot,
}

impl SourceOp {
    fn json(self) -> &'static [u8] {
        match self {
            SourceOp::Insert => b"\"insert\"",
            SourceOp::Update => b"\"update\"",
            SourceOp::Delete => b"\"delete\"",
            SourceOp::Snapshot => b"\"snapshot\"",
        }
    }
}

/// The audit values of one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audit {
    pub op: SourceOp,
    /// The commit LSN of the change (`_starwal_lsn`).
    pub lsn: Lsn,
    /// When starwal wrote the row (`_starwal_synced_at`, UTC).
    pub synced_at: SyncedAt,
}

/// `_starwal_synced_at` rendered once as its JSON string (`"YYYY-MM-DD HH:MM:SS[.ffffff]"`):
/// every row of a batch or copy load carries the same time, and rendering it per row was 5–7 %
/// of the agent's CPU in a profile of a 1M-row copy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SyncedAt {
    json: [u8; SyncedAt::MAX_LEN],
    len: u8,
}

impl SyncedAt {
    /// Two quotes around the longest datetime text.
    const MAX_LEN: usize = MAX_DATETIME.len() + 2;

    /// The time `at` (UTC); out of StarRocks' range it is the largest DATETIME.
    pub fn new(at: PgTimestamp) -> SyncedAt {
        let mut text = Vec::with_capacity(SyncedAt::MAX_LEN);
        text.push(b'"');
        match at.to_civil() {
            Some(civil) => write_datetime(&civil, &mut text),
            None => text.extend_from_slice(MAX_DATETIME.as_bytes()),
        }
        text.push(b'"');
        let mut json = [0u8; SyncedAt::MAX_LEN];
        // `write_datetime` writes at most `MAX_DATETIME.len()` bytes (year capped at 9999).
        let len = text.len().min(SyncedAt::MAX_LEN);
        json[..len].copy_from_slice(&text[..len]);
        SyncedAt {
            json,
            len: len as u8,
        }
    }

    /// The current time.
    pub fn now() -> SyncedAt {
        SyncedAt::new(PgTimestamp::now())
    }

    /// The JSON string, quotes included.
    pub fn json(&self) -> &[u8] {
        &self.json[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for SyncedAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.json()))
    }
}

/// The row image a change carries.
#[derive(Debug, Clone, Copy)]
pub enum ChangeRow<'a> {
    /// An insert's or update's new row (unchanged TOAST columns absent).
    New(&'a TupleData),
    /// A delete with the old key only (REPLICA IDENTITY DEFAULT/INDEX).
    DeletedKey(&'a TupleData),
    /// A delete with the whole old row (REPLICA IDENTITY FULL).
    DeletedRow(&'a TupleData),
}

/// The source columns a written row carries: all of them, or a subset, which makes it a partial
/// update whose batch must share exactly this set (invariant 4). Reused across rows: no
/// allocation once sized.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColumnSet {
    words: Vec<u64>,
    len: usize,
}

impl ColumnSet {
    fn reset(&mut self, len: usize) {
        self.len = len;
        self.words.clear();
        self.words.resize(len.div_ceil(64), 0);
    }

    fn insert(&mut self, index: usize) {
        if let Some(word) = self.words.get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
    }

    /// Whether source column `index` is present.
    pub fn contains(&self, index: usize) -> bool {
        self.words
            .get(index / 64)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    /// Whether every source column is present (a full row, not a partial update).
    pub fn is_full(&self) -> bool {
        (0..self.len).all(|index| self.contains(index))
    }
}

/// A change that cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("change at LSN {lsn} for `{table}` has {found} columns, the table has {expected}")]
    ColumnCount {
        table: String,
        lsn: Lsn,
        expected: usize,
        found: usize,
    },
    #[error("column `{column}` of `{table}` at LSN {lsn}: {source}")]
    Value {
        table: String,
        column: String,
        lsn: Lsn,
        #[source]
        source: ValueError,
    },
    #[error("encoding a batch of `{table}`: {message}")]
    Io { table: String, message: String },
    #[error("column `{column}` of `{table}` at LSN {lsn} arrived in binary format, which starwal does not request")]
    Binary {
        table: String,
        column: String,
        lsn: Lsn,
    },
}

/// Encodes one table's changes into Stream Load rows: source columns by name, the audit columns,
/// and `__op`. Built once per table schema; names are pre-rendered as JSON keys.
#[derive(Debug)]
pub struct TableEncoder {
    table: String,
    codec: RowCodec,
    /// The audit columns' JSON keys, in [`AUDIT_COLUMNS`] order.
    audit_keys: [Vec<u8>; 4],
    delete_mode: DeleteMode,
}

impl TableEncoder {
    /// An encoder for `schema` (columns in `attnum` order, as tuples arrive).
    pub fn new(schema: &TableSchema, delete_mode: DeleteMode) -> TableEncoder {
        TableEncoder {
            table: schema.to_string(),
            codec: RowCodec::new(
                schema
                    .columns
                    .iter()
                    .map(|column| ColumnCodec::new(&column.name, column.type_oid, column.is_key()))
                    .collect(),
            ),
            audit_keys: AUDIT_COLUMNS.map(json_key),
            delete_mode,
        }
    }

    /// Writes one change as one row and records in `present` which source columns it carries.
    ///
    /// A hard delete writes the key with `__op` 1. A soft delete writes an upsert with
    /// `_starwal_deleted = true`: the whole old row when the stream has it (FULL), else the key
    /// only, as a partial update. Unchanged-TOAST columns are left out (partial update); filling
    /// them from an earlier image is the pipeline's job.
    pub fn write_change(
        &self,
        writer: &mut BodyWriter,
        row: ChangeRow<'_>,
        audit: &Audit,
        present: &mut ColumnSet,
    ) -> Result<(), EncodeError> {
        let (tuple, key_only, deleted) = match row {
            ChangeRow::New(tuple) => (tuple, false, false),
            ChangeRow::DeletedKey(tuple) => (tuple, true, true),
            ChangeRow::DeletedRow(tuple) => (tuple, self.delete_mode == DeleteMode::Hard, true),
        };
        present.reset(self.codec.columns().len());
        let mark = writer.mark();
        writer.begin_row();
        let image = if key_only { Image::KeyOnly } else { Image::All };
        if let Err(err) = self.write_values(writer, tuple.raw_values(), image, audit.lsn, present) {
            // Leave the body as it was: a batch never carries half a row.
            writer.rollback(mark);
            return Err(err);
        }
        self.end_row(writer, audit, deleted);
        Ok(())
    }

    /// Writes one row of a snapshot copy: `values` are the columns' texts in `attnum` order
    /// (`None` = NULL), decoded exactly as the stream's tuples are.
    pub fn write_snapshot_row<'v>(
        &self,
        writer: &mut BodyWriter,
        values: impl ExactSizeIterator<Item = Option<&'v [u8]>>,
        audit: &Audit,
        present: &mut ColumnSet,
    ) -> Result<(), EncodeError> {
        present.reset(self.codec.columns().len());
        let mark = writer.mark();
        writer.begin_row();
        let values = values.map(|value| match value {
            Some(text) => TupleValueRef::Text(text),
            None => TupleValueRef::Null,
        });
        if let Err(err) = self.write_values(writer, values, Image::All, audit.lsn, present) {
            writer.rollback(mark);
            return Err(err);
        }
        self.end_row(writer, audit, false);
        Ok(())
    }

    /// The audit columns and `__op` of a row whose source columns are written.
    fn end_row(&self, writer: &mut BodyWriter, audit: &Audit, deleted: bool) {
        let hard_delete = deleted && self.delete_mode == DeleteMode::Hard;
        if !hard_delete {
            let [op, deleted_key, synced_at, lsn] = &self.audit_keys;
            writer.raw_field(op, audit.op.json());
            writer.raw_field(deleted_key, if deleted { b"true" } else { b"false" });
            writer.raw_field(synced_at, audit.synced_at.json());
            writer.field_with(lsn, |out| write_u64(out, audit.lsn.0));
        }
        writer.end_row(if hard_delete {
            RowOp::Delete
        } else {
            RowOp::Upsert
        });
    }

    fn write_values<'v>(
        &self,
        writer: &mut BodyWriter,
        values: impl ExactSizeIterator<Item = TupleValueRef<'v>>,
        image: Image,
        lsn: Lsn,
        present: &mut ColumnSet,
    ) -> Result<(), EncodeError> {
        self.codec
            .decode_row(values, image, |index, column, field| {
                // An unchanged TOAST column is left out: the row becomes a partial update.
                if let Field::Value(value) = field {
                    present.insert(index);
                    writer.field(column.json_key(), &value);
                }
            })
            .map_err(|err| self.row_error(err, lsn))
    }

    /// `err` with the table, column name and LSN a reader needs.
    fn row_error(&self, err: RowError, lsn: Lsn) -> EncodeError {
        let column = |index: usize| {
            self.codec
                .column(index)
                .map_or_else(String::new, |column| column.name().to_owned())
        };
        match err {
            RowError::ColumnCount { expected, found } => EncodeError::ColumnCount {
                table: self.table.clone(),
                lsn,
                expected,
                found,
            },
            RowError::Binary { column: index } => EncodeError::Binary {
                table: self.table.clone(),
                column: column(index),
                lsn,
            },
            RowError::Value {
                column: index,
                source,
            } => EncodeError::Value {
                table: self.table.clone(),
                column: column(index),
                lsn,
                source,
            },
        }
    }

    /// The group a change's row belongs to, without writing it: every column for a hard delete
    /// (StarRocks only reads its key, so it travels with the full rows), else the columns
    /// [`TableEncoder::write_change`] would write. Rows of one load share one set.
    pub fn load_columns(&self, row: ChangeRow<'_>, present: &mut ColumnSet) {
        let columns = self.codec.columns();
        present.reset(columns.len());
        let (tuple, key_only) = match row {
            ChangeRow::New(tuple) => (tuple, false),
            ChangeRow::DeletedKey(_) | ChangeRow::DeletedRow(_)
                if self.delete_mode == DeleteMode::Hard =>
            {
                (0..columns.len()).for_each(|index| present.insert(index));
                return;
            }
            ChangeRow::DeletedKey(tuple) => (tuple, true),
            ChangeRow::DeletedRow(tuple) => (tuple, false),
        };
        for (index, (column, value)) in columns.iter().zip(tuple.raw_values()).enumerate() {
            let skipped =
                (key_only && !column.is_key()) || matches!(value, TupleValueRef::UnchangedToast);
            if !skipped {
                present.insert(index);
            }
        }
    }

    /// The `columns` header of a partial update carrying `present`: those source columns, the
    /// audit columns and `__op`.
    pub fn partial_columns(&self, present: &ColumnSet) -> Vec<String> {
        let mut names: Vec<String> = self
            .codec
            .columns()
            .iter()
            .enumerate()
            .filter(|(index, _)| present.contains(*index))
            .map(|(_, column)| column.name().to_owned())
            .collect();
        names.extend(AUDIT_COLUMNS.map(String::from));
        names.push("__op".into());
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::value::ValueKind;
    use crate::postgres::Oid;
    use crate::sink::starrocks::mapping::{AUDIT_DELETED, AUDIT_LSN, AUDIT_OP, AUDIT_SYNCED_AT};

    fn encoded(type_oid: u32, text: &str) -> String {
        let value = ValueKind::from_type_oid(Oid(type_oid))
            .decode(text.as_bytes())
            .unwrap();
        let mut out = Vec::new();
        write_value(&value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn datetimes_are_written_zero_padded() {
        let civil = |year, microsecond| CivilDateTime {
            date: crate::postgres::value::CivilDate {
                year,
                month: 3,
                day: 9,
            },
            hour: 4,
            minute: 5,
            second: 6,
            microsecond,
        };
        let text = |c: &CivilDateTime| {
            let mut out = Vec::new();
            write_datetime(c, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(&civil(2024, 0)), "2024-03-09 04:05:06");
        assert_eq!(text(&civil(7, 5)), "0007-03-09 04:05:06.000005");
        assert_eq!(text(&civil(9999, 999_999)), "9999-03-09 04:05:06.999999");
    }

    #[test]
    fn values_follow_the_type_mapping_conventions() {
        assert_eq!(encoded(20, "9007199254740993"), "9007199254740993");
        assert_eq!(encoded(1700, "12.50"), "\"12.50\"");
        assert_eq!(encoded(1700, "NaN"), "null");
        assert_eq!(encoded(701, "Infinity"), "null");
        assert_eq!(encoded(701, "1e+100"), "1e+100");
        assert_eq!(encoded(16, "t"), "true");
        assert_eq!(encoded(25, "a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(encoded(1082, "2026-11-22"), "\"2026-11-22\"");
        assert_eq!(encoded(1082, "infinity"), "\"9999-12-31\"");
        assert_eq!(encoded(1082, "0044-03-15 BC"), "\"0000-01-01\"");
        assert_eq!(
            encoded(1114, "2026-11-22 10:00:00"),
            "\"2026-11-22 10:00:00\""
        );
        assert_eq!(
            encoded(1184, "2026-11-22 10:00:00.123456+02"),
            "\"2026-11-22 08:00:00.123456\""
        );
        assert_eq!(encoded(1184, "-infinity"), "\"0000-01-01 00:00:00\"");
        assert_eq!(encoded(3802, "{\"k\": [1, 2]}"), "{\"k\": [1, 2]}");
        assert_eq!(encoded(1007, "{1,NULL,3}"), "[1,null,3]");
        assert_eq!(encoded(1022, "{1.5,NaN}"), "[1.5,null]");
        assert_eq!(
            encoded(1185, "{\"2026-01-01 00:00:00+00\"}"),
            "[\"2026-01-01 00:00:00\"]"
        );
        assert_eq!(
            encoded(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""
        );
        assert_eq!(encoded(17, "\\x0102"), "\"\\\\x0102\"");
    }

    #[test]
    fn bodies_are_arrays_of_rows_with_op() {
        let mut writer = BodyWriter::new();
        writer.begin_row();
        writer.field(b"\"id\":", &Value::Int(1));
        writer.raw_field(b"\"_starwal_deleted\":", b"false");
        writer.end_row(RowOp::Upsert);
        writer.begin_row();
        writer.field(b"\"id\":", &Value::Int(2));
        writer.end_row(RowOp::Delete);
        assert_eq!(writer.rows(), 2);
        let body = writer.finish(Compression::None).unwrap();
        assert_eq!(
            &body[..],
            br#"[{"id":1,"_starwal_deleted":false,"__op":0},{"id":2,"__op":1}]"#
        );
        assert!(writer.is_empty());
        assert_eq!(&writer.finish(Compression::None).unwrap()[..], b"[]");
    }

    #[test]
    fn compressed_bodies_round_trip() {
        use std::io::Read as _;
        let mut writer = BodyWriter::new();
        for id in 0..100 {
            writer.begin_row();
            writer.field(b"\"id\":", &Value::Int(id));
            writer.end_row(RowOp::Upsert);
        }
        let plain = {
            let mut copy = BodyWriter::new();
            for id in 0..100 {
                copy.begin_row();
                copy.field(b"\"id\":", &Value::Int(id));
                copy.end_row(RowOp::Upsert);
            }
            copy.finish(Compression::None).unwrap()
        };
        let gzip = writer.finish(Compression::Gzip).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain);
        for id in 0..100 {
            writer.begin_row();
            writer.field(b"\"id\":", &Value::Int(id));
            writer.end_row(RowOp::Upsert);
        }
        let lz4 = writer.finish(Compression::Lz4).unwrap();
        let mut out = Vec::new();
        lz4_flex::frame::FrameDecoder::new(&lz4[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain);
    }

    fn schema() -> TableSchema {
        use crate::schema::ColumnSchema;
        let column = |name: &str, oid: u32, key: Option<u16>| ColumnSchema {
            name: name.into(),
            type_oid: Oid(oid),
            type_modifier: -1,
            type_name: String::new(),
            nullable: key.is_none(),
            key_position: key,
        };
        TableSchema {
            schema: "public".into(),
            name: "t".into(),
            columns: vec![
                column("id", 23, Some(0)),
                column("v", 25, None),
                column("big", 25, None),
            ],
        }
    }

    fn tuple(values: &[Option<&str>], unchanged: usize) -> TupleData {
        TupleData::from_values(values.iter().enumerate().map(|(i, v)| match v {
            _ if i == unchanged => TupleValueRef::UnchangedToast,
            Some(text) => TupleValueRef::Text(text.as_bytes()),
            None => TupleValueRef::Null,
        }))
    }

    /// 2026-11-22 10:00:00 UTC.
    const SYNCED_AT: PgTimestamp = PgTimestamp(848_656_800_000_000);

    fn audit() -> Audit {
        Audit {
            op: SourceOp::Update,
            lsn: Lsn(0x16B3748),
            synced_at: SyncedAt::new(SYNCED_AT),
        }
    }

    #[test]
    fn synced_at_and_lsn_render_as_before() {
        assert_eq!(SyncedAt::new(SYNCED_AT).json(), b"\"2026-11-22 10:00:00\"");
        assert_eq!(
            SyncedAt::new(PgTimestamp(SYNCED_AT.0 + 1)).json(),
            b"\"2026-11-22 10:00:00.000001\""
        );
        let beyond = SyncedAt::new(PgTimestamp(i64::MAX));
        assert_eq!(beyond.json(), format!("\"{MAX_DATETIME}\"").as_bytes());
        for value in [0, 7, 10, 23_803_720, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }

    fn encode(mode: DeleteMode, row: ChangeRow<'_>, audit: Audit) -> (String, ColumnSet) {
        let encoder = TableEncoder::new(&schema(), mode);
        let mut writer = BodyWriter::new();
        let mut present = ColumnSet::default();
        encoder
            .write_change(&mut writer, row, &audit, &mut present)
            .unwrap();
        let body = writer.finish(Compression::None).unwrap();
        (String::from_utf8(body.to_vec()).unwrap(), present)
    }

    #[test]
    fn full_rows_carry_the_audit_columns() {
        let new = tuple(&[Some("1"), Some("a"), None], usize::MAX);
        let (body, present) = encode(DeleteMode::Hard, ChangeRow::New(&new), audit());
        assert_eq!(
            body,
            r#"[{"id":1,"v":"a","big":null,"_starwal_op":"update","_starwal_deleted":false,"_starwal_synced_at":"2026-11-22 10:00:00","_starwal_lsn":23803720,"__op":0}]"#
        );
        assert!(present.is_full());
    }

    #[test]
    fn unchanged_toast_makes_a_partial_update() {
        let new = tuple(&[Some("1"), Some("a"), None], 2);
        let (body, present) = encode(DeleteMode::Hard, ChangeRow::New(&new), audit());
        assert!(
            body.starts_with(r#"[{"id":1,"v":"a","_starwal_op""#),
            "{body}"
        );
        assert!(!present.is_full());
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard);
        assert_eq!(
            encoder.partial_columns(&present),
            [
                "id",
                "v",
                AUDIT_OP,
                AUDIT_DELETED,
                AUDIT_SYNCED_AT,
                AUDIT_LSN,
                "__op"
            ]
        );
    }

    #[test]
    fn deletes_follow_the_delete_mode() {
        let key = tuple(&[Some("7"), None, None], usize::MAX);
        let audit = Audit {
            op: SourceOp::Delete,
            ..audit()
        };
        let (hard, _) = encode(DeleteMode::Hard, ChangeRow::DeletedKey(&key), audit);
        assert_eq!(hard, r#"[{"id":7,"__op":1}]"#);
        let (soft, present) = encode(DeleteMode::Soft, ChangeRow::DeletedKey(&key), audit);
        assert!(
            soft.starts_with(r#"[{"id":7,"_starwal_op":"delete","_starwal_deleted":true"#),
            "{soft}"
        );
        assert!(soft.ends_with(r#""__op":0}]"#), "{soft}");
        assert!(
            !present.is_full(),
            "a key-only soft delete is a partial update"
        );
        let full = tuple(&[Some("7"), Some("x"), Some("y")], usize::MAX);
        let (soft_full, present) = encode(DeleteMode::Soft, ChangeRow::DeletedRow(&full), audit);
        assert!(
            soft_full.starts_with(
                r#"[{"id":7,"v":"x","big":"y","_starwal_op":"delete","_starwal_deleted":true"#
            ),
            "{soft_full}"
        );
        assert!(present.is_full());
    }

    #[test]
    fn bad_values_name_table_column_and_lsn() {
        let new = tuple(&[Some("x1"), Some("a"), None], usize::MAX);
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard);
        let mut writer = BodyWriter::new();
        let err = encoder
            .write_change(
                &mut writer,
                ChangeRow::New(&new),
                &audit(),
                &mut ColumnSet::default(),
            )
            .unwrap_err();
        assert!(
            writer.is_empty() && writer.byte_len() == 0,
            "the half row was rolled back"
        );
        assert!(
            err.to_string()
                .starts_with("column `id` of `public.t` at LSN 0/16B3748"),
            "{err}"
        );
        let short = tuple(&[Some("1")], usize::MAX);
        let err = encoder
            .write_change(
                &mut BodyWriter::new(),
                ChangeRow::New(&short),
                &audit(),
                &mut ColumnSet::default(),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                EncodeError::ColumnCount {
                    expected: 3,
                    found: 1,
                    ..
                }
            ),
            "{err}"
        );
    }
}
