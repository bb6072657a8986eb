//! Detection policies and settings: types and validation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::raw::{RawDetection, RawPolicy, RawQuota, RawRule};
use crate::spans::KeyPath;
use crate::validate::Ctx;

/// Category names the catalog uses.
/// Every category name, in the one vocabulary shared by configuration,
/// catalog and engine.
pub const CATEGORIES: [&str; Category::ALL.len()] = {
    let mut out = [""; Category::ALL.len()];
    let mut i = 0;
    while i < Category::ALL.len() {
        out[i] = Category::ALL[i].as_str();
        i += 1;
    }
    out
};

/// What kind of client a crawler is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Category {
    /// Collects content to train models.
    AiTraining,
    /// Builds an AI answer index.
    AiSearch,
    /// Fetches on a person's request inside an AI assistant or agent.
    AiAssistant,
    /// Classic search engine.
    SearchEngine,
    /// Link preview for a shared URL.
    SocialPreview,
    /// Web archive.
    Archiver,
    /// SEO tooling.
    Seo,
    /// Uptime and monitoring.
    Monitoring,
    /// Generic HTTP library or command-line client.
    HttpLibrary,
    /// Automated or headless browser.
    HeadlessBrowser,
    /// Describes itself as automated (a contact URL, an e-mail address,
    /// `compatible; Name/1.0`, bot words, a bare product token without a
    /// browser engine) but is in no catalog entry.
    UnknownBot,
    /// Anything else that identifies as a bot.
    Other,
}

impl Category {
    /// All categories, for metrics and documentation.
    pub const ALL: [Category; 12] = [
        Category::AiTraining,
        Category::AiSearch,
        Category::AiAssistant,
        Category::SearchEngine,
        Category::SocialPreview,
        Category::Archiver,
        Category::Seo,
        Category::Monitoring,
        Category::HttpLibrary,
        Category::HeadlessBrowser,
        Category::UnknownBot,
        Category::Other,
    ];

    /// The kebab-case name used in config, logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::AiTraining => "ai-training",
            Category::AiSearch => "ai-search",
            Category::AiAssistant => "ai-assistant",
            Category::SearchEngine => "search-engine",
            Category::SocialPreview => "social-preview",
            Category::Archiver => "archiver",
            Category::Seo => "seo",
            Category::Monitoring => "monitoring",
            Category::HttpLibrary => "http-library",
            Category::HeadlessBrowser => "headless-browser",
            Category::UnknownBot => "unknown-bot",
            Category::Other => "other",
        }
    }

    /// Parses a kebab-case name.
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The built-in policies (TOML), replaced by same-named user policies.
pub const BUILTIN_POLICIES: &str = include_str!("../policies.toml");

/// Enforce or shadow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Act on the verdict.
    Enforce,
    /// Log and count the would-be action; let the request through.
    Observe,
}

/// What a rate-limit quota is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKey {
    /// The client IP.
    Ip,
    /// The client's network: IPv4 /24, IPv6 /64.
    IpPrefix,
    /// The client's autonomous system (needs `detection.asn_db`; falls back to the prefix).
    Asn,
    /// The identified crawler (falls back to the IP when none).
    Crawler,
}

/// A quota: `rate` cells per `period`, with a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed per period.
    pub rate: u32,
    /// The period.
    pub period: Duration,
    /// Burst size.
    pub burst: u32,
    /// Key kind.
    pub key: QuotaKey,
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Pass.
    Allow,
    /// Pass, flagged.
    Observe,
    /// Pass under the quota, 429 above.
    Limit(Quota),
    /// Serve protected image variants.
    Cloak,
    /// Pages without a pass get the check as an interstitial (this
    /// status); images get protected variants; other requests are refused
    /// with this status. A valid pass skips the rule.
    Challenge(u16),
    /// Answered slowly with worthless text (bounded by `[tarpit]`); when
    /// the tarpit is full, and for verified crawlers, refused with this
    /// status.
    Tarpit(u16),
    /// Refuse with this status.
    Block(u16),
}

