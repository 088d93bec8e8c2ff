//! How an error reads: one line in which each cause appears once.
//!
//! The rule every starwal error type follows: **an error's `Display` is the whole message.** It
//! names its own level and includes its cause's text (`{source}` in a thiserror attribute), so
//! `to_string()` is complete wherever it is used — the health detail, `status`, `check`, a log
//! line. `#[source]` stays for code that inspects causes (`is_transient`, downcasts), never for
//! printing: nothing formats an error with anyhow's `{:#}`, which appends every cause again and
//! made one load error read three times in one line (issue 13).
//!
//! [`chain`] is for the two kinds of error that do not follow the rule by themselves:
//! - foreign errors whose `Display` hides or repeats their cause: tokio-postgres prints
//!   "db error" and keeps the server's message in its source, mysql_async prints
//!   "Input/output error: " once per level. Our attributes format such a source with
//!   `chain(source)` instead of `{source}`; a server error then reads as its message, DETAIL
//!   and HINT, once.
//! - an `anyhow::Error` at the edges (`cli.rs`, the engine's health detail), whose context
//!   layers show only themselves.
//!
//! It walks the causes and appends one only when its text is not in the line yet, so applied to
//! an error that follows the rule it prints exactly that error's `Display`. No text is added that
//! an error does not print itself, so no secret can enter here (invariant 10).

use std::error::Error;
use std::fmt;

/// `error` and its causes as one line, each cause once: see the module docs.
pub fn chain<'a>(error: &'a (dyn Error + 'static)) -> Chain<'a> {
    Chain(error)
}

/// Displays an error and its causes, each once ([`chain`]).
#[derive(Clone, Copy)]
pub struct Chain<'a>(&'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        let mut next = Some(self.0);
        while let Some(error) = next {
            if let Some(text) = own_text(error) {
                // Text already in the line is a cause the level above printed itself.
                if !text.is_empty() && !line.contains(text.as_str()) {
                    if !line.is_empty() {
                        line.push_str(": ");
                    }
                    line.push_str(&text);
                }
            }
            next = error.source();
        }
        f.write_str(&line)
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What one level of a chain says, or `None` for a foreign wrapper whose cause says it all.
fn own_text(error: &(dyn Error + 'static)) -> Option<String> {
    if let Some(err) = error.downcast_ref::<tokio_postgres::Error>() {
        // "db error": the server's error below is the message.
        if err.as_db_error().is_some() {
            return None;
        }
    }
    if let Some(db) = error.downcast_ref::<tokio_postgres::error::DbError>() {
        return Some(server_error_text(db.message(), db.detail(), db.hint()));
    }
    // mysql_async labels each level ("Server error: `…'", "Input/output error: …") and then
    // prints its cause: the innermost error is the message.
    if (error.is::<mysql_async::Error>() || error.is::<mysql_async::IoError>())
        && error.source().is_some()
    {
        return None;
    }
    Some(error.to_string())
}

/// A Postgres server error as one line: the message, then DETAIL and HINT when the server sent
/// them (tokio-postgres puts them on lines of their own).
pub fn server_error_text(message: &str, detail: Option<&str>, hint: Option<&str>) -> String {
    let mut text = message.to_owned();
    if let Some(detail) = detail {
        text.push_str("; DETAIL: ");
        text.push_str(detail);
    }
    if let Some(hint) = hint {
        text.push_str("; HINT: ");
        text.push_str(hint);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A level that prints only itself (as anyhow's context does).
    #[derive(Debug, thiserror::Error)]
    #[error("starting the agent")]
    struct Context(#[source] Outer);

    /// A level that prints its cause too (the rule), and keeps it as its source.
    #[derive(Debug, thiserror::Error)]
    #[error("loading `orders`: {source}")]
    struct Outer {
        #[source]
        source: Inner,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("StarRocks at http://fe:8030 answered HTTP 503: busy")]
    struct Inner;

    #[test]
    fn issue13_each_cause_reads_once() {
        let outer = Outer { source: Inner };
        assert_eq!(
            chain(&outer).to_string(),
            "loading `orders`: StarRocks at http://fe:8030 answered HTTP 503: busy"
        );
        // anyhow's `{:#}` repeats the cause: what the health detail used to show.
        let repeated = format!("{:#}", anyhow::Error::from(Outer { source: Inner }));
        assert_eq!(
            repeated.matches("answered HTTP 503").count(),
            2,
            "{repeated}"
        );

        let context = anyhow::Error::from(Context(Outer { source: Inner }));
        assert_eq!(
            chain(&*context).to_string(),
            "starting the agent: loading `orders`: StarRocks at http://fe:8030 answered HTTP 503: busy"
        );
        let with_context = anyhow::Error::from(Outer { source: Inner }).context("starwal run");
        assert_eq!(
            chain(&*with_context).to_string(),
            "starwal run: loading `orders`: StarRocks at http://fe:8030 answered HTTP 503: busy"
        );
    }

    #[test]
    fn issue13_mysql_levels_read_once() {
        let io = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "failed to lookup address information",
        );
        let error = mysql_async::Error::Io(mysql_async::IoError::Io(io));
        assert_eq!(
            error.to_string().matches("Input/output error").count(),
            2,
            "mysql_async's own text: {error}"
        );
        assert_eq!(
            chain(&error).to_string(),
            "failed to lookup address information"
        );
    }

    #[test]
    fn server_errors_read_as_one_line() {
        assert_eq!(
            server_error_text(
                "permission denied for database app",
                Some("d"),
                Some("GRANT CREATE ON DATABASE app TO repl")
            ),
            "permission denied for database app; DETAIL: d; HINT: GRANT CREATE ON DATABASE app TO repl"
        );
        assert_eq!(server_error_text("m", None, None), "m");
    }
}
