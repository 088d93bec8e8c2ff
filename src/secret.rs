//! [`Secret`]: a value that must never be printed — passwords, tokens. Its `Debug` and
//! `Display` show `********`, so a secret held in a configuration, a connection string or an
//! error can reach no log line, error message or status answer (invariant 10). The only way to
//! the value is [`Secret::expose`], called where it is sent (an authentication exchange).

use std::fmt;

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
