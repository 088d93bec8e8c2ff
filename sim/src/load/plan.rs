//! The load plan: which table columns a load writes, where each value comes from, how `__op` is
//! decided — and the per-row conversion that turns raw rows into changes or filtered rows
//! (reference §2 "columns", "Upsert/delete on PK tables", §6 NULL and partial-update rules).
//!
//! Owns the mapping rules:
//! - no `columns` header: every table column is a source field (CSV by position, JSON by key);
//!   a JSON row may carry `__op` on its own ("auto projection"); a missing JSON key is NULL;
//! - with `columns`: listed names are source fields, `target = expr` derives a column or `__op`;
//!   a mapped `__op` that is NULL/missing filters the row with
//!   `NULL value in non-nullable column '__op'`; unlisted columns take their default (full
//!   upsert) or keep stored values (partial update);
//! - conversion failures are NULL in non-strict mode and filtered in strict mode; out-of-range
//!   values and NULL into NOT NULL are always filtered; delete rows are validated the same way.
//!
//! It does not touch the catalog: the plan is built from a snapshot of the table schema and its
//! output is applied at commit.

use std::borrow::Cow;

use crate::catalog::{
    Change, ChangeBatch, ChangeOp, ColumnType, ConversionErrorKind, PreparedBatch, Table, Value,
};

use super::columns::{parse_columns, ColumnItem, Expr};
use super::options::{CsvOptions, Format, PlanOptions};
use super::rows::{csv_count, csv_fields, csv_split, json_rows, JsonObjects, Unsupported};
use super::LoadProgress;

/// Where a target column's value comes from.
#[derive(Debug, Clone)]
enum Source {
    /// Source field by index (CSV position / JSON key in `source_keys`).
    Field(usize),
    /// A constant from the `columns` header, already converted.
    Const(Value),
}

#[derive(Debug, Clone)]
struct Target {
    name: String,
    column_type: ColumnType,
    nullable: bool,
    source: Source,
}

/// How a row's operation is decided.
#[derive(Debug, Clone)]
enum OpSource {
    /// Always upsert (CSV without a mapped `__op`).
    Upsert,
    /// `__op='delete'` / `__op=0` for the whole load.
    Const(ChangeOp),
    /// A mapped source field; NULL filters the row.
    Field(usize),
    /// JSON without `columns`: an `__op` key if the row has one.
    JsonKey,
}

/// A planned load against one table.
#[derive(Debug, Clone)]
pub(crate) struct LoadPlan {
    format: Format,
    csv: CsvOptions,
    strip_outer_array: bool,
    strict_mode: bool,
    /// Source field names as given.
    source_fields: Vec<String>,
    /// Lower-cased source names (JSON key lookup).
    source_keys: Vec<String>,
    targets: Vec<Target>,
    op: OpSource,
    /// Partial update.
    pub(crate) partial_update: bool,
    /// `merge_condition` column.
    pub(crate) merge_condition: Option<String>,
    /// `max_filter_ratio`.
    pub(crate) max_filter_ratio: f64,
    /// The options it was built from (the transaction interface compares them across loads).
    pub(crate) options: PlanOptions,
    /// The table's schema when planned, to check the batch against before commit.
    schema: Table,
    /// CSV rows are only counted (`SimOptions::discard_rows`: benchmarks, not StarRocks).
    discard_rows: bool,
}

