//! Splitting a plain (decompressed) body into raw rows: JSON documents and CSV lines
//! (reference §2 `strip_outer_array`, `column_separator`, `row_delimiter`, `enclose`, `escape`,
//! `skip_header`, `trim_space`; §6 "CSV: `\N` is NULL, empty field is `''`").
//!
//! Owns framing only; values stay raw text (JSON number text is kept exactly, so BIGINT beyond
//! 2^53 and DECIMAL survive) and conversion happens in the planner. A malformed JSON document is
//! a load-level error (the remaining bytes cannot be re-synchronised); a malformed CSV line is
//! just a row whose fields later fail to convert. The CSV reader splits rows on the delimiter
//! before looking at `enclose`, so an enclosed field cannot contain the row delimiter.
//!
//! JSON has two readers. [`json_rows`] (serde_json) defines the behaviour: which bodies are
//! accepted, the error texts, rows that are not objects. [`JsonObjects`] is the hot path: one pass,
//! no allocation per row, but only for bodies made of objects (in an array with
//! `strip_outer_array`, or concatenated without). It accepts nothing serde_json would refuse and
//! yields the same rows; on anything else (a syntax error, a non-object row, an escape it cannot
//! check) it reports [`Unsupported`] and the caller re-reads the body with [`json_rows`].

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

/// The fast reader met something only [`json_rows`] handles; re-read the body with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsupported;

/// Where [`JsonObjects`] is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReaderState {
    /// Nothing read yet.
    Start,
    /// Between rows.
    Rows,
    /// The body is exhausted.
    Done,
}

/// Streams the objects of a JSON body (the hot path; see the module doc). Yields each row's text
/// and hands each member to the caller as it is read, so reading allocates nothing per row (keys
/// with escapes aside). Values are checked exactly as serde_json's `RawValue` checks them.
#[derive(Debug)]
pub(crate) struct JsonObjects<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    strip_outer_array: bool,
    state: ReaderState,
}

