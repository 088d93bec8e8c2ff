//! CSV bodies against JSON bodies: seeded random odd values (empty strings, the text `\N`,
//! separator bytes, quotes, newlines, unicode, NULLs, JSON with strings and a top-level null,
//! float specials, infinite dates, arrays) are written into real Postgres, read back as Postgres
//! prints them, and loaded into `starrocks-sim` twice through the real sink — once as the agent
//! writes them (CSV where the table allows, JSON for the rows CSV cannot carry) and once all
//! JSON — with upserts, hard deletes and partial updates. Both targets must hold the same rows.
//! The seed is printed; `STARWAL_TEST_SEED` replays one.

use std::net::SocketAddr;
use std::time::Duration;

use starrocks_sim::catalog::Value as SimValue;
use starrocks_sim::{Sim, SimOptions};
use starwal::config::Config;
use starwal::postgres::catalog::{resolve_tables, table_schema};
use starwal::postgres::pgoutput::{TupleData, TupleValueRef};
use starwal::postgres::tls::connect_sql;
use starwal::postgres::Lsn;
use starwal::schema::TableSchema;
use starwal::secret::Secret;
use starwal::sink::starrocks::encoding::{
    Audit, BodyFormat, BodyWriter, ChangeRow, ColumnSet, SourceOp, SyncedAt, TableEncoder, Written,
};
use starwal::sink::starrocks::setup::TargetSetup;
use starwal::sink::starrocks::{
    Compression, DeleteMode, Label, StarRocksConfig, StarRocksSink, StreamLoadClient,
};
use starwal::sink::{LoadBatch, Sink};

use crate::harness::{Cluster, Role, TestDatabase};

/// The agent's path (CSV where exact) and the all-JSON path, one StarRocks database each.
const DATABASES: [&str; 2] = ["via_csv", "via_json"];
const ROWS: i64 = 250;

/// Every type whose CSV form differs from its JSON one, and text in two shapes.
const ODD_TABLE: &str = "CREATE TABLE odd (
    id bigint PRIMARY KEY, t text, v varchar(40), j jsonb, js json, n numeric(12,3),
    f float8, r real, b boolean, d date, ts timestamptz, tsz timestamp, u uuid, by bytea,
    tm time, iv interval)";
/// A table with arrays: it stays JSON as a whole.
const ARRAY_TABLE: &str = "CREATE TABLE arr (id bigint PRIMARY KEY, a int[], s text[], t text)";

/// xorshift64*: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Pieces odd text is made of: what CSV, JSON or StarRocks treat specially.
const PIECES: &[&str] = &[
    "", "\\N", "\\\\N", "N", "\\", "\u{1f}", "\u{1e}", "\"", "'", ",", "\t", "\n", "\r\n", " ",
    "null", "NULL", "é", "日本", "🦀", "a", "[1,2]", "{}", "\u{1}",
];

fn odd_text(rng: &mut Rng) -> String {
    let mut text = String::new();
    for _ in 0..rng.below(4) {
        text.push_str(rng.pick(PIECES));
    }
    text
}

fn odd_json(rng: &mut Rng) -> String {
    let string = serde_json::to_string(&odd_text(rng)).unwrap();
    match rng.below(7) {
        0 => "null".into(),
        1 => string,
        2 => format!("{{\"k\": {string}, \"n\": [1, 2.5, null]}}"),
        3 => format!("[{string}, {{\"a\": {{}}}}]"),
        4 => "{\n  \"spaced\" :  true }".into(),
        5 => "\"\\\\N\"".into(),
        _ => rng
            .pick(&["0", "-1.5e10", "12345678901234567890", "true", "{}"])
            .into(),
    }
}

