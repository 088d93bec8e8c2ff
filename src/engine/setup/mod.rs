//! Setup: make the source and the target ready before streaming, idempotently, in two phases:
//! [`inspect`] checks both sides read-only (what `starwal check` prints), and only when every
//! check passed does setup create anything — the target's database and tables, the state
//! schema, the publication, and the slot last (invariant 13: a failed start leaves no slot
//! holding WAL).
//!
//! Setup creates what is missing and never drops what it finds (invariant 5): a publication gets
//! the missing tables added, an existing slot is reused as it is. Problems are reported all at
//! once with the fix, because a user fixing them one restart at a time is a poor first hour.

pub mod error;
pub mod inspect;
pub mod postgres;
pub mod target;

pub use error::SetupError;