/// A rule's match; absent fields always hold.
#[derive(Debug, Clone, Default)]
pub struct MatchConfig {
    /// Any of these categories (non-generic catalog match, or an
    /// unknown self-declared bot for `unknown-bot`).
    pub category: Vec<Category>,
    /// Any of these crawler names (non-generic catalog match).
    pub crawler: Vec<String>,
    /// User agent matches this regex (validated).
    pub ua_regex: Option<String>,
    /// Path matches any of these globs (`*` within a segment, `**` across).
    pub path: Vec<String>,
    /// Any of these methods.
    pub method: Vec<String>,
    /// All of these headers present (lower-case names).
    pub header_present: Vec<String>,
    /// Header (lower-case) value matches regex (validated).
    pub header_regex: BTreeMap<String, String>,
    /// Client inside any of these networks.
    pub cidr: Vec<IpNet>,
    /// Client in any of these autonomous systems.
    pub asn: Vec<u32>,
    /// Client in any of these countries (ISO 3166 alpha-2, upper-case).
    pub country: Vec<String>,
    /// Score at least.
    pub score_at_least: Option<i32>,
    /// Identity verified (IP ranges or reverse DNS) or not.
    pub verified: Option<bool>,
    /// Claims a verifiable crawler but failed verification.
    pub spoofed: Option<bool>,
    /// Request is for an image (by extension or Accept).
    pub image: Option<bool>,
    /// `true`: the client holds a valid pass from the in-page check.
    /// `false`: it holds none (or an invalid, expired or automation-marked
    /// one) and, for image requests, has spent its grace budget. An image
    /// request within the grace budget matches neither.
    pub pass: Option<bool>,
    /// The client's pass records that the in-page check saw automation.
    pub automation: Option<bool>,
    /// A verified Web Bot Auth signature of any of these agents (hosts of
    /// `Signature-Agent`, lower-case; `"*"`: any verified agent).
    pub signed_agent: Vec<String>,
}

/// One rule.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    /// Name, unique within its policy; a metrics label.
    pub name: String,
    /// When it applies.
    pub matches: MatchConfig,
    /// What it does.
    pub action: RuleAction,
    /// Rule-level mode (a policy in observe mode overrides it).
    pub mode: Mode,
}

/// A named policy.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Name sites refer to.
    pub name: String,
    /// Policy-level mode.
    pub mode: Mode,
    /// Ordered rules.
    pub rules: Vec<RuleConfig>,
}

/// `[detection]`: signals and state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DetectionConfig {
    /// The robots.txt trap: a path robots.txt disallows that only crawlers
    /// ignoring robots.txt visit.
    pub trap_path: String,
    /// How long behaviour signals raise a client's later verdicts.
    pub penalty: Duration,
    /// Sliding window for behaviour statistics.
    pub window: Duration,
    /// Cap on clients tracked for behaviour (LRU eviction).
    pub max_tracked_clients: usize,
    /// Cap on live keys per rate limiter (overflow shares one bucket).
    pub max_limiter_keys: usize,
    /// Extra catalog files; entries with an existing name replace it.
    pub catalog_files: Vec<PathBuf>,
    /// Directory of published IP-range JSON files replacing the shipped snapshots.
    pub ip_ranges_dir: Option<PathBuf>,
    /// MaxMind-format ASN database.
    pub asn_db: Option<PathBuf>,
    /// MaxMind-format country database.
    pub country_db: Option<PathBuf>,
    /// Datacenter / cloud ASNs and the weight each adds.
    pub datacenter_asns: BTreeMap<u32, i32>,
    /// Always allowed networks.
    pub allow_cidrs: Vec<IpNet>,
    /// Always blocked networks.
    pub deny_cidrs: Vec<IpNet>,
    /// Signal weights: built-in, overridden by `[detection.weights]`.
    pub weights: crate::weights::Weights,
    /// Browser release model replacing the shipped one (for the stale
    /// browser signal).
    pub browser_versions: Option<PathBuf>,
    /// Request header (lower-case) carrying the client's JA4 when a
    /// trusted load balancer terminates TLS; believed only from
    /// `server.trusted_proxies`.
    pub ja4_header: Option<String>,
    /// Web Bot Auth (signed agents).
    pub web_bot_auth: WebBotAuth,
}

