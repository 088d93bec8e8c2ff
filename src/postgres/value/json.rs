//! JSON rendering of decoded values for `starwal tail` (and anyone needing a JSON string writer):
//! [`write_json`] appends one [`Value`], [`write_json_string`] appends a quoted, escaped string.
//! Both append to a caller's buffer and allocate nothing per value. Numbers stay exact: integers
//! and finite floats are JSON numbers (the float's original text when it is valid JSON), numerics
//! are strings of their exact digits, NaN/Infinity are strings; dates and times are ISO 8601
//! strings (timestamptz with `Z`; BC and years past 9999 in ISO 8601's expanded, astronomical
//! form: 44 BC is `-0043`; `infinity`/`-infinity` as those words); json/jsonb are embedded
//! compactly ([`write_compact_json`]: a `json` value keeps its source text, newlines included,
//! and a line of `tail` must stay one line); arrays nest, whatever their dimensions, and lose
//! their lower bounds (`[0:2]={1,2,3}` is `[1,2,3]`). It does not write StarRocks Stream Load
//! bodies (the sink owns that format). Protects invariant #9: any value, however odd its text,
//! yields well-formed JSON.

use std::io::Write as _;

use super::array::{Array, ArrayElement};
use super::digits::write_i64;
use super::number::is_json_number;
use super::text::{TextChunks, TextValue};
use super::{Date, Float, Numeric, Timestamp, Value};

/// What each byte becomes inside a JSON string: 0 = itself, `u` = `\u00XX`, else `\` + that byte.
static ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `value` as JSON. `Value::Null` becomes `null`; see the module doc for each type.
pub fn write_json(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(integer) => write_i64(out, *integer),
        Value::Float(float) => write_float(float, out),
        Value::Numeric(numeric) => write_json_string(
            match numeric {
                Numeric::Finite(digits) => digits,
                Numeric::NaN => "NaN",
                Numeric::Infinity => "Infinity",
                Numeric::NegInfinity => "-Infinity",
            },
            out,
        ),
        Value::Text(text) | Value::Bytea(text) => write_json_string_chunks(text.chunks(), out),
        Value::Json(json) => write_compact_json(json, out),
        Value::Uuid(text) | Value::Time(text) | Value::TimeTz(text) | Value::Interval(text) => {
            write_json_string(text, out)
        }
        Value::Date(date) => match date {
            Date::Civil(civil) => {
                out.push(b'"');
                civil.write_iso8601(out);
                out.push(b'"');
            }
            Date::Infinity => out.extend_from_slice(b"\"infinity\""),
            Date::NegInfinity => out.extend_from_slice(b"\"-infinity\""),
        },
        Value::Timestamp(timestamp) => write_timestamp(timestamp, "", out),
        Value::TimestampTz(timestamp) => write_timestamp(timestamp, "Z", out),
        Value::Array(array) => write_json_array(array, out, write_json),
    }
}

/// Appends `array` as a JSON array (nested arrays nested, NULL elements `null`), writing each
/// element with `write_element` — `write_json` here, the sink's own conventions there.
pub fn write_json_array(
    array: &Array<'_>,
    out: &mut Vec<u8>,
    write_element: fn(&Value<'_>, &mut Vec<u8>),
) {
    out.push(b'[');
    for (index, element) in array.elements().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        match element {
            Ok(ArrayElement::Null) => out.extend_from_slice(b"null"),
            Ok(ArrayElement::Value(value)) => write_element(&value, out),
            Ok(ArrayElement::Nested(nested)) => write_element(&Value::Array(nested), out),
            // Unreachable: the literal was validated when decoded, and iteration repeats that
            // walk. Should it ever happen, keep the data visible rather than drop it.
            Err(_) => write_json_string(array.literal(), out),
        }
    }
    out.push(b']');
}

/// Appends `text` as a quoted JSON string (`"`, `\` and control characters escaped; `\n`-style
/// short forms where JSON has them, `\u00XX` otherwise).
pub fn write_json_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    write_escaped(text.as_bytes(), out);
    out.push(b'"');
}

fn write_json_string_chunks(chunks: TextChunks<'_>, out: &mut Vec<u8>) {
    out.push(b'"');
    for chunk in chunks {
        write_escaped(chunk.as_bytes(), out);
    }
    out.push(b'"');
}

