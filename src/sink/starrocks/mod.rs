//! The StarRocks sink: Stream Load over HTTP (libcurl), deterministic labels, outcome and error
//! classification, the JSON bodies, type mapping, and target setup over the MySQL protocol.
//!
//! Files have fixed roles: `config.rs` (settings), `stream_load.rs` (transport and retries),
//! `response.rs` (answers), `error.rs` (retry decisions), `label.rs` (idempotency keys),
//! `encoding.rs` (rows → JSON bodies), `mapping.rs` (Postgres → StarRocks types, DDL),
//! `setup.rs` (database, tables, added columns, TRUNCATE over MySQL), `transaction.rs` (the
//! transaction interface: a StarRocks transaction over several parts, two-phase commit).

pub mod config;
pub mod encoding;
pub mod error;
pub mod label;
pub mod mapping;
pub mod response;
pub mod setup;
pub mod stream_load;
pub mod transaction;

pub use config::{Compression, DeleteMode, StarRocksConfig};
pub use error::StreamLoadError;
pub use label::Label;
pub use stream_load::{ProbeFound, RetryPolicy, StarRocksSink, StreamLoadClient};
