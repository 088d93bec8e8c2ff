//! Array literals as `array_out` prints them: `{1,2,NULL,"a \"b\"",{3,4}}`, with an optional
//! dimension decoration (`[0:1]={…}`) when a lower bound is not 1. An [`Array`] is the validated
//! literal plus its element kind; elements are decoded again while iterated, borrowing from the
//! literal (quoted elements with escapes become [`TextValue`]s that unescape on the fly). It does
//! not check that nested arrays are rectangular (Postgres guarantees it) nor handle types whose
//! delimiter is not `,` (only `box`, which is not in the builtin table and decodes as text).
//! Protects invariant #9: nesting is bounded by Postgres' MAXDIM (6), every scan is checked, and
//! a malformed literal or element is a [`ValueError`].

use super::error::{quote_for_error, ValueError};
use super::text::{validate_bytea_hex, TextValue};
use super::{ScalarKind, Value, ValueKind};

/// Postgres' MAXDIM: arrays have at most six dimensions.
const MAX_DIMENSIONS: usize = 6;

/// A validated array literal; iterate it with [`Array::elements`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Array<'a> {
    /// The whole literal of this (sub-)array, decoration included for the outermost one.
    literal: &'a str,
    /// Where the text between the outer braces starts in `literal` (it ends before the last
    /// byte, the closing brace). Offsets rather than a second `&str` keep `Value` small.
    body_start: u32,
    element_kind: ScalarKind,
    /// 1 for the outermost array, 2 for its sub-arrays, … (at most [`MAX_DIMENSIONS`]).
    depth: u8,
}

/// One element of an [`Array`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArrayElement<'a> {
    /// `NULL`.
    Null,
    /// A decoded element.
    Value(Value<'a>),
    /// A sub-array of a multidimensional array.
    Nested(Array<'a>),
}

impl<'a> Array<'a> {
    /// The element kind.
    pub fn element_kind(&self) -> ScalarKind {
        self.element_kind
    }

    /// The literal as received (for the outermost array, with its decoration).
    pub fn literal(&self) -> &'a str {
        self.literal
    }

    /// The elements in order. Each is decoded on the way; the structure was validated when the
    /// array was decoded, so iteration yields the same results every time.
    pub fn elements(&self) -> ArrayElements<'a> {
        ArrayElements {
            array: *self,
            rest: self.body(),
            state: if self.body().is_empty() {
                IterationState::Finished
            } else {
                IterationState::ExpectElement
            },
        }
    }

    /// The text between the outer braces.
    fn body(&self) -> &'a str {
        let body_end = self.literal.len().saturating_sub(1);
        self.literal
            .get(self.body_start as usize..body_end)
            .unwrap_or_default()
    }

    fn kind(&self) -> ValueKind {
        ValueKind::Array(self.element_kind)
    }

    fn structure_error(&self, reason: &'static str) -> ValueError {
        ValueError::invalid(self.kind(), self.literal.as_bytes(), reason)
    }

    /// Walks every element, recursively, so that a malformed literal is rejected up front.
    fn validate(&self) -> Result<(), ValueError> {
        for element in self.elements() {
            if let ArrayElement::Nested(nested) = element? {
                nested.validate()?;
            }
        }
        Ok(())
    }
}

/// Decodes an array literal whose elements are of `element_kind`.
pub(crate) fn decode_array(
    literal: &str,
    element_kind: ScalarKind,
) -> Result<Array<'_>, ValueError> {
    let kind = ValueKind::Array(element_kind);
    let invalid = |reason| ValueError::invalid(kind, literal.as_bytes(), reason);
    let braced = strip_dimension_decoration(literal).map_err(invalid)?;
    if !(braced.starts_with('{') && braced.ends_with('}') && braced.len() >= 2) {
        return Err(invalid("expected {…}"));
    }
    // Postgres values are at most 1 GB, so the offset fits.
    let body_start = u32::try_from(literal.len() - braced.len() + 1)
        .map_err(|_| invalid("array literal too long"))?;
    let array = Array {
        literal,
        body_start,
        element_kind,
        depth: 1,
    };
    array.validate()?;
    Ok(array)
}

