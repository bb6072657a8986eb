//! The engine: request facts in, verdict out.
//!
//! Signals add weights into a score (like a WAF); an ordered policy then
//! picks the action. Everything is synchronous and allocation-free up to
//! the building of the returned [`Verdict`]'s reasons.

use std::net::IpAddr;

use crate::catalog::Catalog;
use crate::verdict::{Action, Category, Reason, Verdict};

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
    /// Whether the headers below are known. Logs in the combined format
    /// carry no headers beyond the user agent, so header signals must not
    /// fire on them.
    pub headers_known: bool,
    /// `Accept`.
    pub accept: Option<&'a str>,
    /// `Accept-Language`.
    pub accept_language: Option<&'a str>,
    /// `Sec-Fetch-Mode`.
    pub sec_fetch_mode: Option<&'a str>,
    /// `Sec-CH-UA`.
    pub sec_ch_ua: Option<&'a str>,
    /// Request was HTTP/1.0.
    pub http10: bool,
}

impl<'a> RequestFacts<'a> {
    /// Facts with only the basics; header fields unknown.
    pub fn basic(client_ip: IpAddr, method: &'a str, path: &'a str, ua: Option<&'a str>) -> Self {
        RequestFacts {
            client_ip,
            method,
            host: "",
            path,
            user_agent: ua,
            headers_known: false,
            accept: None,
            accept_language: None,
            sec_fetch_mode: None,
            sec_ch_ua: None,
            http10: false,
        }
    }
}

/// A built-in policy, selected per site by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// What an artists' platform wants: allow search engines and link
    /// previews, block AI crawlers (training, search, assistants), flag
    /// high scores.
    Default,
    /// The default policy in shadow mode: every would-be action is logged
    /// and counted, every request passes.
    Observe,
    /// Detection only: every request passes with its score and category.
    Off,
}

impl Policy {
    /// Looks a policy up by its configuration name.
    pub fn by_name(name: &str) -> Option<Policy> {
        match name {
            "default" => Some(Policy::Default),
            "observe" => Some(Policy::Observe),
            "off" => Some(Policy::Off),
            _ => None,
        }
    }
}

/// Score from which a request without a catalog match is flagged.
pub const SUSPICIOUS_SCORE: i32 = 60;

/// The detection engine, built once per configuration.
#[derive(Debug)]
pub struct Engine {
    catalog: Catalog,
}

fn category_weight(c: Category) -> i32 {
    match c {
        Category::AiTraining | Category::AiSearch | Category::AiAssistant => 100,
        Category::HeadlessBrowser => 60,
        Category::HttpLibrary => 40,
        Category::Seo | Category::Other => 20,
        _ => 0,
    }
}

/// A user agent that claims to be a mainstream browser.
fn claims_browser(ua: &str) -> bool {
    ua.starts_with("Mozilla/5.0")
        && (ua.contains("Chrome/") || ua.contains("Firefox/") || ua.contains("Safari/"))
}

/// Chromium-based browsers send `Sec-Fetch-*` since version 76, Firefox
/// since 90, Safari since 16.4; every current one does.
fn sends_sec_fetch(ua: &str) -> bool {
    let ver = |tok: &str| -> Option<u32> {
        let i = ua.find(tok)? + tok.len();
        ua[i..].split(['.', ' ']).next()?.parse().ok()
    };
    if let Some(v) = ver("Chrome/") {
        return v >= 76;
    }
    if let Some(v) = ver("Firefox/") {
        return v >= 90;
    }
    if ua.contains("Safari/") {
        return ver("Version/").is_some_and(|v| v >= 17);
    }
    false
}

impl Engine {
    /// Builds the engine around a catalog.
    pub fn new(catalog: Catalog) -> Engine {
        Engine { catalog }
    }

