//! The Pingora `ProxyHttp` implementation: one method per phase, each
//! doing its phase's job and calling the module that does the work —
//! `facts` (the engine's verdict from the session), `verdicts` (challenge
//! and tarpit verdicts, Fixative's own endpoints), `responses` (every
//! response Fixative writes itself), `forwarding` (headers to the
//! origin), `directives` and `bodies` (what changes in the origin's
//! response), `errors` (failures as responses), `access_log`, `metrics`
//! and `record` (what a finished request leaves behind).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use fixative_rules::state::RequestKind;
use fixative_rules::{Action, Verdict};
use http::HeaderValue;
use pingora::ErrorType;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use crate::access_log;
use crate::directives::{self, WellKnown};
use crate::facts::header_values;
use crate::forwarding;
use crate::names;
use crate::pages;
use crate::responses::{
    frame_for_client, ratelimit_headers, respond_html, respond_limited, serve_cloaked,
    serve_signed, serve_well_known,
};
use crate::runtime::{Runtime, normalize_host};
use crate::state::Shared;
use crate::value::{Values, header_value};

/// Per-request context.
pub struct Ctx {
    /// When the request started.
    pub(crate) started: Instant,
    /// Request id (also `X-Request-Id`).
    pub(crate) request_id: crate::state::RequestId,
    /// The request id as the header value sent upstream, for the response.
    pub(crate) request_id_value: Option<HeaderValue>,
    /// The configuration generation this request uses.
    pub(crate) runtime: Option<Arc<Runtime>>,
    /// Index of the routed site.
    pub(crate) site: Option<usize>,
    /// The client's address after trusted-proxy resolution.
    pub(crate) client_ip: IpAddr,
    /// Host as routed (lower-case, no port).
    pub(crate) host: String,
    /// The engine's verdict.
    pub(crate) verdict: Verdict,
    /// The origin failed (for the error metric).
    pub(crate) upstream_failed: bool,
    /// Engine time of the request.
    pub(crate) now: std::time::Duration,
    /// A GET for an HTML page (by path and Accept).
    pub(crate) page_request: bool,
    /// The kind of resource asked for (by path and Accept), worked out
    /// once in `early_request_filter` and passed on to the engine.
    pub(crate) kind: Option<RequestKind>,
    /// The streaming HTML rewriter of this response, when active (boxed:
    /// the rewriter is ~1 KiB, which every request's context and the
    /// futures holding it would otherwise carry and copy).
    pub(crate) html: Option<Box<std::sync::Mutex<crate::html::HtmlInjector>>>,
    /// XMP metadata being inserted into a streaming image, when active.
    pub(crate) image: Option<fixative_protector::xmp::XmpStream>,
    /// The routed site's request body cap, and the body bytes seen so far.
    pub(crate) max_body: Option<u64>,
    pub(crate) body_bytes: u64,
    /// The protected variant served (its source) and its watermark
    /// payload, for the evidence ledger.
    pub(crate) variant: Option<(&'static str, Option<u64>)>,
    /// The `[[site.preference]]` that applies to this response (`None`:
    /// the site's default): by path, or as the origin named it.
    pub(crate) pref: Option<usize>,
}

/// The directives of the request's site; the default site's (or the first
/// site's) for requests that matched none, so that Fixative's own pages
/// carry them too.
pub(crate) fn ctx_directives(ctx: &Ctx) -> Option<&fixative_config::Directives> {
    let rt = ctx.runtime.as_ref()?;
    let i = ctx.site.or(rt.config.default_site).unwrap_or(0);
    rt.sites.get(i).map(|s| s.variant(ctx.pref).0)
}

/// A peer for one of the site's upstreams, with the configured timeouts.
pub(crate) fn site_peer(rt: &Runtime, i: usize) -> Result<HttpPeer> {
    let Some(site) = rt.sites.get(i) else {
        return Err(Error::explain(
            ErrorType::InternalError,
            "site index out of range",
        ));
    };
    if let Some(peer) = &site.peer {
        return Ok(peer.clone());
    }
    // Prefer a healthy backend; when none is healthy, try one anyway so
    // that a flapping check never turns a working origin into errors.
    let backend = site
        .balancer
        .select(b"", 256)
        .or_else(|| site.balancer.select_with(b"", 256, |_, _| true))
        .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "no upstream"))?;
    // The pool is built from the configuration's IP socket addresses.
    let Some(addr) = backend.addr.as_inet() else {
        return Err(Error::explain(ErrorType::ConnectNoRoute, "no upstream"));
    };
    Ok(peer_for(
        *addr,
        site.tls_sni.as_deref(),
        site.tls_verify,
        &rt.config.server,
    ))
}

