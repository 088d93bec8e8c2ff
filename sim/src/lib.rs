//! `starrocks-sim`: a StarRocks-compatible **test and demo stand-in** for starwal — not a database.
//!
//! It will emulate the FE/BE Stream Load HTTP endpoints and the MySQL-protocol side closely enough
//! for starwal's tests (see the StarRocks issue). Until then this crate is intentionally empty: the
//! Postgres side of starwal does not depend on it.
