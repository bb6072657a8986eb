//! Header fingerprint of HTTP/1 requests (Fixative's own design; not JA4H,
//! which is under the FoxIO License and patent pending).
//!
//! Browsers write their HTTP/1.1 headers in a fixed order and casing that
//! HTTP libraries do not reproduce when they only copy a browser's
//! `User-Agent`. From the raw header section of a request whose user agent
//! claims a browser, this module checks three facts that hold for every
//! current browser (Chrome and the other Chromium browsers, Firefox,
//! Safari and the WebKit browsers of iOS):
//!
//! 1. standard header names (`Host`, `User-Agent`, `Accept`,
//!    `Accept-Encoding`, `Accept-Language`, `Connection`) are written in
//!    Title-Case; Node's `fetch`/undici and others write them lower-case;
//!    and `Host` comes first (Python's `urllib` starts with
//!    `Accept-Encoding`);
//! 2. `Accept` comes before `Accept-Encoding` (Python's `requests` and
//!    `urllib3` write `Accept-Encoding` first), and `Accept-Encoding` is
//!    always sent (curl and most libraries send none);
//! 3. a Chromium browser that sends client hints (`sec-ch-ua`) sends them
//!    before `User-Agent`; libraries that add them append them later.
//!
//! The fingerprint itself, shown by `explain`, is the order of the headers
//! as two-letter codes plus a casing mark, e.g.
//! `ho,co,ch,ch,ch,ui,ua,ac,sf,sf,sf,sf,ae,al/T` for Chrome:
//! `ho` Host, `co` Connection, `ch` sec-ch-ua*, `ui`
//! Upgrade-Insecure-Requests, `ua` User-Agent, `ac` Accept, `sf`
//! Sec-Fetch-*, `ae` Accept-Encoding, `al` Accept-Language, `ck` Cookie,
//! `re` Referer, `cc` Cache-Control, `pr` Priority, `dn` DNT, `xx` others;
//! `/T` Title-Case, `/L` lower-case, `/M` mixed.
//!
//! Only meaningful when the client's own bytes arrive: behind a trusted
//! proxy that re-writes headers, the proxy does not pass them (see
//! `proxy/src/service.rs`). A client that copies a browser's whole header
//! set in order (curl-impersonate, a real browser under automation) passes
//! this check: that is what the TLS fingerprint and in-page checks are for.

/// Casing of the standard header names seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Title,
    Lower,
    Mixed,
}

/// What the raw header section says.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    headers: usize,
    host_first: bool,
    user_agent: Option<usize>,
    accept: Option<usize>,
    accept_encoding: Option<usize>,
    first_client_hint: Option<usize>,
    lower: usize,
    title: usize,
}

fn code(name: &[u8]) -> &'static str {
    let eq = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    let starts = |s: &str| {
        name.len() >= s.len()
            && name
                .get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s.as_bytes()))
    };
    if eq("host") {
        "ho"
    } else if eq("connection") {
        "co"
    } else if starts("sec-ch-ua") {
        "ch"
    } else if eq("upgrade-insecure-requests") {
        "ui"
    } else if eq("user-agent") {
        "ua"
    } else if eq("accept") {
        "ac"
    } else if starts("sec-fetch-") {
        "sf"
    } else if eq("accept-encoding") {
        "ae"
    } else if eq("accept-language") {
        "al"
    } else if eq("cookie") {
        "ck"
    } else if eq("referer") {
        "re"
    } else if eq("cache-control") {
        "cc"
    } else if eq("priority") {
        "pr"
    } else if eq("dnt") {
        "dn"
    } else {
        "xx"
    }
}

fn is_standard(c: &str) -> bool {
    matches!(c, "ho" | "co" | "ua" | "ac" | "ae" | "al")
}

/// The header names of a raw HTTP/1 header section, in order (the request
/// line is skipped; blanks before the colon are not part of the name).
/// One parser for the fingerprint and the proxy's framing checks.
pub fn header_names(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    raw.split(|b| *b == b'\n').skip(1).filter_map(|line| {
        let colon = line.iter().position(|b| *b == b':')?;
        let name = line.get(..colon)?.trim_ascii_end();
        (!name.is_empty()).then_some(name)
    })
}

/// Each header's code and, for the standard names, its casing.
fn classified(raw: &[u8]) -> impl Iterator<Item = (&'static str, Option<Case>)> {
    header_names(raw).map(|name| {
        let c = code(name);
        (c, is_standard(c).then(|| case_of(name)))
    })
}

fn case_of(name: &[u8]) -> Case {
    let mut title = true;
    let mut lower = true;
    let mut at_start = true;
    for b in name {
        if b.is_ascii_alphabetic() {
            if at_start {
                title &= b.is_ascii_uppercase();
                lower &= b.is_ascii_lowercase();
            } else {
                title &= b.is_ascii_lowercase();
                lower &= b.is_ascii_lowercase();
            }
        }
        at_start = *b == b'-';
    }
    match (title, lower) {
        (true, _) => Case::Title,
        (_, true) => Case::Lower,
        _ => Case::Mixed,
    }
}

impl Shape {
    /// Reads a raw header section. Allocation-free.
    pub fn of(raw: &[u8]) -> Shape {
        let mut s = Shape::default();
        for (i, (c, case)) in classified(raw).enumerate() {
            s.headers += 1;
            if i == 0 {
                s.host_first = c == "ho";
            }
            match c {
                "ua" if s.user_agent.is_none() => s.user_agent = Some(i),
                "ac" if s.accept.is_none() => s.accept = Some(i),
                "ae" if s.accept_encoding.is_none() => s.accept_encoding = Some(i),
                "ch" if s.first_client_hint.is_none() => s.first_client_hint = Some(i),
                _ => {}
            }
            match case {
                Some(Case::Title) => s.title += 1,
                Some(Case::Lower) => s.lower += 1,
                _ => {}
            }
        }
        s
    }

