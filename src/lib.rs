//! starwal: replicates PostgreSQL tables into StarRocks Primary Key tables in real time.
//!
//! The binary (`main.rs`, `cli.rs`) is glue: the CLI parses the command line and owns the process
//! (runtime, signals, control-plane start, exit codes). Below it, every import points down:
//! - [`engine`] runs `starwal run` (setup, the snapshot copies, attempts with backoff), `check`
//!   and `teardown`; [`tail`] prints decoded changes as JSON lines; [`top`] is the live terminal
//!   view over a running agent's control server; [`control`] serves gRPC and Prometheus from the
//!   shared state;
//! - [`pipeline`] turns decoded stream messages into StarRocks loads and back into the confirmed
//!   LSN;
//! - [`sink`] writes to StarRocks (Stream Load, MySQL-protocol setup, encoding); [`postgres`]
//!   reads the source (connection and TLS, the replication stream and its feedback, the
//!   [`postgres::pgoutput`] parser, [`postgres::value`] decoding, the catalog, the snapshot
//!   reader, the checkpoint store); [`config`] reads the environment;
//! - shared leaf types: [`state`] (the `EngineHandle` the engine, pipeline and control plane
//!   share), [`schema`], [`lsn`], [`secret`], [`config_error`].
//!
//! See `ARCHITECTURE.md` for the module map and where new code goes.

pub mod cli;
pub mod config;
pub mod config_error;
pub mod control;
pub mod engine;
pub mod error_text;
pub mod lsn;
pub mod pipeline;
pub mod postgres;
pub mod schema;
pub mod secret;
pub mod sink;
pub mod state;
pub mod tail;
pub mod top;
