//! [`Secret`]: a value that must never be printed — passwords, tokens. Its `Debug` and
//! `Display` show `********`, so a secret held in a configuration, a connection string or an
//! error can reach no log line, error message or status answer (invariant 10). The only way to
//! the value is [`Secret::expose`], called where it is sent (an authentication exchange).
//!
//! [`redact_userinfo`] is for text that may hold a secret the user put where none belongs — a
//! `user:password@` in a URL or address variable — before a message quotes it back.

use std::borrow::Cow;
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
