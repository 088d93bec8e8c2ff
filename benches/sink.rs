//! Sink benchmarks: encoding a 10-column row into a Stream Load JSON body (target ≥ 2 M rows/s
//! per core), the same row through `TableEncoder` (decoded, audit columns added) as a streamed
//! change and as a copied row, each into a JSON and a CSV body (the body sizes are printed), and
//! loading 100k-row batches of either format into `starrocks-sim` through the real sink (curl,
//! 307, 100-continue; the sim's parsing runs in this process and is not StarRocks'). The
//! `table_encoder` group measures thread CPU time.
//! Run: `cargo bench --bench sink -- --warm-up-time 1 --measurement-time 5`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use starrocks_sim::catalog::{ColumnDef, ColumnType, TableSpec};
use starrocks_sim::{Sim, SimOptions};
use starwal::postgres::pgoutput::{TupleData, TupleValueRef};
use starwal::postgres::value::{Value, ValueKind};
use starwal::postgres::{Lsn, Oid};
use starwal::schema::{ColumnSchema, TableSchema};
use starwal::secret::Secret;
use starwal::sink::starrocks::encoding::{
    Audit, BodyFormat, BodyWriter, ChangeRow, ColumnSet, RowOp, SourceOp, SyncedAt, TableEncoder,
    ValueTarget, Written,
};
use starwal::sink::starrocks::mapping::TypeMapping;
use starwal::sink::starrocks::{
    Compression, DeleteMode, Label, StarRocksConfig, StarRocksSink, StreamLoadClient,
};
use starwal::sink::{LoadBatch, Sink};

/// A realistic row: (type OID, text as Postgres prints it, JSON key).
const ROW: [(u32, &str, &[u8]); 10] = [
    (20, "9007199254740993", b"\"id\":"),
    (
        25,
        "a customer's note, with some \"quoted\" text",
        b"\"note\":",
    ),
    (1700, "12345.67", b"\"amount\":"),
    (1184, "2026-11-22 10:00:00.123456+00", b"\"created_at\":"),
    (16, "t", b"\"active\":"),
    (701, "3.141592653589793", b"\"score\":"),
    (1082, "2026-11-22", b"\"day\":"),
    (2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", b"\"uid\":"),
    (3802, "{\"k\": [1, 2, 3]}", b"\"attrs\":"),
    (23, "42", b"\"qty\":"),
];

/// The StarRocks column a value of type `oid` (no typmod) is written into.
fn target_of(oid: u32) -> ValueTarget {
    let column = ColumnSchema {
        name: String::new(),
        type_oid: Oid(oid),
        type_modifier: -1,
        type_name: String::new(),
        nullable: true,
        key_position: None,
    };
    ValueTarget::of_column(&column, TypeMapping::default())
}