/// A peer for `addr` with the configured timeouts (and TLS to the origin
/// when `tls_sni` is set).
pub(crate) fn peer_for(
    addr: std::net::SocketAddr,
    tls_sni: Option<&str>,
    tls_verify: bool,
    s: &fixative_config::Server,
) -> HttpPeer {
    let tls = tls_sni.is_some();
    let mut peer = HttpPeer::new(addr, tls, tls_sni.unwrap_or_default().to_string());
    peer.options.connection_timeout = Some(s.upstream_connect_timeout);
    peer.options.total_connection_timeout = Some(s.upstream_connect_timeout * 2);
    peer.options.read_timeout = Some(s.upstream_read_timeout);
    peer.options.write_timeout = Some(s.upstream_read_timeout);
    peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
    if tls {
        peer.options.verify_cert = tls_verify;
        peer.options.verify_hostname = tls_verify;
        peer.options.alpn = pingora::protocols::ALPN::H2H1;
    }
    peer
}

/// The proxy application.
pub struct FixativeProxy {
    shared: Arc<Shared>,
    tls_listener: bool,
}

impl FixativeProxy {
    /// Creates the application; `tls_listener` says whether this service
    /// terminates TLS (for `X-Forwarded-Proto`).
    pub fn new(shared: Arc<Shared>, tls_listener: bool) -> FixativeProxy {
        FixativeProxy {
            shared,
            tls_listener,
        }
    }

    /// Whether the client reached Fixative over HTTPS (itself, or a
    /// trusted proxy saying so): cookies then get `Secure`.
    fn secure(&self, session: &Session, peer: IpAddr, cfg: &fixative_config::Config) -> bool {
        self.tls_listener
            || (forwarding::is_trusted(peer, &cfg.server.trusted_proxies)
                && header_values(session, names::X_FORWARDED_PROTO.name())
                    .first()
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
    }

    fn site_name<'a>(&self, ctx: &'a Ctx) -> &'a str {
        match (&ctx.runtime, ctx.site) {
            (Some(rt), Some(i)) => rt
                .sites
                .get(i)
                .map(|s| s.name.as_str())
                .unwrap_or("unknown"),
            _ => "unknown",
        }
    }
}

#[async_trait]
impl ProxyHttp for FixativeProxy {
    type CTX = Ctx;

