//! The `columns` header: source field names in order plus `target = expr` derivations
//! (reference §2 "columns", "Upsert/delete on PK tables (`__op`)").
//!
//! Owns the header's syntax only: comma-separated items, back-quoted names, and the expressions
//! the sim evaluates — a column reference, a quoted string or a number. `__op='delete'`,
//! `__op=1` and `__op=op_tmp` are ordinary items here; the planner gives them meaning. Anything
//! else (function calls, arithmetic) is reported as unsupported rather than guessed at.

/// One item of the `columns` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ColumnItem {
    /// A source field, positional for CSV and a key name for JSON.
    Field(String),
    /// `target = expr`.
    Derived {
        /// Target column (or `__op`).
        target: String,
        /// The expression.
        expr: Expr,
    },
}

/// The expressions the sim understands on the right of `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// Another item's source field.
    Column(String),
    /// A quoted string literal.
    Text(String),
    /// A numeric literal, as written.
    Number(String),
}

/// Parses the header into items; the error is the message the load fails with.
pub(crate) fn parse_columns(header: &str) -> Result<Vec<ColumnItem>, String> {
    let mut items = Vec::new();
    for raw in split_top_level(header)? {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(format!("Invalid columns header: empty item in '{header}'"));
        }
        match find_assignment(raw) {
            Some(eq) => {
                let target = unquote_name(raw[..eq].trim())?;
                let expr = parse_expr(raw[eq + 1..].trim())?;
                items.push(ColumnItem::Derived { target, expr });
            }
            None => items.push(ColumnItem::Field(unquote_name(raw)?)),
        }
    }
    Ok(items)
}

/// Splits on commas outside quotes, back-quotes and parentheses.
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' | '`' => quote = Some(c),
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            },
        }
    }
    if quote.is_some() || depth != 0 {
        return Err(format!(
            "Invalid columns header: unbalanced quotes or parentheses in '{s}'"
        ));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// Position of a top-level `=` (not inside quotes).
fn find_assignment(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '\'' | '"' | '`') => quote = Some(c),
            None if c == '=' => return Some(i),
            None => {}
        }
    }
    None
}

fn unquote_name(s: &str) -> Result<String, String> {
    let name = s
        .strip_prefix('`')
        .and_then(|r| r.strip_suffix('`'))
        .unwrap_or(s);
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '-');
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!("Invalid column name '{s}' in columns header"))
    }
}

fn parse_expr(s: &str) -> Result<Expr, String> {
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            if s.len() >= 2 {
                return Ok(Expr::Text(inner.to_string()));
            }
        }
    }
    let numeric = !s.is_empty()
        && s.chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && i == 0))
        && s.chars().any(|c| c.is_ascii_digit());
    if numeric {
        return Ok(Expr::Number(s.to_string()));
    }
    if let Ok(name) = unquote_name(s) {
        return Ok(Expr::Column(name));
    }
    Err(format!(
        "starrocks-sim: unsupported expression '{s}' in columns header (only column references and literals)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_constants_and_references() {
        let items = parse_columns("id, `name`,score,op_tmp, __op = op_tmp").unwrap();
        assert_eq!(
            items,
            vec![
                ColumnItem::Field("id".into()),
                ColumnItem::Field("name".into()),
                ColumnItem::Field("score".into()),
                ColumnItem::Field("op_tmp".into()),
                ColumnItem::Derived {
                    target: "__op".into(),
                    expr: Expr::Column("op_tmp".into())
                },
            ]
        );
        assert_eq!(
            parse_columns("__op='delete'").unwrap(),
            vec![ColumnItem::Derived {
                target: "__op".into(),
                expr: Expr::Text("delete".into())
            }]
        );
        assert_eq!(
            parse_columns("id,__op=1").unwrap()[1],
            ColumnItem::Derived {
                target: "__op".into(),
                expr: Expr::Number("1".into())
            }
        );
        assert_eq!(
            parse_columns("a, c = 'x,y'").unwrap()[1],
            ColumnItem::Derived {
                target: "c".into(),
                expr: Expr::Text("x,y".into())
            }
        );
    }

    #[test]
    fn rejects_what_it_cannot_evaluate() {
        assert!(parse_columns("a, b = upper(a)").is_err());
        assert!(parse_columns("a, b = a + 1").is_err());
        assert!(parse_columns("a,,b").is_err());
        assert!(parse_columns("a, 'b").is_err());
        assert!(parse_columns("a b").is_err());
    }
}