fn decoded_row() -> Vec<(Value<'static>, &'static [u8], ValueTarget)> {
    ROW.iter()
        .map(|(oid, text, key)| {
            let value = ValueKind::from_type_oid(Oid(*oid))
                .decode(text.as_bytes())
                .expect("valid sample");
            (value, *key, target_of(*oid))
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let row = decoded_row();
    let kinds: Vec<(ValueKind, &[u8], &[u8], ValueTarget)> = ROW
        .iter()
        .map(|(oid, text, key)| {
            (
                ValueKind::from_type_oid(Oid(*oid)),
                text.as_bytes(),
                *key,
                target_of(*oid),
            )
        })
        .collect();
    const ROWS: u64 = 10_000;
    let mut group = c.benchmark_group("encode_10_columns");
    group.throughput(Throughput::Elements(ROWS));
    let mut writer = BodyWriter::new();
    group.bench_function("decoded_values_to_body", |b| {
        b.iter(|| {
            for _ in 0..ROWS {
                writer.begin_row();
                for (value, key, target) in &row {
                    writer.field(key, value, target).expect("fits");
                }
                writer.end_row(RowOp::Upsert);
            }
            writer.finish(Compression::None).expect("in-memory")
        })
    });
    group.bench_function("text_decoded_and_encoded", |b| {
        b.iter(|| {
            for _ in 0..ROWS {
                writer.begin_row();
                for (kind, text, key, target) in &kinds {
                    let value = kind.decode(text).expect("valid sample");
                    writer.field(key, &value, target).expect("fits");
                }
                writer.end_row(RowOp::Upsert);
            }
            writer.finish(Compression::None).expect("in-memory")
        })
    });
    group.finish();
}

/// The whole per-row path of the agent: a table's columns decoded from their text and written
/// with the audit columns and `__op`, as a streamed change (a pgoutput tuple) and as a copied row.
fn schema() -> TableSchema {
    TableSchema {
        schema: "public".into(),
        name: "t".into(),
        columns: ROW
            .iter()
            .enumerate()
            .map(|(index, (oid, _, key))| ColumnSchema {
                name: std::str::from_utf8(&key[1..key.len() - 2])
                    .expect("ascii")
                    .into(),
                type_oid: Oid(*oid),
                type_modifier: -1,
                type_name: String::new(),
                nullable: index != 0,
                key_position: (index == 0).then_some(0),
            })
            .collect(),
    }
}

fn table_encoder(c: &mut Criterion) {
    let csv = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default());
    assert_eq!(csv.format(), BodyFormat::Csv);
    let json = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default())
        .with_format(BodyFormat::Json);
    let tuple = TupleData::from_values(
        ROW.iter()
            .map(|(_, text, _)| TupleValueRef::Text(text.as_bytes())),
    );
    let audit = Audit {
        op: SourceOp::Update,
        lsn: Lsn(0x16B_3748),
        synced_at: SyncedAt::now(),
    };
    const ROWS: u64 = 10_000;
    let mut group = c.benchmark_group("table_encoder_10_columns");
    group.throughput(Throughput::Elements(ROWS));
    let mut present = ColumnSet::default();
    for (name, encoder) in [("json", &json), ("csv", &csv)] {
        let mut writer = encoder.body_writer();
        for _ in 0..ROWS {
            let written = encoder
                .write_change(&mut writer, ChangeRow::New(&tuple), &audit, &mut present)
                .expect("valid sample");
            assert_eq!(written, Written::Row);
        }
        let body = writer.finish(Compression::None).expect("in-memory");
        println!(
            "{name} body: {} bytes for {ROWS} rows ({:.1} bytes/row)",
            body.len(),
            body.len() as f64 / ROWS as f64
        );
        // Thread CPU time, not wall time: on a shared machine the format comparison must not
        // depend on who else was scheduled.
        group.bench_function(format!("streamed_change/{name}"), |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu_time();
                for _ in 0..iters {
                    for _ in 0..ROWS {
                        let _ = encoder
                            .write_change(&mut writer, ChangeRow::New(&tuple), &audit, &mut present)
                            .expect("valid sample");
                    }
                    std::hint::black_box(writer.finish(Compression::None).expect("in-memory"));
                }
                thread_cpu_time() - start
            })
        });
        group.bench_function(format!("copied_row/{name}"), |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu_time();
                for _ in 0..iters {
                    for _ in 0..ROWS {
                        let values = ROW.iter().map(|(_, text, _)| Some(text.as_bytes()));
                        let _ = encoder
                            .write_snapshot_row(&mut writer, values, &audit, &mut present)
                            .expect("valid sample");
                    }
                    std::hint::black_box(writer.finish(Compression::None).expect("in-memory"));
                }
                thread_cpu_time() - start
            })
        });
    }
    group.finish();
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; CLOCK_THREAD_CPUTIME_ID exists on
    // every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn load(c: &mut Criterion) {
    let sim = Sim::start(SimOptions::default()).expect("start the sim");
    sim.catalog().create_database("bench").expect("database");
    let table = ROW.iter().fold(TableSpec::new("t"), |spec, (oid, _, key)| {
        let name = std::str::from_utf8(&key[1..key.len() - 2]).expect("ascii");
        let column_type = match oid {
            20 => ColumnType::BigInt,
            23 => ColumnType::Int,
            16 => ColumnType::Boolean,
            701 => ColumnType::Double,
            1700 => ColumnType::Decimal {
                precision: 10,
                scale: 2,
            },
            1082 => ColumnType::Date,
            1184 => ColumnType::DateTime,
            3802 => ColumnType::Json,
            _ => ColumnType::Varchar { length: 1024 },
        };
        let column = ColumnDef::new(name, column_type);
        spec.column(if name == "id" {
            column.not_null()
        } else {
            column
        })
    });
    // The audit columns the encoder writes (a CSV load names every column it carries).
    let table = table
        .column(ColumnDef::new(
            "_starwal_op",
            ColumnType::Varchar { length: 16 },
        ))
        .column(ColumnDef::new("_starwal_deleted", ColumnType::Boolean))
        .column(ColumnDef::new("_starwal_synced_at", ColumnType::DateTime))
        .column(ColumnDef::new("_starwal_lsn", ColumnType::BigInt));
    sim.catalog()
        .create_table("bench", table.primary_key(&["id"]))
        .expect("table");
    let config = StarRocksConfig {
        fe_urls: vec![sim.fe_url()],
        mysql_addr: "127.0.0.1:9030".into(),
        user: "root".into(),
        password: Secret::new(""),
        database: "bench".into(),
        delete_mode: DeleteMode::Hard,
        compression: Compression::None,
        create_tables: false,
        type_mapping: TypeMapping::default(),
        connect_timeout: Duration::from_secs(5),
        load_timeout: Duration::from_secs(120),
    };
    let sink = StarRocksSink::new(StreamLoadClient::new(config));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    const ROWS: u64 = 100_000;
    let audit = Audit {
        op: SourceOp::Snapshot,
        lsn: Lsn(0x16B_3748),
        synced_at: SyncedAt::now(),
    };
    let csv = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default());
    let json = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default())
        .with_format(BodyFormat::Json);
    let next_lsn = AtomicU64::new(1);
    let mut group = c.benchmark_group("sink_to_sim");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS));
    for (name, encoder) in [("json", &json), ("csv", &csv)] {
        let mut writer = encoder.body_writer();
        let mut present = ColumnSet::default();
        for id in 0..ROWS {
            let id = id.to_string();
            let mut values: Vec<Option<&[u8]>> = Vec::with_capacity(ROW.len());
            values.push(Some(id.as_bytes()));
            values.extend(ROW[1..].iter().map(|(_, text, _)| Some(text.as_bytes())));
            let values = values.into_iter();
            let written = encoder
                .write_snapshot_row(&mut writer, values, &audit, &mut present)
                .expect("valid sample");
            assert_eq!(written, Written::Row);
        }
        let csv_columns = (writer.format() == BodyFormat::Csv).then(|| encoder.full_columns());
        let body = writer.finish(Compression::None).expect("in-memory");
        group.bench_function(format!("load_100k_rows/{name}"), |b| {
            b.iter(|| {
                let lsn = next_lsn.fetch_add(1, Ordering::Relaxed);
                let batch = LoadBatch {
                    table: "t".into(),
                    label: Label::for_batch("bench", "public.t", Lsn(lsn), Lsn(lsn)),
                    first_lsn: Lsn(lsn),
                    last_lsn: Lsn(lsn),
                    rows: ROWS,
                    partial_columns: None,
                    csv_columns: csv_columns.clone(),
                    body: body.clone(),
                };
                runtime.block_on(sink.load(batch)).expect("load")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode, table_encoder, load);
criterion_main!(benches);