/// `[detection.web_bot_auth]`: verifying HTTP Message Signatures of signed
/// agents (RFC 9421, draft-meunier-web-bot-auth-architecture).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebBotAuth {
    /// Verify signatures at all.
    pub enabled: bool,
    /// Local key directories: one JWKS file per agent, named after the
    /// agent's host (`chatgpt.com.json`), loaded at start and on reload.
    pub directories_dir: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted when fetching key directories,
    /// for agents on a private PKI; the system roots are always trusted.
    pub ca_file: Option<PathBuf>,
    /// Fetch the key directory of an agent not known yet, in the
    /// background (https only); its first requests stay unverified.
    pub fetch: bool,
    /// How long a fetched directory is used before it is fetched again.
    pub refresh: Duration,
    /// Longest signature validity accepted (`expires` - `created`).
    pub max_lifetime: Duration,
    /// Clock difference tolerated for `created` in the future.
    pub clock_skew: Duration,
    /// Cap on agents whose keys are kept (least recently used dropped).
    pub max_agents: usize,
    /// Cap on remembered nonces (replay protection, until `expires`).
    pub max_nonces: usize,
}

impl Default for WebBotAuth {
    fn default() -> Self {
        WebBotAuth {
            enabled: true,
            directories_dir: None,
            ca_file: None,
            fetch: true,
            refresh: Duration::from_secs(3600),
            max_lifetime: Duration::from_secs(3600),
            clock_skew: Duration::from_secs(60),
            max_agents: 1024,
            max_nonces: 100_000,
        }
    }
}

fn parse_mode(ctx: &mut Ctx<'_>, path: &KeyPath, m: Option<&str>) -> Mode {
    match m {
        None | Some("enforce") => Mode::Enforce,
        Some("observe") => Mode::Observe,
        Some(other) => {
            ctx.err(
                path,
                format!("{other:?} is not a mode (\"enforce\" or \"observe\")"),
            );
            Mode::Enforce
        }
    }
}

fn parse_quota(ctx: &mut Ctx<'_>, path: &KeyPath, q: &RawQuota) -> Option<Quota> {
    let mut ok = true;
    if !(1..=1_000_000).contains(&q.rate) {
        ctx.err(
            &path.key("rate"),
            format!("{} is out of range (1 to 1000000)", q.rate),
        );
        ok = false;
    }
    let period = match q.per.as_str() {
        "second" => Duration::from_secs(1),
        "minute" => Duration::from_secs(60),
        "hour" => Duration::from_secs(3600),
        other => {
            ctx.err(
                &path.key("per"),
                format!("{other:?} is not a period (\"second\", \"minute\" or \"hour\")"),
            );
            ok = false;
            Duration::from_secs(1)
        }
    };
    let burst = q.burst.unwrap_or(q.rate);
    if !(1..=1_000_000).contains(&burst) {
        ctx.err(
            &path.key("burst"),
            format!("{burst} is out of range (1 to 1000000)"),
        );
        ok = false;
    }
    let key = match q.key.as_str() {
        "ip" => QuotaKey::Ip,
        "ip-prefix" => QuotaKey::IpPrefix,
        "asn" => QuotaKey::Asn,
        "crawler" => QuotaKey::Crawler,
        other => {
            ctx.err(
                &path.key("key"),
                format!("{other:?} is not a key kind (ip, ip-prefix, asn, crawler)"),
            );
            ok = false;
            QuotaKey::Ip
        }
    };
    ok.then_some(Quota {
        rate: q.rate as u32,
        period,
        burst: burst as u32,
        key,
    })
}

fn parse_status(ctx: &mut Ctx<'_>, path: &KeyPath, s: Option<i64>) -> u16 {
    match s {
        None => 403,
        Some(s) if (400..=599).contains(&s) => s as u16,
        Some(s) => {
            ctx.err(path, format!("{s} is not an error status (400 to 599)"));
            403
        }
    }
}

/// Checks a glob: only `*`, `**` and literal characters.
fn check_glob(g: &str) -> Result<(), String> {
    if !g.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if g.contains("***") {
        return Err("has '***'; use '*' or '**'".into());
    }
    Ok(())
}

