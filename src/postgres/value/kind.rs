//! What a Postgres type OID means to starwal: [`ValueKind`], resolved once per relation column,
//! and the per-row dispatch from text to [`Value`]. The table covers the builtin scalar types and
//! their array types; every other OID (enums, domains over unknown types, extensions, geometric
//! types) decodes as text, which is exactly what Postgres printed. It does not know StarRocks
//! types — the sink maps kinds to columns. Protects invariant #9: any bytes for any kind give a
//! [`Value`] or a [`ValueError`].

use std::fmt;

use super::array::decode_array;
use super::datetime::{parse_date, parse_time_of_day, parse_time_with_zone, parse_timestamp};
use super::error::ValueError;
use super::number::{parse_float, parse_integer_in_range, parse_numeric, validate_uuid};
use super::text::{validate_bytea_hex, TextValue};
use super::Value;
use crate::postgres::Oid;

/// How a column's text decodes: one of the builtin scalar types, or an array of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// A single value.
    Scalar(ScalarKind),
    /// An array literal (`{…}`) whose elements decode as the given kind.
    Array(ScalarKind),
}

/// The builtin scalar types starwal decodes; everything else is [`ScalarKind::Text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalarKind {
    /// `bool`: `t` / `f`.
    Bool,
    /// `int2` (smallint).
    Int2,
    /// `int4` (integer).
    Int4,
    /// `int8` (bigint).
    Int8,
    /// `oid`: unsigned 32-bit.
    Oid,
    /// `float4` (real).
    Float4,
    /// `float8` (double precision).
    Float8,
    /// `numeric`: exact decimal digits.
    Numeric,
    /// `text`, `varchar`, `bpchar`, `name`, `"char"`, enums and every type without a better kind.
    Text,
    /// `bytea` in hex output form (`\x0102`).
    Bytea,
    /// `uuid`.
    Uuid,
    /// `json`.
    Json,
    /// `jsonb`.
    Jsonb,
    /// `date`.
    Date,
    /// `time` (without time zone).
    Time,
    /// `timetz`.
    TimeTz,
    /// `timestamp` (without time zone).
    Timestamp,
    /// `timestamptz`, normalised to UTC when decoded.
    TimestampTz,
    /// `interval`, kept as Postgres printed it (ISO 8601 with `IntervalStyle=iso_8601`).
    Interval,
}

impl ScalarKind {
    /// The kind of a builtin scalar type OID, or `None` for OIDs this table does not know.
    pub fn from_type_oid(type_oid: Oid) -> Option<ScalarKind> {
        // Values from Postgres' pg_type.dat; they are fixed across versions.
        let kind = match type_oid.0 {
            16 => ScalarKind::Bool,
            17 => ScalarKind::Bytea,
            18 | 19 | 25 | 1042 | 1043 => ScalarKind::Text, // "char", name, text, bpchar, varchar
            20 => ScalarKind::Int8,
            21 => ScalarKind::Int2,
            23 => ScalarKind::Int4,
            26 => ScalarKind::Oid,
            114 => ScalarKind::Json,
            700 => ScalarKind::Float4,
            701 => ScalarKind::Float8,
            1082 => ScalarKind::Date,
            1083 => ScalarKind::Time,
            1114 => ScalarKind::Timestamp,
            1184 => ScalarKind::TimestampTz,
            1186 => ScalarKind::Interval,
            1266 => ScalarKind::TimeTz,
            1700 => ScalarKind::Numeric,
            2950 => ScalarKind::Uuid,
            3802 => ScalarKind::Jsonb,
            _ => return None,
        };
        Some(kind)
    }

