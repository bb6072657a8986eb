//! What the engine needs from a Pingora session — request headers, the
//! client's raw HTTP/1 header bytes, its TLS ClientHello, the scheme —
//! and the engine's verdict on them ([`verdict`]).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use fixative_rules::state::RequestKind;
use fixative_rules::{HeaderLookup, RequestFacts, Verdict};
use pingora::proxy::Session;
use smallvec::SmallVec;

use crate::forwarding;
use crate::runtime::Runtime;
use crate::service::Ctx;
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

/// The request's kind (page, image, ...) from its path and `Accept`;
/// `early_request_filter` keeps it in `Ctx::kind` for the later phases.
pub(crate) fn request_kind(session: &Session) -> RequestKind {
    let req = session.req_header();
    let accept = req
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    fixative_rules::request_kind(req.uri.path(), accept)
}

/// The kind `early_request_filter` kept, or worked out now for a request
/// that did not pass through it.
pub(crate) fn kind(session: &Session, ctx: &Ctx) -> RequestKind {
    ctx.kind.unwrap_or_else(|| request_kind(session))
}

/// The scheme the client used: `https` on the TLS listener, what a trusted
/// load balancer says in `X-Forwarded-Proto`, else `http`.
fn request_scheme(session: &Session, tls_listener: bool, peer_trusted: bool) -> &'static str {
    if tls_listener {
        return "https";
    }
    let forwarded = session
        .req_header()
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok());
    match forwarded {
        Some(p) if peer_trusted && p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    }
}

/// The engine's verdict on the request: its facts (headers, raw header
/// bytes, ClientHello, scheme and authority, cached reverse DNS, the
/// request kind and user-agent class worked out once) gathered from the
/// session, evaluated under the site's policy. Starts reverse-DNS lookups
/// in the background for crawlers that want one (this request stays
/// unverified).
pub(crate) fn verdict(
    shared: &Shared,
    session: &Session,
    ctx: &Ctx,
    rt: &Runtime,
    peer: IpAddr,
    tls_listener: bool,
) -> Verdict {
    let path = session
        .req_header()
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let method = session.req_header().method.as_str();
    let policy = rt
        .sites
        .get(ctx.site.unwrap_or(0))
        .map(|s| s.policy.as_str())
        .unwrap_or("default");
    // Reverse DNS: use a cached answer; otherwise look it up in the
    // background for later requests (this one stays unverified).
    let ua = session
        .req_header()
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Classified once: for reverse DNS here, passed on to the engine.
    let ua_class = rt.engine.classify_ua(ua);
    let rdns_cached = if rt.engine.rdns_wanted(&ua_class) {
        let c = shared.rdns.cached(ctx.client_ip);
        if c == crate::rdns::Cached::Unknown {
            shared
                .rdns
                .spawn_verify(ctx.client_ip, rt.rdns_suffixes.clone());
        }
        c
    } else {
        crate::rdns::Cached::Unknown
    };
    let peer_trusted = forwarding::is_trusted(peer, &rt.config.server.trusted_proxies);
    let headers = HeaderMapLookup(
        &session.req_header().headers,
        raw_client_headers(session, peer_trusted),
        if tls_listener || peer_trusted {
            client_hello(session, shared, &rt.config, peer_trusted)
        } else {
            None
        },
        request_scheme(session, tls_listener, peer_trusted),
        session
            .req_header()
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                session
                    .req_header()
                    .headers
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
            }),
    );
    let facts = RequestFacts {
        now: ctx.now,
        client_ip: ctx.client_ip,
        method,
        host: &ctx.host,
        path,
        user_agent: headers.get("user-agent"),
        headers_known: true,
        header: &headers,
        http10: session.req_header().version == http::Version::HTTP_10,
        rdns: match &rdns_cached {
            crate::rdns::Cached::Unknown => fixative_rules::Rdns::Unknown,
            crate::rdns::Cached::Failed => fixative_rules::Rdns::Failed,
            crate::rdns::Cached::Confirmed(n) => fixative_rules::Rdns::Confirmed(n),
        },
        unix_time: crate::challenge::unix_now(),
        known: fixative_rules::Known {
            kind: ctx.kind,
            user_agent: Some(ua_class),
        },
    };
    rt.engine.evaluate(&facts, policy)
}
