//! The comparison form: one canonical text per value and StarRocks column type, reached from
//! both sides. The source side starts from the JSON the loader writes (`TableEncoder`, so every
//! documented lossy convention — NaN as a string, `infinity` dates clamped, timestamptz as UTC
//! wall time, array lower bounds dropped — is applied exactly as for a load); the target side
//! starts from the text StarRocks prints over the MySQL protocol. Each form undoes what the two
//! printers may legitimately differ in and nothing more:
//!
//! - BOOLEAN: `true`/`false` (JSON) and `1`/`0` (MySQL) are `1`/`0`;
//! - integers: the number; DECIMAL: trailing fractional zeros dropped (StarRocks prints the
//!   column's scale, Postgres the value's);
//! - FLOAT/DOUBLE: the value (shortest round-trip text), NaN and ±Infinity by name (StarRocks
//!   prints `nan`/`inf`), `-0` as `0`;
//! - DATETIME: trailing fractional zeros dropped (StarRocks prints a fraction only when it has
//!   one); DATE, VARCHAR: the text itself;
//! - JSON: parsed, keys sorted, whitespace gone, an integral float as the integer (StarRocks'
//!   binary JSON does not keep `1.0` apart from `1`);
//! - ARRAY: each element in its type's form, quoted or not (StarRocks quotes strings and dates,
//!   not decimals).

use crate::sink::starrocks::mapping::TargetType;

/// A value in the comparison form; `None` is NULL.
pub type Canon = Option<String>;

/// The comparison form of a field the loader wrote: `raw` is the field's JSON as the loader's
/// body holds it.
pub fn source_field(data_type: &TargetType, raw: &[u8]) -> Canon {
    let raw = std::str::from_utf8(raw).ok()?.trim();
    if raw == "null" {
        return None;
    }
    Some(match data_type {
        TargetType::Json | TargetType::Array(_) => canon_text(data_type, raw),
        _ => canon_text(data_type, &unquote(raw)),
    })
}

/// The comparison form of a value StarRocks printed (`None` = NULL).
pub fn target_field(data_type: &TargetType, text: Option<&str>) -> Canon {
    text.map(|text| canon_text(data_type, text))
}

/// A JSON string's text, or `raw` itself when it is not a string.
pub fn unquote(raw: &str) -> String {
    if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_owned())
    } else {
        raw.to_owned()
    }
}

/// An array element's text: a JSON string (the loader's, the sim's), or StarRocks' own quoting
/// (`MysqlRowBuffer::push_string` escapes only the quote and `\`, so a control character
/// arrives raw and the text is not valid JSON).
fn unquote_element(item: &str) -> String {
    match serde_json::from_str::<String>(item) {
        Ok(text) => text,
        Err(_) => unquote_starrocks(item, '"'),
    }
}

/// `item` without StarRocks' `quote`s around it and with its `\` escapes undone; `item` itself
/// when it is not quoted. A JSON element of an ARRAY prints quoted with `'`
/// (`JsonColumn::put_mysql_row_buffer`), the loader's and the sim's bare.
fn unquote_starrocks(item: &str, quote: char) -> String {
    let Some(inner) = item
        .strip_prefix(quote)
        .and_then(|rest| rest.strip_suffix(quote))
    else {
        return item.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

fn canon_text(data_type: &TargetType, text: &str) -> String {
    match data_type {
        TargetType::Boolean => match text.trim() {
            "1" | "true" | "TRUE" => "1".into(),
            "0" | "false" | "FALSE" => "0".into(),
            other => other.into(),
        },
        TargetType::SmallInt | TargetType::Int | TargetType::BigInt => text
            .trim()
            .parse::<i128>()
            .map_or_else(|_| text.to_owned(), |n| n.to_string()),
        TargetType::Float => text.trim().parse::<f32>().map_or_else(
            |_| text.to_owned(),
            |f| float_text(f64::from(f), || format!("{f:?}")),
        ),
        TargetType::Double => text
            .trim()
            .parse::<f64>()
            .map_or_else(|_| text.to_owned(), |f| float_text(f, || format!("{f:?}"))),
        TargetType::Decimal { .. } => decimal(text.trim()),
        TargetType::DateTime => datetime(text.trim()),
        TargetType::Date | TargetType::Varchar(_) => text.to_owned(),
        TargetType::Json => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => normalize_json(value).to_string(),
            Err(_) => text.to_owned(),
        },
        TargetType::Array(element) => match split_array(text) {
            Some(items) => {
                let items: Vec<Canon> = items
                    .iter()
                    .map(|item| {
                        if *item == "null" {
                            None
                        } else if matches!(**element, TargetType::Json) {
                            Some(canon_text(element, &unquote_starrocks(item, '\'')))
                        } else if matches!(**element, TargetType::Array(_)) {
                            Some(canon_text(element, item))
                        } else {
                            Some(canon_text(element, &unquote_element(item)))
                        }
                    })
                    .collect();
                serde_json::to_string(&items).unwrap_or_else(|_| text.to_owned())
            }
            None => text.to_owned(),
        },
    }
}

fn float_text(f: f64, shortest: impl FnOnce() -> String) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "Infinity".into()
    } else if f == f64::NEG_INFINITY {
        "-Infinity".into()
    } else if f == 0.0 {
        "0".into()
    } else {
        shortest()
    }
}

