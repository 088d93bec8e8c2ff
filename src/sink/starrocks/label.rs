//! Deterministic Stream Load labels: `starwal_<slot>_<table>_<first lsn>_<last lsn>`.
//!
//! A label is StarRocks' idempotency key (unique per database). Deriving it from the slot and the
//! LSN range means the same batch always gets the same label — after a retry, a crash or a
//! restart — so StarRocks answers `Label Already Exists` instead of applying a batch twice
//! (invariant 5). Labels keep to `[A-Za-z0-9_]` (the portable subset of StarRocks' label syntax)
//! and at most 128 characters; longer ones keep a readable prefix and end in a hash of the whole.

use std::fmt;

use crate::postgres::{ChangePosition, Lsn};

/// StarRocks' label length limit.
pub const MAX_LABEL_LEN: usize = 128;

/// A Stream Load label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label(String);

impl Label {
    /// The label of the batch of target table `table` covering `first..=last` of slot `slot`.
    /// Target names are unique within the StarRocks database, as labels must be.
    pub fn for_batch(slot: &str, table: &str, first: Lsn, last: Lsn) -> Label {
        let mut label = String::with_capacity(64);
        label.push_str("starwal_");
        let mut lossy = push_sanitized(&mut label, slot);
        label.push('_');
        lossy |= push_sanitized(&mut label, table);
        use std::fmt::Write as _;
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
        let mut label = String::with_capacity(96);
        label.push_str("starwal_");
        push_sanitized(&mut label, slot);
        label.push('_');
        push_sanitized(&mut label, table);
        use std::fmt::Write as _;
        let names = fnv1a64(format!("{slot}\u{0}{table}").as_bytes());
        let _ = write!(
            label,
            "_{:08x}_{:016X}_{}_{:016X}_{}",
            names as u32, first.commit.0, first.seq, last.commit.0, last.seq
        );
        if part > 0 {
            let _ = write!(label, "_p{part}");
        }
        Label::finish(label, false, slot, table)
    }

    /// The label of part `part` of chunk `chunk` of a snapshot copy of target table `table`:
    /// `starwal_<slot>_<table>_<names hash>_c<run>_<chunk>_<part>`. `run` is unique per copy run
    /// (a chunk read again after a crash holds other rows, so it must not be taken for the
    /// earlier attempt's load); loading a chunk twice is harmless, as every row is a full image.
    pub fn for_copy(slot: &str, table: &str, run: u64, chunk: u32, part: u32) -> Label {
        let mut label = String::with_capacity(96);
        label.push_str("starwal_");
        push_sanitized(&mut label, slot);
        label.push('_');
        push_sanitized(&mut label, table);
        use std::fmt::Write as _;
        let names = fnv1a64(format!("{slot}\u{0}{table}").as_bytes());
        let _ = write!(label, "_{:08x}_c{run:x}_{chunk}_{part}", names as u32);
        Label::finish(label, false, slot, table)
    }

    fn finish(mut label: String, lossy: bool, slot: &str, table: &str) -> Label {
        use std::fmt::Write as _;
        if lossy {
            // Sanitizing merged names (`order-items` and `order_items`): a hash of the raw names
            // keeps their labels apart, or one table's batch would be taken as the other's.
            let raw = format!("{slot}\u{0}{table}");
            let _ = write!(label, "_{:016x}", fnv1a64(raw.as_bytes()));
        }
        if label.len() > MAX_LABEL_LEN {
            // Keep the start readable; the hash of the whole keeps distinct batches distinct.
            let hash = fnv1a64(label.as_bytes());
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

/// FNV-1a, 64 bit: stable across Rust versions and platforms, unlike `DefaultHasher`, so a label
/// computed before an upgrade equals the one computed after it.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_deterministic_and_portable() {
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
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }
}
