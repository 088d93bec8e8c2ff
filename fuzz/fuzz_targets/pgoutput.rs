//! Fuzz target for the pgoutput parser and text value decoding (DESIGN invariant #9: bad input
//! never panics). The first input byte chooses the decoder state (bit 0: inside a stream block)
//! and the rest is one XLogData payload. A message that decodes is then used the way the
//! pipeline and `starwal tail` use it: every tuple value is iterated, decoded as each of a set of
//! types, and written as JSON. Seeds: `fuzz/seeds/pgoutput/` (one valid message of each type,
//! first byte = state). It owns no parsing logic of its own.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use starwal::postgres::pgoutput::{decode_message, Message, OldTuple, TupleData, TupleValueRef};
use starwal::postgres::value::{write_json, ValueKind};
use starwal::postgres::Oid;

/// Types every text value is also decoded as: the parser must survive any value for any type.
const TYPE_OIDS: [u32; 12] = [
    16, 20, 25, 701, 1700, 17, 2950, 3802, 1082, 1184, 1007, 1009,
];

fn exercise(tuple: &TupleData, json: &mut Vec<u8>) {
    assert_eq!(tuple.values().count(), tuple.column_count());
    for value in tuple.raw_values() {
        if let TupleValueRef::Text(text) = value {
            for oid in TYPE_OIDS {
                if let Ok(decoded) = ValueKind::from_type_oid(Oid(oid)).decode(text) {
                    json.clear();
                    write_json(&decoded, json);
                }
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&state, payload)) = input.split_first() else {
        return;
    };
    let in_stream_block = state & 1 == 1;
    let Ok(message) = decode_message(Bytes::copy_from_slice(payload), in_stream_block) else {
        return;
    };
    let mut json = Vec::new();
    match &message {
        Message::Insert(insert) => exercise(&insert.new_tuple, &mut json),
        Message::Update(update) => {
            if let Some(old) = &update.old_tuple {
                exercise(old.tuple(), &mut json);
            }
            exercise(&update.new_tuple, &mut json);
        }
        Message::Delete(delete) => match &delete.old_tuple {
            OldTuple::Key(tuple) | OldTuple::Full(tuple) => exercise(tuple, &mut json),
        },
        Message::Relation(relation) => {
            for column in &relation.columns {
                let _ = ValueKind::from_type_oid(column.type_oid);
            }
        }
        _ => {}
    }
});
