//! Usage preferences: what a site (or a part of it) allows, and every
//! no-train format derived from it.
//!
//! A site has a default [`Usage`] (`[site.directives]` `train_ai`, `search`,
//! `ai_input`) and any number of `[[site.preference]]` entries, each with
//! path patterns and its own usage. Paths are written the way robots.txt
//! writes them (RFC 9309: a prefix, `*` for any sequence, `$` for the end),
//! because robots.txt, TDMRep and RSL all match paths that way: one pattern
//! then means the same thing in every format. The most specific pattern
//! (the longest, as in RFC 9309) decides; between patterns of equal length
//! the entry listed first wins.
//!
//! Everything Fixative writes for a path comes from the one [`Usage`] that
//! applies to it: `X-Robots-Tag`, `Content-Usage`, `Content-Signal`,
//! `tdm-reservation`, the XMP `plus:DataMining` term, HTML meta, and the
//! per-path lines of robots.txt, tdmrep.json, ai.txt and the RSL licence.

/// Allowed (`true`) or not, per use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Usage {
    /// Training AI models (aipref `train-ai`, Content Signals `ai-train`,
    /// RSL `ai-train`).
    pub train_ai: bool,
    /// Search indexing and links with short excerpts (aipref `search`,
    /// Content Signals `search`, RSL `search`).
    pub search: bool,
    /// Use as input to generate answers (retrieval / grounding: Content
    /// Signals `ai-input`, RSL `ai-input`; aipref has no label for it yet).
    pub ai_input: bool,
}

impl Default for Usage {
    /// Search yes, AI training and AI input no.
    fn default() -> Usage {
        Usage {
            train_ai: false,
            search: true,
            ai_input: false,
        }
    }
}

/// Which use a crawler category's robots.txt group follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UseKey {
    /// `train_ai`
    TrainAi,
    /// `search`
    Search,
    /// `ai_input`
    AiInput,
}

impl UseKey {
    /// The use a crawler of `category` is making: assistants and AI search
    /// fetch to answer (AI input), search engines index, anything else
    /// reserved against (AI training crawlers, archivers, scrapers…) counts
    /// as training.
    pub fn of_category(category: &str) -> UseKey {
        match category {
            "ai-search" | "ai-assistant" => UseKey::AiInput,
            "search-engine" => UseKey::Search,
            _ => UseKey::TrainAi,
        }
    }
}

impl Usage {
    /// Whether `key` is allowed.
    pub fn allows(&self, key: UseKey) -> bool {
        match key {
            UseKey::TrainAi => self.train_ai,
            UseKey::Search => self.search,
            UseKey::AiInput => self.ai_input,
        }
    }

    /// `X-Robots-Tag` / robots meta tokens: `noai, noimageai` when training
    /// is not allowed, `noindex` when search is not.
    pub fn robots_tokens(&self) -> Vec<String> {
        let mut t = Vec::new();
        if !self.train_ai {
            t.push("noai".to_string());
            t.push("noimageai".to_string());
        }
        if !self.search {
            t.push("noindex".to_string());
        }
        t
    }

    /// IETF AI-preferences `Content-Usage` (tokens `y`/`n`).
    pub fn content_usage(&self) -> String {
        let yn = |b: bool| if b { "y" } else { "n" };
        format!("train-ai={}, search={}", yn(self.train_ai), yn(self.search))
    }

    /// Cloudflare Content Signals (values `yes`/`no`).
    pub fn content_signal(&self) -> String {
        let yn = |b: bool| if b { "yes" } else { "no" };
        format!(
            "search={}, ai-input={}, ai-train={}",
            yn(self.search),
            yn(self.ai_input),
            yn(self.train_ai)
        )
    }

    /// The PLUS `DataMining` term.
    pub fn data_mining(&self) -> &'static str {
        match (self.train_ai, self.search) {
            (true, _) => "DMI-ALLOWED",
            (false, true) => "DMI-PROHIBITED-AIMLTRAINING",
            (false, false) => "DMI-PROHIBITED",
        }
    }

    /// RSL usage tokens permitted and prohibited, in a fixed order.
    pub fn rsl(&self) -> (Vec<&'static str>, Vec<&'static str>) {
        let mut permits = Vec::new();
        let mut prohibits = Vec::new();
        for (ok, token) in [
            (self.train_ai, "ai-train"),
            (self.ai_input, "ai-input"),
            (self.search, "search"),
        ] {
            if ok {
                permits.push(token);
            } else {
                prohibits.push(token);
            }
        }
        (permits, prohibits)
    }
}