/// `(column, SQL text of the value)` for one random row; `None` is NULL.
fn odd_row(rng: &mut Rng, id: i64) -> Vec<Option<String>> {
    let maybe = |rng: &mut Rng, value: String| (rng.below(8) != 0).then_some(value);
    let t = odd_text(rng);
    let v: String = odd_text(rng).chars().take(40).collect();
    let j = odd_json(rng);
    let js = odd_json(rng);
    let n = format!(
        "{}{}.{:03}",
        rng.pick(&["", "-"]),
        rng.below(1_000_000_000),
        rng.below(1000)
    );
    let f = rng
        .pick(&[
            "0",
            "-0",
            "1.5",
            "1e+100",
            "-1e-300",
            "NaN",
            "Infinity",
            "-Infinity",
            "3.141592653589793",
            "0.1",
        ])
        .to_owned();
    let r = rng
        .pick(&["0", "1.5", "3.4e+38", "NaN", "-Infinity", "0.1"])
        .to_owned();
    let b = rng.pick(&["true", "false"]).to_owned();
    let year = 1 + rng.below(9999);
    let d = match rng.below(10) {
        0 => "infinity".to_owned(),
        1 => "-infinity".to_owned(),
        _ => format!(
            "{year:04}-{:02}-{:02}",
            1 + rng.below(12),
            1 + rng.below(28)
        ),
    };
    let ts = match rng.below(10) {
        0 => "infinity".to_owned(),
        _ => format!(
            "{:04}-03-{:02} {:02}:{:02}:{:02}.{:06}+{:02}",
            1 + rng.below(9998),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1_000_000),
            rng.below(13)
        ),
    };
    let tsz = format!(
        "2026-11-22 10:00:{:02}.{:06}",
        rng.below(60),
        rng.below(1000)
    );
    let u = format!("{:016x}{:016x}", rng.next(), rng.next());
    let by = format!("\\x{:016x}", rng.next());
    let tm = format!("{:02}:{:02}:00", rng.below(24), rng.below(60));
    let iv = format!("{} days {} seconds", rng.below(400), rng.below(100));
    let mut row = vec![Some(id.to_string())];
    for value in [t, v, j, js, n, f, r, b, d, ts, tsz, u, by, tm, iv] {
        row.push(maybe(rng, value));
    }
    row
}

fn array_row(rng: &mut Rng, id: i64) -> Vec<Option<String>> {
    let ints = format!("{{{},NULL,{}}}", rng.below(100), rng.below(100));
    let texts: Vec<String> = (0..rng.below(3))
        .map(|_| {
            let text = odd_text(rng).replace('\u{1}', "");
            format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
        })
        .collect();
    vec![
        Some(id.to_string()),
        Some(ints),
        Some(format!("{{{}}}", texts.join(","))),
        Some(odd_text(rng)),
    ]
}

fn config(sim: &Sim, database: &str) -> StarRocksConfig {
    StarRocksConfig {
        fe_urls: vec![sim.fe_url()],
        mysql_addr: sim.addrs().mysql.expect("mysql enabled").to_string(),
        user: "root".into(),
        password: Secret::new("pw"),
        database: database.into(),
        delete_mode: DeleteMode::Hard,
        compression: Compression::None,
        create_tables: true,
        type_mapping: Default::default(),
        connect_timeout: Duration::from_secs(5),
        load_timeout: Duration::from_secs(30),
    }
}

async fn schemas(db: &TestDatabase) -> Vec<TableSchema> {
    let cfg = Config::from_vars([
        ("STARWAL_PG_URL".to_owned(), db.url(Role::Scram, "disable")),
        (
            "STARWAL_TABLES".to_owned(),
            "public.odd,public.arr".to_owned(),
        ),
    ])
    .unwrap()
    .postgres;
    let client = connect_sql(&cfg.conn).await.unwrap();
    let mut out = Vec::new();
    for table in resolve_tables(&client, &cfg.tables).await.unwrap() {
        out.push(table_schema(&client, &table).await.unwrap());
    }
    out
}

/// Inserts `rows` (SQL text, cast per column) and reads every row back as Postgres prints it.
async fn round_trip(
    client: &tokio_postgres::Client,
    schema: &TableSchema,
    rows: &[Vec<Option<String>>],
) -> Vec<Vec<Option<String>>> {
    let table = &schema.name;
    client
        .batch_execute(&format!("TRUNCATE {table}"))
        .await
        .unwrap();
    let params: Vec<String> = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::text::{}", i + 1, c.type_name))
        .collect();
    let insert = format!("INSERT INTO {table} VALUES ({})", params.join(", "));
    for row in rows {
        let values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = row
            .iter()
            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        client.execute(&insert, &values).await.unwrap();
    }
    let texts: Vec<String> = schema
        .columns
        .iter()
        .map(|c| format!("\"{}\"::text", c.name))
        .collect();
    client
        .query(
            &format!("SELECT {} FROM {table} ORDER BY id", texts.join(", ")),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (0..schema.columns.len()).map(|i| row.get(i)).collect())
        .collect()
}

/// A change as the pipeline hands it to the encoder.
enum Change {
    Upsert(TupleData),
    Delete(TupleData),
}

