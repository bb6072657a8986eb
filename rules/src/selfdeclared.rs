//! Self-declared bots that no catalog entry names.
//!
//! New crawlers appear every month and most never make it into a list, but
//! almost all of them describe themselves as automated in ways no browser
//! does. Real browser user agents follow one shape: `Mozilla/5.0 (platform)
//! engine/version (KHTML, like Gecko) browser/version …`, or an older
//! `Opera/…` form. Those shapes never carry:
//!
//! - a URL or `www.` (`+https://example.com/bot.html`: a contact address);
//! - an e-mail address;
//! - a bot word as a word or word suffix: `bot`, `crawler`, `spider`,
//!   `scraper`, `fetcher`, `agent`, `archiver`, `indexer`, …
//!   (`MyNewBot/1.0`, `site-crawler`, `ContentFetcher`);
//! - `compatible; Name/1.0` where `Name` is not Internet Explorer;
//! - a leading product token that is not a browser's, without any
//!   browser engine (`Acme/2.1`, `my-tool/0.3 (+…)`), apart from the HTTP
//!   stacks of native mobile apps (`CFNetwork`, `Dalvik`), which people's
//!   apps use;
//! - a known crawling framework or library name (`Scrapy`, `Nutch`,
//!   `colly`, `HTTrack`, …) not already in the catalog.
//!
//! The rules are ours; they were written after reading how general
//! detectors approach the problem (isbot's single pattern, Matomo's
//! device-detector, the crawler-user-agents list), and are checked against
//! a corpus of real user agents in `rules/tests/corpus.rs`. Browser
//! strings that merely contain such words are excepted where real ones do
//! (`CUBOT` phones, `Agentic` in no browser, …): the corpus test proves no
//! real browser user agent is flagged.
//!
//! Allocation-free: one pass of an Aho-Corasick automaton over the user
//! agent for every word, and a few byte scans.

/// Why a user agent reads as a self-declared bot, or `None`.
pub fn self_declared(ua: &str) -> Option<&'static str> {
    let ua = ua.trim();
    if ua.is_empty() {
        return None;
    }
    let words = scan(ua);
    if words.url {
        return Some("contact URL in the user agent");
    }
    if words.at || has_email(ua) {
        return Some("e-mail address in the user agent");
    }
    if has_domain(ua) {
        return Some("a domain name in the user agent");
    }
    if let Some(w) = words.word {
        return Some(w);
    }
    if words
        .compatible
        .is_some_and(|at| compatible_product(ua, at))
    {
        return Some("`compatible; Name/version` of no browser");
    }
    if !has_browser_shape(ua) {
        return Some("a product token without any browser engine");
    }
    None
}

/// What one pass of the word automaton found.
#[derive(Default)]
struct Found {
    url: bool,
    at: bool,
    /// The reason of the most telling bot word (suffix words, then words
    /// anywhere, then tools).
    word: Option<&'static str>,
    word_rank: u8,
    /// End of the first `compatible;`.
    compatible: Option<usize>,
}

#[derive(Clone, Copy)]
enum Kind {
    Url,
    At,
    Suffix(&'static str),
    Anywhere(&'static str),
    Tool,
    Compatible,
}

/// One ASCII-case-insensitive automaton over every word: one pass over
/// the user agent instead of one per word.
fn automaton() -> Option<&'static (aho_corasick::AhoCorasick, Vec<Kind>)> {
    static A: std::sync::OnceLock<Option<(aho_corasick::AhoCorasick, Vec<Kind>)>> =
        std::sync::OnceLock::new();
    A.get_or_init(|| {
        let mut pats: Vec<&'static str> = Vec::new();
        let mut kinds = Vec::new();
        for u in ["http://", "https://", "www.", "+http"] {
            pats.push(u);
            kinds.push(Kind::Url);
        }
        for a in ["(at)", "[at]"] {
            pats.push(a);
            kinds.push(Kind::At);
        }
        for (w, why) in SUFFIX_WORDS {
            pats.push(w);
            kinds.push(Kind::Suffix(why));
        }
        for (w, why) in ANYWHERE_WORDS {
            pats.push(w);
            kinds.push(Kind::Anywhere(why));
        }
        for t in TOOLS {
            pats.push(t);
            kinds.push(Kind::Tool);
        }
        pats.push("compatible;");
        kinds.push(Kind::Compatible);
        let ac = aho_corasick::AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(aho_corasick::MatchKind::Standard)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&pats)
            .ok()?;
        Some((ac, kinds))
    })
    .as_ref()
}

