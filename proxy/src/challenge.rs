//! The in-page check's endpoints under `/.fixative/`, the interstitial
//! page of the `challenge` action, and pass cookies.
//!
//! * `GET /.fixative/check.js`: the check script (static, cacheable, with
//!   a Subresource Integrity hash in the tag that loads it).
//! * `POST /.fixative/challenge`: a fresh signed challenge bound to the
//!   client's network and user agent.
//! * `POST /.fixative/pass`: the solved challenge and the environment
//!   report; answers with the pass cookie (marked when the report shows
//!   automation; the answer looks the same either way).
//! * `GET /.fixative/nojs`: the interstitial's no-JavaScript path, after a
//!   delay and a cookie round trip.
//!
//! Token logic is in [`fixative_rules::pass`]; this module does the I/O,
//! remembers spent challenges (single use) and counts.

use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;
use fixative_rules::pass::{self, Binding, Flags, Invalid, Keys, PASS_COOKIE};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Path prefix of every endpoint.
pub const PREFIX: &str = "/.fixative/";
/// The script's path.
pub const SCRIPT_PATH: &str = "/.fixative/check.js";
/// Cookie the interstitial sets to test that cookies work (no-JS path).
const NOJS_COOKIE: &str = "fixative_nojs";
/// Largest report body accepted.
const MAX_REPORT: usize = 8 * 1024;

/// The check script.
pub const SCRIPT: &str = include_str!("../assets/check.js");

/// `sha384-…` of the script, for the `integrity` attribute.
pub static INTEGRITY: LazyLock<String> = LazyLock::new(|| {
    use base64::Engine as _;
    use sha2::Digest as _;
    let d = sha2::Sha384::digest(SCRIPT.as_bytes());
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(d)
    )
});

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Fresh randomness for a challenge nonce.
fn nonce() -> Option<[u8; 16]> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).ok()?;
    Some(b)
}

/// Solved challenges, remembered until they expire (single use). Bounded:
/// beyond `cap`, the oldest are forgotten first (counted).
pub struct Spent {
    inner: Mutex<lru::LruCache<[u8; 16], u64>>,
}

impl Spent {
    /// A set of at most `cap` entries.
    pub fn new(cap: usize) -> Spent {
        let cap = std::num::NonZeroUsize::new(cap.max(1)).unwrap_or(std::num::NonZeroUsize::MIN);
        Spent {
            inner: Mutex::new(lru::LruCache::new(cap)),
        }
    }

