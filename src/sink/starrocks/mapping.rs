//! Postgres → StarRocks type mapping and the target table definition.
//!
//! One table decides every column's StarRocks type (README "Type mapping" documents it, with the
//! convention for each lossy case); [`target_table`] turns a [`TableSchema`] into the Primary Key
//! table starwal creates: key columns first in key order (StarRocks requires it), then the other
//! columns, then the audit columns. Keys are restricted to the types StarRocks can key on; a key
//! column of another type becomes VARCHAR, and a key that cannot be keyed at all (json, arrays)
//! is an error naming the table and column. The one mapping a user chooses, for `numeric`
//! without a precision, is a [`TypeMapping`] (`STARWAL_NUMERIC_UNCONSTRAINED`); the encoder
//! checks the values of the columns whose target cannot hold every source value (invariant 12).

use std::fmt;

use crate::postgres::value::{ScalarKind, ValueKind};
use crate::postgres::Oid;
use crate::schema::{character_length, numeric_precision_scale, ColumnSchema, TableSchema};

/// StarRocks' longest VARCHAR (bytes, 2.1+).
pub const MAX_VARCHAR: u32 = 1_048_576;
/// StarRocks limits an encoded primary key to 128 bytes; an unbounded text key gets this length.
pub const MAX_KEY_VARCHAR: u32 = 128;
/// Unconstrained `numeric` becomes DECIMAL(38, 9) by default: the widest precision StarRocks 3.x
/// has, with a scale that keeps money and measurements exact. The source type bounds nothing, so
/// the encoder checks every value and stops the table on one that does not fit exactly
/// (StarRocks itself would round extra fractional digits).
pub const UNCONSTRAINED_NUMERIC: (u32, u32) = (38, 9);
/// The VARCHAR of a numeric kept as text: the longest value Postgres prints (131 072 digits
/// before the point, 16 383 after, a sign and the point).
pub const NUMERIC_TEXT_LENGTH: u32 = 131_072 + 16_383 + 2;

/// What `numeric` without a precision becomes (`STARWAL_NUMERIC_UNCONSTRAINED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnconstrainedNumeric {
    /// DECIMAL(38,9), a number StarRocks computes with; a value with more than 29 integer or 9
    /// fractional digits, NaN or ±Infinity stops the table naming table, column and key.
    #[default]
    Decimal,
    /// VARCHAR holding the exact digits as Postgres prints them (`NaN` and `±Infinity` too):
    /// every value fits, but StarRocks sees text.
    Varchar,
}

/// The mapping choices a user makes; everything else in the type table is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TypeMapping {
    /// `STARWAL_NUMERIC_UNCONSTRAINED` (default `decimal`).
    pub unconstrained_numeric: UnconstrainedNumeric,
}

/// Audit column: the source operation (`insert`, `update`, `delete`).
pub const AUDIT_OP: &str = "_starwal_op";
/// Audit column: true when the row was deleted at the source (soft-delete mode keeps it).
pub const AUDIT_DELETED: &str = "_starwal_deleted";
/// Audit column: when starwal wrote the row (UTC).
pub const AUDIT_SYNCED_AT: &str = "_starwal_synced_at";
/// Audit column: the commit LSN of the change, as a number.
pub const AUDIT_LSN: &str = "_starwal_lsn";
/// The audit columns, in the order a target table and every written row carry them.
pub const AUDIT_COLUMNS: [&str; 4] = [AUDIT_OP, AUDIT_DELETED, AUDIT_SYNCED_AT, AUDIT_LSN];

/// A StarRocks column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetType {
    Boolean,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    Decimal { precision: u32, scale: u32 },
    Date,
    DateTime,
    Varchar(u32),
    Json,
    Array(Box<TargetType>),
}

impl TargetType {
    /// Whether a column of this type can be changed to `wider` without losing a stored value
    /// (what starwal applies with `MODIFY COLUMN` when a source type widens).
    pub fn widens_to(&self, wider: &TargetType) -> bool {
        use TargetType::*;
        match (self, wider) {
            (a, b) if a == b => true,
            (SmallInt, Int | BigInt) | (Int, BigInt) | (Float, Double) | (Date, DateTime) => true,
            (Varchar(a), Varchar(b)) => b >= a,
            (
                Decimal { precision, scale },
                Decimal {
                    precision: p2,
                    scale: s2,
                },
            ) => s2 >= scale && p2.saturating_sub(*s2) >= precision.saturating_sub(*scale),
            _ => false,
        }
    }

