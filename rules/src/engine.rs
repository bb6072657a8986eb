//! The engine: request facts in, verdict out.

use std::net::IpAddr;

use crate::verdict::Verdict;

/// What the proxy knows about a request when it asks for a verdict.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The client's address (after trusted-proxy resolution).
    pub client_ip: IpAddr,
    /// Request method.
    pub method: &'a str,
    /// Host, lower-case, without port.
    pub host: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// `User-Agent`, if sent.
    pub user_agent: Option<&'a str>,
}

/// The detection engine, built once per configuration.
#[derive(Debug, Default)]
pub struct Engine {}

impl Engine {
    /// Builds the engine.
    pub fn new() -> Engine {
        Engine {}
    }

    /// Decides what to do with a request.
    pub fn evaluate(&self, _facts: &RequestFacts<'_>) -> Verdict {
        Verdict::allow()
    }
}
