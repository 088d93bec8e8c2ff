//! The whole type mapping through `starwal run`: every mapped Postgres type, NULLs, and the
//! documented conventions (float NaN/±Infinity as themselves, ±infinity dates as the largest and
//! smallest DATE/DATETIME, 1 BC as year 0000, timestamptz in UTC, array lower bounds dropped),
//! as StarRocks' MySQL text protocol would show the stored values (README "Type mapping").

use std::time::Duration;

use crate::harness::agent::{start_sim, target_rows, wait_until, AgentSpec};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(60);

const COLUMNS: [&str; 23] = [
    "id", "b", "i2", "i4", "f4", "f8", "n", "nu", "c", "v", "t", "u", "j", "jb", "by", "d", "ts",
    "tz", "tm", "iv", "arr", "tarr", "m",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_loads_every_mapped_type() {
    let db = Cluster::shared().create_database("engine_types").await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('ok', 'sad');
             CREATE TABLE every_type (id bigint PRIMARY KEY, b boolean, i2 smallint, i4 integer,
                 f4 real, f8 double precision, n numeric(12,3), nu numeric, c char(3), v varchar(10),
                 t text, u uuid, j json, jb jsonb, by bytea, d date, ts timestamp, tz timestamptz,
                 tm time, iv interval, arr int4[], tarr text[], m mood);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let spec = AgentSpec::new(&db, &sim, "public.every_type");
    let agent = spec.start_streaming().await;
    client
        .batch_execute(
            r#"INSERT INTO every_type VALUES
               (1, true, -7, 42, 1.5, 0.1, 12.5, 3.14, 'ab', 'héllo', E'line\nbreak',
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1}', '{"b": [1, 2]}', '\x0102',
                '2024-02-29', '2024-01-02 03:04:05.5', '2024-01-02 03:04:05+02', '12:34:56',
                '1 day 2 hours', '{1,NULL,3}', '{"a","b c"}', 'sad');
               INSERT INTO every_type (id) VALUES (2);
               INSERT INTO every_type (id, f4, f8, d, ts, tz, arr) VALUES
               (3, 'Infinity', 'NaN', 'infinity', '-infinity', '0001-01-01 00:30:00+01',
                '[0:1]={5,6}');
               INSERT INTO every_type (id, f4, f8, d, ts) VALUES
               (4, '-Infinity', '-Infinity', '0001-02-29 BC', '0001-12-31 23:59:59.5 BC');"#,
        )
        .await
        .unwrap();
    let some = |s: &str| Some(s.to_owned());
    let mut expected = vec![
        vec![
            some("1"),
            some("1"),
            some("-7"),
            some("42"),
            some("1.5"),
            some("0.1"),
            some("12.500"),
            some("3.140000000"),
            some("ab "),
            some("héllo"),
            some("line\nbreak"),
            some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            some(r#"{"a":1}"#),
            some(r#"{"b":[1,2]}"#),
            some(r"\x0102"),
            some("2024-02-29"),
            some("2024-01-02 03:04:05.500000"),
            some("2024-01-02 01:04:05"),
            some("12:34:56"),
            some("P1DT2H"),
            some("[1,null,3]"),
            some(r#"["a","b c"]"#),
            some("sad"),
        ],
        std::iter::once(some("2"))
            .chain(std::iter::repeat_n(None, COLUMNS.len() - 1))
            .collect(),
    ];
    let mut special = vec![None; COLUMNS.len()];
    special[0] = some("3");
    special[4] = some("Infinity");
    special[5] = some("NaN");
    special[15] = some("9999-12-31");
    special[16] = some("0000-01-01 00:00:00");
    special[17] = some("0000-12-31 23:30:00");
    special[20] = some("[5,6]");
    expected.push(special);
    let mut before_christ = vec![None; COLUMNS.len()];
    before_christ[0] = some("4");
    before_christ[4] = some("-Infinity");
    before_christ[5] = some("-Infinity");
    before_christ[15] = some("0000-02-29");
    before_christ[16] = some("0000-12-31 23:59:59.500000");
    expected.push(before_christ);
    let expected: std::collections::BTreeSet<_> = expected.into_iter().collect();
    let mut got = Default::default();
    let arrived = wait_until(TIMEOUT, || {
        got = target_rows(&sim, "every_type", &COLUMNS);
        got.len() == 4
    })
    .await;
    assert!(arrived, "{got:?}\n{}", agent.log());
    for (want, have) in expected.iter().zip(got.iter()) {
        for (index, column) in COLUMNS.iter().enumerate() {
            assert_eq!(
                have[index], want[index],
                "row {:?}, column `{column}`",
                want[0]
            );
        }
    }
}
