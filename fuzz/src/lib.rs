//! What the fuzz targets do with whatever decodes: use it the way starwal does (the pipeline's
//! sink encoder, `starwal tail`'s JSON, log messages) and check the promises the decoders make,
//! so that a broken promise is a crash libFuzzer reports, not only a panic. Owns the list of
//! every value kind and the oracles; owns no parsing. DESIGN invariant #9: bad input never
//! panics.
//!
//! Oracles, each one stated in the code it checks:
//! - `PgStr::as_str` (the parser's one `unsafe`) returns exactly the bytes, and they are UTF-8.
//! - `write_json` and the sink's `write_value` give well-formed JSON for every kind except
//!   json/jsonb, which are embedded raw because Postgres guarantees them
//!   (`postgres/value/json.rs`).
//! - A decoded array iterates without errors, at every depth (`postgres/value/array.rs`: it was
//!   validated when decoded).
//! - A message or value that fails to decode has an error that formats.

use std::fmt::Write as _;

use starwal::postgres::pgoutput::{Message, OldTuple, PgStr, TupleData, TupleValueRef};
use starwal::postgres::value::{
    write_json, write_json_string, Array, ArrayElement, Date, PgTimestamp, ScalarKind, Timestamp,
    Value, ValueKind,
};
use starwal::sink::starrocks::encoding::{write_value, ValueTarget};
use starwal::sink::starrocks::mapping::TypeMapping;

/// Every scalar kind the decoder has. The match in [`is_listed`] fails to compile when a kind is
/// added, so the list cannot fall behind.
pub const SCALAR_KINDS: [ScalarKind; 19] = [
    ScalarKind::Bool,
    ScalarKind::Int2,
    ScalarKind::Int4,
    ScalarKind::Int8,
    ScalarKind::Oid,
    ScalarKind::Float4,
    ScalarKind::Float8,
    ScalarKind::Numeric,
    ScalarKind::Text,
    ScalarKind::Bytea,
    ScalarKind::Uuid,
    ScalarKind::Json,
    ScalarKind::Jsonb,
    ScalarKind::Date,
    ScalarKind::Time,
    ScalarKind::TimeTz,
    ScalarKind::Timestamp,
    ScalarKind::TimestampTz,
    ScalarKind::Interval,
];

/// Exhaustive on purpose: a new `ScalarKind` variant stops the fuzz build until it is listed.
const fn is_listed(kind: ScalarKind) -> bool {
    match kind {
        ScalarKind::Bool
        | ScalarKind::Int2
        | ScalarKind::Int4
        | ScalarKind::Int8
        | ScalarKind::Oid
        | ScalarKind::Float4
        | ScalarKind::Float8
        | ScalarKind::Numeric
        | ScalarKind::Text
        | ScalarKind::Bytea
        | ScalarKind::Uuid
        | ScalarKind::Json
        | ScalarKind::Jsonb
        | ScalarKind::Date
        | ScalarKind::Time
        | ScalarKind::TimeTz
        | ScalarKind::Timestamp
        | ScalarKind::TimestampTz
        | ScalarKind::Interval => true,
    }
}

const _: () = {
    let mut index = 0;
    while index < SCALAR_KINDS.len() {
        assert!(is_listed(SCALAR_KINDS[index]));
        index += 1;
    }
};

/// How many value kinds there are: each scalar and an array of each.
pub const KIND_COUNT: usize = 2 * SCALAR_KINDS.len();

/// Value kind number `index` (taken modulo [`KIND_COUNT`]): scalars first, then arrays, in the
/// order of [`SCALAR_KINDS`]. Seeds name kinds by this number.
pub fn kind_at(index: usize) -> ValueKind {
    let index = index % KIND_COUNT;
    let scalar = SCALAR_KINDS[index % SCALAR_KINDS.len()];
    if index < SCALAR_KINDS.len() {
        ValueKind::Scalar(scalar)
    } else {
        ValueKind::Array(scalar)
    }
}

/// Whether text of this kind is written into JSON raw (json/jsonb, or arrays of them).
fn embeds_raw_json(kind: ValueKind) -> bool {
    let (ValueKind::Scalar(scalar) | ValueKind::Array(scalar)) = kind;
    matches!(scalar, ScalarKind::Json | ScalarKind::Jsonb)
}

