//! The pgoutput parser: turns one XLogData payload (a `Bytes` slice of the replication stream)
//! into a [`Message`], zero-copy. Strings ([`PgStr`]) and tuples ([`TupleData`]) are slices of the
//! received buffer; an Insert, Update or Delete is decoded without a heap allocation (proved by
//! the counting-allocator test below), so a slice keeps its whole network buffer alive until
//! dropped — whoever holds rows for long (batching) decides whether to copy.
//!
//! [`Decoder`] carries the only state pgoutput needs: whether we are inside a stream block
//! (`S` … `E`), where R, Y, I, U, D, T and M carry an extra `[xid]`. Create one per replication
//! connection and reset it (create a new one) on reconnect; [`decode_message`] is the pure form.
//!
//! Owns: message layouts (`message.rs`), TupleData validation and iteration (`tuple.rs`), field
//! reading (`reader.rs`), errors (`error.rs`). Does not own: the CopyBoth framing and XLogData
//! header (`postgres::replication`), value decoding (`postgres::value`), relation caching and
//! change semantics (the pipeline). Protects invariant #9: arbitrary bytes give a message or a
//! [`PgOutputError`] naming message type, field and offset — never a panic (proptests below, and
//! the `fuzz/` target).

#[cfg(test)]
mod alloc_count;
mod error;
mod message;
mod reader;
mod string;
#[cfg(test)]
pub(crate) mod test_messages;
mod tuple;

use bytes::Bytes;

pub use crate::postgres::value::PgTimestamp;
pub use error::PgOutputError;
pub use message::{
    decode_message, Begin, BeginPrepare, Commit, CommitPrepared, Delete, Insert, LogicalMessage,
    Message, MessageType, OldTuple, Origin, Prepare, Relation, RelationColumn, ReplicaIdentity,
    RollbackPrepared, StreamAbort, StreamAbortPosition, StreamCommit, StreamStart, Truncate,
    TypeMessage, Update,
};
pub use string::PgStr;
pub use tuple::{RawTupleValues, TupleData, TupleValue, TupleValueRef, TupleValues};

/// Decodes the pgoutput messages of one replication connection, in order, tracking whether they
/// arrive inside a stream block. A message that fails to decode leaves the state unchanged.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    in_stream_block: bool,
}

impl Decoder {
    /// A decoder for a fresh connection (outside any stream block).
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Whether the last Stream Start has not been followed by a Stream Stop yet.
    pub fn in_stream_block(&self) -> bool {
        self.in_stream_block
    }