    /// `information_schema.COLUMNS.DATA_TYPE` as StarRocks reports it (BOOLEAN shows as tinyint).
    pub fn data_type(&self) -> &'static str {
        match self {
            TargetType::Boolean => "tinyint",
            TargetType::SmallInt => "smallint",
            TargetType::Int => "int",
            TargetType::BigInt => "bigint",
            TargetType::Float => "float",
            TargetType::Double => "double",
            TargetType::Decimal { .. } => "decimal",
            TargetType::Date => "date",
            TargetType::DateTime => "datetime",
            TargetType::Varchar(_) => "varchar",
            TargetType::Json => "json",
            TargetType::Array(_) => "array",
        }
    }
}

impl fmt::Display for TargetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetType::Boolean => f.write_str("BOOLEAN"),
            TargetType::SmallInt => f.write_str("SMALLINT"),
            TargetType::Int => f.write_str("INT"),
            TargetType::BigInt => f.write_str("BIGINT"),
            TargetType::Float => f.write_str("FLOAT"),
            TargetType::Double => f.write_str("DOUBLE"),
            TargetType::Decimal { precision, scale } => write!(f, "DECIMAL({precision},{scale})"),
            TargetType::Date => f.write_str("DATE"),
            TargetType::DateTime => f.write_str("DATETIME"),
            TargetType::Varchar(length) => write!(f, "VARCHAR({length})"),
            TargetType::Json => f.write_str("JSON"),
            TargetType::Array(element) => write!(f, "ARRAY<{element}>"),
        }
    }
}

/// A source table that cannot become a StarRocks Primary Key table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("column `{column}` of `{table}` is part of the key, but {type_name} cannot be a StarRocks key: give the table another primary key or replica identity")]
    KeyType {
        table: String,
        column: String,
        type_name: String,
    },
    #[error("table `{table}` has no primary key or replica identity index (REPLICA IDENTITY FULL alone names no key): add a primary key")]
    NoKey { table: String },
}

fn varchar_for_characters(characters: Option<u32>) -> TargetType {
    // Postgres counts characters, StarRocks bytes: up to 4 bytes per UTF-8 character.
    TargetType::Varchar(
        characters.map_or(MAX_VARCHAR, |n| n.saturating_mul(4).clamp(1, MAX_VARCHAR)),
    )
}

/// The declared precision and scale of a numeric column, when they bound its values to what
/// DECIMAL(p,s) holds: Postgres rounds input to `s` fractional digits and refuses more than
/// `p - s` integer digits, so with 0 ≤ s ≤ p every value fits DECIMAL(p,s) exactly. PG 15+
/// also allows s > p and negative scales (`numeric(2,-3)`, whose packed scale reads as a large
/// number here); those, like no typmod at all, count as unconstrained.
pub fn bounded_numeric(column: &ColumnSchema) -> Option<(u32, u32)> {
    bounded_numeric_typmod(column.type_modifier)
}

fn bounded_numeric_typmod(type_modifier: i32) -> Option<(u32, u32)> {
    numeric_precision_scale(type_modifier).filter(|(precision, scale)| scale <= precision)
}

/// The StarRocks type of a value of `kind` in a column without a type modifier (no length, no
/// precision), e.g. to write a value whose column is not at hand.
pub fn kind_type(kind: ValueKind, mapping: TypeMapping) -> TargetType {
    match kind {
        ValueKind::Scalar(scalar) => scalar_type(scalar, Oid(0), -1, mapping),
        ValueKind::Array(element) => {
            TargetType::Array(Box::new(scalar_type(element, Oid(0), -1, mapping)))
        }
    }
}

