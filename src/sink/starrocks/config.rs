//! StarRocks settings (`STARWAL_STARROCKS_*`, `STARWAL_DELETE_MODE`, `STARWAL_CREATE_TABLES`,
//! `STARWAL_NUMERIC_UNCONSTRAINED`): read raw, validated once into [`StarRocksConfig`]. Errors
//! name the variable and the form. The password comes from `STARWAL_STARROCKS_PASSWORD` or a
//! mounted secret file named by `STARWAL_STARROCKS_PASSWORD_FILE` (not both; `secret.rs`).

use std::time::Duration;

use serde::Deserialize;

use super::mapping::{TypeMapping, UnconstrainedNumeric};
use crate::config_error::ConfigError;
use crate::secret::{secret_var, Secret};

/// The user when `STARWAL_STARROCKS_USER` is unset: StarRocks' built-in administrator.
pub const DEFAULT_USER: &str = "root";
/// The FE MySQL-protocol port used when `STARWAL_STARROCKS_MYSQL` is unset.
pub const DEFAULT_MYSQL_PORT: u16 = 9030;
/// Connecting to an FE or BE should take milliseconds; ten seconds means it is down.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// StarRocks' own default load timeout (`stream_load_default_timeout_second`); the HTTP timeout
/// adds a margin so StarRocks, not curl, decides when a load has taken too long.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// Unconstrained `numeric` becomes DECIMAL(38,9) unless `STARWAL_NUMERIC_UNCONSTRAINED` says
/// otherwise: a number StarRocks computes with, holding money and measurements exactly; a value
/// it cannot hold stops the table loudly, and the user can then choose `varchar`.
pub const DEFAULT_NUMERIC_UNCONSTRAINED: UnconstrainedNumeric = UnconstrainedNumeric::Decimal;

/// What a source DELETE does to the target row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteMode {
    /// Delete the row (`__op` = 1).
    Hard,
    /// Keep the row, set the deleted flag audit column.
    Soft,
}

/// Transport compression of Stream Load bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// `lz4_frame` (JSON needs StarRocks 3.2.7+).
    Lz4,
    Gzip,
}

impl Compression {
    /// The `compression` header value, if any.
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Lz4 => Some("lz4_frame"),
            Compression::Gzip => Some("gzip"),
        }
    }
}

/// Validated StarRocks settings.
#[derive(Debug, Clone)]
pub struct StarRocksConfig {
    /// `STARWAL_STARROCKS_URL`: FE HTTP base URLs, tried in order on failure.
    pub fe_urls: Vec<String>,
    /// `STARWAL_STARROCKS_MYSQL`: FE MySQL-protocol `host:port`.
    pub mysql_addr: String,
    /// `STARWAL_STARROCKS_USER` (default [`DEFAULT_USER`]).
    pub user: String,
    /// `STARWAL_STARROCKS_PASSWORD` or the file `STARWAL_STARROCKS_PASSWORD_FILE` names
    /// (default empty).
    pub password: Secret,
    /// `STARWAL_STARROCKS_DATABASE`: where the target tables live.
    pub database: String,
    /// `STARWAL_DELETE_MODE` (default hard).
    pub delete_mode: DeleteMode,
    /// `STARWAL_STARROCKS_COMPRESSION` (default none).
    pub compression: Compression,
    /// `STARWAL_CREATE_TABLES` (default true): create the database and missing tables.
    pub create_tables: bool,
    /// `STARWAL_NUMERIC_UNCONSTRAINED` (default [`DEFAULT_NUMERIC_UNCONSTRAINED`]): the target
    /// types the user chooses; setup and every encoder take them from here, so the two agree.
    pub type_mapping: TypeMapping,
    pub connect_timeout: Duration,
    pub load_timeout: Duration,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawStarRocksConfig {
    starrocks_url: Option<String>,
    starrocks_mysql: Option<String>,
    starrocks_user: Option<String>,
    starrocks_password: Option<String>,
    starrocks_password_file: Option<String>,
    starrocks_database: Option<String>,
    delete_mode: Option<String>,
    starrocks_compression: Option<String>,
    create_tables: Option<String>,
    starrocks_load_timeout_s: Option<String>,
    numeric_unconstrained: Option<String>,
}

fn invalid(var: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.to_owned(),
        expected,
    }
}

