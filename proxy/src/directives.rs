//! No-train directives: response headers on every response, and the
//! well-known files (robots.txt merged or synthesized, tdmrep.json, ai.txt).
//!
//! The well-known files are fetched from the origin by Fixative itself
//! (Pingora's HTTP client), capped in size, cached per site and revalidated
//! with the origin's validators (`ETag`, `Last-Modified`), then answered
//! directly, so HEAD, empty 404s and compressed origins all work the same.

use std::collections::BTreeSet;
use std::time::Instant;

use fixative_config::Directives;
use fixative_rules::Catalog;
use pingora::http::ResponseHeader;
use pingora::prelude::HttpPeer;

use crate::names;
use crate::value::header_value;

/// The largest origin robots.txt read; RFC 9309 crawlers parse 500 KiB.
pub const MAX_ORIGIN_DOC: usize = 512 * 1024;

/// Well-known paths Fixative answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WellKnown {
    /// `/robots.txt`
    Robots,
    /// `/.well-known/tdmrep.json`
    Tdmrep,
    /// `/ai.txt`
    AiTxt,
    /// `/license.xml`: the RSL licence.
    License,
}

/// Where the RSL licence is served.
pub const LICENSE_PATH: &str = "/license.xml";

/// The `Link` header value announcing the RSL licence (relative: a client
/// resolves it against the URL it asked for, so every host of a site gets
/// its own).
pub const LICENSE_LINK: &str = "</license.xml>; rel=\"license\"; type=\"application/rsl+xml\"";

impl WellKnown {
    /// The well-known file for a path, when enabled for the site.
    pub fn for_path(path: &str, d: &Directives) -> Option<WellKnown> {
        let p = path.split('?').next().unwrap_or(path);
        match p {
            "/robots.txt" if d.robots_txt => Some(WellKnown::Robots),
            "/.well-known/tdmrep.json" if d.tdmrep_json => Some(WellKnown::Tdmrep),
            "/ai.txt" if d.ai_txt => Some(WellKnown::AiTxt),
            LICENSE_PATH if d.rsl => Some(WellKnown::License),
            _ => None,
        }
    }

    /// The path.
    pub fn path(self) -> &'static str {
        match self {
            WellKnown::Robots => "/robots.txt",
            WellKnown::Tdmrep => "/.well-known/tdmrep.json",
            WellKnown::AiTxt => "/ai.txt",
            WellKnown::License => LICENSE_PATH,
        }
    }

    /// Content type of what Fixative serves.
    pub fn content_type(self) -> &'static str {
        match self {
            WellKnown::Tdmrep => "application/json",
            WellKnown::License => "application/rsl+xml",
            _ => "text/plain; charset=utf-8",
        }
    }
}

/// Adds the site's no-train headers to a response, merging with what the
/// origin sent: its `X-Robots-Tag` values are kept and ours added only when
/// missing; an origin `tdm-reservation` is respected; in `Content-Usage`
/// our preferences replace the same keys (`n` wins when combined).
/// A site's directive header values, built once per configuration so that
/// the common response (the origin sent none of these headers) gets them
/// without building strings.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    robots: Option<http::HeaderValue>,
    usage: Option<http::HeaderValue>,
    tdm_policy: Option<http::HeaderValue>,
    /// What pages get injected, shared by every rewritten page.
    pub html: std::sync::Arc<crate::html::Injection>,
}

/// `tdm-reservation` for a usage: `1` (reserved) unless training is
/// allowed, then `0` (TDMRep: explicitly not reserved).
fn tdm_value(d: &Directives) -> &'static str {
    if d.usage.train_ai { "0" } else { "1" }
}

