//! Typed cell values and the conversions a load applies to raw input (reference §6 "NULLs",
//! "Over-length strings/overflowing numbers", §7 "Types").
//!
//! Owns [`Value`] (what a table stores), the value-level date/decimal types, and the rules that
//! turn a JSON value or a CSV/SQL text field into a `Value` of a given [`ColumnType`]. Each failure
//! says whether it is *invalid* (unparseable: StarRocks stores NULL in non-strict mode) or *out of
//! range* (too long, too large, bad date: the row is always filtered). It does not decide what a
//! failure does to a row — the loader applies `strict_mode` — and never panics on odd input.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::types::{ColumnType, MAX_JSON_BYTES};

/// One stored cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// BOOLEAN.
    Bool(bool),
    /// Any integer type (TINYINT … LARGEINT); the column type bounds it.
    Int(i128),
    /// FLOAT (rounded to f32 precision) or DOUBLE; NaN and ±infinity only from text (a JSON
    /// number cannot spell them), as StarRocks' string parser reads them.
    Float(f64),
    /// DECIMAL(P,S).
    Decimal(Decimal),
    /// DATE.
    Date(Date),
    /// DATETIME.
    DateTime(DateTime),
    /// CHAR, VARCHAR, STRING.
    Text(String),
    /// JSON.
    Json(serde_json::Value),
    /// ARRAY<T>.
    Array(Vec<Value>),
}

impl Value {
    /// Whether this is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as the MySQL text protocol shows it (`None` for NULL): integers in decimal,
    /// DECIMAL with exactly its scale, DATETIME with microseconds only when non-zero, BOOLEAN as
    /// `1`/`0`, JSON and ARRAY as compact JSON.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float(*f)),
            Value::Decimal(d) => Some(d.to_string()),
            Value::Date(d) => Some(d.to_string()),
            Value::DateTime(d) => Some(d.to_string()),
            Value::Text(s) => Some(s.clone()),
            Value::Json(j) => Some(j.to_string()),
            Value::Array(items) => Some(array_text(items)),
        }
    }

    /// The value as JSON (for verification output and the admin endpoint): integers beyond
    /// ±2^53 and decimals become strings so nothing is rounded.
    pub fn to_json(&self) -> serde_json::Value {
        const SAFE: i128 = 1 << 53;
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) if (-SAFE..=SAFE).contains(i) => serde_json::Value::from(*i as i64),
            Value::Int(i) => serde_json::Value::String(i.to_string()),
            // JSON has no NaN or infinity: those are their text, as the MySQL protocol shows it.
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(format_float(*f))),
            Value::Decimal(d) => serde_json::Value::String(d.to_string()),
            Value::Date(d) => serde_json::Value::String(d.to_string()),
            Value::DateTime(d) => serde_json::Value::String(d.to_string()),
            Value::Text(s) => serde_json::Value::String(s.clone()),
            Value::Json(j) => j.clone(),
            Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
        }
    }

    /// Orders two values of the same column for `merge_condition`. NULL sorts first; values of
    /// different kinds (impossible within one column) compare as `None`.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Null, Value::Null) => Some(Ordering::Equal),
            (Value::Null, _) => Some(Ordering::Less),
            (_, Value::Null) => Some(Ordering::Greater),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
            (Value::Decimal(a), Value::Decimal(b)) => Some(a.cmp_value(b)),
            (Value::Date(a), Value::Date(b)) => Some(a.cmp(b)),
            (Value::DateTime(a), Value::DateTime(b)) => Some(a.cmp(b)),
            (Value::Text(a), Value::Text(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            _ => None,
        }
    }

    /// The value used to fill a NOT NULL column that has no default when a row is created
    /// without it (partial update of a new key; StarRocks docs show INT becoming 0).
    pub fn zero_of(ty: &ColumnType) -> Value {
        match ty {
            ColumnType::Boolean => Value::Bool(false),
            ColumnType::TinyInt
            | ColumnType::SmallInt
            | ColumnType::Int
            | ColumnType::BigInt
            | ColumnType::LargeInt => Value::Int(0),
            ColumnType::Float | ColumnType::Double => Value::Float(0.0),
            ColumnType::Decimal { scale, .. } => Value::Decimal(Decimal {
                unscaled: 0,
                scale: *scale,
            }),
            ColumnType::Date => Value::Date(Date::EPOCH),
            ColumnType::DateTime => Value::DateTime(DateTime {
                date: Date::EPOCH,
                micros_of_day: 0,
            }),
            ColumnType::Char { .. } | ColumnType::Varchar { .. } | ColumnType::String => {
                Value::Text(String::new())
            }
            ColumnType::Json => Value::Json(serde_json::Value::Null),
            ColumnType::Array(_) => Value::Array(Vec::new()),
        }
    }

    /// Whether this value is of the kind `ty` stores (NULL fits every type; nullability is the
    /// column's concern) and within its limits.
    pub fn fits(&self, ty: &ColumnType) -> bool {
        match (self, ty) {
            (Value::Null, _) => true,
            (Value::Bool(_), ColumnType::Boolean) => true,
            (Value::Int(i), _) if int_bounds(ty).is_some() => {
                int_bounds(ty).is_some_and(|(lo, hi)| (lo..=hi).contains(i))
            }
            (Value::Float(_), ColumnType::Float | ColumnType::Double) => true,
            (Value::Decimal(d), ColumnType::Decimal { precision, scale }) => {
                d.scale == *scale && d.digits() <= u32::from(*precision)
            }
            (Value::Date(_), ColumnType::Date) | (Value::DateTime(_), ColumnType::DateTime) => true,
            (Value::Text(s), _) if ty.max_bytes().is_some() => {
                ty.max_bytes().is_some_and(|max| s.len() <= max)
            }
            (Value::Json(_), ColumnType::Json) => true,
            (Value::Array(items), ColumnType::Array(element)) => {
                items.iter().all(|item| item.fits(element))
            }
            _ => false,
        }
    }
}

