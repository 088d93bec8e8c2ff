//! Fuzz target for the pgoutput parser (DESIGN invariant #9: bad input never panics). The first
//! input byte chooses the decoder state (bit 0: inside a stream block) and the rest is one
//! XLogData payload. A message that decodes is read field by field (every string through
//! `PgStr::as_str`, every timestamp rendered) and every text value of its tuples is decoded as
//! every value kind, then written as the sink and `tail` write it (`starwal_fuzz`). Seeds:
//! `fuzz/seeds/pgoutput/`, one valid message of each type, first byte = state. It owns no
//! parsing logic of its own.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use starwal::postgres::pgoutput::decode_message;

fuzz_target!(|input: &[u8]| {
    let Some((&state, payload)) = input.split_first() else {
        return;
    };
    let in_stream_block = state & 1 == 1;
    let mut out = Vec::new();
    match decode_message(Bytes::copy_from_slice(payload), in_stream_block) {
        Ok(message) => starwal_fuzz::exercise_message(&message, &mut out),
        // Errors are logged with their offsets: rendering one must not panic either.
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