    /// Decodes one XLogData payload and updates the stream-block state on `S` and `E`.
    pub fn decode(&mut self, data: Bytes) -> Result<Message, PgOutputError> {
        let message = decode_message(data, self.in_stream_block)?;
        match message {
            Message::StreamStart(_) => self.in_stream_block = true,
            Message::StreamStop => self.in_stream_block = false,
            _ => {}
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::test_messages::{insert, one_of_each, WireMessage};
    use super::*;
    use crate::postgres::Xid;
    use bytes::BytesMut;
    use proptest::prelude::*;

    #[test]
    fn decoder_reads_xid_only_inside_a_stream_block() {
        let mut decoder = Decoder::new();
        let Message::Insert(outside) = decoder.decode(insert(None, &[Some("1")])).unwrap() else {
            panic!()
        };
        assert_eq!(outside.xid, None);

        let start = WireMessage::new(b'S').u32(900).u8(1).build();
        assert!(matches!(decoder.decode(start), Ok(Message::StreamStart(_))));
        assert!(decoder.in_stream_block());
        let Message::Insert(inside) = decoder.decode(insert(Some(900), &[Some("1")])).unwrap()
        else {
            panic!()
        };
        assert_eq!(inside.xid, Some(Xid(900)));
        // The same bytes without [xid] no longer fit inside the block.
        assert!(decoder.decode(insert(None, &[Some("1")])).is_err());
        assert!(decoder.in_stream_block(), "a failed decode keeps the state");

        assert_eq!(
            decoder.decode(WireMessage::new(b'E').build()),
            Ok(Message::StreamStop)
        );
        assert!(!decoder.in_stream_block());
        let commit = WireMessage::new(b'c')
            .u32(900)
            .u8(0)
            .u64(1)
            .u64(2)
            .i64(3)
            .build();
        assert!(matches!(
            decoder.decode(commit),
            Ok(Message::StreamCommit(_))
        ));
    }

    /// Ten text columns, like the benchmark's rows.
    const TEN_COLUMNS: [Option<&str>; 10] = [
        Some("1234567"),
        Some("alice@example.com"),
        None,
        Some("2026-11-22 10:00:00.123456+00"),
        Some("1234.56"),
        Some("t"),
        Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        Some("some longer free text in a varchar column"),
        Some("42"),
        Some("{\"k\": 1}"),
    ];

    #[test]
    fn insert_decode_and_iteration_do_not_allocate() {
        // Like the replication stream: payloads split off one shared read buffer. The first
        // split turns the buffer into a shared one (one allocation, outside the measurement).
        let mut read_buffer = BytesMut::new();
        for _ in 0..3 {
            read_buffer.extend_from_slice(&insert(None, &TEN_COLUMNS));
        }
        let message_len = read_buffer.len() / 3;
        let payloads: Vec<Bytes> = (0..3)
            .map(|_| read_buffer.split_to(message_len).freeze())
            .collect();
        let mut decoder = Decoder::new();
        for payload in payloads {
            let (columns_seen, allocations) = alloc_count::count_allocations(|| {
                let Ok(Message::Insert(insert)) = decoder.decode(payload) else {
                    return 0;
                };
                let mut columns_seen = 0;
                for value in insert.new_tuple.values() {
                    columns_seen += usize::from(!matches!(value, TupleValue::UnchangedToast));
                }
                for value in insert.new_tuple.raw_values() {
                    columns_seen += usize::from(!matches!(value, TupleValueRef::UnchangedToast));
                }
                columns_seen
            });
            assert_eq!(columns_seen, 20);
            assert_eq!(allocations, 0, "decoding an Insert allocated");
        }
    }

    #[test]
    fn every_message_type_decodes_in_its_state() {
        for (in_stream_block, bytes) in one_of_each() {
            let result = decode_message(bytes.clone(), in_stream_block);
            assert!(result.is_ok(), "{bytes:?}: {result:?}");
            let message = result.unwrap_or(Message::StreamStop);
            assert_eq!(message.message_type().as_byte(), bytes[0]);
        }
    }

    #[test]
    fn fuzz_seeds_are_valid_messages() {
        // Each seed is `state byte (bit 0 = in stream block) + payload`, as the fuzz target reads.
        let seed_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/pgoutput");
        let mut seen_types = std::collections::HashSet::new();
        for entry in std::fs::read_dir(&seed_dir).expect("seed directory") {
            let path = entry.expect("seed entry").path();
            let seed = std::fs::read(&path).expect("seed file");
            let (state, payload) = seed.split_first().expect("non-empty seed");
            let result = decode_and_walk(payload.to_vec(), state & 1 == 1);
            let message = result.unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            seen_types.insert(message.message_type());
        }
        assert_eq!(seen_types.len(), 19, "a seed for every message type");
    }

    /// Valid messages, then mutated: truncated, a byte flipped or replaced, a byte appended.
    fn mutated_messages() -> impl Strategy<Value = (bool, Vec<u8>)> {
        let corpus = one_of_each();
        (0..corpus.len(), any::<usize>(), any::<u8>(), 0..4u8).prop_map(
            move |(index, position, byte, mutation)| {
                let (in_stream_block, message) =
                    corpus.get(index).cloned().unwrap_or((false, Bytes::new()));
                let mut bytes = message.to_vec();
                let position = position % (bytes.len() + 1);
                match mutation {
                    0 => bytes.truncate(position),
                    1 => {
                        if let Some(target) = bytes.get_mut(position) {
                            *target ^= byte | 1;
                        }
                    }
                    2 => {
                        if let Some(target) = bytes.get_mut(position) {
                            *target = byte;
                        }
                    }
                    _ => bytes.push(byte),
                }
                (in_stream_block, bytes)
            },
        )
    }

    /// Decodes and, on success, walks every tuple value (what a consumer does).
    fn decode_and_walk(bytes: Vec<u8>, in_stream_block: bool) -> Result<Message, PgOutputError> {
        let mut decoder = Decoder { in_stream_block };
        let message = decoder.decode(Bytes::from(bytes))?;
        let tuples: Vec<&TupleData> = match &message {
            Message::Insert(insert) => vec![&insert.new_tuple],
            Message::Update(update) => update
                .old_tuple
                .iter()
                .map(OldTuple::tuple)
                .chain([&update.new_tuple])
                .collect(),
            Message::Delete(delete) => vec![delete.old_tuple.tuple()],
            _ => vec![],
        };
        for tuple in tuples {
            assert_eq!(tuple.values().count(), tuple.column_count());
            assert_eq!(tuple.raw_values().count(), tuple.column_count());
        }
        Ok(message)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn inv9_arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..96),
            in_stream_block in any::<bool>(),
        ) {
            let _ = decode_and_walk(bytes, in_stream_block);
        }

        #[test]
        fn inv9_arbitrary_bytes_behind_a_known_type_never_panic(
            type_byte in proptest::sample::select(b"BCORYIUDTMSEcAbPKrp".to_vec()),
            body in proptest::collection::vec(any::<u8>(), 0..96),
            in_stream_block in any::<bool>(),
        ) {
            let mut bytes = vec![type_byte];
            bytes.extend(body);
            let _ = decode_and_walk(bytes, in_stream_block);
        }

        #[test]
        fn inv9_mutated_valid_messages_never_panic((in_stream_block, bytes) in mutated_messages()) {
            let _ = decode_and_walk(bytes.clone(), in_stream_block);
            let _ = decode_and_walk(bytes, !in_stream_block);
        }
    }
}