impl LoadPlan {
    /// Plans a load. The error is the load's failure message.
    pub(crate) fn new(table: &Table, options: PlanOptions) -> Result<LoadPlan, String> {
        let table_name = table.name().to_string();
        let mut source_fields: Vec<String> = Vec::new();
        let mut targets: Vec<Target> = Vec::new();
        let mut op = OpSource::Upsert;

        match options.columns.as_deref() {
            None => {
                for (i, column) in table.columns().iter().enumerate() {
                    source_fields.push(column.name.clone());
                    targets.push(Target {
                        name: column.name.clone(),
                        column_type: column.column_type.clone(),
                        nullable: column.nullable,
                        source: Source::Field(i),
                    });
                }
                if options.format == Format::Json {
                    op = OpSource::JsonKey;
                }
            }
            Some(header) => {
                let items = parse_columns(header)?;
                // Source fields first, so derivations can refer to any of them.
                for item in &items {
                    if let ColumnItem::Field(name) = item {
                        source_fields.push(name.clone());
                    }
                }
                let field_index = |name: &str| {
                    source_fields
                        .iter()
                        .position(|f| f.eq_ignore_ascii_case(name))
                };
                let mut derived: Vec<(String, Source)> = Vec::new();
                let mut op_mapped = false;
                for item in &items {
                    let ColumnItem::Derived { target, expr } = item else {
                        continue;
                    };
                    if target.eq_ignore_ascii_case("__op") {
                        op_mapped = true;
                        op = match expr {
                            Expr::Column(name) => {
                                OpSource::Field(field_index(name).ok_or_else(|| {
                                    format!("Unknown column '{name}' in '{table_name}'")
                                })?)
                            }
                            Expr::Text(t) | Expr::Number(t) => OpSource::Const(const_op(t)?),
                        };
                        continue;
                    }
                    let (_, column) = table
                        .column(target)
                        .ok_or_else(|| format!("Unknown column '{target}' in '{table_name}'"))?;
                    let source = match expr {
                        Expr::Column(name) => {
                            Source::Field(field_index(name).ok_or_else(|| {
                                format!("Unknown column '{name}' in '{table_name}'")
                            })?)
                        }
                        Expr::Text(t) | Expr::Number(t) => Source::Const(
                            column
                                .column_type
                                .convert_text(&column.name, t)
                                .map_err(|e| e.message)?,
                        ),
                    };
                    derived.push((column.name.clone(), source));
                }
                if !op_mapped {
                    if let Some(i) = field_index("__op") {
                        op = OpSource::Field(i);
                    }
                }
                // Targets in table column order: derived wins over a same-named source field.
                for column in table.columns() {
                    let source = derived
                        .iter()
                        .find(|(n, _)| n == &column.name)
                        .map(|(_, s)| s.clone())
                        .or_else(|| field_index(&column.name).map(Source::Field));
                    if let Some(source) = source {
                        targets.push(Target {
                            name: column.name.clone(),
                            column_type: column.column_type.clone(),
                            nullable: column.nullable,
                            source,
                        });
                    }
                }
                // Columns the load does not provide.
                for column in table.columns() {
                    let provided = targets.iter().any(|t| t.name == column.name);
                    let needs_value = !options.partial_update
                        || table.key_columns().iter().any(|k| k.name == column.name);
                    if !provided
                        && needs_value
                        && column.default.is_none()
                        && (!column.nullable
                            || table.key_columns().iter().any(|k| k.name == column.name))
                    {
                        return Err(format!(
                            "Column has no default value. column: {}",
                            column.name
                        ));
                    }
                }
            }
        }

        if let Some(merge) = &options.merge_condition {
            match table.column(merge) {
                None => {
                    return Err(format!(
                        "Merge condition column {merge} does not exist in table {table_name}"
                    ))
                }
                Some((i, _)) if table.is_key(i) => {
                    return Err(format!(
                        "Merge condition column {merge} should not be a primary key column"
                    ))
                }
                Some(_) => {}
            }
        }

        Ok(LoadPlan {
            format: options.format,
            csv: options.csv.clone(),
            strip_outer_array: options.strip_outer_array,
            strict_mode: options.strict_mode,
            source_keys: source_fields.iter().map(|f| f.to_lowercase()).collect(),
            source_fields,
            targets,
            op,
            partial_update: options.partial_update,
            merge_condition: options.merge_condition.clone(),
            max_filter_ratio: options.max_filter_ratio,
            options,
            schema: table.schema_copy(),
            discard_rows: false,
        })
    }

    /// With `on`, CSV rows are counted as loaded rows and dropped: no field is split, converted
    /// or checked, nothing reaches the batch (`SimOptions::discard_rows`: a benchmark's sim,
    /// not StarRocks behaviour). JSON loads are unaffected.
    pub(crate) fn discarding_rows(mut self, on: bool) -> LoadPlan {
        self.discard_rows = on;
        self
    }

    /// Validates (and packs) `batch` against the table's schema at plan time, outside the state
    /// lock; the commit uses the result only if the schema is still the same.
    pub(crate) fn prepare(&self, batch: &ChangeBatch) -> PreparedBatch {
        self.schema.prepare(batch)
    }