impl<'a> JsonObjects<'a> {
    /// A reader over `text` (already checked to be UTF-8).
    pub(crate) fn new(text: &'a str, strip_outer_array: bool) -> JsonObjects<'a> {
        // `json_rows` treats a blank body (Unicode whitespace included) as no rows.
        let state = if strip_outer_array && text.trim().is_empty() {
            ReaderState::Done
        } else {
            ReaderState::Start
        };
        JsonObjects {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            strip_outer_array,
            state,
        }
    }

    /// The next row's text, `Ok(None)` after the last row. `member(position, key, value)` is
    /// called for each member in document order: the key unescaped (case as sent), the value as
    /// raw JSON text. On [`Unsupported`] some members of the row may already have been passed.
    pub(crate) fn next_row(
        &mut self,
        member: impl FnMut(usize, &str, &'a str),
    ) -> Result<Option<&'a str>, Unsupported> {
        match self.state {
            ReaderState::Done => return Ok(None),
            ReaderState::Start => {
                self.state = ReaderState::Rows;
                if self.strip_outer_array {
                    self.skip_whitespace();
                    self.expect(b'[')?;
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        return self.end_of_body().map(|()| None);
                    }
                }
            }
            ReaderState::Rows => {}
        }
        self.skip_whitespace();
        if !self.strip_outer_array && self.pos == self.bytes.len() {
            self.state = ReaderState::Done;
            return Ok(None);
        }
        let row = self.object(member)?;
        if self.strip_outer_array {
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.end_of_body()?;
                }
                _ => return Err(Unsupported),
            }
        }
        Ok(Some(row))
    }

    /// After the outer array: only whitespace may follow.
    fn end_of_body(&mut self) -> Result<(), Unsupported> {
        self.skip_whitespace();
        self.state = ReaderState::Done;
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), Unsupported> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// JSON whitespace only (serde_json's set).
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// One object; returns its text.
    fn object(
        &mut self,
        mut member: impl FnMut(usize, &str, &'a str),
    ) -> Result<&'a str, Unsupported> {
        let start = self.pos;
        self.expect(b'{')?;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(&self.text[start..self.pos]);
        }
        let mut position = 0;
        loop {
            let key = self.key()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let value = self.value()?;
            member(position, &key, value);
            position += 1;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(&self.text[start..self.pos]);
                }
                _ => return Err(Unsupported),
            }
        }
    }

    /// A string's raw text (quotes included) and whether it holds an escape. Control characters
    /// are refused, as serde_json refuses them.
    fn string(&mut self) -> Result<(&'a str, bool), Unsupported> {
        let start = self.pos;
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            // Jump to the next byte that needs a look, eight bytes at a time.
            while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let found = special_bytes(u64::from_le_bytes(word));
                if found != 0 {
                    self.pos += (found.trailing_zeros() / 8) as usize;
                    break;
                }
                self.pos += 8;
            }
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    // Both ends are ASCII quotes, so the slice is on character boundaries.
                    return Ok((&self.text[start..self.pos], escaped));
                }
                Some(b'\\') => {
                    // The escape itself is checked by serde_json afterwards; skipping one byte
                    // is enough to not mistake `\"` for the end.
                    escaped = true;
                    self.pos += 2;
                }
                Some(b) if b >= 0x20 => self.pos += 1,
                _ => return Err(Unsupported),
            }
        }
    }

    fn key(&mut self) -> Result<Cow<'a, str>, Unsupported> {
        let (raw, escaped) = self.string()?;
        if escaped {
            return serde_json::from_str::<String>(raw)
                .map(Cow::Owned)
                .map_err(|_| Unsupported);
        }
        Ok(Cow::Borrowed(&raw[1..raw.len() - 1]))
    }

    /// One value's raw text.
    fn value(&mut self) -> Result<&'a str, Unsupported> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => {
                let (raw, escaped) = self.string()?;
                if escaped && serde_json::from_str::<&RawValue>(raw).is_err() {
                    return Err(Unsupported);
                }
                Ok(raw)
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Ok(&self.text[start..self.pos])
            }
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'[' | b'{') => {
                // Nested values are rare: let serde_json find (and check) their extent.
                let mut de = serde_json::Deserializer::from_str(&self.text[start..]);
                let raw = <&RawValue as serde::Deserialize>::deserialize(&mut de)
                    .map_err(|_| Unsupported)?;
                self.pos += raw.get().len();
                Ok(&self.text[start..self.pos])
            }
            _ => Err(Unsupported),
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<&'a str, Unsupported> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            let start = self.pos;
            self.pos += word.len();
            Ok(&self.text[start..self.pos])
        } else {
            Err(Unsupported)
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, serde_json's number grammar.
    fn number(&mut self) -> Result<(), Unsupported> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(Unsupported);
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Unsupported),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.one_or_more_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.one_or_more_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Result<(), Unsupported> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(Unsupported);
        }
        self.digits();
        Ok(())
    }
}

/// Flags the bytes of `word` (little-endian) that are a quote, a backslash or a control
/// character: the high bit of each. Only the lowest flag is exact (borrows may flag bytes above
/// it), which is all a scan needs; zero means none. The bit tricks are "has a zero byte" and
/// "has a byte less than n" (n ≤ 128).
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    control | zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')))
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
    if delim.is_empty() {
        return (rows, body);
    }
    // Leftmost non-overlapping occurrences, as a byte-by-byte scan finds them.
    let mut start = 0;
    for at in separators(body, delim) {
        rows.push(&body[start..at]);
        start = at + delim.len();
    }
    (rows, &body[start..])
}

/// [`csv_split`]'s row count and tail, without collecting the rows (`discard_rows`).
pub(crate) fn csv_count<'a>(body: &'a [u8], options: &CsvOptions) -> (u64, &'a [u8]) {
    let delim = &options.row_delimiter;
    if delim.is_empty() {
        return (0, body);
    }
    let (mut rows, mut start) = (0, 0);
    for at in separators(body, delim) {
        rows += 1;
        start = at + delim.len();
    }
    (rows, &body[start..])
}

/// Where `separator` (not empty) starts in `bytes`: leftmost, non-overlapping.
fn separators<'a>(bytes: &'a [u8], separator: &'a [u8]) -> Box<dyn Iterator<Item = usize> + 'a> {
    match separator {
        [byte] => Box::new(memchr::memchr_iter(*byte, bytes)),
        _ => Box::new(memchr::memmem::find_iter(bytes, separator)),
    }
}

