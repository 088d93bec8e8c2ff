//! The restart rule (invariant 5): what to do with a table's first changes when the stream
//! starts again, given the load the previous run recorded as in flight for that table and the
//! confirmed LSN streaming resumes from. Pure: the pipeline asks, this module decides.
//!
//! One load is in flight per table, so every load of the table before the recorded one has
//! committed. If the confirmed LSN passed the recorded load's first transaction, that load
//! committed too (confirmation passes a batch's start only after it committed): skip the
//! table's changes through its last position. Otherwise skip the changes before its first
//! position and re-form exactly `first..=last` — the same changes under the same label — so
//! StarRocks answers `Label Already Exists` if it committed the load before the crash; flush
//! thresholds are ignored until the re-formed batch is complete. The same changes make the same
//! bytes only with the same inputs from outside the stream: the re-formed batch takes its sync
//! time and its moved rows' values from the record, not from the clock and the source
//! (`flush.rs`, `apply.rs`).

use crate::postgres::{ChangePosition, Lsn};

/// What to do with a table's first changes after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resume {
    /// Everything up to here is already in StarRocks.
    SkipThrough(ChangePosition),
    /// Changes before `first` are in StarRocks; `first..=last` is the batch that was in flight:
    /// send exactly it again, under its label.
    Reform {
        first: ChangePosition,
        last: ChangePosition,
    },
    /// Changes before `first` are in StarRocks; from `first` on nothing is (a StarRocks
    /// transaction that was rolled back): take them as they come, batched afresh.
    ReadAgain { first: ChangePosition },
}

/// The rule's answer for one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Already in StarRocks: drop it.
    Skip,
    /// Take it; the rule still holds for the changes after it.
    Take,
    /// Take it; the rule is over. `flush_first`: the re-formed batch is complete and goes out
    /// before this change joins a new one.
    TakeAfterRule { flush_first: bool },
}

impl Resume {
    /// The rule for a table whose load `first..=last` was recorded in flight, when streaming
    /// resumes from `confirmed`; `None` when that load is entirely confirmed already.
    pub(super) fn for_load(
        first: ChangePosition,
        last: ChangePosition,
        confirmed: Lsn,
    ) -> Option<Resume> {
        if last.commit < confirmed {
            None
        } else if first.commit < confirmed {
            // Confirmation passed the batch's start, which happens only after it committed.
            Some(Resume::SkipThrough(last))
        } else {
            Some(Resume::Reform { first, last })
        }
    }

    /// The rule for a table whose StarRocks transaction `first..=last` (invariant 11) was
    /// recorded in flight, once the restart settled it (`pipeline/txn.rs`): `committed` when it
    /// was prepared and is committed now, else it was rolled back. `None` when it is confirmed.
    pub(super) fn for_transaction(
        first: ChangePosition,
        last: ChangePosition,
        confirmed: Lsn,
        committed: bool,
    ) -> Option<Resume> {
        if last.commit < confirmed {
            None
        } else if committed {
            Some(Resume::SkipThrough(last))
        } else {
            Some(Resume::ReadAgain { first })
        }
    }

    /// What to do with the table's change at `position`.
    pub(super) fn change(self, position: ChangePosition) -> Verdict {
        match self {
            Resume::SkipThrough(through) if position <= through => Verdict::Skip,
            Resume::SkipThrough(_) => Verdict::TakeAfterRule { flush_first: false },
            Resume::Reform { first, .. } if position < first => Verdict::Skip,
            Resume::Reform { last, .. } if position > last => {
                Verdict::TakeAfterRule { flush_first: true }
            }
            Resume::Reform { .. } => Verdict::Take,
            Resume::ReadAgain { first } if position < first => Verdict::Skip,
            Resume::ReadAgain { .. } => Verdict::TakeAfterRule { flush_first: false },
        }
    }

