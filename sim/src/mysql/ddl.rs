//! Table DDL on the MySQL side: CREATE TABLE → [`TableSpec`] with StarRocks' Primary Key rules
//! and messages, ADD COLUMN definitions, and the `SHOW CREATE TABLE` / `DESC` renderings
//! (reference §7 "DDL", "SHOW CREATE TABLE", "DESC").
//!
//! Owns the analysis StarRocks does before a table exists, in its order and wording (KeysDesc:
//! `Key columns should be a ordered prefix of the schema.`, `primary key column[x] cannot be
//! nullable`, `primary key column[x] type not supported: ...`; distribution: `Distribution
//! column[x] is not key column`), plus type parsing: a type StarRocks lacks (TIME, UUID, ...) is a
//! syntax error at the type, like StarRocks' grammar. Key columns without NULL/NOT NULL become
//! NOT NULL, value columns NULL. The catalog re-checks the same rules when the table is created.

use std::collections::BTreeMap;

use crate::catalog::{CatalogError, ColumnDef, ColumnType, Table, TableSpec};

use super::error::{SqlError, SqlResult};
use super::parser::{ColumnSpec, CreateTable};

/// The column type of a definition; unknown type names are a syntax error at the type.
pub(crate) fn parse_type(sql: &str, spec: &ColumnSpec) -> SqlResult<ColumnType> {
    ColumnType::parse(&spec.type_text).map_err(|e| match e {
        CatalogError::UnsupportedType { name } => SqlError::syntax(
            sql,
            spec.type_pos,
            &format!("Unexpected input '{name}', the most similar input is {{a legal type}}"),
        ),
        CatalogError::InvalidType { text, reason } => {
            SqlError::analysis(format!("Invalid type '{text}': {reason}"))
        }
        other => SqlError::from(other),
    })
}

/// A column definition; `is_key` decides the default nullability.
pub(crate) fn column_def(sql: &str, spec: &ColumnSpec, is_key: bool) -> SqlResult<ColumnDef> {
    let column_type = parse_type(sql, spec)?;
    Ok(ColumnDef {
        name: spec.name.clone(),
        column_type,
        nullable: spec.nullable.unwrap_or(!is_key),
        default: spec.default.clone(),
        comment: spec.comment.clone(),
    })
}

/// Analyses CREATE TABLE and builds the spec the catalog creates.
pub(crate) fn table_spec(sql: &str, create: &CreateTable) -> SqlResult<TableSpec> {
    let table = &create.name.name;
    if table.is_empty() {
        return Err(SqlError::new(1104, "42000", "Incorrect table name ''"));
    }
    for (i, column) in create.columns.iter().enumerate() {
        if create.columns[..i]
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&column.name))
        {
            return Err(SqlError::new(
                1060,
                "42S21",
                format!("Duplicate column name '{}'", column.name),
            ));
        }
    }
    let keys = &create.primary_key;
    if keys.is_empty() {
        return Err(SqlError::unsupported(
            "a table without PRIMARY KEY(...) (StarRocks would create a Duplicate Key table)",
        ));
    }
    if keys.len() > create.columns.len() {
        return Err(SqlError::analysis(
            "The number of key columns should be less than the number of columns.",
        ));
    }
    let mut columns = Vec::with_capacity(create.columns.len());
    for (i, spec) in create.columns.iter().enumerate() {
        let is_key = i < keys.len();
        let column = column_def(sql, spec, is_key)?;
        if let Some(key) = keys.get(i) {
            if !key.eq_ignore_ascii_case(&column.name) {
                if create
                    .columns
                    .iter()
                    .any(|c| c.name.eq_ignore_ascii_case(key))
                {
                    return Err(SqlError::analysis(
                        "Key columns should be a ordered prefix of the schema.",
                    ));
                }
                return Err(SqlError::analysis(format!(
                    "Key column({key}) doesn't exist."
                )));
            }
            if column.nullable {
                return Err(SqlError::analysis(format!(
                    "primary key column[{}] cannot be nullable",
                    column.name
                )));
            }
            if !column.column_type.is_key_eligible() {
                return Err(SqlError::analysis(format!(
                    "primary key column[{}] type not supported: {}",
                    column.name, column.column_type
                )));
            }
        }
        columns.push(column);
    }
    for name in &create.distribution {
        match create
            .columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
        {
            None => {
                return Err(SqlError::analysis(format!(
                    "Distribution column({name}) doesn't exist."
                )))
            }
            Some(i) if i >= keys.len() => {
                return Err(SqlError::analysis(format!(
                    "Distribution column[{name}] is not key column"
                )))
            }
            Some(_) => {}
        }
    }
    let buckets = match create.buckets {
        None => None,
        Some(0) => {
            return Err(SqlError::analysis(
                "Number of hash distribution should be greater than zero.",
            ))
        }
        Some(n) => Some(u32::try_from(n).map_err(|_| {
            SqlError::analysis(format!("Number of hash distribution {n} is too large."))
        })?),
    };
    let mut properties = BTreeMap::new();
    for (key, value) in &create.properties {
        let lower = key.to_ascii_lowercase();
        if lower == "replication_num" && value.parse::<u16>().map_or(true, |n| n == 0) {
            return Err(SqlError::analysis(format!(
                "Replication num should larger than 0. (replication_num = {value})"
            )));
        }
        if matches!(
            lower.as_str(),
            "enable_persistent_index" | "fast_schema_evolution"
        ) && !value.eq_ignore_ascii_case("true")
            && !value.eq_ignore_ascii_case("false")
        {
            return Err(SqlError::analysis(format!(
                "Property {key} must be bool type(false/true)"
            )));
        }
        properties.insert(lower, value.clone());
    }
    let spec = TableSpec {
        name: table.clone(),
        columns,
        primary_key: keys.clone(),
        distribution: create.distribution.clone(),
        buckets,
        properties,
        comment: create.comment.clone().unwrap_or_default(),
    };
    // The catalog's own validation (defaults, reserved names) before the statement succeeds.
    Table::new(0, spec.clone())?;
    Ok(spec)
}

