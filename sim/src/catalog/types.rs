//! StarRocks column types: parsing from DDL text, canonical rendering, and the limits each type
//! enforces (reference §7 "Types").
//!
//! Owns the set of types the sim models (BOOLEAN … ARRAY<T>) and their textual forms: the DDL
//! spelling (`DECIMAL(18,4)`), the `information_schema.COLUMNS.COLUMN_TYPE` spelling (`int(11)`) and
//! the bare `DATA_TYPE` name. It does not convert values (that is `value.rs`) and does not decide
//! which types may be key columns beyond [`ColumnType::is_key_eligible`]. Unsupported types
//! (TIME, UUID, MAP, STRUCT, VARBINARY, …) are rejected with a typed error, never approximated.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::CatalogError;

/// Largest VARCHAR length in bytes (StarRocks 2.1–4.1: 1,048,576).
pub const MAX_VARCHAR_BYTES: u32 = 1_048_576;
/// Byte length of STRING, which StarRocks treats as VARCHAR(65533).
pub const STRING_BYTES: u32 = 65_533;
/// Largest CHAR length in bytes.
pub const MAX_CHAR_BYTES: u32 = 255;
/// Largest JSON value in bytes (16 MB).
pub const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;
/// Largest DECIMAL precision (DECIMAL256 of 4.0+ is not modelled).
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// A StarRocks column type as the sim models it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    /// `BOOLEAN`.
    Boolean,
    /// `TINYINT` (8-bit signed).
    TinyInt,
    /// `SMALLINT` (16-bit signed).
    SmallInt,
    /// `INT` (32-bit signed).
    Int,
    /// `BIGINT` (64-bit signed).
    BigInt,
    /// `LARGEINT` (128-bit signed).
    LargeInt,
    /// `FLOAT` (32-bit IEEE).
    Float,
    /// `DOUBLE` (64-bit IEEE).
    Double,
    /// `DECIMAL(precision, scale)`, precision 1–38, scale 0–precision.
    Decimal {
        /// Total number of decimal digits.
        precision: u8,
        /// Digits after the decimal point.
        scale: u8,
    },
    /// `DATE`, 0000-01-01 ..= 9999-12-31.
    Date,
    /// `DATETIME`, same date range, microsecond resolution, no time zone.
    DateTime,
    /// `CHAR(length)`, length in bytes, 1–255.
    Char {
        /// Maximum length in bytes.
        length: u32,
    },
    /// `VARCHAR(length)`, length in bytes, 1–1,048,576.
    Varchar {
        /// Maximum length in bytes.
        length: u32,
    },
    /// `STRING` (VARCHAR(65533)).
    String,
    /// `JSON`, values up to 16 MB.
    Json,
    /// `ARRAY<element>`.
    Array(Box<ColumnType>),
}

impl ColumnType {
    /// Parses a DDL type such as `bigint`, `VARCHAR(64)`, `decimal(18, 4)`, `ARRAY<INT>`.
    ///
    /// Names are case-insensitive; display widths (`INT(11)`) are accepted and ignored. TIME, UUID,
    /// INTERVAL, ENUM, MAP, STRUCT and binary types are rejected with
    /// [`CatalogError::UnsupportedType`].
    pub fn parse(text: &str) -> Result<ColumnType, CatalogError> {
        let mut parser = TypeParser {
            input: text,
            pos: 0,
        };
        let ty = parser.parse_type()?;
        parser.skip_ws();
        if parser.pos != text.len() {
            return Err(CatalogError::InvalidType {
                text: text.to_string(),
                reason: "unexpected trailing text".to_string(),
            });
        }
        Ok(ty)
    }

    /// Whether StarRocks allows this type in a Primary Key: BOOLEAN, the integers, VARCHAR/STRING,
    /// DATE and DATETIME (no DECIMAL, CHAR, FLOAT/DOUBLE, JSON, ARRAY).
    pub fn is_key_eligible(&self) -> bool {
        matches!(
            self,
            ColumnType::Boolean
                | ColumnType::TinyInt
                | ColumnType::SmallInt
                | ColumnType::Int
                | ColumnType::BigInt
                | ColumnType::LargeInt
                | ColumnType::Varchar { .. }
                | ColumnType::String
                | ColumnType::Date
                | ColumnType::DateTime
        )
    }