    /// Names of the columns each change carries, in order.
    pub(crate) fn batch_columns(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.name.clone()).collect()
    }

    /// An empty batch for this plan.
    pub(crate) fn empty_batch(&self) -> ChangeBatch {
        ChangeBatch {
            columns: self.batch_columns(),
            partial_update: self.partial_update,
            merge_condition: self.merge_condition.clone(),
            changes: Vec::new(),
        }
    }

    /// Parses a plain (decompressed) body and appends its rows to `progress`. With `final_part`
    /// false (the transaction interface), CSV bytes after the last row delimiter are kept for
    /// the next part. A load-level error (malformed JSON) is returned as the failure message.
    pub(crate) fn feed(
        &self,
        body: &[u8],
        progress: &mut LoadProgress,
        final_part: bool,
    ) -> Result<(), String> {
        match self.format {
            Format::Json => {
                let fast = match std::str::from_utf8(body) {
                    Ok(text) => self.feed_json_objects(text, progress),
                    Err(_) => Err(Unsupported),
                };
                if fast.is_err() {
                    self.feed_json_documents(body, progress)?;
                }
            }
            Format::Csv(_) => {
                let joined: Vec<u8>;
                let body: &[u8] = if progress.csv_tail.is_empty() {
                    body
                } else {
                    let mut carried = std::mem::take(&mut progress.csv_tail);
                    carried.extend_from_slice(body);
                    joined = carried;
                    &joined
                };
                if self.discard_rows {
                    self.count_csv_rows(body, progress, final_part);
                    return Ok(());
                }
                let (lines, tail) = csv_split(body, &self.csv);
                let mut lines: Vec<&[u8]> = lines;
                if !tail.is_empty() {
                    if final_part {
                        lines.push(tail);
                    } else {
                        progress.csv_tail = tail.to_vec();
                    }
                }
                for line in lines {
                    if progress.csv_rows_seen < self.csv.skip_header {
                        progress.csv_rows_seen += 1;
                        continue;
                    }
                    progress.csv_rows_seen += 1;
                    progress.total_rows += 1;
                    let row = csv_fields(line, &self.csv);
                    if row.fields.len() != self.source_fields.len() {
                        progress.filter(format!(
                            "Value count does not match column count. Expect {}, but got {}. Row: {}",
                            self.source_fields.len(),
                            row.fields.len(),
                            shorten(&row.text)
                        ));
                        continue;
                    }
                    let outcome = self.convert(
                        |i| CsvField(row.fields[i].as_ref()),
                        || None::<CsvField<'_, '_>>,
                    );
                    self.record(outcome, &row.text, progress);
                }
            }
        }
        Ok(())
    }

    /// [`LoadPlan::discarding_rows`]: the rows [`csv_split`] would find (the final part's
    /// unterminated row included, `skip_header` honoured), counted as total and loaded rows.
    fn count_csv_rows(&self, body: &[u8], progress: &mut LoadProgress, final_part: bool) {
        let (mut rows, tail) = csv_count(body, &self.csv);
        if !tail.is_empty() {
            if final_part {
                rows += 1;
            } else {
                progress.csv_tail = tail.to_vec();
            }
        }
        let skipped = rows.min(self.csv.skip_header.saturating_sub(progress.csv_rows_seen));
        progress.csv_rows_seen += rows;
        progress.total_rows += rows - skipped;
    }

    /// The JSON hot path ([`JsonObjects`]): source fields are found through a per-position
    /// cache of the keys the previous row had, and values convert straight from their raw text.
    /// On [`Unsupported`] `progress` is restored to what it was and the caller re-reads the body
    /// with [`LoadPlan::feed_json_documents`], which defines the behaviour.
    fn feed_json_objects(
        &self,
        text: &str,
        progress: &mut LoadProgress,
    ) -> Result<(), Unsupported> {
        let before = (
            progress.total_rows,
            progress.filtered_rows,
            progress.batch.changes.len(),
            progress.error_lines.len(),
        );
        let mut reader = JsonObjects::new(text, self.strip_outer_array);
        let mut keys = KeyCache::default();
        let mut fields: Vec<Option<&str>> = vec![None; self.source_keys.len()];
        loop {
            fields.fill(None);
            let mut op = None;
            let next = reader.next_row(|position, key, value| {
                // Later members win, as a later duplicate key does in `json_rows`.
                let targets = keys.targets(position, key, &self.source_keys);
                for &i in &targets.fields {
                    fields[i] = Some(value);
                }
                if targets.op {
                    op = Some(value);
                }
            });
            let row = match next {
                Ok(Some(row)) => row,
                Ok(None) => return Ok(()),
                Err(Unsupported) => {
                    progress.total_rows = before.0;
                    progress.filtered_rows = before.1;
                    progress.batch.changes.truncate(before.2);
                    progress.error_lines.truncate(before.3);
                    return Err(Unsupported);
                }
            };
            progress.total_rows += 1;
            let outcome = self.convert(|i| JsonField(fields[i]), || op.map(|r| JsonField(Some(r))));
            self.record(outcome, row, progress);
        }
    }

    /// The JSON reference path: every document through serde_json ([`json_rows`]).
    fn feed_json_documents(&self, body: &[u8], progress: &mut LoadProgress) -> Result<(), String> {
        for row in json_rows(body, self.strip_outer_array)? {
            progress.total_rows += 1;
            if row.not_an_object {
                progress.filter(format!("JSON data is not an object. Row: {}", row.text));
                continue;
            }
            let outcome = self.convert(
                |i| JsonField(row.fields.get(&self.source_keys[i]).map(|r| r.get())),
                || row.fields.get("__op").map(|r| JsonField(Some(r.get()))),
            );
            self.record(outcome, row.text, progress);
        }
        Ok(())
    }

    /// Flushes a CSV row left without a trailing delimiter (end of a transaction).
    pub(crate) fn finish(&self, progress: &mut LoadProgress) -> Result<(), String> {
        if progress.csv_tail.is_empty() {
            return Ok(());
        }
        self.feed(&[], progress, true)
    }

    fn record(&self, outcome: Result<Change, String>, text: &str, progress: &mut LoadProgress) {
        match outcome {
            Ok(change) => progress.batch.changes.push(change),
            Err(reason) => progress.filter(format!(
                "Data quality error: {reason}. Row: {}",
                shorten(text)
            )),
        }
    }

    /// Converts one row. `field(i)` returns source field `i`; `implicit_op` the JSON `__op` key.
    fn convert<F: RawField>(
        &self,
        field: impl Fn(usize) -> F,
        implicit_op: impl Fn() -> Option<F>,
    ) -> Result<Change, String> {
        let op = match &self.op {
            OpSource::Upsert => ChangeOp::Upsert,
            OpSource::Const(op) => *op,
            OpSource::Field(i) => field(*i).op()?,
            OpSource::JsonKey => match implicit_op() {
                Some(f) => f.op()?,
                None => ChangeOp::Upsert,
            },
        };
        let mut values = Vec::with_capacity(self.targets.len());
        for target in &self.targets {
            let converted = match &target.source {
                Source::Const(v) => Ok(v.clone()),
                Source::Field(i) => field(*i).convert(&target.name, &target.column_type),
            };
            let value = match converted {
                Ok(v) => v,
                Err(e) if e.kind == ConversionErrorKind::Invalid && !self.strict_mode => {
                    if !target.nullable {
                        return Err(e.message);
                    }
                    Value::Null
                }
                Err(e) => return Err(e.message),
            };
            if value.is_null() && !target.nullable {
                return Err(format!(
                    "NULL value in non-nullable column '{}'",
                    target.name
                ));
            }
            values.push(value);
        }
        Ok(Change { op, values })
    }
}

