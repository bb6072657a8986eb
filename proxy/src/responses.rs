//! Whole responses Fixative writes itself: error and block pages, 429s,
//! robots.txt and the other well-known documents, protected image
//! variants; and the framing of origin responses for the client.

use bytes::Bytes;
use fixative_rules::Verdict;
use http::HeaderValue;
use pingora::ErrorType;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::directives::{self, WellKnown};
use crate::pages;
use crate::runtime::Runtime;
use crate::service::{Ctx, ctx_directives, site_peer};

/// Answers robots.txt, tdmrep.json or ai.txt: the origin's (cached,
/// revalidated) merged with or replaced by Fixative's. Returns robots.txt's
/// text when that was the document (the dashboard judges the client's
/// later requests by it).
pub(crate) async fn serve_well_known(
    session: &mut Session,
    ctx: &Ctx,
    rt: &Runtime,
    i: usize,
    doc: WellKnown,
) -> Result<Option<String>> {
    let Some(site) = rt.sites.get(i) else {
        return Err(Error::explain(
            ErrorType::InternalError,
            "site index out of range",
        ));
    };
    let origin = {
        let mut cache = site.docs.lock().await;
        let prev = cache.get(&doc).cloned();
        match prev {
            Some(p) if p.checked.elapsed() < site.directives.cache_ttl => Some(p),
            _ => {
                let fetched = match site_peer(rt, i) {
                    Ok(peer) => {
                        directives::fetch_origin_doc(
                            &rt.connector,
                            &peer,
                            &ctx.host,
                            doc,
                            prev.as_ref(),
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                match fetched {
                    Ok(d) => {
                        cache.insert(doc, d.clone());
                        Some(d)
                    }
                    Err(e) => {
                        tracing::warn!(
                            "cannot fetch {} from the origin of {}: {e}; serving {}",
                            doc.path(),
                            site.name,
                            if prev.is_some() {
                                "the cached copy"
                            } else {
                                "Fixative's own"
                            }
                        );
                        prev
                    }
                }
            }
        }
    };
    let origin_body = origin.as_ref().and_then(|d| d.body.as_deref());
    let body = match doc {
        WellKnown::Robots => {
            let license = site
                .directives
                .rsl
                .then(|| license_url(session, &ctx.host, &rt.config.server.trusted_proxies));
            directives::merged_robots(origin_body, &site.robots_groups, license.as_deref())
        }
        WellKnown::Tdmrep => origin_body
            .map(str::to_string)
            .unwrap_or_else(|| site.tdmrep.clone()),
        WellKnown::AiTxt => origin_body
            .map(str::to_string)
            .unwrap_or_else(|| site.ai_txt.clone()),
        WellKnown::License => origin_body
            .map(str::to_string)
            .unwrap_or_else(|| site.license_xml.clone()),
    };
    let mut resp = ResponseHeader::build(200, Some(8))?;
    resp.insert_header("content-type", doc.content_type())?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "public, max-age=300")?;
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    directives::apply_headers(&mut resp, site.variant(ctx.pref).0)?;
    if rt.config.server.debug_headers {
        resp.insert_header("x-fixative-verdict", ctx.verdict.header_value())?;
    }
    let robots = (doc == WellKnown::Robots).then(|| body.clone());
    write_whole(session, resp, Bytes::from(body)).await?;
    Ok(robots)
}

/// Serves an original image signed with a C2PA manifest (site with
/// `directives.c2pa`). Returns `false` when it could not (too large, origin
/// error, queue full…): the request then goes to the origin as usual and
/// the image is served unsigned.
pub(crate) async fn serve_signed(
    session: &mut Session,
    ctx: &mut Ctx,
    rt: &Runtime,
    i: usize,
    metrics: &crate::metrics::Metrics,
) -> Result<bool> {
    let Some(site) = rt.sites.get(i) else {
        return Ok(false);
    };
    let Ok(peer) = site_peer(rt, i) else {
        return Ok(false);
    };
    let path = request_path(session);
    let named = |n: &str| named_terms(site, n);
    let outcome = rt
        .cloaker
        .original(
            &rt.connector,
            &peer,
            &ctx.host,
            &path,
            &site.name,
            &prefs(site, ctx.pref, &named),
        )
        .await;
    let (status, ctype, body, hit) = match outcome {
        crate::cloak::Outcome::Variant(v, hit) => {
            if v.pref.is_some() {
                ctx.pref = v.pref;
            }
            (200, v.content_type, v.bytes, Some(hit))
        }
        crate::cloak::Outcome::Relay(status, ctype, body) => (
            status,
            ctype.unwrap_or_else(|| "application/octet-stream".into()),
            body,
            None,
        ),
        crate::cloak::Outcome::Fallback(reason) => {
            metrics
                .protector_fallbacks
                .with_label_values(&[reason.as_str()])
                .inc();
            return Ok(false);
        }
    };
    let mut resp = ResponseHeader::build(status, Some(8))?;
    resp.insert_header("content-type", ctype)?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    if let Some(hit) = hit
        && rt.config.server.debug_headers
    {
        resp.insert_header("x-fixative-c2pa", if hit { "hit" } else { "signed" })?;
    }
    directives::apply_headers(&mut resp, site.variant(ctx.pref).0)?;
    if rt.config.server.debug_headers {
        resp.insert_header("x-fixative-verdict", ctx.verdict.header_value())?;
    }
    write_whole(session, resp, body).await?;
    Ok(true)
}

/// The protector's view of a site's preferences for one request: the
/// path's terms, and the origin's preference header with its resolver.
fn prefs<'a>(
    site: &'a crate::runtime::SiteRuntime,
    pref: Option<usize>,
    named: &'a (dyn Fn(&str) -> Option<(usize, crate::cloak::Terms)> + Sync),
) -> crate::cloak::Prefs<'a> {
    crate::cloak::Prefs {
        path: crate::cloak::Terms::of(site.variant(pref).0),
        header: site.directives.preference_header.as_deref(),
        named,
    }
}