/// Removes `[lower:upper]…=` in front of the braces, checking its form.
fn strip_dimension_decoration(literal: &str) -> Result<&str, &'static str> {
    if !literal.starts_with('[') {
        return Ok(literal);
    }
    const MALFORMED: &str = "malformed dimension decoration";
    let (decoration, braced) = literal.split_once('=').ok_or(MALFORMED)?;
    let mut rest = decoration;
    let mut dimensions = 0;
    while !rest.is_empty() {
        let inner_and_rest = rest.strip_prefix('[').ok_or(MALFORMED)?;
        let (bounds, after) = inner_and_rest.split_once(']').ok_or(MALFORMED)?;
        let (lower, upper) = bounds.split_once(':').ok_or(MALFORMED)?;
        let is_bound = |bound: &str| {
            let digits = bound.strip_prefix('-').unwrap_or(bound);
            !digits.is_empty() && digits.len() <= 10 && digits.bytes().all(|b| b.is_ascii_digit())
        };
        if !is_bound(lower) || !is_bound(upper) {
            return Err(MALFORMED);
        }
        dimensions += 1;
        rest = after;
    }
    if dimensions > MAX_DIMENSIONS {
        return Err("more than 6 dimensions");
    }
    Ok(braced)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IterationState {
    /// At the start of the body or right after a delimiter: an element must follow.
    ExpectElement,
    /// The body is consumed, or an error was reported.
    Finished,
}

/// Iterator over the elements of an [`Array`]; see [`Array::elements`].
#[derive(Debug, Clone)]
pub struct ArrayElements<'a> {
    array: Array<'a>,
    rest: &'a str,
    state: IterationState,
}

impl<'a> Iterator for ArrayElements<'a> {
    type Item = Result<ArrayElement<'a>, ValueError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.state == IterationState::Finished {
            return None;
        }
        let result = self.next_element();
        if result.is_err() {
            self.state = IterationState::Finished;
        }
        Some(result)
    }
}

