//! [`Secret`]: a value that must never be printed — passwords, tokens. Its `Debug` and
//! `Display` show `********`, so a secret held in a configuration, a connection string or an
//! error can reach no log line, error message or status answer (invariant 10). The only way to
//! the value is [`Secret::expose`], called where it is sent (an authentication exchange).
//!
//! A secret may also come from a file: the Docker and Kubernetes secrets convention, where
//! `STARWAL_X_FILE` names a mounted file holding what `STARWAL_X` would ([`secret_var`]). The
//! file's content is the value with one trailing newline removed (what `echo` and most editors
//! add); any other whitespace is part of the secret. Errors name the variables and the path,
//! never the content.
//!
//! [`redact_userinfo`] is for text that may hold a secret the user put where none belongs — a
//! `user:password@` in a URL or address variable — before a message quotes it back.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

/// A value that must never be printed: `Debug` and `Display` show `********`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (an auth exchange).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// Why a secret given by a pair of variables (`X` and `X_FILE`) cannot be read. Names the
/// variables and the path; never carries the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretSourceError {
    /// Both the value and the file are given: which one is meant is not for starwal to guess.
    #[error("{var} and {file_var} are both set: set only one")]
    Both {
        var: &'static str,
        file_var: &'static str,
    },
    /// A URL variable holds a password and the file variable gives one too.
    #[error("{url_var} holds a password and {file_var} is set: set only one (remove the password from the URL)")]
    InUrl {
        url_var: &'static str,
        file_var: &'static str,
    },
    /// The file cannot be read (missing, a directory, no permission, not UTF-8).
    #[error("{file_var}: cannot read `{}`: {source}", path.display())]
    Unreadable {
        file_var: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The secret given by `var` (its value) or `file_var` (a file holding it), or `None` when
/// neither is set. An empty `var` counts as unset, so a `.env` that leaves `STARWAL_X=` empty
/// does not conflict with `STARWAL_X_FILE`; a non-empty one is taken as written (a password
/// may hold spaces). Both set is an error naming both.
pub fn secret_var(
    var: &'static str,
    value: Option<String>,
    file_var: &'static str,
    file: Option<String>,
) -> Result<Option<Secret>, SecretSourceError> {
    let value = value.filter(|v| !v.is_empty());
    let file = file.filter(|path| !path.trim().is_empty());
    match (value, file) {
        (Some(_), Some(_)) => Err(SecretSourceError::Both { var, file_var }),
        (Some(value), None) => Ok(Some(Secret::new(value))),
        (None, Some(path)) => read_secret_file(file_var, Path::new(path.trim())).map(Some),
        (None, None) => Ok(None),
    }
}

/// Reads a secret file named by `file_var`: the content with one trailing `\n` (or `\r\n`)
/// removed. A file that is not UTF-8 is unreadable: a secret is sent as text.
pub fn read_secret_file(file_var: &'static str, path: &Path) -> Result<Secret, SecretSourceError> {
    let unreadable = |source| SecretSourceError::Unreadable {
        file_var,
        path: path.to_owned(),
        source,
    };
    let mut content = std::fs::read_to_string(path).map_err(unreadable)?;
    if content.ends_with('\n') {
        content.pop();
        if content.ends_with('\r') {
            content.pop();
        }
    }
    Ok(Secret::new(content))
}

/// `text` with any user information (`user:password@`) replaced by `********@`, for quoting a
/// value back in a message: `http://root:pw@fe:8030` becomes `http://********@fe:8030`,
/// `root:pw@fe:9030` becomes `********@fe:9030`. Everything from the first `://` (or the start)
/// to the *last* `@` goes, so a password holding `@`, `/`, `:` or `,` cannot leak in part; a
/// list of several URLs with credentials loses the ones in between, which is the safe side.
pub fn redact_userinfo(text: &str) -> Cow<'_, str> {
    let Some(at) = text.rfind('@') else {
        return Cow::Borrowed(text);
    };
    let start = text[..at].find("://").map_or(0, |scheme| scheme + 3);
    Cow::Owned(format!("{}********{}", &text[..start], &text[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh temporary directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "starwal-secret-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A file in a fresh temporary directory holding `content`.
    fn secret_file(name: &str, content: &[u8]) -> (TempDir, String) {
        let dir = TempDir::new();
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        (dir, path.to_str().unwrap().to_owned())
    }

    fn from_file(content: &[u8]) -> Result<Option<Secret>, SecretSourceError> {
        let (_dir, path) = secret_file("password", content);
        secret_var("STARWAL_X", None, "STARWAL_X_FILE", Some(path))
    }

    #[test]
    fn a_secret_file_loses_one_trailing_newline_only() {
        for (content, value) in [
            (&b"hunter2"[..], "hunter2"),
            (b"hunter2\n", "hunter2"),
            (b"hunter2\r\n", "hunter2"),
            (b"hunter2\n\n", "hunter2\n"),
            (b" hunter2 \n", " hunter2 "),
            (b"\thunter2\t", "\thunter2\t"),
            (b"", ""),
            (b"\n", ""),
        ] {
            let secret = from_file(content).unwrap().unwrap();
            assert_eq!(secret.expose(), value, "{content:?}");
        }
    }

    #[test]
    fn both_the_value_and_the_file_is_an_error_naming_both() {
        let (_dir, path) = secret_file("password", b"from-file");
        let err = secret_var(
            "STARWAL_X",
            Some("from-env".into()),
            "STARWAL_X_FILE",
            Some(path),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SecretSourceError::Both { .. }), "{text}");
        assert!(text.contains("STARWAL_X and STARWAL_X_FILE"), "{text}");
        assert!(
            !text.contains("from-env") && !text.contains("from-file"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_value_does_not_conflict_with_the_file() {
        let (_dir, path) = secret_file("password", b"from-file\n");
        let secret = secret_var(
            "STARWAL_X",
            Some(String::new()),
            "STARWAL_X_FILE",
            Some(path),
        )
        .unwrap()
        .unwrap();
        assert_eq!(secret.expose(), "from-file");
        let secret = secret_var(
            "STARWAL_X",
            Some("pw".into()),
            "STARWAL_X_FILE",
            Some("".into()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(secret.expose(), "pw");
        assert!(secret_var("STARWAL_X", None, "STARWAL_X_FILE", None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn an_unreadable_file_is_named_with_its_variable_and_path() {
        let dir = TempDir::new();
        let missing = dir.path().join("missing");
        let err = secret_var(
            "STARWAL_X",
            None,
            "STARWAL_X_FILE",
            Some(missing.to_str().unwrap().into()),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("STARWAL_X_FILE: cannot read `"), "{text}");
        assert!(text.contains(missing.to_str().unwrap()), "{text}");
        // A directory and a file that is not text are unreadable too, and say nothing of the
        // bytes they hold.
        let err = secret_var(
            "STARWAL_X",
            None,
            "STARWAL_X_FILE",
            Some(dir.path().to_str().unwrap().into()),
        )
        .unwrap_err();
        assert!(matches!(err, SecretSourceError::Unreadable { .. }), "{err}");
        let err = from_file(b"secret\xff\xfe").unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, SecretSourceError::Unreadable { .. }),
            "{text}"
        );
        assert!(
            !text.contains("secret\u{fffd}") && !text.contains("secret\\x"),
            "{text}"
        );
    }

    #[test]
    fn inv10_userinfo_never_survives_redaction() {
        for (text, redacted) in [
            ("http://root:pw@fe:8030", "http://********@fe:8030"),
            ("root:pw@fe:9030", "********@fe:9030"),
            (
                "https://u:p@ss/w,rd@fe:8443/x",
                "https://********@fe:8443/x",
            ),
            (
                "http://a:one@fe1:8030,http://b:two@fe2:8030",
                "http://********@fe2:8030",
            ),
            ("http://fe:8030", "http://fe:8030"),
            ("public.orders", "public.orders"),
            ("", ""),
        ] {
            assert_eq!(redact_userinfo(text), redacted, "{text}");
        }
    }
}
