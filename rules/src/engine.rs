//! The engine: request facts in, verdict out.
//!
//! Signals add weights into a score (like a WAF); the site's policy, an
//! ordered list of rules, then picks the action. Evaluation is synchronous;
//! on the common path (a browser matching no signal) it allocates nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use fixative_config::spans::KeyPath;
use fixative_config::weights::Signal;
use fixative_config::{Config, Mode, RuleAction};

/// Why an engine could not be built: every problem, with the
/// configuration key it comes from (turn it into lines with
/// [`Config::error_at`]).
#[derive(Debug, Clone)]
pub struct BuildError {
    /// Key path and message of each problem.
    pub problems: Vec<(KeyPath, String)>,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, m)) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{k}: {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

use crate::catalog::Catalog;
use crate::netset::{IpRanges, NetSet};
use crate::network::Network;
use crate::policy::{CompiledPolicy, MatchInput};
use crate::state::{Behaviour, ManualClock, RequestKind};
use crate::verdict::{Action, Category, LimitInfo, Reason, Verdict};

/// What the proxy knows about a request when it asks for a verdict.
#[derive(Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Time since the engine's epoch (monotonic in the proxy, the log's
    /// timestamps in replay). Drives rate limits and behaviour windows.
    pub now: Duration,
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
    /// Whether request headers are known. Logs in the combined format
    /// carry none beyond the user agent, so header signals must not fire.
    pub headers_known: bool,
    /// Header lookup by lower-case name.
    pub header: &'a dyn HeaderLookup,
    /// Request was HTTP/1.0.
    pub http10: bool,
    /// What forward-confirmed reverse DNS says about the client, when the
    /// proxy has looked (lookups are asynchronous and cached: a first
    /// request is `Unknown`).
    pub rdns: Rdns<'a>,
    /// Wall-clock time, Unix seconds: passes expire by it.
    pub unix_time: u64,
    /// What the caller already worked out about this request (the proxy
    /// does, to decide compression and reverse DNS before asking for a
    /// verdict); the engine works out what is `None` itself.
    pub known: Known,
}

/// Facts about a request its caller has already derived, passed on so that
/// the engine does not derive them again. Each must be what the engine
/// would derive from the same [`RequestFacts`]: [`request_kind`] of the
/// path and `Accept`, and [`Engine::classify_ua`] of `user_agent`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Known {
    /// The kind of resource asked for.
    pub kind: Option<RequestKind>,
    /// The classification of the `User-Agent`.
    pub user_agent: Option<crate::uacache::UaClass>,
}

/// Forward-confirmed reverse DNS of the client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rdns<'a> {
    /// Not looked up (yet).
    Unknown,
    /// Looked up: no PTR name under a crawler suffix resolves back to the address.
    Failed,
    /// This PTR name resolves back to the address.
    Confirmed(&'a str),
}

/// Whether a host name is `suffix` or under it.
pub fn name_under(name: &str, suffix: &str) -> bool {
    let name = name.trim_end_matches('.');
    name.eq_ignore_ascii_case(suffix)
        || (name.len() > suffix.len()
            && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            && name.as_bytes().get(name.len() - suffix.len() - 1) == Some(&b'.'))
}

/// Request headers, looked up by lower-case name.
pub trait HeaderLookup {
    /// The first value of a header, if present and valid text.
    fn get(&self, name: &str) -> Option<&str>;

    /// The raw HTTP/1 header section as the client sent it (order and
    /// casing), when known and when it comes from the client itself (not
    /// re-written by a proxy in front). Feeds the header fingerprint.
    fn raw(&self) -> Option<&[u8]> {
        None
    }

    /// The client's TLS ClientHello facts, when Fixative terminated TLS
    /// (or a trusted load balancer passed the JA4).
    fn client_hello(&self) -> Option<&crate::tls::ClientHello> {
        None
    }

    /// The value of a cookie (across every `Cookie` header, as HTTP/2
    /// clients split them).
    fn cookie(&self, name: &str) -> Option<&str> {
        crate::pass::cookie_value(self.get("cookie"), name)
    }

    /// Every value of a header, in order (HTTP message signatures cover
    /// all of them).
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.get(name).into_iter().collect()
    }

    /// The scheme the client used (`http` / `https`), when known: the
    /// `@scheme` and `@target-uri` components of a signature need it.
    fn scheme(&self) -> Option<&str> {
        None
    }

    /// `Host` / `:authority` as the client sent it (port included).
    fn authority(&self) -> Option<&str> {
        self.get("host")
    }
}

/// No headers (logs without them).
pub struct NoHeaders;

impl HeaderLookup for NoHeaders {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

impl HeaderLookup for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::BTreeMap::get(self, name).map(String::as_str)
    }
}

impl<const N: usize> HeaderLookup for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

impl<'a> RequestFacts<'a> {
    /// Facts with only the basics; headers unknown.
    pub fn basic(
        now: Duration,
        client_ip: IpAddr,
        method: &'a str,
        path: &'a str,
        ua: Option<&'a str>,
    ) -> Self {
        RequestFacts {
            now,
            client_ip,
            method,
            host: "",
            path,
            user_agent: ua,
            headers_known: false,
            header: &NoHeaders,
            http10: false,
            rdns: Rdns::Unknown,
            // Moves with `now` (penalties are kept on both clocks).
            unix_time: now.as_secs(),
            known: Known::default(),
        }
    }
}