    /// Marks a nonce spent until `expires`; `false` when it already was.
    /// The second value says whether an unexpired entry had to be evicted.
    pub fn spend(&self, nonce: [u8; 16], now: u64, expires: u64) -> (bool, bool) {
        let Ok(mut m) = self.inner.lock() else {
            return (false, false);
        };
        if m.get(&nonce).is_some_and(|e| *e > now) {
            return (false, false);
        }
        let evicted = m
            .push(nonce, expires)
            .is_some_and(|(k, e)| k != nonce && e > now);
        (true, evicted)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which endpoint a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The script.
    Script,
    /// A new challenge.
    Challenge,
    /// A solved challenge, for a pass.
    Pass,
    /// The no-JavaScript path.
    NoJs,
    /// Into the tarpit's maze.
    Maze,
}

impl Endpoint {
    /// The endpoint for a request path (without query), if any.
    pub fn of(path: &str) -> Option<Endpoint> {
        let rest = path.strip_prefix(PREFIX)?;
        let rest = rest.split(['?', '#']).next().unwrap_or(rest);
        match rest {
            "check.js" => Some(Endpoint::Script),
            "challenge" => Some(Endpoint::Challenge),
            "pass" => Some(Endpoint::Pass),
            "nojs" => Some(Endpoint::NoJs),
            r if r.starts_with("maze/") => Some(Endpoint::Maze),
            _ => None,
        }
    }
}

/// The `Set-Cookie` value of a pass.
pub fn pass_cookie(token: &str, ttl_secs: u64, secure: bool) -> String {
    format!(
        "{PASS_COOKIE}={token}; Path=/; Max-Age={ttl_secs}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The check-script tag for pages (CSP-friendly: external, with integrity).
pub fn script_tag(return_to: Option<&str>) -> String {
    let back = return_to
        .map(|r| format!(" data-return=\"{}\"", crate::pages::escape(r)))
        .unwrap_or_default();
    format!(
        "<script src=\"{SCRIPT_PATH}\" integrity=\"{}\" async{back}></script>",
        INTEGRITY.as_str()
    )
}

/// The tag pages carry (no return path), built once.
pub static PAGE_SCRIPT_TAG: LazyLock<String> = LazyLock::new(|| script_tag(None));

/// The no-JavaScript path's URL for a challenge token and a return path.
fn nojs_url(token: &str, back: &str) -> String {
    format!(
        "{PREFIX}nojs?t={}&r={}",
        percent_encoding::utf8_percent_encode(token, QUERY),
        percent_encoding::utf8_percent_encode(back, QUERY)
    )
}

/// A short HTML page (400) explaining why the no-JS path stopped.
async fn explain_page(session: &mut Session, c: &Ctx<'_>, title: &str, text: &str) -> Result<()> {
    let html = crate::pages::page(400, title, text, c.request_id);
    respond(
        session,
        400,
        "text/html; charset=utf-8",
        Bytes::from(html),
        &[],
    )
    .await
}

/// A same-site path to return to (never another origin).
pub fn safe_return(p: &str) -> &str {
    if p.starts_with('/')
        && !p.starts_with("//")
        && !p.contains('\\')
        && !p.starts_with(PREFIX)
        && p.bytes().all(|b| (0x21..0x7f).contains(&b))
    {
        p
    } else {
        "/"
    }
}

/// What the endpoints need from the running configuration.
pub struct Ctx<'a> {
    /// Signing keys.
    pub keys: &'a Keys,
    /// `[challenge]`.
    pub cfg: &'a fixative_config::Challenge,
    /// The client's address.
    pub client_ip: IpAddr,
    /// Its user agent.
    pub user_agent: &'a str,
    /// Set `Secure` on cookies.
    pub secure: bool,
    /// Request id for pages.
    pub request_id: &'a str,
    /// Metrics.
    pub metrics: &'a crate::metrics::Metrics,
    /// Spent challenges.
    pub spent: &'a Spent,
    /// The fleet (spent challenges are claimed on its store too).
    pub fleet: &'a crate::fleet::FleetLink,
    /// `X-Fixative-Verdict` value when debug headers are on.
    pub debug_verdict: Option<String>,
}

impl Ctx<'_> {
    fn binding(&self) -> Binding {
        Binding::of(self.client_ip, self.user_agent)
    }

    fn count(&self, result: &str) {
        self.metrics.checks.with_label_values(&[result]).inc();
    }

    /// A challenge token for this client, or `None` without keys.
    pub fn mint(&self, difficulty: u8) -> Option<String> {
        self.keys
            .mint_challenge(self.binding(), nonce()?, difficulty, unix_now())
    }
}

async fn respond(
    session: &mut Session,
    status: u16,
    ctype: &str,
    body: Bytes,
    extra: &[(&str, String)],
) -> Result<()> {
    respond_with(session, status, ctype, body, extra, None).await
}

async fn respond_with(
    session: &mut Session,
    status: u16,
    ctype: &str,
    body: Bytes,
    extra: &[(&str, String)],
    verdict: Option<&str>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(7 + extra.len()))?;
    if let Some(v) = verdict {
        resp.insert_header("x-fixative-verdict", v)?;
    }
    resp.insert_header("content-type", ctype)?;
    resp.insert_header("content-length", body.len().to_string())?;
    for (k, v) in extra {
        resp.append_header(k.to_string(), v.as_str())?;
    }
    if !extra.iter().any(|(k, _)| *k == "cache-control") {
        resp.insert_header("cache-control", "no-store")?;
    }
    resp.insert_header("x-content-type-options", "nosniff")?;
    crate::responses::write_whole(session, resp, body).await
}

async fn json(session: &mut Session, status: u16, v: serde_json::Value) -> Result<()> {
    respond(
        session,
        status,
        "application/json",
        Bytes::from(v.to_string()),
        &[],
    )
    .await
}

/// Reads a request body up to `cap` bytes; `None` when larger.
async fn read_body(session: &mut Session, cap: usize) -> Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        if buf.len() + chunk.len() > cap {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf))
}

#[derive(serde::Deserialize)]
struct Solved {
    token: String,
    counter: u64,
    #[serde(default)]
    report: pass::Report,
}