    /// Builds the engine with the compiled-in catalog.
    pub fn with_default_catalog() -> Result<Engine, String> {
        Ok(Engine::new(Catalog::default_catalog()?))
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Decides what to do with a request under `policy`.
    pub fn evaluate(&self, facts: &RequestFacts<'_>, policy: Policy) -> Verdict {
        let mut v = Verdict::allow();
        let mut weak = false;
        let add = |v: &mut Verdict, signal: &'static str, weight: i32, detail: String| {
            v.score += weight;
            v.reasons.push(Reason {
                signal,
                weight,
                detail,
            });
        };

        match facts.user_agent.filter(|u| !u.trim().is_empty()) {
            None => add(&mut v, "ua.missing", 30, "no User-Agent".into()),
            Some(ua) => {
                if let Some(m) = self.catalog.match_ua(ua) {
                    v.category = Some(m.crawler.category);
                    v.crawler = Some(m.crawler.name.clone());
                    weak = m.weak;
                    if m.weak {
                        add(&mut v, "ua.catalog.generic", 20, m.crawler.name.clone());
                    } else {
                        add(
                            &mut v,
                            "ua.catalog",
                            category_weight(m.crawler.category),
                            m.crawler.name.clone(),
                        );
                    }
                }
                if facts.headers_known && claims_browser(ua) && v.crawler.is_none() {
                    if facts.accept_language.is_none() {
                        add(&mut v, "header.no-accept-language", 25, "browser UA".into());
                    }
                    if facts.accept.is_none() {
                        add(&mut v, "header.no-accept", 20, "browser UA".into());
                    }
                    if facts.sec_fetch_mode.is_none() && sends_sec_fetch(ua) {
                        add(&mut v, "header.no-sec-fetch", 20, "browser UA".into());
                    }
                }
                if facts.headers_known
                    && facts
                        .sec_ch_ua
                        .is_some_and(|h| h.contains("HeadlessChrome"))
                    && v.category != Some(Category::HeadlessBrowser)
                {
                    v.category = Some(Category::HeadlessBrowser);
                    add(
                        &mut v,
                        "header.headless-client-hint",
                        60,
                        "Sec-CH-UA".into(),
                    );
                }
            }
        }
        if facts.headers_known && facts.http10 {
            add(&mut v, "http.1.0", 15, "HTTP/1.0".into());
        }

        // The policy: ordered rules, first match decides.
        let decided: Option<(&'static str, Action)> = match v.category {
            Some(Category::SearchEngine | Category::SocialPreview) => {
                Some(("allow-search-and-previews", Action::Allow))
            }
            Some(Category::AiTraining | Category::AiSearch | Category::AiAssistant) if !weak => {
                Some(("block-ai-crawlers", Action::Block(403)))
            }
            _ if v.score >= SUSPICIOUS_SCORE => Some(("flag-high-score", Action::Observe)),
            _ => None,
        };
        if let Some((rule, action)) = decided {
            v.rule = Some(rule.to_string());
            v.action = match policy {
                Policy::Default => action,
                Policy::Observe | Policy::Off => {
                    if action != Action::Allow {
                        v.would = Some(action);
                    }
                    if policy == Policy::Observe && action != Action::Allow {
                        Action::Observe
                    } else {
                        Action::Allow
                    }
                }
            };
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        Engine::with_default_catalog().unwrap()
    }

    fn browser_facts(ua: &str) -> RequestFacts<'_> {
        RequestFacts {
            client_ip: "198.51.100.4".parse().unwrap(),
            method: "GET",
            host: "gallery.example",
            path: "/",
            user_agent: Some(ua),
            headers_known: true,
            accept: Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            accept_language: Some("en-GB,en;q=0.9"),
            sec_fetch_mode: Some("navigate"),
            sec_ch_ua: None,
            http10: false,
        }
    }

    #[test]
    fn ai_crawlers_are_blocked_and_observe_mode_passes() {
        let e = engine();
        let f = RequestFacts::basic(
            "20.1.2.3".parse().unwrap(),
            "GET",
            "/",
            Some(
                "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
            ),
        );
        let v = e.evaluate(&f, Policy::Default);
        assert_eq!(v.action, Action::Block(403));
        assert_eq!(v.category, Some(Category::AiTraining));
        assert_eq!(v.rule.as_deref(), Some("block-ai-crawlers"));
        assert_eq!(v.score, 100);
        let v = e.evaluate(&f, Policy::Observe);
        assert_eq!(v.action, Action::Observe);
        assert_eq!(v.would, Some(Action::Block(403)));
    }

    #[test]
    fn real_browsers_with_real_headers_are_not_flagged() {
        let e = engine();
        for ua in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
        ] {
            let v = e.evaluate(&browser_facts(ua), Policy::Default);
            assert_eq!(v.action, Action::Allow, "{ua}: {v:?}");
            assert_eq!(v.score, 0, "{ua}: {v:?}");
            assert!(v.crawler.is_none(), "{ua}: {v:?}");
        }
    }

    #[test]
    fn search_engines_pass_and_headless_browsers_are_flagged() {
        let e = engine();
        let g = RequestFacts::basic(
            "66.249.66.1".parse().unwrap(),
            "GET",
            "/",
            Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
        );
        let v = e.evaluate(&g, Policy::Default);
        assert_eq!(v.action, Action::Allow);
        assert_eq!(v.category, Some(Category::SearchEngine));
        let mut h = browser_facts(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
        );
        h.sec_fetch_mode = None;
        let v = e.evaluate(&h, Policy::Default);
        assert_eq!(v.category, Some(Category::HeadlessBrowser));
        assert_eq!(v.action, Action::Observe);
        assert_eq!(v.rule.as_deref(), Some("flag-high-score"));
    }

    #[test]
    fn header_signals_need_known_headers() {
        let e = engine();
        let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        let mut f = browser_facts(ua);
        f.accept_language = None;
        f.accept = None;
        f.sec_fetch_mode = None;
        let v = e.evaluate(&f, Policy::Default);
        assert_eq!(v.score, 65, "{v:?}");
        assert_eq!(v.action, Action::Observe);
        f.headers_known = false;
        assert_eq!(e.evaluate(&f, Policy::Default).score, 0);
    }

    #[test]
    fn generic_tokens_never_block_alone() {
        let e = engine();
        let vscode = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Code/1.85.1 Chrome/114.0.5735.289 Electron/25.9.7 Safari/537.36";
        let v = e.evaluate(&browser_facts(vscode), Policy::Default);
        assert_eq!(v.action, Action::Allow, "{v:?}");
        assert_eq!(v.crawler.as_deref(), Some("Code"));
    }
}
