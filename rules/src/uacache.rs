//! What a user agent alone says (its catalog entry, whether it declares
//! itself a bot), cached by user-agent string.
//!
//! Most traffic repeats a few thousand user agents, and classifying one
//! costs two automaton passes; a hit costs one hash and one short lock.
//! Bounded: 16 shards of at most `cap / 16` entries each, least recently
//! used evicted. A user agent rotating on every request only misses.

use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

/// The classification of one user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UaClass {
    /// Index of the catalog entry and whether the match is weak.
    pub catalog: Option<(usize, bool)>,
    /// Why it declares itself a bot (only looked at when the catalog does
    /// not name it fully).
    pub declared: Option<&'static str>,
    /// What it claims about the browser sending it.
    pub traits: UaTraits,
}

/// What a user agent claims about the browser sending it, read once per
/// distinct user agent (each is a scan of the string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UaTraits {
    /// `Mozilla/5.0` and a Chrome, Firefox or Safari token.
    pub claims_browser: bool,
    /// The `Chrome/` token's major version.
    pub chrome: Option<u32>,
    /// The `Firefox/` token's major version.
    pub firefox: Option<u32>,
    /// A browser of this version sends `Sec-Fetch-*`.
    pub sends_sec_fetch: bool,
    /// A `Chrome/` token.
    pub chrome_token: bool,
    /// Chromium's own header order applies (a `Chrome/` token, not an iOS
    /// browser, which runs on WebKit).
    pub chromium: bool,
    /// The browser sends GREASE in its TLS hello (Chromium and Safari, and
    /// every iOS browser; not Firefox).
    pub greasy: bool,
}

impl UaTraits {
    /// Reads the traits of `ua`.
    pub fn of(ua: &str) -> UaTraits {
        let chrome_token = ua.contains("Chrome/");
        UaTraits {
            claims_browser: crate::engine::claims_browser(ua),
            chrome: crate::engine::version_after(ua, "Chrome/"),
            firefox: crate::engine::version_after(ua, "Firefox/"),
            sends_sec_fetch: crate::engine::sends_sec_fetch(ua),
            chrome_token,
            chromium: chrome_token
                && !ua.contains("iPhone")
                && !ua.contains("iPad")
                && !ua.contains("CriOS"),
            greasy: ua.contains("Safari/") && !ua.contains("Firefox/"),
        }
    }
}

const SHARDS: usize = 16;

/// The cache.
pub struct UaCache {
    shards: Vec<Mutex<LruCache<u64, (usize, UaClass)>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for UaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UaCache").field("len", &self.len()).finish()
    }
}

impl UaCache {
    /// A cache of at most `cap` user agents.
    pub fn new(cap: usize) -> UaCache {
        let per = NonZeroUsize::new((cap / SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        UaCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per)))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The class of `ua`, computed by `classify` on a miss.
    pub fn get_or(&self, ua: &str, classify: impl FnOnce() -> UaClass) -> UaClass {
        let h = self.hasher.hash_one(ua);
        let Some(shard) = self.shards.get((h as usize) % SHARDS) else {
            return classify();
        };
        if let Ok(mut m) = shard.lock()
            && let Some((len, c)) = m.get(&h)
            && *len == ua.len()
        {
            return *c;
        }
        let c = classify();
        if let Ok(mut m) = shard.lock() {
            m.put(h, (ua.len(), c));
        }
        c
    }

    /// User agents held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_and_stays_bounded() {
        let c = UaCache::new(160);
        let mut calls = 0;
        let class = UaClass {
            catalog: None,
            declared: Some("x"),
            traits: UaTraits::default(),
        };
        for _ in 0..3 {
            assert_eq!(
                c.get_or("A/1", || {
                    calls += 1;
                    class
                }),
                class
            );
        }
        assert_eq!(calls, 1);
        for i in 0..10_000 {
            c.get_or(&format!("ua-{i}"), || class);
        }
        assert!(c.len() <= 160, "{}", c.len());
    }

    use proptest::prelude::*;

    fn browser_ua() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "Mozilla/5.0 ",
            "(X11; Linux x86_64) ",
            "(iPhone; CPU iPhone OS 17_0) ",
            "(iPad) ",
            "AppleWebKit/537.36 ",
            "Chrome/",
            "CriOS/",
            "Firefox/",
            "Safari/",
            "Version/",
            "Gecko/20100101 ",
            "HeadlessChrome/",
            "rv:145.0) ",
            "131",
            "75",
            "17",
            "16.4",
            ".0.0.0 ",
            "; ",
            ")",
            " ",
            "Edg/131",
        ]);
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        /// The traits read once per user agent are what the engine read
        /// from the string on every request before they were cached.
        #[test]
        fn traits_are_what_the_engine_read_per_request(
            ua in prop_oneof![browser_ua(), ".{0,120}"]
        ) {
            let t = UaTraits::of(&ua);
            use crate::engine::{claims_browser, sends_sec_fetch, version_after};
            prop_assert_eq!(t.claims_browser, claims_browser(&ua));
            prop_assert_eq!(t.sends_sec_fetch, sends_sec_fetch(&ua));
            prop_assert_eq!(t.chrome, version_after(&ua, "Chrome/"));
            prop_assert_eq!(t.firefox, version_after(&ua, "Firefox/"));
            prop_assert_eq!(t.chrome_token, ua.contains("Chrome/"));
            prop_assert_eq!(
                t.chromium,
                ua.contains("Chrome/")
                    && !ua.contains("iPhone")
                    && !ua.contains("iPad")
                    && !ua.contains("CriOS")
            );
            prop_assert_eq!(t.greasy, ua.contains("Safari/") && !ua.contains("Firefox/"));
        }
    }

    /// Known browsers, by their real user agents.
    #[test]
    fn traits_of_real_browsers() {
        let chrome = UaTraits::of(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        );
        assert!(
            chrome.claims_browser && chrome.chromium && chrome.greasy && chrome.sends_sec_fetch
        );
        assert_eq!((chrome.chrome, chrome.firefox), (Some(131), None));
        let firefox =
            UaTraits::of("Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0");
        assert!(firefox.claims_browser && !firefox.chromium && !firefox.greasy);
        assert_eq!((firefox.chrome, firefox.firefox), (None, Some(145)));
        let ios_chrome = UaTraits::of(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.0.0 Mobile/15E148 Safari/604.1",
        );
        assert!(ios_chrome.claims_browser && !ios_chrome.chromium && ios_chrome.greasy);
        let curl = UaTraits::of("curl/8.5.0");
        assert_eq!(curl, UaTraits::default());
    }
}
