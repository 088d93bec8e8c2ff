//! Fuzz target for a stream of pgoutput messages through a real consumer (DESIGN invariant #9):
//! the input is a sequence of `[u16 big-endian length][payload]` frames, each decoded by one
//! `Decoder` (so stream blocks open and close as on a connection) and handed to `starwal tail`'s
//! `TailConsumer`. Relation messages in the input choose the column types, so every value kind
//! meets the decoder through the path that resolves it from an OID (reading every field of every
//! message is the `pgoutput` target's job). Each printed line must be a JSON object unless a
//! relation has a json/jsonb column (embedded raw). Seeds: `fuzz/seeds/tail/`: every message
//! kind in order, and a relation with a column of each kind with one insert, update, delete and
//! truncate.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use starwal::postgres::pgoutput::{Decoder, Message};
use starwal::postgres::replication::session::ChangeConsumer;
use starwal::postgres::value::{ScalarKind, ValueKind};
use starwal::postgres::Lsn;
use starwal::tail::TailConsumer;

fuzz_target!(|input: &[u8]| {
    let mut decoder = Decoder::new();
    let mut consumer = TailConsumer::new(Vec::new());
    let mut raw_json_columns = false;
    let mut rest = input;
    let mut lsn = 0u64;
    while let Some((length, after)) = rest.split_first_chunk::<2>() {
        let length = usize::from(u16::from_be_bytes(*length)).min(after.len());
        let (payload, after) = after.split_at(length);
        rest = after;
        lsn += 1;
        let message = match decoder.decode(Bytes::copy_from_slice(payload)) {
            Ok(message) => message,
            Err(error) => {
                let _ = error.to_string();
                continue;
            }
        };
        if let Message::Relation(relation) = &message {
            raw_json_columns |= relation.columns.iter().any(|column| {
                let (ValueKind::Scalar(kind) | ValueKind::Array(kind)) =
                    ValueKind::from_type_oid(column.type_oid);
                matches!(kind, ScalarKind::Json | ScalarKind::Jsonb)
            });
        }
        // A change the consumer rejects (unknown relation, wrong column count, bad value) stops
        // `tail` with that error; here the next message is tried, as if on a new stream.
        if let Err(error) = consumer.handle(Lsn(lsn), &message) {
            let _ = error.to_string();
        }
    }
    let printed = consumer.into_inner();
    if !raw_json_columns {
        for line in printed
            .split(|&byte| byte == b'\n')
            .filter(|line| !line.is_empty())
        {
            starwal_fuzz::assert_json(line, &"tail");
        }
    }
});