/// Appends `bytes` with JSON string escapes, copying runs that need none in one go.
fn write_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    let mut run_start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape = ESCAPES[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(bytes.get(run_start..index).unwrap_or_default());
        run_start = index + 1;
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX_DIGITS[usize::from(byte >> 4)]);
            out.push(HEX_DIGITS[usize::from(byte & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
    }
    out.extend_from_slice(bytes.get(run_start..).unwrap_or_default());
}

fn write_float(float: &Float<'_>, out: &mut Vec<u8>) {
    match float {
        Float::Finite { text, .. } if is_json_number(text) => {
            out.extend_from_slice(text.as_bytes())
        }
        // Text Postgres would not print (`.5`, `+1`): Rust's shortest round-trip form, which is
        // valid JSON for finite values (`1e100`, `0.5`, `-0.0`). Writing to a Vec cannot fail.
        Float::Finite { value, .. } => {
            let _ = write!(out, "{value:?}");
        }
        Float::NaN => out.extend_from_slice(b"\"NaN\""),
        Float::Infinity => out.extend_from_slice(b"\"Infinity\""),
        Float::NegInfinity => out.extend_from_slice(b"\"-Infinity\""),
    }
}

fn write_timestamp(timestamp: &Timestamp, zone_designator: &str, out: &mut Vec<u8>) {
    match timestamp {
        Timestamp::Civil(civil) => {
            out.push(b'"');
            civil.write_iso8601(out);
            out.extend_from_slice(zone_designator.as_bytes());
            out.push(b'"');
        }
        Timestamp::Infinity => out.extend_from_slice(b"\"infinity\""),
        Timestamp::NegInfinity => out.extend_from_slice(b"\"-infinity\""),
    }
}

/// Appends the JSON text `json` without its insignificant whitespace (space, tab, newline,
/// carriage return outside strings). Strings are copied byte for byte: JSON forbids raw control
/// characters inside them, so no line break survives. Runs between whitespace are copied whole;
/// the state (inside a string, after a backslash) carries across the chunks of an array element.
pub fn write_compact_json(json: &TextValue<'_>, out: &mut Vec<u8>) {
    let mut in_string = false;
    let mut after_backslash = false;
    for chunk in json.chunks() {
        let bytes = chunk.as_bytes();
        let mut run_start = 0;
        for (index, &byte) in bytes.iter().enumerate() {
            if in_string {
                if after_backslash {
                    after_backslash = false;
                } else if byte == b'\\' {
                    after_backslash = true;
                } else if byte == b'"' {
                    in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b' ' | b'\t' | b'\n' | b'\r' => {
                    out.extend_from_slice(bytes.get(run_start..index).unwrap_or_default());
                    run_start = index + 1;
                }
                _ => {}
            }
        }
        out.extend_from_slice(bytes.get(run_start..).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::value::decode;
    use crate::postgres::Oid;

    fn json_of(type_oid: u32, text: &str) -> String {
        let value = decode(Oid(type_oid), text.as_bytes()).unwrap();
        let mut out = Vec::new();
        write_json(&value, &mut out);
        let json = String::from_utf8(out).unwrap();
        serde_json::from_str::<serde_json::Value>(&json)
            .unwrap_or_else(|error| panic!("{json} is not JSON: {error}"));
        json
    }

    #[test]
    fn scalars() {
        let cases = [
            (16, "t", "true"),
            (16, "f", "false"),
            (21, "-32768", "-32768"),
            (23, "42", "42"),
            (20, "-9223372036854775808", "-9223372036854775808"),
            (26, "4294967295", "4294967295"),
            (701, "1e+100", "1e+100"),
            (701, "-0", "-0"),
            (701, "0.1", "0.1"),
            (700, "NaN", "\"NaN\""),
            (701, "Infinity", "\"Infinity\""),
            (701, "-Infinity", "\"-Infinity\""),
            (701, ".5", "0.5"),
            (
                1700,
                "123456789012345678901234567890.000001",
                "\"123456789012345678901234567890.000001\"",
            ),
            (1700, "NaN", "\"NaN\""),
            (25, "say \"hi\"\n\\", r#""say \"hi\"\n\\""#),
            (1043, "\u{1}é", r#""\u0001é""#),
            (17, r"\x0102ff", r#""\\x0102ff""#),
            (
                2950,
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"",
            ),
            (3802, r#"{"a": [1, null]}"#, r#"{"a":[1,null]}"#),
            (114, "[1,2]", "[1,2]"),
            (114, "{\n \"a\" : 1 }", r#"{"a":1}"#),
            (1082, "2026-11-22", "\"2026-11-22\""),
            (1082, "infinity", "\"infinity\""),
            (1082, "0044-03-15 BC", "\"-0043-03-15\""),
            (1082, "0001-01-01 BC", "\"0000-01-01\""),
            (1082, "10000-01-01", "\"+10000-01-01\""),
            (1114, "0044-03-15 12:00:00 BC", "\"-0043-03-15T12:00:00\""),
            (1083, "10:00:00", "\"10:00:00\""),
            (1266, "10:00:00+05:30", "\"10:00:00+05:30\""),
            (
                1114,
                "2026-11-22 10:00:00.123456",
                "\"2026-11-22T10:00:00.123456\"",
            ),
            (
                1184,
                "2026-11-22 10:00:00.123456+00",
                "\"2026-11-22T10:00:00.123456Z\"",
            ),
            (
                1184,
                "2026-11-22 15:30:00+05:30",
                "\"2026-11-22T10:00:00Z\"",
            ),
            (1184, "-infinity", "\"-infinity\""),
            (1186, "P1Y2M3DT4H5M6.5S", "\"P1Y2M3DT4H5M6.5S\""),
            (16_385, "happy", "\"happy\""),
        ];
        for (oid, text, expected) in cases {
            assert_eq!(json_of(oid, text), expected, "oid {oid} text {text:?}");
        }
    }

    #[test]
    fn json_loses_only_insignificant_whitespace() {
        let cases = [
            (
                "{\n \"a\" : 1 ,\r\n\t\"b\": [ 1 , 2 ] }",
                r#"{"a":1,"b":[1,2]}"#,
            ),
            (
                r#"{"k e y": " v \" a\\ l ", "n": null}"#,
                r#"{"k e y":" v \" a\\ l ","n":null}"#,
            ),
            ("  \"a b\"  ", r#""a b""#),
            ("[]", "[]"),
        ];
        for (text, expected) in cases {
            let mut out = Vec::new();
            write_compact_json(&TextValue::plain(text), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{text:?}");
        }
        // An array element carrying escapes: the state holds across its chunks.
        let value = decode(Oid(199), r#"{"{\"a b\": \"c\\\" d\"}"}"#.as_bytes()).unwrap();
        let mut out = Vec::new();
        write_json(&value, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"[{"a b":"c\" d"}]"#);
    }

    #[test]
    fn null_is_null() {
        let mut out = Vec::new();
        write_json(&Value::Null, &mut out);
        assert_eq!(out, b"null");
    }

    #[test]
    fn arrays_nest() {
        let cases = [
            (1007, "{1,2,NULL}", "[1,2,null]"),
            (1007, "{{1,2},{3,4}}", "[[1,2],[3,4]]"),
            (1007, "{}", "[]"),
            (
                1009,
                r#"{a,"b \"c\"","d\\e",NULL,""}"#,
                r#"["a","b \"c\"","d\\e",null,""]"#,
            ),
            (3807, r#"{"{\"k\": \"v\"}","null"}"#, r#"[{"k":"v"},null]"#),
            (1001, r#"{"\\x01",NULL}"#, r#"["\\x01",null]"#),
            (
                1185,
                r#"{"2026-11-22 10:00:00-08"}"#,
                r#"["2026-11-22T18:00:00Z"]"#,
            ),
            (1022, "{1e+100,NaN}", r#"[1e+100,"NaN"]"#),
            (1231, "{1.50,-2}", r#"["1.50","-2"]"#),
            (1000, "{t,f}", "[true,false]"),
            (1007, "[0:1]={7,8}", "[7,8]"),
        ];
        for (oid, text, expected) in cases {
            assert_eq!(json_of(oid, text), expected, "oid {oid} text {text:?}");
        }
    }

    #[test]
    fn strings_match_serde_json() {
        let mut sample = String::new();
        for code in (0u32..0x80).chain([0x7f, 0xe9, 0x2028, 0x1f600]) {
            sample.push(char::from_u32(code).unwrap());
        }
        let mut out = Vec::new();
        write_json_string(&sample, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&sample).unwrap()
        );
    }
}
