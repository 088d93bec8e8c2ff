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
//! Values follow the type mapping in README ("Type mapping"), exactly or not at all (invariant
//! 12): each column's StarRocks type is known ([`ValueTarget`]), and a value that type cannot
//! hold as the source holds it is an [`Unstorable`], which stops the table with an error naming
//! table, column, key and LSN — a numeric with more digits than its DECIMAL keeps (StarRocks
//! would round it, even in strict mode), NaN or ±Infinity into a DECIMAL, a multi-dimensional
//! array into an ARRAY, a date or timestamp outside 0000-01-01..9999-12-31. The documented
//! conventions live here and nowhere else: float NaN/±Infinity are the strings `"NaN"`,
//! `"Infinity"`, `"-Infinity"`, which StarRocks parses into FLOAT/DOUBLE as those values
//! (be/src/formats/json/numeric_column.cpp reads a JSON string with
//! `StringParser::string_to_float`, which accepts `nan` and an `inf` prefix in any case);
//! `infinity`/`-infinity` dates and timestamps become the largest/smallest DATE or DATETIME;
//! BC dates are astronomical years (1 BC is 0000, StarRocks' smallest year); timestamptz is its
//! UTC wall time; array lower bounds are dropped. JSON values are written as the source text:
//! StarRocks parses them into its binary JSON, where whitespace and newlines leave no trace.
//! Does not own which changes a batch holds or how they collapse (`pipeline::batch`), nor the
//! transport (`stream_load`).

use std::io::Write as _;

use bytes::Bytes;

use super::config::{Compression, DeleteMode};
use super::mapping::{
    bounded_numeric, kind_type, value_type, TargetType, TypeMapping, AUDIT_COLUMNS,
};
use crate::postgres::pgoutput::{TupleData, TupleValueRef};
use crate::postgres::row_codec::{json_key, ColumnCodec, Field, Image, RowCodec, RowError};
use crate::postgres::value::{
    quote_for_error, write_json, write_json_string, write_u64, ArrayElement, CivilDate,
    CivilDateTime, Date, Float, Fraction, Numeric, PgTimestamp, ScalarKind, Timestamp, Value,
    ValueError, ValueKind,
};
use crate::postgres::Lsn;
use crate::schema::{ColumnSchema, TableSchema};

/// The latest DATETIME StarRocks stores; `infinity` becomes this.
const MAX_DATETIME: &str = "9999-12-31 23:59:59.999999";
/// The earliest DATETIME; `-infinity` becomes this.
const MIN_DATETIME: &str = "0000-01-01 00:00:00";
const MAX_DATE: &str = "9999-12-31";
const MIN_DATE: &str = "0000-01-01";
/// StarRocks' DATE and DATETIME years (reference §7 "Types").
const STARROCKS_YEARS: std::ops::RangeInclusive<i32> = 0..=9999;

/// What a row does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOp {
    Upsert,
    Delete,
}

/// A value its StarRocks column cannot hold as the source holds it; the table stops rather
/// than store something else (invariant 12). Each names the value as the source printed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unstorable {
    #[error("numeric `{value}` does not fit {target} exactly ({integer_digits} integer and {fraction_digits} fractional digits; StarRocks would round it): set STARWAL_NUMERIC_UNCONSTRAINED=varchar to keep every digit as text")]
    DecimalDigits {
        value: String,
        target: String,
        integer_digits: usize,
        fraction_digits: usize,
    },
    #[error("numeric `{value}` has no {target} value (StarRocks DECIMAL has no NaN or infinity): set STARWAL_NUMERIC_UNCONSTRAINED=varchar to keep it as text")]
    DecimalSpecial { value: &'static str, target: String },
    #[error("`{value}` is a multi-dimensional array, which {target} cannot hold (the column's dimensions are fixed when the table is created)")]
    MultiDimensionalArray { value: String, target: String },
    #[error("{what} `{value}` is outside {target}'s years 0000..9999 (astronomical numbering: 1 BC is 0000)")]
    DateRange {
        what: &'static str,
        value: String,
        target: &'static str,
    },
    #[error("`{value}` does not fit {target}")]
    Mismatch { value: String, target: String },
}

/// How one column's values are written: the StarRocks type the column has, and whether a
/// numeric must be checked against its DECIMAL (only when the source type does not bound it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueTarget {
    data_type: TargetType,
    check_decimal_fit: bool,
}

impl ValueTarget {
    /// The target of a source column under `mapping`. Key restrictions do not matter here: a
    /// key that becomes VARCHAR holds numbers' and floats' text exactly.
    pub fn of_column(column: &ColumnSchema, mapping: TypeMapping) -> ValueTarget {
        let data_type = value_type(column, mapping);
        let data_type = if column.is_key() {
            match data_type {
                TargetType::Decimal { .. } | TargetType::Float | TargetType::Double => {
                    TargetType::Varchar(64)
                }
                other => other,
            }
        } else {
            data_type
        };
        ValueTarget {
            data_type,
            // numeric(p,s) with s ≤ p ≤ 38 cannot fail the check (see `bounded_numeric`).
            check_decimal_fit: bounded_numeric(column).is_none(),
        }
    }

    /// A column of type `kind` without a type modifier, every value checked.
    pub fn of_kind(kind: ValueKind, mapping: TypeMapping) -> ValueTarget {
        ValueTarget::checked(kind_type(kind, mapping))
    }

    /// A column of `data_type` whose values are all checked (a default for an added column).
    pub fn checked(data_type: TargetType) -> ValueTarget {
        ValueTarget {
            data_type,
            check_decimal_fit: true,
        }
    }

    /// The StarRocks type.
    pub fn data_type(&self) -> &TargetType {
        &self.data_type
    }
}

/// Appends `value` as StarRocks expects it in a JSON load into a column of `target`, or says why
/// that column cannot hold it. On an error, `out` may hold part of the value: callers roll back.
pub fn write_value(
    value: &Value<'_>,
    target: &ValueTarget,
    out: &mut Vec<u8>,
) -> Result<(), Unstorable> {
    write_typed(value, &target.data_type, target.check_decimal_fit, out)
}

/// Appends `value` as a CSV field for a column of `target`: the JSON form without its quotes
/// for everything but text and JSON, which are written as they are (no enclose, no escape).
/// `Ok(false)` when the field cannot be carried exactly (what was appended is then meaningless;
/// the row goes to a JSON body): text holding a separator byte, or exactly `\N`, which StarRocks'
/// CSV reader turns into NULL (`NullableConverter::read_string`, after enclose and escape are
/// undone, so no quoting can carry it), or an array (ARRAY tables load JSON: StarRocks' CSV
/// array reader has no escape for a quote inside a string element).
pub fn write_csv_value(
    value: &Value<'_>,
    target: &ValueTarget,
    out: &mut Vec<u8>,
) -> Result<bool, Unstorable> {
    let start = out.len();
    match value {
        Value::Null => out.extend_from_slice(b"\\N"),
        Value::Text(text) | Value::Bytea(text) => {
            text.write_to(out);
            return Ok(csv_safe(out.get(start..).unwrap_or_default()));
        }
        Value::Json(json) => {
            json.write_to(out);
            let written = out.get(start..).unwrap_or_default();
            // A top-level JSON `null` is SQL NULL in a JSON body, where the two look alike; CSV
            // would store a JSON null, so write what the JSON body stores.
            if written.trim_ascii() == b"null" {
                out.truncate(start);
                out.extend_from_slice(b"\\N");
                return Ok(true);
            }
            return Ok(csv_safe(written));
        }
        Value::Array(_) => return Ok(false),
        Value::Date(date) => write_date_text(date, &target.data_type, out)?,
        Value::Timestamp(timestamp) | Value::TimestampTz(timestamp) => {
            write_timestamp_text(timestamp, &target.data_type, out)?
        }
        Value::Float(Float::NaN) => out.extend_from_slice(b"NaN"),
        Value::Float(Float::Infinity) => out.extend_from_slice(b"Infinity"),
        Value::Float(Float::NegInfinity) => out.extend_from_slice(b"-Infinity"),
        Value::Numeric(numeric) => {
            if let TargetType::Decimal { precision, scale } = target.data_type {
                match numeric {
                    Numeric::Finite(digits) if target.check_decimal_fit => {
                        check_decimal(digits, precision, scale, &target.data_type)?
                    }
                    Numeric::Finite(_) => {}
                    _ => {
                        return Err(Unstorable::DecimalSpecial {
                            value: special_name(numeric),
                            target: target.data_type.to_string(),
                        })
                    }
                }
            }
            out.extend_from_slice(match numeric {
                Numeric::Finite(digits) => digits.as_bytes(),
                Numeric::NaN => b"NaN",
                Numeric::Infinity => b"Infinity",
                Numeric::NegInfinity => b"-Infinity",
            });
        }
        // Validated text without a control character.
        Value::Uuid(text) | Value::Time(text) | Value::TimeTz(text) | Value::Interval(text) => {
            out.extend_from_slice(text.as_bytes())
        }
        // Booleans, integers and finite floats: the JSON number or literal is the text.
        Value::Bool(_) | Value::Int(_) | Value::Float(_) => write_json(value, out),
    }
    Ok(true)
}

/// Whether CSV carries `text` exactly: no separator byte, and not the NULL marker.
fn csv_safe(text: &[u8]) -> bool {
    text != b"\\N" && memchr::memchr2(CSV_COLUMN_SEPARATOR, CSV_ROW_DELIMITER, text).is_none()
}