/// An ARRAY as StarRocks prints it over the MySQL protocol (`[1,0]` for booleans,
/// `["a","b"]` for strings, dates and datetimes, numbers and decimals bare, `null` for NULL
/// elements), per the StarRocks docs' ARRAY examples.
fn array_text(items: &[Value]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => out.push_str("null"),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Decimal(_) => {
                out.push_str(&item.to_text().unwrap_or_default())
            }
            Value::Date(_) | Value::DateTime(_) | Value::Text(_) => out.push_str(
                &serde_json::Value::String(item.to_text().unwrap_or_default()).to_string(),
            ),
            Value::Json(j) => out.push_str(&j.to_string()),
            Value::Array(inner) => out.push_str(&array_text(inner)),
        }
    }
    out.push(']');
    out
}

fn format_float(f: f64) -> String {
    // StarRocks prints doubles with ryu's `d2s_buffered_n` (be/src/util/mysql_row_buffer.cpp
    // `push_number`), whose special values are `NaN`, `Infinity` and `-Infinity`.
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// Inclusive bounds of an integer type.
fn int_bounds(ty: &ColumnType) -> Option<(i128, i128)> {
    match ty {
        ColumnType::TinyInt => Some((i8::MIN.into(), i8::MAX.into())),
        ColumnType::SmallInt => Some((i16::MIN.into(), i16::MAX.into())),
        ColumnType::Int => Some((i32::MIN.into(), i32::MAX.into())),
        ColumnType::BigInt => Some((i64::MIN.into(), i64::MAX.into())),
        ColumnType::LargeInt => Some((i128::MIN, i128::MAX)),
        _ => None,
    }
}

/// A DECIMAL value: `unscaled × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decimal {
    /// The digits as an integer.
    pub unscaled: i128,
    /// Digits after the decimal point.
    pub scale: u8,
}

impl Decimal {
    /// Number of significant digits of the unscaled value (0 has one digit).
    fn digits(&self) -> u32 {
        let n = self.unscaled.unsigned_abs();
        // 128-bit division is a library call; most values fit 64 bits.
        if let Ok(mut n) = u64::try_from(n) {
            let mut digits = 1;
            while n >= 10 {
                n /= 10;
                digits += 1;
            }
            return digits;
        }
        let mut n = n;
        let mut digits = 1;
        while n >= 10 {
            n /= 10;
            digits += 1;
        }
        digits
    }

    fn cmp_value(&self, other: &Decimal) -> Ordering {
        // Same column ⇒ same scale; rescale defensively otherwise.
        if self.scale == other.scale {
            return self.unscaled.cmp(&other.unscaled);
        }
        let (a, b) = (self.unscaled as f64, other.unscaled as f64);
        let a = a / 10f64.powi(i32::from(self.scale));
        let b = b / 10f64.powi(i32::from(other.scale));
        a.partial_cmp(&b).unwrap_or(Ordering::Equal)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let negative = self.unscaled < 0;
        let digits = self.unscaled.unsigned_abs().to_string();
        let scale = usize::from(self.scale);
        let sign = if negative { "-" } else { "" };
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int_part, frac_part) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int_part}.{frac_part}")
    }
}

/// A calendar date in 0000-01-01 ..= 9999-12-31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date {
    /// Year, 0–9999.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day of month, 1–31 (valid for the month).
    pub day: u8,
}

impl Date {
    /// 1970-01-01.
    pub const EPOCH: Date = Date {
        year: 1970,
        month: 1,
        day: 1,
    };

    /// A validated date, `None` when out of range or not a real day.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if year > 9999 || !(1..=12).contains(&month) || day == 0 {
            return None;
        }
        if day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// Days since 0000-01-01 (proleptic Gregorian), for the order-preserving key encoding.
    pub(crate) fn day_number(&self) -> u32 {
        let y = u32::from(self.year);
        let mut days = y * 365 + leap_days_before(y);
        for m in 1..self.month {
            days += u32::from(days_in_month(self.year, m));
        }
        days + u32::from(self.day) - 1
    }
}