fn scalar_type(
    kind: ScalarKind,
    type_oid: Oid,
    type_modifier: i32,
    mapping: TypeMapping,
) -> TargetType {
    match kind {
        ScalarKind::Bool => TargetType::Boolean,
        ScalarKind::Int2 => TargetType::SmallInt,
        ScalarKind::Int4 => TargetType::Int,
        ScalarKind::Int8 | ScalarKind::Oid => TargetType::BigInt,
        ScalarKind::Float4 => TargetType::Float,
        ScalarKind::Float8 => TargetType::Double,
        ScalarKind::Numeric => match bounded_numeric_typmod(type_modifier) {
            Some((precision, scale)) if precision <= 38 => TargetType::Decimal { precision, scale },
            // Wider than StarRocks 3.x can hold: keep the exact digits as text.
            Some(_) => TargetType::Varchar(1024),
            None => match mapping.unconstrained_numeric {
                UnconstrainedNumeric::Decimal => TargetType::Decimal {
                    precision: UNCONSTRAINED_NUMERIC.0,
                    scale: UNCONSTRAINED_NUMERIC.1,
                },
                UnconstrainedNumeric::Varchar => TargetType::Varchar(NUMERIC_TEXT_LENGTH),
            },
        },
        ScalarKind::Text => match type_oid.0 {
            // char(n), varchar(n)
            1042 | 1043 => varchar_for_characters(character_length(type_modifier)),
            // name: 63 bytes
            19 => TargetType::Varchar(64),
            // "char": one byte
            18 => TargetType::Varchar(4),
            _ => TargetType::Varchar(MAX_VARCHAR),
        },
        ScalarKind::Bytea => TargetType::Varchar(MAX_VARCHAR),
        ScalarKind::Uuid => TargetType::Varchar(36),
        ScalarKind::Json | ScalarKind::Jsonb => TargetType::Json,
        ScalarKind::Date => TargetType::Date,
        ScalarKind::Timestamp | ScalarKind::TimestampTz => TargetType::DateTime,
        ScalarKind::Time | ScalarKind::TimeTz => TargetType::Varchar(32),
        ScalarKind::Interval => TargetType::Varchar(64),
    }
}

/// The StarRocks type of a source column's values, before any key restriction.
pub fn value_type(column: &ColumnSchema, mapping: TypeMapping) -> TargetType {
    let (oid, typmod) = (column.type_oid, column.type_modifier);
    if let Some(element) = ScalarKind::from_array_type_oid(oid) {
        TargetType::Array(Box::new(scalar_type(element, oid, typmod, mapping)))
    } else {
        // Unknown OIDs (enums, domains, inet, ranges, ...) arrive as text.
        let kind = ScalarKind::from_type_oid(oid).unwrap_or(ScalarKind::Text);
        scalar_type(kind, oid, typmod, mapping)
    }
}

/// The StarRocks type of a source column (key or not).
pub fn column_type(
    table: &TableSchema,
    column: &ColumnSchema,
    mapping: TypeMapping,
) -> Result<TargetType, MappingError> {
    let value_type = value_type(column, mapping);
    if !column.is_key() {
        return Ok(value_type);
    }
    match value_type {
        TargetType::Boolean
        | TargetType::SmallInt
        | TargetType::Int
        | TargetType::BigInt
        | TargetType::Date
        | TargetType::DateTime => Ok(value_type),
        TargetType::Varchar(length) => Ok(TargetType::Varchar(length.min(MAX_KEY_VARCHAR))),
        // Numbers StarRocks cannot key on keep their exact text.
        TargetType::Decimal { .. } | TargetType::Float | TargetType::Double => {
            Ok(TargetType::Varchar(64))
        }
        TargetType::Json | TargetType::Array(_) => Err(MappingError::KeyType {
            table: table.to_string(),
            column: column.name.clone(),
            type_name: column.type_name.clone(),
        }),
    }
}

/// One column of the target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    pub name: String,
    pub data_type: TargetType,
    pub nullable: bool,
    pub is_key: bool,
}

/// The table starwal creates (or expects) for one source table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    pub name: String,
    /// Key columns first, in key order; then the source's other columns; then audit columns.
    pub columns: Vec<TargetColumn>,
}

/// The target table name: the source name for `public`, `schema_name` otherwise, so tables of
/// different schemas never collide in one StarRocks database.
pub fn target_table_name(schema: &str, name: &str) -> String {
    if schema == "public" {
        name.to_owned()
    } else {
        format!("{schema}_{name}")
    }
}