fn tuple(values: &[Option<String>], unchanged: Option<usize>) -> TupleData {
    TupleData::from_values(values.iter().enumerate().map(|(i, v)| match v {
        _ if Some(i) == unchanged => TupleValueRef::UnchangedToast,
        Some(text) => TupleValueRef::Text(text.as_bytes()),
        None => TupleValueRef::Null,
    }))
}

/// How many loads of each format a path sent.
#[derive(Debug, Default)]
struct Sent {
    csv: usize,
    json: usize,
}

/// Writes `changes` as `TableBatch::seal` does (one load per column set and format, a row CSV
/// cannot carry in a JSON load of its set) and loads them, in order.
async fn load(
    sink: &StarRocksSink,
    encoder: &TableEncoder,
    target: &str,
    changes: &[Change],
    round: u64,
    synced_at: SyncedAt,
    sent: &mut Sent,
) {
    let audit = Audit {
        op: SourceOp::Update,
        lsn: Lsn(0x1000 + round),
        synced_at,
    };
    let mut groups: Vec<(ColumnSet, BodyWriter)> = Vec::new();
    let mut present = ColumnSet::default();
    for change in changes {
        let (row, delete) = match change {
            Change::Upsert(tuple) => (ChangeRow::New(tuple), false),
            Change::Delete(tuple) => (ChangeRow::DeletedKey(tuple), true),
        };
        let audit = Audit {
            op: if delete { SourceOp::Delete } else { audit.op },
            ..audit
        };
        encoder.load_columns(row, &mut present);
        let mut format = encoder.format();
        loop {
            let group = match groups
                .iter()
                .position(|(set, w)| *set == present && w.format() == format)
            {
                Some(group) => group,
                None => {
                    groups.push((present.clone(), BodyWriter::with_format(format)));
                    groups.len() - 1
                }
            };
            match encoder
                .write_change(&mut groups[group].1, row, &audit, &mut present)
                .unwrap()
            {
                Written::Row => break,
                Written::NeedsJson => format = BodyFormat::Json,
            }
        }
    }
    for (part, (set, mut writer)) in groups.into_iter().enumerate() {
        if writer.is_empty() {
            continue;
        }
        let csv = writer.format() == BodyFormat::Csv;
        if csv {
            sent.csv += 1;
        } else {
            sent.json += 1;
        }
        let lsn = Lsn(round * 100 + part as u64 + 1);
        let batch = LoadBatch {
            table: target.into(),
            label: Label::for_batch("csv", target, lsn, lsn),
            first_lsn: lsn,
            last_lsn: lsn,
            rows: writer.rows(),
            partial_columns: (!set.is_full()).then(|| encoder.partial_columns(&set)),
            csv_columns: csv.then(|| encoder.partial_columns(&set)),
            body: writer.finish(Compression::None).unwrap(),
        };
        sink.load(batch)
            .await
            .unwrap_or_else(|failure| panic!("{target} round {round} part {part}: {failure}"));
    }
}

/// Panics naming the first cells that differ (the whole tables are too long to read).
fn assert_same(csv: &[Vec<SimValue>], json: &[Vec<SimValue>], what: &str) {
    let mut differences = Vec::new();
    for (a, b) in csv.iter().zip(json) {
        for (column, (x, y)) in a.iter().zip(b).enumerate() {
            // Debug text: NaN equals NaN.
            if format!("{x:?}") != format!("{y:?}") {
                differences.push(format!(
                    "key {:?} column {column}: CSV {x:?}, JSON {y:?}",
                    a[0]
                ));
            }
        }
    }
    assert!(
        differences.is_empty() && csv.len() == json.len(),
        "{what}: {} rows via CSV, {} via JSON; {} cells differ, first: {:#?}",
        csv.len(),
        json.len(),
        differences.len(),
        &differences[..differences.len().min(8)]
    );
}