fn is_leap(year: u16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Leap years in [0, year).
fn leap_days_before(year: u32) -> u32 {
    if year == 0 {
        return 0;
    }
    let y = year - 1;
    // Year 0 is a leap year in the proleptic Gregorian calendar.
    1 + y / 4 - y / 100 + y / 400
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A zone-less date and time with microsecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DateTime {
    /// The date part.
    pub date: Date,
    /// Microseconds since midnight, < 86,400,000,000.
    pub micros_of_day: u64,
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.micros_of_day / 1_000_000;
        let micros = self.micros_of_day % 1_000_000;
        write!(
            f,
            "{} {:02}:{:02}:{:02}",
            self.date,
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        )?;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        Ok(())
    }
}

/// Why a raw input could not become a value of a column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionError {
    /// Invalid (NULL in non-strict mode) or out of range (always filtered).
    pub kind: ConversionErrorKind,
    /// The StarRocks-style reason, naming the column, the value and the type.
    pub message: String,
}

/// The two classes of conversion failure StarRocks distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionErrorKind {
    /// The input does not parse as the type (`'abc'` into INT). Non-strict mode stores NULL.
    Invalid,
    /// The input parses but does not fit (string too long, number overflow, JSON over 16 MB).
    /// The row is filtered regardless of `strict_mode`.
    OutOfRange,
}

impl fmt::Display for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConversionError {}

/// Shortens a raw value for messages so a 16 MB string does not end up in an error log line.
fn shown(raw: &str) -> String {
    const MAX: usize = 100;
    if raw.len() <= MAX {
        return raw.to_string();
    }
    let mut end = MAX;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &raw[..end])
}

fn invalid(column: &str, ty: &ColumnType, raw: &str) -> ConversionError {
    ConversionError {
        kind: ConversionErrorKind::Invalid,
        message: format!(
            "Value '{}' can't be converted to column '{column}' of type {ty}",
            shown(raw)
        ),
    }
}

fn out_of_range(column: &str, ty: &ColumnType, raw: &str) -> ConversionError {
    ConversionError {
        kind: ConversionErrorKind::OutOfRange,
        message: format!(
            "Value '{}' is out of range. The type of '{column}' is {ty}",
            shown(raw)
        ),
    }
}

