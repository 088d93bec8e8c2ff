//! The BE's in-memory stream-load contexts of the transaction interface: one per label between
//! `begin` and `prepare`/`commit`/`rollback` (reference §5; BE `transaction_mgr.cpp`).
//!
//! Owns what a BE holds for an open transaction: the load plan fixed by the first `load`, the
//! rows and counters accumulated so far, the "in processing" flag behind `TXN_IN_PROCESSING`,
//! and the PREPARE timeouts. It is lost on a BE restart (the FE then aborts those txns); a
//! PREPARED txn no longer needs it. It does not know labels' FE state (that is [`super::TxnBook`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::load::{LoadPlan, LoadProgress};

/// One open transaction on the BE.
#[derive(Debug)]
pub(crate) struct StreamContext {
    /// FE transaction id.
    pub(crate) txn_id: i64,
    /// Database.
    pub(crate) db: String,
    /// Table.
    pub(crate) table: String,
    /// Plan fixed by the first `load` (later loads must send the same data headers).
    pub(crate) plan: Option<LoadPlan>,
    /// Rows and counters so far.
    pub(crate) progress: LoadProgress,
    /// An operation holds the context (`TXN_IN_PROCESSING` for others).
    pub(crate) busy: bool,
    /// When `begin` ran.
    pub(crate) begun_at: Instant,
    /// Last `load`/op on the context.
    pub(crate) last_active: Instant,
    /// PREPARE → PREPARED limit (`timeout` on begin).
    pub(crate) timeout: Duration,
    /// Auto-rollback when idle this long (`idle_transaction_timeout`).
    pub(crate) idle_timeout: Option<Duration>,
}

impl StreamContext {
    /// Whether the context timed out (overall or idle) at `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.begun_at) > self.timeout
            || self
                .idle_timeout
                .is_some_and(|idle| now.duration_since(self.last_active) > idle)
    }
}

/// The BE's contexts by label (the BE keys them by label alone).
#[derive(Debug, Default)]
pub(crate) struct StreamContexts {
    by_label: HashMap<String, StreamContext>,
}

impl StreamContexts {
    pub(crate) fn get(&self, label: &str) -> Option<&StreamContext> {
        self.by_label.get(label)
    }

    pub(crate) fn get_mut(&mut self, label: &str) -> Option<&mut StreamContext> {
        self.by_label.get_mut(label)
    }

    pub(crate) fn insert(&mut self, label: String, context: StreamContext) {
        self.by_label.insert(label, context);
    }

    pub(crate) fn remove(&mut self, label: &str) -> Option<StreamContext> {
        self.by_label.remove(label)
    }

    /// Removes and returns contexts that timed out (not those busy in an operation).
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<(String, StreamContext)> {
        let labels: Vec<String> = self
            .by_label
            .iter()
            .filter(|(_, c)| !c.busy && c.expired(now))
            .map(|(l, _)| l.clone())
            .collect();
        labels
            .into_iter()
            .filter_map(|l| self.by_label.remove(&l).map(|c| (l, c)))
            .collect()
    }

    /// Drops every context (BE restart); returns their txn ids.
    pub(crate) fn clear(&mut self) -> Vec<i64> {
        self.by_label.drain().map(|(_, c)| c.txn_id).collect()
    }
}