fn write_typed(
    value: &Value<'_>,
    target: &TargetType,
    check_decimal_fit: bool,
    out: &mut Vec<u8>,
) -> Result<(), Unstorable> {
    match (value, target) {
        (Value::Numeric(numeric), TargetType::Decimal { precision, scale }) => {
            let digits = match numeric {
                Numeric::Finite(digits) => digits,
                Numeric::NaN | Numeric::Infinity | Numeric::NegInfinity => {
                    return Err(Unstorable::DecimalSpecial {
                        value: special_name(numeric),
                        target: target.to_string(),
                    })
                }
            };
            if check_decimal_fit {
                check_decimal(digits, *precision, *scale, target)?;
            }
            write_json(value, out);
            Ok(())
        }
        (Value::Date(date), _) => {
            out.push(b'"');
            write_date_text(date, target, out)?;
            out.push(b'"');
            Ok(())
        }
        (Value::Timestamp(timestamp) | Value::TimestampTz(timestamp), _) => {
            out.push(b'"');
            write_timestamp_text(timestamp, target, out)?;
            out.push(b'"');
            Ok(())
        }
        (Value::Array(array), TargetType::Array(element_type)) => {
            out.push(b'[');
            for (index, element) in array.elements().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                match element {
                    Ok(ArrayElement::Null) => out.extend_from_slice(b"null"),
                    Ok(ArrayElement::Value(element)) => {
                        write_typed(&element, element_type, check_decimal_fit, out)?
                    }
                    // Postgres' type says nothing of dimensions, the target's ARRAY<T> fixed
                    // them at setup: a nested array has no exact place in it.
                    Ok(ArrayElement::Nested(_)) => {
                        return Err(Unstorable::MultiDimensionalArray {
                            value: quote_for_error(array.literal().as_bytes()),
                            target: target.to_string(),
                        })
                    }
                    // The literal was validated when decoded and iteration repeats that walk;
                    // should it ever differ, stop rather than guess.
                    Err(_) => {
                        return Err(Unstorable::Mismatch {
                            value: quote_for_error(array.literal().as_bytes()),
                            target: target.to_string(),
                        })
                    }
                }
            }
            out.push(b']');
            Ok(())
        }
        // An array into a non-array column (an array type the mapping does not know is text,
        // so this needs a target that disagrees with the source): never written as something else.
        (Value::Array(array), _) => Err(Unstorable::Mismatch {
            value: quote_for_error(array.literal().as_bytes()),
            target: target.to_string(),
        }),
        // JSON is written as the source text: StarRocks parses it into binary JSON, so
        // whitespace (newlines too, valid inside a JSON body) leaves no trace in the stored value.
        (Value::Json(json), _) => {
            json.write_to(out);
            Ok(())
        }
        // Everything else has one JSON form, shared with `tail`: exact numeric digits into a
        // VARCHAR, `"NaN"`/`"Infinity"`/`"-Infinity"` for floats and for numerics kept as text.
        _ => {
            write_json(value, out);
            Ok(())
        }
    }
}

/// A date as StarRocks' DATE literal, without quotes.
fn write_date_text(date: &Date, target: &TargetType, out: &mut Vec<u8>) -> Result<(), Unstorable> {
    match date {
        Date::Civil(civil) if STARROCKS_YEARS.contains(&civil.year) => civil.write_iso8601(out),
        Date::Civil(civil) => return Err(date_range("date", civil, target)),
        Date::Infinity => out.extend_from_slice(MAX_DATE.as_bytes()),
        Date::NegInfinity => out.extend_from_slice(MIN_DATE.as_bytes()),
    }
    Ok(())
}

/// A timestamp as StarRocks' DATETIME literal, without quotes.
fn write_timestamp_text(
    timestamp: &Timestamp,
    target: &TargetType,
    out: &mut Vec<u8>,
) -> Result<(), Unstorable> {
    match timestamp {
        Timestamp::Civil(civil) if STARROCKS_YEARS.contains(&civil.date.year) => {
            write_datetime(civil, out)
        }
        Timestamp::Civil(civil) => return Err(date_range("timestamp", &civil.date, target)),
        Timestamp::Infinity => out.extend_from_slice(MAX_DATETIME.as_bytes()),
        Timestamp::NegInfinity => out.extend_from_slice(MIN_DATETIME.as_bytes()),
    }
    Ok(())
}

fn special_name(numeric: &Numeric<'_>) -> &'static str {
    match numeric {
        Numeric::NaN => "NaN",
        Numeric::Infinity => "Infinity",
        Numeric::NegInfinity => "-Infinity",
        Numeric::Finite(_) => "",
    }
}

/// Whether `digits` (`-?[0-9]+(.[0-9]+)?`, as Postgres prints a numeric) is exactly a value of
/// DECIMAL(precision, scale): at most `precision - scale` integer digits after leading zeros, and
/// no non-zero digit past `scale` fractional ones (trailing zeros are the same value).
fn check_decimal(
    digits: &str,
    precision: u32,
    scale: u32,
    target: &TargetType,
) -> Result<(), Unstorable> {
    let unsigned = digits.strip_prefix('-').unwrap_or(digits);
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let integer_digits = integer.trim_start_matches('0').len();
    let fraction_digits = fraction.trim_end_matches('0').len();
    let integer_room = precision.saturating_sub(scale) as usize;
    if integer_digits <= integer_room && fraction_digits <= scale as usize {
        return Ok(());
    }
    Err(Unstorable::DecimalDigits {
        value: quote_for_error(digits.as_bytes()),
        target: target.to_string(),
        integer_digits,
        fraction_digits,
    })
}

fn date_range(what: &'static str, date: &CivilDate, target: &TargetType) -> Unstorable {
    let mut text = Vec::new();
    date.write_iso8601(&mut text);
    Unstorable::DateRange {
        what,
        value: String::from_utf8_lossy(&text).into_owned(),
        target: match target {
            TargetType::DateTime => "DATETIME",
            _ => "DATE",
        },
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

/// A body's format. CSV is StarRocks' plain CSV with non-printing separators and no enclose or
/// escape ([`CSV_COLUMN_SEPARATOR`], [`CSV_ROW_DELIMITER`], `\N` for NULL), which StarRocks
/// splits without a state machine; a value it cannot carry exactly sends its row to a JSON body
/// (see [`Written::NeedsJson`]). ARCHITECTURE.md "Decisions" has the measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum BodyFormat {
    /// A JSON array of row objects (`strip_outer_array`).
    #[default]
    Json,
    /// One CSV line per row, fields in the order of the load's `columns` header.
    Csv,
}

/// CSV `column_separator` (ASCII unit separator): never in a number, date or JSON text; a text
/// value holding it goes to a JSON body.
pub const CSV_COLUMN_SEPARATOR: u8 = 0x1f;
/// CSV `row_delimiter` (ASCII record separator), likewise.
pub const CSV_ROW_DELIMITER: u8 = 0x1e;
/// The separators as Stream Load headers spell them.
pub const CSV_COLUMN_SEPARATOR_HEADER: &str = "\\x1f";
pub const CSV_ROW_DELIMITER_HEADER: &str = "\\x1e";

/// The longest `columns` header a CSV load may carry. StarRocks' FE reads request headers
/// with Netty under `http_max_header_size` (32768 bytes by default, all headers together);
/// half of it leaves room for the others and the 307 to the BE.
pub const CSV_COLUMNS_HEADER_MAX: usize = 16 * 1024;

/// The length of a full row's `columns` header (`stream_load::columns_header`: each name in
/// backticks, doubled backticks, commas; the audit columns and `__op`).
fn csv_columns_header_len(schema: &TableSchema) -> usize {
    let quoted = |name: &str| name.len() + name.matches('`').count() + 3;
    schema
        .columns
        .iter()
        .map(|column| quoted(&column.name))
        .chain(AUDIT_COLUMNS.iter().map(|name| quoted(name)))
        .sum::<usize>()
        + "__op".len()
}

/// Whether a row went into the writer it was given.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The row is in the body.
    Row,
    /// A CSV writer met a value CSV cannot carry exactly (text holding a separator byte, or the
    /// text `\N`, which StarRocks reads as NULL whether enclosed or not): nothing was written;
    /// write the row into a JSON body instead.
    NeedsJson,
}

/// Builds one Stream Load body. Reuse it: [`BodyWriter::finish`] hands out the bytes and keeps
/// the buffer's capacity for the next batch.
#[derive(Debug, Default)]
pub struct BodyWriter {
    buf: Vec<u8>,
    rows: u64,
    in_row: bool,
    fields_in_row: usize,
    format: BodyFormat,
    /// A CSV field of the current row could not be written exactly.
    not_csv: bool,
}

impl BodyWriter {
    /// An empty JSON writer.
    pub fn new() -> BodyWriter {
        BodyWriter::default()
    }

    /// An empty writer of `format`.
    pub fn with_format(format: BodyFormat) -> BodyWriter {
        BodyWriter {
            format,
            ..BodyWriter::default()
        }
    }

    /// The format this writer writes.
    pub fn format(&self) -> BodyFormat {
        self.format
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
        self.not_csv = false;
    }

    /// Whether a CSV field of the row being written could not be written exactly (the caller
    /// rolls the row back and writes it as JSON).
    pub fn row_needs_json(&self) -> bool {
        self.not_csv
    }

    /// Starts a row.
    pub fn begin_row(&mut self) {
        debug_assert!(!self.in_row, "begin_row inside a row");
        if self.format == BodyFormat::Json {
            self.buf.push(if self.rows == 0 { b'[' } else { b',' });
            self.buf.push(b'{');
        }
        self.in_row = true;
        self.not_csv = false;
        self.fields_in_row = 0;
    }

    /// The separator before a field and, in JSON, its key.
    fn key(&mut self, json_key: &[u8]) {
        match self.format {
            BodyFormat::Json => {
                if self.fields_in_row > 0 {
                    self.buf.push(b',');
                }
                self.buf.extend_from_slice(json_key);
            }
            BodyFormat::Csv => {
                if self.fields_in_row > 0 {
                    self.buf.push(CSV_COLUMN_SEPARATOR);
                }
            }
        }
        self.fields_in_row += 1;
    }

    /// Writes one field into a column of `target`; `json_key` is the quoted name with its colon
    /// (`"id":`), rendered once per column by the caller (a CSV writer ignores it: fields follow
    /// the load's `columns` order). A value the column cannot hold leaves the row unfinished:
    /// roll back to a [`BodyWriter::mark`].
    pub fn field(
        &mut self,
        json_key: &[u8],
        value: &Value<'_>,
        target: &ValueTarget,
    ) -> Result<(), Unstorable> {
        self.key(json_key);
        match self.format {
            BodyFormat::Json => write_value(value, target, &mut self.buf),
            BodyFormat::Csv => {
                if !write_csv_value(value, target, &mut self.buf)? {
                    self.not_csv = true;
                }
                Ok(())
            }
        }
    }

    /// Writes a NULL field (a CSV hard delete's columns other than the key).
    pub fn null_field(&mut self, json_key: &[u8]) {
        self.key(json_key);
        self.buf.extend_from_slice(match self.format {
            BodyFormat::Json => b"null",
            BodyFormat::Csv => b"\\N",
        });
    }

    /// Writes one field whose JSON is already rendered (audit columns). A CSV writer writes
    /// `json` without its quotes, so it must be a string without escapes, a number or a literal.
    pub fn raw_field(&mut self, json_key: &[u8], json: &[u8]) {
        self.key(json_key);
        let text = match (self.format, json) {
            (BodyFormat::Csv, [b'"', inner @ .., b'"']) => inner,
            (BodyFormat::Csv, b"null") => b"\\N",
            _ => json,
        };
        self.buf.extend_from_slice(text);
    }

    /// Writes one field whose text `write` renders straight into the body (the same in JSON and
    /// CSV: a number).
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
        self.buf.push(match self.format {
            BodyFormat::Json => b'}',
            BodyFormat::Csv => CSV_ROW_DELIMITER,
        });
        self.in_row = false;
        self.rows += 1;
    }

    /// Closes a JSON body's array (a CSV body needs nothing).
    fn close(&mut self) {
        if self.format == BodyFormat::Json {
            if self.rows == 0 {
                self.buf.push(b'[');
            }
            self.buf.push(b']');
        }
    }

    /// Writes the next body into `buffer` (emptied) when this writer holds nothing and has less
    /// room: a buffer whose pages are already mapped, from a body sent before.
    pub fn reuse_buffer(&mut self, mut buffer: Vec<u8>) {
        if self.buf.is_empty() && self.rows == 0 && buffer.capacity() > self.buf.capacity() {
            buffer.clear();
            self.buf = buffer;
        }
    }

    /// Like [`BodyWriter::finish`], but an uncompressed body takes the buffer itself instead of
    /// a copy: for large bodies built one at a time (snapshot chunks), which are then never
    /// held twice. The writer starts its next body from an empty buffer.
    pub fn take_body(&mut self, compression: Compression) -> std::io::Result<Bytes> {
        if compression != Compression::None {
            return self.finish(compression);
        }
        self.close();
        self.rows = 0;
        Ok(Bytes::from(std::mem::take(&mut self.buf)))
    }

    /// Closes the array and returns the body, compressed as configured; the writer is empty
    /// afterwards. An empty JSON batch gives `[]`, an empty CSV one no bytes.
    pub fn finish(&mut self, compression: Compression) -> std::io::Result<Bytes> {
        self.close();
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
    /// A value its StarRocks column cannot hold exactly: the table stops (invariant 12).
    #[error("column `{column}` of `{table}`, key {key}, at LSN {lsn}: {source}")]
    Unstorable {
        table: String,
        column: String,
        /// The row's key as Postgres prints it, `(id)=(7)`.
        key: String,
        lsn: Lsn,
        #[source]
        source: Box<Unstorable>,
    },
}

/// Encodes one table's changes into Stream Load rows: source columns by name, the audit columns,
/// and `__op`. Built once per table schema; names are pre-rendered as JSON keys.
#[derive(Debug)]
pub struct TableEncoder {
    table: String,
    codec: RowCodec,
    /// Each column's StarRocks type, in codec order.
    targets: Vec<ValueTarget>,
    /// The audit columns' JSON keys, in [`AUDIT_COLUMNS`] order.
    audit_keys: [Vec<u8>; 4],
    delete_mode: DeleteMode,
    /// The table's body format: CSV unless a column is an ARRAY.
    format: BodyFormat,
    /// How a snapshot copy writes each column's COPY text into a CSV body, and the column's
    /// value kind, in codec order.
    copy_fields: Vec<(CopyField, ValueKind)>,
}

/// How [`TableEncoder::write_snapshot_csv_row`] writes one column's COPY text: for the kinds
/// whose decoded value the CSV writer prints back as exactly the text Postgres printed, the
/// text itself once checked (a decode and a re-print saved per field); the rest decoded and
/// written as every other value. Anything out of the ordinary sends the whole row through
/// [`TableEncoder::write_snapshot_row`], so every value comes out as it does there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyField {
    /// `int2`, `int4`, `int8`, `oid`, with the type's bounds as text: a canonical decimal
    /// (`0` or `-?[1-9][0-9]*`) within them is what the decoder accepts and what `write_json`
    /// prints back for that integer.
    Integer {
        min: &'static [u8],
        max: &'static [u8],
    },
    /// Text-like kinds: `write_csv_value` writes the text as it is when it is valid UTF-8 (the
    /// decoder's only check) and CSV carries it ([`csv_safe`]).
    Text,
    /// `bool`: Postgres prints `t`/`f`, the CSV field is `true`/`false`.
    Bool,
    /// `date`: `YYYY-MM-DD` of a real calendar day in years 0001..=9999 is its own DATE text.
    Date,
    /// `timestamp` and `timestamptz` (`true`; the session's zone is UTC, so Postgres prints
    /// `+00`): `YYYY-MM-DD HH:MM:SS[.f]` of a real day and time, the fraction padded to the six
    /// digits StarRocks' DATETIME text has, the zone dropped.
    Timestamp(bool),
    /// `numeric`: `-?[0-9]+(.[0-9]+)?` is what the decoder accepts as a finite value and
    /// `write_csv_value` writes as it is, once it fits the column's DECIMAL when that is checked.
    Numeric,
    /// `float4`, `float8`: a JSON number without exponent (`-?(0|[1-9][0-9]*)(.[0-9]+)?`) of at
    /// most 300 integer digits is a finite value the decoder accepts, and `write_json` writes
    /// such a text as it is.
    Float,
    /// Decoded and written with [`write_csv_value`].
    Decoded,
}

