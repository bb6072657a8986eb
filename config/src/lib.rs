//! Typed, validated configuration for Fixative.
//!
//! A configuration is one TOML file. It is parsed with serde into raw
//! structs (`deny_unknown_fields`, so a misspelt key is an error), then
//! validated into [`Config`]. Validation collects *every* problem and names
//! each by key path and line:
//!
//! ```
//! let src = "[[site]]\nname = \"gallery\"\nhosts = [\"gallery.example\"]\nupstreams = [\"10.0.0.5\"]\n";
//! let err = fixative_config::Config::from_toml(src, "fixative.toml", None).unwrap_err();
//! assert_eq!(
//!     err.problems[0].to_string(),
//!     "site[0].upstreams[0]: \"10.0.0.5\" has no port (line 4)"
//! );
//! ```
//!
//! The embedded default ([`DEFAULT_TOML`]) runs a demo origin so that
//! `fixative run` works with zero setup.

pub mod challenge;
mod error;
pub mod evidence;
pub mod policy;
pub mod preference;
mod raw;
pub mod router;
pub mod spans;
pub mod state;
mod validate;
pub mod weights;
pub use validate::random_secret;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use challenge::{Challenge, Tarpit};
pub use error::{ConfigError, Problem};
pub use evidence::Evidence;
pub use ipnet::IpNet;
pub use policy::{
    CATEGORIES, Category, DetectionConfig, MatchConfig, Mode, PolicyConfig, Quota, QuotaKey,
    RuleAction, RuleConfig, WebBotAuth,
};
pub use preference::{Preference, Usage, UseKey};
pub use state::{Backend as StateBackend, State};

/// The embedded default configuration, commented, as printed by
/// `fixative config print-default`.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// Name used for the embedded default in messages.
pub const DEFAULT_SOURCE_NAME: &str = "<embedded default>";

/// A validated configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Where this configuration was read from.
    pub source_name: String,
    /// The file it was read from, if any (reloads re-read it).
    pub path: Option<PathBuf>,
    /// Listeners, timeouts and process settings.
    pub server: Server,
    /// Access-log settings.
    pub log: Log,
    /// Sites in file order.
    pub sites: Vec<Site>,
    /// Index into `sites` of the site that serves unknown hosts.
    pub default_site: Option<usize>,
    /// The built-in demo origin, when configured.
    pub demo: Option<Demo>,
    /// Detection policies by name (built-in ones, replaced by same-named
    /// ones from the file).
    pub policies: std::collections::BTreeMap<String, PolicyConfig>,
    /// Detection settings.
    pub detection: DetectionConfig,
    /// Image protector settings.
    pub protector: Protector,
    /// The in-page check, passes and the interstitial.
    pub challenge: challenge::Challenge,
    /// Caps of the `tarpit` action.
    pub tarpit: challenge::Tarpit,
    /// Where per-client state lives (this node, or a fleet's Redis).
    pub state: state::State,
    /// The evidence ledger, when configured.
    pub evidence: Option<evidence::Evidence>,
}

/// `[protector]`: protected image variants for `cloak` verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Protector {
    /// Long side of the `preview` profile.
    pub preview_max_side: u32,
    /// Draw a visible mark on previews.
    pub visible_mark: bool,
    /// Transforms running at once (off the async reactor).
    pub workers: usize,
    /// Transforms allowed to wait for a worker; beyond: the fallback.
    pub queue: usize,
    /// Largest original fetched and decoded.
    pub max_input_bytes: usize,
    /// Variant cache size in bytes (LRU).
    pub cache_bytes: usize,
    /// What a cloak request gets when no variant can be made.
    pub fallback: Fallback,
    /// Watermark secret: the same value must be given to `fixative protector detect`.
    /// Empty only when no site can cloak (nothing is marked).
    pub secret: String,
    /// The secret was generated for this run (the embedded demo only):
    /// marks made with it cannot be read after the process ends.
    pub secret_generated: bool,
    /// Naming rule of prepared variants: `x.jpg` → `x{suffix}.jpg`.
    pub variant_suffix: String,
    /// JPEG quality of re-encoded variants.
    pub jpeg_quality: u8,
    /// Longest a transform may take.
    pub transform_timeout: std::time::Duration,
    /// The profile cloak verdicts get.
    pub profile: Profile,
    /// The C2PA signing credential (`c2pa_cert`, `c2pa_key`, `c2pa_alg`),
    /// for sites with `directives.c2pa`.
    pub c2pa: Option<C2paCredential>,
    /// Every profile by name (built-in `watermark`, `preview`, `cloak`, and
    /// the configuration's own).
    pub profiles: std::collections::BTreeMap<String, Profile>,
}