    /// The element kind of a builtin array type OID, or `None` if the OID is not a known array.
    pub fn from_array_type_oid(array_type_oid: Oid) -> Option<ScalarKind> {
        let element = match array_type_oid.0 {
            1000 => ScalarKind::Bool,
            1001 => ScalarKind::Bytea,
            // char[], name[], text[], bpchar[], varchar[], xml[], cidr[], money[], macaddr[],
            // inet[], bit[], varbit[], tsvector[], jsonpath[]: their elements print as plain text.
            1002 | 1003 | 1009 | 1014 | 1015 | 143 | 651 | 791 | 1040 | 1041 | 1561 | 1563
            | 3643 | 4073 => ScalarKind::Text,
            1005 => ScalarKind::Int2,
            1007 => ScalarKind::Int4,
            1016 => ScalarKind::Int8,
            1021 => ScalarKind::Float4,
            1022 => ScalarKind::Float8,
            1028 => ScalarKind::Oid,
            1115 => ScalarKind::Timestamp,
            1182 => ScalarKind::Date,
            1183 => ScalarKind::Time,
            1185 => ScalarKind::TimestampTz,
            1187 => ScalarKind::Interval,
            1231 => ScalarKind::Numeric,
            1270 => ScalarKind::TimeTz,
            2951 => ScalarKind::Uuid,
            199 => ScalarKind::Json,
            3807 => ScalarKind::Jsonb,
            _ => return None,
        };
        Some(element)
    }

    /// The Postgres name of the type, as errors show it.
    pub fn name(self) -> &'static str {
        match self {
            ScalarKind::Bool => "bool",
            ScalarKind::Int2 => "int2",
            ScalarKind::Int4 => "int4",
            ScalarKind::Int8 => "int8",
            ScalarKind::Oid => "oid",
            ScalarKind::Float4 => "float4",
            ScalarKind::Float8 => "float8",
            ScalarKind::Numeric => "numeric",
            ScalarKind::Text => "text",
            ScalarKind::Bytea => "bytea",
            ScalarKind::Uuid => "uuid",
            ScalarKind::Json => "json",
            ScalarKind::Jsonb => "jsonb",
            ScalarKind::Date => "date",
            ScalarKind::Time => "time",
            ScalarKind::TimeTz => "timetz",
            ScalarKind::Timestamp => "timestamp",
            ScalarKind::TimestampTz => "timestamptz",
            ScalarKind::Interval => "interval",
        }
    }

    /// Decodes one text-format value of this kind.
    #[inline]
    pub fn decode(self, text: &[u8]) -> Result<Value<'_>, ValueError> {
        let kind = ValueKind::Scalar(self);
        let text =
            simdutf8::basic::from_utf8(text).map_err(|_| ValueError::invalid_utf8(kind, text))?;
        self.decode_str(text)
            .map_err(|reason| ValueError::invalid(kind, text.as_bytes(), reason))
    }

    /// Decodes validated UTF-8 text; the error is the reason, the caller adds type and text.
    #[inline]
    pub(crate) fn decode_str(self, text: &str) -> Result<Value<'_>, &'static str> {
        match self {
            ScalarKind::Bool => match text {
                "t" | "true" => Ok(Value::Bool(true)),
                "f" | "false" => Ok(Value::Bool(false)),
                _ => Err("expected t or f"),
            },
            ScalarKind::Int2 => {
                parse_integer_in_range(text, i16::MIN.into(), i16::MAX.into()).map(Value::Int)
            }
            ScalarKind::Int4 => {
                parse_integer_in_range(text, i32::MIN.into(), i32::MAX.into()).map(Value::Int)
            }
            ScalarKind::Int8 => parse_integer_in_range(text, i64::MIN, i64::MAX).map(Value::Int),
            ScalarKind::Oid => parse_integer_in_range(text, 0, u32::MAX.into()).map(Value::Int),
            ScalarKind::Float4 | ScalarKind::Float8 => parse_float(text).map(Value::Float),
            ScalarKind::Numeric => parse_numeric(text).map(Value::Numeric),
            ScalarKind::Text => Ok(Value::Text(TextValue::plain(text))),
            ScalarKind::Bytea => {
                validate_bytea_hex(text.bytes())?;
                Ok(Value::Bytea(TextValue::plain(text)))
            }
            ScalarKind::Uuid => {
                validate_uuid(text)?;
                Ok(Value::Uuid(text))
            }
            ScalarKind::Json | ScalarKind::Jsonb => {
                if text.trim_ascii().is_empty() {
                    return Err("empty JSON document");
                }
                Ok(Value::Json(TextValue::plain(text)))
            }
            ScalarKind::Date => parse_date(text).map(Value::Date),
            ScalarKind::Time => {
                parse_time_of_day(text)?;
                Ok(Value::Time(text))
            }
            ScalarKind::TimeTz => {
                parse_time_with_zone(text)?;
                Ok(Value::TimeTz(text))
            }
            ScalarKind::Timestamp => parse_timestamp(text, false).map(Value::Timestamp),
            ScalarKind::TimestampTz => parse_timestamp(text, true).map(Value::TimestampTz),
            ScalarKind::Interval => {
                if text.is_empty() {
                    return Err("empty interval");
                }
                Ok(Value::Interval(text))
            }
        }
    }
}

