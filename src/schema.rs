//! The table schema handed from the source to the sink: a Postgres table's name, columns, types
//! and key, as the sink needs them to create or validate its target table and to encode rows.
//!
//! Built from the catalog at setup and from pgoutput Relation messages while streaming; it
//! carries no Postgres connection and no StarRocks knowledge, so both sides can share it.

use std::fmt;

use crate::lsn::Oid;

/// One column of a source table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSchema {
    pub name: String,
    /// The Postgres type OID (`pg_attribute.atttypid`).
    pub type_oid: Oid,
    /// `atttypmod`: length for char/varchar (+4), precision/scale for numeric, -1 when none.
    pub type_modifier: i32,
    /// `format_type()` output, e.g. `numeric(10,2)`, `character varying(64)`, `mood`; used in
    /// messages and to recognise user-defined types.
    pub type_name: String,
    pub nullable: bool,
    /// Position in the primary key (or the replica identity index when there is no primary
    /// key), from 0; `None` for value columns.
    pub key_position: Option<u16>,
}

impl ColumnSchema {
    /// Whether the column is part of the key.
    pub fn is_key(&self) -> bool {
        self.key_position.is_some()
    }
}

/// A source table: `schema.name` and its columns in `attnum` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnSchema>,
}

impl TableSchema {
    /// The key columns in key order.
    pub fn key_columns(&self) -> Vec<&ColumnSchema> {
        let mut keys: Vec<&ColumnSchema> = self.columns.iter().filter(|c| c.is_key()).collect();
        keys.sort_by_key(|c| c.key_position);
        keys
    }
}

impl fmt::Display for TableSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Numeric precision and scale from a `numeric` typmod; `None` for unconstrained `numeric`.
pub fn numeric_precision_scale(type_modifier: i32) -> Option<(u32, u32)> {
    if type_modifier < 4 {
        return None;
    }
    let packed = (type_modifier - 4) as u32;
    Some(((packed >> 16) & 0xFFFF, packed & 0x7FF))
}

/// Declared length of `char(n)`/`varchar(n)` from the typmod; `None` when unbounded.
pub fn character_length(type_modifier: i32) -> Option<u32> {
    (type_modifier >= 4).then(|| (type_modifier - 4) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typmods_decode_like_format_type() {
        // numeric(10,2) has typmod ((10 << 16) | 2) + 4
        assert_eq!(numeric_precision_scale((10 << 16 | 2) + 4), Some((10, 2)));
        assert_eq!(numeric_precision_scale(-1), None);
        assert_eq!(character_length(64 + 4), Some(64));
        assert_eq!(character_length(-1), None);
    }
}
