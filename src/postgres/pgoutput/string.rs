//! [`PgStr`]: a pgoutput `str` field (namespace, relation, column, origin, prefix, gid) as a
//! UTF-8-validated slice of the received buffer — no copy, no allocation. It owns only the
//! "validated once, trusted after" guarantee; finding the NUL and reporting errors is the reader's
//! job. Protects invariant #9: the one `unsafe` here relies on validation done in the only
//! constructor.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// A NUL-terminated protocol string, terminator excluded, known to be UTF-8.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct PgStr(Bytes);

impl PgStr {
    /// Wraps `bytes` if they are UTF-8 (validated with simdutf8).
    pub fn from_utf8(bytes: Bytes) -> Option<PgStr> {
        simdutf8::basic::from_utf8(&bytes).ok()?;
        Some(PgStr(bytes))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: the only constructor, `from_utf8`, validated these bytes as UTF-8, and `Bytes`
        // is immutable, so they are still valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes (a slice of the received message).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl Deref for PgStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for PgStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for PgStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for PgStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for PgStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PgStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_once() {
        let text = PgStr::from_utf8(Bytes::from_static("public.é".as_bytes())).unwrap();
        assert_eq!(text, "public.é");
        assert_eq!(text.len(), 9);
        assert_eq!(format!("{text:?}"), "\"public.é\"");
        assert!(PgStr::from_utf8(Bytes::from_static(b"\xff")).is_none());
        assert_eq!(PgStr::default(), "");
    }
}
