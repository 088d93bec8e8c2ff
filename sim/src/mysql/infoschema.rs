//! The `information_schema` views CDC tools read — `SCHEMATA`, `TABLES`, `COLUMNS` — built from
//! the catalog with StarRocks' column shapes (reference §7).
//!
//! Owns the type reporting rules: `DATA_TYPE` is the bare lower-case name (`int`, `varchar`,
//! `decimal`), `COLUMN_TYPE` carries parameters (`int(11)`, `varchar(64)`), BOOLEAN is reported
//! as `tinyint` / `tinyint(1)` with a NULL `COLUMN_SIZE` and LARGEINT as `bigint unsigned` (FE
//! `toMysqlDataTypeString` / `toMysqlColumnTypeString`), `COLUMN_KEY` is `PRI` on key columns,
//! `IS_NULLABLE` is `YES`/`NO`. The views list `information_schema` itself too. Filtering and
//! projection are the caller's ([`super::relation`]).

use crate::catalog::{Catalog, ColumnType, Value};

use super::relation::{int, text, Kind, RelColumn, Relation};

/// The database name, matched case-insensitively like MySQL.
pub(crate) const NAME: &str = "information_schema";

/// Whether a database name is `information_schema`.
pub(crate) fn is_info_schema(db: &str) -> bool {
    db.eq_ignore_ascii_case(NAME)
}

const VIEWS: [&str; 3] = ["COLUMNS", "SCHEMATA", "TABLES"];

/// The views' names.
pub(crate) fn view_names() -> impl Iterator<Item = &'static str> {
    VIEWS.iter().copied()
}

fn schemata_columns() -> Vec<RelColumn> {
    [
        "CATALOG_NAME",
        "SCHEMA_NAME",
        "DEFAULT_CHARACTER_SET_NAME",
        "DEFAULT_COLLATION_NAME",
        "SQL_PATH",
    ]
    .iter()
    .map(|n| RelColumn::str(n))
    .collect()
}

fn tables_columns() -> Vec<RelColumn> {
    let ints = [
        "TABLE_ROWS",
        "AVG_ROW_LENGTH",
        "DATA_LENGTH",
        "MAX_DATA_LENGTH",
        "INDEX_LENGTH",
        "DATA_FREE",
        "AUTO_INCREMENT",
        "VERSION",
        "CHECKSUM",
    ];
    [
        "TABLE_CATALOG",
        "TABLE_SCHEMA",
        "TABLE_NAME",
        "TABLE_TYPE",
        "ENGINE",
        "VERSION",
        "ROW_FORMAT",
        "TABLE_ROWS",
        "AVG_ROW_LENGTH",
        "DATA_LENGTH",
        "MAX_DATA_LENGTH",
        "INDEX_LENGTH",
        "DATA_FREE",
        "AUTO_INCREMENT",
        "CREATE_TIME",
        "UPDATE_TIME",
        "CHECK_TIME",
        "TABLE_COLLATION",
        "CHECKSUM",
        "CREATE_OPTIONS",
        "TABLE_COMMENT",
    ]
    .iter()
    .map(|n| {
        if ints.contains(n) {
            RelColumn::int(n)
        } else {
            RelColumn::str(n)
        }
    })
    .collect()
}

fn columns_columns() -> Vec<RelColumn> {
    let ints = [
        "ORDINAL_POSITION",
        "CHARACTER_MAXIMUM_LENGTH",
        "CHARACTER_OCTET_LENGTH",
        "NUMERIC_PRECISION",
        "NUMERIC_SCALE",
        "DATETIME_PRECISION",
        "COLUMN_SIZE",
        "DECIMAL_DIGITS",
        "SRS_ID",
    ];
    [
        "TABLE_CATALOG",
        "TABLE_SCHEMA",
        "TABLE_NAME",
        "COLUMN_NAME",
        "ORDINAL_POSITION",
        "COLUMN_DEFAULT",
        "IS_NULLABLE",
        "DATA_TYPE",
        "CHARACTER_MAXIMUM_LENGTH",
        "CHARACTER_OCTET_LENGTH",
        "NUMERIC_PRECISION",
        "NUMERIC_SCALE",
        "DATETIME_PRECISION",
        "CHARACTER_SET_NAME",
        "COLLATION_NAME",
        "COLUMN_TYPE",
        "COLUMN_KEY",
        "EXTRA",
        "PRIVILEGES",
        "COLUMN_COMMENT",
        "COLUMN_SIZE",
        "DECIMAL_DIGITS",
        "GENERATION_EXPRESSION",
        "SRS_ID",
    ]
    .iter()
    .map(|n| {
        if ints.contains(n) {
            RelColumn::int(n)
        } else {
            RelColumn::str(n)
        }
    })
    .collect()
}

/// The columns of a view, `None` for an unknown view name.
pub(crate) fn view_columns(view: &str) -> Option<Vec<RelColumn>> {
    match view.to_ascii_uppercase().as_str() {
        "SCHEMATA" => Some(schemata_columns()),
        "TABLES" => Some(tables_columns()),
        "COLUMNS" => Some(columns_columns()),
        _ => None,
    }
}

/// A view's rows, `None` for an unknown view name.
pub(crate) fn view(catalog: &Catalog, view: &str) -> Option<Relation> {
    let columns = view_columns(view)?;
    let rows = match view.to_ascii_uppercase().as_str() {
        "SCHEMATA" => schemata(catalog),
        "TABLES" => tables(catalog),
        _ => columns_rows(catalog),
    };
    Some(Relation { columns, rows })
}

fn all_databases(catalog: &Catalog) -> Vec<String> {
    std::iter::once(NAME.to_string())
        .chain(catalog.database_names().map(str::to_string))
        .collect()
}

