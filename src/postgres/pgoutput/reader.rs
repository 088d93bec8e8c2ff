//! The bounds-checked cursor the message decoders read fields with. Every read names its field;
//! running out of bytes, a missing NUL or bad UTF-8 becomes a [`PgOutputError`] carrying the
//! message type, field and offset. Strings and byte fields are `Bytes::slice`s of the message
//! (a reference-count bump, no copy). It knows field encodings, not message layouts (those are in
//! `message.rs`). Protects invariant #9: no read here can index past the end.

use bytes::Bytes;

use super::{MessageType, PgOutputError, PgStr};
use crate::postgres::value::PgTimestamp;
use crate::postgres::{Lsn, Oid, Xid};

/// A cursor over one pgoutput message; offset 0 is the type byte.
pub(super) struct Reader<'d> {
    data: &'d Bytes,
    offset: usize,
    message: MessageType,
}

impl<'d> Reader<'d> {
    /// Starts after the type byte.
    pub(super) fn new(data: &'d Bytes, message: MessageType) -> Self {
        Reader {
            data,
            offset: 1,
            message,
        }
    }

    pub(super) fn message(&self) -> MessageType {
        self.message
    }

    pub(super) fn offset(&self) -> usize {
        self.offset
    }

    /// The unread bytes.
    pub(super) fn remaining(&self) -> &'d [u8] {
        self.data.get(self.offset..).unwrap_or_default()
    }

    pub(super) fn truncated(&self, field: &'static str, expected: usize) -> PgOutputError {
        self.truncated_at(field, self.offset, expected)
    }

    pub(super) fn truncated_at(
        &self,
        field: &'static str,
        offset: usize,
        expected: usize,
    ) -> PgOutputError {
        PgOutputError::Truncated {
            message: self.message,
            field,
            offset,
            expected,
            available: self.data.len().saturating_sub(offset),
        }
    }

    fn fixed<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], PgOutputError> {
        match self.remaining().first_chunk::<N>() {
            Some(chunk) => {
                self.offset += N;
                Ok(*chunk)
            }
            None => Err(self.truncated(field, N)),
        }
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, PgOutputError> {
        self.fixed::<1>(field).map(|[byte]| byte)
    }

    pub(super) fn i16(&mut self, field: &'static str) -> Result<i16, PgOutputError> {
        self.fixed(field).map(i16::from_be_bytes)
    }

    pub(super) fn i32(&mut self, field: &'static str) -> Result<i32, PgOutputError> {
        self.fixed(field).map(i32::from_be_bytes)
    }

    /// An `i32` length or count that must not be negative.
    pub(super) fn length(&mut self, field: &'static str) -> Result<usize, PgOutputError> {
        let offset = self.offset;
        let value = self.i32(field)?;
        usize::try_from(value).map_err(|_| PgOutputError::NegativeLength {
            message: self.message,
            field,
            offset,
            value,
        })
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, PgOutputError> {
        self.fixed(field).map(u32::from_be_bytes)
    }

    pub(super) fn u64(&mut self, field: &'static str) -> Result<u64, PgOutputError> {
        self.fixed(field).map(u64::from_be_bytes)
    }

    pub(super) fn i64(&mut self, field: &'static str) -> Result<i64, PgOutputError> {
        self.fixed(field).map(i64::from_be_bytes)
    }

    pub(super) fn lsn(&mut self, field: &'static str) -> Result<Lsn, PgOutputError> {
        self.u64(field).map(Lsn)
    }

    pub(super) fn timestamp(&mut self, field: &'static str) -> Result<PgTimestamp, PgOutputError> {
        self.i64(field).map(PgTimestamp)
    }

    pub(super) fn xid(&mut self, field: &'static str) -> Result<Xid, PgOutputError> {
        self.u32(field).map(Xid)
    }

    pub(super) fn oid(&mut self, field: &'static str) -> Result<Oid, PgOutputError> {
        self.u32(field).map(Oid)
    }

    /// A NUL-terminated UTF-8 string, terminator consumed and excluded.
    pub(super) fn string(&mut self, field: &'static str) -> Result<PgStr, PgOutputError> {
        let start = self.offset;
        let length =
            memchr::memchr(0, self.remaining()).ok_or(PgOutputError::UnterminatedString {
                message: self.message,
                field,
                offset: start,
            })?;
        let bytes = self.data.slice(start..start + length);
        self.offset = start + length + 1;
        PgStr::from_utf8(bytes).ok_or(PgOutputError::InvalidUtf8 {
            message: self.message,
            field,
            offset: start,
        })
    }

    /// The next `length` bytes as a slice of the message.
    pub(super) fn bytes(
        &mut self,
        length: usize,
        field: &'static str,
    ) -> Result<Bytes, PgOutputError> {
        if self.remaining().len() < length {
            return Err(self.truncated(field, length));
        }
        let start = self.offset;
        self.offset += length;
        Ok(self.data.slice(start..start + length))
    }

    /// Fails unless every byte was read.
    pub(super) fn finish(&self) -> Result<(), PgOutputError> {
        match self.remaining().len() {
            0 => Ok(()),
            count => Err(PgOutputError::TrailingBytes {
                message: self.message,
                offset: self.offset,
                count,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked_and_named() {
        let short = Bytes::from_static(b"I\x00\x00\x01");
        let mut reader = Reader::new(&short, MessageType::Insert);
        assert_eq!(
            reader.u32("relation id").unwrap_err().to_string(),
            "truncated Insert message: expected 4 bytes for relation id at offset 1, 3 left"
        );
        let data = Bytes::from_static(b"I\x00\x01abc\x00\xff\x00");
        let mut reader = Reader::new(&data, MessageType::Insert);
        assert_eq!(reader.i16("x").unwrap(), 1);
        assert_eq!(reader.string("name").unwrap(), "abc");
        assert_eq!(
            reader.string("other").unwrap_err(),
            PgOutputError::InvalidUtf8 {
                message: MessageType::Insert,
                field: "other",
                offset: 7
            }
        );
        let mut reader = Reader::new(&data, MessageType::Insert);
        assert!(reader.bytes(100, "value").is_err());
        assert_eq!(reader.bytes(8, "value").unwrap().len(), 8);
        assert!(reader.finish().is_ok());
        assert!(reader.u8("more").is_err());
        assert!(matches!(
            reader.string("s"),
            Err(PgOutputError::UnterminatedString { offset: 9, .. })
        ));
    }

    #[test]
    fn negative_lengths_are_errors() {
        let data = Bytes::from_static(b"M\xff\xff\xff\xfe");
        let mut reader = Reader::new(&data, MessageType::Message);
        assert_eq!(
            reader.length("content length").unwrap_err().to_string(),
            "negative content length -2 in Message message at offset 1"
        );
    }
}