fn stored(sim: &Sim, database: &str, table: &str) -> Vec<Vec<SimValue>> {
    let mut rows = sim.catalog().rows(database, table).unwrap();
    rows.sort_by(|a, b| format!("{:?}", a[0]).cmp(&format!("{:?}", b[0])));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_bodies_store_what_json_bodies_store_for_odd_values() {
    let seed = std::env::var("STARWAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("seed {seed} (STARWAL_TEST_SEED={seed} replays it)");
    let mut rng = Rng(seed);

    let db = Cluster::shared().create_database("csv_odd").await;
    let client = db.owner_client().await;
    client
        .batch_execute(&format!("{ODD_TABLE}; {ARRAY_TABLE}"))
        .await
        .unwrap();
    let sources = schemas(&db).await;
    let sim = Sim::start(SimOptions {
        password: "pw".into(),
        mysql: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SimOptions::default()
    })
    .expect("start the sim");
    let mut sinks = Vec::new();
    for database in DATABASES {
        let config = config(&sim, database);
        let mut setup = TargetSetup::connect(&config).await.unwrap();
        setup.prepare(&sources).await.unwrap();
        sinks.push(StarRocksSink::new(StreamLoadClient::new(config)));
    }

    let mut sent = [Sent::default(), Sent::default()];
    let synced_at = SyncedAt::now();
    for schema in &sources {
        let is_arr = schema.name == "arr";
        let encoders = [
            TableEncoder::new(schema, DeleteMode::Hard, Default::default()),
            TableEncoder::new(schema, DeleteMode::Hard, Default::default())
                .with_format(BodyFormat::Json),
        ];
        let expected = if is_arr {
            BodyFormat::Json
        } else {
            BodyFormat::Csv
        };
        assert_eq!(encoders[0].format(), expected, "{}", schema.name);
        let generate = |rng: &mut Rng, id: i64| {
            if is_arr {
                array_row(rng, id)
            } else {
                odd_row(rng, id)
            }
        };
        // Round 1: every row inserted; rows that must take the JSON way are always there.
        let mut rows: Vec<_> = (0..ROWS).map(|id| generate(&mut rng, id)).collect();
        if !is_arr {
            rows[0][1] = Some("\\N".into());
            rows[1][1] = Some("a\u{1f}b\u{1e}c".into());
            rows[2][1] = Some(String::new());
            rows[3][3] = Some("null".into());
        }
        let first = round_trip(&client, schema, &rows).await;
        let upserts: Vec<Change> = first
            .iter()
            .map(|r| Change::Upsert(tuple(r, None)))
            .collect();
        // Round 2: a third deleted by key, a third updated leaving `t` unchanged (a partial
        // update), the rest rewritten whole.
        let mut changed = Vec::new();
        let mut deletes = Vec::new();
        let mut partial = Vec::new();
        for id in 0..ROWS {
            match rng.below(3) {
                0 => deletes.push(id),
                1 => {
                    partial.push(id);
                    changed.push(generate(&mut rng, id));
                }
                _ => changed.push(generate(&mut rng, id)),
            }
        }
        let second = round_trip(&client, schema, &changed).await;
        let t = schema.columns.iter().position(|c| c.name == "t").unwrap();
        let mut changes: Vec<Change> = deletes
            .iter()
            .map(|id| {
                let mut key = vec![None; schema.columns.len()];
                key[0] = Some(id.to_string());
                Change::Delete(tuple(&key, None))
            })
            .collect();
        for row in &second {
            let id: i64 = row[0].as_deref().unwrap().parse().unwrap();
            let unchanged = partial.contains(&id).then_some(t);
            changes.push(Change::Upsert(tuple(row, unchanged)));
        }
        for (path, (sink, encoder)) in sinks.iter().zip(&encoders).enumerate() {
            load(
                sink,
                encoder,
                &schema.name,
                &upserts,
                1,
                synced_at,
                &mut sent[path],
            )
            .await;
        }
        assert_same(
            &stored(&sim, DATABASES[0], &schema.name),
            &stored(&sim, DATABASES[1], &schema.name),
            &format!("{} after the inserts (seed {seed})", schema.name),
        );
        for (path, (sink, encoder)) in sinks.iter().zip(&encoders).enumerate() {
            load(
                sink,
                encoder,
                &schema.name,
                &changes,
                2,
                synced_at,
                &mut sent[path],
            )
            .await;
        }
        let target = stored(&sim, DATABASES[0], &schema.name);
        assert_same(
            &target,
            &stored(&sim, DATABASES[1], &schema.name),
            &format!(
                "{} after deletes and partial updates (seed {seed})",
                schema.name
            ),
        );
        assert_eq!(
            target.len(),
            ROWS as usize - deletes.len(),
            "{}",
            schema.name
        );
    }
    // The agent's path used CSV for `odd` and JSON for the rows CSV cannot carry and for `arr`.
    assert!(sent[0].csv >= 2, "{:?}", sent[0]);
    assert!(sent[0].json >= 2, "{:?}", sent[0]);
    assert_eq!(sent[1].csv, 0, "{:?}", sent[1]);
}