impl ColumnType {
    /// Converts a CSV field or SQL literal (already unquoted) into a value of this type.
    ///
    /// The caller handles NULL markers (`\N`); an empty string is the empty string for string
    /// types and invalid for the others.
    pub fn convert_text(&self, column: &str, raw: &str) -> Result<Value, ConversionError> {
        match self {
            ColumnType::Boolean => match raw.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(invalid(column, self, raw)),
            },
            ColumnType::TinyInt
            | ColumnType::SmallInt
            | ColumnType::Int
            | ColumnType::BigInt
            | ColumnType::LargeInt => {
                let digits = raw.strip_prefix(['+', '-']).unwrap_or(raw);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid(column, self, raw));
                }
                let parsed = if digits.len() <= 18 {
                    // Cannot overflow 64 bits; `i128::from_str` is much slower.
                    let magnitude = digits
                        .bytes()
                        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                    let magnitude = i128::from(magnitude);
                    if raw.starts_with('-') {
                        -magnitude
                    } else {
                        magnitude
                    }
                } else {
                    raw.parse::<i128>()
                        .map_err(|_| out_of_range(column, self, raw))?
                };
                let (lo, hi) = int_bounds(self).unwrap_or((i128::MIN, i128::MAX));
                if (lo..=hi).contains(&parsed) {
                    Ok(Value::Int(parsed))
                } else {
                    Err(out_of_range(column, self, raw))
                }
            }
            ColumnType::Float | ColumnType::Double => {
                if let Some(special) = float_special(raw) {
                    return special.ok_or_else(|| invalid(column, self, raw));
                }
                let looks_numeric = !raw.is_empty()
                    && raw.bytes().all(|b| {
                        b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E')
                    });
                let parsed: f64 = if looks_numeric {
                    raw.parse().map_err(|_| invalid(column, self, raw))?
                } else {
                    return Err(invalid(column, self, raw));
                };
                if !parsed.is_finite() {
                    return Err(out_of_range(column, self, raw));
                }
                if *self == ColumnType::Float {
                    let narrowed = parsed as f32;
                    if !narrowed.is_finite() {
                        return Err(out_of_range(column, self, raw));
                    }
                    Ok(Value::Float(f64::from(narrowed)))
                } else {
                    Ok(Value::Float(parsed))
                }
            }
            ColumnType::Decimal { precision, scale } => parse_decimal(raw, *precision, *scale)
                .map(Value::Decimal)
                .map_err(|kind| match kind {
                    ConversionErrorKind::Invalid => invalid(column, self, raw),
                    ConversionErrorKind::OutOfRange => ConversionError {
                        kind,
                        message: format!(
                            "Decimal '{}' is out of range. The type of '{column}' is {self}",
                            shown(raw)
                        ),
                    },
                }),
            // A datetime with a time part loads into DATE by truncation, like a cast.
            ColumnType::Date => match parse_datetime(raw) {
                Some((date, _)) => Ok(Value::Date(date)),
                None => Err(date_error(column, self, raw)),
            },
            ColumnType::DateTime => match parse_datetime(raw) {
                Some((date, micros_of_day)) => Ok(Value::DateTime(DateTime {
                    date,
                    micros_of_day,
                })),
                None => Err(date_error(column, self, raw)),
            },
            ColumnType::Char { .. } | ColumnType::Varchar { .. } | ColumnType::String => {
                let max = self.max_bytes().unwrap_or(usize::MAX);
                if raw.len() > max {
                    return Err(ConversionError {
                        kind: ConversionErrorKind::OutOfRange,
                        message: format!(
                            "String '{}' (length={}) is too long. The max length of '{column}' is {max}",
                            shown(raw),
                            raw.len()
                        ),
                    });
                }
                Ok(Value::Text(raw.to_string()))
            }
            ColumnType::Json => {
                if raw.len() > MAX_JSON_BYTES {
                    return Err(json_too_large(column, raw.len()));
                }
                serde_json::from_str::<serde_json::Value>(raw)
                    .map(Value::Json)
                    .map_err(|_| invalid(column, self, raw))
            }
            ColumnType::Array(_) => {
                let parsed: serde_json::Value =
                    serde_json::from_str(raw).map_err(|_| invalid(column, self, raw))?;
                self.convert_json(column, &parsed)
            }
        }
    }

    /// Converts a parsed JSON value (a field of a JSON row) into a value of this type.
    ///
    /// JSON `null` is NULL. Strings are converted like text; numbers must fit; nested
    /// objects/arrays load into JSON and ARRAY columns.
    pub fn convert_json(
        &self,
        column: &str,
        json: &serde_json::Value,
    ) -> Result<Value, ConversionError> {
        use serde_json::Value as J;
        if json.is_null() {
            return Ok(Value::Null);
        }
        match (self, json) {
            (ColumnType::Json, _) => {
                // A JSON row's field loads into a JSON column as the value it is: a string stays a
                // JSON string (`"42"` is the string "42", not the number). StarRocks reads JSON
                // columns natively (be/src/exec/json_scanner.cpp `construct_json_type` keeps
                // TYPE_JSON; formats/json/binary_column.cpp `add_native_json_column` converts the
                // simdjson value as is). Only CSV and SQL text parse a string as JSON text.
                let value = json.clone();
                let size = value.to_string().len();
                if size > MAX_JSON_BYTES {
                    return Err(json_too_large(column, size));
                }
                Ok(Value::Json(value))
            }
            (ColumnType::Array(element), J::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(element.convert_json(column, item)?);
                }
                Ok(Value::Array(out))
            }
            (ColumnType::Array(_), J::String(s)) => self.convert_text(column, s),
            (ColumnType::Array(_), other) => Err(invalid(column, self, &other.to_string())),
            (ColumnType::Boolean, J::Bool(b)) => Ok(Value::Bool(*b)),
            (ColumnType::Boolean, J::Number(n)) => match n.as_f64() {
                Some(f) => Ok(Value::Bool(f != 0.0)),
                None => Err(invalid(column, self, &n.to_string())),
            },
            (_, J::Bool(b)) if int_bounds(self).is_some() => Ok(Value::Int(i128::from(*b))),
            (_, J::String(s)) => self.convert_text(column, s),
            (_, J::Number(n)) => self.convert_number_text(column, &n.to_string()),
            (_, J::Bool(b)) => self.convert_text(column, if *b { "true" } else { "false" }),
            (_, other @ (J::Object(_) | J::Array(_))) => match self.max_bytes() {
                Some(_) => self.convert_text(column, &other.to_string()),
                None => Err(invalid(column, self, &other.to_string())),
            },
            (_, J::Null) => Ok(Value::Null),
        }
    }

    /// Converts the exact text of a JSON number. Integral numbers with a zero fraction
    /// (`12.0`) load into integer columns; other fractions are invalid there.
    pub(crate) fn convert_number_text(
        &self,
        column: &str,
        raw: &str,
    ) -> Result<Value, ConversionError> {
        if int_bounds(self).is_some() && raw.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
            let as_decimal = parse_decimal(raw, 38, 0);
            return match as_decimal {
                Ok(d) if exact_integer(raw) => self.convert_text(column, &d.unscaled.to_string()),
                Ok(_) => Err(invalid(column, self, raw)),
                Err(ConversionErrorKind::OutOfRange) => Err(out_of_range(column, self, raw)),
                Err(ConversionErrorKind::Invalid) => Err(invalid(column, self, raw)),
            };
        }
        match self {
            ColumnType::Boolean => match raw.parse::<f64>() {
                Ok(f) => Ok(Value::Bool(f != 0.0)),
                Err(_) => Err(invalid(column, self, raw)),
            },
            _ => self.convert_text(column, raw),
        }
    }
}

