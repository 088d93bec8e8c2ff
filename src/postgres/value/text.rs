//! [`TextValue`]: string content borrowed from the received bytes. A top-level value is the slice
//! itself; an element of an array literal that Postgres quoted may still carry its backslash
//! escapes (`"a\"b"`), and rather than copy it into a new string, a `TextValue` yields the
//! unescaped content as a sequence of borrowed chunks. Writers (JSON, Stream Load) append the
//! chunks; `to_cow` exists for callers that need one `&str` and accept an allocation. It does not
//! decide how strings are escaped on output (see `json.rs`). Also home of the `bytea` hex check.
//! Protects invariant #9: every slice boundary is a char boundary found by search, never assumed.

use std::borrow::Cow;
use std::fmt;

/// String content borrowed from the input, possibly still carrying array-literal escapes.
#[derive(Clone, Copy)]
pub struct TextValue<'a> {
    raw: &'a str,
    has_escapes: bool,
}

impl<'a> TextValue<'a> {
    /// Content that is exactly `text`.
    pub(crate) fn plain(text: &'a str) -> Self {
        TextValue {
            raw: text,
            has_escapes: false,
        }
    }

    /// The inside of a quoted array element, in which `\x` stands for `x`. The array parser has
    /// checked that no backslash is the last byte.
    pub(crate) fn escaped(raw: &'a str) -> Self {
        TextValue {
            raw,
            has_escapes: true,
        }
    }

    /// The content as one borrowed `&str` when it has no escapes (always so outside arrays).
    pub fn as_plain_str(&self) -> Option<&'a str> {
        (!self.has_escapes).then_some(self.raw)
    }

    /// The content as a string: borrowed when it has no escapes, else unescaped into a new one.
    pub fn to_cow(&self) -> Cow<'a, str> {
        match self.as_plain_str() {
            Some(plain) => Cow::Borrowed(plain),
            None => Cow::Owned(self.chunks().collect()),
        }
    }

    /// The unescaped content as borrowed pieces, in order; concatenated they are the value.
    pub fn chunks(&self) -> TextChunks<'a> {
        TextChunks {
            rest: self.raw,
            has_escapes: self.has_escapes,
        }
    }

    /// Appends the unescaped content to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for chunk in self.chunks() {
            out.extend_from_slice(chunk.as_bytes());
        }
    }

    /// The text as received, escapes included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the raw text still carries array-literal escapes.
    pub fn has_escapes(&self) -> bool {
        self.has_escapes
    }

    /// The unescaped content's bytes, in order.
    pub(crate) fn bytes(&self) -> impl Iterator<Item = u8> + 'a {
        self.chunks().flat_map(str::bytes)
    }
}

impl PartialEq for TextValue<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes().eq(other.bytes())
    }
}

impl Eq for TextValue<'_> {}

impl PartialEq<str> for TextValue<'_> {
    fn eq(&self, other: &str) -> bool {
        self.bytes().eq(other.bytes())
    }
}

impl PartialEq<&str> for TextValue<'_> {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

impl fmt::Debug for TextValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_cow(), f)
    }
}

impl fmt::Display for TextValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.chunks().try_for_each(|chunk| f.write_str(chunk))
    }
}

/// Iterator over the unescaped pieces of a [`TextValue`]; see [`TextValue::chunks`].
#[derive(Debug, Clone)]
pub struct TextChunks<'a> {
    rest: &'a str,
    has_escapes: bool,
}

impl<'a> Iterator for TextChunks<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if !self.has_escapes {
            return (!self.rest.is_empty()).then(|| std::mem::take(&mut self.rest));
        }
        loop {
            if self.rest.is_empty() {
                return None;
            }
            // A leading backslash escapes the character after it: drop the backslash and keep
            // that character as the start of this chunk, whatever it is (even a backslash).
            let (chunk_start, search_from) = match self.rest.strip_prefix('\\') {
                Some(after) => {
                    let escaped_len = after.chars().next().map_or(0, char::len_utf8);
                    (after, escaped_len)
                }
                None => (self.rest, 0),
            };
            let end = chunk_start
                .as_bytes()
                .get(search_from..)
                .and_then(|tail| memchr::memchr(b'\\', tail))
                .map_or(chunk_start.len(), |offset| search_from + offset);
            // `end` is at a backslash (ASCII) or the end, so both splits are char boundaries.
            let (chunk, rest) = chunk_start.split_at_checked(end)?;
            self.rest = rest;
            if !chunk.is_empty() {
                return Some(chunk);
            }
        }
    }
}

/// Checks `bytea` hex output: `\x` followed by an even number of hex digits.
pub(crate) fn validate_bytea_hex(mut bytes: impl Iterator<Item = u8>) -> Result<(), &'static str> {
    if bytes.next() != Some(b'\\') || bytes.next() != Some(b'x') {
        return Err("expected hex format \\x…");
    }
    let mut digits = 0usize;
    for byte in bytes {
        if !byte.is_ascii_hexdigit() {
            return Err("expected hex digits after \\x");
        }
        digits += 1;
    }
    if !digits.is_multiple_of(2) {
        return Err("odd number of hex digits");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unescaped(raw: &str) -> String {
        TextValue::escaped(raw).chunks().collect()
    }

    #[test]
    fn escapes_are_removed_without_copying() {
        assert_eq!(unescaped(r#"a\"b"#), r#"a"b"#);
        assert_eq!(unescaped(r"a\\b"), r"a\b");
        assert_eq!(unescaped(r"\\x0102"), r"\x0102");
        assert_eq!(unescaped(r"\\\\"), r"\\");
        assert_eq!(unescaped(r"\é\ü"), "éü");
        assert_eq!(unescaped(""), "");
        let chunks: Vec<&str> = TextValue::escaped(r#"ab\"cd"#).chunks().collect();
        assert_eq!(chunks, ["ab", "\"cd"]);
    }

    #[test]
    fn plain_text_is_one_chunk_and_borrowed() {
        let value = TextValue::plain(r"a\b");
        assert_eq!(value.as_plain_str(), Some(r"a\b"));
        assert!(matches!(value.to_cow(), Cow::Borrowed(r"a\b")));
        assert_eq!(value.chunks().count(), 1);
        assert_eq!(TextValue::plain("").chunks().count(), 0);
        assert_eq!(value, r"a\b");
        assert_eq!(TextValue::escaped(r#"\"x"#), TextValue::plain("\"x"));
    }

    #[test]
    fn bytea_hex_form() {
        assert!(validate_bytea_hex(r"\x".bytes()).is_ok());
        assert!(validate_bytea_hex(r"\x00ff".bytes()).is_ok());
        assert!(validate_bytea_hex(r"\x0".bytes()).is_err());
        assert!(validate_bytea_hex(r"\xgg".bytes()).is_err());
        assert!(validate_bytea_hex(r"\001".bytes()).is_err());
        assert!(validate_bytea_hex("".bytes()).is_err());
    }
}
