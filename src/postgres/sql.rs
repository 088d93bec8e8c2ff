//! Quoting for SQL text sent to Postgres: identifiers and string literals, for the statements
//! that cannot take parameters (DDL, replication commands, `SET TRANSACTION SNAPSHOT`, row
//! comparisons built from stored key text). Parameters (`$1`) are preferred wherever Postgres
//! accepts them; this is the one place that quotes when it does not.

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'value'` with embedded quotes doubled (standard_conforming_strings is always on in 14+, so
/// a backslash is an ordinary character).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_quotes_are_doubled() {
        assert_eq!(quote_ident("Weird\"Name"), "\"Weird\"\"Name\"");
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("back\\slash"), "'back\\slash'");
    }
}
