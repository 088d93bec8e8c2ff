//! Stream Load bodies: a JSON array of row objects (`strip_outer_array`), each with `__op`
//! (0 upsert, 1 delete) so one load carries upserts and deletes in commit order.
//!
//! Values follow the type mapping in README ("Type mapping"): what StarRocks can hold is written
//! straight from the decoded [`Value`] (text slices, exact numeric digits, raw JSON), and the few
//! lossy conventions live here and nowhere else — NaN/±Infinity become NULL, dates and
//! timestamps outside StarRocks' 0000-01-01..9999-12-31 range are clamped to its ends,
//! timestamptz is written as its UTC wall time. The writer reuses one buffer across batches.

use std::io::Write as _;

use bytes::Bytes;

use super::config::Compression;
use crate::postgres::value::{
    write_json, write_json_array, CivilDateTime, Date, Float, Numeric, Timestamp, Value,
};

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
                Date::Civil(civil) => {
                    let _ = write!(out, "{:04}-{:02}-{:02}", civil.year, civil.month, civil.day);
                }
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

/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, StarRocks' DATETIME literal.
fn write_datetime(civil: &CivilDateTime, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        civil.date.year, civil.date.month, civil.date.day, civil.hour, civil.minute, civil.second
    );
    if civil.microsecond > 0 {
        let _ = write!(out, ".{:06}", civil.microsecond);
    }
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
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no row was written since the last finish.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::value::ValueKind;
    use crate::postgres::Oid;

    fn encoded(type_oid: u32, text: &str) -> String {
        let value = ValueKind::from_type_oid(Oid(type_oid))
            .decode(text.as_bytes())
            .unwrap();
        let mut out = Vec::new();
        write_value(&value, &mut out);
        String::from_utf8(out).unwrap()
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
}