/// `` `name` `` with backticks doubled.
fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `"text"` with `\` and `"` escaped, as StarRocks prints string literals in DDL.
fn quote_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The properties SHOW CREATE TABLE prints: StarRocks' defaults overlaid with the table's own.
fn shown_properties(spec: &TableSpec) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = [
        ("compression", "LZ4"),
        ("enable_persistent_index", "true"),
        ("fast_schema_evolution", "true"),
        ("replicated_storage", "true"),
        ("replication_num", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    out.extend(spec.properties.clone());
    out
}

/// `SHOW CREATE TABLE` text in StarRocks' layout.
pub(crate) fn show_create_table(table: &Table) -> String {
    let spec = table.spec();
    let mut out = format!("CREATE TABLE {} (\n", quote_ident(table.name()));
    let columns: Vec<String> = table
        .columns()
        .iter()
        .map(|c| {
            let mut line = format!(
                "  {} {} {}",
                quote_ident(&c.name),
                c.column_type.column_type(),
                if c.nullable { "NULL" } else { "NOT NULL" }
            );
            if let Some(default) = &c.default {
                line.push_str(&format!(" DEFAULT {}", quote_string(default)));
            }
            line.push_str(&format!(" COMMENT {}", quote_string(&c.comment)));
            line
        })
        .collect();
    out.push_str(&columns.join(",\n"));
    let keys: Vec<String> = table
        .key_columns()
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    let distribution: Vec<String> = if spec.distribution.is_empty() {
        keys.clone()
    } else {
        spec.distribution.iter().map(|c| quote_ident(c)).collect()
    };
    let comment = if spec.comment.is_empty() {
        "OLAP"
    } else {
        spec.comment.as_str()
    };
    out.push_str(&format!(
        "\n) ENGINE=OLAP \nPRIMARY KEY({})\nCOMMENT {}\nDISTRIBUTED BY HASH({})",
        keys.join(", "),
        quote_string(comment),
        distribution.join(", ")
    ));
    if let Some(buckets) = spec.buckets {
        out.push_str(&format!(" BUCKETS {buckets}"));
    }
    out.push_str(" \nPROPERTIES (\n");
    let properties: Vec<String> = shown_properties(spec)
        .iter()
        .map(|(k, v)| format!("{} = {}", quote_string(k), quote_string(v)))
        .collect();
    out.push_str(&properties.join(",\n"));
    out.push_str("\n);");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::parser::{parse, Statement};

    fn spec(sql: &str) -> SqlResult<TableSpec> {
        let Statement::CreateTable(create) = parse(sql).unwrap() else {
            panic!("{sql}")
        };
        table_spec(sql, &create)
    }

    #[test]
    fn primary_key_rules_and_messages() {
        let err = |sql: &str| spec(sql).unwrap_err().message;
        assert!(spec("create table t (id bigint, v int) primary key(id)").is_ok());
        assert!(
            err("create table t (v int, id bigint not null) primary key(id)")
                .contains("Key columns should be a ordered prefix of the schema.")
        );
        assert!(err("create table t (id bigint not null) primary key(x)")
            .contains("Key column(x) doesn't exist."));
        assert!(err("create table t (id bigint null) primary key(id)")
            .contains("primary key column[id] cannot be nullable"));
        assert!(
            err("create table t (id decimal(10,2) not null) primary key(id)")
                .contains("primary key column[id] type not supported: DECIMAL(10,2)")
        );
        assert!(err(
            "create table t (id int not null, v int) primary key(id) distributed by hash(v)"
        )
        .contains("Distribution column[v] is not key column"));
        assert!(err("create table t (id int not null, v time) primary key(id)")
            .contains("Getting syntax error at line 1, column 35. Detail message: Unexpected input 'TIME'"));
        assert!(
            err("create table t (id int not null, v uuid) primary key(id)")
                .contains("Unexpected input 'UUID'")
        );
        assert!(err("create table t (id int, ID int) primary key(id)")
            .contains("Duplicate column name 'ID'"));
        assert!(
            err("create table t (id int, v int default 'x') primary key(id)")
                .contains("Invalid default value")
        );
    }

    #[test]
    fn show_create_table_shape() {
        let s = spec(
            "create table t (id bigint not null comment 'k', v varchar(8) default \"a\") primary key(id) distributed by hash(id) buckets 4 properties (\"replication_num\" = \"1\")",
        )
        .unwrap();
        let table = Table::new(1, s).unwrap();
        assert_eq!(
            show_create_table(&table),
            "CREATE TABLE `t` (\n  `id` bigint(20) NOT NULL COMMENT \"k\",\n  `v` varchar(8) NULL DEFAULT \"a\" COMMENT \"\"\n) ENGINE=OLAP \nPRIMARY KEY(`id`)\nCOMMENT \"OLAP\"\nDISTRIBUTED BY HASH(`id`) BUCKETS 4 \nPROPERTIES (\n\"compression\" = \"LZ4\",\n\"enable_persistent_index\" = \"true\",\n\"fast_schema_evolution\" = \"true\",\n\"replicated_storage\" = \"true\",\n\"replication_num\" = \"1\"\n);"
        );
    }
}
