//! The crawler catalog: data, compiled into a user-agent matcher.
//!
//! The default catalog (`rules/data/catalog.toml`) is compiled in. Each
//! entry names a crawler, its operator and [`Category`], the user-agent
//! tokens it sends, the robots.txt tokens it obeys, and for verifiable bots
//! the reverse-DNS suffixes and IP-range files.
//!
//! Matching is literal (one Aho-Corasick automaton over every token, ASCII
//! case-insensitive) with word boundaries, so `GPTBot` matches
//! `Mozilla/5.0 (compatible; GPTBot/1.2)` but `LCC` never matches `SLCC2`.
//! Entries marked `strict` are generic words (`Code`, `Spider`, `Cursor`…):
//! they match only case-sensitively as a product token (`Code/1.2` at the
//! start or after a space, `(` or `;`) or after `compatible;`. Such a match
//! is full (the crawler is identified and its policy applies) when the user
//! agent presents the word as the client: after `compatible;`, beside a
//! contact URL, or as a versioned product token outside a browser's string.
//! Inside a real browser string (an Electron app's `Code/1.85.1 Chrome/…`)
//! it stays weak, so that policy never blocks on it alone.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use serde::Deserialize;

use crate::verdict::Category;

/// The default catalog, as shipped.
pub const DEFAULT_CATALOG: &str = include_str!("../data/catalog.toml");

/// One crawler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crawler {
    /// Display name.
    pub name: String,
    /// Who runs it.
    pub operator: String,
    /// What it is.
    pub category: Category,
    /// User-agent tokens.
    #[serde(default)]
    pub ua: Vec<String>,
    /// robots.txt `User-agent` tokens.
    #[serde(default)]
    pub robots: Vec<String>,
    /// Generic word: product-token, case-sensitive match only; weak signal.
    #[serde(default)]
    pub strict: bool,
    /// Reverse-DNS suffixes that verify it.
    #[serde(default)]
    pub rdns: Vec<String>,
    /// Published IP-range files that verify it.
    #[serde(default)]
    pub ip_ranges: Vec<String>,
    /// Web Bot Auth `Signature-Agent` hosts whose verified signatures name
    /// this crawler.
    #[serde(default)]
    pub signature_agents: Vec<String>,
    /// Where the entry comes from.
    #[serde(default)]
    pub source: String,
}

/// Where an operator publishes a crawler IP-range file
/// (`[[ip_range_source]]` in a catalog file), for `fixative ip-ranges
/// update`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IpRangeSource {
    /// The file name crawler entries give in `ip_ranges`.
    pub file: String,
    /// Where it is published.
    pub url: String,
    /// Who publishes it.
    #[serde(default)]
    pub operator: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    crawler: Vec<Crawler>,
    #[serde(default)]
    ip_range_source: Vec<IpRangeSource>,
}

/// Whether the text before byte `s` ends with `compatible;` (and spaces).
fn after_compatible(ua: &str, s: usize) -> bool {
    ua.get(..s).map(str::trim_end).is_some_and(|b| {
        b.len() >= 11
            && b.get(b.len() - 11..)
                .is_some_and(|t| t.eq_ignore_ascii_case("compatible;"))
    })
}

