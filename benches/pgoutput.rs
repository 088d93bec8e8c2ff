//! Throughput of the pgoutput parser and of text value decoding, over a realistic stream: about
//! 2 MB of XLogData payloads, transactions of `B`, 10-column Inserts, Updates (new only, `K`+`N`,
//! `O`+`N`), Deletes (`K`, `O`) and `C`, each payload a slice of one shared buffer as the
//! replication stream hands them over. It measures parsing only — no network, no sink. Guards the
//! DESIGN "Scale" goal (the agent is never the bottleneck of its slot): the parse path should stay
//! above 1 GB/s per core.
//!
//! A second group, `value_decode`, times one typical value per kind.
//!
//! Run: `cargo bench --bench pgoutput -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use starwal::postgres::pgoutput::{
    Decoder, Message, OldTuple, TupleData, TupleValue, TupleValueRef,
};
use starwal::postgres::value::{Value, ValueKind};
use starwal::postgres::Oid;

/// The benchmark relation's column types: int8, text, text (NULL), timestamptz, numeric, bool,
/// uuid, varchar, int4, jsonb.
const COLUMN_TYPES: [u32; 10] = [20, 25, 25, 1184, 1700, 16, 2950, 1043, 23, 3802];
const CHANGES_PER_TRANSACTION: u64 = 20;
const TARGET_STREAM_BYTES: usize = 2 * 1024 * 1024;

