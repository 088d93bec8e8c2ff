//! Decoding of PostgreSQL text-format column values into [`Value`]s that borrow from the received
//! bytes. pgoutput (text mode) and `COPY … TO STDOUT` both hand us what each type's output function
//! printed, so one decoder serves the stream and the snapshot. The replication session sets
//! `DateStyle=ISO`, `TimeZone=UTC`, `IntervalStyle=iso_8601` and `extra_float_digits=3`; the
//! decoder still accepts any numeric UTC offset in `timestamptz` text and converts it to UTC.
//!
//! Hot path: resolve a [`ValueKind`] once per relation column ([`ValueKind::from_type_oid`]), then
//! call [`ValueKind::decode`] per row. Decoding allocates nothing; strings, numerics, float text,
//! JSON and arrays are slices of the input, so a sink writes most values straight through.
//! Arrays are validated up front and their elements decoded again while iterated.
//!
//! Owns: the OID → kind table, text grammar of each builtin type, calendar arithmetic,
//! [`PgTimestamp`], and JSON rendering for `starwal tail` ([`write_json`]). Does not own: binary
//! format (`binary` pgoutput option, not used), NULL / unchanged-TOAST handling (the caller maps a
//! tuple's NULL to [`Value::Null`]), StarRocks type mapping (the sink). Protects invariant #9:
//! every byte string, for every kind, gives a `Value` or a [`ValueError`] naming type and text.

mod array;
mod datetime;
mod digits;
mod error;
mod json;
mod kind;
mod number;
mod text;

pub use array::{Array, ArrayElement, ArrayElements};
pub use datetime::{CivilDate, CivilDateTime, Date, Fraction, PgTimestamp, Timestamp};
pub use digits::{write_i64, write_u64, write_zero_padded};
pub(crate) use error::quote_for_error;
pub use error::ValueError;
pub use json::{write_compact_json, write_json, write_json_array, write_json_string};
pub use kind::{ScalarKind, ValueKind};
pub use number::{Float, Numeric};
pub use text::{TextChunks, TextValue};

use crate::postgres::Oid;