    /// Why a request claiming a browser does not have a browser's header
    /// shape, or `None`. `chromium`: the user agent claims a Chromium
    /// browser outside iOS (whose browsers all use WebKit's networking).
    pub fn mismatch(&self, chromium: bool) -> Option<&'static str> {
        if self.headers == 0 {
            return None;
        }
        if self.lower > 0 {
            return Some("lower-case header names, unlike any browser over HTTP/1.1");
        }
        if !self.host_first {
            return Some("Host is not the first header (every browser sends it first)");
        }
        let Some(ae) = self.accept_encoding else {
            return Some("no Accept-Encoding, which every browser sends");
        };
        if self.accept.is_some_and(|a| ae < a) {
            return Some("Accept-Encoding before Accept (an HTTP library's order)");
        }
        if chromium
            && let (Some(ch), Some(ua)) = (self.first_client_hint, self.user_agent)
            && ch > ua
        {
            return Some("client hints after User-Agent (Chromium sends them before)");
        }
        None
    }
}

/// The fingerprint string of a raw header section (for explanations; it
/// allocates, so it is built only when a signal fires).
pub fn fingerprint(raw: &[u8]) -> String {
    let mut out = String::new();
    for (i, (c, _)) in classified(raw).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(c);
    }
    let s = Shape::of(raw);
    out.push_str(match (s.lower, s.title) {
        (0, _) => "/T",
        (_, 0) => "/L",
        _ => "/M",
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &[u8] = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive\r\nsec-ch-ua: \"Chromium\";v=\"131\"\r\nsec-ch-ua-mobile: ?0\r\nsec-ch-ua-platform: \"Linux\"\r\nUpgrade-Insecure-Requests: 1\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\nSec-Fetch-Site: none\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-User: ?1\r\nSec-Fetch-Dest: document\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n\r\n";
    const FIREFOX: &[u8] = b"GET / HTTP/1.1\r\nHost: a.test\r\nUser-Agent: Mozilla/5.0 Firefox/133.0\r\nAccept: text/html\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nConnection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Site: none\r\nSec-Fetch-User: ?1\r\nPriority: u=0, i\r\n\r\n";
    const SAFARI: &[u8] = b"GET / HTTP/1.1\r\nHost: a.test\r\nAccept: text/html\r\nSec-Fetch-Site: none\r\nAccept-Language: en-GB,en;q=0.9\r\nSec-Fetch-Mode: navigate\r\nAccept-Encoding: gzip, deflate\r\nUser-Agent: Mozilla/5.0 Safari/605.1.15\r\nConnection: keep-alive\r\nSec-Fetch-Dest: document\r\n\r\n";
    const REQUESTS: &[u8] = b"GET / HTTP/1.1\r\nHost: a.test\r\nUser-Agent: Mozilla/5.0 Chrome/131\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n";
    const CURL: &[u8] = b"GET / HTTP/1.1\r\nHost: a.test\r\nUser-Agent: Mozilla/5.0 Chrome/131\r\nAccept: */*\r\n\r\n";
    const UNDICI: &[u8] = b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: keep-alive\r\nuser-agent: Mozilla/5.0 Chrome/131\r\naccept: */*\r\naccept-language: *\r\nsec-fetch-mode: cors\r\naccept-encoding: gzip, deflate\r\n\r\n";

    #[test]
    fn browsers_pass_libraries_do_not() {
        assert_eq!(Shape::of(CHROME).mismatch(true), None);
        assert_eq!(Shape::of(FIREFOX).mismatch(false), None);
        assert_eq!(Shape::of(SAFARI).mismatch(false), None);
        assert!(
            Shape::of(REQUESTS)
                .mismatch(true)
                .unwrap()
                .contains("Accept-Encoding before Accept")
        );
        assert!(
            Shape::of(CURL)
                .mismatch(true)
                .unwrap()
                .contains("no Accept-Encoding")
        );
        assert!(
            Shape::of(UNDICI)
                .mismatch(true)
                .unwrap()
                .contains("lower-case")
        );
        let urllib = b"GET / HTTP/1.1\r\nAccept-Encoding: identity\r\nHost: a.test\r\nUser-Agent: Mozilla/5.0 Chrome/131\r\nConnection: close\r\n\r\n";
        assert!(
            Shape::of(urllib)
                .mismatch(true)
                .unwrap()
                .contains("Host is not the first")
        );
        let late_hints = b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\nAccept: */*\r\nsec-ch-ua: \"Chromium\"\r\nAccept-Encoding: gzip\r\n\r\n";
        assert!(
            Shape::of(late_hints)
                .mismatch(true)
                .unwrap()
                .contains("client hints")
        );
        assert_eq!(Shape::of(late_hints).mismatch(false), None);
    }

    #[test]
    fn the_fingerprint_reads_like_the_docs() {
        assert_eq!(
            fingerprint(CHROME),
            "ho,co,ch,ch,ch,ui,ua,ac,sf,sf,sf,sf,ae,al/T"
        );
        assert_eq!(fingerprint(REQUESTS), "ho,ua,ae,ac,co/T");
        assert_eq!(fingerprint(UNDICI), "ho,co,ua,ac,al,sf,ae/L");
    }
}