fn put_tuple(buffer: &mut BytesMut, id: u64, key_only: bool) {
    let id_text = id.to_string();
    let email = format!("user{id}@example.com");
    let amount = format!("{}.{:02}", id * 7 % 100_000, id % 100);
    let count = (id % 1000).to_string();
    let columns: [Option<&str>; 10] = [
        Some(&id_text),
        Some(&email),
        None,
        Some("2026-11-22 10:00:00.123456+00"),
        Some(&amount),
        Some(if id.is_multiple_of(2) { "t" } else { "f" }),
        Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        Some("some longer free text in a varchar column"),
        Some(&count),
        Some(r#"{"k": 1, "tags": ["a", "b"]}"#),
    ];
    buffer.put_i16(columns.len() as i16);
    for (index, column) in columns.iter().enumerate() {
        match column {
            Some(text) if !key_only || index == 0 => {
                buffer.put_u8(b't');
                buffer.put_i32(text.len() as i32);
                buffer.put_slice(text.as_bytes());
            }
            _ => buffer.put_u8(b'n'),
        }
    }
}

/// Builds the stream into one buffer, then splits it into payloads that share it.
fn build_stream() -> (Vec<Bytes>, usize) {
    let mut buffer = BytesMut::new();
    let mut boundaries = Vec::new();
    let mut id = 0u64;
    let mut lsn = 0x16B_0000u64;
    while buffer.len() < TARGET_STREAM_BYTES {
        buffer.put_u8(b'B');
        buffer.put_u64(lsn + 4096);
        buffer.put_i64(817_000_000_000_000);
        buffer.put_u32(1000 + (id / CHANGES_PER_TRANSACTION) as u32);
        boundaries.push(buffer.len());
        for _ in 0..CHANGES_PER_TRANSACTION {
            id += 1;
            match id % 10 {
                // 70 % inserts
                0..=6 => {
                    buffer.put_u8(b'I');
                    buffer.put_u32(16_384);
                    buffer.put_u8(b'N');
                    put_tuple(&mut buffer, id, false);
                }
                // updates: new only, key change, full old row
                7 => {
                    buffer.put_u8(b'U');
                    buffer.put_u32(16_384);
                    match id % 3 {
                        0 => {}
                        1 => {
                            buffer.put_u8(b'K');
                            put_tuple(&mut buffer, id - 1, true);
                        }
                        _ => {
                            buffer.put_u8(b'O');
                            put_tuple(&mut buffer, id - 1, false);
                        }
                    }
                    buffer.put_u8(b'N');
                    put_tuple(&mut buffer, id, false);
                }
                8 => {
                    buffer.put_u8(b'U');
                    buffer.put_u32(16_384);
                    buffer.put_u8(b'N');
                    put_tuple(&mut buffer, id, false);
                }
                // deletes by key and by full row
                _ => {
                    buffer.put_u8(b'D');
                    buffer.put_u32(16_384);
                    buffer.put_u8(if id % 20 == 9 { b'K' } else { b'O' });
                    put_tuple(&mut buffer, id, id % 20 == 9);
                }
            }
            boundaries.push(buffer.len());
        }
        buffer.put_u8(b'C');
        buffer.put_u8(0);
        buffer.put_u64(lsn + 4096);
        buffer.put_u64(lsn + 4200);
        buffer.put_i64(817_000_000_000_000);
        boundaries.push(buffer.len());
        lsn += 8192;
    }
    let total_bytes = buffer.len();
    let mut payloads = Vec::with_capacity(boundaries.len());
    let mut previous = 0;
    for boundary in boundaries {
        payloads.push(buffer.split_to(boundary - previous).freeze());
        previous = boundary;
    }
    (payloads, total_bytes)
}

/// The tuples of a change message.
fn for_each_tuple(message: &Message, mut visit: impl FnMut(&TupleData)) {
    match message {
        Message::Insert(insert) => visit(&insert.new_tuple),
        Message::Update(update) => {
            if let Some(old) = &update.old_tuple {
                visit(old.tuple());
            }
            visit(&update.new_tuple);
        }
        Message::Delete(delete) => match &delete.old_tuple {
            OldTuple::Key(tuple) | OldTuple::Full(tuple) => visit(tuple),
        },
        _ => {}
    }
}

fn bench_pgoutput(c: &mut Criterion) {
    let (payloads, total_bytes) = build_stream();
    let kinds: Vec<ValueKind> = COLUMN_TYPES
        .iter()
        .map(|&oid| ValueKind::from_type_oid(Oid(oid)))
        .collect();

    let mut group = c.benchmark_group("pgoutput");
    group.throughput(Throughput::Bytes(total_bytes as u64));

    group.bench_function("parse_iterate_bytes", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new();
            let mut value_bytes = 0usize;
            for payload in &payloads {
                let message = decoder.decode(payload.clone()).expect("valid stream");
                for_each_tuple(&message, |tuple| {
                    for value in tuple.values() {
                        if let TupleValue::Text(text) = value {
                            value_bytes += text.len();
                        }
                    }
                });
            }
            black_box(value_bytes)
        })
    });

    group.bench_function("parse_iterate_borrowed", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new();
            let mut value_bytes = 0usize;
            for payload in &payloads {
                let message = decoder.decode(payload.clone()).expect("valid stream");
                for_each_tuple(&message, |tuple| {
                    for value in tuple.raw_values() {
                        if let TupleValueRef::Text(text) = value {
                            value_bytes += text.len();
                        }
                    }
                });
            }
            black_box(value_bytes)
        })
    });

    group.bench_function("parse_decode_values", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new();
            let mut decoded = 0usize;
            for payload in &payloads {
                let message = decoder.decode(payload.clone()).expect("valid stream");
                for_each_tuple(&message, |tuple| {
                    for (value, kind) in tuple.raw_values().zip(&kinds) {
                        let value = match value {
                            TupleValueRef::Text(text) => kind.decode(text).expect("valid value"),
                            _ => Value::Null,
                        };
                        decoded += usize::from(!matches!(black_box(value), Value::Null));
                    }
                });
            }
            black_box(decoded)
        })
    });
    group.finish();
}

/// One typical value per kind, decoded alone: where the time of `parse_decode_values` goes.
fn bench_value_kinds(c: &mut Criterion) {
    let samples: [(u32, &[u8]); 10] = [
        (16, b"t"),
        (20, b"1234567"),
        (23, b"42"),
        (25, b"user123@example.com"),
        (701, b"1.2345e+100"),
        (1184, b"2026-11-22 10:00:00.123456+00"),
        (1700, b"12345.67"),
        (2950, b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (3802, br#"{"k": 1, "tags": ["a", "b"]}"#),
        (1007, b"{1,2,NULL,4}"),
    ];
    let mut group = c.benchmark_group("value_decode");
    for (oid, text) in samples {
        let kind = ValueKind::from_type_oid(Oid(oid));
        group.bench_function(kind.to_string(), |b| {
            b.iter(|| black_box(kind.decode(black_box(text))).is_ok())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_pgoutput, bench_value_kinds);
criterion_main!(benches);