/// One decoded column value, borrowing from the text it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// SQL NULL (a tuple's `n` column, or a `NULL` array element).
    Null,
    /// `bool`.
    Bool(bool),
    /// `int2`, `int4`, `int8`, `oid`.
    Int(i64),
    /// `float4`, `float8`.
    Float(Float<'a>),
    /// `numeric`, exact.
    Numeric(Numeric<'a>),
    /// `text`, `varchar`, `bpchar`, `name`, `"char"`, enums and every unknown type.
    Text(TextValue<'a>),
    /// `bytea` as Postgres' hex text, `\x` prefix included.
    Bytea(TextValue<'a>),
    /// `uuid`, canonical hyphenated text.
    Uuid(&'a str),
    /// `json` / `jsonb` text as the source holds it (`json` keeps the input's whitespace), not
    /// re-validated (Postgres guarantees it is JSON).
    Json(TextValue<'a>),
    /// `date`.
    Date(Date),
    /// `time`, validated `HH:MM:SS[.ffffff]` text.
    Time(&'a str),
    /// `timetz`, validated text with its UTC offset.
    TimeTz(&'a str),
    /// `timestamp` (no zone).
    Timestamp(Timestamp),
    /// `timestamptz`, converted to UTC.
    TimestampTz(Timestamp),
    /// `interval`, as printed.
    Interval(&'a str),
    /// An array literal with its element kind.
    Array(Array<'a>),
}

/// Decodes one text-format value of the type `type_oid`. For many rows of one column, resolve
/// the kind once with [`ValueKind::from_type_oid`] and call [`ValueKind::decode`] instead.
pub fn decode(type_oid: Oid, text: &[u8]) -> Result<Value<'_>, ValueError> {
    ValueKind::from_type_oid(type_oid).decode(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every OID of the builtin table, plus an unknown one.
    const SUPPORTED_OIDS: &[u32] = &[
        16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 700, 701, 1042, 1043, 1082, 1083, 1114, 1184,
        1186, 1266, 1700, 2950, 3802, 1000, 1001, 1002, 1003, 1005, 1007, 1009, 1014, 1015, 1016,
        1021, 1022, 1028, 1115, 1182, 1183, 1185, 1187, 1231, 1270, 2951, 199, 3807, 143, 16_385,
    ];

    fn decoded(type_oid: u32, text: &str) -> Result<Value<'_>, ValueError> {
        decode(Oid(type_oid), text.as_bytes())
    }

    #[test]
    fn every_scalar_type_decodes() {
        assert_eq!(decoded(16, "t"), Ok(Value::Bool(true)));
        assert_eq!(decoded(21, "-7"), Ok(Value::Int(-7)));
        assert_eq!(
            decoded(23, "2147483647"),
            Ok(Value::Int(i64::from(i32::MAX)))
        );
        assert_eq!(decoded(20, "42"), Ok(Value::Int(42)));
        assert_eq!(decoded(26, "4294967295"), Ok(Value::Int(4_294_967_295)));
        assert_eq!(
            decoded(700, "1.5"),
            Ok(Value::Float(Float::Finite {
                value: 1.5,
                text: "1.5"
            }))
        );
        assert_eq!(
            decoded(1700, "-1.50"),
            Ok(Value::Numeric(Numeric::Finite("-1.50")))
        );
        assert_eq!(
            decoded(1700, "Infinity"),
            Ok(Value::Numeric(Numeric::Infinity))
        );
        assert_eq!(
            decoded(25, "héllo"),
            Ok(Value::Text(TextValue::plain("héllo")))
        );
        assert_eq!(
            decoded(1042, "ab  "),
            Ok(Value::Text(TextValue::plain("ab  ")))
        );
        assert_eq!(decoded(25, ""), Ok(Value::Text(TextValue::plain(""))));
        assert_eq!(
            decoded(17, r"\xdead"),
            Ok(Value::Bytea(TextValue::plain(r"\xdead")))
        );
        assert!(matches!(
            decoded(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            Ok(Value::Uuid(_))
        ));
        assert!(matches!(decoded(3802, "{}"), Ok(Value::Json(_))));
        assert!(matches!(
            decoded(1082, "2026-11-22"),
            Ok(Value::Date(Date::Civil(_)))
        ));
        assert_eq!(decoded(1083, "10:00:00"), Ok(Value::Time("10:00:00")));
        assert_eq!(
            decoded(1266, "10:00:00-08"),
            Ok(Value::TimeTz("10:00:00-08"))
        );
        assert!(matches!(
            decoded(1114, "2026-11-22 10:00:00"),
            Ok(Value::Timestamp(Timestamp::Civil(_)))
        ));
        assert!(matches!(
            decoded(1184, "2026-11-22 10:00:00+00"),
            Ok(Value::TimestampTz(Timestamp::Civil(_)))
        ));
        assert_eq!(decoded(1186, "PT0S"), Ok(Value::Interval("PT0S")));
        assert!(matches!(decoded(1007, "{1,NULL}"), Ok(Value::Array(_))));
        // An enum value (unknown OID) is text.
        assert_eq!(
            decoded(16_385, "sad"),
            Ok(Value::Text(TextValue::plain("sad")))
        );
    }

    #[test]
    fn invalid_values_name_type_and_text() {
        let cases = [
            (23, "12a", "invalid int4 value `12a`: not an integer"),
            (21, "40000", "invalid int2 value `40000`: out of range"),
            (26, "-1", "invalid oid value `-1`: out of range"),
            (16, "yes", "invalid bool value `yes`: expected t or f"),
            (
                701,
                "abc",
                "invalid float8 value `abc`: not a floating-point number",
            ),
            (
                1700,
                "1e5",
                "invalid numeric value `1e5`: not a decimal number",
            ),
            (
                1082,
                "2026-02-30",
                "invalid date value `2026-02-30`: no such day in the calendar",
            ),
            (
                17,
                r"\001",
                r"invalid bytea value `\001`: expected hex format \x…",
            ),
            (3802, "", "invalid jsonb value ``: empty JSON document"),
            (1007, "{1,2", "invalid int4[] value `{1,2`: expected {…}"),
        ];
        for (oid, text, message) in cases {
            assert_eq!(decoded(oid, text).unwrap_err().to_string(), message);
        }
        let error = decode(Oid(25), b"ab\xffcd").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid UTF-8 in text value `ab\u{fffd}cd`"
        );
        assert!(decode(Oid(1009), b"{\xff}").is_err());
        assert!(decode(Oid(23), "١٢".as_bytes()).is_err());
    }

    #[test]
    fn kind_resolved_once_decodes_many_rows() {
        let kind = ValueKind::from_type_oid(Oid(20));
        let rows: [&[u8]; 3] = [b"1", b"-2", b"3"];
        let sum: i64 = rows
            .iter()
            .map(|text| match kind.decode(text) {
                Ok(Value::Int(v)) => v,
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(sum, 2);
    }

    /// Whether `write_json` output parses as JSON; raw json/jsonb text is embedded unchecked (Postgres
    /// guarantees it), so values carrying arbitrary "JSON" are exempt.
    fn writes_valid_json(value: &Value<'_>) -> bool {
        let embeds_raw_json = match value {
            Value::Json(_) => true,
            Value::Array(array) => {
                matches!(array.element_kind(), ScalarKind::Json | ScalarKind::Jsonb)
            }
            _ => false,
        };
        let mut out = Vec::new();
        write_json(value, &mut out);
        embeds_raw_json || serde_json::from_slice::<serde_json::Value>(&out).is_ok()
    }

    proptest! {
        #[test]
        fn inv9_decode_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            oid_index in 0..SUPPORTED_OIDS.len(),
        ) {
            let oid = SUPPORTED_OIDS.get(oid_index).copied().unwrap_or(25);
            if let Ok(value) = decode(Oid(oid), &bytes) {
                prop_assert!(writes_valid_json(&value), "{:?}", value);
            }
        }

        #[test]
        fn inv9_decode_never_panics_on_value_like_text(
            text in r#"[-+0-9a-fA-Z:.{}\[\]"\\, NULTx]{0,40}"#,
            oid_index in 0..SUPPORTED_OIDS.len(),
        ) {
            let oid = SUPPORTED_OIDS.get(oid_index).copied().unwrap_or(25);
            if let Ok(value) = decode(Oid(oid), text.as_bytes()) {
                prop_assert!(writes_valid_json(&value), "{:?} from {:?}", value, text);
            }
        }

        #[test]
        fn timestamptz_offsets_shift_the_instant(
            days in -700_000i64..2_000_000,
            seconds in 0i64..86_400,
            offset_minutes in -959i64..=959,
        ) {
            // Build local text for a UTC instant shifted by the offset, then check it comes back.
            let utc = PgTimestamp(((days - 10_957) * 86_400 + seconds) * 1_000_000);
            let local = PgTimestamp(utc.0 + offset_minutes * 60 * 1_000_000);
            let Some(local_civil) = local.to_civil() else { return Ok(()) };
            prop_assume!(local_civil.date.year >= 1 && local_civil.date.year <= 9999);
            let mut text = Vec::new();
            local_civil.write_iso8601(&mut text);
            let mut text = String::from_utf8(text).unwrap().replacen('T', " ", 1);
            let sign = if offset_minutes < 0 { '-' } else { '+' };
            let magnitude = offset_minutes.abs();
            text.push_str(&format!("{sign}{:02}:{:02}", magnitude / 60, magnitude % 60));
            let expected = utc.to_civil().unwrap();
            prop_assert_eq!(
                decoded(1184, &text),
                Ok(Value::TimestampTz(Timestamp::Civil(expected)))
            );
        }
    }
}
