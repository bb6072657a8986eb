//! Fixative's detection engine.
//!
//! Pure and synchronous: the proxy gathers [`RequestFacts`], calls
//! [`Engine::evaluate`], and acts on the returned [`Verdict`]. Nothing here
//! does I/O, so the same engine runs in the proxy, in `fixative explain`
//! and in tests.

pub mod catalog;
mod engine;
mod verdict;

pub use catalog::{Catalog, Crawler};
pub use engine::{Engine, Policy, RequestFacts, SUSPICIOUS_SCORE};
pub use verdict::{Action, Category, Reason, Verdict};
