//! [`ConfigError`]: what is wrong with a `STARWAL_*` variable, for every part of the
//! configuration (`config.rs` and the StarRocks settings in `sink/starrocks/config.rs`).
//!
//! A leaf module of its own so that both can name it without importing each other: `config.rs`
//! reads the StarRocks settings, and they report their problems in this same type. Every variant
//! names the variable and the form it expects; none carries a secret (invariant 10). The CLI
//! exits with code 2 on any of them.

use crate::postgres::conninfo::ConnInfoError;

/// A configuration problem: names the variable and the form it expects.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set: expected {expected}")]
    Missing {
        var: &'static str,
        expected: &'static str,
    },
    #[error("{var} is invalid: `{value}`: expected {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("STARWAL_PG_URL is invalid: {0}")]
    PgUrl(#[source] ConnInfoError),
    #[error("could not read the environment: {0}")]
    Environment(#[source] envy::Error),
    #[error("could not read the .env file: {0}")]
    DotEnv(#[source] dotenvy::Error),
}