fn scan(ua: &str) -> Found {
    let b = ua.as_bytes();
    let mut f = Found::default();
    // Building over fixed words cannot fail; if it did, only the byte
    // checks would run.
    let Some((ac, kinds)) = automaton() else {
        return f;
    };
    for m in ac.find_overlapping_iter(ua) {
        let Some(kind) = kinds.get(m.pattern().as_usize()) else {
            continue;
        };
        let (i, end) = (m.start(), m.end());
        match *kind {
            Kind::Url => f.url = true,
            Kind::At => f.at = true,
            Kind::Compatible => {
                f.compatible.get_or_insert(end);
            }
            Kind::Suffix(why) => {
                // At the end of a word (`MyBot/1`, `site-crawler`), not
                // inside one (`Bottle`, `agentur`).
                if b.get(end).is_some_and(|c| c.is_ascii_alphabetic()) {
                    continue;
                }
                let (s, e) = word_at(b, i, end);
                let word = b.get(s..e).unwrap_or_default();
                if BROWSER_EXCEPTIONS
                    .iter()
                    .any(|x| word.eq_ignore_ascii_case(x.as_bytes()))
                {
                    continue;
                }
                if f.word_rank < 3 {
                    f.word = Some(why);
                    f.word_rank = 3;
                }
            }
            Kind::Anywhere(why) => {
                if f.word_rank < 2 {
                    f.word = Some(why);
                    f.word_rank = 2;
                }
            }
            Kind::Tool => {
                let before = i.checked_sub(1).and_then(|j| b.get(j));
                let after = b.get(end);
                if before.is_some_and(|c| c.is_ascii_alphanumeric())
                    || after.is_some_and(|c| c.is_ascii_alphanumeric())
                {
                    continue;
                }
                if f.word_rank < 1 {
                    f.word = Some("an HTTP tool or crawling framework");
                    f.word_rank = 1;
                }
            }
        }
    }
    f
}

/// Top-level domains seen in bots' self-descriptions (`example.com`,
/// `air.ai/scanning`); browsers never name a domain.
const TLDS: &[&str] = &[
    "com", "net", "org", "io", "ai", "co", "app", "dev", "info", "biz", "fr", "de", "uk", "ru",
    "cn", "jp", "nl", "eu", "xyz", "me", "us", "ca", "au", "in", "br", "it", "es", "pl", "se",
    "ch", "at", "be", "dk", "no", "fi", "cz", "kr", "tw", "edu", "gov",
];

/// `local@domain.tld` (or `(at)` / `[at]`), the domain ending in a
/// top-level domain of letters: `android@150.0.0.0` (Ecosia's version tag)
/// is not an address.
fn has_email(ua: &str) -> bool {
    let b = ua.as_bytes();
    b.iter().enumerate().any(|(i, c)| {
        *c == b'@'
            && i > 0
            && b.get(i - 1).is_some_and(|p| p.is_ascii_alphanumeric())
            && b.get(i + 1..).is_some_and(|rest| {
                let end = rest
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-'))
                    .unwrap_or(rest.len());
                let dom = rest.get(..end).unwrap_or_default();
                ends_with_tld(dom)
            })
    })
}

/// Whether `name` (`example.com`) has a dot and ends in a known TLD.
fn ends_with_tld(name: &[u8]) -> bool {
    let Some(dot) = name.iter().rposition(|c| *c == b'.') else {
        return false;
    };
    let tld = name.get(dot + 1..).unwrap_or_default();
    dot > 0 && TLDS.iter().any(|t| tld.eq_ignore_ascii_case(t.as_bytes()))
}

