//! `starrocks-sim`: a StarRocks-compatible **test and demo stand-in** for starwal — not a database.
//!
//! It emulates the parts of StarRocks that starwal talks to, closely enough for end-to-end tests
//! and demos on machines where StarRocks cannot run: the FE and BE Stream Load HTTP endpoints
//! (307 redirect, `Expect: 100-continue`, labels, the transaction interface) over an in-memory
//! [`catalog`] of Primary Key tables, with fault injection and per-table counters, and the FE's
//! MySQL protocol ([`mysql`]: metadata, DDL, asynchronous ALTER jobs, verification SELECTs) over
//! the same catalog. The protocol facts it follows
//! are in the team's `reference/starrocks-stream-load.md`; what it leaves out is in `README.md`.
//!
//! It exists to make starwal's invariants testable without StarRocks: no early confirm (1) and
//! restart-resumes (5) need committed-vs-visible and label outcomes to be exact; no silent loss
//! (6) needs filtered rows and the `ErrorURL` text; sink outages (7) need the failures of reference
//! §8 on demand. Rows become visible only when a load's transaction commits.
//!
//! ```no_run
//! use starrocks_sim::{Sim, SimOptions};
//! use starrocks_sim::catalog::{ColumnDef, ColumnType, TableSpec};
//!
//! let sim = Sim::start(SimOptions { password: "pw".into(), ..SimOptions::default() }).unwrap();
//! sim.catalog().create_database("db").unwrap();
//! sim.catalog()
//!     .create_table(
//!         "db",
//!         TableSpec::new("t")
//!             .column(ColumnDef::new("id", ColumnType::BigInt).not_null())
//!             .column(ColumnDef::new("v", ColumnType::Varchar { length: 64 }))
//!             .primary_key(&["id"]),
//!     )
//!     .unwrap();
//! println!("Stream Load to {}/api/db/t/_stream_load", sim.fe_url());
//! ```

pub mod catalog;
mod counters;
mod faults;
mod http;
mod instance;
mod load;
pub mod mysql;
mod persist;
mod state;
mod txn;

pub use counters::{
    body_digest, LabelCounters, TableCounters, TxnEvent, MAX_FILTER_RATIO_ABSENT, MAX_TXN_EVENTS,
};
pub use faults::{
    FaultKind, FaultState, Faults, LoadFault, ServerFaults, ServerRole, TxnEffect, TxnOp,
};
pub use instance::{
    parse_starrocks_version, Sim, SimAddrs, SimError, SimOptions, TableRows,
    DEFAULT_STARROCKS_VERSION,
};
pub use load::options::{SizeLimits, DEFAULT_JSON_MAX_BYTES, DEFAULT_STREAMING_LOAD_MAX_BYTES};
pub use state::CatalogHandle;
pub use txn::TxnStatus;
