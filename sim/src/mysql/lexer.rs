//! SQL tokenizer for the MySQL side: turns one COM_QUERY text into tokens with byte positions.
//!
//! Owns the lexical rules StarRocks shares with MySQL that clients rely on: case-insensitive
//! keywords (kept as identifiers; the parser compares them), backtick-quoted identifiers with
//! doubled backticks, single- and double-quoted strings with doubled quotes and backslash escapes,
//! numbers, `@@[session.|global.]var` and `@var`, and `--`/`#`/`/* */` comments (MySQL's
//! `/*! ... */` executable comments are skipped like ordinary ones). It never panics: anything it
//! cannot read becomes a [`LexError`] at a position the caller turns into a syntax error.

/// One token kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A bare word: keyword or unquoted identifier, as written.
    Word(String),
    /// A backtick-quoted identifier, unescaped.
    Quoted(String),
    /// A string literal, unescaped.
    Str(String),
    /// A numeric literal as written (`42`, `1.5`, `1e3`).
    Num(String),
    /// Punctuation or an operator.
    Sym(&'static str),
    /// `@@name` (scope prefix removed, lower-cased).
    SysVar(String),
    /// `@name`.
    UserVar(String),
}

/// A token with its byte range in the statement text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Where and why tokenizing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub(crate) pos: usize,
    pub(crate) message: String,
}

const SYMBOLS: [&str; 17] = [
    "<=>", "<>", "!=", "<=", ">=", "(", ")", ",", ";", ".", "=", "<", ">", "*", "+", "-", "/",
];

/// Splits `sql` into tokens.
pub(crate) fn tokenize(sql: &str) -> Result<Vec<Token>, LexError> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let b = bytes[pos];
        if b.is_ascii_whitespace() {
            pos += 1;
            continue;
        }
        // Comments.
        if b == b'#'
            || (sql[pos..].starts_with("--")
                && bytes.get(pos + 2).is_none_or(|c| c.is_ascii_whitespace()))
        {
            while pos < bytes.len() && bytes[pos] != b'\n' {
                pos += 1;
            }
            continue;
        }
        if sql[pos..].starts_with("/*") {
            match sql[pos + 2..].find("*/") {
                Some(end) => {
                    pos += 2 + end + 2;
                    continue;
                }
                None => {
                    return Err(LexError {
                        pos,
                        message: "unterminated comment".to_string(),
                    })
                }
            }
        }
        let start = pos;
        let tok = match b {
            b'\'' | b'"' => {
                let (text, next) = quoted(sql, pos, b, true)?;
                pos = next;
                Tok::Str(text)
            }
            b'`' => {
                let (text, next) = quoted(sql, pos, b'`', false)?;
                pos = next;
                if text.is_empty() {
                    return Err(LexError {
                        pos: start,
                        message: "empty quoted identifier".to_string(),
                    });
                }
                Tok::Quoted(text)
            }
            b'@' => {
                let system = bytes.get(pos + 1) == Some(&b'@');
                pos += if system { 2 } else { 1 };
                let name_start = pos;
                while pos < bytes.len() && is_word_byte(bytes[pos]) {
                    pos += 1;
                }
                let mut name = sql[name_start..pos].to_string();
                if system {
                    // `@@session.x`, `@@global.x`, `@@local.x`.
                    let lower = name.to_ascii_lowercase();
                    if matches!(lower.as_str(), "session" | "global" | "local")
                        && bytes.get(pos) == Some(&b'.')
                    {
                        pos += 1;
                        let var_start = pos;
                        while pos < bytes.len() && is_word_byte(bytes[pos]) {
                            pos += 1;
                        }
                        name = sql[var_start..pos].to_string();
                    }
                }
                if name.is_empty() {
                    return Err(LexError {
                        pos: start,
                        message: "expected a variable name after '@'".to_string(),
                    });
                }
                if system {
                    Tok::SysVar(name.to_ascii_lowercase())
                } else {
                    Tok::UserVar(name)
                }
            }
            b'0'..=b'9' => {
                let (tok, next) = number_or_word(sql, pos);
                pos = next;
                tok
            }
            b'.' if bytes.get(pos + 1).is_some_and(u8::is_ascii_digit)
                && !matches!(
                    out.last(),
                    Some(Token {
                        tok: Tok::Word(_) | Tok::Quoted(_),
                        ..
                    })
                ) =>
            {
                let (tok, next) = number_or_word(sql, pos);
                pos = next;
                tok
            }
            _ if is_word_byte(b) => {
                while pos < bytes.len() && is_word_byte(bytes[pos]) {
                    pos += 1;
                }
                Tok::Word(sql[start..pos].to_string())
            }
            _ => {
                let Some(sym) = SYMBOLS.iter().find(|s| sql[pos..].starts_with(**s)) else {
                    let shown = sql[pos..].chars().next().unwrap_or('?');
                    return Err(LexError {
                        pos,
                        message: format!("Unexpected input '{shown}'"),
                    });
                };
                pos += sym.len();
                Tok::Sym(sym)
            }
        };
        out.push(Token {
            tok,
            start,
            end: pos,
        });
    }
    Ok(out)
}