impl fmt::Display for ScalarKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ValueKind {
    /// The kind for a column of the given type OID: a builtin scalar, an array of one, or text for
    /// every OID the table does not know (enums, user-defined and extension types).
    pub fn from_type_oid(type_oid: Oid) -> ValueKind {
        if let Some(scalar) = ScalarKind::from_type_oid(type_oid) {
            ValueKind::Scalar(scalar)
        } else if let Some(element) = ScalarKind::from_array_type_oid(type_oid) {
            ValueKind::Array(element)
        } else {
            ValueKind::Scalar(ScalarKind::Text)
        }
    }

    /// Decodes one text-format value (a pgoutput `t` column or a `COPY` field) of this kind.
    ///
    /// The result borrows `text`; only arrays do more than one pass over it (structure is checked
    /// here, elements are decoded again when iterated).
    #[inline]
    pub fn decode(self, text: &[u8]) -> Result<Value<'_>, ValueError> {
        match self {
            ValueKind::Scalar(scalar) => scalar.decode(text),
            ValueKind::Array(element) => {
                let literal = simdutf8::basic::from_utf8(text)
                    .map_err(|_| ValueError::invalid_utf8(self, text))?;
                decode_array(literal, element).map(Value::Array)
            }
        }
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::Scalar(scalar) => f.write_str(scalar.name()),
            ValueKind::Array(element) => write!(f, "{}[]", element.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_oids_resolve_to_their_kinds() {
        let cases = [
            (16, ValueKind::Scalar(ScalarKind::Bool)),
            (20, ValueKind::Scalar(ScalarKind::Int8)),
            (1043, ValueKind::Scalar(ScalarKind::Text)),
            (1184, ValueKind::Scalar(ScalarKind::TimestampTz)),
            (3802, ValueKind::Scalar(ScalarKind::Jsonb)),
            (1007, ValueKind::Array(ScalarKind::Int4)),
            (1009, ValueKind::Array(ScalarKind::Text)),
            (199, ValueKind::Array(ScalarKind::Json)),
            (2951, ValueKind::Array(ScalarKind::Uuid)),
            (1185, ValueKind::Array(ScalarKind::TimestampTz)),
        ];
        for (oid, kind) in cases {
            assert_eq!(ValueKind::from_type_oid(Oid(oid)), kind, "oid {oid}");
        }
    }

    #[test]
    fn unknown_oids_are_text() {
        for oid in [0, 600, 16_385, 99_999, u32::MAX] {
            assert_eq!(
                ValueKind::from_type_oid(Oid(oid)),
                ValueKind::Scalar(ScalarKind::Text)
            );
        }
    }

    #[test]
    fn kinds_display_as_postgres_names() {
        assert_eq!(
            ValueKind::Scalar(ScalarKind::TimestampTz).to_string(),
            "timestamptz"
        );
        assert_eq!(ValueKind::Array(ScalarKind::Int4).to_string(), "int4[]");
    }
}