    /// The lower-case bare type name, as in `information_schema.COLUMNS.DATA_TYPE` (`int`,
    /// `varchar`, `decimal`, `array`). BOOLEAN answers `boolean`; the MySQL side decides whether
    /// to report it as `tinyint` like StarRocks does.
    pub fn data_type(&self) -> &'static str {
        match self {
            ColumnType::Boolean => "boolean",
            ColumnType::TinyInt => "tinyint",
            ColumnType::SmallInt => "smallint",
            ColumnType::Int => "int",
            ColumnType::BigInt => "bigint",
            ColumnType::LargeInt => "largeint",
            ColumnType::Float => "float",
            ColumnType::Double => "double",
            ColumnType::Decimal { .. } => "decimal",
            ColumnType::Date => "date",
            ColumnType::DateTime => "datetime",
            ColumnType::Char { .. } => "char",
            ColumnType::Varchar { .. } | ColumnType::String => "varchar",
            ColumnType::Json => "json",
            ColumnType::Array(_) => "array",
        }
    }

    /// The lower-case type with parameters and MySQL display widths, as in
    /// `information_schema.COLUMNS.COLUMN_TYPE` and `SHOW CREATE TABLE` (`int(11)`,
    /// `varchar(65533)`, `decimal(10,2)`, `array<bigint(20)>`).
    pub fn column_type(&self) -> String {
        match self {
            ColumnType::Boolean => "boolean".to_string(),
            ColumnType::TinyInt => "tinyint(4)".to_string(),
            ColumnType::SmallInt => "smallint(6)".to_string(),
            ColumnType::Int => "int(11)".to_string(),
            ColumnType::BigInt => "bigint(20)".to_string(),
            ColumnType::LargeInt => "largeint(40)".to_string(),
            ColumnType::Float => "float".to_string(),
            ColumnType::Double => "double".to_string(),
            ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            ColumnType::Date => "date".to_string(),
            ColumnType::DateTime => "datetime".to_string(),
            ColumnType::Char { length } => format!("char({length})"),
            ColumnType::Varchar { length } => format!("varchar({length})"),
            ColumnType::String => format!("varchar({STRING_BYTES})"),
            ColumnType::Json => "json".to_string(),
            ColumnType::Array(element) => format!("array<{}>", element.column_type()),
        }
    }

    /// Maximum byte length of a string type (`CHAR`, `VARCHAR`, `STRING`); `None` otherwise.
    pub fn max_bytes(&self) -> Option<usize> {
        match self {
            ColumnType::Char { length } | ColumnType::Varchar { length } => Some(*length as usize),
            ColumnType::String => Some(STRING_BYTES as usize),
            _ => None,
        }
    }

    /// Size in bytes of the fixed-width key encoding, `None` for variable-length types.
    pub(crate) fn fixed_key_width(&self) -> Option<usize> {
        match self {
            ColumnType::Boolean | ColumnType::TinyInt => Some(1),
            ColumnType::SmallInt => Some(2),
            ColumnType::Int | ColumnType::Date => Some(4),
            ColumnType::BigInt | ColumnType::DateTime => Some(8),
            ColumnType::LargeInt => Some(16),
            _ => None,
        }
    }
}

impl fmt::Display for ColumnType {
    /// The canonical upper-case DDL spelling (`BIGINT`, `VARCHAR(64)`, `ARRAY<INT>`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Boolean => f.write_str("BOOLEAN"),
            ColumnType::TinyInt => f.write_str("TINYINT"),
            ColumnType::SmallInt => f.write_str("SMALLINT"),
            ColumnType::Int => f.write_str("INT"),
            ColumnType::BigInt => f.write_str("BIGINT"),
            ColumnType::LargeInt => f.write_str("LARGEINT"),
            ColumnType::Float => f.write_str("FLOAT"),
            ColumnType::Double => f.write_str("DOUBLE"),
            ColumnType::Decimal { precision, scale } => write!(f, "DECIMAL({precision},{scale})"),
            ColumnType::Date => f.write_str("DATE"),
            ColumnType::DateTime => f.write_str("DATETIME"),
            ColumnType::Char { length } => write!(f, "CHAR({length})"),
            ColumnType::Varchar { length } => write!(f, "VARCHAR({length})"),
            ColumnType::String => f.write_str("STRING"),
            ColumnType::Json => f.write_str("JSON"),
            ColumnType::Array(element) => write!(f, "ARRAY<{element}>"),
        }
    }
}

