//! Splitting a plain (decompressed) body into raw rows: JSON documents and CSV lines
//! (reference §2 `strip_outer_array`, `column_separator`, `row_delimiter`, `enclose`, `escape`,
//! `skip_header`, `trim_space`; §6 "CSV: `\N` is NULL, empty field is `''`").
//!
//! Owns framing only; values stay raw text (JSON number text is kept exactly, so BIGINT beyond
//! 2^53 and DECIMAL survive) and conversion happens in the planner. A malformed JSON document is
//! a load-level error (the remaining bytes cannot be re-synchronised); a malformed CSV line is
//! just a row whose fields later fail to convert. The CSV reader splits rows on the delimiter
//! before looking at `enclose`, so an enclosed field cannot contain the row delimiter.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::value::RawValue;

use super::options::CsvOptions;

/// One JSON row: top-level keys lower-cased (StarRocks column names are case-insensitive; a
/// later duplicate wins), values as raw JSON text.
#[derive(Debug)]
pub(crate) struct JsonRow<'a> {
    /// Lower-cased key → raw value.
    pub(crate) fields: HashMap<String, &'a RawValue>,
    /// The row's JSON text, for error logs.
    pub(crate) text: &'a str,
    /// Why the row cannot be used at all (not an object), if so.
    pub(crate) not_an_object: bool,
}

/// Parses a JSON body into rows. With `strip_outer_array` the body must be one array whose
/// elements are rows; without it the body is a sequence of concatenated documents, each root
/// object a row (a root array without `strip_outer_array` is a single row, per reference §2).
pub(crate) fn json_rows(body: &[u8], strip_outer_array: bool) -> Result<Vec<JsonRow<'_>>, String> {
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("Failed to parse json data: body is not valid UTF-8 ({e})"))?;
    let mut documents: Vec<&RawValue> = Vec::new();
    if strip_outer_array {
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let root: &RawValue =
            serde_json::from_str(text).map_err(|e| format!("Failed to parse json data: {e}"))?;
        if !root.get().starts_with('[') {
            return Err("JSON data is not an array-object with strip_outer_array=true".to_string());
        }
        documents = serde_json::from_str(root.get())
            .map_err(|e| format!("Failed to parse json data: {e}"))?;
    } else {
        for document in serde_json::Deserializer::from_str(text).into_iter::<&RawValue>() {
            documents.push(document.map_err(|e| format!("Failed to parse json data: {e}"))?);
        }
    }
    let mut rows = Vec::with_capacity(documents.len());
    for document in documents {
        let raw = document.get();
        if raw.starts_with('{') {
            let object: Vec<(Cow<'_, str>, &RawValue)> = parse_object(raw)?;
            let mut fields = HashMap::with_capacity(object.len());
            for (key, value) in object {
                fields.insert(key.to_lowercase(), value);
            }
            rows.push(JsonRow {
                fields,
                text: raw,
                not_an_object: false,
            });
        } else {
            rows.push(JsonRow {
                fields: HashMap::new(),
                text: raw,
                not_an_object: strip_outer_array,
            });
        }
    }
    Ok(rows)
}

/// An object's members in document order, values borrowed as raw JSON.
fn parse_object(raw: &str) -> Result<Vec<(Cow<'_, str>, &RawValue)>, String> {
    struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);
    impl<'de> serde::Deserialize<'de> for Members<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Members<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                        let value: &'de RawValue = map.next_value()?;
                        out.push((key, value));
                    }
                    Ok(Members(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Members<'_>>(raw)
        .map(|m| m.0)
        .map_err(|e| format!("Failed to parse json data: {e}"))
}

/// One CSV row: fields (`None` = `\N`) and the row text for error logs.
#[derive(Debug)]
pub(crate) struct CsvRow<'a> {
    /// Fields in order.
    pub(crate) fields: Vec<Option<Cow<'a, str>>>,
    /// The row text.
    pub(crate) text: Cow<'a, str>,
}

/// Splits `body` into complete rows. Returns the rows and the bytes after the last delimiter
/// (a row still being written, for the transaction interface; the caller decides whether it is
/// a final row).
pub(crate) fn csv_split<'a>(body: &'a [u8], options: &CsvOptions) -> (Vec<&'a [u8]>, &'a [u8]) {
    let delim = &options.row_delimiter;
    let mut rows = Vec::new();
    let mut start = 0;
    if delim.is_empty() {
        return (rows, body);
    }
    let mut i = 0;
    while i + delim.len() <= body.len() {
        if body[i..].starts_with(delim) {
            rows.push(&body[start..i]);
            i += delim.len();
            start = i;
        } else {
            i += 1;
        }
    }
    (rows, &body[start..])
}