/// Splits one row into fields.
pub(crate) fn csv_fields<'a>(line: &'a [u8], options: &CsvOptions) -> CsvRow<'a> {
    let text = String::from_utf8_lossy(line);
    if options.escape.is_none()
        && options.enclose.is_none()
        && !options.trim_space
        && !options.column_separator.is_empty()
    {
        // Nothing to undo: a field is the bytes between separators, borrowed (the CSV hot
        // path, e.g. a snapshot copy). The same fields as the loop below finds.
        let mut fields = Vec::new();
        let mut start = 0;
        for at in separators(line, &options.column_separator) {
            fields.push(plain_field(&line[start..at]));
            start = at + options.column_separator.len();
        }
        fields.push(plain_field(&line[start..]));
        return CsvRow { fields, text };
    }
    csv_fields_general(line, options, text)
}

/// [`csv_fields`] with enclose, escape and trimming undone, byte by byte.
fn csv_fields_general<'a>(line: &'a [u8], options: &CsvOptions, text: Cow<'a, str>) -> CsvRow<'a> {
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

/// A field without enclose, escape or trimming: `\N` is NULL, other bytes are the text (as
/// [`finish_field`] reads them, without copying valid UTF-8).
fn plain_field(bytes: &[u8]) -> Option<Cow<'_, str>> {
    if bytes == b"\\N" {
        return None;
    }
    Some(match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    })
}

/// A field's value: `\N` is NULL even when enclosed (`"\N"`) or escaped: StarRocks undoes
/// enclose and escape first and its `NullableConverter::read_string` then compares the field
/// with `\N`, so CSV has no way to load the text `\N`.
fn finish_field<'a>(bytes: &[u8], _enclosed: bool, trim: bool) -> Option<Cow<'a, str>> {
    let s = String::from_utf8_lossy(bytes).into_owned();
    let s = if trim { s.trim().to_string() } else { s };
    if s == "\\N" {
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
    fn special_bytes_finds_the_first() {
        let first = |word: [u8; 8]| match special_bytes(u64::from_le_bytes(word)) {
            0 => None,
            found => Some(found.trailing_zeros() / 8),
        };
        assert_eq!(first(*b"abcdefgh"), None);
        assert_eq!(
            first([0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xff]),
            None
        );
        let specials = [b'"', b'\\', 0x00, 0x01, 0x1f];
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = b;
                let expected = specials.contains(&b) || b < 0x20;
                assert_eq!(first(word), expected.then_some(at as u32), "{b} at {at}");
                // A later special byte does not hide an earlier one, nor flag below it.
                for later in specials {
                    for after in at + 1..8 {
                        let mut pair = word;
                        pair[after] = later;
                        let want = if expected { at } else { after } as u32;
                        assert_eq!(first(pair), Some(want), "{b} at {at}, {later} at {after}");
                    }
                }
            }
        }
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
                // StarRocks: NULL however it is quoted.
                None
            ]
        );
        let multi = csv_opts("||");
        let row = csv_fields(b"a||b||", &multi);
        assert_eq!(row.fields.len(), 3);
    }

    #[test]
    fn plain_csv_fields_and_rows_are_the_byte_by_byte_ones() {
        // Lines from an alphabet rich in separators, `\N` pieces and bytes that are not UTF-8.
        let alphabet = [
            b'a', b',', b'|', b'\\', b'N', 0x1f, 0x1e, 0xc3, 0xa9, 0xff, b'\n',
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for sep in [&b","[..], b"||", b"\x1f", b"aa", b"\xc3\xa9"] {
            let opts = CsvOptions {
                column_separator: sep.to_vec(),
                row_delimiter: sep.to_vec(),
                ..csv_opts(",")
            };
            for _ in 0..2000 {
                let len = (next() % 24) as usize;
                let line: Vec<u8> = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                let fast = csv_fields(&line, &opts);
                let general = csv_fields_general(&line, &opts, String::from_utf8_lossy(&line));
                assert_eq!(fast.fields, general.fields, "{line:?} split on {sep:?}");
                // Rows: the same leftmost, non-overlapping scan.
                let (rows, tail) = csv_split(&line, &opts);
                let mut expected = Vec::new();
                let (mut start, mut i) = (0, 0);
                while i + sep.len() <= line.len() {
                    if line[i..].starts_with(sep) {
                        expected.push(&line[start..i]);
                        i += sep.len();
                        start = i;
                    } else {
                        i += 1;
                    }
                }
                assert_eq!((rows, tail), (expected, &line[start..]), "{line:?}");
            }
        }
    }
}
