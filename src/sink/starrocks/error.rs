//! Stream Load errors and the one decision that matters about each: retry or stop.
//!
//! Transient (retried with backoff, without limit, while the stream is paused — invariant 7):
//! connection trouble, HTTP 5xx, too many versions, memory limits, BE down, timeouts, ambiguous
//! commits, a label still running. Permanent (the engine stops with the message, checkpoint
//! untouched): authentication and privileges, unknown database or table, filtered rows (with the
//! ErrorURL text — invariant 6), key too long, anything StarRocks says we sent wrong.
//!
//! Each error also has a [`LoadErrorKind`], a fixed word for metrics and status (invariant 13:
//! an outage is visible while it lasts); the message table below decides kind and transience
//! together, so the two cannot disagree.

/// Messages of `Fail` answers that clear by themselves (reference §3, §8), with the kind each is
/// counted as. Matched as substrings, case-insensitively, because StarRocks embeds ids and numbers
/// in them; the first match names the kind, so the specific entries come before the generic ones.
const TRANSIENT_MESSAGES: &[(&str, LoadErrorKind)] = &[
    ("too many versions", LoadErrorKind::TooManyVersions),
    ("no backend alive", LoadErrorKind::BackendDown),
    ("transaction status unknown", LoadErrorKind::CommitUnknown),
    (
        "you can retry with same label",
        LoadErrorKind::CommitUnknown,
    ),
    ("publish timeout", LoadErrorKind::Timeout),
    ("timeout by txn manager", LoadErrorKind::Timeout),
    ("current fe is not master", LoadErrorKind::Busy),
    ("service is shutting down", LoadErrorKind::Busy),
    ("txn num per be exceeds limit", LoadErrorKind::Busy),
    ("current running txns on db", LoadErrorKind::Busy),
    ("exceed http cuncurrent limit", LoadErrorKind::Busy),
    ("memory of process exceed limit", LoadErrorKind::Memory),
    ("mem usage has exceed", LoadErrorKind::Memory),
    ("exceed limit", LoadErrorKind::Memory),
    ("cancelled", LoadErrorKind::Cancelled),
    ("timeout", LoadErrorKind::Timeout),
];

/// Messages that can never clear by retrying, even though some contain a word of the list above
/// (e.g. `body size ... exceed limit`). Checked first.
const PERMANENT_MESSAGES: &[&str] = &[
    "too many filtered rows",
    "access denied",
    "need auth information",
    "unknown database",
    "unknown table",
    "primary key size exceed",
    "only primary key table support partial update",
    "body size",
    "there is no 100-continue header",
    "invalid",
];

/// Whether a `Fail` message names a condition that passes.
pub fn is_transient_message(message: &str) -> bool {
    transient_message_kind(message).is_some()
}

/// The kind of a `Fail` message that passes by itself; `None` for a permanent one.
fn transient_message_kind(message: &str) -> Option<LoadErrorKind> {
    let lower = message.to_ascii_lowercase();
    if PERMANENT_MESSAGES.iter().any(|m| lower.contains(m)) {
        return None;
    }
    TRANSIENT_MESSAGES
        .iter()
        .find(|(m, _)| lower.contains(m))
        .map(|(_, kind)| *kind)
}

/// What went wrong with a load attempt, in a few fixed words: the `kind` label of
/// `starwal_load_failures_total` and what `status` shows next to a table's error. Bounded, so a
/// metric label never carries a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoadErrorKind {
    /// No connection, refused, reset, timed out at the transport.
    Connection,
    /// The TLS certificate StarRocks presents is not accepted.
    Tls,
    /// An HTTP status other than 200 (5xx, 429, ...), authentication aside.
    Http,
    /// Credentials or privileges refused.
    Auth,
    /// `too many versions`: compaction lags behind the loads.
    TooManyVersions,
    /// A memory limit of a BE.
    Memory,
    /// A timeout reported by StarRocks (publish, transaction manager, load).
    Timeout,
    /// Too many loads or transactions at once, an FE that is not the leader, a shutdown.
    Busy,
    /// `No backend alive`.
    BackendDown,
    /// The commit's outcome is unknown: retried with the same label.
    CommitUnknown,
    /// StarRocks cancelled the load.
    Cancelled,
    /// An earlier attempt with the label is still running.
    LabelRunning,
    /// An answer that is not a Stream Load answer.
    Malformed,
    /// Rows filtered (invariant 6).
    FilteredRows,
    /// Any other refusal of the load: permanent.
    Rejected,
}

impl LoadErrorKind {
    /// Lower-case name, as metrics and status print it.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadErrorKind::Connection => "connection",
            LoadErrorKind::Tls => "tls",
            LoadErrorKind::Http => "http",
            LoadErrorKind::Auth => "auth",
            LoadErrorKind::TooManyVersions => "too_many_versions",
            LoadErrorKind::Memory => "memory",
            LoadErrorKind::Timeout => "timeout",
            LoadErrorKind::Busy => "busy",
            LoadErrorKind::BackendDown => "backend_down",
            LoadErrorKind::CommitUnknown => "commit_unknown",
            LoadErrorKind::Cancelled => "cancelled",
            LoadErrorKind::LabelRunning => "label_running",
            LoadErrorKind::Malformed => "malformed",
            LoadErrorKind::FilteredRows => "filtered_rows",
            LoadErrorKind::Rejected => "rejected",
        }
    }
}

