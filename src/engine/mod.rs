//! The engine: what runs the product end to end. Today it holds the setup steps both commands
//! share ([`setup`]: source and table checks, publication, slot) and [`teardown`]; the replication
//! lifecycle (`starwal run`: setup → snapshot → CDC → drain) is the engine issue's work.

pub mod check;
pub mod setup;
pub mod teardown;
