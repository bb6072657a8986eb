//! Fixative's detection engine.
//!
//! Pure and synchronous: the proxy gathers [`RequestFacts`], calls
//! [`Engine::evaluate`], and acts on the returned [`Verdict`]. Nothing here
//! does I/O, so the same engine runs in the proxy, in `fixative explain`
//! and in tests.

pub mod catalog;
mod engine;
pub mod netset;
pub mod network;
pub mod policy;
pub mod selfdeclared;
pub mod state;
mod verdict;

pub use catalog::{Catalog, Crawler};
pub use engine::{
    Engine, HeaderLookup, NoHeaders, Rdns, RequestFacts, StateSizes, name_under, request_kind,
    weights,
};
pub use verdict::{Action, Category, LimitInfo, Reason, Verdict};
