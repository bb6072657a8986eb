//! Policies compiled from configuration: ordered rules with precompiled
//! matchers (regexes, globs, network sets).

use std::net::IpAddr;

use fixative_config::{MatchConfig, Mode, PolicyConfig, RuleAction};
use regex::Regex;

use crate::engine::HeaderLookup;
use crate::netset::NetSet;
use crate::state::{ManualClock, QuotaLimiter};
use crate::verdict::Category;

/// What a compiled match looks at.
pub struct MatchInput<'a> {
    pub category: Option<Category>,
    pub crawler: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub path: &'a str,
    pub method: &'a str,
    pub header: &'a dyn HeaderLookup,
    pub headers_known: bool,
    pub client_ip: IpAddr,
    pub asn: Option<u32>,
    pub country: Option<[u8; 2]>,
    pub score: i32,
    pub verified: bool,
    pub spoofed: bool,
    pub image: bool,
    /// The pass the request carries.
    pub pass: crate::pass::PassState,
    /// An image request without a valid pass that the client's grace
    /// budget still covers.
    pub in_grace: bool,
    /// The agent a verified Web Bot Auth signature names.
    pub signed_agent: Option<&'a str>,
}

struct CompiledMatch {
    category: Vec<Category>,
    crawler: Vec<String>,
    ua_regex: Option<Regex>,
    path: Vec<Regex>,
    method: Vec<String>,
    header_present: Vec<String>,
    header_regex: Vec<(String, Regex)>,
    cidr: Option<NetSet>,
    asn: Vec<u32>,
    country: Vec<[u8; 2]>,
    score_at_least: Option<i32>,
    verified: Option<bool>,
    spoofed: Option<bool>,
    image: Option<bool>,
    pass: Option<bool>,
    automation: Option<bool>,
    signed_agent: Vec<String>,
}

/// Translates a path glob into an anchored regex: `**` spans segments,
/// `*` stays within one; everything else is literal.
pub fn glob_to_regex(glob: &str) -> Result<Regex, regex::Error> {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '*' {
            if chars.peek() == Some(&'*') {
                chars.next();
                re.push_str(".*");
            } else {
                re.push_str("[^/]*");
            }
        } else {
            re.push_str(&regex::escape(&c.to_string()));
        }
    }
    // Query strings never defeat a path match.
    re.push_str("(\\?.*)?$");
    Regex::new(&re)
}