fn const_op(text: &str) -> Result<ChangeOp, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "delete" | "1" => Ok(ChangeOp::Delete),
        "upsert" | "0" => Ok(ChangeOp::Upsert),
        other => Err(format!(
            "Invalid __op value '{other}': use 'upsert'/'delete' or 0/1"
        )),
    }
}

fn shorten(text: &str) -> Cow<'_, str> {
    const MAX: usize = 1000;
    if text.len() <= MAX {
        return Cow::Borrowed(text);
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}...", &text[..end]))
}

/// A raw source field of either format.
trait RawField {
    fn convert(
        &self,
        column: &str,
        ty: &ColumnType,
    ) -> Result<Value, crate::catalog::ConversionError>;
    fn op(&self) -> Result<ChangeOp, String>;
}

/// A JSON row's field: the value's raw JSON text (valid JSON), `None` when the key is missing.
struct JsonField<'a>(Option<&'a str>);

impl RawField for JsonField<'_> {
    fn convert(
        &self,
        column: &str,
        ty: &ColumnType,
    ) -> Result<Value, crate::catalog::ConversionError> {
        let Some(text) = self.0 else {
            return Ok(Value::Null);
        };
        let is_number = text.starts_with(|c: char| c == '-' || c.is_ascii_digit());
        if is_number && !matches!(ty, ColumnType::Json | ColumnType::Array(_)) {
            return ty.convert_number_text(column, text);
        }
        if !matches!(ty, ColumnType::Json) {
            // Shortcuts giving what parsing into a `serde_json::Value` and `convert_json` give:
            // a string without escapes is its own content (control characters were refused by
            // the reader), and literals need no parser.
            if let Some(content) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                if !content.contains('\\') {
                    return ty.convert_text(column, content);
                }
            }
            match text {
                "true" => return ty.convert_json(column, &serde_json::Value::Bool(true)),
                "false" => return ty.convert_json(column, &serde_json::Value::Bool(false)),
                "null" => return Ok(Value::Null),
                _ => {}
            }
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => ty.convert_json(column, &v),
            // The readers already validated the syntax; treat anything else as unparseable.
            Err(_) => ty.convert_text(column, text),
        }
    }

    fn op(&self) -> Result<ChangeOp, String> {
        let Some(text) = self.0 else {
            return Err("NULL value in non-nullable column '__op'".to_string());
        };
        match text {
            "0" => return Ok(ChangeOp::Upsert),
            "1" => return Ok(ChangeOp::Delete),
            _ => {}
        }
        let text = text.trim();
        let unquoted = serde_json::from_str::<String>(text).ok();
        match unquoted.as_deref().unwrap_or(text) {
            "null" if unquoted.is_none() => {
                Err("NULL value in non-nullable column '__op'".to_string())
            }
            v => row_op(v),
        }
    }
}