/// `-0012.3400` → `-12.34`; `0.000` → `0`. Anything that is not plain digits stays as it is.
fn decimal(text: &str) -> String {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if integer.is_empty() && fraction.is_empty()
        || !integer.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return text.to_owned();
    }
    let integer = integer.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let integer = if integer.is_empty() { "0" } else { integer };
    let mut out = String::with_capacity(text.len());
    if negative && (integer != "0" || !fraction.is_empty()) {
        out.push('-');
    }
    out.push_str(integer);
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

/// `2024-01-02 03:04:05.100000` → `2024-01-02 03:04:05.1`; a `T` separator becomes a space.
fn datetime(text: &str) -> String {
    let text = text.replacen('T', " ", 1);
    match text.split_once('.') {
        Some((whole, fraction)) if fraction.bytes().all(|b| b.is_ascii_digit()) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                whole.to_owned()
            } else {
                format!("{whole}.{fraction}")
            }
        }
        _ => text,
    }
}

fn normalize_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_json).collect()),
        // serde_json's map is ordered by key (no `preserve_order`): key order is gone here.
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, normalize_json(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The members of a JSON object as (key, raw value) pairs, or `None` when `text` is not one.
pub fn split_object(text: &[u8]) -> Option<Vec<(String, &[u8])>> {
    let mut scan = Scanner { text, at: 0 };
    scan.skip_ws();
    scan.expect(b'{')?;
    let mut members = Vec::new();
    scan.skip_ws();
    if scan.peek() == Some(b'}') {
        return Some(members);
    }
    loop {
        scan.skip_ws();
        let start = scan.at;
        scan.skip_string()?;
        let key: String = serde_json::from_slice(&text[start..scan.at]).ok()?;
        scan.skip_ws();
        scan.expect(b':')?;
        scan.skip_ws();
        let start = scan.at;
        scan.skip_value()?;
        members.push((key, &text[start..scan.at]));
        scan.skip_ws();
        match scan.next()? {
            b',' => continue,
            b'}' => return Some(members),
            _ => return None,
        }
    }
}

/// The elements of a JSON-like array as raw texts (`[1,"a",null]`), or `None`.
fn split_array(text: &str) -> Option<Vec<&str>> {
    let bytes = text.as_bytes();
    let mut scan = Scanner { text: bytes, at: 0 };
    scan.skip_ws();
    scan.expect(b'[')?;
    let mut items = Vec::new();
    scan.skip_ws();
    if scan.peek() == Some(b']') {
        return Some(items);
    }
    loop {
        scan.skip_ws();
        let start = scan.at;
        scan.skip_value()?;
        items.push(text.get(start..scan.at)?.trim());
        scan.skip_ws();
        match scan.next()? {
            b',' => continue,
            b']' => return Some(items),
            _ => return None,
        }
    }
}

/// Finds value boundaries in JSON text (validity is left to whoever parses the value).
struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn skip_string(&mut self) -> Option<()> {
        self.skip_quoted(b'"')
    }

    fn skip_quoted(&mut self, quote: u8) -> Option<()> {
        self.expect(quote)?;
        loop {
            match self.next()? {
                b'\\' => {
                    self.next()?;
                }
                b if b == quote => return Some(()),
                _ => {}
            }
        }
    }

    /// Skips one value: a string, a bracketed value (nesting and strings inside respected), or
    /// a bare scalar up to the next `,`, `]` or `}`.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            // StarRocks quotes a JSON element of an ARRAY with `'`.
            b'\'' => self.skip_quoted(b'\''),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => self.skip_string()?,
                        b'\'' => self.skip_quoted(b'\'')?,
                        b'{' | b'[' => {
                            depth += 1;
                            self.at += 1;
                        }
                        b'}' | b']' => {
                            depth -= 1;
                            self.at += 1;
                            if depth == 0 {
                                return Some(());
                            }
                        }
                        _ => self.at += 1,
                    }
                }
            }
            _ => {
                while self
                    .peek()
                    .is_some_and(|b| !matches!(b, b',' | b']' | b'}'))
                {
                    self.at += 1;
                }
                Some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(data_type: &TargetType, json: &str, mysql: &str) {
        assert_eq!(
            source_field(data_type, json.as_bytes()),
            target_field(data_type, Some(mysql)),
            "{data_type}: {json} vs {mysql}"
        );
    }

    fn differ(data_type: &TargetType, json: &str, mysql: &str) {
        assert_ne!(
            source_field(data_type, json.as_bytes()),
            target_field(data_type, Some(mysql)),
            "{data_type}: {json} vs {mysql}"
        );
    }

    #[test]
    fn each_type_compares_in_the_form_both_sides_print() {
        both(&TargetType::Boolean, "true", "1");
        both(&TargetType::Boolean, "false", "0");
        both(
            &TargetType::BigInt,
            "9223372036854775807",
            "9223372036854775807",
        );
        let decimal = TargetType::Decimal {
            precision: 38,
            scale: 9,
        };
        both(&decimal, "1.5", "1.500000000");
        both(&decimal, "-0.000", "0.000000000");
        differ(&decimal, "1.000000001", "1.000000002");
        both(&TargetType::Double, "\"NaN\"", "nan");
        both(&TargetType::Double, "\"-Infinity\"", "-inf");
        both(&TargetType::Double, "0.1", "0.1");
        both(&TargetType::Float, "1.1", "1.1");
        both(
            &TargetType::DateTime,
            "\"2024-01-02 03:04:05.000000\"",
            "2024-01-02 03:04:05",
        );
        both(
            &TargetType::DateTime,
            "\"2024-01-02 03:04:05.120000\"",
            "2024-01-02 03:04:05.12",
        );
        differ(
            &TargetType::DateTime,
            "\"2024-01-02 03:04:05.000001\"",
            "2024-01-02 03:04:05",
        );
        both(
            &TargetType::Json,
            "{\"b\": [1, 2.0], \"a\": \"x\"}",
            "{\"a\":\"x\",\"b\":[1,2]}",
        );
        differ(
            &TargetType::Json,
            "{\"a\": 1, \"b\": 2}",
            "{\"a\": 1, \"b\": 3}",
        );
        both(&TargetType::Json, "\"text\"", "\"text\"");
        let dates = TargetType::Array(Box::new(TargetType::Date));
        both(&dates, "[\"2024-01-01\",null]", "[\"2024-01-01\",null]");
        let decimals = TargetType::Array(Box::new(decimal.clone()));
        both(&decimals, "[1.5,2]", "[1.50,\"2.00\"]");
        let texts = TargetType::Array(Box::new(TargetType::Varchar(10)));
        both(&texts, "[\"a,b\",\"c\"]", "[\"a,b\",\"c\"]");
        differ(&texts, "[\"a\"]", "[\"b\"]");
    }

    /// How a real StarRocks prints ARRAY elements (be/src/util/mysql_row_buffer.cpp
    /// `push_string`: only the quote and `\` escaped; be/src/column/json_column.cpp: a JSON
    /// element quoted with `'`), which the sim does not imitate.
    #[test]
    fn arrays_compare_in_the_form_a_real_starrocks_prints() {
        let texts = TargetType::Array(Box::new(TargetType::Varchar(10)));
        both(
            &texts,
            r#"["a\nb","t\tq\"\\"]"#,
            "[\"a\nb\",\"t\tq\\\"\\\\\"]",
        );
        differ(&texts, r#"["a\nb"]"#, "[\"a\nc\"]");
        let docs = TargetType::Array(Box::new(TargetType::Json));
        both(
            &docs,
            r#"[{"b":[1,2],"a":"it's"},null,"s"]"#,
            r#"['{"a": "it\'s", "b": [1, 2]}',null,'"s"']"#,
        );
        both(&docs, r#"[{"a":1}]"#, r#"[{"a": 1}]"#);
        differ(&docs, r#"[{"a":1}]"#, r#"['{"a": 2}']"#);
    }

    #[test]
    fn null_and_the_empty_string_differ() {
        let text = TargetType::Varchar(10);
        assert_eq!(source_field(&text, b"null"), None);
        assert_eq!(source_field(&text, b"\"\""), Some(String::new()));
        assert_ne!(source_field(&text, b"\"\""), target_field(&text, None));
    }

    #[test]
    fn objects_split_into_raw_members() {
        let members = split_object(br#"{"a":1,"b\"q":{"x":[1,"]"]},"c":"s,}","__op":0}"#).unwrap();
        let raw: Vec<(&str, &[u8])> = members.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            raw,
            vec![
                ("a", &b"1"[..]),
                ("b\"q", &br#"{"x":[1,"]"]}"#[..]),
                ("c", &br#""s,}""#[..]),
                ("__op", &b"0"[..]),
            ]
        );
        assert!(split_object(b"{\"a\":").is_none());
        assert!(split_object(b"[1]").is_none());
    }
}