/// Identifier bytes: ASCII alphanumerics, `_`, `$` and any non-ASCII byte (UTF-8 letters).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// A number (`12`, `1.5`, `.5`, `1e-3`) or, when digits run into letters, a word (`1abc`).
fn number_or_word(sql: &str, start: usize) -> (Tok, usize) {
    let bytes = sql.as_bytes();
    let mut pos = start;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_end = pos;
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
    }
    if pos < bytes.len() && (bytes[pos] == b'e' || bytes[pos] == b'E') {
        let mut exp = pos + 1;
        if exp < bytes.len() && (bytes[exp] == b'+' || bytes[exp] == b'-') {
            exp += 1;
        }
        if exp < bytes.len() && bytes[exp].is_ascii_digit() {
            while exp < bytes.len() && bytes[exp].is_ascii_digit() {
                exp += 1;
            }
            pos = exp;
        }
    }
    if pos == int_end && pos < bytes.len() && is_word_byte(bytes[pos]) {
        // `1abc` is an identifier in MySQL.
        while pos < bytes.len() && is_word_byte(bytes[pos]) {
            pos += 1;
        }
        return (Tok::Word(sql[start..pos].to_string()), pos);
    }
    (Tok::Num(sql[start..pos].to_string()), pos)
}

/// Reads a quoted run starting at `start` (the opening quote). Doubling the quote escapes it;
/// with `backslash`, `\x` escapes as in MySQL strings.
fn quoted(
    sql: &str,
    start: usize,
    quote: u8,
    backslash: bool,
) -> Result<(String, usize), LexError> {
    let bytes = sql.as_bytes();
    let mut out = String::new();
    let mut pos = start + 1;
    let mut run_start = pos;
    while pos < bytes.len() {
        let b = bytes[pos];
        if b == quote {
            out.push_str(&sql[run_start..pos]);
            if bytes.get(pos + 1) == Some(&quote) {
                out.push(quote as char);
                pos += 2;
                run_start = pos;
                continue;
            }
            return Ok((out, pos + 1));
        }
        if backslash && b == b'\\' {
            out.push_str(&sql[run_start..pos]);
            let Some(next) = sql[pos + 1..].chars().next() else {
                break;
            };
            match next {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                'b' => out.push('\u{8}'),
                'Z' => out.push('\u{1a}'),
                // MySQL keeps the backslash for LIKE wildcards.
                '%' | '_' => {
                    out.push('\\');
                    out.push(next);
                }
                other => out.push(other),
            }
            pos += 1 + next.len_utf8();
            run_start = pos;
            continue;
        }
        pos += 1;
    }
    Err(LexError {
        pos: start,
        message: "unterminated quoted text".to_string(),
    })
}

/// 1-based line and 0-based column (in characters) of a byte position, for error messages.
pub(crate) fn line_column(sql: &str, pos: usize) -> (usize, usize) {
    let mut end = pos.min(sql.len());
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    let before = &sql[..end];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, rest)| rest)
        .chars()
        .count();
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(sql: &str) -> Vec<Tok> {
        tokenize(sql).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn words_strings_numbers_and_symbols() {
        assert_eq!(
            toks("SELECT `a``b`, 'it''s', \"x\\\"y\", 1.5, 2e3 FROM db.t WHERE x<>1;"),
            vec![
                Tok::Word("SELECT".into()),
                Tok::Quoted("a`b".into()),
                Tok::Sym(","),
                Tok::Str("it's".into()),
                Tok::Sym(","),
                Tok::Str("x\"y".into()),
                Tok::Sym(","),
                Tok::Num("1.5".into()),
                Tok::Sym(","),
                Tok::Num("2e3".into()),
                Tok::Word("FROM".into()),
                Tok::Word("db".into()),
                Tok::Sym("."),
                Tok::Word("t".into()),
                Tok::Word("WHERE".into()),
                Tok::Word("x".into()),
                Tok::Sym("<>"),
                Tok::Num("1".into()),
                Tok::Sym(";"),
            ]
        );
    }

    #[test]
    fn variables_and_comments() {
        assert_eq!(
            toks("select @@session.Max_Allowed_Packet, @a -- c\n /* x */ # y"),
            vec![
                Tok::Word("select".into()),
                Tok::SysVar("max_allowed_packet".into()),
                Tok::Sym(","),
                Tok::UserVar("a".into()),
            ]
        );
    }

    #[test]
    fn errors_do_not_panic() {
        for bad in ["'abc", "`x", "/* x", "select ~", "@", "``", "'\\", "é'"] {
            assert!(tokenize(bad).is_err(), "{bad}");
        }
        assert_eq!(line_column("a\nbc", 3), (2, 1));
        assert_eq!(line_column("é", 1), (1, 0));
    }
}