struct CsvField<'r, 'a>(Option<&'r Cow<'a, str>>);

impl RawField for CsvField<'_, '_> {
    fn convert(
        &self,
        column: &str,
        ty: &ColumnType,
    ) -> Result<Value, crate::catalog::ConversionError> {
        match self.0 {
            None => Ok(Value::Null),
            Some(text) => ty.convert_text(column, text),
        }
    }

    fn op(&self) -> Result<ChangeOp, String> {
        match self.0 {
            None => Err("NULL value in non-nullable column '__op'".to_string()),
            Some(text) => row_op(text),
        }
    }
}

/// The source fields (and whether the implicit `__op`) one JSON key spelling names.
#[derive(Debug, Default)]
struct KeyTargets {
    /// Source field indexes whose lower-cased name is the lower-cased key.
    fields: Vec<usize>,
    /// The lower-cased key is `__op`.
    op: bool,
}

/// Per member position, the key last seen there and what it names. Rows of one load almost
/// always list their keys in the same order, so a lookup is one short comparison.
#[derive(Debug, Default)]
struct KeyCache {
    by_position: Vec<(String, KeyTargets)>,
}

impl KeyCache {
    fn targets(&mut self, position: usize, key: &str, source_keys: &[String]) -> &KeyTargets {
        let hit = self
            .by_position
            .get(position)
            .is_some_and(|(cached, _)| same_key(cached.as_bytes(), key.as_bytes()));
        if !hit {
            // Same matching as `json_rows` + `source_keys`: Unicode lower case on both sides.
            let lower = key.to_lowercase();
            let targets = KeyTargets {
                fields: source_keys
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| **k == lower)
                    .map(|(i, _)| i)
                    .collect(),
                op: lower == "__op",
            };
            let entry = (key.to_string(), targets);
            if position < self.by_position.len() {
                self.by_position[position] = entry;
            } else {
                self.by_position.push(entry);
            }
        }
        &self.by_position[position].1
    }
}

