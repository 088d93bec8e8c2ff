//! Everything that speaks to PostgreSQL: connection parameters and TLS, the replication-protocol
//! connection, the CopyBoth stream with its feedback discipline, the pgoutput parser and value
//! decoding. Nothing here knows about StarRocks.

pub mod catalog;
pub mod checkpoint;
pub mod conninfo;
pub mod heartbeat;
pub mod pgoutput;
pub mod replication;
pub mod row_codec;
pub mod snapshot;
pub mod sql;
pub mod state_table;
pub mod tls;
pub mod value;

/// The protocol numbers, re-exported: Postgres is where they come from, and callers name them
/// `postgres::Lsn`; they live in the leaf module `crate::lsn` so `schema.rs` needs nothing here.
pub use crate::lsn::{ChangePosition, Lsn, Oid, Xid};

/// Session settings every connection starwal opens pins at startup. Postgres formats values as
/// text with the session's settings — pgoutput with the walsender's, COPY and `::text` with the
/// SQL session's — so pinning them on both kinds of connection gives one text for one value:
/// timestamptz in UTC, ISO dates, ISO 8601 intervals, floats that round-trip exactly.
pub const SESSION_SETTINGS: [(&str, &str); 4] = [
    ("DateStyle", "ISO"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "iso_8601"),
    ("extra_float_digits", "3"),
];
