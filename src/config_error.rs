//! [`ConfigError`]: what is wrong with a `STARWAL_*` variable, for every part of the
//! configuration (`config.rs` and the StarRocks settings in `sink/starrocks/config.rs`).
//!
//! A leaf module of its own so that both can name it without importing each other: `config.rs`
//! reads the StarRocks settings, and they report their problems in this same type. Every variant
//! names the variable and the form it expects; none carries a secret (invariant 10). The CLI
//! exits with code 2 on any of them.

use crate::postgres::catalog::TablePatternError;
use crate::postgres::conninfo::ConnInfoError;
use crate::secret::SecretSourceError;

/// A configuration problem: names the variable and the form it expects. A value quoted back
/// has its user information redacted (`http://********@fe:8030`), and `Debug` prints the same
/// text as `Display`, so a password put into a URL variable is in neither (invariant 10).
#[derive(thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set: expected {expected}")]
    Missing {
        var: &'static str,
        expected: &'static str,
    },
    #[error(
        "{var} is invalid: `{}`: expected {expected}",
        crate::secret::redact_userinfo(value)
    )]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("STARWAL_TABLES is invalid: {0}")]
    Tables(#[source] TablePatternError),
    #[error("STARWAL_PG_URL is invalid: {0}")]
    PgUrl(#[source] ConnInfoError),
    #[error("STARWAL_PG_PRIMARY_URL is invalid: {0}")]
    PgPrimaryUrl(#[source] ConnInfoError),
    /// A secret given twice (`X` and `X_FILE`) or in a file that cannot be read.
    #[error("{0}")]
    Secret(#[source] SecretSourceError),
    #[error("could not read the environment: {0}")]
    Environment(#[source] envy::Error),
    #[error("could not read the .env file: {0}")]
    DotEnv(#[source] dotenvy::Error),
}

impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv10_a_quoted_value_shows_no_userinfo() {
        let err = ConfigError::Invalid {
            var: "STARWAL_STARROCKS_URL",
            value: "http://root:hunter2@fe:8030".into(),
            expected: "FE HTTP URLs",
        };
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("`http://********@fe:8030`"), "{text}");
        }
    }
}
