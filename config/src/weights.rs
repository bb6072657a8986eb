//! Signal weights: the built-in values, overridable by
//! `[detection.weights]`. One list names every signal the engine scores, so
//! that a misspelt name in the configuration is an error with its line.

/// A scored signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[repr(usize)]
pub enum Signal {
    /// No User-Agent at all.
    UaMissing,
    /// A catalog crawler of an AI category (training, search, assistant).
    CatalogAi,
    /// A catalog headless browser or automation tool.
    CatalogHeadless,
    /// A catalog HTTP library or command-line client.
    CatalogLibrary,
    /// A catalog SEO tool or other bot.
    CatalogSeoOther,
    /// A catalog search engine, link preview, archiver or monitor.
    CatalogBenign,
    /// A generic catalog word inside a browser string (`Code/1.2`).
    CatalogGeneric,
    /// Describes itself as automated, in no catalog entry (`unknown-bot`).
    SelfDeclaredBot,
    /// Claims a verifiable crawler from outside its ranges / reverse DNS.
    Spoofed,
    /// Browser user agent without `Accept-Language`.
    NoAcceptLanguage,
    /// Browser user agent without `Accept`.
    NoAccept,
    /// Current browser user agent without `Sec-Fetch-Mode`.
    NoSecFetch,
    /// `Sec-CH-UA` names HeadlessChrome.
    HeadlessHint,
    /// Client hints say Chromium, the user agent says otherwise.
    HintMismatch,
    /// HTTP/1 header order or casing of no browser, under a browser's UA.
    HeaderFingerprint,
    /// A TLS ClientHello of no browser, under a browser's UA.
    TlsFingerprint,
    /// Browser major version far behind the current one.
    StaleBrowser,
    /// HTTP/1.0.
    Http10,
    /// Fetched the robots.txt trap (this and later requests, for the penalty).
    RobotsTrap,
    /// Many images and no page in the window.
    ImagesWithoutPages,
    /// Over 90% images among at least 50 requests.
    ImageShare,
    /// Very high request rate in the window.
    HighRate,
    /// A burst of 404s (penalty time).
    NotFoundBurst,
    /// A Web Bot Auth signature that does not verify (forged, altered,
    /// expired, replayed, or covering too little).
    SignatureInvalid,
}