impl<'a> ArrayElements<'a> {
    fn next_element(&mut self) -> Result<ArrayElement<'a>, ValueError> {
        let (element, after) = match self.rest.as_bytes().first() {
            None => return Err(self.array.structure_error("missing element after ,")),
            Some(b'{') => self.nested_array()?,
            Some(b'"') => self.quoted_element()?,
            Some(_) => self.unquoted_element()?,
        };
        if after.is_empty() {
            self.state = IterationState::Finished;
            self.rest = after;
        } else if let Some(next) = after.strip_prefix(',') {
            self.rest = next;
        } else {
            return Err(self
                .array
                .structure_error("expected , or } after an element"));
        }
        Ok(element)
    }

    /// `{…}` up to its matching brace, skipping quoted strings.
    fn nested_array(&self) -> Result<(ArrayElement<'a>, &'a str), ValueError> {
        let depth = self.array.depth + 1;
        if usize::from(depth) > MAX_DIMENSIONS {
            return Err(self.array.structure_error("more than 6 dimensions"));
        }
        let bytes = self.rest.as_bytes();
        let mut open_braces = 0usize;
        let mut in_quotes = false;
        let mut position = 0;
        let mut close = None;
        while let Some(&byte) = bytes.get(position) {
            match (in_quotes, byte) {
                (true, b'\\') => position += 1,
                (true, b'"') | (false, b'"') => in_quotes = !in_quotes,
                (false, b'{') => open_braces += 1,
                (false, b'}') => {
                    open_braces = open_braces.saturating_sub(1);
                    if open_braces == 0 {
                        close = Some(position);
                        break;
                    }
                }
                _ => {}
            }
            position += 1;
        }
        let close = close.ok_or_else(|| self.array.structure_error("unbalanced braces"))?;
        // `close` indexes an ASCII `}`, so these are char boundaries.
        let (literal, after) = self
            .rest
            .split_at_checked(close + 1)
            .ok_or_else(|| self.array.structure_error("unbalanced braces"))?;
        let nested = Array {
            literal,
            body_start: 1,
            element_kind: self.array.element_kind,
            depth,
        };
        Ok((ArrayElement::Nested(nested), after))
    }

    /// `"…"` with `\` escaping the next character.
    fn quoted_element(&self) -> Result<(ArrayElement<'a>, &'a str), ValueError> {
        let bytes = self.rest.as_bytes();
        let mut position = 1;
        let mut has_escapes = false;
        let close = loop {
            match bytes.get(position) {
                None => return Err(self.array.structure_error("unterminated quoted element")),
                Some(b'\\') => {
                    has_escapes = true;
                    position += 2;
                }
                Some(b'"') => break position,
                Some(_) => position += 1,
            }
        };
        // `close` indexes an ASCII `"`: char boundaries on both sides.
        let content = self
            .rest
            .get(1..close)
            .ok_or_else(|| self.array.structure_error("unterminated quoted element"))?;
        let after = self.rest.get(close + 1..).unwrap_or_default();
        let value = self.decode_element(content, has_escapes)?;
        Ok((ArrayElement::Value(value), after))
    }

    /// Text up to the next `,` or `}`; `NULL` (any case) is the null element.
    fn unquoted_element(&self) -> Result<(ArrayElement<'a>, &'a str), ValueError> {
        let bytes = self.rest.as_bytes();
        let end = memchr::memchr3(b',', b'{', b'"', bytes).unwrap_or(bytes.len());
        let end = memchr::memchr(b'}', bytes.get(..end).unwrap_or_default()).unwrap_or(end);
        let (content, after) = self
            .rest
            .split_at_checked(end)
            .ok_or_else(|| self.array.structure_error("malformed element"))?;
        if after.starts_with(['{', '"', '}']) {
            return Err(self
                .array
                .structure_error("unexpected { \" or } inside an element"));
        }
        if content.is_empty() {
            return Err(self.array.structure_error("empty unquoted element"));
        }
        if content.eq_ignore_ascii_case("NULL") {
            return Ok((ArrayElement::Null, after));
        }
        let value = self.decode_element(content, false)?;
        Ok((ArrayElement::Value(value), after))
    }

    fn decode_element(&self, content: &'a str, has_escapes: bool) -> Result<Value<'a>, ValueError> {
        let element_kind = self.array.element_kind;
        let decoded = if has_escapes {
            decode_escaped_element(element_kind, content)
        } else {
            element_kind.decode_str(content)
        };
        decoded.map_err(|reason| ValueError::InvalidArrayElement {
            kind: self.array.kind(),
            text: quote_for_error(self.array.literal.as_bytes()),
            source: Box::new(ValueError::invalid(
                ValueKind::Scalar(element_kind),
                content.as_bytes(),
                reason,
            )),
        })
    }
}

