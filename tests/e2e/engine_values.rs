//! Values arrive exactly (invariant 12, issue 12 item 2): odd values of each type, copied by the
//! snapshot and streamed, compared with what the target then holds, as StarRocks' MySQL text
//! protocol would show it — or, for a value the target column cannot hold, the table stops with
//! an error naming table, column and key, and nothing changed is stored.

use std::time::Duration;

use crate::harness::agent::{start_sim, target_rows, wait_until, Agent, AgentSpec, Rows};
use crate::harness::Cluster;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A `json`/`jsonb` value that is a JSON *string* holding JSON text stays that string: StarRocks
/// loads a JSON field into a JSON column as the value it is, so the body must carry the string,
/// not the text inside it. A top-level JSON `null` arrives as SQL NULL (documented: a Stream Load
/// JSON body cannot tell the two apart for a JSON column).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv12_json_string_values_stay_strings() {
    let db = Cluster::shared()
        .create_database("engine_values_json")
        .await;
    let client = db.owner_client().await;
    // (source literal, what the target must show); each used once as json and once as jsonb.
    let cases: [(&str, Option<&str>); 9] = [
        (r#"'"42"'"#, Some(r#""42""#)),
        (r#"'"true"'"#, Some(r#""true""#)),
        (r#"'"[1,2]"'"#, Some(r#""[1,2]""#)),
        (r#"'"null"'"#, Some(r#""null""#)),
        (r#"'"{\"a\": 1}"'"#, Some(r#""{\"a\": 1}""#)),
        ("'42'", Some("42")),
        (r#"'{"k": "{\"b\":1}"}'"#, Some(r#"{"k":"{\"b\":1}"}"#)),
        ("'null'", None),
        ("NULL", None),
    ];
    client
        .batch_execute("CREATE TABLE docs (id int PRIMARY KEY, j json, jb jsonb)")
        .await
        .unwrap();
    let insert = |offset: usize| {
        cases
            .iter()
            .enumerate()
            .map(|(index, (literal, _))| {
                format!(
                    "INSERT INTO docs VALUES ({}, {literal}, {literal});",
                    offset + index
                )
            })
            .collect::<String>()
    };
    // Rows 0.. are copied by the snapshot, rows 100.. streamed.
    client.batch_execute(&insert(0)).await.unwrap();
    let sim = start_sim();
    let agent = AgentSpec::new(&db, &sim, "public.docs")
        .var("STARWAL_SNAPSHOT", "initial")
        .start_streaming()
        .await;
    client.batch_execute(&insert(100)).await.unwrap();

    let expected: std::collections::BTreeSet<Vec<Option<String>>> = [0, 100]
        .iter()
        .flat_map(|offset| {
            cases.iter().enumerate().map(move |(index, (_, shown))| {
                let shown = shown.map(str::to_owned);
                vec![Some((offset + index).to_string()), shown.clone(), shown]
            })
        })
        .collect();
    let mut got = Default::default();
    let arrived = wait_until(TIMEOUT, || {
        got = target_rows(&sim, "docs", &["id", "j", "jb"]);
        got.len() == expected.len()
    })
    .await;
    assert!(arrived, "{got:?}\n{}", agent.log());
    for (want, have) in expected.iter().zip(got.iter()) {
        assert_eq!(have, want, "row id {:?}", want[0]);
    }
    agent.stop_cleanly();
}

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

/// Waits until `agent` logs that it stopped loading on `needle` (the error names the table,
/// column and key), and says what it logged otherwise.
async fn stops_naming(agent: &Agent, needle: &str) {
    let stopped = wait_until(TIMEOUT, || agent.log().contains(needle)).await;
    assert!(stopped, "no error naming {needle:?}:\n{}", agent.log());
}

/// Waits for `rows` rows in `table` and returns them.
async fn rows_arrived(
    sim: &starrocks_sim::Sim,
    agent: &Agent,
    table: &str,
    columns: &[&str],
    rows: usize,
) -> Rows {
    let mut got = Rows::new();
    let arrived = wait_until(TIMEOUT, || {
        got = target_rows(sim, table, columns);
        got.len() == rows
    })
    .await;
    assert!(arrived, "{got:?}\n{}", agent.log());
    got
}

/// Unconstrained `numeric` goes into DECIMAL(38,9) when it fits exactly (trailing zeros are the
/// same value); a value StarRocks would round (`3.14159265358979` → `3.141592654`) stops the
/// table naming table, column and key, and is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv12_unconstrained_numeric_is_exact_or_stops_the_table() {
    let db = Cluster::shared()
        .create_database("engine_values_numeric")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE nums (id int PRIMARY KEY, n numeric, ns numeric[]);
             INSERT INTO nums VALUES (1, 12.5, '{1.5,NULL}'),
                 (2, '-0.000000001', '{}'),
                 (3, '12345678901234567890123456789.1234567890000', NULL);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let agent = AgentSpec::new(&db, &sim, "public.nums")
        .var("STARWAL_SNAPSHOT", "initial")
        .start_streaming()
        .await;
    client
        .batch_execute("INSERT INTO nums VALUES (4, '0.100000000000', '{7}')")
        .await
        .unwrap();
    let expected: Rows = [
        [some("1"), some("12.500000000"), some("[1.500000000,null]")],
        [some("2"), some("-0.000000001"), some("[]")],
        [
            some("3"),
            some("12345678901234567890123456789.123456789"),
            None,
        ],
        [some("4"), some("0.100000000"), some("[7.000000000]")],
    ]
    .into_iter()
    .map(Vec::from)
    .collect();
    let got = rows_arrived(&sim, &agent, "nums", &["id", "n", "ns"], 4).await;
    assert_eq!(got, expected);

    client
        .batch_execute("INSERT INTO nums VALUES (5, 3.14159265358979, NULL)")
        .await
        .unwrap();
    stops_naming(&agent, "column `n` of `public.nums`, key (id)=(5)").await;
    assert!(
        agent
            .log()
            .contains("numeric `3.14159265358979` does not fit DECIMAL(38,9) exactly"),
        "{}",
        agent.log()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        target_rows(&sim, "nums", &["id", "n", "ns"]),
        expected,
        "nothing rounded was stored"
    );
    agent.stop_cleanly();
}

/// `STARWAL_NUMERIC_UNCONSTRAINED=varchar`: every unconstrained numeric, `NaN` and `±Infinity`
/// included, arrives as the exact digits Postgres prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv12_unconstrained_numeric_as_varchar_keeps_every_digit() {
    let db = Cluster::shared()
        .create_database("engine_values_numeric_text")
        .await;
    let client = db.owner_client().await;
    let cases = [
        "3.14159265358979",
        "1e-42",
        "0.0000000005",
        "123456789012345678901234567890123456789012",
        "NaN",
        "Infinity",
        "-Infinity",
    ];
    client
        .batch_execute("CREATE TABLE nums (id int PRIMARY KEY, n numeric)")
        .await
        .unwrap();
    let insert = |offset: usize| {
        cases
            .iter()
            .enumerate()
            .map(|(index, value)| {
                format!("INSERT INTO nums VALUES ({}, '{value}');", offset + index)
            })
            .collect::<String>()
    };
    client.batch_execute(&insert(0)).await.unwrap();
    let sim = start_sim();
    let agent = AgentSpec::new(&db, &sim, "public.nums")
        .var("STARWAL_SNAPSHOT", "initial")
        .var("STARWAL_NUMERIC_UNCONSTRAINED", "varchar")
        .start_streaming()
        .await;
    client.batch_execute(&insert(100)).await.unwrap();
    // What Postgres prints for each (1e-42 has no exponent in numeric's output).
    let mut expected = Rows::new();
    for offset in [0, 100] {
        for (index, value) in cases.iter().enumerate() {
            let printed = client
                .query_one(&format!("SELECT '{value}'::numeric::text"), &[])
                .await
                .unwrap()
                .get::<_, String>(0);
            expected.insert(vec![Some((offset + index).to_string()), Some(printed)]);
        }
    }
    assert!(expected.contains(&vec![some("1"), some(&format!("0.{}1", "0".repeat(41)))]));
    let got = rows_arrived(&sim, &agent, "nums", &["id", "n"], expected.len()).await;
    assert_eq!(got, expected);
    agent.stop_cleanly();
}

/// Float NaN and ±Infinity arrive as themselves (StarRocks reads them from JSON strings into
/// FLOAT/DOUBLE); an array's lower bound is dropped; a multi-dimensional array stops the table
/// naming table, column and key, whatever its element type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv12_float_specials_arrive_and_multi_dimensional_arrays_stop_the_table() {
    let db = Cluster::shared()
        .create_database("engine_values_floats")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE vals (id int PRIMARY KEY, f4 real, f8 double precision, ints int[],
                 texts text[], ids uuid[]);
             INSERT INTO vals VALUES (1, 'NaN', '-Infinity', '[0:2]={1,2,3}', '{a,NULL}', NULL);",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let agent = AgentSpec::new(&db, &sim, "public.vals")
        .var("STARWAL_SNAPSHOT", "initial")
        .start_streaming()
        .await;
    client
        .batch_execute(
            "INSERT INTO vals VALUES (2, 'Infinity', 'NaN', '{4}', '{}',
                 '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}');",
        )
        .await
        .unwrap();
    let columns = ["id", "f4", "f8", "ints", "texts", "ids"];
    let expected: Rows = [
        vec![
            some("1"),
            some("NaN"),
            some("-Infinity"),
            some("[1,2,3]"),
            some("[\"a\",null]"),
            None,
        ],
        vec![
            some("2"),
            some("Infinity"),
            some("NaN"),
            some("[4]"),
            some("[]"),
            some("[\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]"),
        ],
    ]
    .into_iter()
    .collect();
    let got = rows_arrived(&sim, &agent, "vals", &columns, 2).await;
    assert_eq!(got, expected);

    client
        .batch_execute("INSERT INTO vals (id, texts) VALUES (3, '{{a,b},{c,NULL}}')")
        .await
        .unwrap();
    stops_naming(&agent, "column `texts` of `public.vals`, key (id)=(3)").await;
    assert!(
        agent
            .log()
            .contains("is a multi-dimensional array, which ARRAY<VARCHAR(1048576)> cannot hold"),
        "{}",
        agent.log()
    );
    assert_eq!(target_rows(&sim, "vals", &columns), expected);
    agent.stop_cleanly();
}

/// A BC date has no DATE value in StarRocks (years 0000..9999; 1 BC is 0000): the snapshot copy
/// stops naming table, column and key instead of storing 0000-01-01 for every BC date.
/// `infinity` is the largest DATE, as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv12_bc_dates_stop_the_copy_naming_the_row() {
    let db = Cluster::shared()
        .create_database("engine_values_dates")
        .await;
    let client = db.owner_client().await;
    client
        .batch_execute(
            "CREATE TABLE days (id int PRIMARY KEY, d date);
             INSERT INTO days VALUES (1, 'infinity'), (2, '0001-06-30 BC'), (3, '0044-03-15 BC');",
        )
        .await
        .unwrap();
    let sim = start_sim();
    let agent = AgentSpec::new(&db, &sim, "public.days")
        .var("STARWAL_SNAPSHOT", "initial")
        .start();
    stops_naming(&agent, "column `d` of `public.days`, key (id)=(3)").await;
    assert!(
        agent
            .log()
            .contains("date `-0043-03-15` is outside DATE's years 0000..9999"),
        "{}",
        agent.log()
    );
    assert!(
        !target_rows(&sim, "days", &["id", "d"])
            .iter()
            .any(|row| row[0].as_deref() == Some("3")),
        "the BC date was stored"
    );
    agent.stop_cleanly();
}