/// Name, built-in weight and meaning of each signal, in [`Signal`] order.
pub const SIGNALS: &[(Signal, &str, i32, &str)] = &[
    (Signal::UaMissing, "ua.missing", 30, "no User-Agent"),
    (
        Signal::CatalogAi,
        "ua.catalog.ai",
        100,
        "catalog AI crawler (training, search, assistant)",
    ),
    (
        Signal::CatalogHeadless,
        "ua.catalog.headless-browser",
        60,
        "catalog headless browser or automation tool",
    ),
    (
        Signal::CatalogLibrary,
        "ua.catalog.http-library",
        40,
        "catalog HTTP library or command-line client",
    ),
    (
        Signal::CatalogSeoOther,
        "ua.catalog.seo-other",
        20,
        "catalog SEO tool or other bot",
    ),
    (
        Signal::CatalogBenign,
        "ua.catalog.benign",
        0,
        "catalog search engine, link preview, archiver or monitor",
    ),
    (
        Signal::CatalogGeneric,
        "ua.catalog.generic",
        20,
        "a generic catalog word inside a browser string",
    ),
    (
        Signal::SelfDeclaredBot,
        "ua.self-declared-bot",
        60,
        "describes itself as automated, in no catalog entry",
    ),
    (
        Signal::Spoofed,
        "crawler.spoofed",
        150,
        "claims a verifiable crawler it is not",
    ),
    (
        Signal::NoAcceptLanguage,
        "header.no-accept-language",
        25,
        "browser user agent without Accept-Language",
    ),
    (
        Signal::NoAccept,
        "header.no-accept",
        20,
        "browser user agent without Accept",
    ),
    (
        Signal::NoSecFetch,
        "header.no-sec-fetch",
        20,
        "current browser without Sec-Fetch-Mode",
    ),
    (
        Signal::HeadlessHint,
        "header.headless-client-hint",
        60,
        "Sec-CH-UA names HeadlessChrome",
    ),
    (
        Signal::HintMismatch,
        "header.hint-mismatch",
        40,
        "client hints contradict the user agent",
    ),
    (
        Signal::HeaderFingerprint,
        "header.fingerprint",
        40,
        "HTTP/1 header order or casing of no browser, under a browser's user agent",
    ),
    (
        Signal::TlsFingerprint,
        "tls.fingerprint",
        50,
        "a TLS ClientHello of no browser (JA4), under a browser's user agent",
    ),
    (
        Signal::StaleBrowser,
        "ua.stale-browser",
        25,
        "browser version far behind the current one",
    ),
    (Signal::Http10, "http.1.0", 15, "HTTP/1.0"),
    (
        Signal::RobotsTrap,
        "behaviour.robots-trap",
        100,
        "fetched the robots.txt trap (for the penalty time)",
    ),
    (
        Signal::ImagesWithoutPages,
        "behaviour.images-without-pages",
        60,
        "20+ images and no page in the window",
    ),
    (
        Signal::ImageShare,
        "behaviour.image-share",
        30,
        "over 90% images among 50+ requests",
    ),
    (
        Signal::HighRate,
        "behaviour.high-rate",
        30,
        "600+ requests in the window",
    ),
    (
        Signal::NotFoundBurst,
        "behaviour.404-burst",
        40,
        "a burst of 404s (for the penalty time)",
    ),
    (
        Signal::SignatureInvalid,
        "signature.invalid",
        150,
        "a Web Bot Auth signature that does not verify (forged, altered, expired, replayed)",
    ),
];

const N: usize = 24;

/// The weights in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weights {
    values: [i32; N],
    configured: [bool; N],
}

impl Default for Weights {
    fn default() -> Self {
        let mut values = [0; N];
        for (s, _, w, _) in SIGNALS {
            if let Some(v) = values.get_mut(*s as usize) {
                *v = *w;
            }
        }
        Weights {
            values,
            configured: [false; N],
        }
    }
}

impl Weights {
    /// The weight of a signal.
    pub fn get(&self, s: Signal) -> i32 {
        self.values.get(s as usize).copied().unwrap_or(0)
    }

    /// `"configured"` when `[detection.weights]` set it, else `"built-in"`.
    pub fn source(&self, s: Signal) -> &'static str {
        if self.configured.get(s as usize).copied().unwrap_or(false) {
            "configured"
        } else {
            "built-in"
        }
    }

    /// The signal of a name (`header.no-accept`).
    pub fn signal(name: &str) -> Option<Signal> {
        SIGNALS
            .iter()
            .find(|(_, n, _, _)| *n == name)
            .map(|(s, ..)| *s)
    }

    /// The name of a signal.
    pub fn name(s: Signal) -> &'static str {
        SIGNALS
            .iter()
            .find(|(x, ..)| *x == s)
            .map(|(_, n, ..)| *n)
            .unwrap_or("")
    }

    /// Overrides one weight.
    pub fn set(&mut self, s: Signal, w: i32) {
        if let (Some(v), Some(c)) = (
            self.values.get_mut(s as usize),
            self.configured.get_mut(s as usize),
        ) {
            *v = w;
            *c = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_complete_and_in_order() {
        assert_eq!(SIGNALS.len(), N);
        for (i, (s, name, ..)) in SIGNALS.iter().enumerate() {
            assert_eq!(*s as usize, i, "{name}");
            assert_eq!(Weights::signal(name), Some(*s));
        }
    }
}

#[cfg(test)]
mod readme {
    /// The README's weight table is this table.
    #[test]
    fn the_readme_documents_every_weight() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .unwrap_or_default();
        for (_, name, w, what) in super::SIGNALS {
            let row = format!("| `{name}` | {w} | {what} |");
            assert!(readme.contains(&row), "README lacks {row}");
        }
    }
}