impl CopyField {
    fn of(kind: ValueKind) -> CopyField {
        match kind {
            ValueKind::Scalar(ScalarKind::Int2) => CopyField::Integer {
                min: b"-32768",
                max: b"32767",
            },
            ValueKind::Scalar(ScalarKind::Int4) => CopyField::Integer {
                min: b"-2147483648",
                max: b"2147483647",
            },
            ValueKind::Scalar(ScalarKind::Int8) => CopyField::Integer {
                min: b"-9223372036854775808",
                max: b"9223372036854775807",
            },
            ValueKind::Scalar(ScalarKind::Oid) => CopyField::Integer {
                min: b"0",
                max: b"4294967295",
            },
            ValueKind::Scalar(ScalarKind::Text) => CopyField::Text,
            ValueKind::Scalar(ScalarKind::Bool) => CopyField::Bool,
            ValueKind::Scalar(ScalarKind::Date) => CopyField::Date,
            ValueKind::Scalar(ScalarKind::Numeric) => CopyField::Numeric,
            ValueKind::Scalar(ScalarKind::Float4 | ScalarKind::Float8) => CopyField::Float,
            ValueKind::Scalar(ScalarKind::Timestamp) => CopyField::Timestamp(false),
            ValueKind::Scalar(ScalarKind::TimestampTz) => CopyField::Timestamp(true),
            _ => CopyField::Decoded,
        }
    }
}

/// The columns of a row [`TableEncoder::write_copy_fields`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyImage {
    /// Every column.
    All,
    /// The key columns only (a soft delete of a key-only image: a partial update).
    KeyOnly,
    /// The key columns, and NULL (`\N`) in every other (a CSV hard delete).
    KeyWithNulls,
}

