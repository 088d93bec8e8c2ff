//! starwal: replicates PostgreSQL tables into StarRocks Primary Key tables in real time.
//!
//! The binary (`main.rs`, `cli.rs`) is glue; the work happens in these modules, in the order data
//! flows: [`postgres`] reads the WAL (connection, replication stream, [`postgres::pgoutput`] parser,
//! [`postgres::value`] decoding), [`engine`] sets things up and drives them, and [`tail`] prints the
//! decoded changes as JSON lines. See `ARCHITECTURE.md` for where new code goes.

pub mod cli;
pub mod config;
pub mod config_error;
pub mod control;
pub mod engine;
pub mod lsn;
pub mod pipeline;
pub mod postgres;
pub mod schema;
pub mod secret;
pub mod sink;
pub mod state;
pub mod tail;
