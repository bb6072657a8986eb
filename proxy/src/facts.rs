//! What the engine needs from a Pingora session: request headers, the
//! client's raw HTTP/1 header bytes and its TLS ClientHello.

use smallvec::SmallVec;
use std::sync::Arc;

use bytes::Bytes;
use fixative_rules::HeaderLookup;
use pingora::proxy::Session;

use crate::state::Shared;

/// Header lookup over Pingora's request headers.
pub(crate) struct HeaderMapLookup<'a>(
    pub(crate) &'a http::HeaderMap,
    pub(crate) Option<Bytes>,
    pub(crate) Option<Arc<fixative_rules::tls::ClientHello>>,
    /// The scheme the client used and the authority it asked for.
    pub(crate) &'static str,
    pub(crate) Option<&'a str>,
);

impl HeaderLookup for HeaderMapLookup<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
    fn raw(&self) -> Option<&[u8]> {
        self.1.as_deref()
    }
    fn client_hello(&self) -> Option<&fixative_rules::tls::ClientHello> {
        self.2.as_deref()
    }
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.0
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
    fn scheme(&self) -> Option<&str> {
        Some(self.3)
    }
    fn authority(&self) -> Option<&str> {
        self.4
    }
    /// Across every `Cookie` header: HTTP/2 clients send one per cookie.
    fn cookie(&self, name: &str) -> Option<&str> {
        fixative_rules::pass::cookie_value(
            self.0
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            name,
        )
    }
}

/// The client's TLS ClientHello: read by Fixative on its TLS listener, or
/// the JA4 a trusted load balancer puts in `detection.ja4_header`.
pub(crate) fn client_hello(
    session: &Session,
    shared: &Shared,
    cfg: &fixative_config::Config,
    peer_trusted: bool,
) -> Option<Arc<fixative_rules::tls::ClientHello>> {
    if peer_trusted {
        let name = cfg.detection.ja4_header.as_deref()?;
        let v = session.req_header().headers.get(name)?.to_str().ok()?;
        return fixative_rules::tls::ClientHello::from_ja4(v.trim()).map(Arc::new);
    }
    let peer = session.client_addr()?.as_inet()?;
    shared.hellos.get(peer)
}

/// The client's own HTTP/1 header bytes, for the header fingerprint: not
/// over HTTP/2, and not when the peer is a trusted proxy (which may have
/// re-written order and casing).
pub(crate) fn raw_client_headers(session: &Session, peer_trusted: bool) -> Option<Bytes> {
    if peer_trusted {
        return None;
    }
    session
        .downstream_session
        .as_http1()
        .map(|s| s.get_headers_raw_bytes())
}

/// Every value of a request header that is valid text (inline up to two:
/// a forwarding header almost always comes once, and no allocation).
/// Looked up by a pre-built `HeaderName` where one exists (a `&str` is
/// parsed on every lookup).
pub(crate) fn header_values(
    session: &Session,
    name: impl http::header::AsHeaderName,
) -> SmallVec<[&str; 2]> {
    session
        .req_header()
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}