fn parse_rule(ctx: &mut Ctx<'_>, path: &KeyPath, r: &RawRule) -> Option<RuleConfig> {
    let n = ctx.problems.len();
    let name = r.name.trim().to_string();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        ctx.err(
            &path.key("name"),
            format!("{name:?} is not a valid rule name (letters, digits, '-', '_')"),
        );
    }
    let m = &r.matches;
    let mp = path.key("match");
    let mut categories = Vec::with_capacity(m.category.len());
    for (i, c) in m.category.iter().enumerate() {
        match Category::parse(c) {
            Some(cat) => categories.push(cat),
            None => ctx.err(
                &mp.key("category").index(i),
                format!("unknown category {c:?} (known: {})", CATEGORIES.join(", ")),
            ),
        }
    }
    if let Some(re) = &m.ua_regex
        && let Err(e) = regex::Regex::new(re)
    {
        ctx.err(&mp.key("ua_regex"), format!("invalid regex: {e}"));
    }
    for (k, re) in &m.header_regex {
        if let Err(e) = regex::Regex::new(re) {
            ctx.err(
                &mp.key("header_regex").key(k),
                format!("invalid regex: {e}"),
            );
        }
    }
    for (i, g) in m.path.iter().enumerate() {
        if let Err(e) = check_glob(g) {
            ctx.err(&mp.key("path").index(i), format!("{g:?} {e}"));
        }
    }
    let mut cidr = Vec::new();
    for (i, c) in m.cidr.iter().enumerate() {
        match crate::validate::parse_net(c) {
            Some(n) => cidr.push(n),
            None => ctx.err(
                &mp.key("cidr").index(i),
                format!("{c:?} is not an IP address or CIDR"),
            ),
        }
    }
    let mut asn = Vec::new();
    for (i, a) in m.asn.iter().enumerate() {
        match u32::try_from(*a) {
            Ok(a) => asn.push(a),
            Err(_) => ctx.err(&mp.key("asn").index(i), format!("{a} is not an AS number")),
        }
    }
    let mut country = Vec::new();
    for (i, c) in m.country.iter().enumerate() {
        if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) {
            country.push(c.to_ascii_uppercase());
        } else {
            ctx.err(
                &mp.key("country").index(i),
                format!("{c:?} is not a two-letter country code"),
            );
        }
    }
    let score_at_least = m.score_at_least.map(|s| s.clamp(-100_000, 100_000) as i32);
    let status = parse_status(ctx, &path.key("status"), r.status);
    let action = match r.action.as_str() {
        "allow" => RuleAction::Allow,
        "observe" => RuleAction::Observe,
        "cloak" => RuleAction::Cloak,
        "challenge" => RuleAction::Challenge(status),
        "tarpit" => RuleAction::Tarpit(status),
        "block" => RuleAction::Block(status),
        "limit" => match &r.quota {
            Some(q) => match parse_quota(ctx, &path.key("quota"), q) {
                Some(q) => RuleAction::Limit(q),
                None => RuleAction::Allow,
            },
            None => {
                ctx.err(
                    &path.key("action"),
                    "\"limit\" needs a quota, e.g. quota = { rate = 30, per = \"minute\", burst = 10, key = \"ip\" }",
                );
                RuleAction::Allow
            }
        },
        other => {
            ctx.err(
                &path.key("action"),
                format!(
                    "unknown action {other:?} (allow, observe, limit, cloak, challenge, tarpit, block)"
                ),
            );
            RuleAction::Allow
        }
    };
    if r.quota.is_some() && !matches!(action, RuleAction::Limit(_)) && r.action != "limit" {
        ctx.err(
            &path.key("quota"),
            "a quota only makes sense with action = \"limit\"",
        );
    }
    let mode = parse_mode(ctx, &path.key("mode"), r.mode.as_deref());
    if ctx.problems.len() > n {
        return None;
    }
    Some(RuleConfig {
        name,
        matches: MatchConfig {
            category: categories,
            crawler: m.crawler.clone(),
            ua_regex: m.ua_regex.clone(),
            path: m.path.clone(),
            method: m.method.iter().map(|s| s.to_ascii_uppercase()).collect(),
            header_present: m
                .header_present
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            header_regex: m
                .header_regex
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            cidr,
            asn,
            country,
            score_at_least,
            verified: m.verified,
            spoofed: m.spoofed,
            image: m.image,
            pass: m.pass,
            automation: m.automation,
            signed_agent: m
                .signed_agent
                .iter()
                .map(|a| {
                    let a = a.trim().to_ascii_lowercase();
                    a.strip_prefix("https://")
                        .unwrap_or(&a)
                        .trim_end_matches('/')
                        .to_string()
                })
                .collect(),
        },
        action,
        mode,
    })
}