/// A preference an origin named, with its terms.
fn named_terms(
    site: &crate::runtime::SiteRuntime,
    name: &str,
) -> Option<(usize, crate::cloak::Terms)> {
    let i = site.directives.preference_named(name)?;
    Some((i, crate::cloak::Terms::of(site.variant(Some(i)).0)))
}

/// The request's path and query (`/` when absent).
fn request_path(session: &Session) -> String {
    session
        .req_header()
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into())
}

/// The absolute URL of the site's RSL licence as this client reached it
/// (robots.txt records take absolute URLs): its scheme and `Host`.
fn license_url(session: &Session, host: &str, trusted: &[fixative_config::IpNet]) -> String {
    let req = session.req_header();
    // A trusted load balancer in front says how the client came in.
    let peer_trusted = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .is_some_and(|a| crate::forwarding::is_trusted(a.ip(), trusted));
    let forwarded = req
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|_| peer_trusted);
    let tls = match forwarded {
        Some(p) => p.eq_ignore_ascii_case("https"),
        None => session.digest().is_some_and(|d| d.ssl_digest.is_some()),
    };
    let authority = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
        })
        .filter(|a| {
            !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or(host);
    format!(
        "{}://{}{}",
        if tls { "https" } else { "http" },
        authority.to_ascii_lowercase(),
        directives::LICENSE_PATH
    )
}

/// Writes a complete response; HEAD gets the headers only.
pub(crate) async fn write_whole(
    session: &mut Session,
    resp: ResponseHeader,
    body: Bytes,
) -> Result<()> {
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Answers an image request under a `cloak` verdict with a protected
/// variant, or the configured fallback.
pub(crate) async fn serve_cloaked(
    session: &mut Session,
    ctx: &mut Ctx,
    rt: &Runtime,
    i: usize,
    metrics: &crate::metrics::Metrics,
) -> Result<()> {
    let Some(site) = rt.sites.get(i) else {
        return Err(Error::explain(
            ErrorType::InternalError,
            "site index out of range",
        ));
    };
    let path = request_path(session);
    let class = ctx
        .verdict
        .crawler
        .as_deref()
        .unwrap_or_else(|| ctx.verdict.category_label())
        .to_string();
    let payload = crate::cloak::Cloaker::payload(&site.name, ctx.client_ip, &class);
    let named = |n: &str| named_terms(site, n);
    let outcome = match site_peer(rt, i) {
        Ok(peer) => {
            rt.cloaker
                .cloak(
                    &rt.connector,
                    &peer,
                    &ctx.host,
                    &path,
                    &site.name,
                    payload,
                    &prefs(site, ctx.pref, &named),
                )
                .await
        }
        Err(_) => crate::cloak::Outcome::Fallback(crate::cloak::FallbackReason::Origin),
    };
    let (status, ctype, body, extra): (u16, String, Bytes, Vec<(&str, String)>) = match outcome {
        crate::cloak::Outcome::Variant(v, hit) => {
            // The origin named this file's preference.
            if v.pref.is_some() {
                ctx.pref = v.pref;
            }
            let marked = v.source != "prepared";
            ctx.variant = Some((v.source, marked.then(|| payload.to_bits())));
            (
                200,
                v.content_type,
                v.bytes,
                vec![
                    ("x-fixative-variant", v.source.to_string()),
                    (
                        "x-fixative-cache",
                        if hit { "hit" } else { "miss" }.to_string(),
                    ),
                    (
                        "x-fixative-watermark",
                        format!("{:016x}", payload.to_bits()),
                    ),
                ],
            )
        }
        crate::cloak::Outcome::Relay(status, ctype, body) => (
            status,
            ctype.unwrap_or_else(|| "application/octet-stream".into()),
            body,
            Vec::new(),
        ),
        crate::cloak::Outcome::Fallback(reason) => {
            metrics
                .protector_fallbacks
                .with_label_values(&[reason.as_str()])
                .inc();
            let html = pages::page(
                503,
                "Temporarily unavailable",
                "This image cannot be served right now. Please try again shortly.",
                &ctx.request_id,
            );
            (
                503,
                "text/html; charset=utf-8".into(),
                Bytes::from(html),
                vec![("retry-after", "5".to_string())],
            )
        }
    };
    let mut resp = ResponseHeader::build(status, Some(10))?;
    resp.insert_header("content-type", ctype)?;
    resp.insert_header("content-length", body.len().to_string())?;
    // A per-client variant: never into shared caches.
    resp.insert_header("cache-control", "private, no-store")?;
    resp.insert_header("vary", "User-Agent")?;
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    for (k, v) in extra {
        // The payload header is for debugging only.
        if k == "x-fixative-watermark" && !rt.config.server.debug_headers {
            continue;
        }
        resp.insert_header(k, v)?;
    }
    directives::apply_headers(&mut resp, site.variant(ctx.pref).0)?;
    if rt.config.server.debug_headers {
        resp.insert_header("x-fixative-verdict", ctx.verdict.header_value())?;
    }
    write_whole(session, resp, body).await
}

/// `RateLimit-Policy` and `RateLimit` values (draft-ietf-httpapi-ratelimit-headers).
pub(crate) fn ratelimit_headers(v: &Verdict) -> Option<(HeaderValue, HeaderValue)> {
    let l = v.limit?;
    let name = v.rule.as_deref().unwrap_or("default");
    let t = if l.retry_after > 0 {
        l.retry_after
    } else {
        l.reset
    };
    // The policy name as a quoted string: only the characters that need
    // no escaping. Both values written into one buffer, shared.
    let mut values = crate::value::Values::new();
    let mut value = |numbers: [(&str, u64); 2]| {
        let buf = values.buf();
        buf.push_byte(b'"');
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                buf.push_byte(b);
            }
        }
        buf.push_byte(b'"');
        for (key, n) in numbers {
            buf.push_str(key);
            buf.push_u64(n);
        }
        values.end()
    };
    let policy = value([(";q=", u64::from(l.quota)), (";w=", l.window)]);
    let state = value([(";r=", u64::from(l.remaining)), (";t=", t)]);
    let values = values.share();
    Some((values.get(policy).ok()?, values.get(state).ok()?))
}

