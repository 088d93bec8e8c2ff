//! The one error type of value decoding, [`ValueError`]: it names the Postgres type and quotes the
//! offending text (truncated, control characters escaped) so an operator can find the row. It owns
//! no context beyond the value itself — the caller adds the table, column and LSN. Protects
//! invariant #9 (bad input never panics: a value that does not parse becomes this error).

use super::ValueKind;

/// How many characters of an offending value an error quotes before it cuts with `…`.
const MAX_QUOTED_CHARS: usize = 64;

/// A text-format value that does not decode as the type its column declares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The bytes are not UTF-8 (Postgres sends every text value in the client encoding, UTF-8).
    #[error("invalid UTF-8 in {kind} value `{text}`")]
    InvalidUtf8 {
        /// The type the column declares.
        kind: ValueKind,
        /// The offending bytes, lossily decoded and truncated.
        text: String,
    },
    /// The text does not have the form Postgres prints for this type.
    #[error("invalid {kind} value `{text}`: {reason}")]
    Invalid {
        /// The type the column declares (for an array element: the element type).
        kind: ValueKind,
        /// The offending text, truncated.
        text: String,
        /// What was wrong, e.g. "out of range for int2".
        reason: &'static str,
    },
    /// One element of an array literal does not decode; `source` says which and why.
    #[error("invalid element in {kind} value `{text}`")]
    InvalidArrayElement {
        /// The array type the column declares.
        kind: ValueKind,
        /// The whole array literal, truncated.
        text: String,
        /// The element's own error.
        #[source]
        source: Box<ValueError>,
    },
}

impl ValueError {
    pub(crate) fn invalid(kind: ValueKind, text: &[u8], reason: &'static str) -> Self {
        ValueError::Invalid {
            kind,
            text: quote_for_error(text),
            reason,
        }
    }

    pub(crate) fn invalid_utf8(kind: ValueKind, text: &[u8]) -> Self {
        ValueError::InvalidUtf8 {
            kind,
            text: quote_for_error(text),
        }
    }
}

/// The offending value as an error shows it: lossy UTF-8, control characters escaped, at most
/// [`MAX_QUOTED_CHARS`] characters followed by `…`.
pub(crate) fn quote_for_error(text: &[u8]) -> String {
    let lossy = String::from_utf8_lossy(text);
    let mut quoted = String::with_capacity(lossy.len().min(MAX_QUOTED_CHARS * 2));
    let mut chars = lossy.chars();
    for c in chars.by_ref().take(MAX_QUOTED_CHARS) {
        if c.is_control() {
            quoted.extend(c.escape_debug());
        } else {
            quoted.push(c);
        }
    }
    if chars.next().is_some() {
        quoted.push('…');
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::value::ScalarKind;

    #[test]
    fn error_names_type_and_text() {
        let error = ValueError::invalid(
            ValueKind::Scalar(ScalarKind::Int4),
            b"12a",
            "not an integer",
        );
        assert_eq!(
            error.to_string(),
            "invalid int4 value `12a`: not an integer"
        );
    }

    #[test]
    fn long_and_odd_text_is_truncated_and_escaped() {
        let long = "x".repeat(200);
        let quoted = quote_for_error(long.as_bytes());
        assert_eq!(quoted.chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(quoted.ends_with('…'));
        assert_eq!(quote_for_error(b"a\nb\xff"), "a\\nb\u{fffd}");
    }
}