/// Validates the policies of one source into `out` (replacing same names).
pub(crate) fn validate_policies(
    ctx: &mut Ctx<'_>,
    raw: &BTreeMap<String, RawPolicy>,
    out: &mut BTreeMap<String, PolicyConfig>,
) {
    let root = KeyPath::root().key("policy");
    for (name, p) in raw {
        let pp = root.key(name);
        let mode = parse_mode(ctx, &pp.key("mode"), p.mode.as_deref());
        let mut rules = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, r) in p.rule.iter().enumerate() {
            let rp = pp.key("rule").index(i);
            if !seen.insert(r.name.clone()) {
                ctx.err(
                    &rp.key("name"),
                    format!("{:?} is already a rule of this policy", r.name),
                );
            }
            if let Some(rule) = parse_rule(ctx, &rp, r) {
                rules.push(rule);
            }
        }
        out.insert(
            name.clone(),
            PolicyConfig {
                name: name.clone(),
                mode,
                rules,
            },
        );
    }
}

/// Validates `[detection]`.
pub(crate) fn validate_detection(ctx: &mut Ctx<'_>, d: &RawDetection) -> DetectionConfig {
    let p = KeyPath::root().key("detection");
    if !d.trap_path.starts_with('/')
        || d.trap_path.len() < 2
        || d.trap_path.contains(char::is_whitespace)
    {
        ctx.err(
            &p.key("trap_path"),
            format!(
                "{:?} must be a path like \"/gallery/archive/\"",
                d.trap_path
            ),
        );
    }
    let day = Duration::from_secs(86_400);
    let penalty = ctx.duration(&p.key("penalty"), &d.penalty, day);
    let window = ctx.duration(&p.key("window"), &d.window, day);
    let cap = |ctx: &mut Ctx<'_>, key: &str, v: i64| -> usize {
        if (100..=100_000_000).contains(&v) {
            v as usize
        } else {
            ctx.err(
                &p.key(key),
                format!("{v} is out of range (100 to 100000000)"),
            );
            100
        }
    };
    let max_tracked_clients = cap(ctx, "max_tracked_clients", d.max_tracked_clients);
    let max_limiter_keys = cap(ctx, "max_limiter_keys", d.max_limiter_keys);
    let file = |ctx: &mut Ctx<'_>, path: KeyPath, f: &str, dir: bool| -> Option<PathBuf> {
        let pb = ctx.resolve_path(f);
        let ok = if dir { pb.is_dir() } else { pb.is_file() };
        if ok {
            Some(pb)
        } else {
            ctx.err(
                &path,
                format!(
                    "{} is not a readable {}",
                    pb.display(),
                    if dir { "directory" } else { "file" }
                ),
            );
            None
        }
    };
    let catalog_files = d
        .catalog_files
        .iter()
        .enumerate()
        .filter_map(|(i, f)| file(ctx, p.key("catalog_files").index(i), f, false))
        .collect();
    let ip_ranges_dir = d
        .ip_ranges_dir
        .as_ref()
        .and_then(|f| file(ctx, p.key("ip_ranges_dir"), f, true));
    let asn_db = d
        .asn_db
        .as_ref()
        .and_then(|f| file(ctx, p.key("asn_db"), f, false));
    let country_db = d
        .country_db
        .as_ref()
        .and_then(|f| file(ctx, p.key("country_db"), f, false));
    let mut datacenter_asns = BTreeMap::new();
    for (k, w) in &d.datacenter_asns {
        let kp = p.key("datacenter_asns").key(k);
        let asn = k
            .trim_start_matches("AS")
            .trim_start_matches("as")
            .parse::<u32>();
        match asn {
            Ok(a) if (-1000..=1000).contains(w) => {
                datacenter_asns.insert(a, *w as i32);
            }
            Ok(_) => ctx.err(&kp, format!("weight {w} is out of range (-1000 to 1000)")),
            Err(_) => ctx.err(
                &kp,
                format!("{k:?} is not an AS number (e.g. \"16509\" or \"AS16509\")"),
            ),
        }
    }
    let nets = |ctx: &mut Ctx<'_>, key: &str, v: &[String]| -> Vec<IpNet> {
        let mut out = Vec::new();
        for (i, c) in v.iter().enumerate() {
            match crate::validate::parse_net(c) {
                Some(n) => out.push(n),
                None => ctx.err(
                    &p.key(key).index(i),
                    format!("{c:?} is not an IP address or CIDR"),
                ),
            }
        }
        out
    };
    let allow_cidrs = nets(ctx, "allow_cidrs", &d.allow_cidrs);
    let deny_cidrs = nets(ctx, "deny_cidrs", &d.deny_cidrs);
    let mut weights = crate::weights::Weights::default();
    for (name, w) in &d.weights {
        let kp = p.key("weights").key(name);
        match crate::weights::Weights::signal(name) {
            Some(s) if (-1000..=1000).contains(w) => weights.set(s, *w as i32),
            Some(_) => ctx.err(&kp, format!("weight {w} is out of range (-1000 to 1000)")),
            None => {
                let known: Vec<&str> = crate::weights::SIGNALS
                    .iter()
                    .map(|(_, n, ..)| *n)
                    .collect();
                ctx.err(
                    &kp,
                    format!("unknown signal {name:?} (known: {})", known.join(", ")),
                );
            }
        }
    }
    let ja4_header = d.ja4_header.as_ref().and_then(|h| {
        let h = h.trim().to_ascii_lowercase();
        if h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            ctx.err(&p.key("ja4_header"), format!("{h:?} is not a header name"));
            None
        } else {
            Some(h)
        }
    });
    let browser_versions = d
        .browser_versions
        .as_ref()
        .and_then(|f| file(ctx, p.key("browser_versions"), f, false));
    let w = &d.web_bot_auth;
    let wp = p.key("web_bot_auth");
    let web_bot_auth = WebBotAuth {
        enabled: w.enabled,
        directories_dir: w
            .directories_dir
            .as_ref()
            .and_then(|f| file(ctx, wp.key("directories_dir"), f, true)),
        ca_file: w
            .ca_file
            .as_ref()
            .and_then(|f| file(ctx, wp.key("ca_file"), f, false)),
        fetch: w.fetch,
        refresh: ctx.duration(
            &wp.key("refresh"),
            &w.refresh,
            Duration::from_secs(7 * 86_400),
        ),
        max_lifetime: ctx.duration(
            &wp.key("max_lifetime"),
            &w.max_lifetime,
            Duration::from_secs(7 * 86_400),
        ),
        clock_skew: ctx.duration(
            &wp.key("clock_skew"),
            &w.clock_skew,
            Duration::from_secs(3600),
        ),
        max_agents: {
            if !(1..=100_000).contains(&w.max_agents) {
                ctx.err(
                    &wp.key("max_agents"),
                    format!("{} is out of range (1 to 100000)", w.max_agents),
                );
            }
            w.max_agents.clamp(1, 100_000) as usize
        },
        max_nonces: {
            if !(0..=10_000_000).contains(&w.max_nonces) {
                ctx.err(
                    &wp.key("max_nonces"),
                    format!("{} is out of range (0 to 10000000)", w.max_nonces),
                );
            }
            w.max_nonces.clamp(0, 10_000_000) as usize
        },
    };
    DetectionConfig {
        web_bot_auth,
        trap_path: d.trap_path.clone(),
        penalty,
        window,
        max_tracked_clients,
        max_limiter_keys,
        catalog_files,
        ip_ranges_dir,
        asn_db,
        country_db,
        datacenter_asns,
        allow_cidrs,
        deny_cidrs,
        weights,
        browser_versions,
        ja4_header,
    }
}
