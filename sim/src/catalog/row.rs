//! The form a table keeps its rows in: each row's values packed into one allocation of bytes,
//! instead of a [`Value`] per column (48 bytes each) plus one allocation per string.
//!
//! Owns that byte form and nothing else: what a row holds is the table's concern. Packing exists
//! for size, and size is speed: a million-row copy into the sim used to spend a third of its time
//! faulting in and growing the heap for rows four times this size. Rows holding JSON or ARRAY
//! values are kept as plain values (they are rare, and `serde_json::Value` does not survive a
//! round trip through text exactly). Reading a row back gives exactly the values stored, bit for
//! bit (`-0.0` stays `-0.0`).

use std::fmt;

use super::value::{Date, DateTime, Decimal, Value};

/// One stored row, aligned with the table's columns.
#[derive(Clone)]
pub(crate) enum StoredRow {
    /// Values packed by [`StoredRow::new`] (see `Tag`).
    Packed(Box<[u8]>),
    /// Values as they are (a row with a JSON or ARRAY value).
    Values(Box<[Value]>),
}

/// The first byte of each packed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Tag {
    Null = 0,
    False = 1,
    True = 2,
    /// `i64`, 8 bytes (integers that fit, which is nearly all).
    Int64 = 3,
    /// `i128`, 16 bytes.
    Int128 = 4,
    /// `f64` bits, 8 bytes.
    Float = 5,
    /// Scale (1 byte), then the unscaled value as `i64`.
    Decimal64 = 6,
    /// Scale (1 byte), then the unscaled value as `i128`.
    Decimal128 = 7,
    /// Year (2 bytes), month, day.
    Date = 8,
    /// A date, then microseconds of the day (8 bytes).
    DateTime = 9,
    /// Length (4 bytes), then the UTF-8 bytes.
    Text = 10,
}

impl Tag {
    const ALL: [Tag; 11] = [
        Tag::Null,
        Tag::False,
        Tag::True,
        Tag::Int64,
        Tag::Int128,
        Tag::Float,
        Tag::Decimal64,
        Tag::Decimal128,
        Tag::Date,
        Tag::DateTime,
        Tag::Text,
    ];
}

impl StoredRow {
    /// Stores `values`, packing them through `buffer` (reused across rows; its contents are
    /// replaced).
    pub(crate) fn new(values: &[Value], buffer: &mut Vec<u8>) -> StoredRow {
        match packed(values, buffer) {
            Some(bytes) => StoredRow::Packed(bytes),
            None => StoredRow::Values(values.into()),
        }
    }

    /// The row's values.
    pub(crate) fn values(&self) -> Vec<Value> {
        match self {
            StoredRow::Packed(bytes) => {
                let mut reader = Reader { bytes, at: 0 };
                let mut values = Vec::new();
                while reader.at < bytes.len() {
                    values.push(reader.value());
                }
                values
            }
            StoredRow::Values(values) => values.to_vec(),
        }
    }

    /// The value of column `index` alone.
    pub(crate) fn value(&self, index: usize) -> Value {
        match self {
            StoredRow::Packed(bytes) => {
                let mut reader = Reader { bytes, at: 0 };
                for _ in 0..index {
                    reader.skip();
                }
                reader.value()
            }
            StoredRow::Values(values) => values[index].clone(),
        }
    }
}

impl PartialEq for StoredRow {
    fn eq(&self, other: &StoredRow) -> bool {
        match (self, other) {
            // Equal bytes are equal values; unequal bytes may still be (`0.0 == -0.0`).
            (StoredRow::Packed(a), StoredRow::Packed(b)) if a == b => true,
            _ => self.values() == other.values(),
        }
    }
}

impl fmt::Debug for StoredRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.values()).finish()
    }
}

/// The values packed, `None` when one of them cannot be (JSON, ARRAY).
fn packed(values: &[Value], buffer: &mut Vec<u8>) -> Option<Box<[u8]>> {
    buffer.clear();
    for value in values {
        if !pack(value, buffer) {
            return None;
        }
    }
    Some(buffer.as_slice().into())
}

