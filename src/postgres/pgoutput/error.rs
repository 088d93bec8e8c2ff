//! [`PgOutputError`]: why a pgoutput message could not be decoded. Every variant names the message
//! type, the field being read and the byte offset inside the message (the type byte is offset 0),
//! so a bad payload can be found in a hex dump. The caller adds the LSN. Protects invariant #9:
//! the parser returns one of these for any malformed input instead of panicking.

use super::MessageType;

/// A pgoutput message that does not follow the protocol layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgOutputError {
    /// The XLogData payload was empty: no message type byte.
    #[error("empty pgoutput message: no message type byte")]
    Empty,
    /// The first byte is not a pgoutput message type.
    #[error("unknown pgoutput message type {byte:#04x} ({})", (*byte as char).escape_default())]
    UnknownMessageType {
        /// The type byte received.
        byte: u8,
    },
    /// The message ended before a field.
    #[error(
        "truncated {message} message: expected {expected} bytes for {field} at offset {offset}, \
         {available} left"
    )]
    Truncated {
        /// The message being decoded.
        message: MessageType,
        /// The field being read.
        field: &'static str,
        /// Offset of the field in the message.
        offset: usize,
        /// Bytes the field needs.
        expected: usize,
        /// Bytes left in the message.
        available: usize,
    },
    /// A `str` field has no NUL terminator before the end of the message.
    #[error(
        "truncated {message} message: string {field} at offset {offset} has no NUL terminator"
    )]
    UnterminatedString {
        /// The message being decoded.
        message: MessageType,
        /// The field being read.
        field: &'static str,
        /// Offset of the string in the message.
        offset: usize,
    },
    /// A `str` field is not UTF-8.
    #[error("invalid UTF-8 in {field} of {message} message at offset {offset}")]
    InvalidUtf8 {
        /// The message being decoded.
        message: MessageType,
        /// The field being read.
        field: &'static str,
        /// Offset of the string in the message.
        offset: usize,
    },
    /// A length or count field is negative.
    #[error("negative {field} {value} in {message} message at offset {offset}")]
    NegativeLength {
        /// The message being decoded.
        message: MessageType,
        /// The field being read.
        field: &'static str,
        /// Offset of the field in the message.
        offset: usize,
        /// The value received.
        value: i32,
    },
    /// A TupleData column kind is not `n`, `u`, `t` or `b`.
    #[error(
        "invalid tuple column kind {kind:#04x} for column {column} of {field} in {message} \
         message at offset {offset}"
    )]
    InvalidTupleKind {
        /// The message being decoded.
        message: MessageType,
        /// Which tuple ("new tuple", "old key tuple", …).
        field: &'static str,
        /// The column index (0-based).
        column: usize,
        /// Offset of the kind byte in the message.
        offset: usize,
        /// The byte received.
        kind: u8,
    },
    /// An Update or Delete has a byte other than the tuple markers it allows.
    #[error(
        "invalid tuple marker {found:#04x} in {message} message at offset {offset}: expected \
         {expected}"
    )]
    UnexpectedTupleMarker {
        /// The message being decoded.
        message: MessageType,
        /// Offset of the marker in the message.
        offset: usize,
        /// The markers allowed there, e.g. "'K', 'O' or 'N'".
        expected: &'static str,
        /// The byte received.
        found: u8,
    },
    /// A Relation's replica identity is not `d`, `n`, `f` or `i`.
    #[error("invalid replica identity {found:#04x} in {message} message at offset {offset}")]
    InvalidReplicaIdentity {
        /// The message being decoded.
        message: MessageType,
        /// Offset of the byte in the message.
        offset: usize,
        /// The byte received.
        found: u8,
    },
    /// The message has bytes after its last field.
    #[error("{count} trailing bytes after {message} message at offset {offset}")]
    TrailingBytes {
        /// The message being decoded.
        message: MessageType,
        /// Offset of the first unexpected byte.
        offset: usize,
        /// How many bytes are left over.
        count: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_message_field_and_offset() {
        let error = PgOutputError::Truncated {
            message: MessageType::Insert,
            field: "relation id",
            offset: 1,
            expected: 4,
            available: 0,
        };
        assert_eq!(
            error.to_string(),
            "truncated Insert message: expected 4 bytes for relation id at offset 1, 0 left"
        );
        let error = PgOutputError::UnknownMessageType { byte: b'Z' };
        assert_eq!(error.to_string(), "unknown pgoutput message type 0x5a (Z)");
        let error = PgOutputError::UnknownMessageType { byte: 0 };
        assert_eq!(
            error.to_string(),
            "unknown pgoutput message type 0x00 (\\u{0})"
        );
    }
}