/// 429 with `Retry-After` and rate-limit headers, and a short page.
pub(crate) async fn respond_limited(session: &mut Session, ctx: &Ctx) -> Result<()> {
    let retry = ctx.verdict.limit.map(|l| l.retry_after.max(1)).unwrap_or(1);
    let html = pages::page(
        429,
        "Slow down",
        &format!(
            "Too many requests came from your network in a short time. Please wait {retry} second{} and try again.",
            if retry == 1 { "" } else { "s" }
        ),
        &ctx.request_id,
    );
    let mut extra = vec![("retry-after".to_string(), retry.to_string())];
    if let Some((policy, state)) = ratelimit_headers(&ctx.verdict) {
        let text = |v: HeaderValue| v.to_str().unwrap_or_default().to_string();
        extra.push(("ratelimit-policy".into(), text(policy)));
        extra.push(("ratelimit".into(), text(state)));
    }
    respond_html_with(session, 429, html, ctx, &extra).await
}

/// Frames a proxied response for the client's HTTP/1 version, whatever
/// the origin spoke: an HTTP/1.0 origin's status line is not passed on to
/// an HTTP/1.1 client (a browser reads `HTTP/1.0` + chunked as a body
/// without end), an HTTP/1.0 client never gets chunked encoding, and a
/// body delimited only by the connection's close closes the connection.
pub(crate) fn frame_for_client(session: &mut Session, resp: &mut ResponseHeader) {
    if session.is_http2() {
        return;
    }
    let client = session.req_header().version;
    let chunked = resp
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
        });
    if client == http::Version::HTTP_10 {
        resp.set_version(http::Version::HTTP_10);
        if chunked {
            resp.remove_header(&http::header::TRANSFER_ENCODING);
            session.set_keepalive(None);
            return;
        }
    } else {
        resp.set_version(http::Version::HTTP_11);
    }
    let bodiless = resp.status.is_informational()
        || resp.status == http::StatusCode::NO_CONTENT
        || resp.status == http::StatusCode::NOT_MODIFIED
        || session.req_header().method == http::Method::HEAD;
    if !chunked && !bodiless && resp.headers.get(http::header::CONTENT_LENGTH).is_none() {
        session.set_keepalive(None);
    }
}