/// `a == b`, a word at a time: keys are short, and a `memcmp` call per member showed in profiles.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    // Whole words from the start, then the (possibly overlapping) last word.
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// A per-row `__op` value: 0 (upsert) or 1 (delete).
fn row_op(v: &str) -> Result<ChangeOp, String> {
    match v.trim() {
        "0" => Ok(ChangeOp::Upsert),
        "1" => Ok(ChangeOp::Delete),
        other => Err(format!(
            "Invalid __op value '{other}': must be 0 (upsert) or 1 (delete)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ColumnDef, TableSpec};

    fn table() -> Table {
        Table::new(
            1,
            TableSpec::new("t")
                .column(ColumnDef::new("id", ColumnType::BigInt).not_null())
                .column(ColumnDef::new("name", ColumnType::Varchar { length: 5 }))
                .column(
                    ColumnDef::new("score", ColumnType::Int)
                        .not_null()
                        .with_default("0"),
                )
                .primary_key(&["id"]),
        )
        .unwrap()
    }

    fn options(format: Format, headers: &[(&str, &str)]) -> PlanOptions {
        let lookup = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        };
        PlanOptions::parse(lookup, format).unwrap()
    }

    fn run(format: Format, headers: &[(&str, &str)], body: &str) -> LoadProgress {
        let plan = LoadPlan::new(&table(), options(format, headers)).unwrap();
        let mut progress = LoadProgress::new(plan.empty_batch());
        plan.feed(body.as_bytes(), &mut progress, true).unwrap();
        progress
    }

    #[test]
    fn json_simple_mode_with_implicit_op_and_missing_keys() {
        let p = run(
            Format::Json,
            &[("strip_outer_array", "true")],
            r#"[{"ID":1,"Name":"a","score":3,"extra":true},{"id":2,"score":4,"__op":1},{"id":3}]"#,
        );
        assert_eq!(p.total_rows, 3);
        // Row 3: score missing → NULL into NOT NULL → filtered (missing key is NULL, not DEFAULT).
        assert_eq!(p.filtered_rows, 1);
        assert!(p.error_lines[0].contains("NULL value in non-nullable column 'score'"));
        assert_eq!(
            p.batch.changes[0].values,
            vec![Value::Int(1), Value::Text("a".into()), Value::Int(3)]
        );
        assert_eq!(p.batch.changes[1].op, ChangeOp::Delete);
    }

    #[test]
    fn mapped_op_must_be_present() {
        let p = run(
            Format::Json,
            &[("columns", "id,name,score,__op")],
            r#"{"id":1,"name":"a","score":1,"__op":0} {"id":2,"name":"b","score":2}"#,
        );
        assert_eq!(p.filtered_rows, 1);
        assert!(p.error_lines[0].contains("NULL value in non-nullable column '__op'"));
    }

    #[test]
    fn csv_with_op_mapping_and_constant_delete() {
        let p = run(
            Format::Csv(None),
            &[
                ("column_separator", ","),
                ("columns", "id,name,score,op_tmp,__op=op_tmp"),
            ],
            "1,a,1,0\n2,b,2,1\n3,c,3\n",
        );
        assert_eq!(p.total_rows, 3);
        assert_eq!(p.filtered_rows, 1);
        assert!(p.error_lines[0]
            .starts_with("Error: Value count does not match column count. Expect 4, but got 3."));
        assert_eq!(p.batch.changes[1].op, ChangeOp::Delete);

        let p = run(
            Format::Csv(None),
            &[("columns", "id, __op='delete'")],
            "7\n8\n",
        );
        assert_eq!(p.batch.columns, vec!["id".to_string()]);
        assert!(p.batch.changes.iter().all(|c| c.op == ChangeOp::Delete));
    }

    #[test]
    fn strict_mode_and_range_errors() {
        let body = r#"{"id":1,"name":"toolong","score":1} {"id":2,"name":"x","score":"abc"}"#;
        let p = run(Format::Json, &[], body);
        // Over-length is always filtered; "abc" into NOT NULL INT becomes NULL → filtered.
        assert_eq!(p.filtered_rows, 2);
        let plan_table = Table::new(
            1,
            TableSpec::new("t")
                .column(ColumnDef::new("id", ColumnType::BigInt).not_null())
                .column(ColumnDef::new("v", ColumnType::Int))
                .primary_key(&["id"]),
        )
        .unwrap();
        let lenient = LoadPlan::new(&plan_table, options(Format::Json, &[])).unwrap();
        let mut p = LoadProgress::new(lenient.empty_batch());
        lenient
            .feed(br#"{"id":1,"v":"abc"}"#, &mut p, true)
            .unwrap();
        assert_eq!(p.filtered_rows, 0);
        assert_eq!(p.batch.changes[0].values[1], Value::Null);
        let strict = LoadPlan::new(
            &plan_table,
            options(Format::Json, &[("strict_mode", "true")]),
        )
        .unwrap();
        let mut p = LoadProgress::new(strict.empty_batch());
        strict.feed(br#"{"id":1,"v":"abc"}"#, &mut p, true).unwrap();
        assert_eq!(p.filtered_rows, 1);
    }

    #[test]
    fn plan_errors() {
        let t = table();
        let err = LoadPlan::new(&t, options(Format::Json, &[("columns", "name")])).unwrap_err();
        assert_eq!(err, "Column has no default value. column: id");
        let err =
            LoadPlan::new(&t, options(Format::Json, &[("merge_condition", "nope")])).unwrap_err();
        assert!(err.contains("nope"));
        let err =
            LoadPlan::new(&t, options(Format::Json, &[("columns", "id, x = id")])).unwrap_err();
        assert_eq!(err, "Unknown column 'x' in 't'");
        // Partial update only needs the key.
        assert!(LoadPlan::new(
            &t,
            options(
                Format::Json,
                &[("columns", "id,name"), ("partial_update", "true")]
            )
        )
        .is_ok());
    }

    /// The hot path must give exactly what the reference path gives, and fall back to it for
    /// anything it does not handle.
    #[test]
    fn json_fast_path_matches_reference_path() {
        // (strip_outer_array, taken by the hot path, body)
        let bodies: &[(bool, bool, &str)] = &[
            (
                true,
                true,
                r#"[{"ID":1,"Name":"a","score":3,"extra":true},{"id":2,"score":4,"__op":1},{"id":3}]"#,
            ),
            (true, true, r#"[{"id":1,"ID":2,"name":"x","score":1,"Score":2}]"#),
            (true, true, r#"[{"i\u0064":1,"name":"a\"b","score":"1"}]"#),
            (true, true, r#"[{"id":1,"name":"\u00e9","score":"\t1"}]"#),
            (true, true, r#"[{"id":1,"name":[1,"]"],"score":{"a":"}"}},{"id":2,"name":{},"score":[]}]"#),
            (true, true, r#"[{"id":-0,"score":1.5e3},{"id":1E+2,"score":0.0},{"id":2.50,"score":1e-1}]"#),
            (true, true, " \n[ { \"id\" : 1 , \"name\" : \"a\" , \"score\":1 } ,\t{ \"id\" : 2,\"score\":2 } ]\r\n "),
            (false, true, "{\"id\":1,\"score\":1}\n{\"id\":2,\"score\":2} {\"id\":3,\"score\":3}"),
            (false, true, r#"{"id":1,"score":1}{"id":2,"score":2}"#),
            (false, false, r#"{"id":1,"score":1} [1] {"id":3,"score":3}"#),
            (false, false, r#"[{"id":1,"score":1}]"#),
            (false, true, "  \n"),
            (false, true, ""),
            (true, true, "[]"),
            (true, true, " [ ] "),
            (true, true, "  "),
            (true, true, "\u{3000}"),
            (true, false, r#"[{"id":1,"score":1},]"#),
            (true, false, r#"[{"id":01,"score":1}]"#),
            (true, false, r#"[{"id":1,"score":1}] x"#),
            (true, false, "[{\"id\":1,\"name\":\"a\u{1}\",\"score\":1}]"),
            (true, false, r#"[{"id":1,"score":1"#),
            (true, false, r#"[{"id":tru,"score":1}]"#),
            (true, false, r#"[{"id":1,"score":1,}]"#),
            (true, false, r#"[{"id":1 "score":1}]"#),
            (true, false, r#"[1,{"id":2,"score":2},"x",null]"#),
            (true, false, r#"{"id":1,"score":1}"#),
            (true, false, r#"[{"\ud800":1,"id":1,"score":1}]"#),
            (true, true, r#"[{"id":1,"name":"\ud800","score":1}]"#),
            (true, false, r#"[{"id":1,"name":"\q","score":1}]"#),
            (true, true, r#"[{"id":1,"score":1,"__OP":"1"},{"id":2,"score":1,"__op":null}]"#),
            (true, true, r#"[{"id":1,"score":1,"__op":" 1 "},{"id":2,"score":1,"__op":2}]"#),
            (true, true, r#"[{"id":1,"score":true,"name":false},{"id":2,"score":null,"name":null}]"#),
            (true, true, r#"[{"id":"7","score":"x","name":"toolong"},{"id":-1.5,"score":1}]"#),
            (true, true, r#"[{"score":1,"id":1},{"id":2,"score":2},{"name":"n","score":3,"id":3}]"#),
            (true, true, "[{\"id\":1,\"score\":1,\"n\u{e9}\":1}]"),
            (true, false, r#"[{"id":1,"score":-]"#),
            (true, false, r#"[{"id":1.,"score":1}]"#),
            (true, false, r#"[{"id":1e,"score":1}]"#),
        ];
        let header_sets: &[&[(&str, &str)]] = &[
            &[],
            &[("strict_mode", "true")],
            &[("columns", "id,name,score,__op")],
            &[("columns", "id, name, v, score = v")],
        ];
        for headers in header_sets {
            for (strip, fast_path, body) in bodies {
                let mut all: Vec<(&str, &str)> = headers.to_vec();
                if *strip {
                    all.push(("strip_outer_array", "true"));
                }
                let plan = LoadPlan::new(&table(), options(Format::Json, &all)).unwrap();
                let mut fast = LoadProgress::new(plan.empty_batch());
                let fast_result = plan.feed(body.as_bytes(), &mut fast, true);
                let mut reference = LoadProgress::new(plan.empty_batch());
                let reference_result = plan.feed_json_documents(body.as_bytes(), &mut reference);
                let context = format!("headers {headers:?}, body {body:?}");
                let mut probe = LoadProgress::new(plan.empty_batch());
                let taken = plan.feed_json_objects(body, &mut probe).is_ok();
                assert_eq!(taken, *fast_path, "{context}");
                assert_eq!(fast_result, reference_result, "{context}");
                assert_eq!(fast.batch, reference.batch, "{context}");
                assert_eq!(fast.total_rows, reference.total_rows, "{context}");
                assert_eq!(fast.filtered_rows, reference.filtered_rows, "{context}");
                assert_eq!(fast.error_lines, reference.error_lines, "{context}");
            }
        }
    }

    #[test]
    fn json_fast_path_takes_ordinary_bodies_and_restores_progress_when_it_gives_up() {
        let plan = LoadPlan::new(
            &table(),
            options(Format::Json, &[("strip_outer_array", "true")]),
        )
        .unwrap();
        let mut p = LoadProgress::new(plan.empty_batch());
        let body =
            r#"[{"id":1,"name":"a\"b","score":1,"x":[1,{"y":null}]},{"id":2,"score":2,"__op":1}]"#;
        assert_eq!(plan.feed_json_objects(body, &mut p), Ok(()));
        assert_eq!(p.total_rows, 2);
        let before = (p.batch.clone(), p.total_rows, p.error_lines.clone());
        // Two rows (one filtered) are read before the non-object row makes it give up.
        let body = r#"[{"id":3,"score":3},{"id":4},5]"#;
        assert_eq!(plan.feed_json_objects(body, &mut p), Err(Unsupported));
        assert_eq!(
            (p.batch.clone(), p.total_rows, p.error_lines.clone()),
            before
        );
        assert_eq!(p.filtered_rows, 0);
    }

    #[test]
    fn same_key_is_equality() {
        let keys = [
            "",
            "a",
            "id",
            "__op",
            "1234567",
            "12345678",
            "123456789",
            "_starwal_deleted",
            "_starwal_synced_at",
            "_starwal_synced_au",
            "xx_starwal_synced_at",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(same_key(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
            }
        }
        assert!(!same_key(b"_starwal_synced_at", b"_starwal_synced_At"));
        assert!(!same_key(b"a_starwal_synced_at", b"b_starwal_synced_at"));
    }

    #[test]
    fn csv_tail_carries_between_parts() {
        let plan = LoadPlan::new(
            &table(),
            options(Format::Csv(None), &[("column_separator", ",")]),
        )
        .unwrap();
        let mut p = LoadProgress::new(plan.empty_batch());
        plan.feed(b"1,a,1\n2,b", &mut p, false).unwrap();
        assert_eq!(p.total_rows, 1);
        plan.feed(b",2\n3,c,3", &mut p, false).unwrap();
        assert_eq!(p.total_rows, 2);
        plan.finish(&mut p).unwrap();
        assert_eq!(p.total_rows, 3);
        assert_eq!(p.filtered_rows, 0);
    }

    /// Discarding counts the rows the full path loads, for bodies split into transaction parts
    /// at random points, with one- and two-byte row delimiters and `skip_header`; it stores
    /// nothing.
    #[test]
    fn discarding_counts_the_rows_the_full_path_loads() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for case in 0..300 {
            let delimiter = if case % 2 == 0 { "\n" } else { "\r\n" };
            let skip = next(3).to_string();
            let headers = [
                ("column_separator", ","),
                ("row_delimiter", delimiter),
                ("skip_header", skip.as_str()),
            ];
            let rows = next(20);
            let mut body = String::new();
            for i in 0..rows {
                body.push_str(&format!("{i},n{},{}", next(100), next(1000)));
                if i + 1 < rows || next(2) == 0 {
                    body.push_str(delimiter);
                }
            }
            let mut cuts: Vec<usize> = (0..next(4))
                .map(|_| next(body.len() as u64 + 1) as usize)
                .collect();
            cuts.sort_unstable();
            let feed_all = |plan: &LoadPlan| {
                let mut p = LoadProgress::new(plan.empty_batch());
                let mut from = 0;
                for &cut in &cuts {
                    plan.feed(&body.as_bytes()[from..cut], &mut p, false)
                        .unwrap();
                    from = cut;
                }
                plan.feed(&body.as_bytes()[from..], &mut p, false).unwrap();
                plan.finish(&mut p).unwrap();
                p
            };
            let full = LoadPlan::new(&table(), options(Format::Csv(None), &headers)).unwrap();
            let discarding = full.clone().discarding_rows(true);
            let (f, d) = (feed_all(&full), feed_all(&discarding));
            let context = format!("body {body:?}, cuts {cuts:?}, headers {headers:?}");
            assert_eq!(f.filtered_rows, 0, "{context}");
            assert_eq!(d.total_rows, f.total_rows, "{context}");
            assert_eq!(d.loaded_rows(), f.loaded_rows(), "{context}");
            assert_eq!(d.csv_rows_seen, f.csv_rows_seen, "{context}");
            assert!(d.batch.changes.is_empty(), "{context}");
        }
    }
}