/// Elements with escapes only occur for types whose text can hold `"` or `\`; for the others the
/// escape is a malformed literal.
fn decode_escaped_element(kind: ScalarKind, content: &str) -> Result<Value<'_>, &'static str> {
    let text = TextValue::escaped(content);
    match kind {
        ScalarKind::Text => Ok(Value::Text(text)),
        ScalarKind::Json | ScalarKind::Jsonb => {
            if text.bytes().all(|b| b.is_ascii_whitespace()) {
                return Err("empty JSON document");
            }
            Ok(Value::Json(text))
        }
        ScalarKind::Bytea => {
            validate_bytea_hex(text.bytes())?;
            Ok(Value::Bytea(text))
        }
        _ => Err("unexpected backslash escape"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::value::Float;

    fn elements<'a>(array: &Array<'a>) -> Vec<ArrayElement<'a>> {
        array.elements().collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn integers_with_null_and_nesting() {
        let array = decode_array("{{1,2},{NULL,-4}}", ScalarKind::Int4).unwrap();
        let outer = elements(&array);
        assert_eq!(outer.len(), 2);
        let ArrayElement::Nested(second) = outer[1] else {
            panic!("{outer:?}")
        };
        assert_eq!(
            elements(&second),
            [ArrayElement::Null, ArrayElement::Value(Value::Int(-4))]
        );
    }

    #[test]
    fn empty_array() {
        let array = decode_array("{}", ScalarKind::Text).unwrap();
        assert!(elements(&array).is_empty());
    }

    #[test]
    fn quoted_elements_with_escapes() {
        let array = decode_array(
            r#"{plain,"a \"b\"","c\\d","",NULL,"NULL"}"#,
            ScalarKind::Text,
        )
        .unwrap();
        let texts: Vec<Option<String>> = elements(&array)
            .into_iter()
            .map(|element| match element {
                ArrayElement::Value(Value::Text(text)) => Some(text.to_string()),
                ArrayElement::Null => None,
                other => panic!("{other:?}"),
            })
            .collect();
        let expected = [
            Some("plain"),
            Some(r#"a "b""#),
            Some(r"c\d"),
            Some(""),
            None,
            Some("NULL"),
        ];
        assert_eq!(texts, expected.map(|t| t.map(str::to_owned)));
    }

    #[test]
    fn decoration_is_accepted() {
        let array = decode_array("[0:1]={5,6}", ScalarKind::Int8).unwrap();
        assert_eq!(array.literal(), "[0:1]={5,6}");
        assert_eq!(elements(&array).len(), 2);
        assert!(decode_array("[1:2][-3:-2]={{1,2},{3,4}}", ScalarKind::Int2).is_ok());
        assert!(decode_array("[1:2={5,6}", ScalarKind::Int2).is_err());
        assert!(decode_array("[a:2]={5,6}", ScalarKind::Int2).is_err());
    }

    #[test]
    fn typed_elements_decode() {
        let array = decode_array(
            r#"{"2026-11-22 10:00:00+05:30",infinity}"#,
            ScalarKind::TimestampTz,
        )
        .unwrap();
        assert_eq!(elements(&array).len(), 2);
        let array = decode_array("{1.5,NaN,-Infinity}", ScalarKind::Float8).unwrap();
        assert_eq!(
            elements(&array)[1],
            ArrayElement::Value(Value::Float(Float::NaN))
        );
        let array = decode_array(r#"{"{\"a\": 1}",null}"#, ScalarKind::Jsonb).unwrap();
        let ArrayElement::Value(Value::Json(json)) = elements(&array)[0] else {
            panic!()
        };
        assert_eq!(json, r#"{"a": 1}"#);
        let array = decode_array(r#"{"\\x0102","\\x"}"#, ScalarKind::Bytea).unwrap();
        assert_eq!(elements(&array).len(), 2);
    }

    #[test]
    fn malformed_literals_are_errors() {
        let cases = [
            ("", ScalarKind::Int4),
            ("1,2", ScalarKind::Int4),
            ("{1,2", ScalarKind::Int4),
            ("{1,2}}", ScalarKind::Int4),
            ("{1},{2}", ScalarKind::Int4),
            ("{1,}", ScalarKind::Int4),
            ("{,1}", ScalarKind::Int4),
            ("{1,,2}", ScalarKind::Int4),
            ("{\"1}", ScalarKind::Int4),
            ("{\"a\"b}", ScalarKind::Text),
            ("{a\"b\"}", ScalarKind::Text),
            ("{{1},2{3}}", ScalarKind::Int4),
            ("{{{{{{{1}}}}}}}", ScalarKind::Int4),
            ("{\"\\1\"}", ScalarKind::Int4),
            ("{x}", ScalarKind::Int4),
            ("{\"a\\\"}", ScalarKind::Text),
        ];
        for (literal, kind) in cases {
            assert!(decode_array(literal, kind).is_err(), "{literal:?} parsed");
        }
        assert!(decode_array("{{{{{{1}}}}}}", ScalarKind::Int4).is_ok());
    }

    #[test]
    fn element_errors_name_the_element() {
        let error = decode_array("{1,x}", ScalarKind::Int4).unwrap_err();
        assert_eq!(error.to_string(), "invalid element in int4[] value `{1,x}`");
        let source = std::error::Error::source(&error).unwrap().to_string();
        assert_eq!(source, "invalid int4 value `x`: not an integer");
    }
}