/// Whether a response already announces a licence.
fn has_license_link(resp: &ResponseHeader) -> bool {
    let has = |v: &[u8], needle: &[u8]| {
        v.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    resp.headers
        .get_all(http::header::LINK)
        .iter()
        .any(|v| has(v.as_bytes(), b"rel=\"license\"") || has(v.as_bytes(), b"rel=license"))
}

fn shared_value(s: String) -> Option<http::HeaderValue> {
    http::HeaderValue::from_maybe_shared(bytes::Bytes::from(s)).ok()
}

impl Prepared {
    /// The values of `d`, as [`apply_headers`] writes them when the origin
    /// sent none, and what its pages get injected (the trap link to
    /// `trap_path`, the detection trap the engine watches).
    pub fn new(d: &Directives, trap_path: &str) -> Prepared {
        let usage: Vec<String> = d
            .content_usage
            .split(',')
            .filter_map(|m| m.split_once('='))
            .map(|(k, v)| format!("{}={}", k.trim(), v.trim()))
            .collect();
        Prepared {
            robots: (!d.x_robots_tag.is_empty())
                .then(|| shared_value(d.x_robots_tag.join(", ")))
                .flatten(),
            usage: (!d.content_usage.is_empty())
                .then(|| shared_value(usage.join(", ")))
                .flatten(),
            tdm_policy: d
                .tdm_policy
                .clone()
                .filter(|_| !d.usage.train_ai)
                .and_then(shared_value),
            html: std::sync::Arc::new(crate::html::Injection::for_site(d, trap_path)),
        }
    }
}

/// [`apply_headers`] for origin responses: prepared values (no string
/// building) when the origin sent none of the headers, the merge otherwise.
pub fn apply_prepared(
    resp: &mut ResponseHeader,
    d: &Directives,
    p: &Prepared,
) -> pingora::Result<()> {
    // Looked up by pre-built names (a `&str` name is parsed per lookup).
    let names = [
        &names::X_ROBOTS_TAG,
        &names::CONTENT_USAGE,
        &names::TDM_RESERVATION,
        &names::TDM_POLICY,
    ];
    let h = &resp.headers;
    let untouched = names.iter().all(|n| !h.contains_key(n.name()));
    if !untouched {
        return apply_headers(resp, d);
    }
    if let Some(v) = &p.robots {
        resp.append_header_prepared(&names::X_ROBOTS_TAG, v.clone())?;
    }
    if d.tdm_reservation {
        resp.insert_header_prepared(
            &names::TDM_RESERVATION,
            http::HeaderValue::from_static(tdm_value(d)),
        )?;
        if let Some(v) = &p.tdm_policy {
            resp.insert_header_prepared(&names::TDM_POLICY, v.clone())?;
        }
    }
    if let Some(v) = &p.usage {
        resp.insert_header_prepared(&names::CONTENT_USAGE, v.clone())?;
    }
    if d.rsl && !has_license_link(resp) {
        resp.append_header_prepared(&names::LINK, http::HeaderValue::from_static(LICENSE_LINK))?;
    }
    Ok(())
}

/// Adds the site's directive headers to a response, merging with what the
/// origin sent (no duplicates; our reservation wins for our keys).
pub fn apply_headers(resp: &mut ResponseHeader, d: &Directives) -> pingora::Result<()> {
    if !d.x_robots_tag.is_empty() {
        let present: BTreeSet<String> = resp
            .headers
            .get_all("x-robots-tag")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        let missing: Vec<&str> = d
            .x_robots_tag
            .iter()
            .filter(|t| !present.contains(&t.to_ascii_lowercase()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            resp.append_header_prepared(&names::X_ROBOTS_TAG, header_value(missing.join(", "))?)?;
        }
    }
    if d.tdm_reservation && resp.headers.get("tdm-reservation").is_none() {
        resp.insert_header_prepared(
            &names::TDM_RESERVATION,
            http::HeaderValue::from_static(tdm_value(d)),
        )?;
        if let Some(p) = d.tdm_policy.as_ref().filter(|_| !d.usage.train_ai)
            && resp.headers.get("tdm-policy").is_none()
        {
            resp.insert_header_prepared(&names::TDM_POLICY, header_value(p)?)?;
        }
    }
    if !d.content_usage.is_empty() {
        let ours: Vec<(&str, &str)> = d
            .content_usage
            .split(',')
            .filter_map(|m| m.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let origin = resp
            .headers
            .get_all("content-usage")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let mut members: Vec<String> = origin
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .filter(|m| {
                let key = m.split('=').next().unwrap_or("").trim();
                !ours.iter().any(|(k, _)| *k == key)
            })
            .map(str::to_string)
            .collect();
        members.extend(ours.iter().map(|(k, v)| format!("{k}={v}")));
        resp.insert_header_prepared(&names::CONTENT_USAGE, header_value(members.join(", "))?)?;
    }
    if d.rsl && !has_license_link(resp) {
        resp.append_header_prepared(&names::LINK, http::HeaderValue::from_static(LICENSE_LINK))?;
    }
    Ok(())
}

/// The generated part of robots.txt: a group per AI crawler token of the
/// configured categories (`Disallow: /` where the site's usage denies what
/// that category does, and an `Allow`/`Disallow` line per preference path),
/// then the `*` group with the Content-Signal line, the Content-Usage lines
/// (site-wide and per path), the paths whose preference denies search, the
/// trap path and the maze.
pub fn robots_groups(d: &Directives, catalog: &Catalog, trap_path: &str) -> String {
    use fixative_config::UseKey;
    let mut tokens: std::collections::BTreeMap<&str, UseKey> = Default::default();
    for c in catalog.crawlers() {
        let cat = c.category.as_str();
        if d.robots_categories.iter().any(|r| r == cat) {
            let key = UseKey::of_category(cat);
            for t in &c.robots {
                // A token in two categories follows the stricter use.
                tokens
                    .entry(t.as_str())
                    .and_modify(|k| *k = (*k).min(key))
                    .or_insert(key);
            }
        }
    }
    let order = fixative_config::preference::by_precedence(&d.preferences);
    let path_lines = |key: UseKey| -> String {
        let mut s = String::new();
        for (pat, i) in &order {
            if let Some(p) = d.preferences.get(*i) {
                let verb = if p.usage.allows(key) {
                    "Allow"
                } else {
                    "Disallow"
                };
                s.push_str(&format!("{verb}: {pat}\n"));
            }
        }
        s
    };
    let mut s = String::from(
        "# --- Added by Fixative: this site's work is not available for AI training. ---\n",
    );
    let close = |s: &mut String, key: UseKey| {
        s.push_str(&path_lines(key));
        s.push_str(if d.usage.allows(key) {
            "Allow: /\n\n"
        } else {
            "Disallow: /\n\n"
        });
    };
    if d.preferences.is_empty() {
        // One short group per token, as most published files do.
        for (t, key) in &tokens {
            s.push_str(&format!("User-agent: {t}\n"));
            close(&mut s, *key);
        }
    } else {
        // One group per use (RFC 9309 groups take several User-agent
        // lines): the path lines are written once per use, not per token.
        for key in [UseKey::TrainAi, UseKey::AiInput, UseKey::Search] {
            let mut any = false;
            for (t, k) in &tokens {
                if *k == key {
                    s.push_str(&format!("User-agent: {t}\n"));
                    any = true;
                }
            }
            if any {
                close(&mut s, key);
            }
        }
    }
    s.push_str("User-agent: *\n");
    if !d.content_signal.is_empty() {
        s.push_str(&format!("Content-Signal: {}\n", d.content_signal));
    }
    if !d.content_usage.is_empty() {
        s.push_str(&format!("Content-Usage: {}\n", d.content_usage));
        for (pat, i) in &order {
            if let Some(p) = d.preferences.get(*i) {
                s.push_str(&format!(
                    "Content-Usage: {pat} {}\n",
                    p.usage.content_usage()
                ));
            }
        }
    }
    // Search is what every crawler in the `*` group is assumed to do.
    let search_denied = order
        .iter()
        .any(|(_, i)| d.preferences.get(*i).is_some_and(|p| !p.usage.search));
    if !d.usage.search || search_denied {
        s.push_str(&path_lines(UseKey::Search));
        if !d.usage.search {
            s.push_str("Disallow: /\n");
        }
    }
    s.push_str(&format!("Disallow: {trap_path}\n"));
    // The tarpit's maze: only clients that ignore robots.txt go there.
    s.push_str(&format!("Disallow: {}maze/\n", crate::challenge::PREFIX));
    s
}

/// robots.txt as served: the origin's content kept as it is, plus our groups;
/// ours alone when the origin has none.
pub fn merged_robots(origin: Option<&str>, groups: &str, license: Option<&str>) -> String {
    let mut s = match origin {
        Some(o) if !o.trim().is_empty() => {
            let mut s = o.to_string();
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s.push('\n');
            s.push_str(groups);
            s
        }
        _ => format!("# robots.txt synthesized by Fixative (the site has none).\n\n{groups}"),
    };
    // RSL: a record of its own, outside any group (like Sitemap).
    if let Some(url) = license {
        s.push_str(&format!("\nLicense: {url}\n"));
    }
    s
}

/// `/.well-known/tdmrep.json` for a site: a rule per preference path, most
/// specific first (TDMRep applies the first matching rule), then `/`.
pub fn tdmrep_json(d: &Directives) -> String {
    let rule = |location: &str, train_ai: bool| {
        let mut r = serde_json::json!({"location": location, "tdm-reservation": if train_ai { 0 } else { 1 }});
        if let Some(p) = d.tdm_policy.as_ref().filter(|_| !train_ai) {
            r["tdm-policy"] = serde_json::Value::String(p.clone());
        }
        r
    };
    let mut rules: Vec<serde_json::Value> =
        fixative_config::preference::by_precedence(&d.preferences)
            .into_iter()
            .filter_map(|(pat, i)| d.preferences.get(i).map(|p| rule(pat, p.usage.train_ai)))
            .collect();
    rules.push(rule("/", d.usage.train_ai));
    serde_json::Value::Array(rules).to_string() + "\n"
}

/// Spawning's `/ai.txt` (robots.txt grammar, read by dataset tools): the
/// preference paths (`Allow` where training is allowed), then the site's
/// default: every media type and everything disallowed, or `Allow: /`.
pub fn ai_txt(d: &Directives) -> String {
    let mut s = String::from(
        "# Spawning AI\n# Prevent datasets from using the following file types\nUser-Agent: *\n",
    );
    for (pat, i) in fixative_config::preference::by_precedence(&d.preferences) {
        if let Some(p) = d.preferences.get(i) {
            let verb = if p.usage.train_ai {
                "Allow"
            } else {
                "Disallow"
            };
            s.push_str(&format!("{verb}: {pat}\n"));
        }
    }
    if d.usage.train_ai {
        s.push_str("Allow: /\n");
    } else {
        for ext in [
            "jpg", "jpeg", "png", "webp", "gif", "avif", "svg", "tif", "tiff", "heic",
        ] {
            s.push_str(&format!("Disallow: *.{ext}\n"));
        }
        s.push_str("Disallow: /\nDisallow: *\n");
    }
    s
}

/// The RSL 1.0 licence (`https://rslstandard.org/rsl`): a `<content>` per
/// preference path, most specific first, then `/`; each licence permits
/// and prohibits the usage tokens (`ai-train`, `ai-input`, `search`) its
/// preference allows and denies.
pub fn license_xml(d: &Directives) -> String {
    fn xml_escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }
    let content = |url: &str, usage: &fixative_config::Usage| {
        let (permits, prohibits) = usage.rsl();
        let mut c = format!("  <content url=\"{}\">\n    <license>\n", xml_escape(url));
        if !permits.is_empty() {
            c.push_str(&format!(
                "      <permits type=\"usage\">{}</permits>\n",
                permits.join(",")
            ));
        }
        if !prohibits.is_empty() {
            c.push_str(&format!(
                "      <prohibits type=\"usage\">{}</prohibits>\n",
                prohibits.join(",")
            ));
        }
        c.push_str("    </license>\n  </content>\n");
        c
    };
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rsl xmlns=\"https://rslstandard.org/rsl\">\n",
    );
    for (pat, i) in fixative_config::preference::by_precedence(&d.preferences) {
        if let Some(p) = d.preferences.get(i) {
            s.push_str(&content(pat, &p.usage));
        }
    }
    s.push_str(&content("/", &d.usage));
    s.push_str("</rsl>\n");
    s
}

/// What the origin said about a well-known file.
#[derive(Debug, Clone)]
pub struct OriginDoc {
    /// The body when the origin served a usable one (200, text, within cap).
    pub body: Option<String>,
    /// Validators for revalidation.
    pub etag: Option<String>,
    /// Validators for revalidation.
    pub last_modified: Option<String>,
    /// When it was fetched or last revalidated.
    pub checked: Instant,
}

/// Fetches a well-known file from the origin, revalidating `prev`.
///
/// Returns `Err` only when the origin could not be asked at all.
pub async fn fetch_origin_doc(
    connector: &pingora::connectors::http::Connector,
    peer: &HttpPeer,
    host: &str,
    doc: WellKnown,
    prev: Option<&OriginDoc>,
) -> pingora::Result<OriginDoc> {
    let mut conditional: Vec<(&str, &str)> = Vec::new();
    if let Some(p) = prev {
        if let Some(e) = &p.etag {
            conditional.push(("if-none-match", e.as_str()));
        }
        if let Some(l) = &p.last_modified {
            conditional.push(("if-modified-since", l.as_str()));
        }
    }
    let mut http = crate::origin::get(
        connector,
        peer,
        host,
        doc.path(),
        "Fixative (directives)",
        &conditional,
    )
    .await?;
    let status = http
        .response_header()
        .map(|h| h.status.as_u16())
        .unwrap_or(502);
    let ctype = crate::origin::header(&http, "content-type");
    let etag = crate::origin::header(&http, "etag");
    let last_modified = crate::origin::header(&http, "last-modified");
    if status == 304
        && let Some(p) = prev
    {
        return Ok(OriginDoc {
            checked: Instant::now(),
            ..p.clone()
        });
    }
    let mut body = Vec::new();
    let mut truncated = false;
    if status == 200 {
        while let Some(chunk) = http.read_response_body().await? {
            if body.len() + chunk.len() > MAX_ORIGIN_DOC {
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
    }
    let texty = ctype.as_deref().is_none_or(|c| {
        let c = c.to_ascii_lowercase();
        let xml = c.starts_with("application/rsl+xml")
            || c.starts_with("application/xml")
            || c.starts_with("text/xml");
        if doc == WellKnown::License {
            return xml;
        }
        c.starts_with("text/plain")
            || c.starts_with("application/json")
            || c.starts_with("application/octet-stream")
    });
    let body = if status != 200 {
        None
    } else if truncated {
        tracing::warn!(
            "origin {} for {host} is larger than {MAX_ORIGIN_DOC} bytes; it is replaced by Fixative's",
            doc.path()
        );
        None
    } else if !texty {
        tracing::warn!(
            "origin {} for {host} is {} rather than text; it is replaced by Fixative's",
            doc.path(),
            ctype.as_deref().unwrap_or("?")
        );
        None
    } else {
        match String::from_utf8(body) {
            Ok(s) => Some(s),
            Err(_) => {
                tracing::warn!(
                    "origin {} for {host} is not UTF-8; it is replaced by Fixative's",
                    doc.path()
                );
                None
            }
        }
    };
    Ok(OriginDoc {
        body,
        etag,
        last_modified,
        checked: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> Directives {
        let c = fixative_config::Config::embedded_default().unwrap();
        c.sites[0].directives.clone()
    }

    #[test]
    fn headers_merge_without_duplicates() {
        let d = dirs();
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.append_header("x-robots-tag", "noindex, NoAI").unwrap();
        r.append_header("content-usage", "search=y, train-ai=y")
            .unwrap();
        apply_headers(&mut r, &d).unwrap();
        let xrt: Vec<&str> = r
            .headers
            .get_all("x-robots-tag")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(xrt, vec!["noindex, NoAI", "noimageai"]);
        assert_eq!(r.headers["tdm-reservation"], "1");
        assert_eq!(r.headers["content-usage"], "train-ai=n, search=y");
        // Idempotent.
        apply_headers(&mut r, &d).unwrap();
        assert_eq!(r.headers.get_all("x-robots-tag").iter().count(), 2);
    }

    /// The prepared path writes exactly what the merge writes.
    #[test]
    fn prepared_headers_equal_the_merge() {
        let mut d = dirs();
        d.tdm_policy = Some("https://example.test/policy".into());
        let p = Prepared::new(&d, "/trap/");
        let origin: &[&[(&str, &str)]] = &[
            &[],
            &[("x-robots-tag", "noindex")],
            &[("content-usage", "search=y")],
            &[("tdm-reservation", "0")],
            &[("content-type", "text/html")],
        ];
        for headers in origin {
            let mut a = ResponseHeader::build(200, None).unwrap();
            for (k, v) in *headers {
                a.append_header(k.to_string(), *v).unwrap();
            }
            let mut b = a.clone();
            apply_headers(&mut a, &d).unwrap();
            apply_prepared(&mut b, &d, &p).unwrap();
            let dump = |r: &ResponseHeader| {
                let mut v: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(dump(&a), dump(&b), "{headers:?}");
        }
    }

    #[test]
    fn robots_groups_cover_ai_tokens_and_the_trap() {
        let d = dirs();
        let cat = Catalog::default_catalog().unwrap();
        let g = robots_groups(&d, &cat, "/trap/");
        for t in [
            "GPTBot",
            "ClaudeBot",
            "CCBot",
            "Google-Extended",
            "Applebot-Extended",
            "PerplexityBot",
            "ChatGPT-User",
        ] {
            assert!(
                g.contains(&format!("User-agent: {t}\nDisallow: /\n")),
                "{t}"
            );
        }
        assert!(!g.contains("User-agent: Googlebot\n"));
        assert!(g.contains("User-agent: *\nContent-Signal: search=yes, ai-input=no, ai-train=no\nContent-Usage: train-ai=n, search=y\nDisallow: /trap/\nDisallow: /.fixative/maze/\n"));
        let m = merged_robots(Some("User-agent: *\nDisallow: /private/"), &g, None);
        assert!(m.starts_with("User-agent: *\nDisallow: /private/\n\n# --- Added by Fixative"));
    }
}