/// Writes a complete HTML response and closes the connection.
pub(crate) async fn respond_html(
    session: &mut Session,
    status: u16,
    html: String,
    ctx: &Ctx,
) -> Result<()> {
    respond_html_with(session, status, html, ctx, &[]).await
}

pub(crate) async fn respond_html_with(
    session: &mut Session,
    status: u16,
    html: String,
    ctx: &Ctx,
    extra: &[(String, String)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(8 + extra.len()))?;
    for (k, v) in extra {
        resp.insert_header(k.clone(), v.as_str())?;
    }
    if let Some(d) = ctx_directives(ctx) {
        directives::apply_headers(&mut resp, d)?;
    }
    resp.insert_header("content-type", "text/html; charset=utf-8")?;
    resp.insert_header("content-length", html.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    if ctx
        .runtime
        .as_ref()
        .is_some_and(|r| r.config.server.debug_headers)
    {
        resp.insert_header("x-fixative-verdict", ctx.verdict.header_value())?;
    }
    session.set_keepalive(None);
    write_whole(session, resp, Bytes::from(html)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9331 headers: the rule's name quoted (characters that would
    /// need escaping dropped), quota and window, then what is left and
    /// when it returns.
    #[test]
    fn ratelimit_headers_quote_the_rule_and_carry_the_numbers() {
        let mut v = Verdict::allow();
        assert_eq!(ratelimit_headers(&v), None);
        v.rule = Some("per ip \"x\";q=9".into());
        v.limit = Some(fixative_rules::LimitInfo {
            quota: 20,
            window: 60,
            remaining: 0,
            retry_after: 7,
            reset: 60,
        });
        let (policy, state) = ratelimit_headers(&v).unwrap();
        assert_eq!(policy, "\"peripxq9\";q=20;w=60");
        assert_eq!(state, "\"peripxq9\";r=0;t=7");
        v.rule = None;
        v.limit = v.limit.map(|l| fixative_rules::LimitInfo {
            remaining: 5,
            retry_after: 0,
            ..l
        });
        let (policy, state) = ratelimit_headers(&v).unwrap();
        assert_eq!(policy, "\"default\";q=20;w=60");
        assert_eq!(state, "\"default\";r=5;t=60");
    }
}