pub(crate) fn claims_browser(ua: &str) -> bool {
    ua.starts_with("Mozilla/5.0")
        && (ua.contains("Chrome/") || ua.contains("Firefox/") || ua.contains("Safari/"))
}

pub(crate) fn version_after(ua: &str, tok: &str) -> Option<u32> {
    let i = ua.find(tok)? + tok.len();
    ua.get(i..)?
        .split(['.', ' ', ';', ')'])
        .next()?
        .parse()
        .ok()
}

/// Every current Chromium (76+), Firefox (90+) and Safari (16.4+) sends
/// `Sec-Fetch-*`.
pub(crate) fn sends_sec_fetch(ua: &str) -> bool {
    if let Some(v) = version_after(ua, "Chrome/") {
        return v >= 76;
    }
    if let Some(v) = version_after(ua, "Firefox/") {
        return v >= 90;
    }
    if ua.contains("Safari/") {
        return version_after(ua, "Version/").is_some_and(|v| v >= 17);
    }
    false
}

/// The kind of resource a request asks for.
pub fn request_kind(path: &str, accept: Option<&str>) -> RequestKind {
    let p = path.split(['?', '#']).next().unwrap_or(path);
    let ext = p
        .rsplit('/')
        .next()
        .and_then(|last| last.rsplit_once('.'))
        .map(|(_, e)| e);
    const IMAGES: &[&str] = &[
        "jpg", "jpeg", "png", "webp", "gif", "avif", "svg", "bmp", "tif", "tiff", "heic",
    ];
    // Case-insensitive without allocating.
    let is = |set: &[&str]| ext.is_some_and(|e| set.iter().any(|x| e.eq_ignore_ascii_case(x)));
    if is(IMAGES) {
        RequestKind::Image
    } else if ext.is_none() || is(&["html", "htm"]) {
        if accept.is_some_and(|a| a.starts_with("image/")) {
            RequestKind::Image
        } else {
            RequestKind::Page
        }
    } else {
        RequestKind::Other
    }
}

/// The detection engine, built once per configuration generation. Holds
/// the compiled catalog and policies and the bounded per-client state.
pub struct Engine {
    catalog: Catalog,
    ranges: IpRanges,
    policies: HashMap<String, CompiledPolicy>,
    behaviour: Behaviour,
    clock: ManualClock,
    trap_path: String,
    allow: NetSet,
    deny: NetSet,
    rule_allow: Arc<str>,
    rule_deny: Arc<str>,
    rule_names: HashMap<String, Arc<str>>,
    crawler_names: Vec<Arc<str>>,
    network: Network,
    datacenter: HashMap<u32, i32>,
    weights: fixative_config::weights::Weights,
    min_versions: crate::browsers::MinVersions,
    browser_model: String,
    ua_cache: crate::uacache::UaCache,
    keys: crate::pass::Keys,
    grace: Option<crate::state::QuotaLimiter>,
    fleet: Arc<crate::fleet::Fleet>,
    rule_ban: Arc<str>,
    penalty_secs: u64,
    window_secs: u64,
    bot_auth: Arc<crate::botauth::Directory>,
    /// Catalog index by Web Bot Auth agent host.
    signature_agents: HashMap<String, usize>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("crawlers", &self.catalog.crawlers().len())
            .field("policies", &self.policies.len())
            .finish()
    }
}

/// Live state sizes, for gauges.
#[derive(Debug, Clone, Default)]
pub struct StateSizes {
    /// Clients tracked for behaviour.
    pub tracked_clients: usize,
    /// Live limiter keys per (policy, rule).
    pub limiter_keys: Vec<(String, String, usize)>,
    /// Requests decided while a limiter table was full, summed over all
    /// limiters of this engine (since it was built).
    pub limiter_overflow: crate::state::OverflowCounts,
}

impl Engine {
    /// Builds the engine for a configuration: catalog (shipped plus
    /// `detection.catalog_files`), IP ranges, network databases, compiled
    /// policies, state. Every problem is reported with its configuration
    /// key, not only the first.
    pub fn new(config: &Config) -> Result<Engine, BuildError> {
        Engine::with_fleet(config, Arc::new(crate::fleet::Fleet::new(config)))
    }

