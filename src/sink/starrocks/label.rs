//! Deterministic Stream Load labels, all starting `starwal_<slot>_<table>`: a streamed batch's
//! part is named by its change positions ([`Label::for_changes`]), a snapshot chunk's part by its
//! copy run and chunk ([`Label::for_copy`]), and an LSN range alone by [`Label::for_batch`].
//!
//! A label is StarRocks' idempotency key (unique per database). Deriving a batch's label from the
//! slot, the table and its first and last change position means the same batch always gets the
//! same label — after a retry, a crash or a restart — so StarRocks answers `Label Already Exists`
//! instead of applying it twice (invariant 5). Copy labels are unique per run on purpose (see
//! [`Label::for_copy`]). Labels keep to `[A-Za-z0-9_]` (the portable subset of StarRocks' label
//! syntax) with a hash of the raw names wherever sanitizing could merge two of them, and to at
//! most 128 characters: longer ones keep a readable prefix and end in a hash of the whole.

use std::fmt;
use std::fmt::Write as _;

use crate::postgres::{ChangePosition, Lsn};

/// StarRocks' label length limit.
pub const MAX_LABEL_LEN: usize = 128;

/// A Stream Load label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label(String);

impl Label {
    /// The label of the batch of target table `table` covering `first..=last` of slot `slot`:
    /// `starwal_<slot>_<table>_<first lsn>_<last lsn>`. Target names are unique within the
    /// StarRocks database, as labels must be. The pipeline names its loads by change position
    /// ([`Label::for_changes`]); this form serves callers that have only an LSN range (the
    /// `check` probe, tests, benchmarks).
    pub fn for_batch(slot: &str, table: &str, first: Lsn, last: Lsn) -> Label {
        let (mut label, lossy) = prefix(slot, table);
        let _ = write!(label, "_{:016X}_{:016X}", first.0, last.0);
        Label::finish(label, lossy, slot, table)
    }

    /// The label of part `part` (one per column set, from 0) of the batch of target table
    /// `table` holding the changes `first..=last`:
    /// `starwal_<slot>_<table>_<names hash>_<first>_<last>[_p<n>]` with each position as
    /// `<commit lsn hex>_<seq>`. The hash of the raw (slot, table) pair keeps apart pairs whose
    /// text runs together (slot `a_b` + table `c`, slot `a` + table `b_c`): two agents of one
    /// cluster share its LSNs and may load into one database.
    pub fn for_changes(
        slot: &str,
        table: &str,
        first: ChangePosition,
        last: ChangePosition,
        part: usize,
    ) -> Label {
        let mut label = hashed_prefix(slot, table);
        let _ = write!(
            label,
            "_{:016X}_{}_{:016X}_{}",
            first.commit.0, first.seq, last.commit.0, last.seq
        );
        if part > 0 {
            let _ = write!(label, "_p{part}");
        }
        Label::finish(label, false, slot, table)
    }

    /// The label of the StarRocks transaction of target table `table` that begins with the change
    /// at `first` (a source transaction larger than a batch, loaded in parts):
    /// `starwal_<slot>_<table>_<names hash>_<first>_t`. Only the start names it: the end is not
    /// known when the transaction begins. A transaction that never committed is rolled back and
    /// begun again from the same change, under the same label (StarRocks lets a rolled-back
    /// label be reused).
    pub fn for_transaction(slot: &str, table: &str, first: ChangePosition) -> Label {
        let mut label = hashed_prefix(slot, table);
        let _ = write!(label, "_{:016X}_{}_t", first.commit.0, first.seq);
        Label::finish(label, false, slot, table)
    }

    /// The label of the StarRocks transaction of target table `table` that carries the changes
    /// of the in-progress source transaction `xid` as Postgres streams them
    /// (`STARWAL_STREAMING`, `pipeline/stream.rs`): `starwal_<slot>_<table>_<names hash>_x<xid>_s`.
    /// Named by the xid alone: its first change's position depends on where a session started,
    /// and a transaction streamed again after a crash must find its rolled-back label again.
    pub fn for_stream(slot: &str, table: &str, xid: u32) -> Label {
        let mut label = hashed_prefix(slot, table);
        let _ = write!(label, "_x{xid}_s");
        Label::finish(label, false, slot, table)
    }