/// Where the C2PA signing certificate chain and key are, and the algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct C2paCredential {
    /// PEM certificate chain, signing certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8).
    pub key: PathBuf,
    /// `ed25519`, `es256`, `es384`, `es512`, `ps256`, `ps384` or `ps512`.
    pub alg: String,
}

/// C2PA signing algorithms accepted in `protector.c2pa_alg`.
pub const C2PA_ALGS: &[&str] = &[
    "ed25519", "es256", "es384", "es512", "ps256", "ps384", "ps512",
];

/// `[profile.NAME]`: how a protected variant is made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Profile {
    /// Name.
    pub name: String,
    /// Serve a prepared variant (`x.cloaked.jpg`) when the origin has one.
    pub variant: bool,
    /// Downscale so the long side is at most this.
    pub max_side: Option<u32>,
    /// Hatch a corner of downscaled images.
    pub visible_mark: bool,
    /// Add the forensic watermark.
    pub watermark: bool,
}

/// The protector's fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// 503 with `Retry-After`.
    Unavailable,
    /// A small, degraded copy without watermark (decoded under the same limits).
    Degraded,
}

/// `[server]`: listeners and process-wide settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Server {
    /// Plain-HTTP listeners.
    pub listen: Vec<SocketAddr>,
    /// Optional TLS listener (HTTP/2 by ALPN).
    pub tls: Option<Tls>,
    /// Admin listener: metrics, health, reload.
    pub admin: SocketAddr,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// How long in-flight requests may finish after SIGTERM/SIGINT.
    pub grace_period: Duration,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Time allowed to connect to an upstream.
    pub upstream_connect_timeout: Duration,
    /// Time allowed between reads from an upstream (gives 504 when exceeded).
    pub upstream_read_timeout: Duration,
    /// Interval of upstream TCP health checks.
    pub health_check_interval: Duration,
    /// Add `X-Fixative-Verdict` to responses (never enable on public sites).
    pub debug_headers: bool,
    /// Connection and message limits.
    pub limits: Limits,
}

/// `[server.limits]`: what one client and all clients together may hold.
///
/// Memory for requests whose header is still arriving is bounded by
/// `max_connections × max_request_header_bytes` (plus a fixed overhead per
/// connection; see the README).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Client connections served at once; more are refused at accept.
    pub max_connections: usize,
    /// Connections from one client address (IPv6: its /64) at once;
    /// peers listed in `trusted_proxies` are exempt.
    pub max_connections_per_client: usize,
    /// Time for a request's whole header section, from its first byte
    /// (and for the first byte of a new connection); then 408 and close.
    pub header_timeout: Duration,
    /// Idle time allowed between requests on a kept-alive connection.
    pub keepalive_timeout: Duration,
    /// Largest request header section; larger gets 431.
    pub max_request_header_bytes: usize,
    /// Largest origin response header section; larger gets 502.
    pub max_response_header_bytes: usize,
    /// Time allowed for one write to a client to make progress.
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_client: 128,
            header_timeout: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(30),
            max_request_header_bytes: 32 * 1024,
            max_response_header_bytes: 64 * 1024,
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// `[server.tls]`: downstream TLS listener.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Tls {
    /// Address of the TLS listener.
    pub listen: SocketAddr,
    /// PEM certificate chain (checked to parse at load time).
    pub cert: PathBuf,
    /// PEM private key (checked to parse at load time).
    pub key: PathBuf,
}

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessLog {
    /// One JSON object per line on standard output.
    Stdout,
    /// Appended to a file.
    File(PathBuf),
    /// No access log.
    Off,
}

/// `[log]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Log {
    /// Access-log destination.
    pub access: AccessLog,
}

/// A host pattern of a site.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostPattern {
    /// Matches this host exactly (lower-case, no port).
    Exact(String),
    /// `*.example.com`: matches any subdomain of `example.com` (stored as
    /// `.example.com`), not the apex.
    Wildcard(String),
}