    /// Builds the engine around a fleet mirror that outlives it (the
    /// proxy keeps one across reloads, shared with its state backend).
    pub fn with_fleet(
        config: &Config,
        fleet: Arc<crate::fleet::Fleet>,
    ) -> Result<Engine, BuildError> {
        let d = &config.detection;
        let dp = KeyPath::root().key("detection");
        let mut problems: Vec<(KeyPath, String)> = Vec::new();
        let catalog = match Catalog::with_files_checked(&d.catalog_files) {
            Ok(c) => Some(c),
            Err(errs) => {
                for (i, m) in errs {
                    let key = if i == usize::MAX {
                        dp.key("catalog_files")
                    } else {
                        dp.key("catalog_files").index(i)
                    };
                    problems.push((key, m));
                }
                None
            }
        };
        let ranges = match IpRanges::load(d.ip_ranges_dir.as_deref()) {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push((dp.key("ip_ranges_dir"), e));
                None
            }
        };
        if let (Some(catalog), Some(ranges)) = (&catalog, &ranges) {
            for c in catalog.crawlers() {
                for f in &c.ip_ranges {
                    // A published list not fetched yet is fine (the crawler
                    // is verified by its other means until it is); a name
                    // nobody publishes is a mistake.
                    let fetchable = catalog.ip_range_sources().iter().any(|s| s.file == *f);
                    if ranges.get(f).is_none() && !fetchable {
                        problems.push((
                            dp.key("ip_ranges_dir"),
                            format!("crawler {:?}: IP-range file {f:?} is not loaded", c.name),
                        ));
                    }
                }
            }
        }
        let model = match &d.browser_versions {
            Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())),
            None => Ok(crate::browsers::DEFAULT_MODEL.to_string()),
        };
        let min_versions = model
            .and_then(|m| {
                crate::browsers::MinVersions::from_model(&m, crate::browsers::MinVersions::today())
                    .map(|v| (v, m))
            })
            .map_err(|e| problems.push((dp.key("browser_versions"), e)))
            .ok();
        let asn = Network::load(d.asn_db.as_deref(), None)
            .map_err(|e| problems.push((dp.key("asn_db"), e)))
            .ok();
        let country = Network::load(None, d.country_db.as_deref())
            .map_err(|e| problems.push((dp.key("country_db"), e)))
            .ok();
        let clock = ManualClock::default();
        let mut policies = HashMap::new();
        let mut rule_names = HashMap::new();
        for (name, p) in &config.policies {
            let compiled = match CompiledPolicy::compile(p, d.max_limiter_keys, &clock) {
                Ok(c) => c,
                Err(e) => {
                    problems.push((KeyPath::root().key("policy").key(name), e));
                    continue;
                }
            };
            for r in &compiled.rules {
                rule_names
                    .entry(r.name.clone())
                    .or_insert_with(|| Arc::from(r.name.as_str()));
            }
            policies.insert(name.clone(), compiled);
        }
        let (
            Some(catalog),
            Some(ranges),
            Some(asn),
            Some(country),
            Some((min_versions, browser_model)),
        ) = (catalog, ranges, asn, country, min_versions)
        else {
            return Err(BuildError { problems });
        };
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        let crawler_names = catalog
            .crawlers()
            .iter()
            .map(|c| Arc::from(c.name.as_str()))
            .collect();
        let signature_agents = catalog
            .crawlers()
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                c.signature_agents
                    .iter()
                    .map(move |h| (h.to_ascii_lowercase(), i))
            })
            .collect();
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (bot_auth, _) = crate::botauth::Directory::new_with_files(&d.web_bot_auth, unix_now);
        Ok(Engine {
            bot_auth: Arc::new(bot_auth),
            signature_agents,
            catalog,
            ranges,
            policies,
            behaviour: Behaviour::new(d.max_tracked_clients, d.window, d.penalty),
            clock: clock.clone(),
            trap_path: d.trap_path.clone(),
            allow: NetSet::new(&d.allow_cidrs),
            deny: NetSet::new(&d.deny_cidrs),
            rule_allow: Arc::from("allow-cidrs"),
            rule_deny: Arc::from("deny-cidrs"),
            rule_names,
            crawler_names,
            network: Network::combine(asn, country),
            datacenter: d.datacenter_asns.iter().map(|(k, v)| (*k, *v)).collect(),
            weights: d.weights.clone(),
            min_versions,
            browser_model,
            ua_cache: crate::uacache::UaCache::new(16_384),
            keys: crate::pass::Keys::from_config(config),
            grace: (config.challenge.grace_images > 0).then(|| {
                crate::state::QuotaLimiter::new(
                    fixative_config::Quota {
                        rate: config.challenge.grace_images,
                        period: config.challenge.grace_period,
                        burst: config.challenge.grace_images,
                        key: fixative_config::QuotaKey::Ip,
                    },
                    d.max_limiter_keys,
                    clock.clone(),
                )
            }),
            fleet,
            rule_ban: Arc::from("ban"),
            penalty_secs: d.penalty.as_secs(),
            window_secs: d.window.as_secs().max(1),
        })
    }

    /// The engine for the embedded default configuration.
    pub fn with_default_config() -> Result<Engine, String> {
        let cfg = Config::embedded_default().map_err(|e| e.to_string())?;
        Engine::new(&cfg).map_err(|e| e.to_string())
    }

    /// Shares a Web Bot Auth key directory that outlives this engine (the
    /// proxy keeps one across reloads and fills it in the background).
    pub fn with_bot_auth(mut self, d: Arc<crate::botauth::Directory>) -> Engine {
        self.bot_auth = d;
        self
    }

    /// The Web Bot Auth key directory.
    pub fn bot_auth(&self) -> &Arc<crate::botauth::Directory> {
        &self.bot_auth
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The loaded crawler IP-range lists and when each was published
    /// (unix seconds), for the staleness gauge.
    pub fn ip_range_dates(&self) -> Vec<(String, Option<i64>)> {
        self.ranges.dates()
    }

    /// The client's autonomous system and its organisation, when an ASN
    /// database is configured (for the evidence ledger).
    pub fn network_info(&self, ip: IpAddr) -> (Option<u32>, Option<String>) {
        self.network.asn_info(ip)
    }

    /// Whether a user agent claims a crawler that verifies by reverse DNS,
    /// so that the proxy should look the client up (asynchronously).
    pub fn wants_rdns(&self, user_agent: &str) -> bool {
        self.rdns_wanted(&self.classify(user_agent))
    }

    /// [`Engine::wants_rdns`] of a user agent already classified (by
    /// [`Engine::classify_ua`]).
    pub fn rdns_wanted(&self, class: &crate::uacache::UaClass) -> bool {
        class.catalog.is_some_and(|(i, weak)| {
            !weak
                && self
                    .catalog
                    .crawlers()
                    .get(i)
                    .is_some_and(|c| !c.rdns.is_empty())
        })
    }

    /// The catalog entry, self-declaration and browser claims of a user
    /// agent (cached per distinct user agent), for [`Known::user_agent`].
    pub fn classify_ua(&self, ua: &str) -> crate::uacache::UaClass {
        self.classify(ua)
    }

    /// The catalog entry and self-declaration of a user agent (cached).
    fn classify(&self, ua: &str) -> crate::uacache::UaClass {
        self.ua_cache.get_or(ua, || {
            let catalog = self.catalog.match_ua(ua).map(|m| (m.index, m.weak));
            let declared = if catalog.is_none_or(|(_, weak)| weak) {
                crate::selfdeclared::self_declared(ua)
            } else {
                None
            };
            crate::uacache::UaClass {
                catalog,
                declared,
                traits: crate::uacache::UaTraits::of(ua),
            }
        })
    }

    /// Every reverse-DNS suffix in the catalog.
    pub fn rdns_suffixes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .catalog
            .crawlers()
            .iter()
            .flat_map(|c| c.rdns.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn w(&self, s: Signal) -> i32 {
        self.weights.get(s)
    }

    fn category_weight(&self, c: Category) -> i32 {
        self.w(match c {
            Category::AiTraining | Category::AiSearch | Category::AiAssistant => Signal::CatalogAi,
            Category::HeadlessBrowser => Signal::CatalogHeadless,
            Category::HttpLibrary => Signal::CatalogLibrary,
            Category::Seo | Category::Other | Category::UnknownBot => Signal::CatalogSeoOther,
            _ => Signal::CatalogBenign,
        })
    }

    /// Where the weight of a verdict's reason comes from: `"built-in"`,
    /// `"configured"` (`[detection.weights]`) or `"datacenter_asns"`.
    pub fn weight_source(&self, v: &Verdict, signal: &str) -> &'static str {
        if signal == "network.datacenter-asn" {
            return "datacenter_asns";
        }
        let s = if signal == "ua.catalog" {
            match v.category {
                Some(Category::AiTraining | Category::AiSearch | Category::AiAssistant) => {
                    Some(Signal::CatalogAi)
                }
                Some(Category::HeadlessBrowser) => Some(Signal::CatalogHeadless),
                Some(Category::HttpLibrary) => Some(Signal::CatalogLibrary),
                Some(Category::Seo | Category::Other | Category::UnknownBot) => {
                    Some(Signal::CatalogSeoOther)
                }
                Some(_) => Some(Signal::CatalogBenign),
                None => None,
            }
        } else {
            fixative_config::weights::Weights::signal(signal)
        };
        s.map(|s| self.weights.source(s)).unwrap_or("built-in")
    }

    /// The weights in effect (built-in or configured), for `explain`.
    pub fn weights(&self) -> &fixative_config::weights::Weights {
        &self.weights
    }

    /// Judges browser versions as of `date` (`YYYY-MM-DD`) instead of
    /// today: for replaying old logs, and for tests that must not age.
    pub fn as_of(mut self, date: &str) -> Result<Engine, String> {
        let day = crate::browsers::MinVersions::day(date)
            .ok_or_else(|| format!("{date:?} is not a YYYY-MM-DD date"))?;
        self.min_versions = crate::browsers::MinVersions::from_model(&self.browser_model, day)?;
        Ok(self)
    }

    /// The oldest browser versions counted as current today.
    pub fn min_browser_versions(&self) -> crate::browsers::MinVersions {
        self.min_versions
    }

    /// Whether a policy reads passes (a `pass` or `automation` match, or a
    /// `challenge` rule), so that pages should carry the check script.
    pub fn policy_reads_passes(&self, policy: &str) -> bool {
        self.policies
            .get(policy)
            .or_else(|| self.policies.get("default"))
            .is_some_and(|p| p.reads_passes)
    }

    /// The keys passes and challenges are signed with.
    pub fn keys(&self) -> &crate::pass::Keys {
        &self.keys
    }

    /// The fleet mirror: bans, penalties, revoked passes, counts.
    pub fn fleet(&self) -> &Arc<crate::fleet::Fleet> {
        &self.fleet
    }

    /// Takes the fleet's answer for a request the engine marked with a
    /// [`crate::fleet::SharedLimit`]: a refusal turns the verdict into
    /// `limited` (or, for a rule in observe mode, records that it would).
    /// Without an answer (the store is slow or down) the node's own
    /// decision stands: just drop the mark.
    pub fn settle_limit(v: &mut Verdict, o: crate::state::LimitOutcome) {
        let Some(s) = v.shared_limit.take() else {
            return;
        };
        if let Some(l) = &mut v.limit {
            l.remaining = o.remaining;
            l.retry_after = o.retry_after;
            l.reset = o.reset;
        }
        if !o.allowed {
            if s.observe {
                v.would = Some(Action::Limited);
            } else {
                v.action = Action::Limited;
            }
        }
    }

    /// The robots.txt trap path.
    pub fn trap_path(&self) -> &str {
        &self.trap_path
    }

    /// Decides what to do with a request under the named policy (unknown
    /// names use `default`).
    pub fn evaluate(&self, f: &RequestFacts<'_>, policy: &str) -> Verdict {
        self.clock.set(f.now);
        let mut v = Verdict::allow();
        let add = |v: &mut Verdict, signal: &'static str, weight: i32, detail: &str| {
            v.score += weight;
            v.reasons.push(Reason {
                signal,
                weight,
                detail: detail.to_string(),
            });
        };
        let header = |n: &str| {
            if f.headers_known {
                f.header.get(n)
            } else {
                None
            }
        };

        // Identity: a Web Bot Auth signature first (a verified one
        // overrides what the user agent claims), then catalog match and
        // verification.
        let mut weak = false;
        let mut verified = false;
        let mut spoofed = false;
        let ua = f.user_agent.filter(|u| !u.trim().is_empty());
        let signed = if f.headers_known && f.header.get("signature-input").is_some() {
            let m = crate::botauth::Message {
                header: f.header,
                method: f.method,
                authority: f.header.authority().unwrap_or(f.host),
                path: f.path,
                scheme: f.header.scheme().unwrap_or("https"),
            };
            self.bot_auth.check(&m, f.unix_time)
        } else {
            crate::botauth::Check::Absent
        };
        match &signed {
            crate::botauth::Check::Verified { agent, keyid } => {
                v.signed_agent = Some(Arc::from(agent.as_str()));
                add(
                    &mut v,
                    "signature.verified",
                    0,
                    &format!("{agent} (key {keyid})"),
                );
                verified = true;
                match self
                    .signature_agents
                    .get(agent.as_str())
                    .and_then(|i| Some((*i, self.catalog.crawlers().get(*i)?)))
                {
                    Some((i, c)) => {
                        v.category = Some(c.category);
                        v.crawler = self.crawler_names.get(i).cloned();
                        add(&mut v, "crawler.verified", 0, "Web Bot Auth signature");
                    }
                    None => {
                        // A bot that proves who it is, unknown to the catalog.
                        v.category = Some(Category::UnknownBot);
                        v.crawler = v.signed_agent.clone();
                    }
                }
            }
            crate::botauth::Check::Invalid(why) => {
                add(
                    &mut v,
                    "signature.invalid",
                    self.w(Signal::SignatureInvalid),
                    why,
                );
            }
            crate::botauth::Check::Pending { agent } => {
                add(&mut v, "signature.pending", 0, agent);
                v.signature_pending = Some(agent.clone());
            }
            crate::botauth::Check::Unverifiable(why) => {
                add(&mut v, "signature.unverifiable", 0, why);
            }
            crate::botauth::Check::Absent => {}
        }
        let claims = if v.signed_agent.is_some() { None } else { ua };
        match claims {
            None if v.signed_agent.is_some() => {}
            None => add(
                &mut v,
                "ua.missing",
                self.w(Signal::UaMissing),
                "no User-Agent",
            ),
            Some(ua) => {
                let class = f.known.user_agent.unwrap_or_else(|| self.classify(ua));
                if let Some((index, m_weak)) = class.catalog
                    && let Some(c) = self.catalog.crawlers().get(index)
                {
                    v.category = Some(c.category);
                    v.crawler = self.crawler_names.get(index).cloned();
                    weak = m_weak;
                    if weak {
                        add(
                            &mut v,
                            "ua.catalog.generic",
                            self.w(Signal::CatalogGeneric),
                            &c.name,
                        );
                    } else {
                        add(
                            &mut v,
                            "ua.catalog",
                            self.category_weight(c.category),
                            &c.name,
                        );
                        // Only lists that are loaded count (a published
                        // list not fetched yet verifies nothing).
                        let has_ranges = c
                            .ip_ranges
                            .iter()
                            .any(|file| self.ranges.get(file).is_some());
                        let verifiable = has_ranges || !c.rdns.is_empty();
                        if verifiable {
                            let in_ranges = c.ip_ranges.iter().any(|file| {
                                self.ranges
                                    .get(file)
                                    .is_some_and(|s| s.contains(f.client_ip))
                            });
                            let rdns_ok = matches!(f.rdns, Rdns::Confirmed(name)
                                if c.rdns.iter().any(|suffix| name_under(name, suffix)));
                            // Published ranges are authoritative: outside them is
                            // spoofed unless reverse DNS confirms (a stale
                            // snapshot). For operators that verify by reverse
                            // DNS only, the client is unverified until the
                            // lookup answers, and spoofed when it says no.
                            let rdns_says_no = has_ranges
                                || c.rdns.is_empty()
                                || matches!(f.rdns, Rdns::Failed | Rdns::Confirmed(_));
                            if in_ranges || rdns_ok {
                                verified = true;
                                add(
                                    &mut v,
                                    "crawler.verified",
                                    0,
                                    if in_ranges {
                                        "published IP ranges"
                                    } else {
                                        "reverse DNS"
                                    },
                                );
                            } else if rdns_says_no {
                                spoofed = true;
                                add(&mut v, "crawler.spoofed", self.w(Signal::Spoofed), &c.name);
                            } else {
                                add(&mut v, "crawler.unverified", 0, "reverse DNS pending");
                            }
                        }
                    }
                }
                // Not in the catalog (or only a generic word) but describes
                // itself as automated.
                if (v.crawler.is_none() || weak)
                    && let Some(why) = class.declared
                {
                    v.category = Some(Category::UnknownBot);
                    v.crawler = None;
                    weak = false;
                    add(
                        &mut v,
                        "ua.self-declared-bot",
                        self.w(Signal::SelfDeclaredBot),
                        why,
                    );
                }
                let traits = class.traits;
                if f.headers_known
                    && v.crawler.is_none()
                    && v.category.is_none()
                    && traits.claims_browser
                {
                    if header("accept-language").is_none() {
                        add(
                            &mut v,
                            "header.no-accept-language",
                            self.w(Signal::NoAcceptLanguage),
                            "browser UA",
                        );
                    }
                    if header("accept").is_none() {
                        add(
                            &mut v,
                            "header.no-accept",
                            self.w(Signal::NoAccept),
                            "browser UA",
                        );
                    }
                    if header("sec-fetch-mode").is_none() && traits.sends_sec_fetch {
                        add(
                            &mut v,
                            "header.no-sec-fetch",
                            self.w(Signal::NoSecFetch),
                            "browser UA",
                        );
                    }
                    if let Some(raw) = f.header.raw()
                        && let Some(why) =
                            crate::fingerprint::Shape::of(raw).mismatch(traits.chromium)
                    {
                        add(
                            &mut v,
                            "header.fingerprint",
                            self.w(Signal::HeaderFingerprint),
                            &format!("{why}; {}", crate::fingerprint::fingerprint(raw)),
                        );
                    }
                    if let Some(hello) = f.header.client_hello() {
                        // Chromium and Safari (and every iOS browser, on
                        // WebKit) send GREASE; Firefox does not.
                        if let Some(why) = hello.mismatch(traits.greasy) {
                            add(
                                &mut v,
                                "tls.fingerprint",
                                self.w(Signal::TlsFingerprint),
                                &format!("{why}; JA4 {}", hello.ja4),
                            );
                        }
                    }
                    if let Some(hint) = header("sec-ch-ua")
                        && (hint.contains("Chromium") || hint.contains("Google Chrome"))
                        && !traits.chrome_token
                    {
                        add(
                            &mut v,
                            "header.hint-mismatch",
                            self.w(Signal::HintMismatch),
                            "Sec-CH-UA vs User-Agent",
                        );
                    }
                }
                if v.crawler.is_none() && v.category.is_none() && traits.claims_browser {
                    let stale = match (traits.chrome, traits.firefox) {
                        (Some(c), _) => c < self.min_versions.chrome,
                        (None, Some(ff)) => ff < self.min_versions.firefox,
                        _ => false,
                    };
                    if stale {
                        add(
                            &mut v,
                            "ua.stale-browser",
                            self.w(Signal::StaleBrowser),
                            "old browser version",
                        );
                    }
                }
                if header("sec-ch-ua").is_some_and(|h| h.contains("HeadlessChrome"))
                    && v.category != Some(Category::HeadlessBrowser)
                {
                    v.category = Some(Category::HeadlessBrowser);
                    add(
                        &mut v,
                        "header.headless-client-hint",
                        self.w(Signal::HeadlessHint),
                        "Sec-CH-UA",
                    );
                }
            }
        }
        if f.headers_known && f.http10 {
            add(&mut v, "http.1.0", self.w(Signal::Http10), "HTTP/1.0");
        }

        // Network: ASN and country.
        let net = self.network.lookup(f.client_ip);
        if let Some(asn) = net.asn
            && let Some(w) = self.datacenter.get(&asn)
            && !verified
        {
            let org = self.network.asn_org(f.client_ip).unwrap_or_default();
            add(
                &mut v,
                "network.datacenter-asn",
                *w,
                format!("AS{asn} {org}").trim_end(),
            );
        }

        // Behaviour (stateful).
        let kind = f
            .known
            .kind
            .unwrap_or_else(|| request_kind(f.path, header("accept")));
        let trap_hit = f.path.starts_with(self.trap_path.as_str());
        let mut stats = self.behaviour.record(f.client_ip, f.now, kind, trap_hit);
        if trap_hit {
            self.penalise(f.client_ip, f.unix_time, true);
        }
        // A fleet's counts (other nodes' included) when state is shared.
        let seen = self
            .fleet
            .count(f.client_ip, f.unix_time, Some(kind), false);
        if let Some(c) = seen.map(|s| s.counts) {
            stats.requests = stats.requests.max(c.requests);
            stats.pages = stats.pages.max(c.pages);
            stats.images = stats.images.max(c.images);
            // A burst of 404s the fleet saw, though no node saw it alone.
            if c.not_found >= crate::state::NOT_FOUND_BURST
                && self.fleet.penalty(f.client_ip, f.unix_time).is_none()
            {
                self.penalise(f.client_ip, f.unix_time, false);
            }
        }
        let local_penalty = Behaviour::penalised(&stats, f.now);
        let fleet_penalty = self.fleet.penalty(f.client_ip, f.unix_time);
        if local_penalty || fleet_penalty.is_some() {
            if (local_penalty && stats.trapped) || fleet_penalty == Some(true) {
                add(
                    &mut v,
                    "behaviour.robots-trap",
                    self.w(Signal::RobotsTrap),
                    "ignored robots.txt",
                );
            } else {
                add(
                    &mut v,
                    "behaviour.404-burst",
                    self.w(Signal::NotFoundBurst),
                    "many 404s",
                );
            }
        }
        if stats.images >= 20 && stats.pages == 0 {
            add(
                &mut v,
                "behaviour.images-without-pages",
                self.w(Signal::ImagesWithoutPages),
                "images only",
            );
        } else if stats.requests >= 50 && stats.images * 10 > stats.requests * 9 {
            add(
                &mut v,
                "behaviour.image-share",
                self.w(Signal::ImageShare),
                ">90% images",
            );
        }
        if stats.requests >= 600 {
            add(
                &mut v,
                "behaviour.high-rate",
                self.w(Signal::HighRate),
                "requests per window",
            );
        }

        // The pass (only read when a cookie is sent: the common path
        // without one costs nothing).
        if f.headers_known
            && let Some(token) = f.header.cookie(crate::pass::PASS_COOKIE)
        {
            let b = crate::pass::Binding::of(f.client_ip, ua.unwrap_or(""));
            v.pass = match self.keys.verify_pass(token, b, f.unix_time) {
                // A pass that met the trap, here or on another node, no
                // longer counts.
                Ok(p) if trap_hit || self.fleet.has_revocations() => {
                    let id = crate::fleet::pass_id(token);
                    if trap_hit {
                        self.fleet.publish(crate::fleet::Event::Revoke {
                            id,
                            until: p.expires,
                        });
                    }
                    if self.fleet.revoked(id, f.unix_time) {
                        crate::pass::PassState::Invalid(crate::pass::Invalid::Revoked)
                    } else {
                        crate::pass::PassState::of(&p)
                    }
                }
                Ok(p) => crate::pass::PassState::of(&p),
                Err(e) => crate::pass::PassState::Invalid(e),
            };
        }

        // Bans (from any node of a fleet) and network lists come before
        // policy.
        if let Some(b) = self.fleet.banned(f.client_ip, f.unix_time) {
            add(&mut v, "fleet.ban", 0, &b.reason);
            v.rule = Some(self.rule_ban.clone());
            v.action = Action::Block(403);
            return v;
        }
        if self.deny.contains(f.client_ip) {
            v.rule = Some(self.rule_deny.clone());
            v.action = Action::Block(403);
            return v;
        }
        if self.allow.contains(f.client_ip) {
            v.rule = Some(self.rule_allow.clone());
            return v;
        }

        // Policy: first matching rule decides.
        let Some(p) = self
            .policies
            .get(policy)
            .or_else(|| self.policies.get("default"))
        else {
            return v;
        };
        // Image requests without a valid pass spend the client's grace
        // budget (enough for a first page view before its check has run).
        let image = kind == RequestKind::Image;
        let mut in_grace = false;
        if image
            && p.uses_pass
            && !matches!(
                v.pass,
                crate::pass::PassState::Valid | crate::pass::PassState::Automation
            )
            && let Some(g) = &self.grace
        {
            let o = g.check(&g.key(f.client_ip, None, None));
            in_grace = o.allowed;
            v.grace_left = Some(o.remaining);
        }
        let category = if weak { None } else { v.category };
        let crawler = if weak { None } else { v.crawler.as_deref() };
        let input = MatchInput {
            category,
            crawler,
            user_agent: f.user_agent,
            path: f.path,
            method: f.method,
            header: f.header,
            headers_known: f.headers_known,
            client_ip: f.client_ip,
            asn: net.asn,
            country: net.country,
            score: v.score,
            verified,
            spoofed,
            image,
            pass: v.pass,
            in_grace,
            signed_agent: v.signed_agent.as_deref(),
        };
        // A pass (from the script, or the no-JS path) satisfies a challenge:
        // the rule is skipped.
        let passed = matches!(
            v.pass,
            crate::pass::PassState::Valid | crate::pass::PassState::NoJs
        );
        let Some(rule) = p.rules.iter().find(|r| {
            !(passed && matches!(r.action, RuleAction::Challenge(_))) && r.matches(&input)
        }) else {
            return v;
        };
        v.rule = self.rule_names.get(&rule.name).cloned();
        let action = match rule.action {
            RuleAction::Allow => Action::Allow,
            RuleAction::Observe => Action::Observe,
            RuleAction::Cloak => Action::Cloak,
            RuleAction::Block(s) => Action::Block(s),
            // A check that saw automation: no wall, protected images.
            RuleAction::Challenge(_) if v.pass == crate::pass::PassState::Automation => {
                Action::Cloak
            }
            RuleAction::Challenge(s) => Action::Challenge(s),
            // Never hold a verified crawler's connection.
            RuleAction::Tarpit(s) if verified => Action::Block(s),
            RuleAction::Tarpit(s) => Action::Tarpit(s),
            RuleAction::Limit(q) => match &rule.limiter {
                Some(l) => {
                    let key = l.key(f.client_ip, net.asn, v.crawler.as_deref());
                    let o = l.check(&key);
                    // Allowed here: the fleet's quota has the last word,
                    // unless the client is far from it (see `far_from`).
                    if o.allowed && self.fleet.shared() {
                        let id = quota_id(p, rule, &key);
                        if far_from(&q, seen, self.window_secs) {
                            self.fleet.defer(id);
                        } else {
                            v.shared_limit = Some(crate::fleet::SharedLimit {
                                key: shared_key(p, rule, &key, v.crawler.as_deref()),
                                emission_us: (q.period.as_micros() / u128::from(q.rate.max(1)))
                                    .min(u128::from(u64::MAX))
                                    as u64,
                                burst: q.burst.max(1),
                                observe: rule.mode == Mode::Observe,
                                deferred: self.fleet.take_deferred(id),
                            });
                        }
                    }
                    v.limit = Some(LimitInfo {
                        quota: q.rate,
                        window: q.period.as_secs(),
                        remaining: o.remaining,
                        retry_after: o.retry_after,
                        reset: o.reset,
                    });
                    if o.allowed {
                        Action::Limit
                    } else {
                        Action::Limited
                    }
                }
                None => Action::Limit,
            },
        };
        if rule.mode == Mode::Observe {
            if !matches!(action, Action::Allow | Action::Limit) {
                v.would = Some(action);
            }
            v.action = if action == Action::Allow {
                Action::Allow
            } else {
                Action::Observe
            };
        } else {
            v.action = action;
        }
        v
    }

    /// Records a response status for behaviour signals (404 bursts, over
    /// the fleet's counts when state is shared).
    pub fn record_status(&self, client_ip: IpAddr, now: Duration, unix: u64, status: u16) {
        if self.behaviour.record_status(client_ip, now, status) {
            self.penalise(client_ip, unix, false);
        }
        if status == 404
            && let Some(c) = self.fleet.count(client_ip, unix, None, true)
            && c.counts.not_found >= crate::state::NOT_FOUND_BURST
            && self.fleet.penalty(client_ip, unix).is_none()
        {
            self.penalise(client_ip, unix, false);
        }
    }

    /// Penalises a client for `detection.penalty` from `unix` (here and,
    /// when shared, on every node).
    fn penalise(&self, client_ip: IpAddr, unix: u64, trapped: bool) {
        self.fleet
            .penalise(client_ip, unix.saturating_add(self.penalty_secs), trapped);
    }

    /// Drops idle limiter keys, expired bans and revocations, and frees
    /// memory; call every 30–60 s with the Unix time.
    pub fn sweep(&self, unix: u64) {
        self.fleet.sweep(unix);
        for p in self.policies.values() {
            for r in &p.rules {
                if let Some(l) = &r.limiter {
                    l.sweep();
                }
            }
        }
    }

    /// Sizes of the bounded state.
    pub fn state_sizes(&self) -> StateSizes {
        let mut s = StateSizes {
            tracked_clients: self.behaviour.len(),
            limiter_keys: Vec::new(),
            limiter_overflow: crate::state::OverflowCounts::default(),
        };
        for p in self.policies.values() {
            for r in &p.rules {
                if let Some(l) = &r.limiter {
                    s.limiter_keys
                        .push((p.name.clone(), r.name.clone(), l.len()));
                    let o = l.overflow();
                    s.limiter_overflow.aggregated += o.aggregated;
                    s.limiter_overflow.failed_open += o.failed_open;
                }
            }
        }
        s
    }
}

