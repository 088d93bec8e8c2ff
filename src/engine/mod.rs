//! The engine: what runs the product end to end — the lifecycle of `starwal run` ([`run`]), the
//! setup steps shared by `run`, `check` and `tail` ([`setup`]: source and table checks,
//! publication, slot), the snapshot copies ([`snapshot`]), [`check`] and [`teardown`]. The state
//! it shares with the control plane is [`crate::state`].

pub mod check;
pub mod run;
pub mod setup;
pub mod snapshot;
pub mod teardown;

pub use run::run;
