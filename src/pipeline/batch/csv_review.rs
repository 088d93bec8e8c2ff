//! Review of the CSV bodies: a batch never splits over body formats. A row CSV cannot carry
//! (the text `\N`, a separator byte) turns the whole batch into JSON, so its source
//! transactions stay one load per column set, as they were before CSV (invariant 11), and a
//! re-formed batch has the same parts and bytes.

use super::tests::{at, row, schema_with_key_type};
use super::*;
use crate::postgres::pgoutput::OldTuple;
use crate::schema::TableSchema;
use crate::sink::starrocks::config::DeleteMode;
use crate::sink::starrocks::mapping::TypeMapping;

/// The batch tests' table with a text key, so keys can be written as letters.
fn schema() -> TableSchema {
    schema_with_key_type(25)
}

const KEY: &[usize] = &[0];

/// One source transaction of plain rows and one the CSV cannot carry, sealed at `synced_at`.
fn sealed(odd: &str, mode: DeleteMode) -> SealedBatch {
    let encoder = TableEncoder::new(&schema(), mode, TypeMapping::default());
    let mut batch = TableBatch::default();
    batch.keep_synced_at(PgTimestamp(848_000_000_000_000));
    batch.insert(at(1), KEY, row(&[Some("a"), Some("plain"), Some("1")]));
    batch.insert(at(2), KEY, row(&[Some("b"), Some(odd), Some("2")]));
    batch.delete(at(3), KEY, &OldTuple::Key(row(&[Some("c"), None, None])));
    batch.insert(at(4), KEY, row(&[Some("d"), Some("plain"), None]));
    batch
        .seal(&encoder, "slot", "docs", Compression::None)
        .unwrap()
        .unwrap()
}

#[test]
fn inv11_a_value_csv_cannot_carry_does_not_split_the_batch_into_two_loads() {
    for odd in ["\\N", "a\u{1e}b", "a\u{1f}b"] {
        let hard = sealed(odd, DeleteMode::Hard);
        assert_eq!(
            hard.loads.len(),
            1,
            "{odd:?}: one load, else the transaction is visible in two steps"
        );
        let load = &hard.loads[0];
        assert_eq!(load.csv_columns, None, "{odd:?}: the batch went JSON");
        assert_eq!(load.partial_columns, None, "{odd:?}");
        assert_eq!(load.rows, 4);
        assert_eq!(
            load.label,
            Label::for_changes("slot", "docs", at(1), at(4), 0),
            "the label of the batch's only load"
        );
        // A soft key-only delete is a partial update, a load of its own as before CSV; no
        // third load for the format.
        let soft = sealed(odd, DeleteMode::Soft);
        let parts: Vec<_> = soft
            .loads
            .iter()
            .map(|l| (l.csv_columns.is_some(), l.partial_columns.is_some(), l.rows))
            .collect();
        assert_eq!(parts, [(false, false, 3), (false, true, 1)], "{odd:?}");
    }
    // Without such a value the batch stays one CSV load.
    let plain = sealed("N", DeleteMode::Hard);
    assert_eq!(plain.loads.len(), 1);
    assert!(plain.loads[0].csv_columns.is_some());
}

#[test]
fn inv5_a_re_formed_batch_with_a_json_row_is_the_same_loads_and_bytes() {
    let first = sealed("\\N", DeleteMode::Hard);
    let again = sealed("\\N", DeleteMode::Hard);
    let shape = |s: &SealedBatch| -> Vec<(String, Bytes, Option<Vec<String>>)> {
        s.loads
            .iter()
            .map(|l| (l.label.to_string(), l.body.clone(), l.csv_columns.clone()))
            .collect()
    };
    assert_eq!(shape(&first), shape(&again));
}

#[test]
fn a_hard_delete_whose_key_csv_cannot_carry_is_not_a_partial_update() {
    // Before: the delete was retried as JSON in a group of its key alone, a `partial_update`
    // load of its own (and a second load for the batch).
    let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default());
    let mut batch = TableBatch::default();
    batch.insert(at(1), KEY, row(&[Some("a"), Some("plain"), Some("1")]));
    batch.delete(at(2), KEY, &OldTuple::Key(row(&[Some("\\N"), None, None])));
    let sealed = batch
        .seal(&encoder, "slot", "docs", Compression::None)
        .unwrap()
        .unwrap();
    let parts: Vec<_> = sealed
        .loads
        .iter()
        .map(|l| (l.partial_columns.is_some(), l.rows))
        .collect();
    assert_eq!(parts, [(false, 2)]);
    let body = String::from_utf8(sealed.loads[0].body.to_vec()).unwrap();
    assert!(body.contains(r#"{"id":"\\N","__op":1}"#), "{body}");
}