/// Serves one endpoint. The caller has checked that the path is one.
pub async fn serve(session: &mut Session, ep: Endpoint, c: &Ctx<'_>) -> Result<()> {
    let method = session.req_header().method.clone();
    match ep {
        Endpoint::Script => {
            if method != http::Method::GET && method != http::Method::HEAD {
                return json(session, 405, serde_json::json!({"error": "GET only"})).await;
            }
            respond(
                session,
                200,
                "text/javascript; charset=utf-8",
                Bytes::from_static(SCRIPT.as_bytes()),
                &[("cache-control", "public, max-age=86400".to_string())],
            )
            .await
        }
        Endpoint::Challenge => {
            if method != http::Method::POST {
                return json(session, 405, serde_json::json!({"error": "POST only"})).await;
            }
            let _ = read_body(session, MAX_REPORT).await?;
            match c.mint(c.cfg.difficulty) {
                Some(token) => {
                    c.count("issued");
                    json(
                        session,
                        200,
                        serde_json::json!({"token": token, "difficulty": c.cfg.difficulty}),
                    )
                    .await
                }
                None => json(session, 503, serde_json::json!({"error": "no key"})).await,
            }
        }
        Endpoint::Pass => {
            if method != http::Method::POST {
                return json(session, 405, serde_json::json!({"error": "POST only"})).await;
            }
            let Some(body) = read_body(session, MAX_REPORT).await? else {
                c.count("failed");
                return json(session, 413, serde_json::json!({"ok": false})).await;
            };
            let Ok(solved) = serde_json::from_slice::<Solved>(&body) else {
                c.count("failed");
                return json(session, 400, serde_json::json!({"ok": false})).await;
            };
            let now = unix_now();
            let ttl = c.cfg.challenge_ttl.as_secs();
            let opened = c.keys.open_challenge(
                &solved.token,
                Some(solved.counter),
                c.binding(),
                now,
                0,
                ttl,
            );
            let ch = match opened {
                Ok(ch) => ch,
                Err(why) => {
                    tracing::debug!(client = %c.client_ip, "check refused: {}", why.as_str());
                    c.count("failed");
                    return json(session, 400, serde_json::json!({"ok": false})).await;
                }
            };
            // The difficulty it was solved at is in the signed token; a
            // lower configured difficulty since then is fine.
            let (fresh, evicted) = c.spent.spend(ch.nonce, now, ch.issued + ttl);
            if evicted {
                c.count("spent_evicted");
            }
            let fresh = fresh
                && c.fleet
                    .claim_once(&ch.nonce, (ch.issued + ttl).saturating_sub(now))
                    .await;
            if !fresh {
                c.count("replayed");
                return json(session, 400, serde_json::json!({"ok": false})).await;
            }
            let sec_fetch_site = session
                .req_header()
                .headers
                .get("sec-fetch-site")
                .and_then(|v| v.to_str().ok());
            if let Some(ms) = solved.report.ms.filter(|m| m.is_finite() && *m >= 0.0) {
                c.metrics
                    .check_solve_seconds
                    .observe((ms / 1000.0).min(3600.0));
            }
            let findings = pass::assess(&solved.report, c.user_agent, sec_fetch_site);
            let automation = !findings.is_empty();
            if automation {
                tracing::info!(
                    client = %c.client_ip,
                    findings = ?findings,
                    pow_ms = ?solved.report.ms,
                    "browser check saw automation"
                );
            }
            c.count(if automation { "automation" } else { "passed" });
            let flags = Flags {
                automation,
                nojs: false,
            };
            // The same answer either way: the client learns nothing.
            give_pass(session, c, flags, now, 200, None).await
        }
        Endpoint::NoJs => serve_nojs(session, c).await,
        // The tarpit's maze is served by the tarpit.
        Endpoint::Maze => json(session, 404, serde_json::json!({"error": "not found"})).await,
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_encoding::percent_decode_str(v).decode_utf8_lossy())
    })
}

/// The no-JavaScript path: a challenge token from the interstitial,
/// answered after `nojs_delay`, with the test cookie the interstitial set.
async fn serve_nojs(session: &mut Session, c: &Ctx<'_>) -> Result<()> {
    let query = session.req_header().uri.query().unwrap_or("").to_string();
    let token = query_param(&query, "t").unwrap_or_default().into_owned();
    let back = query_param(&query, "r").unwrap_or_default().into_owned();
    let back = safe_return(&back).to_string();
    let has_cookie = session
        .req_header()
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|h| pass::cookie_value([h], NOJS_COOKIE).is_some());
    // (each `Cookie` header is searched: HTTP/2 sends one per cookie)
    if !has_cookie {
        c.count("failed");
        return explain_page(
            session,
            c,
            "Cookies needed",
            "This site checks visitors before showing this page, and the check needs one cookie. Please allow cookies for this site, then go back and reload the page.",
        )
        .await;
    }
    let now = unix_now();
    let opened = c.keys.open_challenge(
        &token,
        None,
        c.binding(),
        now,
        c.cfg.nojs_delay.as_secs(),
        c.cfg.challenge_ttl.as_secs(),
    );
    let fail = |why: Invalid| {
        tracing::debug!(client = %c.client_ip, "no-JS check refused: {}", why.as_str());
    };
    let ch = match opened {
        Ok(ch) => ch,
        Err(Invalid::TooEarly) => {
            // Followed too soon: wait the rest and try again (no loop).
            let wait = c.cfg.nojs_delay.as_secs().max(1);
            let url = nojs_url(&token, &back);
            return respond(
                session,
                303,
                "text/plain",
                Bytes::new(),
                &[("refresh", format!("{wait}")), ("location", url)],
            )
            .await;
        }
        Err(why) => {
            fail(why);
            c.count("failed");
            return explain_page(
                session,
                c,
                "Please try again",
                "The check expired or was already used. Go back and reload the page to get a new one.",
            )
            .await;
        }
    };
    let ttl = c.cfg.challenge_ttl.as_secs();
    let (fresh, _) = c.spent.spend(ch.nonce, now, ch.issued + ttl);
    let fresh = fresh
        && c.fleet
            .claim_once(&ch.nonce, (ch.issued + ttl).saturating_sub(now))
            .await;
    if !fresh {
        c.count("replayed");
        return explain_page(
            session,
            c,
            "Please try again",
            "This check was already used. Go back and reload the page to get a new one.",
        )
        .await;
    }
    c.count("nojs");
    let flags = Flags::NOJS;
    give_pass(session, c, flags, now, 303, Some(back)).await
}