/// One `[[site.preference]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Preference {
    /// Its name (what an origin's preference header names).
    pub name: String,
    /// robots.txt-style path patterns.
    pub paths: Vec<String>,
    /// The usage (unset keys taken from the site's default).
    pub usage: Usage,
}

/// Whether a robots.txt-style `pattern` matches `path` (RFC 9309 §2.2.3:
/// `*` any sequence, a final `$` the end; otherwise a prefix). The query
/// string takes part, as it does in robots.txt.
pub fn pattern_matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    // No allocation: this runs per request and pattern.
    let mut parts = parts.peekable();
    if parts.peek().is_none() {
        return !anchored || rest.is_empty();
    }
    while let Some(part) = parts.next() {
        if anchored && parts.peek().is_none() {
            return rest.ends_with(part);
        }
        if part.is_empty() {
            continue;
        }
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or(""),
            None => return false,
        }
    }
    // A trailing `*` (or none after the last literal) matches the rest.
    true
}

/// Problems with a path pattern, for validation.
pub fn pattern_problem(pattern: &str) -> Option<&'static str> {
    if !pattern.starts_with('/') && !pattern.starts_with('*') {
        return Some("must start with / (or *)");
    }
    if pattern
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'"' || b == b'<' || b == b'>')
    {
        return Some("must not contain spaces, quotes, angle brackets or control characters");
    }
    if matches!(pattern, "/" | "*" | "/*") {
        return Some(
            "covers the whole site: set train_ai, search and ai_input in [site.directives] instead",
        );
    }
    if pattern.trim_end_matches('$').contains('$') {
        return Some("$ may only end a pattern");
    }
    None
}

/// The index of the preference that applies to `path` (`None`: the site's
/// default): the longest matching pattern, the first entry on a tie.
pub fn resolve(preferences: &[Preference], path: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, p) in preferences.iter().enumerate() {
        for pat in &p.paths {
            if pattern_matches(pat, path) && best.is_none_or(|(len, _)| pat.len() > len) {
                best = Some((pat.len(), i));
            }
        }
    }
    best.map(|(_, i)| i)
}

/// Every (pattern, preference index) pair, most specific first (the order
/// robots.txt readers apply anyway, and the one first-match formats such as
/// tdmrep.json and RSL need).
pub fn by_precedence(preferences: &[Preference]) -> Vec<(&str, usize)> {
    let mut v: Vec<(&str, usize)> = preferences
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.paths.iter().map(move |pat| (pat.as_str(), i)))
        .collect();
    // Stable: equal lengths keep the configured order.
    v.sort_by_key(|(pat, _)| std::cmp::Reverse(pat.len()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robots_style_patterns() {
        assert!(pattern_matches("/", "/anything"));
        assert!(pattern_matches("/gallery/", "/gallery/a.jpg"));
        assert!(!pattern_matches("/gallery/", "/galleryx"));
        assert!(pattern_matches("/*.jpg$", "/a/b.jpg"));
        assert!(!pattern_matches("/*.jpg$", "/a/b.jpg?x=1"));
        assert!(pattern_matches("/*.jpg", "/a/b.jpg?x=1"));
        assert!(pattern_matches("/a*b*c", "/a-x-b-y-c-z"));
        assert!(!pattern_matches("/a*b*c", "/a-x-c-y-b"));
        assert!(pattern_matches("/fish$", "/fish"));
        assert!(!pattern_matches("/fish$", "/fishes"));
        assert!(pattern_matches("*", "/x"));
        assert!(pattern_matches("/x/*$", "/x/"));
    }

    #[test]
    fn longest_wins_then_first_listed() {
        let p = |name: &str, paths: &[&str]| Preference {
            name: name.into(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            usage: Usage::default(),
        };
        let prefs = vec![
            p("series", &["/gallery/series/"]),
            p("gallery", &["/gallery/"]),
            p("a", &["/x/*"]),
            p("b", &["/x/a"]),
        ];
        assert_eq!(resolve(&prefs, "/gallery/series/1.jpg"), Some(0));
        assert_eq!(resolve(&prefs, "/gallery/2.jpg"), Some(1));
        assert_eq!(resolve(&prefs, "/about"), None);
        // Equal length: the first listed.
        assert_eq!(resolve(&prefs, "/x/a"), Some(2));
        let order: Vec<usize> = by_precedence(&prefs).iter().map(|(_, i)| *i).collect();
        assert_eq!(order, vec![0, 1, 2, 3]);
    }

    proptest::proptest! {
        /// Hostile patterns and paths never panic the matcher.
        #[test]
        fn matcher_never_panics(pat in "[/*$a-c.]{0,12}", path in "[/a-c.?$*]{0,16}") {
            let _ = pattern_matches(&pat, &path);
            let _ = pattern_problem(&pat);
        }
    }
}
