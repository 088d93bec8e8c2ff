//! Newtypes for the protocol numbers Postgres hands us: WAL positions ([`Lsn`]), object ids
//! ([`Oid`]) and transaction ids ([`Xid`]). Wrapping them keeps a relation id from ever being
//! compared with a WAL position, and gives every LSN the `X/Y` form Postgres users know.

use std::fmt;
use std::str::FromStr;

/// A WAL position: the byte offset in the write-ahead log, shown as `X/Y` (hex high/low 32 bits).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`: "no position"; `START_REPLICATION` treats it as "from the slot's confirmed position".
    pub const ZERO: Lsn = Lsn(0);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

/// Where one change sits in the stream, stable across replays: its transaction's commit LSN
/// (`Begin.final_lsn`) and its ordinal (from 1) among that transaction's changes to the same
/// table. Commit LSNs grow in stream order, so positions order a table's changes; a change's
/// own WAL position would not (transactions interleave in the WAL, and a multi-insert record
/// carries many rows under one LSN). A replay of the same transaction numbers its changes the
/// same way, so a batch's range names the same changes after a restart (invariant 5).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangePosition {
    pub commit: Lsn,
    pub seq: u32,
}

impl fmt::Display for ChangePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.commit, self.seq)
    }
}

impl fmt::Debug for ChangePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChangePosition({self})")
    }
}

/// A string that is not of the form `X/Y` with two hex numbers of at most 32 bits each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN `{0}`: expected the form X/Y with hexadecimal X and Y, e.g. 0/16B3748")]
pub struct ParseLsnError(pub String);

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLsnError(s.to_owned());
        let (high, low) = s.split_once('/').ok_or_else(err)?;
        let valid = |part: &str| {
            !part.is_empty() && part.len() <= 8 && part.bytes().all(|b| b.is_ascii_hexdigit())
        };
        if !valid(high) || !valid(low) {
            return Err(err());
        }
        let high = u32::from_str_radix(high, 16).map_err(|_| err())?;
        let low = u32::from_str_radix(low, 16).map_err(|_| err())?;
        Ok(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

/// A Postgres object id (relation, type).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Oid(pub u32);

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A Postgres transaction id.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Xid(pub u32);

impl fmt::Display for Xid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trips_through_text() {
        for text in ["0/0", "0/16B3748", "FFFFFFFF/FFFFFFFF", "1/0"] {
            assert_eq!(text.parse::<Lsn>().unwrap().to_string(), text);
        }
        assert_eq!("0/16b3748".parse::<Lsn>().unwrap(), Lsn(0x16B3748));
    }

    #[test]
    fn lsn_rejects_malformed_text() {
        for text in [
            "",
            "/",
            "0/",
            "/1",
            "0-1",
            "1/2/3",
            "123456789/0",
            "g/0",
            "+1/0",
        ] {
            assert!(text.parse::<Lsn>().is_err(), "{text:?} parsed");
        }
    }
}