/// Mints a pass and sets it: `{"ok":true}`, or a redirect to `location`.
async fn give_pass(
    session: &mut Session,
    c: &Ctx<'_>,
    flags: Flags,
    now: u64,
    status: u16,
    location: Option<String>,
) -> Result<()> {
    let ttl = c.cfg.pass_ttl.as_secs();
    let Some(token) = c.keys.mint_pass(c.binding(), flags, now, ttl) else {
        return json(session, 503, serde_json::json!({"ok": false})).await;
    };
    let cookie = ("set-cookie", pass_cookie(&token, ttl, c.secure));
    match location {
        Some(to) => {
            respond(
                session,
                status,
                "text/plain",
                Bytes::new(),
                &[("location", to), cookie],
            )
            .await
        }
        None => {
            respond(
                session,
                status,
                "application/json",
                Bytes::from_static(b"{\"ok\":true}"),
                &[cookie],
            )
            .await
        }
    }
}

/// Characters escaped in a query value.
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// The interstitial page of a `challenge` verdict for a page request: runs
/// the check visibly and reloads `return_to`; without JavaScript, a meta
/// refresh (and a button) lead through the no-JS path.
pub async fn serve_interstitial(
    session: &mut Session,
    status: u16,
    return_to: &str,
    c: &Ctx<'_>,
) -> Result<()> {
    let back = safe_return(return_to);
    let Some(token) = c.mint(0) else {
        let html = crate::pages::blocked(c.request_id);
        return respond(
            session,
            status,
            "text/html; charset=utf-8",
            Bytes::from(html),
            &[],
        )
        .await;
    };
    c.metrics.interstitials.inc();
    let nojs_url = nojs_url(&token, back);
    let delay = c.cfg.nojs_delay.as_secs().max(1);
    let html = crate::pages::interstitial(
        &script_tag(Some(back)),
        &nojs_url,
        &token,
        back,
        delay,
        c.request_id,
    );
    respond_with(
        session,
        status,
        "text/html; charset=utf-8",
        Bytes::from(html),
        &[(
            "set-cookie",
            format!(
                "{NOJS_COOKIE}=1; Path={PREFIX}; Max-Age=600; HttpOnly; SameSite=Lax{}",
                if c.secure { "; Secure" } else { "" }
            ),
        )],
        c.debug_verdict.as_deref(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_return_paths() {
        assert_eq!(Endpoint::of("/.fixative/check.js"), Some(Endpoint::Script));
        assert_eq!(Endpoint::of("/.fixative/pass"), Some(Endpoint::Pass));
        assert_eq!(Endpoint::of("/.fixative/maze/ab12"), Some(Endpoint::Maze));
        assert_eq!(Endpoint::of("/.fixative/other"), None);
        assert_eq!(Endpoint::of("/gallery/"), None);
        assert_eq!(safe_return("/gallery/?p=2"), "/gallery/?p=2");
        for bad in [
            "//evil.test/",
            "https://evil.test/",
            "/\\evil",
            "",
            "/a b",
            "/.fixative/pass",
        ] {
            assert_eq!(safe_return(bad), "/", "{bad}");
        }
    }

    #[test]
    fn spent_nonces_are_single_use_and_bounded() {
        let s = Spent::new(100);
        assert_eq!(s.spend([1; 16], 10, 100), (true, false));
        assert_eq!(s.spend([1; 16], 20, 100), (false, false));
        // After expiry it may be spent again (the token itself is expired
        // by then; this only frees the slot).
        assert_eq!(s.spend([1; 16], 200, 300), (true, false));
        for i in 0..300u32 {
            let mut n = [0u8; 16];
            n[..4].copy_from_slice(&i.to_be_bytes());
            s.spend(n, 10, 1_000);
        }
        assert_eq!(s.len(), 100);
    }

    #[test]
    fn integrity_matches_the_script() {
        assert!(INTEGRITY.starts_with("sha384-"));
        assert!(script_tag(None).contains(INTEGRITY.as_str()));
        assert!(script_tag(Some("/a\"b")).contains("data-return=\"/a&quot;b\""));
    }
}
