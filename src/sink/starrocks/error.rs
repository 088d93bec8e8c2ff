//! Stream Load errors and the one decision that matters about each: retry or stop.
//!
//! Transient (retried with backoff, without limit, while the stream is paused — invariant 7):
//! connection trouble, HTTP 5xx, too many versions, memory limits, BE down, timeouts, ambiguous
//! commits, a label still running. Permanent (the engine stops with the message, checkpoint
//! untouched): authentication and privileges, unknown database or table, filtered rows (with the
//! ErrorURL text — invariant 6), key too long, anything StarRocks says we sent wrong.

/// Messages of `Fail` answers that clear by themselves (reference §3, §8). Matched as substrings,
/// case-insensitively, because StarRocks embeds ids and numbers in them.
const TRANSIENT_MESSAGES: &[&str] = &[
    "too many versions",
    "memory of process exceed limit",
    "exceed limit",
    "mem usage has exceed",
    "cancelled",
    "timeout by txn manager",
    "timeout",
    "transaction status unknown",
    "you can retry with same label",
    "current fe is not master",
    "service is shutting down",
    "txn num per be exceeds limit",
    "current running txns on db",
    "exceed http cuncurrent limit",
    "no backend alive",
    "publish timeout",
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
    let lower = message.to_ascii_lowercase();
    if PERMANENT_MESSAGES.iter().any(|m| lower.contains(m)) {
        return false;
    }
    TRANSIENT_MESSAGES.iter().any(|m| lower.contains(m))
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
    /// Whether trying again (same label) may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            // A certificate StarRocks presents will not become valid by itself.
            StreamLoadError::Transport { source, .. } => {
                !(source.is_ssl_certproblem()
                    || source.is_peer_failed_verification()
                    || source.is_ssl_cacert()
                    || source.is_ssl_cacert_badfile())
            }
            StreamLoadError::LabelRunning { .. } | StreamLoadError::Malformed { .. } => true,
            StreamLoadError::Http { status, .. } => *status >= 500 || *status == 429,
            StreamLoadError::Rejected { message, .. } => is_transient_message(message),
            StreamLoadError::Auth { .. } | StreamLoadError::FilteredRows { .. } => false,
        }
    }
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
}