/// The audit columns, in the order they are appended.
pub fn audit_columns() -> [TargetColumn; 4] {
    let column = |name: &str, data_type| TargetColumn {
        name: name.to_owned(),
        data_type,
        nullable: true,
        is_key: false,
    };
    [
        column(AUDIT_OP, TargetType::Varchar(8)),
        column(AUDIT_DELETED, TargetType::Boolean),
        column(AUDIT_SYNCED_AT, TargetType::DateTime),
        column(AUDIT_LSN, TargetType::BigInt),
    ]
}

/// Maps a source table; reports the first key column that cannot be keyed.
pub fn target_table(
    table: &TableSchema,
    mapping: TypeMapping,
) -> Result<TargetTable, MappingError> {
    let keys = table.key_columns();
    if keys.is_empty() {
        return Err(MappingError::NoKey {
            table: table.to_string(),
        });
    }
    let mut columns = Vec::with_capacity(table.columns.len() + 4);
    for column in keys {
        columns.push(TargetColumn {
            name: column.name.clone(),
            data_type: column_type(table, column, mapping)?,
            nullable: false,
            is_key: true,
        });
    }
    for column in table.columns.iter().filter(|c| !c.is_key()) {
        columns.push(TargetColumn {
            name: column.name.clone(),
            data_type: column_type(table, column, mapping)?,
            // Value columns are always nullable: a delete row carries only the key, and a
            // NOT NULL value column would make StarRocks filter it.
            nullable: true,
            is_key: false,
        });
    }
    columns.extend(audit_columns());
    Ok(TargetTable {
        name: target_table_name(&table.schema, &table.name),
        columns,
    })
}