/// Parses a catalog file entry by entry, so that every bad entry is
/// reported (with its line), not only the first.
fn parse_entries(src: &str) -> Result<(Vec<Crawler>, Vec<IpRangeSource>), Vec<String>> {
    let table: toml::Table = toml::from_str(src).map_err(|e| vec![e.to_string()])?;
    let spans = fixative_config::spans::Spans::new(src);
    let root = fixative_config::spans::KeyPath::root();
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut sources = Vec::new();
    for (k, v) in &table {
        if k == "ip_range_source" {
            let Some(entries) = v.as_array() else {
                problems.push(
                    "\"ip_range_source\" must be an array of tables ([[ip_range_source]])".into(),
                );
                continue;
            };
            for (i, e) in entries.iter().enumerate() {
                let at = spans
                    .line(&root.key("ip_range_source").index(i))
                    .map(|l| format!("line {l}: "))
                    .unwrap_or_default();
                match IpRangeSource::deserialize(e.clone()) {
                    Ok(src) if !src.file.ends_with(".json") || src.file.contains('/') => problems
                        .push(format!(
                            "{at}ip_range_source[{i}]: file {:?} must be a plain name ending in .json",
                            src.file
                        )),
                    Ok(src) if !src.url.starts_with("https://") && !src.url.starts_with("http://") => {
                        problems.push(format!(
                            "{at}ip_range_source[{i}]: url {:?} must be http:// or https://",
                            src.url
                        ))
                    }
                    Ok(src) => sources.push(src),
                    Err(err) => problems.push(format!("{at}ip_range_source[{i}]: {}", err.message())),
                }
            }
            continue;
        }
        if k != "crawler" {
            let line = spans
                .line(&root.key(k))
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            problems.push(format!(
                "{line}unknown key {k:?} (expected [[crawler]] or [[ip_range_source]] entries)"
            ));
            continue;
        }
        let Some(entries) = v.as_array() else {
            problems.push("\"crawler\" must be an array of tables ([[crawler]])".to_string());
            continue;
        };
        for (i, e) in entries.iter().enumerate() {
            let at = spans
                .line(&root.key("crawler").index(i))
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            let label = e
                .get("name")
                .and_then(|n| n.as_str())
                .map(|n| format!(" ({n:?})"))
                .unwrap_or_default();
            match Crawler::deserialize(e.clone()) {
                Ok(c) => out.push(c),
                Err(err) => problems.push(format!("{at}crawler[{i}]{label}: {}", err.message())),
            }
        }
    }
    if problems.is_empty() {
        Ok((out, sources))
    } else {
        Err(problems)
    }
}

/// A match of a user agent against the catalog.
#[derive(Debug, Clone, Copy)]
pub struct UaMatch<'a> {
    /// The crawler.
    pub crawler: &'a Crawler,
    /// Its index in [`Catalog::crawlers`].
    pub index: usize,
    /// Whether only a generic (strict) token matched.
    pub weak: bool,
}

/// The compiled catalog.
#[derive(Debug)]
pub struct Catalog {
    crawlers: Vec<Crawler>,
    sources: Vec<IpRangeSource>,
    automaton: AhoCorasick,
    /// Pattern index → (crawler index, token is strict, token).
    patterns: Vec<(usize, bool, String)>,
}

impl Catalog {
    /// Parses and compiles a catalog from TOML text.
    pub fn from_toml(src: &str) -> Result<Catalog, String> {
        let file: CatalogFile = toml::from_str(src).map_err(|e| e.to_string())?;
        let mut c = Catalog::new(file.crawler)?;
        c.sources = file.ip_range_source;
        Ok(c)
    }

    /// The compiled-in default catalog.
    pub fn default_catalog() -> Result<Catalog, String> {
        Catalog::from_toml(DEFAULT_CATALOG)
    }