/// A domain name as a word of its own (`PrintFriendly.com`,
/// `(compatible; theoldreader.com)`).
fn has_domain(ua: &str) -> bool {
    let b = ua.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b.get(i).is_some_and(|c| c.is_ascii_alphanumeric()) {
            let start = i;
            while b
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-')
            {
                i += 1;
            }
            let word = b.get(start..i).unwrap_or_default();
            let word = word.strip_suffix(b".").unwrap_or(word);
            if word.iter().any(|c| c.is_ascii_alphabetic())
                && word.first().is_some_and(|c| c.is_ascii_alphabetic())
                && ends_with_tld(word)
            {
                return true;
            }
        } else {
            i += 1;
        }
    }
    false
}

/// Words that, at the end of a word, make a name a bot's.
const SUFFIX_WORDS: &[(&str, &str)] = &[
    ("bot", "`bot` in a product name"),
    ("crawler", "`crawler` in a product name"),
    ("spider", "`spider` in a product name"),
    ("scraper", "`scraper` in a product name"),
    ("fetcher", "`fetcher` in a product name"),
    ("archiver", "`archiver` in a product name"),
    ("indexer", "`indexer` in a product name"),
    ("harvester", "`harvester` in a product name"),
    ("robot", "`robot` in a product name"),
    ("checker", "`checker` in a product name"),
    ("monitor", "`monitor` in a product name"),
    ("validator", "`validator` in a product name"),
    ("agent", "`agent` in a product name"),
    ("check", "`check` in a product name"),
    ("watcher", "`watcher` in a product name"),
    ("reader", "`reader` in a product name"),
    ("finder", "`finder` in a product name"),
    ("inspector", "`inspector` in a product name"),
    ("proxy", "`proxy` in a product name"),
    ("preview", "`preview` in a product name"),
    ("analyzer", "`analyzer` in a product name"),
    ("synthetics", "`synthetics` in a product name"),
];

/// Words that name a bot anywhere in a word.
const ANYWHERE_WORDS: &[(&str, &str)] = &[
    ("crawl", "`crawl` in the user agent"),
    ("spider", "`spider` in the user agent"),
    ("scrap", "`scrape` in the user agent"),
    ("headless", "`headless` in the user agent"),
    ("fetcher", "`fetcher` in the user agent"),
    ("slurp", "`slurp` in the user agent"),
    ("scan", "`scan` in the user agent"),
    ("lighthouse", "`lighthouse` in the user agent"),
];

/// Crawling frameworks, download tools and HTTP stacks that are not (or
/// not all) in the catalog; matched as whole words.
const TOOLS: &[&str] = &[
    "scrapy",
    "nutch",
    "heritrix",
    "httrack",
    "colly",
    "crawler4j",
    "stormcrawler",
    "webcopier",
    "wget",
    "curl",
    "libcurl",
    "pycurl",
    "httpie",
    "aiohttp",
    "httpx",
    "urllib",
    "requests",
    "okhttp",
    "axios",
    "undici",
    "node-fetch",
    "got",
    "superagent",
    "guzzle",
    "restsharp",
    "faraday",
    "mechanize",
    "lwp",
    "libwww",
    "winhttp",
    "wininet",
    "jakarta",
    "httpclient",
    "http-client",
    "java",
    "go-http-client",
    "reqwest",
    "hyper",
    "python",
    "perl",
    "ruby",
    "php",
    "dart",
    "postmanruntime",
    "insomnia",
    "powershell",
    "playwright",
    "puppeteer",
    "selenium",
    "phantomjs",
    "cypress",
    "webdriver",
    "electron-fetch",
    "apify",
    "crawlee",
    "firecrawl",
    "jina",
    "newspaper",
    "trafilatura",
    "feedparser",
    "feedfetcher",
    "rss",
    "podcast",
    "dataprovider",
    "zgrab",
    "masscan",
    "nmap",
    "nikto",
    "sqlmap",
    "nuclei",
    "httpunit",
    "htmlunit",
    "cfnetwork-bot",
];