    /// The label of attempt `attempt` of a multi-table transaction (`STARWAL_COMMIT_MODE=
    /// transaction`) whose first change belongs to the source transaction committed at
    /// `first_commit`: `starwal_<slot>__m_<names hash>_<first commit lsn>_a<attempt>`. A
    /// multi-table label is not reusable after a rollback (StarRocks keeps the task for days), so
    /// every attempt takes the next number; the checkpoint records the label before `begin`.
    pub fn for_multi(slot: &str, first_commit: Lsn, attempt: u32) -> Label {
        let mut label = hashed_prefix(slot, "_m");
        let _ = write!(label, "_{:016X}_a{attempt}", first_commit.0);
        Label::finish(label, false, slot, "_m")
    }

    /// The attempt number of a label made by [`Label::for_multi`].
    pub fn multi_attempt(&self) -> Option<u32> {
        self.0.rsplit_once("_a").and_then(|(_, n)| n.parse().ok())
    }

    /// A label as the checkpoint recorded it (made by one of the constructors above).
    pub fn from_recorded(text: &str) -> Label {
        Label(text.to_owned())
    }

    /// The label of part `part` of chunk `chunk` of a snapshot copy of target table `table`:
    /// `starwal_<slot>_<table>_<names hash>_c<run>_<chunk>_<part>`. `run` is unique per copy run
    /// (a chunk read again after a crash holds other rows, so it must not be taken for the
    /// earlier attempt's load); loading a chunk twice is harmless, as every row is a full image.
    pub fn for_copy(slot: &str, table: &str, run: u64, chunk: u32, part: u32) -> Label {
        let mut label = hashed_prefix(slot, table);
        let _ = write!(label, "_c{run:x}_{chunk}_{part}");
        Label::finish(label, false, slot, table)
    }

    fn finish(mut label: String, lossy: bool, slot: &str, table: &str) -> Label {
        if lossy {
            // Sanitizing merged names (`order-items` and `order_items`): a hash of the raw names
            // keeps their labels apart, or one table's batch would be taken as the other's.
            let _ = write!(label, "_{:016x}", names_hash(slot, table));
        }
        if label.len() > MAX_LABEL_LEN {
            // Keep the start readable; the hash of the whole keeps distinct batches distinct.
            let hash = fnv1a64(&[label.as_bytes()]);
            label.truncate(MAX_LABEL_LEN - 17);
            let _ = write!(label, "_{hash:016x}");
        }
        Label(label)
    }

    /// The label text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `starwal_<slot>_<table>`, sanitized, and whether sanitizing replaced anything: the start of
/// every label.
fn prefix(slot: &str, table: &str) -> (String, bool) {
    let mut label = String::with_capacity(96);
    label.push_str("starwal_");
    let mut lossy = push_sanitized(&mut label, slot);
    label.push('_');
    lossy |= push_sanitized(&mut label, table);
    (label, lossy)
}

/// [`prefix`] and `_<names hash>` (32 bits of [`names_hash`]), which tells apart every raw
/// (slot, table) pair, whether sanitizing merged them or their text runs together.
fn hashed_prefix(slot: &str, table: &str) -> String {
    let (mut label, _) = prefix(slot, table);
    let _ = write!(label, "_{:08x}", names_hash(slot, table) as u32);
    label
}

/// The hash of the raw (slot, table) pair, NUL-separated.
fn names_hash(slot: &str, table: &str) -> u64 {
    fnv1a64(&[slot.as_bytes(), b"\0", table.as_bytes()])
}

/// Appends `text` with every character outside `[A-Za-z0-9_]` replaced by `_`; returns whether
/// anything was replaced.
fn push_sanitized(out: &mut String, text: &str) -> bool {
    let mut replaced = false;
    out.extend(text.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            replaced = true;
            '_'
        }
    }));
    replaced
}