/// Panics (a finding) unless `bytes` is one well-formed JSON value.
pub fn assert_json(bytes: &[u8], what: &dyn std::fmt::Display) {
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        panic!(
            "{what} wrote malformed JSON ({error}): {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Decodes `text` as `kind` and uses the result as the sink and `tail` do; see the module doc
/// for what is checked. `out` is scratch space.
pub fn exercise_value(kind: ValueKind, text: &[u8], out: &mut Vec<u8>) {
    let value = match kind.decode(text) {
        Ok(value) => value,
        Err(error) => {
            // Errors are logged: their rendering (which quotes the bad text) must not panic.
            out.clear();
            let mut rendered = String::new();
            let _ = write!(rendered, "{error}");
            return;
        }
    };
    let check_json = !embeds_raw_json(kind);
    out.clear();
    write_json(&value, out);
    if check_json {
        assert_json(out, &format_args!("write_json({kind})"));
    }
    out.clear();
    // A value its column cannot hold is refused, not written: only what is written must be JSON.
    let target = ValueTarget::of_kind(kind, TypeMapping::default());
    if write_value(&value, &target, out).is_ok() && check_json {
        assert_json(out, &format_args!("sink write_value({kind})"));
    }
    walk(&value, out);
}

/// Reads every part of a decoded value the way consumers do.
fn walk(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Text(text) | Value::Bytea(text) | Value::Json(text) => {
            let joined: String = text.chunks().collect();
            assert_eq!(joined, text.to_cow(), "chunks and to_cow disagree");
            out.clear();
            text.write_to(out);
            assert_eq!(
                out.as_slice(),
                joined.as_bytes(),
                "write_to and chunks disagree"
            );
        }
        Value::Date(Date::Civil(date)) => {
            let _ = date.to_unix_days();
        }
        Value::Timestamp(timestamp) | Value::TimestampTz(timestamp) => {
            if let Timestamp::Civil(civil) = timestamp {
                out.clear();
                civil.write_iso8601(out);
            }
        }
        Value::Array(array) => walk_array(array, out),
        _ => {}
    }
}

fn walk_array(array: &Array<'_>, out: &mut Vec<u8>) {
    for element in array.elements() {
        match element {
            Ok(ArrayElement::Null) => {}
            Ok(ArrayElement::Value(value)) => walk(&value, out),
            Ok(ArrayElement::Nested(nested)) => walk_array(&nested, out),
            Err(error) => panic!(
                "a decoded array failed while iterated: {error} (literal {:?})",
                array.literal()
            ),
        }
    }
}

/// Uses a protocol string: `as_str` must give back exactly the validated bytes.
fn exercise_str(text: &PgStr, out: &mut Vec<u8>) {
    let as_str = text.as_str();
    assert_eq!(
        as_str.as_bytes(),
        &text.as_bytes()[..],
        "as_str changed the bytes"
    );
    assert!(
        std::str::from_utf8(text.as_bytes()).is_ok(),
        "PgStr holds bytes that are not UTF-8"
    );
    out.clear();
    write_json_string(as_str, out);
    assert_json(out, &"write_json_string");
}

/// Renders a wire timestamp as `tail` and the logs do.
fn exercise_timestamp(timestamp: PgTimestamp, out: &mut Vec<u8>) {
    out.clear();
    timestamp.write_iso8601(out);
    let _ = timestamp.to_system_time();
}

/// Reads a tuple: every value, owned and borrowed, each text value decoded as every kind.
fn exercise_tuple(tuple: &TupleData, out: &mut Vec<u8>) {
    assert_eq!(tuple.values().count(), tuple.column_count());
    assert_eq!(tuple.raw_values().count(), tuple.column_count());
    for (owned, borrowed) in tuple.values().zip(tuple.raw_values()) {
        assert_eq!(
            owned.as_ref(),
            borrowed,
            "values() and raw_values() disagree"
        );
        if let TupleValueRef::Text(text) = borrowed {
            for index in 0..KIND_COUNT {
                exercise_value(kind_at(index), text, out);
            }
        }
    }
    let detached = tuple.detached();
    assert!(
        detached == *tuple,
        "a detached tuple differs from its source"
    );
}

/// Reads every field of a message. The match names every variant (no `_` arm), so a new
/// message kind stops the fuzz build until it is exercised here.
pub fn exercise_message(message: &Message, out: &mut Vec<u8>) {
    let mut debug = String::new();
    let _ = write!(debug, "{message:?} {}", message.message_type());
    match message {
        Message::Begin(begin) => exercise_timestamp(begin.commit_ts, out),
        Message::Commit(commit) => exercise_timestamp(commit.commit_ts, out),
        Message::Origin(origin) => exercise_str(&origin.origin_name, out),
        Message::Relation(relation) => {
            exercise_str(&relation.namespace, out);
            exercise_str(&relation.name, out);
            for column in &relation.columns {
                exercise_str(&column.name, out);
                let _ = column.is_key();
                let _ = ValueKind::from_type_oid(column.type_oid).to_string();
            }
        }
        Message::Type(type_message) => {
            exercise_str(&type_message.namespace, out);
            exercise_str(&type_message.name, out);
        }
        Message::Insert(insert) => exercise_tuple(&insert.new_tuple, out),
        Message::Update(update) => {
            if let Some(old) = &update.old_tuple {
                exercise_old_tuple(old, out);
            }
            exercise_tuple(&update.new_tuple, out);
        }
        Message::Delete(delete) => exercise_old_tuple(&delete.old_tuple, out),
        Message::Truncate(truncate) => {
            let _ = (truncate.cascade(), truncate.restart_identity());
            let _ = truncate.relation_ids.len();
        }
        Message::LogicalMessage(logical) => {
            exercise_str(&logical.prefix, out);
            let _ = (logical.is_transactional(), logical.content.len());
        }
        Message::StreamStart(start) => {
            let _ = start.first_segment;
        }
        Message::StreamStop => {}
        Message::StreamCommit(commit) => exercise_timestamp(commit.commit_ts, out),
        Message::StreamAbort(abort) => {
            let _ = abort.aborts_whole_transaction();
            if let Some(position) = &abort.abort {
                exercise_timestamp(position.abort_ts, out);
            }
        }
        Message::BeginPrepare(begin) => {
            exercise_str(&begin.gid, out);
            exercise_timestamp(begin.prepare_ts, out);
        }
        Message::Prepare(prepare) | Message::StreamPrepare(prepare) => {
            exercise_str(&prepare.gid, out);
            exercise_timestamp(prepare.prepare_ts, out);
        }
        Message::CommitPrepared(commit) => {
            exercise_str(&commit.gid, out);
            exercise_timestamp(commit.commit_ts, out);
        }
        Message::RollbackPrepared(rollback) => {
            exercise_str(&rollback.gid, out);
            exercise_timestamp(rollback.prepare_ts, out);
            exercise_timestamp(rollback.rollback_ts, out);
        }
    }
}

fn exercise_old_tuple(old: &OldTuple, out: &mut Vec<u8>) {
    match old {
        OldTuple::Key(tuple) | OldTuple::Full(tuple) => exercise_tuple(tuple, out),
    }
    let _ = old.tuple().column_count();
}
