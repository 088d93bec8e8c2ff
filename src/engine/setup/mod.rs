//! Setup: make the source (and, later, the target) ready before streaming, idempotently.
//!
//! Setup creates what is missing and never drops what it finds (invariant 5): a publication gets
//! the missing tables added, an existing slot is reused as it is. Problems are reported all at
//! once with the fix, because a user fixing them one restart at a time is a poor first hour.

pub mod error;
pub mod postgres;
pub mod target;

pub use error::SetupError;