/// `[[site]]`: one protected site.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Site {
    /// Unique name, used in metrics and logs.
    pub name: String,
    /// Hosts this site answers for.
    pub hosts: Vec<HostPattern>,
    /// Origin servers, resolved at load time; several are balanced round-robin.
    pub upstreams: Vec<Upstream>,
    /// TLS towards the origin.
    pub upstream_tls: Option<UpstreamTls>,
    /// Name of the detection policy.
    pub policy: String,
    /// Serves requests whose host matches no site.
    pub default: bool,
    /// Largest request body accepted (413 past it); `None`: no limit.
    pub max_body_bytes: Option<u64>,
    /// No-train directives for this site.
    pub directives: Directives,
}

/// `[site.directives]`: the no-train signals Fixative adds (all on by default).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Directives {
    /// What the site allows where no `[[site.preference]]` applies (for a
    /// [`Directives::variant`], what that preference allows).
    pub usage: Usage,
    /// Per-path preferences (`[[site.preference]]`), in configured order.
    pub preferences: Vec<Preference>,
    /// Response header (lower-case) by which the origin names the
    /// preference of one response (a CMS's per-post setting); stripped
    /// before the response leaves.
    pub preference_header: Option<String>,
    /// Serve an RSL licence at `/license.xml` (the origin's own when it has
    /// one) and announce it in robots.txt, `Link` headers and HTML.
    pub rsl: bool,
    /// Sign served images with a C2PA manifest carrying the CAWG
    /// training-and-data-mining assertion (needs `protector.c2pa_cert`).
    pub c2pa: bool,
    /// `X-Robots-Tag` values added to every response (empty: none).
    pub x_robots_tag: Vec<String>,
    /// Send `tdm-reservation: 1`.
    pub tdm_reservation: bool,
    /// URL sent as `tdm-policy`.
    pub tdm_policy: Option<String>,
    /// `Content-Usage` preferences (empty: none), e.g. `train-ai=n`.
    pub content_usage: String,
    /// Merge (or synthesize) robots.txt.
    pub robots_txt: bool,
    /// Crawler categories that get a `Disallow: /` group.
    pub robots_categories: Vec<String>,
    /// `Content-Signal` line in robots.txt (empty: none).
    pub content_signal: String,
    /// Synthesize `/.well-known/tdmrep.json` when the origin has none.
    pub tdmrep_json: bool,
    /// Synthesize `/ai.txt` when the origin has none.
    pub ai_txt: bool,
    /// How long an origin's robots.txt / tdmrep.json / ai.txt is used
    /// before it is revalidated with its validators.
    pub cache_ttl: std::time::Duration,
    /// Inject `<meta name="robots" content="noai, noimageai">` and
    /// `<meta name="tdm-reservation" content="1">` into HTML pages.
    pub html_meta: bool,
    /// Inject a hidden link to the robots.txt trap into HTML pages.
    pub trap_link: bool,
    /// Which image responses get the XMP `plus:DataMining` packet.
    pub image_metadata: ImageMetadata,
    /// The `plus:DataMining` value (a PLUS `DMI-…` term).
    pub data_mining: String,
    /// Largest image buffered to insert metadata; larger ones pass unchanged.
    pub image_metadata_max_bytes: usize,
}

impl Directives {
    /// The directives of preference `i` (`None`: the site's default): its
    /// usage and every value derived from it; switches (which formats are
    /// on) stay the site's. A format the operator turned off (an empty
    /// `x_robots_tag` or `content_usage`) stays off.
    pub fn variant(&self, i: Option<usize>) -> Directives {
        let Some(p) = i.and_then(|i| self.preferences.get(i)) else {
            return self.clone();
        };
        let u = p.usage;
        Directives {
            usage: u,
            x_robots_tag: if self.x_robots_tag.is_empty() {
                Vec::new()
            } else {
                u.robots_tokens()
            },
            content_usage: if self.content_usage.is_empty() {
                String::new()
            } else {
                u.content_usage()
            },
            content_signal: if self.content_signal.is_empty() {
                String::new()
            } else {
                u.content_signal()
            },
            data_mining: u.data_mining().to_string(),
            ..self.clone()
        }
    }