/// Brand names in real browser strings that end like a bot word.
const BROWSER_EXCEPTIONS: &[&str] = &["cubot", "probot", "robotic"];

fn word_at(b: &[u8], start: usize, end: usize) -> (usize, usize) {
    let mut s = start;
    while s > 0 && b.get(s - 1).is_some_and(|c| c.is_ascii_alphanumeric()) {
        s -= 1;
    }
    let mut e = end;
    while b.get(e).is_some_and(|c| c.is_ascii_alphanumeric()) {
        e += 1;
    }
    (s, e)
}

/// `(compatible; Name/1.0…)` where `Name` is not a browser's token; `at`
/// is the end of `compatible;`.
fn compatible_product(ua: &str, at: usize) -> bool {
    let rest = ua.get(at..).unwrap_or_default().trim_start();
    let token: &str = rest.split([';', ')', ' ']).next().unwrap_or_default();
    if token.is_empty() {
        return false;
    }
    let name = token.split('/').next().unwrap_or_default();
    let browserish = [
        "MSIE",
        "Konqueror",
        "Trident",
        "Opera",
        "Windows",
        "Linux",
        "Mac",
        "U",
    ]
    .iter()
    .any(|x| name.eq_ignore_ascii_case(x));
    !browserish && (token.contains('/') || name.chars().any(|c| c.is_ascii_uppercase()))
}

/// The shape of a browser (or of a native app's HTTP stack): anything
/// else is a bare product token.
fn has_browser_shape(ua: &str) -> bool {
    let first = ua.split([' ', '(']).next().unwrap_or_default();
    let name = first.split('/').next().unwrap_or_default();
    if name.eq_ignore_ascii_case("Mozilla") || name.eq_ignore_ascii_case("Opera") {
        return true;
    }
    // Engines and browser tokens anywhere (some apps put their own name first).
    const MARKERS: &[&str] = &[
        "AppleWebKit/",
        "Gecko/",
        "Chrome/",
        "Safari/",
        "Firefox/",
        "Trident/",
        "Presto/",
        "Edg/",
        "OPR/",
        // Native mobile app stacks: people's apps.
        "CFNetwork/",
        "Dalvik/",
    ];
    MARKERS.iter().any(|m| ua.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_self_declared_bots() {
        for ua in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36; Devin/1.0; +https://devin.ai",
            "Mozilla/5.0 (compatible; Qwantify/2.4w; +https://www.qwant.com/)/2.4w",
            "Mozilla/5.0 (compatible; NewsAggregatorX/3.1)",
            "SomeNewAICrawler/0.1",
            "acme-dataset-builder/2.0 (research; ops@acme.example)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) MyCoolBot/1.0 Chrome/124 Safari/537.36",
            "ContentFetcher/1.3",
            "Scrapy/2.11.0 (+https://scrapy.org)",
            "python-httpx/0.27.0",
        ] {
            assert!(self_declared(ua).is_some(), "{ua}");
        }
    }

    #[test]
    fn real_browsers_and_apps_are_not_flagged() {
        for ua in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Mozilla/5.0 (Linux; Android 10; CUBOT P40) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
            "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1; Trident/6.0)",
            "Opera/9.80 (Windows NT 6.1; U; en) Presto/2.10.289 Version/12.00",
            "Instagram 309.1.0.41.113 (iPhone14,2; iOS 17_1_2; en_US) AppleWebKit/420+",
            "ArtPlatform/2.1 CFNetwork/1408.0.4 Darwin/22.5.0",
            "Dalvik/2.1.0 (Linux; U; Android 13; SM-S911B Build/TP1A.220624.014)",
        ] {
            assert_eq!(self_declared(ua), None, "{ua}");
        }
    }
}
