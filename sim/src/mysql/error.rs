//! Errors the MySQL side reports to clients as ERR packets: MySQL error code, SQLSTATE and a
//! StarRocks-style message.
//!
//! Owns the wording and codes: syntax errors are 1064 `Getting syntax error at line L, column C.
//! Detail message: ...`, analysis failures 1064 `Getting analyzing error. Detail message: ...`,
//! DDL failures 1064 with StarRocks' `DdlException` text as is, plus the MySQL-compatible codes
//! StarRocks keeps (1045 access denied, 1046 no database, 1049 unknown database, 1146 unknown
//! table, 1050/1007 exists, 1054/1060 columns). It also maps every [`CatalogError`] onto one of
//! these, so a catalog rule surfaces with the right code. It does not write packets.

use crate::catalog::CatalogError;

use super::lexer::line_column;

/// One error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqlError {
    /// MySQL error number.
    pub(crate) code: u16,
    /// Five-character SQLSTATE.
    pub(crate) state: &'static str,
    /// Message text.
    pub(crate) message: String,
}

/// Result of executing part of a statement.
pub(crate) type SqlResult<T> = Result<T, SqlError>;

impl SqlError {
    pub(crate) fn new(code: u16, state: &'static str, message: impl Into<String>) -> SqlError {
        SqlError {
            code,
            state,
            message: message.into(),
        }
    }

    /// 1064 syntax error at a byte position of `sql`.
    pub(crate) fn syntax(sql: &str, pos: usize, detail: &str) -> SqlError {
        let (line, column) = line_column(sql, pos);
        SqlError::new(
            1064,
            "HY000",
            format!(
                "Getting syntax error at line {line}, column {column}. Detail message: {detail}."
            ),
        )
    }

    /// 1064 analysis error (the statement parsed but is not valid).
    pub(crate) fn analysis(detail: impl AsRef<str>) -> SqlError {
        let detail = detail.as_ref();
        let dot = if detail.ends_with('.') { "" } else { "." };
        SqlError::new(
            1064,
            "HY000",
            format!("Getting analyzing error. Detail message: {detail}{dot}"),
        )
    }

    /// 1064 with a DDL message passed through unchanged (StarRocks `DdlException`).
    pub(crate) fn ddl(message: impl Into<String>) -> SqlError {
        SqlError::new(1064, "HY000", message)
    }

    /// A statement or clause the sim does not model.
    pub(crate) fn unsupported(what: impl AsRef<str>) -> SqlError {
        SqlError::analysis(format!(
            "{} is not supported by starrocks-sim (a test stand-in)",
            what.as_ref()
        ))
    }

    /// 1045 wrong user or password.
    pub(crate) fn access_denied(user: &str, host: &str, using_password: bool) -> SqlError {
        let using = if using_password { "YES" } else { "NO" };
        SqlError::new(
            1045,
            "28000",
            format!("Access denied for user '{user}'@'{host}' (using password: {using})"),
        )
    }

    /// 1046 no current database.
    pub(crate) fn no_database() -> SqlError {
        SqlError::new(1046, "3D000", "No database selected")
    }

    /// 1049 unknown database.
    pub(crate) fn unknown_database(db: &str) -> SqlError {
        SqlError::new(1049, "42000", format!("Unknown database '{db}'"))
    }

    /// 1146 unknown table.
    pub(crate) fn unknown_table(db: &str, table: &str) -> SqlError {
        SqlError::new(1146, "42S02", format!("Unknown table '{db}.{table}'"))
    }

    /// A column a query names that the relation does not have.
    pub(crate) fn unknown_column(column: &str) -> SqlError {
        SqlError::analysis(format!("Column '{column}' cannot be resolved"))
    }
}

impl From<CatalogError> for SqlError {
    fn from(e: CatalogError) -> SqlError {
        let message = e.to_string();
        match e {
            CatalogError::UnknownDatabase { database } => SqlError::unknown_database(&database),
            CatalogError::UnknownTable { database, table } => {
                SqlError::unknown_table(&database, &table)
            }
            CatalogError::DatabaseExists { .. } => SqlError::new(1007, "HY000", message),
            CatalogError::TableExists { .. } => SqlError::new(1050, "42S01", message),
            CatalogError::UnknownColumn { .. } => SqlError::new(1054, "42S22", message),
            CatalogError::DuplicateColumn { .. } => SqlError::new(1060, "42S21", message),
            CatalogError::KeyColumnDrop { .. } => {
                SqlError::ddl("Can not drop key column in primary data model table")
            }
            CatalogError::InvalidTable { reason, .. } => SqlError::analysis(reason),
            CatalogError::InvalidDefault { .. }
            | CatalogError::InvalidType { .. }
            | CatalogError::UnsupportedType { .. } => SqlError::analysis(message),
            CatalogError::MissingKeyColumn { .. }
            | CatalogError::NullInNotNull { .. }
            | CatalogError::InvalidValue { .. }
            | CatalogError::PrimaryKeyTooLong { .. }
            | CatalogError::ColumnTypeChange { .. } => SqlError::ddl(message),
        }
    }
}
