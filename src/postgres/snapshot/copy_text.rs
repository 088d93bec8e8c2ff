//! COPY text format (`COPY … TO STDOUT`, the default format) split into fields.
//!
//! A row is one line ending in `\n`; fields are separated by a tab; `\N` is NULL. Backslash
//! escapes stand for the bytes that would break that framing (`\\`, `\t`, `\n`, `\r`, `\b`,
//! `\f`, `\v`, octal `\ooo` and hex `\xhh`). Undoing them yields exactly the type's output text
//! — what pgoutput sends for the same value — so both paths share one decoder. The input comes
//! from the server, but it is still parsed with bounds checks: bad bytes are an error naming the
//! problem, never a panic.

use std::ops::Range;

/// One field of a parsed row.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Null,
    /// Bytes of the line as they are (no escape in them).
    Line(Range<usize>),
    /// Unescaped bytes in the scratch buffer.
    Scratch(Range<usize>),
}

/// A row that is not valid COPY text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyTextError {
    #[error("row has {found} fields, expected {expected}")]
    FieldCount { expected: usize, found: usize },
    #[error("row ends in a lone backslash")]
    TrailingBackslash,
}

/// Splits rows into fields, reusing its buffers from row to row (no allocation once warm).
#[derive(Debug, Default)]
pub struct CopyRowParser {
    fields: Vec<Field>,
    scratch: Vec<u8>,
}

impl CopyRowParser {
    /// Parses `line` (one row without its `\n`) into `expected` fields; read them back with
    /// [`CopyRowParser::values`].
    pub fn parse(&mut self, line: &[u8], expected: usize) -> Result<(), CopyTextError> {
        self.fields.clear();
        self.scratch.clear();
        let mut start = 0;
        loop {
            let end = memchr::memchr(b'\t', &line[start..]).map_or(line.len(), |at| start + at);
            let field = &line[start..end];
            self.fields.push(if field == b"\\N" {
                Field::Null
            } else if memchr::memchr(b'\\', field).is_none() {
                Field::Line(start..end)
            } else {
                let from = self.scratch.len();
                unescape(field, &mut self.scratch)?;
                Field::Scratch(from..self.scratch.len())
            });
            if end == line.len() {
                break;
            }
            start = end + 1;
        }
        if self.fields.len() != expected {
            return Err(CopyTextError::FieldCount {
                expected,
                found: self.fields.len(),
            });
        }
        Ok(())
    }

    /// The fields of the row last parsed from `line`: `None` for NULL, else the value's text.
    pub fn values<'a>(
        &'a self,
        line: &'a [u8],
    ) -> impl ExactSizeIterator<Item = Option<&'a [u8]>> + Clone + 'a {
        self.fields.iter().map(move |field| match field {
            Field::Null => None,
            Field::Line(range) => line.get(range.clone()),
            Field::Scratch(range) => self.scratch.get(range.clone()),
        })
    }
}

/// Appends `field` with its backslash escapes undone.
fn unescape(field: &[u8], out: &mut Vec<u8>) -> Result<(), CopyTextError> {
    let mut i = 0;
    while i < field.len() {
        let byte = field[i];
        if byte != b'\\' {
            out.push(byte);
            i += 1;
            continue;
        }
        let Some(&next) = field.get(i + 1) else {
            return Err(CopyTextError::TrailingBackslash);
        };
        i += 2;
        match next {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(&digit @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(digit - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                // Three octal digits reach 511; COPY keeps the low byte.
                out.push((value & 0xff) as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u8;
                for _ in 0..2 {
                    match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(digit) => {
                            value = value.wrapping_mul(16).wrapping_add(digit as u8);
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(value);
            }
            // `\\` and any other escaped byte stand for themselves.
            other => out.push(other),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[u8], expected: usize) -> Result<Vec<Option<Vec<u8>>>, CopyTextError> {
        let mut parser = CopyRowParser::default();
        parser.parse(line, expected)?;
        Ok(parser.values(line).map(|v| v.map(<[u8]>::to_vec)).collect())
    }

    #[test]
    fn splits_fields_and_nulls() {
        assert_eq!(
            parse(b"1\t\\N\thello\t", 4).unwrap(),
            vec![
                Some(b"1".to_vec()),
                None,
                Some(b"hello".to_vec()),
                Some(Vec::new())
            ]
        );
    }

    #[test]
    fn undoes_escapes() {
        assert_eq!(
            parse(b"a\\tb\\nc\\\\d\\r\\b\\f\\v\t\\101\\x41\\x4a\\q", 2).unwrap(),
            vec![
                Some(b"a\tb\nc\\d\r\x08\x0c\x0b".to_vec()),
                Some(b"AAJq".to_vec())
            ]
        );
        // A literal `\N` inside text is escaped as `\\N`, so it is not NULL.
        assert_eq!(parse(b"\\\\N", 1).unwrap(), vec![Some(b"\\N".to_vec())]);
    }

    #[test]
    fn rejects_bad_rows_without_panicking() {
        assert_eq!(
            parse(b"1\t2", 3),
            Err(CopyTextError::FieldCount {
                expected: 3,
                found: 2
            })
        );
        assert_eq!(parse(b"abc\\", 1), Err(CopyTextError::TrailingBackslash));
        // Arbitrary bytes: an error or a value, never a panic.
        for line in [&b"\\x"[..], b"\\777", b"\\x\t", b"\t\t", b"\\", b"\\0\\"] {
            let _ = parse(line, 1);
            let _ = parse(line, 3);
        }
    }
}