/// The store key of a quota: policy, rule, limiter key (the crawler's name
/// rather than its hash, which is not the same on every build).
fn shared_key(
    p: &CompiledPolicy,
    rule: &crate::policy::CompiledRule,
    key: &crate::state::LimitKey,
    crawler: Option<&str>,
) -> String {
    use crate::state::LimitKey;
    match (key, crawler) {
        (LimitKey::Ip(ip), _) => format!("{}/{}/{ip}", p.name, rule.name),
        (LimitKey::Asn(a), _) => format!("{}/{}/AS{a}", p.name, rule.name),
        (LimitKey::Crawler(_), Some(c)) => format!("{}/{}/c:{c}", p.name, rule.name),
        (LimitKey::Crawler(h), None) => format!("{}/{}/h:{h:x}", p.name, rule.name),
    }
}

/// Whether a client is so far from a per-address quota that this node may
/// admit it without asking the fleet: its requests over the fleet's last
/// two counting windows are under a quarter of the burst, and the bucket
/// refills within one window (so nothing older can weigh on it). Such
/// requests are counted with the key's next store decision; a node admits
/// at most a quarter of the burst this way before asking (what it admitted
/// and never reports, when the client moves on to other nodes, is the
/// bound on over-admission). Other keys (networks, ASNs, crawlers) always
/// ask.
fn far_from(
    q: &fixative_config::Quota,
    seen: Option<crate::fleet::Seen>,
    window_secs: u64,
) -> bool {
    let Some(seen) = seen else {
        return false;
    };
    let refill = q.period.as_secs_f64() * f64::from(q.burst) / f64::from(q.rate.max(1));
    q.key == fixative_config::QuotaKey::Ip
        && refill <= window_secs as f64
        && u64::from(seen.recent_requests()) * 4 < u64::from(q.burst)
}

/// A stable id of a quota key on this node (for deferred admissions).
fn quota_id(
    p: &CompiledPolicy,
    rule: &crate::policy::CompiledRule,
    key: &crate::state::LimitKey,
) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut h = SEED.get_or_init(Default::default).build_hasher();
    p.name.hash(&mut h);
    rule.name.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}
