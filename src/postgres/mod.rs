//! Everything that speaks to PostgreSQL: connection parameters and TLS, the replication-protocol
//! connection, the CopyBoth stream with its feedback discipline, the pgoutput parser and value
//! decoding. Nothing here knows about StarRocks.

pub mod checkpoint;
pub mod conninfo;
pub mod heartbeat;
pub mod lsn;
pub mod pgoutput;
pub mod replication;
pub mod tls;
pub mod value;

pub use lsn::{ChangePosition, Lsn, Oid, Xid};