/// Whether `text` is an integer as Postgres prints one (`0`, or an optional `-` and digits
/// without a leading zero: so not `+1`, `01`, `-0` or with spaces) in `min..=max` (canonical
/// decimals too, `min` negative or `0`).
fn canonical_integer_within(text: &[u8], min: &[u8], max: &[u8]) -> bool {
    let (digits, bound) = match text.strip_prefix(b"-") {
        Some(digits) => (digits, min.strip_prefix(b"-")),
        None => (text, Some(max)),
    };
    let canonical = match digits {
        [] => false,
        [b'0'] => digits.len() == text.len(),
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    // Canonical decimals of one sign compare as their length, then their digits.
    canonical && bound.is_some_and(|bound| (digits.len(), digits) <= (bound.len(), bound))
}

/// Whether `text` is a finite numeric as the decoder accepts one (`parse_numeric`): an optional
/// `-`, digits, and optionally `.` and digits.
fn finite_decimal(text: &[u8]) -> bool {
    let unsigned = text.strip_prefix(b"-").unwrap_or(text);
    let (integer, fraction) = match memchr::memchr(b'.', unsigned) {
        Some(point) => (&unsigned[..point], Some(&unsigned[point + 1..])),
        None => (unsigned, None),
    };
    let digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    digits(integer) && fraction.is_none_or(digits)
}

/// Whether `text` is `-?(0|[1-9][0-9]*)(.[0-9]+)?` with at most 300 integer digits: a JSON
/// number (so `write_json` keeps its text) that parses to a finite `f64` (so the decoder
/// accepts it: `f64::MAX` has 309 integer digits).
fn plain_json_number(text: &[u8]) -> bool {
    let unsigned = text.strip_prefix(b"-").unwrap_or(text);
    let (integer, fraction) = match memchr::memchr(b'.', unsigned) {
        Some(point) => (&unsigned[..point], Some(&unsigned[point + 1..])),
        None => (unsigned, None),
    };
    let digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    digits(integer)
        && integer.len() <= 300
        && (integer == b"0" || integer[0] != b'0')
        && fraction.is_none_or(digits)
}

/// Whether the finite numeric `digits` goes into a column of `target` as `write_csv_value`
/// writes it: unchecked, or within its DECIMAL's digits.
fn fits_target(digits: &[u8], target: &ValueTarget) -> bool {
    match target.data_type {
        TargetType::Decimal { precision, scale } if target.check_decimal_fit => {
            std::str::from_utf8(digits).is_ok_and(|digits| {
                check_decimal(digits, precision, scale, &target.data_type).is_ok()
            })
        }
        _ => true,
    }
}

/// The two ASCII digits `pair` as a number.
fn two_digits(pair: &[u8]) -> Option<u32> {
    match pair {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some(u32::from(a - b'0') * 10 + u32::from(b - b'0')),
        _ => None,
    }
}

/// Whether `text` is exactly `YYYY-MM-DD`, a day of the proleptic Gregorian calendar in years
/// 0001..=9999: what the decoder accepts as that day and `CivilDate::write_iso8601` prints back
/// unchanged (StarRocks' DATE range holds it).
fn plain_date(text: &[u8]) -> bool {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = text else {
        return false;
    };
    let (Some(century), Some(year_of_century), Some(month), Some(day)) = (
        two_digits(&[*y0, *y1]),
        two_digits(&[*y2, *y3]),
        two_digits(&[*m0, *m1]),
        two_digits(&[*d0, *d1]),
    ) else {
        return false;
    };
    let year = century * 100 + year_of_century;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1 && (1..=days).contains(&day)
}

/// Appends the DATETIME text of a COPY `timestamp` (`zoned`: `timestamptz` printed in UTC, so
/// ending in `+00`) of the form `YYYY-MM-DD HH:MM:SS[.f{1,6}]`, a real day and a time before
/// 24:00, with a non-zero fraction if any: the date and time as they are, the fraction padded
/// to six digits, as `write_datetime` prints the decoded value. `false` (nothing appended) for
/// every other text.
fn copy_timestamp(text: &[u8], zoned: bool, out: &mut Vec<u8>) -> bool {
    let text = if zoned {
        match text.strip_suffix(b"+00") {
            Some(local) => local,
            None => return false,
        }
    } else {
        text
    };
    let Some((date_time, fraction)) = text.split_at_checked(19) else {
        return false;
    };
    let [date @ .., b' ', h0, h1, b':', m0, m1, b':', s0, s1] = date_time else {
        return false;
    };
    let in_range = |pair: [u8; 2], limit: u32| two_digits(&pair).is_some_and(|v| v < limit);
    if !(plain_date(date)
        && in_range([*h0, *h1], 24)
        && in_range([*m0, *m1], 60)
        && in_range([*s0, *s1], 60))
    {
        return false;
    }
    match fraction {
        [] => out.extend_from_slice(date_time),
        [b'.', digits @ ..]
            if (1..=6).contains(&digits.len())
                && digits.iter().all(u8::is_ascii_digit)
                && digits.iter().any(|d| *d != b'0') =>
        {
            out.extend_from_slice(text);
            out.extend_from_slice(&b"00000"[..6 - digits.len()]);
        }
        _ => return false,
    }
    true
}

/// The audit columns and `__op` of every row of one snapshot copy, rendered once for a CSV
/// body ([`TableEncoder::snapshot_tail`]): they are the same in each row of a chunk.
#[derive(Debug, Clone)]
pub struct SnapshotTail {
    audit: Audit,
    /// Column separator, the audit fields, `__op` 0 and the row delimiter.
    csv: Vec<u8>,
}

impl TableEncoder {
    /// An encoder for `schema` (columns in `attnum` order, as tuples arrive) into the table
    /// `mapping` defines (the one setup creates or validates with the same mapping).
    pub fn new(
        schema: &TableSchema,
        delete_mode: DeleteMode,
        mapping: TypeMapping,
    ) -> TableEncoder {
        let targets: Vec<ValueTarget> = schema
            .columns
            .iter()
            .map(|column| ValueTarget::of_column(column, mapping))
            .collect();
        // StarRocks' CSV array reader cannot carry a quote inside a string element
        // (`DefaultArrayReader::split_array_elements` has no escape), so ARRAY tables stay JSON.
        // A CSV load names every field in its `columns` header, which a JSON load of full rows
        // does without: a table whose header would not fit the FE's request headers stays JSON.
        let format = if targets
            .iter()
            .any(|target| matches!(target.data_type, TargetType::Array(_)))
            || csv_columns_header_len(schema) > CSV_COLUMNS_HEADER_MAX
        {
            BodyFormat::Json
        } else {
            BodyFormat::Csv
        };
        TableEncoder {
            table: schema.to_string(),
            codec: RowCodec::new(
                schema
                    .columns
                    .iter()
                    .map(|column| ColumnCodec::new(&column.name, column.type_oid, column.is_key()))
                    .collect(),
            ),
            copy_fields: schema
                .columns
                .iter()
                .map(|column| {
                    let kind = ValueKind::from_type_oid(column.type_oid);
                    (CopyField::of(kind), kind)
                })
                .collect(),
            targets,
            audit_keys: AUDIT_COLUMNS.map(json_key),
            delete_mode,
            format,
        }
    }

    /// The same encoder writing `format` bodies (JSON for every table, to compare the two).
    pub fn with_format(mut self, format: BodyFormat) -> TableEncoder {
        if format == BodyFormat::Json {
            self.format = format;
        }
        self
    }

    /// The format of this table's bodies; a row CSV cannot carry still goes to a JSON body.
    pub fn format(&self) -> BodyFormat {
        self.format
    }

    /// An empty writer of this table's format.
    pub fn body_writer(&self) -> BodyWriter {
        BodyWriter::with_format(self.format)
    }

    /// Writes one change as one row and records in `present` which source columns it carries.
    ///
    /// A hard delete writes the key with `__op` 1. A soft delete writes an upsert with
    /// `_starwal_deleted = true`: the whole old row when the stream has it (FULL), else the key
    /// only, as a partial update. Unchanged-TOAST columns are left out (partial update); filling
    /// them from an earlier image is the pipeline's job. Into a CSV writer a hard delete carries
    /// NULL (`\N`) in every other column, as a JSON one leaves them out; a row CSV cannot carry
    /// is not written ([`Written::NeedsJson`]).
    pub fn write_change(
        &self,
        writer: &mut BodyWriter,
        row: ChangeRow<'_>,
        audit: &Audit,
        present: &mut ColumnSet,
    ) -> Result<Written, EncodeError> {
        let (tuple, key_only, deleted) = match row {
            ChangeRow::New(tuple) => (tuple, false, false),
            ChangeRow::DeletedKey(tuple) => (tuple, true, true),
            ChangeRow::DeletedRow(tuple) => (tuple, self.delete_mode == DeleteMode::Hard, true),
        };
        let hard_delete = deleted && self.delete_mode == DeleteMode::Hard;
        let fill_nulls = hard_delete && writer.format() == BodyFormat::Csv;
        // The snapshot's shortcut first (no decode and re-print of a value whose text is already
        // what the field holds, or holds it between quotes): it was ~25 % of the agent's CPU in
        // a profile of a 10-column backlog drain. A row it cannot write exactly takes the
        // general path.
        let image = match (key_only, fill_nulls) {
            (false, _) => CopyImage::All,
            (true, false) => CopyImage::KeyOnly,
            (true, true) => CopyImage::KeyWithNulls,
        };
        let mark = writer.mark();
        writer.begin_row();
        match self.write_copy_fields(&mut writer.buf, writer.format, tuple.raw_values(), image) {
            Some(fields) => {
                self.copied_present(image, present);
                writer.fields_in_row = fields;
                self.end_row(writer, audit, deleted);
                return Ok(Written::Row);
            }
            None => writer.rollback(mark),
        }
        self.write_change_decoded(writer, tuple, key_only, deleted, audit, present)
    }

    /// [`TableEncoder::write_change`] through the general path: every value decoded, checked
    /// and written by its kind.
    fn write_change_decoded(
        &self,
        writer: &mut BodyWriter,
        tuple: &TupleData,
        key_only: bool,
        deleted: bool,
        audit: &Audit,
        present: &mut ColumnSet,
    ) -> Result<Written, EncodeError> {
        present.reset(self.codec.columns().len());
        let mark = writer.mark();
        writer.begin_row();
        let image = if key_only { Image::KeyOnly } else { Image::All };
        let hard_delete = deleted && self.delete_mode == DeleteMode::Hard;
        let fill_nulls = hard_delete && writer.format() == BodyFormat::Csv;
        let written = self.write_values(
            writer,
            tuple.raw_values(),
            image,
            fill_nulls,
            audit.lsn,
            present,
        );
        if let Err(err) = written {
            // Leave the body as it was: a batch never carries half a row.
            writer.rollback(mark);
            return Err(err);
        }
        self.end_row(writer, audit, deleted);
        Ok(Self::settle(writer, mark))
    }

    /// A finished row stays unless a CSV field could not carry its value.
    fn settle(writer: &mut BodyWriter, mark: (usize, u64)) -> Written {
        if writer.row_needs_json() {
            writer.rollback(mark);
            Written::NeedsJson
        } else {
            Written::Row
        }
    }

    /// Writes one row of a snapshot copy: `values` are the columns' texts in `attnum` order
    /// (`None` = NULL), decoded exactly as the stream's tuples are (walked again only to name
    /// the key of a row that cannot be written).
    pub fn write_snapshot_row<'v>(
        &self,
        writer: &mut BodyWriter,
        values: impl ExactSizeIterator<Item = Option<&'v [u8]>> + Clone,
        audit: &Audit,
        present: &mut ColumnSet,
    ) -> Result<Written, EncodeError> {
        present.reset(self.codec.columns().len());
        let mark = writer.mark();
        writer.begin_row();
        let values = values.map(|value| match value {
            Some(text) => TupleValueRef::Text(text),
            None => TupleValueRef::Null,
        });
        if let Err(err) = self.write_values(writer, values, Image::All, false, audit.lsn, present) {
            writer.rollback(mark);
            return Err(err);
        }
        self.end_row(writer, audit, false);
        Ok(Self::settle(writer, mark))
    }

    /// The rendered end of every CSV row a snapshot copy writes with `audit`.
    pub fn snapshot_tail(&self, audit: &Audit) -> SnapshotTail {
        // What `end_row` writes after the source columns of a CSV row, rendered once.
        let mut writer = BodyWriter::with_format(BodyFormat::Csv);
        writer.begin_row();
        writer.fields_in_row = 1;
        self.end_row(&mut writer, audit, false);
        SnapshotTail {
            audit: *audit,
            csv: writer.buf,
        }
    }

    /// [`TableEncoder::write_snapshot_row`] with `tail`'s audit, the same bytes, through a
    /// shorter path into a CSV writer (see [`CopyField`]): the source columns in one loop, no
    /// decode for integers, text and booleans, the audit columns copied from `tail`. A row that
    /// needs anything else (a value that does not decode, cannot be stored, or CSV cannot carry)
    /// is rolled back and written by `write_snapshot_row`, which then decides.
    pub fn write_snapshot_csv_row<'v>(
        &self,
        writer: &mut BodyWriter,
        values: impl ExactSizeIterator<Item = Option<&'v [u8]>> + Clone,
        tail: &SnapshotTail,
        present: &mut ColumnSet,
    ) -> Result<Written, EncodeError> {
        let columns = self.copy_fields.len();
        if writer.format != BodyFormat::Csv
            || values.len() != columns
            || self.targets.len() != columns
        {
            return self.write_snapshot_row(writer, values, &tail.audit, present);
        }
        let mark = writer.mark();
        writer.begin_row();
        let copied = values.clone().map(|value| match value {
            Some(text) => TupleValueRef::Text(text),
            None => TupleValueRef::Null,
        });
        if self
            .write_copy_fields(&mut writer.buf, BodyFormat::Csv, copied, CopyImage::All)
            .is_none()
        {
            writer.rollback(mark);
            return self.write_snapshot_row(writer, values, &tail.audit, present);
        }
        self.copied_present(CopyImage::All, present);
        writer.buf.extend_from_slice(&tail.csv);
        writer.in_row = false;
        writer.rows += 1;
        Ok(Written::Row)
    }

    /// Appends the source columns that `image` carries of one row in `format` (the CSV fields,
    /// or the JSON object's members); `None` as soon as a field is not written exactly as
    /// `write_values` would write it (the caller rolls back),
    /// else the number of fields written. A value that is not text or NULL (unchanged TOAST
    /// makes a partial update; binary is an error), or a column count other than the table's,
    /// is for the general path too.
    fn write_copy_fields<'v>(
        &self,
        out: &mut Vec<u8>,
        format: BodyFormat,
        values: impl ExactSizeIterator<Item = TupleValueRef<'v>>,
        image: CopyImage,
    ) -> Option<usize> {
        let columns = self.copy_fields.len();
        if values.len() != columns
            || self.targets.len() != columns
            || self.codec.columns().len() != columns
        {
            return None;
        }
        let json = format == BodyFormat::Json;
        let (separator, null): (u8, &[u8]) = if json {
            (b',', b"null")
        } else {
            (CSV_COLUMN_SEPARATOR, b"\\N")
        };
        // A JSON string value: the field's text between quotes (texts these checks accept
        // need no escape).
        let quoted = |out: &mut Vec<u8>, text: &[u8]| {
            if json {
                out.push(b'"');
                out.extend_from_slice(text);
                out.push(b'"');
            } else {
                out.extend_from_slice(text);
            }
        };
        let fields = self.copy_fields.iter().zip(&self.targets);
        let mut written = 0;
        for (((&(field, kind), target), column), value) in
            fields.zip(self.codec.columns()).zip(values)
        {
            let keep = image == CopyImage::All || column.is_key();
            if !keep && image == CopyImage::KeyOnly {
                // A key-only image leaves the other columns out without looking at them.
                continue;
            }
            if written > 0 {
                out.push(separator);
            }
            if json {
                out.extend_from_slice(column.json_key());
            }
            written += 1;
            let text = match value {
                // A CSV hard delete's other columns are NULL, whatever the image holds.
                _ if !keep => {
                    out.extend_from_slice(null);
                    continue;
                }
                TupleValueRef::Null => {
                    out.extend_from_slice(null);
                    continue;
                }
                TupleValueRef::Text(text) => text,
                TupleValueRef::UnchangedToast | TupleValueRef::Binary(_) => return None,
            };
            let exact = match field {
                CopyField::Integer { min, max } => {
                    canonical_integer_within(text, min, max) && {
                        out.extend_from_slice(text);
                        true
                    }
                }
                CopyField::Text => match simdutf8::basic::from_utf8(text) {
                    Ok(text) if json => {
                        write_json_string(text, out);
                        true
                    }
                    Ok(_) => {
                        csv_safe(text) && {
                            out.extend_from_slice(text);
                            true
                        }
                    }
                    Err(_) => false,
                },
                CopyField::Bool => match text {
                    b"t" => {
                        out.extend_from_slice(b"true");
                        true
                    }
                    b"f" => {
                        out.extend_from_slice(b"false");
                        true
                    }
                    _ => false,
                },
                CopyField::Date => {
                    plain_date(text) && {
                        quoted(out, text);
                        true
                    }
                }
                CopyField::Timestamp(zoned) => {
                    if json {
                        out.push(b'"');
                    }
                    copy_timestamp(text, zoned, out) && {
                        if json {
                            out.push(b'"');
                        }
                        true
                    }
                }
                CopyField::Float => {
                    plain_json_number(text) && {
                        out.extend_from_slice(text);
                        true
                    }
                }
                // JSON writes a numeric as a string, whatever the column (`write_json`).
                CopyField::Numeric => {
                    finite_decimal(text) && fits_target(text, target) && {
                        quoted(out, text);
                        true
                    }
                }
                CopyField::Decoded => match kind.decode(text) {
                    Ok(value) if json => write_value(&value, target, out).is_ok(),
                    Ok(value) => matches!(write_csv_value(&value, target, out), Ok(true)),
                    Err(_) => false,
                },
            };
            if !exact {
                return None;
            }
        }
        Some(written)
    }

    /// The columns a row [`TableEncoder::write_copy_fields`] wrote carries, as `write_values`
    /// records them: every column, or the key columns of a key-only image (a CSV hard delete's
    /// NULLs are not the row's values).
    fn copied_present(&self, image: CopyImage, present: &mut ColumnSet) {
        let columns = self.codec.columns();
        present.reset(columns.len());
        for (index, column) in columns.iter().enumerate() {
            if image == CopyImage::All || column.is_key() {
                present.insert(index);
            }
        }
    }

    /// The audit columns and `__op` of a row whose source columns are written.
    fn end_row(&self, writer: &mut BodyWriter, audit: &Audit, deleted: bool) {
        let hard_delete = deleted && self.delete_mode == DeleteMode::Hard;
        let [op, deleted_key, synced_at, lsn] = &self.audit_keys;
        if !hard_delete {
            writer.raw_field(op, audit.op.json());
            writer.raw_field(deleted_key, if deleted { b"true" } else { b"false" });
            writer.raw_field(synced_at, audit.synced_at.json());
            writer.field_with(lsn, |out| write_u64(out, audit.lsn.0));
        } else if writer.format() == BodyFormat::Csv {
            // A CSV line has every column of the load; StarRocks reads only a delete's key.
            for key in [op, deleted_key, synced_at, lsn] {
                writer.null_field(key);
            }
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
        values: impl ExactSizeIterator<Item = TupleValueRef<'v>> + Clone,
        image: Image,
        fill_nulls: bool,
        lsn: Lsn,
        present: &mut ColumnSet,
    ) -> Result<(), EncodeError> {
        let mut refused = None;
        // With `fill_nulls` (a CSV hard delete), the columns the image skips are NULL fields.
        let mut next = 0;
        let columns = self.codec.columns().len();
        self.codec
            .decode_row(values.clone(), image, |index, column, field| {
                if fill_nulls {
                    (next..index).for_each(|_| writer.null_field(b""));
                    next = index + 1;
                }
                // An unchanged TOAST column is left out: the row becomes a partial update.
                if let Field::Value(value) = field {
                    present.insert(index);
                    let Some(target) = self.targets.get(index) else {
                        return;
                    };
                    // After a refusal the walk only goes on to report decode errors first.
                    if refused.is_none() {
                        if let Err(why) = writer.field(column.json_key(), &value, target) {
                            refused = Some((index, why));
                        }
                    }
                }
            })
            .map_err(|err| self.row_error(err, lsn))?;
        if fill_nulls {
            (next..columns).for_each(|_| writer.null_field(b""));
        }
        match refused {
            None => Ok(()),
            Some((index, source)) => Err(EncodeError::Unstorable {
                table: self.table.clone(),
                column: self
                    .codec
                    .column(index)
                    .map_or_else(String::new, |column| column.name().to_owned()),
                key: self.key_text(values),
                lsn,
                source: Box::new(source),
            }),
        }
    }

    /// The row's key as Postgres names one in its messages: `(id, region)=(7, eu)`, each value
    /// as the source printed it (truncated). Only for errors: it allocates.
    fn key_text<'v>(&self, values: impl Iterator<Item = TupleValueRef<'v>>) -> String {
        let mut names = Vec::new();
        let mut texts = Vec::new();
        for (column, value) in self.codec.columns().iter().zip(values) {
            if !column.is_key() {
                continue;
            }
            names.push(column.name());
            texts.push(match value {
                TupleValueRef::Text(text) => quote_for_error(text),
                TupleValueRef::Null => "NULL".to_owned(),
                TupleValueRef::UnchangedToast => "(unchanged)".to_owned(),
                TupleValueRef::Binary(_) => "(binary)".to_owned(),
            });
        }
        format!("({})=({})", names.join(", "), texts.join(", "))
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

    /// A full row's columns in the order a CSV body writes them: every source column, the
    /// audit columns and `__op`.
    pub fn full_columns(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .codec
            .columns()
            .iter()
            .map(|column| column.name().to_owned())
            .collect();
        names.extend(AUDIT_COLUMNS.map(String::from));
        names.push("__op".into());
        names
    }

    /// The `columns` header of a partial update carrying `present`: those source columns, the
    /// audit columns and `__op` (also a CSV body's field order for rows carrying `present`).
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

    fn column_of(type_oid: u32, type_modifier: i32) -> ColumnSchema {
        ColumnSchema {
            name: "c".into(),
            type_oid: Oid(type_oid),
            type_modifier,
            type_name: String::new(),
            nullable: true,
            key_position: None,
        }
    }

    /// `text` of a column of type `type_oid` (typmod `type_modifier`) as a load writes it.
    fn written(
        type_oid: u32,
        type_modifier: i32,
        mapping: TypeMapping,
        text: &str,
    ) -> Result<String, Unstorable> {
        let value = ValueKind::from_type_oid(Oid(type_oid))
            .decode(text.as_bytes())
            .unwrap();
        let target = ValueTarget::of_column(&column_of(type_oid, type_modifier), mapping);
        let mut out = Vec::new();
        write_value(&value, &target, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn encoded(type_oid: u32, text: &str) -> String {
        written(type_oid, -1, TypeMapping::default(), text).unwrap()
    }

    fn refused(type_oid: u32, text: &str) -> String {
        written(type_oid, -1, TypeMapping::default(), text)
            .unwrap_err()
            .to_string()
    }

    const VARCHAR_NUMERIC: TypeMapping = TypeMapping {
        unconstrained_numeric: crate::sink::starrocks::mapping::UnconstrainedNumeric::Varchar,
    };

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
        assert_eq!(encoded(701, "Infinity"), "\"Infinity\"");
        assert_eq!(encoded(700, "-Infinity"), "\"-Infinity\"");
        assert_eq!(encoded(701, "NaN"), "\"NaN\"");
        assert_eq!(encoded(701, "1e+100"), "1e+100");
        assert_eq!(encoded(16, "t"), "true");
        assert_eq!(encoded(25, "a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(encoded(1082, "2026-11-22"), "\"2026-11-22\"");
        assert_eq!(encoded(1082, "infinity"), "\"9999-12-31\"");
        assert_eq!(encoded(1082, "-infinity"), "\"0000-01-01\"");
        assert_eq!(encoded(1082, "0001-03-15 BC"), "\"0000-03-15\"");
        assert_eq!(
            encoded(1114, "2026-11-22 10:00:00"),
            "\"2026-11-22 10:00:00\""
        );
        assert_eq!(
            encoded(1184, "2026-11-22 10:00:00.123456+02"),
            "\"2026-11-22 08:00:00.123456\""
        );
        assert_eq!(encoded(1184, "-infinity"), "\"0000-01-01 00:00:00\"");
        assert_eq!(encoded(1184, "infinity"), "\"9999-12-31 23:59:59.999999\"");
        assert_eq!(encoded(3802, "{\"k\": [1, 2]}"), "{\"k\": [1, 2]}");
        assert_eq!(encoded(114, "{\n \"a\" : 1 }"), "{\n \"a\" : 1 }");
        assert_eq!(encoded(1007, "{1,NULL,3}"), "[1,null,3]");
        assert_eq!(encoded(1007, "[0:2]={1,2,3}"), "[1,2,3]");
        assert_eq!(
            encoded(1022, "{1.5,NaN,-Infinity}"),
            "[1.5,\"NaN\",\"-Infinity\"]"
        );
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
    fn inv12_numerics_are_exact_or_refused() {
        let numeric_10_2 = (10 << 16 | 2) + 4;
        // Unconstrained numeric into DECIMAL(38,9): fits, trailing zeros are the same value.
        assert_eq!(encoded(1700, "-0.000000001"), "\"-0.000000001\"");
        assert_eq!(encoded(1700, "1.50000000000000"), "\"1.50000000000000\"");
        assert_eq!(
            encoded(1700, "00012345678901234567890123456789.5"),
            "\"00012345678901234567890123456789.5\""
        );
        // What StarRocks would round or cut: refused, naming the value and the target.
        for value in [
            "3.14159265358979",
            "0.0000000005",
            "0.000000000000000000000000000000000000000001",
            "123456789012345678901234567890",
        ] {
            let error = refused(1700, value);
            assert!(
                error.starts_with(&format!(
                    "numeric `{value}` does not fit DECIMAL(38,9) exactly"
                )),
                "{error}"
            );
            // The exact mapping keeps every digit as text.
            assert_eq!(
                written(1700, -1, VARCHAR_NUMERIC, value).unwrap(),
                format!("\"{value}\"")
            );
        }
        assert!(refused(1231, "{1,2.0000000001}").contains("DECIMAL(38,9)"));
        // NaN and ±Infinity have no DECIMAL value, constrained or not; as text they are exact.
        for special in ["NaN", "Infinity", "-Infinity"] {
            assert!(
                refused(1700, special)
                    .starts_with(&format!("numeric `{special}` has no DECIMAL(38,9) value")),
                "{special}"
            );
            assert!(written(1700, numeric_10_2, TypeMapping::default(), special).is_err());
            assert_eq!(
                written(1700, -1, VARCHAR_NUMERIC, special).unwrap(),
                format!("\"{special}\"")
            );
        }
        // numeric(10,2) bounds its values to DECIMAL(10,2): written as printed.
        assert_eq!(
            written(1700, numeric_10_2, TypeMapping::default(), "-12345678.90").unwrap(),
            "\"-12345678.90\""
        );
        // A key becomes VARCHAR: the text is the value.
        let key = ColumnSchema {
            key_position: Some(0),
            ..column_of(1700, -1)
        };
        let target = ValueTarget::of_column(&key, TypeMapping::default());
        let mut out = Vec::new();
        write_value(&Value::Numeric(Numeric::NaN), &target, &mut out).unwrap();
        assert_eq!(out, b"\"NaN\"");
    }

    #[test]
    fn inv12_multi_dimensional_arrays_are_refused_for_every_element_type() {
        let cases = [
            (1007, "{{1,2},{3,4}}"),
            (1009, "{{a,b},{c,NULL}}"),
            (
                2951,
                "{{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11},{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12}}",
            ),
            (1022, "[0:1][1:1]={{1.5},{2}}"),
            (199, "{{\"{}\"},{\"[]\"}}"),
            (1182, "{{2024-01-01}}"),
        ];
        for (oid, literal) in cases {
            let error = refused(oid, literal);
            assert!(
                error.contains("is a multi-dimensional array, which ARRAY<"),
                "{error}"
            );
        }
        assert_eq!(
            encoded(2951, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"),
            "[\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]"
        );
        assert_eq!(encoded(1009, "{}"), "[]");
    }

    #[test]
    fn inv12_dates_outside_starrocks_years_are_refused() {
        assert_eq!(
            refused(1082, "0044-03-15 BC"),
            "date `-0043-03-15` is outside DATE's years 0000..9999 (astronomical numbering: 1 BC is 0000)"
        );
        assert!(refused(1082, "10000-01-01").starts_with("date `+10000-01-01` is outside DATE's"));
        assert!(refused(1114, "0002-12-31 23:00:00 BC")
            .starts_with("timestamp `-0001-12-31` is outside DATETIME's"));
        // UTC can leave the range a local time is in.
        assert!(refused(1184, "9999-12-31 23:00:00-05").starts_with("timestamp `+10000-01-01`"));
        assert!(
            refused(1185, "{\"0044-03-15 12:00:00+00 BC\"}").starts_with("timestamp `-0043-03-15`")
        );
        assert_eq!(
            encoded(1184, "0001-01-01 00:30:00+01"),
            "\"0000-12-31 23:30:00\""
        );
    }

    #[test]
    fn bodies_are_arrays_of_rows_with_op() {
        let mut writer = BodyWriter::new();
        writer.begin_row();
        let int = ValueTarget::checked(TargetType::Int);
        writer.field(b"\"id\":", &Value::Int(1), &int).unwrap();
        writer.raw_field(b"\"_starwal_deleted\":", b"false");
        writer.end_row(RowOp::Upsert);
        writer.begin_row();
        writer.field(b"\"id\":", &Value::Int(2), &int).unwrap();
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
        let int = ValueTarget::checked(TargetType::BigInt);
        let mut writer = BodyWriter::new();
        for id in 0..100 {
            writer.begin_row();
            writer.field(b"\"id\":", &Value::Int(id), &int).unwrap();
            writer.end_row(RowOp::Upsert);
        }
        let plain = {
            let mut copy = BodyWriter::new();
            for id in 0..100 {
                copy.begin_row();
                copy.field(b"\"id\":", &Value::Int(id), &int).unwrap();
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
            writer.field(b"\"id\":", &Value::Int(id), &int).unwrap();
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
        let encoder = TableEncoder::new(&schema(), mode, TypeMapping::default());
        let mut writer = BodyWriter::new();
        let mut present = ColumnSet::default();
        let written = encoder
            .write_change(&mut writer, row, &audit, &mut present)
            .unwrap();
        assert_eq!(written, Written::Row);
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
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default());
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
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default());
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

    #[test]
    fn inv12_unstorable_values_name_table_column_key_and_lsn() {
        let mut schema = schema();
        schema.columns[2].type_oid = Oid(1700);
        let encoder = TableEncoder::new(&schema, DeleteMode::Hard, TypeMapping::default());
        let mut writer = BodyWriter::new();
        let fits = tuple(&[Some("1"), Some("a"), Some("2.5")], usize::MAX);
        let _ = encoder
            .write_change(
                &mut writer,
                ChangeRow::New(&fits),
                &audit(),
                &mut ColumnSet::default(),
            )
            .unwrap();
        let before = writer.byte_len();
        let pi = tuple(
            &[Some("7"), Some("a"), Some("3.14159265358979")],
            usize::MAX,
        );
        let err = encoder
            .write_change(
                &mut writer,
                ChangeRow::New(&pi),
                &audit(),
                &mut ColumnSet::default(),
            )
            .unwrap_err();
        assert!(matches!(err, EncodeError::Unstorable { .. }), "{err}");
        assert!(
            err.to_string().starts_with(
                "column `big` of `public.t`, key (id)=(7), at LSN 0/16B3748: numeric `3.14159265358979` does not fit DECIMAL(38,9)"
            ),
            "{err}"
        );
        assert_eq!(writer.byte_len(), before, "the half row was rolled back");
        assert_eq!(writer.rows(), 1);
        // A snapshot row says the same.
        let values: [Option<&[u8]>; 3] = [Some(b"8"), None, Some(b"NaN")];
        let err = encoder
            .write_snapshot_row(
                &mut writer,
                values.into_iter(),
                &audit(),
                &mut ColumnSet::default(),
            )
            .unwrap_err();
        assert!(
            err.to_string().starts_with("column `big` of `public.t`, key (id)=(8), at LSN 0/16B3748: numeric `NaN` has no DECIMAL(38,9) value"),
            "{err}"
        );
        // A hard delete carries the key only: the value does not matter.
        let (body, _) = {
            let mut writer = BodyWriter::new();
            let audit = Audit {
                op: SourceOp::Delete,
                ..audit()
            };
            let _ = encoder
                .write_change(
                    &mut writer,
                    ChangeRow::DeletedRow(&pi),
                    &audit,
                    &mut ColumnSet::default(),
                )
                .unwrap();
            (
                String::from_utf8(writer.finish(Compression::None).unwrap().to_vec()).unwrap(),
                (),
            )
        };
        assert_eq!(body, r#"[{"id":7,"__op":1}]"#);
    }

    /// `text` of a column of type `type_oid` as a CSV field, `None` when CSV cannot carry it.
    fn csv(type_oid: u32, text: Option<&str>) -> Option<String> {
        let value = match text {
            Some(text) => ValueKind::from_type_oid(Oid(type_oid))
                .decode(text.as_bytes())
                .unwrap(),
            None => Value::Null,
        };
        let target = ValueTarget::of_column(&column_of(type_oid, -1), TypeMapping::default());
        let mut out = Vec::new();
        write_csv_value(&value, &target, &mut out)
            .unwrap()
            .then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn csv_fields_are_the_json_values_unquoted_and_text_as_it_is() {
        let cases: &[(u32, Option<&str>, &str)] = &[
            (20, Some("9007199254740993"), "9007199254740993"),
            (1700, Some("12.50"), "12.50"),
            (701, Some("NaN"), "NaN"),
            (700, Some("-Infinity"), "-Infinity"),
            (701, Some("1e+100"), "1e+100"),
            (16, Some("f"), "false"),
            (25, Some("a\"b\n,\t\\x"), "a\"b\n,\t\\x"),
            (25, Some(""), ""),
            (25, Some("\\\\N"), "\\\\N"),
            (25, Some("N"), "N"),
            (25, None, "\\N"),
            (1082, Some("infinity"), "9999-12-31"),
            (1082, Some("0001-03-15 BC"), "0000-03-15"),
            (
                1184,
                Some("2026-11-22 10:00:00.123456+02"),
                "2026-11-22 08:00:00.123456",
            ),
            (
                3802,
                Some("{\"k\": [\"a\\u001f\", 2]}"),
                "{\"k\": [\"a\\u001f\", 2]}",
            ),
            (114, Some("{\n \"a\" : \"x\" }"), "{\n \"a\" : \"x\" }"),
            (3802, Some("\"42\""), "\"42\""),
            // A top-level JSON null is SQL NULL, as in a JSON body.
            (3802, Some("null"), "\\N"),
            (114, Some(" null\n"), "\\N"),
            (
                2950,
                Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            ),
            (17, Some("\\x0102"), "\\x0102"),
            (1186, Some("P1Y2M3DT4H5M6S"), "P1Y2M3DT4H5M6S"),
        ];
        for (oid, text, field) in cases {
            assert_eq!(csv(*oid, *text).as_deref(), Some(*field), "{oid} {text:?}");
        }
        // What StarRocks' CSV reader cannot give back: the NULL marker as text, a separator
        // byte inside a value, an array.
        for (oid, text) in [
            (25, "\\N"),
            (25, "a\u{1f}b"),
            (1043, "\u{1e}"),
            (1007, "{1,2}"),
            (1009, "{a}"),
        ] {
            assert_eq!(csv(oid, Some(text)), None, "{oid} {text:?}");
        }
        // Refusals stay refusals.
        let target = ValueTarget::of_column(&column_of(1700, -1), TypeMapping::default());
        let nan = Value::Numeric(Numeric::NaN);
        assert!(write_csv_value(&nan, &target, &mut Vec::new()).is_err());
    }

    fn csv_encode(
        mode: DeleteMode,
        row: ChangeRow<'_>,
        audit: Audit,
    ) -> (Written, String, ColumnSet) {
        let encoder = TableEncoder::new(&schema(), mode, TypeMapping::default());
        assert_eq!(encoder.format(), BodyFormat::Csv);
        let mut writer = encoder.body_writer();
        let mut present = ColumnSet::default();
        let written = encoder
            .write_change(&mut writer, row, &audit, &mut present)
            .unwrap();
        let body = writer.finish(Compression::None).unwrap();
        let text = String::from_utf8(body.to_vec())
            .unwrap()
            .replace('\u{1f}', "|")
            .replace('\u{1e}', "$");
        (written, text, present)
    }

    #[test]
    fn csv_rows_follow_the_columns_header_and_hard_deletes_carry_nulls() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default());
        assert_eq!(
            encoder.full_columns(),
            [
                "id",
                "v",
                "big",
                AUDIT_OP,
                AUDIT_DELETED,
                AUDIT_SYNCED_AT,
                AUDIT_LSN,
                "__op"
            ]
        );
        let new = tuple(&[Some("1"), Some("a"), None], usize::MAX);
        let (written, body, present) = csv_encode(DeleteMode::Hard, ChangeRow::New(&new), audit());
        assert_eq!(written, Written::Row);
        assert_eq!(body, "1|a|\\N|update|false|2026-11-22 10:00:00|23803720|0$");
        assert!(present.is_full());
        // A hard delete has every field of the full set: NULL but for the key.
        let key = tuple(&[Some("7"), None, None], usize::MAX);
        let delete = Audit {
            op: SourceOp::Delete,
            ..audit()
        };
        let (_, hard, _) = csv_encode(DeleteMode::Hard, ChangeRow::DeletedKey(&key), delete);
        assert_eq!(hard, "7|\\N|\\N|\\N|\\N|\\N|\\N|1$");
        let full = tuple(&[Some("7"), Some("x"), Some("y")], usize::MAX);
        let (_, hard, _) = csv_encode(DeleteMode::Hard, ChangeRow::DeletedRow(&full), delete);
        assert_eq!(hard, "7|\\N|\\N|\\N|\\N|\\N|\\N|1$");
        // A soft key-only delete is a partial update of the key and the audit columns.
        let (_, soft, present) = csv_encode(DeleteMode::Soft, ChangeRow::DeletedKey(&key), delete);
        assert_eq!(soft, "7|delete|true|2026-11-22 10:00:00|23803720|0$");
        assert_eq!(
            encoder.partial_columns(&present),
            [
                "id",
                AUDIT_OP,
                AUDIT_DELETED,
                AUDIT_SYNCED_AT,
                AUDIT_LSN,
                "__op"
            ]
        );
        // Unchanged TOAST: the partial row's fields are its columns.
        let partial = tuple(&[Some("1"), Some("a"), None], 2);
        let (_, body, present) = csv_encode(DeleteMode::Hard, ChangeRow::New(&partial), audit());
        assert_eq!(body, "1|a|update|false|2026-11-22 10:00:00|23803720|0$");
        assert_eq!(encoder.partial_columns(&present).len(), 7);
    }

    #[test]
    fn csv_rows_it_cannot_carry_are_left_for_a_json_body() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default());
        let mut writer = encoder.body_writer();
        let mut present = ColumnSet::default();
        let plain = tuple(&[Some("1"), Some("a"), None], usize::MAX);
        let marker = tuple(&[Some("2"), Some("x"), Some("\\N")], usize::MAX);
        let separator = tuple(&[Some("3"), Some("a\u{1e}b"), None], usize::MAX);
        let write = |writer: &mut BodyWriter, row: &TupleData, present: &mut ColumnSet| {
            encoder
                .write_change(writer, ChangeRow::New(row), &audit(), present)
                .unwrap()
        };
        assert_eq!(write(&mut writer, &plain, &mut present), Written::Row);
        let before = writer.byte_len();
        for row in [&marker, &separator] {
            assert_eq!(write(&mut writer, row, &mut present), Written::NeedsJson);
            assert_eq!((writer.byte_len(), writer.rows()), (before, 1));
        }
        // The same rows go into a JSON writer.
        let mut json = BodyWriter::new();
        assert_eq!(write(&mut json, &marker, &mut present), Written::Row);
        assert_eq!(write(&mut json, &separator, &mut present), Written::Row);
        let json = String::from_utf8(json.finish(Compression::None).unwrap().to_vec()).unwrap();
        assert!(json.contains(r#""big":"\\N""#), "{json}");
        assert!(json.contains(r#""v":"a\u001eb""#), "{json}");
        // A table with an ARRAY column loads JSON.
        let mut with_array = schema();
        with_array.columns[2].type_oid = Oid(1007);
        let encoder = TableEncoder::new(&with_array, DeleteMode::Hard, TypeMapping::default());
        assert_eq!(encoder.format(), BodyFormat::Json);
    }

    /// A table of 17 columns of many kinds and `rounds` seeded rows for it: mostly ordinary
    /// texts (which the CSV shortcut writes), and every kind of text it must leave to the
    /// general path (non-canonical integers, `true`, the NULL marker as text, separators, bad
    /// UTF-8, values a column cannot store). Column 0 is the key.
    fn copy_test_rows(rounds: usize) -> (TableSchema, Vec<Vec<Option<Vec<u8>>>>) {
        use crate::schema::ColumnSchema;
        let numeric_5_2 = ((5 << 16) | 2) + 4;
        let columns: [(u32, i32, &[&str]); 17] = [
            (
                23,
                -1,
                &[
                    "1",
                    "-7",
                    "0",
                    "2147483647",
                    "-2147483648",
                    "2147483648",
                    "-0",
                    "+1",
                    "01",
                    " 1",
                    "1 ",
                    "",
                    "x",
                    "1.0",
                ],
            ),
            (21, -1, &["5", "-32768", "32768", "32767", "-32769", "007"]),
            (
                20,
                -1,
                &[
                    "9223372036854775807",
                    "-9223372036854775808",
                    "9223372036854775808",
                    "-9223372036854775809",
                    "12",
                ],
            ),
            (26, -1, &["4294967295", "4294967296", "-1", "3", "0", "-0"]),
            (16, -1, &["t", "f", "true", "false", "yes", "T", ""]),
            (
                25,
                -1,
                &[
                    "a",
                    "",
                    "name-1",
                    "\\N",
                    "a\u{1f}b",
                    "a\u{1e}b",
                    "tab\there",
                    "line\nbreak",
                    "ü",
                    "\\",
                ],
            ),
            (1043, 68, &["short", "é"]),
            (600, -1, &["(1,2)", "\\N"]),
            (
                1700,
                numeric_5_2,
                &[
                    "1.50", "-999.99", "1000.00", "NaN", "12", "1.", ".5", "-", "+1", "1e5",
                    "-0.00", "1..2",
                ],
            ),
            (
                1700,
                -1,
                &[
                    "0.1",
                    "123456789012345678901234567890.5",
                    "0.0000000001",
                    "1.1000000000",
                    "-12345678901234567890123456789",
                    "NaN",
                    "-Infinity",
                ],
            ),
            (
                701,
                -1,
                &[
                    "0.3333333333333333",
                    "NaN",
                    "Infinity",
                    "-Infinity",
                    "1e+20",
                    "-0",
                    "-0.0",
                    "0.5",
                    "01.5",
                    "1.",
                    ".5",
                    "+1",
                    "1e400",
                    "-1234567.125",
                    "10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000.5",
                ],
            ),
            (
                1082,
                -1,
                &[
                    "2026-12-07",
                    "infinity",
                    "-infinity",
                    "0044-03-15 BC",
                    "10000-01-01",
                    "2026-02-30",
                ],
            ),
            (
                1184,
                -1,
                &[
                    "2026-12-07 21:35:00.123456+00",
                    "2026-12-07 21:35:00+02",
                    "infinity",
                    "2026-13-01 00:00:00+00",
                ],
            ),
            (114, -1, &["{\"a\": 1}", "null", " null ", "", "[1,\n2]"]),
            (2950, -1, &["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "nope"]),
            (1114, -1, &["2026-12-07 21:35:00.5", "2026-12-07 24:00:00"]),
            (1082, -1, &["2024-02-29", "2023-02-29"]),
        ];
        // Dates and times from parts, valid or not, for the three date/time kinds.
        let datetime = |kind: u32, pick: &mut dyn FnMut(usize) -> usize| {
            let part = |choices: &[&'static str], pick: &mut dyn FnMut(usize) -> usize| {
                choices[pick(choices.len())]
            };
            let mut text = format!(
                "{}-{}-{}",
                part(
                    &[
                        "0000", "0001", "0099", "1900", "2000", "2023", "2024", "2100", "9999",
                        "10000", "202"
                    ],
                    pick
                ),
                part(&["00", "01", "02", "04", "12", "13", "1"], pick),
                part(&["00", "01", "28", "29", "30", "31", "32", "1"], pick),
            );
            if kind != 1082 {
                text.push_str(&format!(
                    " {}:{}:{}{}",
                    part(&["00", "09", "23", "24", "25", "7"], pick),
                    part(&["00", "59", "60"], pick),
                    part(&["00", "59", "60"], pick),
                    part(
                        &["", ".0", ".000000", ".5", ".05", ".123456", ".1234567", ".", ".x"],
                        pick
                    ),
                ));
            }
            text.push_str(match kind {
                1184 => part(
                    &["+00", "+00", "+02", "-05", "", "+00:00", "Z", "+00 BC"],
                    pick,
                ),
                _ => part(&["", "", " BC", "+00"], pick),
            });
            text
        };
        let schema = TableSchema {
            schema: "public".into(),
            name: "t".into(),
            columns: columns
                .iter()
                .enumerate()
                .map(|(index, (oid, modifier, _))| ColumnSchema {
                    name: format!("c{index}"),
                    type_oid: Oid(*oid),
                    type_modifier: *modifier,
                    type_name: String::new(),
                    nullable: index != 0,
                    key_position: (index == 0).then_some(0),
                })
                .collect(),
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        let rows = (0..rounds)
            .map(|round| {
                // Mostly the first (ordinary) texts, so most rows take the short path.
                columns
                    .iter()
                    .map(|(oid, _, texts)| match next(20) {
                        0 => None,
                        3 | 4 if matches!(oid, 1082 | 1114 | 1184) => {
                            Some(datetime(*oid, &mut next).into_bytes())
                        }
                        1 => Some(texts[next(texts.len())].as_bytes().to_vec()),
                        2 if round % 7 == 0 => Some(vec![b'a', 0xff]),
                        _ => Some(texts[0].as_bytes().to_vec()),
                    })
                    .collect()
            })
            .collect();
        (schema, rows)
    }

    /// The snapshot's short CSV path writes the same bytes as `write_snapshot_row`, and refuses
    /// or defers the same rows with the same errors, for seeded rows of every kind it treats
    /// apart and of the kinds it decodes, with the texts that must not pass through unchanged
    /// (non-canonical integers, `true`, the NULL marker as text, separators, bad UTF-8, values a
    /// column cannot store). Rows accumulate in one body, so a rolled-back row must leave it
    /// as it was.
    #[test]
    fn snapshot_csv_rows_are_the_snapshot_rows() {
        let (schema, rows) = copy_test_rows(5000);
        let encoder = TableEncoder::new(&schema, DeleteMode::Soft, TypeMapping::default());
        assert_eq!(encoder.format(), BodyFormat::Csv);
        let audit = Audit {
            op: SourceOp::Snapshot,
            lsn: Lsn(0x16B3748),
            synced_at: SyncedAt::new(SYNCED_AT),
        };
        let tail = encoder.snapshot_tail(&audit);
        let (mut slow, mut fast) = (encoder.body_writer(), encoder.body_writer());
        let (mut slow_present, mut fast_present) = (ColumnSet::default(), ColumnSet::default());
        let mut outcomes = [0usize; 3];
        for row in &rows {
            let values = || row.iter().map(|v| v.as_deref());
            let expected = encoder
                .write_snapshot_row(&mut slow, values(), &audit, &mut slow_present)
                .map_err(|e| e.to_string());
            let got = encoder
                .write_snapshot_csv_row(&mut fast, values(), &tail, &mut fast_present)
                .map_err(|e| e.to_string());
            assert_eq!(got, expected, "row {row:?}");
            assert_eq!(fast.buf, slow.buf, "row {row:?}");
            assert_eq!(fast.rows(), slow.rows(), "row {row:?}");
            assert_eq!(fast_present, slow_present, "row {row:?}");
            outcomes[match expected {
                Ok(Written::Row) => 0,
                Ok(Written::NeedsJson) => 1,
                Err(_) => 2,
            }] += 1;
        }
        // Each outcome was exercised.
        assert!(outcomes.iter().all(|n| *n > 50), "{outcomes:?}");
        // A JSON writer (a row CSV cannot carry) gets the general path's row.
        let row = [Some(&b"1"[..]); 17];
        let mut json = BodyWriter::new();
        let mut reference = BodyWriter::new();
        let mut present = ColumnSet::default();
        let _ = encoder.write_snapshot_csv_row(&mut json, row.iter().copied(), &tail, &mut present);
        let _ =
            encoder.write_snapshot_row(&mut reference, row.iter().copied(), &audit, &mut present);
        assert_eq!(json.buf, reference.buf);
    }

    /// A change row goes into a CSV or JSON body through the snapshot's shortcut when it can:
    /// the same bytes, columns, outcome and error as the general path (`write_change_decoded`),
    /// for seeded rows of every kind (a new row, a key-only and a whole old row) in both delete
    /// modes and both formats, with unchanged TOAST values (a partial update), binary values, a
    /// wrong column count and every text of `copy_test_rows`. Rows accumulate in one body, so a
    /// rolled-back row must leave it as it was.
    #[test]
    fn change_rows_are_the_decoded_rows() {
        let (schema, rows) = copy_test_rows(6000);
        let audit = Audit {
            op: SourceOp::Update,
            lsn: Lsn(0x16B3748),
            synced_at: SyncedAt::new(SYNCED_AT),
        };
        let mut outcomes = [0usize; 3];
        let mut shortcut = 0;
        let modes = [DeleteMode::Hard, DeleteMode::Soft];
        let formats = [BodyFormat::Csv, BodyFormat::Json];
        for (mode, format) in modes.into_iter().flat_map(|m| formats.map(|f| (m, f))) {
            let encoder =
                TableEncoder::new(&schema, mode, TypeMapping::default()).with_format(format);
            assert_eq!(encoder.format(), format);
            let (mut slow, mut fast) = (encoder.body_writer(), encoder.body_writer());
            let (mut slow_present, mut fast_present) = (ColumnSet::default(), ColumnSet::default());
            for (round, row) in rows.iter().enumerate() {
                let mut values: Vec<TupleValueRef<'_>> = row
                    .iter()
                    .map(|value| match value {
                        Some(text) => TupleValueRef::Text(text),
                        None => TupleValueRef::Null,
                    })
                    .collect();
                let column = round % values.len();
                match round % 29 {
                    // Unchanged TOAST in a key or another column, binary, a column missing.
                    0 => values[column] = TupleValueRef::UnchangedToast,
                    1 => values[column] = TupleValueRef::Binary(b"\x01"),
                    2 => {
                        values.pop();
                    }
                    _ => {}
                }
                let tuple = TupleData::from_values(values);
                let change = match round % 3 {
                    0 => ChangeRow::New(&tuple),
                    1 => ChangeRow::DeletedKey(&tuple),
                    _ => ChangeRow::DeletedRow(&tuple),
                };
                let (tuple, key_only, deleted) = match change {
                    ChangeRow::New(tuple) => (tuple, false, false),
                    ChangeRow::DeletedKey(tuple) => (tuple, true, true),
                    ChangeRow::DeletedRow(tuple) => (tuple, mode == DeleteMode::Hard, true),
                };
                let slow_mark = slow.byte_len();
                let expected = encoder
                    .write_change_decoded(
                        &mut slow,
                        tuple,
                        key_only,
                        deleted,
                        &audit,
                        &mut slow_present,
                    )
                    .map_err(|e| e.to_string());
                let got = encoder
                    .write_change(&mut fast, change, &audit, &mut fast_present)
                    .map_err(|e| e.to_string());
                let what = format!("{mode:?} {format:?} {change:?}");
                assert_eq!(got, expected, "{what}");
                assert_eq!(fast.buf, slow.buf, "{what}");
                assert_eq!(fast.rows(), slow.rows(), "{what}");
                if expected.is_ok() {
                    assert_eq!(fast_present, slow_present, "{what}");
                }
                outcomes[match expected {
                    Ok(Written::Row) => 0,
                    Ok(Written::NeedsJson) => 1,
                    Err(_) => 2,
                }] += 1;
                // How often the shortcut alone writes the row (the general path is not run).
                let mut alone = encoder.body_writer();
                let fill_nulls = deleted && mode == DeleteMode::Hard && format == BodyFormat::Csv;
                let image = match (key_only, fill_nulls) {
                    (false, _) => CopyImage::All,
                    (true, false) => CopyImage::KeyOnly,
                    (true, true) => CopyImage::KeyWithNulls,
                };
                if encoder
                    .write_copy_fields(&mut alone.buf, format, tuple.raw_values(), image)
                    .is_some()
                {
                    shortcut += 1;
                    assert!(slow.byte_len() > slow_mark, "{what}");
                }
            }
        }
        // Each outcome was exercised, and the shortcut wrote most rows.
        assert!(outcomes.iter().all(|n| *n > 50), "{outcomes:?}");
        assert!(shortcut > 4000, "{shortcut}");
    }
}

// Adversarial review of the CSV bodies (the `columns` header a CSV load needs).
#[cfg(test)]
mod csv_review;