fn schemata(catalog: &Catalog) -> Vec<Vec<Value>> {
    all_databases(catalog)
        .into_iter()
        .map(|db| {
            vec![
                text("def"),
                text(db),
                text("utf8"),
                text("utf8_general_ci"),
                Value::Null,
            ]
        })
        .collect()
}

fn tables(catalog: &Catalog) -> Vec<Vec<Value>> {
    let mut rows = Vec::new();
    let row = |db: &str, name: &str, system: bool, count: usize, comment: &str| {
        vec![
            text("def"),
            text(db),
            text(name),
            text(if system { "SYSTEM VIEW" } else { "BASE TABLE" }),
            text(if system { "MEMORY" } else { "StarRocks" }),
            Value::Null,
            Value::Null,
            int(count as u64),
            int(0),
            int(0),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            text("utf8_general_ci"),
            Value::Null,
            text(""),
            text(comment),
        ]
    };
    for view in view_names() {
        rows.push(row(NAME, view, true, 0, ""));
    }
    for db_name in catalog.database_names() {
        if let Some(db) = catalog.database(db_name) {
            for table in db.tables() {
                rows.push(row(
                    db_name,
                    table.name(),
                    false,
                    table.row_count(),
                    &table.spec().comment,
                ));
            }
        }
    }
    rows
}

/// `DATA_TYPE` as StarRocks reports it.
pub(crate) fn data_type(ty: &ColumnType) -> &'static str {
    match ty {
        ColumnType::Boolean => "tinyint",
        ColumnType::LargeInt => "bigint unsigned",
        other => other.data_type(),
    }
}

/// `COLUMN_TYPE` as StarRocks reports it.
pub(crate) fn column_type(ty: &ColumnType) -> String {
    match ty {
        ColumnType::Boolean => "tinyint(1)".to_string(),
        ColumnType::LargeInt => "bigint(20) unsigned".to_string(),
        other => other.column_type(),
    }
}

/// Digits of an integer type, `None` for others.
fn integer_digits(ty: &ColumnType) -> Option<u32> {
    match ty {
        ColumnType::TinyInt => Some(3),
        ColumnType::SmallInt => Some(5),
        ColumnType::Int => Some(10),
        ColumnType::BigInt => Some(19),
        ColumnType::LargeInt => Some(39),
        _ => None,
    }
}

fn opt_int(n: Option<u32>) -> Value {
    n.map_or(Value::Null, int)
}

fn columns_rows(catalog: &Catalog) -> Vec<Vec<Value>> {
    let mut rows = Vec::new();
    for view in view_names() {
        for (i, column) in view_columns(view).unwrap_or_default().iter().enumerate() {
            let is_int = column.kind == Kind::Int;
            rows.push(vec![
                text("def"),
                text(NAME),
                text(view),
                text(&column.name),
                int(i as u64 + 1),
                Value::Null,
                text("YES"),
                text(if is_int { "bigint" } else { "varchar" }),
                if is_int { Value::Null } else { int(512) },
                if is_int { Value::Null } else { int(1536) },
                if is_int { int(19) } else { Value::Null },
                if is_int { int(0) } else { Value::Null },
                Value::Null,
                if is_int { Value::Null } else { text("utf8") },
                if is_int {
                    Value::Null
                } else {
                    text("utf8_general_ci")
                },
                text(if is_int { "bigint(20)" } else { "varchar(512)" }),
                text(""),
                text(""),
                text(""),
                text(""),
                if is_int { int(19) } else { int(512) },
                if is_int { int(0) } else { Value::Null },
                Value::Null,
                Value::Null,
            ]);
        }
    }
    for db_name in catalog.database_names() {
        let Some(db) = catalog.database(db_name) else {
            continue;
        };
        for table in db.tables() {
            for (i, column) in table.columns().iter().enumerate() {
                let ty = &column.column_type;
                let string_len = ty.max_bytes().map(|n| u32::try_from(n).unwrap_or(u32::MAX));
                let (precision, scale) = match ty {
                    ColumnType::Decimal { precision, scale } => {
                        (Some(u32::from(*precision)), Some(u32::from(*scale)))
                    }
                    ColumnType::Float => (Some(7), None),
                    ColumnType::Double => (Some(15), None),
                    other => (integer_digits(other), integer_digits(other).map(|_| 0)),
                };
                let column_size = match ty {
                    ColumnType::Date => Some(10),
                    ColumnType::DateTime => Some(19),
                    ColumnType::Boolean | ColumnType::Json | ColumnType::Array(_) => None,
                    _ => precision.or(string_len),
                };
                let decimal_digits = match ty {
                    ColumnType::Float => Some(7),
                    ColumnType::Double => Some(15),
                    _ => scale,
                };
                let is_string = string_len.is_some();
                rows.push(vec![
                    text("def"),
                    text(db_name),
                    text(table.name()),
                    text(&column.name),
                    int(i as u64 + 1),
                    column.default.as_ref().map_or(Value::Null, text),
                    text(if column.nullable { "YES" } else { "NO" }),
                    text(data_type(ty)),
                    opt_int(string_len),
                    opt_int(string_len),
                    opt_int(precision),
                    opt_int(scale),
                    if *ty == ColumnType::DateTime {
                        int(0)
                    } else {
                        Value::Null
                    },
                    if is_string { text("utf8") } else { Value::Null },
                    if is_string {
                        text("utf8_general_ci")
                    } else {
                        Value::Null
                    },
                    text(column_type(ty)),
                    text(if table.is_key(i) { "PRI" } else { "" }),
                    text(""),
                    text(""),
                    text(&column.comment),
                    opt_int(column_size),
                    opt_int(decimal_digits),
                    Value::Null,
                    Value::Null,
                ]);
            }
        }
    }
    rows
}