/// One failed attempt to load a batch.
#[derive(Debug, thiserror::Error)]
pub enum StreamLoadError {
    #[error("cannot reach StarRocks at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: curl::Error,
    },
    #[error("StarRocks at {url} answered HTTP {status}: {excerpt}")]
    Http {
        url: String,
        status: u32,
        excerpt: String,
    },
    #[error("StarRocks refused the credentials of STARWAL_STARROCKS_USER: {message}")]
    Auth { message: String },
    #[error("load `{label}` into `{table}` failed: {message}")]
    Rejected {
        table: String,
        label: String,
        message: String,
    },
    #[error("load `{label}` into `{table}` filtered {filtered} row(s) (max_filter_ratio is 0, nothing is dropped silently): {error_log}")]
    FilteredRows {
        table: String,
        label: String,
        filtered: u64,
        /// The text StarRocks serves at ErrorURL (or why it could not be fetched).
        error_log: String,
    },
    #[error("load `{label}` into `{table}`: an earlier attempt with this label is still running")]
    LabelRunning { table: String, label: String },
    #[error("StarRocks at {url}: {source}")]
    Malformed {
        url: String,
        #[source]
        source: super::response::MalformedResponse,
    },
}

impl StreamLoadError {
    /// What kind of failure this is (see [`LoadErrorKind`]).
    pub fn kind(&self) -> LoadErrorKind {
        match self {
            StreamLoadError::Transport { source, .. } if is_certificate_problem(source) => {
                LoadErrorKind::Tls
            }
            StreamLoadError::Transport { .. } => LoadErrorKind::Connection,
            StreamLoadError::Http { .. } => LoadErrorKind::Http,
            StreamLoadError::Auth { .. } => LoadErrorKind::Auth,
            StreamLoadError::Rejected { message, .. } => {
                transient_message_kind(message).unwrap_or(LoadErrorKind::Rejected)
            }
            StreamLoadError::FilteredRows { .. } => LoadErrorKind::FilteredRows,
            StreamLoadError::LabelRunning { .. } => LoadErrorKind::LabelRunning,
            StreamLoadError::Malformed { .. } => LoadErrorKind::Malformed,
        }
    }

    /// Whether trying again (same label) may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            // A certificate StarRocks presents will not become valid by itself.
            StreamLoadError::Transport { source, .. } => !is_certificate_problem(source),
            StreamLoadError::LabelRunning { .. } | StreamLoadError::Malformed { .. } => true,
            StreamLoadError::Http { status, .. } => *status >= 500 || *status == 429,
            StreamLoadError::Rejected { message, .. } => is_transient_message(message),
            StreamLoadError::Auth { .. } | StreamLoadError::FilteredRows { .. } => false,
        }
    }
}

/// A certificate StarRocks presents, or the CA file to check it: will not pass by itself.
fn is_certificate_problem(error: &curl::Error) -> bool {
    error.is_ssl_certproblem()
        || error.is_peer_failed_verification()
        || error.is_ssl_cacert()
        || error.is_ssl_cacert_badfile()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv7_starrocks_messages_are_classified() {
        let transient = [
            "Failed to load data into tablet 10086, because of too many versions, current/limit: 1001/1000. You can reduce the loading job concurrency, or increase loading data batch size.",
            "Too many versions. tablet_id: 1, version_count: 1001, limit: 1000",
            "Memory of process exceed limit. QUERY Backend: 127.0.0.1, fragment: x Used: 1, Limit: 1. Mem usage has exceed the limit of BE",
            "timeout by txn manager",
            "Commit transaction fail cause rpc, Transaction status unknown, you can retry with same label.",
            "class com.starrocks.common.DdlException: No backend alive.",
            "Service is shutting down, please retry later!",
            "cancelled",
        ];
        for message in transient {
            assert!(is_transient_message(message), "{message}");
        }
        let permanent = [
            "too many filtered rows",
            "Access denied for root@127.0.0.1",
            "unknown database, database=x",
            "unknown table \"db.t\"",
            "body size 10 exceed limit: 5, ... streaming_load_max_mb in be.conf.",
            "class com.starrocks.common.DdlException: There is no 100-continue header",
            "something nobody has seen before",
        ];
        for message in permanent {
            assert!(!is_transient_message(message), "{message}");
        }
    }

    fn rejected(message: &str) -> StreamLoadError {
        StreamLoadError::Rejected {
            table: "t".into(),
            label: "l".into(),
            message: message.into(),
        }
    }

    #[test]
    fn kinds_name_the_cause_and_agree_with_transience() {
        for (message, kind) in [
            (
                "Too many versions. tablet_id: 1, version_count: 1001, limit: 1000",
                "too_many_versions",
            ),
            (
                "class com.starrocks.common.DdlException: No backend alive.",
                "backend_down",
            ),
            (
                "Memory of process exceed limit. Used: 1, Limit: 1",
                "memory",
            ),
            (
                "Transaction status unknown, you can retry with same label.",
                "commit_unknown",
            ),
            ("timeout by txn manager", "timeout"),
            (
                "current running txns on db 10 is 1000, larger than limit 1000",
                "busy",
            ),
            ("cancelled", "cancelled"),
            ("unknown table \"db.t\"", "rejected"),
            ("body size 10 exceed limit: 5", "rejected"),
        ] {
            let error = rejected(message);
            assert_eq!(error.kind().as_str(), kind, "{message}");
            assert_eq!(
                error.is_transient(),
                kind != "rejected",
                "{message}: transience and kind disagree"
            );
        }
        let http = StreamLoadError::Http {
            url: "http://fe".into(),
            status: 503,
            excerpt: String::new(),
        };
        assert_eq!(
            (http.kind(), http.is_transient()),
            (LoadErrorKind::Http, true)
        );
        let auth = StreamLoadError::Auth {
            message: "denied".into(),
        };
        assert_eq!(
            (auth.kind(), auth.is_transient()),
            (LoadErrorKind::Auth, false)
        );
    }
}