/// FNV-1a, 64 bit, over `parts` in order (as if concatenated): stable across Rust versions and
/// platforms, unlike `DefaultHasher`, so a label computed before an upgrade equals the one
/// computed after it.
fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv5_labels_are_deterministic_and_portable() {
        let a = Label::for_batch("starwal", "orders", Lsn(0x16B3748), Lsn(0x16B37A0));
        let b = Label::for_batch("starwal", "orders", Lsn(0x16B3748), Lsn(0x16B37A0));
        assert_eq!(a, b);
        assert_eq!(
            a.as_str(),
            "starwal_starwal_orders_00000000016B3748_00000000016B37A0"
        );
        let other = Label::for_batch("starwal", "orders", Lsn(0x16B3748), Lsn(0x16B37A1));
        assert_ne!(a, other);
    }

    #[test]
    fn names_that_sanitize_alike_get_different_labels() {
        let dash = Label::for_batch("s", "order-items", Lsn(1), Lsn(2));
        let underscore = Label::for_batch("s", "order_items", Lsn(1), Lsn(2));
        assert_ne!(dash, underscore);
        let accented = Label::for_batch("s", "café", Lsn(1), Lsn(2));
        let other = Label::for_batch("s", "cafè", Lsn(1), Lsn(2));
        assert_ne!(accented, other);
        assert!(dash
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_'));
        assert_eq!(dash, Label::for_batch("s", "order-items", Lsn(1), Lsn(2)));
    }

    #[test]
    fn long_labels_are_hashed_to_128_characters() {
        let long_table = "t".repeat(200);
        let a = Label::for_batch("slot", &long_table, Lsn(1), Lsn(2));
        let b = Label::for_batch("slot", &long_table, Lsn(1), Lsn(3));
        assert_eq!(a.as_str().len(), MAX_LABEL_LEN);
        assert_ne!(a, b, "the hash keeps different ranges apart");
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_'));
        assert_eq!(a, Label::for_batch("slot", &long_table, Lsn(1), Lsn(2)));
    }

    #[test]
    fn change_labels_keep_slot_table_pairs_apart_and_name_parts() {
        let at = |commit, seq| ChangePosition {
            commit: Lsn(commit),
            seq,
        };
        let a = Label::for_changes("sw_eu", "orders", at(0x10, 1), at(0x20, 7), 0);
        let b = Label::for_changes("sw", "eu_orders", at(0x10, 1), at(0x20, 7), 0);
        assert_ne!(a, b, "pairs whose text runs together");
        assert!(
            a.as_str().starts_with("starwal_sw_eu_orders_")
                && a.as_str()
                    .ends_with("_0000000000000010_1_0000000000000020_7"),
            "{a}"
        );
        let part = Label::for_changes("sw_eu", "orders", at(0x10, 1), at(0x20, 7), 2);
        assert_eq!(part.as_str(), format!("{a}_p2"));
        assert_eq!(
            a,
            Label::for_changes("sw_eu", "orders", at(0x10, 1), at(0x20, 7), 0)
        );
    }

    #[test]
    fn labels_keep_their_exact_form() {
        // Labels must not change across versions: a batch re-formed after an upgrade has to be
        // recognised by the label recorded before it.
        let at = |commit, seq| ChangePosition {
            commit: Lsn(commit),
            seq,
        };
        assert_eq!(
            Label::for_changes("sw", "order-items", at(0x10, 1), at(0x20, 7), 2).as_str(),
            "starwal_sw_order_items_e0f8bac2_0000000000000010_1_0000000000000020_7_p2"
        );
        assert_eq!(
            Label::for_copy("sw", "orders", 0x1f, 3, 0).as_str(),
            "starwal_sw_orders_5198b874_c1f_3_0"
        );
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(&[b""]), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(&[b"a", b"", b"bc"]), fnv1a64(&[b"abc"]));
    }
}