    /// A fresh context per request: its id, the start time, no verdict yet.
    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            request_id: self.shared.next_request_id(),
            request_id_value: None,
            runtime: None,
            site: None,
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            host: String::new(),
            verdict: Verdict::allow(),
            upstream_failed: false,
            now: std::time::Duration::ZERO,
            page_request: false,
            kind: None,
            html: None,
            image: None,
            max_body: None,
            body_bytes: 0,
            variant: None,
            pref: None,
        }
    }

    /// First hook of every request, before Pingora's downstream modules:
    /// marks the connection's request as Fixative's (so Pingora's own
    /// error replies are replaced from here on), refuses ambiguous framing
    /// and oversized headers, and decides compression for pages.
    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let rt = self.shared.runtime.load_full();
        if let Some(g) = crate::conn::guarded(session) {
            g.mark_hooked();
        }
        let limits = &rt.config.server.limits;
        session.set_write_timeout(Some(limits.send_timeout));
        ctx.runtime = Some(rt.clone());
        if let Some((status, why)) = crate::framing::refuse(session, limits) {
            let html = pages::page(status, pages::status_text(status).0, why, &ctx.request_id);
            respond_html(session, status, html, ctx).await?;
            return Err(Error::explain(ErrorType::HTTPStatus(status), why));
        }
        // Pages get no-train meta tags: ask the origin for identity, decode
        // it if it compresses anyway, and compress again for clients that
        // accept it. Decided here: later, Pingora's compression is fixed.
        let kind = crate::facts::request_kind(session);
        ctx.kind = Some(kind);
        ctx.page_request =
            session.req_header().method == http::Method::GET && kind == RequestKind::Page;
        if ctx.page_request {
            session.upstream_compression.adjust_decompression(true);
            if let Some(c) = session
                .downstream_modules_ctx
                .get_mut::<pingora::modules::http::compression::ResponseCompression>()
            {
                c.adjust_level(6);
            }
        }
        Ok(())
    }

    /// Routes the request to its site (421 when none), enforces the body
    /// cap, asks the engine for a verdict (and the fleet, for a shared
    /// quota) and acts on it: limited, blocked, challenged, tarpitted,
    /// cloaked images, Fixative's own endpoints and well-known documents
    /// are answered here (`Ok(true)`); everything else goes to the origin.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let rt = match &ctx.runtime {
            Some(rt) => rt.clone(),
            None => {
                let rt = self.shared.runtime.load_full();
                ctx.runtime = Some(rt.clone());
                rt
            }
        };
        let cfg = rt.config.clone();

        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        ctx.client_ip = forwarding::client_ip(
            peer,
            &header_values(session, names::X_FORWARDED_FOR.name()),
            &cfg.server.trusted_proxies,
        );

        let req = session.req_header();
        let raw_host = req
            .uri
            .host()
            .or_else(|| {
                req.headers
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
            })
            .unwrap_or("");
        ctx.host = normalize_host(raw_host).unwrap_or_default();

        ctx.site = rt.router.route(&ctx.host);
        if ctx.site.is_none() {
            let html = pages::misdirected(&ctx.request_id);
            respond_html(session, 421, html, ctx).await?;
            return Ok(true);
        }
        let routed = ctx.site.and_then(|i| rt.sites.get(i));
        ctx.max_body = routed.and_then(|s| s.max_body_bytes);
        // The usage preference of this path (no work for sites without
        // `[[site.preference]]`).
        ctx.pref = routed.and_then(|s| {
            let pq = session.req_header().uri.path_and_query();
            s.directives.preference_for(pq.map_or("/", |p| p.as_str()))
        });
        if let Some(max) = ctx.max_body
            && session
                .req_header()
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|n| n > max)
        {
            let (title, text) = pages::status_text(413);
            let html = pages::page(413, title, text, &ctx.request_id);
            respond_html(session, 413, html, ctx).await?;
            return Ok(true);
        }

        ctx.now = rt.epoch.elapsed();
        ctx.verdict =
            crate::facts::verdict(&self.shared, session, ctx, &rt, peer, self.tls_listener);
        // A signed agent whose keys are not known yet: fetch them in the
        // background (this request stays unverified).
        if let Some(agent) = &ctx.verdict.signature_pending {
            self.shared.bot_auth.request(
                agent,
                rt.engine.bot_auth(),
                &cfg.detection.web_bot_auth,
                &self.shared.metrics,
            );
        }
        // A limit rule allowed it here: the fleet's quota decides (one
        // round trip, bounded; the node's decision stands without it).
        if ctx.verdict.shared_limit.is_some() {
            self.shared.fleet.settle(&mut ctx.verdict).await;
        }

        // The verdict, acted on in one place. Fixative's own endpoints (the
        // check script, challenges, passes, the no-JS path, the tarpit's
        // maze) answer every request that is neither limited nor blocked;
        // challenge and tarpit verdicts lead there too.
        let own = crate::challenge::Endpoint::of(session.req_header().uri.path());
        let kind = crate::facts::kind(session, ctx);
        let image_get =
            session.req_header().method == http::Method::GET && kind == RequestKind::Image;
        let answered = match ctx.verdict.action {
            Action::Limited => {
                respond_limited(session, ctx).await?;
                true
            }
            Action::Block(status) => {
                let html = pages::blocked(&ctx.request_id);
                respond_html(session, status, html, ctx).await?;
                true
            }
            Action::Challenge(_) | Action::Tarpit(_) => {
                let secure = self.secure(session, peer, &cfg);
                crate::verdicts::serve_challenge(&self.shared, session, ctx, &rt, own, secure)
                    .await?
            }
            _ if own.is_some() => {
                let secure = self.secure(session, peer, &cfg);
                crate::verdicts::serve_challenge(&self.shared, session, ctx, &rt, own, secure)
                    .await?
            }
            Action::Cloak if image_get => match ctx.site {
                Some(i) => {
                    serve_cloaked(session, ctx, &rt, i, &self.shared.metrics).await?;
                    true
                }
                None => false,
            },
            // Images of sites that sign them (C2PA): served signed, or
            // to the origin as usual when that cannot be done.
            Action::Allow | Action::Observe | Action::Limit
                if image_get
                    && rt.cloaker.can_sign()
                    && ctx
                        .site
                        .and_then(|i| rt.sites.get(i))
                        .is_some_and(|s| s.variant(ctx.pref).0.c2pa) =>
            {
                match ctx.site {
                    Some(i) => serve_signed(session, ctx, &rt, i, &self.shared.metrics).await?,
                    None => false,
                }
            }
            // Allow, observe, limit (within quota), cloak of a non-image:
            // to the origin.
            _ => false,
        };
        if answered {
            return Ok(true);
        }
        let method = &session.req_header().method;
        if (method == http::Method::GET || method == http::Method::HEAD)
            && let Some(i) = ctx.site
            && let Some(site) = rt.sites.get(i)
            && let Some(doc) = session
                .req_header()
                .uri
                .path_and_query()
                .and_then(|p| WellKnown::for_path(p.as_str(), &site.directives))
        {
            let served = serve_well_known(session, ctx, &rt, i, doc).await?;
            if let (Some(text), Some(site)) = (served, rt.sites.get(i)) {
                self.shared.activity.robots_served(
                    &site.name,
                    ctx.client_ip,
                    &text,
                    crate::challenge::unix_now(),
                );
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Counts request body bytes against the site's `max_body_bytes`
    /// (chunked bodies have no length to check up front): past it, 413.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(max), Some(b)) = (ctx.max_body, body.as_ref()) {
            ctx.body_bytes = ctx.body_bytes.saturating_add(b.len() as u64);
            if ctx.body_bytes > max {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body larger than max_body_bytes",
                ));
            }
        }
        Ok(())
    }

    /// Refuses an origin response whose header section is larger than
    /// `max_response_header_bytes` (502, Fixative's page).
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let max = ctx
            .runtime
            .as_ref()
            .map(|r| r.config.server.limits.max_response_header_bytes)
            .unwrap_or(usize::MAX);
        if crate::framing::response_header_size(upstream_response) > max {
            ctx.upstream_failed = true;
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "origin response header larger than max_response_header_bytes",
            ));
        }
        Ok(())
    }

    /// The next upstream of the routed site (round robin, health-checked).
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let (Some(rt), Some(i)) = (&ctx.runtime, ctx.site) else {
            return Err(Error::explain(ErrorType::InternalError, "no site selected"));
        };
        site_peer(rt, i).map(Box::new)
    }

    /// Adds `X-Forwarded-For`/`-Proto`/`-Host`, `Forwarded`, `X-Real-IP`
    /// and `X-Request-Id` for the origin (extending a trusted proxy's), asks
    /// for an identity-encoded page when the page will be rewritten, and
    /// supplies `Host` for HTTP/2 clients.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut pingora::http::RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let trusted: &[ipnet::IpNet] = ctx
            .runtime
            .as_ref()
            .map(|r| r.config.server.trusted_proxies.as_slice())
            .unwrap_or(&[]);
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let peer_trusted = forwarding::is_trusted(peer, trusted);
        upstream.reserve_headers(names::ADDED_TO_REQUESTS)?;
        // The values are written one after another into one inline buffer,
        // which becomes one shared allocation for all of them.
        let mut values = Values::new();
        let xff = header_values(session, names::X_FORWARDED_FOR.name());
        forwarding::write_forwarded_for(values.buf(), peer, &xff, trusted);
        let xff = values.end();
        let proto = if self.tls_listener { "https" } else { "http" };
        let proto_value = match header_values(session, names::X_FORWARDED_PROTO.name()).first() {
            Some(&"http") if peer_trusted => "http",
            Some(&"https") if peer_trusted => "https",
            _ => proto,
        };
        if peer_trusted {
            for prior in header_values(session, names::FORWARDED.name()) {
                if prior.trim().is_empty() {
                    continue;
                }
                values.buf().push_str(prior);
                values.buf().push_str(", ");
            }
        }
        forwarding::write_forwarded_element(values.buf(), peer, &ctx.host, proto);
        let forwarded = values.end();
        values.buf().push_ip(ctx.client_ip);
        let real_ip = values.end();
        values.buf().push_str(&ctx.host);
        let host = values.end();
        values.buf().push_str(ctx.request_id.as_str());
        let id = values.end();
        let values = values.share();

        upstream.insert_header_prepared(&names::X_FORWARDED_FOR, values.get(xff)?)?;
        upstream.insert_header_prepared(
            &names::X_FORWARDED_PROTO,
            HeaderValue::from_static(proto_value),
        )?;
        upstream.insert_header_prepared(&names::FORWARDED, values.get(forwarded)?)?;
        upstream.insert_header_prepared(&names::X_REAL_IP, values.get(real_ip)?)?;
        if !ctx.host.is_empty() {
            upstream.insert_header_prepared(&names::X_FORWARDED_HOST, values.get(host)?)?;
        }
        // Kept for the response (a second reference, not a copy).
        let id = values.get(id)?;
        upstream.insert_header_prepared(&names::X_REQUEST_ID, id.clone())?;
        ctx.request_id_value = Some(id);
        if ctx.page_request {
            upstream.insert_header_prepared(
                &names::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            )?;
        }
        // h2 clients send :authority only; origins expect a Host header.
        if upstream.headers.get(http::header::HOST).is_none() && !ctx.host.is_empty() {
            upstream.insert_header(http::header::HOST, ctx.host.as_str())?;
        }
        Ok(())
    }

    /// Adds the request id and the site's no-train headers to the origin's
    /// response, decides whether its body is rewritten (HTML) or gets XMP
    /// metadata (images), adds the debug verdict and rate-limit headers, and
    /// frames the response for the client's HTTP version.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        resp.reserve_headers(names::ADDED_TO_RESPONSES)?;
        let id = match ctx.request_id_value.take() {
            Some(id) => id,
            None => header_value(ctx.request_id.as_str())?,
        };
        resp.insert_header_prepared(&names::X_REQUEST_ID, id)?;
        if let Some(rt) = &ctx.runtime
            && let Some(site) = rt
                .sites
                .get(ctx.site.or(rt.config.default_site).unwrap_or(0))
        {
            // A CMS's per-post setting: the origin names the preference
            // of this response (and the header goes no further).
            if let Some(h) = &site.directives.preference_header
                && let Some(named) = resp.headers.get(h.as_str())
            {
                if let Some(i) = named
                    .to_str()
                    .ok()
                    .and_then(|n| site.directives.preference_named(n))
                {
                    ctx.pref = Some(i);
                }
                resp.remove_header(h.as_str());
            }
            let (d, p) = site.variant(ctx.pref);
            directives::apply_prepared(resp, d, p)?;
        }
        let origin_length = resp.headers.contains_key(http::header::CONTENT_LENGTH);
        crate::bodies::start_html_rewrite(session, resp, ctx)?;
        crate::bodies::start_image_metadata(session, resp, ctx)?;
        // A Content-Length response re-framed as chunked was never
        // real-time: its header and chunks leave together, not one send
        // each (see `Guarded::hold_flushes`).
        if origin_length
            && (ctx.html.is_some() || ctx.image.is_some())
            && !resp.headers.contains_key(http::header::CONTENT_LENGTH)
            && session.req_header().version == http::Version::HTTP_11
            && let Some(g) = crate::conn::guarded(session)
        {
            g.hold_flushes();
        }
        let debug = ctx
            .runtime
            .as_ref()
            .is_some_and(|r| r.config.server.debug_headers);
        if debug {
            resp.insert_header_prepared(
                &names::X_FIXATIVE_VERDICT,
                header_value(ctx.verdict.header_value())?,
            )?;
        }
        if ctx.verdict.action == Action::Limit
            && let Some((policy, state)) = ratelimit_headers(&ctx.verdict)
        {
            resp.insert_header_prepared(&names::RATELIMIT_POLICY, policy)?;
            resp.insert_header_prepared(&names::RATELIMIT, state)?;
        }
        frame_for_client(session, resp);
        Ok(())
    }

    /// Rewrites the body chunk by chunk when `response_filter` said so.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        crate::bodies::filter(body, end_of_stream, ctx);
        Ok(None)
    }

    /// Turns a failure into Fixative's error page with the right status
    /// (see [`crate::errors`]).
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        crate::errors::fail_to_proxy(session, e, ctx).await
    }

    /// Last phase: closes the request on its connection, records the status
    /// for behaviour signals, counts metrics and writes the access-log line.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        if let Some(g) = crate::conn::guarded(session) {
            g.request_done();
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let site = self.site_name(ctx);
        let elapsed = ctx.started.elapsed();
        let m = &self.shared.metrics;
        let routed = ctx
            .runtime
            .as_ref()
            .zip(ctx.site)
            .and_then(|(rt, i)| rt.sites.get(i));
        match routed {
            Some(s) => {
                s.metrics
                    .request(m, &ctx.verdict, elapsed.as_secs_f64(), ctx.upstream_failed)
            }
            // No site (refused before routing): labelled `unknown`.
            None => {
                m.requests
                    .with_label_values(&[
                        site,
                        ctx.verdict.action.as_str(),
                        ctx.verdict.category_label(),
                    ])
                    .inc();
                m.duration
                    .with_label_values(&[site])
                    .observe(elapsed.as_secs_f64());
                if ctx.upstream_failed {
                    m.upstream_errors.with_label_values(&[site]).inc();
                }
            }
        }
        if let Some(rule) = &ctx.verdict.rule {
            match routed {
                Some(s) => s.metrics.rule_match(m, rule, ctx.verdict.action.as_str()),
                None => m
                    .rule_matches
                    .with_label_values(&[site, rule, ctx.verdict.action.as_str()])
                    .inc(),
            }
        }
        let unix = crate::challenge::unix_now();
        if let Some(rt) = &ctx.runtime
            && status > 0
        {
            rt.engine
                .record_status(ctx.client_ip, ctx.now, unix, status);
        }
        let req = session.req_header();
        let entry = access_log::Entry {
            request_id: &ctx.request_id,
            client_ip: ctx.client_ip,
            site,
            host: &ctx.host,
            method: req.method.as_str(),
            path: req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            status,
            bytes: session.body_bytes_sent() as u64,
            duration: elapsed,
            verdict: &ctx.verdict,
            preference: ctx
                .runtime
                .as_ref()
                .and_then(|rt| rt.sites.get(ctx.site?))
                .filter(|s| !s.directives.preferences.is_empty())
                .map(|s| s.directives.preference_name(ctx.pref)),
        };
        crate::record::record_activity(&self.shared, session, ctx, &entry, unix);
        access_log::emit(&entry);
    }
}