/// Splits one row into fields.
pub(crate) fn csv_fields<'a>(line: &'a [u8], options: &CsvOptions) -> CsvRow<'a> {
    let text = String::from_utf8_lossy(line);
    let sep = &options.column_separator;
    let mut fields = Vec::new();
    let mut field: Vec<u8> = Vec::new();
    let mut i = 0;
    let mut in_enclose = false;
    let mut was_enclosed = false;
    while i < line.len() {
        let b = line[i];
        if let Some(esc) = options.escape {
            if b == esc && i + 1 < line.len() && (in_enclose || options.enclose.is_none()) {
                field.push(line[i + 1]);
                i += 2;
                continue;
            }
        }
        if let Some(enc) = options.enclose {
            if b == enc {
                if in_enclose {
                    if line.get(i + 1) == Some(&enc) {
                        field.push(enc);
                        i += 2;
                        continue;
                    }
                    in_enclose = false;
                    i += 1;
                    continue;
                }
                if field.iter().all(|c| *c == b' ') {
                    field.clear();
                    in_enclose = true;
                    was_enclosed = true;
                    i += 1;
                    continue;
                }
            }
        }
        if !in_enclose && !sep.is_empty() && line[i..].starts_with(sep) {
            fields.push(finish_field(&field, was_enclosed, options.trim_space));
            field.clear();
            was_enclosed = false;
            i += sep.len();
            continue;
        }
        field.push(b);
        i += 1;
    }
    fields.push(finish_field(&field, was_enclosed, options.trim_space));
    CsvRow { fields, text }
}

fn finish_field<'a>(bytes: &[u8], enclosed: bool, trim: bool) -> Option<Cow<'a, str>> {
    let s = String::from_utf8_lossy(bytes).into_owned();
    let s = if trim { s.trim().to_string() } else { s };
    if !enclosed && s == "\\N" {
        None
    } else {
        Some(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_opts(sep: &str) -> CsvOptions {
        CsvOptions {
            column_separator: sep.as_bytes().to_vec(),
            row_delimiter: b"\n".to_vec(),
            skip_header: 0,
            trim_space: false,
            enclose: None,
            escape: None,
        }
    }

    #[test]
    fn json_modes() {
        let rows = json_rows(br#"[{"ID":1,"name":"a"},{"id":2},3]"#, true).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].fields["id"].get(), "1");
        assert!(rows[2].not_an_object);
        let rows = json_rows(b"{\"id\":1}\n{\"id\":2} {\"id\":3}", false).unwrap();
        assert_eq!(rows.len(), 3);
        let rows = json_rows(br#"[{"id":1},{"id":2}]"#, false).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].fields.is_empty());
        assert!(json_rows(b"{\"id\":1", false).is_err());
        assert!(json_rows(b"{\"id\":1}", true).is_err());
        assert!(json_rows(b"\xff", false).is_err());
        assert_eq!(json_rows(b"  ", true).unwrap().len(), 0);
        assert_eq!(json_rows(b"", false).unwrap().len(), 0);
        let rows = json_rows(br#"{"a\"b":12345678901234567890123}"#, false).unwrap();
        assert_eq!(rows[0].fields["a\"b"].get(), "12345678901234567890123");
    }

    #[test]
    fn csv_framing() {
        let opts = csv_opts(",");
        let (rows, tail) = csv_split(b"1,a\n2,\\N\n3,", &opts);
        assert_eq!(rows.len(), 2);
        assert_eq!(tail, b"3,");
        let row = csv_fields(rows[1], &opts);
        assert_eq!(row.fields, vec![Some(Cow::Borrowed("2")), None]);
        let row = csv_fields(b"", &opts);
        assert_eq!(row.fields, vec![Some(Cow::Borrowed(""))]);

        let mut opts = csv_opts(",");
        opts.enclose = Some(b'"');
        opts.trim_space = true;
        let row = csv_fields(br#" "a,b" , "say ""hi""",\N,"\N""#, &opts);
        assert_eq!(
            row.fields,
            vec![
                Some(Cow::Borrowed("a,b")),
                Some(Cow::Borrowed("say \"hi\"")),
                None,
                Some(Cow::Borrowed("\\N"))
            ]
        );
        let multi = csv_opts("||");
        let row = csv_fields(b"a||b||", &multi);
        assert_eq!(row.fields.len(), 3);
    }
}