/// NaN and ±infinity as StarRocks reads them from text (`StringParser::string_to_float` in
/// be/src/util/string_parser.hpp): surrounding whitespace and one sign are skipped, then the first
/// `i`/`I` or `n`/`N` in the rest decides — `inf` there (any case, anything may follow, so
/// `Infinity` and `-Infinity`) is ±infinity, `nan` is NaN, anything else fails. `None` when the
/// text has neither letter: an ordinary number, parsed as before.
fn float_special(raw: &str) -> Option<Option<Value>> {
    let body = raw.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'));
    let (negative, unsigned) = match body.as_bytes().first() {
        Some(b'-') => (true, &body[1..]),
        Some(b'+') => (false, &body[1..]),
        _ => (false, body),
    };
    let at = unsigned.find(['i', 'I', 'n', 'N'])?;
    let word = unsigned.get(at..at + 3).map(str::to_ascii_lowercase);
    Some(match word.as_deref() {
        Some("inf") => Some(Value::Float(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        })),
        Some("nan") => Some(Value::Float(f64::NAN)),
        _ => None,
    })
}

/// Whether a number text has no non-zero fractional digits (`12.000`, `1.2e1`).
fn exact_integer(raw: &str) -> bool {
    match parse_decimal(raw, 38, 6) {
        Ok(d) => d.unscaled % 1_000_000 == 0,
        Err(_) => false,
    }
}

fn json_too_large(column: &str, size: usize) -> ConversionError {
    ConversionError {
        kind: ConversionErrorKind::OutOfRange,
        message: format!(
            "JSON value of column '{column}' is {size} bytes, larger than the limit of {MAX_JSON_BYTES} bytes"
        ),
    }
}

fn date_error(column: &str, ty: &ColumnType, raw: &str) -> ConversionError {
    // Well-formed but impossible dates (month 13, year 10000) are out of range; garbage is invalid.
    let shape_ok = raw.len() >= 8 && raw.bytes().take(4).all(|b| b.is_ascii_digit());
    if shape_ok {
        out_of_range(column, ty, raw)
    } else {
        invalid(column, ty, raw)
    }
}

/// Parses `[+-]digits[.digits][e[+-]digits]` into a decimal of `scale` digits, rounding half
/// away from zero, and checks it fits `precision`.
fn parse_decimal(raw: &str, precision: u8, scale: u8) -> Result<Decimal, ConversionErrorKind> {
    let s = raw.trim();
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if let Some(plain) = plain_decimal(body, precision, scale) {
        return plain.map(|unscaled| Decimal {
            unscaled: if negative { -unscaled } else { unscaled },
            scale,
        });
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => {
            let exp: i32 = body[i + 1..]
                .parse()
                .map_err(|_| ConversionErrorKind::Invalid)?;
            (&body[..i], exp)
        }
        None => (body, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ConversionErrorKind::Invalid);
    }
    // All digits (`int_part` then `frac_part`, read in place), with the decimal point moved by
    // the exponent.
    let (int_digits, frac_digits) = (int_part.as_bytes(), frac_part.as_bytes());
    let digit_count = int_digits.len() + frac_digits.len();
    let point = i64::try_from(int_part.len()).map_err(|_| ConversionErrorKind::OutOfRange)?
        + i64::from(exponent);
    // Index (in the digits) of the last digit kept at the target scale.
    let keep = point + i64::from(scale);
    let mut unscaled: i128 = 0;
    let max = 10i128.pow(u32::from(precision));
    let digit_at = |i: i64| -> u8 {
        let Ok(i) = usize::try_from(i) else {
            return 0;
        };
        let byte = match int_digits.get(i) {
            Some(b) => Some(b),
            None => frac_digits.get(i - int_digits.len()),
        };
        byte.map_or(0, |b| b - b'0')
    };
    // Leading positions before the first digit contribute zeros; bound the loop by the
    // precision so absurd exponents cannot spin.
    let first = point.min(0);
    if keep - first > i64::from(precision) + 2 + i64::try_from(digit_count).unwrap_or(0) {
        // Far more integer digits than the precision allows (unless they are all zero).
        if int_digits.iter().chain(frac_digits).any(|d| *d != b'0') {
            return Err(ConversionErrorKind::OutOfRange);
        }
        return Ok(Decimal { unscaled: 0, scale });
    }
    let mut i = first;
    while i < keep {
        unscaled = unscaled
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(digit_at(i))))
            .ok_or(ConversionErrorKind::OutOfRange)?;
        if unscaled >= max {
            return Err(ConversionErrorKind::OutOfRange);
        }
        i += 1;
    }
    if digit_at(keep) >= 5 {
        unscaled += 1;
        if unscaled >= max {
            return Err(ConversionErrorKind::OutOfRange);
        }
    }
    Ok(Decimal {
        unscaled: if negative { -unscaled } else { unscaled },
        scale,
    })
}

