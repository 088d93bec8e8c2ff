//! The engine: what runs the product end to end — the lifecycle of `starwal run` ([`run()`], which
//! returns when the engine stops and never ends the process: signals, the control plane and the
//! shutdown timeout are the CLI's), the setup steps shared by `run`, `check` and `tail`
//! ([`setup`]: prerequisites, publication, slot), the snapshot copies ([`snapshot`]), [`check`],
//! [`teardown`] and [`verify`]. The state it shares with the control plane is [`crate::state`].

pub mod check;
mod error;
pub mod monitor;
pub mod run;
pub mod setup;
pub mod snapshot;
pub mod teardown;
pub mod verify;

pub use run::{run, RunEnd};
