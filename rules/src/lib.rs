//! Fixative's detection engine.
//!
//! Pure and synchronous: the proxy gathers [`RequestFacts`], calls
//! [`Engine::evaluate`], and acts on the returned [`Verdict`]. Nothing here
//! does I/O, so the same engine runs in the proxy, in `fixative explain`
//! and in tests.

pub mod botauth;
pub mod browsers;
pub mod catalog;
mod engine;
pub mod fingerprint;
pub mod fleet;
pub mod netset;
pub mod network;
pub mod pass;
pub mod policy;
pub mod selfdeclared;
pub mod state;
pub mod tls;
pub mod uacache;
mod verdict;

pub use catalog::{Catalog, Crawler};
pub use engine::{
    BuildError, Engine, HeaderLookup, Known, NoHeaders, Rdns, RequestFacts, StateSizes, name_under,
    request_kind,
};
pub use fixative_config::weights;
pub use verdict::{Action, Category, LimitInfo, Reason, Verdict};
