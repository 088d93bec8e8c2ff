//! Fuzz target for text value decoding, one value at a time (DESIGN invariant #9): the first
//! input byte picks the value kind (`starwal_fuzz::kind_at`: 0–18 the scalars, 19–37 arrays of
//! them, in `SCALAR_KINDS` order; larger bytes wrap), the rest is the text Postgres would have
//! printed. The value is decoded, written as the sink and `tail` write it, and walked (array
//! elements at every depth). Seeds: `fuzz/seeds/value/`, named after their kind.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&kind, text)) = input.split_first() else {
        return;
    };
    let mut out = Vec::new();
    starwal_fuzz::exercise_value(starwal_fuzz::kind_at(usize::from(kind)), text, &mut out);
});
