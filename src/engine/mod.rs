//! The engine: what runs the product end to end — the lifecycle of `starwal run` ([`run`]), the
//! setup steps shared by `run`, `check` and `tail` ([`setup`]: source and table checks,
//! publication, slot), the state the control plane reads ([`state`]), [`check`] and
//! [`teardown`].

pub mod check;
pub mod run;
pub mod setup;
pub mod snapshot;
pub mod state;
pub mod teardown;

pub use run::run;
