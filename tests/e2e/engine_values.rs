//! Values arrive exactly (invariant 12, issue 12 item 2): odd values of each type, copied by the
//! snapshot and streamed, compared with what the target then holds, as StarRocks' MySQL text
//! protocol would show it.

use std::time::Duration;

use crate::harness::agent::{start_sim, target_rows, wait_until, AgentSpec};
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