impl FromStr for ColumnType {
    type Err = CatalogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ColumnType::parse(s)
    }
}

/// Recursive-descent parser over a type string; positions are byte offsets into ASCII syntax.
struct TypeParser<'a> {
    input: &'a str,
    pos: usize,
}

impl TypeParser<'_> {
    fn skip_ws(&mut self) {
        while let Some(c) = self.input[self.pos..].chars().next() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn error(&self, reason: &str) -> CatalogError {
        CatalogError::InvalidType {
            text: self.input.to_string(),
            reason: reason.to_string(),
        }
    }

    fn ident(&mut self) -> String {
        self.skip_ws();
        let start = self.pos;
        while let Some(c) = self.input[self.pos..].chars().next() {
            if c.is_ascii_alphanumeric() || c == '_' {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.input[start..self.pos].to_ascii_uppercase()
    }

    fn eat(&mut self, expected: char) -> bool {
        self.skip_ws();
        if self.input[self.pos..].starts_with(expected) {
            self.pos += expected.len_utf8();
            true
        } else {
            false
        }
    }

    fn number(&mut self) -> Result<u64, CatalogError> {
        self.skip_ws();
        let start = self.pos;
        while self.input[self.pos..].starts_with(|c: char| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.input[start..self.pos]
            .parse::<u64>()
            .map_err(|_| self.error("expected a number"))
    }

    /// `( n [, m] )` if present.
    fn params(&mut self) -> Result<Vec<u64>, CatalogError> {
        let mut out = Vec::new();
        if !self.eat('(') {
            return Ok(out);
        }
        loop {
            out.push(self.number()?);
            if self.eat(')') {
                return Ok(out);
            }
            if !self.eat(',') {
                return Err(self.error("expected ',' or ')'"));
            }
        }
    }

    fn parse_type(&mut self) -> Result<ColumnType, CatalogError> {
        let name = self.ident();
        if name.is_empty() {
            return Err(self.error("expected a type name"));
        }
        let ty = match name.as_str() {
            "BOOLEAN" | "BOOL" => self.no_params(ColumnType::Boolean)?,
            "TINYINT" => self.width_only(ColumnType::TinyInt)?,
            "SMALLINT" => self.width_only(ColumnType::SmallInt)?,
            "INT" | "INTEGER" => self.width_only(ColumnType::Int)?,
            "BIGINT" => self.width_only(ColumnType::BigInt)?,
            "LARGEINT" => self.width_only(ColumnType::LargeInt)?,
            "FLOAT" => self.no_params(ColumnType::Float)?,
            "DOUBLE" => self.no_params(ColumnType::Double)?,
            "DECIMAL" | "DECIMALV3" | "DECIMAL32" | "DECIMAL64" | "DECIMAL128" => {
                let params = self.params()?;
                let (precision, scale) = match params.as_slice() {
                    [] => (10, 0),
                    [p] => (*p, 0),
                    [p, s] => (*p, *s),
                    _ => return Err(self.error("DECIMAL takes at most two parameters")),
                };
                if precision == 0 || precision > u64::from(MAX_DECIMAL_PRECISION) {
                    return Err(self.error("DECIMAL precision must be between 1 and 38"));
                }
                if scale > precision {
                    return Err(self.error("DECIMAL scale must be between 0 and the precision"));
                }
                // Both bounded by 38 above.
                ColumnType::Decimal {
                    precision: precision as u8,
                    scale: scale as u8,
                }
            }
            "DATE" => self.no_params(ColumnType::Date)?,
            "DATETIME" => self.no_params(ColumnType::DateTime)?,
            "CHAR" => {
                let length = self.single_length(1)?;
                if length == 0 || length > u64::from(MAX_CHAR_BYTES) {
                    return Err(self.error("CHAR length must be between 1 and 255"));
                }
                ColumnType::Char {
                    length: length as u32,
                }
            }
            "VARCHAR" => {
                let length = self.single_length(1)?;
                if length == 0 || length > u64::from(MAX_VARCHAR_BYTES) {
                    return Err(self.error("VARCHAR length must be between 1 and 1048576"));
                }
                ColumnType::Varchar {
                    length: length as u32,
                }
            }
            "STRING" | "TEXT" => self.no_params(ColumnType::String)?,
            "JSON" => self.no_params(ColumnType::Json)?,
            "ARRAY" => {
                if !self.eat('<') {
                    return Err(self.error("ARRAY needs an element type: ARRAY<T>"));
                }
                let element = self.parse_type()?;
                if !self.eat('>') {
                    return Err(self.error("expected '>' after the ARRAY element type"));
                }
                ColumnType::Array(Box::new(element))
            }
            other => {
                return Err(CatalogError::UnsupportedType {
                    name: other.to_string(),
                })
            }
        };
        Ok(ty)
    }

    fn no_params(&mut self, ty: ColumnType) -> Result<ColumnType, CatalogError> {
        self.skip_ws();
        if self.input[self.pos..].starts_with('(') {
            return Err(self.error("this type takes no parameters"));
        }
        Ok(ty)
    }

    fn width_only(&mut self, ty: ColumnType) -> Result<ColumnType, CatalogError> {
        let params = self.params()?;
        if params.len() > 1 {
            return Err(self.error("integer types take at most a display width"));
        }
        Ok(ty)
    }

    fn single_length(&mut self, default: u64) -> Result<u64, CatalogError> {
        let params = self.params()?;
        match params.as_slice() {
            [] => Ok(default),
            [n] => Ok(*n),
            _ => Err(self.error("expected a single length")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_every_supported_type() {
        let cases = [
            ("boolean", "BOOLEAN", "boolean"),
            ("TINYINT", "TINYINT", "tinyint(4)"),
            ("smallint(6)", "SMALLINT", "smallint(6)"),
            ("int(11)", "INT", "int(11)"),
            ("integer", "INT", "int(11)"),
            ("BIGINT", "BIGINT", "bigint(20)"),
            ("largeint", "LARGEINT", "largeint(40)"),
            ("float", "FLOAT", "float"),
            ("double", "DOUBLE", "double"),
            ("decimal", "DECIMAL(10,0)", "decimal(10,0)"),
            ("DECIMAL( 18 , 4 )", "DECIMAL(18,4)", "decimal(18,4)"),
            ("date", "DATE", "date"),
            ("datetime", "DATETIME", "datetime"),
            ("char(10)", "CHAR(10)", "char(10)"),
            ("varchar(64)", "VARCHAR(64)", "varchar(64)"),
            ("string", "STRING", "varchar(65533)"),
            ("json", "JSON", "json"),
            ("array<int>", "ARRAY<INT>", "array<int(11)>"),
            (
                "ARRAY<ARRAY<VARCHAR(3)>>",
                "ARRAY<ARRAY<VARCHAR(3)>>",
                "array<array<varchar(3)>>",
            ),
        ];
        for (input, ddl, column_type) in cases {
            let ty = ColumnType::parse(input).unwrap();
            assert_eq!(ty.to_string(), ddl, "{input}");
            assert_eq!(ty.column_type(), column_type, "{input}");
            assert_eq!(ColumnType::parse(&ty.to_string()).unwrap(), ty);
        }
    }

    #[test]
    fn rejects_unsupported_and_malformed_types() {
        for bad in [
            "time",
            "uuid",
            "interval",
            "map<int,int>",
            "varbinary",
            "enum",
        ] {
            assert!(
                matches!(
                    ColumnType::parse(bad),
                    Err(CatalogError::UnsupportedType { .. })
                ),
                "{bad}"
            );
        }
        for bad in [
            "decimal(39,2)",
            "decimal(5,6)",
            "decimal(0)",
            "varchar(0)",
            "varchar(1048577)",
            "char(256)",
            "array<int",
            "int(",
            "",
            "int int",
            "date(3)",
            "ÿ",
        ] {
            assert!(ColumnType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_eligibility_follows_the_primary_key_rules() {
        assert!(ColumnType::BigInt.is_key_eligible());
        assert!(ColumnType::Varchar { length: 10 }.is_key_eligible());
        assert!(ColumnType::DateTime.is_key_eligible());
        assert!(!ColumnType::Decimal {
            precision: 10,
            scale: 2
        }
        .is_key_eligible());
        assert!(!ColumnType::Char { length: 3 }.is_key_eligible());
        assert!(!ColumnType::Double.is_key_eligible());
        assert!(!ColumnType::Json.is_key_eligible());
    }
}