/// Backtick-quotes a StarRocks identifier.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl TargetTable {
    /// `CREATE TABLE IF NOT EXISTS` for this table in `database`.
    pub fn create_sql(&self, database: &str) -> String {
        let columns = self
            .columns
            .iter()
            .map(|c| {
                format!(
                    "{} {} {}",
                    quote(&c.name),
                    c.data_type,
                    if c.nullable { "NULL" } else { "NOT NULL" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let keys = self
            .columns
            .iter()
            .filter(|c| c.is_key)
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "CREATE TABLE IF NOT EXISTS {}.{} ({columns}) PRIMARY KEY({keys}) DISTRIBUTED BY HASH({keys}) PROPERTIES (\"enable_persistent_index\" = \"true\")",
            quote(database),
            quote(&self.name)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::Oid;

    fn column(name: &str, oid: u32, typmod: i32, is_key: bool) -> ColumnSchema {
        keyed(name, oid, typmod, is_key.then_some(0))
    }

    fn keyed(name: &str, oid: u32, typmod: i32, key_position: Option<u16>) -> ColumnSchema {
        ColumnSchema {
            name: name.into(),
            type_oid: Oid(oid),
            type_modifier: typmod,
            type_name: format!("oid {oid}"),
            nullable: key_position.is_none(),
            key_position,
        }
    }

    fn table(columns: Vec<ColumnSchema>) -> TableSchema {
        TableSchema {
            schema: "public".into(),
            name: "t".into(),
            columns,
        }
    }

    #[test]
    fn every_builtin_type_has_a_target() {
        let t = table(vec![]);
        let cases: &[(u32, i32, &str)] = &[
            (16, -1, "BOOLEAN"),
            (21, -1, "SMALLINT"),
            (23, -1, "INT"),
            (20, -1, "BIGINT"),
            (700, -1, "FLOAT"),
            (701, -1, "DOUBLE"),
            (1700, (10 << 16 | 2) + 4, "DECIMAL(10,2)"),
            (1700, -1, "DECIMAL(38,9)"),
            (1700, (50 << 16) + 4, "VARCHAR(1024)"),
            // numeric(3,5) and numeric(2,-3) (PG 15+) are not bounded like DECIMAL(p,s).
            (1700, (3 << 16 | 5) + 4, "DECIMAL(38,9)"),
            (1700, (2 << 16 | 0x7fd) + 4, "DECIMAL(38,9)"),
            (1043, 64 + 4, "VARCHAR(256)"),
            (1042, 3 + 4, "VARCHAR(12)"),
            (25, -1, "VARCHAR(1048576)"),
            (2950, -1, "VARCHAR(36)"),
            (3802, -1, "JSON"),
            (114, -1, "JSON"),
            (17, -1, "VARCHAR(1048576)"),
            (1082, -1, "DATE"),
            (1114, -1, "DATETIME"),
            (1184, -1, "DATETIME"),
            (1083, -1, "VARCHAR(32)"),
            (1186, -1, "VARCHAR(64)"),
            (1007, -1, "ARRAY<INT>"),
            (1009, -1, "ARRAY<VARCHAR(1048576)>"),
            (16_385, -1, "VARCHAR(1048576)"),
        ];
        for (oid, typmod, expected) in cases {
            let c = column("c", *oid, *typmod, false);
            assert_eq!(
                column_type(&t, &c, TypeMapping::default())
                    .unwrap()
                    .to_string(),
                *expected,
                "oid {oid}"
            );
        }
    }

    #[test]
    fn unconstrained_numeric_follows_the_chosen_mapping() {
        let t = table(vec![]);
        let varchar = TypeMapping {
            unconstrained_numeric: UnconstrainedNumeric::Varchar,
        };
        let type_of = |oid, typmod, mapping| {
            column_type(&t, &column("n", oid, typmod, false), mapping)
                .unwrap()
                .to_string()
        };
        assert_eq!(type_of(1700, -1, varchar), "VARCHAR(147457)");
        assert_eq!(type_of(1231, -1, varchar), "ARRAY<VARCHAR(147457)>");
        assert_eq!(
            type_of(1231, -1, TypeMapping::default()),
            "ARRAY<DECIMAL(38,9)>"
        );
        // A declared precision and scale bound the values: the choice does not apply.
        assert_eq!(type_of(1700, (10 << 16 | 2) + 4, varchar), "DECIMAL(10,2)");
    }

    #[test]
    fn keys_use_keyable_types() {
        let t = table(vec![]);
        assert_eq!(
            column_type(&t, &column("k", 25, -1, true), TypeMapping::default()).unwrap(),
            TargetType::Varchar(128)
        );
        assert_eq!(
            column_type(
                &t,
                &column("k", 1700, (10 << 16) + 4, true),
                TypeMapping::default()
            )
            .unwrap(),
            TargetType::Varchar(64)
        );
        assert_eq!(
            column_type(&t, &column("k", 2950, -1, true), TypeMapping::default()).unwrap(),
            TargetType::Varchar(36)
        );
        let err =
            column_type(&t, &column("k", 3802, -1, true), TypeMapping::default()).unwrap_err();
        assert!(err.to_string().contains("`k` of `public.t`"), "{err}");
    }

    #[test]
    fn a_table_without_key_columns_is_refused() {
        let err = target_table(
            &table(vec![column("v", 25, -1, false)]),
            TypeMapping::default(),
        )
        .unwrap_err();
        assert!(matches!(err, MappingError::NoKey { .. }), "{err}");
    }

    #[test]
    fn table_definition_puts_keys_first_and_audit_columns_last() {
        let source = TableSchema {
            schema: "sales".into(),
            name: "orders".into(),
            columns: vec![
                column("note", 25, -1, false),
                keyed("region", 1043, 8 + 4, Some(1)),
                keyed("id", 20, -1, Some(0)),
            ],
        };
        let target = target_table(&source, TypeMapping::default()).unwrap();
        assert_eq!(target.name, "sales_orders");
        let names: Vec<&str> = target.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "id",
                "region",
                "note",
                AUDIT_OP,
                AUDIT_DELETED,
                AUDIT_SYNCED_AT,
                AUDIT_LSN
            ]
        );
        let sql = target.create_sql("analytics");
        assert!(sql.starts_with("CREATE TABLE IF NOT EXISTS `analytics`.`sales_orders` (`id` BIGINT NOT NULL, `region` VARCHAR(32) NOT NULL, `note` VARCHAR(1048576) NULL"), "{sql}");
        assert!(
            sql.contains("PRIMARY KEY(`id`, `region`) DISTRIBUTED BY HASH(`id`, `region`)"),
            "{sql}"
        );
    }
}
