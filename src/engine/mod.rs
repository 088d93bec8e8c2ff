//! (being written)
pub mod setup;