    /// Whether the rule is over once the transaction committed at `commit` passed: `Some(flush)`
    /// when it is, `flush` saying the re-formed batch is complete and goes out now.
    pub(super) fn commit_passed(self, commit: Lsn) -> Option<bool> {
        match self {
            Resume::Reform { last, .. } if last.commit <= commit => Some(true),
            Resume::SkipThrough(through) if through.commit <= commit => Some(false),
            Resume::ReadAgain { first } if first.commit <= commit => Some(false),
            _ => None,
        }
    }

    /// Whether a batch is being re-formed: it must end exactly where the recorded one did.
    pub(super) fn is_reform(self) -> bool {
        matches!(self, Resume::Reform { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(commit: u64, seq: u32) -> ChangePosition {
        ChangePosition {
            commit: Lsn(commit),
            seq,
        }
    }

    #[test]
    fn inv5_a_load_before_the_confirmed_lsn_needs_no_rule() {
        assert_eq!(Resume::for_load(at(10, 1), at(20, 3), Lsn(30)), None);
    }

    #[test]
    fn inv5_a_load_whose_start_is_confirmed_committed_and_is_skipped_through_its_end() {
        let rule = Resume::for_load(at(10, 1), at(20, 3), Lsn(15)).unwrap();
        assert_eq!(rule, Resume::SkipThrough(at(20, 3)));
        assert_eq!(rule.change(at(20, 3)), Verdict::Skip);
        assert_eq!(
            rule.change(at(20, 4)),
            Verdict::TakeAfterRule { flush_first: false }
        );
        assert_eq!(rule.commit_passed(Lsn(19)), None);
        assert_eq!(rule.commit_passed(Lsn(20)), Some(false));
        assert!(!rule.is_reform());
    }

    #[test]
    fn inv11_a_committed_transaction_is_skipped_and_a_rolled_back_one_read_again() {
        // Prepared before the crash, committed by the restart: skipped through its end.
        let rule = Resume::for_transaction(at(10, 2), at(20, 3), Lsn(10), true).unwrap();
        assert_eq!(rule, Resume::SkipThrough(at(20, 3)));
        assert_eq!(rule.change(at(15, 1)), Verdict::Skip);
        // Not prepared: rolled back, read again from its first change, batched afresh.
        let rule = Resume::for_transaction(at(10, 2), at(20, 3), Lsn(10), false).unwrap();
        assert!(!rule.is_reform(), "no flush threshold is held back");
        assert_eq!(rule.change(at(10, 1)), Verdict::Skip);
        assert_eq!(
            rule.change(at(10, 2)),
            Verdict::TakeAfterRule { flush_first: false }
        );
        assert_eq!(rule.commit_passed(Lsn(9)), None);
        assert_eq!(rule.commit_passed(Lsn(10)), Some(false));
        // Confirmed past its end: nothing to do.
        assert_eq!(
            Resume::for_transaction(at(10, 2), at(20, 3), Lsn(30), true),
            None
        );
    }

    #[test]
    fn inv5_an_unconfirmed_load_is_re_formed_exactly() {
        // Confirmed exactly at the load's first commit: that transaction is not confirmed yet.
        let rule = Resume::for_load(at(10, 2), at(20, 3), Lsn(10)).unwrap();
        assert_eq!(
            rule,
            Resume::Reform {
                first: at(10, 2),
                last: at(20, 3)
            }
        );
        assert!(rule.is_reform());
        // Before the recorded first change: loaded by an earlier load.
        assert_eq!(rule.change(at(10, 1)), Verdict::Skip);
        assert_eq!(rule.change(at(10, 2)), Verdict::Take);
        assert_eq!(rule.change(at(20, 3)), Verdict::Take);
        // Past the recorded range: the batch is complete, send it before taking more.
        assert_eq!(
            rule.change(at(20, 4)),
            Verdict::TakeAfterRule { flush_first: true }
        );
        assert_eq!(rule.commit_passed(Lsn(10)), None);
        assert_eq!(rule.commit_passed(Lsn(20)), Some(true));
    }
}