/// Appends `value` packed; false for values kept as they are (JSON, ARRAY).
fn pack(value: &Value, out: &mut Vec<u8>) -> bool {
    match value {
        Value::Null => out.push(Tag::Null as u8),
        Value::Bool(false) => out.push(Tag::False as u8),
        Value::Bool(true) => out.push(Tag::True as u8),
        Value::Int(i) => match i64::try_from(*i) {
            Ok(small) => {
                out.push(Tag::Int64 as u8);
                out.extend_from_slice(&small.to_le_bytes());
            }
            Err(_) => {
                out.push(Tag::Int128 as u8);
                out.extend_from_slice(&i.to_le_bytes());
            }
        },
        Value::Float(f) => {
            out.push(Tag::Float as u8);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Decimal(d) => match i64::try_from(d.unscaled) {
            Ok(small) => {
                out.extend_from_slice(&[Tag::Decimal64 as u8, d.scale]);
                out.extend_from_slice(&small.to_le_bytes());
            }
            Err(_) => {
                out.extend_from_slice(&[Tag::Decimal128 as u8, d.scale]);
                out.extend_from_slice(&d.unscaled.to_le_bytes());
            }
        },
        Value::Date(d) => {
            out.push(Tag::Date as u8);
            pack_date(d, out);
        }
        Value::DateTime(dt) => {
            out.push(Tag::DateTime as u8);
            pack_date(&dt.date, out);
            out.extend_from_slice(&dt.micros_of_day.to_le_bytes());
        }
        Value::Text(s) => {
            let Ok(len) = u32::try_from(s.len()) else {
                return false;
            };
            out.push(Tag::Text as u8);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Json(_) | Value::Array(_) => return false,
    }
    true
}

fn pack_date(d: &Date, out: &mut Vec<u8>) {
    out.extend_from_slice(&d.year.to_le_bytes());
    out.extend_from_slice(&[d.month, d.day]);
}

/// Reads packed values in order. The bytes were written by [`pack`], so every tag is known and
/// every length is in bounds (indexing cannot fail).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        out
    }

    fn tag(&mut self) -> Tag {
        let [byte] = self.take::<1>();
        // `pack` writes only these tags; anything else would be a bug, read as NULL.
        Tag::ALL
            .get(usize::from(byte))
            .copied()
            .unwrap_or(Tag::Null)
    }

    fn date(&mut self) -> Date {
        let year = u16::from_le_bytes(self.take());
        let [month, day] = self.take();
        Date { year, month, day }
    }

    fn value(&mut self) -> Value {
        match self.tag() {
            Tag::Null => Value::Null,
            Tag::False => Value::Bool(false),
            Tag::True => Value::Bool(true),
            Tag::Int64 => Value::Int(i128::from(i64::from_le_bytes(self.take()))),
            Tag::Int128 => Value::Int(i128::from_le_bytes(self.take())),
            Tag::Float => Value::Float(f64::from_bits(u64::from_le_bytes(self.take()))),
            Tag::Decimal64 => {
                let [scale] = self.take();
                let unscaled = i128::from(i64::from_le_bytes(self.take()));
                Value::Decimal(Decimal { unscaled, scale })
            }
            Tag::Decimal128 => {
                let [scale] = self.take();
                let unscaled = i128::from_le_bytes(self.take());
                Value::Decimal(Decimal { unscaled, scale })
            }
            Tag::Date => Value::Date(self.date()),
            Tag::DateTime => {
                let date = self.date();
                let micros_of_day = u64::from_le_bytes(self.take());
                Value::DateTime(DateTime {
                    date,
                    micros_of_day,
                })
            }
            Tag::Text => {
                let len = u32::from_le_bytes(self.take()) as usize;
                let text = &self.bytes[self.at..self.at + len];
                self.at += len;
                // Written from a `String`: always valid UTF-8.
                Value::Text(String::from_utf8_lossy(text).into_owned())
            }
        }
    }

    fn skip(&mut self) {
        let width = match self.tag() {
            Tag::Null | Tag::False | Tag::True => 0,
            Tag::Int64 | Tag::Float => 8,
            Tag::Int128 => 16,
            Tag::Decimal64 => 9,
            Tag::Decimal128 => 17,
            Tag::Date => 4,
            Tag::DateTime => 12,
            Tag::Text => u32::from_le_bytes(self.take()) as usize,
        };
        self.at += width;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Value> {
        vec![
            Value::Null,
            Value::Bool(false),
            Value::Bool(true),
            Value::Int(0),
            Value::Int(-1),
            Value::Int(i128::from(i64::MAX)),
            Value::Int(i128::from(i64::MIN)),
            Value::Int(i128::from(i64::MAX) + 1),
            Value::Int(i128::MIN),
            Value::Int(i128::MAX),
            Value::Float(-0.0),
            Value::Float(1.5e300),
            Value::Float(f64::MIN_POSITIVE),
            Value::Decimal(Decimal {
                unscaled: -12345,
                scale: 2,
            }),
            Value::Decimal(Decimal {
                unscaled: 10i128.pow(38) - 1,
                scale: 38,
            }),
            Value::Date(Date::new(0, 1, 1).unwrap()),
            Value::Date(Date::new(9999, 12, 31).unwrap()),
            Value::DateTime(DateTime {
                date: Date::new(2024, 2, 29).unwrap(),
                micros_of_day: 86_399_999_999,
            }),
            Value::Text(String::new()),
            Value::Text("héllo\0\u{1F600}".into()),
            Value::Text("x".repeat(70_000)),
        ]
    }

    #[test]
    fn values_come_back_exactly() {
        let values = samples();
        let mut buffer = Vec::new();
        let row = StoredRow::new(&values, &mut buffer);
        assert!(matches!(row, StoredRow::Packed(_)));
        let back = row.values();
        assert_eq!(back, values);
        // Bit for bit, which `==` on floats does not check.
        assert_eq!(format!("{back:?}"), format!("{values:?}"));
        for (i, value) in values.iter().enumerate() {
            assert_eq!(&row.value(i), value, "{i}");
        }
        assert!(StoredRow::new(&[], &mut buffer).values().is_empty());
    }

    #[test]
    fn json_and_arrays_are_kept_as_values() {
        let values = vec![
            Value::Int(1),
            Value::Json(serde_json::json!({"a": 1.0000000000000002})),
            Value::Array(vec![Value::Null, Value::Text("a".into())]),
        ];
        let mut buffer = Vec::new();
        let row = StoredRow::new(&values, &mut buffer);
        assert!(matches!(row, StoredRow::Values(_)));
        assert_eq!(row.values(), values);
        assert_eq!(row.value(1), values[1]);
    }

    #[test]
    fn equality_is_value_equality() {
        let mut buffer = Vec::new();
        let zero = StoredRow::new(&[Value::Float(0.0)], &mut buffer);
        let negative_zero = StoredRow::new(&[Value::Float(-0.0)], &mut buffer);
        assert_eq!(zero, negative_zero);
        let one = StoredRow::new(&[Value::Float(1.0)], &mut buffer);
        assert_ne!(zero, one);
    }
}