fn trimmed(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl RawStarRocksConfig {
    /// Whether any StarRocks variable is set at all (commands like `tail` do without).
    pub(crate) fn is_configured(&self) -> bool {
        trimmed(&self.starrocks_url).is_some()
    }

    pub(crate) fn validate(self) -> Result<StarRocksConfig, ConfigError> {
        const URL_FORM: &str = "comma-separated FE HTTP URLs without credentials (they go in STARWAL_STARROCKS_USER and STARWAL_STARROCKS_PASSWORD), e.g. http://fe1:8030,http://fe2:8030";
        let urls = trimmed(&self.starrocks_url).ok_or(ConfigError::Missing {
            var: "STARWAL_STARROCKS_URL",
            expected: URL_FORM,
        })?;
        let mut fe_urls = Vec::new();
        for url in urls.split(',').map(str::trim) {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .filter(|rest| !rest.is_empty() && !rest.contains('@'))
                .ok_or_else(|| invalid("STARWAL_STARROCKS_URL", urls, URL_FORM))?;
            if rest.trim_end_matches('/').contains('/') {
                return Err(invalid("STARWAL_STARROCKS_URL", urls, URL_FORM));
            }
            fe_urls.push(url.trim_end_matches('/').to_owned());
        }
        let mysql_addr = match trimmed(&self.starrocks_mysql) {
            Some(addr) => {
                // A `user:password@` prefix would otherwise pass as part of the host, and be
                // echoed by `check` and in every connection error.
                let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && !host.contains(['@', '/']) && port.parse::<u16>().is_ok()
                });
                if !valid {
                    return Err(invalid(
                        "STARWAL_STARROCKS_MYSQL",
                        addr,
                        "host:port of the FE MySQL protocol, e.g. fe1:9030 (user and password go in STARWAL_STARROCKS_USER and STARWAL_STARROCKS_PASSWORD)",
                    ));
                }
                addr.to_owned()
            }
            None => {
                // Default: the first FE's host on the standard MySQL-protocol port.
                let first = &fe_urls[0];
                let hostport = first.split_once("://").map_or(first.as_str(), |(_, r)| r);
                let host = match hostport.rsplit_once(':') {
                    Some((host, port)) if port.parse::<u16>().is_ok() => host,
                    _ => hostport,
                };
                format!("{host}:{DEFAULT_MYSQL_PORT}")
            }
        };
        let database = trimmed(&self.starrocks_database)
            .ok_or(ConfigError::Missing {
                var: "STARWAL_STARROCKS_DATABASE",
                expected: "the StarRocks database of the target tables, e.g. analytics",
            })?
            .to_owned();
        if !database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || !database.as_bytes()[0].is_ascii_alphabetic()
        {
            return Err(invalid(
                "STARWAL_STARROCKS_DATABASE",
                &database,
                "letters, digits and underscores, starting with a letter",
            ));
        }
        let delete_mode = match trimmed(&self.delete_mode).unwrap_or("hard") {
            "hard" => DeleteMode::Hard,
            "soft" => DeleteMode::Soft,
            other => return Err(invalid("STARWAL_DELETE_MODE", other, "hard or soft")),
        };
        let compression = match trimmed(&self.starrocks_compression).unwrap_or("none") {
            "none" => Compression::None,
            "lz4" => Compression::Lz4,
            "gzip" => Compression::Gzip,
            other => {
                return Err(invalid(
                    "STARWAL_STARROCKS_COMPRESSION",
                    other,
                    "none, lz4 or gzip",
                ))
            }
        };
        let create_tables = match trimmed(&self.create_tables).unwrap_or("true") {
            "true" => true,
            "false" => false,
            other => return Err(invalid("STARWAL_CREATE_TABLES", other, "true or false")),
        };
        let unconstrained_numeric = match trimmed(&self.numeric_unconstrained) {
            None => DEFAULT_NUMERIC_UNCONSTRAINED,
            Some("decimal") => UnconstrainedNumeric::Decimal,
            Some("varchar") => UnconstrainedNumeric::Varchar,
            Some(other) => {
                return Err(invalid(
                    "STARWAL_NUMERIC_UNCONSTRAINED",
                    other,
                    "decimal (DECIMAL(38,9), values that do not fit stop the table) or varchar (exact digits as text)",
                ))
            }
        };
        let load_timeout = match trimmed(&self.starrocks_load_timeout_s) {
            None => DEFAULT_LOAD_TIMEOUT,
            Some(value) => match value.parse::<u64>() {
                Ok(seconds @ 1..=259_200) => Duration::from_secs(seconds),
                _ => {
                    return Err(invalid(
                        "STARWAL_STARROCKS_LOAD_TIMEOUT_S",
                        value,
                        "whole seconds from 1 to 259200",
                    ))
                }
            },
        };
        let password = secret_var(
            "STARWAL_STARROCKS_PASSWORD",
            self.starrocks_password,
            "STARWAL_STARROCKS_PASSWORD_FILE",
            self.starrocks_password_file,
        )
        .map_err(ConfigError::Secret)?
        .unwrap_or_default();
        Ok(StarRocksConfig {
            fe_urls,
            mysql_addr,
            user: trimmed(&self.starrocks_user)
                .unwrap_or(DEFAULT_USER)
                .to_owned(),
            password,
            database,
            delete_mode,
            compression,
            create_tables,
            type_mapping: TypeMapping {
                unconstrained_numeric,
            },
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            load_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str) -> RawStarRocksConfig {
        RawStarRocksConfig {
            starrocks_url: Some(url.into()),
            starrocks_database: Some("analytics".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_follow_the_first_fe() {
        let config = raw("http://fe1:8030, https://fe2:8443/")
            .validate()
            .unwrap();
        assert_eq!(config.fe_urls, vec!["http://fe1:8030", "https://fe2:8443"]);
        assert_eq!(config.mysql_addr, "fe1:9030");
        assert_eq!(config.user, "root");
        assert_eq!(config.delete_mode, DeleteMode::Hard);
        assert_eq!(config.compression, Compression::None);
        assert!(config.create_tables);
        assert_eq!(
            config.type_mapping.unconstrained_numeric,
            UnconstrainedNumeric::Decimal
        );
        let varchar = RawStarRocksConfig {
            numeric_unconstrained: Some(" varchar ".into()),
            ..raw("http://fe1:8030")
        };
        assert_eq!(
            varchar
                .validate()
                .unwrap()
                .type_mapping
                .unconstrained_numeric,
            UnconstrainedNumeric::Varchar
        );
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (raw, var) in [
            (raw("fe1:8030"), "STARWAL_STARROCKS_URL"),
            (raw("http://u:p@fe1:8030"), "STARWAL_STARROCKS_URL"),
            (raw("http://fe1:8030/api"), "STARWAL_STARROCKS_URL"),
            (
                RawStarRocksConfig {
                    delete_mode: Some("maybe".into()),
                    ..raw("http://fe:8030")
                },
                "STARWAL_DELETE_MODE",
            ),
            (
                RawStarRocksConfig {
                    starrocks_compression: Some("zstd".into()),
                    ..raw("http://fe:8030")
                },
                "STARWAL_STARROCKS_COMPRESSION",
            ),
            (
                RawStarRocksConfig {
                    starrocks_database: Some("a-b".into()),
                    ..raw("http://fe:8030")
                },
                "STARWAL_STARROCKS_DATABASE",
            ),
            (
                RawStarRocksConfig {
                    starrocks_mysql: Some("fe".into()),
                    ..raw("http://fe:8030")
                },
                "STARWAL_STARROCKS_MYSQL",
            ),
            (
                RawStarRocksConfig {
                    numeric_unconstrained: Some("double".into()),
                    ..raw("http://fe:8030")
                },
                "STARWAL_NUMERIC_UNCONSTRAINED",
            ),
        ] {
            let err = raw.validate().unwrap_err().to_string();
            assert!(err.starts_with(var), "{var}: {err}");
        }
    }

    #[test]
    fn inv10_credentials_in_addresses_are_refused_without_echo() {
        for raw in [
            raw("http://root:s3cr3t@fe1:8030"),
            raw("http://fe0:8030,https://root:s3cr3t@fe1:8030"),
            RawStarRocksConfig {
                starrocks_mysql: Some("root:s3cr3t@fe1:9030".into()),
                ..raw("http://fe1:8030")
            },
        ] {
            let err = raw.validate().unwrap_err();
            for text in [err.to_string(), format!("{err:?}")] {
                assert!(text.starts_with("STARWAL_STARROCKS_"), "{text}");
                assert!(!text.contains("s3cr3t"), "{text}");
                assert!(text.contains("********@fe1"), "{text}");
                assert!(text.contains("STARWAL_STARROCKS_PASSWORD"), "{text}");
            }
        }
    }

    #[test]
    fn inv10_the_password_is_redacted() {
        let config = RawStarRocksConfig {
            starrocks_password: Some("s3cr3t".into()),
            ..raw("http://fe:8030")
        }
        .validate()
        .unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }
}