impl CompiledMatch {
    fn compile(m: &MatchConfig) -> Result<CompiledMatch, String> {
        let re = |s: &str| Regex::new(s).map_err(|e| e.to_string());
        Ok(CompiledMatch {
            category: m.category.clone(),
            crawler: m.crawler.clone(),
            ua_regex: m.ua_regex.as_deref().map(re).transpose()?,
            path: m
                .path
                .iter()
                .map(|g| glob_to_regex(g).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
            method: m.method.clone(),
            header_present: m.header_present.clone(),
            header_regex: m
                .header_regex
                .iter()
                .map(|(k, v)| re(v).map(|r| (k.clone(), r)))
                .collect::<Result<_, _>>()?,
            cidr: (!m.cidr.is_empty()).then(|| NetSet::new(&m.cidr)),
            asn: m.asn.clone(),
            country: m
                .country
                .iter()
                .filter_map(|c| {
                    let b = c.as_bytes();
                    Some([*b.first()?, *b.get(1)?])
                })
                .collect(),
            score_at_least: m.score_at_least,
            verified: m.verified,
            spoofed: m.spoofed,
            image: m.image,
            pass: m.pass,
            automation: m.automation,
            signed_agent: m.signed_agent.clone(),
        })
    }

    /// Whether every present condition holds. Cheap checks first.
    fn matches(&self, i: &MatchInput<'_>) -> bool {
        if let Some(s) = self.score_at_least
            && i.score < s
        {
            return false;
        }
        if let Some(v) = self.verified
            && v != i.verified
        {
            return false;
        }
        if let Some(v) = self.spoofed
            && v != i.spoofed
        {
            return false;
        }
        if let Some(v) = self.image
            && v != i.image
        {
            return false;
        }
        if let Some(want) = self.pass {
            let valid = i.pass == crate::pass::PassState::Valid;
            // Within the grace budget, an image request is neither.
            if valid != want || (!want && i.in_grace) {
                return false;
            }
        }
        if let Some(want) = self.automation
            && want != (i.pass == crate::pass::PassState::Automation)
        {
            return false;
        }
        if !self.category.is_empty() && !i.category.is_some_and(|c| self.category.contains(&c)) {
            return false;
        }
        if !self.crawler.is_empty()
            && !i
                .crawler
                .is_some_and(|c| self.crawler.iter().any(|n| n.eq_ignore_ascii_case(c)))
        {
            return false;
        }
        if !self.signed_agent.is_empty()
            && !i.signed_agent.is_some_and(|a| {
                self.signed_agent
                    .iter()
                    .any(|n| n == "*" || n.eq_ignore_ascii_case(a))
            })
        {
            return false;
        }
        if !self.method.is_empty() && !self.method.iter().any(|m| m == i.method) {
            return false;
        }
        if !self.asn.is_empty() && !i.asn.is_some_and(|a| self.asn.contains(&a)) {
            return false;
        }
        if !self.country.is_empty() && !i.country.is_some_and(|c| self.country.contains(&c)) {
            return false;
        }
        if let Some(set) = &self.cidr
            && !set.contains(i.client_ip)
        {
            return false;
        }
        if !self.path.is_empty() && !self.path.iter().any(|r| r.is_match(i.path)) {
            return false;
        }
        if let Some(r) = &self.ua_regex
            && !i.user_agent.is_some_and(|ua| r.is_match(ua))
        {
            return false;
        }
        // Header conditions cannot hold when headers are unknown (logs).
        if (!self.header_present.is_empty() || !self.header_regex.is_empty()) && !i.headers_known {
            return false;
        }
        if !self
            .header_present
            .iter()
            .all(|h| i.header.get(h).is_some())
        {
            return false;
        }
        self.header_regex
            .iter()
            .all(|(h, r)| i.header.get(h).is_some_and(|v| r.is_match(v)))
    }
}

/// A compiled rule.
pub struct CompiledRule {
    /// Name (metrics label).
    pub name: String,
    matcher: CompiledMatch,
    /// Action.
    pub action: RuleAction,
    /// Effective mode (policy observe wins).
    pub mode: Mode,
    /// The limiter, for `limit` rules.
    pub limiter: Option<QuotaLimiter>,
}

impl CompiledRule {
    /// Whether the rule applies.
    pub fn matches(&self, i: &MatchInput<'_>) -> bool {
        self.matcher.matches(i)
    }
}

/// A compiled policy.
pub struct CompiledPolicy {
    /// Name.
    pub name: String,
    /// Rules in order.
    pub rules: Vec<CompiledRule>,
    /// Some rule matches on `pass` (so image requests without a pass
    /// spend the grace budget).
    pub uses_pass: bool,
    /// Some enforced rule reads passes: `pass`, `automation`, `challenge`.
    pub reads_passes: bool,
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("name", &self.name)
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl CompiledPolicy {
    /// Compiles a validated policy; limiters get at most `max_keys` keys.
    pub fn compile(
        p: &PolicyConfig,
        max_keys: usize,
        clock: &ManualClock,
    ) -> Result<CompiledPolicy, String> {
        let mut rules = Vec::with_capacity(p.rules.len());
        for r in &p.rules {
            let matcher = CompiledMatch::compile(&r.matches)
                .map_err(|e| format!("policy {:?} rule {:?}: {e}", p.name, r.name))?;
            let limiter = match r.action {
                RuleAction::Limit(q) => Some(QuotaLimiter::new(q, max_keys, clock.clone())),
                _ => None,
            };
            rules.push(CompiledRule {
                name: r.name.clone(),
                matcher,
                action: r.action,
                mode: if p.mode == Mode::Observe {
                    Mode::Observe
                } else {
                    r.mode
                },
                limiter,
            });
        }
        Ok(CompiledPolicy {
            name: p.name.clone(),
            uses_pass: p.rules.iter().any(|r| r.matches.pass.is_some()),
            reads_passes: p.rules.iter().any(|r| {
                r.matches.pass.is_some()
                    || r.matches.automation.is_some()
                    || matches!(r.action, RuleAction::Challenge(_))
            }),
            rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let r = glob_to_regex("/art/*.png").unwrap();
        assert!(r.is_match("/art/a.png"));
        assert!(r.is_match("/art/a.png?w=300"));
        assert!(!r.is_match("/art/x/a.png"));
        let r = glob_to_regex("/gallery/**").unwrap();
        assert!(r.is_match("/gallery/a/b/c.jpg"));
        assert!(!r.is_match("/galleryx"));
    }
}
