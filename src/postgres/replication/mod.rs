//! The replication side of Postgres: a `replication=database` connection ([`connection`]), the
//! replication commands ([`commands`]), the CopyBoth stream ([`stream`]) and the feedback rules
//! that decide what we tell the server we have written and flushed ([`feedback`]).
//!
//! Invariants protected here: 1 (no early confirm), 2 (feedback keeps flowing), 3 (idle slots
//! advance). See `feedback.rs` for the rules and their tests.

pub mod commands;
pub mod connection;
pub mod error;
pub mod feedback;
pub mod session;
pub mod stream;

pub use commands::{CreatedSlot, SlotSnapshot, StartOptions, Streaming, SystemIdentity};
pub use connection::{QueryResult, ReplicationConnection};
pub use error::{PgError, ReplicationError};
pub use feedback::{FeedbackTracker, StandbyStatus};
pub use stream::{Keepalive, ReplicationStream, StreamEvent, XLogData};