/// The common case of [`parse_decimal`] without its general machinery: unsigned
/// `digits[.digits]` with no more fraction digits than `scale` (so no rounding) and at most 38
/// digits once scaled (so no overflow). `None` when `body` is not of that shape.
fn plain_decimal(
    body: &str,
    precision: u8,
    scale: u8,
) -> Option<Result<i128, ConversionErrorKind>> {
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    let plain = !(int_part.is_empty() && frac_part.is_empty())
        && scale <= precision
        && frac_part.len() <= usize::from(scale)
        && int_part.len() + usize::from(scale) <= 38
        && int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit());
    if !plain {
        return None;
    }
    let digits = int_part.bytes().chain(frac_part.bytes());
    let unscaled = digits.fold(0i128, |n, d| n * 10 + i128::from(d - b'0'))
        * 10i128.pow(u32::from(scale) - frac_part.len() as u32);
    if unscaled >= 10i128.pow(u32::from(precision)) {
        return Some(Err(ConversionErrorKind::OutOfRange));
    }
    Some(Ok(unscaled))
}

/// Parses `YYYY-MM-DD`, optionally followed by ` HH:MM:SS[.ffffff]` (or `T` as separator).
/// Returns the date and microseconds since midnight. Fractions beyond six digits are truncated.
fn parse_datetime(raw: &str) -> Option<(Date, u64)> {
    let b = raw.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    // At most four digits each, so no overflow.
    let num = |s: &[u8]| -> Option<u32> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let year = num(&b[0..4])?;
    let month = num(&b[5..7])?;
    let day = num(&b[8..10])?;
    let date = Date::new(
        u16::try_from(year).ok()?,
        u8::try_from(month).ok()?,
        u8::try_from(day).ok()?,
    )?;
    if b.len() == 10 {
        return Some((date, 0));
    }
    if !(b[10] == b' ' || b[10] == b'T') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let hour = num(&b[11..13])?;
    let minute = num(&b[14..16])?;
    let second = num(&b[17..19])?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut micros = 0u64;
    if b.len() > 19 {
        if b[19] != b'.' {
            return None;
        }
        let frac = &b[20..];
        if frac.is_empty() || frac.len() > 9 || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for i in 0..6 {
            micros = micros * 10 + u64::from(frac.get(i).map_or(0, |d| d - b'0'));
        }
    }
    let seconds = u64::from(hour) * 3600 + u64::from(minute) * 60 + u64::from(second);
    Some((date, seconds * 1_000_000 + micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ty: &str, raw: &str) -> Result<Value, ConversionError> {
        ColumnType::parse(ty).unwrap().convert_text("c", raw)
    }

    fn json(ty: &str, raw: &str) -> Result<Value, ConversionError> {
        let parsed: serde_json::Value = serde_json::from_str(raw).unwrap();
        ColumnType::parse(ty).unwrap().convert_json("c", &parsed)
    }

    fn kind(r: Result<Value, ConversionError>) -> Option<ConversionErrorKind> {
        r.err().map(|e| e.kind)
    }

    #[test]
    fn integers_are_range_checked_per_type() {
        assert_eq!(text("tinyint", "127").unwrap(), Value::Int(127));
        assert_eq!(
            kind(text("tinyint", "128")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(
            kind(text("int", "2147483648")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(text("int", "-2147483648").unwrap(), Value::Int(-2147483648));
        assert_eq!(kind(text("int", "abc")), Some(ConversionErrorKind::Invalid));
        assert_eq!(kind(text("int", "")), Some(ConversionErrorKind::Invalid));
        assert_eq!(kind(text("int", " 1")), Some(ConversionErrorKind::Invalid));
        assert_eq!(
            text("largeint", "170141183460469231731687303715884105727").unwrap(),
            Value::Int(i128::MAX)
        );
        assert_eq!(
            kind(text("largeint", "170141183460469231731687303715884105728")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(json("bigint", "12.0").unwrap(), Value::Int(12));
        assert_eq!(
            kind(json("bigint", "12.5")),
            Some(ConversionErrorKind::Invalid)
        );
        assert_eq!(
            json("bigint", "\"9007199254740993\"").unwrap(),
            Value::Int(9007199254740993)
        );
    }

    #[test]
    fn integer_fast_path_edges() {
        for raw in [
            "999999999999999999",
            "-999999999999999999",
            "+999999999999999999",
            "1000000000000000000",
            "9223372036854775807",
            "-9223372036854775808",
            "-0",
            "+0",
            "000000000000000000000000000012",
        ] {
            let expected = raw.parse::<i128>().unwrap();
            assert_eq!(
                text("largeint", raw).unwrap(),
                Value::Int(expected),
                "{raw}"
            );
        }
        assert_eq!(
            kind(text("bigint", "9223372036854775808")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(kind(text("int", "+-1")), Some(ConversionErrorKind::Invalid));
        assert_eq!(kind(text("int", "-")), Some(ConversionErrorKind::Invalid));
    }

    /// The shortcut gives what the general parser gives.
    #[test]
    fn plain_decimals_match_the_general_parser() {
        let general = |raw: &str, precision: u8, scale: u8| {
            let s = raw.trim();
            let body = s.strip_prefix(['-', '+']).unwrap_or(s);
            // The general path alone: an exponent of zero keeps the value and skips the shortcut.
            let negative = s.starts_with('-');
            parse_decimal(
                &format!("{}{body}e0", if negative { "-" } else { "" }),
                precision,
                scale,
            )
        };
        let raws = [
            "0",
            "-0",
            "+0",
            "1",
            "1.5",
            "1.50",
            "1.505",
            ".5",
            "5.",
            "-.5",
            "123.45",
            "999.99",
            "999.999",
            "1000",
            "99999999999999999999999999999999999999",
            "0.00000001",
            " 7.25 ",
            "00012.30",
            "1.2.3",
            "",
            ".",
            "-",
            "12a",
        ];
        for raw in raws {
            for (precision, scale) in [(5, 2), (12, 2), (38, 0), (38, 6), (38, 38), (10, 0), (3, 3)]
            {
                assert_eq!(
                    parse_decimal(raw, precision, scale),
                    general(raw, precision, scale),
                    "{raw} ({precision},{scale})"
                );
            }
        }
    }

    #[test]
    fn decimal_digit_count() {
        let digits = |unscaled: i128| Decimal { unscaled, scale: 0 }.digits();
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(-10), 2);
        assert_eq!(digits(i128::from(u64::MAX)), 20);
        assert_eq!(digits(i128::from(u64::MAX) + 1), 20);
        assert_eq!(digits(10i128.pow(38) - 1), 38);
        assert_eq!(digits(-(10i128.pow(38))), 39);
        assert_eq!(digits(i128::MIN), 39);
    }

    #[test]
    fn decimals_round_and_check_precision() {
        let d = |u, s| {
            Value::Decimal(Decimal {
                unscaled: u,
                scale: s,
            })
        };
        assert_eq!(text("decimal(5,2)", "123.45").unwrap(), d(12345, 2));
        assert_eq!(text("decimal(5,2)", "-1.005").unwrap(), d(-101, 2));
        assert_eq!(text("decimal(5,2)", "1e2").unwrap(), d(10000, 2));
        assert_eq!(text("decimal(5,2)", ".5").unwrap(), d(50, 2));
        assert_eq!(
            kind(text("decimal(5,2)", "1234.5")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(
            kind(text("decimal(5,2)", "999.999")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(
            kind(text("decimal(5,2)", "1e400")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(text("decimal(5,2)", "0e400").unwrap(), d(0, 2));
        assert_eq!(text("decimal(5,2)", "1e-400").unwrap(), d(0, 2));
        assert_eq!(
            kind(text("decimal(5,2)", "1.2.3")),
            Some(ConversionErrorKind::Invalid)
        );
        assert_eq!(
            kind(text("decimal(5,2)", "")),
            Some(ConversionErrorKind::Invalid)
        );
        assert_eq!(
            text("decimal(38,0)", "99999999999999999999999999999999999999").unwrap(),
            d(99999999999999999999999999999999999999, 0)
        );
        assert_eq!(d(-5, 3).to_text().unwrap(), "-0.005");
        assert_eq!(d(12345, 2).to_text().unwrap(), "123.45");
    }

    #[test]
    fn strings_are_checked_in_bytes() {
        assert_eq!(
            text("varchar(3)", "abc").unwrap(),
            Value::Text("abc".into())
        );
        // "é" is two bytes.
        assert_eq!(
            kind(text("varchar(3)", "éé")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(text("varchar(3)", "").unwrap(), Value::Text(String::new()));
        assert_eq!(
            json("varchar(10)", "123").unwrap(),
            Value::Text("123".into())
        );
        let long = "x".repeat(65534);
        assert_eq!(
            kind(text("string", &long)),
            Some(ConversionErrorKind::OutOfRange)
        );
    }

    #[test]
    fn dates_and_datetimes_validate_ranges_and_microseconds() {
        assert_eq!(
            text("date", "2024-02-29").unwrap().to_text().unwrap(),
            "2024-02-29"
        );
        assert_eq!(
            kind(text("date", "2023-02-29")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(
            kind(text("date", "2024-13-01")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(
            text("date", "0000-01-01").unwrap().to_text().unwrap(),
            "0000-01-01"
        );
        assert_eq!(
            kind(text("date", "10000-01-01")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(
            kind(text("date", "yesterday")),
            Some(ConversionErrorKind::Invalid)
        );
        let dt = text("datetime", "2024-01-02 03:04:05.123456").unwrap();
        assert_eq!(dt.to_text().unwrap(), "2024-01-02 03:04:05.123456");
        let dt = text("datetime", "2024-01-02T03:04:05").unwrap();
        assert_eq!(dt.to_text().unwrap(), "2024-01-02 03:04:05");
        let dt = text("datetime", "2024-01-02 03:04:05.5").unwrap();
        assert_eq!(dt.to_text().unwrap(), "2024-01-02 03:04:05.500000");
        assert!(text("datetime", "2024-01-02 24:00:00").is_err());
        assert!(text("datetime", "2024-01-02 03:04:05Z").is_err());
        assert!(text("datetime", "2024-01-02 03:04").is_err());
        assert_eq!(
            text("datetime", "9999-12-31 23:59:59.999999")
                .unwrap()
                .to_text()
                .unwrap(),
            "9999-12-31 23:59:59.999999"
        );
    }

    #[test]
    fn json_and_arrays() {
        assert_eq!(
            json("json", "{\"a\":[1,2]}").unwrap(),
            Value::Json(serde_json::json!({"a":[1,2]}))
        );
        // A JSON string field stays a JSON string, even when it holds JSON text (StarRocks
        // loads JSON columns natively); SQL/CSV text is parsed as JSON text.
        assert_eq!(
            json("json", "\"{\\\"a\\\":1}\"").unwrap(),
            Value::Json(serde_json::json!("{\"a\":1}"))
        );
        assert_eq!(
            json("json", "\"42\"").unwrap(),
            Value::Json(serde_json::json!("42"))
        );
        assert_eq!(
            text("json", "\"42\"").unwrap(),
            Value::Json(serde_json::json!("42"))
        );
        assert_eq!(
            text("json", "42").unwrap(),
            Value::Json(serde_json::json!(42))
        );
        assert_eq!(
            kind(text("json", "{bad")),
            Some(ConversionErrorKind::Invalid)
        );
        assert_eq!(
            json("array<int>", "[1,null,3]").unwrap(),
            Value::Array(vec![Value::Int(1), Value::Null, Value::Int(3)])
        );
        assert_eq!(
            kind(json("array<tinyint>", "[1,1000]")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(
            text("array<varchar(2)>", "[\"ab\"]").unwrap(),
            Value::Array(vec![Value::Text("ab".into())])
        );
        assert_eq!(
            kind(json("array<int>", "{\"a\":1}")),
            Some(ConversionErrorKind::Invalid)
        );
    }

    #[test]
    fn booleans_floats_and_nulls() {
        assert_eq!(json("boolean", "true").unwrap(), Value::Bool(true));
        assert_eq!(json("boolean", "0").unwrap(), Value::Bool(false));
        assert_eq!(text("boolean", "TRUE").unwrap(), Value::Bool(true));
        assert_eq!(
            kind(text("boolean", "yes")),
            Some(ConversionErrorKind::Invalid)
        );
        assert_eq!(json("double", "1.5").unwrap(), Value::Float(1.5));
        // NaN and infinities are read from strings the way StarRocks' string_to_float does.
        let float_of = |ty, raw| match json(ty, raw) {
            Ok(Value::Float(f)) => Some(f),
            _ => None,
        };
        assert!(float_of("double", "\"NaN\"").is_some_and(f64::is_nan));
        assert!(float_of("float", "\" nan \"").is_some_and(f64::is_nan));
        assert_eq!(float_of("double", "\"Infinity\""), Some(f64::INFINITY));
        assert_eq!(float_of("float", "\"-Infinity\""), Some(f64::NEG_INFINITY));
        assert_eq!(float_of("double", "\"+INF\""), Some(f64::INFINITY));
        assert_eq!(
            json("array<double>", "[1.5,\"-Infinity\",null]").unwrap(),
            Value::Array(vec![
                Value::Float(1.5),
                Value::Float(f64::NEG_INFINITY),
                Value::Null
            ])
        );
        for bad in ["\"in\"", "\"nope\"", "\"na\"", "\"-\""] {
            assert_eq!(
                kind(json("double", bad)),
                Some(ConversionErrorKind::Invalid),
                "{bad}"
            );
        }
        assert_eq!(Value::Float(f64::NAN).to_text().as_deref(), Some("NaN"));
        assert_eq!(
            Value::Float(f64::NEG_INFINITY).to_text().as_deref(),
            Some("-Infinity")
        );
        assert!(Value::Float(f64::INFINITY).fits(&ColumnType::Double));
        assert_eq!(
            kind(text("float", "1e39")),
            Some(ConversionErrorKind::OutOfRange)
        );
        assert_eq!(json("int", "null").unwrap(), Value::Null);
    }

    #[test]
    fn values_round_trip_through_serde() {
        let values = vec![
            Value::Int(i128::MAX),
            Value::Int(i128::MIN),
            Value::Decimal(Decimal {
                unscaled: -12345,
                scale: 2,
            }),
            Value::Json(serde_json::json!({"k": [1, "x"]})),
            Value::Array(vec![Value::Null, Value::Text("a".into())]),
        ];
        let encoded = serde_json::to_string(&values).unwrap();
        let decoded: Vec<Value> = serde_json::from_str(&encoded).unwrap();
        assert_eq!(decoded, values);
    }

    #[test]
    fn day_numbers_are_monotonic() {
        let a = Date::new(1999, 12, 31).unwrap().day_number();
        let b = Date::new(2000, 1, 1).unwrap().day_number();
        assert_eq!(b, a + 1);
        assert_eq!(Date::new(0, 1, 1).unwrap().day_number(), 0);
        assert_eq!(Date::new(1, 1, 1).unwrap().day_number(), 366);
    }
}