    /// The shipped catalog extended by files: an entry whose name exists
    /// already replaces it, others are added.
    pub fn with_files(files: &[std::path::PathBuf]) -> Result<Catalog, String> {
        Catalog::with_files_checked(files).map_err(|errs| {
            errs.into_iter()
                .map(|(_, m)| m)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Like [`Catalog::with_files`], reporting every problem of every
    /// file: `(index of the file in files, message with the file's name and
    /// the line of the entry)`.
    pub fn with_files_checked(
        files: &[std::path::PathBuf],
    ) -> Result<Catalog, Vec<(usize, String)>> {
        let shipped = toml::from_str::<CatalogFile>(DEFAULT_CATALOG)
            .map_err(|e| vec![(usize::MAX, format!("shipped catalog: {e}"))])?;
        let mut crawlers = shipped.crawler;
        let mut sources = shipped.ip_range_source;
        let mut errors = Vec::new();
        for (fi, f) in files.iter().enumerate() {
            let name = f.display();
            let src = match std::fs::read_to_string(f) {
                Ok(s) => s,
                Err(e) => {
                    errors.push((fi, format!("{name}: {e}")));
                    continue;
                }
            };
            let (extra, extra_sources) = match parse_entries(&src) {
                Ok(list) => list,
                Err(problems) => {
                    errors.extend(problems.into_iter().map(|p| (fi, format!("{name}: {p}"))));
                    continue;
                }
            };
            for c in extra {
                match crawlers
                    .iter_mut()
                    .find(|x| x.name.eq_ignore_ascii_case(&c.name))
                {
                    Some(x) => *x = c,
                    None => crawlers.push(c),
                }
            }
            for src in extra_sources {
                match sources.iter_mut().find(|x| x.file == src.file) {
                    Some(x) => *x = src,
                    None => sources.push(src),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut c = Catalog::new(crawlers).map_err(|e| vec![(usize::MAX, e)])?;
        c.sources = sources;
        Ok(c)
    }

    /// Compiles a list of crawlers.
    pub fn new(crawlers: Vec<Crawler>) -> Result<Catalog, String> {
        let mut patterns = Vec::new();
        for (i, c) in crawlers.iter().enumerate() {
            if c.name.trim().is_empty() {
                return Err(format!("crawler #{i} has an empty name"));
            }
            for t in &c.ua {
                if t.len() < 2 {
                    return Err(format!(
                        "crawler {:?}: user-agent token {t:?} is too short",
                        c.name
                    ));
                }
                patterns.push((i, c.strict, t.clone()));
            }
        }
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            // A full DFA: the catalog is small, and user agents are
            // scanned on every request.
            .kind(Some(AhoCorasickKind::DFA))
            .build(patterns.iter().map(|p| p.2.as_str()))
            .map_err(|e| e.to_string())?;
        Ok(Catalog {
            crawlers,
            sources: Vec::new(),
            automaton,
            patterns,
        })
    }

    /// Where the IP-range files are published.
    pub fn ip_range_sources(&self) -> &[IpRangeSource] {
        &self.sources
    }

    /// Every crawler.
    pub fn crawlers(&self) -> &[Crawler] {
        &self.crawlers
    }

    /// The most specific crawler named by a user agent, if any.
    ///
    /// Non-strict matches win over strict ones; among equals the longest
    /// token wins (`GoogleOther-Image` over `GoogleOther`). Allocation-free.
    pub fn match_ua<'a>(&'a self, ua: &str) -> Option<UaMatch<'a>> {
        let bytes = ua.as_bytes();
        let mut best: Option<(usize, (bool, bool, usize))> = None; // (crawler, rank)
        for m in self.automaton.find_overlapping_iter(ua) {
            let Some((ci, strict, token)) = self.patterns.get(m.pattern().as_usize()) else {
                continue;
            };
            let (s, e) = (m.start(), m.end());
            let before = s.checked_sub(1).and_then(|i| bytes.get(i)).copied();
            let after = bytes.get(e).copied();
            let ok = if *strict {
                // Case-sensitive, at the start or after a space, '(' or ';',
                // and either a product token (`Name/`) or the name after
                // `compatible;`.
                ua.get(s..e) == Some(token.as_str())
                    && matches!(before, None | Some(b' ' | b'(' | b';'))
                    && (after == Some(b'/')
                        || (matches!(after, None | Some(b';' | b')' | b' '))
                            && after_compatible(ua, s)))
            } else {
                !before.is_some_and(|b| b.is_ascii_alphanumeric())
                    && !after.is_some_and(|b| b.is_ascii_alphanumeric())
            };
            if !ok {
                continue;
            }
            let len = e - s;
            // A named bot beats the library it is built on
            // (`LinkedInBot … Apache-HttpClient`), a real token beats a
            // generic word, then the longer token wins.
            let generic_tool = self.crawlers.get(*ci).is_some_and(|c| {
                matches!(
                    c.category,
                    Category::HttpLibrary | Category::HeadlessBrowser
                )
            });
            // A generic word is a full match when the user agent presents
            // it as the client: after `compatible;`, beside a contact URL
            // (`…; Devin/1.0; +https://devin.ai`), or as a versioned
            // product token (`Devin/1.0`) outside a browser's string. Inside
            // a real browser string (VS Code's `… Code/1.85.1 Chrome/114 …
            // Electron/25`) it stays weak.
            let full = !*strict
                || after_compatible(ua, s)
                || ua.contains("http://")
                || ua.contains("https://")
                || (bytes.get(e + 1).is_some_and(u8::is_ascii_digit)
                    && !["Chrome/", "Safari/", "Firefox/", "Gecko/"]
                        .iter()
                        .any(|m| ua.contains(m)));
            let rank = (full, !generic_tool, len);
            if best.is_none_or(|(_, r)| rank > r) {
                best = Some((*ci, rank));
            }
        }
        best.map(|(ci, (full, _, _))| (ci, !full))
            .and_then(|(ci, weak)| {
                self.crawlers.get(ci).map(|c| UaMatch {
                    crawler: c,
                    index: ci,
                    weak,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> Catalog {
        Catalog::default_catalog().unwrap()
    }

    #[test]
    fn covers_every_ai_robots_txt_agent() {
        let c = cat();
        let json: serde_json::Value =
            serde_json::from_str(include_str!("../data/ai-robots-txt.json")).unwrap();
        for name in json.as_object().unwrap().keys() {
            assert!(
                c.crawlers()
                    .iter()
                    .any(|cr| cr.robots.iter().any(|r| r == name)),
                "{name} missing from the catalog's robots tokens"
            );
        }
    }

    #[test]
    fn every_entry_is_detected_from_a_user_agent_of_its_own() {
        let c = cat();
        for cr in c.crawlers() {
            for tok in &cr.ua {
                let ua = format!("Mozilla/5.0 (compatible; {tok}/1.0; +https://bot.example/info)");
                let m = c
                    .match_ua(&ua)
                    .unwrap_or_else(|| panic!("{tok} not detected"));
                assert_eq!(
                    m.crawler.category, cr.category,
                    "{tok} matched {}",
                    m.crawler.name
                );
                // Even a generic word is a full match as a versioned
                // product token beside a contact URL.
                assert!(!m.weak, "{tok}");
            }
        }
    }

    #[test]
    fn word_boundaries_and_specificity() {
        let c = cat();
        let m = c
            .match_ua("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)")
            .unwrap();
        assert_eq!(m.crawler.name, "GPTBot");
        assert!(!m.weak);
        assert_eq!(
            c.match_ua("GoogleOther-Image/1.0").unwrap().crawler.name,
            "GoogleOther-Image"
        );
        // LCC must not match old IE's SLCC2 token.
        assert!(c
            .match_ua("Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0; SLCC2; .NET CLR 2.0.50727)")
            .is_none());
    }

    #[test]
    fn generic_words_match_only_as_weak_product_tokens() {
        let c = cat();
        let vscode = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Code/1.85.1 Chrome/114.0.5735.289 Electron/25.9.7 Safari/537.36";
        let m = c.match_ua(vscode).unwrap();
        assert_eq!(m.crawler.name, "Code");
        assert!(m.weak);
        // Baiduspider's URL contains "spider.html": Baidu, not "Spider".
        let baidu =
            "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)";
        assert_eq!(c.match_ua(baidu).unwrap().crawler.name, "Baiduspider");
        assert!(c.match_ua("my code spider operator").is_none());
        // The same words presented as the client are full matches.
        for (ua, name) in [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36; Devin/1.0; +https://devin.ai",
                "Devin",
            ),
            ("Devin/1.0", "Devin"),
            (
                "Mozilla/5.0 (compatible; Operator; +https://openai.com/operator)",
                "Operator",
            ),
            ("Spider/2.3", "Spider"),
        ] {
            let m = c.match_ua(ua).unwrap_or_else(|| panic!("{ua}"));
            assert_eq!(m.crawler.name, name, "{ua}");
            assert!(!m.weak, "{ua}");
        }
    }
}