    /// The preference that applies to `path` (`None`: the site's default).
    pub fn preference_for(&self, path: &str) -> Option<usize> {
        if self.preferences.is_empty() {
            return None;
        }
        preference::resolve(&self.preferences, path)
    }

    /// The preference an origin named in its preference header.
    pub fn preference_named(&self, name: &str) -> Option<usize> {
        let name = name.trim();
        self.preferences
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// The name of preference `i`, or `"default"`.
    pub fn preference_name(&self, i: Option<usize>) -> &str {
        i.and_then(|i| self.preferences.get(i))
            .map_or("default", |p| p.name.as_str())
    }
}

/// Which image responses carry no-train XMP metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageMetadata {
    /// Every client.
    All,
    /// Only clients whose verdict is not `allow` / `limit` (under quota).
    NonAllowed,
    /// None.
    Off,
}

/// Terms of the PLUS `DataMining` vocabulary (IPTC Photo Metadata 2023.1).
pub const DMI_VALUES: &[&str] = &[
    "DMI-UNSPECIFIED",
    "DMI-ALLOWED",
    "DMI-PROHIBITED-AIMLTRAINING",
    "DMI-PROHIBITED-GENAIMLTRAINING",
    "DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING",
    "DMI-PROHIBITED",
    "DMI-PROHIBITED-SEECONSTRAINT",
    "DMI-PROHIBITED-SEEEMBEDDEDRIGHTSEXPR",
    "DMI-PROHIBITED-SEELINKEDRIGHTSEXPR",
];

/// One origin server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Upstream {
    /// As written in the file.
    pub spec: String,
    /// Resolved address.
    pub addr: SocketAddr,
}

/// `upstream_tls`: HTTPS to the origin.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UpstreamTls {
    /// Server name sent in SNI and verified in the certificate.
    pub sni: String,
    /// Verify the origin's certificate (default true).
    pub verify: bool,
}

/// `[demo]`: the built-in demo origin (an artist's portfolio).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Demo {
    /// Loopback address it listens on.
    pub listen: SocketAddr,
}

impl Config {
    /// Parses and validates a configuration from TOML text.
    ///
    /// `base_dir` resolves relative paths (certificates, log files); it is
    /// the directory of the configuration file.
    pub fn from_toml(
        src: &str,
        source_name: &str,
        base_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        validate::load(src, source_name, base_dir)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            problems: vec![Problem {
                path: String::new(),
                message: format!("cannot read the file: {e}"),
                line: None,
            }],
        })?;
        let mut cfg = Self::from_toml(&src, &name, path.parent())?;
        cfg.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Self::from_toml(DEFAULT_TOML, DEFAULT_SOURCE_NAME, None)
    }

    /// Loads `path` when given, else the embedded default.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => Self::load(p),
            None => Self::embedded_default(),
        }
    }

    /// A [`ConfigError`] for problems found after loading (data files that
    /// only the detection engine reads, policies it compiles), each with
    /// the line of its key in this configuration's source.
    pub fn error_at(&self, problems: &[(spans::KeyPath, String)]) -> ConfigError {
        let src = match &self.path {
            Some(p) => std::fs::read_to_string(p).ok(),
            None => Some(DEFAULT_TOML.to_string()),
        };
        let spans = src.as_deref().map(spans::Spans::new);
        ConfigError {
            source_name: self.source_name.clone(),
            problems: problems
                .iter()
                .map(|(path, message)| Problem {
                    path: path.to_string(),
                    message: message.clone(),
                    line: spans.as_ref().and_then(|s| s.line(path)),
                })
                .collect(),
        }
    }

    /// A one-line summary: sites and listeners.
    pub fn summary(&self) -> String {
        let mut listeners: Vec<String> = self
            .server
            .listen
            .iter()
            .map(|a| format!("http://{a}"))
            .collect();
        if let Some(t) = &self.server.tls {
            listeners.push(format!("https://{}", t.listen));
        }
        let names: Vec<&str> = self.sites.iter().map(|s| s.name.as_str()).collect();
        format!(
            "{}: ok, {} site{} ({}), listeners {}, admin http://{}",
            self.source_name,
            self.sites.len(),
            if self.sites.len() == 1 { "" } else { "s" },
            names.join(", "),
            listeners.join(" "),
            self.server.admin
        )
    }
}

impl HostPattern {
    /// Whether `host` (lower-case, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }
}
